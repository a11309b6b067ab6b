/*
 * test_protocol.c - the wire (lib/protocol.c) and the shared helpers
 * (lib/util.c): peer frames encode and decode to the same operations,
 * every malformed frame is refused without reading past its end, every
 * result code has its HTTP status and comes back from its name, and the
 * buffers, UTF-8 checks, JSON strings, base64 and percent-encoding do
 * what their callers rely on.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "link.h"
#include "link_wire.h"
#include "peer.h"
#include "protocol.h"
#include "testutil.h"
#include "timers.h"
#include "util.h"

/* A frame of one operation of each kind, every field set. */
static char *sample_request(size_t *len, kvs__preq *ops, size_t *n)
{
	static const char key[] = {'k', 0, (char)0xff};
	kvs__buf b;

	memset(ops, 0, 6 * sizeof(*ops));
	for (unsigned i = 0; i < 6; i++) {
		ops[i].code = KVS__P_READ + i;
		ops[i].flags = (i * 0x11u) & 0x7f;
		ops[i].r = i;
		ops[i].w = 6 - i;
		ops[i].limit = 1000u * i;
		ops[i].stamp.hlc = UINT64_C(0x0123456789abcdef) + i;
		ops[i].stamp.shard = 7 + i;
		ops[i].n_expect = i;
		for (unsigned e = 0; e < i; e++) {
			ops[i].expect[e].hlc = 100 + e;
			ops[i].expect[e].shard = e;
		}
		ops[i].key = key;
		ops[i].key_len = i % 2 ? sizeof(key) : 1;
		ops[i].value = i % 3 ? "value" : NULL;
		ops[i].value_len = i % 3 ? 5 : 0;
	}
	*n = 6;
	kvs__buf_init(&b, 0);
	kvs__peer_req_head(&b, 42, 7, *n);
	for (size_t i = 0; i < *n; i++)
		kvs__peer_req_op(&b, &ops[i]);
	ck_assert_int_eq(b.rc, KVS_OK);
	return kvs__buf_take(&b, len);
}

START_TEST(requests_round_trip)
{
	kvs__preq ops[6], *got;
	size_t n, len, m;
	uint32_t sender;
	uint64_t epoch = 0;
	const char *why;
	char *frame = sample_request(&len, ops, &n);

	ck_assert_int_eq(kvs__peer_req_decode(frame, len, &sender, &epoch, &got, &m,
	                                      &why),
	                 KVS_OK);
	ck_assert_uint_eq(sender, 42);
	ck_assert_uint_eq(epoch, 7);
	ck_assert_uint_eq(m, n);
	for (size_t i = 0; i < n; i++) {
		ck_assert_uint_eq(got[i].code, ops[i].code);
		ck_assert_uint_eq(got[i].flags, ops[i].flags);
		ck_assert_uint_eq(got[i].r, ops[i].r);
		ck_assert_uint_eq(got[i].w, ops[i].w);
		ck_assert_uint_eq(got[i].limit, ops[i].limit);
		ck_assert_int_eq(kvs_stamp_cmp(&got[i].stamp, &ops[i].stamp), 0);
		ck_assert_uint_eq(got[i].n_expect, ops[i].n_expect);
		for (unsigned e = 0; e < ops[i].n_expect; e++)
			ck_assert_int_eq(kvs_stamp_cmp(&got[i].expect[e],
			                               &ops[i].expect[e]),
			                 0);
		ck_assert_uint_eq(got[i].key_len, ops[i].key_len);
		ck_assert_mem_eq(got[i].key, ops[i].key, ops[i].key_len);
		ck_assert_uint_eq(got[i].value_len, ops[i].value_len);
		if (ops[i].value_len > 0)
			ck_assert_mem_eq(got[i].value, ops[i].value,
			                 ops[i].value_len);
	}
	free(got);
	free(frame);
}
END_TEST

