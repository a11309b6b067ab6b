/*
 * toml.c - a TOML 1.0.0 parser producing a tree of positioned values.
 *
 * The parser is a hand-written recursive-descent scanner over the raw bytes
 * of the document; there is no separate tokenizer. A struct parser holds the
 * input, the read offset and the current line, so that every value and key
 * can be stamped with the line and byte column where it starts, and every
 * error with the position of the character that caused it.
 *
 * Structure. parse_document() reads the document one line-level construct
 * at a time: blank lines and comments, table headers ([a.b] and [[a.b]]) and
 * key/value pairs. A header moves p->cur, the table that receives the pairs
 * that follow it. parse_value() dispatches on the first character of a value
 * to the string, number, date-time, boolean, array and inline-table parsers;
 * arrays and inline tables recurse into parse_value().
 *
 * Tables and arrays are allocated as struct node, which starts with the
 * public kvs__toml_value and adds what only the parser needs: how the
 * container came to exist (its origin), its depth in the tree, the capacity
 * of its item array and, for big tables, a hash index over the keys. The
 * origin is what TOML's rules against redefinition are checked against:
 *
 *   - ORIGIN_HEADER tables were defined by a [header], are elements of an
 *     array of tables, or are the root; they can never be defined again.
 *   - ORIGIN_IMPLICIT tables were created as the parents named in a header
 *     such as [a.b.c]; a later [a.b] may define them once, which turns them
 *     into ORIGIN_HEADER tables.
 *   - ORIGIN_DOTTED tables were created by dotted keys (a.b = 1). Only more
 *     dotted keys may add to them; headers may pass through them to define
 *     new sub-tables, but never define them.
 *   - ORIGIN_INLINE tables were written { ... }; nothing may extend them.
 *   - ORIGIN_STATIC arrays were written [ ... ]; ORIGIN_AOT arrays were made
 *     by [[header]] and are the only arrays a [[header]] may append to.
 *
 * Invariants. The input is never read at or past len and needs no NUL
 * terminator. Non-ASCII bytes are accepted only inside comments and strings,
 * where they are checked to be well-formed UTF-8, so an accepted document is
 * valid UTF-8 as a whole. Containers never nest deeper than TOML_MAX_DEPTH,
 * which bounds the recursion of the parser, of kvs__toml_free() and of any
 * printer. A value is inserted into its table only once it is complete, so
 * after an error the partial tree is still well formed and is freed as a
 * whole. Internal functions return TOML_OK, TOML_ESYNTAX after filling in
 * the error, or TOML_ENOMEM; the message for the latter is written once, by
 * kvs__toml_parse().
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strtod_l() */
#endif

#include <inttypes.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvshard/common.h"
#include "toml.h"
#include "util.h"

/* Results of the internal functions; kvs__toml_parse() returns the same. */
#define TOML_OK      0
#define TOML_ESYNTAX (-1)
#define TOML_ENOMEM  (-2)

/*
 * Tables and arrays may nest this deep (the root table is at depth 0). This
 * also bounds the number of parts in a dotted key.
 */
#define TOML_MAX_DEPTH 128

/* A table gets a hash index over its keys once it holds this many. */
#define INDEX_MIN_KEYS 16

/* The hash index is kept at most half full. */
#define INDEX_LOAD_FACTOR 2

/* Initial capacity of item arrays and text buffers. */
#define INITIAL_CAP 8

/* Longest excerpt of a key or value, in bytes, quoted in an error message. */
#define EXCERPT_MAX 48

/* Room for an excerpt, the "..." that marks a cut one, and the NUL. */
#define EXCERPT_SIZE (EXCERPT_MAX + 4)

/* Room for the description of one character in an error message. */
#define DESCRIBE_SIZE 64

/* A fraction of a second keeps this many digits (nanoseconds). */
#define NANO_DIGITS 9

/* Floats whose text fits this buffer are converted without allocating. */
#define FLOAT_BUF_SIZE 64

/* Number of digits in the fixed-width fields of a date and a time. */
#define YEAR_DIGITS  4
#define FIELD_DIGITS 2

/* Ranges of the date and time fields (RFC 3339, which TOML refers to). */
#define MONTHS_PER_YEAR  12
#define HOUR_MAX         23
#define MINUTE_MAX       59
#define SECOND_MAX       60 /* 60 is a leap second, which RFC 3339 allows */
#define MINUTES_PER_HOUR 60
#define FEBRUARY         2
#define DAYS_IN_LEAP_FEB 29

/* The Gregorian leap-year rule. */
#define LEAP_EVERY     4
#define LEAP_CENTURY   100
#define LEAP_QUAD_CENT 400

/* Unicode scalar values: at most U+10FFFF, and no UTF-16 surrogates. */
#define UNICODE_MAX     0x10FFFFu
#define SURROGATE_FIRST 0xD800u
#define SURROGATE_LAST  0xDFFFu

/* Digits in the \u and \U escapes of basic strings. */
#define ESCAPE_U_DIGITS     4
#define ESCAPE_BIG_U_DIGITS 8

/* Bytes of a UTF-8 sequence: at most four, continuation bytes 10xxxxxx. */
#define UTF8_MAX_LEN   4
#define UTF8_CONT_MASK 0xC0u
#define UTF8_CONT_TAG  0x80u
#define UTF8_CONT_BITS 6
#define UTF8_PAYLOAD   0x3Fu
#define ASCII_LIMIT    0x80u
#define ASCII_DEL      0x7F

/* Length of the 0x, 0o and 0b prefixes of integers. */
#define RADIX_PREFIX_LEN 2

/* Number bases and the value a non-digit character gets. */
#define BASE_BIN    2
#define BASE_OCT    8
#define BASE_DEC    10
#define BASE_HEX    16
#define NOT_A_DIGIT 99

/* Parameters of the 64-bit FNV-1a hash used for table indexes. */
#define FNV_OFFSET UINT64_C(0xcbf29ce484222325)
#define FNV_PRIME  UINT64_C(0x100000001b3)

/* The UTF-8 byte order mark, skipped at the start of a document only. */
static const char utf8_bom[] = "\xEF\xBB\xBF";
#define UTF8_BOM_LEN (sizeof(utf8_bom) - 1)

/* Three quotes open and close multi-line strings. */
#define TRIPLE_QUOTE 3

/* At most two quotes may stand right before the closing delimiter. */
#define MAX_QUOTE_RUN (TRIPLE_QUOTE + 2)

#if defined(__GNUC__)
#define PRINTF_LIKE(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define PRINTF_LIKE(fmt, args)
#endif

/* How a table or array came to exist; see the comment at the top. */
enum origin {
	ORIGIN_HEADER,
	ORIGIN_IMPLICIT,
	ORIGIN_DOTTED,
	ORIGIN_INLINE,
	ORIGIN_STATIC,
	ORIGIN_AOT
};

/*
 * A table or an array. The public value comes first, so that a pointer to
 * the node is a pointer to the value and back.
 */
struct node {
	kvs__toml_value v;
	enum origin origin;
	unsigned depth; /* 0 for the root table */
	size_t cap;    /* allocated entries of v.u.tab.items or v.u.arr.items */
	size_t *slots; /* table index: item number + 1, or 0 for empty */
	size_t nslots; /* a power of two, or 0 while there is no index */
};

/* A line and a 1-based byte column. */
struct pos {
	unsigned line, col;
};

/* One part of a dotted key: its text is keys.data[off, off + len). */
struct key_part {
	size_t off, len;
	struct pos at;
};

struct parser {
	const char *s;        /* the document */
	size_t len;           /* its length in bytes */
	size_t pos;           /* read offset */
	unsigned line;        /* line of pos */
	size_t line_start;    /* offset of the first byte of that line */
	kvs__toml_error *err; /* where errors go, or NULL */
	struct node *root;    /* the document's table */
	struct node *cur;     /* the table the next key/value pairs go to */
	kvs__buf keys;        /* text of the key parts being parsed */
	struct key_part parts[TOML_MAX_DEPTH];
	size_t nparts;
};

/* An error-message excerpt being built, cut at EXCERPT_MAX bytes. */
struct excerpt {
	char text[EXCERPT_SIZE];
	size_t len;
	int cut;
};

/* The forms of multi-byte UTF-8 sequences, by lead byte. */
static const struct utf8_form {
	unsigned char lead_min, lead_max; /* range of the lead byte */
	unsigned char lead_bits;          /* payload bits of the lead byte */
	unsigned char len;                /* bytes in the sequence */
	uint32_t cp_min;                  /* smaller values are overlong */
} utf8_forms[] = {
    {0xC2, 0xDF, 0x1F, 2, 0x80},
    {0xE0, 0xEF, 0x0F, 3, 0x800},
    {0xF0, 0xF4, 0x07, 4, 0x10000},
};

