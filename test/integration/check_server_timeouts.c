/*
 * check_server_timeouts.c - proves the settings that end or check server
 * connections: server_idle_timeout, server_lifetime, server_connect_timeout
 * (and a database whose server refuses connections), idle_transaction_timeout,
 * query_timeout and transaction_timeout (global, set on the console, and per
 * user in [users]), server_fast_close, pool_idle_timeout, and
 * server_check_query with server_check_delay.
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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define USERLIST "\"trustuser\" \"trustuserpw\"\n\"md5user\" \"md5userpw\"\n"
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

/* server_lifetime = 0: every server serves one transaction, then closes (PgBouncer's meaning). */
START_TEST(test_server_lifetime_zero_uses_each_server_once)
{
	struct harness_sluice *s = harness_sluice_start(COMMON "default_pool_size = 1\n"
							       "server_lifetime = 0\n",
		NULL, USERLIST);
	PGconn *conn = harness_connect(s, "dbname=app user=trustuser");
	long pids[3];
	for (int i = 0; i < 3; i++) {
		pids[i] = backend_pid(conn);
		for (int j = 0; j < i; j++)
			ck_assert_int_ne(pids[i], pids[j]);
		ck_assert_msg(wait_backend_gone(pids[i], 2000), "used server %ld still open", pids[i]);
	}
	ck_assert_int_eq(harness_sluice_log_count(s, "closing because: server lifetime over"), 3);
	PQfinish(conn);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* ---- unreachable servers ----------------------------------------------------------- */

enum dead_kind {
	DEAD_CLOSED, /* nothing listens: connect is refused */
	DEAD_SILENT, /* the kernel completes TCP handshakes but nobody ever answers: a hung PostgreSQL */
	DEAD_UNANSWERED, /* the listener's accept queue is full: SYNs go unanswered, connect hangs */
};

/*
 * A listener on a free loopback port for kind (DEAD_CLOSED: none, -1), with
 * its port; for DEAD_UNANSWERED the accept queue is filled by the test's own
 * connections (filler), which the caller closes with the listener.
 */
static int dead_listener(enum dead_kind kind, int *port, int *filler)
{
	*filler = -1;
	if (kind == DEAD_CLOSED) {
		*port = harness_free_port();
		return -1;
	}
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(fd, kind == DEAD_UNANSWERED ? 0 : 16), 0);
	socklen_t len = sizeof(sa);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*port = ntohs(sa.sin_port);
	if (kind == DEAD_UNANSWERED) {
		/* A backlog of 0 holds one connection: this one. */
		*filler = socket(AF_INET, SOCK_STREAM, 0);
		ck_assert_int_eq(connect(*filler, (struct sockaddr *)&sa, sizeof(sa)), 0);
	}
	return fd;
}

/*
 * A database whose server cannot be reached (a refused port, a silent one or
 * one whose connect hangs, until server_connect_timeout): as PgBouncer, the
 * client that was waiting stays queued for the next attempt and ends at
 * query_wait_timeout; a client that comes while the pool has no server is
 * failed at once with the cached error; and sluice keeps serving the healthy
 * database meanwhile.
 */
static const struct dead_case {
	const char *what;
	enum dead_kind kind;
	const char *logged; /* the warning of the failed attempt */
} dead_cases[] = {
	{ "closed port", DEAD_CLOSED, "could not connect to 127.0.0.1:" },
	{ "silent server, server_connect_timeout", DEAD_SILENT, "server_connect_timeout reached" },
	{ "connect unanswered, server_connect_timeout", DEAD_UNANSWERED,
		"server_connect_timeout reached" },
};

