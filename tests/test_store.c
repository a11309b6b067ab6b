/*
 * test_store.c - the LMDB store: records, tombstones, conditions,
 * replication writes, scans, group commit under many threads, map growth,
 * durability across close and across SIGKILL.
 */
#include <check.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <signal.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kvshard.h"
#include "store_internal.h"
#include "testutil.h"

static char dir[4096];
static kvs_store *st;

static void setup(void)
{
	snprintf(dir, sizeof(dir), "%s", tu_mkdtemp());
	ck_assert_int_eq(kvs_store_open(&st, dir, NULL), KVS_OK);
}

static void teardown(void)
{
	kvs_store_close(st);
	st = NULL;
	tu_rmtree(dir);
}

static void reopen(const kvs_store_options *o)
{
	kvs_store_close(st);
	st = NULL;
	ck_assert_int_eq(kvs_store_open(&st, dir, o), KVS_OK);
}

/* Get key (a C string) and compare with the expected bytes. */
static void expect_value(const char *key, const void *want, size_t want_len)
{
	void *v = NULL;
	size_t n = 12345;

	ck_assert_int_eq(kvs_store_get(st, key, strlen(key), &v, &n, NULL),
	                 KVS_OK);
	ck_assert_uint_eq(n, want_len);
	if (want_len > 0)
		ck_assert_mem_eq(v, want, want_len);
	kvs_free(v);
}

static void expect_absent(const char *key)
{
	void *v = NULL;
	size_t n = 0;

	ck_assert_int_eq(kvs_store_get(st, key, strlen(key), &v, &n, NULL),
	                 KVS_NOTFOUND);
	ck_assert_ptr_null(v);
}

START_TEST(put_get_overwrite)
{
	kvs_stamp s1, s2, got;
	void *v;
	size_t n;

	ck_assert_int_eq(kvs_store_put(st, "k", 1, "one", 3, NULL, &s1), KVS_OK);
	ck_assert_uint_ne(s1.hlc, 0);
	ck_assert_int_eq(kvs_store_put(st, "k", 1, "two!", 4, NULL, &s2), KVS_OK);
	ck_assert_int_gt(kvs_stamp_cmp(&s2, &s1), 0);
	ck_assert_int_eq(kvs_store_get(st, "k", 1, &v, &n, &got), KVS_OK);
	ck_assert_uint_eq(n, 4);
	ck_assert_mem_eq(v, "two!", 4);
	ck_assert_int_eq(kvs_stamp_cmp(&got, &s2), 0);
	kvs_free(v);
	expect_absent("other");
}
END_TEST

START_TEST(empty_value_is_a_value)
{
	kvs_store_stats ss;

	ck_assert_int_eq(kvs_store_put(st, "e", 1, NULL, 0, NULL, NULL), KVS_OK);
	expect_value("e", "", 0);
	ck_assert_int_eq(kvs_store_stat(st, &ss), KVS_OK);
	ck_assert_uint_eq(ss.keys, 1);
}
END_TEST

START_TEST(binary_keys_and_values)
{
	unsigned char key[7] = {'a', 0, 'b', 0xff, 0, 0x80, 'z'};
	unsigned char val[4096];
	void *v;
	size_t n;

	for (size_t i = 0; i < sizeof(val); i++)
		val[i] = (unsigned char)(i * 7);
	val[0] = 0;
	ck_assert_int_eq(kvs_store_put(st, key, sizeof(key), val, sizeof(val),
	                               NULL, NULL),
	                 KVS_OK);
	ck_assert_int_eq(kvs_store_get(st, key, sizeof(key), &v, &n, NULL),
	                 KVS_OK);
	ck_assert_uint_eq(n, sizeof(val));
	ck_assert_mem_eq(v, val, sizeof(val));
	kvs_free(v);
	/* A key that differs only after the NUL is another key. */
	key[6] = 'y';
	ck_assert_int_eq(kvs_store_get(st, key, sizeof(key), &v, &n, NULL),
	                 KVS_NOTFOUND);
}
END_TEST

START_TEST(key_size_limits)
{
	size_t max = kvs_store_max_key_size(st);
	char *big = malloc(max + 2);
	void *v;
	size_t n;

	ck_assert_uint_eq(max, 511);
	memset(big, 'k', max + 2);
	ck_assert_int_eq(kvs_store_put(st, "", 0, "x", 1, NULL, NULL),
	                 KVS_EKEYSIZE);
	ck_assert_int_eq(kvs_store_put(st, NULL, 0, "x", 1, NULL, NULL),
	                 KVS_EKEYSIZE);
	ck_assert_int_eq(kvs_store_put(st, big, max, "max", 3, NULL, NULL),
	                 KVS_OK);
	ck_assert_int_eq(kvs_store_get(st, big, max, &v, &n, NULL), KVS_OK);
	ck_assert_mem_eq(v, "max", 3);
	kvs_free(v);
	/* One byte more is refused, never truncated onto the max key. */
	ck_assert_int_eq(kvs_store_put(st, big, max + 1, "no", 2, NULL, NULL),
	                 KVS_EKEYSIZE);
	ck_assert_int_eq(kvs_store_get(st, big, max + 1, &v, &n, NULL),
	                 KVS_EKEYSIZE);
	ck_assert_int_eq(kvs_store_delete(st, big, max + 1, NULL, NULL),
	                 KVS_EKEYSIZE);
	ck_assert_int_eq(kvs_store_get(st, big, max, &v, &n, NULL), KVS_OK);
	ck_assert_mem_eq(v, "max", 3);
	kvs_free(v);
	free(big);
}
END_TEST

START_TEST(value_size_limit)
{
	static const char one = 'x';

	/* The length is checked before the bytes are read. */
	ck_assert_int_eq(kvs_store_put(st, "k", 1, &one,
	                               KVS_STORE_MAX_VALUE_SIZE + 1, NULL, NULL),
	                 KVS_EVALSIZE);
	ck_assert_int_eq(kvs_store_put(st, "k", 1, NULL, 5, NULL, NULL),
	                 KVS_EINVAL);
}
END_TEST

struct seen {
	int calls;
	unsigned flags;
	kvs_stamp stamp;
	size_t value_len;
};

static int remember(void *ud, const kvs_record *rec)
{
	struct seen *s = ud;

	s->calls++;
	s->flags = rec->flags;
	s->stamp = rec->stamp;
	s->value_len = rec->value_len;
	return 0;
}

