/*
 * check_prepared.c - protocol-level named prepared statements through a
 * transaction (and session) pool, as PgBouncer 1.21+'s max_prepared_statements
 * provides them: each client's statement names are its own (two clients may
 * use one name for different queries), a statement survives the client moving
 * to another server (sluice prepares it there first), servers share one
 * server-side statement per query text, each server keeps at most
 * max_prepared_statements (least recently used closed), and the error paths
 * (bad SQL, unknown names, aborted pipelines, DEALLOCATE, DISCARD ALL,
 * malformed messages) leave every connection usable. The statistics
 * (SHOW STATS parse/bind counters, prepared_statements of SHOW CLIENTS and
 * SHOW SERVERS) are checked against what the tests did.
 *
 * It does not test how sluice stores statements inside (src/prepared.c); it
 * only looks at what libpq, pgbench, raw sockets and PostgreSQL's own
 * pg_prepared_statements see. pgbench is found in $PG_BINDIR or on PATH.
 */
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define USERLIST "\"md5user\" \"md5userpw\"\n"
#define APP "dbname=app user=md5user password=md5userpw"
#define CONSOLE "dbname=pgbouncer user=md5user password=md5userpw"
/* The server-side names of the prepared statements, as one string. */
#define NAMES_SQL "select string_agg(name, ',') from pg_prepared_statements"

/* ---- helpers ------------------------------------------------------------------------------ */

/*
 * Starts sluice with pool_mode mode and one database, app, whose pool holds
 * pool_size servers; md5user may use the console. extra is more [sluice]
 * lines, or NULL.
 */
static struct harness_sluice *start(const char *mode, int pool_size, const char *extra)
{
	char ini[1024], dbs[256];
	snprintf(ini, sizeof(ini),
		"auth_type = md5\nadmin_users = md5user\npool_mode = %s\n"
		"query_wait_timeout = 10\n%s",
		mode, extra ? extra : "");
	snprintf(dbs, sizeof(dbs), "app = host=@PGHOST@ port=@PGPORT@ dbname=app pool_size=%d\n",
		pool_size);
	return harness_sluice_start(ini, dbs, USERLIST);
}

/* PQprepare() of sql (parameter types inferred), which must succeed. */
static void prepare_ok(PGconn *c, const char *name, const char *sql)
{
	PGresult *res = PQprepare(c, name, sql, 0, NULL);
	ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "prepare %s (%.60s): %s", name, sql,
		PQresultErrorMessage(res));
	PQclear(res);
}

/* SQLSTATE of a failed result (heap), failing the test if res did not fail. */
static char *sqlstate_of(PGresult *res, const char *what)
{
	ck_assert_msg(PQresultStatus(res) == PGRES_FATAL_ERROR, "%s did not fail: %s", what,
		PQresStatus(PQresultStatus(res)));
	const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	char *v = xstrdup(st ? st : "(none)");
	PQclear(res);
	return v;
}

/* PQprepare() that must fail; returns the SQLSTATE (heap). */
static char *prepare_error(PGconn *c, const char *name, const char *sql)
{
	return sqlstate_of(PQprepare(c, name, sql, 0, NULL), "prepare");
}

/* Runs statement name with one text parameter (or none when param is NULL). */
static PGresult *exec_prepared(PGconn *c, const char *name, const char *param)
{
	const char *vals[1] = { param };
	return PQexecPrepared(c, name, param ? 1 : 0, param ? vals : NULL, NULL, NULL, 0);
}

/* Executes name(param), which must return want as its first value. */
static void expect_prepared(PGconn *c, const char *name, const char *param, const char *want)
{
	PGresult *res = exec_prepared(c, name, param);
	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "execute %s(%s): %s", name,
		param ? param : "", PQresultErrorMessage(res));
	ck_assert_msg(PQntuples(res) == 1, "execute %s(%s): %d rows", name, param ? param : "",
		PQntuples(res));
	ck_assert_msg(strcmp(PQgetvalue(res, 0, 0), want) == 0, "execute %s(%s) = '%s', want '%s'",
		name, param ? param : "", PQgetvalue(res, 0, 0), want);
	PQclear(res);
}

/* Executes name(param), which must fail; returns the SQLSTATE (heap). */
static char *exec_error(PGconn *c, const char *name, const char *param)
{
	return sqlstate_of(exec_prepared(c, name, param), name);
}

/* Asserts that executing name(param) fails with SQLSTATE want. */
static void expect_exec_error(PGconn *c, const char *name, const char *param, const char *want)
{
	char *st = exec_error(c, name, param);
	ck_assert_msg(strcmp(st, want) == 0, "execute %s: SQLSTATE %s, want %s", name, st, want);
	free(st);
}

/* A SHOW STATS counter of database app. */
static long stat_of(PGconn *console, const char *col)
{
	return harness_show_long(console, "SHOW STATS", "database", "app", col);
}

static long query_long(PGconn *c, const char *sql)
{
	char *v = harness_query_text(c, sql);
	ck_assert_ptr_nonnull(v);
	long n = strtol(v, NULL, 10);
	free(v);
	return n;
}

/* The next result must have status want (and SQLSTATE sqlstate when given); then NULL. */
static void expect_pipeline_result(PGconn *c, ExecStatusType want, const char *sqlstate,
	const char *value)
{
	PGresult *res = PQgetResult(c);
	ck_assert_msg(res != NULL, "no result where %s was expected", PQresStatus(want));
	ck_assert_msg(PQresultStatus(res) == want, "got %s (%s), want %s",
		PQresStatus(PQresultStatus(res)), PQresultErrorMessage(res), PQresStatus(want));
	if (sqlstate) {
		const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		ck_assert_str_eq(st ? st : "", sqlstate);
	}
	if (value)
		ck_assert_str_eq(PQgetvalue(res, 0, 0), value);
	PQclear(res);
	if (want != PGRES_PIPELINE_SYNC)
		ck_assert_ptr_null(PQgetResult(c));
}

static void send_exec(PGconn *c, const char *name, const char *param)
{
	const char *vals[1] = { param };
	ck_assert_int_eq(PQsendQueryPrepared(c, name, 1, vals, NULL, NULL, 0), 1);
}

/* ---- 1. names are per client ------------------------------------------------------------- */

