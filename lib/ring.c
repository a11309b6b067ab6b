/*
 * ring.c - consistent hashing with virtual nodes and weights.
 *
 * The circle is the 64-bit unsigned integers. Member m with weight w places
 * P(m) = round(vnodes * w) points (at least 1 when w > 0; none when w = 0).
 * Point i of member "name" sits at XXH3-64 (seed 0) of the ASCII bytes
 * "name:i", i written in decimal without leading zeros. Points are sorted by
 * (position, name bytes, i), a total order that depends only on the
 * members' names and weights, never on the order they were listed in, so
 * every process given the same topology computes the same owners.
 *
 * A key sits at XXH3-64 (seed 0) of its bytes. Its owners are found by
 * walking the sorted points from the first point at or after the key's
 * position (wrapping past the end to the first point) and collecting
 * members not yet collected, until N are found or every member with points
 * has been seen.
 *
 * Why this way: each member owns ~P(m)/total of the circle, so load follows
 * weight, and the variance shrinks as vnodes grows (docs/ring.md has the
 * figures). Adding a member only takes positions from others (keys move
 * only to the new member); point i of a member never moves when its weight
 * changes, so raising a weight only adds points. Lookups are a binary search
 * over a flat array of positions (cache friendly) plus a short walk.
 *
 * The ring does no I/O and holds no locks: it is immutable once built.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "kvshard/ring.h"

/* Upper bound on all points of a ring: 16M points use 192 MiB. */
#define MAX_POINTS ((size_t)1 << 24)
/* "name:i" fits in name + ':' + 10 digits. */
#define POINT_LABEL_EXTRA 12

struct point {
	uint64_t pos;
	const char *name; /* the member's, for ties */
	uint32_t member;
	uint32_t index;
};

struct kvs_ring {
	size_t n_members;
	char **names;
	size_t n_points;
	uint64_t *pos;     /* sorted positions, for the binary search */
	uint32_t *owner;   /* member of each point */
	size_t with_points; /* members owning at least one point */
};

uint64_t kvs_ring_hash(const void *key, size_t key_len)
{
	return XXH3_64bits(key, key_len);
}

static int point_cmp(const void *a, const void *b)
{
	const struct point *p = a, *q = b;
	int c;

	if (p->pos != q->pos)
		return p->pos < q->pos ? -1 : 1;
	c = strcmp(p->name, q->name);
	if (c != 0)
		return c;
	return p->index < q->index ? -1 : p->index > q->index;
}

static size_t points_for(double weight, unsigned vnodes)
{
	long long n;

	if (weight <= 0.0)
		return 0;
	n = llround((double)vnodes * weight);
	return n < 1 ? 1 : (size_t)n;
}

void kvs_ring_free(kvs_ring *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n_members; i++)
		free(r->names[i]);
	free(r->names);
	free(r->pos);
	free(r->owner);
	free(r);
}

static int check_members(const kvs_ring_member *members, size_t n,
                         unsigned vnodes, size_t *total)
{
	*total = 0;
	if (members == NULL || n == 0 || n > KVS_RING_MAX_MEMBERS ||
	    vnodes > KVS_RING_MAX_VNODES)
		return KVS_EINVAL;
	for (size_t i = 0; i < n; i++) {
		double w = members[i].weight;

		if (members[i].name == NULL || members[i].name[0] == '\0' ||
		    !(w >= 0.0 && w <= KVS_RING_MAX_WEIGHT))
			return KVS_EINVAL;
		for (size_t j = 0; j < i; j++)
			if (strcmp(members[i].name, members[j].name) == 0)
				return KVS_EINVAL;
		*total += points_for(w, vnodes);
		if (*total > MAX_POINTS)
			return KVS_EINVAL;
	}
	return *total == 0 ? KVS_EINVAL : KVS_OK;
}

int kvs_ring_new(kvs_ring **out, const kvs_ring_member *members, size_t n,
                 unsigned vnodes)
{
	kvs_ring *r;
	struct point *pts = NULL;
	char *label = NULL;
	size_t total, k = 0;
	int rc;

	if (out == NULL)
		return KVS_EINVAL;
	*out = NULL;
	if (vnodes == 0)
		vnodes = KVS_RING_DEFAULT_VNODES;
	rc = check_members(members, n, vnodes, &total);
	if (rc != KVS_OK)
		return rc;
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		return KVS_ENOMEM;
	rc = KVS_ENOMEM;
	r->names = calloc(n, sizeof(*r->names));
	if (r->names == NULL)
		goto fail;
	r->n_members = n;
	for (size_t i = 0; i < n; i++) {
		r->names[i] = strdup(members[i].name);
		if (r->names[i] == NULL)
			goto fail;
	}
	pts = malloc(total * sizeof(*pts));
	r->pos = malloc(total * sizeof(*r->pos));
	r->owner = malloc(total * sizeof(*r->owner));
	if (pts == NULL || r->pos == NULL || r->owner == NULL)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		size_t np = points_for(members[i].weight, vnodes);
		size_t cap = strlen(members[i].name) + POINT_LABEL_EXTRA;

		if (np > 0)
			r->with_points++;
		free(label);
		label = malloc(cap);
		if (label == NULL)
			goto fail;
		for (size_t j = 0; j < np; j++) {
			int len = snprintf(label, cap, "%s:%zu", members[i].name,
			                   j);

			pts[k].pos = XXH3_64bits(label, (size_t)len);
			pts[k].name = r->names[i];
			pts[k].member = (uint32_t)i;
			pts[k].index = (uint32_t)j;
			k++;
		}
	}
	qsort(pts, total, sizeof(*pts), point_cmp);
	for (size_t i = 0; i < total; i++) {
		r->pos[i] = pts[i].pos;
		r->owner[i] = pts[i].member;
	}
	r->n_points = total;
	free(pts);
	free(label);
	*out = r;
	return KVS_OK;
fail:
	free(pts);
	free(label);
	kvs_ring_free(r);
	return rc;
}

/* Index of the first point at or after pos, wrapping to 0. */
static size_t first_point(const kvs_ring *r, uint64_t pos)
{
	size_t lo = 0, hi = r->n_points;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (r->pos[mid] < pos)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo == r->n_points ? 0 : lo;
}

size_t kvs_ring_owners_at(const kvs_ring *r, uint64_t hash, size_t *owners,
                          size_t max)
{
	size_t want, found = 0, i;

	if (r == NULL || owners == NULL || max == 0)
		return 0;
	want = max < r->with_points ? max : r->with_points;
	if (want > KVS_RING_MAX_OWNERS)
		want = KVS_RING_MAX_OWNERS;
	i = first_point(r, hash);
	/* Every member with points is met within one turn of the circle. */
	for (size_t steps = 0; found < want && steps < r->n_points; steps++) {
		uint32_t m = r->owner[i];
		size_t j;

		for (j = 0; j < found; j++)
			if (owners[j] == m)
				break;
		if (j == found)
			owners[found++] = m;
		if (++i == r->n_points)
			i = 0;
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
	return r != NULL ? r->n_points : 0;
}

const char *kvs_ring_member_name(const kvs_ring *r, size_t i)
{
	if (r == NULL || i >= r->n_members)
		return NULL;
	return r->names[i];
}
