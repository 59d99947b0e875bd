/*
 * check_key_derivation.c - SCRAM key derivations (PBKDF2) run on libuv's
 * thread pool, not on the event loop: while a login derives, every other
 * connection is served, the login's own timeouts still fire, and a login
 * that ends while its derivation is queued or running (its peer vanished,
 * the server died, KILL, shutdown) loses nothing and leaks nothing (the ASan
 * build's exit status says so).
 *
 * Two derivations are exercised: the server role (sluice proving a password
 * to a fake PostgreSQL that asks for SCRAM_MAX_ITERATIONS, 100,000 rounds)
 * and the client role (a cleartext password checked against an auth_file
 * SCRAM secret, whose iteration count is the operator's: here PostgreSQL's
 * secret of scramuser with the count raised, so the keys are wrong and the
 * derivation long). Tests that need a job to wait its turn run sluice with
 * UV_THREADPOOL_SIZE=2 (one thread for derivations, one left for resolving
 * host names) behind such a client derivation.
 *
 * The fake server is the harness's (harness_fake_start()) running this
 * file's script, one connection at a time. Its events: 'a' per accept, 'c'
 * when it has sent the SASLContinue, 'f' when the SASLResponse (the derived
 * proof) arrived.
 */
#include "harness.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/*
 * The long client derivation: long next to the timeouts and steps of a test,
 * short enough to wait out at exit. Its iteration count is calibrated.
 */
#define SLOW_MS 3000
#define CALIBRATION_ROUNDS 200000L

enum fake_mode {
	FAKE_SCRAM_100K, /* SASLContinue with i=100000, read the answer, then close */
	FAKE_SCRAM_100K_THEN_CLOSE, /* SASLContinue with i=100000, then close at once */
};

/* harness_fake_serve_cb: one connection of a fake in mode (an enum fake_mode). */
static void fake_serve(int conn, int events, int mode)
{
	char *body = NULL;
	if (!harness_fake_read_packet(conn, false, &body))
		return;
	free(body);
	uint8_t sasl[4 + 15];
	put_be32(sasl, 10);
	memcpy(sasl + 4, "SCRAM-SHA-256\0", 15);
	harness_fake_put_msg(conn, 'R', sasl, sizeof(sasl));
	if (!harness_fake_read_packet(conn, true, &body))
		return;
	/* mechanism NUL, int32 length, "n,,n=,r=<nonce>" */
	const char *r = strstr(body + strlen(body) + 1 + 4, "r=");
	char msg[300];
	int n = snprintf(msg, sizeof(msg), "%c%c%c%cr=%sFAKE,s=QUJDREVGR0g=,i=100000", 0, 0, 0,
			 11, r ? r + 2 : "");
	free(body);
	harness_fake_put_msg(conn, 'R', msg, (uint32_t)n);
	harness_fake_report(events, 'c');
	if (mode == FAKE_SCRAM_100K_THEN_CLOSE)
		return;
	if (!harness_fake_read_packet(conn, true, &body))
		return;
	free(body);
	harness_fake_report(events, 'f');
}

/* Whether fd has something to read (or was closed) right now. */
static bool readable_now(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	return poll(&pfd, 1, 0) == 1;
}

