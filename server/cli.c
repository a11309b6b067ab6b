/*
 * cli.c - kvshard, the command-line client of a kvshard cluster.
 *
 * The program reads and writes keys, lists them and shows the shards of a
 * cluster through the public client API of libkvshard, as any other
 * program would. Each run does one command:
 *
 *   kvshard [OPTIONS] get KEY | put KEY VALUE | del KEY |
 *                     scan [PREFIX] | cluster status | help [COMMAND]
 *
 * Options are parsed in two passes of getopt_long: the first reads the
 * global options up to the command name, the second reads the command's
 * arguments, among which global options may appear again (so that
 * "kvshard get k --json" works). Every argument is checked before the
 * cluster is contacted, so that a usage error never waits on the network.
 *
 * Output. get writes the value's raw bytes; scan writes one key per line,
 * escaping the bytes that are not printable text so that a line is always
 * one key; cluster status writes a table. With --json every command writes
 * exactly one JSON document, built in memory and written only when the
 * command succeeds, so that a script never reads half a document. Errors
 * are one line on stderr starting with "kvshard: ", and the exit status
 * tells what kind of failure it was (see exit_help below).
 *
 * Keys are command-line arguments, hence text without NUL bytes: binary
 * keys are out of the CLI's scope (the HTTP API and the library take
 * them). Values may be any bytes when read from stdin ("put KEY -").
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <kvshard.h>

/* The library's private text helpers, compiled into this program. */
#include "util.h"

#define PROGRAM "kvshard"

/* Exit statuses, as documented by exit_help. */
#define EXIT_OK 0
#define EXIT_NOT_FOUND 1
#define EXIT_USAGE 2
#define EXIT_CLUSTER 3
#define EXIT_ERROR 4
/* Returned by the parsing steps when the program should go on. */
#define CONTINUE (-1)

/* Bounds of --timeout, the same as the servers' request_timeout_ms. */
#define MIN_TIMEOUT_MS 1
#define MAX_TIMEOUT_MS 600000
/* The client library's own connect timeout; --timeout only lowers it. */
#define LIBRARY_CONNECT_TIMEOUT_MS 500

/* stdin is read in chunks of this size at least. */
#define READ_CHUNK (64 * 1024)

/* Longest piece of a key quoted in an error message. */
#define QUOTE_MAX 120

/* Values of the long options without a short form. */
enum {
	OPT_CLUSTER = 256,
	OPT_CONFIG,
	OPT_TOKEN,
	OPT_CACERT,
	OPT_TIMEOUT,
	OPT_JSON,
	OPT_LIMIT,
	OPT_VALUES,
	OPT_WEIGHT,
	OPT_WATCH,
};

/* Every option: the global ones and those of scan. */
static const struct option long_options[] = {
	{"cluster", required_argument, NULL, OPT_CLUSTER},
	{"config", required_argument, NULL, OPT_CONFIG},
	{"token", required_argument, NULL, OPT_TOKEN},
	{"cacert", required_argument, NULL, OPT_CACERT},
	{"timeout", required_argument, NULL, OPT_TIMEOUT},
	{"json", no_argument, NULL, OPT_JSON},
	{"limit", required_argument, NULL, OPT_LIMIT},
	{"values", no_argument, NULL, OPT_VALUES},
	{"weight", required_argument, NULL, OPT_WEIGHT},
	{"watch", no_argument, NULL, OPT_WATCH},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{NULL, 0, NULL, 0},
};

/* What the options asked for. */
struct options {
	const char *cluster;
	const char *config;
	const char *token;
	const char *cacert;
	unsigned timeout_ms; /* 0: the library's default */
	int json;
	int help;
	int version;
	size_t limit; /* scan: most keys shown; 0: all of them */
	int limit_given;
	int values; /* scan: also show values */
	double weight; /* cluster add: the new shard's */
	int weight_given;
	int watch; /* cluster rebalance: until the move has ended */
};

/* The state of one run. */
struct ctx {
	struct options o;
	kvs_client *client;
	FILE *out; /* stdout, or the memory buffer of the JSON document */
};

struct command {
	const char *name;
	int min_args; /* operands after the command name */
	int max_args;
	int takes_scan_options;
	int (*run)(struct ctx *x, char **args, int n);
	const char *synopsis;
	const char *summary;
	const char *help;
};

static const char options_help[] =
        "Options (before or after the command):\n"
        "  --cluster HOST:PORT,...  any nodes of the cluster (default:\n"
        "                           $KVSHARD_CLUSTER, else localhost:8081)\n"
        "  --config FILE            find the nodes in the cluster's\n"
        "                           configuration file instead\n"
        "  --token TOKEN            send \"Authorization: Bearer TOKEN\"\n"
        "  --cacert FILE            speak HTTPS, verifying the nodes with\n"
        "                           this CA (PEM); https:// addresses use\n"
        "                           the system's CAs\n"
        "  --timeout MS             bound on each request to a node, in\n"
        "                           milliseconds (default 2000)\n"
        "  --json                   print one JSON document on stdout\n"
        "  -h, --help               show help\n"
        "  -V, --version            show the version\n"
        "\n"
        "An argument that starts with '-' must come after \"--\":\n"
        "  kvshard put -- -key -value\n";

static const char exit_help[] =
        "Exit status:\n"
        "  0  success\n"
        "  1  the key was not found (get)\n"
        "  2  usage error: unknown command or option, missing or bad\n"
        "     argument, unusable --cluster or --config\n"
        "  3  the cluster could not be reached or could not serve the\n"
        "     request: connection refused, timeout, 503 (not enough\n"
        "     replicas)\n"
        "  4  any other error: 412 (version mismatch), 413 (value too\n"
        "     large), 401/403 (token), 507 (storage full), a key that is\n"
        "     too long, standard input or output that fails\n"
        "\n"
        "Errors are reported as one line on stderr starting with "
        "\"kvshard: \".\n";

