/*
 * transport.c - HTTP to peers over libcurl.
 *
 * Synchronous requests take a curl easy handle from a pool, perform, and
 * put it back: a handle keeps its connections open, so a thread that sends
 * request after request reuses one connection.
 *
 * Asynchronous requests are queued to one thread that owns a curl multi
 * handle. The thread waits in curl_multi_poll(); submitting wakes it with
 * curl_multi_wakeup(). It adds queued transfers, drives them, and runs each
 * completion callback on its own stack. The multi handle keeps a cache of
 * open connections to every peer, bounded per host, so concurrent requests
 * to one peer share a few long-lived connections.
 *
 * The same thread runs timers (kvs__transport_timer, timers.h), whose
 * earliest bounds the poll.
 *
 * curl is initialised once per process (curl_global_init is not
 * thread-safe in old versions, so the first transport does it under a
 * pthread_once).
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kvshard/common.h"
#include "op.h"
#include "timers.h"
#include "transport.h"
#include "util.h"

#define EASY_POOL_MAX 64
#define DEFAULT_MAX_HOST_CONNECTIONS 64
#define MAX_CACHED_CONNECTIONS 512
#define POLL_TIMEOUT_MS 1000
#define USER_AGENT "kvshard/" KVS_VERSION_STRING
/* First size of a response's body and header buffers: most answers
 * between nodes fit, so they are allocated once. */
#define FIRST_BUFFER 1024

/* One transfer, synchronous or asynchronous, with its own copy of the
 * request (the body excepted). */
struct xfer {
	CURL *easy;
	struct curl_slist *hdrs;
	char *url;
	char method[8];
	const void *body;
	size_t body_len;
	long timeout_ms;
	kvs__http_response resp;
	size_t body_cap;
	size_t headers_cap;
	size_t max_body;
	int too_big;
	kvs__http_cb cb;
	void *ud;
	struct xfer *next;
	struct xfer *prev; /* in the engine's list of transfers in flight */
};

struct kvs__transport {
	kvs__transport_options o;
	char *extra_header;
	char *tls_ca, *tls_cert, *tls_key; /* copies of o's */

	pthread_mutex_t pool_mu;
	CURL *pool[EASY_POOL_MAX];
	size_t pool_len;

	/* The asynchronous engine. Only its thread touches multi, active
	 * and spare. */
	CURLM *multi;
	struct xfer *active;
	CURL *spare[EASY_POOL_MAX];
	size_t n_spare;
	pthread_t thread;
	pthread_mutex_t mu;
	struct xfer *queue;
	struct xfer **queue_tail;
	kvs__timers timers; /* run by the thread */
	int closing;
	int started;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static int curl_init_rc;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

void kvs__http_response_clear(kvs__http_response *r)
{
	free(r->body);
	free(r->headers);
	memset(r, 0, sizeof(*r));
}

const char *kvs__http_header(const kvs__http_response *r, const char *name,
                             size_t *len)
{
	size_t nlen = strlen(name);
	const char *p = r->headers, *end = r->headers + r->headers_len;

	if (p == NULL)
		return NULL;
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *line_end = eol ? eol : end;

		if ((size_t)(line_end - p) > nlen && p[nlen] == ':' &&
		    strncasecmp(p, name, nlen) == 0) {
			const char *v = p + nlen + 1;

			while (v < line_end && (*v == ' ' || *v == '\t'))
				v++;
			while (line_end > v &&
			       (line_end[-1] == '\r' || line_end[-1] == ' '))
				line_end--;
			*len = (size_t)(line_end - v);
			return v;
		}
		p = eol ? eol + 1 : end;
	}
	return NULL;
}

