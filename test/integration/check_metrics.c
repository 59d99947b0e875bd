/*
 * check_metrics.c - the HTTP endpoints set up by metrics_port: GET /health,
 * GET /ready following PostgreSQL and shutdown, GET /metrics in Prometheus
 * text format (checked by promtool when it is installed) with the pool
 * accounting a real workload produces, the HTTP errors (404, 405, 400, 431),
 * the deadline on a client that stalls half-way through a request, and SQL
 * clients being served all along.
 *
 * HTTP is spoken over plain sockets (harness_raw_connect) by the small client
 * below, so that malformed and partial requests can be sent as they are. It
 * does not test the request parser case by case: test/unit/check_http.c does.
 */
#include "harness.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TRUST_USERLIST "\"trustuser\" \"trustuserpw\"\n"
#define CONNINFO "dbname=app user=trustuser"
#define SERIES_LABELS "{database=\"app\",user=\"trustuser\"}"

/* ---- a tiny HTTP client ------------------------------------------------------------ */

struct http_resp {
	int status; /* -1: no status line (connection closed without a response) */
	char *head; /* the response head, NUL-terminated */
	char *body; /* NUL-terminated; body_len bytes */
	size_t body_len;
};

static void http_resp_free(struct http_resp *r)
{
	free(r->head);
	free(r->body);
	memset(r, 0, sizeof(*r));
}

/* Sends raw[0..len) to the metrics port and reads the response until EOF or Content-Length. */
static void http_exchange(int port, const char *raw, size_t len, struct http_resp *out)
{
	int fd = harness_raw_connect(port);
	size_t off = 0;
	while (off < len) {
		ssize_t n = send(fd, raw + off, len - off, MSG_NOSIGNAL);
		if (n <= 0)
			break; /* the server may answer (431) and close before taking it all */
		off += (size_t)n;
	}
	size_t cap = 4096, got = 0;
	char *buf = xmalloc(cap);
	long content_length = -1;
	size_t body_off = 0; /* an offset: buf moves when it grows */
	for (;;) {
		if (got + 1024 > cap) {
			cap *= 2;
			buf = xrealloc(buf, cap);
		}
		ssize_t n = recv(fd, buf + got, cap - got - 1, 0);
		if (n <= 0)
			break;
		got += (size_t)n;
		buf[got] = '\0';
		char *end;
		if (!body_off && (end = strstr(buf, "\r\n\r\n")) != NULL) {
			body_off = (size_t)(end + 4 - buf);
			const char *cl = strcasestr(buf, "\r\nContent-Length:");
			if (cl && cl < end + 4)
				content_length = strtol(cl + 17, NULL, 10);
		}
		if (body_off && content_length >= 0 && (long)(got - body_off) >= content_length)
			break;
	}
	close(fd);
	buf[got] = '\0';
	memset(out, 0, sizeof(*out));
	out->status = -1;
	if (sscanf(buf, "HTTP/1.%*d %d", &out->status) != 1)
		out->status = -1;
	char *end = strstr(buf, "\r\n\r\n");
	if (end) {
		out->head = xstrndup(buf, (size_t)(end - buf) + 2);
		out->body_len = got - (size_t)(end + 4 - buf);
		out->body = xstrndup(end + 4, out->body_len);
	} else {
		out->head = xstrdup(buf);
		out->body = xstrdup("");
	}
	free(buf);
}

static int http_request(int port, const char *method, const char *path, struct http_resp *out)
{
	char req[512];
	int n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", method,
		path, port);
	http_exchange(port, req, (size_t)n, out);
	return out->status;
}

/* Polls GET path until it answers want (bounded); returns the last status. */
static int http_wait_status(int port, const char *path, int want, long timeout_ms,
	struct http_resp *last)
{
	long deadline = harness_now_ms() + timeout_ms;
	for (;;) {
		http_resp_free(last);
		if (http_request(port, "GET", path, last) == want || harness_now_ms() >= deadline)
			return last->status;
		harness_sleep_ms(100);
	}
}

