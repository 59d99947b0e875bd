/*
 * admin.c - the admin console (see admin.h): PgBouncer's commands (their
 * grammar is console.c's), its SHOW result sets with the same columns, order and wire types
 * (../shared/reference/pgbouncer-console.md, master/1.26 column set), its
 * control commands, and sluice's own SHOW POOL_WAITS.
 *
 * It owns no connection state: console clients are struct client, pools,
 * servers and statistics are read through their modules' functions, and
 * control commands act through those modules too (process_reload,
 * process_shutdown, server_mark_close_needed, client_fail...).
 */
#include "sluice/admin.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "sluice/cancel.h"
#include "sluice/client.h"
#include "sluice/console.h"
#include "sluice/log.h"
#include "sluice/pkt.h"
#include "sluice/pool.h"
#include "sluice/process.h"
#include "sluice/server.h"
#include "sluice/session.h"
#include "sluice/sqlstate.h"
#include "sluice/stats.h"
#include "sluice/takeover.h"
#include "sluice_version.h"

/*
 * The console speaks for the whole process: every command runs with the
 * world stopped (crew.h), reads every worker's connections and pools
 * (process_client_next and kin) and acts on every worker
 * (PROCESS_EACH_WORKER).
 */
static struct crew *crew_of(struct worker *w)
{
	return w->process ? &w->process->crew : NULL;
}


/* ---- access ---------------------------------------------------------------------- */

bool admin_is_console_db(const char *db)
{
	return strcmp(db, "pgbouncer") == 0 || strcmp(db, "sluice") == 0;
}

enum admin_role admin_role_of(const struct config *cfg, const char *user, bool peer_is_self)
{
	if (peer_is_self && strcmp(user, "pgbouncer") == 0)
		return ADMIN_ROLE_ADMIN;
	if (config_list_contains(cfg->admin_users, user))
		return ADMIN_ROLE_ADMIN;
	if (config_list_contains(cfg->stats_users, user))
		return ADMIN_ROLE_STATS;
	if (cfg->auth_type == AUTH_TYPE_ANY)
		return ADMIN_ROLE_STATS;
	return ADMIN_ROLE_NONE;
}

/* The console's entry: never in any config, so a reload cannot take it away. */
static const struct config_database admin_db = {
	.name = (char *)ADMIN_DB,
	.port = -1,
	.pool_size = 0,
	.min_pool_size = 0,
	.reserve_pool_size = 0,
	.max_db_connections = -1,
	.pool_mode = POOL_MODE_STATEMENT,
	.server_lifetime = -1,
};

struct pool *admin_pool(struct worker *w)
{
	if (!w->admin_pool) {
		w->admin_pool = pool_get(w, ADMIN_DB, ADMIN_DB, &admin_db);
		w->admin_pool->is_admin = true;
	}
	return w->admin_pool;
}

/* ---- result sets ------------------------------------------------------------------- */

/*
 * Column types as PgBouncer's pktbuf writes them: s text, i int4, q int8,
 * N numeric, T text holding a local timestamp.
 */
struct column {
	char type;
	const char *name;
};

#define COL(t, n) { #t[0], #n },

/* Rows laid out to be read, one column per X(): */
/* clang-format off */
#define POOLS_COLUMNS(X)                                                                           \
	X(s, database) X(s, user) X(i, cl_active) X(i, cl_waiting) X(i, cl_active_cancel_req)     \
	X(i, cl_waiting_cancel_req) X(i, sv_active) X(i, sv_active_cancel) X(i, sv_being_canceled) \
	X(i, sv_idle) X(i, sv_used) X(i, sv_tested) X(i, sv_login) X(i, maxwait) X(i, maxwait_us)  \
	X(s, pool_mode) X(s, load_balance_hosts)

#define SOCKET_COLUMNS(X)                                                                          \
	X(s, type) X(s, user) X(s, database) X(s, replication) X(s, state) X(s, addr) X(i, port)   \
	X(s, local_addr) X(i, local_port) X(T, connect_time) X(T, request_time) X(i, wait)         \
	X(i, wait_us) X(i, close_needed) X(s, ptr) X(s, link) X(i, remote_pid) X(s, tls)           \
	X(s, application_name) X(i, prepared_statements) X(i, id)

#define SOCKET_EXTRA_COLUMNS(X)                                                                    \
	X(i, recv_pos) X(i, pkt_pos) X(i, pkt_remain) X(i, send_pos) X(i, send_remain)             \
	X(i, pkt_avail) X(i, send_avail)

#define DATABASES_COLUMNS(X)                                                                       \
	X(s, name) X(s, host) X(i, port) X(s, database) X(s, force_user) X(i, pool_size)           \
	X(i, min_pool_size) X(i, reserve_pool_size) X(i, server_lifetime) X(s, pool_mode)          \
	X(s, load_balance_hosts) X(i, max_connections) X(i, current_connections)                   \
	X(i, max_client_connections) X(i, current_client_connections) X(i, paused) X(i, disabled)

#define USERS_COLUMNS(X)                                                                           \
	X(s, name) X(s, pool_size) X(s, reserve_pool_size) X(s, pool_mode)                         \
	X(i, max_user_connections) X(i, current_connections) X(i, max_user_client_connections)     \
	X(i, current_client_connections)

#define POOL_WAITS_COLUMNS(X)                                                                      \
	X(s, database) X(s, user) X(q, acquires) X(q, waited) X(q, wait_time_us)                   \
	X(q, max_wait_us) X(q, timeouts) X(N, reuse_ratio) X(q, servers_opened)                    \
	X(q, closed_lifetime) X(q, closed_idle) X(q, closed_error) X(q, closed_reload)             \
	X(q, closed_other)

static const struct column pools_columns[] = { POOLS_COLUMNS(COL) };
static const struct column socket_columns[] = { SOCKET_COLUMNS(COL) SOCKET_EXTRA_COLUMNS(COL) };
static const struct column databases_columns[] = { DATABASES_COLUMNS(COL) };
static const struct column users_columns[] = { USERS_COLUMNS(COL) };
static const struct column pool_waits_columns[] = { POOL_WAITS_COLUMNS(COL) };
static const struct column pins_columns[] = {
	{ 's', "database" }, { 's', "user" },	    { 'i', "client_id" },	{ 'i', "server_id" },
	{ 'i', "remote_pid" }, { 's', "pins" }, { 'i', "pinned_seconds" },
};
static const struct column workers_columns[] = {
	{ 'i', "worker" },	     { 'i', "clients" },	   { 'i', "waiting_clients" },
	{ 'i', "servers" },	     { 'i', "idle_servers" },	   { 'q', "servers_moved_in" },
	{ 'q', "servers_moved_out" }, { 'N', "loop_busy_percent" }, { 'q', "world_stops" },
	{ 's', "io_uring" },
};
#define SOCKET_BASE_COUNT 21

static const struct column config_columns[] = {
	{ 's', "key" }, { 's', "value" }, { 's', "default" }, { 's', "changeable" },
};
static const struct column lists_columns[] = { { 's', "list" }, { 'i', "items" } };
static const struct column mem_columns[] = {
	{ 's', "name" }, { 'i', "size" }, { 'i', "used" }, { 'i', "free" }, { 'i', "memtotal" },
};
static const struct column state_columns[] = { { 's', "key" }, { 's', "value" } };
static const struct column version_columns[] = { { 's', "version" } };
static const struct column totals_columns[] = { { 's', "name" }, { 'N', "value" } };
static const struct column dns_hosts_columns[] = {
	{ 's', "hostname" }, { 'q', "ttl" }, { 's', "addrs" },
};
static const struct column dns_zones_columns[] = {
	{ 's', "zonename" }, { 'q', "serial" }, { 'i', "count" },
};
static const struct column peers_columns[] = {
	{ 'i', "peer_id" }, { 's', "host" }, { 'i', "port" }, { 'i', "pool_size" },
};
static const struct column peer_pools_columns[] = {
	{ 'i', "peer_id" }, { 'i', "cl_active_cancel_req" }, { 'i', "cl_waiting_cancel_req" },
	{ 'i', "sv_active_cancel" }, { 'i', "sv_login" },
};

/* clang-format on */

/* One response being built: RowDescription, DataRows, then the tag. */
struct rs {
	struct buf_out out;
	const struct column *cols;
	int ncols;
	int col; /* next column of the current row */
	size_t row_start;
	int rows;
};

static uint32_t type_oid(char t)
{
	switch (t) {
	case 'i':
		return 23;
	case 'q':
		return 20;
	case 'N':
		return 1700;
	case 'b':
		return 17;
	default:
		return 25;
	}
}

static int16_t type_len(char t)
{
	switch (t) {
	case 'i':
		return 4;
	case 'q':
		return 8;
	default:
		return -1;
	}
}

static void rs_begin(struct rs *r, const struct column *cols, int ncols)
{
	buf_out_init(&r->out);
	r->cols = cols;
	r->ncols = ncols;
	r->rows = 0;
	size_t m = pkt_begin(&r->out, PKT_RowDescription);
	buf_out_put_be16(&r->out, (uint16_t)ncols);
	for (int i = 0; i < ncols; i++) {
		buf_out_put_cstr(&r->out, cols[i].name);
		buf_out_put_be32(&r->out, 0); /* table oid */
		buf_out_put_be16(&r->out, 0); /* attnum */
		buf_out_put_be32(&r->out, type_oid(cols[i].type));
		buf_out_put_be16(&r->out, (uint16_t)type_len(cols[i].type));
		buf_out_put_be32(&r->out, 0xffffffffu); /* typmod -1 */
		buf_out_put_be16(&r->out, 0); /* text format */
	}
	pkt_end(&r->out, m);
}

