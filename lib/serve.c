/*
 * serve.c - the receiving side of the peer protocol: a frame of
 * operations from another node, run here, answered by a frame of results.
 *
 * READ and SCAN read this node's own store (tombstones included, the
 * records peers merge); APPLY writes a record if it is newer than the one
 * stored; GET, PUT and DELETE are a client's requests that the sender
 * forwarded, run as kvs__node_kv with from_peer set, so that this node
 * serves or coordinates them and never sends them on. All operations of a
 * frame run at once; the answer is encoded when the last is done, by the
 * caller, on its own thread (kvs__peer_reply_encode).
 */
#include <stdlib.h>
#include <string.h>

#include "node_internal.h"

struct slot {
	struct kvs__serving *s;
	size_t i;
};

struct kvs__serving {
	kvs__op op;
	kvs__node *n;
	kvs__preq *ops;
	size_t n_ops;
	kvs__pres *res;
	kvs__kv_req *kreq;  /* GET, PUT, DELETE */
	kvs__result *kres;
	kvs__buf *bufs;     /* READ values, SCAN records */
	struct slot *slots;
	kvs__peer_reply *out;
	kvs__node_cb cb;
	void *ud;
};

static void serving_free(struct kvs__serving *s)
{
	for (size_t i = 0; i < s->n_ops; i++) {
		if (s->kres != NULL)
			kvs__result_clear(&s->kres[i]);
		if (s->bufs != NULL)
			kvs__buf_free(&s->bufs[i]);
	}
	free(s->ops);
	free(s->res);
	free(s->kreq);
	free(s->kres);
	free(s->bufs);
	free(s->slots);
	free(s);
}

static void serving_done(kvs__op *op)
{
	struct kvs__serving *s = (struct kvs__serving *)op;

	s->out->rc = KVS_OK;
	s->out->s = s;
	s->cb(s->ud);
}

struct read_copy {
	kvs__buf *buf;
	kvs__pres *res;
	int digest; /* the version only */
};

static int copy_read(void *ud, const kvs_record *rec)
{
	struct read_copy *rc = ud;

	rc->res->stamp = rec->stamp;
	if (rec->flags & KVS_RECORD_TOMBSTONE)
		rc->res->flags |= KVS__PA_TOMBSTONE;
	if (rc->digest && rec->value_len > 0)
		rc->res->flags |= KVS__PA_DIGEST;
	else
		kvs__buf_add(rc->buf, rec->value, rec->value_len);
	return 0;
}

static void op_read(struct kvs__serving *s, size_t i)
{
	const kvs__preq *q = &s->ops[i];
	kvs__pres *r = &s->res[i];
	struct read_copy rc = {&s->bufs[i], r, (q->flags & KVS__PQ_DIGEST) != 0};

	r->rc = kvs_store_read(s->n->store, q->key, q->key_len,
	                       KVS_READ_TOMBSTONES, copy_read, &rc);
	if (r->rc == KVS_OK && s->bufs[i].rc != KVS_OK)
		r->rc = s->bufs[i].rc;
	r->value = s->bufs[i].data;
	r->value_len = s->bufs[i].len;
}

static void applied(void *ud, int rc, const kvs_stamp *stamp, int was_applied)
{
	struct slot *sl = ud;
	kvs__pres *r = &sl->s->res[sl->i];

	(void)stamp;
	r->rc = rc;
	if (was_applied)
		r->flags |= KVS__PA_APPLIED;
	kvs__op_release(&sl->s->op);
}

static void op_apply(struct kvs__serving *s, size_t i)
{
	const kvs__preq *q = &s->ops[i];
	kvs_record rec;
	int rc;

	memset(&rec, 0, sizeof(rec));
	rec.key = q->key;
	rec.key_len = q->key_len;
	rec.stamp = q->stamp;
	if (q->flags & KVS__PQ_TOMBSTONE) {
		rec.flags = KVS_RECORD_TOMBSTONE;
	} else {
		rec.value = q->value;
		rec.value_len = q->value_len;
	}
	/* The same limits as a client's write: a peer cannot store what a
	 * client could not. */
	if (rec.key_len == 0 || rec.key_len > s->n->cc->max_key_bytes) {
		s->res[i].rc = KVS_EKEYSIZE;
		return;
	}
	if (rec.value_len > s->n->cc->max_value_bytes) {
		s->res[i].rc = KVS_EVALSIZE;
		return;
	}
	kvs__op_hold(&s->op);
	rc = kvs__node_local_apply(s->n, &rec, applied, &s->slots[i]);
	if (rc != KVS_OK) {
		s->res[i].rc = rc;
		kvs__op_release(&s->op);
	}
}

