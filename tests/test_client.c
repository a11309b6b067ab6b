/*
 * test_client.c - libkvshard's remote client against real clusters: it goes
 * straight to the owners, fails over, reads and writes many keys per call,
 * scans the whole cluster in order, and is usable from many threads.
 */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cluster.h"
#include "kvshard.h"
#include "testutil.h"

static struct tc_cluster C;

static void teardown(void)
{
	tc_stop(&C);
}

/* A client for C (seeds: every node). */
static kvs_client *connect_all(void)
{
	char seeds[512] = "", err[KVS_ERRBUF_SIZE];
	kvs_client_options o;
	kvs_client *c = NULL;

	for (int i = 0; i < C.n; i++) {
		size_t len = strlen(seeds);

		snprintf(seeds + len, sizeof(seeds) - len, "%s127.0.0.1:%d",
		         i ? "," : "", C.node[i].port);
	}
	kvs_client_options_init(&o);
	o.seeds = seeds;
	o.request_timeout_ms = 3000;
	ck_assert_msg(kvs_client_open(&c, &o, err) == KVS_OK, "open: %s", err);
	return c;
}

/* A counter from a node's /metrics (tc_metric), which must be there. */
static long metric(int node, const char *name)
{
	long long v = tc_metric(&C, node, name);

	ck_assert_int_ge(v, 0);
	return (long)v;
}

static long forwarded_everywhere(void)
{
	long sum = 0;

	for (int i = 0; i < C.n; i++)
		if (C.node[i].pid > 0)
			sum += metric(i, "kvshard_forwarded_total");
	return sum;
}

static void put_ok(kvs_client *c, const char *key, const char *value)
{
	int rc = kvs_client_put(c, key, strlen(key), value, strlen(value),
	                        NULL, NULL);

	ck_assert_msg(rc == KVS_OK, "put %s: %s", key, kvs_strerror(rc));
}

static void get_is(kvs_client *c, const char *key, const char *want)
{
	void *v = NULL;
	size_t n = 0;
	int rc = kvs_client_get(c, key, strlen(key), &v, &n, NULL);

	if (want == NULL) {
		ck_assert_msg(rc == KVS_NOTFOUND, "get %s: %s", key,
		              kvs_strerror(rc));
		return;
	}
	ck_assert_msg(rc == KVS_OK, "get %s: %s", key, kvs_strerror(rc));
	ck_assert_uint_eq(n, strlen(want));
	if (n > 0)
		ck_assert_mem_eq(v, want, n);
	kvs_free(v);
}

START_TEST(requests_go_straight_to_the_owner)
{
	kvs_client *c;
	char key[32], u[256];
	struct tc_resp r;

	tc_start(&C, 3, "[cluster]\nreplication = 1\n");
	c = connect_all();
	ck_assert_uint_eq(kvs_client_epoch(c), 1);
	for (int i = 0; i < 60; i++) {
		snprintf(key, sizeof(key), "direct%d", i);
		put_ok(c, key, key);
	}
	for (int i = 0; i < 60; i++) {
		snprintf(key, sizeof(key), "direct%d", i);
		get_is(c, key, key);
		ck_assert_int_eq(kvs_client_exists(c, key, strlen(key), NULL),
		                 KVS_OK);
	}
	/* No node had to forward anything... */
	ck_assert_int_eq(forwarded_everywhere(), 0);
	/* ...and every node stores a share. */
	for (int i = 0; i < 3; i++)
		ck_assert_int_gt(metric(i, "kvshard_keys"), 5);
	/* The counter does see forwarding: ask each node for every key by
	 * hand, some must be forwarded. */
	for (int i = 0; i < 3; i++) {
		snprintf(u, sizeof(u), "%s/v1/kv/direct%d", C.node[0].url, i);
		r = tc_get(u, 200);
		tc_resp_free(&r);
	}
	ck_assert_int_gt(forwarded_everywhere(), 0);
	kvs_client_close(c);
}
END_TEST