static void row_begin(struct rs *r)
{
	r->row_start = pkt_begin(&r->out, PKT_DataRow);
	buf_out_put_be16(&r->out, (uint16_t)r->ncols);
	r->col = 0;
}

static void put_text(struct rs *r, const char *s)
{
	r->col++;
	if (!s) {
		buf_out_put_be32(&r->out, 0xffffffffu);
		return;
	}
	size_t n = strlen(s);
	buf_out_put_be32(&r->out, (uint32_t)n);
	buf_out_put(&r->out, s, n);
}

static void put_int(struct rs *r, long long v)
{
	char b[32];
	snprintf(b, sizeof(b), "%lld", v);
	put_text(r, b);
}

static void put_uint(struct rs *r, unsigned long long v)
{
	char b[32];
	snprintf(b, sizeof(b), "%llu", v);
	put_text(r, b);
}

/* A wall-clock time as PgBouncer prints it: local "YYYY-MM-DD HH:MM:SS TZ". */
static void put_time(struct rs *r, uint64_t t)
{
	char b[64];
	time_t tt = (time_t)t;
	struct tm tm;
	localtime_r(&tt, &tm);
	strftime(b, sizeof(b), "%Y-%m-%d %H:%M:%S %Z", &tm);
	put_text(r, b);
}

static void put_ptr(struct rs *r, const void *p)
{
	char b[32] = "";
	if (p)
		snprintf(b, sizeof(b), "%p", p);
	put_text(r, b);
}

static void row_end(struct rs *r)
{
	while (r->col < r->ncols)
		put_text(r, NULL);
	pkt_end(&r->out, r->row_start);
	r->rows++;
}

/* Sends the result with its tag and ReadyForQuery. */
static void rs_finish(struct client *c, struct rs *r, const char *tag)
{
	pkt_put_CommandComplete(&r->out, tag);
	pkt_put_ReadyForQuery(&r->out, 'I');
	stream_write(&c->stream, r->out.data, r->out.len);
	buf_out_deinit(&r->out);
}

void admin_send_complete(struct client *c, const char *tag)
{
	struct buf_out out;
	buf_out_init(&out);
	pkt_put_CommandComplete(&out, tag);
	pkt_put_ReadyForQuery(&out, 'I');
	stream_write(&c->stream, out.data, out.len);
	buf_out_deinit(&out);
}

void admin_send_error(struct client *c, const char *sqlstate, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	struct buf_out out;
	buf_out_init(&out);
	pkt_put_ErrorResponse(&out, "ERROR", sqlstate, msg);
	pkt_put_ReadyForQuery(&out, 'I');
	stream_write(&c->stream, out.data, out.len);
	buf_out_deinit(&out);
}

/* ---- SHOW commands ------------------------------------------------------------------ */

/* The load_balance_hosts column: set only for a database with a host list, as PgBouncer. */
static const char *load_balance_of(const struct config_database *db)
{
	return db->n_hosts > 1 ? config_load_balance_hosts_name(db->load_balance_hosts) : NULL;
}

static void show_pools(struct client *c)
{
	struct rs r;
	int n;
	struct pool_sum *v = process_pool_sums(c->w, &n);
	rs_begin(&r, pools_columns, ARRAY_SIZE(pools_columns));
	for (int i = 0; i < n; i++) {
		const struct pool_counts pc = v[i].counts;
		row_begin(&r);
		put_text(&r, v[i].pool->db_name);
		put_text(&r, v[i].pool->user_name);
		put_int(&r, pc.cl_active);
		put_int(&r, pc.cl_waiting);
		/* sluice forwards a cancel at once: none waits, and each uses one connection. */
		put_int(&r, pc.cancels_active);
		put_int(&r, 0);
		put_int(&r, pc.sv_active);
		put_int(&r, pc.cancels_active);
		put_int(&r, pc.sv_being_canceled);
		put_int(&r, pc.sv_idle);
		put_int(&r, 0);
		put_int(&r, pc.sv_tested);
		put_int(&r, pc.sv_login);
		put_int(&r, (long long)(pc.maxwait_us / 1000000));
		put_int(&r, (long long)(pc.maxwait_us % 1000000));
		put_text(&r, config_pool_mode_name(pool_mode_of(v[i].pool)));
		put_text(&r, load_balance_of(v[i].pool->db));
		row_end(&r);
	}
	free(v);
	rs_finish(c, &r, "SHOW");
}

/* Sums of one database's pools: totals and the last complete period. */
struct db_sums {
	const char *name;
	struct stats_counters total, start, end;
};

/* Databases that have pools, sorted, with their sums; the caller frees it. */
static struct db_sums *database_sums(struct worker *w, int *n)
{
	int np;
	struct pool_sum *v = process_pool_sums(w, &np);
	struct db_sums *s = xcalloc((size_t)(np ? np : 1), sizeof(*s));
	int k = -1;
	for (int i = 0; i < np; i++) {
		if (k < 0 || strcmp(s[k].name, v[i].pool->db_name) != 0)
			s[++k].name = v[i].pool->db_name;
		stats_counters_add(&s[k].total, &v[i].stats.total);
		stats_counters_add(&s[k].start, &v[i].stats.period_start);
		stats_counters_add(&s[k].end, &v[i].stats.period_end);
	}
	free(v);
	*n = k + 1;
	return s;
}

static double period_s(const struct worker *w)
{
	return (double)w->cfg->stats_period / 1000.0;
}

static void put_counters(struct rs *r, const struct stats_counters *s)
{
#define X(name) put_uint(r, s->name);
	STATS_COUNTERS(X)
#undef X
}

/* SHOW STATS, STATS_TOTALS, STATS_AVERAGES share rows; what differs is the columns. */
static void show_stats(struct client *c, bool totals, bool averages, const char *prefix_t,
		       const char *prefix_a)
{
	static const char *const base[] = {
#define X(name) #name,
		STATS_COUNTERS(X)
#undef X
	};
	/* PgBouncer's names for the byte columns differ by command. */
	struct column cols[1 + 2 * ARRAY_SIZE(base)];
	char names[2 * ARRAY_SIZE(base)][48];
	int nc = 0, k = 0;
	cols[nc++] = (struct column){ 's', "database" };
	for (int pass = 0; pass < 2; pass++) {
		if ((pass == 0 && !totals) || (pass == 1 && !averages))
			continue;
		const char *prefix = pass == 0 ? prefix_t : prefix_a;
		for (size_t i = 0; i < ARRAY_SIZE(base); i++) {
			const char *b = base[i];
			bool stats_cmd = totals && averages;
			if (stats_cmd && strcmp(b, "bytes_received") == 0)
				b = pass == 0 ? "received" : "recv";
			if (stats_cmd && strcmp(b, "bytes_sent") == 0)
				b = "sent";
			/* STATS_AVERAGES prefixes only the prepared-statement and login counters. */
			const char *p = prefix;
			if (!stats_cmd && pass == 1 && i < 8)
				p = "";
			snprintf(names[k], sizeof(names[k]), "%s%s", p, b);
			cols[nc++] = (struct column){ 'N', names[k++] };
		}
	}
	struct rs r;
	int n;
	struct db_sums *s = database_sums(c->w, &n);
	rs_begin(&r, cols, nc);
	for (int i = 0; i < n; i++) {
		row_begin(&r);
		put_text(&r, s[i].name);
		if (totals)
			put_counters(&r, &s[i].total);
		if (averages) {
			struct stats_counters avg;
			stats_average(&s[i].start, &s[i].end, period_s(c->w), &avg);
			put_counters(&r, &avg);
		}
		row_end(&r);
	}
	free(s);
	rs_finish(c, &r, "SHOW");
}

static void show_totals(struct client *c)
{
	static const char *const total_names[] = {
		"total_server_assignment_count",
		"total_xact_count",
		"total_query_count",
		"total_client_bytes",
		"total_server_bytes",
		"total_xact_time",
		"total_query_time",
		"total_wait_time",
		"total_ps_client_parse_count",
		"total_ps_server_parse_count",
		"total_ps_bind_count",
		"total_client_login_count",
	};
	static const char *const avg_names[] = {
		"avg_server_assignment_count",
		"avg_xact_count",
		"avg_query_count",
		"avg_client_bytes",
		"avg_server_bytes",
		"avg_xact_time",
		"avg_query_time",
		"avg_wait_time",
		"avg_ps_client_parse_count",
		"avg_ps_server_parse_count",
		"avg_ps_bind_count",
		"avg_client_login_count",
	};
	struct stats_counters total = { 0 }, start = { 0 }, end = { 0 }, avg;
	int n;
	struct db_sums *s = database_sums(c->w, &n);
	for (int i = 0; i < n; i++) {
		stats_counters_add(&total, &s[i].total);
		stats_counters_add(&start, &s[i].start);
		stats_counters_add(&end, &s[i].end);
	}
	free(s);
	stats_average(&start, &end, period_s(c->w), &avg);
	uint64_t tv[] = {
#define X(name) total.name,
		STATS_COUNTERS(X)
#undef X
	};
	uint64_t av[] = {
#define X(name) avg.name,
		STATS_COUNTERS(X)
#undef X
	};
	struct rs r;
	rs_begin(&r, totals_columns, ARRAY_SIZE(totals_columns));
	for (size_t i = 0; i < ARRAY_SIZE(total_names); i++) {
		row_begin(&r);
		put_text(&r, total_names[i]);
		put_uint(&r, tv[i]);
		row_end(&r);
	}
	for (size_t i = 0; i < ARRAY_SIZE(avg_names); i++) {
		row_begin(&r);
		put_text(&r, avg_names[i]);
		put_uint(&r, av[i]);
		row_end(&r);
	}
	rs_finish(c, &r, "SHOW");
}

