/*
 * admin.c - /v1/cluster, /v1/status, /health and /metrics.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "server.h"

static uint64_t uptime_s(const struct server *s)
{
	return (kvs__mono_ms() - s->start_mono_ms) / 1000u;
}

static void answer_json(struct req *r, cJSON *doc)
{
	char *text = doc != NULL ? cJSON_PrintUnformatted(doc) : NULL;
	size_t len;
	char *body;

	cJSON_Delete(doc);
	if (text == NULL) {
		reply_fail(r, KVS_ENOMEM, "building the answer");
		return;
	}
	/* cJSON allocates with malloc (the default hooks): append a newline
	 * in a buffer MHD may free. */
	len = strlen(text);
	body = malloc(len + 2);
	if (body == NULL) {
		free(text);
		reply_fail(r, KVS_ENOMEM, "building the answer");
		return;
	}
	memcpy(body, text, len);
	body[len] = '\n';
	body[len + 1] = '\0';
	free(text);
	reply_bytes(r, 200, body, len + 1, KVS_TYPE_JSON);
}

void handle_cluster(struct req *r)
{
	/* The epoch's: etcd's N/W/R with the file's other settings. */
	const kvs_cluster_config *cc = kvs_config_cluster(r->view->cfg);
	cJSON *doc, *shards;

	doc = cJSON_CreateObject();
	shards = cJSON_AddArrayToObject(doc, KVS_F_SHARDS);
	cJSON_AddNumberToObject(doc, KVS_F_EPOCH,
	                        (double)kvs__node_epoch(r->view->node));
	cJSON_AddNumberToObject(doc, KVS_F_REPLICATION, cc->replication);
	cJSON_AddNumberToObject(doc, KVS_F_WRITE_QUORUM, cc->write_quorum);
	cJSON_AddNumberToObject(doc, KVS_F_READ_QUORUM, cc->read_quorum);
	cJSON_AddNumberToObject(doc, KVS_F_VNODES, cc->vnodes);
	cJSON_AddStringToObject(doc, "routing",
	                        cc->routing == KVS_ROUTING_PROXY ? "proxy"
	                                                         : "redirect");
	cJSON_AddStringToObject(doc, "hash", "xxh3-64");
	cJSON_AddStringToObject(doc, "served_by", r->srv->me->name);
	for (size_t i = 0; i < kvs_config_shard_count(r->view->cfg); i++) {
		const kvs_shard_config *sh = kvs_config_shard(r->view->cfg, i);
		cJSON *o = cJSON_CreateObject();

		cJSON_AddStringToObject(o, KVS_F_NAME, sh->name);
		cJSON_AddNumberToObject(o, KVS_F_IDX, sh->idx);
		cJSON_AddStringToObject(o, KVS_F_ADDRESS, sh->address);
		cJSON_AddNumberToObject(o, KVS_F_WEIGHT, sh->weight);
		cJSON_AddStringToObject(o, KVS_F_STATUS,
		                        kvs__node_shard_status(r->view->node, i) ? "up"
		                                                           : "down");
		if (r->srv->coord != NULL)
			cJSON_AddBoolToObject(o, "registered",
			                      kvs__coord_is_registered(
			                              r->srv->coord, sh->name));
		cJSON_AddItemToArray(shards, o);
	}
	if (r->srv->coord != NULL) {
		cJSON *co = cJSON_AddObjectToObject(doc, "coordination");
		cJSON *ep = cJSON_AddArrayToObject(co, "etcd");

		for (size_t i = 0; ep != NULL && i < cc->n_etcd_endpoints; i++)
			cJSON_AddItemToArray(
			        ep, cJSON_CreateString(cc->etcd_endpoints[i]));
		cJSON_AddStringToObject(co, "prefix", cc->coordination_prefix);
		cJSON_AddNumberToObject(co, "lease_ttl_s", cc->lease_ttl_s);
	} else {
		cJSON_AddNullToObject(doc, "coordination");
	}
	answer_json(r, doc);
}

