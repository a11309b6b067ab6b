/*
 * test_healing.c - nothing acknowledged is lost when a node dies and comes
 * back: the writes it missed reach it from the others' hints. Real
 * kvshard-server processes on loopback; every wait is bounded.
 */
#include <check.h>
#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cluster.h"
#include "kvshard.h"
#include "testutil.h"

/* Writes the streaming writer makes at most. */
#define MAX_WRITES 200000
/* How long the returned node may take to get what it missed. */
#define CATCH_UP_MS 15000

static struct tc_cluster C;

static void teardown(void)
{
	tc_stop(&C);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* A writer streaming "w<i>" = "v<i>" through nodes 0 and 1 in turn,
 * remembering which writes were acknowledged. */
struct writer {
	atomic_int stop;
	int n;              /* writes tried */
	unsigned char *acked;
	int n_acked;
};

static void *write_stream(void *arg)
{
	struct writer *w = arg;
	void *h[2] = {NULL, NULL};

	while (!atomic_load(&w->stop) && w->n < MAX_WRITES) {
		char url[128], value[32];
		struct tc_resp r;
		int node = w->n % 2;

		snprintf(url, sizeof(url), "%s/v1/kv/w%d", C.node[node].url,
		         w->n);
		snprintf(value, sizeof(value), "v%d", w->n);
		if (tc_http_on(&h[node], "PUT", url, value, strlen(value), NULL,
		               &r) == 0 &&
		    r.status == 200) {
			w->acked[w->n] = 1;
			w->n_acked++;
		}
		tc_resp_free(&r);
		w->n++;
	}
	tc_http_close(&h[0]);
	tc_http_close(&h[1]);
	return NULL;
}

/* Wait until no node of `nodes` keeps hints for node `target`. */
static void wait_hints_delivered(const int *nodes, int n_nodes, int target)
{
	char pending[128];
	uint64_t deadline = now_ms() + CATCH_UP_MS;

	snprintf(pending, sizeof(pending), "kvshard_hints_pending{shard=\"%s\"}",
	         C.node[target].name);
	for (;;) {
		long long left = 0;

		for (int i = 0; i < n_nodes; i++) {
			long long v = tc_metric(&C, nodes[i], pending);

			ck_assert_msg(v >= 0, "no %s in the metrics of %s", pending,
			              C.node[nodes[i]].name);
			left += v;
		}
		if (left == 0)
			return;
		ck_assert_msg(now_ms() < deadline,
		              "%lld hints for %s still pending after %d ms", left,
		              C.node[target].name, CATCH_UP_MS);
		sleep_ms(100);
	}
}

/* Acknowledged writes of w that node does not hold itself (?r=1). */
static int count_missing(const struct writer *w, int node)
{
	void *h = NULL;
	int missing = 0;

	for (int i = 0; i < w->n; i++) {
		char url[128], value[32];
		struct tc_resp r;

		if (!w->acked[i])
			continue;
		snprintf(url, sizeof(url), "%s/v1/kv/w%d?r=1", C.node[node].url,
		         i);
		snprintf(value, sizeof(value), "v%d", i);
		ck_assert_int_eq(tc_http_on(&h, "GET", url, NULL, 0, NULL, &r),
		                 0);
		if (r.status != 200 || strcmp(r.body, value) != 0)
			missing++;
		tc_resp_free(&r);
	}
	tc_http_close(&h);
	return missing;
}

enum fault {
	KILL_ONCE,
	STOP_10S,
	KILL_20_TIMES,
	KILL_NO_HINTS, /* hints off */
	KILL_DROP_HINTS /* hints kept, then deleted before the node returns */
};

/* Delete every hint shard i keeps (it must be stopped): drop the hints
 * database of its store. */
static void drop_hints(int i)
{
	char path[700];

	snprintf(path, sizeof(path), "%s/data/%s", C.dir, C.node[i].name);
	tu_lmdb_drop(path, "hints");
}

/* How long anti-entropy may take to repair a node that lost its hints. */
#define REPAIR_MS 60000

/* Wait until nodes 0 and 1 have each completed two anti-entropy passes
 * since now (so at least one whole pass began after node 2 was back). */
static void wait_aae_passes(void)
{
	long long base0 = tc_metric(&C, 0, "kvshard_aae_passes_total");
	long long base1 = tc_metric(&C, 1, "kvshard_aae_passes_total");
	uint64_t deadline = now_ms() + REPAIR_MS;

	ck_assert(base0 >= 0 && base1 >= 0);
	for (;;) {
		long long p0 = tc_metric(&C, 0, "kvshard_aae_passes_total");
		long long p1 = tc_metric(&C, 1, "kvshard_aae_passes_total");

		if (p0 >= base0 + 2 && p1 >= base1 + 2)
			return;
		ck_assert_msg(now_ms() < deadline,
		              "anti-entropy passes did not complete within %d ms "
		              "(%lld, %lld)",
		              REPAIR_MS, p0 - base0, p1 - base1);
		sleep_ms(200);
	}
}

/*
 * 3 nodes, N=3 W=2 R=2. A writer streams writes through two of them while
 * the third suffers `fault`. Within 15 s of its return, with the other two
 * stopped, every acknowledged write reads back through it alone with
 * ?r=1.
 */
static void stream_through(enum fault fault)
{
	static const int writers[] = {0, 1};
	struct writer w;
	pthread_t t;
	long long written, delivered = 0;
	int missing = 0, joined = 0;

	memset(&w, 0, sizeof(w));
	w.acked = calloc(MAX_WRITES, 1);
	ck_assert_ptr_nonnull(w.acked);
	/* Without hints, as if its hints were lost: anti-entropy (every
	 * 2 s here; the default is 600 s) must repair it. */
	tc_start(&C, 3,
	         fault == KILL_NO_HINTS
	                 ? "[cluster]\nhint_max_bytes = 0\n"
	                   "anti_entropy_interval_s = 2\n"
	         : fault == KILL_DROP_HINTS
	                 ? "[cluster]\nanti_entropy_interval_s = 2\n"
	                 : NULL);
	ck_assert_int_eq(pthread_create(&t, NULL, write_stream, &w), 0);
	sleep_ms(500);
	switch (fault) {
	case KILL_ONCE:
	case KILL_NO_HINTS:
		tc_stop_node(&C, 2, SIGKILL);
		sleep_ms(2000);
		tc_start_node(&C, 2); /* the store must open: fails if not */
		break;
	case KILL_DROP_HINTS:
		tc_stop_node(&C, 2, SIGKILL);
		sleep_ms(2000);
		atomic_store(&w.stop, 1);
		pthread_join(t, NULL);
		joined = 1;
		ck_assert_int_gt(tc_metric(&C, 0, "kvshard_hints_written_total") +
		                         tc_metric(&C, 1, "kvshard_hints_written_total"),
		                 0);
		for (int i = 0; i < 2; i++) {
			char pending[128];

			tc_stop_node(&C, i, SIGTERM);
			drop_hints(i);
			tc_start_node(&C, i);
			snprintf(pending, sizeof(pending),
			         "kvshard_hints_pending{shard=\"%s\"}",
			         C.node[2].name);
			ck_assert_int_eq(tc_metric(&C, i, pending), 0);
		}
		tc_start_node(&C, 2);
		break;
	case STOP_10S:
		ck_assert_int_eq(kill(C.node[2].pid, SIGSTOP), 0);
		sleep_ms(10000);
		ck_assert_int_eq(kill(C.node[2].pid, SIGCONT), 0);
		break;
	case KILL_20_TIMES:
		for (int i = 0; i < 20; i++) {
			tc_stop_node(&C, 2, SIGKILL);
			sleep_ms(100 + 50 * (unsigned)(i % 4));
			tc_start_node(&C, 2);
			sleep_ms(150);
		}
		break;
	}
	if (!joined) {
		sleep_ms(500);
		atomic_store(&w.stop, 1);
		pthread_join(t, NULL);
	}
	ck_assert_msg(w.n_acked > 100, "only %d writes acknowledged",
	              w.n_acked);
	written = tc_metric(&C, 0, "kvshard_hints_written_total") +
	          tc_metric(&C, 1, "kvshard_hints_written_total");
	if (fault == KILL_NO_HINTS || fault == KILL_DROP_HINTS) {
		long long repaired;

		if (fault == KILL_NO_HINTS)
			ck_assert_int_eq(written, 0);
		wait_aae_passes();
		repaired = tc_metric(&C, 0, "kvshard_aae_keys_repaired_total") +
		           tc_metric(&C, 1, "kvshard_aae_keys_repaired_total") +
		           tc_metric(&C, 2, "kvshard_aae_keys_repaired_total");
		ck_assert_msg(repaired > 0, "anti-entropy repaired nothing");
	} else {
		ck_assert_msg(written > 0, "no hints kept while a node was away");
		/* The hints reach it: nothing pending for it any more. */
		wait_hints_delivered(writers, 2, 2);
		delivered = tc_metric(&C, 0, "kvshard_hints_delivered_total") +
		            tc_metric(&C, 1, "kvshard_hints_delivered_total");
		ck_assert_msg(delivered > 0, "no hint was delivered");
	}

	/* The replicas converged: each of the two others has every
	 * acknowledged write of its own. */
	for (int node = 0; node < 2; node++) {
		missing = count_missing(&w, node);
		ck_assert_msg(missing == 0,
		              "%d of %d acknowledged writes missing on %s",
		              missing, w.n_acked, C.node[node].name);
	}
	/* Only the returned node is left: everything acknowledged is there. */
	tc_stop_node(&C, 0, SIGTERM);
	tc_stop_node(&C, 1, SIGTERM);
	missing = count_missing(&w, 2);
	ck_assert_msg(missing == 0,
	              "%d of %d acknowledged writes missing on the node that "
	              "was away (%lld hints written, %lld delivered)",
	              missing, w.n_acked, written, delivered);
	free(w.acked);
}

START_TEST(a_killed_node_gets_what_it_missed)
{
	stream_through(KILL_ONCE);
}
END_TEST

START_TEST(a_stopped_node_gets_what_it_missed)
{
	stream_through(STOP_10S);
}
END_TEST

START_TEST(anti_entropy_repairs_a_node_without_hints)
{
	stream_through(KILL_NO_HINTS);
}
END_TEST

START_TEST(anti_entropy_repairs_a_node_whose_hints_were_lost)
{
	stream_through(KILL_DROP_HINTS);
}
END_TEST

START_TEST(twenty_kills_lose_nothing)
{
	stream_through(KILL_20_TIMES);
}
END_TEST

/* The hints survive a crash of the node that keeps them. */
START_TEST(hints_survive_a_crash_of_their_keeper)
{
	static const int keeper[] = {0};
	char url[128], value[32];
	struct tc_resp r;

	tc_start(&C, 3, NULL);
	tc_stop_node(&C, 2, SIGKILL);
	for (int i = 0; i < 200; i++) {
		snprintf(url, sizeof(url), "%s/v1/kv/k%d", C.node[0].url, i);
		snprintf(value, sizeof(value), "v%d", i);
		ck_assert_int_eq(tc_http("PUT", url, value, strlen(value), NULL,
		                         &r), 0);
		ck_assert_int_eq(r.status, 200);
		tc_resp_free(&r);
	}
	/* The hints are written in the next group commit: give it time. */
	sleep_ms(300);
	tc_stop_node(&C, 0, SIGKILL);
	tc_start_node(&C, 0);
	snprintf(url, sizeof(url), "kvshard_hints_pending{shard=\"%s\"}",
	         C.node[2].name);
	ck_assert_int_eq(tc_metric(&C, 0, url), 200);
	tc_start_node(&C, 2);
	wait_hints_delivered(keeper, 1, 2);
	tc_stop_node(&C, 0, SIGTERM);
	tc_stop_node(&C, 1, SIGTERM);
	for (int i = 0; i < 200; i++) {
		snprintf(url, sizeof(url), "%s/v1/kv/k%d?r=1", C.node[2].url, i);
		snprintf(value, sizeof(value), "v%d", i);
		r = tc_get(url, 200);
		ck_assert_str_eq(r.body, value);
		tc_resp_free(&r);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("healing");
	TCase *tc = tcase_create("cluster");
	SRunner *sr;
	int failed;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	tcase_set_timeout(tc, 120);
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_test(tc, a_killed_node_gets_what_it_missed);
	tcase_add_test(tc, hints_survive_a_crash_of_their_keeper);
	tcase_add_test(tc, a_stopped_node_gets_what_it_missed);
	tcase_add_test(tc, twenty_kills_lose_nothing);
	tcase_add_test(tc, anti_entropy_repairs_a_node_without_hints);
	tcase_add_test(tc, anti_entropy_repairs_a_node_whose_hints_were_lost);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	curl_global_cleanup();
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
