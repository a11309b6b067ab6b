/*
 * client.c - the remote client: one handle for a whole cluster.
 *
 * Topology. The client asks any node for GET /v1/cluster and builds the
 * same ring as the servers from it (same names, weights and vnodes, hence
 * the same owners: docs/ring.md). The topology is reference counted:
 * requests hold the one they started with while a refresh (after a newer
 * epoch is seen in X-Kvshard-Epoch, or after routing failed) swaps in a new
 * one; the old one is freed by its last user.
 *
 * Routing. A key's request goes straight to an owner: the first owner that
 * is not known to be down, in preference order, so writes reach the
 * coordinator and reads the primary. A connection failure or timeout marks
 * the shard down for a back-off period and the next owner is tried.
 * Multi-key calls group keys by that first owner and send one POST
 * /v1/batch per shard, all at once; keys of a shard whose batch fails are
 * retried one by one (which tries their other owners). Scans ask any node
 * for GET /v1/kv?prefix=..., which merges every shard's keys.
 */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "health.h"
#include "kvshard/client.h"
#include "kvshard/config.h"
#include "kvshard/ring.h"
#include "protocol.h"
#include "transport.h"
#include "util.h"

#define DEFAULT_CLUSTER "localhost:8081"
#define CLUSTER_ENV "KVSHARD_CLUSTER"
#define MAX_SEEDS 64
/* Operations per batch request (the servers' default limit is 1000). */
#define BATCH_CHUNK 500

struct shard {
	char *name;
	uint32_t idx;
	char *address;
	char *url; /* "http://address" */
	double weight;
	kvs__health health;
};

struct topo {
	_Atomic unsigned refs;
	uint64_t epoch;
	unsigned replication;
	unsigned vnodes;
	size_t n;
	struct shard *shards;
	kvs_ring *ring;
};

