/*
 * link.c - the sending side of links (link.h): one connection to each
 * other shard, written by the senders, read by one thread.
 *
 * A frame is written by the thread that sends it, at once, under its
 * link's lock: sendmsg() of the head and the frame. What the socket does
 * not take waits in the link's out queue, which the reading thread flushes
 * when the socket can take more (EPOLLOUT). The frame's callback is kept,
 * under its id, until its answer comes back, its time is up, or the link
 * breaks.
 *
 * The reading thread also connects: a link that is down is tried again
 * after a back-off (50 ms, doubling up to 1 s), with a non-blocking
 * connect and the upgrade request of link.h. A peer that answers the
 * upgrade with anything but 101 (an older version, a wrong secret) is
 * tried again after 10 s; meanwhile, and whenever its link is not up,
 * frames go over HTTP.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "link.h"
#include "link_wire.h"
#include "protocol.h"
#include "timers.h"
#include "util.h"

#define TICK_MS 20
/* A link whose node closed is made again this soon after it drained. */
#define DRAINED_RETRY_MS 50u
#define BACKOFF_FIRST_MS 50
#define BACKOFF_MAX_MS 1000
#define REFUSED_RETRY_MS 10000
#define HELLO_ANSWER_MAX 4096
/* A link whose peer takes nothing more than this keeps no more: frames
 * beyond go over HTTP. */
#define OUT_MAX ((size_t)64 << 20)
/* Largest answer body (the peer answers are not capped: what a head can
 * say). */
#define ANSWER_MAX ((size_t)UINT32_MAX)

enum { L_DOWN, L_CONNECTING, L_HELLO, L_UP };

struct pend {
	uint32_t id;
	size_t n_ops;
	uint64_t deadline; /* kvs__mono_ms() */
	uint64_t start;    /* its head's offset in the stream of bytes */
	kvs__panswer *answer;
	kvs__peer_cb cb;
	void *ud;
	/* The frame, kept until answered: one certainly not served (the
	 * link broke before any of it left, or the node behind it is
	 * closing) goes again over HTTP. */
	char *frame;
	size_t len;
	size_t peer;
	unsigned timeout_ms;
};

struct lconn {
	struct links *L;
	size_t peer;
	pthread_mutex_t mu;
	int fd;
	_Atomic int state;
	/* The node behind it is closing (it refused a frame so): new frames
	 * go over HTTP; once nothing waits, the link is closed and made
	 * again, to whatever the peer's process runs next. */
	_Atomic int draining;
	struct kvs__wq out;
	uint64_t queued;  /* bytes given to the link since it came up */
	uint64_t written; /* of which the socket took these */
	int out_armed;
	struct pend *pend;
	size_t n_pend, cap_pend;
	uint32_t next_id;
	/* The reading thread's alone. */
	struct kvs__rq in;
	struct addrinfo *next_addr; /* in L->addrs[peer]; NULL: the first */
	uint64_t retry_at;
	uint64_t connect_deadline;
	unsigned backoff_ms;
};

struct links {
	kvs__peer_link_options o;
	char **hosts;
	uint16_t *ports;
	struct addrinfo **addrs; /* each peer's, resolved once */
	struct lconn *c;
	int ep, wake;
	pthread_t thread;
	int started;
	_Atomic int closing;
	_Atomic uint64_t frames; /* sent on links */
	/* The node's timers (speculative retries): run here, a thread that
	 * wakes for answers anyway, rather than on the HTTP transport's. */
	kvs__timers timers;
	int timers_ready;
};

/* ------------------------------------------------------------------ */

