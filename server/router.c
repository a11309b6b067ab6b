/*
 * router.c - the endpoints, in one table: path, methods, how much body,
 * which role each method needs, the query arguments, the handler.
 *
 * Roles, in increasing power: none, read, write, admin, peer. A request
 * from a peer carries the cluster secret (X-Kvshard-Secret) or, with
 * mutual TLS, a client certificate the cluster's CA signed, and may do
 * anything. Otherwise, with [auth] tokens, a bearer token is an admin
 * token (also changes the topology), a client token (reads and writes) or
 * a read token; without tokens every client is an admin, and also a peer
 * when no cluster secret (or mutual TLS) is configured either. Each
 * endpoint says which role its methods need; the seed's /store writes
 * whatever its method.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "server.h"

enum body_kind { BODY_SMALL, BODY_VALUE, BODY_BATCH, BODY_PEER };

struct endpoint {
	const char *path;
	int prefix;             /* path is a prefix: the rest is the key */
	enum endpoint_id id;
	unsigned methods;       /* enum method bits it accepts */
	enum role role;         /* what they need, but for: */
	unsigned write_methods; /* those of them that need write_role */
	enum role write_role;
	enum body_kind body;
	const char *const *args; /* query arguments it takes (NULL: none) */
	void (*handler)(struct req *r);
};

static const char *const kv_args[] = {KVS_ARG_R, KVS_ARG_W, NULL};
static const char *const store_args[] = {KVS_ARG_KEY, KVS_ARG_VALUE,
                                         KVS_ARG_W, NULL};
static const char *const retrieve_args[] = {KVS_ARG_KEY, KVS_ARG_R, NULL};
static const char *const scan_args[] = {KVS_ARG_PREFIX, KVS_ARG_START_AFTER,
                                        KVS_ARG_LIMIT, KVS_ARG_VALUES,
                                        KVS_ARG_R, NULL};
static const char *const batch_args[] = {KVS_ARG_R, KVS_ARG_W, NULL};

static void no_peer_endpoint(struct req *r)
{
	reply_error(r, KVS_ENOENDPOINT, "no peer endpoint at this path");
}

#define READS (M_GET | M_HEAD)

const enum method known_methods[6] = {M_GET,  M_HEAD,   M_PUT,
                                      M_POST, M_DELETE, M_PATCH};

#define ADMIN (M_POST | M_PATCH | M_DELETE)

/* Path, prefix?, label, methods, the role they need, the methods of
 * those that need more, and how much, body, arguments, handler. */
static const struct endpoint endpoints[] = {
	{KVS_PATH_KEY, 1, EP_KV, READS | M_PUT | M_DELETE, ROLE_READ,
	 M_PUT | M_DELETE, ROLE_WRITE, BODY_VALUE, kv_args, handle_kv},
	{KVS_PATH_SCAN, 0, EP_SCAN, READS, ROLE_READ, 0, ROLE_READ, BODY_SMALL,
	 scan_args, handle_scan},
	/* The seed's write: a write whatever its method. */
	{KVS_PATH_STORE, 0, EP_STORE, M_GET | M_POST | M_PUT, ROLE_WRITE, 0,
	 ROLE_WRITE, BODY_VALUE, store_args, handle_store},
	{KVS_PATH_RETRIEVE, 0, EP_RETRIEVE, READS, ROLE_READ, 0, ROLE_READ,
	 BODY_SMALL, retrieve_args, handle_retrieve},
	/* Each write of a batch is checked against the role. */
	{KVS_PATH_BATCH, 0, EP_BATCH, M_POST, ROLE_READ, 0, ROLE_READ,
	 BODY_BATCH, batch_args, handle_batch},
	{KVS_PATH_CLUSTER, 0, EP_CLUSTER, READS, ROLE_READ, 0, ROLE_READ,
	 BODY_SMALL, NULL, handle_cluster},
	/* Before KVS_PATH_CLUSTER's exact match: the admin calls. */
	{KVS_PATH_CLUSTER_SHARDS, 1, EP_CLUSTER, ADMIN, ROLE_ADMIN, 0,
	 ROLE_ADMIN, BODY_SMALL, NULL, handle_shards},
	{KVS_PATH_REBALANCE, 1, EP_CLUSTER, READS | M_POST, ROLE_READ, M_POST,
	 ROLE_ADMIN, BODY_SMALL, NULL, handle_rebalance},
	{KVS_PATH_STATUS, 0, EP_STATUS, READS, ROLE_READ, 0, ROLE_READ,
	 BODY_SMALL, NULL, handle_status},
	/* For load balancers and probes: no credentials. */
	{KVS_PATH_HEALTH, 0, EP_HEALTH, READS, ROLE_NONE, 0, ROLE_NONE,
	 BODY_SMALL, NULL, handle_health},
	{KVS_PATH_METRICS, 0, EP_METRICS, READS, ROLE_READ, 0, ROLE_READ,
	 BODY_SMALL, NULL, handle_metrics},
	{KVS_PATH_PEER, 0, EP_INTERNAL, M_POST, ROLE_PEER, 0, ROLE_PEER,
	 BODY_PEER, NULL, handle_internal},
	{KVS_PATH_LINK, 0, EP_INTERNAL, M_GET, ROLE_PEER, 0, ROLE_PEER,
	 BODY_SMALL, NULL, handle_link},
	{KVS_PATH_INTERNAL, 1, EP_INTERNAL, ~0u, ROLE_PEER, 0, ROLE_PEER,
	 BODY_SMALL, NULL, no_peer_endpoint},
};

