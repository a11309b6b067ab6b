/*
 * server.h - kvshard-server's parts and what they share.
 *
 * The server is an adapter: it turns HTTP into the node's operations
 * (lib/node.h) and their results back into HTTP. It never decides where a
 * key goes.
 *
 *   http.c     the daemon (libmicrohttpd): connections, request bodies,
 *              the request's life from first call to completion
 *   router.c   the table of endpoints (path, methods, body limit, role,
 *              query arguments, handler), authentication, dispatch
 *   request.c  what a handler reads of a request (query arguments,
 *              headers) and the wait for a node operation
 *   reply.c    answers: values, JSON, errors, redirects
 *   kv.c scan.c batch.c internal.c admin.c   the handlers
 *   query.c batch_parse.c   query arguments and batch documents from
 *              their bytes, without HTTP (the fuzz targets call them)
 *   metrics.c  request counters and latency histograms
 *   guard.c    what one client may take: connections, time for headers
 *              and body, memory for bodies ([limits])
 *
 *   tls.c      HTTPS: certificates for libmicrohttpd, client certificates
 *   topology.c the topology's epochs (a view each: its node and config),
 *              and the admin calls that change it in etcd
 *
 * Calls go one way: http.c -> router.c -> handlers -> request.c, reply.c.
 * Only http.c, request.c, reply.c and tls.c include <microhttpd.h>.
 *
 * A handler answers exactly once: at once (reply_*), or after a node
 * operation. For the latter it calls req_start(), starts the operation
 * with req_node_done() as its completion, and then req_wait() with the
 * function that builds the answer from the operation's result. That
 * function always runs on an HTTP thread: at once when the operation
 * finished inline, else when the connection is resumed.
 */
#ifndef KVS_SERVER_H
#define KVS_SERVER_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

#include "coord.h"
#include "kvshard.h"
#include "node.h"
#include "protocol.h"
#include "util.h"

struct MHD_Connection;
struct MHD_Daemon;
struct MHD_Response;

/* Request lines longer than this get 414 (the seed's /store puts values in
 * the query string: longer values belong in a request body). */
#define KVS_MAX_URL_BYTES 8192
/* Memory libmicrohttpd may use per connection: bounds request headers.
 * libmicrohttpd 0.9.75 zeroes this pool between the requests of a
 * keep-alive connection, so a larger pool costs time on every request
 * (64 KiB took 9% of the server's time on small GETs). */
#define KVS_CONNECTION_MEMORY (32 * 1024)
/* Body limit of endpoints that take no value (batches of gets, admin). */
#define KVS_SMALL_BODY_BYTES (64 * 1024)

/* The endpoints, as /metrics labels them. */
enum endpoint_id {
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

enum method {
	M_GET = 1 << 0,
	M_HEAD = 1 << 1,
	M_PUT = 1 << 2,
	M_POST = 1 << 3,
	M_DELETE = 1 << 4,
	M_PATCH = 1 << 5,
	M_OTHER = 1 << 6
};

/* Every method above but M_OTHER, for parsing and Allow headers. */
extern const enum method known_methods[6];

/* Who is asking, in increasing power. */
enum role { ROLE_NONE, ROLE_READ, ROLE_WRITE, ROLE_ADMIN, ROLE_PEER };

/*
 * One epoch of the topology as this server runs it: the node built for
 * it and its config (shards, N/W/R). A request takes the current view
 * when it starts and keeps it to its end, so that a shard's position
 * means the same to it throughout; an older view is closed once no
 * request holds it (topology.c).
 */
struct view {
	struct server *srv;
	kvs__node *node;
	const kvs_config *cfg;
	kvs_config *owned; /* cfg, when the view made it (else the file's) */
	uint64_t epoch;
	char epoch_text[24];
	_Atomic unsigned refs; /* requests, and the server while current */
};

struct server {
	struct view *view; /* the current one: view_get() */
	pthread_mutex_t view_mu;
	kvs_store *store;  /* every view's node's */
	kvs__coord *coord; /* NULL: the file's topology */
	const kvs_config *cfg; /* the file's (limits, and its topology) */
	const kvs_cluster_config *cc;
	const kvs_shard_config *me;
	char *config_text; /* the file, as read at start: each epoch's */
	size_t config_len; /* config is it with etcd's topology */
	char *store_dir;
	_Atomic unsigned changes; /* admin changes being made (topology.c) */
	/* Moves' figures of the epochs' nodes closed so far (topology.c). */
	_Atomic uint64_t moved_keys, moved_bytes, dropped;
	/* The epoch every registered node runs, as last seen: peers' write
	 * frames of older epochs are refused (node.h's fencing). */
	_Atomic uint64_t fence;
	/* The thread that moves a move on (topology.c). */
	pthread_t mover;
	int mover_started, mover_stop;
	pthread_mutex_t mover_mu;
	pthread_cond_t mover_cv;
	struct MHD_Daemon *daemon;
	uint64_t start_mono_ms;
	unsigned threads;
	_Atomic int stopping;
	_Atomic uint64_t inflight;
	_Atomic uint64_t requests;
	_Atomic uint64_t connections;
	/* [tls]: the PEM text of the files, NULL without TLS (tls.c). */
	char *tls_cert_pem;
	char *tls_key_pem;
	char *tls_ca_pem; /* mutual TLS only */
};

struct endpoint;

struct req {
	struct server *srv;
	/* Its epoch's, held from dispatch (or an early answer) until the
	 * answer is queued (a link: until it is handed over). */
	struct view *view;
	struct MHD_Connection *conn;
	const char *url; /* the raw (still percent-encoded) path */
	const struct endpoint *ep; /* NULL: no such endpoint */
	enum method method;
	enum role role;
	uint64_t start_ns;

