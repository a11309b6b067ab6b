/*
 * store.c - a node's durable local storage over LMDB.
 *
 * Layout. One LMDB environment per store directory for the records, and
 * one more, never synced, for the anti-entropy index that is derived from
 * them (see "The anti-entropy index" below). The named database "kv"
 * maps each user key to a record; "hints" holds hinted handoff. The store's own bookkeeping (format
 * version, the newest clock reading, key counts) is
 * kept in LMDB's main database beside the catalog of named databases: that
 * page is rewritten by every commit anyway, so updating the bookkeeping in
 * every batch costs no extra page write. A record is a 16-byte header followed by the value bytes:
 *
 *     offset 0   8 bytes  HLC reading of the version stamp, little endian
 *     offset 8   4 bytes  writer shard id, little endian
 *     offset 12  1 byte   flags (bit 0: tombstone)
 *     offset 13  3 bytes  reserved, zero
 *
 * Group commit. Writers never touch LMDB themselves: they queue an
 * operation and wait (or, for the _async calls, get a callback). One writer
 * thread takes everything queued (up to max_batch operations), applies it in
 * one write transaction and commits. The environment is opened with
 * MDB_NOMETASYNC: a commit syncs its data pages but not the meta page that
 * makes them visible, which LMDB documents as "a system crash may undo the
 * last committed transaction". The next commit's data sync flushes that
 * meta page too. So in KVS_SYNC_FULL mode the writers of batch k are
 * acknowledged only once batch k+1 has committed, or, when nothing else is
 * queued, after an explicit mdb_env_sync(). Under load that is one sync per
 * batch instead of LMDB's usual two, with no loss of durability.
 *
 * Map growth. LMDB fails a write with MDB_MAP_FULL when the memory map is
 * full. The writer then aborts the batch, grows the map and retries it.
 * mdb_env_set_mapsize() requires that no transaction be active in the
 * process and LMDB does not check: readers hold a writer-preferring rwlock
 * (shared) from the start to the end of each read transaction, and the
 * writer takes it exclusively around the resize.
 *
 * Readers. The environment uses MDB_NOTLS, so read transactions are not tied
 * to threads: finished ones are reset and kept in a small pool, and the next
 * read on any thread renews one instead of creating a transaction. Reads
 * never wait for writes (LMDB's MVCC).
 */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "hlc.h"
#include "kvshard/ring.h"
#include "kvshard/store.h"
#include "store_internal.h"
#include "util.h"

#define FORMAT_VERSION 1u
#define HDR_SIZE 16u
#define HDR_FLAG_TOMBSTONE 0x1u
#define MAX_DBS 4
#define LOCK_FILE "kvshard.lock"
/* Most value bytes committed in one transaction (LMDB also caps the dirty
 * pages of a transaction: MDB_TXN_FULL). */
#define MAX_BATCH_BYTES ((size_t)64 << 20)
/* Room the filesystem must have beyond a failed batch for an EIO to be
 * taken for an I/O error rather than a full filesystem (write_error). */
#define FS_FULL_MARGIN ((size_t)1 << 20)
/* How often the idle writer clears reader slots of dead processes. */
#define READER_CHECK_INTERVAL_S 10
#define META_FORMAT "format"
#define META_HLC "hlc"
#define META_KEYS "keys"
#define META_TOMBSTONES "tombstones"

/* OP_HINT and OP_UNHINT write and delete in the hints database (key and
 * value as given), for the node's hinted handoff. */
enum op_kind {
	OP_PUT,
	OP_DELETE,
	OP_APPLY,
	OP_HINT,
	OP_UNHINT,
	OP_PURGE,
	OP_DROP
};

struct write_op {
	enum op_kind kind;
	const void *key;
	size_t key_len;
	const void *value;
	size_t value_len;
	kvs__cond cond;    /* OP_PUT, OP_DELETE: conditions */
	kvs_stamp stamp;   /* OP_APPLY: the record's; result: the written one */
	unsigned rflags;   /* OP_APPLY: the record's flags */
	int rc;
	int applied;
	kvs_write_cb cb;
	void *ud;
	struct write_op *next;
};

/* Changes to the anti-entropy index, in commit order: a sequence of
 * struct aae_change, each followed by its key, padded to 8 bytes. */
struct aae_log {
	unsigned char *buf;
	size_t len, cap;
	size_t n;
};

struct kvs_store {
	MDB_env *env;
	MDB_dbi kv;
	MDB_dbi meta;
	MDB_dbi hints;
	char *path;

	/* Anti-entropy: the digest of each segment (XOR of a hash of each
	 * record's key and version), written by the writer thread after
	 * each commit, read by anyone; and the index of versions by ring
	 * hash, in an environment of its own (see "The anti-entropy index"
	 * below). */
	_Atomic uint64_t *seg;
	_Atomic uint64_t *grp; /* XOR of each SEG_GROUP segments' digests */
	_Atomic uint32_t *seg_tombs; /* tombstones per segment */
	_Atomic uint64_t tombs;      /* their sum */
	_Atomic uint64_t purged;
	MDB_env *ienv;
	MDB_dbi aae;
	size_t imap_size;
	pthread_rwlock_t imap_lock; /* as map_lock, for the index's map */
	pthread_mutex_t iapply_mu; /* one index_drain at a time */
	pthread_mutex_t imu;
	pthread_cond_t icv; /* to the indexer: a log, closing */
	struct aae_log ilog;  /* committed changes not yet indexed */
	size_t ilog_max;      /* INDEX_LOG_MAX, or a test's */
	uint64_t ilogged;     /* batches handed to the indexer */
	uint64_t iapplied;    /* of those, in the index */
	int iclosing;
	int ibroken; /* an index write failed: rebuilt at the next open */
	int indexer_running;
	pthread_t indexer;
	int lock_fd;
	size_t max_key;
	kvs_store_options opts;
	kvs__hlc clock;

	/* Readers: shared around each read transaction; the writer takes it
	 * exclusively to resize the map. */
	pthread_rwlock_t map_lock;
	pthread_mutex_t pool_mu;
	MDB_txn **pool;
	unsigned pool_len;
	unsigned pool_cap;

	/* The write queue. */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct write_op *head;
	struct write_op **tail;
	int closing;
	pthread_t writer;

	/* Written by the writer thread only; read by kvs_store_stat. */
	size_t map_size;
	_Atomic uint64_t keys;
	_Atomic uint64_t tombstones;
	_Atomic uint64_t commits;
	_Atomic uint64_t writes;
	_Atomic uint64_t syncs;
	_Atomic uint64_t grows;
	_Atomic uint64_t clock_refusals;
	/* Writes refused for lack of room: the map at max_map_size, or the
	 * filesystem full. */
	_Atomic uint64_t full_map;
	_Atomic uint64_t full_fs;
};

/* ------------------------------------------------------------------ */
/* Encoding                                                             */

static void encode_header(unsigned char *p, const kvs_stamp *st,
                          unsigned flags)
{
	kvs__put_le64(p, st->hlc);
	kvs__put_le32(p + 8, st->shard);
	p[12] = (unsigned char)(flags & HDR_FLAG_TOMBSTONE);
	p[13] = p[14] = p[15] = 0;
}

/* Decode an LMDB value into rec (key left alone). */
static int decode_record(const MDB_val *v, kvs_record *rec)
{
	const unsigned char *p = v->mv_data;

	if (v->mv_size < HDR_SIZE)
		return KVS_ECORRUPT;
	rec->stamp.hlc = kvs__get_le64(p);
	rec->stamp.shard = kvs__get_le32(p + 8);
	rec->flags = (p[12] & HDR_FLAG_TOMBSTONE) ? KVS_RECORD_TOMBSTONE : 0;
	rec->value = p + HDR_SIZE;
	rec->value_len = v->mv_size - HDR_SIZE;
	return KVS_OK;
}

static int map_mdb_error(int rc)
{
	switch (rc) {
	case MDB_SUCCESS:
		return KVS_OK;
	case MDB_NOTFOUND:
		return KVS_NOTFOUND;
	case MDB_MAP_FULL:
	case ENOSPC:
	case EDQUOT:
		return KVS_EFULL;
	case MDB_READERS_FULL:
	case MDB_TLS_FULL:
		return KVS_EBUSY;
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_INVALID:
		return KVS_ECORRUPT;
	case MDB_VERSION_MISMATCH:
		return KVS_EVERSION;
	case MDB_BAD_VALSIZE:
		return KVS_EKEYSIZE;
	case ENOMEM:
		return KVS_ENOMEM;
	case EIO:
		return KVS_EIO;
	case EACCES:
	case EPERM:
	case EROFS:
	case ENOENT:
	case ENOTDIR:
		return KVS_ESYS;
	default:
		return rc > 0 ? KVS_ESYS : KVS_EIO;
	}
}

/* ------------------------------------------------------------------ */
/* Read transactions                                                    */

static int read_begin(kvs_store *s, MDB_txn **out)
{
	MDB_txn *txn = NULL;
	int rc;

	pthread_rwlock_rdlock(&s->map_lock);
	pthread_mutex_lock(&s->pool_mu);
	if (s->pool_len > 0)
		txn = s->pool[--s->pool_len];
	pthread_mutex_unlock(&s->pool_mu);
	if (txn != NULL) {
		rc = mdb_txn_renew(txn);
		if (rc != MDB_SUCCESS) {
			mdb_txn_abort(txn);
			txn = NULL;
		}
	}
	if (txn == NULL) {
		rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
		if (rc != MDB_SUCCESS) {
			pthread_rwlock_unlock(&s->map_lock);
			return map_mdb_error(rc);
		}
	}
	*out = txn;
	return KVS_OK;
}

static void read_end(kvs_store *s, MDB_txn *txn)
{
	mdb_txn_reset(txn);
	pthread_mutex_lock(&s->pool_mu);
	if (s->pool_len < s->pool_cap) {
		s->pool[s->pool_len++] = txn;
		txn = NULL;
	}
	pthread_mutex_unlock(&s->pool_mu);
	if (txn != NULL)
		mdb_txn_abort(txn);
	pthread_rwlock_unlock(&s->map_lock);
}

static int check_key(const kvs_store *s, const void *key, size_t key_len)
{
	if (key == NULL || key_len == 0 || key_len > s->max_key)
		return KVS_EKEYSIZE;
	return KVS_OK;
}

int kvs_store_read(kvs_store *s, const void *key, size_t key_len,
                   unsigned flags, kvs_record_cb cb, void *ud)
{
	MDB_txn *txn;
	MDB_val k = {key_len, (void *)key}, v;
	kvs_record rec;
	int rc;

	if (s == NULL || cb == NULL)
		return KVS_EINVAL;
	rc = check_key(s, key, key_len);
	if (rc != KVS_OK)
		return rc;
	rc = read_begin(s, &txn);
	if (rc != KVS_OK)
		return rc;
	rc = map_mdb_error(mdb_get(txn, s->kv, &k, &v));
	if (rc == KVS_OK)
		rc = decode_record(&v, &rec);
	if (rc == KVS_OK && (rec.flags & KVS_RECORD_TOMBSTONE) &&
	    !(flags & KVS_READ_TOMBSTONES))
		rc = KVS_NOTFOUND;
	if (rc == KVS_OK) {
		rec.key = key;
		rec.key_len = key_len;
		cb(ud, &rec);
	}
	read_end(s, txn);
	return rc;
}

