/*
 * kvshard-bench - a closed-loop HTTP/1.1 load generator for key-value
 * stores: kvshard, and anything else whose reads and writes fit in a URL
 * template (webdis, etcd's JSON gateway...), so that they can be compared
 * on the same footing.
 *
 * Closed loop. The load is -c slots shared among -t threads; a slot is one
 * simulated client with exactly one request in flight: when the answer is
 * in, it sends the next. Each thread runs its own epoll loop over raw
 * non-blocking sockets with keep-alive, builds each request straight into
 * the connection's buffer from a compiled template, and parses answers
 * incrementally without copying bodies (Content-Length, chunked, or until
 * the connection closes), so that the generator costs the server as little
 * CPU time as possible and is not what limits throughput. An error (refused
 * connection, reset, malformed answer, timeout) closes the connection; the
 * slot reconnects for its next request.
 *
 * Pacing. With --rate R, slot i of n sends its requests at fixed times
 * start + i/R + k*n/R, so that the whole run sends R requests per second
 * evenly spread. A slot whose answer comes late sends its next request at
 * once, but its latency is still counted from the time the request was
 * due, not from when it could be sent: otherwise a server stall would
 * delay the requests that should have measured it ("coordinated
 * omission"), and the percentiles would hide the stall.
 *
 * Histograms. Latencies are recorded in nanoseconds in log-linear buckets
 * (every power of two cut in 128 equal buckets: under 1% error from 1 us to
 * a minute, 30 KiB per histogram), one per thread and kind of request with
 * no sharing while running; the threads' histograms are added up at the
 * end. Only requests that succeeded are in them; requests that end during
 * the warm-up or after the measured time are not counted at all.
 *
 * The main thread parses the options, resolves the targets (or builds the
 * ring of a kvshard configuration, to send each request to its key's
 * primary owner), starts the threads, waits for the end of the run or for
 * SIGINT/SIGTERM, and prints the results as text or JSON.
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>

#include "bench.h"

#define EXIT_USAGE 2
#define CRLF "\r\n"
#define CRLF_LEN (sizeof(CRLF) - 1)

/* Defaults. */
#define DEFAULT_THREADS 1u
#define DEFAULT_CONNECTIONS 32u
#define DEFAULT_DURATION_S 10.0
#define DEFAULT_WARMUP_S 1.0
#define DEFAULT_KEYS 100000u
#define DEFAULT_KEY_PREFIX "key"
#define DEFAULT_VALUE_SIZE 100u
#define DEFAULT_TIMEOUT_MS 5000u
#define DEFAULT_SEED 1u
#define DEFAULT_HOSTS "127.0.0.1:8081"
#define DEFAULT_URL "http://{host}/v1/kv/{key}"
#define DEFAULT_PUT_BODY "{value}"

/* Limits of the options. */
#define MAX_THREADS 256u
#define MAX_CONNECTIONS 100000u
#define MIN_DURATION_S 0.001
#define MAX_SECONDS 1e6
#define MIN_RATE 0.001
#define MAX_KEYS 1000000000000ull
#define MAX_VALUE_SIZE KVS_DEFAULT_MAX_VALUE_BYTES
#define MAX_RATE 1e8
#define MAX_TIMEOUT_MS 3600000u
#define MAX_TARGETS 1024u
#define MAX_PORT 65535u
#define STATUS_FIRST 100

/* YCSB's workloads: the share of reads. */
#define WORKLOAD_A_READS 0.5
#define WORKLOAD_B_READS 0.95
#define WORKLOAD_C_READS 1.0
#define ZIPF_THETA 0.99

/*
 * Writes pick one of a few precomputed random values (and their base64),
 * at most VALUE_VARIANTS of them and at most VALUE_POOL_BYTES in all.
 */
#define VALUE_VARIANTS 64u
#define VALUE_POOL_BYTES (64u * 1024u * 1024u)
/* Values are made of URL-safe characters (RFC 3986 "unreserved"). */
static const char value_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                     "abcdefghijklmnopqrstuvwxyz"
                                     "0123456789-._~";

/* The preload gives up after this many failures, or 1% of the keys. */
#define PRELOAD_MIN_BUDGET 100u
#define PRELOAD_BUDGET_DIVISOR 100u
/* How often the main thread looks at the preload's progress. */
#define PRELOAD_POLL_NS (20u * NS_PER_MS)

#define ERR_SIZE 512
#define PERCENT 100.0

/* Percentiles reported, and their names in the output. */
static const double percentiles[] = {50.0, 90.0, 99.0, 99.9};
static const char *const percentile_names[] = {"p50", "p90", "p99",
                                               "p99.9"};
#define N_PERCENTILES (sizeof(percentiles) / sizeof(percentiles[0]))

static const char *const op_names[OP_COUNT] = {"read", "write"};
static const char *const fail_names[FAIL_COUNT] = {
	[FAIL_CONNECT] = "connect", [FAIL_READ] = "read",
	[FAIL_WRITE] = "write",     [FAIL_PROTOCOL] = "protocol",
	[FAIL_TIMEOUT] = "timeout",
};

