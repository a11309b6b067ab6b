/*
 * guard.c - what one client may take of a node: connections (from one
 * address, and in all), time to send a request's headers and its body,
 * and memory for request bodies ([limits] in docs/config.md). Every
 * refusal is counted for /metrics and logged at most once per cause per
 * interval (log.h).
 *
 * Deadlines. libmicrohttpd's connection timeout starts again with every
 * byte, so a client sending one byte every few seconds would hold a
 * connection for ever, and a thousand such clients every connection.
 * Here each connection carries a deadline that no byte moves:
 *
 *   connection opened          now + header_timeout_s     (headers)
 *   headers in (first call)    now + body_timeout_s       (body)
 *   body in (dispatch)         none: the node operation and the answer
 *                              have their own bounds
 *   answer done                now + idle_timeout_s + header_timeout_s
 *                              (the next request's headers)
 *
 * The next request's clock cannot start at its first byte, which
 * libmicrohttpd reads without telling: it starts at the previous answer
 * and leaves the idle wait first. A silent kept-alive connection is closed
 * by libmicrohttpd after idle_timeout_s as before; one that trickles its
 * next request is cut header_timeout_s later.
 *
 * A watch thread wakes every GUARD_TICK_MS and shuts down (both ways) the
 * socket of each connection past its deadline; libmicrohttpd then sees
 * the connection end and closes it itself, as if the client had left.
 * Entries live from libmicrohttpd's "connection started" notification to
 * its "connection closed" one, which comes before it closes the socket;
 * the watch thread shuts sockets down under the mutex that the close
 * notification takes to unlink an entry, so it never touches a freed
 * entry, nor a descriptor already closed (and perhaps reused).
 *
 * Connection caps. libmicrohttpd 0.9.75's own caps cannot be counted:
 * both refusals log the same message, and at its global limit it stops
 * accepting, so that connections wait unseen in the listen queue. The
 * caps are enforced here instead, from the accept policy callback (which
 * sees every connection before it is served): a connection it admits is
 * counted at once, one it refuses is closed at once, and the "connection
 * closed" notification gives the place back.
 *
 * Body budget. Request bodies are held in memory until the request is
 * handled. Each reserves its bytes (all of a Content-Length at once, a
 * chunked body as its buffer grows) from one atomic count, bounded by
 * max_buffered_bytes; the request releases them when it completes,
 * however it ends (answered, refused, or the client gone).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "log.h"
#include "metrics.h"
#include "server.h"

/* How often the watch thread looks for connections past their deadline:
 * a deadline is kept to within this. */
#define GUARD_TICK_MS 100u
/* Most buckets of the table of client addresses. */
#define MAX_BUCKETS ((size_t)1 << 20)

/* A client address, as the per-client cap tells them apart. */
struct addr_key {
	int family; /* AF_INET, AF_INET6; 0: not capped (another kind) */
	unsigned char bytes[16];
};

/* Connections of one client address. */
struct client {
	struct client *next; /* in its bucket */
	struct addr_key key;
	unsigned conns;
};

struct guard_conn {
	struct guard_conn *prev, *next;
	struct addr_key key;
	int counted; /* in its address's count */
	int fd;
	int cut; /* shut down by the watch thread (under g.mu) */
	/* Its TLS client certificate makes it a peer's: 0 not known yet,
	 * 1 yes, -1 no (only its own thread reads and writes it). */
	int peer_cert;
	/* The deadline in monotonic ms, shifted left by one, its low bit set
	 * for a body's deadline (one word: read together); 0: none. */
	_Atomic uint64_t clock;
};

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	const kvs_cluster_config *cc; /* set by the first connection */
	struct guard_conn *conns;
	unsigned n_conns;
	struct client **buckets; /* NULL: the per-client cap is off */
	size_t n_buckets;        /* a power of two */
	pthread_t thread;
	int running;
	int stopping;
	_Atomic size_t buffered; /* bytes of bodies reserved */
} g = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

