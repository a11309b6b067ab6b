/*
 * test_cli.c - the kvshard command-line client as a user meets it: the
 * built program is run against real clusters, and what it prints on
 * stdout and stderr and its exit status are checked for every command,
 * --json, the options, usage errors, and a cluster that cannot be
 * reached. Every run of the program is bounded in time and killed by its
 * pid if it overruns.
 */
#include <arpa/inet.h>
#include <check.h>
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base64.h"
#include "cluster.h"
#include "kvshard.h"
#include "testutil.h"

/* The CLI's exit statuses, as its --help documents them. */
#define EXIT_NOT_FOUND 1
#define EXIT_USAGE 2
#define EXIT_CLUSTER 3
#define EXIT_ERROR 4

/* Bound on one run of the program. */
#define RUN_TIMEOUT_MS 20000
#define POLL_MS 100
#define MAX_ARGS 32
/* Slack allowed over a --timeout for start-up and scheduling. */
#define TIMEOUT_MARGIN_MS 1500
#define BIG_VALUE (1u << 20)

static struct tc_cluster C;

/* KVSHARD_CLUSTER for the runs that follow; NULL leaves it unset. */
static const char *cluster_env;

static void teardown(void)
{
	tc_stop(&C);
	cluster_env = NULL;
}

/* What one run of the program did. */
struct run {
	int code; /* exit status; -1 when killed by a signal */
	char *out;
	size_t out_len;
	char *err;
	size_t err_len;
	uint64_t ms;
};

static void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
	memset(r, 0, sizeof(*r));
}

/* Append what fd has to read to *buf; returns 0 at end of file. */
static int drain(int fd, char **buf, size_t *len, size_t *cap)
{
	char chunk[65536];
	ssize_t n = read(fd, chunk, sizeof(chunk));

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 1;
	if (n <= 0)
		return 0;
	if (*len + (size_t)n + 1 > *cap) {
		size_t ncap = *cap ? *cap : 4096;

		while (ncap < *len + (size_t)n + 1)
			ncap *= 2;
		*buf = realloc(*buf, ncap);
		ck_assert_ptr_nonnull(*buf);
		*cap = ncap;
	}
	memcpy(*buf + *len, chunk, (size_t)n);
	*len += (size_t)n;
	(*buf)[*len] = '\0';
	return 1;
}

/*
 * Run the CLI with argv (argv[0] included, NULL-terminated), feeding it
 * in (len bytes; NULL: an empty stdin) and collecting its output.
 */
