/*
 * metrics.h - request counters and latency histograms for /metrics.
 *
 * Each thread counts into its own block (no shared cache lines, no locked
 * instructions on the request path); /metrics sums the blocks.
 */
#ifndef KVS_SERVER_METRICS_H
#define KVS_SERVER_METRICS_H

#include <stddef.h>
#include <stdint.h>

enum endpoint {
	EP_KV,
	EP_STORE,
	EP_RETRIEVE,
	EP_SCAN,
	EP_BATCH,
	EP_CLUSTER,
	EP_STATUS,
	EP_HEALTH,
	EP_METRICS,
	EP_INTERNAL,
	EP_OTHER,
	EP__COUNT
};

const char *endpoint_name(enum endpoint ep);

/* Count one finished request. */
void metrics_record(enum endpoint ep, unsigned status, uint64_t elapsed_ns);

/* A growable text buffer. */
struct textbuf {
	char *data;
	size_t len;
	size_t cap;
	int failed; /* out of memory at some point */
};

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void tb_printf(struct textbuf *tb, const char *fmt, ...);
void tb_append(struct textbuf *tb, const void *data, size_t len);

/* Append the request metrics in Prometheus text format. */
void metrics_render(struct textbuf *tb);

/* Free the per-thread blocks (at exit, after every thread stopped). */
void metrics_shutdown(void);

#endif
