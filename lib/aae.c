/*
 * aae.c - anti-entropy: replicas compare digests of the ring's segments
 * and repair, both ways, the keys where they differ.
 *
 * Every store keeps a digest per segment of the ring's hash space (XOR of
 * a hash of each record's key and version, updated by every write: see
 * store_internal.h) and can list a segment's keys and versions without a
 * scan. A pass of this node exchanges with each other shard in turn, one
 * step per probe tick (250 ms), so that it is spread out and bounded:
 *
 *   1. the segments both own at least in part, as runs of consecutive
 *      segments: the peer answers one digest per run (folded), compared
 *      with ours;
 *   2. for runs that differ, one digest per segment;
 *   3. for segments that differ, at most AAE_SEGMENTS_PER_TICK per tick:
 *      the peer's keys and versions of the segment against ours, keeping
 *      only keys both own; the newer side's record is sent to the other
 *      (apply if newer: a repair and a concurrent write commute).
 *
 * With nothing to repair a pass costs each peer one small message per
 * step 1 (a few hundred bytes per run) and reading 65,536 digests.
 * The segments are placement's slots (KVS_RING_SLOT_OF), so every key of
 * a segment has the same owners.
 */
#include <stdlib.h>
#include <string.h>

#include "config_internal.h"
#include "node_internal.h"
#include "protocol.h"
#include "util.h"

/* Runs per DIGESTS message, and segments per message in step 2. */
#define AAE_RUNS_PER_MSG 4096u
#define AAE_SEGS_PER_MSG 4096u
/* Segments the tombstone purge looks at per tick, and the most of those
 * with tombstones it reads. */
#define PURGE_LOOK_PER_TICK 4096u
#define PURGE_SEGMENTS_PER_TICK 64u
/* Segments compared key by key per tick (step 3). */
#define AAE_SEGMENTS_PER_TICK 256u
/* The same for a move's copy, which has a node waiting for it. */
#define MOVE_SEGMENTS_PER_TICK 2048u
/* A move's copy that could not reach every peer is tried again after
 * this. */
#define MOVE_RETRY_MS 1000u
/* Segments the drop sweep looks at per tick, and the most of those with
 * records it reads. */
#define DROP_LOOK_PER_TICK 16384u
#define DROP_SEGMENTS_PER_TICK 1024u
/* Most differing segments one exchange repairs; the rest wait for the
 * next pass. */
#define AAE_MAX_SEGMENTS 16384u
/* A pass that could not reach every peer is tried again after this. */
#define AAE_RETRY_MS 10000u

struct kvs__aae_run {
	uint32_t first, count;
};

/* One exchange with one peer. */
struct kvs__aae_xchg {
	kvs__node *n;
	size_t peer;
	int step;          /* 1, 2, 3; 4: done */
	_Atomic unsigned inflight; /* messages of the current step */
	_Atomic int failed;
	pthread_mutex_t mu;
	struct kvs__aae_run *runs;
	size_t n_runs;
	unsigned char *run_differs;
	uint32_t *segs; /* segments that differ */
	size_t n_segs, next_seg;
	uint32_t step_s; /* wall-clock seconds when the step's messages left */
	_Atomic uint32_t *synced; /* the node's record for this peer */
	int move;      /* a move's copy (node_internal.h), not a pass */
	int truncated; /* more segments differed than one exchange takes */
};

/* A message of the exchange and what it covers. */
struct msg {
	struct kvs__aae_xchg *x;
	size_t first, count; /* runs (step 1) or pairs (step 2) */
	struct kvs__aae_run *pairs;   /* step 2: the ranges asked */
	size_t n_pairs;
	uint32_t seg;        /* step 3 */
};

static int owns(const size_t *owners, size_t n, size_t who)
{
	for (size_t i = 0; i < n; i++)
		if (owners[i] == who)
			return 1;
	return 0;
}

/* Whether positions of the ring at hash are owned by both self and peer. */
static int both_at(kvs__node *n, uint64_t hash, size_t peer)
{
	size_t o[KVS_RING_MAX_OWNERS];
	size_t k = kvs_ring_owners_at(n->ring, hash, o, n->cc->replication);

	return owns(o, k, n->self) && owns(o, k, peer);
}

/* The runs of segments that self and peer both own. */
static int shared_runs(kvs__node *n, size_t peer, struct kvs__aae_run **out,
                       size_t *n_out)
{
	struct kvs__aae_run *runs = NULL;
	size_t n_runs = 0, cap = 0;

	for (uint32_t s = 0; s < KVS__AAE_SEGMENTS; s++) {
		/* A segment is a slot: one set of owners for all of it. */
		if (!both_at(n, (uint64_t)s << 48, peer))
			continue;
		if (n_runs > 0 &&
		    runs[n_runs - 1].first + runs[n_runs - 1].count == s) {
			runs[n_runs - 1].count++;
			continue;
		}
		if (n_runs == cap) {
			size_t c = cap ? 2 * cap : 64;
			struct kvs__aae_run *g = realloc(runs, c * sizeof(*g));

			if (g == NULL) {
				free(runs);
				return KVS_ENOMEM;
			}
			runs = g;
			cap = c;
		}
		runs[n_runs].first = s;
		runs[n_runs].count = 1;
		n_runs++;
	}
	*out = runs;
	*n_out = n_runs;
	return KVS_OK;
}

static uint32_t wall_s(kvs__node *n)
{
	return (uint32_t)(KVS_HLC_PHYSICAL(kvs__store_clock_now(n->store)) /
	                  1000u);
}

