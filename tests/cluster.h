/*
 * cluster.h - run real kvshard-server processes for tests.
 *
 * A test cluster lives in a fresh temporary directory: its config file,
 * each shard's store and log. Shards listen on free ports of 127.0.0.1.
 * Every wait is bounded, and every process is stopped by its pid.
 */
#ifndef KVS_TEST_CLUSTER_H
#define KVS_TEST_CLUSTER_H

#include <stddef.h>
#include <sys/types.h>

#define TC_MAX_NODES 8

struct tc_node {
	char name[24];
	int port;
	pid_t pid;
	char url[64]; /* "http[s]://127.0.0.1:port" */
};

struct tc_cluster {
	int n;
	char dir[512];
	char config[600];
	struct tc_node node[TC_MAX_NODES];
	/* The host the config gives the shards (default 127.0.0.1); it must
	 * resolve to 127.0.0.1. Set before tc_prepare / tc_start. */
	char host[256];
	/* A CA file (PEM): the shards serve HTTPS (the extra TOML gives
	 * [tls]), node URLs are https and tc_http verifies with it. Set
	 * before tc_prepare / tc_start. */
	char cacert[512];
};

/* The CA tc_http verifies HTTPS servers with (NULL: the system's). */
extern const char *tc_http_cacert;

/* The URL of shard node of c followed by fmt, whose one %s is arg (one of
 * four static buffers, reused in turn). */
char *tc_url(const struct tc_cluster *c, int node, const char *fmt,
             const char *arg);

/* A free TCP port on 127.0.0.1. */
int tc_free_port(void);

/* Write the config for n shards (on free ports) plus extra TOML (may be
 * NULL), without starting anything. */
void tc_prepare(struct tc_cluster *c, int n, const char *extra_toml);

/* tc_prepare, then start every shard and wait until each answers
 * /health. Fails the test on error. */
void tc_start(struct tc_cluster *c, int n, const char *extra_toml);

/* Start shard i and wait for /health (10 s at most). */
void tc_start_node(struct tc_cluster *c, int i);

/* Start exe (a path, or a name looked up in PATH) with argv, its stdout
 * and stderr appended to log. Fails the test if it cannot. */
pid_t tc_spawn(const char *exe, char *const argv[], const char *log);

/* Wait (ms at most) for pid to exit: 0 and its *status, or -1 after
 * killing it with SIGKILL. */
int tc_wait_pid(pid_t pid, int ms, int *status);

/* Send sig to shard i and wait for it to exit (10 s, then SIGKILL).
 * Returns the wait status. */
int tc_stop_node(struct tc_cluster *c, int i, int sig);

/* Stop every running shard and remove the directory. */
void tc_stop(struct tc_cluster *c);

/* Print the shards' logs to stderr (for failing tests). */
void tc_dump_logs(const struct tc_cluster *c);

/* The value of metric `name` (with its labels, if any) in node i's
 * /metrics: the first line that is name, a space and the value; -1 when
 * there is none (or /metrics did not answer 200). */
long long tc_metric(const struct tc_cluster *c, int i, const char *name);

/* A key "<prefix><n>" whose primary owner is shard `owner` (0-based) of
 * c, all shards of weight 1 (static storage, reused by the next call). */
const char *tc_key_owned_by(const struct tc_cluster *c, int owner,
                            const char *prefix);
/* The same for a key "<prefix><n><suffix>". */
const char *tc_key_owned_by2(const struct tc_cluster *c, int owner,
                             const char *prefix, const char *suffix);

/* A TCP connection from address src (of 127.0.0.0/8) to
 * 127.0.0.1:port, with 2 s send and receive timeouts, or -1. */
int tc_connect_from(const char *src, int port);

/* How many lines of shard node's log hold needle. */
int tc_log_lines(const struct tc_cluster *c, int node, const char *needle);

/* An HTTP answer. */
struct tc_resp {
	long status;
	char *body; /* NUL-terminated (not counted in len) */
	size_t len;
	char headers[8192];
	double seconds;
	long connects; /* new connections this request opened */
};

/*
 * Send one request with libcurl (no redirects followed). headers is a
 * NULL-terminated list of "Name: value" or NULL. A body of NULL sends none.
 * Returns 0 when an answer came, -1 otherwise (status 0).
 */
int tc_http(const char *method, const char *url, const void *body,
            size_t len, const char *const *headers, struct tc_resp *out);

/* The same over a reusable handle (keep-alive): pass the same *handle. */
int tc_http_on(void **handle, const char *method, const char *url,
               const void *body, size_t len, const char *const *headers,
               struct tc_resp *out);
void tc_http_close(void **handle);

/*
 * Send raw bytes as a request to 127.0.0.1:port (so that nothing
 * normalises the request line on the way) and read the answer until the
 * server closes (send "Connection: close"), 5 s at most. Returns 0 when an
 * answer came.
 */
int tc_raw(int port, const char *request, struct tc_resp *out);

/* Value of a response header (case-insensitive), static storage, or NULL. */
const char *tc_header(const struct tc_resp *r, const char *name);

void tc_resp_free(struct tc_resp *r);

/* GET url and expect status; returns the response (free it). */
struct tc_resp tc_get(const char *url, long status);

/* A private etcd member for a test. */
struct tc_etcd {
	pid_t pid;
	int port;           /* client port on 127.0.0.1 */
	char endpoint[32];  /* "127.0.0.1:port" */
	char dir[512];      /* its data and log */
};

/* Start etcd on free ports of 127.0.0.1, its data in a fresh directory,
 * and wait (10 s at most) until it answers. */
void tc_etcd_start(struct tc_etcd *e);

/* Stop it by its pid (SIGTERM, then SIGKILL after 10 s); with remove,
 * delete its directory. */
void tc_etcd_stop(struct tc_etcd *e, int remove);

#endif
