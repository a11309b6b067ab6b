/*
 * node.c - one cluster member: routing, peer health, quorum reads with
 * read repair, replicated writes.
 *
 * Writes. Every write for a key is coordinated by its first owner that is
 * up (the primary, normally), so that conditional writes (compare-and-swap,
 * create-only) are decided in one place, atomically, by the primary's
 * store. An unconditional write takes a stamp from the store's clock
 * (which is past every version the store holds) and is applied on all N
 * owners at once, the coordinator's own store included, each applying it
 * only if newer than what it has; a conditional write is first executed in
 * the coordinator's store and the resulting record is then applied on the
 * others. The caller is answered after W owners have it durably; the other
 * replicas finish in the background. If too many replicas fail, the caller
 * gets KVS_EUNAVAIL while the replicas that did answer keep the write (as
 * in Dynamo: a failed quorum write may still become visible).
 *
 * Reads. A read coordinated by an owner reads its own store and R-1 other
 * owners (healthy ones first, replacing any that fail), answers with the
 * newest version seen (tombstones included, so a delete wins over the older
 * value it deleted), and then sends that version to every replica that
 * answered with an older one or none (read repair).
 *
 * Health. A connection failure or timeout marks a peer down for a back-off
 * period that doubles with each consecutive failure (up to a limit); any
 * HTTP answer marks it up again. Routing prefers peers that are up.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "node.h"
#include "store_internal.h"

#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 5000
#define URL_MAX 64
#define INTERNAL_KV "/internal/kv/"
#define STAMP_HEADER_LEN (sizeof(KVS_HDR_STAMP ": ") + KVS_STAMP_STRLEN)

struct peer {
	char url[URL_MAX + 16]; /* "http://host:port" */
	_Atomic uint64_t down_until_ms;
	_Atomic unsigned failures;
};

struct kvs__node {
	const kvs_config *cfg;
	const kvs_cluster_config *cc;
	size_t self;
	size_t n_peers;
	struct peer *peers;
	kvs_ring *ring;
	kvs_store *store;
	kvs__transport *transport;
	char *secret_header;
	kvs__node_counters counters;
};

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ------------------------------------------------------------------ */
/* Open, close, accessors                                               */

int kvs__node_open(kvs__node **out, const kvs_config *cfg, const char *shard,
                   const char *store_path, char *errbuf, size_t errlen)
{
	const kvs_cluster_config *cc = kvs_config_cluster(cfg);
	const kvs_shard_config *me = kvs_config_find_shard(cfg, shard);
	kvs_ring_member *members = NULL;
	kvs__transport_options topts;
	kvs_store_options sopts;
	kvs__node *n;
	int rc;

	*out = NULL;
	if (me == NULL) {
		snprintf(errbuf, errlen, "%s: no shard named \"%s\"", cc->path,
		         shard);
		return KVS_EINVAL;
	}
	n = calloc(1, sizeof(*n));
	if (n == NULL)
		return KVS_ENOMEM;
	n->cfg = cfg;
	n->cc = cc;
	n->self = (size_t)(me - kvs_config_shard(cfg, 0));
	n->n_peers = kvs_config_shard_count(cfg);
	n->peers = calloc(n->n_peers, sizeof(*n->peers));
	members = calloc(n->n_peers, sizeof(*members));
	rc = KVS_ENOMEM;
	if (n->peers == NULL || members == NULL)
		goto fail;
	for (size_t i = 0; i < n->n_peers; i++) {
		const kvs_shard_config *s = kvs_config_shard(cfg, i);
		int v6 = strchr(s->host, ':') != NULL;

		snprintf(n->peers[i].url, sizeof(n->peers[i].url),
		         v6 ? "http://[%s]:%u" : "http://%s:%u", s->host,
		         (unsigned)s->port);
		members[i].name = s->name;
		members[i].weight = s->weight;
	}
	rc = kvs_ring_new(&n->ring, members, n->n_peers, cc->vnodes);
	if (rc != KVS_OK) {
		snprintf(errbuf, errlen, "%s: cannot build the ring: %s",
		         cc->path, kvs_strerror(rc));
		goto fail;
	}
	if (cc->cluster_secret != NULL) {
		size_t len = strlen(KVS_HDR_SECRET) + strlen(cc->cluster_secret) + 3;

		n->secret_header = malloc(len);
		if (n->secret_header == NULL)
			goto fail;
		snprintf(n->secret_header, len, "%s: %s", KVS_HDR_SECRET,
		         cc->cluster_secret);
	}
	memset(&topts, 0, sizeof(topts));
	topts.connect_timeout_ms = cc->connect_timeout_ms;
	topts.request_timeout_ms = cc->request_timeout_ms;
	topts.extra_header = n->secret_header;
	rc = kvs__transport_new(&n->transport, &topts);
	if (rc != KVS_OK) {
		snprintf(errbuf, errlen, "cannot start the transport: %s",
		         kvs_strerror(rc));
		goto fail;
	}
	kvs_store_options_init(&sopts);
	if (cc->map_size != 0)
		sopts.map_size = cc->map_size;
	sopts.max_map_size = cc->max_map_size;
	sopts.sync = cc->sync;
	sopts.shard_id = me->idx;
	rc = kvs_store_open(&n->store, store_path, &sopts);
	if (rc != KVS_OK) {
		snprintf(errbuf, errlen, "%s: cannot open the store: %s",
		         store_path, kvs_strerror(rc));
		goto fail;
	}
	free(members);
	*out = n;
	return KVS_OK;
fail:
	free(members);
	kvs__node_close(n);
	return rc;
}