START_TEST(delete_writes_tombstone)
{
	kvs_stamp put, del, del2;
	struct seen seen = {0};
	kvs_store_stats ss;

	ck_assert_int_eq(kvs_store_put(st, "d", 1, "v", 1, NULL, &put), KVS_OK);
	ck_assert_int_eq(kvs_store_delete(st, "d", 1, NULL, &del), KVS_OK);
	ck_assert_int_gt(kvs_stamp_cmp(&del, &put), 0);
	expect_absent("d");
	ck_assert_int_eq(kvs_store_read(st, "d", 1, 0, remember, &seen),
	                 KVS_NOTFOUND);
	ck_assert_int_eq(seen.calls, 0);
	ck_assert_int_eq(kvs_store_read(st, "d", 1, KVS_READ_TOMBSTONES,
	                                remember, &seen),
	                 KVS_OK);
	ck_assert_int_eq(seen.calls, 1);
	ck_assert_uint_eq(seen.flags, KVS_RECORD_TOMBSTONE);
	ck_assert_int_eq(kvs_stamp_cmp(&seen.stamp, &del), 0);
	ck_assert_uint_eq(seen.value_len, 0);

	/* Deleting again: nothing live, but a newer tombstone is written. */
	ck_assert_int_eq(kvs_store_delete(st, "d", 1, NULL, &del2),
	                 KVS_NOTFOUND);
	ck_assert_int_gt(kvs_stamp_cmp(&del2, &del), 0);
	/* A never-seen key gets a tombstone too, so replicas converge. */
	ck_assert_int_eq(kvs_store_delete(st, "never", 5, NULL, NULL),
	                 KVS_NOTFOUND);
	ck_assert_int_eq(kvs_store_stat(st, &ss), KVS_OK);
	ck_assert_uint_eq(ss.keys, 0);
	ck_assert_uint_eq(ss.tombstones, 2);
	/* Writing over a tombstone brings the key back. */
	ck_assert_int_eq(kvs_store_put(st, "d", 1, "again", 5, NULL, NULL),
	                 KVS_OK);
	expect_value("d", "again", 5);
	ck_assert_int_eq(kvs_store_stat(st, &ss), KVS_OK);
	ck_assert_uint_eq(ss.keys, 1);
	ck_assert_uint_eq(ss.tombstones, 1);
}
END_TEST

START_TEST(conditional_writes)
{
	kvs_write_options absent = {KVS_WRITE_IF_ABSENT, {0, 0}};
	kvs_write_options cas = {KVS_WRITE_IF_STAMP, {0, 0}};
	kvs_stamp s1, s2;

	ck_assert_int_eq(kvs_store_put(st, "c", 1, "1", 1, &absent, &s1), KVS_OK);
	ck_assert_int_eq(kvs_store_put(st, "c", 1, "2", 1, &absent, NULL),
	                 KVS_EEXISTS);
	expect_value("c", "1", 1);
	cas.expect = s1;
	ck_assert_int_eq(kvs_store_put(st, "c", 1, "3", 1, &cas, &s2), KVS_OK);
	expect_value("c", "3", 1);
	/* The old stamp no longer matches. */
	ck_assert_int_eq(kvs_store_put(st, "c", 1, "4", 1, &cas, NULL),
	                 KVS_ECONFLICT);
	expect_value("c", "3", 1);
	/* A conditional delete. */
	ck_assert_int_eq(kvs_store_delete(st, "c", 1, &cas, NULL), KVS_ECONFLICT);
	cas.expect = s2;
	ck_assert_int_eq(kvs_store_delete(st, "c", 1, &cas, NULL), KVS_OK);
	expect_absent("c");
	/* CAS on a missing key conflicts; create-only works after delete. */
	ck_assert_int_eq(kvs_store_put(st, "c", 1, "5", 1, &cas, NULL),
	                 KVS_ECONFLICT);
	ck_assert_int_eq(kvs_store_put(st, "c", 1, "6", 1, &absent, NULL), KVS_OK);
	expect_value("c", "6", 1);
}
END_TEST

START_TEST(apply_if_newer)
{
	kvs_stamp local, after;
	kvs_record rec = {"r", 1, "remote", 6, {0, 9}, 0};
	int applied = -1;

	ck_assert_int_eq(kvs_store_put(st, "r", 1, "local", 5, NULL, &local),
	                 KVS_OK);
	/* Older than what is stored: ignored. */
	rec.stamp.hlc = local.hlc - 1;
	ck_assert_int_eq(kvs_store_apply(st, &rec, &applied), KVS_OK);
	ck_assert_int_eq(applied, 0);
	expect_value("r", "local", 5);
	/* Same stamp: ignored too (idempotent re-delivery). */
	rec.stamp = local;
	ck_assert_int_eq(kvs_store_apply(st, &rec, &applied), KVS_OK);
	ck_assert_int_eq(applied, 0);
	/* Same clock reading, higher shard id: newer. */
	rec.stamp.shard = local.shard + 1;
	ck_assert_int_eq(kvs_store_apply(st, &rec, &applied), KVS_OK);
	ck_assert_int_eq(applied, 1);
	expect_value("r", "remote", 6);
	/* A version from a clock an hour ahead is refused, and counted... */
	rec.stamp.hlc = local.hlc + ((uint64_t)3600 * 1000 << 16);
	rec.value = "planted";
	applied = -1;
	ck_assert_int_eq(kvs_store_apply(st, &rec, &applied), KVS_ECLOCK);
	expect_value("r", "remote", 6);
	/* ...and so is the last version there is (it used to wrap the
	 * clock to 0, and then hide every later write). */
	rec.stamp.hlc = UINT64_MAX;
	ck_assert_int_eq(kvs_store_apply(st, &rec, &applied), KVS_ECLOCK);
	{
		kvs_store_stats sst;

		ck_assert_int_eq(kvs_store_stat(st, &sst), KVS_OK);
		ck_assert_uint_eq(sst.clock_refusals, 2);
	}
	/* A version from a clock 2 s ahead (within the 5 s default)... */
	rec.stamp.hlc = local.hlc + ((uint64_t)2000 << 16);
	rec.value = "future";
	ck_assert_int_eq(kvs_store_apply(st, &rec, &applied), KVS_OK);
	ck_assert_int_eq(applied, 1);
	/* ...is still overwritten by a later local write: the store's clock
	 * moved past it. */
	ck_assert_int_eq(kvs_store_put(st, "r", 1, "later", 5, NULL, &after),
	                 KVS_OK);
	ck_assert_uint_gt(after.hlc, rec.stamp.hlc);
	expect_value("r", "later", 5);
	/* A replicated tombstone. */
	rec.stamp.hlc = after.hlc + 1;
	rec.flags = KVS_RECORD_TOMBSTONE;
	ck_assert_int_eq(kvs_store_apply(st, &rec, &applied), KVS_OK);
	ck_assert_int_eq(applied, 1);
	expect_absent("r");
	/* Apply of a key never seen. */
	rec.key = "fresh";
	rec.key_len = 5;
	rec.flags = 0;
	rec.value = "";
	rec.value_len = 0;
	ck_assert_int_eq(kvs_store_apply(st, &rec, &applied), KVS_OK);
	ck_assert_int_eq(applied, 1);
	expect_value("fresh", "", 0);
}
END_TEST

