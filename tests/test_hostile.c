/*
 * test_hostile.c - requests an attacker or a broken client sends, as raw
 * bytes on a socket: each gets its 4xx, and the node goes on serving
 * normal requests with every value it held.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "cluster.h"
#include "kvshard.h"
#include "util.h"
#include "testutil.h"

static struct tc_cluster C;

static void teardown(void)
{
	tc_stop(&C);
}

/* A request and the status it must get; code: the JSON error code, when
 * the answer is kvshard's own (NULL: libmicrohttpd's, or no check). */
struct hostile {
	const char *what;
	const char *request; /* FILL: a filler the case asks for */
	long status;
	const char *code;
	int filler; /* bytes of 'a' in place of FILL */
};

#define H11 " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"

static const struct hostile cases[] = {
	/* Framing: what a proxy in front could read another way. */
	{"two different Content-Length",
	 "PUT /v1/kv/k" H11 "Content-Length: 1\r\nContent-Length: 2\r\n\r\nab",
	 400, "bad_request", 0},
	{"Content-Length and Transfer-Encoding",
	 "PUT /v1/kv/k" H11 "Content-Length: 3\r\nTransfer-Encoding: chunked"
	 "\r\n\r\n1\r\na\r\n0\r\n\r\n",
	 400, "bad_request", 0},
	{"HTTP/1.1 without Host",
	 "GET /v1/kv/k0 HTTP/1.1\r\nConnection: close\r\n\r\n", 400,
	 "bad_request", 0},
	{"two Host headers",
	 "GET /v1/kv/k0 HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: "
	 "close\r\n\r\n",
	 400, "bad_request", 0},
	{"control byte in the path", "GET /v1/kv/a\x01z" H11 "\r\n", 400,
	 "bad_request", 0},
	{"DEL in the path", "GET /v1/kv/a\x7fz" H11 "\r\n", 400, "bad_request",
	 0},
	{"tab in the query", "GET /retrieve?key=a\tz" H11 "\r\n", 400,
	 "bad_request", 0},
	{"negative Content-Length",
	 "PUT /v1/kv/k" H11 "Content-Length: -1\r\n\r\n", 400, NULL, 0},
	{"Content-Length with a sign",
	 "PUT /v1/kv/k" H11 "Content-Length: +1\r\n\r\na", 400, NULL, 0},
	{"Content-Length not a number",
	 "PUT /v1/kv/k" H11 "Content-Length: abc\r\n\r\n", 400, NULL, 0},
	{"header line without a colon",
	 "GET /v1/kv/k0" H11 "Nonsense\r\n\r\n", 400, NULL, 0},
	{"chunk size not hex",
	 "PUT /v1/kv/k" H11 "Transfer-Encoding: chunked\r\n\r\nzz\r\na\r\n0"
	 "\r\n\r\n",
	 400, NULL, 0},
	/* Methods and endpoints. */
	{"unknown method", "BREW /v1/kv/k0" H11 "\r\n", 405,
	 "method_not_allowed", 0},
	{"PATCH on a key", "PATCH /v1/kv/k0" H11 "Content-Length: 0\r\n\r\n",
	 405, "method_not_allowed", 0},
	{"DELETE on /retrieve", "DELETE /retrieve?key=k0" H11 "\r\n", 405,
	 "method_not_allowed", 0},
	{"POST on /v1/cluster", "POST /v1/cluster" H11
	 "Content-Length: 0\r\n\r\n", 405, "method_not_allowed", 0},
	{"no such endpoint", "GET /v2/kv/k0" H11 "\r\n", 404,
	 "no_such_endpoint", 0},
	{"a path under /internal", "GET /internal/nothing" H11 "\r\n", 404,
	 NULL, 0},
	{"admin call on a static topology",
	 "POST /v1/cluster/shards" H11 "Content-Length: 2\r\n\r\n{}", 409,
	 "static_topology", 0},
	/* Keys and arguments. */
	{"empty key", "GET /v1/kv/" H11 "\r\n", 400, "bad_key_size", 0},
	{"key over max_key_bytes", "GET /v1/kv/FILL" H11 "\r\n", 400,
	 "bad_key_size", 600},
	{"bad percent-escape", "GET /v1/kv/a%zz" H11 "\r\n", 400,
	 "bad_encoding", 0},
	{"truncated percent-escape", "GET /v1/kv/a%4" H11 "\r\n", 400,
	 "bad_encoding", 0},
	{"/store without key", "GET /store?value=v" H11 "\r\n", 400,
	 "missing_argument", 0},
	{"/store with an unknown argument",
	 "GET /store?key=k&value=v&ttl=3" H11 "\r\n", 400, "unknown_argument",
	 0},
	{"/store with key twice", "GET /store?key=a&key=b&value=v" H11 "\r\n",
	 400, "bad_argument", 0},
	{"/retrieve without key", "GET /retrieve" H11 "\r\n", 400,
	 "missing_argument", 0},
	{"r=0", "GET /retrieve?key=k0&r=0" H11 "\r\n", 400, "bad_argument", 0},
	{"r too large", "GET /retrieve?key=k0&r=99" H11 "\r\n", 400,
	 "bad_argument", 0},
	{"w not a number", "GET /store?key=k&value=v&w=abc" H11 "\r\n", 400,
	 "bad_argument", 0},
	{"limit=-1", "GET /v1/kv?prefix=k&limit=-1" H11 "\r\n", 400,
	 "bad_argument", 0},
	{"limit=0", "GET /v1/kv?prefix=k&limit=0" H11 "\r\n", 400,
	 "bad_argument", 0},
	{"limit past 64 bits",
	 "GET /v1/kv?prefix=k&limit=99999999999999999999" H11 "\r\n", 400,
	 "bad_argument", 0},
	{"limit not a number", "GET /v1/kv?prefix=k&limit=ten" H11 "\r\n", 400,
	 "bad_argument", 0},
	{"values=maybe", "GET /v1/kv?prefix=k&values=maybe" H11 "\r\n", 400,
	 "bad_argument", 0},
	{"start_after badly escaped", "GET /v1/kv?prefix=k&start_after=%zz" H11
	 "\r\n", 400, "bad_encoding", 0},
	{"malformed If-Match",
	 "PUT /v1/kv/k" H11 "If-Match: nonsense\r\nContent-Length: 1\r\n\r\nv",
	 400, "bad_precondition", 0},
	/* Sizes. */
	{"PUT without a length", "PUT /v1/kv/k" H11 "\r\n", 411,
	 "length_required", 0},
	{"value over max_value_bytes",
	 "PUT /v1/kv/k" H11 "Content-Length: 99999999999\r\n\r\n", 413,
	 "value_too_large", 0},
	{"request line over 8 KiB", "GET /v1/kv/k?FILL" H11 "\r\n", 414,
	 "uri_too_long", 9000},
	/* Batches. */
	{"batch that is not JSON",
	 "POST /v1/batch" H11 "Content-Length: 5\r\n\r\n{{{{{", 400, "bad_batch",
	 0},
	{"batch that is not an object",
	 "POST /v1/batch" H11 "Content-Length: 2\r\n\r\n[]", 400, "bad_batch",
	 0},
	{"batch op without a key",
	 "POST /v1/batch" H11 "Content-Length: 26\r\n\r\n"
	 "{\"ops\":[{\"op\":\"get\"}]}    ",
	 400, "bad_batch", 0},
};

