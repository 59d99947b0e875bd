/*
 * check_auth_query.c - auth_user, auth_query and auth_dbname: users the
 * auth_file does not list, looked up in PostgreSQL with libpq, through real
 * clients.
 *
 * The secrets are PostgreSQL's own (pg_authid through the default query or a
 * SECURITY DEFINER function), so md5 roles log in to the server with their
 * md5 secret and SCRAM roles with the keys their client proved (pass-through).
 * A logging function (lookup_logged) counts the queries PostgreSQL really
 * ran, which is how the tests see that a stampede of logins runs one look-up,
 * that the cache spares queries and that a failed login forgets the secret.
 * Hostile user names travel as the query's parameter; the table they try to
 * drop is still there afterwards.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * In app: a log of look-ups, a function that logs and answers like the
 * default query, a slow one for stampedes, and one of the wrong shape.
 * Idempotent, as every test calls it.
 */
static void provision_lookups(void)
{
	free(harness_pg_exec(
		"SET client_min_messages = warning;"
		"CREATE TABLE IF NOT EXISTS lookup_log (usename text, at timestamptz DEFAULT now());"
		"CREATE OR REPLACE FUNCTION lookup_logged(u text) RETURNS TABLE (usename name, "
		"passwd text) LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN "
		"INSERT INTO lookup_log (usename) VALUES (u); "
		"RETURN QUERY SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL "
		"ELSE rolpassword END FROM pg_authid WHERE rolname = u AND rolcanlogin; END $$;"
		"CREATE OR REPLACE FUNCTION lookup_slow(u text) RETURNS TABLE (usename name, "
		"passwd text) LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN "
		"PERFORM pg_sleep(1); RETURN QUERY SELECT * FROM lookup_logged(u); END $$;"
		"GRANT EXECUTE ON FUNCTION lookup_logged(text), lookup_slow(text) TO PUBLIC;"
		"TRUNCATE lookup_log"));
	free(harness_pg_exec("DO $$ BEGIN "
			     "IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'expireduser') THEN "
			     "CREATE ROLE expireduser LOGIN PASSWORD 'expireduserpw' "
			     "VALID UNTIL '1999-01-01'; END IF; "
			     "IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'nologinuser') THEN "
			     "CREATE ROLE nologinuser NOLOGIN PASSWORD 'nologinuserpw'; END IF; "
			     "END $$"));
}

static long lookups_of(const char *user)
{
	return harness_pg_exec_long("SELECT count(*) FROM lookup_log WHERE usename = '%s'", user);
}

/* Only someone is in the auth_file: everyone else is looked up. */
static const char userlist[] = "\"someone\" \"someonepw\"\n\"md5user\" \"md5userpw\"\n";

static struct harness_sluice *start(const char *extra, const char *databases)
{
	provision_lookups();
	char *ini = xasprintf("auth_type = md5\nadmin_users = someone\n%s", extra ? extra : "");
	struct harness_sluice *s = harness_sluice_start(ini, databases, userlist);
	free(ini);
	return s;
}

static void assert_fails_with(const struct harness_sluice *s, const char *conninfo,
	const char *needle)
{
	char *err = harness_connect_error(s, conninfo);
	ck_assert_msg(strstr(err, needle) != NULL, "\"%s\": expected \"%s\", got: %s", conninfo,
		needle, err);
	free(err);
}

static void assert_logs_in_as(const struct harness_sluice *s, const char *conninfo,
	const char *user)
{
	PGconn *c = harness_connect(s, conninfo);
	char *who = harness_query_text(c, "SELECT current_user");
	ck_assert_str_eq(who, user);
	free(who);
	PQfinish(c);
}

/*
 * The look-up connection is killed while sluice cannot run (stopped, as a
 * starved process is), with a login on its way: the login is answered
 * (its password asked for), however the kill, the login and the query
 * sent on the dead connection meet in sluice's loop.
 */