static const char usage_text[] =
	"Usage: " PROGRAM " [OPTION]...\n"
	"\n"
	"Closed-loop HTTP/1.1 load generator: each of -c connections has\n"
	"one request in flight and sends the next when the answer is in\n"
	"(or, with --rate, when it is due). Prints throughput, errors by\n"
	"kind and latency percentiles for reads, writes and both.\n"
	"\n"
	"Requests:\n"
	"  --get URL           read request (default " DEFAULT_URL ")\n"
	"  --put URL           write request (default the same)\n"
	"  --get-method M      GET, PUT or POST (default GET)\n"
	"  --put-method M      GET, PUT or POST (default PUT)\n"
	"  --get-body T        body of reads (default none)\n"
	"  --put-body T        body of writes (default {value}; none when\n"
	"                      the method is GET and no body is given)\n"
	"  --get-status LIST   statuses that count as success, such as\n"
	"                      200,204 (default 200)\n"
	"  --put-status LIST   the same for writes (default 200)\n"
	"  --allow-404         a read answered 404 (a key never written)\n"
	"                      is a success too\n"
	"  -H, --header 'N: V' send this header with every request\n"
	"                      (repeat for more)\n"
	"A URL is http://AUTHORITY/PATH (AUTHORITY is sent as the Host\n"
	"header; connections go to --hosts or --ring whatever it says) or\n"
	"/PATH. URLs and bodies may hold {host} (the host:port of the\n"
	"connection), {key}, {key_b64}, {value} and {value_b64} (standard\n"
	"base64), substituted as they are, without percent-encoding.\n"
	"\n"
	"Targets:\n"
	"  --hosts H:P[,H:P]   spread the connections round-robin over\n"
	"                      these (default " DEFAULT_HOSTS ")\n"
	"  --ring CONFIG       send each request to the primary owner of\n"
	"                      its key, computed with kvshard's ring from\n"
	"                      this cluster configuration; each thread\n"
	"                      then keeps its share of -c connections to\n"
	"                      every shard, so that -c is still the number\n"
	"                      of requests in flight and none ever waits\n"
	"                      for a connection (the key hashed is the\n"
	"                      text that {key} stands for)\n"
	"\n"
	"Load:\n"
	"  -t, --threads N     threads, each with its own event loop\n"
	"                      (default 1)\n"
	"  -c, --connections N connections, that is requests in flight,\n"
	"                      shared among the threads (default 32)\n"
	"  -d, --duration S    seconds measured (default 10)\n"
	"  --warmup S          seconds run first, not counted (default 1)\n"
	"  --rate R            R requests per second in all, each\n"
	"                      connection sending at fixed times; latency\n"
	"                      counts from the time a request was due\n"
	"                      (default: as fast as answers come)\n"
	"  --timeout MS        a request without a whole answer after MS\n"
	"                      milliseconds is a timeout (default 5000)\n"
	"  --preload           first write every key once over all the\n"
	"                      connections (not measured)\n"
	"\n"
	"Keys and values:\n"
	"  --keys N            how many keys (default 100000)\n"
	"  --key-prefix P      keys are P then the key's number on 8\n"
	"                      digits (default \"key\": key00000000...)\n"
	"  --dist D            uniform or zipfian (YCSB's, theta 0.99,\n"
	"                      scrambled over the keys) (default uniform)\n"
	"  --value-size BYTES  random letters, digits and -._~ (default\n"
	"                      100)\n"
	"  --workload A|B|C    YCSB mixes: 50%, 95% or 100% reads\n"
	"  --read-ratio R      share of reads, 0 to 1 (default 1, or 0\n"
	"                      when --put is given without --get)\n"
	"  --seed N            random seed (default 1)\n"
	"\n"
	"Output:\n"
	"  --json              one JSON object on stdout instead of text\n"
	"  -h, --help          this help\n"
	"\n"
	"Latency percentiles cover the requests that succeeded; requests\n"
	"that end during the warm-up are not counted at all. SIGINT or\n"
	"SIGTERM ends the run early and the results so far are printed.\n"
	"Exit status: 0 done, 1 failure, 2 bad options.\n"
	"\n"
	"Examples:\n"
	"  " PROGRAM " --preload --workload B --dist zipfian\n"
	"  " PROGRAM " --ring cluster.toml --workload A --rate 20000\n"
	"  " PROGRAM " --hosts 127.0.0.1:7379 --get '/GET/{key}' \\\n"
	"      --put '/SET/{key}/{value}' --put-method GET --workload A\n";

enum {
	OPT_GET = 256,
	OPT_PUT,
	OPT_GET_METHOD,
	OPT_PUT_METHOD,
	OPT_GET_BODY,
	OPT_PUT_BODY,
	OPT_GET_STATUS,
	OPT_PUT_STATUS,
	OPT_ALLOW_404,
	OPT_HOSTS,
	OPT_RING,
	OPT_WARMUP,
	OPT_RATE,
	OPT_TIMEOUT,
	OPT_PRELOAD,
	OPT_KEYS,
	OPT_KEY_PREFIX,
	OPT_DIST,
	OPT_VALUE_SIZE,
	OPT_WORKLOAD,
	OPT_READ_RATIO,
	OPT_SEED,
	OPT_JSON,
};

static const struct option long_options[] = {
	{"get", required_argument, NULL, OPT_GET},
	{"put", required_argument, NULL, OPT_PUT},
	{"get-method", required_argument, NULL, OPT_GET_METHOD},
	{"put-method", required_argument, NULL, OPT_PUT_METHOD},
	{"get-body", required_argument, NULL, OPT_GET_BODY},
	{"put-body", required_argument, NULL, OPT_PUT_BODY},
	{"get-status", required_argument, NULL, OPT_GET_STATUS},
	{"put-status", required_argument, NULL, OPT_PUT_STATUS},
	{"allow-404", no_argument, NULL, OPT_ALLOW_404},
	{"header", required_argument, NULL, 'H'},
	{"hosts", required_argument, NULL, OPT_HOSTS},
	{"ring", required_argument, NULL, OPT_RING},
	{"threads", required_argument, NULL, 't'},
	{"connections", required_argument, NULL, 'c'},
	{"duration", required_argument, NULL, 'd'},
	{"warmup", required_argument, NULL, OPT_WARMUP},
	{"rate", required_argument, NULL, OPT_RATE},
	{"timeout", required_argument, NULL, OPT_TIMEOUT},
	{"preload", no_argument, NULL, OPT_PRELOAD},
	{"keys", required_argument, NULL, OPT_KEYS},
	{"key-prefix", required_argument, NULL, OPT_KEY_PREFIX},
	{"dist", required_argument, NULL, OPT_DIST},
	{"value-size", required_argument, NULL, OPT_VALUE_SIZE},
	{"workload", required_argument, NULL, OPT_WORKLOAD},
	{"read-ratio", required_argument, NULL, OPT_READ_RATIO},
	{"seed", required_argument, NULL, OPT_SEED},
	{"json", no_argument, NULL, OPT_JSON},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

/* What the options said about requests, before it is checked. */
struct request_options {
	const char *url[OP_COUNT];
	const char *method[OP_COUNT];
	const char *body[OP_COUNT];
	const char *status[OP_COUNT];
	const char *workload;
	bool ratio_given;
};

/* ---- errors ------------------------------------------------------------- */

__attribute__((format(printf, 1, 2), noreturn)) static void
usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, PROGRAM ": ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see --help)\n");
	exit(EXIT_USAGE);
}