START_TEST(test_two_clients_same_name_different_queries_on_one_server)
{
	struct harness_sluice *s = start("transaction", 1, NULL);
	PGconn *a = harness_connect(s, APP);
	PGconn *b = harness_connect(s, APP);
	prepare_ok(a, "s1", "select $1::int + 1");
	/* Directly on one backend this would be 42P05: both land on the only server. */
	prepare_ok(b, "s1", "select $1::text || 'x'");
	for (int i = 0; i < 25; i++) {
		char p[32], want[48];
		snprintf(p, sizeof(p), "%d", i);
		snprintf(want, sizeof(want), "%d", i + 1);
		expect_prepared(a, "s1", p, want);
		snprintf(p, sizeof(p), "v%d", i);
		snprintf(want, sizeof(want), "v%dx", i);
		expect_prepared(b, "s1", p, want);
	}
	/* The pool never grew past its single server. */
	ck_assert_int_le(harness_count_backends("md5user"), 1);
	PQfinish(a);
	PQfinish(b);
	harness_sluice_stop_ok(s);
}
END_TEST

/* ---- 2. a statement follows its client to another server -------------------------------- */

START_TEST(test_statement_survives_server_switch)
{
	struct harness_sluice *s = start("transaction", 2, NULL);
	PGconn *console = harness_connect(s, CONSOLE);
	PGconn *a = harness_connect(s, APP);
	PGconn *b = harness_connect(s, APP);

	prepare_ok(a, "st", "select $1::int * 3");
	expect_prepared(a, "st", "5", "15");
	long pid_a = query_long(a, "select pg_backend_pid()");
	long parses = stat_of(console, "total_server_parse_count");
	ck_assert_int_eq(parses, 1);

	/* b takes the only server (a's) in an open transaction: a must get a new one. */
	harness_command_ok(b, "BEGIN", "BEGIN");
	long pid_b = query_long(b, "select pg_backend_pid()");
	ck_assert_int_eq(pid_b, pid_a);
	expect_prepared(a, "st", "7", "21");
	ck_assert_int_ne(query_long(a, "select pg_backend_pid()"), pid_a);
	ck_assert_int_eq(stat_of(console, "total_server_parse_count"), parses + 1);
	harness_command_ok(b, "COMMIT", "COMMIT");

	/* Every server closed: the statement is prepared again on a fresh one. */
	harness_command_ok(console, "RECONNECT app", "RECONNECT");
	ck_assert_int_eq(harness_wait_backends("md5user", 0, 5000), 0);
	expect_prepared(a, "st", "9", "27");
	ck_assert_int_eq(stat_of(console, "total_server_parse_count"), parses + 2);
	ck_assert_int_eq(stat_of(console, "total_client_parse_count"), 1);
	ck_assert_int_eq(stat_of(console, "total_bind_count"), 3);

	/* A backend killed under an idle client: the same, after a terminated server. */
	long pid = query_long(a, "select pg_backend_pid()");
	ck_assert_int_eq(harness_pg_exec_long("select pg_terminate_backend(%ld)::int", pid), 1);
	ck_assert_int_eq(harness_wait_backends("md5user", 0, 5000), 0);
	/* sluice notices the closed socket on its own; give it a bounded moment. */
	long deadline = harness_now_ms() + 2000;
	for (;;) {
		char *state =
			harness_show_value(console, "SHOW SERVERS", "database", "app", "state");
		free(state);
		if (!state || harness_now_ms() >= deadline)
			break;
		harness_sleep_ms(20);
	}
	expect_prepared(a, "st", "11", "33");
	ck_assert_int_eq(stat_of(console, "total_server_parse_count"), parses + 3);

	PQfinish(a);
	PQfinish(b);
	PQfinish(console);
	harness_sluice_stop_ok(s);
}
END_TEST

/* ---- 3. one server-side statement per query ----------------------------------------------- */

START_TEST(test_same_query_under_two_names_is_prepared_once_on_the_server)
{
	struct harness_sluice *s = start("transaction", 1, NULL);
	PGconn *console = harness_connect(s, CONSOLE);
	PGconn *a = harness_connect(s, APP);
	PGconn *b = harness_connect(s, APP);
	prepare_ok(a, "a_name", "select $1::int * 2");
	prepare_ok(b, "b_name", "select $1::int * 2");
	expect_prepared(a, "a_name", "4", "8");
	expect_prepared(b, "b_name", "5", "10");
	/* An unnamed statement (PQexecParams) is relayed and not counted. */
	const char *vals[1] = { "6" };
	PGresult *res = PQexecParams(a, "select $1::int * 2", 1, NULL, vals, NULL, NULL, 0);
	ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	ck_assert_str_eq(PQgetvalue(res, 0, 0), "12");
	PQclear(res);
	ck_assert_int_eq(stat_of(console, "total_client_parse_count"), 2);
	ck_assert_int_eq(stat_of(console, "total_server_parse_count"), 1);
	ck_assert_int_eq(stat_of(console, "total_bind_count"), 2);
	ck_assert_int_eq(query_long(a, "select count(*) from pg_prepared_statements"), 1);
	ck_assert_int_eq(harness_show_long(console, "SHOW SERVERS", "database", "app",
				 "prepared_statements"),
		1);
	PQfinish(a);
	PQfinish(b);
	PQfinish(console);
	harness_sluice_stop_ok(s);
}
END_TEST

/*
 * A statement lives while a client names it or a server has it (SHOW MEM
 * counts them): forgetting the names keeps the servers' copies, closing the
 * servers frees the rest.
 */
START_TEST(test_statements_are_freed_when_no_client_or_server_holds_them)
{
	struct harness_sluice *s = start("transaction", 1, NULL);
	PGconn *console = harness_connect(s, CONSOLE);
	PGconn *c = harness_connect(s, APP);
	prepare_ok(c, "m1", "select $1::int + 1");
	prepare_ok(c, "m2", "select $1::int + 2");
	const char *mem = "SHOW MEM", *row = "server_prepared_statement_cache";
	ck_assert_int_eq(harness_show_long(console, mem, "name", row, "used"), 2);
	ck_assert_int_gt(harness_show_long(console, mem, "name", row, "memtotal"), 0);
	PGresult *res = PQexec(c, "DEALLOCATE ALL");
	ck_assert_int_eq(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);
	ck_assert_int_eq(harness_show_long(console, mem, "name", row, "used"), 2);
	harness_command_ok(console, "RECONNECT app", "RECONNECT");
	long deadline = harness_now_ms() + 5000;
	while (harness_show_long(console, mem, "name", row, "used") != 0 &&
	       harness_now_ms() < deadline)
		harness_sleep_ms(20);
	ck_assert_int_eq(harness_show_long(console, mem, "name", row, "used"), 0);
	ck_assert_int_eq(harness_show_long(console, mem, "name", row, "memtotal"), 0);
	PQfinish(c);
	PQfinish(console);
	harness_sluice_stop_ok(s);
}
END_TEST