START_TEST(test_a_lookup_connection_killed_while_sluice_is_stopped_costs_no_login)
{
	struct harness_sluice *s = start("auth_user = postgres\n", NULL);
	assert_logs_in_as(s, "dbname=app user=scramuser password=scramuserpw", "scramuser");
	ck_assert_int_eq(kill(s->pid, SIGSTOP), 0);
	int fd = harness_raw_connect(s->port);
	harness_raw_send_startup(fd, "plainuser", "app");
	harness_sleep_ms(100);
	long killed = harness_pg_exec_long("SELECT count(pg_terminate_backend(pid)) FROM "
					   "pg_stat_activity WHERE application_name = "
					   "'sluice auth_query'");
	harness_sleep_ms(200);
	ck_assert_int_eq(kill(s->pid, SIGCONT), 0);
	ck_assert_int_eq(killed, 1);
	/* Looked up: its password is asked for (an ErrorResponse would say the look-up failed). */
	struct harness_msg m;
	long t0 = harness_now_ms();
	ck_assert_msg(harness_raw_read_msg(fd, &m), "no answer to the login in %ld ms",
		      harness_now_ms() - t0);
	ck_assert_msg(m.type == 'R', "the login got '%c': %s", m.type,
		      m.type == 'E' ? harness_msg_field(&m, 'M') : "");
	free(m.body);
	close(fd);
	ck_assert_int_eq(harness_sluice_log_count(s, "auth_query look-up failed"), 0);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_default_query_md5_and_scram_roles)
{
	/* auth_user is the superuser, trusted by the harness's pg_hba.conf: the default query. */
	struct harness_sluice *s = start("auth_user = postgres\n", NULL);
	/* md5: the server login answers md5 with the secret pg_authid gave. */
	assert_logs_in_as(s, "dbname=app user=md5user password=md5userpw", "md5user");
	/* SCRAM: the client's proof gives the keys the server login passes through. */
	assert_logs_in_as(s, "dbname=app user=scramuser password=scramuserpw", "scramuser");
	assert_fails_with(s, "dbname=app user=scramuser password=wrong",
		"SASL authentication failed");
	assert_fails_with(s, "dbname=app user=nosuchuser password=x", "no such user");
	/* The default query hides an expired password and users who may not log in. */
	assert_fails_with(s, "dbname=app user=expireduser password=expireduserpw",
		"password authentication failed for user \"expireduser\"");
	assert_fails_with(s, "dbname=app user=nologinuser password=nologinuserpw", "no such user");
	/* The look-up connection shows in pg_stat_activity for what it is, and is kept. */
	ck_assert_int_eq(harness_pg_exec_long("SELECT count(*) FROM pg_stat_activity WHERE "
					      "application_name = 'sluice auth_query'"),
		1);
	/* Killed while idle (a restart, idle_session_timeout): the next login makes a new one. */
	ck_assert_int_eq(harness_pg_exec_long("SELECT count(pg_terminate_backend(pid)) FROM "
					      "pg_stat_activity WHERE application_name = "
					      "'sluice auth_query'"),
		1);
	assert_logs_in_as(s, "dbname=app user=scramuser password=scramuserpw", "scramuser");
	ck_assert_int_eq(harness_sluice_log_count(s, "auth_query look-up failed"), 0);
	/*
	 * plainuser's server asks for a cleartext password, which a SCRAM secret
	 * cannot give: under md5 the client's SCRAM keys do not serve...
	 */
	assert_fails_with(s, "dbname=app user=plainuser password=plainuserpw",
		"no password available to log in to the server");
	harness_sluice_stop_ok(s);
	/* ...under plain the password the client sent, checked against the secret, does. */
	s = harness_sluice_start("auth_type = plain\nauth_user = postgres\n", NULL, userlist);
	assert_logs_in_as(s, "dbname=app user=plainuser password=plainuserpw", "plainuser");
	assert_fails_with(s, "dbname=app user=plainuser password=wrong",
		"password authentication failed for user \"plainuser\"");
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_hostile_user_names_are_parameters)
{
	struct harness_sluice *s =
		start("auth_user = postgres\nauth_query = SELECT * FROM lookup_logged($1)\n", NULL);
	static const char *const names[] = {
		"x'; DROP TABLE items; --",
		"\" OR 1=1 --",
		"$1",
		"a\\\\b",
		"\\'; SELECT pg_sleep(10); --",
		"ünïcødé",
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		/* conninfo quoting: single quotes, with ' and \ escaped by a backslash. */
		char quoted[256];
		size_t n = 0;
		for (const char *p = names[i]; *p && n < sizeof(quoted) - 3; p++) {
			if (*p == '\'' || *p == '\\')
				quoted[n++] = '\\';
			quoted[n++] = *p;
		}
		quoted[n] = '\0';
		char *conninfo = xasprintf("dbname=app user='%s' password=x", quoted);
		long t0 = harness_now_ms();
		assert_fails_with(s, conninfo, "no such user");
		ck_assert_int_lt(harness_now_ms() - t0, 5000);
		free(conninfo);
	}
	/* Each reached PostgreSQL intact, as a value, and nothing ran. */
	ck_assert_int_eq(harness_pg_exec_long("SELECT count(*) FROM lookup_log"),
		(long)(sizeof(names) / sizeof(names[0])));
	ck_assert_int_eq(harness_pg_exec_long("SELECT count(*) FROM lookup_log WHERE usename = "
					      "'x''; DROP TABLE items; --'"),
		1);
	ck_assert_int_eq(harness_pg_exec_long("SELECT count(*) FROM items WHERE id <= 3"), 3);
	ck_assert_int_eq(harness_sluice_log_count(s, "error in auth_query"), 0);
	harness_sluice_stop_ok(s);
}
END_TEST

