/*
 * batch.c - POST /v1/batch: many gets, puts and deletes in one request.
 *
 *     {"ops": [{"op": "get", "key": "a"},
 *              {"op": "put", "key": "b", "value": "text"},
 *              {"op": "put", "key_b64": "AAE=", "value_b64": "AP8=",
 *               "if_match": "<version>"},
 *              {"op": "delete", "key": "c"}]}
 *
 * Each operation runs as its own request would: served or coordinated here
 * when this node owns the key, else sent to an owner (with the hop header,
 * so it goes no further). They all run at once; the answer lists one result
 * per operation, in order, once the last one is done. The smart client
 * sends each shard the operations whose keys it owns, so that normally
 * nothing is forwarded. Operations are independent: there is no
 * transaction across keys.
 */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "server.h"

#define JSON_TYPE "application/json"
#define KV_PATH "/v1/kv/"

enum op_kind { OP_GET, OP_PUT, OP_DELETE };

struct batch;

struct bop {
	struct batch *b;
	enum op_kind kind;
	unsigned char *key;
	size_t key_len;
	unsigned char *value;
	size_t value_len;
	kvs_write_options wopts;
	kvs__route route;
	size_t tried[KVS_RING_MAX_OWNERS];
	size_t n_tried;
	/* The result. */
	unsigned status;
	const char *code; /* error code, NULL on success */
	kvs_stamp stamp;
	int have_stamp;
	unsigned char *rvalue; /* a get's value */
	size_t rvalue_len;
	unsigned acks;
};

struct batch {
	struct req *r;
	pthread_mutex_t mu;
	size_t n;
	struct bop *ops;
	unsigned pending;
};

static void batch_free(struct batch *b)
{
	for (size_t i = 0; b->ops != NULL && i < b->n; i++) {
		free(b->ops[i].key);
		free(b->ops[i].value);
		free(b->ops[i].rvalue);
	}
	free(b->ops);
	pthread_mutex_destroy(&b->mu);
	free(b);
}

static void batch_answer(struct batch *b)
{
	struct textbuf tb = {0};

	tb_append(&tb, "{\"results\":[", 12);
	for (size_t i = 0; i < b->n; i++) {
		const struct bop *op = &b->ops[i];

		tb_printf(&tb, "%s{\"status\":%u", i ? "," : "", op->status);
		if (op->code != NULL)
			tb_printf(&tb, ",\"error\":\"%s\"", op->code);
		if (op->have_stamp) {
			char st[KVS_STAMP_STRLEN];

			kvs_stamp_format(&op->stamp, st);
			tb_printf(&tb, ",\"version\":\"%s\"", st);
		}
		if (op->kind == OP_GET && op->status == MHD_HTTP_OK) {
			tb_append(&tb, ",\"value_b64\":\"", 14);
			json_base64(&tb, op->rvalue, op->rvalue_len);
			tb_append(&tb, "\"", 1);
		}
		if (op->kind != OP_GET && op->status == MHD_HTTP_OK)
			tb_printf(&tb, ",\"replicas\":%u", op->acks);
		tb_append(&tb, "}", 1);
	}
	tb_append(&tb, "]}\n", 3);
	if (tb.failed) {
		free(tb.data);
		req_fail(b->r, KVS_ENOMEM, "batch");
		return;
	}
	req_answer(b->r, MHD_HTTP_OK, resp_take(b->r->srv, tb.data, tb.len,
	                                        JSON_TYPE));
}

/* One operation finished: the last one answers. */
static void op_done(struct bop *op)
{
	struct batch *b = op->b;
	int last;

	pthread_mutex_lock(&b->mu);
	last = --b->pending == 0;
	pthread_mutex_unlock(&b->mu);
	if (last) {
		batch_answer(b);
		batch_free(b);
	}
}

/* Record a failure from a kvs result code. */
static void op_fail(struct bop *op, int rc)
{
	op->status = http_status_of(rc);
	op->code = kvs_error_code(rc);
}

