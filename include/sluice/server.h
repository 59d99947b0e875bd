/*
 * server.h - one server connection's state machine, including login.
 *
 *   LOGIN --(ReadyForQuery after auth, connect_query)--> IDLE
 *   IDLE --(pool links a client)--> ACTIVE
 *   ACTIVE --(released clean, nothing to reset)--> IDLE
 *   ACTIVE --(released, reset/param query needed)--> TESTED --(its ReadyForQuery)--> IDLE
 *   ACTIVE --(released clean, cancels still in flight)--> BEING_CANCELED
 *   BEING_CANCELED --(the last cancel finished)--> IDLE or TESTED, as on release
 *   IDLE --(idle longer than server_check_delay, on assignment)--> TESTED
 *   any --(error, EOF, lifetime/idle expiry, dirty release)--> CLOSED
 *
 * A replication server is opened for one replication client (repl_client
 * while it logs in) with that client's startup parameters, linked to it
 * when its login completes, and closed when the client leaves; it is never
 * idle and never serves anyone else:
 *
 *   LOGIN --(logged in)--> ACTIVE --(its client leaves, or any end)--> CLOSED
 *
 * A pool's listener (notify.h) is opened in state LISTEN, logs in there
 * (listen_up once it has), runs LISTEN and UNLISTEN queries and hears
 * notifications for the pool's clients until nobody listens; it is on no
 * pool list and not counted in the connection limits:
 *
 *   LISTEN --(no client listens, or any end)--> CLOSED
 *
 * Every request sent to PostgreSQL is recorded in the server's request
 * queue (rq.h): a client Query, Sync or FunctionCall (its response is
 * forwarded), an internal query of sluice's own (SET of tracked parameters,
 * reset, check, connect_query: its response is swallowed), and each
 * extended-protocol message. The server is clean only when the queue is empty, the
 * last ReadyForQuery said 'I', no COPY is in progress and the client has no
 * half-sent message or open extended batch; only then is it released.
 *
 * Transitions: server_set_state() only. Invariants (server_check): ACTIVE
 * <=> client != NULL; IDLE => request queue empty, status 'I' and no cancel
 * in flight; BEING_CANCELED => some cancel in flight; a pending key
 * derivation (derive) => LOGIN; replication => LOGIN, ACTIVE or CLOSED;
 * repl_client => LOGIN and a replication server.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "sluice/log.h"
#include "sluice/param.h"
#include "sluice/prepared.h"
#include "sluice/rq.h"
#include "sluice/scram.h"
#include "sluice/stats.h"
#include "sluice/stream.h"
#include "sluice/worker.h"

/* CLOSED comes first: a server fresh from calloc is on no list. */
#define SERVER_STATES(X)                                                                           \
	X(CLOSED, "closed")                                                                        \
	X(LOGIN, "login")                                                                          \
	X(IDLE, "idle")                                                                            \
	X(ACTIVE, "active")                                                                        \
	X(TESTED, "tested")                                                                        \
	X(BEING_CANCELED, "being_canceled")                                                        \
	X(LISTEN, "listen")

enum server_state {
#define X(name, text) SERVER_##name,
	SERVER_STATES(X)
#undef X
};

const char *server_state_name(enum server_state st);

struct pool;
struct client;
struct cancel_conn;
struct derive;
TAILQ_HEAD(cancel_list, cancel_conn);

struct server {
	struct stream stream;
	struct worker *w;
	uint64_t id;
	enum server_state state;
	TAILQ_ENTRY(server) link; /* worker->servers */
	TAILQ_ENTRY(server) state_link; /* the pool list of its state */
	struct pool *pool;
	struct client *client;
	uint8_t replication; /* enum pkt_replication: a replication server, never pooled */
	bool listener; /* its pool's listener (notify.h): state LISTEN, never pooled */
	bool listen_up; /* ...and logged in */
	/*
	 * Its client's channels were LISTENed on it before an UNLISTEN of the
	 * client's (notify_before): the probe's list is all the client has.
	 */
	bool listen_mirrored;
	/* LOGIN: the replication client it is being opened for (its repl_server). */
	struct client *repl_client;

	char addr[128]; /* host:port ([v6]:port) or the unix socket's path, as logged */
	int host_index; /* which of pool->db->hosts (at connect time) it went to */
	int port;
	struct log_conn lc;
	bool stream_open; /* the socket handle exists: memory goes in its close callback */