struct get_copy {
	void *value;
	size_t value_len;
	kvs_stamp stamp;
	int rc;
};

static int copy_record(void *ud, const kvs_record *rec)
{
	struct get_copy *g = ud;

	g->stamp = rec->stamp;
	g->value_len = rec->value_len;
	g->value = NULL;
	g->rc = KVS_OK;
	if (rec->value_len > 0) {
		g->value = malloc(rec->value_len);
		if (g->value == NULL)
			g->rc = KVS_ENOMEM;
		else
			memcpy(g->value, rec->value, rec->value_len);
	}
	return 0;
}

int kvs_store_get(kvs_store *s, const void *key, size_t key_len,
                  void **value, size_t *value_len, kvs_stamp *stamp)
{
	struct get_copy g = {NULL, 0, {0, 0}, KVS_OK};
	int rc;

	if (value == NULL || value_len == NULL)
		return KVS_EINVAL;
	rc = kvs_store_read(s, key, key_len, 0, copy_record, &g);
	if (rc != KVS_OK)
		return rc;
	if (g.rc != KVS_OK)
		return g.rc;
	*value = g.value;
	*value_len = g.value_len;
	if (stamp != NULL)
		*stamp = g.stamp;
	return KVS_OK;
}

/* Is key inside the scan's bounds (prefix and end)? */
static int scan_in_bounds(const kvs_scan_options *o, const MDB_val *k)
{
	if (o->prefix_len > 0 &&
	    (k->mv_size < o->prefix_len ||
	     memcmp(k->mv_data, o->prefix, o->prefix_len) != 0))
		return 0;
	if (o->end != NULL) {
		size_t n = k->mv_size < o->end_len ? k->mv_size : o->end_len;
		int c = memcmp(k->mv_data, o->end, n);

		if (c > 0 || (c == 0 && k->mv_size >= o->end_len))
			return 0;
	}
	return 1;
}

/* Compare two byte strings as LMDB's default comparison does. */
static int bytes_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
	size_t n = alen < blen ? alen : blen;
	int c = n > 0 ? memcmp(a, b, n) : 0;

	if (c != 0)
		return c;
	return alen < blen ? -1 : alen > blen;
}

int kvs_store_scan(kvs_store *s, const kvs_scan_options *opts,
                   kvs_record_cb cb, void *ud)
{
	static const kvs_scan_options all;
	const kvs_scan_options *o = opts ? opts : &all;
	MDB_txn *txn;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	MDB_cursor_op op;
	kvs_record rec;
	size_t reported = 0;
	int rc, mrc;

	if (s == NULL || cb == NULL)
		return KVS_EINVAL;
	rc = read_begin(s, &txn);
	if (rc != KVS_OK)
		return rc;
	mrc = mdb_cursor_open(txn, s->kv, &cur);
	if (mrc != MDB_SUCCESS) {
		rc = map_mdb_error(mrc);
		goto out;
	}
	/* Position at the larger of the prefix and the start key. */
	op = MDB_FIRST;
	k.mv_size = 0;
	k.mv_data = NULL;
	if (o->prefix_len > 0) {
		k.mv_size = o->prefix_len;
		k.mv_data = (void *)o->prefix;
		op = MDB_SET_RANGE;
	}
	if (o->start != NULL && o->start_len > 0 &&
	    (op == MDB_FIRST || bytes_cmp(o->start, o->start_len, k.mv_data,
	                                  k.mv_size) > 0)) {
		k.mv_size = o->start_len;
		k.mv_data = (void *)o->start;
		op = MDB_SET_RANGE;
	}
	for (mrc = mdb_cursor_get(cur, &k, &v, op); mrc == MDB_SUCCESS;
	     mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (o->start != NULL && !(o->flags & KVS_SCAN_INCLUSIVE) &&
		    bytes_cmp(k.mv_data, k.mv_size, o->start, o->start_len) <=
		            0)
			continue;
		if (!scan_in_bounds(o, &k))
			break;
		rc = decode_record(&v, &rec);
		if (rc != KVS_OK)
			goto out;
		if ((rec.flags & KVS_RECORD_TOMBSTONE) &&
		    !(o->flags & KVS_READ_TOMBSTONES))
			continue;
		rec.key = k.mv_data;
		rec.key_len = k.mv_size;
		if (cb(ud, &rec) != 0)
			break;
		if (o->limit > 0 && ++reported >= o->limit)
			break;
	}
	if (mrc != MDB_SUCCESS && mrc != MDB_NOTFOUND)
		rc = map_mdb_error(mrc);
out:
	if (cur != NULL)
		mdb_cursor_close(cur);
	read_end(s, txn);
	return rc;
}

/* ------------------------------------------------------------------ */
/* The writer                                                           */

/* Counter changes of one batch, applied only when it commits. */
struct seg_delta {
	uint32_t seg;
	int32_t tombs; /* change of its tombstone count */
	uint64_t x;
};

struct aae_change {
	uint64_t hash; /* the key's ring hash */
	uint64_t hlc;
	uint32_t shard;
	uint16_t key_len;
	uint8_t remove; /* 1: the key leaves the index */
	uint8_t flags;  /* KVS_RECORD_TOMBSTONE */
};

#define CHANGE_SIZE(key_len) \
	((sizeof(struct aae_change) + (key_len) + 7u) & ~(size_t)7u)

struct batch_delta {
	int64_t keys;
	int64_t tombstones;
	struct seg_delta *segs; /* segment digests to change */
	size_t n_segs, cap_segs;
	struct aae_log log; /* index changes */
};

static int meta_put_u64(kvs_store *s, MDB_txn *txn, const char *name,
                        uint64_t value)
{
	unsigned char buf[8];
	MDB_val k = {strlen(name), (void *)name}, v = {sizeof(buf), buf};

	kvs__put_le64(buf, value);
	return mdb_put(txn, s->meta, &k, &v, 0);
}

static int meta_get_u64(kvs_store *s, MDB_txn *txn, const char *name,
                        uint64_t *value)
{
	MDB_val k = {strlen(name), (void *)name}, v;
	int rc = mdb_get(txn, s->meta, &k, &v);

	if (rc != MDB_SUCCESS)
		return rc;
	if (v.mv_size != 8)
		return MDB_CORRUPTED;
	*value = kvs__get_le64(v.mv_data);
	return MDB_SUCCESS;
}

/* ------------------------------------------------------------------ */
/* The anti-entropy index                                               */

/*
 * The index lists every record's version by the key's ring hash, so that
 * the records of one segment of the ring are read together. It lives in an
 * environment of its own, aae.mdb in the store's directory, which is never
 * synced and is written off the writer's path: the writer appends each
 * committed change to a log in memory, and the indexer thread applies the
 * log, sorted by hash, in one transaction per window (INDEX_WINDOW_MS, or
 * sooner once INDEX_LOG_FLUSH bytes are waiting). A durable write pays an
 * append to that log; the index pays one page copy per page a whole window
 * touches, and no sync. Reading a segment applies the waiting log first.
 *
 * The index is derived data. A clean close applies the log, syncs the
 * index and writes aae.clean (the records' entry count and clock, and the
 * segment digests); an open removes aae.clean (durably) before anything
 * else, and without a valid one it deletes aae.mdb unread and rebuilds it
 * from the records. A crash of the process or of the machine therefore
 * costs a scan of the records at the next start, never a wrong index, and
 * a clean start reads neither.
 */
#define INDEX_FILE "aae.mdb"
#define INDEX_CLEAN_FILE "aae.clean"
#define INDEX_CLEAN_MAGIC 0x31454541534b564bull /* "KVSAAE1" */
#define INDEX_WINDOW_MS 200
#define INDEX_LOG_FLUSH ((size_t)8 << 20)
/* Past this many bytes waiting, the writer waits for the indexer. */
#define INDEX_LOG_MAX ((size_t)64 << 20)
/* Changes per index transaction (LMDB caps a transaction's dirty pages). */
#define INDEX_TXN_CHANGES 20000u
#define INDEX_INITIAL_MAP ((size_t)64 << 20)

/* Bytes of an index key before the record's key; keys longer than the
 * index can hold are cut (the hash, of the whole key, keeps them apart)
 * and kept whole in the value. */
#define AAE_HASH 8u
#define AAE_VALUE 13u /* hlc, shard, flags */
/* Segments per group digest: folding a range of segments reads whole
 * groups (anti-entropy folds the whole space on every exchange). */
#define SEG_GROUP 256u

uint64_t kvs__record_hash(const void *key, size_t key_len,
                          const kvs_stamp *stamp, unsigned flags)
{
	uint64_t seed = stamp->hlc * 0x9E3779B97F4A7C15ull ^
	                ((uint64_t)stamp->shard << 1) ^
	                ((flags & KVS_RECORD_TOMBSTONE) ? 1u : 0u);

	return XXH3_64bits_withSeed(key, key_len, seed);
}

/* Fill buf (s->max_key bytes) with key's index key; returns its length. */
static size_t aae_key(const kvs_store *s, unsigned char *buf, uint64_t hash,
                      const void *key, size_t key_len, int *cut)
{
	size_t room = s->max_key - AAE_HASH;
	size_t n = key_len < room ? key_len : room;

	kvs__put_be64(buf, hash);
	memcpy(buf + AAE_HASH, key, n);
	*cut = n < key_len;
	return AAE_HASH + n;
}

/* Room for need more bytes in log; returns an errno code. */
static int log_reserve(struct aae_log *log, size_t need)
{
	size_t cap = log->cap ? 2 * log->cap : 4096;
	unsigned char *b;

	if (log->len + need <= log->cap)
		return 0;
	while (cap < log->len + need)
		cap *= 2;
	b = realloc(log->buf, cap);
	if (b == NULL)
		return ENOMEM;
	log->buf = b;
	log->cap = cap;
	return 0;
}

/* Append one change to log; returns an errno code. */
static int log_change(struct aae_log *log, uint64_t hash, const void *key,
                      size_t key_len, const kvs_stamp *stamp,
                      unsigned flags, int remove)
{
	size_t need = CHANGE_SIZE(key_len);
	struct aae_change c;

	if (key_len > UINT16_MAX)
		return MDB_BAD_VALSIZE;
	if (log_reserve(log, need) != 0)
		return ENOMEM;
	memset(&c, 0, sizeof(c));
	c.hash = hash;
	c.hlc = stamp->hlc;
	c.shard = stamp->shard;
	c.key_len = (uint16_t)key_len;
	c.remove = (uint8_t)(remove != 0);
	c.flags = (uint8_t)(flags & KVS_RECORD_TOMBSTONE);
	memcpy(log->buf + log->len, &c, sizeof(c));
	memcpy(log->buf + log->len + sizeof(c), key, key_len);
	log->len += need;
	log->n++;
	return MDB_SUCCESS;
}

static void log_clear(struct aae_log *log)
{
	log->len = 0;
	log->n = 0;
}

static int note_segment(struct batch_delta *d, uint32_t seg, uint64_t x,
                        int tombs)
{
	if (d->n_segs == d->cap_segs) {
		size_t cap = d->cap_segs ? 2 * d->cap_segs : 64;
		struct seg_delta *g = realloc(d->segs, cap * sizeof(*g));

		if (g == NULL)
			return ENOMEM; /* fails the batch */
		d->segs = g;
		d->cap_segs = cap;
	}
	d->segs[d->n_segs].seg = seg;
	d->segs[d->n_segs].x = x;
	d->segs[d->n_segs].tombs = tombs;
	d->n_segs++;
	return MDB_SUCCESS;
}

