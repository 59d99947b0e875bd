/*
 * server.c - one connection to PostgreSQL: login, relay of its responses to
 * the linked client, the request queue that says when it is clean, and its
 * own queries (reset, check, connect_query, and those session.c sends).
 *
 * It does not decide which client gets it or when a new server is opened:
 * pool.c does. It does not read client bytes: client.c forwards them and
 * records each request with server_push_request(). What its session holds
 * against what its client's should be (settings PostgreSQL does not
 * report, SQL-level prepared statements, pins, the probe that asks, the
 * SETs at a link) is session.c's: this file says when, session.c what.
 */
#include "sluice/server.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sluice/auth.h"
#include "sluice/cancel.h"
#include "sluice/client.h"
#include "sluice/derive.h"
#include "sluice/handover.h"
#include "sluice/notify.h"
#include "sluice/pkt.h"
#include "sluice/pool.h"
#include "sluice/session.h"
#include "sluice/sqlstate.h"

/* Servers send messages of up to 1 GB (PostgreSQL's MaxAllocSize). */
#define SERVER_MAX_MESSAGE 0x7fffffffu
/* Largest server message sluice buffers whole to look inside. */
#define SERVER_MAX_INSPECT (1024 * 1024)

static const char *const state_names[] = {
#define X(name, text) text,
	SERVER_STATES(X)
#undef X
};

const char *server_state_name(enum server_state st)
{
	return state_names[st];
}

#define slog(lvl, s, ...)                                                                          \
	do {                                                                                       \
		if (log_enabled(lvl))                                                              \
			log_write(lvl, &(s)->lc, __VA_ARGS__);                                     \
	} while (0)

/*
 * Where each state's list and count live in struct pool (offset 0, where
 * pool->w is: the state has none). Tables, not switches: server_set_state
 * runs twice per transaction, and four switches were a fifth of its cost.
 */
#define X(name, text) +1
enum { N_SERVER_STATES = 0 SERVER_STATES(X) };
#undef X
static const uint16_t list_offset[N_SERVER_STATES] = {
	[SERVER_LOGIN] = offsetof(struct pool, sv_login),
	[SERVER_IDLE] = offsetof(struct pool, sv_idle),
	[SERVER_ACTIVE] = offsetof(struct pool, sv_active),
	[SERVER_TESTED] = offsetof(struct pool, sv_tested),
	[SERVER_BEING_CANCELED] = offsetof(struct pool, sv_being_canceled),
};
static const uint16_t count_offset[N_SERVER_STATES] = {
	[SERVER_LOGIN] = offsetof(struct pool, n_sv_login),
	[SERVER_IDLE] = offsetof(struct pool, n_sv_idle),
	[SERVER_ACTIVE] = offsetof(struct pool, n_sv_active),
	[SERVER_TESTED] = offsetof(struct pool, n_sv_tested),
	[SERVER_BEING_CANCELED] = offsetof(struct pool, n_sv_being_canceled),
};
_Static_assert(sizeof(struct pool) <= UINT16_MAX, "pool offsets fit in uint16_t");

static struct server_list *list_of(struct pool *p, enum server_state st)
{
	return (struct server_list *)((char *)p + list_offset[st]);
}

static int *count_of(struct pool *p, enum server_state st)
{
	return (int *)((char *)p + count_offset[st]);
}

void server_check(const struct server *s)
{
#ifndef NDEBUG
	assert((s->state == SERVER_ACTIVE) == (s->client != NULL));
	if (s->state == SERVER_IDLE)
		assert(s->rq.len == 0 && s->txn_status == 'I' && TAILQ_EMPTY(&s->cancels));
	if (s->state == SERVER_BEING_CANCELED)
		assert(!TAILQ_EMPTY(&s->cancels));
	/* A key derivation belongs to a login; server_close() abandons it. */
	if (s->derive)
		assert((s->state == SERVER_LOGIN || s->state == SERVER_LISTEN) && s->scram != NULL);
	/* A listener is its pool's, never linked to a client nor pooled. */
	assert((s->state == SERVER_LISTEN) == s->listener || s->state == SERVER_CLOSED);
	if (s->listener)
		assert(!s->client);
	/* A replication server belongs to one client: it is never pooled. */
	if (s->replication)
		assert(s->state == SERVER_LOGIN || s->state == SERVER_ACTIVE ||
		       s->state == SERVER_CLOSED);
	if (s->repl_client)
		assert(s->state == SERVER_LOGIN && s->replication &&
		       s->repl_client->repl_server == s);
	if (s->client)
		assert(s->client->replication == s->replication);
#else
	(void)s;
#endif
}

void server_set_state(struct server *s, enum server_state st)
{
	enum server_state old = s->state;
	if (old == st)
		return;
	struct pool *p = s->pool;
	if (list_offset[old]) {
		TAILQ_REMOVE(list_of(p, old), s, state_link);
		(*count_of(p, old))--;
	}
	if (list_offset[st]) {
		/* Idle servers are reused most-recently-used first: warm caches. */
		TAILQ_INSERT_HEAD(list_of(p, st), s, state_link);
		(*count_of(p, st))++;
	}
	s->state = st; /* the one write of server->state: server_set_state */
	if (st == SERVER_IDLE)
		s->idle_since = uv_now(s->w->loop);
	if (st == SERVER_BEING_CANCELED)
		s->being_canceled_since = uv_now(s->w->loop);
	slog(LOG_LEVEL_DEBUG, s, "%s -> %s", state_names[old], state_names[st]);
#ifndef NDEBUG
	server_check(s); /* a call to an empty function otherwise */
#endif
}

/* ---- request queue (rq.h) ------------------------------------------------ */

/* An entry with a prepared statement left the queue: prepared.c keeps its books. */
static void on_rq_done(void *owner, const struct rq_entry *e, bool answered)
{
	prepared_request_done(owner, e, answered);
}

/*
 * Answers the fake entries at the head of the queue. Only between messages:
 * while a server message is half relayed, the client's stream belongs to it.
 */
static void settle_fakes(struct server *s)
{
	uint8_t type;
	for (;;) {
		/* Looked at here first: this runs after every inspected message. */
		int head = rq_head(&s->rq);
		if (s->pass_remaining || (head != RQ_FAKE_PARSE && head != RQ_FAKE_CLOSE))
			return;
		if ((type = rq_take_fake(&s->rq)) == 0)
			return;
		if (s->client) {
			const uint8_t msg[PKT_HDR_LEN] = { type, 0, 0, 0, 4 };
			stream_write(&s->client->stream, msg, sizeof(msg));
		}
	}
}

void server_push_named_request(struct server *s, enum rq_kind kind, struct pstmt *stmt,
			       uint64_t name_id)
{
	/* PostgreSQL ignores Sync during COPY IN: it will not answer it. */
	if (kind == RQ_SYNC && s->copy_in)
		return;
	if (s->rq.len == 0) {
		s->busy_since = uv_now(s->w->loop);
		s->query_start_ns = worker_clock_ns(s->w);
		if (s->txn_status == 'I')
			s->xact_start_ns = s->query_start_ns;
	} else if (s->rq.len == 1 && rq_head(&s->rq) == RQ_INTERNAL) {
		s->busy_since = uv_now(s->w->loop);
	}
	rq_push(&s->rq, kind, stmt, name_id);
	if (s->rq.len == 1)
		settle_fakes(s);
}

/* Sends one of sluice's own queries; its response is swallowed. */
void server_send_internal(struct server *s, const char *sql)
{
	struct buf_out out;
	buf_out_init(&out);
	pkt_put_Query(&out, sql);
	stream_write(&s->stream, out.data, out.len);
	buf_out_deinit(&out);
	rq_push(&s->rq, RQ_INTERNAL, NULL, 0);
	slog(LOG_LEVEL_NOISE, s, "internal query: %s", sql);
}

/* ---- closing ------------------------------------------------------------- */

/* Undoes the pairing of a replication server that logs in and its client; returns the client. */
static struct client *detach_repl_client(struct server *s)
{
	struct client *c = s->repl_client;
	if (c) {
		s->repl_client = NULL;
		c->repl_server = NULL;
	}
	return c;
}

/*
 * The login of c's replication server failed (why: PostgreSQL's message or
 * a local reason; sqlstate NULL for a local one): c hears it in PgBouncer's
 * words, with the reason and SQLSTATE after them, and is closed. Called once
 * the server's close is logged, so that both lines are in the log before
 * the client can read its error (PgBouncer's tests count them then). The
 * pool's other clients are not told, as PgBouncer does not tell them: a
 * replication login fails for reasons of its own (no REPLICATION role, no
 * pg_hba.conf line for replication) while ordinary logins work.
 */
static void fail_repl_login(struct client *c, const char *sqlstate, const char *why)
{
	char msg[512];
	snprintf(msg, sizeof(msg), "login failed: %s", why);
	struct buf_out out;
	buf_out_init(&out);
	if (!sqlstate)
		sqlstate = SQLSTATE_CONNECTION_FAILURE;
	pkt_put_ErrorResponse(&out, "FATAL", sqlstate, msg);
	client_fail_with(c, out.data, out.len, "login failed");
	buf_out_deinit(&out);
}

