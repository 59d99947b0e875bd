/*
 * check_workers.c - workers = 2 seen from outside: the limits hold for the
 * process at every instant, no client waits while another worker has an
 * idle server, waiters are served in arrival order across workers, a cancel
 * reaches a client of the other worker, and the console and /metrics speak
 * for the whole process (sums, PAUSE, KILL, SET on every worker).
 *
 * A connection goes to whichever worker the kernel wakes first, so each test
 * uses enough clients that both workers have some, and checks that they do
 * (SHOW WORKERS) before it draws a conclusion that needs two.
 *
 * Every other integration suite also runs with workers = 2 (<suite>_w2).
 */
#include "harness.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USERLIST                                                                                   \
	"\"trustuser\" \"trustuserpw\"\n"                                                         \
	"\"md5user\" \"md5userpw\"\n"
#define BASE "auth_type = trust\nworkers = 2\nadmin_users = trustuser\n"
#define CONSOLE "dbname=pgbouncer user=trustuser"
#define MAX_CLIENTS 64

/* Server connections of user on PostgreSQL now (sluice's, not the test's own). */
static long backends(const char *user)
{
	return harness_pg_exec_long("SELECT count(*) FROM pg_stat_activity WHERE usename = '%s' "
				    "AND backend_type = 'client backend'",
				    user);
}

/*
 * ... of them, those in use (not idle). Where a shared limit makes sluice
 * evict an idle server for another pool, PostgreSQL lists the evicted
 * backend for the moment it takes to exit after sluice closed it: the
 * backends in use are what the limit bounds as PostgreSQL sees it.
 */
static long busy_backends(const char *where)
{
	return harness_pg_exec_long("SELECT count(*) FROM pg_stat_activity WHERE %s AND "
				    "backend_type = 'client backend' AND state <> 'idle'",
				    where);
}

/* SHOW WORKERS' column col summed over the rows, and the smallest value of it in *min. */
static long workers_sum(PGconn *console, const char *col, long *min)
{
	PGresult *res = PQexec(console, "SHOW WORKERS");
	ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	ck_assert_int_eq(PQntuples(res), 2);
	int f = PQfnumber(res, col);
	ck_assert_int_ge(f, 0);
	long sum = 0, lo = -1;
	for (int i = 0; i < PQntuples(res); i++) {
		long v = atol(PQgetvalue(res, i, f));
		sum += v;
		if (lo < 0 || v < lo)
			lo = v;
	}
	PQclear(res);
	if (min)
		*min = lo;
	return sum;
}

/*
 * Connects n clients with conninfo and checks, on console, that both
 * workers got some (sluice hands connections to the worker with fewer).
 */
static int connect_on_both_workers(const struct harness_sluice *s, PGconn *console,
				   PGconn **conns, int n, const char *conninfo)
{
	for (int i = 0; i < n; i++)
		conns[i] = harness_connect(s, conninfo);
	long min_clients;
	workers_sum(console, "clients", &min_clients);
	ck_assert_msg(min_clients > 0, "every client went to one worker");
	return n;
}

static void finish_clients(PGconn **conns, int n)
{
	for (int i = 0; i < n; i++)
		PQfinish(conns[i]);
}

/*
 * Keeps every connection running sql, one query after another, for
 * duration_ms, sampling user's server connections on PostgreSQL all the
 * while; returns the most seen at once, and the queries answered in *done.
 * Fails on any error.
 */
