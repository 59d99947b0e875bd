/*
 * check_systemd.c - sluice under a service manager, without one: what a
 * Type=notify unit hears (READY=1 once the port accepts, RELOADING=1 with
 * MONOTONIC_USEC then READY=1 around SIGHUP and the console's RELOAD,
 * STOPPING=1 at SIGTERM and SHUTDOWN, STATUS= lines), read from an
 * AF_UNIX datagram socket the test binds and names in NOTIFY_SOCKET; and
 * socket activation: listening sockets the test opens (TCP and unix) are
 * passed as descriptors 3.. with LISTEN_FDS and LISTEN_PID, clients are
 * served through them, the ini's listen_port is left alone, a shutdown
 * closes TCP and keeps the unix socket for the console, and the socket
 * file the test made is not removed.
 *
 * When sluice was built without libsystemd (-Dsystemd=disabled, or no
 * libsystemd-dev), those tests are skipped with a message and the suite
 * proves the fallback instead: --version says so, and NOTIFY_SOCKET and
 * LISTEN_FDS are warned about while sluice serves as configured.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sluice_version.h"

#define USERLIST "\"md5user\" \"md5userpw\"\n"
#define INI "auth_type = md5\nadmin_users = md5user\npool_mode = session\n"
#define APP_CONN "dbname=app user=md5user password=md5userpw"
#define ADMIN_CONN "dbname=pgbouncer user=md5user password=md5userpw"
/* How long a notification may take to arrive; the status line comes every 2 s. */
#define NOTIFY_WAIT_MS 5000

/* ---- a service manager's notify socket --------------------------------------------- */

/* An AF_UNIX datagram socket bound at path, as systemd's NOTIFY_SOCKET. */
struct notify {
	int fd;
	char *path;
	char *env; /* "NOTIFY_SOCKET=<path>" */
	char *seen; /* every message read so far, for failure messages */
};

static struct notify notify_open(void)
{
	struct notify n = { .fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0) };
	ck_assert_int_ge(n.fd, 0);
	n.path = xasprintf("%s/notify.%d", harness_pg()->dir, (int)getpid());
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	ck_assert_uint_lt(strlen(n.path), sizeof(sa.sun_path));
	strcpy(sa.sun_path, n.path);
	unlink(n.path);
	ck_assert_msg(bind(n.fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "bind %s: %s", n.path,
		strerror(errno));
	n.env = xasprintf("NOTIFY_SOCKET=%s", n.path);
	n.seen = xstrdup("");
	return n;
}

static void notify_close(struct notify *n)
{
	close(n->fd);
	unlink(n->path);
	free(n->path);
	free(n->env);
	free(n->seen);
}

/* The next message (heap), or NULL when none comes within timeout_ms. */
static char *notify_read(struct notify *n, long timeout_ms)
{
	struct pollfd p = { .fd = n->fd, .events = POLLIN };
	if (poll(&p, 1, (int)timeout_ms) <= 0)
		return NULL;
	char buf[4096];
	ssize_t got = recv(n->fd, buf, sizeof(buf) - 1, 0);
	ck_assert_int_ge(got, 0);
	buf[got] = '\0';
	char *all = xasprintf("%s[%s]\n", n->seen, buf);
	free(n->seen);
	n->seen = all;
	return xstrdup(buf);
}

/*
 * The next message that is not a status line (heap); fails the test when
 * none comes in time.
 */
static char *notify_next_state(struct notify *n)
{
	long deadline = harness_now_ms() + NOTIFY_WAIT_MS;
	for (;;) {
		long left = deadline - harness_now_ms();
		char *m = left > 0 ? notify_read(n, left) : NULL;
		ck_assert_msg(m != NULL, "no notification within %d ms; seen:\n%s", NOTIFY_WAIT_MS,
			n->seen);
		if (strncmp(m, "STATUS=", 7) != 0)
			return m;
		free(m);
	}
}

/* Reads until a message contains needle and returns it (heap); fails the test otherwise. */
static char *notify_wait_for(struct notify *n, const char *needle)
{
	long deadline = harness_now_ms() + NOTIFY_WAIT_MS;
	for (;;) {
		long left = deadline - harness_now_ms();
		char *m = left > 0 ? notify_read(n, left) : NULL;
		ck_assert_msg(m != NULL, "no notification with '%s' within %d ms; seen:\n%s", needle,
			NOTIFY_WAIT_MS, n->seen);
		if (strstr(m, needle))
			return m;
		free(m);
	}
}

