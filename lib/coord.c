/*
 * coord.c - the topology kept in etcd, and the nodes registered there.
 *
 * The topology document (format 1):
 *
 *   {"format":1,"epoch":1,"replication":3,"write_quorum":2,
 *    "read_quorum":2,"shards":[{"name":"shard-1","idx":0,
 *    "address":"localhost:8081","weight":1}, ...]}
 *
 * It is read back through the config loader (written out as the TOML of
 * its [cluster] quorums and [[shards]]), so that etcd's topology passes the
 * same checks as a file's. Two topologies are the same when that
 * normalised form is.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config_internal.h"
#include "coord.h"
#include "etcd.h"
#include "kvshard/common.h"
#include "node.h"
#include "util.h"

#define TOPOLOGY_FORMAT 1
#define ETCD_TIMEOUT_MS 2000u
/* Between renewals while etcd cannot be reached. */
#define RETRY_MS 1000u
#define SEED_TRIES 5

struct kvs__coord {
	kvs__etcd *etcd;
	char *prefix;
	char *topology_key; /* <prefix>/topology */
	unsigned ttl_s;
	_Atomic uint64_t epoch; /* agreed on at start, or last applied */
	kvs__coord_log_fn log;
	void *log_ud;
	/* Registration. */
	char *node_key;   /* <prefix>/nodes/<name> */
	char *address;    /* the node's, as registered */
	_Atomic uint64_t applied; /* the epoch it says it runs */
	_Atomic int64_t lease;    /* 0: none held */
	int thread_started;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int closing;
	int unreachable;  /* an outage already logged */
	/* The watch. */
	int watch_started;
	pthread_t watch_thread;
	kvs__coord_topology_fn on_topology;
	void *on_topology_ud;
	char *last_doc;    /* the topology as last read (watch); under mu */
	char **registered; /* names, as last listed; under mu */
	size_t n_registered;
};

static void say(const kvs__coord *co, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void say(const kvs__coord *co, int level, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (co->log == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	co->log(co->log_ud, level, msg);
}

/* The topology of cfg as a document (epoch 0: left out, to compare). */
static char *topology_doc(const kvs_config *cfg, uint64_t epoch)
{
	const kvs_cluster_config *c = kvs_config_cluster(cfg);
	cJSON *doc = cJSON_CreateObject(), *shards;
	char *text = NULL;

	if (doc == NULL)
		return NULL;
	cJSON_AddNumberToObject(doc, "format", TOPOLOGY_FORMAT);
	if (epoch != 0)
		cJSON_AddNumberToObject(doc, "epoch", (double)epoch);
	cJSON_AddNumberToObject(doc, "replication", c->replication);
	cJSON_AddNumberToObject(doc, "write_quorum", c->write_quorum);
	cJSON_AddNumberToObject(doc, "read_quorum", c->read_quorum);
	shards = cJSON_AddArrayToObject(doc, "shards");
	for (size_t i = 0; shards != NULL && i < kvs_config_shard_count(cfg);
	     i++) {
		const kvs_shard_config *sh = kvs_config_shard(cfg, i);
		cJSON *o = cJSON_CreateObject();

		if (o == NULL)
			break;
		cJSON_AddStringToObject(o, "name", sh->name);
		cJSON_AddNumberToObject(o, "idx", sh->idx);
		cJSON_AddStringToObject(o, "address", sh->address);
		cJSON_AddNumberToObject(o, "weight", sh->weight);
		cJSON_AddItemToArray(shards, o);
	}
	text = cJSON_PrintUnformatted(doc);
	cJSON_Delete(doc);
	return text;
}

/* Append s as a TOML basic string: JSON's escapes are TOML's. */
static void toml_string(kvs__buf *b, const char *s)
{
	cJSON *str = cJSON_CreateString(s);
	char *q = str != NULL ? cJSON_PrintUnformatted(str) : NULL;

	if (q == NULL)
		b->rc = KVS_ENOMEM;
	else
		kvs__buf_adds(b, q);
	free(q);
	cJSON_Delete(str);
}

static int want_number(const cJSON *o, const char *name, double *v)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, name);

	if (!cJSON_IsNumber(x))
		return -1;
	*v = x->valuedouble;
	return 0;
}

/*
 * Parse etcd's document into a config of its own (*out) and its epoch,
 * through the config loader. err gets the reason on KVS_ECONFIG.
 */