struct seg_list {
	char keys[8][16];
	kvs_stamp stamps[8];
	unsigned flags[8];
	int n;
};

static int list_seg(void *ud, const void *key, size_t key_len,
                    const kvs_stamp *stamp, unsigned flags)
{
	struct seg_list *l = ud;

	if (l->n < 8 && key_len < 16) {
		memcpy(l->keys[l->n], key, key_len);
		l->keys[l->n][key_len] = '\0';
		l->stamps[l->n] = *stamp;
		l->flags[l->n] = flags;
		l->n++;
	}
	return 0;
}

static uint32_t seg_of(const char *key)
{
	return KVS__AAE_SEGMENT_OF(kvs_ring_hash(key, strlen(key)));
}

/* Close, and take away the mark of a clean close, as a crash would: the
 * next open rebuilds the anti-entropy index from the records. */
static void drop_index(void)
{
	char path[PATH_MAX + 16];

	kvs_store_close(st);
	st = NULL;
	snprintf(path, sizeof(path), "%s/aae.clean", dir);
	ck_assert_int_eq(unlink(path), 0);
	ck_assert_int_eq(kvs_store_open(&st, dir, NULL), KVS_OK);
}

/* Segment digests follow every write, list their records, and come back
 * the same after a restart, or after the index is rebuilt. */
START_TEST(segment_digests_follow_writes)
{
	kvs_stamp a1, a2, b1;
	struct seg_list l;
	uint32_t sa = seg_of("a"), sb = seg_of("b");
	uint64_t da, db;

	ck_assert_uint_eq(kvs__store_segment_digest(st, sa), 0);
	ck_assert_int_eq(kvs_store_put(st, "a", 1, "1", 1, NULL, &a1), KVS_OK);
	ck_assert_uint_eq(kvs__store_segment_digest(st, sa),
	                  kvs__record_hash("a", 1, &a1, 0));
	ck_assert_int_eq(kvs_store_put(st, "a", 1, "2", 1, NULL, &a2), KVS_OK);
	ck_assert_int_eq(kvs_store_put(st, "b", 1, "1", 1, NULL, &b1), KVS_OK);
	ck_assert_int_eq(kvs_store_delete(st, "b", 1, NULL, &b1), KVS_OK);
	da = kvs__store_segment_digest(st, sa);
	db = kvs__store_segment_digest(st, sb);
	if (sa != sb) {
		ck_assert_uint_eq(da, kvs__record_hash("a", 1, &a2, 0));
		ck_assert_uint_eq(db, kvs__record_hash("b", 1, &b1,
		                                       KVS_RECORD_TOMBSTONE));
	}
	memset(&l, 0, sizeof(l));
	ck_assert_int_eq(kvs__store_segment_scan(st, sb, list_seg, &l), KVS_OK);
	ck_assert_int_ge(l.n, 1);
	for (int i = 0; i < l.n; i++)
		if (strcmp(l.keys[i], "b") == 0) {
			ck_assert_int_eq(kvs_stamp_cmp(&l.stamps[i], &b1), 0);
			ck_assert_uint_eq(l.flags[i], KVS_RECORD_TOMBSTONE);
		}
	reopen(NULL);
	ck_assert_uint_eq(kvs__store_segment_digest(st, sa), da);
	ck_assert_uint_eq(kvs__store_segment_digest(st, sb), db);
	drop_index();
	ck_assert_uint_eq(kvs__store_segment_digest(st, sa), da);
	ck_assert_uint_eq(kvs__store_segment_digest(st, sb), db);
	memset(&l, 0, sizeof(l));
	ck_assert_int_eq(kvs__store_segment_scan(st, sa, list_seg, &l), KVS_OK);
	ck_assert_int_ge(l.n, 1);
}
END_TEST

/* Every record is in the index, under its own version, and nothing else;
 * every segment's digest is that of the records the index lists. */
struct index_check {
	kvs_store *s;
	uint64_t x;
	uint64_t n;
	uint64_t tombs;
};

static int same_record(void *ud, const kvs_record *rec)
{
	const kvs_record *want = ud;

	ck_assert_int_eq(kvs_stamp_cmp(&rec->stamp, &want->stamp), 0);
	ck_assert_uint_eq(rec->flags, want->flags);
	return 0;
}

static int check_entry(void *ud, const void *key, size_t key_len,
                       const kvs_stamp *stamp, unsigned flags)
{
	struct index_check *c = ud;
	kvs_record want = {0};

	want.stamp = *stamp;
	want.flags = flags;
	ck_assert_int_eq(kvs_store_read(c->s, key, key_len,
	                                KVS_READ_TOMBSTONES, same_record,
	                                &want),
	                 KVS_OK);
	c->x ^= kvs__record_hash(key, key_len, stamp, flags);
	c->n++;
	c->tombs += (flags & KVS_RECORD_TOMBSTONE) != 0;
	return 0;
}

/* Segments at the edges of groups of 256. */
static const uint32_t edge_segments[] = {0,   255,   256,   511,
                                         512, 65279, 65280, 65535};

/* Folds of ranges of segments (whole groups of 256 and parts of them)
 * equal the XOR of the segments' digests. */
static void expect_folds_match_segments(void)
{
	static const uint32_t ranges[][2] = {
		{0, KVS__AAE_SEGMENTS}, {0, 65535}, {1, 65535}, {0, 1},
		{1, 255},               {0, 255},   {256, 255}, {256, 256},
		{256, 257},             {255, 2},   {100, 1000}, {65280, 255},
		{65280, 256},           {65279, 9999}, {65535, 1}, {0, 0},
	};

	for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
		uint32_t first = ranges[i][0], count = ranges[i][1];
		uint64_t x = 0;

		for (uint32_t g = first; g < first + count && g < KVS__AAE_SEGMENTS;
		     g++)
			x ^= kvs__store_segment_digest(st, g);
		ck_assert_msg(kvs__store_segments_fold(st, first, count) == x,
		              "fold of %u + %u", first, count);
	}
}

