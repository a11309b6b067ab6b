/*
 * http.c - the HTTP layer of kvshard-server, over libmicrohttpd.
 *
 * libmicrohttpd calls the access handler several times per request: once
 * when the headers are in, once per chunk of body, and once more when the
 * request is complete. The first call only creates the request context
 * (answering at once only for requests refused before their body: 411,
 * 413, 414, which close the connection); queueing a normal response on the
 * first call would make libmicrohttpd 0.9 answer "Connection: close" and
 * lose keep-alive. The last call dispatches to the endpoint handler, which
 * answers with req_answer() before returning, or suspends the connection
 * and answers later from another thread (the store's writer or the
 * transport's), which resumes the connection; libmicrohttpd then calls the
 * handler once more and the answer is queued.
 *
 * Paths and query strings reach us undecoded (the unescape callback does
 * nothing), so that keys may hold any byte, NUL included, and malformed
 * escapes are rejected instead of passed through.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base64.h"
#include "log.h"
#include "server.h"

#define JSON_TYPE "application/json"

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------ */
/* Responses                                                            */

void resp_header(struct MHD_Response *resp, const char *name,
                 const char *value)
{
	if (resp != NULL)
		MHD_add_response_header(resp, name, value);
}

static struct MHD_Response *finish_resp(struct server *s,
                                        struct MHD_Response *resp,
                                        const char *ctype)
{
	if (resp == NULL)
		return NULL;
	MHD_add_response_header(resp, KVS_HDR_SHARD, s->me->name);
	MHD_add_response_header(resp, KVS_HDR_EPOCH, s->epoch_text);
	if (ctype != NULL)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	return resp;
}

struct MHD_Response *resp_copy(struct server *s, const void *data,
                               size_t len, const char *ctype)
{
	return finish_resp(s,
	                   MHD_create_response_from_buffer(len, (void *)data,
	                                                   MHD_RESPMEM_MUST_COPY),
	                   ctype);
}

struct MHD_Response *resp_take(struct server *s, void *data, size_t len,
                               const char *ctype)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(
	        len, data ? data : (void *)"", data ? MHD_RESPMEM_MUST_FREE
	                                            : MHD_RESPMEM_PERSISTENT);

	if (resp == NULL)
		free(data);
	return finish_resp(s, resp, ctype);
}

struct MHD_Response *resp_static(struct server *s, const char *text,
                                 const char *ctype)
{
	return finish_resp(s,
	                   MHD_create_response_from_buffer(strlen(text),
	                                                   (void *)text,
	                                                   MHD_RESPMEM_PERSISTENT),
	                   ctype);
}

/* ------------------------------------------------------------------ */
/* JSON text                                                            */