/* ---- starting sluice with the endpoints ----------------------------------------- */

struct setup {
	struct harness_sluice *s;
	int http_port;
};

static struct setup start(const char *extra)
{
	struct setup st;
	st.http_port = harness_free_port();
	char ini[1024];
	snprintf(ini, sizeof(ini), "auth_type = trust\nmetrics_port = %d\n%s", st.http_port,
		extra ? extra : "");
	st.s = harness_sluice_start(ini, NULL, TRUST_USERLIST);
	char needle[64];
	snprintf(needle, sizeof(needle), "listening on http://127.0.0.1:%d", st.http_port);
	ck_assert_msg(harness_sluice_log_wait(st.s, needle, 5000), "no '%s' in the log",
		needle);
	return st;
}

static void assert_sql_works(struct harness_sluice *s)
{
	PGconn *c = harness_connect(s, CONNINFO);
	char *v = harness_query_text(c, "SELECT count(*) FROM items");
	ck_assert_str_eq(v, "3");
	free(v);
	PQfinish(c);
}

/*
 * The value of one sample line "<series> <value>" in an exposition, or -1
 * when the series is absent. series is the name with its labels as sluice
 * writes them.
 */
static double metric_value(const char *text, const char *series)
{
	size_t n = strlen(series);
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, series, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	}
	return -1;
}

/* ---- tests ---------------------------------------------------------------------------- */

/*
 * One sluice for all of it, so that the stalled client's 5 s deadline runs
 * while the other requests are made: a client that sent half a request and
 * went silent is closed at the deadline, and meanwhile every other HTTP and
 * SQL client is served.
 */
START_TEST(test_http_errors_and_stalled_client_closed_at_deadline)
{
	struct setup st = start(NULL);
	struct http_resp r = { 0 };
	int stalled = harness_raw_connect(st.http_port);
	const char *half = "GET /metrics HTTP/1.1\r\nHo";
	ck_assert_int_eq(send(stalled, half, strlen(half), MSG_NOSIGNAL), (ssize_t)strlen(half));
	long t0 = harness_now_ms();

	ck_assert_int_eq(http_request(st.http_port, "GET", "/health", &r), 200);
	ck_assert_str_eq(r.body, "ok\n");
	ck_assert_ptr_nonnull(strcasestr(r.head, "Connection: close"));
	http_resp_free(&r);

	/* HEAD: the same head, no body. */
	ck_assert_int_eq(http_request(st.http_port, "HEAD", "/health", &r), 200);
	ck_assert_ptr_nonnull(strcasestr(r.head, "Content-Length: 3"));
	ck_assert_uint_eq(r.body_len, 0);
	http_resp_free(&r);

	/* HTTP/1.0, an absolute URI and a query string reach the same endpoint. */
	const char *v10 = "GET http://localhost/health?probe=1 HTTP/1.0\r\n\r\n";
	http_exchange(st.http_port, v10, strlen(v10), &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.body, "ok\n");
	http_resp_free(&r);

	assert_sql_works(st.s);

	ck_assert_int_eq(http_request(st.http_port, "GET", "/nope", &r), 404);
	http_resp_free(&r);
	ck_assert_int_eq(http_request(st.http_port, "GET", "/metrics/", &r), 404);
	http_resp_free(&r);
	ck_assert_int_eq(http_request(st.http_port, "POST", "/metrics", &r), 405);
	ck_assert_ptr_nonnull(strcasestr(r.head, "Allow: GET, HEAD"));
	http_resp_free(&r);
	ck_assert_int_eq(http_request(st.http_port, "DELETE", "/health", &r), 405);
	http_resp_free(&r);

	const char *bad = "GET /health HTTP/9.9\r\n\r\n";
	http_exchange(st.http_port, bad, strlen(bad), &r);
	ck_assert_int_eq(r.status, 400);
	http_resp_free(&r);
	const char *garbage = "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03";
	http_exchange(st.http_port, garbage, strlen(garbage), &r);
	ck_assert_int_eq(r.status, 400);
	http_resp_free(&r);

	/* A head over 8 KB: 431, whether or not it ever ends. */
	size_t big = 12 * 1024;
	char *huge = xmalloc(big + 64);
	int n = snprintf(huge, big + 64, "GET /metrics HTTP/1.1\r\nX-Pad: ");
	memset(huge + n, 'a', big - (size_t)n);
	memcpy(huge + big, "\r\n\r\n", 4);
	http_exchange(st.http_port, huge, big + 4, &r);
	ck_assert_int_eq(r.status, 431);
	http_resp_free(&r);
	free(huge);

	assert_sql_works(st.s);
	ck_assert_int_eq(http_request(st.http_port, "GET", "/health", &r), 200);
	http_resp_free(&r);

	char buf[256];
	ssize_t got = recv(stalled, buf, sizeof(buf), 0);
	int err = errno;
	long took = harness_now_ms() - t0;
	close(stalled);
	/* Closed without a response (0) or reset; not left to the 10 s socket timeout. */
	ck_assert_msg(got == 0 || (got < 0 && err == ECONNRESET), "recv gave %zd (%s) after %ld ms",
		got, got < 0 ? strerror(err) : "", took);
	ck_assert_msg(took >= 4000 && took <= 7500, "closed after %ld ms (deadline 5 s)", took);
	assert_sql_works(st.s);

	ck_assert_int_eq(harness_sluice_stop(st.s), 0);
	harness_sluice_free(st.s);
}
END_TEST