START_TEST(fails_over_to_the_next_owner)
{
	char seeds[128], err[KVS_ERRBUF_SIZE], key[32];
	kvs_client_options o;
	kvs_client *c;

	tc_start(&C, 3, NULL); /* N=3 W=2 R=2 */
	c = connect_all();
	for (int i = 0; i < 40; i++) {
		snprintf(key, sizeof(key), "fo%d", i);
		put_ok(c, key, key);
	}
	tc_stop_node(&C, 0, SIGKILL);
	/* Every key is still readable and writable, those whose primary
	 * was shard-1 included. */
	for (int i = 0; i < 40; i++) {
		snprintf(key, sizeof(key), "fo%d", i);
		get_is(c, key, key);
		put_ok(c, key, "after");
		get_is(c, key, "after");
	}
	kvs_client_close(c);
	/* A dead first seed is skipped at connection time. */
	snprintf(seeds, sizeof(seeds), "127.0.0.1:%d,127.0.0.1:%d",
	         C.node[0].port, C.node[1].port);
	kvs_client_options_init(&o);
	o.seeds = seeds;
	ck_assert_msg(kvs_client_open(&c, &o, err) == KVS_OK, "%s", err);
	get_is(c, "fo1", "after");
	kvs_client_close(c);
}
END_TEST

START_TEST(many_keys_per_call)
{
	enum { N = 300, MISSING = 10 };
	static char names[N + MISSING][24], vals[N][24];
	kvs_kv items[N];
	kvs_key keys[N + MISSING];
	kvs_key_result res[N + MISSING];
	kvs_client *c;

	tc_start(&C, 3, "[cluster]\nreplication = 1\n");
	c = connect_all();
	for (int i = 0; i < N + MISSING; i++) {
		snprintf(names[i], sizeof(names[i]), "%s%d",
		         i < N ? "m" : "missing", i);
		keys[i].key = names[i];
		keys[i].len = strlen(names[i]);
		if (i < N) {
			snprintf(vals[i], sizeof(vals[i]), "value %d", i);
			items[i].key = names[i];
			items[i].key_len = strlen(names[i]);
			items[i].value = vals[i];
			items[i].value_len = strlen(vals[i]);
		}
	}
	ck_assert_int_eq(kvs_client_mput(c, items, N, res), KVS_OK);
	for (int i = 0; i < N; i++) {
		ck_assert_msg(res[i].rc == KVS_OK, "mput %d: %s", i,
		              kvs_strerror(res[i].rc));
		ck_assert_uint_ne(res[i].stamp.hlc, 0);
	}
	ck_assert_int_eq(kvs_client_mget(c, keys, N + MISSING, res), KVS_OK);
	for (int i = 0; i < N + MISSING; i++) {
		if (i >= N) {
			ck_assert_int_eq(res[i].rc, KVS_NOTFOUND);
			continue;
		}
		ck_assert_msg(res[i].rc == KVS_OK, "mget %d: %s", i,
		              kvs_strerror(res[i].rc));
		ck_assert_uint_eq(res[i].value_len, strlen(vals[i]));
		ck_assert_mem_eq(res[i].value, vals[i], res[i].value_len);
	}
	kvs_client_results_free(res, N + MISSING);
	/* Grouped by owner: nothing was forwarded. */
	ck_assert_int_eq(forwarded_everywhere(), 0);
	/* A shard down: its keys fail alone (N=1), others still come. */
	tc_stop_node(&C, 2, SIGKILL);
	ck_assert_int_eq(kvs_client_mget(c, keys, N, res), KVS_OK);
	{
		int ok = 0, down = 0;

		for (int i = 0; i < N; i++) {
			if (res[i].rc == KVS_OK)
				ok++;
			else if (res[i].rc == KVS_ECONNECT ||
			         res[i].rc == KVS_EUNAVAIL)
				down++;
		}
		ck_assert_int_eq(ok + down, N);
		ck_assert_int_gt(ok, N / 2);
		ck_assert_int_gt(down, 0);
	}
	kvs_client_results_free(res, N);
	kvs_client_close(c);
}
END_TEST

