/*
 * test_config.c - the cluster configuration: the seed's file, defaults,
 * every optional table, and errors reported as file:line:column.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvshard.h"
#include "testutil.h"

static const char seed[] =
	"[[shards]]\n"
	"name = \"shard-1\"\n"
	"idx = 0\n"
	"address = \"localhost:8081\"\n"
	"\n"
	"[[shards]]\n"
	"name = \"shard-2\"\n"
	"idx = 1\n"
	"address = \"localhost:8082\"\n";

static kvs_config *parse_ok(const char *text)
{
	kvs_config *cfg = NULL;
	char err[KVS_ERRBUF_SIZE];
	int rc = kvs_config_parse(&cfg, text, strlen(text), "t.toml", err);

	ck_assert_msg(rc == KVS_OK, "rejected: %s", err);
	return cfg;
}

/* Parse text that must fail; compare the whole message. */
static void parse_err(const char *text, const char *want)
{
	kvs_config *cfg = (kvs_config *)1;
	char err[KVS_ERRBUF_SIZE];

	ck_assert_int_eq(kvs_config_parse(&cfg, text, strlen(text), "t.toml",
	                                  err),
	                 KVS_ECONFIG);
	ck_assert_ptr_null(cfg);
	ck_assert_str_eq(err, want);
}

START_TEST(seed_file_loads_unchanged)
{
	kvs_config *cfg = parse_ok(seed);
	const kvs_cluster_config *c = kvs_config_cluster(cfg);
	const kvs_shard_config *s;

	ck_assert_uint_eq(kvs_config_shard_count(cfg), 2);
	s = kvs_config_shard(cfg, 1);
	ck_assert_str_eq(s->name, "shard-2");
	ck_assert_uint_eq(s->idx, 1);
	ck_assert_str_eq(s->address, "localhost:8082");
	ck_assert_str_eq(s->host, "localhost");
	ck_assert_uint_eq(s->port, 8082);
	ck_assert_double_eq(s->weight, 1.0);
	ck_assert_uint_eq(s->line, 6);
	ck_assert_ptr_eq(kvs_config_find_shard(cfg, "shard-1"),
	                 kvs_config_shard(cfg, 0));
	ck_assert_ptr_null(kvs_config_find_shard(cfg, "shard-9"));
	ck_assert_ptr_null(kvs_config_shard(cfg, 2));
	/* Defaults: N = min(3, shards), majority quorums. */
	ck_assert_uint_eq(c->replication, 2);
	ck_assert_uint_eq(c->write_quorum, 2);
	ck_assert_uint_eq(c->read_quorum, 2);
	ck_assert_uint_eq(c->vnodes, KVS_RING_DEFAULT_VNODES);
	ck_assert_int_eq(c->routing, KVS_ROUTING_PROXY);
	ck_assert_str_eq(c->data_dir, "data");
	ck_assert_uint_eq(c->request_timeout_ms, KVS_DEFAULT_REQUEST_TIMEOUT_MS);
	ck_assert_uint_eq(c->speculative_retry_min_ms, 10);
	ck_assert_uint_eq(c->speculative_retry_max_ms, 50);
	ck_assert_uint_eq(c->max_clock_skew_ms, 5000);
	ck_assert_uint_eq(c->max_key_bytes, 511);
	ck_assert_uint_eq(c->max_value_bytes, 16u << 20);
	ck_assert_int_eq(c->sync, KVS_SYNC_FULL);
	ck_assert_ptr_null(c->cluster_secret);
	ck_assert_str_eq(c->path, "t.toml");
	ck_assert_str_eq(c->name, "kvshard");
	/* No [coordination]: the file's topology, no etcd. */
	ck_assert_uint_eq(c->n_etcd_endpoints, 0);
	ck_assert_uint_eq(c->max_connections_per_client, 256);
	ck_assert_ptr_null(c->coordination_prefix);
	kvs_config_free(cfg);
}
END_TEST

