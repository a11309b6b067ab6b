/*
 * metrics.c - per-thread request counters and latency histograms, and
 * the refusals of the [limits].
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

/* Status codes counted one by one; anything else counts as "other". */
static const unsigned status_codes[] = {
	200, 204, 307, 400, 401, 403, 404, 405, 411,
	412, 413, 414, 421, 500, 501, 502, 503, 504, 507, 0 /* other */
};
#define N_STATUS (sizeof(status_codes) / sizeof(status_codes[0]))

/* Histogram bucket upper bounds, in microseconds. */
static const uint64_t bucket_us[] = {
	100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000,
	100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
};
#define N_BUCKETS (sizeof(bucket_us) / sizeof(bucket_us[0]))

static const char *const endpoint_names[EP__COUNT] = {
	"kv", "store", "retrieve", "scan", "batch", "cluster",
	"status", "health", "metrics", "internal", "other",
};

/* Refusals are rare: one shared counter per cause. */
static const char *const refusal_names[REFUSED__COUNT] = {
	"per_client_limit", "connection_limit", "header_timeout",
	"body_timeout", "body_budget",
};
static _Atomic uint64_t refusals[REFUSED__COUNT];

struct block {
	_Atomic uint64_t requests[EP__COUNT][N_STATUS];
	/* Bucket counts (not cumulative), the last one is +Inf. */
	_Atomic uint64_t buckets[EP__COUNT][N_BUCKETS + 1];
	_Atomic uint64_t sum_ns[EP__COUNT];
	struct block *next;
};

static pthread_mutex_t blocks_mu = PTHREAD_MUTEX_INITIALIZER;
static struct block *blocks;
static _Thread_local struct block *mine;

static void bump(_Atomic uint64_t *c, uint64_t by)
{
	/* Only the owning thread writes a block: no locked instruction. */
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + by,
	                      memory_order_relaxed);
}

void metrics_refused(enum refusal why)
{
	if (why < REFUSED__COUNT)
		atomic_fetch_add_explicit(&refusals[why], 1,
		                          memory_order_relaxed);
}

void metrics_record(enum endpoint_id ep, unsigned status, uint64_t elapsed_ns)
{
	size_t s, b;
	uint64_t us = elapsed_ns / 1000;

	if (mine == NULL) {
		mine = calloc(1, sizeof(*mine));
		if (mine == NULL)
			return;
		pthread_mutex_lock(&blocks_mu);
		mine->next = blocks;
		blocks = mine;
		pthread_mutex_unlock(&blocks_mu);
	}
	if (ep >= EP__COUNT)
		ep = EP_OTHER;
	for (s = 0; s < N_STATUS - 1 && status_codes[s] != status; s++)
		;
	for (b = 0; b < N_BUCKETS && us > bucket_us[b]; b++)
		;
	bump(&mine->requests[ep][s], 1);
	bump(&mine->buckets[ep][b], 1);
	bump(&mine->sum_ns[ep], elapsed_ns);
}

