/*
 * scan.c - GET /v1/kv?prefix=P&start_after=K&limit=N&values=1&r=R: one
 * page of the cluster's keys, merged by the node (lib/cscan.c).
 *
 * A page is at most `limit` keys and at most [limits] max_answer_bytes
 * of JSON: once the next entry would pass that, the page ends there and
 * its "next" is the last key shown, exactly as when `limit` ends it. The
 * first entry is always shown, so that every page moves the scan on (the
 * configuration makes sure one value fits; only a value stored while
 * max_value_bytes was larger can make that page larger than the cap).
 */
#include <stdlib.h>
#include <string.h>

#include "query.h"
#include "server.h"

/* What the page's end takes besides its "next" key: "],\"next\":" and
 * "}" and the key's field names, with room to spare. */
#define PAGE_END_BYTES 64

struct scan {
	kvs__scan_req req;
	kvs__scan_result res;
	char *prefix;
	char *start;
	kvs__buf out;
	size_t shown;
	size_t cap; /* max_answer_bytes */
	/* The page is full by bytes: what the merge emits is left out, and
	 * the next page starts after last, the last key shown. */
	int full;
	kvs__buf last;
};

static void scan_free(void *ctx)
{
	struct scan *c = ctx;

	kvs__scan_result_clear(&c->res);
	kvs__buf_free(&c->out);
	free(c->prefix);
	free(c->start);
	kvs__buf_free(&c->last);
	free(c);
}

/* Room for the page's end: its "next" key, which is this entry's or one
 * the merge looked at past it (any key, at most max_key_bytes), written
 * by kvs__json_bytes: each byte escaped as \u00XX, and in base64 too. */
static size_t page_end_max(size_t key_len)
{
	size_t len = key_len > KVS_DEFAULT_MAX_KEY_BYTES
	                     ? key_len
	                     : KVS_DEFAULT_MAX_KEY_BYTES;

	return 6 * len + (len + 2) / 3 * 4 + PAGE_END_BYTES;
}

static int emit(void *ud, const kvs_record *rec)
{
	struct scan *c = ud;
	char stamp[KVS_STAMP_STRLEN];
	size_t before = c->out.len;

	if (c->full)
		return 0;
	kvs_stamp_format(&rec->stamp, stamp);
	kvs__buf_add(&c->out, c->shown ? ",{" : "{", c->shown ? 2 : 1);
	kvs__json_bytes(&c->out, KVS_F_KEY, rec->key, rec->key_len);
	kvs__buf_addf(&c->out, ",\"%s\":\"%s\"", KVS_F_VERSION, stamp);
	if (c->req.values) {
		kvs__buf_add(&c->out, ",", 1);
		kvs__json_b64(&c->out, KVS_F_VALUE, rec->value, rec->value_len);
	}
	kvs__buf_add(&c->out, "}", 1);
	/* Past the cap with this entry and the page's end: the page ends
	 * before it, unless it is the first. */
	if (c->shown > 0 && c->out.rc == KVS_OK &&
	    c->out.len + page_end_max(rec->key_len) > c->cap) {
		c->out.len = before;
		c->out.data[before] = '\0';
		c->full = 1;
		return 0;
	}
	c->last.len = 0;
	if (kvs__buf_add(&c->last, rec->key, rec->key_len) != KVS_OK)
		c->out.rc = KVS_ENOMEM; /* answered as a failure */
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
		            c->req.r != 0 ? c->req.r
		                          : kvs_config_cluster(r->view->cfg)
		                                    ->read_quorum,
		            kvs_config_shard(r->view->cfg, c->res.failed)->name);
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
	if (c->full) {
		next = c->last.data != NULL ? c->last.data : "";
		next_len = c->last.len;
	}
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
	char *text;
	size_t len;
	int rc = req_arg(r, KVS_ARG_LIMIT, &text, &len);

	*limit = max;
	if (rc <= 0)
		return rc == 0;
	*limit = query_limit(text, len, max);
	free(text);
	if (*limit == 0) {
		reply_error(r, KVS_EBADARG, "limit must be a positive integer");
		return 0;
	}
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
	*values = query_flag(text, len);
	free(text);
	if (*values < 0) {
		*values = 0;
		reply_error(r, KVS_EBADARG, "values must be 1, 0, true or false");
		return 0;
	}
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
	kvs__buf_init(&c->last, 0);
	c->cap = r->srv->cc->max_answer_bytes;
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
	kvs__node_scan(r->view->node, &c->req, &c->res, req_node_done, r);
	req_wait(r, render);
}