static void run_argv(struct run *r, const void *in, size_t in_len,
                     char *const *argv)
{
	const char *prog = tu_build_path("server/kvshard");
	int in_fd[2], out_fd[2], err_fd[2], status = 0;
	size_t out_cap = 0, err_cap = 0, fed = 0;
	uint64_t t0 = tu_now_ms(), deadline = t0 + RUN_TIMEOUT_MS;
	int out_open = 1, err_open = 1;
	pid_t pid;

	memset(r, 0, sizeof(*r));
	ck_assert_int_eq(pipe2(in_fd, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(out_fd, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(err_fd, O_CLOEXEC), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(in_fd[0], STDIN_FILENO);
		dup2(out_fd[1], STDOUT_FILENO);
		dup2(err_fd[1], STDERR_FILENO);
		signal(SIGPIPE, SIG_DFL);
		if (cluster_env != NULL)
			setenv("KVSHARD_CLUSTER", cluster_env, 1);
		else
			unsetenv("KVSHARD_CLUSTER");
		execv(prog, argv);
		_exit(127);
	}
	close(in_fd[0]);
	close(out_fd[1]);
	close(err_fd[1]);
	fcntl(in_fd[1], F_SETFL, fcntl(in_fd[1], F_GETFL) | O_NONBLOCK);
	if (in == NULL || in_len == 0) {
		close(in_fd[1]);
		in_fd[1] = -1;
	}
	while (out_open || err_open) {
		struct pollfd p[3] = {
			{out_open ? out_fd[0] : -1, POLLIN, 0},
			{err_open ? err_fd[0] : -1, POLLIN, 0},
			{in_fd[1], POLLOUT, 0},
		};

		if (tu_now_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			ck_abort_msg("kvshard %s did not finish within %d ms",
			             argv[1] ? argv[1] : "", RUN_TIMEOUT_MS);
		}
		if (poll(p, 3, POLL_MS) < 0)
			continue;
		if (p[0].revents != 0)
			out_open = drain(out_fd[0], &r->out, &r->out_len,
			                 &out_cap);
		if (p[1].revents != 0)
			err_open = drain(err_fd[0], &r->err, &r->err_len,
			                 &err_cap);
		if (p[2].revents & POLLOUT) {
			ssize_t n = write(in_fd[1], (const char *)in + fed,
			                  in_len - fed);

			if (n > 0)
				fed += (size_t)n;
		}
		if (in_fd[1] >= 0 &&
		    (fed == in_len || (p[2].revents & (POLLERR | POLLHUP)))) {
			close(in_fd[1]);
			in_fd[1] = -1;
		}
	}
	if (in_fd[1] >= 0)
		close(in_fd[1]);
	close(out_fd[0]);
	close(err_fd[0]);
	while (waitpid(pid, &status, WNOHANG) != pid) {
		if (tu_now_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			ck_abort_msg("kvshard did not exit within %d ms",
			             RUN_TIMEOUT_MS);
		}
		usleep(1000);
	}
	r->ms = tu_now_ms() - t0;
	r->code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	if (r->out == NULL)
		r->out = calloc(1, 1);
	if (r->err == NULL)
		r->err = calloc(1, 1);
	ck_assert_ptr_nonnull(r->out);
	ck_assert_ptr_nonnull(r->err);
}

/* Collect a NULL-terminated list of arguments after "kvshard". */
static void collect_args(char **argv, const char *first, va_list ap)
{
	int n = 0;

	argv[n++] = (char *)"kvshard";
	for (const char *a = first; a != NULL; a = va_arg(ap, const char *)) {
		ck_assert_int_lt(n, MAX_ARGS - 1);
		argv[n++] = (char *)a;
	}
	argv[n] = NULL;
}

/* Run kvshard with the arguments that follow (NULL-terminated). */
static struct run cli(const char *first, ...)
{
	char *argv[MAX_ARGS];
	struct run r;
	va_list ap;

	va_start(ap, first);
	collect_args(argv, first, ap);
	va_end(ap);
	run_argv(&r, NULL, 0, argv);
	return r;
}

/* The same with len bytes of in as standard input. */
static struct run cli_stdin(const void *in, size_t len, const char *first,
                            ...)
{
	char *argv[MAX_ARGS];
	struct run r;
	va_list ap;

	va_start(ap, first);
	collect_args(argv, first, ap);
	va_end(ap);
	run_argv(&r, in, len, argv);
	return r;
}

/* "127.0.0.1:port" of node i of C (four rotating buffers). */
static const char *seed(int i)
{
	static char buf[4][32];
	static int next;
	char *s = buf[next++ % 4];

	snprintf(s, sizeof(buf[0]), "127.0.0.1:%d", C.node[i].port);
	return s;
}

/* Every node of C, comma-separated. */
static const char *all_seeds(void)
{
	static char buf[TC_MAX_NODES * 32];
	size_t len = 0;

	buf[0] = '\0';
	for (int i = 0; i < C.n; i++)
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%s",
		                        i ? "," : "", seed(i));
	return buf;
}

/* Succeeded, with nothing on stderr. */
static void expect_ok(const struct run *r)
{
	ck_assert_msg(r->code == 0, "exit %d, stderr: %s", r->code, r->err);
	ck_assert_msg(r->err_len == 0, "stderr: %s", r->err);
}

/* Failed with code, nothing on stdout, one "kvshard: " line on stderr
 * holding want (when not NULL). */
static void expect_error(const struct run *r, int code, const char *want)
{
	ck_assert_msg(r->code == code, "exit %d, wanted %d; stderr: %s",
	              r->code, code, r->err);
	ck_assert_msg(r->out_len == 0, "stdout: %s", r->out);
	ck_assert_msg(strncmp(r->err, "kvshard: ", 9) == 0, "stderr: %s",
	              r->err);
	ck_assert_msg(r->err_len > 0 && r->err[r->err_len - 1] == '\n' &&
	                      strchr(r->err, '\n') == r->err + r->err_len - 1,
	              "not one line: %s", r->err);
	if (want != NULL)
		ck_assert_msg(strstr(r->err, want) != NULL, "'%s' not in: %s",
		              want, r->err);
}

/* stdout is exactly these bytes. */
static void expect_out(const struct run *r, const void *data, size_t len)
{
	expect_ok(r);
	ck_assert_msg(r->out_len == len, "stdout has %zu bytes, wanted %zu: %s",
	              r->out_len, len, r->out);
	ck_assert_mem_eq(r->out, data, len);
}

/* stdout is one JSON document (whitespace around it allowed). */
static cJSON *parse_json(const struct run *r)
{
	const char *end = NULL;
	cJSON *doc;

	expect_ok(r);
	ck_assert_uint_eq(strlen(r->out), r->out_len);
	doc = cJSON_ParseWithOpts(r->out, &end, 0);
	ck_assert_msg(doc != NULL, "not JSON: %s", r->out);
	while (*end == ' ' || *end == '\n')
		end++;
	ck_assert_msg(*end == '\0', "more after the document: %s", end);
	return doc;
}

static const char *json_str(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

	ck_assert_msg(cJSON_IsString(v), "no string \"%s\"", name);
	return v->valuestring;
}

/* Decode the base64 string field name of o into a malloc'ed buffer. */
static unsigned char *json_b64(const cJSON *o, const char *name, size_t *len)
{
	const char *text = json_str(o, name);
	unsigned char *out = malloc(strlen(text) * 3 / 4 + 3);

	ck_assert_ptr_nonnull(out);
	ck_assert_int_eq(kvs__b64_decode(text, strlen(text), out, len), 0);
	return out;
}

static kvs_stamp parse_stamp(const char *text, size_t len)
{
	kvs_stamp s;

	ck_assert_msg(kvs_stamp_parse(&s, text, len) == KVS_OK,
	              "not a version: %.*s", (int)len, text);
	return s;
}

/* put's text output: a version and a newline. */
static kvs_stamp put_version(const struct run *r)
{
	expect_ok(r);
	ck_assert_msg(r->out_len > 1 && r->out[r->out_len - 1] == '\n',
	              "stdout: %s", r->out);
	return parse_stamp(r->out, r->out_len - 1);
}

static const char *key_owned_by(int owner, const char *prefix)
{
	return tc_key_owned_by(&C, owner, prefix);
}

/* Store a value over HTTP (escaped_key is already percent-encoded). */
static void http_put(int node, const char *escaped_key, const void *value,
                     size_t len)
{
	struct tc_resp r;
	char url[512];

	snprintf(url, sizeof(url), "%s/v1/kv/%s", C.node[node].url,
	         escaped_key);
	ck_assert_int_eq(tc_http("PUT", url, value, len, NULL, &r), 0);
	ck_assert_msg(r.status == 200, "PUT %s: %ld %s", url, r.status, r.body);
	tc_resp_free(&r);
}

/* ------------------------------------------------------------------ */

START_TEST(put_and_get_through_every_node)
{
	struct run r;
	kvs_stamp first, second;

	tc_start(&C, 3, NULL);
	for (int via = 0; via < 3; via++) {
		char key[16], value[32];

		snprintf(key, sizeof(key), "k%d", via);
		snprintf(value, sizeof(value), "value %d, caf\xc3\xa9", via);
		r = cli("--cluster", seed(via), "put", key, value, NULL);
		put_version(&r);
		run_free(&r);
		for (int from = 0; from < 3; from++) {
			r = cli("--cluster", seed(from), "get", key, NULL);
			expect_out(&r, value, strlen(value));
			run_free(&r);
		}
	}
	/* Global options after the command, and a config file as the way
	 * in. */
	r = cli("get", "k0", "--cluster", seed(2), NULL);
	expect_out(&r, "value 0, caf\xc3\xa9", strlen("value 0, caf\xc3\xa9"));
	run_free(&r);
	r = cli("--config", C.config, "get", "k1", NULL);
	expect_out(&r, "value 1, caf\xc3\xa9", strlen("value 1, caf\xc3\xa9"));
	run_free(&r);
	/* A new write has a newer version. */
	r = cli("--cluster", all_seeds(), "put", "v", "one", NULL);
	first = put_version(&r);
	run_free(&r);
	r = cli("--cluster", all_seeds(), "put", "v", "two", NULL);
	second = put_version(&r);
	run_free(&r);
	ck_assert_int_gt(kvs_stamp_cmp(&second, &first), 0);
	r = cli("--cluster", seed(1), "get", "v", NULL);
	expect_out(&r, "two", 3);
	run_free(&r);
	/* An empty value is a value; "--" lets arguments start with '-'. */
	r = cli("--cluster", seed(0), "put", "empty", "", NULL);
	put_version(&r);
	run_free(&r);
	r = cli("--cluster", seed(1), "get", "empty", NULL);
	expect_out(&r, "", 0);
	run_free(&r);
	r = cli("--cluster", seed(0), "put", "--", "-dash", "-v", NULL);
	put_version(&r);
	run_free(&r);
	r = cli("--cluster", seed(2), "get", "--", "-dash", NULL);
	expect_out(&r, "-v", 2);
	run_free(&r);
}
END_TEST

START_TEST(missing_key_exits_1)
{
	struct run r;

	tc_start(&C, 3, NULL);
	for (int from = 0; from < 3; from++) {
		r = cli("--cluster", seed(from), "get", "never-stored", NULL);
		expect_error(&r, EXIT_NOT_FOUND, "never-stored");
		ck_assert_ptr_nonnull(strstr(r.err, "not found"));
		run_free(&r);
	}
	r = cli("--cluster", seed(0), "--json", "get", "never-stored", NULL);
	expect_error(&r, EXIT_NOT_FOUND, "not found");
	run_free(&r);
}
END_TEST

START_TEST(binary_values_from_stdin)
{
	static const unsigned char bin[] = {0, 1, 2, 0, 255, 254, '\n', 0, 'x'};
	unsigned char *big = malloc(BIG_VALUE), *got;
	struct tc_resp h;
	struct run r;
	cJSON *doc;
	size_t len;
	char url[256];

	ck_assert_ptr_nonnull(big);
	for (size_t i = 0; i < BIG_VALUE; i++)
		big[i] = (unsigned char)(i * 131 + (i >> 9));
	big[0] = 0;
	big[4097] = 0;
	big[BIG_VALUE - 1] = 0;
	tc_start(&C, 3, "[cluster]\nreplication = 1\n");
	r = cli_stdin(bin, sizeof(bin), "--cluster", seed(0), "put", "bin", "-",
	              NULL);
	put_version(&r);
	run_free(&r);
	r = cli_stdin(big, BIG_VALUE, "--cluster", seed(1), "put", "big", "-",
	              NULL);
	put_version(&r);
	run_free(&r);
	for (int from = 0; from < 3; from++) {
		r = cli("--cluster", seed(from), "get", "bin", NULL);
		expect_out(&r, bin, sizeof(bin));
		run_free(&r);
		r = cli("--cluster", seed(from), "get", "big", NULL);
		expect_out(&r, big, BIG_VALUE);
		run_free(&r);
	}
	/* What the cluster holds is the bytes themselves. */
	snprintf(url, sizeof(url), "%s/v1/kv/big", C.node[2].url);
	h = tc_get(url, 200);
	ck_assert_uint_eq(h.len, BIG_VALUE);
	ck_assert_mem_eq(h.body, big, BIG_VALUE);
	tc_resp_free(&h);
	/* --json gives binary values in base64. */
	r = cli("--cluster", seed(2), "get", "big", "--json", NULL);
	doc = parse_json(&r);
	ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(doc, "value"));
	got = json_b64(doc, "value_b64", &len);
	ck_assert_uint_eq(len, BIG_VALUE);
	ck_assert_mem_eq(got, big, BIG_VALUE);
	free(got);
	cJSON_Delete(doc);
	run_free(&r);
	/* An empty stdin stores an empty value. */
	r = cli_stdin(NULL, 0, "--cluster", seed(0), "put", "bin", "-", NULL);
	put_version(&r);
	run_free(&r);
	r = cli("--cluster", seed(0), "get", "bin", NULL);
	expect_out(&r, "", 0);
	run_free(&r);
	free(big);
}
END_TEST

