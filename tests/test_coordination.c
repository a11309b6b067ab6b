/*
 * test_coordination.c - shards whose topology is kept in a private etcd:
 * the first seeds it, later files lose to it, nodes are registered while
 * they live, and a node that cannot reach etcd says so and stops. At
 * runtime, the admin calls change it (shards of weight 0: this version
 * moves no data) and every node applies each new epoch; two changes sent
 * at once to two nodes never leave them disagreeing.
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base64.h"
#include "cluster.h"
#include "etcd.h"
#include "kvshard.h"
#include "testutil.h"
#include "util.h"

static struct tc_etcd E;
static struct tc_cluster C;
static char extra[512];


static void setup(void)
{
	tc_etcd_start(&E);
	snprintf(extra, sizeof(extra),
	         "[cluster]\nname = \"t\"\n[coordination]\netcd = [\"%s\"]\n"
	         "lease_ttl_s = 2\n",
	         E.endpoint);
}

static void teardown(void)
{
	tc_stop(&C);
	tc_etcd_stop(&E, 1);
}

/* Shard i's log (free it). */
static char *log_of(int i)
{
	char path[700];

	snprintf(path, sizeof(path), "%s/%s.log", C.dir, C.node[i].name);
	return tu_read_file(path);
}

/* etcd's document at /kvshard/t/topology, parsed. */
static cJSON *topology_in_etcd(void)
{
	const char *ep[1] = {E.endpoint};
	kvs__etcd *e;
	char *v = NULL;
	size_t len = 0;
	cJSON *doc;

	ck_assert_int_eq(kvs__etcd_new(&e, ep, 1, 2000), KVS_OK);
	ck_assert_int_eq(kvs__etcd_get(e, "/kvshard/t/topology", &v, &len, NULL),
	                 KVS_OK);
	kvs__etcd_free(e);
	doc = cJSON_ParseWithLength(v, len);
	free(v);
	ck_assert_ptr_nonnull(doc);
	return doc;
}

/* /v1/cluster of node i, parsed. */
static cJSON *cluster_of(int i)
{
	struct tc_resp r = tc_get(tc_url(&C, i, "/v1/cluster%s", ""), 200);
	cJSON *doc = cJSON_ParseWithLength(r.body, r.len);

	tc_resp_free(&r);
	ck_assert_ptr_nonnull(doc);
	return doc;
}

/* Shard name's entry in a /v1/cluster document. */
static const cJSON *shard_in(const cJSON *doc, const char *name)
{
	const cJSON *sh;

	cJSON_ArrayForEach(sh, cJSON_GetObjectItem(doc, "shards"))
	{
		if (strcmp(cJSON_GetObjectItem(sh, "name")->valuestring, name) ==
		    0)
			return sh;
	}
	ck_abort_msg("no shard %s in /v1/cluster", name);
	return NULL;
}

/* The seed's store through node via, then its retrieve through each of
 * the first n nodes gives value back. */
static void store_then_read_everywhere(int via, int n, const char *key,
                                       const char *value)
{
	char path[256];
	struct tc_resp r;

	snprintf(path, sizeof(path), "/store?key=%s&value=%s", key, value);
	r = tc_get(tc_url(&C, via, "%s", path), 200);
	tc_resp_free(&r);
	snprintf(path, sizeof(path), "/retrieve?key=%s", key);
	for (int i = 0; i < n; i++) {
		r = tc_get(tc_url(&C, i, "%s", path), 200);
		ck_assert_str_eq(r.body, value);
		tc_resp_free(&r);
	}
}

/* Whether node i's /v1/cluster says shard `name` is registered. */
static int registered(int i, const char *name)
{
	cJSON *doc = cluster_of(i);
	int yes = cJSON_IsTrue(
	        cJSON_GetObjectItem(shard_in(doc, name), "registered"));

	cJSON_Delete(doc);
	return yes;
}

/* Whether node i's probes say shard name is up. */
static int up(int i, const char *name)
{
	cJSON *doc = cluster_of(i);
	int yes = strcmp(cJSON_GetObjectItem(shard_in(doc, name), "status")
	                         ->valuestring,
	                 "up") == 0;

	cJSON_Delete(doc);
	return yes;
}

/* Wait (5 s at most) until node i's probes say shard name is up. */
static void wait_up(int i, const char *name)
{
	uint64_t deadline = tu_now_ms() + 5000;

	while (!up(i, name)) {
		ck_assert_msg(tu_now_ms() < deadline,
		              "%s not up after 5 s (seen by %s)", name,
		              C.node[i].name);
		usleep(100 * 1000);
	}
}

/* Wait (ms at most) until node i sees shard name's registration as want. */
static void expect_registered(int i, const char *name, int want, int ms)
{
	uint64_t deadline = tu_now_ms() + (uint64_t)ms;

	while (registered(i, name) != want) {
		ck_assert_msg(tu_now_ms() < deadline,
		              "%s still %sregistered after %d ms (seen by %s)",
		              name, want ? "not " : "", ms, C.node[i].name);
		usleep(100 * 1000);
	}
}

START_TEST(first_node_seeds_the_topology)
{
	cJSON *doc, *sh;
	struct tc_resp r;
	int n = 0;

	tc_start(&C, 3, extra);
	doc = topology_in_etcd();
	ck_assert_int_eq(cJSON_GetObjectItem(doc, "epoch")->valueint, 1);
	ck_assert_int_eq(cJSON_GetObjectItem(doc, "replication")->valueint, 3);
	cJSON_ArrayForEach(sh, cJSON_GetObjectItem(doc, "shards"))
	{
		ck_assert_str_eq(cJSON_GetObjectItem(sh, "name")->valuestring,
		                 C.node[n].name);
		n++;
	}
	ck_assert_int_eq(n, 3);
	cJSON_Delete(doc);
	/* Every node is registered, as every node sees it. */
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			expect_registered(i, C.node[j].name, 1, 3000);
	doc = cluster_of(1);
	ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(doc,
	                                                         "coordination"),
	                                     "prefix")
	                         ->valuestring,
	                 "/kvshard/t");
	cJSON_Delete(doc);
	/* And say so in /metrics. */
	r = tc_get(tc_url(&C, 2, "/metrics%s", ""), 200);
	ck_assert_ptr_nonnull(strstr(r.body, "\nkvshard_topology_epoch 1\n"));
	ck_assert_ptr_nonnull(
	        strstr(r.body, "\nkvshard_registered{shard=\"shard-1\"} 1\n"));
	tc_resp_free(&r);
	/* The seed's calls work through every node. */
	store_then_read_everywhere(0, 3, "k", "v1");
}
END_TEST