START_TEST(a_ping_is_a_frame_of_nothing)
{
	kvs__buf b;
	kvs__preq *got;
	size_t m, len;
	uint32_t sender;
	uint64_t epoch = 0;
	const char *why;
	char *frame;

	kvs__buf_init(&b, 0);
	kvs__peer_req_head(&b, 3, 0, 0);
	frame = kvs__buf_take(&b, &len);
	ck_assert_int_eq(kvs__peer_req_decode(frame, len, &sender, &epoch, &got, &m,
	                                      &why),
	                 KVS_OK);
	ck_assert_uint_eq(m, 0);
	ck_assert_uint_eq(sender, 3);
	free(got);
	free(frame);
}
END_TEST

/* Every prefix of a valid frame, and every byte flipped, is either
 * refused or decoded within its bounds (ASan watches the reads). */
START_TEST(damaged_requests_are_refused)
{
	kvs__preq ops[6], *got;
	size_t n, len, m;
	uint32_t sender;
	uint64_t epoch = 0;
	const char *why;
	char *frame = sample_request(&len, ops, &n);

	for (size_t cut = 0; cut < len; cut++) {
		char *copy = malloc(cut ? cut : 1);

		memcpy(copy, frame, cut);
		ck_assert_int_eq(kvs__peer_req_decode(copy, cut, &sender, &epoch, &got,
		                                      &m, &why),
		                 KVS_EPROTO);
		ck_assert_ptr_nonnull(why);
		free(copy);
	}
	for (size_t i = 0; i < len; i++) {
		char *copy = malloc(len);

		memcpy(copy, frame, len);
		copy[i] ^= 0x5a;
		if (kvs__peer_req_decode(copy, len, &sender, &epoch, &got, &m, &why) ==
		    KVS_OK)
			free(got);
		free(copy);
	}
	/* Bytes after the last operation. */
	frame = realloc(frame, len + 1);
	frame[len] = 0;
	ck_assert_int_eq(kvs__peer_req_decode(frame, len + 1, &sender, &epoch, &got, &m,
	                                      &why),
	                 KVS_EPROTO);
	/* Another version. */
	frame[4] = KVS__PEER_VERSION + 1;
	ck_assert_int_eq(kvs__peer_req_decode(frame, len, &sender, &epoch, &got, &m,
	                                      &why),
	                 KVS_EPROTO);
	ck_assert_str_eq(why, "unknown protocol version");
	free(frame);
}
END_TEST

START_TEST(answers_round_trip_with_records)
{
	kvs__pres res[2], got[2];
	kvs__buf recs, b;
	kvs_record rec;
	kvs__precs it;
	size_t len;
	char *frame;
	int n = 0;

	kvs__buf_init(&recs, 0);
	for (int i = 0; i < 3; i++) {
		char key[8];

		memset(&rec, 0, sizeof(rec));
		snprintf(key, sizeof(key), "r%d", i);
		rec.key = key;
		rec.key_len = strlen(key);
		rec.stamp.hlc = (uint64_t)i + 1;
		rec.flags = i == 1 ? KVS_RECORD_TOMBSTONE : 0;
		rec.value = i == 1 ? NULL : "v";
		rec.value_len = i == 1 ? 0 : 1;
		kvs__peer_rec(&recs, &rec);
	}
	memset(res, 0, sizeof(res));
	res[0].rc = KVS_NOTFOUND;
	res[0].flags = KVS__PA_TOMBSTONE;
	res[0].stamp.hlc = 9;
	res[1].rc = KVS_OK;
	res[1].flags = KVS__PA_MORE;
	res[1].acks = 2;
	res[1].need = 2;
	res[1].replicas = 3;
	res[1].value = "xyz";
	res[1].value_len = 3;
	res[1].n_recs = 3;
	res[1].recs = (const unsigned char *)recs.data;
	res[1].recs_len = recs.len;
	kvs__buf_init(&b, 0);
	kvs__peer_res_head(&b, 2);
	kvs__peer_res_op(&b, &res[0]);
	kvs__peer_res_op(&b, &res[1]);
	frame = kvs__buf_take(&b, &len);
	ck_assert_int_eq(kvs__peer_res_decode(frame, len, got, 2), KVS_OK);
	ck_assert_int_eq(got[0].rc, KVS_NOTFOUND);
	ck_assert_uint_eq(got[0].flags, KVS__PA_TOMBSTONE);
	ck_assert_uint_eq(got[0].stamp.hlc, 9);
	ck_assert_int_eq(got[1].rc, KVS_OK);
	ck_assert_uint_eq(got[1].acks, 2);
	ck_assert_uint_eq(got[1].replicas, 3);
	ck_assert_uint_eq(got[1].value_len, 3);
	ck_assert_mem_eq(got[1].value, "xyz", 3);
	kvs__precs_start(&it, &got[1]);
	while (kvs__precs_next(&it, &rec)) {
		ck_assert_uint_eq(rec.stamp.hlc, (uint64_t)n + 1);
		ck_assert_uint_eq(rec.flags,
		                  n == 1 ? KVS_RECORD_TOMBSTONE : 0u);
		ck_assert_uint_eq(rec.value_len, n == 1 ? 0u : 1u);
		n++;
	}
	ck_assert_int_eq(n, 3);
	/* The wrong count of results, and every prefix: refused. */
	ck_assert_int_eq(kvs__peer_res_decode(frame, len, got, 1), KVS_EPROTO);
	for (size_t cut = 0; cut < len; cut++)
		ck_assert_int_eq(kvs__peer_res_decode(frame, cut, got, 2),
		                 KVS_EPROTO);
	free(frame);
	kvs__buf_free(&recs);
}
END_TEST

