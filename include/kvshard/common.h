/*
 * kvshard/common.h - version, error codes and types shared by every module.
 *
 * Part of libkvshard's public API; include <kvshard.h> rather than this file.
 */
#ifndef KVSHARD_COMMON_H
#define KVSHARD_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(KVS_BUILDING_LIBRARY) && defined(__GNUC__)
#define KVS_API __attribute__((visibility("default")))
#else
#define KVS_API
#endif

/* Library version: compile time. */
#define KVS_VERSION_MAJOR 0
#define KVS_VERSION_MINOR 1
#define KVS_VERSION_PATCH 0
#define KVS_VERSION_STRING "0.1.0"
/* 0xMMmmpp, comparable with < and >. */
#define KVS_VERSION_HEX                                                       \
	((KVS_VERSION_MAJOR << 16) | (KVS_VERSION_MINOR << 8) |                   \
	 KVS_VERSION_PATCH)

/**
 * Library version at run time.
 *
 * @return a static string such as "0.1.0"; never NULL, never freed.
 */
KVS_API const char *kvs_version(void);

/**
 * Library version at run time as KVS_VERSION_HEX would give it.
 */
KVS_API unsigned kvs_version_hex(void);

/*
 * Every function that can fail returns an int: KVS_OK (0) on success, a
 * positive ordinary result (KVS_NOTFOUND) where the contract says so, or one
 * of the negative KVS_E* codes below. Codes are never renumbered or reused;
 * new ones are appended.
 */
#define KVS_ERROR_LIST(X)                                                     \
	X(KVS_OK, 0, "ok", "success")                                           \
	X(KVS_NOTFOUND, 1, "not_found", "key not found")                       \
	X(KVS_EINVAL, -1, "invalid_argument", "invalid argument")               \
	X(KVS_ENOMEM, -2, "out_of_memory", "out of memory")                     \
	X(KVS_EIO, -3, "io_error", "input/output error")                        \
	X(KVS_EKEYSIZE, -4, "bad_key_size",                                    \
	  "key is empty or longer than the maximum key size")                  \
	X(KVS_EVALSIZE, -5, "value_too_large",                                 \
	  "value is larger than the maximum value size")                       \
	X(KVS_EFULL, -6, "storage_full", "storage is full")                     \
	X(KVS_ECORRUPT, -7, "corrupt", "stored data is corrupt")                \
	X(KVS_ECONFIG, -8, "bad_config", "invalid configuration")               \
	X(KVS_ETIMEDOUT, -9, "timeout", "operation timed out")                  \
	X(KVS_ECONNECT, -10, "unreachable", "peer could not be reached")        \
	X(KVS_EPROTO, -11, "protocol_error", "unexpected response from peer")   \
	X(KVS_ECONFLICT, -12, "version_mismatch",                              \
	  "stored version does not match the expected version")                \
	X(KVS_EEXISTS, -13, "exists", "key already exists")                     \
	X(KVS_EBUSY, -14, "busy", "resource temporarily exhausted")             \
	X(KVS_ECLOSED, -15, "closed", "handle is closing")                      \
	X(KVS_EUNAVAIL, -16, "unavailable",                                    \
	  "not enough replicas available")                                      \
	X(KVS_EAUTH, -17, "unauthorized", "authentication failed")              \
	X(KVS_ERANGE, -18, "out_of_range", "value out of range")                \
	X(KVS_ELOCKED, -19, "locked", "store is in use by another process")     \
	X(KVS_EVERSION, -20, "bad_format_version",                             \
	  "store was written by an incompatible version")                      \
	X(KVS_ESYS, -21, "system_error", "operating system error")              \
	X(KVS_EINTERNAL, -22, "internal_error", "internal error")               \
	X(KVS_ENOTSUP, -23, "not_supported", "operation not supported")         \
	X(KVS_EHTTP, -24, "http_error", "peer answered with an HTTP error")      \
	X(KVS_EFORBIDDEN, -25, "forbidden",                                    \
	  "not permitted with these credentials")                             \
	X(KVS_ENOENDPOINT, -26, "no_such_endpoint", "no such endpoint")         \
	X(KVS_EMETHOD, -27, "method_not_allowed",                              \
	  "method not allowed on this endpoint")                              \
	X(KVS_ELENGTH, -28, "length_required",                                 \
	  "the request body needs a length")                                  \
	X(KVS_EURITOOLONG, -29, "uri_too_long", "request line too long")        \
	X(KVS_EWRONGSHARD, -30, "wrong_shard",                                 \
	  "this shard does not own the key")                                  \
	X(KVS_ESHUTDOWN, -31, "shutting_down", "shard is shutting down")        \
	X(KVS_EBADENCODING, -32, "bad_encoding", "malformed percent-encoding")  \
	X(KVS_EMISSINGARG, -33, "missing_argument",                            \
	  "a required argument is missing")                                   \
	X(KVS_EBADARG, -34, "bad_argument", "an argument has a bad value")      \
	X(KVS_EUNKNOWNARG, -35, "unknown_argument", "unknown argument")         \
	X(KVS_EBADCOND, -36, "bad_precondition", "malformed precondition")      \
	X(KVS_EBADBATCH, -37, "bad_batch", "malformed batch")                   \
	X(KVS_ETOOMANY, -38, "too_many_ops", "too many operations in one batch") \
	X(KVS_ECLOCK, -39, "clock_skew",                                       \
	  "version too far ahead of this node's clock")                       \
	X(KVS_ESTATIC, -40, "static_topology",                                 \
	  "the topology is fixed by the configuration file")                  \
	X(KVS_EBADREQUEST, -41, "bad_request", "malformed HTTP request")      \
	X(KVS_EANSWERSIZE, -42, "answer_too_large",                            \
	  "the answer would be larger than the server sends at once")          \
	X(KVS_EOVERLOAD, -43, "overloaded",                                    \
	  "the server is holding too much; retry later")                       \
	X(KVS_ETOPOLOGY, -44, "topology_conflict",                             \
	  "the change does not fit the cluster's current topology")           \
	X(KVS_ESTALEEPOCH, -45, "stale_epoch",                                 \
	  "the sender runs a topology epoch older than every registered node")

