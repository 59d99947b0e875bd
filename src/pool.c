/*
 * pool.c - assignment of servers to waiting clients, opening and expiring
 * servers, and the welcome new clients get (see pool.h).
 *
 * Assignment runs from one place, pool_kick(), normally in the worker's
 * deferred step after a round of I/O, so that everything that freed or
 * wanted a server in that round is decided together, oldest waiter first.
 */
#include "sluice/pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/client.h"
#include "sluice/log.h"
#include "sluice/notify.h"
#include "sluice/pkt.h"
#include "sluice/server.h"
#include "sluice/sqlstate.h"

struct pool *pool_get(struct worker *w, const char *db_name, const char *user_name,
		      const struct config_database *db)
{
	struct pool *p;
	/* A forced user owns the database's one pool, as in PgBouncer: its size counts once. */
	if (db->user)
		user_name = db->user;
	TAILQ_FOREACH(p, &w->pools, link)
		if (strcmp(p->db_name, db_name) == 0 && strcmp(p->user_name, user_name) == 0)
			return p;
	p = xcalloc(1, sizeof(*p));
	p->w = w;
	p->db_name = xstrdup(db_name);
	p->user_name = xstrdup(user_name);
	p->db = db;
	bool new_db;
	p->share = ledger_share_get(w->ledger, p->db_name, p->user_name, &new_db);
	/* PgBouncer's words for the first use of a name through [databases] "*", in the process. */
	if (new_db && db == w->cfg->fallback)
		log_info("registered new auto-database: %s", db_name);
	TAILQ_INIT(&p->waiting_login);
	TAILQ_INIT(&p->waiting);
	TAILQ_INIT(&p->active);
	TAILQ_INIT(&p->idle);
	TAILQ_INIT(&p->waiting_repl);
	TAILQ_INIT(&p->sv_login);
	TAILQ_INIT(&p->sv_idle);
	TAILQ_INIT(&p->sv_active);
	TAILQ_INIT(&p->sv_tested);
	TAILQ_INIT(&p->sv_being_canceled);
	param_set_init(&p->welcome);
	param_set_init(&p->defaults);
	param_profiles_init(&p->profiles);
	buf_out_init(&p->welcome_status);
	buf_out_init(&p->last_error);
	p->last_active = uv_now(w->loop);
	TAILQ_INSERT_TAIL(&w->pools, p, link);
	return p;
}

void pool_free(struct pool *p)
{
	struct worker *w = p->w;
	/* First: closing its listener schedules a kick of p. */
	notify_pool_free(p);
	if (p->kick_scheduled)
		TAILQ_REMOVE(&w->kick_queue, p, kick_link);
	TAILQ_REMOVE(&w->pools, p, link);
	/* Nothing to give or to wait for here any more. */
	if (w->crew.of && w->crew.of->started)
		ledger_share_publish(p->share, w->crew.index, 0, 0, 0);
	param_set_deinit(&p->welcome);
	param_set_deinit(&p->defaults);
	param_profiles_deinit(&p->profiles);
	buf_out_deinit(&p->welcome_status);
	buf_out_deinit(&p->last_error);
	ledger_share_put(w->ledger, p->share);
	free(p->db_name);
	free(p->user_name);
	free(p->client_password);
	free(p);
}

bool pool_is_empty(const struct pool *p)
{
	return p->n_cl_waiting_login + p->n_cl_waiting + p->n_cl_active + p->n_cl_idle +
		       p->n_cl_waiting_repl + pool_servers_of(p) ==
	       0;
}

/* ---- effective settings ---------------------------------------------------- */

/*
 * The [users] entry whose settings apply: the pool's user, so that a
 * database with a forced user takes that user's pool_size and pool_mode, not
 * those of whoever connected (PgBouncer's test_pool_size).
 */
void pool_refresh_cfg(struct pool *p)
{
	const struct config_user *u = config_find_user(p->w->cfg, p->user_name);
	p->user_cfg = u;
	p->user_cfg_gen = p->w->cfg_gen;
	if (u && u->pool_mode >= 0)
		p->mode = (uint8_t)u->pool_mode;
	else if (p->db->pool_mode >= 0)
		p->mode = (uint8_t)p->db->pool_mode;
	else
		p->mode = (uint8_t)p->w->cfg->pool_mode;
}

const struct config_user *pool_user_cfg(const struct pool *p)
{
	/* Asked several times per transaction: looked up once per snapshot. */
	if (p->user_cfg_gen != p->w->cfg_gen)
		pool_refresh_cfg((struct pool *)p); /* a cache, not the pool's state */
	return p->user_cfg;
}

int pool_size_of(const struct pool *p)
{
	const struct config_user *u = pool_user_cfg(p);
	if (u && u->pool_size >= 0)
		return u->pool_size;
	if (p->db->pool_size >= 0)
		return p->db->pool_size;
	return p->w->cfg->default_pool_size;
}

int pool_min_size_of(const struct pool *p)
{
	return p->db->min_pool_size >= 0 ? p->db->min_pool_size : p->w->cfg->min_pool_size;
}

/*
 * How many servers the pool keeps open without being asked: min_pool_size,
 * within pool_size (which a console SET may have lowered), while the pool
 * has clients, and always for a database with a forced user, as PgBouncer's
 * janitor keeps them. A pool of a client's own user is kept warm only while
 * that user is connected: sluice does not log in as users on speculation.
 */
static int warm_size_of(const struct pool *p)
{
	bool has_clients = p->n_cl_waiting_login + p->n_cl_waiting + p->n_cl_active + p->n_cl_idle >
			   0;
	if (p->is_admin || (!has_clients && !p->db->user))
		return 0;
	return MIN(pool_min_size_of(p), pool_size_of(p));
}

/* [users] over [databases] over the global value, as PgBouncer's pool_res_pool_size. */
static int reserve_size_of(const struct pool *p)
{
	const struct config_user *u = pool_user_cfg(p);
	if (u && u->reserve_pool_size >= 0)
		return u->reserve_pool_size;
	return p->db->reserve_pool_size >= 0 ? p->db->reserve_pool_size
					     : p->w->cfg->reserve_pool_size;
}

int pool_servers_of(const struct pool *p)
{
	return p->n_sv_login + p->n_sv_idle + p->n_sv_active + p->n_sv_tested +
	       p->n_sv_being_canceled;
}

int pool_total_servers(const struct pool *p)
{
	return ledger_share_servers(p->share);
}

/* ---- opening servers ------------------------------------------------------- */

static bool login_retry_blocks(const struct pool *p, uint64_t now)
{
	uint64_t retry = (uint64_t)p->w->cfg->server_login_retry;
	return !p->last_login_ok && p->last_error_at && now - p->last_error_at < retry;
}

static int max_db_of(const struct pool *p)
{
	return p->db->max_db_connections >= 0 ? p->db->max_db_connections
					      : p->w->cfg->max_db_connections;
}

static int max_user_of(const struct pool *p)
{
	const struct config_user *u = pool_user_cfg(p);
	if (u && u->max_user_connections >= 0)
		return u->max_user_connections;
	return p->w->cfg->max_user_connections;
}

static bool db_full(const struct pool *p)
{
	int max_db = max_db_of(p);
	struct ledger *l = p->w->ledger;
	return max_db > 0 && ledger_count_of(l, &l->db_servers, p->db_name) >= max_db;
}

static bool user_full(const struct pool *p)
{
	int max_user = max_user_of(p);
	struct ledger *l = p->w->ledger;
	return max_user > 0 && ledger_count_of(l, &l->user_servers, p->user_name) >= max_user;
}

