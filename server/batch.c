/*
 * batch.c - POST /v1/batch: many gets, puts and deletes in one request.
 *
 *     {"ops": [{"op": "get", "key": "a"},
 *              {"op": "put", "key": "b", "value": "text"},
 *              {"op": "put", "key_b64": "AAE=", "value_b64": "AP8=",
 *               "if_match": "<version>"},
 *              {"op": "delete", "key": "c"}]}
 *
 * The document is parsed here; the operations run as one node batch
 * (kvs__node_batch), each routed as its own request would be, all at
 * once, and the answer lists one result per operation, in order. There is
 * no transaction across keys.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

struct batch {
	size_t n;
	kvs__kv_req *reqs;
	kvs__result *res;
	unsigned char **bufs; /* decoded keys and values: 2 per operation */
};

static void batch_free(void *ctx)
{
	struct batch *b = ctx;

	for (size_t i = 0; i < b->n; i++) {
		if (b->res != NULL)
			kvs__result_clear(&b->res[i]);
		if (b->bufs != NULL) {
			free(b->bufs[2 * i]);
			free(b->bufs[2 * i + 1]);
		}
	}
	free(b->reqs);
	free(b->res);
	free(b->bufs);
	free(b);
}

static void render(struct req *r)
{
	struct batch *b = r->ctx;
	kvs__buf out;

	kvs__buf_init(&out, 0);
	kvs__buf_addf(&out, "{\"%s\":[", KVS_F_RESULTS);
	for (size_t i = 0; i < b->n; i++) {
		const kvs__result *res = &b->res[i];
		int get = b->reqs[i].kind == KVS__KV_GET;
		int rc = res->rc;

		kvs__buf_addf(&out, "%s{\"%s\":%u", i ? "," : "", KVS_F_STATUS,
		              kvs__http_status(rc));
		if (rc != KVS_OK)
			kvs__buf_addf(&out, ",\"%s\":\"%s\"", KVS_F_ERROR,
			              kvs_error_code(rc));
		if (res->stamp.hlc != 0) {
			char st[KVS_STAMP_STRLEN];

			kvs_stamp_format(&res->stamp, st);
			kvs__buf_addf(&out, ",\"%s\":\"%s\"", KVS_F_VERSION, st);
		}
		if (get && rc == KVS_OK) {
			kvs__buf_add(&out, ",", 1);
			kvs__json_b64(&out, KVS_F_VALUE, res->value,
			              res->value_len);
		}
		if (!get && rc == KVS_OK)
			kvs__buf_addf(&out, ",\"%s\":%u", KVS_F_REPLICAS,
			              res->acks);
		kvs__buf_add(&out, "}", 1);
	}
	kvs__buf_add(&out, "]}", 2);
	reply_json(r, 200, &out);
}

/*
 * Bytes from "name" (a string without NUL) or "name_b64"; 1 found, 0
 * absent, -1 bad (malloc'ed into *out).
 */
static int bytes_field(const cJSON *o, const char *name, unsigned char **out,
                       size_t *len)
{
	char b64name[32];
	const cJSON *plain = cJSON_GetObjectItemCaseSensitive(o, name);
	const cJSON *enc;

	snprintf(b64name, sizeof(b64name), "%s%s", name, KVS_F_B64_SUFFIX);
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
	if (cJSON_IsString(enc))
		return kvs__b64_decode_alloc(enc->valuestring,
		                             strlen(enc->valuestring), out,
		                             len) == KVS_OK
		               ? 1
		               : -1;
	return plain == NULL && enc == NULL ? 0 : -1;
}

