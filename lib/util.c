/*
 * util.c - helpers shared by the library, the server and the CLI.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base64.h"
#include "kvshard/common.h"
#include "util.h"

/* First allocation of a buffer. */
#define BUF_FIRST 256

uint64_t kvs__mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void kvs__realtime_after(struct timespec *ts, unsigned ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000u;
	ts->tv_nsec += (long)(ms % 1000u) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

char *kvs__concat(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *s = malloc(la + lb + 1);

	if (s != NULL) {
		memcpy(s, a, la);
		memcpy(s + la, b, lb + 1);
	}
	return s;
}

int kvs__read_file(const char *path, size_t max, char **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t got = 0, cap = 0, n;
	int rc = KVS_OK, err = 0;

	*out = NULL;
	*len = 0;
	if (f == NULL)
		return KVS_EIO;
	/* Read up to max + 1 bytes (a file of max bytes and a larger one
	 * differ), with room for the NUL. */
	do {
		if (got + 1 >= cap) {
			size_t want = cap ? cap * 2 : 4096;
			char *nb;

			if (want > max + 2)
				want = max + 2;
			nb = realloc(buf, want);
			if (nb == NULL) {
				rc = KVS_ENOMEM;
				break;
			}
			buf = nb;
			cap = want;
		}
		n = fread(buf + got, 1, cap - 1 - got, f);
		got += n;
	} while (n > 0 && got <= max);
	if (rc == KVS_OK && ferror(f)) {
		rc = KVS_EIO;
		err = errno;
	} else if (rc == KVS_OK && got > max) {
		rc = KVS_ERANGE;
	}
	fclose(f);
	if (rc != KVS_OK) {
		free(buf);
		errno = err;
		return rc;
	}
	buf[got] = '\0';
	*out = buf;
	*len = got;
	return KVS_OK;
}

uint64_t kvs__mono_ms(void)
{
	return kvs__mono_ns() / 1000000u;
}

/* ------------------------------------------------------------------ */
/* Buffers                                                              */

void kvs__buf_init(kvs__buf *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->max = max;
}

void kvs__buf_free(kvs__buf *b)
{
	size_t max = b->max;

	free(b->data);
	kvs__buf_init(b, max);
}

int kvs__buf_reserve(kvs__buf *b, size_t n)
{
	size_t need, cap;
	char *d;

	if (b->rc != KVS_OK)
		return b->rc;
	if (n > SIZE_MAX - b->len - 1 || (b->max != 0 && b->len + n > b->max)) {
		b->rc = KVS_ERANGE;
		return b->rc;
	}
	need = b->len + n + 1;
	if (need <= b->cap) {
		b->data[b->len] = '\0';
		return KVS_OK;
	}
	cap = b->cap ? b->cap : BUF_FIRST;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	d = realloc(b->data, cap);
	if (d == NULL) {
		b->rc = KVS_ENOMEM;
		return b->rc;
	}
	b->data = d;
	b->cap = cap;
	b->data[b->len] = '\0';
	return KVS_OK;
}

int kvs__buf_add(kvs__buf *b, const void *data, size_t len)
{
	if (kvs__buf_reserve(b, len) != KVS_OK)
		return b->rc;
	if (len > 0)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
	return KVS_OK;
}

int kvs__buf_adds(kvs__buf *b, const char *text)
{
	return kvs__buf_add(b, text, strlen(text));
}

int kvs__buf_vaddf(kvs__buf *b, const char *fmt, va_list ap)
{
	va_list again;
	int n;

	if (b->rc != KVS_OK)
		return b->rc;
	va_copy(again, ap);
	n = vsnprintf(b->data ? b->data + b->len : NULL,
	              b->data ? b->cap - b->len : 0, fmt, ap);
	if (n < 0) {
		va_end(again);
		b->rc = KVS_EINVAL;
		return b->rc;
	}
	if (b->data == NULL || (size_t)n >= b->cap - b->len) {
		if (kvs__buf_reserve(b, (size_t)n) != KVS_OK) {
			va_end(again);
			return b->rc;
		}
		vsnprintf(b->data + b->len, b->cap - b->len, fmt, again);
	}
	va_end(again);
	if (b->max != 0 && b->len + (size_t)n > b->max) {
		b->data[b->len] = '\0';
		b->rc = KVS_ERANGE;
		return b->rc;
	}
	b->len += (size_t)n;
	return KVS_OK;
}

int kvs__buf_addf(kvs__buf *b, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = kvs__buf_vaddf(b, fmt, ap);
	va_end(ap);
	return rc;
}

char *kvs__buf_take(kvs__buf *b, size_t *len)
{
	char *d = b->rc == KVS_OK ? b->data : NULL;

	if (len != NULL)
		*len = d != NULL ? b->len : 0;
	if (d == NULL)
		free(b->data);
	b->data = NULL;
	kvs__buf_init(b, b->max);
	return d;
}

/* ------------------------------------------------------------------ */
/* UTF-8 and JSON                                                       */

size_t kvs__utf8_len(const unsigned char *p, size_t left)
{
	uint32_t cp;

	return kvs__utf8_decode(p, left, &cp);
}

size_t kvs__utf8_decode(const unsigned char *p, size_t left, uint32_t *out)
{
	static const uint32_t min_of_len[] = {0, 0, 0x80, 0x800, 0x10000};
	unsigned c = p[0];
	uint32_t cp;
	size_t n;

	if (c < 0x80) {
		*out = c;
		return 1;
	}
	if ((c & 0xe0) == 0xc0) {
		n = 2;
		cp = c & 0x1f;
	} else if ((c & 0xf0) == 0xe0) {
		n = 3;
		cp = c & 0x0f;
	} else if ((c & 0xf8) == 0xf0) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (n > left)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if (cp < min_of_len[n] || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	*out = cp;
	return n;
}

int kvs__printable(const void *data, size_t len)
{
	const unsigned char *p = data;
	size_t i = 0;

	while (i < len) {
		size_t n = kvs__utf8_len(p + i, len - i);

		if (n == 0 || p[i] < 0x20 || p[i] == 0x7f)
			return 0;
		/* C1 controls: U+0080..U+009F, encoded C2 80..C2 9F. */
		if (n == 2 && p[i] == 0xc2 && p[i + 1] < 0xa0)
			return 0;
		i += n;
	}
	return 1;
}

int kvs__utf8_text(const void *data, size_t len)
{
	const unsigned char *p = data;
	size_t i = 0;

	while (i < len) {
		size_t n = kvs__utf8_len(p + i, len - i);

		if (n == 0 || p[i] == 0)
			return 0;
		i += n;
	}
	return 1;
}

void kvs__json_escape(kvs__buf *b, const void *data, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = data;
	size_t i = 0, run = 0;

	/* Copy runs of plain bytes at once. */
	while (i < len) {
		unsigned char c = p[i];
		size_t n = c < 0x80 ? 1 : kvs__utf8_len(p + i, len - i);
		char esc[6];

		if (n > 1 || (n == 1 && c >= 0x20 && c != 0x7f && c != '"' &&
		              c != '\\')) {
			i += n;
			run += n;
			continue;
		}
		kvs__buf_add(b, p + i - run, run);
		run = 0;
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			kvs__buf_add(b, esc, 2);
		} else {
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			kvs__buf_add(b, esc, 6);
		}
		i++;
	}
	kvs__buf_add(b, p + i - run, run);
}

void kvs__buf_add_b64(kvs__buf *b, const void *data, size_t len)
{
	size_t n = KVS_B64_LEN(len);

	if (kvs__buf_reserve(b, n) != KVS_OK)
		return;
	b->len += kvs__b64_encode(data, len, b->data + b->len);
}

void kvs__json_b64(kvs__buf *b, const char *name, const void *data,
                   size_t len)
{
	kvs__buf_addf(b, "\"%s_b64\":\"", name);
	kvs__buf_add_b64(b, data, len);
	kvs__buf_add(b, "\"", 1);
}

void kvs__json_bytes(kvs__buf *b, const char *name, const void *data,
                     size_t len)
{
	kvs__buf_addf(b, "\"%s\":\"", name);
	kvs__json_escape(b, data, len);
	kvs__buf_add(b, "\"", 1);
	if (!kvs__printable(data, len)) {
		kvs__buf_add(b, ",", 1);
		kvs__json_b64(b, name, data, len);
	}
}

/* ------------------------------------------------------------------ */
/* Base64 and percent-encoding                                          */

int kvs__b64_decode_alloc(const char *text, size_t len, unsigned char **out,
                          size_t *out_len)
{
	unsigned char *d = malloc(KVS_B64_DECODED_MAX(len));

	*out = NULL;
	*out_len = 0;
	if (d == NULL)
		return KVS_ENOMEM;
	if (kvs__b64_decode(text, len, d, out_len) != 0) {
		free(d);
		return KVS_EINVAL;
	}
	*out = d;
	return KVS_OK;
}

char *kvs__url_escape(const void *data, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p = data;
	char *out = malloc(len * 3 + 1), *o = out;

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = p[i];

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' ||
		    ch == '_' || ch == '~') {
			*o++ = (char)ch;
		} else {
			*o++ = '%';
			*o++ = hex[ch >> 4];
			*o++ = hex[ch & 15];
		}
	}
	*o = '\0';
	return out;
}

int kvs__hex_value(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

int kvs__url_decode(const char *in, size_t len, char *out, size_t *out_len,
                    int plus_is_space)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		if (in[i] == '%') {
			int hi, lo;

			if (i + 2 >= len)
				return -1;
			hi = kvs__hex_value((unsigned char)in[i + 1]);
			lo = kvs__hex_value((unsigned char)in[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			out[o++] = (char)(hi * 16 + lo);
			i += 2;
		} else if (in[i] == '+' && plus_is_space) {
			out[o++] = ' ';
		} else {
			out[o++] = in[i];
		}
	}
	*out_len = o;
	return 0;
}
