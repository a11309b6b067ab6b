/*
 * protocol.h - every name and byte on the wire, in one place (internal).
 *
 * Two protocols run over HTTP/1.1:
 *
 *   - the client API (docs/api.md): the seed's /store and /retrieve,
 *     /v1/kv/{key}, scans, batches, cluster information; JSON answers and
 *     errors {"error": code, "message": text} whose codes are exactly the
 *     names of KVS_ERROR_LIST, so kvs_error_from_code() reverses any of
 *     them;
 *   - the peer protocol (docs/protocol.md): one endpoint, POST
 *     /internal/ops, whose body is a binary frame of operations and whose
 *     answer is a frame of results, one per operation, in order.
 *
 * The peer frame. All integers are little endian. A request frame is
 *
 *     "KVSQ"  u8 version  u8 0  u16 n  u32 sender idx      (12 bytes)
 *     then n operations, each
 *     u8 code  u8 flags  u8 r  u8 w  u32 limit  u64 hlc  u32 shard
 *     u8 n_expect  u8 0 u8 0 u8 0                          (24 bytes)
 *     n_expect x (u64 hlc, u32 shard)
 *     u32 key_len, key bytes, u32 value_len, value bytes
 *
 * and an answer frame is
 *
 *     "KVSA"  u8 version  u8 0  u16 n                       (8 bytes)
 *     then n results, each
 *     i32 rc  u8 flags  u8 0  u16 acks  u16 need  u16 replicas
 *     u64 hlc  u32 shard                                   (24 bytes)
 *     u32 value_len, value bytes
 *     u32 n_records, then n_records records, each
 *     u32 key_len, key, u64 hlc, u32 shard, u8 flags, u32 value_len, value
 *
 * A frame of no operations is a ping: it is answered by a frame of no
 * results, and tells its receiver that the sender is alive.
 *
 * Decoding checks every length against the bytes that are there, so a
 * frame can never make the reader run past its buffer; decoded keys and
 * values point into the frame (no copies).
 */
#ifndef KVS_PROTOCOL_H
#define KVS_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#include "kvshard/common.h"
#include "store_internal.h"
#include "util.h"

/* ------------------------------------------------------------------ */
/* The client API                                                       */

#define KVS_PATH_STORE "/store"
#define KVS_PATH_RETRIEVE "/retrieve"
#define KVS_PATH_KEY "/v1/kv/" /* followed by the percent-encoded key */
#define KVS_PATH_SCAN "/v1/kv"
#define KVS_PATH_BATCH "/v1/batch"
#define KVS_PATH_CLUSTER "/v1/cluster"
#define KVS_PATH_CLUSTER_SHARDS "/v1/cluster/shards"
#define KVS_PATH_REBALANCE "/v1/cluster/rebalance"
#define KVS_PATH_STATUS "/v1/status"
#define KVS_PATH_HEALTH "/health"
#define KVS_PATH_METRICS "/metrics"
#define KVS_PATH_INTERNAL "/internal/" /* prefix of the peer protocol */
#define KVS_PATH_PEER "/internal/ops"
/* A link of frames (link.h): the upgrade that starts it. */
#define KVS_PATH_LINK "/internal/link"
#define KVS__LINK_PROTOCOL "kvshard-peer/1"

/* Query arguments. */
#define KVS_ARG_KEY "key"
#define KVS_ARG_VALUE "value"
#define KVS_ARG_PREFIX "prefix"
#define KVS_ARG_START_AFTER "start_after"
#define KVS_ARG_LIMIT "limit"
#define KVS_ARG_VALUES "values"
#define KVS_ARG_R "r" /* read quorum of this request: 1..N, quorum, all */
#define KVS_ARG_W "w" /* write quorum of this request */
#define KVS_QUORUM_MAJORITY "quorum"
#define KVS_QUORUM_ALL "all"

/* Headers. */
#define KVS_HDR_SHARD "X-Kvshard-Shard"   /* the shard that served */
#define KVS_HDR_FORWARDED_BY "X-Kvshard-Forwarded-By"
/* The topology epoch; always 1 while the topology is the config file's
 * (runtime topology changes will move it). */
#define KVS_HDR_EPOCH "X-Kvshard-Epoch"
#define KVS_HDR_SECRET "X-Kvshard-Secret" /* peers: the cluster secret */

#define KVS_TYPE_JSON "application/json"
#define KVS_TYPE_VALUE "application/octet-stream"
#define KVS_TYPE_PEER "application/x-kvshard-peer"
#define KVS_TYPE_METRICS "text/plain; version=0.0.4; charset=utf-8"

