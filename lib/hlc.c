/*
 * hlc.c - hybrid logical clock and version stamps.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "hlc.h"
#include "util.h"
#include "kvshard/common.h"

uint64_t kvs__wall_ms(void *ud)
{
	struct timespec ts;

	(void)ud;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void kvs__hlc_init(kvs__hlc *c, uint64_t floor, kvs__wall_fn wall,
                   void *wall_ud)
{
	atomic_init(&c->last, floor);
	c->max_ahead_ms = 0;
	c->wall = wall ? wall : kvs__wall_ms;
	c->wall_ud = wall_ud;
}

static uint64_t wall_reading(kvs__hlc *c)
{
	return KVS_HLC_MAKE(c->wall(c->wall_ud), 0);
}

uint64_t kvs__hlc_now(kvs__hlc *c)
{
	uint64_t pt = wall_reading(c);
	uint64_t old = atomic_load(&c->last);
	uint64_t next;

	do {
		next = pt > old ? pt : old + 1;
	} while (!atomic_compare_exchange_weak(&c->last, &old, next));
	return next;
}

void kvs__hlc_merge(kvs__hlc *c, uint64_t remote, uint64_t *out)
{
	uint64_t pt = wall_reading(c);
	uint64_t old = atomic_load(&c->last);
	uint64_t next, m;

	do {
		m = old > remote ? old : remote;
		/* The last reading there is stays the last (no wrap to 0). */
		next = pt > m ? pt : m == UINT64_MAX ? m : m + 1;
	} while (!atomic_compare_exchange_weak(&c->last, &old, next));
	*out = next;
}

int kvs__hlc_update(kvs__hlc *c, uint64_t remote, uint64_t *out)
{
	if (kvs__hlc_check(c, remote) != KVS_OK)
		return KVS_ECLOCK;
	kvs__hlc_merge(c, remote, out);
	return KVS_OK;
}

int kvs__hlc_check(kvs__hlc *c, uint64_t remote)
{
	if (c->max_ahead_ms != 0 &&
	    KVS_HLC_PHYSICAL(remote) > c->wall(c->wall_ud) + c->max_ahead_ms)
		return KVS_ECLOCK;
	return KVS_OK;
}

uint64_t kvs__hlc_peek(kvs__hlc *c)
{
	return atomic_load(&c->last);
}

int kvs_stamp_cmp(const kvs_stamp *a, const kvs_stamp *b)
{
	if (a->hlc != b->hlc)
		return a->hlc < b->hlc ? -1 : 1;
	if (a->shard != b->shard)
		return a->shard < b->shard ? -1 : 1;
	return 0;
}

size_t kvs_stamp_format(const kvs_stamp *s, char *buf)
{
	int n = snprintf(buf, KVS_STAMP_STRLEN, "%016llx-%lu",
	                 (unsigned long long)s->hlc, (unsigned long)s->shard);

	return n < 0 ? 0 : (size_t)n;
}

int kvs_stamp_parse(kvs_stamp *s, const char *text, size_t len)
{
	uint64_t hlc = 0, shard = 0;
	size_t i = 0, digits;

	if (text == NULL)
		return KVS_EINVAL;
	if (len >= 2 && text[0] == 'W' && text[1] == '/') {
		text += 2;
		len -= 2;
	}
	if (len >= 2 && text[0] == '"' && text[len - 1] == '"') {
		text++;
		len -= 2;
	}
	for (digits = 0; i < len && kvs__hex_value(text[i]) >= 0; i++, digits++) {
		if (digits == 16)
			return KVS_EINVAL;
		hlc = (hlc << 4) | (uint64_t)kvs__hex_value(text[i]);
	}
	if (digits == 0 || i >= len || text[i] != '-')
		return KVS_EINVAL;
	for (i++, digits = 0; i < len && text[i] >= '0' && text[i] <= '9';
	     i++, digits++) {
		shard = shard * 10 + (uint64_t)(text[i] - '0');
		if (shard > UINT32_MAX)
			return KVS_EINVAL;
	}
	if (digits == 0 || i != len)
		return KVS_EINVAL;
	s->hlc = hlc;
	s->shard = (uint32_t)shard;
	return KVS_OK;
}