static void expect_index_matches_records(void)
{
	struct index_check c = {st, 0, 0, 0};
	kvs_store_stats ss;

	for (uint32_t seg = 0; seg < KVS__AAE_SEGMENTS; seg++) {
		uint64_t tombs = c.tombs;

		c.x = 0;
		ck_assert_int_eq(kvs__store_segment_scan(st, seg, check_entry,
		                                         &c),
		                 KVS_OK);
		ck_assert_uint_eq(c.x, kvs__store_segment_digest(st, seg));
		ck_assert_uint_eq(c.tombs - tombs,
		                  kvs__store_segment_tombstones(st, seg));
	}
	expect_folds_match_segments();
	ck_assert_int_eq(kvs_store_stat(st, &ss), KVS_OK);
	ck_assert_uint_eq(c.n, ss.keys + ss.tombstones);
	ck_assert_uint_eq(c.tombs, ss.tombstones);
	ck_assert_uint_eq(c.tombs, kvs__store_tombstones(st));
}

static void copy_file(const char *from, const char *to)
{
	char buf[65536];
	ssize_t n;
	int in = open(from, O_RDONLY), out;

	ck_assert_int_ge(in, 0);
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(out, 0);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		ck_assert_int_eq(write(out, buf, (size_t)n), n);
	ck_assert_int_eq(n, 0);
	close(in);
	close(out);
}

/* Overwrite the start of file path with 8 * n bytes of garbage. */
static void scribble(const char *path, int n)
{
	int fd = open(path, O_WRONLY);

	ck_assert_int_ge(fd, 0);
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(write(fd, "garbage!", 8), 8);
	close(fd);
}

/* The index is derived data: an index older than the records (files put
 * back from before later writes), a torn one, or a missing one is rebuilt
 * at open, and a clean one is used as it is. */
START_TEST(index_rebuilt_unless_clean)
{
	char a[PATH_MAX + 32], b[PATH_MAX + 32], c[PATH_MAX + 32],
	        d[PATH_MAX + 32];
	char key[32];

	for (int i = 0; i < 3000; i++) {
		snprintf(key, sizeof(key), "key-%d", i);
		ck_assert_int_eq(kvs_store_put(st, key, strlen(key), "v", 1,
		                               NULL, NULL),
		                 KVS_OK);
	}
	/* Records in the segments at the edges of the digests' groups, so
	 * that a fold reading one segment too many or too few shows. */
	for (size_t e = 0; e < sizeof(edge_segments) / sizeof(edge_segments[0]);
	     e++) {
		int i = 0;

		do
			snprintf(key, sizeof(key), "edge-%d", i++);
		while (KVS__AAE_SEGMENT_OF(kvs_ring_hash(key, strlen(key))) !=
		       edge_segments[e]);
		ck_assert_int_eq(kvs_store_put(st, key, strlen(key), "v", 1,
		                               NULL, NULL),
		                 KVS_OK);
	}
	ck_assert_int_eq(kvs_store_delete(st, "key-7", 5, NULL, NULL), KVS_OK);
	kvs_store_close(st);
	st = NULL;
	snprintf(a, sizeof(a), "%s/aae.mdb", dir);
	snprintf(b, sizeof(b), "%s/aae.clean", dir);
	snprintf(c, sizeof(c), "%s/aae.mdb.old", dir);
	snprintf(d, sizeof(d), "%s/aae.clean.old", dir);
	copy_file(a, c);
	copy_file(b, d);

	/* Clean: used, and the mark is gone once open. */
	ck_assert_int_eq(kvs_store_open(&st, dir, NULL), KVS_OK);
	ck_assert_int_ne(access(b, F_OK), 0);
	expect_index_matches_records();
	for (int i = 0; i < 3000; i += 7) {
		snprintf(key, sizeof(key), "key-%d", i);
		ck_assert_int_eq(kvs_store_put(st, key, strlen(key), "w", 1,
		                               NULL, NULL),
		                 KVS_OK);
	}
	ck_assert_int_eq(kvs_store_delete(st, "key-8", 5, NULL, NULL), KVS_OK);
	expect_index_matches_records();

	/* Older than the records (as many of them: only versions differ). */
	kvs_store_close(st);
	st = NULL;
	copy_file(c, a);
	copy_file(d, b);
	ck_assert_int_eq(kvs_store_open(&st, dir, NULL), KVS_OK);
	expect_index_matches_records();

	/* Marked clean, yet unreadable. */
	kvs_store_close(st);
	st = NULL;
	ck_assert_int_eq(access(b, F_OK), 0);
	scribble(a, 2048);
	ck_assert_int_eq(kvs_store_open(&st, dir, NULL), KVS_OK);
	expect_index_matches_records();

	/* Torn. */
	kvs_store_close(st);
	st = NULL;
	ck_assert_int_eq(unlink(b), 0);
	scribble(a, 64);
	ck_assert_int_eq(kvs_store_open(&st, dir, NULL), KVS_OK);
	expect_index_matches_records();

	/* Missing. */
	kvs_store_close(st);
	st = NULL;
	ck_assert_int_eq(unlink(a), 0);
	ck_assert_int_eq(kvs_store_open(&st, dir, NULL), KVS_OK);
	expect_index_matches_records();
	expect_value("key-7", "w", 1);
	expect_absent("key-8");
}
END_TEST

struct index_writer {
	kvs_store *s;
	int id;
};

static void *index_writer_main(void *arg)
{
	struct index_writer *w = arg;
	char key[32];

	for (int i = 0; i < 500; i++) {
		int n = snprintf(key, sizeof(key), "w%d-%d", w->id, i % 300);

		if (i % 7 == 6) {
			int rc = kvs_store_delete(w->s, key, (size_t)n, NULL,
			                          NULL);

			ck_assert(rc == KVS_OK || rc == KVS_NOTFOUND);
		} else
			ck_assert_int_eq(kvs_store_put(w->s, key, (size_t)n,
			                               "v", 1, NULL, NULL),
			                 KVS_OK);
	}
	return NULL;
}

/* With the limit at one byte the writer applies the index itself after
 * every batch, racing the indexer: the index still ends up exact. */
/* A key of segment seg (written to key), stored. */
static void key_in_segment(char *key, size_t size, uint32_t seg)
{
	int i = 0;

	do
		snprintf(key, size, "seg-%d", i++);
	while (KVS__AAE_SEGMENT_OF(kvs_ring_hash(key, strlen(key))) != seg);
	ck_assert_int_eq(kvs_store_put(st, key, strlen(key), "v", 1, NULL,
	                               NULL),
	                 KVS_OK);
}