static void put_socket_row(struct rs *r, const struct conn_info *ci, bool extra)
{
	char type[2] = { ci->type, 0 };
	row_begin(r);
	put_text(r, type);
	put_text(r, ci->user ? ci->user : "(nouser)");
	put_text(r, ci->database ? ci->database : "(nodb)");
	put_text(r, pkt_replication_name((enum pkt_replication)ci->replication));
	put_text(r, extra ? ci->socket_state : ci->state_name);
	put_text(r, ci->addr);
	put_int(r, ci->port);
	put_text(r, ci->local_addr);
	put_int(r, ci->local_port);
	put_time(r, ci->connect_time);
	put_time(r, ci->request_time);
	put_int(r, (long long)(ci->wait_us / 1000000));
	put_int(r, (long long)(ci->wait_us % 1000000));
	put_int(r, ci->close_needed);
	put_ptr(r, ci->ptr);
	put_ptr(r, ci->link);
	put_int(r, ci->remote_pid);
	put_text(r, ci->tls);
	put_text(r, ci->application_name ? ci->application_name : "");
	put_int(r, ci->prepared_statements);
	put_int(r, (long long)ci->id);
	if (extra) {
		put_int(r, ci->recv_avail); /* recv_pos */
		put_int(r, 0); /* pkt_pos */
		put_int(r, ci->pkt_remain);
		put_int(r, ci->send_pending); /* send_pos */
		put_int(r, 0); /* send_remain: always 0 in PgBouncer too */
		put_int(r, ci->recv_avail); /* pkt_avail */
		put_int(r, ci->send_pending); /* send_avail */
	}
	row_end(r);
}

/* SHOW CLIENTS / SERVERS / SOCKETS / ACTIVE_SOCKETS. */
static void show_sockets(struct client *c, bool clients, bool servers, bool extra, bool only_busy)
{
	struct rs r;
	struct worker *w = c->w;
	rs_begin(&r, socket_columns, extra ? ARRAY_SIZE(socket_columns) : SOCKET_BASE_COUNT);
	struct conn_info ci;
	if (clients) {
		for (struct client *x = process_client_next(w, NULL); x;
		     x = process_client_next(w, x)) {
			if (x->state == CLIENT_CLOSED || (x->state == CLIENT_LOGIN && !extra))
				continue;
			client_info(x, &ci);
			if (only_busy && !ci.recv_avail && !ci.send_pending)
				continue;
			put_socket_row(&r, &ci, extra);
		}
	}
	if (servers) {
		for (struct server *s = process_server_next(w, NULL); s;
		     s = process_server_next(w, s)) {
			if (s->state == SERVER_CLOSED)
				continue;
			server_info(s, &ci);
			if (only_busy && !ci.recv_avail && !ci.send_pending)
				continue;
			put_socket_row(&r, &ci, extra);
		}
	}
	rs_finish(c, &r, "SHOW");
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void put_database_row(struct rs *r, struct worker *w, const char *name,
			     const struct config_database *db)
{
	const struct config *cfg = w->cfg;
	struct db_state *ds = worker_db_state(w, name, false);
	bool is_admin = db == &admin_db;
	row_begin(r);
	put_text(r, name);
	put_text(r, is_admin ? NULL : (db->host ? db->host : NULL));
	put_int(r, is_admin ? cfg->listen_port : (db->port > 0 ? db->port : 5432));
	put_text(r, is_admin ? ADMIN_DB : (db->dbname ? db->dbname : name));
	put_text(r, db->user);
	put_int(r, is_admin ? 2 : (db->pool_size >= 0 ? db->pool_size : cfg->default_pool_size));
	put_int(r,
		is_admin ? 0 : (db->min_pool_size >= 0 ? db->min_pool_size : cfg->min_pool_size));
	put_int(r, is_admin ? 0
			    : (db->reserve_pool_size >= 0 ? db->reserve_pool_size
							  : cfg->reserve_pool_size));
	int64_t life = db->server_lifetime >= 0 ? db->server_lifetime : cfg->server_lifetime;
	put_int(r, is_admin ? 0 : (long long)(life / 1000));
	put_text(r, db->pool_mode >= 0 && !is_admin
			    ? config_pool_mode_name((enum pool_mode)db->pool_mode)
			    : (is_admin ? "statement" : NULL));
	put_text(r, load_balance_of(db));
	int max = db->max_db_connections >= 0 ? db->max_db_connections : cfg->max_db_connections;
	put_int(r, is_admin ? 0 : max);
	struct ledger *l = w->ledger;
	put_int(r, is_admin ? 0 : ledger_count_of(l, &l->db_servers, name));
	put_int(r, config_db_client_limit(cfg, is_admin ? NULL : db));
	put_int(r, ledger_count_of(l, &l->db_clients, name));
	put_int(r, (w->paused_all || (ds && ds->paused)) ? 1 : 0);
	put_int(r, ds && ds->disabled ? 1 : 0);
	row_end(r);
}

static void show_databases(struct client *c)
{
	struct worker *w = c->w;
	const struct config *cfg = w->cfg;
	/* Configured entries, plus names served through the "*" fallback, plus the console. */
	int cap = (int)HASH_COUNT(cfg->databases) + 1;
	for (struct pool *p = process_pool_next(w, NULL); p; p = process_pool_next(w, p))
		cap++;
	const char **names = xmalloc(sizeof(*names) * (size_t)cap);
	int n = 0;
	for (struct config_database *db = cfg->databases; db; db = db->hh.next)
		names[n++] = db->name;
	names[n++] = ADMIN_DB;
	for (struct pool *p = process_pool_next(w, NULL); p; p = process_pool_next(w, p)) {
		bool seen = false;
		for (int i = 0; i < n && !seen; i++)
			seen = strcmp(names[i], p->db_name) == 0;
		if (!seen)
			names[n++] = p->db_name;
	}
	qsort(names, (size_t)n, sizeof(*names), cmp_str);
	struct rs r;
	rs_begin(&r, databases_columns, ARRAY_SIZE(databases_columns));
	for (int i = 0; i < n; i++) {
		const struct config_database *db = strcmp(names[i], ADMIN_DB) == 0
							   ? &admin_db
							   : config_find_database(cfg, names[i]);
		if (db)
			put_database_row(&r, w, names[i], db);
	}
	free(names);
	rs_finish(c, &r, "SHOW");
}

/* Names copied out of the ledger (ledger_each), to use once its lock is let go. */
struct name_list {
	char **names;
	int n, cap;
};

static void name_list_add(void *arg, const char *name, int n)
{
	(void)n;
	struct name_list *nl = arg;
	if (nl->n == nl->cap) {
		nl->cap = nl->cap ? nl->cap * 2 : 16;
		nl->names = xrealloc(nl->names, sizeof(*nl->names) * (size_t)nl->cap);
	}
	nl->names[nl->n++] = xstrdup(name);
}

static void name_list_free(struct name_list *nl)
{
	for (int i = 0; i < nl->n; i++)
		free(nl->names[i]);
	free(nl->names);
}

static void show_users(struct client *c)
{
	struct worker *w = c->w;
	const struct config *cfg = w->cfg;
	int cap = (int)HASH_COUNT(cfg->users) + 1;
	if (w->userlist)
		cap += (int)HASH_COUNT(w->userlist->users);
	for (struct pool *p = process_pool_next(w, NULL); p; p = process_pool_next(w, p))
		cap++;
	struct name_list with_clients = { 0 };
	ledger_each(w->ledger, &w->ledger->user_clients, name_list_add, &with_clients);
	cap += with_clients.n;
	const char **names = xmalloc(sizeof(*names) * (size_t)cap);
	int n = 0;
#define ADD_NAME(nm)                                                                               \
	do {                                                                                       \
		bool seen_ = false;                                                                \
		for (int i_ = 0; i_ < n && !seen_; i_++)                                           \
			seen_ = strcmp(names[i_], (nm)) == 0;                                      \
		if (!seen_)                                                                        \
			names[n++] = (nm);                                                         \
	} while (0)
	for (struct config_user *u = cfg->users; u; u = u->hh.next)
		ADD_NAME(u->name);
	if (w->userlist)
		for (struct auth_user *u = w->userlist->users; u; u = u->hh.next)
			ADD_NAME(u->name);
	ADD_NAME(ADMIN_DB);
	for (struct pool *p = process_pool_next(w, NULL); p; p = process_pool_next(w, p))
		ADD_NAME(p->user_name);
	/* Users with clients but no pool yet (logging in, or only on the console). */
	for (int k = 0; k < with_clients.n; k++)
		ADD_NAME(with_clients.names[k]);
#undef ADD_NAME
	qsort(names, (size_t)n, sizeof(*names), cmp_str);
	struct rs r;
	rs_begin(&r, users_columns, ARRAY_SIZE(users_columns));
	for (int i = 0; i < n; i++) {
		const struct config_user *u = config_find_user(cfg, names[i]);
		/* Blank where the entry sets none, as PgBouncer (with its width). */
		char ps[16] = "", rps[16] = "";
		if (u && u->pool_size >= 0)
			snprintf(ps, sizeof(ps), "%9d", u->pool_size);
		if (u && u->reserve_pool_size >= 0)
			snprintf(rps, sizeof(rps), "%9d", u->reserve_pool_size);
		row_begin(&r);
		put_text(&r, names[i]);
		put_text(&r, ps);
		put_text(&r, rps);
		put_text(&r, u && u->pool_mode >= 0
				     ? config_pool_mode_name((enum pool_mode)u->pool_mode)
				     : NULL);
		put_int(&r, u && u->max_user_connections >= 0 ? u->max_user_connections
							      : cfg->max_user_connections);
		put_int(&r, ledger_count_of(w->ledger, &w->ledger->user_servers, names[i]));
		put_int(&r, config_user_client_limit(cfg, names[i]));
		put_int(&r, ledger_count_of(w->ledger, &w->ledger->user_clients, names[i]));
		row_end(&r);
	}
	free(names);
	name_list_free(&with_clients);
	rs_finish(c, &r, "SHOW");
}

static int cmp_setting(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return strcmp(config_setting_at(x)->name, config_setting_at(y)->name);
}

static void show_config(struct client *c)
{
	size_t n = config_setting_count();
	size_t *idx = xmalloc(sizeof(*idx) * n);
	for (size_t i = 0; i < n; i++)
		idx[i] = i;
	qsort(idx, n, sizeof(*idx), cmp_setting);
	struct rs r;
	rs_begin(&r, config_columns, ARRAY_SIZE(config_columns));
	for (size_t i = 0; i < n; i++) {
		const struct config_setting_info *info = config_setting_at(idx[i]);
		char val[1024];
		config_setting_value(c->w->cfg, idx[i], val, sizeof(val));
		row_begin(&r);
		put_text(&r, info->name);
		put_text(&r, val);
		put_text(&r, config_setting_default(idx[i]));
		put_text(&r, info->reloadable ? "yes" : "no");
		row_end(&r);
	}
	free(idx);
	rs_finish(c, &r, "SHOW");
}

static void show_lists(struct client *c)
{
	struct worker *w = c->w;
	int pools = 0, used_clients = 0, login_clients = 0, used_servers = 0;
	/* A pool on several workers is one pool. */
	free(process_pool_sums(w, &pools));
	for (struct client *x = process_client_next(w, NULL); x; x = process_client_next(w, x)) {
		if (x->state == CLIENT_LOGIN)
			login_clients++;
		else if (x->state != CLIENT_CLOSED)
			used_clients++;
	}
	for (struct server *s = process_server_next(w, NULL); s; s = process_server_next(w, s))
		if (s->state != SERVER_CLOSED)
			used_servers++;
	int users = (int)HASH_COUNT(w->cfg->users) +
		    (w->userlist ? (int)HASH_COUNT(w->userlist->users) : 0);
	struct {
		const char *name;
		int items;
	} rows[] = {
		{ "databases", (int)HASH_COUNT(w->cfg->databases) + 1 },
		{ "users", users },
		{ "peers", (int)HASH_COUNT(w->cfg->peers) },
		{ "pools", pools },
		{ "peer_pools", (int)HASH_COUNT(w->cfg->peers) }, /* SHOW PEER_POOLS's rows */
		{ "free_clients", 0 },
		{ "used_clients", used_clients },
		{ "login_clients", login_clients },
		{ "free_servers", 0 },
		{ "used_servers", used_servers },
		{ "dns_names", 0 },
		{ "dns_zones", 0 },
		{ "dns_queries", 0 },
		{ "dns_pending", 0 },
	};
	struct rs r;
	rs_begin(&r, lists_columns, ARRAY_SIZE(lists_columns));
	for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
		row_begin(&r);
		put_text(&r, rows[i].name);
		put_int(&r, rows[i].items);
		row_end(&r);
	}
	rs_finish(c, &r, "SHOW");
}

