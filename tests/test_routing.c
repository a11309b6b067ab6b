/*
 * test_routing.c - a cluster as its users meet it when nodes fail,
 * recover and disagree: what forwarding carries and what it must not,
 * reads and writes with their own quorum, failure detection without
 * traffic, scans after a node missed writes, and compare-and-swap races
 * through several nodes. Real kvshard-server processes on loopback.
 */
#include <check.h>
#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base64.h"
#include "cluster.h"
#include "kvshard.h"
#include "testutil.h"

/* Failure detection must show a dead or returning peer within this. */
#define DETECT_MS 3000

static struct tc_cluster C;

static void teardown(void)
{
	tc_stop(&C);
}

#define url(node, fmt, arg) tc_url(&C, node, fmt, arg)

/* The primary owner of key in C (all weights 1). */
static int owner_of(const char *key)
{
	kvs_ring_member m[TC_MAX_NODES];
	kvs_ring *ring;
	size_t o;

	for (int i = 0; i < C.n; i++) {
		m[i].name = C.node[i].name;
		m[i].weight = 1.0;
	}
	ck_assert_int_eq(kvs_ring_new(&ring, m, (size_t)C.n, 0), KVS_OK);
	kvs_ring_owners(ring, key, strlen(key), &o, 1);
	kvs_ring_free(ring);
	return (int)o;
}

static void put(int node, const char *key, const char *value)
{
	struct tc_resp r;

	ck_assert_int_eq(tc_http("PUT", url(node, "/v1/kv/%s", key), value,
	                         strlen(value), NULL, &r), 0);
	ck_assert_msg(r.status == 200, "PUT %s: %ld %s", key, r.status, r.body);
	tc_resp_free(&r);
}

/* ------------------------------------------------------------------ */
/* What forwarding carries                                              */

/*
 * A node forwards the key it decoded, never the path it received: a path
 * that libcurl would normalise (dot segments) or cut (a fragment) must
 * reach no other key and no other endpoint.
 */
START_TEST(forwarded_paths_are_rebuilt_from_the_key)
{
	static const char *reader[] = {"Authorization: Bearer rt", NULL};
	char req[1024], key[64];
	struct tc_resp r;

	tc_start(&C, 2, "[cluster]\nreplication = 1\n"
	                "[auth]\nclient_tokens = [\"ct\"]\nread_tokens = [\"rt\"]\n"
	                "cluster_secret = \"s3\"\n");
	/* A read token, a key of shard-2 asked of shard-1: forwarded. Its
	 * dot segments are part of the key, not a way to /internal. */
	snprintf(req, sizeof(req),
	         "GET /v1/kv/%s HTTP/1.1\r\n"
	         "Host: x\r\nAuthorization: Bearer rt\r\n"
	         "Connection: close\r\n\r\n",
	         tc_key_owned_by2(&C, 1, "", "/../../../internal/scan"));
	ck_assert_int_eq(tc_raw(C.node[0].port, req, &r), 0);
	ck_assert_msg(r.status == 404 && strstr(r.body, "not_found") != NULL,
	              "a dotted key reached something: %ld %s", r.status,
	              r.body);
	tc_resp_free(&r);
	/* "K#x" is the key K#x; forwarding it must not overwrite K (both
	 * live on shard-2, so both would be written there). */
	for (int i = 0;; i++) {
		char full[80];

		snprintf(key, sizeof(key), "frag%d", i);
		snprintf(full, sizeof(full), "%s#x", key);
		if (owner_of(key) == 1 && owner_of(full) == 1)
			break;
	}
	{
		const char *h[] = {"Authorization: Bearer ct", NULL};

		ck_assert_int_eq(tc_http("PUT", url(1, "/v1/kv/%s", key), "keep",
		                         4, h, &r), 0);
		ck_assert_int_eq(r.status, 200);
		tc_resp_free(&r);
	}
	snprintf(req, sizeof(req),
	         "PUT /v1/kv/%s#x HTTP/1.1\r\nHost: x\r\n"
	         "Authorization: Bearer ct\r\nContent-Length: 5\r\n"
	         "Connection: close\r\n\r\nwrong",
	         key);
	ck_assert_int_eq(tc_raw(C.node[0].port, req, &r), 0);
	tc_resp_free(&r);
	ck_assert_int_eq(tc_http("GET", url(0, "/v1/kv/%s", key), NULL, 0, reader,
	                         &r), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.body, "keep");
	tc_resp_free(&r);
}
END_TEST

