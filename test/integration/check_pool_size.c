/*
 * check_pool_size.c - proves the settings that bound how many server
 * connections sluice opens: default_pool_size, the per-database and per-user
 * pool_size overrides, min_pool_size, reserve_pool_size with
 * reserve_pool_timeout, max_db_connections and max_user_connections, and that
 * clients waiting for a full pool are served in arrival order.
 *
 * Server connections are counted where they cannot lie: in PostgreSQL's
 * pg_stat_activity. Concurrency comes from several libpq connections with
 * PQsendQuery() driven by one poll() loop, which also stamps the moment each
 * answer arrives. It does not test timeouts (check_client_limits,
 * check_server_timeouts) or the admin console's view of the pools.
 */
#include "harness.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Every role a test logs in with; auth_type = trust, so the secrets are for PostgreSQL. */
#define USERLIST                                                                                   \
	"\"trustuser\" \"trustuserpw\"\n\"md5user\" \"md5userpw\"\n"                               \
	"\"scramuser\" \"scramuserpw\"\n"

/* Counts the server connections sluice holds: every client backend but the superuser's. */
#define COUNT_SERVERS_SQL                                                                          \
	"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "             \
	"AND usename <> current_user"

#define MAX_JOBS 8
/* No job of this file may take longer than this to be answered. */
#define JOB_DEADLINE_MS 5000

static long count_servers(void)
{
	return harness_pg_exec_long(COUNT_SERVERS_SQL);
}

/* Polls until count_servers() == want or timeout_ms passes; returns the last count. */
static long wait_servers(long want, long timeout_ms)
{
	long deadline = harness_now_ms() + timeout_ms, n;
	while ((n = count_servers()) != want && harness_now_ms() < deadline)
		harness_sleep_ms(20);
	return n;
}

/* The previous test's sluice has gone; its backends may take a moment to leave. */
static void expect_no_servers(void)
{
	long n = wait_servers(0, 3000);
	ck_assert_msg(n == 0, "%ld backends left over from an earlier test", n);
}

/* One client's query in flight: when it was sent and when its answer came. */
struct job {
	PGconn *conn;
	long sent_ms, done_ms; /* relative to the start of run_jobs() */
	bool sent, done, ok;
	char error[256];
};

/* Drains whatever has arrived for j; marks it done when the last result came. */
static void job_consume(struct job *j, long t0)
{
	if (!PQconsumeInput(j->conn)) {
		snprintf(j->error, sizeof(j->error), "%s", PQerrorMessage(j->conn));
		j->done = true;
		j->done_ms = harness_now_ms() - t0;
		return;
	}
	while (!PQisBusy(j->conn)) {
		PGresult *res = PQgetResult(j->conn);
		if (!res) {
			j->done = true;
			j->done_ms = harness_now_ms() - t0;
			return;
		}
		if (PQresultStatus(res) == PGRES_TUPLES_OK || PQresultStatus(res) == PGRES_COMMAND_OK)
			j->ok = true;
		else
			snprintf(j->error, sizeof(j->error), "%s", PQresultErrorMessage(res));
		PQclear(res);
	}
}

/*
 * Sends sql on every job's connection, gap_ms apart and in index order, and
 * waits (bounded by JOB_DEADLINE_MS) until each has its answer. While waiting
 * it samples the number of server connections every ~25 ms and returns the
 * largest seen (-1 when sample is false). Fails the test when a job is not
 * answered in time or gets an error.
 */
