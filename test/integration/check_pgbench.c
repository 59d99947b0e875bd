/*
 * check_pgbench.c - a pgbench smoke run through sluice in transaction mode:
 * pgbench's tables are created directly on PostgreSQL, then eight clients on
 * two threads run the TPC-B-like script with the simple and the extended
 * protocol, and the select-only script, through a pool smaller than the
 * number of clients. Every run must exit 0 with no failed transaction, and
 * sluice must shut down cleanly afterwards.
 *
 * It does not measure performance; it proves that a real, concurrent,
 * protocol-heavy client works end to end. pgbench is found in
 * `pg_config --bindir` ($PG_BINDIR) or on PATH.
 */
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define USERLIST "\"md5user\" \"md5userpw\"\n"

static const struct bench_case {
	const char *name;
	const char *mode; /* -M */
	bool select_only; /* -S */
} bench_cases[] = {
	{ "tpcb-simple", "simple", false },
	{ "tpcb-extended", "extended", false },
	{ "select-only-simple", "simple", true },
	{ "select-only-extended", "extended", true },
};

START_TEST(test_pgbench_runs_through_transaction_pool_without_failures)
{
	const struct bench_case *bc = &bench_cases[_i];
	harness_pgbench_init();
	long history_before = harness_pg_exec_long("SELECT count(*) FROM pgbench_history");

	struct harness_sluice *s = harness_sluice_start(
		"pool_mode = transaction\nauth_type = md5\ndefault_pool_size = 3\n"
		"query_wait_timeout = 20\n",
		NULL, USERLIST);
	char port[16];
	snprintf(port, sizeof(port), "%d", s->port);
	char *argv[24];
	int n = 0;
	argv[n++] = "pgbench";
	argv[n++] = "-n";
	argv[n++] = "-c";
	argv[n++] = "8";
	argv[n++] = "-j";
	argv[n++] = "2";
	argv[n++] = "-T";
	argv[n++] = "3";
	argv[n++] = "-M";
	argv[n++] = (char *)bc->mode;
	if (bc->select_only)
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
	int rc = harness_run_pgbench(argv, 30000, &out);
	ck_assert_msg(rc == 0, "%s: pgbench exited %d:\n%s", bc->name, rc, out);
	ck_assert_msg(strstr(out, "number of failed transactions: 0 ") != NULL,
		"%s: failures reported:\n%s", bc->name, out);
	/* It did real work: a "number of transactions actually processed: N/N" above zero. */
	const char *p = strstr(out, "number of transactions actually processed: ");
	ck_assert_msg(p != NULL, "%s:\n%s", bc->name, out);
	long done = strtol(p + strlen("number of transactions actually processed: "), NULL, 10);
	ck_assert_msg(done > 0, "%s: no transaction processed:\n%s", bc->name, out);
	free(out);

	/* The TPC-B script moves money between rows; the books must still balance. */
	if (!bc->select_only) {
		long tellers = harness_pg_exec_long("SELECT sum(tbalance) FROM pgbench_tellers");
		long branches = harness_pg_exec_long("SELECT sum(bbalance) FROM pgbench_branches");
		long accounts = harness_pg_exec_long("SELECT sum(abalance) FROM pgbench_accounts");
		ck_assert_int_eq(tellers, branches);
		ck_assert_int_eq(tellers, accounts);
		ck_assert_int_eq(harness_pg_exec_long("SELECT count(*) FROM pgbench_history"),
			history_before + done);
	}
	/* The pool stayed within its size. */
	ck_assert_int_le(harness_pg_exec_long("SELECT count(*) FROM pg_stat_activity "
					      "WHERE usename = 'md5user'"),
		3);

	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

static Suite *pgbench_suite(void)
{
	Suite *s = suite_create("pgbench");
	TCase *tc = harness_tcase("pgbench");
	tcase_add_loop_test(tc, test_pgbench_runs_through_transaction_pool_without_failures, 0,
		(int)ARRAY_SIZE(bench_cases));
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return harness_run_suite(pgbench_suite());
}
