/*
 * test_toml.c - the TOML parser through its API: positions of keys and
 * values, errors with their positions and messages for typical mistakes,
 * limits on nesting, strings holding NUL, lookups, big documents, and the
 * value of every kind of scalar. Run under AddressSanitizer, it also checks
 * that every allocation is freed.
 */
#include <check.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "toml.h"

/* The parser's nesting limit (tables and arrays inside each other). */
#define MAX_DEPTH 128

/* Sizes of the big documents. */
#define BIG_KEYS   10000
#define BIG_TABLES 2000
#define BIG_ARRAY  100000

/* Room for one line of a generated document. */
#define LINE_SIZE 64

/* A growing text for generated documents. */
struct text {
	char *s;
	size_t len, cap;
};

static void text_add(struct text *t, const char *s)
{
	size_t n = strlen(s);

	if (t->len + n + 1 > t->cap) {
		t->cap = (t->len + n + 1) * 2;
		t->s = realloc(t->s, t->cap);
		ck_assert_ptr_nonnull(t->s);
	}
	memcpy(t->s + t->len, s, n + 1);
	t->len += n;
}

static void text_repeat(struct text *t, const char *s, int times)
{
	for (int i = 0; i < times; i++)
		text_add(t, s);
}

/*
 * Parses len bytes of doc from a heap copy of exactly that size, so that
 * AddressSanitizer catches any read past the end of the text.
 */
static int parse_exact(const char *doc, size_t len, kvs__toml_value **root,
                       kvs__toml_error *err)
{
	char *copy = malloc(len > 0 ? len : 1);
	int rc;

	ck_assert_ptr_nonnull(copy);
	memcpy(copy, doc, len);
	rc = kvs__toml_parse(copy, len, root, err);
	free(copy);
	return rc;
}

/* Parses a document that must be valid. */
static kvs__toml_value *parse_ok(const char *doc, size_t len)
{
	kvs__toml_value *root = NULL;
	kvs__toml_error err;
	int rc = parse_exact(doc, len, &root, &err);

	ck_assert_msg(rc == 0, "parse failed: %u:%u: %s", err.line, err.col,
	              err.msg);
	ck_assert_ptr_nonnull(root);
	ck_assert_int_eq(root->type, KVS_TOML_TABLE);
	return root;
}

static kvs__toml_value *parse_str(const char *doc)
{
	return parse_ok(doc, strlen(doc));
}

/* Parses a document that must fail at line:col with exactly msg. */
static void expect_error(const char *doc, unsigned line, unsigned col,
                         const char *msg)
{
	kvs__toml_value *root = NULL;
	kvs__toml_error err;
	int rc = parse_exact(doc, strlen(doc), &root, &err);

	ck_assert_msg(rc == -1, "accepted: %s", doc);
	ck_assert_ptr_null(root);
	ck_assert_msg(err.line == line && err.col == col,
	              "%s: error at %u:%u (%s), expected %u:%u", doc, err.line,
	              err.col, err.msg, line, col);
	ck_assert_str_eq(err.msg, msg);
}

/* Whether a document is rejected, whatever the message. */
static int rejects(const char *doc, size_t len)
{
	kvs__toml_value *root = NULL;
	kvs__toml_error err;
	int rc = parse_exact(doc, len, &root, &err);

	kvs__toml_free(root);
	return rc == -1 && err.line > 0 && err.col > 0 && err.msg[0] != '\0';
}

static int rejects_str(const char *doc)
{
	return rejects(doc, strlen(doc));
}

/* The value of a key that must be there. */
static const kvs__toml_value *get(const kvs__toml_value *t, const char *key)
{
	const kvs__toml_keyval *kv = kvs__toml_find(t, key);

	ck_assert_msg(kv != NULL, "no key '%s'", key);
	return kv->value;
}

