/*
 * hints.c - hinted handoff: writes an owner missed, kept for it by the
 * coordinator and delivered when it answers again.
 *
 * A replica write that does not get an acknowledgement (no answer, a
 * timeout, a peer skipped as down, a store error other than a refusal)
 * becomes a hint in the coordinator's store: the hints database, written
 * through the same writer and group commits as the records, so it costs
 * no sync of its own and survives a restart. Its key orders the hints of
 * one peer oldest first:
 *
 *     u32 big-endian shard idx of the owner   u64 big-endian clock reading
 *
 * (the reading, from the store's clock, is unique and tells the hint's
 * age), its value is the record:
 *
 *     u64 hlc  u32 shard  u8 flags  u32 key_len  key  value   (little endian)
 *
 * Every tick, for each peer believed up with hints and no delivery under
 * way, one round reads its oldest hints up to the tick's share of
 * hint_rate_bytes, sends them as APPLY messages (apply-if-newer: a hint
 * and any later write of the key commute) and deletes those that were
 * applied or refused for good. Hints older than hint_max_age_s are deleted
 * unsent: anti-entropy's business. Beyond hint_max_bytes, new hints are
 * dropped (counted).
 */
#include <stdlib.h>
#include <string.h>

#include "node_internal.h"
#include "protocol.h"
#include "util.h"

#define HINT_KEY 12u
#define HINT_HEAD 17u /* hlc, shard, flags, key_len */
/* Most hints one round sends. */
#define ROUND_MAX 512u

/* Decode a hint's value into rec (pointing into it); 0 if malformed. */
static int decode(const unsigned char *v, size_t len, kvs_record *rec)
{
	size_t klen;

	if (len < HINT_HEAD)
		return 0;
	memset(rec, 0, sizeof(*rec));
	rec->stamp.hlc = kvs__get_le64(v);
	rec->stamp.shard = kvs__get_le32(v + 8);
	rec->flags = v[12];
	klen = kvs__get_le32(v + 13);
	if (klen == 0 || klen > len - HINT_HEAD)
		return 0;
	rec->key = v + HINT_HEAD;
	rec->key_len = klen;
	rec->value = v + HINT_HEAD + klen;
	rec->value_len = len - HINT_HEAD - klen;
	return 1;
}

/* *v += d, stopping at 0. */
static void sat_add(_Atomic uint64_t *v, int64_t d)
{
	uint64_t cur = atomic_load(v), next;

	do
		next = d >= 0 || cur >= (uint64_t)-d ? cur + (uint64_t)d : 0;
	while (!atomic_compare_exchange_weak(v, &cur, next));
}

static void count_add(kvs__node *n, size_t peer, int64_t hints,
                      int64_t bytes)
{
	struct kvs__peer_state *p = &n->peers[peer];

	/* Never below zero: another epoch's node on the same store may
	 * deliver hints this one counted, or the other way round. */
	sat_add(&p->hints, hints);
	sat_add(&p->hint_bytes, bytes);
	sat_add(&n->hint_bytes, bytes);
}

/* ------------------------------------------------------------------ */
/* Keeping                                                              */

struct kept {
	kvs__node *n;
	size_t peer;
	size_t len; /* key and value */
	unsigned char data[];
};

static void kept_done(void *ud, int rc, const kvs_stamp *stamp, int applied)
{
	struct kept *k = ud;

	(void)stamp;
	(void)applied;
	if (rc != KVS_OK) {
		count_add(k->n, k->peer, -1, -(int64_t)k->len);
		atomic_fetch_add(&k->n->counters.hints_dropped, 1);
	}
	free(k);
}