/* The purge sweep finds the segments holding tombstones, and says how
 * far it looked. */
START_TEST(tombstone_segments_found)
{
	const uint32_t none = KVS__AAE_SEGMENTS;
	char key[32];
	unsigned looked = 0;

	ck_assert_uint_eq(kvs__store_next_tombstones(st, 0, 65536, &looked),
	                  none);
	ck_assert_uint_eq(looked, 65536);
	key_in_segment(key, sizeof(key), 256);
	ck_assert_int_eq(kvs_store_delete(st, key, strlen(key), NULL, NULL),
	                 KVS_OK);
	key_in_segment(key, sizeof(key), 65535);
	ck_assert_int_eq(kvs_store_delete(st, key, strlen(key), NULL, NULL),
	                 KVS_OK);
	ck_assert_uint_eq(kvs__store_tombstones(st), 2);
	ck_assert_uint_eq(kvs__store_next_tombstones(st, 0, 65536, &looked),
	                  256);
	ck_assert_uint_eq(looked, 257);
	ck_assert_uint_eq(kvs__store_next_tombstones(st, 257, 65536, &looked),
	                  65535);
	ck_assert_uint_eq(looked, 65279);
	ck_assert_uint_eq(kvs__store_next_tombstones(st, 0, 256, &looked),
	                  none);
	ck_assert_uint_eq(looked, 256);
	/* Past the last segment, the sweep wraps to the first. */
	ck_assert_uint_eq(kvs__store_next_tombstones(st, 65535, 1, &looked),
	                  65535);
	ck_assert_uint_eq(looked, 1);
	key_in_segment(key, sizeof(key), 3);
	ck_assert_int_eq(kvs_store_delete(st, key, strlen(key), NULL, NULL),
	                 KVS_OK);
	ck_assert_uint_eq(kvs__store_next_tombstones(st, 65535 + 1, 10,
	                                             &looked),
	                  3);
	ck_assert_uint_eq(looked, 4);
}
END_TEST

START_TEST(index_applied_by_the_writer_past_its_limit)
{
	pthread_t th[8];
	struct index_writer w[8];

	kvs__store_set_index_log_max(st, 1);
	for (int i = 0; i < 8; i++) {
		w[i].s = st;
		w[i].id = i;
		ck_assert_int_eq(pthread_create(&th[i], NULL, index_writer_main,
		                                &w[i]),
		                 0);
	}
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(pthread_join(th[i], NULL), 0);
	expect_index_matches_records();
	reopen(NULL);
	expect_index_matches_records();
}
END_TEST

START_TEST(reopen_keeps_data_and_clock)
{
	kvs_stamp before, after;
	kvs_store_stats ss;
	kvs_record rec = {"z", 1, "v", 1, {0, 4}, 0};

	ck_assert_int_eq(kvs_store_put(st, "a", 1, "alpha", 5, NULL, NULL),
	                 KVS_OK);
	ck_assert_int_eq(kvs_store_put(st, "b", 1, "beta", 4, NULL, NULL), KVS_OK);
	ck_assert_int_eq(kvs_store_delete(st, "b", 1, NULL, NULL), KVS_OK);
	/* Leave a stamp in the future (within the bound on clock skew): the
	 * clock must not go back below it after a restart. */
	rec.stamp.hlc = kvs__store_clock_now(st) + ((uint64_t)4000 << 16);
	ck_assert_int_eq(kvs_store_apply(st, &rec, NULL), KVS_OK);
	ck_assert_int_eq(kvs_store_put(st, "a", 1, "alpha", 5, NULL, &before),
	                 KVS_OK);
	reopen(NULL);
	expect_value("a", "alpha", 5);
	expect_absent("b");
	expect_value("z", "v", 1);
	ck_assert_int_eq(kvs_store_stat(st, &ss), KVS_OK);
	ck_assert_uint_eq(ss.keys, 2);
	ck_assert_uint_eq(ss.tombstones, 1);
	ck_assert_int_eq(kvs_store_put(st, "a", 1, "x", 1, NULL, &after), KVS_OK);
	ck_assert_int_gt(kvs_stamp_cmp(&after, &before), 0);
}
END_TEST

START_TEST(second_open_is_refused)
{
	kvs_store *other = (kvs_store *)1;

	ck_assert_int_eq(kvs_store_open(&other, dir, NULL), KVS_ELOCKED);
	ck_assert_ptr_null(other);
}
END_TEST

START_TEST(bad_open_arguments)
{
	kvs_store *s = (kvs_store *)1;
	kvs_store_options o;
	char path[4200];

	ck_assert_int_eq(kvs_store_open(&s, "", NULL), KVS_EINVAL);
	ck_assert_ptr_null(s);
	ck_assert_int_eq(kvs_store_open(NULL, dir, NULL), KVS_EINVAL);
	snprintf(path, sizeof(path), "%s/missing/deeper", dir);
	ck_assert_int_eq(kvs_store_open(&s, path, NULL), KVS_EINVAL);
	kvs_store_options_init(&o);
	o.sync = (kvs_sync_mode)7;
	snprintf(path, sizeof(path), "%s/x", dir);
	ck_assert_int_eq(kvs_store_open(&s, path, &o), KVS_EINVAL);
	kvs_store_close(NULL); /* accepts NULL */
}
END_TEST

START_TEST(unknown_format_is_refused)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	unsigned char v99[8] = {99};
	MDB_val k = {6, "format"}, v = {8, v99};
	kvs_store *s = (kvs_store *)1;

	kvs_store_close(st);
	st = NULL;
	/* A future version of the store marked its format 99. */
	ck_assert_int_eq(mdb_env_create(&env), 0);
	mdb_env_set_maxdbs(env, 4);
	ck_assert_int_eq(mdb_env_open(env, dir, 0, 0600), 0);
	ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
	ck_assert_int_eq(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
	ck_assert_int_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
	ck_assert_int_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
	ck_assert_int_eq(kvs_store_open(&s, dir, NULL), KVS_EVERSION);
	ck_assert_ptr_null(s);
}
END_TEST

/* Collect scanned keys into a string "k1,k2,...". */
struct collect {
	char buf[4096];
	int stop_after;
	int n;
};