/* Length of the UTF-8 sequence at p (1..4), or 0 if invalid. */
static size_t utf8_len(const unsigned char *p, size_t left)
{
	unsigned c = p[0];
	size_t n;
	unsigned min;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if ((c & 0xe0) == 0xc0) {
		n = 2;
		cp = c & 0x1f;
		min = 0x80;
	} else if ((c & 0xf0) == 0xe0) {
		n = 3;
		cp = c & 0x0f;
		min = 0x800;
	} else if ((c & 0xf8) == 0xf0) {
		n = 4;
		cp = c & 0x07;
		min = 0x10000;
	} else {
		return 0;
	}
	if (n > left)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

int json_escape(struct textbuf *tb, const void *data, size_t len)
{
	const unsigned char *p = data;
	int valid = 1;
	size_t i = 0;

	while (i < len) {
		size_t n = utf8_len(p + i, len - i);
		unsigned char c = p[i];

		if (n == 0) {
			valid = 0;
			tb_printf(tb, "\\u%04x", c);
			i++;
		} else if (n > 1) {
			tb_append(tb, p + i, n);
			i += n;
		} else {
			if (c == '"' || c == '\\')
				tb_printf(tb, "\\%c", c);
			else if (c < 0x20 || c == 0x7f)
				tb_printf(tb, "\\u%04x", c);
			else
				tb_append(tb, &c, 1);
			i++;
		}
	}
	return valid;
}

void json_base64(struct textbuf *tb, const void *data, size_t len)
{
	char *out = malloc(KVS_B64_LEN(len) + 1);

	if (out == NULL) {
		tb->failed = 1;
		return;
	}
	tb_append(tb, out, kvs__b64_encode(data, len, out));
	free(out);
}

/* "field": "key" when the key is UTF-8; else also "field_b64". */
void json_key_field(struct textbuf *tb, const char *field, const void *key,
                    size_t len)
{
	tb_printf(tb, "\"%s\":\"", field);
	if (json_escape(tb, key, len)) {
		tb_append(tb, "\"", 1);
		return;
	}
	tb_printf(tb, "\",\"%s_b64\":\"", field);
	json_base64(tb, key, len);
	tb_append(tb, "\"", 1);
}

/* ------------------------------------------------------------------ */
/* Answering                                                            */

void req_suspend(struct req *r)
{
	r->suspended = 1;
	MHD_suspend_connection(r->conn);
}

void req_answer(struct req *r, unsigned status, struct MHD_Response *resp)
{
	if (r->answered) {
		log_msg(LOG_ERROR, "internal error: request answered twice");
		if (resp != NULL)
			MHD_destroy_response(resp);
		return;
	}
	r->status = status;
	r->resp = resp;
	r->answered = 1;
	if (r->suspended)
		MHD_resume_connection(r->conn);
}

void req_error(struct req *r, unsigned status, const char *code,
               const char *fmt, ...)
{
	struct textbuf tb = {0};
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	tb_printf(&tb, "{\"error\":\"%s\",\"message\":\"", code);
	json_escape(&tb, msg, strlen(msg));
	tb_append(&tb, "\"}\n", 3);
	if (tb.failed) {
		free(tb.data);
		req_answer(r, status, NULL);
		return;
	}
	req_answer(r, status, resp_take(r->srv, tb.data, tb.len, JSON_TYPE));
}

unsigned http_status_of(int rc)
{
	switch (rc) {
	case KVS_OK:
		return MHD_HTTP_OK;
	case KVS_NOTFOUND:
		return MHD_HTTP_NOT_FOUND;
	case KVS_EKEYSIZE:
	case KVS_EINVAL:
		return MHD_HTTP_BAD_REQUEST;
	case KVS_EVALSIZE:
		return MHD_HTTP_CONTENT_TOO_LARGE;
	case KVS_ECONFLICT:
	case KVS_EEXISTS:
		return MHD_HTTP_PRECONDITION_FAILED;
	case KVS_EFULL:
		return MHD_HTTP_INSUFFICIENT_STORAGE;
	case KVS_EUNAVAIL:
	case KVS_ECONNECT:
	case KVS_ETIMEDOUT:
	case KVS_EBUSY:
	case KVS_ECLOSED:
		return MHD_HTTP_SERVICE_UNAVAILABLE;
	default:
		return MHD_HTTP_INTERNAL_SERVER_ERROR;
	}
}

void req_fail(struct req *r, int rc, const char *what)
{
	req_error(r, http_status_of(rc), kvs_error_code(rc), "%s: %s", what,
	          kvs_strerror(rc));
}

void req_not_allowed(struct req *r, const char *allow)
{
	req_error(r, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
	          "allowed methods: %s", allow);
	resp_header(r->resp, MHD_HTTP_HEADER_ALLOW, allow);
}

/* ------------------------------------------------------------------ */
/* Request data                                                         */

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch = tolower(ch);
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

int url_decode(const char *in, size_t len, char *out, size_t *out_len,
               int plus_is_space)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		if (in[i] == '%') {
			int hi, lo;

			if (i + 2 >= len)
				return -1;
			hi = hexval((unsigned char)in[i + 1]);
			lo = hexval((unsigned char)in[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			out[o++] = (char)(hi * 16 + lo);
			i += 2;
		} else if (in[i] == '+' && plus_is_space) {
			out[o++] = ' ';
		} else {
			out[o++] = in[i];
		}
	}
	*out_len = o;
	return 0;
}

int req_arg(struct req *r, const char *name, char **out, size_t *out_len)
{
	const char *raw = NULL;
	size_t raw_len = 0;
	char *dec;

	if (MHD_lookup_connection_value_n(r->conn, MHD_GET_ARGUMENT_KIND, name,
	                                  strlen(name), &raw,
	                                  &raw_len) != MHD_YES)
		return 0;
	if (raw == NULL) { /* "?key" without "=" */
		raw = "";
		raw_len = 0;
	}
	dec = malloc(raw_len + 1);
	if (dec == NULL) {
		req_fail(r, KVS_ENOMEM, "reading the query");
		return -1;
	}
	if (url_decode(raw, raw_len, dec, out_len, 1) != 0) {
		free(dec);
		req_error(r, MHD_HTTP_BAD_REQUEST, "bad_encoding",
		          "query argument '%s' has a malformed %%-escape", name);
		return -1;
	}
	dec[*out_len] = '\0';
	*out = dec;
	return 1;
}

struct query_builder {
	struct textbuf tb;
};

static enum MHD_Result add_arg(void *cls, enum MHD_ValueKind kind,
                               const char *key, const char *value)
{
	struct query_builder *qb = cls;

	(void)kind;
	tb_append(&qb->tb, qb->tb.len ? "&" : "", qb->tb.len ? 1 : 0);
	/* The values are raw, except that libmicrohttpd turned '+' into
	 * spaces: give them back their escape. */
	for (const char *p = key; *p; p++)
		tb_append(&qb->tb, *p == ' ' ? "%20" : p, *p == ' ' ? 3 : 1);
	if (value != NULL) {
		tb_append(&qb->tb, "=", 1);
		for (const char *p = value; *p; p++)
			tb_append(&qb->tb, *p == ' ' ? "%20" : p,
			          *p == ' ' ? 3 : 1);
	}
	return MHD_YES;
}

char *req_raw_query(struct req *r)
{
	struct query_builder qb = {{0}};

	MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, add_arg, &qb);
	if (qb.tb.failed) {
		free(qb.tb.data);
		return NULL;
	}
	return qb.tb.data ? qb.tb.data : strdup("");
}

