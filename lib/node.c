/*
 * node.c - one cluster member: open and close, routing, peer health and
 * probing, sending to peers, and writes to this node's own store. The
 * operations that use them are in ops.c (dispatch), quorum.c, proxy.c,
 * cscan.c and serve.c.
 *
 * Health. Each peer's health (health.c) is fed by every message sent to
 * it and by probes: a ping (a peer frame of no operations) to each peer
 * every second while it is up, and at its back-off (at most every 2 s)
 * while it is down, so that a dead peer shows as down within about 2 s
 * even when no request goes its way, and a peer that comes back is seen
 * as soon as it answers or sends us anything. Routing prefers peers that
 * are up.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node_internal.h"
#include "util.h"

void kvs__node_options_init(kvs__node_options *o)
{
	memset(o, 0, sizeof(*o));
}

static uint64_t real_now_ms(void *ud)
{
	(void)ud;
	return kvs__mono_ms();
}

uint64_t kvs__node_now(kvs__node *n)
{
	return n->o.now_ms(n->o.now_ud);
}

void kvs__node_log(kvs__node *n, int level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (n->o.log == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	n->o.log(n->o.log_ud, level, msg);
}

/* ------------------------------------------------------------------ */
/* Routing and health                                                   */

void kvs__node_route(const kvs__node *n, const void *key, size_t len,
                     kvs__route *r)
{
	r->n = kvs_ring_owners(n->ring, key, len, r->owners,
	                       n->cc->replication);
	r->self = -1;
	for (size_t i = 0; i < r->n; i++)
		if (r->owners[i] == n->self)
			r->self = (int)i;
}

int kvs__node_usable(kvs__node *n, size_t i)
{
	/* Probes bring a down peer back as soon as it answers: unlike the
	 * client, the node never needs to send a request to find out. */
	return i == n->self || kvs__health_up(&n->peers[i].health);
}

size_t kvs__node_coordinator(kvs__node *n, const kvs__route *r,
                             const kvs__kv_req *req)
{
	if (req->cond.flags != 0)
		return r->owners[0];
	for (size_t i = 0; i < r->n; i++)
		if (kvs__node_usable(n, r->owners[i]))
			return r->owners[i];
	return r->owners[0];
}

int kvs__node_shard_status(kvs__node *n, size_t i)
{
	if (i >= n->n_shards)
		return 0;
	return i == n->self || kvs__health_up(&n->peers[i].health);
}

size_t kvs__node_position(const kvs__node *n, uint32_t idx)
{
	for (size_t i = 0; i < n->n_shards; i++)
		if (kvs_config_shard(n->cfg, i)->idx == idx)
			return i;
	return n->n_shards;
}

/* Note the outcome of a message to peer i; log changes of state. */
static void note_health(kvs__node *n, size_t i, int rc)
{
	const kvs_shard_config *s = kvs_config_shard(n->cfg, i);
	int change = kvs__health_note(&n->peers[i].health, rc, kvs__node_now(n));

	if (change < 0)
		kvs__node_log(n, KVS__LOG_WARN, "shard %s (%s) is down: %s",
		              s->name, s->address, kvs_strerror(rc));
	else if (change > 0)
		kvs__node_log(n, KVS__LOG_INFO, "shard %s (%s) is up again",
		              s->name, s->address);
}

void kvs__node_heard_from(kvs__node *n, uint32_t idx)
{
	size_t i = kvs__node_position(n, idx);

	if (i < n->n_shards && i != n->self)
		note_health(n, i, KVS_OK);
}

/* ------------------------------------------------------------------ */
/* Answer times, for speculative retry                                  */

static void lat_note(struct kvs__latency *l, uint64_t ms)
{
	unsigned b = 0;

	while (b + 1 < KVS__LAT_BUCKETS && ms >= (1ull << b))
		b++;
	atomic_fetch_add_explicit(&l->buckets[b], 1, memory_order_relaxed);
}

