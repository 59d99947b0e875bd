/*
 * client.h - one client connection's state machine.
 *
 *            accept
 *              |
 *              v
 *           LOGIN -------------------------------+  (startup packet, auth;
 *              | authenticated                    |   SSLRequest answered 'N',
 *              v                                  |   CancelRequest handled)
 *       WAITING_LOGIN  (pool has no welcome yet)  |
 *              | welcome sent                     |
 *              v                                  |
 *   +------> IDLE  <----------------------+       |
 *   |          | a request arrives        |       |
 *   |          v                          |       |
 *   |       WAITING (queued in the pool)  |       |
 *   |          | pool links a server      |       |
 *   |          v                          |       |
 *   +------ ACTIVE ---- released ---------+       |
 *                                                 |
 *   any state --- client_fail / EOF --> CLOSED <--+
 *
 * A replication client (startup parameter replication=database or true)
 * takes another way after authentication: it waits for a server of its own,
 * opened with its startup parameters, and is greeted from that server's
 * login; it stays linked to it for its whole life and never goes IDLE:
 *
 *   LOGIN -> WAITING_REPLICATION (pool room, then its server's login)
 *         -> ACTIVE (welcomed from its server) -> CLOSED, closing the server
 *
 * Transitions: client_set_state() only (it moves the client between the
 * worker's login list and its pool's lists, keeps counts, stamps times and
 * logs at debug level). Invariants (client_check): ACTIVE <=> server != NULL;
 * WAITING/WAITING_LOGIN/WAITING_REPLICATION/IDLE/ACTIVE => pool != NULL;
 * CLOSED => on no list; a pending key derivation (derive) or auth_query
 * look-up (authq) => LOGIN;
 * WAITING_REPLICATION <=> a replication client not yet linked, past LOGIN;
 * repl_server => WAITING_REPLICATION; a linked server is a replication
 * server exactly when the client is a replication client, of the same kind.
 * One exit: client_fail() (error to the client, log, close) or client_close().
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "sluice/auth.h"
#include "sluice/log.h"
#include "sluice/param.h"
#include "sluice/prepared.h"
#include "sluice/stream.h"
#include "sluice/worker.h"

#define CLIENT_STATES(X)                                                                           \
	X(LOGIN, "login")                                                                          \
	X(WAITING_LOGIN, "waiting_login")                                                          \
	X(IDLE, "idle")                                                                            \
	X(WAITING, "waiting")                                                                      \
	X(ACTIVE, "active")                                                                        \
	X(WAITING_REPLICATION, "waiting_replication")                                              \
	X(CLOSED, "closed")

enum client_state {
#define X(name, text) CLIENT_##name,
	CLIENT_STATES(X)
#undef X
};

const char *client_state_name(enum client_state st);

struct pool;
struct server;
struct derive;
struct authq_wait;
struct client_login;

/*
 * Every logged-in client holds one of these for its whole life, so the
 * fields are laid out without holes: the pointers and 64-bit times first,
 * then the 32-bit fields in pairs, then the flags and one-byte enums
 * together at the end (checked with pahole or gdb's ptype/o).
 */
struct client {
	struct stream stream;
	struct worker *w;
	uint64_t id;
	enum client_state state;
	int peer_pid; /* unix socket peer's pid, 0 for TCP */
	TAILQ_ENTRY(client) link; /* worker->clients */
	TAILQ_ENTRY(client) state_link; /* the list of its state */
	TAILQ_ENTRY(client) released_link; /* worker->released, while released_queued */
	struct pool *pool;
	struct server *server;

	/*
	 * Both names live in one allocation, which db_name starts (set_names in
	 * client.c): one malloc chunk per client instead of two. Only
	 * set_names and the close callback free or replace them.
	 */
	char *db_name;
	char *user_name;

	struct client_login *login; /* what only the login needs (client.c); NULL after it */
	struct param_set params; /* what this client's session should look like */
	/* params over the pool's defaults, interned; NULL until the next link needs it. */
	struct param_profile *profile;
	struct prepared_client prepared; /* its named prepared statements */

	/* cancel key handed to the client (worker->cancel_keys finds it by them) */
	uint32_t cancel_pid;
	uint32_t cancel_key;

	uint64_t connect_time; /* uv_now */
	uint64_t state_since; /* uv_now at the last state change */
	uint64_t state_seq; /* worker->state_changes then: orders changes within a millisecond */
	uint64_t wait_notified_since; /* state_since of the wait query_wait_notify told it of */
	uint64_t wait_start_us; /* uv_hrtime/1000 when it started waiting */
	uint64_t request_time; /* uv_now when the last request arrived */

	/* replication */
	/*
	 * A replication client's startup "options", passed to its server as
	 * they are (PostgreSQL reads them; a subscriber sets extra_float_digits
	 * there, which sluice does not track); NULL when none.
	 */
	char *startup_options;
	/* WAITING_REPLICATION: the server logging in for it, NULL while it waits for room. */
	struct server *repl_server;

	/*
	 * What client_admit counted this client against, for client_close to
	 * release: entries of the worker's client count tables, by database
	 * and by user (worker_count_entry); NULL when not counted.
	 */
	struct ledger_count *counted_db;
	struct ledger_count *counted_user;

	/* admin console: a PAUSE/WAIT_CLOSE's database, NULL for all */
	char *admin_wait_db;