static int grow(char **buf, size_t *cap, size_t need)
{
	size_t n = *cap ? *cap : FIRST_BUFFER;
	char *b;

	while (n < need)
		n *= 2;
	if (n == *cap)
		return 0;
	b = realloc(*buf, n);
	if (b == NULL)
		return -1;
	*buf = b;
	*cap = n;
	return 0;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
	struct xfer *x = ud;
	size_t n = size * nmemb;

	if (x->max_body != 0 && x->resp.body_len + n > x->max_body) {
		x->too_big = 1;
		return 0; /* abort the transfer */
	}
	if (grow(&x->resp.body, &x->body_cap, x->resp.body_len + n + 1) != 0)
		return 0;
	memcpy(x->resp.body + x->resp.body_len, data, n);
	x->resp.body_len += n;
	x->resp.body[x->resp.body_len] = '\0';
	return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *ud)
{
	struct xfer *x = ud;
	size_t n = size * nmemb;

	/* A new status line starts a new block (after 100 Continue). */
	if (n >= 5 && memcmp(data, "HTTP/", 5) == 0)
		x->resp.headers_len = 0;
	if (grow(&x->resp.headers, &x->headers_cap,
	         x->resp.headers_len + n + 1) != 0)
		return 0;
	memcpy(x->resp.headers + x->resp.headers_len, data, n);
	x->resp.headers_len += n;
	x->resp.headers[x->resp.headers_len] = '\0';
	return n;
}

/* Copy what x needs of req (headers, URL, method). */
static int xfer_init(kvs__transport *t, struct xfer *x,
                     const kvs__http_request *req)
{
	size_t mlen = strlen(req->method);

	if (mlen == 0 || mlen >= sizeof(x->method) || req->url == NULL ||
	    req->n_headers > KVS_TRANSPORT_MAX_HEADERS)
		return KVS_EINVAL;
	memcpy(x->method, req->method, mlen + 1);
	x->body = req->body;
	x->body_len = req->body_len;
	x->timeout_ms = (long)(req->timeout_ms ? req->timeout_ms
	                                       : t->o.request_timeout_ms);
	x->max_body = req->max_body;
	x->url = strdup(req->url);
	/* No "Expect: 100-continue" round trip for large bodies. */
	x->hdrs = curl_slist_append(NULL, "Expect:");
	if (x->hdrs != NULL && t->extra_header != NULL)
		x->hdrs = curl_slist_append(x->hdrs, t->extra_header);
	for (size_t i = 0; x->hdrs != NULL && i < req->n_headers; i++)
		x->hdrs = curl_slist_append(x->hdrs, req->headers[i]);
	if (x->hdrs == NULL || x->url == NULL)
		return KVS_ENOMEM;
	return KVS_OK;
}

static void xfer_release(struct xfer *x)
{
	curl_slist_free_all(x->hdrs);
	x->hdrs = NULL;
	free(x->url);
	x->url = NULL;
}

/* Configure x->easy (fresh or reset) for the request copied into x. */
static void setup_easy(kvs__transport *t, struct xfer *x)
{
	CURL *e = x->easy;

	curl_easy_setopt(e, CURLOPT_URL, x->url);
	/* Peers are reached directly: no proxy, and no look-up of the proxy
	 * environment variables on every transfer. */
	curl_easy_setopt(e, CURLOPT_PROXY, "");
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	if (t->tls_ca != NULL)
		curl_easy_setopt(e, CURLOPT_CAINFO, t->tls_ca);
	if (t->tls_cert != NULL) {
		curl_easy_setopt(e, CURLOPT_SSLCERT, t->tls_cert);
		curl_easy_setopt(e, CURLOPT_SSLKEY, t->tls_key);
	}
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
	                 (long)t->o.connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, x->timeout_ms);
	curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(e, CURLOPT_USERAGENT, USER_AGENT);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(e, CURLOPT_PRIVATE, x);
	if (strcmp(x->method, "HEAD") == 0) {
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	} else if (strcmp(x->method, "GET") != 0) {
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, x->method);
		if (x->body != NULL || strcmp(x->method, "PUT") == 0 ||
		    strcmp(x->method, "POST") == 0) {
			curl_easy_setopt(e, CURLOPT_POSTFIELDS,
			                 x->body ? x->body : "");
			curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
			                 (curl_off_t)x->body_len);
		}
	}
}

static int map_curl_error(CURL *e, CURLcode cc, int too_big)
{
	curl_off_t connected = 0;

	if (too_big)
		return KVS_EPROTO;
	switch (cc) {
	case CURLE_OK:
		return KVS_OK;
	case CURLE_OPERATION_TIMEDOUT:
		/* A timeout before the connection was up is "unreachable". */
		curl_easy_getinfo(e, CURLINFO_CONNECT_TIME_T, &connected);
		return connected ? KVS_ETIMEDOUT : KVS_ECONNECT;
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_SSL_CONNECT_ERROR:
		return KVS_ECONNECT;
	case CURLE_OUT_OF_MEMORY:
		return KVS_ENOMEM;
	default:
		return KVS_EPROTO;
	}
}