START_TEST(del_then_get_exits_1)
{
	struct run r;
	cJSON *doc;
	kvs_stamp put_at, del_at;

	tc_start(&C, 3, NULL);
	r = cli("--cluster", seed(0), "put", "gone", "soon", NULL);
	put_at = put_version(&r);
	run_free(&r);
	r = cli("--cluster", seed(1), "get", "gone", NULL);
	expect_out(&r, "soon", 4);
	run_free(&r);
	r = cli("--cluster", seed(1), "del", "gone", NULL);
	expect_out(&r, "", 0);
	run_free(&r);
	for (int from = 0; from < 3; from++) {
		r = cli("--cluster", seed(from), "get", "gone", NULL);
		expect_error(&r, EXIT_NOT_FOUND, "gone");
		run_free(&r);
	}
	/* Deleting again succeeds; --json gives the deletion's version. */
	r = cli("--cluster", seed(2), "del", "gone", "--json", NULL);
	doc = parse_json(&r);
	ck_assert_str_eq(json_str(doc, "key"), "gone");
	del_at = parse_stamp(json_str(doc, "version"),
	                     strlen(json_str(doc, "version")));
	ck_assert_int_gt(kvs_stamp_cmp(&del_at, &put_at), 0);
	cJSON_Delete(doc);
	run_free(&r);
}
END_TEST