/* Segments seg .. seg + count - 1 were equal on both sides for a compare
 * asked at x->step_s. */
static void mark_synced(struct kvs__aae_xchg *x, uint32_t seg,
                        uint32_t count)
{
	if (x->synced == NULL)
		return;
	for (uint32_t end = seg + count; seg < end; seg++)
		if (atomic_load_explicit(&x->synced[seg],
		                         memory_order_relaxed) < x->step_s)
			atomic_store_explicit(&x->synced[seg], x->step_s,
			                      memory_order_relaxed);
}

static uint64_t local_fold(kvs__node *n, const struct kvs__aae_run *r)
{
	return kvs__store_segments_fold(n->store, r->first, r->count);
}

static void msg_end(struct msg *m, int ok)
{
	struct kvs__aae_xchg *x = m->x;

	if (!ok)
		atomic_store(&x->failed, 1);
	free(m->pairs);
	free(m);
	atomic_fetch_sub(&x->inflight, 1);
}

/* Send op to the exchange's peer; m is the message's context. */
static void xsend(struct kvs__aae_xchg *x, const kvs__preq *op,
                 kvs__peer_cb cb, struct msg *m)
{
	atomic_fetch_add(&x->inflight, 1);
	if (kvs__node_send(x->n, x->peer, op, cb, m) != KVS_OK)
		msg_end(m, 0);
}

/* ------------------------------------------------------------------ */
/* Step 1: a digest per run                                             */

static void folds_back(void *ud, kvs__panswer *a)
{
	struct msg *m = ud;
	struct kvs__aae_xchg *x = m->x;
	const kvs__pres *r = a->rc == KVS_OK && a->n == 1 ? &a->res[0] : NULL;
	int ok = r != NULL && r->rc == KVS_OK && r->value_len == 8 * m->count;

	for (size_t i = 0; ok && i < m->count; i++) {
		const struct kvs__aae_run *run = &x->runs[m->first + i];
		uint64_t theirs = kvs__get_le64((const unsigned char *)r->value + 8 * i);

		x->run_differs[m->first + i] = theirs != local_fold(x->n, run);
		if (!x->run_differs[m->first + i])
			mark_synced(x, run->first, run->count);
	}
	kvs__panswer_free(a);
	msg_end(m, ok);
}

static void step_folds(struct kvs__aae_xchg *x)
{
	x->step_s = wall_s(x->n);
	for (size_t first = 0; first < x->n_runs; first += AAE_RUNS_PER_MSG) {
		size_t count = x->n_runs - first;
		struct msg *m = calloc(1, sizeof(*m));
		unsigned char *v;
		kvs__preq op;

		if (count > AAE_RUNS_PER_MSG)
			count = AAE_RUNS_PER_MSG;
		v = malloc(8 * count);
		if (m == NULL || v == NULL) {
			free(m);
			free(v);
			atomic_store(&x->failed, 1);
			return;
		}
		m->x = x;
		m->first = first;
		m->count = count;
		for (size_t i = 0; i < count; i++) {
			kvs__put_le32(v + 8 * i, x->runs[first + i].first);
			kvs__put_le32(v + 8 * i + 4, x->runs[first + i].count);
		}
		memset(&op, 0, sizeof(op));
		op.code = KVS__P_DIGESTS;
		op.flags = KVS__PQ_FOLD;
		op.value = v;
		op.value_len = 8 * count;
		xsend(x, &op, folds_back, m); /* op is encoded at once */
		free(v);
	}
}

/* ------------------------------------------------------------------ */
/* Step 2: a digest per segment of the runs that differ                 */

static void digests_back(void *ud, kvs__panswer *a)
{
	struct msg *m = ud;
	struct kvs__aae_xchg *x = m->x;
	const kvs__pres *r = a->rc == KVS_OK && a->n == 1 ? &a->res[0] : NULL;
	size_t total = 0;
	int ok;

	for (size_t i = 0; i < m->n_pairs; i++)
		total += m->pairs[i].count;
	ok = r != NULL && r->rc == KVS_OK && r->value_len == 8 * total;
	if (ok) {
		const unsigned char *p = r->value;

		pthread_mutex_lock(&x->mu);
		for (size_t i = 0; i < m->n_pairs; i++)
			for (uint32_t s = m->pairs[i].first;
			     s < m->pairs[i].first + m->pairs[i].count; s++, p += 8)
				if (kvs__get_le64(p) ==
				    kvs__store_segment_digest(x->n->store, s))
					mark_synced(x, s, 1);
				else if (x->n_segs < AAE_MAX_SEGMENTS)
					x->segs[x->n_segs++] = s;
				else
					x->truncated = 1;
		pthread_mutex_unlock(&x->mu);
	}
	kvs__panswer_free(a);
	msg_end(m, ok);
}

static void flush_pairs(struct kvs__aae_xchg *x, struct kvs__aae_run *pairs,
                        size_t n_pairs)
{
	struct msg *m = calloc(1, sizeof(*m));
	unsigned char *v = malloc(8 * n_pairs + 1);
	kvs__preq op;

	if (m == NULL || v == NULL) {
		free(m);
		free(v);
		free(pairs);
		atomic_store(&x->failed, 1);
		return;
	}
	m->x = x;
	m->pairs = pairs;
	m->n_pairs = n_pairs;
	for (size_t i = 0; i < n_pairs; i++) {
		kvs__put_le32(v + 8 * i, pairs[i].first);
		kvs__put_le32(v + 8 * i + 4, pairs[i].count);
	}
	memset(&op, 0, sizeof(op));
	op.code = KVS__P_DIGESTS;
	op.value = v;
	op.value_len = 8 * n_pairs;
	xsend(x, &op, digests_back, m);
	free(v);
}