static long crowd(PGconn **conns, int n, const char *sql, long duration_ms, const char *user,
		  const char *busy_where, long *done)
{
	long t0 = harness_now_ms(), max_seen = 0;
	*done = 0;
	for (int i = 0; i < n; i++)
		ck_assert_msg(PQsendQuery(conns[i], sql), "%s", PQerrorMessage(conns[i]));
	int busy = n;
	while (busy > 0) {
		long c = busy_where ? busy_backends(busy_where) : backends(user);
		if (c > max_seen)
			max_seen = c;
		bool more = harness_now_ms() - t0 < duration_ms;
		struct pollfd pfd[MAX_CLIENTS];
		for (int i = 0; i < n; i++)
			pfd[i] = (struct pollfd){ .fd = PQsocket(conns[i]), .events = POLLIN };
		ck_assert_int_ge(poll(pfd, (nfds_t)n, 2), 0);
		for (int i = 0; i < n; i++) {
			if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			ck_assert_msg(PQconsumeInput(conns[i]), "%s", PQerrorMessage(conns[i]));
			if (PQisBusy(conns[i]))
				continue;
			PGresult *res;
			bool finished = false;
			while (!PQisBusy(conns[i]) && (res = PQgetResult(conns[i])) != NULL) {
				ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "client %d: %s", i,
					      PQresultErrorMessage(res));
				PQclear(res);
			}
			finished = !PQisBusy(conns[i]);
			if (!finished)
				continue;
			(*done)++;
			if (more)
				ck_assert_msg(PQsendQuery(conns[i], sql), "%s",
					      PQerrorMessage(conns[i]));
			else
				busy--;
		}
		ck_assert_msg(harness_now_ms() - t0 < duration_ms + 20000, "the crowd never finished");
	}
	return max_seen;
}

/*
 * 40 clients spread over two workers, a pool of 3, for two seconds: never
 * more than 3 servers on PostgreSQL at a sample, 3 at some, and servers
 * moved between the workers to serve both (no worker kept its clients
 * waiting while the other had one idle).
 */
START_TEST(test_pool_size_holds_for_the_process_at_every_instant)
{
	struct harness_sluice *s = harness_sluice_start(
		BASE "pool_mode = transaction\ndefault_pool_size = 3\n", NULL, USERLIST);
	PGconn *console = harness_connect(s, CONSOLE);
	PGconn *conns[MAX_CLIENTS];
	int n = connect_on_both_workers(s, console, conns, 40,
					"dbname=app user=md5user password=md5userpw");
	long done;
	long max_seen = crowd(conns, n, "SELECT pg_sleep(0.002)", 2000, "md5user", NULL, &done);
	ck_assert_msg(max_seen <= 3, "%ld servers at once with a pool of 3", max_seen);
	ck_assert_msg(max_seen == 3, "the crowd only ever had %ld of 3 servers", max_seen);
	ck_assert_msg(done > 200, "only %ld queries in 2 s", done);
	ck_assert_int_le(backends("md5user"), 3);
	ck_assert_int_gt(workers_sum(console, "servers_moved_in", NULL), 0);
	/* The console's sums: every query counted once, whatever worker ran it. */
	ck_assert_int_eq(harness_show_long(console, "SHOW POOLS", "user", "md5user", "sv_active") +
				 harness_show_long(console, "SHOW POOLS", "user", "md5user",
						   "sv_idle"),
			 3);
	ck_assert_int_eq(harness_show_long(console, "SHOW STATS", "database", "app",
					   "total_query_count"),
			 done);
	finish_clients(conns, n);
	PQfinish(console);
	harness_sluice_stop_ok(s);
}
END_TEST

/*
 * max_user_connections over two databases and max_db_connections over two
 * users, each pool on both workers: the shared limit holds at every sample.
 */
START_TEST(test_shared_limits_hold_for_the_process)
{
	static const struct {
		const char *extra;
		const char *conninfo[2];
		const char *where; /* the backends the limit bounds */
		long cap;
	} cases[] = {
		{ BASE "pool_mode = transaction\ndefault_pool_size = 4\nmax_user_connections = 3\n",
		  { "dbname=app user=md5user password=md5userpw",
		    "dbname=postgres user=md5user password=md5userpw" },
		  "usename = 'md5user'",
		  3 },
		{ BASE "pool_mode = transaction\ndefault_pool_size = 4\nmax_db_connections = 2\n",
		  { "dbname=app user=md5user password=md5userpw", "dbname=app user=trustuser" },
		  "datname = 'app' AND usename IN ('md5user', 'trustuser')",
		  2 },
	};
	struct harness_sluice *s = harness_sluice_start(cases[_i].extra, NULL, USERLIST);
	PGconn *console = harness_connect(s, CONSOLE);
	PGconn *conns[MAX_CLIENTS];
	for (int i = 0; i < 30; i++)
		conns[i] = harness_connect(s, cases[_i].conninfo[i % 2]);
	long done;
	long max_seen =
		crowd(conns, 30, "SELECT pg_sleep(0.01)", 1500, NULL, cases[_i].where, &done);
	/* sluice's own count, every worker's servers: never above the limit either. */
	PGresult *res = PQexec(console, "SHOW SERVERS");
	ck_assert_int_le(PQntuples(res), cases[_i].cap);
	PQclear(res);
	PQfinish(console);
	ck_assert_msg(max_seen <= cases[_i].cap, "case %d: %ld servers, limit %ld", _i, max_seen,
		      cases[_i].cap);
	ck_assert_msg(max_seen == cases[_i].cap, "case %d: only %ld of %ld servers ever used", _i,
		      max_seen, cases[_i].cap);
	finish_clients(conns, 30);
	harness_sluice_stop_ok(s);
}
END_TEST