static void show_mem(struct client *c)
{
	struct worker *w = c->w;
	int clients = 0, servers = 0, pools = 0;
	for (struct client *x = process_client_next(w, NULL); x; x = process_client_next(w, x))
		clients++;
	for (struct server *s = process_server_next(w, NULL); s; s = process_server_next(w, s))
		servers++;
	for (struct pool *p = process_pool_next(w, NULL); p; p = process_pool_next(w, p))
		pools++;
	size_t bufs_used = 0, bufs_free = 0, statements = 0, statement_bytes = 0;
	struct worker *x;
	PROCESS_EACH_WORKER(w, i, x)
	{
		bufs_used += x->io.bufs.in_use;
		bufs_free += x->io.bufs.free_count;
		statements += x->prepared.n;
		statement_bytes += x->prepared.bytes;
	}
	/* sluice allocates objects individually; only I/O buffers have a free list. */
	struct {
		const char *name;
		size_t size;
		size_t used, free;
	} rows[] = {
		{ "pool_cache", sizeof(struct pool), (size_t)pools, 0 },
		{ "server_cache", sizeof(struct server), (size_t)servers, 0 },
		{ "client_cache", sizeof(struct client), (size_t)clients, 0 },
		{ "iobuf_cache", sizeof(struct buf) + BUF_SIZE, bufs_used, bufs_free },
		/* Statements vary in size: size is their average, memtotal exact. */
		{ "server_prepared_statement_cache", statements ? statement_bytes / statements : 0,
		  statements, 0 },
	};
	struct rs r;
	rs_begin(&r, mem_columns, ARRAY_SIZE(mem_columns));
	for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
		row_begin(&r);
		put_text(&r, rows[i].name);
		put_int(&r, (long long)rows[i].size);
		put_int(&r, (long long)rows[i].used);
		put_int(&r, (long long)rows[i].free);
		bool is_statements = strcmp(rows[i].name, "server_prepared_statement_cache") == 0;
		put_int(&r,
			(long long)(is_statements ? statement_bytes
						  : rows[i].size * (rows[i].used + rows[i].free)));
		row_end(&r);
	}
	rs_finish(c, &r, "SHOW");
}

static void show_state(struct client *c)
{
	struct rs r;
	rs_begin(&r, state_columns, ARRAY_SIZE(state_columns));
	const char *rows[][2] = {
		{ "active", c->w->paused_all || c->w->suspended ? "no" : "yes" },
		{ "paused", c->w->paused_all && !c->w->suspended ? "yes" : "no" },
		{ "suspended", c->w->suspended ? "yes" : "no" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
		row_begin(&r);
		put_text(&r, rows[i][0]);
		put_text(&r, rows[i][1]);
		row_end(&r);
	}
	rs_finish(c, &r, "SHOW");
}

static void show_version(struct client *c)
{
	struct rs r;
	rs_begin(&r, version_columns, ARRAY_SIZE(version_columns));
	row_begin(&r);
	put_text(&r, SLUICE_PRODUCT);
	row_end(&r);
	rs_finish(c, &r, "SHOW");
}

static void show_empty(struct client *c, const struct column *cols, int n)
{
	struct rs r;
	rs_begin(&r, cols, n);
	rs_finish(c, &r, "SHOW");
}

/*
 * SHOW WORKERS (sluice-only): each worker's connections, the servers that
 * moved between workers (pool.c), how busy its loop has been since it
 * started (the share of the time it was not waiting in epoll), and whether
 * its socket I/O goes through io_uring now.
 */
static void show_workers(struct client *c)
{
	struct rs r;
	rs_begin(&r, workers_columns, ARRAY_SIZE(workers_columns));
	struct crew *cr = crew_of(c->w);
	struct worker *x;
	PROCESS_EACH_WORKER(c->w, i, x)
	{
		struct worker_summary sum;
		worker_summarize(x, &sum);
		uint64_t up = uv_hrtime() - x->started_ns;
		uint64_t idle = x->idle_ms * 1000000;
		char busy[32];
		snprintf(busy, sizeof(busy), "%.1f",
			 up > idle && up ? 100.0 * (double)(up - idle) / (double)up : 0.0);
		row_begin(&r);
		put_int(&r, i);
		put_int(&r, sum.clients);
		put_int(&r, sum.clients_waiting);
		put_int(&r, sum.servers);
		put_int(&r, sum.servers_idle);
		put_uint(&r, x->servers_moved_in);
		put_uint(&r, x->servers_moved_out);
		put_text(&r, busy);
		put_uint(&r, cr ? cr->stops : 0);
		put_text(&r, x->io.uring ? "on" : "off");
		row_end(&r);
	}
	rs_finish(c, &r, "SHOW");
}

/*
 * SHOW PINS (sluice-only): the clients that keep their server between
 * transactions in transaction or statement pooling, because its session
 * holds something that cannot follow them (session.h, SESSION_PINS), and
 * since when.
 */
static void show_pins(struct client *c)
{
	struct rs r;
	rs_begin(&r, pins_columns, ARRAY_SIZE(pins_columns));
	for (struct server *s = process_server_next(c->w, NULL); s;
	     s = process_server_next(c->w, s)) {
		if (s->state == SERVER_CLOSED || !s->pins || !s->client)
			continue;
		char names[128];
		row_begin(&r);
		put_text(&r, s->pool->db_name);
		put_text(&r, s->client->user_name ? s->client->user_name : s->pool->user_name);
		put_uint(&r, s->client->id);
		put_uint(&r, s->id);
		put_int(&r, s->be_pid);
		put_text(&r, session_pin_names(s->pins, names, sizeof(names)));
		put_uint(&r, (uv_now(s->w->loop) - s->pinned_since) / 1000);
		row_end(&r);
	}
	rs_finish(c, &r, "SHOW");
}

static void show_pool_waits(struct client *c)
{
	struct rs r;
	int n;
	struct pool_sum *v = process_pool_sums(c->w, &n);
	rs_begin(&r, pool_waits_columns, ARRAY_SIZE(pool_waits_columns));
	for (int i = 0; i < n; i++) {
		const struct pool_stats *st = &v[i].stats;
		uint64_t acq = st->total.server_assignment_count;
		char ratio[32];
		snprintf(ratio, sizeof(ratio), "%.4f",
			 acq ? (double)st->reuse_count / (double)acq : 0.0);
		row_begin(&r);
		put_text(&r, v[i].pool->db_name);
		put_text(&r, v[i].pool->user_name);
		put_uint(&r, acq);
		put_uint(&r, st->wait_count);
		put_uint(&r, st->total.wait_time);
		put_uint(&r, st->max_wait_us);
		put_uint(&r, st->timeout_count);
		put_text(&r, ratio);
		put_uint(&r, st->servers_opened);
		for (int k = 0; k < STATS_CLOSE_COUNT; k++)
			put_uint(&r, st->servers_closed[k]);
		row_end(&r);
	}
	free(v);
	rs_finish(c, &r, "SHOW");
}

static void help_append(struct buf_out *t, const char *s);

/* SHOW HELP: a notice listing the commands, written from the two tables below. */
static void show_help(struct client *c)
{
	struct buf_out text;
	buf_out_init(&text);
	help_append(&text, "Console usage");
	struct buf_out out;
	buf_out_init(&out);
	buf_out_put_u8(&text, 0);
	pkt_put_NoticeResponse(&out, "00000", (const char *)text.data);
	buf_out_deinit(&text);
	pkt_put_CommandComplete(&out, "SHOW");
	pkt_put_ReadyForQuery(&out, 'I');
	stream_write(&c->stream, out.data, out.len);
	buf_out_deinit(&out);
}

/* Driver-compatibility values PgBouncer fakes for SHOW of a few GUCs. */
static const char *const fake_gucs[][2] = {
	{ "client_encoding", "UTF-8" },
	{ "default_transaction_isolation", "read committed" },
	{ "standard_conforming_strings", "on" },
	{ "datestyle", "ISO" },
	{ "timezone", "GMT" },
};

static bool show_fake_guc(struct client *c, const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(fake_gucs); i++) {
		if (strcasecmp(name, fake_gucs[i][0]) != 0)
			continue;
		struct column col = { 's', fake_gucs[i][0] };
		struct rs r;
		rs_begin(&r, &col, 1);
		row_begin(&r);
		put_text(&r, fake_gucs[i][1]);
		row_end(&r);
		rs_finish(c, &r, "SHOW");
		return true;
	}
	return false;
}

