/*
 * bench-loop.c - kvshard-bench's worker threads.
 *
 * A worker owns an epoll instance, its share of the slots (a slot is one
 * simulated client: it has at most one request in flight and issues the
 * next one when the previous ends) and connections. Without --ring, slot i
 * always uses connection i. With --ring, the worker has as many connections
 * to every shard as it has slots, kept in one stack of unused connections
 * per shard; a request takes one to its key's primary owner and gives it
 * back when it ends, so a request never waits for a connection.
 *
 * Per request the normal path costs one send(), one recv() and a share of
 * one epoll wait: the request is written as soon as it is built, the
 * connection stays registered for input only, and output is watched only
 * while a large request does not fit in the socket buffer.
 *
 * Slots that must wait (for their scheduled send time under --rate, or
 * after a failed connection) sit in a binary heap ordered by wake-up time;
 * the loop sleeps until the earliest of them, the end of the run, or the
 * next scan for requests past their deadline.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

/* Room for a response's status line and headers (bodies are not kept). */
#define READ_BUF_SIZE (64u * 1024u)
#define EVENTS_MAX 256
/* Longest sleep, so that a stop request is seen quickly. */
#define WAIT_MAX_NS (50u * NS_PER_MS)
/* How often in-flight requests are checked against their deadline. */
#define TIMEOUT_SCAN_NS (10u * NS_PER_MS)
/* Pause before a slot whose connection failed tries again. */
#define RECONNECT_DELAY_NS (10u * NS_PER_MS)
#define KEY_NUMBER_MAX 20u /* digits of the largest uint64_t */
#define KEY_TEXT_MAX (KEY_PREFIX_MAX + KEY_NUMBER_MAX)
/* Base64 of the longest key. */
#define KEY_B64_MAX (((KEY_TEXT_MAX + 2u) / 3u) * 4u)
/* A request's text besides the method, templates and headers. */
#define REQUEST_FIXED_TEXT " HTTP/1.1\r\nHost: \r\nContent-Length: \r\n\r\n"
#define REQUEST_OVERHEAD (sizeof(REQUEST_FIXED_TEXT) - 1u + KEY_NUMBER_MAX)
#define DECIMAL_BASE 10u

enum conn_state {
	CONN_CLOSED,
	CONN_CONNECTING,
	CONN_IDLE,      /* open, no request */
	CONN_SENDING,   /* the request is not all written yet */
	CONN_RECEIVING, /* the request is sent, the answer is awaited */
};

struct slot;

struct conn {
	struct worker *w;
	const struct target *target;
	int fd;
	enum conn_state state;
	uint32_t events;   /* what epoll watches */
	struct slot *slot; /* the request in flight, if any */
	struct resp resp;
	char *rbuf; /* READ_BUF_SIZE bytes, allocated at the first connect */
	size_t rlen;
	char *wbuf; /* the request being sent */
	size_t wcap, wlen, woff;
};

struct slot {
	struct worker *w;
	unsigned index;    /* among every thread's slots */
	struct conn *home; /* without --ring: the slot's own connection */
	enum op op;
	uint64_t start;    /* latency is measured from here */
	uint64_t sched;    /* --rate: when the current request is due */
	uint64_t deadline; /* when the request in flight times out */
	uint64_t wake;     /* while in the timer heap */
	size_t key_len;
	char key[KEY_TEXT_MAX];
	char key_b64[KEY_B64_MAX];
};

/* --ring: one shard's connections without a request, used last first. */
struct pool {
	struct conn **stack;
	size_t n;
};

struct worker {
	struct bench *b;
	pthread_t thread;
	bool started;
	int epfd;
	struct rng rng;
	struct slot *slots;
	size_t n_slots;
	struct conn *conns;
	size_t n_conns;
	struct pool *pools; /* --ring: one per target */
	struct slot **heap; /* waiting slots, a min-heap on wake */
	size_t heap_len;
	bool preloading;
	size_t active; /* preload: slots that may still find a key */
	uint64_t now;  /* the loop's clock, read after every wait */
	uint64_t next_scan;
	bool coarse_wait; /* epoll_pwait2 is missing: millisecond waits */
	struct counters run, pre;
};

