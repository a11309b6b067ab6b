/*
 * scan.c - prefix scans: GET /v1/kv?prefix=P&start_after=K&limit=N&values=1
 * across the cluster, and GET /internal/scan, one shard's part of it.
 *
 * Every key lives on N of the S shards that hold data, so any S - N + 1
 * shards together hold every key: the node asked scans that many (itself
 * first, then peers that are up; a peer that fails is replaced by another).
 * Each shard returns up to `limit` records after start_after in key order,
 * tombstones included, and says whether it stopped early. The pages are
 * merged: for a key found on several shards the newest version wins (so a
 * delete hides a stale copy), tombstones are dropped, and the merged page
 * can only be trusted up to the smallest last key among shards that stopped
 * early (a truncated shard may have more keys after its last one). The
 * answer holds at most `limit` live keys and a `next` key to continue
 * after; `next` is null once every shard is exhausted.
 *
 * A scan reads one replica of each key, not a quorum: it shows acknowledged
 * writes that reached the replicas it reads, which after a failure may lag
 * behind a quorum read.
 */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "log.h"
#include "server.h"

#define JSON_TYPE "application/json"
#define INTERNAL_SCAN "/internal/scan"

/* One record of a page. */
struct rec {
	unsigned char *key;
	size_t key_len;
	unsigned char *value; /* NULL unless values were asked for */
	size_t value_len;
	kvs_stamp stamp;
	int tombstone;
};

struct page {
	struct rec *recs;
	size_t n;
	size_t cap;
	int more; /* stopped at the limit: keys may follow the last one */
	int ok;
};

struct scan {
	struct req *r;
	pthread_mutex_t mu;
	char *prefix;
	size_t prefix_len;
	char *start;
	size_t start_len;
	size_t limit;
	int values;
	char *query; /* the query string sent to peers */
	size_t n_targets;
	size_t *targets; /* shard asked for each page */
	struct page *pages;
	struct slot *slots;
	size_t n_spares;
	size_t next_spare;
	size_t *spares; /* shards to ask instead of one that fails */
	unsigned pending;
	int failed;
};

/* The callback context of one page's request. */
struct slot {
	struct scan *sc;
	size_t i;
};

static void page_free(struct page *p)
{
	for (size_t i = 0; i < p->n; i++) {
		free(p->recs[i].key);
		free(p->recs[i].value);
	}
	free(p->recs);
	memset(p, 0, sizeof(*p));
}

static struct rec *page_add(struct page *p)
{
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 64;
		struct rec *n = realloc(p->recs, cap * sizeof(*n));

		if (n == NULL)
			return NULL;
		p->recs = n;
		p->cap = cap;
	}
	memset(&p->recs[p->n], 0, sizeof(p->recs[0]));
	return &p->recs[p->n++];
}

static unsigned char *dup_bytes(const void *data, size_t len)
{
	unsigned char *p = malloc(len ? len : 1);

	if (p != NULL && len > 0)
		memcpy(p, data, len);
	return p;
}

/* Arguments common to both endpoints. Returns 0 if answered (bad). */
static int scan_args(struct req *r, char **prefix, size_t *plen,
                     char **start, size_t *slen, size_t *limit, int *values)
{
	char *text = NULL;
	size_t len, max = r->srv->cc->max_scan_limit;
	int rc;

	*prefix = *start = NULL;
	*plen = *slen = 0;
	if (req_arg(r, "prefix", prefix, plen) < 0 ||
	    req_arg(r, "start_after", start, slen) < 0)
		return 0;
	*limit = max;
	rc = req_arg(r, "limit", &text, &len);
	if (rc < 0)
		return 0;
	if (rc == 1) {
		char *end;
		unsigned long v = strtoul(text, &end, 10);

		if (len == 0 || *end != '\0' || v == 0) {
			free(text);
			req_error(r, MHD_HTTP_BAD_REQUEST, "bad_limit",
			          "limit must be a positive integer");
			return 0;
		}
		*limit = v < max ? v : max;
		free(text);
	}
	*values = 0;
	rc = req_arg(r, "values", &text, &len);
	if (rc < 0)
		return 0;
	if (rc == 1) {
		*values = strcmp(text, "1") == 0 || strcmp(text, "true") == 0;
		free(text);
	}
	return 1;
}