struct show_cmd {
	const char *name;
	void (*fn)(struct client *c);
	uint8_t help_line; /* SHOW HELP lists the names of a line together */
	bool sluice_only; /* marked so in SHOW HELP */
};

/* One line per SHOW variant: */
/* clang-format off */
static void show_stats_cmd(struct client *c) { show_stats(c, true, true, "total_", "avg_"); }
static void show_stats_totals(struct client *c) { show_stats(c, true, false, "", ""); }
static void show_stats_averages(struct client *c) { show_stats(c, false, true, "", "avg_"); }
static void show_clients(struct client *c) { show_sockets(c, true, false, false, false); }
static void show_servers(struct client *c) { show_sockets(c, false, true, false, false); }
static void show_all_sockets(struct client *c) { show_sockets(c, true, true, true, false); }
static void show_active_sockets(struct client *c) { show_sockets(c, true, true, true, true); }
static void show_dns_hosts(struct client *c) { show_empty(c, dns_hosts_columns, ARRAY_SIZE(dns_hosts_columns)); }
static void show_dns_zones(struct client *c) { show_empty(c, dns_zones_columns, ARRAY_SIZE(dns_zones_columns)); }
/* clang-format on */

static int cmp_peer_id(const void *a, const void *b)
{
	int x = (*(const struct config_peer *const *)a)->peer_id;
	int y = (*(const struct config_peer *const *)b)->peer_id;
	return (x > y) - (x < y);
}

/* The [peers] entries in peer_id order, as PgBouncer lists them; the caller frees it. */
static const struct config_peer **sorted_peers(const struct config *cfg, int *n)
{
	*n = (int)HASH_COUNT(cfg->peers);
	const struct config_peer **v = xmalloc(sizeof(*v) * (size_t)(*n + 1));
	int i = 0;
	for (const struct config_peer *pe = cfg->peers; pe; pe = pe->hh.next)
		v[i++] = pe;
	qsort(v, (size_t)*n, sizeof(*v), cmp_peer_id);
	return v;
}

static void show_peers(struct client *c)
{
	const struct config *cfg = c->w->cfg;
	struct rs r;
	int n;
	const struct config_peer **v = sorted_peers(cfg, &n);
	rs_begin(&r, peers_columns, ARRAY_SIZE(peers_columns));
	for (int i = 0; i < n; i++) {
		row_begin(&r);
		put_int(&r, v[i]->peer_id);
		put_text(&r, v[i]->host);
		put_int(&r, v[i]->port);
		put_int(&r, config_peer_pool_size(cfg, v[i]));
		row_end(&r);
	}
	free(v);
	rs_finish(c, &r, "SHOW");
}

/*
 * One row per peer: a forwarded cancel is a client request (active while in
 * flight, waiting for a slot under pool_size) and a connection to the peer
 * (sv_login until sent, then sv_active_cancel until the peer closes it).
 */
static void show_peer_pools(struct client *c)
{
	struct rs r;
	int n;
	const struct config_peer **v = sorted_peers(c->w->cfg, &n);
	rs_begin(&r, peer_pools_columns, ARRAY_SIZE(peer_pools_columns));
	for (int i = 0; i < n; i++) {
		struct cancel_peer_counts pc;
		cancel_peer_counts(c->w, v[i]->peer_id, &pc);
		row_begin(&r);
		put_int(&r, v[i]->peer_id);
		put_int(&r, pc.active);
		put_int(&r, pc.waiting);
		put_int(&r, pc.sent);
		put_int(&r, pc.connecting);
		row_end(&r);
	}
	free(v);
	rs_finish(c, &r, "SHOW");
}

/* ---- SHOW FDS ------------------------------------------------------------------------ */

/* clang-format off */
static const struct column fds_columns[] = {
	{ 'i', "fd" }, { 's', "task" }, { 's', "user" }, { 's', "database" }, { 's', "addr" },
	{ 'i', "port" }, { 'q', "cancel" }, { 'i', "link" }, { 's', "client_encoding" },
	{ 's', "std_strings" }, { 's', "datestyle" }, { 's', "timezone" }, { 's', "password" },
	{ 'b', "scram_client_key" }, { 'b', "scram_server_key" },
};
/* clang-format on */

/* How long SHOW FDS waits for the console's socket to take one row. */
#define FDS_SEND_TIMEOUT_MS 10000

/* SHOW FDS in progress: rows go out one sendmsg each when fds ride along. */
struct fds {
	struct client *c;
	struct rs r;
	bool pass_fds; /* a unix socket from our own OS user, in the clear */
	int err; /* the first failure to send */
};

/* Ends the row being built: sent now with its fd attached, or left in r.out for rs_finish. */
static void fds_row_end(struct fds *f, int fd)
{
	row_end(&f->r);
	if (!f->pass_fds || f->err)
		return;
	f->err = stream_send_fd(&f->c->stream, f->r.out.data, f->r.out.len, fd,
				FDS_SEND_TIMEOUT_MS);
	f->r.out.len = 0;
}

/*
 * The four parameters PgBouncer lists: a client's own value (startup or
 * SET), else the pool's welcome value it was told at login (fallback).
 */
static void fds_params(struct rs *r, const struct param_set *ps, const struct param_set *fallback)
{
	static const char *const names[] = { "client_encoding", "standard_conforming_strings",
					     "datestyle", "timezone" };
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		const char *v = param_set_get(ps, names[i]);
		if (!v && fallback)
			v = param_set_get(fallback, names[i]);
		put_text(r, v);
	}
}

/* A client's or a server's row: cancel as the column shows it; link, the peer's fd or 0. */
static void fds_conn_row(struct fds *f, int fd, const char *task, const struct conn_info *ci,
			 uint64_t cancel, int link, const struct param_set *params,
			 const struct param_set *welcome)
{
	row_begin(&f->r);
	put_int(&f->r, fd);
	put_text(&f->r, task);
	put_text(&f->r, ci->user);
	put_text(&f->r, ci->database);
	put_text(&f->r, ci->addr);
	put_int(&f->r, ci->port);
	put_int(&f->r, (long long)cancel);
	put_int(&f->r, link);
	fds_params(&f->r, params, welcome);
	fds_row_end(f, fd);
}

/*
 * The listening sockets ("pooler"), then every client and server socket in
 * the clear, as PgBouncer lists them; each row carries its socket when the
 * console is a unix socket of our own OS user (PgBouncer's rule). Only
 * while SUSPENDed: then no socket is read and no buffer holds anything, so
 * the sockets and the state in the rows are the whole truth.
 */
