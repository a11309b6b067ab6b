/*
 * fuzz_batch.c - libFuzzer target: POST /v1/batch bodies, through the
 * server's parser (server/batch_parse.c). Any bytes are parsed without
 * reading past them; a parse that succeeds gives at most the limit's
 * operations, each of a known kind with a key and the fields its kind
 * allows; and the parser agrees with cJSON about how many operations a
 * document holds.
 */
#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "batch_parse.h"
#include "protocol.h"

/* Small, so that inputs of a few KiB also go past it. */
#define FUZZ_MAX_OPS 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile unsigned sink;

static void check_ops(const struct batch_ops *ops)
{
	const unsigned conds =
	    KVS_WRITE_IF_ABSENT | KVS_WRITE_IF_STAMP | KVS_WRITE_IF_EXISTS;

	if (ops->n > FUZZ_MAX_OPS || (ops->n > 0 && ops->reqs == NULL))
		abort();
	for (size_t i = 0; i < ops->n; i++) {
		const kvs__kv_req *q = &ops->reqs[i];

		if (q->kind != KVS__KV_GET && q->kind != KVS__KV_PUT &&
		    q->kind != KVS__KV_DELETE)
			abort();
		if (q->key == NULL || q->key != ops->bufs[2 * i])
			abort();
		/* Only a put has a value, and a put always has one. */
		if ((q->kind == KVS__KV_PUT) != (q->value != NULL))
			abort();
		if (q->value != NULL && q->value != ops->bufs[2 * i + 1])
			abort();
		if ((q->cond.flags & ~conds) != 0 || q->cond.n_expect > 1 ||
		    (q->kind == KVS__KV_GET && q->cond.flags != 0) ||
		    ((q->cond.flags & KVS_WRITE_IF_STAMP) != 0) !=
		        (q->cond.n_expect == 1) ||
		    (q->kind == KVS__KV_DELETE &&
		     (q->cond.flags & KVS_WRITE_IF_ABSENT)))
			abort();
		if (q->r != 0 || q->w != 0 || q->from_peer)
			abort();
		/* Read every byte: ASan reports a key or value shorter than
		 * its length. */
		for (size_t k = 0; k < q->key_len; k++)
			sink += ((const unsigned char *)q->key)[k];
		for (size_t k = 0; k < q->value_len; k++)
			sink += ((const unsigned char *)q->value)[k];
	}
}

/* The operations cJSON sees in the document, or -1 when it sees none. */
static long cjson_ops(const uint8_t *data, size_t size)
{
	cJSON *doc = cJSON_ParseWithLength((const char *)data, size);
	const cJSON *ops = cJSON_GetObjectItemCaseSensitive(doc, KVS_F_OPS);
	long n = cJSON_IsArray(ops) ? (long)cJSON_GetArraySize(ops) : -1;

	cJSON_Delete(doc);
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[BATCH_WHY_MAX];
	struct batch_ops ops;
	int rc;

	rc = batch_parse((const char *)data, size, FUZZ_MAX_OPS, &ops, why);
	if (rc == KVS_OK) {
		check_ops(&ops);
		if (cjson_ops(data, size) != (long)ops.n)
			abort();
	} else if (rc == KVS_EBADBATCH || rc == KVS_ETOOMANY) {
		/* A refusal always says why, in a terminated sentence. */
		if (why[0] == '\0' || memchr(why, '\0', sizeof(why)) == NULL)
			abort();
		/* Too many: cJSON, if it reads the document at all, finds
		 * more operations than the limit too. */
		if (rc == KVS_ETOOMANY) {
			long n = cjson_ops(data, size);

			if (n >= 0 && n <= FUZZ_MAX_OPS)
				abort();
		}
	} else if (rc != KVS_ENOMEM) {
		abort();
	}
	if (rc != KVS_OK && (ops.n != 0 && ops.reqs == NULL))
		abort();
	batch_ops_clear(&ops);
	return 0;
}
