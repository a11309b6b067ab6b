/*
 * node_internal.h - what the node's files share (node.c, ops.c, quorum.c,
 * proxy.c, cscan.c, serve.c); nothing else but the tests includes it.
 *
 * Calls go one way: serve.c -> ops.c -> quorum.c, proxy.c -> node.c, and
 * cscan.c -> node.c; node.c calls none of the others.
 */
#ifndef KVS_NODE_INTERNAL_H
#define KVS_NODE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "health.h"
#include "kvshard/ring.h"
#include "node.h"
#include "op.h"

/* Probing: how often the prober looks, how often an up peer is probed,
 * and the longest a down peer waits for its next probe (its back-off,
 * capped so that a peer that comes back is seen within about 2 s). */
#define KVS__PROBE_TICK_MS 250u
#define KVS__PROBE_INTERVAL_MS 1000u
#define KVS__PROBE_DOWN_MAX_MS 2000u
#define KVS__PROBE_TIMEOUT_MS 1000u

/*
 * Lanes: the operations sent to one peer, coalesced. Each kind of
 * operation has its own lane, so that one frame's operations take about
 * as long as each other (a read never waits for a write's sync). A lane
 * sends an operation at once when fewer than KVS__LANE_FLIGHTS of its
 * frames are out; otherwise the operation joins the lane's next frame,
 * which leaves as soon as one comes back (like the store's group commit:
 * no added delay when idle, bigger frames under load). When the last
 * frame out has had no answer for the speculative delay, the peer is
 * slow or hung: operations then go at once, each alone, rather than wait
 * behind it.
 */
enum {
	KVS__LANE_READ,      /* READ */
	KVS__LANE_APPLY,     /* APPLY */
	KVS__LANE_SCAN,      /* SCAN */
	KVS__LANE_FWD_READ,  /* a forwarded GET */
	KVS__LANE_FWD_WRITE, /* a forwarded PUT or DELETE */
	KVS__LANES
};
/* Frames out at once per lane. One gives the biggest frames (measured:
 * two cost 5-15% of the throughput of forwarded and replicated reads);
 * what waits behind a slow frame is bounded by the speculative delay
 * (see above), and speculative retries never wait in a lane. */
#define KVS__LANE_FLIGHTS 1u
/* A frame that reaches either leaves at once (beside the one out). */
#define KVS__LANE_MAX_OPS 256u
#define KVS__LANE_MAX_BYTES (1u << 20)

struct kvs__lane_op {
	kvs__peer_cb cb;
	void *ud;
	kvs__panswer *answer; /* allocated on sending: cb never gets NULL */
};

struct kvs__lane {
	pthread_mutex_t mu;
	unsigned flights; /* frames out */
	uint64_t sent_ms; /* when the last one left */
	/* The next frame: its encoding (head first) and its operations. */
	char *frame;
	size_t len, cap;
	struct kvs__lane_op *ops;
	size_t n_ops, cap_ops;
};

struct kvs__peer_state {
	kvs__node *n;
	size_t i;
	kvs__health health;
	_Atomic int probing;
	_Atomic uint64_t next_probe_ms;
	_Atomic unsigned in_flight; /* operations awaiting its answer */
	struct kvs__lane lanes[KVS__LANES];
	/* Hinted handoff (hints.c): what this node keeps for the peer. */
	_Atomic uint64_t hints, hint_bytes;
	_Atomic int handing; /* a round of delivery is under way */
	/* After a round that failed: no other before hint_next_ms (the
	 * wait doubles, up to KVS__HINT_BACKOFF_MAX_MS; a success resets
	 * it). Touched by whoever holds handing. */
	uint64_t hint_next_ms;
	unsigned hint_backoff_ms;
};

#define KVS__HINT_BACKOFF_MIN_MS 1000u
#define KVS__HINT_BACKOFF_MAX_MS 10000u