void kvs__node_close(kvs__node *n)
{
	if (n == NULL)
		return;
	/* Peers first: their callbacks may still write to the store. */
	kvs__transport_free(n->transport);
	kvs_store_close(n->store);
	kvs_ring_free(n->ring);
	free(n->secret_header);
	free(n->peers);
	free(n);
}

kvs_store *kvs__node_store(kvs__node *n)
{
	return n->store;
}

const kvs_config *kvs__node_config(const kvs__node *n)
{
	return n->cfg;
}

const kvs_ring *kvs__node_ring(const kvs__node *n)
{
	return n->ring;
}

kvs__transport *kvs__node_transport(kvs__node *n)
{
	return n->transport;
}

kvs__node_counters *kvs__node_counters_of(kvs__node *n)
{
	return &n->counters;
}

size_t kvs__node_self(const kvs__node *n)
{
	return n->self;
}

uint64_t kvs__node_epoch(const kvs__node *n)
{
	(void)n;
	return 1;
}

const char *kvs__node_base_url(const kvs__node *n, size_t i)
{
	return i < n->n_peers ? n->peers[i].url : NULL;
}

/* ------------------------------------------------------------------ */
/* Routing and health                                                   */

void kvs__node_route(const kvs__node *n, const void *key, size_t key_len,
                     kvs__route *r)
{
	r->n = kvs_ring_owners(n->ring, key, key_len, r->owners,
	                       n->cc->replication);
	r->self = -1;
	for (size_t i = 0; i < r->n; i++)
		if (r->owners[i] == n->self)
			r->self = (int)i;
}

int kvs__node_peer_up(kvs__node *n, size_t i)
{
	if (i == n->self)
		return 1;
	return mono_ms() >= atomic_load(&n->peers[i].down_until_ms);
}

size_t kvs__node_coordinator(kvs__node *n, const kvs__route *r)
{
	for (size_t i = 0; i < r->n; i++)
		if (kvs__node_peer_up(n, r->owners[i]))
			return r->owners[i];
	return r->owners[0];
}

void kvs__node_peer_result(kvs__node *n, size_t i, int rc)
{
	struct peer *p;

	if (i >= n->n_peers || i == n->self)
		return;
	p = &n->peers[i];
	if (rc == KVS_ECONNECT || rc == KVS_ETIMEDOUT) {
		unsigned f = atomic_fetch_add(&p->failures, 1) + 1;
		uint64_t backoff = BACKOFF_MIN_MS;

		while (--f > 0 && backoff < BACKOFF_MAX_MS)
			backoff *= 2;
		if (backoff > BACKOFF_MAX_MS)
			backoff = BACKOFF_MAX_MS;
		atomic_store(&p->down_until_ms, mono_ms() + backoff);
		atomic_fetch_add(&n->counters.peer_errors, 1);
	} else if (rc == KVS_OK) {
		if (atomic_load(&p->failures) != 0)
			atomic_store(&p->failures, 0);
		if (atomic_load(&p->down_until_ms) != 0)
			atomic_store(&p->down_until_ms, 0);
	} else {
		atomic_fetch_add(&n->counters.peer_errors, 1);
	}
}

