/*
 * check_session_pins.c - session state that cannot follow a client to
 * another server, in transaction pooling: a session advisory lock, a
 * temporary table or function and a WITH HOLD cursor keep ("pin") the client
 * on its server until they are gone, and never reach another client. An
 * SQL-level prepared statement does not pin: it follows its client, and
 * neither does LISTEN (check_notify). Each test would fail through a pooler that
 * hands the server on between transactions (PgBouncer): another client
 * would get the lock, see the table, or the owner would lose it.
 *
 * Also: SHOW PINS and /metrics name the pinned client and why; the pin
 * ends after the transaction that ends its cause; a pinned client that
 * leaves has its server cleaned (DISCARD ALL) before anyone else gets it.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USERLIST "\"trustuser\" \"trustuserpw\"\n"
#define CLIENT "dbname=app user=trustuser"
#define N_OTHERS 8

struct setup {
	struct harness_sluice *sl;
	PGconn *admin;
	int http_port;
};

/* extra: more [sluice] lines (session_pinning = refuse), and [databases] lines after app's. */
static struct setup start_with(int pool_size, const char *extra, const char *more_dbs)
{
	struct setup st = { 0 };
	st.http_port = harness_free_port();
	char ini[512], dbs[512];
	snprintf(ini, sizeof(ini),
		 "auth_type = trust\npool_mode = transaction\nadmin_users = trustuser\n"
		 "metrics_port = %d\nquery_wait_timeout = 10\n%s",
		 st.http_port, extra);
	snprintf(dbs, sizeof(dbs), "app = host=@PGHOST@ port=@PGPORT@ dbname=app pool_size=%d\n%s",
		 pool_size, more_dbs);
	st.sl = harness_sluice_start(ini, dbs, USERLIST);
	st.admin = harness_connect(st.sl, "dbname=pgbouncer user=trustuser");
	return st;
}

static struct setup start(int pool_size)
{
	return start_with(pool_size, "", "");
}

static void stop(struct setup *st)
{
	PQfinish(st->admin);
	ck_assert_int_eq(harness_sluice_stop(st->sl), 0);
	harness_sluice_free(st->sl);
}

/*
 * Waits (up to 5 s) until SHOW PINS says want for its one client ("" for
 * no row): the probe that finds a pin runs just after the transaction
 * whose answer the client already has.
 */
static void wait_pins(struct setup *st, const char *want)
{
	long deadline = harness_now_ms() + 5000;
	char *got = NULL;
	for (;;) {
		free(got);
		PGresult *res = PQexec(st->admin, "SHOW PINS");
		ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
		got = xstrdup(PQntuples(res) ? PQgetvalue(res, 0, PQfnumber(res, "pins")) : "");
		PQclear(res);
		if (strcmp(got, want) == 0 || harness_now_ms() > deadline)
			break;
		harness_sleep_ms(20);
	}
	ck_assert_msg(strcmp(got, want) == 0, "SHOW PINS says \"%s\", expected \"%s\"", got, want);
	free(got);
}

static char *metrics(struct setup *st)
{
	return harness_http_get(st->http_port, "/metrics");
}

START_TEST(test_advisory_lock_pins_its_client_and_never_reaches_another)
{
	struct setup st = start(2);
	PGconn *a = harness_connect(st.sl, CLIENT);
	harness_expect_answer(a, "SELECT pg_advisory_lock(42)::text", "");
	wait_pins(&st, "advisory lock");
	char *m = metrics(&st);
	ck_assert_msg(strstr(m, "sluice_clients_pinned{reason=\"advisory_lock\"} 1\n"), "%s", m);
	free(m);
	/* Each other client gets the other server: none of them holds the lock. */
	PGconn *others[N_OTHERS];
	for (int i = 0; i < N_OTHERS; i++) {
		others[i] = harness_connect(st.sl, CLIENT);
		harness_expect_answer(others[i], "SELECT pg_try_advisory_lock(42)", "f");
	}
	/* The owner keeps its session: its lock is still its own. */
	for (int i = 0; i < 5; i++)
		harness_expect_answer(a, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
					 "AND pid = pg_backend_pid()",
				      "1");
	harness_expect_answer(a, "SELECT pg_advisory_unlock(42)", "t");
	wait_pins(&st, "");
	harness_expect_answer(others[0], "SELECT pg_try_advisory_lock(42)", "t");
	harness_expect_answer(others[0], "SELECT pg_advisory_unlock(42)", "t");
	for (int i = 0; i < N_OTHERS; i++)
		PQfinish(others[i]);
	PQfinish(a);
	stop(&st);
}
END_TEST