static void on_stream_closed(struct stream *st)
{
	struct server *s = container_of(st, struct server, stream);
	tls_ctx_unref(s->tls_ctx);
	param_set_deinit(&s->params);
	param_set_deinit(&s->session);
	param_set_deinit(&s->probe_names);
	param_set_deinit(&s->probed);
	param_set_deinit(&s->probed_channels);
	param_set_deinit(&s->probe_prepares);
	param_set_deinit(&s->probe_prepares_sent);
	param_set_deinit(&s->reprepares);
	rq_deinit(&s->rq);
	prepared_server_deinit(s->w, &s->prepared);
	free(s);
}

void server_close(struct server *s, const char *reason)
{
	if (s->state == SERVER_CLOSED)
		return;
	struct pool *p = s->pool;
	struct worker *w = s->w;
	bool was_login = s->state == SERVER_LOGIN;
	bool listener = s->listener;
	/* PgBouncer's line, which operators grep for; log_disconnections covers servers too. */
	slog(w->cfg->log_disconnections ? LOG_LEVEL_INFO : LOG_LEVEL_DEBUG, s,
	     "closing because: %s (age=%llus)", reason,
	     (unsigned long long)((uv_now(w->loop) - s->connect_time) / 1000));
	struct client *c = s->client;
	if (c) {
		s->client = NULL;
		c->server = NULL;
	}
	struct client *owner = detach_repl_client(s);
	if (s->derive) {
		/* Its memory goes in the close callback; the job must not come back to it. */
		derive_abandon(s->derive);
		s->derive = NULL;
	}
	server_set_state(s, SERVER_CLOSED);
	cancel_server_closed(s);
	TAILQ_REMOVE(&w->servers, s, link);
	if (!listener)
		ledger_server_remove(w->ledger, p->share, p->db_name, p->user_name);
	p->stats.servers_closed[s->close_reason]++;
	if (s->scram) {
		scram_client_free(s->scram);
		s->scram = NULL;
	}
	if (owner)
		fail_repl_login(owner, NULL, reason);
	else if (was_login && !s->logged_in_once && !s->replication) {
		char why[300];
		snprintf(why, sizeof(why), "server login failed: %s", reason);
		pool_server_login_failed(p, s->host_index, NULL, 0, why, false);
	}
	if (c)
		client_fail(c, SQLSTATE_CONNECTION_FAILURE, "server connection failed: %s", reason);
	if (listener)
		notify_listener_down(s, reason);
	if (s->stream_open)
		stream_close(&s->stream);
	else
		on_stream_closed(&s->stream);
	worker_schedule_kick(w, p);
}

static void close_because(struct server *s, enum stats_close_reason why, const char *text)
{
	s->close_reason = why;
	server_close(s, text);
}

/*
 * The login never reached PostgreSQL's verdict: the server could not be
 * reached or did not answer in time. That is transient (a restart, a
 * fail-over), so the waiting clients stay queued for the next attempt after
 * server_login_retry, as PgBouncer keeps them. why is PgBouncer's word for
 * the close line; detail says what happened, for the log and for the clients
 * failed with the cached error meanwhile.
 */
static void close_unreached(struct server *s, const char *why, const char *detail)
{
	slog(LOG_LEVEL_WARNING, s, "%s", detail);
	/* A replication server's own client hears it, with the detail; the pool does not. */
	if (s->replication || s->listener) {
		server_close(s, detail);
		return;
	}
	pool_server_login_failed(s->pool, s->host_index, NULL, 0, detail, true);
	s->logged_in_once = true; /* reported */
	server_close(s, why);
}

/* ---- release ------------------------------------------------------------- */

bool server_is_clean(const struct server *s)
{
	const struct client *c = s->client;
	return s->rq.len == 0 && s->txn_status == 'I' && !s->copy_in && s->pass_remaining == 0 &&
	       (!c || (c->pass_remaining == 0 && !c->ext_open));
}

/* server_lifetime 0 means used once, as PgBouncer's: closed at its first release. */
static bool expired(const struct server *s, uint64_t now)
{
	return now - s->connect_time >= s->lifetime_ms;
}

/*
 * The server has no client any more and is clean (still ACTIVE, or
 * BEING_CANCELED). Decide its fate: wait for its cancels, close it (expired,
 * config changed, reconnect asked), reset it (TESTED), or make it idle.
 */
static void after_release(struct server *s, bool run_reset)
{
	struct pool *p = s->pool;
	const struct config *cfg = s->w->cfg;
	uint64_t now = uv_now(s->w->loop);
	if (!TAILQ_EMPTY(&s->cancels)) {
		/* A cancel still on its way could hit the next client's query. */
		s->reset_after_cancel = run_reset;
		server_set_state(s, SERVER_BEING_CANCELED);
		return;
	}
	if (s->close_needed) {
		close_because(s, STATS_CLOSE_reload, "database configuration changed");
		return;
	}
	if (expired(s, now)) {
		close_because(s, STATS_CLOSE_lifetime, "server lifetime over");
		return;
	}
	if (s->pins) {
		/* What pinned the last client (a temporary object, a lock...) is not the next one's. */
		s->pins = 0;
		server_set_state(s, SERVER_TESTED);
		server_send_internal(s, "DISCARD ALL");
		if (s->session.n)
			session_probe_send(s);
		return;
	}
	if (run_reset && cfg->server_reset_query && *cfg->server_reset_query) {
		server_set_state(s, SERVER_TESTED);
		server_send_internal(s, cfg->server_reset_query);
		/* Whatever the reset query is, what it left of the session is asked, not assumed. */
		if (s->session.n)
			session_probe_send(s);
		return;
	}
	server_set_state(s, SERVER_IDLE);
	worker_schedule_kick(s->w, p);
}

void server_cancels_done(struct server *s)
{
	if (s->state == SERVER_BEING_CANCELED)
		after_release(s, s->reset_after_cancel);
}

static void unlink_client(struct server *s)
{
	struct client *c = s->client;
	s->client = NULL;
	c->server = NULL;
	client_unlinked(c);
}

void server_maybe_release(struct server *s)
{
	struct client *c = s->client;
	/* A replication server is its client's until the client leaves, whatever the pool_mode. */
	if (!c || s->state != SERVER_ACTIVE || s->replication)
		return;
	enum pool_mode mode = pool_mode_of(s->pool);
	if (mode == POOL_MODE_SESSION)
		return;
	if (!server_is_clean(s)) {
		if (mode == POOL_MODE_STATEMENT && s->rq.len == 0 && s->txn_status != 'I' &&
		    !s->copy_in) {
			client_fail(c, SQLSTATE_FEATURE_NOT_SUPPORTED,
				    "transaction blocks not allowed in statement pooling mode");
		}
		return;
	}
	if (s->probe_due) {
		session_probe_send(s); /* released once it is answered */
		return;
	}
	if (s->pins) {
		/* its session is its client's until the pins are gone */
		if (c->listens)
			notify_at_rest(c);
		return;
	}
	unlink_client(s);
	after_release(s, s->w->cfg->server_reset_query_always);
}

void server_client_gone(struct server *s)
{
	struct client *c = s->client;
	bool clean = server_is_clean(s);
	s->client = NULL;
	if (c)
		c->server = NULL;
	if (s->replication) {
		/* A walsender's session is its client's: nobody else may continue it. */
		close_because(s, STATS_CLOSE_other, "replication client disconnected");
		return;
	}
	if (!clean) {
		close_because(s, STATS_CLOSE_other,
			      "client disconnected with the server in a transaction or mid-request");
		return;
	}
	bool reset = pool_mode_of(s->pool) == POOL_MODE_SESSION ||
		     s->w->cfg->server_reset_query_always;
	after_release(s, reset);
}

void server_owner_gone(struct server *s)
{
	detach_repl_client(s);
	close_because(s, STATS_CLOSE_other, "replication client disconnected");
}

/* ---- linking ------------------------------------------------------------- */

void server_link(struct server *s, struct client *c)
{
	s->client = c;
	c->server = s;
	s->checked = false;
	server_set_state(s, SERVER_ACTIVE);
	s->link_count++;
	/* Time the client's first request from the link (a parameter SET may come first). */
	s->query_start_ns = worker_clock_ns(s->w);
	if (s->txn_status == 'I')
		s->xact_start_ns = s->query_start_ns;
	/*
	 * A replication server got the client's parameters in its startup
	 * packet; a physical walsender would refuse a SET anyway.
	 */
	if (s->replication)
		return;
	session_sync(s, c);
}

bool server_needs_check(const struct server *s, uint64_t now)
{
	const struct config *cfg = s->w->cfg;
	/* 0 checks before every reuse, as PgBouncer; once, not in a loop. */
	return cfg->server_check_query && *cfg->server_check_query && !s->checked &&
	       cfg->server_check_delay >= 0 &&
	       now - s->idle_since >= (uint64_t)cfg->server_check_delay;
}

void server_start_check(struct server *s)
{
	server_set_state(s, SERVER_TESTED);
	/* PgBouncer's "<empty>": an empty query, the cheapest round trip there is. */
	const char *sql = s->w->cfg->server_check_query;
	server_send_internal(s, strcmp(sql, "<empty>") == 0 ? "" : sql);
}

/* ---- messages from PostgreSQL ------------------------------------------- */