struct kvs_client {
	kvs__transport *t;
	unsigned max_attempts;
	char *auth_header;
	const char *scheme; /* "http" or "https" */
	char *ca_file;      /* from the config file, or NULL */
	char *seeds[MAX_SEEDS];
	size_t n_seeds;
	pthread_mutex_t mu;
	struct topo *topo;
};

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void set_err(char *errbuf, const char *fmt, ...)
{
	va_list ap;

	if (errbuf == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(errbuf, KVS_ERRBUF_SIZE, fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------------ */
/* Topology                                                             */

static void topo_free(struct topo *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->n; i++) {
		free(t->shards[i].name);
		free(t->shards[i].address);
		free(t->shards[i].url);
	}
	free(t->shards);
	kvs_ring_free(t->ring);
	free(t);
}

static struct topo *topo_get(kvs_client *c)
{
	struct topo *t;

	pthread_mutex_lock(&c->mu);
	t = c->topo;
	atomic_fetch_add(&t->refs, 1);
	pthread_mutex_unlock(&c->mu);
	return t;
}

static void topo_put(struct topo *t)
{
	if (atomic_fetch_sub(&t->refs, 1) == 1)
		topo_free(t);
}

/* Build a topology from /v1/cluster's JSON. */
static int topo_parse(const char *scheme, const char *body, size_t len,
                      struct topo **out)
{
	cJSON *doc = cJSON_ParseWithLength(body, len), *shards, *it;
	kvs_ring_member *members = NULL;
	struct topo *t = calloc(1, sizeof(*t));
	size_t i = 0;
	int rc = KVS_EPROTO;

	*out = NULL;
	if (t == NULL || doc == NULL) {
		rc = t == NULL ? KVS_ENOMEM : KVS_EPROTO;
		goto out;
	}
	shards = cJSON_GetObjectItemCaseSensitive(doc, KVS_F_SHARDS);
	if (!cJSON_IsArray(shards) || cJSON_GetArraySize(shards) == 0)
		goto out;
	t->n = (size_t)cJSON_GetArraySize(shards);
	t->shards = calloc(t->n, sizeof(*t->shards));
	members = calloc(t->n, sizeof(*members));
	if (t->shards == NULL || members == NULL) {
		rc = KVS_ENOMEM;
		goto out;
	}
	{
		cJSON *e = cJSON_GetObjectItemCaseSensitive(doc, KVS_F_EPOCH);
		cJSON *r = cJSON_GetObjectItemCaseSensitive(doc, KVS_F_REPLICATION);
		cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, KVS_F_VNODES);

		if (!cJSON_IsNumber(e) || !cJSON_IsNumber(r) ||
		    !cJSON_IsNumber(v) || r->valuedouble < 1 ||
		    v->valuedouble < 1)
			goto out;
		t->epoch = (uint64_t)e->valuedouble;
		t->replication = (unsigned)r->valuedouble;
		t->vnodes = (unsigned)v->valuedouble;
	}
	cJSON_ArrayForEach(it, shards) {
		cJSON *name = cJSON_GetObjectItemCaseSensitive(it, KVS_F_NAME);
		cJSON *idx = cJSON_GetObjectItemCaseSensitive(it, KVS_F_IDX);
		cJSON *addr = cJSON_GetObjectItemCaseSensitive(it, KVS_F_ADDRESS);
		cJSON *w = cJSON_GetObjectItemCaseSensitive(it, KVS_F_WEIGHT);
		struct shard *s = &t->shards[i];
		size_t ulen;

		if (!cJSON_IsString(name) || !cJSON_IsNumber(idx) ||
		    !cJSON_IsString(addr) || !cJSON_IsNumber(w))
			goto out;
		kvs__health_init(&s->health);
		s->name = strdup(name->valuestring);
		s->address = strdup(addr->valuestring);
		s->idx = (uint32_t)idx->valuedouble;
		s->weight = w->valuedouble;
		ulen = strlen(addr->valuestring) + 16;
		s->url = malloc(ulen);
		if (s->name == NULL || s->address == NULL || s->url == NULL) {
			rc = KVS_ENOMEM;
			goto out;
		}
		snprintf(s->url, ulen, "%s://%s", scheme, s->address);
		members[i].name = s->name;
		members[i].weight = s->weight;
		i++;
	}
	rc = kvs_ring_new(&t->ring, members, t->n, t->vnodes);
	if (rc != KVS_OK)
		rc = rc == KVS_ENOMEM ? rc : KVS_EPROTO;
out:
	free(members);
	cJSON_Delete(doc);
	if (rc != KVS_OK) {
		topo_free(t);
		return rc;
	}
	atomic_init(&t->refs, 1);
	*out = t;
	return KVS_OK;
}

/* Ask base_url for the topology. */
static int topo_fetch(kvs_client *c, const char *base_url, struct topo **out)
{
	kvs__http_request req;
	kvs__http_response resp;
	char url[600];
	int rc;

	snprintf(url, sizeof(url), "%s%s", base_url, KVS_PATH_CLUSTER);
	memset(&req, 0, sizeof(req));
	req.method = "GET";
	req.url = url;
	kvs__transport_request(c->t, &req, &resp);
	rc = resp.rc;
	if (rc == KVS_OK && resp.status != 200)
		rc = resp.status == 401 || resp.status == 403 ? KVS_EAUTH
		                                              : KVS_EPROTO;
	if (rc == KVS_OK)
		rc = topo_parse(c->scheme, resp.body, resp.body_len, out);
	kvs__http_response_clear(&resp);
	return rc;
}

/* Fetch from the known shards, then from the seeds. */
static int refresh(kvs_client *c, char *errbuf)
{
	struct topo *cur = NULL, *fresh = NULL;
	int rc = KVS_ECONNECT;

	pthread_mutex_lock(&c->mu);
	if (c->topo != NULL) {
		cur = c->topo;
		atomic_fetch_add(&cur->refs, 1);
	}
	pthread_mutex_unlock(&c->mu);
	for (size_t i = 0; cur != NULL && i < cur->n && fresh == NULL; i++)
		rc = topo_fetch(c, cur->shards[i].url, &fresh);
	for (size_t i = 0; i < c->n_seeds && fresh == NULL; i++) {
		char url[300];

		snprintf(url, sizeof(url), "%s://%s", c->scheme, c->seeds[i]);
		rc = topo_fetch(c, url, &fresh);
		if (rc != KVS_OK)
			set_err(errbuf, "cannot get the topology from %s: %s",
			        c->seeds[i], kvs_strerror(rc));
	}
	if (cur != NULL)
		topo_put(cur);
	if (fresh == NULL)
		return rc;
	pthread_mutex_lock(&c->mu);
	cur = c->topo;
	c->topo = fresh;
	pthread_mutex_unlock(&c->mu);
	if (cur != NULL)
		topo_put(cur);
	return KVS_OK;
}

int kvs_client_refresh(kvs_client *c)
{
	return c != NULL ? refresh(c, NULL) : KVS_EINVAL;
}

uint64_t kvs_client_epoch(kvs_client *c)
{
	struct topo *t;
	uint64_t e;

	if (c == NULL)
		return 0;
	t = topo_get(c);
	e = t->epoch;
	topo_put(t);
	return e;
}

/*
 * A newer epoch in an answer means the topology changed: fetch it. Waiting
 * for runtime topology changes: while the topology is the config file's,
 * every server says epoch 1 and this never fires.
 */
static void check_epoch(kvs_client *c, const struct topo *t,
                        const kvs__http_response *resp)
{
	size_t len;
	const char *v = kvs__http_header(resp, KVS_HDR_EPOCH, &len);
	char buf[24];

	if (v == NULL || len == 0 || len >= sizeof(buf))
		return;
	memcpy(buf, v, len);
	buf[len] = '\0';
	if (strtoull(buf, NULL, 10) > t->epoch)
		refresh(c, NULL);
}

/* ------------------------------------------------------------------ */
/* Health                                                               */

static int shard_up(const struct shard *s)
{
	return kvs__health_usable(&s->health, kvs__mono_ms());
}

static void shard_result(struct shard *s, int rc)
{
	kvs__health_note(&s->health, rc, kvs__mono_ms());
}

/* The owners of key to try, up ones first; returns how many. */
static size_t candidates(const struct topo *t, const void *key, size_t len,
                         size_t *out)
{
	size_t owners[KVS_RING_MAX_OWNERS], n, k = 0;

	n = kvs_ring_owners(t->ring, key, len, owners, t->replication);
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < n; i++)
			if (shard_up(&t->shards[owners[i]]) == !pass)
				out[k++] = owners[i];
	return k;
}

/* ------------------------------------------------------------------ */
/* Answers to result codes                                              */

/* The result code of an answer: the "error" code of its JSON body, else
 * what its status usually means. */
static int status_rc(const kvs__http_response *resp)
{
	return kvs__error_of_body(resp->status, resp->body, resp->body_len);
}

/* ------------------------------------------------------------------ */
/* Single keys                                                          */

/*
 * Send method to /v1/kv/{key} at the key's owners in turn until one
 * answers. resp is filled with the answer (cleared by the caller).
 * Returns KVS_OK when an answer came, or the last transport error.
 */
