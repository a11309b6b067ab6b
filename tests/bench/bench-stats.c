/*
 * bench-stats.c - kvshard-bench's numbers: random numbers, the zipfian key
 * generator and latency histograms.
 */
#include <math.h>
#include <string.h>

#include "bench.h"

/* ---- random numbers ----------------------------------------------------- */

/* SplitMix64's increment and output mixer (Steele, Lea and Flood). */
#define SPLITMIX_GAMMA 0x9e3779b97f4a7c15ull
#define SPLITMIX_MUL1 0xbf58476d1ce4e5b9ull
#define SPLITMIX_MUL2 0x94d049bb133111ebull

/* A double has 53 bits of mantissa. */
#define DOUBLE_BITS 53u

static uint64_t mix64(uint64_t x)
{
	x = (x ^ (x >> 30)) * SPLITMIX_MUL1;
	x = (x ^ (x >> 27)) * SPLITMIX_MUL2;
	return x ^ (x >> 31);
}

static uint64_t rotl(uint64_t x, unsigned k)
{
	return (x << k) | (x >> (64u - k));
}

void rng_seed(struct rng *r, uint64_t seed)
{
	/* Expand the seed with SplitMix64, as the xoshiro authors advise. */
	for (size_t i = 0; i < 4; i++) {
		seed += SPLITMIX_GAMMA;
		r->s[i] = mix64(seed);
	}
}

uint64_t rng_next(struct rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5u, 7) * 9u;
	uint64_t t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

double rng_double(struct rng *r)
{
	return (double)(rng_next(r) >> (64u - DOUBLE_BITS)) *
	       (1.0 / (double)(1ull << DOUBLE_BITS));
}

uint64_t rng_below(struct rng *r, uint64_t n)
{
	/* The bias, n / 2^64, is far below anything measurable here. */
	return rng_next(r) % n;
}

/* ---- zipfian ------------------------------------------------------------ */

/*
 * zeta(n) is summed term by term up to this many items; beyond, the tail is
 * the Euler-Maclaurin approximation, exact to far below a double's
 * precision for terms this small, so that a billion keys cost no more than
 * a million to set up.
 */
#define ZETA_EXACT_TERMS 1000000ull

static double zeta_tail(uint64_t a, uint64_t b, double theta)
{
	/* Sum of x^-theta for x = a..b: integral, ends, first correction. */
	double fa = pow((double)a, -theta), fb = pow((double)b, -theta);
	double integral = (pow((double)b, 1.0 - theta) -
	                   pow((double)a, 1.0 - theta)) /
	                  (1.0 - theta);
	double da = -theta * fa / (double)a, db = -theta * fb / (double)b;

	return integral + (fa + fb) / 2.0 + (db - da) / 12.0;
}

static double zeta(uint64_t n, double theta)
{
	uint64_t exact = n < ZETA_EXACT_TERMS ? n : ZETA_EXACT_TERMS;
	double sum = 0.0;

	for (uint64_t i = 1; i <= exact; i++)
		sum += pow((double)i, -theta);
	if (n > exact)
		sum += zeta_tail(exact + 1, n, theta);
	return sum;
}

void zipf_init(struct zipf *z, uint64_t n, double theta)
{
	double zeta2 = 1.0 + pow(2.0, -theta);

	z->n = n;
	z->theta = theta;
	z->alpha = 1.0 / (1.0 - theta);
	z->zetan = zeta(n, theta);
	z->eta = (1.0 - pow(2.0 / (double)n, 1.0 - theta)) /
	         (1.0 - zeta2 / z->zetan);
	z->half_theta = 1.0 + pow(0.5, theta);
}

uint64_t zipf_next(const struct zipf *z, struct rng *r)
{
	double u = rng_double(r), uz = u * z->zetan;
	uint64_t rank;

	if (z->n == 1 || uz < 1.0)
		rank = 0;
	else if (uz < z->half_theta)
		rank = 1;
	else
		rank = (uint64_t)((double)z->n *
		                  pow(z->eta * u - z->eta + 1.0, z->alpha));
	if (rank >= z->n)
		rank = z->n - 1;
	/* Scramble: item of rank k is key hash(k) mod n, as YCSB does. */
	return mix64(rank) % z->n;
}

/* ---- histograms --------------------------------------------------------- */

#define HIST_VALUE_LIMIT (1ull << HIST_TOP_BIT)

static size_t hist_index(uint64_t v)
{
	unsigned top, shift;

	if (v >= HIST_VALUE_LIMIT)
		v = HIST_VALUE_LIMIT - 1;
	if (v < HIST_SUB_COUNT)
		return (size_t)v;
	top = 63u - (unsigned)__builtin_clzll(v);
	shift = top - HIST_SUB_BITS;
	return ((size_t)(shift + 1u) << HIST_SUB_BITS) |
	       (size_t)((v >> shift) & (HIST_SUB_COUNT - 1u));
}

/* The smallest value of bucket i, and the bucket's width. */
static uint64_t hist_lower(size_t i, uint64_t *width)
{
	size_t group = i >> HIST_SUB_BITS;
	uint64_t sub = i & (HIST_SUB_COUNT - 1u);

	if (group == 0) {
		*width = 1;
		return sub;
	}
	*width = 1ull << (group - 1u);
	return (HIST_SUB_COUNT + sub) << (group - 1u);
}

void hist_init(struct hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

void hist_record(struct hist *h, uint64_t ns)
{
	h->buckets[hist_index(ns)]++;
	h->count++;
	h->sum += ns;
	if (ns < h->min)
		h->min = ns;
	if (ns > h->max)
		h->max = ns;
}

void hist_merge(struct hist *dst, const struct hist *src)
{
	for (size_t i = 0; i < HIST_BUCKETS; i++)
		dst->buckets[i] += src->buckets[i];
	dst->count += src->count;
	dst->sum += src->sum;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t hist_percentile(const struct hist *h, double p)
{
	uint64_t rank, seen = 0;

	if (h->count == 0)
		return 0;
	/* The rank-th smallest value, 1-based: at least the first one. */
	rank = (uint64_t)ceil(p / 100.0 * (double)h->count);
	if (rank < 1)
		rank = 1;
	if (rank >= h->count)
		return h->max;
	for (size_t i = 0; i < HIST_BUCKETS; i++) {
		uint64_t width, mid;

		seen += h->buckets[i];
		if (seen < rank)
			continue;
		/* The middle of the bucket, within what was seen. */
		mid = hist_lower(i, &width) + (width - 1u) / 2u;
		if (mid < h->min)
			return h->min;
		return mid > h->max ? h->max : mid;
	}
	return h->max;
}

double hist_mean(const struct hist *h)
{
	return h->count ? (double)h->sum / (double)h->count : 0.0;
}
