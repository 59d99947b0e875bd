/*
 * check_server_timeouts.c - proves the settings that end or check server
 * connections: server_idle_timeout, server_lifetime, server_connect_timeout
 * (and a database whose server refuses connections), idle_transaction_timeout,
 * query_timeout, and server_check_query with server_check_delay.
 *
 * Server connections are observed in PostgreSQL's pg_stat_activity, by
 * backend pid. server_check_query is observed by making the check itself
 * leave a trace: it calls nextval() on a sequence, so the sequence counts the
 * checks that really reached PostgreSQL. It does not test client-side limits
 * (check_client_limits) or pool sizes (check_pool_size).
 */
#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define USERLIST "\"trustuser\" \"trustuserpw\"\n"
#define COMMON "auth_type = trust\npool_mode = transaction\n"
#define APP_DB "app = host=@PGHOST@ port=@PGPORT@ dbname=app\n"

static bool backend_exists(long pid)
{
	return harness_pg_exec_long("SELECT count(*) FROM pg_stat_activity WHERE pid = %ld", pid) >
	       0;
}

/* Polls until backend pid has gone; returns whether it did within timeout_ms. */
static bool wait_backend_gone(long pid, long timeout_ms)
{
	long deadline = harness_now_ms() + timeout_ms;
	while (backend_exists(pid)) {
		if (harness_now_ms() > deadline)
			return false;
		harness_sleep_ms(20);
	}
	return true;
}

static long backend_pid(PGconn *conn)
{
	char *v = harness_query_text(conn, "SELECT pg_backend_pid()");
	long pid = atol(v);
	free(v);
	return pid;
}

/* ---- server_idle_timeout -------------------------------------------------------- */