/* A node whose file differs from etcd's topology runs etcd's. */
START_TEST(etcd_wins_over_a_differing_file)
{
	char text[1024], *log;
	cJSON *doc, *sh;
	int n = 0;

	tc_start(&C, 2, extra);
	tc_stop_node(&C, 0, SIGTERM);
	tc_stop_node(&C, 1, SIGTERM);
	/* The file now knows only the first shard, at weight 3. */
	snprintf(text, sizeof(text),
	         "%s[[shards]]\nname = \"%s\"\nidx = 0\n"
	         "address = \"127.0.0.1:%d\"\nweight = 3\n",
	         extra, C.node[0].name, C.node[0].port);
	ck_assert_int_eq(tu_write_file(C.config, text, strlen(text)), 0);
	tc_start_node(&C, 0);
	doc = cluster_of(0);
	cJSON_ArrayForEach(sh, cJSON_GetObjectItem(doc, "shards"))
	{
		ck_assert_double_eq(cJSON_GetObjectItem(sh, "weight")->valuedouble,
		                    1.0);
		n++;
	}
	ck_assert_int_eq(n, 2);
	ck_assert_int_eq(cJSON_GetObjectItem(doc, "replication")->valueint, 2);
	cJSON_Delete(doc);
	log = log_of(0);
	ck_assert_msg(strstr(log, "differs from") != NULL &&
	                      strstr(log, "etcd wins") != NULL,
	              "no warning in the log: %s", log);
	free(log);
	/* etcd's document is unchanged. */
	doc = topology_in_etcd();
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(doc, "shards")),
	                 2);
	cJSON_Delete(doc);
}
END_TEST

/* A node is registered while it lives: gone at once when it stops, within
 * its lease when it dies, back when it restarts. */
START_TEST(registration_follows_the_node)
{
	tc_start(&C, 2, extra);
	expect_registered(0, C.node[1].name, 1, 3000);
	/* Renewed: still there well past its lease's 2 s. */
	usleep(3500 * 1000);
	ck_assert(registered(0, C.node[1].name));
	ck_assert(registered(1, C.node[1].name));
	tc_stop_node(&C, 1, SIGKILL);
	/* Lease 2 s, then etcd's check (500 ms), then a renewal (~0.7 s). */
	expect_registered(0, C.node[1].name, 0, 6000);
	{
		struct tc_resp r = tc_get(tc_url(&C, 0, "/metrics%s", ""), 200);

		ck_assert_ptr_nonnull(strstr(
		        r.body, "\nkvshard_registered{shard=\"shard-2\"} 0\n"));
		tc_resp_free(&r);
	}
	tc_start_node(&C, 1);
	expect_registered(0, C.node[1].name, 1, 3000);
	tc_stop_node(&C, 1, SIGTERM);
	/* Revoked on the way out: seen at node 0's next look. */
	expect_registered(0, C.node[1].name, 0, 1500);
}
END_TEST

/* Running nodes do not need etcd to serve: they keep their topology,
 * and say once that they cannot renew. */
START_TEST(serving_goes_on_without_etcd)
{
	char *log;
	struct tc_resp r;
	uint64_t deadline;

	tc_start(&C, 2, extra);
	/* Each has seen the other up (probes, every second). */
	for (int i = 0; i < 2; i++)
		wait_up(i, C.node[1 - i].name);
	tc_etcd_stop(&E, 0);
	for (int i = 0; i < 2; i++) {
		char value[8];

		snprintf(value, sizeof(value), "v%d", i);
		ck_assert_int_eq(tc_http("GET",
		                         tc_url(&C, i, "/store?key=k&value=%s",
		                                value),
		                         NULL, 0, NULL, &r),
		                 0);
		if (r.status != 200) {
			tc_dump_logs(&C);
			ck_abort_msg("store: %ld %s", r.status, r.body);
		}
		tc_resp_free(&r);
		r = tc_get(tc_url(&C, 1 - i, "/retrieve?key=%s", "k"), 200);
		ck_assert_str_eq(r.body, value);
		tc_resp_free(&r);
	}
	deadline = tu_now_ms() + 8000;
	while (strstr(log = log_of(0), "cannot renew") == NULL) {
		ck_assert_msg(tu_now_ms() < deadline,
		              "no warning about etcd in the log: %s", log);
		free(log);
		usleep(200 * 1000);
	}
	ck_assert_ptr_null(strstr(strstr(log, "cannot renew") + 1,
	                          "cannot renew"));
	free(log);
}
END_TEST

/* Send method body to path on node i: the status, and the body in *out
 * (may be NULL; free it). */
static long call(int i, const char *method, const char *path,
                 const char *body, char **out)
{
	struct tc_resp r;
	long status;

	ck_assert_int_eq(tc_http(method, tc_url(&C, i, "%s", path), body,
	                         body != NULL ? strlen(body) : 0, NULL, &r),
	                 0);
	status = r.status;
	if (out != NULL)
		*out = strdup(r.body != NULL ? r.body : "");
	tc_resp_free(&r);
	return status;
}

/* node i's rebalance answer, as text (free it). */
static char *rebalance_text(int i)
{
	char *out = NULL;

	ck_assert_int_eq(call(i, "GET", "/v1/cluster/rebalance", NULL, &out),
	                 200);
	return out;
}

