/*
 * check_replication.c - proves replication connections through sluice:
 * clients whose startup packet says replication=database (logical) or
 * replication=true (physical) get a walsender of their own, opened with
 * their startup parameters, never shared with ordinary clients and closed
 * when they leave; the CopyBoth stream is relayed both ways; the servers
 * count towards the pool's limits; a failed replication login reaches that
 * client with PostgreSQL's reason.
 *
 * The real tools run through sluice (pg_receivewal, pg_basebackup,
 * pg_recvlogical from the harness's PostgreSQL), and libpq replication
 * connections drive the walsender protocol by hand where a test must look at
 * single messages. What the server side holds is read where it cannot lie:
 * pg_stat_activity's backend_type ('walsender' or 'client backend') and
 * pg_replication_slots. The harness allows physical replication to the
 * superuser only and runs PostgreSQL with wal_level = logical.
 */
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <poll.h>

/* The pools of this file: app (small, for the limits) and the name physical tools use. */
#define DATABASES                                                                                  \
	"app = host=@PGHOST@ port=@PGPORT@ dbname=app pool_size=2\n"                               \
	"one = host=@PGHOST@ port=@PGPORT@ dbname=app pool_size=1\n"                               \
	"replication = host=@PGHOST@ port=@PGPORT@ dbname=replication\n"

#define SLUICE_INI "auth_type = trust\nadmin_users = postgres\npool_mode = transaction\n"

#define LOGICAL "user=postgres dbname=app replication=database"
#define PHYSICAL "user=postgres dbname=replication replication=true"
#define CONSOLE "user=postgres dbname=pgbouncer"

/* What kind of backend the session of conn has on PostgreSQL. */
#define BACKEND_TYPE_SQL "SELECT backend_type FROM pg_stat_activity WHERE pid = pg_backend_pid()"

static struct harness_sluice *start_sluice(const char *extra)
{
	char *ini = xasprintf(SLUICE_INI "%s", extra ? extra : "");
	struct harness_sluice *s = harness_sluice_start(ini, DATABASES, NULL);
	free(ini);
	return s;
}