START_TEST(test_temporary_table_stays_with_its_client_and_goes_when_it_leaves)
{
	struct setup st = start(1);
	PGconn *a = harness_connect(st.sl, CLIENT);
	harness_command_ok(a, "CREATE TEMP TABLE pinned_t (x int)", "CREATE TABLE");
	harness_command_ok(a, "INSERT INTO pinned_t VALUES (1), (2)", "INSERT 0 2");
	wait_pins(&st, "temporary object");
	for (int i = 0; i < 5; i++)
		harness_expect_answer(a, "SELECT count(*) FROM pinned_t", "2");
	/* With one server, another client waits for it rather than meet the table. */
	PGconn *b = harness_connect(st.sl, CLIENT);
	ck_assert_int_eq(PQsendQuery(b, "SELECT to_regclass('pg_temp.pinned_t') IS NULL"), 1);
	ck_assert_msg(!harness_wait_not_busy(b, 300), "another client got the pinned server");
	PQfinish(a);
	/* Its server was cleaned before b got it: no table. */
	ck_assert(harness_wait_not_busy(b, 5000));
	PGresult *res = PQgetResult(b);
	ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	ck_assert_str_eq(PQgetvalue(res, 0, 0), "t");
	PQclear(res);
	while ((res = PQgetResult(b)))
		PQclear(res);
	wait_pins(&st, "");
	harness_expect_answer(b, "SELECT count(*) FROM pg_class WHERE relpersistence = 't'", "0");
	/* A temporary function pins as well, until it is dropped. */
	harness_command_ok(b, "CREATE FUNCTION pg_temp.pinned_f() RETURNS int LANGUAGE sql "
			      "AS 'SELECT 5'",
			   "CREATE FUNCTION");
	wait_pins(&st, "temporary object");
	for (int i = 0; i < 3; i++)
		harness_expect_answer(b, "SELECT pg_temp.pinned_f()", "5");
	harness_command_ok(b, "DROP FUNCTION pg_temp.pinned_f()", "DROP FUNCTION");
	wait_pins(&st, "");
	/* EXPLAIN ANALYZE runs what it explains. */
	PGresult *ea = PQexec(b, "EXPLAIN ANALYZE CREATE TEMP TABLE pinned_ea AS SELECT 1");
	ck_assert_int_eq(PQresultStatus(ea), PGRES_TUPLES_OK);
	PQclear(ea);
	wait_pins(&st, "temporary object");
	harness_expect_answer(b, "SELECT count(*) FROM pinned_ea", "1");
	harness_command_ok(b, "DROP TABLE pinned_ea", "DROP TABLE");
	wait_pins(&st, "");
	PQfinish(b);
	stop(&st);
}
END_TEST

START_TEST(test_held_cursor_keeps_its_client_until_closed_and_sql_prepare_follows_it)
{
	struct setup st = start(2);
	PGconn *a = harness_connect(st.sl, CLIENT);
	harness_command_ok(a, "DECLARE held CURSOR WITH HOLD FOR SELECT generate_series(1, 6)",
			   "DECLARE CURSOR");
	wait_pins(&st, "held cursor");
	harness_expect_answer(a, "FETCH 2 FROM held", "1");
	harness_expect_answer(a, "FETCH 2 FROM held", "3");
	/* An SQL PREPARE does not pin (it follows its client), and no one else gets it. */
	harness_command_ok(a, "PREPARE seven AS SELECT 7", "PREPARE");
	wait_pins(&st, "held cursor");
	PGconn *b = harness_connect(st.sl, CLIENT);
	char *err = harness_query_error(b, "EXECUTE seven");
	ck_assert_msg(strstr(err, "26000") || strstr(err, "does not exist"), "%s", err);
	free(err);
	harness_expect_answer(a, "EXECUTE seven", "7");
	harness_command_ok(a, "CLOSE held", "CLOSE CURSOR");
	wait_pins(&st, "");
	/* Unpinned, a's statement goes with it to whichever server it gets. */
	for (int i = 0; i < 6; i++) {
		harness_expect_answer(b, "SELECT count(*) FROM pg_prepared_statements WHERE from_sql", "0");
		harness_expect_answer(a, "EXECUTE seven", "7");
	}
	harness_command_ok(a, "DEALLOCATE seven", "DEALLOCATE");
	PQfinish(b);
	PQfinish(a);
	stop(&st);
}
END_TEST

