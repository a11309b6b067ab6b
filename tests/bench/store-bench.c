/*
 * store-bench - the store against raw LMDB, in one process, one run.
 *
 *     store-bench [reads|writes|all] [DIR]
 *
 * reads:  random gets of 100,000 keys (16-byte keys, 100-byte values) from
 *         one thread: kvs_store_read (pooled read transaction, zero copy),
 *         kvs_store_get (plus a malloc'ed copy), and raw LMDB doing what a
 *         server thread must do per request (renew a reset read
 *         transaction, mdb_get, reset), and raw LMDB's floor (mdb_get in
 *         one long transaction, which a server cannot use: it would pin
 *         old pages forever).
 * writes: durable puts from 1 to 64 threads: kvs_store_put (group commit)
 *         against raw LMDB with one transaction and its sync per put
 *         (default flags), 100-byte values.
 *
 * Output is markdown for docs/benchmarks.md. DIR (default: a new directory
 * under /tmp) must be on the file system to measure.
 */
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kvshard.h"

#define KEYS 100000
#define VALUE_SIZE 100
#define READS 2000000
#define WRITE_SECONDS 3.0
#define MAP_SIZE ((size_t)1 << 30)

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void key_of(unsigned i, char *k)
{
	snprintf(k, 17, "key-%012u", i);
}

static unsigned next_rand(unsigned *s)
{
	*s = *s * 1103515245u + 12345u;
	return (*s >> 8) % KEYS;
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "store-bench: %s: %d\n", what, rc);
	exit(1);
}

/* ------------------------------------------------------------------ */

static int count_cb(void *ud, const kvs_record *rec)
{
	*(size_t *)ud += rec->value_len;
	return 0;
}

static void reads(const char *dir)
{
	char path[4096], key[17], value[VALUE_SIZE];
	kvs_store *s;
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	unsigned seed;
	size_t sink = 0;
	double t0, t_read, t_get, t_raw, t_long;
	int rc;

	memset(value, 'v', sizeof(value));
	snprintf(path, sizeof(path), "%s/store", dir);
	rc = kvs_store_open(&s, path, NULL);
	if (rc != KVS_OK)
		die("kvs_store_open", rc);
	/* Loaded through the store's API (its own record format); the
	 * load is not measured. */
	for (unsigned i = 0; i < KEYS; i++) {
		key_of(i, key);
		rc = kvs_store_put(s, key, 16, value, VALUE_SIZE, NULL, NULL);
		if (rc != KVS_OK)
			die("put", rc);
	}

	snprintf(path, sizeof(path), "%s/raw", dir);
	mkdir(path, 0700);
	mdb_env_create(&env);
	mdb_env_set_mapsize(env, MAP_SIZE);
	rc = mdb_env_open(env, path, MDB_NOTLS | MDB_NORDAHEAD | MDB_NOSYNC,
	                  0600);
	if (rc != 0)
		die("mdb_env_open", rc);
	mdb_txn_begin(env, NULL, 0, &txn);
	mdb_dbi_open(txn, NULL, 0, &dbi);
	for (unsigned i = 0; i < KEYS; i++) {
		MDB_val k = {16, key}, v = {VALUE_SIZE, value};

		key_of(i, key);
		mdb_put(txn, dbi, &k, &v, 0);
	}
	mdb_txn_commit(txn);

	seed = 1;
	t0 = now_s();
	for (int i = 0; i < READS; i++) {
		key_of(next_rand(&seed), key);
		kvs_store_read(s, key, 16, 0, count_cb, &sink);
	}
	t_read = now_s() - t0;

	seed = 1;
	t0 = now_s();
	for (int i = 0; i < READS; i++) {
		void *v;
		size_t n;

		key_of(next_rand(&seed), key);
		if (kvs_store_get(s, key, 16, &v, &n, NULL) == KVS_OK) {
			sink += n;
			kvs_free(v);
		}
	}
	t_get = now_s() - t0;

	seed = 1;
	mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
	mdb_txn_reset(txn);
	t0 = now_s();
	for (int i = 0; i < READS; i++) {
		MDB_val k = {16, key}, v;

		key_of(next_rand(&seed), key);
		mdb_txn_renew(txn);
		if (mdb_get(txn, dbi, &k, &v) == 0)
			sink += v.mv_size;
		mdb_txn_reset(txn);
	}
	t_raw = now_s() - t0;

	seed = 1;
	mdb_txn_renew(txn);
	t0 = now_s();
	for (int i = 0; i < READS; i++) {
		MDB_val k = {16, key}, v;

		key_of(next_rand(&seed), key);
		if (mdb_get(txn, dbi, &k, &v) == 0)
			sink += v.mv_size;
	}
	t_long = now_s() - t0;
	mdb_txn_abort(txn);
	mdb_env_close(env);
	kvs_store_close(s);

	printf("| reads (1 thread, %d random gets of %d keys) | gets/s | ns/get | vs raw LMDB (renew+get+reset) |\n",
	       READS, KEYS);
	printf("|---|---|---|---|\n");
	printf("| raw LMDB: renew, mdb_get, reset | %.0f | %.0f | 100%% |\n",
	       READS / t_raw, t_raw * 1e9 / READS);
	printf("| kvs_store_read (zero copy) | %.0f | %.0f | %.0f%% |\n",
	       READS / t_read, t_read * 1e9 / READS, 100.0 * t_raw / t_read);
	printf("| kvs_store_get (malloc + copy) | %.0f | %.0f | %.0f%% |\n",
	       READS / t_get, t_get * 1e9 / READS, 100.0 * t_raw / t_get);
	printf("| raw LMDB: mdb_get in one long transaction (floor) | %.0f | %.0f | %.0f%% |\n",
	       READS / t_long, t_long * 1e9 / READS, 100.0 * t_raw / t_long);
	printf("\n(checksum %zu)\n\n", sink);
}

