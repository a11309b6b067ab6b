/*
 * proxy.c - a client's request that this node may not serve, sent to an
 * owner of the key through the peer protocol, whose answer becomes this
 * node's answer.
 *
 * The owner receives the request as a peer operation (GET, PUT or DELETE
 * with the client's quorum and conditions) and serves or coordinates it
 * as if the client had asked it directly, but never sends it on (it
 * answers KVS_EWRONGSHARD if it does not own the key). Nothing of the
 * client's HTTP request travels: the owner gets the decoded key and value,
 * so no path can be reinterpreted on the way, and this node has checked
 * the client's credentials already.
 *
 * Reads go to an owner believed up; unconditional writes to the
 * coordinator (the first owner believed up). When an owner does not
 * answer (refused, timed out, shutting down) the next one is tried; a
 * write whose coordinator is gone is taken over by this node when it is
 * now the first owner up. When no owner answers, the result is
 * KVS_EUNAVAIL naming the last one tried. Reads and unconditional writes
 * can be sent again safely: a write keeps the version it got on arrival,
 * so a second copy changes nothing.
 *
 * A conditional write goes to the key's primary only (quorum.c: it alone
 * decides conditions), and is never sent to another owner: if the primary
 * decided it and only its answer was lost, another owner would decide it
 * a second time, against the version the first decision wrote, and tell
 * the client it failed when it succeeded. When the primary certainly did
 * not act on it (kvs__panswer.refused) the result is KVS_EUNAVAIL;
 * otherwise KVS_ETIMEDOUT: the outcome is unknown, as etcd and
 * Cassandra's lightweight transactions answer.
 */
#include <stdlib.h>
#include <string.h>

#include "node_internal.h"

struct fwd {
	kvs__node *n;
	kvs__kv_req req; /* buffers borrowed from the caller until cb */
	kvs__route route;
	unsigned need;
	size_t tried[KVS_RING_MAX_OWNERS];
	size_t n_tried;
	kvs__result *out;
	kvs__node_cb cb;
	void *ud;
};

static int was_tried(const struct fwd *f, size_t shard)
{
	for (size_t i = 0; i < f->n_tried; i++)
		if (f->tried[i] == shard)
			return 1;
	return 0;
}

static int conditional(const struct fwd *f)
{
	return f->req.kind != KVS__KV_GET && f->req.cond.flags != 0;
}

/* The next owner to try, or n_shards. Reads: owners believed up first;
 * unconditional writes: the same, in preference order, so the coordinator
 * comes first; conditional writes: the primary, once. */
static size_t next_target(const struct fwd *f)
{
	if (conditional(f))
		return f->n_tried == 0 ? f->route.owners[0] : f->n->n_shards;
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < f->route.n; i++) {
			size_t o = f->route.owners[i];

			if (o == f->n->self || was_tried(f, o))
				continue;
			if (pass == 0 && !kvs__node_usable(f->n, o))
				continue;
			return o;
		}
	return f->n->n_shards;
}

static void finish(struct fwd *f)
{
	kvs__node_cb cb = f->cb;
	void *ud = f->ud;

	free(f);
	cb(ud);
}

static void forwarded(void *ud, kvs__panswer *a);

/*
 * How long to wait for an owner that coordinates a forwarded request: the
 * owner may itself wait one request timeout for a silent replica before it
 * asks another, so waiting only as long would give up on it just as it
 * answers. Two request timeouts cover one such replacement.
 */
static unsigned forward_timeout(const kvs__node *n)
{
	return 2 * n->cc->request_timeout_ms;
}

/* Send to the next owner; 0 if a message is out. */
static int send_next(struct fwd *f)
{
	for (;;) {
		size_t target = next_target(f);
		kvs__preq op;

		if (target == f->n->n_shards)
			return -1;
		f->tried[f->n_tried++] = target;
		memset(&op, 0, sizeof(op));
		op.code = f->req.kind == KVS__KV_GET   ? KVS__P_GET
		          : f->req.kind == KVS__KV_PUT ? KVS__P_PUT
		                                       : KVS__P_DELETE;
		op.flags = kvs__peer_cond_flags(&f->req.cond);
		op.r = f->req.r;
		op.w = f->req.w;
		op.stamp = f->req.stamp; /* every owner tried: one version */
		op.n_expect = f->req.cond.n_expect;
		memcpy(op.expect, f->req.cond.expect,
		       op.n_expect * sizeof(op.expect[0]));
		op.key = f->req.key;
		op.key_len = f->req.key_len;
		op.value = f->req.value;
		op.value_len = f->req.value_len;
		atomic_fetch_add(&f->n->counters.forwarded, 1);
		if (kvs__node_send(f->n, target, &op, 1, forward_timeout(f->n),
		                   forwarded, f) == KVS_OK)
			return 0;
	}
}