void handle_status(struct req *r)
{
	struct server *s = r->srv;
	kvs_store_stats st;
	cJSON *doc;
	int rc;

	rc = kvs_store_stat(kvs__node_store(r->view->node), &st);
	if (rc != KVS_OK) {
		reply_fail(r, rc, "reading the store's figures");
		return;
	}
	doc = cJSON_CreateObject();
	cJSON_AddStringToObject(doc, KVS_F_SHARD, s->me->name);
	cJSON_AddNumberToObject(doc, KVS_F_IDX, s->me->idx);
	cJSON_AddStringToObject(doc, KVS_F_ADDRESS, s->me->address);
	cJSON_AddStringToObject(doc, KVS_F_VERSION, kvs_version());
	cJSON_AddNumberToObject(doc, KVS_F_UPTIME, (double)uptime_s(s));
	cJSON_AddNumberToObject(doc, KVS_F_KEYS, (double)st.keys);
	cJSON_AddNumberToObject(doc, "tombstones", (double)st.tombstones);
	cJSON_AddNumberToObject(doc, KVS_F_STORE_BYTES, (double)st.used_bytes);
	cJSON_AddNumberToObject(doc, "map_bytes", (double)st.map_bytes);
	cJSON_AddNumberToObject(doc, "requests",
	                        (double)atomic_load(&s->requests));
	cJSON_AddNumberToObject(doc, "connections",
	                        (double)atomic_load(&s->connections));
	cJSON_AddNumberToObject(doc, "threads", s->threads);
	cJSON_AddNumberToObject(doc, KVS_F_EPOCH, (double)kvs__node_epoch(r->view->node));
	{
		kvs__aae_stats a;
		cJSON *ae = cJSON_AddObjectToObject(doc, "anti_entropy");

		kvs__node_aae_stats(r->view->node, &a);
		if (ae != NULL) {
			cJSON_AddNumberToObject(ae, "passes", (double)a.passes);
			cJSON_AddNumberToObject(ae, "last_pass_ms",
			                        (double)a.last_pass_ms);
			cJSON_AddNumberToObject(ae, "keys_repaired",
			                        (double)a.keys_repaired);
			cJSON_AddNumberToObject(ae, "bytes_moved",
			                        (double)a.bytes_moved);
			cJSON_AddNumberToObject(ae, "tombstones_purged",
			                        (double)a.tombstones_purged);
		}
	}
	answer_json(r, doc);
}

void handle_health(struct req *r)
{
	kvs__buf b;

	kvs__buf_init(&b, 0);
	kvs__buf_addf(&b, "{\"%s\":\"ok\",\"%s\":\"", KVS_F_STATUS,
	              KVS_F_SHARD);
	kvs__json_escape(&b, r->srv->me->name, strlen(r->srv->me->name));
	kvs__buf_adds(&b, "\"}");
	reply_json(r, 200, &b);
}

