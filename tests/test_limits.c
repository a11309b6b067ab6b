/*
 * test_limits.c - the [limits] a client cannot get around: deadlines for
 * a request's headers and body (not idle timeouts: a trickle is cut),
 * the budget of request bodies held in memory (503 overloaded past it),
 * the connection caps, their counters in /metrics, and a full store
 * answering 507 storage_full. Every wait is bounded.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "cluster.h"
#include "testutil.h"

static struct tc_cluster C;

static void teardown(void)
{
	tc_stop(&C);
}

static void send_all(int fd, const char *s)
{
	size_t n = strlen(s);

	ck_assert_int_eq(send(fd, s, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* What came back on fd within ms: 0 the server closed it, 1 an answer
 * (its first bytes in buf), -1 nothing. */
static int wait_reply(int fd, int ms, char *buf, size_t len)
{
	struct pollfd p = {fd, POLLIN, 0};
	ssize_t n;

	if (poll(&p, 1, ms) <= 0)
		return -1;
	n = recv(fd, buf, len - 1, MSG_DONTWAIT);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	return 1;
}

/*
 * Send bytes one at a time, every_ms apart, until the server closes fd:
 * the milliseconds it took, or -1 (it answered instead), or -2 (still
 * open after max_ms).
 */
static long trickle(int fd, const char *bytes, int every_ms, int max_ms)
{
	uint64_t t0 = tu_now_ms();
	char buf[256];

	for (size_t i = 0; tu_now_ms() - t0 < (uint64_t)max_ms; i++) {
		int got;

		if (send(fd, bytes + i % strlen(bytes), 1, MSG_NOSIGNAL) != 1)
			return (long)(tu_now_ms() - t0);
		got = wait_reply(fd, every_ms, buf, sizeof(buf));
		if (got == 0)
			return (long)(tu_now_ms() - t0);
		if (got == 1)
			return -1;
	}
	return -2;
}

/* The value of the /metrics line that starts with name (-1: none), asked
 * from src (a connection cap may hold 127.0.0.1 back). */