static int parse_doc(const char *text, size_t len, const char *where,
                     kvs_config **out, uint64_t *epoch, char *err,
                     size_t err_len)
{
	cJSON *doc = cJSON_ParseWithLength(text, len);
	const cJSON *shards, *sh;
	char cerr[KVS_ERRBUF_SIZE];
	double format = 0, ep = 0, n = 0, w = 0, r = 0;
	const cJSON *move;
	double *before = NULL;
	size_t n_before = 0;
	int phase = KVS__MOVE_NONE, paused;
	kvs__buf b;
	int rc;

	*out = NULL;
	if (doc == NULL || want_number(doc, "format", &format) != 0 ||
	    want_number(doc, "epoch", &ep) != 0 ||
	    want_number(doc, "replication", &n) != 0 ||
	    want_number(doc, "write_quorum", &w) != 0 ||
	    want_number(doc, "read_quorum", &r) != 0 ||
	    !cJSON_IsArray(shards = cJSON_GetObjectItemCaseSensitive(
	                           doc, "shards"))) {
		snprintf(err, err_len,
		         "%s: not a topology document (format, epoch, "
		         "replication, write_quorum, read_quorum, shards)",
		         where);
		cJSON_Delete(doc);
		return KVS_ECONFIG;
	}
	if (format != TOPOLOGY_FORMAT || !(ep >= 1 && ep < 9e15)) {
		snprintf(err, err_len,
		         "%s: topology format %g, epoch %g: this version reads "
		         "format %d with an epoch from 1",
		         where, format, ep, TOPOLOGY_FORMAT);
		cJSON_Delete(doc);
		return KVS_ECONFIG;
	}
	move = cJSON_GetObjectItemCaseSensitive(doc, "move");
	paused = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(move, "paused"));
	/* A move that waits for its shard to join changes no ring yet. */
	if (move != NULL &&
	    cJSON_IsString(cJSON_GetObjectItemCaseSensitive(move, "phase")) &&
	    strcmp(cJSON_GetObjectItemCaseSensitive(move, "phase")->valuestring,
	           "pending") == 0)
		move = NULL;
	if (move != NULL) {
		const char *ph = cJSON_GetStringValue(
		        cJSON_GetObjectItemCaseSensitive(move, "phase"));

		phase = ph == NULL                     ? -1
		        : strcmp(ph, "dual") == 0     ? KVS__MOVE_DUAL
		        : strcmp(ph, "read_new") == 0 ? KVS__MOVE_READ_NEW
		                                      : -1;
		before = malloc((size_t)cJSON_GetArraySize(shards) *
		                        sizeof(*before) +
		                1);
		if (phase < 0 || before == NULL) {
			snprintf(err, err_len,
			         "%s: a move's phase is \"dual\" or \"read_new\"",
			         where);
			free(before);
			cJSON_Delete(doc);
			return before == NULL && phase >= 0 ? KVS_ENOMEM
			                                    : KVS_ECONFIG;
		}
	}
	kvs__buf_init(&b, 0);
	kvs__buf_addf(&b, "[cluster]\nreplication = %.0f\nwrite_quorum = %.0f\n"
	                  "read_quorum = %.0f\n",
	              n, w, r);
	cJSON_ArrayForEach(sh, shards)
	{
		const cJSON *name = cJSON_GetObjectItemCaseSensitive(sh, "name");
		const cJSON *addr = cJSON_GetObjectItemCaseSensitive(sh, "address");
		double idx = -1, weight = -1;

		if (!cJSON_IsString(name) || !cJSON_IsString(addr) ||
		    want_number(sh, "idx", &idx) != 0 ||
		    want_number(sh, "weight", &weight) != 0) {
			snprintf(err, err_len,
			         "%s: a shard without name, idx, address and "
			         "weight",
			         where);
			kvs__buf_free(&b);
			free(before);
			cJSON_Delete(doc);
			return KVS_ECONFIG;
		}
		if (before != NULL &&
		    want_number(sh, "from_weight", &before[n_before++]) != 0) {
			snprintf(err, err_len,
			         "%s: during a move every shard has a "
			         "from_weight",
			         where);
			kvs__buf_free(&b);
			free(before);
			cJSON_Delete(doc);
			return KVS_ECONFIG;
		}
		kvs__buf_adds(&b, "[[shards]]\nname = ");
		toml_string(&b, name->valuestring);
		kvs__buf_addf(&b, "\nidx = %.0f\naddress = ", idx);
		toml_string(&b, addr->valuestring);
		kvs__buf_addf(&b, "\nweight = %.17g\n", weight);
	}
	cJSON_Delete(doc);
	if (b.rc != KVS_OK) {
		kvs__buf_free(&b);
		free(before);
		return KVS_ENOMEM;
	}
	rc = kvs_config_parse(out, b.data, b.len, where, cerr);
	kvs__buf_free(&b);
	if (rc == KVS_OK && before != NULL) {
		for (size_t i = 0; i < n_before; i++)
			if (!(before[i] >= 0 && before[i] <= 1e6))
				rc = KVS_ECONFIG;
		if (rc == KVS_OK)
			rc = kvs__config_set_move(*out, phase, before);
		if (rc != KVS_OK) {
			snprintf(err, err_len, "%s: a from_weight is not a weight",
			         where);
			kvs_config_free(*out);
			*out = NULL;
			free(before);
			return rc;
		}
	}
	free(before);
	if (rc == KVS_OK)
		kvs__config_set_move_paused(*out, paused);
	if (rc == KVS_ECONFIG) {
		/* The loader's position is in the TOML written above, which
		 * nobody sees: keep its message only. */
		const char *m = strstr(cerr, ": ");

		snprintf(err, err_len, "etcd's topology at %s is not valid: %s",
		         where, m != NULL && strncmp(cerr, where, strlen(where)) == 0
		                    ? m + 2
		                    : cerr);
	}
	*epoch = (uint64_t)ep;
	return rc;
}

