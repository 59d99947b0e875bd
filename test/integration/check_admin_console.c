/*
 * check_admin_console.c - proves the read side of the admin console against
 * PgBouncer's reference (../shared/reference/pgbouncer-console.md, master/1.26
 * column set): the columns, their order and wire types of every SHOW command,
 * the grammar (SELECT alias, case, `;`), the fake GUCs, the refusal of the
 * extended protocol, the version strings, that the values follow real
 * activity (statistics, waiting clients, backend pids, config), and who may
 * log in to the console with which rights.
 *
 * The control commands (PAUSE, KILL, RELOAD, SET, SHUTDOWN...) are proven in
 * check_admin_control.c.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Wire type OIDs of the console's columns. */
#define TEXT 25
#define INT4 23
#define INT8 20
#define NUMERIC 1700

#define USERLIST                                                                                   \
	"\"md5user\" \"md5userpw\"\n\"scramuser\" \"scramuserpw\"\n"                               \
	"\"plainuser\" \"plainuserpw\"\n\"trustuser\" \"trustuserpw\"\n"

/* md5user administers, scramuser may only look, plainuser may not enter. */
#define CONSOLE_INI "auth_type = md5\nadmin_users = md5user\nstats_users = scramuser\n"
#define ADMIN_CONN "dbname=pgbouncer user=md5user password=md5userpw"
#define STATS_CONN "dbname=pgbouncer user=scramuser password=scramuserpw"
#define APP_CONN "dbname=app user=md5user password=md5userpw"

static struct harness_sluice *start(const char *extra, const char *databases)
{
	char ini[1024];
	snprintf(ini, sizeof(ini), "%s%s", CONSOLE_INI, extra ? extra : "");
	return harness_sluice_start(ini, databases, USERLIST);
}

/* Runs a console command that must return rows; the caller PQclear()s. */
static PGresult *show(PGconn *c, const char *sql)
{
	PGresult *res = PQexec(c, sql);
	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", sql,
		PQresultErrorMessage(res));
	ck_assert_str_eq(PQcmdStatus(res), "SHOW");
	return res;
}

/* The row whose column key_col equals key, or -1. */
static int find_row(const PGresult *res, const char *key_col, const char *key)
{
	int k = PQfnumber(res, key_col);
	ck_assert_msg(k >= 0, "no column %s", key_col);
	for (int i = 0; i < PQntuples(res); i++)
		if (strcmp(PQgetvalue(res, i, k), key) == 0)
			return i;
	return -1;
}

/* The SHOW POOLS value of col for the pool (app, md5user). */
static long app_pool(PGconn *console, const char *col)
{
	PGresult *res = show(console, "SHOW POOLS");
	long v = -1;
	int kd = PQfnumber(res, "database"), ku = PQfnumber(res, "user"), kc = PQfnumber(res, col);
	ck_assert(kc >= 0);
	for (int i = 0; i < PQntuples(res); i++)
		if (strcmp(PQgetvalue(res, i, kd), "app") == 0 &&
			strcmp(PQgetvalue(res, i, ku), "md5user") == 0)
			v = strtol(PQgetvalue(res, i, kc), NULL, 10);
	PQclear(res);
	return v;
}

/* ---- the reference's column tables ---------------------------------------------- */

struct col {
	const char *name;
	Oid type;
};

#define END { NULL, 0 }

static const struct col pools_cols[] = {
	{ "database", TEXT }, { "user", TEXT }, { "cl_active", INT4 }, { "cl_waiting", INT4 },
	{ "cl_active_cancel_req", INT4 }, { "cl_waiting_cancel_req", INT4 }, { "sv_active", INT4 },
	{ "sv_active_cancel", INT4 }, { "sv_being_canceled", INT4 }, { "sv_idle", INT4 },
	{ "sv_used", INT4 }, { "sv_tested", INT4 }, { "sv_login", INT4 }, { "maxwait", INT4 },
	{ "maxwait_us", INT4 }, { "pool_mode", TEXT }, { "load_balance_hosts", TEXT }, END
};

static const struct col stats_cols[] = {
	{ "database", TEXT }, { "total_server_assignment_count", NUMERIC },
	{ "total_xact_count", NUMERIC }, { "total_query_count", NUMERIC },
	{ "total_received", NUMERIC }, { "total_sent", NUMERIC }, { "total_xact_time", NUMERIC },
	{ "total_query_time", NUMERIC }, { "total_wait_time", NUMERIC },
	{ "total_client_parse_count", NUMERIC }, { "total_server_parse_count", NUMERIC },
	{ "total_bind_count", NUMERIC }, { "total_client_login_count", NUMERIC },
	{ "avg_server_assignment_count", NUMERIC }, { "avg_xact_count", NUMERIC },
	{ "avg_query_count", NUMERIC }, { "avg_recv", NUMERIC }, { "avg_sent", NUMERIC },
	{ "avg_xact_time", NUMERIC }, { "avg_query_time", NUMERIC }, { "avg_wait_time", NUMERIC },
	{ "avg_client_parse_count", NUMERIC }, { "avg_server_parse_count", NUMERIC },
	{ "avg_bind_count", NUMERIC }, { "avg_client_login_count", NUMERIC }, END
};

static const struct col stats_totals_cols[] = {
	{ "database", TEXT }, { "server_assignment_count", NUMERIC }, { "xact_count", NUMERIC },
	{ "query_count", NUMERIC }, { "bytes_received", NUMERIC }, { "bytes_sent", NUMERIC },
	{ "xact_time", NUMERIC }, { "query_time", NUMERIC }, { "wait_time", NUMERIC },
	{ "client_parse_count", NUMERIC }, { "server_parse_count", NUMERIC },
	{ "bind_count", NUMERIC }, { "client_login_count", NUMERIC }, END
};

static const struct col stats_averages_cols[] = {
	{ "database", TEXT }, { "server_assignment_count", NUMERIC }, { "xact_count", NUMERIC },
	{ "query_count", NUMERIC }, { "bytes_received", NUMERIC }, { "bytes_sent", NUMERIC },
	{ "xact_time", NUMERIC }, { "query_time", NUMERIC }, { "wait_time", NUMERIC },
	{ "avg_client_parse_count", NUMERIC }, { "avg_server_parse_count", NUMERIC },
	{ "avg_bind_count", NUMERIC }, { "avg_client_login_count", NUMERIC }, END
};

static const struct col totals_cols[] = { { "name", TEXT }, { "value", NUMERIC }, END };

