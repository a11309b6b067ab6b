/*
 * test_etcd.c - the etcd client against a private etcd: reads, compare-
 * and-swap, leases and what they hold, listing a prefix, and an endpoint
 * that cannot be reached.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster.h"
#include "etcd.h"
#include "kvshard.h"
#include "testutil.h"

static struct tc_etcd srv;
static kvs__etcd *e;

static void setup(void)
{
	const char *ep[1];

	tc_etcd_start(&srv);
	ep[0] = srv.endpoint;
	ck_assert_int_eq(kvs__etcd_new(&e, ep, 1, 2000), KVS_OK);
}

static void teardown(void)
{
	kvs__etcd_free(e);
	e = NULL;
	tc_etcd_stop(&srv, 1);
}

START_TEST(compare_and_swap)
{
	char *v = NULL;
	size_t len = 0;
	int64_t rev = 0, rev2 = 0, got = 0;

	ck_assert_int_eq(kvs__etcd_get(e, "/t/doc", &v, &len, &rev),
	                 KVS_NOTFOUND);
	/* Created only while it does not exist. */
	ck_assert_int_eq(kvs__etcd_put_if(e, "/t/doc", "one", 3, 0, &rev),
	                 KVS_OK);
	ck_assert_int_gt(rev, 0);
	ck_assert_int_eq(kvs__etcd_put_if(e, "/t/doc", "two", 3, 0, NULL),
	                 KVS_ECONFLICT);
	ck_assert_int_eq(kvs__etcd_get(e, "/t/doc", &v, &len, &got), KVS_OK);
	ck_assert_uint_eq(len, 3);
	ck_assert_str_eq(v, "one");
	ck_assert_int_eq(got, rev);
	free(v);
	/* Replaced only at the revision read. */
	ck_assert_int_eq(kvs__etcd_put_if(e, "/t/doc", "three", 5, rev, &rev2),
	                 KVS_OK);
	ck_assert_int_gt(rev2, rev);
	ck_assert_int_eq(kvs__etcd_put_if(e, "/t/doc", "four", 4, rev, NULL),
	                 KVS_ECONFLICT);
	ck_assert_int_eq(kvs__etcd_get(e, "/t/doc", &v, &len, &got), KVS_OK);
	ck_assert_str_eq(v, "three");
	ck_assert_int_eq(got, rev2);
	free(v);
	/* Bytes, not text. */
	ck_assert_int_eq(kvs__etcd_put(e, "/t/bin", "a\0b", 3, 0), KVS_OK);
	ck_assert_int_eq(kvs__etcd_get(e, "/t/bin", &v, &len, NULL), KVS_OK);
	ck_assert_uint_eq(len, 3);
	ck_assert_int_eq(memcmp(v, "a\0b", 3), 0);
	free(v);
}
END_TEST

struct seen {
	char keys[8][64];
	int n;
};

static int collect(void *ud, const char *key, size_t key_len,
                   const char *value, size_t value_len)
{
	struct seen *s = ud;

	(void)value;
	(void)value_len;
	ck_assert_int_lt(s->n, 8);
	ck_assert_uint_lt(key_len, 64);
	memcpy(s->keys[s->n], key, key_len);
	s->keys[s->n][key_len] = '\0';
	s->n++;
	return 0;
}