	struct stream_addr addr; /* the peer's: client_addr_text prints it */

	/* relay */
	uint32_t pass_remaining; /* bytes of the current message still to forward */

	/* One byte of flags: a bool each would put the struct past a malloc size class. */
	bool ext_open : 1; /* extended-protocol messages sent since the last Sync */
	bool prepared_wait : 1; /* a message waits for answers to an earlier batch (prepared.h), or a probe's */
	bool released_queued : 1; /* on worker->released */
	bool over_limit : 1; /* accepted beyond max_client_conn: refused at startup */
	bool linger : 1; /* ending with an error: close without a reset (stream_close_linger) */
	bool direct_tls : 1; /* the connection began with a ClientHello, not an SSLRequest */
	bool settling : 1; /* held by worker_settle, not reading yet */
	bool listens : 1; /* has channels or notifications with its pool's listener (notify.h) */
	uint8_t replication; /* enum pkt_replication, from the startup packet */
	uint8_t admin_role; /* enum admin_role; 0 for ordinary clients */
	uint8_t admin_wait; /* enum admin_wait: a PAUSE/WAIT_CLOSE in progress */
	/*
	 * Bits by param_fixed_index: the parameter's value in params is still
	 * the one of the startup packet. The first change keeps that value in
	 * params as "@startup:<name>", where a RESET finds it (session.c).
	 */
	uint8_t startup_params;
};

/* The cancel key as one number, pid first: the cancel table's key, SHOW FDS's cancel column. */
static inline uint64_t client_cancel_key(const struct client *c)
{
	return ((uint64_t)c->cancel_pid << 32) | c->cancel_key;
}

/* The peer's "ip:port" ("unix", "?"), written into buf (STREAM_ADDR_TEXT_MAX bytes); buf. */
static inline char *client_addr_text(const struct client *c, char *buf, size_t len)
{
	return stream_addr_format(&c->addr, buf, len);
}

/*
 * The client as log lines name it, made only when a line is written; the
 * address text lives in a compound literal until the end of the caller's block.
 */
#define CLIENT_LOG_CONN(c)                                                                         \
	(&(const struct log_conn){                                                                 \
		'C', (c)->id, (c)->db_name, (c)->user_name,                                        \
		client_addr_text((c), (char[STREAM_ADDR_TEXT_MAX]){ 0 }, STREAM_ADDR_TEXT_MAX) })

/* Starts a client on a freshly accepted socket, which it owns from here (listener.c). */
void client_accept(struct worker *w, int fd, bool is_unix, const struct sockaddr *peer);
/* The other workers have caught up (worker_settle): c's count is decided and it starts reading. */
void client_settled(struct client *c);
void client_set_state(struct client *c, enum client_state st);
/* Sends c a NOTICE (00000): only between messages, e.g. while it waits for a server. */
void client_notice(struct client *c, const char *text);
/* Ends the connection with an ErrorResponse (FATAL) carrying sqlstate. */
void client_fail(struct client *c, const char *sqlstate, const char *fmt, ...) PRINTF_LIKE(3, 4);
/* Ends the connection without a message (EOF, Terminate). */
void client_close(struct client *c, const char *reason);
/* Sends a whole prepared message (e.g. a stored ErrorResponse) and ends. */
void client_fail_with(struct client *c, const uint8_t *msg, size_t len, const char *reason);

/* The pool linked a server: start relaying. */
void client_linked(struct client *c);
/*
 * The server is released: back to IDLE (called by server.c). What the client
 * sent meanwhile is processed later, in the check phase (client_run_released).
 */
void client_unlinked(struct client *c);
/* The check phase: processes the input of the clients released this round. */
void client_run_released(struct worker *w);
/* The pool has a welcome for a WAITING_LOGIN client. */
void client_welcome(struct client *c);
/* The server's request queue moved on: a message held by PREPARED_WAIT may go now. */
void client_prepared_resume(struct client *c);
/* Bytes from the linked server were queued to this client: apply backpressure. */
void client_check_backpressure(struct client *c);

/* Clients in accept order: client_next(w, NULL) is the first. */
struct client *client_next(struct worker *w, struct client *c);
struct client *client_find(struct worker *w, uint64_t id);
void client_info(const struct client *c, struct conn_info *out);

/*
 * Online restart (takeover.h). In the old process: whether c may go to the
 * successor now (between transactions: IDLE, or WAITING with its request
 * unread; nothing queued to it; client_may_move), its record (handover.h) appended
 * to out, and, once its socket went, its end here without a word to it.
 * In the new process: a client made of fd and the record h, keeping h's
 * id unless that is 0, linked again to the server of its session (server_fd,
 * whose socket came with it; -1 for none) when h says it was linked.
 */
struct handover_client;
struct buf_out;
bool client_can_hand_over(const struct client *c);
/* Whether c can go at some boundary (not TLS, not replication): pool.c holds such waiters then. */
bool client_may_move(const struct client *c);
void client_hand_over_record(const struct client *c, struct buf_out *out);
void client_handed_over(struct client *c);
void client_adopt(struct worker *w, int fd, const struct handover_client *h, int server_fd);

/* Periodic timeouts (client_login_timeout, client_idle_timeout, query_wait_timeout...). */
void client_tick(struct client *c, uint64_t now);
void client_check(const struct client *c);