/* node i's rebalance answer, parsed. */
static cJSON *rebalance_of(int i)
{
	char *out = rebalance_text(i);
	cJSON *doc = cJSON_Parse(out);

	free(out);
	ck_assert_ptr_nonnull(doc);
	return doc;
}

/* Wait (ms at most) until node i's rebalance answer holds text. */
static void expect_rebalance(int i, const char *text, int ms)
{
	uint64_t deadline = tu_now_ms() + (uint64_t)ms;

	for (;;) {
		char *out = rebalance_text(i);

		if (strstr(out, text) != NULL) {
			free(out);
			return;
		}
		if (tu_now_ms() > deadline)
			tc_dump_logs(&C);
		ck_assert_msg(tu_now_ms() < deadline, "no %s after %d ms: %s",
		              text, ms, out);
		free(out);
		usleep(100 * 1000);
	}
}

#define RUNNING "\"state\":\"running\""
#define IDLE "\"state\":\"idle\""

/* Node i's epoch and number of shards, from /v1/cluster. */
static void view_of(int i, int *epoch, int *shards)
{
	cJSON *doc = cluster_of(i);

	*epoch = cJSON_GetObjectItem(doc, "epoch")->valueint;
	*shards = cJSON_GetArraySize(cJSON_GetObjectItem(doc, "shards"));
	cJSON_Delete(doc);
}

/* Wait (5 s at most) until node i runs epoch with that many shards. */
static void expect_view(int i, int epoch, int shards)
{
	uint64_t deadline = tu_now_ms() + 5000;
	int e = 0, n = 0;

	for (;;) {
		view_of(i, &e, &n);
		if (e == epoch && n == shards)
			return;
		ck_assert_msg(tu_now_ms() < deadline,
		              "%s runs epoch %d with %d shards, not epoch %d "
		              "with %d, after 5 s",
		              C.node[i].name, e, n, epoch, shards);
		usleep(50 * 1000);
	}
}

/* A writer through nodes 0 and 1 in turn, until stopped (key "w<n>",
 * value "v<n>"): every write must be answered 200, across the epochs. */
struct writer {
	pthread_t t;
	volatile int stop;
	int writes, failures;
	long last_status;
	char last_body[256];
};

static void *write_loop(void *arg)
{
	struct writer *w = arg;

	while (!w->stop && w->writes < 100000) {
		char key[32], value[32];
		struct tc_resp r;
		int i = w->writes % 2;

		snprintf(key, sizeof(key), "w%d", w->writes);
		snprintf(value, sizeof(value), "v%d", w->writes);
		if (tc_http("PUT", tc_url(&C, i, "/v1/kv/%s", key), value,
		            strlen(value), NULL, &r) != 0 ||
		    r.status != 200) {
			w->failures++;
			w->last_status = r.status;
			snprintf(w->last_body, sizeof(w->last_body), "%s at %d via %s",
			         r.body != NULL ? r.body : "", w->writes,
			         C.node[i].name);
		}
		tc_resp_free(&r);
		w->writes++;
	}
	return NULL;
}

/* The file knows shards 0 and 1; shard 2 (prepared, not listed) is for
 * adding at runtime. */
static void start_two_of_three(void)
{
	char text[2048];

	tc_prepare(&C, 3, extra);
	snprintf(text, sizeof(text),
	         "%s[[shards]]\nname = \"%s\"\nidx = 0\n"
	         "address = \"127.0.0.1:%d\"\n"
	         "[[shards]]\nname = \"%s\"\nidx = 1\n"
	         "address = \"127.0.0.1:%d\"\n",
	         extra, C.node[0].name, C.node[0].port, C.node[1].name,
	         C.node[1].port);
	ck_assert_int_eq(tu_write_file(C.config, text, strlen(text)), 0);
	tc_start_node(&C, 0);
	tc_start_node(&C, 1);
}

/* A shard of weight 0 joins a running cluster through the admin call,
 * serves as soon as it starts, and leaves the same way; what would move
 * data is refused, and bad calls are told why. */