/* Keep etcd's document as read last (kvs__coord_read). */
static void remember(kvs__coord *co, const char *text, size_t len)
{
	char *copy = memchr(text, '\0', len) == NULL ? strndup(text, len)
	                                             : NULL;

	if (copy == NULL)
		return;
	pthread_mutex_lock(&co->mu);
	free(co->last_doc);
	co->last_doc = copy;
	pthread_mutex_unlock(&co->mu);
}

/* Seed etcd's topology from cfg, or adopt the one there. */
static int agree(kvs__coord *co, kvs_config *cfg, char *err, size_t err_len)
{
	char *key = kvs__concat(co->prefix, "/topology");
	int rc = KVS_ENOMEM;

	if (key == NULL)
		return KVS_ENOMEM;
	for (int tries = 0; tries < SEED_TRIES; tries++) {
		char *value = NULL, *mine = NULL, *theirs = NULL;
		size_t len = 0;
		kvs_config *from = NULL;

		rc = kvs__etcd_get(co->etcd, key, &value, &len, NULL);
		if (rc == KVS_NOTFOUND) {
			char *doc = topology_doc(cfg, 1);

			rc = doc != NULL ? kvs__etcd_put_if(co->etcd, key, doc,
			                                    strlen(doc), 0, NULL)
			                 : KVS_ENOMEM;
			if (rc == KVS_OK)
				remember(co, doc, strlen(doc));
			free(doc);
			if (rc == KVS_ECONFLICT)
				continue; /* another node seeded it: read it */
			if (rc == KVS_OK) {
				atomic_store(&co->epoch, 1);
				say(co, KVS__LOG_INFO,
				    "etcd had no topology at %s: seeded it from %s "
				    "(epoch 1)",
				    key, kvs_config_cluster(cfg)->path);
			}
			break;
		}
		if (rc != KVS_OK)
			break;
		{
			uint64_t ep = 0;

			rc = parse_doc(value, len, key, &from, &ep, err, err_len);
			atomic_store(&co->epoch, ep);
			if (rc == KVS_OK)
				remember(co, value, len);
		}
		free(value);
		if (rc != KVS_OK)
			break;
		mine = topology_doc(cfg, 0);
		theirs = topology_doc(from, 0);
		if (mine == NULL || theirs == NULL) {
			rc = KVS_ENOMEM;
		} else if (strcmp(mine, theirs) == 0) {
			kvs_config_free(from);
			from = NULL;
		} else {
			say(co, KVS__LOG_WARN,
			    "the topology in etcd (%s, epoch %llu) differs from "
			    "%s: etcd wins (shards and N/W/R come from etcd; "
			    "the file's other settings stay)",
			    key, (unsigned long long)atomic_load(&co->epoch),
			    kvs_config_cluster(cfg)->path);
			rc = kvs__config_adopt_topology(cfg, from);
			if (rc == KVS_OK)
				from = NULL;
		}
		kvs_config_free(from);
		free(mine);
		free(theirs);
		break;
	}
	if (rc == KVS_ECONFLICT)
		snprintf(err, err_len, "%s: kept changing while it was read",
		         key);
	free(key);
	return rc;
}