void kvs__hint_add(kvs__node *n, size_t peer, const kvs_record *rec)
{
	size_t vlen = HINT_HEAD + rec->key_len + rec->value_len;
	size_t len = HINT_KEY + vlen;
	struct kept *k;
	unsigned char *v;
	int rc;

	if (peer == n->self || peer >= n->n_shards || n->cc->hint_max_bytes == 0)
		return;
	if (atomic_load(&n->hint_bytes) + len > n->cc->hint_max_bytes ||
	    (k = malloc(sizeof(*k) + len)) == NULL) {
		atomic_fetch_add(&n->counters.hints_dropped, 1);
		return;
	}
	k->n = n;
	k->peer = peer;
	k->len = len;
	kvs__put_be32(k->data, kvs_config_shard(n->cfg, peer)->idx);
	kvs__put_be64(k->data + 4, kvs__store_clock_now(n->store));
	v = k->data + HINT_KEY;
	kvs__put_le64(v, rec->stamp.hlc);
	kvs__put_le32(v + 8, rec->stamp.shard);
	v[12] = (unsigned char)(rec->flags & KVS_RECORD_TOMBSTONE);
	kvs__put_le32(v + 13, (uint32_t)rec->key_len);
	memcpy(v + HINT_HEAD, rec->key, rec->key_len);
	if (rec->value_len > 0)
		memcpy(v + HINT_HEAD + rec->key_len, rec->value, rec->value_len);
	count_add(n, peer, 1, (int64_t)len);
	atomic_fetch_add(&n->counters.hints_written, 1);
	if (n->o.inline_local_writes) {
		rc = kvs__store_hint_write(n->store, 0, k->data, HINT_KEY, v,
		                           vlen, NULL, NULL);
		kept_done(k, rc, NULL, 0);
		return;
	}
	{
		struct kvs__pending *p = kvs__node_pending(n, kept_done, k);

		rc = p != NULL ? kvs__store_hint_write(n->store, 0, k->data,
		                                       HINT_KEY, v, vlen,
		                                       kvs__node_pending_done, p)
		               : KVS_ENOMEM;
		if (rc != KVS_OK) {
			if (p != NULL)
				kvs__node_pending_cancel(p);
			kept_done(k, rc, NULL, 0);
		}
	}
}

/* ------------------------------------------------------------------ */
/* Handing off                                                          */

struct item {
	struct round *r;
	unsigned char key[HINT_KEY];
	size_t len;  /* the hint's bytes, as counted */
	int done;    /* applied, or refused for good: delete it */
	int expired; /* too old: delete it unsent */
	kvs_record rec; /* points into the round's data */
};

struct round {
	kvs__op op;
	kvs__node *n;
	size_t peer;
	struct item *items;
	size_t n_items;
	size_t budget;
	uint64_t oldest_ok; /* hints read before this are expired */
	int stop;
	unsigned char *data; /* the values, one after the other */
	size_t data_len, data_cap;
};

struct gone {
	kvs__node *n;
	size_t peer;
	size_t len;
	int expired;
	unsigned char key[HINT_KEY];
};

static void gone_done(void *ud, int rc, const kvs_stamp *stamp, int applied)
{
	struct gone *g = ud;

	(void)stamp;
	(void)applied;
	if (rc == KVS_OK) {
		count_add(g->n, g->peer, -1, -(int64_t)g->len);
		atomic_fetch_add(g->expired ? &g->n->counters.hints_expired
		                            : &g->n->counters.hints_delivered,
		                 1);
	}
	free(g);
}

static void forget(kvs__node *n, size_t peer, const struct item *it)
{
	struct gone *g = malloc(sizeof(*g));
	int rc;

	if (g == NULL)
		return; /* sent again next round: apply-if-newer */
	g->n = n;
	g->peer = peer;
	g->len = it->len;
	g->expired = it->expired;
	memcpy(g->key, it->key, HINT_KEY);
	if (n->o.inline_local_writes) {
		rc = kvs__store_hint_write(n->store, 1, g->key, HINT_KEY, NULL,
		                           0, NULL, NULL);
		gone_done(g, rc, NULL, 0);
		return;
	}
	{
		struct kvs__pending *p = kvs__node_pending(n, gone_done, g);

		rc = p != NULL ? kvs__store_hint_write(n->store, 1, g->key,
		                                       HINT_KEY, NULL, 0,
		                                       kvs__node_pending_done, p)
		               : KVS_ENOMEM;
		if (rc != KVS_OK) {
			if (p != NULL)
				kvs__node_pending_cancel(p);
			free(g);
		}
	}
}