/*
 * A pool of one, held in a transaction; clients on both workers then ask,
 * one every 40 ms: PostgreSQL runs their queries in the order they asked
 * (clock_timestamp() grows with the order), whichever worker each is on.
 */
START_TEST(test_waiters_are_served_in_arrival_order_across_workers)
{
	struct harness_sluice *s = harness_sluice_start(
		BASE "pool_mode = transaction\ndefault_pool_size = 1\n", NULL, USERLIST);
	PGconn *console = harness_connect(s, CONSOLE);
	PGconn *holder = harness_connect(s, "dbname=app user=trustuser");
	harness_command_ok(holder, "BEGIN", "BEGIN");
	harness_expect_answer(holder, "SELECT 1", "1");
	enum { N = 12 };
	PGconn *conns[N];
	connect_on_both_workers(s, console, conns, N, "dbname=app user=trustuser");
	for (int i = 0; i < N; i++) {
		ck_assert(PQsendQuery(conns[i], "SELECT (extract(epoch FROM clock_timestamp()) * "
						"1000000)::bigint"));
		harness_sleep_ms(40);
	}
	harness_command_ok(holder, "COMMIT", "COMMIT");
	long last = 0;
	for (int i = 0; i < N; i++) {
		PGresult *res = PQgetResult(conns[i]);
		ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
		long at = atol(PQgetvalue(res, 0, 0));
		ck_assert_msg(at > last, "client %d was served before an earlier one", i);
		last = at;
		PQclear(res);
		ck_assert_ptr_null(PQgetResult(conns[i]));
	}
	ck_assert_int_le(backends("trustuser"), 1);
	finish_clients(conns, N);
	PQfinish(holder);
	PQfinish(console);
	harness_sluice_stop_ok(s);
}
END_TEST

/*
 * Each cancel comes on a connection of its own, which the kernel may give to
 * either worker: sixteen of them, so that some reach the worker that does
 * not have the client. Every query is canceled, promptly.
 */
START_TEST(test_cancel_reaches_a_client_on_the_other_worker)
{
	struct harness_sluice *s =
		harness_sluice_start(BASE "pool_mode = transaction\ndefault_pool_size = 20\n", NULL,
				     USERLIST);
	PGconn *console = harness_connect(s, CONSOLE);
	enum { N = 16 };
	PGconn *conns[N];
	connect_on_both_workers(s, console, conns, N, "dbname=app user=trustuser");
	for (int i = 0; i < N; i++)
		ck_assert(PQsendQuery(conns[i], "SELECT pg_sleep(20)"));
	ck_assert_int_eq(harness_wait_backends("trustuser", N, 5000), N);
	harness_sleep_ms(100);
	long t0 = harness_now_ms();
	for (int i = 0; i < N; i++) {
		PGcancel *cancel = PQgetCancel(conns[i]);
		char err[256];
		ck_assert_msg(PQcancel(cancel, err, sizeof(err)), "%s", err);
		PQfreeCancel(cancel);
	}
	for (int i = 0; i < N; i++) {
		PGresult *res = PQgetResult(conns[i]);
		ck_assert_int_eq(PQresultStatus(res), PGRES_FATAL_ERROR);
		ck_assert_str_eq(PQresultErrorField(res, PG_DIAG_SQLSTATE), "57014");
		PQclear(res);
		while ((res = PQgetResult(conns[i])) != NULL)
			PQclear(res);
	}
	long took = harness_now_ms() - t0;
	ck_assert_msg(took < 3000, "the cancels took %ld ms", took);
	ck_assert_int_eq(harness_sluice_log_count(s, "forwarding cancel request"), N);
	finish_clients(conns, N);
	PQfinish(console);
	harness_sluice_stop_ok(s);
}
END_TEST