static void arm(struct links *L, struct lconn *c, int out)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN | EPOLLRDHUP | (out ? EPOLLOUT : 0);
	ev.data.ptr = c;
	epoll_ctl(L->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Take pending i out of c's list (c->mu held). The list stays in the
 * order the frames were sent, which is about the order answers come in:
 * an answer is found near the front. */
static struct pend pend_take(struct lconn *c, size_t i)
{
	struct pend p = c->pend[i];

	memmove(&c->pend[i], &c->pend[i + 1],
	        (c->n_pend - i - 1) * sizeof(*c->pend));
	c->n_pend--;
	return p;
}

static void pend_fail(struct pend *p, int rc, int refused)
{
	free(p->frame);
	p->frame = NULL;
	p->answer->rc = rc;
	p->answer->refused = refused;
	p->cb(p->ud, p->answer);
}

/*
 * A frame certainly not served: send it again over HTTP, to whatever
 * the peer's process runs now (a node closing refuses the frames of its
 * links while the process goes on with the next epoch's node), or fail
 * it as refused when that cannot be done.
 */
static void pend_again(struct links *L, struct pend *p, int rc)
{
	if (p->frame != NULL &&
	    L->o.http_ops->send(L->o.http, p->peer, p->frame, p->len, p->n_ops,
	                        p->timeout_ms, p->cb, p->ud) == KVS_OK) {
		free(p->answer); /* the frame is HTTP's now */
		return;
	}
	pend_fail(p, rc, 1);
}

/* The link broke, or never came up: what waited fails (reading thread). */
static void conn_down(struct lconn *c, unsigned retry_ms, int why)
{
	struct pend *p;
	size_t n;
	uint64_t written;

	pthread_mutex_lock(&c->mu);
	if (c->fd >= 0)
		close(c->fd); /* leaves the epoll set too */
	c->fd = -1;
	atomic_store(&c->state, L_DOWN);
	atomic_store(&c->draining, 0);
	p = c->pend;
	n = c->n_pend;
	written = c->written;
	c->pend = NULL;
	c->n_pend = c->cap_pend = 0;
	kvs__wq_reset(&c->out);
	c->out_armed = 0;
	c->queued = c->written = 0;
	pthread_mutex_unlock(&c->mu);
	kvs__rq_reset(&c->in);
	if (retry_ms == 0) {
		retry_ms = c->backoff_ms;
		c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS
		                        ? BACKOFF_MAX_MS
		                        : c->backoff_ms * 2;
	}
	c->retry_at = kvs__mono_ms() + retry_ms;
	/* A frame no byte of which left certainly was not served: it goes
	 * again over HTTP. The others may have been: they fail. */
	for (size_t i = 0; i < n; i++) {
		if (p[i].start >= written && why != KVS_ECLOSED)
			pend_again(c->L, &p[i], why);
		else
			pend_fail(&p[i], why, p[i].start >= written);
	}
	free(p);
}

/* Resolve peer's addresses (once: not on the reading thread's every
 * retry, which a slow resolver would stall). */
static struct addrinfo *resolve(const char *host, uint16_t port)
{
	struct addrinfo hints, *ai = NULL;
	char p[8];

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(p, sizeof(p), "%u", (unsigned)port);
	if (getaddrinfo(host, p, &hints, &ai) != 0)
		return NULL;
	return ai;
}

/* A peer whose host is gone (no FIN, no RST) ends its link within
 * seconds rather than TCP's quarter of an hour: keep-alive probes while
 * idle, and a bound on data left unacknowledged. */
static void tune(int fd)
{
	int one = 1, idle = 5, intvl = 2, cnt = 3;
	unsigned user_timeout_ms = 10000;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms,
	           sizeof(user_timeout_ms));
}

static void start_connect(struct links *L, struct lconn *c)
{
	struct addrinfo *ai;
	struct epoll_event ev;
	int fd = -1;

	if (L->addrs[c->peer] == NULL)
		L->addrs[c->peer] = resolve(L->hosts[c->peer], L->ports[c->peer]);
	/* Each attempt tries the next address the name has. */
	if (c->next_addr == NULL)
		c->next_addr = L->addrs[c->peer];
	ai = c->next_addr;
	if (ai == NULL)
		goto fail;
	c->next_addr = ai->ai_next;
	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
	            ai->ai_protocol);
	if (fd < 0)
		goto fail;
	tune(fd);
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 &&
	    errno != EINPROGRESS)
		goto fail;
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP;
	ev.data.ptr = c;
	if (epoll_ctl(L->ep, EPOLL_CTL_ADD, fd, &ev) != 0)
		goto fail;
	pthread_mutex_lock(&c->mu);
	c->fd = fd;
	atomic_store(&c->state, L_CONNECTING);
	pthread_mutex_unlock(&c->mu);
	c->connect_deadline = kvs__mono_ms() + L->o.connect_timeout_ms;
	return;
