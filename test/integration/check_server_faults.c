/*
 * check_server_faults.c - sluice when PostgreSQL misbehaves under it: a
 * server connection terminated mid-query or while idle in the pool, a
 * PostgreSQL restart with clients connected, a restart while every server is
 * busy and more clients wait for one, and PostgreSQL down while clients
 * arrive.
 *
 * Each test asserts what the affected client sees (an error, not a hang),
 * that unaffected clients go on, and that the pool recovers once PostgreSQL
 * is back. It does not test login failures of wrong passwords (auth suites).
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define USERLIST "\"trustuser\" \"trustuserpw\"\n"
#define CONNINFO "dbname=app user=trustuser"
/* Short timeouts so that every failure is reported within a bounded time. */
#define SLUICE_EXTRA                                                                               \
	"auth_type = trust\nserver_connect_timeout = 1\nserver_login_retry = 0.5\n"              \
	"query_wait_timeout = 3\n"

/*
 * Tries a fresh client every 100 ms until one connects and queries, for at
 * most timeout_ms; returns how long it took or -1 with the last error in err.
 */
static long wait_pool_recovers(const struct harness_sluice *s, int timeout_ms, char *err,
	size_t errlen)
{
	long start = harness_now_ms();
	char conninfo[128];
	snprintf(conninfo, sizeof(conninfo), "host=127.0.0.1 port=%d connect_timeout=5 " CONNINFO,
		s->port);
	for (;;) {
		PGconn *conn = PQconnectdb(conninfo);
		if (PQstatus(conn) == CONNECTION_OK) {
			PGresult *res = PQexec(conn, "SELECT count(*) FROM items");
			bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;
			if (!ok)
				snprintf(err, errlen, "%s", PQresultErrorMessage(res));
			PQclear(res);
			PQfinish(conn);
			if (ok)
				return harness_now_ms() - start;
		} else {
			snprintf(err, errlen, "%s", PQerrorMessage(conn));
			PQfinish(conn);
		}
		if (harness_now_ms() - start > timeout_ms)
			return -1;
		usleep(100 * 1000);
	}
}

