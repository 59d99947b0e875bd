/*
 * check_tcp_keepalive.c - tcp_keepalive and tcp_keepidle reach the sockets
 * sluice accepts: with keepalive on (the default) the kernel runs a
 * keepalive timer on the client's connection, with the idle time asked for;
 * with tcp_keepalive = 0 it runs none.
 *
 * And listen_backlog, so_reuseport and a host name in listen_addr reach the
 * listening sockets (ss(8) shows a listening socket's backlog).
 *
 * It reads the kernel's view from /proc/net/tcp (the "tr" field is 2 while
 * a keepalive timer is pending, "tm->when" its remaining jiffies), so it needs
 * no privileges. It does not check server sockets: PostgreSQL and libpq turn
 * keepalive on for theirs, so /proc cannot tell sluice's from theirs.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define USERLIST "\"trustuser\" \"trustuserpw\"\n"

/*
 * The timer of the established socket whose local port is port: *tr the
 * timer kind, *when_s its remaining seconds. false if there is none.
 */
static bool socket_timer(int port, int *tr, long *when_s)
{
	FILE *f = fopen("/proc/net/tcp", "r");
	ck_assert_ptr_nonnull(f);
	char line[512];
	bool found = false;
	while (fgets(line, sizeof(line), f)) {
		unsigned lport, rport, st, t;
		unsigned long when;
		char laddr[64], raddr[64];
		if (sscanf(line, " %*d: %63[0-9A-Fa-f]:%x %63[0-9A-Fa-f]:%x %x %*x:%*x %x:%lx", laddr,
			   &lport, raddr, &rport, &st, &t, &when) != 7)
			continue;
		if ((int)lport != port || st != 1)
			continue;
		*tr = (int)t;
		*when_s = (long)when;
		found = true;
		break;
	}
	fclose(f);
	return found;
}

static const struct keepalive_case {
	const char *extra;
	int want_tr; /* 2: a keepalive timer, 0: none */
} keepalive_cases[] = {
	{ "", 2 },
	{ "tcp_keepalive = 0\n", 0 },
	{ "tcp_keepidle = 30\ntcp_keepintvl = 5\ntcp_keepcnt = 3\ntcp_user_timeout = 20000\n", 2 },
};

