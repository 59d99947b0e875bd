/*
 * check_signals.c - sluice's process life: SIGHUP reloads the ini and the
 * auth file (and keeps the old configuration when the new one is broken),
 * SIGTERM and SIGINT shut down once clients or servers are done (at once on
 * the second signal), -d daemonizes with a pidfile, and the command line
 * reports bad or missing configuration files and answers -V and --help.
 *
 * It does not test which settings are reloadable one by one (the config unit
 * tests and doc/config.md cover the table).
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TRUST_USERLIST "\"trustuser\" \"trustuserpw\"\n"
#define CONNINFO "dbname=app user=trustuser"

static void write_file(const char *path, const char *text)
{
	/* Write a new file and rename it, as an editor or a deploy tool would. */
	char *tmp = xasprintf("%s.new", path);
	FILE *f = fopen(tmp, "w");
	ck_assert_msg(f != NULL, "cannot write %s", tmp);
	fputs(text, f);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(rename(tmp, path), 0);
	free(tmp);
}

/* Sends SIGHUP and waits until the log shows one more reload outcome. */
static void reload_and_wait(struct harness_sluice *s, const char *outcome)
{
	int before = harness_sluice_log_count(s, outcome);
	harness_sluice_signal(s, SIGHUP);
	long deadline = harness_now_ms() + 5000;
	while (harness_sluice_log_count(s, outcome) <= before) {
		ck_assert_msg(harness_now_ms() < deadline, "no '%s' in the log after SIGHUP", outcome);
		usleep(20 * 1000);
	}
}

/* ---- SIGHUP ------------------------------------------------------------------ */

