/*
 * kv.c - the key endpoints: the seed's /store and /retrieve, /v1/kv/{key},
 * and the peer protocol under /internal/kv/{key}.
 *
 * Every key request is routed the same way. The ring gives the key's N
 * owners. Reads are served by this node when it is an owner (from its own
 * store when R is 1, else through a quorum read); writes are coordinated by
 * the first owner that is up. A node that must not serve a request itself
 * forwards it to the right owner and relays the answer (routing = "proxy"),
 * or answers 307 with the owner's URL (routing = "redirect"). A forwarded
 * request carries X-Kvshard-Hop: the node receiving it serves it if it owns
 * the key and refuses it (421) otherwise, so requests never travel in
 * circles even when two nodes disagree about the topology or health.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "server.h"

#define VALUE_TYPE "application/octet-stream"
#define JSON_TYPE "application/json"
#define ETAG_MAX (KVS_STAMP_STRLEN + 3)

static void etag_of(const kvs_stamp *st, char *buf)
{
	char s[KVS_STAMP_STRLEN];

	kvs_stamp_format(st, s);
	snprintf(buf, ETAG_MAX, "\"%s\"", s);
}

/* Check a decoded key against the configured limit. Answers 400 if bad. */
static int key_ok(struct req *r)
{
	size_t max = r->srv->cc->max_key_bytes;

	if (r->key_len == 0) {
		req_error(r, MHD_HTTP_BAD_REQUEST, "empty_key",
		          "the key is empty");
		return 0;
	}
	if (r->key_len > max) {
		req_error(r, MHD_HTTP_BAD_REQUEST, "key_too_long",
		          "the key is %zu bytes; the limit is %zu", r->key_len,
		          max);
		return 0;
	}
	return 1;
}

/* The key of the seed endpoints: ?key=... */
static int key_from_query(struct req *r)
{
	int rc = req_arg(r, "key", &r->key, &r->key_len);

	if (rc < 0)
		return 0;
	if (rc == 0) {
		req_error(r, MHD_HTTP_BAD_REQUEST, "missing_key",
		          "the 'key' query argument is missing");
		return 0;
	}
	return key_ok(r);
}

/* The key of /v1/kv/{key} and /internal/kv/{key}: the rest of the path. */
static int key_from_path(struct req *r, size_t prefix_len)
{
	const char *raw = r->url + prefix_len;
	size_t len = strlen(raw);

	r->key = malloc(len + 1);
	if (r->key == NULL) {
		req_fail(r, KVS_ENOMEM, "reading the key");
		return 0;
	}
	if (url_decode(raw, len, r->key, &r->key_len, 0) != 0) {
		req_error(r, MHD_HTTP_BAD_REQUEST, "bad_encoding",
		          "the key has a malformed %%-escape");
		return 0;
	}
	return key_ok(r);
}

/* ------------------------------------------------------------------ */
/* Answers                                                              */

static void answer_not_found(struct req *r)
{
	req_error(r, MHD_HTTP_NOT_FOUND, "not_found", "key not found");
}

static void answer_value(struct req *r, const kvs_record *rec)
{
	struct MHD_Response *resp =
	        resp_copy(r->srv, rec->value, rec->value_len, VALUE_TYPE);
	char etag[ETAG_MAX];

	etag_of(&rec->stamp, etag);
	resp_header(resp, MHD_HTTP_HEADER_ETAG, etag);
	req_answer(r, MHD_HTTP_OK, resp);
}

/* The body of a successful write. */
static void answer_written(struct req *r, const kvs_stamp *st, unsigned acks)
{
	struct textbuf tb = {0};
	char stamp[KVS_STAMP_STRLEN], etag[ETAG_MAX];
	struct MHD_Response *resp;

	kvs_stamp_format(st, stamp);
	tb_append(&tb, "{", 1);
	json_key_field(&tb, "key", r->key, r->key_len);
	tb_printf(&tb, ",\"shard\":\"%s\",\"version\":\"%s\",\"replicas\":%u",
	          r->srv->me->name, stamp, acks);
	tb_printf(&tb, r->is_delete ? ",\"deleted\":true}\n" : "}\n");
	if (tb.failed) {
		free(tb.data);
		req_answer(r, MHD_HTTP_OK, NULL);
		return;
	}
	resp = resp_take(r->srv, tb.data, tb.len, JSON_TYPE);
	etag_of(st, etag);
	resp_header(resp, MHD_HTTP_HEADER_ETAG, etag);
	req_answer(r, MHD_HTTP_OK, resp);
}

