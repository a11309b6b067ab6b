/*
 * etcd.h - a small client of etcd's v3 JSON gateway (internal).
 *
 * What coordination needs, synchronously, over the transport's pool of
 * curl handles: read a key with its revision, write one only if its
 * revision is still the one read (compare-and-swap), leases (grant,
 * renew, revoke) and keys bound to them, and the keys under a prefix.
 * Keys and values are bytes (base64 on the wire). Each call tries the
 * endpoints in turn, starting from the last one that answered, and moves
 * on only when one cannot be reached or does not answer in time.
 */
#ifndef KVS_ETCD_H
#define KVS_ETCD_H

#include <stddef.h>
#include <stdint.h>

typedef struct kvs__etcd kvs__etcd;

/**
 * A client of the etcd cluster at endpoints ("host:port", copied).
 * timeout_ms bounds each request to one endpoint.
 *
 * @return KVS_OK, KVS_EINVAL, KVS_ENOMEM, KVS_ESYS.
 */
int kvs__etcd_new(kvs__etcd **out, const char *const *endpoints, size_t n,
                  unsigned timeout_ms);
void kvs__etcd_free(kvs__etcd *e);

/**
 * Read key: *value (malloc'ed, NUL-terminated, *len bytes before it) and
 * its mod_revision.
 *
 * @return KVS_OK, KVS_NOTFOUND, or a failure (below).
 */
int kvs__etcd_get(kvs__etcd *e, const char *key, char **value, size_t *len,
                  int64_t *mod_rev);

/**
 * Write key = value if its mod_revision is still rev (rev 0: if the key
 * does not exist). *new_rev (may be NULL): the revision written.
 *
 * @return KVS_OK, KVS_ECONFLICT (it changed, or exists), or a failure.
 */
int kvs__etcd_put_if(kvs__etcd *e, const char *key, const void *value,
                     size_t len, int64_t rev, int64_t *new_rev);

/** Write key = value, bound to lease (0: none). */
int kvs__etcd_put(kvs__etcd *e, const char *key, const void *value,
                  size_t len, int64_t lease);

/** A new lease of ttl_s seconds: *id. */
int kvs__etcd_lease_grant(kvs__etcd *e, unsigned ttl_s, int64_t *id);

/**
 * Renew lease id for its TTL.
 *
 * @return KVS_OK, KVS_NOTFOUND (it expired: its keys are gone), or a
 *         failure.
 */
int kvs__etcd_lease_keepalive(kvs__etcd *e, int64_t id);

/** End lease id now (its keys go with it). */
int kvs__etcd_lease_revoke(kvs__etcd *e, int64_t id);

/* One key under a prefix: cb returns non-zero to stop. */
typedef int (*kvs__etcd_kv_cb)(void *ud, const char *key, size_t key_len,
                               const char *value, size_t value_len);

/** The keys under prefix, in key order (at most 10,000). */
int kvs__etcd_list(kvs__etcd *e, const char *prefix, kvs__etcd_kv_cb cb,
                   void *ud);

/*
 * Failures of every call: KVS_ECONNECT (no endpoint could be reached),
 * KVS_ETIMEDOUT, KVS_EPROTO (an answer that is not etcd's), KVS_EHTTP
 * (etcd refused the request), KVS_ENOMEM.
 */

#endif /* KVS_ETCD_H */
