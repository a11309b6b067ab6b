/*
 * cluster.c - real kvshard-server processes for tests.
 */
#include <arpa/inet.h>
#include <check.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cluster.h"
#include "kvshard.h"
#include "testutil.h"

extern char **environ;

#define START_TIMEOUT_MS 10000
#define STOP_TIMEOUT_MS 10000
#define POLL_MS 20

/* The cluster most recently started: its logs are printed when a request
 * to it gets no answer, so that a crashed server explains itself. */
static const struct tc_cluster *current;
/* Set while polling a starting shard, whose refusals are expected. */
static int quiet;

int tc_free_port(void)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	ck_assert_int_ge(fd, 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

void tc_prepare(struct tc_cluster *c, int n, const char *extra_toml)
{
	char host[256], cacert[512];
	FILE *f;

	ck_assert_int_le(n, TC_MAX_NODES);
	snprintf(host, sizeof(host), "%s", c->host[0] ? c->host : "127.0.0.1");
	snprintf(cacert, sizeof(cacert), "%s", c->cacert);
	memset(c, 0, sizeof(*c));
	snprintf(c->host, sizeof(c->host), "%s", host);
	snprintf(c->cacert, sizeof(c->cacert), "%s", cacert);
	tc_http_cacert = c->cacert[0] ? c->cacert : NULL;
	c->n = n;
	snprintf(c->dir, sizeof(c->dir), "%s", tu_mkdtemp());
	snprintf(c->config, sizeof(c->config), "%s/cluster.toml", c->dir);
	f = fopen(c->config, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "%s\n", extra_toml ? extra_toml : "");
	for (int i = 0; i < n; i++) {
		struct tc_node *nd = &c->node[i];

		snprintf(nd->name, sizeof(nd->name), "shard-%d", i + 1);
		/* A port just released may be handed out again: never give
		 * two shards of one cluster the same one. */
		for (int again = 1; again;) {
			nd->port = tc_free_port();
			again = 0;
			for (int j = 0; j < i; j++)
				again |= c->node[j].port == nd->port;
		}
		snprintf(nd->url, sizeof(nd->url), "%s://127.0.0.1:%d",
		         c->cacert[0] ? "https" : "http", nd->port);
		fprintf(f, "[[shards]]\nname = \"%s\"\nidx = %d\n"
		           "address = \"%s:%d\"\n\n",
		        nd->name, i, c->host, nd->port);
	}
	ck_assert_int_eq(fclose(f), 0);
}

/* What each thread of a process that does not answer is doing (state
 * and kernel wait channel), for the test's failure message. */
static void dump_threads(pid_t pid)
{
	char path[96];
	DIR *d;
	struct dirent *e;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (d == NULL)
		return;
	fprintf(stderr, "---- threads of pid %d ----\n", (int)pid);
	while ((e = readdir(d)) != NULL) {
		char file[400], comm[64] = "", wchan[64] = "", stat[512] = "";
		FILE *f;
		const char *st;

		if (e->d_name[0] == '.')
			continue;
		snprintf(file, sizeof(file), "%s/%s/comm", path, e->d_name);
		if ((f = fopen(file, "r")) != NULL) {
			if (fgets(comm, sizeof(comm), f) == NULL)
				comm[0] = '\0';
			fclose(f);
		}
		snprintf(file, sizeof(file), "%s/%s/wchan", path, e->d_name);
		if ((f = fopen(file, "r")) != NULL) {
			if (fgets(wchan, sizeof(wchan), f) == NULL)
				wchan[0] = '\0';
			fclose(f);
		}
		snprintf(file, sizeof(file), "%s/%s/stat", path, e->d_name);
		if ((f = fopen(file, "r")) != NULL) {
			if (fgets(stat, sizeof(stat), f) == NULL)
				stat[0] = '\0';
			fclose(f);
		}
		comm[strcspn(comm, "\n")] = '\0';
		st = strrchr(stat, ')');
		fprintf(stderr, "tid %s %s: state %c, waiting in %s\n", e->d_name,
		        comm, st != NULL && st[1] == ' ' ? st[2] : '?',
		        wchan[0] ? wchan : "?");
	}
	closedir(d);
}

pid_t tc_spawn(const char *exe, char *const argv[], const char *log)
{
	/* posix_spawn, not fork and stdio in the child: tests start
	 * processes while their own threads run (a client streaming
	 * writes), and a forked child must not touch a lock one of them
	 * held. */
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int rc;

	ck_assert_int_eq(posix_spawn_file_actions_init(&fa), 0);
	ck_assert_int_eq(posix_spawn_file_actions_addopen(
	                         &fa, STDERR_FILENO, log,
	                         O_WRONLY | O_CREAT | O_APPEND, 0644),
	                 0);
	ck_assert_int_eq(posix_spawn_file_actions_adddup2(&fa, STDERR_FILENO,
	                                                  STDOUT_FILENO),
	                 0);
	rc = strchr(exe, '/') != NULL
	             ? posix_spawn(&pid, exe, &fa, NULL, argv, environ)
	             : posix_spawnp(&pid, exe, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	ck_assert_msg(rc == 0, "cannot start %s: %s", exe, strerror(rc));
	return pid;
}

int tc_wait_pid(pid_t pid, int ms, int *status)
{
	uint64_t deadline = tu_now_ms() + (uint64_t)ms;

	while (waitpid(pid, status, WNOHANG) != pid) {
		if (tu_now_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, status, 0);
			return -1;
		}
		usleep(POLL_MS * 1000);
	}
	return 0;
}

/* Poll url until it answers 200 (1), pid exits (0, *status set) or
 * START_TIMEOUT_MS pass (-1). */
static int wait_healthy(const char *url, pid_t pid, int *status)
{
	uint64_t deadline = tu_now_ms() + START_TIMEOUT_MS;

	while (tu_now_ms() < deadline) {
		struct tc_resp r;
		int rc;

		quiet = 1;
		rc = tc_http("GET", url, NULL, 0, NULL, &r);
		quiet = 0;
		rc = rc == 0 && r.status == 200;
		tc_resp_free(&r);
		if (rc)
			return 1;
		if (waitpid(pid, status, WNOHANG) == pid)
			return 0;
		usleep(POLL_MS * 1000);
	}
	return -1;
}

void tc_start_node(struct tc_cluster *c, int i)
{
	struct tc_node *nd = &c->node[i];
	char log[700], data[700], exe[4096], health[96];
	char *argv[] = {"kvshard-server", "--config", c->config, "--shard",
	                nd->name, "--data-dir", data, NULL};
	int status = 0, up;

	snprintf(log, sizeof(log), "%s/%s.log", c->dir, nd->name);
	snprintf(data, sizeof(data), "%s/data/%s", c->dir, nd->name);
	snprintf(exe, sizeof(exe), "%s", tu_build_path("server/kvshard-server"));
	nd->pid = tc_spawn(exe, argv, log);
	snprintf(health, sizeof(health), "%s/health", nd->url);
	up = wait_healthy(health, nd->pid, &status);
	if (up == 1)
		return;
	tc_dump_logs(c);
	if (up == 0) {
		nd->pid = 0;
		ck_abort_msg("%s exited at start (status %d)", nd->name,
		             status);
	}
	dump_threads(nd->pid);
	ck_abort_msg("%s did not answer /health within %d ms", nd->name,
	             START_TIMEOUT_MS);
}

void tc_start(struct tc_cluster *c, int n, const char *extra_toml)
{
	tc_prepare(c, n, extra_toml);
	current = c;
	for (int i = 0; i < n; i++)
		tc_start_node(c, i);
}

int tc_stop_node(struct tc_cluster *c, int i, int sig)
{
	struct tc_node *nd = &c->node[i];
	pid_t pid = nd->pid;
	int status = 0;

	if (pid <= 0)
		return 0;
	nd->pid = 0;
	kill(pid, sig);
	kill(pid, SIGCONT); /* a stopped one must run to act on sig */
	if (tc_wait_pid(pid, STOP_TIMEOUT_MS, &status) != 0)
		ck_abort_msg("%s did not exit within %d ms of signal %d",
		             nd->name, STOP_TIMEOUT_MS, sig);
	return status;
}

/* Did shard i's log record a sanitizer's report? */
static int log_has_report(const struct tc_cluster *c, int i)
{
	static const char *const marks[] = {"Sanitizer", "runtime error:"};
	char path[700], line[1024];
	int found = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s.log", c->dir, c->node[i].name);
	f = fopen(path, "r");
	if (f == NULL)
		return 0;
	while (!found && fgets(line, sizeof(line), f) != NULL)
		for (size_t m = 0; m < sizeof(marks) / sizeof(marks[0]); m++)
			found |= strstr(line, marks[m]) != NULL;
	fclose(f);
	return found;
}

/*
 * Stop every shard still running the way an operator does (SIGTERM), so
 * that each one's shutdown is tested too: it must exit 0 within the
 * bound, and under the sanitizers with no report (leaks included).
 */
void tc_stop(struct tc_cluster *c)
{
	int bad = -1, bad_status = 0;

	for (int i = 0; i < c->n; i++)
		if (c->node[i].pid > 0)
			kill(c->node[i].pid, SIGTERM);
	for (int i = 0; i < c->n; i++) {
		uint64_t deadline = tu_now_ms() + STOP_TIMEOUT_MS;
		int status = 0;

		if (c->node[i].pid <= 0)
			continue;
		while (waitpid(c->node[i].pid, &status, WNOHANG) !=
		       c->node[i].pid) {
			if (tu_now_ms() > deadline) {
				kill(c->node[i].pid, SIGKILL);
				waitpid(c->node[i].pid, &status, 0);
				break;
			}
			usleep(POLL_MS * 1000);
		}
		c->node[i].pid = 0;
		if (bad < 0 && (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
		                log_has_report(c, i))) {
			bad = i;
			bad_status = status;
		}
	}
	if (bad >= 0)
		tc_dump_logs(c);
	tu_rmtree(c->dir);
	if (current == c)
		current = NULL;
	c->host[0] = '\0'; /* the next cluster gets the default */
	ck_assert_msg(bad < 0,
	              "%s did not stop cleanly on SIGTERM (wait status %d); "
	              "logs above",
	              bad >= 0 ? c->node[bad].name : "", bad_status);
}

long long tc_metric(const struct tc_cluster *c, int i, const char *name)
{
	struct tc_resp r;
	size_t len = strlen(name);
	long long v = -1;

	if (tc_http("GET", tc_url(c, i, "/metrics%s", ""), NULL, 0, NULL, &r) ==
	            0 &&
	    r.status == 200)
		for (const char *p = r.body; p != NULL && *p != '\0';) {
			if (strncmp(p, name, len) == 0 && p[len] == ' ') {
				v = atoll(p + len + 1);
				break;
			}
			p = strchr(p, '\n');
			if (p != NULL)
				p++;
		}
	tc_resp_free(&r);
	return v;
}

void tc_dump_logs(const struct tc_cluster *c)
{
	for (int i = 0; i < c->n; i++) {
		char path[700], line[1024];
		FILE *f;

		snprintf(path, sizeof(path), "%s/%s.log", c->dir, c->node[i].name);
		f = fopen(path, "r");
		if (f == NULL)
			continue;
		fprintf(stderr, "---- %s ----\n", c->node[i].name);
		while (fgets(line, sizeof(line), f) != NULL)
			fputs(line, stderr);
		fclose(f);
	}
}

const char *tc_key_owned_by(const struct tc_cluster *c, int owner,
                            const char *prefix)
{
	return tc_key_owned_by2(c, owner, prefix, "");
}

const char *tc_key_owned_by2(const struct tc_cluster *c, int owner,
                             const char *prefix, const char *suffix)
{
	static char key[256];
	kvs_ring_member m[TC_MAX_NODES];
	kvs_ring *ring;

	for (int i = 0; i < c->n; i++) {
		m[i].name = c->node[i].name;
		m[i].weight = 1.0;
	}
	ck_assert_int_eq(kvs_ring_new(&ring, m, (size_t)c->n, 0), KVS_OK);
	for (int i = 0;; i++) {
		size_t o;

		snprintf(key, sizeof(key), "%s%d%s", prefix, i, suffix);
		kvs_ring_owners(ring, key, strlen(key), &o, 1);
		if ((int)o == owner)
			break;
	}
	kvs_ring_free(ring);
	return key;
}

/* ------------------------------------------------------------------ */

struct sink {
	struct tc_resp *r;
	size_t cap;
	size_t hlen;
};

static size_t on_body(char *d, size_t s, size_t n, void *ud)
{
	struct sink *k = ud;
	size_t len = s * n;

	if (k->r->len + len + 1 > k->cap) {
		size_t cap = k->cap ? k->cap : 4096;
		char *b;

		while (cap < k->r->len + len + 1)
			cap *= 2;
		b = realloc(k->r->body, cap);
		if (b == NULL)
			return 0;
		k->r->body = b;
		k->cap = cap;
	}
	memcpy(k->r->body + k->r->len, d, len);
	k->r->len += len;
	k->r->body[k->r->len] = '\0';
	return len;
}

static size_t on_header(char *d, size_t s, size_t n, void *ud)
{
	struct sink *k = ud;
	size_t len = s * n;

	if (len >= 5 && memcmp(d, "HTTP/", 5) == 0)
		k->hlen = 0;
	if (k->hlen + len < sizeof(k->r->headers)) {
		memcpy(k->r->headers + k->hlen, d, len);
		k->hlen += len;
		k->r->headers[k->hlen] = '\0';
	}
	return len;
}

int tc_connect_from(const char *src, int port)
{
	struct sockaddr_in a;
	struct timeval tv = {2, 0};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	inet_pton(AF_INET, src, &a.sin_addr);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
		goto fail;
	a.sin_port = htons((uint16_t)port);
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
		goto fail;
	return fd;
fail:
	close(fd);
	return -1;
}

int tc_log_lines(const struct tc_cluster *c, int node, const char *needle)
{
	char path[700], line[2048];
	int n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s.log", c->dir, c->node[node].name);
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f) != NULL)
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