static void expect_pos(unsigned line, unsigned col, unsigned want_line,
                       unsigned want_col)
{
	ck_assert_msg(line == want_line && col == want_col,
	              "at %u:%u, expected %u:%u", line, col, want_line,
	              want_col);
}

START_TEST(positions_of_keys_and_values)
{
	static const char doc[] = "# settings\n"
	                          "name = \"kvs\"\n"
	                          "\n"
	                          "[server]\n"
	                          "  port   =   8080\n"
	                          "  hosts = [\"a\",\n"
	                          "           \"b\"]\n"
	                          "  limits.max = 5\n"
	                          "[[shard]]\n"
	                          "\tid = 1\n";
	kvs__toml_value *root = parse_str(doc);
	const kvs__toml_keyval *kv;
	const kvs__toml_value *server, *hosts, *limits, *shards;

	kv = kvs__toml_find(root, "name");
	ck_assert_ptr_nonnull(kv);
	expect_pos(kv->line, kv->col, 2, 1);
	expect_pos(kv->value->line, kv->value->col, 2, 8);

	kv = kvs__toml_find(root, "server");
	expect_pos(kv->line, kv->col, 4, 2);
	server = kv->value;
	expect_pos(server->line, server->col, 4, 1);

	kv = kvs__toml_find(server, "port");
	expect_pos(kv->line, kv->col, 5, 3);
	expect_pos(kv->value->line, kv->value->col, 5, 14);
	ck_assert_int_eq(kv->value->u.integer, 8080);

	hosts = get(server, "hosts");
	expect_pos(hosts->line, hosts->col, 6, 11);
	ck_assert_uint_eq(hosts->u.arr.len, 2);
	expect_pos(hosts->u.arr.items[0]->line, hosts->u.arr.items[0]->col, 6,
	           12);
	expect_pos(hosts->u.arr.items[1]->line, hosts->u.arr.items[1]->col, 7,
	           12);

	/* A table made by a dotted key starts where its key part does. */
	kv = kvs__toml_find(server, "limits");
	expect_pos(kv->line, kv->col, 8, 3);
	limits = kv->value;
	expect_pos(limits->line, limits->col, 8, 3);
	kv = kvs__toml_find(limits, "max");
	expect_pos(kv->line, kv->col, 8, 10);
	expect_pos(kv->value->line, kv->value->col, 8, 16);

	shards = get(root, "shard");
	ck_assert_int_eq(shards->type, KVS_TOML_ARRAY);
	expect_pos(shards->line, shards->col, 9, 1);
	ck_assert_uint_eq(shards->u.arr.len, 1);
	expect_pos(shards->u.arr.items[0]->line, shards->u.arr.items[0]->col, 9,
	           1);
	kv = kvs__toml_find(shards->u.arr.items[0], "id");
	expect_pos(kv->line, kv->col, 10, 2);
	kvs__toml_free(root);
}
END_TEST

START_TEST(implicit_table_takes_position_of_its_definition)
{
	kvs__toml_value *root = parse_str("[a.b]\n"
	                                  "x = 1\n"
	                                  "\n"
	                                  " [a]\n"
	                                  "y = 2\n");
	const kvs__toml_keyval *kv = kvs__toml_find(root, "a");

	/* The key was first written in [a.b]; the table is defined by [a]. */
	expect_pos(kv->line, kv->col, 1, 2);
	expect_pos(kv->value->line, kv->value->col, 4, 2);
	ck_assert_str_eq(kv->value->u.tab.items[0].key, "b");
	ck_assert_str_eq(kv->value->u.tab.items[1].key, "y");
	kvs__toml_free(root);
}
END_TEST

