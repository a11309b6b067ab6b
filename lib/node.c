/*
 * node.c - one cluster member: open and close, routing, peer health and
 * probing, sending to peers, and writes to this node's own store. The
 * operations that use them are in ops.c (dispatch), quorum.c, proxy.c,
 * cscan.c and serve.c.
 *
 * Health. Each peer's health (health.c) is fed by every message sent to
 * it and by probes: a ping (a peer frame of no operations) to each peer
 * every second while it is up, and at its back-off (at most every 2 s)
 * while it is down, so that a dead peer shows as down within about 2 s
 * even when no request goes its way, and a peer that comes back is seen
 * as soon as it answers or sends us anything. Routing prefers peers that
 * are up.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_internal.h"
#include "link.h"
#include "node_internal.h"
#include "util.h"

/* The longest close waits for the node's writes still in the store's
 * queue (each ends with its batch's commit). */
#define PENDING_WAIT_MS 60000u
/* The longest close waits for the frames its links are serving. */
#define SERVING_WAIT_MS 10000u

void kvs__node_options_init(kvs__node_options *o)
{
	memset(o, 0, sizeof(*o));
}

static uint64_t real_now_ms(void *ud)
{
	(void)ud;
	return kvs__mono_ms();
}

void kvs__node_set_fence(kvs__node *n, uint64_t epoch)
{
	uint64_t f = atomic_load(&n->fence);

	while (f < epoch && !atomic_compare_exchange_weak(&n->fence, &f, epoch))
		;
}

uint64_t kvs__node_now(kvs__node *n)
{
	return n->o.now_ms(n->o.now_ud);
}

