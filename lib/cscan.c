/*
 * cscan.c - the cluster-wide scan: one page of every shard's keys, merged
 * as a read at R would see them.
 *
 * Which shards. Every key lives on N of the H shards that hold ring
 * points, so any H - N + R of them hold at least R replicas of every key
 * (the N - R left out cannot hold more than N - R of a key's N replicas).
 * The node asks that many: itself first when it holds data, then peers
 * believed up, replacing one that fails by another; with too few the
 * scan fails (KVS_EUNAVAIL).
 *
 * Each shard returns up to `limit` records after start_after in key order,
 * tombstones included, and says whether it stopped early (more). Merging
 * keeps, for each key, its newest version among the shards (so a delete
 * hides the value it deleted and a stale replica never shows an old
 * value), drops tombstones, and trusts the merged order only up to the
 * smallest last key among shards that stopped early: past it, a truncated
 * shard may have keys not seen yet. The page shows at most `limit` live
 * keys and the key to continue after; none once every shard is done.
 * Since R replicas of each key are read, a scan agrees with a read at the
 * same R: with R + W > N it shows every acknowledged write and never a
 * key that such a read reports deleted.
 *
 * The pages are kept as they arrive (a peer's answer frame, or this node's
 * records encoded the same way, protocol.h), and merged only when the
 * caller asks, on the caller's thread.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "node_internal.h"

struct page {
	size_t shard;
	int ok;
	int more;
	kvs__panswer *answer; /* a peer's page */
	kvs__buf local;       /* this node's page */
	kvs__pres res;        /* where the records are */
};

struct kvs__cscan {
	kvs__op op;
	kvs__node *n;
	pthread_mutex_t mu;
	unsigned char *prefix;
	size_t prefix_len;
	unsigned char *start;
	size_t start_len;
	int has_start;
	size_t limit;
	int values;
	size_t n_pages;
	struct page *pages;
	size_t *spares;
	size_t n_spares;
	size_t next_spare;
	int failed;
	size_t failed_shard;
	kvs__scan_result *out;
	kvs__node_cb cb;
	void *ud;
};

struct local_scan {
	kvs__buf *out;
	size_t limit;
	size_t count;
	int values;
	int more;
};

static int collect(void *ud, const kvs_record *rec)
{
	struct local_scan *ls = ud;
	kvs_record r = *rec;

	if (ls->count == ls->limit) {
		ls->more = 1; /* one more than asked: more follow */
		return 1;
	}
	if (!ls->values || (r.flags & KVS_RECORD_TOMBSTONE)) {
		r.value = NULL;
		r.value_len = 0;
	}
	kvs__peer_rec(ls->out, &r);
	ls->count++;
	return ls->out->rc != KVS_OK;
}

int kvs__local_page(kvs__node *n, const void *prefix, size_t prefix_len,
                    const void *start, size_t start_len, int has_start,
                    size_t limit, int values, kvs__buf *out, size_t *count,
                    int *more)
{
	struct local_scan ls = {out, limit, 0, values, 0};
	kvs_scan_options o;
	int rc;

	memset(&o, 0, sizeof(o));
	o.prefix = prefix;
	o.prefix_len = prefix_len;
	if (has_start) {
		o.start = start;
		o.start_len = start_len;
	}
	o.flags = KVS_READ_TOMBSTONES;
	rc = kvs_store_scan(n->store, &o, collect, &ls);
	if (rc == KVS_OK && out->rc != KVS_OK)
		rc = out->rc;
	*count = ls.count;
	*more = ls.more;
	return rc;
}

static void cscan_free(struct kvs__cscan *cs)
{
	for (size_t i = 0; cs->pages != NULL && i < cs->n_pages; i++) {
		kvs__panswer_free(cs->pages[i].answer);
		kvs__buf_free(&cs->pages[i].local);
	}
	free(cs->pages);
	free(cs->spares);
	free(cs->prefix);
	free(cs->start);
	pthread_mutex_destroy(&cs->mu);
	free(cs);
}

