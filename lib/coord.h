/*
 * coord.h - the topology kept in etcd, and the nodes registered there
 * (internal).
 *
 * With [coordination], the cluster's topology (shards, addresses,
 * weights, N, W, R, an epoch) is one JSON document at <prefix>/topology,
 * changed only by compare-and-swap on its revision. The first node to
 * start with an empty prefix writes it from its file; every later node
 * takes etcd's, and says so when its own file differs. Each serving node
 * holds a key <prefix>/nodes/<name> under a lease of lease_ttl_s that a
 * thread renews every third of it: the key disappears when the node stops,
 * or dies and its lease runs out. (Changing the topology at runtime is not
 * built yet: see docs/operations.md.)
 */
#ifndef KVS_COORD_H
#define KVS_COORD_H

#include <stddef.h>
#include <stdint.h>

#include "kvshard/config.h"

typedef struct kvs__coord kvs__coord;

typedef void (*kvs__coord_log_fn)(void *ud, int level, const char *msg);

/**
 * Reach etcd at cfg's [coordination] endpoints and agree on the topology:
 * seed it from cfg when etcd has none, else make etcd's cfg's (shards, N,
 * W, R; cfg's pointers to shards change). log (may be NULL) hears why.
 *
 * @return KVS_OK; KVS_ECONNECT, KVS_ETIMEDOUT (etcd unreachable),
 *         KVS_ECONFIG (etcd's topology is not valid), KVS_EPROTO,
 *         KVS_ENOMEM; err says more.
 */
int kvs__coord_open(kvs__coord **out, kvs_config *cfg, kvs__coord_log_fn log,
                    void *log_ud, char *err, size_t err_len);

/** The epoch of the topology agreed on. */
uint64_t kvs__coord_epoch(const kvs__coord *co);

/**
 * Register shard name, served at address, and keep it registered (a
 * thread renews its lease, and registers again if the lease was lost).
 * If etcd cannot take it now, the thread keeps trying (logged).
 *
 * @return KVS_OK, KVS_ENOMEM, KVS_ESYS.
 */
int kvs__coord_register(kvs__coord *co, const char *name,
                        const char *address);

/** Whether shard name was registered when last looked (every renewal). */
int kvs__coord_is_registered(kvs__coord *co, const char *name);

/** Deregister (revoke the lease) and stop renewing; the other calls
 * still answer. NULL is fine. */
void kvs__coord_leave(kvs__coord *co);

/** Leave, then free. NULL is fine. */
void kvs__coord_close(kvs__coord *co);

#endif /* KVS_COORD_H */
