/*
 * check_buf.c - unit tests of the buf module: pooled buffers go back to their
 * pool's free list on the last unref (and the pool's counts say so), the free
 * list never grows past max_free, oversized buffers are one-offs that never
 * touch the pool, and buf_out grows and encodes like the protocol expects.
 *
 * It tests only buf.c's interface. Memory that the pool frees is checked by
 * running this suite under AddressSanitizer/LeakSanitizer, which reports a
 * buffer that was lost or freed twice.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/buf.h"

/* ---- the pool ------------------------------------------------------------- */

START_TEST(test_buf_get_gives_empty_buffer_with_one_ref)
{
	struct buf_pool bp;
	buf_pool_init(&bp, 4);
	struct buf *b = buf_get(&bp, 100);
	ck_assert_ptr_eq(b->pool, &bp);
	ck_assert_uint_eq(b->refs, 1);
	ck_assert_uint_ge(b->cap, 100);
	ck_assert_uint_eq(b->cap, BUF_SIZE);
	ck_assert_uint_eq(buf_avail(b), 0);
	ck_assert_uint_eq(buf_space(b), b->cap);
	ck_assert_uint_eq(bp.in_use, 1);
	ck_assert_uint_eq(bp.free_count, 0);
	/* The whole capacity is writable. */
	memset(b->data, 0xab, b->cap);
	buf_unref(b);
	buf_pool_deinit(&bp);
}
END_TEST

START_TEST(test_buf_unref_returns_buffer_to_free_list_for_reuse)
{
	struct buf_pool bp;
	buf_pool_init(&bp, 4);
	struct buf *b = buf_get(&bp, BUF_SIZE);
	b->start = 10;
	b->end = 100;
	buf_unref(b);
	ck_assert_uint_eq(bp.in_use, 0);
	ck_assert_uint_eq(bp.free_count, 1);

	struct buf *again = buf_get(&bp, 1);
	ck_assert_ptr_eq(again, b);
	ck_assert_uint_eq(bp.free_count, 0);
	ck_assert_uint_eq(bp.in_use, 1);
	/* A reused buffer comes back reset. */
	ck_assert_uint_eq(again->refs, 1);
	ck_assert_uint_eq(again->start, 0);
	ck_assert_uint_eq(again->end, 0);
	ck_assert_uint_eq(again->cap, BUF_SIZE);
	buf_unref(again);
	buf_pool_deinit(&bp);
	ck_assert_uint_eq(bp.free_count, 0);
}
END_TEST

START_TEST(test_buf_ref_keeps_buffer_until_last_unref)
{
	struct buf_pool bp;
	buf_pool_init(&bp, 4);
	struct buf *b = buf_get(&bp, 10);
	/* The reader's reference plus two pending writes. */
	buf_ref(b);
	buf_ref(b);
	ck_assert_uint_eq(b->refs, 3);
	buf_unref(b);
	buf_unref(b);
	ck_assert_uint_eq(bp.in_use, 1);
	ck_assert_uint_eq(bp.free_count, 0);
	ck_assert_uint_eq(b->refs, 1);
	buf_unref(b);
	ck_assert_uint_eq(bp.in_use, 0);
	ck_assert_uint_eq(bp.free_count, 1);
	buf_pool_deinit(&bp);
}
END_TEST

struct max_free_case {
	size_t max_free;
	size_t taken;
};

static const struct max_free_case max_free_cases[] = {
	{ 0, 3 }, { 1, 3 }, { 2, 5 }, { 5, 5 }, { 8, 5 },
};

START_TEST(test_buf_pool_keeps_at_most_max_free)
{
	const struct max_free_case *mc = &max_free_cases[_i];
	struct buf_pool bp;
	buf_pool_init(&bp, mc->max_free);
	struct buf *bufs[16];
	for (size_t i = 0; i < mc->taken; i++)
		bufs[i] = buf_get(&bp, 1);
	ck_assert_uint_eq(bp.in_use, mc->taken);
	for (size_t i = 0; i < mc->taken; i++) {
		buf_unref(bufs[i]);
		ck_assert_uint_le(bp.free_count, mc->max_free);
	}
	ck_assert_uint_eq(bp.in_use, 0);
	ck_assert_uint_eq(bp.free_count, MIN(mc->max_free, mc->taken));
	/* Taking them again drains the free list before allocating. */
	size_t kept = bp.free_count;
	for (size_t i = 0; i < mc->taken; i++)
		bufs[i] = buf_get(&bp, 1);
	ck_assert_uint_eq(bp.free_count, 0);
	ck_assert_uint_eq(bp.in_use, mc->taken);
	ck_assert_uint_le(kept, mc->taken);
	for (size_t i = 0; i < mc->taken; i++)
		buf_unref(bufs[i]);
	buf_pool_deinit(&bp);
	ck_assert_uint_eq(bp.free_count, 0);
}
END_TEST

START_TEST(test_buf_oversized_is_one_off)
{
	struct buf_pool bp;
	buf_pool_init(&bp, 4);
	struct buf *pooled = buf_get(&bp, BUF_SIZE); /* exactly BUF_SIZE still pools */
	ck_assert_ptr_eq(pooled->pool, &bp);
	buf_unref(pooled);
	ck_assert_uint_eq(bp.free_count, 1);

	struct buf *big = buf_get(&bp, BUF_SIZE + 1);
	ck_assert_ptr_null(big->pool);
	ck_assert_uint_eq(big->cap, BUF_SIZE + 1);
	ck_assert_uint_eq(big->refs, 1);
	ck_assert_uint_eq(buf_avail(big), 0);
	/* It neither took the free buffer nor counts as in use. */
	ck_assert_uint_eq(bp.free_count, 1);
	ck_assert_uint_eq(bp.in_use, 0);
	memset(big->data, 0xcd, big->cap);
	buf_ref(big);
	buf_unref(big);
	buf_unref(big);
	/* Its release did not feed the free list either. */
	ck_assert_uint_eq(bp.free_count, 1);
	ck_assert_uint_eq(bp.in_use, 0);
	buf_pool_deinit(&bp);
}
END_TEST

