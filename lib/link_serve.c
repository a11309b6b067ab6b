/*
 * link_serve.c - the serving side of links (link.h).
 *
 * One thread reads every link (epoll) and hands each frame to the node
 * (kvs__node_serve_peer), which serves its operations at once: reads on
 * this thread, writes through the store's writer, forwarded requests
 * through the node. Whichever thread completes a frame encodes its answer
 * and writes it to the link under the link's lock; what the socket does
 * not take waits for the reading thread to flush it.
 *
 * A link is freed when it has ended and no frame of it is being served
 * (a count of references).
 *
 * What a peer can make a node hold is bounded per link: the frames being
 * served (a frame is taken while less than SERVING_MAX bytes are; then
 * the link is not read until answers have gone out, and TCP pushes back
 * on the sender), the answers waiting for the peer to read them (OUT_MAX;
 * past that the link ends), and what is read of the messages not taken
 * yet (at most one largest frame, and a read's share).
 *
 * Stopping (kvs__link_server_stop, before the node closes) does not end
 * the thread: it waits until no frame is being handed to the node, and
 * from then on answers every new frame "shutting_down" at once (refused:
 * the sender knows it was not served) while answers still being
 * completed keep going out. Freeing ends the thread and the links.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "link.h"
#include "link_wire.h"
#include "node_internal.h"

struct sconn {
	struct kvs__link_server *s;
	int fd;
	pthread_mutex_t mu;
	struct kvs__wq out;
	uint64_t written;
	int out_armed;
	int ended;
	/* Not read (no EPOLLIN) while the frames it has being served come
	 * to SERVING_MAX bytes or more; kick asks the reading thread to
	 * read it again. */
	_Atomic int paused;
	_Atomic int kick;
	_Atomic size_t in_service;
	_Atomic unsigned refs;
	struct kvs__rq in; /* the reading thread's */
	void (*on_close)(void *ud);
	void *ud;
	struct sconn *next, *prev; /* s->conns, under s->mu */
};

/* Answers a link may have waiting for its peer to read: past it the
 * peer is not reading, and the link ends. */
#define OUT_MAX ((size_t)64 << 20)
/* How long a stopping server waits for its peers to close their links. */
#define DRAIN_MS 1000u
/* A link's frames are taken while less than this is being served. */
#define SERVING_MAX ((size_t)16 << 20)

struct kvs__link_server {
	kvs__node *n;
	size_t max_body;
	int ep, wake;
	pthread_t thread;
	int started;
	int locks; /* mu and serve_mu made */
	/* Held while frames are handed to the node, and while a link is
	 * added: kvs__link_server_stop waits for it once stopping is set. */
	pthread_mutex_t serve_mu;
	int stopping;          /* under serve_mu */
	_Atomic int closing;   /* the thread ends */
	pthread_mutex_t mu;
	struct sconn *conns;
	size_t n_conns;
};

/* A frame being served. */
struct serving {
	struct sconn *c;
	uint32_t id;
	char *frame;
	size_t len;
	kvs__peer_reply reply;
};

