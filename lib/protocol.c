/*
 * protocol.c - HTTP statuses of result codes, and the peer frame codec
 * (the layout is drawn at the top of protocol.h).
 */
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

#define REQ_MAGIC "KVSQ"
#define RES_MAGIC "KVSA"
#define REQ_HEAD 12u
#define RES_HEAD 8u
#define OP_FIXED 24u
#define RES_FIXED 24u
#define STAMP_BYTES 12u
/* key_len + hlc + shard + flags + value_len */
#define REC_FIXED (4u + 8u + 4u + 1u + 4u)

unsigned kvs__http_status(int rc)
{
	switch (rc) {
	case KVS_OK:
		return 200;
	case KVS_NOTFOUND:
	case KVS_ENOENDPOINT:
		return 404;
	case KVS_EINVAL:
	case KVS_EKEYSIZE:
	case KVS_ERANGE:
	case KVS_EBADENCODING:
	case KVS_EMISSINGARG:
	case KVS_EBADARG:
	case KVS_EUNKNOWNARG:
	case KVS_EBADCOND:
	case KVS_EBADBATCH:
	case KVS_EBADREQUEST:
	case KVS_ECLOCK:
		return 400;
	case KVS_EAUTH:
		return 401;
	case KVS_EFORBIDDEN:
		return 403;
	case KVS_EMETHOD:
		return 405;
	case KVS_ELENGTH:
		return 411;
	case KVS_ESTATIC:
	case KVS_ETOPOLOGY:
		return 409;
	case KVS_ECONFLICT:
	case KVS_EEXISTS:
		return 412;
	case KVS_EVALSIZE:
	case KVS_ETOOMANY:
	case KVS_EANSWERSIZE:
		return 413;
	case KVS_EURITOOLONG:
		return 414;
	case KVS_EWRONGSHARD:
		return 421;
	case KVS_ENOTSUP:
		return 501;
	case KVS_EPROTO:
	case KVS_EHTTP:
		return 502;
	case KVS_ETIMEDOUT:
		return 504;
	case KVS_EUNAVAIL:
	case KVS_ECONNECT:
	case KVS_EBUSY:
	case KVS_ECLOSED:
	case KVS_ESHUTDOWN:
	case KVS_EOVERLOAD:
	case KVS_ESTALEEPOCH:
		return 503;
	case KVS_EFULL:
		return 507;
	default:
		return 500;
	}
}

int kvs__result_of_status(long status, const char *error_code)
{
	/* Not a result code: kvs_error_from_code's answer for unknown. */
	const int unknown = INT32_MIN;
	int rc = kvs_error_from_code(error_code, unknown);

	if (rc != unknown && rc != KVS_OK)
		return rc;
	switch (status) {
	case 200:
	case 202: /* accepted: a topology change, applied shortly */
		return KVS_OK;
	case 400:
		return KVS_EINVAL;
	case 401:
		return KVS_EAUTH;
	case 403:
		return KVS_EFORBIDDEN;
	case 404:
		return KVS_NOTFOUND;
	case 405:
		return KVS_EMETHOD;
	case 411:
		return KVS_ELENGTH;
	case 412:
		return KVS_ECONFLICT;
	case 413:
		return KVS_EVALSIZE;
	case 414:
		return KVS_EURITOOLONG;
	case 421:
		return KVS_EWRONGSHARD;
	case 503:
		return KVS_EUNAVAIL;
	case 504:
		return KVS_ETIMEDOUT;
	case 507:
		return KVS_EFULL;
	default:
		return KVS_EHTTP;
	}
}

int kvs__error_of_body(long status, const char *body, size_t len)
{
	static const char field[] = "\"" KVS_F_ERROR "\":\"";
	const char *p = body != NULL ? memmem(body, len, field,
	                                      sizeof(field) - 1)
	                             : NULL;
	char code[64];
	size_t n = 0;

	if (p != NULL) {
		const char *end = body + len;

		p += sizeof(field) - 1;
		while (p < end && n < sizeof(code) - 1 &&
		       ((*p >= 'a' && *p <= 'z') || *p == '_'))
			code[n++] = *p++;
		if (p == end || *p != '"')
			n = 0;
	}
	code[n] = '\0';
	return kvs__result_of_status(status, n > 0 ? code : NULL);
}