/* ------------------------------------------------------------------ */
/* Messages                                                             */

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static void fail(const char *fmt, ...)
{
	va_list ap;

	fputs(PROGRAM ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* The exit status of a library result. */
static int exit_code(int rc)
{
	switch (rc) {
	case KVS_OK:
		return EXIT_OK;
	case KVS_NOTFOUND:
		return EXIT_NOT_FOUND;
	case KVS_ECONNECT:
	case KVS_ETIMEDOUT:
	case KVS_EUNAVAIL:
		return EXIT_CLUSTER;
	default:
		return EXIT_ERROR;
	}
}

/* ------------------------------------------------------------------ */
/* Text and JSON output                                                 */

/*
 * Write bytes for a human reader, one line's worth: printable text as it
 * is, a backslash as "\\", and tab, newline, carriage return, the other
 * control bytes and bytes that are not UTF-8 as escapes (\t, \n, \r,
 * \xHH), so that what is written never spans lines.
 */
static void put_escaped(FILE *f, const void *data, size_t len)
{
	const unsigned char *p = data;
	size_t i = 0;

	while (i < len) {
		size_t n = kvs__utf8_len(p + i, len - i);
		unsigned c = p[i];

		if (n > 1) {
			fwrite(p + i, 1, n, f);
			i += n;
			continue;
		}
		if (c == '\\')
			fputs("\\\\", f);
		else if (c == '\t')
			fputs("\\t", f);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\r')
			fputs("\\r", f);
		else if (c < 0x20 || c >= 0x7f)
			fprintf(f, "\\x%02x", c);
		else
			fputc((int)c, f);
		i++;
	}
}

/* A key, escaped and shortened, for an error message (static storage). */
static const char *quoted(const char *key)
{
	static char buf[QUOTE_MAX * 4 + 8];
	size_t len = strlen(key);
	FILE *f = fmemopen(buf, sizeof(buf), "w");

	if (f == NULL)
		return "?";
	fputc('\'', f);
	put_escaped(f, key, len < QUOTE_MAX ? len : QUOTE_MAX);
	fputs(len > QUOTE_MAX ? "...'" : "'", f);
	fclose(f);
	return buf;
}

/* Write b to f and free it; out of memory, nothing sensible is left to
 * write: say so and stop. */
static void emit(FILE *f, kvs__buf *b)
{
	if (b->rc != KVS_OK) {
		fail("out of memory");
		exit(EXIT_ERROR);
	}
	fwrite(b->data, 1, b->len, f);
	kvs__buf_free(b);
}

/* Write a JSON string of text (bytes that are not UTF-8 become \u00HH:
 * callers that must not lose them use json_bytes_field). */
static void json_string(FILE *f, const void *data, size_t len)
{
	kvs__buf b;

	kvs__buf_init(&b, 0);
	kvs__buf_add(&b, "\"", 1);
	kvs__json_escape(&b, data, len);
	kvs__buf_add(&b, "\"", 1);
	emit(f, &b);
}

/* Write "name":"text", or "name_b64":"base64" when the bytes are not
 * UTF-8 text without NUL bytes. */
static void json_bytes_field(FILE *f, const char *name, const void *data,
                             size_t len)
{
	kvs__buf b;

	kvs__buf_init(&b, 0);
	if (kvs__utf8_text(data, len)) {
		kvs__buf_addf(&b, "\"%s\":\"", name);
		kvs__json_escape(&b, data, len);
		kvs__buf_add(&b, "\"", 1);
	} else {
		kvs__json_b64(&b, name, data, len);
	}
	emit(f, &b);
}

/* Write ,"version":"<stamp>". */
static void json_version(FILE *f, const kvs_stamp *stamp)
{
	char text[KVS_STAMP_STRLEN];

	kvs_stamp_format(stamp, text);
	fprintf(f, ",\"version\":\"%s\"", text);
}

/* ------------------------------------------------------------------ */
/* Arguments                                                            */

/* Parse a decimal integer in [min, max]; returns 0 or -1. */
static int parse_number(const char *text, unsigned long long min,
                        unsigned long long max, unsigned long long *out)
{
	char *end;
	unsigned long long v;

	if (text[0] < '0' || text[0] > '9')
		return -1;
	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/* Report a getopt error for the argument vector argv. */
static void option_error(int opt, char **argv)
{
	const char *arg = optind > 0 ? argv[optind - 1] : "?";

	if (opt == ':')
		fail("option '%s' needs an argument (see 'kvshard help')", arg);
	else if (optopt >= OPT_CLUSTER ||
	         (optopt != 0 && strncmp(arg, "--", 2) == 0 &&
	          strchr(arg, '=') != NULL))
		fail("option '%s' takes no argument (see 'kvshard help')", arg);
	else if (optopt != 0)
		fail("unknown option '-%c' (see 'kvshard help')", optopt);
	else
		fail("unknown option '%s' (see 'kvshard help')", arg);
}

/*
 * Run getopt_long over argv with optstring, recording options in o.
 * Returns CONTINUE, or the exit status of a usage error.
 */
static int parse_options(int argc, char **argv, const char *optstring,
                         struct options *o)
{
	unsigned long long v;

	opterr = 0;
	optind = 0; /* glibc: start afresh on this vector */
	for (;;) {
		int opt;

		opt = getopt_long(argc, argv, optstring, long_options, NULL);

		if (opt == -1)
			break;
		switch (opt) {
		case OPT_CLUSTER:
			o->cluster = optarg;
			break;
		case OPT_CONFIG:
			o->config = optarg;
			break;
		case OPT_TOKEN:
			o->token = optarg;
			break;
		case OPT_CACERT:
			o->cacert = optarg;
			break;
		case OPT_TIMEOUT:
			if (parse_number(optarg, MIN_TIMEOUT_MS, MAX_TIMEOUT_MS,
			                 &v) != 0) {
				fail("--timeout wants milliseconds from %d to "
				     "%d, not '%s'",
				     MIN_TIMEOUT_MS, MAX_TIMEOUT_MS, optarg);
				return EXIT_USAGE;
			}
			o->timeout_ms = (unsigned)v;
			break;
		case OPT_JSON:
			o->json = 1;
			break;
		case OPT_LIMIT:
			if (parse_number(optarg, 1, SIZE_MAX, &v) != 0) {
				fail("--limit wants a positive number, "
				     "not '%s'",
				     optarg);
				return EXIT_USAGE;
			}
			o->limit = (size_t)v;
			o->limit_given = 1;
			break;
		case OPT_VALUES:
			o->values = 1;
			break;
		case OPT_WATCH:
			o->watch = 1;
			break;
		case OPT_WEIGHT: {
			char *end = NULL;

			errno = 0;
			o->weight = strtod(optarg, &end);
			if (errno != 0 || end == optarg || *end != '\0' ||
			    !(o->weight >= 0 && o->weight <= 1e6)) {
				fail("--weight wants a number from 0 to 1000000, "
				     "not '%s'",
				     optarg);
				return EXIT_USAGE;
			}
			o->weight_given = 1;
			break;
		}
		case 'h':
			o->help = 1;
			break;
		case 'V':
			o->version = 1;
			break;
		default:
			option_error(opt, argv);
			return EXIT_USAGE;
		}
	}
	return CONTINUE;
}

/* ------------------------------------------------------------------ */
/* The cluster                                                          */

static int connect_cluster(struct ctx *x)
{
	kvs_client_options co;
	char err[KVS_ERRBUF_SIZE];
	int rc;

	kvs_client_options_init(&co);
	co.seeds = x->o.cluster;
	co.config_path = x->o.config;
	co.token = x->o.token;
	co.ca_file = x->o.cacert;
	co.request_timeout_ms = x->o.timeout_ms;
	if (x->o.timeout_ms != 0 &&
	    x->o.timeout_ms < LIBRARY_CONNECT_TIMEOUT_MS)
		co.connect_timeout_ms = x->o.timeout_ms;
	rc = kvs_client_open(&x->client, &co, err);
	if (rc == KVS_OK)
		return EXIT_OK;
	fail("%s", err[0] != '\0' ? err : kvs_strerror(rc));
	/* A bad --cluster list or an unusable --config file is the
	 * caller's mistake, found before anything was sent. */
	if (rc == KVS_EINVAL || rc == KVS_ECONFIG || rc == KVS_EIO)
		return EXIT_USAGE;
	return exit_code(rc);
}

/* Check a key given as an argument. */
static int check_key(const char *key)
{
	if (key[0] == '\0') {
		fail("the key must not be empty");
		return EXIT_USAGE;
	}
	return EXIT_OK;
}

/* ------------------------------------------------------------------ */
/* get, put, del                                                        */

static int cmd_get(struct ctx *x, char **args, int n)
{
	const char *key = args[0];
	void *value = NULL;
	size_t len = 0;
	kvs_stamp stamp;
	int rc, code;

	(void)n;
	code = check_key(key);
	if (code == EXIT_OK)
		code = connect_cluster(x);
	if (code != EXIT_OK)
		return code;
	rc = kvs_client_get(x->client, key, strlen(key), &value, &len, &stamp);
	if (rc == KVS_NOTFOUND) {
		fail("key %s not found", quoted(key));
		return EXIT_NOT_FOUND;
	}
	if (rc != KVS_OK) {
		fail("get %s: %s", quoted(key), kvs_strerror(rc));
		return exit_code(rc);
	}
	if (x->o.json) {
		fputc('{', x->out);
		json_bytes_field(x->out, "key", key, strlen(key));
		fputc(',', x->out);
		json_bytes_field(x->out, "value", value, len);
		json_version(x->out, &stamp);
		fputs("}\n", x->out);
	} else if (len > 0) {
		fwrite(value, 1, len, x->out);
	}
	kvs_free(value);
	return EXIT_OK;
}

/*
 * Read all of standard input into *out (malloc'ed; may be NULL when empty).
 * Input larger than the largest value a store takes is refused early
 * rather than read to the end.
 */
static int read_stdin(char **out, size_t *out_len)
{
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int code = EXIT_ERROR;

	for (;;) {
		ssize_t got;

		if (cap - len < READ_CHUNK) {
			size_t ncap = cap < READ_CHUNK ? 4 * READ_CHUNK
			                               : 2 * cap;
			char *nbuf = realloc(buf, ncap);

			if (nbuf == NULL) {
				fail("reading standard input: %s",
				     kvs_strerror(KVS_ENOMEM));
				goto out;
			}
			buf = nbuf;
			cap = ncap;
		}
		got = read(STDIN_FILENO, buf + len, cap - len);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			fail("reading standard input: %s", strerror(errno));
			goto out;
		}
		if (got == 0)
			break;
		len += (size_t)got;
		if (len > KVS_STORE_MAX_VALUE_SIZE) {
			fail("standard input: %s", kvs_strerror(KVS_EVALSIZE));
			goto out;
		}
	}
	*out = buf;
	*out_len = len;
	buf = NULL;
	code = EXIT_OK;
out:
	free(buf);
	return code;
}

static int cmd_put(struct ctx *x, char **args, int n)
{
	const char *key = args[0];
	char *input = NULL;
	const char *value = args[1];
	size_t len = strlen(args[1]);
	char text[KVS_STAMP_STRLEN];
	kvs_stamp stamp;
	int rc, code;

	(void)n;
	code = check_key(key);
	if (code != EXIT_OK)
		return code;
	if (strcmp(value, "-") == 0) {
		code = read_stdin(&input, &len);
		if (code != EXIT_OK)
			return code;
		value = input;
	}
	code = connect_cluster(x);
	if (code != EXIT_OK)
		goto out;
	rc = kvs_client_put(x->client, key, strlen(key), value, len, NULL,
	                    &stamp);
	if (rc != KVS_OK) {
		fail("put %s: %s", quoted(key), kvs_strerror(rc));
		code = exit_code(rc);
		goto out;
	}
	if (x->o.json) {
		fputc('{', x->out);
		json_bytes_field(x->out, "key", key, strlen(key));
		json_version(x->out, &stamp);
		fputs("}\n", x->out);
	} else {
		kvs_stamp_format(&stamp, text);
		fprintf(x->out, "%s\n", text);
	}
out:
	free(input);
	return code;
}

static int cmd_del(struct ctx *x, char **args, int n)
{
	const char *key = args[0];
	kvs_stamp stamp;
	int rc, code;

	(void)n;
	code = check_key(key);
	if (code == EXIT_OK)
		code = connect_cluster(x);
	if (code != EXIT_OK)
		return code;
	rc = kvs_client_delete(x->client, key, strlen(key), NULL, &stamp);
	if (rc != KVS_OK) {
		fail("del %s: %s", quoted(key), kvs_strerror(rc));
		return exit_code(rc);
	}
	if (x->o.json) {
		fputc('{', x->out);
		json_bytes_field(x->out, "key", key, strlen(key));
		json_version(x->out, &stamp);
		fputs("}\n", x->out);
	}
	return EXIT_OK;
}

/* ------------------------------------------------------------------ */
/* scan                                                                 */

struct scan_state {
	struct ctx *x;
	size_t shown;
};

static int scan_record(void *ud, const kvs_record *rec)
{
	struct scan_state *s = ud;
	FILE *f = s->x->out;

	if (s->x->o.json) {
		fputs(s->shown > 0 ? ",{" : "{", f);
		json_bytes_field(f, "key", rec->key, rec->key_len);
		json_version(f, &rec->stamp);
		if (s->x->o.values) {
			fputc(',', f);
			json_bytes_field(f, "value", rec->value,
			                 rec->value_len);
		}
		fputc('}', f);
	} else {
		put_escaped(f, rec->key, rec->key_len);
		if (s->x->o.values) {
			fputc('\t', f);
			put_escaped(f, rec->value, rec->value_len);
		}
		fputc('\n', f);
	}
	s->shown++;
	/* Stop the page once --limit keys have been shown. */
	return s->x->o.limit != 0 && s->shown >= s->x->o.limit;
}

static int cmd_scan(struct ctx *x, char **args, int n)
{
	struct scan_state st = {x, 0};
	kvs_client_scan_options so;
	void *after = NULL;
	size_t after_len = 0;
	int rc = KVS_OK, code;

	code = connect_cluster(x);
	if (code != EXIT_OK)
		return code;
	memset(&so, 0, sizeof(so));
	if (n > 0) {
		so.prefix = args[0];
		so.prefix_len = strlen(args[0]);
	}
	so.values = x->o.values;
	if (x->o.json)
		fputs("{\"keys\":[", x->out);
	/* Page after page, each continuing after the key the last one
	 * named, until the scan is over or --limit keys were shown. */
	for (;;) {
		void *next = NULL;
		size_t next_len = 0;

		so.limit = x->o.limit != 0 ? x->o.limit - st.shown : 0;
		so.start_after = after;
		so.start_after_len = after_len;
		rc = kvs_client_scan(x->client, &so, scan_record, &st, &next,
		                     &next_len);
		if (rc == KVS_OK && next != NULL && after != NULL &&
		    next_len == after_len && memcmp(next, after, next_len) == 0)
			rc = KVS_EPROTO; /* a scan that does not advance */
		kvs_free(after);
		after = next;
		after_len = next_len;
		if (rc != KVS_OK || after == NULL ||
		    (x->o.limit != 0 && st.shown >= x->o.limit))
			break;
	}
	kvs_free(after);
	if (rc != KVS_OK) {
		fail("scan: %s", kvs_strerror(rc));
		return exit_code(rc);
	}
	if (x->o.json)
		fputs("]}\n", x->out);
	return EXIT_OK;
}

/* ------------------------------------------------------------------ */
/* cluster status                                                       */

/* Column headers of the status table. */
static const char *const status_header[] = {
	"SHARD", "IDX", "ADDRESS", "STATE", "KEYS", "BYTES", "UPTIME",
};
#define STATUS_COLUMNS (sizeof(status_header) / sizeof(status_header[0]))
/* Columns that hold numbers, aligned to the right. */
#define STATUS_NUMERIC(col) ((col) == 1 || (col) >= 4)
/* Room for one cell: a shard name or address at most. */
#define CELL_MAX 272

/* An uptime as "42s", "5m03s", "2h05m" or "3d04h". */
static void format_uptime(uint64_t s, char *buf, size_t cap)
{
	if (s < 60)
		snprintf(buf, cap, "%us", (unsigned)s);
	else if (s < 3600)
		snprintf(buf, cap, "%um%02us", (unsigned)(s / 60),
		         (unsigned)(s % 60));
	else if (s < 86400)
		snprintf(buf, cap, "%uh%02um", (unsigned)(s / 3600),
		         (unsigned)(s / 60 % 60));
	else
		snprintf(buf, cap, "%llud%02uh",
		         (unsigned long long)(s / 86400),
		         (unsigned)(s / 3600 % 24));
}

/* The cells of one shard's row. */
static void status_row(const kvs_shard_info *s,
                       char cell[STATUS_COLUMNS][CELL_MAX])
{
	snprintf(cell[0], CELL_MAX, "%s", s->name);
	snprintf(cell[1], CELL_MAX, "%u", (unsigned)s->idx);
	snprintf(cell[2], CELL_MAX, "%s", s->address);
	snprintf(cell[3], CELL_MAX, "%s", s->up ? "up" : "down");
	if (!s->up) {
		for (size_t c = 4; c < STATUS_COLUMNS; c++)
			snprintf(cell[c], CELL_MAX, "-");
		return;
	}
	snprintf(cell[4], CELL_MAX, "%llu", (unsigned long long)s->keys);
	snprintf(cell[5], CELL_MAX, "%llu",
	         (unsigned long long)s->store_bytes);
	format_uptime(s->uptime_s, cell[6], CELL_MAX);
}

/* The cells of row i of the table: the header, then one row per shard. */
static void table_row(const kvs_shard_info *info, size_t i,
                      char cell[STATUS_COLUMNS][CELL_MAX])
{
	if (i > 0) {
		status_row(&info[i - 1], cell);
		return;
	}
	for (size_t c = 0; c < STATUS_COLUMNS; c++)
		snprintf(cell[c], CELL_MAX, "%s", status_header[c]);
}

static void status_table(FILE *f, const kvs_shard_info *info, size_t n)
{
	char cell[STATUS_COLUMNS][CELL_MAX];
	int width[STATUS_COLUMNS] = {0};

	for (size_t i = 0; i <= n; i++) {
		table_row(info, i, cell);
		for (size_t c = 0; c < STATUS_COLUMNS; c++)
			if ((int)strlen(cell[c]) > width[c])
				width[c] = (int)strlen(cell[c]);
	}
	for (size_t i = 0; i <= n; i++) {
		table_row(info, i, cell);
		for (size_t c = 0; c < STATUS_COLUMNS; c++) {
			const char *sep = c + 1 < STATUS_COLUMNS ? "  " : "\n";

			if (STATUS_NUMERIC(c))
				fprintf(f, "%*s%s", width[c], cell[c], sep);
			else
				fprintf(f, "%-*s%s", width[c], cell[c], sep);
		}
	}
}

static void status_json(FILE *f, const kvs_shard_info *info, size_t n)
{
	fputs("{\"shards\":[", f);
	for (size_t i = 0; i < n; i++) {
		const kvs_shard_info *s = &info[i];

		fputs(i > 0 ? ",{\"name\":" : "{\"name\":", f);
		json_string(f, s->name, strlen(s->name));
		fprintf(f, ",\"idx\":%u,\"address\":", (unsigned)s->idx);
		json_string(f, s->address, strlen(s->address));
		if (s->up)
			fprintf(f,
			        ",\"up\":true,\"keys\":%llu,"
			        "\"store_bytes\":%llu,\"uptime_s\":%llu}",
			        (unsigned long long)s->keys,
			        (unsigned long long)s->store_bytes,
			        (unsigned long long)s->uptime_s);
		else
			fputs(",\"up\":false,\"keys\":null,"
			      "\"store_bytes\":null,\"uptime_s\":null}",
			      f);
	}
	fputs("]}\n", f);
}

/* The outcome of an admin call that wrote epoch: "cluster <what>: why"
 * on failure, else "<done>: epoch N" (or {"epoch": N}). */
static int said_epoch(struct ctx *x, int rc, const char *err,
                      const char *what, const char *done, uint64_t epoch)
{
	if (rc != KVS_OK) {
		fail("cluster %s: %s (%s)", what, err[0] ? err : kvs_strerror(rc),
		     kvs_error_code(rc));
		return exit_code(rc);
	}
	if (x->o.json)
		fprintf(x->out, "{\"epoch\":%llu}\n", (unsigned long long)epoch);
	else
		fprintf(x->out, "%s: epoch %llu\n", done,
		        (unsigned long long)epoch);
	return EXIT_OK;
}

/* cluster add NAME ADDRESS / cluster remove NAME. */
static int change_shards(struct ctx *x, char **args, int n)
{
	char err[KVS_ERRBUF_SIZE] = "", what[512], done[512];
	uint64_t epoch = 0;
	int add = strcmp(args[0], "add") == 0, rc, code;

	if (n != (add ? 3 : 2)) {
		fail("cluster %s: usage: kvshard cluster %s", args[0],
		     add ? "add NAME ADDRESS [--weight W]" : "remove NAME");
		return EXIT_USAGE;
	}
	code = connect_cluster(x);
	if (code != EXIT_OK)
		return code;
	rc = add ? kvs_client_add_shard(x->client, args[1], args[2],
	                                x->o.weight_given ? x->o.weight : 1.0,
	                                &epoch, err)
	         : kvs_client_remove_shard(x->client, args[1], &epoch, err);
	snprintf(what, sizeof(what), "%s %s", args[0], args[1]);
	snprintf(done, sizeof(done), "%s shard %s", add ? "added" : "removed",
	         args[1]);
	return said_epoch(x, rc, err, what, done, epoch);
}

/* How often cluster rebalance --watch asks, and for how long at most. */
#define WATCH_MS 1000u
#define WATCH_MAX_S 86400u

/* One line of a node's rebalance answer (docs/api.md); 1 if the move has
 * ended. */
static int rebalance_line(FILE *f, const char *json)
{
	cJSON *doc = cJSON_Parse(json);
	const cJSON *node = cJSON_GetObjectItemCaseSensitive(doc, "node");
	const cJSON *synced = cJSON_GetObjectItemCaseSensitive(doc, "synced");
	const char *state = cJSON_GetStringValue(
	        cJSON_GetObjectItemCaseSensitive(doc, "state"));
	const char *phase = cJSON_GetStringValue(
	        cJSON_GetObjectItemCaseSensitive(doc, "phase"));
	const char *shard = cJSON_GetStringValue(
	        cJSON_GetObjectItemCaseSensitive(node, "shard"));
	const cJSON *s;
	int idle = state != NULL && strcmp(state, "idle") == 0, first = 1;

	if (doc == NULL || state == NULL) {
		fprintf(f, "(an answer this version does not read)");
		cJSON_Delete(doc);
		return 1;
	}
	fprintf(f, "%s, epoch %.0f", state,
	        cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(doc,
	                                                              "epoch")));
	if (!idle) {
		fprintf(f, ": %s",
		        phase == NULL                        ? "?"
		        : strcmp(phase, "pending") == 0      ? "waiting for the new shard to run"
		        : strcmp(phase, "dual") == 0         ? "writing to both sides, copying"
		        : strcmp(phase, "read_new") == 0     ? "reading from the new owners"
		                                             : phase);
		cJSON_ArrayForEach(s, synced)
		{
			fprintf(f, "%s%s", first ? "; copied by " : ", ",
			        cJSON_GetStringValue(s));
			first = 0;
		}
	}
	if (shard != NULL)
		fprintf(f, "; %s fetched %.0f records (%.0f bytes)%s", shard,
		        cJSON_GetNumberValue(
		                cJSON_GetObjectItemCaseSensitive(node, "keys_copied")),
		        cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(
		                node, "bytes_copied")),
		        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(node,
		                                                      "copying"))
		                ? ", copying"
		                : "");
	cJSON_Delete(doc);
	return idle;
}