static void sconn_unref(struct sconn *c)
{
	if (atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	kvs__wq_free(&c->out);
	kvs__rq_free(&c->in);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

/* Set what c waits for (c->mu held): reading unless paused, writing
 * while answers wait. (A paused link does not wait for the peer's
 * half-close either: level-triggered, it would wake the thread in a
 * loop; a reset or a full close still comes as EPOLLHUP.) */
static void arm(struct sconn *c)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.events = (atomic_load(&c->paused) ? 0u : EPOLLIN | EPOLLRDHUP) |
	            (c->out_armed ? EPOLLOUT : 0u);
	ev.data.ptr = c;
	epoll_ctl(c->s->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* End c: once (any thread but one holding c->mu). */
static void sconn_end(struct sconn *c)
{
	struct kvs__link_server *s = c->s;

	pthread_mutex_lock(&c->mu);
	if (c->ended) {
		pthread_mutex_unlock(&c->mu);
		return;
	}
	c->ended = 1;
	epoll_ctl(s->ep, EPOLL_CTL_DEL, c->fd, NULL);
	pthread_mutex_unlock(&c->mu);
	/* Its owner closes the socket; nothing uses fd after this. */
	c->on_close(c->ud);
	pthread_mutex_lock(&s->mu);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	s->n_conns--;
	pthread_mutex_unlock(&s->mu);
	sconn_unref(c);
}

/* Send the answer (head, body) on c, or end c instead (any thread). */
static void answer(struct sconn *c, const unsigned char *head,
                   const char *body, size_t len, int end)
{
	int sent = 1;

	pthread_mutex_lock(&c->mu);
	if (!c->ended) {
		if (!end && c->out.len - c->out.off <= OUT_MAX)
			sent = kvs__wq_send(&c->out, c->fd, head, body, len,
			                    &c->written);
		if (sent == 0 && !c->out_armed) {
			c->out_armed = 1;
			arm(c);
		}
		/* The reading thread sees the end. */
		if (end || sent < 0 || c->out.len - c->out.off > OUT_MAX)
			shutdown(c->fd, SHUT_RDWR);
	}
	pthread_mutex_unlock(&c->mu);
}

/* A frame of len bytes is no longer being served: a paused link whose
 * frames being served are now below the bound is read again (any
 * thread). */
static void done_serving(struct sconn *c, size_t len)
{
	struct kvs__link_server *s = c->s;
	size_t left = atomic_fetch_sub(&c->in_service, len) - len;
	uint64_t one = 1;

	/* Against hold_back(): it sets paused, then looks at in_service; this
	 * lowers in_service, then looks at paused. One of the two sees the
	 * other's change. */
	if (left >= SERVING_MAX || !atomic_load(&c->paused) ||
	    atomic_exchange(&c->kick, 1))
		return;
	if (write(s->wake, &one, sizeof(one)) < 0) {
		/* the eventfd is full of wakes already */
	}
}

/* A frame is served: its answer goes out (any thread). */
static void served(void *ud)
{
	struct serving *q = ud;
	unsigned char head[KVS__LINK_HEAD];
	char *body = NULL;
	size_t len = 0;
	int broken = 0;

	/* An error code in the head says that nothing of the frame was
	 * served (decoding, allocating). Once its operations ran, an answer
	 * that cannot be built ends the link instead: the sender then knows
	 * that they may have run. */
	if (q->reply.rc == KVS_OK) {
		body = kvs__peer_reply_encode(&q->reply, &len);
		broken = body == NULL || len > UINT32_MAX;
	}
	kvs__link_head(head, (uint32_t)len, q->id, q->reply.rc);
	answer(q->c, head, body, len, broken);
	free(body);
	kvs__peer_reply_clear(&q->reply);
	free(q->frame);
	done_serving(q->c, q->len);
	sconn_unref(q->c);
	free(q);
}

/* Answer frame id "shutting down" at once: nothing of it was served. */
static void refuse(struct sconn *c, uint32_t id)
{
	unsigned char head[KVS__LINK_HEAD];

	kvs__link_head(head, 0, id, KVS_ESHUTDOWN);
	answer(c, head, NULL, 0, 0);
}

/* Stop reading c: 1, or 0 when its frames being served dropped below
 * the bound meanwhile (reading thread). */
static int hold_back(struct sconn *c)
{
	atomic_store(&c->paused, 1);
	if (atomic_load(&c->in_service) >= SERVING_MAX) {
		pthread_mutex_lock(&c->mu);
		arm(c);
		pthread_mutex_unlock(&c->mu);
		return 1;
	}
	atomic_store(&c->paused, 0);
	return 0;
}

/* Serve the messages read (s->serve_mu held): -1 when the link must
 * end. */
static int serve_read(struct sconn *c)
{
	struct kvs__link_msg m;
	size_t off = 0;
	int got;

	while ((got = kvs__link_next(&c->in, off, c->s->max_body, &m)) == 1) {
		struct serving *q;

		if (c->s->stopping) {
			refuse(c, m.id);
			off += KVS__LINK_HEAD + m.len;
			continue;
		}
		if (atomic_load(&c->in_service) >= SERVING_MAX &&
		    hold_back(c))
			break; /* the rest stays in c->in */
		q = calloc(1, sizeof(*q));

		if (q != NULL)
			q->frame = malloc(m.len ? m.len : 1);
		if (q == NULL || q->frame == NULL) {
			if (q != NULL)
				free(q);
			return -1;
		}
		memcpy(q->frame, m.body, m.len);
		q->c = c;
		q->id = m.id;
		q->len = m.len;
		atomic_fetch_add(&c->in_service, m.len);
		atomic_fetch_add(&c->refs, 1);
		kvs__node_serve_peer(c->s->n, q->frame, m.len, &q->reply, served,
		                     q);
		off += KVS__LINK_HEAD + m.len;
	}
	kvs__rq_consume(&c->in, off);
	return got < 0 ? -1 : 0;
}

static void on_event(struct sconn *c, uint32_t ev)
{
	if (ev & EPOLLOUT) {
		int rc;

		pthread_mutex_lock(&c->mu);
		rc = kvs__wq_flush(&c->out, c->fd, &c->written);
		if (rc == 1 && c->out_armed) {
			c->out_armed = 0;
			arm(c);
		}
		pthread_mutex_unlock(&c->mu);
		if (rc < 0) {
			sconn_end(c);
			return;
		}
	}
	if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) {
		int rc, bad;

		/* Paused: what was read waits; a peer gone ends the link. */
		if (atomic_load(&c->paused)) {
			if (ev & (EPOLLERR | EPOLLHUP))
				sconn_end(c);
			return;
		}
		rc = kvs__rq_read(&c->in, c->fd);

		pthread_mutex_lock(&c->s->serve_mu);
		bad = serve_read(c);
		pthread_mutex_unlock(&c->s->serve_mu);
		if (bad != 0 || rc < 0)
			sconn_end(c);
	}
}

/* Read again the paused links whose frames being served dropped below
 * the bound (reading thread). */
static void resume_kicked(struct kvs__link_server *s)
{
	for (;;) {
		struct sconn *c;

		pthread_mutex_lock(&s->mu);
		for (c = s->conns; c != NULL; c = c->next)
			if (atomic_load(&c->kick))
				break;
		if (c != NULL)
			atomic_fetch_add(&c->refs, 1);
		pthread_mutex_unlock(&s->mu);
		if (c == NULL)
			return;
		atomic_store(&c->kick, 0);
		atomic_store(&c->paused, 0);
		pthread_mutex_lock(&c->mu);
		if (!c->ended)
			arm(c);
		pthread_mutex_unlock(&c->mu);
		/* What it had read is served (or it pauses again) whether or
		 * not more comes. */
		on_event(c, EPOLLIN);
		sconn_unref(c);
	}
}

static void *serve_main(void *arg)
{
	struct kvs__link_server *s = arg;
	struct epoll_event evs[32];

	pthread_setname_np(pthread_self(), "kvs-links-in");
	while (!atomic_load(&s->closing)) {
		int n = epoll_wait(s->ep, evs, 32, 1000), kicked = 0;

		for (int i = 0; i < n && !atomic_load(&s->closing); i++) {
			struct sconn *c = evs[i].data.ptr;

			if (c == NULL) {
				uint64_t v;

				kicked |= read(s->wake, &v, sizeof(v)) == sizeof(v);
				continue;
			}
			/* Held: an answer's writer may end it meanwhile. */
			atomic_fetch_add(&c->refs, 1);
			on_event(c, evs[i].events);
			sconn_unref(c);
		}
		/* After the batch: resuming may end a link whose event is
		 * still in it. */
		if (kicked && !atomic_load(&s->closing))
			resume_kicked(s);
	}
	return NULL;
}

int kvs__link_server_add(kvs__link_server *s, int fd,
                         void (*on_close)(void *ud), void *ud)
{
	struct sconn *c;
	struct epoll_event ev;
	int one = 1, fl, rc = KVS_OK;

	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return KVS_ENOMEM;
	if (pthread_mutex_init(&c->mu, NULL) != 0) {
		free(c);
		return KVS_ENOMEM;
	}
	c->s = s;
	c->fd = fd;
	c->on_close = on_close;
	c->ud = ud;
	atomic_init(&c->refs, 1);
	fl = fcntl(fd, F_GETFL);
	if (fl >= 0 && !(fl & O_NONBLOCK))
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	/* Not a TCP socket over TLS: then this fails, harmlessly. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN | EPOLLRDHUP;
	ev.data.ptr = c;
	/* Under serve_mu: a stop either comes first (and the link is not
	 * taken) or waits until it is in the list, where freeing ends it. */
	pthread_mutex_lock(&s->serve_mu);
	if (s->stopping) {
		rc = KVS_ECLOSED;
	} else {
		pthread_mutex_lock(&s->mu);
		c->next = s->conns;
		if (s->conns != NULL)
			s->conns->prev = c;
		s->conns = c;
		s->n_conns++;
		pthread_mutex_unlock(&s->mu);
		if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) != 0)
			rc = KVS_ESYS;
	}
	pthread_mutex_unlock(&s->serve_mu);
	if (rc == KVS_ECLOSED) {
		sconn_unref(c);
		return rc;
	}
	if (rc != KVS_OK)
		sconn_end(c); /* in the list: ended, on_close called */
	return KVS_OK;
}

