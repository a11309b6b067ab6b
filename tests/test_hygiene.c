/*
 * test_hygiene.c - the library's outside: exported symbols match the
 * intended list, public headers compile on their own as pedantic C99, and
 * the dependency walls between modules hold.
 */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define MAX_SYMS 512
#define LINE 512

static int read_lines(FILE *f, char lines[][LINE], int max)
{
	int n = 0;

	while (n < max && fgets(lines[n], LINE, f) != NULL) {
		lines[n][strcspn(lines[n], "\r\n")] = '\0';
		if (lines[n][0] != '\0' && lines[n][0] != '#')
			n++;
	}
	return n;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(a, b);
}

START_TEST(exported_symbols_match_the_list)
{
	static char want[MAX_SYMS][LINE], got[MAX_SYMS][LINE];
	char cmd[1024], line[LINE];
	FILE *f;
	int nw, ng = 0;

	f = fopen(tu_source_path("tests/exported-symbols.txt"), "r");
	ck_assert_ptr_nonnull(f);
	nw = read_lines(f, want, MAX_SYMS);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "nm -D --defined-only '%s'",
	         tu_build_path("lib/libkvshard.so"));
	f = popen(cmd, "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f) != NULL) {
		char addr[64], type[8], name[LINE];

		if (sscanf(line, "%63s %7s %511s", addr, type, name) != 3)
			continue;
		if (strchr("TDBRWV", type[0]) == NULL)
			continue; /* the version node itself is type A */
		name[strcspn(name, "@")] = '\0';
		ck_assert_msg(strncmp(name, "kvs_", 4) == 0 &&
		                      strncmp(name, "kvs__", 5) != 0,
		              "exported symbol outside the API: %s", name);
		ck_assert_int_lt(ng, MAX_SYMS);
		snprintf(got[ng++], LINE, "%s", name);
	}
	ck_assert_int_eq(pclose(f), 0);
	qsort(want, (size_t)nw, LINE, cmp_str);
	qsort(got, (size_t)ng, LINE, cmp_str);
	for (int i = 0; i < nw || i < ng; i++)
		ck_assert_msg(i < nw && i < ng && strcmp(want[i], got[i]) == 0,
		              "exported symbols differ from "
		              "tests/exported-symbols.txt near '%s' / '%s'",
		              i < ng ? got[i] : "(end)", i < nw ? want[i] : "(end)");
}
END_TEST

/* Names of the public headers, relative to include/. */
static int public_headers(char names[][LINE], int max)
{
	DIR *d = opendir(tu_source_path("include/kvshard"));
	struct dirent *e;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	snprintf(names[n++], LINE, "kvshard.h");
	while ((e = readdir(d)) != NULL && n < max)
		if (strstr(e->d_name, ".h") != NULL)
			snprintf(names[n++], LINE, "kvshard/%s", e->d_name);
	closedir(d);
	return n;
}

START_TEST(headers_compile_alone_as_pedantic_c99)
{
	static char names[64][LINE];
	const char *cc = getenv("CC");
	char cmd[2048];
	int n = public_headers(names, 64);

	ck_assert_int_ge(n, 5);
	for (int i = 0; i < n; i++) {
		snprintf(cmd, sizeof(cmd),
		         "printf '#include <%.200s>\\nint main(void) { return 0; }\\n' | "
		         "%s -std=c99 -pedantic -Wall -Wextra -Werror -fsyntax-only "
		         "-I'%s' -x c - 2>&1",
		         names[i], cc && *cc ? cc : "cc", tu_source_path("include"));
		ck_assert_msg(system(cmd) == 0, "%s does not compile on its own",
		              names[i]);
	}
}
END_TEST

START_TEST(every_export_is_declared_in_a_header)
{
	static char want[MAX_SYMS][LINE], names[64][LINE];
	static char text[256 * 1024];
	size_t len = 0;
	int nw, nh = public_headers(names, 64);
	FILE *f = fopen(tu_source_path("tests/exported-symbols.txt"), "r");

	ck_assert_ptr_nonnull(f);
	nw = read_lines(f, want, MAX_SYMS);
	fclose(f);
	for (int i = 0; i < nh; i++) {
		char path[1024];

		snprintf(path, sizeof(path), "include/%.200s", names[i]);
		f = fopen(tu_source_path(path), "r");
		ck_assert_ptr_nonnull(f);
		len += fread(text + len, 1, sizeof(text) - len - 1, f);
		fclose(f);
	}
	text[len] = '\0';
	for (int i = 0; i < nw; i++) {
		char decl[LINE + 2];

		snprintf(decl, sizeof(decl), "%.200s(", want[i]);
		ck_assert_msg(strstr(text, decl) != NULL,
		              "%s is exported but not declared in include/",
		              want[i]);
	}
}
END_TEST