START_TEST(test_sql_prepare_of_a_dropped_table_fails_at_execute_not_the_client)
{
	struct setup st = start(1);
	PGconn *a = harness_connect(st.sl, CLIENT);
	harness_command_ok(a, "CREATE TABLE gone_t (x int)", "CREATE TABLE");
	harness_command_ok(a, "PREPARE g AS SELECT count(*) FROM gone_t", "PREPARE");
	harness_expect_answer(a, "EXECUTE g", "0");
	harness_command_ok(a, "DROP TABLE gone_t", "DROP TABLE");
	/* A new server: sluice prepares g there again, and PostgreSQL cannot. */
	harness_command_ok(st.admin, "RECONNECT app", "RECONNECT");
	harness_expect_answer(a, "SELECT 1", "1");
	char *err = harness_query_error(a, "EXECUTE g");
	ck_assert_msg(strstr(err, "26000"), "%s", err);
	free(err);
	ck_assert_int_eq(PQstatus(a), CONNECTION_OK);
	/* The client still has g: a temporary table of that name pins it, and g is made again. */
	harness_command_ok(a, "CREATE TEMP TABLE gone_t (x int)", "CREATE TABLE");
	wait_pins(&st, "temporary object");
	harness_expect_answer(a, "EXECUTE g", "0");
	harness_command_ok(a, "DISCARD TEMP", "DISCARD TEMP");
	/* With a table back, g is made again at the next link. */
	harness_command_ok(a, "CREATE TABLE gone_t (x int)", "CREATE TABLE");
	harness_command_ok(st.admin, "RECONNECT app", "RECONNECT");
	harness_expect_answer(a, "EXECUTE g", "0");
	harness_command_ok(a, "DROP TABLE gone_t", "DROP TABLE");
	PQfinish(a);
	stop(&st);
}
END_TEST

START_TEST(test_a_failed_probe_disconnects_its_client_and_no_one_else)
{
	/* One server, whose caches the statement warms: only the question needs the lock. */
	struct setup st = start(1);
	PGconn *a = harness_connect(st.sl, CLIENT), *b = harness_connect(st.sl, CLIENT);
	harness_expect_answer(a, "SELECT pg_advisory_unlock_all()::text", "");
	harness_command_ok(a, "SET lock_timeout = '100ms'", "SET");
	/* The question after a's next transaction reads pg_class, which is held. */
	PGconn *locker = harness_connect(NULL, "dbname=app user=" HARNESS_SUPERUSER);
	harness_command_ok(locker, "BEGIN", "BEGIN");
	harness_command_ok(locker, "LOCK pg_catalog.pg_class IN ACCESS EXCLUSIVE MODE", "LOCK TABLE");
	/* Its answer is in (the statement itself needs no lock); then the question fails. */
	harness_expect_answer(a, "SELECT pg_advisory_unlock_all()::text", "");
	long deadline = harness_now_ms() + 5000;
	while (PQstatus(a) == CONNECTION_OK && harness_now_ms() < deadline) {
		PQconsumeInput(a);
		(void)PQisBusy(a);
		harness_sleep_ms(10);
	}
	ck_assert_int_eq(PQstatus(a), CONNECTION_BAD);
	ck_assert(harness_sluice_log_wait(st.sl, "server did not say which session settings it has",
					  1000));
	harness_command_ok(locker, "ROLLBACK", "ROLLBACK");
	PQfinish(locker);
	/* Its server was closed, not handed on in an unknown state; b goes on. */
	harness_expect_answer(b, "SHOW lock_timeout", "0");
	harness_expect_answer(b, "SELECT 1", "1");
	PQfinish(b);
	PQfinish(a);
	stop(&st);
}
END_TEST

