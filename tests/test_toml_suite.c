/*
 * test_toml_suite.c - the toml-test conformance suite for TOML 1.0.0.
 *
 * Reads the case list files-toml-1.0.0 of the suite (in tests/toml-test of
 * the source tree, or in $KVS_TOML_TEST_DIR) and runs the toml-decoder
 * program of the build tree on every case, with the case on its standard
 * input and at most CASE_TIMEOUT_MS to finish:
 *
 *   - valid/X.toml must exit 0 and print tagged JSON equal to valid/X.json,
 *     compared as JSON values (see json_equal());
 *   - invalid/X.toml must exit with a non-zero status (not by a signal)
 *     and print exactly one "line:col: message" line on standard error.
 *
 * Any other output on standard error fails a case, so that reports of the
 * sanitizers the decoder may be built with are never mistaken for a clean
 * run.
 *
 * The test fails naming every case that does not behave, and also any case
 * of the skip list that passes, so that the list stays honest.
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* Each run of the decoder is killed after this long. */
#define CASE_TIMEOUT_MS 10000

/* The whole suite must finish within this (meson allows 300 s). */
#define SUITE_TIMEOUT_S 280

#define PATH_SIZE   4096
#define READ_CHUNK  4096
#define REASON_SIZE 512
#define WHERE_SIZE  256

/* Bytes of unexpected decoder output quoted in a failure reason. */
#define OUTPUT_EXCERPT 200

/* A tagged scalar is an object of two members, "type" and "value". */
#define TAG_MEMBERS 2

/* Milliseconds and nanoseconds in time units. */
#define MS_PER_S  1000
#define NS_PER_MS 1000000L
#define NS_PER_S  1000000000L

/* Date-time arithmetic. */
#define NANO_DIGITS      9
#define SECONDS_PER_DAY  86400
#define SECONDS_PER_HOUR 3600
#define SECONDS_PER_MIN  60
#define DATE_LEN         10 /* YYYY-MM-DD */
#define YEAR_DIGITS      4
#define FIELD_DIGITS     2
#define MONTHS_PER_YEAR  12
#define FEBRUARY         2
#define DECIMAL          10
#define LEAP_EVERY       4
#define LEAP_CENTURY     100
#define LEAP_QUAD_CENT   400
#define DAYS_PER_YEAR    365

/* A case this decoder cannot pass, with the reason. */
struct skip {
	const char *path;
	const char *reason;
};

/*
 * Cases that are known to fail and why. The goal is to keep this empty:
 * only the terminating entry is here.
 */
static const struct skip skips[] = {
    {NULL, NULL},
};

/*
 * cJSON keeps strings NUL-terminated, so it would cut a string at a
 * "\u0000" escape and hide any difference after it. Before parsing, such
 * escapes are rewritten to the escape of U+10FFFD (a private-use character
 * the suite does not otherwise use: checked) so every byte is compared.
 */
#define NUL_STANDIN     "\\uDBFF\\uDFFD"
#define NUL_STANDIN_RAW "\xF4\x8F\xBF\xBD"
#define NUL_ESCAPE      "\\u0000"

/* What a run of the decoder gave. */
struct run {
	int status; /* exit status, or -1 when killed or not run */
	int timed_out;
	char *out; /* standard output, NUL-terminated */
	size_t out_len;
	char *err; /* standard error, NUL-terminated */
	size_t err_len;
};

/* A growing list of failure lines. */
struct report {
	char *text;
	size_t len;
	int count;
};

