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
 * Changes. A change that moves no data (a shard of weight 0 added or
 * removed) is one epoch. One that gives keys other owners (a shard
 * added with a weight, removed while it holds data, or given a new
 * weight) starts a move (config_internal.h), one at a time, through
 * these epochs, each written to etcd by compare-and-swap:
 *
 *   0. (a shard added with a weight) PENDING: it joins with weight 0
 *      (it owns nothing yet, so it can start and serve); once it runs,
 *      its own mover starts the move with its weight;
 *   1. DUAL: writes go to the owners before and after, reads to those
 *      before. Once every registered node runs it (each says which epoch
 *      it runs in its registration), each shard with a weight copies
 *      what it gains from the peers that held it (node.h) and then
 *      writes its name under the move's "synced";
 *   2. READ_NEW, written with the last name: reads go to the new owners;
 *   3. once every node runs READ_NEW and move_grace_s has passed, the
 *      topology without the move: the old owners drop what they no
 *      longer own, and a shard removed stops.
 *
 * The mover thread of every node drives its own part; any node may write
 * the next step (the compare-and-swap lets one through).
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
	no.drop_unowned = s->coord != NULL;
	no.fence = atomic_load(&s->fence);
	if (kvs__node_open(&v->node, cfg, s->me->name, s->store_dir, &no, err,
	                   errlen) != KVS_OK) {
		free(v);
		return NULL;
	}
	v->srv = s;
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
static void retire(struct server *s, struct view *v)
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
	{
		kvs__move_stats ms;

		kvs__node_move_stats(v->node, &ms);
		atomic_fetch_add(&s->moved_keys, ms.keys);
		atomic_fetch_add(&s->moved_bytes, ms.bytes);
		atomic_fetch_add(&s->dropped, ms.dropped);
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
	log_msg(LL_INFO, "epoch %llu: %zu shards%s (was epoch %llu, %zu shards)",
	        (unsigned long long)epoch, kvs_config_shard_count(cfg),
	        kvs__config_move(cfg, NULL) == KVS__MOVE_DUAL
	                ? ", moving: writes to both sides"
	        : kvs__config_move(cfg, NULL) == KVS__MOVE_READ_NEW
	                ? ", moving: reads from the new owners"
	                : "",
	        (unsigned long long)old->epoch,
	        kvs_config_shard_count(old->cfg));
	retire(s, old);
	/* Every request of the older epochs has ended: say so (a move's
	 * next step waits for every node to have). */
	if (kvs__coord_applied(s->coord, epoch) != KVS_OK)
		log_msg(LL_WARN, "epoch %llu: cannot say so in etcd yet",
		        (unsigned long long)epoch);
	return 0;
}

static void *mover_main(void *arg);