/* ------------------------------------------------------------------ */
/* Forwarding and redirects                                             */

/* The next owner to send this request to, or (size_t)-1. Reads take any
 * owner, writes go in preference order; owners believed up come first. */
static size_t next_target(struct req *r)
{
	kvs__node *n = r->srv->node;

	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < r->route.n; i++) {
			size_t o = r->route.owners[i];
			int tried = 0;

			for (size_t t = 0; t < r->n_tried; t++)
				tried |= r->tried[t] == o;
			if (tried || o == r->srv->self)
				continue;
			if (pass == 0 && !kvs__node_peer_up(n, o))
				continue;
			return o;
		}
	return (size_t)-1;
}

static const char *const relayed_headers[] = {
	MHD_HTTP_HEADER_CONTENT_TYPE, MHD_HTTP_HEADER_ETAG,
	MHD_HTTP_HEADER_ALLOW,        MHD_HTTP_HEADER_LOCATION,
	MHD_HTTP_HEADER_WWW_AUTHENTICATE, KVS_HDR_SHARD,
	KVS_HDR_EPOCH,
};

static void forward(struct req *r, size_t target);
static void coordinate(struct req *r);

static void forward_done(void *ud, kvs__http_response *resp)
{
	struct req *r = ud;
	struct MHD_Response *out;
	size_t target = r->tried[r->n_tried - 1];

	if (resp->rc != KVS_OK) {
		size_t next = next_target(r);

		/* A write whose coordinator is gone: an owner takes over. */
		if (r->is_write && r->route.self >= 0 &&
		    kvs__node_coordinator(r->srv->node, &r->route) ==
		            r->srv->self) {
			kvs__http_response_clear(resp);
			coordinate(r);
			return;
		}

		log_msg(LOG_WARN, "shard %s (%s) did not answer: %s",
		        kvs_config_shard(r->srv->cfg, target)->name,
		        kvs_config_shard(r->srv->cfg, target)->address,
		        kvs_strerror(resp->rc));
		kvs__http_response_clear(resp);
		if (next != (size_t)-1) {
			forward(r, next);
			return;
		}
		req_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
		          "no owner of this key answered (last tried: %s at %s)",
		          kvs_config_shard(r->srv->cfg, target)->name,
		          kvs_config_shard(r->srv->cfg, target)->address);
		return;
	}
	out = MHD_create_response_from_buffer(resp->body_len,
	                                      resp->body ? resp->body : "",
	                                      resp->body ? MHD_RESPMEM_MUST_FREE
	                                                 : MHD_RESPMEM_PERSISTENT);
	if (out == NULL) {
		kvs__http_response_clear(resp);
		req_answer(r, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL);
		return;
	}
	resp->body = NULL; /* now the response's */
	for (size_t i = 0;
	     i < sizeof(relayed_headers) / sizeof(relayed_headers[0]); i++) {
		size_t len;
		const char *v = kvs__http_header(resp, relayed_headers[i], &len);
		char buf[512];

		if (v == NULL || len >= sizeof(buf))
			continue;
		memcpy(buf, v, len);
		buf[len] = '\0';
		MHD_add_response_header(out, relayed_headers[i], buf);
	}
	MHD_add_response_header(out, "X-Kvshard-Forwarded-By",
	                        r->srv->me->name);
	req_answer(r, (unsigned)resp->status, out);
	kvs__http_response_clear(resp);
}

static const char *method_name(enum method m)
{
	static const char *const names[] = {"GET", "HEAD", "PUT", "POST",
	                                    "DELETE", "GET"};

	return names[m];
}

/* Send this request to shard target and relay its answer. The connection
 * is (or gets) suspended; forward_done answers. */