static void expect_state(struct notify *n, const char *want)
{
	char *m = notify_next_state(n);
	ck_assert_msg(strcmp(m, want) == 0, "expected %s, got %s; seen:\n%s", want, m, n->seen);
	free(m);
}

static struct harness_sluice *start_notified(struct notify *n, const char *extra)
{
	const char *env[] = { n->env, NULL };
	struct harness_spawn spawn = { .env = env };
	char *ini = xasprintf("%s%s", INI, extra ? extra : "");
	struct harness_sluice *s = harness_sluice_start_with(ini, NULL, USERLIST, &spawn);
	free(ini);
	return s;
}

static uint64_t monotonic_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* The reload notification: RELOADING=1 and a MONOTONIC_USEC between before and now. */
static void expect_reloading(struct notify *n, uint64_t before)
{
	char *m = notify_next_state(n);
	unsigned long long usec = 0;
	ck_assert_msg(sscanf(m, "RELOADING=1\nMONOTONIC_USEC=%llu", &usec) == 1,
		"expected RELOADING=1 with MONOTONIC_USEC, got %s", m);
	uint64_t after = monotonic_usec();
	ck_assert_msg(usec >= before && usec <= after,
		"MONOTONIC_USEC=%llu is not between %llu and %llu (CLOCK_MONOTONIC)", usec,
		(unsigned long long)before, (unsigned long long)after);
	free(m);
}

/* Whether the test is to be skipped (main() says why, once). */
static bool skip_without_systemd(void)
{
	return !SLUICE_WITH_SYSTEMD;
}

/* ---- notifications -------------------------------------------------------------------- */

/* The first word is READY=1, once the port accepts; a status line follows. */
START_TEST(test_ready_once_listening_then_status)
{
	if (skip_without_systemd())
		return;
	struct notify n = notify_open();
	struct harness_sluice *s = start_notified(&n, NULL);
	char *m = notify_read(&n, NOTIFY_WAIT_MS);
	ck_assert_msg(m && strcmp(m, "READY=1") == 0, "first notification: %s", m ? m : "none");
	free(m);
	/* READY=1 means serving: a client gets in at once. */
	PGconn *c = harness_connect(s, APP_CONN);
	harness_expect_answer(c, "SELECT 1", "1");
	m = notify_wait_for(&n, "STATUS=");
	ck_assert_msg(strstr(m, "clients: ") && strstr(m, "servers: ") && strstr(m, "xacts/s"),
		"%s", m);
	ck_assert_msg(!strchr(m, '\n'), "a status line of more than one line: %s", m);
	free(m);
	PQfinish(c);
	harness_sluice_stop_ok(s);
	notify_close(&n);
}
END_TEST

/*
 * The console's RESTART: the successor (started by sluice, so within the
 * unit) says MAINPID=<its pid> with its READY=1, and the old process, which
 * exits once its clients have moved, never says STOPPING=1: systemd follows
 * the service to its new main process instead of seeing it stop.
 */
START_TEST(test_restart_tells_the_new_main_pid)
{
	if (skip_without_systemd())
		return;
	harness_subreaper();
	struct notify n = notify_open();
	struct harness_sluice *s =
		start_notified(&n, "pool_mode = transaction\npidfile = @DIR@/sluice.pid\n");
	expect_state(&n, "READY=1");
	PGconn *c = harness_connect(s, APP_CONN);
	harness_expect_answer(c, "SELECT 1", "1");
	PGconn *console = harness_connect(s, ADMIN_CONN);
	harness_command_ok(console, "RESTART", "RESTART");
	PQfinish(console);
	ck_assert_int_eq(harness_sluice_follow_restart(s, 10000), 0);
	char *want = xasprintf("MAINPID=%d", (int)s->pid);
	char *m = notify_wait_for(&n, "MAINPID=");
	ck_assert_msg(strcmp(m, want) == 0, "expected %s, got %s; seen:\n%s", want, m, n.seen);
	free(m);
	free(want);
	expect_state(&n, "READY=1");
	ck_assert_msg(!strstr(n.seen, "STOPPING=1"), "the old process said STOPPING=1:\n%s",
		n.seen);
	harness_expect_answer(c, "SELECT 2", "2");
	PQfinish(c);
	harness_sluice_stop_ok(s);
	notify_close(&n);
}
END_TEST