START_TEST(positions_with_crlf)
{
	static const char doc[] = "a = 1\r\n"
	                          "b = \"\"\"one\r\n"
	                          "two\"\"\"\r\n"
	                          "  c = 3 # note\r\n";
	kvs__toml_value *root = parse_str(doc);
	const kvs__toml_keyval *kv;
	const kvs__toml_value *b;

	kv = kvs__toml_find(root, "b");
	expect_pos(kv->line, kv->col, 2, 1);
	b = kv->value;
	expect_pos(b->line, b->col, 2, 5);
	/* Line ends inside multi-line strings are stored as LF. */
	ck_assert_str_eq(b->u.str.ptr, "one\ntwo");
	kv = kvs__toml_find(root, "c");
	expect_pos(kv->line, kv->col, 4, 3);
	expect_pos(kv->value->line, kv->value->col, 4, 7);
	kvs__toml_free(root);

	expect_error("a = 1\r\nb = 2\rc = 3\r\n", 2, 6,
	             "expected end of line after value, found a carriage "
	             "return not followed by a line feed");
}
END_TEST

START_TEST(positions_after_multiline_strings)
{
	static const char doc[] = "s = \"\"\"\n"
	                          "first\n"
	                          "second\"\"\"\n"
	                          "lit = '''x\n"
	                          "y'''   ; z = 1\n";
	static const char doc3[] = "s = \"\"\"a \\\n"
	                           "     b\"\"\"\n"
	                           "arr = [\"\"\"p\n"
	                           "q\"\"\", 7]\n"
	                           "after = true\n";
	kvs__toml_value *root;
	const kvs__toml_value *arr;
	const kvs__toml_keyval *kv;

	/* Text after the closing quotes is reported where it is. */
	expect_error(doc, 5, 8, "expected end of line after value, found ';'");

	root = parse_str(doc3);
	ck_assert_str_eq(get(root, "s")->u.str.ptr, "a b");
	arr = get(root, "arr");
	expect_pos(arr->line, arr->col, 3, 7);
	ck_assert_str_eq(arr->u.arr.items[0]->u.str.ptr, "p\nq");
	expect_pos(arr->u.arr.items[1]->line, arr->u.arr.items[1]->col, 4, 7);
	kv = kvs__toml_find(root, "after");
	expect_pos(kv->line, kv->col, 5, 1);
	expect_pos(kv->value->line, kv->value->col, 5, 9);
	kvs__toml_free(root);
}
END_TEST

