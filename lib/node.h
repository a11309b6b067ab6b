/*
 * node.h - one cluster member: the operations a server calls (internal).
 *
 * A node owns its store, the ring built from the config, the sending side
 * of the peer protocol and its view of its peers' health. Its operations
 * take what a client asked for and decide everything else: whether this
 * node serves the key from its own store, coordinates a quorum read or a
 * replicated write, forwards the request to an owner (routing = "proxy")
 * or sends the client to one (routing = "redirect"). A server only turns
 * HTTP into these calls and their results back into HTTP.
 *
 * Completions. Every operation ends by filling its result and calling
 * cb(ud) exactly once: maybe before the call returns (a read served from
 * this node's store), maybe later on another thread (the store's writer,
 * the peer transport's). The callback should only note that the result
 * is there (a server resumes the connection); the answer is built by the
 * caller's own thread from the result afterwards.
 *
 * The files behind this header: node.c (open, close, routing, health,
 * probing, the operations' dispatch), quorum.c (quorum reads with read
 * repair, replicated writes), proxy.c (forwarding to an owner, with
 * failover and speculative retry), cscan.c (the cluster-wide scan),
 * serve.c (the receiving side of the peer protocol), peer.c (its sending
 * side over HTTP).
 */
#ifndef KVS_NODE_H
#define KVS_NODE_H

#include <stddef.h>
#include <stdint.h>

#include "hlc.h"
#include "kvshard/config.h"
#include "kvshard/store.h"
#include "peer.h"
#include "store_internal.h"

typedef struct kvs__node kvs__node;

/* Log levels of kvs__node_options.log. */
enum { KVS__LOG_DEBUG, KVS__LOG_INFO, KVS__LOG_WARN, KVS__LOG_ERROR };

typedef struct kvs__node_options {
	/* How to reach peers. NULL: HTTP (peer.c). A node takes peer_impl
	 * and frees it with peer_ops->free on close, or when it fails to
	 * open. */
	const kvs__peer_ops *peer_ops;
	void *peer_impl;
	/* Monotonic milliseconds for health and probing; NULL: the real
	 * clock. */
	uint64_t (*now_ms)(void *ud);
	void *now_ud;
	/* Wall clock of the store's version stamps; NULL: the real one. */
	kvs__wall_fn wall;
	void *wall_ud;
	/* 1: no probing thread; kvs__node_tick() probes when called. */
	int no_prober;
	/* 1: writes to this node's own store complete on the calling thread
	 * (synchronous store calls): the deterministic simulation needs a
	 * single thread. 0 (servers): group commit on the writer thread. */
	int inline_local_writes;
	/* Events worth an operator's attention (a peer went down or came
	 * back, no owner answered); NULL: none. */
	void (*log)(void *ud, int level, const char *msg);
	void *log_ud;
	/* The topology's epoch (coord.h); 0: 1, the config file's. */
	uint64_t epoch;
	/* The fence it starts with (kvs__node_set_fence); 0: none. */
	uint64_t fence;
	/* The store to use (borrowed: not closed with the node), opened
	 * with kvs__node_store_open; NULL: the node opens its own at
	 * store_path. A server gives each epoch's node the same one. */
	kvs_store *store;
	/* 1: drop, a little per tick, the records of segments this node
	 * does not own while no move is under way (a runtime topology: the
	 * records left behind by a move). 0: keep them (a static topology,
	 * where a file's change would otherwise delete data). */
	int drop_unowned;
} kvs__node_options;

void kvs__node_options_init(kvs__node_options *o);

/**
 * Open the node for shard `shard` of cfg (borrowed: must outlive the node),
 * with its store in directory store_path. opts may be NULL.
 *
 * @return KVS_OK; KVS_EINVAL (unknown shard), or an error of
 *         kvs_store_open / kvs_ring_new / the peers; errbuf gets a reason.
 */
int kvs__node_open(kvs__node **out, const kvs_config *cfg, const char *shard,
                   const char *store_path, const kvs__node_options *opts,
                   char *errbuf, size_t errlen);