/*
 * A peer believed down gets at most this many messages at a time; more
 * fail at once (KVS_ECONNECT), as if it had refused them. A hung peer
 * would otherwise gather one message per request, each waiting out the
 * request timeout, and slow the transport for every other peer; a few
 * still go, so that a peer wrongly believed down is still written to.
 */
#define KVS__DOWN_IN_FLIGHT_MAX 4u

struct kvs__node_counters {
	_Atomic uint64_t forwarded;
	_Atomic uint64_t replica_writes;
	_Atomic uint64_t replica_reads;
	_Atomic uint64_t read_repairs;
	_Atomic uint64_t peer_errors;
	_Atomic uint64_t quorum_failures;
	_Atomic uint64_t probes;
	_Atomic uint64_t speculative; /* second requests sent on a delay */
	_Atomic uint64_t peer_frames;   /* frames sent */
	_Atomic uint64_t peer_messages; /* operations in them */
	_Atomic uint64_t read_fetches;  /* values fetched after digests */
	_Atomic uint64_t hints_written, hints_delivered, hints_expired,
	        hints_dropped;
	_Atomic uint64_t fenced; /* peer frames of a stale epoch */
};

/*
 * How long peers take to answer, for speculative retry: a histogram of
 * answer times in power-of-two milliseconds (bucket i: below 2^i ms, the
 * last: the rest), halved each time the delay is recomputed from it, so
 * that it follows the recent past.
 */
#define KVS__LAT_BUCKETS 13
/* Answers needed before the delay is recomputed. */
#define KVS__LAT_MIN_SAMPLES 200u

enum { KVS__LAT_REPLICA, KVS__LAT_FORWARD, KVS__LAT_KINDS };

struct kvs__latency {
	_Atomic uint32_t buckets[KVS__LAT_BUCKETS];
	_Atomic unsigned delay_ms;
};

/* Anti-entropy (aae.c): the pass under way, driven by the probe tick;
 * figures read by anyone. */
struct kvs__aae_xchg;
struct kvs__aae {
	struct kvs__aae_xchg *x; /* the exchange under way */
	int scheduled, in_pass, pass_failed;
	size_t next_peer;
	uint64_t next_ms; /* kvs__node_now() of the next pass */
	/* Per peer: the runs of segments both own (computed once: the
	 * ring does not change while the node is open). */
	struct kvs__aae_run **runs;
	size_t *n_runs;
	/* Per peer, per segment: when (wall-clock seconds) an exchange last
	 * found the segment equal on both sides, a lower bound of what the
	 * peer had; NULL until the first. Tombstone purge reads it. */
	_Atomic uint32_t **synced;
	uint32_t sweep_seg; /* where the purge sweep goes on */
	_Atomic uint64_t purged;
	_Atomic uint64_t passes, last_pass_ms, keys_repaired, bytes_moved;
};

/* A move (aae.c): this node's copy of the segments it gains, from each
 * peer that held them before (an exchange of anti-entropy over those
 * segments), asked for by kvs__node_move_copy; and the drop of what it no
 * longer owns once no move is under way. */
struct kvs__move {
	_Atomic int asked;  /* copy (DUAL only) */
	_Atomic int copied; /* a whole pass ended after it was asked */
	int in_pass, pass_failed;
	size_t next_peer;
	uint64_t next_ms;
	struct kvs__aae_xchg *x;
	struct kvs__aae_run **runs; /* per peer: what self gains from it */
	size_t *n_runs;
	/* The rate limit: bytes the copy may have moved by now, and the
	 * repairs' count of bytes when it started. */
	uint64_t allowed, bytes_at_start, last_ms;
	uint32_t drop_seg; /* where the drop sweep goes on */
	_Atomic uint64_t passes, gained, dropped;
	_Atomic uint64_t keys, bytes; /* fetched by the copy's pulls */
};