static const char per_db_databases[] =
	"app = host=@PGHOST@ port=@PGPORT@ dbname=app\n"
	"lookups = host=@PGHOST@ port=@PGPORT@ dbname=app\n"
	"custom = host=@PGHOST@ port=@PGPORT@ dbname=app auth_user=md5user auth_dbname=lookups "
	"auth_query='SELECT * FROM lookup_logged($1)'\n"
	"one_column = host=@PGHOST@ port=@PGPORT@ dbname=app "
	"auth_query='SELECT rolname FROM pg_authid WHERE rolname = $1'\n"
	"no_table = host=@PGHOST@ port=@PGPORT@ dbname=app "
	"auth_query='SELECT a, b FROM no_such_table WHERE a = $1'\n"
	"nowhere = host=@PGHOST@ port=@PGPORT@ dbname=app auth_dbname=not_configured\n"
	"reserved = host=@PGHOST@ port=@PGPORT@ dbname=app auth_dbname=pgbouncer\n"
	"down = host=127.0.0.1 port=1 dbname=app\n"
	"via_down = host=@PGHOST@ port=@PGPORT@ dbname=app auth_dbname=down\n"
	"gone = host=@PGHOST@ port=@PGPORT@ dbname=no_such_database\n";

START_TEST(test_per_database_settings_and_their_errors)
{
	struct harness_sluice *s = start("auth_user = postgres\n", per_db_databases);
	/* custom: md5user (password from the auth_file, md5 in pg_hba.conf) runs the function. */
	assert_logs_in_as(s, "dbname=custom user=scramuser password=scramuserpw", "scramuser");
	ck_assert_int_eq(lookups_of("scramuser"), 1);
	ck_assert_int_eq(harness_pg_exec_long("SELECT count(*) FROM pg_stat_activity WHERE "
					      "application_name = 'sluice auth_query' AND "
					      "usename = 'md5user'"),
		1);
	/* app: the global auth_user and the default query, which logs nothing. */
	assert_logs_in_as(s, "dbname=app user=scramuser password=scramuserpw", "scramuser");
	ck_assert_int_eq(lookups_of("scramuser"), 1);

	assert_fails_with(s, "dbname=one_column user=scramuser password=scramuserpw",
		"bouncer config error");
	ck_assert(harness_sluice_log_wait(s, "expected 2 columns from auth_query, not 1", 5000));
	assert_fails_with(s, "dbname=no_table user=scramuser password=scramuserpw",
		"bouncer config error");
	ck_assert(harness_sluice_log_wait(s, "relation \"no_such_table\" does not exist", 5000));
	assert_fails_with(s, "dbname=nowhere user=scramuser password=scramuserpw",
		"bouncer config error");
	ck_assert(harness_sluice_log_wait(s,
		"authentication database \"not_configured\" is not configured", 5000));
	assert_fails_with(s, "dbname=reserved user=scramuser password=scramuserpw",
		"bouncer config error");
	ck_assert(harness_sluice_log_wait(s,
		"cannot use the reserved \"pgbouncer\" database as an auth_dbname", 5000));
	/* Nothing listens on port 1: the client hears so at once, nobody else is held up. */
	long t0 = harness_now_ms();
	assert_fails_with(s, "dbname=via_down user=scramuser password=scramuserpw",
		"could not look the user up in the authentication database");
	ck_assert_int_lt(harness_now_ms() - t0, 5000);
	ck_assert(harness_sluice_log_wait(s, "auth_query look-up failed", 5000));

	/* The look-up runs in the client's database, which PostgreSQL does not have: its words. */
	assert_fails_with(s, "dbname=gone user=scramuser password=scramuserpw",
		"database \"no_such_database\" does not exist");
	ck_assert(harness_sluice_log_wait(s,
		"server login failed: FATAL database \"no_such_database\" does not exist", 5000));

	/* A disabled authentication database refuses the login, in PgBouncer's words. */
	PGconn *console = harness_connect(s, "dbname=pgbouncer user=someone password=someonepw");
	PQclear(PQexec(console, "DISABLE lookups"));
	assert_fails_with(s, "dbname=custom user=scramuser password=scramuserpw",
		"authentication database \"lookups\" is disabled");
	PQclear(PQexec(console, "ENABLE lookups"));
	assert_logs_in_as(s, "dbname=custom user=scramuser password=scramuserpw", "scramuser");
	PQfinish(console);
	/* Users of the auth_file are never looked up. */
	assert_logs_in_as(s, "dbname=custom user=md5user password=md5userpw", "md5user");
	ck_assert_int_eq(lookups_of("md5user"), 0);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_auth_user_wrong_password)
{
	provision_lookups();
	/* md5user is md5 in pg_hba.conf: the look-up's login is refused. */
	struct harness_sluice *s = harness_sluice_start(
		"auth_type = md5\nauth_user = md5user\n"
		"auth_query = SELECT * FROM lookup_logged($1)\n",
		NULL, "\"md5user\" \"not-its-password\"\n");
	/* PostgreSQL's refusal of the look-up's login reaches the client, as PgBouncer's. */
	char *err = harness_connect_error(s, "dbname=app user=scramuser password=scramuserpw");
	ck_assert_msg(strstr(err, "password authentication failed for user \"md5user\""), "%s",
		err);
	free(err);
	ck_assert(harness_sluice_log_wait(s,
		"auth_query look-up failed: server login failed: FATAL password authentication failed "
		"for user \"md5user\"",
		5000));
	ck_assert_int_eq(lookups_of("scramuser"), 0);
	harness_sluice_stop_ok(s);
}
END_TEST

