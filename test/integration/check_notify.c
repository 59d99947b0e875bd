/*
 * check_notify.c - LISTEN/NOTIFY in transaction pooling (notify.h): clients
 * that LISTEN hear every NOTIFY of their channels, in order, through the
 * pool's listener connection, without keeping a server of the pool; what
 * PostgreSQL's rules say about LISTEN and UNLISTEN holds; a client that
 * reads nothing is disconnected before sluice's memory grows; losing the
 * listener disconnects its clients rather than let them miss notifications.
 *
 * Each would fail through PgBouncer in transaction mode, where a LISTEN
 * stays on whichever server ran it and its client hears nothing more.
 */
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USERLIST "\"trustuser\" \"trustuserpw\"\n"
#define CLIENT "dbname=app user=trustuser"
#define N_LISTENERS 50
#define N_NOTIFIES 1000
#define N_BUSY 4

static struct harness_sluice *start(int pool_size, const char *extra)
{
	char ini[512], dbs[128];
	snprintf(ini, sizeof(ini),
		 "auth_type = trust\npool_mode = transaction\nadmin_users = trustuser\n"
		 "query_wait_timeout = 20\nserver_login_retry = 1\n%s",
		 extra ? extra : "");
	snprintf(dbs, sizeof(dbs), "app = host=@PGHOST@ port=@PGPORT@ dbname=app pool_size=%d\n",
		 pool_size);
	return harness_sluice_start(ini, dbs, USERLIST);
}

/* The workers sluice runs with (the harness's _w2 runs set 2): each has its own listener. */
static int workers(void)
{
	const char *w = getenv("SLUICE_TEST_WORKERS");
	return w && atoi(w) > 0 ? atoi(w) : 1;
}

/*
 * Reads what has arrived on conn and checks each notification's payload
 * against the next number expected ("<n>"), counting them in *got.
 */
static void take_notifies(PGconn *conn, int *got, const char *who)
{
	ck_assert_msg(PQconsumeInput(conn), "%s: %s", who, PQerrorMessage(conn));
	PGnotify *n;
	while ((n = PQnotifies(conn))) {
		char want[16];
		snprintf(want, sizeof(want), "%d", *got);
		ck_assert_msg(strcmp(n->extra, want) == 0, "%s: notification %s, expected %s", who,
			      n->extra, want);
		(*got)++;
		PQfreemem(n);
	}
}

/* Sends one NOTIFY of channel with payload n, in a transaction of its own. */
static void notify_n(PGconn *conn, const char *channel, int n)
{
	char sql[96];
	snprintf(sql, sizeof(sql), "NOTIFY %s, '%d'", channel, n);
	harness_command_ok(conn, sql, "NOTIFY");
}

/* The busy clients' next transaction, if the last one finished; returns how many finished. */
static int step_busy(PGconn **busy, int n)
{
	int done = 0;
	for (int i = 0; i < n; i++) {
		ck_assert(PQconsumeInput(busy[i]));
		if (PQisBusy(busy[i]))
			continue;
		PGresult *res;
		while ((res = PQgetResult(busy[i]))) {
			ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK ||
					      PQresultStatus(res) == PGRES_TUPLES_OK,
				      "%s", PQresultErrorMessage(res));
			PQclear(res);
		}
		done++;
		ck_assert(PQsendQuery(busy[i], "BEGIN; SELECT count(*) FROM pg_class; COMMIT"));
	}
	return done;
}

/* The value of a /metrics line that starts with name (the whole name and labels). */
static long metric(int port, const char *name)
{
	char *m = harness_http_get(port, "/metrics"), line[160];
	snprintf(line, sizeof(line), "\n%s", name); /* not its # HELP line */
	char *at = strstr(m, line);
	ck_assert_msg(at, "no %s in /metrics", name);
	long v = atol(at + strlen(line));
	free(m);
	return v;
}

