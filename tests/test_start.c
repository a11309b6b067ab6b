/*
 * test_start.c - ./start.sh as a user runs it: it reads the config as the
 * server does (TOML quoting and comments included), starts only the
 * shards that do not run, never stops a running cluster by being run
 * again, and stops what it started; a config with [coordination] gets a
 * private etcd, started once and stopped with the shards. It runs against the binaries already
 * built (KVS_SKIP_BUILD=1), with its pid files and the data in a
 * temporary directory.
 */
#include <check.h>
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cluster.h"
#include "testutil.h"

static char dir[512], run_dir[600], config[600];
static char env[128]; /* more of start.sh's environment */
static int port[2];
static const char *const names[2] = {"alpha", "beta"};

/* The pid start.sh recorded for shard name, or 0. */
static pid_t recorded_pid_of(const char *name)
{
	char path[700];
	FILE *f;
	long pid = 0;

	snprintf(path, sizeof(path), "%s/%s.pid", run_dir, name);
	f = fopen(path, "r");
	if (f == NULL)
		return 0;
	if (fscanf(f, "%ld", &pid) != 1)
		pid = 0;
	fclose(f);
	return (pid_t)pid;
}

/* The pid start.sh recorded for shard i (for etcd: -1), or 0. */
static pid_t recorded_pid(int i)
{
	return recorded_pid_of(i < 0 ? "etcd" : names[i]);
}

static pid_t added; /* a shard ./start.sh add started */

static void teardown(void)
{
	/* Whatever the test left running, stopped by its pid. */
	for (int i = -1; i < 2; i++) {
		pid_t pid = recorded_pid(i);

		if (pid > 0)
			kill(pid, SIGKILL);
	}
	if (added > 0)
		kill(added, SIGKILL);
	added = 0;
	tu_rmtree(dir);
}

/* Run ./start.sh with one argument (or none); its exit status, and its
 * output (stdout and stderr) in out. */
static int start_sh(const char *arg, char *out, size_t cap)
{
	char cmd[3072], build[1024];

	/* Both paths are static storage of testutil: copy one first. */
	snprintf(build, sizeof(build), "%s", tu_build_path(""));
	snprintf(cmd, sizeof(cmd),
	         "CONFIG='%s' RUN_DIR='%s' BUILD_DIR='%s' KVS_SKIP_BUILD=1 %s "
	         "'%s' %s 2>&1",
	         config, run_dir, build, env, tu_source_path("start.sh"),
	         arg ? arg : "");
	return tu_run_command(cmd, out, cap);
}

/* Does pid run (not gone, not a zombie nobody reaped yet)? */
static int runs(pid_t pid)
{
	char path[64], state = 'Z';
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return 0;
	if (fscanf(f, "%*d (%*[^)]) %c", &state) != 1)
		state = 'Z';
	fclose(f);
	return state != 'Z';
}

static int healthy(int i)
{
	char url[64];
	struct tc_resp r;
	int ok;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/health", port[i]);
	ok = tc_http("GET", url, NULL, 0, NULL, &r) == 0 && r.status == 200;
	tc_resp_free(&r);
	return ok;
}

static void setup_config(void)
{
	FILE *f;

	snprintf(dir, sizeof(dir), "%s", tu_mkdtemp());
	snprintf(run_dir, sizeof(run_dir), "%s/run", dir);
	snprintf(config, sizeof(config), "%s/cluster.toml", dir);
	port[0] = tc_free_port();
	do
		port[1] = tc_free_port();
	while (port[1] == port[0]);
	f = fopen(config, "w");
	ck_assert_ptr_nonnull(f);
	/* Single quotes, comments after values, a table between shards:
	 * TOML a line-based reader gets wrong. */
	fprintf(f,
	        "# two shards\n"
	        "[[shards]]\n"
	        "name = 'alpha'   # single quotes\n"
	        "idx = 0\n"
	        "address = '127.0.0.1:%d' # a comment after the value\n"
	        "\n"
	        "[cluster]\n"
	        "data_dir = \"%s/data\"  # data in the test's directory\n"
	        "\n"
	        "[[shards]]\n"
	        "name = \"beta\" # comment\n"
	        "idx = 1\n"
	        "address = \"127.0.0.1:%d\"\n",
	        port[0], dir, port[1]);
	ck_assert_int_eq(fclose(f), 0);
}

