/*
 * fuzz_toml.c - libFuzzer target for the TOML parser.
 *
 * Feeds arbitrary bytes to kvs__toml_parse() and frees whatever it returns.
 * The sanitizers the target is built with report crashes, reads outside the
 * input, leaks and undefined behaviour. When the parse fails, the error
 * must have a position and a message.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "toml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	kvs__toml_value *root = NULL;
	kvs__toml_error err;
	int rc;

	rc = kvs__toml_parse((const char *)data, size, &root, &err);
	if (rc == 0 && root == NULL)
		abort();
	if (rc == -1 && (root != NULL || err.line == 0 || err.col == 0 ||
	                 err.msg[0] == '\0'))
		abort();
	kvs__toml_free(root);
	return 0;
}