const char *req_header(struct req *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

/* ------------------------------------------------------------------ */
/* The handler                                                          */

static enum method parse_method(const char *m)
{
	if (strcmp(m, "GET") == 0)
		return M_GET;
	if (strcmp(m, "HEAD") == 0)
		return M_HEAD;
	if (strcmp(m, "PUT") == 0)
		return M_PUT;
	if (strcmp(m, "POST") == 0)
		return M_POST;
	if (strcmp(m, "DELETE") == 0)
		return M_DELETE;
	return M_OTHER;
}

static enum endpoint classify(const char *url)
{
	if (strncmp(url, "/v1/kv/", 7) == 0)
		return EP_KV;
	if (strcmp(url, "/retrieve") == 0)
		return EP_RETRIEVE;
	if (strcmp(url, "/store") == 0)
		return EP_STORE;
	if (strcmp(url, "/v1/kv") == 0)
		return EP_SCAN;
	if (strcmp(url, "/v1/batch") == 0)
		return EP_BATCH;
	if (strcmp(url, "/v1/cluster") == 0)
		return EP_CLUSTER;
	if (strcmp(url, "/v1/status") == 0)
		return EP_STATUS;
	if (strcmp(url, "/health") == 0)
		return EP_HEALTH;
	if (strcmp(url, "/metrics") == 0)
		return EP_METRICS;
	if (strncmp(url, "/internal/", 10) == 0)
		return EP_INTERNAL;
	return EP_OTHER;
}

/* Compare a secret without leaking how much of it matched. */
static int same_secret(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned char diff = (unsigned char)(la != lb);

	for (size_t i = 0; i < la && i < lb; i++)
		diff |= (unsigned char)(a[i] ^ b[i]);
	return diff == 0;
}

static enum role find_role(struct req *r)
{
	const kvs_cluster_config *cc = r->srv->cc;
	const char *secret = req_header(r, KVS_HDR_SECRET);
	const char *auth;
	int any_tokens = cc->n_client_tokens + cc->n_read_tokens > 0;

	if (cc->cluster_secret != NULL && secret != NULL &&
	    same_secret(secret, cc->cluster_secret))
		return ROLE_PEER;
	if (!any_tokens)
		return cc->cluster_secret != NULL ? ROLE_WRITE : ROLE_PEER;
	auth = req_header(r, MHD_HTTP_HEADER_AUTHORIZATION);
	if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0)
		return ROLE_NONE;
	auth += 7;
	for (size_t i = 0; i < cc->n_client_tokens; i++)
		if (same_secret(auth, cc->client_tokens[i]))
			return ROLE_WRITE;
	for (size_t i = 0; i < cc->n_read_tokens; i++)
		if (same_secret(auth, cc->read_tokens[i]))
			return ROLE_READ;
	return ROLE_NONE;
}