	/* login */
	struct scram_client *scram;
	struct derive *derive; /* scram's SaltedPassword runs on the thread pool (derive.h) */
	/* TLS: an SSLRequest went out and the next byte is 'S' or 'N'; the context it asked with */
	bool ssl_requested;
	bool direct_tls; /* server_tls_sslnegotiation = direct: a ClientHello went out first */
	struct tls_ctx *tls_ctx; /* one reference until the answer */
	char host[256]; /* the name connected to, for SNI and verify-full ("" for a unix socket) */
	bool auth_ok; /* saw AuthenticationOk (after a verified SCRAM signature, if SCRAM) */
	/*
	 * Login completed (the first ReadyForQuery) or its failure was already
	 * reported: any other end before that is a login failure, with backoff.
	 */
	bool logged_in_once;
	bool checked; /* new, or answered an internal query, since its last client (server_needs_check) */
	uint32_t be_pid, be_key;
	struct param_set params; /* as PostgreSQL last reported them */
	uint64_t synced_profile; /* id of the client profile params match, or 0: unknown */
	/*
	 * From here to pinned_since: its session as transaction pooling tracks
	 * it, written by session.c (session.h).
	 *
	 * Session settings PostgreSQL does not report (statement_timeout,
	 * search_path, role, "myapp.x"): what its last probe found, plus what
	 * session_sync set and reset since. Clients carry theirs in their params.
	 */
	struct param_set session;
	/*
	 * A request of its client may have changed them (sqlscan.h): a probe asks
	 * the server once it is clean, before it is released. probe_names: the
	 * custom names to ask about; probe_seq: the probe's request, while it runs.
	 */
	bool probe_due;
	bool probe_pins; /* ...and whether to ask about pins (SQL_EFFECT_PINS) */
	struct param_set probe_names;
	/*
	 * SQL PREPAREs of its client's requests, as kept in session: those made
	 * since the last probe went out, and those the probe in flight covers
	 * (a request can follow the probe before its answer is back).
	 */
	struct param_set probe_prepares, probe_prepares_sent;
	/*
	 * The client's statements session_sync prepares again, as separate
	 * queries: key -> the request's seq (decimal), so that one that fails
	 * there (its table is gone) is told from a failed setting.
	 */
	struct param_set reprepares;
	struct param_set probed; /* the rows of the running probe */
	struct param_set probed_channels; /* ...and the channels its session listens to */
	uint8_t probed_pins;
	bool probe_asked_pins;
	uint32_t probe_seq;
	/*
	 * What its session holds that cannot follow a client to another server
	 * (enum session_pin bits), as the last probe found: while any, its client
	 * keeps it between transactions, and it is cleaned (DISCARD ALL) when
	 * the client leaves.
	 */
	uint8_t pins;
	uint64_t pinned_since; /* uv_now when pins became non-zero */

	struct rq rq; /* what was sent and not yet answered (rq.h) */
	uint32_t answering_seq; /* seq of the request the inspected message being relayed answers */
	char txn_status; /* from the last ReadyForQuery */
	bool copy_in;
	uint32_t pass_remaining; /* bytes of the current server message still to relay */
	bool pass_swallow; /* ... and whether they are swallowed */
	bool internal_error; /* an internal query failed */
	struct prepared_server prepared; /* named statements prepared on it */

	uint64_t connect_time; /* uv_now */
	uint64_t idle_since; /* uv_now */
	uint64_t busy_since; /* uv_now when the request queue last became non-empty */
	uint64_t last_rfq; /* uv_now of the last ReadyForQuery forwarded */
	uint64_t lifetime_ms; /* server_lifetime with jitter, fixed at connect */
	uint64_t idle_timeout_ms; /* server_idle_timeout with jitter */
	uint32_t link_count; /* clients served so far */
	uint64_t query_start_ns; /* uv_hrtime when the current request started */
	uint64_t xact_start_ns; /* uv_hrtime when the current transaction started */
	enum stats_close_reason close_reason; /* counted when it closes; error unless set */
	bool close_needed; /* close instead of reusing on release */
	bool dirty_release_reset; /* after release: run the reset query */

	/* CancelRequests forwarded for it and not finished (cancel.c owns the entries). */
	struct cancel_list cancels;
	bool reset_after_cancel; /* BEING_CANCELED: run the reset query once they finish */
	uint64_t being_canceled_since; /* uv_now */
};

/*
 * Opens a new server connection for the pool (state LOGIN), which the
 * caller has counted against the limits (ledger_server_add, pool.c).
 */
void server_connect(struct pool *p);
/*
 * Opens a replication server for replication client c (WAITING_REPLICATION),
 * with c's startup parameters, counted the same way; pool_server_logged_in()
 * links them.
 */
void server_connect_replication(struct pool *p, struct client *c);
/* Opens the pool's listener (notify.h), not counted in any limit; NULL if it failed at once. */
struct server *server_connect_listener(struct pool *p);
/* Whether the listener s is logged in and has no query in flight. */
bool server_listener_ready(const struct server *s);
/* Sends sql (LISTENs, UNLISTENs) on the listener s; notify_listener_answered follows. */
void server_listener_send(struct server *s, const char *sql);
/*
 * Sends sql (the client's channels' LISTENs) on s ahead of its client's
 * request, and has the next probe count it (listen_mirrored).
 */
void server_send_mirror(struct server *s, const char *sql);
/*
 * Sends one of sluice's own queries on s (sql is copied), recorded in its
 * request queue as RQ_INTERNAL: its answer is swallowed, and an error in it
 * closes the server (or fails its client with it).
 */