/* A client request finished: count the query, and the transaction if it ended. */
static void account_rfq(struct server *s)
{
	struct pool_stats *st = &s->pool->stats;
	uint64_t now = worker_clock_ns(s->w);
	st->total.query_count++;
	st->total.query_time += (now - s->query_start_ns) / 1000;
	s->query_start_ns = now; /* the next pipelined request is timed from here */
	if (s->txn_status == 'I') {
		uint64_t us = (now - s->xact_start_ns) / 1000;
		st->total.xact_count++;
		st->total.xact_time += us;
		stats_hist_add(&st->xact_hist, us);
		s->xact_start_ns = now;
	}
}

static void fail_protocol(struct server *s, const char *what)
{
	server_close(s, what);
}

/* An internal query (or the login's connect_query) finished. */
static void internal_done(struct server *s)
{
	if (s->internal_error) {
		s->internal_error = false;
		server_close(s, "an internal query failed");
		return;
	}
	if (s->state == SERVER_LOGIN) {
		s->checked = true; /* a new server needs no check, as in PgBouncer */
		server_set_state(s, SERVER_IDLE);
		pool_server_logged_in(s->pool, s);
		return;
	}
	if (s->state == SERVER_TESTED && !s->client) {
		s->checked = true; /* it answered: alive, and clean */
		after_release(s, false);
	}
}

/*
 * Records a reported parameter for the server and, when tracked, for its
 * client. msg is the whole message; swallow says it answers one of sluice's
 * own queries. A value the client has not been told yet (the canonical
 * spelling of what it asked for, "SQL, DMY" for "SQL,DMY") is passed on to
 * it even then, so that its view matches what a direct connection reports.
 */
static void handle_parameter_status(struct server *s, const uint8_t *msg, uint32_t len,
				    bool swallow)
{
	struct pkt_reader r;
	pkt_reader_init(&r, msg + PKT_HDR_LEN, len - PKT_HDR_LEN);
	const char *k = pkt_get_cstr(&r), *v = pkt_get_cstr(&r);
	if (!k || !v)
		return;
	if (param_set_put(&s->params, k, v))
		s->synced_profile = 0;
	struct client *c = s->client;
	if (c && param_is_tracked(k, s->w->cfg->track_extra_parameters)) {
		const char *told = pool_param_of(s->pool, c, k);
		bool same = told && strcmp(told, v) == 0;
		if (swallow && !same)
			stream_write(&c->stream, msg, len);
		/* Only a value that differs from what the client has is worth storing. */
		if (!same)
			session_client_param_put(c, k, v);
	}
}

/*
 * DISCARD ALL and DEALLOCATE ALL drop every prepared statement of the
 * session: the server's set is empty now, and so are the names of the
 * client that sent it (not of one whose session sluice reset).
 */
static void forget_on_discard(struct server *s, const uint8_t *body, size_t blen, bool internal)
{
	if ((blen == sizeof("DISCARD ALL") && memcmp(body, "DISCARD ALL", blen) == 0) ||
	    (blen == sizeof("DEALLOCATE ALL") && memcmp(body, "DEALLOCATE ALL", blen) == 0)) {
		prepared_server_forget_all(s->w, &s->prepared, s->answering_seq);
		if (s->client && !internal)
			prepared_client_forget_all(s->w, &s->client->prepared);
	}
}

/*
 * Handles one whole message that must be looked at. Returns false when the
 * server was closed.
 */
static bool handle_inspected(struct server *s, const uint8_t *msg, uint32_t len, bool swallow)
{
	struct client *c = s->client;
	const uint8_t *body = msg + PKT_HDR_LEN;
	size_t blen = len - PKT_HDR_LEN;
	switch (msg[0]) {
	case PKT_ReadyForQuery: {
		if (blen != 1)
			return fail_protocol(s, "malformed ReadyForQuery"), false;
		s->txn_status = (char)body[0];
		int kind = rq_ready(&s->rq);
		if (kind < 0)
			return fail_protocol(s, "unexpected ReadyForQuery"), false;
		s->copy_in = false;
		if (kind == RQ_INTERNAL) {
			bool probe = s->probe_seq && s->answering_seq == s->probe_seq;
			stream_consume(&s->stream, len);
			if (probe && !s->internal_error)
				session_probe_answered(s);
			if (s->internal_error && c) {
				/* Its client hears why, whatever else is queued. */
				s->internal_error = false;
				client_fail(c, SQLSTATE_PROTOCOL_VIOLATION, "%s",
					    probe ? "server did not say which session settings it has"
						  : "server refused to apply a session parameter");
				if (s->state != SERVER_CLOSED)
					server_close(s, probe ? "session settings probe failed"
							      : "parameter SET failed");
				return false;
			} else if (s->rq.len == 0 && !c) {
				internal_done(s);
			} else if (c && probe) {
				server_maybe_release(s);
			} else if (c) {
				/* Only the SETs of server_link: a probe's answer may have just restored one. */
				session_adopt_canonical(s, c);
			}
			return s->state != SERVER_CLOSED;
		}
		s->last_rfq = uv_now(s->w->loop);
		account_rfq(s);
		stream_forward(&c->stream, &s->stream, len);
		s->pool->stats.total.bytes_sent += len;
		server_maybe_release(s);
		return s->state != SERVER_CLOSED;
	}
	case PKT_ParameterStatus:
		handle_parameter_status(s, msg, len, swallow);
		break;
	case PKT_ErrorResponse: {
		struct pkt_error e;
		if (pkt_parse_error(body, blen, &e) == PKT_OK && swallow &&
		    !session_reprepare_failed(s, s->answering_seq, &e)) {
			slog(LOG_LEVEL_WARNING, s, "server error in internal query: %s %s",
			     e.sqlstate ? e.sqlstate : "?", e.message ? e.message : "?");
			s->internal_error = true;
		}
		if (!c && rq_head(&s->rq) != RQ_INTERNAL) {
			stream_consume(&s->stream, len);
			server_close(s, e.message ? e.message : "error from idle server");
			return false;
		}
		break;
	}
	case PKT_CommandComplete:
		forget_on_discard(s, body, blen, swallow);
		break;
	case PKT_NoticeResponse:
	case PKT_NotificationResponse:
		break;
	case PKT_DataRow:
		if (swallow && s->probe_seq && s->answering_seq == s->probe_seq) {
			session_probe_row(s, body, blen);
			break;
		}
		/* fall through */
	default:
		/*
		 * Without a client only the answer to one of sluice's own queries
		 * (server_reset_query, server_check_query) may arrive; it is
		 * swallowed below.
		 */
		if (!c && rq_head(&s->rq) != RQ_INTERNAL)
			return fail_protocol(s, "unexpected message from idle server"), false;
		break;
	}
	if (swallow || !c) {
		stream_consume(&s->stream, len);
	} else {
		stream_forward(&c->stream, &s->stream, len);
		s->pool->stats.total.bytes_sent += len;
	}
	return true;
}

static bool must_inspect(const struct server *s, uint8_t type, bool swallow)
{
	switch (type) {
	case PKT_ReadyForQuery:
	case PKT_ParameterStatus:
		return true;
	case PKT_CommandComplete:
		/* Only a session with named statements cares about DISCARD ALL. */
		return swallow || s->prepared.n ||
		       (s->client && prepared_client_any(&s->client->prepared));
	case PKT_ErrorResponse:
		return swallow || rq_head(&s->rq) == RQ_PARSE_IN_USE;
	default:
		return swallow;
	}
}

/*
 * Whether a message of type from s goes to its client c as it is, with
 * nothing for must_inspect, no request of sluice's to answer and no
 * verdict from rq_retire but 0: rows, descriptions, and the completions
 * of c's own requests. Anything else takes server_relay's general way.
 */
static inline bool relays_plain(const struct server *s, const struct client *c, uint8_t type)
{
	int head = rq_head(&s->rq);
	if (head == RQ_INTERNAL)
		return false;
	switch (type) {
	case PKT_DataRow:
	case PKT_RowDescription:
	case PKT_NoData:
	case PKT_ParameterDescription:
	case PKT_EmptyQueryResponse:
	case PKT_PortalSuspended:
		return true;
	case PKT_ParseComplete:
		return head == RQ_PARSE || head == RQ_PARSE_IN_USE;
	case PKT_BindComplete:
		return head == RQ_BIND;
	case PKT_CloseComplete:
		return head == RQ_CLOSE;
	case PKT_CommandComplete:
		/* must_inspect looks for DISCARD ALL once statements are named. */
		return !s->prepared.n && !prepared_client_any(&c->prepared);
	default:
		return false;
	}
}

/* Relays (or swallows) everything complete in the read buffer. */
/*
 * Messages that go to the client unchanged are handed over together, once
 * something else must happen (a message to inspect or swallow, a fake
 * answer to write, the end of the input): one slice or TLS record per run
 * instead of one per message. *fwd bytes at the front of the read buffer
 * are c's and not yet handed over.
 */
static void forward_run(struct server *s, struct client *c, size_t *fwd)
{
	if (*fwd) {
		stream_forward(&c->stream, &s->stream, *fwd);
		s->pool->stats.total.bytes_sent += *fwd;
		*fwd = 0;
	}
}

/* Whether settle_fakes would write something now. */
static bool fakes_due(const struct server *s)
{
	int head = rq_head(&s->rq);
	return s->pass_remaining == 0 && (head == RQ_FAKE_PARSE || head == RQ_FAKE_CLOSE);
}

