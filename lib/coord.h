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
 * or dies and its lease runs out.
 *
 * Changes: kvs__coord_change edits the document by compare-and-swap (the
 * epoch goes up by one each time), and kvs__coord_watch hands every node
 * each newer epoch it finds there. What a change may be (only those that
 * move no data, in this version) is the caller's to decide.
 */
#ifndef KVS_COORD_H
#define KVS_COORD_H

#include <stddef.h>
#include <stdint.h>

#include "kvshard/config.h"

struct cJSON; /* cJSON's: the caller of kvs__coord_change includes it */

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

/* How often kvs__coord_watch looks at etcd's topology. */
#define KVS__COORD_WATCH_MS 500u

/* A newer topology: parsed as a config of its own (cb owns it:
 * kvs_config_free) with its epoch. 0 when applied; otherwise it is
 * handed over again at the next look. */
typedef int (*kvs__coord_topology_fn)(void *ud, kvs_config *topology,
                                      uint64_t epoch);

/**
 * Look at etcd's topology every KVS__COORD_WATCH_MS on a thread of its
 * own and call cb there for each epoch newer than the last one agreed on
 * or applied, in order (a document that is not valid is logged and
 * skipped). Stops with kvs__coord_leave.
 *
 * @return KVS_OK, KVS_ESYS.
 */
int kvs__coord_watch(kvs__coord *co, kvs__coord_topology_fn cb, void *ud);

/* The longest kvs__coord_change tries (then KVS_ETIMEDOUT), beside the
 * last etcd call it started. */
#define KVS__COORD_CHANGE_MS 10000u

/* An edit of the topology document (doc: its JSON, format 1, epoch left
 * to the caller): KVS_OK, or an error code with the reason in err. */
typedef int (*kvs__coord_edit_fn)(void *ud, struct cJSON *doc, char *err,
                                  size_t err_len);

/**
 * Change etcd's topology: read it, let edit change it, check the result
 * as a file's topology is checked, and write it with the next epoch if it
 * did not change meanwhile (else read it again and edit again, a few
 * times). *epoch: the epoch written.
 *
 * @return KVS_OK; edit's error; KVS_ECONFIG (the result is not a valid
 *         topology); KVS_ECONFLICT (it kept changing); a failure to
 *         reach etcd. err says why.
 */
int kvs__coord_change(kvs__coord *co, kvs__coord_edit_fn edit, void *ud,
                      uint64_t *epoch, char *err, size_t err_len);

/** etcd's topology document as the watch last read it (*text:
 * malloc'ed): KVS_OK, KVS_NOTFOUND (not read yet), KVS_ENOMEM. */
int kvs__coord_read(kvs__coord *co, char **text, size_t *len);

/**
 * Say in etcd (the node's registration) that this node runs epoch: every
 * request it serves from now on does, those of older epochs have ended.
 *
 * @return KVS_OK, or a failure to reach etcd (said again at the next
 *         renewal).
 */
int kvs__coord_applied(kvs__coord *co, uint64_t epoch);

/**
 * How many registered nodes run an epoch older than epoch (*behind),
 * and the name of one of them (who).
 *
 * @return KVS_OK, or a failure to reach etcd.
 */
int kvs__coord_all_applied(kvs__coord *co, uint64_t epoch, size_t *behind,
                           char *who, size_t who_len);

/** Whether shard name was registered when last looked (every renewal). */
int kvs__coord_is_registered(kvs__coord *co, const char *name);

/** Deregister (revoke the lease) and stop renewing; the other calls
 * still answer. NULL is fine. */
void kvs__coord_leave(kvs__coord *co);

/** Leave, then free. NULL is fine. */
void kvs__coord_close(kvs__coord *co);

#endif /* KVS_COORD_H */
