/*
 * check_admin_control.c - proves the admin console's control commands
 * through real clients: PAUSE/RESUME (all and per database), DISABLE/ENABLE,
 * KILL and KILL_CLIENT, RECONNECT with WAIT_CLOSE, RELOAD of a changed and of
 * a broken ini, SET of reloadable, non-reloadable and unknown keys, and the
 * two SHUTDOWN forms. The reference is
 * ../shared/reference/pgbouncer-console.md.
 *
 * It also holds a test that runs the Debian package prometheus-pgbouncer-exporter
 * against the console, registered only when SLUICE_TEST_EXPORTER is set: the
 * Debian 12 package (1.7, Christopher Baines' Python exporter) reads SHOW
 * STATS' `total_requests`, a column PgBouncer dropped in 1.8, and so dies with
 * KeyError at startup against PgBouncer 1.26 and sluice alike.
 *
 * The SHOW result sets and console access are proven in check_admin_console.c.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define USERLIST "\"md5user\" \"md5userpw\"\n\"scramuser\" \"scramuserpw\"\n"
#define CONSOLE_INI "auth_type = md5\nadmin_users = md5user\npool_mode = transaction\n"
#define ADMIN_CONN "dbname=pgbouncer user=md5user password=md5userpw"
#define APP_CONN "dbname=app user=md5user password=md5userpw"
#define DATABASES                                                                                  \
	"app = host=@PGHOST@ port=@PGPORT@ dbname=app\n"                                           \
	"postgres = host=@PGHOST@ port=@PGPORT@ dbname=postgres\n"

/* How long a held query must stay unanswered to count as held. */
#define HELD_MS 300

static struct harness_sluice *start(const char *extra)
{
	char ini[1024];
	snprintf(ini, sizeof(ini), "%s%s", CONSOLE_INI, extra ? extra : "");
	return harness_sluice_start(ini, DATABASES, USERLIST);
}

/* Whether the answer to a PQsendQuery() on c arrives within ms (consumes it if so). */
static bool answered_within(PGconn *c, long ms)
{
	long deadline = harness_now_ms() + ms;
	do {
		ck_assert_msg(PQconsumeInput(c), "%s", PQerrorMessage(c));
		if (!PQisBusy(c))
			return true;
		harness_sleep_ms(10);
	} while (harness_now_ms() < deadline);
	return false;
}

/* Collects the pending command's results; returns whether the last one succeeded. */
static bool finish_ok(PGconn *c, char *tag, size_t tag_len)
{
	bool ok = true;
	PGresult *res;
	while ((res = PQgetResult(c))) {
		ExecStatusType st = PQresultStatus(res);
		ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
		if (tag)
			snprintf(tag, tag_len, "%s",
				ok ? PQcmdStatus(res) : PQresultErrorMessage(res));
		PQclear(res);
	}
	return ok;
}

static void expect_select_1(PGconn *c)
{
	char *v = harness_query_text(c, "SELECT 1");
	ck_assert_str_eq(v, "1");
	free(v);
}

/* ---- PAUSE / RESUME ------------------------------------------------------------------ */

START_TEST(test_pause_waits_for_active_servers_and_holds_queries_until_resume)
{
	struct harness_sluice *s = start(NULL);
	PGconn *holder = harness_connect(s, APP_CONN);
	PGconn *other = harness_connect(s, APP_CONN);
	PGconn *c = harness_connect(s, ADMIN_CONN);
	PQclear(PQexec(holder, "BEGIN"));
	expect_select_1(holder);
	/* A transaction holds its server: PAUSE does not return until it ends. */
	ck_assert(PQsendQuery(c, "PAUSE"));
	ck_assert_msg(!answered_within(c, HELD_MS), "PAUSE returned with a server active");
	PQclear(PQexec(holder, "COMMIT"));
	ck_assert_msg(answered_within(c, 3000), "PAUSE did not return once the server was free");
	char tag[256];
	ck_assert_msg(finish_ok(c, tag, sizeof(tag)), "PAUSE: %s", tag);
	ck_assert_str_eq(tag, "PAUSE");
	char *v = harness_show_value(c, "SHOW STATE", "key", "paused", "value");
	ck_assert_str_eq(v, "yes");
	free(v);
	/* PAUSE closed the released servers. */
	long deadline = harness_now_ms() + 2000;
	while (harness_pg_exec_long("SELECT count(*) FROM pg_stat_activity WHERE usename = "
				    "'md5user'") != 0 &&
		harness_now_ms() < deadline)
		harness_sleep_ms(20);
	ck_assert_int_eq(harness_pg_exec_long("SELECT count(*) FROM pg_stat_activity WHERE "
					      "usename = 'md5user'"),
		0);

	/* New queries are held, not refused. */
	ck_assert(PQsendQuery(other, "SELECT 2"));
	ck_assert_msg(!answered_within(other, HELD_MS), "a query ran while paused");
	harness_command_ok(c, "RESUME", "RESUME");
	ck_assert_msg(answered_within(other, 3000), "the held query did not run after RESUME");
	ck_assert(finish_ok(other, NULL, 0));
	expect_select_1(holder);
	PQfinish(c);
	PQfinish(other);
	PQfinish(holder);
	harness_sluice_stop_ok(s);
}
END_TEST

