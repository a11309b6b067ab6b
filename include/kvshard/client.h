/*
 * kvshard/client.h - reach a whole kvshard cluster through one handle.
 *
 * The client fetches the cluster's topology (GET /v1/cluster from a seed
 * node) and builds the same ring as the servers, so that each request goes
 * straight to an owner of its key: reads to an owner that is up, writes to
 * the first owner that is up (the coordinator). When an owner fails, the
 * next one is tried. The topology is fetched again when routing fails,
 * and when a server answers with a newer epoch (X-Kvshard-Epoch: always 1
 * while the topology is the config file's, so this part waits for
 * topology changes at run time).
 *
 * Threads: one kvs_client may be used from any number of threads at once;
 * each request takes a pooled connection, so N threads keep about N
 * connections per server alive. kvs_client_close() must come after every
 * other call on the handle has returned.
 *
 * Part of libkvshard's public API; include <kvshard.h> rather than this file.
 */
#ifndef KVSHARD_CLIENT_H
#define KVSHARD_CLIENT_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kvs_client kvs_client;

typedef struct kvs_client_options {
	/* Where to find the cluster: "host:port[,host:port...]" of any
	 * nodes (seeds), or a cluster config file; one of the two. With
	 * both NULL, $KVSHARD_CLUSTER or "localhost:8081" is used. */
	const char *seeds;
	const char *config_path;
	unsigned connect_timeout_ms; /* 0: 500 */
	unsigned request_timeout_ms; /* 0: 2000 */
	/* Owners tried for one request before giving up; 0: every owner. */
	unsigned max_attempts;
	/* Sent as "Authorization: Bearer <token>" when not NULL. */
	const char *token;
	/* HTTPS: the CA file (PEM) that verifies the nodes. Set, or a
	 * config file with [tls] (whose ca is then the default), the client
	 * speaks HTTPS; "https://" seeds use the system's CAs without it. */
	const char *ca_file;
} kvs_client_options;

/** Fill opts with the defaults (everything 0 or NULL). */
KVS_API void kvs_client_options_init(kvs_client_options *opts);

/**
 * Connect to a cluster: read the config file, or ask the seeds for the
 * topology (the first seed that answers wins).
 *
 * @param out    receives the handle (kvs_client_close); NULL on error.
 * @param opts   NULL for the defaults.
 * @param errbuf KVS_ERRBUF_SIZE bytes for a one-line reason; may be NULL.
 * @return KVS_OK; KVS_EINVAL (bad seeds), KVS_ECONFIG / KVS_EIO (config
 *         file), KVS_ECONNECT (no seed answered), KVS_EPROTO (a seed
 *         answered something that is not a topology), KVS_ENOMEM.
 */
KVS_API int kvs_client_open(kvs_client **out, const kvs_client_options *opts,
                            char *errbuf);

/** Close the handle and its connections; accepts NULL. */
KVS_API void kvs_client_close(kvs_client *c);

/*
 * Errors common to the calls below: KVS_EKEYSIZE (empty key), KVS_EINVAL,
 * KVS_ENOMEM, KVS_ECONNECT (no owner could be reached), KVS_ETIMEDOUT,
 * KVS_EUNAVAIL (the owners answered 503: quorum not reached), KVS_EAUTH
 * (401/403), KVS_EVALSIZE (413), KVS_EFULL (507), KVS_EPROTO (an answer
 * that makes no sense), KVS_EHTTP (any other error status).
 */

/**
 * Read a value.
 *
 * @param value     receives the value (owned, kvs_free; NULL when empty).
 * @param value_len receives its length.
 * @param stamp     receives its version; may be NULL.
 * @return KVS_OK, KVS_NOTFOUND, or an error.
 */
KVS_API int kvs_client_get(kvs_client *c, const void *key, size_t key_len,
                           void **value, size_t *value_len,
                           kvs_stamp *stamp);

/**
 * Does key have a value? (HEAD: the value is not transferred.)
 *
 * @param stamp receives the version when it exists; may be NULL.
 * @return KVS_OK (exists), KVS_NOTFOUND, or an error.
 */