/* ---- session_pinning = refuse ------------------------------------------------------ */

#define REFUSE "session_pinning = refuse\n"

/* The refusals' messages, by what they name. */
#define LOCKS "session advisory locks"
#define TEMPS "temporary objects"
#define HELD "cursors WITH HOLD"

/*
 * res is sluice's refusal of a statement that would pin: SQLSTATE 0A000, a
 * message naming what (LOCKS...), the pool mode and the setting, a hint.
 * Takes res.
 */
static void expect_refusal(PGresult *res, const char *what, const char *mode, const char *sql)
{
	ck_assert_msg(PQresultStatus(res) == PGRES_FATAL_ERROR, "%s: not refused (%s)", sql,
		      PQresStatus(PQresultStatus(res)));
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	char want[160];
	snprintf(want, sizeof(want), "%s are not allowed in %s pooling (session_pinning = refuse)",
		 what, mode);
	ck_assert_msg(state && strcmp(state, "0A000") == 0, "%s: SQLSTATE %s (%s)", sql, state,
		      msg);
	ck_assert_msg(msg && strcmp(msg, want) == 0, "%s: \"%s\"", sql, msg);
	ck_assert_msg(PQresultErrorField(res, PG_DIAG_MESSAGE_HINT) != NULL, "%s: no hint", sql);
	PQclear(res);
}

/* Nothing any statement made is left anywhere on the server: no lock, temporary object, cursor. */
static void expect_nothing_left(PGconn *c)
{
	ck_assert_int_eq(harness_pg_exec_long("SELECT count(*) FROM pg_locks WHERE locktype = "
					      "'advisory'"),
			 0);
	ck_assert_int_eq(harness_pg_exec_long("SELECT count(*) FROM pg_class c JOIN pg_namespace n "
					      "ON n.oid = c.relnamespace WHERE n.nspname LIKE "
					      "'pg_temp%%' OR c.relpersistence = 't'"),
			 0);
	ck_assert_int_eq(harness_pg_exec_long("SELECT count(*) FROM pg_proc p JOIN pg_namespace n "
					      "ON n.oid = p.pronamespace WHERE n.nspname LIKE "
					      "'pg_temp%%'"),
			 0);
	ck_assert_int_eq(harness_pg_exec_long("SELECT count(*) FROM pg_type t JOIN pg_namespace n "
					      "ON n.oid = t.typnamespace WHERE n.nspname LIKE "
					      "'pg_temp%%'"),
			 0);
	harness_expect_answer(c, "SELECT count(*) FROM pg_cursors", "0");
}

/* One statement of each kind that would pin, and what its refusal names. */
static const struct {
	const char *sql, *what;
} refused[] = {
	{ "SELECT pg_advisory_lock(42)", LOCKS },
	{ "SELECT pg_catalog.pg_advisory_lock_shared(42)", LOCKS },
	{ "SELECT pg_try_advisory_lock(1, 2)", LOCKS },
	{ "SELECT x FROM (SELECT pg_try_advisory_lock_shared(42) AS x) s", LOCKS },
	{ "CREATE TEMP TABLE refused_t (x int)", TEMPS },
	{ "CREATE TEMPORARY TABLE refused_t (x int) ON COMMIT DELETE ROWS", TEMPS },
	{ "CREATE TABLE pg_temp.refused_t (x int)", TEMPS },
	{ "CREATE TEMP TABLE refused_t AS SELECT 1 AS x", TEMPS },
	{ "CREATE TEMP VIEW refused_v AS SELECT 1 AS x", TEMPS },
	{ "CREATE TEMP SEQUENCE refused_s", TEMPS },
	{ "CREATE FUNCTION pg_temp.refused_f() RETURNS int LANGUAGE sql AS 'SELECT 1'", TEMPS },
	{ "CREATE TYPE pg_temp.refused_ty AS (a int)", TEMPS },
	{ "CREATE DOMAIN pg_temp.refused_d AS int", TEMPS },
	{ "DECLARE refused_c CURSOR WITH HOLD FOR SELECT 1", HELD },
};