START_TEST(test_fifty_listeners_on_a_pool_of_two_hear_every_notify_in_order)
{
	int http = harness_free_port();
	char extra[64];
	snprintf(extra, sizeof(extra), "metrics_port = %d\n", http);
	struct harness_sluice *sl = start(2, extra);
	PGconn *admin = harness_connect(sl, "dbname=pgbouncer user=trustuser");
	PGconn *ls[N_LISTENERS];
	int got[N_LISTENERS] = { 0 };
	for (int i = 0; i < N_LISTENERS; i++) {
		ls[i] = harness_connect(sl, CLIENT);
		if (i % 2) {
			harness_command_ok(ls[i], "LISTEN fan", "LISTEN");
		} else {
			/* The extended protocol, as psycopg 3 and JDBC send it. */
			PGresult *res = PQexecParams(ls[i], "LISTEN fan", 0, NULL, NULL, NULL, NULL, 0);
			ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "%s",
				      PQresultErrorMessage(res));
			ck_assert_str_eq(PQcmdStatus(res), "LISTEN");
			PQclear(res);
		}
	}
	/* Nobody keeps a server: the listener hears for all of them. */
	PGresult *pins = PQexec(admin, "SHOW PINS");
	ck_assert_int_eq(PQntuples(pins), 0);
	PQclear(pins);
	ck_assert_int_eq(harness_show_long(admin, "SHOW SERVERS", "state", "listen", "remote_pid") > 0,
			 1);
	PGconn *busy[N_BUSY];
	for (int i = 0; i < N_BUSY; i++) {
		busy[i] = harness_connect(sl, CLIENT);
		ck_assert(PQsendQuery(busy[i], "SELECT 1"));
	}
	PGconn *sender = harness_connect(sl, CLIENT);
	int transactions = 0;
	for (int n = 0; n < N_NOTIFIES; n++) {
		notify_n(sender, "fan", n);
		transactions += step_busy(busy, N_BUSY);
		if (n % 50 == 0)
			for (int i = 0; i < N_LISTENERS; i++)
				take_notifies(ls[i], &got[i], "listener");
	}
	long deadline = harness_now_ms() + 20000;
	for (int i = 0; i < N_LISTENERS; i++) {
		while (got[i] < N_NOTIFIES && harness_now_ms() < deadline) {
			take_notifies(ls[i], &got[i], "listener");
			if (got[i] < N_NOTIFIES)
				harness_sleep_ms(5);
		}
		ck_assert_msg(got[i] == N_NOTIFIES, "listener %d heard %d of %d", i, got[i],
			      N_NOTIFIES);
	}
	ck_assert_msg(transactions >= N_BUSY * 10, "only %d transactions ran meanwhile",
		      transactions);
	ck_assert_int_eq(metric(http, "sluice_clients_listening "), N_LISTENERS);
	ck_assert_int_eq(metric(http, "sluice_notifications_total "), N_LISTENERS * N_NOTIFIES);
	/* The pool's two servers and a listener per worker: no more backends than that. */
	ck_assert_int_le(harness_count_backends("trustuser"), 2 + workers());
	for (int i = 0; i < N_BUSY; i++) {
		ck_assert(harness_wait_not_busy(busy[i], 5000));
		PQfinish(busy[i]);
	}
	/* Once nobody listens, the listener goes. */
	for (int i = 0; i < N_LISTENERS; i++)
		PQfinish(ls[i]);
	ck_assert_int_le(harness_wait_backends("trustuser", 2, 5000), 2);
	ck_assert(harness_sluice_log_wait(sl, "no client listens any more", 5000));
	PQfinish(sender);
	PQfinish(admin);
	harness_sluice_stop_ok(sl);
}
END_TEST

/* The next notification conn has or gets within wait_ms, or NULL. */
static PGnotify *next_notify(PGconn *conn, long wait_ms)
{
	long deadline = harness_now_ms() + wait_ms;
	for (;;) {
		ck_assert_msg(PQconsumeInput(conn), "%s", PQerrorMessage(conn));
		PGnotify *got = PQnotifies(conn);
		if (got || harness_now_ms() >= deadline)
			return got;
		harness_sleep_ms(10);
	}
}

/* Sends NOTIFY ch, 'n' from sender and says whether conn hears it within wait_ms. */
static bool hears(PGconn *conn, PGconn *sender, const char *ch, int n, long wait_ms)
{
	notify_n(sender, ch, n);
	PGnotify *got = next_notify(conn, wait_ms);
	if (!got)
		return false;
	char want[16];
	snprintf(want, sizeof(want), "%d", n);
	ck_assert_str_eq(got->relname, ch);
	ck_assert_str_eq(got->extra, want);
	PQfreemem(got);
	return true;
}