static int parse_value(struct parser *p, unsigned depth, kvs__toml_value **out);

/* ------------------------------------------------------------------ */
/* Small helpers: characters, UTF-8, buffers, positions, errors.      */
/* ------------------------------------------------------------------ */

static int is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static int is_alpha(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Characters of bare keys: ASCII letters, digits, '-' and '_'. */
static int is_bare(int c)
{
	return is_alpha(c) || is_digit(c) || c == '-' || c == '_';
}

/* Characters that may make up a number, a boolean, inf or nan. */
static int is_word(int c)
{
	return is_bare(c) || c == '+' || c == '.';
}

/* The value of a digit in bases up to 16, or NOT_A_DIGIT. */
static unsigned digit_value(int c)
{
	if (is_digit(c))
		return (unsigned)(c - '0');
	if (c >= 'a' && c <= 'f')
		return (unsigned)(c - 'a' + BASE_DEC);
	if (c >= 'A' && c <= 'F')
		return (unsigned)(c - 'A' + BASE_DEC);
	return NOT_A_DIGIT;
}

/* Whether the n bytes at t are the word w. */
static int word_is(const char *t, size_t n, const char *w)
{
	return n == strlen(w) && memcmp(t, w, n) == 0;
}

/* Decoding UTF-8 (rejecting overlong forms, surrogates and values beyond
 * U+10FFFF) is util.h's; encoding escapes is here. */
#define utf8_decode kvs__utf8_decode

/* Encodes the scalar value cp as UTF-8 into out; returns the length. */
static size_t utf8_encode(uint32_t cp, char out[UTF8_MAX_LEN])
{
	size_t len, i;
	const struct utf8_form *f;

	if (cp < ASCII_LIMIT) {
		out[0] = (char)cp;
		return 1;
	}
	for (i = 0; i + 1 < sizeof(utf8_forms) / sizeof(utf8_forms[0]); i++) {
		if (cp < utf8_forms[i + 1].cp_min)
			break;
	}
	f = &utf8_forms[i];
	len = f->len;
	for (i = len - 1; i > 0; i--) {
		out[i] = (char)(UTF8_CONT_TAG | (cp & UTF8_PAYLOAD));
		cp >>= UTF8_CONT_BITS;
	}
	/* The lead byte's tag is its range's lowest byte without payload. */
	out[0] = (char)((f->lead_min & (unsigned char)~f->lead_bits) | cp);
	return len;
}

/* The buffers are util.h's (NUL-terminated once allocated); these give
 * their errors as the parser's. */
static int buf_reserve(kvs__buf *b, size_t extra)
{
	return kvs__buf_reserve(b, extra) == KVS_OK ? TOML_OK : TOML_ENOMEM;
}

static int buf_add(kvs__buf *b, const char *s, size_t n)
{
	return kvs__buf_add(b, s, n) == KVS_OK ? TOML_OK : TOML_ENOMEM;
}

static int buf_put(kvs__buf *b, char c)
{
	return buf_add(b, &c, 1);
}

/* A NUL-terminated copy of n bytes that may themselves contain NUL. */
static char *dup_bytes(const char *s, size_t n)
{
	char *d;

	if (n == SIZE_MAX)
		return NULL;
	d = malloc(n + 1);
	if (d == NULL)
		return NULL;
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

static unsigned clamp_uint(size_t v)
{
	return v > UINT_MAX ? UINT_MAX : (unsigned)v;
}

/* The position of offset off, which must be on the current line. */
static struct pos pos_of(const struct parser *p, size_t off)
{
	struct pos at;

	at.line = p->line;
	at.col = clamp_uint(off - p->line_start + 1);
	return at;
}

static struct pos here(const struct parser *p)
{
	return pos_of(p, p->pos);
}

/* Records an error at a position and returns TOML_ESYNTAX. */
PRINTF_LIKE(3, 4)
static int fail(struct parser *p, struct pos at, const char *fmt, ...)
{
	va_list ap;

	if (p->err != NULL) {
		p->err->line = at.line;
		p->err->col = at.col;
		va_start(ap, fmt);
		vsnprintf(p->err->msg, sizeof(p->err->msg), fmt, ap);
		va_end(ap);
	}
	return TOML_ESYNTAX;
}

static int peek(const struct parser *p)
{
	return p->pos < p->len ? (unsigned char)p->s[p->pos] : EOF;
}

static int peek_at(const struct parser *p, size_t off)
{
	return off < p->len ? (unsigned char)p->s[off] : EOF;
}

/* Whether the three bytes at p->pos are all c (opening a multi-line string). */
static int at_triple(const struct parser *p, int c)
{
	return peek_at(p, p->pos) == c && peek_at(p, p->pos + 1) == c &&
	       peek_at(p, p->pos + 2) == c;
}

/* Length of a line ending at off: 1 for LF, 2 for CR LF, else 0. */
static size_t eol_len(const struct parser *p, size_t off)
{
	if (peek_at(p, off) == '\n')
		return 1;
	if (peek_at(p, off) == '\r' && peek_at(p, off + 1) == '\n')
		return 2;
	return 0;
}

/* Steps over a line ending of n bytes and starts a new line. */
static void take_newline(struct parser *p, size_t n)
{
	p->pos += n;
	if (p->line < UINT_MAX)
		p->line++;
	p->line_start = p->pos;
}

static void skip_ws(struct parser *p)
{
	while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t'))
		p->pos++;
}

/* Describes the character at off for "found ..." in error messages. */
static void describe(const struct parser *p, size_t off, char *out, size_t size)
{
	int c = peek_at(p, off);
	uint32_t cp;

	if (c == EOF)
		snprintf(out, size, "end of file");
	else if (eol_len(p, off) > 0)
		snprintf(out, size, "end of line");
	else if (c == '\r')
		snprintf(out, size,
		         "a carriage return not followed by a line feed");
	else if (c >= ' ' && c < ASCII_DEL)
		snprintf(out, size, "'%c'", c);
	else if (c < (int)ASCII_LIMIT)
		snprintf(out, size, "control character U+%04X", (unsigned)c);
	else if (utf8_decode((const unsigned char *)p->s + off, p->len - off,
	                     &cp) > 0)
		snprintf(out, size, "character U+%04" PRIX32, cp);
	else
		snprintf(out, size, "invalid UTF-8 byte 0x%02X", (unsigned)c);
}

/* Appends n bytes to an excerpt unless that would make it too long. */
static void ex_add(struct excerpt *e, const char *s, size_t n)
{
	if (e->cut)
		return;
	if (e->len + n > EXCERPT_MAX) {
		memcpy(e->text + e->len, "...", sizeof("..."));
		e->len += sizeof("...") - 1;
		e->cut = 1;
		return;
	}
	memcpy(e->text + e->len, s, n);
	e->len += n;
	e->text[e->len] = '\0';
}

/*
 * Appends one key part as a reader would write it: bare when it can be,
 * otherwise quoted with control characters escaped.
 */
static void ex_key_part(struct excerpt *e, const char *k, size_t n)
{
	char esc[sizeof("\\u0000")];
	int bare = n > 0;
	size_t i, step;
	uint32_t cp;

	for (i = 0; i < n; i++)
		bare = bare && is_bare((unsigned char)k[i]);
	if (bare) {
		for (i = 0; i < n; i++)
			ex_add(e, k + i, 1);
		return;
	}
	ex_add(e, "\"", 1);
	for (i = 0; i < n; i += step) {
		unsigned char c = (unsigned char)k[i];

		step = 1;
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			ex_add(e, esc, 2);
		} else if (c < ' ' || c == ASCII_DEL) {
			snprintf(esc, sizeof(esc), "\\u%04X", (unsigned)c);
			ex_add(e, esc, strlen(esc));
		} else {
			step = utf8_decode((const unsigned char *)k + i, n - i,
			                   &cp);
			if (step == 0)
				step = 1; /* cannot happen: keys are checked */
			ex_add(e, k + i, step);
		}
	}
	ex_add(e, "\"", 1);
}

/* The first n parts of the key just parsed, as a dotted key. */
static void key_excerpt(const struct parser *p, size_t n, struct excerpt *e)
{
	e->len = 0;
	e->cut = 0;
	e->text[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			ex_add(e, ".", 1);
		ex_key_part(e, p->keys.data + p->parts[i].off, p->parts[i].len);
	}
}

/* The word-like text starting at off (a number, date or bare word). */
static void token_excerpt(const struct parser *p, size_t off, struct excerpt *e)
{
	e->len = 0;
	e->cut = 0;
	e->text[0] = '\0';
	while (off < p->len &&
	       (is_word((unsigned char)p->s[off]) || p->s[off] == ':'))
		ex_add(e, p->s + off++, 1);
}

/* A length for "%.*s" in a message: at most EXCERPT_MAX. */
static int clip(size_t n)
{
	return n > EXCERPT_MAX ? EXCERPT_MAX : (int)n;
}

/* "a table", "an integer": for messages that speak of a value. */
static const char *type_phrase(kvs__toml_type t)
{
	switch (t) {
	case KVS_TOML_TABLE:
		return "a table";
	case KVS_TOML_ARRAY:
		return "an array";
	case KVS_TOML_STRING:
		return "a string";
	case KVS_TOML_INTEGER:
		return "an integer";
	case KVS_TOML_FLOAT:
		return "a float";
	case KVS_TOML_BOOL:
		return "a boolean";
	case KVS_TOML_DATETIME:
		return "an offset date-time";
	case KVS_TOML_DATETIME_LOCAL:
		return "a local date-time";
	case KVS_TOML_DATE_LOCAL:
		return "a local date";
	case KVS_TOML_TIME_LOCAL:
		return "a local time";
	}
	return "a value";
}

const char *kvs__toml_type_name(kvs__toml_type t)
{
	switch (t) {
	case KVS_TOML_TABLE:
		return "table";
	case KVS_TOML_ARRAY:
		return "array";
	case KVS_TOML_STRING:
		return "string";
	case KVS_TOML_INTEGER:
		return "integer";
	case KVS_TOML_FLOAT:
		return "float";
	case KVS_TOML_BOOL:
		return "boolean";
	case KVS_TOML_DATETIME:
		return "offset date-time";
	case KVS_TOML_DATETIME_LOCAL:
		return "local date-time";
	case KVS_TOML_DATE_LOCAL:
		return "local date";
	case KVS_TOML_TIME_LOCAL:
		return "local time";
	}
	return "unknown";
}

/* ------------------------------------------------------------------ */
/* The tree: values, tables with their index, arrays.                 */
/* ------------------------------------------------------------------ */

static kvs__toml_value *value_new(kvs__toml_type type, struct pos at)
{
	kvs__toml_value *v = calloc(1, sizeof(*v));

	if (v == NULL)
		return NULL;
	v->type = type;
	v->line = at.line;
	v->col = at.col;
	return v;
}

static struct node *node_new(kvs__toml_type type, enum origin origin,
                             unsigned depth, struct pos at)
{
	struct node *n = calloc(1, sizeof(*n));

	if (n == NULL)
		return NULL;
	n->v.type = type;
	n->v.line = at.line;
	n->v.col = at.col;
	n->origin = origin;
	n->depth = depth;
	return n;
}

static struct node *node_of(kvs__toml_value *v)
{
	return (struct node *)v;
}

void kvs__toml_free(kvs__toml_value *v)
{
	struct node *n;

	if (v == NULL)
		return;
	switch (v->type) {
	case KVS_TOML_TABLE:
		n = node_of(v);
		for (size_t i = 0; i < v->u.tab.len; i++) {
			free(v->u.tab.items[i].key);
			kvs__toml_free(v->u.tab.items[i].value);
		}
		free(v->u.tab.items);
		free(n->slots);
		break;
	case KVS_TOML_ARRAY:
		for (size_t i = 0; i < v->u.arr.len; i++)
			kvs__toml_free(v->u.arr.items[i]);
		free(v->u.arr.items);
		break;
	case KVS_TOML_STRING:
		free(v->u.str.ptr);
		break;
	default:
		break;
	}
	/* A node starts with its value, so this frees nodes too. */
	free(v);
}

static uint64_t key_hash(const char *k, size_t n)
{
	uint64_t h = FNV_OFFSET;

	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)k[i];
		h *= FNV_PRIME;
	}
	return h;
}

