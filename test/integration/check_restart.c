/*
 * check_restart.c - online restart (takeover.h), seen from outside: `sluice
 * -R` and the console's RESTART move the listening sockets and every client
 * that can move to a new process, with their sessions, at transaction
 * boundaries; clients never see it. What cannot move stays with the old
 * process until it leaves, and a takeover that fails leaves the old process
 * serving.
 */
#include "harness.h"
#include "sluice/handover.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define USERLIST "\"trustuser\" \"x\"\n\"md5user\" \"md5userpw\"\n"
#define INI                                                                                        \
	"auth_type = trust\nadmin_users = trustuser\npool_mode = transaction\n"                    \
	"pidfile = @DIR@/sluice.pid\n"
#define ADMIN_CONN "dbname=pgbouncer user=trustuser"
#define STR(x) #x
#define XSTR(x) STR(x)
/* The command a successor of this very version sends. */
#define TAKEOVER_THIS "TAKEOVER " XSTR(HANDOVER_VERSION)

static struct harness_sluice *start(const char *extra)
{
	char ini[512];
	snprintf(ini, sizeof(ini), "%s%s", INI, extra ? extra : "");
	return harness_sluice_start(ini, NULL, USERLIST);
}

static long pidfile_pid(const struct harness_sluice *s)
{
	char *path = xasprintf("%s/sluice.pid", s->dir);
	char *text = harness_read_file(path);
	free(path);
	long pid = text ? strtol(text, NULL, 10) : 0;
	free(text);
	return pid;
}

START_TEST(test_a_client_moves_with_its_session)
{
	struct harness_sluice *s = start("metrics_port = 0\n");
	pid_t old = s->pid;
	PGconn *a = harness_connect(s, "dbname=app user=trustuser application_name=mover");
	PGresult *r = PQprepare(a, "s1", "SELECT $1::int + 1", 1, NULL);
	ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s", PQerrorMessage(a));
	PQclear(r);
	harness_command_ok(a, "SET DateStyle = 'ISO, DMY'", "SET");
	int key_pid = PQbackendPID(a);
	PGconn *console = harness_connect(s, ADMIN_CONN);
	char *id = harness_show_value(console, "SHOW CLIENTS", "application_name", "mover", "id");
	PQfinish(console);

	ck_assert_int_eq(harness_sluice_reboot(s, NULL, 10000), 0);
	ck_assert_int_ne(s->pid, old);
	ck_assert_int_eq(pidfile_pid(s), s->pid);
	ck_assert(harness_sluice_log_count(s, "1 client(s) handed over") == 1);

	/* The same connection: its statement, its settings, its cancel key. */
	const char *values[] = { "41" };
	r = PQexecPrepared(a, "s1", 1, values, NULL, NULL, 0);
	ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s", PQerrorMessage(a));
	ck_assert_str_eq(PQgetvalue(r, 0, 0), "42");
	PQclear(r);
	harness_expect_answer(a, "SELECT current_setting('application_name')", "mover");
	harness_expect_answer(a, "SHOW DateStyle", "ISO, DMY");
	ck_assert_int_eq(PQbackendPID(a), key_pid);
	ck_assert(PQsendQuery(a, "SELECT pg_sleep(30)"));
	harness_wait_query_running("SELECT pg_sleep(30)");
	PGcancel *cancel = PQgetCancel(a);
	char err[256];
	ck_assert(PQcancel(cancel, err, sizeof(err)));
	PQfreeCancel(cancel);
	ck_assert(harness_wait_not_busy(a, 5000));
	r = PQgetResult(a);
	ck_assert_str_eq(PQresultErrorField(r, PG_DIAG_SQLSTATE), "57014");
	PQclear(r);
	while ((r = PQgetResult(a)) != NULL)
		PQclear(r);

	/* The new process's console lists it, under its name and with the id it had. */
	console = harness_connect(s, ADMIN_CONN);
	char *app = harness_show_value(console, "SHOW CLIENTS", "database", "app",
		"application_name");
	ck_assert_str_eq(app, "mover");
	char *id_now = harness_show_value(console, "SHOW CLIENTS", "application_name", "mover",
		"id");
	ck_assert_str_eq(id_now, id);
	free(app);
	free(id);
	free(id_now);
	PQfinish(console);
	PQfinish(a);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* pgbench in a child of the test, its output to out_path; returns the child's pid. */
static pid_t pgbench_in_background(int port, int seconds, const char *out_path)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid > 0)
		return pid;
	char port_text[16], secs[16];
	snprintf(port_text, sizeof(port_text), "%d", port);
	snprintf(secs, sizeof(secs), "%d", seconds);
	char *argv[] = { "pgbench", "-n", "-S", "-M", "prepared", "-c", "20", "-j", "2", "-T",
		secs, "-h", "127.0.0.1", "-p", port_text, "-U", "md5user", "app", NULL };
	char *out = NULL;
	int rc = harness_run_pgbench(argv, (seconds + 30) * 1000L, &out);
	FILE *f = fopen(out_path, "w");
	if (f) {
		fputs(out ? out : "", f);
		fclose(f);
	}
	_exit(rc == 0 ? 0 : 1);
}