static long count_walsenders(void)
{
	return harness_pg_exec_long(
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'");
}

/* Polls until count_walsenders() == want or timeout_ms passes; returns the last count. */
static long wait_walsenders(long want, long timeout_ms)
{
	long deadline = harness_now_ms() + timeout_ms, n;
	while ((n = count_walsenders()) != want && harness_now_ms() < deadline)
		harness_sleep_ms(20);
	return n;
}

/* An earlier test's sluice has gone; its walsenders may take a moment to leave. */
static void expect_no_walsenders(void)
{
	long n = wait_walsenders(0, 5000);
	ck_assert_msg(n == 0, "%ld walsenders left over from an earlier test", n);
}

/* A number from the console's SHOW POOLS row of database db. */
static long pools_long(PGconn *console, const char *db, const char *col)
{
	return harness_show_long(console, "SHOW POOLS", "database", db, col);
}

/* Column col of the console's row of kind sql whose replication column is want. */
static char *show_repl_row(PGconn *console, const char *sql, const char *want, const char *col)
{
	return harness_show_value(console, sql, "replication", want, col);
}

/* Polls until needle occurs want times in the log or timeout_ms pass; returns the last count. */
static int wait_log_count(const struct harness_sluice *s, const char *needle, int want,
	long timeout_ms)
{
	long deadline = harness_now_ms() + timeout_ms;
	int n;
	while ((n = harness_sluice_log_count(s, needle)) < want && harness_now_ms() < deadline)
		harness_sleep_ms(20);
	return n;
}

/* The bin directory's program name (heap). */
static char *pg_program(const char *name)
{
	return xasprintf("%s/%s", harness_pg()->bindir, name);
}

static char *conninfo_of(const struct harness_sluice *s, const char *rest)
{
	return xasprintf("host=127.0.0.1 port=%d %s", s->port, rest);
}

/* ---- sessions ------------------------------------------------------------------ */

START_TEST(test_logical_session_has_its_own_walsender_with_its_startup_parameters)
{
	expect_no_walsenders();
	struct harness_sluice *s = start_sluice(NULL);
	/* options go to PostgreSQL as they are: enable_seqscan is not a tracked parameter. */
	PGconn *repl = harness_connect(
		s, LOGICAL " application_name=abc options='-c enable_seqscan=off'");
	harness_expect_answer(repl, "SHOW application_name", "abc");
	harness_expect_answer(repl, "SHOW enable_seqscan", "off");
	harness_expect_answer(repl, BACKEND_TYPE_SQL, "walsender");
	ck_assert_str_eq(PQparameterStatus(repl, "application_name"), "abc");
	PGresult *res = PQexec(repl, "IDENTIFY_SYSTEM");
	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "IDENTIFY_SYSTEM: %s",
		PQerrorMessage(repl));
	ck_assert_str_eq(PQgetvalue(res, 0, PQfnumber(res, "dbname")), "app");
	PQclear(res);

	/* Ordinary clients of the same pool (transaction mode) never get the walsender. */
	PGconn *a = harness_connect(s, "user=postgres dbname=app");
	PGconn *b = harness_connect(s, "user=postgres dbname=app");
	harness_expect_answer(a, BACKEND_TYPE_SQL, "client backend");
	harness_expect_answer(b, BACKEND_TYPE_SQL, "client backend");
	harness_expect_answer(repl, BACKEND_TYPE_SQL, "walsender");
	ck_assert_int_eq(count_walsenders(), 1);

	PGconn *console = harness_connect(s, CONSOLE);
	char *v = show_repl_row(console, "SHOW CLIENTS", "logical", "state");
	ck_assert_str_eq(v, "active");
	free(v);
	v = show_repl_row(console, "SHOW SERVERS", "logical", "state");
	ck_assert_str_eq(v, "active");
	free(v);
	v = show_repl_row(console, "SHOW SERVERS", "logical", "application_name");
	ck_assert_str_eq(v, "abc");
	free(v);
	/* The ordinary servers went back to the pool idle; the walsender stays active. */
	ck_assert_int_eq(pools_long(console, "app", "sv_active"), 1);
	ck_assert_int_eq(pools_long(console, "app", "cl_active"), 3);

	PQfinish(a);
	PQfinish(b);
	PQfinish(repl);
	PQfinish(console);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_physical_session_gets_postgresqls_answers)
{
	expect_no_walsenders();
	struct harness_sluice *s = start_sluice(NULL);
	PGconn *repl = harness_connect(s, PHYSICAL " application_name=abc");
	char *e = harness_query_error(repl, "SELECT 1");
	ck_assert_msg(strstr(e, "0A000 cannot execute SQL commands in WAL sender for physical "
				"replication") == e,
		"%s", e);
	free(e);
	/* SHOW works on a physical walsender, and so does IDENTIFY_SYSTEM. */
	harness_expect_answer(repl, "SHOW application_name", "abc");
	PGresult *res = PQexec(repl, "IDENTIFY_SYSTEM");
	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "IDENTIFY_SYSTEM: %s",
		PQerrorMessage(repl));
	ck_assert(PQgetisnull(res, 0, PQfnumber(res, "dbname")));
	PQclear(res);
	PGconn *console = harness_connect(s, CONSOLE);
	char *v = show_repl_row(console, "SHOW CLIENTS", "physical", "database");
	ck_assert_str_eq(v, "replication");
	free(v);
	PQfinish(console);
	PQfinish(repl);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_leaving_replication_client_closes_its_server)
{
	expect_no_walsenders();
	struct harness_sluice *s = start_sluice(NULL);
	PGconn *repl = harness_connect(s, LOGICAL);
	harness_expect_answer(repl, "SELECT 1", "1");
	ck_assert_int_eq(count_walsenders(), 1);
	PQfinish(repl);
	ck_assert_int_eq(wait_walsenders(0, 5000), 0);
	ck_assert(harness_sluice_log_wait(s, "closing because: replication client disconnected",
		5000));
	PGconn *console = harness_connect(s, CONSOLE);
	ck_assert_int_eq(pools_long(console, "app", "sv_idle"), 0);
	ck_assert_int_eq(pools_long(console, "app", "sv_active"), 0);
	PQfinish(console);
	harness_sluice_stop_ok(s);
}
END_TEST