/*
 * Counts one more server of the pool if the limits allow it, with at most
 * pool_limit servers of the pool: the caller opens it. Checked and counted
 * at once for every worker (ledger.h), so no limit is exceeded even for an
 * instant, and min_pool_size warms to exactly its size.
 */
static bool reserve_server_upto(const struct pool *p, int pool_limit)
{
	struct ledger_server_limits lim = {
		.pool = pool_limit,
		.db = max_db_of(p),
		.user = max_user_of(p),
	};
	/* A limit of 0 means none to the ledger; a pool_size of 0 means no server at all. */
	if (lim.pool <= 0)
		return false;
	return ledger_server_add(p->w->ledger, p->share, p->db_name, p->user_name, &lim);
}

/* with_reserve: a waiter has waited long enough for reserve_pool_size. */
static bool reserve_server(const struct pool *p, bool with_reserve)
{
	return reserve_server_upto(p, pool_size_of(p) + (with_reserve ? reserve_size_of(p) : 0));
}

/* ---- sharing max_db_connections and max_user_connections ------------------------ */

/*
 * Pools of one database (max_db_connections) or of one user
 * (max_user_connections) share the servers the limit allows. A free place
 * under it goes to the pool whose oldest waiting client not yet covered by
 * a server on its way started waiting first, whichever pool that is (a
 * "line" per limit); when the limit is full, that pool may close the
 * longest-idle server of another pool of the line to make room, as
 * PgBouncer evicts one. Within a pool, a released server goes to the
 * pool's own waiters first. The line is computed from the pools, never
 * stored: a kick of a pool that is not first in a line schedules the first
 * one's kick instead, and every kick ends by scheduling the first of each
 * line it belongs to, so a place freed by a close or an idle server that
 * can be evicted reaches the oldest waiter in the same round. Ordered by
 * (wait start, pool order), so the kicks scheduled this way cannot cycle.
 */

/* Has the oldest waiter of p waited reserve_pool_timeout? */
static bool reserve_due(const struct pool *p, uint64_t now)
{
	const struct client *oldest = TAILQ_FIRST(&p->waiting);
	return oldest && now - oldest->state_since >= (uint64_t)p->w->cfg->reserve_pool_timeout;
}

static int own_limit_of(const struct pool *p, bool with_reserve)
{
	return pool_size_of(p) + (with_reserve ? reserve_size_of(p) : 0);
}

/*
 * Whether p is in line for a new server, and since when: the wait start of
 * its oldest client that the servers logging in or being tested will not
 * serve. Not in line when it cannot open one for a reason of its own
 * (paused, server_login_retry, its pool_size).
 */
static bool uncovered_since(const struct pool *p, uint64_t now, uint64_t *since)
{
	if (p->is_admin || worker_db_paused(p->w, p->db_name) || login_retry_blocks(p, now) ||
	    pool_total_servers(p) >= own_limit_of(p, reserve_due(p, now)))
		return false;
	bool found = false;
	const struct client *c = TAILQ_FIRST(&p->waiting_login);
	if (c && !p->have_welcome && p->n_sv_login == 0) {
		*since = c->state_since;
		found = true;
	}
	int covered = p->n_sv_login + p->n_sv_tested;
	for (c = TAILQ_FIRST(&p->waiting); c && covered > 0; covered--)
		c = TAILQ_NEXT(c, state_link);
	if (c && (!found || c->state_since < *since)) {
		*since = c->state_since;
		found = true;
	}
	return found;
}

/*
 * The first pool in the line of p's database (by_db) or of p's user, or
 * NULL when nobody is in it. A pool the other limit keeps from opening is
 * not in this line.
 */
static struct pool *first_in_line(const struct pool *p, uint64_t now, bool by_db)
{
	struct pool *q, *first = NULL;
	uint64_t first_since = 0, since;
	TAILQ_FOREACH(q, &p->w->pools, link) {
		if (by_db ? strcmp(q->db_name, p->db_name) != 0
			  : strcmp(q->user_name, p->user_name) != 0)
			continue;
		if (!uncovered_since(q, now, &since) || (by_db ? user_full(q) : db_full(q)))
			continue;
		if (!first || since < first_since) {
			first = q;
			first_since = since;
		}
	}
	return first;
}

/* A pool ahead of p in a line p's limits put it in, or NULL. */
static struct pool *ahead_in_line(const struct pool *p, uint64_t now)
{
	struct pool *q;
	if (max_db_of(p) > 0 && (q = first_in_line(p, now, true)) && q != p)
		return q;
	if (max_user_of(p) > 0 && (q = first_in_line(p, now, false)) && q != p)
		return q;
	return NULL;
}

static bool ahead_elsewhere(const struct pool *p, uint64_t before, bool kick);
static bool opener_elsewhere(struct pool *p, uint64_t before_us);
static struct client *oldest_uncovered(const struct pool *p, int *uncovered);

/* Schedules the kick of the first pool of each line p is in (see above). */
static void pass_turn(struct pool *p, uint64_t now)
{
	uint64_t first = UINT64_MAX, since;
	for (int by_db = 1; by_db >= 0; by_db--) {
		if ((by_db ? max_db_of(p) : max_user_of(p)) <= 0)
			continue;
		struct pool *q = first_in_line(p, now, by_db);
		if (q && q != p)
			worker_schedule_kick(p->w, q);
		if (q && uncovered_since(q, now, &since) && since < first)
			first = since;
	}
	/*
	 * The line goes on at other workers: their first gets the turn when it
	 * came earlier, if this kick may have left a place (an idle server to
	 * evict, or room under the limits).
	 */
	if ((max_db_of(p) > 0 || max_user_of(p) > 0) &&
	    (p->n_sv_idle > 0 || (!db_full(p) && !user_full(p))))
		(void)ahead_elsewhere(p, first, true);
}

/*
 * How long a server that has served no client yet is kept from eviction
 * while its pool has clients: it was opened for them, and the welcome of a
 * new pool's clients leaves it idle until their first query arrives, a
 * round trip later. Closing it then would pay a login for nothing, over
 * and over between pools at a limit (PgBouncer's test_max_db_connections
 * saw that). Bounded, so that clients which log in and stay silent do not
 * hold the place for ever.
 */
#define FRESH_SERVER_GRACE_MS 250

/* May s be closed to make room for another pool? */
static bool evictable(const struct server *s, uint64_t now)
{
	const struct pool *q = s->pool;
	return s->link_count > 0 || now - s->idle_since >= FRESH_SERVER_GRACE_MS ||
	       q->n_cl_waiting_login + q->n_cl_waiting + q->n_cl_active + q->n_cl_idle == 0;
}

/*
 * Closes the longest-idle evictable server of w's pools under the full
 * limits of db (by_db) and user (by_user), but not of the pool sharing
 * except. Returns whether one was closed.
 */
static bool evict_idle_under(struct worker *w, const char *db, const char *user, bool by_db,
			     bool by_user, const struct pool_share *except, uint64_t now)
{
	struct pool *q;
	struct server *victim = NULL;
	TAILQ_FOREACH(q, &w->pools, link) {
		if (q->share == except || q->n_sv_idle == 0)
			continue;
		if ((by_db && strcmp(q->db_name, db) != 0) ||
		    (by_user && strcmp(q->user_name, user) != 0))
			continue;
		struct server *s;
		TAILQ_FOREACH_REVERSE(s, &q->sv_idle, server_list, state_link) {
			if (!evictable(s, now))
				continue;
			if (!victim || s->idle_since < victim->idle_since)
				victim = s;
			break; /* the list is most recently used first */
		}
	}
	if (!victim)
		return false;
	server_close(victim, "evicted for a pool at a connection limit");
	return true;
}