#define SOCKET_COLS                                                                                \
	{ "type", TEXT }, { "user", TEXT }, { "database", TEXT }, { "replication", TEXT },        \
		{ "state", TEXT }, { "addr", TEXT }, { "port", INT4 }, { "local_addr", TEXT },     \
		{ "local_port", INT4 }, { "connect_time", TEXT }, { "request_time", TEXT },        \
		{ "wait", INT4 }, { "wait_us", INT4 }, { "close_needed", INT4 }, { "ptr", TEXT },  \
		{ "link", TEXT }, { "remote_pid", INT4 }, { "tls", TEXT },                         \
		{ "application_name", TEXT }, { "prepared_statements", INT4 }, { "id", INT4 }

static const struct col socket_cols[] = { SOCKET_COLS, END };

static const struct col sockets_cols[] = {
	SOCKET_COLS, { "recv_pos", INT4 }, { "pkt_pos", INT4 }, { "pkt_remain", INT4 },
	{ "send_pos", INT4 }, { "send_remain", INT4 }, { "pkt_avail", INT4 },
	{ "send_avail", INT4 }, END
};

static const struct col databases_cols[] = {
	{ "name", TEXT }, { "host", TEXT }, { "port", INT4 }, { "database", TEXT },
	{ "force_user", TEXT }, { "pool_size", INT4 }, { "min_pool_size", INT4 },
	{ "reserve_pool_size", INT4 }, { "server_lifetime", INT4 }, { "pool_mode", TEXT },
	{ "load_balance_hosts", TEXT }, { "max_connections", INT4 },
	{ "current_connections", INT4 }, { "max_client_connections", INT4 },
	{ "current_client_connections", INT4 }, { "paused", INT4 }, { "disabled", INT4 }, END
};

static const struct col users_cols[] = {
	{ "name", TEXT }, { "pool_size", TEXT }, { "reserve_pool_size", TEXT },
	{ "pool_mode", TEXT }, { "max_user_connections", INT4 }, { "current_connections", INT4 },
	{ "max_user_client_connections", INT4 }, { "current_client_connections", INT4 }, END
};

static const struct col config_cols[] = {
	{ "key", TEXT }, { "value", TEXT }, { "default", TEXT }, { "changeable", TEXT }, END
};

static const struct col lists_cols[] = { { "list", TEXT }, { "items", INT4 }, END };

static const struct col mem_cols[] = {
	{ "name", TEXT }, { "size", INT4 }, { "used", INT4 }, { "free", INT4 },
	{ "memtotal", INT4 }, END
};

static const struct col state_cols[] = { { "key", TEXT }, { "value", TEXT }, END };
static const struct col version_cols[] = { { "version", TEXT }, END };
static const struct col dns_hosts_cols[] = {
	{ "hostname", TEXT }, { "ttl", INT8 }, { "addrs", TEXT }, END
};
static const struct col dns_zones_cols[] = {
	{ "zonename", TEXT }, { "serial", INT8 }, { "count", INT4 }, END
};
static const struct col peers_cols[] = {
	{ "peer_id", INT4 }, { "host", TEXT }, { "port", INT4 }, { "pool_size", INT4 }, END
};
static const struct col peer_pools_cols[] = {
	{ "peer_id", INT4 }, { "cl_active_cancel_req", INT4 }, { "cl_waiting_cancel_req", INT4 },
	{ "sv_active_cancel", INT4 }, { "sv_login", INT4 }, END
};

/* sluice's own; not in PgBouncer, so the header is sluice's doc (doc/console.md). */
static const struct col pool_waits_cols[] = {
	{ "database", TEXT }, { "user", TEXT }, { "acquires", INT8 }, { "waited", INT8 },
	{ "wait_time_us", INT8 }, { "max_wait_us", INT8 }, { "timeouts", INT8 },
	{ "reuse_ratio", NUMERIC }, { "servers_opened", INT8 }, { "closed_lifetime", INT8 },
	{ "closed_idle", INT8 }, { "closed_error", INT8 }, { "closed_reload", INT8 },
	{ "closed_other", INT8 }, END
};

static const struct {
	const char *sql;
	const struct col *cols;
} show_tables[] = {
	{ "SHOW POOLS", pools_cols },
	{ "SHOW STATS", stats_cols },
	{ "SHOW STATS_TOTALS", stats_totals_cols },
	{ "SHOW STATS_AVERAGES", stats_averages_cols },
	{ "SHOW TOTALS", totals_cols },
	{ "SHOW CLIENTS", socket_cols },
	{ "SHOW SERVERS", socket_cols },
	{ "SHOW SOCKETS", sockets_cols },
	{ "SHOW ACTIVE_SOCKETS", sockets_cols },
	{ "SHOW DATABASES", databases_cols },
	{ "SHOW USERS", users_cols },
	{ "SHOW CONFIG", config_cols },
	{ "SHOW LISTS", lists_cols },
	{ "SHOW MEM", mem_cols },
	{ "SHOW STATE", state_cols },
	{ "SHOW VERSION", version_cols },
	{ "SHOW DNS_HOSTS", dns_hosts_cols },
	{ "SHOW DNS_ZONES", dns_zones_cols },
	{ "SHOW PEERS", peers_cols },
	{ "SHOW PEER_POOLS", peer_pools_cols },
	{ "SHOW POOL_WAITS", pool_waits_cols },
};

static void expect_columns(PGconn *c, const char *sql, const struct col *cols)
{
	PGresult *res = show(c, sql);
	int n = 0;
	while (cols[n].name)
		n++;
	for (int i = 0; i < n && i < PQnfields(res); i++) {
		ck_assert_msg(strcmp(PQfname(res, i), cols[i].name) == 0,
			"%s column %d is %s, want %s", sql, i + 1, PQfname(res, i), cols[i].name);
		ck_assert_msg(PQftype(res, i) == cols[i].type, "%s column %s has type %u, want %u",
			sql, cols[i].name, PQftype(res, i), cols[i].type);
	}
	ck_assert_msg(PQnfields(res) == n, "%s has %d columns, want %d", sql, PQnfields(res), n);
	PQclear(res);
}

