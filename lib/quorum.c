/*
 * quorum.c - quorum reads with read repair, and replicated writes, on a
 * node that owns the key.
 *
 * Reads. A quorum read reads this node's own record and asks R - 1 other
 * owners for theirs (owners believed up first; one that fails is replaced
 * by the next), and answers as soon as R have answered, with the newest
 * version among them: a deletion's tombstone counts, so a delete hides the
 * older value it deleted. A replica that fails is replaced by the next
 * owner, and so, speculatively, is one that has not answered after the
 * node's speculative delay (about the 99th percentile of recent replica
 * answers): the first R answers make the caller's. Answers that arrive
 * after that still count for repair: once every replica asked has
 * answered (or failed), the newest version seen is sent to each of them
 * that answered with an older one or none, this node included (read
 * repair; both ways, should a late answer be the newest).
 *
 * Writes. An unconditional write comes with its version (taken from the
 * clock of the node that received it from the client, past every version
 * that node's store holds) and is applied on all N owners at once, this
 * node included, each applying it only if it is newer than what it has.
 *
 * A conditional write (compare-and-swap, create-only, only if it exists)
 * is decided by the key's primary alone (ops.c sends it there), against
 * the newest version of the key: the primary first reads the key from
 * N - W + 1 owners, itself included, which meet every write acknowledged
 * by W, and brings its own store up to the newest version found; then its
 * store decides the condition atomically, and the result is applied on
 * the others like an unconditional write. Two conditional writes on one
 * key are thus decided in one order, by one store, against every
 * acknowledged write. If the owners cannot be read, nothing is decided
 * and the answer is KVS_EUNAVAIL. The caller is answered when W owners have
 * it durably; the rest finish in the background. Once W can no longer be
 * reached the answer is KVS_EUNAVAIL (or this node's own store error),
 * and the owners that did answer keep the write, as in Dynamo: a failed
 * quorum write may still become visible.
 *
 * Lifetime. Each read or write is a kvs__op (op.h): held by its starter,
 * by every message in flight, by every repair, and by the result handed to
 * the caller, whose value points into the read's memory (a peer's answer
 * frame, or the copy of this node's record) and so is never copied again.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "node_internal.h"

/* ------------------------------------------------------------------ */
/* Reads                                                                */

struct seen {
	size_t peer;
	int have;
	kvs_stamp stamp;
};

struct qread;

struct qask {
	struct qread *q;
	size_t peer;
	int done; /* its answer (or failure) came */
};

struct qread {
	kvs__op op;
	kvs__node *n;
	pthread_mutex_t mu;
	unsigned char *key;
	size_t key_len;
	unsigned need;
	/* The arrays below hold one more than the key has owners (N), in
	 * the same allocation: a read of N = 3 then stays small enough for
	 * the allocator's per-thread cache. */
	size_t *cand; /* the owners to ask */
	size_t n_cand;
	size_t next_cand;
	unsigned got;    /* replicas that answered, record or none */
	unsigned got_when_answered;
	unsigned asking; /* messages in flight */
	int answered;
	int repaired;
	int err; /* why a replica could not be asked, when it is our fault */
	unsigned delay_ms; /* speculative retry; 0: none */
	int urgent; /* launching a speculative read: not behind the lane */
	struct qask *asks;
	size_t n_asks;
	/* The newest record: best until the caller is answered; a newer
	 * one arriving later (a slow replica's, after a speculative one
	 * answered) becomes late, for repair only: the caller's value must
	 * not change under it. */
	int have_best, have_late;
	kvs_record best, late;
	/* Other replicas are asked for the version only (a digest): when
	 * one has a newer version than every other answer, its value is
	 * fetched from it before the caller is answered. */
	int best_digest;    /* best's value is not here yet */
	size_t best_peer;   /* who has it */
	int fetching;       /* the fetch is in flight */
	int fetch_failed;   /* it failed: the newest value is out of reach */
	struct qask fetch;
	struct seen *seen;
	size_t n_seen;
	/* What best's and late's values live in: answers and a copy of
	 * this node's record, freed with the read. */
	void **keep;
	size_t n_keep;
	kvs__result *out;
	kvs__node_cb cb;
	void *ud;
};