static long long metric(const char *src, const char *name)
{
	static const char get[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n"
	                          "Connection: close\r\n\r\n";
	size_t cap = 1 << 20, got = 0;
	char *buf = malloc(cap), *at;
	int fd = tc_connect_from(src, C.node[0].port);
	long long v = -1;
	ssize_t n;

	ck_assert_ptr_nonnull(buf);
	ck_assert_int_ge(fd, 0);
	send_all(fd, get);
	while (got + 1 < cap && (n = recv(fd, buf + got, cap - got - 1, 0)) > 0)
		got += (size_t)n;
	close(fd);
	buf[got] = '\0';
	for (at = strstr(buf, name); at != NULL; at = strstr(at + 1, name))
		if (at > buf && at[-1] == '\n') {
			v = strtoll(at + strlen(name), NULL, 10);
			break;
		}
	free(buf);
	return v;
}

#define REFUSED(cause) "kvshard_refused_total{cause=\"" cause "\"} "
#define FULL_WRITES(cause)                                                    \
	"kvshard_store_full_writes_total{cause=\"" cause "\"} "

/* A request whose answer must be status (one connection, closed). */
static void expect_status(const char *request, long status, const char *code)
{
	struct tc_resp r;

	ck_assert_int_eq(tc_raw(C.node[0].port, request, &r), 0);
	ck_assert_msg(r.status == status, "status %ld, wanted %ld: %s",
	              r.status, status, r.body);
	if (code != NULL)
		ck_assert_msg(strstr(r.body, code) != NULL, "no %s in %s", code,
		              r.body);
	tc_resp_free(&r);
}

#define H11 " HTTP/1.1\r\nHost: x\r\n"

/* Headers and bodies sent a byte at a time are cut at their deadline,
 * however often a byte comes; normal requests are served meanwhile, and
 * an idle kept-alive connection waits idle_timeout_s, not
 * header_timeout_s, for its next request. */
START_TEST(trickles_are_cut_at_their_deadline)
{
	char buf[512];
	long took;
	int fd;

	tc_start(&C, 1,
	         "[limits]\nheader_timeout_s = 1\nbody_timeout_s = 1\n"
	         "idle_timeout_s = 3\n");

	/* Headers: a byte every 100 ms never completes them. */
	fd = tc_connect_from("127.0.0.1", C.node[0].port);
	ck_assert_int_ge(fd, 0);
	send_all(fd, "GET /health HTTP/1.1\r\nHost: x\r\n");
	took = trickle(fd, "X-Slow: abcdefgh\r\n", 100, 5000);
	close(fd);
	ck_assert_msg(took >= 800 && took <= 2500,
	              "headers trickled for %ld ms", took);

	/* A body: a byte every 100 ms of 100 would take 10 s. */
	fd = tc_connect_from("127.0.0.1", C.node[0].port);
	ck_assert_int_ge(fd, 0);
	send_all(fd, "PUT /v1/kv/slow" H11 "Content-Length: 100\r\n\r\n");
	took = trickle(fd, "v", 100, 5000);
	close(fd);
	ck_assert_msg(took >= 800 && took <= 2500, "body trickled for %ld ms",
	              took);
	expect_status("GET /v1/kv/slow" H11 "Connection: close\r\n\r\n", 404,
	              "not_found");

	/* Kept alive: silent longer than header_timeout_s, then served. */
	fd = tc_connect_from("127.0.0.1", C.node[0].port);
	ck_assert_int_ge(fd, 0);
	send_all(fd, "GET /health" H11 "\r\n");
	ck_assert_int_eq(wait_reply(fd, 2000, buf, sizeof(buf)), 1);
	ck_assert_msg(strncmp(buf, "HTTP/1.1 200", 12) == 0, "%s", buf);
	usleep(1500 * 1000);
	send_all(fd, "GET /health" H11 "\r\n");
	ck_assert_int_eq(wait_reply(fd, 2000, buf, sizeof(buf)), 1);
	ck_assert_msg(strncmp(buf, "HTTP/1.1 200", 12) == 0, "%s", buf);
	/* ... but its next request's headers, trickled, are cut after
	 * idle_timeout_s + header_timeout_s. */
	took = trickle(fd, "GET /health HTTP/1.1\r\nX-Slow: abcdefgh", 100,
	               7000);
	close(fd);
	ck_assert_msg(took >= 3800 && took <= 5500,
	              "kept-alive headers trickled for %ld ms", took);

	/* Counted, one each. */
	ck_assert_int_eq(metric("127.0.0.1", REFUSED("header_timeout")), 2);
	ck_assert_int_eq(metric("127.0.0.1", REFUSED("body_timeout")), 1);
	expect_status("GET /health" H11 "Connection: close\r\n\r\n", 200, NULL);
}
END_TEST

/* A body sent within its deadline, if slowly, is taken. */
START_TEST(slow_but_timely_requests_are_served)
{
	char buf[512];
	int fd;

	tc_start(&C, 1, "[limits]\nheader_timeout_s = 2\nbody_timeout_s = 2\n");
	fd = tc_connect_from("127.0.0.1", C.node[0].port);
	ck_assert_int_ge(fd, 0);
	send_all(fd, "PUT /v1/kv/k HTTP/1.1\r\n");
	usleep(500 * 1000);
	send_all(fd, "Host: x\r\nConnection: close\r\n"
	             "Content-Length: 4\r\n\r\n");
	usleep(500 * 1000);
	send_all(fd, "ab");
	usleep(500 * 1000);
	send_all(fd, "cd");
	ck_assert_int_eq(wait_reply(fd, 3000, buf, sizeof(buf)), 1);
	close(fd);
	ck_assert_msg(strncmp(buf, "HTTP/1.1 200", 12) == 0, "%s", buf);
	expect_status("GET /v1/kv/k" H11 "Connection: close\r\n\r\n", 200,
	              NULL);
	ck_assert_int_eq(metric("127.0.0.1", REFUSED("header_timeout")), 0);
	ck_assert_int_eq(metric("127.0.0.1", REFUSED("body_timeout")), 0);
}
END_TEST

/* The value of the gauge of bodies held, once it settles at want (2 s at
 * most). */
static long long buffered_settles_at(long long want)
{
	long long v = -1;

	for (int i = 0; i < 100; i++) {
		v = metric("127.0.0.1", "kvshard_buffered_body_bytes ");
		if (v == want)
			break;
		usleep(20 * 1000);
	}
	return v;
}

/* Past max_buffered_bytes of bodies held, a request with a body gets 503
 * overloaded and Retry-After; requests without one, or with a body that
 * fits, are served; a body's bytes come back when its client leaves. */
START_TEST(bodies_held_stay_within_the_budget)
{
	enum { HELD = 700000 };
	char head[256], *big = malloc(HELD + 1);
	struct tc_resp r;
	int fd;

	ck_assert_ptr_nonnull(big);
	memset(big, 'b', HELD);
	big[HELD] = '\0';
	tc_start(&C, 1,
	         "[limits]\nmax_value_bytes = 1048576\n"
	         "max_buffered_bytes = 1048576\n");
	/* One client holds 700000 bytes, its body unfinished. */
	fd = tc_connect_from("127.0.0.1", C.node[0].port);
	ck_assert_int_ge(fd, 0);
	snprintf(head, sizeof(head),
	         "PUT /v1/kv/held" H11 "Content-Length: %d\r\n\r\n", HELD);
	send_all(fd, head);
	send_all(fd, "part of it");
	ck_assert_int_eq(buffered_settles_at(HELD), HELD);

	/* Another as large: refused at once, before its body. */
	ck_assert_int_eq(tc_http("PUT", tc_url(&C, 0, "/v1/kv/%s", "big"), big,
	                         HELD, NULL, &r),
	                 0);
	ck_assert_msg(r.status == 503, "status %ld: %s", r.status, r.body);
	ck_assert_ptr_nonnull(strstr(r.body, "\"error\":\"overloaded\""));
	ck_assert_ptr_nonnull(tc_header(&r, "Retry-After"));
	ck_assert_str_eq(tc_header(&r, "Retry-After"), "1");
	tc_resp_free(&r);
	/* A chunked body is refused once it outgrows what is left. */
	ck_assert_int_eq(tc_raw(C.node[0].port,
	                        "PUT /v1/kv/chunked" H11 "Connection: close\r\n"
	                        "Transfer-Encoding: chunked\r\n\r\n"
	                        "4\r\nabcd\r\n0\r\n\r\n",
	                        &r),
	                 0);
	ck_assert_int_eq(r.status, 200); /* small: it fits */
	tc_resp_free(&r);
	{
		static char chunked[600000];
		size_t n = (size_t)snprintf(chunked, sizeof(chunked),
		                            "PUT /v1/kv/chunked" H11
		                            "Connection: close\r\n"
		                            "Transfer-Encoding: chunked\r\n\r\n"
		                            "%x\r\n",
		                            500000);

		memset(chunked + n, 'c', 500000);
		memcpy(chunked + n + 500000, "\r\n0\r\n\r\n", 8);
		ck_assert_int_eq(tc_raw(C.node[0].port, chunked, &r), 0);
		ck_assert_msg(r.status == 503, "status %ld: %s", r.status,
		              r.body);
		ck_assert_ptr_nonnull(
		        strstr(r.body, "\"error\":\"overloaded\""));
		tc_resp_free(&r);
	}
	/* Small bodies and none are served meanwhile. */
	ck_assert_int_eq(tc_http("PUT", tc_url(&C, 0, "/v1/kv/%s", "small"),
	                         "tiny", 4, NULL, &r),
	                 0);
	ck_assert_int_eq(r.status, 200);
	tc_resp_free(&r);
	r = tc_get(tc_url(&C, 0, "/v1/kv/%s", "chunked"), 200);
	ck_assert_str_eq(r.body, "abcd"); /* the refused one did not land */
	tc_resp_free(&r);
	ck_assert_int_eq(metric("127.0.0.1", REFUSED("body_budget")), 2);
	ck_assert_int_eq(buffered_settles_at(HELD), HELD);

	/* The holder leaves: its bytes come back, the large body fits. */
	close(fd);
	ck_assert_int_eq(buffered_settles_at(0), 0);
	ck_assert_int_eq(tc_http("PUT", tc_url(&C, 0, "/v1/kv/%s", "big"), big,
	                         HELD, NULL, &r),
	                 0);
	ck_assert_msg(r.status == 200, "status %ld: %s", r.status, r.body);
	tc_resp_free(&r);
	r = tc_get(tc_url(&C, 0, "/v1/kv/%s", "big"), 200);
	ck_assert_uint_eq(r.len, HELD);
	tc_resp_free(&r);
	ck_assert_int_eq(buffered_settles_at(0), 0);
	free(big);
}
END_TEST

/* Bodies that will be refused take no place in the budget, and a
 * chunked body takes its size, not its buffer's doubling: with the budget
 * at one value, requests without a token announcing the largest body
 * hold nothing, and a chunked value of nearly that size is stored. */
START_TEST(the_budget_goes_to_bodies_that_will_be_served)
{
	static const char *writer[] = {"Authorization: Bearer ct", NULL};
	enum { HELD = 8, VALUE = 900000 };
	char head[256], reply[256];
	int fds[HELD];
	char *value = malloc(VALUE);
	struct tc_resp r;
	int fd;

	ck_assert_ptr_nonnull(value);
	memset(value, 'c', VALUE);
	/* Not a power of two: a doubling buffer would pass it. */
	tc_start(&C, 1, "[limits]\nmax_value_bytes = 1000000\n"
	                "max_buffered_bytes = 1000000\n"
	                "[auth]\nclient_tokens = [\"ct\"]\n"
	                "cluster_secret = \"s3\"\n");
	/* No token, the largest body announced, none sent: 401 at once. */
	for (int i = 0; i < HELD; i++) {
		fds[i] = tc_connect_from("127.0.0.1", C.node[0].port);
		ck_assert_int_ge(fds[i], 0);
		send_all(fds[i], "PUT /v1/kv/x" H11
		                 "Content-Length: 1000000\r\n\r\n");
		ck_assert_int_eq(wait_reply(fds[i], 5000, reply, sizeof(reply)), 1);
		ck_assert_msg(strncmp(reply, "HTTP/1.1 401", 12) == 0, "%s",
		              reply);
	}
	/* A writer's value of about the budget, chunked: served. */
	fd = tc_connect_from("127.0.0.1", C.node[0].port);
	ck_assert_int_ge(fd, 0);
	send_all(fd, "PUT /v1/kv/chunked" H11 "Authorization: Bearer ct\r\n"
	             "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
	for (size_t off = 0; off < VALUE; off += 50000) {
		snprintf(head, sizeof(head), "%x\r\n", 50000);
		send_all(fd, head);
		ck_assert_int_eq(send(fd, value + off, 50000, MSG_NOSIGNAL), 50000);
		send_all(fd, "\r\n");
	}
	send_all(fd, "0\r\n\r\n");
	ck_assert_int_eq(wait_reply(fd, 5000, reply, sizeof(reply)), 1);
	ck_assert_msg(strncmp(reply, "HTTP/1.1 200", 12) == 0, "%s", reply);
	close(fd);
	for (int i = 0; i < HELD; i++)
		close(fds[i]);
	ck_assert_int_eq(tc_http("GET", tc_url(&C, 0, "/v1/kv/%s", "chunked"),
	                         NULL, 0, writer, &r),
	                 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_uint_eq(r.len, VALUE);
	tc_resp_free(&r);
	free(value);
}
END_TEST

/* Open a connection from src and ask /health on it (kept alive): 1
 * served (fd kept in *out), 0 refused (closed). */
static int admitted(const char *src, int *out)
{
	char buf[256];
	int fd = tc_connect_from(src, C.node[0].port), got;

	*out = -1;
	ck_assert_int_ge(fd, 0);
	if (send(fd, "GET /health" H11 "\r\n", strlen("GET /health" H11 "\r\n"),
	         MSG_NOSIGNAL) < 0) {
		close(fd);
		return 0;
	}
	got = wait_reply(fd, 2000, buf, sizeof(buf));
	ck_assert_int_ge(got, 0); /* an answer or a close, at once */
	if (got == 0) {
		close(fd);
		return 0;
	}
	ck_assert_msg(strncmp(buf, "HTTP/1.1 200", 12) == 0, "%s", buf);
	*out = fd;
	return 1;
}

/* Past max_connections_per_client, and past max_connections, new
 * connections are closed at once, and each refusal is counted. */
START_TEST(connection_caps_are_counted)
{
	int fds[16], n = 0, fd;

	tc_start(&C, 1,
	         "[limits]\nmax_connections = 8\n"
	         "max_connections_per_client = 3\n");
	/* 127.0.0.1 gets 3 of 5. */
	for (int i = 0; i < 5; i++) {
		int ok = admitted("127.0.0.1", &fd);

		ck_assert_int_eq(ok, i < 3);
		if (ok)
			fds[n++] = fd;
	}
	/* 127.0.0.2 and .3 get 3 and 2: 8 in all; .4 gets none. */
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(admitted("127.0.0.2", &fd), 1);
		fds[n++] = fd;
	}
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(admitted("127.0.0.3", &fd), 1);
		fds[n++] = fd;
	}
	ck_assert_int_eq(admitted("127.0.0.4", &fd), 0);
	ck_assert_int_eq(admitted("127.0.0.3", &fd), 0);
	/* A place given back is taken again. */
	close(fds[--n]);
	for (int i = 0; i < 100 && !admitted("127.0.0.4", &fd); i++)
		usleep(20 * 1000);
	ck_assert_int_ge(fd, 0);
	fds[n++] = fd;
	while (n > 0)
		close(fds[--n]);
	usleep(100 * 1000);
	ck_assert_int_eq(metric("127.0.0.5", REFUSED("per_client_limit")), 2);
	ck_assert_int_ge(metric("127.0.0.5", REFUSED("connection_limit")), 2);
}
END_TEST

/* A store at max_map_size answers 507 storage_full, keeps what it holds,
 * and says so in its log, once however many writes it refuses. */
START_TEST(a_full_store_answers_507)
{
	enum { VALUE = 16 * 1024, MOST = 200 };
	char *value = malloc(VALUE), key[32];
	struct tc_resp r;
	int stored = 0;

	ck_assert_ptr_nonnull(value);
	tc_start(&C, 1,
	         "[storage]\nmap_size = 1048576\nmax_map_size = 1048576\n");
	for (; stored < MOST; stored++) {
		memset(value, 'a' + stored % 26, VALUE);
		snprintf(key, sizeof(key), "k%d", stored);
		ck_assert_int_eq(tc_http("PUT", tc_url(&C, 0, "/v1/kv/%s", key),
		                         value, VALUE, NULL, &r),
		                 0);
		if (r.status != 200)
			break;
		tc_resp_free(&r);
	}
	ck_assert_int_lt(stored, MOST);
	ck_assert_int_gt(stored, 0);
	ck_assert_msg(r.status == 507, "status %ld: %s", r.status, r.body);
	ck_assert_ptr_nonnull(strstr(r.body, "\"error\":\"storage_full\""));
	tc_resp_free(&r);
	/* Many more refusals, one log line. */
	for (int i = 0; i < 20; i++) {
		ck_assert_int_eq(tc_http("PUT",
		                         tc_url(&C, 0, "/v1/kv/%s", "more"),
		                         value, VALUE, NULL, &r),
		                 0);
		ck_assert_int_eq(r.status, 507);
		tc_resp_free(&r);
	}
	ck_assert_int_eq(tc_log_lines(&C, 0, "storage full: "), 1);
	ck_assert_int_eq(tc_log_lines(&C, 0, "max_map_size"), 1);
	ck_assert_int_eq(metric("127.0.0.1", FULL_WRITES("map")), 21);
	ck_assert_int_eq(metric("127.0.0.1", FULL_WRITES("filesystem")), 0);
	/* What it held is intact. */
	for (int i = 0; i < stored; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		r = tc_get(tc_url(&C, 0, "/v1/kv/%s", key), 200);
		ck_assert_uint_eq(r.len, VALUE);
		ck_assert_int_eq(r.body[0], 'a' + i % 26);
		tc_resp_free(&r);
	}
	free(value);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("limits");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, trickles_are_cut_at_their_deadline);
	tcase_add_test(tc, slow_but_timely_requests_are_served);
	tcase_add_test(tc, bodies_held_stay_within_the_budget);
	tcase_add_test(tc, the_budget_goes_to_bodies_that_will_be_served);
	tcase_add_test(tc, connection_caps_are_counted);
	tcase_add_test(tc, a_full_store_answers_507);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