static int collect_key(void *ud, const kvs_record *rec)
{
	struct collect *c = ud;
	size_t len = strlen(c->buf);

	snprintf(c->buf + len, sizeof(c->buf) - len, "%s%.*s%s",
	         len ? "," : "", (int)rec->key_len, (const char *)rec->key,
	         (rec->flags & KVS_RECORD_TOMBSTONE) ? "~" : "");
	c->n++;
	return c->stop_after > 0 && c->n >= c->stop_after;
}

static const char *scan(const kvs_scan_options *o, int stop_after)
{
	static struct collect c;

	memset(&c, 0, sizeof(c));
	c.stop_after = stop_after;
	ck_assert_int_eq(kvs_store_scan(st, o, collect_key, &c), KVS_OK);
	return c.buf;
}

START_TEST(scans)
{
	static const char *keys[] = {"b", "a", "ab", "abc", "abd", "b1", "c", "ac"};
	kvs_scan_options o;

	ck_assert_str_eq(scan(NULL, 0), "");
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		ck_assert_int_eq(kvs_store_put(st, keys[i], strlen(keys[i]), "v",
		                               1, NULL, NULL),
		                 KVS_OK);
	ck_assert_int_eq(kvs_store_delete(st, "abd", 3, NULL, NULL), KVS_OK);

	ck_assert_str_eq(scan(NULL, 0), "a,ab,abc,ac,b,b1,c");
	memset(&o, 0, sizeof(o));
	o.prefix = "ab";
	o.prefix_len = 2;
	ck_assert_str_eq(scan(&o, 0), "ab,abc");
	o.flags = KVS_READ_TOMBSTONES;
	ck_assert_str_eq(scan(&o, 0), "ab,abc,abd~");
	/* Continuation: start after the last key seen. */
	memset(&o, 0, sizeof(o));
	o.limit = 3;
	ck_assert_str_eq(scan(&o, 0), "a,ab,abc");
	o.start = "abc";
	o.start_len = 3;
	ck_assert_str_eq(scan(&o, 0), "ac,b,b1");
	o.flags = KVS_SCAN_INCLUSIVE;
	ck_assert_str_eq(scan(&o, 0), "abc,ac,b");
	/* A start key that is not stored. */
	o.start = "aa";
	o.start_len = 2;
	o.flags = 0;
	o.limit = 0;
	ck_assert_str_eq(scan(&o, 0), "ab,abc,ac,b,b1,c");
	/* End is exclusive. */
	o.end = "b1";
	o.end_len = 2;
	ck_assert_str_eq(scan(&o, 0), "ab,abc,ac,b");
	/* Prefix plus a start before it, and after it. */
	memset(&o, 0, sizeof(o));
	o.prefix = "b";
	o.prefix_len = 1;
	o.start = "a";
	o.start_len = 1;
	ck_assert_str_eq(scan(&o, 0), "b,b1");
	o.start = "b";
	ck_assert_str_eq(scan(&o, 0), "b1");
	/* A prefix nothing has; the callback stopping early. */
	o.prefix = "zz";
	o.prefix_len = 2;
	ck_assert_str_eq(scan(&o, 0), "");
	ck_assert_str_eq(scan(NULL, 2), "a,ab");
}
END_TEST

struct async_result {
	atomic_int calls;
	atomic_int ok;
};

static void async_cb(void *ud, int rc, const kvs_stamp *stamp, int applied)
{
	struct async_result *r = ud;

	if (rc == KVS_OK && stamp->hlc != 0 && applied)
		atomic_fetch_add(&r->ok, 1);
	atomic_fetch_add(&r->calls, 1);
}

START_TEST(async_writes)
{
	struct async_result r;
	char keys[100][8];
	uint64_t deadline;

	atomic_init(&r.calls, 0);
	atomic_init(&r.ok, 0);
	for (int i = 0; i < 100; i++) {
		snprintf(keys[i], sizeof(keys[i]), "as%03d", i);
		ck_assert_int_eq(kvs_store_put_async(st, keys[i], 5, keys[i], 5,
		                                     NULL, async_cb, &r),
		                 KVS_OK);
	}
	/* Errors found before queueing come back at once, no callback. */
	ck_assert_int_eq(kvs_store_put_async(st, "", 0, "x", 1, NULL, async_cb,
	                                     &r),
	                 KVS_EKEYSIZE);
	ck_assert_int_eq(kvs_store_put_async(st, "k", 1, "x", 1, NULL, NULL,
	                                     NULL),
	                 KVS_EINVAL);
	deadline = tu_now_ms() + 10000;
	while (atomic_load(&r.calls) < 100 && tu_now_ms() < deadline)
		usleep(1000);
	ck_assert_int_eq(atomic_load(&r.calls), 100);
	ck_assert_int_eq(atomic_load(&r.ok), 100);
	expect_value("as042", "as042", 5);
	ck_assert_int_eq(kvs_store_delete_async(st, "as042", 5, NULL, async_cb,
	                                        &r),
	                 KVS_OK);
	/* close waits for the queued delete. */
	reopen(NULL);
	ck_assert_int_eq(atomic_load(&r.calls), 101);
	expect_absent("as042");
}
END_TEST

#define WRITERS 32
#define PER_WRITER 150

static void *writer_thread(void *arg)
{
	int id = (int)(intptr_t)arg;
	char key[32], val[64];

	for (int i = 0; i < PER_WRITER; i++) {
		int n = snprintf(key, sizeof(key), "w%02d-%04d", id, i);
		int m = snprintf(val, sizeof(val), "value of %s", key);

		if (kvs_store_put(st, key, (size_t)n, val, (size_t)m, NULL,
		                  NULL) != KVS_OK)
			return (void *)1;
	}
	return NULL;
}

START_TEST(group_commit_many_threads)
{
	pthread_t th[WRITERS];
	kvs_store_stats ss;
	void *ret;

	for (int i = 0; i < WRITERS; i++)
		pthread_create(&th[i], NULL, writer_thread, (void *)(intptr_t)i);
	for (int i = 0; i < WRITERS; i++) {
		pthread_join(th[i], &ret);
		ck_assert_ptr_null(ret);
	}
	ck_assert_int_eq(kvs_store_stat(st, &ss), KVS_OK);
	ck_assert_uint_eq(ss.keys, WRITERS * PER_WRITER);
	ck_assert_uint_eq(ss.writes, WRITERS * PER_WRITER);
	/* Concurrent writers shared transactions: far fewer commits than
	 * writes (each blocked writer waits for one commit, so with 32 of
	 * them a commit carries several). */
	ck_assert_uint_lt(ss.commits, ss.writes / 2);
	reopen(NULL);
	for (int id = 0; id < WRITERS; id++)
		for (int i = 0; i < PER_WRITER; i += 37) {
			char key[32], val[64];

			snprintf(key, sizeof(key), "w%02d-%04d", id, i);
			snprintf(val, sizeof(val), "value of %s", key);
			expect_value(key, val, strlen(val));
		}
}
END_TEST