/*
 * The pool has room of its own but max_db_connections or max_user_connections
 * is full: close the longest-idle evictable server of another pool under the
 * same full limits, or that pool's idle servers would keep this pool's
 * clients waiting for ever. Returns whether one was closed.
 */
static bool evict_idle_elsewhere(struct pool *p, uint64_t now, bool with_reserve)
{
	if (pool_total_servers(p) >= own_limit_of(p, with_reserve))
		return false;
	bool by_db = db_full(p), by_user = user_full(p);
	if (!by_db && !by_user)
		return false;
	return evict_idle_under(p->w, p->db_name, p->user_name, by_db, by_user, p->share, now);
}

/*
 * Ends a greeting whose AuthenticationOk and ParameterStatus messages are in
 * out: appends the client's cancel key, login_notify_message, ReadyForQuery,
 * and sends it all. The caller still owns out.
 */
static void greet_tail(struct pool *p, struct client *c, struct buf_out *out)
{
	pkt_put_BackendKeyData(out, c->cancel_pid, c->cancel_key);
	if (*p->w->cfg->login_notify_message)
		pkt_put_NoticeResponse(out, "00000", p->w->cfg->login_notify_message);
	pkt_put_ReadyForQuery(out, 'I');
	stream_write(&c->stream, out->data, out->len);
}

/* Greets client c with params as they are (a replication client: its server's). */
static void send_welcome(struct pool *p, struct client *c, const struct param_set *params)
{
	struct buf_out out;
	buf_out_init(&out);
	pkt_put_AuthenticationOk(&out);
	for (int i = 0; i < params->n; i++)
		pkt_put_ParameterStatus(&out, params->items[i].name, params->items[i].value);
	greet_tail(p, c, &out);
	buf_out_deinit(&out);
}

/* Links s to c and counts the assignment: c waited waited µs, in the queue if had_to_wait. */
static void link_client(struct pool *p, struct client *c, struct server *s, uint64_t waited,
			bool had_to_wait)
{
	p->stats.total.server_assignment_count++;
	if (had_to_wait)
		p->stats.wait_count++;
	p->stats.total.wait_time += waited;
	stats_hist_add(&p->stats.wait_hist, waited);
	if (waited > p->stats.max_wait_us)
		p->stats.max_wait_us = waited;
	if (s->link_count > 0)
		p->stats.reuse_count++;
	/*
	 * A replication client is greeted now, from its own server: what
	 * PostgreSQL reported for the parameters that server was opened with.
	 */
	if (s->replication)
		send_welcome(p, c, &s->params);
	server_link(s, c);
	client_set_state(c, CLIENT_ACTIVE);
	client_linked(c);
}

static void link_waiter(struct pool *p, struct client *c, struct server *s)
{
	/* uv_now moves once per loop iteration: a later iteration means it waited. */
	link_client(p, c, s, worker_clock_us(p->w) - c->wait_start_us,
		    c->state_since != uv_now(p->w->loop));
}

/* Fails the clients of q that started waiting after the state change seq; see below. */
static void fail_waiters_since(struct client_list *q, uint64_t seq, const char *reason)
{
	struct client *c, *next;
	for (c = TAILQ_FIRST(q); c; c = next) {
		next = TAILQ_NEXT(c, state_link);
		/* A sequence, not a time: a newcomer may arrive in the failure's millisecond. */
		if (c->state_seq > seq)
			client_fail(
				c, SQLSTATE_CONNECTION_FAILURE,
				"server login has been failing, cached error: %s (server_login_retry)",
				reason);
	}
}

/*
 * Within server_login_retry of a failed login, waiters learn why instead of
 * hammering the server. After PostgreSQL refused the login, all of them get
 * its error: servers already logged in do not count, since after a password
 * change they may stay busy for as long as their clients like (PgBouncer
 * fails the waiters too). After a transient failure (PostgreSQL unreachable,
 * starting or stopping), the clients that were waiting stay queued for the
 * next attempt, and only those that came since, while the pool has no server
 * at all, are failed at once, with PgBouncer's words for it.
 */
static void fail_waiters_while_login_fails(struct pool *p)
{
	struct client *c;
	if (p->last_error_transient) {
		if (pool_servers_of(p) - p->n_sv_login > 0)
			return;
		fail_waiters_since(&p->waiting_login, p->last_error_seq, p->last_error_reason);
		fail_waiters_since(&p->waiting, p->last_error_seq, p->last_error_reason);
		return;
	}
	while ((c = TAILQ_FIRST(&p->waiting_login)) != NULL)
		client_fail_with(c, p->last_error.data, p->last_error.len, p->last_error_reason);
	while ((c = TAILQ_FIRST(&p->waiting)) != NULL)
		client_fail_with(c, p->last_error.data, p->last_error.len, p->last_error_reason);
}

/*
 * A replication client waits and the pool (or its database or user) is
 * full: close the pool's least recently used idle server to make room, as
 * PgBouncer evicts one for it. Ordinary waiters would have had that server
 * already, so this takes nothing from them. Returns whether one was closed.
 */
static bool evict_idle_here(struct pool *p)
{
	struct server *s = TAILQ_LAST(&p->sv_idle, server_list);
	if (!s)
		return false;
	server_close(s, "evicted for a replication connection");
	return true;
}

/*
 * Every replication client gets a server of its own, opened with its
 * startup parameters, never shared and closed when it leaves. Waiters are
 * served oldest first, within the limits any server obeys (pool_size,
 * reserve_pool_size after reserve_pool_timeout, max_db_connections,
 * max_user_connections), making room by evicting idle servers.
 */
static void open_replication_servers(struct pool *p, uint64_t now)
{
	const struct config *cfg = p->w->cfg;
	struct client *c, *next;
	for (c = TAILQ_FIRST(&p->waiting_repl); c; c = next) {
		next = TAILQ_NEXT(c, state_link);
		if (c->repl_server)
			continue;
		/* Room goes to the oldest waiter of every worker (one pool on several workers). */
		if (opener_elsewhere(p, c->wait_start_us))
			break;
		bool with_reserve = now - c->state_since >= (uint64_t)cfg->reserve_pool_timeout;
		if (!reserve_server(p, with_reserve) &&
		    !(evict_idle_here(p) && reserve_server(p, with_reserve)) &&
		    !(evict_idle_elsewhere(p, now, with_reserve) &&
		      reserve_server(p, with_reserve)))
			break;
		if (pool_total_servers(p) > pool_size_of(p))
			log_write(LOG_LEVEL_WARNING, CLIENT_LOG_CONN(c),
				  "taking connection from reserve_pool");
		server_connect_replication(p, c);
	}
}

/* Replication servers logging in: they are no help to ordinary waiters. */
static int replication_logins(const struct pool *p)
{
	int n = 0;
	const struct client *c;
	TAILQ_FOREACH(c, &p->waiting_repl, state_link)
		n += c->repl_server != NULL;
	return n;
}

/*
 * Shutting down once servers are released: a client that wants a server for
 * a new transaction would wait forever (PgBouncer closes it the same way).
 * Clients inside a transaction keep their server.
 */