/* Enters item number i of table t into its index (which has room). */
static void index_put(struct node *t, size_t i)
{
	const kvs__toml_keyval *kv = &t->v.u.tab.items[i];
	size_t mask = t->nslots - 1;
	size_t s = (size_t)key_hash(kv->key, kv->key_len) & mask;

	while (t->slots[s] != 0)
		s = (s + 1) & mask;
	t->slots[s] = i + 1;
}

/* Rebuilds the index of t with room for want keys at the load factor. */
static int index_grow(struct node *t, size_t want)
{
	size_t n = t->nslots > 0 ? t->nslots : INDEX_MIN_KEYS;
	size_t *slots;

	while (n / INDEX_LOAD_FACTOR < want) {
		if (n > SIZE_MAX / 2 / sizeof(*slots))
			return TOML_ENOMEM;
		n *= 2;
	}
	slots = calloc(n, sizeof(*slots));
	if (slots == NULL)
		return TOML_ENOMEM;
	free(t->slots);
	t->slots = slots;
	t->nslots = n;
	for (size_t i = 0; i < t->v.u.tab.len; i++)
		index_put(t, i);
	return TOML_OK;
}

static kvs__toml_keyval *table_find(struct node *t, const char *k, size_t n)
{
	kvs__toml_keyval *items = t->v.u.tab.items;
	size_t mask, s;

	if (t->slots != NULL) {
		mask = t->nslots - 1;
		for (s = (size_t)key_hash(k, n) & mask; t->slots[s] != 0;
		     s = (s + 1) & mask) {
			kvs__toml_keyval *kv = &items[t->slots[s] - 1];

			if (kv->key_len == n && memcmp(kv->key, k, n) == 0)
				return kv;
		}
		return NULL;
	}
	for (size_t i = 0; i < t->v.u.tab.len; i++) {
		if (items[i].key_len == n && memcmp(items[i].key, k, n) == 0)
			return &items[i];
	}
	return NULL;
}

/* Makes room for one more item in an array of n-byte items. */
static int grow_items(void **items, size_t *cap, size_t len, size_t size)
{
	size_t ncap;
	void *p;

	if (len < *cap)
		return TOML_OK;
	ncap = *cap > 0 ? *cap : INITIAL_CAP;
	while (ncap <= len) {
		if (ncap > SIZE_MAX / 2 / size)
			return TOML_ENOMEM;
		ncap *= 2;
	}
	p = realloc(*items, ncap * size);
	if (p == NULL)
		return TOML_ENOMEM;
	*items = p;
	*cap = ncap;
	return TOML_OK;
}

/*
 * Appends key = v to table t. The key must not be there yet. Ownership of
 * key and v passes to the table only when this succeeds.
 */
static int table_add(struct node *t, char *key, size_t key_len, struct pos at,
                     kvs__toml_value *v)
{
	size_t len = t->v.u.tab.len;
	void *items = t->v.u.tab.items;
	kvs__toml_keyval *kv;

	if (grow_items(&items, &t->cap, len, sizeof(kvs__toml_keyval)) !=
	    TOML_OK)
		return TOML_ENOMEM;
	t->v.u.tab.items = items;
	if (len + 1 >= INDEX_MIN_KEYS &&
	    (len + 1) > t->nslots / INDEX_LOAD_FACTOR &&
	    index_grow(t, len + 1) != TOML_OK)
		return TOML_ENOMEM;
	kv = &t->v.u.tab.items[len];
	kv->key = key;
	kv->key_len = key_len;
	kv->line = at.line;
	kv->col = at.col;
	kv->value = v;
	t->v.u.tab.len = len + 1;
	if (t->slots != NULL)
		index_put(t, len);
	return TOML_OK;
}

/* Appends v to array a; ownership passes only on success. */
static int array_add(struct node *a, kvs__toml_value *v)
{
	void *items = a->v.u.arr.items;

	if (grow_items(&items, &a->cap, a->v.u.arr.len,
	               sizeof(kvs__toml_value *)) != TOML_OK)
		return TOML_ENOMEM;
	a->v.u.arr.items = items;
	a->v.u.arr.items[a->v.u.arr.len++] = v;
	return TOML_OK;
}