START_TEST(leases_hold_keys)
{
	int64_t lease = 0, other = 0;
	struct seen s = {0};
	char *v = NULL;
	size_t len;
	uint64_t deadline;

	ck_assert_int_eq(kvs__etcd_lease_grant(e, 2, &lease), KVS_OK);
	ck_assert_int_eq(kvs__etcd_lease_grant(e, 60, &other), KVS_OK);
	ck_assert_int_eq(kvs__etcd_put(e, "/t/nodes/a", "A", 1, lease), KVS_OK);
	ck_assert_int_eq(kvs__etcd_put(e, "/t/nodes/b", "B", 1, other), KVS_OK);
	ck_assert_int_eq(kvs__etcd_put(e, "/t/nodesX", "no", 2, 0), KVS_OK);
	ck_assert_int_eq(kvs__etcd_put(e, "/t/node", "no", 2, 0), KVS_OK);
	ck_assert_int_eq(kvs__etcd_list(e, "/t/nodes/", collect, &s), KVS_OK);
	ck_assert_int_eq(s.n, 2);
	ck_assert_str_eq(s.keys[0], "/t/nodes/a");
	ck_assert_str_eq(s.keys[1], "/t/nodes/b");
	/* Renewed, it outlives its TTL. */
	for (int i = 0; i < 4; i++) {
		usleep(700 * 1000);
		ck_assert_int_eq(kvs__etcd_lease_keepalive(e, lease), KVS_OK);
	}
	ck_assert_int_eq(kvs__etcd_get(e, "/t/nodes/a", &v, &len, NULL),
	                 KVS_OK);
	free(v);
	/* Left alone, it expires with its key (etcd checks every 500 ms). */
	deadline = tu_now_ms() + 6000;
	while (kvs__etcd_lease_keepalive(e, lease) == KVS_OK &&
	       tu_now_ms() < deadline)
		usleep(3000 * 1000);
	ck_assert_int_eq(kvs__etcd_lease_keepalive(e, lease), KVS_NOTFOUND);
	ck_assert_int_eq(kvs__etcd_get(e, "/t/nodes/a", &v, &len, NULL),
	                 KVS_NOTFOUND);
	/* Revoked, at once. */
	ck_assert_int_eq(kvs__etcd_lease_revoke(e, other), KVS_OK);
	ck_assert_int_eq(kvs__etcd_get(e, "/t/nodes/b", &v, &len, NULL),
	                 KVS_NOTFOUND);
	s.n = 0;
	ck_assert_int_eq(kvs__etcd_list(e, "/t/nodes/", collect, &s), KVS_OK);
	ck_assert_int_eq(s.n, 0);
}
END_TEST

/* Threads of this process. */
static int threads(void)
{
	char line[256];
	int n = -1;
	FILE *f = fopen("/proc/self/status", "r");

	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "Threads: %d", &n) == 1)
			break;
	fclose(f);
	ck_assert_int_gt(n, 0);
	return n;
}

/* Requests are rare and synchronous: the client runs none of its own. */
START_TEST(no_thread_of_its_own)
{
	const char *ep[1] = {srv.endpoint};
	int before = threads();
	kvs__etcd *other;
	char *v = NULL;
	size_t len;

	ck_assert_int_eq(kvs__etcd_new(&other, ep, 1, 2000), KVS_OK);
	ck_assert_int_eq(kvs__etcd_get(other, "/t/none", &v, &len, NULL),
	                 KVS_NOTFOUND);
	ck_assert_int_eq(threads(), before);
	kvs__etcd_free(other);
}
END_TEST

/* An endpoint that does not answer is skipped; with none left, the
 * call fails within its timeouts. */
START_TEST(endpoints_in_turn)
{
	char dead[32];
	const char *ep[2];
	kvs__etcd *two;
	char *v = NULL;
	size_t len;
	uint64_t t0;

	snprintf(dead, sizeof(dead), "127.0.0.1:%d", tc_free_port());
	ep[0] = dead;
	ep[1] = srv.endpoint;
	ck_assert_int_eq(kvs__etcd_new(&two, ep, 2, 1000), KVS_OK);
	ck_assert_int_eq(kvs__etcd_put(two, "/t/k", "v", 1, 0), KVS_OK);
	ck_assert_int_eq(kvs__etcd_get(two, "/t/k", &v, &len, NULL), KVS_OK);
	free(v);
	kvs__etcd_free(two);
	ep[1] = dead;
	ck_assert_int_eq(kvs__etcd_new(&two, ep, 2, 1000), KVS_OK);
	t0 = tu_now_ms();
	ck_assert_int_eq(kvs__etcd_get(two, "/t/k", &v, &len, NULL),
	                 KVS_ECONNECT);
	ck_assert_uint_lt(tu_now_ms() - t0, 5000);
	kvs__etcd_free(two);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("etcd");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, compare_and_swap);
	tcase_add_test(tc, leases_hold_keys);
	tcase_add_test(tc, endpoints_in_turn);
	tcase_add_test(tc, no_thread_of_its_own);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
