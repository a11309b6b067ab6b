/*
 * kvshard/config.h - the cluster configuration (a TOML file).
 *
 * The file lists the shards ([[shards]] with name, idx, address) and
 * optional tables [cluster], [storage], [limits], [server] and [auth];
 * docs/config.md describes every key. Loading validates everything:
 * any mistake is reported as "file:line:column: what is wrong", and unknown
 * keys are errors.
 *
 * Threads: a loaded kvs_config is immutable; any number of threads may read
 * it at once.
 *
 * Part of libkvshard's public API; include <kvshard.h> rather than this file.
 */
#ifndef KVSHARD_CONFIG_H
#define KVSHARD_CONFIG_H

#include "common.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kvs_config kvs_config;

/* Defaults, documented once (docs/config.md repeats them). */
#define KVS_DEFAULT_REPLICATION 3u /* capped at the shards with weight > 0 */
#define KVS_DEFAULT_REQUEST_TIMEOUT_MS 2000u
#define KVS_DEFAULT_CONNECT_TIMEOUT_MS 500u
#define KVS_DEFAULT_SPECULATIVE_RETRY_MIN_MS 10u
#define KVS_DEFAULT_SPECULATIVE_RETRY_MAX_MS 50u
#define KVS_DEFAULT_MAX_CLOCK_SKEW_MS 5000u
#define KVS_DEFAULT_HINT_MAX_AGE_S 10800u /* 3 h */
#define KVS_DEFAULT_HINT_MAX_BYTES ((size_t)1 << 30)
#define KVS_DEFAULT_HINT_RATE_BYTES ((size_t)4 << 20)
#define KVS_DEFAULT_ANTI_ENTROPY_INTERVAL_S 600u
#define KVS_DEFAULT_TOMBSTONE_GRACE_S 864000u /* 10 days */
#define KVS_DEFAULT_CLUSTER_NAME "kvshard"
#define KVS_DEFAULT_LEASE_TTL_S 10u
#define KVS_DEFAULT_MOVE_GRACE_S 30u
#define KVS_DEFAULT_MAX_KEY_BYTES 511u
#define KVS_DEFAULT_MAX_VALUE_BYTES (16u * 1024u * 1024u)
#define KVS_DEFAULT_MAX_CONNECTIONS 1024u
#define KVS_DEFAULT_MAX_CONNECTIONS_PER_CLIENT 256u
#define KVS_DEFAULT_IDLE_TIMEOUT_S 60u
#define KVS_DEFAULT_HEADER_TIMEOUT_S 10u
#define KVS_DEFAULT_BODY_TIMEOUT_S 60u
/* Or 4 x max_value_bytes when that is more: room for a few of the
 * largest bodies at once. */
#define KVS_DEFAULT_MAX_BUFFERED_BYTES ((size_t)256 << 20)
#define KVS_DEFAULT_MAX_BATCH_OPS 1000u
#define KVS_DEFAULT_MAX_SCAN_LIMIT 10000u
/* Or more when max_value_bytes needs it: an answer holds any one value. */
#define KVS_DEFAULT_MAX_ANSWER_BYTES ((size_t)64 << 20)
#define KVS_DEFAULT_DATA_DIR "data"

/* How a node answers a request for a key it does not own. */
typedef enum kvs_routing {
	KVS_ROUTING_PROXY = 0,   /* forward it to an owner and relay the answer */
	KVS_ROUTING_REDIRECT = 1 /* answer 307 with the owner's URL */
} kvs_routing;

typedef struct kvs_shard_config {
	const char *name;
	uint32_t idx;
	const char *address; /* "host:port" as written in the file */
	const char *host;    /* host part (an IPv6 address without brackets) */
	uint16_t port;
	double weight;
	unsigned line; /* line of the shard's [[shards]] header */
} kvs_shard_config;

/*
 * Everything but the shard list. Strings and arrays are borrowed from the
 * kvs_config and live until kvs_config_free(); absent optional strings are
 * NULL.
 */
