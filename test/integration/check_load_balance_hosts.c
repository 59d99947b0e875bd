/*
 * check_load_balance_hosts.c - a [databases] entry with several hosts, and
 * load_balance_hosts: round-robin spreads new server connections over the
 * hosts, disable keeps to one host until a connection to it fails, and a
 * host that fails is skipped at once (the client does not hear of it, and
 * server_login_retry does not delay it) as long as another host is left.
 *
 * The harness's one PostgreSQL serves as two hosts: its TCP address and its
 * unix socket directory. PostgreSQL tells them apart in pg_stat_activity
 * (client_addr is NULL on the unix socket), so the tests count where
 * servers went where it cannot lie. A host that is down is 127.0.0.1 on a
 * port where nothing listens (a port list pairs the ports with the hosts).
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define USERLIST "\"trustuser\" \"trustuserpw\"\n\"md5user\" \"md5userpw\"\n"
/* Session mode: each open client keeps its server, so N clients are N servers. */
#define INI "auth_type = trust\nadmin_users = md5user\nserver_login_retry = 30\n"
#define ADMIN_CONN "dbname=pgbouncer user=md5user"
#define CLIENT_CONN "dbname=multi user=trustuser"
#define N_CLIENTS 4
#define LB "load_balance_hosts"
#define DISABLE LB "=disable"

/* trustuser's backends on PostgreSQL that came over TCP (tcp) or the unix socket. */
static long backends_by(bool tcp)
{
	return harness_pg_exec_long("SELECT count(*) FROM pg_stat_activity WHERE usename = "
				    "'trustuser' AND client_addr IS %s NULL",
		tcp ? "NOT" : "");
}

/* The previous test's sluice has gone; its backends may take a moment to leave. */
static void expect_no_backends(void)
{
	long n = harness_wait_backends("trustuser", 0, 3000);
	ck_assert_msg(n == 0, "%ld backends left over from an earlier test", n);
}

/* Opens n session clients one after the other, each with a server of its own. */
static void open_clients(struct harness_sluice *s, PGconn **conns, int n)
{
	for (int i = 0; i < n; i++) {
		conns[i] = harness_connect(s, CLIENT_CONN);
		harness_expect_answer(conns[i], "SELECT 1", "1");
	}
}

static void close_clients(PGconn **conns, int n)
{
	for (int i = 0; i < n; i++)
		PQfinish(conns[i]);
}

/* Starts sluice with one database "multi" = host=<hosts> port=<ports> and extra keys. */
static struct harness_sluice *start_multi(const char *hosts, const char *ports, const char *keys)
{
	char *dbs = xasprintf("multi = host=%s port=%s dbname=app user=trustuser %s\n", hosts,
		ports, keys);
	struct harness_sluice *s = harness_sluice_start(INI, dbs, USERLIST);
	free(dbs);
	return s;
}

START_TEST(test_round_robin_alternates_between_the_hosts)
{
	expect_no_backends();
	struct harness_sluice *s = start_multi("@PGHOST@,@PGSOCKET@", "@PGPORT@", "");
	PGconn *conns[N_CLIENTS];
	open_clients(s, conns, N_CLIENTS);
	ck_assert_int_eq(backends_by(true), N_CLIENTS / 2);
	ck_assert_int_eq(backends_by(false), N_CLIENTS / 2);
	/* The log names the address each server used, as PgBouncer's does. */
	char *tcp = xasprintf("@%s:%d new connection to server", harness_pg()->host,
		harness_pg()->port);
	ck_assert_int_eq(harness_sluice_log_count(s, tcp), N_CLIENTS / 2);
	free(tcp);

	/* SHOW DATABASES and SHOW POOLS name the list and the policy, as PgBouncer does. */
	PGconn *admin = harness_connect(s, ADMIN_CONN);
	char *host = harness_show_value(admin, "SHOW DATABASES", "name", "multi", "host");
	char *want = xasprintf("%s,%s", harness_pg()->host, harness_pg()->socket_dir);
	ck_assert_str_eq(host, want);
	free(want);
	free(host);
	char *lb = harness_show_value(admin, "SHOW DATABASES", "name", "multi", LB);
	ck_assert_str_eq(lb, "round-robin");
	free(lb);
	lb = harness_show_value(admin, "SHOW POOLS", "database", "multi", LB);
	ck_assert_str_eq(lb, "round-robin");
	free(lb);
	/* A database with one host has no policy to show. */
	lb = harness_show_value(admin, "SHOW DATABASES", "name", "app", LB);
	ck_assert_ptr_null(lb);
	PQfinish(admin);
	close_clients(conns, N_CLIENTS);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_disable_keeps_to_the_first_host)
{
	expect_no_backends();
	struct harness_sluice *s =
		start_multi("@PGHOST@,@PGSOCKET@", "@PGPORT@", DISABLE);
	PGconn *conns[N_CLIENTS];
	open_clients(s, conns, N_CLIENTS);
	ck_assert_int_eq(backends_by(true), N_CLIENTS);
	ck_assert_int_eq(backends_by(false), 0);
	PGconn *admin = harness_connect(s, ADMIN_CONN);
	char *lb = harness_show_value(admin, "SHOW DATABASES", "name", "multi", LB);
	ck_assert_str_eq(lb, "disable");
	free(lb);

	/* A reload that changes the policy is shown, and new servers follow it. */
	close_clients(conns, N_CLIENTS);
	harness_sluice_edit_ini(s, "load_balance_hosts=disable", "load_balance_hosts=round-robin");
	free(harness_query_text(admin, "RELOAD"));
	lb = harness_show_value(admin, "SHOW DATABASES", "name", "multi", LB);
	ck_assert_str_eq(lb, "round-robin");
	free(lb);
	/* The policy changed: the old servers close instead of being reused. */
	ck_assert_int_eq(harness_wait_backends("trustuser", 0, 3000), 0);
	open_clients(s, conns, 2);
	ck_assert_int_eq(backends_by(true), 1);
	ck_assert_int_eq(backends_by(false), 1);
	close_clients(conns, 2);
	PQfinish(admin);
	harness_sluice_stop_ok(s);
}
END_TEST

