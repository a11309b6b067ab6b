/*
 * link_wire.c - message heads and the byte queues of links (link.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "kvshard/common.h"
#include "link.h"
#include "link_wire.h"
#include "util.h"

/* How much one read takes before the reader turns to its other links. */
#define READ_SHARE ((size_t)1 << 20)
#define READ_ROOM ((size_t)64 << 10)

void kvs__link_head(unsigned char *head, uint32_t len, uint32_t id,
                    int32_t rc)
{
	kvs__put_le32(head, len);
	kvs__put_le32(head + 4, id);
	kvs__put_le32(head + 8, (uint32_t)rc);
}

static int wq_add(struct kvs__wq *q, const void *data, size_t n)
{
	if (n == 0)
		return 0;
	if (q->off > 0 && q->off == q->len)
		q->off = q->len = 0;
	if (q->len + n > q->cap) {
		size_t cap = q->cap ? q->cap : 4096;
		char *g;

		/* Room made by what was sent: moved to the front first. */
		if (q->off > 0) {
			memmove(q->buf, q->buf + q->off, q->len - q->off);
			q->len -= q->off;
			q->off = 0;
		}
		while (cap < q->len + n)
			cap *= 2;
		if (cap > q->cap) {
			g = realloc(q->buf, cap);
			if (g == NULL)
				return -1;
			q->buf = g;
			q->cap = cap;
		}
	}
	memcpy(q->buf + q->len, data, n);
	q->len += n;
	return 0;
}

static ssize_t send_two(int fd, const void *a, size_t alen, const void *b,
                        size_t blen)
{
	struct iovec iov[2];
	struct msghdr m;
	ssize_t n;

	iov[0].iov_base = (void *)a;
	iov[0].iov_len = alen;
	iov[1].iov_base = (void *)b;
	iov[1].iov_len = blen;
	memset(&m, 0, sizeof(m));
	m.msg_iov = iov;
	m.msg_iovlen = blen > 0 ? 2 : 1;
	do
		n = sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		n = 0;
	return n;
}

int kvs__wq_send(struct kvs__wq *q, int fd, const unsigned char *head,
                 const void *body, size_t len, uint64_t *written)
{
	size_t total = KVS__LINK_HEAD + len, sent = 0;

	if (q->off == q->len) {
		ssize_t n = send_two(fd, head, KVS__LINK_HEAD, body, len);

		if (n < 0)
			return -1;
		sent = (size_t)n;
		*written += sent;
		if (sent == total)
			return 1;
	}
	/* Out of memory: a message half in the queue cannot be taken back,
	 * and the link must end (the caller shuts it down). */
	if (sent < KVS__LINK_HEAD &&
	    wq_add(q, head + sent, KVS__LINK_HEAD - sent) != 0)
		return -1;
	sent = sent > KVS__LINK_HEAD ? sent - KVS__LINK_HEAD : 0;
	if (wq_add(q, (const char *)body + sent, len - sent) != 0)
		return -1;
	return 0;
}

int kvs__wq_flush(struct kvs__wq *q, int fd, uint64_t *written)
{
	while (q->off < q->len) {
		ssize_t n = send_two(fd, q->buf + q->off, q->len - q->off,
		                     NULL, 0);

		if (n < 0)
			return -1;
		if (n == 0)
			return 0;
		q->off += (size_t)n;
		*written += (uint64_t)n;
	}
	q->off = q->len = 0;
	/* A burst's large buffer is not kept. */
	if (q->cap > ((size_t)1 << 20)) {
		free(q->buf);
		q->buf = NULL;
		q->cap = 0;
	}
	return 1;
}

void kvs__wq_reset(struct kvs__wq *q)
{
	q->off = q->len = 0;
}

void kvs__wq_free(struct kvs__wq *q)
{
	free(q->buf);
	memset(q, 0, sizeof(*q));
}

int kvs__rq_read(struct kvs__rq *q, int fd)
{
	size_t got = 0;

	while (got < READ_SHARE) {
		ssize_t n;

		if (q->cap - q->len < READ_ROOM / 2) {
			size_t cap = q->cap ? q->cap * 2 : READ_ROOM;
			char *g = realloc(q->buf, cap);

			if (g == NULL)
				return KVS_ENOMEM;
			q->buf = g;
			q->cap = cap;
		}
		n = recv(fd, q->buf + q->len, q->cap - q->len, MSG_DONTWAIT);
		if (n > 0) {
			q->len += (size_t)n;
			got += (size_t)n;
			continue;
		}
		if (n == 0)
			return KVS_ECLOSED;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		return KVS_ECONNECT;
	}
	return 1;
}

void kvs__rq_consume(struct kvs__rq *q, size_t n)
{
	if (n >= q->len) {
		q->len = 0;
		/* A large message's buffer is not kept. */
		if (q->cap > 4 * READ_ROOM) {
			free(q->buf);
			q->buf = NULL;
			q->cap = 0;
		}
		return;
	}
	memmove(q->buf, q->buf + n, q->len - n);
	q->len -= n;
}

void kvs__rq_reset(struct kvs__rq *q)
{
	q->len = 0;
}

void kvs__rq_free(struct kvs__rq *q)
{
	free(q->buf);
	memset(q, 0, sizeof(*q));
}

int kvs__link_next(const struct kvs__rq *q, size_t off, size_t max,
                   struct kvs__link_msg *m)
{
	const unsigned char *p = (const unsigned char *)q->buf + off;
	uint32_t len;

	if (q->len - off < KVS__LINK_HEAD)
		return 0;
	len = kvs__get_le32(p);
	if (len > max)
		return -1;
	if (q->len - off - KVS__LINK_HEAD < len)
		return 0;
	m->len = len;
	m->id = kvs__get_le32(p + 4);
	m->rc = (int32_t)kvs__get_le32(p + 8);
	m->body = q->buf + off + KVS__LINK_HEAD;
	return 1;
}
