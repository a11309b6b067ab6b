/*
 * query.h - the query string's arguments as pure functions of their
 * bytes: names checked against an endpoint's list, values percent-decoded
 * and parsed. request.c and scan.c call them with what libmicrohttpd
 * split out of the request line; tests/fuzz/fuzz_query.c with any bytes.
 */
#ifndef KVS_QUERY_H
#define KVS_QUERY_H

#include <stddef.h>

/* Names a check remembers: more than any endpoint takes. */
#define QUERY_MAX_NAMES 16
/* Longest quorum text worth reading ("quorum"; digits up to 15). */
#define QUERY_QUORUM_TEXT_MAX 15
/* Longest limit worth reading: 20 digits hold any 64-bit number. */
#define QUERY_LIMIT_TEXT_MAX 20

enum query_name_verdict { QUERY_NAME_OK, QUERY_NAME_UNKNOWN, QUERY_NAME_TWICE };

/* The names of one request's arguments, checked one after the other. */
struct query_names {
	const char *const *allowed;        /* NULL-terminated; NULL: none */
	const char *seen[QUERY_MAX_NAMES]; /* borrowed from the caller */
	size_t n_seen;
};

void query_names_init(struct query_names *q, const char *const *allowed);

/* One more argument name, exactly as given (names are not decoded):
 * QUERY_NAME_OK, or why the request must be refused. name is borrowed
 * until the check is over. */
enum query_name_verdict query_name(struct query_names *q, const char *name);

/*
 * Decode an argument's raw value (%XX escapes, '+' as a space) into a new
 * buffer (free()), NUL-terminated; the NUL is not counted in *out_len and
 * the value may hold NUL bytes of its own.
 *
 * @return KVS_OK; KVS_EBADENCODING (a malformed %-escape); KVS_ENOMEM.
 */
int query_decode(const char *raw, size_t len, char **out, size_t *out_len);

/* A quorum (r, w): "1" to n, "quorum" (a majority of n) or "all", all
 * len bytes of it. The number of replicas, or 0 when it is none of those. */
unsigned query_quorum(const char *text, size_t len, unsigned n);

/* A scan's limit: a positive decimal number, all len bytes of it, cut to
 * max. 0 when it is not one. */
size_t query_limit(const char *text, size_t len, size_t max);

/* A flag: "1" or "true" give 1, "0" or "false" 0, anything else -1. */
int query_flag(const char *text, size_t len);

#endif