START_TEST(test_server_idle_timeout_closes_idle_servers_down_to_min_pool_size)
{
	ck_assert_int_eq(harness_wait_backends("trustuser", 0, 3000), 0);
	struct harness_sluice *s = harness_sluice_start(COMMON "default_pool_size = 3\n"
							       "min_pool_size = 1\n"
							       "server_idle_timeout = 0.5\n",
		NULL, USERLIST);
	PGconn *conns[3];
	for (int i = 0; i < 3; i++)
		conns[i] = harness_connect(s, "dbname=app user=trustuser");
	/* Three at once need three servers. */
	for (int i = 0; i < 3; i++)
		ck_assert(PQsendQuery(conns[i], "SELECT pg_sleep(0.3)"));
	for (int i = 0; i < 3; i++) {
		PGresult *res;
		while ((res = PQgetResult(conns[i])) != NULL) {
			ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
			PQclear(res);
		}
	}
	long t0 = harness_now_ms();
	ck_assert_int_eq(harness_count_backends("trustuser"), 3);

	/* Idle for 0.5 s (minus jitter), they are closed, but not below min_pool_size. */
	long n = harness_wait_backends("trustuser", 1, 3000);
	long waited = harness_now_ms() - t0;
	ck_assert_msg(n == 1, "%ld servers left after %ld ms", n, waited);
	ck_assert_msg(waited >= 300, "idle servers closed after only %ld ms", waited);
	harness_sleep_ms(800);
	ck_assert_int_eq(harness_count_backends("trustuser"), 1);

	harness_expect_answer(conns[0], "SELECT 1", "1");
	for (int i = 0; i < 3; i++)
		PQfinish(conns[i]);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* ---- server_lifetime ------------------------------------------------------------- */

START_TEST(test_server_lifetime_closes_servers_only_when_idle)
{
	struct harness_sluice *s = harness_sluice_start(COMMON "default_pool_size = 1\n"
							       "server_lifetime = 0.5\n",
		NULL, USERLIST);
	PGconn *conn = harness_connect(s, "dbname=app user=trustuser");

	/* A transaction longer than the lifetime is not cut. */
	free(harness_query_text(conn, "BEGIN"));
	long pid = backend_pid(conn);
	harness_sleep_ms(1000);
	ck_assert_int_eq(backend_pid(conn), pid);
	harness_expect_answer(conn, "SELECT now() = statement_timestamp()", "f");
	free(harness_query_text(conn, "COMMIT"));

	/* Released past its lifetime, the server is closed: the next query gets a new one. */
	ck_assert_msg(wait_backend_gone(pid, 2000), "expired server %ld still open", pid);
	long pid2 = backend_pid(conn);
	ck_assert_int_ne(pid2, pid);

	/* An idle server past its lifetime is closed too, with the client still connected. */
	ck_assert_msg(wait_backend_gone(pid2, 3000), "idle expired server %ld still open", pid2);
	harness_expect_answer(conn, "SELECT 1", "1");
	PQfinish(conn);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* ---- unreachable servers ----------------------------------------------------------- */

/*
 * A port on which the kernel completes TCP handshakes but nobody ever
 * answers: the server side of a hung PostgreSQL.
 */
static int silent_listener(int *port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(fd, 16), 0);
	socklen_t len = sizeof(sa);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

/*
 * A client of a database whose server is broken gets an error in bounded time
 * (a refused port at once, a silent one after server_connect_timeout), and
 * sluice keeps serving the healthy database meanwhile.
 */
static const struct dead_case {
	const char *what;
	bool silent; /* a silent listener rather than a closed port */
	long min_ms; /* the error may not come before this */
} dead_cases[] = {
	{ "closed port", false, 0 },
	{ "silent server, server_connect_timeout", true, 400 },
};

START_TEST(test_broken_database_fails_its_client_quickly_and_others_keep_working)
{
	const struct dead_case *dc = &dead_cases[_i];
	int port, fd = -1;
	if (dc->silent)
		fd = silent_listener(&port);
	else
		port = harness_free_port();
	char *dbs = xasprintf(APP_DB "dead = host=127.0.0.1 port=%d dbname=app\n", port);
	struct harness_sluice *s = harness_sluice_start(COMMON "server_connect_timeout = 0.5\n"
							       "server_login_retry = 0.2\n",
		dbs, USERLIST);
	free(dbs);
	PGconn *good = harness_connect(s, "dbname=app user=trustuser");

	long t0 = harness_now_ms();
	char *err = harness_connect_error(s, "dbname=dead user=trustuser");
	long waited = harness_now_ms() - t0;
	ck_assert_msg(waited < 3000, "%s: the error took %ld ms", dc->what, waited);
	ck_assert_msg(waited >= dc->min_ms, "%s: the error came after %ld ms: %s", dc->what, waited,
		err);
	ck_assert_msg(strstr(err, "server") != NULL || strstr(err, "connect") != NULL, "%s: %s",
		dc->what, err);
	free(err);

	harness_expect_answer(good, "SELECT count(*) FROM items", "3");
	PGconn *fresh = harness_connect(s, "dbname=app user=trustuser");
	harness_expect_answer(fresh, "SELECT 1", "1");
	PQfinish(fresh);
	PQfinish(good);
	if (fd >= 0)
		close(fd);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* ---- idle_transaction_timeout -------------------------------------------------------- */

START_TEST(test_idle_transaction_timeout_closes_client_and_discards_its_server)
{
	struct harness_sluice *s = harness_sluice_start(COMMON "default_pool_size = 1\n"
							       "idle_transaction_timeout = 0.5\n",
		NULL, USERLIST);
	PGconn *idler = harness_connect(s, "dbname=app user=trustuser");
	free(harness_query_text(idler, "BEGIN"));
	free(harness_query_text(idler, "INSERT INTO items VALUES (1001, 'uncommitted')"));
	long pid = backend_pid(idler);

	long waited = harness_wait_readable(idler, 3000);
	ck_assert_msg(waited >= 400, "closed after %ld ms", waited);
	char *err = harness_query_error(idler, "COMMIT");
	ck_assert_msg(strstr(err, "idle transaction timeout") != NULL, "%s", err);
	free(err);

	/* The dirty server is closed, never handed on: its transaction is gone. */
	ck_assert_msg(wait_backend_gone(pid, 2000), "server %ld of the timed-out client lives", pid);
	PGconn *next = harness_connect(s, "dbname=app user=trustuser");
	ck_assert_int_ne(backend_pid(next), pid);
	harness_expect_answer(next, "SELECT count(*) FROM items WHERE id = 1001", "0");
	harness_expect_answer(next, "SELECT now() = statement_timestamp()", "t");
	PQfinish(next);
	PQfinish(idler);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* ---- query_timeout ------------------------------------------------------------------ */

START_TEST(test_query_timeout_ends_a_long_query)
{
	struct harness_sluice *s = harness_sluice_start(COMMON "query_timeout = 0.5\n", NULL,
		USERLIST);
	PGconn *conn = harness_connect(s, "dbname=app user=trustuser");
	PGconn *other = harness_connect(s, "dbname=app user=trustuser");
	long pid = backend_pid(conn);

	long t0 = harness_now_ms();
	char *err = harness_query_error(conn, "SELECT pg_sleep(5)");
	long waited = harness_now_ms() - t0;
	/* libpq reports the FATAL with the lost connection: its text, not always its SQLSTATE. */
	ck_assert_msg(strstr(err, "query_timeout") != NULL, "%s", err);
	free(err);
	ck_assert_msg(waited >= 450 && waited < 2500, "the query ended after %ld ms", waited);

	/* The query does not go on running on PostgreSQL. */
	ck_assert_msg(wait_backend_gone(pid, 1500) ||
			      harness_pg_exec_long("SELECT count(*) FROM pg_stat_activity WHERE "
						   "pid = %ld AND query LIKE '%%pg_sleep(5)%%' AND "
						   "state = 'active'",
				      pid) == 0,
		"backend %ld still runs the timed-out query", pid);

	/* Its server is not handed on mid-query; other clients are served by another. */
	char *v = harness_query_text(other, "SELECT pg_backend_pid()");
	ck_assert_int_ne(atol(v), pid);
	free(v);
	PQfinish(conn);
	PQfinish(other);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* ---- server_check_query --------------------------------------------------------------- */

#define CHECK_SEQ "sluice_check_seq"

static long checks_so_far(void)
{
	return harness_pg_exec_long("SELECT CASE WHEN is_called THEN last_value ELSE 0 END "
				    "FROM " CHECK_SEQ);
}

/*
 * Three queries on one pooled server, 50 ms apart. With server_check_delay = 0
 * the check runs before every reuse (the first query may be checked too); with a long delay never.
 */
static const struct check_case {
	const char *delay;
	long min_checks, max_checks;
} check_cases[] = {
	{ "0", 3, 4 },
	{ "30", 0, 0 },
};

START_TEST(test_server_check_query_runs_before_reuse_per_check_delay)
{
	const struct check_case *cc = &check_cases[_i];
	free(harness_pg_exec("CREATE SEQUENCE IF NOT EXISTS " CHECK_SEQ));
	free(harness_pg_exec("GRANT USAGE, SELECT, UPDATE ON SEQUENCE " CHECK_SEQ " TO PUBLIC"));
	char *extra = xasprintf(COMMON "default_pool_size = 1\n"
				       "server_check_query = SELECT nextval('" CHECK_SEQ "')\n"
				       "server_check_delay = %s\n",
		cc->delay);
	struct harness_sluice *s = harness_sluice_start(extra, NULL, USERLIST);
	free(extra);
	PGconn *conn = harness_connect(s, "dbname=app user=trustuser");
	long before = checks_so_far();
	long pid = backend_pid(conn);
	for (int i = 0; i < 3; i++) {
		harness_sleep_ms(50);
		ck_assert_int_eq(backend_pid(conn), pid); /* the same server, reused */
	}
	long checks = checks_so_far() - before;
	ck_assert_msg(checks >= cc->min_checks && checks <= cc->max_checks,
		"server_check_delay = %s: %ld checks for 3 reuses", cc->delay, checks);
	PQfinish(conn);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

static Suite *server_timeouts_suite(void)
{
	Suite *s = suite_create("server_timeouts");
	TCase *tc = harness_tcase("expiry");
	tcase_add_test(tc, test_server_idle_timeout_closes_idle_servers_down_to_min_pool_size);
	tcase_add_test(tc, test_server_lifetime_closes_servers_only_when_idle);
	suite_add_tcase(s, tc);

	tc = harness_tcase("connect");
	tcase_add_loop_test(tc, test_broken_database_fails_its_client_quickly_and_others_keep_working,
		0, (int)ARRAY_SIZE(dead_cases));
	suite_add_tcase(s, tc);

	tc = harness_tcase("client_bound");
	tcase_add_test(tc, test_idle_transaction_timeout_closes_client_and_discards_its_server);
	tcase_add_test(tc, test_query_timeout_ends_a_long_query);
	suite_add_tcase(s, tc);

	tc = harness_tcase("check");
	tcase_add_loop_test(tc, test_server_check_query_runs_before_reuse_per_check_delay, 0,
		(int)ARRAY_SIZE(check_cases));
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return harness_run_suite(server_timeouts_suite());
}
