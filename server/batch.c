/*
 * batch.c - POST /v1/batch: many gets, puts and deletes in one request.
 *
 *     {"ops": [{"op": "get", "key": "a"},
 *              {"op": "put", "key": "b", "value": "text"},
 *              {"op": "put", "key_b64": "AAE=", "value_b64": "AP8=",
 *               "if_match": "<version>"},
 *              {"op": "delete", "key": "c"}]}
 *
 * batch_parse.c turns the document into operations, with bounded work;
 * they run as one node batch (kvs__node_batch), each routed as its own
 * request would be, all at once, and the answer lists one result per
 * operation, in order. There is no transaction across keys.
 *
 * The answer stays within [limits] max_answer_bytes. Every operation
 * runs; when a get's value would take the answer past the cap, that
 * result and every later get's that found a value are answered 413
 * answer_too_large instead, and "truncated_at" gives the first of them:
 * the client asks for those keys again. Writes are never left out (their
 * results are small), and the first value found is always sent, so that
 * asking again always makes progress.
 */
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "batch_parse.h"
#include "server.h"

/* The most one result takes without its value: status, an error code,
 * a version, replicas, punctuation and field names. */
#define RESULT_SMALL_BYTES 160
/* The answer's end: "]", "truncated_at" and its number, "}". */
#define ANSWER_END_BYTES 48

struct batch {
	struct batch_ops ops;
	kvs__result *res;
};

static void batch_free(void *ctx)
{
	struct batch *b = ctx;

	for (size_t i = 0; b->res != NULL && i < b->ops.n; i++)
		kvs__result_clear(&b->res[i]);
	free(b->res);
	batch_ops_clear(&b->ops);
	free(b);
}

/* May result i, holding a value of len bytes, go into out, whose cap
 * is cap? Room is kept for every later result's small parts. */
static int value_fits(const kvs__buf *out, size_t cap, size_t len, size_t i,
                      size_t n)
{
	size_t need = out->len + KVS_B64_LEN(len) +
	              (n - i) * RESULT_SMALL_BYTES + ANSWER_END_BYTES;

	return need <= cap;
}

static void render(struct req *r)
{
	struct batch *b = r->ctx;
	size_t cap = r->srv->cc->max_answer_bytes, cut = b->ops.n;
	int sent_value = 0;
	kvs__buf out;

	kvs__buf_init(&out, 0);
	kvs__buf_addf(&out, "{\"%s\":[", KVS_F_RESULTS);
	for (size_t i = 0; i < b->ops.n; i++) {
		const kvs__result *res = &b->res[i];
		int get = b->ops.reqs[i].kind == KVS__KV_GET;
		int rc = res->rc;

		/* Past the cap here, or dropped by the node batch (which
		 * bounds the values it holds the same way). */
		if (get && (rc == KVS_EANSWERSIZE ||
		            (rc == KVS_OK &&
		             (cut < b->ops.n ||
		              (sent_value && !value_fits(&out, cap, res->value_len,
		                                         i, b->ops.n)))))) {
			if (cut == b->ops.n)
				cut = i;
			rc = KVS_EANSWERSIZE;
		}
		kvs__buf_addf(&out, "%s{\"%s\":%u", i ? "," : "", KVS_F_STATUS,
		              kvs__http_status(rc));
		if (rc != KVS_OK)
			kvs__buf_addf(&out, ",\"%s\":\"%s\"", KVS_F_ERROR,
			              kvs_error_code(rc));
		if (res->stamp.hlc != 0 && rc != KVS_EANSWERSIZE) {
			char st[KVS_STAMP_STRLEN];

			kvs_stamp_format(&res->stamp, st);
			kvs__buf_addf(&out, ",\"%s\":\"%s\"", KVS_F_VERSION,
			              st);
		}
		if (get && rc == KVS_OK) {
			kvs__buf_add(&out, ",", 1);
			kvs__json_b64(&out, KVS_F_VALUE, res->value,
			              res->value_len);
			sent_value = 1;
		}
		if (!get && rc == KVS_OK)
			kvs__buf_addf(&out, ",\"%s\":%u", KVS_F_REPLICAS,
			              res->acks);
		kvs__buf_add(&out, "}", 1);
	}
	kvs__buf_add(&out, "]", 1);
	if (cut < b->ops.n)
		kvs__buf_addf(&out, ",\"%s\":%zu", KVS_F_TRUNCATED_AT, cut);
	kvs__buf_add(&out, "}", 1);
	reply_json(r, 200, &out);
}

void handle_batch(struct req *r)
{
	char why[BATCH_WHY_MAX];
	struct batch *b;
	unsigned rq, wq;
	size_t n;
	int rc;

	if (!req_quorum(r, KVS_ARG_R, &rq) || !req_quorum(r, KVS_ARG_W, &wq))
		return;
	b = calloc(1, sizeof(*b));
	if (b == NULL) {
		reply_fail(r, KVS_ENOMEM, "batch");
		return;
	}
	r->ctx = b;
	r->ctx_free = batch_free;
	rc = batch_parse(r->body, r->body != NULL ? r->body_len : 0,
	                 r->srv->cc->max_batch_ops, &b->ops, why);
	if (rc == KVS_ENOMEM) {
		reply_fail(r, rc, "batch");
		return;
	}
	if (rc != KVS_OK) {
		reply_error(r, rc, "%s", why);
		return;
	}
	n = b->ops.n;
	for (size_t i = 0; i < n; i++) {
		if (b->ops.reqs[i].kind != KVS__KV_GET &&
		    r->role < ROLE_WRITE) {
			reply_error(r, KVS_EFORBIDDEN,
			            "operation %zu: this token may only read",
			            i);
			return;
		}
		b->ops.reqs[i].r = rq;
		b->ops.reqs[i].w = wq;
	}
	b->res = calloc(n ? n : 1, sizeof(*b->res));
	if (b->res == NULL) {
		reply_fail(r, KVS_ENOMEM, "batch");
		return;
	}
	req_start(r);
	kvs__node_batch(r->view->node, b->ops.reqs, n,
	                r->srv->cc->max_answer_bytes, b->res, req_node_done, r);
	req_wait(r, render);
}
