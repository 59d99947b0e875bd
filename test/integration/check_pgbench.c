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
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define USERLIST "\"md5user\" \"md5userpw\"\n"

/* pgbench from PG_BINDIR when it is there, else whatever PATH finds. */
static char *pgbench_path(void)
{
	const char *dir = getenv("PG_BINDIR");
	if (dir) {
		char *p = xasprintf("%s/pgbench", dir);
		if (access(p, X_OK) == 0)
			return p;
		free(p);
	}
	return xstrdup("pgbench");
}

/*
 * Runs pgbench with argv (NULL-terminated, argv[0] ignored) as md5user with
 * PGPASSWORD set, collecting stdout and stderr together into *out (heap).
 * Kills it after timeout_ms. Returns its exit status, or -1 if killed or not
 * run.
 */
static int run_pgbench(char *const argv[], int timeout_ms, char **out)
{
	int pfd[2];
	ck_assert_int_eq(pipe(pfd), 0);
	char *bin = pgbench_path();
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		close(pfd[0]);
		close(pfd[1]);
		setenv("PGPASSWORD", "md5userpw", 1);
		unsetenv("PGOPTIONS");
		execvp(bin, (char *const *)argv);
		fprintf(stderr, "cannot run %s: %s\n", bin, strerror(errno));
		_exit(127);
	}
	free(bin);
	close(pfd[1]);

	size_t len = 0, cap = 4096;
	char *buf = xmalloc(cap);
	long deadline = harness_now_ms() + timeout_ms;
	bool killed = false;
	for (;;) {
		long left = deadline - harness_now_ms();
		if (left <= 0) {
			kill(pid, SIGKILL);
			killed = true;
			break;
		}
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		if (poll(&p, 1, (int)left) <= 0)
			continue;
		if (len + 1024 > cap) {
			cap *= 2;
			buf = xrealloc(buf, cap);
		}
		ssize_t n = read(pfd[0], buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	close(pfd[0]);
	int status = 0;
	waitpid(pid, &status, 0);
	*out = buf;
	if (killed || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

/*
 * pgbench -i -s 1 directly on PostgreSQL, as md5user, in database app, unless
 * an earlier test of this executable did it already (the tables outlive a
 * test; the checks below hold for any number of earlier runs).
 */
static void init_pgbench_tables(void)
{
	char *exists = harness_pg_exec("SELECT to_regclass('pgbench_accounts')::text");
	bool done_before = exists != NULL;
	free(exists);
	if (done_before)
		return;
	char port[16];
	snprintf(port, sizeof(port), "%d", harness_pg()->port);
	char *const argv[] = { "pgbench", "-i", "-s", "1", "-q", "-h", "127.0.0.1", "-p", port,
		"-U", "md5user", "app", NULL };
	char *out = NULL;
	int rc = run_pgbench(argv, 60000, &out);
	ck_assert_msg(rc == 0, "pgbench -i exited %d:\n%s", rc, out);
	free(out);
	ck_assert_int_eq(harness_pg_exec_long("SELECT count(*) FROM pgbench_accounts"), 100000);
}

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
	init_pgbench_tables();
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
	int rc = run_pgbench(argv, 30000, &out);
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