const kvs__toml_keyval *kvs__toml_find(const kvs__toml_value *table,
                                       const char *key)
{
	size_t n;

	/*
	 * A plain scan rather than the parser's index: the table may have
	 * been built by hand, and configuration lookups are few and small.
	 */
	if (table == NULL || key == NULL || table->type != KVS_TOML_TABLE)
		return NULL;
	n = strlen(key);
	for (size_t i = 0; i < table->u.tab.len; i++) {
		const kvs__toml_keyval *kv = &table->u.tab.items[i];

		if (kv->key_len == n && memcmp(kv->key, key, n) == 0)
			return kv;
	}
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Comments and line ends.                                            */
/* ------------------------------------------------------------------ */

/*
 * Checks the character at p->pos as a character of free text (a comment or
 * a string) and stores its length in *n. Tab, printable ASCII and
 * well-formed UTF-8 are allowed; other control characters (line ends are
 * the caller's business) and malformed UTF-8 are errors.
 */
static int text_char(struct parser *p, const char *where, size_t *n)
{
	unsigned char c = (unsigned char)p->s[p->pos];
	char what[DESCRIBE_SIZE];
	uint32_t cp;

	if (c == '\t' || (c >= ' ' && c < ASCII_DEL)) {
		*n = 1;
		return TOML_OK;
	}
	if (c >= ASCII_LIMIT) {
		*n = utf8_decode((const unsigned char *)p->s + p->pos,
		                 p->len - p->pos, &cp);
		if (*n > 0)
			return TOML_OK;
		return fail(p, here(p), "invalid UTF-8 in %s (byte 0x%02X)",
		            where, (unsigned)c);
	}
	describe(p, p->pos, what, sizeof(what));
	return fail(p, here(p), "%s is not allowed in %s", what, where);
}

/* Skips a comment from its '#' to (not including) the end of the line. */
static int skip_comment(struct parser *p)
{
	size_t n;
	int rc;

	p->pos++;
	while (p->pos < p->len && eol_len(p, p->pos) == 0) {
		rc = text_char(p, "a comment", &n);
		if (rc != TOML_OK)
			return rc;
		p->pos += n;
	}
	return TOML_OK;
}

/*
 * Ends a line after a header or a key/value pair (named by after, or NULL
 * for a blank line): only whitespace and a comment may come before the end
 * of the line or of the document.
 */
static int finish_line(struct parser *p, const char *after)
{
	char what[DESCRIBE_SIZE];
	size_t n;
	int rc;

	skip_ws(p);
	if (peek(p) == '#') {
		rc = skip_comment(p);
		if (rc != TOML_OK)
			return rc;
	}
	if (p->pos >= p->len)
		return TOML_OK;
	n = eol_len(p, p->pos);
	if (n > 0) {
		take_newline(p, n);
		return TOML_OK;
	}
	describe(p, p->pos, what, sizeof(what));
	if (after == NULL)
		return fail(p, here(p), "expected end of line, found %s", what);
	return fail(p, here(p), "expected end of line after %s, found %s",
	            after, what);
}

/* Skips whitespace, line ends and comments (inside arrays). */
static int skip_blank(struct parser *p)
{
	size_t n;
	int rc;

	for (;;) {
		skip_ws(p);
		if (peek(p) == '#') {
			rc = skip_comment(p);
			if (rc != TOML_OK)
				return rc;
		}
		n = eol_len(p, p->pos);
		if (n == 0)
			return TOML_OK;
		take_newline(p, n);
	}
}

/* ------------------------------------------------------------------ */
/* Strings.                                                           */
/* ------------------------------------------------------------------ */

/*
 * At a run of quote characters q inside a multi-line string: a run of up to
 * two is content; three to five close the string, any quotes beyond three
 * being content. Sets *done when the string is closed.
 */
static int close_quotes(struct parser *p, kvs__buf *b, char q, int *done)
{
	size_t run = 0;

	while (peek_at(p, p->pos + run) == (unsigned char)q)
		run++;
	*done = 0;
	if (run > MAX_QUOTE_RUN)
		return fail(p, here(p),
		            "too many quotes at the end of a multi-line string "
		            "(at most %d may come before the closing %c%c%c)",
		            MAX_QUOTE_RUN - TRIPLE_QUOTE, q, q, q);
	if (run >= TRIPLE_QUOTE) {
		*done = 1;
		run -= TRIPLE_QUOTE;
		p->pos += TRIPLE_QUOTE;
	}
	for (size_t i = 0; i < run; i++) {
		if (buf_put(b, q) != TOML_OK)
			return TOML_ENOMEM;
	}
	p->pos += run;
	return TOML_OK;
}

/*
 * A line-ending backslash in a multi-line basic string, at the whitespace
 * after the backslash: skips to the line end and then over all whitespace
 * and line ends, which the string does not contain.
 */
static int line_ending_backslash(struct parser *p, struct pos at)
{
	size_t j = p->pos, n;

	while (peek_at(p, j) == ' ' || peek_at(p, j) == '\t')
		j++;
	if (eol_len(p, j) == 0)
		return fail(p, at,
		            "invalid escape: a backslash followed by "
		            "whitespace must end the line");
	p->pos = j;
	for (;;) {
		skip_ws(p);
		n = eol_len(p, p->pos);
		if (n == 0)
			return TOML_OK;
		take_newline(p, n);
	}
}

/* A \u or \U escape at p->pos (on the letter); appends the character. */
static int unicode_escape(struct parser *p, kvs__buf *b, struct pos at)
{
	char letter = p->s[p->pos];
	int ndig = letter == 'u' ? ESCAPE_U_DIGITS : ESCAPE_BIG_U_DIGITS;
	const char *digits = p->s + p->pos + 1;
	char utf8[UTF8_MAX_LEN];
	uint32_t cp = 0;

	for (int i = 0; i < ndig; i++) {
		unsigned d = digit_value(peek_at(p, p->pos + 1 + (size_t)i));

		if (d >= BASE_HEX)
			return fail(p, at,
			            "invalid escape: \\%c needs %d hexadecimal "
			            "digits",
			            letter, ndig);
		cp = cp * BASE_HEX + d;
	}
	if (cp > UNICODE_MAX || (cp >= SURROGATE_FIRST && cp <= SURROGATE_LAST))
		return fail(p, at,
		            "invalid escape '\\%c%.*s': not a Unicode scalar "
		            "value",
		            letter, ndig, digits);
	p->pos += 1 + (size_t)ndig;
	return buf_add(b, utf8, utf8_encode(cp, utf8));
}

/* An escape sequence in a basic string, at its backslash. */
static int parse_escape(struct parser *p, kvs__buf *b, int multi)
{
	static const char from[] = "btnfr\"\\";
	static const char to[] = "\b\t\n\f\r\"\\";
	struct pos at = here(p);
	char what[DESCRIBE_SIZE];
	const char *hit;
	int c;

	p->pos++;
	c = peek(p);
	if (c == EOF)
		return fail(p, at, "unterminated string");
	hit = c != '\0' ? strchr(from, c) : NULL;
	if (hit != NULL) {
		p->pos++;
		return buf_put(b, to[hit - from]);
	}
	if (c == 'u' || c == 'U')
		return unicode_escape(p, b, at);
	if (multi && (c == ' ' || c == '\t' || eol_len(p, p->pos) > 0))
		return line_ending_backslash(p, at);
	if (c > ' ' && c < ASCII_DEL)
		return fail(p, at, "invalid escape '\\%c' in string", c);
	describe(p, p->pos, what, sizeof(what));
	return fail(p, at, "invalid escape in string: '\\' followed by %s",
	            what);
}

/*
 * A basic string ("..." or, when multi, """...""") at its opening quote;
 * appends its value to b.
 */
static int parse_basic(struct parser *p, kvs__buf *b, int multi)
{
	struct pos open = here(p);
	int done, rc;
	size_t n;

	if (buf_reserve(b, 0) != TOML_OK)
		return TOML_ENOMEM;
	p->pos += multi ? TRIPLE_QUOTE : 1;
	n = multi ? eol_len(p, p->pos) : 0;
	if (n > 0)
		take_newline(p, n); /* a newline right after """ is trimmed */
	for (;;) {
		if (p->pos >= p->len)
			return fail(p, open,
			            multi ? "unterminated multi-line string"
			                  : "unterminated string");
		if (p->s[p->pos] == '"') {
			if (!multi) {
				p->pos++;
				return TOML_OK;
			}
			rc = close_quotes(p, b, '"', &done);
			if (rc != TOML_OK || done)
				return rc;
			continue;
		}
		if (p->s[p->pos] == '\\') {
			rc = parse_escape(p, b, multi);
			if (rc != TOML_OK)
				return rc;
			continue;
		}
		n = eol_len(p, p->pos);
		if (n > 0) {
			if (!multi)
				return fail(p, open, "unterminated string");
			/* Line ends are stored as LF, whatever the file has. */
			if (buf_put(b, '\n') != TOML_OK)
				return TOML_ENOMEM;
			take_newline(p, n);
			continue;
		}
		rc = text_char(p, "a string", &n);
		if (rc != TOML_OK)
			return rc;
		if (buf_add(b, p->s + p->pos, n) != TOML_OK)
			return TOML_ENOMEM;
		p->pos += n;
	}
}

/* A literal string ('...' or, when multi, '''...'''); appends to b. */
static int parse_literal(struct parser *p, kvs__buf *b, int multi)
{
	struct pos open = here(p);
	int done, rc;
	size_t n;

	if (buf_reserve(b, 0) != TOML_OK)
		return TOML_ENOMEM;
	p->pos += multi ? TRIPLE_QUOTE : 1;
	n = multi ? eol_len(p, p->pos) : 0;
	if (n > 0)
		take_newline(p, n);
	for (;;) {
		if (p->pos >= p->len)
			return fail(p, open,
			            multi ? "unterminated multi-line literal "
			                    "string"
			                  : "unterminated literal string");
		if (p->s[p->pos] == '\'') {
			if (!multi) {
				p->pos++;
				return TOML_OK;
			}
			rc = close_quotes(p, b, '\'', &done);
			if (rc != TOML_OK || done)
				return rc;
			continue;
		}
		n = eol_len(p, p->pos);
		if (n > 0) {
			if (!multi)
				return fail(p, open,
				            "unterminated literal string");
			if (buf_put(b, '\n') != TOML_OK)
				return TOML_ENOMEM;
			take_newline(p, n);
			continue;
		}
		rc = text_char(p, "a string", &n);
		if (rc != TOML_OK)
			return rc;
		if (buf_add(b, p->s + p->pos, n) != TOML_OK)
			return TOML_ENOMEM;
		p->pos += n;
	}
}

static int parse_string_value(struct parser *p, kvs__toml_value **out)
{
	struct pos at = here(p);
	kvs__buf b;
	int quote = peek(p);
	int multi = at_triple(p, quote);
	kvs__toml_value *v;
	int rc;

	kvs__buf_init(&b, 0);
	rc = quote == '"' ? parse_basic(p, &b, multi)
	                  : parse_literal(p, &b, multi);
	if (rc != TOML_OK) {
		free(b.data);
		return rc;
	}
	v = value_new(KVS_TOML_STRING, at);
	if (v == NULL) {
		free(b.data);
		return TOML_ENOMEM;
	}
	v->u.str.ptr = b.data;
	v->u.str.len = b.len;
	*out = v;
	return TOML_OK;
}

/* ------------------------------------------------------------------ */
/* Numbers, booleans, inf and nan.                                    */
/* ------------------------------------------------------------------ */

static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static locale_t c_locale = (locale_t)0;

/*
 * Floats are converted in the "C" locale whatever the program's locale
 * is, so that the decimal point is always '.'. The locale object is made
 * once and kept for the life of the process.
 */
static void c_locale_init(void)
{
	c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

/*
 * Scans digits of the given base from t[*j] on (t has n bytes), allowing
 * single underscores between digits. Returns the number of digits, or -1
 * when an underscore is not between two digits (*j is then on it).
 */
static long scan_digits(const char *t, size_t n, size_t *j, unsigned base)
{
	long count = 0;
	int after_digit = 0;

	while (*j < n) {
		if (digit_value((unsigned char)t[*j]) < base) {
			count++;
			after_digit = 1;
		} else if (t[*j] == '_') {
			if (!after_digit || *j + 1 >= n ||
			    digit_value((unsigned char)t[*j + 1]) >= base)
				return -1;
			after_digit = 0;
		} else {
			break;
		}
		(*j)++;
	}
	return count;
}

/*
 * Accumulates the digits of t[from, to) (underscores skipped) into *out,
 * failing when the magnitude exceeds limit.
 */
static int accumulate(const char *t, size_t from, size_t to, unsigned base,
                      uint64_t limit, uint64_t *out)
{
	uint64_t v = 0;

	for (size_t i = from; i < to; i++) {
		unsigned d = digit_value((unsigned char)t[i]);

		if (t[i] == '_')
			continue;
		if (v > (limit - d) / base)
			return -1;
		v = v * base + d;
	}
	*out = v;
	return 0;
}

/* Converts the float text t[0, n) (already checked) without underscores. */
static int convert_float(struct parser *p, struct pos at, const char *t,
                         size_t n, double *out)
{
	char small[FLOAT_BUF_SIZE];
	char *buf = small, *end;
	struct excerpt ex;
	size_t m = 0;
	double d;

	pthread_once(&c_locale_once, c_locale_init);
	if (c_locale == (locale_t)0)
		return TOML_ENOMEM;
	if (n >= sizeof(small)) {
		buf = malloc(n + 1);
		if (buf == NULL)
			return TOML_ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		if (t[i] != '_')
			buf[m++] = t[i];
	}
	buf[m] = '\0';
	d = strtod_l(buf, &end, c_locale);
	if (buf != small)
		free(buf);
	/* Too small a value rounds to zero; too big a one is an error. */
	if (isinf(d)) {
		token_excerpt(p, p->pos, &ex);
		return fail(p, at, "float out of range: %s", ex.text);
	}
	*out = d;
	return TOML_OK;
}

/* A number at p->pos: integer (decimal, hex, octal, binary) or float. */
static int parse_number(struct parser *p, kvs__toml_value **out)
{
	struct pos at = here(p);
	const char *t = p->s + p->pos;
	size_t n = 0, i = 0, j;
	struct excerpt ex;
	int neg = 0, is_float = 0, rc;
	unsigned base = BASE_DEC;
	uint64_t mag = 0, limit = (uint64_t)INT64_MAX;
	kvs__toml_value *v;
	double d = 0;
	long digits;

	while (p->pos + n < p->len && is_word((unsigned char)t[n]))
		n++;
	token_excerpt(p, p->pos, &ex);
	if (t[0] == '+' || t[0] == '-') {
		neg = t[0] == '-';
		i = 1;
	}
	if (word_is(t + i, n - i, "inf") || word_is(t + i, n - i, "nan")) {
		d = t[i] == 'i' ? INFINITY : NAN;
		d = neg ? -d : d;
		is_float = 1;
		goto make;
	}
	if (n - i >= RADIX_PREFIX_LEN && t[i] == '0' &&
	    (t[i + 1] == 'x' || t[i + 1] == 'o' || t[i + 1] == 'b')) {
		base = t[i + 1] == 'x'   ? BASE_HEX
		       : t[i + 1] == 'o' ? BASE_OCT
		                         : BASE_BIN;
		if (i > 0)
			return fail(p, at,
			            "invalid number '%s': hexadecimal, octal "
			            "and binary integers cannot have a sign",
			            ex.text);
		i += RADIX_PREFIX_LEN;
	}
	j = i;
	digits = scan_digits(t, n, &j, base);
	if (digits < 0)
		return fail(p, pos_of(p, p->pos + j),
		            "invalid number '%s': '_' must be between digits",
		            ex.text);
	if (digits == 0)
		return fail(p, at, "invalid number '%s'", ex.text);
	if (base == BASE_DEC && t[i] == '0' && j - i > 1)
		return fail(p, at,
		            "invalid number '%s': leading zeros are not "
		            "allowed",
		            ex.text);
	if (base == BASE_DEC && j < n && t[j] == '.') {
		j++;
		digits = scan_digits(t, n, &j, base);
		if (digits <= 0)
			return fail(p, at,
			            "invalid number '%s': a digit must follow "
			            "the decimal point",
			            ex.text);
		is_float = 1;
	}
	if (base == BASE_DEC && j < n && (t[j] == 'e' || t[j] == 'E')) {
		j++;
		if (j < n && (t[j] == '+' || t[j] == '-'))
			j++;
		digits = scan_digits(t, n, &j, base);
		if (digits <= 0)
			return fail(p, at, "invalid number '%s': bad exponent",
			            ex.text);
		is_float = 1;
	}
	if (j != n)
		return fail(p, at, "invalid number '%s'", ex.text);
	if (is_float) {
		rc = convert_float(p, at, t, n, &d);
		if (rc != TOML_OK)
			return rc;
		goto make;
	}
	/* The magnitude of INT64_MIN is one more than INT64_MAX. */
	if (neg)
		limit = (uint64_t)INT64_MAX + 1;
	if (accumulate(t, i, n, base, limit, &mag) != 0)
		return fail(p, at, "integer out of range");
make:
	v = value_new(is_float ? KVS_TOML_FLOAT : KVS_TOML_INTEGER, at);
	if (v == NULL)
		return TOML_ENOMEM;
	if (is_float)
		v->u.flt = d;
	else if (neg)
		v->u.integer =
		    mag > (uint64_t)INT64_MAX ? INT64_MIN : -(int64_t)mag;
	else
		v->u.integer = (int64_t)mag;
	p->pos += n;
	*out = v;
	return TOML_OK;
}

/* A value starting with a letter: true, false, inf or nan. */
static int parse_word(struct parser *p, kvs__toml_value **out)
{
	struct pos at = here(p);
	const char *t = p->s + p->pos;
	kvs__toml_value *v;
	struct excerpt ex;
	size_t n = 0;

	while (p->pos + n < p->len && is_word((unsigned char)t[n]))
		n++;
	if (word_is(t, n, "inf") || word_is(t, n, "nan"))
		return parse_number(p, out);
	if (word_is(t, n, "true") || word_is(t, n, "false")) {
		v = value_new(KVS_TOML_BOOL, at);
		if (v == NULL)
			return TOML_ENOMEM;
		v->u.boolean = t[0] == 't';
		p->pos += n;
		*out = v;
		return TOML_OK;
	}
	token_excerpt(p, p->pos, &ex);
	return fail(p, at, "invalid value '%s' (strings must be quoted)",
	            ex.text);
}

/* ------------------------------------------------------------------ */
/* Dates and times.                                                   */
/* ------------------------------------------------------------------ */

/* Whether n digits start at off. */
static int digits_at(const struct parser *p, size_t off, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!is_digit(peek_at(p, off + i)))
			return 0;
	}
	return 1;
}