static void forward(struct req *r, size_t target)
{
	static const char *const passed[] = {
		MHD_HTTP_HEADER_CONTENT_TYPE, MHD_HTTP_HEADER_IF_MATCH,
		MHD_HTTP_HEADER_IF_NONE_MATCH, MHD_HTTP_HEADER_AUTHORIZATION,
	};
	char hdrs[5][600];
	kvs__http_request hr;
	int rc;

	r->tried[r->n_tried++] = target;
	if (r->forward_url == NULL) {
		char *q = req_raw_query(r);
		const char *base = kvs__node_base_url(r->srv->node, 0);
		size_t len = strlen(r->url) + (q ? strlen(q) : 0) + strlen(base) +
		             64;

		r->forward_url = malloc(len);
		if (q == NULL || r->forward_url == NULL) {
			free(q);
			req_fail(r, KVS_ENOMEM, "forwarding");
			return;
		}
		/* Keep only path and query: the base changes per target. */
		snprintf(r->forward_url, len, "%s%s%s", r->url, *q ? "?" : "", q);
		free(q);
	}
	memset(&hr, 0, sizeof(hr));
	{
		const char *base = kvs__node_base_url(r->srv->node, target);
		size_t len = strlen(base) + strlen(r->forward_url) + 1;
		char *url = malloc(len);

		if (url == NULL) {
			req_fail(r, KVS_ENOMEM, "forwarding");
			return;
		}
		snprintf(url, len, "%s%s", base, r->forward_url);
		hr.url = url;
	}
	hr.method = method_name(r->method);
	snprintf(hdrs[0], sizeof(hdrs[0]), "%s: %s", KVS_HDR_HOP,
	         r->srv->me->name);
	hr.headers[hr.n_headers++] = hdrs[0];
	for (size_t i = 0; i < sizeof(passed) / sizeof(passed[0]); i++) {
		const char *v = req_header(r, passed[i]);

		if (v == NULL || strlen(v) > 500)
			continue;
		snprintf(hdrs[hr.n_headers], sizeof(hdrs[0]), "%s: %s", passed[i],
		         v);
		hr.headers[hr.n_headers] = hdrs[hr.n_headers];
		hr.n_headers++;
	}
	if (r->method == M_PUT || r->method == M_POST) {
		hr.body = r->body ? r->body : "";
		hr.body_len = r->body_len;
	}
	if (!r->suspended)
		req_suspend(r);
	atomic_fetch_add(&kvs__node_counters_of(r->srv->node)->forwarded, 1);
	rc = kvs__node_send(r->srv->node, target, &hr, forward_done, r);
	free((char *)hr.url);
	if (rc != KVS_OK)
		req_fail(r, rc, "forwarding");
}

static void redirect(struct req *r, size_t target)
{
	char *q = req_raw_query(r);
	const char *base = kvs__node_base_url(r->srv->node, target);
	struct textbuf tb = {0};
	struct MHD_Response *resp;

	if (q == NULL) {
		req_fail(r, KVS_ENOMEM, "redirecting");
		return;
	}
	tb_printf(&tb, "%s%s%s%s", base, r->url, *q ? "?" : "", q);
	free(q);
	if (tb.failed) {
		free(tb.data);
		req_fail(r, KVS_ENOMEM, "redirecting");
		return;
	}
	resp = resp_static(r->srv, "", NULL);
	resp_header(resp, MHD_HTTP_HEADER_LOCATION, tb.data);
	free(tb.data);
	req_answer(r, MHD_HTTP_TEMPORARY_REDIRECT, resp);
}

/* This node must not serve the request: send the client elsewhere. */
static void route_away(struct req *r, size_t target)
{
	if (r->hop) {
		req_error(r, MHD_HTTP_MISDIRECTED_REQUEST, "wrong_shard",
		          "this shard does not own the key; the forwarding node "
		          "has a different view of the cluster");
		return;
	}
	if (r->srv->cc->routing == KVS_ROUTING_REDIRECT)
		redirect(r, target);
	else
		forward(r, target);
}

/* ------------------------------------------------------------------ */
/* Reads                                                                */

static int local_value(void *ud, const kvs_record *rec)
{
	answer_value(ud, rec);
	return 0;
}

static void quorum_read_done(void *ud, int rc, const kvs_record *rec)
{
	struct req *r = ud;

	if (rc == KVS_OK)
		answer_value(r, rec);
	else if (rc == KVS_NOTFOUND)
		answer_not_found(r);
	else
		req_fail(r, rc, "reading from the replicas");
}

