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
 * Only a node that does not own the key forwards a read or an
 * unconditional write (an owner serves or coordinates those itself), and
 * any node forwards a conditional write to the key's primary. Reads go to
 * an owner believed up; unconditional writes to the first owner believed
 * up. When an owner does not answer (refused, timed out, shutting down)
 * the next one is tried. When no owner answers, the result is
 * KVS_EUNAVAIL naming the last one tried. Reads and unconditional writes
 * can be sent again safely: a write keeps the version it got on arrival,
 * so a second copy changes nothing.
 *
 * Speculative retry: an owner that has not answered after the node's
 * speculative delay (kvs__node_speculative_ms: about the 99th percentile
 * of recent forwards) gets company: the request also goes to the next
 * owner, and the first answer wins (the others are dropped when they
 * come). A hung owner then costs the delay, not the request timeout.
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
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "node_internal.h"

struct fwd;

/* One message to one owner. */
struct send {
	struct fwd *f;
	size_t target;
	int done; /* its answer (or failure) came */
};

/*
 * Held by its starter, by each message in flight and by each timer; the
 * caller's callback runs once (finished), the memory goes at the last
 * release.
 */
struct fwd {
	kvs__op op;
	pthread_mutex_t mu;
	kvs__node *n;
	kvs__kv_req req; /* buffers borrowed from the caller until cb */
	kvs__route route;
	unsigned delay_ms; /* speculative retry; 0: none */
	struct send sends[KVS_RING_MAX_OWNERS];
	size_t n_sends;
	unsigned in_flight;
	int finished;
	kvs__result *out;
	kvs__node_cb cb;
	void *ud;
};

