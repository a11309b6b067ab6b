/*
 * test_server.c - kvshard-server as a user meets it: real processes on
 * loopback ports, the seed's endpoints through any node, the REST API,
 * errors, failures of peers, signals, restarts.
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "cluster.h"
#include "hlc.h"
#include "protocol.h"
#include "kvshard.h"
#include "testutil.h"

static struct tc_cluster C;

static void teardown(void)
{
	tc_stop(&C);
}

static const char *key_owned_by(int owner, const char *prefix)
{
	return tc_key_owned_by(&C, owner, prefix);
}

/* The URL of shard node followed by fmt, whose one %s is arg. */
#define url(node, fmt, arg) tc_url(&C, node, fmt, arg)

/* Check a JSON error answer: status and stable code. */
static void expect_error(const struct tc_resp *r, long status,
                         const char *code)
{
	char want[128];

	ck_assert_msg(r->status == status, "status %ld, wanted %ld: %s",
	              r->status, status, r->body);
	snprintf(want, sizeof(want), "\"error\":\"%s\"", code);
	ck_assert_msg(strstr(r->body, want) != NULL, "body %s lacks %s",
	              r->body, want);
	ck_assert_msg(strstr(r->body, "\"message\":\"") != NULL, "no message: %s",
	              r->body);
	ck_assert_str_eq(tc_header(r, "Content-Type"), "application/json");
}

START_TEST(seed_commands_through_every_node)
{
	struct tc_resp r;

	tc_start(&C, 3, NULL);
	for (int via = 0; via < 3; via++) {
		char key[16], val[16];

		snprintf(key, sizeof(key), "seed%d", via);
		snprintf(val, sizeof(val), "value%d", via);
		ck_assert_int_eq(tc_http("GET",
		                         url(via, "/store?key=%s&value=", key),
		                         NULL, 0, NULL, &r), 0);
		tc_resp_free(&r);
		{
			char u[256];

			snprintf(u, sizeof(u), "%s/store?key=%s&value=%s",
			         C.node[via].url, key, val);
			r = tc_get(u, 200);
			ck_assert_ptr_nonnull(strstr(r.body, "\"version\":"));
			tc_resp_free(&r);
		}
		for (int from = 0; from < 3; from++) {
			r = tc_get(url(from, "/retrieve?key=%s", key), 200);
			ck_assert_str_eq(r.body, val);
			ck_assert_ptr_nonnull(tc_header(&r, "X-Kvshard-Shard"));
			tc_resp_free(&r);
		}
	}
	r = tc_get(url(1, "/retrieve?key=%s", "never-stored"), 404);
	expect_error(&r, 404, "not_found");
	tc_resp_free(&r);
}
END_TEST

START_TEST(forwarding_with_one_replica)
{
	struct tc_resp r;

	tc_start(&C, 3, "[cluster]\nreplication = 1\n");
	for (int owner = 0; owner < 3; owner++) {
		const char *key = key_owned_by(owner, "fw");
		char body[32];

		snprintf(body, sizeof(body), "owned by %d", owner);
		/* Written through a node that does not own it. */
		ck_assert_int_eq(tc_http("PUT", url((owner + 1) % 3, "/v1/kv/%s", key),
		                         body, strlen(body), NULL, &r), 0);
		ck_assert_int_eq(r.status, 200);
		ck_assert_ptr_nonnull(strstr(r.body, C.node[owner].name));
		tc_resp_free(&r);
		for (int from = 0; from < 3; from++) {
			r = tc_get(url(from, "/v1/kv/%s", key), 200);
			ck_assert_str_eq(r.body, body);
			/* The answer names the owner that served it. */
			ck_assert_str_eq(tc_header(&r, "X-Kvshard-Shard"),
			                 C.node[owner].name);
			if (from != owner)
				ck_assert_str_eq(tc_header(&r, "X-Kvshard-Forwarded-By"),
				                 C.node[from].name);
			tc_resp_free(&r);
		}
	}
}
END_TEST