/* SIGHUP: RELOADING=1 with MONOTONIC_USEC (Type=notify-reload), then READY=1. */
START_TEST(test_sighup_reloading_with_monotonic_usec_then_ready)
{
	if (skip_without_systemd())
		return;
	struct notify n = notify_open();
	struct harness_sluice *s = start_notified(&n, NULL);
	expect_state(&n, "READY=1");
	for (int round = 0; round < 2; round++) {
		uint64_t before = monotonic_usec();
		harness_sluice_signal(s, SIGHUP);
		expect_reloading(&n, before);
		expect_state(&n, "READY=1");
	}
	ck_assert_int_eq(harness_sluice_log_count(s, "configuration reloaded"), 2);
	harness_sluice_stop_ok(s);
	notify_close(&n);
}
END_TEST

/* A reload that fails keeps the old configuration, and READY=1 still ends it. */
START_TEST(test_failed_reload_still_ends_with_ready)
{
	if (skip_without_systemd())
		return;
	struct notify n = notify_open();
	struct harness_sluice *s = start_notified(&n, NULL);
	expect_state(&n, "READY=1");
	harness_sluice_edit_ini(s, "pool_mode = session\n", "pool_mode = sometimes\n");
	uint64_t before = monotonic_usec();
	harness_sluice_signal(s, SIGHUP);
	expect_reloading(&n, before);
	expect_state(&n, "READY=1");
	ck_assert(harness_sluice_log_wait(s, "reload failed", 5000));
	PGconn *c = harness_connect(s, APP_CONN);
	harness_expect_answer(c, "SELECT 1", "1");
	PQfinish(c);
	harness_sluice_stop_ok(s);
	notify_close(&n);
}
END_TEST

/* The console's RELOAD is a reload like SIGHUP's. */
START_TEST(test_console_reload_reloading_then_ready)
{
	if (skip_without_systemd())
		return;
	struct notify n = notify_open();
	struct harness_sluice *s = start_notified(&n, NULL);
	expect_state(&n, "READY=1");
	PGconn *admin = harness_connect(s, ADMIN_CONN);
	uint64_t before = monotonic_usec();
	PGresult *r = PQexec(admin, "RELOAD");
	ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s", PQerrorMessage(admin));
	PQclear(r);
	expect_reloading(&n, before);
	expect_state(&n, "READY=1");
	PQfinish(admin);
	harness_sluice_stop_ok(s);
	notify_close(&n);
}
END_TEST

/* SIGTERM: STOPPING=1 when the shutdown begins, while a client still holds it open. */
START_TEST(test_sigterm_stopping_when_the_shutdown_begins)
{
	if (skip_without_systemd())
		return;
	struct notify n = notify_open();
	struct harness_sluice *s = start_notified(&n, NULL);
	expect_state(&n, "READY=1");
	PGconn *c = harness_connect(s, APP_CONN);
	harness_expect_answer(c, "SELECT 1", "1");
	harness_sluice_signal(s, SIGTERM);
	expect_state(&n, "STOPPING=1");
	/* Still serving the client it has; the status line says what it waits for. */
	ck_assert_int_eq(harness_sluice_wait(s, 200), -1);
	harness_expect_answer(c, "SELECT 1", "1");
	char *m = notify_wait_for(&n, "STATUS=shutting down, waiting for clients; clients: 1");
	free(m);
	/* The second SIGTERM exits now, and says nothing more: the shutdown had begun. */
	harness_sluice_signal(s, SIGTERM);
	ck_assert_int_eq(harness_sluice_wait(s, 5000), 0);
	while ((m = notify_read(&n, 100)) != NULL) {
		ck_assert_msg(strncmp(m, "STATUS=", 7) == 0, "after STOPPING=1: %s", m);
		free(m);
	}
	PQfinish(c);
	harness_sluice_free(s);
	notify_close(&n);
}
END_TEST