/* Fill x->resp after a transfer ended with cc. */
static void finish_xfer(struct xfer *x, CURLcode cc)
{
	long sent_bytes = 0;

	x->resp.rc = map_curl_error(x->easy, cc, x->too_big);
	/* Bytes of the request handed to a connection: once there are any,
	 * the peer may have acted on it whatever became of the answer. */
	curl_easy_getinfo(x->easy, CURLINFO_REQUEST_SIZE, &sent_bytes);
	x->resp.sent = cc == CURLE_OK || sent_bytes > 0;
	if (x->resp.rc == KVS_OK)
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &x->resp.status);
	xfer_release(x);
}

/* ------------------------------------------------------------------ */
/* Synchronous path                                                     */

static CURL *easy_get(kvs__transport *t)
{
	CURL *e = NULL;

	pthread_mutex_lock(&t->pool_mu);
	if (t->pool_len > 0)
		e = t->pool[--t->pool_len];
	pthread_mutex_unlock(&t->pool_mu);
	if (e != NULL)
		curl_easy_reset(e); /* keeps the connection cache */
	else
		e = curl_easy_init();
	return e;
}

static void easy_put(kvs__transport *t, CURL *e)
{
	pthread_mutex_lock(&t->pool_mu);
	if (t->pool_len < EASY_POOL_MAX) {
		t->pool[t->pool_len++] = e;
		e = NULL;
	}
	pthread_mutex_unlock(&t->pool_mu);
	if (e != NULL)
		curl_easy_cleanup(e);
}

void kvs__transport_request(kvs__transport *t, const kvs__http_request *req,
                            kvs__http_response *resp)
{
	struct xfer x;
	int rc;

	memset(&x, 0, sizeof(x));
	rc = xfer_init(t, &x, req);
	if (rc == KVS_OK) {
		x.easy = easy_get(t);
		if (x.easy == NULL)
			rc = KVS_ENOMEM;
	}
	if (rc != KVS_OK) {
		xfer_release(&x);
		memset(resp, 0, sizeof(*resp));
		resp->rc = rc;
		return;
	}
	setup_easy(t, &x);
	finish_xfer(&x, curl_easy_perform(x.easy));
	easy_put(t, x.easy);
	*resp = x.resp;
}

/* ------------------------------------------------------------------ */
/* Asynchronous path                                                    */

/* Hand the answer to the callback and recycle the easy handle. */
static void complete_xfer(kvs__transport *t, struct xfer *x, int fail_rc)
{
	kvs__http_response resp = x->resp;

	if (fail_rc != KVS_OK) {
		xfer_release(x);
		resp.rc = fail_rc;
	}
	if (x->easy != NULL) {
		if (t->n_spare < EASY_POOL_MAX) {
			curl_easy_reset(x->easy);
			t->spare[t->n_spare++] = x->easy;
		} else {
			curl_easy_cleanup(x->easy);
		}
	}
	x->cb(x->ud, &resp);
	free(x);
}

static void active_add(kvs__transport *t, struct xfer *x)
{
	x->prev = NULL;
	x->next = t->active;
	if (t->active != NULL)
		t->active->prev = x;
	t->active = x;
}

static void active_remove(kvs__transport *t, struct xfer *x)
{
	if (x->prev != NULL)
		x->prev->next = x->next;
	else
		t->active = x->next;
	if (x->next != NULL)
		x->next->prev = x->prev;
}

/* Start a queued transfer on the multi handle. */
static void start_xfer(kvs__transport *t, struct xfer *x)
{
	x->easy = t->n_spare > 0 ? t->spare[--t->n_spare] : curl_easy_init();
	if (x->easy == NULL) {
		complete_xfer(t, x, KVS_ENOMEM);
		return;
	}
	setup_easy(t, x);
	if (curl_multi_add_handle(t->multi, x->easy) != CURLM_OK) {
		complete_xfer(t, x, KVS_ENOMEM);
		return;
	}
	active_add(t, x);
}

/* ------------------------------------------------------------------ */
/* Timers                                                               */

int kvs__transport_timer(kvs__transport *t, unsigned ms, kvs__timer_cb cb,
                         void *ud)
{
	int earliest, rc;

	if (t->o.sync_only)
		return KVS_ENOTSUP;
	rc = kvs__timers_add(&t->timers, ms, cb, ud, &earliest);
	if (rc == KVS_OK && earliest)
		curl_multi_wakeup(t->multi); /* the poll must end sooner */
	return rc;
}