/* The last release: tell the caller. The result holds nothing: the
 * caller frees cs with kvs__scan_result_clear. */
static void cscan_done(kvs__op *op)
{
	struct kvs__cscan *cs = (struct kvs__cscan *)op;
	kvs__scan_result *out = cs->out;

	out->rc = cs->failed ? KVS_EUNAVAIL : KVS_OK;
	out->failed = cs->failed_shard;
	out->cs = cs;
	cs->cb(cs->ud);
}

static int fill(struct kvs__cscan *cs, size_t i);

static void page_arrived(void *ud, kvs__panswer *a);

struct pask {
	struct kvs__cscan *cs;
	size_t i;
};

/* Get page i from shard pages[i].shard, or from spares when that fails;
 * at the end, page i is ok or the scan failed. */
static void get_page(struct kvs__cscan *cs, size_t i)
{
	for (;;) {
		int rc = fill(cs, i);

		if (rc >= 0)
			return; /* done here (0), or a message is out (1) */
		pthread_mutex_lock(&cs->mu);
		if (cs->next_spare == cs->n_spares) {
			cs->failed = 1;
			cs->failed_shard = cs->pages[i].shard;
			pthread_mutex_unlock(&cs->mu);
			return;
		}
		cs->pages[i].shard = cs->spares[cs->next_spare++];
		pthread_mutex_unlock(&cs->mu);
	}
}

/*
 * Page i from its shard: at once for this node (0, or -1 on failure),
 * else a message whose answer comes to page_arrived (1).
 */
static int fill(struct kvs__cscan *cs, size_t i)
{
	struct page *p = &cs->pages[i];
	struct pask *ask;
	kvs__preq op;

	kvs__panswer_free(p->answer);
	p->answer = NULL;
	kvs__buf_free(&p->local);
	memset(&p->res, 0, sizeof(p->res));
	if (p->shard == cs->n->self) {
		int rc = kvs__local_page(cs->n, cs->prefix, cs->prefix_len,
		                         cs->start, cs->start_len, cs->has_start,
		                         cs->limit, cs->values, &p->local,
		                         &p->res.n_recs, &p->more);

		if (rc != KVS_OK)
			return -1;
		p->res.recs = (const unsigned char *)p->local.data;
		p->res.recs_len = p->local.len;
		p->ok = 1;
		return 0;
	}
	ask = malloc(sizeof(*ask));
	if (ask == NULL)
		return -1;
	ask->cs = cs;
	ask->i = i;
	memset(&op, 0, sizeof(op));
	op.code = KVS__P_SCAN;
	op.flags = (cs->values ? KVS__PQ_VALUES : 0) |
	           (cs->has_start ? KVS__PQ_START : 0);
	op.limit = (uint32_t)cs->limit;
	op.key = cs->start;
	op.key_len = cs->start_len;
	op.value = cs->prefix;
	op.value_len = cs->prefix_len;
	kvs__op_hold(&cs->op);
	if (kvs__node_send(cs->n, p->shard, &op, page_arrived, ask) !=
	    KVS_OK) {
		kvs__op_release(&cs->op);
		free(ask);
		return -1;
	}
	return 1;
}