START_TEST(test_listen_and_unlisten_follow_postgresql_rules)
{
	struct harness_sluice *sl = start(2, NULL);
	PGconn *a = harness_connect(sl, CLIENT), *sender = harness_connect(sl, CLIENT);
	int n = 0;
	/* Rolled back: nothing heard. Committed in a block: heard. */
	harness_command_ok(a, "BEGIN", "BEGIN");
	harness_command_ok(a, "LISTEN r1", "LISTEN");
	harness_command_ok(a, "ROLLBACK", "ROLLBACK");
	ck_assert(!hears(a, sender, "r1", n++, 300));
	harness_command_ok(a, "BEGIN", "BEGIN");
	harness_command_ok(a, "LISTEN r1", "LISTEN");
	harness_command_ok(a, "COMMIT", "COMMIT");
	ck_assert(hears(a, sender, "r1", n++, 3000));
	/* A failed text LISTENs to nothing of it. */
	char *err = harness_query_error(a, "LISTEN r2; SELECT 1/0");
	ck_assert_msg(strstr(err, "22012"), "%s", err);
	free(err);
	ck_assert(!hears(a, sender, "r2", n++, 300));
	/* The session's own view: what it listens to, on whichever server answers. */
	harness_command_ok(a, "LISTEN r2", "LISTEN");
	ck_assert(hears(a, sender, "r2", n++, 3000));
	/* UNLISTEN in a transaction that rolls back (one text): still heard. */
	PGresult *res = PQexec(a, "BEGIN; UNLISTEN r1; ROLLBACK");
	ck_assert_int_eq(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);
	ck_assert(hears(a, sender, "r1", n++, 3000));
	harness_command_ok(a, "UNLISTEN r1", "UNLISTEN");
	ck_assert(!hears(a, sender, "r1", n++, 300));
	ck_assert(hears(a, sender, "r2", n++, 3000));
	/* UNLISTEN * and DISCARD ALL end everything. */
	harness_command_ok(a, "LISTEN r1", "LISTEN");
	harness_command_ok(a, "UNLISTEN *", "UNLISTEN");
	ck_assert(!hears(a, sender, "r1", n++, 300));
	ck_assert(!hears(a, sender, "r2", n++, 300));
	harness_command_ok(a, "LISTEN r3", "LISTEN");
	ck_assert(hears(a, sender, "r3", n++, 3000));
	harness_command_ok(a, "DISCARD ALL", "DISCARD ALL");
	ck_assert(!hears(a, sender, "r3", n++, 300));
	/* A quoted name is a channel of its own. */
	harness_command_ok(a, "LISTEN \"Mixed Case\"", "LISTEN");
	harness_command_ok(sender, "NOTIFY \"Mixed Case\", 'm'", "NOTIFY");
	PGnotify *got = next_notify(a, 3000);
	ck_assert_msg(got != NULL, "no notification on \"Mixed Case\"");
	ck_assert_str_eq(got->relname, "Mixed Case");
	PQfreemem(got);
	/* In a transaction, a notification waits until it ends, as on a direct session. */
	harness_command_ok(a, "BEGIN", "BEGIN");
	harness_expect_answer(a, "SELECT 1", "1");
	harness_command_ok(sender, "NOTIFY \"Mixed Case\", 'late'", "NOTIFY");
	harness_sleep_ms(200);
	ck_assert(PQconsumeInput(a));
	ck_assert_msg(PQnotifies(a) == NULL, "a notification arrived inside a transaction");
	harness_command_ok(a, "COMMIT", "COMMIT");
	got = next_notify(a, 3000);
	ck_assert_msg(got != NULL, "the notification did not follow the transaction");
	ck_assert_str_eq(got->extra, "late");
	PQfreemem(got);
	PQfinish(sender);
	PQfinish(a);
	harness_sluice_stop_ok(sl);
}
END_TEST