int kvs__coord_open(kvs__coord **out, kvs_config *cfg, kvs__coord_log_fn log,
                    void *log_ud, char *err, size_t err_len)
{
	const kvs_cluster_config *c = kvs_config_cluster(cfg);
	kvs__coord *co;
	int rc;

	*out = NULL;
	err[0] = '\0';
	if (c->n_etcd_endpoints == 0 || c->coordination_prefix == NULL)
		return KVS_EINVAL;
	co = calloc(1, sizeof(*co));
	if (co == NULL)
		return KVS_ENOMEM;
	pthread_mutex_init(&co->mu, NULL);
	pthread_cond_init(&co->cv, NULL);
	co->log = log;
	co->log_ud = log_ud;
	co->ttl_s = c->lease_ttl_s;
	co->prefix = strdup(c->coordination_prefix);
	co->topology_key = co->prefix != NULL
	                           ? kvs__concat(co->prefix, "/topology")
	                           : NULL;
	rc = co->topology_key != NULL ? kvs__etcd_new(&co->etcd, c->etcd_endpoints,
	                                        c->n_etcd_endpoints,
	                                        ETCD_TIMEOUT_MS)
	                        : KVS_ENOMEM;
	if (rc == KVS_OK)
		rc = agree(co, cfg, err, err_len);
	if (rc != KVS_OK) {
		if (err[0] == '\0')
			snprintf(err, err_len, "etcd at %s%s: %s",
			         c->etcd_endpoints[0],
			         c->n_etcd_endpoints > 1 ? " (and others)" : "",
			         kvs_strerror(rc));
		kvs__coord_close(co);
		return rc;
	}
	*out = co;
	return KVS_OK;
}

uint64_t kvs__coord_epoch(const kvs__coord *co)
{
	return atomic_load(&((kvs__coord *)co)->epoch);
}

/* ------------------------------------------------------------------ */
/* Changes and the watch                                                */

/* Tries of a change whose document changed under it. */
#define CHANGE_TRIES 8

int kvs__coord_change(kvs__coord *co, kvs__coord_edit_fn edit, void *ud,
                      uint64_t *epoch, char *err, size_t err_len)
{
	int rc = KVS_ECONFLICT;
	uint64_t start = kvs__mono_ms();

	err[0] = '\0';
	for (int tries = 0; tries < CHANGE_TRIES; tries++) {
		char *value = NULL, *text = NULL;
		size_t len = 0;
		int64_t rev = 0;
		cJSON *doc, *ep;
		kvs_config *check = NULL;
		uint64_t next = 0, parsed = 0;

		rc = kvs__etcd_get(co->etcd, co->topology_key, &value, &len,
		                   &rev);
		if (rc != KVS_OK) {
			snprintf(err, err_len, "cannot read %s from etcd: %s",
			         co->topology_key, kvs_strerror(rc));
			return rc;
		}
		doc = cJSON_ParseWithLength(value, len);
		free(value);
		ep = doc != NULL ? cJSON_GetObjectItemCaseSensitive(doc, "epoch")
		                 : NULL;
		if (!cJSON_IsNumber(ep) || !(ep->valuedouble >= 1)) {
			cJSON_Delete(doc);
			snprintf(err, err_len, "%s is not a topology document",
			         co->topology_key);
			return KVS_ECONFIG;
		}
		next = (uint64_t)ep->valuedouble + 1;
		rc = edit(ud, doc, err, err_len);
		if (rc == KVS_OK) {
			cJSON_SetNumberValue(ep, (double)next);
			text = cJSON_PrintUnformatted(doc);
			rc = text != NULL ? KVS_OK : KVS_ENOMEM;
		}
		cJSON_Delete(doc);
		/* What a node will load: checked as a file is. */
		if (rc == KVS_OK)
			rc = parse_doc(text, strlen(text), co->topology_key,
			               &check, &parsed, err, err_len);
		kvs_config_free(check);
		if (rc == KVS_OK)
			rc = kvs__etcd_put_if(co->etcd, co->topology_key, text,
			                      strlen(text), rev, NULL);
		free(text);
		if (rc == KVS_OK) {
			*epoch = next;
			say(co, KVS__LOG_INFO, "topology changed in etcd: epoch %llu",
			    (unsigned long long)next);
			return KVS_OK;
		}
		if (rc != KVS_ECONFLICT)
			return rc;
		/* Someone else's change came first: edit theirs. */
		if (kvs__mono_ms() - start > KVS__COORD_CHANGE_MS) {
			snprintf(err, err_len,
			         "%s kept changing for %u s while this change "
			         "was made",
			         co->topology_key, KVS__COORD_CHANGE_MS / 1000);
			return KVS_ETIMEDOUT;
		}
	}
	snprintf(err, err_len,
	         "%s kept changing while this change was made (%d tries)",
	         co->topology_key, CHANGE_TRIES);
	return KVS_ECONFLICT;
}

