/*
 * peer.c - the peer protocol over HTTP: each message is one POST of a
 * request frame to the peer's /internal/ops, answered by a frame of
 * results (protocol.h); probes are frames of no operations. Requests
 * carry the cluster
 * secret when one is configured, and nothing the client sent: the node
 * that forwards a client's request has already checked its credentials.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peer.h"
#include "transport.h"
#include "util.h"

struct http_peers {
	kvs__peer_http_options o;
	char **ops_urls;  /* base URL + KVS_PATH_PEER, owned */
	char *secret_header;
	kvs__transport *t;
};

void kvs__panswer_free(kvs__panswer *a)
{
	if (a == NULL)
		return;
	if (a->res != &a->one)
		free(a->res);
	free(a->body);
	if (a->shared != NULL &&
	    atomic_fetch_sub(&a->shared->refs, 1) == 1) {
		free(a->shared->body);
		free(a->shared);
	}
	free(a);
}

void kvs__panswer_fill(kvs__panswer *a, char *body, size_t len, size_t n)
{
	a->body = body;
	a->res = calloc(n ? n : 1, sizeof(*a->res));
	if (a->res == NULL) {
		a->rc = KVS_ENOMEM;
		return;
	}
	a->rc = kvs__peer_res_decode(body, len, a->res, n);
	if (a->rc == KVS_OK) {
		a->n = n;
	} else {
		free(a->res);
		a->res = NULL;
	}
}

/* ------------------------------------------------------------------ */

struct sending {
	char *frame;
	size_t n;
	kvs__panswer *answer; /* allocated up front: never NULL for cb */
	kvs__peer_cb cb;
	void *ud;
};

static void sent(void *ud, kvs__http_response *resp)
{
	struct sending *s = ud;
	kvs__panswer *a = s->answer;

	if (resp->rc != KVS_OK) {
		a->rc = resp->rc;
		a->refused = !resp->sent;
	} else if (resp->status == 200) {
		kvs__panswer_fill(a, resp->body, resp->body_len, s->n);
		resp->body = NULL;
	} else {
		a->rc = kvs__error_of_body(resp->status, resp->body,
		                           resp->body_len);
		/* The peer checks the frame, its sender and its own state
		 * before serving any operation, and answers those with 4xx
		 * or 503; a 500 may come after it served them. */
		a->refused = (resp->status >= 400 && resp->status < 500) ||
		             resp->status == 503;
	}
	kvs__http_response_clear(resp);
	free(s->frame);
	s->cb(s->ud, a);
	free(s);
}

/* POST a frame (borrowed until cb) to shard peer's /internal/ops. */
static int post_frame(struct http_peers *p, size_t peer, const char *frame,
                      size_t len, unsigned timeout_ms, kvs__http_cb cb,
                      void *ud)
{
	kvs__http_request req;

	memset(&req, 0, sizeof(req));
	req.method = "POST";
	req.url = p->ops_urls[peer];
	req.headers[req.n_headers++] = "Content-Type: " KVS_TYPE_PEER;
	req.body = frame;
	req.body_len = len;
	req.timeout_ms = timeout_ms;
	return kvs__transport_submit(p->t, &req, cb, ud);
}

static int http_send(void *impl, size_t peer, char *frame, size_t len,
                     size_t n_ops, unsigned timeout_ms, kvs__peer_cb cb,
                     void *ud)
{
	struct http_peers *p = impl;
	struct sending *s;
	int rc;

	if (peer >= p->o.n_urls || n_ops == 0 || n_ops > KVS__PEER_MAX_OPS)
		return KVS_EINVAL;
	s = calloc(1, sizeof(*s));
	if (s != NULL)
		s->answer = calloc(1, sizeof(*s->answer));
	if (s == NULL || s->answer == NULL) {
		if (s != NULL)
			free(s->answer);
		free(s);
		return KVS_ENOMEM;
	}
	s->frame = frame;
	s->n = n_ops;
	s->cb = cb;
	s->ud = ud;
	rc = post_frame(p, peer, frame, len, timeout_ms, sent, s);
	if (rc != KVS_OK) {
		free(s->answer);
		free(s); /* the caller keeps the frame */
	}
	return rc;
}