START_TEST(background_start_is_idempotent)
{
	char out[8192];
	pid_t first[2];

	setup_config();
	ck_assert_msg(start_sh("--background", out, sizeof(out)) == 0, "%s",
	              out);
	for (int i = 0; i < 2; i++) {
		ck_assert_msg(healthy(i), "%s does not answer: %s", names[i], out);
		first[i] = recorded_pid(i);
		ck_assert_int_gt(first[i], 0);
	}
	/* Again: nothing stops, nothing starts twice. */
	ck_assert_msg(start_sh("--background", out, sizeof(out)) == 0, "%s",
	              out);
	ck_assert_ptr_nonnull(strstr(out, "already running"));
	for (int i = 0; i < 2; i++) {
		ck_assert_msg(healthy(i), "%s stopped: %s", names[i], out);
		ck_assert_int_eq(recorded_pid(i), first[i]);
	}
	/* One shard dies: the next start brings back that one only. */
	kill(first[1], SIGKILL);
	ck_assert_msg(start_sh("--background", out, sizeof(out)) == 0, "%s",
	              out);
	ck_assert(healthy(0) && healthy(1));
	ck_assert_int_eq(recorded_pid(0), first[0]);
	ck_assert_int_ne(recorded_pid(1), first[1]);
	ck_assert_int_eq(start_sh("status", out, sizeof(out)), 0);
	ck_assert_msg(strstr(out, "alpha  127.0.0.1") != NULL &&
	                      strstr(out, "beta  127.0.0.1") != NULL,
	              "status: %s", out);
	ck_assert_ptr_null(strstr(out, "stopped"));
	/* The foreground form refuses to run a second cluster. */
	ck_assert_int_eq(start_sh("", out, sizeof(out)), 1);
	ck_assert(healthy(0) && healthy(1));
	ck_assert_int_eq(start_sh("stop", out, sizeof(out)), 0);
	ck_assert(!healthy(0) && !healthy(1));
	ck_assert_int_eq(start_sh("status", out, sizeof(out)), 0);
	ck_assert_ptr_nonnull(strstr(out, "alpha  127.0.0.1"));
	ck_assert_ptr_nonnull(strstr(out, "stopped"));
}
END_TEST

/* The local cluster gets a secret of its own: its shards talk to each
 * other with it, a client without it is no peer, and it survives a
 * restart. */
START_TEST(the_local_cluster_has_a_secret)
{
	char out[8192], path[700], url[128];
	char *secret, *again, *log;
	struct stat st;
	struct tc_resp r;

	setup_config();
	ck_assert_msg(start_sh("--background", out, sizeof(out)) == 0, "%s",
	              out);
	snprintf(path, sizeof(path), "%s/cluster-secret", run_dir);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	secret = tu_read_file(path);
	ck_assert_ptr_nonnull(secret);
	ck_assert_uint_eq(strlen(secret), 64);
	ck_assert_uint_eq(strspn(secret, "0123456789abcdef"), 64);
	/* Replication between the shards works... */
	snprintf(url, sizeof(url),
	         "http://127.0.0.1:%d/store?key=s&value=replicated", port[0]);
	r = tc_get(url, 200);
	tc_resp_free(&r);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/retrieve?key=s",
	         port[1]);
	r = tc_get(url, 200);
	ck_assert_str_eq(r.body, "replicated");
	tc_resp_free(&r);
	/* ...and a client is no peer. */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/internal/ops", port[1]);
	ck_assert_int_eq(tc_http("POST", url, "x", 1, NULL, &r), 0);
	ck_assert_int_eq(r.status, 403);
	tc_resp_free(&r);
	snprintf(path, sizeof(path), "%s/%s.log", run_dir, names[0]);
	log = tu_read_file(path);
	ck_assert_ptr_nonnull(log);
	ck_assert_ptr_null(strstr(log, "SECURITY"));
	free(log);
	/* The same secret after a restart. */
	ck_assert_int_eq(start_sh("stop", out, sizeof(out)), 0);
	ck_assert_msg(start_sh("--background", out, sizeof(out)) == 0, "%s",
	              out);
	snprintf(path, sizeof(path), "%s/cluster-secret", run_dir);
	again = tu_read_file(path);
	ck_assert_ptr_nonnull(again);
	ck_assert_str_eq(again, secret);
	free(again);
	free(secret);
	ck_assert_int_eq(start_sh("stop", out, sizeof(out)), 0);
}
END_TEST