START_TEST(repo_config_file_loads)
{
	kvs_config *cfg = NULL;
	char err[KVS_ERRBUF_SIZE];

	ck_assert_msg(kvs_config_load(&cfg, tu_source_path("shard-config.toml"),
	                              err) == KVS_OK,
	              "%s", err);
	ck_assert_uint_eq(kvs_config_shard_count(cfg), 3);
	ck_assert_uint_eq(kvs_config_cluster(cfg)->replication, 3);
	ck_assert_uint_eq(kvs_config_cluster(cfg)->write_quorum, 2);
	kvs_config_free(cfg);
}
END_TEST

START_TEST(every_option)
{
	static const char text[] =
		"[cluster]\n"
		"replication = 3\n"
		"write_quorum = 3\n"
		"read_quorum = 1\n"
		"vnodes = 64\n"
		"routing = \"redirect\"\n"
		"data_dir = \"/var/lib/kvshard\"\n"
		"request_timeout_ms = 1500\n"
		"connect_timeout_ms = 100\n"
		"speculative_retry_min_ms = 5\n"
		"speculative_retry_max_ms = 0\n"
		"max_clock_skew_ms = 250\n"
		"[storage]\n"
		"sync = \"relaxed\"\n"
		"map_size = 1_073_741_824\n"
		"max_map_size = 0\n"
		"[limits]\n"
		"max_key_bytes = 200\n"
		"max_value_bytes = 1048576\n"
		"max_connections = 300\n"
		"max_connections_per_client = 7\n"
		"idle_timeout_s = 30\n"
		"max_batch_ops = 50\n"
		"max_scan_limit = 500\n"
		"[server]\n"
		"threads = 4\n"
		"[auth]\n"
		"client_tokens = [\"c1\", \"c2\"]\n"
		"read_tokens = [\"r1\"]\n"
		"cluster_secret = \"s3cret\"\n"
		"[coordination]\n"
		"etcd = [\"127.0.0.1:2379\", \"etcd-2.example.com:2379\"]\n"
		"prefix = \"/prod/kv.1\"\n"
		"lease_ttl_s = 5\n"
		"[[shards]]\n"
		"name = \"a\"\nidx = 0\naddress = \"127.0.0.1:1\"\nweight = 2\n"
		"[[shards]]\n"
		"name = \"b\"\nidx = 1\naddress = \"[::1]:2\"\nweight = 0.5\n"
		"[[shards]]\n"
		"name = \"c.1_x\"\nidx = 7\naddress = \"db-3.example.com:65535\"\n";
	kvs_config *cfg = parse_ok(text);
	const kvs_cluster_config *c = kvs_config_cluster(cfg);

	ck_assert_uint_eq(c->replication, 3);
	ck_assert_uint_eq(c->write_quorum, 3);
	ck_assert_uint_eq(c->read_quorum, 1);
	ck_assert_uint_eq(c->vnodes, 64);
	ck_assert_int_eq(c->routing, KVS_ROUTING_REDIRECT);
	ck_assert_str_eq(c->data_dir, "/var/lib/kvshard");
	ck_assert_uint_eq(c->request_timeout_ms, 1500);
	ck_assert_uint_eq(c->connect_timeout_ms, 100);
	ck_assert_uint_eq(c->speculative_retry_min_ms, 5);
	ck_assert_uint_eq(c->speculative_retry_max_ms, 0); /* off */
	ck_assert_uint_eq(c->max_clock_skew_ms, 250);
	ck_assert_int_eq(c->sync, KVS_SYNC_RELAXED);
	ck_assert_uint_eq(c->map_size, 1u << 30);
	ck_assert_uint_eq(c->max_key_bytes, 200);
	ck_assert_uint_eq(c->max_value_bytes, 1048576);
	ck_assert_uint_eq(c->max_connections, 300);
	ck_assert_uint_eq(c->max_connections_per_client, 7);
	ck_assert_uint_eq(c->idle_timeout_s, 30);
	ck_assert_uint_eq(c->max_batch_ops, 50);
	ck_assert_uint_eq(c->max_scan_limit, 500);
	ck_assert_uint_eq(c->threads, 4);
	ck_assert_uint_eq(c->n_client_tokens, 2);
	ck_assert_str_eq(c->client_tokens[1], "c2");
	ck_assert_uint_eq(c->n_read_tokens, 1);
	ck_assert_str_eq(c->read_tokens[0], "r1");
	ck_assert_str_eq(c->cluster_secret, "s3cret");
	ck_assert_uint_eq(c->n_etcd_endpoints, 2);
	ck_assert_str_eq(c->etcd_endpoints[1], "etcd-2.example.com:2379");
	ck_assert_str_eq(c->coordination_prefix, "/prod/kv.1");
	ck_assert_uint_eq(c->lease_ttl_s, 5);
	ck_assert_double_eq(kvs_config_shard(cfg, 0)->weight, 2.0);
	ck_assert_str_eq(kvs_config_shard(cfg, 1)->host, "::1");
	ck_assert_uint_eq(kvs_config_shard(cfg, 1)->port, 2);
	ck_assert_double_eq(kvs_config_shard(cfg, 1)->weight, 0.5);
	ck_assert_uint_eq(kvs_config_shard(cfg, 2)->idx, 7);
	kvs_config_free(cfg);
}
END_TEST