/* ------------------------------------------------------------------ */

struct writer {
	kvs_store *s;
	MDB_env *env;
	MDB_dbi dbi;
	int id;
	double until;
	long done;
};

static void *store_writer(void *arg)
{
	struct writer *w = arg;
	char key[17], value[VALUE_SIZE];
	unsigned seed = (unsigned)w->id * 7919u + 1u;

	memset(value, 'w', sizeof(value));
	while (now_s() < w->until) {
		key_of(next_rand(&seed), key);
		if (kvs_store_put(w->s, key, 16, value, VALUE_SIZE, NULL, NULL) !=
		    KVS_OK)
			die("put", -1);
		w->done++;
	}
	return NULL;
}

static void *raw_writer(void *arg)
{
	struct writer *w = arg;
	char key[17], value[VALUE_SIZE];
	unsigned seed = (unsigned)w->id * 7919u + 1u;

	memset(value, 'w', sizeof(value));
	while (now_s() < w->until) {
		MDB_txn *txn;
		MDB_val k = {16, key}, v = {VALUE_SIZE, value};

		key_of(next_rand(&seed), key);
		if (mdb_txn_begin(w->env, NULL, 0, &txn) != 0)
			die("txn", -1);
		mdb_put(txn, w->dbi, &k, &v, 0);
		if (mdb_txn_commit(txn) != 0)
			die("commit", -1);
		w->done++;
	}
	return NULL;
}

/* Puts/s of n writers for WRITE_SECONDS; *per_commit gets puts per
 * commit (1 for raw LMDB). */
static double run_writers(int n, int raw, const char *dir, double *per_commit)
{
	pthread_t th[64];
	struct writer w[64];
	char path[4096];
	kvs_store *s = NULL;
	MDB_env *env = NULL;
	MDB_dbi dbi = 0;
	double t0, t;
	long total = 0;

	snprintf(path, sizeof(path), "%s/%s-%d", dir, raw ? "rawput" : "put", n);
	mkdir(path, 0700);
	if (raw) {
		MDB_txn *txn;

		mdb_env_create(&env);
		mdb_env_set_mapsize(env, MAP_SIZE);
		if (mdb_env_open(env, path, MDB_NOTLS, 0600) != 0)
			die("mdb_env_open", -1);
		mdb_txn_begin(env, NULL, 0, &txn);
		mdb_dbi_open(txn, NULL, 0, &dbi);
		mdb_txn_commit(txn);
	} else if (kvs_store_open(&s, path, NULL) != KVS_OK) {
		die("kvs_store_open", -1);
	}
	t0 = now_s();
	for (int i = 0; i < n; i++) {
		w[i] = (struct writer){s, env, dbi, i, t0 + WRITE_SECONDS, 0};
		pthread_create(&th[i], NULL, raw ? raw_writer : store_writer,
		               &w[i]);
	}
	for (int i = 0; i < n; i++) {
		pthread_join(th[i], NULL);
		total += w[i].done;
	}
	t = now_s() - t0;
	*per_commit = 1.0;
	if (s != NULL) {
		kvs_store_stats st;

		kvs_store_stat(s, &st);
		if (st.commits > 0)
			*per_commit = (double)st.writes / (double)st.commits;
		kvs_store_close(s);
	}
	if (env != NULL)
		mdb_env_close(env);
	return (double)total / t;
}

static void writes(const char *dir)
{
	static const int threads[] = {1, 4, 16, 32, 64};

	printf("| writers | group commit (kvs_store_put) puts/s | puts per commit | one txn + sync per put (raw LMDB) puts/s | ratio |\n");
	printf("|---|---|---|---|---|\n");
	for (size_t i = 0; i < sizeof(threads) / sizeof(threads[0]); i++) {
		double per, raw_per;
		double g = run_writers(threads[i], 0, dir, &per);
		double r = run_writers(threads[i], 1, dir, &raw_per);

		printf("| %d | %.0f | %.1f | %.0f | %.1fx |\n", threads[i], g, per,
		       r, g / r);
		fflush(stdout);
	}
	printf("\n");
}

int main(int argc, char **argv)
{
	const char *what = argc > 1 ? argv[1] : "all";
	char tmpl[] = "/tmp/store-bench.XXXXXX";
	const char *dir = argc > 2 ? argv[2] : mkdtemp(tmpl);
	char cmd[4200];

	if (dir == NULL) {
		perror("mkdtemp");
		return 1;
	}
	if (strcmp(what, "all") == 0 || strcmp(what, "reads") == 0)
		reads(dir);
	if (strcmp(what, "all") == 0 || strcmp(what, "writes") == 0)
		writes(dir);
	if (argc <= 2) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "store-bench: could not remove %s\n", dir);
	}
	return 0;
}