/* Does source file rel contain needle? */
static int file_has(const char *rel, const char *needle)
{
	static char text[512 * 1024];
	FILE *f = fopen(tu_source_path(rel), "r");
	size_t n;

	if (f == NULL)
		return 0;
	n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	return strstr(text, needle) != NULL;
}

/* Every .c/.h file of dir (relative) that contains needle, but allowed. */
static void only_in(const char *dir, const char *needle,
                    const char *const *allowed)
{
	DIR *d = opendir(tu_source_path(dir));
	struct dirent *e;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)) != NULL) {
		char rel[600];
		int ok = 0;
		size_t l = strlen(e->d_name);

		if (l < 3 || (strcmp(e->d_name + l - 2, ".c") != 0 &&
		              strcmp(e->d_name + l - 2, ".h") != 0))
			continue;
		snprintf(rel, sizeof(rel), "%s/%s", dir, e->d_name);
		for (int i = 0; allowed[i] != NULL; i++)
			ok |= strcmp(allowed[i], rel) == 0;
		ck_assert_msg(ok || !file_has(rel, needle), "%s uses %s", rel,
		              needle);
	}
	closedir(d);
}

/*
 * The server is an adapter: of the library's internals it may use the
 * node's operations and their results, the protocol's names, and the
 * shared text helpers; never a route, a peer, the transport or a
 * counter. Every kvs__ identifier in server/ must be on this list.
 */
static const char *const server_may_use[] = {
	/* The node and its operations. */
	"kvs__node", "kvs__node_options", "kvs__node_options_init",
	"kvs__node_open", "kvs__node_close", "kvs__node_kv", "kvs__node_batch",
	"kvs__node_scan", "kvs__node_serve_peer", "kvs__node_stats",
	"kvs__node_stats_get", "kvs__node_full_writes",
	"kvs__node_shard_status",
	"kvs__node_hints_pending", "kvs__node_aae_stats",
	"kvs__aae_stats", "kvs__node_epoch",
	"kvs__node_store", "kvs__kv_req", "kvs__kv_kind", "kvs__cond",
	"kvs__result", "kvs__result_clear", "kvs__result_take",
	"kvs__scan_req", "kvs__scan_result", "kvs__scan_result_merge",
	"kvs__scan_result_clear", "kvs__peer_reply", "kvs__peer_reply_encode",
	"kvs__peer_reply_clear", "kvs__node_serves_links", "kvs__node_serve_link",
	"kvs__node_peer_frame_max",
	/* The topology kept in etcd: agreed before the node opens (it
	 * may replace the file's shards), the node registered once it
	 * serves. */
	"kvs__coord", "kvs__coord_open", "kvs__coord_epoch",
	"kvs__coord_register", "kvs__coord_is_registered",
	"kvs__coord_leave", "kvs__coord_close",
	/* Its epochs at runtime: each a node of its own on one store
	 * (server/topology.c), its config the file's with etcd's
	 * topology; the admin calls' edits. */
	"kvs__coord_watch", "kvs__coord_change", "kvs__node_store_open",
	"kvs__config_adopt_topology",
	/* Moves: the phase of an epoch's config, the node's copy, and the
	 * steps the nodes agree on through etcd. */
	"kvs__config_move", "kvs__node_move_copy", "kvs__node_move_stats",
	"kvs__move_stats", "kvs__coord_read", "kvs__coord_applied",
	"kvs__coord_all_applied", "kvs__node_set_fence",
	/* The protocol's names and the config's address syntax. */
	"kvs__http_status", "kvs__parse_address",
	/* Text and file helpers (util.h, base64.h). */
	"kvs__buf", "kvs__buf_init", "kvs__buf_free", "kvs__buf_add",
	"kvs__buf_adds", "kvs__buf_addf", "kvs__buf_take", "kvs__json_bytes",
	"kvs__json_escape", "kvs__json_b64", "kvs__url_decode", "kvs__mono_ms",
	"kvs__mono_ns", "kvs__realtime_after", "kvs__b64_decode_alloc",
	"kvs__b64_encode",
	"kvs__printable", "kvs__utf8_len", "kvs__utf8_text", "kvs__read_file",
	NULL,
};

