/*
 * metrics.h - request counters and latency histograms for /metrics.
 *
 * Each thread counts into its own block (no shared cache lines, no locked
 * instructions on the request path); /metrics sums the blocks.
 */
#ifndef KVS_SERVER_METRICS_H
#define KVS_SERVER_METRICS_H

#include <stdint.h>

#include "server.h"

/* Why a connection or a request was refused before it was served. */
enum refusal {
	REFUSED_CLIENT_CAP,     /* max_connections_per_client */
	REFUSED_CONNECTIONS,    /* max_connections */
	REFUSED_HEADER_TIMEOUT, /* header_timeout_s */
	REFUSED_BODY_TIMEOUT,   /* body_timeout_s */
	REFUSED_BODY_BUDGET,    /* max_buffered_bytes */
	REFUSED__COUNT
};

/* Count one refusal (any thread). */
void metrics_refused(enum refusal why);

/* Count one finished request. */
void metrics_record(enum endpoint_id ep, unsigned status, uint64_t elapsed_ns);

/* Append the request metrics in Prometheus text format. */
void metrics_render(kvs__buf *b);

/* Free the per-thread blocks (at exit, after every thread stopped). */
void metrics_shutdown(void);

#endif
