/*
 * fuzz_stamp.c - libFuzzer target: version stamps (ETags) from clients.
 * Whatever parses must format back to text that parses to the same stamp.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "kvshard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	kvs_stamp a, b;
	char text[KVS_STAMP_STRLEN];
	size_t n;

	if (kvs_stamp_parse(&a, (const char *)data, size) != KVS_OK)
		return 0;
	n = kvs_stamp_format(&a, text);
	if (kvs_stamp_parse(&b, text, n) != KVS_OK || kvs_stamp_cmp(&a, &b) != 0)
		abort();
	return 0;
}