/* Note key's new version (old: the one it replaces, or NULL) for the
 * index, and the change of its segment's digest, in d. */
static int aae_write(struct batch_delta *d, const void *key, size_t key_len,
                     const kvs_record *old, const kvs_stamp *stamp,
                     unsigned flags)
{
	uint64_t hash = kvs_ring_hash(key, key_len);
	uint64_t x = kvs__record_hash(key, key_len, stamp, flags);
	int mrc = log_change(&d->log, hash, key, key_len, stamp, flags, 0);

	if (mrc != MDB_SUCCESS)
		return mrc;
	if (old != NULL)
		x ^= kvs__record_hash(key, key_len, &old->stamp, old->flags);
	return note_segment(
	        d, KVS__AAE_SEGMENT_OF(hash), x,
	        ((flags & KVS_RECORD_TOMBSTONE) ? 1 : 0) -
	                ((old != NULL && (old->flags & KVS_RECORD_TOMBSTONE)) ? 1
	                                                                     : 0));
}

/* Note that key's record (old) leaves the index and its segment. */
static int aae_remove(struct batch_delta *d, const void *key, size_t key_len,
                      const kvs_record *old)
{
	uint64_t hash = kvs_ring_hash(key, key_len);
	int mrc = log_change(&d->log, hash, key, key_len, &old->stamp,
	                     old->flags, 1);

	if (mrc != MDB_SUCCESS)
		return mrc;
	return note_segment(d, KVS__AAE_SEGMENT_OF(hash),
	                    kvs__record_hash(key, key_len, &old->stamp,
	                                     old->flags),
	                    (old->flags & KVS_RECORD_TOMBSTONE) ? -1 : 0);
}

uint32_t kvs__store_segment_tombstones(kvs_store *s, uint32_t seg)
{
	return atomic_load_explicit(&s->seg_tombs[seg % KVS__AAE_SEGMENTS],
	                            memory_order_relaxed);
}

uint32_t kvs__store_next_tombstones(kvs_store *s, uint32_t from,
                                    unsigned look, unsigned *looked)
{
	uint32_t seg = from % KVS__AAE_SEGMENTS;

	for (unsigned i = 0; i < look; i++) {
		if (atomic_load_explicit(&s->seg_tombs[seg],
		                         memory_order_relaxed) != 0) {
			*looked = i + 1;
			return seg;
		}
		seg = (seg + 1) % KVS__AAE_SEGMENTS;
	}
	*looked = look;
	return KVS__AAE_SEGMENTS;
}

uint64_t kvs__store_tombstones(kvs_store *s)
{
	return atomic_load_explicit(&s->tombs, memory_order_relaxed);
}

uint64_t kvs__store_segment_digest(kvs_store *s, uint32_t seg)
{
	return atomic_load_explicit(&s->seg[seg % KVS__AAE_SEGMENTS],
	                            memory_order_relaxed);
}

uint64_t kvs__store_segments_fold(kvs_store *s, uint32_t first,
                                  uint32_t count)
{
	uint64_t f = 0;
	uint32_t end;

	if (first >= KVS__AAE_SEGMENTS)
		return 0;
	end = count > KVS__AAE_SEGMENTS - first ? KVS__AAE_SEGMENTS
	                                        : first + count;
	while (first < end) {
		if (first % SEG_GROUP == 0 && end - first >= SEG_GROUP) {
			f ^= atomic_load_explicit(&s->grp[first / SEG_GROUP],
			                          memory_order_relaxed);
			first += SEG_GROUP;
		} else {
			f ^= atomic_load_explicit(&s->seg[first++],
			                          memory_order_relaxed);
		}
	}
	return f;
}

/* Walk dbi in key order from the first key >= from (from_len 0: from
 * the first), in txn, until visit returns non-zero. */
static int walk_txn(MDB_txn *txn, MDB_dbi dbi, const void *from,
                    size_t from_len,
                    int (*visit)(void *ud, const MDB_val *k,
                                 const MDB_val *v),
                    void *ud)
{
	MDB_cursor *cur;
	MDB_val k = {from_len, (void *)from}, v;
	int mrc;

	mrc = mdb_cursor_open(txn, dbi, &cur);
	if (mrc == MDB_SUCCESS) {
		mrc = mdb_cursor_get(cur, &k, &v,
		                     from_len > 0 ? MDB_SET_RANGE : MDB_FIRST);
		while (mrc == MDB_SUCCESS && visit(ud, &k, &v) == 0)
			mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
		mdb_cursor_close(cur);
	}
	return mrc == MDB_SUCCESS || mrc == MDB_NOTFOUND ? KVS_OK
	                                                 : map_mdb_error(mrc);
}

/* walk_txn over a database of the records' environment, in one pooled
 * read transaction. */
static int walk(kvs_store *s, MDB_dbi dbi, const void *from, size_t from_len,
                int (*visit)(void *ud, const MDB_val *k, const MDB_val *v),
                void *ud)
{
	MDB_txn *txn;
	int rc;

	rc = read_begin(s, &txn);
	if (rc != KVS_OK)
		return rc;
	rc = walk_txn(txn, dbi, from, from_len, visit, ud);
	read_end(s, txn);
	return rc;
}

/* walk_txn over the index, in a read transaction of its own. */
static int walk_index(kvs_store *s, const void *from, size_t from_len,
                      int (*visit)(void *ud, const MDB_val *k,
                                   const MDB_val *v),
                      void *ud)
{
	MDB_txn *txn;
	int rc, mrc;

	pthread_rwlock_rdlock(&s->imap_lock);
	mrc = mdb_txn_begin(s->ienv, NULL, MDB_RDONLY, &txn);
	if (mrc != MDB_SUCCESS) {
		pthread_rwlock_unlock(&s->imap_lock);
		return map_mdb_error(mrc);
	}
	rc = walk_txn(txn, s->aae, from, from_len, visit, ud);
	mdb_txn_abort(txn);
	pthread_rwlock_unlock(&s->imap_lock);
	return rc;
}

/* One entry of the index: its record's key, version and flags, and the
 * segment; 0 if malformed. */
struct aae_entry {
	const void *key;
	size_t key_len;
	kvs_stamp stamp;
	unsigned flags;
	uint32_t seg;
};

static int aae_decode(const MDB_val *k, const MDB_val *v, struct aae_entry *e)
{
	const unsigned char *kp = k->mv_data, *vp = v->mv_data;

	if (k->mv_size < AAE_HASH || v->mv_size < AAE_VALUE)
		return 0;
	e->seg = KVS__AAE_SEGMENT_OF(kvs__get_be64(kp));
	e->stamp.hlc = kvs__get_le64(vp);
	e->stamp.shard = kvs__get_le32(vp + 8);
	e->flags = vp[12] & KVS_RECORD_TOMBSTONE;
	if (v->mv_size > AAE_VALUE) { /* a long key, kept whole here */
		e->key = vp + AAE_VALUE;
		e->key_len = v->mv_size - AAE_VALUE;
	} else {
		e->key = kp + AAE_HASH;
		e->key_len = k->mv_size - AAE_HASH;
	}
	return 1;
}

/* XOR x into a digest only the writer (or the open) changes. */
static void digest_xor(_Atomic uint64_t *d, uint64_t x)
{
	atomic_store_explicit(
	        d, atomic_load_explicit(d, memory_order_relaxed) ^ x,
	        memory_order_relaxed);
}

/* XOR x into segment seg's digest (by the writer, or at open). */
static void seg_xor(kvs_store *s, uint32_t seg, uint64_t x, int tombs)
{
	digest_xor(&s->seg[seg], x);
	digest_xor(&s->grp[seg / SEG_GROUP], x);
	if (tombs != 0) {
		atomic_fetch_add(&s->seg_tombs[seg], (uint32_t)tombs);
		atomic_fetch_add(&s->tombs, (uint64_t)(int64_t)tombs);
	}
}

/* Order changes by index key, then by their place in the log (so the
 * last change of a key comes last). */
static int change_cmp(const void *pa, const void *pb)
{
	const unsigned char *a = *(const unsigned char *const *)pa;
	const unsigned char *b = *(const unsigned char *const *)pb;
	struct aae_change ca, cb;
	size_t n;
	int c;

	memcpy(&ca, a, sizeof(ca));
	memcpy(&cb, b, sizeof(cb));
	if (ca.hash != cb.hash)
		return ca.hash < cb.hash ? -1 : 1;
	n = ca.key_len < cb.key_len ? ca.key_len : cb.key_len;
	c = memcmp(a + sizeof(ca), b + sizeof(cb), n);
	if (c != 0)
		return c;
	if (ca.key_len != cb.key_len)
		return ca.key_len < cb.key_len ? -1 : 1;
	return a < b ? -1 : a > b ? 1 : 0;
}

/* Whether two changes are of the same key. */
static int same_key(const unsigned char *a, const unsigned char *b)
{
	struct aae_change ca, cb;

	memcpy(&ca, a, sizeof(ca));
	memcpy(&cb, b, sizeof(cb));
	return ca.hash == cb.hash && ca.key_len == cb.key_len &&
	       memcmp(a + sizeof(ca), b + sizeof(cb), ca.key_len) == 0;
}

/* Put or delete one change's entry in txn. */
static int index_one(kvs_store *s, MDB_txn *txn, const unsigned char *p)
{
	unsigned char kbuf[1024];
	struct aae_change c;
	const unsigned char *key = p + sizeof(c);
	MDB_val k, v;
	int cut, mrc;

	memcpy(&c, p, sizeof(c));
	if (s->max_key > sizeof(kbuf))
		return MDB_BAD_VALSIZE;
	k.mv_size = aae_key(s, kbuf, c.hash, key, c.key_len, &cut);
	k.mv_data = kbuf;
	if (c.remove) {
		mrc = mdb_del(txn, s->aae, &k, NULL);
		return mrc == MDB_NOTFOUND ? MDB_SUCCESS : mrc;
	}
	v.mv_size = AAE_VALUE + (cut ? c.key_len : 0);
	v.mv_data = NULL;
	mrc = mdb_put(txn, s->aae, &k, &v, MDB_RESERVE);
	if (mrc != MDB_SUCCESS)
		return mrc;
	kvs__put_le64(v.mv_data, c.hlc);
	kvs__put_le32((unsigned char *)v.mv_data + 8, c.shard);
	((unsigned char *)v.mv_data)[12] = c.flags;
	if (cut)
		memcpy((unsigned char *)v.mv_data + AAE_VALUE, key, c.key_len);
	return MDB_SUCCESS;
}

/*
 * Grow env's map (*size bytes now) to hold need more bytes, doubling, up
 * to opts.max_map_size; lock is the rwlock its readers hold shared (see
 * "Map growth" at the top). Returns an LMDB/errno code.
 */
static int grow_env(kvs_store *s, MDB_env *env, pthread_rwlock_t *lock,
                    size_t *size, size_t need)
{
	size_t next = *size * 2;
	int mrc;

	while (next < *size + need)
		next *= 2;
	if (s->opts.max_map_size != 0 && next > s->opts.max_map_size) {
		if (*size >= s->opts.max_map_size)
			return MDB_MAP_FULL;
		next = s->opts.max_map_size;
	}
	pthread_rwlock_wrlock(lock);
	mrc = mdb_env_set_mapsize(env, next);
	pthread_rwlock_unlock(lock);
	if (mrc == MDB_SUCCESS)
		*size = next;
	return mrc;
}