static void fail_waiters_at_shutdown(struct pool *p)
{
	struct client *c;
	while ((c = TAILQ_FIRST(&p->waiting)) != NULL)
		client_fail(c, SQLSTATE_ADMIN_SHUTDOWN, "server shutting down");
	while ((c = TAILQ_FIRST(&p->waiting_login)) != NULL)
		client_fail(c, SQLSTATE_ADMIN_SHUTDOWN, "server shutting down");
	while ((c = TAILQ_FIRST(&p->waiting_repl)) != NULL)
		client_fail(c, SQLSTATE_ADMIN_SHUTDOWN, "server shutting down");
}

/*
 * Opens servers for the waiters that the servers logging in or being
 * tested will not cover (one for the first login when the pool has no
 * welcome yet), within the limits, giving way to a pool ahead in a shared
 * limit's line.
 */
static void open_for_waiters(struct pool *p, uint64_t now, int idle_elsewhere)
{
	int logins = p->n_sv_login - replication_logins(p);
	/* Idle servers of other workers are asked for (pull) before a login is paid for. */
	int need = p->n_cl_waiting - logins - p->n_sv_tested - idle_elsewhere;
	if (!p->have_welcome && p->n_cl_waiting_login > 0 && logins == 0)
		need = MAX(need, 1);
	bool with_reserve = reserve_due(p, now);
	int uncovered;
	const struct client *oldest = need > 0 ? oldest_uncovered(p, &uncovered) : NULL;
	if (oldest && opener_elsewhere(p, oldest->wait_start_us))
		return;
	for (; need > 0; need--) {
		struct pool *ahead = ahead_in_line(p, now);
		if (ahead) {
			worker_schedule_kick(p->w, ahead);
			return;
		}
		uint64_t since;
		if (uncovered_since(p, now, &since) && ahead_elsewhere(p, since, true))
			return;
		if (!reserve_server(p, with_reserve) &&
		    !(evict_idle_elsewhere(p, now, with_reserve) &&
		      reserve_server(p, with_reserve)))
			return;
		/* PgBouncer's line (its tests count it), on the waiter that earned it. */
		if (pool_total_servers(p) > pool_size_of(p))
			log_write(LOG_LEVEL_WARNING, CLIENT_LOG_CONN(TAILQ_FIRST(&p->waiting)),
				  "taking connection from reserve_pool");
		server_connect(p);
	}
}

/*
 * Keeps min_pool_size servers, within the limits and evicting nobody. Until
 * a login has worked, one at a time: a server that refuses logins is tried
 * once per server_login_retry, not min_pool_size times.
 */
static void keep_warm(struct pool *p, uint64_t now)
{
	int warm = warm_size_of(p);
	while (p->w->shutdown == WORKER_RUNNING && pool_total_servers(p) < warm &&
	       (p->have_welcome || p->n_sv_login == 0) && !ahead_in_line(p, now) &&
	       reserve_server_upto(p, MIN(warm, pool_size_of(p))))
		server_connect(p);
}

/* ---- one pool on several workers (crew.h) ----------------------------------------- */

/*
 * With workers = N, every worker has a pool of its own for a (database,
 * user), and the ledger counts their servers together (ledger.h), so the
 * limits hold for the process. A server serves clients of its own worker
 * only; it moves between workers (server_pack, server_unpack) when it is
 * idle, by three rules that make the workers' pools behave as one:
 *
 *   - push: a kick that leaves servers idle sends them to the other
 *     workers that have uncovered waiters (clients waiting with no server
 *     on its way for them), oldest waiter first, as many as each needs: its
 *     published uncovered count less the servers already on their way there;
 *   - FIFO: a server released here goes to a local waiter only if no other
 *     worker's oldest uncovered waiter started waiting more than
 *     FIFO_SLACK_US before it; otherwise it moves there. So a client is
 *     served no later than one that started waiting FIFO_SLACK_US after it
 *     on another worker, plus the time a server takes to move (one wake-up
 *     of the other loop);
 *   - pull: a kick that leaves waiters uncovered while the limits allow no
 *     new server asks the worker that publishes the most idle servers for
 *     some (one request at a time per pool, always answered); when
 *     max_db_connections or max_user_connections is what is full, the
 *     workers are asked in turn to evict an idle server of another pool
 *     under it, as one worker would (evict_idle_elsewhere).
 *
 * Each worker publishes its pool's idle servers and uncovered waiters in the
 * share at the end of every kick (publish). Nothing here runs with one worker.
 */
/*
 * 5 ms: with 2 ms, the oldest waiters of two busy workers (200 clients on 20
 * servers, SELECT 1) differ by more than that so often that a server moved
 * every 10 transactions, both ways; with 5 ms, every 50 (SHOW WORKERS).
 */
#define FIFO_SLACK_US 5000
/* A request unanswered this long (its worker is gone) no longer holds the next one back. */
#define PULL_TIMEOUT_MS 1000

struct pool_msg {
	struct crew_msg hdr;
	bool request; /* else servers, pushed or in answer */
	bool answer; /* the answer to the receiver's request (pull_pending) */
	bool evict_db, evict_user; /* a request: evict for these full limits too */
	bool evict_own; /* a request for a replication client: close an idle server of the pool */
	int from; /* the sender's worker index */
	char *db, *user;
	struct pool_share *share; /* alive while its servers are counted */
	int n;
	struct server_parcel parcels[];
};

static bool multi(const struct pool *p)
{
	const struct crew *cr = p->w->crew.of;
	return cr && cr->started && !p->is_admin;
}

/* What worker i needs: its uncovered waiters less the servers on their way there. */
static int need_of(const struct pool_share *sh, int i)
{
	return __atomic_load_n(&sh->uncovered[i], __ATOMIC_RELAXED) -
	       __atomic_load_n(&sh->in_flight[i], __ATOMIC_RELAXED);
}

/*
 * The worker (not p's) with the oldest uncovered waiter that needs a
 * server and started waiting before before_us (0: any time), or -1.
 */
static int oldest_elsewhere(const struct pool *p, uint64_t before_us)
{
	const struct pool_share *sh = p->share;
	if (__atomic_load_n(&sh->waiting_workers, __ATOMIC_RELAXED) == 0)
		return -1;
	const struct crew *cr = p->w->crew.of;
	int best = -1;
	uint64_t best_since = 0;
	for (int i = 0; i < cr->n; i++) {
		if (i == p->w->crew.index)
			continue;
		uint64_t since = __atomic_load_n(&sh->wait_since_us[i], __ATOMIC_RELAXED);
		if (!since || (before_us && since >= before_us) || need_of(sh, i) <= 0)
			continue;
		if (best < 0 || since < best_since) {
			best = i;
			best_since = since;
		}
	}
	return best;
}

/* The oldest waiter of p that no server logging in or being tested will serve, and their count. */
static struct client *oldest_uncovered(const struct pool *p, int *uncovered)
{
	int covered = p->n_sv_login - replication_logins(p) + p->n_sv_tested;
	*uncovered = MAX(p->n_cl_waiting - covered, 0);
	struct client *c = TAILQ_FIRST(&p->waiting);
	for (; c && covered > 0; covered--)
		c = TAILQ_NEXT(c, state_link);
	return c;
}

static void on_pool_msg(struct worker *w, struct crew_msg *hdr);
static void msg_free(struct pool_msg *m);
static struct pool_msg *msg_new(const struct pool *p, int n);