/* Keys of the scan test, in byte order. */
#define SCAN_KEYS 40
#define OTHER_KEYS 5
/* Smaller than SCAN_KEYS, so that a scan takes several pages. */
#define SCAN_PAGE 7

static int compare_strings(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The lines of text (each ending in '\n'), joined from lines[0..n). */
static char *join_lines(char **lines, size_t n)
{
	size_t len = 1;
	char *out;

	for (size_t i = 0; i < n; i++)
		len += strlen(lines[i]) + 1;
	out = malloc(len);
	ck_assert_ptr_nonnull(out);
	out[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		strcat(out, lines[i]);
		strcat(out, "\n");
	}
	return out;
}

START_TEST(scan_in_order_across_shards)
{
	static const unsigned char bin_key[] = {'b', 'i', 'n', '/', 0xff, '\n',
	                                        0, 'x'};
	static const unsigned char bin_value[] = {0xff, 0};
	char *lines[SCAN_KEYS + OTHER_KEYS + 3], *want;
	size_t n_lines = 0;
	struct run r;
	cJSON *doc, *keys, *it;
	char limit[16];
	int i;

	tc_start(&C, 3, "[cluster]\nreplication = 1\n"
	                "[limits]\nmax_scan_limit = 7\n");
	for (i = 0; i < SCAN_KEYS; i++) {
		char key[32], value[16];

		snprintf(key, sizeof(key), "scan%%2F%03d", i);
		snprintf(value, sizeof(value), "v%d", i);
		http_put(i % 3, key, value, strlen(value));
	}
	for (i = 0; i < OTHER_KEYS; i++) {
		char key[32];

		snprintf(key, sizeof(key), "other%%2F%d", i);
		http_put(0, key, "o", 1);
	}
	http_put(1, "scan", "s", 1);
	http_put(2, "bin%2F%FF%0A%00x", bin_value, sizeof(bin_value));
	http_put(0, "bin%2F%C3%A9%5C", "t", 1);
	/* With one replica, every shard holds its own part of the keys. */
	for (i = 0; i < 3; i++) {
		char url[128];
		struct tc_resp s;

		snprintf(url, sizeof(url), "%s/v1/status", C.node[i].url);
		s = tc_get(url, 200);
		ck_assert_msg(strstr(s.body, "\"keys\":0,") == NULL,
		              "shard %d holds no key: %s", i, s.body);
		tc_resp_free(&s);
	}

	/* Every key, in byte order, continued over pages of 7. */
	lines[n_lines++] = strdup("bin/\xc3\xa9\\\\");
	lines[n_lines++] = strdup("bin/\\xff\\n\\x00x");
	for (i = 0; i < OTHER_KEYS; i++)
		ck_assert_int_ge(asprintf(&lines[n_lines++], "other/%d", i), 0);
	lines[n_lines++] = strdup("scan");
	for (i = 0; i < SCAN_KEYS; i++)
		ck_assert_int_ge(asprintf(&lines[n_lines++], "scan/%03d", i),
		                 0);
	qsort(lines + 2, n_lines - 2, sizeof(*lines), compare_strings);
	want = join_lines(lines, n_lines);
	r = cli("--cluster", seed(0), "scan", NULL);
	expect_out(&r, want, strlen(want));
	run_free(&r);
	free(want);

	/* A prefix. */
	want = join_lines(lines + n_lines - SCAN_KEYS, SCAN_KEYS);
	r = cli("--cluster", seed(1), "scan", "scan/", NULL);
	expect_out(&r, want, strlen(want));
	run_free(&r);
	free(want);
	r = cli("--cluster", seed(1), "scan", "nothing/", NULL);
	expect_out(&r, "", 0);
	run_free(&r);

	/* --limit, below, across and beyond the page size. */
	{
		static const int limits[] = {1, SCAN_PAGE, SCAN_PAGE + 1, 13,
		                             SCAN_KEYS, 1000};

		for (size_t k = 0; k < sizeof(limits) / sizeof(limits[0]);
		     k++) {
			int l = limits[k] < SCAN_KEYS ? limits[k] : SCAN_KEYS;

			snprintf(limit, sizeof(limit), "%d", limits[k]);
			want = join_lines(lines + n_lines - SCAN_KEYS,
			                  (size_t)l);
			r = cli("--cluster", seed(2), "scan", "scan/",
			        "--limit", limit, NULL);
			expect_out(&r, want, strlen(want));
			run_free(&r);
			free(want);
		}
	}

	/* --values: the value after a tab; unprintable bytes escaped. */
	r = cli("--cluster", seed(0), "--values", "scan", "scan/00", NULL);
	{
		char expect[256] = "";

		for (i = 0; i < 10; i++) {
			size_t used = strlen(expect);

			snprintf(expect + used, sizeof(expect) - used,
			         "scan/%03d\tv%d\n", i, i);
		}
		expect_out(&r, expect, strlen(expect));
	}
	run_free(&r);
	r = cli("--cluster", seed(0), "scan", "bin/", "--values", NULL);
	{
		static const char expect[] = "bin/\xc3\xa9\\\\\tt\n"
		                             "bin/\\xff\\n\\x00x\t\\xff\\x00\n";

		expect_out(&r, expect, strlen(expect));
	}
	run_free(&r);

	/* --json: every key with its version, continued over pages. */
	r = cli("--json", "--cluster", seed(1), "scan", "scan/", NULL);
	doc = parse_json(&r);
	keys = cJSON_GetObjectItemCaseSensitive(doc, "keys");
	ck_assert(cJSON_IsArray(keys));
	ck_assert_int_eq(cJSON_GetArraySize(keys), SCAN_KEYS);
	i = 0;
	cJSON_ArrayForEach(it, keys) {
		const char *v = json_str(it, "version");
		char key[32];

		snprintf(key, sizeof(key), "scan/%03d", i++);
		ck_assert_str_eq(json_str(it, "key"), key);
		parse_stamp(v, strlen(v));
		ck_assert_ptr_null(
		        cJSON_GetObjectItemCaseSensitive(it, "value"));
	}
	cJSON_Delete(doc);
	run_free(&r);
	r = cli("scan", "scan/", "--json", "--values", "--limit", "9",
	        "--cluster", seed(2), NULL);
	doc = parse_json(&r);
	keys = cJSON_GetObjectItemCaseSensitive(doc, "keys");
	ck_assert_int_eq(cJSON_GetArraySize(keys), 9);
	i = 0;
	cJSON_ArrayForEach(it, keys) {
		char value[16];

		snprintf(value, sizeof(value), "v%d", i++);
		ck_assert_str_eq(json_str(it, "value"), value);
	}
	cJSON_Delete(doc);
	run_free(&r);
	/* Keys and values that are not text come in base64. */
	r = cli("scan", "bin/", "--json", "--values", "--cluster", seed(2),
	        NULL);
	doc = parse_json(&r);
	keys = cJSON_GetObjectItemCaseSensitive(doc, "keys");
	ck_assert_int_eq(cJSON_GetArraySize(keys), 2);
	{
		cJSON *t = cJSON_GetArrayItem(keys, 0);
		cJSON *b = cJSON_GetArrayItem(keys, 1);
		unsigned char *k, *v;
		size_t klen, vlen;

		ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(b, "key"));
		k = json_b64(b, "key_b64", &klen);
		v = json_b64(b, "value_b64", &vlen);
		ck_assert_uint_eq(klen, sizeof(bin_key));
		ck_assert_mem_eq(k, bin_key, sizeof(bin_key));
		ck_assert_uint_eq(vlen, sizeof(bin_value));
		ck_assert_mem_eq(v, bin_value, sizeof(bin_value));
		free(k);
		free(v);
		ck_assert_str_eq(json_str(t, "key"), "bin/\xc3\xa9\\");
		ck_assert_str_eq(json_str(t, "value"), "t");
	}
	cJSON_Delete(doc);
	run_free(&r);
	for (size_t k = 0; k < n_lines; k++)
		free(lines[k]);
}
END_TEST