/* Apply log to the index: sorted, the last change of each key only, in
 * transactions of at most INDEX_TXN_CHANGES. Returns a KVS_* code. */
static int index_apply(kvs_store *s, const struct aae_log *log)
{
	const unsigned char **ch;
	size_t n = 0, done = 0, per_txn = INDEX_TXN_CHANGES;
	int mrc = MDB_SUCCESS;

	if (log->n == 0)
		return KVS_OK;
	ch = malloc(log->n * sizeof(*ch));
	if (ch == NULL)
		return KVS_ENOMEM;
	for (size_t off = 0; off < log->len && n < log->n; n++) {
		struct aae_change c;

		ch[n] = log->buf + off;
		memcpy(&c, ch[n], sizeof(c));
		off += CHANGE_SIZE(c.key_len);
	}
	qsort(ch, n, sizeof(*ch), change_cmp);
	while (done < n) {
		size_t end = done + per_txn < n ? done + per_txn : n;
		MDB_txn *txn;

		mrc = mdb_txn_begin(s->ienv, NULL, 0, &txn);
		if (mrc != MDB_SUCCESS)
			break;
		for (size_t i = done; i < end && mrc == MDB_SUCCESS; i++)
			if (i + 1 == n || !same_key(ch[i], ch[i + 1]))
				mrc = index_one(s, txn, ch[i]);
		if (mrc == MDB_SUCCESS) {
			mrc = mdb_txn_commit(txn);
		} else {
			mdb_txn_abort(txn);
		}
		if (mrc == MDB_MAP_FULL) {
			mrc = grow_env(s, s->ienv, &s->imap_lock,
			               &s->imap_size, 0);
			if (mrc != MDB_SUCCESS)
				break;
			continue; /* this transaction again */
		}
		if (mrc == MDB_TXN_FULL && per_txn > 1) {
			per_txn /= 2;
			continue;
		}
		if (mrc != MDB_SUCCESS)
			break;
		done = end;
	}
	free(ch);
	return map_mdb_error(mrc);
}

/* Apply everything waiting in the log (takes it, swapping in *spare, which
 * must be empty; leaves the applied log's buffer, emptied, in *spare).
 * One drain at a time, in order: the indexer's, and those of threads that
 * cannot wait for it (a segment read, the writer past INDEX_LOG_MAX, the
 * close), which apply the log themselves at their own priority. */
static void index_drain(kvs_store *s, struct aae_log *spare)
{
	struct aae_log take;
	uint64_t upto;
	int rc = KVS_OK, broken;

	pthread_mutex_lock(&s->iapply_mu);
	pthread_mutex_lock(&s->imu);
	take = s->ilog;
	s->ilog = *spare;
	upto = s->ilogged;
	broken = s->ibroken;
	pthread_mutex_unlock(&s->imu);

	if (!broken)
		rc = index_apply(s, &take);
	log_clear(&take);
	*spare = take;

	pthread_mutex_lock(&s->imu);
	if (rc != KVS_OK)
		s->ibroken = 1;
	if (upto > s->iapplied)
		s->iapplied = upto;
	pthread_mutex_unlock(&s->imu);
	pthread_mutex_unlock(&s->iapply_mu);
}

/* Hand a committed batch's changes to the indexer (the writer thread);
 * leaves log empty. Past INDEX_LOG_MAX bytes waiting, the writer applies
 * them itself first: the index never falls further behind, and the
 * requests wait while it catches up. */
static void index_post(kvs_store *s, struct aae_log *log)
{
	int wake;

	if (log->n == 0)
		return;
	pthread_mutex_lock(&s->imu);
	if (!s->ibroken && s->ilog.len >= s->ilog_max) {
		struct aae_log spare = {0};

		pthread_mutex_unlock(&s->imu);
		index_drain(s, &spare);
		free(spare.buf);
		pthread_mutex_lock(&s->imu);
	}
	wake = s->ilog.len == 0;
	if (s->ibroken) {
		/* Nothing is indexed any more: rebuilt at the next open. */
	} else if (s->ilog.len == 0) {
		struct aae_log t = s->ilog;

		s->ilog = *log;
		*log = t;
	} else {
		struct aae_log *to = &s->ilog;

		if (log_reserve(to, log->len) != 0) {
			s->ibroken = 1;
			goto out;
		}
		memcpy(to->buf + to->len, log->buf, log->len);
		to->len += log->len;
		to->n += log->n;
	}
	s->ilogged++;
	if (wake || s->ilog.len >= INDEX_LOG_FLUSH)
		pthread_cond_signal(&s->icv);
out:
	pthread_mutex_unlock(&s->imu);
	log_clear(log);
}

/* The indexer thread: applies the log one window at a time, below every
 * other thread (SCHED_IDLE: on time the requests leave over). It never
 * raises itself again (an unprivileged thread may not leave SCHED_IDLE):
 * whoever cannot wait applies the log itself (index_drain). */
static void *indexer_main(void *arg)
{
	kvs_store *s = arg;
	struct aae_log spare = {0};
	struct sched_param idle = {0};

	pthread_setname_np(pthread_self(), "kvs-indexer");
	(void)pthread_setschedparam(pthread_self(), SCHED_IDLE, &idle);
	pthread_mutex_lock(&s->imu);
	for (;;) {
		struct timespec until;

		while (s->ilog.len == 0 && !s->iclosing)
			pthread_cond_wait(&s->icv, &s->imu);
		if (s->iclosing)
			break; /* the close applies what is left */
		kvs__realtime_after(&until, INDEX_WINDOW_MS);
		while (!s->iclosing && s->ilog.len < INDEX_LOG_FLUSH &&
		       pthread_cond_timedwait(&s->icv, &s->imu, &until) == 0)
			;
		if (s->iclosing)
			break;
		pthread_mutex_unlock(&s->imu);
		index_drain(s, &spare);
		pthread_mutex_lock(&s->imu);
	}
	pthread_mutex_unlock(&s->imu);
	free(spare.buf);
	return NULL;
}

void kvs__store_set_index_log_max(kvs_store *s, size_t bytes)
{
	pthread_mutex_lock(&s->imu);
	s->ilog_max = bytes;
	pthread_mutex_unlock(&s->imu);
}

/* Make every change committed so far part of the index. */
static int index_flush(kvs_store *s)
{
	int behind, rc;

	pthread_mutex_lock(&s->imu);
	behind = s->iapplied < s->ilogged && !s->ibroken;
	pthread_mutex_unlock(&s->imu);
	if (behind) {
		struct aae_log spare = {0};

		index_drain(s, &spare);
		free(spare.buf);
	}
	pthread_mutex_lock(&s->imu);
	rc = s->ibroken ? KVS_EIO : KVS_OK;
	pthread_mutex_unlock(&s->imu);
	return rc;
}

struct seg_walk {
	uint32_t seg;
	kvs__seg_cb cb;
	void *ud;
};

static int visit_segment(void *ud, const MDB_val *k, const MDB_val *v)
{
	struct seg_walk *w = ud;
	struct aae_entry e;

	if (!aae_decode(k, v, &e) || e.seg != w->seg)
		return 1; /* past the segment */
	return w->cb(w->ud, e.key, e.key_len, &e.stamp, e.flags);
}

int kvs__store_segment_scan(kvs_store *s, uint32_t seg, kvs__seg_cb cb,
                            void *ud)
{
	struct seg_walk w = {seg, cb, ud};
	unsigned char from[AAE_HASH];
	int rc;

	if (s == NULL || cb == NULL || seg >= KVS__AAE_SEGMENTS)
		return KVS_EINVAL;
	rc = index_flush(s);
	if (rc != KVS_OK)
		return rc;
	kvs__put_be64(from, (uint64_t)seg << 48);
	return walk_index(s, from, sizeof(from), visit_segment, &w);
}

/* The mark of a clean close (INDEX_CLEAN_FILE): this header, the segment
 * digests and tombstone counts, and an XXH3 of all that. */
struct index_mark {
	uint64_t magic;
	uint64_t entries; /* records at close */
	uint64_t hlc;     /* the records' clock at close */
};

#define MARK_SIZE                                                        \
	(sizeof(struct index_mark) + KVS__AAE_SEGMENTS * sizeof(uint64_t) + \
	 KVS__AAE_SEGMENTS * sizeof(uint32_t) + sizeof(uint64_t))

/* "dir/name", malloc'ed. */
static char *path_in(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);

	if (p != NULL)
		snprintf(p, n, "%s/%s", dir, name);
	return p;
}

static int sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc;

	if (fd < 0)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

/* The records' entry count and clock, as a mark records them. */
static int records_state(kvs_store *s, uint64_t *entries, uint64_t *hlc)
{
	MDB_txn *txn;
	MDB_stat st;
	int mrc;

	mrc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (mrc != MDB_SUCCESS)
		return mrc;
	mrc = mdb_stat(txn, s->kv, &st);
	*hlc = 0;
	if (mrc == MDB_SUCCESS)
		mrc = meta_get_u64(s, txn, META_HLC, hlc);
	if (mrc == MDB_NOTFOUND)
		mrc = MDB_SUCCESS;
	*entries = st.ms_entries;
	mdb_txn_abort(txn);
	return mrc;
}

/* Read and remove (durably) the mark of the last close; 1 if it was there
 * and matches the records, with the digests loaded; -1 if it could not be
 * removed (it must not outlive this open). */
static int take_mark(kvs_store *s, uint64_t entries, uint64_t hlc)
{
	char *file = path_in(s->path, INDEX_CLEAN_FILE);
	unsigned char *buf = NULL;
	struct index_mark m;
	int fd, ok = 0;

	if (file == NULL)
		return 0;
	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		buf = malloc(MARK_SIZE + 1);
		if (buf != NULL &&
		    read(fd, buf, MARK_SIZE + 1) == (ssize_t)MARK_SIZE &&
		    XXH3_64bits(buf, MARK_SIZE - 8) ==
		            kvs__get_le64(buf + MARK_SIZE - 8)) {
			memcpy(&m, buf, sizeof(m));
			ok = m.magic == INDEX_CLEAN_MAGIC &&
			     m.entries == entries && m.hlc == hlc;
		}
		close(fd);
		if (unlink(file) != 0 || sync_dir(s->path) != 0)
			ok = -1; /* must not be found again after a crash */
	}
	if (ok == 1) {
		const unsigned char *p = buf + sizeof(m);

		for (uint32_t i = 0; i < KVS__AAE_SEGMENTS; i++) {
			uint64_t d;
			uint32_t t;

			memcpy(&d, p + (size_t)i * 8, 8);
			memcpy(&t, p + (size_t)KVS__AAE_SEGMENTS * 8 +
			                   (size_t)i * 4,
			       4);
			atomic_store(&s->seg[i], d);
			digest_xor(&s->grp[i / SEG_GROUP], d);
			atomic_store(&s->seg_tombs[i], t);
			atomic_fetch_add(&s->tombs, t);
		}
	}
	free(buf);
	free(file);
	return ok;
}

