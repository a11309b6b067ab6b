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

#endif