START_TEST(a_shard_of_weight_0_joins_and_leaves)
{
	char body[256], *out = NULL, *log;
	struct tc_resp r;
	struct writer w = {0};
	int status = 0;

	start_two_of_three();
	ck_assert_int_eq(pthread_create(&w.t, NULL, write_loop, &w), 0);
	snprintf(body, sizeof(body),
	         "{\"name\":\"%s\",\"address\":\"127.0.0.1:%d\","
	         "\"weight\":0}",
	         C.node[2].name, C.node[2].port);
	ck_assert_int_eq(call(0, "POST", "/v1/cluster/shards", body, &out), 202);
	ck_assert_msg(strstr(out, "\"epoch\":2") != NULL, "%s", out);
	free(out);
	/* Both nodes apply it, without a restart. */
	expect_view(0, 2, 3);
	expect_view(1, 2, 3);
	/* The new shard starts from etcd's topology and serves at once. */
	tc_start_node(&C, 2);
	expect_view(2, 2, 3);
	store_then_read_everywhere(2, 3, "joined", "yes");
	wait_up(0, C.node[2].name);

	/* A shard added with a weight joins with none until it runs: the
	 * move waits for it, and blocks other moves; removed before it ran,
	 * nothing moved. */
	ck_assert_int_eq(call(1, "POST", "/v1/cluster/shards",
	                      "{\"name\":\"big\",\"address\":\"127.0.0.1:1\","
	                      "\"weight\":1}",
	                      &out),
	                 202);
	ck_assert_msg(strstr(out, "\"epoch\":3") != NULL, "%s", out);
	free(out);
	expect_rebalance(1, RUNNING, 5000);
	ck_assert_int_eq(call(1, "GET", "/v1/cluster/rebalance", NULL, &out),
	                 200);
	ck_assert_msg(strstr(out, "\"phase\":\"pending\"") != NULL, "%s", out);
	free(out);
	snprintf(body, sizeof(body), "/v1/cluster/shards/%s", C.node[0].name);
	ck_assert_int_eq(call(0, "PATCH", body, "{\"weight\":2}", &out), 409);
	ck_assert_msg(strstr(out, "rebalance is under way") != NULL, "%s", out);
	free(out);
	ck_assert_int_eq(call(0, "DELETE", "/v1/cluster/shards/big", NULL, &out),
	                 202);
	ck_assert_msg(strstr(out, "\"epoch\":4") != NULL, "%s", out);
	free(out);
	expect_view(0, 4, 3);
	expect_view(1, 4, 3);

	/* Mistakes. */
	snprintf(body, sizeof(body),
	         "{\"name\":\"%s\",\"address\":\"127.0.0.1:1\",\"weight\":0}",
	         C.node[1].name);
	ck_assert_int_eq(call(1, "POST", "/v1/cluster/shards", body, &out), 409);
	ck_assert_msg(strstr(out, "topology_conflict") != NULL, "%s", out);
	free(out);
	ck_assert_int_eq(call(1, "POST", "/v1/cluster/shards", "{\"name\":1}",
	                      NULL),
	                 400);
	ck_assert_int_eq(call(1, "DELETE", "/v1/cluster/shards/nobody", NULL,
	                      NULL),
	                 404);
	snprintf(body, sizeof(body), "/v1/cluster/shards/%s", C.node[0].name);
	ck_assert_int_eq(call(1, "PATCH", body, "{\"weight\":1}", &out), 200);
	ck_assert_msg(strstr(out, "\"changed\":false") != NULL, "%s", out);
	free(out);
	ck_assert_int_eq(call(1, "GET", "/v1/cluster/rebalance", NULL, &out),
	                 200);
	ck_assert_msg(strstr(out, "\"state\":\"idle\"") != NULL, "%s", out);
	free(out);
	/* None of these changed the topology. */
	expect_view(0, 4, 3);

	/* It leaves: every node drops it, and it stops by itself. */
	snprintf(body, sizeof(body), "/v1/cluster/shards/%s", C.node[2].name);
	ck_assert_int_eq(call(1, "DELETE", body, NULL, &out), 202);
	ck_assert_msg(strstr(out, "\"epoch\":5") != NULL, "%s", out);
	free(out);
	expect_view(0, 5, 2);
	expect_view(1, 5, 2);
	ck_assert_msg(tc_wait_pid(C.node[2].pid, 10000, &status) == 0,
	              "the removed shard still runs after 10 s");
	C.node[2].pid = 0;
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	{
		char path[700];

		snprintf(path, sizeof(path), "%s/%s.log", C.dir, C.node[2].name);
		log = tu_read_file(path);
	}
	ck_assert_msg(strstr(log, "no longer in the topology") != NULL, "%s",
	              log);
	free(log);
	/* What was written through it is still there. */
	r = tc_get(tc_url(&C, 1, "/retrieve?key=%s", "joined"), 200);
	ck_assert_str_eq(r.body, "yes");
	tc_resp_free(&r);
	/* Writes went on through both nodes across the three epochs. */
	w.stop = 1;
	pthread_join(w.t, NULL);
	ck_assert_int_gt(w.writes, 10);
	if (w.failures != 0)
		tc_dump_logs(&C);
	ck_assert_msg(w.failures == 0, "%d of %d writes failed (last: %ld %s)",
	              w.failures, w.writes, w.last_status, w.last_body);
}
END_TEST

struct racer {
	int node;
	char body[256];
	long status;
};

static void *race(void *arg)
{
	struct racer *x = arg;
	struct tc_resp r;

	x->status = -1;
	if (tc_http("POST", tc_url(&C, x->node, "%s", "/v1/cluster/shards"),
	            x->body, strlen(x->body), NULL, &r) == 0)
		x->status = r.status;
	tc_resp_free(&r);
	return NULL;
}

/* Two changes sent at once to two nodes: each is applied (in some
 * order) or refused with 409, and both nodes end on the same epoch with
 * the same shards. */
START_TEST(two_changes_at_once_agree)
{
	struct racer x[2];
	pthread_t t[2];
	cJSON *doc;
	int applied = 0, e0, n0, e1, n1;

	start_two_of_three();
	for (int i = 0; i < 2; i++) {
		x[i].node = i;
		snprintf(x[i].body, sizeof(x[i].body),
		         "{\"name\":\"extra-%d\",\"address\":\"127.0.0.1:%d\","
		         "\"weight\":0}",
		         i, tc_free_port());
	}
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, race, &x[i]), 0);
	for (int i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		ck_assert_msg(x[i].status == 202 || x[i].status == 409,
		              "change %d: %ld", i, x[i].status);
		applied += x[i].status == 202;
	}
	ck_assert_int_ge(applied, 1);
	doc = topology_in_etcd();
	ck_assert_int_eq(cJSON_GetObjectItem(doc, "epoch")->valueint,
	                 1 + applied);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(doc, "shards")),
	                 2 + applied);
	cJSON_Delete(doc);
	expect_view(0, 1 + applied, 2 + applied);
	expect_view(1, 1 + applied, 2 + applied);
	view_of(0, &e0, &n0);
	view_of(1, &e1, &n1);
	ck_assert(e0 == e1 && n0 == n1);
}
END_TEST

/* Write text as etcd's topology, as an operator with etcdctl would. */
static void put_topology(const char *text)
{
	const char *ep[1] = {E.endpoint};
	kvs__etcd *e;

	ck_assert_int_eq(kvs__etcd_new(&e, ep, 1, 2000), KVS_OK);
	ck_assert_int_eq(kvs__etcd_put(e, "/kvshard/t/topology", text,
	                               strlen(text), 0),
	                 KVS_OK);
	kvs__etcd_free(e);
}

/* A document that is not valid, written into etcd by hand: every node
 * keeps its epoch and says why once; a valid newer one is applied. */