/* ------------------------------------------------------------------ */
/* One shard's part                                                     */

struct local_scan {
	struct page *page;
	size_t limit;
	int values;
	int oom;
};

static int collect(void *ud, const kvs_record *rec)
{
	struct local_scan *ls = ud;
	struct rec *x;

	if (ls->page->n == ls->limit) {
		ls->page->more = 1; /* one more than asked: more follow */
		return 1;
	}
	x = page_add(ls->page);
	if (x == NULL) {
		ls->oom = 1;
		return 1;
	}
	x->key = dup_bytes(rec->key, rec->key_len);
	x->key_len = rec->key_len;
	x->stamp = rec->stamp;
	x->tombstone = (rec->flags & KVS_RECORD_TOMBSTONE) != 0;
	if (ls->values && !x->tombstone) {
		x->value = dup_bytes(rec->value, rec->value_len);
		x->value_len = rec->value_len;
		if (x->value == NULL)
			ls->oom = 1;
	}
	if (x->key == NULL)
		ls->oom = 1;
	return ls->oom;
}

/* Scan the local store into page (limit + 1 records, to see if more). */
static int local_page(struct server *s, const char *prefix, size_t plen,
                      const char *start, size_t slen, size_t limit,
                      int values, struct page *page)
{
	kvs_scan_options o;
	struct local_scan ls = {page, limit, values, 0};
	int rc;

	memset(&o, 0, sizeof(o));
	o.prefix = prefix;
	o.prefix_len = plen;
	o.start = start;
	o.start_len = slen;
	o.flags = KVS_READ_TOMBSTONES;
	rc = kvs_store_scan(kvs__node_store(s->node), &o, collect, &ls);
	if (rc == KVS_OK && ls.oom)
		rc = KVS_ENOMEM;
	page->ok = rc == KVS_OK;
	return rc;
}

void handle_internal_scan(struct req *r)
{
	struct page page = {0};
	struct textbuf tb = {0};
	char *prefix, *start;
	size_t plen, slen, limit;
	int values, rc;

	if (r->method != M_GET) {
		req_not_allowed(r, "GET");
		return;
	}
	if (!scan_args(r, &prefix, &plen, &start, &slen, &limit, &values))
		goto out;
	rc = local_page(r->srv, prefix, plen, start, slen, limit, values, &page);
	if (rc != KVS_OK) {
		req_fail(r, rc, "scanning");
		goto out;
	}
	tb_append(&tb, "{\"records\":[", 12);
	for (size_t i = 0; i < page.n; i++) {
		const struct rec *x = &page.recs[i];
		char stamp[KVS_STAMP_STRLEN];

		kvs_stamp_format(&x->stamp, stamp);
		tb_printf(&tb, "%s{\"k\":\"", i ? "," : "");
		json_base64(&tb, x->key, x->key_len);
		tb_printf(&tb, "\",\"s\":\"%s\",\"t\":%d", stamp, x->tombstone);
		if (x->value != NULL) {
			tb_append(&tb, ",\"v\":\"", 6);
			json_base64(&tb, x->value, x->value_len);
			tb_append(&tb, "\"", 1);
		}
		tb_append(&tb, "}", 1);
	}
	tb_printf(&tb, "],\"more\":%s}\n", page.more ? "true" : "false");
	if (tb.failed) {
		free(tb.data);
		req_fail(r, KVS_ENOMEM, "scanning");
		goto out;
	}
	req_answer(r, MHD_HTTP_OK, resp_take(r->srv, tb.data, tb.len, JSON_TYPE));
out:
	page_free(&page);
	free(prefix);
	free(start);
}

/* ------------------------------------------------------------------ */
/* The cluster-wide scan                                                */

/* Decode a peer's page; returns 0 or -1. */
static int parse_page(const char *body, size_t len, int values,
                      struct page *page)
{
	cJSON *doc = cJSON_ParseWithLength(body, len), *recs, *it;
	int rc = -1;