int view_watch(struct server *s)
{
	if (s->coord == NULL)
		return 0;
	if (kvs__coord_watch(s->coord, on_topology, s) != KVS_OK)
		return -1;
	if (pthread_create(&s->mover, NULL, mover_main, s) != 0)
		return -1;
	s->mover_started = 1;
	return 0;
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
	enum { ADD, REMOVE, REWEIGHT, PAUSE, RESUME, CANCEL } what;
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

/* The move under way in doc, as a 409 (else 0). */
static int moving(cJSON *doc, char *err, size_t errlen)
{
	cJSON *m = cJSON_GetObjectItemCaseSensitive(doc, "move");
	const char *phase = cJSON_GetStringValue(
	        cJSON_GetObjectItemCaseSensitive(m, "phase"));

	if (m == NULL)
		return 0;
	snprintf(err, errlen,
	         "a rebalance is under way (phase %s): one change that moves "
	         "data at a time; GET %s says when it has ended",
	         phase != NULL ? phase : "?", KVS_PATH_REBALANCE);
	return KVS_ETOPOLOGY;
}

/* Start a move in doc: every shard's weight so far becomes its
 * from_weight (the caller then changes the weights). */
static int start_move(cJSON *doc, cJSON *shards)
{
	cJSON *sh, *m;

	cJSON_ArrayForEach(sh, shards)
	{
		cJSON_DeleteItemFromObjectCaseSensitive(sh, "from_weight");
		if (cJSON_AddNumberToObject(sh, "from_weight", weight_of(sh)) ==
		    NULL)
			return KVS_ENOMEM;
	}
	m = cJSON_AddObjectToObject(doc, "move");
	if (m == NULL || cJSON_AddStringToObject(m, "phase", "dual") == NULL ||
	    cJSON_AddArrayToObject(m, "synced") == NULL)
		return KVS_ENOMEM;
	return KVS_OK;
}

/* Shards of doc with a weight, but for the one at skip (-1: none). */
static int holders_but(cJSON *shards, int skip)
{
	cJSON *sh;
	int i = 0, n = 0;

	cJSON_ArrayForEach(sh, shards)
	{
		if (i++ != skip && weight_of(sh) > 0)
			n++;
	}
	return n;
}

static int set_weight(cJSON *sh, double w)
{
	cJSON_DeleteItemFromObjectCaseSensitive(sh, "weight");
	return cJSON_AddNumberToObject(sh, "weight", w) != NULL ? KVS_OK
	                                                        : KVS_ENOMEM;
}

/* Pause, resume or cancel the move in doc. */
static int edit_rebalance(struct change *c, cJSON *doc, cJSON *shards,
                          char *err, size_t errlen)
{
	cJSON *m = cJSON_GetObjectItemCaseSensitive(doc, "move"), *sh;
	const char *phase = cJSON_GetStringValue(
	        cJSON_GetObjectItemCaseSensitive(m, "phase"));
	int paused = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "paused"));

	if (m == NULL || phase == NULL) {
		snprintf(err, errlen, "no rebalance is running");
		return KVS_ETOPOLOGY;
	}
	if (c->what != CANCEL) {
		if (paused == (c->what == PAUSE)) {
			snprintf(err, errlen, "unchanged");
			return KVS_EEXISTS; /* nothing to write */
		}
		cJSON_DeleteItemFromObjectCaseSensitive(m, "paused");
		if (c->what == PAUSE && cJSON_AddTrueToObject(m, "paused") == NULL)
			return KVS_ENOMEM;
		return KVS_OK;
	}
	if (strcmp(phase, "read_new") == 0) {
		snprintf(err, errlen,
		         "reads already follow the new owners: let the "
		         "rebalance end, then make the opposite change");
		return KVS_ETOPOLOGY;
	}
	/* Back to the weights before: what was copied is dropped as no
	 * longer owned; a shard that joined for it leaves, weightless,
	 * once every node runs this epoch (the mover's LEFT step). */
	cJSON_DeleteItemFromObjectCaseSensitive(doc, "move");
	for (int i = cJSON_GetArraySize(shards) - 1; i >= 0; i--) {
		const cJSON *from;

		sh = cJSON_GetArrayItem(shards, i);
		from = cJSON_GetObjectItemCaseSensitive(sh, "from_weight");
		if (cJSON_GetObjectItemCaseSensitive(sh, "join_weight") != NULL) {
			cJSON_DeleteItemFromArray(shards, i); /* never joined */
			continue;
		}
		if (cJSON_IsNumber(from) && set_weight(sh, from->valuedouble) !=
		                                    KVS_OK)
			return KVS_ENOMEM;
		cJSON_DeleteItemFromObjectCaseSensitive(sh, "from_weight");
		cJSON_DeleteItemFromObjectCaseSensitive(sh, "leaving");
		if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(sh, "joined"))) {
			cJSON_DeleteItemFromObjectCaseSensitive(sh, "joined");
			if (set_weight(sh, 0) != KVS_OK ||
			    cJSON_AddTrueToObject(sh, "leaving") == NULL)
				return KVS_ENOMEM;
		}
	}
	return KVS_OK;
}

