/*
 * check_server_login.c - server logins that go wrong: a fake PostgreSQL that
 * skips the proof of a SCRAM exchange, asks for ten million PBKDF2 rounds or
 * fails after AuthenticationOk, and a
 * real one whose password changes while a server of the pool is still busy.
 * Each failure is a login failure: the waiting client hears the reason at
 * once, and sluice backs off for server_login_retry instead of reconnecting
 * in a loop.
 *
 * The fake server is the harness's (harness_fake_start()) running this
 * file's script; it reports each accept, so the test counts how often sluice
 * tried.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USERLIST "\"trustuser\" \"trustuserpw\"\n\"md5user\" \"md5userpw\"\n"

enum fake_mode {
	FAKE_OK_WITHOUT_SCRAM_PROOF, /* SASL, then AuthenticationOk with no SASLFinal */
	FAKE_CLOSE_AFTER_OK, /* AuthenticationOk, then the connection ends */
	FAKE_GARBAGE_AFTER_OK, /* AuthenticationOk, then a message no login has */
	FAKE_SCRAM_10M_ITERATIONS, /* SASLContinue asking for ten million PBKDF2 rounds */
	FAKE_SLOW_ANSWERS, /* a good login; each Query answered after 500 ms; cancels never read */
};

static void put_auth(int fd, uint32_t code, const void *extra, uint32_t extra_len)
{
	uint8_t body[64];
	put_be32(body, code);
	memcpy(body + 4, extra, extra_len);
	harness_fake_put_msg(fd, 'R', body, 4 + extra_len);
}

static bool skip_packet(int fd, bool typed)
{
	return harness_fake_read_packet(fd, typed, NULL);
}

/* Answers a SASLInitialResponse with a SASLContinue that asks for 10M iterations. */
static void continue_with_10m_iterations(int conn)
{
	char *body = NULL;
	if (!harness_fake_read_packet(conn, true, &body))
		return;
	/* mechanism NUL, int32 length, "n,,n=,r=<nonce>" */
	const char *data = body + strlen(body) + 1 + 4;
	const char *r = strstr(data, "r=");
	char msg[256];
	int n = snprintf(msg, sizeof(msg), "r=%sFAKE,s=QUJDREVGR0g=,i=10000000", r ? r + 2 : "");
	free(body);
	put_auth(conn, 11, msg, (uint32_t)n);
}

/* harness_fake_serve_cb: one connection of a fake in mode (an enum fake_mode). */
static void fake_serve(int conn, int events_fd, int mode)
{
	(void)events_fd;
	if (!skip_packet(conn, false))
		return;
	if (mode == FAKE_OK_WITHOUT_SCRAM_PROOF || mode == FAKE_SCRAM_10M_ITERATIONS) {
		put_auth(conn, 10, "SCRAM-SHA-256\0", 15);
		if (mode == FAKE_SCRAM_10M_ITERATIONS) {
			continue_with_10m_iterations(conn);
			while (skip_packet(conn, true))
				;
			return;
		}
		if (!skip_packet(conn, true))
			return;
	}
	put_auth(conn, 0, "", 0);
	if (mode == FAKE_CLOSE_AFTER_OK)
		return;
	if (mode == FAKE_GARBAGE_AFTER_OK)
		harness_fake_put_msg(conn, 'W', "\0\0", 2);
	uint8_t kd[8] = { 0, 0, 0, 1, 0, 0, 0, 2 };
	harness_fake_put_msg(conn, 'K', kd, 8);
	harness_fake_put_msg(conn, 'Z', "I", 1);
	uint8_t type;
	while (mode == FAKE_SLOW_ANSWERS && harness_read_full(conn, &type, 1)) {
		/* The connection is served alone: a cancel waits in the backlog, unanswered. */
		uint8_t len[4];
		if (!harness_read_full(conn, len, 4) || get_be32(len) < 4 || get_be32(len) > 65536)
			return;
		char *body = malloc(get_be32(len));
		bool ok = harness_read_full(conn, body, get_be32(len) - 4);
		free(body);
		if (!ok || type == 'X')
			return;
		if (type == 'Q') {
			harness_sleep_ms(500);
			harness_fake_put_msg(conn, 'C', "SELECT 0", 9);
			harness_fake_put_msg(conn, 'Z', "I", 1);
		}
	}
	while (skip_packet(conn, true))
		;
}