/* Write the mark of a clean close (the index synced, nothing pending). */
static void put_mark(kvs_store *s)
{
	char *file = path_in(s->path, INDEX_CLEAN_FILE);
	char *tmp = path_in(s->path, INDEX_CLEAN_FILE ".tmp");
	unsigned char *buf = malloc(MARK_SIZE);
	struct index_mark m = {INDEX_CLEAN_MAGIC, 0, 0};
	int fd = -1, ok = 0;

	if (file == NULL || tmp == NULL || buf == NULL ||
	    records_state(s, &m.entries, &m.hlc) != MDB_SUCCESS)
		goto out;
	memcpy(buf, &m, sizeof(m));
	for (uint32_t i = 0; i < KVS__AAE_SEGMENTS; i++) {
		uint64_t d = atomic_load(&s->seg[i]);
		uint32_t t = atomic_load(&s->seg_tombs[i]);

		memcpy(buf + sizeof(m) + (size_t)i * 8, &d, 8);
		memcpy(buf + sizeof(m) + (size_t)KVS__AAE_SEGMENTS * 8 +
		               (size_t)i * 4,
		       &t, 4);
	}
	kvs__put_le64(buf + MARK_SIZE - 8, XXH3_64bits(buf, MARK_SIZE - 8));
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		goto out;
	/* No sync: the index is synced already, so a mark lost or torn by
	 * a crash only costs a rebuild (the checksum finds it torn). */
	ok = write(fd, buf, MARK_SIZE) == (ssize_t)MARK_SIZE;
	close(fd);
	ok = ok && rename(tmp, file) == 0;
	if (!ok)
		unlink(tmp);
out:
	free(buf);
	free(tmp);
	free(file);
}

/* Build the index from the records, and the digests with it. */
static int index_rebuild(kvs_store *s)
{
	struct aae_log log = {0};
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc = KVS_OK, mrc;

	mrc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (mrc != MDB_SUCCESS)
		return map_mdb_error(mrc);
	mrc = mdb_cursor_open(txn, s->kv, &cur);
	if (mrc == MDB_SUCCESS) {
		mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
		while (mrc == MDB_SUCCESS && rc == KVS_OK) {
			kvs_record rec;

			if (decode_record(&v, &rec) == KVS_OK) {
				uint64_t hash = kvs_ring_hash(k.mv_data,
				                              k.mv_size);

				if (log_change(&log, hash, k.mv_data,
				               k.mv_size, &rec.stamp, rec.flags,
				               0) != MDB_SUCCESS)
					rc = KVS_ENOMEM;
				seg_xor(s, KVS__AAE_SEGMENT_OF(hash),
				        kvs__record_hash(k.mv_data, k.mv_size,
				                         &rec.stamp, rec.flags),
				        (rec.flags & KVS_RECORD_TOMBSTONE) ? 1
				                                           : 0);
			}
			if (rc == KVS_OK && log.n >= 10 * INDEX_TXN_CHANGES) {
				rc = index_apply(s, &log);
				log_clear(&log);
			}
			mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
		}
		mdb_cursor_close(cur);
	}
	mdb_txn_abort(txn);
	if (rc == KVS_OK && mrc != MDB_NOTFOUND)
		rc = map_mdb_error(mrc);
	if (rc == KVS_OK)
		rc = index_apply(s, &log);
	free(log.buf);
	return rc;
}

/* Open the index's environment (after a clean close: check it holds an
 * entry per record, or empty it and clear *clean). */
static int index_env_open(kvs_store *s, const char *file, uint64_t entries,
                          int *clean)
{
	unsigned flags = MDB_NOSUBDIR | MDB_NOSYNC | MDB_NOTLS | MDB_NORDAHEAD;
	MDB_envinfo info;
	MDB_txn *txn;
	int mrc;

	mrc = mdb_env_create(&s->ienv);
	if (mrc == MDB_SUCCESS)
		mrc = mdb_env_set_mapsize(s->ienv, INDEX_INITIAL_MAP);
	if (mrc == MDB_SUCCESS)
		mrc = mdb_env_open(s->ienv, file, flags, 0600);
	if (mrc != MDB_SUCCESS)
		return mrc;
	mdb_env_info(s->ienv, &info);
	s->imap_size = info.me_mapsize;
	mrc = mdb_txn_begin(s->ienv, NULL, 0, &txn);
	if (mrc != MDB_SUCCESS)
		return mrc;
	mrc = mdb_dbi_open(txn, NULL, 0, &s->aae);
	if (mrc == MDB_SUCCESS && *clean) {
		MDB_stat st;

		/* A mark that matches an index it does not describe (files
		 * copied apart): start over. */
		mrc = mdb_stat(txn, s->aae, &st);
		if (mrc == MDB_SUCCESS && st.ms_entries != entries) {
			*clean = 0;
			mrc = mdb_drop(txn, s->aae, 0);
		}
	}
	if (mrc == MDB_SUCCESS)
		return mdb_txn_commit(txn);
	mdb_txn_abort(txn);
	return mrc;
}

/* Open the index: reuse it after a clean close that matches the records,
 * rebuild it otherwise; then start the indexer. */
static int index_open(kvs_store *s)
{
	char *file = path_in(s->path, INDEX_FILE);
	char *lock = path_in(s->path, INDEX_FILE "-lock");
	uint64_t entries, hlc;
	int clean, mrc, rc = KVS_OK;

	s->seg = calloc(KVS__AAE_SEGMENTS, sizeof(*s->seg));
	s->grp = calloc(KVS__AAE_SEGMENTS / SEG_GROUP, sizeof(*s->grp));
	s->seg_tombs = calloc(KVS__AAE_SEGMENTS, sizeof(*s->seg_tombs));
	if (file == NULL || lock == NULL || s->seg == NULL || s->grp == NULL ||
	    s->seg_tombs == NULL) {
		rc = KVS_ENOMEM;
		goto out;
	}
	mrc = records_state(s, &entries, &hlc);
	if (mrc != MDB_SUCCESS) {
		rc = map_mdb_error(mrc);
		goto out;
	}
	clean = take_mark(s, entries, hlc);
	if (clean < 0) {
		rc = KVS_ESYS;
		goto out;
	}
	for (int again = clean;; again = 0) {
		if (!clean &&
		    ((unlink(file) != 0 && errno != ENOENT) ||
		     (unlink(lock) != 0 && errno != ENOENT))) {
			rc = KVS_ESYS; /* perhaps torn by a crash: never read */
			goto out;
		}
		mrc = index_env_open(s, file, entries, &clean);
		if (mrc == MDB_SUCCESS || !again)
			break;
		/* Marked clean, yet LMDB refuses it: start over. */
		mdb_env_close(s->ienv);
		s->ienv = NULL;
		clean = 0;
	}
	if (mrc != MDB_SUCCESS) {
		rc = map_mdb_error(mrc);
		goto out;
	}
	if (!clean) {
		memset((void *)s->seg, 0, KVS__AAE_SEGMENTS * sizeof(*s->seg));
		memset((void *)s->grp, 0,
		       KVS__AAE_SEGMENTS / SEG_GROUP * sizeof(*s->grp));
		memset((void *)s->seg_tombs, 0,
		       KVS__AAE_SEGMENTS * sizeof(*s->seg_tombs));
		atomic_store(&s->tombs, 0);
		rc = index_rebuild(s);
		if (rc != KVS_OK)
			goto out;
	}
	if (pthread_create(&s->indexer, NULL, indexer_main, s) != 0)
		rc = KVS_ESYS;
	else
		s->indexer_running = 1;
out:
	free(file);
	free(lock);
	return rc;
}

/* Stop the indexer once it has applied everything; after a clean run,
 * sync the index and mark it clean. Called after the writer stopped. */
static void index_close(kvs_store *s)
{
	if (s->indexer_running) {
		struct aae_log spare = {0};

		pthread_mutex_lock(&s->imu);
		s->iclosing = 1;
		pthread_cond_signal(&s->icv);
		pthread_mutex_unlock(&s->imu);
		pthread_join(s->indexer, NULL);
		s->indexer_running = 0;
		index_drain(s, &spare);
		free(spare.buf);
		if (!s->ibroken && mdb_env_sync(s->ienv, 1) == MDB_SUCCESS)
			put_mark(s);
	}
	if (s->ienv != NULL)
		mdb_env_close(s->ienv);
	s->ienv = NULL;
	free(s->ilog.buf);
	s->ilog.buf = NULL;
}


/*
 * Apply one operation inside the batch's transaction. Returns an LMDB error
 * only for failures that poison the transaction (the batch is retried or
 * failed as a whole); the operation's own outcome goes to op->rc.
 */
static int apply_op(kvs_store *s, MDB_txn *txn, struct write_op *op,
                    struct batch_delta *d)
{
	MDB_val k = {op->key_len, (void *)op->key}, v;
	kvs_record old = {0};
	int exists, old_live, mrc;

	if (op->kind == OP_HINT || op->kind == OP_UNHINT) {
		v.mv_size = op->value_len;
		v.mv_data = (void *)op->value;
		mrc = op->kind == OP_HINT ? mdb_put(txn, s->hints, &k, &v, 0)
		                          : mdb_del(txn, s->hints, &k, NULL);
		op->rc = KVS_OK;
		if (mrc == MDB_NOTFOUND)
			return MDB_SUCCESS; /* already gone */
		if (mrc == MDB_BAD_VALSIZE) {
			op->rc = KVS_EVALSIZE;
			return MDB_SUCCESS;
		}
		op->applied = mrc == MDB_SUCCESS;
		return mrc;
	}
	if (op->kind == OP_PURGE || op->kind == OP_DROP) {
		/* Only the very record the caller judged (for a purge, a
		 * tombstone): a write since then stays. */
		op->rc = KVS_OK;
		mrc = mdb_get(txn, s->kv, &k, &v);
		if (mrc == MDB_NOTFOUND)
			return MDB_SUCCESS;
		if (mrc != MDB_SUCCESS)
			return mrc;
		if (decode_record(&v, &old) != KVS_OK) {
			op->rc = KVS_ECORRUPT;
			return MDB_SUCCESS;
		}
		if ((op->kind == OP_PURGE &&
		     !(old.flags & KVS_RECORD_TOMBSTONE)) ||
		    kvs_stamp_cmp(&old.stamp, &op->stamp) != 0)
			return MDB_SUCCESS;
		mrc = mdb_del(txn, s->kv, &k, NULL);
		if (mrc == MDB_SUCCESS)
			mrc = aae_remove(d, op->key, op->key_len, &old);
		if (mrc != MDB_SUCCESS)
			return mrc;
		if (old.flags & KVS_RECORD_TOMBSTONE)
			d->tombstones -= 1;
		else
			d->keys -= 1;
		op->applied = 1;
		return MDB_SUCCESS;
	}
	unsigned new_flags;
	const void *value = op->value;
	size_t value_len = op->value_len;

	mrc = mdb_get(txn, s->kv, &k, &v);
	if (mrc != MDB_SUCCESS && mrc != MDB_NOTFOUND)
		return mrc;
	exists = mrc == MDB_SUCCESS;
	if (exists && decode_record(&v, &old) != KVS_OK) {
		op->rc = KVS_ECORRUPT;
		return MDB_SUCCESS;
	}
	old_live = exists && !(old.flags & KVS_RECORD_TOMBSTONE);