START_TEST(errors_of_typical_mistakes)
{
	expect_error("name \"kvs\"\n", 1, 6, "expected '=' after key");
	expect_error("port = 80\nname\n", 2, 5, "expected '=' after key");
	expect_error("a = 1\nname = \"kvs\n", 2, 8, "unterminated string");
	expect_error("a = 'kvs\n", 1, 5, "unterminated literal string");
	expect_error("a = \"\"\"abc\n\n", 1, 5,
	             "unterminated multi-line string");
	expect_error("name = 1\nother = 2\nname = 3\n", 3, 1,
	             "duplicate key 'name'");
	expect_error("[a.b]\nx = 1\n[a.b]\n", 3, 4,
	             "table 'a.b' is already defined");
	expect_error("a = \"x\\qy\"\n", 1, 7, "invalid escape '\\q' in string");
	expect_error("n = 9223372036854775808\n", 1, 5, "integer out of range");
	expect_error("n = -9223372036854775809\n", 1, 5,
	             "integer out of range");
	expect_error("n = 0x8000000000000000\n", 1, 5, "integer out of range");
	expect_error("d = 2023-02-29\n", 1, 5, "invalid date: 2023-02-29");
	expect_error("d = 2023-04-31T10:00:00Z\n", 1, 5,
	             "invalid date: 2023-04-31");
	expect_error("t = 24:00:00\n", 1, 5, "invalid time: 24:00:00");
	expect_error("name = kvs\n", 1, 8,
	             "invalid value 'kvs' (strings must be quoted)");
	expect_error("a =\n", 1, 4, "expected a value, found end of line");
	expect_error("a = 1 2\n", 1, 7,
	             "expected end of line after value, found '2'");
	expect_error("[server\nport = 1\n", 1, 8,
	             "expected ']' at end of table header, found end of line");
	expect_error("a = 1\na.b = 2\n", 2, 1,
	             "key 'a' is an integer, not a table");
	expect_error("a = {x = 1}\n[a]\n", 2, 2,
	             "table 'a' is already defined");
	expect_error("a = {x = 1}\na.y = 2\n", 2, 1,
	             "inline table 'a' cannot be extended");
	expect_error("a = [1]\n[[a]]\n", 2, 3,
	             "array 'a' was given as a value and cannot be extended "
	             "by [[a]]");
	expect_error("a = {x = 1,}\n", 1, 12,
	             "trailing comma is not allowed in an inline table");
	expect_error("a = {x = 1,\ny = 2}\n", 1, 12,
	             "an inline table must be on a single line");
	expect_error("a = [1, 2\n", 1, 5, "unterminated array (missing ']')");
	expect_error("n = 012\n", 1, 5,
	             "invalid number '012': leading zeros are not allowed");
	expect_error("n = 1__0\n", 1, 6,
	             "invalid number '1__0': '_' must be between digits");
	expect_error("s = \"\\uD800\"\n", 1, 6,
	             "invalid escape '\\uD800': not a Unicode scalar value");
	expect_error("\"key with \\u0001 and a long long long long long name\""
	             " = 1\n\"key with \\u0001 and a long long long long long "
	             "name\" = 2\n",
	             2, 1,
	             "duplicate key '\"key with \\u0001 and a long long long "
	             "long long ...'");
	expect_error("a = 1 # bad \x01 comment\n", 1, 13,
	             "control character U+0001 is not allowed in a comment");
	expect_error("s = \"caf\xC3\"\n", 1, 9,
	             "invalid UTF-8 in a string (byte 0xC3)");
	expect_error("s = \"\xED\xA0\x80\"\n", 1, 6,
	             "invalid UTF-8 in a string (byte 0xED)");
	expect_error("s = \"\xC0\xAF\"\n", 1, 6,
	             "invalid UTF-8 in a string (byte 0xC0)");
	expect_error("s = \"\xF4\x90\x80\x80\"\n", 1, 6,
	             "invalid UTF-8 in a string (byte 0xF4)");
	expect_error("\xEF\xBB\xBF"
	             "a = 1\n\xEF\xBB\xBF"
	             "b = 2\n",
	             2, 1, "expected a key, found character U+FEFF");
}
END_TEST

START_TEST(error_argument_may_be_null)
{
	kvs__toml_value *root = NULL;

	ck_assert_int_eq(kvs__toml_parse("a = ", 4, &root, NULL), -1);
	ck_assert_ptr_null(root);
	ck_assert_int_eq(kvs__toml_parse("a = 1", 5, NULL, NULL), 0);
	ck_assert_int_eq(kvs__toml_parse(NULL, 0, &root, NULL), 0);
	ck_assert_uint_eq(root->u.tab.len, 0);
	kvs__toml_free(root);
	kvs__toml_free(NULL);
}
END_TEST

START_TEST(text_need_not_be_nul_terminated)
{
	/* Only the first 5 bytes are the document. */
	static const char doc[] = "a = 12345";
	kvs__toml_value *root = parse_ok(doc, 5);

	ck_assert_int_eq(get(root, "a")->u.integer, 1);
	kvs__toml_free(root);
	ck_assert(rejects_str("a = \"abc"));
	ck_assert(rejects_str("a = 1979-05-2"));
	ck_assert(rejects_str("a = 0x"));
	ck_assert(rejects_str("s = \"\\u12"));
	ck_assert(rejects_str("s = \"\"\"a\\"));
}
END_TEST

/* A document whose value for "a" nests depth arrays. */
static char *nested_arrays(int depth)
{
	struct text t = {NULL, 0, 0};

	text_add(&t, "a = ");
	text_repeat(&t, "[", depth);
	text_repeat(&t, "]", depth);
	text_add(&t, "\n");
	return t.s;
}