/*
 * Keys that hold NUL bytes (valid UTF-8, so they once came back as text
 * with \u0000 in it, measured with strlen) are listed whole, and the
 * scan pages past them.
 */
START_TEST(scan_lists_keys_with_nul_bytes)
{
	static const char *const escaped[] = {"%00a", "%00b", "%00b%00", "n%00z"};
	static const char text[] = "\\x00a\n\\x00b\n\\x00b\\x00\nn\\x00z\n";
	static const unsigned char raw[][3] = {{0, 'a'}, {0, 'b'}, {0, 'b', 0},
	                                       {'n', 0, 'z'}};
	static const size_t lens[] = {2, 2, 3, 3};
	struct run r;
	cJSON *doc, *keys, *it;
	int i = 0;

	/* Pages of two keys at most: the scan must page past them. */
	tc_start(&C, 3, "[limits]\nmax_scan_limit = 2\n");
	for (size_t k = 0; k < 4; k++)
		http_put((int)k % 3, escaped[k], "v", 1);
	r = cli("--cluster", seed(1), "scan", NULL);
	expect_out(&r, text, strlen(text));
	run_free(&r);
	r = cli("--cluster", seed(2), "--json", "scan", NULL);
	doc = parse_json(&r);
	keys = cJSON_GetObjectItemCaseSensitive(doc, "keys");
	ck_assert_int_eq(cJSON_GetArraySize(keys), 4);
	cJSON_ArrayForEach(it, keys) {
		size_t len;
		unsigned char *k = json_b64(it, "key_b64", &len);

		ck_assert_uint_eq(len, lens[i]);
		ck_assert_mem_eq(k, raw[i], len);
		free(k);
		i++;
	}
	cJSON_Delete(doc);
	run_free(&r);
}
END_TEST

START_TEST(json_documents)
{
	static const char text[] = "say \"hi\" \\ caf\xc3\xa9\n\ttab\x01 "
	                           "\xf0\x9f\x99\x82";
	static const unsigned char nul[] = {'a', 0, 'b'};
	static const unsigned char latin1[] = {'c', 'a', 'f', 0xe9};
	struct run r;
	cJSON *doc;
	char version[KVS_STAMP_STRLEN];
	unsigned char *got;
	size_t len;

	tc_start(&C, 3, NULL);
	r = cli("--json", "--cluster", seed(0), "put", "t", text, NULL);
	doc = parse_json(&r);
	ck_assert_str_eq(json_str(doc, "key"), "t");
	snprintf(version, sizeof(version), "%s", json_str(doc, "version"));
	parse_stamp(version, strlen(version));
	cJSON_Delete(doc);
	run_free(&r);
	r = cli("--cluster", seed(1), "get", "t", "--json", NULL);
	doc = parse_json(&r);
	ck_assert_str_eq(json_str(doc, "key"), "t");
	ck_assert_str_eq(json_str(doc, "value"), text);
	ck_assert_str_eq(json_str(doc, "version"), version);
	ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(doc, "value_b64"));
	cJSON_Delete(doc);
	run_free(&r);

	/* A NUL byte, or bytes that are not UTF-8: base64. */
	r = cli_stdin(nul, sizeof(nul), "--cluster", seed(0), "put", "nul",
	              "-", NULL);
	put_version(&r);
	run_free(&r);
	r = cli("--json", "--cluster", seed(2), "get", "nul", NULL);
	doc = parse_json(&r);
	ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(doc, "value"));
	got = json_b64(doc, "value_b64", &len);
	ck_assert_uint_eq(len, sizeof(nul));
	ck_assert_mem_eq(got, nul, sizeof(nul));
	free(got);
	cJSON_Delete(doc);
	run_free(&r);
	r = cli_stdin(latin1, sizeof(latin1), "--cluster", seed(0), "put",
	              "latin1", "-", NULL);
	put_version(&r);
	run_free(&r);
	r = cli("--json", "--cluster", seed(2), "get", "latin1", NULL);
	doc = parse_json(&r);
	got = json_b64(doc, "value_b64", &len);
	ck_assert_uint_eq(len, sizeof(latin1));
	ck_assert_mem_eq(got, latin1, sizeof(latin1));
	free(got);
	cJSON_Delete(doc);
	run_free(&r);
	/* A key argument that is not UTF-8 comes back as key_b64. */
	r = cli("--json", "--cluster", seed(1), "put", "caf\xe9", "x", NULL);
	doc = parse_json(&r);
	got = json_b64(doc, "key_b64", &len);
	ck_assert_uint_eq(len, 4);
	ck_assert_mem_eq(got, "caf\xe9", 4);
	free(got);
	cJSON_Delete(doc);
	run_free(&r);
	r = cli("--cluster", seed(2), "get", "caf\xe9", NULL);
	expect_out(&r, "x", 1);
	run_free(&r);
	/* Errors leave stdout empty, with --json too. */
	r = cli("--json", "--cluster", seed(1), "get", "absent", NULL);
	expect_error(&r, EXIT_NOT_FOUND, NULL);
	run_free(&r);
}
END_TEST