/* The console's SHUTDOWN variants and SIGINT all begin a shutdown: STOPPING=1. */
static const char *const shutdown_verbs[] = { "SHUTDOWN", "SHUTDOWN WAIT_FOR_CLIENTS",
	"SHUTDOWN WAIT_FOR_SERVERS", "SIGINT" };

START_TEST(test_console_shutdown_and_sigint_stopping)
{
	if (skip_without_systemd())
		return;
	const char *verb = shutdown_verbs[_i];
	struct notify n = notify_open();
	struct harness_sluice *s = start_notified(&n, NULL);
	expect_state(&n, "READY=1");
	if (strcmp(verb, "SIGINT") == 0) {
		harness_sluice_signal(s, SIGINT);
	} else {
		PGconn *admin = harness_connect(s, ADMIN_CONN);
		PGresult *r = PQexec(admin, verb);
		PQclear(r);
		PQfinish(admin);
	}
	expect_state(&n, "STOPPING=1");
	ck_assert_int_eq(harness_sluice_wait(s, 5000), 0);
	harness_sluice_free(s);
	notify_close(&n);
}
END_TEST

/*
 * The status line follows the pooler: a client holding a server in session
 * mode shows as one client and one active server, and transactions show as a
 * rate.
 */
START_TEST(test_status_line_counts_clients_servers_and_transactions)
{
	if (skip_without_systemd())
		return;
	struct notify n = notify_open();
	struct harness_sluice *s = start_notified(&n, NULL);
	expect_state(&n, "READY=1");
	char *m = notify_wait_for(&n, "STATUS=clients: 0 (0 waiting), servers: 0 (0 active, 0 idle)");
	free(m);
	PGconn *c = harness_connect(s, APP_CONN);
	harness_expect_answer(c, "SELECT 1", "1");
	m = notify_wait_for(&n, "clients: 1 (0 waiting), servers: 1 (1 active, 0 idle)");
	free(m);
	/* Transactions for a little longer than a status period. */
	long end = harness_now_ms() + 2500;
	while (harness_now_ms() < end)
		harness_expect_answer(c, "SELECT 1", "1");
	long deadline = harness_now_ms() + NOTIFY_WAIT_MS;
	bool rate = false;
	while (!rate && harness_now_ms() < deadline) {
		m = notify_wait_for(&n, "xacts/s");
		unsigned long long xacts = 0;
		const char *p = strstr(m, "active, ");
		ck_assert_ptr_nonnull(p);
		p = strchr(p, ')');
		rate = p && sscanf(p, "), %llu xacts/s", &xacts) == 1 && xacts > 0;
		free(m);
	}
	ck_assert_msg(rate, "no status line with transactions per second; seen:\n%s", n.seen);
	PQfinish(c);
	harness_sluice_stop_ok(s);
	notify_close(&n);
}
END_TEST

/* ---- socket activation ---------------------------------------------------------------- */

/* A listening TCP socket on 127.0.0.1 and a port the kernel picks; its port in *port. */
static int tcp_listener(int *port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(fd, 64), 0);
	socklen_t len = sizeof(sa);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

/* A unix socket of type in a new directory (heap, *dir), named as libpq looks for port. */
static int unix_socket(int type, bool do_listen, int port, char **dir)
{
	*dir = xasprintf("%s/passed.XXXXXX", harness_pg()->dir);
	ck_assert_ptr_nonnull(mkdtemp(*dir));
	chmod(*dir, 0755);
	int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/.s.PGSQL.%d", *dir, port);
	ck_assert_int_lt(n, (int)sizeof(sa.sun_path));
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	chmod(sa.sun_path, 0777);
	if (do_listen)
		ck_assert_int_eq(listen(fd, 64), 0);
	return fd;
}

/* Whether a TCP connection to 127.0.0.1:port is refused (nothing listens there). */
static bool tcp_refused(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bool refused = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno == ECONNREFUSED;
	close(fd);
	return refused;
}

struct passed {
	int tcp_fd, unix_fd;
	int port; /* of both: TCP, and the unix socket's name */
	char *dir; /* of the unix socket */
	char *sock; /* its path */
	char *tcp_conn, *unix_conn, *unix_admin; /* conninfo through each */
};

