/*
 * bench.h - the pieces of kvshard-bench shared between its source files.
 *
 * kvshard-bench is one program split in four files: kvshard-bench.c (options,
 * set-up, the report), bench-loop.c (the worker threads: connections, the
 * event loop, pacing), bench-http.c (request templates and the response
 * parser) and bench-stats.c (random numbers, the zipfian generator, latency
 * histograms). This header is private to them.
 */
#ifndef KVSHARD_BENCH_H
#define KVSHARD_BENCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "kvshard.h"

#define PROGRAM "kvshard-bench"

#define NS_PER_S 1000000000ull
#define NS_PER_MS 1000000ull

/* ---- random numbers, key distributions (bench-stats.c) ---------------- */

/* xoshiro256** state: fast, 2^256 - 1 period, one per thread. */
struct rng {
	uint64_t s[4];
};

void rng_seed(struct rng *r, uint64_t seed);
uint64_t rng_next(struct rng *r);
/* Uniform in [0, 1). */
double rng_double(struct rng *r);
/* Uniform in [0, n), n > 0. */
uint64_t rng_below(struct rng *r, uint64_t n);

/*
 * YCSB's zipfian generator (Gray et al., "Quickly generating billion-record
 * synthetic databases") over n items, followed by a scrambling hash so that
 * the popular items are spread over the key space instead of being the
 * first keys.
 */
struct zipf {
	uint64_t n;
	double theta;
	double alpha;      /* 1 / (1 - theta) */
	double zetan;      /* sum of 1 / i^theta for i = 1..n */
	double eta;
	double half_theta; /* 1 + 0.5^theta: the threshold of the second item */
};

void zipf_init(struct zipf *z, uint64_t n, double theta);
uint64_t zipf_next(const struct zipf *z, struct rng *r);

/* ---- latency histograms (bench-stats.c) --------------------------------- */

/*
 * Log-linear buckets over nanoseconds: values below 2^HIST_SUB_BITS have a
 * bucket each, and every power of two above is cut in 2^HIST_SUB_BITS
 * buckets of equal width, so a bucket is never wider than 1/128 of the
 * values it holds. Values of 2^HIST_TOP_BIT ns (68.7 s) and more land in the
 * last bucket; min and max are kept exactly.
 */
#define HIST_SUB_BITS 7u
#define HIST_SUB_COUNT (1u << HIST_SUB_BITS)
#define HIST_TOP_BIT 36u
#define HIST_BUCKETS ((HIST_TOP_BIT - HIST_SUB_BITS + 1u) * HIST_SUB_COUNT)

struct hist {
	uint64_t count;
	uint64_t min, max, sum; /* nanoseconds */
	uint64_t buckets[HIST_BUCKETS];
};

void hist_init(struct hist *h);
void hist_record(struct hist *h, uint64_t ns);
void hist_merge(struct hist *dst, const struct hist *src);
/* The value at percentile p (0 < p <= 100), in nanoseconds; 0 when empty. */
uint64_t hist_percentile(const struct hist *h, double p);
/* Mean in nanoseconds; 0 when empty. */
double hist_mean(const struct hist *h);

/* ---- request templates (bench-http.c) ----------------------------------- */

/* What a template may refer to; also bits of struct tmpl's uses. */
enum var {
	VAR_HOST,      /* host:port of the connection */
	VAR_KEY,       /* the key's text */
	VAR_KEY_B64,   /* the key in standard base64 */
	VAR_VALUE,     /* the value's text */
	VAR_VALUE_B64, /* the value in standard base64 */
	VAR_COUNT
};

#define VAR_BIT(v) (1u << (v))

/* A template, compiled: literal pieces and placeholders in order. */
struct tmpl_seg {
	const char *text; /* literal text (into the template), or NULL */
	size_t len;
	enum var var; /* when text is NULL */
};

struct tmpl {
	struct tmpl_seg *segs;
	size_t n;
	unsigned uses; /* VAR_BIT()s of the placeholders present */
};

/* The values of the placeholders for one request. */
struct vars {
	const char *text[VAR_COUNT];
	size_t len[VAR_COUNT];
};

/*
 * Compile text (which must outlive the template). Returns 0, or -1 with a
 * message in err for an unknown placeholder, or on allocation failure.
 */
int tmpl_compile(struct tmpl *t, const char *text, size_t len, char *err,
                 size_t err_size);
void tmpl_free(struct tmpl *t);
size_t tmpl_length(const struct tmpl *t, const struct vars *v);
/* Write the expansion (tmpl_length() bytes) at out; returns its end. */
char *tmpl_expand(const struct tmpl *t, const struct vars *v, char *out);

/* Length of the standard base64 form of len bytes. */
size_t base64_length(size_t len);
/* Write it (base64_length(len) bytes, no NUL) at out. */
void base64_encode(const void *data, size_t len, char *out);

/* ---- the response parser (bench-http.c) --------------------------------- */

enum resp_state {
	RESP_STATUS_LINE,
	RESP_HEADER,
	RESP_BODY,
	RESP_CHUNK_SIZE,
	RESP_CHUNK_DATA,
	RESP_CHUNK_END,
	RESP_TRAILER,
	RESP_UNTIL_CLOSE,
	RESP_COMPLETE
};

enum resp_result { RESP_MORE, RESP_DONE, RESP_ERROR };

struct resp {
	enum resp_state state;
	int status;
	bool http10;
	bool keep_alive; /* "Connection: keep-alive" */
	bool close;      /* the server closes the connection after this */
	bool chunked;
	bool has_length;
	uint64_t length;    /* Content-Length */
	uint64_t remaining; /* of the body or the current chunk */
};