static void op_scan(struct kvs__serving *s, size_t i)
{
	const kvs__preq *q = &s->ops[i];
	kvs__pres *r = &s->res[i];
	size_t limit = q->limit, max = s->n->cc->max_scan_limit;
	int more = 0;

	if (limit == 0 || limit > max)
		limit = max;
	r->rc = kvs__local_page(s->n, q->value, q->value_len, q->key,
	                        q->key_len, (q->flags & KVS__PQ_START) != 0,
	                        limit, (q->flags & KVS__PQ_VALUES) != 0,
	                        &s->bufs[i], &r->n_recs, &more);
	if (more)
		r->flags |= KVS__PA_MORE;
	r->recs = (const unsigned char *)s->bufs[i].data;
	r->recs_len = s->bufs[i].len;
}

/* Digests of the segment ranges in the value ((u32 first, u32 count)
 * pairs): one per range (fold), or one per segment, as u64s. */
static void op_digests(struct kvs__serving *s, size_t i)
{
	const kvs__preq *q = &s->ops[i];
	kvs__pres *r = &s->res[i];
	kvs__buf *b = &s->bufs[i];
	const unsigned char *p = q->value;
	size_t ranges = q->value_len / 8, total = 0;

	if (q->value_len % 8 != 0) {
		r->rc = KVS_EPROTO;
		return;
	}
	for (size_t k = 0; k < ranges; k++) {
		uint32_t first = kvs__get_le32(p + 8 * k), count = kvs__get_le32(p + 8 * k + 4);

		total += count;
		if ((uint64_t)first + count > KVS__AAE_SEGMENTS ||
		    total > KVS__PEER_MAX_SEGMENTS) {
			r->rc = KVS_EPROTO;
			return;
		}
	}
	for (size_t k = 0; k < ranges; k++) {
		uint32_t first = kvs__get_le32(p + 8 * k), count = kvs__get_le32(p + 8 * k + 4);
		unsigned char out[8];

		if (q->flags & KVS__PQ_FOLD) {
			kvs__put_le64(out, kvs__store_segments_fold(
			                           s->n->store, first, count));
			kvs__buf_add(b, out, 8);
			continue;
		}
		if (kvs__buf_reserve(b, (size_t)count * 8) != KVS_OK)
			break;
		for (uint32_t g = first; g < first + count; g++, b->len += 8)
			kvs__put_le64((unsigned char *)b->data + b->len,
			              kvs__store_segment_digest(s->n->store, g));
		b->data[b->len] = '\0'; /* as kvs__buf_add leaves it */
	}
	r->rc = b->rc;
	r->value = b->data;
	r->value_len = b->len;
}

struct segkeys {
	kvs__buf *b;
	size_t n;
	int more;
};

static int add_segkey(void *ud, const void *key, size_t key_len,
                      const kvs_stamp *stamp, unsigned flags)
{
	struct segkeys *sk = ud;
	kvs_record rec;

	if (sk->n == KVS__PEER_MAX_SEGKEYS) {
		sk->more = 1;
		return 1;
	}
	memset(&rec, 0, sizeof(rec));
	rec.key = key;
	rec.key_len = key_len;
	rec.stamp = *stamp;
	rec.flags = flags;
	kvs__peer_rec(sk->b, &rec);
	sk->n++;
	return 0;
}

/* The keys and versions of segment `limit`. */
static void op_segkeys(struct kvs__serving *s, size_t i)
{
	const kvs__preq *q = &s->ops[i];
	kvs__pres *r = &s->res[i];
	struct segkeys sk = {&s->bufs[i], 0, 0};

	if (q->limit >= KVS__AAE_SEGMENTS) {
		r->rc = KVS_EPROTO;
		return;
	}
	r->rc = kvs__store_segment_scan(s->n->store, q->limit, add_segkey, &sk);
	if (r->rc == KVS_OK)
		r->rc = s->bufs[i].rc;
	if (sk.more)
		r->flags |= KVS__PA_MORE;
	r->n_recs = sk.n;
	r->recs = (const unsigned char *)s->bufs[i].data;
	r->recs_len = s->bufs[i].len;
}

static void op_kv(struct kvs__serving *s, size_t i)
{
	const kvs__preq *q = &s->ops[i];
	kvs__kv_req *k = &s->kreq[i];

	memset(k, 0, sizeof(*k));
	k->kind = q->code == KVS__P_GET   ? KVS__KV_GET
	          : q->code == KVS__P_PUT ? KVS__KV_PUT
	                                  : KVS__KV_DELETE;
	k->key = q->key;
	k->key_len = q->key_len;
	k->value = q->value;
	k->value_len = q->value_len;
	kvs__peer_cond_of(q, &k->cond);
	k->r = q->r;
	k->w = q->w;
	if (k->cond.flags == 0 && k->kind != KVS__KV_GET)
		k->stamp = q->stamp;
	k->from_peer = 1;
	kvs__op_hold(&s->op);
	kvs__node_kv(s->n, k, &s->kres[i], kvs__op_release_cb, &s->op);
}