struct collected {
	char keys[400][24];
	int n;
	int values_ok;
};

static int collect(void *ud, const kvs_record *rec)
{
	struct collected *k = ud;

	ck_assert_int_lt(k->n, 400);
	ck_assert_uint_lt(rec->key_len, 24);
	memcpy(k->keys[k->n], rec->key, rec->key_len);
	k->keys[k->n][rec->key_len] = '\0';
	/* Values were written as "v" + key. */
	if (rec->value != NULL &&
	    (rec->value_len != rec->key_len + 1 ||
	     memcmp((const char *)rec->value + 1, rec->key, rec->key_len) != 0))
		k->values_ok = 0;
	k->n++;
	return 0;
}

static void scan_all(kvs_client *c, const char *prefix, size_t limit,
                     int values, struct collected *out, int *pages)
{
	kvs_client_scan_options o;
	void *next = NULL;
	size_t next_len = 0;

	memset(out, 0, sizeof(*out));
	out->values_ok = 1;
	memset(&o, 0, sizeof(o));
	o.prefix = prefix;
	o.prefix_len = strlen(prefix);
	o.limit = limit;
	o.values = values;
	*pages = 0;
	do {
		ck_assert_int_eq(kvs_client_scan(c, &o, collect, out, &next,
		                                 &next_len),
		                 KVS_OK);
		kvs_free((void *)o.start_after);
		o.start_after = next;
		o.start_after_len = next_len;
		ck_assert_int_lt(++*pages, 200);
	} while (next != NULL);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void check_scans(void)
{
	static char want[300][24];
	struct collected got;
	kvs_client *c = connect_all();
	int n = 0, pages, live = 0;

	for (int i = 0; i < 120; i++) {
		char key[24], val[32];

		snprintf(key, sizeof(key), "%s/%03d", i % 3 ? "s" : "t", i);
		snprintf(val, sizeof(val), "v%s", key);
		put_ok(c, key, val);
		if (key[0] == 's' && i % 10 != 1)
			snprintf(want[n++], sizeof(want[0]), "%s", key);
		if (key[0] == 't' || i % 10 != 1)
			live++;
	}
	for (int i = 1; i < 120; i += 10) { /* deleted keys disappear */
		char key[24];

		snprintf(key, sizeof(key), "s/%03d", i);
		ck_assert_int_eq(kvs_client_delete(c, key, strlen(key), NULL, NULL),
		                 KVS_OK);
	}
	qsort(want, (size_t)n, sizeof(want[0]), cmp_str);
	/* Small pages: continuation across every shard. */
	scan_all(c, "s/", 7, 1, &got, &pages);
	ck_assert_int_eq(got.n, n);
	for (int i = 0; i < n; i++)
		ck_assert_str_eq(got.keys[i], want[i]);
	ck_assert(got.values_ok);
	ck_assert_int_ge(pages, n / 7);
	/* One page, keys only. */
	scan_all(c, "s/", 0, 0, &got, &pages);
	ck_assert_int_eq(got.n, n);
	ck_assert_int_eq(pages, 1);
	/* The whole keyspace: t/ keys too, still in order. */
	scan_all(c, "", 11, 0, &got, &pages);
	ck_assert_int_eq(got.n, live);
	for (int i = 1; i < got.n; i++)
		ck_assert_int_lt(strcmp(got.keys[i - 1], got.keys[i]), 0);
	scan_all(c, "nothing", 5, 0, &got, &pages);
	ck_assert_int_eq(got.n, 0);
	kvs_client_close(c);
}

START_TEST(scans_in_order_with_continuation_one_replica)
{
	tc_start(&C, 3, "[cluster]\nreplication = 1\n");
	check_scans();
}
END_TEST

START_TEST(scans_in_order_with_continuation_replicated)
{
	tc_start(&C, 4, "[cluster]\nreplication = 2\n");
	check_scans();
}
END_TEST

START_TEST(conditions_and_binary_data)
{
	kvs_client *c;
	kvs_stamp v1, v2, seen;
	kvs_write_options o;
	static const char bkey[] = {'b', 0, 'k', (char)0xff};
	size_t big_len = 1 << 20;
	char *big = malloc(big_len);
	void *v;
	size_t n;

	tc_start(&C, 3, NULL);
	c = connect_all();
	ck_assert_int_eq(kvs_client_put(c, "c", 1, "1", 1, NULL, &v1), KVS_OK);
	ck_assert_int_eq(kvs_client_exists(c, "c", 1, &seen), KVS_OK);
	ck_assert_int_eq(kvs_stamp_cmp(&seen, &v1), 0);
	ck_assert_int_eq(kvs_client_cas(c, "c", 1, &v1, "2", 1, &v2), KVS_OK);
	ck_assert_int_gt(kvs_stamp_cmp(&v2, &v1), 0);
	ck_assert_int_eq(kvs_client_cas(c, "c", 1, &v1, "3", 1, NULL),
	                 KVS_ECONFLICT);
	memset(&o, 0, sizeof(o));
	o.flags = KVS_WRITE_IF_ABSENT;
	ck_assert_int_eq(kvs_client_put(c, "c", 1, "4", 1, &o, NULL), KVS_EEXISTS);
	o.flags = KVS_WRITE_IF_STAMP;
	o.expect = v1;
	ck_assert_int_eq(kvs_client_delete(c, "c", 1, &o, NULL), KVS_ECONFLICT);
	o.expect = v2;
	ck_assert_int_eq(kvs_client_delete(c, "c", 1, &o, NULL), KVS_OK);
	ck_assert_int_eq(kvs_client_exists(c, "c", 1, NULL), KVS_NOTFOUND);
	get_is(c, "c", NULL);
	/* Binary keys and values, an empty value, a 1 MiB value. */
	for (size_t i = 0; i < big_len; i++)
		big[i] = (char)(i * 13);
	ck_assert_int_eq(kvs_client_put(c, bkey, sizeof(bkey), big, big_len,
	                                NULL, NULL),
	                 KVS_OK);
	ck_assert_int_eq(kvs_client_get(c, bkey, sizeof(bkey), &v, &n, NULL),
	                 KVS_OK);
	ck_assert_uint_eq(n, big_len);
	ck_assert_mem_eq(v, big, big_len);
	kvs_free(v);
	ck_assert_int_eq(kvs_client_put(c, "empty", 5, NULL, 0, NULL, NULL),
	                 KVS_OK);
	get_is(c, "empty", "");
	/* Bad arguments and keys. */
	ck_assert_int_eq(kvs_client_put(c, "", 0, "x", 1, NULL, NULL),
	                 KVS_EKEYSIZE);
	memset(big, 'k', 600);
	ck_assert_int_eq(kvs_client_put(c, big, 600, "x", 1, NULL, NULL),
	                 KVS_EKEYSIZE);
	ck_assert_int_eq(kvs_client_get(c, "k", 1, NULL, &n, NULL), KVS_EINVAL);
	free(big);
	kvs_client_close(c);
}
END_TEST

struct raw_keys {
	unsigned char keys[16][8];
	size_t lens[16];
	int n;
};

static int collect_raw(void *ud, const kvs_record *rec)
{
	struct raw_keys *k = ud;

	ck_assert_int_lt(k->n, 16);
	ck_assert_uint_le(rec->key_len, 8);
	memcpy(k->keys[k->n], rec->key, rec->key_len);
	k->lens[k->n++] = rec->key_len;
	return 0;
}

/*
 * Keys are bytes: keys that start with or hold NUL bytes come back whole
 * from a scan, and the documented paging loop (start_after = next) walks
 * past them one page at a time instead of asking for the same page again.
 */
START_TEST(scans_page_through_keys_with_nul_bytes)
{
	static const unsigned char keys[][4] = {
		{0, 1}, {0, 2}, {0, 2, 0}, {'a', 0, 'b'}, {'a', 1}, {'b'},
	};
	static const size_t lens[] = {2, 2, 3, 3, 2, 1};
	kvs_client_scan_options o;
	struct raw_keys got;
	void *next = NULL;
	size_t next_len = 0;
	int pages = 0;
	kvs_client *c;

	tc_start(&C, 3, NULL);
	c = connect_all();
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
		ck_assert_int_eq(kvs_client_put(c, keys[i], lens[i], "v", 1, NULL,
		                                NULL),
		                 KVS_OK);
	memset(&got, 0, sizeof(got));
	memset(&o, 0, sizeof(o));
	o.limit = 1;
	do {
		ck_assert_int_eq(kvs_client_scan(c, &o, collect_raw, &got, &next,
		                                 &next_len),
		                 KVS_OK);
		kvs_free((void *)o.start_after);
		o.start_after = next;
		o.start_after_len = next_len;
		ck_assert_msg(++pages < 20, "the scan does not advance");
	} while (next != NULL);
	ck_assert_int_eq(got.n, 6);
	for (int i = 0; i < 6; i++) {
		ck_assert_uint_eq(got.lens[i], lens[i]);
		ck_assert_mem_eq(got.keys[i], keys[i], lens[i]);
	}
	kvs_client_close(c);
}
END_TEST

START_TEST(opening)
{
	kvs_client_options o;
	kvs_client *c = (kvs_client *)1;
	char err[KVS_ERRBUF_SIZE], seeds[64];

	kvs_client_options_init(&o);
	snprintf(seeds, sizeof(seeds), "127.0.0.1:%d", tc_free_port());
	o.seeds = seeds;
	o.connect_timeout_ms = 300;
	ck_assert_int_eq(kvs_client_open(&c, &o, err), KVS_ECONNECT);
	ck_assert_ptr_null(c);
	ck_assert_ptr_nonnull(strstr(err, seeds));
	o.seeds = "no-port-here";
	ck_assert_int_eq(kvs_client_open(&c, &o, err), KVS_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "no-port-here"));
	o.seeds = "";
	ck_assert_int_eq(kvs_client_open(&c, &o, err), KVS_EINVAL);

	/* From a config file, and from $KVSHARD_CLUSTER. */
	tc_start(&C, 2, NULL);
	o.seeds = NULL;
	o.config_path = C.config;
	ck_assert_msg(kvs_client_open(&c, &o, err) == KVS_OK, "%s", err);
	put_ok(c, "cfg", "yes");
	kvs_client_close(c);
	o.config_path = NULL;
	snprintf(seeds, sizeof(seeds), "127.0.0.1:%d", C.node[1].port);
	setenv("KVSHARD_CLUSTER", seeds, 1);
	ck_assert_msg(kvs_client_open(&c, &o, err) == KVS_OK, "%s", err);
	unsetenv("KVSHARD_CLUSTER");
	get_is(c, "cfg", "yes");
	ck_assert_int_eq(kvs_client_refresh(c), KVS_OK);
	kvs_client_close(c);
	kvs_client_close(NULL);
}
END_TEST