START_TEST(a_bad_document_in_etcd_is_skipped)
{
	char text[1024], *log;
	int n = 0;

	start_two_of_three();
	put_topology("{\"format\":1,\"epoch\":5,\"replication\":2,"
	             "\"write_quorum\":2,\"read_quorum\":2,\"shards\":[]}");
	usleep(1500 * 1000); /* three looks */
	expect_view(0, 1, 2);
	expect_view(1, 1, 2);
	log = log_of(0);
	for (const char *p = log; (p = strstr(p, "keeps epoch 1")) != NULL; p++)
		n++;
	ck_assert_msg(n == 1, "said %d times: %s", n, log);
	free(log);
	snprintf(text, sizeof(text),
	         "{\"format\":1,\"epoch\":6,\"replication\":2,"
	         "\"write_quorum\":2,\"read_quorum\":2,\"shards\":["
	         "{\"name\":\"%s\",\"idx\":0,\"address\":\"127.0.0.1:%d\","
	         "\"weight\":1},"
	         "{\"name\":\"%s\",\"idx\":1,\"address\":\"127.0.0.1:%d\","
	         "\"weight\":1},"
	         "{\"name\":\"spare\",\"idx\":2,\"address\":\"127.0.0.1:1\","
	         "\"weight\":0}]}",
	         C.node[0].name, C.node[0].port, C.node[1].name, C.node[1].port);
	put_topology(text);
	expect_view(0, 6, 3);
	expect_view(1, 6, 3);
}
END_TEST

/* Run the CLI against node 0 with args: its exit status, its output (both
 * streams) in out. */
static int cli(const char *args, char *out, size_t cap)
{
	char cmd[2048];

	snprintf(cmd, sizeof(cmd), "'%s' --cluster 127.0.0.1:%d %s 2>&1",
	         tu_build_path("server/kvshard"), C.node[0].port, args);
	return tu_run_command(cmd, out, cap);
}

/* kvshard cluster add and remove: the change made, or refused with the
 * node's reason. */
START_TEST(the_cli_adds_and_removes_shards)
{
	char args[256], out[4096];

	start_two_of_three();
	snprintf(args, sizeof(args), "cluster add router-x 127.0.0.1:%d --weight 0",
	         tc_free_port());
	ck_assert_msg(cli(args, out, sizeof(out)) == 0, "%s", out);
	ck_assert_msg(strstr(out, "added shard router-x: epoch 2") != NULL, "%s",
	              out);
	expect_view(1, 2, 3);
	snprintf(args, sizeof(args), "cluster add big 127.0.0.1:%d",
	         tc_free_port());
	ck_assert_msg(cli(args, out, sizeof(out)) == 0, "%s", out);
	ck_assert_msg(strstr(out, "added shard big: epoch 3") != NULL, "%s", out);
	ck_assert_msg(cli("cluster remove big", out, sizeof(out)) == 0, "%s",
	              out);
	ck_assert_int_eq(cli("cluster remove router-x --json", out, sizeof(out)),
	                 0);
	ck_assert_msg(strstr(out, "{\"epoch\":5}") != NULL, "%s", out);
	expect_view(1, 5, 2);
	ck_assert_int_ne(cli("cluster remove router-x", out, sizeof(out)), 0);
	ck_assert_msg(strstr(out, "no shard named") != NULL, "%s", out);
	ck_assert_int_ne(cli("get k --weight 1", out, sizeof(out)), 0);
	ck_assert_msg(cli("cluster rebalance", out, sizeof(out)) == 0, "%s", out);
	ck_assert_msg(strncmp(out, "idle, epoch 5", 13) == 0, "%s", out);
	ck_assert_msg(cli("cluster rebalance --json", out, sizeof(out)) == 0,
	              "%s", out);
	ck_assert_msg(strstr(out, "\"state\":\"idle\"") != NULL, "%s", out);
	ck_assert_int_ne(cli("cluster status --watch", out, sizeof(out)), 0);
}
END_TEST

/* Without etcd a node does not start, and says why, in bounded time. */
START_TEST(unreachable_etcd_stops_the_start)
{
	char bad[256], log[700], *text;
	char *argv[] = {"kvshard-server", "--config", C.config, "--shard",
	                C.node[0].name, NULL};
	int status = 0;

	snprintf(bad, sizeof(bad),
	         "[coordination]\netcd = [\"127.0.0.1:%d\"]\n", tc_free_port());
	tc_prepare(&C, 1, bad);
	snprintf(log, sizeof(log), "%s/start.log", C.dir);
	ck_assert_msg(tc_wait_pid(tc_spawn(tu_build_path("server/kvshard-server"),
	                                   argv, log),
	                          10000, &status) == 0,
	              "kvshard-server still running 10 s after failing to "
	              "reach etcd");
	ck_assert(WIFEXITED(status));
	ck_assert_int_ne(WEXITSTATUS(status), 0);
	text = tu_read_file(log);
	ck_assert_msg(strstr(text, "etcd at 127.0.0.1:") != NULL &&
	                      strstr(text, "could not be reached") != NULL,
	              "unclear message: %s", text);
	free(text);
}
END_TEST


/* ------------------------------------------------------------------ */
/* Moves                                                                */

#define MOVE_KEYS 20000

/* Put keys prefix<from> .. prefix<from + n - 1> (value: "v" and the
 * number) through node via, in batches (a batch with a failed write is
 * sent again, twice at most: the suite shares two cores). */