/* May this request go on? Answers 401/403 when not. */
static int authorized(struct req *r)
{
	int writes = r->method != M_GET && r->method != M_HEAD &&
	             r->ep != EP_BATCH;
	enum role need = r->ep == EP_INTERNAL ? ROLE_PEER
	                 : writes             ? ROLE_WRITE
	                                      : ROLE_READ;

	if (r->ep == EP_HEALTH || r->role >= need)
		return 1;
	if (r->role == ROLE_NONE) {
		struct textbuf tb = {0};

		tb_printf(&tb, "{\"error\":\"unauthorized\",\"message\":\"%s\"}\n",
		          r->ep == EP_INTERNAL
		                  ? "peer requests need the cluster secret"
		                  : "a valid bearer token is required");
		if (tb.failed) {
			free(tb.data);
			req_answer(r, MHD_HTTP_UNAUTHORIZED, NULL);
			return 0;
		}
		{
			struct MHD_Response *resp =
			        resp_take(r->srv, tb.data, tb.len, JSON_TYPE);

			resp_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
			            "Bearer realm=\"kvshard\"");
			req_answer(r, MHD_HTTP_UNAUTHORIZED, resp);
		}
		return 0;
	}
	req_error(r, MHD_HTTP_FORBIDDEN, "forbidden",
	          r->ep == EP_INTERNAL ? "peer requests need the cluster secret"
	                               : "this token may only read");
	return 0;
}

static void dispatch(struct req *r)
{
	if (atomic_load(&r->srv->stopping)) {
		req_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "shutting_down",
		          "this shard is shutting down");
		resp_header(r->resp, MHD_HTTP_HEADER_CONNECTION, "close");
		return;
	}
	if (r->body_too_big) {
		req_error(r, MHD_HTTP_CONTENT_TOO_LARGE, "value_too_large",
		          "the request body is larger than %zu bytes",
		          r->body_limit);
		return;
	}
	if (!authorized(r))
		return;
	switch (r->ep) {
	case EP_KV:
		handle_kv(r);
		break;
	case EP_STORE:
		handle_store(r);
		break;
	case EP_RETRIEVE:
		handle_retrieve(r);
		break;
	case EP_INTERNAL:
		if (strncmp(r->url, "/internal/kv/", 13) == 0)
			handle_internal_kv(r);
		else if (strcmp(r->url, "/internal/scan") == 0)
			handle_internal_scan(r);
		else
			req_error(r, MHD_HTTP_NOT_FOUND, "no_such_endpoint",
			          "no peer endpoint at this path");
		break;
	case EP_CLUSTER:
		handle_cluster(r);
		break;
	case EP_STATUS:
		handle_status(r);
		break;
	case EP_HEALTH:
		handle_health(r);
		break;
	case EP_METRICS:
		handle_metrics(r);
		break;
	case EP_SCAN:
		handle_scan(r);
		break;
	case EP_BATCH:
		handle_batch(r);
		break;
	default:
		req_error(r, MHD_HTTP_NOT_FOUND, "no_such_endpoint",
		          "no endpoint at this path (see docs/api.md)");
		break;
	}
}

/* Queue the answer; every request ends here. */
static enum MHD_Result queue(struct req *r)
{
	enum MHD_Result ret;

	if (r->resp == NULL)
		return MHD_NO; /* out of memory: drop the connection */
	ret = MHD_queue_response(r->conn, r->status, r->resp);
	MHD_destroy_response(r->resp);
	r->resp = NULL;
	return ret;
}