/* One look at etcd's topology (watch thread): hand a newer epoch over.
 * *rev is the revision last looked at; *bad the last one not valid. */
static void look(kvs__coord *co, int64_t *seen_rev, int64_t *bad_rev)
{
	char *value = NULL, err[KVS_ERRBUF_SIZE];
	size_t len = 0;
	int64_t rev = 0;
	kvs_config *topo = NULL;
	uint64_t epoch = 0;
	int rc = kvs__etcd_get(co->etcd, co->topology_key, &value, &len, &rev);

	if (rc == KVS_OK)
		remember(co, value, len);
	if (rc != KVS_OK || rev == *seen_rev) {
		free(value);
		return; /* etcd's outages are the renewal's to report */
	}
	rc = parse_doc(value, len, co->topology_key, &topo, &epoch, err,
	               sizeof(err));
	free(value);
	if (rc != KVS_OK) {
		if (rev != *bad_rev)
			say(co, KVS__LOG_ERROR,
			    "%s (revision %lld): this node keeps epoch %llu",
			    err[0] ? err : kvs_strerror(rc), (long long)rev,
			    (unsigned long long)atomic_load(&co->epoch));
		*bad_rev = rev;
		return; /* looked at again, in case it was passing */
	}
	if (epoch <= atomic_load(&co->epoch)) {
		*seen_rev = rev;
		kvs_config_free(topo);
		return;
	}
	/* Applied, or looked at again next time (the callback said why). */
	if (co->on_topology(co->on_topology_ud, topo, epoch) == 0) {
		*seen_rev = rev;
		atomic_store(&co->epoch, epoch);
	}
}

static void *watch_main(void *arg)
{
	kvs__coord *co = arg;
	int64_t seen_rev = 0, bad_rev = 0;

	pthread_setname_np(pthread_self(), "kvs-etcd-watch");
	pthread_mutex_lock(&co->mu);
	while (!co->closing) {
		struct timespec until;

		pthread_mutex_unlock(&co->mu);
		look(co, &seen_rev, &bad_rev);
		kvs__realtime_after(&until, KVS__COORD_WATCH_MS);
		pthread_mutex_lock(&co->mu);
		while (!co->closing &&
		       pthread_cond_timedwait(&co->cv, &co->mu, &until) == 0)
			;
	}
	pthread_mutex_unlock(&co->mu);
	return NULL;
}

int kvs__coord_watch(kvs__coord *co, kvs__coord_topology_fn cb, void *ud)
{
	co->on_topology = cb;
	co->on_topology_ud = ud;
	if (pthread_create(&co->watch_thread, NULL, watch_main, co) != 0)
		return KVS_ESYS;
	co->watch_started = 1;
	return KVS_OK;
}

/* The node's key under its lease: {"address": ..., "epoch": applied}. */
static int put_registration(kvs__coord *co)
{
	cJSON *v = cJSON_CreateObject();
	char *text = NULL;
	int rc = KVS_ENOMEM;

	if (v != NULL && cJSON_AddStringToObject(v, "address", co->address) &&
	    cJSON_AddNumberToObject(v, "epoch",
	                            (double)atomic_load(&co->applied)))
		text = cJSON_PrintUnformatted(v);
	cJSON_Delete(v);
	if (text != NULL)
		rc = kvs__etcd_put(co->etcd, co->node_key, text, strlen(text),
		                   atomic_load(&co->lease));
	free(text);
	return rc;
}