size_t kvs__link_server_count(kvs__link_server *s, uint64_t *serving)
{
	uint64_t bytes = 0;
	size_t n;

	pthread_mutex_lock(&s->mu);
	n = s->n_conns;
	for (struct sconn *c = s->conns; c != NULL; c = c->next)
		bytes += atomic_load(&c->in_service);
	pthread_mutex_unlock(&s->mu);
	if (serving != NULL)
		*serving = bytes;
	return n;
}

void kvs__link_server_stop(kvs__link_server *s)
{
	unsigned char head[KVS__LINK_HEAD];

	if (s == NULL)
		return;
	/* Once it has the lock, no frame is being handed to the node, and
	 * none will be. */
	pthread_mutex_lock(&s->serve_mu);
	if (s->stopping) {
		pthread_mutex_unlock(&s->serve_mu);
		return;
	}
	s->stopping = 1;
	pthread_mutex_unlock(&s->serve_mu);
	/* Each peer is told (a message of id 0): it sends its next frames
	 * over HTTP and closes the link once its answers are in. */
	kvs__link_head(head, 0, 0, KVS_ESHUTDOWN);
	pthread_mutex_lock(&s->mu);
	for (struct sconn *c = s->conns; c != NULL; c = c->next)
		answer(c, head, NULL, 0, 0);
	pthread_mutex_unlock(&s->mu);
}

