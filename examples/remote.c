/*
 * remote.c - libkvshard's client against a running cluster.
 *
 *     remote [HOST:PORT,...]     (default: $KVSHARD_CLUSTER or
 *                                 localhost:8081, e.g. ./start.sh's cluster)
 *
 * Connects (the client learns the topology from any node and then sends
 * each key straight to its owners), writes and reads a key, does a
 * compare-and-swap, reads and writes several keys in one call each, and
 * lists a prefix.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kvshard.h>

#define N_KEYS 5

static int print_key(void *ud, const kvs_record *rec)
{
	(void)ud;
	printf("  %.*s = %.*s\n", (int)rec->key_len, (const char *)rec->key,
	       (int)rec->value_len, (const char *)rec->value);
	return 0;
}

static int fail(const char *what, int rc, kvs_client *c)
{
	fprintf(stderr, "remote: %s: %s\n", what, kvs_strerror(rc));
	kvs_client_close(c);
	return 1;
}

int main(int argc, char **argv)
{
	char err[KVS_ERRBUF_SIZE], names[N_KEYS][16], text[KVS_STAMP_STRLEN];
	kvs_client_options opts;
	kvs_client_scan_options scan;
	kvs_key keys[N_KEYS];
	kvs_kv items[N_KEYS];
	kvs_key_result res[N_KEYS];
	kvs_client *c;
	kvs_stamp v1, v2;
	void *value, *next = NULL;
	size_t len, next_len;
	int rc;

	kvs_client_options_init(&opts);
	opts.seeds = argc > 1 ? argv[1] : NULL;
	rc = kvs_client_open(&c, &opts, err);
	if (rc != KVS_OK) {
		fprintf(stderr, "remote: %s\n", err);
		return 1;
	}
	rc = kvs_client_put(c, "example:greeting", 16, "hello", 5, NULL, &v1);
	if (rc != KVS_OK)
		return fail("put", rc, c);
	rc = kvs_client_get(c, "example:greeting", 16, &value, &len, NULL);
	if (rc != KVS_OK)
		return fail("get", rc, c);
	kvs_stamp_format(&v1, text);
	printf("example:greeting = %.*s (version %s)\n", (int)len,
	       (char *)value, text);
	kvs_free(value);

	/* Compare-and-swap: only the writer holding the current version
	 * wins; a second swap from the same version is refused. */
	rc = kvs_client_cas(c, "example:greeting", 16, &v1, "hi", 2, &v2);
	printf("swap from the current version: %s\n", kvs_strerror(rc));
	rc = kvs_client_cas(c, "example:greeting", 16, &v1, "hey", 3, NULL);
	printf("swap from the old version: %s\n", kvs_strerror(rc));
	if (rc != KVS_ECONFLICT)
		return fail("compare-and-swap", rc, c);

	/* Several keys in one call: one request per shard, in parallel. */
	for (int i = 0; i < N_KEYS; i++) {
		snprintf(names[i], sizeof(names[i]), "example:k%d", i);
		items[i].key = keys[i].key = names[i];
		items[i].key_len = keys[i].len = strlen(names[i]);
		items[i].value = names[i] + 8;
		items[i].value_len = strlen(names[i] + 8);
	}
	rc = kvs_client_mput(c, items, N_KEYS, res);
	if (rc != KVS_OK)
		return fail("mput", rc, c);
	rc = kvs_client_mget(c, keys, N_KEYS, res);
	if (rc != KVS_OK)
		return fail("mget", rc, c);
	for (int i = 0; i < N_KEYS; i++)
		if (res[i].rc != KVS_OK)
			return fail(names[i], res[i].rc, c);
	printf("read %d keys in one call\n", N_KEYS);
	kvs_client_results_free(res, N_KEYS);

	memset(&scan, 0, sizeof(scan));
	scan.prefix = "example:";
	scan.prefix_len = 8;
	scan.values = 1;
	printf("keys starting with \"example:\":\n");
	do {
		/* A page at a time; next is where the following page starts. */
		rc = kvs_client_scan(c, &scan, print_key, NULL, &next, &next_len);
		kvs_free((void *)scan.start_after);
		if (rc != KVS_OK)
			return fail("scan", rc, c);
		scan.start_after = next;
		scan.start_after_len = next_len;
	} while (next != NULL);
	kvs_client_close(c);
	return 0;
}