START_TEST(binary_values_and_large_values)
{
	static const unsigned char bin[] = {0, 1, 2, 0, 255, 254, '\n', 0};
	size_t big_len = 1 << 20;
	unsigned char *big = malloc(big_len);
	struct tc_resp r;

	tc_start(&C, 3, "[cluster]\nreplication = 1\n");
	for (size_t i = 0; i < big_len; i++)
		big[i] = (unsigned char)(i * 31 + 7);
	big[100] = 0;
	ck_assert_int_eq(tc_http("PUT", url(0, "/v1/kv/%s", "bin%00key%FF"), bin,
	                         sizeof(bin), NULL, &r), 0);
	ck_assert_int_eq(r.status, 200);
	tc_resp_free(&r);
	ck_assert_int_eq(tc_http("PUT", url(1, "/v1/kv/%s", "big"), big, big_len,
	                         NULL, &r), 0);
	ck_assert_int_eq(r.status, 200);
	tc_resp_free(&r);
	for (int from = 0; from < 3; from++) {
		r = tc_get(url(from, "/v1/kv/%s", "bin%00key%FF"), 200);
		ck_assert_uint_eq(r.len, sizeof(bin));
		ck_assert_mem_eq(r.body, bin, sizeof(bin));
		tc_resp_free(&r);
		r = tc_get(url(from, "/v1/kv/%s", "big"), 200);
		ck_assert_uint_eq(r.len, big_len);
		ck_assert_mem_eq(r.body, big, big_len);
		tc_resp_free(&r);
		/* The same key without its NUL is another key. */
		r = tc_get(url(from, "/v1/kv/%s", "bin"), 404);
		tc_resp_free(&r);
	}
	/* An empty value is a value. */
	ck_assert_int_eq(tc_http("PUT", url(2, "/v1/kv/%s", "empty"), "", 0, NULL,
	                         &r), 0);
	ck_assert_int_eq(r.status, 200);
	tc_resp_free(&r);
	r = tc_get(url(0, "/v1/kv/%s", "empty"), 200);
	ck_assert_uint_eq(r.len, 0);
	tc_resp_free(&r);
	/* HEAD gives the headers without the body. */
	ck_assert_int_eq(tc_http("HEAD", url(0, "/v1/kv/%s", "big"), NULL, 0,
	                         NULL, &r), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(tc_header(&r, "Content-Length"), "1048576");
	ck_assert_uint_eq(r.len, 0);
	tc_resp_free(&r);
	free(big);
}
END_TEST

START_TEST(compare_and_swap)
{
	struct tc_resp r;
	char etag[128], hdr[160], stale[160];
	const char *h[2] = {hdr, NULL};

	tc_start(&C, 3, NULL);
	ck_assert_int_eq(tc_http("PUT", url(0, "/v1/kv/%s", "cas"), "v1", 2, NULL,
	                         &r), 0);
	ck_assert_int_eq(r.status, 200);
	snprintf(etag, sizeof(etag), "%s", tc_header(&r, "ETag"));
	tc_resp_free(&r);
	/* GET gives the same ETag, from any node. */
	r = tc_get(url(2, "/v1/kv/%s", "cas"), 200);
	ck_assert_str_eq(tc_header(&r, "ETag"), etag);
	tc_resp_free(&r);
	/* CAS with the current version succeeds... */
	snprintf(hdr, sizeof(hdr), "If-Match: %s", etag);
	snprintf(stale, sizeof(stale), "%s", hdr);
	ck_assert_int_eq(tc_http("PUT", url(1, "/v1/kv/%s", "cas"), "v2", 2, h,
	                         &r), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_ne(tc_header(&r, "ETag"), etag);
	tc_resp_free(&r);
	/* ...and with the old one it conflicts, through any node. */
	for (int via = 0; via < 3; via++) {
		ck_assert_int_eq(tc_http("PUT", url(via, "/v1/kv/%s", "cas"), "v3",
		                         2, h, &r), 0);
		expect_error(&r, 412, "version_mismatch");
		tc_resp_free(&r);
	}
	r = tc_get(url(0, "/v1/kv/%s", "cas"), 200);
	ck_assert_str_eq(r.body, "v2");
	tc_resp_free(&r);
	/* Create-only. */
	snprintf(hdr, sizeof(hdr), "If-None-Match: *");
	ck_assert_int_eq(tc_http("PUT", url(0, "/v1/kv/%s", "cas"), "v4", 2, h,
	                         &r), 0);
	expect_error(&r, 412, "exists");
	tc_resp_free(&r);
	ck_assert_int_eq(tc_http("PUT", url(0, "/v1/kv/%s", "fresh"), "f", 1, h,
	                         &r), 0);
	ck_assert_int_eq(r.status, 200);
	tc_resp_free(&r);
	/* A malformed If-Match is a bad request, not a silent write. */
	snprintf(hdr, sizeof(hdr), "If-Match: nonsense");
	ck_assert_int_eq(tc_http("PUT", url(0, "/v1/kv/%s", "cas"), "v5", 2, h,
	                         &r), 0);
	expect_error(&r, 400, "bad_precondition");
	tc_resp_free(&r);
	/* Delete, then the key is gone everywhere. */
	ck_assert_int_eq(tc_http("DELETE", url(1, "/v1/kv/%s", "cas"), NULL, 0,
	                         NULL, &r), 0);
	ck_assert_int_eq(r.status, 200);
	tc_resp_free(&r);
	for (int from = 0; from < 3; from++) {
		r = tc_get(url(from, "/v1/kv/%s", "cas"), 404);
		tc_resp_free(&r);
	}
}
END_TEST

/* PUT with one header; returns the response (free it). */
static struct tc_resp put_if(int node, const char *key, const char *value,
                             const char *header)
{
	const char *h[2] = {header, NULL};
	struct tc_resp r;

	ck_assert_int_eq(tc_http("PUT", url(node, "/v1/kv/%s", key), value,
	                         strlen(value), header ? h : NULL, &r), 0);
	return r;
}

/*
 * If-Match as RFC 9110 13.1.1 has it: a tag that is no version of the key
 * (well-formed or weak) never matches: 412, not 400; "*" writes only if
 * the key exists; a list matches if any of its tags does.
 */
START_TEST(if_match_follows_the_rfc)
{
	char etag[128], hdr[512];
	struct tc_resp r;

	tc_start(&C, 3, NULL);
	/* *: only an existing key. */
	r = put_if(1, "im", "x", "If-Match: *");
	expect_error(&r, 412, "version_mismatch");
	tc_resp_free(&r);
	r = tc_get(url(0, "/v1/kv/%s", "im"), 404);
	tc_resp_free(&r);
	r = put_if(0, "im", "v1", NULL);
	ck_assert_int_eq(r.status, 200);
	snprintf(etag, sizeof(etag), "%s", tc_header(&r, "ETag"));
	tc_resp_free(&r);
	r = put_if(2, "im", "v2", "If-Match: *");
	ck_assert_int_eq(r.status, 200);
	snprintf(etag, sizeof(etag), "%s", tc_header(&r, "ETag"));
	tc_resp_free(&r);
	/* Tags that are no version of ours: 412. */
	r = put_if(0, "im", "no", "If-Match: \"bogus\"");
	expect_error(&r, 412, "version_mismatch");
	tc_resp_free(&r);
	snprintf(hdr, sizeof(hdr), "If-Match: W/%s", etag);
	r = put_if(0, "im", "no", hdr); /* weak: strong comparison fails */
	expect_error(&r, 412, "version_mismatch");
	tc_resp_free(&r);
	/* A list: any tag may match. */
	snprintf(hdr, sizeof(hdr), "If-Match: \"bogus\", %s , \"0000000000000001-0\"",
	         etag);
	r = put_if(1, "im", "v3", hdr);
	ck_assert_int_eq(r.status, 200);
	tc_resp_free(&r);
	r = put_if(1, "im", "no", hdr); /* the version moved on */
	expect_error(&r, 412, "version_mismatch");
	tc_resp_free(&r);
	r = tc_get(url(2, "/v1/kv/%s", "im"), 200);
	ck_assert_str_eq(r.body, "v3");
	tc_resp_free(&r);
	/* Malformed: 400. */
	r = put_if(0, "im", "no", "If-Match: bare-word");
	expect_error(&r, 400, "bad_precondition");
	tc_resp_free(&r);
	r = put_if(0, "im", "no", "If-Match: \"a\" \"b\"");
	expect_error(&r, 400, "bad_precondition");
	tc_resp_free(&r);
	/* Deletes take it too. */
	ck_assert_int_eq(tc_http("DELETE", url(0, "/v1/kv/%s", "nope"), NULL, 0,
	                         (const char *const[]){"If-Match: *", NULL},
	                         &r), 0);
	expect_error(&r, 412, "version_mismatch");
	tc_resp_free(&r);
}
END_TEST

/*
 * The runtime admin calls exist and say, with 409 static_topology, that
 * this cluster's shards are its file's; the cluster keeps serving.
 */
START_TEST(admin_calls_answer_static_topology)
{
	static const struct {
		const char *method, *path, *body;
	} calls[] = {
		{"POST", "/v1/cluster/shards",
		 "{\"name\":\"s9\",\"address\":\"127.0.0.1:1\"}"},
		{"DELETE", "/v1/cluster/shards/shard-1", NULL},
		{"PATCH", "/v1/cluster/shards/shard-1", "{\"weight\":2}"},
		{"GET", "/v1/cluster/rebalance", NULL},
		{"POST", "/v1/cluster/rebalance/pause", NULL},
		{"POST", "/v1/cluster/rebalance/resume", NULL},
		{"POST", "/v1/cluster/rebalance/cancel", NULL},
	};
	struct tc_resp r;

	tc_start(&C, 2, NULL);
	for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
		const char *b = calls[i].body;

		ck_assert_int_eq(tc_http(calls[i].method,
		                         url(i % 2, "%s", calls[i].path), b,
		                         b != NULL ? strlen(b) : 0, NULL, &r),
		                 0);
		expect_error(&r, 409, "static_topology");
		ck_assert_msg(strstr(r.body, "configuration file") != NULL,
		              "%s", r.body);
		tc_resp_free(&r);
	}
	/* Methods they do not take: 405 with an Allow header. */
	ck_assert_int_eq(tc_http("PUT", url(0, "/v1/cluster/shards/shard-1%s", ""),
	                         "x", 1, NULL, &r),
	                 0);
	expect_error(&r, 405, "method_not_allowed");
	tc_resp_free(&r);
	r = tc_get(url(1, "/v1/cluster%s", ""), 200);
	ck_assert_ptr_nonnull(strstr(r.body, "\"shard-2\""));
	tc_resp_free(&r);
}
END_TEST

/*
 * Query arguments a endpoint does not take are refused, never silently
 * ignored: a client asking for ?ttl= must learn there is no such thing.
 */
START_TEST(unknown_query_arguments_are_refused)
{
	static const char *const bad[] = {
		"/v1/kv/k?ttl=2", "/retrieve?key=k&ttl=2", "/store?key=k&value=v&x",
		"/v1/kv?prefix=a&sort=desc", "/v1/cluster?verbose=1",
		"/retrieve?key=k&key=j", "/v1/kv/k?r=1&r=2",
	};
	struct tc_resp r;

	tc_start(&C, 2, NULL);
	r = tc_get(url(0, "/store?key=k&value=v%s", ""), 200);
	tc_resp_free(&r);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = tc_get(url(0, "%s", bad[i]), 400);
		ck_assert_msg(strstr(r.body, "unknown_argument") != NULL ||
		                      strstr(r.body, "bad_argument") != NULL,
		              "%s: %s", bad[i], r.body);
		tc_resp_free(&r);
	}
	/* The key was not written by the refused /store. */
	r = tc_get(url(1, "/retrieve?key=%s", "k"), 200);
	ck_assert_str_eq(r.body, "v");
	tc_resp_free(&r);
	/* Known ones still work, r and w included. */
	r = tc_get(url(1, "/retrieve?key=%s&r=1", "k"), 200);
	tc_resp_free(&r);
	r = tc_get(url(1, "/v1/kv?prefix=k&limit=5&values=1&r=2%s", ""), 200);
	tc_resp_free(&r);
}
END_TEST

