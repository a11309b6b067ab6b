/*
 * bench-http.c - kvshard-bench's HTTP: request templates, base64, and an
 * incremental HTTP/1.x response parser.
 *
 * The parser never copies a body: it only counts its bytes (Content-Length,
 * chunked, or up to the end of the connection) so that a large answer costs
 * no more than reading it. Lines (status, headers, chunk sizes, trailers)
 * must be whole in the caller's buffer; an incomplete one is left for the
 * next call.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bench.h"

/* ---- templates ---------------------------------------------------------- */

static const char *const var_names[VAR_COUNT] = {
	[VAR_HOST] = "host",
	[VAR_KEY] = "key",
	[VAR_KEY_B64] = "key_b64",
	[VAR_VALUE] = "value",
	[VAR_VALUE_B64] = "value_b64",
};

/* Longest name between braces that is taken for a misspelt placeholder. */
#define PLACEHOLDER_NAME_MAX 32

/* Does text start with "{name}" for a known name? Returns its var or -1. */
static int match_var(const char *text, size_t len, size_t *matched)
{
	for (int v = 0; v < VAR_COUNT; v++) {
		size_t n = strlen(var_names[v]);

		if (len >= n + 2 && text[n + 1] == '}' &&
		    memcmp(text + 1, var_names[v], n) == 0) {
			*matched = n + 2;
			return v;
		}
	}
	return -1;
}

/*
 * Is text "{word}" with a lower-case word that is no placeholder? Braces
 * with anything else inside (JSON bodies) are plain text.
 */
static bool looks_like_placeholder(const char *text, size_t len)
{
	size_t i;

	for (i = 1; i < len && i <= PLACEHOLDER_NAME_MAX; i++) {
		char ch = text[i];

		if (ch == '}')
			return i > 1;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
		      ch == '_'))
			return false;
	}
	return false;
}

static void unknown_placeholder(const char *text, size_t len, char *err,
                                size_t err_size)
{
	const char *end = memchr(text, '}', len);

	snprintf(err, err_size,
	         "unknown placeholder %.*s (known: {host}, {key}, {key_b64}, "
	         "{value}, {value_b64})",
	         (int)(end - text + 1), text);
}

static int add_seg(struct tmpl *t, size_t *cap, const char *text, size_t len,
                   enum var v)
{
	if (text != NULL && len == 0)
		return 0;
	if (t->n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 4;
		struct tmpl_seg *segs = realloc(t->segs, ncap * sizeof(*segs));

		if (segs == NULL)
			return -1;
		t->segs = segs;
		*cap = ncap;
	}
	t->segs[t->n].text = text;
	t->segs[t->n].len = len;
	t->segs[t->n].var = v;
	t->n++;
	if (text == NULL)
		t->uses |= VAR_BIT(v);
	return 0;
}

int tmpl_compile(struct tmpl *t, const char *text, size_t len, char *err,
                 size_t err_size)
{
	size_t cap = 0, lit = 0, i = 0;

	memset(t, 0, sizeof(*t));
	while (i < len) {
		size_t matched;
		int v;

		if (text[i] != '{') {
			i++;
			continue;
		}
		v = match_var(text + i, len - i, &matched);
		if (v < 0) {
			if (looks_like_placeholder(text + i, len - i)) {
				unknown_placeholder(text + i, len - i, err,
				                    err_size);
				goto fail;
			}
			i++;
			continue;
		}
		if (add_seg(t, &cap, text + lit, i - lit, VAR_HOST) != 0 ||
		    add_seg(t, &cap, NULL, 0, (enum var)v) != 0)
			goto nomem;
		i += matched;
		lit = i;
	}
	if (add_seg(t, &cap, text + lit, len - lit, VAR_HOST) != 0)
		goto nomem;
	return 0;

nomem:
	snprintf(err, err_size, "out of memory");
fail:
	tmpl_free(t);
	return -1;
}

void tmpl_free(struct tmpl *t)
{
	free(t->segs);
	memset(t, 0, sizeof(*t));
}

size_t tmpl_length(const struct tmpl *t, const struct vars *v)
{
	size_t len = 0;

	for (size_t i = 0; i < t->n; i++) {
		const struct tmpl_seg *s = &t->segs[i];

		len += s->text ? s->len : v->len[s->var];
	}
	return len;
}

char *tmpl_expand(const struct tmpl *t, const struct vars *v, char *out)
{
	for (size_t i = 0; i < t->n; i++) {
		const struct tmpl_seg *s = &t->segs[i];

		if (s->text != NULL) {
			memcpy(out, s->text, s->len);
			out += s->len;
		} else {
			memcpy(out, v->text[s->var], v->len[s->var]);
			out += v->len[s->var];
		}
	}
	return out;
}

/* ---- base64 ------------------------------------------------------------- */

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

#define B64_GROUP_IN 3u
#define B64_GROUP_OUT 4u
#define B64_BITS 6u
#define B64_MASK 0x3fu

size_t base64_length(size_t len)
{
	return (len + B64_GROUP_IN - 1u) / B64_GROUP_IN * B64_GROUP_OUT;
}