START_TEST(shard_status)
{
	kvs_shard_info *info;
	kvs_client *c;
	size_t n;

	tc_start(&C, 3, "[cluster]\nreplication = 1\n");
	c = connect_all();
	for (int i = 0; i < 30; i++) {
		char key[16];

		snprintf(key, sizeof(key), "st%d", i);
		put_ok(c, key, "x");
	}
	ck_assert_int_eq(kvs_client_shards(c, &info, &n), KVS_OK);
	ck_assert_uint_eq(n, 3);
	{
		uint64_t keys = 0;

		for (size_t i = 0; i < n; i++) {
			ck_assert_str_eq(info[i].name, C.node[i].name);
			ck_assert_int_eq(info[i].up, 1);
			ck_assert_uint_gt(info[i].store_bytes, 0);
			keys += info[i].keys;
		}
		ck_assert_uint_eq(keys, 30);
	}
	kvs_free(info);
	tc_stop_node(&C, 1, SIGTERM);
	ck_assert_int_eq(kvs_client_shards(c, &info, &n), KVS_OK);
	ck_assert_int_eq(info[0].up, 1);
	ck_assert_int_eq(info[1].up, 0);
	ck_assert_int_eq(info[2].up, 1);
	kvs_free(info);
	kvs_client_close(c);
}
END_TEST