static void show_fds(struct client *c)
{
	struct worker *w = c->w;
	if (c->admin_role != ADMIN_ROLE_ADMIN) {
		admin_send_error(c, SQLSTATE_INSUFFICIENT_PRIVILEGE, "admin access needed");
		return;
	}
	if (!w->suspended) {
		admin_send_error(c, SQLSTATE_OBJECT_NOT_IN_PREREQUISITE_STATE,
				 "SHOW FDS needs the pooler suspended: run SUSPEND first");
		return;
	}
	struct fds f = { .c = c };
	unsigned uid;
	int pid;
	f.pass_fds = c->stream.is_pipe && !c->stream.tls &&
		     stream_peer_cred(&c->stream, &uid, &pid) && uid == (unsigned)geteuid();
	rs_begin(&f.r, fds_columns, ARRAY_SIZE(fds_columns));
	if (f.pass_fds) {
		/* The RowDescription goes alone first, so nothing queued comes between the rows. */
		f.err = stream_send_fd(&c->stream, f.r.out.data, f.r.out.len, -1,
				       FDS_SEND_TIMEOUT_MS);
		f.r.out.len = 0;
	}
	for (struct listener *l = w->listeners.list; l && !f.err; l = l->next) {
		row_begin(&f.r);
		put_int(&f.r, l->fd);
		put_text(&f.r, "pooler");
		put_text(&f.r, NULL);
		put_text(&f.r, NULL);
		if (l->is_unix) {
			put_text(&f.r, "unix");
			put_int(&f.r, w->cfg->listen_port);
		} else {
			/* "host:port", the host of a v6 address without brackets */
			char host[sizeof(l->name)];
			snprintf(host, sizeof(host), "%s", l->name);
			char *colon = strrchr(host, ':');
			int port = colon ? atoi(colon + 1) : w->cfg->listen_port;
			if (colon)
				*colon = '\0';
			put_text(&f.r, host);
			put_int(&f.r, port);
		}
		put_int(&f.r, 0);
		put_int(&f.r, 0);
		fds_row_end(&f, l->fd);
	}
	for (struct client *x = process_client_next(w, NULL); x && !f.err;
	     x = process_client_next(w, x)) {
		if (x->state == CLIENT_CLOSED || x->admin_role != ADMIN_ROLE_NONE)
			continue;
		/* PgBouncer skips TLS sockets, and clients linked to one. */
		if (x->stream.tls || (x->server && x->server->stream.tls))
			continue;
		int fd = stream_fd(&x->stream);
		if (fd < 0)
			continue;
		struct conn_info ci;
		client_info(x, &ci);
		fds_conn_row(&f, fd, "client", &ci, client_cancel_key(x),
			     x->server ? stream_fd(&x->server->stream) : 0, &x->params,
			     x->pool && x->pool->have_welcome ? &x->pool->welcome : NULL);
	}
	for (struct server *s = process_server_next(w, NULL); s && !f.err;
	     s = process_server_next(w, s)) {
		if (s->state == SERVER_CLOSED || !s->stream_open || s->stream.tls)
			continue;
		if (s->client && s->client->stream.tls)
			continue;
		int fd = stream_fd(&s->stream);
		if (fd < 0)
			continue;
		struct conn_info ci;
		server_info(s, &ci);
		fds_conn_row(&f, fd, "server", &ci, ((uint64_t)s->be_pid << 32) | s->be_key,
			     s->client ? stream_fd(&s->client->stream) : 0, &s->params, NULL);
	}
	if (f.err) {
		buf_out_deinit(&f.r.out);
		if (f.err == UV_EBUSY) {
			/* Nothing went: the console still speaks the protocol. */
			admin_send_error(c, SQLSTATE_OBJECT_NOT_IN_PREREQUISITE_STATE,
					 "SHOW FDS: the console connection has output in flight, "
					 "try again");
			return;
		}
		client_fail(c, SQLSTATE_CONNECTION_FAILURE, "SHOW FDS: sending failed: %s",
			    uv_strerror(f.err));
		return;
	}
	rs_finish(c, &f.r, "SHOW");
}

/* The SHOW commands, one row each, in SHOW HELP's order. */
static const struct show_cmd show_cmds[] = {
	{ "help", show_help, 0, false },
	{ "config", show_config, 0, false },
	{ "users", show_users, 0, false },
	{ "databases", show_databases, 0, false },
	{ "pools", show_pools, 0, false },
	{ "clients", show_clients, 0, false },
	{ "servers", show_servers, 0, false },
	{ "fds", show_fds, 0, false },
	{ "sockets", show_all_sockets, 0, false },
	{ "active_sockets", show_active_sockets, 0, false },
	{ "lists", show_lists, 1, false },
	{ "mem", show_mem, 1, false },
	{ "state", show_state, 1, false },
	{ "version", show_version, 1, false },
	{ "dns_hosts", show_dns_hosts, 1, false },
	{ "dns_zones", show_dns_zones, 1, false },
	{ "peers", show_peers, 1, false },
	{ "peer_pools", show_peer_pools, 1, false },
	{ "stats", show_stats_cmd, 2, false },
	{ "stats_totals", show_stats_totals, 2, false },
	{ "stats_averages", show_stats_averages, 2, false },
	{ "totals", show_totals, 2, false },
	{ "pool_waits", show_pool_waits, 3, true },
	{ "workers", show_workers, 3, true },
	{ "pins", show_pins, 3, true },
};

/* ---- control commands -------------------------------------------------------------- */

static bool db_matches(const char *db, const char *name)
{
	return !db || strcmp(db, name) == 0;
}

/* Whether every server of db (NULL: all) is out of use (PAUSE's condition). */
static bool pause_done(struct worker *w, const char *db)
{
	for (struct server *s = process_server_next(w, NULL); s; s = process_server_next(w, s))
		if (s->state == SERVER_ACTIVE && db_matches(db, s->pool->db_name))
			return false;
	return true;
}

static bool close_done(struct worker *w, const char *db)
{
	for (struct server *s = process_server_next(w, NULL); s; s = process_server_next(w, s)) {
		struct conn_info ci;
		if (s->state == SERVER_CLOSED || !db_matches(db, s->pool->db_name))
			continue;
		server_info(s, &ci);
		if (ci.close_needed)
			return false;
	}
	return true;
}

/* Closes the idle servers of db: what PAUSE does once servers are released. */
static void close_idle(struct worker *w, const char *db)
{
	struct server *s = process_server_next(w, NULL), *next;
	for (; s; s = next) {
		next = process_server_next(w, s);
		if ((s->state == SERVER_IDLE || s->state == SERVER_LOGIN) &&
		    db_matches(db, s->pool->db_name))
			server_close(s, "PAUSE");
	}
}

static void start_wait(struct client *c, enum admin_wait kind, const char *db)
{
	c->admin_wait = (uint8_t)kind;
	free(c->admin_wait_db);
	c->admin_wait_db = db ? xstrdup(db) : NULL;
	c->w->admin_waiters++;
	stream_pause(&c->stream);
}

static void poll_waits(struct worker *w);

void admin_poll(struct worker *w)
{
	if (w->admin_waiters == 0)
		return;
	/*
	 * What the waits are for happens on every worker; with more than one,
	 * this worker may have nothing to do when another's transaction ends,
	 * so it looks again shortly (worker_poll_soon) until the waits are over.
	 */
	crew_stop_world(crew_of(w));
	poll_waits(w);
	crew_resume_world(crew_of(w));
	if (w->admin_waiters > 0 && process_n_workers(w) > 1)
		worker_poll_soon(w);
}

/* admin_poll's work, with the world stopped. */
static void poll_waits(struct worker *w)
{
	for (struct client *c = client_next(w, NULL); c; c = client_next(w, c)) {
		if (!c->admin_wait || c->state == CLIENT_CLOSED)
			continue;
		const char *db = c->admin_wait_db;
		bool done;
		const char *tag;
		switch (c->admin_wait) {
		case ADMIN_WAIT_PAUSE:
			done = pause_done(w, db);
			tag = "PAUSE";
			break;
		case ADMIN_WAIT_SUSPEND: {
			struct worker *x;
			done = true;
			PROCESS_EACH_WORKER(w, i, x)
			done = done && worker_suspend_done(x);
			tag = "SUSPEND";
			break;
		}
		case ADMIN_WAIT_TAKEOVER:
			done = takeover_hand_over(w);
			tag = "TAKEOVER";
			if (c->state == CLIENT_CLOSED)
				continue;
			break;
		default:
			done = close_done(w, db);
			tag = "WAIT_CLOSE";
			break;
		}
		if (!done)
			continue;
		if (c->admin_wait == ADMIN_WAIT_PAUSE)
			close_idle(w, db);
		admin_send_complete(c, tag);
		c->admin_wait = ADMIN_WAIT_NONE;
		free(c->admin_wait_db);
		c->admin_wait_db = NULL;
		w->admin_waiters--;
		stream_resume(&c->stream);
		admin_handle(c);
	}
}

static bool known_db(struct worker *w, const char *db)
{
	if (config_find_database(w->cfg, db))
		return true;
	for (struct pool *p = process_pool_next(w, NULL); p; p = process_pool_next(w, p))
		if (strcmp(p->db_name, db) == 0)
			return true;
	return false;
}

static void kick_all(struct worker *w)
{
	for (struct pool *p = process_pool_next(w, NULL); p; p = process_pool_next(w, p))
		worker_schedule_kick(p->w, p);
}

/* PAUSE and KILL: no server of db (NULL: of any) is handed out, on any worker. */
static void pause_everywhere(struct worker *w, const char *db)
{
	struct worker *x;
	PROCESS_EACH_WORKER(w, i, x)
	{
		if (db)
			worker_db_state(x, db, true)->paused = true;
		else
			x->paused_all = true;
	}
}

static void cmd_pause(struct client *c, const char *db)
{
	struct worker *w = c->w;
	if (w->suspended) {
		admin_send_error(c, SQLSTATE_PROTOCOL_VIOLATION, "already suspended/paused");
		return;
	}
	pause_everywhere(w, db);
	start_wait(c, ADMIN_WAIT_PAUSE, db);
}

static void cmd_resume(struct client *c, const char *db)
{
	struct worker *w = c->w;
	if (db) {
		struct db_state *ds = worker_db_state(w, db, false);
		if (!ds || !ds->paused) {
			admin_send_error(c, SQLSTATE_PROTOCOL_VIOLATION,
					 "database %s is not paused", db);
			return;
		}
		struct worker *x;
		PROCESS_EACH_WORKER(w, i, x)
		if ((ds = worker_db_state(x, db, false)) != NULL)
			ds->paused = false;
		kick_all(w);
	} else {
		if (w->shutdown != WORKER_RUNNING) {
			admin_send_error(c, SQLSTATE_PROTOCOL_VIOLATION, "pooler is shutting down");
			return;
		}
		process_resume_all(w->process);
	}
	admin_send_complete(c, "RESUME");
}