	if (doc == NULL)
		return -1;
	recs = cJSON_GetObjectItemCaseSensitive(doc, "records");
	if (!cJSON_IsArray(recs))
		goto out;
	cJSON_ArrayForEach(it, recs) {
		cJSON *k = cJSON_GetObjectItemCaseSensitive(it, "k");
		cJSON *s = cJSON_GetObjectItemCaseSensitive(it, "s");
		cJSON *t = cJSON_GetObjectItemCaseSensitive(it, "t");
		cJSON *v = cJSON_GetObjectItemCaseSensitive(it, "v");
		struct rec *x;
		size_t klen;

		if (!cJSON_IsString(k) || !cJSON_IsString(s) || !cJSON_IsNumber(t))
			goto out;
		x = page_add(page);
		if (x == NULL)
			goto out;
		klen = strlen(k->valuestring);
		x->key = malloc(klen * 3 / 4 + 3);
		if (x->key == NULL ||
		    kvs__b64_decode(k->valuestring, klen, x->key, &x->key_len) != 0 ||
		    kvs_stamp_parse(&x->stamp, s->valuestring,
		                    strlen(s->valuestring)) != KVS_OK)
			goto out;
		x->tombstone = t->valueint != 0;
		if (values && cJSON_IsString(v)) {
			size_t vlen = strlen(v->valuestring);

			x->value = malloc(vlen * 3 / 4 + 3);
			if (x->value == NULL ||
			    kvs__b64_decode(v->valuestring, vlen, x->value,
			                    &x->value_len) != 0)
				goto out;
		}
	}
	page->more = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "more"));
	page->ok = 1;
	rc = 0;
out:
	cJSON_Delete(doc);
	return rc;
}

static int key_cmp(const unsigned char *a, size_t alen, const unsigned char *b,
                   size_t blen)
{
	size_t n = alen < blen ? alen : blen;
	int c = n ? memcmp(a, b, n) : 0;

	return c != 0 ? c : (alen > blen) - (alen < blen);
}

/* Sort by key, newest version first. */
static int rec_order(const void *a, const void *b)
{
	const struct rec *x = *(struct rec *const *)a, *y = *(struct rec *const *)b;
	int c = key_cmp(x->key, x->key_len, y->key, y->key_len);

	return c != 0 ? c : -kvs_stamp_cmp(&x->stamp, &y->stamp);
}

static void scan_free(struct scan *sc)
{
	for (size_t i = 0; sc->pages != NULL && i < sc->n_targets; i++)
		page_free(&sc->pages[i]);
	free(sc->pages);
	free(sc->targets);
	free(sc->spares);
	free(sc->slots);
	free(sc->prefix);
	free(sc->start);
	free(sc->query);
	pthread_mutex_destroy(&sc->mu);
	free(sc);
}

/* Merge the pages and answer. */
static void scan_answer(struct scan *sc)
{
	struct req *r = sc->r;
	struct rec **all = NULL, *cutoff = NULL;
	struct textbuf tb = {0};
	size_t total = 0, k = 0, shown = 0;
	const struct rec *last = NULL;
	int more = 0;

	for (size_t i = 0; i < sc->n_targets; i++) {
		struct page *p = &sc->pages[i];

		total += p->n;
		if (p->more && p->n > 0) {
			struct rec *l = &p->recs[p->n - 1];

			if (cutoff == NULL ||
			    key_cmp(l->key, l->key_len, cutoff->key,
			            cutoff->key_len) < 0)
				cutoff = l;
		}
	}
	all = malloc((total ? total : 1) * sizeof(*all));
	if (all == NULL) {
		req_fail(r, KVS_ENOMEM, "merging the scan");
		return;
	}
	for (size_t i = 0; i < sc->n_targets; i++)
		for (size_t j = 0; j < sc->pages[i].n; j++)
			all[k++] = &sc->pages[i].recs[j];
	qsort(all, total, sizeof(*all), rec_order);

	tb_append(&tb, "{\"keys\":[", 9);
	for (size_t i = 0; i < total; i++) {
		const struct rec *x = all[i];
		char stamp[KVS_STAMP_STRLEN];

		if (i > 0 && key_cmp(x->key, x->key_len, all[i - 1]->key,
		                     all[i - 1]->key_len) == 0)
			continue; /* an older copy of the same key */
		if (cutoff != NULL &&
		    key_cmp(x->key, x->key_len, cutoff->key, cutoff->key_len) > 0)
			break;
		if (shown == sc->limit) {
			more = 1;
			break;
		}
		last = x;
		if (x->tombstone)
			continue;
		kvs_stamp_format(&x->stamp, stamp);
		tb_append(&tb, shown ? ",{" : "{", shown ? 2 : 1);
		json_key_field(&tb, "key", x->key, x->key_len);
		tb_printf(&tb, ",\"version\":\"%s\"", stamp);
		if (sc->values) {
			tb_append(&tb, ",\"value_b64\":\"", 14);
			json_base64(&tb, x->value, x->value_len);
			tb_append(&tb, "\"", 1);
		}
		tb_append(&tb, "}", 1);
		shown++;
	}
	/* Continue after the last key looked at: either the page is full,
	 * or a shard stopped early and nothing past its last key is known. */
	if (!more && cutoff != NULL) {
		more = 1;
		last = cutoff;
	}
	tb_append(&tb, "],", 2);
	if (more && last != NULL)
		json_key_field(&tb, "next", last->key, last->key_len);
	else
		tb_append(&tb, "\"next\":null", 11);
	tb_append(&tb, "}\n", 2);
	free(all);
	if (tb.failed) {
		free(tb.data);
		req_fail(r, KVS_ENOMEM, "merging the scan");
		return;
	}
	req_answer(r, MHD_HTTP_OK, resp_take(r->srv, tb.data, tb.len, JSON_TYPE));
}