/*
 * The console acts on every worker: PAUSE holds every client's next query
 * and returns once no server is in use, RESUME lets them run, SET changes
 * the pool size for both, KILL closes the clients of both; SHOW CLIENTS and
 * /metrics count the clients of both.
 */
START_TEST(test_console_commands_act_on_every_worker)
{
	int metrics_port = harness_free_port();
	char extra[256];
	snprintf(extra, sizeof(extra),
		 BASE "pool_mode = transaction\ndefault_pool_size = 5\nmetrics_port = %d\n",
		 metrics_port);
	struct harness_sluice *s = harness_sluice_start(extra, NULL, USERLIST);
	PGconn *console = harness_connect(s, CONSOLE);
	enum { N = 20 };
	PGconn *conns[N];
	connect_on_both_workers(s, console, conns, N, "dbname=app user=trustuser");
	ck_assert_int_eq(workers_sum(console, "clients", NULL), N + 1);
	PGresult *res = PQexec(console, "SHOW CLIENTS");
	ck_assert_int_eq(PQntuples(res), N + 1);
	PQclear(res);
	char *metrics = harness_http_get(metrics_port, "/metrics");
	char want[64];
	snprintf(want, sizeof(want), "\nsluice_client_connections %d\n", N + 1);
	ck_assert_msg(strstr(metrics, want), "%s", metrics);
	free(metrics);

	harness_command_ok(console, "PAUSE app", "PAUSE");
	for (int i = 0; i < N; i++)
		ck_assert(PQsendQuery(conns[i], "SELECT 1"));
	harness_sleep_ms(300);
	for (int i = 0; i < N; i++) {
		ck_assert(PQconsumeInput(conns[i]));
		ck_assert_msg(PQisBusy(conns[i]), "client %d ran a query while paused", i);
	}
	harness_command_ok(console, "RESUME app", "RESUME");
	for (int i = 0; i < N; i++) {
		res = PQgetResult(conns[i]);
		ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
		PQclear(res);
		ck_assert_ptr_null(PQgetResult(conns[i]));
	}

	harness_command_ok(console, "SET default_pool_size = 2", "SET");
	long done;
	long max_seen = crowd(conns, N, "SELECT pg_sleep(0.002)", 1000, "trustuser", NULL, &done);
	/* Servers opened before the SET may linger; none beyond the new size is opened. */
	ck_assert_msg(max_seen <= 5, "%ld servers with a pool of 5 then 2", max_seen);
	harness_command_ok(console, "RECONNECT app", "RECONNECT");
	harness_sleep_ms(200);
	max_seen = crowd(conns, N, "SELECT pg_sleep(0.002)", 1000, "trustuser", NULL, &done);
	ck_assert_msg(max_seen <= 2, "%ld servers after SET default_pool_size = 2", max_seen);

	harness_command_ok(console, "KILL app", "KILL");
	for (int i = 0; i < N; i++) {
		res = PQexec(conns[i], "SELECT 1");
		ck_assert_int_ne(PQresultStatus(res), PGRES_TUPLES_OK);
		PQclear(res);
	}
	ck_assert_int_eq(workers_sum(console, "clients", NULL), 1);
	finish_clients(conns, N);
	PQfinish(console);
	harness_sluice_stop_ok(s);
}
END_TEST

/*
 * A pool of one for clients of both workers: the one server moves to the
 * worker whose client asks, with its session (the same backend answers
 * every client) and its prepared statements (a prepared statement made by
 * a client of one worker runs for a client of the other without a new
 * Parse on the server).
 */