/*
 * A PAUSE that nothing holds up is answered in the loop round that runs it:
 * the answer goes out with that round's output, not at the next tick (up to
 * 250 ms later, when the console was polled after the flush). Twelve of
 * them would take about 1.5 s that way.
 */
START_TEST(test_pause_with_nothing_active_is_answered_at_once)
{
	struct harness_sluice *s = start(NULL);
	PGconn *c = harness_connect(s, ADMIN_CONN);
	long t0 = harness_now_ms();
	for (int i = 0; i < 12; i++) {
		harness_command_ok(c, "PAUSE", "PAUSE");
		harness_command_ok(c, "RESUME", "RESUME");
	}
	long took = harness_now_ms() - t0;
	ck_assert_msg(took < 600, "12 PAUSE/RESUME round trips took %ld ms", took);
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_pause_of_one_database_leaves_the_others_running)
{
	struct harness_sluice *s = start(NULL);
	PGconn *app = harness_connect(s, APP_CONN);
	PGconn *pg = harness_connect(s, "dbname=postgres user=md5user password=md5userpw");
	PGconn *c = harness_connect(s, ADMIN_CONN);
	harness_command_ok(c, "PAUSE app", "PAUSE");
	ck_assert_int_eq(harness_show_long(c, "SHOW DATABASES", "name", "app", "paused"), 1);
	ck_assert_int_eq(harness_show_long(c, "SHOW DATABASES", "name", "postgres", "paused"), 0);
	expect_select_1(pg);
	ck_assert(PQsendQuery(app, "SELECT 1"));
	ck_assert_msg(!answered_within(app, HELD_MS), "a query to the paused db ran");
	/* RESUME of a database that is not paused is an error. */
	char *e = harness_query_error(c, "RESUME postgres");
	free(e);
	e = harness_query_error(c, "PAUSE nosuchdb");
	free(e);
	harness_command_ok(c, "RESUME app", "RESUME");
	ck_assert_msg(answered_within(app, 3000), "the held query did not run after RESUME app");
	ck_assert(finish_ok(app, NULL, 0));
	ck_assert_int_eq(harness_show_long(c, "SHOW DATABASES", "name", "app", "paused"), 0);
	PQfinish(c);
	PQfinish(pg);
	PQfinish(app);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_console_leaving_during_pause_leaves_sluice_paused_and_sound)
{
	struct harness_sluice *s = start(NULL);
	PGconn *holder = harness_connect(s, APP_CONN);
	PGconn *c = harness_connect(s, ADMIN_CONN);
	PQclear(PQexec(holder, "BEGIN"));
	expect_select_1(holder);
	ck_assert(PQsendQuery(c, "PAUSE"));
	ck_assert(!answered_within(c, 100));
	PQfinish(c);
	PQclear(PQexec(holder, "COMMIT"));
	c = harness_connect(s, ADMIN_CONN);
	char *v = harness_show_value(c, "SHOW STATE", "key", "paused", "value");
	ck_assert_str_eq(v, "yes");
	free(v);
	harness_command_ok(c, "RESUME", "RESUME");
	expect_select_1(holder);
	PQfinish(c);
	PQfinish(holder);
	harness_sluice_stop_ok(s);
}
END_TEST

/* ---- DISABLE / ENABLE, KILL, KILL_CLIENT -------------------------------------------- */