/**
 * Open the store of shard `shard` of cfg at store_path, as kvs__node_open
 * does (for kvs__node_options.store).
 *
 * @return as kvs_store_open; errbuf gets a reason.
 */
int kvs__node_store_open(kvs_store **out, const kvs_config *cfg,
                         const char *shard, const char *store_path,
                         char *errbuf, size_t errlen);

/** Stop probing, end what is in flight, close the store. Accepts NULL. */
void kvs__node_close(kvs__node *n);

/* Completion of an operation: its result is filled in. */
typedef void (*kvs__node_cb)(void *ud);

typedef enum kvs__kv_kind {
	KVS__KV_GET,
	KVS__KV_PUT,
	KVS__KV_DELETE
} kvs__kv_kind;

/* What a client asked about one key. Buffers are borrowed until cb. */
typedef struct kvs__kv_req {
	kvs__kv_kind kind;
	const void *key;
	size_t key_len;
	const void *value; /* PUT */
	size_t value_len;
	kvs__cond cond;    /* PUT, DELETE */
	unsigned r;        /* GET: replicas to read; 0: the cluster's R */
	unsigned w;        /* PUT, DELETE: acks to wait for; 0: its W */
	/* The version of an unconditional PUT or DELETE, taken by the
	 * first node that received it from the client; {0, 0}: take one
	 * here. So a retried or delayed copy of a write (a forward that
	 * timed out, then reached a paused owner) carries the same version
	 * and can never overwrite a later write. */
	kvs_stamp stamp;
	/* Sent by another node (the peer protocol): served or coordinated
	 * here, or refused with KVS_EWRONGSHARD, never forwarded again, so
	 * that nodes that disagree can never bounce a request around. */
	int from_peer;
} kvs__kv_req;

/* What came of it. */
typedef struct kvs__result {
	/* KVS_OK; KVS_NOTFOUND (GET: absent or deleted); or KVS_EKEYSIZE,
	 * KVS_EVALSIZE, KVS_EBADARG (a quorum above N), KVS_ECONFLICT,
	 * KVS_EEXISTS (conditions), KVS_EUNAVAIL (fewer than R/W replicas,
	 * or no owner answered), KVS_ETIMEDOUT (a forwarded conditional
	 * write got no answer: its outcome is unknown), KVS_ESHUTDOWN
	 * (this node is stopping), KVS_EWRONGSHARD, a store error. */
	int rc;
	/* The version read or written; for KVS_NOTFOUND the deletion's
	 * version when one was seen, else {0, 0}. */
	kvs_stamp stamp;
	const void *value; /* GET: valid until kvs__result_clear() */
	size_t value_len;
	unsigned acks;     /* writes: replicas that had it durably */
	unsigned need;     /* the R or W that applied */
	unsigned replicas; /* N of the key */
	size_t served_by;  /* position of the shard that served it */
	int forwarded;     /* served_by answered through this node */
	/* routing = "redirect": send the client to shard `target`. */
	int redirect;
	/* KVS_EUNAVAIL because no owner answered at all (not a quorum
	 * missed), or KVS_ETIMEDOUT: target is the last one tried. */
	int unreachable;
	size_t target;
	/* Private: what keeps value alive. */
	void (*release)(void *hold);
	void *hold;
} kvs__result;

/** Release what a result holds (accepts a zeroed or cleared one). */
void kvs__result_clear(kvs__result *r);

/**
 * Hand the memory behind r->value to the caller: afterwards
 * (*release)(*hold) frees it, and kvs__result_clear does not. (A server
 * gives it to the HTTP library, which sends the value without a copy.)
 */
void kvs__result_take(kvs__result *r, void (**release)(void *), void **hold);

/** Read, write or delete one key. */
void kvs__node_kv(kvs__node *n, const kvs__kv_req *req, kvs__result *out,
                  kvs__node_cb cb, void *ud);

/**
 * Run count operations at once; cb when the last is done. The values
 * their gets hold stay within about max_bytes (0: no bound): a get whose
 * value completes past it answers KVS_EANSWERSIZE without it (the first
 * value is always kept).
 */