/* ------------------------------------------------------------------ */
/* Encoding                                                             */

static void put_u16(kvs__buf *b, unsigned v)
{
	unsigned char x[2] = {(unsigned char)v, (unsigned char)(v >> 8)};

	kvs__buf_add(b, x, 2);
}

static void put_u32(kvs__buf *b, uint32_t v)
{
	unsigned char x[4];

	for (int i = 0; i < 4; i++)
		x[i] = (unsigned char)(v >> (8 * i));
	kvs__buf_add(b, x, 4);
}

static void put_u64(kvs__buf *b, uint64_t v)
{
	unsigned char x[8];

	for (int i = 0; i < 8; i++)
		x[i] = (unsigned char)(v >> (8 * i));
	kvs__buf_add(b, x, 8);
}

static void put_u8(kvs__buf *b, unsigned v)
{
	unsigned char x = (unsigned char)v;

	kvs__buf_add(b, &x, 1);
}

static void put_bytes(kvs__buf *b, const void *data, size_t len)
{
	if (len > UINT32_MAX) {
		b->rc = KVS_ERANGE;
		return;
	}
	put_u32(b, (uint32_t)len);
	kvs__buf_add(b, data, len);
}

static void put_stamp(kvs__buf *b, const kvs_stamp *s)
{
	put_u64(b, s->hlc);
	put_u32(b, s->shard);
}

void kvs__peer_req_head(kvs__buf *b, uint32_t sender, uint64_t epoch,
                        size_t n)
{
	kvs__buf_add(b, REQ_MAGIC, 4);
	put_u8(b, KVS__PEER_VERSION);
	put_u8(b, 0);
	put_u16(b, (unsigned)n);
	put_u32(b, sender);
	put_u64(b, epoch);
}

void kvs__peer_req_set_count(char *frame, size_t n)
{
	/* magic (4), version (1), reserved (1), then the count (u16). */
	frame[6] = (char)(unsigned char)n;
	frame[7] = (char)(unsigned char)(n >> 8);
}

void kvs__peer_req_op(kvs__buf *b, const kvs__preq *q)
{
	unsigned n_expect = q->n_expect < KVS__MAX_EXPECT ? q->n_expect
	                                                  : KVS__MAX_EXPECT;

	put_u8(b, q->code);
	put_u8(b, q->flags);
	put_u8(b, q->r);
	put_u8(b, q->w);
	put_u32(b, q->limit);
	put_stamp(b, &q->stamp);
	put_u8(b, n_expect);
	put_u8(b, 0);
	put_u16(b, 0);
	for (unsigned i = 0; i < n_expect; i++)
		put_stamp(b, &q->expect[i]);
	put_bytes(b, q->key, q->key_len);
	put_bytes(b, q->value, q->value_len);
}

void kvs__peer_res_head(kvs__buf *b, size_t n)
{
	kvs__buf_add(b, RES_MAGIC, 4);
	put_u8(b, KVS__PEER_VERSION);
	put_u8(b, 0);
	put_u16(b, (unsigned)n);
}

void kvs__peer_res_op(kvs__buf *b, const kvs__pres *r)
{
	put_u32(b, (uint32_t)r->rc);
	put_u8(b, r->flags);
	put_u8(b, 0);
	put_u16(b, r->acks);
	put_u16(b, r->need);
	put_u16(b, r->replicas);
	put_stamp(b, &r->stamp);
	put_bytes(b, r->value, r->value_len);
	put_u32(b, (uint32_t)r->n_recs);
	kvs__buf_add(b, r->recs, r->recs_len);
}