START_TEST(test_disable_refuses_new_logins_until_enable)
{
	struct harness_sluice *s = start(NULL);
	PGconn *c = harness_connect(s, ADMIN_CONN);
	PGconn *before = harness_connect(s, APP_CONN);
	harness_command_ok(c, "DISABLE app", "DISABLE");
	ck_assert_int_eq(harness_show_long(c, "SHOW DATABASES", "name", "app", "disabled"), 1);
	char *e = harness_connect_error(s, APP_CONN);
	free(e);
	/* Other databases still take logins. */
	PQfinish(harness_connect(s, "dbname=postgres user=md5user password=md5userpw"));
	harness_command_ok(c, "ENABLE app", "ENABLE");
	ck_assert_int_eq(harness_show_long(c, "SHOW DATABASES", "name", "app", "disabled"), 0);
	PGconn *after = harness_connect(s, APP_CONN);
	expect_select_1(after);
	PQfinish(after);
	PQfinish(before);
	e = harness_query_error(c, "DISABLE");
	free(e);
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_kill_drops_the_databases_clients_and_pauses_it)
{
	struct harness_sluice *s = start(NULL);
	PGconn *victim = harness_connect(s, APP_CONN);
	expect_select_1(victim);
	PGconn *bystander = harness_connect(s, "dbname=postgres user=md5user password=md5userpw");
	PGconn *c = harness_connect(s, ADMIN_CONN);
	harness_command_ok(c, "KILL app", "KILL");
	char *e = harness_query_error(victim, "SELECT 1");
	free(e);
	/* Its servers are gone too. */
	const char *count_sql = "SELECT count(*) FROM pg_stat_activity WHERE usename = 'md5user' "
				"AND datname = 'app'";
	long deadline = harness_now_ms() + 2000;
	while (harness_pg_exec_long("%s", count_sql) != 0 && harness_now_ms() < deadline)
		harness_sleep_ms(20);
	ck_assert_int_eq(harness_pg_exec_long("%s", count_sql), 0);
	expect_select_1(bystander);
	ck_assert_int_eq(harness_show_long(c, "SHOW DATABASES", "name", "app", "paused"), 1);
	/* A new client of app waits until RESUME. */
	PGconn *late = harness_connect(s, APP_CONN);
	ck_assert(PQsendQuery(late, "SELECT 1"));
	ck_assert_msg(!answered_within(late, HELD_MS), "app answered while killed");
	harness_command_ok(c, "RESUME", "RESUME");
	ck_assert_msg(answered_within(late, 3000), "app did not come back after RESUME");
	ck_assert(finish_ok(late, NULL, 0));
	PQfinish(late);
	PQfinish(c);
	PQfinish(bystander);
	PQfinish(victim);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_kill_client_drops_exactly_that_client)
{
	struct harness_sluice *s = start(NULL);
	PGconn *victim = harness_connect(s, APP_CONN " application_name=victim");
	PGconn *other = harness_connect(s, APP_CONN " application_name=other");
	PGconn *c = harness_connect(s, ADMIN_CONN);
	char *id = harness_show_value(c, "SHOW CLIENTS", "application_name", "victim", "id");
	ck_assert_ptr_nonnull(id);
	char sql[64];
	snprintf(sql, sizeof(sql), "KILL_CLIENT %s", id);
	harness_command_ok(c, sql, "KILL_CLIENT");
	char *e = harness_query_error(victim, "SELECT 1");
	free(e);
	expect_select_1(other);
	char *gone = harness_show_value(c, "SHOW CLIENTS", "application_name", "victim", "id");
	ck_assert_ptr_null(gone);
	/* The same id is no longer there; PgBouncer's words, which scripts match. */
	e = harness_query_error(c, sql);
	char *want = xasprintf("08P01 client not found: %s", id);
	ck_assert_str_eq(e, want);
	free(want);
	free(e);
	e = harness_query_error(c, "KILL_CLIENT C-1");
	ck_assert_msg(strstr(e, "invalid client pointer supplied") != NULL, "%s", e);
	free(e);
	free(id);
	PQfinish(c);
	PQfinish(other);
	PQfinish(victim);
	harness_sluice_stop_ok(s);
}
END_TEST

/* ---- RECONNECT / WAIT_CLOSE ------------------------------------------------------------- */