static void cmd_kill(struct client *c, const char *db)
{
	struct worker *w = c->w;
	pause_everywhere(w, db);
	struct client *x = process_client_next(w, NULL), *next;
	for (; x; x = next) {
		next = process_client_next(w, x);
		if (x == c || x->admin_role || !x->db_name || x->state == CLIENT_CLOSED)
			continue;
		if (db_matches(db, x->db_name))
			client_fail(x, SQLSTATE_ADMIN_SHUTDOWN, "database killed by admin (KILL)");
	}
	struct server *s = process_server_next(w, NULL), *sn;
	for (; s; s = sn) {
		sn = process_server_next(w, s);
		if (s->state != SERVER_CLOSED && db_matches(db, s->pool->db_name))
			server_close(s, "KILL");
	}
	admin_send_complete(c, "KILL");
}

static void cmd_set(struct client *c, const char *key, const char *value)
{
	struct worker *w = c->w;
	for (size_t i = 0; i < ARRAY_SIZE(fake_gucs); i++) {
		if (strcasecmp(key, fake_gucs[i][0]) == 0) {
			struct buf_out out;
			buf_out_init(&out);
			pkt_put_NoticeResponse(&out, "00000", "SET ignored");
			pkt_put_CommandComplete(&out, "SET");
			pkt_put_ReadyForQuery(&out, 'I');
			stream_write(&c->stream, out.data, out.len);
			buf_out_deinit(&out);
			return;
		}
	}
	if (c->admin_role != ADMIN_ROLE_ADMIN) {
		admin_send_error(c, SQLSTATE_INSUFFICIENT_PRIVILEGE, "admin access needed");
		return;
	}
	struct config_error err;
	int rc = process_set(w->process, key, value, &err);
	if (rc == CONFIG_APPLY_IGNORED) {
		struct buf_out out;
		buf_out_init(&out);
		pkt_put_NoticeResponse(&out, "01000", err.text);
		stream_write(&c->stream, out.data, out.len);
		buf_out_deinit(&out);
	} else if (rc != 0) {
		admin_send_error(c, SQLSTATE_INVALID_PARAMETER_VALUE, "SET failed: %s", err.text);
		return;
	}
	admin_send_complete(c, "SET");
}

static void cmd_reload(struct client *c, const char *arg)
{
	(void)arg;
	if (process_reload(c->w->process) != 0)
		admin_send_error(c, SQLSTATE_CONFIG_FILE_ERROR,
				 "RELOAD failed, see logs for additional details; the previous "
				 "configuration stays in effect");
	else
		admin_send_complete(c, "RELOAD");
}

/* RESTART (sluice-only): a new process from sluice's binary takes this one over (takeover.h). */
static void cmd_restart(struct client *c, const char *arg)
{
	(void)arg;
	char why[256];
	if (c->w->shutdown != WORKER_RUNNING || c->w->handing_over) {
		admin_send_error(c, SQLSTATE_OBJECT_NOT_IN_PREREQUISITE_STATE,
				 c->w->handing_over ? "a takeover is under way already"
						    : "pooler is shutting down");
		return;
	}
	if (process_restart(c->w->process, why, sizeof(why)) != 0) {
		admin_send_error(c, SQLSTATE_OBJECT_NOT_IN_PREREQUISITE_STATE, "%s", why);
		return;
	}
	admin_send_complete(c, "RESTART");
}

static void cmd_disable(struct client *c, const char *db)
{
	struct worker *x;
	PROCESS_EACH_WORKER(c->w, i, x)
	worker_db_state(x, db, true)->disabled = true;
	admin_send_complete(c, "DISABLE");
}

static void cmd_enable(struct client *c, const char *db)
{
	struct worker *x;
	PROCESS_EACH_WORKER(c->w, i, x)
	worker_db_state(x, db, true)->disabled = false;
	admin_send_complete(c, "ENABLE");
}

static void cmd_reconnect(struct client *c, const char *db)
{
	struct worker *w = c->w;
	struct server *s = process_server_next(w, NULL), *next;
	for (; s; s = next) {
		next = process_server_next(w, s);
		if (s->state != SERVER_CLOSED && db_matches(db, s->pool->db_name))
			server_mark_close_needed(s);
	}
	admin_send_complete(c, "RECONNECT");
}

static void cmd_kill_client(struct client *c, const char *arg)
{
	/* PgBouncer's words, which scripts match. */
	char *end = NULL;
	unsigned long long id = arg ? strtoull(arg, &end, 10) : 0;
	if (!arg || !end || *end || end == arg) {
		admin_send_error(c, SQLSTATE_PROTOCOL_VIOLATION,
				 "invalid client pointer supplied: \"%s\" is not a client id",
				 arg ? arg : "");
		return;
	}
	struct client *x = NULL;
	struct worker *wx;
	PROCESS_EACH_WORKER(c->w, i, wx)
	if (!x)
		x = client_find(wx, id);
	if (!x || x->state == CLIENT_CLOSED) {
		admin_send_error(c, SQLSTATE_PROTOCOL_VIOLATION, "client not found: %llu", id);
		return;
	}
	/* Killing itself: the answer goes out first. */
	if (x != c)
		client_fail(x, SQLSTATE_ADMIN_SHUTDOWN, "client killed by admin (KILL_CLIENT)");
	admin_send_complete(c, "KILL_CLIENT");
	if (x == c)
		client_fail(c, SQLSTATE_ADMIN_SHUTDOWN, "client killed by admin (KILL_CLIENT)");
}

static void cmd_wait_close(struct client *c, const char *db)
{
	start_wait(c, ADMIN_WAIT_CLOSE, db);
}

static void cmd_shutdown(struct client *c, const char *arg)
{
	enum worker_shutdown how = WORKER_EXIT;
	if (arg && strcmp(arg, "wait_for_servers") == 0)
		how = WORKER_WAIT_SERVERS;
	else if (arg && strcmp(arg, "wait_for_clients") == 0)
		how = WORKER_WAIT_CLIENTS;
	else if (arg) {
		admin_send_error(c, SQLSTATE_PROTOCOL_VIOLATION,
				 "SHUTDOWN takes WAIT_FOR_SERVERS or WAIT_FOR_CLIENTS");
		return;
	}
	log_info("SHUTDOWN requested from the admin console");
	admin_send_complete(c, "SHUTDOWN");
	process_shutdown(c->w->process, how);
}

/*
 * SUSPEND (PgBouncer's): no accepting, no reading from any socket but the
 * console's; answered once every socket has sent what it had queued. Its
 * refusals are PgBouncer's.
 */
static void cmd_suspend(struct client *c, const char *arg)
{
	struct worker *w = c->w;
	if (arg) {
		admin_send_error(c, SQLSTATE_PROTOCOL_VIOLATION, "SUSPEND takes no argument");
		return;
	}
	if (w->suspended || w->paused_all) {
		admin_send_error(c, SQLSTATE_PROTOCOL_VIOLATION, "already suspended/paused");
		return;
	}
	/* Suspending must be able to flush every buffer: a paused database may hold some. */
	for (struct db_state *ds = w->db_states; ds; ds = ds->hh.next) {
		if (ds->paused) {
			admin_send_error(c, SQLSTATE_PROTOCOL_VIOLATION,
					 "cannot suspend with paused databases");
			return;
		}
	}
	if (w->shutdown != WORKER_RUNNING) {
		admin_send_error(c, SQLSTATE_PROTOCOL_VIOLATION, "pooler is shutting down");
		return;
	}
	log_info("SUSPEND command issued");
	struct worker *x;
	PROCESS_EACH_WORKER(w, i, x)
	worker_suspend(x);
	start_wait(c, ADMIN_WAIT_SUSPEND, NULL);
}

/*
 * TAKEOVER <version> and TAKEOVER CLIENTS (takeover.h): only for a new
 * sluice process, which logs in on the unix socket as sluice's own OS user
 * (so only someone who could read sluice's memory anyway gets the sockets).
 */
static void cmd_takeover(struct client *c, const char *arg)
{
	unsigned uid;
	int pid;
	if (c->admin_role != ADMIN_ROLE_ADMIN || !c->stream.is_pipe || c->stream.tls ||
	    !stream_peer_cred(&c->stream, &uid, &pid) || uid != (unsigned)geteuid()) {
		admin_send_error(
			c, SQLSTATE_INSUFFICIENT_PRIVILEGE,
			"TAKEOVER is for a new sluice process of the same OS user, on the unix "
			"socket");
		return;
	}
	if (arg && strcasecmp(arg, "clients") == 0) {
		if (takeover_start_clients(c))
			start_wait(c, ADMIN_WAIT_TAKEOVER, NULL);
		return;
	}
	takeover_send_listeners(c, arg);
}

void admin_console_gone(struct worker *w)
{
	if (!w->suspended)
		return;
	crew_stop_world(crew_of(w));
	bool any = false;
	for (struct client *x = process_client_next(w, NULL); x && !any;
	     x = process_client_next(w, x))
		any = x->admin_role != ADMIN_ROLE_NONE && x->state != CLIENT_CLOSED;
	if (!any && w->suspended) {
		log_info("admin disappeared when suspended, doing RESUME");
		struct worker *x;
		PROCESS_EACH_WORKER(w, i, x)
		worker_resume_all(x);
	}
	crew_resume_world(crew_of(w));
}

