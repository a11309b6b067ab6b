/*
 * test_security.c - TLS and roles, as an attacker and a user see them:
 * HTTPS through every node with the cluster's CA, peers that cannot verify
 * each other failing (a wrong CA), mutual TLS making peers of certified
 * clients only, and every token kept to its role on every endpoint.
 */
#include <check.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "kvshard.h"
#include "protocol.h"
#include "testutil.h"

static struct tc_cluster C;

static void teardown(void)
{
	tc_stop(&C);
	tc_http_cacert = NULL;
}

/* The test certificate file name in tests/tls (static storage, one of
 * four buffers). */
static const char *cert(const char *name)
{
	static char buf[4][600];
	static int turn;
	char *b = buf[turn++ % 4];

	snprintf(b, sizeof(buf[0]), "%s/%s", tu_source_path("tests/tls"), name);
	return b;
}

/* [tls] of the test certificates, with ca (a file name in tests/tls) and
 * more TOML. */
static const char *tls_toml(const char *ca, const char *more)
{
	static char toml[4096];

	snprintf(toml, sizeof(toml),
	         "[tls]\ncert = \"%s\"\nkey = \"%s\"\nca = \"%s\"\n%s",
	         cert("node.pem"), cert("node.key"), cert(ca), more);
	return toml;
}

static char *url(int node, const char *fmt, const char *arg)
{
	return tc_url(&C, node, fmt, arg);
}

/* A request over HTTPS showing a client certificate (NULL: none). */
static long with_client_cert(const char *method, const char *u,
                             const char *crt, const char *key,
                             const char *body)
{
	CURL *e = curl_easy_init();
	struct curl_slist *h = NULL;
	long status = 0;
	FILE *sink = fopen("/dev/null", "w");

	ck_assert_ptr_nonnull(e);
	ck_assert_ptr_nonnull(sink);
	h = curl_slist_append(h, "Content-Type: " KVS_TYPE_PEER);
	curl_easy_setopt(e, CURLOPT_URL, u);
	curl_easy_setopt(e, CURLOPT_CAINFO, cert("ca.pem"));
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, sink);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	if (body != NULL)
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
	if (crt != NULL) {
		curl_easy_setopt(e, CURLOPT_SSLCERT, crt);
		curl_easy_setopt(e, CURLOPT_SSLKEY, key);
	}
	if (curl_easy_perform(e) == CURLE_OK)
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(h);
	curl_easy_cleanup(e);
	fclose(sink);
	return status;
}

/* The seed's calls over HTTPS, through every node, with curl's
 * --cacert; the nodes replicate to each other over TLS. */
START_TEST(https_through_every_node)
{
	struct tc_resp r;
	char path[128];

	snprintf(C.cacert, sizeof(C.cacert), "%s", cert("ca.pem"));
	tc_start(&C, 3, tls_toml("ca.pem", "[auth]\ncluster_secret = \"s3\"\n"
	                                   "[cluster]\nwrite_quorum = 3\n"
	                                   "read_quorum = 3\n"));
	ck_assert_int_eq(strncmp(C.node[0].url, "https://", 8), 0);
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "/store?key=k%d&value=v%d", i, i);
		r = tc_get(url(i, "%s", path), 200);
		tc_resp_free(&r);
	}
	/* W = R = 3: every write reached every node over TLS. */
	for (int i = 0; i < 3; i++)
		for (int k = 0; k < 3; k++) {
			char want[8];

			snprintf(path, sizeof(path), "/retrieve?key=k%d", k);
			snprintf(want, sizeof(want), "v%d", k);
			r = tc_get(url(i, "%s", path), 200);
			ck_assert_str_eq(r.body, want);
			tc_resp_free(&r);
		}
	/* The port speaks HTTPS only. */
	{
		char plain[96];

		snprintf(plain, sizeof(plain), "http://127.0.0.1:%d/health",
		         C.node[0].port);
		ck_assert_int_ne(tc_http("GET", plain, NULL, 0, NULL, &r), 0);
		tc_resp_free(&r);
	}
	/* A client with the wrong CA does not get through. */
	tc_http_cacert = cert("other-ca.pem");
	ck_assert_int_ne(tc_http("GET", url(0, "/retrieve?key=%s", "k0"), NULL,
	                         0, NULL, &r),
	                 0);
	tc_resp_free(&r);
}
END_TEST

/* The same cluster whose nodes verify each other with a CA that did not
 * sign their certificates: no node can reach another, so a write that
 * needs a second copy fails, and so does a read that needs two. */