/* The request of case c, its filler put in. */
static char *request_of(const struct hostile *c)
{
	const char *at = strstr(c->request, "FILL");
	size_t n = strlen(c->request) + (size_t)c->filler + 1, head;
	char *req = malloc(n);

	ck_assert_ptr_nonnull(req);
	if (at == NULL) {
		memcpy(req, c->request, strlen(c->request) + 1);
		return req;
	}
	head = (size_t)(at - c->request);
	memcpy(req, c->request, head);
	memset(req + head, 'a', (size_t)c->filler);
	memcpy(req + head + (size_t)c->filler, at + 4, strlen(at + 4) + 1);
	return req;
}

START_TEST(hostile_requests_get_4xx)
{
	enum { KEYS = 20 };
	char key[32], value[32];
	size_t n = sizeof(cases) / sizeof(cases[0]);

	ck_assert_uint_ge(n, 40);
	tc_start(&C, 1, NULL);
	for (int i = 0; i < KEYS; i++) {
		struct tc_resp r;

		snprintf(key, sizeof(key), "k%d", i);
		snprintf(value, sizeof(value), "value-%d", i);
		ck_assert_int_eq(tc_http("PUT", tc_url(&C, 0, "/v1/kv/%s", key),
		                         value, strlen(value), NULL, &r),
		                 0);
		ck_assert_int_eq(r.status, 200);
		tc_resp_free(&r);
	}
	for (size_t i = 0; i < n; i++) {
		const struct hostile *c = &cases[i];
		char *req = request_of(c);
		struct tc_resp r, ok;

		ck_assert_msg(tc_raw(C.node[0].port, req, &r) == 0,
		              "%s: no answer", c->what);
		free(req);
		ck_assert_msg(r.status == c->status, "%s: status %ld, wanted %ld: %s",
		              c->what, r.status, c->status, r.body);
		if (c->code != NULL) {
			char want[64];

			snprintf(want, sizeof(want), "\"error\":\"%s\"", c->code);
			ck_assert_msg(strstr(r.body, want) != NULL,
			              "%s: no %s in %s", c->what, want, r.body);
		}
		tc_resp_free(&r);
		/* Still serving, the data as it was. */
		snprintf(key, sizeof(key), "k%zu", i % KEYS);
		snprintf(value, sizeof(value), "value-%zu", i % KEYS);
		ok = tc_get(tc_url(&C, 0, "/retrieve?key=%s", key), 200);
		ck_assert_msg(strcmp(ok.body, value) == 0, "after %s: %s is %s",
		              c->what, key, ok.body);
		tc_resp_free(&ok);
	}
	for (int i = 0; i < KEYS; i++) {
		struct tc_resp r;

		snprintf(key, sizeof(key), "k%d", i);
		snprintf(value, sizeof(value), "value-%d", i);
		r = tc_get(tc_url(&C, 0, "/v1/kv/%s", key), 200);
		ck_assert_str_eq(r.body, value);
		tc_resp_free(&r);
	}
}
END_TEST