/*
 * Long host names and long bearer tokens pass through forwarding intact:
 * a peer URL is never cut to a fixed buffer, and the owner does not need
 * the client's token (the forwarding node checked it).
 */
START_TEST(long_hosts_and_tokens_survive_forwarding)
{
	char host[200], token[1200], auth[1300], toml[1600];
	const char *h[2] = {auth, NULL};
	struct tc_resp r;
	size_t n = 0;

	/* 127.0.0.1 written as 130 characters: 0177 is octal for 127. */
	for (int part = 0; part < 4; part++) {
		for (int z = 0; z < 30; z++)
			host[n++] = '0';
		n += (size_t)snprintf(host + n, sizeof(host) - n, "%s",
		                      part == 0 ? "177." : part == 3 ? "1" : "0.");
	}
	ck_assert_uint_gt(strlen(host), 120);
	memset(token, 't', 1000);
	token[1000] = '\0';
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
	snprintf(toml, sizeof(toml),
	         "[cluster]\nreplication = 1\n[auth]\nclient_tokens = [\"%s\"]\n"
	         "cluster_secret = \"s3\"\n",
	         token);
	snprintf(C.host, sizeof(C.host), "%s", host);
	tc_start(&C, 2, toml);
	for (int owner = 0; owner < 2; owner++) {
		char key[64];

		snprintf(key, sizeof(key), "%s", tc_key_owned_by(&C, owner, "lh"));
		/* Through the node that does not own it. */
		ck_assert_int_eq(tc_http("PUT", url(1 - owner, "/v1/kv/%s", key),
		                         "v", 1, h, &r), 0);
		ck_assert_msg(r.status == 200, "forwarded PUT: %ld %s", r.status,
		              r.body);
		ck_assert_str_eq(tc_header(&r, "X-Kvshard-Shard"),
		                 C.node[owner].name);
		tc_resp_free(&r);
		ck_assert_int_eq(tc_http("GET", url(1 - owner, "/v1/kv/%s", key),
		                         NULL, 0, h, &r), 0);
		ck_assert_int_eq(r.status, 200);
		ck_assert_str_eq(r.body, "v");
		tc_resp_free(&r);
	}
}
END_TEST

/* ------------------------------------------------------------------ */
/* Quorum per request                                                   */

