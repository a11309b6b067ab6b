/*
 * node.h - one cluster member (internal; the server is built on it).
 *
 * A node owns its store, the ring built from the config, a transport to
 * its peers and its view of their health. It decides where a key's
 * requests go (kvs__node_route), and, for keys it owns, coordinates quorum
 * reads and replicated writes. Every operation that may wait on a peer or
 * on the disk is asynchronous: the callback runs on the store's writer
 * thread or the transport's thread, possibly before the call returns.
 *
 * The peer protocol (served by kvshard-server under /internal):
 *   GET /internal/kv/{key}  -> 200 value with X-Kvshard-Stamp and
 *                              X-Kvshard-Tombstone: 0|1, or 404 (no record)
 *   PUT /internal/kv/{key}  <- value, X-Kvshard-Stamp, X-Kvshard-Tombstone:
 *                              apply if newer -> 200 {"applied": bool}
 */
#ifndef KVS_NODE_H
#define KVS_NODE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "kvshard/config.h"
#include "kvshard/ring.h"
#include "kvshard/store.h"
#include "transport.h"

#define KVS_HDR_SHARD "X-Kvshard-Shard"
#define KVS_HDR_HOP "X-Kvshard-Hop"
#define KVS_HDR_STAMP "X-Kvshard-Stamp"
#define KVS_HDR_TOMBSTONE "X-Kvshard-Tombstone"
#define KVS_HDR_EPOCH "X-Kvshard-Epoch"
#define KVS_HDR_SECRET "X-Kvshard-Secret"

typedef struct kvs__node kvs__node;

/* Counters the server exports in /metrics. */
typedef struct kvs__node_counters {
	_Atomic uint64_t forwarded;      /* client requests sent to a peer */
	_Atomic uint64_t replica_writes; /* writes sent to replicas */
	_Atomic uint64_t replica_reads;  /* reads sent to replicas */
	_Atomic uint64_t read_repairs;   /* stale replicas repaired */
	_Atomic uint64_t peer_errors;    /* failed peer requests */
	_Atomic uint64_t quorum_failures;
} kvs__node_counters;

/**
 * Open the node for shard `shard` of cfg (borrowed: must outlive the node),
 * with its store in directory store_path.
 *
 * @return KVS_OK; KVS_EINVAL (unknown shard), or an error of
 *         kvs_store_open / kvs_ring_new; errbuf gets a one-line reason.
 */
int kvs__node_open(kvs__node **out, const kvs_config *cfg, const char *shard,
                   const char *store_path, char *errbuf, size_t errlen);

/** Stop talking to peers, close the store, free. Accepts NULL. */
void kvs__node_close(kvs__node *n);

kvs_store *kvs__node_store(kvs__node *n);
const kvs_config *kvs__node_config(const kvs__node *n);
const kvs_ring *kvs__node_ring(const kvs__node *n);
kvs__transport *kvs__node_transport(kvs__node *n);
kvs__node_counters *kvs__node_counters_of(kvs__node *n);
/** Index of this node's shard in the config. */
size_t kvs__node_self(const kvs__node *n);
/** The topology epoch (1 for a topology read from the config). */
uint64_t kvs__node_epoch(const kvs__node *n);

/* Where a key lives, as seen from this node. */
typedef struct kvs__route {
	size_t n;                           /* owners found (N) */
	size_t owners[KVS_RING_MAX_OWNERS]; /* shard indexes, preference order */
	int self;                           /* position of this node, or -1 */
} kvs__route;

void kvs__node_route(const kvs__node *n, const void *key, size_t key_len,
                     kvs__route *r);

/**
 * The owner that coordinates writes: the first owner not known to be
 * down (this node counts as up), or the primary if all seem down.
 */
size_t kvs__node_coordinator(kvs__node *n, const kvs__route *r);

/** Is shard i believed up (always 1 for this node)? */
int kvs__node_peer_up(kvs__node *n, size_t i);

/**
 * Record the outcome of a request to shard i: connection failures and
 * timeouts mark it down for a while (doubling up to a limit), any answer
 * marks it up.
 */
void kvs__node_peer_result(kvs__node *n, size_t i, int rc);

/** "http://address" of shard i (borrowed). */
const char *kvs__node_base_url(const kvs__node *n, size_t i);

/**
 * Completion of a quorum read. rec is borrowed for the call; rc is KVS_OK
 * (rec is the newest live record), KVS_NOTFOUND (absent or deleted;
 * rec may carry a tombstone), or KVS_EUNAVAIL (fewer than R replicas
 * answered) or a store error.
 */
typedef void (*kvs__node_read_cb)(void *ud, int rc, const kvs_record *rec);

/**
 * Read key from R replicas (this node, an owner, is one of them), answer
 * with the newest version, and repair replicas that answered with an older
 * one. key is copied.
 *
 * @return KVS_OK (cb will be called), or an error (cb not called).
 */
int kvs__node_read(kvs__node *n, const void *key, size_t key_len,
                   const kvs__route *r, kvs__node_read_cb cb, void *ud);

/**
 * Completion of a replicated write. stamp is the version written (on
 * KVS_OK, and also on KVS_EUNAVAIL when the coordinator stored it but too
 * few replicas acknowledged); acks counts the replicas that have it.
 */
typedef void (*kvs__node_write_cb)(void *ud, int rc, const kvs_stamp *stamp,
                                   unsigned acks);

/**
 * Write (or, with is_delete, delete) key on its N owners from this node,
 * the coordinator, and answer after W durable acknowledgements. With
 * conditions in opts the write is first decided atomically in the local
 * store, then replicated. key and value must stay valid until cb.
 *
 * @return KVS_OK (cb will be called) or an error (cb not called).
 */
int kvs__node_write(kvs__node *n, const void *key, size_t key_len,
                    const void *value, size_t value_len, int is_delete,
                    const kvs_write_options *opts, const kvs__route *r,
                    kvs__node_write_cb cb, void *ud);

/**
 * Send a request to shard i asynchronously, tracking its health. cb owns
 * the response. Adds the cluster secret header when one is configured.
 *
 * @return KVS_OK or an error (cb not called).
 */
int kvs__node_send(kvs__node *n, size_t i, kvs__http_request *req,
                   kvs__http_cb cb, void *ud);

/** Parse the stamp and tombstone headers of a peer's answer. */
int kvs__node_parse_record_headers(const kvs__http_response *resp,
                                   kvs_stamp *stamp, unsigned *flags);

#endif /* KVS_NODE_H */