#define KVS__ERROR_ENUM(name, value, code, text) name = (value),
/** Result codes; see KVS_ERROR_LIST. */
typedef enum kvs_result { KVS_ERROR_LIST(KVS__ERROR_ENUM) KVS__RESULT_END = 2 } kvs_result;
#undef KVS__ERROR_ENUM

/**
 * Human-readable text for a result code.
 *
 * @return a static string; unknown codes give "unknown error". Never NULL.
 */
KVS_API const char *kvs_strerror(int rc);

/**
 * Stable machine-readable name for a result code ("not_found",
 * "bad_key_size", ...): the "error" field of the HTTP API's JSON errors.
 *
 * @return a static string; unknown codes give "unknown". Never NULL.
 */
KVS_API const char *kvs_error_code(int rc);

/**
 * The result code whose kvs_error_code() is code: what a program reading
 * the HTTP API's JSON errors uses to get a result code back.
 *
 * @param unknown returned when code is NULL or not a known code.
 */
KVS_API int kvs_error_from_code(const char *code, int unknown);

/**
 * Free memory that a kvshard function returned as owned by the caller.
 * Accepts NULL.
 */
KVS_API void kvs_free(void *ptr);

/*
 * A version stamp orders writes across the cluster. hlc is a hybrid logical
 * clock reading: milliseconds since the Unix epoch in the upper 48 bits and a
 * logical counter in the lower 16. shard is the writer's shard id (the idx of
 * the config), the tie breaker when two writers read the same clock. The
 * newest stamp wins everywhere; {0, 0} means "no version".
 */
typedef struct kvs_stamp {
	uint64_t hlc;
	uint32_t shard;
} kvs_stamp;

/* Longest text form of a stamp, with the terminating NUL. */
#define KVS_STAMP_STRLEN 32

/**
 * Compare two stamps.
 *
 * @return <0 if a is older than b, 0 if equal, >0 if a is newer.
 */
KVS_API int kvs_stamp_cmp(const kvs_stamp *a, const kvs_stamp *b);

/**
 * Write the text form of a stamp ("<16 hex digits>-<shard in decimal>"),
 * as used in ETag headers (without the quotes), into buf.
 *
 * @param buf at least KVS_STAMP_STRLEN bytes; always NUL-terminated.
 * @return the length written (not counting the NUL).
 */
KVS_API size_t kvs_stamp_format(const kvs_stamp *s, char *buf);

/**
 * Parse the text form written by kvs_stamp_format(). Surrounding double
 * quotes (an ETag) and a W/ prefix are accepted.
 *
 * @return KVS_OK, or KVS_EINVAL if text is not a stamp.
 */
KVS_API int kvs_stamp_parse(kvs_stamp *s, const char *text, size_t len);

/* Record flags, as reported with a record. */
#define KVS_RECORD_TOMBSTONE 0x1u /* the key was deleted at this stamp */

/*
 * A record as the store and the client report it. Every pointer is
 * borrowed: valid only for the duration of the callback that receives it.
 */
typedef struct kvs_record {
	const void *key;
	size_t key_len;
	const void *value; /* NULL-safe: may be NULL when value_len is 0 */
	size_t value_len;
	kvs_stamp stamp;
	unsigned flags; /* KVS_RECORD_* */
} kvs_record;

/**
 * Callback receiving records from reads and scans.
 *
 * @return 0 to continue, non-zero to stop (a scan then returns KVS_OK).
 */
typedef int (*kvs_record_cb)(void *ud, const kvs_record *rec);

/* Size of the buffers receiving a one-line error message (errbuf). */
#define KVS_ERRBUF_SIZE 512

/* Conditions on a write (kvs_write_options.flags). */
#define KVS_WRITE_IF_ABSENT 0x1u /* fail with KVS_EEXISTS if a live value exists */
#define KVS_WRITE_IF_STAMP 0x2u  /* fail with KVS_ECONFLICT unless the live
                                    value's stamp equals expect */
#define KVS_WRITE_IF_EXISTS 0x4u /* fail with KVS_ECONFLICT unless a live
                                    value exists (HTTP If-Match: *) */

/* Conditions of a write, for the store and the client. */
typedef struct kvs_write_options {
	unsigned flags; /* KVS_WRITE_* */
	kvs_stamp expect;
} kvs_write_options;

#ifdef __cplusplus
}
#endif

#endif /* KVSHARD_COMMON_H */
