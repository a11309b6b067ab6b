/*
 * test_node.c - the node's cluster logic, deterministically from seeds
 * (tests/sim.h): quorum reads and writes, read repair, forwarding with
 * failover and speculative retry, and the cluster scan's merge, over a
 * network that loses, delays, duplicates and reorders messages and has
 * nodes that refuse or never answer.
 *
 * Each scenario runs KVS_SIM_RUNS seeds (default 200). A failure names
 * its scenario and seed; to replay exactly that run, with a trace of
 * every message:
 *
 *     KVS_SIM_SCENARIO=<name> KVS_SIM_SEED=<seed> KVS_SIM_TRACE=1 \
 *         build/tests/test_node
 *
 * What is checked, whatever the faults:
 *   - every operation completes (no message, no node, leaves it hanging);
 *   - a read returns a version at least as new as every write
 *     acknowledged before the read began (R + W > N), and only values
 *     some client wrote;
 *   - an acknowledged write is on at least W replicas;
 *   - a compare-and-swap is decided once, even when its answer is lost;
 * and, where the scenario's faults allow it, that operations succeed,
 * that read repair leaves every replica asked with the newest version,
 * and that a scan at R shows exactly the keys and values of the last
 * acknowledged writes.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_internal.h"
#include "node_internal.h"
#include "sim.h"
#include "testutil.h"

#define DEFAULT_RUNS 200
/* Scenarios whose seed costs many times another's (a move copies every
 * segment a node gains) run a tenth as many, within CI's time. */
#define HEAVY_RUNS (DEFAULT_RUNS / 10)

static unsigned runs(unsigned dflt)
{
	const char *e = getenv("KVS_SIM_RUNS");

	return e != NULL && atoi(e) > 0 ? (unsigned)atoi(e) : dflt;
}

/* Seeds to run for scenario name: KVS_SIM_SEED alone, or 1..runs(). */
static int seeds(const char *name, unsigned dflt, uint64_t *first,
                 uint64_t *count)
{
	const char *only = getenv("KVS_SIM_SCENARIO");
	const char *seed = getenv("KVS_SIM_SEED");

	if (only != NULL && strcmp(only, name) != 0)
		return 0;
	if (seed != NULL) {
		*first = strtoull(seed, NULL, 10);
		*count = 1;
	} else {
		*first = 1;
		*count = runs(dflt);
	}
	return 1;
}

/* The failure message of a run: scenario, seed, how to replay it. */
static char where[160];

#define CHECK(cond, ...) SIM_ASSERT(cond, "%s: " __VA_ARGS__)

static void set_where(const char *scenario, uint64_t seed)
{
	snprintf(where, sizeof(where),
	         "%s seed %llu (replay: KVS_SIM_SCENARIO=%s KVS_SIM_SEED=%llu "
	         "KVS_SIM_TRACE=1 tests/test_node)",
	         scenario, (unsigned long long)seed, scenario,
	         (unsigned long long)seed);
}

/* ------------------------------------------------------------------ */
/* Checks over the clients' operations                                  */

static int is_write(const struct sim_op *o)
{
	return o->req.kind != KVS__KV_GET;
}

/* Every operation ended. */
static void check_all_done(struct sim *s)
{
	for (const struct sim_op *o = s->ops; o != NULL; o = o->next)
		CHECK(o->done, "an operation on %s never ended", where, o->key);
}

/*
 * Reads return a version no older than any write of their key that was
 * acknowledged before they began, and only what some client wrote.
 */
static void check_reads(struct sim *s)
{
	for (const struct sim_op *g = s->ops; g != NULL; g = g->next) {
		kvs_stamp bound = {0, 0};
		int found = 0;

		if (is_write(g) ||
		    (g->res.rc != KVS_OK && g->res.rc != KVS_NOTFOUND))
			continue;
		for (const struct sim_op *w = s->ops; w != NULL; w = w->next) {
			if (!is_write(w) || strcmp(w->key, g->key) != 0)
				continue;
			if (w->res.rc == KVS_OK && w->ended < g->started &&
			    kvs_stamp_cmp(&w->res.stamp, &bound) > 0)
				bound = w->res.stamp;
			if (g->res.rc == KVS_OK && w->req.kind == KVS__KV_PUT &&
			    g->res.value_len == strlen(w->value) &&
			    memcmp(g->res.value, w->value, g->res.value_len) == 0)
				found = 1;
			if (g->res.rc == KVS_NOTFOUND &&
			    (w->req.kind == KVS__KV_DELETE ||
			     g->res.stamp.hlc == 0))
				found = 1;
		}
		if (g->res.rc == KVS_NOTFOUND && g->res.stamp.hlc == 0)
			found = 1;
		CHECK(kvs_stamp_cmp(&g->res.stamp, &bound) >= 0,
		      "a read of %s on node %d at %llu returned version "
		      "%016llx, older than the acknowledged %016llx",
		      where, g->key, g->node, (unsigned long long)g->started,
		      (unsigned long long)g->res.stamp.hlc,
		      (unsigned long long)bound.hlc);
		CHECK(found, "a read of %s returned a value nobody wrote", where,
		      g->key);
	}
}

/* Acknowledged writes are on at least w replicas. */
static void check_durable(struct sim *s, unsigned w)
{
	for (const struct sim_op *o = s->ops; o != NULL; o = o->next) {
		unsigned have = 0;

		if (!is_write(o) || o->res.rc != KVS_OK)
			continue;
		for (int i = 0; i < s->n; i++) {
			kvs_record rec;
			char v[64];

			if (sim_local(s, i, o->key, &rec, v, sizeof(v)) &&
			    kvs_stamp_cmp(&rec.stamp, &o->res.stamp) >= 0)
				have++;
		}
		CHECK(have >= w,
		      "an acknowledged write of %s is on %u replicas, not %u",
		      where, o->key, have, w);
	}
}

/* ------------------------------------------------------------------ */
/* Faults on nodes                                                      */

struct node_fault {
	int node;
	int kind; /* 0 down, 1 black hole, 2 paused */
	int on;
};

static void set_fault(struct sim *s, void *arg)
{
	struct node_fault *f = arg;

	if (f->kind == 0)
		s->nodes[f->node].down = f->on;
	else if (f->kind == 1)
		s->nodes[f->node].blackhole = f->on;
	else
		sim_pause(s, f->node, f->on);
	free(f);
}

static void fault_at(struct sim *s, uint64_t at, int node, int kind, int on)
{
	struct node_fault *f = malloc(sizeof(*f));

	ck_assert_ptr_nonnull(f);
	f->node = node;
	f->kind = kind;
	f->on = on;
	sim_at(s, at, set_fault, f);
}

/* One node at a time is down or a black hole, for a while each. */
static void fault_some_node(struct sim *s, uint64_t from, uint64_t to)
{
	uint64_t t = from + sim_rand(s, 300);

	while (t < to) {
		uint64_t len = 300 + sim_rand(s, 1200);
		int node = (int)sim_rand(s, (uint64_t)s->n);
		int kind = (int)sim_rand(s, 3);

		fault_at(s, t, node, kind, 1);
		fault_at(s, t + len, node, kind, 0);
		t += len + 50 + sim_rand(s, 400);
	}
}

static void heal(struct sim *s)
{
	for (int i = 0; i < s->n; i++) {
		s->nodes[i].down = s->nodes[i].blackhole = 0;
		if (s->nodes[i].paused)
			sim_pause(s, i, 0);
	}
	memset(&s->faults, 0, sizeof(s->faults));
}