/* cluster rebalance pause|resume|cancel. */
static int rebalance_control(struct ctx *x, const char *action)
{
	char err[KVS_ERRBUF_SIZE] = "", what[64];
	uint64_t epoch = 0;
	int rc, code = connect_cluster(x);

	if (code != EXIT_OK)
		return code;
	rc = kvs_client_rebalance_control(x->client, action, &epoch, err);
	snprintf(what, sizeof(what), "rebalance %s", action);
	return said_epoch(x, rc, err, what,
	                  strcmp(action, "pause") == 0    ? "rebalance paused"
	                  : strcmp(action, "resume") == 0 ? "rebalance resumed"
	                                                  : "rebalance cancelled",
	                  epoch);
}

/* cluster rebalance [--watch]: the move, once or until it has ended. */
static int rebalance(struct ctx *x, char **args, int n)
{
	char err[KVS_ERRBUF_SIZE] = "";
	int tty = !x->o.json && isatty(fileno(x->out));
	int rc, code, idle = 0;

	if (n == 2 && !x->o.watch &&
	    (strcmp(args[1], "pause") == 0 || strcmp(args[1], "resume") == 0 ||
	     strcmp(args[1], "cancel") == 0))
		return rebalance_control(x, args[1]);
	if (n != 1) {
		fail("cluster rebalance: usage: kvshard cluster rebalance "
		     "[--watch | pause | resume | cancel]");
		return EXIT_USAGE;
	}
	code = connect_cluster(x);
	if (code != EXIT_OK)
		return code;
	for (unsigned looks = 0; looks <= WATCH_MAX_S; looks++) {
		char *json = NULL;

		rc = kvs_client_rebalance(x->client, &json, err);
		if (rc != KVS_OK) {
			if (tty && looks > 0)
				fputc('\n', x->out);
			fail("cluster rebalance: %s (%s)",
			     err[0] ? err : kvs_strerror(rc), kvs_error_code(rc));
			return exit_code(rc);
		}
		if (x->o.json) {
			cJSON *doc = cJSON_Parse(json);
			const char *state = cJSON_GetStringValue(
			        cJSON_GetObjectItemCaseSensitive(doc, "state"));

			fprintf(x->out, "%s\n", json);
			idle = state == NULL || strcmp(state, "idle") == 0;
			cJSON_Delete(doc);
		} else {
			if (tty)
				fputs("\r\033[K", x->out);
			idle = rebalance_line(x->out, json);
			if (!tty || idle || !x->o.watch)
				fputc('\n', x->out);
		}
		kvs_free(json);
		fflush(x->out);
		if (!x->o.watch || idle)
			break;
		usleep(WATCH_MS * 1000u);
	}
	return EXIT_OK;
}