/* The delay from the histogram: the upper bound of the bucket holding the
 * 99th percentile, within the configured bounds; then halve the counts. */
static void lat_update(kvs__node *n, struct kvs__latency *l)
{
	uint32_t c[KVS__LAT_BUCKETS];
	uint64_t total = 0, seen = 0, p99 = 0;
	unsigned lo = n->cc->speculative_retry_min_ms;
	unsigned hi = n->cc->speculative_retry_max_ms;

	for (unsigned b = 0; b < KVS__LAT_BUCKETS; b++)
		total += c[b] = atomic_load(&l->buckets[b]);
	if (total < KVS__LAT_MIN_SAMPLES)
		return;
	for (unsigned b = 0; b < KVS__LAT_BUCKETS; b++) {
		seen += c[b];
		if (seen * 100 >= total * 99) {
			p99 = b + 1 < KVS__LAT_BUCKETS ? 1ull << b : hi;
			break;
		}
	}
	atomic_store(&l->delay_ms,
	             (unsigned)(p99 < lo ? lo : p99 > hi ? hi : p99));
	for (unsigned b = 0; b < KVS__LAT_BUCKETS; b++)
		atomic_fetch_sub(&l->buckets[b], c[b] - c[b] / 2);
}

unsigned kvs__node_speculative_ms(kvs__node *n, int kind)
{
	if (n->cc->speculative_retry_max_ms == 0)
		return 0;
	return atomic_load_explicit(&n->lat[kind].delay_ms,
	                            memory_order_relaxed);
}