void server_send_internal(struct server *s, const char *sql);
void server_set_state(struct server *s, enum server_state st);
/* Closes the server; reason is logged. */
void server_close(struct server *s, const char *reason);

/*
 * Links s (IDLE) to c: brings its session in line with c's (session_sync),
 * then relays.
 */
void server_link(struct server *s, struct client *c);
/* The client is leaving (or finished a transaction): release or close s. */
void server_client_gone(struct server *s);
/* The replication client s is logging in for is leaving: close s. */
void server_owner_gone(struct server *s);
/* True if s can be handed to another client right now. */
bool server_is_clean(const struct server *s);
/*
 * Relay: the client (or prepared.c on its behalf) queued a client's own
 * Parse or Close of the name binding name_id; account it. stmt, if any, is a
 * reference the entry takes over. A fake entry at the head is answered at
 * once.
 */
void server_push_named_request(struct server *s, enum rq_kind kind, struct pstmt *stmt,
			       uint64_t name_id);
/*
 * The same for any other request. Inline: every message PostgreSQL answers
 * is pushed, five per extended-protocol query, and all but the first of a
 * batch only join the queue (the first starts the timing, an entry behind
 * sluice's own query restarts it, a Sync in COPY IN is not pushed: the
 * general way).
 */
static inline void server_push_request(struct server *s, enum rq_kind kind, struct pstmt *stmt)
{
	if (s->rq.len > 1 || (s->rq.len == 1 && s->rq.head_kind != RQ_INTERNAL)) {
		if (!(kind == RQ_SYNC && s->copy_in))
			rq_push(&s->rq, kind, stmt, 0);
		return;
	}
	server_push_named_request(s, kind, stmt, 0);
}
/* Re-examine a linked server for release (transaction/statement mode). */
void server_maybe_release(struct server *s);
/* Whether an idle server must pass server_check_query before it is handed out. */
bool server_needs_check(const struct server *s, uint64_t now);
/* Runs the server_check_query before the server is handed out. */
void server_start_check(struct server *s);
/* Servers in open order: server_next(w, NULL) is the first. */
struct server *server_next(struct worker *w, struct server *s);
void server_info(const struct server *s, struct conn_info *out);
/* The last cancel forwarded for s finished: a released server goes on to idle. */
void server_cancels_done(struct server *s);
/* RECONNECT: close s now if idle, else when it is released. */
void server_mark_close_needed(struct server *s);

/*
 * Online restart (takeover.h), session pooling: whether s, linked, can go
 * to the successor with its client now (idle in its session, outside a
 * transaction, nothing in flight, in the clear); its end here once its
 * socket went, without a word to PostgreSQL; and, in the successor, a
 * server of p made of fd and the record h (logged in, IDLE, ready to be
 * linked to its client at once), keeping id unless that is 0. NULL: failed.
 */
struct handover_server;
/*
 * Moving an idle server to another worker of the process (pool.c decides
 * when, crew.h carries it): server_pack takes what the server is (its
 * socket, a duplicate, and its session) out of s, which it then closes
 * here without a word to PostgreSQL; server_unpack makes it a server of
 * pool p on p's worker, idle again, with the prepared statements it has
 * under the names it has them by (prepared.h). It stays counted in the
 * ledger all along.
 */
struct server_parcel {
	int fd;
	uint64_t id;
	char addr[128];
	char host[256];
	int port, host_index;
	bool is_pipe;
	uint32_t be_pid, be_key;
	struct param_set params;
	struct param_set session;
	uint64_t connect_time, idle_since; /* uv_now: the loops share one clock */
	uint64_t lifetime_ms, idle_timeout_ms;
	uint32_t link_count;
	bool checked;
	struct prepared_carry statements; /* prepared on it, with their names (prepared.h) */
	struct tls_conn *tls; /* its TLS session (stream_take_tls), or NULL in the clear */
};
/* Whether s is idle and may move: nothing queued or under way (a TLS session must be quiet too). */
bool server_can_move(const struct server *s);
/* s (server_can_move) into parcel; s is closed (CLOSED). 0, or -1 (s unchanged) if dup failed. */
int server_pack(struct server *s, struct server_parcel *parcel) WUR;
/* A parcel's server as a server of p, idle or testing; NULL when it could not be (closed, uncounted). */
struct server *server_unpack(struct pool *p, struct server_parcel *parcel);
/* A parcel that cannot be delivered: its socket closed, its count given back. */
void server_parcel_drop(struct ledger *l, struct pool_share *sh, const char *db, const char *user,
			struct server_parcel *parcel);

bool server_can_hand_over(const struct server *s);
void server_handed_over(struct server *s);
struct server *server_adopt(struct pool *p, int fd, const struct handover_server *h, uint64_t id);

/* Periodic: connect timeout, lifetime and idle expiry. */
void server_tick(struct server *s, uint64_t now);
void server_check(const struct server *s);