KVS_API int kvs_client_exists(kvs_client *c, const void *key, size_t key_len,
                              kvs_stamp *stamp);

/**
 * Write a value, durably on W replicas when this returns KVS_OK.
 *
 * @param opts  NULL, or conditions: KVS_WRITE_IF_STAMP (compare-and-swap
 *              against opts->expect) or KVS_WRITE_IF_ABSENT (create only).
 * @param stamp receives the new version; may be NULL.
 * @return KVS_OK; KVS_ECONFLICT or KVS_EEXISTS when the condition fails;
 *         or an error. A conditional write that reached a node but got no
 *         answer is not sent to another one (it could be decided twice):
 *         KVS_ETIMEDOUT or KVS_ECONNECT then means its outcome is unknown;
 *         read the key to find out.
 */
KVS_API int kvs_client_put(kvs_client *c, const void *key, size_t key_len,
                           const void *value, size_t value_len,
                           const kvs_write_options *opts, kvs_stamp *stamp);

/**
 * Compare-and-swap: write value only if the key's version is expect.
 * Same as kvs_client_put with KVS_WRITE_IF_STAMP.
 */
KVS_API int kvs_client_cas(kvs_client *c, const void *key, size_t key_len,
                           const kvs_stamp *expect, const void *value,
                           size_t value_len, kvs_stamp *stamp);

/**
 * Delete a key (idempotent: deleting a missing key succeeds).
 *
 * @param opts NULL, or KVS_WRITE_IF_STAMP to delete only that version.
 * @return KVS_OK, KVS_ECONFLICT, or an error.
 */
KVS_API int kvs_client_delete(kvs_client *c, const void *key, size_t key_len,
                              const kvs_write_options *opts,
                              kvs_stamp *stamp);

/* A key for the multi-key calls. */
typedef struct kvs_key {
	const void *key;
	size_t len;
} kvs_key;

/* One key's outcome in kvs_client_mget / kvs_client_mput. */
typedef struct kvs_key_result {
	int rc;           /* KVS_OK, KVS_NOTFOUND, or an error */
	void *value;      /* mget: owned, freed by kvs_client_results_free */
	size_t value_len;
	kvs_stamp stamp;  /* the version read or written */
} kvs_key_result;

/**
 * Read many keys at once: one request per shard, all shards in parallel.
 *
 * @param results n results, filled in the order of keys; free the values
 *                with kvs_client_results_free().
 * @return KVS_OK when every key has its own result (some may be
 *         KVS_NOTFOUND or errors), or an error for the whole call
 *         (KVS_EINVAL, KVS_ENOMEM).
 */
KVS_API int kvs_client_mget(kvs_client *c, const kvs_key *keys, size_t n,
                            kvs_key_result *results);

/* A key and its value for kvs_client_mput. */
typedef struct kvs_kv {
	const void *key;
	size_t key_len;
	const void *value;
	size_t value_len;
} kvs_kv;

/**
 * Write many keys at once: one request per shard, in parallel. Each write
 * stands alone (there is no transaction across keys).
 *
 * @param results n results (rc and stamp), in the order of items.
 * @return as kvs_client_mget().
 */
KVS_API int kvs_client_mput(kvs_client *c, const kvs_kv *items, size_t n,
                            kvs_key_result *results);

/** Free the values of n results and zero them; accepts NULL. */
KVS_API void kvs_client_results_free(kvs_key_result *results, size_t n);

/* What to scan. Zero-initialize, then set what you need. */
typedef struct kvs_client_scan_options {
	const void *prefix; /* only keys starting with these bytes */
	size_t prefix_len;
	const void *start_after; /* continue after this key */
	size_t start_after_len;
	size_t limit;   /* most keys in this page; 0: the server's maximum */
	int values;     /* also fetch values */
} kvs_client_scan_options;