struct kvs__node {
	const kvs_config *cfg;
	const kvs_cluster_config *cc;
	kvs__node_options o;
	size_t self;       /* position of this node's shard in the config */
	uint32_t self_idx; /* its idx: the shard of the stamps it makes */
	size_t n_shards;
	struct kvs__peer_state *peers;
	size_t holders;    /* shards that hold ring points (weight > 0) */
	/* The ring reads follow; during a move (config_internal.h), the
	 * other side's too (ring_b, else NULL): DUAL reads the ring before
	 * the move, READ_NEW the one after. */
	kvs_ring *ring;
	kvs_ring *ring_b;
	int move_phase;
	int move_paused; /* the copy waits */
	/* The epoch every registered node runs (kvs__node_set_fence): a
	 * peer's write frames of an older one are refused. */
	_Atomic uint64_t fence;
	kvs_store *store;
	const kvs__peer_ops *ops;
	void *impl;
	struct kvs__node_counters counters;
	_Atomic uint64_t hint_bytes; /* all peers' */
	/* Its writes in the store's queue, counted until their callbacks
	 * have returned: the store may outlive the node (a server gives
	 * each epoch's node the same one), so close waits for them. */
	_Atomic uint64_t store_pending;
	struct kvs__aae aae;
	struct kvs__move move;
	/* Replica operations, and forwarded client requests (which wait
	 * for the owner's own replicas). */
	struct kvs__latency lat[KVS__LAT_KINDS];

	/* Senders hold it shared; close takes it to stop all sending. */
	struct kvs__link_server *links; /* NULL: no links served */
	pthread_rwlock_t send_lock;
	int closing;

	pthread_t prober;
	pthread_mutex_t prober_mu;
	pthread_cond_t prober_cv;
	int prober_stop;
	int prober_started;
};

/* Most owners of a key: those before and after a move. */
#define KVS__ROUTE_MAX (2 * KVS_RING_MAX_OWNERS)

/* Where a key lives, as seen from this node. During a move (the node's
 * ring_b), owners[0 .. n) are those that serve reads, and owners[n ..
 * n_all) those of the other side that are not among them; a write needs
 * W of the first n and W of the n_b marked in_b. */
typedef struct kvs__route {
	size_t n;                       /* owners that read (N) */
	size_t n_all;                   /* and those only written */
	size_t n_b;                     /* owners of the other side */
	uint32_t in_b;                  /* bit i: owners[i] is one of them */
	size_t owners[KVS__ROUTE_MAX];  /* positions, preference order */
	int self;                       /* index of this node, or -1 */
} kvs__route;

void kvs__node_route(const kvs__node *n, const void *key, size_t len,
                     kvs__route *r);

uint64_t kvs__node_now(kvs__node *n);

/* Worth sending to: this node, or a peer believed up. (A down peer is
 * still asked when no other will do.) */
int kvs__node_usable(kvs__node *n, size_t i);

/* The owner that coordinates a write: for a conditional one, the key's
 * primary (its first owner), always, since it alone decides conditions;
 * otherwise the first usable owner, else the first owner. */
size_t kvs__node_coordinator(kvs__node *n, const kvs__route *r,
                             const kvs__kv_req *req);

/*
 * Send one operation to shard peer, in its lane (coalesced with others
 * under load), noting the outcome in the peer's health. op is encoded
 * before this returns. cb gets the operation's own answer (never NULL;
 * n = 1 when rc is KVS_OK) and owns it. Forwarded client requests wait
 * two request timeouts (the owner may wait one for a silent replica and
 * then ask another), the others one. Returns an error when the node is
 * closing or the operation could not go (cb is then not called).
 */
int kvs__node_send(kvs__node *n, size_t peer, const kvs__preq *op,
                   kvs__peer_cb cb, void *ud);

/* The same, never waiting in the lane: for a speculative retry, which
 * must not queue behind the slow frames it is meant to overtake. */
int kvs__node_send_now(kvs__node *n, size_t peer, const kvs__preq *op,
                       kvs__peer_cb cb, void *ud);

/*
 * Speculative retry: how long to wait for a replica (KVS__LAT_REPLICA)
 * or for an owner a request was forwarded to (KVS__LAT_FORWARD) before
 * sending to the next one as well; 0 when it is off.
 */