/* ---- option values ------------------------------------------------------ */

static uint64_t parse_uint(const char *opt, const char *text, uint64_t min,
                           uint64_t max)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(text, &end, 10);
	if (text[0] < '0' || text[0] > '9' || errno != 0 || *end != '\0' ||
	    v < min || v > max)
		usage_error("%s: expected a whole number from %llu to %llu, "
		            "not '%s'",
		            opt, (unsigned long long)min,
		            (unsigned long long)max, text);
	return v;
}

static double parse_double(const char *opt, const char *text, double min,
                           double max)
{
	double v;
	char *end;

	errno = 0;
	v = strtod(text, &end);
	if (((text[0] < '0' || text[0] > '9') && text[0] != '.') ||
	    errno != 0 || *end != '\0' || !(v >= min && v <= max))
		usage_error("%s: expected a number from %g to %g, not '%s'",
		            opt, min, max, text);
	return v;
}

static const char *parse_method(const char *opt, const char *text)
{
	static const char *const methods[] = {"GET", "PUT", "POST"};

	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (strcasecmp(text, methods[i]) == 0)
			return methods[i];
	usage_error("%s: expected GET, PUT or POST, not '%s'", opt, text);
}

static void parse_statuses(const char *opt, const char *text, bool *expect)
{
	const char *p = text;

	memset(expect, 0, STATUS_LIMIT * sizeof(*expect));
	for (;;) {
		char *end;
		long v;

		errno = 0;
		v = strtol(p, &end, 10);
		if (*p < '0' || *p > '9' || errno != 0 || end == p ||
		    v < STATUS_FIRST || v >= STATUS_LIMIT ||
		    (*end != ',' && *end != '\0'))
			usage_error("%s: expected statuses from %d to %d "
			            "separated by commas, not '%s'",
			            opt, STATUS_FIRST, STATUS_LIMIT - 1, text);
		expect[v] = true;
		if (*end == '\0')
			return;
		p = end + 1;
	}
}