void handle_metrics(struct req *r)
{
	struct server *s = r->srv;
	kvs__node_stats c;
	kvs_store_stats st;
	kvs__buf b;
	size_t len;
	char *text;

	kvs__node_stats_get(r->view->node, &c);
	kvs__buf_init(&b, 0);
	metrics_render(&b);
	if (kvs_store_stat(kvs__node_store(r->view->node), &st) == KVS_OK)
		kvs__buf_addf(&b,
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
		          "kvshard_store_syncs_total %llu\n"
		          "# HELP kvshard_clock_refusals_total Versions from "
		          "peers refused: further ahead of this node's clock "
		          "than max_clock_skew_ms.\n"
		          "# TYPE kvshard_clock_refusals_total counter\n"
		          "kvshard_clock_refusals_total %llu\n",
		          (unsigned long long)st.keys,
		          (unsigned long long)st.tombstones,
		          (unsigned long long)st.used_bytes,
		          (unsigned long long)st.map_bytes,
		          (unsigned long long)st.commits,
		          (unsigned long long)st.writes,
		          (unsigned long long)st.syncs,
		          (unsigned long long)st.clock_refusals);
	kvs__buf_addf(&b,
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
	          "# HELP kvshard_peer_errors_total Messages to peers that got "
	          "no answer.\n"
	          "# TYPE kvshard_peer_errors_total counter\n"
	          "kvshard_peer_errors_total %llu\n"
	          "# HELP kvshard_quorum_failures_total Requests that did not "
	          "reach their quorum.\n"
	          "# TYPE kvshard_quorum_failures_total counter\n"
	          "kvshard_quorum_failures_total %llu\n"
	          "# HELP kvshard_probes_total Health probes sent to peers.\n"
	          "# TYPE kvshard_probes_total counter\n"
	          "kvshard_probes_total %llu\n"
	          "# HELP kvshard_speculative_retries_total Requests also sent "
	          "to the next owner because the first was slow.\n"
	          "# TYPE kvshard_speculative_retries_total counter\n"
	          "kvshard_speculative_retries_total %llu\n"
	          "# HELP kvshard_peer_frames_total Frames sent to peers (each "
	          "carries one or more messages).\n"
	          "# TYPE kvshard_peer_frames_total counter\n"
	          "kvshard_peer_frames_total %llu\n"
	          "# HELP kvshard_peer_messages_total Messages sent to peers, "
	          "in those frames.\n"
	          "# TYPE kvshard_peer_messages_total counter\n"
	          "kvshard_peer_messages_total %llu\n"
	          "# HELP kvshard_read_fetches_total Values fetched from a "
	          "replica whose version, read as a digest, was the newest.\n"
	          "# TYPE kvshard_read_fetches_total counter\n"
	          "kvshard_read_fetches_total %llu\n"
	          "# HELP kvshard_hints_written_total Writes kept for an owner "
	          "that did not acknowledge them.\n"
	          "# TYPE kvshard_hints_written_total counter\n"
	          "kvshard_hints_written_total %llu\n"
	          "# HELP kvshard_hints_delivered_total Hints the owner took.\n"
	          "# TYPE kvshard_hints_delivered_total counter\n"
	          "kvshard_hints_delivered_total %llu\n"
	          "# HELP kvshard_hints_expired_total Hints deleted unsent, "
	          "older than hint_max_age_s.\n"
	          "# TYPE kvshard_hints_expired_total counter\n"
	          "kvshard_hints_expired_total %llu\n"
	          "# HELP kvshard_peer_fenced_total Peer frames whose writes "
	          "were refused: their sender's epoch was older than every "
	          "registered node's.\n"
	          "# TYPE kvshard_peer_fenced_total counter\n"
	          "kvshard_peer_fenced_total %llu\n"
	          "# HELP kvshard_hints_dropped_total Hints not kept "
	          "(hint_max_bytes reached, or the store failed).\n"
	          "# TYPE kvshard_hints_dropped_total counter\n"
	          "kvshard_hints_dropped_total %llu\n"
	          "# HELP kvshard_connections Open client connections.\n"
	          "# TYPE kvshard_connections gauge\nkvshard_connections %llu\n"
	          "# HELP kvshard_uptime_seconds Seconds since start.\n"
	          "# TYPE kvshard_uptime_seconds gauge\n"
	          "kvshard_uptime_seconds %llu\n",
	          (unsigned long long)c.forwarded,
	          (unsigned long long)c.replica_writes,
	          (unsigned long long)c.replica_reads,
	          (unsigned long long)c.read_repairs,
	          (unsigned long long)c.peer_errors,
	          (unsigned long long)c.quorum_failures,
	          (unsigned long long)c.probes,
	          (unsigned long long)c.speculative,
	          (unsigned long long)c.peer_frames,
	          (unsigned long long)c.peer_messages,
	          (unsigned long long)c.read_fetches,
	          (unsigned long long)c.hints_written,
	          (unsigned long long)c.hints_delivered,
	          (unsigned long long)c.hints_expired,
	          (unsigned long long)c.fenced,
	          (unsigned long long)c.hints_dropped,
	          (unsigned long long)atomic_load(&s->connections),
	          (unsigned long long)uptime_s(s));
	kvs__buf_addf(&b,
	              "# HELP kvshard_store_full_writes_total Writes this "
	              "node's store refused (507 storage_full): its map at "
	              "max_map_size, or its filesystem full.\n"
	              "# TYPE kvshard_store_full_writes_total counter\n"
	              "kvshard_store_full_writes_total{cause=\"map\"} %llu\n"
	              "kvshard_store_full_writes_total{cause=\"filesystem\"} "
	              "%llu\n",
	              (unsigned long long)c.full_map,
	              (unsigned long long)c.full_fs);
	kvs__buf_addf(&b,
	              "# HELP kvshard_peer_links Links between nodes "
	              "(docs/protocol.md): to peers, up now; from peers, "
	              "served now.\n"
	              "# TYPE kvshard_peer_links gauge\n"
	              "kvshard_peer_links{direction=\"out\"} %llu\n"
	              "kvshard_peer_links{direction=\"in\"} %llu\n"
	              "# HELP kvshard_peer_link_frames_total Of the frames "
	              "sent to peers, those sent on links (the rest went as "
	              "HTTP requests).\n"
	              "# TYPE kvshard_peer_link_frames_total counter\n"
	              "kvshard_peer_link_frames_total %llu\n"
	              "# HELP kvshard_peer_link_serving_bytes Bytes of the "
	              "frames from peers' links being served now (a link is "
	              "not read while 16 MiB of its frames are).\n"
	              "# TYPE kvshard_peer_link_serving_bytes gauge\n"
	              "kvshard_peer_link_serving_bytes %llu\n",
	              (unsigned long long)c.links_up,
	              (unsigned long long)c.links_served,
	              (unsigned long long)c.link_frames,
	              (unsigned long long)c.links_serving_bytes);
	kvs__buf_adds(&b, "# HELP kvshard_peer_up 1 if this node believes the "
	                  "shard is up.\n# TYPE kvshard_peer_up gauge\n");
	for (size_t i = 0; i < kvs_config_shard_count(r->view->cfg); i++)
		kvs__buf_addf(&b, "kvshard_peer_up{shard=\"%s\"} %d\n",
		              kvs_config_shard(r->view->cfg, i)->name,
		              kvs__node_shard_status(r->view->node, i));
	kvs__buf_addf(&b,
	              "# HELP kvshard_topology_epoch The epoch of the "
	              "topology this node runs (1: the file's).\n"
	              "# TYPE kvshard_topology_epoch gauge\n"
	              "kvshard_topology_epoch %llu\n",
	              (unsigned long long)kvs__node_epoch(r->view->node));
	if (s->coord != NULL) {
		kvs__move_stats ms;

		view_move_stats(r->view, &ms);
		kvs__buf_addf(&b,
		              "# HELP kvshard_move_phase The move this node runs "
		              "(0: none, 1: writes to both sides, 2: reads "
		              "from the new owners).\n"
		              "# TYPE kvshard_move_phase gauge\n"
		              "kvshard_move_phase %d\n"
		              "# HELP kvshard_move_copying 1 while this node "
		              "copies what a move gives it.\n"
		              "# TYPE kvshard_move_copying gauge\n"
		              "kvshard_move_copying %d\n"
		              "# HELP kvshard_move_keys_copied_total Records a "
		              "move's copy fetched to this node.\n"
		              "# TYPE kvshard_move_keys_copied_total counter\n"
		              "kvshard_move_keys_copied_total %llu\n"
		              "# HELP kvshard_move_bytes_copied_total Their bytes "
		              "(keys and values).\n"
		              "# TYPE kvshard_move_bytes_copied_total counter\n"
		              "kvshard_move_bytes_copied_total %llu\n"
		              "# HELP kvshard_move_records_dropped_total Records "
		              "of segments this node no longer owns, dropped.\n"
		              "# TYPE kvshard_move_records_dropped_total counter\n"
		              "kvshard_move_records_dropped_total %llu\n",
		              ms.phase, ms.asked && !ms.copied,
		              (unsigned long long)ms.keys,
		              (unsigned long long)ms.bytes,
		              (unsigned long long)ms.dropped);
		kvs__buf_adds(&b, "# HELP kvshard_registered 1 if the shard held "
		                  "its registration in etcd when this node last "
		                  "looked.\n# TYPE kvshard_registered gauge\n");
		for (size_t i = 0; i < kvs_config_shard_count(r->view->cfg); i++) {
			const char *name = kvs_config_shard(r->view->cfg, i)->name;

			kvs__buf_addf(&b, "kvshard_registered{shard=\"%s\"} %d\n",
			              name,
			              kvs__coord_is_registered(s->coord, name));
		}
	}
	{
		kvs__aae_stats a;

		kvs__node_aae_stats(r->view->node, &a);
		kvs__buf_addf(&b,
		          "# HELP kvshard_aae_passes_total Anti-entropy passes "
		          "completed (every other shard compared).\n"
		          "# TYPE kvshard_aae_passes_total counter\n"
		          "kvshard_aae_passes_total %llu\n"
		          "# HELP kvshard_aae_last_pass_timestamp_seconds When "
		          "the last pass completed (0: none yet).\n"
		          "# TYPE kvshard_aae_last_pass_timestamp_seconds gauge\n"
		          "kvshard_aae_last_pass_timestamp_seconds %.3f\n"
		          "# HELP kvshard_aae_keys_repaired_total Keys anti-entropy "
		          "repaired, here or on a peer.\n"
		          "# TYPE kvshard_aae_keys_repaired_total counter\n"
		          "kvshard_aae_keys_repaired_total %llu\n"
		          "# HELP kvshard_aae_bytes_moved_total Bytes of the keys "
		          "and values it moved.\n"
		          "# TYPE kvshard_aae_bytes_moved_total counter\n"
		          "kvshard_aae_bytes_moved_total %llu\n"
		          "# HELP kvshard_tombstones_purged_total Tombstones "
		          "deleted for good: past tombstone_grace_s and seen on "
		          "every owner.\n"
		          "# TYPE kvshard_tombstones_purged_total counter\n"
		          "kvshard_tombstones_purged_total %llu\n",
		          (unsigned long long)a.passes,
		          (double)a.last_pass_ms / 1000.0,
		          (unsigned long long)a.keys_repaired,
		          (unsigned long long)a.bytes_moved,
		          (unsigned long long)a.tombstones_purged);
	}
	kvs__buf_adds(&b, "# HELP kvshard_hints_pending Hints kept for the "
	                  "shard, not yet delivered.\n# TYPE "
	                  "kvshard_hints_pending gauge\n");
	for (size_t i = 0; i < kvs_config_shard_count(r->view->cfg); i++) {
		uint64_t count, bytes;

		kvs__node_hints_pending(r->view->node, i, &count, &bytes);
		kvs__buf_addf(&b, "kvshard_hints_pending{shard=\"%s\"} %llu\n",
		              kvs_config_shard(r->view->cfg, i)->name,
		              (unsigned long long)count);
	}
	kvs__buf_adds(&b, "# HELP kvshard_hint_bytes_pending Bytes of those "
	                  "hints.\n# TYPE kvshard_hint_bytes_pending gauge\n");
	for (size_t i = 0; i < kvs_config_shard_count(r->view->cfg); i++) {
		uint64_t count, bytes;

		kvs__node_hints_pending(r->view->node, i, &count, &bytes);
		kvs__buf_addf(&b,
		              "kvshard_hint_bytes_pending{shard=\"%s\"} %llu\n",
		              kvs_config_shard(r->view->cfg, i)->name,
		              (unsigned long long)bytes);
	}
	text = kvs__buf_take(&b, &len);
	if (text == NULL) {
		reply_fail(r, KVS_ENOMEM, "metrics");
		return;
	}
	reply_bytes(r, 200, text, len, KVS_TYPE_METRICS);
}