static struct harness_sluice *start_in_front_of(const struct harness_fake *f)
{
	char dbs[256];
	snprintf(dbs, sizeof(dbs), "fake = host=127.0.0.1 port=%d dbname=fake\n"
		 "app = host=@PGHOST@ port=@PGPORT@ dbname=app\n", f->port);
	return harness_sluice_start("auth_type = trust\n"
				    "server_login_retry = 10\n"
				    "query_wait_timeout = 30\n",
		dbs, USERLIST);
}

static const struct fake_case {
	enum fake_mode mode;
	const char *error; /* part of the message the client must get */
} fake_cases[] = {
	{ FAKE_OK_WITHOUT_SCRAM_PROOF, "without a verified SCRAM server signature" },
	{ FAKE_CLOSE_AFTER_OK, "server login failed: server closed the connection" },
	{ FAKE_GARBAGE_AFTER_OK, "server login failed: unexpected message from server" },
	/* Ten million rounds once stalled every client of the process for 19.5 s. */
	{ FAKE_SCRAM_10M_ITERATIONS, "server login failed: SCRAM exchange with server failed" },
};

START_TEST(test_bad_login_fails_the_client_at_once_and_backs_off)
{
	const struct fake_case *fc = &fake_cases[_i];
	struct harness_fake f = harness_fake_start(fake_serve, fc->mode);
	struct harness_sluice *s = start_in_front_of(&f);
	long start = harness_now_ms();
	char *err = harness_connect_error(s, "dbname=fake user=trustuser");
	long took = harness_now_ms() - start;
	ck_assert_msg(strstr(err, fc->error) != NULL, "%s", err);
	free(err);
	ck_assert_msg(took < 5000, "the client heard after %ld ms", took);

	/* Within server_login_retry the next client gets the same answer without a new login. */
	err = harness_connect_error(s, "dbname=fake user=trustuser");
	ck_assert_msg(strstr(err, fc->error) != NULL, "%s", err);
	free(err);
	harness_sleep_ms(1000);
	int n = harness_fake_count_events(&f, 'a');
	ck_assert_msg(n == 1, "sluice connected %d times instead of backing off", n);

	/* Other pools are untouched. */
	PGconn *c = harness_connect(s, "dbname=app user=trustuser");
	harness_expect_answer(c, "SELECT 1", "1");
	PQfinish(c);
	harness_fake_stop(&f);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/*
 * PgBouncer's test_change_server_password_reconnect: the server password
 * changes while a server of the pool is busy in a transaction; a client that
 * needs a new server hears PostgreSQL's error at once instead of waiting for
 * query_wait_timeout.
 */
START_TEST(test_password_change_fails_waiters_while_a_server_is_busy)
{
	struct harness_sluice *s = harness_sluice_start("auth_type = trust\n"
							"pool_mode = transaction\n"
							"server_login_retry = 10\n"
							"query_wait_timeout = 30\n",
		"app = host=@PGHOST@ port=@PGPORT@ dbname=app pool_size=2\n", USERLIST);
	PGconn *a = harness_connect(s, "dbname=app user=md5user");
	free(harness_query_text(a, "BEGIN"));
	free(harness_query_text(a, "SELECT 1"));
	free(harness_pg_exec("ALTER ROLE md5user PASSWORD 'changed'"));
	PGconn *b = harness_connect(s, "dbname=app user=md5user");
	long start = harness_now_ms();
	char *err = harness_query_error(b, "SELECT 2");
	long took = harness_now_ms() - start;
	free(harness_pg_exec("SET password_encryption = 'md5'; "
			     "ALTER ROLE md5user PASSWORD 'md5userpw'"));
	ck_assert_msg(strstr(err, "password authentication failed") != NULL, "%s", err);
	free(err);
	ck_assert_msg(took < 5000, "the waiter heard after %ld ms", took);
	/* The busy client is untouched. */
	harness_expect_answer(a, "SELECT 3", "3");
	free(harness_query_text(a, "COMMIT"));
	PQfinish(a);
	PQfinish(b);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/*
 * A cancel that PostgreSQL never finishes: the server its client released is
 * handed to nobody (being_canceled in SHOW POOLS), and is closed once
 * server_connect_timeout has passed rather than kept forever.
 */
START_TEST(test_server_with_unfinished_cancel_is_held_then_closed)
{
	struct harness_fake f = harness_fake_start(fake_serve, FAKE_SLOW_ANSWERS);
	char dbs[128];
	snprintf(dbs, sizeof(dbs), "fake = host=127.0.0.1 port=%d dbname=fake\n", f.port);
	struct harness_sluice *s = harness_sluice_start("auth_type = trust\n"
							"pool_mode = transaction\n"
							"admin_users = trustuser\n"
							"server_connect_timeout = 2\n",
		dbs, USERLIST);
	PGconn *c = harness_connect(s, "dbname=fake user=trustuser");
	PGconn *admin = harness_connect(s, "dbname=pgbouncer user=trustuser");
	const char *pools = "SHOW POOLS";
	ck_assert_int_eq(PQsendQuery(c, "SELECT 1"), 1);
	/*
	 * The cancel must find the query on the server, not still waiting for
	 * the server's login (then sluice answers it alone, with an error): on a
	 * loaded machine, under ASan, that login can take more than 100 ms.
	 */
	long deadline = harness_now_ms() + 5000;
	while (harness_show_long(admin, pools, "database", "fake", "sv_active") != 1 &&
	       harness_now_ms() < deadline)
		harness_sleep_ms(20);
	harness_sleep_ms(50);
	PGcancel *cancel = PQgetCancel(c);
	char errbuf[256];
	ck_assert_msg(PQcancel(cancel, errbuf, sizeof(errbuf)) == 1, "%s", errbuf);
	PQfreeCancel(cancel);
	ck_assert(harness_wait_not_busy(c, 5000));
	PGresult *res;
	while ((res = PQgetResult(c)) != NULL) {
		ck_assert_int_eq(PQresultStatus(res), PGRES_COMMAND_OK);
		PQclear(res);
	}

	ck_assert_int_eq(harness_show_long(admin, pools, "database", "fake", "sv_being_canceled"), 1);
	ck_assert_int_eq(harness_show_long(admin, pools, "database", "fake", "cl_active_cancel_req"),
		1);
	ck_assert_int_eq(harness_show_long(admin, pools, "database", "fake", "sv_active_cancel"), 1);
	ck_assert_int_eq(harness_show_long(admin, pools, "database", "fake", "sv_idle"), 0);
	ck_assert(harness_sluice_log_wait(s, "a cancel request sent for it did not finish", 5000));
	ck_assert_int_eq(harness_show_long(admin, pools, "database", "fake", "sv_being_canceled"), 0);
	ck_assert_int_eq(harness_show_long(admin, pools, "database", "fake", "cl_active_cancel_req"),
		0);
	PQfinish(admin);
	PQfinish(c);
	harness_fake_stop(&f);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

static Suite *server_login_suite(void)
{
	Suite *s = suite_create("server_login");
	TCase *tc = harness_tcase("server_login");
	tcase_add_loop_test(tc, test_bad_login_fails_the_client_at_once_and_backs_off, 0,
		(int)ARRAY_SIZE(fake_cases));
	tcase_add_test(tc, test_password_change_fails_waiters_while_a_server_is_busy);
	tcase_add_test(tc, test_server_with_unfinished_cancel_is_held_then_closed);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return harness_run_suite(server_login_suite());
}
