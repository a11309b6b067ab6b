/*
 * admin.c - /v1/cluster, /v1/status, /health and /metrics.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server.h"

#define JSON_TYPE "application/json"
#define METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Is this a GET or HEAD? Answers 405 when not. */
static int only_get(struct req *r)
{
	if (r->method == M_GET || r->method == M_HEAD)
		return 1;
	req_not_allowed(r, "GET, HEAD");
	return 0;
}

static uint64_t uptime_s(const struct server *s)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u -
	        s->start_mono_ms) /
	       1000u;
}

static void answer_json(struct req *r, cJSON *doc)
{
	char *text = doc != NULL ? cJSON_PrintUnformatted(doc) : NULL;
	size_t len;
	char *body;

	cJSON_Delete(doc);
	if (text == NULL) {
		req_fail(r, KVS_ENOMEM, "building the answer");
		return;
	}
	/* cJSON allocates with malloc (the default hooks): append a newline
	 * in a buffer MHD may free. */
	len = strlen(text);
	body = malloc(len + 2);
	if (body == NULL) {
		free(text);
		req_fail(r, KVS_ENOMEM, "building the answer");
		return;
	}
	memcpy(body, text, len);
	body[len] = '\n';
	body[len + 1] = '\0';
	free(text);
	req_answer(r, MHD_HTTP_OK, resp_take(r->srv, body, len + 1, JSON_TYPE));
}

void handle_cluster(struct req *r)
{
	const kvs_cluster_config *cc = r->srv->cc;
	cJSON *doc, *shards;

	if (!only_get(r))
		return;
	doc = cJSON_CreateObject();
	shards = cJSON_AddArrayToObject(doc, "shards");
	cJSON_AddNumberToObject(doc, "epoch",
	                        (double)kvs__node_epoch(r->srv->node));
	cJSON_AddNumberToObject(doc, "replication", cc->replication);
	cJSON_AddNumberToObject(doc, "write_quorum", cc->write_quorum);
	cJSON_AddNumberToObject(doc, "read_quorum", cc->read_quorum);
	cJSON_AddNumberToObject(doc, "vnodes", cc->vnodes);
	cJSON_AddStringToObject(doc, "routing",
	                        cc->routing == KVS_ROUTING_PROXY ? "proxy"
	                                                         : "redirect");
	cJSON_AddStringToObject(doc, "hash", "xxh3-64");
	cJSON_AddStringToObject(doc, "served_by", r->srv->me->name);
	for (size_t i = 0; i < kvs_config_shard_count(r->srv->cfg); i++) {
		const kvs_shard_config *sh = kvs_config_shard(r->srv->cfg, i);
		cJSON *o = cJSON_CreateObject();

		cJSON_AddStringToObject(o, "name", sh->name);
		cJSON_AddNumberToObject(o, "idx", sh->idx);
		cJSON_AddStringToObject(o, "address", sh->address);
		cJSON_AddNumberToObject(o, "weight", sh->weight);
		cJSON_AddStringToObject(o, "status",
		                        kvs__node_peer_up(r->srv->node, i) ? "up"
		                                                           : "down");
		cJSON_AddItemToArray(shards, o);
	}
	answer_json(r, doc);
}

void handle_status(struct req *r)
{
	struct server *s = r->srv;
	kvs_store_stats st;
	cJSON *doc;
	int rc;

	if (!only_get(r))
		return;
	rc = kvs_store_stat(kvs__node_store(s->node), &st);
	if (rc != KVS_OK) {
		req_fail(r, rc, "reading the store's figures");
		return;
	}
	doc = cJSON_CreateObject();
	cJSON_AddStringToObject(doc, "shard", s->me->name);
	cJSON_AddNumberToObject(doc, "idx", s->me->idx);
	cJSON_AddStringToObject(doc, "address", s->me->address);
	cJSON_AddStringToObject(doc, "version", kvs_version());
	cJSON_AddNumberToObject(doc, "uptime_s", (double)uptime_s(s));
	cJSON_AddNumberToObject(doc, "keys", (double)st.keys);
	cJSON_AddNumberToObject(doc, "tombstones", (double)st.tombstones);
	cJSON_AddNumberToObject(doc, "store_bytes", (double)st.used_bytes);
	cJSON_AddNumberToObject(doc, "map_bytes", (double)st.map_bytes);
	cJSON_AddNumberToObject(doc, "requests",
	                        (double)atomic_load(&s->requests));
	cJSON_AddNumberToObject(doc, "connections",
	                        (double)atomic_load(&s->connections));
	cJSON_AddNumberToObject(doc, "threads", s->threads);
	cJSON_AddNumberToObject(doc, "epoch", (double)kvs__node_epoch(s->node));
	answer_json(r, doc);
}

void handle_health(struct req *r)
{
	struct textbuf tb = {0};

	if (!only_get(r))
		return;
	tb_printf(&tb, "{\"status\":\"ok\",\"shard\":\"%s\"}\n", r->srv->me->name);
	if (tb.failed) {
		free(tb.data);
		req_fail(r, KVS_ENOMEM, "health");
		return;
	}
	req_answer(r, MHD_HTTP_OK, resp_take(r->srv, tb.data, tb.len, JSON_TYPE));
}

