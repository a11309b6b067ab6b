/*
 * sim.h - a deterministic simulation of a kvshard cluster in one process.
 *
 * Real nodes (lib/node.c, each with its real store) are joined by a
 * simulated network instead of HTTP: the peer operations table of each
 * node (lib/peer.h) hands its messages, encoded as real peer frames, to
 * an event queue with a virtual clock. A seeded random generator decides
 * each message's fate: delivered after a short delay, late (possibly past
 * the sender's timeout), lost (the request, or its answer), or delivered
 * twice; nodes can be down (refusing) or black holes (never answering).
 * Everything runs on one thread, store writes included
 * (kvs__node_options.inline_local_writes), and every clock the nodes read
 * is the virtual one, so a seed replays exactly: the same seed gives the
 * same messages in the same order and the same outcome.
 *
 * Clients are simulated too: operations started at chosen virtual times on
 * chosen nodes, whose results are kept for the checks.
 */
#ifndef KVS_TEST_SIM_H
#define KVS_TEST_SIM_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

#include "node.h"

/* An assertion for the simulation's hot paths: Check's own record every
 * assertion that passes (a write to its pipe), which at a few per event
 * was most of the simulation's system time. */
#define SIM_ASSERT(cond, ...)                                                 \
	do {                                                                  \
		if (!(cond))                                                  \
			ck_abort_msg(__VA_ARGS__);                            \
	} while (0)

#define SIM_MAX_NODES 6
#define SIM_TIMEOUT_MS 1000u /* request_timeout_ms of the simulated cluster */

struct sim;

/* Fates of messages, in thousandths. */
struct sim_faults {
	unsigned loss;  /* a request, or its answer, vanishes */
	unsigned dup;   /* a request is delivered twice */
	unsigned late;  /* delivered after up to 2 timeouts */
	/* The answer to served operations (not to a probe) vanishes: the
	 * peer acted, its sender never learns it. */
	unsigned answer_loss;
};

struct sim_node {
	struct sim *sim;
	int i;
	kvs__node *node;
	int down;      /* refuses connections */
	int blackhole; /* accepts, never answers */
	/* Paused (SIGSTOP): runs nothing; what reaches it, or what it
	 * waits for, waits, and all of it runs when it resumes. */
	int paused;
};

/* A client's operation. */
struct sim_op {
	struct sim *sim;
	int node;          /* asked of this node */
	kvs__kv_req req;
	kvs__result res;
	char key[64];
	char value[64];
	uint64_t started;
	uint64_t ended;
	int done;
	struct sim_op *next; /* the sim's list of operations */
};

/* A scan, page after page, until next is NULL. */
struct sim_scan {
	struct sim *sim;
	int node;
	kvs__scan_req req;
	kvs__scan_result res;
	int done;
	int rc;
	/* What the pages showed, in order. */
	size_t n;
	char keys[512][64];
	char values[512][64];
	kvs_stamp stamps[512];
	char next[64];
	size_t next_len;
	int has_next;
};

struct sim {
	uint64_t seed;
	uint64_t rng;
	uint64_t now;
	int n;
	struct sim_node nodes[SIM_MAX_NODES];
	kvs_config *cfg;
	char dir[512];
	struct sim_faults faults;
	int ticking; /* the nodes' probes run (kvs__node_tick) */
	struct sim_event *ev;
	size_t n_ev, cap_ev;
	struct sim_event *held; /* for paused nodes, in order */
	size_t n_held, cap_held;
	uint64_t seq;
	struct sim_msg *msgs;
	struct sim_op *ops;
	struct sim_timer *timers;
	size_t most_ops; /* the most operations a frame carried */
	uint64_t events;
	int trace;
	char cluster_toml[1024];
};

/* A cluster of n nodes with the given [cluster] settings (TOML lines). */
void sim_open(struct sim *s, uint64_t seed, int n, const char *cluster_toml);
void sim_close(struct sim *s);

/* A random number in [0, n). */
uint64_t sim_rand(struct sim *s, uint64_t n);
/* 1 with probability per_mille / 1000. */
int sim_chance(struct sim *s, unsigned per_mille);

/* Run events until the queue is empty (ticks stop) or until `until`
 * (virtual ms); bounded: fails the test past a million events. */
void sim_run(struct sim *s, uint64_t until);
/* Run until no message is in flight and every operation is done. */
void sim_settle(struct sim *s);

/* Start a client operation at virtual time `at` on node `node`. */
struct sim_op *sim_put(struct sim *s, uint64_t at, int node, const char *key,
                       const char *value);
struct sim_op *sim_del(struct sim *s, uint64_t at, int node,
                       const char *key);
struct sim_op *sim_get(struct sim *s, uint64_t at, int node, const char *key,
                       unsigned r);

/* A scan page, at once (node `node`); the caller runs the sim. */
void sim_scan_page(struct sim *s, struct sim_scan *sc, int node,
                   const char *prefix, const char *start, int has_start,
                   size_t limit, unsigned r);

/* Node i's own record of key: 1 and *rec (value copied into value, at
 * most cap bytes), or 0 when it has none. */
int sim_local(struct sim *s, int i, const char *key, kvs_record *rec,
              char *value, size_t cap);

/* Pause node i, or resume it: what it missed runs now. */
void sim_pause(struct sim *s, int i, int paused);

/* A new epoch: every node closed and opened again (on its store) with
 * shard i of weight weights[i], and the move phase (config_internal.h)
 * with the weights before it. Messages in flight end as a closing node's
 * do; those that reach a node later meet its new epoch. */
void sim_topology(struct sim *s, const double *weights, int phase,
                  const double *before);
/* Run f(s, arg) at virtual time at. */
void sim_at(struct sim *s, uint64_t at, void (*f)(struct sim *, void *),
            void *arg);

#endif
