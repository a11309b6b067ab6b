/*
 * kvshard/store.h - a node's durable local storage (LMDB underneath).
 *
 * A store is one directory holding one LMDB environment. Every record
 * carries a version stamp and flags; a delete writes a tombstone. Writes
 * from all threads are committed together (group commit): each write call
 * returns after the transaction holding it is durable on disk.
 *
 * Threads: a kvs_store handle may be used from any number of threads at
 * once, except kvs_store_close(), which must be called once, after every
 * other call on the handle has returned (including callbacks of
 * asynchronous writes). Never use a store in a child process after fork().
 *
 * Part of libkvshard's public API; include <kvshard.h> rather than this file.
 */
#ifndef KVSHARD_STORE_H
#define KVSHARD_STORE_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kvs_store kvs_store;

/* Durability of acknowledged writes. */
typedef enum kvs_sync_mode {
	/* A write returns after its data and the metadata pointing at it are
	 * on disk: it survives power loss. The default. */
	KVS_SYNC_FULL = 0,
	/* A write returns after its data is on disk, the metadata that makes
	 * it visible follows with the next commit: after power loss the store
	 * is intact but the last transaction may be missing. */
	KVS_SYNC_RELAXED = 1
} kvs_sync_mode;

/* Defaults, documented once. */
#define KVS_STORE_DEFAULT_MAP_SIZE ((size_t)1 << 30)   /* 1 GiB */
#define KVS_STORE_DEFAULT_MAX_READERS 512u
#define KVS_STORE_DEFAULT_MAX_BATCH 2048u
/* Furthest a version from elsewhere may be ahead of the wall clock. */
#define KVS_STORE_DEFAULT_MAX_CLOCK_AHEAD_MS 5000u
/* Largest value the store accepts (LMDB stores up to 4 GiB per record). */
#define KVS_STORE_MAX_VALUE_SIZE ((size_t)1 << 31)

typedef struct kvs_store_options {
	/* Initial map size in bytes; the store doubles it when it fills.
	 * 0: KVS_STORE_DEFAULT_MAP_SIZE. */
	size_t map_size;
	/* Ceiling for growth; writes fail with KVS_EFULL beyond it.
	 * 0: no ceiling other than the address space and the disk. */
	size_t max_map_size;
	/* Reader slots (concurrent reads and scans). 0: default. */
	unsigned max_readers;
	/* Most writes committed in one transaction. 0: default. */
	unsigned max_batch;
	kvs_sync_mode sync;
	/* Writer id stamped on writes made through this store (the shard's
	 * idx in the cluster config). */
	uint32_t shard_id;
	/* A record given to kvs_store_apply() whose version is further
	 * ahead of this machine's wall clock than this is refused with
	 * KVS_ECLOCK (and counted), never adopted: one planted or skewed
	 * version would otherwise hide every later write of its key.
	 * 0: KVS_STORE_DEFAULT_MAX_CLOCK_AHEAD_MS. */
	unsigned max_clock_ahead_ms;
} kvs_store_options;

/**
 * Fill opts with the defaults.
 */
KVS_API void kvs_store_options_init(kvs_store_options *opts);

/**
 * Open (creating if needed) the store in directory path.
 *
 * The directory is created (mode 0700) if missing. A store may be open in
 * one process at a time.
 *
 * @param out  receives the handle; NULL on failure.
 * @param opts NULL for the defaults.
 * @return KVS_OK; KVS_EINVAL (bad path or options), KVS_ELOCKED (open in
 *         another process), KVS_EVERSION (unknown format), KVS_ECORRUPT,
 *         KVS_EIO, KVS_ESYS, KVS_ENOMEM.
 */
KVS_API int kvs_store_open(kvs_store **out, const char *path,
                           const kvs_store_options *opts);

/**
 * Finish pending writes, then close the store and free the handle.
 * Accepts NULL. See the thread rule at the top of this file.
 */
KVS_API void kvs_store_close(kvs_store *s);

