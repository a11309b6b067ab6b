/*
 * batch_parse.c - a batch document into operations, with bounded work.
 *
 * A batch body may be as large as two values and a little more (32 MiB
 * by default), and cJSON builds a node of some 64 bytes for every JSON
 * value it reads: {"ops":[0,0,0,...]} made 16 million of them, over a
 * gigabyte and seconds of work, before anybody counted the operations.
 *
 * So the text is first read once by a strict JSON scanner (RFC 8259) that
 * knows the shape of a batch and allocates nothing: an object (depth 1)
 * whose "ops" member is an array (depth 2) of operations (depth 3) of a
 * few scalar fields. It stops at the first byte that shows any of
 *
 *   - text that is not JSON, strings with raw control characters
 *     included (cJSON would take them, and cut a key at a raw NUL);
 *   - a string holding \u0000 (cJSON would cut it there too);
 *   - nesting deeper than BATCH_MAX_DEPTH;
 *   - more than max_ops elements in "ops" (KVS_ETOOMANY);
 *   - more than BATCH_VALUES_PER_OP values in one operation, or more
 *     than BATCH_VALUES_OUTSIDE values outside the operations;
 *   - "ops" twice, or not an array.
 *
 * Only a document that passes goes to cJSON, which then builds at most
 * max_ops * BATCH_VALUES_PER_OP + BATCH_VALUES_OUTSIDE nodes, plus copies
 * of strings no longer than the text. The scan is one pass over the bytes
 * with a few words of state: no recursion, no allocation.
 */
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch_parse.h"
#include "protocol.h"
#include "util.h"

#define NOT_A_BATCH "the body must be JSON: {\"ops\": [...]}"
#define NUL_ESCAPE                                                             \
	"a string holds \\u0000: send keys and values with NUL bytes as "      \
	"\"key_b64\" or \"value_b64\""

/* ------------------------------------------------------------------ */
/* The scan                                                             */

struct scanner {
	const char *p;
	size_t len;
	size_t i; /* the next byte */
	size_t max_ops;
	char open[BATCH_MAX_DEPTH]; /* '{' or '[' of each open container */
	size_t depth;
	int in_ops;       /* open[1] is the "ops" array */
	int have_ops;     /* "ops" was seen */
	size_t n_ops;     /* elements of "ops" so far */
	size_t op_values; /* values in the current operation, itself too */
	size_t outside;   /* values outside the operations */
	char *why;
};

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int refuse(struct scanner *s, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->why, BATCH_WHY_MAX, fmt, ap);
	va_end(ap);
	return rc;
}