START_TEST(test_refuse_fails_each_pinning_statement_before_it_runs)
{
	struct setup st = start_with(1, REFUSE, "");
	PGconn *a = harness_connect(st.sl, CLIENT);
	for (size_t i = 0; i < ARRAY_SIZE(refused); i++) {
		/* Outside a transaction block: refused, and the client is idle. */
		expect_refusal(PQexec(a, refused[i].sql), refused[i].what, "transaction",
			       refused[i].sql);
		ck_assert_int_eq(PQtransactionStatus(a), PQTRANS_IDLE);
		harness_expect_answer(a, "SELECT 1", "1");
		/* Inside one: refused, the transaction aborted as by any failed statement. */
		harness_command_ok(a, "BEGIN", "BEGIN");
		expect_refusal(PQexec(a, refused[i].sql), refused[i].what, "transaction",
			       refused[i].sql);
		ck_assert_int_eq(PQtransactionStatus(a), PQTRANS_INERROR);
		char *err = harness_query_error(a, "SELECT 1");
		ck_assert_msg(strncmp(err, "25P02", 5) == 0, "%s", err);
		free(err);
		harness_command_ok(a, "COMMIT", "ROLLBACK");
		ck_assert_int_eq(PQtransactionStatus(a), PQTRANS_IDLE);
		expect_nothing_left(a);
	}
	/*
	 * In a text of several statements only the one that pins is replaced:
	 * the BEGIN before it runs (so the block is aborted), the SELECT after
	 * it is skipped, as PostgreSQL does after a failed statement.
	 */
	expect_refusal(PQexec(a, "BEGIN; SELECT pg_advisory_lock(7); SELECT 1"), LOCKS,
		       "transaction", "BEGIN; ...");
	ck_assert_int_eq(PQtransactionStatus(a), PQTRANS_INERROR);
	harness_command_ok(a, "ROLLBACK", "ROLLBACK");
	expect_refusal(PQexec(a, "CREATE TABLE refuse_kept (x int); "
				 "CREATE TEMP TABLE refused_t (x int)"),
		       TEMPS, "transaction", "CREATE TABLE ...; CREATE TEMP TABLE ...");
	/* The implicit transaction of the text is rolled back whole, as PostgreSQL does. */
	harness_expect_answer(a, "SELECT to_regclass('refuse_kept') IS NULL", "t");
	expect_nothing_left(a);
	wait_pins(&st, "");
	ck_assert_int_eq(harness_sluice_log_count(st.sl, "(session_pinning = refuse)") > 0, 1);
	PQfinish(a);
	stop(&st);
}
END_TEST