/*
 * count client operations at random times within the next span ms, on
 * random nodes, over keys "<prefix>0".."<prefix>(keys-1)": half writes,
 * a third reads, the rest deletes. Values are unique to the run.
 */
static void random_ops(struct sim *s, int count, uint64_t span,
                       const char *prefix, int keys)
{
	for (int i = 0; i < count; i++) {
		uint64_t at = s->now + sim_rand(s, span);
		int node = (int)sim_rand(s, (uint64_t)s->n);
		uint64_t kind = sim_rand(s, 100);
		char key[16], value[48];

		snprintf(key, sizeof(key), "%s%d", prefix,
		         (int)sim_rand(s, (uint64_t)keys));
		snprintf(value, sizeof(value), "%s-%llu-%llu-%d", prefix,
		         (unsigned long long)s->seed,
		         (unsigned long long)s->now, i);
		if (kind < 50)
			sim_put(s, at, node, key, value);
		else if (kind < 85)
			sim_get(s, at, node, key, 0);
		else
			sim_del(s, at, node, key);
	}
}

/* Owners of key, as the nodes route it. */
static void owners(struct sim *s, const char *key, kvs__route *r)
{
	kvs__node_route(s->nodes[0].node, key, strlen(key), r);
}

/* ------------------------------------------------------------------ */
/* Scenarios                                                            */

/*
 * Quorum reads and writes: N = 3 on 3 nodes, R = W = 2, concurrent
 * clients on four keys through every node, one node down or silent at a
 * time, and lost, duplicated and late messages.
 */
static void quorum_rw(uint64_t seed)
{
	struct sim s;

	set_where("quorum_rw", seed);
	sim_open(&s, seed, 3, NULL);
	s.faults.loss = 20;
	s.faults.dup = 20;
	s.faults.late = 30;
	fault_some_node(&s, 0, 4000);
	random_ops(&s, 40, 4000, "k", 4);
	sim_run(&s, 6000);
	heal(&s);
	sim_settle(&s);
	check_all_done(&s);
	check_reads(&s);
	check_durable(&s, 2);
	sim_close(&s);
}

/*
 * Read repair: keys written while one replica was down are read at R = 3
 * through every node; each read returns the newest version and, with
 * every replica answering, leaves all three with it. Messages are
 * duplicated and reordered, not lost, so that every repair arrives.
 */
static void read_repair(uint64_t seed)
{
	struct sim s;
	char key[16][8], value[16][32];
	struct sim_op *gets[16], *stale_gets[16];
	int stale_of[16];
	uint64_t t = 0, fetches = 0;

	set_where("read_repair", seed);
	/* No hints: the stale replica must stay stale until it is read. */
	sim_open(&s, seed, 3, "hint_max_bytes = 0\n");
	for (int k = 0; k < 16; k++) {
		int stale = (int)sim_rand(&s, 3);
		struct sim_op *w;

		stale_of[k] = stale;
		snprintf(key[k], sizeof(key[k]), "r%d", k);
		snprintf(value[k], sizeof(value[k]), "v%llu-%d",
		         (unsigned long long)seed, k);
		/* An older version everywhere, then the newest on two. */
		w = sim_put(&s, t, (int)sim_rand(&s, 3), key[k], "old");
		sim_settle(&s);
		CHECK(w->res.rc == KVS_OK, "the first write of %s failed: %s",
		      where, key[k], kvs_strerror(w->res.rc));
		s.nodes[stale].down = 1;
		w = sim_put(&s, s.now + 1, (stale + 1) % 3, key[k], value[k]);
		sim_settle(&s);
		CHECK(w->res.rc == KVS_OK, "the write of %s failed: %s", where,
		      key[k], kvs_strerror(w->res.rc));
		s.nodes[stale].down = 0;
		t = s.now + 1;
	}
	/* Let the probes see every node up again. */
	sim_run(&s, s.now + 2500);
	s.faults.dup = 100;
	/* First through each stale node with R=2: its own copy is older
	 * than the other replica's digest, so the value is fetched. */
	for (int k = 0; k < 16; k++)
		stale_gets[k] = sim_get(&s, s.now + 1 + sim_rand(&s, 50),
		                        stale_of[k], key[k], 2);
	sim_settle(&s);
	for (int i = 0; i < 3; i++) {
		kvs__node_stats st;

		kvs__node_stats_get(s.nodes[i].node, &st);
		fetches += st.read_fetches;
	}
	CHECK(fetches >= 16, "%llu values fetched after digests, not 16",
	      where, (unsigned long long)fetches);
	for (int k = 0; k < 16; k++) {
		kvs__result *res = &stale_gets[k]->res;

		CHECK(res->rc == KVS_OK && res->value_len == strlen(value[k]) &&
		              memcmp(res->value, value[k], res->value_len) == 0,
		      "the read of %s through its stale node missed the newest "
		      "value (%s)",
		      where, key[k], kvs_strerror(res->rc));
	}
	/* Then anywhere, with R=3 (repair reaches every replica). */
	for (int k = 0; k < 16; k++)
		gets[k] = sim_get(&s, s.now + 1 + sim_rand(&s, 50),
		                  (int)sim_rand(&s, 3), key[k], 3);
	sim_settle(&s);
	check_all_done(&s);
	for (int k = 0; k < 16; k++) {
		kvs__result *res = &gets[k]->res;

		CHECK(res->rc == KVS_OK, "the read of %s failed: %s", where,
		      key[k], kvs_strerror(res->rc));
		CHECK(res->value_len == strlen(value[k]) &&
		              memcmp(res->value, value[k], res->value_len) == 0,
		      "the read of %s missed the newest value", where, key[k]);
		for (int i = 0; i < 3; i++) {
			kvs_record rec;
			char v[64];

			CHECK(sim_local(&s, i, key[k], &rec, v, sizeof(v)) &&
			              strcmp(v, value[k]) == 0,
			      "node %d still has a stale %s after read repair",
			      where, i, key[k]);
		}
	}
	check_reads(&s);
	sim_close(&s);
}

/*
 * Forwarding: 5 nodes, N = 3, so most requests reach a node that does
 * not own the key and must be forwarded; owners fail. With one owner of
 * a key down or silent and no message lost, every request succeeds
 * (failing over to the next owner, or coordinated by the owner asked)
 * within a few timeouts. Then the same with lost,
 * duplicated and late messages and any node failing: only consistency
 * is promised there.
 */