/* A token character of RFC 9110 (header names). */
static bool is_tchar(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') ||
	       (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static void add_header(struct bench *b, const char *text)
{
	const char *colon = strchr(text, ':');
	size_t name_len, len = strlen(text);
	char *headers;

	if (colon == NULL || colon == text)
		usage_error("-H: expected 'Name: value', not '%s'", text);
	name_len = (size_t)(colon - text);
	for (size_t i = 0; i < name_len; i++)
		if (!is_tchar(text[i]))
			usage_error("-H: '%.*s' is not a header name",
			            (int)name_len, text);
	if (strpbrk(text, "\r\n") != NULL)
		usage_error("-H: a header cannot hold a line break");
	if ((name_len == strlen("Content-Length") &&
	     strncasecmp(text, "Content-Length", name_len) == 0) ||
	    (name_len == strlen("Transfer-Encoding") &&
	     strncasecmp(text, "Transfer-Encoding", name_len) == 0))
		usage_error("-H: %.*s is set by " PROGRAM, (int)name_len, text);
	if (name_len == strlen("Host") &&
	    strncasecmp(text, "Host", name_len) == 0)
		b->user_host = true;

	headers = realloc(b->headers, b->headers_len + len + CRLF_LEN);
	if (headers == NULL)
		usage_error("out of memory");
	memcpy(headers + b->headers_len, text, len);
	memcpy(headers + b->headers_len + len, CRLF, CRLF_LEN);
	b->headers = headers;
	b->headers_len += len + CRLF_LEN;
}

/*
 * Compile one kind of request: URL (http://AUTHORITY/PATH or /PATH),
 * method, body and expected statuses.
 */
static void setup_op(struct bench *b, enum op op,
                     const struct request_options *ro)
{
	static const char scheme[] = "http://", tls_scheme[] = "https://";
	const char *opt = op == OP_READ ? "--get" : "--put";
	const char *url = ro->url[op], *authority = "{host}", *path;
	size_t authority_len = strlen(authority), path_len;
	struct op_spec *o = &b->ops[op];
	char err[ERR_SIZE];

	o->url = url;
	if (strncasecmp(url, tls_scheme, strlen(tls_scheme)) == 0)
		usage_error("%s: https is not supported", opt);
	if (strncasecmp(url, scheme, strlen(scheme)) == 0) {
		authority = url + strlen(scheme);
		authority_len = strcspn(authority, "/?");
		if (authority_len == 0)
			usage_error("%s: no host in '%s'", opt, url);
		path = authority + authority_len;
	} else if (url[0] == '/') {
		path = url;
	} else {
		usage_error("%s: expected http://HOST/PATH or /PATH, not '%s'",
		            opt, url);
	}
	/* The request target always starts with a slash. */
	path_len = strlen(path);
	o->path_text = malloc(path_len + 2);
	if (o->path_text == NULL)
		usage_error("out of memory");
	o->path_text[0] = '/';
	memcpy(o->path_text + (path[0] == '/' ? 0 : 1), path, path_len + 1);
	if (tmpl_compile(&o->authority, authority, authority_len, err,
	                 sizeof(err)) != 0 ||
	    tmpl_compile(&o->path, o->path_text, strlen(o->path_text), err,
	                 sizeof(err)) != 0)
		usage_error("%s: %s", opt, err);

	o->method = ro->method[op] ? ro->method[op]
	                           : op == OP_READ ? "GET" : "PUT";
	/* A body is sent with PUT and POST, and with GET when one is given. */
	o->send_body = ro->body[op] != NULL || strcmp(o->method, "GET") != 0;
	if (o->send_body) {
		const char *body = ro->body[op];

		if (body == NULL)
			body = op == OP_WRITE ? DEFAULT_PUT_BODY : "";
		if (tmpl_compile(&o->body, body, strlen(body), err,
		                 sizeof(err)) != 0)
			usage_error("%s-body: %s", opt, err);
	}
	o->uses = o->authority.uses | o->path.uses | o->body.uses;

	if (ro->status[op] != NULL)
		parse_statuses(op == OP_READ ? "--get-status" : "--put-status",
		               ro->status[op], o->expect);
	else
		o->expect[STATUS_OK] = true;
}

/* One option of the command line (anything but -h and mistakes). */
static void apply_option(struct bench *b, struct request_options *ro, int opt,
                         const char *arg)
{
	enum op op = OP_READ;

	switch (opt) {
	case OPT_PUT:
		op = OP_WRITE;
		/* fall through */
	case OPT_GET:
		ro->url[op] = arg;
		break;
	case OPT_PUT_METHOD:
		op = OP_WRITE;
		/* fall through */
	case OPT_GET_METHOD:
		ro->method[op] = parse_method(
			op == OP_READ ? "--get-method" : "--put-method", arg);
		break;
	case OPT_PUT_BODY:
		op = OP_WRITE;
		/* fall through */
	case OPT_GET_BODY:
		ro->body[op] = arg;
		break;
	case OPT_PUT_STATUS:
		op = OP_WRITE;
		/* fall through */
	case OPT_GET_STATUS:
		ro->status[op] = arg;
		break;
	case OPT_ALLOW_404:
		b->allow_404 = true;
		break;
	case 'H':
		add_header(b, arg);
		break;
	case OPT_HOSTS:
		b->hosts_arg = arg;
		break;
	case OPT_RING:
		b->ring_path = arg;
		break;
	case 't':
		b->threads =
			(unsigned)parse_uint("--threads", arg, 1, MAX_THREADS);
		break;
	case 'c':
		b->connections = (unsigned)parse_uint("--connections", arg, 1,
		                                      MAX_CONNECTIONS);
		break;
	case 'd':
		b->duration_s = parse_double("--duration", arg, MIN_DURATION_S,
		                             MAX_SECONDS);
		break;
	case OPT_WARMUP:
		b->warmup_s = parse_double("--warmup", arg, 0.0, MAX_SECONDS);
		break;
	case OPT_RATE:
		b->rate = parse_double("--rate", arg, MIN_RATE, MAX_RATE);
		break;
	case OPT_TIMEOUT:
		b->timeout_ms = (unsigned)parse_uint("--timeout", arg, 1,
		                                     MAX_TIMEOUT_MS);
		break;
	case OPT_PRELOAD:
		b->preload = true;
		break;
	case OPT_KEYS:
		b->keys = parse_uint("--keys", arg, 1, MAX_KEYS);
		break;
	case OPT_KEY_PREFIX:
		if (strlen(arg) > KEY_PREFIX_MAX)
			usage_error("--key-prefix: longer than %u bytes",
			            KEY_PREFIX_MAX);
		b->key_prefix = arg;
		break;
	case OPT_DIST:
		if (strcmp(arg, "uniform") == 0)
			b->dist = DIST_UNIFORM;
		else if (strcmp(arg, "zipfian") == 0)
			b->dist = DIST_ZIPFIAN;
		else
			usage_error("--dist: expected uniform or zipfian, not "
			            "'%s'",
			            arg);
		break;
	case OPT_VALUE_SIZE:
		b->value_size = (size_t)parse_uint("--value-size", arg, 0,
		                                   MAX_VALUE_SIZE);
		break;
	case OPT_WORKLOAD:
		if (strcasecmp(arg, "A") == 0)
			b->read_ratio = WORKLOAD_A_READS;
		else if (strcasecmp(arg, "B") == 0)
			b->read_ratio = WORKLOAD_B_READS;
		else if (strcasecmp(arg, "C") == 0)
			b->read_ratio = WORKLOAD_C_READS;
		else
			usage_error("--workload: expected A, B or C, not '%s'",
			            arg);
		ro->workload = arg;
		break;
	case OPT_READ_RATIO:
		b->read_ratio = parse_double("--read-ratio", arg, 0.0, 1.0);
		ro->ratio_given = true;
		break;
	case OPT_SEED:
		b->seed = parse_uint("--seed", arg, 0, UINT64_MAX);
		break;
	case OPT_JSON:
		b->json = true;
		break;
	}
}

static void parse_options(struct bench *b, int argc, char **argv)
{
	struct request_options ro;
	int opt;

	memset(&ro, 0, sizeof(ro));
	opterr = 0;
	for (;;) {
		opt = getopt_long(argc, argv, ":t:c:d:H:h", long_options, NULL);
		if (opt == -1)
			break;
		if (opt == 'h') {
			fputs(usage_text, stdout);
			exit(0);
		}
		if (opt == ':')
			usage_error("%s needs a value", argv[optind - 1]);
		if (opt == '?') {
			if (optopt > 0 && optopt < OPT_GET)
				usage_error("unknown option '-%c'", optopt);
			usage_error(optopt >= OPT_GET ? "%s takes no value"
			                              : "unknown option '%s'",
			            argv[optind - 1]);
		}
		apply_option(b, &ro, opt, optarg);
	}
	if (optind < argc)
		usage_error("unexpected argument '%s'", argv[optind]);

	if (ro.workload != NULL && ro.ratio_given)
		usage_error("--workload and --read-ratio are exclusive");
	if (b->hosts_arg != NULL && b->ring_path != NULL)
		usage_error("--hosts and --ring are exclusive");
	if (b->connections < b->threads)
		usage_error("-c %u is fewer connections than threads (-t %u)",
		            b->connections, b->threads);
	/* Without --get and --put only, the run is all writes. */
	if (ro.workload == NULL && !ro.ratio_given)
		b->read_ratio = ro.url[OP_READ] == NULL &&
		                                ro.url[OP_WRITE] != NULL
		                        ? 0.0
		                        : 1.0;
	for (int op = 0; op < OP_COUNT; op++) {
		if (ro.url[op] == NULL)
			ro.url[op] = DEFAULT_URL;
		setup_op(b, (enum op)op, &ro);
	}
	b->key_prefix_len = strlen(b->key_prefix);
}

/* ---- targets ------------------------------------------------------------ */

/* Resolve host and port into t, preferring IPv4 as kvshard-server does. */
static int resolve(struct target *t, const char *host, const char *port,
                   char *err, size_t err_size)
{
	struct addrinfo hints, *res, *ai, *pick;
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, err_size, "cannot resolve %s: %s", host,
		         gai_strerror(rc));
		return -1;
	}
	pick = res;
	for (ai = res; ai != NULL; ai = ai->ai_next)
		if (ai->ai_family == AF_INET) {
			pick = ai;
			break;
		}
	memcpy(&t->addr, pick->ai_addr, pick->ai_addrlen);
	t->addr_len = pick->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

/* One --hosts entry: host:port or [v6 address]:port. */
static void parse_host(struct target *t, const char *entry, size_t len)
{
	char text[NI_MAXHOST + sizeof(":65535[]")], *host, *port, *colon;
	char err[ERR_SIZE];

	if (len == 0 || len >= sizeof(text))
		usage_error("--hosts: bad entry '%.*s'", (int)len, entry);
	memcpy(text, entry, len);
	text[len] = '\0';
	colon = strrchr(text, ':');
	if (colon == NULL)
		usage_error("--hosts: '%s' has no port (host:port)", text);
	*colon = '\0';
	port = colon + 1;
	host = text;
	if (host[0] == '[' && colon > host + 1 && colon[-1] == ']') {
		host++;
		colon[-1] = '\0';
	}
	parse_uint("--hosts port", port, 1, MAX_PORT);
	if (host[0] == '\0')
		usage_error("--hosts: '%.*s' has no host", (int)len, entry);
	if (resolve(t, host, port, err, sizeof(err)) != 0)
		usage_error("--hosts: %s", err);
	t->name = strndup(entry, len);
	if (t->name == NULL)
		usage_error("out of memory");
	t->name_len = len;
}

static void setup_hosts(struct bench *b)
{
	const char *list = b->hosts_arg ? b->hosts_arg : DEFAULT_HOSTS;
	size_t n = 1;

	for (const char *p = list; *p; p++)
		n += *p == ',';
	if (n > MAX_TARGETS)
		usage_error("--hosts: more than %u hosts", MAX_TARGETS);
	b->targets = calloc(n, sizeof(*b->targets));
	if (b->targets == NULL)
		usage_error("out of memory");
	for (const char *p = list;; p++) {
		size_t len = strcspn(p, ",");

		parse_host(&b->targets[b->n_targets++], p, len);
		p += len;
		if (*p == '\0')
			break;
	}
}

/* --ring: the shards of a kvshard configuration, and their ring. */
static void setup_ring(struct bench *b)
{
	char err[KVS_ERRBUF_SIZE];
	const kvs_cluster_config *cc;
	kvs_ring_member *members;
	size_t n;
	int rc;

	rc = kvs_config_load(&b->config, b->ring_path, err);
	if (rc != KVS_OK)
		usage_error("--ring: %s", err);
	cc = kvs_config_cluster(b->config);
	n = kvs_config_shard_count(b->config);
	b->targets = calloc(n, sizeof(*b->targets));
	members = calloc(n, sizeof(*members));
	if (b->targets == NULL || members == NULL)
		usage_error("out of memory");
	for (size_t i = 0; i < n; i++) {
		const kvs_shard_config *sh = kvs_config_shard(b->config, i);
		struct target *t = &b->targets[i];
		char port[sizeof("65535")];

		snprintf(port, sizeof(port), "%u", (unsigned)sh->port);
		if (resolve(t, sh->host, port, err, sizeof(err)) != 0)
			usage_error("--ring: shard %s: %s", sh->name, err);
		t->name = strdup(sh->address);
		if (t->name == NULL)
			usage_error("out of memory");
		t->name_len = strlen(t->name);
		b->n_targets++;
		members[i].name = sh->name;
		members[i].weight = sh->weight;
	}
	rc = kvs_ring_new(&b->ring, members, n, cc->vnodes);
	free(members);
	if (rc != KVS_OK)
		usage_error("--ring: cannot build the ring: %s",
		            kvs_strerror(rc));
}

/* ---- values ------------------------------------------------------------- */

static int make_values(struct bench *b, struct rng *r)
{
	size_t n = b->value_size ? VALUE_POOL_BYTES / b->value_size
	                         : VALUE_VARIANTS;

	if (n > VALUE_VARIANTS)
		n = VALUE_VARIANTS;
	if (n == 0)
		n = 1;
	b->n_values = n;
	b->value_b64_len = base64_length(b->value_size);
	/* One more byte so that an empty value is still an allocation. */
	b->values = malloc(n * b->value_size + 1);
	b->values_b64 = malloc(n * b->value_b64_len + 1);
	if (b->values == NULL || b->values_b64 == NULL)
		return -1;
	for (size_t i = 0; i < n * b->value_size; i++)
		b->values[i] = value_alphabet[rng_below(
			r, sizeof(value_alphabet) - 1)];
	for (size_t i = 0; i < n; i++)
		base64_encode(b->values + i * b->value_size, b->value_size,
		              b->values_b64 + i * b->value_b64_len);
	return 0;
}

/* ---- the report --------------------------------------------------------- */

struct results {
	struct counters run, pre;
	struct hist all; /* reads and writes together */
	double duration_s; /* measured */
	double preload_s;
	double cpu_s; /* this process, from the start of the run */
	double wall_s;
	bool interrupted;
	bool ran;            /* the measured run happened, if only partly */
	bool preload_failed; /* too many failed writes: no run */
	uint64_t requests, ok, errors;
};

static void counters_add(struct counters *dst, const struct counters *src)
{
	for (size_t i = 0; i < OP_COUNT; i++) {
		dst->attempts[i] += src->attempts[i];
		dst->ok[i] += src->ok[i];
		hist_merge(&dst->lat[i], &src->lat[i]);
	}
	dst->not_found += src->not_found;
	for (size_t i = 0; i < FAIL_COUNT; i++)
		dst->fail[i] += src->fail[i];
	for (size_t i = 0; i < STATUS_LIMIT; i++)
		dst->status[i] += src->status[i];
	dst->connects += src->connects;
}

static void counters_init(struct counters *c)
{
	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < OP_COUNT; i++)
		hist_init(&c->lat[i]);
}