START_TEST(tokens)
{
	kvs_client_options o;
	kvs_client *c = NULL;
	char err[KVS_ERRBUF_SIZE], seeds[64];

	tc_start(&C, 2, "[auth]\nclient_tokens = [\"t0k\"]\n"
	                "cluster_secret = \"sec\"\n");
	snprintf(seeds, sizeof(seeds), "127.0.0.1:%d", C.node[0].port);
	kvs_client_options_init(&o);
	o.seeds = seeds;
	ck_assert_int_eq(kvs_client_open(&c, &o, err), KVS_EAUTH);
	o.token = "t0k";
	ck_assert_msg(kvs_client_open(&c, &o, err) == KVS_OK, "%s", err);
	put_ok(c, "secret", "value");
	get_is(c, "secret", "value");
	kvs_client_close(c);
}
END_TEST

#define THREADS 8
#define PER_THREAD 60

static kvs_client *shared;

static void *worker(void *arg)
{
	int id = (int)(intptr_t)arg;

	for (int i = 0; i < PER_THREAD; i++) {
		char key[32], *v = NULL;
		size_t n;

		snprintf(key, sizeof(key), "th%d-%d", id, i);
		if (kvs_client_put(shared, key, strlen(key), key, strlen(key),
		                   NULL, NULL) != KVS_OK)
			return (void *)1;
		if (kvs_client_get(shared, key, strlen(key), (void **)&v, &n,
		                   NULL) != KVS_OK ||
		    n != strlen(key) || memcmp(v, key, n) != 0)
			return (void *)2;
		kvs_free(v);
	}
	return NULL;
}