void kvs__link_server_free(kvs__link_server *s)
{
	uint64_t one = 1;

	if (s == NULL)
		return;
	kvs__link_server_stop(s);
	/* Peers close their links once their answers are in; frames that
	 * cross the notice are refused (and sent again over HTTP). What
	 * is still open after DRAIN_MS is closed here. */
	{
		uint64_t start = kvs__mono_ms();

		while (kvs__link_server_count(s, NULL) > 0 &&
		       kvs__mono_ms() - start < DRAIN_MS)
			usleep(2000);
	}
	atomic_store(&s->closing, 1);
	if (write(s->wake, &one, sizeof(one)) < 0) {
		/* its wait ends within a second anyway */
	}
	if (s->started)
		pthread_join(s->thread, NULL);
	s->started = 0;
	for (;;) {
		struct sconn *c;

		pthread_mutex_lock(&s->mu);
		c = s->conns;
		if (c != NULL)
			atomic_fetch_add(&c->refs, 1);
		pthread_mutex_unlock(&s->mu);
		if (c == NULL)
			break;
		sconn_end(c);
		sconn_unref(c);
	}
	close(s->ep);
	close(s->wake);
	pthread_mutex_destroy(&s->mu);
	pthread_mutex_destroy(&s->serve_mu);
	free(s);
}

int kvs__link_server_new(kvs__link_server **out, kvs__node *n,
                         size_t max_body)
{
	kvs__link_server *s = calloc(1, sizeof(*s));
	struct epoll_event ev;

	*out = NULL;
	if (s == NULL)
		return KVS_ENOMEM;
	s->n = n;
	s->max_body = max_body;
	s->ep = epoll_create1(EPOLL_CLOEXEC);
	s->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->ep < 0 || s->wake < 0)
		goto fail;
	pthread_mutex_init(&s->mu, NULL);
	pthread_mutex_init(&s->serve_mu, NULL);
	s->locks = 1;
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.ptr = NULL;
	if (epoll_ctl(s->ep, EPOLL_CTL_ADD, s->wake, &ev) != 0 ||
	    pthread_create(&s->thread, NULL, serve_main, s) != 0)
		goto fail;
	s->started = 1;
	*out = s;
	return KVS_OK;
fail:
	if (s->ep >= 0)
		close(s->ep);
	if (s->wake >= 0)
		close(s->wake);
	if (s->locks) {
		pthread_mutex_destroy(&s->mu);
		pthread_mutex_destroy(&s->serve_mu);
	}
	free(s);
	return KVS_ENOMEM;
}