/* How many log lines say that a client of who ("db/user@") was closed by anything but itself. */
static int closings_of(const struct harness_sluice *s, const char *who)
{
	char *log = harness_sluice_log(s);
	int n = 0;
	for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n"))
		if (strstr(line, " C-") && strstr(line, who) && strstr(line, "closing because") &&
			!strstr(line, "client sent Terminate")) {
			fprintf(stderr, "closed: %s\n", line);
			n++;
		}
	free(log);
	return n;
}

START_TEST(test_two_restarts_under_pgbench_drop_nothing)
{
	harness_subreaper();
	harness_pgbench_init();
	struct harness_sluice *s = start("default_pool_size = 4\nauth_type = md5\n");
	/* A second binary at another path stands for an upgraded one. */
	char *copy = xasprintf("%s/sluice-upgraded", s->dir);
	char *cmd = xasprintf("cp '%s' '%s'", getenv("SLUICE_BIN"), copy);
	ck_assert_int_eq(system(cmd), 0);
	free(cmd);
	char *out_path = xasprintf("%s/pgbench.out", s->dir);
	pid_t bench = pgbench_in_background(s->port, 8, out_path);

	harness_sleep_ms(2000);
	/* Under auth_type = md5 the console's peer login: sluice's own OS user on the unix socket. */
	int console = harness_raw_console(s, "pgbouncer");
	harness_raw_command(console, "RESTART", "RESTART");
	close(console);
	ck_assert_int_eq(harness_sluice_follow_restart(s, 10000), 0);
	harness_sleep_ms(2000);
	ck_assert_int_eq(harness_sluice_reboot(s, copy, 10000), 0);

	ck_assert_int_eq(harness_wait_pid(bench, 60000), 0);
	char *out = harness_read_file(out_path);
	ck_assert_msg(out && strstr(out, "number of failed transactions: 0 "), "pgbench:\n%s",
		out ? out : "(no output)");
	free(out);
	/* Every pgbench connection moved twice, and each left only by its own Terminate. */
	ck_assert_int_eq(harness_sluice_log_count(s, "20 client(s) handed over"), 2);
	ck_assert_int_eq(closings_of(s, "app/md5user@"), 0);
	ck_assert_int_eq(pidfile_pid(s), s->pid);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	free(out_path);
	free(copy);
	harness_sluice_free(s);
}
END_TEST

/* Runs `sluice -R ini`, which must fail; returns what it printed. */
static char *failing_reboot(const char *ini)
{
	char *argv[] = { "sluice", "-R", (char *)ini, NULL };
	char *out = NULL;
	int rc = harness_run_program(getenv("SLUICE_BIN"), argv, NULL, 20000, &out);
	ck_assert_msg(rc == 1, "sluice -R exited %d:\n%s", rc, out);
	return out;
}

static void still_serves(const struct harness_sluice *s)
{
	PGconn *c = harness_connect(s, "dbname=app user=trustuser");
	harness_expect_answer(c, "SELECT 1", "1");
	PQfinish(c);
}