const char *tc_http_cacert;

int tc_http_on(void **handle, const char *method, const char *url,
               const void *body, size_t len, const char *const *headers,
               struct tc_resp *out)
{
	CURL *e = *handle;
	struct curl_slist *h = NULL;
	struct sink k = {out, 0, 0};
	CURLcode cc;

	memset(out, 0, sizeof(*out));
	if (e == NULL) {
		e = curl_easy_init();
		*handle = e;
	} else {
		curl_easy_reset(e);
	}
	ck_assert_ptr_nonnull(e);
	h = curl_slist_append(h, "Expect:");
	for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
		h = curl_slist_append(h, headers[i]);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	if (tc_http_cacert != NULL)
		curl_easy_setopt(e, CURLOPT_CAINFO, tc_http_cacert);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 20000L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &k);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, &k);
	if (strcmp(method, "HEAD") == 0) {
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	} else if (strcmp(method, "GET") != 0) {
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
		if (body != NULL) {
			curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
			curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
			                 (curl_off_t)len);
		}
	}
	cc = curl_easy_perform(e);
	curl_slist_free_all(h);
	curl_easy_getinfo(e, CURLINFO_TOTAL_TIME, &out->seconds);
	curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &out->connects);
	if (cc != CURLE_OK && quiet) {
		return -1;
	} else if (cc != CURLE_OK) {
		fprintf(stderr, "tc_http: %s %.200s: %s after %.3f s\n", method,
		        url, curl_easy_strerror(cc), out->seconds);
		if (current != NULL && current->n > 0)
			tc_dump_logs(current);
		return -1;
	}
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &out->status);
	if (out->body == NULL) {
		out->body = calloc(1, 1);
		ck_assert_ptr_nonnull(out->body);
	}
	return 0;
}

