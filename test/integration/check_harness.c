/*
 * check_harness.c - proves the integration harness itself, against PostgreSQL
 * directly: the server starts, each provisioned role logs in over TCP with
 * the method pg_hba.conf gives it, the superuser helpers work, a restart
 * keeps data and port, the sluice process helpers start, signal, log and
 * stop a process, and the fake PostgreSQL serves and reports every connection.
 *
 * It does not test sluice. The process helpers are proven on a stand-in: this
 * very executable, re-run with HARNESS_FAKE_SLUICE=1, behaves like a minimal
 * sluice (reads the ini, listens on listen_port, logs, reloads on SIGHUP,
 * exits 0 on SIGTERM). Whether the real $SLUICE_BIN runs is checked only by
 * `sluice -V`, and only when it has been built.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- the stand-in sluice --------------------------------------------------- */

/* $SLUICE_BIN as meson set it, before any test pointed it at the stand-in. */
static const char *real_sluice_bin;

static volatile sig_atomic_t fake_hup, fake_term;

static void fake_on_signal(int sig)
{
	if (sig == SIGHUP)
		fake_hup = 1;
	else
		fake_term = 1;
}

/* Runs as the process harness_sluice_start() spawned; returns its exit code. */
static int fake_sluice_main(const char *ini_path)
{
	FILE *f = fopen(ini_path, "r");
	if (!f) {
		fprintf(stderr, "fake sluice: cannot open %s\n", ini_path);
		return 1;
	}
	char line[1024];
	int port = -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "listen_port = %d", &port) == 1)
			break;
	fclose(f);

	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (port <= 0 || fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		listen(fd, 16) < 0) {
		fprintf(stderr, "fake sluice: cannot listen on port %d\n", port);
		return 1;
	}
	struct sigaction act = { .sa_handler = fake_on_signal };
	sigaction(SIGHUP, &act, NULL);
	sigaction(SIGTERM, &act, NULL);
	fprintf(stderr, "fake sluice: listening on port %d\n", port);
	while (!fake_term) {
		pause();
		if (fake_hup) {
			fake_hup = 0;
			fprintf(stderr, "fake sluice: reloading\n");
		}
	}
	fprintf(stderr, "fake sluice: shutting down\n");
	close(fd);
	return 0;
}

/* Makes the next harness_sluice_start() in this test run the stand-in. */
static void use_fake_sluice(void)
{
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	ck_assert_int_gt(n, 0);
	self[n] = '\0';
	setenv("SLUICE_BIN", self, 1);
	setenv("HARNESS_FAKE_SLUICE", "1", 1);
}

/* ---- PostgreSQL ------------------------------------------------------------ */

START_TEST(test_harness_pg_answers_the_superuser)
{
	const struct harness_pg *pg = harness_pg();
	ck_assert_str_eq(pg->host, "127.0.0.1");
	ck_assert_int_gt(pg->port, 0);
	ck_assert_str_eq(pg->superuser, HARNESS_SUPERUSER);

	char *who = harness_pg_exec("SELECT current_user || '@' || current_database()");
	ck_assert_str_eq(who, HARNESS_SUPERUSER "@app");
	free(who);
	ck_assert_int_eq(harness_pg_exec_long("SELECT %d + 1", 41), 42);
	ck_assert_ptr_null(harness_pg_exec("SELECT 1 WHERE false"));
	ck_assert_int_eq(harness_pg_exec_long("SHOW max_connections"), 200);
}
END_TEST

/* Each provisioned role, how pg_hba.conf lets it in, and how its password is stored. */
static const struct role_case {
	const char *user;
	const char *hba_method;
	const char *stored_prefix;
	bool needs_password;
} role_cases[] = {
	{ "md5user", "md5", "md5", true },
	{ "scramuser", "scram-sha-256", "SCRAM-SHA-256$", true },
	{ "plainuser", "password", "SCRAM-SHA-256$", true },
	{ "trustuser", "trust", "SCRAM-SHA-256$", false },
};