START_TEST(test_terminated_server_mid_query_fails_only_its_client)
{
	struct harness_sluice *s = harness_sluice_start(SLUICE_EXTRA "pool_mode = session\n", NULL,
		USERLIST);
	PGconn *victim = harness_connect(s, CONNINFO);
	PGconn *bystander = harness_connect(s, CONNINFO);
	free(harness_query_text(bystander, "BEGIN"));
	harness_expect_answer(bystander, "SELECT count(*) FROM items", "3");

	ck_assert_int_eq(PQsendQuery(victim, "SELECT pg_sleep(5)"), 1);
	harness_wait_query_running("SELECT pg_sleep(5)");
	long start = harness_now_ms();
	ck_assert_int_eq(harness_pg_exec_long("SELECT count(*) FILTER (WHERE "
					      "pg_terminate_backend(pid)) FROM pg_stat_activity "
					      "WHERE query = 'SELECT pg_sleep(5)'"),
		1);
	PGresult *res = PQgetResult(victim);
	ck_assert_ptr_nonnull(res);
	ck_assert_int_eq(PQresultStatus(res), PGRES_FATAL_ERROR);
	const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	char state[6];
	snprintf(state, sizeof(state), "%s", st ? st : "08006");
	PQclear(res);
	while ((res = PQgetResult(victim)) != NULL)
		PQclear(res);
	ck_assert_msg(strcmp(state, "57P01") == 0 || strncmp(state, "08", 2) == 0, "%s", state);
	ck_assert_msg(harness_now_ms() - start < 2000, "the error took %ld ms", harness_now_ms() - start);
	/* The victim's session is gone with its server. */
	char *err = harness_query_error(victim, "SELECT 1");
	free(err);
	PQfinish(victim);

	/* The bystander's transaction on its own server is untouched. */
	harness_expect_answer(bystander, "SELECT count(*) FROM items", "3");
	free(harness_query_text(bystander, "COMMIT"));
	PQfinish(bystander);

	PGconn *fresh = harness_connect(s, CONNINFO);
	harness_expect_answer(fresh, "SELECT count(*) FROM items", "3");
	PQfinish(fresh);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_killed_idle_server_is_replaced_for_next_client)
{
	struct harness_sluice *s = harness_sluice_start(SLUICE_EXTRA "pool_mode = transaction\n",
		NULL, USERLIST);
	PGconn *conn = harness_connect(s, CONNINFO);
	char *v = harness_query_text(conn, "SELECT pg_backend_pid()");
	long old_pid = atol(v);
	free(v);
	PQfinish(conn);

	/* The server now idles in the pool. Kill it and wait until it is really gone. */
	ck_assert_int_eq(harness_pg_exec_long("SELECT count(*) FILTER (WHERE "
					      "pg_terminate_backend(pid)) FROM pg_stat_activity "
					      "WHERE pid = %ld",
				 old_pid),
		1);
	long deadline = harness_now_ms() + 5000;
	while (harness_pg_exec_long("SELECT count(*) FROM pg_stat_activity WHERE pid = %ld",
		       old_pid) != 0) {
		ck_assert(harness_now_ms() < deadline);
		usleep(20 * 1000);
	}

	conn = harness_connect(s, CONNINFO);
	v = harness_query_text(conn, "SELECT pg_backend_pid()");
	ck_assert_int_ne(atol(v), old_pid);
	free(v);
	harness_expect_answer(conn, "SELECT count(*) FROM items", "3");
	PQfinish(conn);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_pg_restart_fails_connected_clients_then_pool_recovers)
{
	struct harness_sluice *s = harness_sluice_start(SLUICE_EXTRA "pool_mode = session\n", NULL,
		USERLIST);
	PGconn *idle = harness_connect(s, CONNINFO);
	harness_expect_answer(idle, "SELECT count(*) FROM items", "3");
	PGconn *in_tx = harness_connect(s, CONNINFO);
	free(harness_query_text(in_tx, "BEGIN"));
	harness_expect_answer(in_tx, "SELECT count(*) FROM items", "3");

	harness_pg_restart();

	/* Both sessions died with their servers: each gets an error, not a hang. */
	long start = harness_now_ms();
	char *err = harness_query_error(idle, "SELECT 1");
	free(err);
	err = harness_query_error(in_tx, "SELECT 1");
	free(err);
	ck_assert_msg(harness_now_ms() - start < 3000, "errors took %ld ms", harness_now_ms() - start);
	PQfinish(idle);
	PQfinish(in_tx);

	char last[512] = "";
	long took = wait_pool_recovers(s, 5000, last, sizeof(last));
	ck_assert_msg(took >= 0, "no client could query within 5 s of the restart: %s", last);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/*
 * PostgreSQL restarts while every server of a transaction pool is busy and
 * more clients queue behind them in sluice: the busy clients and the queued
 * ones each get an error or their answer within a bound (none hangs), and
 * once PostgreSQL is back every client can run queries again through the
 * same pool.
 */
START_TEST(test_pg_restart_under_load_then_every_client_works_again)
{
	enum { CLIENTS = 6 };
	struct harness_sluice *s = harness_sluice_start(
		SLUICE_EXTRA "pool_mode = transaction\ndefault_pool_size = 2\n", NULL, USERLIST);
	PGconn *conn[CLIENTS];
	for (int i = 0; i < CLIENTS; i++) {
		conn[i] = harness_connect(s, CONNINFO);
		harness_expect_answer(conn[i], "SELECT count(*) FROM items", "3");
	}
	/* Two queries hold both servers; four more wait in sluice's queue. */
	for (int i = 0; i < CLIENTS; i++)
		ck_assert_int_eq(PQsendQuery(conn[i], "SELECT pg_sleep(0.5), count(*) FROM items"), 1);
	harness_wait_query_running("SELECT pg_sleep(0.5), count(*) FROM items");

	harness_pg_restart();

	/* Every client hears back, answer or error, within a bound. */
	long start = harness_now_ms();
	int answered = 0, failed = 0;
	for (int i = 0; i < CLIENTS; i++) {
		ck_assert_msg(harness_wait_not_busy(conn[i], 10000), "client %d heard nothing", i);
		PGresult *res;
		bool ok = false, err = false;
		while ((res = PQgetResult(conn[i])) != NULL) {
			ok = ok || PQresultStatus(res) == PGRES_TUPLES_OK;
			err = err || PQresultStatus(res) == PGRES_FATAL_ERROR;
			PQclear(res);
		}
		answered += ok;
		failed += err || PQstatus(conn[i]) == CONNECTION_BAD;
	}
	ck_assert_msg(harness_now_ms() - start < 10000, "answers took %ld ms",
		      harness_now_ms() - start);
	ck_assert_msg(failed >= 2, "the two running queries must fail with their servers (%d)",
		      failed);
	ck_assert_int_eq(answered + failed >= CLIENTS, 1);

	/* The pool recovers: every client (reconnected if its session died) runs queries. */
	char last[512] = "";
	ck_assert_msg(wait_pool_recovers(s, 5000, last, sizeof(last)) >= 0,
		      "no client could query within 5 s of the restart: %s", last);
	for (int i = 0; i < CLIENTS; i++) {
		if (PQstatus(conn[i]) != CONNECTION_OK) {
			PQfinish(conn[i]);
			conn[i] = harness_connect(s, CONNINFO);
		}
		PGresult *res = PQexec(conn[i], "SELECT count(*) FROM items");
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			/* A session that survived the restart may still report the broken server once. */
			PQclear(res);
			PQfinish(conn[i]);
			conn[i] = harness_connect(s, CONNINFO);
			res = PQexec(conn[i], "SELECT count(*) FROM items");
		}
		ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "client %d: %s", i,
			      PQresultErrorMessage(res));
		ck_assert_str_eq(PQgetvalue(res, 0, 0), "3");
		PQclear(res);
	}
	for (int i = 0; i < CLIENTS; i++)
		PQfinish(conn[i]);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_pg_down_gives_new_clients_an_error_then_recovers)
{
	struct harness_sluice *s = harness_sluice_start(SLUICE_EXTRA "pool_mode = transaction\n",
		NULL, USERLIST);
	harness_pg_stop();

	/* Collect what happened first, so that PostgreSQL is always started again. */
	char conninfo[128];
	snprintf(conninfo, sizeof(conninfo), "host=127.0.0.1 port=%d connect_timeout=10 " CONNINFO,
		s->port);
	long start = harness_now_ms();
	PGconn *conn = PQconnectdb(conninfo);
	bool connected = PQstatus(conn) == CONNECTION_OK;
	char err[512] = "";
	bool query_ok = false;
	if (connected) {
		/* sluice may greet before it has a server; then the first query fails. */
		PGresult *res = PQexec(conn, "SELECT 1");
		query_ok = PQresultStatus(res) == PGRES_TUPLES_OK;
		snprintf(err, sizeof(err), "%s", PQresultErrorMessage(res));
		PQclear(res);
	} else {
		snprintf(err, sizeof(err), "%s", PQerrorMessage(conn));
	}
	long took = harness_now_ms() - start;
	PQfinish(conn);
	harness_pg_start();

	ck_assert_msg(!query_ok, "a query succeeded with PostgreSQL stopped");
	/* Connecting is refused: the client stays queued for the retries until query_wait_timeout. */
	ck_assert_msg(took >= 2900 && took < 5000, "the error took %ld ms (query_wait_timeout = 3)",
		took);
	ck_assert_msg(err[0] != '\0', "no error message");
	fprintf(stderr, "check_server_faults: with PostgreSQL down: %s", err);

	char last[512] = "";
	long rec = wait_pool_recovers(s, 5000, last, sizeof(last));
	ck_assert_msg(rec >= 0, "no client could query within 5 s of the start: %s", last);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/*
 * PostgreSQL is down when a client comes, and back a second later: the client
 * waits through the failed attempts (server_login_retry apart) and is served,
 * as PgBouncer's test_server_login_retry expects.
 */
START_TEST(test_client_waiting_while_pg_is_down_is_served_when_it_is_back)
{
	struct harness_sluice *s = harness_sluice_start(SLUICE_EXTRA "pool_mode = transaction\n",
		NULL, USERLIST);
	harness_pg_stop();
	int fd = harness_raw_connect(s->port);
	harness_raw_send_startup(fd, "trustuser", "app");
	bool failed_once = harness_sluice_log_wait(s, "could not connect to", 3000);
	harness_sleep_ms(700);
	harness_pg_start();
	ck_assert_msg(failed_once, "no failed attempt was logged");

	struct harness_msg m;
	char last = 0;
	while (last != 'Z' && last != 'E' && harness_raw_read_msg(fd, &m)) {
		last = m.type;
		if (last == 'E')
			fprintf(stderr, "error: %s\n", harness_msg_field(&m, 'M'));
		free(m.body);
	}
	ck_assert_msg(last == 'Z', "the waiting client got '%c' instead of a welcome", last);
	close(fd);
	ck_assert_int_ge(harness_sluice_log_count(s, "could not connect to"), 1);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

static Suite *server_faults_suite(void)
{
	Suite *s = suite_create("server_faults");
	TCase *tc = harness_tcase("terminate");
	tcase_add_test(tc, test_terminated_server_mid_query_fails_only_its_client);
	tcase_add_test(tc, test_killed_idle_server_is_replaced_for_next_client);
	suite_add_tcase(s, tc);
	tc = harness_tcase("restart");
	tcase_add_test(tc, test_pg_restart_fails_connected_clients_then_pool_recovers);
	tcase_add_test(tc, test_pg_restart_under_load_then_every_client_works_again);
	tcase_add_test(tc, test_pg_down_gives_new_clients_an_error_then_recovers);
	tcase_add_test(tc, test_client_waiting_while_pg_is_down_is_served_when_it_is_back);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return harness_run_suite(server_faults_suite());
}
