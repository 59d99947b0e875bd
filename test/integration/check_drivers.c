/*
 * check_drivers.c - real client drivers through sluice's transaction pool:
 * psycopg 3, asyncpg, the PostgreSQL JDBC driver, node-postgres and
 * postgres.js each run a small program (test/drivers/) that uses protocol-level
 * named prepared statements the way the driver does by default, on several
 * connections that share one or two servers, so statements must be prepared
 * again on other servers and the drivers' connection-local names (_pg3_0,
 * S_1...) collide unless sluice renames them. A test passes when its program
 * exits 0 after printing its "OK" line and SHOW STATS shows that sluice
 * tracked the named statements (clients' Parses outnumber those sent to
 * servers).
 *
 * One more test runs all five programs again with TLS on both sides
 * (client_tls_sslmode = require refuses them in the clear, so passing proves
 * they used it, and server_tls_sslmode = require on the servers).
 *
 * It does not test sluice's statement tracking itself (check_prepared does,
 * with libpq), nor the drivers. A driver that is not installed fails its test:
 * scripts/setup.sh installs them all (Debian packages, and npm ci in
 * test/drivers for the node ones).
 *
 * Environment (set by meson): SLUICE_DRIVERS_SRC, the test/drivers directory;
 * SLUICE_DRIVERS_OUT, a build directory where the Java program is compiled.
 */
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define USERLIST "\"md5user\" \"md5userpw\"\n"
#define CONSOLE "dbname=pgbouncer user=md5user password=md5userpw"
/* Debian's python, which has python3-psycopg and python3-asyncpg (not a pyenv one on PATH). */
#define PYTHON "/usr/bin/python3"
#define JDBC_JAR "/usr/share/java/postgresql.jar"
/* Each program stops itself after 30 s; this is the bound if it does not. */
#define PROGRAM_TIMEOUT_MS 45000

/* ---- helpers ------------------------------------------------------------------------------ */

/*
 * Starts sluice in transaction mode with database app, whose pool holds
 * pool_size servers for md5user; md5user may use the console. extra is more
 * [sluice] lines, or NULL.
 */
static struct harness_sluice *start(int pool_size, const char *extra)
{
	char ini[512], dbs[256];
	snprintf(ini, sizeof(ini),
		"auth_type = md5\nadmin_users = md5user\npool_mode = transaction\n"
		"query_wait_timeout = 10\n%s",
		extra ? extra : "");
	snprintf(dbs, sizeof(dbs), "app = host=@PGHOST@ port=@PGPORT@ dbname=app pool_size=%d\n",
		pool_size);
	return harness_sluice_start(ini, dbs, USERLIST);
}

/* An environment variable meson sets for this suite; fails the test when it is missing. */
static const char *env_dir(const char *name)
{
	const char *v = getenv(name);
	ck_assert_msg(v != NULL && *v != '\0', "%s is not set (run the suite with meson test)",
		name);
	return v;
}

/* A path under test/drivers (heap). */
static char *driver_file(const char *name)
{
	return xasprintf("%s/%s", env_dir("SLUICE_DRIVERS_SRC"), name);
}

/* Fails the test, saying how to install it, unless path exists. */
static void require_installed(const char *path, const char *what)
{
	ck_assert_msg(access(path, F_OK) == 0,
		"%s is not installed (%s is missing): run scripts/setup.sh", what, path);
}

/* "require" while the TLS test runs: the programs connect with PGSSLMODE=require. */
static const char *programs_sslmode;

/*
 * Runs argv (NULL-terminated; argv[0] is looked up on PATH) with stdout and
 * stderr together into *out (heap). When port is not 0 the program gets
 * sluice's address and md5user's credentials for database app in PGHOST,
 * PGPORT, PGUSER, PGPASSWORD and PGDATABASE, and PGSSLMODE as
 * programs_sslmode says. Killed after PROGRAM_TIMEOUT_MS. Returns its exit
 * status, or -1 when it was killed or did not exit normally.
 */