	op->applied = 0;
	if (op->kind == OP_APPLY) {
		uint64_t merged;

		/* Keep the local clock ahead of every version stored here,
		 * and never adopt one too far ahead of the wall clock (the
		 * wall may have stepped back since prepare_apply checked). */
		if (kvs__hlc_update(&s->clock, op->stamp.hlc, &merged) !=
		    KVS_OK) {
			atomic_fetch_add(&s->clock_refusals, 1);
			op->rc = KVS_ECLOCK;
			return MDB_SUCCESS;
		}
		op->rc = KVS_OK;
		if (exists && kvs_stamp_cmp(&op->stamp, &old.stamp) <= 0)
			return MDB_SUCCESS;
		new_flags = op->rflags & KVS_RECORD_TOMBSTONE;
		if (new_flags) {
			value = NULL;
			value_len = 0;
		}
	} else {
		op->rc = kvs__cond_check(&op->cond, old_live ? &old.stamp : NULL);
		if (op->rc != KVS_OK)
			return MDB_SUCCESS;
		op->stamp.hlc = kvs__hlc_now(&s->clock);
		/* A stored version ahead of the clock (written before the
		 * bound, or the wall stepped back): a local write still
		 * follows it. */
		if (exists && op->stamp.hlc <= old.stamp.hlc)
			kvs__hlc_merge(&s->clock, old.stamp.hlc,
			               &op->stamp.hlc);
		op->stamp.shard = s->opts.shard_id;
		if (op->kind == OP_DELETE) {
			new_flags = KVS_RECORD_TOMBSTONE;
			op->rc = old_live ? KVS_OK : KVS_NOTFOUND;
		} else {
			new_flags = 0;
			op->rc = KVS_OK;
		}
	}

	v.mv_size = HDR_SIZE + value_len;
	v.mv_data = NULL;
	mrc = mdb_put(txn, s->kv, &k, &v, MDB_RESERVE);
	if (mrc != MDB_SUCCESS) {
		if (mrc == MDB_BAD_VALSIZE) {
			op->rc = KVS_EKEYSIZE;
			return MDB_SUCCESS;
		}
		return mrc;
	}
	encode_header(v.mv_data, &op->stamp, new_flags);
	if (value_len > 0)
		memcpy((unsigned char *)v.mv_data + HDR_SIZE, value, value_len);
	mrc = aae_write(d, op->key, op->key_len, exists ? &old : NULL,
	                &op->stamp, new_flags);
	if (mrc != MDB_SUCCESS)
		return mrc;
	op->applied = 1;

	d->keys += (new_flags ? 0 : 1) - (old_live ? 1 : 0);
	d->tombstones += (new_flags ? 1 : 0) -
	                 ((exists && !old_live) ? 1 : 0);
	return MDB_SUCCESS;
}

/* Run one batch in one transaction; returns an LMDB/errno code. */
static int run_batch(kvs_store *s, struct write_op *batch,
                     struct batch_delta *d)
{
	MDB_txn *txn;
	struct write_op *op;
	uint64_t keys, tombs;
	int mrc;

	d->keys = d->tombstones = 0;
	d->n_segs = 0;
	log_clear(&d->log);
	mrc = mdb_txn_begin(s->env, NULL, 0, &txn);
	if (mrc != MDB_SUCCESS)
		return mrc;
	for (op = batch; op != NULL; op = op->next) {
		mrc = apply_op(s, txn, op, d);
		if (mrc != MDB_SUCCESS)
			goto fail;
	}
	keys = (uint64_t)((int64_t)atomic_load(&s->keys) + d->keys);
	tombs = (uint64_t)((int64_t)atomic_load(&s->tombstones) +
	                   d->tombstones);
	mrc = meta_put_u64(s, txn, META_HLC, kvs__hlc_peek(&s->clock));
	if (mrc == MDB_SUCCESS)
		mrc = meta_put_u64(s, txn, META_KEYS, keys);
	if (mrc == MDB_SUCCESS)
		mrc = meta_put_u64(s, txn, META_TOMBSTONES, tombs);
	if (mrc != MDB_SUCCESS)
		goto fail;
	return mdb_txn_commit(txn);
fail:
	mdb_txn_abort(txn);
	return mrc;
}

/* Grow the map after MDB_MAP_FULL; returns an LMDB/errno code. */
static int grow_map(kvs_store *s, size_t need)
{
	int mrc = grow_env(s, s->env, &s->map_lock, &s->map_size, need);

	if (mrc == MDB_SUCCESS)
		atomic_fetch_add(&s->grows, 1);
	return mrc;
}

/* Call the completion of every operation in list, then forget them. */
static void complete(struct write_op *list, int fail_rc)
{
	static const kvs_stamp none = {0, 0};
	struct write_op *op, *next;

	for (op = list; op != NULL; op = next) {
		int ok;

		next = op->next;
		if (fail_rc != KVS_OK) {
			op->rc = fail_rc;
			op->applied = 0;
		}
		ok = op->rc == KVS_OK ||
		     (op->kind == OP_DELETE && op->rc == KVS_NOTFOUND);
		op->cb(op->ud, op->rc, ok ? &op->stamp : &none, op->applied);
	}
}

/* Take up to max_batch operations (and MAX_BATCH_BYTES) off the queue. */
static struct write_op *take_batch(kvs_store *s)
{
	struct write_op *batch = s->head, *op = batch, *last = NULL;
	unsigned n = 0;
	size_t bytes = 0;

	while (op != NULL && n < s->opts.max_batch &&
	       (n == 0 || bytes + op->value_len <= MAX_BATCH_BYTES)) {
		bytes += op->value_len;
		n++;
		last = op;
		op = op->next;
	}
	if (last != NULL)
		last->next = NULL;
	s->head = op;
	if (op == NULL)
		s->tail = &s->head;
	return batch;
}

/* Put list back at the front of the queue (the writer holds s->mu). */
static void requeue_front(kvs_store *s, struct write_op *list)
{
	struct write_op *last = list;

	if (list == NULL)
		return;
	while (last->next != NULL)
		last = last->next;
	last->next = s->head;
	if (s->head == NULL)
		s->tail = &last->next;
	s->head = list;
}

static size_t batch_bytes(const struct write_op *list)
{
	size_t n = 0;

	for (; list != NULL; list = list->next)
		n += list->key_len + list->value_len + HDR_SIZE;
	return n;
}

/* Has the filesystem of the store less room than need bytes, and a
 * margin? */
static int fs_has_no_room(kvs_store *s, size_t need)
{
	struct statvfs st;
	unsigned long long avail;
	mdb_filehandle_t fd;

	if (mdb_env_get_fd(s->env, &fd) != MDB_SUCCESS ||
	    fstatvfs(fd, &st) != 0)
		return 0;
	/* root may use the blocks reserved for it, others may not. */
	avail = geteuid() == 0 ? st.f_bfree : st.f_bavail;
	avail *= st.f_frsize;
	return avail < (unsigned long long)need + FS_FULL_MARGIN;
}

/*
 * Fail every write of list with the result of mrc. A full filesystem
 * reaches us in two ways: ENOSPC when a write(2) found no room at all,
 * but EIO when it stored only part of what it was given (LMDB calls a
 * short write EIO; the errno the next write would have had is never
 * seen). So an EIO while the filesystem has no room left for the batch
 * is a full store too.
 */
static void fail_writes(kvs_store *s, struct write_op *list, int mrc)
{
	int rc = map_mdb_error(mrc);
	uint64_t n = 0;

	for (const struct write_op *o = list; o != NULL; o = o->next)
		n++;
	if (mrc == EIO && fs_has_no_room(s, batch_bytes(list)))
		rc = KVS_EFULL;
	if (rc == KVS_EFULL && mrc == MDB_MAP_FULL)
		atomic_fetch_add(&s->full_map, n);
	else if (rc == KVS_EFULL)
		atomic_fetch_add(&s->full_fs, n);
	complete(list, rc);
}

void kvs__store_full_writes(kvs_store *s, uint64_t *map, uint64_t *fs)
{
	*map = s != NULL ? atomic_load(&s->full_map) : 0;
	*fs = s != NULL ? atomic_load(&s->full_fs) : 0;
}

static void *writer_main(void *arg)
{
	kvs_store *s = arg;
	struct write_op *batch, *pending = NULL;
	struct batch_delta d = {0};
	time_t last_check = time(NULL);
	int mrc;

	pthread_setname_np(pthread_self(), "kvs-writer");
	pthread_mutex_lock(&s->mu);
	for (;;) {
		while (s->head == NULL && pending == NULL && !s->closing) {
			struct timespec until;

			kvs__realtime_after(&until,
			                    READER_CHECK_INTERVAL_S * 1000u);
			pthread_cond_timedwait(&s->cv, &s->mu, &until);
			if (time(NULL) - last_check >= READER_CHECK_INTERVAL_S) {
				int dead = 0;

				mdb_reader_check(s->env, &dead);
				last_check = time(NULL);
			}
		}
		if (s->head == NULL) {
			if (pending == NULL)
				break; /* closing and drained */
			/* Idle: make the last batch durable by itself. */
			pthread_mutex_unlock(&s->mu);
			mrc = mdb_env_sync(s->env, 1);
			atomic_fetch_add(&s->syncs, 1);
			if (mrc != MDB_SUCCESS)
				fail_writes(s, pending, mrc);
			else
				complete(pending, KVS_OK);
			pending = NULL;
			pthread_mutex_lock(&s->mu);
			continue;
		}
		batch = take_batch(s);
		pthread_mutex_unlock(&s->mu);

		for (;;) {
			mrc = run_batch(s, batch, &d);
			if (mrc == MDB_MAP_FULL) {
				mrc = grow_map(s, batch_bytes(batch));
				if (mrc == MDB_SUCCESS)
					continue;
			} else if (mrc == MDB_TXN_FULL && batch->next != NULL) {
				/* Too many dirty pages: retry the first half,
				 * requeue the rest in front of the queue. */
				struct write_op *mid = batch, *rest;
				size_t n = 0;

				for (const struct write_op *o = batch; o;
				     o = o->next)
					n++;
				for (size_t i = 1; i < n / 2; i++)
					mid = mid->next;
				rest = mid->next;
				mid->next = NULL;
				pthread_mutex_lock(&s->mu);
				requeue_front(s, rest);
				pthread_mutex_unlock(&s->mu);
				continue;
			}
			break;
		}

		if (mrc != MDB_SUCCESS) {
			fail_writes(s, batch, mrc);
		} else {
			unsigned n = 0;

			for (const struct write_op *o = batch; o; o = o->next)
				n++;
			for (size_t i = 0; i < d.n_segs; i++)
				seg_xor(s, d.segs[i].seg, d.segs[i].x,
				        d.segs[i].tombs);
			index_post(s, &d.log);
			atomic_fetch_add(&s->keys, (uint64_t)d.keys);
			atomic_fetch_add(&s->tombstones,
			                 (uint64_t)d.tombstones);
			atomic_fetch_add(&s->commits, 1);
			atomic_fetch_add(&s->writes, n);
			/* This commit's data sync made the previous batch
			 * durable (see the top of this file). */
			complete(pending, KVS_OK);
			pending = NULL;
			if (s->opts.sync == KVS_SYNC_FULL)
				pending = batch;
			else
				complete(batch, KVS_OK);
		}
		pthread_mutex_lock(&s->mu);
	}
	pthread_mutex_unlock(&s->mu);
	free(d.segs);
	free(d.log.buf);
	return NULL;
}