static void publish(struct pool *p)
{
	int uncovered = 0;
	struct client *c = NULL;
	bool paused = worker_db_paused(p->w, p->db_name);
	if (!paused)
		c = oldest_uncovered(p, &uncovered);
	ledger_share_publish(p->share, p->w->crew.index, paused ? 0 : p->n_sv_idle,
			     c ? MAX(c->wait_start_us, 1) : 0, c ? uncovered : 0);
	/* Its oldest waiter that a new server would serve (opener_elsewhere). */
	uint64_t open_since = 0;
	if (!paused && !login_retry_blocks(p, uv_now(p->w->loop))) {
		if (c)
			open_since = MAX(c->wait_start_us, 1);
		const struct client *r;
		TAILQ_FOREACH(r, &p->waiting_repl, state_link)
			if (!r->repl_server && (!open_since || r->wait_start_us < open_since)) {
				open_since = MAX(r->wait_start_us, 1);
				break;
			}
	}
	uint64_t *open_slot = &p->share->open_since_us[p->w->crew.index];
	if (__atomic_load_n(open_slot, __ATOMIC_RELAXED) != open_since)
		__atomic_store_n(open_slot, open_since, __ATOMIC_RELAXED);
	/* Its place in the lines of shared limits (max_db_connections, max_user_connections). */
	uint64_t since = 0;
	if ((max_db_of(p) > 0 || max_user_of(p) > 0) &&
	    !uncovered_since(p, uv_now(p->w->loop), &since))
		since = 0;
	uint64_t *slot = &p->share->line_since_ms[p->w->crew.index];
	if (__atomic_load_n(slot, __ATOMIC_RELAXED) != since)
		__atomic_store_n(slot, since ? MAX(since, 1) : 0, __ATOMIC_RELAXED);
}

/* Kicks p's pool on worker to (a message): it has something to do that p has not. */
static void kick_there(const struct pool *p, int to)
{
	struct pool_msg *m = msg_new(p, 0);
	m->hdr.run = on_pool_msg;
	if (!crew_post(p->w->crew.of->workers[to], &m->hdr))
		msg_free(m);
}

/*
 * Room for a new server of p's pool goes to the oldest waiter of every
 * worker: when another worker's waiter that needs one started waiting
 * before before_us, that worker is kicked to open it, and true returned.
 */
static bool opener_elsewhere(struct pool *p, uint64_t before_us)
{
	if (!multi(p))
		return false;
	const struct crew *cr = p->w->crew.of;
	int best = -1;
	uint64_t best_since = before_us;
	for (int i = 0; i < cr->n; i++) {
		uint64_t since = __atomic_load_n(&p->share->open_since_us[i], __ATOMIC_RELAXED);
		if (i != p->w->crew.index && since && since < best_since) {
			best = i;
			best_since = since;
		}
	}
	if (best < 0)
		return false;
	kick_there(p, best);
	return true;
}

/* What ahead_elsewhere looks for, and found: the earliest in line at another worker. */
struct line_scan {
	const char *db, *user;
	bool by_db, by_user;
	int self, n_workers;
	uint64_t before;
	int worker; /* -1: none */
	uint64_t since;
	char key[512];
	size_t key_len;
};

static void scan_share(void *arg, const struct pool_share *sh)
{
	struct line_scan *ls = arg;
	const char *db = sh->key, *user = sh->key + strlen(sh->key) + 1;
	if (!(ls->by_db && strcmp(db, ls->db) == 0) &&
	    !(ls->by_user && strcmp(user, ls->user) == 0))
		return;
	for (int i = 0; i < ls->n_workers; i++) {
		uint64_t since = __atomic_load_n(&sh->line_since_ms[i], __ATOMIC_RELAXED);
		if (i == ls->self || !since || since >= ls->before ||
		    (ls->worker >= 0 && since >= ls->since) || sh->key_len >= sizeof(ls->key))
			continue;
		ls->worker = i;
		ls->since = since;
		memcpy(ls->key, sh->key, sh->key_len + 1);
		ls->key_len = sh->key_len;
	}
}

/*
 * Whether a pool of another worker in a line of p's shared limits has been
 * in line since before `before` (uv_now); with kick, that pool is kicked,
 * so that it takes the place (crew.h message).
 */
static bool ahead_elsewhere(const struct pool *p, uint64_t before, bool kick)
{
	if (!multi(p))
		return false;
	struct line_scan ls = {
		.db = p->db_name,
		.user = p->user_name,
		.by_db = max_db_of(p) > 0,
		.by_user = max_user_of(p) > 0,
		.self = p->w->crew.index,
		.n_workers = p->w->crew.of->n,
		.before = before,
		.worker = -1,
	};
	if (!ls.by_db && !ls.by_user)
		return false;
	ledger_each_share(p->w->ledger, scan_share, &ls);
	if (ls.worker < 0)
		return false;
	if (kick) {
		struct pool_msg *m = xcalloc(1, sizeof(*m));
		m->hdr.run = on_pool_msg;
		m->from = p->w->crew.index;
		m->db = xstrdup(ls.key);
		m->user = xstrdup(ls.key + strlen(ls.key) + 1);
		m->share = NULL;
		if (!crew_post(p->w->crew.of->workers[ls.worker], &m->hdr))
			msg_free(m);
	}
	return true;
}

/* The state_seq of the last client of p that was waiting before at (uv_now), or 0. */
static uint64_t waiting_before(const struct pool *p, uint64_t at)
{
	uint64_t seq = 0;
	const struct client_list *lists[] = { &p->waiting_login, &p->waiting };
	for (size_t i = 0; i < ARRAY_SIZE(lists); i++) {
		const struct client *c;
		TAILQ_FOREACH(c, lists[i], state_link)
			if (c->state_since < at && c->state_seq > seq)
				seq = c->state_seq;
	}
	return seq;
}

/*
 * A pool's login outcomes (server_login_retry's backoff and cached error,
 * the host to try next, the failures in a row) are the share's, so that a
 * failed login backs off every worker and the hosts are tried in one
 * rotation: load them before deciding, store them after a change.
 */
static void login_load(struct pool *p)
{
	struct pool_share *sh = p->share;
	struct ledger *l = p->w->ledger;
	ledger_lock(l);
	if (p->login_gen != sh->login_gen) {
		bool newer_failure = sh->last_error_at != p->last_error_at && sh->last_error_at;
		p->login_gen = sh->login_gen;
		p->host_next = sh->host_next;
		p->hosts_failed = sh->hosts_failed;
		p->last_login_ok = sh->last_login_ok;
		p->last_error_transient = sh->last_error_transient;
		p->last_error_at = sh->last_error_at;
		snprintf(p->last_error_reason, sizeof(p->last_error_reason), "%s",
			 sh->last_error_reason);
		buf_out_reset(&p->last_error);
		buf_out_put(&p->last_error, sh->last_error.data, sh->last_error.len);
		/*
		 * Another worker's failure: who waited here before it stays queued,
		 * who came since is told (fail_waiters_while_login_fails). The
		 * loops share uv_now's clock; sequences are this worker's.
		 */
		if (newer_failure)
			p->last_error_seq = waiting_before(p, sh->last_error_at);
	}
	ledger_unlock(l);
}

static void login_store(struct pool *p)
{
	struct pool_share *sh = p->share;
	struct ledger *l = p->w->ledger;
	ledger_lock(l);
	sh->host_next = p->host_next;
	sh->hosts_failed = p->hosts_failed;
	sh->last_login_ok = p->last_login_ok;
	sh->last_error_transient = p->last_error_transient;
	sh->last_error_at = p->last_error_at;
	snprintf(sh->last_error_reason, sizeof(sh->last_error_reason), "%s", p->last_error_reason);
	buf_out_reset(&sh->last_error);
	buf_out_put(&sh->last_error, p->last_error.data, p->last_error.len);
	__atomic_store_n(&sh->login_gen, sh->login_gen + 1, __ATOMIC_RELAXED);
	p->login_gen = sh->login_gen;
	ledger_unlock(l);
}