/* A config with [coordination]: start.sh starts a private etcd on its
 * endpoint before the shards (which seed their topology there), once,
 * and stops it with them. */
START_TEST(a_coordinated_config_gets_a_private_etcd)
{
	char out[8192], path[700], *log;
	int etcd_port = tc_free_port(), peer_port = tc_free_port();
	pid_t etcd;
	FILE *f;

	setup_config();
	snprintf(env, sizeof(env), "ETCD_PEER_PORT=%d", peer_port);
	f = fopen(config, "a");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "[coordination]\netcd = [\"127.0.0.1:%d\"]\n", etcd_port);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_msg(start_sh("--background", out, sizeof(out)) == 0, "%s",
	              out);
	ck_assert_msg(strstr(out, "etcd is up") != NULL, "%s", out);
	etcd = recorded_pid(-1);
	ck_assert_int_gt(etcd, 0);
	ck_assert(healthy(0) && healthy(1));
	/* The shards agreed on their topology in that etcd. */
	snprintf(path, sizeof(path), "%s/%s.log", run_dir, names[0]);
	log = tu_read_file(path);
	snprintf(path, sizeof(path), "%s/%s.log", run_dir, names[1]);
	{
		char *log1 = tu_read_file(path);

		ck_assert_msg(log != NULL && log1 != NULL &&
		                      (strstr(log, "seeded it") != NULL ||
		                       strstr(log1, "seeded it") != NULL),
		              "no shard seeded the topology: %s", out);
		free(log1);
	}
	free(log);
	ck_assert_int_eq(start_sh("status", out, sizeof(out)), 0);
	ck_assert_msg(strstr(out, "etcd  127.0.0.1") != NULL, "status: %s",
	              out);
	/* Again: the etcd that answers is used, not started twice. */
	ck_assert_msg(start_sh("--background", out, sizeof(out)) == 0, "%s",
	              out);
	ck_assert_int_eq(recorded_pid(-1), etcd);
	ck_assert_int_eq(start_sh("stop", out, sizeof(out)), 0);
	ck_assert_msg(strstr(out, "stopped etcd") != NULL, "%s", out);
	ck_assert(!healthy(0) && !healthy(1));
	ck_assert(!runs(etcd));
	env[0] = '\0';
}
END_TEST

/* ./start.sh add: one more shard, started and added to the running
 * cluster; its share moves to it, and stop stops it with the others. */