static long run_jobs(struct job *jobs, int n, const char *sql, long gap_ms, bool sample)
{
	long t0 = harness_now_ms(), next_send = t0, last_sample = 0, max_seen = -1;
	int sent = 0, done = 0;
	for (int i = 0; i < n; i++) /* a connection may run a second round */
		jobs[i] = (struct job){ .conn = jobs[i].conn };
	while (done < n) {
		long now = harness_now_ms();
		ck_assert_msg(now - t0 < JOB_DEADLINE_MS, "only %d of %d clients were answered in %d ms",
			done, n, JOB_DEADLINE_MS);
		if (sent < n && now >= next_send) {
			struct job *j = &jobs[sent++];
			ck_assert_msg(PQsendQuery(j->conn, sql), "%s", PQerrorMessage(j->conn));
			j->sent = true;
			j->sent_ms = now - t0;
			next_send = now + gap_ms;
		}
		if (sample && now - last_sample >= 25) {
			long c = count_servers();
			if (c > max_seen)
				max_seen = c;
			last_sample = harness_now_ms();
		}
		struct pollfd pfd[MAX_JOBS];
		int idx[MAX_JOBS], np = 0;
		for (int i = 0; i < n; i++) {
			if (!jobs[i].sent || jobs[i].done)
				continue;
			pfd[np] = (struct pollfd){ .fd = PQsocket(jobs[i].conn), .events = POLLIN };
			idx[np++] = i;
		}
		if (np == 0) {
			harness_sleep_ms(5);
			continue;
		}
		int rc = poll(pfd, (nfds_t)np, 5);
		ck_assert_int_ge(rc, 0);
		for (int k = 0; k < np; k++) {
			if (!(pfd[k].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			struct job *j = &jobs[idx[k]];
			job_consume(j, t0);
			if (j->done) {
				done++;
				ck_assert_msg(j->ok, "client %d: %s", idx[k], j->error);
			}
		}
	}
	return max_seen;
}

/* Connects jobs[i] as the "user@db" of specs[i] (NULL-terminated list; "user" means app). */
static int connect_jobs(const struct harness_sluice *s, struct job *jobs, const char *const *specs)
{
	int n = 0;
	for (; specs[n]; n++) {
		ck_assert_int_lt(n, MAX_JOBS);
		char user[64], db[64] = HARNESS_DATABASE;
		const char *at = strchr(specs[n], '@');
		if (at) {
			snprintf(user, sizeof(user), "%.*s", (int)(at - specs[n]), specs[n]);
			snprintf(db, sizeof(db), "%s", at + 1);
		} else {
			snprintf(user, sizeof(user), "%s", specs[n]);
		}
		char conninfo[256];
		snprintf(conninfo, sizeof(conninfo), "dbname=%s user=%s", db, user);
		jobs[n] = (struct job){ .conn = harness_connect(s, conninfo) };
	}
	return n;
}

static void finish_jobs(struct job *jobs, int n)
{
	for (int i = 0; i < n; i++)
		PQfinish(jobs[i].conn);
}

/* ---- caps: one table, one test per row -------------------------------------- */

/*
 * A configuration and a crowd of clients that all run pg_sleep(SLEEP) at once:
 * at most cap server connections may exist, and (since a cap is a cap) the
 * crowd needs at least ceil(clients / cap) rounds of SLEEP.
 */
#define SLEEP_MS 300
static const struct cap_case {
	const char *what;
	const char *extra; /* [sluice] lines besides the common ones */
	const char *databases;
	const char *clients[MAX_JOBS + 1];
	int cap;
} cap_cases[] = {
	{ "default_pool_size", "default_pool_size = 2\n",
		"app = host=@PGHOST@ port=@PGPORT@ dbname=app\n",
		{ "trustuser", "trustuser", "trustuser", "trustuser", "trustuser", NULL }, 2 },
	{ "database pool_size beats default_pool_size", "default_pool_size = 4\n",
		"app = host=@PGHOST@ port=@PGPORT@ dbname=app pool_size=1\n",
		{ "trustuser", "trustuser", "trustuser", NULL }, 1 },
	{ "user pool_size beats database pool_size", "default_pool_size = 1\n",
		"app = host=@PGHOST@ port=@PGPORT@ dbname=app pool_size=1\n"
		"[users]\ntrustuser = pool_size=3\n",
		{ "trustuser", "trustuser", "trustuser", NULL }, 3 },
	/* PgBouncer's test_pool_size: the forced user's settings, not the connecting user's. */
	{ "forced user: the connecting user's pool_size does not apply", "default_pool_size = 1\n",
		"app = host=@PGHOST@ port=@PGPORT@ dbname=app user=trustuser pool_size=2\n"
		"[users]\nmd5user = pool_size=1\n",
		{ "md5user", "md5user", "md5user", "md5user", NULL }, 2 },
	{ "forced user: its own [users] pool_size applies", "default_pool_size = 1\n",
		"app = host=@PGHOST@ port=@PGPORT@ dbname=app user=trustuser pool_size=1\n"
		"[users]\ntrustuser = pool_size=3\nmd5user = pool_size=1\n",
		{ "md5user", "md5user", "md5user", NULL }, 3 },
	/* The forced user owns the database's one pool: clients of every user share it. */
	{ "forced user: one pool whoever connects", "default_pool_size = 5\n",
		"app = host=@PGHOST@ port=@PGPORT@ dbname=app user=trustuser pool_size=2\n",
		{ "md5user", "scramuser", "trustuser", "md5user", "scramuser", NULL }, 2 },
	{ "max_db_connections across users", "default_pool_size = 5\nmax_db_connections = 2\n",
		"app = host=@PGHOST@ port=@PGPORT@ dbname=app\n",
		{ "trustuser", "md5user", "trustuser", "md5user", NULL }, 2 },
	{ "database max_db_connections across users", "default_pool_size = 5\n",
		"app = host=@PGHOST@ port=@PGPORT@ dbname=app max_db_connections=1\n",
		{ "trustuser", "md5user", "scramuser", NULL }, 1 },
	{ "max_user_connections across databases",
		"default_pool_size = 5\nmax_user_connections = 2\n",
		"app = host=@PGHOST@ port=@PGPORT@ dbname=app\n"
		"postgres = host=@PGHOST@ port=@PGPORT@ dbname=postgres\n",
		{ "trustuser@app", "trustuser@postgres", "trustuser@app", "trustuser@postgres", NULL },
		2 },
	{ "user max_user_connections across databases", "default_pool_size = 5\n",
		"app = host=@PGHOST@ port=@PGPORT@ dbname=app\n"
		"postgres = host=@PGHOST@ port=@PGPORT@ dbname=postgres\n"
		"[users]\ntrustuser = max_user_connections=1\n",
		{ "trustuser@app", "trustuser@postgres", "trustuser@app", NULL }, 1 },
};

START_TEST(test_pool_limit_caps_server_connections_of_a_crowd)
{
	const struct cap_case *cc = &cap_cases[_i];
	expect_no_servers();
	char *extra = xasprintf("auth_type = trust\npool_mode = transaction\n%s", cc->extra);
	struct harness_sluice *s = harness_sluice_start(extra, cc->databases, USERLIST);
	free(extra);

	struct job jobs[MAX_JOBS];
	int n = connect_jobs(s, jobs, cc->clients);
	char sql[64];
	snprintf(sql, sizeof(sql), "SELECT pg_sleep(%g)", SLEEP_MS / 1000.0);
	long t0 = harness_now_ms();
	long max_seen = run_jobs(jobs, n, sql, 0, true);
	long elapsed = harness_now_ms() - t0;

	ck_assert_msg(max_seen <= cc->cap, "%s: %ld server connections, cap %d", cc->what, max_seen,
		cc->cap);
	ck_assert_msg(max_seen == cc->cap, "%s: the crowd only ever got %ld of %d servers", cc->what,
		max_seen, cc->cap);
	long rounds = (n + cc->cap - 1) / cc->cap;
	ck_assert_msg(elapsed >= rounds * SLEEP_MS - 50,
		"%s: %d clients finished in %ld ms, %ld rounds of %d ms expected", cc->what, n,
		elapsed, rounds, SLEEP_MS);
	ck_assert_int_le(count_servers(), cc->cap);

	finish_jobs(jobs, n);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/*
 * A database with a forced user has one pool, named after that user in SHOW
 * POOLS, whoever the clients logged in as (PgBouncer's get_pool of the forced
 * user); each client still shows its own user in SHOW CLIENTS.
 */
START_TEST(test_forced_user_database_has_one_pool)
{
	expect_no_servers();
	struct harness_sluice *s = harness_sluice_start(
		"auth_type = trust\npool_mode = transaction\nadmin_users = md5user\n",
		"app = host=@PGHOST@ port=@PGPORT@ dbname=app user=trustuser\n", USERLIST);
	static const char *const clients[] = { "md5user", "scramuser", NULL };
	struct job jobs[MAX_JOBS];
	int n = connect_jobs(s, jobs, clients);
	run_jobs(jobs, n, "SELECT 1", 0, false);

	PGconn *console = harness_connect(s, "dbname=pgbouncer user=md5user");
	PGresult *res = PQexec(console, "SHOW POOLS");
	ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	int rows = 0, db_col = PQfnumber(res, "database"), user_col = PQfnumber(res, "user");
	for (int i = 0; i < PQntuples(res); i++) {
		if (strcmp(PQgetvalue(res, i, db_col), "app") != 0)
			continue;
		rows++;
		ck_assert_str_eq(PQgetvalue(res, i, user_col), "trustuser");
	}
	PQclear(res);
	ck_assert_int_eq(rows, 1);
	ck_assert_int_eq(harness_show_long(console, "SHOW POOLS", "database", "app", "cl_active"), 2);
	char *who = harness_show_value(console, "SHOW CLIENTS", "user", "scramuser", "database");
	ck_assert_ptr_nonnull(who);
	ck_assert_str_eq(who, "app");
	free(who);

	PQfinish(console);
	finish_jobs(jobs, n);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/*
 * SET default_pool_size on the console applies to the pools that exist
 * already, not only to new ones (PgBouncer's GH issue #248).
 */
START_TEST(test_console_default_pool_size_applies_to_existing_pools)
{
	expect_no_servers();
	struct harness_sluice *s = harness_sluice_start("auth_type = trust\npool_mode = transaction\n"
							"admin_users = md5user\ndefault_pool_size = 1\n",
		NULL, USERLIST);
	static const char *const clients[] = { "trustuser", "trustuser", "trustuser", NULL };
	struct job jobs[MAX_JOBS];
	int n = connect_jobs(s, jobs, clients);
	ck_assert_int_eq(run_jobs(jobs, n, "SELECT pg_sleep(0.3)", 0, true), 1);

	PGconn *console = harness_connect(s, "dbname=pgbouncer user=md5user");
	PGresult *res = PQexec(console, "SET default_pool_size = 3");
	ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "%s", PQresultErrorMessage(res));
	PQclear(res);
	ck_assert_int_eq(run_jobs(jobs, n, "SELECT pg_sleep(0.3)", 0, true), 3);

	PQfinish(console);
	finish_jobs(jobs, n);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* ---- order of service --------------------------------------------------------- */

START_TEST(test_waiting_clients_are_served_in_arrival_order)
{
	expect_no_servers();
	struct harness_sluice *s = harness_sluice_start(
		"auth_type = trust\npool_mode = transaction\ndefault_pool_size = 1\n", NULL, USERLIST);
	static const char *const clients[] = { "trustuser", "trustuser", "trustuser", "trustuser",
		NULL };
	struct job jobs[MAX_JOBS];
	int n = connect_jobs(s, jobs, clients);
	/* 60 ms apart, so that each query surely reaches sluice after the one before. */
	run_jobs(jobs, n, "SELECT pg_sleep(0.2)", 60, false);
	for (int i = 1; i < n; i++) {
		ck_assert_msg(jobs[i].done_ms > jobs[i - 1].done_ms,
			"client %d (sent at %ld ms) was answered at %ld ms, before client %d "
			"(sent at %ld ms, answered at %ld ms)",
			i, jobs[i].sent_ms, jobs[i].done_ms, i - 1, jobs[i - 1].sent_ms,
			jobs[i - 1].done_ms);
		/* One server: each query starts only when the one before has ended. */
		ck_assert_msg(jobs[i].done_ms - jobs[i - 1].done_ms >= 180,
			"client %d answered %ld ms after client %d", i,
			jobs[i].done_ms - jobs[i - 1].done_ms, i - 1);
	}
	finish_jobs(jobs, n);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/*
 * Drives an asynchronous connection (PQconnectStart) for up to ms; returns
 * whether it is established. Fails the test if it failed.
 */
static bool drive_connect(PGconn *conn, long ms)
{
	long deadline = harness_now_ms() + ms;
	for (;;) {
		PostgresPollingStatusType st = PQconnectPoll(conn);
		ck_assert_msg(st != PGRES_POLLING_FAILED, "%s", PQerrorMessage(conn));
		if (st == PGRES_POLLING_OK)
			return true;
		long left = deadline - harness_now_ms();
		if (left <= 0)
			return false;
		struct pollfd pfd = { .fd = PQsocket(conn),
			.events = st == PGRES_POLLING_WRITING ? POLLOUT : POLLIN };
		ck_assert_int_ge(poll(&pfd, 1, (int)MIN(left, 50)), 0);
	}
}

/*
 * At a full max_db_connections, a server that becomes free goes to the pool
 * whose client has waited longest, not to whichever pool asks first: here a
 * client of a new pool (scramuser), waiting for its first server, comes
 * before a second md5user client that waits too, and the server trustuser's
 * client gives up is evicted for scramuser's. Before, the first pool in
 * creation order took it, over and over, and a late pool could wait until
 * its clients' connect_timeout (PgBouncer's test_max_db_connections).
 */
START_TEST(test_max_db_connections_serves_the_longest_waiting_pool_first)
{
	expect_no_servers();
	struct harness_sluice *s = harness_sluice_start(
		"auth_type = trust\npool_mode = transaction\ndefault_pool_size = 5\n",
		"app = host=@PGHOST@ port=@PGPORT@ dbname=app max_db_connections=2\n", USERLIST);
	PGconn *x1 = harness_connect(s, "dbname=app user=trustuser");
	PGconn *x2 = harness_connect(s, "dbname=app user=md5user");
	PGconn *y2 = harness_connect(s, "dbname=app user=md5user");
	free(harness_query_text(x1, "BEGIN"));
	free(harness_query_text(x2, "BEGIN"));
	ck_assert_int_eq(count_servers(), 2);

	char *conninfo = xasprintf("host=127.0.0.1 port=%d dbname=app user=scramuser", s->port);
	PGconn *x3 = PQconnectStart(conninfo);
	free(conninfo);
	ck_assert_ptr_nonnull(x3);
	ck_assert_msg(!drive_connect(x3, 300), "scramuser logged in with no server free");
	ck_assert(PQsendQuery(y2, "SELECT 'y2'"));
	harness_sleep_ms(300);

	free(harness_query_text(x1, "COMMIT"));
	ck_assert_msg(drive_connect(x3, 2000),
		"the longest-waiting client (scramuser) did not get the freed server");
	harness_expect_answer(x3, "SELECT 'x3'", "x3");
	ck_assert(PQconsumeInput(y2));
	ck_assert_msg(PQisBusy(y2), "md5user's later client was served first");
	ck_assert_int_le(count_servers(), 2);

	free(harness_query_text(x2, "COMMIT"));
	ck_assert(harness_wait_not_busy(y2, 3000));
	PGresult *res = PQgetResult(y2);
	ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	ck_assert_str_eq(PQgetvalue(res, 0, 0), "y2");
	PQclear(res);
	ck_assert_ptr_null(PQgetResult(y2));
	ck_assert_int_le(count_servers(), 2);

	PQfinish(x1);
	PQfinish(x2);
	PQfinish(y2);
	PQfinish(x3);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* ---- min_pool_size ----------------------------------------------------------- */

/* Terminates one backend of user on PostgreSQL, as a crash or an operator would. */
static void terminate_one_backend(const char *user)
{
	ck_assert_int_eq(harness_pg_exec_long("SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
					      "FROM (SELECT pid FROM pg_stat_activity WHERE "
					      "usename = '%s' LIMIT 1) t",
				 user),
		1);
}

/*
 * Without a forced user, a pool is kept at min_pool_size while it has
 * clients, and only then (as PgBouncer's janitor): sluice logs in as a
 * client's user for that user, not on speculation once everyone has left.
 */
START_TEST(test_min_pool_size_keeps_servers_warm_while_clients_are_connected)
{
	expect_no_servers();
	struct harness_sluice *s = harness_sluice_start("auth_type = trust\npool_mode = transaction\n"
							"default_pool_size = 5\nmin_pool_size = 3\n",
		NULL, USERLIST);
	/* No pool exists before a client names one: nothing to keep warm yet. */
	harness_sleep_ms(300);
	ck_assert_int_eq(count_servers(), 0);

	PGconn *conn = harness_connect(s, "dbname=app user=trustuser");
	long n = wait_servers(3, 3000);
	ck_assert_msg(n == 3, "min_pool_size = 3, but %ld servers after the first login", n);
	harness_sleep_ms(400); /* and not more than that: the pool is idle */
	ck_assert_int_eq(count_servers(), 3);

	/* A server that dies is replaced. */
	terminate_one_backend("trustuser");
	harness_sleep_ms(100);
	n = wait_servers(3, 3000);
	ck_assert_msg(n == 3, "after one server was terminated the pool has %ld", n);

	char *v = harness_query_text(conn, "SELECT 42");
	ck_assert_str_eq(v, "42");
	free(v);
	PQfinish(conn);

	/* With no client left, a server that dies is not replaced. */
	harness_sleep_ms(300);
	terminate_one_backend("trustuser");
	ck_assert_int_eq(wait_servers(2, 3000), 2);
	harness_sleep_ms(600);
	ck_assert_int_eq(count_servers(), 2);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/*
 * A database with a forced user and min_pool_size has its servers opened
 * before any client comes: at start, and when a RELOAD adds it (PgBouncer's
 * test_min_pool_size). A dead one is replaced with no client in sight.
 */
START_TEST(test_min_pool_size_warms_a_forced_user_database_without_clients)
{
	expect_no_servers();
	struct harness_sluice *s = harness_sluice_start(
		"auth_type = trust\npool_mode = transaction\ndefault_pool_size = 4\n",
		"app = host=@PGHOST@ port=@PGPORT@ dbname=app user=trustuser min_pool_size=2\n"
		"plain = host=@PGHOST@ port=@PGPORT@ dbname=app min_pool_size=3\n"
		";other\n",
		USERLIST);
	long n = harness_wait_backends("trustuser", 2, 3000);
	ck_assert_msg(n == 2, "forced user, min_pool_size = 2: %ld servers without clients", n);
	harness_sleep_ms(400);
	ck_assert_int_eq(count_servers(), 2); /* nothing for "plain", which has no forced user */

	terminate_one_backend("trustuser");
	harness_sleep_ms(100);
	ck_assert_int_eq(harness_wait_backends("trustuser", 2, 3000), 2);

	const struct harness_pg *pg = harness_pg();
	char *other = xasprintf("other = host=%s port=%d dbname=app user=md5user min_pool_size=1\n",
		pg->host, pg->port);
	harness_sluice_edit_ini(s, ";other\n", other);
	free(other);
	harness_sluice_signal(s, SIGHUP);
	ck_assert(harness_sluice_log_wait(s, "configuration reloaded", 3000));
	ck_assert_int_eq(harness_wait_backends("md5user", 1, 3000), 1);
	ck_assert_int_eq(count_servers(), 3);

	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* ---- reserve pool -------------------------------------------------------------- */

/*
 * One client holds the only pool server in a transaction, a second asks for a
 * query. With a reserve it is served by an extra server once it has waited
 * reserve_pool_timeout; without one it keeps waiting until the first commits.
 * The reserve's size comes from [users] over [databases] over the global
 * value, as PgBouncer's pool_res_pool_size (a [users] line is put in by a
 * reload, so that path is proved too).
 */
static const struct reserve_case {
	const char *extra;
	const char *db_keys; /* appended to the app entry */
	const char *user_line; /* a [users] line, or NULL */
	bool reserve;
} reserve_cases[] = {
	{ "reserve_pool_size = 1\n", "", NULL, true },
	{ "reserve_pool_size = 0\n", "", NULL, false },
	{ "reserve_pool_size = 0\n", " reserve_pool=1", NULL, true },
	{ "reserve_pool_size = 0\n", "", "trustuser = reserve_pool_size=1", true },
	{ "reserve_pool_size = 1\n", "", "trustuser = reserve_pool_size=0", false },
	{ "reserve_pool_size = 0\n", " reserve_pool_size=0", "trustuser = reserve_pool_size=1",
		true },
};

START_TEST(test_reserve_pool_opens_extra_server_after_timeout)
{
	const struct reserve_case *rc = &reserve_cases[_i];
	expect_no_servers();
	char *extra = xasprintf("auth_type = trust\npool_mode = transaction\n"
				"default_pool_size = 1\nreserve_pool_timeout = 0.4\n%s",
		rc->extra);
	char *dbs = xasprintf("app = host=@PGHOST@ port=@PGPORT@ dbname=app%s\n", rc->db_keys);
	struct harness_sluice *s = harness_sluice_start(extra, dbs, USERLIST);
	free(extra);
	free(dbs);
	if (rc->user_line) {
		char *users = xasprintf("[users]\n%s\n", rc->user_line);
		harness_sluice_edit_ini(s, "[users]\n", users);
		free(users);
		harness_sluice_signal(s, SIGHUP);
		ck_assert(harness_sluice_log_wait(s, "configuration reloaded", 3000));
	}

	PGconn *holder = harness_connect(s, "dbname=app user=trustuser");
	PGconn *waiter = harness_connect(s, "dbname=app user=trustuser");
	free(harness_query_text(holder, "BEGIN"));
	free(harness_query_text(holder, "SELECT 1"));
	ck_assert_int_eq(count_servers(), 1);

	long t0 = harness_now_ms();
	ck_assert(PQsendQuery(waiter, "SELECT 'served'"));
	/* Before the timeout the waiter waits, and no extra server is opened. */
	struct pollfd pfd = { .fd = PQsocket(waiter), .events = POLLIN };
	ck_assert_int_eq(poll(&pfd, 1, 250), 0);
	ck_assert_int_eq(count_servers(), 1);

	int rc_poll = poll(&pfd, 1, 1500);
	long waited = harness_now_ms() - t0;
	if (rc->reserve) {
		ck_assert_msg(rc_poll == 1, "the waiter was not served from the reserve in %ld ms",
			waited);
		ck_assert_msg(waited >= 350, "served after %ld ms, before reserve_pool_timeout",
			waited);
		ck_assert_int_eq(count_servers(), 2);
		ck_assert(harness_sluice_log_wait(s, "taking connection from reserve_pool", 2000));
	} else {
		ck_assert_msg(rc_poll == 0, "served after %ld ms without a reserve", waited);
		ck_assert_int_eq(count_servers(), 1);
		free(harness_query_text(holder, "COMMIT"));
	}
	PGresult *res = PQgetResult(waiter);
	ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	ck_assert_str_eq(PQgetvalue(res, 0, 0), "served");
	PQclear(res);
	ck_assert_ptr_null(PQgetResult(waiter));
	if (rc->reserve)
		free(harness_query_text(holder, "COMMIT"));

	PQfinish(holder);
	PQfinish(waiter);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

static Suite *pool_size_suite(void)
{
	Suite *s = suite_create("pool_size");
	TCase *tc = harness_tcase("caps");
	tcase_add_loop_test(tc, test_pool_limit_caps_server_connections_of_a_crowd, 0,
		(int)ARRAY_SIZE(cap_cases));
	tcase_add_test(tc, test_forced_user_database_has_one_pool);
	tcase_add_test(tc, test_console_default_pool_size_applies_to_existing_pools);
	tcase_add_test(tc, test_waiting_clients_are_served_in_arrival_order);
	tcase_add_test(tc, test_max_db_connections_serves_the_longest_waiting_pool_first);
	suite_add_tcase(s, tc);

	tc = harness_tcase("warm_and_reserve");
	tcase_add_test(tc, test_min_pool_size_keeps_servers_warm_while_clients_are_connected);
	tcase_add_test(tc, test_min_pool_size_warms_a_forced_user_database_without_clients);
	tcase_add_loop_test(tc, test_reserve_pool_opens_extra_server_after_timeout, 0,
		(int)ARRAY_SIZE(reserve_cases));
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return harness_run_suite(pool_size_suite());
}
