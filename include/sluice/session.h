/*
 * session.h - a server's session against its client's, in transaction and
 * statement pooling: what PostgreSQL does not report (settings such as
 * statement_timeout, search_path, the role, custom "myapp.x"), SQL-level
 * prepared statements, and the pins (what cannot follow a client to
 * another server).
 *
 * A server's session, as sluice knows it, lives in struct server (server.h:
 * session, the probe_* fields, pins); its client's in the client's params,
 * next to the tracked parameters. session.c is what reads and writes them:
 *
 *   session_watch_sql      a client's SQL on its way may change the session:
 *                          the server is due a probe (probe_due)
 *   session_probe_send     the server is clean (server_maybe_release) or was
 *                          reset (after_release): one internal query asks
 *                          what its session holds
 *   session_probe_row      server.c hands over each of the probe's rows
 *   session_probe_answered ...and its ReadyForQuery: the rows become the
 *                          server's session and the client's, and its pins
 *   session_sync           at a link (server_link), or for a pinned client
 *                          whose session a probe changed: SETs, RESETs,
 *                          DEALLOCATEs and PREPAREs that make the server's
 *                          session the client's, sent as internal queries
 *   session_adopt_canonical  their answer: the client takes PostgreSQL's
 *                          spelling of its tracked values
 *
 * When a server is released, linked or closed is server.c's to decide; it
 * calls these at the points the contracts below name. Every query sent
 * goes through server_send_internal() (its answer is swallowed).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct client;
struct server;
struct pkt_error;

/*
 * Session state that pins a client to its server in transaction pooling,
 * with the names SHOW PINS and /metrics give them.
 */
#define SESSION_PINS(X)                                                                            \
	X(ADVISORY_LOCK, "advisory lock")                                                          \
	X(TEMP_OBJECT, "temporary object")                                                         \
	X(HELD_CURSOR, "held cursor")                                                              \
	X(LISTEN, "listen")
enum session_pin_index {
#define X(id, name) SESSION_PIN_INDEX_##id,
	SESSION_PINS(X)
#undef X
		SESSION_PIN_COUNT
};
enum session_pin {
#define X(id, name) SESSION_PIN_##id = 1u << SESSION_PIN_INDEX_##id,
	SESSION_PINS(X)
#undef X
};
/* "temporary object, listen": the names of pins, in out (size bytes). */
const char *session_pin_names(unsigned pins, char *out, size_t size);

/*
 * Sets a parameter of c's session (name and value are copied): its
 * profile is then another one. The first change of a value c gave in its
 * startup packet keeps that value as "@startup:<name>", for a RESET to go
 * back to.
 */
void session_client_param_put(struct client *c, const char *name, const char *value);

/*
 * A Query or Parse text of the client linked to s, on its way to the server
 * (transaction and statement pooling), that sql_scan_cheap says may change
 * session settings, prepared statements or pins: PostgreSQL's parser
 * decides, and if so the server is probed before its release. text is
 * NUL-terminated; NULL when the whole text is not at hand (a message
 * larger than the buffer, or malformed), and then the probe is made anyway.
 * Returns true when the text must wait before it goes (a LISTEN waits for
 * the pool's listener: notify_before); the client is resumed with
 * client_prepared_resume.
 */
bool session_watch_sql(struct server *s, const char *text);

/*
 * Sends the probe on s: one internal query for every setting its session
 * has, the SQL-level prepared statements, and the pins when they are in
 * question (probe_pins, or s has some). probe_seq names its request until
 * session_probe_answered.
 */
void session_probe_send(struct server *s);
/* A DataRow of the probe in flight on s (body: after the header, blen bytes). */
void session_probe_row(struct server *s, const uint8_t *body, size_t blen);
/*
 * The probe's ReadyForQuery came, without an error: its rows become the
 * server's session and its linked client's, and its pins. A pinned client
 * whose startup value a RESET brought back is synced at once (session_sync).
 */
void session_probe_answered(struct server *s);

/*
 * Brings s's session (settings, prepared statements, tracked parameters)
 * in line with c's, unless s is known to match c's profile already (the
 * common case: clients of a pool mostly want the same values). What it
 * sends is recorded as sent in s->session.
 */
void session_sync(struct server *s, struct client *c);
/*
 * An ErrorResponse e answers the request seq of s: if it is one of
 * session_sync's PREPAREs (the statement's table is gone), s is recorded
 * as lacking that statement and true returned: not a failure of s.
 */
bool session_reprepare_failed(struct server *s, uint32_t seq, const struct pkt_error *e);
/*
 * The SETs session_sync sent for c succeeded: a value PostgreSQL spells
 * otherwise than c asked becomes c's, and c is told it.
 */
void session_adopt_canonical(struct server *s, struct client *c);