void tc_http_close(void **handle)
{
	if (*handle != NULL)
		curl_easy_cleanup(*handle);
	*handle = NULL;
}

int tc_http(const char *method, const char *url, const void *body,
            size_t len, const char *const *headers, struct tc_resp *out)
{
	void *h = NULL;
	int rc = tc_http_on(&h, method, url, body, len, headers, out);

	tc_http_close(&h);
	return rc;
}

const char *tc_header(const struct tc_resp *r, const char *name)
{
	static char value[1024];
	size_t nlen = strlen(name);
	const char *p = r->headers;

	while (p != NULL && *p != '\0') {
		const char *eol = strchr(p, '\n');
		size_t linelen = eol ? (size_t)(eol - p) : strlen(p);

		if (linelen > nlen && p[nlen] == ':' &&
		    strncasecmp(p, name, nlen) == 0) {
			const char *v = p + nlen + 1;
			size_t vlen;

			while (*v == ' ')
				v++;
			vlen = (size_t)(p + linelen - v);
			while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == ' '))
				vlen--;
			if (vlen >= sizeof(value))
				vlen = sizeof(value) - 1;
			memcpy(value, v, vlen);
			value[vlen] = '\0';
			return value;
		}
		p = eol ? eol + 1 : NULL;
	}
	return NULL;
}

