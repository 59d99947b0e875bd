/*
 * check_pool_modes.c - what each pool_mode promises a client, seen through
 * libpq against a real sluice and PostgreSQL: in transaction mode clients
 * share one server between transactions and a transaction keeps its server;
 * in session mode a client keeps its backend until it leaves, and the next
 * client gets that backend cleaned by server_reset_query; in statement mode
 * multi-statement transactions are refused; and pools are per database/user.
 *
 * It does not test protocol relaying (check_relay), authentication or
 * timeouts; sluice is a black box reached over TCP.
 */
#include "harness.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define USERLIST                                                                           \
	"\"md5user\" \"md5userpw\"\n"                                                      \
	"\"trustuser\" \"trustuserpw\"\n"

#define MD5USER "dbname=app user=md5user password=md5userpw"
#define TRUSTUSER "dbname=app user=trustuser password=trustuserpw"

/* ---- helpers --------------------------------------------------------------- */

/*
 * Collects every result of a sent query, failing the test unless all
 * succeeded; returns the first column of the first row (heap, or NULL).
 */
static char *collect_text(PGconn *conn)
{
	char *value = NULL;
	PGresult *res;
	while ((res = PQgetResult(conn)) != NULL) {
		ExecStatusType st = PQresultStatus(res);
		ck_assert_msg(st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK, "query failed: %s",
			PQresultErrorMessage(res));
		if (!value && st == PGRES_TUPLES_OK && PQntuples(res) > 0 &&
			!PQgetisnull(res, 0, 0))
			value = xstrdup(PQgetvalue(res, 0, 0));
		PQclear(res);
	}
	return value;
}

static long query_long(PGconn *conn, const char *sql)
{
	char *v = harness_query_text(conn, sql);
	ck_assert_ptr_nonnull(v);
	long n = strtol(v, NULL, 10);
	free(v);
	return n;
}

/*
 * Waits (bounded) until PostgreSQL has exactly want backends of user: backends
 * of an earlier test's sluice may still be exiting when a test starts.
 */
static void wait_backends(const char *user, long want)
{
	long n = harness_wait_backends(user, want, 5000);
	ck_assert_msg(n == want, "%s has %ld backends, expected %ld", user, n, want);
}

static struct harness_sluice *start_mode(const char *mode, int pool_size)
{
	char extra[256];
	snprintf(extra, sizeof(extra),
		"pool_mode = %s\ndefault_pool_size = %d\nauth_type = md5\n"
		"query_wait_timeout = 10\n",
		mode, pool_size);
	return harness_sluice_start(extra, NULL, USERLIST);
}

/* ---- transaction mode ---------------------------------------------------------- */