static int submit(kvs_store *s, struct write_op *op)
{
	pthread_mutex_lock(&s->mu);
	if (s->closing) {
		pthread_mutex_unlock(&s->mu);
		return KVS_ECLOSED;
	}
	op->next = NULL;
	*s->tail = op;
	s->tail = &op->next;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return KVS_OK;
}

/* A synchronous caller waiting for its operation. */
struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done;
	int rc;
	int applied;
	kvs_stamp stamp;
};

static void waiter_done(void *ud, int rc, const kvs_stamp *stamp,
                        int applied)
{
	struct waiter *w = ud;

	pthread_mutex_lock(&w->mu);
	w->rc = rc;
	w->stamp = *stamp;
	w->applied = applied;
	w->done = 1;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static int run_sync(kvs_store *s, struct write_op *op, kvs_stamp *stamp,
                    int *applied)
{
	struct waiter w;
	int rc;

	pthread_mutex_init(&w.mu, NULL);
	pthread_cond_init(&w.cv, NULL);
	w.done = 0;
	op->cb = waiter_done;
	op->ud = &w;
	rc = submit(s, op);
	if (rc == KVS_OK) {
		pthread_mutex_lock(&w.mu);
		while (!w.done)
			pthread_cond_wait(&w.cv, &w.mu);
		pthread_mutex_unlock(&w.mu);
		rc = w.rc;
		if (stamp != NULL)
			*stamp = w.stamp;
		if (applied != NULL)
			*applied = w.applied;
	}
	pthread_cond_destroy(&w.cv);
	pthread_mutex_destroy(&w.mu);
	return rc;
}

/* An asynchronous operation owns a heap copy of its op. */
struct async_op {
	struct write_op op;
	kvs_write_cb cb;
	void *ud;
};

static void async_done(void *ud, int rc, const kvs_stamp *stamp, int applied)
{
	struct async_op *a = ud;
	kvs_write_cb cb = a->cb;
	void *cb_ud = a->ud;
	kvs_stamp st = *stamp; /* it may live inside *a */

	free(a);
	cb(cb_ud, rc, &st, applied);
}

static int run_async(kvs_store *s, const struct write_op *op,
                     kvs_write_cb cb, void *ud)
{
	struct async_op *a;
	int rc;

	if (cb == NULL)
		return KVS_EINVAL;
	a = malloc(sizeof(*a));
	if (a == NULL)
		return KVS_ENOMEM;
	a->op = *op;
	a->op.cb = async_done;
	a->op.ud = a;
	a->cb = cb;
	a->ud = ud;
	rc = submit(s, &a->op);
	if (rc != KVS_OK)
		free(a);
	return rc;
}

int kvs__store_hint_write(kvs_store *s, int remove, const void *key,
                          size_t key_len, const void *value,
                          size_t value_len, kvs_write_cb cb, void *ud)
{
	struct write_op op;

	if (s == NULL || key == NULL || key_len == 0 ||
	    (value == NULL && value_len > 0))
		return KVS_EINVAL;
	memset(&op, 0, sizeof(op));
	op.kind = remove ? OP_UNHINT : OP_HINT;
	op.key = key;
	op.key_len = key_len;
	op.value = remove ? NULL : value;
	op.value_len = remove ? 0 : value_len;
	if (cb != NULL)
		return run_async(s, &op, cb, ud);
	return run_sync(s, &op, NULL, NULL);
}

static int purge_or_drop(kvs_store *s, enum op_kind kind, const void *key,
                         size_t key_len, const kvs_stamp *stamp,
                         kvs_write_cb cb, void *ud)
{
	struct write_op op;
	int rc;

	if (s == NULL || stamp == NULL)
		return KVS_EINVAL;
	rc = check_key(s, key, key_len);
	if (rc != KVS_OK)
		return rc;
	memset(&op, 0, sizeof(op));
	op.kind = kind;
	op.key = key;
	op.key_len = key_len;
	op.stamp = *stamp;
	if (cb != NULL)
		return run_async(s, &op, cb, ud);
	{
		int applied = 0;

		rc = run_sync(s, &op, NULL, &applied);
		return rc == KVS_OK && !applied ? KVS_NOTFOUND : rc;
	}
}

int kvs__store_purge(kvs_store *s, const void *key, size_t key_len,
                     const kvs_stamp *stamp, kvs_write_cb cb, void *ud)
{
	return purge_or_drop(s, OP_PURGE, key, key_len, stamp, cb, ud);
}

int kvs__store_drop(kvs_store *s, const void *key, size_t key_len,
                    const kvs_stamp *stamp, kvs_write_cb cb, void *ud)
{
	return purge_or_drop(s, OP_DROP, key, key_len, stamp, cb, ud);
}

struct hint_walk {
	kvs__hint_cb cb;
	void *ud;
};

static int visit_hint(void *ud, const MDB_val *k, const MDB_val *v)
{
	struct hint_walk *w = ud;

	return w->cb(w->ud, k->mv_data, k->mv_size, v->mv_data, v->mv_size);
}

int kvs__store_hints_scan(kvs_store *s, const void *from, size_t from_len,
                          kvs__hint_cb cb, void *ud)
{
	struct hint_walk w = {cb, ud};

	if (s == NULL || cb == NULL)
		return KVS_EINVAL;
	return walk(s, s->hints, from, from_len, visit_hint, &w);
}

/* Validate and fill an op for put/delete/apply. */
static int prepare(kvs_store *s, struct write_op *op, enum op_kind kind,
                   const void *key, size_t key_len, const void *value,
                   size_t value_len, const kvs__cond *cond)
{
	int rc;

	if (s == NULL)
		return KVS_EINVAL;
	rc = check_key(s, key, key_len);
	if (rc != KVS_OK)
		return rc;
	if (value_len > KVS_STORE_MAX_VALUE_SIZE)
		return KVS_EVALSIZE;
	if (value == NULL && value_len > 0)
		return KVS_EINVAL;
	memset(op, 0, sizeof(*op));
	op->kind = kind;
	op->key = key;
	op->key_len = key_len;
	op->value = value;
	op->value_len = value_len;
	if (cond != NULL) {
		if (cond->n_expect > KVS__MAX_EXPECT)
			return KVS_EINVAL;
		op->cond = *cond;
	}
	return KVS_OK;
}

void kvs__cond_from_options(kvs__cond *c, const kvs_write_options *opts)
{
	memset(c, 0, sizeof(*c));
	if (opts == NULL)
		return;
	c->flags = opts->flags;
	if (opts->flags & KVS_WRITE_IF_STAMP) {
		c->expect[0] = opts->expect;
		c->n_expect = 1;
	}
}

int kvs__cond_check(const kvs__cond *c, const kvs_stamp *live)
{
	if ((c->flags & KVS_WRITE_IF_ABSENT) && live != NULL)
		return KVS_EEXISTS;
	if ((c->flags & KVS_WRITE_IF_EXISTS) && live == NULL)
		return KVS_ECONFLICT;
	if (c->flags & KVS_WRITE_IF_STAMP) {
		if (live == NULL)
			return KVS_ECONFLICT;
		for (unsigned i = 0; i < c->n_expect; i++)
			if (kvs_stamp_cmp(live, &c->expect[i]) == 0)
				return KVS_OK;
		return KVS_ECONFLICT;
	}
	return KVS_OK;
}

static int prepare_apply(kvs_store *s, struct write_op *op,
                         const kvs_record *rec)
{
	int tomb, rc;

	if (rec == NULL)
		return KVS_EINVAL;
	tomb = (rec->flags & KVS_RECORD_TOMBSTONE) != 0;
	rc = prepare(s, op, OP_APPLY, rec->key, rec->key_len,
	             tomb ? NULL : rec->value, tomb ? 0 : rec->value_len,
	             NULL);
	if (rc != KVS_OK)
		return rc;
	op->stamp = rec->stamp;
	op->rflags = rec->flags;
	if (kvs__hlc_check(&s->clock, rec->stamp.hlc) != KVS_OK) {
		atomic_fetch_add(&s->clock_refusals, 1);
		return KVS_ECLOCK;
	}
	return KVS_OK;
}

int kvs_store_put(kvs_store *s, const void *key, size_t key_len,
                  const void *value, size_t value_len,
                  const kvs_write_options *opts, kvs_stamp *stamp)
{
	struct write_op op;
	kvs__cond c;
	int rc;

	kvs__cond_from_options(&c, opts);
	rc = prepare(s, &op, OP_PUT, key, key_len, value, value_len, &c);

	return rc != KVS_OK ? rc : run_sync(s, &op, stamp, NULL);
}

int kvs_store_delete(kvs_store *s, const void *key, size_t key_len,
                     const kvs_write_options *opts, kvs_stamp *stamp)
{
	struct write_op op;
	kvs__cond c;
	int rc;

	kvs__cond_from_options(&c, opts);
	rc = prepare(s, &op, OP_DELETE, key, key_len, NULL, 0, &c);

	return rc != KVS_OK ? rc : run_sync(s, &op, stamp, NULL);
}

int kvs_store_apply(kvs_store *s, const kvs_record *rec, int *applied)
{
	struct write_op op;
	int rc = prepare_apply(s, &op, rec);

	return rc != KVS_OK ? rc : run_sync(s, &op, NULL, applied);
}

int kvs_store_put_async(kvs_store *s, const void *key, size_t key_len,
                        const void *value, size_t value_len,
                        const kvs_write_options *opts, kvs_write_cb cb,
                        void *ud)
{
	kvs__cond c;

	kvs__cond_from_options(&c, opts);
	return kvs__store_write_async(s, 0, key, key_len, value, value_len, &c,
	                              cb, ud);
}

int kvs_store_delete_async(kvs_store *s, const void *key, size_t key_len,
                           const kvs_write_options *opts, kvs_write_cb cb,
                           void *ud)
{
	kvs__cond c;

	kvs__cond_from_options(&c, opts);
	return kvs__store_write_async(s, 1, key, key_len, NULL, 0, &c, cb, ud);
}

int kvs__store_write_async(kvs_store *s, int is_delete, const void *key,
                           size_t key_len, const void *value,
                           size_t value_len, const kvs__cond *cond,
                           kvs_write_cb cb, void *ud)
{
	struct write_op op;
	int rc = prepare(s, &op, is_delete ? OP_DELETE : OP_PUT, key, key_len,
	                 is_delete ? NULL : value, is_delete ? 0 : value_len,
	                 cond);

	return rc != KVS_OK ? rc : run_async(s, &op, cb, ud);
}

int kvs__store_write(kvs_store *s, int is_delete, const void *key,
                     size_t key_len, const void *value, size_t value_len,
                     const kvs__cond *cond, kvs_stamp *stamp)
{
	struct write_op op;
	int rc = prepare(s, &op, is_delete ? OP_DELETE : OP_PUT, key, key_len,
	                 is_delete ? NULL : value, is_delete ? 0 : value_len,
	                 cond);

	return rc != KVS_OK ? rc : run_sync(s, &op, stamp, NULL);
}

int kvs_store_apply_async(kvs_store *s, const kvs_record *rec,
                          kvs_write_cb cb, void *ud)
{
	struct write_op op;
	int rc = prepare_apply(s, &op, rec);

	return rc != KVS_OK ? rc : run_async(s, &op, cb, ud);
}

uint64_t kvs__store_clock_now(kvs_store *s)
{
	return kvs__hlc_now(&s->clock);
}

void kvs__store_set_wall(kvs_store *s, kvs__wall_fn wall, void *ud)
{
	kvs__hlc_init(&s->clock, kvs__hlc_peek(&s->clock), wall, ud);
	s->clock.max_ahead_ms = s->opts.max_clock_ahead_ms;
}

/* ------------------------------------------------------------------ */
/* Open, close, figures                                                 */

void kvs_store_options_init(kvs_store_options *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->map_size = KVS_STORE_DEFAULT_MAP_SIZE;
	opts->max_readers = KVS_STORE_DEFAULT_MAX_READERS;
	opts->max_batch = KVS_STORE_DEFAULT_MAX_BATCH;
	opts->sync = KVS_SYNC_FULL;
}

/* Create the databases, check the format and load the counters. */
static int open_databases(kvs_store *s)
{
	MDB_txn *txn;
	MDB_stat st;
	uint64_t format = 0, hlc = 0, keys = 0, tombs = 0;
	int mrc, rc = KVS_OK;

	mrc = mdb_txn_begin(s->env, NULL, 0, &txn);
	if (mrc != MDB_SUCCESS)
		return map_mdb_error(mrc);
	mrc = mdb_dbi_open(txn, "kv", MDB_CREATE, &s->kv);
	if (mrc == MDB_SUCCESS)
		mrc = mdb_dbi_open(txn, "hints", MDB_CREATE, &s->hints);
	if (mrc == MDB_SUCCESS) {
		MDB_dbi old;

		/* The index used to live here: it has its own file now. */
		mrc = mdb_dbi_open(txn, "aae", 0, &old);
		if (mrc == MDB_SUCCESS)
			mrc = mdb_drop(txn, old, 1);
		else if (mrc == MDB_NOTFOUND)
			mrc = MDB_SUCCESS;
	}
	if (mrc == MDB_SUCCESS)
		mrc = mdb_dbi_open(txn, NULL, 0, &s->meta);
	if (mrc != MDB_SUCCESS)
		goto fail;
	mrc = meta_get_u64(s, txn, META_FORMAT, &format);
	if (mrc == MDB_NOTFOUND) {
		mrc = mdb_stat(txn, s->kv, &st);
		if (mrc != MDB_SUCCESS)
			goto fail;
		if (st.ms_entries != 0) {
			rc = KVS_ECORRUPT; /* data without a format mark */
			goto fail_rc;
		}
		format = FORMAT_VERSION;
		mrc = meta_put_u64(s, txn, META_FORMAT, format);
		if (mrc != MDB_SUCCESS)
			goto fail;
	} else if (mrc != MDB_SUCCESS) {
		goto fail;
	}
	if (format != FORMAT_VERSION) {
		rc = KVS_EVERSION;
		goto fail_rc;
	}
	mrc = meta_get_u64(s, txn, META_HLC, &hlc);
	if (mrc == MDB_SUCCESS)
		mrc = meta_get_u64(s, txn, META_KEYS, &keys);
	if (mrc == MDB_SUCCESS)
		mrc = meta_get_u64(s, txn, META_TOMBSTONES, &tombs);
	if (mrc != MDB_SUCCESS && mrc != MDB_NOTFOUND)
		goto fail;
	mrc = mdb_txn_commit(txn);
	if (mrc != MDB_SUCCESS)
		return map_mdb_error(mrc);
	/* The clock restarts past every version this store ever wrote. */
	kvs__hlc_init(&s->clock, hlc, NULL, NULL);
	s->clock.max_ahead_ms = s->opts.max_clock_ahead_ms;
	atomic_store(&s->keys, keys);
	atomic_store(&s->tombstones, tombs);
	return KVS_OK;
fail:
	rc = map_mdb_error(mrc);
fail_rc:
	mdb_txn_abort(txn);
	return rc;
}

static int lock_directory(kvs_store *s, const char *path)
{
	char *file = path_in(path, LOCK_FILE);
	int rc = KVS_OK;

	if (file == NULL)
		return KVS_ENOMEM;
	s->lock_fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (s->lock_fd < 0)
		rc = KVS_ESYS;
	else if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0)
		rc = errno == EWOULDBLOCK ? KVS_ELOCKED : KVS_ESYS;
	free(file);
	return rc;
}