static void proxy_failover(uint64_t seed)
{
	struct sim s;
	struct sim_op *ops[24];
	int n_ops = 0;

	set_where("proxy_failover", seed);
	sim_open(&s, seed, 5, "replication = 3\n");
	for (int i = 0; i < 24; i++) {
		char key[8], value[32];
		kvs__route r;
		int victim, node, kind = (int)sim_rand(&s, 3);

		snprintf(key, sizeof(key), "p%d", (int)sim_rand(&s, 6));
		snprintf(value, sizeof(value), "a%llu-%d",
		         (unsigned long long)seed, i);
		owners(&s, key, &r);
		/* The first owner half of the time. */
		victim = (int)r.owners[sim_rand(&s, 2) ? 0 : sim_rand(&s, 3)];
		node = (int)sim_rand(&s, 5);
		if (sim_rand(&s, 2))
			s.nodes[victim].down = 1;
		else
			s.nodes[victim].blackhole = 1;
		if (node == victim)
			node = (victim + 1) % 5;
		ops[n_ops] = kind == 0   ? sim_put(&s, s.now + 1, node, key, value)
		             : kind == 1 ? sim_get(&s, s.now + 1, node, key, 0)
		                         : sim_del(&s, s.now + 1, node, key);
		sim_settle(&s);
		CHECK(ops[n_ops]->res.rc == KVS_OK ||
		              (kind == 1 && ops[n_ops]->res.rc == KVS_NOTFOUND),
		      "with only node %d failing, an operation on %s through "
		      "node %d failed: %s",
		      where, victim, key, node, kvs_strerror(ops[n_ops]->res.rc));
		/* Bound: a forward to the silent owner (two timeouts), then
		 * the next owner's read of it (one), then the answer. */
		CHECK(ops[n_ops]->ended - ops[n_ops]->started <=
		              3 * SIM_TIMEOUT_MS + 100,
		      "an operation on %s took %llu ms", where, key,
		      (unsigned long long)(ops[n_ops]->ended -
		                           ops[n_ops]->started));
		n_ops++;
		s.nodes[victim].down = s.nodes[victim].blackhole = 0;
	}
	/* Now with the network misbehaving too. */
	s.faults.loss = 30;
	s.faults.dup = 30;
	s.faults.late = 30;
	fault_some_node(&s, s.now, s.now + 4000);
	random_ops(&s, 30, 4000, "p", 6);
	sim_run(&s, s.now + 6000);
	heal(&s);
	sim_settle(&s);
	check_all_done(&s);
	check_reads(&s);
	check_durable(&s, 2);
	sim_close(&s);
}

/*
 * A paused owner (SIGSTOP): a write forwarded to the key's coordinator
 * while it is paused is retried at the next owner and acknowledged, and so
 * is a later write. When the paused owner resumes and runs the first
 * write at last, that write must not overwrite the later one: it carries
 * the version it got when it arrived (kvs__kv_req.stamp).
 */
static void paused_owner(uint64_t seed)
{
	struct sim s;
	struct sim_op *w1, *w2, *g;
	char key[8];
	kvs__route r;
	int c, x;

	set_where("paused_owner", seed);
	sim_open(&s, seed, 3, NULL);
	s.faults.dup = 50;
	snprintf(key, sizeof(key), "q%d", (int)sim_rand(&s, 10));
	owners(&s, key, &r);
	c = (int)r.owners[0];
	x = (c + 1 + (int)sim_rand(&s, 2)) % 3;
	sim_run(&s, s.now + sim_rand(&s, 1000));
	sim_pause(&s, c, 1);
	w1 = sim_put(&s, s.now + 1, x, key, "first");
	sim_settle(&s);
	CHECK(w1->res.rc == KVS_OK, "the first write failed: %s", where,
	      kvs_strerror(w1->res.rc));
	w2 = sim_put(&s, s.now + 1 + sim_rand(&s, 500),
	             (c + 1 + (int)sim_rand(&s, 2)) % 3, key, "second");
	sim_settle(&s);
	CHECK(w2->res.rc == KVS_OK, "the second write failed: %s", where,
	      kvs_strerror(w2->res.rc));
	sim_run(&s, s.now + sim_rand(&s, 3000));
	sim_pause(&s, c, 0);
	sim_settle(&s);
	g = sim_get(&s, s.now + 1, (int)sim_rand(&s, 3), key, 2);
	sim_settle(&s);
	CHECK(g->res.rc == KVS_OK && g->res.value_len == 6 &&
	              memcmp(g->res.value, "second", 6) == 0,
	      "after the paused owner resumed, %s reads %.*s", where, key,
	      (int)g->res.value_len, (const char *)g->res.value);
	check_reads(&s);
	check_durable(&s, 2);
	sim_close(&s);
}

/*
 * Compare-and-swap exactly once: three clients increment a counter, each
 * by reading it and writing value + 1 If-Match the version read, through
 * random nodes of 5 (N = 3), while answers to served operations are lost
 * (the peer acted; its sender never hears). A conditional write may be
 * decided once only: a forward whose answer is lost must not be decided
 * again by another owner, which would compare against the first
 * decision's version and report a failure for a write that succeeded, or
 * apply it twice. So with k increments acknowledged and u whose outcome
 * is unknown (timeout, or fewer than W acknowledgements), the counter ends
 * between k and k + u, and no two acknowledged increments wrote the same
 * value.
 */
static void cas_once(uint64_t seed)
{
	enum { CLIENTS = 3, ROUNDS = 10 };
	struct sim s;
	struct sim_op *get[CLIENTS], *put[CLIENTS], *last;
	unsigned ok = 0, unknown = 0, final;
	unsigned char wrote[CLIENTS * ROUNDS + 2] = {0};

	set_where("cas_once", seed);
	sim_open(&s, seed, 5, "replication = 3\n");
	sim_put(&s, 1, 0, "counter", "0");
	sim_settle(&s);
	s.faults.answer_loss = 150;
	for (int round = 0; round < ROUNDS; round++) {
		for (int c = 0; c < CLIENTS; c++)
			get[c] = sim_get(&s, s.now + 1, (int)sim_rand(&s, 5),
			                 "counter", 0);
		sim_settle(&s);
		for (int c = 0; c < CLIENTS; c++) {
			char value[16];
			unsigned v;

			put[c] = NULL;
			if (get[c]->res.rc != KVS_OK)
				continue; /* lost answers: this client waits */
			CHECK(get[c]->res.value_len < sizeof(value),
			      "a read of the counter returned %zu bytes", where,
			      get[c]->res.value_len);
			memcpy(value, get[c]->res.value, get[c]->res.value_len);
			value[get[c]->res.value_len] = '\0';
			v = (unsigned)strtoul(value, NULL, 10);
			snprintf(value, sizeof(value), "%u", v + 1);
			put[c] = sim_put(&s, s.now + 1 + sim_rand(&s, 3),
			                 (int)sim_rand(&s, 5), "counter", value);
			put[c]->req.cond.flags = KVS_WRITE_IF_STAMP;
			put[c]->req.cond.n_expect = 1;
			put[c]->req.cond.expect[0] = get[c]->res.stamp;
		}
		sim_settle(&s);
		for (int c = 0; c < CLIENTS; c++) {
			int rc;

			if (put[c] == NULL)
				continue;
			rc = put[c]->res.rc;
			if (rc == KVS_OK) {
				unsigned v = (unsigned)atoi(put[c]->value);

				CHECK(v < sizeof(wrote) && !wrote[v],
				      "two acknowledged increments wrote %u",
				      where, v);
				wrote[v] = 1;
				ok++;
			} else if (rc == KVS_ETIMEDOUT || rc == KVS_EUNAVAIL) {
				unknown++;
			} else {
				CHECK(rc == KVS_ECONFLICT,
				      "a compare-and-swap through node %d "
				      "failed with %s",
				      where, put[c]->node, kvs_strerror(rc));
			}
		}
	}
	s.faults.answer_loss = 0;
	sim_settle(&s);
	last = sim_get(&s, s.now + 1, 0, "counter", 3);
	sim_settle(&s);
	CHECK(last->res.rc == KVS_OK, "the final read failed: %s", where,
	      kvs_strerror(last->res.rc));
	{
		char value[16] = "";

		if (last->res.value_len < sizeof(value))
			memcpy(value, last->res.value, last->res.value_len);
		final = (unsigned)strtoul(value, NULL, 10);
	}
	CHECK(final >= ok && final <= ok + unknown,
	      "the counter is %u after %u acknowledged increments and %u "
	      "of unknown outcome",
	      where, final, ok, unknown);
	check_all_done(&s);
	sim_close(&s);
}

