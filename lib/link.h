/*
 * link.h - the peer protocol on links: long-lived connections between
 * nodes that carry the frames of protocol.h without HTTP around each one
 * (internal).
 *
 * A link starts as an HTTP request on the node's own port,
 *
 *     GET /internal/link HTTP/1.1
 *     Connection: Upgrade
 *     Upgrade: kvshard-peer/1
 *     X-Kvshard-Secret: ...        (when the cluster has a secret)
 *
 * checked like any peer request, and answered "101 Switching Protocols".
 * From then on each side sends messages, each a 12-byte head and a body:
 *
 *     u32 body length  u32 id  i32 rc       (little endian)
 *
 * A request's body is a request frame (rc 0); its answer carries the same
 * id, and either rc 0 and an answer frame, or the error that refused the
 * frame as a whole (then nothing of it was served) and no body. Answers
 * come in any order: the receiver serves the frames of a link at once.
 *
 * The sending side (kvs__peer_link_ops) keeps one link to each other
 * shard, written by the thread that sends (no hand-off) and read by one
 * thread, which runs the answers' callbacks. Until a link is up, and for
 * probes and timers, it uses the HTTP peer transport it wraps, so a peer
 * that does not speak links (or is not up yet) is still reached.
 *
 * The serving side (kvs__link_server) reads the links that the HTTP
 * server handed over, on one thread, and hands each frame to the node;
 * the answer is written by whichever thread completes it.
 */
#ifndef KVS_LINK_H
#define KVS_LINK_H

#include <stddef.h>
#include <stdint.h>

#include "peer.h"

#define KVS__LINK_HEAD 12

typedef struct kvs__peer_link_options {
	size_t self;              /* this node's position: no link */
	const char *const *hosts; /* each shard's host and port */
	const uint16_t *ports;
	size_t n;
	const char *secret;       /* the cluster secret, or NULL */
	unsigned connect_timeout_ms;
	unsigned request_timeout_ms;
	/* The HTTP transport used until a link is up, and for probes and
	 * timers; the link owns it from kvs__peer_link_new on (even when
	 * that fails). */
	const kvs__peer_ops *http_ops;
	void *http;
} kvs__peer_link_options;

extern const kvs__peer_ops kvs__peer_link_ops;

int kvs__peer_link_new(void **impl, const kvs__peer_link_options *o);

/* How many links of this sender are up, and the frames they carried. */
void kvs__peer_link_stats(void *impl, uint64_t *up, uint64_t *frames);

/* ------------------------------------------------------------------ */

struct kvs__node;
typedef struct kvs__link_server kvs__link_server;

/* Serve the links handed to it with node n; a message whose body is
 * larger than max_body closes its link. */
int kvs__link_server_new(kvs__link_server **out, struct kvs__node *n,
                         size_t max_body);

/*
 * Take over fd, a connection that agreed to speak the link protocol. The
 * server never closes fd itself: it calls on_close(ud) once, when the
 * link ends or the server is freed, and fd is not used after that.
 * KVS_ECLOSED when the server stops reading (on_close is then not
 * called: the caller closes).
 */
int kvs__link_server_add(kvs__link_server *s, int fd,
                         void (*on_close)(void *ud), void *ud);

/* Read no more frames (answers still go out). Then close the node,
 * then free the server, which ends every link. */
void kvs__link_server_stop(kvs__link_server *s);
void kvs__link_server_free(kvs__link_server *s);

/* Links being served; *serving (may be NULL) gets the bytes of their
 * frames being served now. */
size_t kvs__link_server_count(kvs__link_server *s, uint64_t *serving);

#endif /* KVS_LINK_H */