static void qread_done(kvs__op *op)
{
	struct qread *q = (struct qread *)op;

	for (size_t i = 0; i < q->n_keep; i++)
		kvs__panswer_free(q->keep[i]);
	pthread_mutex_destroy(&q->mu);
	free(q);
}

/* Take one replica's answer (q->mu held). keep is the answer its bytes
 * live in (kept if they matter), or NULL. */
static void consider(struct qread *q, size_t peer, const kvs_record *rec,
                     int digest, kvs__panswer *keep, int *kept)
{
	kvs_record *slot;

	q->seen[q->n_seen].peer = peer;
	q->seen[q->n_seen].have = rec != NULL;
	if (rec != NULL)
		q->seen[q->n_seen].stamp = rec->stamp;
	q->n_seen++;
	if (rec == NULL)
		return;
	if (!q->answered) {
		int cmp = q->have_best ? kvs_stamp_cmp(&rec->stamp,
		                                       &q->best.stamp)
		                       : 1;

		/* The same version with its value beats a digest of it. */
		if (cmp < 0 || (cmp == 0 && (digest || !q->best_digest)))
			return;
		slot = &q->best;
		q->have_best = 1;
		q->best_digest = digest;
		q->best_peer = peer;
	} else {
		const kvs_record *cur = q->have_late ? &q->late : &q->best;

		/* A late digest cannot repair anyone: its value is not
		 * here. Its replica is the newest; the others wait for the
		 * next read or for anti-entropy. */
		if (digest)
			return;
		if ((q->have_late || q->have_best) &&
		    kvs_stamp_cmp(&rec->stamp, &cur->stamp) <= 0)
			return;
		slot = &q->late;
		q->have_late = 1;
	}
	*slot = *rec;
	slot->key = q->key;
	slot->key_len = q->key_len;
	if (keep != NULL && !*kept) {
		q->keep[q->n_keep++] = keep;
		*kept = 1;
	}
}

static void qread_answer(void *ud, kvs__panswer *a);
static void fetched(void *ud, kvs__panswer *a);
static void slow(void *ud);

/* Fetch the value of the newest version, seen in a digest, from the
 * replica that has it (q->mu held). */
static void fetch(struct qread *q)
{
	kvs__preq op;
	int rc;

	memset(&op, 0, sizeof(op));
	op.code = KVS__P_READ;
	op.key = q->key;
	op.key_len = q->key_len;
	q->fetch.q = q;
	q->fetch.peer = q->best_peer;
	q->fetch.done = 0;
	kvs__op_hold(&q->op);
	q->fetching = 1;
	q->asking++;
	atomic_fetch_add(&q->n->counters.read_fetches, 1);
	rc = kvs__node_send_now(q->n, q->best_peer, &op, fetched, &q->fetch);
	if (rc != KVS_OK) {
		if (rc == KVS_ENOMEM)
			q->err = rc;
		q->fetching = 0;
		q->fetch_failed = 1;
		q->asking--;
		/* Not the last: the starter or a caller holds it. */
		kvs__op_release(&q->op);
	}
}

/* Ask the next candidate (q->mu held); KVS_OK if a message is out. */
/* How far shard p comes after this node, in config order. */
static size_t after(const kvs__node *n, size_t p)
{
	return (p + n->n_shards - n->self) % n->n_shards;
}

static int launch(struct qread *q)
{
	while (q->next_cand < q->n_cand) {
		struct qask *ask = &q->asks[q->n_asks++];
		kvs__preq op;
		int rc;

		ask->q = q;
		ask->done = 0;
		ask->peer = q->cand[q->next_cand++];
		memset(&op, 0, sizeof(op));
		op.code = KVS__P_READ;
		op.flags = KVS__PQ_DIGEST;
		op.key = q->key;
		op.key_len = q->key_len;
		kvs__op_hold(&q->op);
		q->asking++;
		atomic_fetch_add(&q->n->counters.replica_reads, 1);
		rc = (q->urgent ? kvs__node_send_now : kvs__node_send)(
		        q->n, ask->peer, &op, qread_answer, ask);
		if (rc != KVS_OK) {
			if (rc == KVS_ENOMEM)
				q->err = rc;
			ask->done = 1;
			q->asking--;
			/* Not the last: the starter or a caller holds it. */
			kvs__op_release(&q->op);
			continue;
		}
		if (q->delay_ms != 0 && q->next_cand < q->n_cand) {
			kvs__op_hold(&q->op);
			if (kvs__node_timer(q->n, q->delay_ms, slow, ask) !=
			    KVS_OK)
				kvs__op_release(&q->op);
		}
		return KVS_OK;
	}
	return KVS_EUNAVAIL;
}

