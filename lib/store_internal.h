/*
 * store_internal.h - store functions for other modules of the library
 * (not part of the public API).
 */
#ifndef KVS_STORE_INTERNAL_H
#define KVS_STORE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "kvshard/store.h"

/**
 * Durably store a named blob of the library's own (the topology document,
 * hints...) beside the data. Names must start with "kvs.".
 *
 * @return KVS_OK, KVS_EINVAL, or a write error as kvs_store_put().
 */
int kvs__store_meta_put(kvs_store *s, const char *name, const void *value,
                        size_t len);

/**
 * Read a named blob stored with kvs__store_meta_put.
 *
 * @param value receives a malloc'ed copy (kvs_free) on KVS_OK.
 * @return KVS_OK, KVS_NOTFOUND, or a read error.
 */
int kvs__store_meta_get(kvs_store *s, const char *name, void **value,
                        size_t *len);

/** A new reading of the store's clock (for stamps made outside it). */
uint64_t kvs__store_clock_now(kvs_store *s);

#endif