static int run_program(char *const argv[], int port, char **out)
{
	char portstr[32], sslmode[64];
	snprintf(portstr, sizeof(portstr), "PGPORT=%d", port);
	if (programs_sslmode)
		snprintf(sslmode, sizeof(sslmode), "PGSSLMODE=%s", programs_sslmode);
	else
		snprintf(sslmode, sizeof(sslmode), "PGSSLMODE");
	/* The first six connect to sluice; the rest apply to every program. */
	const char *const env[] = { "PGHOST=127.0.0.1", portstr, "PGUSER=md5user",
		"PGPASSWORD=md5userpw", "PGDATABASE=" HARNESS_DATABASE, sslmode, "PGOPTIONS",
		"PGSERVICE", "PYTHONDONTWRITEBYTECODE=1" /* no __pycache__ in the source tree */,
		NULL };
	return harness_run_program(argv[0], argv, port ? env : env + 6, PROGRAM_TIMEOUT_MS, out);
}

/* Whether out has a line that starts with "OK ", the programs' success line. */
static bool printed_ok(const char *out)
{
	return strncmp(out, "OK ", 3) == 0 || strstr(out, "\nOK ") != NULL;
}

/* The last part of sluice's log (heap), for failure messages. */
static char *log_tail(const struct harness_sluice *s)
{
	char *log = harness_sluice_log(s);
	size_t len = strlen(log);
	if (len <= 3000)
		return log;
	char *tail = xasprintf("...%s", log + len - 3000);
	free(log);
	return tail;
}

/*
 * Runs a driver program against s (see run_program()) and fails the test,
 * with its output and sluice's log, unless it exits 0 having printed its OK
 * line, or when sluice logged a warning or an error meanwhile. Prints the
 * program's output for the test log.
 */
static void run_driver(const struct harness_sluice *s, const char *what, char *const argv[])
{
	char *out = NULL;
	int rc = run_program(argv, s->port, &out);
	if (rc != 0 || !printed_ok(out)) {
		char *log = log_tail(s);
		char *how = rc < 0 ? xasprintf("was killed after %d ms", PROGRAM_TIMEOUT_MS)
				   : xasprintf("exited with status %d", rc);
		ck_abort_msg("%s %s; its output:\n%s\n--- sluice log:\n%s", what, how, out, log);
	}
	fprintf(stderr, "%s: %s", what, out);
	free(out);
	/* The driver noticed nothing, and neither did sluice: no client or server failed. */
	char *log = harness_sluice_log(s);
	ck_assert_msg(strstr(log, " WARNING ") == NULL && strstr(log, " ERROR ") == NULL,
		"%s passed, but sluice logged problems:\n%s", what, log);
	free(log);
}

/* A SHOW STATS counter of database app. */
static long stat_of(PGconn *console, const char *col)
{
	return harness_show_long(console, "SHOW STATS", "database", "app", col);
}

/*
 * Asserts on SHOW STATS that the driver's statements were named statements
 * that sluice tracked: it saw at least min_binds Binds of named statements,
 * prepared some on servers, and answered more clients' Parses than it sent to
 * servers (the connections share statements on their servers).
 */
static void expect_tracked(const struct harness_sluice *s, long min_binds)
{
	PGconn *console = harness_connect(s, CONSOLE);
	long client_parses = stat_of(console, "total_client_parse_count");
	long server_parses = stat_of(console, "total_server_parse_count");
	long binds = stat_of(console, "total_bind_count");
	PQfinish(console);
	fprintf(stderr, "SHOW STATS: client parses %ld, server parses %ld, binds %ld\n",
		client_parses, server_parses, binds);
	ck_assert_msg(server_parses > 0, "no named statement reached a server (client parses %ld)",
		client_parses);
	ck_assert_msg(client_parses > server_parses,
		"client parses %ld not above server parses %ld", client_parses, server_parses);
	ck_assert_msg(binds >= min_binds, "%ld binds of named statements, want at least %ld", binds,
		min_binds);
}

/* ---- the drivers ------------------------------------------------------------------------- */