static int key_request(kvs_client *c, const char *method, const void *key,
                       size_t key_len, const void *body, size_t body_len,
                       const char *cond, kvs__http_response *resp)
{
	struct topo *t = topo_get(c);
	size_t order[KVS_RING_MAX_OWNERS], n;
	char *esc = kvs__url_escape(key, key_len);
	int rc = KVS_ECONNECT, refreshed = 0;

	memset(resp, 0, sizeof(*resp));
	if (esc == NULL) {
		topo_put(t);
		return KVS_ENOMEM;
	}
	n = candidates(t, key, key_len, order);
	if (c->max_attempts != 0 && n > c->max_attempts)
		n = c->max_attempts;
	for (size_t i = 0; i < n; i++) {
		struct shard *s = &t->shards[order[i]];
		size_t ulen = strlen(s->url) + strlen(esc) + 8;
		char *url = malloc(ulen);
		kvs__http_request req;

		if (url == NULL) {
			rc = KVS_ENOMEM;
			break;
		}
		snprintf(url, ulen, "%s%s%s", s->url, KVS_PATH_KEY, esc);
		memset(&req, 0, sizeof(req));
		req.method = method;
		req.url = url;
		req.body = body;
		req.body_len = body_len;
		if (cond != NULL)
			req.headers[req.n_headers++] = cond;
		kvs__transport_request(c->t, &req, resp);
		free(url);
		rc = resp->rc;
		if (rc != KVS_OK && cond != NULL && resp->sent)
			break; /* maybe decided there: not again elsewhere */
		if (rc == KVS_OK && resp->status == 503 &&
		    status_rc(resp) == KVS_ESHUTDOWN)
			rc = KVS_ESHUTDOWN; /* stopping: as good as down */
		shard_result(s, rc);
		if (rc == KVS_OK && resp->status == 421 && !refreshed) {
			/* The shard disagrees about who owns the key: our
			 * topology is stale. */
			kvs__http_response_clear(resp);
			refreshed = 1;
			topo_put(t);
			refresh(c, NULL);
			t = topo_get(c);
			n = candidates(t, key, key_len, order);
			i = (size_t)-1;
			continue;
		}
		if (rc == KVS_OK) {
			check_epoch(c, t, resp);
			break;
		}
		kvs__http_response_clear(resp);
	}
	if (rc != KVS_OK && !refreshed)
		refresh(c, NULL); /* maybe the cluster changed */
	free(esc);
	topo_put(t);
	return rc == KVS_ESHUTDOWN ? KVS_EUNAVAIL : rc;
}

static int stamp_of(const kvs__http_response *resp, kvs_stamp *stamp)
{
	size_t len;
	const char *etag = kvs__http_header(resp, "ETag", &len);

	if (stamp == NULL)
		return KVS_OK;
	if (etag == NULL || kvs_stamp_parse(stamp, etag, len) != KVS_OK)
		return KVS_EPROTO;
	return KVS_OK;
}

int kvs_client_get(kvs_client *c, const void *key, size_t key_len,
                   void **value, size_t *value_len, kvs_stamp *stamp)
{
	kvs__http_response resp;
	int rc;

	if (c == NULL || value == NULL || value_len == NULL)
		return KVS_EINVAL;
	if (key == NULL || key_len == 0)
		return KVS_EKEYSIZE;
	rc = key_request(c, "GET", key, key_len, NULL, 0, NULL, &resp);
	if (rc == KVS_OK)
		rc = status_rc(&resp);
	if (rc == KVS_OK)
		rc = stamp_of(&resp, stamp);
	if (rc == KVS_OK) {
		*value = resp.body_len > 0 ? resp.body : NULL;
		*value_len = resp.body_len;
		if (resp.body_len > 0)
			resp.body = NULL;
	}
	kvs__http_response_clear(&resp);
	return rc;
}

int kvs_client_exists(kvs_client *c, const void *key, size_t key_len,
                      kvs_stamp *stamp)
{
	kvs__http_response resp;
	int rc;

	if (c == NULL)
		return KVS_EINVAL;
	if (key == NULL || key_len == 0)
		return KVS_EKEYSIZE;
	rc = key_request(c, "HEAD", key, key_len, NULL, 0, NULL, &resp);
	if (rc == KVS_OK)
		rc = status_rc(&resp);
	if (rc == KVS_OK)
		rc = stamp_of(&resp, stamp);
	kvs__http_response_clear(&resp);
	return rc;
}

/* The If-Match / If-None-Match header of opts, into buf; NULL if none. */
static const char *condition(const kvs_write_options *opts, char *buf,
                             size_t cap)
{
	char st[KVS_STAMP_STRLEN];

	if (opts == NULL || opts->flags == 0)
		return NULL;
	if (opts->flags & KVS_WRITE_IF_STAMP) {
		kvs_stamp_format(&opts->expect, st);
		snprintf(buf, cap, "If-Match: \"%s\"", st);
		return buf;
	}
	return "If-None-Match: *";
}

static int write_key(kvs_client *c, const char *method, const void *key,
                     size_t key_len, const void *value, size_t value_len,
                     const kvs_write_options *opts, kvs_stamp *stamp)
{
	kvs__http_response resp;
	char cond[64];
	int rc;

	if (c == NULL || (value == NULL && value_len > 0))
		return KVS_EINVAL;
	if (key == NULL || key_len == 0)
		return KVS_EKEYSIZE;
	rc = key_request(c, method, key, key_len, value ? value : "",
	                 value_len, condition(opts, cond, sizeof(cond)), &resp);
	if (rc == KVS_OK)
		rc = status_rc(&resp);
	if (rc == KVS_OK)
		rc = stamp_of(&resp, stamp);
	kvs__http_response_clear(&resp);
	return rc;
}

int kvs_client_put(kvs_client *c, const void *key, size_t key_len,
                   const void *value, size_t value_len,
                   const kvs_write_options *opts, kvs_stamp *stamp)
{
	return write_key(c, "PUT", key, key_len, value, value_len, opts, stamp);
}

int kvs_client_cas(kvs_client *c, const void *key, size_t key_len,
                   const kvs_stamp *expect, const void *value,
                   size_t value_len, kvs_stamp *stamp)
{
	kvs_write_options o;

	if (expect == NULL)
		return KVS_EINVAL;
	o.flags = KVS_WRITE_IF_STAMP;
	o.expect = *expect;
	return write_key(c, "PUT", key, key_len, value, value_len, &o, stamp);
}

