/*
 * ring.c - placement: 65,536 slots, each owned by one member, assigned in
 * join order with exact quotas.
 *
 * The hash space is cut in KVS_RING_SLOTS slots by the top 16 bits of a
 * key's XXH3-64 (seed 0) hash (the anti-entropy segments are the same
 * slots). Members are given in join order. Each member's quota of slots
 * follows its weight (largest remainder, in integer arithmetic on the
 * weight in thousandths). The first member with a weight owns every slot;
 * each later one takes its quota from those that then hold more than
 * theirs: donor d gives the slots it holds with the highest score, ties
 * to the lower slot. Slot s's score for the new member is output s + 1
 * of SplitMix64 seeded with the XXH3-64 of the member's name (a hash per
 * slot would cost as much again as the rest of the build). A member with
 * weight 0 owns no slot.
 *
 * A key's owners are the owner of its slot, then the owners of the next
 * slots (wrapping past the last), each member once, until N are found or
 * every member that owns slots has been seen.
 *
 * Why this way: every member holds its quota to within a slot or two (the
 * rounding of the largest remainder method can leave a donor one slot
 * over), so load follows weight to a fraction of a percent at any size
 * (hashed points on a circle leave the busiest of 64 shards 26% over the
 * mean); a member that joins takes exactly its quota and nothing else
 * moves; scores spread the slots it takes over the whole space, so its
 * replicas' neighbours are spread too. The price: placement depends on
 * the join order, and removing a member or changing a weight replays the
 * joins (docs/ring.md has the rule, vectors and the measured movement).
 *
 * The ring does no I/O and holds no locks: it is immutable once built.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "kvshard/ring.h"

/* SplitMix64 (Steele, Lea, Flood 2014): its state advances by GAMMA. */
#define GAMMA 0x9e3779b97f4a7c15ull

struct kvs_ring {
	size_t n_members;
	char **names;
	uint32_t *slot;     /* owner of each slot */
	size_t with_slots; /* members owning at least one slot */
};

uint64_t kvs_ring_hash(const void *key, size_t key_len)
{
	return XXH3_64bits(key, key_len);
}

/* A weight in thousandths, the unit quotas are computed in. */
static uint64_t weight_units(double w)
{
	return w <= 0.0 ? 0 : (uint64_t)llround(w * 1000.0);
}

/* Quotas of members[0..n) (units u) by largest remainder: q[i] slots. */
static void quotas(const uint64_t *u, size_t n, uint32_t *q, uint64_t *rem)
{
	uint64_t total = 0, given = 0;

	for (size_t i = 0; i < n; i++)
		total += u[i];
	for (size_t i = 0; i < n; i++) {
		q[i] = (uint32_t)((uint64_t)KVS_RING_SLOTS * u[i] / total);
		rem[i] = (uint64_t)KVS_RING_SLOTS * u[i] % total;
		given += q[i];
	}
	/* The slots left go one each to the largest remainders (ties: the
	 * earlier member). */
	while (given < KVS_RING_SLOTS) {
		size_t best = n;

		for (size_t i = 0; i < n; i++)
			if (u[i] > 0 && (best == n || rem[i] > rem[best]))
				best = i;
		q[best]++;
		rem[best] = 0;
		given++;
	}
}

struct scored {
	uint64_t score;
	uint32_t slot;
};

/* Whether a comes before b: higher score, then lower slot. */
static int before(const struct scored *a, const struct scored *b)
{
	return a->score != b->score ? a->score > b->score : a->slot < b->slot;
}

/* Put the k first (by before()) of v[0..n) in v[0..k), in any order. */
static void select_first(struct scored *v, size_t n, size_t k)
{
	size_t lo = 0, hi = n;

	while (hi - lo > 1 && k > lo && k < hi) {
		/* The lower middle: the partition always shrinks. */
		struct scored pivot = v[lo + (hi - lo - 1) / 2], t;
		size_t i = lo, j = hi - 1;

		/* Hoare partition around pivot. */
		for (;;) {
			while (before(&v[i], &pivot))
				i++;
			while (before(&pivot, &v[j]))
				j--;
			if (i >= j)
				break;
			t = v[i];
			v[i] = v[j];
			v[j] = t;
			i++;
			j--;
		}
		if (k <= j)
			hi = j + 1;
		else
			lo = j + 1;
	}
}