void metrics_render(kvs__buf *tb)
{
	static uint64_t req[EP__COUNT][N_STATUS], bk[EP__COUNT][N_BUCKETS + 1],
	        sum[EP__COUNT];
	static pthread_mutex_t render_mu = PTHREAD_MUTEX_INITIALIZER;

	pthread_mutex_lock(&render_mu);
	memset(req, 0, sizeof(req));
	memset(bk, 0, sizeof(bk));
	memset(sum, 0, sizeof(sum));
	pthread_mutex_lock(&blocks_mu);
	for (struct block *b = blocks; b != NULL; b = b->next)
		for (size_t e = 0; e < EP__COUNT; e++) {
			for (size_t s = 0; s < N_STATUS; s++)
				req[e][s] += atomic_load_explicit(
				        &b->requests[e][s], memory_order_relaxed);
			for (size_t i = 0; i <= N_BUCKETS; i++)
				bk[e][i] += atomic_load_explicit(
				        &b->buckets[e][i], memory_order_relaxed);
			sum[e] += atomic_load_explicit(&b->sum_ns[e],
			                               memory_order_relaxed);
		}
	pthread_mutex_unlock(&blocks_mu);

	kvs__buf_addf(tb, "# HELP kvshard_http_requests_total HTTP requests "
	              "answered, by endpoint and status.\n"
	              "# TYPE kvshard_http_requests_total counter\n");
	for (size_t e = 0; e < EP__COUNT; e++)
		for (size_t s = 0; s < N_STATUS; s++) {
			if (req[e][s] == 0)
				continue;
			if (status_codes[s] != 0)
				kvs__buf_addf(tb,
				          "kvshard_http_requests_total{endpoint=\"%s\","
				          "status=\"%u\"} %llu\n",
				          endpoint_names[e], status_codes[s],
				          (unsigned long long)req[e][s]);
			else
				kvs__buf_addf(tb,
				          "kvshard_http_requests_total{endpoint=\"%s\","
				          "status=\"other\"} %llu\n",
				          endpoint_names[e],
				          (unsigned long long)req[e][s]);
		}
	kvs__buf_addf(tb, "# HELP kvshard_http_request_duration_seconds Time "
	              "from request to response, by endpoint.\n"
	              "# TYPE kvshard_http_request_duration_seconds histogram\n");
	for (size_t e = 0; e < EP__COUNT; e++) {
		uint64_t cum = 0;

		for (size_t i = 0; i <= N_BUCKETS; i++)
			cum += bk[e][i];
		if (cum == 0)
			continue;
		cum = 0;
		for (size_t i = 0; i < N_BUCKETS; i++) {
			cum += bk[e][i];
			kvs__buf_addf(tb,
			          "kvshard_http_request_duration_seconds_bucket{"
			          "endpoint=\"%s\",le=\"%g\"} %llu\n",
			          endpoint_names[e], (double)bucket_us[i] / 1e6,
			          (unsigned long long)cum);
		}
		cum += bk[e][N_BUCKETS];
		kvs__buf_addf(tb,
		          "kvshard_http_request_duration_seconds_bucket{"
		          "endpoint=\"%s\",le=\"+Inf\"} %llu\n"
		          "kvshard_http_request_duration_seconds_sum{"
		          "endpoint=\"%s\"} %.6f\n"
		          "kvshard_http_request_duration_seconds_count{"
		          "endpoint=\"%s\"} %llu\n",
		          endpoint_names[e], (unsigned long long)cum,
		          endpoint_names[e], (double)sum[e] / 1e9,
		          endpoint_names[e], (unsigned long long)cum);
	}
	pthread_mutex_unlock(&render_mu);
	kvs__buf_addf(tb, "# HELP kvshard_refused_total Connections and "
	              "requests refused before they were served, by cause "
	              "(the [limits] that refused them).\n"
	              "# TYPE kvshard_refused_total counter\n");
	for (size_t i = 0; i < REFUSED__COUNT; i++)
		kvs__buf_addf(tb, "kvshard_refused_total{cause=\"%s\"} %llu\n",
		              refusal_names[i],
		              (unsigned long long)atomic_load_explicit(
		                      &refusals[i], memory_order_relaxed));
	kvs__buf_addf(tb, "# HELP kvshard_buffered_body_bytes Bytes of request "
	              "bodies held in memory now (max_buffered_bytes at "
	              "most).\n"
	              "# TYPE kvshard_buffered_body_bytes gauge\n"
	              "kvshard_buffered_body_bytes %llu\n",
	              (unsigned long long)guard_buffered());
}

void metrics_shutdown(void)
{
	pthread_mutex_lock(&blocks_mu);
	while (blocks != NULL) {
		struct block *b = blocks;

		blocks = b->next;
		free(b);
	}
	pthread_mutex_unlock(&blocks_mu);
}