START_TEST(test_metrics_show_pool_queries_and_a_client_that_waited)
{
	struct setup st = start("pool_mode = transaction\ndefault_pool_size = 1\n");
	struct http_resp r = { 0 };

	/* Client A holds the only server in a transaction; B has to wait for it. */
	PGconn *a = harness_connect(st.s, CONNINFO);
	for (int i = 0; i < 3; i++)
		free(harness_query_text(a, "SELECT 1"));
	free(harness_query_text(a, "BEGIN"));
	free(harness_query_text(a, "SELECT count(*) FROM items"));
	PGconn *b = harness_connect(st.s, CONNINFO);
	ck_assert_int_eq(PQsendQuery(b, "SELECT 42"), 1);
	harness_sleep_ms(300);

	/* While B waits, the gauges say so. */
	ck_assert_int_eq(http_request(st.http_port, "GET", "/metrics", &r), 200);
	ck_assert_double_eq(metric_value(r.body, "sluice_pool_client_connections"
		"{database=\"app\",user=\"trustuser\",state=\"waiting\"}"), 1);
	ck_assert_double_eq(metric_value(r.body, "sluice_pool_server_connections"
		"{database=\"app\",user=\"trustuser\",state=\"active\"}"), 1);
	ck_assert(metric_value(r.body, "sluice_pool_max_wait_seconds" SERIES_LABELS) >= 0.2);
	http_resp_free(&r);

	free(harness_query_text(a, "COMMIT"));
	PGresult *res = PQgetResult(b);
	ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	ck_assert_str_eq(PQgetvalue(res, 0, 0), "42");
	PQclear(res);
	while ((res = PQgetResult(b)) != NULL)
		PQclear(res);

	ck_assert_int_eq(http_request(st.http_port, "GET", "/metrics", &r), 200);
	ck_assert_ptr_nonnull(
		strcasestr(r.head, "Content-Type: text/plain; version=0.0.4; charset=utf-8"));
	const char *m = r.body;
	ck_assert_ptr_nonnull(strstr(r.head, "Content-Length: "));
	ck_assert_uint_eq(r.body_len, strtoul(strstr(r.head, "Content-Length: ") + 16, NULL, 10));
	ck_assert_double_eq(metric_value(m, "sluice_up"), 1);
	ck_assert_ptr_nonnull(strstr(m, "# TYPE sluice_pool_queries_total counter\n"));
	ck_assert_ptr_nonnull(strstr(m, "sluice_info{version=\""));
	ck_assert_double_eq(metric_value(m, "sluice_client_connections"), 2);
	ck_assert_double_eq(metric_value(m, "sluice_server_connections"), 1);
	ck_assert(metric_value(m, "sluice_pool_queries_total" SERIES_LABELS) >= 6);
	ck_assert(metric_value(m, "sluice_pool_transactions_total" SERIES_LABELS) >= 4);
	ck_assert(metric_value(m, "sluice_pool_received_bytes_total" SERIES_LABELS) > 0);
	ck_assert(metric_value(m, "sluice_pool_sent_bytes_total" SERIES_LABELS) > 0);
	ck_assert_double_eq(metric_value(m, "sluice_pool_client_logins_total" SERIES_LABELS), 2);
	ck_assert_double_eq(metric_value(m, "sluice_pool_servers_opened_total" SERIES_LABELS), 1);
	ck_assert_double_eq(metric_value(m, "sluice_pool_servers_closed_total"
		"{database=\"app\",user=\"trustuser\",reason=\"error\"}"), 0);

	/* B's wait: counted as a waited assignment, and above 0.1 s in the histogram. */
	ck_assert_double_eq(metric_value(m, "sluice_pool_waited_assignments_total" SERIES_LABELS),
		1);
	ck_assert(metric_value(m, "sluice_pool_wait_seconds_total" SERIES_LABELS) >= 0.2);
	ck_assert(metric_value(m, "sluice_pool_longest_wait_seconds" SERIES_LABELS) >= 0.2);
	double assigned = metric_value(m, "sluice_pool_server_assignments_total" SERIES_LABELS);
	double count = metric_value(m, "sluice_pool_wait_duration_seconds_count" SERIES_LABELS);
	ck_assert(assigned >= 5);
	ck_assert_double_eq(count, assigned);
	double fast = metric_value(m, "sluice_pool_wait_duration_seconds_bucket"
		"{database=\"app\",user=\"trustuser\",le=\"0.1\"}");
	double inf = metric_value(m, "sluice_pool_wait_duration_seconds_bucket"
		"{database=\"app\",user=\"trustuser\",le=\"+Inf\"}");
	ck_assert_double_eq(inf, count);
	ck_assert_double_eq(fast, count - 1);
	ck_assert(metric_value(m, "sluice_pool_wait_duration_seconds_sum" SERIES_LABELS) >= 0.2);
	/* The transaction A held while B waited is in the transaction histogram. */
	ck_assert(metric_value(m, "sluice_pool_transaction_duration_seconds_count" SERIES_LABELS) >=
		4);
	ck_assert(metric_value(m, "sluice_pool_transaction_duration_seconds_sum" SERIES_LABELS) >=
		0.2);

	/* promtool's parser and linter accept the exposition. */
	if (access("/usr/bin/promtool", X_OK) != 0) {
		fprintf(stderr, "check_metrics: SKIPPED the promtool check: /usr/bin/promtool is "
				"missing (install the Debian package prometheus)\n");
	} else {
		char path[512], cmd[1200];
		snprintf(path, sizeof(path), "%s/metrics.txt", st.s->dir);
		FILE *f = fopen(path, "w");
		ck_assert_ptr_nonnull(f);
		fwrite(r.body, 1, r.body_len, f);
		fclose(f);
		snprintf(cmd, sizeof(cmd), "/usr/bin/promtool check metrics < %s > %s.out 2>&1",
			path, path);
		int rc = system(cmd);
		snprintf(cmd, sizeof(cmd), "%s.out", path);
		FILE *o = fopen(cmd, "r");
		char out[4096] = "";
		if (o) {
			size_t k = fread(out, 1, sizeof(out) - 1, o);
			out[k] = '\0';
			fclose(o);
		}
		ck_assert_msg(WIFEXITED(rc) && WEXITSTATUS(rc) == 0,
			"promtool check metrics failed:\n%s", out);
	}
	http_resp_free(&r);

	PQfinish(a);
	PQfinish(b);
	ck_assert_int_eq(harness_sluice_stop(st.s), 0);
	harness_sluice_free(st.s);
}
END_TEST