/* Give member `to` the k first (by before()) of the slots in v[0..n).
 * Scores are uniform, so one pass on their top bits finds the bucket the
 * k-th falls in: slots above it are given at once (without a branch: the
 * comparison is not predictable), those in it are left for
 * select_first(). v is reordered. */
#define TOP_BITS 12
static void give_first(kvs_ring *r, struct scored *v, size_t n, size_t k,
                       uint32_t to)
{
	if (k < n) {
		uint32_t cnt[1u << TOP_BITS] = {0};
		unsigned b = (1u << TOP_BITS) - 1;
		size_t above = 0, c = 0;

		for (size_t x = 0; x < n; x++)
			cnt[v[x].score >> (64 - TOP_BITS)]++;
		while (above + cnt[b] < k) /* k < n: ends at some b >= 0 */
			above += cnt[b--];
		for (size_t x = 0; x < n; x++) {
			struct scored e = v[x];
			unsigned d = (unsigned)(e.score >> (64 - TOP_BITS));
			uint32_t *o = &r->slot[e.slot];

			*o = d > b ? to : *o;
			v[c] = e; /* c <= x: compacts bucket b in place */
			c += d == b;
		}
		k -= above;
		n = c;
		select_first(v, n, k);
	}
	for (size_t x = 0; x < k; x++)
		r->slot[v[x].slot] = to;
}

void kvs_ring_free(kvs_ring *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n_members; i++)
		free(r->names[i]);
	free(r->names);
	free(r->slot);
	free(r);
}

static int check_members(const kvs_ring_member *members, size_t n)
{
	int any = 0;

	if (members == NULL || n == 0 || n > KVS_RING_MAX_MEMBERS)
		return KVS_EINVAL;
	for (size_t i = 0; i < n; i++) {
		double w = members[i].weight;

		if (members[i].name == NULL || members[i].name[0] == '\0' ||
		    !(w >= 0.0 && w <= KVS_RING_MAX_WEIGHT))
			return KVS_EINVAL;
		for (size_t j = 0; j < i; j++)
			if (strcmp(members[i].name, members[j].name) == 0)
				return KVS_EINVAL;
		any |= weight_units(w) > 0;
	}
	return any ? KVS_OK : KVS_EINVAL;
}