/* ---- the walsender protocol ------------------------------------------------------ */

static uint64_t get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

/*
 * Reads CopyData from a COPY BOTH stream until one of kind arrives (and, for
 * 'w', its payload contains needle); fails the test after timeout_ms.
 * Returns the walEnd (for 'w') or the server's WAL end (for 'k').
 */
static uint64_t read_stream_until(PGconn *conn, char kind, const char *needle, long timeout_ms)
{
	long deadline = harness_now_ms() + timeout_ms;
	for (;;) {
		char *buf = NULL;
		int n = PQgetCopyData(conn, &buf, 1);
		ck_assert_msg(n >= 0, "stream ended (%d): %s", n, PQerrorMessage(conn));
		if (n == 0) {
			long left = deadline - harness_now_ms();
			ck_assert_msg(left > 0, "no '%c' message in %ld ms", kind, timeout_ms);
			struct pollfd pfd = { .fd = PQsocket(conn), .events = POLLIN };
			poll(&pfd, 1, (int)(left < 100 ? left : 100));
			ck_assert(PQconsumeInput(conn));
			continue;
		}
		uint64_t end = 0;
		bool match = false;
		if (buf[0] == 'w' && n >= 25) {
			end = get_be64((const uint8_t *)buf + 9);
			match = kind == 'w' &&
				memmem(buf + 25, (size_t)n - 25, needle, strlen(needle)) != NULL;
		} else if (buf[0] == 'k' && n >= 18) {
			end = get_be64((const uint8_t *)buf + 1);
			match = kind == 'k';
		}
		PQfreemem(buf);
		if (match)
			return end;
	}
}

/* Standby status update: written = flushed = applied = lsn; asks the server to answer. */
static void send_status(PGconn *conn, uint64_t lsn)
{
	uint8_t msg[34] = { 'r' };
	put_be64(msg + 1, lsn);
	put_be64(msg + 9, lsn);
	put_be64(msg + 17, lsn);
	put_be64(msg + 25, 0);
	msg[33] = 1;
	ck_assert_int_eq(PQputCopyData(conn, (const char *)msg, sizeof(msg)), 1);
	ck_assert_int_eq(PQflush(conn), 0);
}

/*
 * CopyBoth both ways, for longer than every timeout of an idle session or
 * idle server: the stream is one running query to PgBouncer and to sluice,
 * and those timeouts do not apply to it.
 */