START_TEST(nesting_is_limited)
{
	kvs__toml_value *root;
	kvs__toml_error err;
	struct text t = {NULL, 0, 0};
	char *doc;

	/* The root is level 0, so "a" can hold MAX_DEPTH levels of arrays. */
	doc = nested_arrays(MAX_DEPTH);
	root = parse_str(doc);
	kvs__toml_free(root);
	free(doc);

	doc = nested_arrays(MAX_DEPTH + 1);
	ck_assert_int_eq(parse_exact(doc, strlen(doc), &root, &err), -1);
	ck_assert_str_eq(err.msg, "nesting too deep (more than 128 levels)");
	ck_assert_uint_eq(err.line, 1);
	ck_assert_uint_eq(err.col, 5 + MAX_DEPTH);
	free(doc);

	/* Far deeper input fails the same way, without exhausting stacks. */
	doc = nested_arrays(1000000);
	ck_assert(rejects(doc, strlen(doc)));
	free(doc);

	text_add(&t, "a = ");
	text_repeat(&t, "{b = ", MAX_DEPTH * 2);
	text_add(&t, "1");
	text_repeat(&t, "}", MAX_DEPTH * 2);
	ck_assert(rejects(t.s, t.len));
	t.len = 0;

	/* Dotted keys and headers nest tables too. */
	text_add(&t, "a");
	text_repeat(&t, ".a", MAX_DEPTH * 2);
	text_add(&t, " = 1\n");
	ck_assert(rejects(t.s, t.len));
	t.len = 0;
	text_add(&t, "[a");
	text_repeat(&t, ".a", MAX_DEPTH * 2);
	text_add(&t, "]\n");
	ck_assert(rejects(t.s, t.len));
	t.len = 0;
	text_repeat(&t, "[[a]]\n[a.b]\n", 3);
	root = parse_ok(t.s, t.len);
	ck_assert_uint_eq(get(root, "a")->u.arr.len, 3);
	kvs__toml_free(root);
	free(t.s);
}
END_TEST

START_TEST(strings_with_nul)
{
	static const char doc[] = "s = \"a\\u0000b\"\n"
	                          "\"k\\u0000x\" = 'lit'\n"
	                          "m = \"\"\"\\U00000000\"\"\"\n";
	kvs__toml_value *root = parse_str(doc);
	const kvs__toml_value *s = get(root, "s");
	const kvs__toml_keyval *kv = &root->u.tab.items[1];

	ck_assert_uint_eq(s->u.str.len, 3);
	ck_assert_int_eq(memcmp(s->u.str.ptr, "a\0b", 4), 0);
	ck_assert_uint_eq(kv->key_len, 3);
	ck_assert_int_eq(memcmp(kv->key, "k\0x", 4), 0);
	/* A C string cannot name a key with NUL in it. */
	ck_assert_ptr_null(kvs__toml_find(root, "k"));
	ck_assert_uint_eq(get(root, "m")->u.str.len, 1);
	kvs__toml_free(root);
}
END_TEST

START_TEST(escapes_and_string_kinds)
{
	static const char doc[] =
	    "b = \"\\b\\t\\n\\f\\r\\\"\\\\ \\u00e9 \\U0001F600\"\n"
	    "l = 'C:\\path\\no\\escape'\n"
	    "ml = \"\"\"\n  x \\\n\n    y\"\"\"\"\"\n"
	    "mll = '''\n'a'''''\n"
	    "e = \"\"\n";
	kvs__toml_value *root = parse_str(doc);

	ck_assert_str_eq(get(root, "b")->u.str.ptr,
	                 "\b\t\n\f\r\"\\ \xC3\xA9 \xF0\x9F\x98\x80");
	ck_assert_str_eq(get(root, "l")->u.str.ptr, "C:\\path\\no\\escape");
	ck_assert_str_eq(get(root, "ml")->u.str.ptr, "  x y\"\"");
	ck_assert_str_eq(get(root, "mll")->u.str.ptr, "'a''");
	ck_assert_uint_eq(get(root, "e")->u.str.len, 0);
	kvs__toml_free(root);
	ck_assert(rejects_str("s = \"\"\"a\"\"\"\"\"\"\n"));
	ck_assert(rejects_str("s = \"\\U00110000\"\n"));
}
END_TEST