static void report_add(struct report *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void report_add(struct report *r, const char *fmt, ...)
{
	char line[REASON_SIZE + PATH_SIZE];
	va_list ap;
	size_t n;
	char *t;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	n = strlen(line);
	t = realloc(r->text, r->len + n + sizeof("\n"));
	ck_assert_ptr_nonnull(t);
	r->text = t;
	memcpy(r->text + r->len, line, n);
	r->len += n;
	r->text[r->len++] = '\n';
	r->text[r->len] = '\0';
	r->count++;
}

/* snprintf for paths: the test fails if the path does not fit. */
static void format_path(char *out, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void format_path(char *out, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(out, size, fmt, ap);
	va_end(ap);
	ck_assert_msg(n >= 0 && (size_t)n < size, "path too long: %s", out);
}

/* snprintf for failure reasons, which may be cut short. */
static void format_reason(char *out, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void format_reason(char *out, size_t size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(out, size, fmt, ap);
	va_end(ap);
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * MS_PER_S + ts.tv_nsec / NS_PER_MS;
}

/* Appends what fd has to read to *buf; returns 0 at end of file. */
static int drain(int fd, char **buf, size_t *len)
{
	char chunk[READ_CHUNK];
	ssize_t n = read(fd, chunk, sizeof(chunk));
	char *b;

	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? 1 : 0;
	if (n == 0)
		return 0;
	b = realloc(*buf, *len + (size_t)n + 1);
	ck_assert_ptr_nonnull(b);
	memcpy(b + *len, chunk, (size_t)n);
	*len += (size_t)n;
	b[*len] = '\0';
	*buf = b;
	return 1;
}

/* Runs the decoder with the file at path on its standard input. */
static void run_decoder(const char *decoder, const char *path, struct run *r)
{
	int out[2] = {-1, -1}, err[2] = {-1, -1}, in = -1, status;
	char *argv[] = {(char *)"toml-decoder", NULL};
	posix_spawn_file_actions_t fa;
	struct pollfd pfd[2];
	long deadline;
	pid_t pid;

	memset(r, 0, sizeof(*r));
	r->status = -1;
	in = open(path, O_RDONLY | O_CLOEXEC);
	ck_assert_msg(in >= 0, "cannot open %s: %s", path, strerror(errno));
	ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(err, O_CLOEXEC), 0);
	ck_assert_int_eq(posix_spawn_file_actions_init(&fa), 0);
	posix_spawn_file_actions_adddup2(&fa, in, STDIN_FILENO);
	posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
	posix_spawn_file_actions_adddup2(&fa, err[1], STDERR_FILENO);
	ck_assert_msg(posix_spawn(&pid, decoder, &fa, NULL, argv, environ) == 0,
	              "cannot run %s", decoder);
	posix_spawn_file_actions_destroy(&fa);
	close(in);
	close(out[1]);
	close(err[1]);

	/* Collect both outputs until they close or the time is up. */
	deadline = now_ms() + CASE_TIMEOUT_MS;
	pfd[0].fd = out[0];
	pfd[1].fd = err[0];
	while (pfd[0].fd >= 0 || pfd[1].fd >= 0) {
		long left = deadline - now_ms();

		if (left <= 0) {
			r->timed_out = 1;
			kill(pid, SIGKILL);
			break;
		}
		pfd[0].events = pfd[1].events = POLLIN;
		if (poll(pfd, sizeof(pfd) / sizeof(pfd[0]), (int)left) < 0)
			continue;
		if (pfd[0].fd >= 0 && pfd[0].revents != 0 &&
		    !drain(out[0], &r->out, &r->out_len))
			pfd[0].fd = -1;
		if (pfd[1].fd >= 0 && pfd[1].revents != 0 &&
		    !drain(err[0], &r->err, &r->err_len))
			pfd[1].fd = -1;
	}
	close(out[0]);
	close(err[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!r->timed_out && WIFEXITED(status))
		r->status = WEXITSTATUS(status);
}

static void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
}

/* A malloc'd copy of a file's contents, or NULL. */
static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n = 0;

	if (f == NULL)
		return NULL;
	while (drain(fileno(f), &buf, &n))
		;
	fclose(f);
	if (buf == NULL)
		buf = calloc(1, 1);
	*len = n;
	return buf;
}

/*
 * JSON text with every "\u0000" escape replaced by NUL_STANDIN; NULL when
 * the text already holds U+10FFFD, which would make the stand-in ambiguous.
 */
static char *protect_nul(const char *json, size_t len)
{
	size_t cap = len * 2 + 1, n = 0;
	char *out;

	if (memmem(json, len, NUL_STANDIN_RAW, strlen(NUL_STANDIN_RAW)) ||
	    strcasestr(json, "\\udbff\\udffd") != NULL)
		return NULL;
	out = malloc(cap);
	ck_assert_ptr_nonnull(out);
	for (size_t i = 0; i < len; i++) {
		/* A backslash always starts a two-character escape or \uXXXX.
		 */
		if (json[i] == '\\' && i + 1 < len) {
			if (len - i >= strlen(NUL_ESCAPE) &&
			    memcmp(json + i, NUL_ESCAPE, strlen(NUL_ESCAPE)) ==
			        0) {
				memcpy(out + n, NUL_STANDIN,
				       strlen(NUL_STANDIN));
				n += strlen(NUL_STANDIN);
				i += strlen(NUL_ESCAPE) - 1;
				continue;
			}
			out[n++] = json[i++];
		}
		out[n++] = json[i];
	}
	out[n] = '\0';
	return out;
}

/* Parses JSON text with NUL escapes protected; NULL when it cannot. */
static cJSON *parse_json(const char *text, size_t len)
{
	char *safe = protect_nul(text, len);
	cJSON *j;

	if (safe == NULL)
		return NULL;
	j = cJSON_Parse(safe);
	free(safe);
	return j;
}

/* Whether o is a {"type": "...", "value": "..."} scalar. */
static int is_tagged(const cJSON *o)
{
	return cJSON_IsObject(o) && cJSON_GetArraySize(o) == TAG_MEMBERS &&
	       cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, "type")) &&
	       cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, "value"));
}