/* Output s + 1 of SplitMix64 seeded with seed. */
static uint64_t slot_score(uint64_t seed, uint32_t s)
{
	uint64_t z = seed + ((uint64_t)s + 1) * GAMMA;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Member j joins: the members before it give up what they hold over
 * their new quotas. held[i]: slots member i holds. */
static void join(kvs_ring *r, const kvs_ring_member *members,
                 const uint64_t *u, size_t j, uint32_t *held, uint32_t *q,
                 uint64_t *rem, struct scored *buf, uint32_t *start)
{
	uint64_t seed = XXH3_64bits(members[j].name, strlen(members[j].name));
	uint32_t *fill;

	quotas(u, j + 1, q, rem);
	/* Group the slots by holder, in slot order, scored for j. */
	start[0] = 0;
	for (size_t i = 0; i < j; i++)
		start[i + 1] = start[i] + held[i];
	fill = q + j + 1; /* scratch: next free place of each holder */
	for (size_t i = 0; i < j; i++)
		fill[i] = start[i];
	for (uint32_t s = 0; s < KVS_RING_SLOTS; s++) {
		uint32_t h = r->slot[s];

		buf[fill[h]].score = slot_score(seed, s);
		buf[fill[h]].slot = s;
		fill[h]++;
	}
	for (size_t i = 0; i < j; i++) {
		size_t give;

		if (held[i] <= q[i])
			continue;
		give = held[i] - q[i];
		give_first(r, buf + start[i], held[i], give, (uint32_t)j);
		held[i] -= (uint32_t)give;
		held[j] += (uint32_t)give;
	}
}

int kvs_ring_new(kvs_ring **out, const kvs_ring_member *members, size_t n,
                 unsigned vnodes)
{
	kvs_ring *r;
	uint64_t *u = NULL, *rem = NULL;
	uint32_t *held = NULL, *q = NULL, *start = NULL;
	struct scored *buf = NULL;
	size_t first = n;
	int rc;

	if (out == NULL)
		return KVS_EINVAL;
	*out = NULL;
	if (vnodes > KVS_RING_MAX_VNODES) /* unused; checked as it was */
		return KVS_EINVAL;
	rc = check_members(members, n);
	if (rc != KVS_OK)
		return rc;
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		return KVS_ENOMEM;
	rc = KVS_ENOMEM;
	r->names = calloc(n, sizeof(*r->names));
	r->slot = malloc(KVS_RING_SLOTS * sizeof(*r->slot));
	u = calloc(n, sizeof(*u));
	rem = calloc(n, sizeof(*rem));
	held = calloc(n, sizeof(*held));
	q = calloc(2 * n + 1, sizeof(*q));
	start = calloc(n + 1, sizeof(*start));
	buf = malloc(KVS_RING_SLOTS * sizeof(*buf));
	if (r->names == NULL || r->slot == NULL || u == NULL || rem == NULL ||
	    held == NULL || q == NULL || start == NULL || buf == NULL)
		goto fail;
	r->n_members = n;
	for (size_t i = 0; i < n; i++) {
		r->names[i] = strdup(members[i].name);
		if (r->names[i] == NULL)
			goto fail;
		u[i] = weight_units(members[i].weight);
		if (u[i] > 0) {
			r->with_slots++;
			if (first == n)
				first = i;
		}
	}
	for (uint32_t s = 0; s < KVS_RING_SLOTS; s++)
		r->slot[s] = (uint32_t)first;
	held[first] = KVS_RING_SLOTS;
	for (size_t j = first + 1; j < n; j++) {
		if (u[j] > 0)
			join(r, members, u, j, held, q, rem, buf, start);
	}
	rc = KVS_OK;
	*out = r;
	r = NULL;
fail:
	free(u);
	free(rem);
	free(held);
	free(q);
	free(start);
	free(buf);
	kvs_ring_free(r);
	return rc;
}

size_t kvs_ring_owners_at(const kvs_ring *r, uint64_t hash, size_t *owners,
                          size_t max)
{
	size_t want, found = 0;
	uint32_t s;

	if (r == NULL || owners == NULL || max == 0)
		return 0;
	want = max < r->with_slots ? max : r->with_slots;
	if (want > KVS_RING_MAX_OWNERS)
		want = KVS_RING_MAX_OWNERS;
	s = KVS_RING_SLOT_OF(hash);
	/* Every member with slots is met within one turn. */
	for (uint32_t steps = 0; found < want && steps < KVS_RING_SLOTS;
	     steps++) {
		uint32_t m = r->slot[s];
		size_t j;

		for (j = 0; j < found; j++)
			if (owners[j] == m)
				break;
		if (j == found)
			owners[found++] = m;
		s = (s + 1) % KVS_RING_SLOTS;
	}
	return found;
}

size_t kvs_ring_owners(const kvs_ring *r, const void *key, size_t key_len,
                       size_t *owners, size_t max)
{
	if (r == NULL || (key == NULL && key_len > 0))
		return 0;
	return kvs_ring_owners_at(r, kvs_ring_hash(key, key_len), owners, max);
}

size_t kvs_ring_members(const kvs_ring *r)
{
	return r != NULL ? r->n_members : 0;
}

size_t kvs_ring_points(const kvs_ring *r)
{
	return r != NULL ? KVS_RING_SLOTS : 0;
}

size_t kvs_ring_slots_of(const kvs_ring *r, size_t member)
{
	size_t n = 0;

	if (r == NULL || member >= r->n_members)
		return 0;
	for (uint32_t s = 0; s < KVS_RING_SLOTS; s++)
		n += r->slot[s] == member;
	return n;
}

const char *kvs_ring_member_name(const kvs_ring *r, size_t i)
{
	if (r == NULL || i >= r->n_members)
		return NULL;
	return r->names[i];
}