/* What a control command's argument is, which run_command checks before the handler runs. */
enum cmd_arg {
	CMD_ARG_NONE, /* ignored if given */
	CMD_ARG_DB, /* an optional database name: all databases without it */
	CMD_ARG_DB_REQUIRED,
	CMD_ARG_OTHER, /* the handler reads it */
};

/*
 * The control commands, one row each, in SHOW HELP's order: adding a
 * command is adding a row. help is SHOW HELP's text after the name; NULL
 * leaves the command out of it.
 */
static const struct control_cmd {
	const char *name;
	enum cmd_arg arg;
	const char *help;
	void (*fn)(struct client *c, const char *arg);
} control_cmds[] = {
	{ "reload", CMD_ARG_NONE, "", cmd_reload },
	{ "pause", CMD_ARG_DB, " [<db>]", cmd_pause },
	{ "resume", CMD_ARG_DB, " [<db>]", cmd_resume },
	{ "disable", CMD_ARG_DB_REQUIRED, " <db>", cmd_disable },
	{ "enable", CMD_ARG_DB_REQUIRED, " <db>", cmd_enable },
	{ "reconnect", CMD_ARG_DB, " [<db>]", cmd_reconnect },
	{ "kill", CMD_ARG_DB, " [<db>]", cmd_kill },
	{ "kill_client", CMD_ARG_OTHER, " <client_id>", cmd_kill_client },
	{ "wait_close", CMD_ARG_DB, " [<db>]", cmd_wait_close },
	{ "shutdown", CMD_ARG_OTHER, " [WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS]", cmd_shutdown },
	{ "suspend", CMD_ARG_OTHER, "", cmd_suspend },
	{ "restart", CMD_ARG_NONE, " (sluice)", cmd_restart },
	/* A new process's, not an operator's: takeover.h. */
	{ "takeover", CMD_ARG_OTHER, NULL, cmd_takeover },
};

static const struct control_cmd *find_control(const char *verb)
{
	for (size_t i = 0; i < ARRAY_SIZE(control_cmds); i++)
		if (strcmp(verb, control_cmds[i].name) == 0)
			return &control_cmds[i];
	return NULL;
}

static void put_upper(struct buf_out *t, const char *s)
{
	for (; *s; s++)
		buf_out_put_u8(t, (uint8_t)toupper((unsigned char)*s));
}

/* SHOW HELP's text under title, from show_cmds and control_cmds (no trailing newline). */
static void help_append(struct buf_out *t, const char *title)
{
	buf_out_put(t, title, strlen(title));
	for (size_t i = 0; i < ARRAY_SIZE(show_cmds); i++) {
		bool first = i == 0 || show_cmds[i].help_line != show_cmds[i - 1].help_line;
		buf_out_put(t, first ? "\n\tSHOW " : "|", first ? 7 : 1);
		put_upper(t, show_cmds[i].name);
		bool last = i + 1 == ARRAY_SIZE(show_cmds) ||
			    show_cmds[i + 1].help_line != show_cmds[i].help_line;
		if (last && show_cmds[i].sluice_only)
			buf_out_put(t, " (sluice)", 9);
	}
	static const char set_line[] = "\n\tSET key = arg";
	buf_out_put(t, set_line, strlen(set_line));
	for (size_t i = 0; i < ARRAY_SIZE(control_cmds); i++) {
		if (!control_cmds[i].help)
			continue;
		buf_out_put(t, "\n\t", 2);
		put_upper(t, control_cmds[i].name);
		buf_out_put(t, control_cmds[i].help, strlen(control_cmds[i].help));
	}
}

static void run_command(struct client *c, const char *sql)
{
	struct worker *w = c->w;
	struct console_command cmd;
	if (console_parse(sql, &cmd) < 0) {
		admin_send_error(c, SQLSTATE_PROTOCOL_VIOLATION,
				 "invalid command '%s', use SHOW HELP;", sql);
		return;
	}
	log_write(LOG_LEVEL_INFO, CLIENT_LOG_CONN(c), "console: %s", sql);
	const char *verb = cmd.verb;
	const char *arg = cmd.has_arg ? cmd.arg : NULL;
	if (cmd.is_set) {
		cmd_set(c, cmd.arg, cmd.set_value);
		return;
	}
	if (strcmp(verb, "show") == 0 || strcmp(verb, "select") == 0) {
		if (!arg) {
			admin_send_error(c, SQLSTATE_PROTOCOL_VIOLATION,
					 "SHOW needs an argument, use SHOW HELP;");
			return;
		}
		if (show_fake_guc(c, arg))
			return;
		for (size_t i = 0; i < ARRAY_SIZE(show_cmds); i++) {
			if (strcmp(arg, show_cmds[i].name) == 0) {
				show_cmds[i].fn(c);
				return;
			}
		}
		admin_send_error(c, SQLSTATE_PROTOCOL_VIOLATION,
				 "unknown SHOW argument: %s, use SHOW HELP;", arg);
		return;
	}

	const struct control_cmd *cc = find_control(verb);
	if (!cc) {
		admin_send_error(c, SQLSTATE_PROTOCOL_VIOLATION,
				 "invalid command '%s', use SHOW HELP;", sql);
		return;
	}
	/* Everything but SHOW changes something: admin users only. */
	if (c->admin_role != ADMIN_ROLE_ADMIN) {
		admin_send_error(c, SQLSTATE_INSUFFICIENT_PRIVILEGE, "admin access needed");
		return;
	}
	bool takes_db = cc->arg == CMD_ARG_DB || cc->arg == CMD_ARG_DB_REQUIRED;
	if (cc->arg == CMD_ARG_DB_REQUIRED && !arg) {
		admin_send_error(c, SQLSTATE_PROTOCOL_VIOLATION, "%s needs a database name", verb);
		return;
	}
	if (takes_db && arg && !known_db(w, arg)) {
		admin_send_error(c, SQLSTATE_PROTOCOL_VIOLATION, "no such database: %s", arg);
		return;
	}
	if (takes_db && arg && strcmp(arg, ADMIN_DB) == 0) {
		admin_send_error(c, SQLSTATE_PROTOCOL_VIOLATION, "cannot %s the admin database",
				 verb);
		return;
	}
	cc->fn(c, arg);
}

/* ---- the connection ---------------------------------------------------------------- */

void admin_welcome(struct client *c)
{
	struct buf_out out;
	buf_out_init(&out);
	pkt_put_AuthenticationOk(&out);
	pkt_put_ParameterStatus(&out, "server_version",
				SLUICE_COMPAT_VERSION "/sluice-" SLUICE_VERSION);
	pkt_put_ParameterStatus(&out, "client_encoding", "UTF8");
	pkt_put_ParameterStatus(&out, "server_encoding", "UTF8");
	pkt_put_ParameterStatus(&out, "DateStyle", "ISO");
	pkt_put_ParameterStatus(&out, "TimeZone", "GMT");
	pkt_put_ParameterStatus(&out, "standard_conforming_strings", "on");
	pkt_put_ParameterStatus(&out, "is_superuser", "on");
	pkt_put_BackendKeyData(&out, c->cancel_pid, c->cancel_key);
	if (*c->w->cfg->login_notify_message)
		pkt_put_NoticeResponse(&out, "00000", c->w->cfg->login_notify_message);
	pkt_put_ReadyForQuery(&out, 'I');
	stream_write(&c->stream, out.data, out.len);
	buf_out_deinit(&out);
}

void admin_handle(struct client *c)
{
	struct stream *st = &c->stream;
	while (c->state == CLIENT_IDLE && !c->admin_wait && stream_avail(st) > 0) {
		size_t avail = stream_avail(st);
		struct pkt_hdr h;
		int rc = pkt_frame(stream_data(st), avail, 1024 * 1024, &h);
		if (rc == PKT_INCOMPLETE)
			return;
		if (rc != PKT_OK) {
			client_fail(c, SQLSTATE_PROTOCOL_VIOLATION,
				    "invalid message on the admin console");
			return;
		}
		if (h.len > avail) {
			stream_reserve(st, h.len);
			return;
		}
		const uint8_t *msg = stream_data(st);
		switch (h.type) {
		case PKT_Query: {
			size_t blen = h.len - PKT_HDR_LEN;
			if (blen == 0 || msg[h.len - 1] != '\0') {
				client_fail(c, SQLSTATE_PROTOCOL_VIOLATION,
					    "malformed Query message");
				return;
			}
			char *sql = xstrndup((const char *)msg + PKT_HDR_LEN, blen - 1);
			stream_consume(st, h.len);
			if (console_is_empty(sql)) {
				struct buf_out out;
				buf_out_init(&out);
				size_t m = pkt_begin(&out, PKT_EmptyQueryResponse);
				pkt_end(&out, m);
				pkt_put_ReadyForQuery(&out, 'I');
				stream_write(st, out.data, out.len);
				buf_out_deinit(&out);
			} else {
				/* As PgBouncer counts them: a command is a transaction and a query. */
				c->pool->stats.total.xact_count++;
				c->pool->stats.total.query_count++;
				/*
				 * Another worker's console may have had the world first,
				 * and closed this client meanwhile (crew.h).
				 */
				crew_stop_world(crew_of(c->w));
				if (c->state != CLIENT_CLOSED)
					run_command(c, sql);
				crew_resume_world(crew_of(c->w));
			}
			free(sql);
			break;
		}
		case PKT_Terminate:
			stream_consume(st, h.len);
			client_close(c, "client sent Terminate");
			return;
		default:
			client_fail(c, SQLSTATE_FEATURE_NOT_SUPPORTED,
				    "extended query protocol not supported by admin console");
			return;
		}
	}
}
