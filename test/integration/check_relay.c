/*
 * check_relay.c - protocol coverage through sluice in transaction mode: what
 * a client sends and receives through the pooler must be what it would send
 * and receive on a direct connection. Covered: the extended query protocol,
 * large results and large queries, libpq pipeline mode with another client
 * sharing the server, COPY in both directions, NOTICE and LISTEN/NOTIFY,
 * session parameters that follow each client from server to server, the
 * refusal of untracked startup parameters, and clients that vanish in the
 * middle of a transaction or a pipeline.
 *
 * It does not test pool-mode rules as such (check_pool_modes) or server
 * faults; every comparison is against PostgreSQL reached directly
 * (harness_connect(NULL, ...)).
 */
#include "harness.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define USERLIST                                                                           \
	"\"md5user\" \"md5userpw\"\n"                                                      \
	"\"trustuser\" \"trustuserpw\"\n"

#define MD5USER "dbname=app user=md5user password=md5userpw"

/* ---- helpers --------------------------------------------------------------- */

/* The next result of conn, waited for with a deadline (fails the test on timeout). */
static PGresult *next_result(PGconn *conn, int timeout_ms)
{
	ck_assert_msg(harness_wait_not_busy(conn, timeout_ms), "no result within %d ms", timeout_ms);
	return PQgetResult(conn);
}

static void exec_ok(PGconn *conn, const char *sql)
{
	free(harness_query_text(conn, sql));
}

static struct harness_sluice *start_tx(int pool_size, const char *more)
{
	char *extra = xasprintf("pool_mode = transaction\ndefault_pool_size = %d\nauth_type = md5\n"
				"query_wait_timeout = 10\n%s",
		pool_size, more ? more : "");
	struct harness_sluice *s = harness_sluice_start(extra, NULL, USERLIST);
	free(extra);
	return s;
}

/*
 * Fails the test unless two results are identical: status, shape, column
 * names and types, and every value byte for byte (NULLs included).
 */
static void assert_same_result(const PGresult *a, const PGresult *b)
{
	ck_assert_int_eq(PQresultStatus(a), PQresultStatus(b));
	ck_assert_int_eq(PQntuples(a), PQntuples(b));
	ck_assert_int_eq(PQnfields(a), PQnfields(b));
	for (int c = 0; c < PQnfields(a); c++) {
		ck_assert_str_eq(PQfname(a, c), PQfname(b, c));
		ck_assert_int_eq(PQftype(a, c), PQftype(b, c));
		ck_assert_int_eq(PQfformat(a, c), PQfformat(b, c));
	}
	/*
	 * Plain comparisons in the loop: every passing ck_assert records a
	 * checkpoint with the parent process, which is slow over 200k rows.
	 */
	for (int r = 0; r < PQntuples(a); r++) {
		for (int c = 0; c < PQnfields(a); c++) {
			int la = PQgetlength(a, r, c), lb = PQgetlength(b, r, c);
			if (PQgetisnull(a, r, c) != PQgetisnull(b, r, c) || la != lb ||
				memcmp(PQgetvalue(a, r, c), PQgetvalue(b, r, c), (size_t)la) != 0)
				ck_abort_msg("row %d col %d differ (lengths %d and %d)", r, c, la, lb);
		}
	}
}

/* ---- extended protocol and sizes ---------------------------------------------- */