/* A stream of malformed requests costs the log a line or two per cause,
 * not one per request. */
START_TEST(malformed_requests_do_not_fill_the_log)
{
	int before;

	tc_start(&C, 1, NULL);
	before = tc_log_lines(&C, 0, "http: ");
	for (int i = 0; i < 200; i++) {
		struct tc_resp r;

		ck_assert_int_eq(tc_raw(C.node[0].port,
		                        "GET /v1/kv/k" H11 "Nonsense\r\n\r\n", &r),
		                 0);
		ck_assert_int_eq(r.status, 400);
		tc_resp_free(&r);
	}
	/* libmicrohttpd reports this cause in two messages. */
	ck_assert_int_le(tc_log_lines(&C, 0, "http: ") - before, 4);
	ck_assert_int_ge(tc_log_lines(&C, 0, "http: ") - before, 1);
}
END_TEST

/* Whether the server has closed fd (EOF or reset waiting). */
static int closed_by_server(int fd)
{
	struct pollfd p = {fd, POLLIN, 0};
	char b;

	if (poll(&p, 1, 0) <= 0)
		return 0;
	return recv(fd, &b, 1, MSG_DONTWAIT) <= 0;
}

/* Thousands of idle connections from one address leave room for
 * another client: past max_connections_per_client (256 by default),
 * the server closes the first one's new connections. */
START_TEST(one_client_cannot_take_every_connection)
{
	static int fds[2000];
	struct rlimit rl;
	int n = 2000, open_ones = 0, fd;
	uint64_t t0, waited;
	char answer[256];
	ssize_t got;

	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_cur < (rlim_t)n + 64) {
		rl.rlim_cur = rl.rlim_max < (rlim_t)n + 64 ? rl.rlim_max
		                                           : (rlim_t)n + 64;
		ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	}
	if ((rlim_t)n + 64 > rl.rlim_cur)
		n = (int)rl.rlim_cur - 64;
	ck_assert_int_gt(n, 600); /* enough to pass the cap twice over */
	tc_start(&C, 1, NULL);
	for (int i = 0; i < n; i++) {
		fds[i] = tc_connect_from("127.0.0.1", C.node[0].port);
		ck_assert_msg(fds[i] >= 0, "connection %d failed", i);
	}
	usleep(300 * 1000); /* the server accepts, and closes the excess */
	/* Another address is served at once. */
	t0 = tu_now_ms();
	fd = tc_connect_from("127.0.0.2", C.node[0].port);
	ck_assert_int_ge(fd, 0);
	{
		static const char get[] = "GET /health HTTP/1.1\r\nHost: x\r\n"
		                          "Connection: close\r\n\r\n";

		ck_assert_int_eq(send(fd, get, sizeof(get) - 1, 0),
		                 (ssize_t)sizeof(get) - 1);
	}
	got = recv(fd, answer, sizeof(answer) - 1, 0);
	waited = tu_now_ms() - t0;
	close(fd);
	ck_assert_int_gt(got, 12);
	answer[got] = '\0';
	ck_assert_msg(strncmp(answer, "HTTP/1.1 200", 12) == 0, "%s", answer);
	ck_assert_msg(waited < 1000, "served after %llu ms",
	              (unsigned long long)waited);
	/* The first address keeps its cap's worth, no more. Connections
	 * the server has not accepted yet look open from here: on a busy
	 * machine, give it time (bounded) to reach them all. */
	for (uint64_t until = tu_now_ms() + 10000;;) {
		open_ones = 0;
		for (int i = 0; i < n; i++)
			open_ones += !closed_by_server(fds[i]);
		if (open_ones <= 256 || tu_now_ms() > until)
			break;
		usleep(100 * 1000);
	}
	for (int i = 0; i < n; i++)
		close(fds[i]);
	ck_assert_int_le(open_ones, 256);
	ck_assert_int_ge(open_ones, 1);
}
END_TEST

