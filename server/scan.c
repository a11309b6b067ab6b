/*
 * scan.c - GET /v1/kv?prefix=P&start_after=K&limit=N&values=1&r=R: one
 * page of the cluster's keys, merged by the node (lib/cscan.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

struct scan {
	kvs__scan_req req;
	kvs__scan_result res;
	char *prefix;
	char *start;
	kvs__buf out;
	size_t shown;
};

static void scan_free(void *ctx)
{
	struct scan *c = ctx;

	kvs__scan_result_clear(&c->res);
	kvs__buf_free(&c->out);
	free(c->prefix);
	free(c->start);
	free(c);
}

static int emit(void *ud, const kvs_record *rec)
{
	struct scan *c = ud;
	char stamp[KVS_STAMP_STRLEN];

	kvs_stamp_format(&rec->stamp, stamp);
	kvs__buf_add(&c->out, c->shown ? ",{" : "{", c->shown ? 2 : 1);
	kvs__json_bytes(&c->out, KVS_F_KEY, rec->key, rec->key_len);
	kvs__buf_addf(&c->out, ",\"%s\":\"%s\"", KVS_F_VERSION, stamp);
	if (c->req.values) {
		kvs__buf_add(&c->out, ",", 1);
		kvs__json_b64(&c->out, KVS_F_VALUE, rec->value, rec->value_len);
	}
	kvs__buf_add(&c->out, "}", 1);
	c->shown++;
	return 0;
}

static void render(struct req *r)
{
	struct scan *c = r->ctx;
	const void *next;
	size_t next_len;
	int rc = c->res.rc;

	if (rc == KVS_EUNAVAIL) {
		reply_error(r, rc,
		            "not enough shards answered to read %u replicas of "
		            "every key (%s did not)",
		            c->req.r != 0 ? c->req.r : r->srv->cc->read_quorum,
		            kvs_config_shard(r->srv->cfg, c->res.failed)->name);
		return;
	}
	if (rc != KVS_OK) {
		reply_fail(r, rc, "scanning");
		return;
	}
	kvs__buf_addf(&c->out, "{\"%s\":[", KVS_F_KEYS);
	rc = kvs__scan_result_merge(&c->res, emit, c, &next, &next_len);
	if (rc != KVS_OK) {
		reply_fail(r, rc, "merging the scan");
		return;
	}
	kvs__buf_add(&c->out, "],", 2);
	if (next != NULL)
		kvs__json_bytes(&c->out, KVS_F_NEXT, next, next_len);
	else
		kvs__buf_addf(&c->out, "\"%s\":null", KVS_F_NEXT);
	kvs__buf_add(&c->out, "}", 1);
	reply_json(r, 200, &c->out);
}

/* limit: 1..max_scan_limit (larger asks are cut to it); 0 if bad. */
static int get_limit(struct req *r, size_t *limit)
{
	size_t max = r->srv->cc->max_scan_limit;
	char *text, *end;
	size_t len;
	unsigned long long v;
	int rc = req_arg(r, KVS_ARG_LIMIT, &text, &len);

	*limit = max;
	if (rc <= 0)
		return rc == 0;
	errno = 0;
	v = len > 0 && len <= 20 && text[0] >= '0' && text[0] <= '9'
	            ? strtoull(text, &end, 10)
	            : 0;
	if (v == 0 || *end != '\0' || errno == ERANGE) {
		free(text);
		reply_error(r, KVS_EBADARG, "limit must be a positive integer");
		return 0;
	}
	free(text);
	*limit = v < max ? (size_t)v : max;
	return 1;
}

static int get_values(struct req *r, int *values)
{
	char *text;
	size_t len;
	int rc = req_arg(r, KVS_ARG_VALUES, &text, &len);

	*values = 0;
	if (rc <= 0)
		return rc == 0;
	if (strcmp(text, "1") == 0 || strcmp(text, "true") == 0) {
		*values = 1;
	} else if (strcmp(text, "0") != 0 && strcmp(text, "false") != 0) {
		free(text);
		reply_error(r, KVS_EBADARG, "values must be 1, 0, true or false");
		return 0;
	}
	free(text);
	return 1;
}

void handle_scan(struct req *r)
{
	struct scan *c = calloc(1, sizeof(*c));
	size_t plen, slen;
	int rc;

	if (c == NULL) {
		reply_fail(r, KVS_ENOMEM, "scanning");
		return;
	}
	kvs__buf_init(&c->out, 0);
	r->ctx = c;
	r->ctx_free = scan_free;
	if (req_arg(r, KVS_ARG_PREFIX, &c->prefix, &plen) < 0)
		return;
	rc = req_arg(r, KVS_ARG_START_AFTER, &c->start, &slen);
	if (rc < 0 || !get_limit(r, &c->req.limit) ||
	    !get_values(r, &c->req.values) || !req_quorum(r, KVS_ARG_R, &c->req.r))
		return;
	c->req.prefix = c->prefix;
	c->req.prefix_len = plen;
	c->req.start_after = c->start;
	c->req.start_len = slen;
	c->req.has_start = rc == 1;
	req_start(r);
	kvs__node_scan(r->srv->node, &c->req, &c->res, req_node_done, r);
	req_wait(r, render);
}