START_TEST(test_logical_stream_relays_copy_both_both_ways_past_idle_timeouts)
{
	expect_no_walsenders();
	free(harness_pg_exec("CREATE TABLE IF NOT EXISTS repl_stream (a int)"));
	struct harness_sluice *s = start_sluice("client_idle_timeout = 1\n"
						"idle_transaction_timeout = 1\n"
						"server_idle_timeout = 1\n"
						"server_lifetime = 1\n"
						"query_wait_timeout = 1\n");
	PGconn *repl = harness_connect(s, LOGICAL);
	PGresult *res = PQexec(repl, "CREATE_REPLICATION_SLOT repl_stream TEMPORARY LOGICAL "
				     "test_decoding");
	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQerrorMessage(repl));
	PQclear(res);
	res = PQexec(repl, "START_REPLICATION SLOT repl_stream LOGICAL 0/0");
	ck_assert_msg(PQresultStatus(res) == PGRES_COPY_BOTH, "%s", PQerrorMessage(repl));
	PQclear(res);

	free(harness_pg_exec("INSERT INTO repl_stream VALUES (41)"));
	uint64_t lsn = read_stream_until(repl, 'w', "INSERT: a[integer]:41", 10000);
	/* Client to server: the status update moves the slot, and its reply comes back. */
	send_status(repl, lsn);
	read_stream_until(repl, 'k', NULL, 10000);
	char *want = xasprintf("%X/%X", (unsigned)(lsn >> 32), (unsigned)lsn);
	long deadline = harness_now_ms() + 5000;
	char *got = NULL;
	for (;;) {
		free(got);
		got = harness_pg_exec("SELECT confirmed_flush_lsn >= '%s' "
				      "FROM pg_replication_slots WHERE slot_name = 'repl_stream'",
			want);
		if (strcmp(got, "t") == 0 || harness_now_ms() > deadline)
			break;
		harness_sleep_ms(20);
	}
	ck_assert_msg(strcmp(got, "t") == 0, "confirmed_flush_lsn never reached %s", want);
	free(got);
	free(want);

	/* Past every timeout above, the stream still flows both ways. */
	harness_sleep_ms(2500);
	free(harness_pg_exec("INSERT INTO repl_stream VALUES (42)"));
	lsn = read_stream_until(repl, 'w', "INSERT: a[integer]:42", 10000);
	send_status(repl, lsn);
	read_stream_until(repl, 'k', NULL, 10000);
	ck_assert_int_eq(harness_sluice_log_count(s, "closing because"), 0);

	/* Leaving mid-stream without a Terminate closes the walsender, and its temporary slot. */
	shutdown(PQsocket(repl), SHUT_RDWR);
	PQfinish(repl);
	ck_assert_int_eq(wait_walsenders(0, 5000), 0);
	ck_assert_int_eq(harness_pg_exec_long("SELECT count(*) FROM pg_replication_slots "
					      "WHERE slot_name = 'repl_stream'"),
		0);
	harness_sluice_stop_ok(s);
}
END_TEST

/* ---- the tools ------------------------------------------------------------------- */

