/*
 * ring-stats - measure placement: load balance and key movement over many
 * keys, lookup cost, and print the test vectors of docs/ring.md.
 *
 * Usage: ring-stats [vectors|balance|move|lookup|all] [KEYS]
 * Output is markdown, ready for docs/ring.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kvshard.h"

#define DEFAULT_KEYS 1000000
#define MAX_SHARDS 128

static char names[MAX_SHARDS + 1][32];

static kvs_ring *make_ring(size_t n, unsigned vnodes)
{
	kvs_ring_member m[MAX_SHARDS + 1];
	kvs_ring *r;

	for (size_t i = 0; i < n; i++) {
		snprintf(names[i], sizeof(names[i]), "shard-%zu", i + 1);
		m[i].name = names[i];
		m[i].weight = 1.0;
	}
	if (kvs_ring_new(&r, m, n, vnodes) != KVS_OK) {
		fprintf(stderr, "ring-stats: cannot build a ring\n");
		exit(1);
	}
	return r;
}

static size_t key_of(long i, char *buf, size_t cap)
{
	return (size_t)snprintf(buf, cap, "key-%ld", i);
}

static void vectors(void)
{
	static const char *keys[] = {
		"mykey", "a", "hello", "user:1", "user:2", "user:42",
		"session/7f3a", "kvshard", "0", "zzzzzzzz",
	};
	kvs_ring *r = make_ring(3, 0);

	printf("| key | xxh3-64 | owners (N=3, preference order) |\n");
	printf("|---|---|---|\n");
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		size_t o[3], n = kvs_ring_owners(r, keys[i], strlen(keys[i]), o, 3);

		printf("| `%s` | `%016llx` |", keys[i],
		       (unsigned long long)kvs_ring_hash(keys[i], strlen(keys[i])));
		for (size_t j = 0; j < n; j++)
			printf(" %s%s", kvs_ring_member_name(r, o[j]),
			       j + 1 < n ? "," : "");
		printf(" |\n");
	}
	kvs_ring_free(r);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const size_t sizes[] = {3, 4, 5, 8, 10, 16, 32, 64, 100};
#define N_SIZES (sizeof(sizes) / sizeof(sizes[0]))

static void balance(long keys)
{
	char key[32];

	printf("\n| shards | slots max/mean | slots min/mean | keys max/mean | "
	       "keys min/mean | N=3 load max/mean | build ms |\n");
	printf("|---|---|---|---|---|---|---|\n");
	for (size_t s = 0; s < N_SIZES; s++) {
		size_t n = sizes[s], smax = 0, smin = KVS_RING_SLOTS;
		long count[MAX_SHARDS] = {0}, rep[MAX_SHARDS] = {0};
		long max = 0, min = keys, rmax = 0;
		double t0 = now_s(), ms, mean = (double)keys / (double)n;
		kvs_ring *r = make_ring(n, 0);

		ms = (now_s() - t0) * 1e3;
		for (size_t i = 0; i < n; i++) {
			size_t c = kvs_ring_slots_of(r, i);

			smax = c > smax ? c : smax;
			smin = c < smin ? c : smin;
		}
		for (long i = 0; i < keys; i++) {
			size_t o, len = key_of(i, key, sizeof(key));

			kvs_ring_owners(r, key, len, &o, 1);
			count[o]++;
		}
		/* Replica load: slots whose 3 owners include the shard. */
		for (uint32_t sl = 0; sl < KVS_RING_SLOTS; sl++) {
			size_t o[3], k;

			k = kvs_ring_owners_at(r, (uint64_t)sl << 48, o, 3);
			for (size_t j = 0; j < k; j++)
				rep[o[j]]++;
		}
		for (size_t i = 0; i < n; i++) {
			max = count[i] > max ? count[i] : max;
			min = count[i] < min ? count[i] : min;
			rmax = rep[i] > rmax ? rep[i] : rmax;
		}
		printf("| %zu | %.4f | %.4f | %.3f | %.3f | %.3f | %.1f |\n", n,
		       (double)smax * (double)n / KVS_RING_SLOTS,
		       (double)smin * (double)n / KVS_RING_SLOTS,
		       (double)max / mean, (double)min / mean,
		       (double)rmax * (double)n /
		               (3.0 * (n < 3 ? (double)n / 3.0 : 1.0) *
		                KVS_RING_SLOTS),
		       ms);
		kvs_ring_free(r);
	}
}