/* The prefix in etcd defaults to the cluster's name. */
START_TEST(coordination_prefix_from_name)
{
	kvs_config *cfg = parse_ok("[cluster]\nname = \"orders\"\n"
	                           "[coordination]\netcd = [\"h:2379\"]\n"
	                           "[[shards]]\nname = \"s\"\nidx = 0\n"
	                           "address = \"h:1\"\n");
	const kvs_cluster_config *c = kvs_config_cluster(cfg);

	ck_assert_str_eq(c->name, "orders");
	ck_assert_str_eq(c->coordination_prefix, "/kvshard/orders");
	ck_assert_uint_eq(c->lease_ttl_s, KVS_DEFAULT_LEASE_TTL_S);
	kvs_config_free(cfg);
}
END_TEST

/* Shards come back in ascending idx, the join order of placement,
 * whatever their order in the file. */
START_TEST(shards_in_idx_order)
{
	kvs_config *cfg = parse_ok("[[shards]]\nname = \"c\"\nidx = 7\n"
	                           "address = \"localhost:3\"\n"
	                           "[[shards]]\nname = \"a\"\nidx = 2\n"
	                           "address = \"localhost:1\"\n"
	                           "[[shards]]\nname = \"b\"\nidx = 5\n"
	                           "address = \"localhost:2\"\n");

	ck_assert_uint_eq(kvs_config_shard_count(cfg), 3);
	ck_assert_str_eq(kvs_config_shard(cfg, 0)->name, "a");
	ck_assert_str_eq(kvs_config_shard(cfg, 1)->name, "b");
	ck_assert_str_eq(kvs_config_shard(cfg, 2)->name, "c");
	ck_assert_uint_eq(kvs_config_shard(cfg, 2)->idx, 7);
	ck_assert_str_eq(kvs_config_shard(cfg, 2)->address, "localhost:3");
	kvs_config_free(cfg);
}
END_TEST

START_TEST(replication_is_capped)
{
	kvs_config *cfg = parse_ok("[cluster]\nreplication = 5\n"
	                           "[[shards]]\nname = \"x\"\nidx = 0\n"
	                           "address = \"localhost:1\"\n");

	ck_assert_uint_eq(kvs_config_cluster(cfg)->replication, 1);
	ck_assert_uint_eq(kvs_config_cluster(cfg)->write_quorum, 1);
	ck_assert_uint_eq(kvs_config_cluster(cfg)->read_quorum, 1);
	kvs_config_free(cfg);
}
END_TEST

#define ONE_SHARD "[[shards]]\nname = \"s\"\nidx = 0\naddress = \"h:1\"\n"

/* [tls] with the test certificates: each '@' in tmpl is their
 * directory. */
