/*
 * fuzz_query.c - libFuzzer target: query strings, as the server reads
 * them (server/query.c). The input is split into name=value pairs the way
 * libmicrohttpd splits a request's query ('&', the first '=', '+' as a
 * space; it stops at a NUL, as a request line does), each name checked
 * against the endpoints' lists and each value decoded and parsed as its
 * argument is. Checked: decoding reads only its bytes, refuses exactly the
 * malformed %-escapes and inverts escaping; a name is refused as unknown
 * or repeated exactly when it is; an accepted number is all digits and in
 * range, an accepted quorum or flag one of its words.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvshard.h"
#include "protocol.h"
#include "query.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The argument lists of server/router.c's endpoints. */
static const char *const kv_args[] = {KVS_ARG_R, KVS_ARG_W, NULL};
static const char *const store_args[] = {KVS_ARG_KEY, KVS_ARG_VALUE, KVS_ARG_W,
                                         NULL};
static const char *const scan_args[] = {KVS_ARG_PREFIX, KVS_ARG_START_AFTER,
                                        KVS_ARG_LIMIT,  KVS_ARG_VALUES,
                                        KVS_ARG_R,      NULL};
static const char *const *const lists[] = {kv_args, store_args, scan_args,
                                           NULL};

#define MAX_SCAN_LIMIT 10000

static int listed(const char *const *list, const char *name)
{
	for (size_t i = 0; list != NULL && list[i] != NULL; i++)
		if (strcmp(list[i], name) == 0)
			return 1;
	return 0;
}

/* Is every %-escape of raw complete and hexadecimal? */
static int well_escaped(const char *raw, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (raw[i] == '%') {
			if (len - i < 3 ||
			    kvs__hex_value((unsigned char)raw[i + 1]) < 0 ||
			    kvs__hex_value((unsigned char)raw[i + 2]) < 0)
				return 0;
			i += 2;
		}
	return 1;
}

static int all_digits(const char *text, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (text[i] < '0' || text[i] > '9')
			return 0;
	return len > 0;
}

static int is(const char *text, size_t len, const char *word)
{
	return len == strlen(word) && memcmp(text, word, len) == 0;
}

/* The value of a number of digits, saturated. */
static unsigned long long number(const char *text, size_t len)
{
	unsigned long long v = 0;

	for (size_t i = 0; i < len; i++)
		v = v > 1000000000000ull ? v
		                         : v * 10 + (unsigned)(text[i] - '0');
	return v;
}

static void check_value(const char *name, const char *raw, size_t raw_len)
{
	char *dec = NULL, *again = NULL, *esc;
	size_t len = 0, again_len = 0;
	int rc = query_decode(raw, raw_len, &dec, &len);

	if (rc == KVS_ENOMEM)
		return;
	if ((rc == KVS_OK) != well_escaped(raw, raw_len))
		abort();
	if (rc != KVS_OK) {
		if (dec != NULL || len != 0)
			abort();
		return;
	}
	if (len > raw_len || dec[len] != '\0')
		abort();
	/* Escaping the bytes and decoding them again gives them back. */
	esc = kvs__url_escape(dec, len);
	if (esc != NULL) {
		if (query_decode(esc, strlen(esc), &again, &again_len) !=
		        KVS_OK ||
		    again_len != len || memcmp(again, dec, len) != 0)
			abort();
		free(again);
		free(esc);
	}
	if (strcmp(name, KVS_ARG_R) == 0 || strcmp(name, KVS_ARG_W) == 0) {
		for (unsigned n = 1; n <= 5; n++) {
			unsigned want = 0;

			if (is(dec, len, KVS_QUORUM_MAJORITY))
				want = n / 2 + 1;
			else if (is(dec, len, KVS_QUORUM_ALL))
				want = n;
			else if (all_digits(dec, len) &&
			         len <= QUERY_QUORUM_TEXT_MAX &&
			         number(dec, len) >= 1 && number(dec, len) <= n)
				want = (unsigned)number(dec, len);
			if (query_quorum(dec, len, n) != want)
				abort();
		}
	} else if (strcmp(name, KVS_ARG_LIMIT) == 0) {
		size_t want = 0;

		/* Up to 2^64 - 1, which has 20 digits. */
		if (all_digits(dec, len) && number(dec, len) > 0 &&
		    (len < 20 ||
		     (len == 20 &&
		      memcmp(dec, "18446744073709551615", 20) <= 0)))
			want = number(dec, len) < MAX_SCAN_LIMIT
			           ? (size_t)number(dec, len)
			           : MAX_SCAN_LIMIT;
		if (query_limit(dec, len, MAX_SCAN_LIMIT) != want)
			abort();
	} else if (strcmp(name, KVS_ARG_VALUES) == 0) {
		int f = query_flag(dec, len);

		if (f != (is(dec, len, "1") || is(dec, len, "true")    ? 1
		          : is(dec, len, "0") || is(dec, len, "false") ? 0
		                                                       : -1))
			abort();
	}
	free(dec);
}

/* The pieces of one query, as libmicrohttpd hands them over. */
struct piece {
	char *name;
	char *value; /* NULL: no '=' */
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *end = memchr(data, '\0', size);
	size_t len = end != NULL ? (size_t)(end - (const char *)data) : size;
	char *q = malloc(len + 1);
	struct piece pieces[64];
	size_t n = 0;

	if (q == NULL)
		return 0;
	memcpy(q, data, len);
	q[len] = '\0';
	for (char *p = q; p != NULL && n < KVS_ARRAY_SIZE(pieces);) {
		char *amp = strchr(p, '&'), *eq;

		if (amp != NULL)
			*amp = '\0';
		if (*p != '\0') {
			eq = strchr(p, '=');
			if (eq != NULL)
				*eq = '\0';
			for (char *c = p; *c; c++)
				*c = *c == '+' ? ' ' : *c;
			for (char *c = eq != NULL ? eq + 1 : p;
			     eq != NULL && *c; c++)
				*c = *c == '+' ? ' ' : *c;
			pieces[n].name = p;
			pieces[n].value = eq != NULL ? eq + 1 : NULL;
			n++;
		}
		p = amp != NULL ? amp + 1 : NULL;
	}
	for (size_t l = 0; lists[l] != NULL; l++) {
		struct query_names names;

		query_names_init(&names, lists[l]);
		for (size_t i = 0; i < n; i++) {
			enum query_name_verdict v =
			    query_name(&names, pieces[i].name);
			int before = 0;

			for (size_t k = 0; k < i; k++)
				before |=
				    strcmp(pieces[k].name, pieces[i].name) == 0;
			if (v == QUERY_NAME_UNKNOWN &&
			    listed(lists[l], pieces[i].name))
				abort();
			if (v != QUERY_NAME_UNKNOWN &&
			    !listed(lists[l], pieces[i].name))
				abort();
			if (v == QUERY_NAME_TWICE && !before)
				abort();
			if (v == QUERY_NAME_OK && before)
				abort();
			if (v != QUERY_NAME_OK)
				break; /* the server refuses the request here */
			check_value(
			    pieces[i].name,
			    pieces[i].value != NULL ? pieces[i].value : "",
			    pieces[i].value != NULL ? strlen(pieces[i].value)
			                            : 0);
		}
	}
	free(q);
	return 0;
}