static void step_digests(struct kvs__aae_xchg *x)
{
	struct kvs__aae_run *pairs = NULL;
	size_t n_pairs = 0, segs = 0;

	x->step_s = wall_s(x->n);
	x->segs = malloc(AAE_MAX_SEGMENTS * sizeof(*x->segs));
	if (x->segs == NULL) {
		atomic_store(&x->failed, 1);
		return;
	}
	for (size_t i = 0; i < x->n_runs; i++) {
		struct kvs__aae_run left = x->runs[i];

		if (!x->run_differs[i])
			continue;
		while (left.count > 0) {
			uint32_t take = left.count;

			if (take > AAE_SEGS_PER_MSG - segs)
				take = (uint32_t)(AAE_SEGS_PER_MSG - segs);
			if (pairs == NULL) {
				pairs = malloc(AAE_SEGS_PER_MSG * sizeof(*pairs));
				if (pairs == NULL) {
					atomic_store(&x->failed, 1);
					return;
				}
			}
			pairs[n_pairs].first = left.first;
			pairs[n_pairs].count = take;
			n_pairs++;
			segs += take;
			left.first += take;
			left.count -= take;
			if (segs == AAE_SEGS_PER_MSG) {
				flush_pairs(x, pairs, n_pairs);
				pairs = NULL;
				n_pairs = segs = 0;
			}
		}
	}
	if (n_pairs > 0)
		flush_pairs(x, pairs, n_pairs);
	else
		free(pairs);
}

/* ------------------------------------------------------------------ */
/* Step 3: keys of the segments that differ                             */

struct entry {
	const unsigned char *key;
	size_t key_len;
	kvs_stamp stamp;
	unsigned flags;
};

struct side {
	struct entry *e;
	size_t n, cap;
	kvs__buf keys; /* the local side's keys */
	kvs__node *n_;
	size_t peer;
};

static int add_entry(struct side *sd, const void *key, size_t key_len,
                     const kvs_stamp *stamp, unsigned flags)
{
	kvs__route r;

	/* Only keys both own: a straddling segment holds others. */
	kvs__node_route(sd->n_, key, key_len, &r);
	if (!owns(r.owners, r.n_all, sd->n_->self) ||
	    !owns(r.owners, r.n_all, sd->peer))
		return 0;
	if (sd->n == sd->cap) {
		size_t c = sd->cap ? 2 * sd->cap : 64;
		struct entry *g = realloc(sd->e, c * sizeof(*g));

		if (g == NULL)
			return -1;
		sd->e = g;
		sd->cap = c;
	}
	sd->e[sd->n].key = key;
	sd->e[sd->n].key_len = key_len;
	sd->e[sd->n].stamp = *stamp;
	sd->e[sd->n].flags = flags;
	sd->n++;
	return 0;
}

/* Local keys are copied (the scan's transaction ends); their offsets are
 * kept in key and fixed up once the copy no longer moves. */
static int add_local(void *ud, const void *key, size_t key_len,
                     const kvs_stamp *stamp, unsigned flags)
{
	struct side *sd = ud;
	size_t at = sd->keys.len;

	kvs__buf_add(&sd->keys, key, key_len);
	if (sd->keys.rc != KVS_OK)
		return 1;
	if (add_entry(sd, key, key_len, stamp, flags) != 0)
		return 1;
	if (sd->n > 0 && sd->e[sd->n - 1].key == key)
		sd->e[sd->n - 1].key = (const unsigned char *)(uintptr_t)at;
	return 0;
}

static int entry_cmp(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
	int c = memcmp(x->key, y->key, n);

	if (c != 0)
		return c;
	return x->key_len < y->key_len ? -1 : x->key_len > y->key_len;
}

struct repair {
	struct kvs__aae_xchg *x;
	size_t bytes;
	kvs_record rec; /* a pull: the record to apply here */
};

static void pushed(void *ud, kvs__panswer *a)
{
	struct repair *rp = ud;
	struct kvs__aae_xchg *x = rp->x;
	int ok = a->rc == KVS_OK && a->n == 1 && a->res[0].rc == KVS_OK;

	if (ok) {
		atomic_fetch_add(&x->n->aae.keys_repaired, 1);
		atomic_fetch_add(&x->n->aae.bytes_moved, rp->bytes);
	}
	kvs__panswer_free(a);
	free(rp);
	atomic_fetch_sub(&x->inflight, 1);
}

/* Send this node's record of key to the peer. */
static void push(struct kvs__aae_xchg *x, const struct entry *e);

struct push_read {
	struct kvs__aae_xchg *x;
};

static int push_record(void *ud, const kvs_record *rec)
{
	struct push_read *pr = ud;
	struct kvs__aae_xchg *x = pr->x;
	struct repair *rp = calloc(1, sizeof(*rp));
	kvs__preq op;

	if (rp == NULL)
		return 0;
	rp->x = x;
	rp->bytes = rec->key_len + rec->value_len;
	memset(&op, 0, sizeof(op));
	op.code = KVS__P_APPLY;
	op.flags = (rec->flags & KVS_RECORD_TOMBSTONE) ? KVS__PQ_TOMBSTONE : 0;
	op.stamp = rec->stamp;
	op.key = rec->key;
	op.key_len = rec->key_len;
	op.value = rec->value;
	op.value_len = rec->value_len;
	atomic_fetch_add(&x->inflight, 1);
	if (kvs__node_send(x->n, x->peer, &op, pushed, rp) != KVS_OK) {
		free(rp);
		atomic_fetch_sub(&x->inflight, 1);
	}
	return 0;
}