START_TEST(scalars)
{
	static const char doc[] =
	    "i1 = +17\ni2 = -9223372036854775808\ni3 = 1_000\n"
	    "h = 0xDEAD_beef\no = 0o755\nbn = 0b1101\n"
	    "f1 = 6.626e-34\nf2 = -0.0\nf3 = 1_0.5E+1_0\n"
	    "pi = -inf\nn = nan\nt = true\nff = false\n"
	    "odt = 1979-05-27T00:32:00.999999-07:30\n"
	    "ldt = 1979-05-27 07:32:00\n"
	    "ld = 1979-05-27\n"
	    "lt = 00:32:00.5\n"
	    "leap = 2000-02-29\n"
	    "lsec = 23:59:60\n"
	    "long = 12:00:00.1234567891234\n";
	kvs__toml_value *root = parse_str(doc);
	const kvs__toml_value *v;

	ck_assert_int_eq(get(root, "i1")->u.integer, 17);
	ck_assert_int_eq(get(root, "i2")->u.integer, INT64_MIN);
	ck_assert_int_eq(get(root, "i3")->u.integer, 1000);
	ck_assert_int_eq(get(root, "h")->u.integer, 0xDEADBEEF);
	ck_assert_int_eq(get(root, "o")->u.integer, 0755);
	ck_assert_int_eq(get(root, "bn")->u.integer, 13);
	ck_assert_double_eq(get(root, "f1")->u.flt, 6.626e-34);
	ck_assert(signbit(get(root, "f2")->u.flt));
	ck_assert_double_eq(get(root, "f3")->u.flt, 10.5e10);
	ck_assert(isinf(get(root, "pi")->u.flt) && get(root, "pi")->u.flt < 0);
	ck_assert(isnan(get(root, "n")->u.flt));
	ck_assert_int_eq(get(root, "t")->u.boolean, 1);
	ck_assert_int_eq(get(root, "ff")->u.boolean, 0);

	v = get(root, "odt");
	ck_assert_int_eq(v->type, KVS_TOML_DATETIME);
	ck_assert_int_eq(v->u.dt.year, 1979);
	ck_assert_int_eq(v->u.dt.month, 5);
	ck_assert_int_eq(v->u.dt.day, 27);
	ck_assert_int_eq(v->u.dt.minute, 32);
	ck_assert_int_eq(v->u.dt.nanosecond, 999999000);
	ck_assert_int_eq(v->u.dt.frac_digits, 6);
	ck_assert_int_eq(v->u.dt.offset_minutes, -(7 * 60 + 30));
	v = get(root, "ldt");
	ck_assert_int_eq(v->type, KVS_TOML_DATETIME_LOCAL);
	ck_assert_int_eq(v->u.dt.hour, 7);
	ck_assert_int_eq(v->u.dt.frac_digits, 0);
	v = get(root, "ld");
	ck_assert_int_eq(v->type, KVS_TOML_DATE_LOCAL);
	ck_assert_int_eq(v->u.dt.hour, 0);
	v = get(root, "lt");
	ck_assert_int_eq(v->type, KVS_TOML_TIME_LOCAL);
	ck_assert_int_eq(v->u.dt.year, 0);
	ck_assert_int_eq(v->u.dt.nanosecond, 500000000);
	ck_assert_int_eq(v->u.dt.frac_digits, 1);
	ck_assert_int_eq(get(root, "leap")->u.dt.day, 29);
	ck_assert_int_eq(get(root, "lsec")->u.dt.second, 60);
	v = get(root, "long");
	ck_assert_int_eq(v->u.dt.nanosecond, 123456789);
	ck_assert_int_eq(v->u.dt.frac_digits, 13);

	ck_assert_str_eq(kvs__toml_type_name(KVS_TOML_INTEGER), "integer");
	ck_assert_str_eq(kvs__toml_type_name(KVS_TOML_TIME_LOCAL),
	                 "local time");
	kvs__toml_free(root);

	ck_assert(rejects_str("f = 1e400\n"));
	ck_assert(rejects_str("t = 23:59:61\n"));
	ck_assert(rejects_str("d = 1900-02-29\n"));
	ck_assert(rejects_str("d = 1979-05-27T07:32:00+24:00\n"));
}
END_TEST