static void kv_get(struct req *r)
{
	struct server *s = r->srv;
	unsigned need;
	int rc;

	kvs__node_route(s->node, r->key, r->key_len, &r->route);
	if (r->route.self < 0) {
		size_t target = next_target(r);

		route_away(r, target != (size_t)-1 ? target : r->route.owners[0]);
		return;
	}
	need = s->cc->read_quorum;
	if (need <= 1 || r->route.n <= 1) {
		/* The fast path: one local read, no copy but into the
		 * response. */
		rc = kvs_store_read(kvs__node_store(s->node), r->key, r->key_len,
		                    0, local_value, r);
		if (rc == KVS_NOTFOUND)
			answer_not_found(r);
		else if (rc != KVS_OK)
			req_fail(r, rc, "reading");
		return;
	}
	req_suspend(r);
	rc = kvs__node_read(s->node, r->key, r->key_len, &r->route,
	                    quorum_read_done, r);
	if (rc != KVS_OK)
		req_fail(r, rc, "reading");
}

/* ------------------------------------------------------------------ */
/* Writes                                                               */

static void write_done(void *ud, int rc, const kvs_stamp *stamp,
                       unsigned acks)
{
	struct req *r = ud;

	if (rc == KVS_OK) {
		answer_written(r, stamp, acks);
	} else if (rc == KVS_EUNAVAIL) {
		req_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
		          "only %u of %zu replicas acknowledged the write; %u "
		          "needed",
		          acks, r->route.n, r->srv->cc->write_quorum);
	} else if (rc == KVS_ECONFLICT) {
		req_error(r, MHD_HTTP_PRECONDITION_FAILED, "version_mismatch",
		          "the stored version does not match If-Match");
	} else if (rc == KVS_EEXISTS) {
		req_error(r, MHD_HTTP_PRECONDITION_FAILED, "exists",
		          "the key exists (If-None-Match: *)");
	} else {
		req_fail(r, rc, "writing");
	}
}

/* Read If-Match / If-None-Match into r->wopts. Answers 400 if bad. */
static int conditions(struct req *r)
{
	const char *im = req_header(r, MHD_HTTP_HEADER_IF_MATCH);
	const char *inm = req_header(r, MHD_HTTP_HEADER_IF_NONE_MATCH);

	memset(&r->wopts, 0, sizeof(r->wopts));
	if (im != NULL) {
		if (kvs_stamp_parse(&r->wopts.expect, im, strlen(im)) != KVS_OK) {
			req_error(r, MHD_HTTP_BAD_REQUEST, "bad_precondition",
			          "If-Match must be one ETag of this key");
			return 0;
		}
		r->wopts.flags |= KVS_WRITE_IF_STAMP;
	}
	if (inm != NULL) {
		if (strcmp(inm, "*") != 0) {
			req_error(r, MHD_HTTP_BAD_REQUEST, "bad_precondition",
			          "If-None-Match only accepts *");
			return 0;
		}
		r->wopts.flags |= KVS_WRITE_IF_ABSENT;
	}
	return 1;
}

/* Coordinate the write from this node, an owner of the key. */
static void coordinate(struct req *r)
{
	int rc;

	if (!r->suspended)
		req_suspend(r);
	rc = kvs__node_write(r->srv->node, r->key, r->key_len, r->wvalue,
	                     r->wlen, r->is_delete, &r->wopts, &r->route,
	                     write_done, r);
	if (rc != KVS_OK)
		req_fail(r, rc, "writing");
}

static void kv_write(struct req *r, const void *value, size_t len)
{
	struct server *s = r->srv;
	size_t coordinator;

	r->is_write = 1;
	r->wvalue = value;
	r->wlen = len;
	if (!conditions(r))
		return;
	if (len > s->cc->max_value_bytes) {
		req_error(r, MHD_HTTP_CONTENT_TOO_LARGE, "value_too_large",
		          "the value is %zu bytes; the limit is %zu", len,
		          s->cc->max_value_bytes);
		return;
	}
	kvs__node_route(s->node, r->key, r->key_len, &r->route);
	coordinator = kvs__node_coordinator(s->node, &r->route);
	/* An owner coordinates when it is the first owner up, when another
	 * node already forwarded the write here, or when clients are
	 * redirected (owners never redirect among themselves: no loops). */
	if (r->route.self >= 0 &&
	    (coordinator == s->self || r->hop ||
	     s->cc->routing == KVS_ROUTING_REDIRECT)) {
		coordinate(r);
		return;
	}
	route_away(r, coordinator);
}

/* ------------------------------------------------------------------ */
/* Endpoints                                                            */

