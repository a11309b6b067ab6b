/*
 * config.c - the cluster configuration: TOML in, validated settings out.
 *
 * The TOML parser (toml.c) gives a tree whose every key and value knows its
 * line and column. This module walks that tree against the schema below,
 * key by key in file order, so the first mistake in the file is the one
 * reported, always as "file:line:column: message". Unknown keys are errors:
 * a typo must never fall back silently to a default.
 *
 * Schema (docs/config.md is the user's version):
 *   [[shards]]  name, idx, address, weight              (at least one)
 *   [cluster]   replication, write_quorum, read_quorum, vnodes, routing,
 *               data_dir, request_timeout_ms, connect_timeout_ms
 *   [storage]   sync, map_size, max_map_size
 *   [limits]    max_key_bytes, max_value_bytes, max_connections,
 *               max_connections_per_client,
 *               idle_timeout_s, max_batch_ops, max_scan_limit,
 *               max_answer_bytes, header_timeout_s, body_timeout_s,
 *               max_buffered_bytes
 *   [server]    threads
 *   [auth]      client_tokens, read_tokens, admin_tokens, cluster_secret
 *   [coordination] etcd, prefix, lease_ttl_s, move_grace_s,
 *                  move_rate_bytes
 *   [tls]       cert, key, ca, peer_cert, peer_key, mutual
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "kvshard/config.h"
#include "config_internal.h"
#include "kvshard/ring.h"
#include "toml.h"
#include "util.h"

/* Longest file the loader reads: configs are small; this is a guard. */
#define MAX_CONFIG_BYTES ((size_t)16 << 20)
#define MAX_SHARDS 4096
#define MAX_NAME_LEN 64
#define MAX_TIMEOUT_MS 600000u
/* A day: beyond that, the bound protects nothing. */
#define MAX_CLOCK_SKEW_MS 86400000u
/* A week: hints older than that are better replaced by anti-entropy. */
#define MAX_HINT_AGE_S 604800u
/* A year. */
#define MAX_TOMBSTONE_GRACE_S 31536000u
#define MAX_CONNECT_TIMEOUT_MS 60000u
#define MIN_MAP_SIZE ((size_t)1 << 20)
#define MAX_CONNECTIONS 1000000u
#define MAX_IDLE_TIMEOUT_S 86400u
/* max_buffered_bytes, by default, holds this many of the largest values. */
#define DEFAULT_BUFFERED_VALUES 4u
#define MAX_BATCH_OPS 100000u
#define MAX_SCAN_LIMIT 1000000u
/* What an answer holds besides one value in base64: its key in both
 * forms, its version, the rest of the JSON, other results' small parts. */
#define ANSWER_OVERHEAD_BYTES ((size_t)64 << 10)
#define MAX_THREADS 256u
#define MAX_TOKENS 1024
#define MAX_ETCD_ENDPOINTS 16
#define MAX_PREFIX_LEN 256
#define MIN_LEASE_TTL_S 2u
#define MAX_LEASE_TTL_S 300u

struct kvs_config {
	kvs_cluster_config c;
	kvs_shard_config *shards;
	size_t n_shards;
	/* A move under way (config_internal.h): its phase, and the shards'
	 * weights before it (NULL without one). */
	int move_phase;
	int move_paused;
	double *move_before;
	/* Everything allocated for the strings and arrays above. */
	void **owned;
	size_t n_owned;
	size_t cap_owned;
};

/* The state of one load: where messages go. */
struct ctx {
	const char *name;
	char *errbuf;
	kvs_config *cfg;
	/* Positions of the optional tables, for errors about their content
	 * as a whole (quorums larger than N, cert without key...). */
	unsigned cluster_line, cluster_col;
	int have_replication, have_w, have_r;
	unsigned w_line, w_col, r_line, r_col;
	unsigned spec_line, spec_col; /* speculative_retry_min_ms */
	unsigned grace_line, grace_col; /* tombstone_grace_s */
};

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static int fail(struct ctx *x, unsigned line, unsigned col, const char *fmt,
                ...)
{
	char msg[KVS_ERRBUF_SIZE / 2];
	va_list ap;

	if (x->errbuf != NULL) {
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		snprintf(x->errbuf, KVS_ERRBUF_SIZE, "%s:%u:%u: %s", x->name,
		         line, col, msg);
	}
	return KVS_ECONFIG;
}

static int keep(kvs_config *cfg, void *p)
{
	if (p == NULL)
		return KVS_ENOMEM;
	if (cfg->n_owned == cfg->cap_owned) {
		size_t cap = cfg->cap_owned ? cfg->cap_owned * 2 : 16;
		void **n = realloc(cfg->owned, cap * sizeof(*n));

		if (n == NULL) {
			free(p);
			return KVS_ENOMEM;
		}
		cfg->owned = n;
		cfg->cap_owned = cap;
	}
	cfg->owned[cfg->n_owned++] = p;
	return KVS_OK;
}

static const char *keep_str(kvs_config *cfg, const char *s, size_t len)
{
	char *p = malloc(len + 1);

	if (p != NULL) {
		memcpy(p, s, len);
		p[len] = '\0';
	}
	return keep(cfg, p) == KVS_OK ? p : NULL;
}

/* ------------------------------------------------------------------ */
/* Typed getters: each reports a wrong type or range at the value.      */

static int want_type(struct ctx *x, const kvs__toml_keyval *kv,
                     kvs__toml_type t, const char *what)
{
	if (kv->value->type == t)
		return KVS_OK;
	return fail(x, kv->value->line, kv->value->col,
	            "'%s' must be %s, not %s", kv->key, what,
	            kvs__toml_type_name(kv->value->type));
}

static int get_uint(struct ctx *x, const kvs__toml_keyval *kv, uint64_t min,
                    uint64_t max, uint64_t *out)
{
	int64_t v;
	int rc = want_type(x, kv, KVS_TOML_INTEGER, "an integer");

	if (rc != KVS_OK)
		return rc;
	v = kv->value->u.integer;
	if (v < 0 || (uint64_t)v < min || (uint64_t)v > max)
		return fail(x, kv->value->line, kv->value->col,
		            "'%s' must be between %llu and %llu, not %lld",
		            kv->key, (unsigned long long)min,
		            (unsigned long long)max, (long long)v);
	*out = (uint64_t)v;
	return KVS_OK;
}