static void round_done(kvs__op *op)
{
	struct round *r = (struct round *)op;
	kvs__node *n = r->n;
	struct kvs__peer_state *p = &n->peers[r->peer];
	int failed = 0;

	for (size_t i = 0; i < r->n_items; i++) {
		if (r->items[i].done || r->items[i].expired)
			forget(n, r->peer, &r->items[i]);
		else
			failed = 1;
	}
	/* A peer that seems up but does not take its hints (it sends, but
	 * does not answer) is not pressed every tick. */
	if (failed) {
		p->hint_backoff_ms = p->hint_backoff_ms == 0
		                             ? KVS__HINT_BACKOFF_MIN_MS
		                             : p->hint_backoff_ms * 2;
		if (p->hint_backoff_ms > KVS__HINT_BACKOFF_MAX_MS)
			p->hint_backoff_ms = KVS__HINT_BACKOFF_MAX_MS;
		p->hint_next_ms = kvs__node_now(n) + p->hint_backoff_ms;
	} else {
		p->hint_backoff_ms = 0;
	}
	atomic_store(&p->handing, 0);
	free(r->items);
	free(r->data);
	free(r);
}

static void delivered(void *ud, kvs__panswer *a)
{
	struct item *it = ud;
	int rc = a->rc == KVS_OK && a->n == 1 ? a->res[0].rc : KVS_ECONNECT;

	/* Refusals that would come again are as good as done. */
	it->done = rc == KVS_OK || rc == KVS_ECLOCK || rc == KVS_EKEYSIZE ||
	           rc == KVS_EVALSIZE || rc == KVS_EINVAL;
	kvs__panswer_free(a);
	kvs__op_release(&it->r->op);
}

/* Gather the round's hints (in the scan's read transaction). */
static int gather(void *ud, const void *key, size_t key_len,
                  const void *value, size_t value_len)
{
	struct round *r = ud;
	const unsigned char *k = key;
	struct item *it;
	kvs_record rec;
	size_t len = key_len + value_len;

	if (key_len != HINT_KEY ||
	    kvs__get_be32(k) != kvs_config_shard(r->n->cfg, r->peer)->idx ||
	    r->n_items == ROUND_MAX)
		return 1; /* past this peer's hints, or full */
	if (r->n_items > 0 && len > r->budget)
		return 1;
	it = &r->items[r->n_items];
	memset(it, 0, sizeof(*it));
	memcpy(it->key, k, HINT_KEY);
	it->len = len;
	r->budget = len > r->budget ? 0 : r->budget - len;
	if (!decode(value, value_len, &rec) ||
	    kvs__get_be64(k + 4) < r->oldest_ok) {
		it->expired = 1; /* too old, or unreadable: never sent */
		r->n_items++;
		return 0;
	}
	if (r->data_len + value_len > r->data_cap) {
		size_t cap = r->data_cap ? r->data_cap : 4096;
		unsigned char *g;

		while (cap < r->data_len + value_len)
			cap *= 2;
		g = realloc(r->data, cap);
		if (g == NULL)
			return 1;
		/* Records gathered so far point into the old block. */
		for (size_t i = 0; i < r->n_items; i++) {
			struct item *o = &r->items[i];

			if (o->expired)
				continue;
			o->rec.key = g + ((const unsigned char *)o->rec.key -
			                  r->data);
			o->rec.value = g + ((const unsigned char *)o->rec.value -
			                    r->data);
		}
		r->data = g;
		r->data_cap = cap;
	}
	memcpy(r->data + r->data_len, value, value_len);
	decode(r->data + r->data_len, value_len, &it->rec);
	r->data_len += value_len;
	r->n_items++;
	return 0;
}