void tc_resp_free(struct tc_resp *r)
{
	free(r->body);
	r->body = NULL;
}

struct tc_resp tc_get(const char *url, long status)
{
	struct tc_resp r;

	ck_assert_msg(tc_http("GET", url, NULL, 0, NULL, &r) == 0,
	              "no answer from %s", url);
	ck_assert_msg(r.status == status, "GET %s: status %ld, wanted %ld: %s",
	              url, r.status, status, r.body);
	return r;
}

int tc_raw(int port, const char *request, struct tc_resp *out)
{
	struct timeval tv = {5, 0};
	size_t len = strlen(request), cap = 4096, got = 0;
	char *buf = malloc(cap), *body;
	int fd = tc_connect_from("127.0.0.1", port);

	memset(out, 0, sizeof(*out));
	ck_assert_ptr_nonnull(buf);
	if (fd < 0) {
		free(buf);
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (write(fd, request, len) != (ssize_t)len) {
		close(fd);
		free(buf);
		return -1;
	}
	for (;;) {
		ssize_t n;

		if (got + 1 == cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			ck_assert_ptr_nonnull(buf);
		}
		n = read(fd, buf + got, cap - got - 1);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	if (sscanf(buf, "HTTP/1.%*d %ld", &out->status) != 1) {
		free(buf);
		return -1;
	}
	body = strstr(buf, "\r\n\r\n");
	if (body != NULL) {
		size_t hlen = (size_t)(body - buf);

		snprintf(out->headers, sizeof(out->headers), "%.*s",
		         (int)(hlen < sizeof(out->headers) - 1
		                       ? hlen
		                       : sizeof(out->headers) - 1),
		         buf);
		body += 4;
		out->len = got - (size_t)(body - buf);
		memmove(buf, body, out->len + 1);
	} else {
		out->len = 0;
		buf[0] = '\0';
	}
	out->body = buf;
	return 0;
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
char *tc_url(const struct tc_cluster *c, int node, const char *fmt,
             const char *arg)
{
	static char buf[4][2048];
	static int next;
	char *u = buf[next++ % 4];
	int n = snprintf(u, sizeof(buf[0]), "%s", c->node[node].url);

	snprintf(u + n, sizeof(buf[0]) - (size_t)n, fmt, arg);
	return u;
}
#pragma GCC diagnostic pop

/* ------------------------------------------------------------------ */
/* A private etcd                                                       */

void tc_etcd_start(struct tc_etcd *e)
{
	char client[64], peer[64], cluster[96], data[600], log[600];
	char health[96];
	char *argv[] = {"etcd", "--data-dir", data, "--listen-client-urls",
	                client, "--advertise-client-urls", client,
	                "--listen-peer-urls", peer,
	                "--initial-advertise-peer-urls", peer,
	                "--initial-cluster", cluster, NULL};
	int peer_port, status = 0, up;

	memset(e, 0, sizeof(*e));
	snprintf(e->dir, sizeof(e->dir), "%s", tu_mkdtemp());
	e->port = tc_free_port();
	do
		peer_port = tc_free_port();
	while (peer_port == e->port);
	snprintf(e->endpoint, sizeof(e->endpoint), "127.0.0.1:%d", e->port);
	snprintf(client, sizeof(client), "http://127.0.0.1:%d", e->port);
	snprintf(peer, sizeof(peer), "http://127.0.0.1:%d", peer_port);
	snprintf(cluster, sizeof(cluster), "default=%s", peer);
	snprintf(data, sizeof(data), "%s/data", e->dir);
	snprintf(log, sizeof(log), "%s/etcd.log", e->dir);
	e->pid = tc_spawn("etcd", argv, log); /* from etcd-server */
	snprintf(health, sizeof(health), "%s/health", client);
	up = wait_healthy(health, e->pid, &status);
	if (up == 1)
		return;
	if (up == 0) {
		e->pid = 0;
		ck_abort_msg("etcd exited at start (status %d); see %s",
		             status, log);
	}
	tc_etcd_stop(e, 0);
	ck_abort_msg("etcd did not answer within %d ms; see %s",
	             START_TIMEOUT_MS, log);
}

void tc_etcd_stop(struct tc_etcd *e, int remove)
{
	if (e->pid > 0) {
		int status;

		kill(e->pid, SIGTERM);
		kill(e->pid, SIGCONT);
		(void)tc_wait_pid(e->pid, STOP_TIMEOUT_MS, &status);
		e->pid = 0;
	}
	if (remove && e->dir[0] != '\0') {
		tu_rmtree(e->dir);
		e->dir[0] = '\0';
	}
}
