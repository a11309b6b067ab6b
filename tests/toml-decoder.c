/*
 * toml-decoder.c - the "decoder" program of the toml-test conformance suite.
 *
 * Reads one TOML document on standard input. When it parses, prints it as
 * toml-test's tagged JSON on standard output and exits 0: a table is a JSON
 * object, an array a JSON array, and every other value an object
 * {"type": T, "value": S} with S a string. When it does not, prints
 * "line:col: message" on standard error and exits 1.
 *
 * The JSON is written here rather than built with cJSON: TOML strings may
 * contain NUL characters, which cJSON's NUL-terminated strings cannot hold,
 * and writing it directly also keeps keys in the order of the document.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "toml.h"

/* Standard input is read in pieces of this size. */
#define READ_CHUNK 65536

/* Digits a double needs at most to read back as the same value. */
#define DOUBLE_MAX_DIGITS 17

/* Room for a formatted number or date. */
#define NUM_SIZE 64

/* Nanosecond digits, and the minutes of an hour for offsets. */
#define NANO_DIGITS      9
#define MINUTES_PER_HOUR 60

/* The one-letter JSON escapes of control characters, by character. */
static const char *json_escape(unsigned char c)
{
	switch (c) {
	case '\b':
		return "\\b";
	case '\f':
		return "\\f";
	case '\n':
		return "\\n";
	case '\r':
		return "\\r";
	case '\t':
		return "\\t";
	case '"':
		return "\\\"";
	case '\\':
		return "\\\\";
	default:
		return NULL;
	}
}

