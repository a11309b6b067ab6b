/*
 * base64.h - standard base64 (RFC 4648, with padding), internal.
 *
 * JSON bodies carry binary keys and values in base64: scans, batches, the
 * peer protocol's scans.
 */
#ifndef KVS_BASE64_H
#define KVS_BASE64_H

#include <stddef.h>

/* Bytes needed to encode len bytes, without the terminating NUL. */
#define KVS_B64_LEN(len) ((((len) + 2) / 3) * 4)
/* Room that decoding len bytes of text may need (kvs__b64_decode). */
#define KVS_B64_DECODED_MAX(len) ((len) / 4 * 3 + 3)

/* Encode len bytes into out (KVS_B64_LEN(len) + 1 bytes, NUL-terminated).
 * Returns the encoded length. */
size_t kvs__b64_encode(const void *data, size_t len, char *out);

/* Decode text (len bytes, padding required when len % 4 != 0 would be
 * ambiguous: unpadded input is accepted) into out, which must have room for
 * KVS_B64_DECODED_MAX(len) bytes (kvs__b64_decode_alloc in util.h sizes
 * its own buffer). Returns 0 and sets *out_len, or -1 when text is
 * not base64. */
int kvs__b64_decode(const char *text, size_t len, unsigned char *out,
                    size_t *out_len);

#endif