int kvs_client_delete(kvs_client *c, const void *key, size_t key_len,
                      const kvs_write_options *opts, kvs_stamp *stamp)
{
	kvs__http_response resp;
	char cond[64];
	int rc;

	if (c == NULL)
		return KVS_EINVAL;
	if (key == NULL || key_len == 0)
		return KVS_EKEYSIZE;
	rc = key_request(c, "DELETE", key, key_len, NULL, 0,
	                 condition(opts, cond, sizeof(cond)), &resp);
	if (rc == KVS_OK)
		rc = status_rc(&resp);
	if (rc == KVS_OK)
		rc = stamp_of(&resp, stamp);
	kvs__http_response_clear(&resp);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Many keys                                                            */

/* Fill res from one result object of a batch answer. */
static void batch_result(const cJSON *o, int is_get, kvs_key_result *res)
{
	cJSON *st = cJSON_GetObjectItemCaseSensitive(o, KVS_F_STATUS);
	cJSON *ver = cJSON_GetObjectItemCaseSensitive(o, KVS_F_VERSION);
	cJSON *val = cJSON_GetObjectItemCaseSensitive(o, KVS_F_VALUE
	                                              KVS_F_B64_SUFFIX);
	cJSON *e = cJSON_GetObjectItemCaseSensitive(o, KVS_F_ERROR);

	if (!cJSON_IsNumber(st)) {
		res->rc = KVS_EPROTO;
		return;
	}
	res->rc = kvs__result_of_status((long)st->valuedouble,
	                                cJSON_IsString(e) ? e->valuestring
	                                                  : NULL);
	if (res->rc != KVS_OK)
		return;
	if (cJSON_IsString(ver) &&
	    kvs_stamp_parse(&res->stamp, ver->valuestring,
	                    strlen(ver->valuestring)) != KVS_OK)
		res->rc = KVS_EPROTO;
	if (is_get && res->rc == KVS_OK) {
		unsigned char *v;

		if (!cJSON_IsString(val)) {
			res->rc = KVS_EPROTO;
			return;
		}
		res->rc = kvs__b64_decode_alloc(val->valuestring,
		                                strlen(val->valuestring), &v,
		                                &res->value_len);
		if (res->rc == KVS_EINVAL)
			res->rc = KVS_EPROTO;
		res->value = v;
	}
}

/*
 * Run n operations (gets when items have no values) as batches, one group
 * per target shard, all groups in parallel. Keys whose batch could not be
 * sent get rc = KVS_ECONNECT for the caller to retry singly.
 */
static int run_batches(kvs_client *c, const kvs_kv *items, size_t n,
                       int is_get, kvs_key_result *results)
{
	struct topo *t = topo_get(c);
	size_t *target = calloc(n ? n : 1, sizeof(*target));
	size_t n_req = 0, *req_shard = NULL, *req_first = NULL;
	kvs__http_request *reqs = NULL;
	kvs__http_response *resps = NULL;
	char **bodies = NULL, **urls = NULL;
	size_t max_req = 0;
	int rc = KVS_ENOMEM;

	if (target == NULL)
		goto out;
	for (size_t i = 0; i < n; i++) {
		size_t order[KVS_RING_MAX_OWNERS];

		results[i].rc = KVS_ECONNECT;
		target[i] = candidates(t, items[i].key, items[i].key_len, order) > 0
		                    ? order[0]
		                    : 0;
	}
	/* One request per (shard, chunk of BATCH_CHUNK keys). */
	for (size_t s = 0; s < t->n; s++) {
		size_t count = 0;

		for (size_t i = 0; i < n; i++)
			count += target[i] == s;
		max_req += (count + BATCH_CHUNK - 1) / BATCH_CHUNK;
	}
	reqs = calloc(max_req ? max_req : 1, sizeof(*reqs));
	resps = calloc(max_req ? max_req : 1, sizeof(*resps));
	bodies = calloc(max_req ? max_req : 1, sizeof(*bodies));
	urls = calloc(max_req ? max_req : 1, sizeof(*urls));
	req_shard = calloc(max_req ? max_req : 1, sizeof(*req_shard));
	req_first = calloc(max_req ? max_req : 1, sizeof(*req_first));
	if (reqs == NULL || resps == NULL || bodies == NULL || urls == NULL ||
	    req_shard == NULL || req_first == NULL)
		goto out;
	for (size_t s = 0; s < t->n; s++) {
		size_t i = 0;

		while (i < n) {
			size_t len, in_chunk = 0;
			kvs__buf b;
			char *body;

			kvs__buf_init(&b, 0);
			kvs__buf_addf(&b, "{\"%s\":[", KVS_F_OPS);
			for (; i < n && in_chunk < BATCH_CHUNK; i++) {
				if (target[i] != s)
					continue;
				if (in_chunk == 0)
					req_first[n_req] = i;
				kvs__buf_addf(&b, "%s{\"%s\":\"%s\",",
				              in_chunk ? "," : "", KVS_F_OP,
				              is_get ? KVS_OP_GET : KVS_OP_PUT);
				kvs__json_b64(&b, KVS_F_KEY, items[i].key,
				              items[i].key_len);
				if (!is_get) {
					kvs__buf_add(&b, ",", 1);
					kvs__json_b64(&b, KVS_F_VALUE,
					              items[i].value,
					              items[i].value_len);
				}
				kvs__buf_add(&b, "}", 1);
				in_chunk++;
			}
			kvs__buf_add(&b, "]}", 2);
			body = kvs__buf_take(&b, &len);
			if (body == NULL)
				goto out;
			if (in_chunk == 0) {
				free(body);
				break;
			}
			urls[n_req] = malloc(strlen(t->shards[s].url) + 16);
			if (urls[n_req] == NULL) {
				free(body);
				goto out;
			}
			sprintf(urls[n_req], "%s%s", t->shards[s].url,
			        KVS_PATH_BATCH);
			bodies[n_req] = body;
			reqs[n_req].method = "POST";
			reqs[n_req].url = urls[n_req];
			reqs[n_req].headers[0] = "Content-Type: " KVS_TYPE_JSON;
			reqs[n_req].n_headers = 1;
			reqs[n_req].body = body;
			reqs[n_req].body_len = len;
			req_shard[n_req] = s;
			n_req++;
		}
	}
	kvs__transport_parallel(c->t, reqs, n_req, resps);
	for (size_t q = 0; q < n_req; q++) {
		cJSON *doc = NULL, *arr, *it;
		size_t i = req_first[q];

		shard_result(&t->shards[req_shard[q]], resps[q].rc);
		if (resps[q].rc == KVS_OK && resps[q].status == 200)
			doc = cJSON_ParseWithLength(resps[q].body, resps[q].body_len);
		arr = cJSON_GetObjectItemCaseSensitive(doc, KVS_F_RESULTS);
		if (resps[q].rc == KVS_OK && resps[q].status != 200) {
			/* The whole batch was refused (401, 400...). */
			int all = status_rc(&resps[q]);

			for (size_t k = i, done = 0; k < n && done < BATCH_CHUNK; k++)
				if (target[k] == req_shard[q]) {
					results[k].rc = all;
					done++;
				}
		}
		cJSON_ArrayForEach(it, arr) {
			while (i < n && target[i] != req_shard[q])
				i++;
			if (i == n)
				break;
			batch_result(it, is_get, &results[i]);
			i++;
		}
		cJSON_Delete(doc);
	}
	rc = KVS_OK;
out:
	for (size_t q = 0; q < max_req && resps != NULL; q++)
		kvs__http_response_clear(&resps[q]);
	for (size_t q = 0; q < max_req && bodies != NULL; q++) {
		free(bodies[q]);
		free(urls[q]);
	}
	free(reqs);
	free(resps);
	free(bodies);
	free(urls);
	free(req_shard);
	free(req_first);
	free(target);
	topo_put(t);
	return rc;
}

int kvs_client_mget(kvs_client *c, const kvs_key *keys, size_t n,
                    kvs_key_result *results)
{
	kvs_kv *items;
	int rc;

	if (c == NULL || (n > 0 && (keys == NULL || results == NULL)))
		return KVS_EINVAL;
	memset(results, 0, n * sizeof(*results));
	items = calloc(n ? n : 1, sizeof(*items));
	if (items == NULL)
		return KVS_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (keys[i].key == NULL || keys[i].len == 0) {
			free(items);
			return KVS_EKEYSIZE;
		}
		items[i].key = keys[i].key;
		items[i].key_len = keys[i].len;
	}
	rc = run_batches(c, items, n, 1, results);
	/* Keys whose shard did not answer: one by one, other owners; and
	 * keys whose values did not fit in the batch's answer (the server
	 * caps it at max_answer_bytes): one by one too. */
	for (size_t i = 0; rc == KVS_OK && i < n; i++)
		if (results[i].rc == KVS_ECONNECT ||
		    results[i].rc == KVS_ETIMEDOUT ||
		    results[i].rc == KVS_EANSWERSIZE)
			results[i].rc = kvs_client_get(c, keys[i].key, keys[i].len,
			                               &results[i].value,
			                               &results[i].value_len,
			                               &results[i].stamp);
	free(items);
	return rc;
}

