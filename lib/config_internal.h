/*
 * config_internal.h - config helpers for the rest of the project
 * (not part of the public API).
 */
#ifndef KVS_CONFIG_INTERNAL_H
#define KVS_CONFIG_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "kvshard/config.h"

/*
 * Split "host:port" ("[v6]:port" for IPv6) as shard addresses are written.
 * Returns 0 and fills host (without brackets, host_cap bytes at most) and
 * port (1..65535), or -1 with *why saying what is wrong.
 */
int kvs__parse_address(const char *a, char *host, size_t host_cap,
                       uint16_t *port, const char **why);

/*
 * Make from's shards, replication factor and quorums cfg's (the topology
 * etcd holds, parsed as a config of its own); frees from in every case
 * but KVS_ENOMEM. Nothing else of cfg changes.
 */
int kvs__config_adopt_topology(kvs_config *cfg, kvs_config *from);

/*
 * A move of data under way (a runtime topology only: coord.h). The
 * shards are those of both sides; each has its weight after the move
 * (kvs_shard_config.weight) and the one before it. Phases:
 *   KVS__MOVE_DUAL      writes go to the owners before and after (W of
 *                       each), reads to those before; the new owners
 *                       copy what they gain;
 *   KVS__MOVE_READ_NEW  the same writes, reads to the owners after.
 * Then the topology without a move: the owners after only.
 */
enum { KVS__MOVE_NONE = 0, KVS__MOVE_DUAL = 1, KVS__MOVE_READ_NEW = 2 };

/* Set cfg's move: phase, and before[i] the weight of shard i before it
 * (kvs_config_shard_count entries, copied). KVS_OK or KVS_ENOMEM. */
int kvs__config_set_move(kvs_config *cfg, int phase, const double *before);

/* cfg's move phase (KVS__MOVE_*), and *before (may be NULL): the weights
 * before it, one per shard, or NULL without a move. */
int kvs__config_move(const kvs_config *cfg, const double **before);

/* Whether the move (any phase, pending included) is paused: nodes copy
 * nothing and no step is taken until it is resumed. */
void kvs__config_set_move_paused(kvs_config *cfg, int paused);
int kvs__config_move_paused(const kvs_config *cfg);

#endif