static int cmd_cluster(struct ctx *x, char **args, int n)
{
	kvs_shard_info *info = NULL;
	size_t count = 0;
	int rc, code;

	if (x->o.weight_given && strcmp(args[0], "add") != 0) {
		fail("cluster %s: --weight is an option of cluster add only",
		     args[0]);
		return EXIT_USAGE;
	}
	if (x->o.watch && strcmp(args[0], "rebalance") != 0) {
		fail("cluster %s: --watch is an option of cluster rebalance only",
		     args[0]);
		return EXIT_USAGE;
	}
	if (strcmp(args[0], "add") == 0 || strcmp(args[0], "remove") == 0)
		return change_shards(x, args, n);
	if (strcmp(args[0], "rebalance") == 0)
		return rebalance(x, args, n);
	if (strcmp(args[0], "status") != 0 || n != 1) {
		fail("unknown cluster command '%s' (see 'kvshard help "
		     "cluster')",
		     args[0]);
		return EXIT_USAGE;
	}
	code = connect_cluster(x);
	if (code != EXIT_OK)
		return code;
	rc = kvs_client_shards(x->client, &info, &count);
	if (rc != KVS_OK) {
		fail("cluster status: %s", kvs_strerror(rc));
		return exit_code(rc);
	}
	if (x->o.json)
		status_json(x->out, info, count);
	else
		status_table(x->out, info, count);
	kvs_free(info);
	return EXIT_OK;
}