/* What to do now (q->mu held): ask more, answer, repair. */
static void step(struct qread *q, int *answer, int *repair)
{
	*answer = *repair = 0;
	while (!q->answered && q->got + q->asking < q->need &&
	       launch(q) == KVS_OK)
		;
	if (!q->answered && q->got >= q->need && q->best_digest &&
	    !q->fetching && !q->fetch_failed)
		fetch(q);
	if (!q->answered && !q->fetching &&
	    (q->got >= q->need || q->asking == 0)) {
		q->answered = 1;
		q->got_when_answered = q->got;
		*answer = 1;
	}
	if (q->answered && q->asking == 0 && !q->repaired) {
		q->repaired = 1;
		*repair = 1;
	}
}

static void answer(struct qread *q)
{
	kvs__result *out = q->out;

	/* best no longer changes once answered is set (see consider). */
	out->acks = q->got_when_answered;
	if (q->got_when_answered < q->need) {
		atomic_fetch_add(&q->n->counters.quorum_failures, 1);
		out->rc = q->err != KVS_OK ? q->err : KVS_EUNAVAIL;
	} else if (!q->have_best) {
		out->rc = KVS_NOTFOUND;
	} else if (q->best_digest) {
		/* A replica has a newer version whose value could not be
		 * fetched: an older value would break the quorum's promise. */
		atomic_fetch_add(&q->n->counters.quorum_failures, 1);
		out->rc = q->err != KVS_OK ? q->err : KVS_EUNAVAIL;
	} else {
		out->stamp = q->best.stamp;
		if (q->best.flags & KVS_RECORD_TOMBSTONE) {
			out->rc = KVS_NOTFOUND;
		} else {
			out->rc = KVS_OK;
			out->value = q->best.value;
			out->value_len = q->best.value_len;
			/* The value lives in q: the result holds it. */
			kvs__op_hold(&q->op);
			out->hold = &q->op;
			out->release = kvs__op_release_cb;
		}
	}
	q->cb(q->ud);
}

static void repaired_remote(void *ud, kvs__panswer *a)
{
	struct qread *q = ud;

	kvs__panswer_free(a);
	kvs__op_release(&q->op);
}

static void repaired_local(void *ud, int rc, const kvs_stamp *stamp,
                           int applied)
{
	struct qread *q = ud;

	(void)rc;
	(void)stamp;
	(void)applied;
	kvs__op_release(&q->op);
}

/* Send the newest version to every replica that answered with an older
 * one or none (no lock needed: nothing is in flight any more). */
static void repair(struct qread *q)
{
	const kvs_record *final = q->have_late ? &q->late : &q->best;
	kvs__node *n = q->n;

	if (!q->have_best && !q->have_late)
		return; /* nobody has anything */
	if (!q->have_late && q->best_digest)
		return; /* the newest value never came */
	for (size_t i = 0; i < q->n_seen; i++) {
		const struct seen *s = &q->seen[i];
		int rc;

		if (s->have && kvs_stamp_cmp(&s->stamp, &final->stamp) >= 0)
			continue;
		atomic_fetch_add(&n->counters.read_repairs, 1);
		kvs__op_hold(&q->op);
		if (s->peer == n->self) {
			rc = kvs__node_local_apply(n, final, repaired_local, q);
		} else {
			kvs__preq op;

			memset(&op, 0, sizeof(op));
			op.code = KVS__P_APPLY;
			op.flags = (final->flags & KVS_RECORD_TOMBSTONE)
			                   ? KVS__PQ_TOMBSTONE
			                   : 0;
			op.stamp = final->stamp;
			op.key = final->key;
			op.key_len = final->key_len;
			op.value = final->value;
			op.value_len = final->value_len;
			rc = kvs__node_send(n, s->peer, &op, repaired_remote, q);
		}
		if (rc != KVS_OK)
			kvs__op_release(&q->op);
	}
}