START_TEST(test_reconnect_replaces_servers_and_wait_close_returns_when_gone)
{
	struct harness_sluice *s = start(NULL);
	PGconn *app = harness_connect(s, APP_CONN);
	PGconn *c = harness_connect(s, ADMIN_CONN);
	char *pid1 = harness_query_text(app, "SELECT pg_backend_pid()");
	/* Hold the server in a transaction: RECONNECT marks it, WAIT_CLOSE waits for it. */
	PQclear(PQexec(app, "BEGIN"));
	char *pid_tx = harness_query_text(app, "SELECT pg_backend_pid()");
	harness_command_ok(c, "RECONNECT app", "RECONNECT");
	char *cn = harness_show_value(c, "SHOW SERVERS", "remote_pid", pid_tx, "close_needed");
	ck_assert_ptr_nonnull(cn);
	ck_assert_str_eq(cn, "1");
	free(cn);
	ck_assert(PQsendQuery(c, "WAIT_CLOSE app"));
	ck_assert_msg(!answered_within(c, HELD_MS),
		"WAIT_CLOSE returned with a marked server in use");
	PQclear(PQexec(app, "COMMIT"));
	ck_assert_msg(answered_within(c, 3000), "WAIT_CLOSE did not return");
	char tag[256];
	ck_assert_msg(finish_ok(c, tag, sizeof(tag)), "WAIT_CLOSE: %s", tag);
	ck_assert_str_eq(tag, "WAIT_CLOSE");
	char *pid2 = harness_query_text(app, "SELECT pg_backend_pid()");
	ck_assert_str_ne(pid2, pid1);
	ck_assert_str_ne(pid2, pid_tx);
	ck_assert_int_eq(
		harness_pg_exec_long("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
			pid_tx),
		0);
	free(pid1);
	free(pid_tx);
	free(pid2);
	PQfinish(c);
	PQfinish(app);
	harness_sluice_stop_ok(s);
}
END_TEST

/* ---- RELOAD and SET -------------------------------------------------------------------- */

