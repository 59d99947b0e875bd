/*
 * check_takeover.c - what an online restart is made of, seen from outside:
 * the console's SUSPEND (no accepting and no reading, buffers drained, until
 * RESUME, SIGUSR2 or the last console connection going) and SHOW FDS (every
 * socket listed with its state, each passed by SCM_RIGHTS to a unix-socket
 * console of sluice's own OS user, only while suspended).
 *
 * The fds are read here with recvmsg on a raw unix socket, not with libpq,
 * which would drop them: a test that only counted rows would not prove that
 * the sockets really arrive.
 */
#include "harness.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#define USERLIST "\"trustuser\" \"x\"\n"
#define INI "auth_type = trust\nadmin_users = trustuser\n"
#define APP_CONN "dbname=app user=trustuser"
#define ADMIN_CONN "dbname=pgbouncer user=trustuser"

static struct harness_sluice *start(const char *extra)
{
	char ini[512];
	snprintf(ini, sizeof(ini), "%s%s", INI, extra ? extra : "");
	return harness_sluice_start(ini, NULL, USERLIST);
}

static char *state_of(PGconn *console, const char *key)
{
	return harness_show_value(console, "SHOW STATE", "key", key, "value");
}

/* Whether fd has something to read (or is closed) within ms. */
static bool readable_within(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, ms) == 1;
}

#define MAX_ROWS 64

/* SHOW FDS as read with recvmsg: the rows' text values and the descriptors that came. */
struct fds_result {
	int nrows;
	char *val[MAX_ROWS][15]; /* NULL for SQL NULL */
	int fds[MAX_ROWS];
	int nfds;
	int ncols;
	char col[15][32];
};

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Runs SHOW FDS on a raw console, receiving every descriptor that comes along. */
static void raw_show_fds(int fd, struct fds_result *r)
{
	memset(r, 0, sizeof(*r));
	harness_raw_query(fd, "SHOW FDS");
	size_t cap = 1 << 16, len = 0;
	uint8_t *data = xmalloc(cap);
	/* Read until the ReadyForQuery that ends the answer is in. */
	for (;;) {
		size_t at = 0;
		bool done = false;
		while (len - at >= 5) {
			uint32_t l = be32(data + at + 1);
			if (len - at < 1 + (size_t)l)
				break;
			if (data[at] == 'Z')
				done = true;
			at += 1 + l;
		}
		if (done)
			break;
		ck_assert_msg(len < cap, "SHOW FDS: answer too long");
		union {
			struct cmsghdr align;
			uint8_t space[CMSG_SPACE(sizeof(int) * MAX_ROWS)];
		} control;
		struct iovec iov = { .iov_base = data + len, .iov_len = cap - len };
		struct msghdr msg = { .msg_iov = &iov,
			.msg_iovlen = 1,
			.msg_control = control.space,
			.msg_controllen = sizeof(control.space) };
		ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
		ck_assert_msg(n > 0, "SHOW FDS: recvmsg: %s", n == 0 ? "EOF" : strerror(errno));
		ck_assert_msg(!(msg.msg_flags & MSG_CTRUNC), "SHOW FDS: descriptors were cut off");
		len += (size_t)n;
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
				continue;
			int k = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			for (int i = 0; i < k && r->nfds < MAX_ROWS; i++)
				memcpy(&r->fds[r->nfds++], CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
		}
	}
	/* Parse: RowDescription, DataRows, CommandComplete, ReadyForQuery. */
	for (size_t at = 0; at < len;) {
		char type = (char)data[at];
		uint32_t l = be32(data + at + 1);
		const uint8_t *b = data + at + 5;
		ck_assert_msg(type != 'E', "SHOW FDS: %s", (const char *)b);
		if (type == 'T') {
			r->ncols = b[0] << 8 | b[1];
			const uint8_t *p = b + 2;
			for (int i = 0; i < r->ncols && i < 15; i++) {
				snprintf(r->col[i], sizeof(r->col[i]), "%s", (const char *)p);
				p += strlen((const char *)p) + 1 + 18;
			}
		} else if (type == 'D') {
			ck_assert_int_lt(r->nrows, MAX_ROWS);
			int n = b[0] << 8 | b[1];
			const uint8_t *p = b + 2;
			for (int i = 0; i < n && i < 15; i++) {
				uint32_t vl = be32(p);
				p += 4;
				if (vl == 0xffffffffu)
					continue;
				r->val[r->nrows][i] = xmalloc(vl + 1);
				memcpy(r->val[r->nrows][i], p, vl);
				r->val[r->nrows][i][vl] = '\0';
				p += vl;
			}
			r->nrows++;
		}
		at += 1 + l;
	}
	free(data);
}

