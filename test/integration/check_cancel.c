/*
 * check_cancel.c - query cancellation through sluice: libpq's PQcancel ends a
 * running query in session and transaction mode, a CancelRequest with an
 * unknown key cancels nothing, and a client's key stops working for the
 * server once the client has handed that server back to the pool.
 *
 * It does not test query_timeout (sluice's own cancels) or cancels while a
 * client waits for a server.
 */
#include "harness.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define USERLIST "\"trustuser\" \"trustuserpw\"\n"
#define CONNINFO "dbname=app user=trustuser"

/*
 * Collects the result of the query sent with PQsendQuery: its SQLSTATE
 * ("" on success) into state, and the value of the first cell if any.
 */
static void finish_query(PGconn *conn, char state[6], char *value, size_t value_len)
{
	state[0] = '\0';
	if (value_len)
		value[0] = '\0';
	PGresult *res;
	bool first = true;
	while ((res = PQgetResult(conn)) != NULL) {
		if (first) {
			if (PQresultStatus(res) == PGRES_FATAL_ERROR) {
				const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
				snprintf(state, 6, "%s", st ? st : "?????");
			} else if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0 &&
				   value_len) {
				snprintf(value, value_len, "%s", PQgetvalue(res, 0, 0));
			}
			first = false;
		}
		PQclear(res);
	}
}

static const char *const pool_modes[] = { "session", "transaction" };

