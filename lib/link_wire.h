/*
 * link_wire.h - what both sides of a link share (internal): the message
 * head, a queue of bytes waiting to be written, and a buffer of bytes
 * read and not yet taken.
 */
#ifndef KVS_LINK_WIRE_H
#define KVS_LINK_WIRE_H

#include <stddef.h>
#include <stdint.h>

/* Bytes the socket did not take yet: buf[off, len). */
struct kvs__wq {
	char *buf;
	size_t off, len, cap;
};

/* Bytes read: buf[0, len). */
struct kvs__rq {
	char *buf;
	size_t len, cap;
};

struct kvs__link_msg {
	uint32_t id;
	int32_t rc;
	const char *body; /* in the read buffer */
	size_t len;
};

void kvs__link_head(unsigned char *head, uint32_t len, uint32_t id,
                    int32_t rc);

/*
 * Send head (KVS__LINK_HEAD bytes) and body on fd, after what waits in q
 * (nothing is sent ahead of it); what the socket does not take is queued.
 * 1: all of it left; 0: some is queued (flush when fd is writable); -1:
 * the socket failed, or no memory: the link must end.
 */
int kvs__wq_send(struct kvs__wq *q, int fd, const unsigned char *head,
                 const void *body, size_t len, uint64_t *written);

/* Send what waits: 1 all of it left, 0 some still waits, -1 failed. */
int kvs__wq_flush(struct kvs__wq *q, int fd, uint64_t *written);
void kvs__wq_reset(struct kvs__wq *q);
void kvs__wq_free(struct kvs__wq *q);

/* Read what fd has (up to a fair share): 1 (more may wait), 0 (nothing
 * more now), or KVS_ECLOSED (the peer closed), KVS_ECONNECT, KVS_ENOMEM.
 * What was read is kept in every case. */
int kvs__rq_read(struct kvs__rq *q, int fd);
/* Take n bytes off the front. */
void kvs__rq_consume(struct kvs__rq *q, size_t n);
void kvs__rq_reset(struct kvs__rq *q);
void kvs__rq_free(struct kvs__rq *q);

/* The message at q's offset off: 1 (m is set; the next one starts
 * KVS__LINK_HEAD + m->len further), 0 (not all there yet), -1 (its body
 * is larger than max: the link must end). */
int kvs__link_next(const struct kvs__rq *q, size_t off, size_t max,
                   struct kvs__link_msg *m);

#endif /* KVS_LINK_WIRE_H */