/* An answer whose frame does not decode is a protocol error. */
START_TEST(garbage_answers_are_protocol_errors)
{
	kvs__panswer a;
	char *body = strdup("<html>not a frame</html>");

	memset(&a, 0, sizeof(a));
	kvs__panswer_fill(&a, body, strlen(body), 1);
	ck_assert_int_eq(a.rc, KVS_EPROTO);
	ck_assert_ptr_null(a.res);
	free(a.body);
}
END_TEST

START_TEST(every_code_has_a_status_and_comes_back)
{
#define CHECK_CODE(name, value, code, text)                                   \
	{                                                                     \
		unsigned st = kvs__http_status(name);                         \
		char body[128];                                               \
                                                                              \
		ck_assert(st >= 200 && st <= 599);                            \
		ck_assert((name) < 0 ? st >= 400 : st < 500);                 \
		snprintf(body, sizeof(body),                                  \
		         "{\"error\":\"%s\",\"message\":\"m\"}", code);       \
		if ((name) < 0)                                               \
			ck_assert_int_eq(kvs__error_of_body(st, body,         \
			                                    strlen(body)),    \
			                 name);                               \
	}
	KVS_ERROR_LIST(CHECK_CODE)
#undef CHECK_CODE
	/* Without a body, the status says what it can. */
	ck_assert_int_eq(kvs__error_of_body(404, NULL, 0), KVS_NOTFOUND);
	ck_assert_int_eq(kvs__error_of_body(503, "x", 1), KVS_EUNAVAIL);
	ck_assert_int_eq(kvs__error_of_body(418, "", 0), KVS_EHTTP);
	ck_assert_int_eq(kvs__error_of_body(400, "{\"error\":\"nonsense\"}", 20),
	                 KVS_EINVAL);
}
END_TEST

/* ------------------------------------------------------------------ */
/* util.h                                                               */