START_TEST(test_pg_receivewal_streams_wal_through_sluice)
{
	expect_no_walsenders();
	struct harness_sluice *s = start_sluice(NULL);
	free(harness_pg_exec("CREATE TABLE IF NOT EXISTS repl_wal (a int)"));
	/* The slot keeps the WAL from here, and pg_receivewal starts where it points. */
	free(harness_pg_exec(
		"SELECT 1 FROM pg_create_physical_replication_slot('repl_wal', true)"));
	free(harness_pg_exec("INSERT INTO repl_wal SELECT generate_series(1, 100)"));
	/* pg_receivewal exits with 0 once it has WAL past endpos: the switch writes some. */
	char *endpos = harness_pg_exec("SELECT pg_current_wal_insert_lsn()");
	free(harness_pg_exec("SELECT pg_switch_wal()"));
	char *dir = xasprintf("%s/wal-%d", s->dir, (int)getpid());
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	char *prog = pg_program("pg_receivewal");
	char *dbname = conninfo_of(s, "user=postgres");
	char *endarg = xasprintf("--endpos=%s", endpos);
	char *argv[] = { prog, "--dbname", dbname, "--directory", dir, "--slot", "repl_wal", endarg,
		"--no-loop", "--no-sync", NULL };
	char *out = NULL;
	int rc = harness_run_program(prog, argv, NULL, 30000, &out);
	free(harness_pg_exec("SELECT pg_drop_replication_slot('repl_wal')"));
	ck_assert_msg(rc == 0, "pg_receivewal exited %d:\n%s", rc, out);
	char *ls = xasprintf("ls %s | grep -c .", dir);
	FILE *p = popen(ls, "r");
	int files = 0;
	ck_assert(p && fscanf(p, "%d", &files) == 1);
	pclose(p);
	ck_assert_msg(files > 0, "pg_receivewal wrote nothing:\n%s", out);
	ck_assert_int_eq(wait_walsenders(0, 5000), 0);
	free(ls);
	free(out);
	free(endarg);
	free(dbname);
	free(prog);
	free(dir);
	free(endpos);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_pg_basebackup_copies_the_cluster_through_sluice)
{
	expect_no_walsenders();
	struct harness_sluice *s = start_sluice(NULL);
	char *dir = xasprintf("%s/backup", s->dir);
	char *prog = pg_program("pg_basebackup");
	char *dbname = conninfo_of(s, "user=postgres");
	/* -X stream: a second replication connection streams WAL while the first copies. */
	char *argv[] = { prog, "--dbname", dbname, "--pgdata", dir, "--checkpoint=fast",
		"--wal-method=stream", "--no-sync", NULL };
	char *out = NULL;
	int rc = harness_run_program(prog, argv, NULL, 60000, &out);
	ck_assert_msg(rc == 0, "pg_basebackup exited %d:\n%s", rc, out);
	char *version = xasprintf("%s/PG_VERSION", dir);
	char *text = harness_read_file(version);
	ck_assert_msg(strncmp(text, "15", 2) == 0, "PG_VERSION: %s", text);
	free(text);
	free(version);
	ck_assert_int_eq(wait_walsenders(0, 5000), 0);
	free(out);
	free(dbname);
	free(prog);
	free(dir);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_pg_recvlogical_streams_changes_through_sluice)
{
	expect_no_walsenders();
	struct harness_sluice *s = start_sluice(NULL);
	free(harness_pg_exec("CREATE TABLE IF NOT EXISTS repl_logical (a int)"));
	free(harness_pg_exec("SELECT 1 FROM pg_create_logical_replication_slot('repl_logical', "
			     "'test_decoding')"));
	free(harness_pg_exec("INSERT INTO repl_logical VALUES (7)"));
	/* pg_recvlogical exits with 0 at a change past endpos: the second INSERT. */
	char *endpos = harness_pg_exec("SELECT pg_current_wal_insert_lsn()");
	free(harness_pg_exec("INSERT INTO repl_logical VALUES (8)"));
	free(harness_pg_exec("SELECT pg_switch_wal()"));
	char *prog = pg_program("pg_recvlogical");
	char *port = xasprintf("%d", s->port);
	char *endarg = xasprintf("--endpos=%s", endpos);
	char *argv[] = { prog, "--host", "127.0.0.1", "--port", port, "--username", "postgres",
		"--dbname", "app", "--slot", "repl_logical", "--start", "--file", "-", endarg,
		"--no-loop", NULL };
	char *out = NULL;
	int rc = harness_run_program(prog, argv, NULL, 30000, &out);
	free(harness_pg_exec("SELECT pg_drop_replication_slot('repl_logical')"));
	ck_assert_msg(rc == 0, "pg_recvlogical exited %d:\n%s", rc, out);
	ck_assert_msg(strstr(out, "table public.repl_logical: INSERT: a[integer]:7") != NULL,
		"pg_recvlogical printed:\n%s", out);
	free(out);
	free(endarg);
	free(port);
	free(prog);
	free(endpos);
	harness_sluice_stop_ok(s);
}
END_TEST

/* ---- pool accounting ------------------------------------------------------------- */

/* Whether a connection started with PQconnectStart() completes within timeout_ms. */
static PostgresPollingStatusType connect_poll(PGconn *conn, long timeout_ms)
{
	long deadline = harness_now_ms() + timeout_ms;
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
		long left = deadline - harness_now_ms();
		if (left <= 0)
			return st;
		struct pollfd pfd = { .fd = PQsocket(conn),
			.events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT };
		if (poll(&pfd, 1, (int)left) > 0)
			st = PQconnectPoll(conn);
	}
	return st;
}

