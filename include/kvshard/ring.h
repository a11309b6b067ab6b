/*
 * kvshard/ring.h - placement: which shards own a key.
 *
 * The placement rule is a specification (docs/ring.md, with test vectors):
 * a key's XXH3-64 hash falls in one of KVS_RING_SLOTS slots (its top 16
 * bits); each slot is owned by one shard, the shards' shares following
 * their weights exactly (to a slot or two), assigned in join order so that
 * a shard that joins takes its share and nothing else moves; a key's
 * owners are its slot's owner, then the owners of the following slots
 * (wrapping), each shard once, until N are found.
 *
 * Threads: a ring is immutable once built; any number of threads may read
 * it at once. kvs_ring_free() only after every reader is done.
 *
 * Part of libkvshard's public API; include <kvshard.h> rather than this file.
 */
#ifndef KVSHARD_RING_H
#define KVSHARD_RING_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kvs_ring kvs_ring;

/* The slots of the hash space, and a hash's slot. */
#define KVS_RING_SLOTS 65536u
#define KVS_RING_SLOT_OF(hash) ((uint32_t)((uint64_t)(hash) >> 48))
/* vnodes is accepted for older configurations and no longer used. */
#define KVS_RING_DEFAULT_VNODES 256u
#define KVS_RING_MAX_VNODES 65536u
#define KVS_RING_MAX_MEMBERS 4096u
#define KVS_RING_MAX_WEIGHT 1000.0
/* Most owners a lookup returns (and the largest useful replication). */
#define KVS_RING_MAX_OWNERS 16u

typedef struct kvs_ring_member {
	const char *name; /* NUL-terminated, non-empty, unique; copied */
	double weight;    /* 0 (owns nothing) to KVS_RING_MAX_WEIGHT; 1 normal */
} kvs_ring_member;

/**
 * Build a ring.
 *
 * The result depends on the members' names, weights and order: members
 * are given in join order (kvshard uses ascending shard idx), and every
 * process given the same list computes the same owners. Positions
 * returned by lookups are indexes into members as given here.
 *
 * @param out     receives the ring (free with kvs_ring_free); NULL on error.
 * @param members n members, 1 <= n <= KVS_RING_MAX_MEMBERS, in join order.
 * @param vnodes  ignored (0..KVS_RING_MAX_VNODES, for older callers).
 * @return KVS_OK; KVS_EINVAL (empty or duplicate name, weight out of range,
 *         no member with a weight, bad counts), KVS_ENOMEM.
 */
KVS_API int kvs_ring_new(kvs_ring **out, const kvs_ring_member *members,
                         size_t n, unsigned vnodes);

/** Free a ring; accepts NULL. */
KVS_API void kvs_ring_free(kvs_ring *r);

/**
 * The position of a key on the ring: XXH3-64 (seed 0) of its bytes.
 */
KVS_API uint64_t kvs_ring_hash(const void *key, size_t key_len);

/**
 * The owners of a key, in preference order (first = primary).
 *
 * @param owners receives up to max member positions (indexes into the
 *               members given to kvs_ring_new).
 * @param max    how many owners wanted (N); at most KVS_RING_MAX_OWNERS
 *               are computed.
 * @return how many were written: min(max, members with a weight,
 *         KVS_RING_MAX_OWNERS).
 */
KVS_API size_t kvs_ring_owners(const kvs_ring *r, const void *key,
                               size_t key_len, size_t *owners, size_t max);

/** As kvs_ring_owners(), from a hash computed with kvs_ring_hash(). */
KVS_API size_t kvs_ring_owners_at(const kvs_ring *r, uint64_t hash,
                                  size_t *owners, size_t max);

/** Number of members. */
KVS_API size_t kvs_ring_members(const kvs_ring *r);

/** Number of slots (KVS_RING_SLOTS; once the number of points). */
KVS_API size_t kvs_ring_points(const kvs_ring *r);

/** Number of slots member i owns (its share is that / KVS_RING_SLOTS). */
KVS_API size_t kvs_ring_slots_of(const kvs_ring *r, size_t member);

/**
 * Name of member i (borrowed, valid until kvs_ring_free), or NULL if i is
 * out of range.
 */
KVS_API const char *kvs_ring_member_name(const kvs_ring *r, size_t i);

#ifdef __cplusplus
}
#endif

#endif /* KVSHARD_RING_H */