static void push(struct kvs__aae_xchg *x, const struct entry *e)
{
	struct push_read pr = {x};

	(void)kvs_store_read(x->n->store, e->key, e->key_len,
	                     KVS_READ_TOMBSTONES, push_record, &pr);
}

static void applied_here(void *ud, int rc, const kvs_stamp *stamp,
                         int applied)
{
	struct repair *rp = ud;
	struct kvs__aae_xchg *x = rp->x;

	(void)stamp;
	if (rc == KVS_OK && applied) {
		atomic_fetch_add(&x->n->aae.keys_repaired, 1);
		atomic_fetch_add(&x->n->aae.bytes_moved, rp->bytes);
	}
	if (rc != KVS_OK)
		atomic_store(&x->failed, 1); /* compared again next pass */
	free((void *)rp->rec.key);
	free(rp);
	atomic_fetch_sub(&x->inflight, 1);
}

static void pulled(void *ud, kvs__panswer *a)
{
	struct repair *rp = ud;
	struct kvs__aae_xchg *x = rp->x;
	const kvs__pres *r = a->rc == KVS_OK && a->n == 1 ? &a->res[0] : NULL;
	unsigned char *copy;

	if (r == NULL || r->rc != KVS_OK || (r->flags & KVS__PA_DIGEST) ||
	    (copy = malloc(rp->rec.key_len + r->value_len + 1)) == NULL) {
		atomic_store(&x->failed, 1); /* compared again next pass */
		kvs__panswer_free(a);
		free((void *)rp->rec.key);
		free(rp);
		atomic_fetch_sub(&x->inflight, 1);
		return;
	}
	memcpy(copy, rp->rec.key, rp->rec.key_len);
	if (r->value_len > 0)
		memcpy(copy + rp->rec.key_len, r->value, r->value_len);
	free((void *)rp->rec.key);
	rp->rec.key = copy;
	rp->rec.value = copy + rp->rec.key_len;
	rp->rec.value_len = r->value_len;
	rp->rec.stamp = r->stamp;
	rp->rec.flags = (r->flags & KVS__PA_TOMBSTONE) ? KVS_RECORD_TOMBSTONE
	                                               : 0;
	rp->bytes = rp->rec.key_len + r->value_len;
	if (x->move) { /* streamed to this node, newer or not */
		atomic_fetch_add(&x->n->move.keys, 1);
		atomic_fetch_add(&x->n->move.bytes, rp->bytes);
	}
	kvs__panswer_free(a);
	if (kvs__node_local_apply(x->n, &rp->rec, applied_here, rp) != KVS_OK)
		applied_here(rp, KVS_EIO, NULL, 0);
}

/* Fetch the peer's record of key and apply it here. */
static void pull(struct kvs__aae_xchg *x, const struct entry *e)
{
	struct repair *rp = calloc(1, sizeof(*rp));
	unsigned char *key = malloc(e->key_len);
	kvs__preq op;

	if (rp == NULL || key == NULL) {
		free(rp);
		free(key);
		return;
	}
	memcpy(key, e->key, e->key_len);
	rp->x = x;
	rp->rec.key = key;
	rp->rec.key_len = e->key_len;
	memset(&op, 0, sizeof(op));
	op.code = KVS__P_READ;
	op.key = key;
	op.key_len = e->key_len;
	atomic_fetch_add(&x->inflight, 1);
	if (kvs__node_send(x->n, x->peer, &op, pulled, rp) != KVS_OK) {
		free(key);
		free(rp);
		atomic_fetch_sub(&x->inflight, 1);
	}
}

/* A tombstone past its grace period: the side that lacks the key does
 * not get it (it may have been purged there already; it hides nothing). */
static int expired_tombstone(kvs__node *n, const struct entry *e,
                             uint32_t now_s)
{
	uint32_t t = (uint32_t)(KVS_HLC_PHYSICAL(e->stamp.hlc) / 1000u);

	return (e->flags & KVS_RECORD_TOMBSTONE) &&
	       n->cc->tombstone_grace_s != 0 && now_s > t &&
	       now_s - t > n->cc->tombstone_grace_s;
}