/* The edit (coord.h): the document as it is now in etcd. */
static int edit(void *ud, cJSON *doc, char *err, size_t errlen)
{
	struct change *c = ud;
	cJSON *shards = cJSON_GetObjectItemCaseSensitive(doc, "shards");
	cJSON *sh, *o, *m;
	double next_idx = 0;
	int at = -1;

	if (!cJSON_IsArray(shards)) {
		snprintf(err, errlen, "etcd's topology has no shards");
		return KVS_ECONFIG;
	}
	if (c->what == PAUSE || c->what == RESUME || c->what == CANCEL)
		return edit_rebalance(c, doc, shards, err, errlen);
	sh = find_shard(shards, c->name, &at);
	if (c->what == REMOVE && sh != NULL &&
	    cJSON_GetObjectItemCaseSensitive(sh, "join_weight") != NULL) {
		/* A shard that never joined: nothing moved yet. */
		cJSON_DeleteItemFromObjectCaseSensitive(doc, "move");
		cJSON_DeleteItemFromArray(shards, at);
		return KVS_OK;
	}
	if (c->what != ADD && sh == NULL) {
		snprintf(err, errlen, "no shard named \"%s\"", c->name);
		return KVS_NOTFOUND;
	}
	if (moving(doc, err, errlen) != 0)
		return KVS_ETOPOLOGY;
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
		/* With a weight: it joins with none, and its move starts
		 * once it runs (step 0 above). */
		o = cJSON_CreateObject();
		if (o == NULL ||
		    cJSON_AddStringToObject(o, "name", c->name) == NULL ||
		    cJSON_AddNumberToObject(o, "idx", next_idx) == NULL ||
		    cJSON_AddStringToObject(o, "address", c->address) == NULL ||
		    cJSON_AddNumberToObject(o, "weight", 0) == NULL ||
		    (c->weight > 0 &&
		     (cJSON_AddNumberToObject(o, "join_weight", c->weight) ==
		              NULL ||
		      (m = cJSON_AddObjectToObject(doc, "move")) == NULL ||
		      cJSON_AddStringToObject(m, "phase", "pending") == NULL ||
		      cJSON_AddStringToObject(m, "joining", c->name) == NULL))) {
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
			if (c->weight == 0 && holders_but(shards, at) == 0) {
				snprintf(err, errlen,
				         "shard %s is the last one with a weight: "
				         "its data would have nowhere to go",
				         c->name);
				return KVS_ETOPOLOGY;
			}
			if (start_move(doc, shards) != KVS_OK)
				return KVS_ENOMEM;
			return set_weight(sh, c->weight);
		}
		if (cJSON_GetArraySize(shards) <= 1) {
			snprintf(err, errlen,
			         "shard %s is the last one: a cluster keeps one",
			         c->name);
			return KVS_ETOPOLOGY;
		}
		if (weight_of(sh) > 0) {
			/* Its data goes to the others first: it leaves once
			 * the move has ended. */
			if (holders_but(shards, at) == 0) {
				snprintf(err, errlen,
				         "shard %s is the last one with a weight: "
				         "its data would have nowhere to go",
				         c->name);
				return KVS_ETOPOLOGY;
			}
			if (start_move(doc, shards) != KVS_OK ||
			    set_weight(sh, 0) != KVS_OK ||
			    cJSON_AddTrueToObject(sh, "leaving") == NULL)
				return KVS_ENOMEM;
			return KVS_OK;
		}
		cJSON_DeleteItemFromArray(shards, at);
		return KVS_OK;
	case PAUSE:
	case RESUME:
	case CANCEL:
		break; /* edit_rebalance's */
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

	if (c->rc == KVS_EEXISTS &&
	    (c->what == REWEIGHT || c->what == PAUSE || c->what == RESUME)) {
		/* The weight it asked for is the shard's already, or the
		 * move is paused (or running) already. */
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

static void start_change(struct req *r, struct change *c);

/* A change for r (its context), or NULL (answered). */
static struct change *change_new(struct req *r)
{
	struct change *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		reply_fail(r, KVS_ENOMEM, "the change");
		return NULL;
	}
	r->ctx = c;
	r->ctx_free = change_free;
	c->r = r;
	c->weight = 1.0;
	return c;
}

void handle_shards(struct req *r)
{
	struct change *c;
	cJSON *doc = NULL;
	const cJSON *name, *address;

	if (r->srv->coord == NULL) {
		static_topology(r);
		return;
	}
	if ((c = change_new(r)) == NULL)
		return;
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
	start_change(r, c);
}

/* Make change c on a thread of its own; r is answered when it is made. */
static void start_change(struct req *r, struct change *c)
{
	pthread_t t;
	pthread_attr_t attr;

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

/* ------------------------------------------------------------------ */
/* Moves                                                                */

/* How often the mover looks at the move. */
#define MOVER_TICK_MS 250u

/* A step of a move written by a node (mover thread). */
struct step {
	enum { JOIN, SYNCED, FINISH, LEFT } what;
	const char *name; /* SYNCED: this shard's */
};

static int in_names(const cJSON *names, const char *name)
{
	const cJSON *x;

	cJSON_ArrayForEach(x, names)
	{
		if (cJSON_IsString(x) && strcmp(x->valuestring, name) == 0)
			return 1;
	}
	return 0;
}

/* The edit (coord.h) of a step: KVS_EEXISTS when it is made already. */
static int edit_step(void *ud, cJSON *doc, char *err, size_t errlen)
{
	struct step *st = ud;
	cJSON *m = cJSON_GetObjectItemCaseSensitive(doc, "move");
	cJSON *shards = cJSON_GetObjectItemCaseSensitive(doc, "shards");
	cJSON *synced = cJSON_GetObjectItemCaseSensitive(m, "synced");
	const char *phase = cJSON_GetStringValue(
	        cJSON_GetObjectItemCaseSensitive(m, "phase"));
	cJSON *sh;
	int all = 1;

	(void)err;
	(void)errlen;
	if (st->what == LEFT && m == NULL && cJSON_IsArray(shards)) {
		int left = 0;

		for (int i = cJSON_GetArraySize(shards) - 1; i >= 0; i--) {
			sh = cJSON_GetArrayItem(shards, i);
			if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
			            sh, "leaving"))) {
				cJSON_DeleteItemFromArray(shards, i);
				left++;
			}
		}
		return left > 0 ? KVS_OK : KVS_EEXISTS;
	}
	if (phase == NULL || !cJSON_IsArray(shards))
		return KVS_EEXISTS; /* the move has ended */
	if (st->what == JOIN) {
		int at = -1;

		sh = find_shard(shards, st->name, &at);
		if (strcmp(phase, "pending") != 0 || sh == NULL ||
		    !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(
		            sh, "join_weight")))
			return KVS_EEXISTS;
		cJSON_DeleteItemFromObjectCaseSensitive(doc, "move");
		if (start_move(doc, shards) != KVS_OK ||
		    set_weight(sh, cJSON_GetObjectItemCaseSensitive(
		                           sh, "join_weight")
		                           ->valuedouble) != KVS_OK)
			return KVS_ENOMEM;
		cJSON_DeleteItemFromObjectCaseSensitive(sh, "join_weight");
		if (cJSON_AddTrueToObject(sh, "joined") == NULL)
			return KVS_ENOMEM;
		return KVS_OK;
	}
	if (st->what == SYNCED) {
		if (strcmp(phase, "dual") != 0)
			return KVS_EEXISTS;
		if (!cJSON_IsArray(synced)) {
			cJSON_DeleteItemFromObjectCaseSensitive(m, "synced");
			if ((synced = cJSON_AddArrayToObject(m, "synced")) == NULL)
				return KVS_ENOMEM;
		}
		if (in_names(synced, st->name))
			return KVS_EEXISTS;
		cJSON_AddItemToArray(synced, cJSON_CreateString(st->name));
		/* The last one moves reads over. */
		cJSON_ArrayForEach(sh, shards)
		{
			const char *name = cJSON_GetStringValue(
			        cJSON_GetObjectItemCaseSensitive(sh, "name"));

			if (weight_of(sh) > 0 && name != NULL &&
			    !in_names(synced, name))
				all = 0;
		}
		if (all) {
			cJSON_DeleteItemFromObjectCaseSensitive(m, "phase");
			if (cJSON_AddStringToObject(m, "phase", "read_new") == NULL)
				return KVS_ENOMEM;
		}
		return KVS_OK;
	}
	if (strcmp(phase, "read_new") != 0)
		return KVS_EEXISTS;
	/* A shard that leaves stays, with no weight, until every node runs
	 * this epoch (LEFT): a node still on the last one writes to it. */
	cJSON_DeleteItemFromObjectCaseSensitive(doc, "move");
	cJSON_ArrayForEach(sh, shards)
	{
		cJSON_DeleteItemFromObjectCaseSensitive(sh, "from_weight");
		cJSON_DeleteItemFromObjectCaseSensitive(sh, "joined");
	}
	return KVS_OK;
}

