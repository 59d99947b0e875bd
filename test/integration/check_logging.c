/*
 * check_logging.c - what sluice logs about connections: one line per login
 * and per close, prefixed with the connection's tag (C-<id> db/user@addr),
 * with the reason for every close; log_format = json prints one JSON object
 * per line with the same facts as fields; log_connections and
 * log_disconnections turn those lines off; control characters a client
 * puts in its user or database name are escaped in both formats.
 *
 * It reads sluice's log (its stderr) through the harness; it does not test
 * log rotation or syslog.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define USERLIST "\"trustuser\" \"trustuserpw\"\n"
#define CONNINFO "dbname=app user=trustuser"

/* Counts lines of log that contain every one of the needles. */
static int count_lines(const char *log, const char *a, const char *b)
{
	int n = 0;
	const char *line = log;
	while (*line) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);
		char *copy = xstrndup(line, len);
		if (strstr(copy, a) && (!b || strstr(copy, b)))
			n++;
		free(copy);
		if (!end)
			break;
		line = end + 1;
	}
	return n;
}

/*
 * A minimal check that a line is one JSON object of string/number members:
 * balanced quotes with escapes, starts with '{' and ends with '}'.
 */
static bool looks_like_json_object(const char *line, size_t len)
{
	if (len < 2 || line[0] != '{' || line[len - 1] != '}')
		return false;
	bool in_str = false;
	for (size_t i = 0; i < len; i++) {
		char ch = line[i];
		if (in_str) {
			if (ch == '\\')
				i++;
			else if (ch == '"')
				in_str = false;
			else if ((unsigned char)ch < 0x20)
				return false;
		} else if (ch == '"') {
			in_str = true;
		}
	}
	return !in_str;
}

START_TEST(test_text_log_has_tagged_login_and_close_with_reason)
{
	struct harness_sluice *s =
		harness_sluice_start("auth_type = trust\n", NULL, USERLIST);
	PGconn *conn = harness_connect(s, CONNINFO);
	free(harness_query_text(conn, "SELECT 1"));
	PQfinish(conn);
	ck_assert(harness_sluice_log_wait(s, "closing because: client sent Terminate", 3000));
	char *log = harness_sluice_log(s);
	/* Login and close of the same client, with its tag and address. */
	ck_assert_msg(count_lines(log, "C-1: app/trustuser@127.0.0.1:", "login attempt") == 1,
		      "%s", log);
	ck_assert_msg(count_lines(log, "C-1: app/trustuser@127.0.0.1:",
				  "closing because: client sent Terminate") == 1,
		      "%s", log);
	/* The server connection logs with its own tag, in PgBouncer's words. */
	ck_assert_msg(count_lines(log, "S-2: app/trustuser@127.0.0.1:",
				  "new connection to server (from 127.0.0.1:") == 1,
		      "%s", log);
	ck_assert_msg(count_lines(log, "S-2: app/trustuser@127.0.0.1:", "login succeeded") == 1,
		      "%s", log);
	free(log);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* A server that refuses the login: logged as PgBouncer logs it, and so is the client's end. */
START_TEST(test_server_login_failure_is_logged_in_pgbouncers_words)
{
	struct harness_sluice *s = harness_sluice_start("auth_type = trust\n",
		"gone = host=@PGHOST@ port=@PGPORT@ dbname=no_such_pg_db\n", USERLIST);
	char *err = harness_connect_error(s, "dbname=gone user=trustuser");
	ck_assert_msg(strstr(err, "database \"no_such_pg_db\" does not exist"), "%s", err);
	free(err);
	ck_assert(harness_sluice_log_wait(s,
		"server login failed: FATAL database \"no_such_pg_db\" does not exist", 3000));
	ck_assert(harness_sluice_log_wait(s,
		"closing because: database \"no_such_pg_db\" does not exist", 3000));
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_refused_login_logs_the_reason)
{
	struct harness_sluice *s =
		harness_sluice_start("auth_type = md5\n", NULL, "\"md5user\" \"md5userpw\"\n");
	char *err = harness_connect_error(s, "dbname=app user=md5user password=wrong");
	ck_assert_msg(strstr(err, "password authentication failed") != NULL, "%s", err);
	free(err);
	err = harness_connect_error(s, "dbname=nosuchdb user=md5user password=md5userpw");
	free(err);
	ck_assert(harness_sluice_log_wait(s, "no such database: nosuchdb", 3000));
	char *log = harness_sluice_log(s);
	ck_assert_msg(count_lines(log, "app/md5user@127.0.0.1:",
				  "closing because: password authentication failed") == 1,
		      "%s", log);
	ck_assert_msg(count_lines(log, "nosuchdb/md5user@", "closing because: no such database") ==
			      1,
		      "%s", log);
	free(log);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_json_log_is_one_object_per_line_with_connection_fields)
{
	struct harness_sluice *s =
		harness_sluice_start("auth_type = trust\nlog_format = json\n", NULL, USERLIST);
	PGconn *conn = harness_connect(s, CONNINFO);
	free(harness_query_text(conn, "SELECT 1"));
	PQfinish(conn);
	ck_assert(harness_sluice_log_wait(s, "client sent Terminate", 3000));
	char *log = harness_sluice_log(s);
	int lines = 0;
	const char *line = log;
	while (*line) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);
		if (len > 0) {
			ck_assert_msg(looks_like_json_object(line, len), "not JSON: %.*s", (int)len,
				      line);
			lines++;
		}
		if (!end)
			break;
		line = end + 1;
	}
	ck_assert_int_ge(lines, 4);
	/* Connection facts are fields, not a text prefix. */
	ck_assert_msg(count_lines(log, "\"conn\":\"C-1\"", "\"msg\":\"closing because: client sent "
							   "Terminate") == 1,
		      "%s", log);
	ck_assert_msg(count_lines(log, "\"conn\":\"C-1\"", "\"db\":\"app\"") >= 1, "%s", log);
	ck_assert_msg(count_lines(log, "\"conn\":\"C-1\"", "\"user\":\"trustuser\"") >= 1, "%s",
		      log);
	ck_assert_msg(count_lines(log, "\"conn\":\"C-1\"", "\"addr\":\"127.0.0.1:") >= 1, "%s", log);
	ck_assert_msg(count_lines(log, "\"level\":\"LOG\"", NULL) >= 1, "%s", log);
	free(log);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* A user name that tries to write a log line of its own, in both formats. */