/* ------------------------------------------------------------------ */
/* help                                                                 */

static int cmd_help(struct ctx *x, char **args, int n);

static const char get_help[] =
        "Print the value stored under KEY to standard output: its raw\n"
        "bytes, exactly, with nothing added (no newline). A missing key\n"
        "is an error (exit status 1).\n"
        "\n"
        "With --json: {\"key\": KEY, \"value\": VALUE, \"version\": VERSION}.\n"
        "A value that is not UTF-8 text, or that holds NUL bytes, is\n"
        "given as \"value_b64\" (base64) instead of \"value\".\n";

static const char put_help[] =
        "Store VALUE under KEY, durably on the cluster's write quorum,\n"
        "and print the new version.\n"
        "\n"
        "A VALUE of '-' reads the value from standard input until its\n"
        "end: any bytes, NUL included, up to the cluster's\n"
        "max_value_bytes.\n"
        "\n"
        "With --json: {\"key\": KEY, \"version\": VERSION}.\n";

static const char del_help[] =
        "Delete KEY. Deleting a key that does not exist succeeds too.\n"
        "Nothing is printed.\n"
        "\n"
        "With --json: {\"key\": KEY, \"version\": VERSION}, the version of\n"
        "the deletion.\n";

static const char scan_help[] =
        "Print the keys of the whole cluster that start with PREFIX (all\n"
        "keys without one), one per line, in ascending byte order. Pages\n"
        "are fetched one after the other until the last key.\n"
        "\n"
        "  --limit N   stop after N keys\n"
        "  --values    print each key's value after it, after a tab\n"
        "\n"
        "Keys and values are printed as text: a backslash and the bytes\n"
        "that are not printable UTF-8 text are escaped (\\\\, \\t, \\n, \\r,\n"
        "\\xHH), so that each line is one key. --json gives the exact\n"
        "bytes.\n"
        "\n"
        "With --json: {\"keys\": [{\"key\": KEY, \"version\": VERSION},\n"
        "...]}, each entry with \"value\" too when --values is given. A key\n"
        "or value that is not UTF-8 text, or that holds NUL bytes, is\n"
        "given as \"key_b64\" or \"value_b64\" (base64) instead.\n";