/*
 * An authentication database that accepts connections and never answers:
 * server_connect_timeout bounds the look-up, the client hears why, and a
 * client of the auth_file is served meanwhile.
 */
START_TEST(test_silent_auth_database_times_out)
{
	int silent = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(silent, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(silent, 16), 0);
	socklen_t len = sizeof(sa);
	ck_assert_int_eq(getsockname(silent, (struct sockaddr *)&sa, &len), 0);
	char *dbs = xasprintf("app = host=@PGHOST@ port=@PGPORT@ dbname=app auth_dbname=silent\n"
			      "silent = host=127.0.0.1 port=%d dbname=app\n",
		ntohs(sa.sin_port));
	struct harness_sluice *s = start("auth_user = postgres\nserver_connect_timeout = 1\n", dbs);
	free(dbs);
	PGconn *other = harness_connect(s, "dbname=app user=md5user password=md5userpw");
	long t0 = harness_now_ms();
	assert_fails_with(s, "dbname=app user=scramuser password=scramuserpw",
		"could not look the user up in the authentication database");
	long took = harness_now_ms() - t0;
	ck_assert_msg(took >= 900 && took < 5000, "the look-up took %ld ms", took);
	ck_assert(harness_sluice_log_wait(s, "connect timed out", 5000));
	harness_expect_answer(other, "SELECT 1", "1");
	PQfinish(other);
	harness_sluice_stop_ok(s);
	close(silent);
}
END_TEST