START_TEST(test_the_one_server_moves_with_its_session_and_statements)
{
	struct harness_sluice *s = harness_sluice_start(
		BASE "pool_mode = transaction\ndefault_pool_size = 1\nmax_prepared_statements = "
		     "10\n",
		NULL, USERLIST);
	PGconn *console = harness_connect(s, CONSOLE);
	enum { N = 10 };
	PGconn *conns[N];
	connect_on_both_workers(s, console, conns, N, "dbname=app user=trustuser");
	long pid = -1;
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < N; i++) {
			char *v = harness_query_text(conns[i], "SELECT pg_backend_pid()");
			if (pid < 0)
				pid = atol(v);
			ck_assert_int_eq(atol(v), pid);
			free(v);
		}
	}
	ck_assert_int_gt(workers_sum(console, "servers_moved_in", NULL), 0);
	for (int i = 0; i < N; i++) {
		PGresult *res = PQprepare(conns[i], "q", "SELECT $1::int * 2", 1, NULL);
		ck_assert_int_eq(PQresultStatus(res), PGRES_COMMAND_OK);
		PQclear(res);
		const char *v[1] = { "21" };
		res = PQexecPrepared(conns[i], "q", 1, v, NULL, NULL, 0);
		ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
		ck_assert_str_eq(PQgetvalue(res, 0, 0), "42");
		PQclear(res);
	}
	/* One Parse reached PostgreSQL: the statement travelled with the server. */
	ck_assert_int_eq(harness_show_long(console, "SHOW STATS", "database", "app",
					   "total_server_parse_count"),
			 1);
	ck_assert_int_eq(backends("trustuser"), 1);
	finish_clients(conns, N);
	PQfinish(console);
	harness_sluice_stop_ok(s);
}
END_TEST

/*
 * io_uring = on with two workers: clients of both are served, and each
 * worker's socket I/O still goes through its ring afterwards (SHOW WORKERS):
 * a ring the kernel refused to take a submission from (one made on another
 * thread with IORING_SETUP_SINGLE_ISSUER, say) would be given up, and say
 * off. Not under valgrind, whose memcheck cannot see the kernel fill a
 * buffer through the ring (the harness leaves io_uring off there too).
 */
START_TEST(test_io_uring_serves_the_clients_of_both_workers_and_stays_on)
{
	const char *wrapper = getenv("SLUICE_WRAPPER");
	if (wrapper && strstr(wrapper, "valgrind"))
		return;
	struct harness_sluice *s = harness_sluice_start(
		BASE "pool_mode = transaction\ndefault_pool_size = 4\nio_uring = on\n", NULL, USERLIST);
	PGconn *console = harness_connect(s, CONSOLE);
	enum { N = 24 };
	PGconn *conns[N];
	connect_on_both_workers(s, console, conns, N, "dbname=app user=trustuser");
	long done;
	long max_seen = crowd(conns, N, "SELECT count(*) FROM items", 1500, "trustuser", NULL, &done);
	ck_assert_msg(max_seen <= 4, "%ld servers with a pool of 4", max_seen);
	ck_assert_msg(done >= 2 * N, "only %ld queries answered", done);
	PGresult *res = PQexec(console, "SHOW WORKERS");
	ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	int f = PQfnumber(res, "io_uring");
	ck_assert_int_ge(f, 0);
	for (int i = 0; i < PQntuples(res); i++)
		ck_assert_msg(strcmp(PQgetvalue(res, i, f), "on") == 0, "worker %d: io_uring %s", i,
			      PQgetvalue(res, i, f));
	PQclear(res);
	finish_clients(conns, N);
	PQfinish(console);
	harness_sluice_stop_ok(s);
}
END_TEST

static Suite *workers_suite(void)
{
	Suite *s = suite_create("workers");
	TCase *tc = harness_tcase("limits");
	tcase_add_test(tc, test_pool_size_holds_for_the_process_at_every_instant);
	tcase_add_loop_test(tc, test_shared_limits_hold_for_the_process, 0, 2);
	suite_add_tcase(s, tc);
	tc = harness_tcase("serving");
	tcase_add_test(tc, test_waiters_are_served_in_arrival_order_across_workers);
	tcase_add_test(tc, test_the_one_server_moves_with_its_session_and_statements);
	tcase_add_test(tc, test_cancel_reaches_a_client_on_the_other_worker);
	suite_add_tcase(s, tc);
	tc = harness_tcase("console");
	tcase_add_test(tc, test_console_commands_act_on_every_worker);
	suite_add_tcase(s, tc);
	tc = harness_tcase("io_uring");
	tcase_add_test(tc, test_io_uring_serves_the_clients_of_both_workers_and_stays_on);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return harness_run_suite(workers_suite());
}