unsigned kvs__node_speculative_ms(kvs__node *n, int kind);

/* Call cb(ud) once in ms milliseconds, or earlier when the node closes;
 * an error when it is closing (cb is then never called). */
int kvs__node_timer(kvs__node *n, unsigned ms, kvs__peer_timer_cb cb,
                    void *ud);

/*
 * A write of the node's to its store, counted in store_pending: submit it
 * with kvs__node_pending_done as the callback and the wrapper as ud, or
 * give the wrapper back with kvs__node_pending_cancel if it was not
 * taken. NULL when out of memory.
 */
struct kvs__pending;
struct kvs__pending *kvs__node_pending(kvs__node *n, kvs_write_cb cb,
                                       void *ud);
void kvs__node_pending_done(void *ud, int rc, const kvs_stamp *stamp,
                            int applied);
void kvs__node_pending_cancel(struct kvs__pending *p);

/* Writes to this node's own store, asynchronous or (inline_local_writes)
 * on the calling thread. cb as kvs_write_cb. */
int kvs__node_local_apply(kvs__node *n, const kvs_record *rec,
                          kvs_write_cb cb, void *ud);
int kvs__node_local_write(kvs__node *n, int is_delete, const void *key,
                          size_t key_len, const void *value, size_t value_len,
                          const kvs__cond *cond, kvs_write_cb cb, void *ud);

/*
 * Hinted handoff (hints.c). kvs__hint_add keeps rec for peer, which did
 * not acknowledge it; kvs__hints_tick starts deliveries to peers that are
 * up (every probe tick); kvs__hints_open counts the hints a store holds.
 */
void kvs__hint_add(kvs__node *n, size_t peer, const kvs_record *rec);
/* Anti-entropy (aae.c): one step per probe tick; close frees what is
 * left once nothing can answer any more. */
void kvs__aae_tick(kvs__node *n);
void kvs__aae_close(kvs__node *n);
void kvs__hints_tick(kvs__node *n);
int kvs__hints_open(kvs__node *n);

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
void kvs__node_log(kvs__node *n, int level, const char *fmt, ...);

/* A result that failed with rc, then cb(ud). */
static inline void kvs__node_fail(kvs__result *out, int rc, kvs__node_cb cb,
                                  void *ud)
{
	out->rc = rc;
	cb(ud);
}

/* A frame came from the shard whose idx is idx: it is up. */
void kvs__node_heard_from(kvs__node *n, uint32_t idx);

/* The position of the shard whose idx is idx, or n_shards. */
size_t kvs__node_position(const kvs__node *n, uint32_t idx);

/* quorum.c: this node is an owner (route->self >= 0). */
void kvs__quorum_read(kvs__node *n, const kvs__kv_req *req,
                      const kvs__route *route, unsigned need,
                      kvs__result *out, kvs__node_cb cb, void *ud);
void kvs__quorum_write(kvs__node *n, const kvs__kv_req *req,
                       const kvs__route *route, unsigned need,
                       kvs__result *out, kvs__node_cb cb, void *ud);

/* proxy.c: send the request to the owners in turn (reads: usable owners
 * first; writes: the coordinator first; conditional writes: the primary
 * only) until one answers. */
void kvs__proxy(kvs__node *n, const kvs__kv_req *req, const kvs__route *route,
                kvs__result *out, kvs__node_cb cb, void *ud);

/*
 * cscan.c: one page of this node's own records, tombstones included, in
 * the peer protocol's record encoding: up to limit records after
 * start_after (all from the start without has_start) with the prefix,
 * values when asked; *more says that records follow.
 */
int kvs__local_page(kvs__node *n, const void *prefix, size_t prefix_len,
                    const void *start, size_t start_len, int has_start,
                    size_t limit, int values, kvs__buf *out, size_t *count,
                    int *more);

#endif /* KVS_NODE_INTERNAL_H */