START_TEST(test_sighup_applies_new_pool_size_and_new_database)
{
	struct harness_sluice *s = harness_sluice_start("auth_type = trust\npool_mode = session\n"
							"default_pool_size = 1\nquery_wait_timeout = 1\n",
		"app = host=@PGHOST@ port=@PGPORT@ dbname=app\n", TRUST_USERLIST);
	PGconn *holder = harness_connect(s, CONNINFO);
	/* holds the pool's only server (session mode) */
	harness_expect_answer(holder, "SELECT count(*) FROM items", "3");
	PGconn *waiter = harness_connect(s, CONNINFO);
	char *err = harness_query_error(waiter, "SELECT 1");
	ck_assert_msg(strstr(err, "query_wait_timeout") != NULL, "%s", err);
	free(err);
	PQfinish(waiter);
	err = harness_connect_error(s, "dbname=app2 user=trustuser");
	ck_assert_msg(strstr(err, "app2") != NULL, "%s", err);
	free(err);

	char *app2 = xasprintf("[databases]\napp2 = host=127.0.0.1 port=%d dbname=app\n",
		harness_pg()->port);
	harness_sluice_edit_ini(s, "default_pool_size = 1\n", "default_pool_size = 2\n");
	harness_sluice_edit_ini(s, "[databases]\n", app2);
	free(app2);
	reload_and_wait(s, "configuration reloaded");

	/* A second server is now allowed while the holder keeps the first. */
	PGconn *second = harness_connect(s, CONNINFO);
	harness_expect_answer(second, "SELECT count(*) FROM items", "3");
	PQfinish(second);
	PGconn *other_db = harness_connect(s, "dbname=app2 user=trustuser");
	char *db = harness_query_text(other_db, "SELECT current_database()");
	ck_assert_str_eq(db, "app");
	free(db);
	PQfinish(other_db);
	harness_expect_answer(holder, "SELECT count(*) FROM items", "3");
	PQfinish(holder);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_sighup_with_broken_ini_keeps_old_config)
{
	struct harness_sluice *s = harness_sluice_start("auth_type = trust\n", NULL,
		TRUST_USERLIST);
	PGconn *before = harness_connect(s, CONNINFO);
	harness_expect_answer(before, "SELECT count(*) FROM items", "3");

	harness_sluice_edit_ini(s, "[databases]\n", "no_such_setting = 1\n[databases]\n");
	reload_and_wait(s, "reload failed");
	char *log = harness_sluice_log(s);
	ck_assert_msg(strstr(log, "no_such_setting") != NULL, "%s", log);
	/* The message names the file and line, file:line: style. */
	char *where = xasprintf("%s:", s->ini_path);
	ck_assert_msg(strstr(log, where) != NULL, "%s", log);
	free(where);
	free(log);

	harness_expect_answer(before, "SELECT count(*) FROM items", "3");
	PQfinish(before);
	PGconn *after = harness_connect(s, CONNINFO);
	harness_expect_answer(after, "SELECT count(*) FROM items", "3");
	PQfinish(after);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_sighup_reloads_auth_file)
{
	struct harness_sluice *s = harness_sluice_start("auth_type = md5\n", NULL,
		"\"md5user\" \"md5userpw\"\n");
	PGconn *md5 = harness_connect(s, "dbname=app user=md5user password=md5userpw");
	harness_expect_answer(md5, "SELECT count(*) FROM items", "3");
	PQfinish(md5);
	char *err = harness_connect_error(s, "dbname=app user=scramuser password=scramuserpw");
	free(err);

	char *path = xasprintf("%s/userlist.txt", s->dir);
	write_file(path, "\"md5user\" \"md5userpw\"\n\"scramuser\" \"scramuserpw\"\n");
	free(path);
	reload_and_wait(s, "configuration reloaded");

	PGconn *scram = harness_connect(s, "dbname=app user=scramuser password=scramuserpw");
	char *who = harness_query_text(scram, "SELECT current_user");
	ck_assert_str_eq(who, "scramuser");
	free(who);
	PQfinish(scram);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* ---- SIGTERM, SIGINT ------------------------------------------------------------ */

START_TEST(test_sigterm_serves_connected_client_refuses_new_and_exits_0)
{
	struct harness_sluice *s = harness_sluice_start("auth_type = trust\n", NULL,
		TRUST_USERLIST);
	PGconn *conn = harness_connect(s, CONNINFO);
	harness_expect_answer(conn, "SELECT count(*) FROM items", "3");
	harness_sluice_signal(s, SIGTERM);
	ck_assert(harness_sluice_log_wait(s, "SIGTERM", 5000));

	char *err = harness_connect_error(s, CONNINFO);
	char *log = harness_sluice_log(s);
	/*
	 * Refused, told so, or reset: a connection that reached the backlog just
	 * before the listener closed is reset when it closes.
	 */
	ck_assert_msg(strstr(err, "refused") != NULL || strstr(err, "shutting down") != NULL ||
			strstr(err, "closed the connection") != NULL ||
			strstr(err, "reset by peer") != NULL,
		"%s\n%s", err, log);
	free(log);
	free(err);
	harness_expect_answer(conn, "SELECT count(*) FROM items", "3");
	ck_assert_int_eq(harness_sluice_wait(s, 300), -1);
	harness_expect_answer(conn, "SELECT count(*) FROM items", "3");

	PQfinish(conn);
	ck_assert_int_eq(harness_sluice_wait(s, 5000), 0);
	harness_sluice_free(s);
}
END_TEST

/*
 * The sidecar story of doc/deploy.md: Kubernetes sends SIGTERM to sluice
 * while the application (pgbench here, 4 connections running TPC-B
 * transactions in transaction mode) is still working. Its transactions all
 * complete on the connections it has; a new connection is refused; /ready
 * answers 503 while /health stays 200; sluice exits 0 once the application
 * has gone, well within a grace period.
 */
START_TEST(test_sigterm_lets_a_running_application_finish)
{
	harness_pgbench_init();
	int http = harness_free_port();
	char *ini = xasprintf("pool_mode = transaction\nauth_type = md5\ndefault_pool_size = 2\n"
			      "metrics_port = %d\n",
		http);
	struct harness_sluice *s = harness_sluice_start(ini, NULL, "\"md5user\" \"md5userpw\"\n");
	free(ini);
	char port[16];
	snprintf(port, sizeof(port), "%d", s->port);
	char *out_path = xasprintf("%s/pgbench.out", s->dir);
	pid_t app = fork();
	ck_assert_int_ge(app, 0);
	if (app == 0) {
		char *argv[] = { "pgbench", "-n", "-c", "4", "-j", "2", "-T", "4", "-h", "127.0.0.1",
			"-p", port, "-U", "md5user", "app", NULL };
		char *out = NULL;
		int rc = harness_run_pgbench(argv, 30000, &out);
		FILE *f = fopen(out_path, "w");
		if (f) {
			fputs(out ? out : "", f);
			fclose(f);
		}
		_exit(rc == 0 ? 0 : 1);
	}
	/* The application is busy when the pod is deleted. */
	harness_sleep_ms(1500);
	char *ready = harness_http_get(http, "/ready");
	ck_assert_msg(ready && strstr(ready, " 200 "), "%s", ready ? ready : "(nothing)");
	free(ready);
	harness_sluice_signal(s, SIGTERM);
	ck_assert(harness_sluice_log_wait(s, "SIGTERM", 5000));
	ready = harness_http_get(http, "/ready");
	ck_assert_msg(ready && strstr(ready, " 503 ") && strstr(ready, "shutting down"), "%s",
		ready ? ready : "(nothing)");
	free(ready);
	char *health = harness_http_get(http, "/health");
	ck_assert_msg(health && strstr(health, " 200 "), "%s", health ? health : "(nothing)");
	free(health);
	/* A new connection during the grace period: refused, as documented. */
	char *err = harness_connect_error(s, "dbname=app user=md5user password=md5userpw");
	ck_assert_msg(strstr(err, "refused") || strstr(err, "shutting down") ||
			      strstr(err, "closed the connection"),
		"%s", err);
	free(err);

	int status;
	ck_assert_int_eq(waitpid(app, &status, 0), app);
	char *out = harness_read_file(out_path);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "pgbench failed:\n%s", out);
	ck_assert_msg(strstr(out, "number of failed transactions: 0 ") != NULL, "%s", out);
	const char *p = strstr(out, "number of transactions actually processed: ");
	ck_assert_msg(p && strtol(p + strlen("number of transactions actually processed: "), NULL,
				   10) > 0,
		"%s", out);
	free(out);
	free(out_path);
	/* The application is gone: sluice follows at once, with status 0. */
	ck_assert_int_eq(harness_sluice_wait(s, 5000), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_second_sigterm_exits_promptly_with_clients)
{
	struct harness_sluice *s = harness_sluice_start("auth_type = trust\n", NULL,
		TRUST_USERLIST);
	PGconn *conn = harness_connect(s, CONNINFO);
	free(harness_query_text(conn, "BEGIN"));
	harness_expect_answer(conn, "SELECT count(*) FROM items", "3");
	harness_sluice_signal(s, SIGTERM);
	ck_assert(harness_sluice_log_wait(s, "SIGTERM", 5000));
	ck_assert_int_eq(harness_sluice_wait(s, 200), -1);
	harness_sluice_signal(s, SIGTERM);
	ck_assert_int_eq(harness_sluice_wait(s, 2000), 0);
	/* The client is told, and its connection is gone. */
	char *err = harness_query_error(conn, "SELECT 1");
	free(err);
	PQfinish(conn);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_sigint_with_idle_client_exits_promptly)
{
	struct harness_sluice *s = harness_sluice_start("auth_type = trust\n"
							"pool_mode = transaction\n",
		NULL, TRUST_USERLIST);
	PGconn *conn = harness_connect(s, CONNINFO);
	/* no transaction open: its server is back in the pool */
	harness_expect_answer(conn, "SELECT count(*) FROM items", "3");
	harness_sluice_signal(s, SIGINT);
	ck_assert_int_eq(harness_sluice_wait(s, 2000), 0);
	PQfinish(conn);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_sigint_waits_for_open_transaction)
{
	struct harness_sluice *s = harness_sluice_start("auth_type = trust\n"
							"pool_mode = transaction\n",
		NULL, TRUST_USERLIST);
	PGconn *conn = harness_connect(s, CONNINFO);
	free(harness_query_text(conn, "BEGIN"));
	harness_expect_answer(conn, "SELECT count(*) FROM items", "3");
	harness_sluice_signal(s, SIGINT);
	ck_assert(harness_sluice_log_wait(s, "SIGINT", 5000));
	ck_assert_int_eq(harness_sluice_wait(s, 300), -1);
	harness_expect_answer(conn, "SELECT count(*) FROM items", "3");
	free(harness_query_text(conn, "COMMIT"));
	ck_assert_int_eq(harness_sluice_wait(s, 2000), 0);
	PQfinish(conn);
	harness_sluice_free(s);
}
END_TEST

/* SIGUSR1 pauses as PAUSE does, SIGUSR2 resumes; SIGUSR2 during a shutdown is ignored. */
START_TEST(test_sigusr1_pauses_and_sigusr2_resumes)
{
	struct harness_sluice *s = harness_sluice_start("auth_type = trust\npool_mode = transaction\n", NULL,
		TRUST_USERLIST);
	PGconn *conn = harness_connect(s, CONNINFO);
	harness_expect_answer(conn, "SELECT 1", "1");
	harness_sluice_signal(s, SIGUSR1);
	ck_assert(harness_sluice_log_wait(s, "SIGUSR1: pausing", 5000));
	ck_assert_int_eq(PQsendQuery(conn, "SELECT 2"), 1);
	harness_sleep_ms(500);
	ck_assert_int_eq(PQconsumeInput(conn), 1);
	ck_assert_msg(PQisBusy(conn), "the query ran while paused");
	harness_sluice_signal(s, SIGUSR2);
	PGresult *res = PQgetResult(conn);
	ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	ck_assert_str_eq(PQgetvalue(res, 0, 0), "2");
	PQclear(res);
	ck_assert_ptr_null(PQgetResult(conn));
	ck_assert(harness_sluice_log_wait(s, "SIGUSR2: resuming", 5000));

	harness_sluice_signal(s, SIGTERM);
	ck_assert(harness_sluice_log_wait(s, "SIGTERM", 5000));
	harness_sluice_signal(s, SIGUSR2);
	ck_assert(harness_sluice_log_wait(s, "got SIGUSR2 while shutting down, ignoring", 5000));
	harness_expect_answer(conn, "SELECT 3", "3");
	PQfinish(conn);
	ck_assert_int_eq(harness_sluice_wait(s, 5000), 0);
	harness_sluice_free(s);
}
END_TEST

/* SIGQUIT exits at once, clients or not (PgBouncer's harness stops it so). */
START_TEST(test_sigquit_exits_at_once)
{
	struct harness_sluice *s = harness_sluice_start("auth_type = trust\n", NULL,
		TRUST_USERLIST);
	PGconn *conn = harness_connect(s, CONNINFO);
	PQclear(PQexec(conn, "BEGIN"));
	harness_sluice_signal(s, SIGQUIT);
	ck_assert_int_eq(harness_sluice_wait(s, 5000), 0);
	PQfinish(conn);
	harness_sluice_free(s);
}
END_TEST

/* ---- the command line ----------------------------------------------------------- */

/* Runs $SLUICE_BIN with args (a shell word list); returns its exit status and output. */
static int run_sluice(const char *args, char *out, size_t outlen)
{
	const char *bin = getenv("SLUICE_BIN");
	ck_assert_ptr_nonnull(bin);
	char *cmd = xasprintf("'%s' %s 2>&1 </dev/null", bin, args);
	FILE *p = popen(cmd, "r");
	free(cmd);
	ck_assert_ptr_nonnull(p);
	size_t n = fread(out, 1, outlen - 1, p);
	out[n] = '\0';
	int status = pclose(p);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

START_TEST(test_version_and_help_exit_0)
{
	char out[4096];
	ck_assert_int_eq(run_sluice("-V", out, sizeof(out)), 0);
	ck_assert_msg(strncmp(out, "PgBouncer ", 10) == 0 && strstr(out, "\nsluice "), "%s", out);
	ck_assert_int_eq(run_sluice("--version", out, sizeof(out)), 0);
	/* PgBouncer's test harness checks that the first line is SHOW VERSION's. */
	struct harness_sluice *s = harness_sluice_start("auth_type = trust\nadmin_users = trustuser\n",
		NULL, "\"trustuser\" \"x\"\n");
	PGconn *c = harness_connect(s, "dbname=pgbouncer user=trustuser");
	char *version = harness_query_text(c, "SHOW VERSION");
	size_t first = strcspn(out, "\n");
	ck_assert_msg(strlen(version) == first && strncmp(out, version, first) == 0,
		"--version says %.*s, SHOW VERSION %s", (int)first, out, version);
	free(version);
	PQfinish(c);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
	ck_assert_int_eq(run_sluice("--help", out, sizeof(out)), 0);
	ck_assert_msg(strstr(out, "Usage") != NULL, "%s", out);
	ck_assert_int_ne(run_sluice("--no-such-option", out, sizeof(out)), 0);
	/* PgBouncer's -R is an option (check_restart runs it): --help names it. */
	ck_assert_int_eq(run_sluice("--help", out, sizeof(out)), 0);
	ck_assert_msg(strstr(out, "-R, --reboot") != NULL, "%s", out);
}
END_TEST

START_TEST(test_missing_config_file_is_reported_and_exits_nonzero)
{
	char *path = xasprintf("%s/does-not-exist.ini", harness_pg()->dir);
	char out[4096];
	char *args = xasprintf("'%s'", path);
	int rc = run_sluice(args, out, sizeof(out));
	free(args);
	ck_assert_int_ne(rc, 0);
	ck_assert_msg(strstr(out, path) != NULL, "%s", out);
	free(path);
}
END_TEST

static const struct bad_ini_case {
	const char *text;
	int line;
	const char *mentions;
} bad_ini_cases[] = {
	{ "[sluice]\nlisten_port = seventy\n", 2, "listen_port" },
	{ "[sluice]\nlisten_port = 7000\nno_such_key = 1\n", 3, "no_such_key" },
	{ "[sluice]\n[databases]\napp = host=db port=nope\n", 3, "port" },
	{ "[sluice]\n[nonsense]\nkey = 1\n", 2, "nonsense" },
	{ "[sluice]\nthis line has no equals sign\n", 2, "" },
};

START_TEST(test_invalid_config_file_reports_file_and_line)
{
	const struct bad_ini_case *bc = &bad_ini_cases[_i];
	char *path = xasprintf("%s/bad-%d-%d.ini", harness_pg()->dir, (int)getpid(), _i);
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(bc->text, f);
	fclose(f);
	char out[4096];
	char *args = xasprintf("'%s'", path);
	int rc = run_sluice(args, out, sizeof(out));
	free(args);
	unlink(path);
	ck_assert_int_ne(rc, 0);
	char *where = xasprintf("%s:%d:", path, bc->line);
	ck_assert_msg(strstr(out, where) != NULL, "expected '%s' in: %s", where, out);
	ck_assert_msg(strstr(out, bc->mentions) != NULL, "expected '%s' in: %s", bc->mentions,
		out);
	free(where);
	free(path);
}
END_TEST

static bool pid_alive(pid_t pid)
{
	return kill(pid, 0) == 0 || errno != ESRCH;
}

START_TEST(test_daemon_writes_pidfile_and_removes_it_at_exit)
{
	const char *bin = getenv("SLUICE_BIN");
	ck_assert_ptr_nonnull(bin);
	char *dir = xasprintf("%s/daemon-%d", harness_pg()->dir, (int)getpid());
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	char *ini = xasprintf("%s/sluice.ini", dir);
	char *pidfile = xasprintf("%s/sluice.pid", dir);
	char *logfile = xasprintf("%s/sluice.log", dir);
	char *userlist = xasprintf("%s/userlist.txt", dir);
	FILE *f = fopen(userlist, "w");
	ck_assert_ptr_nonnull(f);
	fputs(TRUST_USERLIST, f);
	fclose(f);
	int port = harness_free_port();
	f = fopen(ini, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f,
		"[sluice]\nlisten_addr = 127.0.0.1\nlisten_port = %d\nunix_socket_dir = %s\n"
		"pidfile = %s\nlogfile = %s\nauth_type = trust\nauth_file = %s\n"
		"[databases]\napp = host=127.0.0.1 port=%d dbname=app\n",
		port, dir, pidfile, logfile, userlist, harness_pg()->port);
	fclose(f);

	pid_t child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		execl(bin, bin, "-d", ini, (char *)NULL);
		_exit(127);
	}
	int status;
	ck_assert_int_eq(waitpid(child, &status, 0), child);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "sluice -d exited %d", status);

	/* The daemon writes the pidfile once it has detached. */
	long deadline = harness_now_ms() + 5000;
	pid_t pid = 0;
	while (pid <= 0 && harness_now_ms() < deadline) {
		FILE *pf = fopen(pidfile, "r");
		if (pf) {
			int v = 0;
			if (fscanf(pf, "%d", &v) == 1)
				pid = v;
			fclose(pf);
		}
		if (pid <= 0)
			usleep(20 * 1000);
	}
	ck_assert_msg(pid > 0, "no pidfile %s", pidfile);
	ck_assert_int_ne(pid, child); /* the daemon is the forked grandchild */
	ck_assert(pid_alive(pid));

	char *conninfo = xasprintf("host=127.0.0.1 port=%d connect_timeout=5 " CONNINFO, port);
	PGconn *conn = PQconnectdb(conninfo);
	free(conninfo);
	bool served = PQstatus(conn) == CONNECTION_OK;
	if (served) {
		PGresult *res = PQexec(conn, "SELECT 1");
		served = PQresultStatus(res) == PGRES_TUPLES_OK;
		PQclear(res);
	}
	PQfinish(conn);

	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	deadline = harness_now_ms() + 5000;
	while (pid_alive(pid) && harness_now_ms() < deadline)
		usleep(20 * 1000);
	bool exited = !pid_alive(pid);
	if (!exited)
		kill(pid, SIGKILL);
	ck_assert_msg(served, "the daemon did not serve a client");
	ck_assert_msg(exited, "the daemon did not exit after SIGTERM");
	ck_assert_msg(access(pidfile, F_OK) != 0, "pidfile %s left behind", pidfile);
	char *log = harness_read_file(logfile);
	ck_assert_msg(strstr(log, "sluice stopped") != NULL, "%s", log);
	/* The daemon's lines carry its own pid (sluice keeps it, and learns it again after the fork). */
	char *own = xasprintf(" %d LOG C-", (int)pid);
	ck_assert_msg(strstr(log, own) != NULL, "no client line with the daemon's pid %d:\n%s",
		      (int)pid, log);
	free(own);
	free(log);
	unlink(logfile);
	unlink(userlist);
	unlink(ini);
	rmdir(dir);
	free(dir);
	free(ini);
	free(pidfile);
	free(logfile);
	free(userlist);
}
END_TEST