static int was_tried(const struct fwd *f, size_t shard)
{
	for (size_t i = 0; i < f->n_sends; i++)
		if (f->sends[i].target == shard)
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
		return f->n_sends == 0 ? f->route.owners[0] : f->n->n_shards;
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

static void fwd_done(kvs__op *op)
{
	struct fwd *f = (struct fwd *)op;

	pthread_mutex_destroy(&f->mu);
	free(f);
}

static void forwarded(void *ud, kvs__panswer *a);
static void slow(void *ud);

/* Send to the next owner (f->mu held); 0 if a message is out. A
 * speculative one (now) does not wait in the peer's lane. */
static int send_next(struct fwd *f, int now)
{
	for (;;) {
		size_t target = next_target(f);
		struct send *s;
		kvs__preq op;

		if (target == f->n->n_shards)
			return -1;
		s = &f->sends[f->n_sends++];
		s->f = f;
		s->target = target;
		s->done = 0;
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
		kvs__op_hold(&f->op);
		if ((now ? kvs__node_send_now : kvs__node_send)(
		            f->n, target, &op, forwarded, s) != KVS_OK) {
			s->done = 1;
			kvs__op_release(&f->op); /* not the last: caller holds */
			continue;
		}
		f->in_flight++;
		/* Never for a conditional write: it must not be decided
		 * twice. */
		if (f->delay_ms != 0 && !conditional(f) &&
		    next_target(f) != f->n->n_shards) {
			kvs__op_hold(&f->op);
			if (kvs__node_timer(f->n, f->delay_ms, slow, s) != KVS_OK)
				kvs__op_release(&f->op);
		}
		return 0;
	}
}

/* The owner of s has not answered yet: ask the next one as well. */
static void slow(void *ud)
{
	struct send *s = ud;
	struct fwd *f = s->f;

	pthread_mutex_lock(&f->mu);
	if (!s->done && !f->finished) {
		atomic_fetch_add(&f->n->counters.speculative, 1);
		/* None left: the first may still answer. */
		(void)send_next(f, 1);
	}
	pthread_mutex_unlock(&f->mu);
	kvs__op_release(&f->op);
}

/* Answer the caller (f->finished set by the caller of this). */
static void finish(struct fwd *f)
{
	f->cb(f->ud);
}

/* No owner answered (f->finished set): name the last one tried. */
static void give_up(struct fwd *f)
{
	size_t last = f->n_sends > 0 ? f->sends[f->n_sends - 1].target
	                             : f->route.owners[0];
	const kvs_shard_config *s = kvs_config_shard(f->n->cfg, last);

	f->out->rc = KVS_EUNAVAIL;
	f->out->unreachable = 1;
	f->out->target = last;
	kvs__node_log(f->n, KVS__LOG_WARN,
	              "no owner of a key answered (last tried: %s at %s)",
	              s->name, s->address);
	finish(f);
}

/* A conditional write that may have been decided where it went. */
static void outcome_unknown(struct fwd *f, size_t target)
{
	const kvs_shard_config *s = kvs_config_shard(f->n->cfg, target);

	f->out->rc = KVS_ETIMEDOUT;
	f->out->unreachable = 1;
	f->out->target = target;
	kvs__node_log(f->n, KVS__LOG_WARN,
	              "a conditional write sent to %s at %s got no answer: "
	              "its outcome is unknown",
	              s->name, s->address);
	finish(f);
}

static void free_answer(void *a)
{
	kvs__panswer_free(a);
}

/* What to do after a failed message (f->mu held, not finished). */
enum next { WAIT, DONE_UNKNOWN, DONE_SHUTDOWN, GIVE_UP };

static enum next after_failure(struct fwd *f, int rc, int refused)
{
	if (rc == KVS_ECLOSED)
		return DONE_SHUTDOWN; /* this node is stopping */
	if (conditional(f) && !refused)
		return DONE_UNKNOWN;
	if (f->in_flight > 0)
		return WAIT; /* a speculative copy may still answer */
	return send_next(f, 0) == 0 ? WAIT : GIVE_UP;
}

static void forwarded(void *ud, kvs__panswer *a)
{
	struct send *s = ud;
	struct fwd *f = s->f;
	kvs__result *out = f->out;
	const kvs__pres *r;
	enum next next;

	pthread_mutex_lock(&f->mu);
	s->done = 1;
	f->in_flight--;
	if (f->finished) {
		/* Another owner answered first. */
		pthread_mutex_unlock(&f->mu);
		kvs__panswer_free(a);
		kvs__op_release(&f->op);
		return;
	}
	if (a->rc != KVS_OK || a->n != 1) {
		next = after_failure(f, a->rc, a->refused);
		kvs__panswer_free(a);
		if (next != WAIT)
			f->finished = 1;
		pthread_mutex_unlock(&f->mu);
		switch (next) {
		case DONE_UNKNOWN:
			outcome_unknown(f, s->target);
			break;
		case DONE_SHUTDOWN:
			out->rc = KVS_ESHUTDOWN;
			finish(f);
			break;
		case GIVE_UP:
			give_up(f);
			break;
		case WAIT:
			break;
		}
		kvs__op_release(&f->op);
		return;
	}
	f->finished = 1;
	pthread_mutex_unlock(&f->mu);
	r = &a->res[0];
	out->rc = r->rc;
	out->stamp = r->stamp;
	out->acks = r->acks;
	out->need = r->need;
	out->replicas = r->replicas;
	out->served_by = s->target;
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
	kvs__op_release(&f->op);
}

void kvs__proxy(kvs__node *n, const kvs__kv_req *req, const kvs__route *route,
                kvs__result *out, kvs__node_cb cb, void *ud)
{
	struct fwd *f = calloc(1, sizeof(*f));
	int sent;

	if (f == NULL) {
		kvs__node_fail(out, KVS_ENOMEM, cb, ud);
		return;
	}
	kvs__op_init(&f->op, fwd_done);
	pthread_mutex_init(&f->mu, NULL);
	f->n = n;
	f->req = *req;
	f->route = *route;
	f->delay_ms = kvs__node_speculative_ms(n, KVS__LAT_FORWARD);
	f->out = out;
	f->cb = cb;
	f->ud = ud;
	pthread_mutex_lock(&f->mu);
	sent = send_next(f, 0) == 0;
	if (!sent)
		f->finished = 1;
	pthread_mutex_unlock(&f->mu);
	if (!sent)
		give_up(f);
	kvs__op_release(&f->op);
}