START_TEST(test_accepted_socket_gets_the_keepalive_asked_for)
{
	const struct keepalive_case *kc = &keepalive_cases[_i];
	char *extra = xasprintf("auth_type = trust\n%s", kc->extra);
	struct harness_sluice *s = harness_sluice_start(extra, NULL, USERLIST);
	free(extra);
	PGconn *c = harness_connect(s, "dbname=app user=trustuser");
	harness_expect_answer(c, "SELECT 1", "1");
	int tr = -1;
	long when = 0;
	/* Right after data moved the retransmit timer (1) may still be the one shown. */
	long deadline = harness_now_ms() + 3000;
	do {
		ck_assert(socket_timer(s->port, &tr, &when));
		if (tr != 1)
			break;
		harness_sleep_ms(50);
	} while (harness_now_ms() < deadline);
	ck_assert_msg(tr == kc->want_tr, "timer kind %d, want %d", tr, kc->want_tr);
	if (_i == 2) {
		/* 30 s of idle time in jiffies (HZ is 100 to 1000): far below Linux's 7200 s. */
		ck_assert_msg(when > 0 && when <= 30 * 1000, "keepalive due in %ld jiffies", when);
	} else if (tr == 2) {
		ck_assert_msg(when > 30 * 1000, "keepalive due in %ld jiffies", when);
	}
	PQfinish(c);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/*
 * Accepted sockets inherit their options from the listening socket (sluice
 * sets none on them), so a reload must reach the listening socket: the next
 * connection then has the new keepalive.
 */
START_TEST(test_reload_gives_the_next_connection_the_new_keepalive)
{
	struct harness_sluice *s = harness_sluice_start("auth_type = trust\ntcp_keepalive = 0\n",
							 NULL, USERLIST);
	PGconn *c = harness_connect(s, "dbname=app user=trustuser");
	harness_expect_answer(c, "SELECT 1", "1");
	int tr = -1;
	long when = 0;
	ck_assert(socket_timer(s->port, &tr, &when));
	ck_assert_msg(tr != 2, "a keepalive timer with tcp_keepalive = 0");
	PQfinish(c);
	harness_sluice_edit_ini(s, "tcp_keepalive = 0", "tcp_keepalive = 1\ntcp_keepidle = 30");
	/* Not "SIGHUP: reloading", logged before the files are read: the reload's end. */
	int reloads = harness_sluice_log_count(s, "configuration reloaded");
	harness_sluice_signal(s, SIGHUP);
	long deadline = harness_now_ms() + 5000;
	while (harness_sluice_log_count(s, "configuration reloaded") == reloads &&
		harness_now_ms() < deadline)
		harness_sleep_ms(20);
	c = harness_connect(s, "dbname=app user=trustuser");
	harness_expect_answer(c, "SELECT 1", "1");
	deadline = harness_now_ms() + 3000;
	do {
		ck_assert(socket_timer(s->port, &tr, &when));
		if (tr != 1)
			break;
		harness_sleep_ms(50);
	} while (harness_now_ms() < deadline);
	ck_assert_msg(tr == 2, "timer kind %d after the reload, want a keepalive (2)", tr);
	ck_assert_msg(when > 0 && when <= 30 * 1000, "keepalive due in %ld jiffies", when);
	PQfinish(c);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* ---- listening sockets -------------------------------------------------------- */

/* The backlog of the socket listening on 127.0.0.1:port, as ss(8) reports it (Send-Q). */
static long listen_backlog_of(int port)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "ss -Hltn 'sport = :%d'", port);
	FILE *p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	char line[256];
	long backlog = -1;
	if (fgets(line, sizeof(line), p) &&
	    sscanf(line, "%*s %*d %ld", &backlog) != 1)
		backlog = -1;
	pclose(p);
	return backlog;
}

/* Whether this process may bind a listening socket to 127.0.0.1:port with SO_REUSEPORT. */
static bool can_share_port(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	int on = 1;
	ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)), 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	bool ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(fd, 1) == 0;
	close(fd);
	return ok;
}

START_TEST(test_listen_backlog_and_so_reuseport_reach_the_listening_socket)
{
	bool reuse = _i == 1;
	struct harness_sluice *s = harness_sluice_start(reuse ? "listen_backlog = 37\nso_reuseport = 1\n"
							      : "auth_type = trust\n",
		NULL, USERLIST);
	ck_assert_int_eq(listen_backlog_of(s->port), reuse ? 37 : 128);
	/* Another process can listen on the same port only when sluice allows it. */
	ck_assert_int_eq(can_share_port(s->port), reuse);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* listen_addr may name a host, as in PgBouncer: sluice listens on its addresses. */
START_TEST(test_listen_addr_may_be_a_host_name)
{
	struct harness_sluice *s =
		harness_sluice_start("auth_type = trust\nlisten_addr = localhost\n", NULL, USERLIST);
	ck_assert(harness_sluice_log_wait(s, "listening on 127.0.0.1:", 5000));
	PGconn *c = harness_connect(s, "dbname=app user=trustuser");
	harness_expect_answer(c, "SELECT 1", "1");
	PQfinish(c);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

static Suite *tcp_keepalive_suite(void)
{
	Suite *s = suite_create("tcp_keepalive");
	TCase *tc = harness_tcase("keepalive");
	tcase_add_loop_test(tc, test_accepted_socket_gets_the_keepalive_asked_for, 0,
		(int)ARRAY_SIZE(keepalive_cases));
	suite_add_tcase(s, tc);

	tc = harness_tcase("listeners");
	tcase_add_loop_test(tc, test_listen_backlog_and_so_reuseport_reach_the_listening_socket, 0, 2);
	tcase_add_test(tc, test_listen_addr_may_be_a_host_name);
	tcase_add_test(tc, test_reload_gives_the_next_connection_the_new_keepalive);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return harness_run_suite(tcp_keepalive_suite());
}