static void act(struct qread *q, int do_answer, int do_repair)
{
	if (do_answer)
		answer(q);
	if (do_repair)
		repair(q);
}

/* The replica of ask has not answered yet: ask the next owner too. */
static void slow(void *ud)
{
	struct qask *ask = ud;
	struct qread *q = ask->q;
	int do_answer, do_repair;

	pthread_mutex_lock(&q->mu);
	if (!ask->done && !q->answered && q->next_cand < q->n_cand) {
		atomic_fetch_add(&q->n->counters.speculative, 1);
		q->urgent = 1;
		(void)launch(q);
		q->urgent = 0;
	}
	step(q, &do_answer, &do_repair);
	pthread_mutex_unlock(&q->mu);
	act(q, do_answer, do_repair);
	kvs__op_release(&q->op);
}

/* An answer to ask came: take the lock, count it. */
static struct qread *answer_begins(struct qask *ask)
{
	struct qread *q = ask->q;

	pthread_mutex_lock(&q->mu);
	ask->done = 1;
	q->asking--;
	return q;
}

/* Done with answer a (kept: q holds it now): decide, unlock, act. */
static void answer_ends(struct qread *q, kvs__panswer *a, int kept)
{
	int do_answer, do_repair;

	step(q, &do_answer, &do_repair);
	pthread_mutex_unlock(&q->mu);
	if (!kept)
		kvs__panswer_free(a);
	act(q, do_answer, do_repair);
	kvs__op_release(&q->op);
}

static void qread_answer(void *ud, kvs__panswer *a)
{
	struct qread *q = answer_begins(ud);
	struct qask *ask = ud;
	int kept = 0;

	if (a->rc == KVS_OK && a->n == 1 &&
	    (a->res[0].rc == KVS_OK || a->res[0].rc == KVS_NOTFOUND)) {
		const kvs__pres *r = &a->res[0];
		kvs_record rec;

		q->got++;
		memset(&rec, 0, sizeof(rec));
		rec.stamp = r->stamp;
		rec.flags = (r->flags & KVS__PA_TOMBSTONE) ? KVS_RECORD_TOMBSTONE
		                                           : 0;
		rec.value = r->value;
		rec.value_len = r->value_len;
		consider(q, ask->peer, r->rc == KVS_OK ? &rec : NULL,
		         (r->flags & KVS__PA_DIGEST) != 0, a, &kept);
	}
	/* A failed replica: step() asks the next candidate. */
	answer_ends(q, a, kept);
}

/* The value of the newest version came (or not). */
static void fetched(void *ud, kvs__panswer *a)
{
	struct qread *q = answer_begins(ud);
	int kept = 0;

	q->fetching = 0;
	if (a->rc == KVS_OK && a->n == 1 && a->res[0].rc == KVS_OK &&
	    !(a->res[0].flags & KVS__PA_DIGEST) &&
	    kvs_stamp_cmp(&a->res[0].stamp, &q->best.stamp) >= 0) {
		const kvs__pres *r = &a->res[0];

		/* Newer still is fine: it is what that replica has now. */
		q->best.stamp = r->stamp;
		q->best.flags = (r->flags & KVS__PA_TOMBSTONE)
		                        ? KVS_RECORD_TOMBSTONE
		                        : 0;
		q->best.value = r->value;
		q->best.value_len = r->value_len;
		q->best_digest = 0;
		q->keep[q->n_keep++] = a;
		kept = 1;
	} else {
		q->fetch_failed = 1;
	}
	answer_ends(q, a, kept);
}

struct local_copy {
	struct qread *q;
	int rc;
};

/* This node's record: copied out of the store into an answer-shaped
 * holder, so that it is freed like the others. */