START_TEST(quorum_per_request)
{
	struct tc_resp r;
	char key[64];

	/* N = 3, R = W = 2; nothing but the reads below may bring the third
	 * node up to date (no hints, no anti-entropy). */
	tc_start(&C, 3, "[cluster]\nhint_max_bytes = 0\n"
	                "anti_entropy_interval_s = 0\n");
	snprintf(key, sizeof(key), "%s", tc_key_owned_by(&C, 0, "q"));
	/* Every copy holds v1 before the third node stops. */
	ck_assert_int_eq(tc_http("PUT", url(0, "/v1/kv/%s?w=all", key), "v1", 2,
	                         NULL, &r), 0);
	ck_assert_int_eq(r.status, 200);
	tc_resp_free(&r);
	tc_stop_node(&C, 2, SIGKILL);
	/* Two of three up: w=all cannot be met; w=1 and the default can. */
	ck_assert_int_eq(tc_http("PUT", url(0, "/v1/kv/%s?w=all", key), "v2", 2,
	                         NULL, &r), 0);
	ck_assert_int_eq(r.status, 503);
	ck_assert_ptr_nonnull(strstr(r.body, "3 needed"));
	tc_resp_free(&r);
	ck_assert_int_eq(tc_http("PUT", url(1, "/v1/kv/%s?w=quorum", key), "v3",
	                         2, NULL, &r), 0);
	ck_assert_int_eq(r.status, 200);
	tc_resp_free(&r);
	/* The seed's endpoints take them too. */
	r = tc_get(url(0, "/store?key=%s&value=v4&w=1", key), 200);
	tc_resp_free(&r);
	r = tc_get(url(0, "/retrieve?key=%s&r=all", key), 503);
	tc_resp_free(&r);
	r = tc_get(url(1, "/retrieve?key=%s&r=2", key), 200);
	ck_assert_str_eq(r.body, "v4");
	tc_resp_free(&r);
	/* The third node comes back with v1: r=1 on it answers from its own
	 * store (stale), r=2 asks another replica too (and repairs it). */
	tc_start_node(&C, 2);
	r = tc_get(url(2, "/v1/kv/%s?r=1", key), 200);
	ck_assert_str_eq(r.body, "v1");
	tc_resp_free(&r);
	r = tc_get(url(2, "/v1/kv/%s?r=2", key), 200);
	ck_assert_str_eq(r.body, "v4");
	tc_resp_free(&r);
	/* Bad values: a clear 400. */
	r = tc_get(url(0, "/v1/kv/%s?r=4", key), 400);
	ck_assert_ptr_nonnull(strstr(r.body, "bad_argument"));
	tc_resp_free(&r);
	r = tc_get(url(0, "/v1/kv/%s?r=most", key), 400);
	tc_resp_free(&r);
	r = tc_get(url(0, "/v1/kv/%s?r=0", key), 400);
	tc_resp_free(&r);
	r = tc_get(url(0, "/v1/kv/%s?w=1", key), 400); /* w on a read */
	ck_assert_ptr_nonnull(strstr(r.body, "unknown_argument"));
	tc_resp_free(&r);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Failure detection                                                    */

/* Poll node's view of shard `of` until it says want ("up"/"down"), at
 * most DETECT_MS; returns the milliseconds it took, or -1. */
static long wait_status(int node, int of, const char *want)
{
	uint64_t start = tu_now_ms();
	char needle[128], metric[128];

	snprintf(needle, sizeof(needle), "\"name\":\"%s\"", C.node[of].name);
	snprintf(metric, sizeof(metric), "kvshard_peer_up{shard=\"%s\"} %d",
	         C.node[of].name, strcmp(want, "up") == 0);
	while (tu_now_ms() - start <= DETECT_MS) {
		struct tc_resp r = tc_get(url(node, "/v1/cluster%s", ""), 200);
		const char *p = strstr(r.body, needle);
		char st[32] = "";

		if (p != NULL)
			p = strstr(p, "\"status\":\"");
		if (p != NULL)
			sscanf(p + 10, "%31[a-z]", st);
		tc_resp_free(&r);
		if (strcmp(st, want) == 0) {
			/* /metrics agrees. */
			r = tc_get(url(node, "/metrics%s", ""), 200);
			ck_assert_msg(strstr(r.body, metric) != NULL,
			              "/v1/cluster says %s, /metrics lacks %s", want,
			              metric);
			tc_resp_free(&r);
			return (long)(tu_now_ms() - start);
		}
		usleep(50000);
	}
	return -1;
}

START_TEST(dead_peers_show_down_without_traffic)
{
	long ms;

	tc_start(&C, 3, NULL);
	ck_assert_int_ge(wait_status(0, 2, "up"), 0);
	tc_stop_node(&C, 2, SIGKILL);
	ms = wait_status(0, 2, "down");
	ck_assert_msg(ms >= 0, "a killed shard still shows up after %d ms",
	              DETECT_MS);
	ck_assert_int_ge(wait_status(1, 2, "down"), 0);
	tc_start_node(&C, 2);
	ms = wait_status(0, 2, "up");
	ck_assert_msg(ms >= 0, "a restarted shard still shows down after %d ms",
	              DETECT_MS);
	ck_assert_int_ge(wait_status(1, 2, "up"), 0);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Scans after a node missed writes                                     */

START_TEST(scans_read_like_gets_after_a_node_missed_writes)
{
	struct tc_resp r;
	char key[32], val[32];

	tc_start(&C, 3, NULL); /* N = 3, R = W = 2 */
	for (int i = 0; i < 50; i++) {
		snprintf(key, sizeof(key), "sc%02d", i);
		put(i % 3, key, "old");
	}
	tc_stop_node(&C, 2, SIGTERM);
	for (int i = 0; i < 50; i++) {
		snprintf(key, sizeof(key), "sc%02d", i);
		snprintf(val, sizeof(val), "new%02d", i);
		if (i % 2 == 0)
			put(i % 2, key, val);
	}
	for (int i = 0; i < 50; i += 5) {
		snprintf(key, sizeof(key), "sc%02d", i);
		ck_assert_int_eq(tc_http("DELETE", url(1, "/v1/kv/%s", key), NULL, 0,
		                         NULL, &r), 0);
		ck_assert_int_eq(r.status, 200);
		tc_resp_free(&r);
	}
	for (int i = 50; i < 60; i++) { /* keys it never saw */
		snprintf(key, sizeof(key), "sc%02d", i);
		put(0, key, "added");
	}
	tc_start_node(&C, 2);
	/* Through the node that missed it all, in small pages. */
	{
		char next[64] = "", u[256];
		int seen = 0, expect = 0;

		for (int page = 0; page < 100; page++) {
			char *p;

			snprintf(u, sizeof(u), "%s/v1/kv?prefix=sc&limit=7&values=1%s%s",
			         C.node[2].url, next[0] ? "&start_after=" : "", next);
			r = tc_get(u, 200);
			for (p = strstr(r.body, "\"key\":\""); p != NULL;
			     p = strstr(p + 1, "\"key\":\"")) {
				int k = atoi(p + 9);
				char want[32], b64[64], *v;

				while (expect < 50 && expect % 5 == 0)
					expect++;
				ck_assert_msg(k == expect,
				              "the scan shows sc%02d where sc%02d comes "
				              "next (deleted keys and new keys must "
				              "read as a GET would): %s",
				              k, expect, r.body);
				/* The newest value, never the one it missed. */
				if (k >= 50)
					snprintf(want, sizeof(want), "added");
				else if (k % 2 == 0)
					snprintf(want, sizeof(want), "new%02d", k);
				else
					snprintf(want, sizeof(want), "old");
				kvs__b64_encode(want, strlen(want), b64);
				v = strstr(p, "\"value_b64\":\"");
				ck_assert_ptr_nonnull(v);
				ck_assert_msg(strncmp(v + 13, b64, strlen(b64)) == 0 &&
				                      v[13 + strlen(b64)] == '"',
				              "sc%02d shows a stale value: %s", k, r.body);
				expect++;
				seen++;
			}
			p = strstr(r.body, "\"next\":\"");
			if (p == NULL) {
				tc_resp_free(&r);
				break;
			}
			sscanf(p + 8, "%63[^\"]", next);
			tc_resp_free(&r);
		}
		ck_assert_int_eq(seen, 50 - 10 + 10);
	}
}
END_TEST

/* ------------------------------------------------------------------ */
/* Compare-and-swap races through several nodes                         */

#define RACERS 3
#define ROUNDS 25

struct racer {
	int node;
	int wins;
	int errors;
};

/* Read the counter's version and value, try to write value + 1 with
 * If-Match; each success is one increment. Sends X-Kvshard-Hop, which
 * once made the node asked coordinate the write itself. */
static void *race(void *arg)
{
	struct racer *rc = arg;
	void *h = NULL;

	for (int i = 0; i < ROUNDS; i++) {
		char etag[160], cond[200], val[32];
		const char *hdrs[3] = {cond, "X-Kvshard-Hop: shard-9", NULL};
		struct tc_resp r;
		int v;

		if (tc_http_on(&h, "GET", url(rc->node, "/v1/kv/%s", "counter"),
		               NULL, 0, NULL, &r) != 0 || r.status != 200) {
			tc_resp_free(&r);
			rc->errors++;
			continue;
		}
		snprintf(etag, sizeof(etag), "%s", tc_header(&r, "ETag"));
		v = atoi(r.body);
		tc_resp_free(&r);
		snprintf(cond, sizeof(cond), "If-Match: %s", etag);
		snprintf(val, sizeof(val), "%d", v + 1);
		if (tc_http_on(&h, "PUT", url(rc->node, "/v1/kv/%s", "counter"),
		               val, strlen(val), hdrs, &r) != 0) {
			rc->errors++;
			continue;
		}
		if (r.status == 200)
			rc->wins++;
		else if (r.status != 412)
			rc->errors++;
		tc_resp_free(&r);
	}
	tc_http_close(&h);
	return NULL;
}

START_TEST(compare_and_swap_has_one_winner_per_version)
{
	pthread_t t[RACERS];
	struct racer rc[RACERS];
	struct tc_resp r;
	int wins = 0;

	tc_start(&C, 3, NULL);
	/* Steady state: every node sees every other up (a node started
	 * before the others saw them refuse until its probes or theirs
	 * say otherwise; api.md documents that window). */
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			ck_assert_int_ge(wait_status(i, j, "up"), 0);
	put(0, "counter", "0");
	for (int i = 0; i < RACERS; i++) {
		rc[i].node = i;
		rc[i].wins = rc[i].errors = 0;
		ck_assert_int_eq(pthread_create(&t[i], NULL, race, &rc[i]), 0);
	}
	for (int i = 0; i < RACERS; i++) {
		pthread_join(t[i], NULL);
		ck_assert_int_eq(rc[i].errors, 0);
		wins += rc[i].wins;
	}
	/* Every success was an increment of the version it read: no two
	 * writers may win from the same version. */
	r = tc_get(url(1, "/v1/kv/%s?r=all", "counter"), 200);
	ck_assert_msg(atoi(r.body) == wins,
	              "%d successful compare-and-swaps left the counter at %s",
	              wins, r.body);
	tc_resp_free(&r);
	ck_assert_int_gt(wins, 0);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Conditional writes: the primary decides                              */

/* PUT value to key through node with header h (may be NULL). */
static struct tc_resp put_with(int node, const char *key, const char *value,
                               const char *h)
{
	const char *hdrs[2] = {h, NULL};
	struct tc_resp r;

	ck_assert_int_eq(tc_http("PUT", url(node, "/v1/kv/%s", key), value,
	                         strlen(value), h != NULL ? hdrs : NULL, &r),
	                 0);
	return r;
}

/* The ETag of key read at R = all through node, as an If-Match header. */
static void if_match(int node, const char *key, char *out, size_t len)
{
	struct tc_resp r = tc_get(url(node, "/v1/kv/%s?r=all", key), 200);

	snprintf(out, len, "If-Match: %s", tc_header(&r, "ETag"));
	tc_resp_free(&r);
}

/*
 * Only the key's primary decides a conditional write, and against the
 * newest version: with the primary stopped, unconditional writes go on
 * but a compare-and-swap is refused (503, naming the primary) instead of
 * being decided by a node that cannot know what the primary decided; when
 * the primary returns without the writes it missed, a compare-and-swap
 * against the version they replaced fails (412) rather than overwrite
 * them; and with the primary hung, the answer is 504: the outcome is
 * unknown, since it may have acted.
 */
START_TEST(conditional_writes_are_decided_by_the_primary)
{
	char stale[200], cur[200];
	struct tc_resp r;
	int p, o;

	tc_start(&C, 3, "[cluster]\nrequest_timeout_ms = 400\n");
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			ck_assert_int_ge(wait_status(i, j, "up"), 0);
	p = owner_of("cas");
	o = (p + 1) % 3;
	put(o, "cas", "v1");
	if_match(o, "cas", stale, sizeof(stale));

	tc_stop_node(&C, p, SIGTERM);
	for (int i = 0; i < 3; i++)
		if (i != p)
			ck_assert_int_ge(wait_status(i, p, "down"), 0);
	put(o, "cas", "v2"); /* acknowledged by the other two */
	for (int via = 0; via < 3; via++) {
		if (via == p)
			continue;
		r = put_with(via, "cas", "v3", stale);
		ck_assert_msg(r.status == 503 && strstr(r.body, "unavailable") &&
		                      strstr(r.body, C.node[p].name),
		              "a compare-and-swap through %s with its primary "
		              "stopped: %ld %s",
		              C.node[via].name, r.status, r.body);
		tc_resp_free(&r);
	}

	tc_start_node(&C, p); /* it holds v1 only */
	ck_assert_int_ge(wait_status(o, p, "up"), 0);
	for (int via = 0; via < 3; via++) {
		r = put_with(via, "cas", "v3", stale);
		ck_assert_msg(r.status == 412,
		              "a compare-and-swap against a replaced version "
		              "through %s: %ld %s",
		              C.node[via].name, r.status, r.body);
		tc_resp_free(&r);
	}
	if_match(o, "cas", cur, sizeof(cur));
	r = put_with(o, "cas", "v3", cur);
	ck_assert_msg(r.status == 200, "a compare-and-swap: %ld %s", r.status,
	              r.body);
	tc_resp_free(&r);
	r = tc_get(url(p, "/v1/kv/%s?r=all", "cas"), 200);
	ck_assert_str_eq(r.body, "v3");
	tc_resp_free(&r);

	/* Hung: no answer, no refusal. */
	if_match(o, "cas", cur, sizeof(cur));
	ck_assert_int_eq(kill(C.node[p].pid, SIGSTOP), 0);
	r = put_with(o, "cas", "v4", cur);
	kill(C.node[p].pid, SIGCONT);
	ck_assert_msg(r.status == 504 && strstr(r.body, "timeout") &&
	                      strstr(r.body, "may or may not"),
	              "a compare-and-swap with its primary hung: %ld %s",
	              r.status, r.body);
	tc_resp_free(&r);
}
END_TEST

/*
 * With routing = "redirect", an owner coordinates an unconditional write
 * itself but sends a conditional one to the primary, the only node that
 * decides it; the primary never redirects.
 */
START_TEST(redirects_send_conditional_writes_to_the_primary)
{
	char cond[200], loc[128];
	struct tc_resp r;
	int p, o;

	tc_start(&C, 3, "[cluster]\nrouting = \"redirect\"\n");
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			ck_assert_int_ge(wait_status(i, j, "up"), 0);
	p = owner_of("red");
	o = (p + 1) % 3;
	put(o, "red", "v1");
	if_match(o, "red", cond, sizeof(cond));
	r = put_with(o, "red", "v2", cond);
	snprintf(loc, sizeof(loc), "%s/v1/kv/red", C.node[p].url);
	ck_assert_msg(r.status == 307 && tc_header(&r, "Location") != NULL &&
	                      strcmp(tc_header(&r, "Location"), loc) == 0,
	              "a conditional write on a secondary: %ld, Location %s",
	              r.status, tc_header(&r, "Location"));
	tc_resp_free(&r);
	r = put_with(p, "red", "v2", cond);
	ck_assert_int_eq(r.status, 200);
	tc_resp_free(&r);
}
END_TEST

/* ------------------------------------------------------------------ */
/* A hung node                                                          */

/*
 * A node stopped by SIGSTOP accepts connections and never answers: the
 * others must not wait for it the request timeout (2 s). Right after the
 * stop, before any probe can have noticed, every read and write through
 * the two others succeeds, and each well under the timeout (speculative
 * retry sends a slow replica read or forward to the next owner; a write
 * needs only W = 2 of 3).
 */
START_TEST(a_hung_node_costs_no_timeouts)
{
	void *h = NULL;
	uint64_t worst = 0;

	tc_start(&C, 3, NULL);
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			ck_assert_int_ge(wait_status(i, j, "up"), 0);
	for (int k = 0; k < 10; k++) {
		char key[16];

		snprintf(key, sizeof(key), "hung%d", k);
		put(k % 3, key, "before");
	}
	ck_assert_int_eq(kill(C.node[2].pid, SIGSTOP), 0);
	for (int i = 0; i < 40; i++) {
		char key[16];
		struct tc_resp r;
		uint64_t t0 = tu_now_ms(), took;
		int rc;

		snprintf(key, sizeof(key), "hung%d", i % 10);
		rc = i % 2 ? tc_http_on(&h, "GET", url(i % 4 < 2, "/v1/kv/%s", key),
		                        NULL, 0, NULL, &r)
		           : tc_http_on(&h, "PUT", url(i % 4 < 2, "/v1/kv/%s", key),
		                        "after", 5, NULL, &r);
		took = tu_now_ms() - t0;
		worst = took > worst ? took : worst;
		ck_assert_msg(rc == 0 && r.status == 200,
		              "with shard-3 hung, %s %s: %ld %s", i % 2 ? "GET" : "PUT",
		              key, r.status, r.body);
		tc_resp_free(&r);
	}
	tc_http_close(&h);
	kill(C.node[2].pid, SIGCONT);
	ck_assert_msg(worst < 1000,
	              "with shard-3 hung, a request took %llu ms (the request "
	              "timeout is 2000)",
	              (unsigned long long)worst);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("routing");
	TCase *tc = tcase_create("cluster");
	SRunner *sr;
	int failed;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_set_timeout(tc, 90);
	tcase_add_test(tc, forwarded_paths_are_rebuilt_from_the_key);
	tcase_add_test(tc, long_hosts_and_tokens_survive_forwarding);
	tcase_add_test(tc, quorum_per_request);
	tcase_add_test(tc, dead_peers_show_down_without_traffic);
	tcase_add_test(tc, scans_read_like_gets_after_a_node_missed_writes);
	tcase_add_test(tc, compare_and_swap_has_one_winner_per_version);
	tcase_add_test(tc, conditional_writes_are_decided_by_the_primary);
	tcase_add_test(tc, redirects_send_conditional_writes_to_the_primary);
	tcase_add_test(tc, a_hung_node_costs_no_timeouts);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	curl_global_cleanup();
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