START_TEST(test_harness_role_logs_in_over_tcp_with_its_method)
{
	const struct role_case *rc = &role_cases[_i];
	char conninfo[256];
	snprintf(conninfo, sizeof(conninfo), "dbname=app user=%s password=%spw", rc->user,
		rc->user);
	PGconn *conn = harness_connect(NULL, conninfo);
	char *who = harness_query_text(conn, "SELECT current_user");
	ck_assert_str_eq(who, rc->user);
	free(who);
	/* The server asked for a password exactly when pg_hba.conf says it must. */
	ck_assert_int_eq(PQconnectionUsedPassword(conn), rc->needs_password);
	char *count = harness_query_text(conn, "SELECT count(*) FROM items");
	ck_assert_str_eq(count, "3");
	free(count);
	PQfinish(conn);

	char *method = harness_pg_exec("SELECT auth_method FROM pg_hba_file_rules "
				       "WHERE type = 'host' AND '%s' = ANY(user_name)",
		rc->user);
	if (strcmp(rc->hba_method, "trust") == 0)
		ck_assert_ptr_null(method); /* only the catch-all line applies */
	else
		ck_assert_str_eq(method, rc->hba_method);
	free(method);

	char *stored = harness_pg_exec("SELECT rolpassword FROM pg_authid WHERE rolname = '%s'",
		rc->user);
	ck_assert_ptr_nonnull(stored);
	ck_assert_msg(strncmp(stored, rc->stored_prefix, strlen(rc->stored_prefix)) == 0,
		"%s's password is stored as %s", rc->user, stored);
	free(stored);
}
END_TEST

START_TEST(test_harness_role_with_wrong_password_is_refused)
{
	const struct role_case *rc = &role_cases[_i];
	char conninfo[256];
	snprintf(conninfo, sizeof(conninfo), "dbname=app user=%s password=wrong", rc->user);
	if (!rc->needs_password) {
		PGconn *conn = harness_connect(NULL, conninfo);
		PQfinish(conn);
		return;
	}
	char *err = harness_connect_error(NULL, conninfo);
	ck_assert_msg(strstr(err, "password authentication failed") != NULL, "%s", err);
	free(err);
}
END_TEST

START_TEST(test_harness_query_error_reports_sqlstate_of_terminated_session)
{
	PGconn *conn = harness_connect(NULL, "dbname=app user=scramuser password=scramuserpw "
					     "application_name=harness_probe");
	ck_assert_int_eq(harness_pg_exec_long("SELECT count(*) FROM pg_stat_activity "
					      "WHERE application_name = 'harness_probe'"),
		1);

	char *err = harness_query_error(conn, "SELECT 1/0");
	ck_assert_str_eq(err, "22012 division by zero");
	free(err);

	/*
	 * FILTER, not AND in WHERE: the planner may evaluate pg_terminate_backend()
	 * before the name test and end every session, the superuser's own included.
	 */
	long terminated = harness_pg_exec_long(
		"SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
		"WHERE application_name = 'harness_probe'");
	ck_assert_int_eq(terminated, 1);
	err = harness_query_error(conn, "SELECT 1");
	ck_assert_msg(strncmp(err, "57P01 ", 6) == 0 || strncmp(err, "08006 ", 6) == 0, "%s", err);
	free(err);
	PQfinish(conn);
}
END_TEST

START_TEST(test_harness_pg_restart_keeps_port_and_data)
{
	int port = harness_pg()->port;
	free(harness_pg_exec("INSERT INTO items VALUES (100, 'before restart')"));
	PGconn *old = harness_connect(NULL, "dbname=app user=trustuser");

	harness_pg_restart();

	ck_assert_int_eq(harness_pg()->port, port);
	char *err = harness_query_error(old, "SELECT 1");
	PQfinish(old);
	free(err);
	char *name = harness_pg_exec("SELECT name FROM items WHERE id = 100");
	ck_assert_str_eq(name, "before restart");
	free(name);
	free(harness_pg_exec("DELETE FROM items WHERE id = 100"));
}
END_TEST

START_TEST(test_harness_pg_stop_refuses_connections_until_start)
{
	harness_pg_stop();
	char *err = harness_connect_error(NULL, "dbname=app user=trustuser");
	ck_assert_msg(strstr(err, "Connection refused") != NULL, "%s", err);
	free(err);
	harness_pg_start();
	PGconn *conn = harness_connect(NULL, "dbname=app user=trustuser");
	PQfinish(conn);
}
END_TEST