/* Write a step; 0 when it is made (by this node or another). */
static int write_step(struct server *s, struct step *st, uint64_t from)
{
	char err[KVS_ERRBUF_SIZE] = "";
	uint64_t epoch = 0;
	int rc = kvs__coord_change(s->coord, edit_step, st, &epoch, err,
	                           sizeof(err));

	if (rc == KVS_EEXISTS)
		return 0;
	if (rc != KVS_OK) {
		log_msg(LL_WARN, "epoch %llu: cannot write the move's next step "
		                 "(tried again): %s",
		        (unsigned long long)from, err[0] ? err : kvs_strerror(rc));
		return -1;
	}
	log_msg(LL_INFO, "epoch %llu: %s", (unsigned long long)epoch,
	        st->what == JOIN     ? "this shard joins: the move starts"
	        : st->what == SYNCED ? "this shard has copied what it gains"
	        : st->what == FINISH ? "the move has ended"
	                             : "the shards that left are removed");
	return 0;
}

/* Whether every registered node runs epoch (then the fence rises to it);
 * says who the move waits for, once per epoch (said NULL: nothing). */
static int all_run(struct server *s, uint64_t epoch, uint64_t *said)
{
	char who[128] = "";
	size_t behind = 0;
	int rc = kvs__coord_all_applied(s->coord, epoch, &behind, who,
	                                sizeof(who));

	if (rc == KVS_OK && behind == 0) {
		struct view *v;

		if (atomic_load(&s->fence) < epoch)
			atomic_store(&s->fence, epoch);
		v = view_get(s);
		kvs__node_set_fence(v->node, epoch);
		view_put(v);
		return 1;
	}
	if (said != NULL && *said != epoch) {
		*said = epoch;
		log_msg(LL_INFO, "epoch %llu: the move waits for %s",
		        (unsigned long long)epoch,
		        rc != KVS_OK ? "etcd" : who);
	}
	return 0;
}