START_TEST(test_psycopg3_prepared_statements_in_transaction_mode)
{
	require_installed("/usr/lib/python3/dist-packages/psycopg", "psycopg 3 (python3-psycopg)");
	struct harness_sluice *s = start(1, NULL);
	char *prog = driver_file("psycopg_prepared.py");
	char *argv[] = { PYTHON, prog, NULL };
	run_driver(s, "psycopg_prepared.py", argv);
	free(prog);
	/* 12 rounds x 3 connections x 3 queries, most of them past the threshold, and more. */
	expect_tracked(s, 80);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_asyncpg_statement_cache_in_transaction_mode)
{
	require_installed("/usr/lib/python3/dist-packages/asyncpg", "asyncpg (python3-asyncpg)");
	struct harness_sluice *s = start(2, NULL);
	char *prog = driver_file("asyncpg_prepared.py");
	char *argv[] = { PYTHON, prog, NULL };
	run_driver(s, "asyncpg_prepared.py", argv);
	free(prog);
	/* Every query of asyncpg is a named statement: 4 connections x (2 x 45 + 15 + 8). */
	expect_tracked(s, 400);
	harness_sluice_stop_ok(s);
}
END_TEST

/*
 * Compiles JdbcPrepared.java into a directory of this process's under
 * SLUICE_DRIVERS_OUT and returns the class path to run it with (heap). Of
 * its own: drivers, drivers_w2 and drivers_uring run at once, and one's
 * javac rewriting a shared class file made another's JVM read it
 * truncated (ClassFormatError).
 */