/* Hold a lease with our key under it. */
static int hold(kvs__coord *co)
{
	int rc;

	if (co->lease != 0) {
		rc = kvs__etcd_lease_keepalive(co->etcd, co->lease);
		if (rc != KVS_NOTFOUND)
			return rc;
		say(co, KVS__LOG_WARN,
		    "the registration lease of %s ran out (etcd not reached "
		    "within %u s): registering again",
		    co->node_key, co->ttl_s);
		co->lease = 0;
	}
	{
		int64_t lease = 0;

		rc = kvs__etcd_lease_grant(co->etcd, co->ttl_s, &lease);
		if (rc != KVS_OK)
			return rc;
		co->lease = lease;
	}
	return put_registration(co);
}

struct names {
	char **v;
	size_t n, cap;
	size_t skip; /* bytes of "<prefix>/nodes/" */
	int failed;
};

static int add_name(void *ud, const char *key, size_t key_len,
                    const char *value, size_t value_len)
{
	struct names *ns = ud;
	char *name;

	(void)value;
	(void)value_len;
	if (key_len <= ns->skip)
		return 0;
	if (ns->n == ns->cap) {
		size_t cap = ns->cap ? 2 * ns->cap : 8;
		char **v = realloc(ns->v, cap * sizeof(*v));

		if (v == NULL) {
			ns->failed = 1;
			return 1;
		}
		ns->v = v;
		ns->cap = cap;
	}
	name = malloc(key_len - ns->skip + 1);
	if (name == NULL) {
		ns->failed = 1;
		return 1;
	}
	memcpy(name, key + ns->skip, key_len - ns->skip);
	name[key_len - ns->skip] = '\0';
	ns->v[ns->n++] = name;
	return 0;
}