fail:
	if (fd >= 0)
		close(fd);
	conn_down(c, 0, KVS_ECONNECT);
}

/* Connected: ask for the link. */
static void send_hello(struct links *L, struct lconn *c)
{
	char hello[512];
	int err = 0, n, v6 = strchr(L->hosts[c->peer], ':') != NULL;
	socklen_t len = sizeof(err);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 ||
	    err != 0) {
		conn_down(c, 0, KVS_ECONNECT);
		return;
	}
	n = snprintf(hello, sizeof(hello),
	             "GET " KVS_PATH_LINK " HTTP/1.1\r\n"
	             "Host: %s%s%s:%u\r\n"
	             "Connection: Upgrade\r\n"
	             "Upgrade: " KVS__LINK_PROTOCOL "\r\n"
	             "%s%s%s"
	             "\r\n",
	             v6 ? "[" : "", L->hosts[c->peer], v6 ? "]" : "",
	             (unsigned)L->ports[c->peer],
	             L->o.secret != NULL ? KVS_HDR_SECRET ": " : "",
	             L->o.secret != NULL ? L->o.secret : "",
	             L->o.secret != NULL ? "\r\n" : "");
	/* An empty socket takes half a kilobyte whole. */
	if (n < 0 || (size_t)n >= sizeof(hello) ||
	    send(c->fd, hello, (size_t)n, MSG_NOSIGNAL) != n) {
		conn_down(c, 0, KVS_ECONNECT);
		return;
	}
	atomic_store(&c->state, L_HELLO);
	arm(L, c, 0);
}

/* The answer to the upgrade request is in c->in (reading thread). */
static void hello_answered(struct lconn *c)
{
	const char *end = memmem(c->in.buf, c->in.len, "\r\n\r\n", 4);
	size_t head;

	if (end == NULL) {
		if (c->in.len > HELLO_ANSWER_MAX)
			conn_down(c, REFUSED_RETRY_MS, KVS_ECONNECT);
		return;
	}
	head = (size_t)(end - c->in.buf) + 4;
	if (c->in.len < 13 || memcmp(c->in.buf, "HTTP/1.1 101 ", 13) != 0) {
		/* A stopping or busy peer (503) is asked again soon; one that
		 * will not give a link (another version, links off, a wrong
		 * secret), much later. */
		int busy = c->in.len >= 13 &&
		           memcmp(c->in.buf, "HTTP/1.1 503 ", 13) == 0;

		conn_down(c, busy ? 0 : REFUSED_RETRY_MS, KVS_ECONNECT);
		return;
	}
	kvs__rq_consume(&c->in, head);
	c->backoff_ms = BACKOFF_FIRST_MS;
	pthread_mutex_lock(&c->mu);
	atomic_store(&c->state, L_UP);
	pthread_mutex_unlock(&c->mu);
}

/* An answer came: its sender's callback runs here. */
static void answered(struct lconn *c, uint32_t id, int32_t rc,
                     const char *body, size_t len)
{
	struct pend p;
	size_t i;
	int found = 0;

	pthread_mutex_lock(&c->mu);
	for (i = 0; i < c->n_pend; i++) {
		if (c->pend[i].id == id) {
			p = pend_take(c, i);
			found = 1;
			break;
		}
	}
	pthread_mutex_unlock(&c->mu);
	if (id == 0 && rc == KVS_ESHUTDOWN) {
		/* The node behind the link is closing (a notice, no frame's
		 * answer): see draining. */
		atomic_store(&c->draining, 1);
		return;
	}
	if (!found)
		return; /* its time was up */
	if (rc == KVS_ESHUTDOWN) {
		/* Refused whole by a node that is closing. */
		atomic_store(&c->draining, 1);
		pend_again(c->L, &p, rc);
		return;
	}
	if (rc != KVS_OK) {
		/* The frame was refused whole, before any of it ran. */
		pend_fail(&p, rc, 1);
		return;
	}
	free(p.frame);
	p.frame = NULL;
	{
		char *copy = malloc(len ? len : 1);

		if (copy == NULL) {
			pend_fail(&p, KVS_ENOMEM, 0);
			return;
		}
		memcpy(copy, body, len);
		kvs__panswer_fill(p.answer, copy, len, p.n_ops);
	}
	p.cb(p.ud, p.answer);
}