/* Fractions of keys whose primary, or ordered N=3 set, differ. */
static void compare(const kvs_ring *a, const kvs_ring *b, long keys,
                    size_t only, double *moved, long *wrong, double *sets)
{
	char key[32];
	long m = 0, w = 0, st = 0;

	for (long i = 0; i < keys; i++) {
		size_t oa[3], ob[3], len = key_of(i, key, sizeof(key)), na, nb;

		na = kvs_ring_owners(a, key, len, oa, 3);
		nb = kvs_ring_owners(b, key, len, ob, 3);
		if (strcmp(kvs_ring_member_name(a, oa[0]),
		           kvs_ring_member_name(b, ob[0])) != 0) {
			m++;
			if (only != (size_t)-1 && ob[0] != only)
				w++;
		}
		if (na != nb) {
			st++;
			continue;
		}
		for (size_t j = 0; j < na; j++)
			if (strcmp(kvs_ring_member_name(a, oa[j]),
			           kvs_ring_member_name(b, ob[j])) != 0) {
				st++;
				break;
			}
	}
	*moved = (double)m / (double)keys;
	*wrong = w;
	*sets = (double)st / (double)keys;
}

static void movement(long keys)
{
	printf("\n| shards n → n+1 | ideal 1/(n+1) | primary moved | moved "
	       "elsewhere than the new shard | N=3 sets changed |\n");
	printf("|---|---|---|---|---|\n");
	for (size_t s = 0; s < N_SIZES; s++) {
		kvs_ring *a = make_ring(sizes[s], 0);
		kvs_ring *b = make_ring(sizes[s] + 1, 0);
		double moved, sets;
		long wrong;

		compare(a, b, keys, sizes[s], &moved, &wrong, &sets);
		printf("| %zu → %zu | %.4f | %.4f | %ld | %.4f |\n", sizes[s],
		       sizes[s] + 1, 1.0 / (double)(sizes[s] + 1), moved, wrong,
		       sets);
		kvs_ring_free(a);
		kvs_ring_free(b);
	}
	/* Removing shard-2 (not the last to join): the joins replay. */
	printf("\n| shards n → n−1, shard-2 removed | ideal 1/n | primary "
	       "moved | N=3 sets changed |\n|---|---|---|---|\n");
	for (size_t s = 0; s < N_SIZES; s++) {
		size_t n = sizes[s];
		kvs_ring_member m[MAX_SHARDS];
		kvs_ring *a = make_ring(n, 0), *b;
		double moved, sets;
		long wrong;

		for (size_t i = 0, k = 0; i < n; i++)
			if (i != 1) {
				m[k].name = names[i];
				m[k].weight = 1.0;
				k++;
			}
		if (kvs_ring_new(&b, m, n - 1, 0) != KVS_OK)
			exit(1);
		compare(a, b, keys, (size_t)-1, &moved, &wrong, &sets);
		printf("| %zu → %zu | %.4f | %.4f | %.4f |\n", n, n - 1,
		       1.0 / (double)n, moved, sets);
		kvs_ring_free(a);
		kvs_ring_free(b);
	}
}

static void lookup(long keys)
{
	static const size_t lsizes[] = {3, 16, 64, 100};
	char (*k)[16] = malloc((size_t)keys * 16);
	size_t *len = malloc((size_t)keys * sizeof(size_t));
	volatile size_t sink = 0;

	for (long i = 0; i < keys; i++)
		len[i] = key_of(i, k[i], 16);
	printf("\n| shards | N | ns per lookup (hash + walk) |\n");
	printf("|---|---|---|\n");
	for (size_t s = 0; s < sizeof(lsizes) / sizeof(lsizes[0]); s++) {
		kvs_ring *r = make_ring(lsizes[s], 0);

		for (size_t want = 1; want <= 3; want += 2) {
			double t0 = now_s(), t;
			size_t o[3];

			for (long i = 0; i < keys; i++)
				sink += kvs_ring_owners(r, k[i], len[i], o, want);
			t = now_s() - t0;
			printf("| %zu | %zu | %.0f |\n", lsizes[s], want,
			       t * 1e9 / (double)keys);
		}
		kvs_ring_free(r);
	}
	free(k);
	free(len);
}

int main(int argc, char **argv)
{
	const char *what = argc > 1 ? argv[1] : "all";
	long keys = argc > 2 ? atol(argv[2]) : DEFAULT_KEYS;
	int all = strcmp(what, "all") == 0;

	if (keys <= 0) {
		fprintf(stderr, "usage: ring-stats [vectors|balance|move|lookup|all] [KEYS]\n");
		return 2;
	}
	if (all || strcmp(what, "vectors") == 0)
		vectors();
	if (all || strcmp(what, "balance") == 0)
		balance(keys);
	if (all || strcmp(what, "move") == 0)
		movement(keys);
	if (all || strcmp(what, "lookup") == 0)
		lookup(keys);
	return 0;
}
