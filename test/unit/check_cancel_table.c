/*
 * check_cancel_table.c - unit tests of the worker's cancel key table
 * (cancel.h): add, find, remove and growth against a plain array kept
 * alongside; keys that share a home slot, runs that wrap around the end of
 * the array, and removal from the middle of a run (the backward shift).
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/cancel.h"
#include "sluice/client.h"

/* Mirrors home_slot in cancel.c; the tests check the layout they expect from it. */
static uint32_t home_of(uint64_t key, uint32_t mask)
{
	return (uint32_t)((key * UINT64_C(0x9e3779b97f4a7c15)) >> 32) & mask;
}

static struct client *client_with_key(uint64_t key)
{
	struct client *c = calloc(1, sizeof(*c));
	ck_assert_ptr_nonnull(c);
	c->cancel_pid = (uint32_t)(key >> 32);
	c->cancel_key = (uint32_t)key;
	return c;
}

/* n keys whose home is slot `home` of a 64-slot table (the first size it takes). */
static void keys_with_home(uint32_t home, uint64_t *keys, int n)
{
	int found = 0;
	for (uint64_t k = 1; found < n; k++)
		if (home_of(k, 63) == home)
			keys[found++] = k;
}

START_TEST(test_cancel_table_finds_nothing_when_empty)
{
	struct cancel_table t;
	cancel_table_init(&t);
	ck_assert_ptr_null(cancel_table_find(&t, 0));
	ck_assert_ptr_null(cancel_table_find(&t, 42));
	struct client *c = client_with_key(42);
	cancel_table_remove(&t, c); /* never added: nothing happens */
	ck_assert_uint_eq(t.n, 0);
	cancel_table_deinit(&t);
	free(c);
}
END_TEST

START_TEST(test_cancel_table_colliding_keys_stay_findable_after_removal_mid_run)
{
	enum { N = 6 };
	uint64_t keys[N];
	struct client *c[N];
	keys_with_home(10, keys, N);
	struct cancel_table t;
	cancel_table_init(&t);
	for (int i = 0; i < N; i++) {
		c[i] = client_with_key(keys[i]);
		cancel_table_add(&t, c[i]);
	}
	ck_assert_uint_eq(t.mask, 63);
	/* One run from the common home, in the order added. */
	for (int i = 0; i < N; i++)
		ck_assert_ptr_eq(t.slots[10 + i], c[i]);
	/* The key's own bits decide, not its home: a key with the same home is not found. */
	uint64_t other[N + 1];
	keys_with_home(10, other, N + 1);
	ck_assert_ptr_null(cancel_table_find(&t, other[N]));

	cancel_table_remove(&t, c[2]);
	ck_assert_ptr_null(cancel_table_find(&t, keys[2]));
	for (int i = 0; i < N; i++)
		if (i != 2)
			ck_assert_ptr_eq(cancel_table_find(&t, keys[i]), c[i]);
	/* The run closed up: no hole before its end. */
	for (int i = 10; i < 10 + N - 1; i++)
		ck_assert_ptr_nonnull(t.slots[i]);
	ck_assert_ptr_null(t.slots[10 + N - 1]);
	ck_assert_uint_eq(t.n, N - 1);

	cancel_table_remove(&t, c[0]);
	cancel_table_remove(&t, c[N - 1]);
	for (int i = 1; i < N - 1; i++)
		if (i != 2)
			ck_assert_ptr_eq(cancel_table_find(&t, keys[i]), c[i]);
	ck_assert_uint_eq(t.n, N - 3);
	cancel_table_deinit(&t);
	for (int i = 0; i < N; i++)
		free(c[i]);
}
END_TEST