static void readable(struct lconn *c)
{
	int rc = kvs__rq_read(&c->in, c->fd);
	struct kvs__link_msg m;
	size_t off = 0;

	if (atomic_load(&c->state) == L_HELLO) {
		if (rc >= 0)
			hello_answered(c);
		else
			conn_down(c, 0, KVS_ECONNECT);
		if (atomic_load(&c->state) != L_UP)
			return;
	}
	while (atomic_load(&c->state) == L_UP) {
		int got = kvs__link_next(&c->in, off, ANSWER_MAX, &m);

		if (got < 0) {
			conn_down(c, 0, KVS_ECONNECT);
			return;
		}
		if (got == 0)
			break;
		answered(c, m.id, m.rc, m.body, m.len);
		off += KVS__LINK_HEAD + m.len;
	}
	kvs__rq_consume(&c->in, off);
	if (rc < 0)
		conn_down(c, 0, KVS_ECONNECT);
}

static void writable(struct links *L, struct lconn *c)
{
	int rc;

	pthread_mutex_lock(&c->mu);
	rc = kvs__wq_flush(&c->out, c->fd, &c->written);
	if (rc == 1 && c->out_armed) {
		c->out_armed = 0;
		arm(L, c, 0);
	}
	pthread_mutex_unlock(&c->mu);
	if (rc < 0)
		conn_down(c, 0, KVS_ECONNECT);
}

static void on_event(struct links *L, struct lconn *c, uint32_t ev)
{
	switch (atomic_load(&c->state)) {
	case L_CONNECTING:
		if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))
			send_hello(L, c);
		break;
	case L_HELLO:
		if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP))
			readable(c);
		break;
	case L_UP:
		if (ev & EPOLLOUT)
			writable(L, c);
		if (atomic_load(&c->state) == L_UP &&
		    (ev & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)))
			readable(c);
		break;
	default:
		break;
	}
}

/* The frames of c whose time is up fail, in one pass however many. */
static void expire(struct lconn *c, uint64_t now)
{
	struct pend *late = NULL;
	size_t n_late = 0, kept = 0;

	pthread_mutex_lock(&c->mu);
	for (size_t j = 0; j < c->n_pend; j++)
		n_late += c->pend[j].deadline <= now;
	if (n_late > 0 && (late = malloc(n_late * sizeof(*late))) != NULL) {
		n_late = 0;
		for (size_t j = 0; j < c->n_pend; j++) {
			if (c->pend[j].deadline <= now)
				late[n_late++] = c->pend[j];
			else
				c->pend[kept++] = c->pend[j];
		}
		c->n_pend = kept;
	}
	pthread_mutex_unlock(&c->mu);
	/* Their answers may still come: then they are dropped. (Out of
	 * memory: the next tick tries again.) */
	for (size_t j = 0; late != NULL && j < n_late; j++)
		pend_fail(&late[j], KVS_ETIMEDOUT, 0);
	free(late);
}

/* Frames whose time is up fail; links due are tried (reading thread). */
static void tick(struct links *L, uint64_t now)
{
	for (size_t i = 0; i < L->o.n; i++) {
		struct lconn *c = &L->c[i];
		int state = atomic_load(&c->state);

		if (i == L->o.self)
			continue;
		if (state == L_DOWN && now >= c->retry_at) {
			start_connect(L, c);
			continue;
		}
		if ((state == L_CONNECTING || state == L_HELLO) &&
		    now >= c->connect_deadline) {
			conn_down(c, 0, KVS_ECONNECT);
			continue;
		}
		expire(c, now);
		if (state == L_UP && atomic_load(&c->draining)) {
			size_t waiting;

			pthread_mutex_lock(&c->mu);
			waiting = c->n_pend;
			pthread_mutex_unlock(&c->mu);
			if (waiting == 0)
				conn_down(c, DRAINED_RETRY_MS, KVS_ECLOSED);
		}
	}
}