/* A raw client of db as user that answers the cleartext request with password. */
static int raw_cleartext_login(int port, const char *db, const char *user, const char *password)
{
	int fd = harness_raw_connect(port);
	harness_raw_send_startup(fd, user, db);
	struct harness_msg m;
	ck_assert(harness_raw_read_msg(fd, &m));
	ck_assert_int_eq(m.type, 'R');
	ck_assert_uint_ge(m.len, 4);
	ck_assert_int_eq(get_be32((const uint8_t *)m.body), 3); /* AuthenticationCleartextPassword */
	free(m.body);
	size_t n = strlen(password) + 1;
	uint8_t hdr[5] = { 'p' };
	put_be32(hdr + 1, (uint32_t)(n + 4));
	harness_write_all(fd, hdr, 5);
	harness_write_all(fd, password, n);
	/* Verdicts may take a while here: waits are bounded by the tests, not the socket. */
	struct timeval tv = { .tv_sec = 60 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

/* The auth_file line of user: scramuser's secret from PostgreSQL, with rounds iterations. */
static char *scram_line(const char *user, long rounds)
{
	char *secret = harness_pg_exec("SELECT regexp_replace(rolpassword, '\\$4096:', "
				       "'$%ld:') FROM pg_authid WHERE rolname = 'scramuser'",
		rounds);
	ck_assert_msg(secret && strncmp(secret, "SCRAM-SHA-256$", 14) == 0, "secret %s",
		secret ? secret : "(null)");
	char *line = xasprintf("\"%s\" \"%s\"\n", user, secret);
	free(secret);
	return line;
}

/* The first auth_file: calibuser for calibrate_slow_login(), trustuser for everything else. */
static char *calibration_userlist(void)
{
	char *calib = scram_line("calibuser", CALIBRATION_ROUNDS);
	char *list = xasprintf("%s\"trustuser\" \"trustuserpw\"\n", calib);
	free(calib);
	return list;
}

/*
 * Gives scramuser an auth_file secret whose derivation takes about SLOW_MS
 * in this sluice: PBKDF2's speed depends on the machine, its load and the
 * build (AddressSanitizer's interceptors slow OpenSSL tenfold), so the count
 * is scaled from the time a CALIBRATION_ROUNDS login takes, then installed
 * by a reload (with ini_from replaced by ini_to in the ini, unless NULL:
 * settings that would cut the calibration short). The secret is PostgreSQL's with the count changed: well-formed,
 * so a cleartext password is checked by deriving at that count, but its keys
 * no longer match, and the login fails once the derivation is done.
 */
static void calibrate_slow_login(struct harness_sluice *s, const char *ini_from,
	const char *ini_to)
{
	long start = harness_now_ms();
	int fd = raw_cleartext_login(s->port, "app", "calibuser", "scramuserpw");
	char *err = harness_raw_read_error(fd);
	long took = harness_now_ms() - start;
	ck_assert_msg(err && strstr(err, "28P01"), "%s", err ? err : "(none)");
	free(err);
	close(fd);
	long rounds = CALIBRATION_ROUNDS * SLOW_MS / (took > 0 ? took : 1);
	rounds = rounds < CALIBRATION_ROUNDS ? CALIBRATION_ROUNDS : rounds;
	char *slow = scram_line("scramuser", rounds);
	char *list = xasprintf("%s\"trustuser\" \"trustuserpw\"\n", slow);
	free(slow);
	char *path = xasprintf("%s/userlist.txt", s->dir), *tmp = xasprintf("%s.new", path);
	FILE *f = fopen(tmp, "w");
	ck_assert_ptr_nonnull(f);
	fputs(list, f);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(rename(tmp, path), 0);
	free(list);
	free(path);
	free(tmp);
	if (ini_from)
		harness_sluice_edit_ini(s, ini_from, ini_to);
	harness_sluice_signal(s, SIGHUP);
	ck_assert(harness_sluice_log_wait(s, "configuration reloaded", 5000));
}

/*
 * While one server login derives its 100,000-round proof, a client of
 * another pool is served: queries keep completing between the fake's
 * SASLContinue and the arrival of the proof. When the derivation ran on the
 * loop, no query finished inside that window: the first one waited for all
 * of it.
 */
START_TEST(test_server_derivation_leaves_other_pools_served)
{
	struct harness_fake f = harness_fake_start(fake_serve, FAKE_SCRAM_100K);
	char dbs[512];
	snprintf(dbs, sizeof(dbs),
		"fake1 = host=127.0.0.1 port=%d dbname=fake\n"
		"fake2 = host=127.0.0.1 port=%d dbname=fake\n"
		"fake3 = host=127.0.0.1 port=%d dbname=fake password=pw\n"
		"app = host=@PGHOST@ port=@PGPORT@ dbname=app\n",
		f.port, f.port, f.port);
	/* fake1 and fake2 log in with the auth_file's password, fake3 with its own. */
	struct harness_sluice *s = harness_sluice_start("auth_type = trust\n"
							"server_login_retry = 10\n",
		dbs, "\"trustuser\" \"trustuserpw\"\n");
	PGconn *app = harness_connect(s, "dbname=app user=trustuser");
	harness_expect_answer(app, "SELECT 1", "1");
	static const char *const pools[] = { "fake1", "fake2", "fake3" };
	for (size_t i = 0; i < ARRAY_SIZE(pools); i++) {
		int fd = harness_raw_connect(s->port);
		harness_raw_send_startup(fd, "trustuser", pools[i]);
		ck_assert_msg(harness_fake_wait_event(&f, 'c', 10000), "no SASLContinue for %s",
			pools[i]);
		long start = harness_now_ms(), longest = 0;
		int done = 0;
		bool proof = false;
		while (!proof && harness_now_ms() - start < 10000) {
			long t = harness_now_ms();
			harness_expect_answer(app, "SELECT 1", "1");
			t = harness_now_ms() - t;
			/* The last query counts too: on a stalled loop it waited for the proof. */
			proof = harness_fake_wait_event(&f, 'f', 0);
			done++;
			longest = t > longest ? t : longest;
		}
		long window = harness_now_ms() - start;
		ck_assert_msg(proof, "the proof for %s never came", pools[i]);
		/*
		 * The derivation takes tens of milliseconds; a query, well under
		 * one. Not under a wrapper: valgrind runs one thread at a time, so
		 * the pool's thread and the loop take turns there.
		 */
		ck_assert_msg(getenv("SLUICE_WRAPPER") || (done >= 3 && longest * 2 < window),
			"%s: %d queries answered during a %ld ms derivation, the longest took %ld ms",
			pools[i], done, window, longest);
		char *err = harness_raw_read_error(fd);
		ck_assert_msg(err && strstr(err, "server login failed"), "%s", err ? err : "(none)");
		free(err);
		close(fd);
	}
	PQfinish(app);
	harness_fake_stop(&f);
	harness_sluice_stop_ok(s);
}
END_TEST

/*
 * One derivation at a time (UV_THREADPOOL_SIZE=2), and a client's long
 * derivation running. Server logins of three pools queue their derivations
 * behind it; two servers die right after their SASLContinue, the third pool
 * is KILLed from the console. All three clients hear at once, while the long
 * derivation still runs (its client has no answer yet): the queued jobs were
 * dropped, not awaited. Then that client vanishes mid-derivation and sluice
 * is stopped with the job still running: shutdown waits for it, and exits
 * cleanly.
 */
START_TEST(test_logins_ending_while_derivations_are_pending_lose_nothing)
{
	ck_assert_int_eq(setenv("UV_THREADPOOL_SIZE", "2", 1), 0);
	struct harness_fake dying = harness_fake_start(fake_serve, FAKE_SCRAM_100K_THEN_CLOSE);
	struct harness_fake alive = harness_fake_start(fake_serve, FAKE_SCRAM_100K);
	char dbs[512];
	snprintf(dbs, sizeof(dbs),
		"fake1 = host=127.0.0.1 port=%d dbname=fake\n"
		"fake2 = host=127.0.0.1 port=%d dbname=fake\n"
		"fake3 = host=127.0.0.1 port=%d dbname=fake\n"
		"app = host=@PGHOST@ port=@PGPORT@ dbname=app\n",
		dying.port, dying.port, alive.port);
	char *list = calibration_userlist();
	struct harness_sluice *s = harness_sluice_start("auth_type = plain\n"
							"verbose = 1\n"
							"admin_users = trustuser\n"
							"server_login_retry = 10\n",
		dbs, list);
	free(list);
	calibrate_slow_login(s, NULL, NULL);
	int slow = raw_cleartext_login(s->port, "app", "scramuser", "scramuserpw");
	ck_assert(harness_sluice_log_wait(s, "client key derivation handed to the thread pool", 5000));

	int fds[2];
	for (int i = 0; i < 2; i++) {
		char db[8];
		snprintf(db, sizeof(db), "fake%d", i + 1);
		fds[i] = raw_cleartext_login(s->port, db, "trustuser", "trustuserpw");
		char *err = harness_raw_read_error(fds[i]);
		ck_assert_msg(err && strstr(err, "server login failed: server closed the connection"),
			"%s: %s", db, err ? err : "(none)");
		free(err);
		close(fds[i]);
	}
	int killed = raw_cleartext_login(s->port, "fake3", "trustuser", "trustuserpw");
	ck_assert(harness_fake_wait_event(&alive, 'c', 5000));
	PGconn *admin = harness_connect(s, "dbname=pgbouncer user=trustuser password=trustuserpw");
	PQclear(PQexec(admin, "KILL fake3"));
	char *err = harness_raw_read_error(killed);
	ck_assert_msg(err && strstr(err, "database killed by admin"), "%s", err ? err : "(none)");
	free(err);
	close(killed);
	PQfinish(admin);
	/* The queued server jobs never ran: the fake that waits never saw a proof. */
	ck_assert(!harness_fake_wait_event(&alive, 'f', 0));
	ck_assert_msg(!readable_now(slow), "the long derivation ended before the test could use it");

	/* Other pools are served meanwhile, and the client with the long derivation leaves. */
	PGconn *app = harness_connect(s, "dbname=app user=trustuser password=trustuserpw");
	harness_expect_answer(app, "SELECT 1", "1");
	PQfinish(app);
	ck_assert_msg(!readable_now(slow), "the long derivation ended before the test could use it");
	close(slow);
	ck_assert(harness_sluice_log_wait(s, "client closed the connection", 5000));
	harness_sluice_signal(s, SIGINT);
	ck_assert(harness_sluice_log_wait(s, "waiting for 1 key derivation(s)", 5000));
	/* No second signal: the first one's handler is gone once the exit has begun. */
	ck_assert_int_eq(harness_sluice_wait(s, 15000), 0);
	harness_sluice_free(s);
	harness_fake_stop(&dying);
	harness_fake_stop(&alive);
}
END_TEST

/*
 * client_login_timeout fires while the client's derivation runs: the client
 * hears client_login_timeout, not the verdict of a derivation it did not
 * wait for (when the loop derived, the timeout could only be checked after).
 */
START_TEST(test_client_login_timeout_applies_while_deriving)
{
	char *list = calibration_userlist();
	struct harness_sluice *s = harness_sluice_start("auth_type = plain\n"
							"verbose = 1\n"
							"client_login_timeout = 60\n",
		NULL, list);
	free(list);
	calibrate_slow_login(s, "client_login_timeout = 60", "client_login_timeout = 0.5");
	int fd = raw_cleartext_login(s->port, "app", "scramuser", "scramuserpw");
	ck_assert(harness_sluice_log_wait(s, "client key derivation handed to the thread pool", 5000));
	char *err = harness_raw_read_error(fd);
	ck_assert_msg(err && strstr(err, "client_login_timeout"), "%s", err ? err : "(none)");
	free(err);
	close(fd);
	PGconn *app = harness_connect(s, "dbname=app user=trustuser password=trustuserpw");
	harness_expect_answer(app, "SELECT 1", "1");
	PQfinish(app);
	harness_sluice_stop_ok(s);
}
END_TEST

/*
 * server_connect_timeout fires while the server's derivation waits its turn
 * (one derivation at a time, and a client's long one running): the login
 * ends, and the job is dropped unrun.
 */
START_TEST(test_server_connect_timeout_applies_while_derivation_waits)
{
	ck_assert_int_eq(setenv("UV_THREADPOOL_SIZE", "2", 1), 0);
	struct harness_fake f = harness_fake_start(fake_serve, FAKE_SCRAM_100K);
	char dbs[256];
	snprintf(dbs, sizeof(dbs),
		"fake = host=127.0.0.1 port=%d dbname=fake\n"
		"app = host=@PGHOST@ port=@PGPORT@ dbname=app\n",
		f.port);
	char *list = calibration_userlist();
	struct harness_sluice *s = harness_sluice_start("auth_type = plain\n"
							"verbose = 1\n"
							"server_connect_timeout = 0.5\n"
							"server_login_retry = 10\n",
		dbs, list);
	free(list);
	calibrate_slow_login(s, NULL, NULL);
	int slow = raw_cleartext_login(s->port, "app", "scramuser", "scramuserpw");
	ck_assert(harness_sluice_log_wait(s, "client key derivation handed to the thread pool", 5000));
	int fd = raw_cleartext_login(s->port, "fake", "trustuser", "trustuserpw");
	ck_assert(harness_sluice_log_wait(s, "server_connect_timeout reached", 5000));
	/* A timeout is transient: the client stays queued for the next attempt. */
	ck_assert_msg(!readable_now(fd), "the waiting client was answered");
	close(fd);
	char *err;
	ck_assert(!harness_fake_wait_event(&f, 'f', 0));
	ck_assert_msg(!readable_now(slow), "the long derivation ended before the timeout");
	/* The long derivation ends in its own verdict: the keys of this secret are wrong. */
	err = harness_raw_read_error(slow);
	ck_assert_msg(err && strstr(err, "password authentication failed"), "%s",
		err ? err : "(none)");
	free(err);
	close(slow);
	harness_fake_stop(&f);
	harness_sluice_stop_ok(s);
}
END_TEST

/*
 * A client that sends more than its password (a query right behind it)
 * while the derivation runs: the extra bytes wait, and are served after the
 * login, in order.
 */
START_TEST(test_bytes_sent_during_a_derivation_are_served_after_it)
{
	char *list = harness_pg_exec("SELECT '\"scramuser\" \"' || rolpassword || '\"' "
				     "FROM pg_authid WHERE rolname = 'scramuser'");
	struct harness_sluice *s = harness_sluice_start("auth_type = plain\n", NULL, list);
	free(list);
	int fd = harness_raw_connect(s->port);
	harness_raw_send_startup(fd, "scramuser", "app");
	struct harness_msg m;
	ck_assert(harness_raw_read_msg(fd, &m));
	ck_assert_int_eq(m.type, 'R');
	free(m.body);
	/* PasswordMessage and Query in one write: both arrive before the derivation ends. */
	uint8_t buf[128];
	size_t n = 0;
	buf[n++] = 'p';
	put_be32(buf + n, 4 + sizeof("scramuserpw"));
	n += 4;
	memcpy(buf + n, "scramuserpw", sizeof("scramuserpw"));
	n += sizeof("scramuserpw");
	buf[n++] = 'Q';
	put_be32(buf + n, 4 + sizeof("SELECT 42"));
	n += 4;
	memcpy(buf + n, "SELECT 42", sizeof("SELECT 42"));
	n += sizeof("SELECT 42");
	harness_write_all(fd, buf, n);
	/* AuthenticationOk, the welcome, its ReadyForQuery, then the query's answer. */
	bool ok = false, row = false;
	int ready = 0;
	while (ready < 2 && harness_raw_read_msg(fd, &m)) {
		ck_assert_msg(m.type != 'E', "error: %s", harness_msg_field(&m, 'M'));
		if (m.type == 'R' && get_be32((const uint8_t *)m.body) == 0)
			ok = true;
		if (m.type == 'D')
			row = ready == 1 && strstr(m.body + 6, "42") != NULL;
		if (m.type == 'Z')
			ready++;
		free(m.body);
	}
	ck_assert(ok);
	ck_assert_int_eq(ready, 2);
	ck_assert(row);
	close(fd);
	harness_sluice_stop_ok(s);
}
END_TEST

static Suite *key_derivation_suite(void)
{
	Suite *s = suite_create("key_derivation");
	TCase *tc = harness_tcase("key_derivation");
	tcase_add_test(tc, test_server_derivation_leaves_other_pools_served);
	tcase_add_test(tc, test_logins_ending_while_derivations_are_pending_lose_nothing);
	tcase_add_test(tc, test_client_login_timeout_applies_while_deriving);
	tcase_add_test(tc, test_server_connect_timeout_applies_while_derivation_waits);
	tcase_add_test(tc, test_bytes_sent_during_a_derivation_are_served_after_it);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return harness_run_suite(key_derivation_suite());
}