static double ns_to_ms(uint64_t ns)
{
	return (double)ns / (double)NS_PER_MS;
}

static double per_second(uint64_t n, double s)
{
	return s > 0.0 ? (double)n / s : 0.0;
}

static uint64_t total(const uint64_t *v, size_t n)
{
	uint64_t sum = 0;

	for (size_t i = 0; i < n; i++)
		sum += v[i];
	return sum;
}

static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < ' ')
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

static void json_latency(const char *name, const struct hist *h, bool last)
{
	printf("\"%s\":{\"count\":%llu", name, (unsigned long long)h->count);
	for (size_t i = 0; i < N_PERCENTILES; i++)
		printf(",\"%s\":%.3f", percentile_names[i],
		       ns_to_ms(hist_percentile(h, percentiles[i])));
	printf(",\"max\":%.3f,\"mean\":%.3f}%s", ns_to_ms(h->max),
	       hist_mean(h) / (double)NS_PER_MS, last ? "" : ",");
}

static void report_json(const struct bench *b, const struct results *r)
{
	const struct counters *c = &r->run;
	bool first = true;

	printf("{\"tool\":\"" PROGRAM "\",\"version\":");
	json_string(kvs_version());
	printf(",\"options\":{\"threads\":%u,\"connections\":%u,"
	       "\"duration_s\":%g,\"warmup_s\":%g,\"targets\":[",
	       b->threads, b->connections, b->duration_s, b->warmup_s);
	for (size_t i = 0; i < b->n_targets; i++) {
		if (i > 0)
			putchar(',');
		json_string(b->targets[i].name);
	}
	printf("],\"ring\":");
	if (b->ring_path)
		json_string(b->ring_path);
	else
		printf("null");
	printf(",\"keys\":%llu,\"key_prefix\":", (unsigned long long)b->keys);
	json_string(b->key_prefix);
	printf(",\"dist\":\"%s\",\"read_ratio\":%g,\"value_size\":%zu,"
	       "\"rate\":%g,\"timeout_ms\":%u,\"preload\":%s,\"seed\":%llu",
	       b->dist == DIST_ZIPFIAN ? "zipfian" : "uniform", b->read_ratio,
	       b->value_size, b->rate, b->timeout_ms,
	       b->preload ? "true" : "false", (unsigned long long)b->seed);
	for (size_t op = 0; op < OP_COUNT; op++) {
		printf(",\"%s\":{\"method\":\"%s\",\"url\":",
		       op == OP_READ ? "get" : "put", b->ops[op].method);
		json_string(b->ops[op].url);
		printf("}");
	}
	printf("},\"interrupted\":%s,\"ran\":%s,\"duration_s\":%.3f,",
	       r->interrupted ? "true" : "false", r->ran ? "true" : "false",
	       r->duration_s);
	printf("\"requests\":%llu,\"ok\":%llu,\"reads\":%llu,\"writes\":%llu,"
	       "\"ok_reads\":%llu,\"ok_writes\":%llu,\"not_found\":%llu,",
	       (unsigned long long)r->requests, (unsigned long long)r->ok,
	       (unsigned long long)c->attempts[OP_READ],
	       (unsigned long long)c->attempts[OP_WRITE],
	       (unsigned long long)c->ok[OP_READ],
	       (unsigned long long)c->ok[OP_WRITE],
	       (unsigned long long)c->not_found);
	printf("\"throughput\":%.1f,\"ok_throughput\":%.1f,",
	       per_second(r->requests, r->duration_s),
	       per_second(r->ok, r->duration_s));
	printf("\"errors\":{\"total\":%llu", (unsigned long long)r->errors);
	for (size_t i = 0; i < FAIL_COUNT; i++)
		printf(",\"%s\":%llu", fail_names[i],
		       (unsigned long long)c->fail[i]);
	printf(",\"status\":{");
	for (size_t i = 0; i < STATUS_LIMIT; i++) {
		if (c->status[i] == 0)
			continue;
		printf("%s\"%zu\":%llu", first ? "" : ",", i,
		       (unsigned long long)c->status[i]);
		first = false;
	}
	printf("}},\"connects\":%llu,\"client_cpu_s\":%.3f,"
	       "\"client_wall_s\":%.3f,",
	       (unsigned long long)c->connects, r->cpu_s, r->wall_s);
	printf("\"latency_ms\":{");
	json_latency(op_names[OP_READ], &c->lat[OP_READ], false);
	json_latency(op_names[OP_WRITE], &c->lat[OP_WRITE], false);
	json_latency("all", &r->all, true);
	printf("}");
	if (b->preload) {
		const struct counters *p = &r->pre;

		printf(",\"preload\":{\"keys\":%llu,\"ok\":%llu,"
		       "\"errors\":%llu,\"duration_s\":%.3f}",
		       (unsigned long long)b->keys,
		       (unsigned long long)p->ok[OP_WRITE],
		       (unsigned long long)(p->attempts[OP_WRITE] -
		                            p->ok[OP_WRITE]),
		       r->preload_s);
	}
	printf("}\n");
}