START_TEST(test_a_listener_that_reads_nothing_is_disconnected_and_memory_stays_bounded)
{
	int http = harness_free_port();
	char extra[96];
	snprintf(extra, sizeof(extra), "notify_queue_size = 1048576\nmetrics_port = %d\n", http);
	struct harness_sluice *sl = start(2, extra);
	PGconn *slow = harness_connect(sl, CLIENT), *fast = harness_connect(sl, CLIENT);
	PGconn *sender = harness_connect(sl, CLIENT);
	harness_command_ok(slow, "LISTEN flood", "LISTEN");
	harness_command_ok(fast, "LISTEN flood", "LISTEN");
	long rss_before = harness_sluice_rss_kib(sl);
	/*
	 * 6,000 notifications of 7,900 bytes: some 47 MB, far past any socket
	 * buffer; in batches the fast one's socket holds while it is not reading.
	 */
	enum { BATCHES = 300, PER_BATCH = 20 };
	int got = 0;
	for (int b = 0; b < BATCHES; b++) {
		char sql[256];
		snprintf(sql, sizeof(sql),
			 "SELECT count(pg_notify('flood', i::text || repeat(' ', 7890))) FROM "
			 "generate_series(%d, %d) AS i",
			 b * PER_BATCH, b * PER_BATCH + PER_BATCH - 1);
		harness_expect_answer(sender, sql, "20");
		/* The fast one reads as it goes (its payloads end in blanks). */
		long deadline = harness_now_ms() + 5000;
		while (got < (b + 1) * PER_BATCH && harness_now_ms() < deadline) {
			ck_assert_msg(PQconsumeInput(fast), "%s", PQerrorMessage(fast));
			PGnotify *n;
			while ((n = PQnotifies(fast))) {
				ck_assert_int_eq(atoi(n->extra), got);
				got++;
				PQfreemem(n);
			}
		}
	}
	ck_assert_int_eq(got, BATCHES * PER_BATCH);
	ck_assert(harness_sluice_log_wait(sl, "notify_queue_size", 5000));
	ck_assert_int_eq(metric(http, "sluice_notify_disconnects_total{reason=\"backlog\"} "), 1);
	ck_assert_int_eq(metric(http, "sluice_clients_listening "), 1);
	long grown = harness_sluice_rss_kib(sl) - rss_before;
	ck_assert_msg(grown < 16 * 1024, "sluice grew by %ld KiB", grown);
	/* The slow one is gone; everyone else goes on. */
	PGconn *admin = harness_connect(sl, "dbname=pgbouncer user=trustuser");
	ck_assert_int_eq(harness_show_long(admin, "SHOW POOLS", "database", "app", "cl_active") +
				 harness_show_long(admin, "SHOW POOLS", "database", "app", "cl_waiting"),
			 2);
	harness_expect_answer(fast, "SELECT 1", "1");
	PQfinish(admin);
	PQfinish(slow);
	PQfinish(sender);
	PQfinish(fast);
	harness_sluice_stop_ok(sl);
}
END_TEST

static void keep_notice(void *arg, const char *message)
{
	char **out = arg;
	free(*out);
	*out = xstrdup(message);
}

START_TEST(test_losing_the_listener_disconnects_its_clients_and_no_one_else)
{
	struct harness_sluice *sl = start(2, NULL);
	PGconn *a = harness_connect(sl, CLIENT), *other = harness_connect(sl, CLIENT);
	char *notice = NULL;
	PQsetNoticeProcessor(a, keep_notice, &notice);
	harness_command_ok(a, "LISTEN lost", "LISTEN");
	harness_expect_answer(other, "SELECT 1", "1");
	char *killed = harness_pg_exec("SELECT count(pg_terminate_backend(pid)) FROM "
				       "pg_stat_activity WHERE query LIKE 'LISTEN \"lost\"%%'");
	ck_assert_str_eq(killed, "1");
	free(killed);
	/* a hears why, at once, without asking anything (libpq passes it to the notice processor). */
	long deadline = harness_now_ms() + 5000;
	while (PQstatus(a) == CONNECTION_OK && harness_now_ms() < deadline) {
		PQconsumeInput(a);
		(void)PQisBusy(a); /* parses what was read */
		harness_sleep_ms(10);
	}
	ck_assert_int_eq(PQstatus(a), CONNECTION_BAD);
	ck_assert_msg(notice && strstr(notice, "listens on"), "%s", notice ? notice : "(none)");
	free(notice);
	ck_assert(harness_sluice_log_wait(sl, "(08006)", 1000));
	harness_expect_answer(other, "SELECT 1", "1");
	/* After server_login_retry, a new LISTEN gets a new listener. */
	harness_sleep_ms(1100);
	PGconn *b = harness_connect(sl, CLIENT);
	harness_command_ok(b, "LISTEN lost", "LISTEN");
	ck_assert(hears(b, other, "lost", 1, 3000));
	PQfinish(b);
	PQfinish(other);
	PQfinish(a);
	harness_sluice_stop_ok(sl);
}
END_TEST