static void load(int via, const char *prefix, int from, int n)
{
	for (int at = from; at < from + n; at += 1000) {
		kvs__buf b;
		struct tc_resp r;
		int end = at + 1000 < from + n ? at + 1000 : from + n;

		kvs__buf_init(&b, 0);
		kvs__buf_adds(&b, "{\"ops\":[");
		for (int i = at; i < end; i++)
			kvs__buf_addf(&b,
			              "%s{\"op\":\"put\",\"key\":\"%s%d\","
			              "\"value\":\"v%d\"}",
			              i > at ? "," : "", prefix, i, i);
		kvs__buf_adds(&b, "]}");
		for (int tries = 0;; tries++) {
			int ok;

			ck_assert_int_eq(tc_http("POST",
			                         tc_url(&C, via, "/v1/batch%s", ""),
			                         b.data, b.len, NULL, &r),
			                 0);
			ok = r.status == 200 &&
			     strstr(r.body, "\"status\":5") == NULL;
			ck_assert_msg(ok || tries < 2, "%ld %.300s", r.status,
			              r.body);
			tc_resp_free(&r);
			if (ok)
				break;
		}
		kvs__buf_free(&b);
	}
}

/* Every key prefix<from .. from + n - 1> reads back through node i
 * (value "v" and the number, or any value with any_value): the number of
 * keys that do not. */
static int missing(int i, const char *prefix, int from, int n, int any_value)
{
	int bad = 0;

	for (int at = from; at < from + n; at += 1000) {
		kvs__buf b;
		struct tc_resp r;
		cJSON *doc, *res;
		int end = at + 1000 < from + n ? at + 1000 : from + n, k = at;

		kvs__buf_init(&b, 0);
		kvs__buf_adds(&b, "{\"ops\":[");
		for (int j = at; j < end; j++)
			kvs__buf_addf(&b, "%s{\"op\":\"get\",\"key\":\"%s%d\"}",
			              j > at ? "," : "", prefix, j);
		kvs__buf_adds(&b, "]}");
		ck_assert_int_eq(tc_http("POST", tc_url(&C, i, "/v1/batch%s", ""),
		                         b.data, b.len, NULL, &r),
		                 0);
		ck_assert_msg(r.status == 200, "%ld %.300s", r.status, r.body);
		doc = cJSON_ParseWithLength(r.body, r.len);
		ck_assert_ptr_nonnull(doc);
		cJSON_ArrayForEach(res, cJSON_GetObjectItem(doc, "results"))
		{
			char want[32], want64[64];
			const char *v = cJSON_GetStringValue(
			        cJSON_GetObjectItem(res, "value_b64"));
			int st = cJSON_GetObjectItem(res, "status")->valueint;

			snprintf(want, sizeof(want), "v%d", k);
			want64[kvs__b64_encode(want, strlen(want), want64)] = '\0';
			if (st != 200 ||
			    (!any_value && (v == NULL || strcmp(v, want64) != 0))) {
				if (bad < 3)
					fprintf(stderr, "%s: %s%d: status %d\n",
					        C.node[i].name, prefix, k, st);
				bad++;
			}
			k++;
		}
		ck_assert_int_eq(k, end);
		cJSON_Delete(doc);
		tc_resp_free(&r);
		kvs__buf_free(&b);
	}
	return bad;
}

/* Live keys in node i's own store (/v1/status). */
static long keys_of(int i)
{
	struct tc_resp r = tc_get(tc_url(&C, i, "/v1/status%s", ""), 200);
	cJSON *doc = cJSON_ParseWithLength(r.body, r.len);
	long k = (long)cJSON_GetObjectItem(doc, "keys")->valuedouble;

	cJSON_Delete(doc);
	tc_resp_free(&r);
	return k;
}

/* The epoch of etcd's topology. */
static int etcd_epoch(void)
{
	cJSON *doc = topology_in_etcd();
	int e = cJSON_GetObjectItem(doc, "epoch")->valueint;

	cJSON_Delete(doc);
	return e;
}

/* Wait (ms at most) until the nodes' stores hold total keys in all:
 * with N = 1, every key on one shard only. */
static void expect_held_once(int nodes, long total, int ms)
{
	uint64_t deadline = tu_now_ms() + (uint64_t)ms;
	long sum = 0;

	for (;;) {
		sum = 0;
		for (int i = 0; i < nodes; i++)
			sum += keys_of(i);
		if (sum == total)
			return;
		ck_assert_msg(tu_now_ms() < deadline,
		              "the shards hold %ld keys in all, not %ld, after "
		              "%d ms",
		              sum, total, ms);
		usleep(200 * 1000);
	}
}

static void move_config(int replication)
{
	snprintf(extra, sizeof(extra),
	         "[cluster]\nname = \"t\"\nreplication = %d\n"
	         "[coordination]\netcd = [\"%s\"]\nlease_ttl_s = 2\n"
	         "move_grace_s = 1\n",
	         replication, E.endpoint);
}

/* 2 shards and 20,000 keys; a third shard is added while a writer
 * writes through the first two. With N = 1 nothing but the move can
 * keep a key readable. */