/*
 * A batch key written as text with \u0000 in it would be cut at the NUL
 * (key "a\u0000evil" writing key "a"): it is refused, pointing to
 * key_b64, which carries any byte.
 */
START_TEST(batch_strings_with_nul_are_refused)
{
	static const char cut[] =
	        "{\"ops\":[{\"op\":\"put\",\"key\":\"a\\u0000evil\","
	        "\"value\":\"x\"}]}";
	static const char ok[] =
	        "{\"ops\":[{\"op\":\"put\",\"key_b64\":\"YQBldmls\","
	        "\"value\":\"y\"},{\"op\":\"put\",\"key\":\"text \\\\u0000\","
	        "\"value\":\"z\"}]}";
	struct tc_resp r;

	tc_start(&C, 2, NULL);
	ck_assert_int_eq(tc_http("POST", url(0, "/v1/batch%s", ""), cut,
	                         strlen(cut), NULL, &r), 0);
	expect_error(&r, 400, "bad_batch");
	ck_assert_ptr_nonnull(strstr(r.body, "key_b64"));
	tc_resp_free(&r);
	r = tc_get(url(1, "/v1/kv/%s", "a"), 404);
	tc_resp_free(&r);
	/* The same key as base64 is written whole; an escaped backslash
	 * followed by u0000 is just text. */
	ck_assert_int_eq(tc_http("POST", url(0, "/v1/batch%s", ""), ok,
	                         strlen(ok), NULL, &r), 0);
	ck_assert_int_eq(r.status, 200);
	tc_resp_free(&r);
	r = tc_get(url(1, "/v1/kv/%s", "a%00evil"), 200);
	ck_assert_str_eq(r.body, "y");
	tc_resp_free(&r);
	r = tc_get(url(1, "/v1/kv/%s", "a"), 404);
	tc_resp_free(&r);
	r = tc_get(url(1, "/v1/kv/%s", "text%20%5Cu0000"), 200);
	ck_assert_str_eq(r.body, "z");
	tc_resp_free(&r);
}
END_TEST

START_TEST(errors_are_json)
{
	struct tc_resp r;
	char *big = malloc(20000);
	char u[21000];

	tc_start(&C, 1, "[limits]\nmax_value_bytes = 1000\n");
	r = tc_get(url(0, "/retrieve%s", ""), 400);
	expect_error(&r, 400, "missing_argument");
	tc_resp_free(&r);
	r = tc_get(url(0, "/retrieve?key=%s", ""), 400);
	expect_error(&r, 400, "bad_key_size");
	tc_resp_free(&r);
	r = tc_get(url(0, "/v1/kv/%s", "bad%zzescape"), 400);
	expect_error(&r, 400, "bad_encoding");
	tc_resp_free(&r);
	memset(big, 'k', 600);
	big[600] = '\0';
	r = tc_get(url(0, "/v1/kv/%s", big), 400);
	expect_error(&r, 400, "bad_key_size");
	tc_resp_free(&r);
	r = tc_get(url(0, "/store?key=%s", "k"), 400);
	expect_error(&r, 400, "missing_argument");
	tc_resp_free(&r);
	ck_assert_int_eq(tc_http("PATCH", url(0, "/v1/kv/%s", "k"), "x", 1, NULL,
	                         &r), 0);
	expect_error(&r, 405, "method_not_allowed");
	ck_assert_str_eq(tc_header(&r, "Allow"), "GET, HEAD, PUT, DELETE");
	tc_resp_free(&r);
	ck_assert_int_eq(tc_http("DELETE", url(0, "/retrieve?key=%s", "k"), NULL,
	                         0, NULL, &r), 0);
	expect_error(&r, 405, "method_not_allowed");
	tc_resp_free(&r);
	/* PUT without a length. */
	ck_assert_int_eq(tc_http("PUT", url(0, "/v1/kv/%s", "k"), NULL, 0, NULL,
	                         &r), 0);
	expect_error(&r, 411, "length_required");
	tc_resp_free(&r);
	/* Over max_value_bytes, by Content-Length and in the query. */
	memset(big, 'v', 20000);
	ck_assert_int_eq(tc_http("PUT", url(0, "/v1/kv/%s", "k"), big, 1001, NULL,
	                         &r), 0);
	expect_error(&r, 413, "value_too_large");
	tc_resp_free(&r);
	big[1500] = '\0';
	r = tc_get(url(0, "/store?key=k&value=%s", big), 413);
	expect_error(&r, 413, "value_too_large");
	tc_resp_free(&r);
	/* A request line over the limit. */
	big[19000] = '\0';
	memset(big, 'q', 19000);
	snprintf(u, sizeof(u), "%s/retrieve?key=%s", C.node[0].url, big);
	r = tc_get(u, 414);
	expect_error(&r, 414, "uri_too_long");
	tc_resp_free(&r);
	r = tc_get(url(0, "/no/such/thing%s", ""), 404);
	expect_error(&r, 404, "no_such_endpoint");
	tc_resp_free(&r);
	/* After all that, the server still serves. */
	ck_assert_int_eq(tc_http("PUT", url(0, "/v1/kv/%s", "k"), "ok", 2, NULL,
	                         &r), 0);
	ck_assert_int_eq(r.status, 200);
	tc_resp_free(&r);
	free(big);
}
END_TEST

START_TEST(dead_owner_gives_503_quickly)
{
	struct tc_resp r;
	const char *key;
	char k[64];

	tc_start(&C, 3,
	         "[cluster]\nreplication = 1\nrequest_timeout_ms = 1000\n");
	key = key_owned_by(2, "dead");
	snprintf(k, sizeof(k), "%s", key);
	ck_assert_int_eq(tc_http("PUT", url(0, "/v1/kv/%s", k), "v", 1, NULL, &r),
	                 0);
	ck_assert_int_eq(r.status, 200);
	tc_resp_free(&r);
	tc_stop_node(&C, 2, SIGKILL);
	for (int i = 0; i < 3; i++) {
		r = tc_get(url(0, "/v1/kv/%s", k), 503);
		expect_error(&r, 503, "unavailable");
		/* Well within the configured request timeout. */
		ck_assert_double_lt(r.seconds, 1.0);
		tc_resp_free(&r);
	}
	ck_assert_int_eq(tc_http("PUT", url(1, "/v1/kv/%s", k), "v", 1, NULL, &r),
	                 0);
	expect_error(&r, 503, "unavailable");
	tc_resp_free(&r);
	/* Keys of live shards are unaffected. */
	key = key_owned_by(1, "alive");
	ck_assert_int_eq(tc_http("PUT", url(0, "/v1/kv/%s", key), "v", 1, NULL,
	                         &r), 0);
	ck_assert_int_eq(r.status, 200);
	tc_resp_free(&r);
	r = tc_get(url(0, "/v1/cluster%s", ""), 200);
	ck_assert_ptr_nonnull(strstr(r.body, "\"status\":\"down\""));
	tc_resp_free(&r);
}
END_TEST

