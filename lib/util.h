/*
 * util.h - small helpers private to libkvshard and its programs.
 *
 * Everything here is written once for the whole tree: the monotonic clock,
 * a growable buffer with a size cap (after curl's dynbuf), UTF-8 checks,
 * JSON string output, base64 that sizes its own buffers, and percent-
 * encoding. The library uses these through its hidden kvs__ symbols; the
 * server and the command-line client compile util.c and base64.c into
 * themselves, as curl's tool does with its library's helpers, so nothing
 * here is exported.
 */
#ifndef KVS_UTIL_H
#define KVS_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define KVS_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Milliseconds and nanoseconds of CLOCK_MONOTONIC. */
uint64_t kvs__mono_ms(void);
uint64_t kvs__mono_ns(void);

struct timespec;
/* CLOCK_REALTIME ms from now, as pthread_cond_timedwait() takes it. */
void kvs__realtime_after(struct timespec *ts, unsigned ms);

/* a followed by b, malloc'ed; NULL when out of memory. */
char *kvs__concat(const char *a, const char *b);

/* A whole file of at most max bytes, NUL-terminated (not counted in
 * *len), malloc'ed into *out: KVS_OK, KVS_EIO (errno says why),
 * KVS_ERANGE (larger than max), KVS_ENOMEM. */
int kvs__read_file(const char *path, size_t max, char **out, size_t *len);

/*
 * A growable byte buffer. Errors are sticky: after the first failure (out
 * of memory, or growing past max) every later append does nothing, and
 * rc says what went wrong, so a writer appends freely and checks once.
 * data is always NUL-terminated when not NULL (the NUL is not counted).
 */
typedef struct kvs__buf {
	char *data;
	size_t len;
	size_t cap;
	size_t max; /* most bytes it may hold; 0: no cap */
	int rc;     /* KVS_OK, KVS_ENOMEM, or KVS_ERANGE (past max) */
} kvs__buf;

/* Start an empty buffer that will hold at most max bytes (0: no cap). */
void kvs__buf_init(kvs__buf *b, size_t max);
/* Free the contents and start over empty (max is kept). */
void kvs__buf_free(kvs__buf *b);
/* Make room for n more bytes; returns b->rc. */
int kvs__buf_reserve(kvs__buf *b, size_t n);
int kvs__buf_add(kvs__buf *b, const void *data, size_t len);
int kvs__buf_adds(kvs__buf *b, const char *text);
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
int kvs__buf_addf(kvs__buf *b, const char *fmt, ...);
#if defined(__GNUC__)
__attribute__((format(printf, 2, 0)))
#endif
int kvs__buf_vaddf(kvs__buf *b, const char *fmt, va_list ap);
/*
 * Take the contents (malloc'ed, freed with free()) and leave b empty.
 * Returns NULL when b failed or holds nothing; *len gets the length.
 */
char *kvs__buf_take(kvs__buf *b, size_t *len);

/*
 * Length of the UTF-8 sequence at p (1 to 4 bytes), or 0 when the bytes
 * there are not one: overlong forms, surrogates and code points above
 * U+10FFFF are refused (RFC 3629). left > 0 bytes are readable.
 */
size_t kvs__utf8_len(const unsigned char *p, size_t left);

/* kvs__utf8_len, also giving the code point in *cp. */
size_t kvs__utf8_decode(const unsigned char *p, size_t left, uint32_t *cp);

/* Are these bytes UTF-8 without NUL or other control characters (C0, DEL,
 * C1)? Such bytes go into JSON as text; anything else also as base64. */
int kvs__printable(const void *data, size_t len);

/* Are these bytes UTF-8 without NUL: text a JSON string carries exactly
 * (escaped), for any JSON reader? */
int kvs__utf8_text(const void *data, size_t len);

/*
 * Append bytes as the inside of a JSON string: UTF-8 is kept, '"' and '\'
 * are escaped, control characters and bytes that are not UTF-8 become
 * \u00XX (so the document stays valid, but non-UTF-8 bytes are not
 * recoverable from it: callers that must not lose them use base64 too).
 */
void kvs__json_escape(kvs__buf *b, const void *data, size_t len);
/* Append "name":"text", and also "name_b64":"..." when the bytes are not
 * kvs__printable (what every JSON answer does with keys). */
void kvs__json_bytes(kvs__buf *b, const char *name, const void *data,
                     size_t len);
/* Append "name_b64":"..." */
void kvs__json_b64(kvs__buf *b, const char *name, const void *data,
                   size_t len);
/* Append base64 of the bytes (no quotes). */
void kvs__buf_add_b64(kvs__buf *b, const void *data, size_t len);

/*
 * Decode base64 text into a new buffer of the right size (malloc'ed, free
 * with free(); never NULL on success, even for empty input).
 *
 * @return KVS_OK, KVS_EINVAL (not base64), KVS_ENOMEM.
 */
int kvs__b64_decode_alloc(const char *text, size_t len, unsigned char **out,
                          size_t *out_len);

/*
 * Percent-encode bytes for a URL path segment or query value (RFC 3986
 * unreserved characters stay as they are). Returns a malloc'ed string or
 * NULL when out of memory.
 */
char *kvs__url_escape(const void *data, size_t len);

/* The value of a hexadecimal digit, or -1. */
int kvs__hex_value(int ch);

/*
 * Percent-decode len bytes of in into out (room for len bytes); with
 * plus_is_space, '+' means a space (form encoding of query strings).
 * Returns 0, or -1 on a malformed escape.
 */
int kvs__url_decode(const char *in, size_t len, char *out, size_t *out_len,
                    int plus_is_space);

/* Fixed-width integers in byte order: little endian (records, frames)
 * and big endian (keys that must sort by number). */
static inline void kvs__put_le32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static inline void kvs__put_le64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static inline uint32_t kvs__get_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline uint64_t kvs__get_le64(const unsigned char *p)
{
	return (uint64_t)kvs__get_le32(p) |
	       (uint64_t)kvs__get_le32(p + 4) << 32;
}

static inline void kvs__put_be32(unsigned char *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

static inline void kvs__put_be64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

static inline uint32_t kvs__get_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t kvs__get_be64(const unsigned char *p)
{
	return (uint64_t)kvs__get_be32(p) << 32 | kvs__get_be32(p + 4);
}

#endif /* KVS_UTIL_H */