static int parse_int(const char *s, long long *out)
{
	char *end;

	errno = 0;
	*out = strtoll(s, &end, DECIMAL);
	return errno == 0 && end != s && *end == '\0';
}

/* A tagged float: a decimal number, or inf and nan with optional sign. */
static int parse_float(const char *s, double *out)
{
	const char *body = s;
	int neg = *s == '-';
	char *end;

	if (*s == '+' || *s == '-')
		body++;
	if (strcmp(body, "inf") == 0) {
		*out = neg ? -INFINITY : INFINITY;
		return 1;
	}
	if (strcmp(body, "nan") == 0) {
		*out = NAN;
		return 1;
	}
	errno = 0;
	*out = strtod(s, &end);
	return end != s && *end == '\0';
}

static int floats_equal(double a, double b)
{
	if (isnan(a) || isnan(b))
		return isnan(a) && isnan(b);
	return a == b && signbit(a) == signbit(b);
}

/* Reads exactly n digits at *s into *v. */
static int fixed(const char **s, int n, int *v)
{
	*v = 0;
	for (int i = 0; i < n; i++) {
		if ((*s)[i] < '0' || (*s)[i] > '9')
			return 0;
		*v = *v * DECIMAL + ((*s)[i] - '0');
	}
	*s += n;
	return 1;
}

static int is_leap(long long y)
{
	return (y % LEAP_EVERY == 0 && y % LEAP_CENTURY != 0) ||
	       y % LEAP_QUAD_CENT == 0;
}

/*
 * A day number of a date of years 0000 to 9999 (the range TOML allows),
 * counted from 0000-01-01: only differences between such numbers matter.
 */
static long long day_number(int y, int m, int d)
{
	static const int days_before_month[] = {0,   31,  59,  90,  120, 151,
	                                        181, 212, 243, 273, 304, 334};
	long long prev = y - 1;
	long long leaps = 0;

	/* Year 0 is a leap year too, so it counts for the years after it. */
	if (y > 0)
		leaps = prev / LEAP_EVERY - prev / LEAP_CENTURY +
		        prev / LEAP_QUAD_CENT + 1;

	return (long long)y * DAYS_PER_YEAR + leaps + days_before_month[m - 1] +
	       (m > FEBRUARY && is_leap(y)) + d - 1;
}

/* An RFC 3339 offset date-time as seconds and nanoseconds since 1970. */
static int parse_instant(const char *s, long long *sec, long *nano)
{
	int y, mo, d, h, mi, se, oh, om, sign;
	long ns = 0, scale = NS_PER_S;

	if (!fixed(&s, YEAR_DIGITS, &y) || *s++ != '-' ||
	    !fixed(&s, FIELD_DIGITS, &mo) || *s++ != '-' ||
	    !fixed(&s, FIELD_DIGITS, &d) || mo < 1 || mo > MONTHS_PER_YEAR)
		return 0;
	if (*s != 'T' && *s != 't' && *s != ' ')
		return 0;
	s++;
	if (!fixed(&s, FIELD_DIGITS, &h) || *s++ != ':' ||
	    !fixed(&s, FIELD_DIGITS, &mi) || *s++ != ':' ||
	    !fixed(&s, FIELD_DIGITS, &se))
		return 0;
	if (*s == '.') {
		for (s++; *s >= '0' && *s <= '9'; s++) {
			scale /= DECIMAL;
			ns += (*s - '0') * scale;
		}
	}
	*sec = day_number(y, mo, d) * SECONDS_PER_DAY + h * SECONDS_PER_HOUR +
	       mi * SECONDS_PER_MIN + se;
	*nano = ns;
	if ((*s == 'Z' || *s == 'z') && s[1] == '\0')
		return 1;
	if (*s != '+' && *s != '-')
		return 0;
	sign = *s++ == '-' ? -1 : 1;
	if (!fixed(&s, FIELD_DIGITS, &oh) || *s++ != ':' ||
	    !fixed(&s, FIELD_DIGITS, &om) || *s != '\0')
		return 0;
	*sec -= sign * (oh * SECONDS_PER_HOUR + om * SECONDS_PER_MIN);
	return 1;
}