/* The line of the status table that starts with name. */
static const char *status_line(const char *table, const char *name,
                               char *buf, size_t cap)
{
	size_t nlen = strlen(name);

	for (const char *p = table; p != NULL && *p != '\0';) {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p);

		if (len > nlen && strncmp(p, name, nlen) == 0 &&
		    p[nlen] == ' ') {
			snprintf(buf, cap, "%.*s", (int)len, p);
			return buf;
		}
		p = eol ? eol + 1 : NULL;
	}
	ck_abort_msg("no line for %s in:\n%s", name, table);
	return NULL;
}

/* Does the line hold word as a column of its own? */
static int has_column(const char *line, const char *word)
{
	char padded[64];

	snprintf(padded, sizeof(padded), " %s ", word);
	return strstr(line, padded) != NULL;
}

START_TEST(cluster_status_shows_up_and_down)
{
	struct run r;
	cJSON *doc, *shards, *it;
	char line[512];
	int i;

	tc_start(&C, 3, NULL);
	r = cli("--cluster", seed(0), "put", "a", "1", NULL);
	put_version(&r);
	run_free(&r);
	r = cli("--cluster", seed(1), "cluster", "status", NULL);
	expect_ok(&r);
	ck_assert_msg(strncmp(r.out, "SHARD ", 6) == 0, "no header: %s", r.out);
	for (i = 0; i < 3; i++) {
		status_line(r.out, C.node[i].name, line, sizeof(line));
		ck_assert_msg(strstr(line, seed(i)) != NULL, "%s", line);
		ck_assert_msg(has_column(line, "up"), "%s", line);
	}
	run_free(&r);

	r = cli("--cluster", seed(0), "--json", "cluster", "status", NULL);
	doc = parse_json(&r);
	shards = cJSON_GetObjectItemCaseSensitive(doc, "shards");
	ck_assert_int_eq(cJSON_GetArraySize(shards), 3);
	i = 0;
	cJSON_ArrayForEach(it, shards) {
		cJSON *idx = cJSON_GetObjectItemCaseSensitive(it, "idx");

		ck_assert_str_eq(json_str(it, "name"), C.node[i].name);
		ck_assert_str_eq(json_str(it, "address"), seed(i));
		ck_assert(cJSON_IsNumber(idx) && idx->valuedouble == i);
		ck_assert(cJSON_IsTrue(
		        cJSON_GetObjectItemCaseSensitive(it, "up")));
		ck_assert(cJSON_IsNumber(
		        cJSON_GetObjectItemCaseSensitive(it, "keys")));
		ck_assert(cJSON_GetObjectItemCaseSensitive(it, "store_bytes")
		                  ->valuedouble > 0);
		ck_assert(cJSON_IsNumber(
		        cJSON_GetObjectItemCaseSensitive(it, "uptime_s")));
		i++;
	}
	cJSON_Delete(doc);
	run_free(&r);

	/* One shard stopped: the others are up, it is down, and the command
	 * still succeeds. */
	tc_stop_node(&C, 2, SIGTERM);
	r = cli("--cluster", seed(0), "cluster", "status", NULL);
	expect_ok(&r);
	for (i = 0; i < 3; i++) {
		status_line(r.out, C.node[i].name, line, sizeof(line));
		ck_assert_msg(has_column(line, i == 2 ? "down" : "up"), "%s",
		              line);
	}
	run_free(&r);
	r = cli("cluster", "status", "--json", "--cluster", seed(1), NULL);
	doc = parse_json(&r);
	shards = cJSON_GetObjectItemCaseSensitive(doc, "shards");
	ck_assert_int_eq(cJSON_GetArraySize(shards), 3);
	for (i = 0; i < 3; i++) {
		cJSON *s = cJSON_GetArrayItem(shards, i);
		cJSON *up = cJSON_GetObjectItemCaseSensitive(s, "up");
		cJSON *keys = cJSON_GetObjectItemCaseSensitive(s, "keys");

		ck_assert(i == 2 ? cJSON_IsFalse(up) : cJSON_IsTrue(up));
		ck_assert(i == 2 ? cJSON_IsNull(keys) : cJSON_IsNumber(keys));
	}
	cJSON_Delete(doc);
	run_free(&r);
}
END_TEST