/*
 * A primary that missed a write decides against it all the same: the key
 * is written, then written again while its primary is down (the other
 * owners acknowledge it), and the primary comes back without it. A
 * compare-and-swap against the first version must now fail wherever it
 * is sent, since the primary reads the other owners before deciding;
 * deciding against its own stale copy would overwrite an acknowledged
 * write. Messages are duplicated and late, not lost.
 */
/* Write key through a random node other than `avoid` until the write
 * is acknowledged (a few tries). */
static struct sim_op *put_acked(struct sim *s, int avoid, const char *key,
                                const char *value)
{
	struct sim_op *o = NULL;

	for (int tries = 0; tries < 5; tries++) {
		int node = (int)sim_rand(s, (uint64_t)s->n);

		if (node == avoid)
			node = (node + 1) % s->n;
		o = sim_put(s, s->now + 1, node, key, value);
		sim_settle(s);
		if (o->res.rc == KVS_OK)
			break;
	}
	CHECK(o->res.rc == KVS_OK, "writing %s failed: %s", where, key,
	      kvs_strerror(o->res.rc));
	return o;
}

static void cas_stale_primary(uint64_t seed)
{
	struct sim s;
	struct sim_op *first, *second, *cas, *last;
	kvs__route r;
	int primary;

	set_where("cas_stale_primary", seed);
	sim_open(&s, seed, 5, "replication = 3\n");
	s.faults.dup = 50;
	s.faults.late = 20;
	owners(&s, "k", &r);
	primary = (int)r.owners[0];
	/* Late messages can make a write miss its quorum: each is written
	 * until it is acknowledged. */
	first = put_acked(&s, -1, "k", "first");
	s.nodes[primary].down = 1;
	second = put_acked(&s, primary, "k", "second");
	CHECK(kvs_stamp_cmp(&second->res.stamp, &first->res.stamp) > 0,
	      "the second write is older than the first", where);
	s.nodes[primary].down = 0;
	cas = sim_put(&s, s.now + 1, (int)sim_rand(&s, 5), "k", "third");
	cas->req.cond.flags = KVS_WRITE_IF_STAMP;
	cas->req.cond.n_expect = 1;
	cas->req.cond.expect[0] = first->res.stamp;
	sim_settle(&s);
	CHECK(cas->res.rc != KVS_OK,
	      "a compare-and-swap against a version overwritten by an "
	      "acknowledged write succeeded through node %d",
	      where, cas->node);
	for (int tries = 0; tries < 5; tries++) {
		last = sim_get(&s, s.now + 1, primary, "k", 3);
		sim_settle(&s);
		if (last->res.rc != KVS_EUNAVAIL)
			break;
	}
	CHECK(last->res.rc == KVS_OK && last->res.value_len == 6 &&
	              memcmp(last->res.value, "second", 6) == 0,
	      "the key does not hold the acknowledged write", where);
	check_all_done(&s);
	sim_close(&s);
}

/*
 * Speculative retry: 5 nodes, N = 3, one of them paused (SIGSTOP) before
 * any node has noticed. Reads and writes through the others must not wait
 * for it the request timeout: a replica read or a forward that has had no
 * answer after the speculative delay (at most 50 ms by default) also goes
 * to the next owner. A forward may wait once for the delay, and the owner
 * it reaches once more for its own replica: every operation succeeds
 * within two delays and the network's own latency. Then the node resumes
 * and runs what it missed, which must change nothing acknowledged.
 */
static void speculative_retry(uint64_t seed)
{
	const unsigned bound = 2 * KVS_DEFAULT_SPECULATIVE_RETRY_MAX_MS + 30;
	struct sim s;
	struct sim_op *ops[40];
	int victim;

	set_where("speculative_retry", seed);
	sim_open(&s, seed, 5, "replication = 3\n");
	for (int k = 0; k < 8; k++) {
		char key[8];

		snprintf(key, sizeof(key), "s%d", k);
		sim_put(&s, 1, (int)sim_rand(&s, 5), key, "first");
	}
	sim_settle(&s);
	victim = (int)sim_rand(&s, 5);
	sim_pause(&s, victim, 1);
	for (int i = 0; i < 40; i++) {
		char key[8], value[32];
		int node = (int)sim_rand(&s, 4);
		uint64_t at = s.now + 1 + (uint64_t)i * 20;

		node += node >= victim; /* any node but the paused one */
		snprintf(key, sizeof(key), "s%d", (int)sim_rand(&s, 8));
		snprintf(value, sizeof(value), "v%llu-%d",
		         (unsigned long long)seed, i);
		ops[i] = sim_rand(&s, 2) ? sim_put(&s, at, node, key, value)
		                         : sim_get(&s, at, node, key, 0);
	}
	sim_run(&s, s.now + 900);
	for (int i = 0; i < 40; i++) {
		CHECK(ops[i]->done && ops[i]->res.rc == KVS_OK,
		      "with node %d paused, a %s of %s through node %d: %s",
		      where, victim, ops[i]->req.kind == KVS__KV_GET ? "read"
		                                                     : "write",
		      ops[i]->key, ops[i]->node,
		      ops[i]->done ? kvs_strerror(ops[i]->res.rc)
		                   : "not done");
		CHECK(ops[i]->ended - ops[i]->started <= bound,
		      "with node %d paused, an operation on %s through node %d "
		      "took %llu ms",
		      where, victim, ops[i]->key, ops[i]->node,
		      (unsigned long long)(ops[i]->ended - ops[i]->started));
	}
	sim_pause(&s, victim, 0);
	sim_settle(&s);
	check_all_done(&s);
	check_reads(&s);
	check_durable(&s, 2);
	sim_close(&s);
}

/*
 * Coalescing: operations that meet a frame in flight to the same peer
 * leave together in the next one, and each gets its own part of the
 * answer. Bursts of clients through every node of 3 (N = 3), under lost,
 * duplicated and late messages and a failing node: the same checks as
 * quorum_rw, and frames must indeed have carried several operations.
 */
static void coalesced(uint64_t seed)
{
	struct sim s;

	set_where("coalesced", seed);
	sim_open(&s, seed, 3, NULL);
	s.faults.loss = 20;
	s.faults.dup = 20;
	s.faults.late = 20;
	fault_some_node(&s, 500, 3000);
	for (int burst = 0; burst < 6; burst++)
		random_ops(&s, 25, 3, "c", 6); /* 25 within 3 ms */
	sim_run(&s, s.now + 1000);
	for (int burst = 0; burst < 6; burst++) {
		random_ops(&s, 25, 3, "c", 6);
		sim_run(&s, s.now + 400);
	}
	sim_run(&s, 5000); /* past the last fault's end */
	heal(&s);
	sim_settle(&s);
	CHECK(s.most_ops > 1, "no frame carried more than one operation",
	      where);
	check_all_done(&s);
	check_reads(&s);
	check_durable(&s, 2);
	sim_close(&s);
}

/* What the last acknowledged writes left: key -> value, or deleted. */
struct model {
	char value[40][32];
	int live[40];
};