static const char cluster_help[] =
        "cluster status: ask every shard of the cluster for its status and\n"
        "print a table:\n"
        "the shard's name, idx and address, whether it answered (up or\n"
        "down), and for the shards that are up, how many keys and bytes\n"
        "of storage they hold and how long they have been running. Shards\n"
        "that are down do not make the command fail; a cluster that\n"
        "cannot be reached does.\n"
        "\n"
        "With --json: {\"shards\": [{\"name\", \"idx\", \"address\", \"up\",\n"
        "\"keys\", \"store_bytes\", \"uptime_s\"}, ...]}; the last three are\n"
        "null for a shard that is down.\n"
        "\n"
        "cluster add NAME ADDRESS [--weight W]: add a shard to a cluster\n"
        "whose topology is kept in etcd ([coordination]); W defaults to 1.\n"
        "cluster remove NAME: remove one. Every node applies the change\n"
        "within a second. A shard added with a weight joins with none:\n"
        "start its server next, and its share of the data moves to it\n"
        "(a move). A shard that holds data leaves once the others have\n"
        "copied it, and its server stops by itself. Prints the new epoch\n"
        "({\"epoch\": N} with --json).\n"
        "\n"
        "cluster rebalance [--watch]: the move under way, as a node sees\n"
        "it: its phase, the shards that have copied what they gain, and\n"
        "what the answering node fetched. --watch asks every second until\n"
        "the move has ended (one line, rewritten on a terminal). With\n"
        "--json: the node's answer (docs/api.md), one per look.\n"
        "cluster rebalance pause|resume|cancel: paused, nothing moves on\n"
        "until it is resumed; cancelled (before reads follow the new\n"
        "owners), the weights go back to what they were.\n";