static atomic_int stop_readers;

static void *reader_thread(void *arg)
{
	long reads = 0;

	(void)arg;
	while (!atomic_load(&stop_readers)) {
		void *v;
		size_t n;

		if (kvs_store_get(st, "probe", 5, &v, &n, NULL) == KVS_OK) {
			if (n != 5 || memcmp(v, "probe", 5) != 0)
				return (void *)1;
			kvs_free(v);
		}
		reads++;
	}
	return reads > 0 ? NULL : (void *)2;
}

START_TEST(map_grows_under_readers)
{
	kvs_store_options o;
	kvs_store_stats ss;
	pthread_t readers[3];
	char *val = malloc(8192);
	void *ret;

	kvs_store_options_init(&o);
	o.map_size = 256 * 1024; /* tiny, so that it fills quickly */
	reopen(&o);
	ck_assert_int_eq(kvs_store_put(st, "probe", 5, "probe", 5, NULL, NULL),
	                 KVS_OK);
	atomic_store(&stop_readers, 0);
	for (int i = 0; i < 3; i++)
		pthread_create(&readers[i], NULL, reader_thread, NULL);
	memset(val, 'v', 8192);
	for (int i = 0; i < 1000; i++) { /* ~8 MiB */
		char key[16];
		int n = snprintf(key, sizeof(key), "g%04d", i);

		val[0] = (char)i;
		ck_assert_int_eq(kvs_store_put(st, key, (size_t)n, val, 8192, NULL,
		                               NULL),
		                 KVS_OK);
	}
	atomic_store(&stop_readers, 1);
	for (int i = 0; i < 3; i++) {
		pthread_join(readers[i], &ret);
		ck_assert_ptr_null(ret);
	}
	ck_assert_int_eq(kvs_store_stat(st, &ss), KVS_OK);
	ck_assert_uint_gt(ss.map_grows, 0);
	ck_assert_uint_gt(ss.map_bytes, 8u << 20);
	reopen(NULL);
	val[0] = (char)999;
	expect_value("g0999", val, 8192);
	free(val);
}
END_TEST

START_TEST(map_ceiling_gives_full)
{
	kvs_store_options o;
	char *val = malloc(65536);
	int rc = KVS_OK, i;

	kvs_store_options_init(&o);
	o.map_size = 256 * 1024;
	o.max_map_size = 1024 * 1024;
	reopen(&o);
	memset(val, 'f', 65536);
	for (i = 0; i < 100 && rc == KVS_OK; i++) {
		char key[16];
		int n = snprintf(key, sizeof(key), "f%03d", i);

		rc = kvs_store_put(st, key, (size_t)n, val, 65536, NULL, NULL);
	}
	ck_assert_int_eq(rc, KVS_EFULL);
	ck_assert_int_gt(i, 3);
	{
		uint64_t map, fs;

		kvs__store_full_writes(st, &map, &fs);
		ck_assert_uint_eq(map, 1);
		ck_assert_uint_eq(fs, 0);
	}
	/* Reads still work, and small writes may still fit or fail cleanly. */
	expect_value("f000", val, 65536);
	free(val);
}
END_TEST

/*
 * A full filesystem without one: LMDB's writes (pwrite, writev) to the
 * data file of the store under test, and fstatvfs of it, are routed
 * through the functions below, which this program defines in place of
 * libc's. While disk.mode says so, the writes fail as on a full
 * filesystem: ENOSPC when nothing fits, or a short count when part of
 * it did (what LMDB calls EIO); disk.room says whether fstatvfs shows
 * room left. Otherwise they are the system calls themselves.
 */
enum { DISK_OK, DISK_ENOSPC, DISK_SHORT };
static struct {
	_Atomic int mode;
	_Atomic int room;
	dev_t dev;
	ino_t ino;
} disk;

static int is_data_file(int fd)
{
	struct stat s;

	return fstat(fd, &s) == 0 && s.st_dev == disk.dev &&
	       s.st_ino == disk.ino;
}

/* What a write of n bytes to fd does now: -1 with errno, a short
 * count, or 0 (go ahead). */
static ssize_t disk_write(int fd, size_t n)
{
	int mode = atomic_load(&disk.mode);

	if (mode == DISK_OK || !is_data_file(fd))
		return 0;
	if (mode == DISK_ENOSPC || n < 2) {
		errno = ENOSPC;
		return -1;
	}
	return (ssize_t)(n / 2);
}

/* By the name LMDB calls (with 64-bit offsets, this file's headers would
 * name it pwrite64). */
ssize_t disk_pwrite(int fd, const void *buf, size_t n, off_t off)
        __asm__("pwrite");
ssize_t disk_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	ssize_t r = disk_write(fd, n);

	if (r != 0)
		return r;
	return syscall(SYS_pwrite64, fd, buf, n, off);
}

ssize_t writev(int fd, const struct iovec *iov, int n)
{
	size_t total = 0;
	ssize_t r;

	for (int i = 0; i < n; i++)
		total += iov[i].iov_len;
	r = disk_write(fd, total);
	if (r != 0)
		return r;
	return syscall(SYS_writev, fd, iov, n);
}

int fstatvfs(int fd, struct statvfs *sv)
{
	int (*real)(int, struct statvfs *) = NULL;
	void *sym = dlsym(RTLD_NEXT, "fstatvfs");
	int rc;

	memcpy(&real, &sym, sizeof(real));
	rc = real != NULL ? real(fd, sv) : -1;
	if (rc == 0 && !atomic_load(&disk.room) && is_data_file(fd))
		sv->f_bavail = sv->f_bfree = 0;
	return rc;
}

/* A filesystem that fills up answers KVS_EFULL, whether the write found
 * no room at all (ENOSPC) or stored part of itself (EIO from LMDB, with
 * no room left); an EIO with room left stays an I/O error. The store
 * counts them, keeps what it held, and writes again once there is
 * room. */