static void text_errors(const struct counters *c, const char *indent)
{
	bool any = false;

	printf("%s", indent);
	for (size_t i = 0; i < FAIL_COUNT; i++)
		printf("%s%s %llu", i ? ", " : "", fail_names[i],
		       (unsigned long long)c->fail[i]);
	printf("; unexpected statuses:");
	for (size_t i = 0; i < STATUS_LIMIT; i++) {
		if (c->status[i] == 0)
			continue;
		printf(" %zu x%llu", i, (unsigned long long)c->status[i]);
		any = true;
	}
	printf("%s\n", any ? "" : " none");
}

static void text_latency(const char *name, const struct hist *h)
{
	printf("  %-6s %10llu", name, (unsigned long long)h->count);
	if (h->count == 0) {
		printf("\n");
		return;
	}
	for (size_t i = 0; i < N_PERCENTILES; i++)
		printf(" %9.3f", ns_to_ms(hist_percentile(h, percentiles[i])));
	printf(" %9.3f %9.3f\n", ns_to_ms(h->max),
	       hist_mean(h) / (double)NS_PER_MS);
}

static void report_text(const struct bench *b, const struct results *r)
{
	const struct counters *c = &r->run;

	printf(PROGRAM " %s: %u thread%s, %u connection%s", kvs_version(),
	       b->threads, b->threads == 1 ? "" : "s", b->connections,
	       b->connections == 1 ? "" : "s");
	if (b->ring)
		printf(", to the primary owner of each key (%s, %zu shards)\n",
		       b->ring_path, b->n_targets);
	else
		printf(" over %s\n",
		       b->hosts_arg ? b->hosts_arg : DEFAULT_HOSTS);
	for (size_t op = 0; op < OP_COUNT; op++) {
		double share =
			op == OP_READ ? b->read_ratio : 1.0 - b->read_ratio;

		if (share > 0.0)
			printf("  %-6s %5.1f%%  %s %s\n",
			       op == OP_READ ? "reads" : "writes",
			       share * PERCENT, b->ops[op].method,
			       b->ops[op].url);
	}
	printf("  keys   %llu %s (%s%0*u...), values of %zu bytes\n",
	       (unsigned long long)b->keys,
	       b->dist == DIST_ZIPFIAN ? "zipfian" : "uniform", b->key_prefix,
	       (int)KEY_DIGITS, 0u, b->value_size);
	if (b->preload) {
		const struct counters *p = &r->pre;

		printf("  preload %llu keys written in %.2f s, %llu failed%s\n",
		       (unsigned long long)p->ok[OP_WRITE], r->preload_s,
		       (unsigned long long)(p->attempts[OP_WRITE] -
		                            p->ok[OP_WRITE]),
		       p->attempts[OP_WRITE] < b->keys ? " (stopped early)"
		                                       : "");
		if (p->attempts[OP_WRITE] > p->ok[OP_WRITE])
			text_errors(p, "          ");
	}
	if (b->rate > 0.0)
		printf("  paced at %g requests/s; latency counted from the "
		       "time each request was due\n",
		       b->rate);
	if (r->preload_failed)
		printf("  not run: the preload failed\n\n");
	else if (!r->ran)
		printf("  interrupted during the preload: not run\n\n");
	else
		printf("  %.2f s measured after %g s of warm-up%s\n\n",
		       r->duration_s, b->warmup_s,
		       r->interrupted ? " (interrupted)" : "");

	printf("  requests %llu, %.1f/s\n", (unsigned long long)r->requests,
	       per_second(r->requests, r->duration_s));
	printf("  ok       %llu, %.1f/s (reads %llu, writes %llu",
	       (unsigned long long)r->ok, per_second(r->ok, r->duration_s),
	       (unsigned long long)c->ok[OP_READ],
	       (unsigned long long)c->ok[OP_WRITE]);
	if (b->allow_404)
		printf("; %llu reads answered 404",
		       (unsigned long long)c->not_found);
	printf(")\n");
	printf("  errors   %llu\n", (unsigned long long)r->errors);
	if (r->errors > 0)
		text_errors(c, "           ");
	printf("  connects %llu (new connections while measuring, failed "
	       "ones included)\n",
	       (unsigned long long)c->connects);
	if (r->ran)
		printf("  client CPU %.2f s in %.2f s of warm-up and "
		       "measurement (%.0f%% of a core)\n",
		       r->cpu_s, r->wall_s,
		       r->wall_s > 0.0 ? r->cpu_s / r->wall_s * PERCENT : 0.0);
	putchar('\n');

	printf("  latency ms  count");
	for (size_t i = 0; i < N_PERCENTILES; i++)
		printf(" %9s", percentile_names[i]);
	printf(" %9s %9s\n", "max", "mean");
	text_latency(op_names[OP_READ], &c->lat[OP_READ]);
	text_latency(op_names[OP_WRITE], &c->lat[OP_WRITE]);
	text_latency("all", &r->all);
}