/* ---- sockets --------------------------------------------------------------- */

START_TEST(test_harness_free_port_can_be_bound)
{
	int port = harness_free_port();
	ck_assert_int_gt(port, 0);
	ck_assert_int_ne(port, harness_pg()->port);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
}
END_TEST

START_TEST(test_harness_raw_connect_gets_sslrequest_answer)
{
	/* SSLRequest: length 8, code 80877103. The harness's server has no TLS: 'N'. */
	static const unsigned char ssl_request[8] = { 0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f };
	int fd = harness_raw_connect(harness_pg()->port);
	ck_assert_int_eq(write(fd, ssl_request, sizeof(ssl_request)), sizeof(ssl_request));
	char answer = 0;
	ck_assert_int_eq(read(fd, &answer, 1), 1);
	ck_assert_int_eq(answer, 'N');
	close(fd);
}
END_TEST

/* ---- the fake PostgreSQL ---------------------------------------------------- */

/*
 * harness_fake_serve_cb: reports arg as an event, then echoes one typed
 * message's body back as a ReadyForQuery. The event goes first so that a test
 * holding the answer knows the event is on the pipe too.
 */
static void report_and_echo(int conn, int events_fd, int arg)
{
	char *body = NULL;
	if (!harness_fake_read_packet(conn, true, &body))
		return;
	harness_fake_report(events_fd, (char)arg);
	harness_fake_put_msg(conn, 'Z', body, (uint32_t)strlen(body));
	free(body);
}

/* One exchange with a report_and_echo fake: Query "I", answered by ReadyForQuery "I". */
static void exchange_with_fake(const struct harness_fake *f)
{
	static const uint8_t query[] = { 'Q', 0, 0, 0, 6, 'I', 0 };
	int fd = harness_raw_connect(f->port);
	harness_write_all(fd, query, sizeof(query));
	struct harness_msg m;
	ck_assert(harness_raw_read_msg(fd, &m));
	ck_assert_int_eq(m.type, 'Z');
	ck_assert_str_eq(m.body, "I");
	free(m.body);
	close(fd);
}

START_TEST(test_harness_fake_serves_each_connection_and_keeps_every_event)
{
	struct harness_fake f = harness_fake_start(report_and_echo, 'x');
	exchange_with_fake(&f);
	exchange_with_fake(&f);
	ck_assert(harness_fake_wait_event(&f, 'x', 5000));
	ck_assert(harness_fake_wait_event(&f, 'x', 5000));
	ck_assert(!harness_fake_wait_event(&f, 'x', 0));
	/* Waiting for 'x' passed the accepts by without taking them. */
	ck_assert_int_eq(harness_fake_count_events(&f, 'a'), 2);
	ck_assert_int_eq(harness_fake_count_events(&f, 'a'), 0);
	/* And counting accepts leaves the 'x' that came with them. */
	exchange_with_fake(&f);
	ck_assert_int_eq(harness_fake_count_events(&f, 'a'), 1);
	ck_assert(harness_fake_wait_event(&f, 'x', 0));
	harness_fake_stop(&f);
}
END_TEST

/* ---- sluice process helpers, on the stand-in ---------------------------------- */

