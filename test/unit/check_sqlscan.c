/*
 * check_sqlscan.c - unit tests of the look at client SQL: the cheap look
 * says "maybe" for every statement that can change session settings,
 * wherever it sits in a multi-statement text, and nothing for the common
 * queries; PostgreSQL's parser then keeps only real SETs (not SET LOCAL,
 * not the word in a literal), finds set_config at any depth, and names the
 * custom settings.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/sqlscan.h"

static unsigned cheap(const char *sql)
{
	return sql_scan_cheap(sql, strlen(sql));
}

static unsigned parsed(const char *sql)
{
	struct sql_scan_result r;
	sql_scan_parse(sql, &r);
	unsigned e = r.effects;
	sql_scan_result_deinit(&r);
	return e;
}

START_TEST(test_cheap_look_passes_common_queries)
{
	const char *plain[] = {
		"SELECT 1",
		"select abalance from pgbench_accounts where aid = $1",
		"UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
		"INSERT INTO t (a_b, c_d) VALUES (1, 2)",
		"BEGIN",
		"COMMIT; SELECT offset_x FROM t",
		"",
	};
	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
		ck_assert_msg(cheap(plain[i]) == 0, "flagged: %s", plain[i]);
}
END_TEST

/*
 * The fast pass reads 16 bytes at a time, its last block ending at the
 * text's end: a mark is found in every block, whatever the length, and
 * only a ';' at the very end is passed over.
 */