START_TEST(test_cancel_table_wrapped_run_keeps_entries_at_or_after_home)
{
	/*
	 * Three keys at home 62 fill 62, 63 and 0; a key at home 0 then goes to
	 * 1. Removing the one in 62 moves 63 -> 62 and 0 -> 63, and the home-0
	 * key moves to 0, its own home, not behind it.
	 */
	uint64_t k62[3], k0[1];
	keys_with_home(62, k62, 3);
	keys_with_home(0, k0, 1);
	struct client *c[4];
	struct cancel_table t;
	cancel_table_init(&t);
	for (int i = 0; i < 3; i++) {
		c[i] = client_with_key(k62[i]);
		cancel_table_add(&t, c[i]);
	}
	c[3] = client_with_key(k0[0]);
	cancel_table_add(&t, c[3]);
	ck_assert_ptr_eq(t.slots[62], c[0]);
	ck_assert_ptr_eq(t.slots[63], c[1]);
	ck_assert_ptr_eq(t.slots[0], c[2]);
	ck_assert_ptr_eq(t.slots[1], c[3]);

	cancel_table_remove(&t, c[0]);
	ck_assert_ptr_eq(t.slots[62], c[1]);
	ck_assert_ptr_eq(t.slots[63], c[2]);
	ck_assert_ptr_eq(t.slots[0], c[3]);
	ck_assert_ptr_null(t.slots[1]);
	for (int i = 1; i < 4; i++)
		ck_assert_ptr_eq(cancel_table_find(&t, client_cancel_key(c[i])), c[i]);

	/* A key homed at 0 must not move before its home when 63 empties. */
	cancel_table_remove(&t, c[1]);
	ck_assert_ptr_eq(t.slots[62], c[2]);
	ck_assert_ptr_eq(t.slots[63], NULL);
	ck_assert_ptr_eq(t.slots[0], c[3]);
	ck_assert_ptr_eq(cancel_table_find(&t, client_cancel_key(c[3])), c[3]);
	cancel_table_deinit(&t);
	for (int i = 0; i < 4; i++)
		free(c[i]);
}
END_TEST

START_TEST(test_cancel_table_grows_before_half_full_and_keeps_everything)
{
	enum { N = 5000 };
	static struct client *c[N];
	struct cancel_table t;
	cancel_table_init(&t);
	for (int i = 0; i < N; i++) {
		/* Peering-like keys: a fixed id in the pid, TTL bits set, a counter elsewhere. */
		c[i] = client_with_key(((uint64_t)(0x00123400u | (uint32_t)(i & 0xff)) << 32) |
				       ((uint32_t)i << 2) | 3u);
		cancel_table_add(&t, c[i]);
		ck_assert_uint_le(t.n * 2, t.mask + 1);
	}
	ck_assert_uint_eq(t.n, N);
	ck_assert_uint_eq(t.mask + 1, 16384);
	for (int i = 0; i < N; i++)
		ck_assert_ptr_eq(cancel_table_find(&t, client_cancel_key(c[i])), c[i]);
	cancel_table_deinit(&t);
	ck_assert_ptr_null(t.slots);
	for (int i = 0; i < N; i++)
		free(c[i]);
}
END_TEST

START_TEST(test_cancel_table_random_operations_match_a_plain_array)
{
	/* Keys from a small space, so runs get long and removals shift a lot. */
	enum { SPACE = 3000, OPS = 200000 };
	static struct client *in[SPACE];
	struct client *pool[SPACE];
	for (int i = 0; i < SPACE; i++) {
		pool[i] = client_with_key(((uint64_t)(i * 7919u) << 32) | (uint64_t)i);
		in[i] = NULL;
	}
	struct cancel_table t;
	cancel_table_init(&t);
	uint32_t n = 0;
	srandom(12345);
	for (int op = 0; op < OPS; op++) {
		int i = (int)(random() % SPACE);
		if (random() % 2 == 0 && !in[i]) {
			cancel_table_add(&t, pool[i]);
			in[i] = pool[i];
			n++;
		} else {
			cancel_table_remove(&t, pool[i]);
			if (in[i])
				n--;
			in[i] = NULL;
		}
		ck_assert_uint_eq(t.n, n);
		int probe = (int)(random() % SPACE);
		ck_assert_ptr_eq(cancel_table_find(&t, client_cancel_key(pool[probe])), in[probe]);
	}
	for (int i = 0; i < SPACE; i++)
		ck_assert_ptr_eq(cancel_table_find(&t, client_cancel_key(pool[i])), in[i]);
	cancel_table_deinit(&t);
	for (int i = 0; i < SPACE; i++)
		free(pool[i]);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cancel_table");
	TCase *tc = tcase_create("cancel_table");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_cancel_table_finds_nothing_when_empty);
	tcase_add_test(tc, test_cancel_table_colliding_keys_stay_findable_after_removal_mid_run);
	tcase_add_test(tc, test_cancel_table_wrapped_run_keeps_entries_at_or_after_home);
	tcase_add_test(tc, test_cancel_table_grows_before_half_full_and_keeps_everything);
	tcase_add_test(tc, test_cancel_table_random_operations_match_a_plain_array);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