static void tls_case(const char *tmpl, const char *want)
{
	const char *dir = tu_source_path("tests/tls");
	char text[4096];
	size_t len = 0;

	for (const char *p = tmpl; *p != '\0'; p++) {
		size_t n = *p == '@' ? strlen(dir) : 1;

		ck_assert_uint_lt(len + n, sizeof(text));
		memcpy(text + len, *p == '@' ? dir : p, n);
		len += n;
	}
	text[len] = '\0';
	if (want != NULL) {
		parse_err(text, want);
	} else {
		kvs_config *cfg = parse_ok(text);
		const kvs_cluster_config *c = kvs_config_cluster(cfg);

		ck_assert_ptr_nonnull(strstr(c->tls_cert, "node.pem"));
		ck_assert_ptr_nonnull(strstr(c->tls_key, "node.key"));
		kvs_config_free(cfg);
	}
}

/* Asking for TLS must never give plain HTTP: every incomplete [tls] is
 * an error at its place. */
START_TEST(tls_must_be_complete)
{
	tls_case(ONE_SHARD "[tls]\ncert = \"@/node.pem\"\nkey = \"@/node.key\"\n"
	                   "ca = \"@/ca.pem\"\nmutual = true\n",
	         NULL);
	tls_case(ONE_SHARD "[tls]\n", "t.toml:5:1: [tls] needs both 'cert' and "
	                              "'key' (the node's certificate and private "
	                              "key, PEM); without [tls] kvshard serves "
	                              "plain HTTP");
	tls_case(ONE_SHARD "[tls]\ncert = \"@/node.pem\"\n",
	         "t.toml:5:1: [tls] needs both 'cert' and 'key' (the node's "
	         "certificate and private key, PEM); without [tls] kvshard "
	         "serves plain HTTP");
	tls_case(ONE_SHARD "[tls]\nkey = \"@/node.key\"\n",
	         "t.toml:5:1: [tls] needs both 'cert' and 'key' (the node's "
	         "certificate and private key, PEM); without [tls] kvshard "
	         "serves plain HTTP");
	parse_err(ONE_SHARD "[tls]\ncert = \"/nonexistent/c.pem\"\n",
	          "t.toml:6:8: 'cert': cannot read \"/nonexistent/c.pem\": No "
	          "such file or directory");
	parse_err(ONE_SHARD "[tls]\ncert = \"\"\n",
	          "t.toml:6:8: 'cert' must not be empty");
	parse_err(ONE_SHARD "[tls]\ncert = 1\n",
	          "t.toml:6:8: 'cert' must be a string, not integer");
	parse_err(ONE_SHARD "[tls]\ncrt = \"x\"\n",
	          "t.toml:6:1: unknown key 'crt' in [tls]");
	tls_case(ONE_SHARD "[tls]\ncert = \"@/node.pem\"\nkey = \"@/node.key\"\n"
	                   "mutual = true\n",
	         "t.toml:8:10: mutual TLS needs 'ca': the authority whose "
	         "certificates make a client a peer");
	tls_case(ONE_SHARD "[tls]\ncert = \"@/node.pem\"\nkey = \"@/node.key\"\n"
	                   "mutual = \"yes\"\n",
	         "t.toml:8:10: 'mutual' must be true or false, not string");
	tls_case(ONE_SHARD "[tls]\ncert = \"@/node.pem\"\nkey = \"@/node.key\"\n"
	                   "peer_cert = \"@/node.pem\"\n",
	         "t.toml:5:1: [tls] 'peer_cert' and 'peer_key' go together");
	tls_case(ONE_SHARD "[tls]\ncert = \"@/node.pem\"\nkey = \"@/node.key\"\n"
	                   "peer_cert = \"@/node.pem\"\npeer_key = \"@/node.key\"\n",
	         "t.toml:5:1: [tls] 'peer_cert' is only used with mutual = true");
}
END_TEST