void kvs__node_batch(kvs__node *n, const kvs__kv_req *reqs, size_t count,
                     size_t max_bytes, kvs__result *outs, kvs__node_cb cb,
                     void *ud);

/* A cluster-wide scan. Buffers are borrowed until cb. */
typedef struct kvs__scan_req {
	const void *prefix;
	size_t prefix_len;
	const void *start_after; /* continue after this key */
	size_t start_len;
	int has_start;
	size_t limit;  /* most keys in the page (>= 1) */
	int values;
	unsigned r;    /* replicas of each key to read; 0: the cluster's R */
} kvs__scan_req;

typedef struct kvs__scan_result {
	int rc;      /* KVS_OK, KVS_EUNAVAIL, KVS_ENOMEM, a store error */
	size_t failed;   /* KVS_EUNAVAIL: a shard that did not answer */
	struct kvs__cscan *cs; /* private */
} kvs__scan_result;

/**
 * One page of the keys of the whole cluster in byte order: each key with
 * its newest version among R replicas; deleted keys never appear.
 */
void kvs__node_scan(kvs__node *n, const kvs__scan_req *req,
                    kvs__scan_result *out, kvs__node_cb cb, void *ud);

/**
 * After kvs__node_scan's cb, on the caller's thread: merge the shards'
 * pages, calling emit for each live record in order (borrowed for the
 * call; emit returns 0). *next gets the key to continue after (borrowed
 * until kvs__scan_result_clear), or NULL when the scan is complete.
 *
 * @return KVS_OK or KVS_ENOMEM.
 */
int kvs__scan_result_merge(kvs__scan_result *res, kvs_record_cb emit,
                           void *ud, const void **next, size_t *next_len);

void kvs__scan_result_clear(kvs__scan_result *res);

/* A peer's message, served here. */
typedef struct kvs__peer_reply {
	int rc;          /* KVS_OK, or KVS_EPROTO/ENOMEM for the frame */
	const char *why; /* KVS_EPROTO: what is wrong with it */
	struct kvs__serving *s; /* private */
} kvs__peer_reply;

/**
 * Serve a request frame of the peer protocol (borrowed until cb).
 */
void kvs__node_serve_peer(kvs__node *n, const void *frame, size_t len,
                          kvs__peer_reply *out, kvs__node_cb cb, void *ud);

/**
 * Links (link.h): does this node serve them (peer_links on, no TLS);
 * serve one, a connection that agreed to speak the link protocol (and
 * sent nothing since: a peer waits for the 101). The node never closes fd: it
 * calls on_close(ud) once the link ends, at the latest in
 * kvs__node_close. KVS_ECLOSED or KVS_ENOTSUP: not taken (on_close is
 * not called).
 */
int kvs__node_serves_links(const kvs__node *n);
/* The largest peer frame a node accepts, by HTTP or on a link: a full
 * coalesced frame plus one more operation (a value, and its key and the
 * rest). */
size_t kvs__node_peer_frame_max(const kvs_cluster_config *cc);
int kvs__node_serve_link(kvs__node *n, int fd, void (*on_close)(void *ud),
                         void *ud);

/**
 * After kvs__node_serve_peer's cb (with rc KVS_OK): the answer frame,
 * malloc'ed (free()), or NULL when out of memory.
 */
char *kvs__peer_reply_encode(kvs__peer_reply *r, size_t *len);

void kvs__peer_reply_clear(kvs__peer_reply *r);