/**
 * Largest key the store accepts, in bytes (LMDB's limit, 511 by default).
 */
KVS_API size_t kvs_store_max_key_size(const kvs_store *s);

/* Flags for reads and scans. */
#define KVS_READ_TOMBSTONES 0x1u /* report tombstones instead of hiding them */

/**
 * Read one record without copying it: cb receives pointers into the
 * store's memory map, valid only until cb returns.
 *
 * cb must not call other functions of this store.
 *
 * @param flags KVS_READ_TOMBSTONES or 0.
 * @return KVS_OK after calling cb once; KVS_NOTFOUND (cb not called) when
 *         the key has no record, or only a tombstone and flags do not ask
 *         for tombstones; KVS_EKEYSIZE, KVS_EBUSY (reader slots exhausted),
 *         KVS_ECORRUPT, KVS_EIO.
 */
KVS_API int kvs_store_read(kvs_store *s, const void *key, size_t key_len,
                           unsigned flags, kvs_record_cb cb, void *ud);

/**
 * Read one value into a new buffer.
 *
 * @param value     receives a buffer owned by the caller, freed with
 *                  kvs_free(); NULL for an empty value. Untouched unless
 *                  KVS_OK is returned.
 * @param value_len receives the length.
 * @param stamp     receives the record's version stamp; may be NULL.
 * @return KVS_OK, KVS_NOTFOUND, or an error as kvs_store_read().
 */
KVS_API int kvs_store_get(kvs_store *s, const void *key, size_t key_len,
                          void **value, size_t *value_len, kvs_stamp *stamp);

/**
 * Store a value under key, stamped with a new version newer than any the
 * store has seen. Returns after the write is durable (see kvs_sync_mode).
 *
 * Values are arbitrary bytes; an empty value is a value, not a delete.
 *
 * @param opts  NULL for an unconditional write.
 * @param stamp receives the new version; may be NULL.
 * @return KVS_OK; KVS_EKEYSIZE (0 bytes or above kvs_store_max_key_size),
 *         KVS_EVALSIZE, KVS_EEXISTS, KVS_ECONFLICT (conditions of opts),
 *         KVS_EFULL (map ceiling reached or disk full), KVS_EIO,
 *         KVS_ECLOSED, KVS_ENOMEM.
 */
KVS_API int kvs_store_put(kvs_store *s, const void *key, size_t key_len,
                          const void *value, size_t value_len,
                          const kvs_write_options *opts, kvs_stamp *stamp);

/**
 * Delete key by writing a tombstone with a new version. The tombstone is
 * written even when no live value exists, so that replicas converge.
 *
 * @return KVS_OK if a live value was deleted, KVS_NOTFOUND if there was
 *         none (the tombstone is written all the same unless opts has
 *         conditions, which then fail as for kvs_store_put), or an error as
 *         kvs_store_put().
 */
KVS_API int kvs_store_delete(kvs_store *s, const void *key, size_t key_len,
                             const kvs_write_options *opts,
                             kvs_stamp *stamp);

/**
 * Write rec (value or, with KVS_RECORD_TOMBSTONE, a tombstone) with the
 * stamp it carries, only if that stamp is newer than the stored one: the
 * write a replica applies. The store's clock advances past rec->stamp.
 *
 * @param applied receives 1 if written, 0 if the stored record was as new
 *                or newer; may be NULL.
 * @return KVS_OK (written or not), KVS_ECLOCK (rec->stamp is further ahead
 *         of the wall clock than max_clock_ahead_ms: nothing written, the
 *         clock unchanged), or an error as kvs_store_put().
 */
KVS_API int kvs_store_apply(kvs_store *s, const kvs_record *rec,
                            int *applied);

/**
 * Completion of an asynchronous write.
 *
 * Called exactly once, from the store's writer thread, after the write is
 * durable or has failed. It must return quickly and must not wait for
 * another write of this store.
 *
 * @param rc      what the synchronous call would have returned.
 * @param stamp   the record's version on success, else {0, 0}.
 * @param applied for kvs_store_apply_async(): 1 if written.
 */