static void server_relay(struct server *s)
{
	struct stream *st = &s->stream;
	struct client *fwd_to = s->client;
	size_t fwd = 0;
	while (s->state != SERVER_CLOSED && st->rbuf && buf_avail(st->rbuf) > fwd) {
		struct client *c = s->client;
		if (c != fwd_to) {
			/* A handler (run after forward_run) changed the client: fwd is 0. */
			forward_run(s, fwd_to, &fwd);
			fwd_to = c;
		}
		size_t avail = buf_avail(st->rbuf) - fwd;
		const uint8_t *data = stream_data(st) + fwd;
		if (s->pass_remaining) {
			size_t n = MIN(avail, (size_t)s->pass_remaining);
			s->pass_remaining -= (uint32_t)n;
			if (s->pass_swallow || !c) {
				forward_run(s, fwd_to, &fwd);
				stream_consume(st, n);
			} else {
				fwd += n;
			}
			if (fakes_due(s)) {
				forward_run(s, fwd_to, &fwd);
				settle_fakes(s);
			}
			continue;
		}
		struct pkt_hdr h;
		int rc = pkt_frame(data, avail, SERVER_MAX_MESSAGE, &h);
		if (rc == PKT_INCOMPLETE)
			break;
		if (rc != PKT_OK) {
			forward_run(s, fwd_to, &fwd);
			fail_protocol(s, "malformed message from server");
			return;
		}
		/*
		 * The common case, decided at once: a whole message for the
		 * client that nothing needs to look into joins the run.
		 */
		if (c && h.len <= avail && relays_plain(s, c, h.type)) {
			(void)rq_retire(&s->rq, h.type); /* 0: relays_plain made sure */
			fwd += h.len;
			if (fakes_due(s)) {
				forward_run(s, fwd_to, &fwd);
				settle_fakes(s);
			}
			continue;
		}
		if (h.type == PKT_NotificationResponse && c && c->listens) {
			/* The pool's listener brings the client this one: dropped here (notify.h). */
			forward_run(s, fwd_to, &fwd);
			if (h.len > avail) {
				stream_reserve(st, h.len);
				break;
			}
			if (notify_fans_out(c, stream_data(st), h.len)) {
				stream_consume(st, h.len);
				continue;
			}
		}
		bool swallow = !c || rq_head(&s->rq) == RQ_INTERNAL;
		bool inspect = must_inspect(s, h.type, swallow);
		if (inspect && h.len > avail) {
			forward_run(s, fwd_to, &fwd);
			if (h.len > SERVER_MAX_INSPECT) {
				fail_protocol(s, "oversized message from server");
				return;
			}
			stream_reserve(st, h.len);
			break;
		}
		if (h.type == PKT_ErrorResponse && c && rq_head(&s->rq) == RQ_PARSE_IN_USE) {
			forward_run(s, fwd_to, &fwd);
			if (prepared_name_in_use_error(s, rq_head_entry(&s->rq), stream_data(st),
						       h.len)) {
				rq_retire(&s->rq, h.type);
				stream_consume(st, h.len);
				settle_fakes(s);
				continue;
			}
		}
		/*
		 * Retired once, now that the whole message (if inspected) is here.
		 * Only an inspected message asks what it answers (forget_on_discard).
		 */
		if (inspect)
			s->answering_seq = rq_answering_seq(&s->rq);
		int hidden = rq_retire(&s->rq, h.type);
		if (hidden < 0) {
			forward_run(s, fwd_to, &fwd);
			fail_protocol(s, "response to no request from server");
			return;
		}
		swallow = swallow || hidden;
		if (inspect) {
			forward_run(s, fwd_to, &fwd);
			if (!handle_inspected(s, stream_data(st), h.len, swallow))
				return;
			settle_fakes(s);
			continue;
		}
		if (h.type == PKT_CopyInResponse) {
			/*
			 * The Sync of the batch that started COPY reached the server
			 * in copy mode and will not be answered.
			 */
			s->copy_in = true;
			rq_copy_in(&s->rq);
		}
		size_t n = MIN(avail, (size_t)h.len);
		if (swallow || !c) {
			forward_run(s, fwd_to, &fwd);
			stream_consume(st, n);
		} else {
			fwd += n;
		}
		s->pass_remaining = h.len - (uint32_t)n;
		s->pass_swallow = swallow;
		if (fakes_due(s)) {
			forward_run(s, fwd_to, &fwd);
			settle_fakes(s);
		}
	}
	forward_run(s, fwd_to, &fwd);
	settle_fakes(s);
	if (s->client && s->state != SERVER_CLOSED) {
		client_check_backpressure(s->client);
		client_prepared_resume(s->client);
	}
}

/* ---- login ----------------------------------------------------------------- */

static const char *server_password(struct server *s)
{
	struct pool *p = s->pool;
	if (p->db->password)
		return p->db->password;
	if (s->w->userlist) {
		const struct auth_user *u = auth_userlist_find(s->w->userlist, p->user_name);
		if (u && (u->secret.kind == AUTH_SECRET_PLAIN || u->secret.kind == AUTH_SECRET_MD5))
			return u->secret.text;
	}
	return p->client_password;
}

/* Whether the configuration holds any secret for the server's user. */
static bool has_stored_secret(const struct server *s)
{
	const struct pool *p = s->pool;
	return p->db->password ||
	       (s->w->userlist && auth_userlist_find(s->w->userlist, p->user_name));
}

static void send_out(struct server *s, struct buf_out *out)
{
	stream_write(&s->stream, out->data, out->len);
	buf_out_deinit(out);
}

/*
 * Sends the SCRAM client-final-message, built from job (run) or from the
 * pass-through keys (job NULL). false: the exchange failed and s is closed.
 */
static bool send_scram_final(struct server *s, const struct scram_job *job)
{
	char *fin = NULL;
	if (scram_client_final_build(s->scram, job, &fin) != 0) {
		server_close(s, "SCRAM exchange with server failed");
		return false;
	}
	struct buf_out out;
	buf_out_init(&out);
	pkt_put_SASLResponse(&out, fin, strlen(fin));
	free(fin);
	send_out(s, &out);
	return true;
}

static void login_read(struct server *s);

/*
 * The SaltedPassword derivation of a SCRAM login has run (on the loop
 * again). The server is still in LOGIN: server_close() abandons the job, so
 * a closed server is never called back. Messages that arrived meanwhile
 * (a well-behaved server sends none) are read now.
 */
static void on_derived(void *owner, struct scram_job *job)
{
	struct server *s = owner;
	s->derive = NULL;
	bool ok = send_scram_final(s, job);
	scram_job_free(job);
	if (!ok)
		return;
	stream_resume(&s->stream);
	login_read(s);
	if (s->state != SERVER_LOGIN && s->state != SERVER_CLOSED)
		server_relay(s);
}

/* The closing words when the secret cannot answer the method the server asked for. */
static void close_no_password(struct server *s, const char *pw)
{
	/*
	 * PgBouncer's words when the secret there is cannot answer this method
	 * (an MD5 hash, or a SCRAM secret without the client's keys).
	 */
	server_close(s, pw || has_stored_secret(s)
				? "wrong password type"
				: "no password available to log in to the server");
}

/*
 * AuthenticationSASL (r after its code): picks SCRAM-SHA-256 and sends the
 * client-first message, with the password pw or the SCRAM keys a client
 * passed through. false: closed.
 */
static bool start_scram(struct server *s, struct pkt_reader *r, const char *pw)
{
	struct pool *p = s->pool;
	bool found = false;
	for (;;) {
		const char *mech = pkt_get_cstr(r);
		if (!mech || !*mech)
			break;
		if (strcmp(mech, "SCRAM-SHA-256") == 0)
			found = true;
	}
	if (!found) {
		server_close(s, "server offers no supported SASL mechanism");
		return false;
	}
	if (s->scram)
		scram_client_free(s->scram);
	s->scram = NULL;
	if (pw && !auth_is_md5_secret(pw))
		s->scram = scram_client_new(pw, NULL, NULL);
	else if (p->have_scram_keys)
		s->scram = scram_client_new(NULL, p->scram_client_key, p->scram_server_key);
	if (!s->scram) {
		close_no_password(s, pw);
		return false;
	}
	char *first = scram_client_first(s->scram);
	struct buf_out out;
	buf_out_init(&out);
	pkt_put_SASLInitialResponse(&out, "SCRAM-SHA-256", first, strlen(first));
	free(first);
	send_out(s, &out);
	return true;
}

