/*
 * health.c - a peer's health and back-off, as one side sees it.
 */
#include "health.h"
#include "kvshard/common.h"

void kvs__health_init(kvs__health *h)
{
	atomic_init(&h->up, 1);
	atomic_init(&h->failures, 0);
	atomic_init(&h->retry_at_ms, 0);
}

int kvs__health_is_failure(int rc)
{
	/* No answer, or one that makes the peer useless to us: stopping,
	 * refusing our credentials, or not speaking our protocol. */
	return rc == KVS_ECONNECT || rc == KVS_ETIMEDOUT ||
	       rc == KVS_ESHUTDOWN || rc == KVS_EAUTH || rc == KVS_EFORBIDDEN ||
	       rc == KVS_EPROTO;
}

static uint64_t backoff_of(unsigned failures)
{
	uint64_t b = KVS__BACKOFF_MIN_MS;

	while (failures > 1 && b < KVS__BACKOFF_MAX_MS) {
		b *= 2;
		failures--;
	}
	return b < KVS__BACKOFF_MAX_MS ? b : KVS__BACKOFF_MAX_MS;
}

int kvs__health_note(kvs__health *h, int rc, uint64_t now_ms)
{
	if (kvs__health_is_failure(rc)) {
		unsigned f = atomic_fetch_add(&h->failures, 1) + 1;

		atomic_store(&h->retry_at_ms, now_ms + backoff_of(f));
		return atomic_exchange(&h->up, 0) ? -1 : 0;
	}
	if (rc == KVS_ECLOSED || rc == KVS_ENOMEM || rc == KVS_ESYS)
		return 0; /* our side is closing or failing: says nothing of
		           * the peer */
	/* Anything else is an answer. Plain loads first: the common case
	 * (already up) then writes no shared cache line. */
	if (atomic_load_explicit(&h->failures, memory_order_relaxed) != 0)
		atomic_store(&h->failures, 0);
	if (atomic_load_explicit(&h->up, memory_order_relaxed))
		return 0;
	return atomic_exchange(&h->up, 1) ? 0 : 1;
}

int kvs__health_up(const kvs__health *h)
{
	return atomic_load_explicit(&h->up, memory_order_relaxed);
}

int kvs__health_usable(const kvs__health *h, uint64_t now_ms)
{
	return kvs__health_up(h) || now_ms >= atomic_load(&h->retry_at_ms);
}

uint64_t kvs__health_backoff_ms(const kvs__health *h)
{
	unsigned f = atomic_load(&h->failures);

	return f == 0 ? 0 : backoff_of(f);
}