static void free_names(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* Call cb for each registration (<prefix>/nodes/<name>); *skip gets the
 * bytes of the keys before the name first. */
static int list_nodes(kvs__coord *co, kvs__etcd_kv_cb cb, void *ud,
                      size_t *skip)
{
	char *dir = kvs__concat(co->prefix, "/nodes/");
	int rc;

	if (dir == NULL)
		return KVS_ENOMEM;
	*skip = strlen(dir);
	rc = kvs__etcd_list(co->etcd, dir, cb, ud);
	free(dir);
	return rc;
}

/* List who is registered, for kvs__coord_is_registered. */
static int refresh(kvs__coord *co)
{
	struct names ns = {0};
	int rc = list_nodes(co, add_name, &ns, &ns.skip);

	if (rc == KVS_OK && ns.failed)
		rc = KVS_ENOMEM;
	if (rc != KVS_OK) {
		free_names(ns.v, ns.n);
		return rc;
	}
	pthread_mutex_lock(&co->mu);
	free_names(co->registered, co->n_registered);
	co->registered = ns.v;
	co->n_registered = ns.n;
	pthread_mutex_unlock(&co->mu);
	return KVS_OK;
}

static void *renewer_main(void *arg)
{
	kvs__coord *co = arg;

	pthread_setname_np(pthread_self(), "kvs-etcd-lease");
	pthread_mutex_lock(&co->mu);
	while (!co->closing) {
		struct timespec until;
		int rc;

		pthread_mutex_unlock(&co->mu);
		rc = hold(co);
		if (rc == KVS_OK)
			rc = refresh(co);
		if (rc != KVS_OK && !co->unreachable) {
			co->unreachable = 1;
			say(co, KVS__LOG_WARN,
			    "cannot renew %s in etcd: %s (retrying every %u ms)",
			    co->node_key, kvs_strerror(rc), RETRY_MS);
		} else if (rc == KVS_OK && co->unreachable) {
			co->unreachable = 0;
			say(co, KVS__LOG_INFO, "%s renewed in etcd again",
			    co->node_key);
		}
		kvs__realtime_after(&until, rc == KVS_OK ? co->ttl_s * 1000u / 3u
		                                         : RETRY_MS);
		pthread_mutex_lock(&co->mu);
		while (!co->closing &&
		       pthread_cond_timedwait(&co->cv, &co->mu, &until) == 0)
			;
	}
	pthread_mutex_unlock(&co->mu);
	return NULL;
}

int kvs__coord_register(kvs__coord *co, const char *name,
                        const char *address)
{
	char *dir = kvs__concat(co->prefix, "/nodes/");
	int rc;

	co->node_key = dir != NULL ? kvs__concat(dir, name) : NULL;
	free(dir);
	co->address = strdup(address);
	atomic_store(&co->applied, atomic_load(&co->epoch));
	if (co->node_key == NULL || co->address == NULL)
		return KVS_ENOMEM;
	/* A failure here is etcd's passing trouble (it was reached a
	 * moment ago): the thread keeps trying, as it does later. */
	rc = hold(co);
	if (rc == KVS_OK)
		rc = refresh(co);
	if (rc == KVS_ENOMEM)
		return rc;
	if (rc != KVS_OK) {
		co->unreachable = 1;
		say(co, KVS__LOG_WARN,
		    "cannot register %s in etcd yet: %s (retrying every %u ms)",
		    co->node_key, kvs_strerror(rc), RETRY_MS);
	}
	if (pthread_create(&co->thread, NULL, renewer_main, co) != 0)
		return KVS_ESYS;
	co->thread_started = 1;
	return KVS_OK;
}

int kvs__coord_read(kvs__coord *co, char **text, size_t *len)
{
	int rc = KVS_NOTFOUND;

	pthread_mutex_lock(&co->mu);
	if (co->last_doc != NULL) {
		*text = strdup(co->last_doc);
		*len = *text != NULL ? strlen(*text) : 0;
		rc = *text != NULL ? KVS_OK : KVS_ENOMEM;
	}
	pthread_mutex_unlock(&co->mu);
	return rc;
}

int kvs__coord_applied(kvs__coord *co, uint64_t epoch)
{
	atomic_store(&co->applied, epoch);
	if (co->node_key == NULL || atomic_load(&co->lease) == 0)
		return KVS_OK; /* said when it registers */
	return put_registration(co);
}

struct laggards {
	uint64_t epoch;
	size_t skip; /* bytes of "<prefix>/nodes/" */
	size_t behind;
	char *first; /* the first one behind */
};

static int note_laggard(void *ud, const char *key, size_t key_len,
                        const char *value, size_t value_len)
{
	struct laggards *l = ud;
	cJSON *v = cJSON_ParseWithLength(value, value_len);
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(v, "epoch");

	if (!cJSON_IsNumber(e) || e->valuedouble < (double)l->epoch) {
		l->behind++;
		if (l->first == NULL && key_len > l->skip)
			l->first = strndup(key + l->skip, key_len - l->skip);
	}
	cJSON_Delete(v);
	return 0;
}

int kvs__coord_all_applied(kvs__coord *co, uint64_t epoch, size_t *behind,
                           char *who, size_t who_len)
{
	struct laggards l = {epoch, 0, 0, NULL};
	int rc = list_nodes(co, note_laggard, &l, &l.skip);

	*behind = l.behind;
	if (rc == KVS_OK && l.behind > 0)
		snprintf(who, who_len, "%s", l.first != NULL ? l.first : "?");
	free(l.first);
	return rc;
}

int kvs__coord_is_registered(kvs__coord *co, const char *name)
{
	int found = 0;

	pthread_mutex_lock(&co->mu);
	for (size_t i = 0; i < co->n_registered && !found; i++)
		found = strcmp(co->registered[i], name) == 0;
	pthread_mutex_unlock(&co->mu);
	return found;
}

void kvs__coord_leave(kvs__coord *co)
{
	if (co == NULL)
		return;
	pthread_mutex_lock(&co->mu);
	co->closing = 1;
	pthread_cond_broadcast(&co->cv);
	pthread_mutex_unlock(&co->mu);
	if (co->watch_started) {
		pthread_join(co->watch_thread, NULL);
		co->watch_started = 0;
	}
	if (co->thread_started) {
		pthread_join(co->thread, NULL);
		co->thread_started = 0;
	}
	/* Gone at once, not when the lease runs out. */
	if (co->lease != 0 &&
	    kvs__etcd_lease_revoke(co->etcd, co->lease) != KVS_OK)
		say(co, KVS__LOG_WARN,
		    "could not deregister %s from etcd: it goes when its "
		    "lease runs out (%u s)",
		    co->node_key, co->ttl_s);
	co->lease = 0;
}

void kvs__coord_close(kvs__coord *co)
{
	if (co == NULL)
		return;
	kvs__coord_leave(co);
	kvs__etcd_free(co->etcd);
	free_names(co->registered, co->n_registered);
	free(co->node_key);
	free(co->address);
	free(co->last_doc);
	free(co->topology_key);
	free(co->prefix);
	pthread_cond_destroy(&co->cv);
	pthread_mutex_destroy(&co->mu);
	free(co);
}