static int not_json(struct scanner *s)
{
	if (s->i >= s->len)
		return refuse(s, KVS_EBADBATCH,
		              "the body is not JSON: it ends too early");
	return refuse(s, KVS_EBADBATCH, "the body is not JSON (at byte %zu)",
	              s->i);
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* The value of a hexadecimal digit, or -1. */
static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static void skip_space(struct scanner *s)
{
	while (s->i < s->len && (s->p[s->i] == ' ' || s->p[s->i] == '\t' ||
	                         s->p[s->i] == '\n' || s->p[s->i] == '\r'))
		s->i++;
}

/* The character of the escape at s->i ('\\'), which it passes: ASCII,
 * or 256 for any other; -1 when refused (why is set). */
static int scan_escape(struct scanner *s, int *rc)
{
	static const char plain[] = "\"\\/bfnrt";
	static const char value[] = "\"\\/\b\f\n\r\t";
	const char *at;
	unsigned v = 0;

	if (s->i + 1 >= s->len) {
		s->i = s->len;
		*rc = not_json(s);
		return -1;
	}
	at = s->p[s->i + 1] != '\0' ? strchr(plain, s->p[s->i + 1]) : NULL;
	if (at != NULL) {
		s->i += 2;
		return (unsigned char)value[at - plain];
	}
	if (s->p[s->i + 1] != 'u') {
		s->i++;
		*rc = not_json(s);
		return -1;
	}
	for (size_t k = 2; k < 6; k++) {
		int h = s->i + k < s->len ? hex_digit(s->p[s->i + k]) : -1;

		if (h < 0) {
			s->i += k;
			*rc = not_json(s);
			return -1;
		}
		v = v * 16 + (unsigned)h;
	}
	if (v == 0) {
		*rc = refuse(s, KVS_EBADBATCH, NUL_ESCAPE);
		return -1;
	}
	s->i += 6;
	return v < 0x80 ? (int)v : 256;
}

/* A string, from its opening quote to past its closing one. *is_ops (when
 * not NULL): whether it says "ops", escapes decoded as cJSON does. */
static int scan_string(struct scanner *s, int *is_ops)
{
	static const char ops[] = KVS_F_OPS;
	size_t n = 0; /* characters so far */
	int same = 1, rc = KVS_OK;

	s->i++;
	while (s->i < s->len) {
		unsigned char c = (unsigned char)s->p[s->i];
		int ch;

		if (c == '"') {
			s->i++;
			if (is_ops != NULL)
				*is_ops = same && n == sizeof(ops) - 1;
			return KVS_OK;
		}
		if (c < 0x20)
			return refuse(
			    s, KVS_EBADBATCH,
			    "a string holds a control character (at byte "
			    "%zu): JSON needs it escaped",
			    s->i);
		if (c == '\\') {
			ch = scan_escape(s, &rc);
			if (ch < 0)
				return rc;
		} else {
			ch = c;
			s->i++;
		}
		if (n >= sizeof(ops) - 1 || ch != (unsigned char)ops[n])
			same = 0;
		n++;
	}
	return not_json(s);
}

static int scan_digits(struct scanner *s)
{
	if (s->i >= s->len || !is_digit(s->p[s->i]))
		return not_json(s);
	while (s->i < s->len && is_digit(s->p[s->i]))
		s->i++;
	return KVS_OK;
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static int scan_number(struct scanner *s)
{
	int rc = KVS_OK;

	if (s->p[s->i] == '-')
		s->i++;
	if (s->i < s->len && s->p[s->i] == '0')
		s->i++;
	else
		rc = scan_digits(s);
	if (rc == KVS_OK && s->i < s->len && s->p[s->i] == '.') {
		s->i++;
		rc = scan_digits(s);
	}
	if (rc == KVS_OK && s->i < s->len &&
	    (s->p[s->i] == 'e' || s->p[s->i] == 'E')) {
		s->i++;
		if (s->i < s->len && (s->p[s->i] == '+' || s->p[s->i] == '-'))
			s->i++;
		rc = scan_digits(s);
	}
	return rc;
}

static int scan_literal(struct scanner *s)
{
	static const char *const words[] = {"true", "false", "null"};

	for (size_t k = 0; k < KVS_ARRAY_SIZE(words); k++) {
		size_t n = strlen(words[k]);

		if (s->len - s->i >= n &&
		    memcmp(s->p + s->i, words[k], n) == 0) {
			s->i += n;
			return KVS_OK;
		}
	}
	return not_json(s);
}

/* Count the value that starts at s->i where it stands in the batch. */
static int count_value(struct scanner *s)
{
	if (s->in_ops && s->depth == 2) {
		if (s->n_ops == s->max_ops)
			return refuse(
			    s, KVS_ETOOMANY,
			    "more than %zu operations; the limit is %zu",
			    s->max_ops, s->max_ops);
		s->n_ops++;
		s->op_values = 1;
	} else if (s->in_ops) {
		if (++s->op_values > BATCH_VALUES_PER_OP)
			return refuse(s, KVS_EBADBATCH,
			              "operation %zu: more than %d JSON values",
			              s->n_ops - 1, BATCH_VALUES_PER_OP);
	} else if (++s->outside > BATCH_VALUES_OUTSIDE) {
		return refuse(s, KVS_EBADBATCH,
		              "more than %d JSON values outside \"ops\"",
		              BATCH_VALUES_OUTSIDE);
	}
	return KVS_OK;
}

static int push(struct scanner *s, char c)
{
	if (s->depth == BATCH_MAX_DEPTH) {
		if (s->in_ops)
			return refuse(s, KVS_EBADBATCH,
			              "operation %zu: nested deeper than an "
			              "operation is (at byte %zu)",
			              s->n_ops - 1, s->i);
		return refuse(s, KVS_EBADBATCH,
		              "nested deeper than a batch is (at byte %zu)",
		              s->i);
	}
	s->open[s->depth++] = c;
	s->i++;
	return KVS_OK;
}

/* What the next token may be. */
enum want {
	W_VALUE,
	W_VALUE_OR_CLOSE, /* after '[' */
	W_KEY,
	W_KEY_OR_CLOSE, /* after '{' */
	W_COLON,
	W_COMMA_OR_CLOSE
};

/* A close or comma where one may come; 1 when it was one. */
static int scan_punct(struct scanner *s, enum want *want, int *rc)
{
	char c = s->p[s->i];

	if (c == '}' || c == ']') {
		if (c != (s->open[s->depth - 1] == '{' ? '}' : ']')) {
			*rc = not_json(s);
			return 1;
		}
		s->i++;
		s->depth--;
		if (s->depth == 1)
			s->in_ops = 0;
		*want = W_COMMA_OR_CLOSE;
		return 1;
	}
	if (*want != W_COMMA_OR_CLOSE)
		return 0;
	if (c != ',') {
		*rc = not_json(s);
		return 1;
	}
	s->i++;
	*want = s->open[s->depth - 1] == '{' ? W_KEY : W_VALUE;
	return 1;
}

static int scan_value(struct scanner *s, int member_is_ops, enum want *want)
{
	char c = s->p[s->i];
	int rc = count_value(s);

	if (rc != KVS_OK)
		return rc;
	if (member_is_ops) {
		if (s->have_ops)
			return refuse(s, KVS_EBADBATCH,
			              "\"ops\" is given twice");
		if (c != '[')
			return refuse(s, KVS_EBADBATCH, NOT_A_BATCH);
		s->have_ops = 1;
		s->in_ops = 1;
	}
	*want = W_COMMA_OR_CLOSE;
	if (c == '{' || c == '[') {
		*want = c == '{' ? W_KEY_OR_CLOSE : W_VALUE_OR_CLOSE;
		return push(s, c);
	}
	if (c == '"')
		return scan_string(s, NULL);
	if (c == '-' || is_digit(c))
		return scan_number(s);
	return scan_literal(s);
}

static int scan_batch(struct scanner *s)
{
	enum want want = W_VALUE;
	int member_is_ops = 0, rc = KVS_OK;

	skip_space(s);
	if (s->i == s->len || s->p[s->i] != '{')
		return refuse(s, KVS_EBADBATCH, NOT_A_BATCH);
	do {
		skip_space(s);
		if (s->i == s->len)
			return not_json(s);
		if ((want == W_COMMA_OR_CLOSE || want == W_VALUE_OR_CLOSE ||
		     want == W_KEY_OR_CLOSE) &&
		    scan_punct(s, &want, &rc)) {
			if (rc != KVS_OK)
				return rc;
			continue;
		}
		if (want == W_KEY || want == W_KEY_OR_CLOSE) {
			int is_ops = 0;

			if (s->p[s->i] != '"')
				return not_json(s);
			rc = scan_string(s, &is_ops);
			member_is_ops = s->depth == 1 && is_ops;
			want = W_COLON;
		} else if (want == W_COLON) {
			if (s->p[s->i] != ':')
				return not_json(s);
			s->i++;
			want = W_VALUE;
		} else {
			rc = scan_value(s, member_is_ops, &want);
			member_is_ops = 0;
		}
		if (rc != KVS_OK)
			return rc;
	} while (s->depth > 0);
	skip_space(s);
	if (s->i != s->len)
		return refuse(s, KVS_EBADBATCH,
		              "the body is not JSON: more follows the document "
		              "(at byte %zu)",
		              s->i);
	if (!s->have_ops)
		return refuse(s, KVS_EBADBATCH, NOT_A_BATCH);
	return KVS_OK;
}

/* ------------------------------------------------------------------ */
/* The operations                                                       */

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int bad_op(char *why, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, BATCH_WHY_MAX, fmt, ap);
	va_end(ap);
	return KVS_EBADBATCH;
}

/*
 * Bytes from "name" (a string without NUL: the scan refused \u0000 and
 * raw control characters) or "name_b64"; 1 found, 0 absent, -1 bad or
 * out of memory (malloc'ed into *out).
 */
static int bytes_field(const cJSON *o, const char *name, unsigned char **out,
                       size_t *len)
{
	char b64name[32];
	const cJSON *plain = cJSON_GetObjectItemCaseSensitive(o, name);
	const cJSON *enc;

	snprintf(b64name, sizeof(b64name), "%s%s", name, KVS_F_B64_SUFFIX);
	enc = cJSON_GetObjectItemCaseSensitive(o, b64name);
	if (plain != NULL && enc != NULL)
		return -1;
	if (cJSON_IsString(plain)) {
		*len = strlen(plain->valuestring);
		*out = malloc(*len + 1);
		if (*out == NULL)
			return -1;
		memcpy(*out, plain->valuestring, *len + 1);
		return 1;
	}
	if (cJSON_IsString(enc))
		return kvs__b64_decode_alloc(enc->valuestring,
		                             strlen(enc->valuestring), out,
		                             len) == KVS_OK
		           ? 1
		           : -1;
	return plain == NULL && enc == NULL ? 0 : -1;
}

/* A field of an operation given twice: cJSON would see only the first,
 * another reader maybe the last. The field's name, or NULL. */
static const char *field_twice(const cJSON *o)
{
	static const char *const known[] = {KVS_F_OP,
	                                    KVS_F_KEY,
	                                    KVS_F_KEY KVS_F_B64_SUFFIX,
	                                    KVS_F_VALUE,
	                                    KVS_F_VALUE KVS_F_B64_SUFFIX,
	                                    KVS_F_IF_MATCH,
	                                    KVS_F_IF_ABSENT,
	                                    KVS_F_IF_EXISTS};

	for (const cJSON *a = o->child; a != NULL; a = a->next) {
		int is_known = 0;

		for (size_t k = 0; k < KVS_ARRAY_SIZE(known); k++)
			is_known |= strcmp(a->string, known[k]) == 0;
		if (!is_known)
			continue;
		for (const cJSON *b = o->child; b != a; b = b->next)
			if (strcmp(a->string, b->string) == 0)
				return a->string;
	}
	return NULL;
}

/* Fill operation i from its JSON. */
static int parse_op(const cJSON *o, size_t i, struct batch_ops *b, char *why)
{
	const cJSON *kind = cJSON_GetObjectItemCaseSensitive(o, KVS_F_OP);
	const cJSON *im = cJSON_GetObjectItemCaseSensitive(o, KVS_F_IF_MATCH);
	const cJSON *ia = cJSON_GetObjectItemCaseSensitive(o, KVS_F_IF_ABSENT);
	const cJSON *ie = cJSON_GetObjectItemCaseSensitive(o, KVS_F_IF_EXISTS);
	kvs__kv_req *q = &b->reqs[i];
	const char *twice;
	int rc;

	if (!cJSON_IsObject(o) || !cJSON_IsString(kind))
		return bad_op(
		    why, "operation %zu: expected an object with \"op\"", i);
	twice = field_twice(o);
	if (twice != NULL)
		return bad_op(why, "operation %zu: \"%s\" is given twice", i,
		              twice);
	if (strcmp(kind->valuestring, KVS_OP_GET) == 0)
		q->kind = KVS__KV_GET;
	else if (strcmp(kind->valuestring, KVS_OP_PUT) == 0)
		q->kind = KVS__KV_PUT;
	else if (strcmp(kind->valuestring, KVS_OP_DELETE) == 0)
		q->kind = KVS__KV_DELETE;
	else
		return bad_op(
		    why, "operation %zu: \"op\" must be get, put or delete", i);
	rc = bytes_field(o, KVS_F_KEY, &b->bufs[2 * i], &q->key_len);
	if (rc != 1)
		return bad_op(
		    why, "operation %zu: needs a \"key\" or a \"key_b64\"", i);
	q->key = b->bufs[2 * i];
	rc = bytes_field(o, KVS_F_VALUE, &b->bufs[2 * i + 1], &q->value_len);
	if (rc < 0 || (q->kind == KVS__KV_PUT) != (rc == 1))
		return bad_op(why,
		              "operation %zu: a put needs a \"value\" or a "
		              "\"value_b64\", and only a put has one",
		              i);
	q->value = b->bufs[2 * i + 1];
	if (im != NULL) {
		if (!cJSON_IsString(im) || q->kind == KVS__KV_GET ||
		    kvs_stamp_parse(&q->cond.expect[0], im->valuestring,
		                    strlen(im->valuestring)) != KVS_OK)
			return bad_op(why,
			              "operation %zu: \"if_match\" must be a "
			              "version, on a put or delete",
			              i);
		q->cond.flags |= KVS_WRITE_IF_STAMP;
		q->cond.n_expect = 1;
	}
	/* A condition that is not a boolean is refused, never ignored: the
	 * write would go ahead unconditionally. */
	if ((ia != NULL && !cJSON_IsBool(ia)) ||
	    (ie != NULL && !cJSON_IsBool(ie)))
		return bad_op(why,
		              "operation %zu: \"if_absent\" and \"if_exists\" "
		              "must be true or false",
		              i);
	/* if_absent only on puts, if_exists on puts and deletes (a delete
	 * asking for both is refused). */
	if ((cJSON_IsTrue(ia) && q->kind != KVS__KV_PUT) ||
	    (cJSON_IsTrue(ie) && q->kind == KVS__KV_GET))
		return bad_op(why,
		              "operation %zu: \"if_absent\" is for puts, "
		              "\"if_exists\" for puts and deletes",
		              i);
	q->cond.flags |= (cJSON_IsTrue(ia) ? KVS_WRITE_IF_ABSENT : 0) |
	                 (cJSON_IsTrue(ie) ? KVS_WRITE_IF_EXISTS : 0);
	return KVS_OK;
}

int batch_parse(const char *text, size_t len, size_t max_ops,
                struct batch_ops *out, char why[BATCH_WHY_MAX])
{
	struct scanner s;
	cJSON *doc, *ops, *it;
	size_t i = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	why[0] = '\0';
	memset(&s, 0, sizeof(s));
	s.p = text;
	s.len = text != NULL ? len : 0;
	s.max_ops = max_ops;
	s.why = why;
	rc = scan_batch(&s);
	if (rc != KVS_OK)
		return rc;
	doc = cJSON_ParseWithLength(text, len);
	ops = cJSON_GetObjectItemCaseSensitive(doc, KVS_F_OPS);
	/* cJSON refuses a little that JSON allows (a lone UTF-16 surrogate
	 * escape), and fails when memory does. */
	if (!cJSON_IsArray(ops) || (size_t)cJSON_GetArraySize(ops) != s.n_ops) {
		cJSON_Delete(doc);
		return bad_op(why, "%s", NOT_A_BATCH);
	}
	out->reqs = calloc(s.n_ops ? s.n_ops : 1, sizeof(*out->reqs));
	out->bufs = calloc(2 * s.n_ops + 1, sizeof(*out->bufs));
	if (out->reqs == NULL || out->bufs == NULL) {
		cJSON_Delete(doc);
		batch_ops_clear(out);
		return KVS_ENOMEM;
	}
	out->n = s.n_ops;
	rc = KVS_OK;
	cJSON_ArrayForEach(it, ops) {
		rc = parse_op(it, i++, out, why);
		if (rc != KVS_OK)
			break;
	}
	cJSON_Delete(doc);
	return rc;
}

void batch_ops_clear(struct batch_ops *ops)
{
	for (size_t i = 0; ops->bufs != NULL && i < 2 * ops->n; i++)
		free(ops->bufs[i]);
	free(ops->bufs);
	free(ops->reqs);
	memset(ops, 0, sizeof(*ops));
}