/*
 * The first host is down: the first login fails over to the second at once
 * (server_login_retry is 30 s, and the client is answered well before), the
 * client never hears of it, and with disable every later server goes to the
 * host that worked without trying the dead one again.
 */
START_TEST(test_disable_fails_over_to_the_next_host)
{
	expect_no_backends();
	int dead = harness_free_port();
	char *ports = xasprintf("%d,@PGPORT@", dead);
	struct harness_sluice *s = start_multi("127.0.0.1,@PGSOCKET@", ports, DISABLE);
	free(ports);
	long t0 = harness_now_ms();
	PGconn *conns[N_CLIENTS];
	open_clients(s, conns, N_CLIENTS);
	ck_assert_msg(harness_now_ms() - t0 < 5000, "fail-over took %ld ms", harness_now_ms() - t0);
	ck_assert_int_eq(backends_by(false), N_CLIENTS);
	char *refused = xasprintf("could not connect to 127.0.0.1:%d", dead);
	ck_assert_int_eq(harness_sluice_log_count(s, refused), 1);
	free(refused);
	close_clients(conns, N_CLIENTS);
	harness_sluice_stop_ok(s);
}
END_TEST

/* Round-robin with a host down: every other attempt fails over, every client is served. */
START_TEST(test_round_robin_skips_a_host_that_is_down)
{
	expect_no_backends();
	int dead = harness_free_port();
	char *ports = xasprintf("@PGPORT@,%d", dead);
	struct harness_sluice *s = start_multi("@PGSOCKET@,127.0.0.1", ports, "");
	free(ports);
	PGconn *conns[N_CLIENTS];
	open_clients(s, conns, N_CLIENTS);
	ck_assert_int_eq(backends_by(false), N_CLIENTS);
	char *refused = xasprintf("could not connect to 127.0.0.1:%d", dead);
	ck_assert_int_ge(harness_sluice_log_count(s, refused), 1);
	free(refused);
	close_clients(conns, N_CLIENTS);
	harness_sluice_stop_ok(s);
}
END_TEST

/*
 * Every host down: each is tried once, then the pool waits server_login_retry
 * as with one host, without going round the list again. The client that was
 * waiting stays queued for the next round (the failures are transient); a
 * client that comes meanwhile hears the cached reason at once.
 */
START_TEST(test_every_host_down_tries_each_host_once_per_round)
{
	int dead1 = harness_free_port(), dead2 = harness_free_port();
	char *ports = xasprintf("%d,%d", dead1, dead2);
	struct harness_sluice *s = start_multi("127.0.0.1,localhost", ports, "");
	free(ports);
	char *first = xasprintf("could not connect to 127.0.0.1:%d", dead1);
	char *second = xasprintf("could not connect to localhost:%d", dead2);
	int waiting = harness_raw_connect(s->port);
	harness_raw_send_startup(waiting, "trustuser", "multi");
	ck_assert(harness_sluice_log_wait(s, first, 3000));
	ck_assert(harness_sluice_log_wait(s, second, 3000));
	char *err = harness_connect_error(s, CLIENT_CONN);
	ck_assert_msg(strstr(err, "server login has been failing, cached error: could not connect to"),
		"%s", err);
	free(err);
	/* One warning each, and the cached reason names the last host tried. */
	ck_assert_int_eq(harness_sluice_log_count(s, first), 1);
	ck_assert_int_eq(harness_sluice_log_count(s, "WARNING S-"), 2);
	close(waiting);
	free(first);
	free(second);
	harness_sluice_stop_ok(s);
}
END_TEST

/* An unresolvable host is logged in PgBouncer's words, and the next host is tried. */
START_TEST(test_unresolvable_host_fails_over)
{
	expect_no_backends();
	struct harness_sluice *s =
		start_multi("no-such-host.invalid,@PGHOST@", "@PGPORT@", DISABLE);
	PGconn *conns[2];
	open_clients(s, conns, 2);
	ck_assert_int_eq(backends_by(true), 2);
	ck_assert_int_eq(harness_sluice_log_count(s, "closing because: server DNS lookup failed"),
		1);
	close_clients(conns, 2);
	harness_sluice_stop_ok(s);
}
END_TEST

static Suite *load_balance_hosts_suite(void)
{
	Suite *su = suite_create("load_balance_hosts");
	TCase *tc = harness_tcase("load_balance_hosts");
	tcase_add_test(tc, test_round_robin_alternates_between_the_hosts);
	tcase_add_test(tc, test_disable_keeps_to_the_first_host);
	tcase_add_test(tc, test_disable_fails_over_to_the_next_host);
	tcase_add_test(tc, test_round_robin_skips_a_host_that_is_down);
	tcase_add_test(tc, test_every_host_down_tries_each_host_once_per_round);
	tcase_add_test(tc, test_unresolvable_host_fails_over);
	suite_add_tcase(su, tc);
	return su;
}

int main(void)
{
	return harness_run_suite(load_balance_hosts_suite());
}