/* Whether the share's login outcomes changed since p last loaded or stored them. */
static bool login_changed(const struct pool *p)
{
	return __atomic_load_n(&p->share->login_gen, __ATOMIC_RELAXED) != p->login_gen;
}

static struct pool_msg *msg_new(const struct pool *p, int n)
{
	struct pool_msg *m = xcalloc(1, sizeof(*m) + (size_t)n * sizeof(m->parcels[0]));
	m->from = p->w->crew.index;
	m->db = xstrdup(p->db_name);
	m->user = xstrdup(p->user_name);
	m->share = p->share;
	return m;
}

static void msg_free(struct pool_msg *m)
{
	free(m->db);
	free(m->user);
	free(m);
}

static void adopt_shared_welcome(struct pool *p);

/*
 * Sends up to k of p's idle servers to worker to (with answer set: in
 * answer to its request, also with none); returns how many went.
 */
static int send_servers(struct pool *p, int to, int k, bool answer)
{
	struct pool_msg *m = msg_new(p, k);
	m->hdr.run = on_pool_msg;
	m->answer = answer;
	struct server *s, *next;
	for (s = TAILQ_FIRST(&p->sv_idle); s && m->n < k; s = next) {
		next = TAILQ_NEXT(s, state_link);
		if (server_can_move(s) && server_pack(s, &m->parcels[m->n]) == 0)
			m->n++;
	}
	if (m->n == 0 && !answer) {
		msg_free(m);
		return 0;
	}
	int n = m->n;
	__atomic_add_fetch(&p->share->in_flight[to], n, __ATOMIC_RELAXED);
	p->w->servers_moved_out += (uint64_t)n;
	if (!crew_post(p->w->crew.of->workers[to], &m->hdr)) {
		/* It has left: the servers stay here. */
		p->w->servers_moved_out -= (uint64_t)n;
		__atomic_sub_fetch(&p->share->in_flight[to], n, __ATOMIC_RELAXED);
		for (int i = 0; i < m->n; i++)
			server_unpack(p, &m->parcels[i]);
		msg_free(m);
		return 0;
	}
	return n;
}

/* After the local waiters had theirs: idle servers go where clients wait, oldest first. */
static void push_idle(struct pool *p)
{
	int to;
	while (p->n_sv_idle > 0 && (to = oldest_elsewhere(p, 0)) >= 0)
		if (send_servers(p, to, MIN(need_of(p->share, to), p->n_sv_idle), false) == 0)
			return;
}

/* Idle servers of p's name that other workers publish. */
static int idle_elsewhere(const struct pool *p)
{
	const struct crew *cr = p->w->crew.of;
	int n = 0;
	for (int i = 0; i < cr->n; i++)
		if (i != p->w->crew.index)
			n += __atomic_load_n(&p->share->idle[i], __ATOMIC_RELAXED);
	return n;
}

/* Replication clients here that wait with no server opened for them yet. */
static bool repl_blocked(const struct pool *p)
{
	return p->n_cl_waiting_repl > replication_logins(p);
}

/* Clients wait for the pool's first login (its welcome), and none is under way here. */
static bool first_login_blocked(const struct pool *p)
{
	return !p->have_welcome && p->n_cl_waiting_login > 0 &&
	       p->n_sv_login == replication_logins(p);
}

/* Waiters are left uncovered and no server may be opened: ask another worker. */
static void pull(struct pool *p, uint64_t now)
{
	if (p->pull_pending && now - p->pull_at < PULL_TIMEOUT_MS)
		return;
	const struct crew *cr = p->w->crew.of;
	int self = p->w->crew.index, to = -1, most = 0;
	for (int i = 0; i < cr->n; i++) {
		int idle = __atomic_load_n(&p->share->idle[i], __ATOMIC_RELAXED);
		if (i != self && idle > most) {
			most = idle;
			to = i;
		}
	}
	bool by_db = false, by_user = false, own = false;
	if (to >= 0 && repl_blocked(p)) {
		/* A replication client needs a new server: room is made by closing an idle one. */
		own = true;
	} else if (to < 0) {
		/* Nobody has one of ours: a limit shared with other pools may be what is full. */
		by_db = db_full(p);
		by_user = user_full(p);
		if (!by_db && !by_user)
			return;
		p->pull_next = (p->pull_next + 1) % cr->n;
		if (p->pull_next == self)
			p->pull_next = (p->pull_next + 1) % cr->n;
		to = p->pull_next;
	}
	struct pool_msg *m = msg_new(p, 0);
	m->hdr.run = on_pool_msg;
	m->request = true;
	m->evict_db = by_db;
	m->evict_user = by_user;
	m->evict_own = own;
	if (!crew_post(cr->workers[to], &m->hdr)) {
		msg_free(m);
		return;
	}
	p->pull_pending = true;
	p->pull_at = now;
}

static struct pool *pool_find(struct worker *w, const char *db, const char *user)
{
	struct pool *p;
	TAILQ_FOREACH(p, &w->pools, link)
		if (strcmp(p->db_name, db) == 0 && strcmp(p->user_name, user) == 0)
			return p;
	return NULL;
}

/* A request from worker m->from for servers of m's pool: always answered. */
static void answer_request(struct worker *w, struct pool_msg *m)
{
	struct pool *p = w->crew.gone ? NULL : pool_find(w, m->db, m->user);
	int sent = 0;
	if (p && m->evict_own && p->n_sv_idle > 0)
		evict_idle_here(p);
	else if (p && !worker_db_paused(w, p->db_name) && p->n_sv_idle > 0)
		sent = send_servers(p, m->from, MAX(need_of(p->share, m->from), 1), true);
	if (sent > 0)
		return;
	/* What the asker saw published was stale: say what is true now before answering. */
	if (p)
		publish(p);
	if (!w->crew.gone && (m->evict_db || m->evict_user))
		evict_idle_under(w, m->db, m->user, m->evict_db, m->evict_user, m->share,
				 uv_now(w->loop));
	/* None to give: the asker tries again at its next kick (or evicted room is there). */
	struct pool_msg *a = xcalloc(1, sizeof(*a));
	a->hdr.run = on_pool_msg;
	a->answer = true;
	a->from = w->crew.index;
	a->db = xstrdup(m->db);
	a->user = xstrdup(m->user);
	a->share = m->share;
	if (!crew_post(w->crew.of->workers[m->from], &a->hdr))
		msg_free(a);
}

static void on_pool_msg(struct worker *w, struct crew_msg *hdr)
{
	struct pool_msg *m = (struct pool_msg *)hdr;
	if (m->request) {
		answer_request(w, m);
		msg_free(m);
		return;
	}
	struct ledger *l = w->ledger;
	if (m->n == 0 && !m->answer) {
		/* A kick: another worker's pool gave this one the turn in a line (pass_turn). */
		struct pool *q = w->crew.gone ? NULL : pool_find(w, m->db, m->user);
		if (q)
			worker_schedule_kick(w, q);
		msg_free(m);
		return;
	}
	if (m->n > 0)
		__atomic_sub_fetch(&m->share->in_flight[w->crew.index], m->n, __ATOMIC_RELAXED);
	struct pool *p = NULL;
	if (!w->crew.gone) {
		p = pool_find(w, m->db, m->user);
		const struct config_database *db = config_find_database(w->cfg, m->db);
		if (!p && db)
			p = pool_get(w, m->db, m->user, db);
	}
	for (int i = 0; i < m->n; i++) {
		if (p && server_unpack(p, &m->parcels[i]))
			w->servers_moved_in++;
		else if (!p)
			server_parcel_drop(l, m->share, m->db, m->user, &m->parcels[i]);
	}
	if (p) {
		if (m->answer)
			p->pull_pending = false;
		worker_schedule_kick(w, p);
	}
	msg_free(m);
}