static void fds_result_free(struct fds_result *r)
{
	for (int i = 0; i < r->nrows; i++)
		for (int j = 0; j < 15; j++)
			free(r->val[i][j]);
	for (int i = 0; i < r->nfds; i++)
		close(r->fds[i]);
}

/* The port of an address of a socket (local or peer). */
static int port_of(int fd, bool peer)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int rc = peer ? getpeername(fd, (struct sockaddr *)&ss, &sl)
		      : getsockname(fd, (struct sockaddr *)&ss, &sl);
	ck_assert_msg(rc == 0, "getsockname: %s", strerror(errno));
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return -1;
}

/* ---- SUSPEND ------------------------------------------------------------------------- */

START_TEST(test_suspend_stops_accepting_and_reading_until_resume)
{
	struct harness_sluice *s = start("pool_mode = transaction\n");
	PGconn *app = harness_connect(s, APP_CONN);
	harness_expect_answer(app, "SELECT 1", "1");
	PGconn *console = harness_connect(s, ADMIN_CONN);
	harness_command_ok(console, "SUSPEND", "SUSPEND");
	char *v = state_of(console, "suspended");
	ck_assert_str_eq(v, "yes");
	free(v);
	v = state_of(console, "active");
	ck_assert_str_eq(v, "no");
	free(v);

	/* A query is not read, a new connection is not accepted (it waits in the backlog). */
	ck_assert(PQsendQuery(app, "SELECT 42"));
	ck_assert(!readable_within(PQsocket(app), 500));
	int raw = harness_raw_connect(s->port);
	harness_raw_send_startup(raw, "trustuser", "app");
	ck_assert(!readable_within(raw, 300));

	/* PgBouncer's refusals while suspended. */
	char *e = harness_query_error(console, "SUSPEND");
	ck_assert_str_eq(e, "08P01 already suspended/paused");
	free(e);
	e = harness_query_error(console, "PAUSE");
	ck_assert_str_eq(e, "08P01 already suspended/paused");
	free(e);

	harness_command_ok(console, "RESUME", "RESUME");
	ck_assert(harness_wait_not_busy(app, 5000));
	PGresult *res = PQgetResult(app);
	ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	ck_assert_str_eq(PQgetvalue(res, 0, 0), "42");
	PQclear(res);
	ck_assert(PQgetResult(app) == NULL);
	/* The waiting connection is accepted and logs in. */
	struct harness_msg m;
	ck_assert(harness_raw_read_msg(raw, &m));
	ck_assert_msg(m.type == 'R', "got %c", m.type);
	free(m.body);
	close(raw);
	v = state_of(console, "suspended");
	ck_assert_str_eq(v, "no");
	free(v);
	harness_expect_answer(app, "SELECT 2", "2");
	PQfinish(app);
	PQfinish(console);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_suspend_ends_when_the_last_console_goes)
{
	struct harness_sluice *s = start(NULL);
	PGconn *app = harness_connect(s, APP_CONN);
	PGconn *console = harness_connect(s, ADMIN_CONN);
	harness_command_ok(console, "SUSPEND", "SUSPEND");
	ck_assert(PQsendQuery(app, "SELECT 7"));
	ck_assert(!readable_within(PQsocket(app), 300));
	PQfinish(console);
	ck_assert(harness_sluice_log_wait(s, "admin disappeared when suspended, doing RESUME",
		5000));
	ck_assert(harness_wait_not_busy(app, 5000));
	PGresult *res = PQgetResult(app);
	ck_assert_str_eq(PQgetvalue(res, 0, 0), "7");
	PQclear(res);
	ck_assert(PQgetResult(app) == NULL);
	PQfinish(app);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_sigusr2_resumes_a_suspend)
{
	struct harness_sluice *s = start(NULL);
	PGconn *app = harness_connect(s, APP_CONN);
	PGconn *console = harness_connect(s, ADMIN_CONN);
	harness_command_ok(console, "SUSPEND", "SUSPEND");
	ck_assert(PQsendQuery(app, "SELECT 8"));
	ck_assert(!readable_within(PQsocket(app), 300));
	harness_sluice_signal(s, SIGUSR2);
	ck_assert(harness_wait_not_busy(app, 5000));
	PGresult *res = PQgetResult(app);
	ck_assert_str_eq(PQgetvalue(res, 0, 0), "8");
	PQclear(res);
	ck_assert(PQgetResult(app) == NULL);
	char *v = state_of(console, "suspended");
	ck_assert_str_eq(v, "no");
	free(v);
	PQfinish(app);
	PQfinish(console);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_suspend_refused_with_a_paused_database)
{
	struct harness_sluice *s = start(NULL);
	PGconn *console = harness_connect(s, ADMIN_CONN);
	harness_command_ok(console, "PAUSE app", "PAUSE");
	char *e = harness_query_error(console, "SUSPEND");
	ck_assert_str_eq(e, "08P01 cannot suspend with paused databases");
	free(e);
	harness_command_ok(console, "RESUME app", "RESUME");
	PQfinish(console);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_suspend_timeout_closes_a_client_that_does_not_read)
{
	struct harness_sluice *s = start("pool_mode = transaction\nsuspend_timeout = 1\n");
	PGconn *slow = harness_connect(s, APP_CONN);
	PGconn *app = harness_connect(s, APP_CONN);
	harness_expect_answer(app, "SELECT 1", "1");
	/* A result far larger than the buffers on the way, which the client does not read. */
	ck_assert(PQsendQuery(slow, "SELECT repeat('x', 100000) FROM generate_series(1, 500)"));
	harness_sleep_ms(500);
	PGconn *console = harness_connect(s, ADMIN_CONN);
	long t0 = harness_now_ms();
	harness_command_ok(console, "SUSPEND", "SUSPEND");
	long took = harness_now_ms() - t0;
	ck_assert_msg(took >= 700, "SUSPEND answered after %ld ms, before suspend_timeout", took);
	ck_assert(harness_sluice_log_wait(s, "suspend_timeout", 1000));
	harness_command_ok(console, "RESUME", "RESUME");
	/* The other client was not touched. */
	harness_expect_answer(app, "SELECT 2", "2");
	PQfinish(slow);
	PQfinish(app);
	PQfinish(console);
	harness_sluice_stop_ok(s);
}
END_TEST