static int scan_fill(struct scan *sc, size_t i);

static void scan_peer_done(void *ud, kvs__http_response *resp)
{
	struct slot *slot = ud;
	struct scan *sc = slot->sc;
	size_t i = slot->i;
	int ok, last;

	ok = resp->rc == KVS_OK && resp->status == 200 &&
	     parse_page(resp->body, resp->body_len, sc->values, &sc->pages[i]) ==
	             0;
	if (!ok)
		log_msg(LOG_WARN, "scan: shard %s did not answer (%s, HTTP %ld)",
		        kvs_config_shard(sc->r->srv->cfg, sc->targets[i])->name,
		        kvs_strerror(resp->rc), resp->status);
	kvs__http_response_clear(resp);
	pthread_mutex_lock(&sc->mu);
	while (!ok) {
		/* Ask a spare instead; scan_fill may complete locally. */
		int rc;

		page_free(&sc->pages[i]);
		if (sc->next_spare == sc->n_spares) {
			sc->failed = 1;
			break;
		}
		sc->targets[i] = sc->spares[sc->next_spare++];
		pthread_mutex_unlock(&sc->mu);
		rc = scan_fill(sc, i);
		if (rc == 1)
			return; /* a request is on its way */
		pthread_mutex_lock(&sc->mu);
		ok = rc == 0;
	}
	last = --sc->pending == 0;
	pthread_mutex_unlock(&sc->mu);
	if (!last)
		return;
	if (sc->failed)
		req_error(sc->r, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
		          "not enough shards answered to cover every key");
	else
		scan_answer(sc);
	scan_free(sc);
}

/*
 * Get page i from shard targets[i]: at once for this node (returns 0, or
 * -1 on failure), else by a request whose answer comes to scan_peer_done
 * (returns 1).
 */
static int scan_fill(struct scan *sc, size_t i)
{
	struct server *s = sc->r->srv;
	size_t shard = sc->targets[i];
	kvs__http_request hr;
	size_t len;
	char *url;
	int rc;

	if (shard == s->self)
		return local_page(s, sc->prefix, sc->prefix_len, sc->start,
		                  sc->start_len, sc->limit, sc->values,
		                  &sc->pages[i]) == KVS_OK
		               ? 0
		               : -1;
	len = strlen(kvs__node_base_url(s->node, shard)) + strlen(sc->query) +
	      sizeof(INTERNAL_SCAN) + 2;
	url = malloc(len);
	if (url == NULL)
		return -1;
	snprintf(url, len, "%s%s?%s", kvs__node_base_url(s->node, shard),
	         INTERNAL_SCAN, sc->query);
	memset(&hr, 0, sizeof(hr));
	hr.method = "GET";
	hr.url = url;
	sc->slots[i].sc = sc;
	sc->slots[i].i = i;
	rc = kvs__node_send(s->node, shard, &hr, scan_peer_done, &sc->slots[i]);
	free(url);
	return rc == KVS_OK ? 1 : -1;
}