static int string_is(const cJSON *x, const char *s)
{
	return cJSON_IsString(x) && strcmp(x->valuestring, s) == 0;
}

/* What etcd's document (as last read) waits for: *joining, this shard
 * to join; *left, shards that have left (a move ended) to be removed. */
static void waits_for(struct server *s, int *joining, int *left)
{
	char *text = NULL;
	size_t len = 0;
	cJSON *doc = NULL, *m, *sh;

	*joining = *left = 0;
	if (kvs__coord_read(s->coord, &text, &len) == KVS_OK)
		doc = cJSON_ParseWithLength(text, len);
	free(text);
	m = cJSON_GetObjectItemCaseSensitive(doc, "move");
	*joining = string_is(cJSON_GetObjectItemCaseSensitive(m, "joining"),
	                     s->me->name) &&
	           string_is(cJSON_GetObjectItemCaseSensitive(m, "phase"),
	                     "pending") &&
	           !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "paused"));
	cJSON_ArrayForEach(sh, cJSON_GetObjectItemCaseSensitive(doc, "shards"))
	{
		if (m == NULL && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
		                         sh, "leaving")))
			*left = 1;
	}
	cJSON_Delete(doc);
}

static void *mover_main(void *arg)
{
	struct server *s = arg;
	uint64_t reported = 0, said = 0, read_new = 0, read_new_ms = 0;
	unsigned ticks = 0;
	uint64_t grace_ms = (uint64_t)s->cc->move_grace_s * 1000u;

	pthread_setname_np(pthread_self(), "kvs-mover");
	pthread_mutex_lock(&s->mover_mu);
	while (!s->mover_stop) {
		struct timespec until;
		struct view *v;
		kvs__move_stats ms;
		uint64_t epoch;
		int gains, joining = 0, left = 0;
		struct step st;

		pthread_mutex_unlock(&s->mover_mu);
		v = view_get(s);
		epoch = v->epoch;
		kvs__node_move_stats(v->node, &ms);
		gains = kvs_config_find_shard(v->cfg, s->me->name) != NULL &&
		        kvs_config_find_shard(v->cfg, s->me->name)->weight > 0;
		if (ms.phase == KVS__MOVE_DUAL && !ms.asked &&
		    all_run(s, epoch, &said)) {
			log_msg(LL_INFO,
			        "epoch %llu: every node writes to both sides%s",
			        (unsigned long long)epoch,
			        gains ? ": copying what this shard gains" : "");
			kvs__node_move_copy(v->node);
		}
		view_put(v);
		st.name = s->me->name;
		/* The fence follows the epochs, a look a second. */
		if (atomic_load(&s->fence) < epoch && ticks++ % 4 == 0)
			(void)all_run(s, epoch, NULL);
		if (ms.phase == KVS__MOVE_NONE)
			waits_for(s, &joining, &left);
		if (ms.paused) {
			/* Nothing moves on until it is resumed. */
		} else if (ms.phase == KVS__MOVE_NONE && joining &&
		           reported != epoch) {
			st.what = JOIN;
			if (write_step(s, &st, epoch) == 0)
				reported = epoch;
		} else if (ms.phase == KVS__MOVE_NONE && left &&
		           all_run(s, epoch, &said)) {
			st.what = LEFT;
			(void)write_step(s, &st, epoch);
		} else if (ms.phase == KVS__MOVE_DUAL && ms.copied && gains &&
		    reported != epoch) {
			st.what = SYNCED;
			if (write_step(s, &st, epoch) == 0)
				reported = epoch;
		} else if (ms.phase == KVS__MOVE_READ_NEW) {
			if (read_new != epoch) {
				read_new = epoch;
				read_new_ms = kvs__mono_ms();
			}
			st.what = FINISH;
			if (kvs__mono_ms() - read_new_ms >= grace_ms &&
			    all_run(s, epoch, &said))
				(void)write_step(s, &st, epoch);
		}
		kvs__realtime_after(&until, MOVER_TICK_MS);
		pthread_mutex_lock(&s->mover_mu);
		while (!s->mover_stop &&
		       pthread_cond_timedwait(&s->mover_cv, &s->mover_mu,
		                              &until) == 0)
			;
	}
	pthread_mutex_unlock(&s->mover_mu);
	return NULL;
}

