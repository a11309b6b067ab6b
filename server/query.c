/*
 * query.c - query arguments from their bytes (query.h).
 *
 * Every parser reads exactly the bytes it is given: a decoded value may
 * hold a NUL ("r=1%00x"), and such a value is not the number before it.
 */
#include <stdlib.h>
#include <string.h>

#include "kvshard.h"
#include "protocol.h"
#include "query.h"
#include "util.h"

void query_names_init(struct query_names *q, const char *const *allowed)
{
	memset(q, 0, sizeof(*q));
	q->allowed = allowed;
}

enum query_name_verdict query_name(struct query_names *q, const char *name)
{
	int known = 0;

	for (size_t i = 0; q->allowed != NULL && q->allowed[i] != NULL; i++)
		known |= strcmp(q->allowed[i], name) == 0;
	if (!known)
		return QUERY_NAME_UNKNOWN;
	for (size_t i = 0; i < q->n_seen; i++)
		if (strcmp(q->seen[i], name) == 0)
			return QUERY_NAME_TWICE;
	if (q->n_seen < QUERY_MAX_NAMES)
		q->seen[q->n_seen++] = name;
	return QUERY_NAME_OK;
}

int query_decode(const char *raw, size_t len, char **out, size_t *out_len)
{
	char *dec = malloc(len + 1);

	*out = NULL;
	*out_len = 0;
	if (dec == NULL)
		return KVS_ENOMEM;
	if (kvs__url_decode(raw, len, dec, out_len, 1) != 0) {
		free(dec);
		*out_len = 0;
		return KVS_EBADENCODING;
	}
	dec[*out_len] = '\0';
	*out = dec;
	return KVS_OK;
}

/* Do the len bytes of text say word, exactly? */
static int is_word(const char *text, size_t len, const char *word)
{
	return len == strlen(word) && memcmp(text, word, len) == 0;
}

/* A decimal number of 1 to max_digits digits, every byte a digit, into
 * *v; 0 when not one or when it does not fit. */
static int decimal(const char *text, size_t len, size_t max_digits,
                   unsigned long long *v)
{
	*v = 0;
	if (len == 0 || len > max_digits)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned d = (unsigned)(text[i] - '0');

		if (text[i] < '0' || text[i] > '9' || *v > (~0ull - d) / 10)
			return 0;
		*v = *v * 10 + d;
	}
	return 1;
}

unsigned query_quorum(const char *text, size_t len, unsigned n)
{
	unsigned long long v;

	if (is_word(text, len, KVS_QUORUM_MAJORITY))
		return n / 2 + 1;
	if (is_word(text, len, KVS_QUORUM_ALL))
		return n;
	if (!decimal(text, len, QUERY_QUORUM_TEXT_MAX, &v) || v < 1 || v > n)
		return 0;
	return (unsigned)v;
}

size_t query_limit(const char *text, size_t len, size_t max)
{
	unsigned long long v;

	if (!decimal(text, len, QUERY_LIMIT_TEXT_MAX, &v) || v == 0)
		return 0;
	return v < max ? (size_t)v : max;
}

int query_flag(const char *text, size_t len)
{
	if (is_word(text, len, "1") || is_word(text, len, "true"))
		return 1;
	if (is_word(text, len, "0") || is_word(text, len, "false"))
		return 0;
	return -1;
}