START_TEST(test_without_a_listener_a_listen_pins_its_client_instead)
{
	/* The role may have 2 connections: the pool's two servers, and no room for a listener. */
	free(harness_pg_exec("ALTER ROLE trustuser CONNECTION LIMIT 2"));
	struct harness_sluice *sl = start(2, "min_pool_size = 2\n");
	PGconn *a = harness_connect(sl, CLIENT);
	ck_assert_int_eq(harness_wait_backends("trustuser", 2, 5000), 2);
	/* Notifications sent directly, by a role of no limit. */
	PGconn *sender = harness_connect(NULL, "dbname=app user=" HARNESS_SUPERUSER);
	harness_command_ok(a, "LISTEN fallback", "LISTEN");
	ck_assert(harness_sluice_log_wait(sl, "too many connections", 5000));
	/* The pool's own clients are not failed for the listener's login. */
	PGconn *other = harness_connect(sl, CLIENT);
	harness_expect_answer(other, "SELECT 1", "1");
	PQfinish(other);
	PGconn *admin = harness_connect(sl, "dbname=pgbouncer user=trustuser");
	/* The pin is found by the question sluice asks after the client has its answer. */
	char *why = NULL;
	for (long deadline = harness_now_ms() + 5000; harness_now_ms() < deadline;) {
		free(why);
		why = harness_show_value(admin, "SHOW PINS", "database", "app", "pins");
		if (why && strcmp(why, "listen") == 0)
			break;
		harness_sleep_ms(20);
	}
	ck_assert_msg(why && strcmp(why, "listen") == 0, "SHOW PINS: %s", why ? why : "(no row)");
	free(why);
	/* Its own server hears for it: nothing is missed. */
	for (int n = 0; n < 3; n++)
		ck_assert(hears(a, sender, "fallback", n, 3000));
	harness_command_ok(a, "UNLISTEN fallback", "UNLISTEN");
	ck_assert(!hears(a, sender, "fallback", 3, 300));
	PGresult *pins = PQexec(admin, "SHOW PINS");
	ck_assert_int_eq(PQntuples(pins), 0);
	PQclear(pins);
	PQfinish(admin);
	PQfinish(sender);
	PQfinish(a);
	harness_sluice_stop_ok(sl);
	free(harness_pg_exec("ALTER ROLE trustuser CONNECTION LIMIT -1"));
}
END_TEST

START_TEST(test_a_listener_that_does_not_answer_is_given_up)
{
	struct harness_sluice *sl = start(2, "server_connect_timeout = 1\n");
	PGconn *a = harness_connect(sl, CLIENT), *other = harness_connect(sl, CLIENT);
	PGconn *admin = harness_connect(sl, "dbname=pgbouncer user=trustuser");
	harness_command_ok(a, "LISTEN stuck_a", "LISTEN");
	long pid = harness_show_long(admin, "SHOW SERVERS", "state", "listen", "remote_pid");
	ck_assert_int_gt(pid, 0);
	/* The listener's backend stops answering (a hung server, a lock). */
	ck_assert_int_eq(kill((pid_t)pid, SIGSTOP), 0);
	long t0 = harness_now_ms();
	ck_assert(PQsendQuery(a, "LISTEN stuck_b"));
	/* The first result is sluice's error; libpq adds its own for the close after it. */
	bool told = false;
	PGresult *res;
	while ((res = PQgetResult(a))) {
		told |= strstr(PQresultErrorMessage(res), "went unanswered") != NULL;
		PQclear(res);
	}
	long waited = harness_now_ms() - t0;
	ck_assert_int_eq(kill((pid_t)pid, SIGCONT), 0);
	/*
	 * a waited about server_connect_timeout for the listener; then, since
	 * it heard through that listener, it is told and closed.
	 */
	ck_assert_msg(waited >= 900 && waited < 5000, "a waited %ld ms", waited);
	ck_assert_msg(told, "a was not told why");
	ck_assert_int_eq(PQstatus(a), CONNECTION_BAD);
	/* Nobody else is touched. */
	harness_expect_answer(other, "SELECT 1", "1");
	PQfinish(admin);
	PQfinish(other);
	PQfinish(a);
	harness_sluice_stop_ok(sl);
}
END_TEST