/*
 * A local date, time or date-time in one spelling: 'T' between date and
 * time, and no trailing zeros in the fraction of a second ("07:32:00.500"
 * and "07:32:00.5" are the same time, "07:32:00.000" is "07:32:00").
 */
static void normalize_local(const char *s, char *out, size_t size)
{
	char *dot, *end;

	snprintf(out, size, "%s", s);
	if (strlen(out) > DATE_LEN && out[YEAR_DIGITS] == '-' &&
	    (out[DATE_LEN] == ' ' || out[DATE_LEN] == 't'))
		out[DATE_LEN] = 'T';
	dot = strchr(out, '.');
	if (dot == NULL)
		return;
	end = dot + strlen(dot);
	while (end > dot + 1 && end[-1] == '0')
		*--end = '\0';
	if (end == dot + 1)
		*dot = '\0';
}

/* Whether two tagged scalars of the given type have the same value. */
static int scalars_equal(const char *type, const char *exp, const char *got)
{
	char a[WHERE_SIZE], b[WHERE_SIZE];
	long long ia, ib, sa, sb;
	double fa, fb;
	long na, nb;

	if (strcmp(type, "integer") == 0)
		return parse_int(exp, &ia) && parse_int(got, &ib) && ia == ib;
	if (strcmp(type, "float") == 0)
		return parse_float(exp, &fa) && parse_float(got, &fb) &&
		       floats_equal(fa, fb);
	if (strcmp(type, "datetime") == 0)
		return parse_instant(exp, &sa, &na) &&
		       parse_instant(got, &sb, &nb) && sa == sb && na == nb;
	if (strcmp(type, "datetime-local") == 0 ||
	    strcmp(type, "date-local") == 0 ||
	    strcmp(type, "time-local") == 0) {
		normalize_local(exp, a, sizeof(a));
		normalize_local(got, b, sizeof(b));
		return strcmp(a, b) == 0;
	}
	/* string and bool: the exact text. */
	return strcmp(exp, got) == 0;
}