static size_t body_limit_of(const struct req *r)
{
	switch (r->ep) {
	case EP_KV:
	case EP_STORE:
	case EP_INTERNAL:
		return r->srv->cc->max_value_bytes;
	case EP_BATCH:
		return r->srv->cc->max_value_bytes * 2 + 65536;
	default:
		return 65536;
	}
}

static enum MHD_Result count_arg(void *cls, enum MHD_ValueKind kind,
                                 const char *key, const char *value)
{
	size_t *n = cls;

	(void)kind;
	*n += strlen(key) + (value ? strlen(value) + 1 : 0) + 1;
	return MHD_YES;
}

/* Checks made as soon as the headers are in. Returns 0 when refused. */
static int early_checks(struct req *r, size_t url_len)
{
	const char *cl = req_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
	const char *te = req_header(r, MHD_HTTP_HEADER_TRANSFER_ENCODING);

	/* libmicrohttpd passes the path alone: add the query's length. */
	MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, count_arg,
	                          &url_len);
	if (url_len > KVS_MAX_URL_BYTES) {
		req_error(r, MHD_HTTP_URI_TOO_LONG, "uri_too_long",
		          "the request line is longer than %d bytes; send "
		          "large values as a request body",
		          KVS_MAX_URL_BYTES);
		return 0;
	}
	if (cl != NULL) {
		char *end;
		unsigned long long n;

		errno = 0;
		n = strtoull(cl, &end, 10);
		if (errno == 0 && *end == '\0' && n > r->body_limit) {
			req_error(r, MHD_HTTP_CONTENT_TOO_LARGE,
			          "value_too_large",
			          "the request body (%llu bytes) is larger than "
			          "%zu bytes",
			          n, r->body_limit);
			return 0;
		}
		if (errno == 0 && *end == '\0' && n > 0) {
			r->body = malloc((size_t)n + 1);
			if (r->body == NULL) {
				req_fail(r, KVS_ENOMEM, "reading the body");
				return 0;
			}
			r->body_cap = (size_t)n + 1;
		}
	} else if (r->ep == EP_KV && r->method == M_PUT &&
	           (te == NULL || strcasecmp(te, "chunked") != 0)) {
		req_error(r, MHD_HTTP_LENGTH_REQUIRED, "length_required",
		          "PUT needs a Content-Length (0 for an empty value) "
		          "or a chunked body");
		return 0;
	}
	return 1;
}