const struct endpoint *route_find(const char *url)
{
	for (size_t i = 0; i < KVS_ARRAY_SIZE(endpoints); i++) {
		const struct endpoint *e = &endpoints[i];

		if (e->prefix ? strncmp(url, e->path, strlen(e->path)) == 0
		              : strcmp(url, e->path) == 0)
			return e;
	}
	return NULL;
}

enum endpoint_id route_id(const struct endpoint *ep)
{
	return ep != NULL ? ep->id : EP_OTHER;
}

size_t route_body_limit(const struct server *s, const struct endpoint *ep)
{
	switch (ep != NULL ? ep->body : BODY_SMALL) {
	case BODY_VALUE:
		return s->cc->max_value_bytes;
	case BODY_BATCH:
	case BODY_PEER:
		return kvs__node_peer_frame_max(s->cc);
	default:
		return KVS_SMALL_BODY_BYTES;
	}
}

int route_needs_length(const struct endpoint *ep, enum method m)
{
	return ep != NULL && ep->id == EP_KV && m == M_PUT;
}

const char *method_name(enum method m)
{
	switch (m) {
	case M_GET:
		return "GET";
	case M_HEAD:
		return "HEAD";
	case M_PUT:
		return "PUT";
	case M_POST:
		return "POST";
	case M_DELETE:
		return "DELETE";
	case M_PATCH:
		return "PATCH";
	default:
		return "?";
	}
}

/* Compare a secret without leaking how much of it matched. */
static int same_secret(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned char diff = (unsigned char)(la != lb);

	for (size_t i = 0; i < la && i < lb; i++)
		diff |= (unsigned char)(a[i] ^ b[i]);
	return diff == 0;
}

enum role route_role_of(struct req *r)
{
	const kvs_cluster_config *cc = r->srv->cc;
	const char *secret = req_header(r, KVS_HDR_SECRET);
	const char *auth;
	int any_tokens =
	        cc->n_client_tokens + cc->n_read_tokens + cc->n_admin_tokens > 0;

	if (cc->cluster_secret != NULL && secret != NULL &&
	    same_secret(secret, cc->cluster_secret))
		return ROLE_PEER;
	if (tls_client_is_peer(r))
		return ROLE_PEER;
	if (!any_tokens)
		return cc->cluster_secret != NULL || cc->tls_mutual ? ROLE_ADMIN
		                                                    : ROLE_PEER;
	auth = req_header(r, "Authorization");
	if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0)
		return ROLE_NONE;
	auth += 7;
	for (size_t i = 0; i < cc->n_admin_tokens; i++)
		if (same_secret(auth, cc->admin_tokens[i]))
			return ROLE_ADMIN;
	for (size_t i = 0; i < cc->n_client_tokens; i++)
		if (same_secret(auth, cc->client_tokens[i]))
			return ROLE_WRITE;
	for (size_t i = 0; i < cc->n_read_tokens; i++)
		if (same_secret(auth, cc->read_tokens[i]))
			return ROLE_READ;
	return ROLE_NONE;
}

/* May this request go on? Answers 401/403 when not. */
static int authorized(struct req *r)
{
	const struct endpoint *e = r->ep;
	enum role need = (e->write_methods & r->method) ? e->write_role
	                                                : e->role;

	if (r->role >= need)
		return 1;
	if (r->role == ROLE_NONE && need != ROLE_PEER)
		reply_error(r, KVS_EAUTH, "a valid bearer token is required");
	else if (need == ROLE_PEER)
		reply_error(r, r->role == ROLE_NONE ? KVS_EAUTH : KVS_EFORBIDDEN,
		            "peer requests need the cluster secret");
	else if (need == ROLE_ADMIN)
		reply_error(r, KVS_EFORBIDDEN,
		            "this call needs an admin token or the cluster "
		            "secret");
	else
		reply_error(r, KVS_EFORBIDDEN, "this token may only read");
	return 0;
}

static void not_allowed(struct req *r)
{
	char allow[64] = "";

	for (size_t i = 0; i < KVS_ARRAY_SIZE(known_methods); i++)
		if (r->ep->methods & known_methods[i]) {
			if (allow[0] != '\0')
				strcat(allow, ", ");
			strcat(allow, method_name(known_methods[i]));
		}
	reply_error(r, KVS_EMETHOD, "allowed methods: %s", allow);
	reply_header(r, "Allow", allow);
}

int route_admit(struct req *r)
{
	if (r->ep == NULL) {
		reply_error(r, KVS_ENOENDPOINT,
		            "no endpoint at this path (see docs/api.md)");
		return 0;
	}
	if (!authorized(r))
		return 0;
	if (!(r->ep->methods & r->method)) {
		not_allowed(r);
		return 0;
	}
	return 1;
}

void route_dispatch(struct req *r)
{
	if (atomic_load(&r->srv->stopping)) {
		reply_error(r, KVS_ESHUTDOWN, "this shard is shutting down");
		reply_header(r, "Connection", "close");
		return;
	}
	if (r->ep == NULL) {
		reply_error(r, KVS_ENOENDPOINT,
		            "no endpoint at this path (see docs/api.md)");
		return;
	}
	if (r->body_too_big) {
		reply_error(r, KVS_EVALSIZE,
		            "the request body is larger than %zu bytes",
		            r->body_limit);
		return;
	}
	if (!authorized(r))
		return;
	if (!(r->ep->methods & r->method)) {
		not_allowed(r);
		return;
	}
	if (!req_check_args(r, r->ep->args))
		return;
	r->ep->handler(r);
}
