/*
 * check_stream.c - unit tests of the stream layer's parts that need no
 * socket: a peer address kept as struct stream_addr prints exactly as
 * stream_format_address prints the sockaddr it came from.
 */
#include <arpa/inet.h>
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "sluice/stream.h"

/* Both ways of printing sa, which must agree; returns the kept address's text. */
static const char *both_ways(const struct sockaddr *sa, char *kept, size_t len)
{
	char direct[64];
	stream_format_address(sa, direct, sizeof(direct));
	struct stream_addr a;
	stream_addr_set(&a, sa);
	ck_assert_ptr_eq(stream_addr_format(&a, kept, len), kept);
	ck_assert_str_eq(kept, direct);
	return kept;
}

START_TEST(test_stream_addr_prints_ipv4_as_the_sockaddr_does)
{
	static const struct {
		const char *ip;
		int port;
		const char *text;
	} cases[] = {
		{ "127.0.0.1", 5432, "127.0.0.1:5432" },
		{ "0.0.0.0", 0, "0.0.0.0:0" },
		{ "255.255.255.255", 65535, "255.255.255.255:65535" },
		{ "10.1.20.255", 1, "10.1.20.255:1" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_in in;
		memset(&in, 0, sizeof(in));
		in.sin_family = AF_INET;
		in.sin_port = htons((uint16_t)cases[i].port);
		ck_assert_int_eq(inet_pton(AF_INET, cases[i].ip, &in.sin_addr), 1);
		char text[STREAM_ADDR_TEXT_MAX];
		ck_assert_str_eq(both_ways((struct sockaddr *)&in, text, sizeof(text)),
				 cases[i].text);
	}
}
END_TEST

START_TEST(test_stream_addr_prints_ipv6_as_the_sockaddr_does_longest_included)
{
	static const struct {
		const char *ip;
		int port;
		const char *text;
	} cases[] = {
		{ "::1", 5432, "::1:5432" },
		{ "::ffff:192.168.100.200", 65535, "::ffff:192.168.100.200:65535" },
		{ "fe80::1", 6432, "fe80::1:6432" },
		/* The longest an accepted peer's address prints (39 characters). */
		{ "1234:5678:9abc:def0:1234:5678:9abc:def0", 12345,
		  "1234:5678:9abc:def0:1234:5678:9abc:def0:12345" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_in6 in6;
		memset(&in6, 0, sizeof(in6));
		in6.sin6_family = AF_INET6;
		in6.sin6_port = htons((uint16_t)cases[i].port);
		in6.sin6_scope_id = 3; /* printed by neither */
		ck_assert_int_eq(inet_pton(AF_INET6, cases[i].ip, &in6.sin6_addr), 1);
		char text[STREAM_ADDR_TEXT_MAX];
		ck_assert_str_eq(both_ways((struct sockaddr *)&in6, text, sizeof(text)),
				 cases[i].text);
	}
}
END_TEST

START_TEST(test_stream_addr_prints_unix_and_unknown_families_as_the_sockaddr_does)
{
	struct sockaddr_un un;
	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	char text[STREAM_ADDR_TEXT_MAX];
	ck_assert_str_eq(both_ways((struct sockaddr *)&un, text, sizeof(text)), "unix");
	struct sockaddr_storage other;
	memset(&other, 0, sizeof(other));
	other.ss_family = AF_APPLETALK;
	ck_assert_str_eq(both_ways((struct sockaddr *)&other, text, sizeof(text)), "?");
	struct stream_addr a;
	stream_addr_set(&a, NULL);
	ck_assert_str_eq(stream_addr_format(&a, text, sizeof(text)), "?");
}
END_TEST

START_TEST(test_stream_addr_truncates_to_the_buffer_given)
{
	struct sockaddr_in in;
	memset(&in, 0, sizeof(in));
	in.sin_family = AF_INET;
	in.sin_port = htons(5432);
	ck_assert_int_eq(inet_pton(AF_INET, "192.168.1.1", &in.sin_addr), 1);
	struct stream_addr a;
	stream_addr_set(&a, (struct sockaddr *)&in);
	char small[8];
	ck_assert_str_eq(stream_addr_format(&a, small, sizeof(small)), "192.168");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("stream");
	TCase *tc = tcase_create("stream");
	tcase_add_test(tc, test_stream_addr_prints_ipv4_as_the_sockaddr_does);
	tcase_add_test(tc, test_stream_addr_prints_ipv6_as_the_sockaddr_does_longest_included);
	tcase_add_test(tc, test_stream_addr_prints_unix_and_unknown_families_as_the_sockaddr_does);
	tcase_add_test(tc, test_stream_addr_truncates_to_the_buffer_given);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