START_TEST(a_third_shard_takes_its_share_under_writes)
{
	char body[256], *out = NULL;
	struct writer w = {0};
	long total, mine;

	move_config(1);
	start_two_of_three();
	load(0, "k", 0, MOVE_KEYS);
	ck_assert_int_eq(pthread_create(&w.t, NULL, write_loop, &w), 0);
	usleep(300 * 1000);
	snprintf(body, sizeof(body),
	         "{\"name\":\"%s\",\"address\":\"127.0.0.1:%d\",\"weight\":1}",
	         C.node[2].name, C.node[2].port);
	ck_assert_int_eq(call(0, "POST", "/v1/cluster/shards", body, &out), 202);
	free(out);
	tc_start_node(&C, 2);
	/* One change that moves data at a time. */
	ck_assert_int_eq(call(1, "PATCH", "/v1/cluster/shards/shard-1",
	                      "{\"weight\":2}", &out),
	                 409);
	free(out);
	expect_rebalance(1, RUNNING, 5000);
	/* kvshard cluster rebalance --watch follows it to its end. */
	{
		char said[1 << 16];

		ck_assert_msg(cli("cluster rebalance --watch", said,
		                  sizeof(said)) == 0,
		              "%s", said);
		ck_assert_msg(strstr(said, "running, epoch") != NULL &&
		                      strstr(said, "\nidle, epoch") != NULL,
		              "%s", said);
	}
	expect_rebalance(0, IDLE, 60000);
	w.stop = 1;
	pthread_join(w.t, NULL);
	if (w.failures != 0)
		tc_dump_logs(&C);
	ck_assert_msg(w.failures == 0, "%d of %d writes failed (last: %ld %s)",
	              w.failures, w.writes, w.last_status, w.last_body);
	ck_assert_int_gt(w.writes, 50);
	/* Every key, old and written during the move, through every node. */
	for (int i = 0; i < 3; i++) {
		expect_view(i, etcd_epoch(), 3);
		ck_assert_int_eq(missing(i, "k", 0, MOVE_KEYS, 0), 0);
		ck_assert_int_eq(missing(i, "w", 0, w.writes, 0), 0);
	}
	/* The new shard holds its share (a third, within the keys' spread),
	 * and the old owners dropped what they handed over. */
	total = MOVE_KEYS + w.writes;
	mine = keys_of(2);
	ck_assert_msg(mine > total * 0.30 && mine < total * 0.37,
	              "the new shard holds %ld of %ld keys", mine, total);
	expect_held_once(3, total, 20000);
	/* And /metrics says so. */
	ck_assert_int_eq(tc_metric(&C, 0, "kvshard_move_phase"), 0);
	ck_assert_int_gt(tc_metric(&C, 0, "kvshard_move_records_dropped_total"),
	                 0);
	ck_assert_int_gt(tc_metric(&C, 2, "kvshard_move_keys_copied_total"), 0);
}
END_TEST

/* A shard removed under writes: its data goes to the others first, then
 * it stops by itself. N = 2 over 3 shards: the two left hold all. */
START_TEST(a_shard_removed_under_writes_hands_its_data_over)
{
	char *out = NULL;
	struct writer w = {0};
	int status = 0;
	long total;

	move_config(2);
	tc_start(&C, 3, extra);
	load(0, "k", 0, MOVE_KEYS);
	ck_assert_int_eq(pthread_create(&w.t, NULL, write_loop, &w), 0);
	usleep(300 * 1000);
	ck_assert_int_eq(call(1, "DELETE", "/v1/cluster/shards/shard-3", NULL,
	                      &out),
	                 202);
	free(out);
	expect_rebalance(0, RUNNING, 5000);
	expect_rebalance(0, IDLE, 60000);
	w.stop = 1;
	pthread_join(w.t, NULL);
	if (w.failures != 0)
		tc_dump_logs(&C);
	ck_assert_msg(w.failures == 0, "%d of %d writes failed (last: %ld %s)",
	              w.failures, w.writes, w.last_status, w.last_body);
	ck_assert_int_gt(w.writes, 50);
	ck_assert_msg(tc_wait_pid(C.node[2].pid, 10000, &status) == 0,
	              "the removed shard still runs after 10 s");
	C.node[2].pid = 0;
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	total = MOVE_KEYS + w.writes;
	for (int i = 0; i < 2; i++) {
		expect_view(i, etcd_epoch(), 2);
		ck_assert_int_eq(missing(i, "k", 0, MOVE_KEYS, 0), 0);
		ck_assert_int_eq(missing(i, "w", 0, w.writes, 0), 0);
		ck_assert_int_eq(keys_of(i), total);
	}
}
END_TEST

/* The new shard is killed while it copies, and started again: the copy
 * goes on from what it holds (each segment's digest says what is there
 * already), and the move ends. */
/* What node i's copies fetched: records and bytes (its rebalance
 * answer); and whether its copy has ended. */
static int copy_figures(int i, long *keys, long *bytes)
{
	cJSON *doc = rebalance_of(i), *node = cJSON_GetObjectItem(doc, "node");
	int copied = cJSON_IsTrue(cJSON_GetObjectItem(node, "copied"));

	*keys = (long)cJSON_GetObjectItem(node, "keys_copied")->valuedouble;
	*bytes = (long)cJSON_GetObjectItem(node, "bytes_copied")->valuedouble;
	cJSON_Delete(doc);
	return copied;
}

/* The new shard is killed while it copies, and started again: the copy
 * goes on from what it holds (each segment's digest says what is there
 * already), and the move ends. */
START_TEST(a_move_resumes_after_the_new_shard_is_killed)
{
	char body[256], *out = NULL, key[16], value[16];
	uint64_t deadline;
	long keys_before = 0, bytes_before = 0, keys_after = 0, bytes_after = 0;
	long held, owned = 0, range = 0;
	kvs_ring_member members[3];
	kvs_ring *ring;

	/* Slow enough to be caught in the middle. */
	move_config(1);
	strcat(extra, "move_rate_bytes = 30000\n");
	start_two_of_three();
	load(0, "k", 0, MOVE_KEYS);
	snprintf(body, sizeof(body),
	         "{\"name\":\"%s\",\"address\":\"127.0.0.1:%d\",\"weight\":1}",
	         C.node[2].name, C.node[2].port);
	ck_assert_int_eq(call(0, "POST", "/v1/cluster/shards", body, &out), 202);
	free(out);
	tc_start_node(&C, 2);
	/* Killed once it has copied some, not all. */
	deadline = tu_now_ms() + 30000;
	for (;;) {
		ck_assert(!copy_figures(2, &keys_before, &bytes_before));
		if (keys_before >= 1000)
			break;
		ck_assert_msg(tu_now_ms() < deadline,
		              "the new shard copied %ld keys in 30 s", keys_before);
		usleep(20 * 1000);
	}
	(void)tc_stop_node(&C, 2, SIGKILL);
	held = keys_of(0) + keys_of(1);
	ck_assert_int_eq(held, MOVE_KEYS); /* nothing dropped mid-move */
	tc_start_node(&C, 2);
	expect_rebalance(0, IDLE, 60000);
	(void)copy_figures(2, &keys_after, &bytes_after);
	for (int i = 0; i < 3; i++) {
		expect_view(i, etcd_epoch(), 3);
		ck_assert_int_eq(missing(i, "k", 0, MOVE_KEYS, 0), 0);
	}
	/* Its range, by placement (docs/ring.md): keys and their bytes. */
	for (int i = 0; i < 3; i++) {
		members[i].name = C.node[i].name;
		members[i].weight = 1;
	}
	ck_assert_int_eq(kvs_ring_new(&ring, members, 3, 0), KVS_OK);
	for (int k = 0; k < MOVE_KEYS; k++) {
		size_t o;

		snprintf(key, sizeof(key), "k%d", k);
		snprintf(value, sizeof(value), "v%d", k);
		if (kvs_ring_owners(ring, key, strlen(key), &o, 1) == 1 && o == 2) {
			owned++;
			range += (long)(strlen(key) + strlen(value));
		}
	}
	kvs_ring_free(ring);
	held = keys_of(2);
	ck_assert_int_eq(held, owned);
	/* Streamed in all: not much more than its range (what it had
	 * fetched before the kill is not fetched again). The count before
	 * the kill is the last one read, a little before it. */
	ck_assert_msg((double)(bytes_before + bytes_after) < 1.5 * range,
	              "%ld bytes streamed before the kill and %ld after, for a "
	              "range of %ld",
	              bytes_before, bytes_after, range);
	ck_assert_int_lt(bytes_after, range);
	ck_assert_int_lt(keys_after, held);
	expect_held_once(3, MOVE_KEYS, 20000);
}
END_TEST