/*
 * A probe is a ping: a frame of no operations to the peer endpoint, so
 * that "up" means what the node needs (the peer answers the peer protocol
 * and accepts our secret), and so that the peer learns we are alive.
 */
struct probing {
	char frame[KVS__PEER_REQ_HEAD + 1];
	kvs__probe_cb cb;
	void *ud;
};

static void probed(void *ud, kvs__http_response *resp)
{
	struct probing *pr = ud;
	int rc = resp->rc;

	if (rc == KVS_OK && resp->status != 200)
		rc = kvs__error_of_body(resp->status, resp->body, resp->body_len);
	kvs__http_response_clear(resp);
	pr->cb(pr->ud, rc);
	free(pr);
}

static int http_probe(void *impl, size_t peer, kvs__probe_cb cb, void *ud)
{
	struct http_peers *p = impl;
	struct probing *pr;
	kvs__buf b;
	int rc;

	if (peer >= p->o.n_urls)
		return KVS_EINVAL;
	pr = malloc(sizeof(*pr));
	if (pr == NULL)
		return KVS_ENOMEM;
	kvs__buf_init(&b, sizeof(pr->frame) - 1);
	kvs__peer_req_head(&b, p->o.self_idx, 0, 0); /* a probe: no ops */
	if (b.rc != KVS_OK) {
		kvs__buf_free(&b);
		free(pr);
		return KVS_ENOMEM;
	}
	memcpy(pr->frame, b.data, b.len);
	pr->cb = cb;
	pr->ud = ud;
	rc = post_frame(p, peer, pr->frame, b.len, p->o.probe_timeout_ms,
	                probed, pr);
	kvs__buf_free(&b);
	if (rc != KVS_OK)
		free(pr);
	return rc;
}

static void free_urls(char **urls, size_t n)
{
	for (size_t i = 0; urls != NULL && i < n; i++)
		free(urls[i]);
	free(urls);
}

static void http_free(void *impl)
{
	struct http_peers *p = impl;

	if (p == NULL)
		return;
	/* First: the transport completes what is in flight. */
	kvs__transport_free(p->t);
	free_urls(p->ops_urls, p->o.n_urls);
	free(p->secret_header);
	free(p);
}

int kvs__peer_http_new(void **impl, const kvs__peer_http_options *o)
{
	struct http_peers *p = calloc(1, sizeof(*p));
	kvs__transport_options to;
	size_t n = o->n_urls;
	int rc = KVS_ENOMEM;

	*impl = NULL;
	if (p == NULL)
		return KVS_ENOMEM;
	p->o = *o;
	p->o.urls = NULL;
	p->ops_urls = calloc(n, sizeof(char *));
	if (p->ops_urls == NULL)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		p->ops_urls[i] = kvs__concat(o->urls[i], KVS_PATH_PEER);
		if (p->ops_urls[i] == NULL)
			goto fail;
	}
	if (o->secret != NULL) {
		p->secret_header = kvs__concat(KVS_HDR_SECRET ": ", o->secret);
		if (p->secret_header == NULL)
			goto fail;
	}
	memset(&to, 0, sizeof(to));
	to.connect_timeout_ms = o->connect_timeout_ms;
	to.request_timeout_ms = o->request_timeout_ms;
	to.extra_header = p->secret_header;
	to.tls_ca = o->tls_ca;
	to.tls_cert = o->tls_cert;
	to.tls_key = o->tls_key;
	rc = kvs__transport_new(&p->t, &to);
	if (rc != KVS_OK)
		goto fail;
	*impl = p;
	return KVS_OK;
fail:
	http_free(p);
	return rc;
}

static int http_timer(void *impl, unsigned ms, kvs__peer_timer_cb cb,
                      void *ud)
{
	struct http_peers *p = impl;

	return kvs__transport_timer(p->t, ms, cb, ud);
}

const kvs__peer_ops kvs__peer_http_ops = {
	.send = http_send,
	.probe = http_probe,
	.timer = http_timer,
	.free = http_free,
};