START_TEST(test_a_listen_while_the_listener_unlistens_waits_for_it_to_listen_again)
{
	struct harness_sluice *sl = start(2, "server_connect_timeout = 10\n");
	PGconn *a = harness_connect(sl, CLIENT);
	PGconn *admin = harness_connect(sl, "dbname=pgbouncer user=trustuser");
	/* "keep" keeps the listener open; "again" is the one it lets go and takes back. */
	harness_command_ok(a, "LISTEN keep", "LISTEN");
	harness_command_ok(a, "LISTEN again", "LISTEN");
	long pid = harness_show_long(admin, "SHOW SERVERS", "state", "listen", "remote_pid");
	ck_assert_int_gt(pid, 0);
	/* The listener's UNLISTEN of "again" is held on its way. */
	ck_assert_int_eq(kill((pid_t)pid, SIGSTOP), 0);
	harness_command_ok(a, "UNLISTEN again", "UNLISTEN");
	/* A LISTEN now must wait for the listener's LISTEN after that UNLISTEN. */
	ck_assert(PQsendQuery(a, "LISTEN again"));
	bool early = harness_wait_not_busy(a, 500);
	ck_assert_int_eq(kill((pid_t)pid, SIGCONT), 0);
	ck_assert_msg(!early, "the LISTEN went ahead of the listener");
	ck_assert(harness_wait_not_busy(a, 5000));
	PGresult *res;
	while ((res = PQgetResult(a))) {
		ck_assert_int_eq(PQresultStatus(res), PGRES_COMMAND_OK);
		PQclear(res);
	}
	/* So nothing committed after it is lost. */
	PGconn *sender = harness_connect(sl, CLIENT);
	ck_assert(hears(a, sender, "again", 1, 3000));
	ck_assert(hears(a, sender, "keep", 2, 3000));
	PQfinish(sender);
	PQfinish(admin);
	PQfinish(a);
	harness_sluice_stop_ok(sl);
}
END_TEST

/*
 * The listener hears a notification a moment after its commit. One it has
 * not sent yet when another client's LISTEN comes was committed before
 * that LISTEN: a direct session would not hear it, so the newcomer must
 * not either, while the client already listening does.
 */
START_TEST(test_a_notification_the_listener_still_owes_is_not_a_newcomers)
{
	struct harness_sluice *sl = start(2, "server_connect_timeout = 10\n");
	PGconn *a = harness_connect(sl, CLIENT), *b = harness_connect(sl, CLIENT);
	PGconn *sender = harness_connect(sl, CLIENT);
	PGconn *admin = harness_connect(sl, "dbname=pgbouncer user=trustuser");
	harness_command_ok(a, "LISTEN owed", "LISTEN");
	long pid = harness_show_long(admin, "SHOW SERVERS", "state", "listen", "remote_pid");
	ck_assert_int_gt(pid, 0);
	/* The listener's backend is slow to send what it hears (a busy machine). */
	ck_assert_int_eq(kill((pid_t)pid, SIGSTOP), 0);
	notify_n(sender, "owed", 0);
	ck_assert(PQsendQuery(b, "LISTEN owed"));
	harness_sleep_ms(300);
	ck_assert_int_eq(kill((pid_t)pid, SIGCONT), 0);
	ck_assert(harness_wait_not_busy(b, 5000));
	PGresult *res;
	while ((res = PQgetResult(b))) {
		ck_assert_int_eq(PQresultStatus(res), PGRES_COMMAND_OK);
		PQclear(res);
	}
	/* b's first notification is the one sent after its LISTEN; a has both. */
	ck_assert(hears(b, sender, "owed", 1, 3000));
	PGnotify *got = next_notify(a, 3000);
	ck_assert_msg(got && strcmp(got->extra, "0") == 0, "a missed the notification before b's LISTEN");
	PQfreemem(got);
	got = next_notify(a, 3000);
	ck_assert_msg(got && strcmp(got->extra, "1") == 0, "a missed the one after");
	PQfreemem(got);
	PQfinish(admin);
	PQfinish(sender);
	PQfinish(b);
	PQfinish(a);
	harness_sluice_stop_ok(sl);
}
END_TEST

/* ---- seeded churn ---------------------------------------------------------------------- */

#define CHURN_CLIENTS 10
#define CHURN_CHANNELS 3
#define CHURN_STEPS 150
#define CHURN_MAX_NOTIFIES 200

/*
 * One seed: clients LISTEN and UNLISTEN at random, in every way PostgreSQL
 * decides (a block that commits or rolls back, one text, the extended
 * protocol, UNLISTEN *, DISCARD ALL), while a sender NOTIFYs. A model
 * says, for each notification, which clients were listening when it was
 * sent; each client must get exactly those, each channel in order. The
 * listener's channels come and go with them (a LISTEN while its UNLISTEN
 * is on its way to the listener, for one).
 */
