/*
 * ops.c - a client's operation on one key, and batches of them: where the
 * request goes, decided here and only here.
 *
 * The ring gives the key's N owners in preference order. A read is served
 * by this node when it is an owner: from its own store when R = 1, else
 * through a quorum read (quorum.c). An unconditional write is coordinated
 * by any owner that receives it, or by the first owner up when a non-owner
 * forwards it; a conditional one by the key's primary (its first owner)
 * only, up or not, so that conditions are decided in one store whatever
 * each node believes about the others' health. A node that may not serve a request itself forwards it to
 * an owner (proxy.c) or, with routing = "redirect", tells the client where
 * to go. Requests that came from another node (kvs__kv_req.from_peer) are
 * served or coordinated here when this node owns the key, and refused
 * (KVS_EWRONGSHARD) otherwise: they never travel further, so requests
 * cannot circle even when two nodes disagree about health or topology.
 */
#include <stdlib.h>
#include <string.h>

#include "node_internal.h"

/* ------------------------------------------------------------------ */
/* Results                                                              */

void kvs__result_clear(kvs__result *r)
{
	if (r->release != NULL)
		r->release(r->hold);
	memset(r, 0, sizeof(*r));
}

void kvs__result_take(kvs__result *r, void (**release)(void *), void **hold)
{
	*release = r->release;
	*hold = r->hold;
	r->release = NULL;
	r->hold = NULL;
}


/* Check what the node can check alone; KVS_OK or why not. */
static int check_request(const kvs__node *n, const kvs__kv_req *req)
{
	if (req->key == NULL || req->key_len == 0 ||
	    req->key_len > n->cc->max_key_bytes)
		return KVS_EKEYSIZE;
	if (req->kind == KVS__KV_PUT &&
	    (req->value_len > n->cc->max_value_bytes ||
	     (req->value == NULL && req->value_len > 0)))
		return req->value_len > n->cc->max_value_bytes ? KVS_EVALSIZE
		                                                : KVS_EINVAL;
	if (req->r > n->cc->replication || req->w > n->cc->replication)
		return KVS_EBADARG;
	if (req->cond.n_expect > KVS__MAX_EXPECT)
		return KVS_EBADCOND;
	return KVS_OK;
}

struct local_read {
	kvs__result *out;
	int rc;
};

/* Copy the record out of the store's memory (it is valid only in here). */
static int copy_record(void *ud, const kvs_record *rec)
{
	struct local_read *lr = ud;
	kvs__result *out = lr->out;

	out->stamp = rec->stamp;
	if (rec->flags & KVS_RECORD_TOMBSTONE) {
		lr->rc = KVS_NOTFOUND;
		return 0;
	}
	if (rec->value_len > 0) {
		void *copy = malloc(rec->value_len);

		if (copy == NULL) {
			lr->rc = KVS_ENOMEM;
			return 0;
		}
		memcpy(copy, rec->value, rec->value_len);
		out->value = copy;
		out->hold = copy;
		out->release = free;
	}
	out->value_len = rec->value_len;
	lr->rc = KVS_OK;
	return 0;
}

/* R = 1 on an owner: this node's own store answers. */
static void local_get(kvs__node *n, const kvs__kv_req *req, kvs__result *out)
{
	struct local_read lr = {out, KVS_OK};
	int rc = kvs_store_read(n->store, req->key, req->key_len,
	                        KVS_READ_TOMBSTONES, copy_record, &lr);

	out->rc = rc == KVS_OK ? lr.rc : rc;
	out->acks = 1;
}

/* The first usable owner not to be avoided (this node), else the first
 * other owner. */
static size_t owner_to_ask(kvs__node *n, const kvs__route *r)
{
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < r->n; i++)
			if (r->owners[i] != n->self &&
			    (pass == 1 || kvs__node_usable(n, r->owners[i])))
				return r->owners[i];
	return r->owners[0];
}

static unsigned quorum_of(unsigned asked, unsigned dflt, size_t replicas)
{
	unsigned q = asked != 0 ? asked : dflt;

	if (q > replicas)
		q = (unsigned)replicas;
	return q > 0 ? q : 1;
}

/* kvs__node_kv; a batch cannot send its client elsewhere (may_redirect
 * 0): its operations are forwarded whatever the routing. */