/* Handles an Authentication request during login. false: closed. */
static bool login_auth(struct server *s, const uint8_t *body, size_t len)
{
	struct pkt_reader r;
	struct buf_out out;
	buf_out_init(&out);
	pkt_reader_init(&r, body, len);
	uint32_t code = pkt_get_be32(&r);
	const char *pw = server_password(s);
	struct pool *p = s->pool;
	switch (code) {
	case PKT_AUTH_OK:
		if (s->scram && !scram_client_done(s->scram)) {
			server_close(s, "server sent AuthenticationOk without a verified SCRAM "
					"server signature");
			return false;
		}
		s->auth_ok = true;
		return true;
	case PKT_AUTH_CLEARTEXT:
		if (!pw || auth_is_md5_secret(pw))
			goto nopw;
		pkt_put_PasswordMessage(&out, pw);
		send_out(s, &out);
		return true;
	case PKT_AUTH_MD5: {
		const uint8_t *salt = pkt_get_bytes(&r, 4);
		if (!salt) {
			buf_out_deinit(&out);
			server_close(s, "malformed message from server during login");
			return false;
		}
		if (!pw)
			goto nopw;
		char resp[36];
		auth_md5_response(pw, p->user_name, salt, resp);
		pkt_put_PasswordMessage(&out, resp);
		send_out(s, &out);
		return true;
	}
	case PKT_AUTH_SASL:
		buf_out_deinit(&out);
		return start_scram(s, &r, pw);
	case PKT_AUTH_SASL_CONTINUE: {
		struct scram_job *job = NULL;
		buf_out_deinit(&out);
		if (!s->scram ||
		    scram_client_receive_first(s->scram, body + 4, len - 4, &job) != 0) {
			server_close(s, "SCRAM exchange with server failed");
			return false;
		}
		if (job) {
			/* With a password: derive off the loop; on_derived() answers. */
			s->derive = derive_start(&s->w->derive, job, on_derived, s);
			slog(LOG_LEVEL_DEBUG, s,
			     "SCRAM proof derivation handed to the thread pool");
			return true;
		}
		return send_scram_final(s, NULL);
	}
	case PKT_AUTH_SASL_FINAL:
		if (!s->scram || scram_client_verify(s->scram, body + 4, len - 4) != 0) {
			server_close(s, "server failed SCRAM verification");
			return false;
		}
		return true;
	default:
		server_close(s, "unsupported authentication method requested by server");
		return false;
	}
nopw:
	buf_out_deinit(&out);
	close_no_password(s, pw);
	return false;
}

/*
 * PostgreSQL refused the login with the ErrorResponse msg (len bytes, still
 * in the read buffer): logged in PgBouncer's words, reported to the pool
 * (or to its one client, for a replication server), and the server closed.
 */
static void login_refused(struct server *s, const uint8_t *msg, uint32_t len)
{
	struct pkt_error e;
	if (pkt_parse_error(msg + PKT_HDR_LEN, len - PKT_HDR_LEN, &e) != PKT_OK)
		e.severity = NULL, e.message = NULL, e.sqlstate = NULL;
	/* PgBouncer's words: operators grep for them. */
	char reason[256];
	snprintf(reason, sizeof(reason), "%s",
		 e.message ? e.message : "server login failed: malformed error");
	slog(LOG_LEVEL_WARNING, s, "server login failed: %s %s", e.severity ? e.severity : "?",
	     reason);
	if (s->replication) {
		char code[6] = "";
		if (e.sqlstate)
			snprintf(code, sizeof(code), "%s", e.sqlstate);
		struct client *owner = detach_repl_client(s);
		stream_consume(&s->stream, len);
		server_close(s, "login failed");
		if (owner)
			fail_repl_login(owner, *code ? code : NULL, reason);
		return;
	}
	if (s->listener) {
		/* The pool's own logins are not this one: its clients fall back (notify.h). */
		stream_consume(&s->stream, len);
		server_close(s, reason);
		return;
	}
	/* "starting up" or "shutting down": the next attempt may well succeed. */
	bool transient = e.sqlstate && strcmp(e.sqlstate, SQLSTATE_CANNOT_CONNECT_NOW) == 0;
	pool_server_login_failed(s->pool, s->host_index, msg, len, reason, transient);
	s->logged_in_once = true; /* already reported */
	stream_consume(&s->stream, len);
	server_close(s, reason);
}

/* The messages of a login, up to its first ReadyForQuery (and connect_query's). */
/*
 * The next whole message at the front of s's read buffer (which has some),
 * framed in *h; NULL when it is not all here yet (the buffer grows to hold
 * a large one) or the bytes are no message, and then s is closed with why.
 * Login and the listener read one message at a time this way; the relay
 * has its own, streaming way.
 */
static const uint8_t *next_message(struct server *s, struct pkt_hdr *h, const char *why)
{
	struct stream *st = &s->stream;
	size_t avail = buf_avail(st->rbuf);
	int rc = pkt_frame(stream_data(st), avail, SERVER_MAX_INSPECT, h);
	if (rc == PKT_INCOMPLETE)
		return NULL;
	if (rc != PKT_OK) {
		server_close(s, why);
		return NULL;
	}
	if (h->len > avail) {
		stream_reserve(st, h->len);
		return NULL;
	}
	return stream_data(st);
}

/* Logging in: a pool's server in LOGIN, or its listener before its first ReadyForQuery. */
static inline bool in_login(const struct server *s)
{
	return s->state == SERVER_LOGIN || (s->state == SERVER_LISTEN && !s->listen_up);
}

static void login_read(struct server *s)
{
	struct stream *st = &s->stream;
	if (s->derive) {
		/* The SCRAM proof is being derived: hold what arrives, within a bound. */
		if (stream_avail(st) >= BUF_SIZE / 2)
			stream_pause(st);
		return;
	}
	while (in_login(s) && !s->derive && st->rbuf && buf_avail(st->rbuf) > 0) {
		struct pkt_hdr h;
		const uint8_t *msg = next_message(s, &h,
						  "malformed message from server during login");
		if (!msg)
			return;
		const uint8_t *body = msg + PKT_HDR_LEN;
		size_t blen = h.len - PKT_HDR_LEN;
		if (rq_head(&s->rq) == RQ_INTERNAL) {
			/* connect_query running: reuse the relay's inspection. */
			if (!handle_inspected(s, msg, h.len, true))
				return;
			continue;
		}
		switch (h.type) {
		case PKT_Authentication:
			if (!login_auth(s, body, blen))
				return;
			break;
		case PKT_ParameterStatus:
			handle_parameter_status(s, msg, h.len, true);
			break;
		case PKT_BackendKeyData: {
			struct pkt_reader r;
			pkt_reader_init(&r, body, blen);
			s->be_pid = pkt_get_be32(&r);
			s->be_key = pkt_get_be32(&r);
			break;
		}
		case PKT_NoticeResponse:
		case PKT_NegotiateProtocolVersion:
			break;
		case PKT_ErrorResponse:
			login_refused(s, msg, h.len);
			return;
		case PKT_ReadyForQuery:
			if (!s->auth_ok) {
				server_close(s,
					     "server sent ReadyForQuery before AuthenticationOk");
				return;
			}
			s->txn_status = (char)(blen ? body[0] : 'I');
			s->logged_in_once = true;
			stream_consume(st, h.len);
			if (s->listener) {
				slog(LOG_LEVEL_INFO, s, "login succeeded (listener)");
				s->listen_up = true;
				notify_listener_up(s);
				return;
			}
			/* Not on a walsender: the session is its client's (and may refuse SQL). */
			if (!s->replication && s->pool->db->connect_query &&
			    *s->pool->db->connect_query) {
				server_send_internal(s, s->pool->db->connect_query);
				continue;
			}
			slog(LOG_LEVEL_INFO, s, "login succeeded");
			s->checked = true; /* a new server needs no check, as in PgBouncer */
			if (!s->replication)
				server_set_state(s, SERVER_IDLE);
			pool_server_logged_in(s->pool, s);
			return;
		default:
			server_close(s, "unexpected message from server during login");
			return;
		}
		stream_consume(st, h.len);
	}
}

static void send_startup(struct server *s);
static void listener_read(struct server *s);

static void on_server_tls(struct stream *st, int status)
{
	struct server *s = container_of(st, struct server, stream);
	s->w->stats_tls_handshakes[1]++;
	if (status != 0) {
		s->w->stats_tls_failures[1]++;
		char detail[300];
		snprintf(detail, sizeof(detail), "TLS with %s failed: %s", s->addr,
			 stream_tls_error(st));
		close_unreached(s, "TLS handshake failed", detail);
		return;
	}
	/* As libpq: a server that did not choose ALPN postgresql did not agree to direct TLS. */
	if (s->direct_tls && !tls_conn_alpn_postgresql(stream_tls(st))) {
		s->w->stats_tls_failures[1]++;
		close_unreached(s, "TLS handshake failed",
				"direct TLS: the server did not select ALPN postgresql");
		return;
	}
	char desc[64];
	stream_tls_describe(st, desc, sizeof(desc));
	slog(LOG_LEVEL_DEBUG, s, "TLS established: %s", desc);
	send_startup(s);
}

/*
 * The server's one-byte answer to the SSLRequest: 'S' starts TLS, 'N' goes
 * on in the clear unless server_tls_sslmode requires TLS.
 */
static void read_ssl_answer(struct server *s)
{
	struct stream *st = &s->stream;
	size_t avail = stream_avail(st);
	if (avail == 0)
		return;
	uint8_t answer = stream_data(st)[0];
	s->ssl_requested = false;
	struct tls_ctx *tls = s->tls_ctx;
	s->tls_ctx = NULL;
	if (answer == 'S' && avail > 1) {
		/* Bytes before the handshake would be a man in the middle's (CVE-2021-23214). */
		tls_ctx_unref(tls);
		close_unreached(s, "bad SSL response",
				"server sent unencrypted data after its SSL response");
		return;
	}
	if (answer == 'S') {
		stream_consume(st, 1);
		stream_start_tls(st, tls, s->host, on_server_tls);
		tls_ctx_unref(tls);
		return;
	}
	enum sslmode mode = tls_ctx_sslmode(tls);
	tls_ctx_unref(tls);
	if (answer != 'N') {
		close_unreached(s, "bad SSL response",
				"server answered SSLRequest with neither S nor N");
		return;
	}
	stream_consume(st, 1);
	if (mode >= SSLMODE_REQUIRE) {
		close_unreached(s, "server refused SSL",
				"server refused SSL, which server_tls_sslmode requires");
		return;
	}
	send_startup(s);
}