static void *engine_main(void *arg)
{
	kvs__transport *t = arg;
	int running = 0;

	pthread_setname_np(pthread_self(), "kvs-http-out");
	for (;;) {
		struct xfer *q, *next;
		CURLMsg *msg;
		int left, closing;

		pthread_mutex_lock(&t->mu);
		q = t->queue;
		t->queue = NULL;
		t->queue_tail = &t->queue;
		closing = t->closing;
		pthread_mutex_unlock(&t->mu);
		for (; q != NULL; q = next) {
			next = q->next;
			if (closing)
				complete_xfer(t, q, KVS_ECLOSED);
			else
				start_xfer(t, q);
		}
		if (closing)
			break;
		curl_multi_perform(t->multi, &running);
		while ((msg = curl_multi_info_read(t->multi, &left)) != NULL) {
			struct xfer *x = NULL;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
			                  (char **)&x);
			finish_xfer(x, msg->data.result);
			curl_multi_remove_handle(t->multi, x->easy);
			active_remove(t, x);
			complete_xfer(t, x, KVS_OK);
		}
		curl_multi_poll(t->multi, NULL, 0,
		                (int)kvs__timers_run(&t->timers, POLL_TIMEOUT_MS),
		                NULL);
	}
	/* Fail whatever is still in flight. */
	while (t->active != NULL) {
		struct xfer *x = t->active;

		curl_multi_remove_handle(t->multi, x->easy);
		active_remove(t, x);
		x->resp.sent = 1; /* it was under way: it may have arrived */
		complete_xfer(t, x, KVS_ECLOSED);
	}
	for (size_t i = 0; i < t->n_spare; i++)
		curl_easy_cleanup(t->spare[i]);
	t->n_spare = 0;
	/* Timers end early: whoever set one is told, and frees what it
	 * holds; new ones are refused. */
	kvs__timers_close(&t->timers);
	return NULL;
}

int kvs__transport_submit(kvs__transport *t, const kvs__http_request *req,
                          kvs__http_cb cb, void *ud)
{
	struct xfer *x;
	int rc;

	if (t == NULL || req == NULL || cb == NULL)
		return KVS_EINVAL;
	if (t->o.sync_only)
		return KVS_ENOTSUP;
	x = calloc(1, sizeof(*x));
	if (x == NULL)
		return KVS_ENOMEM;
	rc = xfer_init(t, x, req);
	if (rc != KVS_OK) {
		xfer_release(x);
		free(x);
		return rc;
	}
	x->cb = cb;
	x->ud = ud;
	pthread_mutex_lock(&t->mu);
	if (t->closing) {
		pthread_mutex_unlock(&t->mu);
		xfer_release(x);
		free(x);
		return KVS_ECLOSED;
	}
	x->next = NULL;
	*t->queue_tail = x;
	t->queue_tail = &x->next;
	pthread_mutex_unlock(&t->mu);
	curl_multi_wakeup(t->multi);
	return KVS_OK;
}

/* kvs__transport_parallel: one operation held by every request; the last
 * release wakes the waiting caller. */
struct fan {
	kvs__op op;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int finished;
};

struct fan_slot {
	struct fan *fan;
	kvs__http_response *out;
};

static void fan_finished(kvs__op *op)
{
	struct fan *f = (struct fan *)op;

	pthread_mutex_lock(&f->mu);
	f->finished = 1;
	pthread_cond_signal(&f->cv);
	pthread_mutex_unlock(&f->mu);
}

static void fan_done(void *ud, kvs__http_response *resp)
{
	struct fan_slot *s = ud;

	*s->out = *resp;
	kvs__op_release(&s->fan->op);
}

