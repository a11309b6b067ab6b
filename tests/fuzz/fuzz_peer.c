/*
 * fuzz_peer.c - libFuzzer target: peer protocol frames from the network.
 * Any bytes are decoded as a request frame and as an answer frame without
 * reading past them; a request that decodes encodes back to the same
 * bytes, and the records of an answer that decodes can all be walked.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Re-encode decoded operations: a frame of the same size that decodes to
 * the same operations (reserved bytes, ignored, may differ). */
static void round_trip(size_t size, uint32_t sender, uint64_t epoch,
                       const kvs__preq *ops, size_t n)
{
	kvs__preq *again;
	const char *why;
	uint32_t s2;
	uint64_t e2;
	size_t n2;
	kvs__buf b;

	kvs__buf_init(&b, 0);
	kvs__peer_req_head(&b, sender, epoch, n);
	for (size_t i = 0; i < n; i++)
		kvs__peer_req_op(&b, &ops[i]);
	if (b.rc != KVS_OK || b.len != size ||
	    kvs__peer_req_decode(b.data, b.len, &s2, &e2, &again, &n2, &why) !=
	            KVS_OK ||
	    s2 != sender || e2 != epoch || n2 != n)
		abort();
	for (size_t i = 0; i < n; i++)
		if (again[i].code != ops[i].code ||
		    again[i].flags != ops[i].flags ||
		    again[i].key_len != ops[i].key_len ||
		    again[i].value_len != ops[i].value_len ||
		    memcmp(again[i].key, ops[i].key, ops[i].key_len) != 0 ||
		    kvs_stamp_cmp(&again[i].stamp, &ops[i].stamp) != 0)
			abort();
	free(again);
	kvs__buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	kvs__pres res[4];
	kvs__preq *ops;
	const char *why;
	uint32_t sender;
	uint64_t epoch;
	size_t n;

	if (kvs__peer_req_decode(data, size, &sender, &epoch, &ops, &n, &why) ==
	    KVS_OK) {
		round_trip(size, sender, epoch, ops, n);
		free(ops);
	}
	for (size_t want = 0; want <= 4; want++) {
		if (kvs__peer_res_decode(data, size, res, want) != KVS_OK)
			continue;
		for (size_t i = 0; i < want; i++) {
			kvs__precs it;
			kvs_record rec;
			size_t count = 0;

			kvs__precs_start(&it, &res[i]);
			while (kvs__precs_next(&it, &rec)) {
				const uint8_t *end = data + size;

				if ((const uint8_t *)rec.key + rec.key_len > end ||
				    (const uint8_t *)rec.value + rec.value_len > end)
					abort();
				count++;
			}
			if (count != res[i].n_recs)
				abort();
		}
	}
	return 0;
}