static int read_local(void *ud, const kvs_record *rec)
{
	struct local_copy *lc = ud;
	struct qread *q = lc->q;
	kvs__panswer *holder = calloc(1, sizeof(*holder));
	kvs_record copy = *rec;
	int kept = 0;

	if (holder != NULL && rec->value_len > 0) {
		holder->body = malloc(rec->value_len);
		if (holder->body != NULL)
			memcpy(holder->body, rec->value, rec->value_len);
	}
	if (holder == NULL || (rec->value_len > 0 && holder->body == NULL)) {
		free(holder);
		lc->rc = KVS_ENOMEM;
		return 0;
	}
	copy.value = holder->body;
	consider(q, q->n->self, &copy, 0, holder, &kept);
	if (!kept)
		kvs__panswer_free(holder);
	lc->rc = KVS_OK;
	return 0;
}

/* A read with room for the answers of n owners (and one more: this
 * node's copy, or a fetch), and its key. */
static struct qread *qread_new(size_t owners, const void *key,
                               size_t key_len)
{
	size_t n = owners + 1;
	/* Every part is a multiple of 8 bytes: each starts aligned. */
	size_t size = sizeof(struct qread) + n * sizeof(size_t) +
	              n * sizeof(struct qask) + n * sizeof(struct seen) +
	              n * sizeof(void *);
	struct qread *q = calloc(1, size + key_len);
	unsigned char *p = (unsigned char *)(q + 1);

	if (q == NULL)
		return NULL;
	q->cand = (size_t *)(void *)p;
	p += n * sizeof(size_t);
	q->asks = (struct qask *)(void *)p;
	p += n * sizeof(struct qask);
	q->seen = (struct seen *)(void *)p;
	p += n * sizeof(struct seen);
	q->keep = (void **)(void *)p;
	p += n * sizeof(void *);
	q->key = p;
	memcpy(q->key, key, key_len);
	q->key_len = key_len;
	return q;
}

void kvs__quorum_read(kvs__node *n, const kvs__kv_req *req,
                      const kvs__route *route, unsigned need,
                      kvs__result *out, kvs__node_cb cb, void *ud)
{
	struct qread *q = qread_new(route->n, req->key, req->key_len);
	struct local_copy lc;
	int do_answer, do_repair, rc;

	if (q == NULL) {
		kvs__node_fail(out, KVS_ENOMEM, cb, ud);
		return;
	}
	kvs__op_init(&q->op, qread_done);
	pthread_mutex_init(&q->mu, NULL);
	q->n = n;
	q->need = need;
	q->out = out;
	q->cb = cb;
	q->ud = ud;
	q->delay_ms = kvs__node_speculative_ms(n, KVS__LAT_REPLICA);
	/* The other owners, those believed up first; among those, in this
	 * node's own order: the shards after it, in config order. Each node
	 * thus asks mostly one peer, whose frames grow bigger (fewer system
	 * calls and wake-ups a read), while the nodes together still ask
	 * every owner as often. */
	for (int pass = 0; pass < 2; pass++) {
		size_t first = q->n_cand;

		for (size_t i = 0; i < route->n; i++) {
			size_t p = route->owners[i];

			if (p != n->self && kvs__node_usable(n, p) == !pass)
				q->cand[q->n_cand++] = p;
		}
		for (size_t i = first + 1; i < q->n_cand; i++)
			for (size_t j = i; j > first &&
			                   after(n, q->cand[j]) < after(n, q->cand[j - 1]);
			     j--) {
				size_t t = q->cand[j];

				q->cand[j] = q->cand[j - 1];
				q->cand[j - 1] = t;
			}
	}

	pthread_mutex_lock(&q->mu);
	lc.q = q;
	lc.rc = KVS_OK;
	rc = kvs_store_read(n->store, q->key, q->key_len, KVS_READ_TOMBSTONES,
	                    read_local, &lc);
	if (rc == KVS_NOTFOUND) {
		consider(q, n->self, NULL, 0, NULL, NULL);
		rc = KVS_OK;
	} else if (rc == KVS_OK) {
		rc = lc.rc;
	}
	if (rc != KVS_OK) {
		pthread_mutex_unlock(&q->mu);
		kvs__op_release(&q->op);
		kvs__node_fail(out, rc, cb, ud);
		return;
	}
	q->got = 1;
	step(q, &do_answer, &do_repair);
	pthread_mutex_unlock(&q->mu);
	act(q, do_answer, do_repair);
	kvs__op_release(&q->op);
}