/* The peak resident memory of shard 0 (VmHWM), in KiB. */
static long peak_rss_kib(void)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)C.node[0].pid);
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "VmHWM:", 6) == 0)
			kib = strtol(line + 6, NULL, 10);
	fclose(f);
	ck_assert_int_gt(kib, 0);
	return kib;
}

/* What a body may cost the server beyond itself (its buffer, and with
 * sanitizers the freed memory they keep for a while): far from the
 * 1.3 GB that parsing {"ops":[0,0,...]} whole took. */
#define BATCH_BODY_MIB  32
#define BATCH_EXTRA_KIB (400L * 1024)

/* Post a batch body of BATCH_BODY_MIB: a 4xx with code comes back
 * quickly, and the server's peak memory stays near the body's size. */
static void post_huge_batch(const char *what, const char *body, size_t len,
                            long status, const char *code)
{
	struct tc_resp r;
	long before = peak_rss_kib();
	char want[64];

	ck_assert_int_eq(tc_http("POST", tc_url(&C, 0, "/v1/batch%s", ""), body,
	                         len, NULL, &r),
	                 0);
	ck_assert_msg(r.status == status, "%s: status %ld: %s", what, r.status,
	              r.body);
	snprintf(want, sizeof(want), "\"error\":\"%s\"", code);
	ck_assert_msg(strstr(r.body, want) != NULL, "%s: %s", what, r.body);
	ck_assert_msg(r.seconds < 2.0, "%s: answered after %.3f s", what,
	              r.seconds);
	ck_assert_msg(
	    peak_rss_kib() - before < BATCH_BODY_MIB * 1024L + BATCH_EXTRA_KIB,
	    "%s: peak memory %ld KiB -> %ld KiB", what, before, peak_rss_kib());
	tc_resp_free(&r);
}

/* Bodies as large as a batch may be, that cJSON alone would turn into
 * millions of nodes: refused before any is built. */
/* A small batch of gets of one large value must not make the node read
 * and hold every copy: past max_answer_bytes the gets are not read. */
START_TEST(gets_of_a_large_value_stay_within_the_answer_cap)
{
	const size_t value_len = 1000000, gets = 2000;
	char *value = malloc(value_len);
	kvs__buf body;
	struct tc_resp r;
	long before;

	ck_assert_ptr_nonnull(value);
	memset(value, 'v', value_len);
	/* The smallest cap the config allows: about 1.4 MB. */
	tc_start(&C, 1, "[limits]\nmax_value_bytes = 1000000\n"
	                "max_answer_bytes = 1400000\nmax_batch_ops = 2000\n");
	ck_assert_int_eq(tc_http("PUT", tc_url(&C, 0, "/v1/kv/%s", "big"), value,
	                         value_len, NULL, &r),
	                 0);
	ck_assert_int_eq(r.status, 200);
	tc_resp_free(&r);
	kvs__buf_init(&body, 0);
	kvs__buf_adds(&body, "{\"ops\":[");
	for (size_t i = 0; i < gets; i++)
		kvs__buf_adds(&body, i ? ",{\"op\":\"get\",\"key\":\"big\"}"
		                       : "{\"op\":\"get\",\"key\":\"big\"}");
	kvs__buf_adds(&body, "]}");
	ck_assert_int_eq(body.rc, KVS_OK);
	before = peak_rss_kib();
	ck_assert_int_eq(tc_http("POST", tc_url(&C, 0, "/v1/batch%s", ""),
	                         body.data, body.len, NULL, &r),
	                 0);
	ck_assert_msg(r.status == 200, "%ld: %.200s", r.status, r.body);
	ck_assert_ptr_nonnull(strstr(r.body, "\"truncated_at\":1"));
	ck_assert_ptr_nonnull(strstr(r.body, "answer_too_large"));
	tc_resp_free(&r);
	/* 2,000 copies would be 2 GB; a few are allowed. */
	ck_assert_msg(peak_rss_kib() - before < 64 * 1024,
	              "peak memory %ld KiB -> %ld KiB", before, peak_rss_kib());
	kvs__buf_free(&body);
	free(value);
}
END_TEST