/*
 * The waiter to serve next: the oldest, except while clients are being
 * handed to a new process (takeover.h), when those that can move wait for
 * it instead: their requests are served there.
 */
static struct client *first_waiter(struct pool *p)
{
	struct client *c = TAILQ_FIRST(&p->waiting);
	if (!p->w->holding_movable)
		return c;
	while (c && client_may_move(c))
		c = TAILQ_NEXT(c, state_link);
	return c;
}

void pool_kick(struct pool *p)
{
	struct worker *w = p->w;
	uint64_t now = uv_now(w->loop);
	if (p->kick_scheduled) {
		TAILQ_REMOVE(&w->kick_queue, p, kick_link);
		p->kick_scheduled = false;
	}
	if (p->is_admin)
		return; /* the console's pseudo-pool never has servers */
	if (w->shutdown == WORKER_WAIT_SERVERS) {
		fail_waiters_at_shutdown(p);
		return;
	}
	bool paused = worker_db_paused(w, p->db_name);
	bool shared = multi(p);
	if (shared && login_changed(p))
		login_load(p);
	if (shared && !p->have_welcome && p->n_cl_waiting_login > 0)
		adopt_shared_welcome(p);

	/* Idle servers to waiters, oldest waiter first (on any worker: see above). */
	struct client *waiter;
	while (!paused && p->n_sv_idle > 0 && (waiter = first_waiter(p)) != NULL) {
		struct server *s = TAILQ_FIRST(&p->sv_idle);
		if (server_needs_check(s, now)) {
			server_start_check(s);
			continue;
		}
		int to;
		if (shared && waiter->wait_start_us > FIFO_SLACK_US &&
		    (to = oldest_elsewhere(p, waiter->wait_start_us - FIFO_SLACK_US)) >= 0 &&
		    send_servers(p, to, 1, false) > 0)
			continue;
		link_waiter(p, waiter, s);
	}
	if (shared && !paused)
		push_idle(p);

	/*
	 * Before the login backoff: a replication login may fail for reasons
	 * of its own, and each such client hears its own server's answer.
	 */
	if (!paused)
		open_replication_servers(p, now);

	if (login_retry_blocks(p, now)) {
		/* Unless a login now under way may still succeed. */
		if (p->n_sv_login == 0)
			fail_waiters_while_login_fails(p);
	} else if (!paused) {
		open_for_waiters(p, now, shared ? idle_elsewhere(p) : 0);
		keep_warm(p, now);
	}
	pass_turn(p, now); /* a close or a failed login may have freed a place */
	if (shared) {
		int uncovered;
		if (!paused && ((oldest_uncovered(p, &uncovered) && uncovered > 0) ||
				repl_blocked(p) || first_login_blocked(p)))
			pull(p, now);
		publish(p);
		/* Room left under pool_size: the oldest waiter elsewhere that needs a server opens it. */
		if (pool_total_servers(p) < pool_size_of(p))
			(void)opener_elsewhere(p, UINT64_MAX);
	}
}

bool pool_serve_now(struct pool *p, struct client *c)
{
	/*
	 * What pool_kick() would do at once, without queueing c first: taken
	 * only when nobody waits ahead of c, so the queue's order holds.
	 */
	struct worker *w = p->w;
	if (p->n_cl_waiting > 0 || p->n_sv_idle == 0 || p->is_admin ||
	    w->shutdown == WORKER_WAIT_SERVERS || worker_db_paused(w, p->db_name) ||
	    (w->holding_movable && client_may_move(c)))
		return false;
	struct server *s = TAILQ_FIRST(&p->sv_idle);
	if (server_needs_check(s, uv_now(w->loop)))
		return false;
	bool shared = multi(p);
	/* Clients waiting on another worker: the kick decides who is first. */
	if (shared && oldest_elsewhere(p, 0) >= 0)
		return false;
	link_client(p, c, s, 0, false);
	if (shared)
		publish(p);
	return true;
}

void pool_want_server(struct pool *p, struct client *c)
{
	(void)c;
	worker_schedule_kick(p->w, p);
}

/* ---- login outcomes ------------------------------------------------------------ */

void pool_send_welcome(struct pool *p, struct client *c)
{
	/*
	 * The client's own values where it chose them, the server's defaults
	 * elsewhere: that depends on the client's profile only, which most
	 * clients of a pool share, so the messages are made once per profile
	 * in a row. The profile is the one the client's first link needs.
	 */
	if (!c->profile)
		c->profile = param_profile_get(&p->profiles, &c->params, &p->defaults);
	uint64_t id = param_profile_id(c->profile);
	struct buf_out *out = &p->welcome_status;
	if (p->welcome_status_profile != id) {
		buf_out_reset(out);
		pkt_put_AuthenticationOk(out);
		for (int i = 0; i < p->welcome.n; i++) {
			const struct param *wp = &p->welcome.items[i];
			const char *v = param_set_get_as(&c->params, wp);
			pkt_put_ParameterStatus(out, wp->name, v ? v : wp->value);
		}
		p->welcome_status_profile = id;
	}
	/*
	 * The client's own part goes after the shared one, in the same buffer,
	 * and is cut off again once sent: no message built on the heap per login.
	 */
	size_t shared = out->len;
	greet_tail(p, c, out);
	out->len = shared;
}

int pool_pick_host(struct pool *p)
{
	int n = p->db->n_hosts;
	if (n <= 1)
		return 0;
	bool shared = multi(p);
	if (shared)
		login_load(p);
	int host = (int)(p->host_next % (unsigned)n);
	if (p->db->load_balance_hosts == LOAD_BALANCE_HOSTS_ROUND_ROBIN) {
		p->host_next++;
		if (shared)
			login_store(p);
	}
	return host;
}

/* The welcome another worker's pool learned, for clients here that wait for one. */
static void adopt_shared_welcome(struct pool *p)
{
	struct param_set params;
	param_set_init(&params);
	if (ledger_share_welcome(p->w->ledger, p->share, &params)) {
		pool_learn_welcome(p, &params);
		struct client *c;
		while ((c = TAILQ_FIRST(&p->waiting_login)) != NULL)
			client_welcome(c);
	}
	param_set_deinit(&params);
}

void pool_learn_welcome(struct pool *p, const struct param_set *params)
{
	if (p->have_welcome)
		return;
	if (!p->is_admin)
		ledger_share_learn_welcome(p->w->ledger, p->share, params);
	param_set_copy(&p->welcome, params);
	for (int i = 0; i < p->welcome.n; i++) {
		const struct param *wp = &p->welcome.items[i];
		if (param_is_tracked(wp->name, p->w->cfg->track_extra_parameters))
			param_set_put(&p->defaults, wp->name, wp->value);
	}
	p->have_welcome = true;
}

void pool_link_adopted(struct pool *p, struct client *c, struct server *s)
{
	link_client(p, c, s, 0, false);
}