/* ------------------------------------------------------------------ */
/* Writes                                                               */

struct qwrite {
	kvs__op op;
	kvs__node *n;
	pthread_mutex_t mu;
	kvs__route route;
	unsigned need;
	kvs_record rec; /* key and value: the caller's, or copy */
	unsigned char *copy;
	kvs__cond cond;
	int is_delete;
	unsigned acks, fails;     /* of the owners that read */
	unsigned need_b;          /* during a move: W of the other side */
	unsigned acks_b, fails_b; /* and its outcomes */
	int answered;
	int local_rc;
	kvs__result seen; /* a conditional write: the newest version read */
	struct qrep {
		struct qwrite *q;
		size_t peer;
	} reps[KVS__ROUTE_MAX];
	kvs__result *out;
	kvs__node_cb cb;
	void *ud;
};

static void qwrite_done(kvs__op *op)
{
	struct qwrite *q = (struct qwrite *)op;

	kvs__result_clear(&q->seen);
	free(q->copy);
	pthread_mutex_destroy(&q->mu);
	free(q);
}

/* Outcomes counted by count(). */
#define ACKED 1
#define FAILED 0

/*
 * Count the outcome (ACKED or FAILED) of owners[at] (local_rc: this
 * node's own store's result, or 1 for a replica's); answer once the
 * outcome is decided: W of the owners that read, and during a move W of
 * the other side's too.
 */
static void count(struct qwrite *q, size_t at, int ok, int local_rc)
{
	int rc = KVS_OK, do_answer = 0;
	unsigned acks;

	pthread_mutex_lock(&q->mu);
	if (local_rc != 1)
		q->local_rc = local_rc;
	if (at < q->route.n)
		*(ok ? &q->acks : &q->fails) += 1;
	if (q->route.in_b & (1u << at))
		*(ok ? &q->acks_b : &q->fails_b) += 1;
	if (!q->answered && q->acks >= q->need && q->acks_b >= q->need_b) {
		q->answered = do_answer = 1;
	} else if (!q->answered &&
	           (q->fails > q->route.n - q->need ||
	            q->fails_b > q->route.n_b - q->need_b)) {
		q->answered = do_answer = 1;
		rc = q->local_rc != KVS_OK ? q->local_rc : KVS_EUNAVAIL;
	}
	/* During a move, the side that has fewer. */
	acks = q->route.n_b > 0 && q->acks_b < q->acks ? q->acks_b : q->acks;
	pthread_mutex_unlock(&q->mu);
	if (!do_answer)
		return;
	if (rc == KVS_EUNAVAIL)
		atomic_fetch_add(&q->n->counters.quorum_failures, 1);
	q->out->rc = rc;
	q->out->stamp = q->rec.stamp;
	q->out->acks = acks;
	q->cb(q->ud);
}

/* Refusals a replica would repeat: no use keeping a hint for them. */
static int refused_for_good(int rc)
{
	return rc == KVS_ECLOCK || rc == KVS_EKEYSIZE || rc == KVS_EVALSIZE ||
	       rc == KVS_EINVAL || rc == KVS_ESTALEEPOCH;
}

static void replica_done(void *ud, kvs__panswer *a)
{
	struct qrep *rep = ud;
	struct qwrite *q = rep->q;
	int rc = a->rc == KVS_OK && a->n == 1 ? a->res[0].rc : a->rc;

	kvs__panswer_free(a);
	/* Missed (down, timed out, or its store failed): the owner gets it
	 * later from a hint. */
	if (rc != KVS_OK && !refused_for_good(rc) && rc != KVS_ECLOSED)
		kvs__hint_add(q->n, rep->peer, &q->rec);
	count(q, (size_t)(rep - q->reps), rc == KVS_OK ? ACKED : FAILED, 1);
	kvs__op_release(&q->op);
}