static void segkeys_back(void *ud, kvs__panswer *a)
{
	struct msg *m = ud;
	struct kvs__aae_xchg *x = m->x;
	const kvs__pres *r = a->rc == KVS_OK && a->n == 1 ? &a->res[0] : NULL;
	struct side theirs, ours;
	kvs__precs it;
	kvs_record rec;
	size_t i = 0, j = 0, repairs = 0;
	int ok = r != NULL && r->rc == KVS_OK;

	memset(&theirs, 0, sizeof(theirs));
	memset(&ours, 0, sizeof(ours));
	theirs.n_ = ours.n_ = x->n;
	theirs.peer = ours.peer = x->peer;
	kvs__buf_init(&ours.keys, 0);
	if (ok) {
		kvs__precs_start(&it, r);
		while (ok && kvs__precs_next(&it, &rec))
			ok = add_entry(&theirs, rec.key, rec.key_len, &rec.stamp,
			               rec.flags) == 0;
	}
	if (ok)
		ok = kvs__store_segment_scan(x->n->store, m->seg, add_local,
		                             &ours) == KVS_OK &&
		     ours.keys.rc == KVS_OK;
	if (ok) {
		uint32_t now_s = wall_s(x->n);

		for (size_t k = 0; k < ours.n; k++)
			ours.e[k].key = (const unsigned char *)ours.keys.data +
			                (uintptr_t)ours.e[k].key;
		if (theirs.n > 1)
			qsort(theirs.e, theirs.n, sizeof(*theirs.e), entry_cmp);
		if (ours.n > 1)
			qsort(ours.e, ours.n, sizeof(*ours.e), entry_cmp);
		while (i < ours.n || j < theirs.n) {
			int c = i == ours.n     ? 1
			        : j == theirs.n ? -1
			                        : entry_cmp(&ours.e[i], &theirs.e[j]);

			if (c < 0) {
				if (!expired_tombstone(x->n, &ours.e[i], now_s)) {
					push(x, &ours.e[i]);
					repairs++;
				}
				i++;
			} else if (c > 0) {
				if (!expired_tombstone(x->n, &theirs.e[j], now_s)) {
					pull(x, &theirs.e[j]);
					repairs++;
				}
				j++;
			} else {
				int s = kvs_stamp_cmp(&ours.e[i].stamp,
				                      &theirs.e[j].stamp);

				if (s > 0)
					push(x, &ours.e[i]);
				else if (s < 0)
					pull(x, &theirs.e[j]);
				repairs += s != 0;
				i++;
				j++;
			}
		}
		/* Nothing to repair among the keys both own (the digests
		 * differ by others' keys, or by a tombstone one side has
		 * purged, which hides nothing on the other): in step. */
		if (repairs == 0)
			mark_synced(x, m->seg, 1);
	}
	free(theirs.e);
	free(ours.e);
	kvs__buf_free(&ours.keys);
	kvs__panswer_free(a);
	msg_end(m, ok);
}

static void step_keys(struct kvs__aae_xchg *x)
{
	unsigned per_tick = x->move ? MOVE_SEGMENTS_PER_TICK
	                            : AAE_SEGMENTS_PER_TICK;

	for (unsigned k = 0; k < per_tick && x->next_seg < x->n_segs; k++) {
		struct msg *m = calloc(1, sizeof(*m));
		kvs__preq op;

		if (m == NULL) {
			atomic_store(&x->failed, 1);
			return;
		}
		m->x = x;
		m->seg = x->segs[x->next_seg++];
		memset(&op, 0, sizeof(op));
		op.code = KVS__P_SEGKEYS;
		op.limit = m->seg;
		xsend(x, &op, segkeys_back, m);
	}
}

/* ------------------------------------------------------------------ */
/* Passes                                                               */

static void xchg_free(struct kvs__aae_xchg *x)
{
	if (x == NULL)
		return;
	pthread_mutex_destroy(&x->mu);
	free(x->run_differs);
	free(x->segs);
	free(x);
}

/* An exchange with peer: a pass's, or (move) the move's copy, over the
 * segments of n->move.runs[peer]. */
static struct kvs__aae_xchg *xchg_new(kvs__node *n, size_t peer, int move)
{
	struct kvs__aae_xchg *x = calloc(1, sizeof(*x));

	if (x == NULL)
		return NULL;
	x->n = n;
	x->peer = peer;
	x->step = 1;
	pthread_mutex_init(&x->mu, NULL);
	if (move) {
		x->move = 1;
		x->runs = n->move.runs[peer];
		x->n_runs = n->move.n_runs[peer];
		if ((x->run_differs = calloc(x->n_runs + 1, 1)) == NULL) {
			xchg_free(x);
			return NULL;
		}
		return x;
	}
	if (n->aae.runs == NULL) {
		n->aae.runs = calloc(n->n_shards, sizeof(*n->aae.runs));
		n->aae.n_runs = calloc(n->n_shards, sizeof(*n->aae.n_runs));
	}
	if (n->aae.runs == NULL || n->aae.n_runs == NULL ||
	    (n->aae.runs[peer] == NULL &&
	     shared_runs(n, peer, &n->aae.runs[peer], &n->aae.n_runs[peer]) !=
	             KVS_OK)) {
		xchg_free(x);
		return NULL;
	}
	x->runs = n->aae.runs[peer];
	x->n_runs = n->aae.n_runs[peer];
	if (n->aae.synced == NULL)
		n->aae.synced = calloc(n->n_shards, sizeof(*n->aae.synced));
	if (n->aae.synced != NULL && n->aae.synced[peer] == NULL)
		n->aae.synced[peer] =
		        calloc(KVS__AAE_SEGMENTS, sizeof(**n->aae.synced));
	x->synced = n->aae.synced != NULL ? n->aae.synced[peer] : NULL;
	if ((x->run_differs = calloc(x->n_runs + 1, 1)) == NULL) {
		xchg_free(x);
		return NULL;
	}
	return x;
}

/* Advance the exchange by one step; 1 when it is over. */
static int xchg_step(struct kvs__aae_xchg *x)
{
	if (atomic_load(&x->inflight) > 0)
		return 0; /* the last step's messages are still out */
	if (atomic_load(&x->failed))
		return 1;
	switch (x->step) {
	case 1:
		x->step = 2;
		step_folds(x);
		return 0;
	case 2:
		x->step = 3;
		step_digests(x);
		return 0;
	case 3:
		if (x->next_seg < x->n_segs) {
			step_keys(x);
			return 0;
		}
		return 1;
	default:
		return 1;
	}
}