START_TEST(errors_point_at_the_mistake)
{
	parse_err("", "t.toml:1:1: no shards: add at least one [[shards]] "
	              "table with name, idx and address");
	parse_err(ONE_SHARD "[[shards]]\nname = \"s\"\nidx = 1\naddress = \"h:2\"\n",
	          "t.toml:5:1: duplicate shard name \"s\" (first defined on line 1)");
	parse_err(ONE_SHARD "[[shards]]\nname = \"t\"\nidx = 0\naddress = \"h:2\"\n",
	          "t.toml:5:1: duplicate shard idx 0 (shard \"s\" on line 1 has it)");
	parse_err(ONE_SHARD "[[shards]]\nname = \"t\"\nidx = 1\naddress = \"H:1\"\n",
	          "t.toml:5:1: duplicate address \"H:1\" (shard \"s\" on line 1 has it)");
	parse_err("[[shards]]\nname = \"s\"\naddress = \"h:1\"\n",
	          "t.toml:1:1: shard is missing 'idx'");
	parse_err("[[shards]]\nname = \"s\"\nidx = \"0\"\naddress = \"h:1\"\n",
	          "t.toml:3:7: 'idx' must be an integer, not string");
	parse_err("[[shards]]\nname = \"s\"\nidx = -1\naddress = \"h:1\"\n",
	          "t.toml:3:7: 'idx' must be between 0 and 2147483647, not -1");
	parse_err("[[shards]]\nname = \"s\"\nidx = 0\naddress = \"h\"\n",
	          "t.toml:4:11: bad address \"h\": expected host:port");
	parse_err("[[shards]]\nname = \"s\"\nidx = 0\naddress = \"h:0\"\n",
	          "t.toml:4:11: bad address \"h:0\": the port must be a number "
	          "from 1 to 65535");
	parse_err("[[shards]]\nname = \"s\"\nidx = 0\naddress = \"h:99999\"\n",
	          "t.toml:4:11: bad address \"h:99999\": the port must be a "
	          "number from 1 to 65535");
	parse_err("[[shards]]\nname = \"s\"\nidx = 0\naddress = \"http://h:80\"\n",
	          "t.toml:4:11: bad address \"http://h:80\": the host has "
	          "invalid characters");
	parse_err("[[shards]]\nname = \"s\"\nidx = 0\naddress = \"h:1\"\nport = 3\n",
	          "t.toml:5:1: unknown key 'port' in [[shards]]");
	parse_err("[[shards]]\nname = \"../x\"\nidx = 0\naddress = \"h:1\"\n",
	          "t.toml:2:8: shard name \"../x\" must be 1 to 64 of A-Z a-z 0-9 "
	          ". _ - and not start with '.' or '-'");
	parse_err(ONE_SHARD "[cluster]\nreplicas = 3\n",
	          "t.toml:6:1: unknown key 'replicas' in [cluster]");
	parse_err(ONE_SHARD "[clutser]\nreplication = 3\n",
	          "t.toml:5:2: unknown key 'clutser' (expected [[shards]], "
	          "[cluster], [storage], [limits], [server], [auth], "
	          "[coordination] or [tls])");
	parse_err(ONE_SHARD "[coordination]\nprefix = \"/a\"\n",
	          "t.toml:5:1: [coordination] needs 'etcd', the list of etcd's "
	          "client endpoints (\"host:port\")");
	parse_err(ONE_SHARD "[coordination]\netcd = []\n",
	          "t.toml:6:8: 'etcd' must list 1 to 16 endpoints "
	          "(\"host:port\")");
	parse_err(ONE_SHARD "[coordination]\netcd = [\"h:1\", \"http://h:2\"]\n",
	          "t.toml:6:16: bad etcd endpoint \"http://h:2\": the host has "
	          "invalid characters");
	parse_err(ONE_SHARD "[coordination]\netcd = \"h:1\"\n",
	          "t.toml:6:8: 'etcd' must be an array of strings, not string");
	parse_err(ONE_SHARD "[coordination]\netcd = [\"h:1\"]\nprefix = \"a/b\"\n",
	          "t.toml:7:10: prefix \"a/b\" must start with '/', not end "
	          "with one, and hold names of A-Z a-z 0-9 . _ - separated by "
	          "single '/' (at most 256 bytes)");
	parse_err(ONE_SHARD "[coordination]\netcd = [\"h:1\"]\nprefix = \"/a//b\"\n",
	          "t.toml:7:10: prefix \"/a//b\" must start with '/', not end "
	          "with one, and hold names of A-Z a-z 0-9 . _ - separated by "
	          "single '/' (at most 256 bytes)");
	parse_err(ONE_SHARD "[coordination]\netcd = [\"h:1\"]\nlease_ttl_s = 1\n",
	          "t.toml:7:15: 'lease_ttl_s' must be between 2 and 300, not 1");
	parse_err(ONE_SHARD "[coordination]\netcd = [\"h:1\"]\nwatch = 1\n",
	          "t.toml:7:1: unknown key 'watch' in [coordination]");
	parse_err(ONE_SHARD "[cluster]\nname = \"a/b\"\n",
	          "t.toml:6:8: cluster name \"a/b\" must be 1 to 64 of A-Z a-z "
	          "0-9 . _ - and not start with '.' or '-'");
	parse_err(ONE_SHARD "[cluster]\nrouting = \"forward\"\n",
	          "t.toml:6:11: 'routing' must be \"proxy\" or \"redirect\", "
	          "not \"forward\"");
	parse_err(ONE_SHARD "[cluster]\nwrite_quorum = 2\n",
	          "t.toml:6:16: 'write_quorum' 2 is larger than the replication "
	          "factor 1 (capped at the number of shards that hold data)");
	parse_err(ONE_SHARD "[cluster]\nspeculative_retry_max_ms = 20\n"
	          "speculative_retry_min_ms = 30\n",
	          "t.toml:7:28: 'speculative_retry_min_ms' 30 is larger than "
	          "'speculative_retry_max_ms' 20");
	parse_err(ONE_SHARD "[cluster]\nspeculative_retry_min_ms = 0\n",
	          "t.toml:6:28: 'speculative_retry_min_ms' must be between 1 "
	          "and 600000, not 0");
	parse_err(ONE_SHARD "[cluster]\ntombstone_grace_s = 3600\n",
	          "t.toml:6:21: 'tombstone_grace_s' 3600 must be longer than "
	          "'hint_max_age_s' 10800 (or hints off: hint_max_bytes = 0), "
	          "or a late hint could bring back a deleted value");
	parse_err(ONE_SHARD "[cluster]\nmax_clock_skew_ms = 0\n",
	          "t.toml:6:21: 'max_clock_skew_ms' must be between 1 "
	          "and 86400000, not 0");
	parse_err(ONE_SHARD "[limits]\nmax_key_bytes = 512\n",
	          "t.toml:6:17: 'max_key_bytes' must be between 1 and 511, not 512");
	parse_err(ONE_SHARD "[auth]\nclient_tokens = [\"a\", 3]\n",
	          "t.toml:6:23: 'client_tokens' must be an array of strings; "
	          "entry 2 is integer");
	parse_err(ONE_SHARD "[auth]\nread_tokens = [\"r\"]\n",
	          "t.toml:5:1: [auth] with tokens also needs 'cluster_secret' "
	          "(the shards' shared secret for peer requests)");
	parse_err(ONE_SHARD "[auth]\ncluster_secret = \"\"\n",
	          "t.toml:6:18: 'cluster_secret' must not be empty");
	parse_err(ONE_SHARD "[auth]\ncluster_secret = \"a b\"\n",
	          "t.toml:6:18: 'cluster_secret' may not hold spaces or "
	          "control characters");
	parse_err(ONE_SHARD "[auth]\ncluster_secret = \"a\\r\\nX-Evil: 1\"\n",
	          "t.toml:6:18: 'cluster_secret' may not hold spaces or "
	          "control characters");
	parse_err(ONE_SHARD "[cluster]\npeer_links = 1\n",
	          "t.toml:6:14: 'peer_links' must be true or false, not "
	          "integer");
	parse_err(ONE_SHARD "cluster = 3\n",
	          "t.toml:5:1: unknown key 'cluster' in [[shards]]");
	parse_err("cluster = 3\n" ONE_SHARD,
	          "t.toml:1:1: 'cluster' must be a table ([cluster]), not integer");
	parse_err("shards = 1\n",
	          "t.toml:1:1: 'shards' must be an array of tables ([[shards]]), "
	          "not integer");
	parse_err("[[shards]]\nname = \"s\"\nidx = 0\naddress = \"h:1\"\nweight = 0\n",
	          "t.toml:1:1: every shard has weight 0: nothing could store a key");
	parse_err(ONE_SHARD "[storage]\nsync = \"none\"\n",
	          "t.toml:6:8: 'sync' must be \"full\" or \"relaxed\", not \"none\"");
}
END_TEST