static const char help_help[] = "Show help for COMMAND, or an overview.\n";

static const struct command commands[] = {
	{"get", 1, 1, 0, cmd_get, "get KEY", "print the value of KEY",
	 get_help},
	{"put", 2, 2, 0, cmd_put, "put KEY VALUE",
	 "store VALUE under KEY ('-': read it from stdin)", put_help},
	{"del", 1, 1, 0, cmd_del, "del KEY", "delete KEY", del_help},
	{"scan", 0, 1, 1, cmd_scan, "scan [PREFIX] [--limit N] [--values]",
	 "list keys in order", scan_help},
	{"cluster", 1, 3, 0, cmd_cluster,
	 "cluster status|add|remove|rebalance [pause|resume|cancel]",
	 "show the shards, add or remove one, follow a move", cluster_help},
	{"help", 0, 2, 0, cmd_help, "help [COMMAND]",
	 "show help for a command", help_help},
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))
/* Width of the synopsis column of the overview. */
#define SYNOPSIS_WIDTH 16

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < N_COMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static void general_help(FILE *f)
{
	fputs("Usage: kvshard [OPTIONS] COMMAND [ARGUMENTS]\n"
	      "\n"
	      "Read and write the keys of a kvshard cluster.\n"
	      "\n"
	      "Commands:\n",
	      f);
	for (size_t i = 0; i < N_COMMANDS; i++) {
		const struct command *c = &commands[i];

		if (strlen(c->synopsis) > SYNOPSIS_WIDTH)
			fprintf(f, "  %s\n  %-*s %s\n", c->synopsis,
			        SYNOPSIS_WIDTH, "", c->summary);
		else
			fprintf(f, "  %-*s %s\n", SYNOPSIS_WIDTH, c->synopsis,
			        c->summary);
	}
	fputs("\n"
	      "'kvshard help COMMAND' or 'kvshard COMMAND --help' tells more.\n"
	      "Keys are given as text arguments: binary keys (keys holding\n"
	      "NUL bytes) are beyond the command line; the HTTP API and the\n"
	      "library take them.\n"
	      "\n",
	      f);
	fputs(options_help, f);
	fputc('\n', f);
	fputs(exit_help, f);
}

