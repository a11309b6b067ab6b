/*
 * kv.c - the key endpoints: the seed's /store and /retrieve, and
 * /v1/kv/{key}. Each turns the request into one node operation
 * (kvs__node_kv) and its result into the answer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

struct kv {
	kvs__kv_req req;
	kvs__result res;
	char *key;
	size_t key_len;
	char *value; /* /store?value=... */
	size_t value_len;
};

static void kv_free(void *ctx)
{
	struct kv *c = ctx;

	kvs__result_clear(&c->res);
	free(c->key);
	free(c->value);
	free(c);
}

static struct kv *kv_new(struct req *r)
{
	struct kv *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		reply_fail(r, KVS_ENOMEM, "reading the request");
		return NULL;
	}
	r->ctx = c;
	r->ctx_free = kv_free;
	return c;
}

/* ------------------------------------------------------------------ */
/* Conditions                                                           */

/* Skip optional white space. */
static const char *ows(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/*
 * If-Match (RFC 9110 13.1.1): "*" writes only if the key has a value; a
 * list of entity tags writes only if the stored version is one of them.
 * Tags are compared strongly, so a weak one (W/"...") never matches, nor
 * does a well-formed tag that is no version of ours: with no tag that can
 * match, the write fails with 412 like any other mismatch. Returns 0 on
 * a malformed header (400 answered).
 */
static int if_match(struct req *r, const char *h, kvs__cond *c)
{
	const char *p = ows(h);

	if (*p == '*' && *ows(p + 1) == '\0') {
		c->flags |= KVS_WRITE_IF_EXISTS;
		return 1;
	}
	c->flags |= KVS_WRITE_IF_STAMP;
	for (;;) {
		int weak = 0;
		const char *end;
		kvs_stamp st;

		p = ows(p);
		if (strncmp(p, "W/", 2) == 0) {
			weak = 1;
			p += 2;
		}
		end = *p == '"' ? strchr(p + 1, '"') : NULL;
		if (end == NULL) {
			reply_error(r, KVS_EBADCOND,
			            "If-Match must be * or a list of quoted "
			            "entity tags");
			return 0;
		}
		if (!weak &&
		    kvs_stamp_parse(&st, p + 1, (size_t)(end - p - 1)) == KVS_OK) {
			if (c->n_expect == KVS__MAX_EXPECT) {
				reply_error(r, KVS_EBADCOND,
				            "If-Match lists more than %d versions",
				            KVS__MAX_EXPECT);
				return 0;
			}
			c->expect[c->n_expect++] = st;
		}
		p = ows(end + 1);
		if (*p == '\0')
			return 1;
		if (*p != ',') {
			reply_error(r, KVS_EBADCOND,
			            "If-Match: entity tags are separated by commas");
			return 0;
		}
		p++;
	}
}

/* If-Match and If-None-Match into c; 0 when bad (400 answered). */
static int conditions(struct req *r, kvs__cond *c)
{
	const char *inm = req_header(r, "If-None-Match");
	char *im;
	int ok = 1;

	memset(c, 0, sizeof(*c));
	if (req_header_all(r, "If-Match", &im) != KVS_OK) {
		/* Never drop a condition: that would make the write blind. */
		reply_fail(r, KVS_ENOMEM, "reading If-Match");
		return 0;
	}
	if (im != NULL)
		ok = if_match(r, im, c);
	free(im);
	if (ok && inm != NULL) {
		if (strcmp(ows(inm), "*") != 0) {
			reply_error(r, KVS_EBADCOND,
			            "If-None-Match only accepts * (create only)");
			return 0;
		}
		c->flags |= KVS_WRITE_IF_ABSENT;
	}
	return ok;
}

/* ------------------------------------------------------------------ */
/* Answers                                                              */

/* The answer to a failed operation, with what the server knows. */
static void answer_failure(struct req *r, const struct kv *c)
{
	const kvs__result *res = &c->res;
	const kvs_cluster_config *cc = r->srv->cc;
	const kvs_shard_config *t;
	int write = c->req.kind != KVS__KV_GET;

	switch (res->rc) {
	case KVS_NOTFOUND:
		reply_error(r, res->rc, "key not found");
		break;
	case KVS_EKEYSIZE:
		if (c->req.key_len == 0)
			reply_error(r, res->rc, "the key is empty");
		else
			reply_error(r, res->rc,
			            "the key is %zu bytes; the limit is %zu",
			            c->req.key_len, cc->max_key_bytes);
		break;
	case KVS_EVALSIZE:
		reply_error(r, res->rc, "the value is %zu bytes; the limit is %zu",
		            c->req.value_len, cc->max_value_bytes);
		break;
	case KVS_ECONFLICT:
		reply_error(r, res->rc,
		            (c->req.cond.flags & KVS_WRITE_IF_EXISTS)
		                    ? "the key has no value (If-Match: *)"
		                    : "the stored version does not match "
		                      "If-Match");
		break;
	case KVS_EEXISTS:
		reply_error(r, res->rc, "the key exists (If-None-Match: *)");
		break;
	case KVS_EWRONGSHARD:
		reply_error(r, res->rc,
		            "shard %s does not own the key: the shards disagree "
		            "about the topology",
		            kvs_config_shard(r->view->cfg, res->served_by)->name);
		break;
	case KVS_ETIMEDOUT:
		if (!res->unreachable) {
			reply_fail(r, res->rc, write ? "writing" : "reading");
			break;
		}
		t = kvs_config_shard(r->view->cfg, res->target);
		reply_error(r, res->rc,
		            "the key's primary %s at %s did not answer: the "
		            "conditional write may or may not have been "
		            "applied (read the key to find out)",
		            t->name, t->address);
		break;
	case KVS_EUNAVAIL:
		t = kvs_config_shard(r->view->cfg, res->target);
		if (res->unreachable && c->req.cond.flags != 0 && write)
			reply_error(r, res->rc,
			            "the key's primary %s at %s cannot be reached, "
			            "and only it decides conditional writes",
			            t->name, t->address);
		else if (res->unreachable)
			reply_error(r, res->rc,
			            "no owner of this key answered (last tried: %s "
			            "at %s)",
			            t->name, t->address);
		else
			reply_error(r, res->rc,
			            "only %u of %u replicas %s; %u needed",
			            res->acks, res->replicas,
			            write ? "acknowledged the write" : "answered",
			            res->need);
		break;
	default:
		reply_fail(r, res->rc, write ? "writing" : "reading");
		break;
	}
}

static void render(struct req *r)
{
	struct kv *c = r->ctx;
	kvs__result *res = &c->res;
	char etag[REPLY_ETAG_MAX];

	if (res->redirect) {
		const kvs_shard_config *t = kvs_config_shard(r->view->cfg,
		                                             res->target);
		char *q = req_raw_query(r);
		kvs__buf loc;

		kvs__buf_init(&loc, 0);
		kvs__buf_addf(&loc, "%s://%s%s%s%s",
		              r->srv->cc->tls_cert != NULL ? "https" : "http",
		              t->address, r->url,
		              q != NULL && *q ? "?" : "", q != NULL ? q : "");
		free(q);
		if (loc.rc != KVS_OK) {
			kvs__buf_free(&loc);
			reply_fail(r, KVS_ENOMEM, "redirecting");
			return;
		}
		reply_static(r, 307, "", NULL);
		reply_header(r, "Location", loc.data);
		kvs__buf_free(&loc);
		return;
	}
	if (res->rc != KVS_OK) {
		answer_failure(r, c);
	} else if (c->req.kind == KVS__KV_GET) {
		void (*release)(void *);
		void *hold;

		kvs__result_take(res, &release, &hold);
		reply_value(r, res->value, res->value_len, release, hold,
		            KVS_TYPE_VALUE);
		reply_etag(&res->stamp, etag);
		reply_header(r, "ETag", etag);
	} else {
		char stamp[KVS_STAMP_STRLEN];
		kvs__buf b;

		kvs_stamp_format(&res->stamp, stamp);
		kvs__buf_init(&b, 0);
		kvs__buf_add(&b, "{", 1);
		kvs__json_bytes(&b, KVS_F_KEY, c->req.key, c->req.key_len);
		kvs__buf_addf(&b, ",\"%s\":\"%s\",\"%s\":\"%s\",\"%s\":%u",
		              KVS_F_SHARD,
		              kvs_config_shard(r->view->cfg, res->served_by)->name,
		              KVS_F_VERSION, stamp, KVS_F_REPLICAS, res->acks);
		if (c->req.kind == KVS__KV_DELETE)
			kvs__buf_addf(&b, ",\"%s\":true", KVS_F_DELETED);
		kvs__buf_add(&b, "}", 1);
		reply_json(r, 200, &b);
		reply_etag(&res->stamp, etag);
		reply_header(r, "ETag", etag);
	}
	reply_served_by(r, res->served_by, res->forwarded);
}

static void run(struct req *r, struct kv *c)
{
	req_start(r);
	kvs__node_kv(r->view->node, &c->req, &c->res, req_node_done, r);
	req_wait(r, render);
}

/* The quorum arguments of the request, for its kind; 0 if bad. */
static int quorums(struct req *r, struct kv *c)
{
	int write = c->req.kind != KVS__KV_GET;
	unsigned other;

	if (!req_quorum(r, write ? KVS_ARG_W : KVS_ARG_R,
	                write ? &c->req.w : &c->req.r))
		return 0;
	if (!req_quorum(r, write ? KVS_ARG_R : KVS_ARG_W, &other))
		return 0;
	if (other != 0) {
		reply_error(r, KVS_EUNKNOWNARG, "'%s' applies to %s only",
		            write ? KVS_ARG_R : KVS_ARG_W,
		            write ? "reads" : "writes");
		return 0;
	}
	return 1;
}

/* The key of the seed endpoints: ?key=... */
static int key_from_query(struct req *r, struct kv *c)
{
	int rc = req_arg(r, KVS_ARG_KEY, &c->key, &c->key_len);

	if (rc == 0)
		reply_error(r, KVS_EMISSINGARG,
		            "the 'key' query argument is missing");
	c->req.key = c->key;
	c->req.key_len = c->key_len;
	return rc == 1;
}

/* The key of /v1/kv/{key}: the rest of the path, decoded. */
static int key_from_path(struct req *r, struct kv *c)
{
	const char *raw = r->url + strlen(KVS_PATH_KEY);
	size_t len = strlen(raw);

	c->key = malloc(len + 1);
	if (c->key == NULL) {
		reply_fail(r, KVS_ENOMEM, "reading the key");
		return 0;
	}
	if (kvs__url_decode(raw, len, c->key, &c->key_len, 0) != 0) {
		reply_error(r, KVS_EBADENCODING,
		            "the key has a malformed %%-escape");
		return 0;
	}
	c->req.key = c->key;
	c->req.key_len = c->key_len;
	return 1;
}

void handle_retrieve(struct req *r)
{
	struct kv *c = kv_new(r);

	if (c == NULL)
		return;
	c->req.kind = KVS__KV_GET;
	if (key_from_query(r, c) && quorums(r, c))
		run(r, c);
}

void handle_store(struct req *r)
{
	struct kv *c = kv_new(r);
	int rc;

	if (c == NULL)
		return;
	c->req.kind = KVS__KV_PUT;
	if (!key_from_query(r, c) || !quorums(r, c) ||
	    !conditions(r, &c->req.cond))
		return;
	rc = req_arg(r, KVS_ARG_VALUE, &c->value, &c->value_len);
	if (rc < 0)
		return;
	if (rc == 0 && r->method == M_GET) {
		reply_error(r, KVS_EMISSINGARG,
		            "the 'value' query argument is missing (or send the "
		            "value as the body of a POST or PUT)");
		return;
	}
	c->req.value = rc == 1 ? c->value : r->body;
	c->req.value_len = rc == 1 ? c->value_len : r->body_len;
	run(r, c);
}

void handle_kv(struct req *r)
{
	struct kv *c = kv_new(r);

	if (c == NULL)
		return;
	c->req.kind = r->method == M_PUT      ? KVS__KV_PUT
	              : r->method == M_DELETE ? KVS__KV_DELETE
	                                      : KVS__KV_GET;
	if (!key_from_path(r, c) || !quorums(r, c))
		return;
	if (c->req.kind != KVS__KV_GET && !conditions(r, &c->req.cond))
		return;
	if (c->req.kind == KVS__KV_PUT) {
		c->req.value = r->body;
		c->req.value_len = r->body_len;
	}
	run(r, c);
}
