/*
 * check_rand.c - unit tests of rand_bytes: draws never repeat (across block
 * refills and odd sizes), and a forked child does not hand out the bytes its
 * parent still holds in its block.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sluice/rand.h"

static int cmp16(const void *a, const void *b)
{
	return memcmp(a, b, 16);
}

START_TEST(test_rand_bytes_draws_do_not_repeat_across_refills)
{
	/* 3,000 draws of 16 bytes span a dozen 4 KiB blocks. */
	enum { N = 3000 };
	static uint8_t d[N][16];
	for (int i = 0; i < N; i++)
		rand_bytes(d[i], 16);
	qsort(d, N, 16, cmp16);
	for (int i = 1; i < N; i++)
		ck_assert_msg(memcmp(d[i - 1], d[i], 16) != 0, "draw repeated");
}
END_TEST

START_TEST(test_rand_bytes_fills_odd_sizes_completely)
{
	/* A 0x00 canary byte survives a fill with probability 1/256 per byte; 700 bytes all zero cannot. */
	uint8_t big[700];
	memset(big, 0, sizeof(big));
	rand_bytes(big, 1);
	rand_bytes(big + 1, sizeof(big) - 1); /* crosses a block boundary */
	int zeros = 0;
	for (size_t i = 0; i < sizeof(big); i++)
		zeros += big[i] == 0;
	ck_assert_int_lt(zeros, 30);
}
END_TEST

START_TEST(test_rand_bytes_forked_child_draws_differ_from_parent)
{
	uint8_t first[8];
	rand_bytes(first, sizeof(first)); /* the parent now holds a partly used block */
	int fds[2];
	ck_assert_int_eq(pipe(fds), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		uint8_t c[32];
		rand_bytes(c, sizeof(c));
		_exit(write(fds[1], c, sizeof(c)) == (ssize_t)sizeof(c) ? 0 : 1);
	}
	uint8_t child[32], parent[32];
	ck_assert_int_eq(read(fds[0], child, sizeof(child)), (ssize_t)sizeof(child));
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	rand_bytes(parent, sizeof(parent));
	ck_assert_msg(memcmp(child, parent, sizeof(child)) != 0,
		      "the child handed out the parent's next bytes");
	close(fds[0]);
	close(fds[1]);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("rand");
	TCase *tc = tcase_create("rand");
	tcase_add_test(tc, test_rand_bytes_draws_do_not_repeat_across_refills);
	tcase_add_test(tc, test_rand_bytes_fills_odd_sizes_completely);
	tcase_add_test(tc, test_rand_bytes_forked_child_draws_differ_from_parent);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
