/*
 * check_md5.c - unit tests of md5.c: the test suite of RFC 1321 (A.5), and
 * agreement with OpenSSL's MD5 for every length across three blocks, fed
 * whole and split at every byte.
 */
#include <check.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/md5.h"

static void hex_of(const uint8_t md[MD5_LEN], char out[2 * MD5_LEN + 1])
{
	for (int i = 0; i < MD5_LEN; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static const struct {
	const char *in, *want;
} rfc1321[] = {
	{ "", "d41d8cd98f00b204e9800998ecf8427e" },
	{ "a", "0cc175b9c0f1b6a831c399e269772661" },
	{ "abc", "900150983cd24fb0d6963f7d28e17f72" },
	{ "message digest", "f96b697d7cb7938d525a2f31aaf161d0" },
	{ "abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b" },
	{ "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
	  "d174ab98d277d9f5a5611c2c9f419d9f" },
	{ "1234567890123456789012345678901234567890123456789012345678901234567890123456"
	  "7890",
	  "57edf4a22be3c955ac49da2e2107b67a" },
};

START_TEST(test_md5_rfc1321_test_suite)
{
	struct md5 m;
	uint8_t md[MD5_LEN];
	char hex[2 * MD5_LEN + 1];
	md5_init(&m);
	md5_update(&m, rfc1321[_i].in, strlen(rfc1321[_i].in));
	md5_final(&m, md);
	hex_of(md, hex);
	ck_assert_str_eq(hex, rfc1321[_i].want);
}
END_TEST

START_TEST(test_md5_agrees_with_openssl_whole_and_split_at_every_byte)
{
	enum { MAX = 3 * 64 + 1 };
	uint8_t in[MAX];
	for (int i = 0; i < MAX; i++)
		in[i] = (uint8_t)(i * 37 + 11);
	for (size_t len = 0; len <= MAX; len++) {
		uint8_t want[EVP_MAX_MD_SIZE];
		unsigned int want_len = 0;
		ck_assert(EVP_Digest(in, len, want, &want_len, EVP_md5(), NULL) == 1);
		ck_assert_uint_eq(want_len, MD5_LEN);
		for (size_t cut = 0; cut <= len; cut++) {
			struct md5 m;
			uint8_t md[MD5_LEN];
			md5_init(&m);
			md5_update(&m, in, cut);
			md5_update(&m, in + cut, len - cut);
			md5_final(&m, md);
			ck_assert_msg(memcmp(md, want, MD5_LEN) == 0, "length %zu cut at %zu", len,
				      cut);
		}
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("md5");
	TCase *tc = tcase_create("md5");
	tcase_add_loop_test(tc, test_md5_rfc1321_test_suite, 0,
			    (int)(sizeof(rfc1321) / sizeof(rfc1321[0])));
	tcase_add_test(tc, test_md5_agrees_with_openssl_whole_and_split_at_every_byte);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