static void *link_main(void *arg)
{
	struct links *L = arg;
	struct epoll_event evs[32];
	uint64_t last = 0;

	pthread_setname_np(pthread_self(), "kvs-links-out");
	while (!atomic_load(&L->closing)) {
		int n = epoll_wait(L->ep, evs, 32,
		                   (int)kvs__timers_run(&L->timers, TICK_MS));
		uint64_t now;

		for (int i = 0; i < n; i++) {
			if (evs[i].data.ptr == NULL) {
				uint64_t v;

				if (read(L->wake, &v, sizeof(v)) < 0)
					continue;
				continue;
			}
			on_event(L, evs[i].data.ptr, evs[i].events);
		}
		now = kvs__mono_ms();
		if (now - last >= TICK_MS) {
			tick(L, now);
			last = now;
		}
	}
	return NULL;
}

/* ------------------------------------------------------------------ */

static int link_send(void *impl, size_t peer, char *frame, size_t len,
                     size_t n_ops, unsigned timeout_ms, kvs__peer_cb cb,
                     void *ud)
{
	struct links *L = impl;
	struct lconn *c;
	struct pend *p;
	unsigned char head[KVS__LINK_HEAD];
	kvs__panswer *answer;
	int rc;

	if (peer >= L->o.n || n_ops == 0 || n_ops > KVS__PEER_MAX_OPS ||
	    len > UINT32_MAX)
		return KVS_EINVAL;
	c = &L->c[peer];
	if (atomic_load_explicit(&c->state, memory_order_relaxed) != L_UP ||
	    atomic_load_explicit(&c->draining, memory_order_relaxed))
		goto http;
	answer = calloc(1, sizeof(*answer));
	if (answer == NULL)
		return KVS_ENOMEM;
	pthread_mutex_lock(&c->mu);
	if (atomic_load(&c->state) != L_UP || atomic_load(&c->draining) ||
	    c->out.len - c->out.off > OUT_MAX)
		goto http_locked;
	if (c->n_pend == c->cap_pend) {
		size_t cap = c->cap_pend ? 2 * c->cap_pend : 16;
		struct pend *g = realloc(c->pend, cap * sizeof(*g));

		if (g == NULL)
			goto http_locked;
		c->pend = g;
		c->cap_pend = cap;
	}
	if (++c->next_id == 0)
		c->next_id = 1;
	kvs__link_head(head, (uint32_t)len, c->next_id, 0);
	rc = kvs__wq_send(&c->out, c->fd, head, frame, len, &c->written);
	if (rc < 0) {
		/* Broken: the reading thread sees it too; this one goes
		 * over HTTP. */
		shutdown(c->fd, SHUT_RDWR);
		goto http_locked;
	}
	p = &c->pend[c->n_pend++];
	p->id = c->next_id;
	p->n_ops = n_ops;
	p->deadline = kvs__mono_ms() +
	              (timeout_ms ? timeout_ms : L->o.request_timeout_ms);
	p->start = c->queued;
	p->answer = answer;
	p->cb = cb;
	p->ud = ud;
	p->frame = frame; /* kept until answered */
	p->len = len;
	p->peer = peer;
	p->timeout_ms = timeout_ms;
	c->queued += KVS__LINK_HEAD + len;
	if (rc == 0 && !c->out_armed) {
		c->out_armed = 1;
		arm(L, c, 1);
	}
	pthread_mutex_unlock(&c->mu);
	atomic_fetch_add_explicit(&L->frames, 1, memory_order_relaxed);
	return KVS_OK;
http_locked:
	pthread_mutex_unlock(&c->mu);
	free(answer);
http:
	return L->o.http_ops->send(L->o.http, peer, frame, len, n_ops,
	                           timeout_ms, cb, ud);
}

static int link_probe(void *impl, size_t peer, kvs__probe_cb cb, void *ud)
{
	struct links *L = impl;

	return L->o.http_ops->probe(L->o.http, peer, cb, ud);
}

static void wake(struct links *L)
{
	uint64_t one = 1;

	if (write(L->wake, &one, sizeof(one)) < 0) {
		/* full: it is awake already */
	}
}

static int link_timer(void *impl, unsigned ms, kvs__peer_timer_cb cb,
                      void *ud)
{
	struct links *L = impl;
	int earliest, rc;

	rc = kvs__timers_add(&L->timers, ms, cb, ud, &earliest);
	if (rc == KVS_OK && earliest)
		wake(L); /* its wait must end sooner */
	return rc;
}

