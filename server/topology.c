/*
 * topology.c - the topology's epochs as this server runs them, and the
 * admin calls that change the topology in etcd.
 *
 * Views. Each epoch runs on a view: a node opened for that epoch's config
 * (the file's settings with etcd's shards and N/W/R), on the one store the
 * server opened at start. A request holds the view current when it
 * started until its end. When etcd has a newer epoch (coord.h's watch,
 * on its thread), a new view is opened and made current; the old one is
 * closed once the requests holding it have ended (its peer links end with
 * it, and peers link again to the new one). A shard that is no longer in
 * the topology stops, as after SIGTERM.
 *
 * Changes. In this version a change must move no data: only shards of
 * weight 0 (which own nothing) are added or removed, so that every key
 * keeps its owners and the epochs need no fencing between them. Moving
 * data (weights above 0) answers 501 not_supported.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_internal.h"
#include "log.h"
#include "server.h"

/* The longest an old view waits for its requests before it is left
 * open for good (a request outlives its timeouts only by a bug). */
#define RETIRE_WAIT_MS 60000u

/* ------------------------------------------------------------------ */
/* Views                                                                */

struct view *view_get(struct server *s)
{
	struct view *v;

	pthread_mutex_lock(&s->view_mu);
	v = s->view;
	atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
	pthread_mutex_unlock(&s->view_mu);
	return v;
}

void view_put(struct view *v)
{
	if (v != NULL)
		atomic_fetch_sub_explicit(&v->refs, 1, memory_order_release);
}

static struct view *view_open(struct server *s, const kvs_config *cfg,
                              uint64_t epoch, char *err, size_t errlen)
{
	struct view *v = calloc(1, sizeof(*v));
	kvs__node_options no;

	if (v == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	kvs__node_options_init(&no);
	no.log = log_node_event;
	no.epoch = epoch;
	no.store = s->store;
	if (kvs__node_open(&v->node, cfg, s->me->name, s->store_dir, &no, err,
	                   errlen) != KVS_OK) {
		free(v);
		return NULL;
	}
	v->cfg = cfg;
	v->epoch = kvs__node_epoch(v->node);
	snprintf(v->epoch_text, sizeof(v->epoch_text), "%llu",
	         (unsigned long long)v->epoch);
	atomic_init(&v->refs, 1); /* the server's, while current */
	return v;
}

int view_start(struct server *s, char *err, size_t errlen)
{
	if (kvs__node_store_open(&s->store, s->cfg, s->me->name, s->store_dir,
	                         err, errlen) != KVS_OK)
		return -1;
	s->view = view_open(s, s->cfg,
	                    s->coord != NULL ? kvs__coord_epoch(s->coord) : 0,
	                    err, errlen);
	return s->view != NULL ? 0 : -1;
}

/* Close a view that is no longer current, once nobody holds it (the
 * watch thread). */
static void retire(struct view *v)
{
	uint64_t start = kvs__mono_ms();

	view_put(v); /* the server's */
	while (atomic_load_explicit(&v->refs, memory_order_acquire) > 0) {
		if (kvs__mono_ms() - start > RETIRE_WAIT_MS) {
			log_msg(LL_ERROR,
			        "epoch %llu: %u requests still hold it after %u "
			        "s; its node stays open",
			        (unsigned long long)v->epoch,
			        atomic_load(&v->refs), RETIRE_WAIT_MS / 1000);
			return;
		}
		usleep(10000);
	}
	kvs__node_close(v->node);
	kvs_config_free(v->owned);
	free(v);
}

/* Say it once per epoch that cannot be applied (it is tried again every
 * look). */
static void say_failed(uint64_t epoch, const char *why, const char *running)
{
	static uint64_t said;

	if (said == epoch)
		return;
	said = epoch;
	log_msg(LL_ERROR, "epoch %llu: %s: this node stays at epoch %s (and "
	                  "tries again)",
	        (unsigned long long)epoch, why, running);
}

/* etcd has a newer topology (the watch thread): 0 when applied. */
static int on_topology(void *ud, kvs_config *topo, uint64_t epoch)
{
	struct server *s = ud;
	char err[KVS_ERRBUF_SIZE];
	kvs_config *cfg = NULL;
	struct view *v, *old;
	int rc;

	rc = kvs_config_parse(&cfg, s->config_text, s->config_len, s->cc->path,
	                      err);
	if (rc == KVS_OK) {
		rc = kvs__config_adopt_topology(cfg, topo);
		if (rc != KVS_ENOMEM)
			topo = NULL; /* taken, or freed */
	}
	if (rc != KVS_OK) {
		say_failed(epoch, rc == KVS_ENOMEM ? "out of memory" : err,
		           s->view->epoch_text);
		kvs_config_free(topo);
		kvs_config_free(cfg);
		return -1;
	}
	if (kvs_config_find_shard(cfg, s->me->name) == NULL) {
		log_msg(LL_WARN,
		        "epoch %llu: shard %s is no longer in the topology: "
		        "stopping",
		        (unsigned long long)epoch, s->me->name);
		kvs_config_free(cfg);
		kill(getpid(), SIGTERM);
		return 0;
	}
	v = view_open(s, cfg, epoch, err, sizeof(err));
	if (v == NULL) {
		say_failed(epoch, err, s->view->epoch_text);
		kvs_config_free(cfg);
		return -1;
	}
	v->owned = cfg;
	pthread_mutex_lock(&s->view_mu);
	old = s->view;
	s->view = v;
	pthread_mutex_unlock(&s->view_mu);
	log_msg(LL_INFO, "epoch %llu: %zu shards (was epoch %llu, %zu shards)",
	        (unsigned long long)epoch, kvs_config_shard_count(cfg),
	        (unsigned long long)old->epoch,
	        kvs_config_shard_count(old->cfg));
	retire(old);
	return 0;
}

int view_watch(struct server *s)
{
	if (s->coord == NULL)
		return 0;
	return kvs__coord_watch(s->coord, on_topology, s) == KVS_OK ? 0 : -1;
}

void view_stop(struct server *s)
{
	if (s->view != NULL)
		kvs__node_close(s->view->node);
	/* The view itself stays until view_free: the daemon's last
	 * connections still end (and put it) after this. */
}

void view_free(struct server *s)
{
	if (s->view == NULL)
		return;
	kvs_config_free(s->view->owned);
	free(s->view);
	s->view = NULL;
}

/* ------------------------------------------------------------------ */
/* Admin calls                                                          */

static void static_topology(struct req *r)
{
	reply_error(r, KVS_ESTATIC,
	            "this cluster's shards are those of its configuration "
	            "file: change the file and restart every node, or keep "
	            "the topology in etcd with a [coordination] table (see "
	            "docs/config.md)");
}

/* A change, made on a thread of its own (etcd may take seconds). */
struct change {
	struct req *r;
	enum { ADD, REMOVE, REWEIGHT } what;
	char *name;
	char *address;
	double weight;
	int rc;
	uint64_t epoch;
	char err[KVS_ERRBUF_SIZE];
};

static void change_free(void *p)
{
	struct change *c = p;

	free(c->name);
	free(c->address);
	free(c);
}

static cJSON *find_shard(cJSON *shards, const char *name, int *at)
{
	cJSON *sh;
	int i = 0;

	cJSON_ArrayForEach(sh, shards)
	{
		const cJSON *n = cJSON_GetObjectItemCaseSensitive(sh, "name");

		if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0) {
			*at = i;
			return sh;
		}
		i++;
	}
	return NULL;
}

