/*
 * kvshard.h - libkvshard, the embeddable library of the kvshard sharded,
 * replicated key-value store.
 *
 * Modules:
 *   common  version, result codes (kvs_strerror), version stamps
 *   store   a node's durable local storage (LMDB)
 *   ring    consistent hashing: which shards own a key
 *   config  the cluster configuration (TOML)
 *   client  a remote client for a whole cluster (HTTP)
 *
 * Conventions, stated once:
 *   - Every function that can fail returns KVS_OK (0), a positive ordinary
 *     result (KVS_NOTFOUND) or a negative KVS_E* code; see kvs_strerror().
 *   - Constructors return their handle through an out-parameter, left NULL
 *     on failure; every close/free function accepts NULL.
 *   - Keys and values are (pointer, length) pairs of arbitrary bytes; no
 *     NUL termination is assumed.
 *   - Memory returned to the caller is freed with kvs_free() unless the
 *     function says otherwise; borrowed pointers say how long they live.
 *   - Threads: every handle may be used from several threads at once unless
 *     its header says otherwise; its close/free must come after all other
 *     calls on it have returned.
 */
#ifndef KVSHARD_H
#define KVSHARD_H

#include "kvshard/common.h"
#include "kvshard/store.h"
#include "kvshard/ring.h"
#include "kvshard/config.h"
#include "kvshard/client.h"

#endif /* KVSHARD_H */