/* Through the extended protocol: the statement fails at Execute, where it would have run. */
START_TEST(test_refuse_fails_pinning_statements_of_the_extended_protocol)
{
	struct setup st = start_with(1, REFUSE, "");
	PGconn *a = harness_connect(st.sl, CLIENT);
	const char *values[] = { "42" };
	for (int in_block = 0; in_block < 2; in_block++) {
		if (in_block)
			harness_command_ok(a, "BEGIN", "BEGIN");
		/* A parameter whose type the server was to infer. */
		expect_refusal(PQexecParams(a, "SELECT pg_advisory_lock($1)", 1, NULL, values, NULL,
					    NULL, 0),
			       LOCKS, "transaction", "PQexecParams");
		ck_assert_int_eq(PQtransactionStatus(a), in_block ? PQTRANS_INERROR : PQTRANS_IDLE);
		if (in_block)
			harness_command_ok(a, "COMMIT", "ROLLBACK");
		expect_nothing_left(a);
	}
	/* One the client typed itself, in binary. */
	const char eight[8] = { 0, 0, 0, 0, 0, 0, 0, 42 };
	const char *bin[] = { eight };
	const int lens[] = { 8 }, formats[] = { 1 };
	const Oid int8oid[] = { 20 };
	expect_refusal(PQexecParams(a, "SELECT pg_try_advisory_lock($1)", 1, int8oid, bin, lens,
				    formats, 0),
		       LOCKS, "transaction", "PQexecParams binary");
	ck_assert_int_eq(PQtransactionStatus(a), PQTRANS_IDLE);
	/* A named statement prepares, as PostgreSQL's would, and fails each time it runs. */
	PGresult *res = PQprepare(a, "refused_lock", "SELECT pg_advisory_lock($1::bigint)", 1,
				  NULL);
	ck_assert_int_eq(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);
	for (int i = 0; i < 3; i++)
		expect_refusal(PQexecPrepared(a, "refused_lock", 1, values, NULL, NULL, 0), LOCKS,
			       "transaction", "PQexecPrepared");
	harness_command_ok(a, "BEGIN", "BEGIN");
	expect_refusal(PQexecPrepared(a, "refused_lock", 1, values, NULL, NULL, 0), LOCKS,
		       "transaction", "PQexecPrepared in a block");
	ck_assert_int_eq(PQtransactionStatus(a), PQTRANS_INERROR);
	harness_command_ok(a, "COMMIT", "ROLLBACK");
	res = PQprepare(a, "refused_temp", "CREATE TEMP TABLE refused_t (x int)", 0, NULL);
	ck_assert_int_eq(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);
	expect_refusal(PQexecPrepared(a, "refused_temp", 0, NULL, NULL, NULL, 0), TEMPS,
		       "transaction", "PQexecPrepared temp");
	expect_refusal(PQexecParams(a, "DECLARE refused_c CURSOR WITH HOLD FOR SELECT 1", 0, NULL,
				    NULL, NULL, NULL, 0),
		       HELD, "transaction", "PQexecParams cursor");
	ck_assert_int_eq(PQtransactionStatus(a), PQTRANS_IDLE);
	/* The connection goes on as usual. */
	res = PQexecParams(a, "SELECT $1::int + 1", 1, NULL, values, NULL, NULL, 0);
	ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	ck_assert_str_eq(PQgetvalue(res, 0, 0), "43");
	PQclear(res);
	expect_nothing_left(a);
	wait_pins(&st, "");
	PQfinish(a);
	stop(&st);
}
END_TEST

/* What ends with its transaction, or ends a pin, or only reads, is not refused. */
START_TEST(test_refuse_lets_what_does_not_pin_run)
{
	struct setup st = start_with(1, REFUSE, "");
	PGconn *a = harness_connect(st.sl, CLIENT);
	/* Refusing, as the tests above show: the session lock is, the others are not. */
	expect_refusal(PQexec(a, "SELECT pg_advisory_lock(42)"), LOCKS, "transaction", "lock");
	harness_command_ok(a, "BEGIN", "BEGIN");
	harness_expect_answer(a, "SELECT pg_advisory_xact_lock(42)::text", "");
	harness_expect_answer(a, "SELECT pg_try_advisory_xact_lock_shared(43)", "t");
	harness_command_ok(a, "CREATE TEMP TABLE allowed_t (x int) ON COMMIT DROP", "CREATE TABLE");
	harness_command_ok(a, "INSERT INTO allowed_t VALUES (1)", "INSERT 0 1");
	harness_command_ok(a, "CREATE TEMP TABLE allowed_t2 ON COMMIT DROP AS SELECT 2 AS x",
			   "SELECT 1");
	harness_command_ok(a, "DECLARE allowed_c CURSOR FOR SELECT x FROM allowed_t", "DECLARE CURSOR");
	harness_expect_answer(a, "FETCH 1 FROM allowed_c", "1");
	harness_command_ok(a, "CLOSE allowed_c", "CLOSE CURSOR");
	harness_command_ok(a, "COMMIT", "COMMIT");
	/* Unlocks, drops, EXPLAIN without ANALYZE, reading pg_temp. */
	harness_expect_answer(a, "SELECT pg_advisory_unlock_all()::text", "");
	harness_command_ok(a, "DROP TABLE IF EXISTS pg_temp.allowed_none", "DROP TABLE");
	free(harness_query_text(a, "EXPLAIN SELECT pg_advisory_lock(42)"));
	harness_expect_answer(a, "SELECT count(*) FROM pg_catalog.pg_class WHERE relnamespace = "
				 "pg_my_temp_schema()",
			      "0");
	const char *values[] = { "44" };
	PGresult *res = PQexecParams(a, "SELECT pg_advisory_xact_lock($1::bigint)::text", 1, NULL,
				     values, NULL, NULL, 0);
	ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	PQclear(res);
	expect_nothing_left(a);
	wait_pins(&st, "");
	PQfinish(a);
	stop(&st);
}
END_TEST