static double weight_of(const cJSON *sh)
{
	const cJSON *w = cJSON_GetObjectItemCaseSensitive(sh, "weight");

	return cJSON_IsNumber(w) ? w->valuedouble : 1.0;
}

static const char MOVES[] =
        "would move data between shards, which this version cannot do "
        "at runtime: only shards of weight 0 (which hold no data) can be "
        "added or removed";

/* The edit (coord.h): the document as it is now in etcd. */
static int edit(void *ud, cJSON *doc, char *err, size_t errlen)
{
	struct change *c = ud;
	cJSON *shards = cJSON_GetObjectItemCaseSensitive(doc, "shards");
	cJSON *sh, *o;
	double next_idx = 0;
	int at = -1;

	if (!cJSON_IsArray(shards)) {
		snprintf(err, errlen, "etcd's topology has no shards");
		return KVS_ECONFIG;
	}
	sh = find_shard(shards, c->name, &at);
	switch (c->what) {
	case ADD:
		if (sh != NULL) {
			snprintf(err, errlen, "a shard named \"%s\" exists",
			         c->name);
			return KVS_ETOPOLOGY;
		}
		cJSON_ArrayForEach(o, shards)
		{
			const cJSON *a = cJSON_GetObjectItemCaseSensitive(
			        o, "address");
			const cJSON *i = cJSON_GetObjectItemCaseSensitive(o, "idx");

			if (cJSON_IsString(a) &&
			    strcmp(a->valuestring, c->address) == 0) {
				snprintf(err, errlen,
				         "address %s is shard %s's",
				         c->address,
				         cJSON_GetStringValue(cJSON_GetObjectItem(
				                 o, "name")));
				return KVS_ETOPOLOGY;
			}
			if (cJSON_IsNumber(i) && i->valuedouble >= next_idx)
				next_idx = i->valuedouble + 1;
		}
		if (c->weight > 0) {
			snprintf(err, errlen, "adding shard %s with weight %g %s",
			         c->name, c->weight, MOVES);
			return KVS_ENOTSUP;
		}
		o = cJSON_CreateObject();
		if (o == NULL ||
		    cJSON_AddStringToObject(o, "name", c->name) == NULL ||
		    cJSON_AddNumberToObject(o, "idx", next_idx) == NULL ||
		    cJSON_AddStringToObject(o, "address", c->address) == NULL ||
		    cJSON_AddNumberToObject(o, "weight", c->weight) == NULL) {
			cJSON_Delete(o);
			return KVS_ENOMEM;
		}
		cJSON_AddItemToArray(shards, o);
		return KVS_OK;
	case REMOVE:
	case REWEIGHT:
		if (sh == NULL) {
			snprintf(err, errlen, "no shard named \"%s\"", c->name);
			return KVS_NOTFOUND;
		}
		if (c->what == REWEIGHT) {
			if (weight_of(sh) == c->weight) {
				snprintf(err, errlen, "unchanged");
				return KVS_EEXISTS; /* nothing to write */
			}
			snprintf(err, errlen,
			         "changing shard %s's weight from %g to %g %s",
			         c->name, weight_of(sh), c->weight, MOVES);
			return KVS_ENOTSUP;
		}
		if (cJSON_GetArraySize(shards) <= 1) {
			snprintf(err, errlen,
			         "shard %s is the last one: a cluster keeps one",
			         c->name);
			return KVS_ETOPOLOGY;
		}
		if (weight_of(sh) > 0) {
			snprintf(err, errlen, "removing shard %s (weight %g) %s",
			         c->name, weight_of(sh), MOVES);
			return KVS_ENOTSUP;
		}
		cJSON_DeleteItemFromArray(shards, at);
		return KVS_OK;
	}
	return KVS_EINVAL;
}