static void page_arrived(void *ud, kvs__panswer *a)
{
	struct pask *ask = ud;
	struct kvs__cscan *cs = ask->cs;
	struct page *p = &cs->pages[ask->i];
	size_t i = ask->i;

	free(ask);
	if (a->rc == KVS_OK && a->n == 1 && a->res[0].rc == KVS_OK) {
		p->answer = a;
		p->res = a->res[0];
		p->more = (a->res[0].flags & KVS__PA_MORE) != 0;
		p->ok = 1;
	} else {
		kvs__node_log(cs->n, KVS__LOG_WARN,
		              "scan: shard %s did not answer: %s",
		              kvs_config_shard(cs->n->cfg, p->shard)->name,
		              kvs_strerror(a->rc != KVS_OK ? a->rc
		                                            : a->res[0].rc));
		kvs__panswer_free(a);
		pthread_mutex_lock(&cs->mu);
		if (cs->next_spare == cs->n_spares) {
			cs->failed = 1;
			cs->failed_shard = p->shard;
			pthread_mutex_unlock(&cs->mu);
		} else {
			p->shard = cs->spares[cs->next_spare++];
			pthread_mutex_unlock(&cs->mu);
			get_page(cs, i);
		}
	}
	kvs__op_release(&cs->op);
}

/* Order the shards to ask: this node, peers believed up, the rest. */
static size_t choose_shards(struct kvs__cscan *cs, unsigned r)
{
	kvs__node *n = cs->n;
	size_t k = 0, want, nrep;
	size_t *order = cs->spares;

	for (int pass = 0; pass < 3; pass++)
		for (size_t i = 0; i < n->n_shards; i++) {
			int up = kvs__node_usable(n, i);

			if (kvs_config_shard(n->cfg, i)->weight <= 0.0)
				continue;
			if ((pass == 0 && i == n->self) ||
			    (pass == 1 && i != n->self && up) ||
			    (pass == 2 && i != n->self && !up))
				order[k++] = i;
		}
	nrep = n->cc->replication < k ? n->cc->replication : k;
	if (r > nrep)
		r = (unsigned)nrep;
	want = k - nrep + r;
	for (size_t i = 0; i < want; i++)
		cs->pages[i].shard = order[i];
	memmove(cs->spares, order + want, (k - want) * sizeof(*order));
	cs->n_spares = k - want;
	return want;
}

static unsigned char *dup_bytes(const void *data, size_t len)
{
	unsigned char *p = malloc(len ? len : 1);

	if (p != NULL && len > 0)
		memcpy(p, data, len);
	return p;
}

void kvs__node_scan(kvs__node *n, const kvs__scan_req *req,
                    kvs__scan_result *out, kvs__node_cb cb, void *ud)
{
	struct kvs__cscan *cs = calloc(1, sizeof(*cs));
	unsigned r = req->r != 0 ? req->r : n->cc->read_quorum;

	memset(out, 0, sizeof(*out));
	if (cs == NULL) {
		out->rc = KVS_ENOMEM;
		cb(ud);
		return;
	}
	kvs__op_init(&cs->op, cscan_done);
	pthread_mutex_init(&cs->mu, NULL);
	cs->n = n;
	cs->out = out;
	cs->cb = cb;
	cs->ud = ud;
	cs->limit = req->limit > 0 ? req->limit : 1;
	cs->values = req->values;
	cs->has_start = req->has_start;
	cs->prefix = dup_bytes(req->prefix, req->prefix_len);
	cs->prefix_len = req->prefix_len;
	cs->start = dup_bytes(req->start_after, req->start_len);
	cs->start_len = req->start_len;
	cs->pages = calloc(n->n_shards, sizeof(*cs->pages));
	cs->spares = calloc(n->n_shards, sizeof(*cs->spares));
	if (cs->prefix == NULL || cs->start == NULL || cs->pages == NULL ||
	    cs->spares == NULL) {
		cs->n_pages = 0;
		cscan_free(cs);
		out->rc = KVS_ENOMEM;
		cb(ud);
		return;
	}
	for (size_t i = 0; i < n->n_shards; i++)
		kvs__buf_init(&cs->pages[i].local, 0);
	cs->n_pages = choose_shards(cs, r);
	for (size_t i = 0; i < cs->n_pages; i++) {
		int failed;

		pthread_mutex_lock(&cs->mu);
		failed = cs->failed;
		pthread_mutex_unlock(&cs->mu);
		if (failed)
			break;
		get_page(cs, i);
	}
	kvs__op_release(&cs->op);
}

