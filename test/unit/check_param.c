/*
 * check_param.c - unit tests of parameter sets and profiles: names compare
 * case-insensitively through their interned keys, a put says whether it
 * changed anything, and clients that want the same values share a profile
 * (same id) while any difference gives another.
 */
#include <check.h>
#include <string.h>
#include <stdlib.h>

#include "sluice/param.h"

START_TEST(test_param_keys_are_one_pointer_per_name_in_any_case)
{
	const char *a = param_key("DateStyle");
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_eq(param_key("datestyle"), a);
	ck_assert_ptr_eq(param_key("DATESTYLE"), a);
	ck_assert_ptr_ne(param_key("TimeZone"), a);
	ck_assert_str_eq(a, "datestyle");
}
END_TEST

START_TEST(test_param_set_put_reports_changes_and_get_ignores_case)
{
	struct param_set ps;
	param_set_init(&ps);
	ck_assert(param_set_put(&ps, "TimeZone", "UTC"));
	ck_assert(!param_set_put(&ps, "timezone", "UTC"));
	ck_assert(param_set_put(&ps, "TIMEZONE", "Asia/Tokyo"));
	ck_assert_int_eq(ps.n, 1);
	ck_assert_str_eq(param_set_get(&ps, "TimeZone"), "Asia/Tokyo");
	ck_assert_str_eq(ps.items[0].name, "TimeZone"); /* the first spelling stays */
	ck_assert_ptr_null(param_set_get(&ps, "never_seen_anywhere"));
	struct param_set other;
	param_set_init(&other);
	param_set_put(&other, "timezone", "x");
	ck_assert_str_eq(param_set_get_as(&ps, &other.items[0]), "Asia/Tokyo");
	param_set_deinit(&other);
	param_set_deinit(&ps);
}
END_TEST

/* A name too long to intern still works, by comparison of the names. */
START_TEST(test_param_names_too_long_for_a_key_still_compare)
{
	char name[400];
	memset(name, 'x', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	ck_assert_ptr_null(param_key(name));
	struct param_set ps;
	param_set_init(&ps);
	ck_assert(param_set_put(&ps, name, "1"));
	name[0] = 'X';
	ck_assert(!param_set_put(&ps, name, "1"));
	ck_assert_str_eq(param_set_get(&ps, name), "1");
	ck_assert_ptr_null(ps.items[0].key);
	ck_assert_str_eq(param_set_get_as(&ps, &ps.items[0]), "1");
	param_set_deinit(&ps);
}
END_TEST

START_TEST(test_param_profiles_are_shared_by_equal_values_only)
{
	struct param_profiles t;
	param_profiles_init(&t);
	struct param_set defs, a, b, c, d;
	param_set_init(&defs);
	param_set_init(&a);
	param_set_init(&b);
	param_set_init(&c);
	param_set_init(&d);
	param_set_put(&defs, "application_name", "");
	param_set_put(&defs, "TimeZone", "UTC");
	param_set_put(&a, "application_name", "app");
	param_set_put(&b, "APPLICATION_NAME", "app"); /* same values, other spelling */
	param_set_put(&c, "application_name", "app");
	param_set_put(&c, "TimeZone", "UTC"); /* the default, chosen explicitly */
	param_set_put(&d, "application_name", "app2");

	struct param_profile *pa = param_profile_get(&t, &a, &defs);
	struct param_profile *pb = param_profile_get(&t, &b, &defs);
	struct param_profile *pc = param_profile_get(&t, &c, &defs);
	struct param_profile *pd = param_profile_get(&t, &d, &defs);
	ck_assert_ptr_eq(pa, pb);
	ck_assert_ptr_eq(pa, pc);
	ck_assert_ptr_ne(pa, pd);
	ck_assert_uint_ne(param_profile_id(pa), param_profile_id(pd));
	ck_assert_uint_ne(param_profile_id(pa), 0);

	/* A server that reports no parameter and a client that sets none: one empty profile. */
	struct param_set none;
	param_set_init(&none);
	struct param_profile *pe = param_profile_get(&t, &none, &none);
	struct param_profile *pe2 = param_profile_get(&t, &none, &none);
	ck_assert_ptr_eq(pe, pe2);
	ck_assert_ptr_ne(pe, pa);
	param_profile_release(&t, pe2);
	param_profile_release(&t, pe);
	/* Released by all, the last one handed out is kept for the next client. */
	uint64_t pe_id = param_profile_id(pe);
	pe = param_profile_get(&t, &none, &none);
	ck_assert_uint_eq(param_profile_id(pe), pe_id);
	param_profile_release(&t, pe);
	param_set_deinit(&none);

	/* Released by all, a profile made again is a new one: ids are never reused. */
	uint64_t old = param_profile_id(pd);
	param_profile_release(&t, pd);
	pd = param_profile_get(&t, &d, &defs);
	ck_assert_uint_ne(param_profile_id(pd), old);
	/* A name the defaults lack makes its own profile. */
	param_set_put(&a, "search_path", "s");
	struct param_profile *pa2 = param_profile_get(&t, &a, &defs);
	ck_assert_ptr_ne(pa2, pb);

	uint64_t pa2_id = param_profile_id(pa2);
	param_profile_release(&t, pa);
	param_profile_release(&t, pb);
	param_profile_release(&t, pc);
	param_profile_release(&t, pd);
	param_profile_release(&t, pa2);
	param_profile_release(&t, NULL);
	/* The last one handed out is left, for the next client, with its id. */
	pa2 = param_profile_get(&t, &a, &defs);
	ck_assert_uint_eq(param_profile_id(pa2), pa2_id);
	param_profile_release(&t, pa2);
	param_profiles_deinit(&t);
	param_set_deinit(&defs);
	param_set_deinit(&a);
	param_set_deinit(&b);
	param_set_deinit(&c);
	param_set_deinit(&d);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("param");
	TCase *tc = tcase_create("param");
	tcase_add_test(tc, test_param_keys_are_one_pointer_per_name_in_any_case);
	tcase_add_test(tc, test_param_set_put_reports_changes_and_get_ignores_case);
	tcase_add_test(tc, test_param_names_too_long_for_a_key_still_compare);
	tcase_add_test(tc, test_param_profiles_are_shared_by_equal_values_only);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