static void *change_main(void *arg)
{
	struct change *c = arg;
	struct server *s = c->r->srv;

	pthread_setname_np(pthread_self(), "kvs-admin");
	c->rc = kvs__coord_change(s->coord, edit, c, &c->epoch, c->err,
	                          sizeof(c->err));
	req_node_done(c->r); /* c may be gone from here on */
	atomic_fetch_sub(&s->changes, 1);
	return NULL;
}

int view_changes_end(struct server *s, unsigned ms)
{
	uint64_t start = kvs__mono_ms();

	while (atomic_load(&s->changes) > 0) {
		if (kvs__mono_ms() - start > ms)
			return -1;
		usleep(10000);
	}
	return 0;
}

static void rendered(struct req *r)
{
	struct change *c = r->ctx;
	kvs__buf b;

	if (c->rc == KVS_EEXISTS && c->what == REWEIGHT) {
		/* The weight it asked for is the shard's already. */
		kvs__buf_init(&b, 0);
		kvs__buf_addf(&b, "{\"epoch\":%llu,\"changed\":false}",
		              (unsigned long long)kvs__coord_epoch(r->srv->coord));
		reply_json(r, 200, &b);
		return;
	}
	if (c->rc == KVS_ECONFIG && c->what == ADD) {
		/* The topology it would make fails the file's checks: the
		 * new shard's name or address. */
		reply_error(r, KVS_EBADARG, "%s", c->err);
		return;
	}
	if (c->rc != KVS_OK) {
		reply_error(r, c->rc, "%s", c->err[0] ? c->err
		                                      : kvs_strerror(c->rc));
		return;
	}
	kvs__buf_init(&b, 0);
	kvs__buf_addf(&b, "{\"epoch\":%llu,\"changed\":true}",
	              (unsigned long long)c->epoch);
	reply_json(r, 202, &b);
}

/* The shard's name after the path, decoded, or NULL (answered). */
static char *name_in_path(struct req *r)
{
	const char *tail = r->url + strlen(KVS_PATH_CLUSTER_SHARDS);
	size_t len;
	char *name;

	if (tail[0] != '/' || tail[1] == '\0' || strchr(tail + 1, '/')) {
		reply_error(r, KVS_EBADARG,
		            "expected %s/{name}", KVS_PATH_CLUSTER_SHARDS);
		return NULL;
	}
	name = malloc(strlen(tail + 1) + 1);
	if (name == NULL) {
		reply_fail(r, KVS_ENOMEM, "the shard's name");
		return NULL;
	}
	if (kvs__url_decode(tail + 1, strlen(tail + 1), name, &len, 0) !=
	            KVS_OK ||
	    memchr(name, '\0', len) != NULL) {
		free(name);
		reply_error(r, KVS_EBADENCODING, "the shard's name: malformed "
		                                 "percent-encoding");
		return NULL;
	}
	name[len] = '\0';
	return name;
}