static void churn_drain(PGconn **c, uint64_t seed,
			int expected[CHURN_CLIENTS][CHURN_CHANNELS][CHURN_MAX_NOTIFIES],
			int n_expected[CHURN_CLIENTS][CHURN_CHANNELS],
			int n_got[CHURN_CLIENTS][CHURN_CHANNELS], long wait_ms);

static void churn(struct harness_sluice *sl, uint64_t seed)
{
	uint64_t rng = seed;
	PGconn *c[CHURN_CLIENTS];
	unsigned subs[CHURN_CLIENTS] = { 0 }; /* the model: channel bits */
	/* expected[i][ch]: the payload numbers client i must get on channel ch, in order */
	static int expected[CHURN_CLIENTS][CHURN_CHANNELS][CHURN_MAX_NOTIFIES];
	int n_expected[CHURN_CLIENTS][CHURN_CHANNELS] = { { 0 } };
	int n_got[CHURN_CLIENTS][CHURN_CHANNELS] = { { 0 } };
	int next[CHURN_CHANNELS] = { 0 };
	for (int i = 0; i < CHURN_CLIENTS; i++)
		c[i] = harness_connect(sl, CLIENT);
	PGconn *sender = harness_connect(sl, CLIENT);
	char sql[128];
	for (int step = 0; step < CHURN_STEPS; step++) {
		int i = harness_rng_below(&rng, CHURN_CLIENTS);
		int ch = harness_rng_below(&rng, CHURN_CHANNELS);
		unsigned bit = 1u << ch;
		int action = harness_rng_below(&rng, 10);
		if (getenv("NOTIFY_VERBOSE"))
			fprintf(stderr, "step %d: client %d channel %d action %d (subs %x)\n", step,
				i, ch, action, subs[i]);
		switch (action) {
		case 0:
		case 1:
			snprintf(sql, sizeof(sql), "LISTEN churn%d", ch);
			harness_command_ok(c[i], sql, "LISTEN");
			subs[i] |= bit;
			break;
		case 2: {
			snprintf(sql, sizeof(sql), "LISTEN churn%d", ch);
			PGresult *res = PQexecParams(c[i], sql, 0, NULL, NULL, NULL, NULL, 0);
			ck_assert_int_eq(PQresultStatus(res), PGRES_COMMAND_OK);
			PQclear(res);
			subs[i] |= bit;
			break;
		}
		case 3:
			snprintf(sql, sizeof(sql), "UNLISTEN churn%d", ch);
			harness_command_ok(c[i], sql, "UNLISTEN");
			subs[i] &= ~bit;
			break;
		case 4: {
			bool commit = harness_rng_below(&rng, 2);
			harness_command_ok(c[i], "BEGIN", "BEGIN");
			snprintf(sql, sizeof(sql), "LISTEN churn%d", ch);
			harness_command_ok(c[i], sql, "LISTEN");
			harness_command_ok(c[i], commit ? "COMMIT" : "ROLLBACK",
					   commit ? "COMMIT" : "ROLLBACK");
			if (commit)
				subs[i] |= bit;
			break;
		}
		case 5: {
			/* One text: the server listens to the client's channels first. */
			bool commit = harness_rng_below(&rng, 2);
			snprintf(sql, sizeof(sql), "BEGIN; UNLISTEN churn%d; %s", ch,
				 commit ? "COMMIT" : "ROLLBACK");
			PGresult *res = PQexec(c[i], sql);
			ck_assert_int_eq(PQresultStatus(res), PGRES_COMMAND_OK);
			PQclear(res);
			if (commit)
				subs[i] &= ~bit;
			break;
		}
		case 6:
			if (harness_rng_below(&rng, 2)) {
				harness_command_ok(c[i], "UNLISTEN *", "UNLISTEN");
			} else {
				harness_command_ok(c[i], "DISCARD ALL", "DISCARD ALL");
			}
			subs[i] = 0;
			break;
		default:
			if (next[ch] == CHURN_MAX_NOTIFIES)
				break;
			snprintf(sql, sizeof(sql), "NOTIFY churn%d, '%d'", ch, next[ch]);
			harness_command_ok(sender, sql, "NOTIFY");
			for (int k = 0; k < CHURN_CLIENTS; k++)
				if (subs[k] & bit)
					expected[k][ch][n_expected[k][ch]++] = next[ch];
			next[ch]++;
			/*
			 * As a direct session hears it at once when idle: before the
			 * next LISTEN or UNLISTEN (the listener hears a notification a
			 * moment after its commit; doc/transaction-mode.md).
			 */
			churn_drain(c, seed, expected, n_expected, n_got, 5000);
			break;
		}
	}
	churn_drain(c, seed, expected, n_expected, n_got, 10000);
	for (int k = 0; k < CHURN_CLIENTS; k++)
		for (int ch = 0; ch < CHURN_CHANNELS; ch++)
			ck_assert_msg(n_got[k][ch] == n_expected[k][ch],
				      "seed %llu: client %d got %d of %d notifications on churn%d",
				      (unsigned long long)seed, k, n_got[k][ch], n_expected[k][ch], ch);
	for (int k = 0; k < CHURN_CLIENTS; k++)
		PQfinish(c[k]);
	PQfinish(sender);
}