void kvs__peer_link_stats(void *impl, uint64_t *up, uint64_t *frames)
{
	struct links *L = impl;

	*up = 0;
	for (size_t i = 0; i < L->o.n; i++)
		*up += atomic_load(&L->c[i].state) == L_UP;
	*frames = atomic_load_explicit(&L->frames, memory_order_relaxed);
}

static void link_free(void *impl)
{
	struct links *L = impl;

	if (L == NULL)
		return;
	if (L->started) {
		atomic_store(&L->closing, 1);
		wake(L);
		pthread_join(L->thread, NULL);
	}
	/* Timers end early: whoever set one is told, and frees what it
	 * holds; new ones are refused. */
	if (L->timers_ready)
		kvs__timers_free(&L->timers);
	/* What waits on a link fails as if the link broke. */
	for (size_t i = 0; L->c != NULL && i < L->o.n; i++) {
		struct lconn *c = &L->c[i];

		if (c->L == NULL)
			continue;
		conn_down(c, 0, KVS_ECLOSED);
		kvs__wq_free(&c->out);
		kvs__rq_free(&c->in);
		pthread_mutex_destroy(&c->mu);
	}
	/* Then HTTP completes its own. */
	if (L->o.http_ops != NULL)
		L->o.http_ops->free(L->o.http);
	if (L->ep >= 0)
		close(L->ep);
	if (L->wake >= 0)
		close(L->wake);
	for (size_t i = 0; L->addrs != NULL && i < L->o.n; i++)
		if (L->addrs[i] != NULL)
			freeaddrinfo(L->addrs[i]);
	free(L->addrs);
	for (size_t i = 0; L->hosts != NULL && i < L->o.n; i++)
		free(L->hosts[i]);
	free(L->hosts);
	free(L->ports);
	free(L->c);
	free(L);
}

int kvs__peer_link_new(void **impl, const kvs__peer_link_options *o)
{
	struct links *L = calloc(1, sizeof(*L));
	struct epoll_event ev;

	*impl = NULL;
	if (L == NULL) {
		o->http_ops->free(o->http);
		return KVS_ENOMEM;
	}
	L->o = *o;
	L->o.hosts = NULL;
	L->o.ports = NULL;
	L->ep = L->wake = -1;
	L->hosts = calloc(o->n, sizeof(*L->hosts));
	L->ports = calloc(o->n, sizeof(*L->ports));
	L->c = calloc(o->n, sizeof(*L->c));
	L->addrs = calloc(o->n, sizeof(*L->addrs));
	if (L->hosts == NULL || L->ports == NULL || L->c == NULL ||
	    L->addrs == NULL)
		goto fail;
	for (size_t i = 0; i < o->n; i++) {
		L->hosts[i] = strdup(o->hosts[i]);
		if (L->hosts[i] == NULL)
			goto fail;
		L->ports[i] = o->ports[i];
		if (i != o->self)
			L->addrs[i] = resolve(o->hosts[i], o->ports[i]);
	}
	if (kvs__timers_init(&L->timers) != KVS_OK)
		goto fail;
	L->timers_ready = 1;
	L->ep = epoll_create1(EPOLL_CLOEXEC);
	L->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (L->ep < 0 || L->wake < 0)
		goto fail;
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.ptr = NULL;
	if (epoll_ctl(L->ep, EPOLL_CTL_ADD, L->wake, &ev) != 0)
		goto fail;
	for (size_t i = 0; i < o->n; i++) {
		struct lconn *c = &L->c[i];

		if (pthread_mutex_init(&c->mu, NULL) != 0)
			goto fail;
		c->L = L;
		c->peer = i;
		c->fd = -1;
		c->backoff_ms = BACKOFF_FIRST_MS;
		atomic_init(&c->state, L_DOWN);
	}
	if (pthread_create(&L->thread, NULL, link_main, L) != 0)
		goto fail;
	L->started = 1;
	*impl = L;
	return KVS_OK;
fail:
	link_free(L);
	return KVS_ENOMEM;
}

const kvs__peer_ops kvs__peer_link_ops = {
	.send = link_send,
	.probe = link_probe,
	.timer = link_timer,
	.free = link_free,
};