static char *jdbc_compile(void)
{
	require_installed(JDBC_JAR, "the PostgreSQL JDBC driver (libpostgresql-jdbc-java)");
	char *src = driver_file("JdbcPrepared.java");
	const char *top = env_dir("SLUICE_DRIVERS_OUT");
	ck_assert_msg(mkdir(top, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", top,
		strerror(errno));
	char *outdir = xasprintf("%s/%d", top, (int)getpid());
	ck_assert_msg(mkdir(outdir, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", outdir,
		strerror(errno));
	char *compile_out = NULL;
	char *javac[] = { "javac", "-nowarn", "-d", outdir, "-cp", JDBC_JAR, src, NULL };
	int rc = run_program(javac, 0, &compile_out);
	ck_assert_msg(rc == 0, "javac (default-jdk-headless) exited %d:\n%s", rc, compile_out);
	free(compile_out);
	free(src);
	char *classpath = xasprintf("%s:%s", outdir, JDBC_JAR);
	free(outdir);
	return classpath;
}

/*
 * pgJDBC sends extra_float_digits in its startup packet, which PgBouncer
 * refuses unless ignore_startup_parameters names it; a pgbouncer.ini written
 * for JDBC says so explicitly, and its named statements must work.
 */
START_TEST(test_jdbc_server_prepared_statements_in_transaction_mode)
{
	char *classpath = jdbc_compile();
	struct harness_sluice *s = start(1, "ignore_startup_parameters = extra_float_digits\n");
	char *java[] = { "java", "-XX:TieredStopAtLevel=1", "-cp", classpath, "JdbcPrepared",
		NULL };
	run_driver(s, "JdbcPrepared", java);
	free(classpath);
	/* Past prepareThreshold (5), each of the ~200 executions binds S_n. */
	expect_tracked(s, 150);
	harness_sluice_stop_ok(s);
}
END_TEST

/*
 * The README says JDBC works unchanged: with sluice's default settings
 * (ignore_startup_parameters defaults to extra_float_digits), the driver's
 * startup packet must be accepted and its statements work.
 */
START_TEST(test_jdbc_connects_with_default_settings)
{
	char *classpath = jdbc_compile();
	struct harness_sluice *s = start(1, NULL);
	char *java[] = { "java", "-XX:TieredStopAtLevel=1", "-cp", classpath, "JdbcPrepared",
		NULL };
	run_driver(s, "JdbcPrepared (default settings)", java);
	free(classpath);
	expect_tracked(s, 150);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_node_postgres_named_statements_in_transaction_mode)
{
	char *module = driver_file("node_modules/pg/package.json");
	require_installed(module, "node-postgres (npm ci --prefix test/drivers)");
	free(module);
	struct harness_sluice *s = start(1, NULL);
	char *prog = driver_file("pg_prepared.js");
	char *argv[] = { "node", prog, NULL };
	run_driver(s, "pg_prepared.js", argv);
	free(prog);
	/* 12 rounds x (6 + 3) named queries, and 3 transactions of 14. */
	expect_tracked(s, 140);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_postgresjs_prepared_statements_in_transaction_mode)
{
	char *module = driver_file("node_modules/postgres/package.json");
	require_installed(module, "postgres.js (npm ci --prefix test/drivers)");
	free(module);
	struct harness_sluice *s = start(2, NULL);
	char *prog = driver_file("postgresjs_prepared.js");
	char *argv[] = { "node", prog, NULL };
	run_driver(s, "postgresjs_prepared.js", argv);
	free(prog);
	/* 4 waves of 60 parallel queries and 3 transactions of 12. */
	expect_tracked(s, 250);
	harness_sluice_stop_ok(s);
}
END_TEST

/*
 * Every driver again with TLS on both sides: sluice refuses clients in the
 * clear (client_tls_sslmode = require, over TCP), so each program's success
 * is proof it spoke TLS, and its servers are TLS too.
 */
START_TEST(test_every_driver_over_tls_on_both_sides)
{
	const char *d = harness_tls_dir();
	char *tls = xasprintf("client_tls_sslmode = require\nclient_tls_cert_file = %s/server.crt\n"
			      "client_tls_key_file = %s/server.key\nserver_tls_sslmode = require\n"
			      "ignore_startup_parameters = extra_float_digits\n",
		d, d);
	struct harness_sluice *s = start(2, tls);
	free(tls);
	programs_sslmode = "require";
	char *py = driver_file("psycopg_prepared.py"), *apy = driver_file("asyncpg_prepared.py");
	char *pgjs = driver_file("pg_prepared.js"), *pjs = driver_file("postgresjs_prepared.js");
	char *classpath = jdbc_compile();
	char *psycopg[] = { PYTHON, py, NULL }, *asyncpg[] = { PYTHON, apy, NULL };
	char *node_pg[] = { "node", pgjs, NULL }, *postgresjs[] = { "node", pjs, NULL };
	char *java[] = { "java", "-XX:TieredStopAtLevel=1", "-cp", classpath, "JdbcPrepared",
		NULL };
	run_driver(s, "psycopg_prepared.py over TLS", psycopg);
	run_driver(s, "asyncpg_prepared.py over TLS", asyncpg);
	run_driver(s, "JdbcPrepared over TLS", java);
	run_driver(s, "pg_prepared.js over TLS", node_pg);
	run_driver(s, "postgresjs_prepared.js over TLS", postgresjs);
	programs_sslmode = NULL;
	free(py);
	free(apy);
	free(pgjs);
	free(pjs);
	free(classpath);
	expect_tracked(s, 80 + 400 + 150 + 140 + 250);
	/* In the clear: refused (after the programs, whose check fails on a logged refusal). */
	char *err = harness_connect_error(s, "dbname=app user=md5user password=md5userpw "
					     "sslmode=disable");
	ck_assert_msg(strstr(err, "SSL required"), "%s", err);
	free(err);
	/* Every server login was TLS: PostgreSQL saw no session of md5user in the clear. */
	ck_assert_int_eq(harness_pg_exec_long("SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity "
					      "USING (pid) WHERE usename = 'md5user' AND NOT ssl"),
		0);
	ck_assert_int_gt(harness_pg_exec_long("SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity "
					      "USING (pid) WHERE usename = 'md5user' AND ssl"),
		0);
	harness_sluice_stop_ok(s);
}
END_TEST

static Suite *drivers_suite(void)
{
	Suite *s = suite_create("drivers");
	TCase *tc = harness_tcase("drivers");
	tcase_add_test(tc, test_psycopg3_prepared_statements_in_transaction_mode);
	tcase_add_test(tc, test_asyncpg_statement_cache_in_transaction_mode);
	tcase_add_test(tc, test_jdbc_server_prepared_statements_in_transaction_mode);
	tcase_add_test(tc, test_jdbc_connects_with_default_settings);
	tcase_add_test(tc, test_node_postgres_named_statements_in_transaction_mode);
	tcase_add_test(tc, test_postgresjs_prepared_statements_in_transaction_mode);
	tcase_add_test(tc, test_every_driver_over_tls_on_both_sides);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	/* PostgreSQL serves TLS too, for the test with TLS on both sides. */
	harness_pg_enable_ssl();
	return harness_run_suite(drivers_suite());
}