/* Reads exactly n digits at p->pos into *out; 0 when they are not there. */
static int read_fixed(struct parser *p, size_t n, int *out)
{
	int v = 0;

	if (!digits_at(p, p->pos, n))
		return 0;
	for (size_t i = 0; i < n; i++)
		v = v * BASE_DEC + (p->s[p->pos + i] - '0');
	p->pos += n;
	*out = v;
	return 1;
}

/* Consumes c if it is next. */
static int take(struct parser *p, int c)
{
	if (peek(p) != c)
		return 0;
	p->pos++;
	return 1;
}

static int days_in_month(int year, int month)
{
	static const int days[MONTHS_PER_YEAR] = {31, 28, 31, 30, 31, 30,
	                                          31, 31, 30, 31, 30, 31};
	int leap = (year % LEAP_EVERY == 0 && year % LEAP_CENTURY != 0) ||
	           year % LEAP_QUAD_CENT == 0;

	if (month == FEBRUARY && leap)
		return DAYS_IN_LEAP_FEB;
	return days[month - 1];
}

/* HH:MM:SS with an optional fraction, at p->pos; fills the time fields. */
static int parse_time(struct parser *p, kvs__toml_datetime *dt)
{
	struct pos at = here(p);
	char what[DESCRIBE_SIZE];
	size_t start = p->pos;
	struct excerpt ex;
	long nano = 0;
	size_t ndig = 0;

	if (!read_fixed(p, FIELD_DIGITS, &dt->hour) || !take(p, ':') ||
	    !read_fixed(p, FIELD_DIGITS, &dt->minute) || !take(p, ':') ||
	    !read_fixed(p, FIELD_DIGITS, &dt->second)) {
		token_excerpt(p, start, &ex);
		if (ex.len > 0)
			return fail(p, at,
			            "malformed time: %s (expected HH:MM:SS)",
			            ex.text);
		describe(p, start, what, sizeof(what));
		return fail(p, at, "expected a time (HH:MM:SS), found %s",
		            what);
	}
	if (take(p, '.')) {
		while (is_digit(peek(p))) {
			if (ndig < NANO_DIGITS)
				nano = nano * BASE_DEC + (p->s[p->pos] - '0');
			ndig++;
			p->pos++;
		}
		if (ndig == 0) {
			token_excerpt(p, start, &ex);
			return fail(p, at,
			            "malformed time: %s (a digit must follow "
			            "'.')",
			            ex.text);
		}
		for (size_t k = ndig; k < NANO_DIGITS; k++)
			nano *= BASE_DEC;
	}
	dt->nanosecond = nano;
	dt->frac_digits = ndig > INT_MAX ? INT_MAX : (int)ndig;
	if (dt->hour > HOUR_MAX || dt->minute > MINUTE_MAX ||
	    dt->second > SECOND_MAX)
		return fail(p, at, "invalid time: %.*s", clip(p->pos - start),
		            p->s + start);
	return TOML_OK;
}