static struct passed passed_open(void)
{
	struct passed p;
	p.tcp_fd = tcp_listener(&p.port);
	p.unix_fd = unix_socket(SOCK_STREAM, true, p.port, &p.dir);
	p.sock = xasprintf("%s/.s.PGSQL.%d", p.dir, p.port);
	p.tcp_conn = xasprintf("port=%d " APP_CONN, p.port);
	p.unix_conn = xasprintf("host=%s port=%d " APP_CONN, p.dir, p.port);
	p.unix_admin = xasprintf("host=%s port=%d " ADMIN_CONN, p.dir, p.port);
	return p;
}

static void passed_close_fds(struct passed *p)
{
	if (p->tcp_fd >= 0)
		close(p->tcp_fd);
	if (p->unix_fd >= 0)
		close(p->unix_fd);
	p->tcp_fd = p->unix_fd = -1;
}

static void passed_free(struct passed *p)
{
	passed_close_fds(p);
	unlink(p->sock);
	rmdir(p->dir);
	free(p->dir);
	free(p->sock);
	free(p->tcp_conn);
	free(p->unix_conn);
	free(p->unix_admin);
}

static struct harness_sluice *start_activated(struct passed *p, const char *extra)
{
	int fds[] = { p->tcp_fd, p->unix_fd };
	struct harness_spawn spawn = { .listen_fds = fds, .n_listen_fds = 2 };
	char *ini = xasprintf("%s%s", INI, extra ? extra : "");
	struct harness_sluice *s = harness_sluice_start_with(ini, NULL, USERLIST, &spawn);
	free(ini);
	return s;
}

/*
 * Clients get in through both passed sockets; the ini's listen_addr (*, every
 * address) and unix_socket_dir are ignored with a warning, so nothing listens
 * on its listen_port.
 */
START_TEST(test_passed_tcp_and_unix_sockets_serve_and_the_ini_port_stays_unbound)
{
	if (skip_without_systemd())
		return;
	struct passed p = passed_open();
	struct harness_sluice *s = start_activated(&p, "listen_addr = *\n");
	PGconn *tcp = harness_connect(s, p.tcp_conn);
	harness_expect_answer(tcp, "SELECT count(*) FROM items", "3");
	PGconn *unx = harness_connect(s, p.unix_conn);
	harness_expect_answer(unx, "SELECT count(*) FROM items", "3");
	/* The console answers on the passed unix socket too. */
	PGconn *admin = harness_connect(s, p.unix_admin);
	char *v = harness_query_text(admin, "SHOW VERSION");
	ck_assert_ptr_nonnull(v);
	free(v);
	PQfinish(admin);

	ck_assert_msg(tcp_refused(s->port), "something listens on the ini's port %d", s->port);
	char *own = xasprintf("%s/.s.PGSQL.%d", s->dir, s->port);
	ck_assert_msg(access(own, F_OK) != 0, "%s exists: unix_socket_dir was used", own);
	free(own);
	ck_assert_int_eq(harness_sluice_log_count(s, "listen_addr = * is ignored"), 1);
	char *dirwarn = xasprintf("unix_socket_dir = %s is ignored", s->dir);
	ck_assert_int_eq(harness_sluice_log_count(s, dirwarn), 1);
	free(dirwarn);
	char *unixline = xasprintf("listening on %s (fd 4, passed by the service manager)", p.sock);
	ck_assert_int_eq(harness_sluice_log_count(s, unixline), 1);
	free(unixline);

	PQfinish(tcp);
	PQfinish(unx);
	harness_sluice_stop_ok(s);
	/* sluice did not make the socket file, so it leaves it. */
	ck_assert_msg(access(p.sock, F_OK) == 0, "%s was removed", p.sock);
	passed_free(&p);
}
END_TEST

/*
 * While a shutdown waits, as with sluice's own sockets: the passed TCP
 * socket is closed (with the test's copy closed too, a connection is
 * refused), the passed unix socket still takes console logins and turns
 * others away; at exit its file stays.
 */