/* Every SHOW with a client and a server in use, so that socket rows exist too. */
START_TEST(test_every_show_has_the_reference_columns_and_types)
{
	struct harness_sluice *s = start(NULL, NULL);
	PGconn *app = harness_connect(s, APP_CONN);
	free(harness_query_text(app, "SELECT 1"));
	PGconn *c = harness_connect(s, ADMIN_CONN);
	for (size_t i = 0; i < ARRAY_SIZE(show_tables); i++)
		expect_columns(c, show_tables[i].sql, show_tables[i].cols);

	/* The console is a pool and a database of its own, as in PgBouncer. */
	PGresult *res = show(c, "SHOW POOLS");
	int row = find_row(res, "database", "pgbouncer");
	ck_assert_msg(row >= 0, "no pgbouncer pool");
	ck_assert_str_eq(PQgetvalue(res, row, 1), "pgbouncer");
	ck_assert_str_eq(PQgetvalue(res, row, PQfnumber(res, "pool_mode")), "statement");
	ck_assert(PQgetisnull(res, row, PQfnumber(res, "load_balance_hosts")));
	PQclear(res);
	res = show(c, "SHOW STATS");
	ck_assert_msg(find_row(res, "database", "pgbouncer") >= 0, "no pgbouncer stats row");
	ck_assert_msg(find_row(res, "database", "app") >= 0, "no app stats row");
	PQclear(res);
	res = show(c, "SHOW DATABASES");
	row = find_row(res, "name", "pgbouncer");
	ck_assert_msg(row >= 0, "no pgbouncer database row");
	ck_assert(PQgetisnull(res, row, PQfnumber(res, "host")));
	ck_assert_int_eq(atoi(PQgetvalue(res, row, PQfnumber(res, "port"))), s->port);
	PQclear(res);

	/* Timestamps are text "YYYY-MM-DD HH:MM:SS TZ". */
	res = show(c, "SHOW CLIENTS");
	row = find_row(res, "database", "app");
	ck_assert_int_ge(row, 0);
	const char *t = PQgetvalue(res, row, PQfnumber(res, "connect_time"));
	int y, mo, d, h, mi, sec, used = 0;
	int fields = sscanf(t, "%4d-%2d-%2d %2d:%2d:%2d %n", &y, &mo, &d, &h, &mi, &sec, &used);
	ck_assert_msg(fields == 6 &&
			used == 20 && strlen(t) > 20 && y >= 2024,
		"connect_time %s", t);
	ck_assert_str_eq(PQgetvalue(res, row, PQfnumber(res, "replication")), "none");
	ck_assert_str_eq(PQgetvalue(res, row, PQfnumber(res, "user")), "md5user");
	PQclear(res);
	PQfinish(c);
	PQfinish(app);
	harness_sluice_stop_ok(s);
}
END_TEST

static void expect_row_names(PGconn *c, const char *sql, const char *const *names, int n)
{
	PGresult *res = show(c, sql);
	ck_assert_msg(PQntuples(res) == n, "%s has %d rows, want %d", sql, PQntuples(res), n);
	for (int i = 0; i < n; i++)
		ck_assert_msg(strcmp(PQgetvalue(res, i, 0), names[i]) == 0,
			"%s row %d is %s, want %s", sql, i + 1, PQgetvalue(res, i, 0), names[i]);
	PQclear(res);
}