/* A request in flight to a peer: the health bookkeeping around cb. */
struct sent {
	kvs__node *n;
	size_t peer;
	kvs__http_cb cb;
	void *ud;
};

static void sent_done(void *ud, kvs__http_response *resp)
{
	struct sent *s = ud;
	kvs__http_cb cb = s->cb;
	void *cb_ud = s->ud;

	kvs__node_peer_result(s->n, s->peer, resp->rc);
	free(s);
	cb(cb_ud, resp);
}

int kvs__node_send(kvs__node *n, size_t i, kvs__http_request *req,
                   kvs__http_cb cb, void *ud)
{
	struct sent *s = malloc(sizeof(*s));
	int rc;

	if (s == NULL)
		return KVS_ENOMEM;
	s->n = n;
	s->peer = i;
	s->cb = cb;
	s->ud = ud;
	rc = kvs__transport_submit(n->transport, req, sent_done, s);
	if (rc != KVS_OK)
		free(s);
	return rc;
}

int kvs__node_parse_record_headers(const kvs__http_response *resp,
                                   kvs_stamp *stamp, unsigned *flags)
{
	size_t len;
	const char *v = kvs__http_header(resp, KVS_HDR_STAMP, &len);

	if (v == NULL || kvs_stamp_parse(stamp, v, len) != KVS_OK)
		return KVS_EPROTO;
	v = kvs__http_header(resp, KVS_HDR_TOMBSTONE, &len);
	*flags = (v != NULL && len == 1 && v[0] == '1') ? KVS_RECORD_TOMBSTONE
	                                                 : 0;
	return KVS_OK;
}

/* Build "<base>/internal/kv/<escaped key>" into a new string. */
static char *internal_url(kvs__node *n, size_t peer, const char *key_esc)
{
	size_t len = strlen(n->peers[peer].url) + sizeof(INTERNAL_KV) +
	             strlen(key_esc);
	char *url = malloc(len);

	if (url != NULL)
		snprintf(url, len, "%s%s%s", n->peers[peer].url, INTERNAL_KV,
		         key_esc);
	return url;
}

/*
 * Send rec to peer as PUT /internal/kv/{key}. value must stay valid until
 * cb. Returns KVS_OK or an error (cb not called).
 */