/* A local time value (HH:MM:SS...) at p->pos. */
static int parse_time_value(struct parser *p, kvs__toml_value **out)
{
	struct pos at = here(p);
	kvs__toml_datetime dt;
	kvs__toml_value *v;
	int rc;

	memset(&dt, 0, sizeof(dt));
	rc = parse_time(p, &dt);
	if (rc != TOML_OK)
		return rc;
	v = value_new(KVS_TOML_TIME_LOCAL, at);
	if (v == NULL)
		return TOML_ENOMEM;
	v->u.dt = dt;
	*out = v;
	return TOML_OK;
}

/* A time offset (Z or +HH:MM / -HH:MM) at p->pos. */
static int parse_offset(struct parser *p, kvs__toml_datetime *dt)
{
	struct pos at = here(p);
	size_t start = p->pos;
	struct excerpt ex;
	int sign, hour, minute;

	if (take(p, 'Z') || take(p, 'z')) {
		dt->offset_minutes = 0;
		return TOML_OK;
	}
	sign = peek(p) == '-' ? -1 : 1;
	p->pos++;
	if (!read_fixed(p, FIELD_DIGITS, &hour) || !take(p, ':') ||
	    !read_fixed(p, FIELD_DIGITS, &minute) || hour > HOUR_MAX ||
	    minute > MINUTE_MAX) {
		token_excerpt(p, start, &ex);
		return fail(p, at,
		            "invalid time offset: %s (expected Z or +HH:MM)",
		            ex.text);
	}
	dt->offset_minutes = sign * (hour * MINUTES_PER_HOUR + minute);
	return TOML_OK;
}

/*
 * A date at p->pos, possibly followed by a time (after 'T', 't' or a space)
 * and an offset: a local date, a local date-time or an offset date-time.
 */
static int parse_datetime(struct parser *p, kvs__toml_value **out)
{
	struct pos at = here(p);
	size_t start = p->pos;
	kvs__toml_type type = KVS_TOML_DATE_LOCAL;
	kvs__toml_datetime dt;
	kvs__toml_value *v;
	struct excerpt ex;
	int c, rc;

	memset(&dt, 0, sizeof(dt));
	if (!read_fixed(p, YEAR_DIGITS, &dt.year) || !take(p, '-') ||
	    !read_fixed(p, FIELD_DIGITS, &dt.month) || !take(p, '-') ||
	    !read_fixed(p, FIELD_DIGITS, &dt.day)) {
		token_excerpt(p, start, &ex);
		return fail(p, at, "malformed date: %s (expected YYYY-MM-DD)",
		            ex.text);
	}
	if (dt.month < 1 || dt.month > MONTHS_PER_YEAR || dt.day < 1 ||
	    dt.day > days_in_month(dt.year, dt.month))
		return fail(p, at, "invalid date: %.*s", clip(p->pos - start),
		            p->s + start);
	c = peek(p);
	if (c == 'T' || c == 't' ||
	    (c == ' ' && digits_at(p, p->pos + 1, FIELD_DIGITS) &&
	     peek_at(p, p->pos + 1 + FIELD_DIGITS) == ':')) {
		p->pos++;
		rc = parse_time(p, &dt);
		if (rc != TOML_OK)
			return rc;
		type = KVS_TOML_DATETIME_LOCAL;
		c = peek(p);
		if (c == 'Z' || c == 'z' || c == '+' || c == '-') {
			rc = parse_offset(p, &dt);
			if (rc != TOML_OK)
				return rc;
			type = KVS_TOML_DATETIME;
		}
	}
	v = value_new(type, at);
	if (v == NULL)
		return TOML_ENOMEM;
	v->u.dt = dt;
	*out = v;
	return TOML_OK;
}

/* ------------------------------------------------------------------ */
/* Keys, tables and arrays.                                           */
/* ------------------------------------------------------------------ */

/* One part of a key (bare or quoted) at p->pos, added to p->parts. */
static int parse_key_part(struct parser *p)
{
	char what[DESCRIBE_SIZE];
	struct key_part *part;
	size_t start = p->pos;
	int c = peek(p), rc;

	if (p->nparts == TOML_MAX_DEPTH)
		return fail(p, here(p), "key has too many parts (more than %d)",
		            TOML_MAX_DEPTH);
	part = &p->parts[p->nparts];
	part->at = here(p);
	part->off = p->keys.len;
	if (c != EOF && is_bare(c)) {
		while (p->pos < p->len && is_bare((unsigned char)p->s[p->pos]))
			p->pos++;
		rc = buf_add(&p->keys, p->s + start, p->pos - start);
	} else if (c == '"' || c == '\'') {
		if (at_triple(p, c))
			return fail(p, here(p),
			            "a key cannot be a multi-line string");
		rc = c == '"' ? parse_basic(p, &p->keys, 0)
		              : parse_literal(p, &p->keys, 0);
	} else {
		describe(p, p->pos, what, sizeof(what));
		return fail(p, here(p), "expected a key, found %s", what);
	}
	if (rc != TOML_OK)
		return rc;
	part->len = p->keys.len - part->off;
	p->nparts++;
	return TOML_OK;
}