START_TEST(test_ready_follows_postgresql_down_and_up)
{
	struct setup st = start("pool_mode = transaction\n");
	struct http_resp r = { 0 };

	/* Ready from the probe alone, before any client has come. */
	int up1 = http_wait_status(st.http_port, "/ready", 200, 5000, &r);
	ck_assert_msg(up1 == 200, "not ready at start: %d %s", up1, r.body);
	ck_assert_str_eq(r.body, "ready\n");
	assert_sql_works(st.s); /* leaves an idle server in the pool */

	harness_pg_stop();
	/* Collect, then start PostgreSQL again before asserting, so later tests have it. */
	long t0 = harness_now_ms();
	int down = http_wait_status(st.http_port, "/ready", 503, 8000, &r);
	long took = harness_now_ms() - t0;
	char *down_body = xstrdup(r.body);
	struct http_resp h = { 0 };
	int health = http_request(st.http_port, "GET", "/health", &h);
	http_resp_free(&h);
	harness_pg_start();

	ck_assert_msg(down == 503, "still %d %s %ld ms after PostgreSQL stopped", down, down_body,
		took);
	ck_assert_str_eq(down_body, "not ready: no PostgreSQL reachable\n");
	ck_assert_msg(took <= 5000, "took %ld ms to notice", took);
	ck_assert_int_eq(health, 200);
	free(down_body);

	int up2 = http_wait_status(st.http_port, "/ready", 200, 8000, &r);
	ck_assert_msg(up2 == 200, "not ready after PostgreSQL came back: %d %s", up2, r.body);
	http_resp_free(&r);
	assert_sql_works(st.s);

	ck_assert_int_eq(harness_sluice_stop(st.s), 0);
	harness_sluice_free(st.s);
}
END_TEST