/*
 * Reads what the clients got, checking each notification against what they
 * must get, until all that is expected so far has come (or wait_ms passed).
 */
static void churn_drain(PGconn **c, uint64_t seed,
			int expected[CHURN_CLIENTS][CHURN_CHANNELS][CHURN_MAX_NOTIFIES],
			int n_expected[CHURN_CLIENTS][CHURN_CHANNELS],
			int n_got[CHURN_CLIENTS][CHURN_CHANNELS], long wait_ms)
{
	long deadline = harness_now_ms() + wait_ms;
	for (;;) {
		bool all = true;
		for (int k = 0; k < CHURN_CLIENTS; k++) {
			ck_assert_msg(PQconsumeInput(c[k]), "%s", PQerrorMessage(c[k]));
			PGnotify *n;
			while ((n = PQnotifies(c[k]))) {
				int ch = -1;
				ck_assert_msg(sscanf(n->relname, "churn%d", &ch) == 1 && ch >= 0 &&
						      ch < CHURN_CHANNELS,
					      "seed %llu: client %d got channel %s",
					      (unsigned long long)seed, k, n->relname);
				int at = n_got[k][ch]++;
				ck_assert_msg(at < n_expected[k][ch] &&
						      atoi(n->extra) == expected[k][ch][at],
					      "seed %llu: client %d on churn%d got %s as its notification "
					      "%d, expected %d of %d",
					      (unsigned long long)seed, k, ch, n->extra, at,
					      at < n_expected[k][ch] ? expected[k][ch][at] : -1,
					      n_expected[k][ch]);
				PQfreemem(n);
			}
			for (int ch = 0; ch < CHURN_CHANNELS; ch++)
				all &= n_got[k][ch] == n_expected[k][ch];
		}
		if (all || harness_now_ms() > deadline)
			break;
		harness_sleep_ms(2);
	}
}

START_TEST(test_seeded_listen_churn_delivers_exactly_what_postgresql_would)
{
	struct harness_sluice *sl = start(2, NULL);
	const char *only = getenv("NOTIFY_SEED");
	if (only) {
		churn(sl, strtoull(only, NULL, 10));
	} else {
		for (uint64_t seed = 1; seed <= 8; seed++)
			churn(sl, seed);
	}
	harness_sluice_stop_ok(sl);
}
END_TEST

static Suite *notify_suite(void)
{
	Suite *s = suite_create("notify");
	TCase *tc = harness_tcase("notify");
	tcase_add_test(tc, test_fifty_listeners_on_a_pool_of_two_hear_every_notify_in_order);
	tcase_add_test(tc, test_listen_and_unlisten_follow_postgresql_rules);
	tcase_add_test(tc, test_a_listener_that_reads_nothing_is_disconnected_and_memory_stays_bounded);
	tcase_add_test(tc, test_losing_the_listener_disconnects_its_clients_and_no_one_else);
	tcase_add_test(tc, test_without_a_listener_a_listen_pins_its_client_instead);
	tcase_add_test(tc, test_a_listener_that_does_not_answer_is_given_up);
	tcase_add_test(tc, test_a_listen_while_the_listener_unlistens_waits_for_it_to_listen_again);
	tcase_add_test(tc, test_a_notification_the_listener_still_owes_is_not_a_newcomers);
	tcase_add_test(tc, test_seeded_listen_churn_delivers_exactly_what_postgresql_would);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return harness_run_suite(notify_suite());
}