START_TEST(test_shutdown_closes_passed_tcp_and_keeps_passed_unix_for_the_console)
{
	if (skip_without_systemd())
		return;
	struct passed p = passed_open();
	struct harness_sluice *s = start_activated(&p, NULL);
	/* As if the service manager had let go: only sluice's copies are left. */
	passed_close_fds(&p);
	PGconn *app = harness_connect(s, p.tcp_conn);
	harness_expect_answer(app, "SELECT 1", "1");
	harness_sluice_signal(s, SIGTERM);
	ck_assert(harness_sluice_log_wait(s, "SIGTERM", 5000));
	long deadline = harness_now_ms() + 5000;
	while (!tcp_refused(p.port) && harness_now_ms() < deadline)
		harness_sleep_ms(20);
	ck_assert_msg(tcp_refused(p.port), "the passed TCP socket still listens during shutdown");

	char *err = harness_connect_error(s, p.unix_conn);
	ck_assert_msg(strstr(err, "pooler is shutting down"), "%s", err);
	free(err);
	PGconn *console = harness_connect(s, p.unix_admin);
	char *v = harness_query_text(console, "SHOW VERSION");
	ck_assert_ptr_nonnull(v);
	free(v);
	PQfinish(console);

	harness_expect_answer(app, "SELECT 1", "1");
	PQfinish(app);
	ck_assert_int_eq(harness_sluice_wait(s, 5000), 0);
	ck_assert_msg(access(p.sock, F_OK) == 0, "%s was removed", p.sock);
	harness_sluice_free(s);
	passed_free(&p);
}
END_TEST

/*
 * Runs sluice (not under SLUICE_WRAPPER) with fd passed as descriptor 3 and
 * a minimal ini; returns its exit status (-1: did not exit in 10 s) and its
 * output in *out (heap).
 */
static int run_with_passed_fd(int fd, char **out)
{
	char *dir = xasprintf("%s/run.XXXXXX", harness_pg()->dir);
	ck_assert_ptr_nonnull(mkdtemp(dir));
	char *ini = xasprintf("%s/sluice.ini", dir);
	char *log = xasprintf("%s/sluice.log", dir);
	FILE *f = fopen(ini, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "[sluice]\nlisten_port = %d\nunix_socket_dir = %s\nlogfile =\n"
		   "[databases]\napp = host=127.0.0.1 dbname=app\n",
		harness_free_port(), dir);
	ck_assert_int_eq(fclose(f), 0);
	pid_t parent = getpid();
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(125);
		int o = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (o < 0 || dup2(o, 1) < 0 || dup2(o, 2) < 0 || dup2(fd, 3) < 0)
			_exit(126);
		char pidtext[16];
		snprintf(pidtext, sizeof(pidtext), "%d", (int)getpid());
		setenv("LISTEN_FDS", "1", 1);
		setenv("LISTEN_PID", pidtext, 1);
		execl(getenv("SLUICE_BIN"), "sluice", ini, (char *)NULL);
		_exit(127);
	}
	int status = -1;
	for (long end = harness_now_ms() + 10000; harness_now_ms() < end; harness_sleep_ms(20)) {
		int ws;
		if (waitpid(pid, &ws, WNOHANG) == pid) {
			status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
			break;
		}
	}
	if (status == -1) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	*out = harness_read_file(log);
	unlink(ini);
	unlink(log);
	rmdir(dir);
	free(ini);
	free(log);
	free(dir);
	return status;
}

/* What a socket unit could pass by mistake: start-up fails and the log says why. */
static const struct {
	int type;
	bool do_listen;
	const char *why;
} bad_passed[] = {
	{ SOCK_STREAM, false, "not listening" },
	{ SOCK_DGRAM, false, "not a stream socket" },
};

START_TEST(test_a_passed_socket_that_cannot_listen_fails_the_start)
{
	if (skip_without_systemd())
		return;
	char *dir;
	int fd = unix_socket(bad_passed[_i].type, bad_passed[_i].do_listen, 5432, &dir);
	char *out;
	int status = run_with_passed_fd(fd, &out);
	char *want = xasprintf("socket fd 3 passed by the service manager: %s", bad_passed[_i].why);
	ck_assert_msg(status == 1 && strstr(out, want), "status %d, log:\n%s", status, out);
	free(want);
	free(out);
	close(fd);
	char *sock = xasprintf("%s/.s.PGSQL.5432", dir);
	unlink(sock);
	rmdir(dir);
	free(sock);
	free(dir);
}
END_TEST