START_TEST(peers_with_a_wrong_ca_are_refused)
{
	struct tc_resp r;

	snprintf(C.cacert, sizeof(C.cacert), "%s", cert("ca.pem"));
	tc_start(&C, 3, tls_toml("other-ca.pem",
	                         "[auth]\ncluster_secret = \"s3\"\n"
	                         "[cluster]\nwrite_quorum = 2\n"
	                         "read_quorum = 2\n"
	                         "request_timeout_ms = 1000\n"));
	ck_assert_int_eq(tc_http("GET", url(0, "/store?key=k&value=%s", "v"),
	                         NULL, 0, NULL, &r),
	                 0);
	ck_assert_int_eq(r.status, 503);
	tc_resp_free(&r);
	ck_assert_int_eq(tc_http("GET", url(1, "/retrieve?key=%s", "k"), NULL,
	                         0, NULL, &r),
	                 0);
	ck_assert_int_eq(r.status, 503);
	tc_resp_free(&r);
}
END_TEST

/* mutual = true, no secret: the nodes are peers by their certificates;
 * a client without one, or with one another CA signed, is not. */
START_TEST(mutual_tls_makes_peers_of_certified_clients_only)
{
	const char *frame = "not a frame";
	struct tc_resp r;
	long st;

	snprintf(C.cacert, sizeof(C.cacert), "%s", cert("ca.pem"));
	tc_start(&C, 3, tls_toml("ca.pem", "mutual = true\n"
	                                   "[cluster]\nwrite_quorum = 3\n"
	                                   "read_quorum = 3\n"));
	r = tc_get(url(0, "/store?key=m&value=%s", "mv"), 200);
	tc_resp_free(&r);
	for (int i = 0; i < 3; i++) {
		r = tc_get(url(i, "/retrieve?key=%s", "m"), 200);
		ck_assert_str_eq(r.body, "mv");
		tc_resp_free(&r);
	}
	st = with_client_cert("POST", url(1, "%s", KVS_PATH_PEER), NULL, NULL,
	                      frame);
	ck_assert_int_eq(st, 403);
	st = with_client_cert("POST", url(1, "%s", KVS_PATH_PEER),
	                      cert("rogue.pem"), cert("rogue.key"), frame);
	ck_assert_int_eq(st, 403);
	/* A certified client passes authentication; its frame is bad. */
	st = with_client_cert("POST", url(1, "%s", KVS_PATH_PEER),
	                      cert("node.pem"), cert("node.key"), frame);
	ck_assert_int_eq(st, 400);
	/* No secret, but mutual TLS: no warning about an open cluster. */
	ck_assert_int_eq(tc_log_lines(&C, 0, "SECURITY"), 0);
}
END_TEST

struct call {
	const char *method;
	const char *path; /* %s: the key */
	const char *body;
};

/* Every way to write a key. */
static const struct call writes[] = {
	{"PUT", "/v1/kv/%s", "x"},
	{"DELETE", "/v1/kv/%s", NULL},
	{"GET", "/store?key=%s&value=x", NULL},
	{"POST", "/store?key=%s&value=x", ""},
	{"PUT", "/store?key=%s&value=x", ""},
	{"HEAD", "/store?key=%s&value=x", NULL},
	{"POST", "/v1/batch%.0s", "{\"ops\":[{\"op\":\"put\",\"key\":\"k\","
	                         "\"value\":\"x\"}]}"},
	{"POST", "/v1/batch%.0s", "{\"ops\":[{\"op\":\"delete\",\"key\":\"k\"}]}"},
	{"PATCH", "/v1/kv/%s", "x"},
};

/* The peer's and the admin's calls. */
static const struct call privileged[] = {
	{"POST", KVS_PATH_PEER "%s", "x"},
	{"GET", "/internal/anything%s", NULL},
	{"POST", "/v1/cluster/shards%s",
	 "{\"name\":\"s9\",\"address\":\"127.0.0.1:1\"}"},
	{"DELETE", "/v1/cluster/shards/shard-1%s", NULL},
	{"PATCH", "/v1/cluster/shards/shard-1%s", "{\"weight\":2}"},
	{"POST", "/v1/cluster/rebalance/pause%s", ""},
};

static long call(int node, const struct call *c, const char *key,
                 const char *const *headers)
{
	struct tc_resp r;
	long st;

	ck_assert_int_eq(tc_http(c->method, url(node, c->path, key), c->body,
	                         c->body ? strlen(c->body) : 0, headers, &r),
	                 0);
	st = r.status;
	tc_resp_free(&r);
	return st;
}