/**
 * One page of a cluster-wide scan, in ascending byte order of keys,
 * merged from every shard.
 *
 * cb receives each record (value only when opts->values; borrowed for the
 * call). When more keys may follow, *next receives the key to pass as
 * start_after for the next page (owned, kvs_free); when the scan is over,
 * *next is NULL.
 *
 * @return KVS_OK, or an error.
 */
KVS_API int kvs_client_scan(kvs_client *c, const kvs_client_scan_options *opts,
                            kvs_record_cb cb, void *ud, void **next,
                            size_t *next_len);

/** Fetch the topology again from any node. */
KVS_API int kvs_client_refresh(kvs_client *c);

/** The topology's epoch as last fetched. */
KVS_API uint64_t kvs_client_epoch(kvs_client *c);

/* One shard as the client knows it, plus what its /v1/status says. */
typedef struct kvs_shard_info {
	char name[65];
	uint32_t idx;
	char address[262];
	double weight;
	int up;              /* answered /v1/status just now */
	uint64_t keys;       /* from /v1/status when up */
	uint64_t store_bytes;
	uint64_t uptime_s;
} kvs_shard_info;

/**
 * The shards of the cluster with their status, asked of every shard in
 * parallel.
 *
 * @param out receives an array (owned, kvs_free) of *n entries.
 * @return KVS_OK (shards that did not answer have up = 0), or an error.
 */
KVS_API int kvs_client_shards(kvs_client *c, kvs_shard_info **out, size_t *n);

/**
 * Add a shard to the cluster's topology (POST /v1/cluster/shards: a
 * cluster keeping its topology in etcd; the admin role). The first node
 * that answers decides; the client then fetches the topology again.
 *
 * @param weight  its weight: 0 (it owns nothing, and routes requests),
 *                or more (it joins with none, and its share of the data
 *                moves to it once its server runs: a move)
 * @param epoch   receives the epoch written; may be NULL.
 * @param errbuf  KVS_ERRBUF_SIZE bytes for the server's reason; may be
 *                NULL.
 * @return KVS_OK; KVS_ESTATIC (the topology is the file's),
 *         KVS_ETOPOLOGY (the name or address is taken, or a move is under
 *         way), KVS_EFORBIDDEN, or a failure to reach any node.
 */
KVS_API int kvs_client_add_shard(kvs_client *c, const char *name,
                                 const char *address, double weight,
                                 uint64_t *epoch, char *errbuf);

/**
 * Remove a shard from the topology (DELETE /v1/cluster/shards/{name}),
 * as kvs_client_add_shard.
 *
 * A shard that holds data leaves once the others have copied it (a
 * move).
 *
 * @return KVS_OK; KVS_NOTFOUND (no such shard); KVS_ETOPOLOGY (the last
 *         one, or a move is under way); others as above.
 */
KVS_API int kvs_client_remove_shard(kvs_client *c, const char *name,
                                    uint64_t *epoch, char *errbuf);

/**
 * The move under way, as a node answers GET /v1/cluster/rebalance
 * (docs/api.md): *json receives its JSON text (kvs_free() it).
 *
 * @return KVS_OK; KVS_ESTATIC (the topology is the file's);
 *         KVS_EFORBIDDEN; or a failure to reach any node.
 */
KVS_API int kvs_client_rebalance(kvs_client *c, char **json, char *errbuf);

/**
 * Pause, resume or cancel the move under way (POST
 * /v1/cluster/rebalance/{action}). Paused, nothing moves on (no copy, no
 * step) until it is resumed; cancelled (before reads have moved to the
 * new owners), the weights go back to what they were.
 *
 * @param action  "pause", "resume" or "cancel".
 * @return KVS_OK (also when it was paused, or running, already: *epoch
 *         is then the current one); KVS_ETOPOLOGY (no move runs, or too
 *         late to cancel); KVS_EINVAL; others as kvs_client_add_shard.
 */
KVS_API int kvs_client_rebalance_control(kvs_client *c, const char *action,
                                         uint64_t *epoch, char *errbuf);

#ifdef __cplusplus
}
#endif

#endif /* KVSHARD_CLIENT_H */