/* The request's JSON object, or NULL (400 answered). */
static cJSON *json_body(struct req *r)
{
	cJSON *doc = r->body_len > 0 ? cJSON_ParseWithLength(r->body,
	                                                     r->body_len)
	                             : NULL;

	if (!cJSON_IsObject(doc)) {
		cJSON_Delete(doc);
		reply_error(r, KVS_EBADARG, "expected a JSON object");
		return NULL;
	}
	return doc;
}

/* "weight" of doc into *w (absent: keep *w); 0, or -1 (400 answered). */
static int weight_arg(struct req *r, const cJSON *doc, double *w)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(doc, "weight");

	if (x == NULL)
		return 0;
	if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble) ||
	    x->valuedouble < 0 || x->valuedouble > 1e6) {
		reply_error(r, KVS_EBADARG,
		            "weight: a number from 0 to 1000000");
		return -1;
	}
	*w = x->valuedouble;
	return 0;
}

void handle_shards(struct req *r)
{
	struct change *c;
	cJSON *doc = NULL;
	const cJSON *name, *address;
	pthread_t t;
	pthread_attr_t attr;

	if (r->srv->coord == NULL) {
		static_topology(r);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		reply_fail(r, KVS_ENOMEM, "the change");
		return;
	}
	r->ctx = c;
	r->ctx_free = change_free;
	c->r = r;
	c->weight = 1.0;
	if (r->method == M_POST) {
		if (strcmp(r->url, KVS_PATH_CLUSTER_SHARDS) != 0) {
			reply_error(r, KVS_EMETHOD, "POST %s adds a shard",
			            KVS_PATH_CLUSTER_SHARDS);
			return;
		}
		if ((doc = json_body(r)) == NULL)
			return;
		name = cJSON_GetObjectItemCaseSensitive(doc, "name");
		address = cJSON_GetObjectItemCaseSensitive(doc, "address");
		if (!cJSON_IsString(name) || name->valuestring[0] == '\0' ||
		    !cJSON_IsString(address) || address->valuestring[0] == '\0') {
			cJSON_Delete(doc);
			reply_error(r, KVS_EBADARG,
			            "a shard needs a \"name\" and an \"address\" "
			            "(host:port), and may have a \"weight\"");
			return;
		}
		c->what = ADD;
		c->name = strdup(name->valuestring);
		c->address = strdup(address->valuestring);
		if (weight_arg(r, doc, &c->weight) != 0) {
			cJSON_Delete(doc);
			return;
		}
		cJSON_Delete(doc);
		if (c->name == NULL || c->address == NULL) {
			reply_fail(r, KVS_ENOMEM, "the change");
			return;
		}
	} else {
		if ((c->name = name_in_path(r)) == NULL)
			return;
		c->what = r->method == M_DELETE ? REMOVE : REWEIGHT;
		if (c->what == REWEIGHT) {
			if ((doc = json_body(r)) == NULL)
				return;
			if (cJSON_GetObjectItemCaseSensitive(doc, "weight") ==
			    NULL) {
				cJSON_Delete(doc);
				reply_error(r, KVS_EMISSINGARG,
				            "PATCH takes {\"weight\": w}");
				return;
			}
			if (weight_arg(r, doc, &c->weight) != 0) {
				cJSON_Delete(doc);
				return;
			}
			cJSON_Delete(doc);
		}
	}
	req_start(r);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	atomic_fetch_add(&r->srv->changes, 1);
	if (pthread_create(&t, &attr, change_main, c) != 0) {
		atomic_fetch_sub(&r->srv->changes, 1);
		c->rc = KVS_ESYS;
		snprintf(c->err, sizeof(c->err), "cannot start the change");
		req_node_done(r);
	}
	pthread_attr_destroy(&attr);
	req_wait(r, rendered);
}

void handle_rebalance(struct req *r)
{
	kvs__buf b;

	if (r->srv->coord == NULL) {
		static_topology(r);
		return;
	}
	if (r->method == M_POST) {
		reply_error(r, KVS_ETOPOLOGY,
		            "no rebalance is running: this version moves no "
		            "data at runtime");
		return;
	}
	kvs__buf_init(&b, 0);
	kvs__buf_addf(&b,
	              "{\"state\":\"idle\",\"epoch\":%llu,\"moves\":[],"
	              "\"bytes_done\":0,\"bytes_total\":0,\"keys_done\":0,"
	              "\"keys_total\":0,\"rate_bytes_per_s\":0,\"eta_s\":0}",
	              (unsigned long long)kvs__coord_epoch(r->srv->coord));
	reply_json(r, 200, &b);
}