/* ------------------------------------------------------------------ */
/* Tombstone purge                                                      */

/* Records of a segment found to delete for good (tombstones purged, or
 * records dropped): at most max. */
struct found {
	kvs__buf keys; /* one after the other */
	size_t n, max;
	size_t lens[256];
	kvs_stamp stamps[256];
};

/* 1 when f is full (stop the scan). */
static int found_add(struct found *f, const void *key, size_t key_len,
                     const kvs_stamp *stamp)
{
	if (f->n == f->max)
		return 1;
	kvs__buf_add(&f->keys, key, key_len);
	f->lens[f->n] = key_len;
	f->stamps[f->n] = *stamp;
	f->n++;
	return 0;
}

struct purge_one {
	_Atomic uint64_t *count; /* raised when deleted */
	unsigned char key[];
};

static void purged(void *ud, int rc, const kvs_stamp *stamp, int applied)
{
	struct purge_one *po = ud;

	(void)stamp;
	if (rc == KVS_OK && applied)
		atomic_fetch_add(po->count, 1);
	free(po);
}

/* Delete for good, in the store, each record of f that is still of the
 * version found (drop: live or not; else tombstones only), counting
 * those deleted in *count; then empty f. */
static void remove_found(kvs__node *n, struct found *f, int drop,
                         _Atomic uint64_t *count)
{
	int (*del)(kvs_store *, const void *, size_t, const kvs_stamp *,
	           kvs_write_cb, void *) = drop ? kvs__store_drop
	                                        : kvs__store_purge;

	for (size_t i = 0, off = 0; f->keys.rc == KVS_OK && i < f->n;
	     off += f->lens[i], i++) {
		struct purge_one *po = malloc(sizeof(*po) + f->lens[i]);
		struct kvs__pending *p;

		if (po == NULL)
			break;
		po->count = count;
		memcpy(po->key, f->keys.data + off, f->lens[i]);
		if (n->o.inline_local_writes) {
			int rc = del(n->store, po->key, f->lens[i], &f->stamps[i],
			             NULL, NULL);

			purged(po, KVS_OK, NULL, rc == KVS_OK);
			continue;
		}
		p = kvs__node_pending(n, purged, po);
		if (p == NULL || del(n->store, po->key, f->lens[i], &f->stamps[i],
		                     kvs__node_pending_done, p) != KVS_OK) {
			if (p != NULL)
				kvs__node_pending_cancel(p);
			free(po);
		}
	}
	kvs__buf_free(&f->keys);
	kvs__buf_init(&f->keys, 0);
	f->n = 0;
}

struct purgeable {
	kvs__node *n;
	uint32_t seg, now_s, skew_s;
	struct found f; /* the tombstones to purge */
};

/* Whether every other owner of key is known to have had this tombstone:
 * an exchange found their segment equal after it was written (allowing
 * for clock skew). */
static int seen_everywhere(struct purgeable *pg, const void *key,
                           size_t key_len, uint32_t t)
{
	kvs__node *n = pg->n;
	kvs__route r;

	kvs__node_route(n, key, key_len, &r);
	for (size_t i = 0; i < r.n; i++) {
		size_t p = r.owners[i];

		if (p == n->self)
			continue;
		if (n->aae.synced == NULL || n->aae.synced[p] == NULL ||
		    atomic_load_explicit(&n->aae.synced[p][pg->seg],
		                         memory_order_relaxed) <=
		            t + pg->skew_s)
			return 0;
	}
	return 1;
}

static int find_purgeable(void *ud, const void *key, size_t key_len,
                          const kvs_stamp *stamp, unsigned flags)
{
	struct purgeable *pg = ud;
	uint32_t t = (uint32_t)(KVS_HLC_PHYSICAL(stamp->hlc) / 1000u);

	if (pg->f.n == pg->f.max)
		return 1;
	if (!(flags & KVS_RECORD_TOMBSTONE) || pg->now_s <= t ||
	    pg->now_s - t <= pg->n->cc->tombstone_grace_s ||
	    !seen_everywhere(pg, key, key_len, t))
		return 0;
	return found_add(&pg->f, key, key_len, stamp);
}

/* Purge, in the store, tombstones past tombstone_grace_s that every
 * other owner is known to hold; a few segments per tick. */
static void purge_tick(kvs__node *n)
{
	struct purgeable pg;
	unsigned looked = 0, read = 0;

	if (n->cc->tombstone_grace_s == 0 ||
	    kvs__store_tombstones(n->store) == 0)
		return;
	memset(&pg, 0, sizeof(pg));
	pg.n = n;
	pg.now_s = wall_s(n);
	pg.skew_s = (n->cc->max_clock_skew_ms + 999u) / 1000u;
	pg.f.max = 64;
	kvs__buf_init(&pg.f.keys, 0);
	while (looked < PURGE_LOOK_PER_TICK && read < PURGE_SEGMENTS_PER_TICK) {
		unsigned l;
		uint32_t seg = kvs__store_next_tombstones(
		        n->store, n->aae.sweep_seg, PURGE_LOOK_PER_TICK - looked,
		        &l);

		looked += l;
		n->aae.sweep_seg = (n->aae.sweep_seg + l) % KVS__AAE_SEGMENTS;
		if (seg == KVS__AAE_SEGMENTS)
			break;
		read++;
		pg.seg = seg;
		(void)kvs__store_segment_scan(n->store, seg, find_purgeable, &pg);
		remove_found(n, &pg.f, 0, &n->aae.purged);
	}
	kvs__buf_free(&pg.f.keys);
}

