/*
 * test_hlc.c - the hybrid logical clock: monotonic under wall-clock steps,
 * merging remote readings, bounded drift, many threads.
 */
#include <check.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "hlc.h"
#include "kvshard/common.h"

static uint64_t fake_ms;

static uint64_t fake_wall(void *ud)
{
	(void)ud;
	return fake_ms;
}

START_TEST(follows_wall_clock)
{
	kvs__hlc c;
	uint64_t t;

	fake_ms = 1000000;
	kvs__hlc_init(&c, 0, fake_wall, NULL);
	t = kvs__hlc_now(&c);
	ck_assert_uint_eq(KVS_HLC_PHYSICAL(t), 1000000);
	ck_assert_uint_eq(KVS_HLC_LOGICAL(t), 0);
	/* Same millisecond: the counter moves. */
	t = kvs__hlc_now(&c);
	ck_assert_uint_eq(KVS_HLC_PHYSICAL(t), 1000000);
	ck_assert_uint_eq(KVS_HLC_LOGICAL(t), 1);
	fake_ms = 1000005;
	t = kvs__hlc_now(&c);
	ck_assert_uint_eq(t, KVS_HLC_MAKE(1000005, 0));
}
END_TEST

START_TEST(monotonic_when_wall_clock_steps_back)
{
	kvs__hlc c;
	uint64_t prev, t;

	fake_ms = 2000000;
	kvs__hlc_init(&c, 0, fake_wall, NULL);
	prev = kvs__hlc_now(&c);
	fake_ms = 1000000; /* NTP stepped the clock back 1000 s */
	for (int i = 0; i < 100000; i++) {
		t = kvs__hlc_now(&c);
		ck_assert_uint_gt(t, prev);
		prev = t;
	}
	/* 100000 readings in one frozen millisecond overflow the 16-bit
	 * counter: it carries into the physical part, still monotonic. */
	ck_assert_uint_gt(KVS_HLC_PHYSICAL(prev), 2000000);
}
END_TEST

START_TEST(floor_survives_restart)
{
	kvs__hlc c;

	fake_ms = 500;
	kvs__hlc_init(&c, KVS_HLC_MAKE(9000, 3), fake_wall, NULL);
	ck_assert_uint_eq(kvs__hlc_now(&c), KVS_HLC_MAKE(9000, 4));
}
END_TEST

START_TEST(update_moves_past_remote)
{
	kvs__hlc c;
	uint64_t t, local;

	fake_ms = 1000;
	kvs__hlc_init(&c, 0, fake_wall, NULL);
	local = kvs__hlc_now(&c);
	/* A remote clock 5 s ahead. */
	ck_assert_int_eq(kvs__hlc_update(&c, KVS_HLC_MAKE(6000, 7), &t), KVS_OK);
	ck_assert_uint_eq(t, KVS_HLC_MAKE(6000, 8));
	ck_assert_uint_gt(kvs__hlc_now(&c), t);
	/* A remote reading from the past changes nothing but the counter. */
	ck_assert_int_eq(kvs__hlc_update(&c, local, &t), KVS_OK);
	ck_assert_uint_gt(t, KVS_HLC_MAKE(6000, 8));
	/* Once the wall passes the remote reading, it leads again. */
	fake_ms = 7000;
	ck_assert_uint_eq(kvs__hlc_now(&c), KVS_HLC_MAKE(7000, 0));
}
END_TEST

START_TEST(update_refuses_far_future)
{
	kvs__hlc c;
	uint64_t t, before;

	fake_ms = 1000;
	kvs__hlc_init(&c, 0, fake_wall, NULL);
	c.max_ahead_ms = 500;
	before = kvs__hlc_now(&c);
	ck_assert_int_eq(kvs__hlc_update(&c, KVS_HLC_MAKE(1600, 0), &t),
	                 KVS_ECLOCK);
	ck_assert_uint_eq(kvs__hlc_peek(&c), before);
	ck_assert_int_eq(kvs__hlc_update(&c, KVS_HLC_MAKE(1400, 0), &t), KVS_OK);
	ck_assert_uint_eq(t, KVS_HLC_MAKE(1400, 1));
}
END_TEST

#define THREADS 8
#define PER_THREAD 20000

static kvs__hlc shared_clock;
static uint64_t readings[THREADS][PER_THREAD];

static void *reader_thread(void *arg)
{
	uint64_t *out = arg;

	for (int i = 0; i < PER_THREAD; i++)
		out[i] = kvs__hlc_now(&shared_clock);
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

START_TEST(unique_across_threads)
{
	pthread_t th[THREADS];
	uint64_t *all = malloc(sizeof(readings));

	kvs__hlc_init(&shared_clock, 0, NULL, NULL);
	for (int i = 0; i < THREADS; i++)
		pthread_create(&th[i], NULL, reader_thread, readings[i]);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	/* Each thread's readings increase... */
	for (int i = 0; i < THREADS; i++)
		for (int j = 1; j < PER_THREAD; j++)
			ck_assert_uint_gt(readings[i][j], readings[i][j - 1]);
	/* ...and no two threads ever got the same one. */
	memcpy(all, readings, sizeof(readings));
	qsort(all, THREADS * PER_THREAD, sizeof(uint64_t), cmp_u64);
	for (int i = 1; i < THREADS * PER_THREAD; i++)
		ck_assert_uint_ne(all[i], all[i - 1]);
	free(all);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("hlc");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, follows_wall_clock);
	tcase_add_test(tc, monotonic_when_wall_clock_steps_back);
	tcase_add_test(tc, floor_survives_restart);
	tcase_add_test(tc, update_moves_past_remote);
	tcase_add_test(tc, update_refuses_far_future);
	tcase_add_test(tc, unique_across_threads);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