static void local_done(void *ud, int rc, const kvs_stamp *stamp, int applied)
{
	struct qwrite *q = ud;

	(void)stamp;
	(void)applied;
	count(q, (size_t)q->route.self, rc == KVS_OK ? ACKED : FAILED, rc);
	kvs__op_release(&q->op);
}

/* Send the record to every owner but this node. */
static void replicate(struct qwrite *q)
{
	kvs__preq op;

	memset(&op, 0, sizeof(op));
	op.code = KVS__P_APPLY;
	op.flags = q->is_delete ? KVS__PQ_TOMBSTONE : 0;
	op.stamp = q->rec.stamp;
	op.key = q->rec.key;
	op.key_len = q->rec.key_len;
	op.value = q->rec.value;
	op.value_len = q->rec.value_len;
	for (size_t i = 0; i < q->route.n_all; i++) {
		size_t peer = q->route.owners[i];
		int rc;

		if (peer == q->n->self)
			continue;
		atomic_fetch_add(&q->n->counters.replica_writes, 1);
		q->reps[i].q = q;
		q->reps[i].peer = peer;
		kvs__op_hold(&q->op);
		rc = kvs__node_send(q->n, peer, &op, replica_done, &q->reps[i]);
		if (rc != KVS_OK) {
			/* Skipped as down, or no memory: a hint too. */
			if (rc != KVS_ECLOSED)
				kvs__hint_add(q->n, peer, &q->rec);
			count(q, i, FAILED, 1);
			kvs__op_release(&q->op);
		}
	}
}

/* A conditional write that ends before anything is replicated: its
 * condition failed, or the store did, or the owners could not be read.
 * Releases the conditional flow's hold. */
static void cond_end(struct qwrite *q, int rc, const kvs_stamp *stamp)
{
	static const kvs_stamp none = {0, 0};

	q->answered = 1;
	q->out->rc = rc;
	q->out->stamp = stamp != NULL ? *stamp : none;
	q->cb(q->ud);
	kvs__op_release(&q->op);
}

/* A conditional write decided by this node's store: replicate it. */
static void cond_done(void *ud, int rc, const kvs_stamp *stamp, int applied)
{
	struct qwrite *q = ud;

	(void)applied;
	if (rc == KVS_NOTFOUND && q->is_delete)
		rc = KVS_OK; /* a delete of nothing still writes a tombstone */
	if (rc != KVS_OK) {
		cond_end(q, rc, stamp);
		return;
	}
	q->rec.stamp = *stamp;
	replicate(q);
	count(q, (size_t)q->route.self, ACKED, KVS_OK);
	kvs__op_release(&q->op);
}

/* This node's store decides the condition. */
static void decide(struct qwrite *q)
{
	int rc = kvs__node_local_write(q->n, q->is_delete, q->rec.key,
	                               q->rec.key_len, q->rec.value,
	                               q->rec.value_len, &q->cond, cond_done,
	                               q);

	if (rc != KVS_OK)
		cond_end(q, rc, NULL);
}

static void caught_up(void *ud, int rc, const kvs_stamp *stamp, int applied)
{
	struct qwrite *q = ud;

	(void)stamp;
	(void)applied;
	if (rc != KVS_OK)
		cond_end(q, rc, NULL);
	else
		decide(q);
}

static int read_stamp(void *ud, const kvs_record *rec)
{
	*(kvs_stamp *)ud = rec->stamp;
	return 0;
}

/* The owners have been read: catch up with the newest version, then
 * decide. */