static int get_unsigned(struct ctx *x, const kvs__toml_keyval *kv,
                        unsigned min, unsigned max, unsigned *out)
{
	uint64_t v = 0;
	int rc = get_uint(x, kv, min, max, &v);

	if (rc == KVS_OK)
		*out = (unsigned)v;
	return rc;
}

static int get_bool(struct ctx *x, const kvs__toml_keyval *kv, int *out)
{
	int rc = want_type(x, kv, KVS_TOML_BOOL, "true or false");

	if (rc == KVS_OK)
		*out = kv->value->u.boolean != 0;
	return rc;
}

static int get_size(struct ctx *x, const kvs__toml_keyval *kv, size_t min,
                    size_t max, size_t *out)
{
	uint64_t v = 0;
	int rc = get_uint(x, kv, min, max, &v);

	if (rc == KVS_OK)
		*out = (size_t)v;
	return rc;
}

/* A non-empty string without NUL bytes, copied into the config. */
static int get_string(struct ctx *x, const kvs__toml_keyval *kv,
                      const char **out)
{
	const kvs__toml_value *v = kv->value;
	int rc = want_type(x, kv, KVS_TOML_STRING, "a string");

	if (rc != KVS_OK)
		return rc;
	if (v->u.str.len == 0)
		return fail(x, v->line, v->col, "'%s' must not be empty",
		            kv->key);
	if (memchr(v->u.str.ptr, '\0', v->u.str.len) != NULL)
		return fail(x, v->line, v->col,
		            "'%s' must not contain NUL characters", kv->key);
	*out = keep_str(x->cfg, v->u.str.ptr, v->u.str.len);
	return *out != NULL ? KVS_OK : KVS_ENOMEM;
}

/* One of a few words. */
static int get_choice(struct ctx *x, const kvs__toml_keyval *kv,
                      const char *const *words, size_t n, size_t *out)
{
	const kvs__toml_value *v = kv->value;
	int rc = want_type(x, kv, KVS_TOML_STRING, "a string");

	if (rc != KVS_OK)
		return rc;
	for (size_t i = 0; i < n; i++)
		if (strlen(words[i]) == v->u.str.len &&
		    memcmp(words[i], v->u.str.ptr, v->u.str.len) == 0) {
			*out = i;
			return KVS_OK;
		}
	return fail(x, v->line, v->col, "'%s' must be \"%s\" or \"%s\", not \"%.*s\"",
	            kv->key, words[0], words[1],
	            (int)(v->u.str.len > 40 ? 40 : v->u.str.len), v->u.str.ptr);
}

/* An array of non-empty strings. */
static int get_string_array(struct ctx *x, const kvs__toml_keyval *kv,
                            const char *const **out, size_t *n_out)
{
	const kvs__toml_value *v = kv->value;
	const char **arr;
	int rc = want_type(x, kv, KVS_TOML_ARRAY, "an array of strings");

	if (rc != KVS_OK)
		return rc;
	if (v->u.arr.len > MAX_TOKENS)
		return fail(x, v->line, v->col, "'%s' has more than %d entries",
		            kv->key, MAX_TOKENS);
	arr = calloc(v->u.arr.len + 1, sizeof(*arr));
	rc = keep(x->cfg, arr);
	if (rc != KVS_OK)
		return rc;
	for (size_t i = 0; i < v->u.arr.len; i++) {
		const kvs__toml_value *e = v->u.arr.items[i];
		kvs__toml_keyval item = {kv->key, kv->key_len, e->line, e->col,
		                         (kvs__toml_value *)e};

		if (e->type != KVS_TOML_STRING)
			return fail(x, e->line, e->col,
			            "'%s' must be an array of strings; entry %zu is %s",
			            kv->key, i + 1, kvs__toml_type_name(e->type));
		rc = get_string(x, &item, &arr[i]);
		if (rc != KVS_OK)
			return rc;
	}
	*out = arr;
	*n_out = v->u.arr.len;
	return KVS_OK;
}

static int is_key(const kvs__toml_keyval *kv, const char *name)
{
	return strcmp(kv->key, name) == 0;
}

static int unknown_key(struct ctx *x, const kvs__toml_keyval *kv,
                       const char *where)
{
	return fail(x, kv->line, kv->col, "unknown key '%s' in %s", kv->key,
	            where);
}

static int want_table(struct ctx *x, const kvs__toml_keyval *kv)
{
	if (kv->value->type == KVS_TOML_TABLE)
		return KVS_OK;
	return fail(x, kv->line, kv->col,
	            "'%s' must be a table ([%s]), not %s", kv->key, kv->key,
	            kvs__toml_type_name(kv->value->type));
}

/* ------------------------------------------------------------------ */
/* Addresses                                                            */

static int hostname_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_';
}

int kvs__parse_address(const char *a, char *host, size_t host_cap,
                         uint16_t *port, const char **why)
{
	const char *colon, *h = a;
	size_t hlen;
	unsigned long p = 0;

	if (a[0] == '[') {
		const char *close = strchr(a, ']');

		if (close == NULL || close[1] != ':') {
			*why = "an IPv6 address is written [address]:port";
			return -1;
		}
		h = a + 1;
		hlen = (size_t)(close - h);
		colon = close + 1;
		for (size_t i = 0; i < hlen; i++)
			if (!(hostname_char(h[i]) || h[i] == ':')) {
				*why = "the IPv6 address has invalid characters";
				return -1;
			}
	} else {
		colon = strrchr(a, ':');
		if (colon == NULL) {
			*why = "expected host:port";
			return -1;
		}
		hlen = (size_t)(colon - a);
		for (size_t i = 0; i < hlen; i++)
			if (!hostname_char(a[i])) {
				*why = "the host has invalid characters";
				return -1;
			}
	}
	if (hlen == 0 || hlen >= host_cap) {
		*why = hlen == 0 ? "the host is missing" : "the host is too long";
		return -1;
	}
	if (colon[1] == '\0') {
		*why = "the port is missing";
		return -1;
	}
	for (const char *d = colon + 1; *d != '\0'; d++) {
		if (*d < '0' || *d > '9' || p > 65535) {
			*why = "the port must be a number from 1 to 65535";
			return -1;
		}
		p = p * 10 + (unsigned long)(*d - '0');
	}
	if (p == 0 || p > 65535) {
		*why = "the port must be a number from 1 to 65535";
		return -1;
	}
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	*port = (uint16_t)p;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Tables                                                               */

static int valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > MAX_NAME_LEN || s[0] == '.' || s[0] == '-')
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!hostname_char(s[i]))
			return 0;
	return 1;
}