/* ---- SHOW FDS ------------------------------------------------------------------------ */

static int find_fds_row(const struct fds_result *r, const char *task)
{
	for (int i = 0; i < r->nrows; i++)
		if (r->val[i][1] && strcmp(r->val[i][1], task) == 0)
			return i;
	return -1;
}

START_TEST(test_show_fds_passes_every_socket_to_a_unix_console)
{
	struct harness_sluice *s = start("pool_mode = session\n");
	PGconn *app = harness_connect(s, APP_CONN);
	harness_expect_answer(app, "SELECT 1", "1");
	int app_port = port_of(PQsocket(app), false);

	int console = harness_raw_console(s, "trustuser");
	harness_raw_command(console, "SUSPEND", "SUSPEND");
	struct fds_result r;
	raw_show_fds(console, &r);
	static const char *const cols[] = { "fd", "task", "user", "database", "addr", "port",
		"cancel", "link", "client_encoding", "std_strings", "datestyle", "timezone",
		"password", "scram_client_key", "scram_server_key" };
	ck_assert_int_eq(r.ncols, 15);
	for (int i = 0; i < 15; i++)
		ck_assert_str_eq(r.col[i], cols[i]);
	/* Two listeners (TCP and unix), the client and its server; every row brought its fd. */
	ck_assert_int_eq(r.nrows, 4);
	ck_assert_int_eq(r.nfds, r.nrows);
	for (int i = 0; i < r.nfds; i++) {
		int type = 0;
		socklen_t tl = sizeof(type);
		ck_assert_int_eq(getsockopt(r.fds[i], SOL_SOCKET, SO_TYPE, &type, &tl), 0);
		ck_assert_int_eq(type, SOCK_STREAM);
	}
	int cl = find_fds_row(&r, "client");
	ck_assert_int_ge(cl, 0);
	ck_assert_str_eq(r.val[cl][2], "trustuser");
	ck_assert_str_eq(r.val[cl][3], "app");
	char port[16];
	snprintf(port, sizeof(port), "%d", app_port);
	ck_assert_str_eq(r.val[cl][5], port);
	ck_assert_str_eq(r.val[cl][8], "UTF8");
	ck_assert(r.val[cl][7] && strcmp(r.val[cl][7], "0") != 0); /* linked to its server */
	/* The descriptor received is the client's socket: its peer is our libpq connection. */
	ck_assert_int_eq(port_of(r.fds[cl], true), app_port);
	ck_assert_int_eq(port_of(r.fds[cl], false), s->port);
	int sv = find_fds_row(&r, "server");
	ck_assert_int_ge(sv, 0);
	ck_assert_str_eq(r.val[sv][3], "app");
	ck_assert_str_eq(r.val[sv][7], r.val[cl][0]); /* the server's link is the client */
	ck_assert_str_eq(r.val[cl][7], r.val[sv][0]);
	int pooler = find_fds_row(&r, "pooler");
	ck_assert_int_ge(pooler, 0);
	fds_result_free(&r);

	harness_raw_command(console, "RESUME", "RESUME");
	harness_expect_answer(app, "SELECT 2", "2");
	close(console);
	PQfinish(app);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_show_fds_over_tcp_lists_without_passing)
{
	struct harness_sluice *s = start("pool_mode = transaction\n");
	PGconn *app = harness_connect(s, APP_CONN);
	harness_expect_answer(app, "SELECT 1", "1");
	PGconn *console = harness_connect(s, ADMIN_CONN);
	harness_command_ok(console, "SUSPEND", "SUSPEND");
	PGresult *res = PQexec(console, "SHOW FDS");
	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
	/* Two listeners, the client, its (idle) server. */
	ck_assert_int_eq(PQntuples(res), 4);
	int task = PQfnumber(res, "task");
	int clients = 0, servers = 0;
	for (int i = 0; i < PQntuples(res); i++) {
		clients += strcmp(PQgetvalue(res, i, task), "client") == 0;
		servers += strcmp(PQgetvalue(res, i, task), "server") == 0;
	}
	ck_assert_int_eq(clients, 1);
	ck_assert_int_eq(servers, 1);
	PQclear(res);
	harness_command_ok(console, "RESUME", "RESUME");
	harness_expect_answer(app, "SELECT 2", "2");
	PQfinish(console);
	PQfinish(app);
	harness_sluice_stop_ok(s);
}
END_TEST

static Suite *takeover_suite(void)
{
	Suite *suite = suite_create("takeover");
	TCase *tc = harness_tcase("suspend");
	tcase_add_test(tc, test_suspend_stops_accepting_and_reading_until_resume);
	tcase_add_test(tc, test_suspend_ends_when_the_last_console_goes);
	tcase_add_test(tc, test_sigusr2_resumes_a_suspend);
	tcase_add_test(tc, test_suspend_refused_with_a_paused_database);
	tcase_add_test(tc, test_suspend_timeout_closes_a_client_that_does_not_read);
	suite_add_tcase(suite, tc);
	tc = harness_tcase("show_fds");
	tcase_add_test(tc, test_show_fds_passes_every_socket_to_a_unix_console);
	tcase_add_test(tc, test_show_fds_over_tcp_lists_without_passing);
	suite_add_tcase(suite, tc);
	return suite;
}

int main(void)
{
	return harness_run_suite(takeover_suite());
}
