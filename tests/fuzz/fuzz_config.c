/*
 * fuzz_config.c - libFuzzer target: the cluster config loader (TOML parser
 * plus schema validation) on arbitrary bytes. It must never crash, leak or
 * accept a config without shards, and every error must carry a position.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvshard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[KVS_ERRBUF_SIZE];
	kvs_config *cfg = NULL;
	int rc = kvs_config_parse(&cfg, (const char *)data, size, "f.toml", err);

	if (rc == KVS_OK) {
		if (kvs_config_shard_count(cfg) == 0)
			abort();
		kvs_config_free(cfg);
	} else if (rc == KVS_ECONFIG && strncmp(err, "f.toml:", 7) != 0) {
		abort();
	}
	return 0;
}