void kvs__transport_parallel(kvs__transport *t,
                             const kvs__http_request *reqs, size_t n,
                             kvs__http_response *resps)
{
	struct fan f;
	struct fan_slot *slots;

	if (n == 0)
		return;
	if (n == 1) {
		kvs__transport_request(t, &reqs[0], &resps[0]);
		return;
	}
	slots = calloc(n, sizeof(*slots));
	if (slots == NULL) {
		for (size_t i = 0; i < n; i++) {
			memset(&resps[i], 0, sizeof(resps[i]));
			resps[i].rc = KVS_ENOMEM;
		}
		return;
	}
	pthread_mutex_init(&f.mu, NULL);
	pthread_cond_init(&f.cv, NULL);
	f.finished = 0;
	kvs__op_init(&f.op, fan_finished);
	for (size_t i = 0; i < n; i++) {
		int rc;

		memset(&resps[i], 0, sizeof(resps[i]));
		slots[i].fan = &f;
		slots[i].out = &resps[i];
		kvs__op_hold(&f.op);
		rc = kvs__transport_submit(t, &reqs[i], fan_done, &slots[i]);
		if (rc != KVS_OK) {
			kvs__http_response r = {0};

			r.rc = rc;
			fan_done(&slots[i], &r);
		}
	}
	kvs__op_release(&f.op);
	pthread_mutex_lock(&f.mu);
	while (!f.finished)
		pthread_cond_wait(&f.cv, &f.mu);
	pthread_mutex_unlock(&f.mu);
	pthread_cond_destroy(&f.cv);
	pthread_mutex_destroy(&f.mu);
	free(slots);
}

/* ------------------------------------------------------------------ */

static void free_copies(kvs__transport *t)
{
	free(t->extra_header);
	free(t->tls_ca);
	free(t->tls_cert);
	free(t->tls_key);
}

/* Copy an optional string: 0 when out of memory. */
static int dup_opt(const char *s, char **out)
{
	*out = s != NULL ? strdup(s) : NULL;
	return s == NULL || *out != NULL;
}

int kvs__transport_new(kvs__transport **out, const kvs__transport_options *opts)
{
	kvs__transport *t;

	*out = NULL;
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != 0)
		return KVS_ESYS;
	t = calloc(1, sizeof(*t));
	if (t == NULL)
		return KVS_ENOMEM;
	if (kvs__timers_init(&t->timers) != KVS_OK) {
		free(t);
		return KVS_ENOMEM;
	}
	if (opts != NULL)
		t->o = *opts;
	if (t->o.connect_timeout_ms == 0)
		t->o.connect_timeout_ms = KVS__TRANSPORT_CONNECT_TIMEOUT_MS;
	if (t->o.request_timeout_ms == 0)
		t->o.request_timeout_ms = KVS__TRANSPORT_REQUEST_TIMEOUT_MS;
	if (t->o.max_host_connections == 0)
		t->o.max_host_connections = DEFAULT_MAX_HOST_CONNECTIONS;
	if (!dup_opt(t->o.extra_header, &t->extra_header) ||
	    !dup_opt(t->o.tls_ca, &t->tls_ca) ||
	    !dup_opt(t->o.tls_cert, &t->tls_cert) ||
	    !dup_opt(t->o.tls_key != NULL ? t->o.tls_key : t->o.tls_cert,
	             &t->tls_key))
		goto fail;
	pthread_mutex_init(&t->pool_mu, NULL);
	pthread_mutex_init(&t->mu, NULL);
	t->queue_tail = &t->queue;
	t->multi = curl_multi_init();
	if (t->multi == NULL)
		goto fail;
	curl_multi_setopt(t->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
	                  (long)t->o.max_host_connections);
	curl_multi_setopt(t->multi, CURLMOPT_MAXCONNECTS,
	                  (long)MAX_CACHED_CONNECTIONS);
	if (!t->o.sync_only) {
		if (pthread_create(&t->thread, NULL, engine_main, t) != 0)
			goto fail;
		t->started = 1;
	}
	*out = t;
	return KVS_OK;
fail:
	if (t->multi != NULL)
		curl_multi_cleanup(t->multi);
	kvs__timers_free(&t->timers);
	free_copies(t);
	free(t);
	return KVS_ENOMEM;
}

void kvs__transport_free(kvs__transport *t)
{
	if (t == NULL)
		return;
	pthread_mutex_lock(&t->mu);
	t->closing = 1;
	pthread_mutex_unlock(&t->mu);
	curl_multi_wakeup(t->multi);
	if (t->started)
		pthread_join(t->thread, NULL);
	curl_multi_cleanup(t->multi);
	for (size_t i = 0; i < t->pool_len; i++)
		curl_easy_cleanup(t->pool[i]);
	pthread_mutex_destroy(&t->pool_mu);
	pthread_mutex_destroy(&t->mu);
	kvs__timers_free(&t->timers);
	free_copies(t);
	free(t);
}