/*
 * The console shows the setting and changes it: with refuse the lock
 * fails, with pin again it pins. Session pooling ignores it; statement
 * pooling refuses in its own words.
 */
START_TEST(test_refuse_is_set_on_the_console_and_only_for_transaction_and_statement_pooling)
{
	struct setup st = start_with(1, "",
				     "sess = host=@PGHOST@ port=@PGPORT@ dbname=app pool_mode=session\n"
				     "stmt = host=@PGHOST@ port=@PGPORT@ dbname=app "
				     "pool_mode=statement\n");
	char *v = harness_show_value(st.admin, "SHOW CONFIG", "key", "session_pinning", "value");
	ck_assert_str_eq(v, "pin");
	free(v);
	harness_command_ok(st.admin, "SET session_pinning = refuse", "SET");
	v = harness_show_value(st.admin, "SHOW CONFIG", "key", "session_pinning", "value");
	ck_assert_str_eq(v, "refuse");
	free(v);
	char *err = harness_query_error(st.admin, "SET session_pinning = maybe");
	ck_assert_msg(strstr(err, "pin, refuse"), "%s", err);
	free(err);
	PGconn *a = harness_connect(st.sl, CLIENT);
	expect_refusal(PQexec(a, "SELECT pg_advisory_lock(42)"), LOCKS, "transaction", "lock");
	PGconn *m = harness_connect(st.sl, "dbname=stmt user=trustuser");
	expect_refusal(PQexec(m, "SELECT pg_advisory_lock(42)"), LOCKS, "statement", "lock");
	PQfinish(m);
	/* Session pooling: a client has its server to itself, nothing to refuse. */
	PGconn *s = harness_connect(st.sl, "dbname=sess user=trustuser");
	harness_expect_answer(s, "SELECT pg_advisory_lock(42)::text", "");
	harness_command_ok(s, "CREATE TEMP TABLE sess_t (x int)", "CREATE TABLE");
	PQfinish(s);
	/* Its server is cleaned (server_reset_query) just after it leaves. */
	for (long deadline = harness_now_ms() + 5000;
	     harness_pg_exec_long("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") &&
	     harness_now_ms() < deadline;)
		harness_sleep_ms(20);
	expect_nothing_left(a);
	harness_command_ok(st.admin, "SET session_pinning = pin", "SET");
	harness_expect_answer(a, "SELECT pg_advisory_lock(42)::text", "");
	wait_pins(&st, "advisory lock");
	harness_expect_answer(a, "SELECT pg_advisory_unlock(42)", "t");
	wait_pins(&st, "");
	PQfinish(a);
	stop(&st);
}
END_TEST

static Suite *session_pins_suite(void)
{
	Suite *s = suite_create("session_pins");
	TCase *tc = harness_tcase("pins");
	tcase_add_test(tc, test_advisory_lock_pins_its_client_and_never_reaches_another);
	tcase_add_test(tc, test_temporary_table_stays_with_its_client_and_goes_when_it_leaves);
	tcase_add_test(tc, test_held_cursor_keeps_its_client_until_closed_and_sql_prepare_follows_it);
	tcase_add_test(tc, test_sql_prepare_of_a_dropped_table_fails_at_execute_not_the_client);
	tcase_add_test(tc, test_a_failed_probe_disconnects_its_client_and_no_one_else);
	tcase_add_test(tc, test_refuse_fails_each_pinning_statement_before_it_runs);
	tcase_add_test(tc, test_refuse_fails_pinning_statements_of_the_extended_protocol);
	tcase_add_test(tc, test_refuse_lets_what_does_not_pin_run);
	tcase_add_test(tc, test_refuse_is_set_on_the_console_and_only_for_transaction_and_statement_pooling);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return harness_run_suite(session_pins_suite());
}