static int keep_value(struct bop *op, const void *data, size_t len)
{
	op->rvalue = malloc(len ? len : 1);
	if (op->rvalue == NULL)
		return -1;
	if (len > 0)
		memcpy(op->rvalue, data, len);
	op->rvalue_len = len;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Served here                                                          */

static int got_local(void *ud, const kvs_record *rec)
{
	struct bop *op = ud;

	if (keep_value(op, rec->value, rec->value_len) != 0) {
		op_fail(op, KVS_ENOMEM);
		return 0;
	}
	op->status = MHD_HTTP_OK;
	op->stamp = rec->stamp;
	op->have_stamp = 1;
	return 0;
}

static void read_done(void *ud, int rc, const kvs_record *rec)
{
	struct bop *op = ud;

	if (rc == KVS_OK)
		got_local(op, rec);
	else
		op_fail(op, rc);
	op_done(op);
}

static void write_done(void *ud, int rc, const kvs_stamp *stamp,
                       unsigned acks)
{
	struct bop *op = ud;

	if (rc == KVS_OK) {
		op->status = MHD_HTTP_OK;
		op->stamp = *stamp;
		op->have_stamp = 1;
		op->acks = acks;
	} else {
		op_fail(op, rc);
	}
	op_done(op);
}

static void coordinate(struct bop *op)
{
	struct server *s = op->b->r->srv;
	int rc = kvs__node_write(s->node, op->key, op->key_len, op->value,
	                         op->value_len, op->kind == OP_DELETE,
	                         &op->wopts, &op->route, write_done, op);

	if (rc != KVS_OK) {
		op_fail(op, rc);
		op_done(op);
	}
}

/* ------------------------------------------------------------------ */
/* Sent to an owner                                                     */

static void forward(struct bop *op, size_t target);

static size_t next_owner(struct bop *op)
{
	struct server *s = op->b->r->srv;

	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < op->route.n; i++) {
			size_t o = op->route.owners[i];
			int tried = o == s->self;

			for (size_t t = 0; t < op->n_tried; t++)
				tried |= op->tried[t] == o;
			if (!tried && (pass == 1 || kvs__node_peer_up(s->node, o)))
				return o;
		}
	return (size_t)-1;
}

static void forwarded(void *ud, kvs__http_response *resp)
{
	struct bop *op = ud;
	struct server *s = op->b->r->srv;
	size_t len;
	const char *etag;

	if (resp->rc != KVS_OK) {
		size_t next = next_owner(op);

		kvs__http_response_clear(resp);
		if (op->kind != OP_GET && op->route.self >= 0 &&
		    kvs__node_coordinator(s->node, &op->route) == s->self) {
			coordinate(op);
			return;
		}
		if (next != (size_t)-1) {
			forward(op, next);
			return;
		}
		op_fail(op, KVS_EUNAVAIL);
		op_done(op);
		return;
	}
	op->status = (unsigned)resp->status;
	etag = kvs__http_header(resp, MHD_HTTP_HEADER_ETAG, &len);
	if (etag != NULL && kvs_stamp_parse(&op->stamp, etag, len) == KVS_OK)
		op->have_stamp = 1;
	if (resp->status == MHD_HTTP_OK && op->kind == OP_GET) {
		op->rvalue = (unsigned char *)resp->body;
		op->rvalue_len = resp->body_len;
		resp->body = NULL;
	} else if (resp->status == MHD_HTTP_OK) {
		cJSON *doc = cJSON_ParseWithLength(resp->body, resp->body_len);
		cJSON *n = cJSON_GetObjectItemCaseSensitive(doc, "replicas");

		op->acks = cJSON_IsNumber(n) ? (unsigned)n->valuedouble : 0;
		cJSON_Delete(doc);
	} else {
		/* Keep the owner's stable error code. */
		cJSON *doc = cJSON_ParseWithLength(resp->body, resp->body_len);
		cJSON *e = cJSON_GetObjectItemCaseSensitive(doc, "error");
		int rc = kvs_error_from_code(
		        cJSON_IsString(e) ? e->valuestring : NULL, KVS_EHTTP);

		cJSON_Delete(doc);
		op->code = kvs_error_code(rc == KVS_OK ? KVS_EHTTP : rc);
	}
	kvs__http_response_clear(resp);
	op_done(op);
}