/* Appends ".key" or "[i]" to a path for messages. */
static void path_push(char *path, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void path_push(char *path, size_t size, const char *fmt, ...)
{
	size_t n = strlen(path);
	va_list ap;

	if (n + 1 >= size)
		return;
	va_start(ap, fmt);
	vsnprintf(path + n, size - n, fmt, ap);
	va_end(ap);
}

/*
 * Compares decoded JSON values: objects as key sets regardless of order,
 * arrays in order, tagged scalars by type and by value as the type says.
 * On a difference, writes where and what into why.
 */
static int json_equal(const cJSON *exp, const cJSON *got, char *path, char *why,
                      size_t why_size)
{
	size_t mark = strlen(path);
	const cJSON *e, *g;
	int i = 0;

	if (is_tagged(exp)) {
		const char *et, *gt, *ev, *gv;

		if (!is_tagged(got)) {
			format_reason(why, why_size,
			              "at '%s': expected a scalar", path);
			return 0;
		}
		et = cJSON_GetObjectItemCaseSensitive(exp, "type")->valuestring;
		gt = cJSON_GetObjectItemCaseSensitive(got, "type")->valuestring;
		ev =
		    cJSON_GetObjectItemCaseSensitive(exp, "value")->valuestring;
		gv =
		    cJSON_GetObjectItemCaseSensitive(got, "value")->valuestring;
		if (strcmp(et, gt) != 0 || !scalars_equal(et, ev, gv)) {
			format_reason(why, why_size,
			              "at '%s': expected %s '%s', got %s '%s'",
			              path, et, ev, gt, gv);
			return 0;
		}
		return 1;
	}
	if (cJSON_IsObject(exp)) {
		if (!cJSON_IsObject(got) || is_tagged(got) ||
		    cJSON_GetArraySize(exp) != cJSON_GetArraySize(got)) {
			format_reason(why, why_size,
			              "at '%s': expected a table of %d keys",
			              path, cJSON_GetArraySize(exp));
			return 0;
		}
		cJSON_ArrayForEach(e, exp)
		{
			g = cJSON_GetObjectItemCaseSensitive(got, e->string);
			path_push(path, WHERE_SIZE, ".%s", e->string);
			if (g == NULL) {
				format_reason(why, why_size, "missing key '%s'",
				              path);
				return 0;
			}
			if (!json_equal(e, g, path, why, why_size))
				return 0;
			path[mark] = '\0';
		}
		return 1;
	}
	if (cJSON_IsArray(exp)) {
		if (!cJSON_IsArray(got) ||
		    cJSON_GetArraySize(exp) != cJSON_GetArraySize(got)) {
			format_reason(why, why_size,
			              "at '%s': expected an array of %d items",
			              path, cJSON_GetArraySize(exp));
			return 0;
		}
		g = got->child;
		cJSON_ArrayForEach(e, exp)
		{
			path_push(path, WHERE_SIZE, "[%d]", i++);
			if (!json_equal(e, g, path, why, why_size))
				return 0;
			path[mark] = '\0';
			g = g->next;
		}
		return 1;
	}
	format_reason(why, why_size,
	              "at '%s': unexpected JSON in the expected file", path);
	return 0;
}

/* The first line of a decoder's error output, for messages. */
static const char *first_line(const struct run *r, char *buf, size_t size)
{
	const char *e = r->err != NULL ? r->err : "";

	snprintf(buf, size, "%.*s", (int)strcspn(e, "\n"), e);
	return buf;
}

/* Runs one valid case; returns 1 when it passes, else fills why. */
static int run_valid(const char *decoder, const char *dir, const char *name,
                     char *why, size_t why_size)
{
	char toml[PATH_SIZE], json[PATH_SIZE], path[WHERE_SIZE] = "";
	char line[REASON_SIZE];
	cJSON *exp = NULL, *got = NULL;
	size_t len = 0;
	char *text;
	struct run r;
	int ok = 0;

	format_path(toml, sizeof(toml), "%s/%s", dir, name);
	format_path(json, sizeof(json), "%s/%.*s.json", dir,
	            (int)(strlen(name) - strlen(".toml")), name);
	run_decoder(decoder, toml, &r);
	if (r.timed_out) {
		format_reason(why, why_size, "timed out");
		goto out;
	}
	if (r.status != 0) {
		format_reason(why, why_size, "rejected (status %d): %s",
		              r.status, first_line(&r, line, sizeof(line)));
		goto out;
	}
	if (r.err_len > 0) {
		format_reason(why, why_size, "accepted, but wrote errors: %s",
		              first_line(&r, line, sizeof(line)));
		goto out;
	}
	text = read_file(json, &len);
	if (text == NULL) {
		format_reason(why, why_size, "cannot read %s", json);
		goto out;
	}
	exp = parse_json(text, len);
	free(text);
	got = r.out != NULL ? parse_json(r.out, r.out_len) : NULL;
	if (exp == NULL || got == NULL) {
		format_reason(why, why_size,
		              "%s is not JSON the test can compare",
		              exp == NULL ? "the expected file" : "the output");
		goto out;
	}
	ok = json_equal(exp, got, path, why, why_size);
out:
	cJSON_Delete(exp);
	cJSON_Delete(got);
	run_free(&r);
	return ok;
}

/* Skips the decimal digits at *s; whether there was at least one. */
static int skip_number(const char **s)
{
	const char *start = *s;

	while (**s >= '0' && **s <= '9')
		(*s)++;
	return *s > start;
}

/*
 * Whether a decoder's error output is exactly one "line:col: message" line.
 * Anything else, such as a sanitizer's report, means the run was not clean.
 */
static int is_error_line(const char *s)
{
	const char *nl;

	if (s == NULL || !skip_number(&s) || *s++ != ':' || !skip_number(&s) ||
	    *s++ != ':' || *s++ != ' ')
		return 0;
	nl = strchr(s, '\n');
	return nl != NULL && nl > s && nl[1] == '\0';
}

/* Runs one invalid case; returns 1 when it is rejected cleanly. */
static int run_invalid(const char *decoder, const char *dir, const char *name,
                       char *why, size_t why_size)
{
	char toml[PATH_SIZE];
	struct run r;
	int ok;

	format_path(toml, sizeof(toml), "%s/%s", dir, name);
	run_decoder(decoder, toml, &r);
	ok = !r.timed_out && r.status > 0 && is_error_line(r.err);
	if (r.timed_out)
		format_reason(why, why_size, "timed out");
	else if (r.status < 0)
		format_reason(why, why_size, "the decoder died");
	else if (r.status == 0)
		format_reason(why, why_size, "accepted");
	else if (!ok)
		format_reason(why, why_size,
		              "rejected, but the error output is not one "
		              "\"line:col: message\" line: %.*s",
		              OUTPUT_EXCERPT, r.err != NULL ? r.err : "(none)");
	run_free(&r);
	return ok;
}

static const struct skip *find_skip(const char *name)
{
	for (const struct skip *s = skips; s->path != NULL; s++) {
		if (strcmp(s->path, name) == 0)
			return s;
	}
	return NULL;
}

static int has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

START_TEST(conformance)
{
	const char *build = getenv("KVS_BUILD_ROOT");
	const char *source = getenv("KVS_SOURCE_ROOT");
	const char *override = getenv("KVS_TOML_TEST_DIR");
	char dir[PATH_SIZE], decoder[PATH_SIZE], list[PATH_SIZE];
	char name[PATH_SIZE], why[REASON_SIZE];
	int valid = 0, valid_ok = 0, invalid = 0, invalid_ok = 0;
	int skipped = 0;
	struct report rep = {NULL, 0, 0};
	FILE *f;

	ck_assert_msg(build != NULL, "KVS_BUILD_ROOT is not set (run through "
	                             "meson test)");
	if (override != NULL && *override != '\0') {
		format_path(dir, sizeof(dir), "%s", override);
	} else {
		ck_assert_msg(source != NULL, "KVS_SOURCE_ROOT is not set (run "
		                              "through meson test)");
		format_path(dir, sizeof(dir), "%s/tests/toml-test", source);
	}
	format_path(decoder, sizeof(decoder), "%s/tests/toml-decoder", build);
	format_path(list, sizeof(list), "%s/files-toml-1.0.0", dir);
	ck_assert_msg(access(decoder, X_OK) == 0, "no decoder at %s", decoder);
	f = fopen(list, "r");
	ck_assert_msg(f != NULL,
	              "the toml-test suite is missing: cannot open %s", list);

	while (fgets(name, sizeof(name), f) != NULL) {
		const struct skip *skip;
		int is_valid, ok;

		name[strcspn(name, "\r\n")] = '\0';
		if (!has_suffix(name, ".toml"))
			continue;
		is_valid = strncmp(name, "valid/", strlen("valid/")) == 0;
		if (!is_valid && strncmp(name, "invalid/", strlen("invalid/")))
			continue;
		why[0] = '\0';
		ok = is_valid
		         ? run_valid(decoder, dir, name, why, sizeof(why))
		         : run_invalid(decoder, dir, name, why, sizeof(why));
		valid += is_valid;
		invalid += !is_valid;
		skip = find_skip(name);
		if (skip != NULL && ok) {
			report_add(&rep, "%s: on the skip list (%s) but passes",
			           name, skip->reason);
		} else if (skip != NULL) {
			skipped++;
		} else if (!ok) {
			report_add(&rep, "%s: %s", name, why);
		}
		if (ok && is_valid)
			valid_ok++;
		else if (ok)
			invalid_ok++;
	}
	fclose(f);

	printf("toml-test 1.0: valid %d/%d passed, invalid %d/%d rejected, "
	       "%d skipped\n",
	       valid_ok, valid, invalid_ok, invalid, skipped);
	fflush(stdout);
	if (rep.count > 0) {
		fprintf(stderr, "%s", rep.text);
		fflush(stderr);
	}
	ck_assert_msg(valid + invalid > 0, "no cases in %s", list);
	ck_assert_msg(rep.count == 0, "%d toml-test case(s) failed:\n%s",
	              rep.count, rep.text);
	free(rep.text);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("toml-suite");
	TCase *tc = tcase_create("toml-test");
	SRunner *sr;
	int failed;

	tcase_set_timeout(tc, SUITE_TIMEOUT_S);
	tcase_add_test(tc, conformance);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