/* ------------------------------------------------------------------ */
/* Client addresses                                                     */

static void key_of(const struct sockaddr *sa, socklen_t len,
                   struct addr_key *k)
{
	memset(k, 0, sizeof(*k));
	if (sa == NULL)
		return;
	if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		k->family = AF_INET;
		memcpy(k->bytes, &in->sin_addr, sizeof(in->sin_addr));
	} else if (sa->sa_family == AF_INET6 &&
	           len >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 =
		        (const struct sockaddr_in6 *)sa;

		k->family = AF_INET6;
		memcpy(k->bytes, &in6->sin6_addr, sizeof(in6->sin6_addr));
	}
}

/* The address as text, for the log. */
static const char *key_text(const struct addr_key *k, char *buf, size_t len)
{
	if (k->family == 0 ||
	    inet_ntop(k->family, k->bytes, buf, (socklen_t)len) == NULL)
		return "a client";
	return buf;
}

static size_t key_hash(const struct addr_key *k)
{
	/* FNV-1a over the address. */
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < sizeof(k->bytes); i++)
		h = (h ^ k->bytes[i]) * 1099511628211ull;
	return (size_t)(h ^ (h >> 32));
}

/* The client of k, or NULL (g.mu held). */
static struct client **client_slot(const struct addr_key *k)
{
	struct client **p;

	if (g.buckets == NULL || k->family == 0)
		return NULL;
	p = &g.buckets[key_hash(k) & (g.n_buckets - 1)];
	while (*p != NULL && memcmp(&(*p)->key, k, sizeof(*k)) != 0)
		p = &(*p)->next;
	return p;
}

/* Count one connection of k more (g.mu held); 1 if its address's count
 * has it (0: another kind of address, or out of memory). */
static int count_in(const struct addr_key *k)
{
	struct client **slot = client_slot(k);

	g.n_conns++;
	if (slot != NULL && *slot == NULL) {
		*slot = calloc(1, sizeof(**slot));
		if (*slot != NULL)
			(*slot)->key = *k;
	}
	if (slot == NULL || *slot == NULL)
		return 0;
	(*slot)->conns++;
	return 1;
}

/* Count one connection of k less (g.mu held); counted: count_in's. */
static void count_out(const struct addr_key *k, int counted)
{
	struct client **slot = counted ? client_slot(k) : NULL;

	g.n_conns--;
	if (slot != NULL && *slot != NULL && --(*slot)->conns == 0) {
		struct client *gone = *slot;

		*slot = gone->next;
		free(gone);
	}
}

/*
 * The connection this thread admitted, counted already, that
 * libmicrohttpd has not started yet. It starts it (or drops it, after a
 * failure it does not report) on the same thread before it accepts
 * another: one still here at the next admission was dropped, and is
 * given back then.
 */
static _Thread_local struct {
	int held;
	int counted;
	struct addr_key key;
} pending;

static void first_connection(struct server *s);

/* ------------------------------------------------------------------ */
/* Refusals                                                             */

#define ADDR_TEXT_MAX INET6_ADDRSTRLEN

int guard_admit(struct server *s, const struct sockaddr *sa, socklen_t len)
{
	const kvs_cluster_config *cc = s->cc;
	struct addr_key k;
	struct client **slot;
	char text[ADDR_TEXT_MAX];
	int ok = 1;

	key_of(sa, len, &k);
	pthread_mutex_lock(&g.mu);
	if (g.cc == NULL)
		first_connection(s);
	if (pending.held) {
		count_out(&pending.key, pending.counted);
		pending.held = 0;
	}
	if (g.n_conns >= cc->max_connections) {
		ok = 0;
		metrics_refused(REFUSED_CONNECTIONS);
		log_limited(LL_WARN,
		            "http: connection from %s refused: max_connections "
		            "(%u) are open",
		            key_text(&k, text, sizeof(text)),
		            cc->max_connections);
	} else if (cc->max_connections_per_client > 0 &&
	           (slot = client_slot(&k)) != NULL && *slot != NULL &&
	           (*slot)->conns >= cc->max_connections_per_client) {
		ok = 0;
		metrics_refused(REFUSED_CLIENT_CAP);
		log_limited(LL_WARN,
		            "http: connection from %s refused: it holds "
		            "max_connections_per_client (%u) already",
		            key_text(&k, text, sizeof(text)),
		            cc->max_connections_per_client);
	} else {
		/* Counted now: connections accepted at once by several
		 * threads cannot pass a cap together. */
		pending.counted = count_in(&k);
		pending.key = k;
		pending.held = 1;
	}
	pthread_mutex_unlock(&g.mu);
	return ok;
}