static void dispatch(kvs__node *n, const kvs__kv_req *req, kvs__result *out,
                     kvs__node_cb cb, void *ud, int may_redirect)
{
	int rc = check_request(n, req);
	int redirect = may_redirect && n->cc->routing == KVS_ROUTING_REDIRECT;
	kvs__kv_req stamped;
	kvs__route route;
	unsigned need;
	size_t coord;

	memset(out, 0, sizeof(*out));
	out->served_by = n->self;
	if (rc != KVS_OK) {
		kvs__node_fail(out, rc, cb, ud);
		return;
	}
	kvs__node_route(n, req->key, req->key_len, &route);
	out->replicas = (unsigned)route.n;
	if (req->kind == KVS__KV_GET) {
		need = quorum_of(req->r, n->cc->read_quorum, route.n);
		out->need = need;
		/* During a move an owner of the other side only is
		 * written, not read. */
		int reads = route.self >= 0 && (size_t)route.self < route.n;

		if (reads && need == 1) {
			local_get(n, req, out);
			cb(ud);
		} else if (reads) {
			kvs__quorum_read(n, req, &route, need, out, cb, ud);
		} else if (req->from_peer) {
			kvs__node_fail(out, KVS_EWRONGSHARD, cb, ud);
		} else if (redirect) {
			out->redirect = 1;
			out->target = owner_to_ask(n, &route);
			cb(ud);
		} else {
			kvs__proxy(n, req, &route, out, cb, ud);
		}
		return;
	}
	need = quorum_of(req->w, n->cc->write_quorum, route.n);
	out->need = need;
	if (req->cond.flags == 0 && req->stamp.hlc == 0) {
		/* The write's version is fixed here, on arrival (see
		 * kvs__kv_req.stamp); conditional writes are stamped by the
		 * store that decides them. */
		stamped = *req;
		stamped.stamp.hlc = kvs__store_clock_now(n->store);
		stamped.stamp.shard = n->self_idx;
		req = &stamped;
	}
	coord = kvs__node_coordinator(n, &route, req);
	/* Any owner coordinates an unconditional write (its version was
	 * fixed on arrival, so where it is coordinated changes nothing but
	 * the hops). A conditional write is decided by the primary only:
	 * another owner sends it there (or the client, with redirects), and
	 * refuses it from a peer. Redirects point to the coordinator, which
	 * never redirects: no loops. */
	if (route.self >= 0 && (coord == n->self || req->cond.flags == 0)) {
		kvs__quorum_write(n, req, &route, need, out, cb, ud);
	} else if (req->from_peer) {
		kvs__node_fail(out, KVS_EWRONGSHARD, cb, ud);
	} else if (redirect) {
		out->redirect = 1;
		out->target = coord;
		cb(ud);
	} else {
		kvs__proxy(n, req, &route, out, cb, ud);
	}
}

void kvs__node_kv(kvs__node *n, const kvs__kv_req *req, kvs__result *out,
                  kvs__node_cb cb, void *ud)
{
	dispatch(n, req, out, cb, ud, 1);
}

/*
 * A batch: one operation held by each of its requests. Their values are
 * bounded: once the gets' values held pass max_bytes, each value that
 * completes after is dropped at once, and a get not started yet is not
 * started; their results say KVS_EANSWERSIZE (the first value is always
 * kept, so that asking again from there makes progress). Without it a
 * 20 KB batch of 500 gets of a 16 MB value made the node read them all
 * (27 s) and hold 8 GB.
 */
struct batch;

struct batch_slot {
	struct batch *b;
	kvs__result *out;
};

struct batch {
	kvs__op op;
	kvs__node_cb cb;
	void *ud;
	size_t max_bytes; /* 0: no bound */
	_Atomic size_t held;
	_Atomic int full; /* a value was dropped: read no more */
	struct batch_slot slot[];
};

static void batch_done(kvs__op *op)
{
	struct batch *b = (struct batch *)op;
	kvs__node_cb cb = b->cb;
	void *ud = b->ud;

	free(b);
	cb(ud);
}

static void slot_done(void *ud)
{
	struct batch_slot *s = ud;
	struct batch *b = s->b;
	kvs__result *out = s->out;
	size_t len = out->value_len, before;

	if (b->max_bytes != 0 && out->rc == KVS_OK && out->value != NULL) {
		before = atomic_fetch_add(&b->held, len);
		if (before != 0 && before + len > b->max_bytes) {
			kvs_stamp stamp = out->stamp;

			atomic_fetch_sub(&b->held, len);
			atomic_store(&b->full, 1);
			kvs__result_clear(out);
			out->rc = KVS_EANSWERSIZE;
			out->stamp = stamp;
		}
	}
	kvs__op_release(&b->op);
}

void kvs__node_batch(kvs__node *n, const kvs__kv_req *reqs, size_t count,
                     size_t max_bytes, kvs__result *outs, kvs__node_cb cb,
                     void *ud)
{
	struct batch *b = malloc(sizeof(*b) + count * sizeof(b->slot[0]));

	if (b == NULL) {
		for (size_t i = 0; i < count; i++) {
			memset(&outs[i], 0, sizeof(outs[i]));
			outs[i].rc = KVS_ENOMEM;
		}
		cb(ud);
		return;
	}
	kvs__op_init(&b->op, batch_done);
	b->cb = cb;
	b->ud = ud;
	b->max_bytes = max_bytes;
	atomic_init(&b->held, 0);
	atomic_init(&b->full, 0);
	for (size_t i = 0; i < count; i++) {
		b->slot[i].b = b;
		b->slot[i].out = &outs[i];
		/* Full already: the get is not even read. */
		if (max_bytes != 0 && reqs[i].kind == KVS__KV_GET &&
		    atomic_load(&b->full)) {
			memset(&outs[i], 0, sizeof(outs[i]));
			outs[i].rc = KVS_EANSWERSIZE;
			continue;
		}
		kvs__op_hold(&b->op);
		dispatch(n, &reqs[i], &outs[i], slot_done, &b->slot[i], 0);
	}
	kvs__op_release(&b->op);
}

