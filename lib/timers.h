/*
 * timers.h - one-shot timers for an event loop's thread (internal): a
 * min-heap of deadlines under its own lock, which any thread may add to
 * and the loop's thread runs.
 */
#ifndef KVS_TIMERS_H
#define KVS_TIMERS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

typedef void (*kvs__timer_cb)(void *ud);

struct kvs__timer;

typedef struct kvs__timers {
	pthread_mutex_t mu;
	struct kvs__timer *heap; /* on (at, seq): equal deadlines in order */
	size_t n, cap;
	uint64_t seq;
	int closed;
} kvs__timers;

int kvs__timers_init(kvs__timers *t);
/* Run what is left (as kvs__timers_close) and free. */
void kvs__timers_free(kvs__timers *t);

/*
 * Call cb(ud) ms from now, on the thread that runs the timers. *earliest
 * is set when it is now the first due, so that the loop must wake sooner.
 * KVS_OK, KVS_ENOMEM, or KVS_ECLOSED (cb will not be called).
 */
int kvs__timers_add(kvs__timers *t, unsigned ms, kvs__timer_cb cb, void *ud,
                    int *earliest);

/* Run the timers that are due; how long until the next (at most max_ms). */
unsigned kvs__timers_run(kvs__timers *t, unsigned max_ms);

/* Refuse new timers and run every one left at once (whoever set one
 * learns that it ended early, and frees what it holds). */
void kvs__timers_close(kvs__timers *t);

#endif /* KVS_TIMERS_H */