/* A (possibly dotted) key at p->pos into p->parts; skips whitespace after. */
static int parse_key(struct parser *p)
{
	int rc;

	p->nparts = 0;
	p->keys.len = 0;
	for (;;) {
		rc = parse_key_part(p);
		if (rc != TOML_OK)
			return rc;
		skip_ws(p);
		if (peek(p) != '.')
			return TOML_OK;
		p->pos++;
		skip_ws(p);
	}
}

static int too_deep(struct parser *p, struct pos at)
{
	return fail(p, at, "nesting too deep (more than %d levels)",
	            TOML_MAX_DEPTH);
}

/*
 * Creates a table named by key part i inside parent and makes *out point at
 * it. The table's value starts at at.
 */
static int add_subtable(struct parser *p, struct node *parent, size_t i,
                        enum origin origin, struct pos at, struct node **out)
{
	const struct key_part *part = &p->parts[i];
	struct node *t;
	char *key;

	if (parent->depth >= TOML_MAX_DEPTH)
		return too_deep(p, part->at);
	t = node_new(KVS_TOML_TABLE, origin, parent->depth + 1, at);
	key = dup_bytes(p->keys.data + part->off, part->len);
	if (t == NULL || key == NULL ||
	    table_add(parent, key, part->len, part->at, &t->v) != TOML_OK) {
		free(key);
		free(t);
		return TOML_ENOMEM;
	}
	*out = t;
	return TOML_OK;
}

/*
 * Follows the parts of a dotted key but the last from table t, creating the
 * tables that are missing; *out receives the table the last part goes in.
 * Only tables that dotted keys created may be entered this way.
 */
static int walk_dotted(struct parser *p, struct node *t, struct node **out)
{
	struct excerpt name;
	kvs__toml_keyval *kv;
	struct node *n;
	int rc;

	for (size_t i = 0; i + 1 < p->nparts; i++) {
		const struct key_part *part = &p->parts[i];

		kv = table_find(t, p->keys.data + part->off, part->len);
		if (kv == NULL) {
			rc = add_subtable(p, t, i, ORIGIN_DOTTED, part->at, &t);
			if (rc != TOML_OK)
				return rc;
			continue;
		}
		n = node_of(kv->value);
		if (kv->value->type == KVS_TOML_TABLE &&
		    n->origin == ORIGIN_DOTTED) {
			t = n;
			continue;
		}
		key_excerpt(p, i + 1, &name);
		if (kv->value->type != KVS_TOML_TABLE)
			return fail(p, part->at, "key '%s' is %s, not a table",
			            name.text, type_phrase(kv->value->type));
		if (n->origin == ORIGIN_INLINE)
			return fail(p, part->at,
			            "inline table '%s' cannot be extended",
			            name.text);
		return fail(p, part->at,
		            "table '%s' was created by a table header and "
		            "cannot be extended with dotted keys",
		            name.text);
	}
	*out = t;
	return TOML_OK;
}

/* A key/value pair at p->pos, added to table t. */
static int parse_keyval(struct parser *p, struct node *t)
{
	const struct key_part *last;
	kvs__toml_value *v = NULL;
	struct excerpt name;
	size_t key_len;
	struct pos key_at;
	char *key;
	int rc;

	rc = parse_key(p);
	if (rc != TOML_OK)
		return rc;
	if (peek(p) != '=')
		return fail(p, here(p), "expected '=' after key");
	p->pos++;
	skip_ws(p);
	rc = walk_dotted(p, t, &t);
	if (rc != TOML_OK)
		return rc;
	last = &p->parts[p->nparts - 1];
	if (table_find(t, p->keys.data + last->off, last->len) != NULL) {
		key_excerpt(p, p->nparts, &name);
		return fail(p, last->at, "duplicate key '%s'", name.text);
	}
	/* Parsing the value may parse other keys: keep this one apart. */
	key_at = last->at;
	key_len = last->len;
	key = dup_bytes(p->keys.data + last->off, key_len);
	if (key == NULL)
		return TOML_ENOMEM;
	rc = parse_value(p, t->depth + 1, &v);
	if (rc == TOML_OK && table_add(t, key, key_len, key_at, v) != TOML_OK)
		rc = TOML_ENOMEM;
	if (rc != TOML_OK) {
		free(key);
		kvs__toml_free(v);
	}
	return rc;
}

/* An array value [ ... ] at p->pos, at the given depth. */
static int parse_array(struct parser *p, unsigned depth, kvs__toml_value **out)
{
	struct pos at = here(p);
	kvs__toml_value *item;
	char what[DESCRIBE_SIZE];
	struct node *a;
	int rc;

	if (depth > TOML_MAX_DEPTH)
		return too_deep(p, at);
	a = node_new(KVS_TOML_ARRAY, ORIGIN_STATIC, depth, at);
	if (a == NULL)
		return TOML_ENOMEM;
	p->pos++;
	for (;;) {
		rc = skip_blank(p);
		if (rc != TOML_OK)
			goto fail;
		if (take(p, ']'))
			break;
		if (p->pos >= p->len) {
			rc = fail(p, at, "unterminated array (missing ']')");
			goto fail;
		}
		item = NULL;
		rc = parse_value(p, depth + 1, &item);
		if (rc == TOML_OK && array_add(a, item) != TOML_OK) {
			kvs__toml_free(item);
			rc = TOML_ENOMEM;
		}
		if (rc != TOML_OK)
			goto fail;
		rc = skip_blank(p);
		if (rc != TOML_OK)
			goto fail;
		if (take(p, ']'))
			break;
		if (p->pos >= p->len) {
			rc = fail(p, at, "unterminated array (missing ']')");
			goto fail;
		}
		if (!take(p, ',')) {
			describe(p, p->pos, what, sizeof(what));
			rc = fail(p, here(p),
			          "expected ',' or ']' in array, found %s",
			          what);
			goto fail;
		}
	}
	*out = &a->v;
	return TOML_OK;
fail:
	kvs__toml_free(&a->v);
	return rc;
}

/* Fails when an inline table goes on past the end of its line. */
static int inline_on_one_line(struct parser *p, struct pos open)
{
	if (p->pos >= p->len)
		return fail(p, open, "unterminated inline table (missing '}')");
	if (eol_len(p, p->pos) > 0)
		return fail(p, here(p),
		            "an inline table must be on a single line");
	return TOML_OK;
}

/* An inline table { ... } at p->pos, at the given depth. */
static int parse_inline_table(struct parser *p, unsigned depth,
                              kvs__toml_value **out)
{
	struct pos at = here(p);
	char what[DESCRIBE_SIZE];
	struct node *t;
	int rc;

	if (depth > TOML_MAX_DEPTH)
		return too_deep(p, at);
	t = node_new(KVS_TOML_TABLE, ORIGIN_INLINE, depth, at);
	if (t == NULL)
		return TOML_ENOMEM;
	p->pos++;
	skip_ws(p);
	if (take(p, '}'))
		goto done;
	for (;;) {
		rc = inline_on_one_line(p, at);
		if (rc != TOML_OK)
			goto fail;
		rc = parse_keyval(p, t);
		if (rc != TOML_OK)
			goto fail;
		skip_ws(p);
		rc = inline_on_one_line(p, at);
		if (rc != TOML_OK)
			goto fail;
		if (take(p, '}'))
			break;
		if (!take(p, ',')) {
			describe(p, p->pos, what, sizeof(what));
			rc = fail(p, here(p),
			          "expected ',' or '}' in inline table, found "
			          "%s",
			          what);
			goto fail;
		}
		skip_ws(p);
		if (peek(p) == '}') {
			rc = fail(p, here(p),
			          "trailing comma is not allowed in an inline "
			          "table");
			goto fail;
		}
	}
done:
	*out = &t->v;
	return TOML_OK;
fail:
	kvs__toml_free(&t->v);
	return rc;
}