static int send_apply(kvs__node *n, size_t peer, const char *key_esc,
                      const kvs_record *rec, kvs__http_cb cb, void *ud)
{
	char stamp[STAMP_HEADER_LEN], tomb[sizeof(KVS_HDR_TOMBSTONE) + 4];
	char st[KVS_STAMP_STRLEN];
	kvs__http_request req;
	int rc;

	memset(&req, 0, sizeof(req));
	kvs_stamp_format(&rec->stamp, st);
	snprintf(stamp, sizeof(stamp), "%s: %s", KVS_HDR_STAMP, st);
	snprintf(tomb, sizeof(tomb), "%s: %d", KVS_HDR_TOMBSTONE,
	         (rec->flags & KVS_RECORD_TOMBSTONE) ? 1 : 0);
	req.method = "PUT";
	req.url = internal_url(n, peer, key_esc);
	if (req.url == NULL)
		return KVS_ENOMEM;
	req.headers[0] = stamp;
	req.headers[1] = tomb;
	req.headers[2] = "Content-Type: application/octet-stream";
	req.n_headers = 3;
	req.body = rec->value_len > 0 ? rec->value : "";
	req.body_len = rec->value_len;
	rc = kvs__node_send(n, peer, &req, cb, ud);
	free((char *)req.url);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Read repair: fire and forget, with a private copy of the record.     */

struct repair {
	kvs_record rec;
	char *key_esc;
	unsigned char data[]; /* key, then value */
};

static struct repair *repair_new(const kvs_record *best, const char *key_esc)
{
	struct repair *r = malloc(sizeof(*r) + best->key_len + best->value_len);

	if (r == NULL)
		return NULL;
	r->key_esc = strdup(key_esc);
	if (r->key_esc == NULL) {
		free(r);
		return NULL;
	}
	r->rec = *best;
	memcpy(r->data, best->key, best->key_len);
	if (best->value_len > 0)
		memcpy(r->data + best->key_len, best->value, best->value_len);
	r->rec.key = r->data;
	r->rec.value = r->data + best->key_len;
	return r;
}

static void repair_free(struct repair *r)
{
	free(r->key_esc);
	free(r);
}

static void repair_sent(void *ud, kvs__http_response *resp)
{
	repair_free(ud);
	kvs__http_response_clear(resp);
}

static void repair_applied(void *ud, int rc, const kvs_stamp *stamp,
                           int applied)
{
	(void)rc;
	(void)stamp;
	(void)applied;
	repair_free(ud);
}

static void repair(kvs__node *n, size_t peer, const kvs_record *best,
                   const char *key_esc)
{
	struct repair *r = repair_new(best, key_esc);

	if (r == NULL)
		return;
	atomic_fetch_add(&n->counters.read_repairs, 1);
	if (peer == n->self) {
		if (kvs_store_apply_async(n->store, &r->rec, repair_applied, r) !=
		    KVS_OK)
			repair_free(r);
	} else if (send_apply(n, peer, r->key_esc, &r->rec, repair_sent, r) !=
	           KVS_OK) {
		repair_free(r);
	}
}

/* ------------------------------------------------------------------ */
/* Quorum reads                                                         */

struct qread {
	kvs__node *n;
	pthread_mutex_t mu;
	kvs__route route;
	void *key;
	size_t key_len;
	char *key_esc;
	unsigned need;
	unsigned got;
	unsigned pending;
	size_t n_cand;
	size_t next_cand;
	size_t cand[KVS_RING_MAX_OWNERS];
	int done;
	int have; /* a record (live or tombstone) was seen */
	kvs_stamp best;
	unsigned best_flags;
	void *best_value;
	size_t best_len;
	/* Who answered what, for read repair. */
	size_t n_seen;
	struct {
		size_t peer;
		int have;
		kvs_stamp stamp;
	} seen[KVS_RING_MAX_OWNERS];
	kvs__node_read_cb cb;
	void *ud;
};

static void qread_free(struct qread *q)
{
	pthread_mutex_destroy(&q->mu);
	free(q->key);
	free(q->key_esc);
	free(q->best_value);
	free(q);
}

/* Take one replica's answer (the caller holds q->mu). value is copied if
 * it is the newest so far. Returns KVS_OK or KVS_ENOMEM. */
static int qread_consider(struct qread *q, size_t peer, int have,
                          const kvs_stamp *stamp, unsigned flags,
                          const void *value, size_t len)
{
	q->seen[q->n_seen].peer = peer;
	q->seen[q->n_seen].have = have;
	if (have)
		q->seen[q->n_seen].stamp = *stamp;
	q->n_seen++;
	q->got++;
	if (!have || (q->have && kvs_stamp_cmp(stamp, &q->best) <= 0))
		return KVS_OK;
	free(q->best_value);
	q->best_value = NULL;
	if (len > 0) {
		q->best_value = malloc(len);
		if (q->best_value == NULL)
			return KVS_ENOMEM;
		memcpy(q->best_value, value, len);
	}
	q->best_len = len;
	q->best = *stamp;
	q->best_flags = flags;
	q->have = 1;
	return KVS_OK;
}

static void qread_finish(struct qread *q, int rc)
{
	kvs_record rec;

	memset(&rec, 0, sizeof(rec));
	rec.key = q->key;
	rec.key_len = q->key_len;
	if (rc == KVS_OK && q->have) {
		rec.value = q->best_value;
		rec.value_len = q->best_len;
		rec.stamp = q->best;
		rec.flags = q->best_flags;
		if (q->best_flags & KVS_RECORD_TOMBSTONE)
			rc = KVS_NOTFOUND;
	} else if (rc == KVS_OK) {
		rc = KVS_NOTFOUND;
	}
	if (rc == KVS_EUNAVAIL)
		atomic_fetch_add(&q->n->counters.quorum_failures, 1);
	q->cb(q->ud, rc, &rec);
	if (q->have && rc != KVS_EUNAVAIL) {
		rec.value = q->best_value;
		rec.value_len = q->best_len;
		rec.stamp = q->best;
		rec.flags = q->best_flags;
		for (size_t i = 0; i < q->n_seen; i++)
			if (!q->seen[i].have ||
			    kvs_stamp_cmp(&q->seen[i].stamp, &q->best) < 0)
				repair(q->n, q->seen[i].peer, &rec, q->key_esc);
	}
}

/*
 * Answer the caller and repair stale replicas, then drop the hold the
 * finishing thread took on q (answers still in flight may hold it too: the
 * last one frees it).
 */
static void qread_release(struct qread *q, int rc)
{
	int free_it;

	qread_finish(q, rc);
	pthread_mutex_lock(&q->mu);
	free_it = --q->pending == 0;
	pthread_mutex_unlock(&q->mu);
	if (free_it)
		qread_free(q);
}

/* One replica asked: which one, for which read. */
struct qread_ask {
	struct qread *q;
	size_t peer;
};

static void qread_answer(void *ud, kvs__http_response *resp);

/* Ask the next candidate replica (the caller holds q->mu). */
static int qread_launch(struct qread *q)
{
	while (q->next_cand < q->n_cand) {
		size_t peer = q->cand[q->next_cand++];
		struct qread_ask *ask = malloc(sizeof(*ask));
		kvs__http_request req;
		char *url = internal_url(q->n, peer, q->key_esc);
		int rc;

		if (url == NULL || ask == NULL) {
			free(url);
			free(ask);
			return KVS_ENOMEM;
		}
		ask->q = q;
		ask->peer = peer;
		memset(&req, 0, sizeof(req));
		req.method = "GET";
		req.url = url;
		q->pending++;
		atomic_fetch_add(&q->n->counters.replica_reads, 1);
		rc = kvs__node_send(q->n, peer, &req, qread_answer, ask);
		free(url);
		if (rc == KVS_OK)
			return KVS_OK;
		free(ask);
		q->pending--;
	}
	return KVS_EUNAVAIL;
}

static void qread_answer(void *ud, kvs__http_response *resp)
{
	struct qread_ask *ask = ud;
	struct qread *q = ask->q;
	size_t peer = ask->peer;
	int finish_rc = 1, free_it;
	kvs_stamp stamp;
	unsigned flags;

	free(ask);
	pthread_mutex_lock(&q->mu);
	q->pending--;
	if (!q->done) {
		if (resp->rc == KVS_OK && resp->status == 404) {
			qread_consider(q, peer, 0, NULL, 0, NULL, 0);
		} else if (resp->rc == KVS_OK && resp->status == 200 &&
		           kvs__node_parse_record_headers(resp, &stamp, &flags) ==
		                   KVS_OK) {
			if (qread_consider(q, peer, 1, &stamp, flags, resp->body,
			                   resp->body_len) != KVS_OK)
				finish_rc = KVS_ENOMEM;
		} else if (qread_launch(q) != KVS_OK && q->pending == 0) {
			finish_rc = KVS_EUNAVAIL;
		}
		if (finish_rc == 1 && q->got >= q->need)
			finish_rc = KVS_OK;
		if (finish_rc != 1) {
			q->done = 1;
			q->pending++; /* held by this thread while finishing */
		}
	}
	free_it = q->done && q->pending == 0;
	pthread_mutex_unlock(&q->mu);
	kvs__http_response_clear(resp);
	if (finish_rc != 1)
		qread_release(q, finish_rc);
	else if (free_it)
		qread_free(q);
}

struct local_copy {
	struct qread *q;
	int rc;
};

static int qread_local(void *ud, const kvs_record *rec)
{
	struct local_copy *lc = ud;

	lc->rc = qread_consider(lc->q, lc->q->n->self, 1, &rec->stamp,
	                        rec->flags, rec->value, rec->value_len);
	return 0;
}

int kvs__node_read(kvs__node *n, const void *key, size_t key_len,
                   const kvs__route *r, kvs__node_read_cb cb, void *ud)
{
	struct qread *q;
	struct local_copy lc;
	int rc, finish_rc = 1, free_it;

	if (r->self < 0 || cb == NULL)
		return KVS_EINVAL;
	q = calloc(1, sizeof(*q));
	if (q == NULL)
		return KVS_ENOMEM;
	pthread_mutex_init(&q->mu, NULL);
	q->n = n;
	q->route = *r;
	q->cb = cb;
	q->ud = ud;
	q->need = n->cc->read_quorum < r->n ? n->cc->read_quorum : (unsigned)r->n;
	q->key = malloc(key_len ? key_len : 1);
	q->key_esc = kvs__url_escape(key, key_len);
	if (q->key == NULL || q->key_esc == NULL) {
		qread_free(q);
		return KVS_ENOMEM;
	}
	memcpy(q->key, key, key_len);
	q->key_len = key_len;
	/* Candidates: other owners, those believed up first. */
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < r->n; i++) {
			size_t p = r->owners[i];

			if (p != n->self && kvs__node_peer_up(n, p) == !pass)
				q->cand[q->n_cand++] = p;
		}

	lc.q = q;
	lc.rc = KVS_OK;
	pthread_mutex_lock(&q->mu);
	rc = kvs_store_read(n->store, key, key_len, KVS_READ_TOMBSTONES,
	                    qread_local, &lc);
	if (rc == KVS_NOTFOUND)
		rc = qread_consider(q, n->self, 0, NULL, 0, NULL, 0);
	else if (rc == KVS_OK)
		rc = lc.rc;
	if (rc != KVS_OK) {
		pthread_mutex_unlock(&q->mu);
		qread_free(q);
		return rc;
	}
	while (q->got + q->pending < q->need && qread_launch(q) == KVS_OK)
		;
	if (q->got >= q->need)
		finish_rc = KVS_OK;
	else if (q->pending == 0)
		finish_rc = KVS_EUNAVAIL;
	if (finish_rc != 1) {
		q->done = 1;
		q->pending++; /* held by this thread while finishing */
	}
	free_it = q->done && q->pending == 0;
	pthread_mutex_unlock(&q->mu);
	if (finish_rc != 1)
		qread_release(q, finish_rc);
	else if (free_it)
		qread_free(q);
	return KVS_OK;
}