static void forward(struct bop *op, size_t target)
{
	struct server *s = op->b->r->srv;
	char *esc = kvs__url_escape(op->key, op->key_len);
	char hop[128], cond[160];
	const char *auth = req_header(op->b->r, MHD_HTTP_HEADER_AUTHORIZATION);
	char authz[600];
	kvs__http_request hr;
	size_t len;
	char *url;
	int rc;

	op->tried[op->n_tried++] = target;
	if (esc == NULL) {
		op_fail(op, KVS_ENOMEM);
		op_done(op);
		return;
	}
	len = strlen(kvs__node_base_url(s->node, target)) + sizeof(KV_PATH) +
	      strlen(esc);
	url = malloc(len);
	if (url == NULL) {
		free(esc);
		op_fail(op, KVS_ENOMEM);
		op_done(op);
		return;
	}
	snprintf(url, len, "%s%s%s", kvs__node_base_url(s->node, target),
	         KV_PATH, esc);
	free(esc);
	memset(&hr, 0, sizeof(hr));
	hr.url = url;
	hr.method = op->kind == OP_GET ? "GET"
	            : op->kind == OP_PUT ? "PUT"
	                                 : "DELETE";
	snprintf(hop, sizeof(hop), "%s: %s", KVS_HDR_HOP, s->me->name);
	hr.headers[hr.n_headers++] = hop;
	if (op->wopts.flags & KVS_WRITE_IF_STAMP) {
		char st[KVS_STAMP_STRLEN];

		kvs_stamp_format(&op->wopts.expect, st);
		snprintf(cond, sizeof(cond), "If-Match: \"%s\"", st);
		hr.headers[hr.n_headers++] = cond;
	} else if (op->wopts.flags & KVS_WRITE_IF_ABSENT) {
		hr.headers[hr.n_headers++] = "If-None-Match: *";
	}
	if (auth != NULL && strlen(auth) < 500) {
		snprintf(authz, sizeof(authz), "Authorization: %s", auth);
		hr.headers[hr.n_headers++] = authz;
	}
	if (op->kind == OP_PUT) {
		hr.body = op->value ? (const void *)op->value : "";
		hr.body_len = op->value_len;
	}
	atomic_fetch_add(&kvs__node_counters_of(s->node)->forwarded, 1);
	rc = kvs__node_send(s->node, target, &hr, forwarded, op);
	free(url);
	if (rc != KVS_OK) {
		op_fail(op, rc);
		op_done(op);
	}
}

/* Start one operation; it ends in op_done. */
static void run_op(struct bop *op)
{
	struct server *s = op->b->r->srv;
	int rc;

	kvs__node_route(s->node, op->key, op->key_len, &op->route);
	if (op->kind == OP_GET) {
		if (op->route.self < 0) {
			size_t t = next_owner(op);

			forward(op, t != (size_t)-1 ? t : op->route.owners[0]);
			return;
		}
		if (s->cc->read_quorum <= 1 || op->route.n <= 1) {
			rc = kvs_store_read(kvs__node_store(s->node), op->key,
			                    op->key_len, 0, got_local, op);
			if (rc != KVS_OK)
				op_fail(op, rc);
			op_done(op);
			return;
		}
		rc = kvs__node_read(s->node, op->key, op->key_len, &op->route,
		                    read_done, op);
		if (rc != KVS_OK) {
			op_fail(op, rc);
			op_done(op);
		}
		return;
	}
	if (op->route.self >= 0 &&
	    (kvs__node_coordinator(s->node, &op->route) == s->self ||
	     op->b->r->hop || s->cc->routing == KVS_ROUTING_REDIRECT)) {
		coordinate(op);
		return;
	}
	forward(op, kvs__node_coordinator(s->node, &op->route));
}

/* ------------------------------------------------------------------ */
/* Parsing                                                              */

/* Bytes from "name" (a string) or "name_b64"; 1 found, 0 absent, -1 bad. */
static int bytes_field(const cJSON *o, const char *name, unsigned char **out,
                       size_t *len)
{
	char b64name[32];
	const cJSON *plain = cJSON_GetObjectItemCaseSensitive(o, name);
	const cJSON *enc;

	snprintf(b64name, sizeof(b64name), "%s_b64", name);
	enc = cJSON_GetObjectItemCaseSensitive(o, b64name);
	if (plain != NULL && enc != NULL)
		return -1;
	if (cJSON_IsString(plain)) {
		*len = strlen(plain->valuestring);
		*out = malloc(*len + 1);
		if (*out == NULL)
			return -1;
		memcpy(*out, plain->valuestring, *len + 1);
		return 1;
	}
	if (cJSON_IsString(enc)) {
		size_t n = strlen(enc->valuestring);

		*out = malloc(n * 3 / 4 + 3);
		if (*out == NULL ||
		    kvs__b64_decode(enc->valuestring, n, *out, len) != 0)
			return -1;
		return 1;
	}
	return plain == NULL && enc == NULL ? 0 : -1;
}