void kvs__peer_rec(kvs__buf *b, const kvs_record *rec)
{
	put_bytes(b, rec->key, rec->key_len);
	put_stamp(b, &rec->stamp);
	put_u8(b, rec->flags & KVS_RECORD_TOMBSTONE);
	put_bytes(b, rec->value, rec->value_len);
}

/* ------------------------------------------------------------------ */
/* Decoding                                                             */

/* A cursor that never reads past end. */
struct rd {
	const unsigned char *p;
	size_t left;
	int bad;
};

static const unsigned char *take(struct rd *r, size_t n)
{
	const unsigned char *p = r->p;

	if (r->bad || n > r->left) {
		r->bad = 1;
		return NULL;
	}
	r->p += n;
	r->left -= n;
	return p;
}

static unsigned get_u8(struct rd *r)
{
	const unsigned char *p = take(r, 1);

	return p ? p[0] : 0;
}

static unsigned get_u16(struct rd *r)
{
	const unsigned char *p = take(r, 2);

	return p ? (unsigned)p[0] | (unsigned)p[1] << 8 : 0;
}

static uint32_t get_u32(struct rd *r)
{
	const unsigned char *p = take(r, 4);
	uint32_t v = 0;

	for (int i = 0; p != NULL && i < 4; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}

static uint64_t get_u64(struct rd *r)
{
	const unsigned char *p = take(r, 8);
	uint64_t v = 0;

	for (int i = 0; p != NULL && i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void get_stamp(struct rd *r, kvs_stamp *s)
{
	s->hlc = get_u64(r);
	s->shard = get_u32(r);
}

static const void *get_bytes(struct rd *r, size_t *len)
{
	uint32_t n = get_u32(r);
	const unsigned char *p = take(r, n);

	*len = p != NULL ? n : 0;
	return p != NULL ? (const void *)p : (const void *)"";
}

int kvs__peer_req_decode(const void *data, size_t len, uint32_t *sender,
                         uint64_t *epoch, kvs__preq **ops_out, size_t *n_out,
                         const char **why)
{
	struct rd r = {data, len, 0};
	const unsigned char *magic = take(&r, 4);
	unsigned version, n;
	kvs__preq *ops;

	*ops_out = NULL;
	*n_out = 0;
	if (magic == NULL || memcmp(magic, REQ_MAGIC, 4) != 0) {
		*why = "not a peer request frame";
		return KVS_EPROTO;
	}
	version = get_u8(&r);
	get_u8(&r);
	n = get_u16(&r);
	*sender = get_u32(&r);
	*epoch = get_u64(&r);
	if (r.bad || version != KVS__PEER_VERSION) {
		*why = r.bad ? "truncated frame" : "unknown protocol version";
		return KVS_EPROTO;
	}
	if (n > KVS__PEER_MAX_OPS || (size_t)n > r.left / (OP_FIXED + 8u)) {
		*why = "bad number of operations";
		return KVS_EPROTO;
	}
	ops = calloc(n ? n : 1, sizeof(*ops));
	if (ops == NULL)
		return KVS_ENOMEM;
	for (unsigned i = 0; i < n && !r.bad; i++) {
		kvs__preq *q = &ops[i];

		q->code = get_u8(&r);
		q->flags = get_u8(&r);
		q->r = get_u8(&r);
		q->w = get_u8(&r);
		q->limit = get_u32(&r);
		get_stamp(&r, &q->stamp);
		q->n_expect = get_u8(&r);
		take(&r, 3);
		if (q->code < KVS__P_READ || q->code > KVS__P_SEGKEYS ||
		    q->n_expect > KVS__MAX_EXPECT) {
			free(ops);
			*why = "bad operation";
			return KVS_EPROTO;
		}
		for (unsigned e = 0; e < q->n_expect; e++)
			get_stamp(&r, &q->expect[e]);
		q->key = get_bytes(&r, &q->key_len);
		q->value = get_bytes(&r, &q->value_len);
	}
	if (r.bad || r.left != 0) {
		free(ops);
		*why = r.bad ? "truncated frame" : "bytes after the last operation";
		return KVS_EPROTO;
	}
	*ops_out = ops;
	*n_out = n;
	return KVS_OK;
}

/* Check the records of a SCAN result; returns 0 or -1. */
static int check_recs(struct rd *r, size_t n)
{
	for (size_t i = 0; i < n && !r->bad; i++) {
		size_t len;

		get_bytes(r, &len);
		take(r, STAMP_BYTES + 1);
		get_bytes(r, &len);
	}
	return r->bad ? -1 : 0;
}

int kvs__peer_res_decode(const void *data, size_t len, kvs__pres *res,
                         size_t n)
{
	struct rd r = {data, len, 0};
	const unsigned char *magic = take(&r, 4);

	if (magic == NULL || memcmp(magic, RES_MAGIC, 4) != 0)
		return KVS_EPROTO;
	if (get_u8(&r) != KVS__PEER_VERSION)
		return KVS_EPROTO;
	get_u8(&r);
	if (get_u16(&r) != n || r.bad)
		return KVS_EPROTO;
	for (size_t i = 0; i < n; i++) {
		kvs__pres *x = &res[i];
		const unsigned char *start;
		uint32_t n_recs;

		memset(x, 0, sizeof(*x));
		x->rc = (int)(int32_t)get_u32(&r);
		x->flags = get_u8(&r);
		get_u8(&r);
		x->acks = get_u16(&r);
		x->need = get_u16(&r);
		x->replicas = get_u16(&r);
		get_stamp(&r, &x->stamp);
		x->value = get_bytes(&r, &x->value_len);
		n_recs = get_u32(&r);
		if (r.bad || n_recs > r.left / REC_FIXED)
			return KVS_EPROTO;
		start = r.p;
		if (check_recs(&r, n_recs) != 0)
			return KVS_EPROTO;
		x->n_recs = n_recs;
		x->recs = start;
		x->recs_len = (size_t)(r.p - start);
	}
	return r.bad || r.left != 0 ? KVS_EPROTO : KVS_OK;
}

void kvs__precs_start(kvs__precs *it, const kvs__pres *res)
{
	it->p = res->recs;
	it->left = res->n_recs;
}

int kvs__precs_next(kvs__precs *it, kvs_record *rec)
{
	struct rd r = {it->p, SIZE_MAX, 0};

	if (it->left == 0)
		return 0;
	/* The records were checked by kvs__peer_res_decode. */
	memset(rec, 0, sizeof(*rec));
	rec->key = get_bytes(&r, &rec->key_len);
	get_stamp(&r, &rec->stamp);
	rec->flags = get_u8(&r) & KVS_RECORD_TOMBSTONE;
	rec->value = get_bytes(&r, &rec->value_len);
	it->p = r.p;
	it->left--;
	return 1;
}

unsigned kvs__peer_cond_flags(const kvs__cond *c)
{
	return ((c->flags & KVS_WRITE_IF_ABSENT) ? KVS__PQ_IF_ABSENT : 0) |
	       ((c->flags & KVS_WRITE_IF_STAMP) ? KVS__PQ_IF_STAMP : 0) |
	       ((c->flags & KVS_WRITE_IF_EXISTS) ? KVS__PQ_IF_EXISTS : 0);
}

void kvs__peer_cond_of(const kvs__preq *q, kvs__cond *c)
{
	memset(c, 0, sizeof(*c));
	c->flags = ((q->flags & KVS__PQ_IF_ABSENT) ? KVS_WRITE_IF_ABSENT : 0) |
	           ((q->flags & KVS__PQ_IF_STAMP) ? KVS_WRITE_IF_STAMP : 0) |
	           ((q->flags & KVS__PQ_IF_EXISTS) ? KVS_WRITE_IF_EXISTS : 0);
	c->n_expect = q->n_expect;
	memcpy(c->expect, q->expect, q->n_expect * sizeof(c->expect[0]));
}