static void command_help(FILE *f, const struct command *cmd)
{
	fprintf(f, "Usage: kvshard [OPTIONS] %s\n\n", cmd->synopsis);
	fputs(cmd->help, f);
	fputc('\n', f);
	fputs(options_help, f);
	fputc('\n', f);
	fputs(exit_help, f);
}

static int cmd_help(struct ctx *x, char **args, int n)
{
	const struct command *cmd;

	if (n == 0) {
		general_help(x->out);
		return EXIT_OK;
	}
	cmd = find_command(args[0]);
	if (cmd == NULL) {
		fail("unknown command '%s' (see 'kvshard help')", args[0]);
		return EXIT_USAGE;
	}
	if (n > 1 &&
	    (cmd->run != cmd_cluster || strcmp(args[1], "status") != 0)) {
		fail("no help for '%s %s' (see 'kvshard help')", args[0],
		     args[1]);
		return EXIT_USAGE;
	}
	command_help(x->out, cmd);
	return EXIT_OK;
}

/* ------------------------------------------------------------------ */
/* main                                                                 */

/*
 * Parse the command line into x and find the command and its operands.
 * Returns CONTINUE to run *cmd on (*args, *n), or an exit status when the
 * run is over (help, version, usage error).
 */
static int parse_command_line(int argc, char **argv, struct ctx *x,
                              const struct command **cmd, char ***args,
                              int *n)
{
	int code, first, sub_argc;
	char **sub_argv;

	/* Global options, up to the first operand: the command's name. */
	code = parse_options(argc, argv, "+:hV", &x->o);
	if (code != CONTINUE)
		return code;
	first = optind;
	if (first >= argc && (x->o.help || x->o.version)) {
		if (x->o.version)
			printf("kvshard %s\n", kvs_version());
		else
			general_help(stdout);
		return EXIT_OK;
	}
	if (first >= argc) {
		fail("no command given (see 'kvshard help')");
		return EXIT_USAGE;
	}
	*cmd = find_command(argv[first]);
	if (*cmd == NULL) {
		fail("unknown command '%s' (see 'kvshard help')", argv[first]);
		return EXIT_USAGE;
	}
	/* The command's arguments, options anywhere among them. */
	sub_argc = argc - first;
	sub_argv = argv + first;
	code = parse_options(sub_argc, sub_argv, ":hV", &x->o);
	if (code != CONTINUE)
		return code;
	if (x->o.version) {
		printf("kvshard %s\n", kvs_version());
		return EXIT_OK;
	}
	if (x->o.help && (*cmd)->run != cmd_help) {
		command_help(stdout, *cmd);
		return EXIT_OK;
	}
	*args = sub_argv + optind;
	*n = sub_argc - optind;
	if (*n < (*cmd)->min_args || *n > (*cmd)->max_args) {
		fail("%s: %s (usage: kvshard %s)", (*cmd)->name,
		     *n < (*cmd)->min_args ? "missing argument"
		                           : "too many arguments",
		     (*cmd)->synopsis);
		return EXIT_USAGE;
	}
	if (x->o.weight_given && (*cmd)->run != cmd_cluster) {
		fail("%s: --weight is an option of cluster add only",
		     (*cmd)->name);
		return EXIT_USAGE;
	}
	if ((x->o.limit_given || x->o.values) && !(*cmd)->takes_scan_options) {
		fail("%s: %s is an option of scan only", (*cmd)->name,
		     x->o.limit_given ? "--limit" : "--values");
		return EXIT_USAGE;
	}
	if (x->o.cluster != NULL && x->o.config != NULL) {
		fail("--cluster and --config cannot be used together");
		return EXIT_USAGE;
	}
	return CONTINUE;
}

int main(int argc, char **argv)
{
	const struct command *cmd = NULL;
	struct ctx x;
	char **args = NULL;
	char *doc = NULL;
	size_t doc_len = 0;
	int n = 0, code;

	memset(&x, 0, sizeof(x));
	x.out = stdout;
	code = parse_command_line(argc, argv, &x, &cmd, &args, &n);
	if (code != CONTINUE)
		goto out;
	if (x.o.json && cmd->run != cmd_help) {
		/* The document is written only when the command succeeds. */
		x.out = open_memstream(&doc, &doc_len);
		if (x.out == NULL) {
			fail("cannot build the JSON document: %s",
			     strerror(errno));
			code = EXIT_ERROR;
			goto out;
		}
	}
	code = cmd->run(&x, args, n);
	if (x.out != stdout) {
		int closed = fclose(x.out);

		if (closed != 0 && code == EXIT_OK) {
			fail("cannot build the JSON document: %s",
			     strerror(errno));
			code = EXIT_ERROR;
		}
		if (code == EXIT_OK)
			fwrite(doc, 1, doc_len, stdout);
	}
out:
	/* A failed write to stdout (a full disk, a closed pipe) is an
	 * error of its own, unless the command had failed already. */
	if ((fflush(stdout) != 0 || ferror(stdout)) && code == EXIT_OK) {
		fail("cannot write to standard output: %s", strerror(errno));
		code = EXIT_ERROR;
	}
	free(doc);
	kvs_client_close(x.client);
	return code;
}