static int load_shard(struct ctx *x, const kvs__toml_value *t,
                      kvs_shard_config *sh)
{
	int have_name = 0, have_idx = 0, have_addr = 0, rc = KVS_OK;
	char host[256];

	sh->weight = 1.0;
	sh->line = t->line;
	for (size_t i = 0; i < t->u.tab.len && rc == KVS_OK; i++) {
		const kvs__toml_keyval *kv = &t->u.tab.items[i];
		const kvs__toml_value *v = kv->value;

		if (is_key(kv, "name")) {
			rc = get_string(x, kv, &sh->name);
			if (rc == KVS_OK && !valid_name(sh->name))
				rc = fail(x, v->line, v->col,
				          "shard name \"%s\" must be 1 to %d of "
				          "A-Z a-z 0-9 . _ - and not start with "
				          "'.' or '-'",
				          sh->name, MAX_NAME_LEN);
			have_name = 1;
		} else if (is_key(kv, "idx")) {
			uint64_t idx = 0;

			rc = get_uint(x, kv, 0, INT32_MAX, &idx);
			sh->idx = (uint32_t)idx;
			have_idx = 1;
		} else if (is_key(kv, "address")) {
			const char *why;

			rc = get_string(x, kv, &sh->address);
			if (rc == KVS_OK &&
			    kvs__parse_address(sh->address, host, sizeof(host),
			                  &sh->port, &why) != 0)
				rc = fail(x, v->line, v->col,
				          "bad address \"%s\": %s", sh->address,
				          why);
			if (rc == KVS_OK) {
				sh->host = keep_str(x->cfg, host, strlen(host));
				if (sh->host == NULL)
					rc = KVS_ENOMEM;
			}
			have_addr = 1;
		} else if (is_key(kv, "weight")) {
			if (v->type == KVS_TOML_INTEGER)
				sh->weight = (double)v->u.integer;
			else if (v->type == KVS_TOML_FLOAT)
				sh->weight = v->u.flt;
			else
				return fail(x, v->line, v->col,
				            "'weight' must be a number, not %s",
				            kvs__toml_type_name(v->type));
			if (!(sh->weight >= 0.0 &&
			      sh->weight <= KVS_RING_MAX_WEIGHT))
				return fail(x, v->line, v->col,
				            "'weight' must be between 0 and %g",
				            KVS_RING_MAX_WEIGHT);
		} else {
			rc = unknown_key(x, kv, "[[shards]]");
		}
	}
	if (rc != KVS_OK)
		return rc;
	if (!have_name || !have_idx || !have_addr)
		return fail(x, t->line, t->col, "shard is missing '%s'",
		            !have_name ? "name" : !have_idx ? "idx" : "address");
	return KVS_OK;
}