/* ------------------------------------------------------------------ */
/* Deadlines                                                            */

/* c's deadline: s seconds from now, for its body or its headers. */
static void set_deadline(struct guard_conn *c, unsigned s, int body)
{
	uint64_t at = kvs__mono_ms() + (uint64_t)s * 1000u;

	if (c != NULL)
		atomic_store_explicit(&c->clock, at << 1 | (body != 0),
		                      memory_order_relaxed);
}

/* Shut down every connection past its deadline (g.mu held). */
static void sweep(void)
{
	uint64_t now = kvs__mono_ms();
	char text[ADDR_TEXT_MAX];

	for (struct guard_conn *c = g.conns; c != NULL; c = c->next) {
		uint64_t v = atomic_load_explicit(&c->clock,
		                                  memory_order_relaxed);

		if (v == 0 || c->cut || now < v >> 1)
			continue;
		/* libmicrohttpd sees the end and closes the connection. */
		shutdown(c->fd, SHUT_RDWR);
		c->cut = 1;
		if (v & 1) {
			metrics_refused(REFUSED_BODY_TIMEOUT);
			log_limited(LL_WARN,
			            "http: connection from %s closed: its "
			            "request's body did not arrive within "
			            "body_timeout_s (%u s)",
			            key_text(&c->key, text, sizeof(text)),
			            g.cc->body_timeout_s);
		} else {
			metrics_refused(REFUSED_HEADER_TIMEOUT);
			log_limited(LL_WARN,
			            "http: connection from %s closed: its "
			            "request's headers did not arrive in time "
			            "(header_timeout_s %u s)",
			            key_text(&c->key, text, sizeof(text)),
			            g.cc->header_timeout_s);
		}
	}
}

static void *watch_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "kvs-guard");
	pthread_mutex_lock(&g.mu);
	while (!g.stopping) {
		struct timespec until;

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += (long)GUARD_TICK_MS * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&g.cv, &g.mu, &until);
		if (!g.stopping)
			sweep();
	}
	pthread_mutex_unlock(&g.mu);
	return NULL;
}

/* The first connection sets up the table and the watch thread (g.mu
 * held). */
static void first_connection(struct server *s)
{
	g.cc = s->cc;
	if (s->cc->max_connections_per_client > 0) {
		size_t n = 16;

		while (n < s->cc->max_connections && n < MAX_BUCKETS)
			n *= 2;
		g.buckets = calloc(n, sizeof(*g.buckets));
		g.n_buckets = g.buckets != NULL ? n : 0;
		if (g.buckets == NULL)
			log_msg(LL_ERROR, "out of memory: "
			                  "max_connections_per_client is not "
			                  "enforced");
	}
	g.stopping = 0;
	if (pthread_create(&g.thread, NULL, watch_main, NULL) != 0) {
		log_msg(LL_ERROR, "cannot start a thread: header_timeout_s and "
		                  "body_timeout_s are not enforced");
		return;
	}
	g.running = 1;
}

