/*
 * server.h - kvshard-server internals shared by its files.
 *
 * http.c owns libmicrohttpd: the daemon, the per-request context (struct
 * req), request bodies, and the suspend/resume dance. Endpoint handlers
 * (kv.c, admin.c, scan.c) look at a struct req and answer it exactly once
 * with req_answer(), either before they return or, after req_suspend(),
 * from any thread when an asynchronous operation completes.
 */
#ifndef KVS_SERVER_H
#define KVS_SERVER_H

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdint.h>

#include "kvshard.h"
#include "metrics.h"
#include "node.h"

/* Request lines longer than this get 414 (the seed's /store puts values in
 * the query string: longer values belong in a request body). */
#define KVS_MAX_URL_BYTES 8192
/* Memory libmicrohttpd may use per connection: bounds request headers.
 * libmicrohttpd 0.9.75 zeroes this pool between the requests of a
 * keep-alive connection, so a larger pool costs time on every request
 * (64 KiB took 9% of the server's time on small GETs). */
#define KVS_CONNECTION_MEMORY (32 * 1024)

struct server {
	kvs__node *node;
	const kvs_config *cfg;
	const kvs_cluster_config *cc;
	const kvs_shard_config *me;
	size_t self;
	struct MHD_Daemon *daemon;
	uint64_t start_mono_ms;
	unsigned threads;
	char epoch_text[24];
	_Atomic int stopping;
	_Atomic uint64_t inflight;
	_Atomic uint64_t requests;
	_Atomic uint64_t connections;
};

enum method { M_GET, M_HEAD, M_PUT, M_POST, M_DELETE, M_OTHER };
enum role { ROLE_NONE, ROLE_READ, ROLE_WRITE, ROLE_PEER };

struct req {
	struct server *srv;
	struct MHD_Connection *conn;
	const char *url; /* raw (still percent-encoded) path, MHD's memory */
	enum endpoint ep;
	enum method method;
	enum role role;
	uint64_t start_ns;
	int hop;            /* forwarded by another node */
	int suspended;      /* waiting for req_answer from another thread */
	int answered;
	int queued;
	unsigned status;
	struct MHD_Response *resp;

	/* The request body. */
	char *body;
	size_t body_len;
	size_t body_cap;
	size_t body_limit;
	int body_too_big;

	/* The key of kv endpoints, decoded. */
	char *key;
	size_t key_len;
	char *value; /* /store?value=..., decoded */
	size_t value_len;
	int have_value;

	/* Routing state of kv requests. */
	kvs__route route;
	size_t tried[KVS_RING_MAX_OWNERS];
	size_t n_tried;
	int is_write;
	int is_delete;
	const void *wvalue; /* the value being written (body or ?value=) */
	size_t wlen;
	kvs_write_options wopts;
	char *forward_url;
};

/* http.c */
int http_start(struct server *s, int listen_fd);
void http_quiesce(struct server *s);
void http_stop(struct server *s);

void req_suspend(struct req *r);
/* Set the answer (takes resp) and, if suspended, wake the connection. */
void req_answer(struct req *r, unsigned status, struct MHD_Response *resp);

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
void req_error(struct req *r, unsigned status, const char *code,
               const char *fmt, ...);
/* The HTTP status for a kvs result code. */
unsigned http_status_of(int rc);
/* Answer with the HTTP mapping of a kvs result code. */
void req_fail(struct req *r, int rc, const char *what);
/* Answer 405 with an Allow header. */
void req_not_allowed(struct req *r, const char *allow);

/* New responses; each adds the X-Kvshard-Shard header. NULL on ENOMEM. */
struct MHD_Response *resp_copy(struct server *s, const void *data,
                               size_t len, const char *ctype);
struct MHD_Response *resp_take(struct server *s, void *data, size_t len,
                               const char *ctype);
struct MHD_Response *resp_static(struct server *s, const char *text,
                                 const char *ctype);
void resp_header(struct MHD_Response *resp, const char *name,
                 const char *value);

/* Percent-decoding; plus_is_space for query values. Returns 0, or -1 on
 * a malformed escape. out must have room for len bytes. */
int url_decode(const char *in, size_t len, char *out, size_t *out_len,
               int plus_is_space);

/* A query argument, decoded into a new buffer: 1 found, 0 absent, -1
 * malformed (400 already answered). */
int req_arg(struct req *r, const char *name, char **out, size_t *out_len);
/* The raw (undecoded) query string rebuilt from the arguments ("" if none),
 * malloc'ed. */
char *req_raw_query(struct req *r);
const char *req_header(struct req *r, const char *name);

/* JSON string escaping into tb: valid UTF-8 is kept, other bytes become
 * \u00XX; returns 1 if the input was valid UTF-8. */
int json_escape(struct textbuf *tb, const void *data, size_t len);
void json_key_field(struct textbuf *tb, const char *field, const void *key,
                    size_t len);
void json_base64(struct textbuf *tb, const void *data, size_t len);

/* kv.c */
void handle_kv(struct req *r);
void handle_store(struct req *r);
void handle_retrieve(struct req *r);
void handle_internal_kv(struct req *r);

/* scan.c */
void handle_scan(struct req *r);
void handle_internal_scan(struct req *r);

/* batch.c */
void handle_batch(struct req *r);

/* admin.c */
void handle_cluster(struct req *r);
void handle_status(struct req *r);
void handle_health(struct req *r);
void handle_metrics(struct req *r);

#endif