static int shard_idx_cmp(const void *a, const void *b)
{
	const kvs_shard_config *x = a, *y = b;

	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int load_shards(struct ctx *x, const kvs__toml_keyval *kv)
{
	const kvs__toml_value *arr = kv->value;
	kvs_config *cfg = x->cfg;
	int rc;

	if (arr->type != KVS_TOML_ARRAY)
		return fail(x, kv->line, kv->col,
		            "'shards' must be an array of tables ([[shards]]), "
		            "not %s",
		            kvs__toml_type_name(arr->type));
	if (arr->u.arr.len == 0)
		return fail(x, kv->line, kv->col, "'shards' is empty");
	if (arr->u.arr.len > MAX_SHARDS)
		return fail(x, kv->line, kv->col, "more than %d shards",
		            MAX_SHARDS);
	cfg->shards = calloc(arr->u.arr.len, sizeof(*cfg->shards));
	if (cfg->shards == NULL)
		return KVS_ENOMEM;
	for (size_t i = 0; i < arr->u.arr.len; i++) {
		const kvs__toml_value *t = arr->u.arr.items[i];
		kvs_shard_config *sh = &cfg->shards[i];

		if (t->type != KVS_TOML_TABLE)
			return fail(x, t->line, t->col,
			            "each entry of 'shards' must be a table, "
			            "not %s",
			            kvs__toml_type_name(t->type));
		rc = load_shard(x, t, sh);
		if (rc != KVS_OK)
			return rc;
		cfg->n_shards = i + 1;
		for (size_t j = 0; j < i; j++) {
			const kvs_shard_config *o = &cfg->shards[j];

			if (strcmp(o->name, sh->name) == 0)
				return fail(x, t->line, t->col,
				            "duplicate shard name \"%s\" (first "
				            "defined on line %u)",
				            sh->name, o->line);
			if (o->idx == sh->idx)
				return fail(x, t->line, t->col,
				            "duplicate shard idx %u (shard \"%s\" "
				            "on line %u has it)",
				            (unsigned)sh->idx, o->name, o->line);
			if (o->port == sh->port &&
			    strcasecmp(o->host, sh->host) == 0)
				return fail(x, t->line, t->col,
				            "duplicate address \"%s\" (shard "
				            "\"%s\" on line %u has it)",
				            sh->address, o->name, o->line);
		}
	}
	/* The join order of placement (docs/ring.md). */
	qsort(cfg->shards, cfg->n_shards, sizeof(*cfg->shards), shard_idx_cmp);
	return KVS_OK;
}

static int load_cluster(struct ctx *x, const kvs__toml_value *t)
{
	static const char *const routes[] = {"proxy", "redirect"};
	kvs_cluster_config *c = &x->cfg->c;
	int rc = KVS_OK;

	x->cluster_line = t->line;
	x->cluster_col = t->col;
	for (size_t i = 0; i < t->u.tab.len && rc == KVS_OK; i++) {
		const kvs__toml_keyval *kv = &t->u.tab.items[i];

		if (is_key(kv, "name")) {
			rc = get_string(x, kv, &c->name);
			if (rc == KVS_OK && !valid_name(c->name))
				rc = fail(x, kv->value->line, kv->value->col,
				          "cluster name \"%s\" must be 1 to %d "
				          "of A-Z a-z 0-9 . _ - and not start "
				          "with '.' or '-'",
				          c->name, MAX_NAME_LEN);
		} else if (is_key(kv, "replication")) {
			rc = get_unsigned(x, kv, 1, KVS_RING_MAX_OWNERS,
			                  &c->replication);
			x->have_replication = 1;
		} else if (is_key(kv, "write_quorum")) {
			rc = get_unsigned(x, kv, 1, KVS_RING_MAX_OWNERS,
			                  &c->write_quorum);
			x->have_w = 1;
			x->w_line = kv->value->line;
			x->w_col = kv->value->col;
		} else if (is_key(kv, "read_quorum")) {
			rc = get_unsigned(x, kv, 1, KVS_RING_MAX_OWNERS,
			                  &c->read_quorum);
			x->have_r = 1;
			x->r_line = kv->value->line;
			x->r_col = kv->value->col;
		} else if (is_key(kv, "vnodes")) {
			rc = get_unsigned(x, kv, 1, KVS_RING_MAX_VNODES,
			                  &c->vnodes);
		} else if (is_key(kv, "routing")) {
			size_t r = 0;

			rc = get_choice(x, kv, routes, 2, &r);
			c->routing = (kvs_routing)r;
		} else if (is_key(kv, "data_dir")) {
			rc = get_string(x, kv, &c->data_dir);
		} else if (is_key(kv, "request_timeout_ms")) {
			rc = get_unsigned(x, kv, 1, MAX_TIMEOUT_MS,
			                  &c->request_timeout_ms);
		} else if (is_key(kv, "connect_timeout_ms")) {
			rc = get_unsigned(x, kv, 1, MAX_CONNECT_TIMEOUT_MS,
			                  &c->connect_timeout_ms);
		} else if (is_key(kv, "speculative_retry_min_ms")) {
			rc = get_unsigned(x, kv, 1, MAX_TIMEOUT_MS,
			                  &c->speculative_retry_min_ms);
			x->spec_line = kv->value->line;
			x->spec_col = kv->value->col;
		} else if (is_key(kv, "speculative_retry_max_ms")) {
			rc = get_unsigned(x, kv, 0, MAX_TIMEOUT_MS,
			                  &c->speculative_retry_max_ms);
		} else if (is_key(kv, "max_clock_skew_ms")) {
			rc = get_unsigned(x, kv, 1, MAX_CLOCK_SKEW_MS,
			                  &c->max_clock_skew_ms);
		} else if (is_key(kv, "hint_max_age_s")) {
			rc = get_unsigned(x, kv, 1, MAX_HINT_AGE_S,
			                  &c->hint_max_age_s);
		} else if (is_key(kv, "anti_entropy_interval_s")) {
			rc = get_unsigned(x, kv, 0, MAX_HINT_AGE_S,
			                  &c->anti_entropy_interval_s);
		} else if (is_key(kv, "tombstone_grace_s")) {
			rc = get_unsigned(x, kv, 0, MAX_TOMBSTONE_GRACE_S,
			                  &c->tombstone_grace_s);
			x->grace_line = kv->value->line;
			x->grace_col = kv->value->col;
		} else if (is_key(kv, "hint_max_bytes")) {
			rc = get_size(x, kv, 0, SIZE_MAX / 2, &c->hint_max_bytes);
		} else if (is_key(kv, "peer_links")) {
			rc = get_bool(x, kv, &c->peer_links);
		} else if (is_key(kv, "hint_rate_bytes")) {
			rc = get_size(x, kv, 1024, SIZE_MAX / 2,
			              &c->hint_rate_bytes);
		} else {
			rc = unknown_key(x, kv, "[cluster]");
		}
	}
	return rc;
}

static int load_storage(struct ctx *x, const kvs__toml_value *t)
{
	static const char *const modes[] = {"full", "relaxed"};
	kvs_cluster_config *c = &x->cfg->c;
	int rc = KVS_OK;

	for (size_t i = 0; i < t->u.tab.len && rc == KVS_OK; i++) {
		const kvs__toml_keyval *kv = &t->u.tab.items[i];

		if (is_key(kv, "sync")) {
			size_t m = 0;

			rc = get_choice(x, kv, modes, 2, &m);
			c->sync = (kvs_sync_mode)m;
		} else if (is_key(kv, "map_size")) {
			rc = get_size(x, kv, MIN_MAP_SIZE, SIZE_MAX / 2,
			              &c->map_size);
		} else if (is_key(kv, "max_map_size")) {
			rc = get_size(x, kv, 0, SIZE_MAX / 2, &c->max_map_size);
			if (rc == KVS_OK && c->max_map_size != 0 &&
			    c->max_map_size < MIN_MAP_SIZE)
				rc = fail(x, kv->value->line, kv->value->col,
				          "'max_map_size' must be 0 (no ceiling) "
				          "or at least %zu",
				          MIN_MAP_SIZE);
		} else {
			rc = unknown_key(x, kv, "[storage]");
		}
	}
	if (rc == KVS_OK && c->max_map_size != 0 && c->map_size != 0 &&
	    c->max_map_size < c->map_size)
		rc = fail(x, t->line, t->col,
		          "'max_map_size' is smaller than 'map_size'");
	return rc;
}

/* The least max_answer_bytes may be: any one value, in base64, fits. */
static size_t min_answer_bytes(size_t max_value_bytes)
{
	return (max_value_bytes + 2) / 3 * 4 + ANSWER_OVERHEAD_BYTES;
}

static int load_limits(struct ctx *x, const kvs__toml_value *t)
{
	kvs_cluster_config *c = &x->cfg->c;
	const kvs__toml_keyval *answer = NULL, *buffered = NULL;
	int rc = KVS_OK;

	for (size_t i = 0; i < t->u.tab.len && rc == KVS_OK; i++) {
		const kvs__toml_keyval *kv = &t->u.tab.items[i];

		if (is_key(kv, "max_key_bytes"))
			rc = get_size(x, kv, 1, KVS_DEFAULT_MAX_KEY_BYTES,
			              &c->max_key_bytes);
		else if (is_key(kv, "max_value_bytes"))
			rc = get_size(x, kv, 0, KVS_STORE_MAX_VALUE_SIZE,
			              &c->max_value_bytes);
		else if (is_key(kv, "max_answer_bytes")) {
			answer = kv;
			rc = get_size(x, kv, 1, SIZE_MAX / 2,
			              &c->max_answer_bytes);
		}
		else if (is_key(kv, "max_connections_per_client"))
			rc = get_unsigned(x, kv, 0, MAX_CONNECTIONS,
			                  &c->max_connections_per_client);
		else if (is_key(kv, "max_connections"))
			rc = get_unsigned(x, kv, 1, MAX_CONNECTIONS,
			                  &c->max_connections);
		else if (is_key(kv, "idle_timeout_s"))
			rc = get_unsigned(x, kv, 1, MAX_IDLE_TIMEOUT_S,
			                  &c->idle_timeout_s);
		else if (is_key(kv, "header_timeout_s"))
			rc = get_unsigned(x, kv, 1, MAX_IDLE_TIMEOUT_S,
			                  &c->header_timeout_s);
		else if (is_key(kv, "body_timeout_s"))
			rc = get_unsigned(x, kv, 1, MAX_IDLE_TIMEOUT_S,
			                  &c->body_timeout_s);
		else if (is_key(kv, "max_buffered_bytes")) {
			buffered = kv;
			rc = get_size(x, kv, 1, SIZE_MAX / 2,
			              &c->max_buffered_bytes);
		}
		else if (is_key(kv, "max_batch_ops"))
			rc = get_unsigned(x, kv, 1, MAX_BATCH_OPS,
			                  &c->max_batch_ops);
		else if (is_key(kv, "max_scan_limit"))
			rc = get_unsigned(x, kv, 1, MAX_SCAN_LIMIT,
			                  &c->max_scan_limit);
		else
			rc = unknown_key(x, kv, "[limits]");
	}
	/* A scan page or a batch answer always has room for one value:
	 * the default grows with max_value_bytes, a cap given must. */
	if (rc == KVS_OK && answer == NULL &&
	    c->max_answer_bytes < min_answer_bytes(c->max_value_bytes))
		c->max_answer_bytes = min_answer_bytes(c->max_value_bytes);
	if (rc == KVS_OK && answer != NULL &&
	    c->max_answer_bytes < min_answer_bytes(c->max_value_bytes))
		rc = fail(x, answer->value->line, answer->value->col,
		          "'max_answer_bytes' %zu is too small: an answer must "
		          "hold one value of 'max_value_bytes' %zu in base64 "
		          "with its key, at least %zu bytes",
		          c->max_answer_bytes, c->max_value_bytes,
		          min_answer_bytes(c->max_value_bytes));
	/* Bodies held at once have room for a few of the largest values
	 * by default, and for one at least. */
	if (rc == KVS_OK && buffered == NULL &&
	    c->max_buffered_bytes / DEFAULT_BUFFERED_VALUES <
	            c->max_value_bytes)
		c->max_buffered_bytes = c->max_value_bytes *
		                        DEFAULT_BUFFERED_VALUES;
	if (rc == KVS_OK && buffered != NULL &&
	    c->max_buffered_bytes < c->max_value_bytes)
		rc = fail(x, buffered->value->line, buffered->value->col,
		          "'max_buffered_bytes' %zu is smaller than "
		          "'max_value_bytes' %zu: a value that large could "
		          "never be received",
		          c->max_buffered_bytes, c->max_value_bytes);
	return rc;
}

static int load_server(struct ctx *x, const kvs__toml_value *t)
{
	int rc = KVS_OK;

	for (size_t i = 0; i < t->u.tab.len && rc == KVS_OK; i++) {
		const kvs__toml_keyval *kv = &t->u.tab.items[i];

		if (is_key(kv, "threads"))
			rc = get_unsigned(x, kv, 0, MAX_THREADS,
			                  &x->cfg->c.threads);
		else
			rc = unknown_key(x, kv, "[server]");
	}
	return rc;
}

static int load_auth(struct ctx *x, const kvs__toml_value *t)
{
	kvs_cluster_config *c = &x->cfg->c;
	int rc = KVS_OK;

	for (size_t i = 0; i < t->u.tab.len && rc == KVS_OK; i++) {
		const kvs__toml_keyval *kv = &t->u.tab.items[i];

		if (is_key(kv, "client_tokens"))
			rc = get_string_array(x, kv, &c->client_tokens,
			                      &c->n_client_tokens);
		else if (is_key(kv, "admin_tokens"))
			rc = get_string_array(x, kv, &c->admin_tokens,
			                      &c->n_admin_tokens);
		else if (is_key(kv, "read_tokens"))
			rc = get_string_array(x, kv, &c->read_tokens,
			                      &c->n_read_tokens);
		else if (is_key(kv, "cluster_secret")) {
			rc = get_string(x, kv, &c->cluster_secret);
			/* It travels as a header value: no control bytes or
			 * spaces, which could end or split the header. */
			for (const char *p = c->cluster_secret;
			     rc == KVS_OK && p != NULL && *p != '\0'; p++)
				if ((unsigned char)*p <= 0x20 ||
				    (unsigned char)*p == 0x7f)
					rc = fail(x, kv->value->line,
					          kv->value->col,
					          "'cluster_secret' may not hold "
					          "spaces or control characters");
		} else
			rc = unknown_key(x, kv, "[auth]");
	}
	/* Peers trust each other through the secret: with client tokens but
	 * no secret, anyone could use the peer protocol. */
	if (rc == KVS_OK &&
	    c->n_client_tokens + c->n_read_tokens + c->n_admin_tokens > 0 &&
	    c->cluster_secret == NULL)
		rc = fail(x, t->line, t->col,
		          "[auth] with tokens also needs 'cluster_secret' (the "
		          "shards' shared secret for peer requests)");
	return rc;
}

/* A file the server reads (a certificate or a key): there now, and a
 * certificate readable, so that a typo is reported here, with its place,
 * not at the first connection. A key need not be readable by everyone
 * who loads the file (the client and CLI do, for the shards). */
static int get_readable_file(struct ctx *x, const kvs__toml_keyval *kv,
                             const char **out)
{
	int rc = get_string(x, kv, out);
	int is_key_file = strstr(kv->key, "key") != NULL;

	if (rc == KVS_OK && access(*out, is_key_file ? F_OK : R_OK) != 0)
		rc = fail(x, kv->value->line, kv->value->col,
		          "'%s': cannot read \"%s\": %s", kv->key, *out,
		          strerror(errno));
	return rc;
}

/*
 * [tls]: cert and key (the node's HTTPS identity, PEM) go together; ca
 * verifies the other nodes (absent: the system's trusted CAs); peer_cert
 * and peer_key (default: cert and key) are what a node shows the others
 * when mutual = true, and then a request whose client certificate ca
 * verifies is a peer's. Anything incomplete is an error: an operator who
 * asks for TLS must never get plain HTTP.
 */
static int load_tls(struct ctx *x, const kvs__toml_value *t)
{
	kvs_cluster_config *c = &x->cfg->c;
	const kvs__toml_keyval *mutual = NULL;
	int rc = KVS_OK;

	for (size_t i = 0; i < t->u.tab.len && rc == KVS_OK; i++) {
		const kvs__toml_keyval *kv = &t->u.tab.items[i];

		if (is_key(kv, "cert"))
			rc = get_readable_file(x, kv, &c->tls_cert);
		else if (is_key(kv, "key"))
			rc = get_readable_file(x, kv, &c->tls_key);
		else if (is_key(kv, "ca"))
			rc = get_readable_file(x, kv, &c->tls_ca);
		else if (is_key(kv, "peer_cert"))
			rc = get_readable_file(x, kv, &c->tls_peer_cert);
		else if (is_key(kv, "peer_key"))
			rc = get_readable_file(x, kv, &c->tls_peer_key);
		else if (is_key(kv, "mutual")) {
			mutual = kv;
			rc = get_bool(x, kv, &c->tls_mutual);
		} else
			rc = unknown_key(x, kv, "[tls]");
	}
	if (rc != KVS_OK)
		return rc;
	if (c->tls_cert == NULL || c->tls_key == NULL)
		return fail(x, t->line, t->col,
		            "[tls] needs both 'cert' and 'key' (the node's "
		            "certificate and private key, PEM); without [tls] "
		            "kvshard serves plain HTTP");
	if ((c->tls_peer_cert == NULL) != (c->tls_peer_key == NULL))
		return fail(x, t->line, t->col,
		            "[tls] 'peer_cert' and 'peer_key' go together");
	if (c->tls_peer_cert != NULL && !c->tls_mutual)
		return fail(x, t->line, t->col,
		            "[tls] 'peer_cert' is only used with mutual = true");
	if (c->tls_mutual && c->tls_ca == NULL)
		return fail(x, mutual->value->line, mutual->value->col,
		            "mutual TLS needs 'ca': the authority whose "
		            "certificates make a client a peer");
	return KVS_OK;
}

/* A prefix of keys in etcd: "/" then names separated by single '/'. */
static int valid_prefix(const char *p)
{
	size_t n = strlen(p);

	if (n < 2 || n > MAX_PREFIX_LEN || p[0] != '/' || p[n - 1] == '/')
		return 0;
	for (size_t i = 1; i < n; i++)
		if (p[i] == '/' ? p[i - 1] == '/' : !hostname_char(p[i]))
			return 0;
	return 1;
}

static int load_coordination(struct ctx *x, const kvs__toml_value *t)
{
	kvs_cluster_config *c = &x->cfg->c;
	int have_etcd = 0, rc = KVS_OK;

	for (size_t i = 0; i < t->u.tab.len && rc == KVS_OK; i++) {
		const kvs__toml_keyval *kv = &t->u.tab.items[i];
		const kvs__toml_value *v = kv->value;

		if (is_key(kv, "etcd")) {
			char host[256];
			uint16_t port;

			have_etcd = 1;
			rc = get_string_array(x, kv, &c->etcd_endpoints,
			                      &c->n_etcd_endpoints);
			if (rc == KVS_OK && (c->n_etcd_endpoints == 0 ||
			                     c->n_etcd_endpoints >
			                             MAX_ETCD_ENDPOINTS))
				rc = fail(x, v->line, v->col,
				          "'etcd' must list 1 to %d endpoints "
				          "(\"host:port\")",
				          MAX_ETCD_ENDPOINTS);
			for (size_t e = 0; rc == KVS_OK && e < c->n_etcd_endpoints;
			     e++) {
				const char *why;

				if (kvs__parse_address(c->etcd_endpoints[e],
				                       host, sizeof(host), &port,
				                       &why) != 0)
					rc = fail(x, v->u.arr.items[e]->line,
					          v->u.arr.items[e]->col,
					          "bad etcd endpoint \"%s\": %s",
					          c->etcd_endpoints[e], why);
			}
		} else if (is_key(kv, "prefix")) {
			rc = get_string(x, kv, &c->coordination_prefix);
			if (rc == KVS_OK && !valid_prefix(c->coordination_prefix))
				rc = fail(x, v->line, v->col,
				          "prefix \"%s\" must start with '/', "
				          "not end with one, and hold names of "
				          "A-Z a-z 0-9 . _ - separated by single "
				          "'/' (at most %d bytes)",
				          c->coordination_prefix, MAX_PREFIX_LEN);
		} else if (is_key(kv, "lease_ttl_s")) {
			rc = get_unsigned(x, kv, MIN_LEASE_TTL_S, MAX_LEASE_TTL_S,
			                  &c->lease_ttl_s);
		} else if (is_key(kv, "move_grace_s")) {
			rc = get_unsigned(x, kv, 0, 86400, &c->move_grace_s);
		} else if (is_key(kv, "move_rate_bytes")) {
			rc = get_size(x, kv, 0, SIZE_MAX / 2, &c->move_rate_bytes);
		} else {
			rc = unknown_key(x, kv, "[coordination]");
		}
	}
	if (rc == KVS_OK && !have_etcd)
		rc = fail(x, t->line, t->col,
		          "[coordination] needs 'etcd', the list of etcd's "
		          "client endpoints (\"host:port\")");
	return rc;
}

/* Checks that involve several keys, and defaults that depend on others. */
static int finish(struct ctx *x)
{
	kvs_cluster_config *c = &x->cfg->c;
	unsigned n_with_points = 0;

	for (size_t i = 0; i < x->cfg->n_shards; i++)
		if (x->cfg->shards[i].weight > 0.0)
			n_with_points++;
	if (n_with_points == 0)
		return fail(x, x->cfg->shards[0].line, 1,
		            "every shard has weight 0: nothing could store a key");
	if (!x->have_replication)
		c->replication = KVS_DEFAULT_REPLICATION;
	if (c->replication > n_with_points)
		c->replication = n_with_points;
	if (!x->have_w)
		c->write_quorum = c->replication / 2 + 1;
	else if (c->write_quorum > c->replication)
		return fail(x, x->w_line, x->w_col,
		            "'write_quorum' %u is larger than the replication "
		            "factor %u (capped at the number of shards that "
		            "hold data)",
		            c->write_quorum, c->replication);
	/* A hint older than the grace period could bring back a value its
	 * purged tombstone hid (Cassandra's rule: hints expire first). */
	if (c->tombstone_grace_s != 0 && c->hint_max_bytes != 0 &&
	    c->tombstone_grace_s <= c->hint_max_age_s)
		return fail(x, x->grace_line ? x->grace_line : x->cluster_line,
		            x->grace_line ? x->grace_col : x->cluster_col,
		            "'tombstone_grace_s' %u must be longer than "
		            "'hint_max_age_s' %u (or hints off: hint_max_bytes "
		            "= 0), or a late hint could bring back a deleted "
		            "value",
		            c->tombstone_grace_s, c->hint_max_age_s);
	if (c->speculative_retry_max_ms != 0 &&
	    c->speculative_retry_min_ms > c->speculative_retry_max_ms)
		return fail(x, x->spec_line, x->spec_col,
		            "'speculative_retry_min_ms' %u is larger than "
		            "'speculative_retry_max_ms' %u",
		            c->speculative_retry_min_ms,
		            c->speculative_retry_max_ms);
	if (!x->have_r)
		c->read_quorum = c->replication / 2 + 1;
	else if (c->read_quorum > c->replication)
		return fail(x, x->r_line, x->r_col,
		            "'read_quorum' %u is larger than the replication "
		            "factor %u (capped at the number of shards that "
		            "hold data)",
		            c->read_quorum, c->replication);
	if (c->n_etcd_endpoints > 0 && c->coordination_prefix == NULL) {
		char prefix[MAX_NAME_LEN + 16];
		int len = snprintf(prefix, sizeof(prefix), "/kvshard/%s",
		                   c->name);

		c->coordination_prefix = keep_str(x->cfg, prefix, (size_t)len);
		if (c->coordination_prefix == NULL)
			return KVS_ENOMEM;
	}
	return KVS_OK;
}

static void set_defaults(kvs_cluster_config *c)
{
	c->vnodes = KVS_RING_DEFAULT_VNODES;
	c->routing = KVS_ROUTING_PROXY;
	c->data_dir = KVS_DEFAULT_DATA_DIR;
	c->request_timeout_ms = KVS_DEFAULT_REQUEST_TIMEOUT_MS;
	c->connect_timeout_ms = KVS_DEFAULT_CONNECT_TIMEOUT_MS;
	c->speculative_retry_min_ms = KVS_DEFAULT_SPECULATIVE_RETRY_MIN_MS;
	c->speculative_retry_max_ms = KVS_DEFAULT_SPECULATIVE_RETRY_MAX_MS;
	c->max_clock_skew_ms = KVS_DEFAULT_MAX_CLOCK_SKEW_MS;
	c->hint_max_age_s = KVS_DEFAULT_HINT_MAX_AGE_S;
	c->hint_max_bytes = KVS_DEFAULT_HINT_MAX_BYTES;
	c->hint_rate_bytes = KVS_DEFAULT_HINT_RATE_BYTES;
	c->anti_entropy_interval_s = KVS_DEFAULT_ANTI_ENTROPY_INTERVAL_S;
	c->tombstone_grace_s = KVS_DEFAULT_TOMBSTONE_GRACE_S;
	c->name = KVS_DEFAULT_CLUSTER_NAME;
	c->lease_ttl_s = KVS_DEFAULT_LEASE_TTL_S;
	c->move_grace_s = KVS_DEFAULT_MOVE_GRACE_S;
	c->peer_links = 1;
	c->sync = KVS_SYNC_FULL;
	c->max_key_bytes = KVS_DEFAULT_MAX_KEY_BYTES;
	c->max_value_bytes = KVS_DEFAULT_MAX_VALUE_BYTES;
	c->max_connections = KVS_DEFAULT_MAX_CONNECTIONS;
	c->max_connections_per_client = KVS_DEFAULT_MAX_CONNECTIONS_PER_CLIENT;
	c->idle_timeout_s = KVS_DEFAULT_IDLE_TIMEOUT_S;
	c->header_timeout_s = KVS_DEFAULT_HEADER_TIMEOUT_S;
	c->body_timeout_s = KVS_DEFAULT_BODY_TIMEOUT_S;
	c->max_buffered_bytes = KVS_DEFAULT_MAX_BUFFERED_BYTES;
	c->max_batch_ops = KVS_DEFAULT_MAX_BATCH_OPS;
	c->max_scan_limit = KVS_DEFAULT_MAX_SCAN_LIMIT;
	c->max_answer_bytes = KVS_DEFAULT_MAX_ANSWER_BYTES;
}

static int load_root(struct ctx *x, const kvs__toml_value *root)
{
	const kvs__toml_keyval *shards = NULL;
	int rc = KVS_OK;

	for (size_t i = 0; i < root->u.tab.len && rc == KVS_OK; i++) {
		const kvs__toml_keyval *kv = &root->u.tab.items[i];

		if (is_key(kv, "shards")) {
			shards = kv;
			rc = load_shards(x, kv);
			continue;
		}
		if (!is_key(kv, "cluster") && !is_key(kv, "storage") &&
		    !is_key(kv, "limits") && !is_key(kv, "server") &&
		    !is_key(kv, "auth") && !is_key(kv, "coordination") &&
		    !is_key(kv, "tls")) {
			rc = fail(x, kv->line, kv->col,
			          "unknown key '%s' (expected [[shards]], "
			          "[cluster], [storage], [limits], [server], "
			          "[auth], [coordination] or [tls])",
			          kv->key);
			break;
		}
		rc = want_table(x, kv);
		if (rc != KVS_OK)
			break;
		if (is_key(kv, "cluster"))
			rc = load_cluster(x, kv->value);
		else if (is_key(kv, "storage"))
			rc = load_storage(x, kv->value);
		else if (is_key(kv, "limits"))
			rc = load_limits(x, kv->value);
		else if (is_key(kv, "server"))
			rc = load_server(x, kv->value);
		else if (is_key(kv, "auth"))
			rc = load_auth(x, kv->value);
		else if (is_key(kv, "tls"))
			rc = load_tls(x, kv->value);
		else
			rc = load_coordination(x, kv->value);
	}
	if (rc != KVS_OK)
		return rc;
	if (shards == NULL)
		return fail(x, 1, 1,
		            "no shards: add at least one [[shards]] table with "
		            "name, idx and address");
	return finish(x);
}

int kvs__config_adopt_topology(kvs_config *cfg, kvs_config *from)
{
	void **owned;

	if (cfg->n_owned + from->n_owned > cfg->cap_owned) {
		size_t cap = cfg->n_owned + from->n_owned;

		owned = realloc(cfg->owned, cap * sizeof(*owned));
		if (owned == NULL)
			return KVS_ENOMEM;
		cfg->owned = owned;
		cfg->cap_owned = cap;
	}
	/* from's strings now live as long as cfg. */
	memcpy(cfg->owned + cfg->n_owned, from->owned,
	       from->n_owned * sizeof(*from->owned));
	cfg->n_owned += from->n_owned;
	from->n_owned = 0;
	free(cfg->shards);
	cfg->shards = from->shards;
	cfg->n_shards = from->n_shards;
	from->shards = NULL;
	from->n_shards = 0;
	cfg->c.replication = from->c.replication;
	cfg->c.write_quorum = from->c.write_quorum;
	cfg->c.read_quorum = from->c.read_quorum;
	free(cfg->move_before);
	cfg->move_phase = from->move_phase;
	cfg->move_paused = from->move_paused;
	cfg->move_before = from->move_before;
	from->move_before = NULL;
	kvs_config_free(from);
	return KVS_OK;
}

int kvs__config_set_move(kvs_config *cfg, int phase, const double *before)
{
	double *b = NULL;

	if (phase != KVS__MOVE_NONE) {
		b = malloc((cfg->n_shards + 1) * sizeof(*b));
		if (b == NULL)
			return KVS_ENOMEM;
		memcpy(b, before, cfg->n_shards * sizeof(*b));
	}
	free(cfg->move_before);
	cfg->move_before = b;
	cfg->move_phase = phase;
	return KVS_OK;
}

void kvs__config_set_move_paused(kvs_config *cfg, int paused)
{
	cfg->move_paused = paused;
}

int kvs__config_move_paused(const kvs_config *cfg)
{
	return cfg->move_paused;
}

int kvs__config_move(const kvs_config *cfg, const double **before)
{
	if (before != NULL)
		*before = cfg->move_before;
	return cfg->move_phase;
}

void kvs_config_free(kvs_config *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < cfg->n_owned; i++)
		free(cfg->owned[i]);
	free(cfg->owned);
	free(cfg->shards);
	free(cfg->move_before);
	free(cfg);
}

