/*
 * transport.h - HTTP requests to peers over libcurl (internal).
 *
 * Two ways to send:
 *   - kvs__transport_request(): synchronous, on the caller's thread, over a
 *     pool of curl easy handles (each keeps its connections alive);
 *   - kvs__transport_submit(): asynchronous, driven by one thread running a
 *     curl multi handle; the callback runs on that thread.
 * kvs__transport_parallel() sends several requests at once and waits for
 * all of them. Every request is bounded by a connect timeout and a total
 * timeout. Only this module includes <curl/curl.h>.
 */
#ifndef KVS_TRANSPORT_H
#define KVS_TRANSPORT_H

#include <stddef.h>

#include "timers.h"

typedef struct kvs__transport kvs__transport;

#define KVS_TRANSPORT_MAX_HEADERS 16
/* Timeouts when the options leave them 0. */
#define KVS__TRANSPORT_CONNECT_TIMEOUT_MS 500u
#define KVS__TRANSPORT_REQUEST_TIMEOUT_MS 2000u

typedef struct kvs__transport_options {
	unsigned connect_timeout_ms; /* 0: KVS__TRANSPORT_CONNECT_TIMEOUT_MS */
	unsigned request_timeout_ms; /* 0: KVS__TRANSPORT_REQUEST_TIMEOUT_MS */
	unsigned max_host_connections; /* per peer, async path; 0: default */
	/* Sent with every request ("Name: value"), e.g. Authorization. */
	const char *extra_header;
	/* Synchronous requests only: no thread is started, and the
	 * asynchronous calls answer KVS_ENOTSUP. */
	int sync_only;
	/* HTTPS (copied): the CA file that verifies servers (NULL: the
	 * system's), and a client certificate and key (PEM) to show. */
	const char *tls_ca;
	const char *tls_cert;
	const char *tls_key;
} kvs__transport_options;

typedef struct kvs__http_request {
	const char *method; /* "GET", "HEAD", "PUT", "POST", "DELETE" */
	const char *url;    /* copied */
	/* "Name: value" strings, copied; up to KVS_TRANSPORT_MAX_HEADERS. */
	const char *headers[KVS_TRANSPORT_MAX_HEADERS];
	size_t n_headers;
	const void *body; /* not copied: must live until the answer */
	size_t body_len;
	unsigned timeout_ms; /* 0: the transport's request timeout */
	size_t max_body;     /* larger answers fail with KVS_EPROTO; 0: none */
} kvs__http_request;

typedef struct kvs__http_response {
	/* KVS_OK when an HTTP answer arrived (whatever its status);
	 * KVS_ECONNECT (refused, unreachable, connection lost),
	 * KVS_ETIMEDOUT, KVS_EPROTO (malformed or too large), KVS_ENOMEM,
	 * KVS_ECLOSED (transport shutting down). */
	int rc;
	/* 0 when the request certainly did not reach the peer (it was
	 * never sent: no connection); 1 when it may have, even if rc says
	 * the answer was lost. */
	int sent;
	long status;
	char *body; /* owned; NUL-terminated (not counted in body_len) */
	size_t body_len;
	char *headers; /* owned: the final header block, raw */
	size_t headers_len;
} kvs__http_response;

/** Release what a response owns and zero it. */
void kvs__http_response_clear(kvs__http_response *r);

/**
 * Find header name (case-insensitive) in a response. Returns a pointer to
 * its value (borrowed from r, not NUL-terminated) and its length, or NULL.
 */
const char *kvs__http_header(const kvs__http_response *r, const char *name,
                             size_t *len);

/**
 * Completion of an asynchronous request, on the transport's thread. The
 * callee owns *resp and must kvs__http_response_clear() it. Must not block.
 */
typedef void (*kvs__http_cb)(void *ud, kvs__http_response *resp);

int kvs__transport_new(kvs__transport **out,
                       const kvs__transport_options *opts);

/** Stop the thread (pending requests complete with KVS_ECLOSED) and free. */
void kvs__transport_free(kvs__transport *t);

/** Send one request and wait. resp is filled (resp->rc) in every case. */
void kvs__transport_request(kvs__transport *t, const kvs__http_request *req,
                            kvs__http_response *resp);

/**
 * Queue one request; cb is called exactly once if KVS_OK is returned.
 * @return KVS_OK, KVS_ENOMEM, KVS_ECLOSED, KVS_EINVAL, KVS_ENOTSUP
 *         (sync_only).
 */
int kvs__transport_submit(kvs__transport *t, const kvs__http_request *req,
                          kvs__http_cb cb, void *ud);

/**
 * Call cb(ud) once, on the transport's thread, ms milliseconds from now,
 * or earlier when the transport is freed (so that cb can release what it
 * holds). Timers cannot be cancelled: cb finds out whether it still
 * matters. Must not block.
 *
 * @return KVS_OK, KVS_ENOMEM, KVS_ECLOSED, KVS_ENOTSUP (sync_only): cb
 *         will not be called.
 */
int kvs__transport_timer(kvs__transport *t, unsigned ms, kvs__timer_cb cb,
                         void *ud);

/** Send n requests at once and wait for all; resps[i] answers reqs[i]. */
void kvs__transport_parallel(kvs__transport *t,
                             const kvs__http_request *reqs, size_t n,
                             kvs__http_response *resps);

#endif /* KVS_TRANSPORT_H */