START_TEST(test_pqcancel_ends_running_query_with_57014)
{
	char extra[128];
	snprintf(extra, sizeof(extra), "auth_type = trust\npool_mode = %s\n", pool_modes[_i]);
	struct harness_sluice *s = harness_sluice_start(extra, NULL, USERLIST);
	PGconn *conn = harness_connect(s, CONNINFO);
	ck_assert_int_eq(PQsendQuery(conn, "SELECT pg_sleep(10)"), 1);
	harness_wait_query_running("SELECT pg_sleep(10)");

	PGcancel *cancel = PQgetCancel(conn);
	ck_assert_ptr_nonnull(cancel);
	char errbuf[256];
	long start = harness_now_ms();
	ck_assert_msg(PQcancel(cancel, errbuf, sizeof(errbuf)) == 1, "%s", errbuf);
	PQfreeCancel(cancel);
	char state[6];
	finish_query(conn, state, NULL, 0);
	long took = harness_now_ms() - start;
	ck_assert_str_eq(state, "57014");
	ck_assert_msg(took < 1500, "cancel took %ld ms", took);

	/* The connection, and in transaction mode the server it gets, still work. */
	char *v = harness_query_text(conn, "SELECT count(*) FROM items");
	ck_assert_str_eq(v, "3");
	free(v);
	PQfinish(conn);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_cancel_request_with_unknown_key_cancels_nothing)
{
	struct harness_sluice *s = harness_sluice_start("auth_type = trust\npool_mode = session\n",
		NULL, USERLIST);
	PGconn *conn = harness_connect(s, CONNINFO);
	ck_assert_int_eq(PQsendQuery(conn, "SELECT pg_sleep(1), 42"), 1);
	harness_wait_query_running("SELECT pg_sleep(1), 42");

	/* Random keys from a fixed seed: sluice's keys are random too, so no match. */
	srandom(12345);
	for (int i = 0; i < 8; i++) {
		uint8_t req[16];
		put_be32(req, 16);
		put_be32(req + 4, 80877102);
		put_be32(req + 8, (uint32_t)random());
		put_be32(req + 12, (uint32_t)random());
		int fd = harness_raw_connect(s->port);
		ck_assert_int_eq(write(fd, req, sizeof(req)), (ssize_t)sizeof(req));
		/* sluice answers a CancelRequest by closing, never with data. */
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ck_assert_int_eq(poll(&pfd, 1, 3000), 1);
		char c;
		ck_assert_int_le(read(fd, &c, 1), 0);
		close(fd);
	}
	char state[6], value[32];
	finish_query(conn, state, value, sizeof(value));
	ck_assert_msg(state[0] == '\0', "the query failed with %s", state);
	PQfinish(conn);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_old_cancel_key_of_client_a_never_cancels_client_b)
{
	struct harness_sluice *s = harness_sluice_start("auth_type = trust\n"
							"pool_mode = transaction\n",
		"app = host=@PGHOST@ port=@PGPORT@ dbname=app pool_size=1\n", USERLIST);
	PGconn *a = harness_connect(s, CONNINFO);
	char *v = harness_query_text(a, "SELECT pg_backend_pid()");
	long pid_a = atol(v);
	free(v);
	PGcancel *cancel_a = PQgetCancel(a);
	ck_assert_ptr_nonnull(cancel_a);

	PGconn *b = harness_connect(s, CONNINFO);
	ck_assert_int_eq(PQsendQuery(b, "SELECT pg_sleep(1), pg_backend_pid()"), 1);
	harness_wait_query_running("SELECT pg_sleep(1), pg_backend_pid()");
	char errbuf[256];
	ck_assert_msg(PQcancel(cancel_a, errbuf, sizeof(errbuf)) == 1, "%s", errbuf);
	PQfreeCancel(cancel_a);
	char state[6], value[32];
	finish_query(b, state, value, sizeof(value));
	ck_assert_msg(state[0] == '\0', "A's cancel key cancelled B's query: %s", state);
	/* With pool_size=1 both ran on the same server: the key was tried where it could hurt. */
	PGresult *res = PQexec(b, "SELECT pg_backend_pid()");
	ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	ck_assert_int_eq(atol(PQgetvalue(res, 0, 0)), pid_a);
	PQclear(res);
	PQfinish(b);
	PQfinish(a);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* A raw-protocol login as trustuser: returns the socket, with the cancel key sluice gave. */
static int raw_login_with_key(const struct harness_sluice *s, uint32_t *pid, uint32_t *key)
{
	int fd = harness_raw_connect(s->port);
	harness_raw_send_startup(fd, "trustuser", "app");
	bool have_key = false;
	struct harness_msg m;
	for (;;) {
		ck_assert_msg(harness_raw_read_msg(fd, &m), "login ended early");
		char type = m.type;
		if (type == 'K' && m.len == 8) {
			*pid = get_be32((const uint8_t *)m.body);
			*key = get_be32((const uint8_t *)m.body + 4);
			have_key = true;
		}
		free(m.body);
		ck_assert_msg(type != 'E', "login failed");
		if (type == 'Z')
			break;
	}
	ck_assert(have_key);
	return fd;
}

/*
 * PgBouncer's test_cancel_race: client A's query is cancelled by a burst of
 * CancelRequests while client B waits for the only server. The first cancel
 * ends A's query and releases the server; the others are still on their way
 * to PostgreSQL, and B's query must not be what they hit.
 */
START_TEST(test_cancel_burst_for_a_never_hits_b_queued_behind_it)
{
	struct harness_sluice *s = harness_sluice_start("auth_type = trust\n"
							"pool_mode = transaction\n",
		"app = host=@PGHOST@ port=@PGPORT@ dbname=app pool_size=1\n", USERLIST);
	uint32_t pid = 0, key = 0;
	int a = raw_login_with_key(s, &pid, &key);
	static const char sql[] = "SELECT pg_sleep(5)";
	uint8_t q[64];
	q[0] = 'Q';
	put_be32(q + 1, (uint32_t)(4 + sizeof(sql)));
	memcpy(q + 5, sql, sizeof(sql));
	harness_write_all(a, q, 5 + sizeof(sql));
	harness_wait_query_running(sql);
	PGconn *b = harness_connect(s, CONNINFO);
	ck_assert_int_eq(PQsendQuery(b, "SELECT pg_sleep(0.5), 'b'"), 1);

	/* 100 CancelRequests for A, all written before any answer is read. */
	enum { BURST = 100 };
	uint8_t req[16];
	put_be32(req, 16);
	put_be32(req + 4, 80877102);
	put_be32(req + 8, pid);
	put_be32(req + 12, key);
	int fds[BURST];
	for (int i = 0; i < BURST; i++)
		fds[i] = harness_raw_connect(s->port);
	for (int i = 0; i < BURST; i++)
		harness_write_all(fds[i], req, sizeof(req));

	char *err = harness_raw_read_error(a);
	ck_assert_ptr_nonnull(err);
	ck_assert_msg(strncmp(err, "57014 ", 6) == 0, "%s", err);
	free(err);
	char state[6], value[32];
	finish_query(b, state, value, sizeof(value));
	ck_assert_msg(state[0] == '\0', "A's cancels hit B's query: %s", state);
	ck_assert_str_eq(value, "");
	for (int i = 0; i < BURST; i++)
		close(fds[i]);
	close(a);
	PQfinish(b);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

static Suite *cancel_suite(void)
{
	Suite *s = suite_create("cancel");
	TCase *tc = harness_tcase("cancel");
	tcase_add_loop_test(tc, test_pqcancel_ends_running_query_with_57014, 0,
		(int)ARRAY_SIZE(pool_modes));
	tcase_add_test(tc, test_cancel_request_with_unknown_key_cancels_nothing);
	tcase_add_test(tc, test_old_cancel_key_of_client_a_never_cancels_client_b);
	tcase_add_test(tc, test_cancel_burst_for_a_never_hits_b_queued_behind_it);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return harness_run_suite(cancel_suite());
}