START_TEST(test_reload_applies_a_changed_ini_and_refuses_a_broken_one)
{
	struct harness_sluice *s = start("default_pool_size = 5\n");
	PGconn *c = harness_connect(s, ADMIN_CONN);
	PGconn *app = harness_connect(s, APP_CONN);
	char *v = harness_show_value(c, "SHOW CONFIG", "key", "default_pool_size", "value");
	ck_assert_str_eq(v, "5");
	free(v);
	harness_sluice_edit_ini(s, "default_pool_size = 5", "default_pool_size = 8");
	harness_command_ok(c, "RELOAD", "RELOAD");
	v = harness_show_value(c, "SHOW CONFIG", "key", "default_pool_size", "value");
	ck_assert_str_eq(v, "8");
	free(v);
	ck_assert_int_eq(harness_show_long(c, "SHOW DATABASES", "name", "app", "pool_size"), 8);

	harness_sluice_edit_ini(s, "default_pool_size = 8", "default_pool_size = lots");
	char *e = harness_query_error(c, "RELOAD");
	ck_assert_msg(strncmp(e, "F0000 RELOAD failed, see logs for additional details", 52) == 0,
		"%s", e);
	free(e);
	v = harness_show_value(c, "SHOW CONFIG", "key", "default_pool_size", "value");
	ck_assert_str_eq(v, "8");
	free(v);
	expect_select_1(app);
	PGconn *fresh = harness_connect(s, APP_CONN);
	expect_select_1(fresh);
	PQfinish(fresh);
	PQfinish(app);
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_set_changes_reloadable_keys_and_refuses_others)
{
	struct harness_sluice *s = start(NULL);
	PGconn *c = harness_connect(s, ADMIN_CONN);
	harness_command_ok(c, "SET default_pool_size = 3", "SET");
	char *v = harness_show_value(c, "SHOW CONFIG", "key", "default_pool_size", "value");
	ck_assert_str_eq(v, "3");
	free(v);
	ck_assert_int_eq(harness_show_long(c, "SHOW DATABASES", "name", "app", "pool_size"), 3);
	harness_command_ok(c, "set default_pool_size to '4';", "SET");
	v = harness_show_value(c, "SHOW CONFIG", "key", "default_pool_size", "value");
	ck_assert_str_eq(v, "4");
	free(v);

	/* listen_port cannot change without a restart: an error that says so. */
	char *e = harness_query_error(c, "SET listen_port = 1234");
	ck_assert_msg(strstr(e, "listen_port") && (strstr(e, "restart") || strstr(e, "reload")),
		"%s", e);
	free(e);
	v = harness_show_value(c, "SHOW CONFIG", "key", "listen_port", "value");
	ck_assert_int_eq(atoi(v), s->port);
	free(v);
	e = harness_query_error(c, "SET no_such_setting = 1");
	ck_assert_msg(strstr(e, "no_such_setting"), "%s", e);
	free(e);
	e = harness_query_error(c, "SET default_pool_size = many");
	free(e);
	v = harness_show_value(c, "SHOW CONFIG", "key", "default_pool_size", "value");
	ck_assert_str_eq(v, "4");
	free(v);
	PGconn *app = harness_connect(s, APP_CONN);
	expect_select_1(app);
	PQfinish(app);
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

static void capture_notice(void *arg, const PGresult *res)
{
	char **out = arg;
	const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	free(*out);
	*out = xstrdup(m ? m : "");
}

/*
 * A PgBouncer setting sluice does not implement is taken by SET as by the
 * file: a warning that names it, and the command succeeds (PgBouncer's own
 * tests once did so with server_tls_sslmode, which sluice now implements).
 */
START_TEST(test_set_of_a_pgbouncer_only_setting_warns_and_succeeds)
{
	struct harness_sluice *s = start(NULL);
	PGconn *c = harness_connect(s, ADMIN_CONN);
	char *notice = NULL;
	PQsetNoticeReceiver(c, capture_notice, &notice);
	harness_command_ok(c, "SET dns_max_ttl = 15", "SET");
	ck_assert_ptr_nonnull(notice);
	ck_assert_str_eq(notice,
		"setting dns_max_ttl is not implemented by sluice yet and is ignored");
	free(notice);
	notice = NULL;
	ck_assert(harness_sluice_log_wait(s, "console SET: setting dns_max_ttl", 3000));
	/* Unknown keys are still refused. */
	char *e = harness_query_error(c, "SET server_tls_sslmod = disable");
	ck_assert_msg(strstr(e, "unknown setting: server_tls_sslmod"), "%s", e);
	free(e);
	PQsetNoticeReceiver(c, NULL, NULL);
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

/*
 * RELOAD rebuilds from the file, as PgBouncer's does (it fills in every
 * default at the [pgbouncer] header, then the file): a console SET of a key
 * the file does not name is gone after it. A setting that needs a restart
 * keeps its running value, so SHOW CONFIG tells what is in effect, and the
 * change is named in a warning.
 */
START_TEST(test_reload_forgets_set_values_and_keeps_restart_settings)
{
	struct harness_sluice *s = start(NULL);
	PGconn *c = harness_connect(s, ADMIN_CONN);
	harness_command_ok(c, "SET default_pool_size = 3", "SET");
	char *port = xasprintf("listen_port = %d", s->port);
	harness_sluice_edit_ini(s, port, "listen_port = 1");
	harness_command_ok(c, "RELOAD", "RELOAD");
	char *v = harness_show_value(c, "SHOW CONFIG", "key", "default_pool_size", "value");
	ck_assert_str_eq(v, "20");
	free(v);
	v = harness_show_value(c, "SHOW CONFIG", "key", "listen_port", "value");
	ck_assert_int_eq(atoi(v), s->port);
	free(v);
	char *warning = xasprintf("WARNING listen_port changed from \"%d\" to \"1\": it takes "
				  "effect at the next restart",
		s->port);
	ck_assert_int_eq(harness_sluice_log_count(s, warning), 1);
	free(warning);
	free(port);
	PGconn *app = harness_connect(s, APP_CONN);
	expect_select_1(app);
	PQfinish(app);
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

/* RELOAD reads the %include files again, and an error in one keeps the running config. */
START_TEST(test_reload_reads_included_files_again)
{
	char dir[] = "/tmp/check_admin_control_XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	char *inc = xasprintf("%s/pool.ini", dir);
	char *extra = xasprintf("%%include %s\n", inc);
	FILE *f = fopen(inc, "w");
	ck_assert_ptr_nonnull(f);
	fputs("default_pool_size = 5\n", f);
	fclose(f);
	struct harness_sluice *s = start(extra);
	PGconn *c = harness_connect(s, ADMIN_CONN);
	ck_assert_int_eq(harness_show_long(c, "SHOW DATABASES", "name", "app", "pool_size"), 5);

	f = fopen(inc, "w");
	ck_assert_ptr_nonnull(f);
	fputs("default_pool_size = 7\n", f);
	fclose(f);
	harness_command_ok(c, "RELOAD", "RELOAD");
	ck_assert_int_eq(harness_show_long(c, "SHOW DATABASES", "name", "app", "pool_size"), 7);

	f = fopen(inc, "w");
	ck_assert_ptr_nonnull(f);
	fputs("default_pool_size = seven\n", f);
	fclose(f);
	char *e = harness_query_error(c, "RELOAD");
	ck_assert_msg(strstr(e, "RELOAD failed") != NULL, "%s", e);
	free(e);
	char *want = xasprintf("ERROR %s:1: default_pool_size: \"seven\" is not an integer", inc);
	ck_assert_int_eq(harness_sluice_log_count(s, want), 1);
	free(want);
	ck_assert_int_eq(harness_show_long(c, "SHOW DATABASES", "name", "app", "pool_size"), 7);
	PQfinish(c);
	harness_sluice_stop_ok(s);
	unlink(inc);
	rmdir(dir);
	free(inc);
	free(extra);
}
END_TEST

/* RELOAD reopens logfile, so a rotated file is let go, as PgBouncer does. */
START_TEST(test_reload_reopens_the_logfile)
{
	struct harness_sluice *s = start("logfile = @DIR@/file.log\n");
	char *path = xasprintf("%s/file.log", s->dir);
	char *rotated = xasprintf("%s/file.log.1", s->dir);
	ck_assert_int_eq(rename(path, rotated), 0);
	PGconn *c = harness_connect(s, ADMIN_CONN);
	harness_command_ok(c, "RELOAD", "RELOAD");
	PQfinish(c);
	char *text = harness_read_file(path);
	ck_assert_msg(strstr(text, "configuration reloaded") != NULL, "new logfile: %s", text);
	free(text);
	text = harness_read_file(rotated);
	ck_assert_msg(strstr(text, "configuration reloaded") == NULL, "rotated logfile: %s", text);
	free(text);
	free(path);
	free(rotated);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_later_set_of_a_key_wins_over_earlier_ones)
{
	struct harness_sluice *s = start(NULL);
	PGconn *c = harness_connect(s, ADMIN_CONN);
	harness_command_ok(c, "SET default_pool_size = 3", "SET");
	harness_command_ok(c, "SET default_pool_size = 4", "SET");
	char *v = harness_show_value(c, "SHOW CONFIG", "key", "default_pool_size", "value");
	ck_assert_str_eq(v, "4");
	free(v);
	/* A SET of another key keeps the latest value of the first. */
	harness_command_ok(c, "SET max_client_conn = 50", "SET");
	v = harness_show_value(c, "SHOW CONFIG", "key", "default_pool_size", "value");
	ck_assert_str_eq(v, "4");
	free(v);
	v = harness_show_value(c, "SHOW CONFIG", "key", "max_client_conn", "value");
	ck_assert_str_eq(v, "50");
	free(v);
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

/* ---- SHUTDOWN ------------------------------------------------------------------------- */

START_TEST(test_shutdown_wait_for_clients_exits_once_clients_are_gone)
{
	struct harness_sluice *s = start(NULL);
	PGconn *app = harness_connect(s, APP_CONN);
	PGconn *c = harness_connect(s, ADMIN_CONN);
	harness_command_ok(c, "SHUTDOWN WAIT_FOR_CLIENTS", "SHUTDOWN");
	PQfinish(c);
	/* The connected client keeps it alive and keeps working; new logins are refused. */
	ck_assert_int_eq(harness_sluice_wait(s, HELD_MS), -1);
	expect_select_1(app);
	PQfinish(app);
	ck_assert_int_eq(harness_sluice_wait(s, 5000), 0);
	harness_sluice_free(s);
}
END_TEST

/*
 * While a shutdown waits, as in PgBouncer: TCP is closed; the unix socket
 * stays for the console, and refuses other logins with "pooler is shutting
 * down"; RESUME is refused with the same words.
 */
START_TEST(test_shutdown_keeps_the_console_on_the_unix_socket_while_waiting)
{
	struct harness_sluice *s = start(NULL);
	PGconn *app = harness_connect(s, APP_CONN);
	PGconn *c = harness_connect(s, ADMIN_CONN);
	harness_command_ok(c, "PAUSE app", "PAUSE");
	harness_command_ok(c, "SHUTDOWN WAIT_FOR_CLIENTS", "SHUTDOWN");
	char *e = harness_query_error(c, "RESUME");
	ck_assert_str_eq(e, "08P01 pooler is shutting down");
	free(e);
	char *err = harness_connect_error(s, APP_CONN);
	ck_assert_msg(strstr(err, "refused") || strstr(err, "closed the connection"), "%s", err);
	free(err);
	char *unix_app = xasprintf("host=%s " APP_CONN, s->dir);
	char *unix_console = xasprintf("host=%s " ADMIN_CONN, s->dir);
	err = harness_connect_error(s, unix_app);
	ck_assert_msg(strstr(err, "pooler is shutting down"), "%s", err);
	free(err);
	PGconn *late = harness_connect(s, unix_console);
	char *v = harness_query_text(late, "SHOW VERSION");
	ck_assert_ptr_nonnull(v);
	free(v);
	PQfinish(late);
	PQfinish(c);
	PQfinish(app);
	ck_assert_int_eq(harness_sluice_wait(s, 5000), 0);
	char *sock = xasprintf("%s/.s.PGSQL.%d", s->dir, s->port);
	ck_assert_msg(access(sock, F_OK) != 0, "%s is left behind", sock);
	free(sock);
	free(unix_app);
	free(unix_console);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_plain_shutdown_exits_at_once)
{
	struct harness_sluice *s = start(NULL);
	PGconn *app = harness_connect(s, APP_CONN);
	expect_select_1(app);
	PGconn *c = harness_connect(s, ADMIN_CONN);
	PGresult *res = PQexec(c, "SHUTDOWN");
	/* The answer may or may not make it out before the process is gone. */
	if (PQresultStatus(res) == PGRES_COMMAND_OK)
		ck_assert_str_eq(PQcmdStatus(res), "SHUTDOWN");
	PQclear(res);
	ck_assert_int_eq(harness_sluice_wait(s, 5000), 0);
	PQfinish(c);
	PQfinish(app);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_shutdown_wait_for_servers_exits_once_transactions_end)
{
	struct harness_sluice *s = start(NULL);
	PGconn *app = harness_connect(s, APP_CONN);
	PQclear(PQexec(app, "BEGIN"));
	expect_select_1(app);
	PGconn *c = harness_connect(s, ADMIN_CONN);
	harness_command_ok(c, "SHUTDOWN WAIT_FOR_SERVERS", "SHUTDOWN");
	/* The open transaction holds its server, so sluice stays until it ends. */
	ck_assert_int_eq(harness_sluice_wait(s, HELD_MS), -1);
	expect_select_1(app);
	PGresult *res = PQexec(app, "COMMIT");
	ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "%s", PQresultErrorMessage(res));
	PQclear(res);
	ck_assert_int_eq(harness_sluice_wait(s, 5000), 0);
	PQfinish(c);
	PQfinish(app);
	harness_sluice_free(s);
}
END_TEST

/* PgBouncer's test_newly_paused_client_during_wait_for_servers_shutdown. */
START_TEST(test_shutdown_wait_for_servers_closes_a_client_starting_a_transaction)
{
	struct harness_sluice *s = start(NULL);
	PGconn *app = harness_connect(s, APP_CONN);
	PGconn *other = harness_connect(s, APP_CONN);
	PQclear(PQexec(app, "BEGIN"));
	expect_select_1(app);
	PGconn *c = harness_connect(s, ADMIN_CONN);
	harness_command_ok(c, "SHUTDOWN WAIT_FOR_SERVERS", "SHUTDOWN");
	long start_ms = harness_now_ms();
	char *e = harness_query_error(other, "SELECT 1");
	ck_assert_msg(strstr(e, "server shutting down") != NULL, "%s", e);
	free(e);
	ck_assert_int_lt(harness_now_ms() - start_ms, 3000);
	ck_assert(harness_sluice_log_wait(s, "closing because: server shutting down", 3000));
	/* The transaction under way finishes, then sluice exits. */
	expect_select_1(app);
	PQclear(PQexec(app, "COMMIT"));
	ck_assert_int_eq(harness_sluice_wait(s, 5000), 0);
	PQfinish(c);
	PQfinish(other);
	PQfinish(app);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_kill_without_database_drops_every_client_but_the_console)
{
	struct harness_sluice *s = start(NULL);
	PGconn *a = harness_connect(s, APP_CONN);
	PGconn *b = harness_connect(s, "dbname=postgres user=md5user password=md5userpw");
	expect_select_1(a);
	expect_select_1(b);
	PGconn *c = harness_connect(s, ADMIN_CONN);
	harness_command_ok(c, "KILL", "KILL");
	char *e = harness_query_error(a, "SELECT 1");
	free(e);
	e = harness_query_error(b, "SELECT 1");
	free(e);
	/* The console itself survives and can undo the pause. */
	char *v = harness_show_value(c, "SHOW STATE", "key", "paused", "value");
	ck_assert_str_eq(v, "yes");
	free(v);
	harness_command_ok(c, "RESUME", "RESUME");
	PGconn *late = harness_connect(s, APP_CONN);
	expect_select_1(late);
	PQfinish(late);
	PQfinish(c);
	PQfinish(b);
	PQfinish(a);
	harness_sluice_stop_ok(s);
}
END_TEST

/* ---- the Debian exporter ------------------------------------------------------------ */

#define EXPORTER "/usr/bin/prometheus-pgbouncer-exporter"

START_TEST(test_debian_exporter_scrapes_the_console)
{
	if (access(EXPORTER, X_OK) != 0) {
		fprintf(stderr, "skipped: %s is not installed\n", EXPORTER);
		return;
	}
	struct harness_sluice *s = start(NULL);
	PGconn *app = harness_connect(s, APP_CONN);
	expect_select_1(app);
	int port = harness_free_port();
	char port_s[16], sluice_port[16], log_path[1024];
	snprintf(port_s, sizeof(port_s), "%d", port);
	snprintf(sluice_port, sizeof(sluice_port), "%d", s->port);
	snprintf(log_path, sizeof(log_path), "%s/exporter.log", s->dir);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		FILE *f = freopen(log_path, "w", stderr);
		(void)f;
		dup2(2, 1);
		/* Peer login as pgbouncer over the unix socket: it has no password flag. */
		execl(EXPORTER, EXPORTER, "--host", "127.0.0.1", "--port", port_s,
			"--pgbouncer-host", s->dir, "--pgbouncer-port", sluice_port,
			"--pgbouncer-user", "pgbouncer", (char *)NULL);
		_exit(127);
	}
	char *body = NULL;
	long deadline = harness_now_ms() + 10000;
	while (!body && harness_now_ms() < deadline && waitpid(pid, NULL, WNOHANG) == 0) {
		body = harness_http_get(port, "/metrics");
		if (!body)
			harness_sleep_ms(100);
	}
	char *log = harness_read_file(log_path);
	ck_assert_msg(body != NULL, "the exporter served nothing; its log:\n%s", log);
	ck_assert_msg(strstr(body, " 200 "), "scrape failed:\n%.2000s\nlog:\n%s", body, log);
	ck_assert_msg(strstr(body, "pgbouncer_active_clients{database=\"app\",user=\"md5user\"}"),
		"no pool metrics:\n%.4000s", body);
	ck_assert_msg(strstr(body, "pgbouncer_pool_size{database=\"app\"}"),
		"no database metrics:\n%.4000s", body);
	ck_assert_msg(strstr(body, "pgbouncer_databases "), "no list metrics:\n%.4000s", body);
	free(log);
	free(body);
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	PQfinish(app);
	harness_sluice_stop_ok(s);
}
END_TEST

static Suite *admin_control_suite(void)
{
	Suite *suite = suite_create("admin_control");
	TCase *tc = harness_tcase("flow");
	tcase_add_test(tc, test_pause_waits_for_active_servers_and_holds_queries_until_resume);
	tcase_add_test(tc, test_pause_with_nothing_active_is_answered_at_once);
	tcase_add_test(tc, test_pause_of_one_database_leaves_the_others_running);
	tcase_add_test(tc, test_console_leaving_during_pause_leaves_sluice_paused_and_sound);
	tcase_add_test(tc, test_disable_refuses_new_logins_until_enable);
	tcase_add_test(tc, test_kill_drops_the_databases_clients_and_pauses_it);
	tcase_add_test(tc, test_kill_client_drops_exactly_that_client);
	tcase_add_test(tc, test_kill_without_database_drops_every_client_but_the_console);
	tcase_add_test(tc, test_reconnect_replaces_servers_and_wait_close_returns_when_gone);
	suite_add_tcase(suite, tc);
	tc = harness_tcase("config");
	tcase_add_test(tc, test_reload_applies_a_changed_ini_and_refuses_a_broken_one);
	tcase_add_test(tc, test_set_changes_reloadable_keys_and_refuses_others);
	tcase_add_test(tc, test_set_of_a_pgbouncer_only_setting_warns_and_succeeds);
	tcase_add_test(tc, test_later_set_of_a_key_wins_over_earlier_ones);
	tcase_add_test(tc, test_reload_forgets_set_values_and_keeps_restart_settings);
	tcase_add_test(tc, test_reload_reads_included_files_again);
	tcase_add_test(tc, test_reload_reopens_the_logfile);
	suite_add_tcase(suite, tc);
	tc = harness_tcase("shutdown");
	tcase_add_test(tc, test_shutdown_wait_for_clients_exits_once_clients_are_gone);
	tcase_add_test(tc, test_shutdown_keeps_the_console_on_the_unix_socket_while_waiting);
	tcase_add_test(tc, test_plain_shutdown_exits_at_once);
	tcase_add_test(tc, test_shutdown_wait_for_servers_exits_once_transactions_end);
	tcase_add_test(tc, test_shutdown_wait_for_servers_closes_a_client_starting_a_transaction);
	suite_add_tcase(suite, tc);
	if (getenv("SLUICE_TEST_EXPORTER")) {
		tc = harness_tcase("exporter");
		tcase_add_test(tc, test_debian_exporter_scrapes_the_console);
		suite_add_tcase(suite, tc);
	}
	return suite;
}

int main(void)
{
	return harness_run_suite(admin_control_suite());
}