void kvs__node_log(kvs__node *n, int level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (n->o.log == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	n->o.log(n->o.log_ud, level, msg);
}

/* ------------------------------------------------------------------ */
/* Routing and health                                                   */

void kvs__node_route(const kvs__node *n, const void *key, size_t len,
                     kvs__route *r)
{
	r->n = kvs_ring_owners(n->ring, key, len, r->owners,
	                       n->cc->replication);
	r->n_all = r->n;
	r->n_b = 0;
	r->in_b = 0;
	if (n->ring_b != NULL) {
		size_t b[KVS_RING_MAX_OWNERS];

		r->n_b = kvs_ring_owners(n->ring_b, key, len, b,
		                         n->cc->replication);
		for (size_t j = 0; j < r->n_b; j++) {
			size_t i = 0;

			while (i < r->n_all && r->owners[i] != b[j])
				i++;
			if (i == r->n_all)
				r->owners[r->n_all++] = b[j];
			r->in_b |= 1u << i;
		}
	}
	r->self = -1;
	for (size_t i = 0; i < r->n_all; i++)
		if (r->owners[i] == n->self)
			r->self = (int)i;
}

int kvs__node_usable(kvs__node *n, size_t i)
{
	/* Probes bring a down peer back as soon as it answers: unlike the
	 * client, the node never needs to send a request to find out. */
	return i == n->self || kvs__health_up(&n->peers[i].health);
}

size_t kvs__node_coordinator(kvs__node *n, const kvs__route *r,
                             const kvs__kv_req *req)
{
	if (req->cond.flags != 0)
		return r->owners[0];
	for (size_t i = 0; i < r->n; i++)
		if (kvs__node_usable(n, r->owners[i]))
			return r->owners[i];
	return r->owners[0];
}

int kvs__node_shard_status(kvs__node *n, size_t i)
{
	if (i >= n->n_shards)
		return 0;
	return i == n->self || kvs__health_up(&n->peers[i].health);
}

size_t kvs__node_position(const kvs__node *n, uint32_t idx)
{
	for (size_t i = 0; i < n->n_shards; i++)
		if (kvs_config_shard(n->cfg, i)->idx == idx)
			return i;
	return n->n_shards;
}

/* Note the outcome of a message to peer i; log changes of state. */
static void note_health(kvs__node *n, size_t i, int rc)
{
	const kvs_shard_config *s = kvs_config_shard(n->cfg, i);
	int change = kvs__health_note(&n->peers[i].health, rc, kvs__node_now(n));

	if (change < 0)
		kvs__node_log(n, KVS__LOG_WARN, "shard %s (%s) is down: %s",
		              s->name, s->address, kvs_strerror(rc));
	else if (change > 0)
		kvs__node_log(n, KVS__LOG_INFO, "shard %s (%s) is up again",
		              s->name, s->address);
}

void kvs__node_heard_from(kvs__node *n, uint32_t idx)
{
	size_t i = kvs__node_position(n, idx);

	if (i < n->n_shards && i != n->self)
		note_health(n, i, KVS_OK);
}

/* ------------------------------------------------------------------ */
/* Answer times, for speculative retry                                  */

static void lat_note(struct kvs__latency *l, uint64_t ms)
{
	unsigned b = 0;

	while (b + 1 < KVS__LAT_BUCKETS && ms >= (1ull << b))
		b++;
	atomic_fetch_add_explicit(&l->buckets[b], 1, memory_order_relaxed);
}

/* The delay from the histogram: the upper bound of the bucket holding the
 * 99th percentile, within the configured bounds; then halve the counts. */
static void lat_update(kvs__node *n, struct kvs__latency *l)
{
	uint32_t c[KVS__LAT_BUCKETS];
	uint64_t total = 0, seen = 0, p99 = 0;
	unsigned lo = n->cc->speculative_retry_min_ms;
	unsigned hi = n->cc->speculative_retry_max_ms;

	for (unsigned b = 0; b < KVS__LAT_BUCKETS; b++)
		total += c[b] = atomic_load(&l->buckets[b]);
	if (total < KVS__LAT_MIN_SAMPLES)
		return;
	for (unsigned b = 0; b < KVS__LAT_BUCKETS; b++) {
		seen += c[b];
		if (seen * 100 >= total * 99) {
			p99 = b + 1 < KVS__LAT_BUCKETS ? 1ull << b : hi;
			break;
		}
	}
	atomic_store(&l->delay_ms,
	             (unsigned)(p99 < lo ? lo : p99 > hi ? hi : p99));
	for (unsigned b = 0; b < KVS__LAT_BUCKETS; b++)
		atomic_fetch_sub(&l->buckets[b], c[b] - c[b] / 2);
}

unsigned kvs__node_speculative_ms(kvs__node *n, int kind)
{
	if (n->cc->speculative_retry_max_ms == 0)
		return 0;
	return atomic_load_explicit(&n->lat[kind].delay_ms,
	                            memory_order_relaxed);
}

int kvs__node_timer(kvs__node *n, unsigned ms, kvs__peer_timer_cb cb,
                    void *ud)
{
	int rc;

	pthread_rwlock_rdlock(&n->send_lock);
	rc = n->closing              ? KVS_ECLOSED
	     : n->ops->timer == NULL ? KVS_ENOTSUP
	                             : n->ops->timer(n->impl, ms, cb, ud);
	pthread_rwlock_unlock(&n->send_lock);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Messages: one lane per kind of operation and peer                    */

static int lane_of(unsigned code)
{
	switch (code) {
	case KVS__P_READ:
		return KVS__LANE_READ;
	case KVS__P_APPLY:
		return KVS__LANE_APPLY;
	case KVS__P_SCAN:
	case KVS__P_DIGESTS:
	case KVS__P_SEGKEYS:
		return KVS__LANE_SCAN;
	case KVS__P_GET:
		return KVS__LANE_FWD_READ;
	default:
		return KVS__LANE_FWD_WRITE;
	}
}

static int lat_kind(int lane)
{
	return lane == KVS__LANE_FWD_READ || lane == KVS__LANE_FWD_WRITE
	               ? KVS__LAT_FORWARD
	               : KVS__LAT_REPLICA;
}

/* A frame on its way, and whose operations it carries. */
struct flight {
	kvs__node *n;
	size_t peer;
	int lane;
	uint64_t start_ms;
	char *frame;
	size_t len;
	struct kvs__lane_op *ops;
	size_t n_ops;
};

static void lane_init(struct kvs__lane *l)
{
	memset(l, 0, sizeof(*l));
	pthread_mutex_init(&l->mu, NULL);
}

static void lane_destroy(struct kvs__lane *l)
{
	free(l->frame);
	free(l->ops);
	pthread_mutex_destroy(&l->mu);
}

/* Append op, encoded, to lane l's next frame (l->mu held). */
static int lane_add(kvs__node *n, struct kvs__lane *l, const kvs__preq *op,
                    kvs__panswer *answer, kvs__peer_cb cb, void *ud)
{
	kvs__buf b;
	size_t need;
	int rc;

	kvs__buf_init(&b, 0);
	if (l->len == 0)
		kvs__peer_req_head(&b, n->self_idx, kvs__node_epoch(n), 0);
	kvs__peer_req_op(&b, op);
	rc = b.rc;
	need = l->len + b.len;
	if (rc == KVS_OK && need > l->cap) {
		size_t cap = l->cap ? l->cap : 256;
		char *g;

		while (cap < need)
			cap *= 2;
		g = realloc(l->frame, cap);
		if (g == NULL) {
			rc = KVS_ENOMEM;
		} else {
			l->frame = g;
			l->cap = cap;
		}
	}
	if (rc == KVS_OK && l->n_ops == l->cap_ops) {
		size_t cap = l->cap_ops ? 2 * l->cap_ops : 8;
		struct kvs__lane_op *g = realloc(l->ops, cap * sizeof(*g));

		if (g == NULL) {
			rc = KVS_ENOMEM;
		} else {
			l->ops = g;
			l->cap_ops = cap;
		}
	}
	if (rc == KVS_OK) {
		memcpy(l->frame + l->len, b.data, b.len);
		l->len += b.len;
		l->ops[l->n_ops].cb = cb;
		l->ops[l->n_ops].ud = ud;
		l->ops[l->n_ops].answer = answer;
		l->n_ops++;
	}
	kvs__buf_free(&b);
	return rc;
}

/* Take lane l's next frame into f (l->mu held). */
static void lane_take(struct kvs__lane *l, struct flight *f)
{
	f->frame = l->frame;
	f->len = l->len;
	f->ops = l->ops;
	f->n_ops = l->n_ops;
	l->frame = NULL;
	l->len = l->cap = 0;
	l->ops = NULL;
	l->n_ops = l->cap_ops = 0;
}

static void flight_free(struct flight *f)
{
	free(f->frame);
	free(f->ops);
	free(f);
}

static void frame_done(void *ud, kvs__panswer *a);

/*
 * Send f; KVS_OK, or why not (f is then still the caller's). Once sent,
 * f belongs to frame_done, which may run on another thread before this
 * returns: f must not be touched after a success.
 */
static int flight_send(struct flight *f)
{
	kvs__node *n = f->n;
	unsigned timeout = n->cc->request_timeout_ms;
	char *frame = f->frame;
	int rc;

	if (lat_kind(f->lane) == KVS__LAT_FORWARD)
		timeout *= 2;
	kvs__peer_req_set_count(frame, f->n_ops);
	f->start_ms = kvs__node_now(n);
	atomic_fetch_add(&n->counters.peer_frames, 1);
	atomic_fetch_add(&n->counters.peer_messages, f->n_ops);
	f->frame = NULL; /* the peer operations take it */
	pthread_rwlock_rdlock(&n->send_lock);
	rc = n->closing ? KVS_ECLOSED
	                : n->ops->send(n->impl, f->peer, frame, f->len,
	                               f->n_ops, timeout, frame_done, f);
	pthread_rwlock_unlock(&n->send_lock);
	if (rc != KVS_OK)
		f->frame = frame;
	return rc;
}

/* Give each operation of f its answer: a's whole, or its part of a. */
static void deliver(struct flight *f, kvs__panswer *a)
{
	struct kvs__peer_state *p = &f->n->peers[f->peer];
	kvs__pshared *shared = NULL;

	if (f->n_ops == 1) {
		kvs__panswer_free(f->ops[0].answer);
		f->ops[0].answer = a;
		a = NULL;
	} else if (a->rc == KVS_OK) {
		shared = malloc(sizeof(*shared));
		if (shared != NULL) {
			atomic_init(&shared->refs, (unsigned)f->n_ops);
			shared->body = a->body;
			a->body = NULL;
		}
	}
	for (size_t i = 0; a != NULL && i < f->n_ops; i++) {
		kvs__panswer *mine = f->ops[i].answer;

		if (a->rc != KVS_OK || shared == NULL) {
			mine->rc = a->rc != KVS_OK ? a->rc : KVS_ENOMEM;
			mine->refused = a->refused;
			continue;
		}
		mine->rc = KVS_OK;
		mine->n = 1;
		mine->one = a->res[i];
		mine->res = &mine->one;
		mine->shared = shared;
	}
	kvs__panswer_free(a);
	for (size_t i = 0; i < f->n_ops; i++) {
		atomic_fetch_sub(&p->in_flight, 1);
		f->ops[i].cb(f->ops[i].ud, f->ops[i].answer);
	}
}

/* A frame that could not go: its operations fail with rc. */
static void fail_flight(struct flight *f, int rc)
{
	kvs__panswer *a = calloc(1, sizeof(*a));

	if (a == NULL) {
		/* Each operation has its own answer: use those. */
		struct kvs__peer_state *p = &f->n->peers[f->peer];

		for (size_t i = 0; i < f->n_ops; i++) {
			f->ops[i].answer->rc = rc;
			f->ops[i].answer->refused = 1;
			atomic_fetch_sub(&p->in_flight, 1);
			f->ops[i].cb(f->ops[i].ud, f->ops[i].answer);
		}
		flight_free(f);
		return;
	}
	a->rc = rc;
	a->refused = 1;
	deliver(f, a);
	flight_free(f);
}

/*
 * A flight of a lane ended (its frame came back, or could not go): send
 * what gathered meanwhile, if a flight is free. A frame that cannot go
 * fails its operations.
 */
static void lane_kick(kvs__node *n, size_t peer, int lane)
{
	struct kvs__lane *l = &n->peers[peer].lanes[lane];

	for (;;) {
		struct flight *next = NULL;
		int rc;

		pthread_mutex_lock(&l->mu);
		l->flights--;
		if (l->n_ops > 0 && l->flights < KVS__LANE_FLIGHTS &&
		    (next = calloc(1, sizeof(*next))) != NULL) {
			next->n = n;
			next->peer = peer;
			next->lane = lane;
			lane_take(l, next);
			l->flights++;
			l->sent_ms = kvs__node_now(n);
		}
		pthread_mutex_unlock(&l->mu);
		if (next == NULL)
			return;
		rc = flight_send(next);
		if (rc == KVS_OK)
			return;
		fail_flight(next, rc); /* and its flight ends: again */
	}
}

static void frame_done(void *ud, kvs__panswer *a)
{
	struct flight *f = ud;
	kvs__node *n = f->n;

	if (a->rc == KVS_OK)
		lat_note(&n->lat[lat_kind(f->lane)],
		         kvs__node_now(n) - f->start_ms);
	else if (a->rc != KVS_ECLOSED)
		atomic_fetch_add(&n->counters.peer_errors, 1);
	note_health(n, f->peer, a->rc);
	/* What gathered meanwhile leaves first. */
	lane_kick(n, f->peer, f->lane);
	deliver(f, a);
	flight_free(f);
}

static int node_send(kvs__node *n, size_t peer, const kvs__preq *op,
                     kvs__peer_cb cb, void *ud, int urgent)
{
	struct kvs__peer_state *p;
	struct kvs__lane *l;
	struct flight *f;
	kvs__panswer *answer;
	int lane, rc, now;

	if (peer >= n->n_shards || peer == n->self)
		return KVS_EINVAL;
	p = &n->peers[peer];
	if (!kvs__health_up(&p->health) &&
	    atomic_load(&p->in_flight) >= KVS__DOWN_IN_FLIGHT_MAX)
		return KVS_ECONNECT;
	answer = calloc(1, sizeof(*answer));
	f = calloc(1, sizeof(*f));
	if (answer == NULL || f == NULL) {
		free(answer);
		free(f);
		return KVS_ENOMEM;
	}
	lane = lane_of(op->code);
	l = &p->lanes[lane];
	f->n = n;
	f->peer = peer;
	f->lane = lane;
	atomic_fetch_add(&p->in_flight, 1);
	pthread_mutex_lock(&l->mu);
	/*
	 * At once when a flight is free and nothing waits (then the frame
	 * holds only this operation, so that a failure to send is this
	 * caller's alone), or when the waiting frame is full; otherwise
	 * with the waiting frame, when the frame out comes back.
	 */
	now = urgent || (l->n_ops == 0 && l->flights < KVS__LANE_FLIGHTS);
	if (!now) {
		unsigned slow = kvs__node_speculative_ms(n, lat_kind(lane));

		/* The waiting frame is full, or the frame out is late: the
		 * waiting one keeps waiting; this one goes alone. */
		now = l->n_ops >= KVS__LANE_MAX_OPS ||
		      l->len >= KVS__LANE_MAX_BYTES ||
		      (slow != 0 && kvs__node_now(n) - l->sent_ms > slow);
	}
	if (now) {
		struct kvs__lane alone;

		memset(&alone, 0, sizeof(alone));
		rc = lane_add(n, &alone, op, answer, cb, ud);
		if (rc == KVS_OK) {
			lane_take(&alone, f);
			l->flights++;
			l->sent_ms = kvs__node_now(n);
		}
		pthread_mutex_unlock(&l->mu);
		if (rc == KVS_OK) {
			rc = flight_send(f);
			if (rc != KVS_OK)
				lane_kick(n, peer, lane); /* ends our flight */
		}
		if (rc != KVS_OK) {
			atomic_fetch_sub(&p->in_flight, 1);
			free(f->frame);
			free(f->ops);
			free(f);
			free(answer);
			free(alone.frame);
			free(alone.ops);
		}
		return rc;
	}
	rc = lane_add(n, l, op, answer, cb, ud);
	pthread_mutex_unlock(&l->mu);
	free(f);
	if (rc != KVS_OK) {
		atomic_fetch_sub(&p->in_flight, 1);
		free(answer);
	}
	return rc;
}

int kvs__node_send(kvs__node *n, size_t peer, const kvs__preq *op,
                   kvs__peer_cb cb, void *ud)
{
	return node_send(n, peer, op, cb, ud, 0);
}

int kvs__node_send_now(kvs__node *n, size_t peer, const kvs__preq *op,
                       kvs__peer_cb cb, void *ud)
{
	return node_send(n, peer, op, cb, ud, 1);
}

/* ------------------------------------------------------------------ */
/* Probing                                                              */

/* The next probe of a peer: a second after an answer, after its back-off
 * (at most KVS__PROBE_DOWN_MAX_MS) after a failure. */
static uint64_t probe_wait(const struct kvs__peer_state *p)
{
	uint64_t wait;

	if (kvs__health_up(&p->health))
		return KVS__PROBE_INTERVAL_MS;
	wait = kvs__health_backoff_ms(&p->health);
	return wait < KVS__PROBE_DOWN_MAX_MS ? wait : KVS__PROBE_DOWN_MAX_MS;
}

static void probed(void *ud, int rc)
{
	struct kvs__peer_state *p = ud;

	note_health(p->n, p->i, rc);
	atomic_store(&p->next_probe_ms, kvs__node_now(p->n) + probe_wait(p));
	atomic_store(&p->probing, 0);
}

void kvs__node_tick(kvs__node *n)
{
	uint64_t now = kvs__node_now(n);

	for (int k = 0; k < KVS__LAT_KINDS; k++)
		lat_update(n, &n->lat[k]);
	kvs__hints_tick(n);
	kvs__aae_tick(n);
	for (size_t i = 0; i < n->n_shards; i++) {
		struct kvs__peer_state *p = &n->peers[i];
		int rc;

		if (i == n->self || now < atomic_load(&p->next_probe_ms) ||
		    atomic_load(&p->probing))
			continue;
		atomic_store(&p->probing, 1);
		pthread_rwlock_rdlock(&n->send_lock);
		rc = n->closing ? KVS_ECLOSED
		                : n->ops->probe(n->impl, i, probed, p);
		pthread_rwlock_unlock(&n->send_lock);
		if (rc == KVS_OK)
			atomic_fetch_add(&n->counters.probes, 1);
		else
			atomic_store(&p->probing, 0);
	}
}

static void *prober_main(void *arg)
{
	kvs__node *n = arg;

	pthread_setname_np(pthread_self(), "kvs-prober");
	pthread_mutex_lock(&n->prober_mu);
	while (!n->prober_stop) {
		struct timespec until;

		pthread_mutex_unlock(&n->prober_mu);
		kvs__node_tick(n);
		pthread_mutex_lock(&n->prober_mu);
		kvs__realtime_after(&until, KVS__PROBE_TICK_MS);
		if (!n->prober_stop)
			pthread_cond_timedwait(&n->prober_cv, &n->prober_mu,
			                       &until);
	}
	pthread_mutex_unlock(&n->prober_mu);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* This node's own store                                                */

struct kvs__pending {
	kvs__node *n;
	kvs_write_cb cb;
	void *ud;
};

struct kvs__pending *kvs__node_pending(kvs__node *n, kvs_write_cb cb,
                                       void *ud)
{
	struct kvs__pending *p = malloc(sizeof(*p));

	if (p == NULL)
		return NULL;
	p->n = n;
	p->cb = cb;
	p->ud = ud;
	atomic_fetch_add(&n->store_pending, 1);
	return p;
}

void kvs__node_pending_done(void *ud, int rc, const kvs_stamp *stamp,
                            int applied)
{
	struct kvs__pending *p = ud;
	kvs__node *n = p->n;
	kvs_write_cb cb = p->cb;
	void *cb_ud = p->ud;

	free(p);
	cb(cb_ud, rc, stamp, applied);
	atomic_fetch_sub(&n->store_pending, 1); /* last: close may free n */
}

void kvs__node_pending_cancel(struct kvs__pending *p)
{
	atomic_fetch_sub(&p->n->store_pending, 1);
	free(p);
}

int kvs__node_local_apply(kvs__node *n, const kvs_record *rec,
                          kvs_write_cb cb, void *ud)
{
	int applied = 0, rc;

	if (!n->o.inline_local_writes) {
		struct kvs__pending *p = kvs__node_pending(n, cb, ud);

		if (p == NULL)
			return KVS_ENOMEM;
		rc = kvs_store_apply_async(n->store, rec, kvs__node_pending_done,
		                           p);
		if (rc != KVS_OK)
			kvs__node_pending_cancel(p);
		return rc;
	}
	rc = kvs_store_apply(n->store, rec, &applied);
	if (rc == KVS_EKEYSIZE || rc == KVS_EVALSIZE || rc == KVS_EINVAL ||
	    rc == KVS_ECLOSED)
		return rc; /* as the asynchronous call would refuse it */
	cb(ud, rc, &rec->stamp, applied);
	return KVS_OK;
}

int kvs__node_local_write(kvs__node *n, int is_delete, const void *key,
                          size_t key_len, const void *value, size_t value_len,
                          const kvs__cond *cond, kvs_write_cb cb, void *ud)
{
	static const kvs_stamp none = {0, 0};
	kvs_stamp stamp = none;
	int rc;

	if (!n->o.inline_local_writes) {
		struct kvs__pending *p = kvs__node_pending(n, cb, ud);

		if (p == NULL)
			return KVS_ENOMEM;
		rc = kvs__store_write_async(n->store, is_delete, key, key_len,
		                            value, value_len, cond,
		                            kvs__node_pending_done, p);
		if (rc != KVS_OK)
			kvs__node_pending_cancel(p);
		return rc;
	}
	rc = kvs__store_write(n->store, is_delete, key, key_len, value,
	                      value_len, cond, &stamp);
	if (rc == KVS_EKEYSIZE || rc == KVS_EVALSIZE || rc == KVS_EINVAL ||
	    rc == KVS_ECLOSED)
		return rc;
	cb(ud, rc, &stamp, rc == KVS_OK || rc == KVS_NOTFOUND);
	return KVS_OK;
}

/* ------------------------------------------------------------------ */
/* Open, close, figures                                                 */

void kvs__node_stats_get(kvs__node *n, kvs__node_stats *st)
{
	st->forwarded = atomic_load(&n->counters.forwarded);
	st->replica_writes = atomic_load(&n->counters.replica_writes);
	st->replica_reads = atomic_load(&n->counters.replica_reads);
	st->read_repairs = atomic_load(&n->counters.read_repairs);
	st->peer_errors = atomic_load(&n->counters.peer_errors);
	st->quorum_failures = atomic_load(&n->counters.quorum_failures);
	st->probes = atomic_load(&n->counters.probes);
	st->speculative = atomic_load(&n->counters.speculative);
	st->peer_frames = atomic_load(&n->counters.peer_frames);
	st->peer_messages = atomic_load(&n->counters.peer_messages);
	st->read_fetches = atomic_load(&n->counters.read_fetches);
	st->hints_written = atomic_load(&n->counters.hints_written);
	st->hints_delivered = atomic_load(&n->counters.hints_delivered);
	st->hints_expired = atomic_load(&n->counters.hints_expired);
	st->hints_dropped = atomic_load(&n->counters.hints_dropped);
	st->fenced = atomic_load(&n->counters.fenced);
	kvs__node_full_writes(n, &st->full_map, &st->full_fs);
	st->links_up = st->link_frames = 0;
	if (n->ops == &kvs__peer_link_ops)
		kvs__peer_link_stats(n->impl, &st->links_up, &st->link_frames);
	st->links_serving_bytes = 0;
	st->links_served =
	        n->links != NULL
	                ? kvs__link_server_count(n->links,
	                                         &st->links_serving_bytes)
	                : 0;
}

void kvs__node_full_writes(kvs__node *n, uint64_t *map, uint64_t *fs)
{
	kvs__store_full_writes(n->store, map, fs);
}

uint64_t kvs__node_epoch(const kvs__node *n)
{
	return n->o.epoch != 0 ? n->o.epoch : 1;
}

kvs_store *kvs__node_store(kvs__node *n)
{
	return n->store;
}

/* "http[s]://host:port" of shard s, malloc'ed. */
static char *base_url(const kvs_cluster_config *cc, const kvs_shard_config *s)
{
	int v6 = strchr(s->host, ':') != NULL;
	size_t len = strlen(s->host) + 32;
	char *u = malloc(len);

	if (u != NULL)
		snprintf(u, len, v6 ? "%s://[%s]:%u" : "%s://%s:%u",
		         cc->tls_cert != NULL ? "https" : "http", s->host,
		         (unsigned)s->port);
	return u;
}

/* Links to the peers (link.h), over the HTTP transport n runs. */
static int start_links(kvs__node *n)
{
	kvs__peer_link_options lo;
	const char **hosts = calloc(n->n_shards, sizeof(*hosts));
	uint16_t *ports = calloc(n->n_shards, sizeof(*ports));
	int rc = KVS_ENOMEM;

	if (hosts != NULL && ports != NULL) {
		for (size_t i = 0; i < n->n_shards; i++) {
			const kvs_shard_config *s = kvs_config_shard(n->cfg, i);

			hosts[i] = s->host;
			ports[i] = s->port;
		}
		memset(&lo, 0, sizeof(lo));
		lo.self = n->self;
		lo.hosts = hosts;
		lo.ports = ports;
		lo.n = n->n_shards;
		lo.secret = n->cc->cluster_secret;
		lo.connect_timeout_ms = n->cc->connect_timeout_ms;
		lo.request_timeout_ms = n->cc->request_timeout_ms;
		lo.http_ops = n->ops;
		lo.http = n->impl;
		/* The link owns the HTTP transport from here, even failing. */
		n->ops = NULL;
		n->impl = NULL;
		rc = kvs__peer_link_new(&n->impl, &lo);
		if (rc == KVS_OK)
			n->ops = &kvs__peer_link_ops;
	}
	free(hosts);
	free(ports);
	return rc;
}

static int start_http_peers(kvs__node *n, char *errbuf, size_t errlen)
{
	kvs__peer_http_options po;
	char **urls = calloc(n->n_shards, sizeof(*urls));
	int rc = KVS_ENOMEM;

	if (urls == NULL)
		return KVS_ENOMEM;
	for (size_t i = 0; i < n->n_shards; i++) {
		urls[i] = base_url(n->cc, kvs_config_shard(n->cfg, i));
		if (urls[i] == NULL)
			goto out;
	}
	memset(&po, 0, sizeof(po));
	po.self_idx = n->self_idx;
	po.urls = (const char *const *)urls;
	po.n_urls = n->n_shards;
	po.secret = n->cc->cluster_secret;
	po.tls_ca = n->cc->tls_ca;
	if (n->cc->tls_mutual) {
		po.tls_cert = n->cc->tls_peer_cert != NULL ? n->cc->tls_peer_cert
		                                           : n->cc->tls_cert;
		po.tls_key = n->cc->tls_peer_key != NULL ? n->cc->tls_peer_key
		                                         : n->cc->tls_key;
	}
	po.connect_timeout_ms = n->cc->connect_timeout_ms;
	po.request_timeout_ms = n->cc->request_timeout_ms;
	po.probe_timeout_ms = n->cc->request_timeout_ms < KVS__PROBE_TIMEOUT_MS
	                              ? n->cc->request_timeout_ms
	                              : KVS__PROBE_TIMEOUT_MS;
	rc = kvs__peer_http_new(&n->impl, &po);
	if (rc == KVS_OK)
		n->ops = &kvs__peer_http_ops;
	if (rc == KVS_OK && n->cc->peer_links && n->cc->tls_cert == NULL)
		rc = start_links(n);
	if (rc != KVS_OK)
		snprintf(errbuf, errlen, "cannot start the peer transport: %s",
		         kvs_strerror(rc));
out:
	for (size_t i = 0; i < n->n_shards; i++)
		free(urls[i]);
	free(urls);
	return rc;
}

int kvs__node_open(kvs__node **out, const kvs_config *cfg, const char *shard,
                   const char *store_path, const kvs__node_options *opts,
                   char *errbuf, size_t errlen)
{
	const kvs_cluster_config *cc = kvs_config_cluster(cfg);
	const kvs_shard_config *me = kvs_config_find_shard(cfg, shard);
	kvs_ring_member *members = NULL;
	const double *before = NULL;
	kvs__node *n;
	int rc, networked = 0;

	*out = NULL;
	n = me != NULL ? calloc(1, sizeof(*n)) : NULL;
	if (n == NULL) {
		/* The node takes the peer implementation in every case. */
		if (opts != NULL && opts->peer_ops != NULL)
			opts->peer_ops->free(opts->peer_impl);
		if (me != NULL)
			return KVS_ENOMEM;
		snprintf(errbuf, errlen, "%s: no shard named \"%s\"", cc->path,
		         shard);
		return KVS_EINVAL;
	}
	if (opts != NULL)
		n->o = *opts;
	if (n->o.now_ms == NULL)
		n->o.now_ms = real_now_ms;
	n->cfg = cfg;
	n->cc = cc;
	n->self = (size_t)(me - kvs_config_shard(cfg, 0));
	n->self_idx = me->idx;
	n->n_shards = kvs_config_shard_count(cfg);
	pthread_rwlock_init(&n->send_lock, NULL);
	pthread_mutex_init(&n->prober_mu, NULL);
	pthread_cond_init(&n->prober_cv, NULL);
	/* Taken now, so that close frees it whatever happens below. */
	n->ops = n->o.peer_ops;
	n->impl = n->o.peer_impl;
	/* Until answers have been timed: the longest delay. */
	for (int k = 0; k < KVS__LAT_KINDS; k++)
		atomic_init(&n->lat[k].delay_ms, cc->speculative_retry_max_ms);
	n->peers = calloc(n->n_shards, sizeof(*n->peers));
	for (size_t i = 0; n->peers != NULL && i < n->n_shards; i++)
		for (int l = 0; l < KVS__LANES; l++)
			lane_init(&n->peers[i].lanes[l]);
	members = calloc(n->n_shards, sizeof(*members));
	rc = KVS_ENOMEM;
	if (n->peers == NULL || members == NULL)
		goto fail;
	for (size_t i = 0; i < n->n_shards; i++) {
		const kvs_shard_config *s = kvs_config_shard(cfg, i);

		n->peers[i].n = n;
		n->peers[i].i = i;
		kvs__health_init(&n->peers[i].health);
		members[i].name = s->name;
		members[i].weight = s->weight;
		if (s->weight > 0.0)
			n->holders++;
	}
	rc = kvs_ring_new(&n->ring, members, n->n_shards, cc->vnodes);
	atomic_init(&n->fence, n->o.fence);
	n->move_phase = kvs__config_move(cfg, &before);
	n->move_paused = kvs__config_move_paused(cfg);
	if (rc == KVS_OK && n->move_phase != KVS__MOVE_NONE) {
		/* The ring before the move as well: reads follow it in
		 * DUAL, and the one after from READ_NEW on. */
		for (size_t i = 0; i < n->n_shards; i++)
			members[i].weight = before[i];
		rc = kvs_ring_new(&n->ring_b, members, n->n_shards,
		                  cc->vnodes);
		if (rc == KVS_OK && n->move_phase == KVS__MOVE_DUAL) {
			kvs_ring *after = n->ring;

			n->ring = n->ring_b;
			n->ring_b = after;
		}
	}
	if (rc != KVS_OK) {
		snprintf(errbuf, errlen, "%s: cannot build the ring: %s",
		         cc->path, kvs_strerror(rc));
		goto fail;
	}
	if (n->ops == NULL) {
		rc = start_http_peers(n, errbuf, errlen);
		if (rc != KVS_OK)
			goto fail;
		networked = 1;
	}
	if (n->o.store != NULL) {
		n->store = n->o.store;
	} else {
		rc = kvs__node_store_open(&n->store, cfg, shard, store_path,
		                          errbuf, errlen);
		if (rc != KVS_OK)
			goto fail;
	}
	if (n->o.wall != NULL)
		kvs__store_set_wall(n->store, n->o.wall, n->o.wall_ud);
	rc = kvs__hints_open(n);
	if (rc != KVS_OK) {
		snprintf(errbuf, errlen, "%s: cannot read the hints: %s",
		         store_path, kvs_strerror(rc));
		goto fail;
	}
	if (networked && cc->peer_links && cc->tls_cert == NULL &&
	    n->n_shards > 1 &&
	    (rc = kvs__link_server_new(&n->links, n,
	                               kvs__node_peer_frame_max(cc))) !=
	            KVS_OK) {
		snprintf(errbuf, errlen, "cannot serve peer links: %s",
		         kvs_strerror(rc));
		goto fail;
	}
	if (!n->o.no_prober && n->n_shards > 1) {
		if (pthread_create(&n->prober, NULL, prober_main, n) != 0) {
			snprintf(errbuf, errlen, "cannot start the prober thread");
			rc = KVS_ESYS;
			goto fail;
		}
		n->prober_started = 1;
	}
	free(members);
	*out = n;
	return KVS_OK;
fail:
	free(members);
	kvs__node_close(n);
	return rc;
}

int kvs__node_store_open(kvs_store **out, const kvs_config *cfg,
                         const char *shard, const char *store_path,
                         char *errbuf, size_t errlen)
{
	const kvs_cluster_config *cc = kvs_config_cluster(cfg);
	const kvs_shard_config *me = kvs_config_find_shard(cfg, shard);
	kvs_store_options sopts;
	int rc;

	*out = NULL;
	if (me == NULL)
		return KVS_EINVAL;
	kvs_store_options_init(&sopts);
	if (cc->map_size != 0)
		sopts.map_size = cc->map_size;
	sopts.max_map_size = cc->max_map_size;
	sopts.sync = cc->sync;
	sopts.shard_id = me->idx;
	sopts.max_clock_ahead_ms = cc->max_clock_skew_ms;
	rc = kvs_store_open(out, store_path, &sopts);
	if (rc != KVS_OK)
		snprintf(errbuf, errlen, "%s: cannot open the store: %s",
		         store_path, kvs_strerror(rc));
	return rc;
}

size_t kvs__node_peer_frame_max(const kvs_cluster_config *cc)
{
	/* A value's encoding and a key, and the rest of the operation. */
	const size_t slack = 64 * 1024;

	return KVS__LANE_MAX_BYTES + cc->max_value_bytes * 2 + slack;
}

int kvs__node_serves_links(const kvs__node *n)
{
	return n->links != NULL;
}

int kvs__node_serve_link(kvs__node *n, int fd, void (*on_close)(void *ud),
                         void *ud)
{
	if (n->links == NULL)
		return KVS_ENOTSUP;
	return kvs__link_server_add(n->links, fd, on_close, ud);
}

void kvs__node_close(kvs__node *n)
{
	if (n == NULL)
		return;
	/* Links read no more frames; those being served still answer,
	 * and are waited for: their operations may still be sending to
	 * peers (a write's replicas), which closing would fail. */
	kvs__link_server_stop(n->links);
	if (n->links != NULL) {
		uint64_t start = kvs__mono_ms(), serving = 0;

		for (;;) {
			(void)kvs__link_server_count(n->links, &serving);
			if (serving == 0 ||
			    kvs__mono_ms() - start > SERVING_WAIT_MS)
				break;
			usleep(1000);
		}
	}
	if (n->prober_started) {
		pthread_mutex_lock(&n->prober_mu);
		n->prober_stop = 1;
		pthread_cond_signal(&n->prober_cv);
		pthread_mutex_unlock(&n->prober_mu);
		pthread_join(n->prober, NULL);
	}
	/* No new messages from now on; then the peers end what is in
	 * flight (its completions may still write to the store). */
	pthread_rwlock_wrlock(&n->send_lock);
	n->closing = 1;
	pthread_rwlock_unlock(&n->send_lock);
	if (n->ops != NULL)
		n->ops->free(n->impl);
	/* Operations still waiting in a lane (none should: each waits for
	 * a flight, which the peers ended) fail now. */
	for (size_t i = 0; n->peers != NULL && i < n->n_shards; i++)
		for (int l = 0; l < KVS__LANES; l++) {
			struct kvs__lane *lane = &n->peers[i].lanes[l];
			struct flight *f = calloc(1, sizeof(*f));

			if (lane->n_ops > 0 && f != NULL) {
				f->n = n;
				f->peer = i;
				f->lane = l;
				lane_take(lane, f);
				fail_flight(f, KVS_ECLOSED);
			} else {
				free(f);
			}
			lane_destroy(lane);
		}
	/* Its writes still queued complete while it exists (a borrowed
	 * store is not closed below, which would have waited for them). */
	{
		uint64_t start = kvs__mono_ms();

		while (atomic_load(&n->store_pending) > 0 &&
		       kvs__mono_ms() - start < PENDING_WAIT_MS)
			usleep(1000);
		if (atomic_load(&n->store_pending) > 0 && n->o.log != NULL)
			n->o.log(n->o.log_ud, KVS__LOG_ERROR,
			         "closing with writes still queued in the "
			         "store after 60 s");
	}
	if (n->o.store == NULL)
		kvs_store_close(n->store);
	/* Every frame is answered: the links end. */
	kvs__link_server_free(n->links);
	kvs__aae_close(n);
	kvs_ring_free(n->ring);
	kvs_ring_free(n->ring_b);
	free(n->peers);
	pthread_cond_destroy(&n->prober_cv);
	pthread_mutex_destroy(&n->prober_mu);
	pthread_rwlock_destroy(&n->send_lock);
	free(n);
}