/* ------------------------------------------------------------------ */
/* Merging, on the caller's thread                                      */

static int key_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
	size_t n = alen < blen ? alen : blen;
	int c = n ? memcmp(a, b, n) : 0;

	return c != 0 ? c : (alen > blen) - (alen < blen);
}

struct cursor {
	kvs__precs it;
	kvs_record cur;
	int live; /* cur is valid */
};

static void advance(struct cursor *c)
{
	c->live = kvs__precs_next(&c->it, &c->cur);
}

int kvs__scan_result_merge(kvs__scan_result *res, kvs_record_cb emit,
                           void *ud, const void **next, size_t *next_len)
{
	struct kvs__cscan *cs = res->cs;
	struct cursor *cur;
	kvs_record cutoff, last;
	int have_cutoff = 0, have_last = 0, more = 0;
	size_t shown = 0;

	memset(&cutoff, 0, sizeof(cutoff));
	memset(&last, 0, sizeof(last));
	*next = NULL;
	*next_len = 0;
	if (cs == NULL)
		return KVS_OK;
	cur = calloc(cs->n_pages ? cs->n_pages : 1, sizeof(*cur));
	if (cur == NULL)
		return KVS_ENOMEM;
	/* The cut-off: the smallest last key of the shards that stopped
	 * early. */
	for (size_t i = 0; i < cs->n_pages; i++) {
		const struct page *p = &cs->pages[i];
		kvs_record r;

		kvs__precs_start(&cur[i].it, &p->res);
		advance(&cur[i]);
		if (!p->more || p->res.n_recs == 0)
			continue;
		{
			kvs__precs it;

			kvs__precs_start(&it, &p->res);
			while (kvs__precs_next(&it, &r))
				last = r;
		}
		if (!have_cutoff || key_cmp(last.key, last.key_len, cutoff.key,
		                            cutoff.key_len) < 0)
			cutoff = last;
		have_cutoff = 1;
	}
	for (;;) {
		const kvs_record *best = NULL;
		kvs_record key;

		/* The smallest key among the cursors, newest version of it. */
		for (size_t i = 0; i < cs->n_pages; i++) {
			int c;

			if (!cur[i].live)
				continue;
			c = best == NULL ? -1
			                 : key_cmp(cur[i].cur.key, cur[i].cur.key_len,
			                           best->key, best->key_len);
			if (c < 0 ||
			    (c == 0 && kvs_stamp_cmp(&cur[i].cur.stamp,
			                             &best->stamp) > 0))
				best = &cur[i].cur;
		}
		if (best == NULL)
			break;
		if (have_cutoff &&
		    key_cmp(best->key, best->key_len, cutoff.key,
		            cutoff.key_len) > 0)
			break;
		if (shown == cs->limit) {
			more = 1;
			break;
		}
		key = *best;
		last = key;
		have_last = 1;
		if (!(key.flags & KVS_RECORD_TOMBSTONE)) {
			emit(ud, &key);
			shown++;
		}
		/* Step past this key on every shard. */
		for (size_t i = 0; i < cs->n_pages; i++)
			while (cur[i].live &&
			       key_cmp(cur[i].cur.key, cur[i].cur.key_len, key.key,
			               key.key_len) == 0)
				advance(&cur[i]);
	}
	free(cur);
	/* Continue after the last key looked at: the page is full, or a
	 * shard stopped early and nothing past its last key is known. */
	if (!more && have_cutoff) {
		more = 1;
		last = cutoff;
		have_last = 1;
	}
	if (more && have_last) {
		*next = last.key;
		*next_len = last.key_len;
	}
	return KVS_OK;
}

void kvs__scan_result_clear(kvs__scan_result *res)
{
	if (res->cs != NULL)
		cscan_free(res->cs);
	memset(res, 0, sizeof(*res));
}