/*
 * A start that fails (here: the port is taken) leaves the pidfile alone: the
 * file it names may be the running instance's, whose port it is.
 */
START_TEST(test_failed_start_leaves_the_pidfile_of_another_instance)
{
	const char *bin = getenv("SLUICE_BIN");
	ck_assert_ptr_nonnull(bin);
	char *dir = xasprintf("%s/pidfile-%d", harness_pg()->dir, (int)getpid());
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	char *ini = xasprintf("%s/sluice.ini", dir);
	char *pidfile = xasprintf("%s/sluice.pid", dir);
	FILE *f = fopen(pidfile, "w");
	ck_assert_ptr_nonnull(f);
	fputs("4242\n", f);
	fclose(f);

	/* The port is taken by a listening socket of the test's own. */
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(lfd, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(lfd, 1), 0);
	socklen_t len = sizeof(sa);
	ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
	f = fopen(ini, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f,
		"[sluice]\nlisten_addr = 127.0.0.1\nlisten_port = %d\nunix_socket_dir =\n"
		"pidfile = %s\nauth_type = trust\n"
		"[databases]\napp = host=127.0.0.1 port=%d dbname=app\n",
		ntohs(sa.sin_port), pidfile, harness_pg()->port);
	fclose(f);

	pid_t child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, STDERR_FILENO);
		execl(bin, bin, ini, (char *)NULL);
		_exit(127);
	}
	int status;
	ck_assert_int_eq(waitpid(child, &status, 0), child);
	close(lfd);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 1, "sluice exited %d", status);
	char *content = harness_read_file(pidfile);
	ck_assert_str_eq(content, "4242\n");
	free(content);
	unlink(pidfile);
	unlink(ini);
	rmdir(dir);
	free(dir);
	free(ini);
	free(pidfile);
}
END_TEST