/*
 * The cluster scan: 4 nodes, N = 3, keys written, overwritten and deleted
 * one after the other while some node is down (so replicas differ), then
 * scanned at R = 2 and R = 3 through random nodes, page by page with
 * small limits, with duplicated and late messages (a page that fails for
 * lack of shards is asked again). Each scan must show exactly the live
 * keys, in order, once each, with their last values.
 */
/* Hinted handoff: an owner misses writes while down (or silent); when it
 * is back, the coordinators hand it what it missed, through a lossy
 * network, with no read to repair anything, and without undoing writes
 * made meanwhile. */
static void hinted_handoff(uint64_t seed)
{
	struct sim s;
	char key[16][8], value[16][32];
	int deleted[16];
	uint64_t written = 0, pending = 0;
	int victim;

	set_where("hinted_handoff", seed);
	sim_open(&s, seed, 3, NULL);
	victim = (int)sim_rand(&s, 3);
	if (sim_rand(&s, 2))
		s.nodes[victim].down = 1;
	else
		s.nodes[victim].blackhole = 1;
	for (int k = 0; k < 16; k++) {
		int node = (victim + 1 + (int)sim_rand(&s, 2)) % 3;
		struct sim_op *w;

		snprintf(key[k], sizeof(key[k]), "h%d", k);
		snprintf(value[k], sizeof(value[k]), "v%llu-%d",
		         (unsigned long long)seed, k);
		w = sim_put(&s, s.now + 1, node, key[k], value[k]);
		sim_settle(&s);
		CHECK(w->res.rc == KVS_OK, "the write of %s failed: %s", where,
		      key[k], kvs_strerror(w->res.rc));
		deleted[k] = sim_rand(&s, 4) == 0;
		if (deleted[k]) {
			w = sim_del(&s, s.now + 1, node, key[k]);
			sim_settle(&s);
			CHECK(w->res.rc == KVS_OK, "the delete of %s failed: %s",
			      where, key[k], kvs_strerror(w->res.rc));
		}
	}
	for (int i = 0; i < 3; i++) {
		kvs__node_stats st;

		kvs__node_stats_get(s.nodes[i].node, &st);
		written += st.hints_written;
	}
	CHECK(written >= 16, "only %llu hints kept for 16 missed writes", where,
	      (unsigned long long)written);
	/* Back, over a network that loses, duplicates and delays; half the
	 * keys are written again meanwhile. */
	s.nodes[victim].down = s.nodes[victim].blackhole = 0;
	s.faults.loss = 100;
	s.faults.dup = 100;
	s.faults.late = 100;
	for (int k = 0; k < 8; k++) {
		snprintf(value[k], sizeof(value[k]), "new%llu-%d",
		         (unsigned long long)seed, k);
		deleted[k] = 0;
		(void)sim_put(&s, s.now + 1 + sim_rand(&s, 3000),
		              (int)sim_rand(&s, 3), key[k], value[k]);
	}
	sim_run(&s, s.now + 30000);
	s.faults.loss = s.faults.dup = s.faults.late = 0;
	sim_run(&s, s.now + 15000);
	sim_settle(&s);
	for (int k = 0; k < 16; k++) {
		kvs_record rec;
		char v[64];
		int have = sim_local(&s, victim, key[k], &rec, v, sizeof(v));

		CHECK(have, "node %d never got %s", where, victim, key[k]);
		if (deleted[k])
			CHECK(rec.flags & KVS_RECORD_TOMBSTONE,
			      "node %d missed the delete of %s", where, victim,
			      key[k]);
		else
			CHECK(!(rec.flags & KVS_RECORD_TOMBSTONE) &&
			              strcmp(v, value[k]) == 0,
			      "node %d has %s = \"%s\", not \"%s\"", where,
			      victim, key[k], v, value[k]);
	}
	for (int i = 0; i < 3; i++) {
		uint64_t count, bytes;

		kvs__node_hints_pending(s.nodes[i].node, (size_t)victim, &count,
		                        &bytes);
		pending += count;
	}
	CHECK(pending == 0, "%llu hints still pending", where,
	      (unsigned long long)pending);
	sim_close(&s);
}

/* Anti-entropy without hints: replicas that missed writes, in both
 * directions, converge with no read at all, over a lossy network, and
 * without undoing writes made meanwhile. */
static void anti_entropy(uint64_t seed)
{
	struct sim s;
	char key[24][8], value[24][32];
	int deleted[24], victim, other;
	uint64_t repaired = 0;

	set_where("anti_entropy", seed);
	sim_open(&s, seed, 3,
	         "hint_max_bytes = 0\nanti_entropy_interval_s = 5\n");
	victim = (int)sim_rand(&s, 3);
	other = (victim + 1 + (int)sim_rand(&s, 2)) % 3;
	/* Keys 0-15 written while victim is down; 16-23 written through
	 * victim while other is down. */
	for (int k = 0; k < 24; k++) {
		int down = k < 16 ? victim : other;
		int via = k < 16 ? (victim + 1 + (int)sim_rand(&s, 2)) % 3 : victim;
		struct sim_op *w;

		if (via == down)
			via = 3 - victim - other;
		s.nodes[victim].down = k < 16;
		s.nodes[other].down = k >= 16;
		snprintf(key[k], sizeof(key[k]), "a%d", k);
		snprintf(value[k], sizeof(value[k]), "v%llu-%d",
		         (unsigned long long)seed, k);
		w = sim_put(&s, s.now + 1, via, key[k], value[k]);
		sim_settle(&s);
		CHECK(w->res.rc == KVS_OK, "the write of %s failed: %s", where,
		      key[k], kvs_strerror(w->res.rc));
		deleted[k] = sim_rand(&s, 4) == 0;
		if (deleted[k]) {
			w = sim_del(&s, s.now + 1, via, key[k]);
			sim_settle(&s);
			CHECK(w->res.rc == KVS_OK, "the delete of %s failed: %s",
			      where, key[k], kvs_strerror(w->res.rc));
		}
	}
	s.nodes[victim].down = s.nodes[other].down = 0;
	s.faults.loss = 100;
	s.faults.dup = 100;
	s.faults.late = 100;
	for (int k = 0; k < 24; k += 3) {
		snprintf(value[k], sizeof(value[k]), "new%llu-%d",
		         (unsigned long long)seed, k);
		deleted[k] = 0;
		(void)sim_put(&s, s.now + 1 + sim_rand(&s, 8000),
		              (int)sim_rand(&s, 3), key[k], value[k]);
	}
	sim_run(&s, s.now + 30000);
	s.faults.loss = s.faults.dup = s.faults.late = 0;
	sim_run(&s, s.now + 30000);
	sim_settle(&s);
	for (int i = 0; i < 3; i++) {
		kvs__aae_stats st;

		kvs__node_aae_stats(s.nodes[i].node, &st);
		repaired += st.keys_repaired;
		CHECK(st.passes > 0, "node %d completed no pass", where, i);
	}
	CHECK(repaired > 0, "anti-entropy repaired nothing", where);
	for (int i = 0; i < 3; i++)
		for (int k = 0; k < 24; k++) {
			kvs_record rec;
			char v[64];
			int have = sim_local(&s, i, key[k], &rec, v, sizeof(v));

			CHECK(have, "node %d never got %s", where, i, key[k]);
			if (deleted[k])
				CHECK(rec.flags & KVS_RECORD_TOMBSTONE,
				      "node %d missed the delete of %s", where, i,
				      key[k]);
			else
				CHECK(!(rec.flags & KVS_RECORD_TOMBSTONE) &&
				              strcmp(v, value[k]) == 0,
				      "node %d has %s = \"%s\", not \"%s\"", where,
				      i, key[k], v, value[k]);
		}
	sim_close(&s);
}