/* ------------------------------------------------------------------ */
/* Replicated writes                                                    */

struct qwrite {
	kvs__node *n;
	pthread_mutex_t mu;
	kvs__route route;
	kvs_record rec; /* key/value point into data or the caller's buffers */
	char *key_esc;
	unsigned need;
	unsigned acks;
	unsigned fails;
	unsigned pending;
	int done;
	int local_rc;
	kvs__node_write_cb cb;
	void *ud;
	unsigned char *copy; /* key and value, when replicas need them */
};

static void qwrite_free(struct qwrite *q)
{
	pthread_mutex_destroy(&q->mu);
	free(q->key_esc);
	free(q->copy);
	free(q);
}

/*
 * Count one owner's outcome; answer the caller once decided: KVS_OK at W
 * acknowledgements, or, once W can no longer be reached, the local store's
 * error if it failed (disk full...), else KVS_EUNAVAIL.
 */
static void qwrite_count(struct qwrite *q, int ok)
{
	int answer = 0, free_it, rc = KVS_OK;
	unsigned acks;

	pthread_mutex_lock(&q->mu);
	q->pending--;
	if (ok)
		q->acks++;
	else
		q->fails++;
	if (!q->done && q->acks >= q->need) {
		q->done = answer = 1;
	} else if (!q->done && q->fails > q->route.n - q->need) {
		q->done = answer = 1;
		rc = q->local_rc != KVS_OK ? q->local_rc : KVS_EUNAVAIL;
	}
	acks = q->acks;
	/* The thread that answers holds q until the callback returns: a
	 * replica finishing meanwhile must not free it. */
	if (answer)
		q->pending++;
	free_it = q->done && q->pending == 0;
	pthread_mutex_unlock(&q->mu);
	if (answer) {
		if (rc == KVS_EUNAVAIL)
			atomic_fetch_add(&q->n->counters.quorum_failures, 1);
		q->cb(q->ud, rc, &q->rec.stamp, acks);
		pthread_mutex_lock(&q->mu);
		free_it = --q->pending == 0;
		pthread_mutex_unlock(&q->mu);
	}
	if (free_it)
		qwrite_free(q);
}