START_TEST(test_relay_exec_params_matches_direct)
{
	struct harness_sluice *s = start_tx(1, NULL);
	PGconn *via = harness_connect(s, MD5USER);
	PGconn *other = harness_connect(s, MD5USER);
	PGconn *direct = harness_connect(NULL, MD5USER);

	const char *sql = "SELECT $1::int + 1 AS n, $2::text AS t, $3::text IS NULL AS isnull, "
			  "name FROM items WHERE id <= $1::int ORDER BY id";
	const char *vals[3] = { "2", "h\xc3\xa9llo 'quoted' \\ back", NULL };
	for (int fmt = 0; fmt <= 1; fmt++) { /* text and binary results */
		PGresult *r1 = PQexecParams(via, sql, 3, NULL, vals, NULL, NULL, fmt);
		ck_assert_msg(PQresultStatus(r1) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r1));
		PGresult *r2 = PQexecParams(direct, sql, 3, NULL, vals, NULL, NULL, fmt);
		assert_same_result(r1, r2);
		ck_assert_int_eq(PQntuples(r1), 2);
		PQclear(r1);
		PQclear(r2);
		/* Another client uses the one server in between. */
		exec_ok(other, "SELECT 1");
	}

	/* An error in the extended protocol comes back as it does directly. */
	PGresult *e = PQexecParams(via, "SELECT 1/$1::int", 1, NULL, (const char *[]){ "0" },
		NULL, NULL, 0);
	ck_assert_str_eq(PQresultErrorField(e, PG_DIAG_SQLSTATE), "22012");
	PQclear(e);
	char *v = harness_query_text(via, "SELECT 'after error'");
	ck_assert_str_eq(v, "after error");
	free(v);

	PQfinish(via);
	PQfinish(other);
	PQfinish(direct);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_relay_prepared_statement_in_one_transaction)
{
	struct harness_sluice *s = start_tx(1, NULL);
	PGconn *via = harness_connect(s, MD5USER);
	PGconn *other = harness_connect(s, MD5USER);

	for (int round = 0; round < 3; round++) {
		exec_ok(via, "BEGIN");
		PGresult *r = PQprepare(via, "relay_stmt", "SELECT name FROM items WHERE id = $1", 1,
			NULL);
		ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s", PQresultErrorMessage(r));
		PQclear(r);
		for (int id = 1; id <= 3; id++) {
			char idbuf[8];
			snprintf(idbuf, sizeof(idbuf), "%d", id);
			const char *vals[1] = { idbuf };
			r = PQexecPrepared(via, "relay_stmt", 1, vals, NULL, NULL, 0);
			ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s",
				PQresultErrorMessage(r));
			ck_assert_int_eq(PQntuples(r), 1);
			char *expect = harness_pg_exec("SELECT name FROM items WHERE id = %d", id);
			ck_assert_str_eq(PQgetvalue(r, 0, 0), expect);
			free(expect);
			PQclear(r);
		}
		r = PQdescribePrepared(via, "relay_stmt");
		ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
		ck_assert_int_eq(PQnparams(r), 1);
		ck_assert_int_eq(PQnfields(r), 1);
		PQclear(r);
		exec_ok(via, "DEALLOCATE relay_stmt");
		exec_ok(via, "COMMIT");
		exec_ok(other, "SELECT 2");
	}
	PQfinish(via);
	PQfinish(other);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_relay_large_results_identical_to_direct)
{
	struct harness_sluice *s = start_tx(1, NULL);
	PGconn *via = harness_connect(s, MD5USER);
	PGconn *direct = harness_connect(NULL, MD5USER);
	static const char *const queries[] = {
		"SELECT g, g::text || repeat('.', g % 17) FROM generate_series(1, 200000) g",
		"SELECT repeat('0123456789abcdef', 327680) || 'end'", /* 5 MB + 3 */
	};
	for (size_t i = 0; i < ARRAY_SIZE(queries); i++) {
		PGresult *r1 = PQexec(via, queries[i]);
		ck_assert_msg(PQresultStatus(r1) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r1));
		PGresult *r2 = PQexec(direct, queries[i]);
		assert_same_result(r1, r2);
		PQclear(r1);
		PQclear(r2);
	}
	/* The same in binary through the extended protocol. */
	PGresult *r1 = PQexecParams(via, queries[1], 0, NULL, NULL, NULL, NULL, 1);
	PGresult *r2 = PQexecParams(direct, queries[1], 0, NULL, NULL, NULL, NULL, 1);
	assert_same_result(r1, r2);
	ck_assert_int_eq(PQgetlength(r1, 0, 0), 5 * 1024 * 1024 + 3);
	PQclear(r1);
	PQclear(r2);

	PQfinish(via);
	PQfinish(direct);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_relay_multi_megabyte_insert_arrives_whole)
{
	struct harness_sluice *s = start_tx(1, NULL);
	PGconn *via = harness_connect(s, MD5USER);
	size_t n = 6 * 1024 * 1024;
	char *sql = xmalloc(n + 128);
	int k = snprintf(sql, 128, "INSERT INTO items VALUES (7001, '");
	for (size_t i = 0; i < n; i++)
		sql[k + i] = (char)('a' + (i * 7) % 26);
	strcpy(sql + k + n, "')");
	exec_ok(via, sql);

	/* And through the extended protocol, as a parameter. */
	const char *vals[1] = { sql + k };
	sql[k + n] = '\0';
	PGresult *r = PQexecParams(via, "INSERT INTO items VALUES (7002, $1)", 1, NULL, vals, NULL,
		NULL, 0);
	ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s", PQresultErrorMessage(r));
	PQclear(r);

	char *direct_len = harness_pg_exec("SELECT string_agg(length(name)::text, ',' ORDER BY id) "
					   "FROM items WHERE id IN (7001, 7002)");
	char expect[64];
	snprintf(expect, sizeof(expect), "%zu,%zu", n, n);
	ck_assert_str_eq(direct_len, expect);
	free(direct_len);
	/* Byte-exact: the server's md5 equals the md5 of what was sent. */
	PGconn *direct = harness_connect(NULL, MD5USER);
	r = PQexecParams(direct, "SELECT md5($1) = ALL (SELECT md5(name) FROM items "
				 "WHERE id IN (7001, 7002))",
		1, NULL, vals, NULL, NULL, 0);
	ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
	ck_assert_str_eq(PQgetvalue(r, 0, 0), "t");
	PQclear(r);
	PQfinish(direct);
	free(harness_pg_exec("DELETE FROM items WHERE id IN (7001, 7002)"));
	free(sql);

	PQfinish(via);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* ---- pipeline mode ---------------------------------------------------------------- */

/* Sends "SELECT '<tag>'" through the extended protocol (as pipeline mode requires). */
static void send_tag(PGconn *conn, const char *tag)
{
	const char *vals[1] = { tag };
	ck_assert_int_eq(PQsendQueryParams(conn, "SELECT $1::text", 1, NULL, vals, NULL, NULL, 0),
		1);
}

/* Reads one query's results in a pipeline: a tuple result with tag, then NULL. */
static void expect_tag(PGconn *conn, const char *tag)
{
	PGresult *r = next_result(conn, 5000);
	ck_assert_ptr_nonnull(r);
	ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "expected %s, got %s: %s", tag,
		PQresStatus(PQresultStatus(r)), PQresultErrorMessage(r));
	ck_assert_str_eq(PQgetvalue(r, 0, 0), tag);
	PQclear(r);
	ck_assert_ptr_null(next_result(conn, 5000));
}