typedef struct kvs_cluster_config {
	const char *path; /* the file (or the name given to kvs_config_parse) */
	/* [cluster] */
	unsigned replication;  /* N, capped at the shards with weight > 0 */
	unsigned write_quorum; /* W, 1..N; default majority of N */
	unsigned read_quorum;  /* R, 1..N; default majority of N */
	unsigned vnodes;
	kvs_routing routing;
	const char *data_dir;
	unsigned request_timeout_ms;
	unsigned connect_timeout_ms;
	/* [storage] */
	kvs_sync_mode sync;
	size_t map_size;     /* 0: the store's default */
	size_t max_map_size; /* 0: no ceiling */
	/* [limits] */
	size_t max_key_bytes;
	size_t max_value_bytes;
	unsigned max_connections;
	unsigned idle_timeout_s;
	unsigned max_batch_ops;
	unsigned max_scan_limit;
	/* [server] */
	unsigned threads; /* HTTP threads; 0: one per core */
	/* [auth] */
	const char *const *client_tokens;
	size_t n_client_tokens;
	const char *const *read_tokens;
	size_t n_read_tokens;
	const char *cluster_secret;
	/* [cluster], after the others so that their offsets stay: a
	 * replica or owner slower than recent answers (their 99th
	 * percentile, within [min, max] ms) gets company: the request also
	 * goes to the next one. max 0: never. */
	unsigned speculative_retry_min_ms;
	unsigned speculative_retry_max_ms;
	/* [cluster]: a version from a peer further ahead of this node's
	 * wall clock than this is refused (kvs_store_options'
	 * max_clock_ahead_ms). */
	unsigned max_clock_skew_ms;
	/* [cluster]: hinted handoff. A write an owner did not acknowledge
	 * is kept for it by the coordinator, at most hint_max_age_s (then
	 * anti-entropy's business) and hint_max_bytes in all (0: no hints),
	 * and delivered at up to hint_rate_bytes per second. */
	unsigned hint_max_age_s;
	size_t hint_max_bytes;
	size_t hint_rate_bytes;
	/* [cluster]: anti-entropy: a pass with every other shard this
	 * often (0: never). */
	unsigned anti_entropy_interval_s;
	/* [cluster]: a tombstone older than this, which anti-entropy has
	 * seen on every owner, is deleted for good (0: never). */
	unsigned tombstone_grace_s;
	/* [cluster]: the cluster's name (its keys' place in etcd). */
	const char *name;
	/* [coordination]: etcd's client endpoints, "host:port" (none: the
	 * topology is the file's, fixed at start); the prefix of the
	 * cluster's keys there ("/kvshard/<name>" by default); how long a
	 * node's registration outlives its last renewal. */
	const char *const *etcd_endpoints;
	size_t n_etcd_endpoints;
	const char *coordination_prefix;
	unsigned lease_ttl_s;
	/* [limits]: connections one client address may hold (0: any
	 * number, up to max_connections). */
	unsigned max_connections_per_client;
	/* [limits]: most bytes of a scan page or batch answer (past it,
	 * the answer stops and says where to continue; docs/api.md). */
	size_t max_answer_bytes;
	/* [limits]: a request's headers must all arrive within
	 * header_timeout_s of the connection's opening (for a later request
	 * on a kept-alive connection: within idle_timeout_s +
	 * header_timeout_s of the previous answer), and its body within
	 * body_timeout_s of its headers; both are deadlines, not idle
	 * timeouts. Request
	 * bodies held in memory at once, all connections together, stay
	 * within max_buffered_bytes (past it: 503 overloaded). */
	unsigned header_timeout_s;
	unsigned body_timeout_s;
	size_t max_buffered_bytes;
	/* [tls] (all NULL: plain HTTP): the node's certificate and key
	 * (PEM files), the CA that verifies other nodes (NULL: the system's
	 * trusted CAs), and with mutual TLS the pair a node shows its peers
	 * (NULL: cert and key). */
	const char *tls_cert;
	const char *tls_key;
	const char *tls_ca;
	const char *tls_peer_cert;
	const char *tls_peer_key;
	int tls_mutual;
	/* [auth]: bearer tokens that may also change the topology (admin
	 * calls); client tokens may read and write, read tokens read. */
	const char *const *admin_tokens;
	size_t n_admin_tokens;
	/* [cluster]: nodes reach each other over links of their own (one
	 * upgraded connection each way, docs/protocol.md) rather than an
	 * HTTP request per frame; plain HTTP when false, and always over
	 * TLS in this version. */
	int peer_links;
	/* [coordination]: how long, once reads follow a move's new owners,
	 * the old ones keep the data they hand over before dropping it. */
	unsigned move_grace_s;
	/* [coordination]: the most bytes per second a shard copies in a
	 * move (0: as fast as it goes). */
	size_t move_rate_bytes;
} kvs_cluster_config;

/**
 * Load and validate a configuration file.
 *
 * @param out    receives the configuration (kvs_config_free); NULL on error.
 * @param errbuf KVS_ERRBUF_SIZE bytes receiving "file:line:column: message"
 *               on KVS_ECONFIG, or "file: reason" when the file cannot be
 *               read; may be NULL.
 * @return KVS_OK, KVS_ECONFIG (invalid), KVS_EIO (unreadable), KVS_ENOMEM.
 */
KVS_API int kvs_config_load(kvs_config **out, const char *path,
                            char *errbuf);

/**
 * As kvs_config_load(), from text in memory (not NUL-terminated; len
 * bytes). name is used in messages in place of a file name.
 */
KVS_API int kvs_config_parse(kvs_config **out, const char *text, size_t len,
                             const char *name, char *errbuf);

/** Free a configuration; accepts NULL. */
KVS_API void kvs_config_free(kvs_config *cfg);

/** The cluster-wide settings (borrowed, valid until kvs_config_free). */
KVS_API const kvs_cluster_config *kvs_config_cluster(const kvs_config *cfg);

/** Number of shards (at least 1 in a loaded configuration). */
KVS_API size_t kvs_config_shard_count(const kvs_config *cfg);

/**
 * Shard i in ascending idx, the ring's join order (borrowed, valid until
 * kvs_config_free), or NULL if i is out of range.
 */
KVS_API const kvs_shard_config *kvs_config_shard(const kvs_config *cfg,
                                                 size_t i);

/**
 * The shard called name (borrowed), or NULL if there is none.
 */
KVS_API const kvs_shard_config *kvs_config_find_shard(const kvs_config *cfg,
                                                      const char *name);

#ifdef __cplusplus
}
#endif

#endif /* KVSHARD_CONFIG_H */