/* ---- 4. the per-server limit -------------------------------------------------------------- */

START_TEST(test_max_prepared_statements_evicts_least_recently_used)
{
	struct harness_sluice *s = start("transaction", 1, "max_prepared_statements = 2\n");
	PGconn *console = harness_connect(s, CONSOLE);
	PGconn *c = harness_connect(s, APP);
	enum { N = 6, ROUNDS = 5 };
	for (int k = 0; k < N; k++) {
		char name[16], sql[64];
		snprintf(name, sizeof(name), "e%d", k);
		snprintf(sql, sizeof(sql), "select $1::int + %d", k * 1000);
		prepare_ok(c, name, sql);
	}
	for (int r = 0; r < ROUNDS; r++) {
		for (int k = 0; k < N; k++) {
			char name[16], p[16], want[16];
			snprintf(name, sizeof(name), "e%d", k);
			snprintf(p, sizeof(p), "%d", r);
			snprintf(want, sizeof(want), "%d", r + k * 1000);
			expect_prepared(c, name, p, want);
		}
	}
	ck_assert_int_le(harness_show_long(console, "SHOW SERVERS", "database", "app",
				 "prepared_statements"),
		2);
	ck_assert_int_le(query_long(c, "select count(*) from pg_prepared_statements"), 2);
	ck_assert_int_eq(harness_show_long(console, "SHOW CLIENTS", "database", "app",
				 "prepared_statements"),
		N);
	/* Round-robin over 6 with room for 2: every execution had to prepare again. */
	ck_assert_int_ge(stat_of(console, "total_server_parse_count"), N + N * ROUNDS - 2);
	ck_assert_int_eq(stat_of(console, "total_client_parse_count"), N);
	PQfinish(c);
	PQfinish(console);
	harness_sluice_stop_ok(s);
}
END_TEST

/* ---- 5. errors ---------------------------------------------------------------------------- */

START_TEST(test_parse_error_then_same_name_prepares_correctly)
{
	struct harness_sluice *s = start("transaction", 1, NULL);
	PGconn *c = harness_connect(s, APP);
	char *st = prepare_error(c, "bad", "selec 1");
	ck_assert_str_eq(st, "42601");
	free(st);
	/* The failed text was not cached as prepared: the same text fails again. */
	st = prepare_error(c, "bad", "selec 1");
	ck_assert_str_eq(st, "42601");
	free(st);
	/*
	 * The name that never prepared does not exist, as on PostgreSQL (26000);
	 * PgBouncer, which keeps the name from the Parse, would re-send the
	 * Parse and answer 42601 again.
	 */
	st = exec_error(c, "bad", NULL);
	ck_assert_str_eq(st, "26000");
	free(st);
	harness_expect_answer(c, "select 1", "1");
	prepare_ok(c, "bad", "select $1::int - 1");
	expect_prepared(c, "bad", "10", "9");
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_unknown_statement_gives_26000_and_connection_stays_usable)
{
	struct harness_sluice *s = start("transaction", 1, NULL);
	PGconn *c = harness_connect(s, APP);
	expect_exec_error(c, "never_prepared", "1", "26000");
	harness_expect_answer(c, "select 41 + 1", "42");
	/* Describe of an unknown name is PostgreSQL's error too. */
	char *st = sqlstate_of(PQdescribePrepared(c, "never_prepared"), "describe");
	ck_assert_str_eq(st, "26000");
	free(st);
	/* And a prepared statement after the errors works. */
	prepare_ok(c, "ok", "select $1::text");
	expect_prepared(c, "ok", "fine", "fine");
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_parse_of_a_name_in_use_is_refused_as_postgresql_refuses_it)
{
	struct harness_sluice *s = start("transaction", 1, NULL);
	PGconn *c = harness_connect(s, APP);
	prepare_ok(c, "r", "select $1::int + 1");
	expect_prepared(c, "r", "1", "2");
	PGresult *res = PQprepare(c, "r", "select $1::int + 2", 0, NULL);
	ck_assert_int_eq(PQresultStatus(res), PGRES_FATAL_ERROR);
	ck_assert_str_eq(PQresultErrorField(res, PG_DIAG_SQLSTATE), "42P05");
	ck_assert_str_eq(PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY),
		"prepared statement \"r\" already exists");
	PQclear(res);
	ck_assert(harness_sluice_log_wait(s, "prepared statement 'r' was already prepared", 5000));
	/* The name keeps its first statement. */
	expect_prepared(c, "r", "1", "2");
	/* PostgreSQL parses the text before it looks at the name: a syntax error wins. */
	char *st = prepare_error(c, "r", "selec 2");
	ck_assert_str_eq(st, "42601");
	free(st);
	/* In a transaction block the refusal aborts it, as PostgreSQL's does. */
	harness_command_ok(c, "begin", "BEGIN");
	st = prepare_error(c, "r", "select 3");
	ck_assert_str_eq(st, "42P05");
	free(st);
	st = sqlstate_of(PQexec(c, "select 1"), "select in aborted transaction");
	ck_assert_str_eq(st, "25P02");
	free(st);
	harness_command_ok(c, "rollback", "ROLLBACK");
	/* In a pipeline it ends the batch: the Execute after it is skipped. */
	ck_assert_int_eq(PQenterPipelineMode(c), 1);
	ck_assert_int_eq(PQsendPrepare(c, "r", "select $1::int + 3", 0, NULL), 1);
	send_exec(c, "r", "5");
	ck_assert_int_eq(PQpipelineSync(c), 1);
	expect_pipeline_result(c, PGRES_FATAL_ERROR, "42P05", NULL);
	expect_pipeline_result(c, PGRES_PIPELINE_ABORTED, NULL, NULL);
	expect_pipeline_result(c, PGRES_PIPELINE_SYNC, NULL, NULL);
	ck_assert_ptr_null(PQgetResult(c));
	ck_assert_int_eq(PQexitPipelineMode(c), 1);
	/* Once deallocated, the name takes a new statement. */
	harness_command_ok(c, "deallocate r", "DEALLOCATE");
	prepare_ok(c, "r", "select $1::int + 4");
	expect_prepared(c, "r", "1", "5");
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

/* PQdescribePrepared(name) must report 2 parameters (int4, text) and fields a, b. */
static void expect_description(PGconn *c, const char *name)
{
	PGresult *res = PQdescribePrepared(c, name);
	ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "describe %s: %s", name,
		PQresultErrorMessage(res));
	ck_assert_int_eq(PQnparams(res), 2);
	ck_assert_int_eq(PQparamtype(res, 0), 23);
	ck_assert_int_eq(PQparamtype(res, 1), 25);
	ck_assert_int_eq(PQnfields(res), 2);
	ck_assert_str_eq(PQfname(res, 0), "a");
	ck_assert_str_eq(PQfname(res, 1), "b");
	PQclear(res);
}

