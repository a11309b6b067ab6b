/*
 * sim.c - the simulated network and clients of sim.h.
 */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_internal.h"
#include "protocol.h"
#include "sim.h"
#include "testutil.h"

/* Virtual wall clock at time 0: any fixed day serves. */
#define SIM_WALL_BASE_MS UINT64_C(1800000000000)
#define SIM_MAX_EVENTS 1000000u
/* Whatever is in flight ends within this (virtual) time, or the node
 * hangs: every message is bounded by a timeout. */
#define SIM_SETTLE_MAX_MS 60000u
#define TICK_MS 250u
#define FAST_MIN_MS 1u
#define FAST_MAX_MS 5u

enum ev_kind {
	EV_DELIVER,   /* a request reaches its receiver */
	EV_ANSWER,    /* an answer (or a refusal) reaches the sender */
	EV_TIMEOUT,   /* the sender gives up waiting */
	EV_TICK,      /* a node's prober looks around */
	EV_TIMER,     /* a node's timer is due */
	EV_CALL       /* the harness does something */
};

/* A timer a node set (kvs__peer_ops.timer). */
struct sim_timer {
	int node;
	kvs__peer_timer_cb cb;
	void *ud;
	int fired;
	struct sim_timer *next;
};

/* A message: one request and its one answer. */
struct sim_msg {
	int from, to;
	int probe;
	unsigned timeout_ms;
	char *frame;
	size_t len;
	size_t n_ops;
	kvs__peer_cb cb;
	kvs__probe_cb pcb;
	void *ud;
	kvs__panswer *answer;
	int done; /* the sender has had its answer */
	struct sim_msg *next;
};

struct sim_event {
	uint64_t at;
	uint64_t seq;
	enum ev_kind kind;
	struct sim_msg *m;
	int rc;      /* EV_ANSWER */
	char *body;  /* EV_ANSWER: the answer frame */
	size_t len;
	int node;    /* EV_TICK */
	struct sim_timer *timer; /* EV_TIMER */
	void (*fn)(struct sim *, void *);
	void *arg;
};

/* One delivery of a request, served by its receiver. */
struct serving {
	struct sim *s;
	struct sim_msg *m;
	kvs__peer_reply reply;
};