START_TEST(test_unreachable_database_queues_its_client_and_others_keep_working)
{
	const struct dead_case *dc = &dead_cases[_i];
	int port, filler;
	int fd = dead_listener(dc->kind, &port, &filler);
	char *dbs = xasprintf(APP_DB "dead = host=127.0.0.1 port=%d dbname=app\n", port);
	struct harness_sluice *s = harness_sluice_start(COMMON "server_connect_timeout = 0.5\n"
							       "server_login_retry = 30\n"
							       "query_wait_timeout = 2\n",
		dbs, USERLIST);
	free(dbs);
	PGconn *good = harness_connect(s, "dbname=app user=trustuser");

	long t0 = harness_now_ms();
	int first = harness_raw_connect(s->port);
	harness_raw_send_startup(first, "trustuser", "dead");
	ck_assert_msg(harness_sluice_log_wait(s, dc->logged, 3000), "%s", dc->what);

	long t1 = harness_now_ms();
	char *err = harness_connect_error(s, "dbname=dead user=trustuser");
	ck_assert_msg(harness_now_ms() - t1 < 1000, "%s: the second client waited %ld ms", dc->what,
		harness_now_ms() - t1);
	ck_assert_msg(strstr(err, "server login has been failing, cached error: ") &&
			      strstr(err, dc->logged) && strstr(err, "(server_login_retry)"),
		"%s: %s", dc->what, err);
	free(err);

	harness_expect_answer(good, "SELECT count(*) FROM items", "3");

	err = harness_raw_read_error(first);
	long waited = harness_now_ms() - t0;
	ck_assert_msg(err && strstr(err, "query_wait_timeout"), "%s: %s", dc->what,
		err ? err : "(none)");
	ck_assert_msg(waited >= 1900 && waited < 5000, "%s: the first client waited %ld ms", dc->what,
		waited);
	free(err);
	close(first);
	/* One attempt (its warning is the only server's): the retry is 30 s away. */
	ck_assert_int_eq(harness_sluice_log_count(s, " WARNING S-"), 1);

	PGconn *fresh = harness_connect(s, "dbname=app user=trustuser");
	harness_expect_answer(fresh, "SELECT 1", "1");
	PQfinish(fresh);
	PQfinish(good);
	if (fd >= 0)
		close(fd);
	if (filler >= 0)
		close(filler);
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
	ck_assert_msg(strstr(err, "query timeout") != NULL, "%s", err);
	free(err);
	/* PgBouncer's log line, which its tests (and operators) grep for. */
	ck_assert(harness_sluice_log_wait(s, "closing because: query timeout", 2000));
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

/* ---- transaction_timeout ---------------------------------------------------------- */

#define ADMIN "admin_users = trustuser\n"

/*
 * transaction_timeout from the file, from the console's SET, and from a
 * [users] entry (put in by a reload) over a longer global value: a
 * transaction open longer is ended, idle or running a query, while a client
 * outside a transaction, or another user, is not touched.
 */
static const struct xact_case {
	const char *what;
	const char *ini;
	const char *set; /* console command, or NULL */
	const char *user_line; /* [users] line, or NULL */
} xact_cases[] = {
	{ "ini", "transaction_timeout = 0.8\n", NULL, NULL },
	{ "console SET", "", "SET transaction_timeout = 0.8", NULL },
	{ "[users] over global", "transaction_timeout = 60\n", NULL,
		"trustuser = transaction_timeout=0.8" },
};

START_TEST(test_transaction_timeout_ends_a_transaction_open_too_long)
{
	const struct xact_case *xc = &xact_cases[_i];
	char *extra = xasprintf(COMMON ADMIN "%s", xc->ini);
	struct harness_sluice *s = harness_sluice_start(extra, NULL, USERLIST);
	free(extra);
	if (xc->set) {
		PGconn *admin = harness_connect(s, "dbname=pgbouncer user=trustuser");
		free(harness_query_text(admin, xc->set));
		PQfinish(admin);
	}
	if (xc->user_line)
		harness_sluice_reload_with_user(s, xc->user_line);

	PGconn *txn = harness_connect(s, "dbname=app user=trustuser");
	PGconn *outside = harness_connect(s, "dbname=app user=trustuser");
	PGconn *sleeper = harness_connect(s, "dbname=app user=trustuser");
	PGconn *other = harness_connect(s, "dbname=app user=md5user");
	long t0 = harness_now_ms();
	free(harness_query_text(txn, "BEGIN"));
	long pid = backend_pid(txn);
	harness_expect_answer(outside, "SELECT 1", "1");
	free(harness_query_text(other, "BEGIN"));
	/* Within the limit the transaction goes on. */
	harness_sleep_ms(300);
	harness_expect_answer(txn, "SELECT 2", "2");

	/* A single statement counts as a transaction: cancelled and ended too. */
	char *err = harness_query_error(sleeper, "SELECT pg_sleep(5)");
	ck_assert_msg(strstr(err, "transaction timeout") != NULL, "%s: %s", xc->what, err);
	free(err);

	long waited = harness_wait_readable(txn, 3000) + (harness_now_ms() - t0);
	ck_assert_msg(waited >= 750, "%s: closed after %ld ms", xc->what, waited);
	err = harness_query_error(txn, "COMMIT");
	ck_assert_msg(strstr(err, "transaction timeout") != NULL, "%s: %s", xc->what, err);
	free(err);
	ck_assert(harness_sluice_log_wait(s, "closing because: transaction timeout", 2000));
	ck_assert_msg(wait_backend_gone(pid, 2000), "%s: server %ld lives", xc->what, pid);

	/* Idle outside a transaction for longer is fine; so is the unlimited user. */
	harness_expect_answer(outside, "SELECT 3", "3");
	if (xc->user_line)
		harness_expect_answer(other, "SELECT 4", "4");
	PQfinish(txn);
	PQfinish(outside);
	PQfinish(sleeper);
	PQfinish(other);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/*
 * query_timeout and idle_transaction_timeout from [users] win over long
 * global values, for that user only.
 */
static const struct user_case {
	const char *ini;
	const char *user_line;
	const char *sql; /* what trustuser does; it must end with want */
	const char *want;
} user_cases[] = {
	{ "query_timeout = 60\n", "trustuser = query_timeout=0.5", "SELECT pg_sleep(5)",
		"query timeout" },
	{ "idle_transaction_timeout = 60\n", "trustuser = idle_transaction_timeout=0.5", NULL,
		"idle transaction timeout" },
};

START_TEST(test_user_timeouts_override_the_global_ones)
{
	const struct user_case *uc = &user_cases[_i];
	char *extra = xasprintf(COMMON "%s", uc->ini);
	struct harness_sluice *s = harness_sluice_start(extra, NULL, USERLIST);
	free(extra);
	harness_sluice_reload_with_user(s, uc->user_line);
	PGconn *conn = harness_connect(s, "dbname=app user=trustuser");
	PGconn *other = harness_connect(s, "dbname=app user=md5user");
	free(harness_query_text(other, "BEGIN"));
	long t0 = harness_now_ms();
	char *err;
	if (uc->sql) {
		err = harness_query_error(conn, uc->sql);
	} else {
		free(harness_query_text(conn, "BEGIN"));
		ck_assert_int_ge(harness_wait_readable(conn, 3000), 0);
		err = harness_query_error(conn, "SELECT 1");
	}
	long waited = harness_now_ms() - t0;
	ck_assert_msg(strstr(err, uc->want) != NULL, "%s", err);
	free(err);
	ck_assert_msg(waited >= 450 && waited < 2500, "ended after %ld ms", waited);
	char *line = xasprintf("closing because: %s", uc->want);
	ck_assert(harness_sluice_log_wait(s, line, 2000));
	free(line);
	/* The other user has the global value. */
	free(harness_query_text(other, "SELECT pg_sleep(0.7)"));
	harness_expect_answer(other, "SELECT 1", "1");
	PQfinish(conn);
	PQfinish(other);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* ---- server_fast_close ------------------------------------------------------------ */

/*
 * Session mode: RECONNECT, or a reload that changes the database, marks the
 * servers for closing. With server_fast_close a client between transactions
 * loses its server (and is disconnected) at once, one inside a transaction
 * when it ends; without it both keep their sessions. Servers opened after
 * the change are not marked.
 */
static const struct fast_case {
	bool fast;
	const char *set; /* how server_fast_close is turned on: console SET, or in the ini */
	const char *trigger; /* "RECONNECT app" or "RELOAD" (after an ini edit) */
} fast_cases[] = {
	{ false, NULL, "RECONNECT app" },
	{ true, "SET server_fast_close = 1", "RECONNECT app" },
	{ true, NULL, "RELOAD" },
};

START_TEST(test_server_fast_close_ends_sessions_between_transactions)
{
	const struct fast_case *fc = &fast_cases[_i];
	struct harness_sluice *s = harness_sluice_start(
		fc->fast && !fc->set ? "auth_type = trust\npool_mode = session\n" ADMIN
				       "server_fast_close = 1\n"
				     : "auth_type = trust\npool_mode = session\n" ADMIN,
		APP_DB, USERLIST);
	PGconn *admin = harness_connect(s, "dbname=pgbouncer user=trustuser");
	if (fc->set)
		free(harness_query_text(admin, fc->set));
	PGconn *idle = harness_connect(s, "dbname=app user=trustuser");
	PGconn *txn = harness_connect(s, "dbname=app user=trustuser");
	long idle_pid = backend_pid(idle);
	free(harness_query_text(txn, "BEGIN"));
	free(harness_query_text(txn, "SELECT 1"));
	if (strcmp(fc->trigger, "RELOAD") == 0)
		harness_sluice_edit_ini(s, "dbname=app\n", "dbname=app connect_query='SELECT 1'\n");
	free(harness_query_text(admin, fc->trigger));

	if (!fc->fast) {
		harness_sleep_ms(800);
		ck_assert_int_eq(backend_pid(idle), idle_pid);
		free(harness_query_text(txn, "COMMIT"));
		harness_sleep_ms(600);
		harness_expect_answer(txn, "SELECT 2", "2");
		goto done;
	}
	/* Between transactions: closed within a tick or two. */
	ck_assert_msg(harness_wait_readable(idle, 2000) >= 0, "idle session kept its server");
	char *err = harness_query_error(idle, "SELECT 1");
	ck_assert_msg(strstr(err, "database configuration changed") != NULL, "%s", err);
	free(err);
	ck_assert(harness_sluice_log_wait(s, "closing because: database configuration changed",
		2000));
	ck_assert_msg(wait_backend_gone(idle_pid, 2000), "server %ld lives", idle_pid);

	/* Inside a transaction: untouched until it ends, then closed. */
	harness_sleep_ms(500);
	harness_expect_answer(txn, "SELECT 3", "3");
	free(harness_query_text(txn, "COMMIT"));
	ck_assert_msg(harness_wait_readable(txn, 2000) >= 0, "session kept its server");

	/* A server opened after the change is an ordinary one. */
	PGconn *fresh = harness_connect(s, "dbname=app user=trustuser");
	long fresh_pid = backend_pid(fresh);
	harness_sleep_ms(700);
	ck_assert_int_eq(backend_pid(fresh), fresh_pid);
	PQfinish(fresh);
done:
	PQfinish(idle);
	PQfinish(txn);
	PQfinish(admin);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* ---- pool_idle_timeout ------------------------------------------------------------- */

/* Whether SHOW POOLS has a row for database db. */
static bool pool_listed(PGconn *admin, const char *db)
{
	char *v = harness_show_value(admin, "SHOW POOLS", "database", db, "database");
	bool listed = v != NULL;
	free(v);
	return listed;
}

/*
 * A pool with no clients and no servers for pool_idle_timeout is freed (SHOW
 * POOLS no longer lists it) and made again by the next client; one whose
 * database forces a user and keeps a min_pool_size is never freed.
 */
START_TEST(test_pool_idle_timeout_frees_an_empty_pool)
{
	int dead_port = harness_free_port();
	char *dbs = xasprintf(APP_DB "dead = host=127.0.0.1 port=%d dbname=app user=trustuser "
				     "min_pool_size=1\n",
		dead_port);
	struct harness_sluice *s = harness_sluice_start(COMMON ADMIN "pool_idle_timeout = 0.5\n"
								     "server_idle_timeout = 0.3\n"
								     "server_login_retry = 0.2\n",
		dbs, USERLIST);
	free(dbs);
	PGconn *admin = harness_connect(s, "dbname=pgbouncer user=trustuser");
	PGconn *conn = harness_connect(s, "dbname=app user=trustuser");
	harness_expect_answer(conn, "SELECT 1", "1");
	free(harness_connect_error(s, "dbname=dead user=trustuser"));
	ck_assert(pool_listed(admin, "app"));
	ck_assert(pool_listed(admin, "dead"));

	/* In use (a client connected, idle): kept. */
	harness_sleep_ms(1000);
	ck_assert(pool_listed(admin, "app"));
	PQfinish(conn);

	/* Empty: its server closes after server_idle_timeout, the pool after pool_idle_timeout. */
	ck_assert(harness_sluice_log_wait(s, "cleaning up idle pool for user trustuser on db app "
					     "because: pool idle timeout",
		3000));
	ck_assert(!pool_listed(admin, "app"));
	ck_assert(pool_listed(admin, "dead"));

	conn = harness_connect(s, "dbname=app user=trustuser");
	harness_expect_answer(conn, "SELECT 2", "2");
	ck_assert(pool_listed(admin, "app"));
	PQfinish(conn);
	PQfinish(admin);
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

/*
 * The default check is PgBouncer's empty query: PostgreSQL answers it with
 * EmptyQueryResponse, which must count as a passed check (the same server,
 * not a new one, serves the next query). With server_check_delay = 0 every
 * reuse is checked, and a server that has just logged in is not.
 */
START_TEST(test_default_server_check_is_an_empty_query_that_passes)
{
	struct harness_sluice *s = harness_sluice_start(COMMON "default_pool_size = 1\n"
							       "server_check_delay = 0\n"
							       "verbose = 2\n",
		NULL, USERLIST);
	PGconn *conn = harness_connect(s, "dbname=app user=trustuser");
	long pid = backend_pid(conn);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(backend_pid(conn), pid);
	PQfinish(conn);
	/* One check per reuse, none for the new server; the line ends after the (empty) text. */
	ck_assert_int_eq(harness_sluice_log_count(s, "internal query: \n"), 3);
	ck_assert_int_eq(harness_sluice_log_count(s, "internal query: select 1"), 0);
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
	tcase_add_test(tc, test_server_lifetime_zero_uses_each_server_once);
	suite_add_tcase(s, tc);

	tc = harness_tcase("connect");
	tcase_add_loop_test(tc, test_unreachable_database_queues_its_client_and_others_keep_working,
		0, (int)ARRAY_SIZE(dead_cases));
	suite_add_tcase(s, tc);

	tc = harness_tcase("client_bound");
	tcase_add_test(tc, test_idle_transaction_timeout_closes_client_and_discards_its_server);
	tcase_add_test(tc, test_query_timeout_ends_a_long_query);
	tcase_add_loop_test(tc, test_transaction_timeout_ends_a_transaction_open_too_long, 0,
		(int)ARRAY_SIZE(xact_cases));
	tcase_add_loop_test(tc, test_user_timeouts_override_the_global_ones, 0,
		(int)ARRAY_SIZE(user_cases));
	suite_add_tcase(s, tc);

	tc = harness_tcase("reconfigure");
	tcase_add_loop_test(tc, test_server_fast_close_ends_sessions_between_transactions, 0,
		(int)ARRAY_SIZE(fast_cases));
	tcase_add_test(tc, test_pool_idle_timeout_frees_an_empty_pool);
	suite_add_tcase(s, tc);

	tc = harness_tcase("check");
	tcase_add_test(tc, test_default_server_check_is_an_empty_query_that_passes);
	tcase_add_loop_test(tc, test_server_check_query_runs_before_reuse_per_check_delay, 0,
		(int)ARRAY_SIZE(check_cases));
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return harness_run_suite(server_timeouts_suite());
}