/* Concurrent writers of the same keys through different coordinators,
 * over a faulty network: every replica ends with the same version and
 * value of each key (the highest version written), and reads agree. */
static void concurrent_writers(uint64_t seed)
{
	struct sim s;
	struct sim_op *gets[4];
	char agreed[4][64];
	int present[4];

	set_where("concurrent_writers", seed);
	sim_open(&s, seed, 3, "anti_entropy_interval_s = 5\n");
	s.faults.loss = 50;
	s.faults.dup = 50;
	s.faults.late = 50;
	for (int c = 0; c < 24; c++) {
		char key[8], value[32];

		snprintf(key, sizeof(key), "c%d", (int)sim_rand(&s, 4));
		snprintf(value, sizeof(value), "w%llu-%d",
		         (unsigned long long)seed, c);
		(void)sim_put(&s, s.now + 1 + sim_rand(&s, 50),
		              (int)sim_rand(&s, 3), key, value);
	}
	sim_run(&s, s.now + 5000);
	s.faults.loss = s.faults.dup = s.faults.late = 0;
	sim_run(&s, s.now + 20000);
	sim_settle(&s);
	for (int k = 0; k < 4; k++) {
		char key[8], v0[64];
		kvs_record r0;
		int have0;

		snprintf(key, sizeof(key), "c%d", k);
		have0 = sim_local(&s, 0, key, &r0, v0, sizeof(v0));
		for (int i = 1; i < 3; i++) {
			kvs_record ri;
			char vi[64];
			int have = sim_local(&s, i, key, &ri, vi, sizeof(vi));

			CHECK(have == have0 &&
			              (!have ||
			               (kvs_stamp_cmp(&ri.stamp, &r0.stamp) == 0 &&
			                strcmp(vi, v0) == 0)),
			      "nodes 0 and %d disagree on %s: \"%s\" and \"%s\"",
			      where, i, key, have0 ? v0 : "(none)",
			      have ? vi : "(none)");
		}
		present[k] = have0;
		snprintf(agreed[k], sizeof(agreed[k]), "%s", have0 ? v0 : "");
		gets[k] = sim_get(&s, s.now + 1, k % 3, key, 2);
	}
	sim_settle(&s);
	check_all_done(&s);
	check_reads(&s);
	for (int k = 0; k < 4; k++) {
		const kvs__result *res = &gets[k]->res;

		if (!present[k]) {
			CHECK(res->rc == KVS_NOTFOUND, "c%d: %s, not not_found",
			      where, k, kvs_strerror(res->rc));
			continue;
		}
		CHECK(res->rc == KVS_OK && res->value_len == strlen(agreed[k]) &&
		              memcmp(res->value, agreed[k], res->value_len) == 0,
		      "a read of c%d does not give the value every replica has",
		      where, k);
	}
	sim_close(&s);
}

/* Tombstone purge: a delete's tombstones go once past their grace period
 * and seen on every owner, never while an owner that missed the delete
 * still holds the old value, which therefore never comes back. */
static void tombstone_purge(uint64_t seed)
{
	struct sim s;
	char key[8][8];
	uint64_t purged = 0;
	int stale;

	set_where("tombstone_purge", seed);
	sim_open(&s, seed, 3,
	         "hint_max_bytes = 0\nanti_entropy_interval_s = 5\n"
	         "tombstone_grace_s = 20\n");
	for (int k = 0; k < 8; k++) {
		struct sim_op *w;

		snprintf(key[k], sizeof(key[k]), "t%d", k);
		w = sim_put(&s, s.now + 1, (int)sim_rand(&s, 3), key[k], "old");
		sim_settle(&s);
		CHECK(w->res.rc == KVS_OK, "the write of %s failed", where,
		      key[k]);
	}
	stale = (int)sim_rand(&s, 3);
	s.nodes[stale].down = 1;
	for (int k = 0; k < 8; k++) {
		struct sim_op *d = sim_del(&s, s.now + 1,
		                           (stale + 1 + (int)sim_rand(&s, 2)) % 3,
		                           key[k]);

		sim_settle(&s);
		CHECK(d->res.rc == KVS_OK, "the delete of %s failed: %s", where,
		      key[k], kvs_strerror(d->res.rc));
	}
	/* Three grace periods with the stale owner away: nothing purged. */
	sim_run(&s, s.now + 60000);
	for (int i = 0; i < 3; i++)
		for (int k = 0; k < 8 && i != stale; k++) {
			kvs_record rec;
			char v[64];

			CHECK(sim_local(&s, i, key[k], &rec, v, sizeof(v)) &&
			              (rec.flags & KVS_RECORD_TOMBSTONE),
			      "node %d purged %s while node %d still has the old "
			      "value",
			      where, i, key[k], stale);
		}
	/* Back: it gets the tombstones, everyone has seen them, they go. */
	s.nodes[stale].down = 0;
	s.faults.loss = 50;
	s.faults.dup = 50;
	sim_run(&s, s.now + 60000);
	s.faults.loss = s.faults.dup = 0;
	sim_run(&s, s.now + 60000);
	sim_settle(&s);
	for (int i = 0; i < 3; i++) {
		kvs__aae_stats st;

		kvs__node_aae_stats(s.nodes[i].node, &st);
		purged += st.tombstones_purged;
		for (int k = 0; k < 8; k++) {
			kvs_record rec;
			char v[64];

			CHECK(!sim_local(&s, i, key[k], &rec, v, sizeof(v)),
			      "node %d still has %s (%s)", where, i, key[k],
			      (rec.flags & KVS_RECORD_TOMBSTONE) ? "a tombstone"
			                                         : v);
		}
	}
	CHECK(purged >= 24, "only %llu tombstones purged, not 24", where,
	      (unsigned long long)purged);
	/* And the old value is gone for good, through every node. */
	for (int k = 0; k < 8; k++) {
		struct sim_op *g = sim_get(&s, s.now + 1, k % 3, key[k], 3);

		sim_settle(&s);
		CHECK(g->res.rc == KVS_NOTFOUND, "%s came back: %s", where,
		      key[k], kvs_strerror(g->res.rc));
	}
	sim_close(&s);
}