int kvs_config_parse(kvs_config **out, const char *text, size_t len,
                     const char *name, char *errbuf)
{
	struct ctx x;
	kvs__toml_value *root = NULL;
	kvs__toml_error terr;
	kvs_config *cfg;
	int rc;

	if (errbuf != NULL)
		errbuf[0] = '\0';
	if (out == NULL || (text == NULL && len > 0))
		return KVS_EINVAL;
	*out = NULL;
	memset(&x, 0, sizeof(x));
	x.name = name != NULL ? name : "<config>";
	x.errbuf = errbuf;
	cfg = calloc(1, sizeof(*cfg));
	if (cfg == NULL)
		return KVS_ENOMEM;
	x.cfg = cfg;
	set_defaults(&cfg->c);
	cfg->c.path = keep_str(cfg, x.name, strlen(x.name));
	if (cfg->c.path == NULL) {
		rc = KVS_ENOMEM;
		goto out;
	}
	rc = kvs__toml_parse(text != NULL ? text : "", len, &root, &terr);
	if (rc == -2) {
		rc = KVS_ENOMEM;
		goto out;
	}
	if (rc != 0) {
		rc = fail(&x, terr.line, terr.col, "%s", terr.msg);
		goto out;
	}
	rc = load_root(&x, root);
out:
	kvs__toml_free(root);
	if (rc != KVS_OK) {
		kvs_config_free(cfg);
		return rc;
	}
	*out = cfg;
	return KVS_OK;
}