/*
 * pool_size = 1: a replication client's server is the pool's one server.
 * A second replication client and an ordinary client wait for it (neither
 * may share it); when the first leaves, the second gets a walsender of its
 * own, and the ordinary client waits on.
 */
START_TEST(test_replication_servers_count_towards_pool_size)
{
	expect_no_walsenders();
	struct harness_sluice *s = start_sluice(NULL);
	/* First, so that the pool has its welcome: later it would wait for room to log in. */
	PGconn *plain = harness_connect(s, "user=postgres dbname=one");
	harness_expect_answer(plain, BACKEND_TYPE_SQL, "client backend");
	PGconn *first = harness_connect(s, "user=postgres dbname=one replication=database");
	char *ci = conninfo_of(s, "user=postgres dbname=one replication=database");
	PGconn *second = PQconnectStart(ci);
	free(ci);
	ck_assert(second && PQstatus(second) != CONNECTION_BAD);
	ck_assert_int_ne(connect_poll(second, 1000), PGRES_POLLING_OK);
	ck_assert_int_eq(PQsendQuery(plain, BACKEND_TYPE_SQL), 1);
	ck_assert(!harness_wait_not_busy(plain, 500));

	PGconn *console = harness_connect(s, CONSOLE);
	ck_assert_int_eq(pools_long(console, "one", "cl_waiting"), 2);
	ck_assert_int_eq(pools_long(console, "one", "sv_active"), 1);
	ck_assert_int_eq(count_walsenders(), 1);

	/* The walsender's server is closed, not pooled: the second gets a new one, first come. */
	PQfinish(first);
	ck_assert_int_eq(connect_poll(second, 5000), PGRES_POLLING_OK);
	harness_expect_answer(second, BACKEND_TYPE_SQL, "walsender");
	ck_assert(!harness_wait_not_busy(plain, 300));
	PQfinish(second);
	ck_assert(harness_wait_not_busy(plain, 5000));
	PGresult *res = PQgetResult(plain);
	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQerrorMessage(plain));
	ck_assert_str_eq(PQgetvalue(res, 0, 0), "client backend");
	PQclear(res);
	while ((res = PQgetResult(plain)) != NULL)
		PQclear(res);
	ck_assert_int_eq(wait_walsenders(0, 5000), 0);
	PQfinish(plain);
	PQfinish(console);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_replication_client_evicts_an_idle_server_of_a_full_pool)
{
	expect_no_walsenders();
	struct harness_sluice *s = start_sluice(NULL);
	/* Transaction mode: the ordinary client's server is idle between its queries. */
	PGconn *plain = harness_connect(s, "user=postgres dbname=one");
	harness_expect_answer(plain, BACKEND_TYPE_SQL, "client backend");
	PGconn *repl = harness_connect(s, "user=postgres dbname=one replication=database");
	harness_expect_answer(repl, BACKEND_TYPE_SQL, "walsender");
	ck_assert_int_eq(harness_sluice_log_count(s, "closing because: evicted for a replication "
						     "connection"),
		1);
	PQfinish(repl);
	/* The pool has room again once the walsender is gone. */
	harness_expect_answer(plain, BACKEND_TYPE_SQL, "client backend");
	PQfinish(plain);
	harness_sluice_stop_ok(s);
}
END_TEST

/* ---- refusals ---------------------------------------------------------------------- */