	/* The request body. */
	char *body;
	size_t body_len;
	size_t body_cap;
	size_t body_limit;
	int body_too_big;
	int over_budget;     /* past max_buffered_bytes: discarded */
	size_t reserved;     /* bytes of max_buffered_bytes it holds */
	struct guard_conn *track; /* its connection's deadlines */

	/* The answer. */
	unsigned status;
	struct MHD_Response *resp;
	int answered;
	int queued;

	/* Waiting for a node operation (request.c). */
	_Atomic int state;
	int suspended;
	int upgraded; /* handed over as a link: no longer in flight */
	void (*render)(struct req *r);

	/* The handler's own state, freed with the request. */
	void *ctx;
	void (*ctx_free)(void *ctx);
};

/* tls.c: read [tls]'s files (0, or -1 with a message); does a client
 * certificate make this request a peer's (mutual TLS). */
int tls_load(struct server *s, char *err, size_t errlen);
void tls_free(struct server *s);
int tls_client_is_peer(struct req *r);

/* guard.c: the accept policy (1: serve this connection); a
 * connection's life (guard_open shuts the socket down and returns NULL
 * when it cannot track it; guard_close accepts NULL); the deadline's
 * steps; the body budget (1 reserved, or 0 refused). */
struct guard_conn;
int guard_admit(struct server *s, const struct sockaddr *sa, socklen_t len);
struct guard_conn *guard_open(struct server *s, int fd,
                              const struct sockaddr *sa, socklen_t len);
void guard_close(struct guard_conn *c);
void guard_headers_in(struct server *s, struct guard_conn *c);
void guard_body_in(struct guard_conn *c);
void guard_answered(struct server *s, struct guard_conn *c);
void guard_stop(void);
int guard_reserve(struct server *s, size_t n);
int guard_try_reserve(struct server *s, size_t n); /* not a refusal */
/* What tls.c found of a connection's client certificate (0: not yet). */
int guard_peer_cert(const struct guard_conn *c);
void guard_set_peer_cert(struct guard_conn *c, int yes);
void guard_release(size_t n);
size_t guard_buffered(void);

/* topology.c */
/* The current view, held (view_put() it). */
struct view *view_get(struct server *s);
void view_put(struct view *v);
/* The first view: the node of the file's topology (or the one etcd
 * had at start), opened on s->store. 0, or -1 with err set. */
int view_start(struct server *s, char *err, size_t errlen);
/* Apply etcd's newer topologies as they come, and move moves on (with
 * [coordination]). */
int view_watch(struct server *s);
/* Stop moving moves on (before the coordination handle goes). */
void view_mover_stop(struct server *s);
/* At exit: close the current view's node (the watch has stopped), then,
 * once the daemon has stopped, free the view. */
void view_stop(struct server *s);
void view_free(struct server *s);
/* The move's figures of v's node, and those of the epochs before since
 * the server started. */
void view_move_stats(struct view *v, kvs__move_stats *ms);
/* Wait (ms at most) until no admin change is being made: 0, or -1. */
int view_changes_end(struct server *s, unsigned ms);
void handle_shards(struct req *r);
void handle_rebalance(struct req *r);

/* http.c */
int http_start(struct server *s, int listen_fd);
void http_quiesce(struct server *s);
void http_stop(struct server *s);

/* router.c */
const struct endpoint *route_find(const char *url);
enum endpoint_id route_id(const struct endpoint *ep);
size_t route_body_limit(const struct server *s, const struct endpoint *ep);
int route_needs_length(const struct endpoint *ep, enum method m);
enum role route_role_of(struct req *r);
void route_dispatch(struct req *r);
/* Before a body is taken (and takes its place in the budget): the
 * endpoint, the role and the method; 0 after answering when refused. */
int route_admit(struct req *r);
const char *method_name(enum method m);

/* request.c */
/* A query argument, decoded into a new buffer (free()): 1 found, 0
 * absent, -1 malformed (400 already answered). */
int req_arg(struct req *r, const char *name, char **out, size_t *out_len);
/* Answer 400 and return 0 unless every query argument is in allowed
 * (NULL-terminated) and none is given twice. */
int req_check_args(struct req *r, const char *const *allowed);
/* A quorum argument (r or w): 1..N, "quorum" or "all"; *out 0 when
 * absent. 0 when bad (400 answered). */
int req_quorum(struct req *r, const char *name, unsigned *out);
/* The first value of a header, or NULL. */
const char *req_header(struct req *r, const char *name);
/* Every value of a header, joined by ", ", into *out (malloc'ed; NULL
 * when absent). KVS_OK, or KVS_ENOMEM. */
int req_header_all(struct req *r, const char *name, char **out);
/* The raw query string ("" if none), malloc'ed, or NULL. */
char *req_raw_query(struct req *r);
/* Before starting a node operation whose completion is req_node_done. */
void req_start(struct req *r);
void req_node_done(void *ud);
/* After starting it: render builds the answer on an HTTP thread. */
void req_wait(struct req *r, void (*render)(struct req *r));

/* reply.c */
/* Answer status with a JSON body (b is taken; a failed b answers 500). */
void reply_json(struct req *r, unsigned status, kvs__buf *b);
/* Answer rc's status with {"error": code, "message": ...}. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
void reply_error(struct req *r, int rc, const char *fmt, ...);
/* Answer rc with its library text as the message, after what. */
void reply_fail(struct req *r, int rc, const char *what);
/* Answer 200 with a value: release(hold) frees it once sent. */
void reply_value(struct req *r, const void *value, size_t len,
                 void (*release)(void *), void *hold, const char *ctype);
/* Answer status with bytes (taken: free()). */
void reply_response(struct req *r, unsigned status, struct MHD_Response *resp,
                    const char *ctype);
void reply_bytes(struct req *r, unsigned status, char *data, size_t len,
                 const char *ctype);
void reply_static(struct req *r, unsigned status, const char *text,
                  const char *ctype);
/* Add a header to the answer given (does nothing without one). */
void reply_header(struct req *r, const char *name, const char *value);
/* The answer names shard i as the one that served it. */
void reply_served_by(struct req *r, size_t i, int forwarded);
/* "\"<version>\"" into buf (KVS_STAMP_STRLEN + 2 bytes). */
void reply_etag(const kvs_stamp *s, char *buf);
#define REPLY_ETAG_MAX (KVS_STAMP_STRLEN + 2)

/* The handlers. */
void handle_kv(struct req *r);
void handle_store(struct req *r);
void handle_retrieve(struct req *r);
void handle_scan(struct req *r);
void handle_batch(struct req *r);
void handle_internal(struct req *r);
void handle_link(struct req *r);
void handle_cluster(struct req *r);
void handle_status(struct req *r);
void handle_health(struct req *r);
void handle_metrics(struct req *r);

#endif
