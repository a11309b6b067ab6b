/*
 * tls.c - HTTPS for the server: the certificate, key and CA read from the
 * files [tls] names, handed to libmicrohttpd (built with GnuTLS), and the
 * check that makes a client a peer under mutual TLS.
 *
 * libmicrohttpd takes certificates in memory, as NUL-terminated PEM text;
 * the text is kept until the daemon stops. With mutual = true the CA is
 * also its trust list: libmicrohttpd then asks every client for a
 * certificate (without requiring one, so that ordinary clients connect as
 * before), and a request whose connection showed a certificate the CA
 * signed is a peer's. libmicrohttpd does not verify client certificates
 * itself; GnuTLS does it here, once per connection, at its first request
 * that needs it (a peer request that also carries the cluster secret
 * does not).
 */
#include <errno.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

/* PEM files are small; this is a guard against a wrong path. */
#define MAX_PEM_BYTES ((size_t)1 << 20)

/* The whole file as a NUL-terminated string, malloc'ed. */
static char *read_pem(const char *path, char *err, size_t errlen)
{
	char *text;
	size_t len;
	int rc = kvs__read_file(path, MAX_PEM_BYTES, &text, &len);

	if (rc == KVS_OK && len == 0) {
		free(text);
		snprintf(err, errlen, "cannot read %s: the file is empty", path);
		return NULL;
	}
	if (rc != KVS_OK)
		snprintf(err, errlen, "cannot read %s: %s", path,
		         rc == KVS_EIO      ? strerror(errno)
		         : rc == KVS_ERANGE ? "larger than 1 MiB, not a PEM file"
		                            : "out of memory");
	return rc == KVS_OK ? text : NULL;
}

int tls_load(struct server *s, char *err, size_t errlen)
{
	const kvs_cluster_config *cc = s->cc;

	if (cc->tls_cert == NULL)
		return 0;
	if (!MHD_is_feature_supported(MHD_FEATURE_TLS)) {
		snprintf(err, errlen,
		         "[tls] is set but this libmicrohttpd was built without "
		         "TLS");
		return -1;
	}
	s->tls_cert_pem = read_pem(cc->tls_cert, err, errlen);
	if (s->tls_cert_pem == NULL)
		return -1;
	s->tls_key_pem = read_pem(cc->tls_key, err, errlen);
	if (s->tls_key_pem == NULL)
		return -1;
	if (cc->tls_mutual) {
		s->tls_ca_pem = read_pem(cc->tls_ca, err, errlen);
		if (s->tls_ca_pem == NULL)
			return -1;
	}
	return 0;
}

void tls_free(struct server *s)
{
	free(s->tls_cert_pem);
	free(s->tls_key_pem);
	free(s->tls_ca_pem);
	s->tls_cert_pem = s->tls_key_pem = s->tls_ca_pem = NULL;
}

/* Verify the certificate the client showed in its handshake. */
static int certified(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci;
	gnutls_session_t session;
	unsigned status = 1, n = 0;

	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
	if (ci == NULL || ci->tls_session == NULL)
		return 0;
	session = (gnutls_session_t)ci->tls_session;
	if (gnutls_certificate_get_peers(session, &n) == NULL || n == 0)
		return 0;
	if (gnutls_certificate_verify_peers2(session, &status) != GNUTLS_E_SUCCESS)
		return 0;
	return status == 0;
}

/* Once per connection: its certificate was shown in its one handshake
 * (libmicrohttpd does not renegotiate), so the answer holds for each of
 * its requests. */
int tls_client_is_peer(struct req *r)
{
	int known;

	if (!r->srv->cc->tls_mutual)
		return 0;
	known = guard_peer_cert(r->track);
	if (known == 0) {
		known = certified(r->conn) ? 1 : -1;
		guard_set_peer_cert(r->track, known == 1);
	}
	return known == 1;
}