static void scan_merge(uint64_t seed)
{
	struct sim s;
	struct model m;
	static struct sim_scan sc;

	set_where("scan_merge", seed);
	memset(&m, 0, sizeof(m));
	sim_open(&s, seed, 4, "replication = 3\n");
	s.faults.dup = 50;
	for (int i = 0; i < 70; i++) {
		int k = (int)sim_rand(&s, 40), del = sim_rand(&s, 4) == 0;
		int down = (int)sim_rand(&s, 6); /* 4, 5: nobody down */
		char key[8], value[32];
		struct sim_op *w;

		snprintf(key, sizeof(key), "s%02d", k);
		snprintf(value, sizeof(value), "w%llu-%d",
		         (unsigned long long)seed, i);
		if (down < 4)
			s.nodes[down].down = 1;
		/* Retried until acknowledged, so that the model is exact. */
		for (int attempt = 0;; attempt++) {
			int node = (int)sim_rand(&s, 4);

			if (node == down)
				node = (node + 1) % 4;
			w = del ? sim_del(&s, s.now + 1, node, key)
			        : sim_put(&s, s.now + 1, node, key, value);
			sim_settle(&s);
			if (w->res.rc == KVS_OK)
				break;
			CHECK(attempt < 10, "a write of %s keeps failing: %s",
			      where, key, kvs_strerror(w->res.rc));
		}
		if (down < 4)
			s.nodes[down].down = 0;
		m.live[k] = !del;
		snprintf(m.value[k], sizeof(m.value[k]), "%s", value);
	}
	sim_run(&s, s.now + 2500); /* probes see everyone up */
	s.faults.late = 30;
	for (unsigned r = 2; r <= 3; r++) {
		size_t seen = 0;
		int k = 0, has_start = 0;
		char start[64] = "";

		for (int page = 0;; page++) {
			size_t limit = 1 + sim_rand(&s, 7);

			CHECK(page < 200, "the scan at R=%u does not end", where, r);
			memset(&sc, 0, sizeof(sc));
			sim_scan_page(&s, &sc, (int)sim_rand(&s, 4), "s", start,
			              has_start, limit, r);
			sim_settle(&s);
			CHECK(sc.done, "a scan page never ended", where);
			if (sc.rc == KVS_EUNAVAIL)
				continue; /* ask again */
			CHECK(sc.rc == KVS_OK, "a scan page failed: %s", where,
			      kvs_strerror(sc.rc));
			CHECK(sc.n <= limit, "a scan page holds %zu keys, limit %zu",
			      where, sc.n, limit);
			for (size_t i = 0; i < sc.n; i++) {
				while (k < 40 && !m.live[k])
					k++;
				CHECK(k < 40, "the scan at R=%u shows %s, deleted or "
				              "never written",
				      where, r, sc.keys[i]);
				{
					char want[16];

					snprintf(want, sizeof(want), "s%02d", k % 100);
					CHECK(strcmp(sc.keys[i], want) == 0,
					      "the scan at R=%u shows %s where %s "
					      "comes next",
					      where, r, sc.keys[i], want);
				}
				CHECK(strcmp(sc.values[i], m.value[k]) == 0,
				      "the scan at R=%u shows an old value of %s",
				      where, r, sc.keys[i]);
				k++;
				seen++;
			}
			if (!sc.has_next)
				break;
			memcpy(start, sc.next, sc.next_len + 1);
			has_start = 1;
		}
		while (k < 40 && !m.live[k])
			k++;
		CHECK(k == 40, "the scan at R=%u missed s%02d (%zu keys shown)",
		      where, r, k, seen);
	}
	sim_close(&s);
}

/* The same seed gives the same run: here, the same trace of results. */
static uint64_t digest_of(uint64_t seed)
{
	struct sim s;
	uint64_t h = 1469598103934665603u;

	sim_open(&s, seed, 3, NULL);
	s.faults.loss = 50;
	s.faults.dup = 50;
	s.faults.late = 50;
	fault_some_node(&s, 0, 3000);
	for (int i = 0; i < 30; i++) {
		char key[8], value[16];

		snprintf(key, sizeof(key), "d%d", (int)sim_rand(&s, 3));
		snprintf(value, sizeof(value), "%d", i);
		if (sim_rand(&s, 2))
			sim_put(&s, sim_rand(&s, 3000), (int)sim_rand(&s, 3), key,
			        value);
		else
			sim_get(&s, sim_rand(&s, 3000), (int)sim_rand(&s, 3), key,
			        0);
	}
	sim_run(&s, 5000);
	heal(&s);
	sim_settle(&s);
	for (const struct sim_op *o = s.ops; o != NULL; o = o->next) {
		h = (h ^ (uint64_t)(o->res.rc + 100)) * 1099511628211u;
		h = (h ^ o->res.stamp.hlc) * 1099511628211u;
		h = (h ^ o->ended) * 1099511628211u;
	}
	h = (h ^ s.events) * 1099511628211u;
	sim_close(&s);
	return h;
}

/* ------------------------------------------------------------------ */


/* ------------------------------------------------------------------ */
/* Moves                                                                */

#define MOVE_KEYS 40
#define MOVE_WRITES 30

/*
 * A third shard joins two (N = 2, W = 2), through the move's epochs:
 * keys written before; then, in DUAL, writes through any node while
 * messages are lost, duplicated and late, and the nodes copy what they
 * gain; then READ_NEW. Every acknowledged write (and delete) must then be
 * held by each of its new owners, and read back through every node.
 */
static void move_join(uint64_t seed)
{
	static const double before[3] = {1, 1, 0}, after[3] = {1, 1, 1};
	static const char *const names[3] = {"n0", "n1", "n2"};
	struct sim s;
	struct sim_op *w[MOVE_KEYS + MOVE_WRITES];
	char key[MOVE_KEYS + MOVE_WRITES][12];
	char value[MOVE_KEYS + MOVE_WRITES][40];
	int deleted[MOVE_KEYS] = {0};
	kvs_ring_member members[3];
	kvs_ring *ring;
	uint64_t until;
	int copied;

	set_where("move_join", seed);
	sim_open(&s, seed, 3,
	         "replication = 2\nhint_max_bytes = 0\n"
	         "anti_entropy_interval_s = 0\n");
	sim_topology(&s, before, KVS__MOVE_NONE, NULL);
	for (int k = 0; k < MOVE_KEYS; k++) {
		snprintf(key[k], sizeof(key[k]), "m%d", k);
		snprintf(value[k], sizeof(value[k]), "v%llu-%d",
		         (unsigned long long)seed, k);
		w[k] = sim_put(&s, s.now + 1, (int)sim_rand(&s, 3), key[k],
		               value[k]);
		sim_settle(&s);
		CHECK(w[k]->res.rc == KVS_OK, "the write of %s failed: %s", where,
		      key[k], kvs_strerror(w[k]->res.rc));
		if (sim_rand(&s, 5) == 0) {
			struct sim_op *d = sim_del(&s, s.now + 1,
			                           (int)sim_rand(&s, 3), key[k]);

			sim_settle(&s);
			CHECK(d->res.rc == KVS_OK, "the delete of %s failed",
			      where, key[k]);
			deleted[k] = 1;
		}
	}
	/* DUAL: writes to both sides while the nodes copy, under faults. */
	sim_topology(&s, after, KVS__MOVE_DUAL, before);
	s.faults.loss = 50;
	s.faults.dup = 50;
	s.faults.late = 50;
	for (int k = MOVE_KEYS; k < MOVE_KEYS + MOVE_WRITES; k++) {
		snprintf(key[k], sizeof(key[k]), "d%d", k);
		snprintf(value[k], sizeof(value[k]), "w%llu-%d",
		         (unsigned long long)seed, k);
		w[k] = sim_put(&s, s.now + 1 + sim_rand(&s, 4000),
		               (int)sim_rand(&s, 3), key[k], value[k]);
	}
	for (int i = 0; i < 3; i++)
		kvs__node_move_copy(s.nodes[i].node);
	until = s.now + 120000;
	do {
		kvs__move_stats ms;

		sim_run(&s, s.now + 1000);
		copied = 1;
		for (int i = 0; i < 3; i++) {
			kvs__node_move_stats(s.nodes[i].node, &ms);
			copied &= ms.copied;
		}
	} while (!copied && s.now < until);
	CHECK(copied, "the copy did not end in 120 s", where);
	s.faults.loss = s.faults.dup = s.faults.late = 0;
	sim_settle(&s);
	/* READ_NEW. */
	sim_topology(&s, after, KVS__MOVE_READ_NEW, before);
	for (int i = 0; i < 3; i++) {
		members[i].name = names[i];
		members[i].weight = after[i];
	}
	ck_assert_int_eq(kvs_ring_new(&ring, members, 3, 0), KVS_OK);
	for (int k = 0; k < MOVE_KEYS + MOVE_WRITES; k++) {
		size_t owners[KVS_RING_MAX_OWNERS];
		size_t n = kvs_ring_owners(ring, key[k], strlen(key[k]), owners, 2);

		if (k >= MOVE_KEYS && w[k]->res.rc != KVS_OK)
			continue; /* not acknowledged: either way */
		for (size_t o = 0; o < n; o++) {
			kvs_record rec;
			char v[64];
			int have = sim_local(&s, (int)owners[o], key[k], &rec, v,
			                     sizeof(v));

			CHECK(have, "new owner n%zu lacks %s", where, owners[o],
			      key[k]);
			if (k < MOVE_KEYS && deleted[k])
				CHECK(rec.flags & KVS_RECORD_TOMBSTONE,
				      "new owner n%zu lacks the delete of %s", where,
				      owners[o], key[k]);
			else
				CHECK(strcmp(v, value[k]) == 0,
				      "new owner n%zu has %s = %s, not %s", where,
				      owners[o], key[k], v, value[k]);
		}
		for (int i = 0; i < 3; i++) {
			struct sim_op *g = sim_get(&s, s.now + 1, i, key[k], 2);

			sim_settle(&s);
			if (k < MOVE_KEYS && deleted[k])
				CHECK(g->res.rc == KVS_NOTFOUND,
				      "%s reads back through n%d (deleted)", where,
				      key[k], i);
			else
				CHECK(g->res.rc == KVS_OK,
				      "%s does not read back through n%d: %s",
				      where, key[k], i, kvs_strerror(g->res.rc));
		}
	}
	kvs_ring_free(ring);
	sim_close(&s);
}