/* Take a piece of the body; past the limit, remember and discard. */
static void take_body(struct req *r, const char *data, size_t len)
{
	if (r->body_too_big || r->body_len + len > r->body_limit) {
		r->body_too_big = 1;
		return;
	}
	if (r->body_len + len + 1 > r->body_cap) {
		size_t cap = r->body_cap ? r->body_cap : 4096;
		char *b;

		while (cap < r->body_len + len + 1)
			cap *= 2;
		b = realloc(r->body, cap);
		if (b == NULL) {
			r->body_too_big = 1;
			return;
		}
		r->body = b;
		r->body_cap = cap;
	}
	memcpy(r->body + r->body_len, data, len);
	r->body_len += len;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn,
                                 const char *url, const char *method,
                                 const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
	struct server *s = cls;
	struct req *r = *con_cls;

	(void)version;
	if (r == NULL) {
		size_t url_len = strlen(url);

		r = calloc(1, sizeof(*r));
		if (r == NULL)
			return MHD_NO;
		r->srv = s;
		r->conn = conn;
		r->url = url;
		r->start_ns = now_ns();
		r->method = parse_method(method);
		r->ep = classify(url);
		r->body_limit = body_limit_of(r);
		r->hop = req_header(r, KVS_HDR_HOP) != NULL;
		r->role = find_role(r);
		*con_cls = r;
		atomic_fetch_add_explicit(&s->inflight, 1, memory_order_relaxed);
		if (!early_checks(r, url_len)) {
			r->queued = 1;
			return queue(r);
		}
		return MHD_YES;
	}
	if (r->queued) { /* refused early: ignore the rest */
		*upload_size = 0;
		return MHD_YES;
	}
	if (*upload_size > 0) {
		take_body(r, upload, *upload_size);
		*upload_size = 0;
		return MHD_YES;
	}
	if (!r->suspended) {
		dispatch(r);
		if (r->suspended)
			return MHD_YES;
	} else {
		r->suspended = 0; /* resumed: the answer is ready */
	}
	r->queued = 1;
	return queue(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn,
                         void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct server *s = cls;
	struct req *r = *con_cls;
	uint64_t elapsed;

	(void)conn;
	if (r == NULL)
		return;
	elapsed = now_ns() - r->start_ns;
	metrics_record(r->ep, r->status, elapsed);
	atomic_fetch_add_explicit(&s->requests, 1, memory_order_relaxed);
	if (log_enabled(LOG_DEBUG))
		log_msg(LOG_DEBUG, "%s %.200s -> %u in %.3f ms%s",
		        r->method == M_GET    ? "GET"
		        : r->method == M_HEAD ? "HEAD"
		        : r->method == M_PUT  ? "PUT"
		        : r->method == M_POST ? "POST"
		        : r->method == M_DELETE ? "DELETE"
		                                : "?",
		        r->url, r->status, (double)elapsed / 1e6,
		        toe == MHD_REQUEST_TERMINATED_COMPLETED_OK
		                ? ""
		                : " (connection ended early)");
	if (r->resp != NULL)
		MHD_destroy_response(r->resp);
	free(r->body);
	free(r->key);
	free(r->value);
	free(r->forward_url);
	free(r);
	*con_cls = NULL;
	atomic_fetch_sub_explicit(&s->inflight, 1, memory_order_relaxed);
}

static void on_connection(void *cls, struct MHD_Connection *conn,
                          void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
	struct server *s = cls;

	(void)conn;
	(void)socket_context;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED)
		atomic_fetch_add_explicit(&s->connections, 1, memory_order_relaxed);
	else
		atomic_fetch_sub_explicit(&s->connections, 1, memory_order_relaxed);
}

/* Keep paths and query strings as they came: handlers decode them. */
static size_t unescape_nothing(void *cls, struct MHD_Connection *conn,
                               char *s)
{
	(void)cls;
	(void)conn;
	return strlen(s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];

	(void)cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	log_msg(LOG_WARN, "http: %s", msg);
}

/*
 * One poll loop per thread, not epoll: libmicrohttpd 0.9.75's epoll loop
 * drains events with "while (MAX_EVENTS == num_events) epoll_wait(...)",
 * so whenever exactly 128 connections of a thread are ready together it
 * waits again before serving them; with 128 busy keep-alive connections
 * throughput fell from ~78k to ~9k requests/s (wrk). The poll loop costs
 * about 3.5% at 32 connections, is even at 128, and suspends connections
 * without an epoll_ctl pair (forwarded requests got 17% faster); see
 * docs/benchmarks.md.
 */
int http_start(struct server *s, int listen_fd)
{
	unsigned flags = MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_TURBO |
	                 MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC |
	                 MHD_USE_ERROR_LOG;

	s->daemon = MHD_start_daemon(
	        flags, 0, NULL, NULL, on_access, s,
	        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
	        MHD_OPTION_LISTEN_SOCKET, listen_fd,
	        MHD_OPTION_THREAD_POOL_SIZE, s->threads,
	        MHD_OPTION_CONNECTION_LIMIT, s->cc->max_connections,
	        MHD_OPTION_CONNECTION_TIMEOUT, s->cc->idle_timeout_s,
	        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)KVS_CONNECTION_MEMORY,
	        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
	        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
	        MHD_OPTION_UNESCAPE_CALLBACK, unescape_nothing, NULL,
	        MHD_OPTION_END);
	return s->daemon != NULL ? 0 : -1;
}

void http_quiesce(struct server *s)
{
	if (s->daemon != NULL)
		MHD_quiesce_daemon(s->daemon);
}

void http_stop(struct server *s)
{
	if (s->daemon != NULL)
		MHD_stop_daemon(s->daemon);
	s->daemon = NULL;
}