START_TEST(buffers_grow_and_stop_at_their_cap)
{
	kvs__buf b;
	size_t len;
	char *text;

	kvs__buf_init(&b, 0);
	for (int i = 0; i < 1000; i++)
		kvs__buf_addf(&b, "%04d,", i);
	ck_assert_int_eq(b.rc, KVS_OK);
	ck_assert_uint_eq(b.len, 5000);
	ck_assert_int_eq(strncmp(b.data + 4995, "0999,", 5), 0);
	ck_assert_int_eq(b.data[b.len], '\0');
	text = kvs__buf_take(&b, &len);
	ck_assert_uint_eq(len, 5000);
	ck_assert_ptr_null(b.data);
	free(text);
	kvs__buf_init(&b, 10);
	ck_assert_int_eq(kvs__buf_adds(&b, "0123456789"), KVS_OK);
	ck_assert_int_eq(kvs__buf_add(&b, "x", 1), KVS_ERANGE);
	ck_assert_int_eq(kvs__buf_adds(&b, "y"), KVS_ERANGE); /* sticky */
	ck_assert_ptr_null(kvs__buf_take(&b, &len));
	ck_assert_uint_eq(len, 0);
	kvs__buf_init(&b, 8);
	ck_assert_int_eq(kvs__buf_addf(&b, "%s", "too long for it"),
	                 KVS_ERANGE);
	kvs__buf_free(&b);
}
END_TEST