void resp_reset(struct resp *r);
/*
 * Parse what buf holds. *used receives how many bytes were consumed: all of
 * them except an incomplete line, which the caller keeps for the next call.
 * RESP_DONE leaves *used at the end of the response.
 */
enum resp_result resp_parse(struct resp *r, const char *buf, size_t len,
                            size_t *used);
/* The server closed the connection: was that the end of the response? */
enum resp_result resp_eof(const struct resp *r);

/* ---- the run (bench-loop.c) --------------------------------------------- */

enum op { OP_READ, OP_WRITE, OP_COUNT };

/* Ways a request can fail, other than an unexpected status. */
enum fail {
	FAIL_CONNECT,  /* connection refused, unreachable... */
	FAIL_READ,     /* reset, or closed before a complete response */
	FAIL_WRITE,    /* the request could not be sent */
	FAIL_PROTOCOL, /* the answer is not valid HTTP/1.x */
	FAIL_TIMEOUT,  /* no complete answer within --timeout */
	FAIL_COUNT
};

/* Status codes are counted in an array indexed by code. */
#define STATUS_LIMIT 600
#define STATUS_OK 200
#define STATUS_NOT_FOUND 404

/* Longest --key-prefix. */
#define KEY_PREFIX_MAX 200u
/* Keys are the prefix and the key's number on at least this many digits. */
#define KEY_DIGITS 8u

/* How to send one kind of request. */
struct op_spec {
	const char *url;    /* the template as given, for the report */
	const char *method; /* GET, PUT or POST */
	char *path_text;    /* the path template's text (owned) */
	struct tmpl authority, path, body;
	bool send_body;
	unsigned uses; /* VAR_BIT()s used by authority, path and body */
	bool expect[STATUS_LIMIT];
};

/* Somewhere to connect to: a --hosts entry or a shard of --ring. */
struct target {
	const char *name; /* host:port, for {host} and the Host header */
	size_t name_len;
	struct sockaddr_storage addr;
	socklen_t addr_len;
};

/* What one thread counted; merged at the end. */
struct counters {
	uint64_t attempts[OP_COUNT]; /* every request that ended, either way */
	uint64_t ok[OP_COUNT];
	uint64_t not_found; /* 404s to reads counted as ok (--allow-404) */
	uint64_t fail[FAIL_COUNT];
	uint64_t status[STATUS_LIMIT]; /* unexpected statuses */
	uint64_t connects;             /* connections opened or attempted */
	struct hist lat[OP_COUNT];     /* latency of the ok requests */
};

enum dist { DIST_UNIFORM, DIST_ZIPFIAN };

/* The whole run: options, shared read-only state, and the run's clock. */
struct bench {
	/* Options. */
	unsigned threads;
	unsigned connections;
	double duration_s;
	double warmup_s;
	uint64_t keys;
	const char *key_prefix;
	size_t key_prefix_len;
	enum dist dist;
	double read_ratio;
	size_t value_size;
	double rate; /* total requests per second; 0: unpaced */
	unsigned timeout_ms;
	bool preload;
	bool allow_404;
	bool json;
	uint64_t seed;
	const char *hosts_arg;
	const char *ring_path;
	struct op_spec ops[OP_COUNT];
	char *headers; /* "Name: value\r\n" lines, sent as given */
	size_t headers_len;
	bool user_host; /* -H gave a Host header */

	/* Derived, read-only while the threads run. */
	struct target *targets;
	size_t n_targets;
	kvs_config *config; /* --ring */
	kvs_ring *ring;     /* --ring: member i is targets[i] */
	struct zipf zipf;
	char *values;     /* n_values values of value_size bytes */
	char *values_b64; /* the same in base64, value_b64_len bytes each */
	size_t n_values;
	size_t value_b64_len;
	uint64_t pace_ns; /* --rate: interval between one slot's requests */
	unsigned total_slots;

	/* The run's clock (CLOCK_MONOTONIC ns), set before the run starts. */
	uint64_t start_ns;   /* warm-up begins */
	uint64_t measure_ns; /* measurement begins */
	uint64_t end_ns;     /* measurement ends */

	/* Control, shared by every thread. */
	atomic_bool stop;         /* end now (signal, or a failed preload) */
	_Atomic uint64_t stop_ns; /* when stop was set; 0 if never */
	_Atomic uint64_t preload_next;     /* the next key to write */
	_Atomic uint64_t preload_failures; /* failed preload writes */
	uint64_t preload_budget; /* failures tolerated before giving up */
	atomic_bool preload_aborted;
	atomic_uint preload_done; /* threads done with the preload */
	/* The main thread sets go (under go_lock) once the run's clock is
	 * set: the workers wait for it after their preload. */
	pthread_mutex_t go_lock;
	pthread_cond_t go_cond;
	bool go;
};

struct worker;

uint64_t clock_ns(void);
/*
 * Create a worker for slots slot_base .. slot_base + slots - 1 of the run,
 * with its own random numbers from seed (its connections are opened by
 * the run); NULL on failure.
 */
struct worker *worker_new(struct bench *b, unsigned slot_base,
                          unsigned slots, uint64_t seed);
int worker_start(struct worker *w);
void worker_join(struct worker *w);
/* What the worker counted while measuring, and during the preload. */
const struct counters *worker_run_counters(const struct worker *w);
const struct counters *worker_preload_counters(const struct worker *w);
void worker_free(struct worker *w);

#endif /* KVSHARD_BENCH_H */