START_TEST(test_ready_is_503_after_sigterm_while_a_client_remains)
{
	struct setup st = start(NULL);
	struct http_resp r = { 0 };
	PGconn *c = harness_connect(st.s, CONNINFO);
	free(harness_query_text(c, "SELECT 1"));
	ck_assert_int_eq(http_wait_status(st.http_port, "/ready", 200, 5000, &r), 200);
	http_resp_free(&r);

	harness_sluice_signal(st.s, SIGTERM);
	ck_assert(harness_sluice_log_wait(st.s, "SIGTERM", 5000));
	ck_assert_int_eq(http_request(st.http_port, "GET", "/ready", &r), 503);
	ck_assert_str_eq(r.body, "not ready: shutting down\n");
	http_resp_free(&r);
	/* Still alive and serving the client that stayed. */
	ck_assert_int_eq(http_request(st.http_port, "GET", "/health", &r), 200);
	http_resp_free(&r);
	char *v = harness_query_text(c, "SELECT 7");
	ck_assert_str_eq(v, "7");
	free(v);
	ck_assert_int_eq(harness_sluice_wait(st.s, 200), -1);

	PQfinish(c);
	ck_assert_int_eq(harness_sluice_wait(st.s, 5000), 0);
	harness_sluice_free(st.s);
}
END_TEST

START_TEST(test_metrics_port_zero_opens_no_http_listener)
{
	struct harness_sluice *s = harness_sluice_start("auth_type = trust\n", NULL,
		TRUST_USERLIST);
	assert_sql_works(s);
	char *log = harness_sluice_log(s);
	ck_assert_msg(strstr(log, "http://") == NULL, "%s", log);
	free(log);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

static Suite *metrics_suite(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = harness_tcase("http");
	tcase_add_test(tc, test_http_errors_and_stalled_client_closed_at_deadline);
	tcase_add_test(tc, test_metrics_show_pool_queries_and_a_client_that_waited);
	tcase_add_test(tc, test_metrics_port_zero_opens_no_http_listener);
	suite_add_tcase(s, tc);
	tc = harness_tcase("ready");
	tcase_add_test(tc, test_ready_follows_postgresql_down_and_up);
	tcase_add_test(tc, test_ready_is_503_after_sigterm_while_a_client_remains);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return harness_run_suite(metrics_suite());
}
