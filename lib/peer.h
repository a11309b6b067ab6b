/*
 * peer.h - the sending side of the peer protocol, behind an operations
 * table (internal).
 *
 * The node never talks to the network itself: it hands encoded frames of
 * operations (protocol.h) to a kvs__peer_ops, which delivers them to a
 * shard and brings back its answer. kvs__peer_http is the real one: HTTP
 * POSTs over the transport (libcurl). tests/test_node.c plugs in a
 * simulated network instead, which loses, delays, duplicates and reorders
 * messages at the will of a seeded random generator, like Redis's dictType
 * makes a dict's policy pluggable.
 *
 * Contract of every implementation:
 *   - send() and probe() either return an error (the callback will never
 *     be called) or return KVS_OK and call the callback exactly once,
 *     later, from any thread (never from inside send() or probe()), with
 *     an answer that is never NULL (allocate it when sending);
 *   - send() takes the frame (malloc'ed) when it returns KVS_OK; on an
 *     error the caller keeps it;
 *   - every message is bounded in time: no answer within the request
 *     timeout completes it with KVS_ETIMEDOUT;
 *   - timer() calls its callback exactly once, later (never inside
 *     timer()), from any thread: after ms, or earlier when the
 *     implementation is freed. Timers cannot be cancelled.
 */
#ifndef KVS_PEER_H
#define KVS_PEER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol.h"

/* The answer to one message. The receiver of a kvs__peer_cb owns it. */
typedef struct kvs__panswer {
	/* KVS_OK: res[0..n) are the results, in the order of the
	 * operations. Otherwise the whole message failed: KVS_ECONNECT,
	 * KVS_ETIMEDOUT, KVS_ESHUTDOWN (the peer is stopping), KVS_EPROTO,
	 * KVS_EAUTH, KVS_EFORBIDDEN, KVS_ENOMEM, KVS_ECLOSED (we are
	 * stopping); res is NULL. */
	int rc;
	/* With rc != KVS_OK: 1 when the peer certainly did not act on any
	 * operation (it could not be reached, or rejected the frame as a
	 * whole before serving it); 0 when it may have, e.g. the answer
	 * timed out or the connection broke after the frame was sent. */
	int refused;
	size_t n;
	kvs__pres *res;
	char *body; /* the frame res points into */
	/* One operation's part of a frame several shared (node.c's lanes):
	 * res is &one, and body belongs to shared. */
	struct kvs__pshared *shared;
	kvs__pres one;
} kvs__panswer;

/* The body of an answer shared by the answers of its operations. */
typedef struct kvs__pshared {
	_Atomic unsigned refs;
	char *body;
} kvs__pshared;

/* Free an answer and everything it points to; accepts NULL. */
void kvs__panswer_free(kvs__panswer *a);

/*
 * Fill a (zeroed) answer from a frame body of n results; takes body
 * (malloc'ed) in every case. A frame that does not decode gives rc =
 * KVS_EPROTO.
 */
void kvs__panswer_fill(kvs__panswer *a, char *body, size_t len, size_t n);

typedef void (*kvs__peer_cb)(void *ud, kvs__panswer *ans);
typedef void (*kvs__peer_timer_cb)(void *ud);
/* rc: KVS_OK (it answered), or why not (as kvs__panswer.rc). */
typedef void (*kvs__probe_cb)(void *ud, int rc);

typedef struct kvs__peer_ops {
	/* Send frame (a request frame of n_ops operations, malloc'ed) to
	 * shard peer (its position in the config); no answer within
	 * timeout_ms (0: the request timeout) completes it with
	 * KVS_ETIMEDOUT. */
	int (*send)(void *impl, size_t peer, char *frame, size_t len,
	            size_t n_ops, unsigned timeout_ms, kvs__peer_cb cb,
	            void *ud);
	/* Ask shard peer whether it is alive. */
	int (*probe)(void *impl, size_t peer, kvs__probe_cb cb, void *ud);
	/* Call cb(ud) in ms milliseconds (speculative retries). */
	int (*timer)(void *impl, unsigned ms, kvs__peer_timer_cb cb, void *ud);
	/* Complete what is in flight (KVS_ECLOSED) and free. */
	void (*free)(void *impl);
} kvs__peer_ops;

/* The HTTP implementation. */
typedef struct kvs__peer_http_options {
	uint32_t self_idx;        /* sent as the frame's sender */
	const char *const *urls;  /* "http://host:port" of each shard */
	size_t n_urls;
	const char *secret;       /* the cluster secret, or NULL */
	/* HTTPS: see kvs__transport_options. */
	const char *tls_ca;
	const char *tls_cert;
	const char *tls_key;
	unsigned connect_timeout_ms;
	unsigned request_timeout_ms;
	unsigned probe_timeout_ms;
} kvs__peer_http_options;

extern const kvs__peer_ops kvs__peer_http_ops;

/**
 * Start the HTTP implementation (its transport thread). opts is copied.
 *
 * @return KVS_OK, KVS_ENOMEM, KVS_ESYS.
 */
int kvs__peer_http_new(void **impl, const kvs__peer_http_options *opts);

#endif /* KVS_PEER_H */