static void reconciled(void *ud)
{
	struct qwrite *q = ud;
	const kvs__result *seen = &q->seen;
	kvs_stamp mine = {0, 0};
	kvs_record rec;
	int rc;

	if (seen->rc != KVS_OK && seen->rc != KVS_NOTFOUND) {
		/* Too few owners to decide against: nothing decided. */
		q->out->acks = seen->acks;
		q->out->need = seen->need;
		cond_end(q, seen->rc, NULL);
		return;
	}
	rc = kvs_store_read(q->n->store, q->rec.key, q->rec.key_len,
	                    KVS_READ_TOMBSTONES, read_stamp, &mine);
	if (rc != KVS_OK && rc != KVS_NOTFOUND) {
		cond_end(q, rc, NULL);
		return;
	}
	if (seen->stamp.hlc == 0 || kvs_stamp_cmp(&mine, &seen->stamp) >= 0) {
		decide(q);
		return;
	}
	memset(&rec, 0, sizeof(rec));
	rec.key = q->rec.key;
	rec.key_len = q->rec.key_len;
	rec.stamp = seen->stamp;
	if (seen->rc == KVS_NOTFOUND) {
		rec.flags = KVS_RECORD_TOMBSTONE;
	} else {
		rec.value = seen->value;
		rec.value_len = seen->value_len;
	}
	rc = kvs__node_local_apply(q->n, &rec, caught_up, q);
	if (rc != KVS_OK)
		cond_end(q, rc, NULL);
}

/* How many owners a conditional write reads before it is decided: enough
 * to meet every write acknowledged by the cluster's W. */
static unsigned decision_quorum(const kvs__node *n, size_t replicas)
{
	unsigned w = n->cc->write_quorum;

	if (w == 0 || w > replicas)
		w = (unsigned)replicas;
	return (unsigned)replicas - w + 1;
}

static void conditional_write(struct qwrite *q)
{
	unsigned need = decision_quorum(q->n, q->route.n);
	kvs__kv_req get;

	if (need <= 1 || q->route.n <= 1) {
		decide(q);
		return;
	}
	memset(&get, 0, sizeof(get));
	get.kind = KVS__KV_GET;
	get.key = q->rec.key;
	get.key_len = q->rec.key_len;
	kvs__quorum_read(q->n, &get, &q->route, need, &q->seen, reconciled, q);
}

void kvs__quorum_write(kvs__node *n, const kvs__kv_req *req,
                       const kvs__route *route, unsigned need,
                       kvs__result *out, kvs__node_cb cb, void *ud)
{
	struct qwrite *q = calloc(1, sizeof(*q));
	int conditional = req->cond.flags != 0;
	int rc;

	if (q == NULL) {
		kvs__node_fail(out, KVS_ENOMEM, cb, ud);
		return;
	}
	kvs__op_init(&q->op, qwrite_done);
	pthread_mutex_init(&q->mu, NULL);
	q->n = n;
	q->route = *route;
	q->need = need;
	q->need_b = need < route->n_b ? need : (unsigned)route->n_b;
	q->out = out;
	q->cb = cb;
	q->ud = ud;
	q->cond = req->cond;
	q->is_delete = req->kind == KVS__KV_DELETE;
	q->rec.key = req->key;
	q->rec.key_len = req->key_len;
	q->rec.value = q->is_delete ? NULL : req->value;
	q->rec.value_len = q->is_delete ? 0 : req->value_len;
	q->rec.flags = q->is_delete ? KVS_RECORD_TOMBSTONE : 0;
	if (route->n_all > 1) {
		/* Replicas and this node's store may still be writing after
		 * the caller is answered and has freed its buffers. */
		q->copy = malloc(req->key_len + q->rec.value_len + 1);
		if (q->copy == NULL) {
			kvs__op_release(&q->op);
			kvs__node_fail(out, KVS_ENOMEM, cb, ud);
			return;
		}
		memcpy(q->copy, req->key, req->key_len);
		if (q->rec.value_len > 0)
			memcpy(q->copy + req->key_len, req->value,
			       q->rec.value_len);
		q->rec.key = q->copy;
		q->rec.value = q->copy + req->key_len;
	}

	kvs__op_hold(&q->op);
	if (conditional) {
		conditional_write(q); /* takes the hold */
		kvs__op_release(&q->op);
		return;
	}
	/* Unconditional: the version the write got on arrival (node.c). */
	q->rec.stamp = req->stamp;
	/* Replicas first: the local write is often the slowest (a sync). */
	replicate(q);
	rc = kvs__node_local_apply(n, &q->rec, local_done, q);
	if (rc != KVS_OK) {
		count(q, (size_t)q->route.self, FAILED, rc);
		kvs__op_release(&q->op);
	}
	kvs__op_release(&q->op);
}