/* Writes n bytes (which may include NUL) as a JSON string. */
static void put_string(FILE *f, const char *s, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		const char *esc = json_escape(c);

		if (esc != NULL)
			fputs(esc, f);
		else if (c < ' ')
			fprintf(f, "\\u%04x", (unsigned)c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

/* The shortest "%g" text of d that reads back as d. */
static void format_float(double d, char *out, size_t size)
{
	if (isnan(d)) {
		snprintf(out, size, "nan");
		return;
	}
	if (isinf(d)) {
		snprintf(out, size, "%s", d < 0 ? "-inf" : "inf");
		return;
	}
	for (int prec = 1; prec <= DOUBLE_MAX_DIGITS; prec++) {
		snprintf(out, size, "%.*g", prec, d);
		if (strtod(out, NULL) == d)
			return;
	}
}

static void put_date(FILE *f, const kvs__toml_datetime *dt)
{
	fprintf(f, "%04d-%02d-%02d", dt->year, dt->month, dt->day);
}

/* The time, with as many fraction digits as were written (at most 9). */
static void put_time(FILE *f, const kvs__toml_datetime *dt)
{
	char frac[NANO_DIGITS + 1];
	int digits = dt->frac_digits;

	fprintf(f, "%02d:%02d:%02d", dt->hour, dt->minute, dt->second);
	if (digits > 0) {
		snprintf(frac, sizeof(frac), "%09ld", dt->nanosecond);
		if (digits > NANO_DIGITS)
			digits = NANO_DIGITS;
		fprintf(f, ".%.*s", digits, frac);
	}
}

static void put_offset(FILE *f, int minutes)
{
	int m = minutes < 0 ? -minutes : minutes;

	if (minutes == 0)
		fputc('Z', f);
	else
		fprintf(f, "%c%02d:%02d", minutes < 0 ? '-' : '+',
		        m / MINUTES_PER_HOUR, m % MINUTES_PER_HOUR);
}

/* Writes the tag object of a scalar value. */
static void put_scalar(FILE *f, const kvs__toml_value *v)
{
	static const char *const tags[] = {
	    [KVS_TOML_STRING] = "string",
	    [KVS_TOML_INTEGER] = "integer",
	    [KVS_TOML_FLOAT] = "float",
	    [KVS_TOML_BOOL] = "bool",
	    [KVS_TOML_DATETIME] = "datetime",
	    [KVS_TOML_DATETIME_LOCAL] = "datetime-local",
	    [KVS_TOML_DATE_LOCAL] = "date-local",
	    [KVS_TOML_TIME_LOCAL] = "time-local",
	};
	char num[NUM_SIZE];

	fprintf(f, "{\"type\":\"%s\",\"value\":", tags[v->type]);
	switch (v->type) {
	case KVS_TOML_STRING:
		put_string(f, v->u.str.ptr, v->u.str.len);
		break;
	case KVS_TOML_INTEGER:
		fprintf(f, "\"%" PRId64 "\"", v->u.integer);
		break;
	case KVS_TOML_FLOAT:
		format_float(v->u.flt, num, sizeof(num));
		fprintf(f, "\"%s\"", num);
		break;
	case KVS_TOML_BOOL:
		fputs(v->u.boolean ? "\"true\"" : "\"false\"", f);
		break;
	case KVS_TOML_DATETIME:
	case KVS_TOML_DATETIME_LOCAL:
		fputc('"', f);
		put_date(f, &v->u.dt);
		fputc('T', f);
		put_time(f, &v->u.dt);
		if (v->type == KVS_TOML_DATETIME)
			put_offset(f, v->u.dt.offset_minutes);
		fputc('"', f);
		break;
	case KVS_TOML_DATE_LOCAL:
		fputc('"', f);
		put_date(f, &v->u.dt);
		fputc('"', f);
		break;
	case KVS_TOML_TIME_LOCAL:
		fputc('"', f);
		put_time(f, &v->u.dt);
		fputc('"', f);
		break;
	default:
		fputs("null", f);
		break;
	}
	fputc('}', f);
}

/* Writes any value; the parser bounds the nesting, so recursion is safe. */
static void put_value(FILE *f, const kvs__toml_value *v)
{
	switch (v->type) {
	case KVS_TOML_TABLE:
		fputc('{', f);
		for (size_t i = 0; i < v->u.tab.len; i++) {
			if (i > 0)
				fputc(',', f);
			put_string(f, v->u.tab.items[i].key,
			           v->u.tab.items[i].key_len);
			fputc(':', f);
			put_value(f, v->u.tab.items[i].value);
		}
		fputc('}', f);
		break;
	case KVS_TOML_ARRAY:
		fputc('[', f);
		for (size_t i = 0; i < v->u.arr.len; i++) {
			if (i > 0)
				fputc(',', f);
			put_value(f, v->u.arr.items[i]);
		}
		fputc(']', f);
		break;
	default:
		put_scalar(f, v);
		break;
	}
}

/* Reads all of f; returns a malloc'd buffer or NULL (out of memory). */
static char *read_all(FILE *f, size_t *len)
{
	size_t cap = READ_CHUNK, n = 0, got;
	char *buf = malloc(cap), *bigger;

	if (buf == NULL)
		return NULL;
	for (;;) {
		if (cap - n < READ_CHUNK) {
			bigger =
			    cap <= SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
			if (bigger == NULL) {
				free(buf);
				return NULL;
			}
			buf = bigger;
			cap *= 2;
		}
		got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (got == 0)
			break;
	}
	*len = n;
	return buf;
}

int main(void)
{
	kvs__toml_value *root = NULL;
	kvs__toml_error err;
	size_t len = 0;
	char *text;
	int rc;

	text = read_all(stdin, &len);
	if (text == NULL || ferror(stdin)) {
		fprintf(stderr, "cannot read standard input\n");
		free(text);
		return EXIT_FAILURE;
	}
	rc = kvs__toml_parse(text, len, &root, &err);
	free(text);
	if (rc != 0) {
		fprintf(stderr, "%u:%u: %s\n", err.line, err.col, err.msg);
		return EXIT_FAILURE;
	}
	put_value(stdout, root);
	fputc('\n', stdout);
	kvs__toml_free(root);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "cannot write standard output\n");
		return EXIT_FAILURE;
	}
	return EXIT_SUCCESS;
}