int kvs_config_load(kvs_config **out, const char *path, char *errbuf)
{
	char *buf = NULL;
	size_t len = 0;
	int rc;

	if (errbuf != NULL)
		errbuf[0] = '\0';
	if (out == NULL || path == NULL)
		return KVS_EINVAL;
	*out = NULL;
	rc = kvs__read_file(path, MAX_CONFIG_BYTES, &buf, &len);
	if (rc != KVS_OK) {
		if (errbuf != NULL && rc == KVS_ERANGE)
			snprintf(errbuf, KVS_ERRBUF_SIZE,
			         "%s: file is larger than %zu bytes", path,
			         MAX_CONFIG_BYTES);
		else if (errbuf != NULL && rc == KVS_EIO)
			snprintf(errbuf, KVS_ERRBUF_SIZE, "%s: %s", path,
			         strerror(errno));
		return rc == KVS_ERANGE ? KVS_ECONFIG : rc;
	}
	rc = kvs_config_parse(out, buf, len, path, errbuf);
	free(buf);
	return rc;
}

const kvs_cluster_config *kvs_config_cluster(const kvs_config *cfg)
{
	return cfg != NULL ? &cfg->c : NULL;
}

size_t kvs_config_shard_count(const kvs_config *cfg)
{
	return cfg != NULL ? cfg->n_shards : 0;
}

const kvs_shard_config *kvs_config_shard(const kvs_config *cfg, size_t i)
{
	if (cfg == NULL || i >= cfg->n_shards)
		return NULL;
	return &cfg->shards[i];
}

const kvs_shard_config *kvs_config_find_shard(const kvs_config *cfg,
                                              const char *name)
{
	if (cfg == NULL || name == NULL)
		return NULL;
	for (size_t i = 0; i < cfg->n_shards; i++)
		if (strcmp(cfg->shards[i].name, name) == 0)
			return &cfg->shards[i];
	return NULL;
}