/* Logins under way at once, driven by libpq's non-blocking connect. */
struct stampede {
	int n;
	PGconn *conns[64];
	PostgresPollingStatusType st[64];
};

static void stampede_start(struct stampede *sp, const struct harness_sluice *s, const char *user,
	const char *password, int n)
{
	char port[16];
	snprintf(port, sizeof(port), "%d", s->port);
	const char *keys[] = { "host", "port", "dbname", "user", "password", NULL };
	const char *vals[] = { "127.0.0.1", port, "app", user, password, NULL };
	ck_assert_int_le(n, 64);
	sp->n = n;
	for (int i = 0; i < n; i++) {
		sp->conns[i] = PQconnectStartParams(keys, vals, 0);
		ck_assert_ptr_nonnull(sp->conns[i]);
		sp->st[i] = PGRES_POLLING_WRITING;
	}
}

/* Drives the logins for up to ms; returns how many are still under way. */
static int stampede_drive(struct stampede *sp, long ms)
{
	long deadline = harness_now_ms() + ms;
	for (;;) {
		struct pollfd pfd[64];
		int waiting = 0;
		for (int i = 0; i < sp->n; i++) {
			bool done = sp->st[i] == PGRES_POLLING_OK ||
				    sp->st[i] == PGRES_POLLING_FAILED;
			pfd[i] = (struct pollfd){ .fd = done ? -1 : PQsocket(sp->conns[i]),
				.events = sp->st[i] == PGRES_POLLING_READING ? POLLIN : POLLOUT };
			waiting += !done;
		}
		long left = deadline - harness_now_ms();
		if (!waiting || left <= 0)
			return waiting;
		if (poll(pfd, (nfds_t)sp->n, (int)(left < 100 ? left : 100)) <= 0)
			continue;
		for (int i = 0; i < sp->n; i++)
			if (pfd[i].fd >= 0 && pfd[i].revents)
				sp->st[i] = PQconnectPoll(sp->conns[i]);
	}
}

