/*
 * http.c - the daemon: libmicrohttpd's connections and the life of each
 * request.
 *
 * libmicrohttpd calls the access handler several times per request: once
 * when the headers are in, once per chunk of body, and once more when the
 * request is complete. The first call only creates the request (answering
 * at once only for requests refused before their body: 411, 413, 414,
 * which close the connection); queueing a normal answer on the first call
 * would make libmicrohttpd 0.9 answer "Connection: close" and lose
 * keep-alive. The last call dispatches to the endpoint (router.c), whose
 * handler answers before returning, or starts a node operation and
 * suspends the connection (request.c); the operation's completion resumes
 * it, libmicrohttpd calls the handler once more, and the answer is built
 * then, on this thread, and queued.
 */
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "metrics.h"
#include "server.h"

static enum method parse_method(const char *m)
{
	for (size_t i = 0; i < KVS_ARRAY_SIZE(known_methods); i++)
		if (strcmp(m, method_name(known_methods[i])) == 0)
			return known_methods[i];
	return M_OTHER;
}

/* Queue the answer; every request ends here. */
static enum MHD_Result queue(struct req *r)
{
	enum MHD_Result ret;

	r->queued = 1;
	if (r->resp == NULL)
		return MHD_NO; /* out of memory: drop the connection */
	ret = MHD_queue_response(r->conn, r->status, r->resp);
	MHD_destroy_response(r->resp);
	r->resp = NULL;
	return ret;
}

static int has_control(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; p && *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return *p;
	return 0;
}

/* The request target, as seen once: its length (libmicrohttpd passes the
 * path alone: the query's arguments are added) and the first control
 * byte in it (0: none). */
struct target {
	size_t len;
	int control;
};

static enum MHD_Result scan_arg(void *cls, enum MHD_ValueKind kind,
                                const char *key, const char *value)
{
	struct target *t = cls;

	(void)kind;
	t->len += strlen(key) + (value ? strlen(value) + 1 : 0) + 1;
	if (t->control == 0)
		t->control = has_control(key);
	if (t->control == 0)
		t->control = has_control(value);
	return MHD_YES;
}

/* Headers that must not be repeated, or not come together. */
struct framing {
	unsigned hosts, lengths, encodings;
	const char *length;
	int lengths_differ;
};

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind,
                                     const char *key, const char *value)
{
	struct framing *f = cls;

	(void)kind;
	if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0) {
		f->hosts++;
	} else if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
		if (f->lengths++ > 0 &&
		    strcmp(f->length, value != NULL ? value : "") != 0)
			f->lengths_differ = 1;
		f->length = value != NULL ? value : "";
	} else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
		f->encodings++;
	}
	return MHD_YES;
}

/*
 * What HTTP forbids, or leaves for two parsers to read two ways (request
 * smuggling through a proxy in front): refused before anything else.
 * (A NUL byte in the request line cannot be seen here: libmicrohttpd
 * 0.9 ends the path at it.)
 */
static int framing_ok(struct req *r, const struct target *t,
                      const char *version)
{
	struct framing f = {0};

	if (t->control != 0) {
		reply_error(r, KVS_EBADREQUEST,
		            "the request target holds a control byte (0x%02x): "
		            "percent-encode it",
		            (unsigned)t->control);
		return 0;
	}
	MHD_get_connection_values(r->conn, MHD_HEADER_KIND, count_framing, &f);
	if (f.lengths_differ) {
		reply_error(r, KVS_EBADREQUEST,
		            "Content-Length is given twice with different "
		            "values");
		return 0;
	}
	if (f.lengths > 0 && f.encodings > 0) {
		reply_error(r, KVS_EBADREQUEST,
		            "Content-Length and Transfer-Encoding together: "
		            "send one");
		return 0;
	}
	if (version != NULL &&
	    strcmp(version, MHD_HTTP_VERSION_1_1) == 0 && f.hosts != 1) {
		reply_error(r, KVS_EBADREQUEST,
		            f.hosts == 0 ? "an HTTP/1.1 request needs a Host "
		                           "header"
		                         : "the Host header is given more than "
		                           "once");
		return 0;
	}
	return 1;
}