/* Fill op from its JSON; answers 400 and returns -1 when it is wrong. */
static int parse_op(struct req *r, const cJSON *o, size_t i, struct bop *op)
{
	const cJSON *kind = cJSON_GetObjectItemCaseSensitive(o, "op");
	const cJSON *im = cJSON_GetObjectItemCaseSensitive(o, "if_match");
	const cJSON *ia = cJSON_GetObjectItemCaseSensitive(o, "if_absent");
	int rc;

	if (!cJSON_IsObject(o) || !cJSON_IsString(kind)) {
		req_error(r, MHD_HTTP_BAD_REQUEST, "bad_batch",
		          "operation %zu: expected an object with \"op\"", i);
		return -1;
	}
	if (strcmp(kind->valuestring, "get") == 0) {
		op->kind = OP_GET;
	} else if (strcmp(kind->valuestring, "put") == 0) {
		op->kind = OP_PUT;
	} else if (strcmp(kind->valuestring, "delete") == 0) {
		op->kind = OP_DELETE;
	} else {
		req_error(r, MHD_HTTP_BAD_REQUEST, "bad_batch",
		          "operation %zu: \"op\" must be get, put or delete", i);
		return -1;
	}
	rc = bytes_field(o, "key", &op->key, &op->key_len);
	if (rc != 1 || op->key_len == 0 ||
	    op->key_len > r->srv->cc->max_key_bytes) {
		req_error(r, MHD_HTTP_BAD_REQUEST, "bad_batch",
		          "operation %zu: needs a \"key\" (or \"key_b64\") of 1 to "
		          "%zu bytes",
		          i, r->srv->cc->max_key_bytes);
		return -1;
	}
	rc = bytes_field(o, "value", &op->value, &op->value_len);
	if (rc < 0 || (op->kind == OP_PUT) != (rc == 1) ||
	    op->value_len > r->srv->cc->max_value_bytes) {
		req_error(r, MHD_HTTP_BAD_REQUEST, "bad_batch",
		          "operation %zu: a put needs a \"value\" (or "
		          "\"value_b64\") of at most %zu bytes, and only a put "
		          "has one",
		          i, r->srv->cc->max_value_bytes);
		return -1;
	}
	if (op->kind != OP_GET && r->role < ROLE_WRITE) {
		req_error(r, MHD_HTTP_FORBIDDEN, "forbidden",
		          "operation %zu: this token may only read", i);
		return -1;
	}
	if (im != NULL) {
		if (!cJSON_IsString(im) || op->kind == OP_GET ||
		    kvs_stamp_parse(&op->wopts.expect, im->valuestring,
		                    strlen(im->valuestring)) != KVS_OK) {
			req_error(r, MHD_HTTP_BAD_REQUEST, "bad_batch",
			          "operation %zu: \"if_match\" must be a version "
			          "of a put or delete",
			          i);
			return -1;
		}
		op->wopts.flags |= KVS_WRITE_IF_STAMP;
	}
	if (cJSON_IsTrue(ia)) {
		if (op->kind != OP_PUT) {
			req_error(r, MHD_HTTP_BAD_REQUEST, "bad_batch",
			          "operation %zu: \"if_absent\" is for puts", i);
			return -1;
		}
		op->wopts.flags |= KVS_WRITE_IF_ABSENT;
	}
	return 0;
}

void handle_batch(struct req *r)
{
	cJSON *doc, *ops, *it;
	struct batch *b;
	size_t i = 0, n;

	if (r->method != M_POST) {
		req_not_allowed(r, "POST");
		return;
	}
	doc = cJSON_ParseWithLength(r->body ? r->body : "", r->body_len);
	ops = cJSON_GetObjectItemCaseSensitive(doc, "ops");
	if (!cJSON_IsArray(ops)) {
		cJSON_Delete(doc);
		req_error(r, MHD_HTTP_BAD_REQUEST, "bad_batch",
		          "the body must be JSON: {\"ops\": [...]}");
		return;
	}
	n = (size_t)cJSON_GetArraySize(ops);
	if (n > r->srv->cc->max_batch_ops) {
		cJSON_Delete(doc);
		req_error(r, MHD_HTTP_CONTENT_TOO_LARGE, "too_many_ops",
		          "%zu operations; the limit is %u", n,
		          r->srv->cc->max_batch_ops);
		return;
	}
	b = calloc(1, sizeof(*b));
	if (b != NULL)
		b->ops = calloc(n ? n : 1, sizeof(*b->ops));
	if (b == NULL || b->ops == NULL) {
		free(b);
		cJSON_Delete(doc);
		req_fail(r, KVS_ENOMEM, "batch");
		return;
	}
	pthread_mutex_init(&b->mu, NULL);
	b->r = r;
	b->n = n;
	cJSON_ArrayForEach(it, ops) {
		b->ops[i].b = b;
		if (parse_op(r, it, i, &b->ops[i]) != 0) {
			cJSON_Delete(doc);
			batch_free(b);
			return;
		}
		i++;
	}
	cJSON_Delete(doc);
	/* One count held by this function, so that no operation answers
	 * before all have started. */
	b->pending = (unsigned)n + 1;
	req_suspend(r);
	for (i = 0; i < n; i++)
		run_op(&b->ops[i]);
	op_done(&(struct bop){.b = b});
}