void base64_encode(const void *data, size_t len, char *out)
{
	const unsigned char *in = data;
	size_t i = 0;

	for (; i + B64_GROUP_IN <= len; i += B64_GROUP_IN) {
		uint32_t g = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 |
		             in[i + 2];

		*out++ = b64_alphabet[(g >> 3u * B64_BITS) & B64_MASK];
		*out++ = b64_alphabet[(g >> 2u * B64_BITS) & B64_MASK];
		*out++ = b64_alphabet[(g >> B64_BITS) & B64_MASK];
		*out++ = b64_alphabet[g & B64_MASK];
	}
	if (i < len) {
		uint32_t g = (uint32_t)in[i] << 16;
		bool two = i + 1 < len;

		if (two)
			g |= (uint32_t)in[i + 1] << 8;
		*out++ = b64_alphabet[(g >> 3u * B64_BITS) & B64_MASK];
		*out++ = b64_alphabet[(g >> 2u * B64_BITS) & B64_MASK];
		*out++ = two ? b64_alphabet[(g >> B64_BITS) & B64_MASK] : '=';
		*out++ = '=';
	}
}

/* ---- the response parser ------------------------------------------------ */

#define HTTP_PREFIX "HTTP/1."
#define STATUS_DIGITS 3
#define STATUS_MIN 100
#define STATUS_INFORMATIONAL_END 200
#define STATUS_SWITCHING_PROTOCOLS 101
#define STATUS_NO_CONTENT 204
#define STATUS_NOT_MODIFIED 304
/* Lengths beyond this are refused rather than risk overflow. */
#define LENGTH_LIMIT (1ull << 60)
#define HEX_BASE 16u
#define HEX_LETTER_VALUE 10 /* of 'a' */
#define DECIMAL_BASE 10u

void resp_reset(struct resp *r)
{
	memset(r, 0, sizeof(*r));
	r->state = RESP_STATUS_LINE;
}

/* Case-insensitive: is name exactly lit? */
static bool name_is(const char *name, size_t len, const char *lit)
{
	return strlen(lit) == len && strncasecmp(name, lit, len) == 0;
}

/* Does a comma-separated list hold token (case-insensitive)? */
static bool has_token(const char *list, size_t len, const char *token)
{
	size_t tlen = strlen(token), i = 0;

	while (i < len) {
		size_t start, end;

		while (i < len && (list[i] == ' ' || list[i] == '\t' ||
		                   list[i] == ','))
			i++;
		start = i;
		while (i < len && list[i] != ',')
			i++;
		end = i;
		while (end > start && (list[end - 1] == ' ' ||
		                       list[end - 1] == '\t'))
			end--;
		if (end - start == tlen &&
		    strncasecmp(list + start, token, tlen) == 0)
			return true;
	}
	return false;
}

/* The last coding of a Transfer-Encoding list: is it chunked? */
static bool last_is_chunked(const char *list, size_t len)
{
	const char *comma = memrchr(list, ',', len);
	size_t start = comma ? (size_t)(comma - list) + 1 : 0;

	return has_token(list + start, len - start, "chunked");
}

static int parse_decimal(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * DECIMAL_BASE + (uint64_t)(s[i] - '0');
		if (v >= LENGTH_LIMIT)
			return -1;
	}
	*out = v;
	return 0;
}

static int hex_digit(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + HEX_LETTER_VALUE;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + HEX_LETTER_VALUE;
	return -1;
}

/* The status line: "HTTP/1.x 200 Reason" (the reason may be missing). */
static enum resp_result status_line(struct resp *r, const char *s, size_t len)
{
	/* The status follows the minor version digit and a space. */
	size_t minor = strlen(HTTP_PREFIX), code = minor + 2;
	int status = 0;

	if (len < code + STATUS_DIGITS ||
	    memcmp(s, HTTP_PREFIX, strlen(HTTP_PREFIX)) != 0 ||
	    (s[minor] != '0' && s[minor] != '1') || s[minor + 1] != ' ')
		return RESP_ERROR;
	for (size_t i = code; i < code + STATUS_DIGITS; i++) {
		if (s[i] < '0' || s[i] > '9')
			return RESP_ERROR;
		status = status * (int)DECIMAL_BASE + (s[i] - '0');
	}
	if (len > code + STATUS_DIGITS && s[code + STATUS_DIGITS] != ' ')
		return RESP_ERROR;
	if (status < STATUS_MIN || status >= STATUS_LIMIT)
		return RESP_ERROR;
	r->status = status;
	r->http10 = s[minor] == '0';
	r->state = RESP_HEADER;
	return RESP_MORE;
}