START_TEST(floats_ignore_the_locale)
{
	static const char *const names[] = {"de_DE.UTF-8", "fr_FR.UTF-8",
	                                    "de_DE", "C.UTF-8"};
	kvs__toml_value *root;

	/*
	 * Where a locale with a decimal comma is installed, switching to it
	 * must not change how floats read.
	 */
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (setlocale(LC_ALL, names[i]) != NULL)
			break;
	}
	root = parse_str("f = 1.5\ng = 2.5e3\n");
	ck_assert_double_eq(get(root, "f")->u.flt, 1.5);
	ck_assert_double_eq(get(root, "g")->u.flt, 2500.0);
	kvs__toml_free(root);
	setlocale(LC_ALL, "C");
}
END_TEST

START_TEST(find_in_tables)
{
	kvs__toml_value *root = parse_str("a = 1\n[t]\nb = 'x'\n\"\" = 3\n");
	const kvs__toml_value *t = get(root, "t");

	ck_assert_ptr_nonnull(kvs__toml_find(t, "b"));
	ck_assert_int_eq(get(t, "")->u.integer, 3);
	ck_assert_ptr_null(kvs__toml_find(t, "a"));
	ck_assert_ptr_null(kvs__toml_find(root, "b"));
	ck_assert_ptr_null(kvs__toml_find(get(root, "a"), "a"));
	ck_assert_ptr_null(kvs__toml_find(NULL, "a"));
	ck_assert_ptr_null(kvs__toml_find(root, NULL));
	ck_assert_str_eq(kvs__toml_find(root, "t")->key, "t");
	kvs__toml_free(root);
}
END_TEST

START_TEST(redefinition_rules)
{
	kvs__toml_value *root;

	/* Allowed: a header defining a table named earlier only as parent. */
	root = parse_str("[a.b.c]\nx = 1\n[a]\ny = 2\n[a.b]\nz = 3\n");
	kvs__toml_free(root);
	/* Allowed: headers below tables made by dotted keys. */
	root = parse_str("[fruit]\napple.color = 'red'\n"
	                 "[fruit.apple.texture]\nsmooth = true\n"
	                 "[[fruit.apple.seeds]]\nsize = 2\n");
	kvs__toml_free(root);
	/* Allowed: sub-tables of the latest element of an array of tables. */
	root = parse_str("[[s]]\n[s.t]\nv = 1\n[[s]]\n[s.t]\nv = 2\n");
	ck_assert_int_eq(
	    get(get(get(root, "s")->u.arr.items[1], "t"), "v")->u.integer, 2);
	kvs__toml_free(root);

	expect_error("[fruit]\napple.color = 'red'\n[fruit.apple]\n", 3, 8,
	             "table 'fruit.apple' is already defined");
	expect_error("[a.b.c]\n[a]\nb.c.t = 1\n", 3, 1,
	             "table 'b' was created by a table header and cannot be "
	             "extended with dotted keys");
	expect_error("[[a]]\n[a]\n", 2, 2,
	             "key 'a' is already defined as an array");
	expect_error("[a]\n[[a]]\n", 2, 3,
	             "key 'a' is already defined as a table");
	expect_error("a = {b = {}}\n[a.b]\n", 2, 2,
	             "inline table 'a' cannot be extended");
	expect_error("a = {b = 1, b.c = 2}\n", 1, 13,
	             "key 'b' is an integer, not a table");
	expect_error("a.b = 1\na = {}\n", 2, 1, "duplicate key 'a'");
}
END_TEST