/* JSON fields. Byte strings come as "name" (text) and, when the bytes are
 * not printable UTF-8, also "name_b64" (exact bytes): util.h's
 * kvs__json_bytes. */
#define KVS_F_B64_SUFFIX "_b64"
#define KVS_F_ERROR "error"
#define KVS_F_MESSAGE "message"
#define KVS_F_KEY "key"
#define KVS_F_VALUE "value"
#define KVS_F_VERSION "version"
#define KVS_F_SHARD "shard"
#define KVS_F_REPLICAS "replicas"
#define KVS_F_DELETED "deleted"
#define KVS_F_KEYS "keys"   /* scan answer: the records */
#define KVS_F_NEXT "next"   /* scan answer: continue after this key */
#define KVS_F_OPS "ops"     /* batch request */
#define KVS_F_OP "op"
#define KVS_F_IF_MATCH "if_match"
#define KVS_F_IF_ABSENT "if_absent"
#define KVS_F_IF_EXISTS "if_exists"
#define KVS_F_RESULTS "results" /* batch answer */
/* Batch answer: the first operation whose value was left out (those from
 * there on are answer_too_large); absent when the answer is whole. */
#define KVS_F_TRUNCATED_AT "truncated_at"
#define KVS_F_STATUS "status"
#define KVS_OP_GET "get"
#define KVS_OP_PUT "put"
#define KVS_OP_DELETE "delete"
/* /v1/cluster */
#define KVS_F_SHARDS "shards"
#define KVS_F_NAME "name"
#define KVS_F_IDX "idx"
#define KVS_F_ADDRESS "address"
#define KVS_F_WEIGHT "weight"
#define KVS_F_EPOCH "epoch"
#define KVS_F_REPLICATION "replication"
#define KVS_F_READ_QUORUM "read_quorum"
#define KVS_F_WRITE_QUORUM "write_quorum"
#define KVS_F_VNODES "vnodes"
/* /v1/status */
#define KVS_F_UPTIME "uptime_s"
#define KVS_F_STORE_BYTES "store_bytes"

/** The HTTP status that answers a result code (docs/api.md's table). */
unsigned kvs__http_status(int rc);

/**
 * The result code of an HTTP answer whose JSON body may hold an "error"
 * code: that code when known, else the status's usual meaning.
 */
int kvs__result_of_status(long status, const char *error_code);

/**
 * kvs__result_of_status for an answer whose body (len bytes, NULL-safe)
 * may be one of our JSON errors: its "error" code is read without a JSON
 * parser (the server writes it first, as plain lowercase letters).
 */
int kvs__error_of_body(long status, const char *body, size_t len);

/* ------------------------------------------------------------------ */
/* The peer protocol                                                    */

#define KVS__PEER_VERSION 2
/* Most operations in one frame. */
#define KVS__PEER_MAX_OPS 4096

/* Operation codes (wire values). */
enum kvs__pcode {
	KVS__P_READ = 1,  /* the receiver's own record of key, tombstones too */
	KVS__P_APPLY = 2, /* store the record (stamp, value) if it is newer */
	KVS__P_SCAN = 3,  /* one page of the receiver's own records */
	KVS__P_GET = 4,   /* a client's read, coordinated by the receiver */
	KVS__P_PUT = 5,   /* a client's write, coordinated by the receiver */
	KVS__P_DELETE = 6, /* a client's delete, coordinated by the receiver */
	KVS__P_DIGESTS = 7, /* anti-entropy: digests of ranges of segments */
	KVS__P_SEGKEYS = 8  /* anti-entropy: keys and versions of a segment */
};

/* Most segments one DIGESTS asks for, and most records a SEGKEYS
 * answer carries (flag more beyond). */
#define KVS__PEER_MAX_SEGMENTS 65536u
#define KVS__PEER_MAX_SEGKEYS 65536u

/* Operation flags. */
#define KVS__PQ_TOMBSTONE 0x01u /* APPLY: the record is a tombstone */
#define KVS__PQ_VALUES 0x02u    /* SCAN: with values */
#define KVS__PQ_DIGEST 0x04u   /* READ: the version only, not the value */
#define KVS__PQ_START 0x08u     /* SCAN: key is start_after */
#define KVS__PQ_IF_ABSENT 0x10u /* PUT: KVS_WRITE_IF_ABSENT */
#define KVS__PQ_IF_STAMP 0x20u  /* PUT/DELETE: KVS_WRITE_IF_STAMP */
#define KVS__PQ_IF_EXISTS 0x40u /* PUT/DELETE: KVS_WRITE_IF_EXISTS */
#define KVS__PQ_FOLD 0x80u      /* DIGESTS: one digest per range */