/* ------------------------------------------------------------------ */
/* Moves                                                                */

/* The rings before and after the move (node_internal.h). */
static const kvs_ring *ring_before(const kvs__node *n)
{
	return n->move_phase == KVS__MOVE_DUAL ? n->ring : n->ring_b;
}

static const kvs_ring *ring_after(const kvs__node *n)
{
	return n->move_phase == KVS__MOVE_DUAL ? n->ring_b : n->ring;
}

/* Per peer, the runs of segments this node gains that the peer held. */
static int gained_runs(kvs__node *n)
{
	struct kvs__move *m = &n->move;
	uint64_t gained = 0;

	m->runs = calloc(n->n_shards, sizeof(*m->runs));
	m->n_runs = calloc(n->n_shards, sizeof(*m->n_runs));
	if (m->runs == NULL || m->n_runs == NULL)
		return KVS_ENOMEM;
	for (uint32_t s = 0; s < KVS__AAE_SEGMENTS; s++) {
		size_t b[KVS_RING_MAX_OWNERS], a[KVS_RING_MAX_OWNERS];
		size_t nb = kvs_ring_owners_at(ring_before(n), (uint64_t)s << 48,
		                               b, n->cc->replication);
		size_t na = kvs_ring_owners_at(ring_after(n), (uint64_t)s << 48,
		                               a, n->cc->replication);

		if (!owns(a, na, n->self) || owns(b, nb, n->self))
			continue;
		gained++;
		for (size_t i = 0; i < nb; i++) {
			struct kvs__aae_run **runs = &m->runs[b[i]];
			size_t *k = &m->n_runs[b[i]];

			if (*k > 0 && (*runs)[*k - 1].first +
			                              (*runs)[*k - 1].count ==
			                      s) {
				(*runs)[*k - 1].count++;
				continue;
			}
			/* Grown by powers of two. */
			if ((*k & (*k - 1)) == 0) {
				struct kvs__aae_run *g = realloc(
				        *runs, (*k ? 2 * *k : 1) * sizeof(*g));

				if (g == NULL)
					return KVS_ENOMEM;
				*runs = g;
			}
			(*runs)[*k].first = s;
			(*runs)[*k].count = 1;
			(*k)++;
		}
	}
	atomic_store(&m->gained, gained);
	return KVS_OK;
}

void kvs__node_move_copy(kvs__node *n)
{
	atomic_store(&n->move.asked, 1);
}

/*
 * The move's copy, while asked for and not done: a pass of exchanges with
 * every peer that held segments this node gains, back to back. A pass
 * that could not reach one of them, or failed a repair, or had more to
 * repair than an exchange takes, is made again. 1: the tick is the
 * copy's.
 */
static int move_tick(kvs__node *n, uint64_t now)
{
	struct kvs__move *m = &n->move;

	if (n->move_phase != KVS__MOVE_DUAL || !atomic_load(&m->asked) ||
	    atomic_load(&m->copied) || n->move_paused)
		return 0;
	if (m->runs == NULL && gained_runs(n) != KVS_OK) {
		kvs__node_log(n, KVS__LOG_ERROR,
		              "move: out of memory for the segments gained");
		return 0;
	}
	if (m->last_ms == 0) {
		m->last_ms = now;
		m->bytes_at_start = atomic_load(&n->aae.bytes_moved);
	}
	if (n->cc->move_rate_bytes > 0) {
		/* What the time since the last tick allows (a second's worth
		 * at most in hand); over it, the copy waits. */
		uint64_t rate = n->cc->move_rate_bytes;
		uint64_t moved = atomic_load(&n->aae.bytes_moved) -
		                 m->bytes_at_start;

		m->allowed += rate * (now - m->last_ms) / 1000u;
		if (m->allowed > moved + rate)
			m->allowed = moved + rate;
		m->last_ms = now;
		if (moved > m->allowed)
			return 1;
	}
	if (m->x != NULL) {
		if (!xchg_step(m->x))
			return 1;
		if (atomic_load(&m->x->failed) || m->x->truncated)
			m->pass_failed = 1;
		xchg_free(m->x);
		m->x = NULL;
	} else if (!m->in_pass) {
		if (now < m->next_ms)
			return 0;
		m->in_pass = 1;
		m->pass_failed = 0;
		m->next_peer = 0;
	}
	while (m->next_peer < n->n_shards) {
		size_t p = m->next_peer++;

		if (p == n->self || m->n_runs[p] == 0)
			continue;
		/* Every peer that held them: a write acknowledged before
		 * the move may be on any W of them. */
		if (!kvs__health_up(&n->peers[p].health) ||
		    (m->x = xchg_new(n, p, 1)) == NULL) {
			m->pass_failed = 1;
			continue;
		}
		(void)xchg_step(m->x);
		return 1;
	}
	m->in_pass = 0;
	atomic_fetch_add(&m->passes, 1);
	if (m->pass_failed) {
		m->next_ms = now + MOVE_RETRY_MS;
		return 0;
	}
	atomic_store(&m->copied, 1);
	kvs__node_log(n, KVS__LOG_INFO,
	              "move: copied the %llu segments this node gains",
	              (unsigned long long)atomic_load(&m->gained));
	return 0;
}

static int find_droppable(void *ud, const void *key, size_t key_len,
                          const kvs_stamp *stamp, unsigned flags)
{
	(void)flags;
	return found_add(ud, key, key_len, stamp);
}