static void on_read(struct stream *st)
{
	struct server *s = container_of(st, struct server, stream);
	if (s->ssl_requested) {
		read_ssl_answer(s);
		if (s->ssl_requested || !in_login(s) || stream_avail(st) == 0)
			return;
	}
	if (in_login(s))
		login_read(s);
	if (s->state == SERVER_LISTEN && s->listen_up)
		listener_read(s);
	else if (s->state != SERVER_LOGIN && s->state != SERVER_CLOSED && !s->listener)
		server_relay(s);
}

static void on_error(struct stream *st, int err)
{
	struct server *s = container_of(st, struct server, stream);
	char reason[128];
	snprintf(reason, sizeof(reason), "%s",
		 err == UV_EOF ? "server closed the connection" : uv_strerror(err));
	server_close(s, reason);
}

static void on_drain(struct stream *st)
{
	/* The server took what a client sent: let that client send more. */
	struct server *s = container_of(st, struct server, stream);
	if (s->client)
		stream_resume(&s->client->stream);
}

/*
 * The StartupMessage: the pool's user and database and the [databases]
 * parameters. A replication server also carries its client's replication
 * value, tracked parameters (over the [databases] ones) and raw options:
 * a physical walsender takes no SET, so they must arrive here.
 */
static void send_startup(struct server *s)
{
	struct pool *p = s->pool;
	const struct config_database *db = p->db;
	const struct client *c = s->repl_client;
	const struct param_set *own = c ? &c->params : NULL;
	int cap = 8 + (own ? own->n : 0);
	const char **keys = xmalloc((size_t)cap * sizeof(*keys));
	const char **vals = xmalloc((size_t)cap * sizeof(*vals));
	int n = 0;
	keys[n] = "user", vals[n++] = p->user_name;
	keys[n] = "database", vals[n++] = db->dbname ? db->dbname : p->db_name;
	const char *const db_keys[] = { "client_encoding", "DateStyle", "TimeZone",
					"application_name" };
	const char *const db_vals[] = { db->client_encoding, db->datestyle, db->timezone,
					db->application_name };
	for (size_t i = 0; i < ARRAY_SIZE(db_keys); i++)
		if (db_vals[i] && !(own && param_set_get(own, db_keys[i])))
			keys[n] = db_keys[i], vals[n++] = db_vals[i];
	if (c) {
		for (int i = 0; i < own->n; i++)
			keys[n] = own->items[i].name, vals[n++] = own->items[i].value;
		keys[n] = "replication";
		vals[n++] = pkt_replication_startup_value((enum pkt_replication)s->replication);
		if (c->startup_options)
			keys[n] = "options", vals[n++] = c->startup_options;
	}
	struct buf_out out;
	buf_out_init(&out);
	pkt_put_StartupMessage(&out, keys, vals, n);
	send_out(s, &out);
	free(keys);
	free(vals);
}

static void on_connected(struct stream *st, int status)
{
	struct server *s = container_of(st, struct server, stream);
	if (status < 0) {
		char detail[160];
		if (status == UV_ETIMEDOUT) {
			close_unreached(s, "connect timeout", "server_connect_timeout reached");
		} else if (!st->resolved) {
			/* PgBouncer's words first: operators and its tests match them. */
			snprintf(detail, sizeof(detail), "server DNS lookup failed: %s: %s",
				 s->addr, uv_strerror(status));
			close_unreached(s, "server DNS lookup failed", detail);
		} else {
			snprintf(detail, sizeof(detail), "could not connect to %s: %s", s->addr,
				 uv_strerror(status));
			close_unreached(s, "connect failed", detail);
		}
		return;
	}
	struct pool *p = s->pool;
	if (s->replication && !s->repl_client) {
		server_close(s, "replication client disconnected");
		return;
	}
	if (p->w->cfg->log_connections) {
		char local[80];
		stream_local_name(&s->stream, local, sizeof(local));
		if (strcmp(local, "unix") == 0)
			slog(LOG_LEVEL_INFO, s, "new connection to server");
		else
			slog(LOG_LEVEL_INFO, s, "new connection to server (from %s)", local);
	}
	struct tls_ctx *tls = s->w->server_tls;
	if (tls && !st->is_pipe && strcmp(s->w->cfg->server_tls_sslnegotiation, "direct") == 0) {
		/* PostgreSQL 17's direct TLS: a ClientHello first, with ALPN postgresql. */
		s->direct_tls = true;
		stream_start_tls(st, tls, s->host, on_server_tls);
	} else if (tls && !st->is_pipe) {
		/* The login starts inside TLS, or in the clear after an 'N' (read_ssl_answer). */
		struct buf_out out;
		buf_out_init(&out);
		pkt_put_SSLRequest(&out);
		stream_write(st, out.data, out.len);
		buf_out_deinit(&out);
		s->ssl_requested = true;
		s->tls_ctx = tls_ctx_ref(tls);
	} else {
		send_startup(s);
	}
	stream_read_start(st);
}

/* Opens a server for the pool, or for replication client owner (NULL: pooled). */
static const struct stream_ops server_stream_ops = {
	.read = on_read,
	.error = on_error,
	.drain = on_drain,
	.close = on_stream_closed,
	.connect = on_connected,
};

/*
 * A server of p, on the worker's list, CLOSED (on no state list): what
 * opening one and taking one over from a predecessor share. The caller has
 * counted it in the ledger (ledger_server_add); closing it gives the count back.
 */
static struct server *server_new(struct pool *p, uint64_t id)
{
	struct worker *w = p->w;
	const struct config *cfg = w->cfg;
	struct server *s = xcalloc(1, sizeof(*s));
	s->w = w;
	s->id = id;
	s->pool = p; /* state: SERVER_CLOSED is 0, as calloc leaves it */
	s->txn_status = 'I';
	s->close_reason = STATS_CLOSE_error;
	param_set_init(&s->params);
	prepared_server_init(&s->prepared);
	rq_init(&s->rq, on_rq_done, s);
	TAILQ_INIT(&s->cancels);
	TAILQ_INSERT_TAIL(&w->servers, s, link);
	/* Jitter (up to 10% shorter) so servers opened together do not expire together. */
	int64_t life = p->db->server_lifetime >= 0 ? p->db->server_lifetime : cfg->server_lifetime;
	if (life > 0)
		s->lifetime_ms = (uint64_t)life - (uint64_t)(random() % (life / 10 + 1));
	if (cfg->server_idle_timeout > 0)
		s->idle_timeout_ms = (uint64_t)cfg->server_idle_timeout -
				     (uint64_t)(random() % (cfg->server_idle_timeout / 10 + 1));
	return s;
}

static struct server *open_server(struct pool *p, struct client *owner, bool listener)
{
	struct worker *w = p->w;
	const struct config *cfg = w->cfg;
	struct server *s = server_new(p, ledger_next_id(w->ledger));
	s->listener = listener;
	if (owner) {
		s->replication = owner->replication;
		s->repl_client = owner;
		owner->repl_server = s;
	}
	p->stats.servers_opened++;

	s->host_index = pool_pick_host(p);
	const struct config_host *ch = &p->db->hosts[s->host_index];
	const char *host = ch->host ? ch->host : CONFIG_DEFAULT_SOCKET_DIR;
	int port = ch->port;
	s->port = port;
	if (host[0] != '/')
		snprintf(s->host, sizeof(s->host), "%s", host);
	if (host[0] == '/')
		snprintf(s->addr, sizeof(s->addr), "%s/.s.PGSQL.%d", host, port);
	else if (strchr(host, ':'))
		snprintf(s->addr, sizeof(s->addr), "[%s]:%d", host, port);
	else
		snprintf(s->addr, sizeof(s->addr), "%s:%d", host, port);
	s->lc = (struct log_conn){ 'S', s->id, p->db_name, p->user_name, s->addr };
	s->connect_time = uv_now(w->loop);

	server_set_state(s, listener ? SERVER_LISTEN : SERVER_LOGIN);
	slog(LOG_LEVEL_DEBUG, s, listener ? "connecting (listener)" : "connecting");
	if (stream_dial(&w->io, &s->stream, &server_stream_ops, host, port,
			(uint64_t)cfg->server_connect_timeout) != 0) {
		close_unreached(s, "cannot create socket", "cannot create a socket for the server");
		return NULL;
	}
	s->stream_open = true;
	return s;
}

void server_connect(struct pool *p)
{
	open_server(p, NULL, false);
}

void server_connect_replication(struct pool *p, struct client *c)
{
	open_server(p, c, false);
}

struct server *server_connect_listener(struct pool *p)
{
	return open_server(p, NULL, true);
}

bool server_listener_ready(const struct server *s)
{
	return s->state == SERVER_LISTEN && s->listen_up && s->rq.len == 0;
}

void server_listener_send(struct server *s, const char *sql)
{
	slog(LOG_LEVEL_DEBUG, s, "listener: %s", sql);
	s->busy_since = uv_now(s->w->loop);
	server_send_internal(s, sql);
}

void server_send_mirror(struct server *s, const char *sql)
{
	server_send_internal(s, sql);
	s->listen_mirrored = true;
}