START_TEST(test_describe_prepared_works_on_a_server_that_lacks_the_statement)
{
	struct harness_sluice *s = start("transaction", 2, NULL);
	PGconn *console = harness_connect(s, CONSOLE);
	PGconn *a = harness_connect(s, APP);
	PGconn *b = harness_connect(s, APP);
	prepare_ok(a, "d1", "select $1::int as a, $2::text as b");
	expect_description(a, "d1");
	long parses = stat_of(console, "total_server_parse_count");
	/* b holds the server that has d1; a's Describe goes to a new one. */
	harness_command_ok(b, "BEGIN", "BEGIN");
	expect_description(a, "d1");
	ck_assert_int_eq(stat_of(console, "total_server_parse_count"), parses + 1);
	ck_assert_int_eq(harness_count_backends("md5user"), 2);
	const char *vals[2] = { "3", "three" };
	PGresult *res = PQexecPrepared(a, "d1", 2, vals, NULL, NULL, 0);
	ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	ck_assert_str_eq(PQgetvalue(res, 0, 0), "3");
	ck_assert_str_eq(PQgetvalue(res, 0, 1), "three");
	PQclear(res);
	harness_command_ok(b, "COMMIT", "COMMIT");
	PQfinish(a);
	PQfinish(b);
	PQfinish(console);
	harness_sluice_stop_ok(s);
}
END_TEST

/* ---- 6. DEALLOCATE and DISCARD ALL -------------------------------------------------------- */

START_TEST(test_deallocate_forgets_only_the_clients_names)
{
	struct harness_sluice *s = start("transaction", 1, NULL);
	PGconn *a = harness_connect(s, APP);
	PGconn *b = harness_connect(s, APP);
	prepare_ok(a, "s1", "select $1::int + 100");
	prepare_ok(a, "s2", "select $1::int + 200");
	prepare_ok(a, "s3", "select $1::int + 300");
	prepare_ok(b, "t1", "select $1::int + 100");
	expect_prepared(a, "s1", "1", "101");

	harness_command_ok(a, "DEALLOCATE s1", "DEALLOCATE");
	expect_exec_error(a, "s1", "1", "26000");
	expect_prepared(a, "s2", "1", "201");
	/* The other spelling, in lower case as many drivers send it. */
	harness_command_ok(a, "deallocate prepare s2", "DEALLOCATE");
	expect_exec_error(a, "s2", "1", "26000");
	expect_prepared(a, "s3", "1", "301");

	harness_command_ok(a, "DEALLOCATE ALL", "DEALLOCATE ALL");
	expect_exec_error(a, "s1", "1", "26000");
	expect_exec_error(a, "s3", "1", "26000");
	/* The server-side statement b uses was not dropped. */
	expect_prepared(b, "t1", "2", "102");
	/* a may use its names again. */
	prepare_ok(a, "s1", "select $1::int + 400");
	expect_prepared(a, "s1", "1", "401");
	PQfinish(a);
	PQfinish(b);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_discard_all_forgets_the_clients_statements_only)
{
	struct harness_sluice *s = start("transaction", 1, NULL);
	PGconn *a = harness_connect(s, APP);
	PGconn *b = harness_connect(s, APP);
	prepare_ok(a, "s1", "select $1::int + 10");
	prepare_ok(b, "t1", "select $1::int + 10");
	prepare_ok(b, "t2", "select $1::int + 20");
	harness_command_ok(a, "DISCARD ALL", "DISCARD ALL");
	expect_exec_error(a, "s1", "1", "26000");
	/* The server lost everything; sluice must prepare b's statements again. */
	expect_prepared(b, "t1", "1", "11");
	expect_prepared(b, "t2", "1", "21");
	prepare_ok(a, "s1", "select $1::int + 20");
	expect_prepared(a, "s1", "2", "22");
	PQfinish(a);
	PQfinish(b);
	harness_sluice_stop_ok(s);
}
END_TEST

/* ---- 7. pipelines ------------------------------------------------------------------------- */