START_TEST(full_filesystem_gives_full)
{
	char path[4200];
	struct stat s;
	uint64_t map, fs;

	ck_assert_int_eq(kvs_store_put(st, "before", 6, "v", 1, NULL, NULL),
	                 KVS_OK);
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	ck_assert_int_eq(stat(path, &s), 0);
	disk.dev = s.st_dev;
	disk.ino = s.st_ino;
	atomic_store(&disk.room, 1);

	atomic_store(&disk.mode, DISK_ENOSPC);
	ck_assert_int_eq(kvs_store_put(st, "x", 1, "v", 1, NULL, NULL),
	                 KVS_EFULL);
	kvs__store_full_writes(st, &map, &fs);
	ck_assert_uint_eq(map, 0);
	ck_assert_uint_eq(fs, 1);

	atomic_store(&disk.mode, DISK_SHORT);
	atomic_store(&disk.room, 0);
	ck_assert_int_eq(kvs_store_put(st, "x", 1, "v", 1, NULL, NULL),
	                 KVS_EFULL);
	kvs__store_full_writes(st, &map, &fs);
	ck_assert_uint_eq(fs, 2);

	atomic_store(&disk.room, 1);
	ck_assert_int_eq(kvs_store_put(st, "x", 1, "v", 1, NULL, NULL),
	                 KVS_EIO);
	kvs__store_full_writes(st, &map, &fs);
	ck_assert_uint_eq(fs, 2);

	atomic_store(&disk.mode, DISK_OK);
	expect_value("before", "v", 1);
	expect_absent("x");
	ck_assert_int_eq(kvs_store_put(st, "after", 5, "w", 1, NULL, NULL),
	                 KVS_OK);
	reopen(NULL);
	expect_value("before", "v", 1);
	expect_value("after", "w", 1);
	expect_absent("x");
}
END_TEST

START_TEST(backup_is_a_consistent_copy)
{
	char copy[4200];
	kvs_store *b;
	void *v;
	size_t n;

	ck_assert_int_eq(kvs_store_put(st, "bk", 2, "data", 4, NULL, NULL),
	                 KVS_OK);
	snprintf(copy, sizeof(copy), "%s/copy", dir);
	ck_assert_int_eq(mkdir(copy, 0700), 0);
	ck_assert_int_eq(kvs_store_backup(st, copy), KVS_OK);
	ck_assert_int_eq(kvs_store_open(&b, copy, NULL), KVS_OK);
	ck_assert_int_eq(kvs_store_get(b, "bk", 2, &v, &n, NULL), KVS_OK);
	ck_assert_mem_eq(v, "data", 4);
	kvs_free(v);
	kvs_store_close(b);
}
END_TEST


/*
 * Durability of acknowledged writes across a crash: a child process writes
 * from 8 threads and reports every key whose put returned; the parent kills
 * it with SIGKILL mid-stream, reopens the store and checks every reported
 * key. (A process crash keeps the kernel's page cache, so this checks the
 * acknowledgement order and LMDB's crash safety, not the disk's.)
 */
#define CRASH_THREADS 8

static int crash_pipe;

static void *crash_writer(void *arg)
{
	int id = (int)(intptr_t)arg;

	for (int i = 0;; i++) {
		char key[32];
		int n = snprintf(key, sizeof(key), "c%d-%07d\n", id, i);

		if (kvs_store_put(st, key, (size_t)n - 1, key, (size_t)n, NULL,
		                  NULL) != KVS_OK)
			_exit(3);
		if (write(crash_pipe, key, (size_t)n) != n)
			_exit(4);
	}
	return NULL;
}

START_TEST(acknowledged_writes_survive_sigkill)
{
	int fds[2];
	pid_t pid;
	FILE *acks;
	char line[64];
	long acked = 0, max_keys = 1000000;
	char **keys;
	int status;

	kvs_store_close(st);
	st = NULL;
	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		pthread_t th;

		close(fds[0]);
		crash_pipe = fds[1];
		if (kvs_store_open(&st, dir, NULL) != KVS_OK)
			_exit(2);
		for (int i = 0; i < CRASH_THREADS; i++)
			pthread_create(&th, NULL, crash_writer,
			               (void *)(intptr_t)i);
		pause();
		_exit(0);
	}
	close(fds[1]);
	acks = fdopen(fds[0], "r");
	keys = calloc(max_keys, sizeof(*keys));
	/* Let it get well into its stride, then kill it mid-write. Keys
	 * acknowledged before the kill may still be in the pipe: read on to
	 * the end. */
	while (fgets(line, sizeof(line), acks) != NULL) {
		if (acked == 3000)
			kill(pid, SIGKILL);
		if (acked < max_keys)
			keys[acked] = strdup(line);
		acked++;
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFSIGNALED(status));
	ck_assert_int_eq(WTERMSIG(status), SIGKILL);
	ck_assert_int_eq(kvs_store_open(&st, dir, NULL), KVS_OK);
	/* The index lost its last windows with the process: rebuilt. */
	expect_index_matches_records();
	for (long i = 0; i < acked && i < max_keys; i++) {
		size_t n = strlen(keys[i]);

		ck_assert_uint_gt(n, 1);
		ck_assert_int_eq(keys[i][n - 1], '\n');
		{
			char key[64];

			memcpy(key, keys[i], n - 1);
			key[n - 1] = '\0';
			expect_value(key, keys[i], n);
		}
		free(keys[i]);
	}
	free(keys);
	ck_assert_int_ge(acked, 3000);
	fclose(acks);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("store");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, put_get_overwrite);
	tcase_add_test(tc, empty_value_is_a_value);
	tcase_add_test(tc, binary_keys_and_values);
	tcase_add_test(tc, key_size_limits);
	tcase_add_test(tc, value_size_limit);
	tcase_add_test(tc, delete_writes_tombstone);
	tcase_add_test(tc, conditional_writes);
	tcase_add_test(tc, apply_if_newer);
	tcase_add_test(tc, reopen_keeps_data_and_clock);
	tcase_add_test(tc, second_open_is_refused);
	tcase_add_test(tc, bad_open_arguments);
	tcase_add_test(tc, unknown_format_is_refused);
	tcase_add_test(tc, scans);
	tcase_add_test(tc, async_writes);
	tcase_add_test(tc, group_commit_many_threads);
	tcase_add_test(tc, map_grows_under_readers);
	tcase_add_test(tc, map_ceiling_gives_full);
	tcase_add_test(tc, backup_is_a_consistent_copy);
	tcase_add_test(tc, acknowledged_writes_survive_sigkill);
	tcase_add_test(tc, segment_digests_follow_writes);
	tcase_add_test(tc, index_rebuilt_unless_clean);
	tcase_add_test(tc, index_applied_by_the_writer_past_its_limit);
	tcase_add_test(tc, tombstone_segments_found);
	tcase_add_test(tc, full_filesystem_gives_full);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