START_TEST(utf8_and_json_strings)
{
	static const char nul[] = {'a', 0, 'b'};
	kvs__buf b;

	ck_assert(kvs__printable("caf\xc3\xa9 ok", 8));
	ck_assert(!kvs__printable(nul, 3));
	ck_assert(!kvs__printable("tab\t", 4));
	ck_assert(!kvs__printable("\xc2\x85", 2));   /* C1 control */
	ck_assert(!kvs__printable("\xc0\xaf", 2));   /* overlong */
	ck_assert(!kvs__printable("\xed\xa0\x80", 3)); /* surrogate */
	ck_assert(!kvs__printable("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
	ck_assert(kvs__utf8_text("tab\t", 4));
	ck_assert(!kvs__utf8_text(nul, 3));
	kvs__buf_init(&b, 0);
	kvs__json_escape(&b, "q\"b\\s\x01\xff\xc3\xa9", 9);
	ck_assert_str_eq(b.data, "q\\\"b\\\\s\\u0001\\u00ff\xc3\xa9");
	kvs__buf_free(&b);
	kvs__json_bytes(&b, "key", nul, 3);
	ck_assert_str_eq(b.data, "\"key\":\"a\\u0000b\",\"key_b64\":\"YQBi\"");
	kvs__buf_free(&b);
	kvs__json_bytes(&b, "key", "plain", 5);
	ck_assert_str_eq(b.data, "\"key\":\"plain\"");
	kvs__buf_free(&b);
}
END_TEST

START_TEST(base64_and_percent_encoding)
{
	static const unsigned char bytes[] = {0, 1, 0xff, 'a', '/', ' '};
	unsigned char *out;
	size_t len;
	char *esc, dec[32];

	ck_assert_int_eq(kvs__b64_decode_alloc("AAH/YS8g", 8, &out, &len),
	                 KVS_OK);
	ck_assert_uint_eq(len, sizeof(bytes));
	ck_assert_mem_eq(out, bytes, len);
	free(out);
	ck_assert_int_eq(kvs__b64_decode_alloc("", 0, &out, &len), KVS_OK);
	ck_assert_ptr_nonnull(out);
	ck_assert_uint_eq(len, 0);
	free(out);
	ck_assert_int_eq(kvs__b64_decode_alloc("A*==", 4, &out, &len),
	                 KVS_EINVAL);
	ck_assert_ptr_null(out);
	esc = kvs__url_escape(bytes, sizeof(bytes));
	ck_assert_str_eq(esc, "%00%01%FFa%2F%20");
	ck_assert_int_eq(kvs__url_decode(esc, strlen(esc), dec, &len, 0), 0);
	ck_assert_uint_eq(len, sizeof(bytes));
	ck_assert_mem_eq(dec, bytes, len);
	free(esc);
	ck_assert_int_eq(kvs__url_decode("a+b", 3, dec, &len, 1), 0);
	ck_assert_int_eq(strncmp(dec, "a b", 3), 0);
	ck_assert_int_eq(kvs__url_decode("a+b", 3, dec, &len, 0), 0);
	ck_assert_int_eq(strncmp(dec, "a+b", 3), 0);
	ck_assert_int_eq(kvs__url_decode("%4", 2, dec, &len, 0), -1);
	ck_assert_int_eq(kvs__url_decode("%zz", 3, dec, &len, 0), -1);
}
END_TEST

/* Whole files: up to max bytes, NUL-terminated; one byte more is too
 * large; a missing file is an I/O error. */
START_TEST(files_are_read_whole_up_to_their_max)
{
	char path[600], big[10000];
	char *text;
	size_t len;

	memset(big, 'x', sizeof(big));
	snprintf(path, sizeof(path), "%s/f", tu_mkdtemp());
	ck_assert_int_eq(tu_write_file(path, big, sizeof(big)), 0);
	ck_assert_int_eq(kvs__read_file(path, sizeof(big), &text, &len), KVS_OK);
	ck_assert_uint_eq(len, sizeof(big));
	ck_assert_int_eq(text[len], '\0');
	ck_assert_int_eq(memcmp(text, big, len), 0);
	free(text);
	ck_assert_int_eq(kvs__read_file(path, sizeof(big) - 1, &text, &len),
	                 KVS_ERANGE);
	ck_assert_ptr_null(text);
	ck_assert_int_eq(tu_write_file(path, "", 0), 0);
	ck_assert_int_eq(kvs__read_file(path, 10, &text, &len), KVS_OK);
	ck_assert_uint_eq(len, 0);
	ck_assert_str_eq(text, "");
	free(text);
	snprintf(path, sizeof(path), "%s/none", tu_mkdtemp());
	ck_assert_int_eq(kvs__read_file(path, 10, &text, &len), KVS_EIO);
	ck_assert_ptr_null(text);
}
END_TEST

/* Link messages through a socket that takes little at a time: what it
 * does not take waits in order, and the reader finds every message whole,
 * in order, however the bytes were cut. */
START_TEST(link_messages_survive_short_writes)
{
	struct kvs__wq out = {0};
	struct kvs__rq in = {0};
	struct kvs__link_msg m;
	unsigned char head[KVS__LINK_HEAD];
	uint64_t written = 0, sent = 0;
	int sv[2], small = 4096, queued = 0;
	char *big = malloc(300000);
	size_t off = 0, seen = 0;

	ck_assert_ptr_nonnull(big);
	for (size_t i = 0; i < 300000; i++)
		big[i] = (char)(i * 7);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	/* Ten messages: small ones and large ones, ids 1..10. */
	for (uint32_t id = 1; id <= 10; id++) {
		size_t len = id % 2 ? id : 100000 + id;
		int rc;

		kvs__link_head(head, (uint32_t)len, id, -(int32_t)id);
		rc = kvs__wq_send(&out, sv[0], head, big, len, &written);
		ck_assert_int_ge(rc, 0);
		queued |= rc == 0;
		sent += KVS__LINK_HEAD + len;
	}
	ck_assert(queued); /* the socket did not take it all at once */
	/* Read and flush in turn until every message came. */
	while (seen < 10) {
		int r = kvs__wq_flush(&out, sv[0], &written);
		int got;

		ck_assert_int_ge(r, 0);
		ck_assert_int_ge(kvs__rq_read(&in, sv[1]), 0);
		while ((got = kvs__link_next(&in, off, 1u << 20, &m)) == 1) {
			uint32_t id = (uint32_t)(seen + 1);
			size_t len = id % 2 ? id : 100000 + id;

			ck_assert_uint_eq(m.id, id);
			ck_assert_int_eq(m.rc, -(int32_t)id);
			ck_assert_uint_eq(m.len, len);
			ck_assert(memcmp(m.body, big, len) == 0);
			off += KVS__LINK_HEAD + m.len;
			seen++;
		}
		ck_assert_int_eq(got, 0);
		kvs__rq_consume(&in, off);
		off = 0;
	}
	ck_assert_uint_eq(written, sent);
	ck_assert_int_eq(kvs__wq_flush(&out, sv[0], &written), 1);
	/* A head announcing more than the cap is an error, not a wait. */
	kvs__link_head(head, 2000, 11, 0);
	ck_assert_int_eq(write(sv[0], head, sizeof(head)), (ssize_t)sizeof(head));
	ck_assert_int_eq(kvs__rq_read(&in, sv[1]), 0);
	ck_assert_int_eq(kvs__link_next(&in, 0, 1999, &m), -1);
	ck_assert_int_eq(kvs__link_next(&in, 0, 2000, &m), 0);
	/* The peer closing is said so. */
	close(sv[0]);
	kvs__rq_reset(&in);
	ck_assert_int_eq(kvs__rq_read(&in, sv[1]), KVS_ECLOSED);
	close(sv[1]);
	kvs__wq_free(&out);
	kvs__rq_free(&in);
	free(big);
}
END_TEST

struct fired {
	int order[8];
	int n;
};

static struct fired fired;

static void note_fired(void *ud)
{
	fired.order[fired.n++] = (int)(intptr_t)ud;
}

/* Timers fire in deadline order, equal deadlines in the order they were
 * set; the next wait is what is left; closing fires the rest at once and
 * refuses new ones. */
START_TEST(timers_fire_in_order_and_all_at_close)
{
	kvs__timers t;
	int earliest;
	unsigned wait;

	memset(&fired, 0, sizeof(fired));
	ck_assert_int_eq(kvs__timers_init(&t), KVS_OK);
	ck_assert_int_eq(kvs__timers_add(&t, 30, note_fired, (void *)1,
	                                 &earliest),
	                 KVS_OK);
	ck_assert(earliest);
	ck_assert_int_eq(kvs__timers_add(&t, 0, note_fired, (void *)2,
	                                 &earliest),
	                 KVS_OK);
	ck_assert(earliest);
	ck_assert_int_eq(kvs__timers_add(&t, 0, note_fired, (void *)3,
	                                 &earliest),
	                 KVS_OK);
	ck_assert(!earliest); /* after 2, same deadline */
	ck_assert_int_eq(kvs__timers_add(&t, 10000, note_fired, (void *)4,
	                                 &earliest),
	                 KVS_OK);
	ck_assert(!earliest);
	wait = kvs__timers_run(&t, 1000);
	ck_assert_int_eq(fired.n, 2);
	ck_assert_int_eq(fired.order[0], 2);
	ck_assert_int_eq(fired.order[1], 3);
	ck_assert_uint_le(wait, 30);
	ck_assert_uint_gt(wait, 0);
	usleep((wait + 5) * 1000);
	wait = kvs__timers_run(&t, 1000);
	ck_assert_int_eq(fired.n, 3);
	ck_assert_int_eq(fired.order[2], 1);
	ck_assert_uint_eq(wait, 1000); /* capped: the next is 10 s away */
	kvs__timers_close(&t);
	ck_assert_int_eq(fired.n, 4);
	ck_assert_int_eq(fired.order[3], 4);
	ck_assert_int_eq(kvs__timers_add(&t, 0, note_fired, (void *)5,
	                                 &earliest),
	                 KVS_ECLOSED);
	kvs__timers_free(&t);
	ck_assert_int_eq(fired.n, 4);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("protocol");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, requests_round_trip);
	tcase_add_test(tc, a_ping_is_a_frame_of_nothing);
	tcase_add_test(tc, damaged_requests_are_refused);
	tcase_add_test(tc, answers_round_trip_with_records);
	tcase_add_test(tc, garbage_answers_are_protocol_errors);
	tcase_add_test(tc, every_code_has_a_status_and_comes_back);
	tcase_add_test(tc, buffers_grow_and_stop_at_their_cap);
	tcase_add_test(tc, utf8_and_json_strings);
	tcase_add_test(tc, base64_and_percent_encoding);
	tcase_add_test(tc, files_are_read_whole_up_to_their_max);
	tcase_add_test(tc, link_messages_survive_short_writes);
	tcase_add_test(tc, timers_fire_in_order_and_all_at_close);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