/* ---- built without systemd --------------------------------------------------------------- */

/* --version says whether systemd support is built in. */
START_TEST(test_version_says_whether_systemd_support_is_built_in)
{
	char *argv[] = { getenv("SLUICE_BIN"), "--version", NULL };
	char *out = NULL;
	ck_assert_int_eq(harness_run_program(argv[0], argv, NULL, 10000, &out), 0);
	const char *want = SLUICE_WITH_SYSTEMD ? "systemd support: yes" : "systemd support: no";
	ck_assert_msg(strstr(out, want), "%s", out);
	free(out);
}
END_TEST

/*
 * Built without libsystemd, a service manager's variables are warned about
 * and sluice serves where its ini says.
 */
START_TEST(test_without_systemd_support_notify_and_listen_fds_are_warned_about)
{
	if (SLUICE_WITH_SYSTEMD)
		return; /* the tests above prove the real thing */
	struct notify n = notify_open();
	int fd, port;
	fd = tcp_listener(&port);
	const char *env[] = { n.env, NULL };
	int fds[] = { fd };
	/* Without support the passed socket is not used: sluice listens on the ini's port. */
	struct harness_spawn spawn = { .env = env, .listen_fds = fds, .n_listen_fds = 1 };
	struct harness_sluice *s = harness_sluice_start_with(INI, NULL, USERLIST, &spawn);
	PGconn *c = harness_connect(s, APP_CONN);
	harness_expect_answer(c, "SELECT 1", "1");
	PQfinish(c);
	ck_assert(harness_sluice_log_wait(s, "NOTIFY_SOCKET is set, but sluice was built without "
					     "systemd support",
		5000));
	ck_assert_int_eq(harness_sluice_log_count(s, "LISTEN_FDS is set, but sluice was built "
						     "without systemd support"),
		1);
	char *m = notify_read(&n, 200);
	ck_assert_msg(m == NULL, "a notification without systemd support: %s", m);
	harness_sluice_stop_ok(s);
	close(fd);
	notify_close(&n);
}
END_TEST

static Suite *systemd_suite(void)
{
	Suite *s = suite_create("systemd");
	TCase *tc = harness_tcase("notify");
	tcase_add_test(tc, test_ready_once_listening_then_status);
	tcase_add_test(tc, test_restart_tells_the_new_main_pid);
	tcase_add_test(tc, test_sighup_reloading_with_monotonic_usec_then_ready);
	tcase_add_test(tc, test_failed_reload_still_ends_with_ready);
	tcase_add_test(tc, test_console_reload_reloading_then_ready);
	tcase_add_test(tc, test_sigterm_stopping_when_the_shutdown_begins);
	tcase_add_loop_test(tc, test_console_shutdown_and_sigint_stopping, 0,
		(int)ARRAY_SIZE(shutdown_verbs));
	tcase_add_test(tc, test_status_line_counts_clients_servers_and_transactions);
	suite_add_tcase(s, tc);

	tc = harness_tcase("socket_activation");
	tcase_add_test(tc, test_passed_tcp_and_unix_sockets_serve_and_the_ini_port_stays_unbound);
	tcase_add_test(tc, test_shutdown_closes_passed_tcp_and_keeps_passed_unix_for_the_console);
	tcase_add_loop_test(tc, test_a_passed_socket_that_cannot_listen_fails_the_start, 0,
		(int)ARRAY_SIZE(bad_passed));
	suite_add_tcase(s, tc);

	tc = harness_tcase("build");
	tcase_add_test(tc, test_version_says_whether_systemd_support_is_built_in);
	tcase_add_test(tc, test_without_systemd_support_notify_and_listen_fds_are_warned_about);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	if (!SLUICE_WITH_SYSTEMD)
		fprintf(stderr, "check_systemd: sluice was built without systemd support "
				"(-Dsystemd=disabled, or libsystemd-dev missing): the notify and "
				"socket activation tests are SKIPPED; the fallback is tested\n");
	return harness_run_suite(systemd_suite());
}
