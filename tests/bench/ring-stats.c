/*
 * ring-stats - measure the ring: load balance and key movement over many
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

static void balance(long keys)
{
	static const size_t sizes[] = {3, 4, 5, 8, 16, 32, 64};
	static const unsigned vn[] = {64, 256, 1024};
	char key[32];

	printf("| shards | vnodes | max/mean | min/mean |\n|---|---|---|---|\n");
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
		for (size_t v = 0; v < sizeof(vn) / sizeof(vn[0]); v++) {
			kvs_ring *r = make_ring(sizes[s], vn[v]);
			long count[MAX_SHARDS] = {0}, max = 0, min = keys;
			double mean = (double)keys / (double)sizes[s];

			for (long i = 0; i < keys; i++) {
				size_t o, n = key_of(i, key, sizeof(key));

				kvs_ring_owners(r, key, n, &o, 1);
				count[o]++;
			}
			for (size_t i = 0; i < sizes[s]; i++) {
				if (count[i] > max)
					max = count[i];
				if (count[i] < min)
					min = count[i];
			}
			printf("| %zu | %u | %.3f | %.3f |\n", sizes[s], vn[v],
			       (double)max / mean, (double)min / mean);
			kvs_ring_free(r);
		}
}

static void movement(long keys)
{
	static const size_t sizes[] = {3, 4, 5, 8, 16, 32, 64};
	char key[32];

	printf("| shards n → n+1 | ideal 1/(n+1) | primary moved | moved "
	       "elsewhere than the new shard | N=3 sets changed |\n");
	printf("|---|---|---|---|---|\n");
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		kvs_ring *a = make_ring(sizes[s], 0);
		kvs_ring *b = make_ring(sizes[s] + 1, 0);
		long moved = 0, wrong = 0, sets = 0;

		for (long i = 0; i < keys; i++) {
			size_t oa[3], ob[3], n = key_of(i, key, sizeof(key));

			kvs_ring_owners(a, key, n, oa, 3);
			kvs_ring_owners(b, key, n, ob, 3);
			if (oa[0] != ob[0]) {
				moved++;
				if (ob[0] != sizes[s])
					wrong++;
			}
			for (int j = 0; j < 3; j++)
				if (oa[j] != ob[j]) {
					sets++;
					break;
				}
		}
		printf("| %zu → %zu | %.4f | %.4f | %ld | %.4f |\n", sizes[s],
		       sizes[s] + 1, 1.0 / (double)(sizes[s] + 1),
		       (double)moved / (double)keys, wrong,
		       (double)sets / (double)keys);
		kvs_ring_free(a);
		kvs_ring_free(b);
	}
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void lookup(long keys)
{
	static const size_t sizes[] = {3, 16, 64};
	char (*k)[16] = malloc((size_t)keys * 16);
	size_t *len = malloc((size_t)keys * sizeof(size_t));
	volatile size_t sink = 0;

	for (long i = 0; i < keys; i++)
		len[i] = key_of(i, k[i], 16);
	printf("| shards | points | N | ns per lookup (hash + search + walk) |\n");
	printf("|---|---|---|---|\n");
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		kvs_ring *r = make_ring(sizes[s], 0);

		for (size_t want = 1; want <= 3; want += 2) {
			double t0 = now_s(), t;
			size_t o[3];

			for (long i = 0; i < keys; i++)
				sink += kvs_ring_owners(r, k[i], len[i], o, want);
			t = now_s() - t0;
			printf("| %zu | %zu | %zu | %.0f |\n", sizes[s],
			       kvs_ring_points(r), want, t * 1e9 / (double)keys);
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