static void qwrite_replica_done(void *ud, kvs__http_response *resp)
{
	struct qwrite *q = ud;
	int ok = resp->rc == KVS_OK && resp->status == 200;

	kvs__http_response_clear(resp);
	qwrite_count(q, ok);
}

static void qwrite_local_done(void *ud, int rc, const kvs_stamp *stamp,
                              int applied)
{
	struct qwrite *q = ud;

	(void)stamp;
	(void)applied;
	q->local_rc = rc;
	qwrite_count(q, rc == KVS_OK);
}

/* Send the record to every owner but this node. */
static void qwrite_replicate(struct qwrite *q)
{
	for (size_t i = 0; i < q->route.n; i++) {
		size_t peer = q->route.owners[i];

		if (peer == q->n->self)
			continue;
		atomic_fetch_add(&q->n->counters.replica_writes, 1);
		if (send_apply(q->n, peer, q->key_esc, &q->rec,
		               qwrite_replica_done, q) != KVS_OK)
			qwrite_count(q, 0);
	}
}

/* A conditional write executed locally: now replicate its result. */
static void qwrite_cond_done(void *ud, int rc, const kvs_stamp *stamp,
                             int applied)
{
	struct qwrite *q = ud;

	(void)applied;
	if (rc == KVS_NOTFOUND && (q->rec.flags & KVS_RECORD_TOMBSTONE))
		rc = KVS_OK; /* a delete of nothing still writes a tombstone */
	if (rc != KVS_OK) {
		/* The condition failed (or the store did): nothing to
		 * replicate. Answer with the store's verdict. */
		q->cb(q->ud, rc, stamp, 0);
		qwrite_free(q);
		return;
	}
	q->rec.stamp = *stamp;
	q->local_rc = KVS_OK;
	/* Replicas first: while the local write is uncounted, pending
	 * cannot reach 0 and q stays alive. */
	pthread_mutex_lock(&q->mu);
	q->pending = (unsigned)q->route.n; /* local + replicas */
	pthread_mutex_unlock(&q->mu);
	qwrite_replicate(q);
	qwrite_count(q, 1);
}