START_TEST(huge_batches_are_refused_quickly)
{
	static const char ok[] =
	    "{\"ops\":[{\"op\":\"put\",\"key\":\"k\",\"value\":\"v\"}]}";
	size_t len = ((size_t)BATCH_BODY_MIB << 20) - 64, n = 0;
	char *body = malloc(len + 1);
	struct tc_resp r;

	ck_assert_ptr_nonnull(body);
	tc_start(&C, 1, NULL);
	/* {"ops":[0,0,0,...]}: 16 million operations. */
	n = (size_t)sprintf(body, "{\"ops\":[0");
	while (n + 3 < len) {
		body[n++] = ',';
		body[n++] = '0';
	}
	body[n++] = ']';
	body[n++] = '}';
	post_huge_batch("zeros", body, n, 413, "too_many_ops");
	/* One operation of arrays 900 deep, over and over: within
	 * cJSON's own nesting limit, 16 million values. */
	n = (size_t)sprintf(body, "{\"ops\":[[");
	while (n + 1803 < len) {
		memset(body + n, '[', 900);
		memset(body + n + 900, ']', 900);
		body[n + 1800] = ',';
		n += 1801;
	}
	body[n - 1] = ']'; /* the last ',' */
	body[n++] = ']';
	body[n++] = '}';
	post_huge_batch("deep and wide", body, n, 400, "bad_batch");
	/* Nested as deep as the body is long. */
	n = (size_t)sprintf(body, "{\"ops\":");
	memset(body + n, '[', (len - n - 1) / 2);
	memset(body + n + (len - n - 1) / 2, ']', (len - n - 1) / 2);
	n += (len - n - 1) / 2 * 2;
	body[n++] = '}';
	post_huge_batch("deep", body, n, 400, "bad_batch");
	free(body);
	/* Still serving batches. */
	ck_assert_int_eq(tc_http("POST", tc_url(&C, 0, "/v1/batch%s", ""), ok,
	                         strlen(ok), NULL, &r),
	                 0);
	ck_assert_msg(r.status == 200, "%ld: %s", r.status, r.body);
	tc_resp_free(&r);
}
END_TEST

/* A batch of max_batch_ops + 1 operations is refused whole: none of its
 * writes is made. max_batch_ops operations go through. */
START_TEST(batch_over_max_batch_ops_is_refused)
{
	enum { MAX_OPS = 10 };
	char body[2048], key[16];
	struct tc_resp r;
	size_t n;

	tc_start(&C, 1, "[limits]\nmax_batch_ops = 10\n");
	for (int ops = MAX_OPS + 1; ops >= MAX_OPS; ops--) {
		n = (size_t)snprintf(body, sizeof(body), "{\"ops\":[");
		for (int i = 0; i < ops; i++)
			n += (size_t)snprintf(
			    body + n, sizeof(body) - n,
			    "%s{\"op\":\"put\",\"key\":\"b%d-%d\","
			    "\"value\":\"v\"}",
			    i ? "," : "", ops, i);
		n += (size_t)snprintf(body + n, sizeof(body) - n, "]}");
		ck_assert_int_eq(tc_http("POST",
		                         tc_url(&C, 0, "/v1/batch%s", ""), body,
		                         n, NULL, &r),
		                 0);
		if (ops > MAX_OPS) {
			ck_assert_msg(r.status == 413, "%ld: %s", r.status,
			              r.body);
			ck_assert_ptr_nonnull(
			    strstr(r.body, "\"error\":\"too_many_ops\""));
		} else {
			ck_assert_msg(r.status == 200, "%ld: %s", r.status,
			              r.body);
		}
		tc_resp_free(&r);
		snprintf(key, sizeof(key), "b%d-0", ops);
		r = tc_get(tc_url(&C, 0, "/v1/kv/%s", key),
		           ops > MAX_OPS ? 404 : 200);
		tc_resp_free(&r);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("hostile");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, hostile_requests_get_4xx);
	tcase_add_test(tc, malformed_requests_do_not_fill_the_log);
	tcase_add_test(tc, one_client_cannot_take_every_connection);
	tcase_add_test(tc, huge_batches_are_refused_quickly);
	tcase_add_test(tc, gets_of_a_large_value_stay_within_the_answer_cap);
	tcase_add_test(tc, batch_over_max_batch_ops_is_refused);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