START_TEST(every_token_keeps_to_its_role)
{
	static const char *reader[] = {"Authorization: Bearer rt", NULL};
	static const char *writer[] = {"Authorization: Bearer ct", NULL};
	static const char *admin[] = {"Authorization: Bearer at", NULL};
	/* A client guessing the peer header. */
	static const char *forger[] = {"Authorization: Bearer ct",
	                               KVS_HDR_SECRET ": guess", NULL};
	static const char *peer[] = {KVS_HDR_SECRET ": s3", NULL};
	struct tc_resp r;

	tc_start(&C, 2, "[auth]\nclient_tokens = [\"ct\"]\nread_tokens = [\"rt\"]\n"
	                "admin_tokens = [\"at\"]\ncluster_secret = \"s3\"\n");
	ck_assert_int_eq(tc_http("PUT", url(0, "/v1/kv/%s", "k"), "kept", 4,
	                         writer, &r),
	                 0);
	ck_assert_int_eq(r.status, 200);
	tc_resp_free(&r);
	for (size_t i = 0; i < KVS_ARRAY_SIZE(writes); i++)
		for (int node = 0; node < 2; node++) {
			long st = call(node, &writes[i], "k", reader);

			if (st != 403 && st != 405)
				ck_abort_msg("%s %s with a read token: %ld",
				             writes[i].method, writes[i].path, st);
		}
	/* The value is untouched. */
	for (int node = 0; node < 2; node++) {
		ck_assert_int_eq(tc_http("GET", url(node, "/v1/kv/%s", "k"), NULL,
		                         0, reader, &r),
		                 0);
		ck_assert_int_eq(r.status, 200);
		ck_assert_str_eq(r.body, "kept");
		tc_resp_free(&r);
	}
	for (size_t i = 0; i < KVS_ARRAY_SIZE(privileged); i++) {
		const struct call *c = &privileged[i];
		int peer_only = strncmp(c->path, "/internal", 9) == 0;

		ck_assert_msg(call(0, c, "", writer) == 403, "%s %s, client token",
		              c->method, c->path);
		ck_assert_msg(call(0, c, "", reader) == 403, "%s %s, read token",
		              c->method, c->path);
		ck_assert_msg(call(0, c, "", forger) == 403, "%s %s, forged",
		              c->method, c->path);
		ck_assert_msg(call(0, c, "", NULL) == 401, "%s %s, no token",
		              c->method, c->path);
		/* An admin token reaches the admin calls (a static topology
		 * answers 409), never the peers'. */
		if (peer_only) {
			ck_assert_msg(call(0, c, "", admin) == 403, "%s %s, admin",
			              c->method, c->path);
			ck_assert_msg(call(0, c, "", peer) != 401 &&
			                      call(0, c, "", peer) != 403,
			              "%s %s, peer", c->method, c->path);
		} else {
			ck_assert_msg(call(0, c, "", admin) == 409, "%s %s, admin",
			              c->method, c->path);
		}
	}
	/* Reading the rebalance state is a read. */
	ck_assert_int_eq(tc_http("GET", url(0, "/v1/cluster/rebalance%s", ""),
	                         NULL, 0, reader, &r),
	                 0);
	ck_assert_int_eq(r.status, 409);
	tc_resp_free(&r);
}
END_TEST

/* Several shards, no secret: a loud warning that anyone can be a peer;
 * with the secret, none. */
START_TEST(an_open_cluster_is_announced)
{
	tc_start(&C, 2, NULL);
	ck_assert_int_eq(tc_log_lines(&C, 0, "WARN  SECURITY: no [auth] "
	                                     "cluster_secret"),
	                 1);
	tc_stop(&C);
	tc_start(&C, 2, "[auth]\ncluster_secret = \"s3\"\n");
	ck_assert_int_eq(tc_log_lines(&C, 1, "SECURITY"), 0);
}
END_TEST

static Suite *security_suite(void)
{
	Suite *s = suite_create("security");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 120);
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_test(tc, https_through_every_node);
	tcase_add_test(tc, peers_with_a_wrong_ca_are_refused);
	tcase_add_test(tc, mutual_tls_makes_peers_of_certified_clients_only);
	tcase_add_test(tc, every_token_keeps_to_its_role);
	tcase_add_test(tc, an_open_cluster_is_announced);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	int status;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	status = tu_run(security_suite());
	curl_global_cleanup();
	return status;
}
