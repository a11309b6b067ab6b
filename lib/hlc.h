/*
 * hlc.h - hybrid logical clock (internal).
 *
 * A reading is 64 bits: physical milliseconds since the Unix epoch in the
 * upper 48 bits, a logical counter in the lower 16. Readings never go
 * backwards, even when the wall clock does: if the wall clock is behind the
 * last reading, the clock keeps the last reading's physical part and bumps
 * the counter (a counter overflow carries into the physical part, so the
 * clock then runs slightly ahead of the wall). Merging a remote reading
 * (kvs__hlc_update) moves the clock past it, so that a write caused by
 * another write is always ordered after it, whatever the two machines'
 * clocks say.
 *
 * The clock is lock-free (one compare-and-swap per reading) and safe to use
 * from any number of threads.
 */
#ifndef KVS_HLC_H
#define KVS_HLC_H

#include <stdatomic.h>
#include <stdint.h>

#define KVS_HLC_LOGICAL_BITS 16
#define KVS_HLC_PHYSICAL(t) ((t) >> KVS_HLC_LOGICAL_BITS)
#define KVS_HLC_LOGICAL(t) ((t) & ((UINT64_C(1) << KVS_HLC_LOGICAL_BITS) - 1))
#define KVS_HLC_MAKE(ms, l) (((uint64_t)(ms) << KVS_HLC_LOGICAL_BITS) | (l))

/* Source of wall-clock milliseconds; replaceable for tests. */
typedef uint64_t (*kvs__wall_fn)(void *ud);

typedef struct kvs__hlc {
	_Atomic uint64_t last;
	uint64_t max_ahead_ms; /* 0: accept remote readings however far ahead */
	kvs__wall_fn wall;
	void *wall_ud;
} kvs__hlc;

/* Milliseconds since the Unix epoch from CLOCK_REALTIME. */
uint64_t kvs__wall_ms(void *ud);

/**
 * Start a clock whose first reading will be greater than floor (the newest
 * reading persisted before a restart, or 0). wall may be NULL for the real
 * clock.
 */
void kvs__hlc_init(kvs__hlc *c, uint64_t floor, kvs__wall_fn wall,
                   void *wall_ud);

/** A new reading for a local event, greater than every earlier one. */
uint64_t kvs__hlc_now(kvs__hlc *c);

/**
 * Merge a remote reading: the clock moves past it, and the returned reading
 * is greater than both remote and every earlier local reading.
 *
 * @return KVS_OK with *out set, or KVS_ECLOCK (clock unchanged) when
 *         max_ahead_ms is set and remote is further ahead of the wall clock
 *         than that.
 */
int kvs__hlc_update(kvs__hlc *c, uint64_t remote, uint64_t *out);

/** kvs__hlc_update() without the bound: for readings already stored. */
void kvs__hlc_merge(kvs__hlc *c, uint64_t remote, uint64_t *out);

/** KVS_ECLOCK if remote is further ahead than max_ahead_ms, else KVS_OK. */
int kvs__hlc_check(kvs__hlc *c, uint64_t remote);

/** The last reading handed out (or the floor). */
uint64_t kvs__hlc_peek(kvs__hlc *c);

#endif /* KVS_HLC_H */