int kvs_client_mput(kvs_client *c, const kvs_kv *items, size_t n,
                    kvs_key_result *results)
{
	int rc;

	if (c == NULL || (n > 0 && (items == NULL || results == NULL)))
		return KVS_EINVAL;
	memset(results, 0, n * sizeof(*results));
	for (size_t i = 0; i < n; i++)
		if (items[i].key == NULL || items[i].key_len == 0 ||
		    (items[i].value == NULL && items[i].value_len > 0))
			return items[i].key_len == 0 ? KVS_EKEYSIZE : KVS_EINVAL;
	rc = run_batches(c, items, n, 0, results);
	for (size_t i = 0; rc == KVS_OK && i < n; i++)
		if (results[i].rc == KVS_ECONNECT || results[i].rc == KVS_ETIMEDOUT)
			results[i].rc = kvs_client_put(c, items[i].key,
			                               items[i].key_len,
			                               items[i].value,
			                               items[i].value_len, NULL,
			                               &results[i].stamp);
	return rc;
}

void kvs_client_results_free(kvs_key_result *results, size_t n)
{
	for (size_t i = 0; results != NULL && i < n; i++) {
		free(results[i].value);
		memset(&results[i], 0, sizeof(results[i]));
	}
}

/* ------------------------------------------------------------------ */
/* Scans                                                                */

/*
 * Bytes of field_b64 (exact) or field (text without NUL) in o, malloc'ed
 * into *out: the server sends both when the bytes are not printable text,
 * and the text form cannot carry a NUL byte through cJSON.
 */
static int json_bytes(const cJSON *o, const char *field, unsigned char **out,
                      size_t *len)
{
	char name[32];
	const cJSON *b, *p;

	snprintf(name, sizeof(name), "%s%s", field, KVS_F_B64_SUFFIX);
	b = cJSON_GetObjectItemCaseSensitive(o, name);
	p = cJSON_GetObjectItemCaseSensitive(o, field);
	if (cJSON_IsString(b)) {
		int rc = kvs__b64_decode_alloc(b->valuestring,
		                               strlen(b->valuestring), out, len);

		return rc == KVS_EINVAL ? KVS_EPROTO : rc;
	}
	if (cJSON_IsString(p)) {
		*len = strlen(p->valuestring);
		*out = malloc(*len + 1);
		if (*out == NULL)
			return KVS_ENOMEM;
		memcpy(*out, p->valuestring, *len + 1);
		return KVS_OK;
	}
	return KVS_NOTFOUND;
}