void handle_metrics(struct req *r)
{
	struct server *s = r->srv;
	kvs__node_counters *c = kvs__node_counters_of(s->node);
	struct textbuf tb = {0};
	kvs_store_stats st;

	if (!only_get(r))
		return;
	metrics_render(&tb);
	if (kvs_store_stat(kvs__node_store(s->node), &st) == KVS_OK)
		tb_printf(&tb,
		          "# HELP kvshard_keys Live keys in this shard's store.\n"
		          "# TYPE kvshard_keys gauge\nkvshard_keys %llu\n"
		          "# HELP kvshard_tombstones Deleted keys remembered.\n"
		          "# TYPE kvshard_tombstones gauge\nkvshard_tombstones %llu\n"
		          "# HELP kvshard_store_bytes Bytes of the store in use.\n"
		          "# TYPE kvshard_store_bytes gauge\n"
		          "kvshard_store_bytes %llu\n"
		          "# HELP kvshard_store_map_bytes Size of the store's map.\n"
		          "# TYPE kvshard_store_map_bytes gauge\n"
		          "kvshard_store_map_bytes %llu\n"
		          "# HELP kvshard_store_commits_total Write transactions.\n"
		          "# TYPE kvshard_store_commits_total counter\n"
		          "kvshard_store_commits_total %llu\n"
		          "# HELP kvshard_store_writes_total Writes committed.\n"
		          "# TYPE kvshard_store_writes_total counter\n"
		          "kvshard_store_writes_total %llu\n"
		          "# HELP kvshard_store_syncs_total Syncs beyond those of "
		          "commits (making an idle batch durable).\n"
		          "# TYPE kvshard_store_syncs_total counter\n"
		          "kvshard_store_syncs_total %llu\n",
		          (unsigned long long)st.keys,
		          (unsigned long long)st.tombstones,
		          (unsigned long long)st.used_bytes,
		          (unsigned long long)st.map_bytes,
		          (unsigned long long)st.commits,
		          (unsigned long long)st.writes,
		          (unsigned long long)st.syncs);
	tb_printf(&tb,
	          "# HELP kvshard_forwarded_total Client requests forwarded to "
	          "another shard.\n"
	          "# TYPE kvshard_forwarded_total counter\n"
	          "kvshard_forwarded_total %llu\n"
	          "# HELP kvshard_replica_writes_total Writes sent to replicas.\n"
	          "# TYPE kvshard_replica_writes_total counter\n"
	          "kvshard_replica_writes_total %llu\n"
	          "# HELP kvshard_replica_reads_total Reads sent to replicas.\n"
	          "# TYPE kvshard_replica_reads_total counter\n"
	          "kvshard_replica_reads_total %llu\n"
	          "# HELP kvshard_read_repairs_total Stale replicas repaired.\n"
	          "# TYPE kvshard_read_repairs_total counter\n"
	          "kvshard_read_repairs_total %llu\n"
	          "# HELP kvshard_peer_errors_total Failed requests to peers.\n"
	          "# TYPE kvshard_peer_errors_total counter\n"
	          "kvshard_peer_errors_total %llu\n"
	          "# HELP kvshard_quorum_failures_total Requests that did not "
	          "reach their quorum.\n"
	          "# TYPE kvshard_quorum_failures_total counter\n"
	          "kvshard_quorum_failures_total %llu\n"
	          "# HELP kvshard_connections Open client connections.\n"
	          "# TYPE kvshard_connections gauge\nkvshard_connections %llu\n"
	          "# HELP kvshard_uptime_seconds Seconds since start.\n"
	          "# TYPE kvshard_uptime_seconds gauge\n"
	          "kvshard_uptime_seconds %llu\n",
	          (unsigned long long)atomic_load(&c->forwarded),
	          (unsigned long long)atomic_load(&c->replica_writes),
	          (unsigned long long)atomic_load(&c->replica_reads),
	          (unsigned long long)atomic_load(&c->read_repairs),
	          (unsigned long long)atomic_load(&c->peer_errors),
	          (unsigned long long)atomic_load(&c->quorum_failures),
	          (unsigned long long)atomic_load(&s->connections),
	          (unsigned long long)uptime_s(s));
	tb_printf(&tb, "# HELP kvshard_peer_up 1 if this node believes the "
	               "shard is up.\n# TYPE kvshard_peer_up gauge\n");
	for (size_t i = 0; i < kvs_config_shard_count(s->cfg); i++)
		tb_printf(&tb, "kvshard_peer_up{shard=\"%s\"} %d\n",
		          kvs_config_shard(s->cfg, i)->name,
		          kvs__node_peer_up(s->node, i));
	if (tb.failed) {
		free(tb.data);
		req_fail(r, KVS_ENOMEM, "metrics");
		return;
	}
	req_answer(r, MHD_HTTP_OK, resp_take(s, tb.data, tb.len, METRICS_TYPE));
}