typedef void (*kvs_write_cb)(void *ud, int rc, const kvs_stamp *stamp,
                             int applied);

/**
 * Asynchronous forms of kvs_store_put(), kvs_store_delete() and
 * kvs_store_apply(). key, value and rec's buffers must stay valid until cb
 * is called; opts is copied.
 *
 * @return KVS_OK if queued (cb will be called), or an error (KVS_EKEYSIZE,
 *         KVS_EVALSIZE, KVS_ECLOSED, KVS_ENOMEM, KVS_EINVAL; KVS_ECLOCK for
 *         an apply) with cb never called.
 */
KVS_API int kvs_store_put_async(kvs_store *s, const void *key,
                                size_t key_len, const void *value,
                                size_t value_len,
                                const kvs_write_options *opts,
                                kvs_write_cb cb, void *ud);
KVS_API int kvs_store_delete_async(kvs_store *s, const void *key,
                                   size_t key_len,
                                   const kvs_write_options *opts,
                                   kvs_write_cb cb, void *ud);
KVS_API int kvs_store_apply_async(kvs_store *s, const kvs_record *rec,
                                  kvs_write_cb cb, void *ud);

/*
 * What to scan. Zero-initialize, then set what you need: an all-zero
 * struct scans every live record in key order.
 */
typedef struct kvs_scan_options {
	const void *prefix; /* only keys starting with these bytes */
	size_t prefix_len;
	const void *start; /* begin after this key (at it with KVS_SCAN_INCLUSIVE) */
	size_t start_len;
	const void *end; /* stop before this key; NULL: no end */
	size_t end_len;
	size_t limit; /* most records reported; 0: no limit */
	unsigned flags; /* KVS_READ_TOMBSTONES, KVS_SCAN_INCLUSIVE */
} kvs_scan_options;

#define KVS_SCAN_INCLUSIVE 0x100u /* start is the first key, not the one before */

/**
 * Report records in ascending byte order of their keys.
 *
 * The scan reads one consistent snapshot. cb must not call write functions
 * of this store. A long scan holds a reader slot and delays the growth of a
 * full map: keep limits reasonable.
 *
 * @param opts NULL for everything.
 * @return KVS_OK (also when cb stopped the scan), KVS_EBUSY, KVS_ECORRUPT,
 *         KVS_EIO.
 */
KVS_API int kvs_store_scan(kvs_store *s, const kvs_scan_options *opts,
                           kvs_record_cb cb, void *ud);

typedef struct kvs_store_stats {
	uint64_t keys;          /* live keys */
	uint64_t tombstones;    /* deleted keys still remembered */
	uint64_t used_bytes;    /* pages in use, in bytes */
	uint64_t map_bytes;     /* current map size */
	uint64_t commits;       /* write transactions committed since open */
	uint64_t writes;        /* writes committed since open */
	uint64_t syncs;         /* explicit syncs since open (besides commits) */
	uint64_t map_grows;     /* times the map was grown since open */
	unsigned readers_used;  /* reader slots in use */
	unsigned max_readers;
	uint64_t clock_refusals; /* applies refused: version too far ahead */
} kvs_store_stats;

/**
 * Current figures of the store.
 *
 * @return KVS_OK, KVS_EIO.
 */
KVS_API int kvs_store_stat(kvs_store *s, kvs_store_stats *st);

/**
 * Write a consistent, compacted copy of the store into directory path
 * (which must exist and be empty) while the store stays in use. The copy
 * holds the records only: a store opened from it rebuilds its
 * anti-entropy index at open (one pass over the records).
 *
 * @return KVS_OK, KVS_EIO, KVS_EINVAL.
 */
KVS_API int kvs_store_backup(kvs_store *s, const char *path);

#ifdef __cplusplus
}
#endif

#endif /* KVSHARD_STORE_H */