START_TEST(big_documents)
{
	struct text t = {NULL, 0, 0};
	char line[LINE_SIZE];
	kvs__toml_value *root;
	const kvs__toml_value *arr;

	/* Many keys in one table, in order, each found. */
	for (int i = 0; i < BIG_KEYS; i++) {
		snprintf(line, sizeof(line), "key%d = %d\n", i, i);
		text_add(&t, line);
	}
	root = parse_ok(t.s, t.len);
	ck_assert_uint_eq(root->u.tab.len, BIG_KEYS);
	for (int i = 0; i < BIG_KEYS; i++) {
		snprintf(line, sizeof(line), "key%d", i);
		ck_assert_str_eq(root->u.tab.items[i].key, line);
		ck_assert_int_eq(root->u.tab.items[i].value->u.integer, i);
		ck_assert_uint_eq(root->u.tab.items[i].line, (unsigned)i + 1);
	}
	ck_assert_int_eq(get(root, "key9999")->u.integer, 9999);
	kvs__toml_free(root);

	/* A duplicate at the very end of a big table is still found. */
	text_add(&t, "key5000 = 1\n");
	ck_assert(rejects(t.s, t.len));

	/* Many tables, each with a few keys. */
	t.len = 0;
	for (int i = 0; i < BIG_TABLES; i++) {
		snprintf(line, sizeof(line), "[t%d]\na = 1\nb.c = 2\n", i);
		text_add(&t, line);
	}
	root = parse_ok(t.s, t.len);
	ck_assert_uint_eq(root->u.tab.len, BIG_TABLES);
	kvs__toml_free(root);

	/* A long array. */
	t.len = 0;
	text_add(&t, "a = [");
	text_repeat(&t, "1,", BIG_ARRAY);
	text_add(&t, "]\n");
	root = parse_ok(t.s, t.len);
	arr = get(root, "a");
	ck_assert_uint_eq(arr->u.arr.len, BIG_ARRAY);
	kvs__toml_free(root);
	free(t.s);
}
END_TEST

START_TEST(byte_order_mark_and_empty)
{
	kvs__toml_value *root = parse_str("\xEF\xBB\xBF"
	                                  "a = 1\n");
	const kvs__toml_keyval *kv = kvs__toml_find(root, "a");

	/* Columns count from after the byte order mark. */
	expect_pos(kv->line, kv->col, 1, 1);
	kvs__toml_free(root);
	root = parse_ok("", 0);
	ck_assert_uint_eq(root->u.tab.len, 0);
	kvs__toml_free(root);
	root = parse_str("\n\t# only a comment\r\n  \n");
	ck_assert_uint_eq(root->u.tab.len, 0);
	kvs__toml_free(root);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("toml");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, positions_of_keys_and_values);
	tcase_add_test(tc, implicit_table_takes_position_of_its_definition);
	tcase_add_test(tc, positions_with_crlf);
	tcase_add_test(tc, positions_after_multiline_strings);
	tcase_add_test(tc, errors_of_typical_mistakes);
	tcase_add_test(tc, error_argument_may_be_null);
	tcase_add_test(tc, text_need_not_be_nul_terminated);
	tcase_add_test(tc, nesting_is_limited);
	tcase_add_test(tc, strings_with_nul);
	tcase_add_test(tc, escapes_and_string_kinds);
	tcase_add_test(tc, scalars);
	tcase_add_test(tc, floats_ignore_the_locale);
	tcase_add_test(tc, find_in_tables);
	tcase_add_test(tc, redefinition_rules);
	tcase_add_test(tc, big_documents);
	tcase_add_test(tc, byte_order_mark_and_empty);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