START_TEST(test_stampede_runs_one_lookup_and_blocks_nobody)
{
	/* A look-up takes a second (pg_sleep in the function): long enough to pile logins on. */
	int http = harness_free_port();
	char *extra = xasprintf("auth_user = postgres\nauth_query = SELECT * FROM lookup_slow($1)\n"
				"metrics_port = %d\n",
		http);
	struct harness_sluice *s = start(extra, NULL);
	free(extra);
	/* A client of the auth_file, logged in before: its queries must not wait for look-ups. */
	PGconn *busy = harness_connect(s, "dbname=app user=md5user password=md5userpw");

	enum { N = 20 };
	struct stampede sp;
	stampede_start(&sp, s, "scramuser", "scramuserpw", N);
	/* Every startup packet is in; the look-up sleeps in PostgreSQL. */
	ck_assert_int_eq(stampede_drive(&sp, 300), N);
	long t0 = harness_now_ms();
	harness_expect_answer(busy, "SELECT 1", "1");
	ck_assert_int_lt(harness_now_ms() - t0, 300);
	ck_assert_int_eq(stampede_drive(&sp, 20000), 0);
	for (int i = 0; i < N; i++) {
		ck_assert_msg(sp.st[i] == PGRES_POLLING_OK, "login %d: %s", i,
			PQerrorMessage(sp.conns[i]));
		PQfinish(sp.conns[i]);
	}
	ck_assert_int_eq(lookups_of("scramuser"), 1);

	/* Without a cache, the next login asks again. */
	assert_logs_in_as(s, "dbname=app user=scramuser password=scramuserpw", "scramuser");
	ck_assert_int_eq(lookups_of("scramuser"), 2);

	char *metrics = harness_http_get(http, "/metrics");
	ck_assert_ptr_nonnull(metrics);
	ck_assert_msg(strstr(metrics, "sluice_auth_query_total{result=\"found\"} 2\n") != NULL,
		"%s", metrics);
	ck_assert_msg(strstr(metrics, "sluice_auth_query_total{result=\"joined\"} 19\n") != NULL,
		"%s", metrics);
	free(metrics);
	PQfinish(busy);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_cache_keeps_secret_and_a_failed_login_forgets_it)
{
	struct harness_sluice *s =
		start("auth_user = postgres\nauth_query = SELECT * FROM lookup_logged($1)\n"
		      "auth_query_cache_ttl = 60\n",
			NULL);
	assert_logs_in_as(s, "dbname=app user=scramuser password=scramuserpw", "scramuser");
	assert_logs_in_as(s, "dbname=app user=scramuser password=scramuserpw", "scramuser");
	ck_assert_int_eq(lookups_of("scramuser"), 1);

	/* The password changes: the cached secret refuses the new one once, then it is read again. */
	free(harness_pg_exec("ALTER ROLE scramuser PASSWORD 'changedpw'"));
	assert_fails_with(s, "dbname=app user=scramuser password=changedpw",
		"SASL authentication failed");
	ck_assert_int_eq(lookups_of("scramuser"), 1);
	assert_logs_in_as(s, "dbname=app user=scramuser password=changedpw", "scramuser");
	ck_assert_int_eq(lookups_of("scramuser"), 2);
	free(harness_pg_exec("ALTER ROLE scramuser PASSWORD 'scramuserpw'"));

	/* RELOAD drops what was cached. */
	PGconn *console = harness_connect(s, "dbname=pgbouncer user=someone password=someonepw");
	PQclear(PQexec(console, "RELOAD"));
	PQfinish(console);
	assert_logs_in_as(s, "dbname=app user=scramuser password=scramuserpw", "scramuser");
	ck_assert_int_eq(lookups_of("scramuser"), 3);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_console_login_and_user_limit)
{
	/* Without an auth_dbname the console's own database would be asked: refused. */
	struct harness_sluice *s = start("auth_user = postgres\nstats_users = scramuser\n", NULL);
	assert_fails_with(s, "dbname=pgbouncer user=scramuser password=scramuserpw",
		"bouncer config error");
	ck_assert(harness_sluice_log_wait(s,
		"cannot use the reserved \"pgbouncer\" database as an auth_dbname", 5000));
	harness_sluice_stop_ok(s);

	s = start("auth_user = postgres\nauth_dbname = app\nstats_users = scramuser\n"
		  "max_user_client_connections = 1\n",
		NULL);
	PGconn *console = harness_connect(s, "dbname=pgbouncer user=scramuser password=scramuserpw");
	char *v = harness_query_text(console, "SHOW VERSION");
	ck_assert_ptr_nonnull(v);
	free(v);
	PQfinish(console);
	/* A looked-up user counts against max_user_client_connections, as PgBouncer's. */
	PGconn *first = harness_connect(s, "dbname=app user=scramuser password=scramuserpw");
	assert_fails_with(s, "dbname=app user=scramuser password=scramuserpw",
		"max_user_client_connections");
	PQfinish(first);
	harness_sluice_stop_ok(s);
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("auth_query");
	TCase *tc = harness_tcase("auth_query");
	tcase_add_test(tc, test_default_query_md5_and_scram_roles);
	tcase_add_test(tc, test_a_lookup_connection_killed_while_sluice_is_stopped_costs_no_login);
	tcase_add_test(tc, test_hostile_user_names_are_parameters);
	tcase_add_test(tc, test_per_database_settings_and_their_errors);
	tcase_add_test(tc, test_auth_user_wrong_password);
	tcase_add_test(tc, test_silent_auth_database_times_out);
	tcase_add_test(tc, test_stampede_runs_one_lookup_and_blocks_nobody);
	tcase_add_test(tc, test_cache_keeps_secret_and_a_failed_login_forgets_it);
	tcase_add_test(tc, test_console_login_and_user_limit);
	suite_add_tcase(suite, tc);
	return harness_run_suite(suite);
}