/* ---- the run ------------------------------------------------------------ */

static double cpu_seconds(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0.0;
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void request_stop(struct bench *b)
{
	uint64_t expected = 0;

	atomic_compare_exchange_strong(&b->stop_ns, &expected, clock_ns());
	atomic_store(&b->stop, true);
}

/*
 * Wait for a signal until deadline (CLOCK_MONOTONIC ns), or until done()
 * is true if given (checked every PRELOAD_POLL_NS). Returns true if a
 * signal came.
 */
static bool wait_signal(const sigset_t *sigs, uint64_t deadline,
                        bool (*done)(const struct bench *),
                        const struct bench *b)
{
	for (;;) {
		uint64_t now = clock_ns(), wait;
		struct timespec ts;

		if ((done != NULL && done(b)) || now >= deadline)
			return false;
		wait = deadline - now;
		if (done != NULL && wait > PRELOAD_POLL_NS)
			wait = PRELOAD_POLL_NS;
		ts.tv_sec = (time_t)(wait / NS_PER_S);
		ts.tv_nsec = (long)(wait % NS_PER_S);
		if (sigtimedwait(sigs, NULL, &ts) > 0)
			return true;
	}
}

static bool preload_finished(const struct bench *b)
{
	return atomic_load(&b->preload_done) == b->threads;
}

static void release_workers(struct bench *b)
{
	pthread_mutex_lock(&b->go_lock);
	b->go = true;
	pthread_cond_broadcast(&b->go_cond);
	pthread_mutex_unlock(&b->go_lock);
}

static void collect(struct bench *b, struct worker **workers,
                    struct results *r)
{
	uint64_t end = b->end_ns, stop = atomic_load(&b->stop_ns);
	const struct counters *c = &r->run;

	for (unsigned i = 0; i < b->threads; i++) {
		counters_add(&r->run, worker_run_counters(workers[i]));
		counters_add(&r->pre, worker_preload_counters(workers[i]));
	}
	hist_merge(&r->all, &c->lat[OP_READ]);
	hist_merge(&r->all, &c->lat[OP_WRITE]);
	if (stop != 0 && stop < end)
		end = stop;
	if (end > b->measure_ns)
		r->duration_s =
			(double)(end - b->measure_ns) / (double)NS_PER_S;
	r->requests = total(c->attempts, OP_COUNT);
	r->ok = total(c->ok, OP_COUNT);
	r->errors = r->requests - r->ok;
}

int main(int argc, char **argv)
{
	static struct bench bench;
	static struct results results;
	struct bench *b = &bench;
	struct results *r = &results;
	struct worker **workers = NULL;
	unsigned started = 0, slot_base = 0;
	uint64_t t0;
	double cpu0;
	sigset_t sigs;
	struct rng rng;
	int status = EXIT_FAILURE;

	b->threads = DEFAULT_THREADS;
	b->connections = DEFAULT_CONNECTIONS;
	b->duration_s = DEFAULT_DURATION_S;
	b->warmup_s = DEFAULT_WARMUP_S;
	b->keys = DEFAULT_KEYS;
	b->key_prefix = DEFAULT_KEY_PREFIX;
	b->value_size = DEFAULT_VALUE_SIZE;
	b->timeout_ms = DEFAULT_TIMEOUT_MS;
	b->seed = DEFAULT_SEED;
	pthread_mutex_init(&b->go_lock, NULL);
	pthread_cond_init(&b->go_cond, NULL);
	parse_options(b, argc, argv);
	if (b->ring_path)
		setup_ring(b);
	else
		setup_hosts(b);
	if (b->dist == DIST_ZIPFIAN)
		zipf_init(&b->zipf, b->keys, ZIPF_THETA);
	rng_seed(&rng, b->seed);
	if (make_values(b, &rng) != 0) {
		fprintf(stderr, PROGRAM ": out of memory\n");
		goto out;
	}
	b->total_slots = b->connections;
	if (b->rate > 0.0)
		b->pace_ns = (uint64_t)((double)b->total_slots *
		                        (double)NS_PER_S / b->rate);
	b->preload_budget = b->keys / PRELOAD_BUDGET_DIVISOR;
	if (b->preload_budget < PRELOAD_MIN_BUDGET)
		b->preload_budget = PRELOAD_MIN_BUDGET;
	counters_init(&r->run);
	counters_init(&r->pre);
	hist_init(&r->all);

	/* The workers inherit the mask: only the main thread takes signals. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	workers = calloc(b->threads, sizeof(*workers));
	if (workers == NULL) {
		fprintf(stderr, PROGRAM ": out of memory\n");
		goto out;
	}
	for (unsigned i = 0; i < b->threads; i++) {
		unsigned slots = b->connections / b->threads +
		                 (i < b->connections % b->threads ? 1u : 0u);

		workers[i] = worker_new(b, slot_base, slots, rng_next(&rng));
		if (workers[i] == NULL) {
			fprintf(stderr,
			        PROGRAM ": cannot set up thread %u: %s\n", i,
			        strerror(errno));
			goto out;
		}
		slot_base += slots;
	}
	t0 = clock_ns();
	for (; started < b->threads; started++) {
		int rc = worker_start(workers[started]);

		if (rc != 0) {
			fprintf(stderr, PROGRAM ": cannot start a thread: %s\n",
			        strerror(rc));
			goto out;
		}
	}

	if (b->preload) {
		if (wait_signal(&sigs, UINT64_MAX, preload_finished, b)) {
			r->interrupted = true;
			request_stop(b);
		}
		r->preload_s = (double)(clock_ns() - t0) / (double)NS_PER_S;
		if (atomic_load(&b->preload_aborted)) {
			fprintf(stderr,
			        PROGRAM ": preload: giving up after %llu "
			        "failed writes\n",
			        (unsigned long long)atomic_load(
				        &b->preload_failures));
			r->preload_failed = true;
			request_stop(b);
		}
	}
	cpu0 = cpu_seconds();
	b->start_ns = clock_ns();
	b->measure_ns = b->start_ns + (uint64_t)(b->warmup_s * NS_PER_S);
	b->end_ns = b->measure_ns + (uint64_t)(b->duration_s * NS_PER_S);
	r->ran = !atomic_load(&b->stop);
	if (!r->ran)
		b->end_ns = b->measure_ns = b->start_ns;
	release_workers(b);
	if (!atomic_load(&b->stop) && wait_signal(&sigs, b->end_ns, NULL, b)) {
		r->interrupted = true;
		request_stop(b);
	}
	for (unsigned i = 0; i < started; i++)
		worker_join(workers[i]);
	started = 0;
	r->wall_s = (double)(clock_ns() - b->start_ns) / (double)NS_PER_S;
	r->cpu_s = cpu_seconds() - cpu0;

	collect(b, workers, r);
	if (b->json)
		report_json(b, r);
	else
		report_text(b, r);
	fflush(stdout);
	status = r->preload_failed ? EXIT_FAILURE : EXIT_SUCCESS;

out:
	if (started > 0) {
		/* A thread failed to start: end the others. */
		request_stop(b);
		release_workers(b);
		for (unsigned i = 0; i < started; i++)
			worker_join(workers[i]);
	}
	for (unsigned i = 0; workers != NULL && i < b->threads; i++)
		worker_free(workers[i]);
	free(workers);
	for (size_t i = 0; i < b->n_targets; i++)
		free((char *)b->targets[i].name);
	free(b->targets);
	kvs_ring_free(b->ring);
	kvs_config_free(b->config);
	for (size_t op = 0; op < OP_COUNT; op++) {
		tmpl_free(&b->ops[op].authority);
		tmpl_free(&b->ops[op].path);
		tmpl_free(&b->ops[op].body);
		free(b->ops[op].path_text);
	}
	free(b->headers);
	free(b->values);
	free(b->values_b64);
	pthread_cond_destroy(&b->go_cond);
	pthread_mutex_destroy(&b->go_lock);
	return status;
}