START_TEST(test_failed_takeovers_leave_the_old_process_serving)
{
	struct harness_sluice *s = start(NULL);
	PGconn *stays = harness_connect(s, "dbname=app user=trustuser");

	/* An incompatible successor. */
	int console = harness_raw_console(s, "trustuser");
	harness_raw_query(console, "TAKEOVER 999");
	char *e = harness_raw_read_error(console);
	ck_assert_msg(strstr(e, "takeover version 999 is not this sluice's"), "%s", e);
	free(e);
	close(console);
	still_serves(s);

	/* A successor whose configuration does not load. */
	char *bad = xasprintf("%s/bad.ini", s->dir);
	char *text = harness_read_file(s->ini_path);
	char *broken = xasprintf("%s\n[sluice]\nmax_client_conn = lots\n", text);
	FILE *f = fopen(bad, "w");
	fputs(broken, f);
	fclose(f);
	free(failing_reboot(bad));
	still_serves(s);

	/* Nothing to take over from. */
	char *elsewhere = xasprintf("%s/elsewhere.ini", s->dir);
	char *moved = xasprintf("%s\n[sluice]\nunix_socket_dir = /nonexistent\n", text);
	f = fopen(elsewhere, "w");
	fputs(moved, f);
	fclose(f);
	char *out = failing_reboot(elsewhere);
	ck_assert_msg(strstr(out, "no sluice answers on /nonexistent/.s.PGSQL."), "%s", out);
	free(out);

	/* A successor that took the sockets and died before taking any client. */
	console = harness_raw_console(s, "trustuser");
	harness_raw_command(console, TAKEOVER_THIS, "TAKEOVER");
	close(console);
	ck_assert(harness_sluice_log_wait(s, "the new process went away", 5000));
	still_serves(s);

	/* Not while paused: the pause would not survive the move. */
	PGconn *tcp = harness_connect(s, ADMIN_CONN);
	harness_command_ok(tcp, "PAUSE", "PAUSE");
	console = harness_raw_console(s, "trustuser");
	harness_raw_query(console, TAKEOVER_THIS);
	e = harness_raw_read_error(console);
	ck_assert_msg(strstr(e, "paused: RESUME first"), "%s", e);
	free(e);
	close(console);
	harness_command_ok(tcp, "RESUME", "RESUME");
	still_serves(s);

	/* Only the unix socket, as sluice's own OS user: not over TCP. */
	char *refused = harness_query_error(tcp, TAKEOVER_THIS);
	ck_assert_msg(strstr(refused, "same OS user, on the unix socket"), "%s", refused);
	free(refused);
	PQfinish(tcp);

	/* The client that was there all along never noticed. */
	harness_expect_answer(stays, "SELECT 2", "2");
	PQfinish(stays);
	free(text);
	free(broken);
	free(moved);
	free(bad);
	free(elsewhere);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_a_session_moves_with_its_server)
{
	int metrics = harness_free_port();
	char *extra = xasprintf("pool_mode = session\nmetrics_port = %d\n", metrics);
	struct harness_sluice *s = start(extra);
	free(extra);
	PGconn *c = harness_connect(s, "dbname=app user=trustuser");
	harness_command_ok(c, "SET work_mem = '7MB'", "SET");
	harness_command_ok(c, "CREATE TEMP TABLE mine (x int)", "CREATE TABLE");
	char *backend = harness_query_text(c, "SELECT pg_backend_pid()");

	/* Linked for life in session pooling: the client goes with its server. */
	ck_assert_int_eq(harness_sluice_reboot(s, NULL, 10000), 0);
	ck_assert(harness_sluice_log_count(s, "1 client(s) handed over") == 1);
	char *again = harness_query_text(c, "SELECT pg_backend_pid()");
	ck_assert_str_eq(again, backend);
	harness_expect_answer(c, "SHOW work_mem", "7MB");
	harness_expect_answer(c, "SELECT count(*) FROM mine", "0");
	PGconn *console = harness_connect(s, ADMIN_CONN);
	ck_assert_int_eq(harness_show_long(console, "SHOW POOLS", "database", "app", "sv_active"), 1);
	PQfinish(console);
	/* The metrics listener went along: the new process answers on the same port. */
	char *page = harness_http_get(metrics, "/metrics");
	ck_assert_msg(page && strstr(page, " 200 ") && strstr(page, "sluice_"), "%s",
		page ? page : "(nothing listens)");
	free(page);
	ck_assert(harness_sluice_log_count(s, "and the metrics listener went to the new process") == 1);
	PQfinish(c);
	free(backend);
	free(again);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_a_transaction_finishes_in_the_old_process_first)
{
	struct harness_sluice *s = start(NULL);
	pid_t old = s->pid;
	PGconn *busy = harness_connect(s, "dbname=app user=trustuser");
	harness_command_ok(busy, "BEGIN", "BEGIN");
	char *backend = harness_query_text(busy, "SELECT pg_backend_pid()");
	PGconn *idle = harness_connect(s, "dbname=app user=trustuser");

	/* The idle client moves at once; the one in a transaction keeps the old process. */
	ck_assert_int_eq(harness_sluice_reboot(s, NULL, 1500), -1);
	harness_expect_answer(idle, "SELECT 3", "3");
	char *again = harness_query_text(busy, "SELECT pg_backend_pid()");
	ck_assert_str_eq(again, backend);
	still_serves(s);
	harness_command_ok(busy, "COMMIT", "COMMIT");
	ck_assert_int_eq(harness_wait_pid(old, 10000), 0);
	ck_assert(harness_sluice_log_count(s, "2 client(s) handed over") == 1);
	harness_expect_answer(busy, "SELECT 4", "4");
	PQfinish(busy);
	PQfinish(idle);
	free(backend);
	free(again);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* TLS state is OpenSSL's and does not move: the client stays, and the old process serves it. */
START_TEST(test_a_tls_client_stays_with_the_old_process_until_it_leaves)
{
	const char *d = harness_tls_dir();
	char *tls_ini = xasprintf("client_tls_sslmode = allow\nclient_tls_key_file = %s/server.key\n"
				  "client_tls_cert_file = %s/server.crt\n",
		d, d);
	struct harness_sluice *s = start(tls_ini);
	free(tls_ini);
	pid_t old = s->pid;
	PGconn *tls = harness_connect(s, "dbname=app user=trustuser sslmode=require");
	ck_assert(PQsslInUse(tls));
	PGconn *plain = harness_connect(s, "dbname=app user=trustuser sslmode=disable");

	ck_assert_int_eq(harness_sluice_reboot(s, NULL, 1500), -1);
	ck_assert(harness_sluice_log_wait(s, "1 client(s) handed over", 5000));
	ck_assert(harness_sluice_log_wait(s, "1 client(s) stay with this process", 5000));
	harness_expect_answer(tls, "SELECT 1", "1");
	harness_expect_answer(plain, "SELECT 2", "2");
	/* The new process speaks TLS too, with the same certificate. */
	PGconn *fresh = harness_connect(s, "dbname=app user=trustuser sslmode=require");
	harness_expect_answer(fresh, "SELECT 3", "3");
	PQfinish(fresh);

	PQfinish(tls);
	ck_assert_int_eq(harness_wait_pid(old, 10000), 0);
	harness_expect_answer(plain, "SELECT 4", "4");
	PQfinish(plain);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

static Suite *restart_suite(void)
{
	Suite *s = suite_create("restart");
	TCase *tc = harness_tcase("restart");
	tcase_add_test(tc, test_a_client_moves_with_its_session);
	tcase_add_test(tc, test_two_restarts_under_pgbench_drop_nothing);
	tcase_add_test(tc, test_failed_takeovers_leave_the_old_process_serving);
	tcase_add_test(tc, test_a_session_moves_with_its_server);
	tcase_add_test(tc, test_a_transaction_finishes_in_the_old_process_first);
	tcase_add_test(tc, test_a_tls_client_stays_with_the_old_process_until_it_leaves);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return harness_run_suite(restart_suite());
}