/*
 * Fencing: peers whose fence is above a node's epoch refuse its writes
 * (its registration ran out: it may not know the owners), so a write it
 * coordinates cannot reach W and fails, and nothing of it is stored by
 * them; at the fence, writes go through.
 */
static void fencing(uint64_t seed)
{
	struct sim s;
	struct sim_op *w;
	kvs_record rec;
	char v[64];
	kvs__node_stats st;

	set_where("fencing", seed);
	sim_open(&s, seed, 3, "replication = 3\nhint_max_bytes = 0\n");
	for (int i = 1; i < 3; i++)
		kvs__node_set_fence(s.nodes[i].node, 1); /* every node's epoch */
	w = sim_put(&s, s.now + 1, 0, "a", "1");
	sim_settle(&s);
	CHECK(w->res.rc == KVS_OK, "a write at the fence failed: %s", where,
	      kvs_strerror(w->res.rc));
	for (int i = 1; i < 3; i++)
		kvs__node_set_fence(s.nodes[i].node, 2); /* node 0 is behind */
	w = sim_put(&s, s.now + 1, 0, "b", "2");
	sim_settle(&s);
	CHECK(w->res.rc == KVS_EUNAVAIL,
	      "a write from behind the fence got %s", where,
	      kvs_strerror(w->res.rc));
	for (int i = 1; i < 3; i++)
		CHECK(!sim_local(&s, i, "b", &rec, v, sizeof(v)),
		      "node %d stored a fenced write", where, i);
	kvs__node_stats_get(s.nodes[1].node, &st);
	CHECK(st.fenced > 0, "node 1 counted no fenced frame", where);
	/* Reads are not fenced. */
	w = sim_get(&s, s.now + 1, 0, "a", 2);
	sim_settle(&s);
	CHECK(w->res.rc == KVS_OK, "a read from behind the fence failed: %s",
	      where, kvs_strerror(w->res.rc));
	sim_close(&s);
}

static void run_scenario_n(const char *name, void (*f)(uint64_t),
                           unsigned dflt)
{
	uint64_t first, count;

	if (!seeds(name, dflt, &first, &count))
		return;
	for (uint64_t i = 0; i < count; i++)
		f(first + i);
}

static void run_scenario(const char *name, void (*f)(uint64_t))
{
	run_scenario_n(name, f, DEFAULT_RUNS);
}

START_TEST(sim_quorum_reads_and_writes)
{
	run_scenario("quorum_rw", quorum_rw);
}
END_TEST

START_TEST(sim_read_repair)
{
	run_scenario("read_repair", read_repair);
}
END_TEST

START_TEST(sim_proxy_failover)
{
	run_scenario("proxy_failover", proxy_failover);
}
END_TEST

START_TEST(sim_paused_owner)
{
	run_scenario("paused_owner", paused_owner);
}
END_TEST

START_TEST(sim_cas_once)
{
	run_scenario("cas_once", cas_once);
}
END_TEST

START_TEST(sim_cas_stale_primary)
{
	run_scenario("cas_stale_primary", cas_stale_primary);
}
END_TEST

START_TEST(sim_speculative_retry)
{
	run_scenario("speculative_retry", speculative_retry);
}
END_TEST

START_TEST(sim_coalesced)
{
	run_scenario("coalesced", coalesced);
}
END_TEST

START_TEST(sim_scan_merge)
{
	run_scenario("scan_merge", scan_merge);
}
END_TEST

START_TEST(sim_hinted_handoff)
{
	run_scenario("hinted_handoff", hinted_handoff);
}
END_TEST

START_TEST(sim_move_join)
{
	run_scenario_n("move_join", move_join, HEAVY_RUNS);
}
END_TEST

START_TEST(sim_fencing)
{
	run_scenario_n("fencing", fencing, HEAVY_RUNS);
}
END_TEST

START_TEST(sim_anti_entropy)
{
	run_scenario("anti_entropy", anti_entropy);
}
END_TEST

START_TEST(sim_concurrent_writers)
{
	run_scenario("concurrent_writers", concurrent_writers);
}
END_TEST

START_TEST(sim_tombstone_purge)
{
	run_scenario("tombstone_purge", tombstone_purge);
}
END_TEST

START_TEST(a_seed_replays_exactly)
{
	if (getenv("KVS_SIM_SCENARIO") != NULL)
		return; /* replaying one scenario */
	for (uint64_t seed = 1; seed <= 5; seed++)
		ck_assert_msg(digest_of(seed) == digest_of(seed),
		              "seed %llu gave two different runs",
		              (unsigned long long)seed);
	ck_assert_msg(digest_of(1) != digest_of(2),
	              "two seeds gave the same run: the seed is not used");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("node");
	TCase *tc = tcase_create("simulation");

	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, sim_quorum_reads_and_writes);
	tcase_add_test(tc, sim_read_repair);
	tcase_add_test(tc, sim_proxy_failover);
	tcase_add_test(tc, sim_paused_owner);
	tcase_add_test(tc, sim_cas_once);
	tcase_add_test(tc, sim_cas_stale_primary);
	tcase_add_test(tc, sim_speculative_retry);
	tcase_add_test(tc, sim_coalesced);
	tcase_add_test(tc, sim_scan_merge);
	tcase_add_test(tc, sim_hinted_handoff);
	tcase_add_test(tc, sim_anti_entropy);
	tcase_add_test(tc, sim_move_join);
	tcase_add_test(tc, sim_fencing);
	tcase_add_test(tc, sim_concurrent_writers);
	tcase_add_test(tc, sim_tombstone_purge);
	tcase_add_test(tc, a_seed_replays_exactly);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