START_TEST(test_cheap_look_finds_a_mark_at_every_length)
{
	char sql[128];
	for (int pad = 0; pad < 48; pad++) {
		int n = snprintf(sql, sizeof(sql), "SELECT %.*s", pad,
				 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
		snprintf(sql + n, sizeof(sql) - (size_t)n, ";");
		ck_assert_msg(cheap(sql) == 0, "flagged: %s", sql);
		snprintf(sql + n, sizeof(sql) - (size_t)n, "; \n");
		ck_assert_msg(cheap(sql) == 0, "flagged: %s", sql);
		snprintf(sql + n, sizeof(sql) - (size_t)n, ";SET a.b = 1");
		ck_assert_msg(cheap(sql) & SQL_EFFECT_SETTINGS, "not flagged: %s", sql);
		snprintf(sql + n, sizeof(sql) - (size_t)n, ";set a.b = 1;");
		ck_assert_msg(cheap(sql) & SQL_EFFECT_SETTINGS, "not flagged: %s", sql);
		snprintf(sql + n, sizeof(sql) - (size_t)n, " set_config('a.b', 'c', false)");
		ck_assert_msg(cheap(sql) & SQL_EFFECT_SETTINGS, "not flagged: %s", sql);
		sql[0] = 'R', sql[1] = 'E', sql[2] = 'S', sql[3] = 'E', sql[4] = 'T', sql[5] = ' ';
		snprintf(sql + n, sizeof(sql) - (size_t)n, ";");
		ck_assert_msg(cheap(sql) & SQL_EFFECT_SETTINGS, "not flagged: %s", sql);
	}
}
END_TEST

START_TEST(test_cheap_look_flags_every_statement_that_may_set)
{
	const char *maybe[] = {
		"SET statement_timeout = 5",
		"  set search_path to a",
		"RESET ALL",
		"reset role",
		"DISCARD ALL",
		"BEGIN; SET x.y = 1; COMMIT",
		"SELECT 1;\n-- a comment\n  SET work_mem = '8MB'",
		"SELECT 1; /* c */ SET work_mem = '8MB'",
		"(SET x TO 1)",
		"SELECT pg_catalog.SET_CONFIG('work_mem', '8MB', false)",
		"SELECT 1 FROM (SELECT set_config('a.b', 'c', false)) s",
		"SET",
		"/* a /* nested */ comment */ SET x = 1",
		"-- a comment ended by a carriage return\rSET x = 1",
		"SELECT U&\"\\0073et_config\"('a.b', 'c', false)",
	};
	for (size_t i = 0; i < sizeof(maybe) / sizeof(maybe[0]); i++)
		ck_assert_msg(cheap(maybe[i]) & SQL_EFFECT_SETTINGS, "not flagged: %s", maybe[i]);
	/* A word that only starts like one is not it. */
	ck_assert_uint_eq(cheap("SETTLE_UP()"), 0);
	ck_assert_uint_eq(cheap("resetting"), 0);
}
END_TEST

START_TEST(test_parser_keeps_real_session_settings_only)
{
	ck_assert(parsed("SET statement_timeout = 5") & SQL_EFFECT_SETTINGS);
	ck_assert(parsed("SET SESSION search_path TO a, b") & SQL_EFFECT_SETTINGS);
	ck_assert(parsed("RESET ALL") & SQL_EFFECT_SETTINGS);
	ck_assert(parsed("DISCARD ALL") & SQL_EFFECT_SETTINGS);
	ck_assert(parsed("SET ROLE nobody") & SQL_EFFECT_SETTINGS);
	ck_assert(parsed("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY") & SQL_EFFECT_SETTINGS);
	ck_assert(parsed("BEGIN; SELECT 1; SET TIME ZONE 'UTC'; COMMIT") & SQL_EFFECT_SETTINGS);
	ck_assert(parsed("WITH s AS (SELECT set_config('work_mem', '1MB', false)) SELECT * FROM s") &
		  SQL_EFFECT_SETTINGS);
	/* Ends with its transaction: nothing outlives it. */
	ck_assert_uint_eq(parsed("SET LOCAL statement_timeout = 5"), 0);
	/* The word, but not the statement. */
	ck_assert_uint_eq(parsed("SELECT 1; SELECT 'SET x = 1'"), 0);
	/* The clause of a function or a role changes that, not the session. */
	ck_assert_uint_eq(parsed("CREATE FUNCTION f() RETURNS int LANGUAGE sql "
				 "SET search_path = public AS 'SELECT 1'"),
			  0);
	ck_assert_uint_eq(parsed("ALTER ROLE alice SET work_mem = '1MB'"), 0);
	/* Temporary objects that are not relations pin too; reading pg_temp does not. */
	ck_assert(parsed("CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'") &
		  SQL_EFFECT_PINS);
	ck_assert(parsed("CREATE TYPE pg_temp.t AS (a int)") & SQL_EFFECT_PINS);
	ck_assert_uint_eq(parsed("SELECT * FROM pg_temp.t"), 0);
	ck_assert_uint_eq(parsed("CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1'"),
			  0);
	ck_assert_uint_eq(parsed("ALTER SYSTEM RESET ALL"), 0);
	/* PostgreSQL refuses all of a text it cannot parse: nothing runs. */
	ck_assert_uint_eq(parsed("SET statement_timeout = ; SELECT"), 0);
}
END_TEST

START_TEST(test_parser_names_custom_settings)
{
	struct sql_scan_result r;
	sql_scan_parse("SET myapp.tenant = 'a'; SELECT set_config('MyApp.User', 'b', false); "
		       "SET work_mem = '1MB'; RESET myapp.tenant",
		       &r);
	ck_assert(r.effects & SQL_EFFECT_SETTINGS);
	ck_assert_int_eq(r.n_custom, 2); /* once each, whatever the case */
	ck_assert_str_eq(r.custom[0], "myapp.tenant");
	ck_assert_str_eq(r.custom[1], "MyApp.User");
	sql_scan_result_deinit(&r);
}
END_TEST

START_TEST(test_parser_cuts_out_each_prepare)
{
	struct sql_scan_result r;
	sql_scan_parse("SELECT 1; PREPARE p (int) AS SELECT $1;PREPARE \"Q q\" AS SELECT ';'", &r);
	ck_assert(r.effects & SQL_EFFECT_PREPARED);
	ck_assert_int_eq(r.n_prepares, 2);
	ck_assert_str_eq(r.prepare_name[0], "p");
	ck_assert_str_eq(r.prepare_text[0], "PREPARE p (int) AS SELECT $1");
	ck_assert_str_eq(r.prepare_name[1], "Q q");
	ck_assert_str_eq(r.prepare_text[1], "PREPARE \"Q q\" AS SELECT ';'");
	sql_scan_result_deinit(&r);
	sql_scan_parse("DEALLOCATE ALL", &r);
	ck_assert(r.effects & SQL_EFFECT_PREPARED);
	ck_assert_int_eq(r.n_prepares, 0);
	sql_scan_result_deinit(&r);
	ck_assert(cheap("prepare x as select 1") & SQL_EFFECT_PREPARED);
	ck_assert(cheap("SELECT 1; DEALLOCATE x") & SQL_EFFECT_PREPARED);
}
END_TEST

START_TEST(test_cheap_look_flags_every_advisory_lock_function)
{
	const char *locks[] = {
		"SELECT pg_advisory_lock(1)",
		"SELECT pg_advisory_lock_shared(1)",
		"SELECT pg_try_advisory_lock(1)",
		"select PG_TRY_ADVISORY_LOCK_SHARED(1, 2)",
		"SELECT pg_advisory_unlock_all()",
	};
	for (size_t i = 0; i < sizeof(locks) / sizeof(locks[0]); i++)
		ck_assert_msg(cheap(locks[i]) & SQL_EFFECT_PINS, "not flagged: %s", locks[i]);
}
END_TEST

/* What session_pinning = refuse would refuse in a text: the first statement that pins. */
static enum sql_pin_made pin_made(const char *sql, const char **what)
{
	struct sql_scan_result r;
	sql_scan_parse(sql, &r);
	enum sql_pin_made made = r.pin_made;
	if (what)
		*what = r.pin_what;
	if (made != SQL_PIN_MADE_NONE)
		ck_assert_msg(cheap(sql) & SQL_EFFECT_PINS, "refusable, but not flagged: %s", sql);
	sql_scan_result_deinit(&r);
	return made;
}

START_TEST(test_parser_names_what_would_pin_and_only_that)
{
	static const struct {
		const char *sql;
		enum sql_pin_made made;
		const char *what;
	} pins[] = {
		{ "SELECT pg_advisory_lock(1)", SQL_PIN_MADE_ADVISORY_LOCK, "pg_advisory_lock()" },
		{ "select pg_catalog.pg_advisory_lock_shared(1, 2)", SQL_PIN_MADE_ADVISORY_LOCK,
		  "pg_advisory_lock_shared()" },
		{ "SELECT pg_try_advisory_lock(1)", SQL_PIN_MADE_ADVISORY_LOCK,
		  "pg_try_advisory_lock()" },
		{ "WITH l AS (SELECT pg_try_advisory_lock_shared(1)) SELECT * FROM l",
		  SQL_PIN_MADE_ADVISORY_LOCK, "pg_try_advisory_lock_shared()" },
		{ "UPDATE t SET a = 1 WHERE pg_advisory_lock(a) IS NOT NULL",
		  SQL_PIN_MADE_ADVISORY_LOCK, "pg_advisory_lock()" },
		{ "EXPLAIN ANALYZE SELECT pg_advisory_lock(1)", SQL_PIN_MADE_ADVISORY_LOCK,
		  "pg_advisory_lock()" },
		{ "DECLARE c CURSOR FOR SELECT pg_advisory_lock(1)", SQL_PIN_MADE_ADVISORY_LOCK,
		  "pg_advisory_lock()" },
		{ "PREPARE p AS SELECT pg_advisory_lock($1)", SQL_PIN_MADE_ADVISORY_LOCK,
		  "pg_advisory_lock()" },
		{ "CREATE TEMP TABLE t (a int)", SQL_PIN_MADE_TEMPORARY_OBJECT, "CREATE TEMP TABLE" },
		{ "create temporary table t (a int) on commit delete rows",
		  SQL_PIN_MADE_TEMPORARY_OBJECT, "CREATE TEMP TABLE" },
		{ "CREATE TABLE pg_temp.t (a int)", SQL_PIN_MADE_TEMPORARY_OBJECT,
		  "CREATE TEMP TABLE" },
		{ "CREATE TEMP TABLE t AS SELECT 1", SQL_PIN_MADE_TEMPORARY_OBJECT,
		  "CREATE TEMP TABLE ... AS" },
		{ "CREATE TEMP VIEW v AS SELECT 1", SQL_PIN_MADE_TEMPORARY_OBJECT,
		  "CREATE TEMP VIEW" },
		{ "CREATE TEMP SEQUENCE s", SQL_PIN_MADE_TEMPORARY_OBJECT, "CREATE TEMP SEQUENCE" },
		{ "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
		  SQL_PIN_MADE_TEMPORARY_OBJECT, "CREATE FUNCTION pg_temp.*" },
		{ "CREATE PROCEDURE pg_temp.p() LANGUAGE sql AS ''", SQL_PIN_MADE_TEMPORARY_OBJECT,
		  "CREATE PROCEDURE pg_temp.*" },
		{ "CREATE TYPE pg_temp.t AS (a int)", SQL_PIN_MADE_TEMPORARY_OBJECT,
		  "CREATE TYPE pg_temp.*" },
		{ "CREATE TYPE pg_temp.e AS ENUM ('a')", SQL_PIN_MADE_TEMPORARY_OBJECT,
		  "CREATE TYPE pg_temp.*" },
		{ "CREATE DOMAIN pg_temp.d AS int", SQL_PIN_MADE_TEMPORARY_OBJECT,
		  "CREATE DOMAIN pg_temp.*" },
		{ "CREATE STATISTICS pg_temp.s ON a, b FROM t", SQL_PIN_MADE_TEMPORARY_OBJECT,
		  "CREATE STATISTICS pg_temp.*" },
		{ "DECLARE c CURSOR WITH HOLD FOR SELECT 1", SQL_PIN_MADE_HELD_CURSOR,
		  "DECLARE ... CURSOR WITH HOLD" },
		{ "EXPLAIN ANALYZE CREATE TEMP TABLE t AS SELECT 1", SQL_PIN_MADE_TEMPORARY_OBJECT,
		  "CREATE TEMP TABLE ... AS" },
		{ "SELECT 1; CREATE TEMP TABLE t (a int); SELECT pg_advisory_lock(1)",
		  SQL_PIN_MADE_TEMPORARY_OBJECT, "CREATE TEMP TABLE" },
	};
	for (size_t i = 0; i < sizeof(pins) / sizeof(pins[0]); i++) {
		const char *what = NULL;
		/* The cheap look sends each to the parser (an EXPLAIN for its first word). */
		ck_assert_msg(cheap(pins[i].sql) & SQL_EFFECT_PINS, "not flagged: %s", pins[i].sql);
		ck_assert_msg(pin_made(pins[i].sql, &what) == pins[i].made, "%s", pins[i].sql);
		ck_assert_str_eq(what, pins[i].what);
	}
	/* Ends with the transaction, ends a pin, only reads, or runs elsewhere later. */
	const char *fine[] = {
		"SELECT pg_advisory_xact_lock(1)",
		"SELECT pg_try_advisory_xact_lock_shared(1)",
		"SELECT pg_advisory_unlock(1)",
		"SELECT pg_advisory_unlock_all()",
		"SELECT myschema.pg_advisory_lock(1)",
		"EXPLAIN SELECT pg_advisory_lock(1)",
		"EXPLAIN (ANALYZE false) SELECT pg_advisory_lock(1)",
		"EXPLAIN CREATE TEMP TABLE t AS SELECT 1",
		"CREATE TEMP TABLE t (a int) ON COMMIT DROP",
		"CREATE TABLE pg_temp.t (a int) ON COMMIT DROP",
		"CREATE TEMP TABLE t ON COMMIT DROP AS SELECT 1",
		"CREATE TABLE t (a int)",
		"CREATE VIEW v AS SELECT pg_advisory_lock(1)",
		"CREATE FUNCTION f() RETURNS void LANGUAGE sql BEGIN ATOMIC SELECT pg_advisory_lock(1); "
		"END",
		"CREATE TABLE t2 AS SELECT pg_advisory_lock(1) WITH NO DATA",
		"DECLARE c CURSOR FOR SELECT 1",
		"DECLARE c NO SCROLL CURSOR WITHOUT HOLD FOR SELECT 1",
		"CLOSE c",
		"DROP TABLE pg_temp.t",
		"DROP FUNCTION pg_temp.f()",
		"SELECT * FROM pg_temp.t",
		"INSERT INTO pg_temp.t VALUES (1)",
		"DISCARD ALL",
		"LISTEN ch",
		"SELECT 'CREATE TEMP TABLE t (a int)', 'pg_advisory_lock(1)'",
		"CREATE TEMP TABLE t (a int",
	};
	for (size_t i = 0; i < sizeof(fine) / sizeof(fine[0]); i++)
		ck_assert_msg(pin_made(fine[i], NULL) == SQL_PIN_MADE_NONE, "would refuse: %s",
			      fine[i]);
}
END_TEST

START_TEST(test_refusal_replaces_only_the_statement_that_pins)
{
	struct sql_scan_result r;
	const char *text = "SELECT 1; SELECT pg_advisory_lock($2); SELECT 2";
	sql_scan_parse(text, &r);
	ck_assert_int_eq(r.pin_made, SQL_PIN_MADE_ADVISORY_LOCK);
	ck_assert_int_eq(r.pin_params, 2);
	char *sql = sql_scan_refusal(text, &r, "transaction");
	sql_scan_result_deinit(&r);
	static const char head[] =
		"SELECT 1; DO $sluice_refuse$BEGIN RAISE EXCEPTION USING ERRCODE = '0A000', "
		"MESSAGE = 'session advisory locks are not allowed in transaction pooling "
		"(session_pinning = refuse)'";
	ck_assert_msg(strncmp(sql, head, sizeof(head) - 1) == 0, "%s", sql);
	ck_assert_msg(strstr(sql, "HINT = 'Use pg_advisory_xact_lock()"), "%s", sql);
	ck_assert_msg(strstr(sql, "in the server''s session"), "quoted: %s", sql);
	static const char tail[] = "END$sluice_refuse$; SELECT 2";
	size_t n = strlen(sql);
	ck_assert_msg(n > sizeof(tail) && strcmp(sql + n - (sizeof(tail) - 1), tail) == 0, "%s",
		      sql);
	/* What is sent instead makes no pin before the statements it skips. */
	sql_scan_parse(sql, &r);
	ck_assert_int_eq(r.pin_made, SQL_PIN_MADE_NONE);
	sql_scan_result_deinit(&r);
	free(sql);
	/* A text of one statement: all of it, its blanks before and ';' after left as they are. */
	const char *one = "  DECLARE c CURSOR WITH HOLD FOR SELECT 1;";
	sql_scan_parse(one, &r);
	sql = sql_scan_refusal(one, &r, "statement");
	sql_scan_result_deinit(&r);
	ck_assert_msg(strncmp(sql, " DO $sluice_refuse$", 19) == 0, "%s", sql);
	ck_assert_msg(strstr(sql, "cursors WITH HOLD are not allowed in statement pooling"), "%s",
		      sql);
	ck_assert_msg(strcmp(sql + strlen(sql) - 16, "$sluice_refuse$;") == 0, "%s", sql);
	free(sql);
	/* Nothing to refuse: no text. */
	sql_scan_parse("SELECT 1", &r);
	ck_assert_ptr_null(sql_scan_refusal("SELECT 1", &r, "transaction"));
	sql_scan_result_deinit(&r);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("sqlscan");
	TCase *tc = tcase_create("sqlscan");
	tcase_add_test(tc, test_cheap_look_passes_common_queries);
	tcase_add_test(tc, test_cheap_look_finds_a_mark_at_every_length);
	tcase_add_test(tc, test_cheap_look_flags_every_statement_that_may_set);
	tcase_add_test(tc, test_parser_keeps_real_session_settings_only);
	tcase_add_test(tc, test_parser_names_custom_settings);
	tcase_add_test(tc, test_parser_cuts_out_each_prepare);
	tcase_add_test(tc, test_cheap_look_flags_every_advisory_lock_function);
	tcase_add_test(tc, test_parser_names_what_would_pin_and_only_that);
	tcase_add_test(tc, test_refusal_replaces_only_the_statement_that_pins);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