static char *read_source(const char *rel)
{
	FILE *f = fopen(tu_source_path(rel), "r");
	char *text = malloc(1024 * 1024);
	size_t n;

	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(text);
	n = fread(text, 1, 1024 * 1024 - 1, f);
	fclose(f);
	text[n] = '\0';
	return text;
}

START_TEST(server_uses_only_node_operations)
{
	DIR *d = opendir(tu_source_path("server"));
	struct dirent *e;
	int files = 0;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);
		char rel[600], *text, *p;

		if (l < 3 || (strcmp(e->d_name + l - 2, ".c") != 0 &&
		              strcmp(e->d_name + l - 2, ".h") != 0))
			continue;
		snprintf(rel, sizeof(rel), "server/%s", e->d_name);
		text = read_source(rel);
		files++;
		for (p = strstr(text, "kvs__"); p != NULL;
		     p = strstr(p + 1, "kvs__")) {
			char name[128];
			size_t n = 0;
			int ok = 0;

			if (p > text && (p[-1] == '_' || (p[-1] >= 'a' && p[-1] <= 'z')))
				continue;
			while (n + 1 < sizeof(name) &&
			       ((p[n] >= 'a' && p[n] <= 'z') ||
			        (p[n] >= '0' && p[n] <= '9') || p[n] == '_'))
				name[n] = p[n], n++;
			name[n] = '\0';
			for (int i = 0; server_may_use[i] != NULL; i++)
				ok |= strcmp(server_may_use[i], name) == 0;
			ck_assert_msg(ok, "%s uses %s: the server may only call the "
			                  "node's operations (tests/test_hygiene.c)",
			              rel, name);
		}
		free(text);
	}
	closedir(d);
	ck_assert_int_ge(files, 10);
	/* And it includes none of the node's private headers. */
	only_in("server", "#include \"transport.h\"", (const char *[]){NULL});
	only_in("server", "#include \"peer.h\"", (const char *[]){NULL});
	only_in("server", "#include \"node_internal.h\"", (const char *[]){NULL});
}
END_TEST

START_TEST(dependency_walls)
{
	static const char *const store[] = {"lib/store.c", NULL};
	static const char *const transport[] = {"lib/transport.c", NULL};
	static const char *const transport_users[] = {
		"lib/transport.c", "lib/peer.c", "lib/client.c", "lib/etcd.c",
		NULL};
	static const char *const config[] = {"lib/config.c", "lib/toml.c",
	                                     "lib/toml.h", NULL};
	/* JSON documents: the remote client's answers, etcd's. */
	static const char *const json[] = {"lib/client.c", "lib/etcd.c",
	                                   "lib/coord.c", NULL};
	static const char *const none[] = {NULL};
	static const char *const io[] = {"fopen", "open(", "read(", "write(",
	                                 "socket(", "mdb_", "curl_", NULL};

	only_in("lib", "#include <lmdb.h>", store);
	only_in("lib", "#include <curl/curl.h>", transport);
	/* The node reaches peers only through the peer operations. */
	only_in("lib", "#include \"transport.h\"", transport_users);
	only_in("lib", "#include \"toml.h\"", config);
	only_in("lib", "#include <microhttpd.h>", none);
	only_in("include/kvshard", "#include <microhttpd.h>", none);
	only_in("lib", "#include <cjson/cJSON.h>", json);
	only_in("server", "#include <lmdb.h>", none);
	only_in("server", "#include <curl/curl.h>", none);
	/* The ring does no I/O. */
	for (int i = 0; io[i] != NULL; i++)
		ck_assert_msg(!file_has("lib/ring.c", io[i]), "lib/ring.c uses %s",
		              io[i]);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("hygiene");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, exported_symbols_match_the_list);
	tcase_add_test(tc, headers_compile_alone_as_pedantic_c99);
	tcase_add_test(tc, every_export_is_declared_in_a_header);
	tcase_add_test(tc, dependency_walls);
	tcase_add_test(tc, server_uses_only_node_operations);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