/*
 * A peer that accepts connections but never answers (a listening socket
 * nobody accepts from) must only delay the keys it owns: requests for
 * other keys go on at full speed meanwhile.
 */
START_TEST(black_hole_peer_does_not_stall_others)
{
	struct sockaddr_in a;
	CURLM *multi;
	CURL *slow[8];
	struct tc_resp r;
	const char *key;
	char slow_key[64], fast_url[256];
	int hole, running = 1;
	uint64_t t0;

	tc_prepare(&C, 3, "[cluster]\nreplication = 1\nrequest_timeout_ms = 1500\n");
	/* shard-3's port is a black hole. */
	hole = socket(AF_INET, SOCK_STREAM, 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons((uint16_t)C.node[2].port);
	ck_assert_int_eq(bind(hole, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(hole, 64), 0);
	tc_start_node(&C, 0);
	tc_start_node(&C, 1);
	snprintf(slow_key, sizeof(slow_key), "%s", key_owned_by(2, "slow"));
	key = key_owned_by(0, "fast");
	snprintf(fast_url, sizeof(fast_url), "%s/v1/kv/%s", C.node[0].url, key);
	ck_assert_int_eq(tc_http("PUT", fast_url, "f", 1, NULL, &r), 0);
	ck_assert_int_eq(r.status, 200);
	tc_resp_free(&r);

	/* More stuck requests than the server has threads... */
	multi = curl_multi_init();
	for (int i = 0; i < 8; i++) {
		slow[i] = curl_easy_init();
		curl_easy_setopt(slow[i], CURLOPT_URL,
		                 url(0, "/v1/kv/%s", slow_key));
		curl_easy_setopt(slow[i], CURLOPT_TIMEOUT_MS, 10000L);
		curl_easy_setopt(slow[i], CURLOPT_WRITEFUNCTION, fwrite);
		curl_easy_setopt(slow[i], CURLOPT_WRITEDATA, stderr);
		curl_multi_add_handle(multi, slow[i]);
	}
	t0 = tu_now_ms();
	while (tu_now_ms() - t0 < 200 && running)
		curl_multi_perform(multi, &running), usleep(5000);
	/* ...and still, a key of a healthy shard answers at once. */
	for (int i = 0; i < 5; i++) {
		r = tc_get(fast_url, 200);
		ck_assert_double_lt(r.seconds, 0.5);
		tc_resp_free(&r);
	}
	/* The stuck ones end with 503 once the request timeout passes. */
	t0 = tu_now_ms();
	while (running && tu_now_ms() - t0 < 10000) {
		curl_multi_perform(multi, &running);
		curl_multi_poll(multi, NULL, 0, 100, NULL);
	}
	ck_assert_int_eq(running, 0);
	for (int i = 0; i < 8; i++) {
		long code = 0;

		curl_easy_getinfo(slow[i], CURLINFO_RESPONSE_CODE, &code);
		ck_assert_int_eq(code, 503);
		curl_multi_remove_handle(multi, slow[i]);
		curl_easy_cleanup(slow[i]);
	}
	curl_multi_cleanup(multi);
	close(hole);
}
END_TEST

START_TEST(replicas_survive_a_node)
{
	struct tc_resp r;
	char key[32];

	tc_start(&C, 3, NULL); /* N=3, W=2, R=2 */
	for (int i = 0; i < 30; i++) {
		snprintf(key, sizeof(key), "rep%d", i);
		ck_assert_int_eq(tc_http("PUT", url(i % 3, "/v1/kv/%s", key), key,
		                         strlen(key), NULL, &r), 0);
		ck_assert_int_eq(r.status, 200);
		ck_assert_ptr_nonnull(strstr(r.body, "\"replicas\":"));
		tc_resp_free(&r);
	}
	tc_stop_node(&C, 0, SIGKILL);
	for (int i = 0; i < 30; i++) {
		snprintf(key, sizeof(key), "rep%d", i);
		r = tc_get(url(1 + i % 2, "/v1/kv/%s", key), 200);
		ck_assert_str_eq(r.body, key);
		tc_resp_free(&r);
	}
	/* Writes still reach W=2 on the two that are left. */
	ck_assert_int_eq(tc_http("PUT", url(1, "/v1/kv/%s", "rep0"), "new", 3,
	                         NULL, &r), 0);
	ck_assert_int_eq(r.status, 200);
	tc_resp_free(&r);
	r = tc_get(url(2, "/v1/kv/%s", "rep0"), 200);
	ck_assert_str_eq(r.body, "new");
	tc_resp_free(&r);
	/* The stopped node comes back; a read repairs its stale copy. */
	tc_start_node(&C, 0);
	r = tc_get(url(0, "/v1/kv/%s", "rep0"), 200);
	ck_assert_str_eq(r.body, "new");
	tc_resp_free(&r);
	{
		uint64_t deadline = tu_now_ms() + 5000;
		int repaired = 0;

		/* r=1 on an owner: its own store answers. */
		while (!repaired && tu_now_ms() < deadline) {
			r = tc_get(url(0, "/v1/kv/%s?r=1", "rep0"), 200);
			repaired = strcmp(r.body, "new") == 0;
			tc_resp_free(&r);
			if (!repaired)
				usleep(20000);
		}
		ck_assert_msg(repaired, "read repair did not update shard-1");
	}
	/* With two of three down, a quorum is impossible: 503, not a hang. */
	tc_stop_node(&C, 1, SIGKILL);
	tc_stop_node(&C, 2, SIGKILL);
	r = tc_get(url(0, "/v1/kv/%s", "rep1"), 503);
	expect_error(&r, 503, "unavailable");
	tc_resp_free(&r);
	ck_assert_int_eq(tc_http("PUT", url(0, "/v1/kv/%s", "rep1"), "x", 1, NULL,
	                         &r), 0);
	expect_error(&r, 503, "unavailable");
	tc_resp_free(&r);
}
END_TEST

START_TEST(redirect_mode)
{
	struct tc_resp r;
	const char *key;
	char want[256], k[64];

	tc_start(&C, 3, "[cluster]\nreplication = 1\nrouting = \"redirect\"\n");
	key = key_owned_by(1, "rd");
	snprintf(k, sizeof(k), "%s", key);
	ck_assert_int_eq(tc_http("PUT", url(1, "/v1/kv/%s", k), "r", 1, NULL, &r),
	                 0);
	ck_assert_int_eq(r.status, 200);
	tc_resp_free(&r);
	r = tc_get(url(0, "/retrieve?key=%s", k), 307);
	snprintf(want, sizeof(want), "%s/retrieve?key=%s", C.node[1].url, k);
	ck_assert_str_eq(tc_header(&r, "Location"), want);
	tc_resp_free(&r);
	ck_assert_int_eq(tc_http("PUT", url(2, "/v1/kv/%s", k), "x", 1, NULL, &r),
	                 0);
	ck_assert_int_eq(r.status, 307);
	tc_resp_free(&r);
}
END_TEST

/*
 * The peer protocol's headers mean nothing on client endpoints: a client
 * that sends X-Kvshard-Hop (which once made a node serve a request as if
 * another node had forwarded it) is routed like any other, so a
 * conditional write still goes to the key's primary and a read to an
 * owner.
 */
START_TEST(peer_headers_are_ignored_from_clients)
{
	static const char *hop[] = {"X-Kvshard-Hop: shard-9", NULL};
	static const char *hop_create[] = {"X-Kvshard-Hop: shard-9",
	                                   "If-None-Match: *", NULL};
	struct tc_resp r;
	char key[64];

	tc_start(&C, 3, NULL); /* N = 3: every node owns every key */
	snprintf(key, sizeof(key), "%s", key_owned_by(0, "hop"));
	/* shard-1 decides the key's conditional writes; shard-2 must pass
	 * the write on, header or not. */
	ck_assert_int_eq(tc_http("PUT", url(1, "/v1/kv/%s", key), "v", 1,
	                         hop_create, &r), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(tc_header(&r, "X-Kvshard-Shard"), C.node[0].name);
	ck_assert_ptr_nonnull(strstr(r.body, "\"shard\":\"shard-1\""));
	tc_resp_free(&r);
	tc_stop(&C);
	/* With one replica, a read through a non-owner is forwarded, not
	 * refused. */
	tc_start(&C, 2, "[cluster]\nreplication = 1\n");
	snprintf(key, sizeof(key), "%s", key_owned_by(1, "hop"));
	ck_assert_int_eq(tc_http("GET", url(0, "/v1/kv/%s", key), NULL, 0, hop,
	                         &r), 0);
	expect_error(&r, 404, "not_found");
	ck_assert_str_eq(tc_header(&r, "X-Kvshard-Shard"), C.node[1].name);
	tc_resp_free(&r);
}
END_TEST

START_TEST(admin_endpoints)
{
	struct tc_resp r;

	tc_start(&C, 2, NULL);
	ck_assert_int_eq(tc_http("PUT", url(0, "/v1/kv/%s", "a"), "1", 1, NULL,
	                         &r), 0);
	tc_resp_free(&r);
	r = tc_get(url(1, "/health%s", ""), 200);
	ck_assert_ptr_nonnull(strstr(r.body, "\"status\":\"ok\""));
	tc_resp_free(&r);
	r = tc_get(url(1, "/v1/cluster%s", ""), 200);
	ck_assert_ptr_nonnull(strstr(r.body, "\"epoch\":1"));
	ck_assert_ptr_nonnull(strstr(r.body, "\"replication\":2"));
	ck_assert_ptr_nonnull(strstr(r.body, "\"name\":\"shard-2\""));
	ck_assert_ptr_nonnull(strstr(r.body, C.node[0].url + 7));
	tc_resp_free(&r);
	r = tc_get(url(0, "/v1/status%s", ""), 200);
	ck_assert_ptr_nonnull(strstr(r.body, "\"shard\":\"shard-1\""));
	ck_assert_ptr_nonnull(strstr(r.body, "\"keys\":1"));
	ck_assert_ptr_nonnull(strstr(r.body, "\"uptime_s\":"));
	tc_resp_free(&r);
	r = tc_get(url(0, "/metrics%s", ""), 200);
	ck_assert_ptr_nonnull(strstr(r.body,
	        "kvshard_http_requests_total{endpoint=\"kv\",status=\"200\"} 1"));
	ck_assert_ptr_nonnull(strstr(r.body,
	        "kvshard_http_request_duration_seconds_bucket{endpoint=\"kv\""));
	ck_assert_ptr_nonnull(strstr(r.body, "kvshard_keys 1"));
	ck_assert_ptr_nonnull(strstr(r.body, "kvshard_replica_writes_total 1"));
	ck_assert_ptr_nonnull(strstr(r.body, "kvshard_peer_errors_total 0"));
	tc_resp_free(&r);
}
END_TEST

START_TEST(keep_alive_reuses_the_connection)
{
	struct tc_resp r;
	void *h = NULL;

	tc_start(&C, 1, NULL);
	for (int i = 0; i < 5; i++) {
		ck_assert_int_eq(tc_http_on(&h, "PUT", url(0, "/v1/kv/%s", "ka"), "v",
		                            1, NULL, &r), 0);
		ck_assert_int_eq(r.status, 200);
		ck_assert_int_eq(r.connects, i == 0 ? 1 : 0);
		tc_resp_free(&r);
		ck_assert_int_eq(tc_http_on(&h, "GET", url(0, "/v1/kv/%s", "ka"),
		                            NULL, 0, NULL, &r), 0);
		ck_assert_int_eq(r.status, 200);
		ck_assert_int_eq(r.connects, 0);
		tc_resp_free(&r);
		ck_assert_int_eq(tc_http_on(&h, "GET", url(0, "/v1/kv/%s", "none"),
		                            NULL, 0, NULL, &r), 0);
		ck_assert_int_eq(r.status, 404);
		ck_assert_int_eq(r.connects, 0);
		tc_resp_free(&r);
	}
	tc_http_close(&h);
}
END_TEST

START_TEST(sigterm_then_restart_keeps_data)
{
	struct tc_resp r;
	int status;

	tc_start(&C, 1, NULL);
	for (int i = 0; i < 50; i++) {
		char key[16];

		snprintf(key, sizeof(key), "d%d", i);
		ck_assert_int_eq(tc_http("PUT", url(0, "/v1/kv/%s", key), key,
		                         strlen(key), NULL, &r), 0);
		ck_assert_int_eq(r.status, 200);
		tc_resp_free(&r);
	}
	status = tc_stop_node(&C, 0, SIGTERM);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	tc_start_node(&C, 0);
	for (int i = 0; i < 50; i++) {
		char key[16];

		snprintf(key, sizeof(key), "d%d", i);
		r = tc_get(url(0, "/v1/kv/%s", key), 200);
		ck_assert_str_eq(r.body, key);
		tc_resp_free(&r);
	}
	status = tc_stop_node(&C, 0, SIGINT);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
}
END_TEST

/* Run kvshard-server with args; return its exit status and stderr. */
static int run_server(const char *const *args, char *err, size_t errlen)
{
	int fds[2], status;
	pid_t pid;
	ssize_t n;
	size_t got = 0;
	const char *argv[16] = {"kvshard-server"};

	for (int i = 0; args[i] != NULL && i < 14; i++)
		argv[i + 1] = args[i];
	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	if (pid == 0) {
		dup2(fds[1], STDERR_FILENO);
		dup2(fds[1], STDOUT_FILENO);
		close(fds[0]);
		execv(tu_build_path("server/kvshard-server"), (char **)argv);
		_exit(127);
	}
	close(fds[1]);
	while (got + 1 < errlen &&
	       (n = read(fds[0], err + got, errlen - 1 - got)) > 0)
		got += (size_t)n;
	err[got] = '\0';
	close(fds[0]);
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

START_TEST(bad_start_writes_nothing)
{
	char err[2048], path[700], data[700];
	struct stat st;
	int blocker;

	tc_prepare(&C, 1, NULL);
	snprintf(data, sizeof(data), "%s/data", C.dir);
	/* The port is taken. */
	blocker = socket(AF_INET, SOCK_STREAM, 0);
	{
		struct sockaddr_in a;

		memset(&a, 0, sizeof(a));
		a.sin_family = AF_INET;
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		a.sin_port = htons((uint16_t)C.node[0].port);
		ck_assert_int_eq(bind(blocker, (struct sockaddr *)&a, sizeof(a)), 0);
		ck_assert_int_eq(listen(blocker, 1), 0);
	}
	{
		const char *args[] = {"-c", C.config, "-s", "shard-1", "-d", data,
		                      NULL};

		ck_assert_int_ne(run_server(args, err, sizeof(err)), 0);
		ck_assert_ptr_nonnull(strstr(err, "cannot listen on"));
		ck_assert_ptr_nonnull(strstr(err, "Address already in use"));
		ck_assert_int_ne(stat(data, &st), 0);
	}
	close(blocker);
	/* A config error: file:line:column and nothing written. */
	snprintf(path, sizeof(path), "%s/bad.toml", C.dir);
	{
		static const char bad[] = "[[shards]]\nname = \"s\"\nidx = 0\n"
		                          "adress = \"127.0.0.1:1\"\n";

		ck_assert_int_eq(tu_write_file(path, bad, sizeof(bad) - 1), 0);
	}
	{
		const char *args[] = {"--config", path, "--shard", "s",
		                      "--data-dir", data, NULL};
		char want[800];

		ck_assert_int_eq(run_server(args, err, sizeof(err)), 2);
		snprintf(want, sizeof(want), "%s:4:1: unknown key 'adress' in "
		                             "[[shards]]",
		         path);
		ck_assert_msg(strstr(err, want) != NULL, "got: %s", err);
		ck_assert_int_ne(stat(data, &st), 0);
	}
	{
		const char *args[] = {"-c", C.config, "-s", "nope", NULL};

		ck_assert_int_eq(run_server(args, err, sizeof(err)), 2);
		ck_assert_ptr_nonnull(strstr(err, "no shard named \"nope\""));
	}
	{
		const char *args[] = {"--version", NULL};

		ck_assert_int_eq(run_server(args, err, sizeof(err)), 0);
		ck_assert_ptr_nonnull(strstr(err, KVS_VERSION_STRING));
	}
	{
		const char *args[] = {"--bogus", NULL};

		ck_assert_int_eq(run_server(args, err, sizeof(err)), 2);
		ck_assert_ptr_nonnull(strstr(err, "Usage:"));
	}
}
END_TEST

START_TEST(tokens_are_enforced)
{
	static const char *none[] = {NULL};
	static const char *wrong[] = {"Authorization: Bearer nope", NULL};
	static const char *reader[] = {"Authorization: Bearer rt", NULL};
	static const char *writer[] = {"Authorization: Bearer ct", NULL};
	struct tc_resp r;

	tc_start(&C, 2, "[auth]\nclient_tokens = [\"ct\"]\nread_tokens = [\"rt\"]\n"
	                "cluster_secret = \"s3\"\n");
	ck_assert_int_eq(tc_http("PUT", url(0, "/v1/kv/%s", "a"), "1", 1, none,
	                         &r), 0);
	expect_error(&r, 401, "unauthorized");
	ck_assert_ptr_nonnull(tc_header(&r, "WWW-Authenticate"));
	tc_resp_free(&r);
	ck_assert_int_eq(tc_http("PUT", url(0, "/v1/kv/%s", "a"), "1", 1, wrong,
	                         &r), 0);
	expect_error(&r, 401, "unauthorized");
	tc_resp_free(&r);
	ck_assert_int_eq(tc_http("PUT", url(0, "/v1/kv/%s", "a"), "1", 1, reader,
	                         &r), 0);
	expect_error(&r, 403, "forbidden");
	tc_resp_free(&r);
	ck_assert_int_eq(tc_http("PUT", url(1, "/v1/kv/%s", "a"), "1", 1, writer,
	                         &r), 0);
	ck_assert_int_eq(r.status, 200);
	tc_resp_free(&r);
	ck_assert_int_eq(tc_http("GET", url(0, "/v1/kv/%s", "a"), NULL, 0, reader,
	                         &r), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.body, "1");
	tc_resp_free(&r);
	/* Peers' endpoints want the cluster secret, tokens are not enough. */
	ck_assert_int_eq(tc_http("POST", url(0, "/internal/ops%s", ""), "x", 1,
	                         writer, &r), 0);
	expect_error(&r, 403, "forbidden");
	tc_resp_free(&r);
	ck_assert_int_eq(tc_http("GET", url(0, "/internal/other%s", ""), NULL, 0,
	                         none, &r), 0);
	expect_error(&r, 401, "unauthorized");
	tc_resp_free(&r);
	/* Health stays open for load balancers. */
	r = tc_get(url(0, "/health%s", ""), 200);
	tc_resp_free(&r);
}
END_TEST

/* A peer (or anyone who reaches /internal) sends a version far ahead of
 * the node's clock: it is refused with clock_skew, counted, and never
 * adopted, so later writes of the key still win. */
START_TEST(versions_far_ahead_are_refused)
{
	static const char *peer[] = {"Content-Type: " KVS_TYPE_PEER, NULL};
	const uint64_t planted[] = {
	        UINT64_MAX,
	        KVS_HLC_MAKE(kvs__wall_ms(NULL) + 3600u * 1000u, 0),
	};
	struct tc_resp r;
	char key[64];

	tc_start(&C, 2, NULL);
	snprintf(key, sizeof(key), "%s", key_owned_by(0, "skew"));
	ck_assert_int_eq(tc_http("PUT", url(0, "/v1/kv/%s", key), "old", 3,
	                         NULL, &r), 0);
	ck_assert_int_eq(r.status, 200);
	tc_resp_free(&r);
	for (size_t i = 0; i < KVS_ARRAY_SIZE(planted); i++) {
		kvs__buf b;
		kvs__preq op;
		kvs__pres res;

		memset(&op, 0, sizeof(op));
		op.code = KVS__P_APPLY;
		op.stamp.hlc = planted[i];
		op.stamp.shard = 1;
		op.key = key;
		op.key_len = strlen(key);
		op.value = "planted";
		op.value_len = 7;
		kvs__buf_init(&b, 0);
		kvs__peer_req_head(&b, 1, 0, 1);
		kvs__peer_req_op(&b, &op);
		ck_assert_int_eq(b.rc, KVS_OK);
		ck_assert_int_eq(tc_http("POST", url(0, "/internal/ops%s", ""),
		                         b.data, b.len, peer, &r), 0);
		kvs__buf_free(&b);
		ck_assert_int_eq(r.status, 200);
		ck_assert_int_eq(kvs__peer_res_decode(r.body, r.len, &res, 1),
		                 KVS_OK);
		ck_assert_int_eq(res.rc, KVS_ECLOCK);
		tc_resp_free(&r);
	}
	r = tc_get(url(0, "/v1/kv/%s?r=1", key), 200);
	ck_assert_str_eq(r.body, "old");
	tc_resp_free(&r);
	/* Later writes still win, through either node. */
	ck_assert_int_eq(tc_http("PUT", url(1, "/v1/kv/%s", key), "new", 3,
	                         NULL, &r), 0);
	ck_assert_int_eq(r.status, 200);
	tc_resp_free(&r);
	r = tc_get(url(0, "/v1/kv/%s?r=1", key), 200);
	ck_assert_str_eq(r.body, "new");
	tc_resp_free(&r);
	r = tc_get(url(0, "/metrics%s", ""), 200);
	ck_assert_ptr_nonnull(strstr(r.body, "kvshard_clock_refusals_total 2\n"));
	tc_resp_free(&r);
}
END_TEST

/* Batches that cJSON would read one way and another reader another, or
 * whose meaning is unclear, are refused whole: nothing is written. */
START_TEST(batch_documents_are_read_strictly)
{
	static const char *const bad[] = {
	    /* A raw control character in a string. */
	    "{\"ops\":[{\"op\":\"put\",\"key\":\"x\",\"value\":\"a\tb\"}]}",
	    /* A condition that is not a boolean. */
	    "{\"ops\":[{\"op\":\"put\",\"key\":\"x\",\"value\":\"v\","
	    "\"if_absent\":\"yes\"}]}",
	    /* if_absent on a delete, even with if_exists. */
	    "{\"ops\":[{\"op\":\"delete\",\"key\":\"x\",\"if_absent\":true,"
	    "\"if_exists\":true}]}",
	    /* A field given twice. */
	    "{\"ops\":[{\"op\":\"put\",\"key\":\"x\",\"value\":\"v\","
	    "\"key\":\"y\"}]}",
	    /* "ops" given twice. */
	    "{\"ops\":[{\"op\":\"put\",\"key\":\"x\",\"value\":\"v\"}],"
	    "\"ops\":[]}",
	    /* Something after the document. */
	    "{\"ops\":[{\"op\":\"put\",\"key\":\"x\",\"value\":\"v\"}]}{}",
	    /* Not JSON numbers. */
	    "{\"ops\":[{\"op\":\"put\",\"key\":\"x\",\"value\":\"v\"}],"
	    "\"n\":01}",
	    /* An operation with too many values. */
	    "{\"ops\":[{\"op\":\"put\",\"key\":\"x\",\"value\":\"v\","
	    "\"a\":1,\"b\":1,\"c\":1,\"d\":1,\"e\":1,\"f\":1,\"g\":1,\"h\":1,"
	    "\"i\":1,\"j\":1,\"k\":1,\"l\":1,\"m\":1}]}",
	};
	static const char ok[] =
	    "{\"\\u006fps\":[{\"op\":\"put\",\"key\":\"x\",\"value\":\"v\","
	    "\"if_absent\":false,\"n\":-2.5e+3}],\"note\":[1,null]}";
	struct tc_resp r;

	tc_start(&C, 1, NULL);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_int_eq(tc_http("POST", url(0, "/v1/batch%s", ""),
		                         bad[i], strlen(bad[i]), NULL, &r),
		                 0);
		ck_assert_msg(r.status == 400, "%zu: %ld %s", i, r.status,
		              r.body);
		expect_error(&r, 400, "bad_batch");
		tc_resp_free(&r);
		r = tc_get(url(0, "/v1/kv/%s", "x"), 404);
		tc_resp_free(&r);
	}
	ck_assert_int_eq(tc_http("POST", url(0, "/v1/batch%s", ""), ok,
	                         strlen(ok), NULL, &r),
	                 0);
	ck_assert_msg(r.status == 200, "%ld %s", r.status, r.body);
	tc_resp_free(&r);
	r = tc_get(url(0, "/v1/kv/%s", "x"), 200);
	ck_assert_str_eq(r.body, "v");
	tc_resp_free(&r);
}
END_TEST

/* Answers capped at ANSWER_CAP bytes, values of CAP_VALUE_BYTES: the
 * least cap such values allow is 4/3 of one plus 64 KiB, 66872. */
#define ANSWER_CAP      70000
#define CAP_VALUE_BYTES 1000
#define CAP_KEYS        200
static const char cap_toml[] = "[cluster]\nreplication = 1\n"
                               "[limits]\nmax_value_bytes = 1000\n"
                               "max_answer_bytes = 70000\n";

static void cap_key(int i, char *key, size_t size)
{
	snprintf(key, size, "cap-%03d", i);
}

/* The value of key i: CAP_VALUE_BYTES bytes, its key first. */
static void cap_value(int i, char *v)
{
	char key[16];

	cap_key(i, key, sizeof(key));
	memset(v, 'a' + i % 26, CAP_VALUE_BYTES);
	memcpy(v, key, strlen(key));
}

static void cap_fill(void)
{
	char key[16], v[CAP_VALUE_BYTES];
	struct tc_resp r;

	for (int i = 0; i < CAP_KEYS; i++) {
		cap_key(i, key, sizeof(key));
		cap_value(i, v);
		ck_assert_int_eq(tc_http("PUT", url(i % C.n, "/v1/kv/%s", key),
		                         v, sizeof(v), NULL, &r),
		                 0);
		ck_assert_int_eq(r.status, 200);
		tc_resp_free(&r);
	}
}

/* Does o's "value_b64" hold key i's value? */
static int cap_value_is(const cJSON *o, int i)
{
	const cJSON *b = cJSON_GetObjectItemCaseSensitive(o, "value_b64");
	char want[CAP_VALUE_BYTES];
	unsigned char *got;
	size_t len;
	int same;

	if (!cJSON_IsString(b) ||
	    kvs__b64_decode_alloc(b->valuestring, strlen(b->valuestring), &got,
	                          &len) != KVS_OK)
		return 0;
	cap_value(i, want);
	same = len == sizeof(want) && memcmp(got, want, len) == 0;
	free(got);
	return same;
}

static kvs_client *cap_client(void)
{
	char seeds[256], err[KVS_ERRBUF_SIZE];
	kvs_client_options o;
	kvs_client *c = NULL;

	snprintf(seeds, sizeof(seeds), "127.0.0.1:%d,127.0.0.1:%d",
	         C.node[0].port, C.node[1].port);
	kvs_client_options_init(&o);
	o.seeds = seeds;
	ck_assert_msg(kvs_client_open(&c, &o, err) == KVS_OK, "%s", err);
	return c;
}

struct cap_scan {
	int n;
	int ok; /* every record in order with its value */
};

static int cap_record(void *ud, const kvs_record *rec)
{
	struct cap_scan *s = ud;
	char key[16], v[CAP_VALUE_BYTES];

	cap_key(s->n, key, sizeof(key));
	cap_value(s->n, v);
	s->ok &= rec->key_len == strlen(key) &&
	         memcmp(rec->key, key, rec->key_len) == 0 &&
	         rec->value_len == sizeof(v) &&
	         memcmp(rec->value, v, sizeof(v)) == 0;
	s->n++;
	return 0;
}

/* A scan with values stops its page before max_answer_bytes, and its
 * "next" continues where it stopped: following it gives every key once,
 * in order, over the HTTP API and through the C client. */
START_TEST(scan_pages_stop_at_max_answer_bytes)
{
	char after[32] = "", u[160];
	int got = 0, pages = 0;
	struct cap_scan s = {0, 1};
	kvs_client_scan_options so;
	kvs_client *c;
	struct tc_resp r;
	void *next = NULL;
	size_t next_len = 0;

	tc_start(&C, 2, cap_toml);
	cap_fill();
	do {
		const cJSON *keys, *nx, *it;
		cJSON *doc;

		snprintf(u, sizeof(u), "/v1/kv?prefix=cap-&values=1%s%s",
		         after[0] ? "&start_after=" : "", after);
		r = tc_get(url(pages % 2, "%s", u), 200);
		ck_assert_uint_le(r.len, ANSWER_CAP);
		doc = cJSON_Parse(r.body);
		keys = cJSON_GetObjectItemCaseSensitive(doc, "keys");
		nx = cJSON_GetObjectItemCaseSensitive(doc, "next");
		ck_assert(cJSON_IsArray(keys));
		ck_assert_int_gt(cJSON_GetArraySize(keys), 0);
		cJSON_ArrayForEach(it, keys) {
			const cJSON *k =
			    cJSON_GetObjectItemCaseSensitive(it, "key");
			char want[16];

			cap_key(got, want, sizeof(want));
			ck_assert(cJSON_IsString(k));
			ck_assert_str_eq(k->valuestring, want);
			ck_assert_msg(cap_value_is(it, got), "value of %s",
			              want);
			got++;
		}
		/* A page cut by bytes, not by limit, says where to go on. */
		if (pages == 0)
			ck_assert(cJSON_IsString(nx) && got < CAP_KEYS);
		after[0] = '\0';
		if (cJSON_IsString(nx))
			snprintf(after, sizeof(after), "%s", nx->valuestring);
		else
			ck_assert(cJSON_IsNull(nx));
		cJSON_Delete(doc);
		tc_resp_free(&r);
		ck_assert_int_lt(++pages, 50);
	} while (after[0] != '\0');
	ck_assert_int_eq(got, CAP_KEYS);
	ck_assert_int_ge(pages, CAP_KEYS * CAP_VALUE_BYTES / ANSWER_CAP);
	/* Without values, one page holds them all. */
	r = tc_get(url(0, "/v1/kv?prefix=cap-%s", ""), 200);
	ck_assert_ptr_nonnull(strstr(r.body, "\"next\":null"));
	tc_resp_free(&r);
	/* The client follows "next" too. */
	c = cap_client();
	memset(&so, 0, sizeof(so));
	so.prefix = "cap-";
	so.prefix_len = 4;
	so.values = 1;
	pages = 0;
	do {
		so.start_after = next;
		so.start_after_len = next_len;
		next = NULL;
		ck_assert_int_eq(
		    kvs_client_scan(c, &so, cap_record, &s, &next, &next_len),
		    KVS_OK);
		kvs_free((void *)so.start_after);
		ck_assert_int_lt(++pages, 50);
	} while (next != NULL);
	ck_assert_int_eq(s.n, CAP_KEYS);
	ck_assert(s.ok);
	ck_assert_int_ge(pages, 2);
	kvs_client_close(c);
}
END_TEST

/* A batch whose values would pass max_answer_bytes: every operation
 * runs, gets from "truncated_at" on answer 413 answer_too_large, and
 * asking again for those gives the rest; the client's mget returns every
 * value. */
START_TEST(batch_answers_stop_at_max_answer_bytes)
{
	enum { GETS = 90, PUTS = 10 };
	static kvs_key keys[CAP_KEYS];
	static char names[CAP_KEYS][16];
	kvs_key_result res[GETS];
	int have[GETS] = {0}, rounds = 0, from = 0;
	char body[8192], key[16];
	struct tc_resp r;
	kvs_client *c;

	tc_start(&C, 2, cap_toml);
	cap_fill();
	while (from < GETS) {
		const cJSON *results, *cut, *it;
		int i = from, end = from == 0 ? GETS + PUTS : GETS, cut_at;
		size_t n;
		cJSON *doc;

		n = (size_t)snprintf(body, sizeof(body), "{\"ops\":[");
		for (int k = from; k < end; k++) {
			if (k < GETS)
				cap_key(k, key, sizeof(key));
			else
				snprintf(key, sizeof(key), "new-%d", k);
			n += (size_t)snprintf(
			    body + n, sizeof(body) - n,
			    "%s{\"op\":\"%s\",\"key\":\"%s\"%s}",
			    k > from ? "," : "", k < GETS ? "get" : "put", key,
			    k < GETS ? "" : ",\"value\":\"v\"");
		}
		n += (size_t)snprintf(body + n, sizeof(body) - n, "]}");
		ck_assert_int_eq(tc_http("POST",
		                         url(rounds % 2, "/v1/batch%s", ""),
		                         body, n, NULL, &r),
		                 0);
		ck_assert_msg(r.status == 200, "%ld %s", r.status, r.body);
		ck_assert_uint_le(r.len, ANSWER_CAP);
		doc = cJSON_Parse(r.body);
		results = cJSON_GetObjectItemCaseSensitive(doc, "results");
		cut = cJSON_GetObjectItemCaseSensitive(doc, "truncated_at");
		ck_assert_int_eq(cJSON_GetArraySize(results), end - from);
		cut_at =
		    cJSON_IsNumber(cut) ? from + (int)cut->valuedouble : end;
		/* The first round cannot hold 90 values of 1336 bytes. */
		if (rounds == 0)
			ck_assert(cJSON_IsNumber(cut) && cut_at > 0 &&
			          cut_at < GETS);
		cJSON_ArrayForEach(it, results) {
			const cJSON *st =
			    cJSON_GetObjectItemCaseSensitive(it, "status");
			const cJSON *e =
			    cJSON_GetObjectItemCaseSensitive(it, "error");

			ck_assert(cJSON_IsNumber(st));
			if (i < cut_at || i >= GETS) {
				ck_assert_int_eq((int)st->valuedouble, 200);
				if (i < GETS) {
					ck_assert(cap_value_is(it, i));
					have[i]++;
				} else {
					ck_assert_ptr_nonnull(
					    cJSON_GetObjectItemCaseSensitive(
					        it, "replicas"));
				}
			} else {
				ck_assert_int_eq((int)st->valuedouble, 413);
				ck_assert(cJSON_IsString(e));
				ck_assert_str_eq(e->valuestring,
				                 "answer_too_large");
				ck_assert_ptr_null(
				    cJSON_GetObjectItemCaseSensitive(
				        it, "value_b64"));
			}
			i++;
		}
		cJSON_Delete(doc);
		tc_resp_free(&r);
		ck_assert_int_gt(cut_at, from); /* progress */
		from = cut_at;
		ck_assert_int_lt(++rounds, 20);
	}
	ck_assert_int_ge(rounds, 2);
	for (int i = 0; i < GETS; i++)
		ck_assert_int_eq(have[i], 1);
	/* Every write of the first round was made, once. */
	for (int k = GETS; k < GETS + PUTS; k++) {
		snprintf(key, sizeof(key), "new-%d", k);
		r = tc_get(url(k % 2, "/v1/kv/%s", key), 200);
		ck_assert_str_eq(r.body, "v");
		tc_resp_free(&r);
	}
	/* The client gets every value, asking again for those left out. */
	for (int i = 0; i < GETS; i++) {
		cap_key(i, names[i], sizeof(names[i]));
		keys[i].key = names[i];
		keys[i].len = strlen(names[i]);
	}
	c = cap_client();
	ck_assert_int_eq(kvs_client_mget(c, keys, GETS, res), KVS_OK);
	for (int i = 0; i < GETS; i++) {
		char want[CAP_VALUE_BYTES];

		cap_value(i, want);
		ck_assert_msg(res[i].rc == KVS_OK, "%d: %s", i,
		              kvs_strerror(res[i].rc));
		ck_assert_uint_eq(res[i].value_len, sizeof(want));
		ck_assert(memcmp(res[i].value, want, sizeof(want)) == 0);
	}
	kvs_client_results_free(res, GETS);
	kvs_client_close(c);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("server");
	TCase *tc = tcase_create("cluster");
	SRunner *sr;
	int failed;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, seed_commands_through_every_node);
	tcase_add_test(tc, forwarding_with_one_replica);
	tcase_add_test(tc, binary_values_and_large_values);
	tcase_add_test(tc, compare_and_swap);
	tcase_add_test(tc, errors_are_json);
	tcase_add_test(tc, if_match_follows_the_rfc);
	tcase_add_test(tc, unknown_query_arguments_are_refused);
	tcase_add_test(tc, admin_calls_answer_static_topology);
	tcase_add_test(tc, batch_strings_with_nul_are_refused);
	tcase_add_test(tc, dead_owner_gives_503_quickly);
	tcase_add_test(tc, black_hole_peer_does_not_stall_others);
	tcase_add_test(tc, replicas_survive_a_node);
	tcase_add_test(tc, redirect_mode);
	tcase_add_test(tc, peer_headers_are_ignored_from_clients);
	tcase_add_test(tc, admin_endpoints);
	tcase_add_test(tc, keep_alive_reuses_the_connection);
	tcase_add_test(tc, sigterm_then_restart_keeps_data);
	tcase_add_test(tc, bad_start_writes_nothing);
	tcase_add_test(tc, tokens_are_enforced);
	tcase_add_test(tc, versions_far_ahead_are_refused);
	tcase_add_test(tc, batch_documents_are_read_strictly);
	tcase_add_test(tc, scan_pages_stop_at_max_answer_bytes);
	tcase_add_test(tc, batch_answers_stop_at_max_answer_bytes);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	curl_global_cleanup();
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