/* Checks made as soon as the headers are in. Returns 0 when refused. */
static int early_checks(struct req *r, const struct target *t)
{
	const char *cl = req_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
	const char *te = req_header(r, MHD_HTTP_HEADER_TRANSFER_ENCODING);

	if (t->len > KVS_MAX_URL_BYTES) {
		reply_error(r, KVS_EURITOOLONG,
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
			reply_error(r, KVS_EVALSIZE,
			            "the request body (%llu bytes) is larger than "
			            "%zu bytes",
			            n, r->body_limit);
			return 0;
		}
		if (errno == 0 && *end == '\0' && n > 0) {
			r->body = malloc((size_t)n + 1);
			if (r->body == NULL) {
				reply_fail(r, KVS_ENOMEM, "reading the body");
				return 0;
			}
			r->body_cap = (size_t)n + 1;
		}
	} else if (route_needs_length(r->ep, r->method) &&
	           (te == NULL || strcasecmp(te, "chunked") != 0)) {
		reply_error(r, KVS_ELENGTH,
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

	if (r == NULL) {
		struct target t = {strlen(url), has_control(url)};

		r = calloc(1, sizeof(*r));
		if (r == NULL)
			return MHD_NO;
		r->srv = s;
		r->conn = conn;
		r->url = url;
		r->start_ns = kvs__mono_ns();
		r->method = parse_method(method);
		r->ep = route_find(url);
		r->body_limit = route_body_limit(s, r->ep);
		r->role = route_role_of(r);
		*con_cls = r;
		atomic_fetch_add_explicit(&s->inflight, 1, memory_order_relaxed);
		MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND,
		                          scan_arg, &t);
		if (!framing_ok(r, &t, version) || !early_checks(r, &t))
			return queue(r);
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
	if (r->suspended) {
		/* Resumed: the node operation is done. */
		r->suspended = 0;
		r->render(r);
	} else {
		route_dispatch(r);
		if (r->suspended)
			return MHD_YES;
	}
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
	elapsed = kvs__mono_ns() - r->start_ns;
	metrics_record(route_id(r->ep), r->status, elapsed);
	atomic_fetch_add_explicit(&s->requests, 1, memory_order_relaxed);
	if (log_enabled(LL_DEBUG))
		log_msg(LL_DEBUG, "%s %.200s -> %u in %.3f ms%s",
		        method_name(r->method), r->url, r->status,
		        (double)elapsed / 1e6,
		        toe == MHD_REQUEST_TERMINATED_COMPLETED_OK
		                ? ""
		                : " (connection ended early)");
	if (r->resp != NULL)
		MHD_destroy_response(r->resp);
	if (r->ctx_free != NULL)
		r->ctx_free(r->ctx);
	free(r->body);
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

/*
 * libmicrohttpd reports each malformed request, refused connection and
 * the like: one line each would let anyone fill the log. A message (by
 * its format, i.e. its cause) is written at most once per
 * MHD_LOG_INTERVAL_MS; the next one written says how many were left out.
 */
#define MHD_LOG_INTERVAL_MS 10000u
#define MHD_LOG_CAUSES 32

static struct {
	pthread_mutex_t mu;
	struct {
		const char *fmt;
		uint64_t last_ms;
		unsigned long quiet; /* left out since last_ms */
	} cause[MHD_LOG_CAUSES];
} mhd_logs = {PTHREAD_MUTEX_INITIALIZER, {{NULL, 0, 0}}};

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	uint64_t now = kvs__mono_ms();
	unsigned long quiet = 0;
	char msg[512];
	size_t i;

	(void)cls;
	pthread_mutex_lock(&mhd_logs.mu);
	for (i = 0; i < MHD_LOG_CAUSES && mhd_logs.cause[i].fmt != NULL &&
	            mhd_logs.cause[i].fmt != fmt;
	     i++)
		;
	if (i == MHD_LOG_CAUSES) {
		i = MHD_LOG_CAUSES - 1; /* a full table shares its last place */
	} else if (mhd_logs.cause[i].fmt == NULL) {
		mhd_logs.cause[i].fmt = fmt;
		mhd_logs.cause[i].last_ms = now - MHD_LOG_INTERVAL_MS;
	}
	if (now - mhd_logs.cause[i].last_ms < MHD_LOG_INTERVAL_MS) {
		mhd_logs.cause[i].quiet++;
		pthread_mutex_unlock(&mhd_logs.mu);
		return;
	}
	quiet = mhd_logs.cause[i].quiet;
	mhd_logs.cause[i].quiet = 0;
	mhd_logs.cause[i].last_ms = now;
	pthread_mutex_unlock(&mhd_logs.mu);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (quiet > 0)
		log_msg(LL_WARN, "http: %s (%lu more like it since the last)",
		        msg, quiet);
	else
		log_msg(LL_WARN, "http: %s", msg);
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
	        MHD_OPTION_PER_IP_CONNECTION_LIMIT,
	        s->cc->max_connections_per_client,
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