START_TEST(test_totals_lists_and_state_rows_are_in_reference_order)
{
	static const char *const totals[] = {
		"total_server_assignment_count", "total_xact_count", "total_query_count",
		"total_client_bytes", "total_server_bytes", "total_xact_time", "total_query_time",
		"total_wait_time", "total_ps_client_parse_count", "total_ps_server_parse_count",
		"total_ps_bind_count", "total_client_login_count", "avg_server_assignment_count",
		"avg_xact_count", "avg_query_count", "avg_client_bytes", "avg_server_bytes",
		"avg_xact_time", "avg_query_time", "avg_wait_time", "avg_ps_client_parse_count",
		"avg_ps_server_parse_count", "avg_ps_bind_count", "avg_client_login_count",
	};
	static const char *const lists[] = {
		"databases", "users", "peers", "pools", "peer_pools", "free_clients",
		"used_clients", "login_clients", "free_servers", "used_servers", "dns_names",
		"dns_zones", "dns_queries", "dns_pending",
	};
	static const char *const state[] = { "active", "paused", "suspended" };
	struct harness_sluice *s = start(NULL, NULL);
	PGconn *c = harness_connect(s, ADMIN_CONN);
	expect_row_names(c, "SHOW TOTALS", totals, ARRAY_SIZE(totals));
	expect_row_names(c, "SHOW LISTS", lists, ARRAY_SIZE(lists));
	expect_row_names(c, "SHOW STATE", state, ARRAY_SIZE(state));
	ck_assert_int_eq(harness_show_long(c, "SHOW LISTS", "list", "used_clients", "items"), 1);
	char *v = harness_show_value(c, "SHOW STATE", "key", "paused", "value");
	ck_assert_str_eq(v, "no");
	free(v);
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

/* ---- grammar, fake GUCs, protocol --------------------------------------------------- */

static char notice_buf[4096];

static void on_notice(void *arg, const PGresult *res)
{
	(void)arg;
	size_t n = strlen(notice_buf);
	snprintf(notice_buf + n, sizeof(notice_buf) - n, "%s",
		PQresultErrorMessage(res) ? PQresultErrorMessage(res) : "");
}

START_TEST(test_show_help_is_a_notice_with_tag_show)
{
	struct harness_sluice *s = start(NULL, NULL);
	PGconn *c = harness_connect(s, ADMIN_CONN);
	notice_buf[0] = '\0';
	PQsetNoticeReceiver(c, on_notice, NULL);
	PGresult *res = PQexec(c, "SHOW HELP");
	ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "%s", PQresultErrorMessage(res));
	ck_assert_str_eq(PQcmdStatus(res), "SHOW");
	PQclear(res);
	ck_assert_msg(strstr(notice_buf, "SHOW") && strstr(notice_buf, "PAUSE"), "notice: %s",
		notice_buf);
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_select_alias_case_and_semicolon_are_accepted)
{
	static const char *const forms[] = {
		"SHOW POOLS", "show pools", "SELECT pools", "select POOLS;", "  Show\tPools  ;  ",
		"SHOW \"pools\"",
	};
	struct harness_sluice *s = start(NULL, NULL);
	PGconn *c = harness_connect(s, ADMIN_CONN);
	for (size_t i = 0; i < ARRAY_SIZE(forms); i++) {
		PGresult *res = show(c, forms[i]);
		ck_assert_str_eq(PQfname(res, 0), "database");
		ck_assert_int_eq(PQnfields(res), 17);
		PQclear(res);
	}
	/* Two commands in one query, and garbage, are errors; the console stays usable. */
	char *e = harness_query_error(c, "SHOW POOLS; SHOW USERS");
	free(e);
	e = harness_query_error(c, "SHOW NOSUCHTHING");
	free(e);
	e = harness_query_error(c, "FROBNICATE");
	free(e);
	PQclear(show(c, "SHOW VERSION"));
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_fake_gucs_answer_show_and_ignore_set)
{
	static const char *const gucs[][2] = {
		{ "client_encoding", "UTF-8" },
		{ "default_transaction_isolation", "read committed" },
		{ "standard_conforming_strings", "on" },
		{ "datestyle", "ISO" },
		{ "timezone", "GMT" },
	};
	struct harness_sluice *s = start(NULL, NULL);
	PGconn *c = harness_connect(s, ADMIN_CONN);
	for (size_t i = 0; i < ARRAY_SIZE(gucs); i++) {
		char sql[128];
		snprintf(sql, sizeof(sql), "SHOW %s", gucs[i][0]);
		PGresult *res = show(c, sql);
		ck_assert_int_eq(PQnfields(res), 1);
		ck_assert_int_eq(PQntuples(res), 1);
		ck_assert_str_eq(PQgetvalue(res, 0, 0), gucs[i][1]);
		PQclear(res);
	}
	notice_buf[0] = '\0';
	PQsetNoticeReceiver(c, on_notice, NULL);
	PGresult *res = PQexec(c, "SET client_encoding = 'UTF8'");
	ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "%s", PQresultErrorMessage(res));
	ck_assert_str_eq(PQcmdStatus(res), "SET");
	PQclear(res);
	ck_assert_msg(strstr(notice_buf, "SET ignored"), "notice: %s", notice_buf);
	/* A stats user may do the driver's SET too. */
	PGconn *st = harness_connect(s, STATS_CONN);
	res = PQexec(st, "SET client_encoding TO 'UTF8'");
	ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "%s", PQresultErrorMessage(res));
	PQclear(res);
	PQfinish(st);
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_extended_protocol_is_refused_on_the_console)
{
	struct harness_sluice *s = start(NULL, NULL);
	PGconn *c = harness_connect(s, ADMIN_CONN);
	PGresult *res = PQexecParams(c, "SHOW POOLS", 0, NULL, NULL, NULL, NULL, 0);
	ck_assert_int_eq(PQresultStatus(res), PGRES_FATAL_ERROR);
	/* The FATAL comes before the close; libpq keeps it in the connection's message. */
	ck_assert_msg(strstr(PQerrorMessage(c), "extended query protocol"), "%s",
		PQerrorMessage(c));
	PQclear(res);
	PQfinish(c);
	/* sluice survives it. */
	c = harness_connect(s, ADMIN_CONN);
	PQclear(show(c, "SHOW POOLS"));
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_show_version_and_server_version_are_parseable)
{
	struct harness_sluice *s = start(NULL, NULL);
	PGconn *c = harness_connect(s, ADMIN_CONN);
	PGresult *res = show(c, "SHOW VERSION");
	ck_assert_int_eq(PQnfields(res), 1);
	ck_assert_int_eq(PQntuples(res), 1);
	ck_assert_str_eq(PQfname(res, 0), "version");
	ck_assert_msg(strstr(PQgetvalue(res, 0, 0), "sluice"), "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	const char *sv = PQparameterStatus(c, "server_version");
	ck_assert_ptr_nonnull(sv);
	int x, y, z, used = 0;
	ck_assert_msg(sscanf(sv, "%d.%d.%d%n", &x, &y, &z, &used) == 3 && used > 0,
		"server_version %s is not X.Y.Z...", sv);
	ck_assert_str_eq(PQparameterStatus(c, "client_encoding"), "UTF8");
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

/* ---- values follow activity ---------------------------------------------------------- */

START_TEST(test_stats_totals_count_queries_and_bytes)
{
	struct harness_sluice *s = start(NULL, NULL);
	PGconn *app = harness_connect(s, APP_CONN);
	for (int i = 0; i < 5; i++)
		free(harness_query_text(app, "SELECT name FROM items WHERE id = 1"));
	PGconn *c = harness_connect(s, ADMIN_CONN);
	const char *q = "SHOW STATS_TOTALS";
	ck_assert_int_eq(harness_show_long(c, q, "database", "app", "xact_count"), 5);
	ck_assert_int_eq(harness_show_long(c, q, "database", "app", "query_count"), 5);
	ck_assert_int_ge(harness_show_long(c, q, "database", "app", "server_assignment_count"), 1);
	ck_assert_int_ge(harness_show_long(c, q, "database", "app", "client_login_count"), 1);
	/* Five Query messages of 41 bytes went in; five answers with a row came back. */
	ck_assert_int_ge(harness_show_long(c, q, "database", "app", "bytes_received"), 5 * 41);
	ck_assert_int_ge(harness_show_long(c, q, "database", "app", "bytes_sent"), 5 * 40);
	ck_assert_int_gt(harness_show_long(c, q, "database", "app", "query_time"), 0);
	/* SHOW STATS' totals and SHOW TOTALS agree. */
	ck_assert_int_eq(harness_show_long(c, "SHOW STATS", "database", "app", "total_query_count"), 5);
	ck_assert_int_ge(harness_show_long(c, "SHOW TOTALS", "name", "total_query_count", "value"), 5);
	/* Nothing was sent to the postgres database. */
	char *v = harness_show_value(c, q, "database", "postgres", "query_count");
	ck_assert_msg(v == NULL || strcmp(v, "0") == 0, "postgres: %s", v);
	free(v);
	/* Console commands count too, as PgBouncer's do: each a transaction and a query. */
	long before = harness_show_long(c, q, "database", "pgbouncer", "query_count");
	ck_assert_int_eq(before, 11); /* the ten commands above and this one */
	ck_assert_int_eq(harness_show_long(c, q, "database", "pgbouncer", "xact_count"), before + 1);
	ck_assert_int_eq(harness_show_long(c, "SHOW TOTALS", "name", "total_query_count", "value"),
		5 + before + 2);
	PQfinish(c);
	PQfinish(app);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_stats_averages_become_nonzero_after_a_period_of_load)
{
	struct harness_sluice *s = start("stats_period = 1\n", NULL);
	PGconn *app = harness_connect(s, APP_CONN);
	PGconn *c = harness_connect(s, ADMIN_CONN);
	long deadline = harness_now_ms() + 5000, avg = 0;
	while (avg == 0 && harness_now_ms() < deadline) {
		for (int i = 0; i < 20; i++)
			free(harness_query_text(app, "SELECT 1"));
		avg = harness_show_long(c, "SHOW STATS", "database", "app", "avg_query_count");
	}
	ck_assert_msg(avg > 0, "avg_query_count stayed 0 for 5 s of load");
	ck_assert_int_gt(harness_show_long(c, "SHOW STATS", "database", "app", "avg_xact_count"), 0);
	ck_assert_int_gt(harness_show_long(c, "SHOW STATS", "database", "app", "avg_recv"), 0);
	/* Times are averages per transaction/query in microseconds, not per-second sums. */
	long qt = harness_show_long(c, "SHOW STATS", "database", "app", "avg_query_time");
	ck_assert_msg(qt > 0 && qt < 1000000, "avg_query_time %ld us", qt);
	ck_assert_int_gt(harness_show_long(c, "SHOW STATS_AVERAGES", "database", "app", "query_count"), 0);
	ck_assert_int_gt(harness_show_long(c, "SHOW TOTALS", "name", "avg_query_count", "value"), 0);
	PQfinish(c);
	PQfinish(app);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_log_stats_writes_a_stats_line_every_period)
{
	struct harness_sluice *s = start("stats_period = 1\nlog_stats = 1\n", NULL);
	PGconn *app = harness_connect(s, APP_CONN);
	free(harness_query_text(app, "SELECT 1"));
	ck_assert_msg(harness_sluice_log_wait(s, "stats:", 3000), "no stats: line in the log");
	PQfinish(app);
	harness_sluice_stop_ok(s);
}
END_TEST

/* The row of SHOW CLIENTS whose state is state, or -1. */
static int clients_row_in_state(PGconn *c, const char *state, PGresult **out)
{
	*out = show(c, "SHOW CLIENTS");
	return find_row(*out, "state", state);
}

START_TEST(test_waiting_client_shows_in_pools_clients_and_pool_waits)
{
	struct harness_sluice *s = start("pool_mode = transaction\n",
		"app = host=@PGHOST@ port=@PGPORT@ dbname=app pool_size=1\n");
	PGconn *holder = harness_connect(s, APP_CONN);
	PGconn *waiter = harness_connect(s, APP_CONN);
	PGconn *c = harness_connect(s, ADMIN_CONN);
	PQclear(PQexec(holder, "BEGIN"));
	free(harness_query_text(holder, "SELECT 1"));
	ck_assert(PQsendQuery(waiter, "SELECT 42"));
	long deadline = harness_now_ms() + 3000;
	while (app_pool(c, "cl_waiting") != 1 && harness_now_ms() < deadline)
		harness_sleep_ms(20);
	ck_assert_int_eq(app_pool(c, "cl_waiting"), 1);
	ck_assert_int_eq(app_pool(c, "sv_active"), 1);
	long w1 = app_pool(c, "maxwait") * 1000000 + app_pool(c, "maxwait_us");
	harness_sleep_ms(200);
	long w2 = app_pool(c, "maxwait") * 1000000 + app_pool(c, "maxwait_us");
	ck_assert_msg(w2 > w1 && w2 >= 200000, "maxwait did not grow: %ld then %ld us", w1, w2);
	PGresult *res;
	int row = clients_row_in_state(c, "waiting", &res);
	ck_assert_msg(row >= 0, "no client in state waiting");
	ck_assert_str_eq(PQgetvalue(res, row, PQfnumber(res, "database")), "app");
	ck_assert_int_ge(strtol(PQgetvalue(res, row, PQfnumber(res, "wait_us")), NULL, 10) +
			strtol(PQgetvalue(res, row, PQfnumber(res, "wait")), NULL, 10),
		1);
	PQclear(res);
	row = clients_row_in_state(c, "active", &res);
	ck_assert_msg(row >= 0, "the holder is not active");
	PQclear(res);

	PQclear(PQexec(holder, "COMMIT"));
	PGresult *r = PQgetResult(waiter);
	ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
	ck_assert_str_eq(PQgetvalue(r, 0, 0), "42");
	PQclear(r);
	ck_assert_ptr_null(PQgetResult(waiter));
	ck_assert_int_eq(app_pool(c, "cl_waiting"), 0);
	res = show(c, "SHOW POOL_WAITS");
	row = find_row(res, "database", "app");
	ck_assert_int_ge(row, 0);
	ck_assert_int_ge(strtol(PQgetvalue(res, row, PQfnumber(res, "waited")), NULL, 10), 1);
	ck_assert_int_ge(strtol(PQgetvalue(res, row, PQfnumber(res, "max_wait_us")), NULL, 10),
		200000);
	ck_assert_int_ge(strtol(PQgetvalue(res, row, PQfnumber(res, "acquires")), NULL, 10), 2);
	PQclear(res);
	PQfinish(c);
	PQfinish(waiter);
	PQfinish(holder);
	harness_sluice_stop_ok(s);
}
END_TEST

/* Clients and servers are numbered from one sequence (PgBouncer's SHOW SOCKETS relies on it). */
START_TEST(test_clients_and_servers_share_one_id_sequence)
{
	struct harness_sluice *s = start(NULL, NULL);
	PGconn *c = harness_connect(s, ADMIN_CONN);
	PGconn *app = harness_connect(s, APP_CONN);
	free(harness_query_text(app, "SELECT 1"));
	long console = harness_show_long(c, "SHOW CLIENTS", "database", "pgbouncer", "id");
	long client = harness_show_long(c, "SHOW CLIENTS", "database", "app", "id");
	long server = harness_show_long(c, "SHOW SERVERS", "database", "app", "id");
	ck_assert_int_eq(client, console + 1);
	ck_assert_int_eq(server, client + 1);
	PQfinish(app);
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_show_servers_remote_pid_is_the_backend_pid)
{
	struct harness_sluice *s = start(NULL, NULL);
	PGconn *app = harness_connect(s, APP_CONN);
	char *pid = harness_query_text(app, "SELECT pg_backend_pid()");
	PGconn *c = harness_connect(s, ADMIN_CONN);
	PGresult *res = show(c, "SHOW SERVERS");
	int row = find_row(res, "remote_pid", pid);
	ck_assert_msg(row >= 0, "no server with remote_pid %s", pid);
	ck_assert_str_eq(PQgetvalue(res, row, PQfnumber(res, "type")), "S");
	ck_assert_str_eq(PQgetvalue(res, row, PQfnumber(res, "database")), "app");
	ck_assert_str_eq(PQgetvalue(res, row, PQfnumber(res, "user")), "md5user");
	PQclear(res);
	/* The client's row is linked to it, and in session mode it is active. */
	res = show(c, "SHOW CLIENTS");
	row = find_row(res, "database", "app");
	ck_assert_int_ge(row, 0);
	ck_assert_str_eq(PQgetvalue(res, row, PQfnumber(res, "state")), "active");
	ck_assert_str_eq(PQgetvalue(res, row, PQfnumber(res, "type")), "C");
	PQclear(res);
	free(pid);
	PQfinish(c);
	PQfinish(app);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_databases_users_and_config_reflect_the_ini)
{
	struct harness_sluice *s =
		start("default_pool_size = 7\nmax_client_conn = 55\nmax_db_connections = 9\n",
			"app = host=@PGHOST@ port=@PGPORT@ dbname=app pool_size=4\n"
			"other = host=@PGHOST@ port=@PGPORT@ dbname=app\n");
	PGconn *app = harness_connect(s, APP_CONN);
	free(harness_query_text(app, "SELECT 1"));
	PGconn *c = harness_connect(s, ADMIN_CONN);
	const char *q = "SHOW DATABASES";
	ck_assert_int_eq(harness_show_long(c, q, "name", "app", "pool_size"), 4);
	ck_assert_int_eq(harness_show_long(c, q, "name", "other", "pool_size"), 7);
	ck_assert_int_eq(harness_show_long(c, q, "name", "app", "current_connections"), 1);
	ck_assert_int_eq(harness_show_long(c, q, "name", "other", "current_connections"), 0);
	ck_assert_int_eq(harness_show_long(c, q, "name", "app", "current_client_connections"), 1);
	ck_assert_int_eq(harness_show_long(c, q, "name", "app", "max_connections"), 9);
	ck_assert_int_eq(harness_show_long(c, q, "name", "app", "paused"), 0);
	ck_assert_int_eq(harness_show_long(c, q, "name", "pgbouncer", "port"), s->port);
	char *v = harness_show_value(c, q, "name", "app", "database");
	ck_assert_str_eq(v, "app");
	free(v);
	/* Sorted by name. */
	PGresult *res = show(c, q);
	for (int i = 1; i < PQntuples(res); i++)
		ck_assert_msg(strcmp(PQgetvalue(res, i - 1, 0), PQgetvalue(res, i, 0)) < 0,
			"databases not sorted: %s before %s", PQgetvalue(res, i - 1, 0),
			PQgetvalue(res, i, 0));
	PQclear(res);

	ck_assert_int_eq(harness_show_long(c, "SHOW USERS", "name", "md5user", "current_connections"), 1);
	ck_assert_int_eq(
		harness_show_long(c, "SHOW USERS", "name", "md5user", "current_client_connections"), 2);
	v = harness_show_value(c, "SHOW USERS", "name", "md5user", "pool_size");
	ck_assert_str_eq(v, ""); /* unset: the empty string, as PgBouncer */
	free(v);
	v = harness_show_value(c, "SHOW USERS", "name", "pgbouncer", "name");
	ck_assert_ptr_nonnull(v);
	free(v);

	static const char *const cfg[][2] = {
		{ "default_pool_size", "7" }, { "max_client_conn", "55" },
		{ "max_db_connections", "9" }, { "auth_type", "md5" },
		{ "admin_users", "md5user" }, { "stats_users", "scramuser" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cfg); i++) {
		v = harness_show_value(c, "SHOW CONFIG", "key", cfg[i][0], "value");
		ck_assert_msg(v && strcmp(v, cfg[i][1]) == 0, "%s = %s, want %s", cfg[i][0],
			v ? v : "(no row)", cfg[i][1]);
		free(v);
	}
	v = harness_show_value(c, "SHOW CONFIG", "key", "listen_port", "changeable");
	ck_assert_str_eq(v, "no");
	free(v);
	v = harness_show_value(c, "SHOW CONFIG", "key", "default_pool_size", "changeable");
	ck_assert_str_eq(v, "yes");
	free(v);
	res = show(c, "SHOW CONFIG");
	for (int i = 1; i < PQntuples(res); i++)
		ck_assert_msg(strcmp(PQgetvalue(res, i - 1, 0), PQgetvalue(res, i, 0)) < 0,
			"config not sorted: %s before %s", PQgetvalue(res, i - 1, 0),
			PQgetvalue(res, i, 0));
	PQclear(res);
	PQfinish(c);
	PQfinish(app);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_user_overrides_show_in_users_and_pools)
{
	/* The harness writes an empty [users] after the databases; a section may repeat. */
	struct harness_sluice *s = start(NULL, "app = host=@PGHOST@ port=@PGPORT@ dbname=app\n"
					       "[users]\n"
					       "md5user = pool_size=3 pool_mode=transaction "
					       "reserve_pool_size=2\n"
					       "trustuser =\n");
	PGconn *app = harness_connect(s, APP_CONN);
	free(harness_query_text(app, "SELECT 1"));
	PGconn *c = harness_connect(s, ADMIN_CONN);
	char *v = harness_show_value(c, "SHOW USERS", "name", "md5user", "pool_size");
	ck_assert_str_eq(v, "        3"); /* PgBouncer's %9d */
	free(v);
	v = harness_show_value(c, "SHOW USERS", "name", "md5user", "reserve_pool_size");
	ck_assert_str_eq(v, "        2");
	free(v);
	/* An entry that sets nothing shows blanks, not the previous row's values. */
	v = harness_show_value(c, "SHOW USERS", "name", "trustuser", "pool_size");
	ck_assert_str_eq(v, "");
	free(v);
	v = harness_show_value(c, "SHOW USERS", "name", "trustuser", "reserve_pool_size");
	ck_assert_str_eq(v, "");
	free(v);
	v = harness_show_value(c, "SHOW USERS", "name", "md5user", "pool_mode");
	ck_assert_str_eq(v, "transaction");
	free(v);
	PGresult *res = show(c, "SHOW POOLS");
	int row = find_row(res, "user", "md5user");
	ck_assert_int_ge(row, 0);
	ck_assert_str_eq(PQgetvalue(res, row, PQfnumber(res, "pool_mode")), "transaction");
	/* Idle between transactions, the client still counts as active. */
	ck_assert_str_eq(PQgetvalue(res, row, PQfnumber(res, "cl_active")), "1");
	ck_assert_str_eq(PQgetvalue(res, row, PQfnumber(res, "sv_idle")), "1");
	PQclear(res);
	res = show(c, "SHOW USERS");
	for (int i = 1; i < PQntuples(res); i++)
		ck_assert_msg(strcmp(PQgetvalue(res, i - 1, 0), PQgetvalue(res, i, 0)) < 0,
			"users not sorted: %s before %s", PQgetvalue(res, i - 1, 0),
			PQgetvalue(res, i, 0));
	ck_assert_msg(find_row(res, "name", "pgbouncer") >= 0, "no pgbouncer user row");
	PQclear(res);
	PQfinish(c);
	PQfinish(app);
	harness_sluice_stop_ok(s);
}
END_TEST

/* ---- access ------------------------------------------------------------------------- */

/*
 * The control commands' arguments are checked before anything runs, with
 * the same answers for every command of a kind (the command table's
 * argument column); SHOW HELP names every command.
 */
START_TEST(test_control_command_arguments_are_checked_by_kind)
{
	static const struct {
		const char *sql;
		const char *error; /* "SQLSTATE message" prefix of the answer */
	} cases[] = {
		{ "FROBNICATE", "08P01 invalid command 'FROBNICATE', use SHOW HELP;" },
		{ "DISABLE", "08P01 disable needs a database name" },
		{ "ENABLE", "08P01 enable needs a database name" },
		{ "PAUSE nosuchdb", "08P01 no such database: nosuchdb" },
		{ "RECONNECT nosuchdb", "08P01 no such database: nosuchdb" },
		{ "WAIT_CLOSE nosuchdb", "08P01 no such database: nosuchdb" },
		{ "KILL_CLIENT abc", "08P01 invalid client pointer supplied" },
		{ "KILL_CLIENT 999999", "08P01 client not found: 999999" },
		{ "SHUTDOWN NOW", "08P01 SHUTDOWN takes WAIT_FOR_SERVERS or WAIT_FOR_CLIENTS" },
		{ "SUSPEND now", "08P01 SUSPEND takes no argument" },
		{ "SHOW", "08P01 SHOW needs an argument" },
		{ "SHOW FDS", "55000 SHOW FDS needs the pooler suspended: run SUSPEND first" },
	};
	struct harness_sluice *s = start(NULL, NULL);
	PGconn *c = harness_connect(s, ADMIN_CONN);
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *e = harness_query_error(c, cases[i].sql);
		ck_assert_msg(strncmp(e, cases[i].error, strlen(cases[i].error)) == 0, "%s: %s",
			      cases[i].sql, e);
		free(e);
	}
	/* Nothing was paused or disabled by a refused command. */
	ck_assert_int_eq(harness_show_long(c, "SHOW DATABASES", "name", "app", "paused"), 0);
	ck_assert_int_eq(harness_show_long(c, "SHOW DATABASES", "name", "app", "disabled"), 0);

	notice_buf[0] = '\0';
	PQsetNoticeReceiver(c, on_notice, NULL);
	PQclear(PQexec(c, "SHOW HELP"));
	static const char *const named[] = {
		"SHOW HELP|CONFIG|USERS|DATABASES|POOLS|CLIENTS|SERVERS|FDS|SOCKETS|ACTIVE_SOCKETS",
		"SHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS", "SHOW POOL_WAITS|WORKERS|PINS (sluice)",
		"\tRELOAD\n", "\tPAUSE [<db>]", "\tDISABLE <db>", "\tKILL_CLIENT <client_id>",
		"\tSHUTDOWN [WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS]", "\tSUSPEND",
	};
	for (size_t i = 0; i < ARRAY_SIZE(named); i++)
		ck_assert_msg(strstr(notice_buf, named[i]), "SHOW HELP lacks %s: %s", named[i],
			      notice_buf);
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_stats_user_may_show_but_not_control)
{
	struct harness_sluice *s = start(NULL, NULL);
	PGconn *st = harness_connect(s, STATS_CONN);
	PQclear(show(st, "SHOW POOLS"));
	PQclear(show(st, "SHOW STATS"));
	static const char *const refused[] = {
		"PAUSE", "SET default_pool_size = 3", "RELOAD", "DISABLE app", "KILL app",
		"SHUTDOWN", "SUSPEND", "SHOW FDS",
	};
	for (size_t i = 0; i < ARRAY_SIZE(refused); i++) {
		char *e = harness_query_error(st, refused[i]);
		ck_assert_msg(strncmp(e, "42501", 5) == 0, "%s: %s", refused[i], e);
		free(e);
	}
	/* Nothing happened. */
	char *v = harness_show_value(st, "SHOW STATE", "key", "paused", "value");
	ck_assert_str_eq(v, "no");
	free(v);
	v = harness_show_value(st, "SHOW CONFIG", "key", "default_pool_size", "value");
	ck_assert_str_eq(v, "20");
	free(v);
	ck_assert_int_eq(harness_show_long(st, "SHOW DATABASES", "name", "app", "disabled"), 0);
	PGconn *app = harness_connect(s, APP_CONN);
	char *one = harness_query_text(app, "SELECT 1");
	ck_assert_str_eq(one, "1");
	free(one);
	PQfinish(app);
	PQfinish(st);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_console_login_refusals_carry_their_sqlstates)
{
	struct harness_sluice *s = start(NULL, NULL);
	/* libpq does not expose a failed login's SQLSTATE; its message must say why. */
	char *e = harness_connect_error(s, "dbname=pgbouncer user=plainuser password=plainuserpw");
	ck_assert_msg(strstr(e, "not allowed"), "%s", e);
	free(e);
	e = harness_connect_error(s, "dbname=pgbouncer user=md5user password=wrong");
	ck_assert_msg(strstr(e, "password authentication failed"), "%s", e);
	free(e);
	PQfinish(harness_connect(s, ADMIN_CONN));
	harness_sluice_stop_ok(s);
}
END_TEST

/* Sends a StartupMessage for user/db and answers a password request with password. */
static char *raw_login_sqlstate(int port, const char *user, const char *db, const char *password)
{
	int fd = harness_raw_connect(port);
	harness_raw_send_startup(fd, user, db);
	char *state = NULL;
	for (int msgs = 0; msgs < 10 && !state; msgs++) {
		struct harness_msg m;
		ck_assert_msg(harness_raw_read_msg(fd, &m),
			"connection closed without an ErrorResponse");
		ck_assert_uint_lt(m.len, 4096);
		if (m.type == 'R') {
			ck_assert_uint_ge(m.len, 4);
			uint32_t auth = get_be32((const uint8_t *)m.body);
			ck_assert_msg(auth == 3 || auth == 5, "unexpected auth request %u", auth);
			/* An MD5 answer that was not computed is wrong; that is the point. */
			const char *pw = auth == 5 ? "md500000000000000000000000000000000" : password;
			size_t pl = strlen(pw) + 1;
			uint8_t out[80] = { 'p' };
			ck_assert_uint_le(pl + 5, sizeof(out));
			put_be32(out + 1, (uint32_t)(pl + 4));
			memcpy(out + 5, pw, pl);
			harness_write_all(fd, out, pl + 5);
		} else if (m.type == 'E') {
			state = xstrdup(harness_msg_field(&m, 'C'));
			ck_assert_str_ne(state, "");
		}
		free(m.body);
	}
	close(fd);
	ck_assert_ptr_nonnull(state);
	return state;
}

START_TEST(test_console_login_sqlstates_on_the_wire)
{
	struct harness_sluice *s = start(NULL, NULL);
	char *st = raw_login_sqlstate(s->port, "plainuser", "pgbouncer", "plainuserpw");
	ck_assert_str_eq(st, "28000");
	free(st);
	st = raw_login_sqlstate(s->port, "md5user", "pgbouncer", "wrong");
	ck_assert_str_eq(st, "28P01");
	free(st);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_peer_login_as_pgbouncer_over_the_unix_socket_needs_no_password)
{
	struct harness_sluice *s = start(NULL, NULL);
	/*
	 * harness_sluice_start() returns once TCP accepts, which the kernel does
	 * before sluice's loop runs; an answered TCP login proves the unix
	 * listener is up too.
	 */
	PQfinish(harness_connect(s, ADMIN_CONN));
	char conninfo[512];
	snprintf(conninfo, sizeof(conninfo), "host=%s port=%d dbname=pgbouncer user=pgbouncer",
		s->dir, s->port);
	PGconn *c = harness_connect(s, conninfo);
	PQclear(show(c, "SHOW POOLS"));
	/* Over the unix socket, remote_pid is the peer's pid: this process. */
	char me[32];
	snprintf(me, sizeof(me), "%d", (int)getpid());
	char *rp = harness_show_value(c, "SHOW CLIENTS", "user", "pgbouncer", "remote_pid");
	ck_assert_ptr_nonnull(rp);
	ck_assert_str_eq(rp, me);
	free(rp);
	rp = harness_show_value(c, "SHOW CLIENTS", "user", "pgbouncer", "addr");
	ck_assert_str_eq(rp, "unix");
	free(rp);
	/* It is an admin. */
	PGresult *res = PQexec(c, "RELOAD");
	ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "%s", PQresultErrorMessage(res));
	ck_assert_str_eq(PQcmdStatus(res), "RELOAD");
	PQclear(res);
	PQfinish(c);
	/* Over TCP there are no peer credentials. */
	char *e = harness_connect_error(s, "dbname=pgbouncer user=pgbouncer");
	free(e);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_auth_type_any_lets_unknown_users_in_as_stats_users)
{
	struct harness_sluice *s = harness_sluice_start("auth_type = any\nadmin_users = md5user\n",
		"app = host=@PGHOST@ port=@PGPORT@ dbname=app user=trustuser\n", NULL);
	PGconn *c = harness_connect(s, "dbname=pgbouncer user=nobody_in_particular");
	PQclear(show(c, "SHOW POOLS"));
	char *e = harness_query_error(c, "PAUSE");
	ck_assert_msg(strncmp(e, "42501", 5) == 0, "%s", e);
	free(e);
	PQfinish(c);
	c = harness_connect(s, "dbname=pgbouncer user=md5user");
	PGresult *res = PQexec(c, "RELOAD");
	ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "%s", PQresultErrorMessage(res));
	PQclear(res);
	PQfinish(c);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