/* Figures for /metrics. */
typedef struct kvs__node_stats {
	uint64_t forwarded;      /* client requests sent to another shard */
	uint64_t replica_writes; /* writes sent to replicas */
	uint64_t replica_reads;  /* reads sent to replicas */
	uint64_t read_repairs;   /* stale replicas repaired */
	uint64_t peer_errors;    /* messages to peers that got no answer */
	uint64_t quorum_failures;
	uint64_t probes;         /* health probes sent */
	uint64_t speculative;    /* speculative retries sent */
	uint64_t peer_frames;    /* frames sent to peers */
	uint64_t peer_messages;  /* operations those frames carried */
	uint64_t read_fetches;   /* values fetched after a digest read */
	uint64_t hints_written;  /* writes kept for an owner that missed them */
	uint64_t hints_delivered;
	uint64_t hints_expired;  /* older than hint_max_age_s: deleted unsent */
	uint64_t hints_dropped;  /* not kept: hint_max_bytes reached, or
	                            the store failed */
	uint64_t full_map;       /* writes the store refused: map full */
	uint64_t full_fs;        /* ... and filesystem full */
	uint64_t links_up;       /* links to peers up now (link.h) */
	uint64_t links_served;   /* links from peers served now */
	uint64_t links_serving_bytes; /* their frames being served now */
	uint64_t link_frames;    /* of peer_frames, those sent on links */
	uint64_t fenced;         /* peer frames refused writes: stale epoch */
} kvs__node_stats;

void kvs__node_stats_get(kvs__node *n, kvs__node_stats *st);

/** Only the writes refused for lack of room (map, file system), as
 * kvs__node_stats_get gives them: cheap enough for every request. */
void kvs__node_full_writes(kvs__node *n, uint64_t *map, uint64_t *fs);

/* Anti-entropy: passes completed (an exchange with every other shard
 * that was up), the wall-clock time of the last (ms since the epoch, 0:
 * none yet), keys repaired either way, and their bytes. */
typedef struct kvs__aae_stats {
	uint64_t passes;
	uint64_t last_pass_ms;
	uint64_t keys_repaired;
	uint64_t bytes_moved;
	uint64_t tombstones_purged;
} kvs__aae_stats;

void kvs__node_aae_stats(kvs__node *n, kvs__aae_stats *st);

/*
 * A move (config_internal.h). kvs__node_move_copy asks the node, in its
 * DUAL phase, to copy what it gains from the peers that held it: an
 * exchange of anti-entropy with each over those segments, until one
 * whole pass has ended (every segment compared, and repaired where it
 * differed). The caller asks once every node writes to both sides, so
 * that what the pass does not see reaches this node as a write.
 */
void kvs__node_move_copy(kvs__node *n);

typedef struct kvs__move_stats {
	int phase;          /* KVS__MOVE_* */
	int paused;         /* the move is paused: no copy */
	int asked, copied;  /* kvs__node_move_copy; a whole pass since */
	uint64_t gained;    /* segments this node gains in the move */
	uint64_t passes;    /* copy passes ended */
	uint64_t dropped;   /* records dropped, no longer owned */
	uint64_t keys;      /* records the copy fetched (applied or not) */
	uint64_t bytes;     /* and their bytes (keys and values) */
} kvs__move_stats;

void kvs__node_move_stats(kvs__node *n, kvs__move_stats *st);

/*
 * Fencing: every registered node runs epoch or a later one (coord.h), so
 * a peer whose frames carry an older epoch has lost its registration and
 * may not know a key's owners: its writes (APPLY, PUT, DELETE) are
 * refused with KVS_ESTALEEPOCH from now on. The fence only rises.
 */
void kvs__node_set_fence(kvs__node *n, uint64_t epoch);

/* Hints this node keeps for shard position i: how many, and their bytes. */
void kvs__node_hints_pending(kvs__node *n, size_t i, uint64_t *count,
                             uint64_t *bytes);

/** Is shard i believed up (1; this node always is), or down (0)? */
int kvs__node_shard_status(kvs__node *n, size_t i);

/** The topology epoch: 1 while the topology is the config file's, else
 * the epoch of etcd's topology the node opened with. */
uint64_t kvs__node_epoch(const kvs__node *n);

/** The node's store, for its figures (/v1/status). */
kvs_store *kvs__node_store(kvs__node *n);

/**
 * Probe every peer whose turn has come (the probing thread calls this
 * every KVS__PROBE_TICK_MS; with no_prober, the caller does).
 */
void kvs__node_tick(kvs__node *n);

#endif /* KVS_NODE_H */
