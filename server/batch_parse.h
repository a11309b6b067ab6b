/*
 * batch_parse.h - a POST /v1/batch document into operations (batch.c runs
 * them). Pure: no HTTP, no node, so that tests/fuzz/fuzz_batch.c can
 * call it on any bytes.
 */
#ifndef KVS_BATCH_PARSE_H
#define KVS_BATCH_PARSE_H

#include <stddef.h>

#include "node.h"

/* How deep a batch nests: the document, its "ops" array, an operation. */
#define BATCH_MAX_DEPTH 3
/* JSON values one operation may hold, itself included: "op", the key,
 * the value and the three conditions, plus room for a few fields this
 * version does not know. */
#define BATCH_VALUES_PER_OP 16
/* JSON values outside the operations: the document, "ops", and a few
 * members this version does not know. */
#define BATCH_VALUES_OUTSIDE 16
/* Room for the sentence that says why a document was refused. */
#define BATCH_WHY_MAX 192

/* The operations of a batch. */
struct batch_ops {
	size_t n;
	/* n operations; their r and w are 0 (the caller sets them). Keys
	 * and values point into bufs. */
	kvs__kv_req *reqs;
	/* The decoded key and value of each operation: 2 per operation,
	 * NULL where there is none (malloc'ed; batch_ops_clear frees). */
	unsigned char **bufs;
};

/*
 * Parse a batch document: {"ops": [{"op": "get", "key": "a"}, ...]}
 * (docs/api.md). The text (len bytes, need not be NUL-terminated) is
 * first read once without allocating anything, and refused at the first
 * byte that shows it is not JSON, not shaped like a batch, or holds more
 * than max_ops operations; only then does cJSON build a tree, which is
 * thus bounded by max_ops. Each operation's fields are checked as the
 * API says; the caller checks what depends on who asks (writes need a
 * token that may write).
 *
 * @param out receives the operations (batch_ops_clear() them, also after
 *            a failure); zeroed first.
 * @param why receives a sentence for the client on KVS_EBADBATCH and
 *            KVS_ETOOMANY.
 * @return KVS_OK; KVS_EBADBATCH (not a batch, or an operation that is
 *         wrong: the sentence names its index); KVS_ETOOMANY (more than
 *         max_ops operations); KVS_ENOMEM.
 */
int batch_parse(const char *text, size_t len, size_t max_ops,
                struct batch_ops *out, char why[BATCH_WHY_MAX]);

/* Free what batch_parse gave and zero ops (accepts a zeroed one). */
void batch_ops_clear(struct batch_ops *ops);

#endif