/*
 * The listener's messages once it is logged in: the answers to its LISTENs
 * and UNLISTENs, and the notifications, which its pool's clients get.
 */
static void listener_read_messages(struct server *s);

static void listener_read(struct server *s)
{
	listener_read_messages(s);
	if (s->state == SERVER_LISTEN)
		notify_listener_read_done(s);
}

static void listener_read_messages(struct server *s)
{
	struct stream *st = &s->stream;
	while (s->state == SERVER_LISTEN && st->rbuf && buf_avail(st->rbuf) > 0) {
		struct pkt_hdr h;
		const uint8_t *msg = next_message(s, &h, "malformed message from server");
		if (!msg)
			return;
		switch (h.type) {
		case PKT_NotificationResponse:
			notify_listener_message(s, msg, h.len);
			break;
		case PKT_ErrorResponse: {
			struct pkt_error e;
			if (pkt_parse_error(msg + PKT_HDR_LEN, h.len - PKT_HDR_LEN, &e) == PKT_OK)
				slog(LOG_LEVEL_WARNING, s, "listener query failed: %s %s",
				     e.sqlstate ? e.sqlstate : "?", e.message ? e.message : "?");
			s->internal_error = true;
			break;
		}
		case PKT_ReadyForQuery:
			stream_consume(st, h.len);
			if (rq_ready(&s->rq) < 0) {
				fail_protocol(s, "unexpected ReadyForQuery");
				return;
			}
			if (s->internal_error) {
				server_close(s, "a LISTEN or UNLISTEN failed");
				return;
			}
			notify_listener_answered(s);
			continue;
		case PKT_CommandComplete:
		case PKT_EmptyQueryResponse: /* the fence (notify.c) */
		case PKT_ParameterStatus:
		case PKT_NoticeResponse:
			break;
		default:
			server_close(s,
				     "unexpected message from server on the listener connection");
			return;
		}
		if (s->state == SERVER_LISTEN)
			stream_consume(st, h.len);
	}
}

/*
 * Ends a linked server together with its client: the client gets reason
 * (PgBouncer's words) as a FATAL error with sqlstate, and the server is
 * closed with the same reason in the log, whatever state its session is in.
 */
static void end_with_client(struct server *s, enum stats_close_reason why, const char *sqlstate,
			    const char *reason)
{
	struct client *c = s->client;
	s->client = NULL;
	c->server = NULL;
	client_fail(c, sqlstate, "%s", reason);
	close_because(s, why, reason);
}

/*
 * The timeouts of a linked server, in PgBouncer's order (query, idle
 * transaction, transaction), each from the [users] entry of the pool or the
 * global value; then server_fast_close. A query still running is cancelled
 * on PostgreSQL as well: a backend busy in a query does not notice that its
 * socket was closed, and would run on. The CancelRequest goes on a
 * connection of its own, which outlives this server.
 */
static void tick_linked(struct server *s, uint64_t now)
{
	const struct config *cfg = s->w->cfg;
	const struct config_user *u = pool_user_cfg(s->pool);
	int64_t query = config_query_timeout(cfg, u);
	int64_t idle_xact = config_idle_transaction_timeout(cfg, u);
	int64_t xact = config_transaction_timeout(cfg, u);
	bool ready = s->rq.len == 0 && s->txn_status == 'I';
	struct client *c = s->client;

	if (query && s->rq.len > 0 && now - s->busy_since >= (uint64_t)query) {
		cancel_request(s->w, c->cancel_pid, c->cancel_key);
		end_with_client(s, STATS_CLOSE_other, SQLSTATE_QUERY_CANCELED, "query timeout");
	} else if (idle_xact && s->rq.len == 0 && s->txn_status != 'I' &&
		   now - s->last_rfq >= (uint64_t)idle_xact) {
		end_with_client(s, STATS_CLOSE_other, SQLSTATE_IDLE_IN_TRANSACTION_TIMEOUT,
				"idle transaction timeout");
	} else if (xact && !ready && (uv_hrtime() - s->xact_start_ns) / 1000000 >= (uint64_t)xact) {
		if (s->rq.len > 0)
			cancel_request(s->w, c->cancel_pid, c->cancel_key);
		end_with_client(s, STATS_CLOSE_other, SQLSTATE_TRANSACTION_TIMEOUT,
				"transaction timeout");
	} else if (s->close_needed &&
		   (s->replication || (cfg->server_fast_close && server_is_clean(s)))) {
		/*
		 * Session mode only in effect: in the other modes a clean server
		 * has already been released, and closed there. The client loses
		 * its session, never a transaction. A replication session may
		 * last for ever, so it is closed at once, as PgBouncer does.
		 */
		end_with_client(s, STATS_CLOSE_reload, SQLSTATE_ADMIN_SHUTDOWN,
				"database configuration changed");
	}
}

void server_tick(struct server *s, uint64_t now)
{
	const struct config *cfg = s->w->cfg;
	switch (s->state) {
	case SERVER_LOGIN:
		if (cfg->server_connect_timeout &&
		    now - s->connect_time >= (uint64_t)cfg->server_connect_timeout)
			close_unreached(s, "connect timeout", "server_connect_timeout reached");
		break;
	case SERVER_IDLE:
		if (s->close_needed)
			close_because(s, STATS_CLOSE_reload, "database configuration changed");
		else if (s->lifetime_ms && expired(s, now)) /* a new server gets its one use */
			close_because(s, STATS_CLOSE_lifetime, "server lifetime over");
		else if (s->idle_timeout_ms && now - s->idle_since >= s->idle_timeout_ms &&
			 pool_total_servers(s->pool) - s->pool->n_sv_login >
				 pool_min_size_of(s->pool))
			close_because(s, STATS_CLOSE_idle, "server idle timeout");
		break;
	case SERVER_LISTEN:
		if (!s->listen_up && cfg->server_connect_timeout &&
		    now - s->connect_time >= (uint64_t)cfg->server_connect_timeout)
			close_unreached(s, "connect timeout", "server_connect_timeout reached");
		/*
		 * A LISTEN holds the clients that wait for it: one unanswered for
		 * as long as a connect may take is not coming (a lock, a hung
		 * server), and they go on without the listener.
		 */
		else if (s->listen_up && s->rq.len && cfg->server_connect_timeout &&
			 now - s->busy_since >= (uint64_t)cfg->server_connect_timeout)
			server_close(s, "the listener's LISTEN went unanswered for "
					"server_connect_timeout");
		break;
	case SERVER_BEING_CANCELED:
		/*
		 * PostgreSQL closes a cancel connection as soon as it has signalled
		 * the backend; one that stays open is not coming back, and the
		 * server's state is unknown.
		 */
		if (cfg->server_connect_timeout &&
		    now - s->being_canceled_since >= (uint64_t)cfg->server_connect_timeout)
			server_close(s, "a cancel request sent for it did not finish");
		break;
	case SERVER_ACTIVE:
		if (s->client)
			tick_linked(s, now);
		break;
	default:
		break;
	}
}

/* ---- reading server state (admin console, metrics) ----------------------------- */

/* ---- moving between workers (crew.h) ------------------------------------------------ */

bool server_can_move(const struct server *s)
{
	return s->state == SERVER_IDLE && !s->replication && s->stream_open && !s->stream.closing &&
	       s->rq.len == 0 && !s->pass_remaining && !s->copy_in && s->txn_status == 'I' &&
	       !s->internal_error && !s->close_needed && TAILQ_EMPTY(&s->cancels) &&
	       stream_unsent(&s->stream) == 0 && stream_avail(&s->stream) == 0 &&
	       stream_fd(&s->stream) >= 0;
}

int server_pack(struct server *s, struct server_parcel *parcel)
{
	struct worker *w = s->w;
	struct pool *p = s->pool;
	struct tls_conn *tls = NULL;
	if (s->stream.tls && !(tls = stream_take_tls(&s->stream)))
		return -1; /* the session has something under way: not now */
	int fd = fcntl(stream_fd(&s->stream), F_DUPFD_CLOEXEC, 0);
	if (fd < 0) {
		slog(LOG_LEVEL_WARNING, s, "cannot move to another worker: %s", strerror(errno));
		if (tls)
			stream_give_tls(&s->stream, tls);
		return -1;
	}
	*parcel = (struct server_parcel){
		.fd = fd,
		.id = s->id,
		.port = s->port,
		.host_index = s->host_index,
		.is_pipe = s->stream.is_pipe,
		.be_pid = s->be_pid,
		.be_key = s->be_key,
		.connect_time = s->connect_time,
		.idle_since = s->idle_since,
		.lifetime_ms = s->lifetime_ms,
		.idle_timeout_ms = s->idle_timeout_ms,
		.link_count = s->link_count,
		.checked = s->checked,
		.tls = tls,
	};
	prepared_server_pack(w, &s->prepared, &parcel->statements);
	snprintf(parcel->addr, sizeof(parcel->addr), "%s", s->addr);
	snprintf(parcel->host, sizeof(parcel->host), "%s", s->host);
	param_set_init(&parcel->params);
	param_set_copy(&parcel->params, &s->params);
	param_set_init(&parcel->session);
	param_set_copy(&parcel->session, &s->session);
	slog(LOG_LEVEL_NOISE, s, "moving to another worker");
	server_set_state(s, SERVER_CLOSED);
	TAILQ_REMOVE(&w->servers, s, link);
	if (s->scram) { /* the login's SCRAM state, kept for nothing now: not carried */
		scram_client_free(s->scram);
		s->scram = NULL;
	}
	/* The duplicate keeps the socket open: closing this copy sends PostgreSQL nothing. */
	stream_close(&s->stream);
	(void)p;
	return 0;
}