static void slot_start(struct slot *s);

uint64_t clock_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* ---- the timer heap ----------------------------------------------------- */

static void heap_push(struct worker *w, struct slot *s, uint64_t wake)
{
	size_t i = w->heap_len++;

	s->wake = wake;
	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (w->heap[parent]->wake <= wake)
			break;
		w->heap[i] = w->heap[parent];
		i = parent;
	}
	w->heap[i] = s;
}

static struct slot *heap_pop(struct worker *w)
{
	struct slot *top = w->heap[0], *last = w->heap[--w->heap_len];
	size_t i = 0, n = w->heap_len;

	for (;;) {
		size_t child = 2 * i + 1;

		if (child >= n)
			break;
		if (child + 1 < n &&
		    w->heap[child + 1]->wake < w->heap[child]->wake)
			child++;
		if (w->heap[child]->wake >= last->wake)
			break;
		w->heap[i] = w->heap[child];
		i = child;
	}
	if (n > 0)
		w->heap[i] = last;
	return top;
}

/* ---- accounting --------------------------------------------------------- */

/* Where what ends now is counted: NULL while warming up or after the end. */
static struct counters *counters_now(struct worker *w)
{
	const struct bench *b = w->b;
	uint64_t stop;

	if (w->preloading)
		return &w->pre;
	if (w->now < b->measure_ns || w->now >= b->end_ns)
		return NULL;
	stop = atomic_load_explicit(&w->b->stop_ns, memory_order_relaxed);
	if (stop != 0 && w->now >= stop)
		return NULL;
	return &w->run;
}

static void count_failure(struct worker *w, const struct slot *s,
                          enum fail kind)
{
	struct counters *c = counters_now(w);
	struct bench *b = w->b;

	if (c != NULL) {
		c->attempts[s->op]++;
		c->fail[kind]++;
	}
	if (w->preloading &&
	    atomic_fetch_add(&b->preload_failures, 1) + 1 > b->preload_budget)
		atomic_store(&b->preload_aborted, true);
}

/* An answer arrived: ok, or an unexpected status? */
static void count_answer(struct worker *w, const struct slot *s, int status)
{
	struct counters *c = counters_now(w);
	const struct bench *b = w->b;

	if (c == NULL)
		return;
	c->attempts[s->op]++;
	if (b->ops[s->op].expect[status] ||
	    (status == STATUS_NOT_FOUND && s->op == OP_READ && b->allow_404)) {
		c->ok[s->op]++;
		if (!b->ops[s->op].expect[status])
			c->not_found++;
		hist_record(&c->lat[s->op],
		            w->now > s->start ? w->now - s->start : 0);
	} else {
		c->status[status]++;
	}
}

/* ---- connections -------------------------------------------------------- */

static void conn_watch(struct conn *c, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = c};

	if (c->events == events)
		return;
	/* Cannot fail on a registered descriptor short of a bug. */
	epoll_ctl(c->w->epfd, EPOLL_CTL_MOD, c->fd, &ev);
	c->events = events;
}

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->state = CONN_CLOSED;
	c->events = 0;
	c->rlen = 0;
	resp_reset(&c->resp);
}

/* With --ring, a connection without a request goes back to its pool. */
static void conn_release(struct conn *c)
{
	struct worker *w = c->w;

	if (w->pools != NULL) {
		struct pool *p = &w->pools[c->target - w->b->targets];

		p->stack[p->n++] = c;
	}
}