/* Start a round of delivery to peer. */
static void hand_off(kvs__node *n, size_t peer)
{
	struct round *r = calloc(1, sizeof(*r));
	unsigned char from[HINT_KEY];
	uint64_t now = kvs__store_clock_now(n->store);
	uint64_t age = (uint64_t)n->cc->hint_max_age_s * 1000u;

	if (r == NULL || (r->items = calloc(ROUND_MAX, sizeof(*r->items))) ==
	                         NULL) {
		free(r);
		atomic_store(&n->peers[peer].handing, 0);
		return;
	}
	kvs__op_init(&r->op, round_done);
	r->n = n;
	r->peer = peer;
	r->budget = (size_t)((uint64_t)n->cc->hint_rate_bytes *
	                     KVS__PROBE_TICK_MS / 1000u);
	r->oldest_ok = KVS_HLC_PHYSICAL(now) > age
	                       ? KVS_HLC_MAKE(KVS_HLC_PHYSICAL(now) - age, 0)
	                       : 0;
	kvs__put_be32(from, kvs_config_shard(n->cfg, peer)->idx);
	kvs__put_be64(from + 4, 0);
	(void)kvs__store_hints_scan(n->store, from, sizeof(from), gather, r);
	for (size_t i = 0; i < r->n_items; i++) {
		struct item *it = &r->items[i];
		kvs__preq op;

		if (it->expired)
			continue;
		it->r = r;
		memset(&op, 0, sizeof(op));
		op.code = KVS__P_APPLY;
		op.flags = (it->rec.flags & KVS_RECORD_TOMBSTONE)
		                   ? KVS__PQ_TOMBSTONE
		                   : 0;
		op.stamp = it->rec.stamp;
		op.key = it->rec.key;
		op.key_len = it->rec.key_len;
		op.value = it->rec.value;
		op.value_len = it->rec.value_len;
		kvs__op_hold(&r->op);
		if (kvs__node_send(n, peer, &op, delivered, it) != KVS_OK)
			kvs__op_release(&r->op);
	}
	kvs__op_release(&r->op); /* the starter's hold */
}

void kvs__hints_tick(kvs__node *n)
{
	for (size_t i = 0; i < n->n_shards; i++) {
		struct kvs__peer_state *p = &n->peers[i];
		int idle = 0;

		if (i == n->self || atomic_load(&p->hints) == 0 ||
		    !kvs__health_up(&p->health))
			continue;
		if (!atomic_compare_exchange_strong(&p->handing, &idle, 1))
			continue; /* a round is under way */
		if (kvs__node_now(n) < p->hint_next_ms) {
			atomic_store(&p->handing, 0);
			continue;
		}
		hand_off(n, i);
	}
}

/* ------------------------------------------------------------------ */
/* Opening                                                              */

static int count_one(void *ud, const void *key, size_t key_len,
                     const void *value, size_t value_len)
{
	kvs__node *n = ud;
	size_t peer;

	(void)value;
	if (key_len != HINT_KEY)
		return 0;
	peer = kvs__node_position(n, kvs__get_be32(key));
	if (peer < n->n_shards && peer != n->self)
		count_add(n, peer, 1, (int64_t)(key_len + value_len));
	return 0;
}

int kvs__hints_open(kvs__node *n)
{
	return kvs__store_hints_scan(n->store, NULL, 0, count_one, n);
}

void kvs__node_hints_pending(kvs__node *n, size_t i, uint64_t *count,
                             uint64_t *bytes)
{
	*count = atomic_load(&n->peers[i].hints);
	*bytes = atomic_load(&n->peers[i].hint_bytes);
}