void handle_retrieve(struct req *r)
{
	if (r->method != M_GET && r->method != M_HEAD) {
		req_not_allowed(r, "GET, HEAD");
		return;
	}
	if (key_from_query(r))
		kv_get(r);
}

void handle_store(struct req *r)
{
	int rc;

	if (r->method != M_GET && r->method != M_POST && r->method != M_PUT) {
		req_not_allowed(r, "GET, POST, PUT");
		return;
	}
	if (!key_from_query(r))
		return;
	rc = req_arg(r, "value", &r->value, &r->value_len);
	if (rc < 0)
		return;
	if (rc == 1) {
		kv_write(r, r->value, r->value_len);
		return;
	}
	if (r->method == M_GET) {
		req_error(r, MHD_HTTP_BAD_REQUEST, "missing_value",
		          "the 'value' query argument is missing (or send the "
		          "value as the body of a POST or PUT)");
		return;
	}
	kv_write(r, r->body, r->body_len);
}

void handle_kv(struct req *r)
{
	if (r->method == M_OTHER || r->method == M_POST) {
		req_not_allowed(r, "GET, HEAD, PUT, DELETE");
		return;
	}
	if (!key_from_path(r, strlen("/v1/kv/")))
		return;
	switch (r->method) {
	case M_GET:
	case M_HEAD:
		kv_get(r);
		break;
	case M_PUT:
		kv_write(r, r->body, r->body_len);
		break;
	default:
		r->is_delete = 1;
		kv_write(r, NULL, 0);
		break;
	}
}

/* ------------------------------------------------------------------ */
/* The peer protocol                                                    */

static int internal_record(void *ud, const kvs_record *rec)
{
	struct req *r = ud;
	struct MHD_Response *resp =
	        resp_copy(r->srv, rec->value, rec->value_len, VALUE_TYPE);
	char stamp[KVS_STAMP_STRLEN];

	kvs_stamp_format(&rec->stamp, stamp);
	resp_header(resp, KVS_HDR_STAMP, stamp);
	resp_header(resp, KVS_HDR_TOMBSTONE,
	            (rec->flags & KVS_RECORD_TOMBSTONE) ? "1" : "0");
	req_answer(r, MHD_HTTP_OK, resp);
	return 0;
}

static void internal_applied(void *ud, int rc, const kvs_stamp *stamp,
                             int applied)
{
	struct req *r = ud;

	(void)stamp;
	if (rc != KVS_OK) {
		req_fail(r, rc, "applying");
		return;
	}
	req_answer(r, MHD_HTTP_OK,
	           resp_static(r->srv,
	                       applied ? "{\"applied\":true}\n"
	                               : "{\"applied\":false}\n",
	                       JSON_TYPE));
}

void handle_internal_kv(struct req *r)
{
	kvs_store *st = kvs__node_store(r->srv->node);
	kvs_record rec;
	const char *h;
	int rc;

	if (r->method != M_GET && r->method != M_PUT) {
		req_not_allowed(r, "GET, PUT");
		return;
	}
	if (!key_from_path(r, strlen("/internal/kv/")))
		return;
	if (r->method == M_GET) {
		rc = kvs_store_read(st, r->key, r->key_len, KVS_READ_TOMBSTONES,
		                    internal_record, r);
		if (rc == KVS_NOTFOUND)
			answer_not_found(r);
		else if (rc != KVS_OK)
			req_fail(r, rc, "reading");
		return;
	}
	memset(&rec, 0, sizeof(rec));
	h = req_header(r, KVS_HDR_STAMP);
	if (h == NULL || kvs_stamp_parse(&rec.stamp, h, strlen(h)) != KVS_OK) {
		req_error(r, MHD_HTTP_BAD_REQUEST, "bad_stamp",
		          "%s is missing or malformed", KVS_HDR_STAMP);
		return;
	}
	h = req_header(r, KVS_HDR_TOMBSTONE);
	if (h != NULL && strcmp(h, "1") == 0)
		rec.flags = KVS_RECORD_TOMBSTONE;
	rec.key = r->key;
	rec.key_len = r->key_len;
	rec.value = r->body;
	rec.value_len = r->body_len;
	req_suspend(r);
	rc = kvs_store_apply_async(st, &rec, internal_applied, r);
	if (rc != KVS_OK)
		req_fail(r, rc, "applying");
}