START_TEST(a_shard_is_added_with_start_sh)
{
	char out[8192], url[128];
	int etcd_port = tc_free_port(), peer_port = tc_free_port();
	uint64_t deadline;
	struct tc_resp r;
	FILE *f;

	setup_config();
	snprintf(env, sizeof(env), "ETCD_PEER_PORT=%d", peer_port);
	f = fopen(config, "a");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "[coordination]\netcd = [\"127.0.0.1:%d\"]\nmove_grace_s = 1\n",
	        etcd_port);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_msg(start_sh("--background", out, sizeof(out)) == 0, "%s",
	              out);
	for (int k = 0; k < 50; k++) {
		snprintf(url, sizeof(url),
		         "http://127.0.0.1:%d/store?key=k%d&value=v%d", port[0], k,
		         k);
		r = tc_get(url, 200);
		tc_resp_free(&r);
	}
	ck_assert_int_ne(start_sh("add", out, sizeof(out)), 0);
	ck_assert_int_ne(start_sh("add alpha", out, sizeof(out)), 0);
	ck_assert_msg(strstr(out, "a shard named alpha") != NULL, "%s", out);
	/* On a port known free: the next one after the shards' (start.sh's
	 * own choice) may be a client socket's here, where the test's ports
	 * are ephemeral ones. */
	snprintf(url, sizeof(url), "add gamma 1 127.0.0.1:%d", tc_free_port());
	ck_assert_msg(start_sh(url, out, sizeof(out)) == 0, "%s", out);
	ck_assert_msg(strstr(out, "added shard gamma: epoch 2") != NULL &&
	                      strstr(out, "gamma is up on") != NULL,
	              "%s", out);
	added = recorded_pid_of("gamma");
	ck_assert_int_gt(added, 0);
	/* The move ends. */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/cluster/rebalance",
	         port[0]);
	deadline = tu_now_ms() + 30000;
	for (;;) {
		r = tc_get(url, 200);
		if (strstr(r.body, "\"state\":\"idle\"") != NULL &&
		    strstr(r.body, "\"epoch\":2,") == NULL) {
			tc_resp_free(&r);
			break;
		}
		ck_assert_msg(tu_now_ms() < deadline, "still moving after 30 s: %s",
		              r.body);
		tc_resp_free(&r);
		usleep(200 * 1000);
	}
	ck_assert_int_eq(start_sh("status", out, sizeof(out)), 0);
	ck_assert_msg(strstr(out, "gamma  127.0.0.1:") != NULL &&
	                      strstr(out, "running") != NULL,
	              "status: %s", out);
	/* Every key through the new shard. */
	{
		const char *p = strstr(out, "gamma  127.0.0.1:");
		int gport = atoi(p + strlen("gamma  127.0.0.1:"));

		for (int k = 0; k < 50; k++) {
			snprintf(url, sizeof(url),
			         "http://127.0.0.1:%d/retrieve?key=k%d", gport, k);
			r = tc_get(url, 200);
			tc_resp_free(&r);
		}
	}
	ck_assert_int_eq(start_sh("stop", out, sizeof(out)), 0);
	ck_assert_msg(strstr(out, "stopped gamma") != NULL, "%s", out);
	ck_assert(!runs(added));
	added = 0;
	env[0] = '\0';
}
END_TEST

START_TEST(a_bad_config_is_reported)
{
	char out[8192];
	FILE *f;

	setup_config();
	f = fopen(config, "a");
	ck_assert_ptr_nonnull(f);
	fputs("[clutser]\n", f);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_ne(start_sh("--background", out, sizeof(out)), 0);
	ck_assert_msg(strstr(out, "cluster.toml:") != NULL &&
	                      strstr(out, "clutser") != NULL,
	              "no file:line:column reason: %s", out);
	ck_assert(!healthy(0) && !healthy(1));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("start");
	TCase *tc = tcase_create("script");
	SRunner *sr;
	int failed;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_set_timeout(tc, 90);
	tcase_add_test(tc, background_start_is_idempotent);
	tcase_add_test(tc, the_local_cluster_has_a_secret);
	tcase_add_test(tc, a_coordinated_config_gets_a_private_etcd);
	tcase_add_test(tc, a_shard_is_added_with_start_sh);
	tcase_add_test(tc, a_bad_config_is_reported);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	curl_global_cleanup();
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