START_TEST(test_transaction_mode_two_clients_share_one_server)
{
	wait_backends("md5user", 0);
	struct harness_sluice *s = start_mode("transaction", 1);
	PGconn *a = harness_connect(s, MD5USER);
	PGconn *b = harness_connect(s, MD5USER);

	long pid_a = 0, pid_b = 0;
	for (int round = 0; round < 5; round++) {
		char sql[64];
		snprintf(sql, sizeof(sql), "SELECT %d * 10", round);
		char *va = harness_query_text(a, sql);
		char *vb = harness_query_text(b, sql);
		char expect[16];
		snprintf(expect, sizeof(expect), "%d", round * 10);
		ck_assert_str_eq(va, expect);
		ck_assert_str_eq(vb, expect);
		free(va);
		free(vb);
		long pa = query_long(a, "SELECT pg_backend_pid()");
		long pb = query_long(b, "SELECT pg_backend_pid()");
		ck_assert_int_eq(pa, pb);
		if (round > 0) {
			ck_assert_int_eq(pa, pid_a);
			ck_assert_int_eq(pb, pid_b);
		}
		pid_a = pa;
		pid_b = pb;
	}
	ck_assert_int_eq(harness_count_backends("md5user"), 1);

	PQfinish(a);
	PQfinish(b);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_transaction_mode_open_transaction_keeps_server_until_commit)
{
	struct harness_sluice *s = start_mode("transaction", 1);
	PGconn *a = harness_connect(s, MD5USER);
	PGconn *b = harness_connect(s, MD5USER);

	free(harness_query_text(a, "BEGIN"));
	long pid_a = query_long(a, "SELECT pg_backend_pid()");

	ck_assert_int_eq(PQsendQuery(b, "SELECT pg_backend_pid()"), 1);
	/* b must wait: the only server is inside a's transaction. */
	ck_assert_msg(!harness_wait_not_busy(b, 400), "b got an answer while a held the server");

	/* a still owns its transaction and its server while b waits. */
	ck_assert_int_eq(query_long(a, "SELECT pg_backend_pid()"), pid_a);
	char *st = harness_query_text(a, "SELECT now() = statement_timestamp()");
	ck_assert_str_eq(st, "f"); /* still inside the transaction begun earlier */
	free(st);
	ck_assert_int_eq(PQtransactionStatus(a), PQTRANS_INTRANS);

	free(harness_query_text(a, "COMMIT"));
	ck_assert_msg(harness_wait_not_busy(b, 5000), "b still waits after a committed");
	char *vb = collect_text(b);
	ck_assert_ptr_nonnull(vb);
	ck_assert_int_eq(strtol(vb, NULL, 10), pid_a);
	free(vb);

	PQfinish(a);
	PQfinish(b);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* ---- session mode ------------------------------------------------------------- */

START_TEST(test_session_mode_client_keeps_its_backend_across_transactions)
{
	struct harness_sluice *s = start_mode("session", 2);
	PGconn *a = harness_connect(s, MD5USER);
	PGconn *b = harness_connect(s, MD5USER);

	long pid_a = query_long(a, "SELECT pg_backend_pid()");
	long pid_b = query_long(b, "SELECT pg_backend_pid()");
	ck_assert_int_ne(pid_a, pid_b);
	for (int i = 0; i < 4; i++) {
		free(harness_query_text(a, "BEGIN"));
		ck_assert_int_eq(query_long(a, "SELECT pg_backend_pid()"), pid_a);
		free(harness_query_text(a, "COMMIT"));
		ck_assert_int_eq(query_long(b, "SELECT pg_backend_pid()"), pid_b);
		ck_assert_int_eq(query_long(a, "SELECT pg_backend_pid()"), pid_a);
	}
	/* Session state survives between transactions. */
	free(harness_query_text(a, "SET work_mem = '7MB'"));
	char *wm = harness_query_text(a, "SHOW work_mem");
	ck_assert_str_eq(wm, "7MB");
	free(wm);

	PQfinish(a);
	PQfinish(b);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_session_mode_next_client_waits_and_gets_a_reset_backend)
{
	struct harness_sluice *s = start_mode("session", 1);
	PGconn *a = harness_connect(s, MD5USER);
	long pid_a = query_long(a, "SELECT pg_backend_pid()");
	char *def_wm = harness_query_text(a, "SHOW work_mem");
	free(harness_query_text(a, "SET work_mem = '7MB'"));
	free(harness_query_text(a, "CREATE TEMP TABLE modes_session_tmp (x int)"));
	free(harness_query_text(a, "PREPARE modes_stmt AS SELECT 1"));
	char *wm = harness_query_text(a, "SHOW work_mem");
	ck_assert_str_eq(wm, "7MB");
	free(wm);

	PGconn *b = harness_connect(s, MD5USER);
	ck_assert_int_eq(PQsendQuery(b, "SELECT pg_backend_pid()"), 1);
	ck_assert_msg(!harness_wait_not_busy(b, 400),
		"b got a server while a's session holds the only one");
	/* a is unaffected by the waiting client. */
	ck_assert_int_eq(query_long(a, "SELECT pg_backend_pid()"), pid_a);

	PQfinish(a);
	ck_assert_msg(harness_wait_not_busy(b, 5000), "b still waits after a disconnected");
	char *vb = collect_text(b);
	ck_assert_ptr_nonnull(vb);
	ck_assert_int_eq(strtol(vb, NULL, 10), pid_a); /* the same backend, reused */
	free(vb);

	/* ...but DISCARD ALL made it a fresh session. */
	wm = harness_query_text(b, "SHOW work_mem");
	ck_assert_str_eq(wm, def_wm);
	free(wm);
	char *tmp = harness_query_text(b, "SELECT count(*) FROM pg_class "
					  "WHERE relname = 'modes_session_tmp'");
	ck_assert_str_eq(tmp, "0");
	free(tmp);
	char *prep = harness_query_text(b, "SELECT count(*) FROM pg_prepared_statements");
	ck_assert_str_eq(prep, "0");
	free(prep);
	free(def_wm);

	PQfinish(b);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* ---- statement mode --------------------------------------------------------------- */

/* Appends text to the 1024-byte buffer msg. */
static void append(char *msg, const char *text)
{
	size_t used = strlen(msg);
	snprintf(msg + used, 1024 - used, "%s", text);
}

static void collect_notice(void *arg, const PGresult *res)
{
	append(arg, PQresultErrorMessage(res));
}

START_TEST(test_statement_mode_runs_single_statements)
{
	struct harness_sluice *s = start_mode("statement", 1);
	PGconn *a = harness_connect(s, MD5USER);
	PGconn *b = harness_connect(s, MD5USER);
	for (int i = 0; i < 3; i++) {
		char *v = harness_query_text(a, "SELECT count(*) FROM items");
		ck_assert_str_eq(v, "3");
		free(v);
		v = harness_query_text(b, "SELECT name FROM items WHERE id = 2");
		ck_assert_ptr_nonnull(v);
		free(v);
	}
	/* Autocommit writes work, one statement at a time. */
	free(harness_query_text(a, "UPDATE items SET name = name WHERE id = 1"));
	ck_assert_int_eq(query_long(a, "SELECT pg_backend_pid()"),
		query_long(b, "SELECT pg_backend_pid()"));
	PQfinish(a);
	PQfinish(b);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_statement_mode_refuses_transaction_block)
{
	struct harness_sluice *s = start_mode("statement", 1);
	PGconn *a = harness_connect(s, MD5USER);
	/*
	 * libpq hands an ErrorResponse that arrives between queries (sluice's
	 * FATAL after BEGIN's ReadyForQuery) to the notice receiver.
	 */
	char msg[1024] = "";
	PQsetNoticeReceiver(a, collect_notice, msg);

	/*
	 * BEGIN itself may be answered or refused; either way the statement after
	 * it must fail, and an error naming statement pooling mode must have
	 * reached the client, not just a broken socket.
	 */
	PGresult *res = PQexec(a, "BEGIN");
	bool begin_ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	if (!begin_ok)
		append(msg, PQresultErrorMessage(res));
	PQclear(res);
	if (begin_ok) {
		res = PQexec(a, "SELECT 1");
		ck_assert_int_ne(PQresultStatus(res), PGRES_TUPLES_OK);
		append(msg, PQresultErrorMessage(res));
		PQclear(res);
	}
	ck_assert_msg(strstr(msg, "transaction blocks not allowed in statement pooling mode") != NULL,
		"error was: %s", msg);
	ck_assert_int_eq(PQstatus(a), CONNECTION_BAD);
	PQfinish(a);

	/* The server was not left inside that transaction for the next client. */
	PGconn *b = harness_connect(s, MD5USER);
	char *v = harness_query_text(b, "SELECT now() = statement_timestamp()");
	ck_assert_str_eq(v, "t");
	free(v);
	ck_assert_int_eq(PQtransactionStatus(b), PQTRANS_IDLE);
	PQfinish(b);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* ---- pools are per database and user ------------------------------------------- */

START_TEST(test_pool_per_user_gives_each_user_own_server)
{
	wait_backends("md5user", 0);
	wait_backends("trustuser", 0);
	struct harness_sluice *s = start_mode("transaction", 1);
	PGconn *a = harness_connect(s, MD5USER);
	PGconn *b = harness_connect(s, TRUSTUSER);

	/* a holds md5user's only server; trustuser's pool is not affected. */
	free(harness_query_text(a, "BEGIN"));
	long pid_a = query_long(a, "SELECT pg_backend_pid()");
	ck_assert_int_eq(PQsendQuery(b, "SELECT pg_backend_pid(), current_user"), 1);
	ck_assert_msg(harness_wait_not_busy(b, 3000), "trustuser waited for md5user's server");
	PGresult *res = PQgetResult(b);
	ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	long pid_b = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	ck_assert_str_eq(PQgetvalue(res, 0, 1), "trustuser");
	PQclear(res);
	ck_assert_ptr_null(PQgetResult(b));
	ck_assert_int_ne(pid_a, pid_b);

	char *who = harness_query_text(a, "SELECT current_user");
	ck_assert_str_eq(who, "md5user");
	free(who);
	free(harness_query_text(a, "COMMIT"));

	ck_assert_int_eq(harness_count_backends("md5user"), 1);
	ck_assert_int_eq(harness_count_backends("trustuser"), 1);
	char *u = harness_pg_exec("SELECT usename FROM pg_stat_activity WHERE pid = %ld", pid_b);
	ck_assert_str_eq(u, "trustuser");
	free(u);

	PQfinish(a);
	PQfinish(b);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

static Suite *pool_modes_suite(void)
{
	Suite *s = suite_create("pool_modes");
	TCase *tc = harness_tcase("transaction");
	tcase_add_test(tc, test_transaction_mode_two_clients_share_one_server);
	tcase_add_test(tc, test_transaction_mode_open_transaction_keeps_server_until_commit);
	suite_add_tcase(s, tc);

	tc = harness_tcase("session");
	tcase_add_test(tc, test_session_mode_client_keeps_its_backend_across_transactions);
	tcase_add_test(tc, test_session_mode_next_client_waits_and_gets_a_reset_backend);
	suite_add_tcase(s, tc);

	tc = harness_tcase("statement");
	tcase_add_test(tc, test_statement_mode_runs_single_statements);
	tcase_add_test(tc, test_statement_mode_refuses_transaction_block);
	suite_add_tcase(s, tc);

	tc = harness_tcase("pools");
	tcase_add_test(tc, test_pool_per_user_gives_each_user_own_server);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return harness_run_suite(pool_modes_suite());
}