struct server *server_unpack(struct pool *p, struct server_parcel *parcel)
{
	struct worker *w = p->w;
	struct server *s = server_new(p, parcel->id);
	s->host_index = parcel->host_index >= 0 && parcel->host_index < p->db->n_hosts
				? parcel->host_index
				: 0;
	s->port = parcel->port;
	snprintf(s->addr, sizeof(s->addr), "%s", parcel->addr);
	snprintf(s->host, sizeof(s->host), "%s", parcel->host);
	s->lc = (struct log_conn){ 'S', s->id, p->db_name, p->user_name, s->addr };
	s->connect_time = parcel->connect_time;
	s->lifetime_ms = parcel->lifetime_ms;
	s->idle_timeout_ms = parcel->idle_timeout_ms;
	s->link_count = parcel->link_count;
	s->checked = parcel->checked;
	s->be_pid = parcel->be_pid;
	s->be_key = parcel->be_key;
	param_set_copy(&s->params, &parcel->params);
	param_set_deinit(&parcel->params);
	param_set_copy(&s->session, &parcel->session);
	param_set_deinit(&parcel->session);
	prepared_server_unpack(w, &s->prepared, &parcel->statements);
	s->logged_in_once = s->auth_ok = true;
	server_set_state(s, SERVER_LOGIN);
	int fd = parcel->fd;
	parcel->fd = -1;
	if (stream_init(&w->io, &s->stream, parcel->is_pipe, &server_stream_ops) != 0) {
		close(fd);
		if (parcel->tls)
			tls_conn_free(parcel->tls);
		parcel->tls = NULL;
		server_close(s, "cannot take the socket from another worker");
		return NULL;
	}
	s->stream_open = true;
	struct tls_conn *tls = parcel->tls;
	parcel->tls = NULL;
	if (stream_adopt(&s->stream, fd) != 0) {
		if (tls)
			tls_conn_free(tls);
		server_close(s, "cannot take the socket from another worker");
		return NULL;
	}
	if (tls)
		stream_give_tls(&s->stream, tls);
	stream_read_start(&s->stream);
	server_set_state(s, SERVER_IDLE);
	s->idle_since = parcel->idle_since;
	slog(LOG_LEVEL_NOISE, s, "moved here from another worker");
	return s;
}

void server_parcel_drop(struct ledger *l, struct pool_share *sh, const char *db, const char *user,
			struct server_parcel *parcel)
{
	if (parcel->fd >= 0)
		close(parcel->fd);
	parcel->fd = -1;
	if (parcel->tls)
		tls_conn_free(parcel->tls);
	parcel->tls = NULL;
	param_set_deinit(&parcel->params);
	param_set_deinit(&parcel->session);
	prepared_carry_free(l, &parcel->statements);
	ledger_server_remove(l, sh, db, user);
}

/* ---- online restart (takeover.h) ----------------------------------------------------- */

bool server_can_hand_over(const struct server *s)
{
	/*
	 * Idle in its session: nothing sent and unanswered, nothing half-relayed
	 * either way, no cancel under way, outside a transaction (so no SET the
	 * next link may need can fail), in the clear.
	 */
	return s->state == SERVER_ACTIVE && !s->replication && s->stream_open && !s->stream.tls &&
	       !s->stream.closing && s->rq.len == 0 && !s->pass_remaining && !s->copy_in &&
	       s->txn_status == 'I' && !s->internal_error && TAILQ_EMPTY(&s->cancels) &&
	       stream_unsent(&s->stream) == 0 && stream_avail(&s->stream) == 0 &&
	       stream_fd(&s->stream) >= 0;
}

void server_handed_over(struct server *s)
{
	struct worker *w = s->w;
	struct pool *p = s->pool;
	slog(LOG_LEVEL_DEBUG, s, "handed over to the new process");
	struct client *c = s->client;
	if (c) {
		s->client = NULL;
		c->server = NULL;
	}
	server_set_state(s, SERVER_CLOSED);
	TAILQ_REMOVE(&w->servers, s, link);
	ledger_server_remove(w->ledger, p->share, p->db_name, p->user_name);
	if (s->scram) {
		scram_client_free(s->scram);
		s->scram = NULL;
	}
	/* Its socket is the successor's too: closing this copy sends PostgreSQL nothing. */
	stream_close(&s->stream);
	worker_schedule_kick(w, p);
}

struct server *server_adopt(struct pool *p, int fd, const struct handover_server *h, uint64_t id)
{
	struct worker *w = p->w;
	/* Counted whatever the limits say: it exists already. */
	static const struct ledger_server_limits none = { 0 };
	ledger_server_add(w->ledger, p->share, p->db_name, p->user_name, &none);
	struct server *s = server_new(p, id ? id : ledger_next_id(w->ledger));
	s->host_index = h->host_index >= 0 && h->host_index < p->db->n_hosts ? h->host_index : 0;
	s->port = h->port;
	snprintf(s->addr, sizeof(s->addr), "%s", h->addr);
	snprintf(s->host, sizeof(s->host), "%s", h->host);
	s->lc = (struct log_conn){ 'S', s->id, p->db_name, p->user_name, s->addr };
	s->connect_time = worker_now_of_wall_ms(w, h->connect_time_ms);
	s->be_pid = h->be_pid;
	s->be_key = h->be_key;
	for (uint32_t i = 0; i < h->n_params; i++)
		param_set_put(&s->params, h->params[i].name, h->params[i].value);
	s->logged_in_once = s->auth_ok = true;
	server_set_state(s, SERVER_LOGIN);
	if (stream_init(&w->io, &s->stream, h->addr[0] == '/', &server_stream_ops) != 0) {
		close(fd);
		server_close(s, "cannot take over the socket");
		return NULL;
	}
	s->stream_open = true;
	if (stream_adopt(&s->stream, fd) != 0) {
		server_close(s, "cannot take over the socket");
		return NULL;
	}
	pool_learn_welcome(p, &s->params);
	server_set_state(s, SERVER_IDLE);
	stream_read_start(&s->stream);
	slog(LOG_LEVEL_DEBUG, s, "taken over from the old process");
	return s;
}

struct server *server_next(struct worker *w, struct server *s)
{
	return s ? TAILQ_NEXT(s, link) : TAILQ_FIRST(&w->servers);
}

void server_mark_close_needed(struct server *s)
{
	s->close_needed = true;
	if (s->state == SERVER_IDLE)
		close_because(s, STATS_CLOSE_reload, "database configuration changed");
}

void server_info(const struct server *s, struct conn_info *out)
{
	memset(out, 0, sizeof(*out));
	out->type = 'S';
	out->user = s->pool->user_name;
	out->database = s->pool->db_name;
	switch (s->state) {
	case SERVER_ACTIVE:
		out->state_name = "active";
		out->socket_state = "sv_active";
		break;
	case SERVER_IDLE:
		out->state_name = "idle";
		out->socket_state = "sv_idle";
		break;
	case SERVER_TESTED:
		out->state_name = "tested";
		out->socket_state = "sv_tested";
		break;
	case SERVER_BEING_CANCELED:
		out->state_name = "being_canceled";
		out->socket_state = "sv_being_canceled";
		break;
	case SERVER_LISTEN:
		/* The pool's listener (notify.h): sluice's own, busy for as long as it lives. */
		out->state_name = s->listen_up ? "listen" : "new";
		out->socket_state = s->listen_up ? "sv_listen" : "sv_login";
		break;
	default:
		out->state_name = "new";
		out->socket_state = "sv_login";
		break;
	}
	out->port = s->port;
	if (s->addr[0] == '/') {
		snprintf(out->addr, sizeof(out->addr), "unix");
	} else {
		/* The host part of addr, without the brackets of an IPv6 address. */
		const char *h = s->addr + (s->addr[0] == '[');
		size_t len = strlen(h) - strlen(strrchr(h, ':')) - (s->addr[0] == '[');
		snprintf(out->addr, sizeof(out->addr), "%.*s", (int)len, h);
	}
	if (s->stream_open)
		(void)stream_address(&s->stream, true, out->local_addr, sizeof(out->local_addr),
				     &out->local_port);
	uint64_t now_ms = uv_now(s->w->loop), now_s = (uint64_t)time(NULL);
	out->connect_time = now_s - (now_ms - s->connect_time) / 1000;
	uint64_t req = s->state == SERVER_IDLE ? s->idle_since : s->busy_since;
	out->request_time = now_s - (now_ms - (req ? req : s->connect_time)) / 1000;
	out->close_needed = s->close_needed;
	out->ptr = s;
	out->link = s->client;
	out->remote_pid = (int)s->be_pid;
	out->application_name = param_set_get(&s->params, "application_name");
	stream_tls_describe(&s->stream, out->tls, sizeof(out->tls));
	out->id = s->id;
	if (s->stream_open) {
		out->recv_avail = (uint32_t)stream_avail(&s->stream);
		out->send_pending = (uint32_t)stream_unsent(&s->stream);
	}
	out->pkt_remain = s->pass_remaining;
	out->prepared_statements = s->prepared.n;
	out->replication = s->replication;
}