START_TEST(test_buf_avail_and_space_follow_start_and_end)
{
	struct buf_pool bp;
	buf_pool_init(&bp, 1);
	struct buf *b = buf_get(&bp, 1);
	b->end = 300;
	ck_assert_uint_eq(buf_avail(b), 300);
	ck_assert_uint_eq(buf_space(b), BUF_SIZE - 300);
	b->start = 120;
	ck_assert_uint_eq(buf_avail(b), 180);
	b->end = b->cap;
	ck_assert_uint_eq(buf_space(b), 0);
	buf_unref(b);
	buf_pool_deinit(&bp);
}
END_TEST

/* ---- buf_out --------------------------------------------------------------- */

START_TEST(test_buf_out_put_helpers_encode_big_endian)
{
	static const uint8_t want[] = { 0x7f, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef,
					'a',  'b',  0,    0,    'x',  'y' };
	struct buf_out o;
	buf_out_init(&o);
	ck_assert_ptr_null(o.data);
	ck_assert_uint_eq(o.len, 0);
	buf_out_put_u8(&o, 0x7f);
	buf_out_put_be16(&o, 0x1234);
	buf_out_put_be32(&o, 0xdeadbeef);
	buf_out_put_cstr(&o, "ab");
	buf_out_put_cstr(&o, "");
	buf_out_put(&o, "xy", 2);
	buf_out_put(&o, NULL, 0); /* nothing to copy: must not touch p */
	ck_assert_uint_eq(o.len, sizeof(want));
	ck_assert_int_eq(memcmp(o.data, want, sizeof(want)), 0);
	buf_out_deinit(&o);
	ck_assert_ptr_null(o.data);
	ck_assert_uint_eq(o.len, 0);
	ck_assert_uint_eq(o.cap, 0);
}
END_TEST

START_TEST(test_buf_out_grows_and_keeps_contents)
{
	struct buf_out o;
	buf_out_init(&o);
	const size_t n = 100000;
	for (size_t i = 0; i < n; i++) {
		buf_out_put_u8(&o, (uint8_t)(i * 31));
		ck_assert_uint_ge(o.cap, o.len);
	}
	ck_assert_uint_eq(o.len, n);
	for (size_t i = 0; i < n; i++)
		ck_assert_uint_eq(o.data[i], (uint8_t)(i * 31));
	/* One large append past the current capacity. */
	uint8_t *chunk = xmalloc(3 * n);
	memset(chunk, 0x5a, 3 * n);
	buf_out_put(&o, chunk, 3 * n);
	ck_assert_uint_eq(o.len, 4 * n);
	ck_assert_uint_ge(o.cap, 4 * n);
	ck_assert_uint_eq(o.data[n - 1], (uint8_t)((n - 1) * 31));
	ck_assert_uint_eq(o.data[4 * n - 1], 0x5a);
	free(chunk);
	buf_out_deinit(&o);
}
END_TEST

START_TEST(test_buf_out_reserve_and_reset_keep_capacity)
{
	struct buf_out o;
	buf_out_init(&o);
	buf_out_reserve(&o, 1000);
	ck_assert_uint_eq(o.len, 0);
	ck_assert_uint_ge(o.cap, 1000);
	size_t cap = o.cap;
	uint8_t *data = o.data;
	/* Filling what was reserved does not reallocate. */
	for (size_t i = 0; i < 1000; i++)
		buf_out_put_u8(&o, 1);
	ck_assert_ptr_eq(o.data, data);
	ck_assert_uint_eq(o.cap, cap);
	buf_out_reset(&o);
	ck_assert_uint_eq(o.len, 0);
	ck_assert_uint_eq(o.cap, cap);
	buf_out_put_be32(&o, 7);
	ck_assert_uint_eq(o.len, 4);
	ck_assert_ptr_eq(o.data, data);
	buf_out_deinit(&o);
}
END_TEST

static Suite *buf_suite(void)
{
	Suite *s = suite_create("buf");
	TCase *tc = tcase_create("pool");
	tcase_add_test(tc, test_buf_get_gives_empty_buffer_with_one_ref);
	tcase_add_test(tc, test_buf_unref_returns_buffer_to_free_list_for_reuse);
	tcase_add_test(tc, test_buf_ref_keeps_buffer_until_last_unref);
	tcase_add_loop_test(tc, test_buf_pool_keeps_at_most_max_free, 0,
			    (int)ARRAY_SIZE(max_free_cases));
	tcase_add_test(tc, test_buf_oversized_is_one_off);
	tcase_add_test(tc, test_buf_avail_and_space_follow_start_and_end);
	suite_add_tcase(s, tc);

	tc = tcase_create("out");
	tcase_add_test(tc, test_buf_out_put_helpers_encode_big_endian);
	tcase_add_test(tc, test_buf_out_grows_and_keeps_contents);
	tcase_add_test(tc, test_buf_out_reserve_and_reset_keep_capacity);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(buf_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
