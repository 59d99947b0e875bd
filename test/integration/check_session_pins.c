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

static struct setup start(int pool_size)
{
	struct setup st = { 0 };
	st.http_port = harness_free_port();
	char ini[256], dbs[128];
	snprintf(ini, sizeof(ini),
		 "auth_type = trust\npool_mode = transaction\nadmin_users = trustuser\n"
		 "metrics_port = %d\nquery_wait_timeout = 10\n",
		 st.http_port);
	snprintf(dbs, sizeof(dbs), "app = host=@PGHOST@ port=@PGPORT@ dbname=app pool_size=%d\n",
		 pool_size);
	st.sl = harness_sluice_start(ini, dbs, USERLIST);
	st.admin = harness_connect(st.sl, "dbname=pgbouncer user=trustuser");
	return st;
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

static Suite *session_pins_suite(void)
{
	Suite *s = suite_create("session_pins");
	TCase *tc = harness_tcase("pins");
	tcase_add_test(tc, test_advisory_lock_pins_its_client_and_never_reaches_another);
	tcase_add_test(tc, test_temporary_table_stays_with_its_client_and_goes_when_it_leaves);
	tcase_add_test(tc, test_held_cursor_keeps_its_client_until_closed_and_sql_prepare_follows_it);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return harness_run_suite(session_pins_suite());
}