/* The deadlines and the body budget: defaults, values, bad values. */
START_TEST(request_limits)
{
	kvs_config *cfg = parse_ok(ONE_SHARD);
	const kvs_cluster_config *c = kvs_config_cluster(cfg);

	ck_assert_uint_eq(c->header_timeout_s, KVS_DEFAULT_HEADER_TIMEOUT_S);
	ck_assert_uint_eq(c->body_timeout_s, KVS_DEFAULT_BODY_TIMEOUT_S);
	ck_assert_uint_eq(c->max_buffered_bytes,
	                  KVS_DEFAULT_MAX_BUFFERED_BYTES);
	kvs_config_free(cfg);
	cfg = parse_ok(ONE_SHARD "[limits]\nheader_timeout_s = 3\n"
	               "body_timeout_s = 120\nmax_buffered_bytes = 1048576\n"
	               "max_value_bytes = 1048576\n");
	c = kvs_config_cluster(cfg);
	ck_assert_uint_eq(c->header_timeout_s, 3);
	ck_assert_uint_eq(c->body_timeout_s, 120);
	ck_assert_uint_eq(c->max_buffered_bytes, 1048576);
	kvs_config_free(cfg);
	/* The default budget grows with max_value_bytes. */
	cfg = parse_ok(ONE_SHARD "[limits]\nmax_value_bytes = 134217728\n");
	ck_assert_uint_eq(kvs_config_cluster(cfg)->max_buffered_bytes,
	                  4 * (size_t)134217728);
	kvs_config_free(cfg);
	parse_err(ONE_SHARD "[limits]\nheader_timeout_s = 0\n",
	          "t.toml:6:20: 'header_timeout_s' must be between 1 and "
	          "86400, not 0");
	parse_err(ONE_SHARD "[limits]\nbody_timeout_s = 86401\n",
	          "t.toml:6:18: 'body_timeout_s' must be between 1 and "
	          "86400, not 86401");
	parse_err(ONE_SHARD "[limits]\nbody_timeout_s = \"1m\"\n",
	          "t.toml:6:18: 'body_timeout_s' must be an integer, not "
	          "string");
	parse_err(ONE_SHARD "[limits]\nmax_buffered_bytes = 0\n",
	          "t.toml:6:22: 'max_buffered_bytes' must be between 1 and "
	          "9223372036854775807, not 0");
	parse_err(ONE_SHARD "[limits]\nmax_buffered_bytes = 1000\n",
	          "t.toml:6:22: 'max_buffered_bytes' 1000 is smaller than "
	          "'max_value_bytes' 16777216: a value that large could never "
	          "be received");
}
END_TEST