struct guard_conn *guard_open(struct server *s, int fd,
                              const struct sockaddr *sa, socklen_t len)
{
	struct guard_conn *c = calloc(1, sizeof(*c));
	struct addr_key k;

	key_of(sa, len, &k);
	pthread_mutex_lock(&g.mu);
	if (g.cc == NULL)
		first_connection(s);
	if (c == NULL) {
		/* Without its deadlines, it is not served. */
		if (pending.held)
			count_out(&pending.key, pending.counted);
		pending.held = 0;
		pthread_mutex_unlock(&g.mu);
		shutdown(fd, SHUT_RDWR);
		return NULL;
	}
	c->fd = fd;
	c->key = k;
	if (pending.held && memcmp(&pending.key, &k, sizeof(k)) == 0) {
		c->counted = pending.counted; /* by guard_admit */
		pending.held = 0;
	} else {
		c->counted = count_in(&k);
	}
	c->next = g.conns;
	if (g.conns != NULL)
		g.conns->prev = c;
	g.conns = c;
	set_deadline(c, s->cc->header_timeout_s, 0);
	pthread_mutex_unlock(&g.mu);
	return c;
}

void guard_close(struct guard_conn *c)
{
	if (c == NULL)
		return;
	pthread_mutex_lock(&g.mu);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		g.conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	count_out(&c->key, c->counted);
	pthread_mutex_unlock(&g.mu);
	free(c);
}

void guard_headers_in(struct server *s, struct guard_conn *c)
{
	set_deadline(c, s->cc->body_timeout_s, 1);
}

void guard_body_in(struct guard_conn *c)
{
	if (c != NULL)
		atomic_store_explicit(&c->clock, 0, memory_order_relaxed);
}

void guard_answered(struct server *s, struct guard_conn *c)
{
	set_deadline(c, s->cc->idle_timeout_s + s->cc->header_timeout_s, 0);
}

void guard_stop(void)
{
	pthread_mutex_lock(&g.mu);
	g.stopping = 1;
	pthread_cond_signal(&g.cv);
	pthread_mutex_unlock(&g.mu);
	if (g.running)
		pthread_join(g.thread, NULL);
	pthread_mutex_lock(&g.mu);
	g.running = 0;
	/* Every connection is closed; counts that libmicrohttpd never
	 * gave back (a connection it dropped after admitting it) go too. */
	for (size_t i = 0; i < g.n_buckets; i++)
		while (g.buckets[i] != NULL) {
			struct client *c = g.buckets[i];

			g.buckets[i] = c->next;
			free(c);
		}
	g.n_conns = 0;
	free(g.buckets);
	g.buckets = NULL;
	g.n_buckets = 0;
	g.cc = NULL;
	pthread_mutex_unlock(&g.mu);
}

int guard_peer_cert(const struct guard_conn *c)
{
	return c != NULL ? c->peer_cert : 0;
}

void guard_set_peer_cert(struct guard_conn *c, int yes)
{
	if (c != NULL)
		c->peer_cert = yes ? 1 : -1;
}

/* ------------------------------------------------------------------ */
/* Body budget                                                          */

int guard_try_reserve(struct server *s, size_t n)
{
	size_t max = s->cc->max_buffered_bytes;
	size_t cur = atomic_load_explicit(&g.buffered, memory_order_relaxed);

	do {
		if (n > max || cur > max - n)
			return 0;
	} while (!atomic_compare_exchange_weak_explicit(
	        &g.buffered, &cur, cur + n, memory_order_relaxed,
	        memory_order_relaxed));
	return 1;
}

int guard_reserve(struct server *s, size_t n)
{
	if (guard_try_reserve(s, n))
		return 1;
	metrics_refused(REFUSED_BODY_BUDGET);
	log_limited(LL_WARN,
	            "http: a request body refused with 503 overloaded: %zu "
	            "more bytes would take the bodies held past "
	            "max_buffered_bytes (%zu)",
	            n, s->cc->max_buffered_bytes);
	return 0;
}

void guard_release(size_t n)
{
	if (n > 0)
		atomic_fetch_sub_explicit(&g.buffered, n, memory_order_relaxed);
}

size_t guard_buffered(void)
{
	return atomic_load_explicit(&g.buffered, memory_order_relaxed);
}
