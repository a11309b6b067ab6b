/*
 * http.c - the daemon: libmicrohttpd's connections and the life of each
 * request.
 *
 * libmicrohttpd calls the access handler several times per request: once
 * when the headers are in, once per chunk of body, and once more when the
 * request is complete. The first call only creates the request (answering
 * at once only for requests refused before their body: 411, 413, 414,
 * 503 overloaded, which close the connection); queueing a normal answer
 * on the first call would make libmicrohttpd 0.9 answer "Connection:
 * close" and lose keep-alive. The last call dispatches to the endpoint
 * (router.c), whose handler answers before returning, or starts a node
 * operation and suspends the connection (request.c); the operation's
 * completion resumes it, libmicrohttpd calls the handler once more, and
 * the answer is built then, on this thread, and queued.
 *
 * Each step tells guard.c, which keeps the connection caps, the deadlines
 * of a request's headers and body, and the budget of bodies held.
 */
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "metrics.h"
#include "server.h"

/* A chunked body's first buffer; it doubles as the body grows. */
#define CHUNKED_BODY_START 4096u
/* Retry-After of a 503 overloaded, in seconds: bodies held are released
 * as their requests finish. */
#define OVERLOAD_RETRY_AFTER_S "1"

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
	/* The answer no longer needs the epoch's node (what it holds is
	 * the request's own), so a client slow to read it does not keep an
	 * old epoch open. A link keeps it until it is handed over. */
	if (r->status != 101) {
		view_put(r->view);
		r->view = NULL;
	}
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

/* Answer 503 overloaded: the bodies held would pass max_buffered_bytes. */
static void reply_overloaded(struct req *r)
{
	reply_error(r, KVS_EOVERLOAD,
	            "request bodies held in memory would pass "
	            "max_buffered_bytes (%zu bytes); retry later",
	            r->srv->cc->max_buffered_bytes);
	reply_header(r, MHD_HTTP_HEADER_RETRY_AFTER, OVERLOAD_RETRY_AFTER_S);
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
		if (errno == 0 && *end == '\0' &&
		    n > r->srv->cc->max_buffered_bytes) {
			reply_error(r, KVS_EVALSIZE,
			            "the request body (%llu bytes) is larger "
			            "than max_buffered_bytes (%zu)",
			            n, r->srv->cc->max_buffered_bytes);
			return 0;
		}
		if (errno == 0 && *end == '\0' && n > 0) {
			/* Nobody holds a place in the budget for a body
			 * that would be refused anyway. */
			if (!route_admit(r))
				return 0;
			if (!guard_reserve(r->srv, (size_t)n)) {
				reply_overloaded(r);
				return 0;
			}
			r->reserved = (size_t)n;
			r->body = malloc((size_t)n + 1);
			if (r->body == NULL) {
				reply_fail(r, KVS_ENOMEM, "reading the body");
				return 0;
			}
			r->body_cap = (size_t)n + 1;
		}
	} else if (te != NULL && strcasecmp(te, "chunked") == 0) {
		if (!route_admit(r))
			return 0;
	} else if (route_needs_length(r->ep, r->method)) {
		reply_error(r, KVS_ELENGTH,
		            "PUT needs a Content-Length (0 for an empty value) "
		            "or a chunked body");
		return 0;
	}
	return 1;
}

/* Take a piece of the body; past the limit or the budget, remember and
 * discard. */