void pool_server_logged_in(struct pool *p, struct server *s)
{
	if (s->replication) {
		/*
		 * Its client was waiting for it alone. Its parameters are that
		 * client's, not the pool's, so they do not become the welcome, and
		 * its login proves nothing about ordinary ones (no backoff reset).
		 */
		struct client *c = s->repl_client;
		s->repl_client = NULL;
		c->repl_server = NULL;
		link_waiter(p, c, s);
		return;
	}
	bool shared = multi(p);
	if (shared)
		login_load(p);
	p->last_login_ok = true;
	p->last_error_at = 0;
	p->hosts_failed = 0;
	if (shared)
		login_store(p);
	pool_learn_welcome(p, &s->params);
	struct client *c;
	while ((c = TAILQ_FIRST(&p->waiting_login)) != NULL)
		client_welcome(c);
	pool_kick(p);
}

void pool_forget_login_failure(struct pool *p)
{
	bool shared = multi(p);
	if (shared)
		login_load(p);
	p->last_error_at = 0;
	p->hosts_failed = 0;
	if (shared)
		login_store(p);
	worker_schedule_kick(p->w, p);
}

void pool_server_login_failed(struct pool *p, int host, const uint8_t *err_msg, size_t len,
			      const char *reason, bool transient)
{
	int n = p->db->n_hosts;
	bool shared = multi(p);
	if (shared)
		login_load(p);
	if (n > 1) {
		/* disable: stay with a host until it fails (not when an older choice fails). */
		if (p->db->load_balance_hosts == LOAD_BALANCE_HOSTS_DISABLE &&
		    (unsigned)host == p->host_next % (unsigned)n)
			p->host_next++;
		if (++p->hosts_failed < n) {
			if (shared)
				login_store(p);
			worker_schedule_kick(p->w, p);
			return;
		}
		p->hosts_failed = 0;
	}
	buf_out_reset(&p->last_error);
	if (err_msg)
		buf_out_put(&p->last_error, err_msg, len);
	else
		pkt_put_ErrorResponse(&p->last_error, "FATAL", SQLSTATE_CONNECTION_FAILURE, reason);
	p->last_error_at = uv_now(p->w->loop);
	p->last_error_seq = p->w->state_changes;
	snprintf(p->last_error_reason, sizeof(p->last_error_reason), "%s", reason);
	p->last_login_ok = false;
	p->last_error_transient = transient;
	if (shared)
		login_store(p);
	if (transient) {
		worker_schedule_kick(p->w, p);
		return;
	}
	/* Clients that cannot be greeted without a server learn why now. */
	struct client *c;
	while ((c = TAILQ_FIRST(&p->waiting_login)) != NULL)
		client_fail_with(c, p->last_error.data, p->last_error.len, reason);
	worker_schedule_kick(p->w, p);
}

/* ---- periodic work --------------------------------------------------------------- */

/*
 * pool_idle_timeout, as PgBouncer: a pool with no clients and no servers for
 * that long is freed (its statistics go with it). Not the console's, and not
 * one with a forced user and min_pool_size, which sluice would only open
 * again to keep its servers warm. Returns whether p was freed.
 */
static bool free_if_idle(struct pool *p, uint64_t now)
{
	int64_t timeout = p->w->cfg->pool_idle_timeout;
	if (!pool_is_empty(p) || p->is_admin || (pool_min_size_of(p) > 0 && p->db->user != NULL)) {
		p->last_active = now;
		return false;
	}
	if (timeout <= 0 || now - p->last_active <= (uint64_t)timeout)
		return false;
	log_info("cleaning up idle pool for user %s on db %s because: pool idle timeout "
		 "(age= %llus)",
		 p->user_name, p->db_name, (unsigned long long)((now - p->last_active) / 1000));
	pool_free(p);
	return true;
}

void pool_tick(struct pool *p, uint64_t now)
{
	struct client *c = TAILQ_FIRST(&p->waiting), *next;
	int64_t notify = p->w->cfg->query_wait_notify;
	for (; c; c = next) {
		next = TAILQ_NEXT(c, state_link);
		/* Once per wait (state_since marks its start), as PgBouncer's janitor does. */
		if (notify > 0 && now - c->state_since >= (uint64_t)notify &&
		    c->wait_notified_since != c->state_since) {
			c->wait_notified_since = c->state_since;
			client_notice(c, "No server connection available in postgres backend, "
					 "client being queued");
		}
		client_tick(c, now);
	}
	if (free_if_idle(p, now))
		return;
	if (p->n_cl_waiting > 0 || p->n_cl_waiting_login > 0 || p->n_cl_waiting_repl > 0 ||
	    pool_total_servers(p) < warm_size_of(p))
		worker_schedule_kick(p->w, p);
}

void pool_create_warm(struct worker *w)
{
	if (w->shutdown != WORKER_RUNNING)
		return;
	const struct config_database *db;
	for (db = w->cfg->databases; db; db = db->hh.next) {
		int min = db->min_pool_size >= 0 ? db->min_pool_size : w->cfg->min_pool_size;
		if (db->user && min > 0 && db != w->cfg->fallback)
			worker_schedule_kick(w, pool_get(w, db->name, db->user, db));
	}
}

void pool_reconfigure(struct pool *p)
{
	const struct config_database *db = config_find_database(p->w->cfg, p->db_name);
	const struct config_database *old = p->db;
	if (!db)
		return; /* the caller closes the pool's connections */
#define CHANGED(f) ((old->f == NULL) != (db->f == NULL) || (old->f && strcmp(old->f, db->f) != 0))
	bool changed = CHANGED(dbname) || CHANGED(user) || CHANGED(password) ||
		       CHANGED(connect_query) || old->n_hosts != db->n_hosts ||
		       old->load_balance_hosts != db->load_balance_hosts;
	for (int i = 0; !changed && i < db->n_hosts; i++)
		changed = CHANGED(hosts[i].host) || old->hosts[i].port != db->hosts[i].port;
#undef CHANGED
	p->db = db;
	p->user_cfg_gen = 0; /* the mode may be the database's: looked up again */
	/*
	 * The servers open now were made for the old settings: each closes when
	 * released (at once if idle, or with server_fast_close as soon as its
	 * session is between transactions). Servers opened from now on are not
	 * affected.
	 */
	if (changed) {
		struct server *s, *next;
		for (s = server_next(p->w, NULL); s; s = next) {
			next = server_next(p->w, s);
			if (s->pool == p && s->state != SERVER_CLOSED)
				server_mark_close_needed(s);
		}
	}
}

const char *pool_param_of(const struct pool *p, const struct client *c, const char *name)
{
	const char *v = param_set_get(&c->params, name);
	return v ? v : param_set_get(&p->defaults, name);
}

/* ---- reading pool state (admin console, metrics) --------------------------------- */

struct pool *pool_next(struct worker *w, struct pool *p)
{
	return p ? TAILQ_NEXT(p, link) : TAILQ_FIRST(&w->pools);
}

void pool_get_counts(const struct pool *p, struct pool_counts *out)
{
	out->cl_active = p->n_cl_active + p->n_cl_idle;
	out->cl_waiting = p->n_cl_waiting + p->n_cl_waiting_login + p->n_cl_waiting_repl;
	out->sv_active = p->n_sv_active;
	out->sv_idle = p->n_sv_idle;
	out->sv_tested = p->n_sv_tested;
	out->sv_login = p->n_sv_login;
	out->sv_being_canceled = p->n_sv_being_canceled;
	out->cancels_active = p->n_cancels_active;
	out->maxwait_us = 0;
	const struct client *oldest = TAILQ_FIRST(&p->waiting);
	const struct client *repl = TAILQ_FIRST(&p->waiting_repl);
	if (!oldest || (repl && repl->wait_start_us < oldest->wait_start_us))
		oldest = repl;
	if (oldest)
		out->maxwait_us = uv_hrtime() / 1000 - oldest->wait_start_us;
}