START_TEST(usage_errors_exit_2)
{
	static const char *const cases[][8] = {
		{NULL},
		{"frobnicate", NULL},
		{"--bogus", "get", "k", NULL},
		{"get", "k", "--bogus", NULL},
		{"get", NULL},
		{"get", "a", "b", NULL},
		{"put", "k", NULL},
		{"put", "k", "v", "w", NULL},
		{"del", NULL},
		{"scan", "a", "b", NULL},
		{"scan", "--limit", "0", NULL},
		{"scan", "--limit", "many", NULL},
		{"scan", "--limit", NULL},
		{"get", "k", "--limit", "3", NULL},
		{"get", "k", "--values", NULL},
		{"--timeout", "soon", "get", "k", NULL},
		{"--timeout", "0", "get", "k", NULL},
		{"cluster", NULL},
		{"cluster", "explode", NULL},
		{"get", "", NULL},
		{"--cluster", "no-port-here", "get", "k", NULL},
		{"--cluster", "127.0.0.1:1", "--config", "x.toml", "get", "k",
		 NULL},
		{"help", "frobnicate", NULL},
		{"get", "-x", NULL},
	};
	struct run r;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *argv[MAX_ARGS] = {(char *)"kvshard"};
		int n = 1;

		for (int k = 0; cases[i][k] != NULL; k++)
			argv[n++] = (char *)cases[i][k];
		argv[n] = NULL;
		run_argv(&r, NULL, 0, argv);
		ck_assert_msg(r.code == EXIT_USAGE,
		              "case %zu (%s): exit %d, %s", i,
		              argv[1] ? argv[1] : "", r.code, r.err);
		expect_error(&r, EXIT_USAGE, NULL);
		/* Found before anything was sent anywhere. */
		ck_assert_uint_lt(r.ms, 2000);
		run_free(&r);
	}
	r = cli("frobnicate", NULL);
	expect_error(&r, EXIT_USAGE, "unknown command 'frobnicate'");
	run_free(&r);
	r = cli("get", NULL);
	expect_error(&r, EXIT_USAGE, "missing argument");
	run_free(&r);
	r = cli("get", "k", "--bogus", NULL);
	expect_error(&r, EXIT_USAGE, "--bogus");
	run_free(&r);
	r = cli("scan", "--limit", NULL);
	expect_error(&r, EXIT_USAGE, "needs an argument");
	run_free(&r);
	/* A config file that does not exist. */
	{
		const char *dir = tu_mkdtemp();
		char path[4200];

		snprintf(path, sizeof(path), "%s/none.toml", dir);
		r = cli("--config", path, "get", "k", NULL);
		expect_error(&r, EXIT_USAGE, "none.toml");
		run_free(&r);
		tu_rmtree(dir);
	}
}
END_TEST

START_TEST(unreachable_cluster_exits_3_quickly)
{
	static const char *const commands[][3] = {
		{"get", "k", NULL},         {"put", "k", "v"},
		{"del", "k", NULL},         {"scan", NULL, NULL},
		{"cluster", "status", NULL},
	};
	struct sockaddr_in a;
	char nobody[32], hole_seed[32];
	const int timeout_ms = 1000;
	struct run r;
	int hole;

	/* Nothing listens on this port: connections are refused. */
	snprintf(nobody, sizeof(nobody), "127.0.0.1:%d", tc_free_port());
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		r = cli("--cluster", nobody, "--timeout", "1000",
		        commands[i][0], commands[i][1], commands[i][2], NULL);
		expect_error(&r, EXIT_CLUSTER, nobody);
		ck_assert_uint_lt(r.ms,
		                  (uint64_t)timeout_ms + TIMEOUT_MARGIN_MS);
		run_free(&r);
	}
	/* A port that accepts connections but never answers: the request
	 * times out after --timeout. */
	hole = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(hole, 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(hole, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(hole, 16), 0);
	{
		socklen_t alen = sizeof(a);

		ck_assert_int_eq(
		        getsockname(hole, (struct sockaddr *)&a, &alen), 0);
	}
	snprintf(hole_seed, sizeof(hole_seed), "127.0.0.1:%d",
	         ntohs(a.sin_port));
	r = cli("get", "k", "--timeout", "1000", "--cluster", hole_seed, NULL);
	expect_error(&r, EXIT_CLUSTER, hole_seed);
	ck_assert_uint_ge(r.ms, (uint64_t)timeout_ms / 2);
	ck_assert_uint_lt(r.ms, (uint64_t)timeout_ms + TIMEOUT_MARGIN_MS);
	run_free(&r);
	close(hole);
}
END_TEST

START_TEST(dead_owner_exits_3)
{
	struct run r;
	char key[64];

	tc_start(&C, 3, "[cluster]\nreplication = 1\n");
	snprintf(key, sizeof(key), "%s", key_owned_by(2, "dead"));
	r = cli("--cluster", seed(0), "put", key, "v", NULL);
	put_version(&r);
	run_free(&r);
	tc_stop_node(&C, 2, SIGKILL);
	r = cli("--cluster", seed(0), "--timeout", "1000", "get", key, NULL);
	expect_error(&r, EXIT_CLUSTER, key);
	ck_assert_uint_lt(r.ms, 1000 + TIMEOUT_MARGIN_MS);
	run_free(&r);
	r = cli("--cluster", seed(1), "--timeout", "1000", "put", key, "w",
	        NULL);
	expect_error(&r, EXIT_CLUSTER, key);
	run_free(&r);
	/* Keys of the live shards are still served. */
	snprintf(key, sizeof(key), "%s", key_owned_by(1, "alive"));
	r = cli("--cluster", seed(0), "put", key, "v", NULL);
	put_version(&r);
	run_free(&r);
	r = cli("--cluster", seed(0), "get", key, NULL);
	expect_out(&r, "v", 1);
	run_free(&r);
}
END_TEST