static Suite *admin_console_suite(void)
{
	Suite *suite = suite_create("admin_console");
	TCase *tc = harness_tcase("show");
	tcase_add_test(tc, test_every_show_has_the_reference_columns_and_types);
	tcase_add_test(tc, test_totals_lists_and_state_rows_are_in_reference_order);
	tcase_add_test(tc, test_show_help_is_a_notice_with_tag_show);
	tcase_add_test(tc, test_select_alias_case_and_semicolon_are_accepted);
	tcase_add_test(tc, test_fake_gucs_answer_show_and_ignore_set);
	tcase_add_test(tc, test_extended_protocol_is_refused_on_the_console);
	tcase_add_test(tc, test_show_version_and_server_version_are_parseable);
	suite_add_tcase(suite, tc);
	tc = harness_tcase("values");
	tcase_add_test(tc, test_stats_totals_count_queries_and_bytes);
	tcase_add_test(tc, test_stats_averages_become_nonzero_after_a_period_of_load);
	tcase_add_test(tc, test_log_stats_writes_a_stats_line_every_period);
	tcase_add_test(tc, test_waiting_client_shows_in_pools_clients_and_pool_waits);
	tcase_add_test(tc, test_show_servers_remote_pid_is_the_backend_pid);
	tcase_add_test(tc, test_clients_and_servers_share_one_id_sequence);
	tcase_add_test(tc, test_databases_users_and_config_reflect_the_ini);
	tcase_add_test(tc, test_user_overrides_show_in_users_and_pools);
	suite_add_tcase(suite, tc);
	tc = harness_tcase("access");
	tcase_add_test(tc, test_control_command_arguments_are_checked_by_kind);
	tcase_add_test(tc, test_stats_user_may_show_but_not_control);
	tcase_add_test(tc, test_console_login_refusals_carry_their_sqlstates);
	tcase_add_test(tc, test_console_login_sqlstates_on_the_wire);
	tcase_add_test(tc, test_peer_login_as_pgbouncer_over_the_unix_socket_needs_no_password);
	tcase_add_test(tc, test_auth_type_any_lets_unknown_users_in_as_stats_users);
	suite_add_tcase(suite, tc);
	return suite;
}

int main(void)
{
	return harness_run_suite(admin_console_suite());
}