static int conn_open(struct conn *c)
{
	const struct target *t = c->target;
	struct counters *counters = counters_now(c->w);
	struct epoll_event ev;
	int one = 1, fd;

	if (c->rbuf == NULL) {
		c->rbuf = malloc(READ_BUF_SIZE);
		if (c->rbuf == NULL)
			return -1;
	}
	fd = socket(t->addr.ss_family,
	            SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (counters != NULL)
		counters->connects++;
	if (connect(fd, (const struct sockaddr *)&t->addr, t->addr_len) == 0) {
		c->state = CONN_SENDING;
		ev.events = EPOLLIN;
	} else if (errno == EINPROGRESS) {
		c->state = CONN_CONNECTING;
		ev.events = EPOLLOUT;
	} else {
		goto fail;
	}
	ev.data.ptr = c;
	if (epoll_ctl(c->w->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
		goto fail;
	c->fd = fd;
	c->events = ev.events;
	c->rlen = 0;
	resp_reset(&c->resp);
	return 0;

fail:
	close(fd);
	c->state = CONN_CLOSED;
	return -1;
}

/*
 * The slot waits in the heap before its next request: at least until
 * delay has passed, and under --rate until its next scheduled time.
 */
static void slot_wait(struct slot *s, uint64_t delay)
{
	struct worker *w = s->w;
	uint64_t wake = w->now + delay;

	if (w->b->pace_ns != 0 && !w->preloading) {
		s->sched += w->b->pace_ns;
		if (s->sched > wake)
			wake = s->sched;
	}
	heap_push(w, s, wake);
}

/*
 * The request on c failed: count it, drop the connection, and let the
 * slot try again from the heap (never from here, so that a server that
 * refuses everything cannot make this recurse).
 */
static void conn_fail(struct conn *c, enum fail kind)
{
	struct slot *s = c->slot;

	c->slot = NULL;
	conn_close(c);
	conn_release(c);
	count_failure(c->w, s, kind);
	/* The delay is at least 1 ns so that the heap never hands the slot
	 * back in the pass that queued it. */
	slot_wait(s, kind == FAIL_CONNECT ? RECONNECT_DELAY_NS : 1);
}

/* A whole answer arrived on c. */
static void conn_complete(struct conn *c)
{
	struct worker *w = c->w;
	struct slot *s = c->slot;
	int status = c->resp.status;

	/* A server may answer before reading all of a large request. */
	if (c->resp.close || c->woff < c->wlen)
		conn_close(c);
	else
		c->state = CONN_IDLE;
	resp_reset(&c->resp);
	c->slot = NULL;
	conn_release(c);
	count_answer(w, s, status);

	if (!w->preloading && w->b->pace_ns != 0) {
		s->sched += w->b->pace_ns;
		if (s->sched > w->now) {
			heap_push(w, s, s->sched);
			return;
		}
	}
	slot_start(s);
}

/* Is errno from a non-blocking socket call a "try again later"? */
static bool would_block(int err)
{
	return err == EAGAIN || err == EWOULDBLOCK || err == EINTR;
}

static void conn_send(struct conn *c)
{
	while (c->woff < c->wlen) {
		ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff,
		                 MSG_NOSIGNAL);

		if (n < 0) {
			if (would_block(errno)) {
				c->state = CONN_SENDING;
				conn_watch(c, EPOLLIN | EPOLLOUT);
				return;
			}
			conn_fail(c, FAIL_WRITE);
			return;
		}
		c->woff += (size_t)n;
	}
	c->state = CONN_RECEIVING;
	conn_watch(c, EPOLLIN);
}

static void conn_receive(struct conn *c)
{
	enum resp_result rc;
	size_t used;
	ssize_t n;

	n = recv(c->fd, c->rbuf + c->rlen, READ_BUF_SIZE - c->rlen, 0);
	if (n == 0) {
		/* The end of the connection may be the end of the body. */
		if (resp_eof(&c->resp) == RESP_DONE) {
			c->resp.close = true;
			conn_complete(c);
		} else {
			conn_fail(c, FAIL_READ);
		}
		return;
	}
	if (n < 0) {
		if (!would_block(errno))
			conn_fail(c, FAIL_READ);
		return;
	}
	c->rlen += (size_t)n;
	rc = resp_parse(&c->resp, c->rbuf, c->rlen, &used);
	if (rc == RESP_ERROR) {
		conn_fail(c, FAIL_PROTOCOL);
		return;
	}
	if (rc == RESP_MORE) {
		/* Keep the incomplete line: a full buffer is one too long. */
		c->rlen -= used;
		if (c->rlen == READ_BUF_SIZE) {
			conn_fail(c, FAIL_PROTOCOL);
			return;
		}
		if (used > 0 && c->rlen > 0)
			memmove(c->rbuf, c->rbuf + used, c->rlen);
		return;
	}
	/* One request in flight: nothing may follow its answer. */
	if (used != c->rlen) {
		conn_fail(c, FAIL_PROTOCOL);
		return;
	}
	c->rlen = 0;
	conn_complete(c);
}

/* Input on a connection without a request: the server closed it. */
static void conn_idle_input(struct conn *c)
{
	char byte;
	ssize_t n = recv(c->fd, &byte, sizeof(byte), 0);

	if (n < 0 && would_block(errno))
		return;
	/* Closed, reset, or unsolicited bytes: drop it, it is reopened when
	 * needed. */
	conn_close(c);
}

static void conn_event(struct conn *c, uint32_t events)
{
	int err = 0;
	socklen_t len = sizeof(err);

	switch (c->state) {
	case CONN_CONNECTING:
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 ||
		    err != 0) {
			conn_fail(c, FAIL_CONNECT);
			return;
		}
		if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0)
			return;
		conn_watch(c, EPOLLIN);
		conn_send(c);
		return;
	case CONN_IDLE:
		conn_idle_input(c);
		return;
	case CONN_SENDING:
		if (events & EPOLLOUT)
			conn_send(c);
		/* The server may answer (or fail) before reading everything. */
		if (c->state != CONN_CLOSED &&
		    (events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
			conn_receive(c);
		return;
	case CONN_RECEIVING:
		conn_receive(c);
		return;
	case CONN_CLOSED:
		return;
	}
}

/* ---- requests ----------------------------------------------------------- */

/* prefix, then k in decimal on at least KEY_DIGITS digits. */
static size_t format_key(char *out, const struct bench *b, uint64_t k)
{
	char digits[KEY_NUMBER_MAX];
	size_t n = 0;

	do {
		digits[n++] = (char)('0' + k % DECIMAL_BASE);
		k /= DECIMAL_BASE;
	} while (k != 0);
	while (n < KEY_DIGITS)
		digits[n++] = '0';
	memcpy(out, b->key_prefix, b->key_prefix_len);
	for (size_t i = 0; i < n; i++)
		out[b->key_prefix_len + i] = digits[n - 1 - i];
	return b->key_prefix_len + n;
}

static char *put_text(char *p, const char *text, size_t len)
{
	/* text may be NULL when len is 0 (no -H headers). */
	if (len > 0)
		memcpy(p, text, len);
	return p + len;
}

static char *put_decimal(char *p, uint64_t v)
{
	char digits[KEY_NUMBER_MAX];
	size_t n = 0;

	do {
		digits[n++] = (char)('0' + v % DECIMAL_BASE);
		v /= DECIMAL_BASE;
	} while (v != 0);
	while (n > 0)
		*p++ = digits[--n];
	return p;
}

#define PUT_LITERAL(p, lit) put_text((p), (lit), sizeof(lit) - 1)

/* Write the slot's request into c's buffer. Returns -1 out of memory. */
static int build_request(struct conn *c, struct slot *s)
{
	struct worker *w = c->w;
	const struct bench *b = w->b;
	const struct op_spec *o = &b->ops[s->op];
	size_t method_len = strlen(o->method), body_len = 0, need;
	struct vars v;
	char *p;

	memset(&v, 0, sizeof(v));
	v.text[VAR_HOST] = c->target->name;
	v.len[VAR_HOST] = c->target->name_len;
	v.text[VAR_KEY] = s->key;
	v.len[VAR_KEY] = s->key_len;
	if (o->uses & VAR_BIT(VAR_KEY_B64)) {
		base64_encode(s->key, s->key_len, s->key_b64);
		v.text[VAR_KEY_B64] = s->key_b64;
		v.len[VAR_KEY_B64] = base64_length(s->key_len);
	}
	if (o->uses & (VAR_BIT(VAR_VALUE) | VAR_BIT(VAR_VALUE_B64))) {
		size_t i = (size_t)rng_below(&w->rng, b->n_values);

		v.text[VAR_VALUE] = b->values + i * b->value_size;
		v.len[VAR_VALUE] = b->value_size;
		v.text[VAR_VALUE_B64] = b->values_b64 + i * b->value_b64_len;
		v.len[VAR_VALUE_B64] = b->value_b64_len;
	}
	if (o->send_body)
		body_len = tmpl_length(&o->body, &v);
	need = method_len + tmpl_length(&o->path, &v) +
	       tmpl_length(&o->authority, &v) + b->headers_len + body_len +
	       REQUEST_OVERHEAD;
	if (need > c->wcap) {
		char *buf = realloc(c->wbuf, need);

		if (buf == NULL)
			return -1;
		c->wbuf = buf;
		c->wcap = need;
	}

	p = put_text(c->wbuf, o->method, method_len);
	*p++ = ' ';
	p = tmpl_expand(&o->path, &v, p);
	p = PUT_LITERAL(p, " HTTP/1.1\r\n");
	if (!b->user_host) {
		p = PUT_LITERAL(p, "Host: ");
		p = tmpl_expand(&o->authority, &v, p);
		p = PUT_LITERAL(p, "\r\n");
	}
	p = put_text(p, b->headers, b->headers_len);
	if (o->send_body) {
		p = PUT_LITERAL(p, "Content-Length: ");
		p = put_decimal(p, body_len);
		p = PUT_LITERAL(p, "\r\n");
	}
	p = PUT_LITERAL(p, "\r\n");
	if (o->send_body)
		p = tmpl_expand(&o->body, &v, p);
	c->wlen = (size_t)(p - c->wbuf);
	c->woff = 0;
	return 0;
}

/* The connection for a request of slot s (whose key is set). */
static struct conn *pick_conn(struct worker *w, struct slot *s)
{
	struct pool *p;
	size_t owner = 0;

	if (w->pools == NULL)
		return s->home;
	kvs_ring_owners(w->b->ring, s->key, s->key_len, &owner, 1);
	p = &w->pools[owner];
	/* Never empty: the pool has a connection for every slot. */
	return p->stack[--p->n];
}

static enum op pick_op(struct worker *w)
{
	double ratio = w->b->read_ratio;

	if (ratio >= 1.0)
		return OP_READ;
	if (ratio <= 0.0)
		return OP_WRITE;
	return rng_double(&w->rng) < ratio ? OP_READ : OP_WRITE;
}

/* Issue slot s's next request. */
static void slot_start(struct slot *s)
{
	struct worker *w = s->w;
	struct bench *b = w->b;
	struct conn *c;
	uint64_t key, now;

	if (w->preloading) {
		if (atomic_load_explicit(&b->preload_aborted,
		                         memory_order_relaxed))
			goto finished;
		key = atomic_fetch_add(&b->preload_next, 1);
		if (key >= b->keys)
			goto finished;
		s->op = OP_WRITE;
	} else {
		s->op = pick_op(w);
		key = b->dist == DIST_ZIPFIAN ? zipf_next(&b->zipf, &w->rng)
		                              : rng_below(&w->rng, b->keys);
	}
	s->key_len = format_key(s->key, b, key);

	now = clock_ns();
	s->start = b->pace_ns != 0 && !w->preloading ? s->sched : now;
	s->deadline = now + (uint64_t)b->timeout_ms * NS_PER_MS;
	c = pick_conn(w, s);
	c->slot = s;
	if (build_request(c, s) != 0) {
		fprintf(stderr, PROGRAM ": out of memory\n");
		atomic_store(&b->stop, true);
		conn_fail(c, FAIL_WRITE);
		return;
	}
	if (c->state == CONN_CLOSED) {
		if (conn_open(c) != 0) {
			conn_fail(c, FAIL_CONNECT);
			return;
		}
		if (c->state == CONN_CONNECTING)
			return;
	}
	conn_send(c);
	return;

finished:
	w->active--;
}

/* ---- the loop ----------------------------------------------------------- */

static void run_due_slots(struct worker *w)
{
	while (w->heap_len > 0 && w->heap[0]->wake <= w->now)
		slot_start(heap_pop(w));
}

static void scan_timeouts(struct worker *w)
{
	for (size_t i = 0; i < w->n_conns; i++) {
		struct conn *c = &w->conns[i];

		if (c->slot != NULL && c->slot->deadline <= w->now)
			conn_fail(c, FAIL_TIMEOUT);
	}
	w->next_scan = w->now + TIMEOUT_SCAN_NS;
}

static int wait_events(struct worker *w, struct epoll_event *events,
                       uint64_t wait)
{
	int n;

	if (!w->coarse_wait) {
		struct timespec ts = {
			.tv_sec = (time_t)(wait / NS_PER_S),
			.tv_nsec = (long)(wait % NS_PER_S),
		};

		n = epoll_pwait2(w->epfd, events, EVENTS_MAX, &ts, NULL);
		if (n >= 0 || errno != ENOSYS)
			return n < 0 ? 0 : n;
		w->coarse_wait = true;
	}
	/* Rounded up: waking early would spin. */
	n = epoll_wait(w->epfd, events, EVENTS_MAX,
	               (int)((wait + NS_PER_MS - 1) / NS_PER_MS));
	return n < 0 ? 0 : n;
}

static bool loop_done(struct worker *w)
{
	const struct bench *b = w->b;

	if (atomic_load_explicit(&b->stop, memory_order_relaxed))
		return true;
	if (w->preloading)
		return w->active == 0 ||
		       atomic_load_explicit(&b->preload_aborted,
		                            memory_order_relaxed);
	return w->now >= b->end_ns;
}

static void worker_loop(struct worker *w)
{
	struct epoll_event events[EVENTS_MAX];

	for (;;) {
		uint64_t until;
		int n;

		w->now = clock_ns();
		if (loop_done(w))
			break;
		run_due_slots(w);
		if (w->now >= w->next_scan)
			scan_timeouts(w);

		until = w->now + WAIT_MAX_NS;
		if (w->heap_len > 0 && w->heap[0]->wake < until)
			until = w->heap[0]->wake;
		if (w->next_scan < until)
			until = w->next_scan;
		if (!w->preloading && w->b->end_ns < until)
			until = w->b->end_ns;
		n = wait_events(w, events, until > w->now ? until - w->now : 0);

		w->now = clock_ns();
		for (int i = 0; i < n; i++)
			conn_event(events[i].data.ptr, events[i].events);
	}
}

/* Drop every request in flight and every waiting slot. */
static void worker_settle(struct worker *w)
{
	for (size_t i = 0; i < w->n_conns; i++) {
		struct conn *c = &w->conns[i];

		if (c->slot != NULL) {
			c->slot = NULL;
			conn_close(c);
			conn_release(c);
		}
	}
	w->heap_len = 0;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct bench *b = w->b;

	if (b->preload) {
		w->preloading = true;
		w->active = w->n_slots;
		for (size_t i = 0; i < w->n_slots; i++)
			slot_start(&w->slots[i]);
		worker_loop(w);
		worker_settle(w);
		w->preloading = false;
		atomic_fetch_add(&b->preload_done, 1);
	}

	pthread_mutex_lock(&b->go_lock);
	while (!b->go)
		pthread_cond_wait(&b->go_cond, &b->go_lock);
	pthread_mutex_unlock(&b->go_lock);
	if (atomic_load(&b->stop))
		return NULL;
	w->now = clock_ns();
	w->next_scan = w->now + TIMEOUT_SCAN_NS;
	for (size_t i = 0; i < w->n_slots; i++) {
		struct slot *s = &w->slots[i];

		if (b->pace_ns == 0) {
			slot_start(s);
			continue;
		}
		/* Spread the slots' schedules evenly over one interval. */
		s->sched = b->start_ns + (uint64_t)((double)s->index *
		                                    (double)b->pace_ns /
		                                    (double)b->total_slots);
		heap_push(w, s, s->sched);
	}
	worker_loop(w);
	worker_settle(w);
	return NULL;
}

/* ---- life cycle --------------------------------------------------------- */

struct worker *worker_new(struct bench *b, unsigned slot_base,
                          unsigned n_slots, uint64_t seed)
{
	struct worker *w = calloc(1, sizeof(*w));
	size_t n_conns;

	if (w == NULL)
		return NULL;
	w->b = b;
	w->epfd = -1;
	rng_seed(&w->rng, seed);
	for (size_t i = 0; i < OP_COUNT; i++) {
		hist_init(&w->run.lat[i]);
		hist_init(&w->pre.lat[i]);
	}
	n_conns = b->ring ? (size_t)n_slots * b->n_targets : n_slots;
	w->n_slots = n_slots;
	w->n_conns = n_conns;
	w->slots = calloc(n_slots, sizeof(*w->slots));
	w->conns = calloc(n_conns, sizeof(*w->conns));
	w->heap = calloc(n_slots, sizeof(*w->heap));
	if (w->slots == NULL || w->conns == NULL || w->heap == NULL)
		goto fail;
	for (size_t i = 0; i < n_conns; i++) {
		struct conn *c = &w->conns[i];

		c->w = w;
		c->fd = -1;
		resp_reset(&c->resp);
		if (b->ring)
			c->target = &b->targets[i / n_slots];
		else
			c->target = &b->targets[(slot_base + i) % b->n_targets];
	}
	for (size_t i = 0; i < n_slots; i++) {
		struct slot *s = &w->slots[i];

		s->w = w;
		s->index = slot_base + (unsigned)i;
		s->home = b->ring ? NULL : &w->conns[i];
	}
	if (b->ring) {
		w->pools = calloc(b->n_targets, sizeof(*w->pools));
		if (w->pools == NULL)
			goto fail;
		for (size_t t = 0; t < b->n_targets; t++) {
			struct pool *p = &w->pools[t];

			p->stack = calloc(n_slots, sizeof(*p->stack));
			if (p->stack == NULL)
				goto fail;
			/* The first connection on top. */
			for (size_t i = n_slots; i-- > 0;)
				p->stack[p->n++] = &w->conns[t * n_slots + i];
		}
	}
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (w->epfd < 0)
		goto fail;
	return w;

fail:
	worker_free(w);
	return NULL;
}

int worker_start(struct worker *w)
{
	int rc = pthread_create(&w->thread, NULL, worker_main, w);

	w->started = rc == 0;
	return rc;
}

void worker_join(struct worker *w)
{
	if (w->started)
		pthread_join(w->thread, NULL);
	w->started = false;
}

const struct counters *worker_run_counters(const struct worker *w)
{
	return &w->run;
}

const struct counters *worker_preload_counters(const struct worker *w)
{
	return &w->pre;
}

void worker_free(struct worker *w)
{
	if (w == NULL)
		return;
	for (size_t i = 0; w->conns != NULL && i < w->n_conns; i++) {
		conn_close(&w->conns[i]);
		free(w->conns[i].rbuf);
		free(w->conns[i].wbuf);
	}
	for (size_t t = 0; w->pools != NULL && t < w->b->n_targets; t++)
		free(w->pools[t].stack);
	if (w->epfd >= 0)
		close(w->epfd);
	free(w->pools);
	free(w->heap);
	free(w->conns);
	free(w->slots);
	free(w);
}