static Suite *signals_suite(void)
{
	Suite *s = suite_create("signals");
	TCase *tc = harness_tcase("reload");
	tcase_add_test(tc, test_sighup_applies_new_pool_size_and_new_database);
	tcase_add_test(tc, test_sighup_with_broken_ini_keeps_old_config);
	tcase_add_test(tc, test_sighup_reloads_auth_file);
	suite_add_tcase(s, tc);

	tc = harness_tcase("shutdown");
	tcase_add_test(tc, test_sigterm_serves_connected_client_refuses_new_and_exits_0);
	tcase_add_test(tc, test_sigterm_lets_a_running_application_finish);
	tcase_add_test(tc, test_second_sigterm_exits_promptly_with_clients);
	tcase_add_test(tc, test_sigint_with_idle_client_exits_promptly);
	tcase_add_test(tc, test_sigusr1_pauses_and_sigusr2_resumes);
	tcase_add_test(tc, test_sigquit_exits_at_once);
	tcase_add_test(tc, test_sigint_waits_for_open_transaction);
	suite_add_tcase(s, tc);

	tc = harness_tcase("command_line");
	tcase_add_test(tc, test_version_and_help_exit_0);
	tcase_add_test(tc, test_missing_config_file_is_reported_and_exits_nonzero);
	tcase_add_loop_test(tc, test_invalid_config_file_reports_file_and_line, 0,
		(int)ARRAY_SIZE(bad_ini_cases));
	tcase_add_test(tc, test_daemon_writes_pidfile_and_removes_it_at_exit);
	tcase_add_test(tc, test_failed_start_leaves_the_pidfile_of_another_instance);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return harness_run_suite(signals_suite());
}