int kvs__node_timer(kvs__node *n, unsigned ms, kvs__peer_timer_cb cb,
                    void *ud)
{
	int rc;

	pthread_rwlock_rdlock(&n->send_lock);
	rc = n->closing              ? KVS_ECLOSED
	     : n->ops->timer == NULL ? KVS_ENOTSUP
	                             : n->ops->timer(n->impl, ms, cb, ud);
	pthread_rwlock_unlock(&n->send_lock);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Messages                                                             */

struct sent {
	kvs__node *n;
	size_t peer;
	int kind; /* KVS__LAT_* */
	uint64_t start_ms;
	kvs__peer_cb cb;
	void *ud;
};

static void sent_done(void *ud, kvs__panswer *a)
{
	struct sent *s = ud;
	kvs__peer_cb cb = s->cb;
	void *cb_ud = s->ud;

	if (a->rc == KVS_OK)
		lat_note(&s->n->lat[s->kind], kvs__node_now(s->n) - s->start_ms);
	else if (a->rc != KVS_ECLOSED)
		atomic_fetch_add(&s->n->counters.peer_errors, 1);
	note_health(s->n, s->peer, a->rc);
	atomic_fetch_sub(&s->n->peers[s->peer].in_flight, 1);
	free(s);
	cb(cb_ud, a);
}

int kvs__node_send(kvs__node *n, size_t peer, const kvs__preq *ops,
                   size_t count, unsigned timeout_ms, kvs__peer_cb cb,
                   void *ud)
{
	struct kvs__peer_state *p;
	struct sent *s;
	int rc;

	if (peer >= n->n_shards || peer == n->self)
		return KVS_EINVAL;
	p = &n->peers[peer];
	if (!kvs__health_up(&p->health) &&
	    atomic_load(&p->in_flight) >= KVS__DOWN_IN_FLIGHT_MAX)
		return KVS_ECONNECT;
	s = malloc(sizeof(*s));
	if (s == NULL)
		return KVS_ENOMEM;
	s->n = n;
	s->peer = peer;
	s->kind = ops[0].code == KVS__P_GET || ops[0].code == KVS__P_PUT ||
	                          ops[0].code == KVS__P_DELETE
	                  ? KVS__LAT_FORWARD
	                  : KVS__LAT_REPLICA;
	s->start_ms = kvs__node_now(n);
	s->cb = cb;
	s->ud = ud;
	atomic_fetch_add(&p->in_flight, 1);
	pthread_rwlock_rdlock(&n->send_lock);
	rc = n->closing ? KVS_ECLOSED
	                : n->ops->send(n->impl, peer, ops, count, timeout_ms,
	                               sent_done, s);
	pthread_rwlock_unlock(&n->send_lock);
	if (rc != KVS_OK) {
		atomic_fetch_sub(&p->in_flight, 1);
		free(s);
	}
	return rc;
}

/* ------------------------------------------------------------------ */
/* Probing                                                              */

/* The next probe of a peer: a second after an answer, after its back-off
 * (at most KVS__PROBE_DOWN_MAX_MS) after a failure. */
static uint64_t probe_wait(const struct kvs__peer_state *p)
{
	uint64_t wait;

	if (kvs__health_up(&p->health))
		return KVS__PROBE_INTERVAL_MS;
	wait = kvs__health_backoff_ms(&p->health);
	return wait < KVS__PROBE_DOWN_MAX_MS ? wait : KVS__PROBE_DOWN_MAX_MS;
}

static void probed(void *ud, int rc)
{
	struct kvs__peer_state *p = ud;

	note_health(p->n, p->i, rc);
	atomic_store(&p->next_probe_ms, kvs__node_now(p->n) + probe_wait(p));
	atomic_store(&p->probing, 0);
}

void kvs__node_tick(kvs__node *n)
{
	uint64_t now = kvs__node_now(n);

	for (int k = 0; k < KVS__LAT_KINDS; k++)
		lat_update(n, &n->lat[k]);
	for (size_t i = 0; i < n->n_shards; i++) {
		struct kvs__peer_state *p = &n->peers[i];
		int rc;

		if (i == n->self || now < atomic_load(&p->next_probe_ms) ||
		    atomic_load(&p->probing))
			continue;
		atomic_store(&p->probing, 1);
		pthread_rwlock_rdlock(&n->send_lock);
		rc = n->closing ? KVS_ECLOSED
		                : n->ops->probe(n->impl, i, probed, p);
		pthread_rwlock_unlock(&n->send_lock);
		if (rc == KVS_OK)
			atomic_fetch_add(&n->counters.probes, 1);
		else
			atomic_store(&p->probing, 0);
	}
}

static void *prober_main(void *arg)
{
	kvs__node *n = arg;

	pthread_mutex_lock(&n->prober_mu);
	while (!n->prober_stop) {
		struct timespec until;

		pthread_mutex_unlock(&n->prober_mu);
		kvs__node_tick(n);
		pthread_mutex_lock(&n->prober_mu);
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += (long)KVS__PROBE_TICK_MS * 1000000L;
		until.tv_sec += until.tv_nsec / 1000000000L;
		until.tv_nsec %= 1000000000L;
		if (!n->prober_stop)
			pthread_cond_timedwait(&n->prober_cv, &n->prober_mu,
			                       &until);
	}
	pthread_mutex_unlock(&n->prober_mu);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* This node's own store                                                */

int kvs__node_local_apply(kvs__node *n, const kvs_record *rec,
                          kvs_write_cb cb, void *ud)
{
	int applied = 0, rc;

	if (!n->o.inline_local_writes)
		return kvs_store_apply_async(n->store, rec, cb, ud);
	rc = kvs_store_apply(n->store, rec, &applied);
	if (rc == KVS_EKEYSIZE || rc == KVS_EVALSIZE || rc == KVS_EINVAL ||
	    rc == KVS_ECLOSED)
		return rc; /* as the asynchronous call would refuse it */
	cb(ud, rc, &rec->stamp, applied);
	return KVS_OK;
}

int kvs__node_local_write(kvs__node *n, int is_delete, const void *key,
                          size_t key_len, const void *value, size_t value_len,
                          const kvs__cond *cond, kvs_write_cb cb, void *ud)
{
	static const kvs_stamp none = {0, 0};
	kvs_stamp stamp = none;
	int rc;

	if (!n->o.inline_local_writes)
		return kvs__store_write_async(n->store, is_delete, key, key_len,
		                              value, value_len, cond, cb, ud);
	rc = kvs__store_write(n->store, is_delete, key, key_len, value,
	                      value_len, cond, &stamp);
	if (rc == KVS_EKEYSIZE || rc == KVS_EVALSIZE || rc == KVS_EINVAL ||
	    rc == KVS_ECLOSED)
		return rc;
	cb(ud, rc, &stamp, rc == KVS_OK || rc == KVS_NOTFOUND);
	return KVS_OK;
}

/* ------------------------------------------------------------------ */
/* Open, close, figures                                                 */

void kvs__node_stats_get(kvs__node *n, kvs__node_stats *st)
{
	st->forwarded = atomic_load(&n->counters.forwarded);
	st->replica_writes = atomic_load(&n->counters.replica_writes);
	st->replica_reads = atomic_load(&n->counters.replica_reads);
	st->read_repairs = atomic_load(&n->counters.read_repairs);
	st->peer_errors = atomic_load(&n->counters.peer_errors);
	st->quorum_failures = atomic_load(&n->counters.quorum_failures);
	st->probes = atomic_load(&n->counters.probes);
	st->speculative = atomic_load(&n->counters.speculative);
}

uint64_t kvs__node_epoch(const kvs__node *n)
{
	(void)n;
	return 1;
}

kvs_store *kvs__node_store(kvs__node *n)
{
	return n->store;
}

/* "http://host:port" of shard s, malloc'ed. */
static char *base_url(const kvs_shard_config *s)
{
	int v6 = strchr(s->host, ':') != NULL;
	size_t len = strlen(s->host) + 32;
	char *u = malloc(len);

	if (u != NULL)
		snprintf(u, len, v6 ? "http://[%s]:%u" : "http://%s:%u", s->host,
		         (unsigned)s->port);
	return u;
}

static int start_http_peers(kvs__node *n, char *errbuf, size_t errlen)
{
	kvs__peer_http_options po;
	char **urls = calloc(n->n_shards, sizeof(*urls));
	int rc = KVS_ENOMEM;

	if (urls == NULL)
		return KVS_ENOMEM;
	for (size_t i = 0; i < n->n_shards; i++) {
		urls[i] = base_url(kvs_config_shard(n->cfg, i));
		if (urls[i] == NULL)
			goto out;
	}
	memset(&po, 0, sizeof(po));
	po.self_idx = n->self_idx;
	po.urls = (const char *const *)urls;
	po.n_urls = n->n_shards;
	po.secret = n->cc->cluster_secret;
	po.connect_timeout_ms = n->cc->connect_timeout_ms;
	po.request_timeout_ms = n->cc->request_timeout_ms;
	po.probe_timeout_ms = n->cc->request_timeout_ms < KVS__PROBE_TIMEOUT_MS
	                              ? n->cc->request_timeout_ms
	                              : KVS__PROBE_TIMEOUT_MS;
	rc = kvs__peer_http_new(&n->impl, &po);
	if (rc == KVS_OK)
		n->ops = &kvs__peer_http_ops;
	else
		snprintf(errbuf, errlen, "cannot start the peer transport: %s",
		         kvs_strerror(rc));
out:
	for (size_t i = 0; i < n->n_shards; i++)
		free(urls[i]);
	free(urls);
	return rc;
}

int kvs__node_open(kvs__node **out, const kvs_config *cfg, const char *shard,
                   const char *store_path, const kvs__node_options *opts,
                   char *errbuf, size_t errlen)
{
	const kvs_cluster_config *cc = kvs_config_cluster(cfg);
	const kvs_shard_config *me = kvs_config_find_shard(cfg, shard);
	kvs_ring_member *members = NULL;
	kvs_store_options sopts;
	kvs__node *n;
	int rc;

	*out = NULL;
	n = me != NULL ? calloc(1, sizeof(*n)) : NULL;
	if (n == NULL) {
		/* The node takes the peer implementation in every case. */
		if (opts != NULL && opts->peer_ops != NULL)
			opts->peer_ops->free(opts->peer_impl);
		if (me != NULL)
			return KVS_ENOMEM;
		snprintf(errbuf, errlen, "%s: no shard named \"%s\"", cc->path,
		         shard);
		return KVS_EINVAL;
	}
	if (opts != NULL)
		n->o = *opts;
	if (n->o.now_ms == NULL)
		n->o.now_ms = real_now_ms;
	n->cfg = cfg;
	n->cc = cc;
	n->self = (size_t)(me - kvs_config_shard(cfg, 0));
	n->self_idx = me->idx;
	n->n_shards = kvs_config_shard_count(cfg);
	pthread_rwlock_init(&n->send_lock, NULL);
	pthread_mutex_init(&n->prober_mu, NULL);
	pthread_cond_init(&n->prober_cv, NULL);
	/* Taken now, so that close frees it whatever happens below. */
	n->ops = n->o.peer_ops;
	n->impl = n->o.peer_impl;
	/* Until answers have been timed: the longest delay. */
	for (int k = 0; k < KVS__LAT_KINDS; k++)
		atomic_init(&n->lat[k].delay_ms, cc->speculative_retry_max_ms);
	n->peers = calloc(n->n_shards, sizeof(*n->peers));
	members = calloc(n->n_shards, sizeof(*members));
	rc = KVS_ENOMEM;
	if (n->peers == NULL || members == NULL)
		goto fail;
	for (size_t i = 0; i < n->n_shards; i++) {
		const kvs_shard_config *s = kvs_config_shard(cfg, i);

		n->peers[i].n = n;
		n->peers[i].i = i;
		kvs__health_init(&n->peers[i].health);
		members[i].name = s->name;
		members[i].weight = s->weight;
		if (s->weight > 0.0)
			n->holders++;
	}
	rc = kvs_ring_new(&n->ring, members, n->n_shards, cc->vnodes);
	if (rc != KVS_OK) {
		snprintf(errbuf, errlen, "%s: cannot build the ring: %s",
		         cc->path, kvs_strerror(rc));
		goto fail;
	}
	if (n->ops == NULL) {
		rc = start_http_peers(n, errbuf, errlen);
		if (rc != KVS_OK)
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
	if (n->o.wall != NULL)
		kvs__store_set_wall(n->store, n->o.wall, n->o.wall_ud);
	if (!n->o.no_prober && n->n_shards > 1) {
		if (pthread_create(&n->prober, NULL, prober_main, n) != 0) {
			snprintf(errbuf, errlen, "cannot start the prober thread");
			rc = KVS_ESYS;
			goto fail;
		}
		n->prober_started = 1;
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
	if (n->prober_started) {
		pthread_mutex_lock(&n->prober_mu);
		n->prober_stop = 1;
		pthread_cond_signal(&n->prober_cv);
		pthread_mutex_unlock(&n->prober_mu);
		pthread_join(n->prober, NULL);
	}
	/* No new messages from now on; then the peers end what is in
	 * flight (its completions may still write to the store). */
	pthread_rwlock_wrlock(&n->send_lock);
	n->closing = 1;
	pthread_rwlock_unlock(&n->send_lock);
	if (n->ops != NULL)
		n->ops->free(n->impl);
	kvs_store_close(n->store);
	kvs_ring_free(n->ring);
	free(n->peers);
	pthread_cond_destroy(&n->prober_cv);
	pthread_mutex_destroy(&n->prober_mu);
	pthread_rwlock_destroy(&n->send_lock);
	free(n);
}