static int parse_value(struct parser *p, unsigned depth, kvs__toml_value **out)
{
	char what[DESCRIBE_SIZE];
	int c = peek(p);

	if (c == '"' || c == '\'')
		return parse_string_value(p, out);
	if (c == '[')
		return parse_array(p, depth, out);
	if (c == '{')
		return parse_inline_table(p, depth, out);
	if (is_digit(c)) {
		if (digits_at(p, p->pos, YEAR_DIGITS) &&
		    peek_at(p, p->pos + YEAR_DIGITS) == '-')
			return parse_datetime(p, out);
		if (digits_at(p, p->pos, FIELD_DIGITS) &&
		    peek_at(p, p->pos + FIELD_DIGITS) == ':')
			return parse_time_value(p, out);
		return parse_number(p, out);
	}
	if (c == '+' || c == '-')
		return parse_number(p, out);
	if (c != EOF && is_alpha(c))
		return parse_word(p, out);
	describe(p, p->pos, what, sizeof(what));
	return fail(p, here(p), "expected a value, found %s", what);
}

/*
 * Follows the parts of a header's key but the last from the root, creating
 * missing tables as implicit ones and entering the last table of arrays of
 * tables; *out receives the parent of the table the header names.
 */
static int walk_header(struct parser *p, struct node **out)
{
	struct node *t = p->root, *n;
	struct excerpt name;
	kvs__toml_keyval *kv;
	kvs__toml_value *v;
	int rc;

	for (size_t i = 0; i + 1 < p->nparts; i++) {
		const struct key_part *part = &p->parts[i];

		kv = table_find(t, p->keys.data + part->off, part->len);
		if (kv == NULL) {
			rc = add_subtable(p, t, i, ORIGIN_IMPLICIT, part->at,
			                  &t);
			if (rc != TOML_OK)
				return rc;
			continue;
		}
		v = kv->value;
		n = node_of(v);
		if (v->type == KVS_TOML_TABLE && n->origin != ORIGIN_INLINE) {
			t = n;
			continue;
		}
		if (v->type == KVS_TOML_ARRAY && n->origin == ORIGIN_AOT) {
			/* Arrays of tables are never empty. */
			t = node_of(v->u.arr.items[v->u.arr.len - 1]);
			continue;
		}
		key_excerpt(p, i + 1, &name);
		if (v->type == KVS_TOML_TABLE)
			return fail(p, part->at,
			            "inline table '%s' cannot be extended",
			            name.text);
		if (v->type == KVS_TOML_ARRAY)
			return fail(
			    p, part->at,
			    "array '%s' was given as a value and cannot "
			    "be extended by a table header",
			    name.text);
		return fail(p, part->at, "key '%s' is %s, not a table",
		            name.text, type_phrase(v->type));
	}
	*out = t;
	return TOML_OK;
}

/* The [[key]] part of a header: appends a table to an array of tables. */
static int add_aot_element(struct parser *p, struct node *parent, struct pos at)
{
	const struct key_part *last = &p->parts[p->nparts - 1];
	struct node *arr, *elem;
	kvs__toml_keyval *kv;
	struct excerpt name;
	char *key;

	kv = table_find(parent, p->keys.data + last->off, last->len);
	if (kv != NULL && (kv->value->type != KVS_TOML_ARRAY ||
	                   node_of(kv->value)->origin != ORIGIN_AOT)) {
		key_excerpt(p, p->nparts, &name);
		if (kv->value->type == KVS_TOML_ARRAY)
			return fail(
			    p, last->at,
			    "array '%s' was given as a value and cannot "
			    "be extended by [[%s]]",
			    name.text, name.text);
		return fail(p, last->at, "key '%s' is already defined as %s",
		            name.text, type_phrase(kv->value->type));
	}
	if (parent->depth + 2 > TOML_MAX_DEPTH)
		return too_deep(p, last->at);
	if (kv == NULL) {
		arr =
		    node_new(KVS_TOML_ARRAY, ORIGIN_AOT, parent->depth + 1, at);
		key = dup_bytes(p->keys.data + last->off, last->len);
		if (arr == NULL || key == NULL ||
		    table_add(parent, key, last->len, last->at, &arr->v) !=
		        TOML_OK) {
			free(key);
			free(arr);
			return TOML_ENOMEM;
		}
	} else {
		arr = node_of(kv->value);
	}
	elem = node_new(KVS_TOML_TABLE, ORIGIN_HEADER, arr->depth + 1, at);
	if (elem == NULL || array_add(arr, &elem->v) != TOML_OK) {
		/* An empty array of tables is left, but the parse fails. */
		free(elem);
		return TOML_ENOMEM;
	}
	p->cur = elem;
	return TOML_OK;
}

/* The [key] part of a header: defines a table once. */
static int define_table(struct parser *p, struct node *parent, struct pos at)
{
	const struct key_part *last = &p->parts[p->nparts - 1];
	kvs__toml_keyval *kv;
	struct excerpt name;
	struct node *t;
	int rc;

	kv = table_find(parent, p->keys.data + last->off, last->len);
	if (kv == NULL) {
		rc = add_subtable(p, parent, p->nparts - 1, ORIGIN_HEADER, at,
		                  &t);
		if (rc != TOML_OK)
			return rc;
		p->cur = t;
		return TOML_OK;
	}
	t = node_of(kv->value);
	if (kv->value->type == KVS_TOML_TABLE && t->origin == ORIGIN_IMPLICIT) {
		/* Created as a parent by an earlier header: defined now. */
		t->origin = ORIGIN_HEADER;
		t->v.line = at.line;
		t->v.col = at.col;
		p->cur = t;
		return TOML_OK;
	}
	key_excerpt(p, p->nparts, &name);
	if (kv->value->type == KVS_TOML_TABLE)
		return fail(p, last->at, "table '%s' is already defined",
		            name.text);
	return fail(p, last->at, "key '%s' is already defined as %s", name.text,
	            type_phrase(kv->value->type));
}

/* A table header, [key] or [[key]], at p->pos. */
static int parse_header(struct parser *p)
{
	struct pos at = here(p);
	char what[DESCRIBE_SIZE];
	struct node *parent = p->root;
	int aot, rc;

	p->pos++;
	aot = take(p, '[');
	skip_ws(p);
	rc = parse_key(p);
	if (rc != TOML_OK)
		return rc;
	if (!take(p, ']') || (aot && !take(p, ']'))) {
		describe(p, p->pos, what, sizeof(what));
		return fail(p, here(p),
		            "expected '%s' at end of table header, "
		            "found %s",
		            aot ? "]]" : "]", what);
	}
	rc = walk_header(p, &parent);
	if (rc != TOML_OK)
		return rc;
	return aot ? add_aot_element(p, parent, at)
	           : define_table(p, parent, at);
}

static int parse_document(struct parser *p)
{
	int c, rc;

	if (p->len >= UTF8_BOM_LEN &&
	    memcmp(p->s, utf8_bom, UTF8_BOM_LEN) == 0) {
		p->pos = UTF8_BOM_LEN;
		p->line_start = p->pos; /* columns count from after it */
	}
	for (;;) {
		skip_ws(p);
		if (p->pos >= p->len)
			return TOML_OK;
		c = peek(p);
		if (c == '#' || c == '\n' || c == '\r') {
			rc = finish_line(p, NULL);
		} else if (c == '[') {
			rc = parse_header(p);
			if (rc == TOML_OK)
				rc = finish_line(p, "table header");
		} else {
			rc = parse_keyval(p, p->cur);
			if (rc == TOML_OK)
				rc = finish_line(p, "value");
		}
		if (rc != TOML_OK)
			return rc;
	}
}

int kvs__toml_parse(const char *text, size_t len, kvs__toml_value **root,
                    kvs__toml_error *err)
{
	static const struct pos start = {1, 1};
	struct parser p;
	struct pos at;
	int rc;

	if (root != NULL)
		*root = NULL;
	if (err != NULL) {
		err->line = 0;
		err->col = 0;
		err->msg[0] = '\0';
	}
	memset(&p, 0, sizeof(p));
	p.s = text != NULL ? text : "";
	p.len = text != NULL ? len : 0;
	p.line = 1;
	p.err = err;
	p.root = node_new(KVS_TOML_TABLE, ORIGIN_HEADER, 0, start);
	if (p.root == NULL) {
		rc = TOML_ENOMEM;
		goto out;
	}
	p.cur = p.root;
	rc = parse_document(&p);
out:
	free(p.keys.data);
	if (rc == TOML_ENOMEM && err != NULL) {
		at = here(&p);
		err->line = at.line;
		err->col = at.col;
		snprintf(err->msg, sizeof(err->msg), "out of memory");
	}
	if (rc != TOML_OK || root == NULL) {
		if (p.root != NULL)
			kvs__toml_free(&p.root->v);
		return rc;
	}
	*root = &p.root->v;
	return TOML_OK;
}