/* Refuse operation i: its sender's epoch is too old. */
static void fence(struct kvs__serving *s, size_t i)
{
	unsigned code = s->ops[i].code;

	if (code == KVS__P_PUT || code == KVS__P_DELETE)
		s->kres[i].rc = KVS_ESTALEEPOCH; /* answered from kres */
	else
		s->res[i].rc = KVS_ESTALEEPOCH;
}

void kvs__node_serve_peer(kvs__node *n, const void *frame, size_t len,
                          kvs__peer_reply *out, kvs__node_cb cb, void *ud)
{
	struct kvs__serving *s = calloc(1, sizeof(*s));
	uint32_t sender;
	uint64_t epoch = 0;
	int rc, fenced;

	memset(out, 0, sizeof(*out));
	if (s == NULL) {
		out->rc = KVS_ENOMEM;
		cb(ud);
		return;
	}
	rc = kvs__peer_req_decode(frame, len, &sender, &epoch, &s->ops,
	                          &s->n_ops, &out->why);
	if (rc == KVS_OK)
		kvs__node_heard_from(n, sender); /* it is alive */
	if (rc == KVS_OK) {
		s->res = calloc(s->n_ops, sizeof(*s->res));
		s->kreq = calloc(s->n_ops, sizeof(*s->kreq));
		s->kres = calloc(s->n_ops, sizeof(*s->kres));
		s->bufs = calloc(s->n_ops, sizeof(*s->bufs));
		s->slots = calloc(s->n_ops, sizeof(*s->slots));
		if (s->res == NULL || s->kreq == NULL || s->kres == NULL ||
		    s->bufs == NULL || s->slots == NULL)
			rc = KVS_ENOMEM;
	}
	if (rc != KVS_OK) {
		serving_free(s);
		out->rc = rc;
		cb(ud);
		return;
	}
	kvs__op_init(&s->op, serving_done);
	s->n = n;
	s->out = out;
	s->cb = cb;
	s->ud = ud;
	for (size_t i = 0; i < s->n_ops; i++) {
		kvs__buf_init(&s->bufs[i], 0);
		s->slots[i].s = s;
		s->slots[i].i = i;
	}
	/* Fencing: a sender on an epoch older than every registered node
	 * has been cut off (its registration ran out) and may not know the
	 * owners: its writes are refused. */
	fenced = epoch != 0 && epoch < atomic_load(&n->fence);
	if (fenced)
		atomic_fetch_add(&n->counters.fenced, 1);
	for (size_t i = 0; i < s->n_ops; i++) {
		unsigned code = s->ops[i].code;

		if (fenced && (code == KVS__P_APPLY || code == KVS__P_PUT ||
		               code == KVS__P_DELETE)) {
			fence(s, i);
			continue;
		}
		switch (code) {
		case KVS__P_READ:
			op_read(s, i);
			break;
		case KVS__P_APPLY:
			op_apply(s, i);
			break;
		case KVS__P_SCAN:
			op_scan(s, i);
			break;
		case KVS__P_DIGESTS:
			op_digests(s, i);
			break;
		case KVS__P_SEGKEYS:
			op_segkeys(s, i);
			break;
		default:
			op_kv(s, i);
			break;
		}
	}
	kvs__op_release(&s->op);
}

/* The result of a forwarded client request, as the wire carries it. */
static void from_result(kvs__pres *r, const kvs__result *k)
{
	r->rc = k->rc;
	r->stamp = k->stamp;
	if (k->rc == KVS_NOTFOUND && k->stamp.hlc != 0)
		r->flags |= KVS__PA_TOMBSTONE;
	r->value = k->value;
	r->value_len = k->value_len;
	r->acks = k->acks;
	r->need = k->need;
	r->replicas = k->replicas;
}

char *kvs__peer_reply_encode(kvs__peer_reply *reply, size_t *len)
{
	struct kvs__serving *s = reply->s;
	kvs__buf b;

	*len = 0;
	if (s == NULL)
		return NULL;
	kvs__buf_init(&b, 0);
	kvs__peer_res_head(&b, s->n_ops);
	for (size_t i = 0; i < s->n_ops; i++) {
		unsigned code = s->ops[i].code;

		if (code == KVS__P_GET || code == KVS__P_PUT ||
		    code == KVS__P_DELETE)
			from_result(&s->res[i], &s->kres[i]);
		kvs__peer_res_op(&b, &s->res[i]);
	}
	return kvs__buf_take(&b, len);
}

void kvs__peer_reply_clear(kvs__peer_reply *reply)
{
	if (reply->s != NULL)
		serving_free(reply->s);
	memset(reply, 0, sizeof(*reply));
}