START_TEST(test_unprivileged_replication_login_gets_postgresqls_reason)
{
	expect_no_walsenders();
	struct harness_sluice *s = start_sluice(NULL);
	char *e = harness_connect_error(s, "user=trustuser dbname=app replication=database");
	ck_assert_msg(strstr(e, "login failed: must be superuser or replication role to start "
				"walsender") != NULL,
		"%s", e);
	free(e);
	/*
	 * PgBouncer's two lines, the server's and the client's, are both in the
	 * log by the time the client has its error: PgBouncer's test counts them
	 * then.
	 */
	ck_assert_int_eq(harness_sluice_log_count(s, "closing because: login failed (age"), 2);
	ck_assert_int_eq(harness_sluice_log_count(s, "server login failed: FATAL must be superuser "
						     "or replication role to start walsender"),
		1);

	/* Physical: no pg_hba.conf line for trustuser's replication connections. */
	e = harness_connect_error(s, "user=trustuser dbname=replication replication=true");
	ck_assert_msg(strstr(e, "login failed: no pg_hba.conf entry for replication connection") !=
			NULL,
		"%s", e);
	free(e);

	/* An ordinary login of the same pool works at once: no backoff, no shared failure. */
	PGconn *c = harness_connect(s, "user=trustuser dbname=app");
	harness_expect_answer(c, "SELECT 1", "1");
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

/* A replication server that cannot even connect fails its client alone, and sluice goes on. */
START_TEST(test_replication_server_that_cannot_connect_fails_its_client)
{
	char *dbs = xasprintf(DATABASES "down = host=127.0.0.1 port=%d dbname=app\n",
		harness_free_port());
	struct harness_sluice *s = harness_sluice_start(SLUICE_INI, dbs, NULL);
	free(dbs);
	char *e = harness_connect_error(s, "user=postgres dbname=down replication=database");
	ck_assert_msg(strstr(e, "login failed: could not connect to 127.0.0.1:") != NULL, "%s", e);
	free(e);
	ck_assert_int_eq(wait_log_count(s, "closing because: login failed (age", 1, 2000), 1);
	PGconn *c = harness_connect(s, LOGICAL);
	harness_expect_answer(c, BACKEND_TYPE_SQL, "walsender");
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_replication_value_postgresql_refuses_is_refused)
{
	struct harness_sluice *s = start_sluice(NULL);
	char *e = harness_connect_error(s, "user=postgres dbname=app replication=maybe");
	ck_assert_msg(strstr(e, "invalid value for parameter \"replication\": \"maybe\"") != NULL,
		"%s", e);
	free(e);
	/* A false value is an ordinary session. */
	PGconn *c = harness_connect(s, "user=postgres dbname=app replication=off");
	harness_expect_answer(c, BACKEND_TYPE_SQL, "client backend");
	PQfinish(c);
	e = harness_connect_error(s, "user=postgres dbname=pgbouncer replication=database");
	ck_assert_msg(strstr(e, "admin console does not take replication connections") != NULL,
		"%s", e);
	free(e);
	harness_sluice_stop_ok(s);
}
END_TEST

static Suite *replication_suite(void)
{
	Suite *s = suite_create("replication");
	TCase *tc = harness_tcase("sessions");
	tcase_add_test(tc, test_logical_session_has_its_own_walsender_with_its_startup_parameters);
	tcase_add_test(tc, test_physical_session_gets_postgresqls_answers);
	tcase_add_test(tc, test_leaving_replication_client_closes_its_server);
	suite_add_tcase(s, tc);
	tc = harness_tcase("stream");
	tcase_add_test(tc, test_logical_stream_relays_copy_both_both_ways_past_idle_timeouts);
	tcase_add_test(tc, test_pg_receivewal_streams_wal_through_sluice);
	tcase_add_test(tc, test_pg_basebackup_copies_the_cluster_through_sluice);
	tcase_add_test(tc, test_pg_recvlogical_streams_changes_through_sluice);
	suite_add_tcase(s, tc);
	tc = harness_tcase("pool");
	tcase_add_test(tc, test_replication_servers_count_towards_pool_size);
	tcase_add_test(tc, test_replication_client_evicts_an_idle_server_of_a_full_pool);
	suite_add_tcase(s, tc);
	tc = harness_tcase("refusals");
	tcase_add_test(tc, test_unprivileged_replication_login_gets_postgresqls_reason);
	tcase_add_test(tc, test_replication_server_that_cannot_connect_fails_its_client);
	tcase_add_test(tc, test_replication_value_postgresql_refuses_is_refused);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return harness_run_suite(replication_suite());
}