START_TEST(test_pipeline_with_failing_execution_aborts_the_rest)
{
	struct harness_sluice *s = start("transaction", 2, NULL);
	PGconn *c = harness_connect(s, APP);
	PGconn *other = harness_connect(s, APP);
	ck_assert_int_eq(PQenterPipelineMode(c), 1);
	ck_assert_int_eq(PQsendPrepare(c, "p1", "select 60 / $1::int", 0, NULL), 1);
	send_exec(c, "p1", "1");
	send_exec(c, "p1", "2");
	send_exec(c, "p1", "0");
	send_exec(c, "p1", "3");
	send_exec(c, "p1", "4");
	ck_assert_int_eq(PQpipelineSync(c), 1);
	expect_pipeline_result(c, PGRES_COMMAND_OK, NULL, NULL);
	expect_pipeline_result(c, PGRES_TUPLES_OK, NULL, "60");
	expect_pipeline_result(c, PGRES_TUPLES_OK, NULL, "30");
	expect_pipeline_result(c, PGRES_FATAL_ERROR, "22012", NULL);
	expect_pipeline_result(c, PGRES_PIPELINE_ABORTED, NULL, NULL);
	expect_pipeline_result(c, PGRES_PIPELINE_ABORTED, NULL, NULL);
	expect_pipeline_result(c, PGRES_PIPELINE_SYNC, NULL, NULL);

	/*
	 * A second pipeline on the same statement runs normally, on a server
	 * that has not seen it (the other client holds the first one).
	 */
	harness_command_ok(other, "BEGIN", "BEGIN");
	send_exec(c, "p1", "5");
	send_exec(c, "p1", "6");
	ck_assert_int_eq(PQpipelineSync(c), 1);
	expect_pipeline_result(c, PGRES_TUPLES_OK, NULL, "12");
	expect_pipeline_result(c, PGRES_TUPLES_OK, NULL, "10");
	expect_pipeline_result(c, PGRES_PIPELINE_SYNC, NULL, NULL);
	ck_assert_ptr_null(PQgetResult(c));
	ck_assert_int_eq(PQexitPipelineMode(c), 1);
	ck_assert_int_eq(harness_count_backends("md5user"), 2);
	harness_command_ok(other, "COMMIT", "COMMIT");
	expect_prepared(c, "p1", "10", "6");
	PQfinish(c);
	PQfinish(other);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_pipeline_with_failing_parse_aborts_and_recovers)
{
	struct harness_sluice *s = start("transaction", 1, NULL);
	PGconn *c = harness_connect(s, APP);
	ck_assert_int_eq(PQenterPipelineMode(c), 1);
	ck_assert_int_eq(PQsendPrepare(c, "p2", "selec $1::int", 0, NULL), 1);
	send_exec(c, "p2", "1");
	send_exec(c, "p2", "2");
	ck_assert_int_eq(PQpipelineSync(c), 1);
	expect_pipeline_result(c, PGRES_FATAL_ERROR, "42601", NULL);
	expect_pipeline_result(c, PGRES_PIPELINE_ABORTED, NULL, NULL);
	expect_pipeline_result(c, PGRES_PIPELINE_ABORTED, NULL, NULL);
	expect_pipeline_result(c, PGRES_PIPELINE_SYNC, NULL, NULL);

	/* Still in the pipeline: a good Parse of the same name and its executions. */
	ck_assert_int_eq(PQsendPrepare(c, "p2", "select $1::int * 11", 0, NULL), 1);
	send_exec(c, "p2", "2");
	ck_assert_int_eq(PQpipelineSync(c), 1);
	expect_pipeline_result(c, PGRES_COMMAND_OK, NULL, NULL);
	expect_pipeline_result(c, PGRES_TUPLES_OK, NULL, "22");
	expect_pipeline_result(c, PGRES_PIPELINE_SYNC, NULL, NULL);
	ck_assert_ptr_null(PQgetResult(c));
	ck_assert_int_eq(PQexitPipelineMode(c), 1);
	harness_expect_answer(c, "select 'alive'", "alive");
	expect_prepared(c, "p2", "3", "33");
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

/*
 * The server has the statement already, so sluice answers the Parse itself;
 * but an earlier error in the same batch means PostgreSQL would have skipped
 * it, so the name must not exist afterwards.
 */
START_TEST(test_skipped_parse_of_a_shared_statement_leaves_no_name)
{
	struct harness_sluice *s = start("transaction", 1, NULL);
	PGconn *a = harness_connect(s, APP), *b = harness_connect(s, APP);
	prepare_ok(a, "x", "select $1::int * 7");
	ck_assert_int_eq(PQenterPipelineMode(b), 1);
	ck_assert_int_eq(PQsendQueryParams(b, "select 1/0", 0, NULL, NULL, NULL, NULL, 0), 1);
	ck_assert_int_eq(PQsendPrepare(b, "y", "select $1::int * 7", 0, NULL), 1);
	ck_assert_int_eq(PQpipelineSync(b), 1);
	expect_pipeline_result(b, PGRES_FATAL_ERROR, "22012", NULL);
	expect_pipeline_result(b, PGRES_PIPELINE_ABORTED, NULL, NULL);
	expect_pipeline_result(b, PGRES_PIPELINE_SYNC, NULL, NULL);
	ck_assert_ptr_null(PQgetResult(b));
	ck_assert_int_eq(PQexitPipelineMode(b), 1);
	expect_exec_error(b, "y", "1", "26000");
	expect_prepared(a, "x", "2", "14");
	PQfinish(a);
	PQfinish(b);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_pipeline_beyond_the_limit_evicts_safely)
{
	struct harness_sluice *s = start("transaction", 1, "max_prepared_statements = 2\n");
	PGconn *c = harness_connect(s, APP);
	enum { N = 6 };
	ck_assert_int_eq(PQenterPipelineMode(c), 1);
	/* Six statements prepared and run in one batch: sluice must evict inside it. */
	for (int k = 0; k < N; k++) {
		char name[16], sql[64];
		snprintf(name, sizeof(name), "q%d", k);
		snprintf(sql, sizeof(sql), "select $1::int + %d", k * 100);
		ck_assert_int_eq(PQsendPrepare(c, name, sql, 0, NULL), 1);
	}
	for (int r = 0; r < 2; r++)
		for (int k = 0; k < N; k++) {
			char name[16];
			snprintf(name, sizeof(name), "q%d", k);
			send_exec(c, name, r ? "2" : "1");
		}
	ck_assert_int_eq(PQpipelineSync(c), 1);
	for (int k = 0; k < N; k++)
		expect_pipeline_result(c, PGRES_COMMAND_OK, NULL, NULL);
	for (int r = 0; r < 2; r++)
		for (int k = 0; k < N; k++) {
			char want[16];
			snprintf(want, sizeof(want), "%d", k * 100 + (r ? 2 : 1));
			expect_pipeline_result(c, PGRES_TUPLES_OK, NULL, want);
		}
	expect_pipeline_result(c, PGRES_PIPELINE_SYNC, NULL, NULL);
	ck_assert_ptr_null(PQgetResult(c));
	ck_assert_int_eq(PQexitPipelineMode(c), 1);
	/*
	 * Inside a batch sluice cannot close statements (the batch may still use
	 * them), so the server may hold more than the limit until the next batch
	 * that prepares something (doc/prepared-statements.md). That one evicts.
	 */
	prepare_ok(c, "q6", "select $1::int + 600");
	ck_assert_int_le(query_long(c, "select count(*) from pg_prepared_statements"), 2);
	expect_prepared(c, "q6", "5", "605");
	expect_prepared(c, "q0", "5", "5");
	ck_assert_int_le(query_long(c, "select count(*) from pg_prepared_statements"), 2);
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_injected_parse_skipped_by_an_aborted_pipeline_is_not_remembered)
{
	/* Room for one statement: q1 is evicted when q2 is prepared. */
	struct harness_sluice *s = start("transaction", 1, "max_prepared_statements = 1\n");
	PGconn *console = harness_connect(s, CONSOLE);
	PGconn *c = harness_connect(s, APP);
	prepare_ok(c, "q1", "select 12 / $1::int");
	prepare_ok(c, "q2", "select 24 / $1::int");
	ck_assert_int_eq(PQenterPipelineMode(c), 1);
	send_exec(c, "q2", "0"); /* fails: PostgreSQL skips the rest up to Sync */
	send_exec(c, "q1", "1"); /* sluice's hidden Parse of q1 is skipped too */
	ck_assert_int_eq(PQpipelineSync(c), 1);
	expect_pipeline_result(c, PGRES_FATAL_ERROR, "22012", NULL);
	expect_pipeline_result(c, PGRES_PIPELINE_ABORTED, NULL, NULL);
	expect_pipeline_result(c, PGRES_PIPELINE_SYNC, NULL, NULL);
	ck_assert_ptr_null(PQgetResult(c));
	ck_assert_int_eq(PQexitPipelineMode(c), 1);
	/* The server does not have q1: sluice must prepare it for real now. */
	expect_prepared(c, "q1", "3", "4");
	expect_prepared(c, "q2", "3", "8");
	expect_prepared(c, "q1", "4", "3");
	ck_assert_int_le(harness_show_long(console, "SHOW SERVERS", "database", "app",
				 "prepared_statements"),
		1);
	PQfinish(c);
	PQfinish(console);
	harness_sluice_stop_ok(s);
}
END_TEST

/* ---- 8. pgbench -M prepared ---------------------------------------------------------------- */

START_TEST(test_pgbench_prepared_mode_through_transaction_pool)
{
	bool select_only = _i == 1;
	harness_pgbench_init();
	struct harness_sluice *s = start("transaction", 2, NULL);
	char port[16];
	snprintf(port, sizeof(port), "%d", s->port);
	char *argv[24];
	int n = 0;
	argv[n++] = "pgbench";
	argv[n++] = "-n";
	argv[n++] = "-c";
	argv[n++] = "4";
	/*
	 * One thread per client: pgbench prepares each statement lazily with a
	 * blocking PQprepare(), so a thread whose client waits for a server there
	 * freezes its other clients, and one frozen inside a transaction holds a
	 * server: with two clients per thread both servers can end up held that
	 * way (seen: backends idle in transaction, the other two clients queued
	 * until query_wait_timeout), a deadlock of pgbench's, not of the pool.
	 */
	argv[n++] = "-j";
	argv[n++] = "4";
	argv[n++] = "-t";
	argv[n++] = "200";
	argv[n++] = "-M";
	argv[n++] = "prepared";
	if (select_only)
		argv[n++] = "-S";
	argv[n++] = "-h";
	argv[n++] = "127.0.0.1";
	argv[n++] = "-p";
	argv[n++] = port;
	argv[n++] = "-U";
	argv[n++] = "md5user";
	argv[n++] = "app";
	argv[n] = NULL;
	char *out = NULL;
	int rc = harness_run_pgbench(argv, 40000, &out);
	ck_assert_msg(rc == 0, "pgbench exited %d:\n%s", rc, out);
	ck_assert_msg(strstr(out, "number of failed transactions: 0 ") != NULL, "%s", out);
	ck_assert_msg(strstr(out, "number of transactions actually processed: 800/800") != NULL,
		"%s", out);
	free(out);

	PGconn *console = harness_connect(s, CONSOLE);
	/* pgbench prepared its statements per connection and bound them for every query. */
	long client_parses = stat_of(console, "total_client_parse_count");
	long server_parses = stat_of(console, "total_server_parse_count");
	long binds = stat_of(console, "total_bind_count");
	ck_assert_int_ge(client_parses, 4);
	ck_assert_int_ge(server_parses, 1);
	ck_assert_int_ge(binds, 800);
	PQfinish(console);
	harness_sluice_stop_ok(s);
}
END_TEST

/* ---- 9. the feature switched off -------------------------------------------------------- */

START_TEST(test_max_prepared_statements_zero_passes_names_through)
{
	struct harness_sluice *s = start("transaction", 1, "max_prepared_statements = 0\n");
	PGconn *a = harness_connect(s, APP);
	PGconn *b = harness_connect(s, APP);
	prepare_ok(a, "same", "select $1::int + 1");
	char *st = prepare_error(b, "same", "select $1::text");
	ck_assert_str_eq(st, "42P05");
	free(st);
	/* The name reached PostgreSQL unchanged. */
	char *name = harness_query_text(a, NAMES_SQL);
	ck_assert_ptr_nonnull(name);
	ck_assert_str_eq(name, "same");
	free(name);
	PQfinish(a);
	PQfinish(b);
	harness_sluice_stop_ok(s);
}
END_TEST

/* ---- 10. what PostgreSQL sees ------------------------------------------------------------- */

START_TEST(test_session_mode_keeps_the_clients_names)
{
	struct harness_sluice *s = start("session", 1, NULL);
	PGconn *c = harness_connect(s, APP);
	prepare_ok(c, "mystmt", "select $1::int");
	char *name = harness_query_text(c, NAMES_SQL);
	ck_assert_ptr_nonnull(name);
	ck_assert_str_eq(name, "mystmt");
	free(name);
	expect_prepared(c, "mystmt", "8", "8");
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_transaction_mode_renames_statements_on_the_server)
{
	struct harness_sluice *s = start("transaction", 1, NULL);
	PGconn *c = harness_connect(s, APP);
	prepare_ok(c, "mystmt", "select $1::int");
	char *name = harness_query_text(c, NAMES_SQL);
	ck_assert_ptr_nonnull(name);
	ck_assert_msg(strncmp(name, "sluice_", 7) == 0, "server-side name %s", name);
	free(name);
	expect_prepared(c, "mystmt", "8", "8");
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

/* ---- 11. large statements and parameters ----------------------------------------------- */

START_TEST(test_large_query_text_and_large_parameter)
{
	struct harness_sluice *s = start("transaction", 2, NULL);
	PGconn *a = harness_connect(s, APP);
	PGconn *b = harness_connect(s, APP);

	/* A query of about 190 KB: a long IN list. */
	enum { LIST = 30000 };
	size_t cap = 64 + (size_t)LIST * 8;
	char *sql = xmalloc(cap);
	size_t len = (size_t)snprintf(sql, cap, "select $1::int where $1::int in (");
	for (int i = 0; i < LIST; i++)
		len += (size_t)snprintf(sql + len, cap - len, "%s%d", i ? "," : "", i * 2);
	len += (size_t)snprintf(sql + len, cap - len, ")");
	ck_assert_uint_gt(len, 100 * 1024);
	prepare_ok(a, "long_in", sql);
	expect_prepared(a, "long_in", "59998", "59998");
	PGresult *res = exec_prepared(a, "long_in", "59999");
	ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	ck_assert_int_eq(PQntuples(res), 0);
	PQclear(res);
	/* On a second server sluice must send the whole text again. */
	harness_command_ok(b, "BEGIN", "BEGIN");
	expect_prepared(a, "long_in", "2", "2");
	harness_command_ok(b, "COMMIT", "COMMIT");
	free(sql);

	/* A 5 MB parameter with recognisable ends. */
	size_t big = 5 * 1024 * 1024;
	char *param = xmalloc(big + 1);
	memset(param, 'a', big);
	memcpy(param, "BEGIN", 5);
	memcpy(param + big - 3, "END", 3);
	param[big] = '\0';
	prepare_ok(a, "big", "select length($1::text), left($1, 5), right($1, 3)");
	for (int round = 0; round < 2; round++) {
		res = exec_prepared(a, "big", param);
		ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s",
			PQresultErrorMessage(res));
		ck_assert_str_eq(PQgetvalue(res, 0, 0), "5242880");
		ck_assert_str_eq(PQgetvalue(res, 0, 1), "BEGIN");
		ck_assert_str_eq(PQgetvalue(res, 0, 2), "END");
		PQclear(res);
		/* The second time on the other server, with the Parse injected before the Bind. */
		harness_command_ok(b, "BEGIN", "BEGIN");
	}
	harness_command_ok(b, "COMMIT", "COMMIT");
	free(param);
	PQfinish(a);
	PQfinish(b);
	harness_sluice_stop_ok(s);
}
END_TEST

/* ---- 12. malformed messages on a raw socket ------------------------------------------ */

static const struct bad_msg {
	const char *name;
	char type;
	const char *body; /* exactly body_len bytes, NULs included */
	size_t body_len;
	bool must_close; /* sluice cannot make sense of it and must end the connection */
} bad_msgs[] = {
	/* The statement name runs to the end of the message. */
	{ "parse-name-unterminated", 'P', "stmt_without_nul", 16, true },
	/* The query text has no terminator. */
	{ "parse-query-unterminated", 'P', "s\0select 1", 10, false },
	/* Five parameter types announced, none present. */
	{ "parse-types-missing", 'P', "s\0select 1\0\0\5", 13, false },
	/* Bind whose statement name runs to the end. */
	{ "bind-name-unterminated", 'B', "\0stmt", 5, false },
	/* Describe and Close of a statement whose name runs to the end. */
	{ "describe-name-unterminated", 'D', "Sstmt", 5, false },
	{ "close-name-unterminated", 'C', "Sstmt", 5, false },
};

/* Reads messages until ReadyForQuery; fails the test if the connection ends first. */
static void raw_wait_ready(int fd)
{
	for (;;) {
		struct harness_msg m;
		ck_assert_msg(harness_raw_read_msg(fd, &m),
			"connection ended before ReadyForQuery");
		char t = m.type;
		free(m.body);
		if (t == 'Z')
			return;
	}
}

START_TEST(test_malformed_statement_messages_get_08P01)
{
	const struct bad_msg *bm = &bad_msgs[_i];
	struct harness_sluice *s = harness_sluice_start(
		"auth_type = trust\npool_mode = transaction\n",
		"app = host=@PGHOST@ port=@PGPORT@ dbname=app pool_size=1\n",
		"\"trustuser\" \"trustuserpw\"\n");
	int fd = harness_raw_connect(s->port);
	harness_raw_send_startup(fd, "trustuser", "app");
	raw_wait_ready(fd);

	unsigned char msg[64];
	ck_assert_uint_le(bm->body_len + 5, sizeof(msg));
	msg[0] = (unsigned char)bm->type;
	put_be32(msg + 1, (uint32_t)(bm->body_len + 4));
	memcpy(msg + 5, bm->body, bm->body_len);
	/* A Sync follows, so that a relayed error is also answered in full. */
	size_t n = 5 + bm->body_len;
	msg[n++] = 'S';
	put_be32(msg + n, 4);
	n += 4;
	harness_write_all(fd, msg, n);

	char *err = harness_raw_read_error(fd);
	ck_assert_msg(err != NULL, "%s: no ErrorResponse", bm->name);
	ck_assert_msg(strncmp(err, "08P01 ", 6) == 0, "%s: got %s", bm->name, err);
	free(err);
	if (bm->must_close) {
		/* Nothing but the end of the connection may follow, and soon. */
		long t0 = harness_now_ms();
		struct harness_msg m;
		while (harness_raw_read_msg(fd, &m))
			free(m.body);
		ck_assert_int_lt(harness_now_ms() - t0, 5000);
	}
	close(fd);

	/* Everyone else is still served. */
	PGconn *c = harness_connect(s, "dbname=app user=trustuser");
	prepare_ok(c, "after", "select $1::int + 1");
	expect_prepared(c, "after", "1", "2");
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

/* ---- 13. SHOW CLIENTS / SHOW SERVERS ---------------------------------------------------- */

START_TEST(test_show_clients_and_servers_count_prepared_statements)
{
	struct harness_sluice *s = start("transaction", 1, NULL);
	PGconn *console = harness_connect(s, CONSOLE);
	PGconn *a = harness_connect(s, APP " application_name=two_stmts");
	PGconn *b = harness_connect(s, APP " application_name=no_stmts");
	prepare_ok(a, "x1", "select $1::int + 1");
	prepare_ok(a, "x2", "select $1::int + 2");
	harness_expect_answer(b, "select 1", "1");
	ck_assert_int_eq(harness_show_long(console, "SHOW CLIENTS", "application_name", "two_stmts",
				 "prepared_statements"),
		2);
	ck_assert_int_eq(harness_show_long(console, "SHOW CLIENTS", "application_name", "no_stmts",
				 "prepared_statements"),
		0);
	ck_assert_int_eq(harness_show_long(console, "SHOW SERVERS", "database", "app",
				 "prepared_statements"),
		2);
	expect_prepared(a, "x2", "1", "3");
	PQfinish(a);
	PQfinish(b);
	PQfinish(console);
	harness_sluice_stop_ok(s);
}
END_TEST

/* Appends one regular message (type, length, body) to out at *len. */
static void raw_put(unsigned char *out, size_t cap, size_t *len, char type, const void *body,
	size_t body_len)
{
	ck_assert_uint_le(*len + 5 + body_len, cap);
	out[*len] = (unsigned char)type;
	put_be32(out + *len + 1, (uint32_t)(body_len + 4));
	memcpy(out + *len + 5, body, body_len);
	*len += 5 + body_len;
}

/* What a raw exchange up to ReadyForQuery produced. */
struct raw_answer {
	char types[32]; /* message types in order, NUL-terminated */
	char sqlstate[6]; /* of the first ErrorResponse, or "" */
	char value[32]; /* first column of the first DataRow, or "" */
};

static void raw_read_answer(int fd, struct raw_answer *a)
{
	memset(a, 0, sizeof(*a));
	size_t n = 0;
	for (;;) {
		struct harness_msg m;
		ck_assert_msg(harness_raw_read_msg(fd, &m), "connection ended after '%s'",
			a->types);
		ck_assert_uint_lt(n, sizeof(a->types) - 1);
		a->types[n++] = m.type;
		if (m.type == 'E' && !a->sqlstate[0])
			snprintf(a->sqlstate, sizeof(a->sqlstate), "%s",
				harness_msg_field(&m, 'C'));
		if (m.type == 'D' && !a->value[0] && m.len >= 6) {
			int32_t vlen = (int32_t)get_be32((const uint8_t *)m.body + 2);
			if (vlen > 0 && (size_t)vlen < sizeof(a->value) &&
				6 + (uint32_t)vlen <= m.len)
				memcpy(a->value, m.body + 6, (size_t)vlen);
		}
		char t = m.type;
		free(m.body);
		if (t == 'Z')
			return;
	}
}

/* Bind (unnamed portal, no parameters, text results) of stmt, Execute, Sync. */
static size_t raw_bind_execute_sync(unsigned char *out, size_t cap, const char *stmt)
{
	size_t len = 0;
	unsigned char bind[64];
	size_t b = 0;
	bind[b++] = '\0'; /* portal */
	size_t sl = strlen(stmt) + 1;
	memcpy(bind + b, stmt, sl);
	b += sl;
	memset(bind + b, 0, 6); /* no parameter formats, no parameters, no result formats */
	b += 6;
	raw_put(out, cap, &len, 'B', bind, b);
	raw_put(out, cap, &len, 'E', "\0\0\0\0", 5);
	raw_put(out, cap, &len, 'S', "", 0);
	return len;
}

START_TEST(test_protocol_close_forgets_only_the_clients_name)
{
	struct harness_sluice *s = harness_sluice_start(
		"auth_type = trust\npool_mode = transaction\nadmin_users = trustuser\n",
		"app = host=@PGHOST@ port=@PGPORT@ dbname=app pool_size=1\n",
		"\"trustuser\" \"trustuserpw\"\n");
	PGconn *console = harness_connect(s, "dbname=pgbouncer user=trustuser");
	int fd = harness_raw_connect(s->port);
	harness_raw_send_startup(fd, "trustuser", "app");
	raw_wait_ready(fd);

	unsigned char out[512];
	size_t len = 0;
	raw_put(out, sizeof(out), &len, 'P', "x1\0select 1\0\0", 14);
	raw_put(out, sizeof(out), &len, 'P', "x2\0select 2\0\0", 14);
	raw_put(out, sizeof(out), &len, 'S', "", 0);
	harness_write_all(fd, out, len);
	struct raw_answer a;
	raw_read_answer(fd, &a);
	ck_assert_str_eq(a.types, "11Z");
	ck_assert_int_eq(harness_show_long(console, "SHOW CLIENTS", "database", "app",
				 "prepared_statements"),
		2);
	ck_assert_int_eq(harness_show_long(console, "SHOW SERVERS", "database", "app",
				 "prepared_statements"),
		2);

	len = 0;
	raw_put(out, sizeof(out), &len, 'C', "Sx1", 4);
	raw_put(out, sizeof(out), &len, 'S', "", 0);
	harness_write_all(fd, out, len);
	raw_read_answer(fd, &a);
	ck_assert_str_eq(a.types, "3Z");
	ck_assert_int_eq(harness_show_long(console, "SHOW CLIENTS", "database", "app",
				 "prepared_statements"),
		1);
	/* The server keeps the statement for others. */
	ck_assert_int_eq(harness_show_long(console, "SHOW SERVERS", "database", "app",
				 "prepared_statements"),
		2);

	len = raw_bind_execute_sync(out, sizeof(out), "x1");
	harness_write_all(fd, out, len);
	raw_read_answer(fd, &a);
	ck_assert_str_eq(a.types, "EZ");
	ck_assert_str_eq(a.sqlstate, "26000");

	len = raw_bind_execute_sync(out, sizeof(out), "x2");
	harness_write_all(fd, out, len);
	raw_read_answer(fd, &a);
	ck_assert_str_eq(a.types, "2DCZ");
	ck_assert_str_eq(a.value, "2");

	/* Close of a name the client never had is answered too, as PostgreSQL does. */
	len = 0;
	raw_put(out, sizeof(out), &len, 'C', "Snope", 6);
	raw_put(out, sizeof(out), &len, 'S', "", 0);
	harness_write_all(fd, out, len);
	raw_read_answer(fd, &a);
	ck_assert_str_eq(a.types, "3Z");
	close(fd);
	PQfinish(console);
	harness_sluice_stop_ok(s);
}
END_TEST

static Suite *prepared_suite(void)
{
	Suite *s = suite_create("prepared");
	TCase *tc = harness_tcase("prepared");
	tcase_add_test(tc, test_two_clients_same_name_different_queries_on_one_server);
	tcase_add_test(tc, test_statement_survives_server_switch);
	tcase_add_test(tc, test_same_query_under_two_names_is_prepared_once_on_the_server);
	tcase_add_test(tc, test_statements_are_freed_when_no_client_or_server_holds_them);
	tcase_add_test(tc, test_max_prepared_statements_evicts_least_recently_used);
	tcase_add_test(tc, test_parse_error_then_same_name_prepares_correctly);
	tcase_add_test(tc, test_unknown_statement_gives_26000_and_connection_stays_usable);
	tcase_add_test(tc, test_skipped_parse_of_a_shared_statement_leaves_no_name);
	tcase_add_test(tc, test_parse_of_a_name_in_use_is_refused_as_postgresql_refuses_it);
	tcase_add_test(tc, test_describe_prepared_works_on_a_server_that_lacks_the_statement);
	tcase_add_test(tc, test_deallocate_forgets_only_the_clients_names);
	tcase_add_test(tc, test_discard_all_forgets_the_clients_statements_only);
	tcase_add_test(tc, test_pipeline_with_failing_execution_aborts_the_rest);
	tcase_add_test(tc, test_pipeline_with_failing_parse_aborts_and_recovers);
	tcase_add_test(tc, test_pipeline_beyond_the_limit_evicts_safely);
	tcase_add_test(tc, test_injected_parse_skipped_by_an_aborted_pipeline_is_not_remembered);
	tcase_add_loop_test(tc, test_pgbench_prepared_mode_through_transaction_pool, 0, 2);
	tcase_add_test(tc, test_max_prepared_statements_zero_passes_names_through);
	tcase_add_test(tc, test_session_mode_keeps_the_clients_names);
	tcase_add_test(tc, test_transaction_mode_renames_statements_on_the_server);
	tcase_add_test(tc, test_large_query_text_and_large_parameter);
	tcase_add_loop_test(tc, test_malformed_statement_messages_get_08P01, 0,
		(int)ARRAY_SIZE(bad_msgs));
	tcase_add_test(tc, test_show_clients_and_servers_count_prepared_statements);
	tcase_add_test(tc, test_protocol_close_forgets_only_the_clients_name);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return harness_run_suite(prepared_suite());
}