/* Result flags. */
#define KVS__PA_TOMBSTONE 0x01u /* READ/GET: the stamp is a deletion's */
#define KVS__PA_APPLIED 0x02u   /* APPLY: written (else as new or newer) */
#define KVS__PA_MORE 0x04u      /* SCAN: stopped at the limit */
#define KVS__PA_DIGEST 0x08u    /* READ: the value was left out (asked so) */

/* One operation. Pointers are borrowed (from the frame when decoded). */
typedef struct kvs__preq {
	unsigned code;  /* enum kvs__pcode */
	unsigned flags; /* KVS__PQ_* */
	unsigned r, w;  /* GET/PUT/DELETE: quorums, 0 for the default */
	uint32_t limit; /* SCAN */
	kvs_stamp stamp; /* APPLY: the record's; PUT/DELETE: the version of
	                    an unconditional write (see node.h) */
	unsigned n_expect; /* IF_STAMP: the versions that may match */
	kvs_stamp expect[KVS__MAX_EXPECT];
	const void *key;  /* SCAN: start_after */
	size_t key_len;
	const void *value; /* SCAN: the prefix */
	size_t value_len;
} kvs__preq;

/* One operation's result. */
typedef struct kvs__pres {
	int rc;             /* KVS_OK, KVS_NOTFOUND, or KVS_E* */
	unsigned flags;     /* KVS__PA_* */
	unsigned acks;      /* PUT/DELETE: replicas that have it */
	unsigned need;      /* the quorum that applied */
	unsigned replicas;  /* N of the key */
	kvs_stamp stamp;    /* the version read or written */
	const void *value;  /* READ/GET */
	size_t value_len;
	size_t n_recs;      /* SCAN: records, encoded (kvs__precs_next) */
	const unsigned char *recs;
	size_t recs_len;
} kvs__pres;

/* Append a request frame's head (n operations follow; the sender's idx
 * and topology epoch, 0 for none) or one operation. */
void kvs__peer_req_head(kvs__buf *b, uint32_t sender, uint64_t epoch,
                        size_t n);
/* Bytes of a request frame's head. */
#define KVS__PEER_REQ_HEAD 20u
/* Set the number of operations in an encoded request frame's head (a
 * frame whose operations were appended one by one). */
void kvs__peer_req_set_count(char *frame, size_t n);
void kvs__peer_req_op(kvs__buf *b, const kvs__preq *q);
/* Append an answer frame's head or one result. */
void kvs__peer_res_head(kvs__buf *b, size_t n);
void kvs__peer_res_op(kvs__buf *b, const kvs__pres *r);
/* Append one scan record to b (the records blob of a kvs__pres). */
void kvs__peer_rec(kvs__buf *b, const kvs_record *rec);

/**
 * Decode a request frame: the sender's idx and epoch, and in *ops a
 * malloc'ed array of *n operations (free()) pointing into data, which
 * must outlive it.
 *
 * @return KVS_OK, KVS_EPROTO (malformed, with a reason in *why),
 *         KVS_ENOMEM.
 */
int kvs__peer_req_decode(const void *data, size_t len, uint32_t *sender,
                         uint64_t *epoch, kvs__preq **ops, size_t *n,
                         const char **why);

/**
 * Decode an answer frame that must hold exactly n results into res[n],
 * pointing into data.
 *
 * @return KVS_OK or KVS_EPROTO.
 */
int kvs__peer_res_decode(const void *data, size_t len, kvs__pres *res,
                         size_t n);

/* Walks the records of a decoded SCAN result. */
typedef struct kvs__precs {
	const unsigned char *p;
	size_t left;   /* records not yet read */
} kvs__precs;

void kvs__precs_start(kvs__precs *it, const kvs__pres *r);
/* The next record (borrowed from the frame); 0 at the end. */
int kvs__precs_next(kvs__precs *it, kvs_record *rec);

/* Request flags of write conditions, and back. */
unsigned kvs__peer_cond_flags(const kvs__cond *c);
void kvs__peer_cond_of(const kvs__preq *q, kvs__cond *c);

#endif /* KVS_PROTOCOL_H */
