/*
 * embedded.c - libkvshard as an embedded store: no network, no cluster.
 *
 * Opens (creating) a store in a directory, writes a few keys, reads one
 * back with its version, deletes one, and lists a prefix in key order.
 *
 *     embedded [DIR]     (default: a new directory under /tmp, removed at
 *                         the end)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <kvshard.h>

static int print_record(void *ud, const kvs_record *rec)
{
	int *count = ud;

	printf("  %.*s = %.*s\n", (int)rec->key_len, (const char *)rec->key,
	       (int)rec->value_len, (const char *)rec->value);
	(*count)++;
	return 0; /* go on */
}

int main(int argc, char **argv)
{
	char tmpl[] = "/tmp/kvshard-embedded.XXXXXX";
	const char *dir = argc > 1 ? argv[1] : mkdtemp(tmpl);
	static const char *const fruit[] = {"fruit:apple", "fruit:banana",
	                                    "fruit:cherry", "veg:leek"};
	kvs_store *store;
	kvs_scan_options scan;
	kvs_stamp stamp;
	char text[KVS_STAMP_STRLEN];
	void *value;
	size_t len;
	int rc, count = 0;

	if (dir == NULL) {
		perror("mkdtemp");
		return 1;
	}
	rc = kvs_store_open(&store, dir, NULL);
	if (rc != KVS_OK) {
		fprintf(stderr, "cannot open %s: %s\n", dir, kvs_strerror(rc));
		return 1;
	}
	for (size_t i = 0; i < sizeof(fruit) / sizeof(fruit[0]); i++) {
		const char *v = strchr(fruit[i], ':') + 1;

		/* Returns once the write is durable on disk. */
		rc = kvs_store_put(store, fruit[i], strlen(fruit[i]), v, strlen(v),
		                   NULL, NULL);
		if (rc != KVS_OK) {
			fprintf(stderr, "put: %s\n", kvs_strerror(rc));
			kvs_store_close(store);
			return 1;
		}
	}
	rc = kvs_store_get(store, "fruit:banana", 12, &value, &len, &stamp);
	if (rc != KVS_OK) {
		fprintf(stderr, "get: %s\n", kvs_strerror(rc));
		kvs_store_close(store);
		return 1;
	}
	kvs_stamp_format(&stamp, text);
	printf("fruit:banana = %.*s (version %s)\n", (int)len, (char *)value,
	       text);
	kvs_free(value);

	kvs_store_delete(store, "fruit:cherry", 12, NULL, NULL);
	rc = kvs_store_get(store, "fruit:cherry", 12, &value, &len, NULL);
	printf("fruit:cherry after delete: %s\n", kvs_strerror(rc));

	memset(&scan, 0, sizeof(scan));
	scan.prefix = "fruit:";
	scan.prefix_len = 6;
	printf("keys starting with \"fruit:\":\n");
	kvs_store_scan(store, &scan, print_record, &count);
	kvs_store_close(store);
	printf("%d keys listed\n", count);
	if (argc <= 1) { /* our scratch directory: clean up */
		static const char *const files[] = {"data.mdb", "lock.mdb",
		                                    "kvshard.lock"};
		char path[sizeof(tmpl) + 16];

		for (size_t i = 0; i < 3; i++) {
			snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
			unlink(path);
		}
		rmdir(dir);
	}
	return count == 2 ? 0 : 1;
}
