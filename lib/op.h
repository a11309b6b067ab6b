/*
 * op.h - the completion primitive of every fan-out (internal).
 *
 * An operation that waits on several things at once (replicas, shards,
 * the store's writer) lives as long as anyone still holds it. Whoever
 * starts it holds it once; each request sent on its behalf takes another
 * hold, released by that request's completion; whatever the operation
 * hands out that points into its memory (a value in a result, a record
 * being repaired) holds it too. The release that drops the last hold
 * calls done(), which frees it. So no completion, on whatever thread and
 * in whatever order, can ever touch freed memory, and the starter may
 * see completions before its own call returns without special cases.
 *
 * The hold count only governs lifetime. What the operation has learned
 * (answers counted, the newest version seen) is its own business, under
 * its own lock.
 */
#ifndef KVS_OP_H
#define KVS_OP_H

#include <stdatomic.h>

typedef struct kvs__op kvs__op;

struct kvs__op {
	_Atomic unsigned holds;
	void (*done)(kvs__op *op); /* after the last release */
};

/* Start with one hold, the starter's. */
static inline void kvs__op_init(kvs__op *op, void (*done)(kvs__op *op))
{
	atomic_init(&op->holds, 1);
	op->done = done;
}

static inline void kvs__op_hold(kvs__op *op)
{
	atomic_fetch_add_explicit(&op->holds, 1, memory_order_relaxed);
}

/* Drop one hold; the last one calls done(op) on this thread. */
static inline void kvs__op_release(kvs__op *op)
{
	if (atomic_fetch_sub_explicit(&op->holds, 1, memory_order_acq_rel) == 1)
		op->done(op);
}

/* A release with the signature of a free function, for callbacks that
 * take (void *): release((kvs__op *)arg). */
static inline void kvs__op_release_cb(void *op)
{
	kvs__op_release(op);
}

#endif /* KVS_OP_H */