static void trace(struct sim *s, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

static void trace(struct sim *s, const char *fmt, ...)
{
	va_list ap;

	if (!s->trace)
		return;
	fprintf(stderr, "%8llu ", (unsigned long long)s->now);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

uint64_t sim_rand(struct sim *s, uint64_t n)
{
	/* splitmix64 */
	uint64_t z = (s->rng += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	z ^= z >> 31;
	return n ? z % n : 0;
}

int sim_chance(struct sim *s, unsigned per_mille)
{
	return per_mille > 0 && sim_rand(s, 1000) < per_mille;
}

static struct sim_event *push(struct sim *s, uint64_t at, enum ev_kind kind)
{
	struct sim_event *e;

	if (s->n_ev == s->cap_ev) {
		s->cap_ev = s->cap_ev ? s->cap_ev * 2 : 64;
		s->ev = realloc(s->ev, s->cap_ev * sizeof(*s->ev));
		SIM_ASSERT(s->ev != NULL, "out of memory");
	}
	e = &s->ev[s->n_ev++];
	memset(e, 0, sizeof(*e));
	e->at = at;
	e->seq = s->seq++;
	e->kind = kind;
	return e;
}

/* How long a message takes: short, or (late) up to two timeouts. */
static uint64_t delay(struct sim *s)
{
	if (sim_chance(s, s->faults.late))
		return 1 + sim_rand(s, 2 * SIM_TIMEOUT_MS);
	return FAST_MIN_MS + sim_rand(s, FAST_MAX_MS - FAST_MIN_MS + 1);
}

/* ------------------------------------------------------------------ */
/* The peer operations of a simulated node                              */

static struct sim_msg *new_msg(struct sim *s, int from, int to)
{
	struct sim_msg *m = calloc(1, sizeof(*m));

	SIM_ASSERT(m != NULL, "out of memory");
	m->from = from;
	m->to = to;
	m->answer = calloc(1, sizeof(*m->answer));
	SIM_ASSERT(m->answer != NULL, "out of memory");
	m->next = s->msgs;
	s->msgs = m;
	return m;
}

static void dispatch_msg(struct sim *s, struct sim_msg *m)
{
	struct sim_event *e = push(s, s->now + m->timeout_ms, EV_TIMEOUT);

	e->m = m;
	if (!sim_chance(s, s->faults.loss))
		push(s, s->now + delay(s), EV_DELIVER)->m = m;
	else
		trace(s, "lost request %d->%d", m->from, m->to);
	if (sim_chance(s, s->faults.dup)) {
		push(s, s->now + delay(s), EV_DELIVER)->m = m;
		trace(s, "duplicated request %d->%d", m->from, m->to);
	}
}

static int sim_send(void *impl, size_t peer, char *frame, size_t len,
                    size_t n, unsigned timeout_ms, kvs__peer_cb cb, void *ud)
{
	struct sim_node *from = impl;
	struct sim *s = from->sim;
	struct sim_msg *m = new_msg(s, from->i, (int)peer);

	m->frame = frame;
	m->len = len;
	m->n_ops = n;
	if (n > s->most_ops)
		s->most_ops = n;
	m->cb = cb;
	m->ud = ud;
	m->timeout_ms = timeout_ms ? timeout_ms : SIM_TIMEOUT_MS;
	trace(s, "send %d->%d: %zu ops, first code %u", m->from, m->to, n,
	      len > KVS__PEER_REQ_HEAD ? (unsigned char)frame[KVS__PEER_REQ_HEAD]
	                               : 0u);
	dispatch_msg(s, m);
	return KVS_OK;
}

static int sim_probe(void *impl, size_t peer, kvs__probe_cb cb, void *ud)
{
	struct sim_node *from = impl;
	struct sim *s = from->sim;
	struct sim_msg *m = new_msg(s, from->i, (int)peer);

	kvs__buf b;

	/* A ping: a frame of no operations, as the HTTP peers send. */
	kvs__buf_init(&b, 0);
	kvs__peer_req_head(&b, (uint32_t)from->i, 0, 0);
	ck_assert_int_eq(b.rc, KVS_OK);
	m->frame = kvs__buf_take(&b, &m->len);
	m->probe = 1;
	m->timeout_ms = SIM_TIMEOUT_MS;
	m->pcb = cb;
	m->ud = ud;
	trace(s, "probe %d->%d", m->from, m->to);
	dispatch_msg(s, m);
	return KVS_OK;
}

/* Give the sender its answer (once: later ones are dropped). */
static void complete(struct sim *s, struct sim_msg *m, int rc, char *body,
                     size_t len)
{
	kvs__panswer *a = m->answer;

	if (m->done) {
		free(body);
		return;
	}
	m->done = 1;
	m->answer = NULL;
	trace(s, "answer %d->%d: %s", m->to, m->from, kvs_strerror(rc));
	if (m->probe) {
		free(body);
		free(a);
		m->pcb(m->ud, rc);
		return;
	}
	if (rc == KVS_OK)
		kvs__panswer_fill(a, body, len, m->n_ops);
	else {
		free(body);
		a->rc = rc;
		/* Refused by a down node, or by one that rejected the frame
		 * before serving it; a timeout or our own closing may come
		 * after the peer acted. */
		a->refused = rc != KVS_ETIMEDOUT && rc != KVS_ECLOSED;
	}
	m->cb(m->ud, a);
}

static void fire(struct sim *s, struct sim_timer *t)
{
	if (t->fired)
		return;
	t->fired = 1;
	trace(s, "timer of node %d", t->node);
	t->cb(t->ud);
}

static int sim_timer(void *impl, unsigned ms, kvs__peer_timer_cb cb,
                     void *ud)
{
	struct sim_node *me = impl;
	struct sim *s = me->sim;
	struct sim_timer *t = calloc(1, sizeof(*t));

	ck_assert_ptr_nonnull(t);
	t->node = me->i;
	t->cb = cb;
	t->ud = ud;
	t->next = s->timers;
	s->timers = t;
	push(s, s->now + ms, EV_TIMER)->timer = t;
	return KVS_OK;
}

/* Ends what a closing node has in flight, and its timers, as the HTTP
 * transport does. */
static void sim_free(void *impl)
{
	struct sim_node *me = impl;

	for (struct sim_msg *m = me->sim->msgs; m != NULL; m = m->next)
		if (m->from == me->i && !m->done)
			complete(me->sim, m, KVS_ECLOSED, NULL, 0);
	for (struct sim_timer *t = me->sim->timers; t != NULL; t = t->next)
		if (t->node == me->i)
			fire(me->sim, t);
}

static const kvs__peer_ops sim_ops = {
	.send = sim_send,
	.probe = sim_probe,
	.timer = sim_timer,
	.free = sim_free,
};

static void served(void *ud)
{
	struct serving *sv = ud;
	struct sim *s = sv->s;
	struct sim_event *e;
	char *body = NULL;
	size_t len = 0;
	int rc = sv->reply.rc;

	if (rc == KVS_OK) {
		body = kvs__peer_reply_encode(&sv->reply, &len);
		ck_assert_ptr_nonnull(body);
	}
	kvs__peer_reply_clear(&sv->reply);
	if (sim_chance(s, s->faults.loss) ||
	    (s->faults.answer_loss != 0 && !sv->m->probe &&
	     sim_chance(s, s->faults.answer_loss))) {
		trace(s, "lost answer %d->%d", sv->m->to, sv->m->from);
		free(body);
	} else {
		e = push(s, s->now + delay(s), EV_ANSWER);
		e->m = sv->m;
		e->rc = rc;
		e->body = body;
		e->len = len;
	}
	free(sv);
}

static void deliver(struct sim *s, struct sim_msg *m)
{
	struct sim_node *dst = &s->nodes[m->to];
	struct serving *sv;

	if (dst->down) {
		/* Refused at once. */
		struct sim_event *e = push(s, s->now + FAST_MIN_MS, EV_ANSWER);

		e->m = m;
		e->rc = KVS_ECONNECT;
		return;
	}
	if (dst->blackhole || dst->node == NULL)
		return; /* the sender's timeout will tell */
	sv = calloc(1, sizeof(*sv));
	ck_assert_ptr_nonnull(sv);
	sv->s = s;
	sv->m = m;
	trace(s, "deliver %d->%d", m->from, m->to);
	kvs__node_serve_peer(dst->node, m->frame, m->len, &sv->reply, served,
	                     sv);
}

/* ------------------------------------------------------------------ */
/* Running                                                              */

/* The node an event runs code on. */
static int node_of(const struct sim_event *e)
{
	switch (e->kind) {
	case EV_DELIVER:
		return e->m->to;
	case EV_ANSWER:
	case EV_TIMEOUT:
		return e->m->from;
	case EV_TICK:
		return e->node;
	case EV_TIMER:
		return e->timer->node;
	default:
		return -1;
	}
}

void sim_pause(struct sim *s, int i, int paused)
{
	size_t kept = 0;

	s->nodes[i].paused = paused;
	trace(s, "node %d %s", i, paused ? "paused" : "resumed");
	if (paused)
		return;
	/* Everything it missed, in order, at once. */
	for (size_t h = 0; h < s->n_held; h++) {
		struct sim_event e = s->held[h];

		if (node_of(&e) != i) {
			s->held[kept++] = e;
			continue;
		}
		{
			struct sim_event *again = push(s, s->now, e.kind);
			uint64_t seq = again->seq;

			*again = e;
			again->at = s->now;
			again->seq = seq;
		}
	}
	s->n_held = kept;
}

static void run_one(struct sim *s, struct sim_event *e)
{
	int node = node_of(e);

	if (node >= 0 && s->nodes[node].paused) {
		if (s->n_held == s->cap_held) {
			s->cap_held = s->cap_held ? s->cap_held * 2 : 64;
			s->held = realloc(s->held,
			                  s->cap_held * sizeof(*s->held));
			SIM_ASSERT(s->held != NULL, "out of memory");
		}
		s->held[s->n_held++] = *e;
		return;
	}
	switch (e->kind) {
	case EV_DELIVER:
		deliver(s, e->m);
		break;
	case EV_ANSWER:
		complete(s, e->m, e->rc, e->body, e->len);
		break;
	case EV_TIMEOUT:
		if (!e->m->done)
			trace(s, "timeout %d->%d", e->m->from, e->m->to);
		complete(s, e->m, KVS_ETIMEDOUT, NULL, 0);
		break;
	case EV_TICK:
		if (s->nodes[e->node].node != NULL && s->ticking) {
			kvs__node_tick(s->nodes[e->node].node);
			push(s, s->now + TICK_MS, EV_TICK)->node = e->node;
		}
		break;
	case EV_TIMER:
		fire(s, e->timer);
		break;
	case EV_CALL:
		e->fn(s, e->arg);
		break;
	default:
		break;
	}
}

/* Take the next event (earliest, then first scheduled); 0 if none. */
static int pop(struct sim *s, uint64_t until, struct sim_event *out)
{
	size_t best = s->n_ev;

	for (size_t i = 0; i < s->n_ev; i++)
		if (best == s->n_ev || s->ev[i].at < s->ev[best].at ||
		    (s->ev[i].at == s->ev[best].at &&
		     s->ev[i].seq < s->ev[best].seq))
			best = i;
	if (best == s->n_ev || s->ev[best].at > until)
		return 0;
	*out = s->ev[best];
	s->ev[best] = s->ev[--s->n_ev];
	return 1;
}

void sim_run(struct sim *s, uint64_t until)
{
	struct sim_event e;

	while (pop(s, until, &e)) {
		if (e.at > s->now)
			s->now = e.at;
		SIM_ASSERT(++s->events < SIM_MAX_EVENTS,
		              "seed %llu: more than %u events",
		              (unsigned long long)s->seed, SIM_MAX_EVENTS);
		run_one(s, &e);
	}
	if (until != UINT64_MAX && s->now < until)
		s->now = until;
}

/* Work in flight: messages (probes come and go for ever: not them) and
 * client operations. */
static int busy(const struct sim *s)
{
	for (const struct sim_msg *m = s->msgs; m != NULL; m = m->next)
		if (!m->done && !m->probe)
			return 1;
	for (const struct sim_op *o = s->ops; o != NULL; o = o->next)
		if (!o->done)
			return 1;
	return 0;
}

void sim_settle(struct sim *s)
{
	/* Ticks go on for ever: let time pass in steps instead of running
	 * the queue dry. */
	uint64_t deadline = s->now + SIM_SETTLE_MAX_MS;

	while (busy(s)) {
		ck_assert_msg(s->now < deadline,
		              "seed %llu: work still pending after %u ms of "
		              "virtual time",
		              (unsigned long long)s->seed, SIM_SETTLE_MAX_MS);
		sim_run(s, s->now + SIM_TIMEOUT_MS);
	}
}

void sim_at(struct sim *s, uint64_t at, void (*f)(struct sim *, void *),
            void *arg)
{
	struct sim_event *e = push(s, at, EV_CALL);

	e->fn = f;
	e->arg = arg;
}

/* ------------------------------------------------------------------ */
/* Clients                                                              */

static void op_done(void *ud)
{
	struct sim_op *o = ud;

	o->done = 1;
	o->ended = o->sim->now;
	trace(o->sim, "client %s %s on node %d: %s",
	      o->req.kind == KVS__KV_GET   ? "get"
	      : o->req.kind == KVS__KV_PUT ? "put"
	                                   : "delete",
	      o->key, o->node, kvs_strerror(o->res.rc));
}

static void op_start(struct sim *s, void *arg)
{
	struct sim_op *o = arg;

	o->started = s->now;
	trace(s, "client %s %s on node %d starts",
	      o->req.kind == KVS__KV_GET   ? "get"
	      : o->req.kind == KVS__KV_PUT ? "put"
	                                   : "delete",
	      o->key, o->node);
	if (s->nodes[o->node].node == NULL) {
		/* The client could not reach it. */
		o->res.rc = KVS_ECONNECT;
		op_done(o);
		return;
	}
	kvs__node_kv(s->nodes[o->node].node, &o->req, &o->res, op_done, o);
}

static struct sim_op *new_op(struct sim *s, uint64_t at, int node,
                             kvs__kv_kind kind, const char *key,
                             const char *value)
{
	struct sim_op *o = calloc(1, sizeof(*o));

	SIM_ASSERT(o != NULL, "out of memory");
	o->sim = s;
	o->node = node;
	snprintf(o->key, sizeof(o->key), "%s", key);
	o->req.kind = kind;
	o->req.key = o->key;
	o->req.key_len = strlen(o->key);
	if (value != NULL) {
		snprintf(o->value, sizeof(o->value), "%s", value);
		o->req.value = o->value;
		o->req.value_len = strlen(o->value);
	}
	o->next = s->ops;
	s->ops = o;
	sim_at(s, at, op_start, o);
	return o;
}

struct sim_op *sim_put(struct sim *s, uint64_t at, int node, const char *key,
                       const char *value)
{
	return new_op(s, at, node, KVS__KV_PUT, key, value);
}

struct sim_op *sim_del(struct sim *s, uint64_t at, int node, const char *key)
{
	return new_op(s, at, node, KVS__KV_DELETE, key, NULL);
}

struct sim_op *sim_get(struct sim *s, uint64_t at, int node, const char *key,
                       unsigned r)
{
	struct sim_op *o = new_op(s, at, node, KVS__KV_GET, key, NULL);

	o->req.r = r;
	return o;
}

static int scan_emit(void *ud, const kvs_record *rec)
{
	struct sim_scan *sc = ud;

	SIM_ASSERT(sc->n < 512, "sc->n >= 512");
	SIM_ASSERT(rec->key_len < 64, "rec->key_len >= 64");
	SIM_ASSERT(rec->value_len < 64, "rec->value_len >= 64");
	memcpy(sc->keys[sc->n], rec->key, rec->key_len);
	sc->keys[sc->n][rec->key_len] = '\0';
	memcpy(sc->values[sc->n], rec->value, rec->value_len);
	sc->values[sc->n][rec->value_len] = '\0';
	sc->stamps[sc->n] = rec->stamp;
	sc->n++;
	return 0;
}

static void scan_done(void *ud)
{
	struct sim_scan *sc = ud;
	const void *next;
	size_t len;

	sc->done = 1;
	sc->rc = sc->res.rc;
	sc->has_next = 0;
	if (sc->rc == KVS_OK) {
		ck_assert_int_eq(kvs__scan_result_merge(&sc->res, scan_emit, sc,
		                                        &next, &len),
		                 KVS_OK);
		if (next != NULL) {
			SIM_ASSERT(len < sizeof(sc->next), "scan key too long");
			memcpy(sc->next, next, len);
			sc->next[len] = '\0';
			sc->next_len = len;
			sc->has_next = 1;
		}
	}
	kvs__scan_result_clear(&sc->res);
}

void sim_scan_page(struct sim *s, struct sim_scan *sc, int node,
                   const char *prefix, const char *start, int has_start,
                   size_t limit, unsigned r)
{
	static char start_copy[64];

	sc->sim = s;
	sc->node = node;
	sc->done = 0;
	memset(&sc->req, 0, sizeof(sc->req));
	sc->req.prefix = prefix;
	sc->req.prefix_len = strlen(prefix);
	snprintf(start_copy, sizeof(start_copy), "%s", start ? start : "");
	sc->req.start_after = start_copy;
	sc->req.start_len = strlen(start_copy);
	sc->req.has_start = has_start;
	sc->req.limit = limit;
	sc->req.values = 1;
	sc->req.r = r;
	kvs__node_scan(s->nodes[node].node, &sc->req, &sc->res, scan_done, sc);
}

struct copy_rec {
	kvs_record *rec;
	char *value;
	size_t cap;
};

static int copy_rec(void *ud, const kvs_record *rec)
{
	struct copy_rec *c = ud;
	size_t n = rec->value_len < c->cap - 1 ? rec->value_len : c->cap - 1;

	*c->rec = *rec;
	memcpy(c->value, rec->value, n);
	c->value[n] = '\0';
	c->rec->value = c->value;
	c->rec->key = NULL;
	return 0;
}

int sim_local(struct sim *s, int i, const char *key, kvs_record *rec,
              char *value, size_t cap)
{
	struct copy_rec c = {rec, value, cap};
	int rc = kvs_store_read(kvs__node_store(s->nodes[i].node), key,
	                        strlen(key), KVS_READ_TOMBSTONES, copy_rec, &c);

	SIM_ASSERT(rc == KVS_OK || rc == KVS_NOTFOUND, "read failed: %d", rc);
	return rc == KVS_OK;
}

/* ------------------------------------------------------------------ */
/* Opening and closing                                                  */

static uint64_t sim_now(void *ud)
{
	return ((struct sim *)ud)->now;
}

static uint64_t sim_wall(void *ud)
{
	return SIM_WALL_BASE_MS + ((struct sim *)ud)->now;
}

/* Stores live on tmpfs when there is one: their syncs are free there. */
static const char *scratch_dir(void)
{
	static char path[256];
	struct stat st;

	if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) &&
	    access("/dev/shm", W_OK) == 0) {
		snprintf(path, sizeof(path), "/dev/shm/kvs-sim-XXXXXX");
		if (mkdtemp(path) != NULL)
			return path;
	}
	snprintf(path, sizeof(path), "%s", tu_mkdtemp());
	return path;
}

/* The config of s's n shards with weights (NULL: 1 each). */
static kvs_config *sim_config(struct sim *s, const double *weights)
{
	char text[4096], err[KVS_ERRBUF_SIZE];
	size_t len;
	kvs_config *cfg = NULL;

	len = (size_t)snprintf(text, sizeof(text),
	                       "[cluster]\nrequest_timeout_ms = %u\n%s\n",
	                       SIM_TIMEOUT_MS, s->cluster_toml);
	for (int i = 0; i < s->n; i++)
		len += (size_t)snprintf(text + len, sizeof(text) - len,
		                        "[[shards]]\nname = \"n%d\"\nidx = %d\n"
		                        "address = \"127.0.0.1:%d\"\n"
		                        "weight = %g\n",
		                        i, i, 1000 + i,
		                        weights != NULL ? weights[i] : 1.0);
	ck_assert_msg(kvs_config_parse(&cfg, text, len, "sim.toml", err) ==
	                      KVS_OK,
	              "%s", err);
	return cfg;
}

static void open_nodes(struct sim *s)
{
	char err[KVS_ERRBUF_SIZE];

	for (int i = 0; i < s->n; i++) {
		struct sim_node *sn = &s->nodes[i];
		kvs__node_options o;
		char name[16], path[600];
		int rc;

		sn->sim = s;
		sn->i = i;
		snprintf(name, sizeof(name), "n%d", i);
		snprintf(path, sizeof(path), "%s/%s", s->dir, name);
		kvs__node_options_init(&o);
		o.peer_ops = &sim_ops;
		o.peer_impl = sn;
		o.now_ms = sim_now;
		o.now_ud = s;
		o.wall = sim_wall;
		o.wall_ud = s;
		o.no_prober = 1;
		o.inline_local_writes = 1;
		rc = kvs__node_open(&sn->node, s->cfg, name, path, &o, err,
		                    sizeof(err));
		ck_assert_msg(rc == KVS_OK, "%s", err);
	}
}

void sim_open(struct sim *s, uint64_t seed, int n, const char *cluster_toml)
{
	memset(s, 0, sizeof(*s));
	s->seed = seed;
	s->rng = seed;
	s->n = n;
	s->trace = getenv("KVS_SIM_TRACE") != NULL;
	snprintf(s->dir, sizeof(s->dir), "%s", scratch_dir());
	snprintf(s->cluster_toml, sizeof(s->cluster_toml), "%s",
	         cluster_toml ? cluster_toml : "");
	s->cfg = sim_config(s, NULL);
	open_nodes(s);
	for (int i = 0; i < n; i++)
		push(s, (uint64_t)i * 7 % TICK_MS, EV_TICK)->node = i;
	s->ticking = 1;
}

void sim_topology(struct sim *s, const double *weights, int phase,
                  const double *before)
{
	kvs_config *cfg = sim_config(s, weights);

	ck_assert_int_eq(kvs__config_set_move(cfg, phase, before), KVS_OK);
	for (int i = 0; i < s->n; i++) {
		kvs__node_close(s->nodes[i].node);
		s->nodes[i].node = NULL;
	}
	kvs_config_free(s->cfg);
	s->cfg = cfg;
	open_nodes(s);
}

void sim_close(struct sim *s)
{
	for (int i = 0; i < s->n; i++) {
		kvs__node_close(s->nodes[i].node);
		s->nodes[i].node = NULL;
	}
	/* Whatever is still queued refers to closed nodes. */
	for (size_t i = 0; i < s->n_ev; i++)
		free(s->ev[i].body);
	free(s->ev);
	for (size_t i = 0; i < s->n_held; i++)
		free(s->held[i].body);
	free(s->held);
	while (s->msgs != NULL) {
		struct sim_msg *m = s->msgs;

		s->msgs = m->next;
		free(m->frame);
		kvs__panswer_free(m->answer);
		free(m);
	}
	while (s->ops != NULL) {
		struct sim_op *o = s->ops;

		s->ops = o->next;
		kvs__result_clear(&o->res);
		free(o);
	}
	while (s->timers != NULL) {
		struct sim_timer *t = s->timers;

		s->timers = t->next;
		free(t);
	}
	kvs_config_free(s->cfg);
	tu_rmtree(s->dir);
}