/* max_answer_bytes: its default, which grows with max_value_bytes, and a
 * cap given too small for one value. */
START_TEST(answer_cap)
{
	kvs_config *cfg = parse_ok(ONE_SHARD);

	ck_assert_uint_eq(kvs_config_cluster(cfg)->max_answer_bytes,
	                  KVS_DEFAULT_MAX_ANSWER_BYTES);
	kvs_config_free(cfg);
	cfg = parse_ok(ONE_SHARD "[limits]\nmax_value_bytes = 1000\n"
	               "max_answer_bytes = 66872\n");
	ck_assert_uint_eq(kvs_config_cluster(cfg)->max_answer_bytes, 66872);
	kvs_config_free(cfg);
	/* 4/3 of 96 MiB, plus 64 KiB. */
	cfg = parse_ok(ONE_SHARD "[limits]\nmax_value_bytes = 100663296\n");
	ck_assert_uint_eq(kvs_config_cluster(cfg)->max_answer_bytes,
	                  134217728 + 65536);
	kvs_config_free(cfg);
	parse_err(ONE_SHARD "[limits]\nmax_answer_bytes = 66871\n"
	          "max_value_bytes = 1000\n",
	          "t.toml:6:20: 'max_answer_bytes' 66871 is too small: an "
	          "answer must hold one value of 'max_value_bytes' 1000 in "
	          "base64 with its key, at least 66872 bytes");
	parse_err(ONE_SHARD "[limits]\nmax_answer_bytes = 0\n",
	          "t.toml:6:20: 'max_answer_bytes' must be between 1 and "
	          "9223372036854775807, not 0");
}
END_TEST

