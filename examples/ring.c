/*
 * ring.c - which shards own some keys, for a cluster config file.
 *
 *     ring CONFIG KEY...
 *
 * Prints each key's owners in preference order (the first one, the
 * primary, coordinates its writes), computed exactly as the servers do.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kvshard.h>

int main(int argc, char **argv)
{
	char err[KVS_ERRBUF_SIZE];
	kvs_config *cfg;
	const kvs_cluster_config *cc;
	kvs_ring_member *members;
	kvs_ring *ring;
	size_t n;
	int rc;

	if (argc < 3) {
		fprintf(stderr, "usage: ring CONFIG KEY...\n");
		return 2;
	}
	rc = kvs_config_load(&cfg, argv[1], err);
	if (rc != KVS_OK) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	cc = kvs_config_cluster(cfg);
	n = kvs_config_shard_count(cfg);
	members = calloc(n, sizeof(*members));
	if (members == NULL) {
		kvs_config_free(cfg);
		return 1;
	}
	for (size_t i = 0; i < n; i++) {
		members[i].name = kvs_config_shard(cfg, i)->name;
		members[i].weight = kvs_config_shard(cfg, i)->weight;
	}
	rc = kvs_ring_new(&ring, members, n, cc->vnodes);
	free(members);
	if (rc != KVS_OK) {
		fprintf(stderr, "ring: %s\n", kvs_strerror(rc));
		kvs_config_free(cfg);
		return 1;
	}
	printf("%zu shards, %zu points, N=%u\n", n, kvs_ring_points(ring),
	       cc->replication);
	for (int a = 2; a < argc; a++) {
		size_t owners[KVS_RING_MAX_OWNERS];
		size_t got = kvs_ring_owners(ring, argv[a], strlen(argv[a]),
		                             owners, cc->replication);

		printf("%-20s ->", argv[a]);
		for (size_t i = 0; i < got; i++) {
			const kvs_shard_config *s = kvs_config_shard(cfg, owners[i]);

			printf(" %s (%s)%s", s->name, s->address,
			       i + 1 < got ? "," : "");
		}
		printf("\n");
	}
	kvs_ring_free(ring);
	kvs_config_free(cfg);
	return 0;
}