START_TEST(test_harness_sluice_helpers_start_signal_log_and_stop)
{
	use_fake_sluice();
	struct harness_sluice *s = harness_sluice_start("pool_mode = transaction\n", NULL,
		"\"md5user\" \"md5userpw\"\n");

	/* The ini has the harness's defaults, the extra lines and the substituted databases. */
	char *ini = NULL;
	FILE *f = fopen(s->ini_path, "r");
	ck_assert_ptr_nonnull(f);
	char buf[8192];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	ini = buf;
	char expect[512];
	snprintf(expect, sizeof(expect), "app = host=127.0.0.1 port=%d dbname=app",
		harness_pg()->port);
	ck_assert_msg(strstr(ini, expect) != NULL, "%s", ini);
	snprintf(expect, sizeof(expect), "unix_socket_dir = %s\n", s->dir);
	ck_assert_msg(strstr(ini, expect) != NULL, "%s", ini);
	ck_assert_msg(strstr(ini, "pool_mode = transaction\n") != NULL, "%s", ini);
	ck_assert_msg(strstr(ini, "auth_file = ") != NULL, "%s", ini);

	ck_assert(harness_sluice_log_wait(s, "listening on port", 5000));
	int fd = harness_raw_connect(s->port);
	close(fd);

	harness_sluice_signal(s, SIGHUP);
	ck_assert(harness_sluice_log_wait(s, "fake sluice: reloading", 5000));
	ck_assert_int_eq(harness_sluice_wait(s, 50), -1); /* still running */

	ck_assert_int_eq(harness_sluice_stop(s), 0);
	ck_assert_int_eq(harness_sluice_stop(s), 0); /* idempotent */
	char *log = harness_sluice_log(s);
	ck_assert_msg(strstr(log, "fake sluice: shutting down") != NULL, "%s", log);
	free(log);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_harness_sluice_helpers_see_a_signal_death)
{
	use_fake_sluice();
	struct harness_sluice *s = harness_sluice_start(NULL, "", NULL);
	harness_sluice_signal(s, SIGKILL);
	ck_assert_int_eq(harness_sluice_wait(s, 5000), 128 + SIGKILL);
	ck_assert_int_eq(harness_sluice_stop(s), 128 + SIGKILL);
	harness_sluice_free(s);
}
END_TEST

/* ---- the real sluice, only as far as -V --------------------------------------- */

START_TEST(test_harness_sluice_bin_prints_version)
{
	/* Without fork mode the stand-in tests' environment is still set. */
	unsetenv("HARNESS_FAKE_SLUICE");
	const char *bin = real_sluice_bin;
	if (!bin || access(bin, X_OK) != 0) {
		fprintf(stderr, "check_harness: SLUICE_BIN (%s) not built; -V not tried\n",
			bin ? bin : "unset");
		return;
	}
	char *cmd = xasprintf("'%s' -V 2>&1", bin);
	FILE *p = popen(cmd, "r");
	free(cmd);
	ck_assert_ptr_nonnull(p);
	char out[512] = "";
	size_t n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	int status = pclose(p);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "sluice -V: %s", out);
	ck_assert_msg(strstr(out, "sluice") != NULL, "sluice -V printed: %s", out);
}
END_TEST

static Suite *harness_suite(void)
{
	Suite *s = suite_create("harness");
	TCase *tc = harness_tcase("postgres");
	tcase_add_test(tc, test_harness_pg_answers_the_superuser);
	tcase_add_loop_test(tc, test_harness_role_logs_in_over_tcp_with_its_method, 0,
		(int)ARRAY_SIZE(role_cases));
	tcase_add_loop_test(tc, test_harness_role_with_wrong_password_is_refused, 0,
		(int)ARRAY_SIZE(role_cases));
	tcase_add_test(tc, test_harness_query_error_reports_sqlstate_of_terminated_session);
	tcase_add_test(tc, test_harness_pg_restart_keeps_port_and_data);
	tcase_add_test(tc, test_harness_pg_stop_refuses_connections_until_start);
	suite_add_tcase(s, tc);

	tc = harness_tcase("sockets");
	tcase_add_test(tc, test_harness_free_port_can_be_bound);
	tcase_add_test(tc, test_harness_raw_connect_gets_sslrequest_answer);
	tcase_add_test(tc, test_harness_fake_serves_each_connection_and_keeps_every_event);
	suite_add_tcase(s, tc);

	tc = harness_tcase("processes");
	tcase_add_test(tc, test_harness_sluice_helpers_start_signal_log_and_stop);
	tcase_add_test(tc, test_harness_sluice_helpers_see_a_signal_death);
	tcase_add_test(tc, test_harness_sluice_bin_prints_version);
	suite_add_tcase(s, tc);
	return s;
}

int main(int argc, char **argv)
{
	if (getenv("HARNESS_FAKE_SLUICE"))
		return fake_sluice_main(argc > 1 ? argv[argc - 1] : "");
	const char *bin = getenv("SLUICE_BIN");
	real_sluice_bin = bin ? xstrdup(bin) : NULL;
	return harness_run_suite(harness_suite());
}