/* The empty line after the headers: what follows? */
static enum resp_result headers_end(struct resp *r)
{
	if (r->status < STATUS_INFORMATIONAL_END) {
		/* An interim answer (100 Continue): the real one follows. */
		if (r->status == STATUS_SWITCHING_PROTOCOLS)
			return RESP_ERROR;
		resp_reset(r);
		return RESP_MORE;
	}
	if (r->http10 && !r->keep_alive)
		r->close = true;
	if (r->status == STATUS_NO_CONTENT ||
	    r->status == STATUS_NOT_MODIFIED) {
		r->state = RESP_COMPLETE;
	} else if (r->chunked) {
		r->state = RESP_CHUNK_SIZE;
	} else if (r->has_length) {
		r->remaining = r->length;
		r->state = r->length ? RESP_BODY : RESP_COMPLETE;
	} else {
		/* No length: the body ends with the connection. */
		r->close = true;
		r->state = RESP_UNTIL_CLOSE;
	}
	return RESP_MORE;
}

static enum resp_result header_line(struct resp *r, const char *s, size_t len)
{
	const char *colon, *value;
	size_t name_len, value_len;

	if (len == 0)
		return headers_end(r);
	if (s[0] == ' ' || s[0] == '\t')
		return RESP_MORE; /* an obsolete folded line: ignored */
	colon = memchr(s, ':', len);
	if (colon == NULL || colon == s)
		return RESP_ERROR;
	name_len = (size_t)(colon - s);
	value = colon + 1;
	value_len = len - name_len - 1;
	while (value_len > 0 && (*value == ' ' || *value == '\t')) {
		value++;
		value_len--;
	}
	while (value_len > 0 &&
	       (value[value_len - 1] == ' ' || value[value_len - 1] == '\t'))
		value_len--;

	if (name_is(s, name_len, "content-length")) {
		uint64_t n;

		if (parse_decimal(value, value_len, &n) != 0 ||
		    (r->has_length && n != r->length))
			return RESP_ERROR;
		r->has_length = true;
		r->length = n;
	} else if (name_is(s, name_len, "transfer-encoding")) {
		r->chunked = last_is_chunked(value, value_len);
		if (!r->chunked)
			r->has_length = false; /* length unknown: until close */
	} else if (name_is(s, name_len, "connection")) {
		if (has_token(value, value_len, "close"))
			r->close = true;
		if (has_token(value, value_len, "keep-alive"))
			r->keep_alive = true;
	}
	/* Chunked wins over a Content-Length sent with it (RFC 9112 6.3). */
	if (r->chunked)
		r->has_length = false;
	return RESP_MORE;
}

static enum resp_result chunk_size_line(struct resp *r, const char *s,
                                        size_t len)
{
	uint64_t size = 0;
	size_t i = 0;

	for (; i < len; i++) {
		int d = hex_digit(s[i]);

		if (d < 0)
			break;
		size = size * HEX_BASE + (uint64_t)d;
		if (size >= LENGTH_LIMIT)
			return RESP_ERROR;
	}
	/* Digits, then nothing, blanks or extensions after ';'. */
	if (i == 0 || (i < len && s[i] != ';' && s[i] != ' ' && s[i] != '\t'))
		return RESP_ERROR;
	r->remaining = size;
	r->state = size ? RESP_CHUNK_DATA : RESP_TRAILER;
	return RESP_MORE;
}

static enum resp_result line(struct resp *r, const char *s, size_t len)
{
	switch (r->state) {
	case RESP_STATUS_LINE:
		return status_line(r, s, len);
	case RESP_HEADER:
		return header_line(r, s, len);
	case RESP_CHUNK_SIZE:
		return chunk_size_line(r, s, len);
	case RESP_CHUNK_END:
		if (len != 0)
			return RESP_ERROR;
		r->state = RESP_CHUNK_SIZE;
		return RESP_MORE;
	case RESP_TRAILER:
		if (len == 0)
			r->state = RESP_COMPLETE;
		return RESP_MORE;
	default:
		return RESP_ERROR;
	}
}

enum resp_result resp_parse(struct resp *r, const char *buf, size_t len,
                            size_t *used)
{
	size_t pos = 0;

	while (r->state != RESP_COMPLETE) {
		const char *nl;
		size_t n, take;

		switch (r->state) {
		case RESP_BODY:
		case RESP_CHUNK_DATA:
			take = len - pos;
			if (take > r->remaining)
				take = (size_t)r->remaining;
			pos += take;
			r->remaining -= take;
			if (r->remaining != 0)
				goto more;
			r->state = r->state == RESP_BODY ? RESP_COMPLETE
			                                 : RESP_CHUNK_END;
			break;
		case RESP_UNTIL_CLOSE:
			pos = len;
			goto more;
		default:
			nl = memchr(buf + pos, '\n', len - pos);
			if (nl == NULL)
				goto more;
			n = (size_t)(nl - (buf + pos));
			if (n > 0 && buf[pos + n - 1] == '\r')
				n--;
			if (line(r, buf + pos, n) == RESP_ERROR) {
				*used = pos;
				return RESP_ERROR;
			}
			pos = (size_t)(nl - buf) + 1;
			break;
		}
	}
	*used = pos;
	return RESP_DONE;

more:
	*used = pos;
	return RESP_MORE;
}

enum resp_result resp_eof(const struct resp *r)
{
	return r->state == RESP_UNTIL_CLOSE ? RESP_DONE : RESP_ERROR;
}