static void expect_sync(PGconn *conn)
{
	PGresult *r = next_result(conn, 5000);
	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(PQresultStatus(r), PGRES_PIPELINE_SYNC);
	PQclear(r);
}

START_TEST(test_relay_pipeline_with_interleaving_client)
{
	struct harness_sluice *s = start_tx(1, NULL);
	PGconn *a = harness_connect(s, MD5USER);
	PGconn *b = harness_connect(s, MD5USER);

	ck_assert_int_eq(PQenterPipelineMode(a), 1);
	for (int round = 0; round < 3; round++) {
		char tag[32];
		/* Two syncs' worth of queries in flight at once. */
		for (int q = 0; q < 4; q++) {
			snprintf(tag, sizeof(tag), "a%d-%d", round, q);
			send_tag(a, tag);
			if (q == 1)
				ck_assert_int_eq(PQpipelineSync(a), 1);
		}
		/* A failing query aborts the rest of its batch only. */
		ck_assert_int_eq(PQsendQueryParams(a, "SELECT 1/0", 0, NULL, NULL, NULL, NULL, 0), 1);
		send_tag(a, "skipped");
		ck_assert_int_eq(PQpipelineSync(a), 1);
		snprintf(tag, sizeof(tag), "a%d-last", round);
		send_tag(a, tag);
		ck_assert_int_eq(PQpipelineSync(a), 1);
		ck_assert_int_eq(PQflush(a), 0);

		/* b asks while a's pipeline holds the server. */
		snprintf(tag, sizeof(tag), "b%d", round);
		ck_assert_int_eq(PQsendQuery(b, round % 2 ? "SELECT 'b-simple'" : "SELECT 'b-other'"),
			1);

		for (int q = 0; q < 4; q++) {
			snprintf(tag, sizeof(tag), "a%d-%d", round, q);
			expect_tag(a, tag);
			if (q == 1)
				expect_sync(a);
		}
		PGresult *r = next_result(a, 5000);
		ck_assert_int_eq(PQresultStatus(r), PGRES_FATAL_ERROR);
		ck_assert_str_eq(PQresultErrorField(r, PG_DIAG_SQLSTATE), "22012");
		PQclear(r);
		ck_assert_ptr_null(next_result(a, 5000));
		r = next_result(a, 5000);
		ck_assert_int_eq(PQresultStatus(r), PGRES_PIPELINE_ABORTED);
		PQclear(r);
		ck_assert_ptr_null(next_result(a, 5000));
		expect_sync(a);
		snprintf(tag, sizeof(tag), "a%d-last", round);
		expect_tag(a, tag);
		expect_sync(a);

		r = next_result(b, 5000);
		ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
		ck_assert_str_eq(PQgetvalue(r, 0, 0), round % 2 ? "b-simple" : "b-other");
		PQclear(r);
		ck_assert_ptr_null(next_result(b, 5000));
	}
	ck_assert_int_eq(PQexitPipelineMode(a), 1);
	char *v = harness_query_text(a, "SELECT 'a-after'");
	ck_assert_str_eq(v, "a-after");
	free(v);
	v = harness_query_text(b, "SELECT 'b-after'");
	ck_assert_str_eq(v, "b-after");
	free(v);

	PQfinish(a);
	PQfinish(b);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_relay_client_gone_mid_pipeline_leaves_server_usable)
{
	struct harness_sluice *s = start_tx(1, NULL);
	PGconn *a = harness_connect(s, MD5USER);
	PGconn *b = harness_connect(s, MD5USER);

	ck_assert_int_eq(PQenterPipelineMode(a), 1);
	exec_ok(b, "SELECT 1"); /* b has been linked once already */
	const char *big = "SELECT g, repeat('x', 100) FROM generate_series(1, 50000) g";
	for (int q = 0; q < 5; q++) {
		ck_assert_int_eq(PQsendQueryParams(a, q == 2 ? big : "SELECT pg_sleep(0.05)", 0,
					 NULL, NULL, NULL, NULL, 0),
			1);
		if (q == 1)
			ck_assert_int_eq(PQpipelineSync(a), 1);
	}
	/* The last batch has no Sync: the server is mid extended-protocol batch. */
	ck_assert_int_eq(PQflush(a), 0);
	harness_sleep_ms(100); /* let the queries reach the server */
	PQfinish(a);

	for (int i = 0; i < 5; i++) {
		char sql[64], expect[16];
		snprintf(sql, sizeof(sql), "SELECT 'b%d'", i);
		snprintf(expect, sizeof(expect), "b%d", i);
		ck_assert_int_eq(PQsendQuery(b, sql), 1);
		PGresult *r = next_result(b, 5000);
		ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
		ck_assert_int_eq(PQntuples(r), 1);
		ck_assert_int_eq(PQnfields(r), 1);
		ck_assert_str_eq(PQgetvalue(r, 0, 0), expect);
		PQclear(r);
		ck_assert_ptr_null(next_result(b, 5000));
	}
	char *v = harness_query_text(b, "SELECT now() = statement_timestamp()");
	ck_assert_str_eq(v, "t");
	free(v);
	PQfinish(b);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* ---- COPY ----------------------------------------------------------------------- */

static void copy_in_rows(PGconn *conn, int from, int to)
{
	PGresult *r = PQexec(conn, "COPY relay_copy (id, v) FROM STDIN");
	ck_assert_msg(PQresultStatus(r) == PGRES_COPY_IN, "%s", PQresultErrorMessage(r));
	PQclear(r);
	char line[64];
	for (int i = from; i <= to; i++) {
		int n = snprintf(line, sizeof(line), "%d\tvalue %d\n", i, i);
		ck_assert_int_eq(PQputCopyData(conn, line, n), 1);
	}
	ck_assert_int_eq(PQputCopyEnd(conn, NULL), 1);
	r = PQgetResult(conn);
	ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s", PQresultErrorMessage(r));
	char expect[32];
	snprintf(expect, sizeof(expect), "%d", to - from + 1);
	ck_assert_str_eq(PQcmdTuples(r), expect);
	PQclear(r);
	ck_assert_ptr_null(PQgetResult(conn));
}

/* COPY ... TO STDOUT, returning the rows' count and checking each line. */
static int copy_out_rows(PGconn *conn)
{
	PGresult *r = PQexec(conn, "COPY (SELECT id, v FROM relay_copy ORDER BY id) TO STDOUT");
	ck_assert_msg(PQresultStatus(r) == PGRES_COPY_OUT, "%s", PQresultErrorMessage(r));
	PQclear(r);
	int rows = 0;
	char *line;
	int n;
	while ((n = PQgetCopyData(conn, &line, 0)) > 0) {
		int id = atoi(line);
		char expect[64];
		snprintf(expect, sizeof(expect), "%d\tvalue %d\n", id, id);
		if (n != (int)strlen(expect) || memcmp(line, expect, (size_t)n) != 0)
			ck_abort_msg("COPY line %d: '%.*s'", rows, n, line);
		rows++;
		PQfreemem(line);
	}
	ck_assert_int_eq(n, -1);
	r = PQgetResult(conn);
	ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	ck_assert_ptr_null(PQgetResult(conn));
	return rows;
}

START_TEST(test_relay_copy_in_and_out_and_server_reused)
{
	free(harness_pg_exec("DROP TABLE IF EXISTS relay_copy"));
	free(harness_pg_exec("CREATE TABLE relay_copy (id int primary key, v text)"));
	free(harness_pg_exec("GRANT ALL ON relay_copy TO PUBLIC"));
	struct harness_sluice *s = start_tx(1, NULL);
	PGconn *a = harness_connect(s, MD5USER);
	PGconn *b = harness_connect(s, MD5USER);
	char *pid_text = harness_query_text(a, "SELECT pg_backend_pid()");
	long pid = strtol(pid_text, NULL, 10);
	free(pid_text);

	copy_in_rows(a, 1, 20000); /* outside a transaction */
	exec_ok(b, "SELECT 'b between'");
	exec_ok(a, "BEGIN");
	copy_in_rows(a, 20001, 20100);
	ck_assert_int_eq(copy_out_rows(a), 20100);
	exec_ok(a, "COMMIT");
	ck_assert_int_eq(harness_pg_exec_long("SELECT count(*) FROM relay_copy"), 20100);

	/* b gets the one server right after each COPY, clean. */
	char *v = harness_query_text(b, "SELECT count(*) FROM relay_copy");
	ck_assert_str_eq(v, "20100");
	free(v);
	ck_assert_int_eq(copy_out_rows(b), 20100);
	v = harness_query_text(b, "SELECT pg_backend_pid()");
	ck_assert_int_eq(strtol(v, NULL, 10), pid);
	free(v);
	v = harness_query_text(b, "SELECT now() = statement_timestamp()");
	ck_assert_str_eq(v, "t");
	free(v);

	/* A COPY IN the client aborts ends in an error, and the server is fine after. */
	PGresult *r = PQexec(a, "COPY relay_copy (id, v) FROM STDIN");
	ck_assert_int_eq(PQresultStatus(r), PGRES_COPY_IN);
	PQclear(r);
	ck_assert_int_eq(PQputCopyData(a, "99999\tnever\n", 12), 1);
	ck_assert_int_eq(PQputCopyEnd(a, "client changed its mind"), 1);
	r = PQgetResult(a);
	ck_assert_int_eq(PQresultStatus(r), PGRES_FATAL_ERROR);
	ck_assert_msg(strstr(PQresultErrorMessage(r), "client changed its mind") != NULL, "%s",
		PQresultErrorMessage(r));
	PQclear(r);
	ck_assert_ptr_null(PQgetResult(a));
	v = harness_query_text(b, "SELECT count(*) FROM relay_copy");
	ck_assert_str_eq(v, "20100");
	free(v);
	v = harness_query_text(a, "SELECT 'a fine'");
	ck_assert_str_eq(v, "a fine");
	free(v);

	PQfinish(a);
	PQfinish(b);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
	free(harness_pg_exec("DROP TABLE relay_copy"));
}
END_TEST

/* ---- NOTICE, LISTEN/NOTIFY ---------------------------------------------------------- */

static void collect_notice(void *arg, const PGresult *res)
{
	char *buf = arg;
	const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	size_t used = strlen(buf);
	snprintf(buf + used, 256 - used, "[%s]", m ? m : "?");
}

START_TEST(test_relay_notice_reaches_client)
{
	struct harness_sluice *s = start_tx(1, NULL);
	PGconn *a = harness_connect(s, MD5USER);
	char notices[256] = "";
	PQsetNoticeReceiver(a, collect_notice, notices);
	exec_ok(a, "DO $$BEGIN RAISE NOTICE 'hello %', 42; RAISE WARNING 'careful'; END$$");
	ck_assert_str_eq(notices, "[hello 42][careful]");
	PQfinish(a);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_relay_listen_notify_in_session_mode)
{
	struct harness_sluice *s = harness_sluice_start("pool_mode = session\nauth_type = md5\n",
		NULL, USERLIST);
	PGconn *a = harness_connect(s, MD5USER);
	PGconn *b = harness_connect(s, MD5USER);
	exec_ok(a, "LISTEN relay_chan");
	exec_ok(b, "NOTIFY relay_chan, 'payload one'");
	exec_ok(b, "SELECT pg_notify('relay_chan', 'payload two')");

	const char *expect[2] = { "payload one", "payload two" };
	char *pid_b = harness_query_text(b, "SELECT pg_backend_pid()");
	int got = 0;
	long deadline = harness_now_ms() + 5000;
	while (got < 2 && harness_now_ms() < deadline) {
		ck_assert_int_eq(PQconsumeInput(a), 1);
		PGnotify *n;
		while ((n = PQnotifies(a)) != NULL) {
			ck_assert_int_lt(got, 2);
			ck_assert_str_eq(n->relname, "relay_chan");
			ck_assert_str_eq(n->extra, expect[got]);
			ck_assert_int_eq(n->be_pid, strtol(pid_b, NULL, 10));
			got++;
			PQfreemem(n);
		}
		struct pollfd pfd = { .fd = PQsocket(a), .events = POLLIN };
		(void)poll(&pfd, 1, 50);
	}
	ck_assert_int_eq(got, 2);
	free(pid_b);
	PQfinish(a);
	PQfinish(b);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* ---- parameters follow the client ------------------------------------------------ */

static void assert_show(PGconn *conn, const char *sql, const char *expect)
{
	char *v = harness_query_text(conn, sql);
	ck_assert_ptr_nonnull(v);
	ck_assert_msg(strcmp(v, expect) == 0, "%s gave '%s', expected '%s'", sql, v, expect);
	free(v);
}

START_TEST(test_relay_application_name_follows_each_client)
{
	struct harness_sluice *s = start_tx(1, NULL);
	PGconn *a = harness_connect(s, MD5USER " application_name=relay_alpha");
	PGconn *b = harness_connect(s, MD5USER " application_name=relay_beta");
	long pid = 0;
	for (int i = 0; i < 4; i++) {
		PGconn *c = i % 2 ? b : a;
		const char *name = i % 2 ? "relay_beta" : "relay_alpha";
		assert_show(c,
			"SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()",
			name);
		assert_show(c, "SHOW application_name", name);
		ck_assert_str_eq(PQparameterStatus(c, "application_name"), name);
		char *p = harness_query_text(c, "SELECT pg_backend_pid()");
		if (pid)
			ck_assert_int_eq(strtol(p, NULL, 10), pid); /* one shared server */
		pid = strtol(p, NULL, 10);
		free(p);
	}
	/* A SET by one client is its own too, and survives the other's turn. */
	exec_ok(a, "SET application_name = 'relay_gamma'");
	assert_show(b, "SHOW application_name", "relay_beta");
	assert_show(a, "SHOW application_name", "relay_gamma");
	PQfinish(a);
	PQfinish(b);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_relay_timezone_and_datestyle_follow_each_client)
{
	struct harness_sluice *s = start_tx(1, NULL);
	PGconn *direct = harness_connect(NULL, MD5USER);
	char *def_tz = harness_query_text(direct, "SHOW TimeZone");
	char *def_ds = harness_query_text(direct, "SHOW DateStyle");
	PQfinish(direct);
	ck_assert_str_ne(def_ds, "SQL, DMY");
	ck_assert_str_ne(def_tz, "Asia/Tokyo");

	PGconn *a = harness_connect(s, MD5USER);
	PGconn *b = harness_connect(s, MD5USER " options='-c DateStyle=SQL,DMY'");
	exec_ok(a, "SET TimeZone = 'Asia/Tokyo'");
	for (int i = 0; i < 3; i++) {
		assert_show(a, "SHOW TimeZone", "Asia/Tokyo");
		assert_show(a, "SHOW DateStyle", def_ds);
		assert_show(b, "SHOW DateStyle", "SQL, DMY");
		assert_show(b, "SHOW TimeZone", def_tz);
		/* In a transaction too, and the values really act. */
		exec_ok(a, "BEGIN");
		assert_show(a, "SELECT to_char('2024-01-01 00:00Z'::timestamptz, 'HH24')", "09");
		exec_ok(a, "COMMIT");
		assert_show(b, "SELECT '2024-03-04'::date::text", "04/03/2024");
	}
	ck_assert_str_eq(PQparameterStatus(a, "TimeZone"), "Asia/Tokyo");
	ck_assert_str_eq(PQparameterStatus(b, "DateStyle"), "SQL, DMY");
	free(def_tz);
	free(def_ds);
	PQfinish(a);
	PQfinish(b);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/*
 * Clients that want the same values share a profile: a server that matches
 * it gets no SET when it goes from one such client to another, and one SET
 * when a client with other values comes, or when a client's own SET made
 * its values those of another profile.
 */
START_TEST(test_relay_clients_with_the_same_parameters_need_no_set)
{
	struct harness_sluice *s = start_tx(1, "verbose = 2\n");
	PGconn *a = harness_connect(s, MD5USER " application_name=same_app");
	PGconn *b = harness_connect(s, MD5USER " application_name=same_app");
	PGconn *c = harness_connect(s, MD5USER " application_name=other_app");
	const char *sets = "internal query: SET application_name";
	assert_show(a, "SHOW application_name", "same_app");
	int n = harness_sluice_log_count(s, sets);
	for (int i = 0; i < 3; i++) {
		assert_show(b, "SHOW application_name", "same_app");
		assert_show(a, "SHOW application_name", "same_app");
	}
	ck_assert_int_eq(harness_sluice_log_count(s, sets), n);
	assert_show(c, "SHOW application_name", "other_app");
	assert_show(b, "SHOW application_name", "same_app");
	ck_assert_int_eq(harness_sluice_log_count(s, sets), n + 2);
	/* b's SET makes it a client of c's profile: c's turn needs no SET. */
	exec_ok(b, "SET application_name = 'other_app'");
	assert_show(c, "SHOW application_name", "other_app");
	assert_show(b, "SHOW application_name", "other_app");
	ck_assert_int_eq(harness_sluice_log_count(s, sets), n + 2);
	assert_show(a, "SHOW application_name", "same_app");
	ck_assert_int_eq(harness_sluice_log_count(s, sets), n + 3);
	PQfinish(a);
	PQfinish(b);
	PQfinish(c);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/*
 * A client asks for DateStyle=ISO, which PostgreSQL reports as "ISO, MDY":
 * the server gets one SET, and later links see the equivalent value as
 * already in place (PgBouncer's test_equivalent_startup_param).
 */
START_TEST(test_relay_equivalent_parameter_spelling_is_set_once)
{
	struct harness_sluice *s = start_tx(1, "verbose = 2\n");
	PGconn *c = harness_connect(s, MD5USER " options='-c DateStyle=ISO'");
	for (int i = 0; i < 3; i++)
		assert_show(c, "SHOW DateStyle", "ISO, MDY");
	ck_assert_int_eq(harness_sluice_log_count(s, "internal query: SET DateStyle"), 1);
	ck_assert_str_eq(PQparameterStatus(c, "DateStyle"), "ISO, MDY");
	PQfinish(c);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_relay_untracked_startup_parameter_refused)
{
	struct harness_sluice *s = start_tx(1, NULL);
	char *err = harness_connect_error(s, MD5USER " options='-c work_mem=1MB'");
	ck_assert_msg(strstr(err, "unsupported startup parameter") != NULL, "%s", err);
	ck_assert_msg(strstr(err, "work_mem") != NULL, "%s", err);
	free(err);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* What ignore_startup_parameters lists for options=-c work_mem=1MB to be accepted. */
static const char *const ignore_cases[] = { "work_mem", "options", "extra_float_digits, options" };

START_TEST(test_relay_ignored_startup_parameter_accepted)
{
	char *more = xasprintf("ignore_startup_parameters = %s\n", ignore_cases[_i]);
	struct harness_sluice *s = start_tx(1, more);
	free(more);
	PGconn *a = harness_connect(s, MD5USER " options='-c work_mem=1MB'");
	PGconn *direct = harness_connect(NULL, MD5USER);
	char *def = harness_query_text(direct, "SHOW work_mem");
	PQfinish(direct);
	/* Ignored means dropped: the server keeps its own value. */
	assert_show(a, "SHOW work_mem", def);
	free(def);
	PQfinish(a);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* ---- clients that vanish mid-transaction ---------------------------------------- */

static const struct abort_case {
	int pool_size;
	bool raw_shutdown; /* shutdown(2) on the socket instead of PQfinish's Terminate */
} abort_cases[] = {
	{ 1, false },
	{ 1, true },
	{ 2, false },
	{ 2, true },
};

START_TEST(test_relay_client_abort_mid_transaction_releases_locks)
{
	const struct abort_case *ac = &abort_cases[_i];
	struct harness_sluice *s = start_tx(ac->pool_size, NULL);
	PGconn *a = harness_connect(s, MD5USER);
	PGconn *b = harness_connect(s, MD5USER);
	exec_ok(b, "SELECT 1");

	exec_ok(a, "BEGIN ISOLATION LEVEL SERIALIZABLE");
	exec_ok(a, "LOCK TABLE items IN ACCESS EXCLUSIVE MODE");
	char *xid = harness_query_text(a, "SELECT txid_current()");
	char *pid_a = harness_query_text(a, "SELECT pg_backend_pid()");
	ck_assert_ptr_nonnull(xid);
	if (ac->raw_shutdown)
		ck_assert_int_eq(shutdown(PQsocket(a), SHUT_RDWR), 0);
	else
		PQfinish(a);

	/* b's first statement is outside any transaction of a's. */
	ck_assert_int_eq(PQsendQuery(b, "SELECT current_setting('transaction_isolation'), "
					"txid_current_if_assigned() IS NULL, "
					"now() = statement_timestamp(), pg_backend_pid()"),
		1);
	PGresult *r = next_result(b, 5000);
	ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
	ck_assert_str_eq(PQgetvalue(r, 0, 0), "read committed");
	ck_assert_str_eq(PQgetvalue(r, 0, 1), "t");
	ck_assert_str_eq(PQgetvalue(r, 0, 2), "t");
	ck_assert_str_ne(PQgetvalue(r, 0, 3), pid_a); /* a's backend is not handed on */
	PQclear(r);
	ck_assert_ptr_null(next_result(b, 5000));

	/* The lock is gone within a bounded time: a's transaction was rolled back. */
	exec_ok(b, "BEGIN");
	exec_ok(b, "SET LOCAL lock_timeout = '5s'");
	long t0 = harness_now_ms();
	exec_ok(b, "LOCK TABLE items IN ACCESS EXCLUSIVE MODE");
	ck_assert_int_lt(harness_now_ms() - t0, 5000);
	exec_ok(b, "COMMIT");
	/* The backend releases its locks as it rolls back, and leaves just after. */
	long gone_by = harness_now_ms() + 5000;
	while (harness_pg_exec_long("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", pid_a) !=
		       0 &&
	       harness_now_ms() < gone_by)
		harness_sleep_ms(20);
	ck_assert_int_eq(harness_pg_exec_long("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
				 pid_a),
		0);
	char *st = harness_pg_exec("SELECT txid_status(%s)", xid);
	ck_assert_str_eq(st, "aborted");
	free(st);
	free(xid);
	free(pid_a);
	if (ac->raw_shutdown)
		PQfinish(a);
	PQfinish(b);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/*
 * A client that asks for a 100 MB result and does not read it: sluice stops
 * reading from the server once the client's socket is full (backpressure),
 * so its memory stays bounded, and the whole result still arrives intact
 * when the client reads it.
 */
START_TEST(test_relay_slow_reader_keeps_sluice_memory_bounded)
{
	struct harness_sluice *s = start_tx(1, NULL);
	PGconn *conn = harness_connect(s, MD5USER);
	harness_expect_answer(conn, "SELECT 1", "1");
	long before = harness_sluice_rss_kib(s);
	ck_assert_int_eq(PQsendQuery(conn, "SELECT g, repeat('x', 1000) FROM generate_series(1, "
					   "100000) g"),
			 1);
	/* Long enough for PostgreSQL to have produced all of it if nothing held it back. */
	harness_sleep_ms(2000);
	long during = harness_sluice_rss_kib(s);
	ck_assert_msg(during - before < 20 * 1024,
		      "sluice grew by %ld KiB while the client did not read a 100 MB result",
		      during - before);
	long rows = 0, sum = 0;
	PGresult *res;
	while ((res = PQgetResult(conn)) != NULL) {
		ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
		for (int i = 0; i < PQntuples(res); i++) {
			ck_assert_int_eq(PQgetlength(res, i, 1), 1000);
			sum += atol(PQgetvalue(res, i, 0));
		}
		rows += PQntuples(res);
		PQclear(res);
	}
	ck_assert_int_eq(rows, 100000);
	ck_assert_int_eq(sum, 100000L * 100001L / 2);
	PQfinish(conn);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

static Suite *relay_suite(void)
{
	Suite *s = suite_create("relay");
	TCase *tc = harness_tcase("extended");
	tcase_add_test(tc, test_relay_exec_params_matches_direct);
	tcase_add_test(tc, test_relay_prepared_statement_in_one_transaction);
	tcase_add_test(tc, test_relay_large_results_identical_to_direct);
	tcase_add_test(tc, test_relay_multi_megabyte_insert_arrives_whole);
	tcase_add_test(tc, test_relay_slow_reader_keeps_sluice_memory_bounded);
	suite_add_tcase(s, tc);

	tc = harness_tcase("pipeline");
	tcase_add_test(tc, test_relay_pipeline_with_interleaving_client);
	tcase_add_test(tc, test_relay_client_gone_mid_pipeline_leaves_server_usable);
	suite_add_tcase(s, tc);

	tc = harness_tcase("copy");
	tcase_add_test(tc, test_relay_copy_in_and_out_and_server_reused);
	suite_add_tcase(s, tc);

	tc = harness_tcase("async");
	tcase_add_test(tc, test_relay_notice_reaches_client);
	tcase_add_test(tc, test_relay_listen_notify_in_session_mode);
	suite_add_tcase(s, tc);

	tc = harness_tcase("parameters");
	tcase_add_test(tc, test_relay_application_name_follows_each_client);
	tcase_add_test(tc, test_relay_timezone_and_datestyle_follow_each_client);
	tcase_add_test(tc, test_relay_equivalent_parameter_spelling_is_set_once);
	tcase_add_test(tc, test_relay_clients_with_the_same_parameters_need_no_set);
	tcase_add_test(tc, test_relay_untracked_startup_parameter_refused);
	tcase_add_loop_test(tc, test_relay_ignored_startup_parameter_accepted, 0,
		(int)ARRAY_SIZE(ignore_cases));
	suite_add_tcase(s, tc);

	tc = harness_tcase("abort");
	tcase_add_loop_test(tc, test_relay_client_abort_mid_transaction_releases_locks, 0,
		(int)ARRAY_SIZE(abort_cases));
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return harness_run_suite(relay_suite());
}