/* A move paused copies nothing until resumed; cancelled, the weights go
 * back, the shard that joined for it leaves, and nothing is lost. */
START_TEST(a_move_is_paused_resumed_and_cancelled)
{
	char body[256], *out = NULL, said[4096];
	long before, after, now, bytes;
	int status = 0;
	uint64_t deadline;

	move_config(1);
	strcat(extra, "move_rate_bytes = 10000\n");
	start_two_of_three();
	load(0, "k", 0, 4000);
	ck_assert_int_eq(call(0, "POST", "/v1/cluster/rebalance/pause", NULL,
	                      &out),
	                 409);
	free(out);
	snprintf(body, sizeof(body),
	         "{\"name\":\"%s\",\"address\":\"127.0.0.1:%d\",\"weight\":1}",
	         C.node[2].name, C.node[2].port);
	ck_assert_int_eq(call(0, "POST", "/v1/cluster/shards", body, &out), 202);
	free(out);
	tc_start_node(&C, 2);
	expect_rebalance(2, "\"copying\":true", 10000);
	ck_assert_int_eq(call(1, "POST", "/v1/cluster/rebalance/pause", "{}",
	                      &out),
	                 202);
	free(out);
	ck_assert_int_eq(call(0, "POST", "/v1/cluster/rebalance/pause", "{}",
	                      &out),
	                 200);
	ck_assert_msg(strstr(out, "\"changed\":false") != NULL, "%s", out);
	free(out);
	ck_assert_int_eq(call(0, "POST", "/v1/cluster/rebalance/stop", "{}",
	                      NULL),
	                 404);
	expect_rebalance(2, "\"state\":\"paused\"", 10000);
	expect_rebalance(0, "\"state\":\"paused\"", 10000);
	/* Paused: the new shard fetches nothing more. */
	usleep(500 * 1000);
	(void)copy_figures(2, &before, &bytes);
	usleep(1500 * 1000);
	(void)copy_figures(2, &after, &bytes);
	ck_assert_msg(after == before, "fetched %ld, then %ld, while paused",
	              before, after);
	ck_assert_msg(cli("cluster rebalance resume", said, sizeof(said)) == 0,
	              "%s", said);
	ck_assert_msg(strstr(said, "rebalance resumed: epoch") != NULL, "%s",
	              said);
	deadline = tu_now_ms() + 10000;
	do {
		ck_assert_msg(tu_now_ms() < deadline,
		              "nothing fetched 10 s after resuming");
		usleep(100 * 1000);
		(void)copy_figures(2, &now, &bytes);
	} while (now == after);
	/* Cancelled: back to two shards' weights; the third leaves. */
	ck_assert_msg(cli("cluster rebalance cancel", said, sizeof(said)) == 0,
	              "%s", said);
	ck_assert_msg(strstr(said, "rebalance cancelled: epoch") != NULL, "%s",
	              said);
	expect_rebalance(0, IDLE, 10000);
	ck_assert_msg(tc_wait_pid(C.node[2].pid, 15000, &status) == 0,
	              "the shard that joined still runs 15 s after the cancel");
	C.node[2].pid = 0;
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	for (int i = 0; i < 2; i++) {
		expect_view(i, etcd_epoch(), 2);
		ck_assert_int_eq(missing(i, "k", 0, 4000, 0), 0);
	}
	expect_held_once(2, 4000, 10000);
	ck_assert_int_eq(call(0, "POST", "/v1/cluster/rebalance/cancel", "{}",
	                      NULL),
	                 409);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("coordination");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, first_node_seeds_the_topology);
	tcase_add_test(tc, etcd_wins_over_a_differing_file);
	tcase_add_test(tc, registration_follows_the_node);
	tcase_add_test(tc, serving_goes_on_without_etcd);
	tcase_add_test(tc, unreachable_etcd_stops_the_start);
	tcase_add_test(tc, a_shard_of_weight_0_joins_and_leaves);
	tcase_add_test(tc, two_changes_at_once_agree);
	tcase_add_test(tc, the_cli_adds_and_removes_shards);
	tcase_add_test(tc, a_bad_document_in_etcd_is_skipped);
	tcase_add_test(tc, a_third_shard_takes_its_share_under_writes);
	tcase_add_test(tc, a_shard_removed_under_writes_hands_its_data_over);
	tcase_add_test(tc, a_move_resumes_after_the_new_shard_is_killed);
	tcase_add_test(tc, a_move_is_paused_resumed_and_cancelled);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