static int scan_page(kvs_client *c, const char *query, int values,
                     kvs_record_cb cb, void *ud, void **next,
                     size_t *next_len)
{
	struct topo *t = topo_get(c);
	kvs__http_response resp;
	int rc = KVS_ECONNECT;

	memset(&resp, 0, sizeof(resp));
	for (int pass = 0; pass < 2 && rc != KVS_OK; pass++)
		for (size_t i = 0; i < t->n && rc != KVS_OK; i++) {
			struct shard *s = &t->shards[i];
			kvs__http_request req;
			size_t ulen = strlen(s->url) + strlen(query) + 16;
			char *url;

			if (shard_up(s) != !pass)
				continue;
			url = malloc(ulen);
			if (url == NULL) {
				topo_put(t);
				return KVS_ENOMEM;
			}
			snprintf(url, ulen, "%s%s?%s", s->url, KVS_PATH_SCAN,
			         query);
			memset(&req, 0, sizeof(req));
			req.method = "GET";
			req.url = url;
			kvs__transport_request(c->t, &req, &resp);
			free(url);
			rc = resp.rc;
			shard_result(s, rc);
			if (rc == KVS_OK && resp.status == 503) {
				/* This node could not cover the ring; another
				 * may. */
				kvs__http_response_clear(&resp);
				rc = KVS_EUNAVAIL;
				continue;
			}
			if (rc != KVS_OK)
				kvs__http_response_clear(&resp);
		}
	topo_put(t);
	if (rc != KVS_OK)
		return rc;
	rc = status_rc(&resp);
	if (rc == KVS_OK) {
		cJSON *doc = cJSON_ParseWithLength(resp.body, resp.body_len);
		cJSON *keys = cJSON_GetObjectItemCaseSensitive(doc, KVS_F_KEYS), *it;
		cJSON *nx = cJSON_GetObjectItemCaseSensitive(doc, KVS_F_NEXT);
		int stop = 0;

		if (!cJSON_IsArray(keys))
			rc = KVS_EPROTO;
		cJSON_ArrayForEach(it, keys) {
			kvs_record rec;
			unsigned char *k = NULL, *v = NULL;
			cJSON *ver = cJSON_GetObjectItemCaseSensitive(it, KVS_F_VERSION);

			if (rc != KVS_OK || stop)
				break;
			memset(&rec, 0, sizeof(rec));
			rc = json_bytes(it, KVS_F_KEY, &k, &rec.key_len);
			if (rc == KVS_OK && values) {
				rc = json_bytes(it, KVS_F_VALUE, &v, &rec.value_len);
				if (rc == KVS_NOTFOUND)
					rc = KVS_EPROTO;
			}
			if (rc == KVS_OK &&
			    (!cJSON_IsString(ver) ||
			     kvs_stamp_parse(&rec.stamp, ver->valuestring,
			                     strlen(ver->valuestring)) != KVS_OK))
				rc = KVS_EPROTO;
			if (rc == KVS_OK) {
				rec.key = k;
				rec.value = v;
				stop = cb(ud, &rec);
			}
			free(k);
			free(v);
		}
		*next = NULL;
		*next_len = 0;
		if (rc == KVS_OK && !cJSON_IsNull(nx) && nx != NULL) {
			unsigned char *n = NULL;

			rc = json_bytes(doc, KVS_F_NEXT, &n, next_len);
			*next = n;
		}
		cJSON_Delete(doc);
	}
	kvs__http_response_clear(&resp);
	return rc;
}