/* The query string for peers. */
static char *peer_query(const struct scan *sc)
{
	char *p = kvs__url_escape(sc->prefix ? sc->prefix : "", sc->prefix_len);
	char *a = kvs__url_escape(sc->start ? sc->start : "", sc->start_len);
	char *q = NULL;
	size_t len;

	if (p != NULL && a != NULL) {
		len = strlen(p) + strlen(a) + 64;
		q = malloc(len);
		if (q != NULL)
			snprintf(q, len, "prefix=%s%s%s&limit=%zu&values=%d", p,
			         sc->start ? "&start_after=" : "", sc->start ? a : "",
			         sc->limit, sc->values);
	}
	free(p);
	free(a);
	return q;
}

/* Order the shards to ask: this node, peers believed up, the rest. */
static void choose_shards(struct scan *sc)
{
	struct server *s = sc->r->srv;
	size_t n = kvs_config_shard_count(s->cfg), holders = 0, want, k = 0;
	size_t *order = sc->spares; /* reused below */

	for (int pass = 0; pass < 3; pass++)
		for (size_t i = 0; i < n; i++) {
			int up = kvs__node_peer_up(s->node, i);

			if (kvs_config_shard(s->cfg, i)->weight <= 0.0)
				continue;
			if ((pass == 0 && i == s->self) ||
			    (pass == 1 && i != s->self && up) ||
			    (pass == 2 && i != s->self && !up))
				order[k++] = i;
		}
	holders = k;
	want = holders - (s->cc->replication < holders ? s->cc->replication
	                                                : holders) + 1;
	sc->n_targets = want;
	memcpy(sc->targets, order, want * sizeof(*order));
	memmove(sc->spares, order + want, (holders - want) * sizeof(*order));
	sc->n_spares = holders - want;
}

void handle_scan(struct req *r)
{
	size_t n = kvs_config_shard_count(r->srv->cfg);
	struct scan *sc;
	int waiting = 0;

	if (r->method != M_GET && r->method != M_HEAD) {
		req_not_allowed(r, "GET, HEAD");
		return;
	}
	sc = calloc(1, sizeof(*sc));
	if (sc == NULL) {
		req_fail(r, KVS_ENOMEM, "scanning");
		return;
	}
	pthread_mutex_init(&sc->mu, NULL);
	sc->r = r;
	sc->targets = calloc(n, sizeof(*sc->targets));
	sc->spares = calloc(n, sizeof(*sc->spares));
	sc->pages = calloc(n, sizeof(*sc->pages));
	sc->slots = calloc(n, sizeof(*sc->slots));
	if (sc->targets == NULL || sc->spares == NULL || sc->pages == NULL ||
	    sc->slots == NULL) {
		scan_free(sc);
		req_fail(r, KVS_ENOMEM, "scanning");
		return;
	}
	if (!scan_args(r, &sc->prefix, &sc->prefix_len, &sc->start,
	               &sc->start_len, &sc->limit, &sc->values)) {
		scan_free(sc);
		return;
	}
	sc->query = peer_query(sc);
	if (sc->query == NULL) {
		scan_free(sc);
		req_fail(r, KVS_ENOMEM, "scanning");
		return;
	}
	choose_shards(sc);
	/* Hold one count for this function so that no completion can answer
	 * before every request is out. */
	req_suspend(r);
	sc->pending = 1;
	for (size_t i = 0; i < sc->n_targets; i++) {
		int rc;

		pthread_mutex_lock(&sc->mu);
		sc->pending++;
		pthread_mutex_unlock(&sc->mu);
		rc = scan_fill(sc, i);
		while (rc < 0) {
			pthread_mutex_lock(&sc->mu);
			if (sc->next_spare < sc->n_spares) {
				sc->targets[i] = sc->spares[sc->next_spare++];
				pthread_mutex_unlock(&sc->mu);
				page_free(&sc->pages[i]);
				rc = scan_fill(sc, i);
			} else {
				sc->failed = 1;
				pthread_mutex_unlock(&sc->mu);
				break;
			}
		}
		if (rc != 1) {
			pthread_mutex_lock(&sc->mu);
			sc->pending--;
			pthread_mutex_unlock(&sc->mu);
		}
	}
	pthread_mutex_lock(&sc->mu);
	waiting = --sc->pending > 0;
	pthread_mutex_unlock(&sc->mu);
	if (waiting)
		return;
	if (sc->failed)
		req_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
		          "not enough shards answered to cover every key");
	else
		scan_answer(sc);
	scan_free(sc);
}
