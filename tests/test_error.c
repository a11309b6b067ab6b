/*
 * test_error.c - result codes, their texts, version functions, stamps.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "kvshard.h"

START_TEST(strerror_covers_every_code)
{
#define CHECK_CODE(name, value, code, text)                                   \
	ck_assert_str_eq(kvs_strerror(name), text);                           \
	ck_assert_str_eq(kvs_error_code(name), code);
	KVS_ERROR_LIST(CHECK_CODE)
#undef CHECK_CODE
	ck_assert_str_eq(kvs_strerror(-9999), "unknown error");
	ck_assert_str_eq(kvs_error_code(12345), "unknown");
}
END_TEST

START_TEST(codes_map_back_to_results)
{
#define ROUND_TRIP(name, value, code, text)                                   \
	ck_assert_int_eq(kvs_error_from_code(kvs_error_code(name), -999), name);
	KVS_ERROR_LIST(ROUND_TRIP)
#undef ROUND_TRIP
	ck_assert_int_eq(kvs_error_from_code("no_such_code", KVS_EHTTP), KVS_EHTTP);
	ck_assert_int_eq(kvs_error_from_code(NULL, -7), -7);
	ck_assert_int_eq(kvs_error_from_code("", -7), -7);
}
END_TEST

START_TEST(codes_are_unique)
{
	static const int codes[] = {
#define LIST_CODE(name, value, code, text) value,
		KVS_ERROR_LIST(LIST_CODE)
#undef LIST_CODE
	};
	static const char *names[] = {
#define LIST_NAME(name, value, code, text) code,
		KVS_ERROR_LIST(LIST_NAME)
#undef LIST_NAME
	};
	size_t n = sizeof(codes) / sizeof(codes[0]);

	for (size_t i = 0; i < n; i++) {
		for (size_t j = i + 1; j < n; j++) {
			ck_assert_int_ne(codes[i], codes[j]);
			ck_assert_str_ne(names[i], names[j]);
		}
		/* Only KVS_OK and KVS_NOTFOUND are not failures. */
		if (codes[i] >= 0)
			ck_assert(codes[i] == KVS_OK || codes[i] == KVS_NOTFOUND);
	}
}
END_TEST

START_TEST(version_matches_macros)
{
	ck_assert_str_eq(kvs_version(), KVS_VERSION_STRING);
	ck_assert_uint_eq(kvs_version_hex(), KVS_VERSION_HEX);
}
END_TEST

START_TEST(stamp_text_round_trip)
{
	kvs_stamp a = {UINT64_C(0x0190a1b2c3d40005), 7}, b, c = {~UINT64_C(0), UINT32_MAX};
	char buf[KVS_STAMP_STRLEN];
	size_t n;

	n = kvs_stamp_format(&a, buf);
	ck_assert_str_eq(buf, "0190a1b2c3d40005-7");
	ck_assert_uint_eq(n, strlen(buf));
	ck_assert_int_eq(kvs_stamp_parse(&b, buf, n), KVS_OK);
	ck_assert_int_eq(kvs_stamp_cmp(&a, &b), 0);
	ck_assert_int_eq(kvs_stamp_parse(&b, "\"0190a1b2c3d40005-7\"", 20), KVS_OK);
	ck_assert_int_eq(kvs_stamp_cmp(&a, &b), 0);
	ck_assert_int_eq(kvs_stamp_parse(&b, "W/\"0190a1b2c3d40005-7\"", 22), KVS_OK);
	ck_assert_int_eq(kvs_stamp_cmp(&a, &b), 0);
	n = kvs_stamp_format(&c, buf);
	ck_assert_uint_lt(n, KVS_STAMP_STRLEN);
	ck_assert_int_eq(kvs_stamp_parse(&b, buf, n), KVS_OK);
	ck_assert_int_eq(kvs_stamp_cmp(&c, &b), 0);
}
END_TEST

START_TEST(stamp_parse_rejects_garbage)
{
	static const char *bad[] = {
		"", "-", "abc", "abc-", "-1", "xyz-1", "12-1x", "12--1",
		"00000000000000001-1", "1-4294967296", "\"1-1", "1 -1",
	};
	kvs_stamp s;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(kvs_stamp_parse(&s, bad[i], strlen(bad[i])) ==
		                      KVS_EINVAL,
		              "accepted '%s'", bad[i]);
	ck_assert_int_eq(kvs_stamp_parse(&s, NULL, 0), KVS_EINVAL);
}
END_TEST

START_TEST(stamp_order)
{
	kvs_stamp a = {10, 1}, b = {10, 2}, c = {11, 0};

	ck_assert_int_lt(kvs_stamp_cmp(&a, &b), 0);
	ck_assert_int_gt(kvs_stamp_cmp(&b, &a), 0);
	ck_assert_int_lt(kvs_stamp_cmp(&b, &c), 0);
	ck_assert_int_eq(kvs_stamp_cmp(&c, &c), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("error");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, strerror_covers_every_code);
	tcase_add_test(tc, codes_are_unique);
	tcase_add_test(tc, codes_map_back_to_results);
	tcase_add_test(tc, version_matches_macros);
	tcase_add_test(tc, stamp_text_round_trip);
	tcase_add_test(tc, stamp_parse_rejects_garbage);
	tcase_add_test(tc, stamp_order);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
