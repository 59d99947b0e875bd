/*
 * check_tcp_keepalive.c - tcp_keepalive and tcp_keepidle reach the sockets
 * sluice accepts: with keepalive on (the default) the kernel runs a
 * keepalive timer on the client's connection, with the idle time asked for;
 * with tcp_keepalive = 0 it runs none.
 *
 * It reads the kernel's view from /proc/net/tcp (the "tr" field is 2 while
 * a keepalive timer is pending, "tm->when" its remaining jiffies), so it needs
 * no privileges. It does not check server sockets: PostgreSQL and libpq turn
 * keepalive on for theirs, so /proc cannot tell sluice's from theirs.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static Suite *tcp_keepalive_suite(void)
{
	Suite *s = suite_create("tcp_keepalive");
	TCase *tc = harness_tcase("keepalive");
	tcase_add_loop_test(tc, test_accepted_socket_gets_the_keepalive_asked_for, 0,
		(int)ARRAY_SIZE(keepalive_cases));
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return harness_run_suite(tcp_keepalive_suite());
}