START_TEST(one_handle_many_threads)
{
	pthread_t th[THREADS];
	void *ret;

	tc_start(&C, 3, NULL);
	shared = connect_all();
	for (int i = 0; i < THREADS; i++)
		pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
	for (int i = 0; i < THREADS; i++) {
		pthread_join(th[i], &ret);
		ck_assert_ptr_null(ret);
	}
	kvs_client_close(shared);
}
END_TEST

START_TEST(remote_example_runs)
{
	char seeds[64], out[8192];
	int fds[2], status;
	ssize_t n;
	size_t got = 0;
	pid_t pid;

	tc_start(&C, 3, NULL);
	snprintf(seeds, sizeof(seeds), "127.0.0.1:%d", C.node[2].port);
	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	if (pid == 0) {
		dup2(fds[1], STDOUT_FILENO);
		dup2(fds[1], STDERR_FILENO);
		close(fds[0]);
		execl(tu_build_path("examples/remote"), "remote", seeds,
		      (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	while (got + 1 < sizeof(out) &&
	       (n = read(fds[0], out + got, sizeof(out) - 1 - got)) > 0)
		got += (size_t)n;
	out[got] = '\0';
	close(fds[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s", out);
	ck_assert_ptr_nonnull(strstr(out, "example:greeting = hello"));
	ck_assert_ptr_nonnull(strstr(out, "example:k4 = k4"));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("client");
	TCase *tc = tcase_create("cluster");

	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_set_timeout(tc, 90);
	tcase_add_test(tc, requests_go_straight_to_the_owner);
	tcase_add_test(tc, fails_over_to_the_next_owner);
	tcase_add_test(tc, many_keys_per_call);
	tcase_add_test(tc, scans_in_order_with_continuation_one_replica);
	tcase_add_test(tc, scans_in_order_with_continuation_replicated);
	tcase_add_test(tc, conditions_and_binary_data);
	tcase_add_test(tc, scans_page_through_keys_with_nul_bytes);
	tcase_add_test(tc, opening);
	tcase_add_test(tc, shard_status);
	tcase_add_test(tc, tokens);
	tcase_add_test(tc, one_handle_many_threads);
	tcase_add_test(tc, remote_example_runs);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