static const char *const formats[] = { "text", "json" };

START_TEST(test_newline_in_user_name_cannot_forge_a_log_line)
{
	char extra[96];
	snprintf(extra, sizeof(extra), "auth_type = md5\nlog_format = %s\n", formats[_i]);
	struct harness_sluice *s = harness_sluice_start(extra, NULL, USERLIST);
	int fd = harness_raw_connect(s->port);
	harness_raw_send_startup(fd, "x\nFORGED 1 LOG C-9 app/admin@10.0.0.1: login ok\x1b[2J",
		"app\rFORGEDDB");
	free(harness_raw_read_error(fd));
	close(fd);
	/* The failed login is logged, with the name in it. */
	ck_assert(harness_sluice_log_wait(s, "FORGED 1 LOG", 3000));
	char *log = harness_sluice_log(s);
	for (const char *line = log; *line;) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);
		ck_assert_msg(strncmp(line, "FORGED", 6) != 0, "a forged line: %.*s", (int)len, line);
		ck_assert_msg(memchr(line, '\r', len) == NULL && memchr(line, 0x1b, len) == NULL,
			      "a raw control character: %.*s", (int)len, line);
		if (_i == 1 && len > 0)
			ck_assert_msg(looks_like_json_object(line, len), "not JSON: %.*s", (int)len,
				      line);
		if (!end)
			break;
		line = end + 1;
	}
	const char *escaped = _i == 0 ? "x\\nFORGED" : "x\\u000aFORGED";
	ck_assert_msg(strstr(log, escaped) != NULL, "%s", log);
	free(log);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_log_connections_and_disconnections_off_log_neither)
{
	struct harness_sluice *s = harness_sluice_start(
		"auth_type = trust\nlog_connections = 0\nlog_disconnections = 0\n", NULL, USERLIST);
	PGconn *conn = harness_connect(s, CONNINFO);
	free(harness_query_text(conn, "SELECT 1"));
	PQfinish(conn);
	/* A second client proves the first one's close has been handled. */
	conn = harness_connect(s, CONNINFO);
	free(harness_query_text(conn, "SELECT 1"));
	char *log = harness_sluice_log(s);
	ck_assert_msg(count_lines(log, "login attempt", NULL) == 0, "%s", log);
	ck_assert_msg(count_lines(log, "closing because", NULL) == 0, "%s", log);
	free(log);
	PQfinish(conn);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

static Suite *logging_suite(void)
{
	Suite *s = suite_create("logging");
	TCase *tc = harness_tcase("connections");
	tcase_add_test(tc, test_text_log_has_tagged_login_and_close_with_reason);
	tcase_add_test(tc, test_refused_login_logs_the_reason);
	tcase_add_test(tc, test_server_login_failure_is_logged_in_pgbouncers_words);
	tcase_add_test(tc, test_json_log_is_one_object_per_line_with_connection_fields);
	tcase_add_test(tc, test_log_connections_and_disconnections_off_log_neither);
	tcase_add_loop_test(tc, test_newline_in_user_name_cannot_forge_a_log_line, 0,
		(int)ARRAY_SIZE(formats));
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return harness_run_suite(logging_suite());
}