static void take_body(struct req *r, const char *data, size_t len)
{
	if (r->over_budget)
		return;
	if (r->body_too_big || r->body_len + len > r->body_limit) {
		r->body_too_big = 1;
		return;
	}
	if (r->body_len + len + 1 > r->body_cap) {
		size_t cap = r->body_cap ? r->body_cap : CHUNKED_BODY_START;
		char *b;
		int ok;

		while (cap < r->body_len + len + 1)
			cap *= 2;
		if (cap > r->body_limit + 1)
			cap = r->body_limit + 1;
		if (r->body_len + len + 1 > r->srv->cc->max_buffered_bytes) {
			/* Larger than the whole budget: never, not later. */
			r->body_too_big = 1;
			r->body_limit = r->srv->cc->max_buffered_bytes - 1;
			return;
		}
		if (cap > r->srv->cc->max_buffered_bytes)
			cap = r->srv->cc->max_buffered_bytes;
		/* A chunked body: what it holds grows with its buffer; when
		 * the doubled buffer does not fit, what it needs now may. */
		ok = guard_try_reserve(r->srv, cap - r->body_cap);
		if (!ok) {
			cap = r->body_len + len + 1;
			ok = guard_reserve(r->srv, cap - r->body_cap);
		}
		if (!ok) {
			r->over_budget = 1;
			free(r->body);
			r->body = NULL;
			r->body_len = r->body_cap = 0;
			guard_release(r->reserved);
			r->reserved = 0;
			return;
		}
		r->reserved += cap - r->body_cap;
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

/* The deadlines of conn (guard.c), or NULL. */
static struct guard_conn *socket_context_of(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(
	        conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return ci != NULL ? ci->socket_context : NULL;
}

/*
 * Writes the store refused for lack of room (507 storage_full), whoever
 * asked for them (a client, a peer, anti-entropy): logged from here, at
 * most once per interval, with how many since the last line. Checked as
 * each request that may write completes, while the node is surely open.
 */
static void report_full_store(const struct server *s, kvs__node *node)
{
	static _Atomic uint64_t seen_map, seen_fs;
	static const char cause = 0; /* the rate limit's key */
	uint64_t map, fs, m0, f0;

	kvs__node_full_writes(node, &map, &fs);
	m0 = atomic_load_explicit(&seen_map, memory_order_relaxed);
	f0 = atomic_load_explicit(&seen_fs, memory_order_relaxed);
	if ((map == m0 && fs == f0) || !log_limit_take(&cause, NULL))
		return;
	m0 = atomic_exchange(&seen_map, map);
	f0 = atomic_exchange(&seen_fs, fs);
	if (map > m0)
		log_msg(LL_ERROR,
		        "storage full: %llu writes refused (507 storage_full) "
		        "since the last report: the store's map reached "
		        "max_map_size (%zu bytes); raise it, or delete data",
		        (unsigned long long)(map - m0), s->cc->max_map_size);
	if (fs > f0)
		log_msg(LL_ERROR,
		        "storage full: %llu writes refused (507 storage_full) "
		        "since the last report: the filesystem of the store "
		        "has no room left; free some space",
		        (unsigned long long)(fs - f0));
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
		r->track = socket_context_of(conn);
		r->role = route_role_of(r);
		*con_cls = r;
		atomic_fetch_add_explicit(&s->inflight, 1, memory_order_relaxed);
		/* The headers are in: the body's clock starts. */
		guard_headers_in(s, r->track);
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
	} else if (r->over_budget) {
		guard_body_in(r->track);
		reply_overloaded(r);
	} else {
		guard_body_in(r->track);
		/* The epoch it runs on, now that its body is in (a slow
		 * upload does not keep an old epoch open). */
		r->view = view_get(s);
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
	int may_write, upgraded;

	(void)conn;
	if (r == NULL)
		return;
	may_write = !(r->method & (M_GET | M_HEAD));
	upgraded = r->upgraded;
	elapsed = kvs__mono_ns() - r->start_ns;
	/* A link's lifetime is no request's latency. */
	if (!upgraded)
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
	guard_release(r->reserved);
	/* The next request's clock starts (guard.c). */
	guard_answered(s, r->track);
	*con_cls = NULL;
	/* Not once stopping: the node may be closed already (main.c
	 * closes it before the daemon, whose connections still end). */
	if (may_write && toe != MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN &&
	    !atomic_load(&s->stopping)) {
		struct view *v = view_get(s); /* the store is every view's */

		report_full_store(s, v->node);
		view_put(v);
	}
	view_put(r->view); /* not answered (or a link not handed over) */
	free(r);
	if (!upgraded) /* a link was counted out when it began */
		atomic_fetch_sub_explicit(&s->inflight, 1, memory_order_relaxed);
}

static void on_connection(void *cls, struct MHD_Connection *conn,
                          void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
	struct server *s = cls;

	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *fd = MHD_get_connection_info(
		        conn, MHD_CONNECTION_INFO_CONNECTION_FD);
		const union MHD_ConnectionInfo *addr = MHD_get_connection_info(
		        conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
		const struct sockaddr *sa = addr != NULL ? addr->client_addr
		                                         : NULL;

		atomic_fetch_add_explicit(&s->connections, 1, memory_order_relaxed);
		if (fd != NULL)
			*socket_context = guard_open(
			        s, fd->connect_fd, sa,
			        sa != NULL && sa->sa_family == AF_INET6
			                ? sizeof(struct sockaddr_in6)
			                : sizeof(struct sockaddr_in));
	} else {
		/* Before libmicrohttpd closes the socket (guard.c). */
		guard_close(*socket_context);
		*socket_context = NULL;
		atomic_fetch_sub_explicit(&s->connections, 1, memory_order_relaxed);
	}
}

/* The accept policy: the connection caps (guard.c). */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr,
                                 socklen_t addrlen)
{
	return guard_admit(cls, addr, addrlen) ? MHD_YES : MHD_NO;
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
 * LOG_LIMIT_INTERVAL_MS; the next one written says how many were left out.
 */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	log_vlimited(LL_WARN, "http: ", fmt, ap);
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
	struct MHD_OptionItem tls[4];

	/* Any epoch's node may serve links (one shard has none; a second
	 * may come): the handler answers 501 when the node serves none. */
	if (s->cc->peer_links && s->tls_cert_pem == NULL)
		flags |= MHD_ALLOW_UPGRADE;
	size_t n = 0;

	if (s->tls_cert_pem != NULL) {
		flags |= MHD_USE_TLS;
		tls[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0,
		                                   s->tls_cert_pem};
		tls[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0,
		                                   s->tls_key_pem};
		if (s->tls_ca_pem != NULL)
			tls[n++] = (struct MHD_OptionItem){
			        MHD_OPTION_HTTPS_MEM_TRUST, 0, s->tls_ca_pem};
	}
	tls[n] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};

	s->daemon = MHD_start_daemon(
	        flags, 0, on_accept, s, on_access, s,
	        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
	        MHD_OPTION_LISTEN_SOCKET, listen_fd,
	        MHD_OPTION_THREAD_POOL_SIZE, s->threads,
	        /* The caps are on_accept's (guard.c): libmicrohttpd's
	         * limit is only a backstop above them. */
	        MHD_OPTION_CONNECTION_LIMIT,
	        s->cc->max_connections + s->threads,
	        MHD_OPTION_CONNECTION_TIMEOUT, s->cc->idle_timeout_s,
	        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)KVS_CONNECTION_MEMORY,
	        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
	        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
	        MHD_OPTION_UNESCAPE_CALLBACK, unescape_nothing, NULL,
	        MHD_OPTION_ARRAY, tls,
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
	guard_stop();
}
