/*
 * health.h - what one side believes about a peer's health (internal).
 *
 * Shared by the node (which also probes its peers: node.c) and the remote
 * client (which only learns from its own requests). A peer is up until a
 * request to it fails for lack of a usable answer (refused, unreachable,
 * timed out, shutting down, refusing our credentials, or not speaking our
 * protocol); then it is down until it answers again.
 * Each consecutive failure doubles a back-off, from KVS__BACKOFF_MIN_MS to
 * KVS__BACKOFF_MAX_MS: a side that does not probe (the client) treats a
 * down peer as usable again once its back-off has passed, so that one
 * request finds out whether it came back.
 *
 * All fields are atomics: any thread may note outcomes and ask.
 */
#ifndef KVS_HEALTH_H
#define KVS_HEALTH_H

#include <stdatomic.h>
#include <stdint.h>

#define KVS__BACKOFF_MIN_MS 250u
#define KVS__BACKOFF_MAX_MS 5000u

typedef struct kvs__health {
	_Atomic int up;
	_Atomic unsigned failures;     /* consecutive */
	_Atomic uint64_t retry_at_ms;  /* end of the current back-off */
} kvs__health;

void kvs__health_init(kvs__health *h);

/* Does a request's result code mean that the peer did not answer? */
int kvs__health_is_failure(int rc);

/**
 * Record the result code of a request to the peer, at now_ms.
 *
 * @return -1 if this made it go down, +1 if it came back up, else 0.
 */
int kvs__health_note(kvs__health *h, int rc, uint64_t now_ms);

/* Is the peer believed up? */
int kvs__health_up(const kvs__health *h);

/* Up, or down with its back-off over: worth a request. */
int kvs__health_usable(const kvs__health *h, uint64_t now_ms);

/* The back-off after the failures noted so far (0 when up). */
uint64_t kvs__health_backoff_ms(const kvs__health *h);

#endif /* KVS_HEALTH_H */
