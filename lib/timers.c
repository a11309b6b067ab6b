/*
 * timers.c - one-shot timers (timers.h).
 */
#include <stdlib.h>
#include <string.h>

#include "kvshard/common.h"
#include "timers.h"
#include "util.h"

struct kvs__timer {
	uint64_t at;  /* kvs__mono_ms() deadline */
	uint64_t seq; /* equal deadlines fire in the order they were set */
	kvs__timer_cb cb;
	void *ud;
};

static int before(const struct kvs__timer *a, const struct kvs__timer *b)
{
	return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static void swap(struct kvs__timer *a, struct kvs__timer *b)
{
	struct kvs__timer x = *a;

	*a = *b;
	*b = x;
}

/* Take the earliest (t->mu held, t->n > 0). */
static struct kvs__timer pop(kvs__timers *t)
{
	struct kvs__timer top = t->heap[0];
	size_t i = 0;

	t->heap[0] = t->heap[--t->n];
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < t->n && before(&t->heap[l], &t->heap[m]))
			m = l;
		if (r < t->n && before(&t->heap[r], &t->heap[m]))
			m = r;
		if (m == i)
			break;
		swap(&t->heap[i], &t->heap[m]);
		i = m;
	}
	return top;
}

int kvs__timers_init(kvs__timers *t)
{
	memset(t, 0, sizeof(*t));
	return pthread_mutex_init(&t->mu, NULL) == 0 ? KVS_OK : KVS_ENOMEM;
}

int kvs__timers_add(kvs__timers *t, unsigned ms, kvs__timer_cb cb, void *ud,
                    int *earliest)
{
	size_t i;

	*earliest = 0;
	pthread_mutex_lock(&t->mu);
	if (t->closed) {
		pthread_mutex_unlock(&t->mu);
		return KVS_ECLOSED;
	}
	if (t->n == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 64;
		struct kvs__timer *g = realloc(t->heap, cap * sizeof(*g));

		if (g == NULL) {
			pthread_mutex_unlock(&t->mu);
			return KVS_ENOMEM;
		}
		t->heap = g;
		t->cap = cap;
	}
	i = t->n++;
	t->heap[i].at = kvs__mono_ms() + ms;
	t->heap[i].seq = t->seq++;
	t->heap[i].cb = cb;
	t->heap[i].ud = ud;
	while (i > 0 && before(&t->heap[i], &t->heap[(i - 1) / 2])) {
		swap(&t->heap[i], &t->heap[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	*earliest = i == 0;
	pthread_mutex_unlock(&t->mu);
	return KVS_OK;
}

/* Run what is due, or everything (all); how long until the next. */
static unsigned run(kvs__timers *t, unsigned max_ms, int all)
{
	unsigned wait = max_ms;

	for (;;) {
		struct kvs__timer due;
		uint64_t now = kvs__mono_ms();

		pthread_mutex_lock(&t->mu);
		if (t->n == 0) {
			pthread_mutex_unlock(&t->mu);
			break;
		}
		if (!all && t->heap[0].at > now) {
			uint64_t left = t->heap[0].at - now;

			wait = left < wait ? (unsigned)left : wait;
			pthread_mutex_unlock(&t->mu);
			break;
		}
		due = pop(t);
		pthread_mutex_unlock(&t->mu);
		due.cb(due.ud);
	}
	return wait;
}

unsigned kvs__timers_run(kvs__timers *t, unsigned max_ms)
{
	return run(t, max_ms, 0);
}

void kvs__timers_close(kvs__timers *t)
{
	pthread_mutex_lock(&t->mu);
	t->closed = 1;
	pthread_mutex_unlock(&t->mu);
	run(t, 0, 1);
}

void kvs__timers_free(kvs__timers *t)
{
	kvs__timers_close(t);
	free(t->heap);
	pthread_mutex_destroy(&t->mu);
}
