/*
 * check_console.c - unit tests of the console module's command grammar
 * (console_parse, console_is_empty): good commands from a table with what
 * they parse to, bad ones from a table, and the bounds of each field.
 *
 * What the commands do is the integration suites' (check_admin_console,
 * check_admin_control); this file needs no loop and no socket.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/console.h"

struct good_case {
	const char *sql;
	const char *verb;
	const char *arg; /* NULL: none */
	const char *value; /* SET's value; NULL: not a SET */
};

static const struct good_case good_cases[] = {
	{ "SHOW POOLS", "show", "pools", NULL },
	{ "show pools;", "show", "pools", NULL },
	{ "  Show\tStats_Totals ;  ", "show", "stats_totals", NULL },
	{ "SHOW \"Mixed Case\"", "show", "Mixed Case", NULL },
	{ "\"\"", "", NULL, NULL }, /* an empty verb: no command has it */
	{ "RELOAD", "reload", NULL, NULL },
	{ "reload ;", "reload", NULL, NULL },
	{ "PAUSE app-db.v2", "pause", "app-db.v2", NULL },
	{ "KILL_CLIENT 17", "kill_client", "17", NULL },
	{ "SET default_pool_size = 40", "set", "default_pool_size", "40" },
	{ "set server_reset_query TO 'DISCARD ALL';", "set", "server_reset_query", "DISCARD ALL" },
	{ "SET x='it''s'", "set", "x", "it's" },
	{ "SET x = ''", "set", "x", "" },
	{ "SET \"Key\" = v;", "set", "Key", "v" },
};

START_TEST(test_console_parse_good_table)
{
	const struct good_case *c = &good_cases[_i];
	struct console_command cmd;
	ck_assert_msg(console_parse(c->sql, &cmd) == 0, "case %d: %s refused", _i, c->sql);
	ck_assert_str_eq(cmd.verb, c->verb);
	/* SET's key is in arg, but has_arg tells only of a second word of other commands. */
	ck_assert_int_eq(cmd.has_arg, c->arg != NULL && c->value == NULL);
	if (c->arg)
		ck_assert_str_eq(cmd.arg, c->arg);
	ck_assert_int_eq(cmd.is_set, c->value != NULL);
	if (c->value)
		ck_assert_str_eq(cmd.set_value, c->value);
}
END_TEST

static const char *const bad_cases[] = {
	"",
	";",
	"SHOW POOLS EXTRA",
	"SHOW;POOLS",
	"SHOW \"unterminated",
	"SHOW POOLS;;",
	"show pools; show clients",
	"SET x",
	"SET x 1",
	"SET x = ",
	"SET x = 'unterminated",
	"SET x = 1 2",
	"SET = 1",
	"SET x TO1",
	"SHOWPOOLS!",
	"SHOW @",
	"sixteen_letters_ POOLS",
};

START_TEST(test_console_parse_bad_table)
{
	struct console_command cmd;
	ck_assert_msg(console_parse(bad_cases[_i], &cmd) == -1, "case %d: \"%s\" parsed", _i,
		      bad_cases[_i]);
}
END_TEST

/* Each field takes one character less than its size; more is a syntax error, not a cut. */
START_TEST(test_console_parse_fields_are_bounded)
{
	struct console_command cmd;
	char sql[600], word[300];
	memset(word, 'a', sizeof(word));
	snprintf(sql, sizeof(sql), "%.*s", (int)sizeof(cmd.verb) - 1, word);
	ck_assert_int_eq(console_parse(sql, &cmd), 0);
	snprintf(sql, sizeof(sql), "%.*s", (int)sizeof(cmd.verb), word);
	ck_assert_int_eq(console_parse(sql, &cmd), -1);
	snprintf(sql, sizeof(sql), "show %.*s", (int)sizeof(cmd.arg) - 1, word);
	ck_assert_int_eq(console_parse(sql, &cmd), 0);
	snprintf(sql, sizeof(sql), "show %.*s", (int)sizeof(cmd.arg), word);
	ck_assert_int_eq(console_parse(sql, &cmd), -1);
	snprintf(sql, sizeof(sql), "set k = '%.*s'", (int)sizeof(cmd.set_value) - 1, word);
	ck_assert_int_eq(console_parse(sql, &cmd), 0);
	ck_assert_uint_eq(strlen(cmd.set_value), sizeof(cmd.set_value) - 1);
	snprintf(sql, sizeof(sql), "set k = %.*s", (int)sizeof(cmd.set_value), word);
	ck_assert_int_eq(console_parse(sql, &cmd), -1);
}
END_TEST

START_TEST(test_console_is_empty_only_for_blanks)
{
	ck_assert(console_is_empty(""));
	ck_assert(console_is_empty(" \t\r\n"));
	ck_assert(!console_is_empty(" ;"));
	ck_assert(!console_is_empty("x"));
}
END_TEST

static Suite *console_suite(void)
{
	Suite *s = suite_create("console");
	TCase *tc = tcase_create("parse");
	tcase_add_loop_test(tc, test_console_parse_good_table, 0, (int)ARRAY_SIZE(good_cases));
	tcase_add_loop_test(tc, test_console_parse_bad_table, 0, (int)ARRAY_SIZE(bad_cases));
	tcase_add_test(tc, test_console_parse_fields_are_bounded);
	tcase_add_test(tc, test_console_is_empty_only_for_blanks);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(console_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
