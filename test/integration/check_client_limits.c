/*
 * check_client_limits.c - proves the settings that bound clients rather than
 * servers: max_client_conn, client_login_timeout, client_idle_timeout and
 * query_wait_timeout. Each is shown to act (the right client gets the right
 * error, within a bound) and to spare everyone else (the other clients keep
 * working).
 *
 * Where the SQLSTATE of a refused login matters, the test speaks the protocol
 * itself on a raw socket (libpq does not expose the SQLSTATE of a failed
 * connection). It does not test server-side timeouts (check_server_timeouts)
 * or pool sizes (check_pool_size).
 */
#include "harness.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define USERLIST "\"trustuser\" \"trustuserpw\"\n\"md5user\" \"md5userpw\"\n"
#define COMMON "auth_type = trust\npool_mode = transaction\n"

/* ---- max_client_conn ----------------------------------------------------------- */

START_TEST(test_max_client_conn_refuses_one_more_with_53300)
{
	struct harness_sluice *s = harness_sluice_start(COMMON "max_client_conn = 3\n", NULL,
		USERLIST);
	PGconn *conns[3];
	for (int i = 0; i < 3; i++)
		conns[i] = harness_connect(s, "dbname=app user=trustuser");

	/* The fourth: refused with too_many_connections, seen on the wire... */
	int fd = harness_raw_connect(s->port);
	harness_raw_send_startup(fd, "trustuser", HARNESS_DATABASE);
	char *err = harness_raw_read_error(fd);
	ck_assert_msg(err != NULL, "the fourth client got no ErrorResponse");
	ck_assert_msg(strncmp(err, "53300 ", 6) == 0, "fourth client got: %s", err);
	free(err);
	close(fd);
	/* ...and through libpq. */
	err = harness_connect_error(s, "dbname=app user=trustuser");
	ck_assert_msg(strstr(err, "max_client_conn") != NULL, "%s", err);
	free(err);

	/* The three keep working. */
	for (int i = 0; i < 3; i++)
		harness_expect_answer(conns[i], "SELECT count(*) FROM items", "3");

	/* A freed slot can be taken again: the refused clients did not keep theirs. */
	PQfinish(conns[0]);
	char *conninfo = xasprintf("host=127.0.0.1 port=%d dbname=app user=trustuser "
				   "connect_timeout=5",
		s->port);
	long deadline = harness_now_ms() + 3000;
	PGconn *again;
	for (;;) {
		again = PQconnectdb(conninfo);
		if (PQstatus(again) == CONNECTION_OK || harness_now_ms() > deadline)
			break;
		PQfinish(again);
		harness_sleep_ms(50);
	}
	ck_assert_msg(PQstatus(again) == CONNECTION_OK, "no slot after a client left: %s",
		PQerrorMessage(again));
	free(conninfo);
	harness_expect_answer(again, "SELECT 7", "7");
	PQfinish(again);
	for (int i = 1; i < 3; i++)
		PQfinish(conns[i]);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/*
 * Silent sockets fill max_client_conn (and more wait beyond it): real clients
 * still get in, each taking the place of a connection that has not logged
 * in for a second, instead of waiting for client_login_timeout (60 s here).
 */
START_TEST(test_silent_connections_at_max_client_conn_do_not_lock_out_real_clients)
{
	struct harness_sluice *s = harness_sluice_start(COMMON "max_client_conn = 50\n",
		NULL, USERLIST);
	enum { SILENT = 200, REAL = 5 };
	int fds[SILENT];
	for (int i = 0; i < SILENT; i++)
		fds[i] = harness_raw_connect(s->port);
	harness_sleep_ms(1300);
	long start = harness_now_ms();
	PGconn *real[REAL];
	for (int i = 0; i < REAL; i++) {
		real[i] = harness_connect(s, "dbname=app user=trustuser");
		harness_expect_answer(real[i], "SELECT 1", "1");
	}
	long took = harness_now_ms() - start;
	ck_assert_msg(took < 5000, "%d real clients took %ld ms to get in", REAL, took);
	ck_assert(harness_sluice_log_wait(s, "closing a connection that had not logged in", 3000));
	/* Logged-in clients are never displaced: they all still work. */
	for (int i = 0; i < REAL; i++) {
		harness_expect_answer(real[i], "SELECT 2", "2");
		PQfinish(real[i]);
	}
	for (int i = 0; i < SILENT; i++)
		close(fds[i]);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* ---- client_login_timeout --------------------------------------------------------- */

START_TEST(test_client_login_timeout_disconnects_silent_client)
{
	struct harness_sluice *s = harness_sluice_start(COMMON "client_login_timeout = 0.5\n", NULL,
		USERLIST);
	long t0 = harness_now_ms();
	int fd = harness_raw_connect(s->port);
	/* It sends nothing. Meanwhile a proper client logs in and works. */
	PGconn *conn = harness_connect(s, "dbname=app user=trustuser");
	harness_expect_answer(conn, "SELECT 1", "1");

	/* An ErrorResponse (if any) then end of file, well before the socket's 10 s timeout. */
	char *err = harness_raw_read_error(fd);
	long waited = harness_now_ms() - t0;
	if (err) {
		ck_assert_msg(strstr(err, "client_login_timeout") != NULL, "%s", err);
		free(err);
		uint8_t b;
		ck_assert_int_eq(read(fd, &b, 1), 0);
	}
	ck_assert_msg(waited >= 450, "disconnected after %ld ms, before the timeout", waited);
	ck_assert_msg(waited < 3000, "disconnected only after %ld ms", waited);
	close(fd);

	/* The logged-in client is past login: the timeout does not touch it. */
	harness_sleep_ms(300);
	harness_expect_answer(conn, "SELECT 2", "2");
	PQfinish(conn);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_client_login_timeout_spares_a_client_that_logs_in_in_time)
{
	struct harness_sluice *s = harness_sluice_start(COMMON "client_login_timeout = 0.5\n", NULL,
		USERLIST);
	/* A logged-in client first, so that the pool's server login is not part of the wait. */
	PGconn *conn = harness_connect(s, "dbname=app user=trustuser");
	/* Slow but in time: the startup packet after 200 ms is accepted. */
	int fd = harness_raw_connect(s->port);
	harness_sleep_ms(200);
	harness_raw_send_startup(fd, "trustuser", HARNESS_DATABASE);
	uint8_t hdr[5];
	ck_assert(harness_read_full(fd, hdr, sizeof(hdr)));
	ck_assert_msg(hdr[0] == 'R', "answer to a timely startup was '%c'", hdr[0]);
	close(fd);
	PQfinish(conn);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* ---- client_idle_timeout ----------------------------------------------------------- */

START_TEST(test_client_idle_timeout_closes_idle_client_only)
{
	struct harness_sluice *s = harness_sluice_start(COMMON "client_idle_timeout = 0.5\n", NULL,
		USERLIST);
	PGconn *idle = harness_connect(s, "dbname=app user=trustuser");
	PGconn *busy = harness_connect(s, "dbname=app user=trustuser");
	harness_expect_answer(idle, "SELECT 1", "1");
	long t0 = harness_now_ms();

	/* busy sends a query every 150 ms: never idle for 0.5 s. */
	while (harness_now_ms() - t0 < 1200) {
		harness_expect_answer(busy, "SELECT 1", "1");
		harness_sleep_ms(150);
	}
	/* By now idle has been told and dropped; PQconsumeInput sees the end. */
	long waited = harness_wait_readable(idle, 3000) + (harness_now_ms() - t0);
	ck_assert_msg(waited >= 450, "closed after %ld ms", waited);
	char *err = harness_query_error(idle, "SELECT 1");
	ck_assert_msg(strstr(err, "client_idle_timeout") != NULL || strncmp(err, "08", 2) == 0,
		"%s", err);
	free(err);
	ck_assert(harness_sluice_log_wait(s, "client_idle_timeout", 2000));
	harness_expect_answer(busy, "SELECT 3", "3");
	PQfinish(idle);
	PQfinish(busy);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* ---- query_wait_timeout ------------------------------------------------------------- */

START_TEST(test_query_wait_timeout_fails_waiting_client_and_spares_holder)
{
	struct harness_sluice *s = harness_sluice_start(COMMON "default_pool_size = 1\n"
							      "query_wait_timeout = 0.5\n",
		NULL, USERLIST);
	PGconn *holder = harness_connect(s, "dbname=app user=trustuser");
	PGconn *waiter = harness_connect(s, "dbname=app user=trustuser");
	free(harness_query_text(holder, "BEGIN"));
	free(harness_query_text(holder, "UPDATE items SET name = name WHERE id = 1"));

	long t0 = harness_now_ms();
	ck_assert(PQsendQuery(waiter, "SELECT 1"));
	long waited = harness_wait_readable(waiter, 3000);
	ck_assert_msg(waited >= 450, "the waiter was answered after %ld ms", waited);
	ck_assert_msg(waited < 2500, "the waiter was answered after %ld ms", waited);
	PGresult *res = PQgetResult(waiter);
	ck_assert_int_eq(PQresultStatus(res), PGRES_FATAL_ERROR);
	const char *msg = PQresultErrorMessage(res);
	ck_assert_msg(strstr(msg, "query_wait_timeout") != NULL, "%s", msg);
	PQclear(res);
	while ((res = PQgetResult(waiter)) != NULL)
		PQclear(res);
	(void)t0;

	/* The holder's transaction is intact and commits. */
	harness_expect_answer(holder, "SELECT count(*) FROM items", "3");
	char *status = harness_query_text(holder, "SELECT now() = statement_timestamp()");
	ck_assert_str_eq(status, "f"); /* still inside the transaction begun before */
	free(status);
	free(harness_query_text(holder, "COMMIT"));
	harness_expect_answer(holder, "SELECT 5", "5");
	ck_assert(harness_sluice_log_wait(s, "query_wait_timeout", 2000));
	PQfinish(holder);
	PQfinish(waiter);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

static Suite *client_limits_suite(void)
{
	Suite *s = suite_create("client_limits");
	TCase *tc = harness_tcase("max_client_conn");
	tcase_add_test(tc, test_max_client_conn_refuses_one_more_with_53300);
	tcase_add_test(tc, test_silent_connections_at_max_client_conn_do_not_lock_out_real_clients);
	suite_add_tcase(s, tc);

	tc = harness_tcase("timeouts");
	tcase_add_test(tc, test_client_login_timeout_disconnects_silent_client);
	tcase_add_test(tc, test_client_login_timeout_spares_a_client_that_logs_in_in_time);
	tcase_add_test(tc, test_client_idle_timeout_closes_idle_client_only);
	tcase_add_test(tc, test_query_wait_timeout_fails_waiting_client_and_spares_holder);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return harness_run_suite(client_limits_suite());
}