/* Drop the records of segments this node does not own (no move under
 * way): a few segments per tick. */
static void drop_tick(kvs__node *n)
{
	struct kvs__move *m = &n->move;
	struct found d;
	unsigned read = 0;

	if (!n->o.drop_unowned || n->move_phase != KVS__MOVE_NONE)
		return;
	d.n = 0;
	d.max = KVS_ARRAY_SIZE(d.lens);
	kvs__buf_init(&d.keys, 0);
	for (unsigned looked = 0;
	     looked < DROP_LOOK_PER_TICK && read < DROP_SEGMENTS_PER_TICK;
	     looked++) {
		uint32_t seg = m->drop_seg;
		int full;

		m->drop_seg = (seg + 1) % KVS__AAE_SEGMENTS;
		if (kvs__store_segment_digest(n->store, seg) == 0 &&
		    kvs__store_segment_tombstones(n->store, seg) == 0)
			continue; /* empty */
		if (both_at(n, (uint64_t)seg << 48, n->self))
			continue; /* owned */
		read++;
		(void)kvs__store_segment_scan(n->store, seg, find_droppable, &d);
		full = d.n == d.max;
		remove_found(n, &d, 1, &m->dropped);
		if (full)
			m->drop_seg = seg; /* more there: again next tick */
	}
	kvs__buf_free(&d.keys);
}

void kvs__node_move_stats(kvs__node *n, kvs__move_stats *st)
{
	st->phase = n->move_phase;
	st->paused = n->move_paused;
	st->asked = atomic_load(&n->move.asked);
	st->copied = atomic_load(&n->move.copied);
	st->gained = atomic_load(&n->move.gained);
	st->passes = atomic_load(&n->move.passes);
	st->dropped = atomic_load(&n->move.dropped);
	st->keys = atomic_load(&n->move.keys);
	st->bytes = atomic_load(&n->move.bytes);
}

void kvs__aae_tick(kvs__node *n)
{
	struct kvs__aae *a = &n->aae;
	uint64_t now = kvs__node_now(n);

	uint64_t interval = (uint64_t)n->cc->anti_entropy_interval_s * 1000u;

	if (n->n_shards < 2)
		return;
	drop_tick(n);
	if (move_tick(n, now) || interval == 0)
		return;
	/* Not while a move copies: a tombstone must reach the new owners
	 * first. */
	if (n->move_phase == KVS__MOVE_NONE)
		purge_tick(n);
	if (!a->scheduled) { /* the first pass, one interval after opening */
		a->scheduled = 1;
		a->next_ms = now + interval;
		return;
	}
	if (a->x != NULL) {
		if (!xchg_step(a->x))
			return;
		if (atomic_load(&a->x->failed))
			a->pass_failed = 1;
		xchg_free(a->x);
		a->x = NULL;
	} else if (!a->in_pass) {
		if (now < a->next_ms)
			return;
		a->in_pass = 1;
		a->pass_failed = 0;
		a->next_peer = 0;
	}
	/* The next peer of the pass that is up. */
	while (a->next_peer < n->n_shards) {
		size_t p = a->next_peer++;

		if (p == n->self)
			continue;
		if (!kvs__health_up(&n->peers[p].health)) {
			a->pass_failed = 1;
			continue;
		}
		a->x = xchg_new(n, p, 0);
		if (a->x == NULL) {
			a->pass_failed = 1;
			continue;
		}
		if (a->x->n_runs == 0) { /* nothing shared */
			xchg_free(a->x);
			a->x = NULL;
			continue;
		}
		(void)xchg_step(a->x);
		return;
	}
	a->in_pass = 0;
	/* A pass that missed a peer is tried again sooner. */
	a->next_ms = now + (a->pass_failed && interval > AAE_RETRY_MS
	                            ? AAE_RETRY_MS
	                            : interval);
	if (!a->pass_failed) {
		atomic_fetch_add(&a->passes, 1);
		atomic_store(&a->last_pass_ms, KVS_HLC_PHYSICAL(kvs__store_clock_now(
		                                       n->store)));
	}
}

void kvs__aae_close(kvs__node *n)
{
	/* Messages still out end (ECLOSED) before the node frees its
	 * peers: the caller has stopped them. */
	xchg_free(n->aae.x);
	n->aae.x = NULL;
	xchg_free(n->move.x);
	n->move.x = NULL;
	for (size_t i = 0; n->move.runs != NULL && i < n->n_shards; i++)
		free(n->move.runs[i]);
	free(n->move.runs);
	free(n->move.n_runs);
	n->move.runs = NULL;
	n->move.n_runs = NULL;
	for (size_t i = 0; n->aae.runs != NULL && i < n->n_shards; i++)
		free(n->aae.runs[i]);
	free(n->aae.runs);
	free(n->aae.n_runs);
	n->aae.runs = NULL;
	n->aae.n_runs = NULL;
	for (size_t i = 0; n->aae.synced != NULL && i < n->n_shards; i++)
		free((void *)n->aae.synced[i]);
	free((void *)n->aae.synced);
	n->aae.synced = NULL;
}

void kvs__node_aae_stats(kvs__node *n, kvs__aae_stats *st)
{
	st->passes = atomic_load(&n->aae.passes);
	st->last_pass_ms = atomic_load(&n->aae.last_pass_ms);
	st->keys_repaired = atomic_load(&n->aae.keys_repaired);
	st->bytes_moved = atomic_load(&n->aae.bytes_moved);
	st->tombstones_purged = atomic_load(&n->aae.purged);
}