void view_mover_stop(struct server *s)
{
	if (!s->mover_started)
		return;
	pthread_mutex_lock(&s->mover_mu);
	s->mover_stop = 1;
	pthread_cond_broadcast(&s->mover_cv);
	pthread_mutex_unlock(&s->mover_mu);
	pthread_join(s->mover, NULL);
	s->mover_started = 0;
}

void view_move_stats(struct view *v, kvs__move_stats *ms)
{
	kvs__node_move_stats(v->node, ms);
	ms->keys += atomic_load(&v->srv->moved_keys);
	ms->bytes += atomic_load(&v->srv->moved_bytes);
	ms->dropped += atomic_load(&v->srv->dropped);
}

/* The document's move as JSON fields of the answer. */
static void move_fields(kvs__buf *b, const cJSON *m)
{
	const cJSON *synced = cJSON_GetObjectItemCaseSensitive(m, "synced");
	char *names = cJSON_IsArray(synced) ? cJSON_PrintUnformatted(synced)
	                                    : NULL;

	kvs__buf_addf(b, ",\"phase\":\"%s\",\"synced\":%s",
	              cJSON_GetStringValue(
	                      cJSON_GetObjectItemCaseSensitive(m, "phase")),
	              names != NULL ? names : "[]");
	free(names);
}