int kvs__node_write(kvs__node *n, const void *key, size_t key_len,
                    const void *value, size_t value_len, int is_delete,
                    const kvs_write_options *opts, const kvs__route *r,
                    kvs__node_write_cb cb, void *ud)
{
	struct qwrite *q;
	int conditional = opts != NULL && opts->flags != 0;
	int rc;

	if (r->self < 0 || cb == NULL)
		return KVS_EINVAL;
	q = calloc(1, sizeof(*q));
	if (q == NULL)
		return KVS_ENOMEM;
	pthread_mutex_init(&q->mu, NULL);
	q->n = n;
	q->route = *r;
	q->cb = cb;
	q->ud = ud;
	q->need = n->cc->write_quorum < r->n ? n->cc->write_quorum
	                                     : (unsigned)r->n;
	q->rec.key = key;
	q->rec.key_len = key_len;
	q->rec.value = is_delete ? NULL : value;
	q->rec.value_len = is_delete ? 0 : value_len;
	q->rec.flags = is_delete ? KVS_RECORD_TOMBSTONE : 0;
	if (r->n > 1) {
		/* Replicas may still be sending after the caller is
		 * answered and has freed its buffers: keep a copy. */
		q->copy = malloc(key_len + q->rec.value_len + 1);
		q->key_esc = kvs__url_escape(key, key_len);
		if (q->copy == NULL || q->key_esc == NULL) {
			qwrite_free(q);
			return KVS_ENOMEM;
		}
		memcpy(q->copy, key, key_len);
		if (q->rec.value_len > 0)
			memcpy(q->copy + key_len, value, q->rec.value_len);
		q->rec.key = q->copy;
		q->rec.value = q->copy + key_len;
	}

	if (conditional) {
		if (is_delete)
			rc = kvs_store_delete_async(n->store, q->rec.key, key_len,
			                            opts, qwrite_cond_done, q);
		else
			rc = kvs_store_put_async(n->store, q->rec.key, key_len,
			                         q->rec.value, q->rec.value_len,
			                         opts, qwrite_cond_done, q);
		if (rc != KVS_OK)
			qwrite_free(q);
		return rc;
	}

	q->rec.stamp.hlc = kvs__store_clock_now(n->store);
	q->rec.stamp.shard = kvs_config_shard(n->cfg, n->self)->idx;
	q->pending = (unsigned)r->n;
	/* Replicas first, as in qwrite_cond_done. */
	qwrite_replicate(q);
	rc = kvs_store_apply_async(n->store, &q->rec, qwrite_local_done, q);
	if (rc != KVS_OK) {
		q->local_rc = rc;
		qwrite_count(q, 0);
	}
	return KVS_OK;
}