START_TEST(cluster_from_the_environment)
{
	char nobody[32], url[256];
	struct tc_resp h;
	struct run r;

	tc_start(&C, 3, NULL);
	snprintf(nobody, sizeof(nobody), "127.0.0.1:%d", tc_free_port());
	cluster_env = all_seeds();
	r = cli("put", "env", "from the environment", NULL);
	put_version(&r);
	run_free(&r);
	snprintf(url, sizeof(url), "%s/v1/kv/env", C.node[1].url);
	h = tc_get(url, 200);
	ck_assert_str_eq(h.body, "from the environment");
	tc_resp_free(&h);
	r = cli("get", "env", NULL);
	expect_out(&r, "from the environment", 20);
	run_free(&r);
	/* An unreachable $KVSHARD_CLUSTER is used, and fails... */
	cluster_env = nobody;
	r = cli("--timeout", "1000", "get", "env", NULL);
	expect_error(&r, EXIT_CLUSTER, nobody);
	run_free(&r);
	/* ...unless --cluster or --config say otherwise. */
	r = cli("--cluster", seed(2), "get", "env", NULL);
	expect_out(&r, "from the environment", 20);
	run_free(&r);
	r = cli("--config", C.config, "get", "env", NULL);
	expect_out(&r, "from the environment", 20);
	run_free(&r);
}
END_TEST

START_TEST(other_errors_exit_4)
{
	static const char auth[] = "[auth]\nclient_tokens = [\"ct\"]\n"
	                           "read_tokens = [\"rt\"]\n"
	                           "cluster_secret = \"s3\"\n"
	                           "[limits]\nmax_value_bytes = 1000\n";
	char big[2000];
	struct run r;

	memset(big, 'v', sizeof(big));
	tc_start(&C, 2, auth);
	/* No token, or a token that may only read. */
	r = cli("--cluster", seed(0), "get", "k", NULL);
	expect_error(&r, EXIT_ERROR, NULL);
	run_free(&r);
	r = cli("--cluster", seed(0), "--token", "rt", "put", "k", "v", NULL);
	expect_error(&r, EXIT_ERROR, "put 'k'");
	run_free(&r);
	r = cli("--cluster", seed(0), "--token", "ct", "put", "k", "v", NULL);
	put_version(&r);
	run_free(&r);
	r = cli("--cluster", seed(1), "--token", "rt", "get", "k", NULL);
	expect_out(&r, "v", 1);
	run_free(&r);
	/* A value over max_value_bytes (413). */
	r = cli_stdin(big, sizeof(big), "--token", "ct", "--cluster", seed(1),
	              "put", "k", "-", NULL);
	expect_error(&r, EXIT_ERROR, "larger than the maximum");
	run_free(&r);
	/* A key over the key size limit. */
	{
		char key[600];

		memset(key, 'k', sizeof(key) - 1);
		key[sizeof(key) - 1] = '\0';
		r = cli("--token", "ct", "--cluster", seed(1), "put", key, "v",
		        NULL);
		expect_error(&r, EXIT_ERROR, "key");
		run_free(&r);
	}
}
END_TEST

START_TEST(help_for_every_command)
{
	static const struct {
		const char *args[4];
		const char *want;
	} cases[] = {
		{{"help", NULL}, "COMMAND"},
		{{"--help", NULL}, "COMMAND"},
		{{"-h", NULL}, "COMMAND"},
		{{"help", "get", NULL}, "get KEY"},
		{{"get", "--help", NULL}, "get KEY"},
		{{"--help", "get", NULL}, "get KEY"},
		{{"put", "--help", NULL}, "put KEY VALUE"},
		{{"help", "put", NULL}, "put KEY VALUE"},
		{{"del", "--help", NULL}, "del KEY"},
		{{"scan", "--help", NULL}, "scan [PREFIX]"},
		{{"scan", "-h", NULL}, "--limit N"},
		{{"cluster", "--help", NULL}, "cluster status"},
		{{"cluster", "status", "--help", NULL}, "cluster status"},
		{{"help", "cluster", NULL}, "cluster status"},
		{{"help", "help", NULL}, "help [COMMAND]"},
	};
	struct run r;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *argv[MAX_ARGS] = {(char *)"kvshard"};
		int n = 1;

		for (int k = 0; cases[i].args[k] != NULL; k++)
			argv[n++] = (char *)cases[i].args[k];
		argv[n] = NULL;
		run_argv(&r, NULL, 0, argv);
		expect_ok(&r);
		ck_assert_msg(strncmp(r.out, "Usage: kvshard ", 15) == 0,
		              "case %zu: %s", i, r.out);
		ck_assert_msg(strstr(r.out, cases[i].want) != NULL,
		              "case %zu lacks %s: %s", i, cases[i].want, r.out);
		/* The exit statuses are documented everywhere. */
		ck_assert_ptr_nonnull(strstr(r.out, "Exit status"));
		ck_assert_ptr_nonnull(strstr(r.out, "  3  "));
		run_free(&r);
	}
	r = cli("--version", NULL);
	expect_out(&r, "kvshard " KVS_VERSION_STRING "\n",
	           strlen("kvshard " KVS_VERSION_STRING "\n"));
	run_free(&r);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cli");
	TCase *tc = tcase_create("cli");
	SRunner *sr;
	int failed;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	/* A CLI that exits before reading its input must not kill us. */
	signal(SIGPIPE, SIG_IGN);
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, put_and_get_through_every_node);
	tcase_add_test(tc, missing_key_exits_1);
	tcase_add_test(tc, binary_values_from_stdin);
	tcase_add_test(tc, del_then_get_exits_1);
	tcase_add_test(tc, scan_in_order_across_shards);
	tcase_add_test(tc, scan_lists_keys_with_nul_bytes);
	tcase_add_test(tc, json_documents);
	tcase_add_test(tc, cluster_status_shows_up_and_down);
	tcase_add_test(tc, usage_errors_exit_2);
	tcase_add_test(tc, unreachable_cluster_exits_3_quickly);
	tcase_add_test(tc, dead_owner_exits_3);
	tcase_add_test(tc, cluster_from_the_environment);
	tcase_add_test(tc, other_errors_exit_4);
	tcase_add_test(tc, help_for_every_command);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	curl_global_cleanup();
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