int kvs_client_scan(kvs_client *c, const kvs_client_scan_options *opts,
                    kvs_record_cb cb, void *ud, void **next,
                    size_t *next_len)
{
	static const kvs_client_scan_options all;
	const kvs_client_scan_options *o = opts ? opts : &all;
	char *p, *a, *query;
	size_t len;
	int rc;

	if (c == NULL || cb == NULL || next == NULL || next_len == NULL)
		return KVS_EINVAL;
	*next = NULL;
	*next_len = 0;
	p = kvs__url_escape(o->prefix ? o->prefix : "", o->prefix_len);
	a = kvs__url_escape(o->start_after ? o->start_after : "",
	                    o->start_after_len);
	len = (p ? strlen(p) : 0) + (a ? strlen(a) : 0) + 96;
	query = malloc(len);
	if (p == NULL || a == NULL || query == NULL) {
		free(p);
		free(a);
		free(query);
		return KVS_ENOMEM;
	}
	snprintf(query, len, KVS_ARG_PREFIX "=%s%s%s&" KVS_ARG_VALUES "=%d", p,
	         o->start_after_len ? "&" KVS_ARG_START_AFTER "=" : "",
	         o->start_after_len ? a : "", o->values ? 1 : 0);
	if (o->limit > 0) {
		size_t used = strlen(query);

		snprintf(query + used, len - used, "&" KVS_ARG_LIMIT "=%zu",
		         o->limit);
	}
	rc = scan_page(c, query, o->values, cb, ud, next, next_len);
	free(p);
	free(a);
	free(query);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Shards                                                               */

/*
 * An admin call: method body to path at the shards in turn, those
 * believed up first, until one answers. The answer's result, its
 * "epoch" into *epoch, its message into errbuf.
 */
static int admin_call(kvs_client *c, const char *method, const char *path,
                      const char *body, uint64_t *epoch, char **answer,
                      char *errbuf)
{
	struct topo *t = topo_get(c);
	kvs__http_response resp;
	int rc = KVS_ECONNECT, got = 0;

	memset(&resp, 0, sizeof(resp));
	for (int pass = 0; pass < 2 && !got; pass++)
		for (size_t i = 0; i < t->n && !got; i++) {
			struct shard *s = &t->shards[i];
			kvs__http_request req;
			char url[1024];

			if (shard_up(s) != !pass)
				continue;
			snprintf(url, sizeof(url), "%s%s", s->url, path);
			memset(&req, 0, sizeof(req));
			req.method = method;
			req.url = url;
			if (body != NULL) {
				req.headers[0] = "Content-Type: application/json";
				req.n_headers = 1;
				req.body = body;
				req.body_len = strlen(body);
			}
			kvs__transport_request(c->t, &req, &resp);
			rc = resp.rc;
			got = rc == KVS_OK;
			if (!got && resp.sent) {
				/* It may have been made: not made again
				 * elsewhere, where it would look refused. */
				kvs__http_response_clear(&resp);
				topo_put(t);
				set_err(errbuf, "%s: no answer (%s); the change may "
				                "have been made: look at the "
				                "cluster's epoch",
				        s->name, kvs_strerror(rc));
				return rc;
			}
			shard_result(s, rc);
			if (!got)
				kvs__http_response_clear(&resp);
		}
	topo_put(t);
	if (!got) {
		set_err(errbuf, "no node answered: %s", kvs_strerror(rc));
		return rc;
	}
	rc = status_rc(&resp);
	{
		cJSON *doc = cJSON_ParseWithLength(resp.body, resp.body_len);
		const cJSON *e = cJSON_GetObjectItemCaseSensitive(doc, KVS_F_EPOCH);
		const cJSON *m = cJSON_GetObjectItemCaseSensitive(doc, "message");

		if (epoch != NULL && cJSON_IsNumber(e))
			*epoch = (uint64_t)e->valuedouble;
		if (answer != NULL && rc == KVS_OK &&
		    (*answer = strndup(resp.body != NULL ? resp.body : "",
		                       resp.body_len)) == NULL)
			rc = KVS_ENOMEM;
		if (rc != KVS_OK)
			set_err(errbuf, "%s", cJSON_IsString(m) ? m->valuestring
			                                        : kvs_strerror(rc));
		cJSON_Delete(doc);
	}
	kvs__http_response_clear(&resp);
	/* The topology changed: what the client routes by too. */
	if (rc == KVS_OK)
		(void)refresh(c, NULL);
	return rc;
}

int kvs_client_add_shard(kvs_client *c, const char *name,
                         const char *address, double weight, uint64_t *epoch,
                         char *errbuf)
{
	cJSON *doc;
	char *body;
	int rc;

	if (c == NULL || name == NULL || address == NULL || !(weight >= 0))
		return KVS_EINVAL;
	doc = cJSON_CreateObject();
	if (doc == NULL || cJSON_AddStringToObject(doc, "name", name) == NULL ||
	    cJSON_AddStringToObject(doc, "address", address) == NULL ||
	    cJSON_AddNumberToObject(doc, "weight", weight) == NULL) {
		cJSON_Delete(doc);
		return KVS_ENOMEM;
	}
	body = cJSON_PrintUnformatted(doc);
	cJSON_Delete(doc);
	if (body == NULL)
		return KVS_ENOMEM;
	rc = admin_call(c, "POST", KVS_PATH_CLUSTER_SHARDS, body, epoch, NULL,
	                errbuf);
	free(body);
	return rc;
}

int kvs_client_remove_shard(kvs_client *c, const char *name, uint64_t *epoch,
                            char *errbuf)
{
	char *escaped, *path;
	int rc;

	if (c == NULL || name == NULL || name[0] == '\0')
		return KVS_EINVAL;
	/* Percent-encoded: a name is any text the config allows. */
	escaped = kvs__url_escape(name, strlen(name));
	path = escaped != NULL ? kvs__concat(KVS_PATH_CLUSTER_SHARDS "/", escaped)
	                       : NULL;
	free(escaped);
	if (path == NULL)
		return KVS_ENOMEM;
	rc = admin_call(c, "DELETE", path, NULL, epoch, NULL, errbuf);
	free(path);
	return rc;
}

int kvs_client_rebalance_control(kvs_client *c, const char *action,
                                 uint64_t *epoch, char *errbuf)
{
	char path[64];

	if (c == NULL || action == NULL ||
	    (strcmp(action, "pause") != 0 && strcmp(action, "resume") != 0 &&
	     strcmp(action, "cancel") != 0))
		return KVS_EINVAL;
	snprintf(path, sizeof(path), "%s/%s", KVS_PATH_REBALANCE, action);
	return admin_call(c, "POST", path, "{}", epoch, NULL, errbuf);
}

int kvs_client_rebalance(kvs_client *c, char **json, char *errbuf)
{
	if (c == NULL || json == NULL)
		return KVS_EINVAL;
	*json = NULL;
	return admin_call(c, "GET", KVS_PATH_REBALANCE, NULL, NULL, json,
	                  errbuf);
}

int kvs_client_shards(kvs_client *c, kvs_shard_info **out, size_t *n_out)
{
	struct topo *t;
	kvs__http_request *reqs;
	kvs__http_response *resps;
	kvs_shard_info *info;
	char (*urls)[300];
	int rc = KVS_OK;

	if (c == NULL || out == NULL || n_out == NULL)
		return KVS_EINVAL;
	t = topo_get(c);
	reqs = calloc(t->n, sizeof(*reqs));
	resps = calloc(t->n, sizeof(*resps));
	info = calloc(t->n, sizeof(*info));
	urls = calloc(t->n, sizeof(*urls));
	if (reqs == NULL || resps == NULL || info == NULL || urls == NULL) {
		rc = KVS_ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < t->n; i++) {
		snprintf(urls[i], sizeof(urls[i]), "%s%s", t->shards[i].url,
		         KVS_PATH_STATUS);
		reqs[i].method = "GET";
		reqs[i].url = urls[i];
	}
	kvs__transport_parallel(c->t, reqs, t->n, resps);
	for (size_t i = 0; i < t->n; i++) {
		const struct shard *s = &t->shards[i];
		kvs_shard_info *x = &info[i];

		snprintf(x->name, sizeof(x->name), "%s", s->name);
		snprintf(x->address, sizeof(x->address), "%s", s->address);
		x->idx = s->idx;
		x->weight = s->weight;
		shard_result(&t->shards[i], resps[i].rc);
		if (resps[i].rc == KVS_OK && resps[i].status == 200) {
			cJSON *doc = cJSON_ParseWithLength(resps[i].body,
			                                   resps[i].body_len);
			cJSON *k = cJSON_GetObjectItemCaseSensitive(doc, KVS_F_KEYS);
			cJSON *b = cJSON_GetObjectItemCaseSensitive(doc,
			                                            KVS_F_STORE_BYTES);
			cJSON *u = cJSON_GetObjectItemCaseSensitive(doc, KVS_F_UPTIME);

			x->up = doc != NULL;
			x->keys = cJSON_IsNumber(k) ? (uint64_t)k->valuedouble : 0;
			x->store_bytes =
			        cJSON_IsNumber(b) ? (uint64_t)b->valuedouble : 0;
			x->uptime_s = cJSON_IsNumber(u) ? (uint64_t)u->valuedouble : 0;
			cJSON_Delete(doc);
		}
	}
	*out = info;
	*n_out = t->n;
	info = NULL;
out:
	for (size_t i = 0; resps != NULL && i < t->n; i++)
		kvs__http_response_clear(&resps[i]);
	free(reqs);
	free(resps);
	free(urls);
	free(info);
	topo_put(t);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Open and close                                                       */

void kvs_client_options_init(kvs_client_options *opts)
{
	memset(opts, 0, sizeof(*opts));
}

/* Split "a:1,b:2" into c->seeds. */
static int parse_seeds(kvs_client *c, const char *list, char *errbuf)
{
	const char *p = list;

	while (*p != '\0') {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		while (len > 0 && (*p == ' ' || *p == '\t')) {
			p++;
			len--;
		}
		while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (len > 8 && strncmp(p, "https://", 8) == 0) {
			c->scheme = "https";
			p += 8;
			len -= 8;
		} else if (len > 7 && strncmp(p, "http://", 7) == 0) {
			p += 7;
			len -= 7;
		}
		if (len > 0) {
			char *s;

			if (c->n_seeds == MAX_SEEDS || len > 255 ||
			    memchr(p, ':', len) == NULL ||
			    memchr(p, '/', len) != NULL) {
				set_err(errbuf, "bad cluster address \"%.*s\": "
				                "expected host:port",
				        (int)(len > 100 ? 100 : len), p);
				return KVS_EINVAL;
			}
			s = malloc(len + 1);
			if (s == NULL)
				return KVS_ENOMEM;
			memcpy(s, p, len);
			s[len] = '\0';
			c->seeds[c->n_seeds++] = s;
		}
		if (end == NULL)
			break;
		p = end + 1;
	}
	if (c->n_seeds == 0) {
		set_err(errbuf, "no cluster address given");
		return KVS_EINVAL;
	}
	return KVS_OK;
}

/* Seeds from a config file: every shard's address. */
static int seeds_from_config(kvs_client *c, const char *path, char *errbuf)
{
	kvs_config *cfg;
	int rc = kvs_config_load(&cfg, path, errbuf);

	if (rc != KVS_OK)
		return rc;
	if (kvs_config_cluster(cfg)->tls_cert != NULL) {
		const char *ca = kvs_config_cluster(cfg)->tls_ca;

		c->scheme = "https";
		if (ca != NULL && (c->ca_file = strdup(ca)) == NULL) {
			kvs_config_free(cfg);
			return KVS_ENOMEM;
		}
	}
	for (size_t i = 0; i < kvs_config_shard_count(cfg) && i < MAX_SEEDS;
	     i++) {
		c->seeds[c->n_seeds] = strdup(kvs_config_shard(cfg, i)->address);
		if (c->seeds[c->n_seeds] == NULL) {
			kvs_config_free(cfg);
			return KVS_ENOMEM;
		}
		c->n_seeds++;
	}
	kvs_config_free(cfg);
	return KVS_OK;
}

void kvs_client_close(kvs_client *c)
{
	if (c == NULL)
		return;
	kvs__transport_free(c->t);
	if (c->topo != NULL)
		topo_put(c->topo);
	for (size_t i = 0; i < c->n_seeds; i++)
		free(c->seeds[i]);
	free(c->auth_header);
	free(c->ca_file);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

int kvs_client_open(kvs_client **out, const kvs_client_options *opts,
                    char *errbuf)
{
	static const kvs_client_options defaults;
	const kvs_client_options *o = opts ? opts : &defaults;
	kvs__transport_options to;
	kvs_client *c;
	int rc;

	if (errbuf != NULL)
		errbuf[0] = '\0';
	if (out == NULL)
		return KVS_EINVAL;
	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return KVS_ENOMEM;
	pthread_mutex_init(&c->mu, NULL);
	c->max_attempts = o->max_attempts;
	c->scheme = o->ca_file != NULL ? "https" : "http";
	if (o->token != NULL) {
		size_t len = strlen(o->token) + 32;

		c->auth_header = malloc(len);
		if (c->auth_header == NULL) {
			rc = KVS_ENOMEM;
			goto fail;
		}
		snprintf(c->auth_header, len, "Authorization: Bearer %s",
		         o->token);
	}
	if (o->config_path != NULL) {
		rc = seeds_from_config(c, o->config_path, errbuf);
	} else {
		const char *env = getenv(CLUSTER_ENV);
		const char *list = o->seeds   ? o->seeds
		                   : env && *env ? env
		                                 : DEFAULT_CLUSTER;

		rc = parse_seeds(c, list, errbuf);
	}
	if (rc != KVS_OK)
		goto fail;
	memset(&to, 0, sizeof(to));
	to.connect_timeout_ms = o->connect_timeout_ms;
	to.request_timeout_ms = o->request_timeout_ms;
	to.extra_header = c->auth_header;
	to.tls_ca = o->ca_file != NULL ? o->ca_file : c->ca_file;
	rc = kvs__transport_new(&c->t, &to);
	if (rc != KVS_OK)
		goto fail;
	rc = refresh(c, errbuf);
	if (rc != KVS_OK)
		goto fail;
	*out = c;
	return KVS_OK;
fail:
	kvs_client_close(c);
	return rc;
}
