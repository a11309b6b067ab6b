/*
 * store_internal.h - store functions for other modules of the library
 * (not part of the public API).
 */
#ifndef KVS_STORE_INTERNAL_H
#define KVS_STORE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "hlc.h"
#include "kvshard/ring.h"
#include "kvshard/store.h"

/* Most versions one condition may list (HTTP If-Match: "a", "b", ...). */
#define KVS__MAX_EXPECT 16

/*
 * The conditions of a write: kvs_write_options, with a list of versions
 * instead of one. With KVS_WRITE_IF_STAMP the write happens only if the
 * live value's version is one of expect[0..n_expect) (none: never).
 */
typedef struct kvs__cond {
	unsigned flags; /* KVS_WRITE_* */
	unsigned n_expect;
	kvs_stamp expect[KVS__MAX_EXPECT];
} kvs__cond;

/* The conditions of public write options (NULL: none). */
void kvs__cond_from_options(kvs__cond *c, const kvs_write_options *opts);

/**
 * Judge conditions against the live value's version (NULL: no live value).
 *
 * @return KVS_OK (the write may go on), KVS_EEXISTS, KVS_ECONFLICT.
 */
int kvs__cond_check(const kvs__cond *c, const kvs_stamp *live);

/**
 * kvs_store_put_async / kvs_store_delete_async with kvs__cond conditions
 * (copied). Same contract otherwise.
 */
int kvs__store_write_async(kvs_store *s, int is_delete, const void *key,
                           size_t key_len, const void *value,
                           size_t value_len, const kvs__cond *cond,
                           kvs_write_cb cb, void *ud);

/** The synchronous form of kvs__store_write_async. */
int kvs__store_write(kvs_store *s, int is_delete, const void *key,
                     size_t key_len, const void *value, size_t value_len,
                     const kvs__cond *cond, kvs_stamp *stamp);

/**
 * Writes refused with KVS_EFULL since the store was opened: *map because
 * the map reached max_map_size, *fs because the filesystem was full.
 * Any thread; s may be NULL (zeros).
 */
void kvs__store_full_writes(kvs_store *s, uint64_t *map, uint64_t *fs);

/** A new reading of the store's clock (for stamps made outside it). */
uint64_t kvs__store_clock_now(kvs_store *s);

/**
 * Read wall-clock time from wall(ud) from now on (the deterministic
 * simulation of tests/test_node.c runs every store on its virtual time).
 * Call it right after opening, before any write.
 */
void kvs__store_set_wall(kvs_store *s, kvs__wall_fn wall, void *ud);

/*
 * Anti-entropy. The ring's hash space is cut in KVS__AAE_SEGMENTS
 * segments (by the top 16 bits of a key's ring hash); each segment's
 * digest is the XOR of kvs__record_hash() of its records (tombstones
 * too), kept up to date by every write, and its records' versions can be
 * listed without a scan of the store.
 */
#define KVS__AAE_SEGMENTS KVS_RING_SLOTS /* the segments are the slots */
#define KVS__AAE_SEGMENT_OF(hash) KVS_RING_SLOT_OF(hash)

uint64_t kvs__record_hash(const void *key, size_t key_len,
                          const kvs_stamp *stamp, unsigned flags);

/**
 * Past how many bytes of changes waiting for the index the writer applies
 * them itself (default 64 MiB; tests lower it to run that path).
 */
void kvs__store_set_index_log_max(kvs_store *s, size_t bytes);

/** The digest of segment seg (as of the last commit). */
uint64_t kvs__store_segment_digest(kvs_store *s, uint32_t seg);

/** The XOR of the digests of segments first .. first + count - 1 (those
 * that exist), in time proportional to count / 256 + 256. */
uint64_t kvs__store_segments_fold(kvs_store *s, uint32_t first,
                                  uint32_t count);

/* One record of a segment: its key and version, flags KVS_RECORD_*;
 * return non-zero to stop. */
typedef int (*kvs__seg_cb)(void *ud, const void *key, size_t key_len,
                           const kvs_stamp *stamp, unsigned flags);

/** The records of segment seg, in one read transaction. */
int kvs__store_segment_scan(kvs_store *s, uint32_t seg, kvs__seg_cb cb,
                            void *ud);

/** Tombstones in segment seg (as of the last commit). */
uint32_t kvs__store_segment_tombstones(kvs_store *s, uint32_t seg);

/**
 * The first of segments from, from + 1, ... (wrapping; at most look of
 * them) that holds tombstones, or KVS__AAE_SEGMENTS if none does.
 * *looked: how many were looked at, the one found included.
 */
uint32_t kvs__store_next_tombstones(kvs_store *s, uint32_t from,
                                    unsigned look, unsigned *looked);

/** Tombstones in the store (as of the last commit). */
uint64_t kvs__store_tombstones(kvs_store *s);

/**
 * Delete key's tombstone for good, if it is still the one of version
 * stamp (a later write, or another tombstone, stays). With cb,
 * asynchronously (applied: 1 if purged; key must live until cb);
 * without, synchronously: KVS_OK if purged, KVS_NOTFOUND if not.
 */
int kvs__store_purge(kvs_store *s, const void *key, size_t key_len,
                     const kvs_stamp *stamp, kvs_write_cb cb, void *ud);

/**
 * Delete key's record for good (no tombstone), if it is still the one of
 * version stamp: a record this node no longer owns. As kvs__store_purge
 * otherwise.
 */
int kvs__store_drop(kvs_store *s, const void *key, size_t key_len,
                    const kvs_stamp *stamp, kvs_write_cb cb, void *ud);

/*
 * The hints database: opaque keys and values beside the records, written
 * through the same writer (so in the same group commits) and never seen
 * by reads or scans of records. The node keeps its hinted handoff there.
 */

/**
 * Write (remove 0) or delete (remove 1) one hint. With cb, asynchronously
 * as kvs_store_put_async (key and value must live until cb); without,
 * synchronously.
 */
int kvs__store_hint_write(kvs_store *s, int remove, const void *key,
                          size_t key_len, const void *value,
                          size_t value_len, kvs_write_cb cb, void *ud);

/* One hint; return non-zero to stop the scan. The bytes live until it
 * returns. */
typedef int (*kvs__hint_cb)(void *ud, const void *key, size_t key_len,
                            const void *value, size_t value_len);

/** Walk the hints in key order from the first key >= from (from_len 0:
 * from the start), in one read transaction. */
int kvs__store_hints_scan(kvs_store *s, const void *from, size_t from_len,
                          kvs__hint_cb cb, void *ud);

#endif