/* Free what kvs_store_open set up, once both environments are closed. */
static void destroy(kvs_store *s)
{
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	free(s->pool);
	free(s->path);
	free((void *)s->seg);
	free((void *)s->grp);
	free((void *)s->seg_tombs);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	pthread_mutex_destroy(&s->pool_mu);
	pthread_rwlock_destroy(&s->map_lock);
	pthread_cond_destroy(&s->icv);
	pthread_mutex_destroy(&s->imu);
	pthread_mutex_destroy(&s->iapply_mu);
	pthread_rwlock_destroy(&s->imap_lock);
	free(s);
}

int kvs_store_open(kvs_store **out, const char *path,
                   const kvs_store_options *opts)
{
	kvs_store *s;
	pthread_rwlockattr_t rwattr;
	unsigned env_flags = MDB_NOTLS | MDB_NORDAHEAD | MDB_NOMETASYNC;
	int rc, mrc;

	if (out == NULL)
		return KVS_EINVAL;
	*out = NULL;
	if (path == NULL || *path == '\0')
		return KVS_EINVAL;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return KVS_ENOMEM;
	s->lock_fd = -1;
	if (opts != NULL)
		s->opts = *opts;
	else
		kvs_store_options_init(&s->opts);
	if (s->opts.map_size == 0)
		s->opts.map_size = KVS_STORE_DEFAULT_MAP_SIZE;
	if (s->opts.max_readers == 0)
		s->opts.max_readers = KVS_STORE_DEFAULT_MAX_READERS;
	if (s->opts.max_batch == 0)
		s->opts.max_batch = KVS_STORE_DEFAULT_MAX_BATCH;
	if (s->opts.max_clock_ahead_ms == 0)
		s->opts.max_clock_ahead_ms = KVS_STORE_DEFAULT_MAX_CLOCK_AHEAD_MS;
	if ((s->opts.sync != KVS_SYNC_FULL &&
	     s->opts.sync != KVS_SYNC_RELAXED) ||
	    (s->opts.max_map_size != 0 &&
	     s->opts.max_map_size < s->opts.map_size)) {
		free(s);
		return KVS_EINVAL;
	}

	pthread_rwlockattr_init(&rwattr);
	pthread_rwlockattr_setkind_np(
	        &rwattr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&s->map_lock, &rwattr);
	pthread_rwlock_init(&s->imap_lock, &rwattr);
	pthread_rwlockattr_destroy(&rwattr);
	pthread_mutex_init(&s->pool_mu, NULL);
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	pthread_mutex_init(&s->imu, NULL);
	pthread_cond_init(&s->icv, NULL);
	pthread_mutex_init(&s->iapply_mu, NULL);
	s->tail = &s->head;
	s->ilog_max = INDEX_LOG_MAX;
	s->path = strdup(path);
	if (s->path == NULL) {
		rc = KVS_ENOMEM;
		goto fail;
	}

	if (mkdir(path, 0700) != 0 && errno != EEXIST) {
		rc = errno == ENOENT || errno == ENOTDIR ? KVS_EINVAL : KVS_ESYS;
		goto fail;
	}
	rc = lock_directory(s, path);
	if (rc != KVS_OK)
		goto fail;

	s->pool_cap = s->opts.max_readers;
	s->pool = calloc(s->pool_cap, sizeof(*s->pool));
	if (s->pool == NULL) {
		rc = KVS_ENOMEM;
		goto fail;
	}
	mrc = mdb_env_create(&s->env);
	if (mrc == MDB_SUCCESS)
		mrc = mdb_env_set_maxdbs(s->env, MAX_DBS);
	if (mrc == MDB_SUCCESS)
		mrc = mdb_env_set_maxreaders(s->env, s->opts.max_readers + 1);
	if (mrc == MDB_SUCCESS)
		mrc = mdb_env_set_mapsize(s->env, s->opts.map_size);
	if (mrc == MDB_SUCCESS)
		mrc = mdb_env_open(s->env, path, env_flags, 0600);
	if (mrc != MDB_SUCCESS) {
		rc = map_mdb_error(mrc);
		goto fail;
	}
	{
		MDB_envinfo info;
		int dead = 0;

		/* The file may already be larger than the map asked for. */
		mdb_env_info(s->env, &info);
		s->map_size = info.me_mapsize;
		mdb_reader_check(s->env, &dead);
	}
	s->max_key = (size_t)mdb_env_get_maxkeysize(s->env);
	rc = open_databases(s);
	if (rc == KVS_OK)
		rc = index_open(s);
	if (rc != KVS_OK)
		goto fail;
	if (pthread_create(&s->writer, NULL, writer_main, s) != 0) {
		rc = KVS_ESYS;
		goto fail;
	}
	*out = s;
	return KVS_OK;
fail:
	index_close(s);
	if (s->env != NULL)
		mdb_env_close(s->env);
	destroy(s);
	return rc;
}

void kvs_store_close(kvs_store *s)
{
	if (s == NULL)
		return;
	pthread_mutex_lock(&s->mu);
	s->closing = 1;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
	pthread_join(s->writer, NULL);
	for (unsigned i = 0; i < s->pool_len; i++)
		mdb_txn_abort(s->pool[i]);
	mdb_env_sync(s->env, 1);
	index_close(s);
	mdb_env_close(s->env);
	destroy(s);
}

size_t kvs_store_max_key_size(const kvs_store *s)
{
	return s != NULL ? s->max_key : 0;
}

int kvs_store_stat(kvs_store *s, kvs_store_stats *st)
{
	MDB_envinfo info;
	MDB_stat mst;
	int mrc;

	if (s == NULL || st == NULL)
		return KVS_EINVAL;
	memset(st, 0, sizeof(*st));
	mrc = mdb_env_info(s->env, &info);
	if (mrc == MDB_SUCCESS)
		mrc = mdb_env_stat(s->env, &mst);
	if (mrc != MDB_SUCCESS)
		return map_mdb_error(mrc);
	st->keys = atomic_load(&s->keys);
	st->tombstones = atomic_load(&s->tombstones);
	st->used_bytes = (uint64_t)(info.me_last_pgno + 1) * mst.ms_psize;
	st->map_bytes = info.me_mapsize;
	st->commits = atomic_load(&s->commits);
	st->writes = atomic_load(&s->writes);
	st->syncs = atomic_load(&s->syncs);
	st->clock_refusals = atomic_load(&s->clock_refusals);
	st->map_grows = atomic_load(&s->grows);
	st->readers_used = info.me_numreaders;
	st->max_readers = info.me_maxreaders;
	return KVS_OK;
}

int kvs_store_backup(kvs_store *s, const char *path)
{
	int mrc;

	if (s == NULL || path == NULL || *path == '\0')
		return KVS_EINVAL;
	/* mdb_env_copy2 runs its own read transaction: keep the map from
	 * being resized under it. */
	pthread_rwlock_rdlock(&s->map_lock);
	mrc = mdb_env_copy2(s->env, path, MDB_CP_COMPACT);
	pthread_rwlock_unlock(&s->map_lock);
	if (mrc == ENOENT || mrc == ENOTDIR || mrc == EEXIST)
		return KVS_EINVAL;
	return map_mdb_error(mrc);
}