START_TEST(syntax_errors_have_positions)
{
	kvs_config *cfg = NULL;
	char err[KVS_ERRBUF_SIZE];
	static const char *bad[] = {
		"[[shards]]\nname = \"s\nidx = 0\n",   /* unterminated string */
		"[[shards]]\nname \"s\"\n",             /* missing = */
		"[[shards]]\nname = \"s\"\nname = \"t\"\n", /* duplicate key */
		"[cluster]\nvnodes = 99999999999999999999\n",
	};
	static const char *prefix[] = {"t.toml:2:", "t.toml:2:", "t.toml:3:",
	                               "t.toml:2:"};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_int_eq(kvs_config_parse(&cfg, bad[i], strlen(bad[i]),
		                                  "t.toml", err),
		                 KVS_ECONFIG);
		ck_assert_msg(strncmp(err, prefix[i], strlen(prefix[i])) == 0,
		              "case %zu: '%s' does not start with '%s'", i, err,
		              prefix[i]);
		/* line:col: then a message */
		ck_assert_uint_gt(strlen(err), strlen(prefix[i]) + 4);
	}
}
END_TEST

START_TEST(load_from_file)
{
	const char *dir = tu_mkdtemp();
	char path[4200], err[KVS_ERRBUF_SIZE];
	kvs_config *cfg = (kvs_config *)1;

	snprintf(path, sizeof(path), "%s/missing.toml", dir);
	ck_assert_int_eq(kvs_config_load(&cfg, path, err), KVS_EIO);
	ck_assert_ptr_null(cfg);
	ck_assert_ptr_nonnull(strstr(err, "missing.toml: No such file"));
	snprintf(path, sizeof(path), "%s/c.toml", dir);
	ck_assert_int_eq(tu_write_file(path, seed, strlen(seed)), 0);
	ck_assert_int_eq(kvs_config_load(&cfg, path, err), KVS_OK);
	ck_assert_str_eq(kvs_config_cluster(cfg)->path, path);
	kvs_config_free(cfg);
	ck_assert_int_eq(tu_write_file(path, "[[shards]]\nx = 1\n", 17), 0);
	ck_assert_int_eq(kvs_config_load(&cfg, path, err), KVS_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "c.toml:2:1: unknown key 'x'"));
	kvs_config_free(NULL);
	tu_rmtree(dir);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, seed_file_loads_unchanged);
	tcase_add_test(tc, repo_config_file_loads);
	tcase_add_test(tc, every_option);
	tcase_add_test(tc, coordination_prefix_from_name);
	tcase_add_test(tc, replication_is_capped);
	tcase_add_test(tc, shards_in_idx_order);
	tcase_add_test(tc, errors_point_at_the_mistake);
	tcase_add_test(tc, tls_must_be_complete);
	tcase_add_test(tc, answer_cap);
	tcase_add_test(tc, syntax_errors_have_positions);
	tcase_add_test(tc, load_from_file);
	tcase_add_test(tc, request_limits);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