void handle_rebalance(struct req *r)
{
	struct server *s = r->srv;
	kvs__buf b;
	char *text = NULL;
	size_t len = 0;
	cJSON *doc = NULL, *m;
	kvs__move_stats ms;
	int rc;

	if (s->coord == NULL) {
		static_topology(r);
		return;
	}
	rc = kvs__coord_read(s->coord, &text, &len);
	if (rc == KVS_OK)
		doc = cJSON_ParseWithLength(text, len);
	free(text);
	m = cJSON_GetObjectItemCaseSensitive(doc, "move");
	if (r->method == M_POST) {
		static const char *const actions[] = {"/pause", "/resume",
		                                      "/cancel"};
		const char *tail = r->url + strlen(KVS_PATH_REBALANCE);
		struct change *c;
		int a = 0;

		cJSON_Delete(doc);
		while (a < 3 && strcmp(tail, actions[a]) != 0)
			a++;
		if (a == 3) {
			reply_error(r, KVS_NOTFOUND,
			            "POST %s/pause, /resume or /cancel",
			            KVS_PATH_REBALANCE);
			return;
		}
		if ((c = change_new(r)) == NULL)
			return;
		c->what = a == 0 ? PAUSE : a == 1 ? RESUME : CANCEL;
		start_change(r, c);
		return;
	}
	if (rc != KVS_OK) {
		cJSON_Delete(doc);
		reply_error(r, rc == KVS_NOTFOUND ? KVS_EUNAVAIL : rc,
		            "the topology has not been read from etcd yet");
		return;
	}
	view_move_stats(r->view, &ms);
	kvs__buf_init(&b, 0);
	kvs__buf_addf(&b, "{\"state\":\"%s\",\"epoch\":%.0f",
	              m == NULL ? "idle"
	              : cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m,
	                                                              "paused"))
	                      ? "paused"
	                      : "running",
	              cJSON_GetNumberValue(
	                      cJSON_GetObjectItemCaseSensitive(doc, "epoch")));
	if (m != NULL)
		move_fields(&b, m);
	kvs__buf_addf(&b,
	              ",\"node\":{\"shard\":\"%s\",\"epoch\":%llu,"
	              "\"copying\":%s,\"copied\":%s,\"segments_gained\":%llu,"
	              "\"copy_passes\":%llu,\"keys_copied\":%llu,"
	              "\"bytes_copied\":%llu,\"records_dropped\":%llu}}",
	              s->me->name, (unsigned long long)r->view->epoch,
	              ms.asked && !ms.copied ? "true" : "false",
	              ms.copied ? "true" : "false",
	              (unsigned long long)ms.gained,
	              (unsigned long long)ms.passes,
	              (unsigned long long)ms.keys,
	              (unsigned long long)ms.bytes,
	              (unsigned long long)ms.dropped);
	cJSON_Delete(doc);
	reply_json(r, 200, &b);
}