/* Fill operation i from its JSON; answers 400 and returns -1 when wrong. */
static int parse_op(struct req *r, const cJSON *o, size_t i, struct batch *b)
{
	const cJSON *kind = cJSON_GetObjectItemCaseSensitive(o, KVS_F_OP);
	const cJSON *im = cJSON_GetObjectItemCaseSensitive(o, KVS_F_IF_MATCH);
	const cJSON *ia = cJSON_GetObjectItemCaseSensitive(o, KVS_F_IF_ABSENT);
	const cJSON *ie = cJSON_GetObjectItemCaseSensitive(o, KVS_F_IF_EXISTS);
	kvs__kv_req *q = &b->reqs[i];
	int rc;

	if (!cJSON_IsObject(o) || !cJSON_IsString(kind)) {
		reply_error(r, KVS_EBADBATCH,
		            "operation %zu: expected an object with \"op\"", i);
		return -1;
	}
	if (strcmp(kind->valuestring, KVS_OP_GET) == 0) {
		q->kind = KVS__KV_GET;
	} else if (strcmp(kind->valuestring, KVS_OP_PUT) == 0) {
		q->kind = KVS__KV_PUT;
	} else if (strcmp(kind->valuestring, KVS_OP_DELETE) == 0) {
		q->kind = KVS__KV_DELETE;
	} else {
		reply_error(r, KVS_EBADBATCH,
		            "operation %zu: \"op\" must be get, put or delete", i);
		return -1;
	}
	rc = bytes_field(o, KVS_F_KEY, &b->bufs[2 * i], &q->key_len);
	if (rc != 1) {
		reply_error(r, KVS_EBADBATCH,
		            "operation %zu: needs a \"key\" or a \"key_b64\"", i);
		return -1;
	}
	q->key = b->bufs[2 * i];
	rc = bytes_field(o, KVS_F_VALUE, &b->bufs[2 * i + 1], &q->value_len);
	if (rc < 0 || (q->kind == KVS__KV_PUT) != (rc == 1)) {
		reply_error(r, KVS_EBADBATCH,
		            "operation %zu: a put needs a \"value\" or a "
		            "\"value_b64\", and only a put has one",
		            i);
		return -1;
	}
	q->value = b->bufs[2 * i + 1];
	if (q->kind != KVS__KV_GET && r->role < ROLE_WRITE) {
		reply_error(r, KVS_EFORBIDDEN,
		            "operation %zu: this token may only read", i);
		return -1;
	}
	if (im != NULL) {
		if (!cJSON_IsString(im) || q->kind == KVS__KV_GET ||
		    kvs_stamp_parse(&q->cond.expect[0], im->valuestring,
		                    strlen(im->valuestring)) != KVS_OK) {
			reply_error(r, KVS_EBADBATCH,
			            "operation %zu: \"if_match\" must be a version, "
			            "on a put or delete",
			            i);
			return -1;
		}
		q->cond.flags |= KVS_WRITE_IF_STAMP;
		q->cond.n_expect = 1;
	}
	if (cJSON_IsTrue(ia) || cJSON_IsTrue(ie)) {
		if (q->kind != KVS__KV_PUT && !(cJSON_IsTrue(ie) &&
		                                q->kind == KVS__KV_DELETE)) {
			reply_error(r, KVS_EBADBATCH,
			            "operation %zu: \"if_absent\" is for puts, "
			            "\"if_exists\" for puts and deletes",
			            i);
			return -1;
		}
		q->cond.flags |= (cJSON_IsTrue(ia) ? KVS_WRITE_IF_ABSENT : 0) |
		                 (cJSON_IsTrue(ie) ? KVS_WRITE_IF_EXISTS : 0);
	}
	return 0;
}

/*
 * Is there a "\u0000" escape in a JSON string of text? cJSON decodes it
 * into a NUL byte and then measures the string with strlen, which would
 * cut key "a\u0000b" to "a": such bytes must come as base64.
 */
static int has_nul_escape(const char *text, size_t len)
{
	int in_string = 0;

	for (size_t i = 0; i < len; i++) {
		if (text[i] == '"') {
			in_string = !in_string;
		} else if (in_string && text[i] == '\\' && i + 1 < len) {
			if (text[i + 1] == 'u' && i + 5 < len &&
			    memcmp(text + i + 2, "0000", 4) == 0)
				return 1;
			i++; /* skip the escaped character */
		}
	}
	return 0;
}

void handle_batch(struct req *r)
{
	const char *text = r->body ? r->body : "";
	cJSON *doc, *ops, *it;
	struct batch *b;
	unsigned rq, wq;
	size_t i = 0, n;

	if (!req_quorum(r, KVS_ARG_R, &rq) || !req_quorum(r, KVS_ARG_W, &wq))
		return;
	if (has_nul_escape(text, r->body_len)) {
		reply_error(r, KVS_EBADBATCH,
		            "a string holds \\u0000: send keys and values with NUL "
		            "bytes as \"key_b64\" or \"value_b64\"");
		return;
	}
	doc = cJSON_ParseWithLength(text, r->body_len);
	ops = cJSON_GetObjectItemCaseSensitive(doc, KVS_F_OPS);
	if (!cJSON_IsArray(ops)) {
		cJSON_Delete(doc);
		reply_error(r, KVS_EBADBATCH,
		            "the body must be JSON: {\"ops\": [...]}");
		return;
	}
	n = (size_t)cJSON_GetArraySize(ops);
	if (n > r->srv->cc->max_batch_ops) {
		cJSON_Delete(doc);
		reply_error(r, KVS_ETOOMANY, "%zu operations; the limit is %u", n,
		            r->srv->cc->max_batch_ops);
		return;
	}
	b = calloc(1, sizeof(*b));
	if (b != NULL) {
		r->ctx = b;
		r->ctx_free = batch_free;
		b->reqs = calloc(n ? n : 1, sizeof(*b->reqs));
		b->res = calloc(n ? n : 1, sizeof(*b->res));
		b->bufs = calloc(2 * n + 1, sizeof(*b->bufs));
		b->n = n;
	}
	if (b == NULL || b->reqs == NULL || b->res == NULL || b->bufs == NULL) {
		cJSON_Delete(doc);
		reply_fail(r, KVS_ENOMEM, "batch");
		return;
	}
	cJSON_ArrayForEach(it, ops) {
		if (parse_op(r, it, i, b) != 0) {
			cJSON_Delete(doc);
			return;
		}
		b->reqs[i].r = rq;
		b->reqs[i].w = wq;
		i++;
	}
	cJSON_Delete(doc);
	req_start(r);
	kvs__node_batch(r->srv->node, b->reqs, n, b->res, req_node_done, r);
	req_wait(r, render);
}