static void give_up(struct fwd *f)
{
	const kvs_shard_config *s;

	f->out->rc = KVS_EUNAVAIL;
	f->out->unreachable = 1;
	f->out->target = f->n_tried > 0 ? f->tried[f->n_tried - 1]
	                                : f->route.owners[0];
	s = kvs_config_shard(f->n->cfg, f->out->target);
	kvs__node_log(f->n, KVS__LOG_WARN,
	              "no owner of a key answered (last tried: %s at %s)",
	              s->name, s->address);
	finish(f);
}

static void free_answer(void *a)
{
	kvs__panswer_free(a);
}

/* A conditional write that may have been decided where it went. */
static void outcome_unknown(struct fwd *f)
{
	const kvs_shard_config *s;

	f->out->rc = KVS_ETIMEDOUT;
	f->out->unreachable = 1;
	f->out->target = f->tried[f->n_tried - 1];
	s = kvs_config_shard(f->n->cfg, f->out->target);
	kvs__node_log(f->n, KVS__LOG_WARN,
	              "a conditional write sent to %s at %s got no answer: "
	              "its outcome is unknown",
	              s->name, s->address);
	finish(f);
}

static void forwarded(void *ud, kvs__panswer *a)
{
	struct fwd *f = ud;
	kvs__result *out = f->out;
	const kvs__pres *r;

	if (a->rc != KVS_OK || a->n != 1) {
		int rc = a->rc, refused = a->refused;

		kvs__panswer_free(a);
		if (rc == KVS_ECLOSED) {
			/* This node is stopping. */
			out->rc = KVS_ESHUTDOWN;
			finish(f);
			return;
		}
		if (conditional(f) && rc != KVS_OK && !refused) {
			outcome_unknown(f);
			return;
		}
		/* A write whose coordinator is gone: an owner takes over. */
		if (f->req.kind != KVS__KV_GET && f->route.self >= 0 &&
		    kvs__node_coordinator(f->n, &f->route, &f->req) ==
		            f->n->self) {
			kvs__node_cb cb = f->cb;
			void *cb_ud = f->ud;
			kvs__kv_req req = f->req;
			kvs__route route = f->route;
			unsigned need = f->need;
			kvs__node *n = f->n;

			free(f);
			kvs__quorum_write(n, &req, &route, need, out, cb, cb_ud);
			return;
		}
		if (send_next(f) != 0)
			give_up(f);
		return;
	}
	r = &a->res[0];
	out->rc = r->rc;
	out->stamp = r->stamp;
	out->acks = r->acks;
	out->need = r->need;
	out->replicas = r->replicas;
	out->served_by = f->tried[f->n_tried - 1];
	out->forwarded = 1;
	if (r->rc == KVS_OK && f->req.kind == KVS__KV_GET) {
		/* The value stays in the owner's answer: no copy. */
		out->value = r->value;
		out->value_len = r->value_len;
		out->hold = a;
		out->release = free_answer;
	} else {
		kvs__panswer_free(a);
	}
	finish(f);
}

void kvs__proxy(kvs__node *n, const kvs__kv_req *req, const kvs__route *route,
                unsigned need, kvs__result *out, kvs__node_cb cb, void *ud)
{
	struct fwd *f = calloc(1, sizeof(*f));

	if (f == NULL) {
		kvs__node_fail(out, KVS_ENOMEM, cb, ud);
		return;
	}
	f->n = n;
	f->req = *req;
	f->route = *route;
	f->need = need;
	f->out = out;
	f->cb = cb;
	f->ud = ud;
	if (send_next(f) != 0)
		give_up(f);
}
