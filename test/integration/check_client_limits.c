/*
 * check_client_limits.c - proves the settings that bound clients rather than
 * servers: max_client_conn, max_db_client_connections,
 * max_user_client_connections, client_login_timeout, client_idle_timeout and
 * query_wait_timeout (also from [users] and [databases]), query_timeout
 * for a client still waiting for a server, and tcp_defer_accept. Each is shown to act (the right client gets the right
 * error, within a bound) and to spare everyone else (the other clients keep
 * working).
 *
 * Where the SQLSTATE of a refused login matters, the test speaks the protocol
 * itself on a raw socket (libpq does not expose the SQLSTATE of a failed
 * connection). It does not test server-side timeouts (check_server_timeouts)
 * or pool sizes (check_pool_size).
 */
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define USERLIST "\"trustuser\" \"trustuserpw\"\n\"md5user\" \"md5userpw\"\n"
#define COMMON "auth_type = trust\npool_mode = transaction\n"

/* ---- max_client_conn ----------------------------------------------------------- */

START_TEST(test_max_client_conn_refuses_one_more_with_53300)
{
	struct harness_sluice *s = harness_sluice_start(COMMON "max_client_conn = 3\n", NULL,
		USERLIST);
	PGconn *conns[3];
	for (int i = 0; i < 3; i++)
		conns[i] = harness_connect(s, "dbname=app user=trustuser");

	/* The fourth: refused with too_many_connections, seen on the wire... */
	int fd = harness_raw_connect(s->port);
	harness_raw_send_startup(fd, "trustuser", HARNESS_DATABASE);
	char *err = harness_raw_read_error(fd);
	ck_assert_msg(err != NULL, "the fourth client got no ErrorResponse");
	ck_assert_msg(strncmp(err, "53300 ", 6) == 0, "fourth client got: %s", err);
	free(err);
	close(fd);
	/* ...and through libpq. */
	err = harness_connect_error(s, "dbname=app user=trustuser");
	ck_assert_msg(strstr(err, "max_client_conn") != NULL, "%s", err);
	free(err);

	/* The three keep working. */
	for (int i = 0; i < 3; i++)
		harness_expect_answer(conns[i], "SELECT count(*) FROM items", "3");

	/*
	 * A freed slot can be taken again, at once: the refused clients did not
	 * keep theirs, and the client that left is no longer counted when the
	 * next one arrives. With workers = 2 the two often land on different
	 * workers, whose threads see the goodbye and the arrival in either order
	 * (worker_settle puts them back in the kernel's).
	 */
	for (int round = 0; round < 30; round++) {
		PQfinish(conns[0]);
		conns[0] = harness_connect(s, "dbname=app user=trustuser");
	}
	harness_expect_answer(conns[0], "SELECT 7", "7");
	PQfinish(conns[0]);
	for (int i = 1; i < 3; i++)
		PQfinish(conns[i]);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/*
 * Silent sockets fill max_client_conn (and more wait beyond it): real clients
 * still get in, each taking the place of a connection that has not logged
 * in for a second, instead of waiting for client_login_timeout (60 s here).
 */
START_TEST(test_silent_connections_at_max_client_conn_do_not_lock_out_real_clients)
{
	/* Silent connections that reach sluice: the kernel holds them back otherwise. */
	struct harness_sluice *s = harness_sluice_start(COMMON "max_client_conn = 50\n"
							       "tcp_defer_accept = 0\n",
		NULL, USERLIST);
	enum { SILENT = 200, REAL = 5 };
	int fds[SILENT];
	for (int i = 0; i < SILENT; i++)
		fds[i] = harness_raw_connect(s->port);
	harness_sleep_ms(1300);
	long start = harness_now_ms();
	PGconn *real[REAL];
	for (int i = 0; i < REAL; i++) {
		real[i] = harness_connect(s, "dbname=app user=trustuser");
		harness_expect_answer(real[i], "SELECT 1", "1");
	}
	long took = harness_now_ms() - start;
	ck_assert_msg(took < 5000, "%d real clients took %ld ms to get in", REAL, took);
	ck_assert(harness_sluice_log_wait(s, "closing a connection that had not logged in", 3000));
	/* Logged-in clients are never displaced: they all still work. */
	for (int i = 0; i < REAL; i++) {
		harness_expect_answer(real[i], "SELECT 2", "2");
		PQfinish(real[i]);
	}
	for (int i = 0; i < SILENT; i++)
		close(fds[i]);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* The port of a socket's own end: what sluice's log names its client by. */
static int local_port(int fd)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	return ntohs(a.sin_port);
}

/* The id sluice gave the client at 127.0.0.1:port, from its login line (waits for it). */
static long client_id_at(const struct harness_sluice *s, int port)
{
	char needle[64];
	snprintf(needle, sizeof(needle), "@127.0.0.1:%d login attempt", port);
	ck_assert_msg(harness_sluice_log_wait(s, needle, 5000), "no login from port %d", port);
	char *log = harness_sluice_log(s);
	char *at = strstr(log, needle);
	while (at > log && at[-1] != '\n')
		at--;
	char *c = strstr(at, " C-");
	ck_assert(c != NULL);
	long id = strtol(c + 3, NULL, 10);
	free(log);
	return id;
}

/*
 * tcp_defer_accept: the kernel hands a connection to sluice once its first
 * bytes come, so one that connects and waits before it speaks is accepted
 * (and numbered) after one that connected later and spoke at once. With 0
 * it is accepted at its handshake, first.
 */
START_TEST(test_tcp_defer_accept_takes_a_connection_when_it_speaks)
{
	bool defer = _i == 1;
	char extra[128];
	snprintf(extra, sizeof(extra), COMMON "tcp_defer_accept = %d\n", defer ? 5 : 0);
	struct harness_sluice *s = harness_sluice_start(extra, NULL, USERLIST);
	int slow = harness_raw_connect(s->port);
	harness_sleep_ms(300);
	PGconn *prompt = harness_connect(s, "dbname=app user=trustuser");
	harness_expect_answer(prompt, "SELECT 1", "1");
	long prompt_id = client_id_at(s, local_port(PQsocket(prompt)));
	harness_raw_send_startup(slow, "trustuser", "app");
	long slow_id = client_id_at(s, local_port(slow));
	if (defer)
		ck_assert_msg(slow_id > prompt_id,
			      "the connection that waited was accepted first (C-%ld, C-%ld)", slow_id,
			      prompt_id);
	else
		ck_assert_msg(slow_id < prompt_id,
			      "the connection was not accepted at its handshake (C-%ld, C-%ld)",
			      slow_id, prompt_id);
	close(slow);
	PQfinish(prompt);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* ---- out of file descriptors ------------------------------------------------------ */

/* How many descriptors process pid has open. */
static int open_fds(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	DIR *d = opendir(path);
	ck_assert_msg(d != NULL, "%s: %s", path, strerror(errno));
	int n = 0;
	for (struct dirent *e; (e = readdir(d)) != NULL;)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/*
 * With its descriptors used up, sluice cannot accept: it says so once (not
 * once per attempt), stops accepting for a while, and the connections that
 * arrive meanwhile wait in the kernel's backlog. Once descriptors are free
 * again, they are served; none is dropped. (libuv's own listener accepts and closes
 * them, so each would see the connection closed without a word.)
 */
START_TEST(test_out_of_file_descriptors_pauses_accepting_and_drops_no_connection)
{
	if (getenv("SLUICE_WRAPPER")) {
		/* valgrind keeps its own descriptor limit: prlimit() from outside does not reach it. */
		fprintf(stderr, "skipped under SLUICE_WRAPPER: its descriptor limit is not the "
				"process's\n");
		return;
	}
	struct harness_sluice *s = harness_sluice_start(COMMON "max_client_conn = 100\n", NULL,
		USERLIST);
	PGconn *holder = harness_connect(s, "dbname=app user=trustuser");
	harness_expect_answer(holder, "SELECT 1", "1");
	struct rlimit lim;
	ck_assert_int_eq(prlimit(s->pid, RLIMIT_NOFILE, NULL, &lim), 0);
	struct rlimit low = { .rlim_cur = (rlim_t)open_fds(s->pid), .rlim_max = lim.rlim_max };
	ck_assert_int_eq(prlimit(s->pid, RLIMIT_NOFILE, &low, NULL), 0);

	enum { WAITING = 5 };
	int fds[WAITING];
	for (int i = 0; i < WAITING; i++) {
		fds[i] = harness_raw_connect(s->port);
		harness_raw_send_startup(fds[i], "trustuser", "app");
	}
	ck_assert(harness_sluice_log_wait(s, "accept() failed: Too many open files", 5000));
	harness_sleep_ms(1500); /* several pauses: still one line, not one per attempt */
	ck_assert_int_eq(harness_sluice_log_count(s, "accept() failed"), 1);
	harness_expect_answer(holder, "SELECT 2", "2"); /* logged-in clients go on */

	/* Room for everyone again: each waiting connection logs in. */
	ck_assert_int_eq(prlimit(s->pid, RLIMIT_NOFILE, &lim, NULL), 0);
	for (int i = 0; i < WAITING; i++) {
		struct harness_msg m;
		bool ready = false;
		while (!ready && harness_raw_read_msg(fds[i], &m)) {
			ck_assert_msg(m.type != 'E', "waiting connection %d refused: %s", i,
				harness_msg_field(&m, 'M'));
			ready = m.type == 'Z';
			free(m.body);
		}
		ck_assert_msg(ready, "waiting connection %d was dropped", i);
		close(fds[i]);
	}
	PQfinish(holder);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* ---- max_db_client_connections, max_user_client_connections ------------------------ */

/* Every harness role, so that any of them may log in under trust or plain. */
#define ALL_USERS                                                                                  \
	"\"trustuser\" \"trustuserpw\"\n\"md5user\" \"md5userpw\"\n"                               \
	"\"scramuser\" \"scramuserpw\"\n\"plainuser\" \"plainuserpw\"\n"
/* app and postgres, as the harness's default, but each on a line of its own to edit. */
#define TWO_DBS                                                                                    \
	"app = host=@PGHOST@ port=@PGPORT@ dbname=app\n"                                           \
	"postgres = host=@PGHOST@ port=@PGPORT@ dbname=postgres\n"

/* A libpq connection as user (password <user>pw) to db; fails the test unless it works. */
static PGconn *conn_as(const struct harness_sluice *s, const char *user, const char *db)
{
	char *ci = xasprintf("dbname=%s user=%s password=%spw", db, user, user);
	PGconn *c = harness_connect(s, ci);
	free(ci);
	return c;
}

/* The console, as plainuser (every test here makes it an admin_users entry). */
static PGconn *console(const struct harness_sluice *s)
{
	return conn_as(s, "plainuser", "pgbouncer");
}

/*
 * A login as user to db is refused with PgBouncer's words: the first message
 * sluice sends is FATAL "client connections exceeded (<setting>)", before any
 * authentication request, with PostgreSQL's SQLSTATE for too many
 * connections (53300; PgBouncer sends 08P01).
 */
static void expect_refusal(const struct harness_sluice *s, const char *user, const char *db,
	const char *setting)
{
	int fd = harness_raw_connect(s->port);
	harness_raw_send_startup(fd, user, db);
	struct harness_msg m;
	ck_assert_msg(harness_raw_read_msg(fd, &m), "%s@%s: closed without a message", user, db);
	ck_assert_msg(m.type == 'E', "%s@%s: got '%c' first, not the refusal", user, db, m.type);
	char *want = xasprintf("client connections exceeded (%s)", setting);
	ck_assert_str_eq(harness_msg_field(&m, 'S'), "FATAL");
	ck_assert_str_eq(harness_msg_field(&m, 'C'), "53300");
	ck_assert_str_eq(harness_msg_field(&m, 'M'), want);
	free(want);
	free(m.body);
	close(fd);
}

/* Polls (3 s at most) until the console shows want in col of the row key; returns the last. */
static long wait_show_long(PGconn *c, const char *sql, const char *key, const char *col,
	long want)
{
	long deadline = harness_now_ms() + 3000, v;
	while ((v = harness_show_long(c, sql, "name", key, col)) != want &&
	       harness_now_ms() < deadline)
		harness_sleep_ms(20);
	return v;
}

static void console_ok(PGconn *c, const char *cmd)
{
	PGresult *res = PQexec(c, cmd);
	ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "%s: %s", cmd,
		PQresultErrorMessage(res));
	PQclear(res);
}

START_TEST(test_max_db_client_connections_refuses_before_authentication_with_53300)
{
	struct harness_sluice *s = harness_sluice_start("auth_type = plain\n"
							"max_db_client_connections = 2\n"
							"admin_users = plainuser\n",
		TWO_DBS, ALL_USERS);
	/* All users together count against the database. */
	PGconn *a = conn_as(s, "trustuser", "app");
	PGconn *b = conn_as(s, "md5user", "app");
	/* Twice: a refused client does not keep a place either. */
	expect_refusal(s, "scramuser", "app", "max_db_client_connections");
	expect_refusal(s, "trustuser", "app", "max_db_client_connections");
	/* Another database counts on its own. */
	PGconn *other = conn_as(s, "trustuser", "postgres");
	harness_expect_answer(other, "SELECT 1", "1");

	PGconn *c = console(s);
	ck_assert_int_eq(harness_show_long(c, "SHOW DATABASES", "name", "app",
				 "max_client_connections"), 2);
	ck_assert_int_eq(harness_show_long(c, "SHOW DATABASES", "name", "app",
				 "current_client_connections"), 2);
	ck_assert_int_eq(harness_show_long(c, "SHOW DATABASES", "name", "postgres",
				 "current_client_connections"), 1);
	/* The console is a database like the others: its own client counts. */
	ck_assert_int_eq(harness_show_long(c, "SHOW DATABASES", "name", "pgbouncer",
				 "max_client_connections"), 2);
	ck_assert_int_eq(harness_show_long(c, "SHOW DATABASES", "name", "pgbouncer",
				 "current_client_connections"), 1);
	/* The clients inside the limit are untouched. */
	harness_expect_answer(a, "SELECT count(*) FROM items", "3");
	harness_expect_answer(b, "SELECT count(*) FROM items", "3");

	/* One leaves: its place is free again. */
	PQfinish(a);
	ck_assert_int_eq(wait_show_long(c, "SHOW DATABASES", "app", "current_client_connections",
				 1), 1);
	PGconn *d = conn_as(s, "scramuser", "app");
	harness_expect_answer(d, "SELECT 2", "2");
	ck_assert_int_eq(harness_show_long(c, "SHOW DATABASES", "name", "app",
				 "current_client_connections"), 2);
	PQfinish(b);
	PQfinish(d);
	PQfinish(other);
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

/*
 * A client counts from its startup packet: while it authenticates it holds
 * its place, and a failed (or abandoned) login gives the place back.
 */
START_TEST(test_max_db_client_connections_counts_a_login_until_it_ends)
{
	struct harness_sluice *s = harness_sluice_start("auth_type = plain\n"
							"admin_users = plainuser\n",
		"app = host=@PGHOST@ port=@PGPORT@ dbname=app max_db_client_connections=1\n",
		ALL_USERS);
	PGconn *c = console(s);
	for (int round = 0; round < 2; round++) {
		int fd = harness_raw_connect(s->port);
		harness_raw_send_startup(fd, "md5user", "app");
		struct harness_msg m;
		ck_assert(harness_raw_read_msg(fd, &m));
		ck_assert_msg(m.type == 'R', "got '%c', not an authentication request", m.type);
		free(m.body);
		/* Not authenticated, yet it holds the only place. */
		ck_assert_int_eq(harness_show_long(c, "SHOW DATABASES", "name", "app",
					 "current_client_connections"), 1);
		expect_refusal(s, "trustuser", "app", "max_db_client_connections");
		if (round == 0) {
			/* A wrong password: 28P01, and the place is released. */
			static const uint8_t wrong[] = { 'p', 0, 0, 0, 10, 'w', 'r', 'o', 'n', 'g', 0 };
			harness_write_all(fd, wrong, sizeof(wrong));
			char *err = harness_raw_read_error(fd);
			ck_assert_msg(err && strncmp(err, "28P01 ", 6) == 0, "%s", err ? err : "EOF");
			free(err);
		}
		/* Round 1: the client just goes away in the middle of its login. */
		close(fd);
		ck_assert_int_eq(wait_show_long(c, "SHOW DATABASES", "app",
					 "current_client_connections", 0), 0);
		PGconn *ok = conn_as(s, "trustuser", "app");
		harness_expect_answer(ok, "SELECT 1", "1");
		PQfinish(ok);
		ck_assert_int_eq(wait_show_long(c, "SHOW DATABASES", "app",
					 "current_client_connections", 0), 0);
	}
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

/* A database's own value beats the global one; 0 there takes the global one (PgBouncer). */
START_TEST(test_max_db_client_connections_per_database_overrides_global)
{
	struct harness_sluice *s = harness_sluice_start(COMMON "max_db_client_connections = 1\n"
							      "admin_users = plainuser\n",
		"app = host=@PGHOST@ port=@PGPORT@ dbname=app max_db_client_connections=2\n"
		"zero = host=@PGHOST@ port=@PGPORT@ dbname=app max_db_client_connections=0\n"
		"postgres = host=@PGHOST@ port=@PGPORT@ dbname=postgres\n",
		ALL_USERS);
	PGconn *a1 = conn_as(s, "trustuser", "app");
	PGconn *a2 = conn_as(s, "trustuser", "app");
	expect_refusal(s, "trustuser", "app", "max_db_client_connections");
	PGconn *z = conn_as(s, "trustuser", "zero");
	expect_refusal(s, "trustuser", "zero", "max_db_client_connections");
	PGconn *p = conn_as(s, "trustuser", "postgres");
	expect_refusal(s, "md5user", "postgres", "max_db_client_connections");

	PGconn *c = console(s);
	ck_assert_int_eq(harness_show_long(c, "SHOW DATABASES", "name", "app",
				 "max_client_connections"), 2);
	ck_assert_int_eq(harness_show_long(c, "SHOW DATABASES", "name", "zero",
				 "max_client_connections"), 1);
	ck_assert_int_eq(harness_show_long(c, "SHOW DATABASES", "name", "postgres",
				 "max_client_connections"), 1);
	PQfinish(a1);
	PQfinish(a2);
	PQfinish(z);
	PQfinish(p);
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_max_user_client_connections_global_and_per_user_across_databases)
{
	struct harness_sluice *s = harness_sluice_start(COMMON "max_user_client_connections = 1\n"
							      "admin_users = plainuser\n",
		TWO_DBS "[users]\ntrustuser = max_user_client_connections=2\n", ALL_USERS);
	/* A user's clients of every database count together. */
	PGconn *t1 = conn_as(s, "trustuser", "app");
	PGconn *t2 = conn_as(s, "trustuser", "postgres");
	expect_refusal(s, "trustuser", "app", "max_user_client_connections");
	expect_refusal(s, "trustuser", "postgres", "max_user_client_connections");
	PGconn *m1 = conn_as(s, "md5user", "app");
	expect_refusal(s, "md5user", "postgres", "max_user_client_connections");

	PGconn *c = console(s);
	ck_assert_int_eq(harness_show_long(c, "SHOW USERS", "name", "trustuser",
				 "max_user_client_connections"), 2);
	ck_assert_int_eq(harness_show_long(c, "SHOW USERS", "name", "trustuser",
				 "current_client_connections"), 2);
	ck_assert_int_eq(harness_show_long(c, "SHOW USERS", "name", "md5user",
				 "max_user_client_connections"), 1);
	ck_assert_int_eq(harness_show_long(c, "SHOW USERS", "name", "md5user",
				 "current_client_connections"), 1);
	ck_assert_int_eq(harness_show_long(c, "SHOW USERS", "name", "scramuser",
				 "current_client_connections"), 0);
	harness_expect_answer(t1, "SELECT 1", "1");
	harness_expect_answer(m1, "SELECT 1", "1");

	PQfinish(t2);
	ck_assert_int_eq(wait_show_long(c, "SHOW USERS", "trustuser", "current_client_connections",
				 1), 1);
	t2 = conn_as(s, "trustuser", "postgres");
	harness_expect_answer(t2, "SELECT 2", "2");
	PQfinish(t1);
	PQfinish(t2);
	PQfinish(m1);
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

/* With auth_type=any the forced user logs in, so it is the one counted (as PgBouncer). */
START_TEST(test_max_user_client_connections_counts_the_forced_user_under_auth_type_any)
{
	struct harness_sluice *s = harness_sluice_start("auth_type = any\n"
							"max_user_client_connections = 1\n"
							"admin_users = plainuser\n",
		"app = host=@PGHOST@ port=@PGPORT@ dbname=app user=trustuser\n", NULL);
	PGconn *a = harness_connect(s, "dbname=app user=alice");
	expect_refusal(s, "bob", "app", "max_user_client_connections");
	PGconn *c = harness_connect(s, "dbname=pgbouncer user=plainuser");
	ck_assert_int_eq(harness_show_long(c, "SHOW USERS", "name", "trustuser",
				 "current_client_connections"), 1);
	harness_expect_answer(a, "SELECT current_user", "trustuser");
	PQfinish(a);
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

/* On the console, admin_users are counted but pass both limits; stats_users do not. */
START_TEST(test_console_admin_users_are_counted_but_never_refused)
{
	struct harness_sluice *s = harness_sluice_start(COMMON "max_db_client_connections = 1\n"
							      "admin_users = plainuser\n"
							      "stats_users = scramuser\n",
		TWO_DBS, ALL_USERS);
	PGconn *adm[4];
	for (int i = 0; i < 3; i++)
		adm[i] = console(s);
	ck_assert_int_eq(harness_show_long(adm[0], "SHOW DATABASES", "name", "pgbouncer",
				 "current_client_connections"), 3);
	expect_refusal(s, "scramuser", "pgbouncer", "max_db_client_connections");

	console_ok(adm[0], "SET max_db_client_connections = 0");
	console_ok(adm[0], "SET max_user_client_connections = 1");
	PGconn *st = conn_as(s, "scramuser", "pgbouncer");
	expect_refusal(s, "scramuser", "pgbouncer", "max_user_client_connections");
	adm[3] = console(s); /* the fourth of a user limited to 1 */
	ck_assert_int_eq(harness_show_long(adm[3], "SHOW USERS", "name", "plainuser",
				 "current_client_connections"), 4);
	ck_assert_int_eq(harness_show_long(adm[3], "SHOW USERS", "name", "scramuser",
				 "current_client_connections"), 1);
	/* The alias "sluice" is the console database too. */
	PGconn *alias = conn_as(s, "plainuser", "sluice");
	ck_assert_int_eq(harness_show_long(alias, "SHOW DATABASES", "name", "pgbouncer",
				 "current_client_connections"), 6);
	PQfinish(alias);
	PQfinish(st);
	for (int i = 0; i < 4; i++)
		PQfinish(adm[i]);
	harness_sluice_stop_ok(s);
}
END_TEST

/*
 * The global values follow the console's SET, the [databases] and [users]
 * values a RELOAD; clients already in stay when a limit drops below them.
 */
START_TEST(test_client_connection_limits_follow_set_and_reload)
{
	struct harness_sluice *s = harness_sluice_start(COMMON "admin_users = plainuser\n",
		TWO_DBS, ALL_USERS);
	PGconn *c = console(s);
	PGconn *t[5];
	for (int i = 0; i < 3; i++)
		t[i] = conn_as(s, "trustuser", "app");

	console_ok(c, "SET max_db_client_connections = 2");
	expect_refusal(s, "trustuser", "app", "max_db_client_connections");
	ck_assert_int_eq(harness_show_long(c, "SHOW DATABASES", "name", "app",
				 "max_client_connections"), 2);
	for (int i = 0; i < 3; i++)
		harness_expect_answer(t[i], "SELECT 1", "1");

	harness_sluice_edit_ini(s, "dbname=app\n", "dbname=app max_db_client_connections=4\n");
	console_ok(c, "RELOAD");
	ck_assert_int_eq(harness_show_long(c, "SHOW DATABASES", "name", "app",
				 "max_client_connections"), 4);
	t[3] = conn_as(s, "trustuser", "app");
	expect_refusal(s, "trustuser", "app", "max_db_client_connections");

	console_ok(c, "SET max_user_client_connections = 4");
	expect_refusal(s, "trustuser", "postgres", "max_user_client_connections");
	harness_sluice_edit_ini(s, "[users]\n", "[users]\ntrustuser = max_user_client_connections=6\n");
	console_ok(c, "RELOAD");
	t[4] = conn_as(s, "trustuser", "postgres");
	ck_assert_int_eq(harness_show_long(c, "SHOW USERS", "name", "trustuser",
				 "max_user_client_connections"), 6);
	ck_assert_int_eq(harness_show_long(c, "SHOW USERS", "name", "trustuser",
				 "current_client_connections"), 5);
	for (int i = 0; i < 5; i++) {
		harness_expect_answer(t[i], "SELECT 3", "3");
		PQfinish(t[i]);
	}
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

/* ---- client_login_timeout --------------------------------------------------------- */

START_TEST(test_client_login_timeout_disconnects_silent_client)
{
	struct harness_sluice *s = harness_sluice_start(COMMON "client_login_timeout = 0.5\n", NULL,
		USERLIST);
	long t0 = harness_now_ms();
	int fd = harness_raw_connect(s->port);
	/* It sends nothing. Meanwhile a proper client logs in and works. */
	PGconn *conn = harness_connect(s, "dbname=app user=trustuser");
	harness_expect_answer(conn, "SELECT 1", "1");

	/* An ErrorResponse (if any) then end of file, well before the socket's 10 s timeout. */
	char *err = harness_raw_read_error(fd);
	long waited = harness_now_ms() - t0;
	if (err) {
		ck_assert_msg(strstr(err, "client_login_timeout") != NULL, "%s", err);
		free(err);
		uint8_t b;
		ck_assert_int_eq(read(fd, &b, 1), 0);
	}
	ck_assert_msg(waited >= 450, "disconnected after %ld ms, before the timeout", waited);
	ck_assert_msg(waited < 3000, "disconnected only after %ld ms", waited);
	close(fd);

	/* The logged-in client is past login: the timeout does not touch it. */
	harness_sleep_ms(300);
	harness_expect_answer(conn, "SELECT 2", "2");
	PQfinish(conn);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_client_login_timeout_spares_a_client_that_logs_in_in_time)
{
	struct harness_sluice *s = harness_sluice_start(COMMON "client_login_timeout = 0.5\n", NULL,
		USERLIST);
	/* A logged-in client first, so that the pool's server login is not part of the wait. */
	PGconn *conn = harness_connect(s, "dbname=app user=trustuser");
	/* Slow but in time: the startup packet after 200 ms is accepted. */
	int fd = harness_raw_connect(s->port);
	harness_sleep_ms(200);
	harness_raw_send_startup(fd, "trustuser", HARNESS_DATABASE);
	uint8_t hdr[5];
	ck_assert(harness_read_full(fd, hdr, sizeof(hdr)));
	ck_assert_msg(hdr[0] == 'R', "answer to a timely startup was '%c'", hdr[0]);
	close(fd);
	PQfinish(conn);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* ---- client_idle_timeout ----------------------------------------------------------- */

START_TEST(test_client_idle_timeout_closes_idle_client_only)
{
	struct harness_sluice *s = harness_sluice_start(COMMON "client_idle_timeout = 0.5\n", NULL,
		USERLIST);
	PGconn *idle = harness_connect(s, "dbname=app user=trustuser");
	PGconn *busy = harness_connect(s, "dbname=app user=trustuser");
	harness_expect_answer(idle, "SELECT 1", "1");
	long t0 = harness_now_ms();

	/* busy sends a query every 150 ms: never idle for 0.5 s. */
	while (harness_now_ms() - t0 < 1200) {
		harness_expect_answer(busy, "SELECT 1", "1");
		harness_sleep_ms(150);
	}
	/* By now idle has been told and dropped; PQconsumeInput sees the end. */
	long waited = harness_wait_readable(idle, 3000) + (harness_now_ms() - t0);
	ck_assert_msg(waited >= 450, "closed after %ld ms", waited);
	char *err = harness_query_error(idle, "SELECT 1");
	ck_assert_msg(strstr(err, "client_idle_timeout") != NULL || strncmp(err, "08", 2) == 0,
		"%s", err);
	free(err);
	ck_assert(harness_sluice_log_wait(s, "client_idle_timeout", 2000));
	harness_expect_answer(busy, "SELECT 3", "3");
	PQfinish(idle);
	PQfinish(busy);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* ---- query_wait_timeout ------------------------------------------------------------- */

START_TEST(test_query_wait_timeout_fails_waiting_client_and_spares_holder)
{
	struct harness_sluice *s = harness_sluice_start(COMMON "default_pool_size = 1\n"
							      "query_wait_timeout = 0.5\n",
		NULL, USERLIST);
	PGconn *holder = harness_connect(s, "dbname=app user=trustuser");
	PGconn *waiter = harness_connect(s, "dbname=app user=trustuser");
	free(harness_query_text(holder, "BEGIN"));
	free(harness_query_text(holder, "UPDATE items SET name = name WHERE id = 1"));

	long t0 = harness_now_ms();
	ck_assert(PQsendQuery(waiter, "SELECT 1"));
	long waited = harness_wait_readable(waiter, 3000);
	ck_assert_msg(waited >= 450, "the waiter was answered after %ld ms", waited);
	ck_assert_msg(waited < 2500, "the waiter was answered after %ld ms", waited);
	PGresult *res = PQgetResult(waiter);
	ck_assert_int_eq(PQresultStatus(res), PGRES_FATAL_ERROR);
	const char *msg = PQresultErrorMessage(res);
	ck_assert_msg(strstr(msg, "query_wait_timeout") != NULL, "%s", msg);
	PQclear(res);
	while ((res = PQgetResult(waiter)) != NULL)
		PQclear(res);
	(void)t0;

	/* The holder's transaction is intact and commits. */
	harness_expect_answer(holder, "SELECT count(*) FROM items", "3");
	char *status = harness_query_text(holder, "SELECT now() = statement_timestamp()");
	ck_assert_str_eq(status, "f"); /* still inside the transaction begun before */
	free(status);
	free(harness_query_text(holder, "COMMIT"));
	harness_expect_answer(holder, "SELECT 5", "5");
	ck_assert(harness_sluice_log_wait(s, "query_wait_timeout", 2000));
	PQfinish(holder);
	PQfinish(waiter);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* ---- notices: login_notify_message, query_wait_notify ------------------------------ */

static void count_notice(void *arg, const PGresult *res)
{
	const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	if (m && strstr(m, "client being queued"))
		(*(int *)arg)++;
}

/* A client that waits longer than query_wait_notify is told once that it is queued. */
START_TEST(test_query_wait_notify_tells_a_queued_client_once)
{
	struct harness_sluice *s = harness_sluice_start(COMMON "default_pool_size = 1\n"
							      "query_wait_notify = 0.3\n",
		NULL, USERLIST);
	PGconn *holder = harness_connect(s, "dbname=app user=trustuser");
	PGconn *waiter = harness_connect(s, "dbname=app user=trustuser");
	int notices = 0;
	PQsetNoticeReceiver(waiter, count_notice, &notices);
	PQclear(PQexec(holder, "BEGIN"));
	ck_assert_int_eq(PQsendQuery(waiter, "SELECT 7"), 1);
	for (int i = 0; i < 40 && notices == 0; i++) {
		harness_sleep_ms(50);
		ck_assert_int_eq(PQconsumeInput(waiter), 1);
		(void)PQisBusy(waiter); /* parses what arrived: notices reach the receiver */
	}
	ck_assert_int_eq(notices, 1);
	harness_sleep_ms(700);
	ck_assert_int_eq(PQconsumeInput(waiter), 1);
	ck_assert_msg(PQisBusy(waiter), "the waiter got a server while the holder has it");
	PQclear(PQexec(holder, "COMMIT"));
	PGresult *res = PQgetResult(waiter);
	ck_assert_str_eq(PQgetvalue(res, 0, 0), "7");
	PQclear(res);
	ck_assert_ptr_null(PQgetResult(waiter));
	ck_assert_int_eq(notices, 1);
	/* A query that does not wait is told nothing. */
	harness_expect_answer(waiter, "SELECT 8", "8");
	ck_assert_int_eq(notices, 1);
	PQfinish(waiter);
	PQfinish(holder);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* The NOTICE of login_notify_message comes after login, before the first ReadyForQuery. */
static void expect_login_notice(const struct harness_sluice *s, const char *db, const char *want)
{
	int fd = harness_raw_connect(s->port);
	harness_raw_send_startup(fd, "trustuser", db);
	struct harness_msg m;
	bool authenticated = false, noticed = false, ready = false;
	while (!ready && harness_raw_read_msg(fd, &m)) {
		ck_assert_msg(m.type != 'E', "%s: %s", db, harness_msg_field(&m, 'M'));
		if (m.type == 'R')
			authenticated = true;
		if (m.type == 'N') {
			ck_assert(authenticated);
			ck_assert_str_eq(harness_msg_field(&m, 'C'), "00000");
			ck_assert_str_eq(harness_msg_field(&m, 'M'), want);
			noticed = true;
		}
		ready = m.type == 'Z';
		free(m.body);
	}
	ck_assert_msg(ready && noticed, "%s: ready %d, notice %d", db, ready, noticed);
	close(fd);
}

START_TEST(test_login_notify_message_follows_every_login)
{
	struct harness_sluice *s = harness_sluice_start(COMMON "admin_users = trustuser\n"
							      "login_notify_message = You are now "
							      "connected to a pooler\n",
		NULL, USERLIST);
	expect_login_notice(s, "app", "You are now connected to a pooler");
	expect_login_notice(s, "app", "You are now connected to a pooler"); /* pooled welcome */
	expect_login_notice(s, "pgbouncer", "You are now connected to a pooler");
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* A [users] client_idle_timeout wins over the global value (here: none), for that user. */
START_TEST(test_client_idle_timeout_per_user)
{
	struct harness_sluice *s = harness_sluice_start(COMMON, NULL, USERLIST);
	harness_sluice_reload_with_user(s, "trustuser = client_idle_timeout=0.5");
	PGconn *idle = harness_connect(s, "dbname=app user=trustuser");
	PGconn *other = harness_connect(s, "dbname=app user=md5user");
	harness_expect_answer(idle, "SELECT 1", "1");
	harness_expect_answer(other, "SELECT 1", "1");
	long waited = harness_wait_readable(idle, 3000);
	ck_assert_msg(waited >= 0, "the idle client was not closed");
	char *err = harness_query_error(idle, "SELECT 1");
	ck_assert_msg(strstr(err, "client_idle_timeout") != NULL, "%s", err);
	free(err);
	harness_expect_answer(other, "SELECT 2", "2");
	PQfinish(idle);
	PQfinish(other);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/*
 * The effective query_wait_timeout, as PgBouncer's test_query_wait_timeout
 * sets it up: from the global value, [users] over a long global one,
 * [databases] over a long global one, [users] 0 (wait for ever) over
 * [databases]; and the global query_timeout ending a wait of its own.
 */
static const struct wait_case {
	const char *ini;
	const char *db_keys;
	const char *user_line; /* NULL: none */
	const char *want; /* error text; NULL: still waiting after 1.2 s */
} wait_cases[] = {
	{ "query_wait_timeout = 0.5\n", "", NULL, "query_wait_timeout" },
	{ "query_wait_timeout = 200\n", "", "trustuser = query_wait_timeout=0.5",
		"query_wait_timeout" },
	{ "query_wait_timeout = 200\n", " query_wait_timeout=0.5", NULL, "query_wait_timeout" },
	{ "query_wait_timeout = 200\n", " query_wait_timeout=0.5", "trustuser = query_wait_timeout=0",
		NULL },
	{ "query_wait_timeout = 200\nquery_timeout = 0.5\n", "", NULL, "query_timeout" },
};

START_TEST(test_query_wait_timeout_from_users_databases_or_global)
{
	const struct wait_case *wc = &wait_cases[_i];
	char *extra = xasprintf(COMMON "default_pool_size = 1\n%s", wc->ini);
	char *dbs = xasprintf("app = host=@PGHOST@ port=@PGPORT@ dbname=app%s\n", wc->db_keys);
	struct harness_sluice *s = harness_sluice_start(extra, dbs, USERLIST);
	free(extra);
	free(dbs);
	if (wc->user_line)
		harness_sluice_reload_with_user(s, wc->user_line);
	PGconn *holder = harness_connect(s, "dbname=app user=trustuser");
	PGconn *waiter = harness_connect(s, "dbname=app user=trustuser");
	free(harness_query_text(holder, "BEGIN"));
	free(harness_query_text(holder, "SELECT 1"));

	ck_assert(PQsendQuery(waiter, "SELECT 'served'"));
	if (!wc->want) {
		struct pollfd pfd = { .fd = PQsocket(waiter), .events = POLLIN };
		ck_assert_msg(poll(&pfd, 1, 1200) == 0, "the waiter was answered");
		free(harness_query_text(holder, "COMMIT"));
	} else {
		long waited = harness_wait_readable(waiter, 3000);
		ck_assert_msg(waited >= 450 && waited < 2500, "answered after %ld ms", waited);
	}
	PGresult *res = PQgetResult(waiter);
	if (wc->want) {
		ck_assert_int_eq(PQresultStatus(res), PGRES_FATAL_ERROR);
		const char *msg = PQresultErrorMessage(res);
		ck_assert_msg(strstr(msg, wc->want) != NULL, "%s", msg);
	} else {
		ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	}
	PQclear(res);
	while ((res = PQgetResult(waiter)) != NULL)
		PQclear(res);
	harness_expect_answer(holder, "SELECT 5", "5");
	PQfinish(holder);
	PQfinish(waiter);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

static Suite *client_limits_suite(void)
{
	Suite *s = suite_create("client_limits");
	TCase *tc = harness_tcase("max_client_conn");
	tcase_add_test(tc, test_max_client_conn_refuses_one_more_with_53300);
	tcase_add_test(tc, test_silent_connections_at_max_client_conn_do_not_lock_out_real_clients);
	tcase_add_test(tc, test_out_of_file_descriptors_pauses_accepting_and_drops_no_connection);
	tcase_add_loop_test(tc, test_tcp_defer_accept_takes_a_connection_when_it_speaks, 0, 2);
	suite_add_tcase(s, tc);

	tc = harness_tcase("client_connections");
	tcase_add_test(tc, test_max_db_client_connections_refuses_before_authentication_with_53300);
	tcase_add_test(tc, test_max_db_client_connections_counts_a_login_until_it_ends);
	tcase_add_test(tc, test_max_db_client_connections_per_database_overrides_global);
	tcase_add_test(tc, test_max_user_client_connections_global_and_per_user_across_databases);
	tcase_add_test(tc, test_max_user_client_connections_counts_the_forced_user_under_auth_type_any);
	tcase_add_test(tc, test_console_admin_users_are_counted_but_never_refused);
	tcase_add_test(tc, test_client_connection_limits_follow_set_and_reload);
	suite_add_tcase(s, tc);

	tc = harness_tcase("timeouts");
	tcase_add_test(tc, test_client_login_timeout_disconnects_silent_client);
	tcase_add_test(tc, test_client_login_timeout_spares_a_client_that_logs_in_in_time);
	tcase_add_test(tc, test_client_idle_timeout_closes_idle_client_only);
	tcase_add_test(tc, test_query_wait_timeout_fails_waiting_client_and_spares_holder);
	tcase_add_test(tc, test_client_idle_timeout_per_user);
	tcase_add_loop_test(tc, test_query_wait_timeout_from_users_databases_or_global, 0,
		(int)ARRAY_SIZE(wait_cases));
	suite_add_tcase(s, tc);

	tc = harness_tcase("notices");
	tcase_add_test(tc, test_query_wait_notify_tells_a_queued_client_once);
	tcase_add_test(tc, test_login_notify_message_follows_every_login);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return harness_run_suite(client_limits_suite());
}
