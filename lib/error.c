/*
 * error.c - result codes, their texts, and the library version.
 */
#include <stdlib.h>
#include <string.h>

#include "kvshard/common.h"

const char *kvs_version(void)
{
	return KVS_VERSION_STRING;
}

unsigned kvs_version_hex(void)
{
	return KVS_VERSION_HEX;
}

const char *kvs_strerror(int rc)
{
	switch (rc) {
#define KVS__ERROR_TEXT(name, value, code, text)                              \
	case (value):                                                         \
		return text;
		KVS_ERROR_LIST(KVS__ERROR_TEXT)
#undef KVS__ERROR_TEXT
	default:
		return "unknown error";
	}
}

const char *kvs_error_code(int rc)
{
	switch (rc) {
#define KVS__ERROR_CODE(name, value, code, text)                              \
	case (value):                                                         \
		return code;
		KVS_ERROR_LIST(KVS__ERROR_CODE)
#undef KVS__ERROR_CODE
	default:
		return "unknown";
	}
}

int kvs_error_from_code(const char *code, int unknown)
{
	if (code == NULL)
		return unknown;
#define KVS__ERROR_MATCH(name, value, text_code, text)                        \
	if (strcmp(code, text_code) == 0)                                     \
		return value;
	KVS_ERROR_LIST(KVS__ERROR_MATCH)
#undef KVS__ERROR_MATCH
	return unknown;
}

void kvs_free(void *ptr)
{
	free(ptr);
}
