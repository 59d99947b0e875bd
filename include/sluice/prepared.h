/*
 * prepared.h - named prepared statements in transaction and statement mode.
 *
 * A client names its statements (Parse "s1"); in transaction mode its next
 * transaction may run on another server, which never saw "s1". So sluice
 * keeps three things:
 *
 *   - the worker's registry: one struct pstmt per distinct query text and
 *     parameter types, with its server-side name "sluice_<n>";
 *   - per client, its names: "s1" -> pstmt;
 *   - per server, the pstmts prepared on it, in least-recently-used order,
 *     at most max_prepared_statements of them.
 *
 * Client messages naming a statement are rewritten on their way to the
 * linked server: Parse of a statement the server has is answered by sluice
 * (a fake ParseComplete), Bind and Describe get the server-side name and a
 * hidden Parse first when the server lacks it, Close of a client name only
 * forgets the name, and a Parse of a name in use is sent so that the server
 * refuses it (42P05) where PostgreSQL would have. The answers are put in order through the server's
 * request queue (server.h), which also tells this module, entry by entry,
 * whether PostgreSQL carried each Parse and Close out (an error makes it
 * skip everything up to the next Sync), so that the per-server sets always
 * match what PostgreSQL has.
 *
 * Not handled, as in PgBouncer: SQL-level PREPARE/EXECUTE (they stay on one
 * server session). A simple-query DEALLOCATE of a client name or DEALLOCATE
 * ALL is answered here; DISCARD ALL goes to PostgreSQL and clears both sides.
 *
 * Statements are reference counted: client names, server sets and request
 * queue entries each hold one; the last unref frees the statement.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "sluice/pkt.h"

struct client;
struct server;
struct worker;
struct pstmt;
struct prepared_name;
struct prepared_entry;
struct rq_entry;

/* The worker's statements by query text and parameter types. */
struct prepared_registry {
	struct pstmt *by_text; /* uthash */
	uint64_t next_name_id; /* numbers clients' name bindings */
	uint32_t n; /* statements alive */
	size_t bytes; /* their memory, for SHOW MEM */
};

/*
 * A client's statement names: one pointer in every client (uthash keeps the
 * count, prepared_client_count).
 */
struct prepared_client {
	struct prepared_name *by_name; /* uthash; NULL when the client has none */
};

/* Whether the client has any statement name: the relay's test on every message. */
static inline bool prepared_client_any(const struct prepared_client *pc)
{
	return pc->by_name != NULL;
}
/* How many names the client has (SHOW CLIENTS). */
uint32_t prepared_client_count(const struct prepared_client *pc);

/* The statements prepared on one server. */
struct prepared_server {
	struct prepared_entry *by_id; /* uthash */
	TAILQ_HEAD(prepared_lru, prepared_entry) lru; /* least recently used first */
	uint32_t n;
};

void prepared_server_init(struct prepared_server *ps);
/* The server is gone: drop its set. */
void prepared_server_deinit(struct worker *w, struct prepared_server *ps);

/*
 * Outcome of prepared_client_message: RELAY (not a tracked statement: relay
 * the message as it is), DONE (handled; *rest bytes of it, already counted,
 * still follow in the client's stream and are to be relayed unchanged),
 * MORE (buffer more of the message first), WAIT (it depends on answers to an
 * earlier batch of the pipeline: hold it until the server's request queue
 * has moved on), FAILED (the client was failed).
 */
enum prepared_rc {
	PREPARED_RELAY,
	PREPARED_DONE,
	PREPARED_MORE,
	PREPARED_WAIT,
	PREPARED_FAILED,
};

/*
 * Handles a client's Parse, Bind, Describe or Close (header h, at the start
 * of the client's read buffer) for its linked server.
 */
enum prepared_rc prepared_client_message(struct client *c, const struct pkt_hdr *h, uint32_t *rest);

/*
 * A simple Query at the start of the client's buffer: when it is DEALLOCATE
 * of a statement this client named, or DEALLOCATE ALL by a client with
 * names, forgets them, queues the answer ending in ReadyForQuery with
 * txn_status, consumes the message and returns DONE. RELAY for any other
 * query, MORE when a short query is not all here yet.
 */
enum prepared_rc prepared_client_deallocate(struct client *c, const struct pkt_hdr *h,
					    char txn_status);

/*
 * PostgreSQL finished (answered) or skipped (!answered, after an error) the
 * request queue entry e, a Parse or Close of a named statement: bring the
 * server's set, and the names of the linked client whose Parse failed, in
 * line, and drop the entry's reference.
 */
void prepared_request_done(struct server *s, const struct rq_entry *e, bool answered);

/*
 * The server refused rq, the Parse that stands for a client's Parse of a
 * name it has already (msg is the whole ErrorResponse). When the refusal is
 * 42P05, the client is sent PostgreSQL's error with its own name instead and
 * true is returned: swallow msg.
 */
bool prepared_name_in_use_error(struct server *s, const struct rq_entry *rq, const uint8_t *msg,
				uint32_t len);

/*
 * DISCARD ALL or DEALLOCATE ALL ran on the server as request seq: the
 * statements prepared before it are gone (those sent after it are not).
 */
void prepared_server_forget_all(struct worker *w, struct prepared_server *ps, uint32_t seq);
/* ... and the client that sent it has no names left (also: the client is gone). */
void prepared_client_forget_all(struct worker *w, struct prepared_client *pc);

/*
 * A server moving to another worker of the process (server_pack) takes its
 * statements along: their texts, each holding its number in the ledger
 * (ledger_stmt_acquire), so the new worker's registry gives each the same
 * number and so the same name on the server.
 */
struct prepared_carry {
	uint32_t n;
	struct {
		uint8_t *text;
		uint32_t len;
	} * items;
};
/* Moves ps's statements into out (ps is left empty). */
void prepared_server_pack(struct worker *w, struct prepared_server *ps, struct prepared_carry *out);
/* Gives ps (of a server of w) the statements of in, and frees in. */
void prepared_server_unpack(struct worker *w, struct prepared_server *ps,
			    struct prepared_carry *in);
/* A carry that will not be unpacked. */
struct ledger;
void prepared_carry_free(struct ledger *l, struct prepared_carry *c);

/*
 * An online restart (takeover.h) carries a client's names over: each is
 * read out with its Parse text (the body after the name) here, and given
 * to the successor's client with prepared_client_adopt, which refuses
 * (false) a text a Parse could not have had, an empty name or a name the
 * client has already.
 */
typedef void prepared_each_cb(void *arg, const char *name, const uint8_t *text, uint32_t len);
void prepared_client_each(const struct prepared_client *pc, prepared_each_cb *fn, void *arg);
bool prepared_client_adopt(struct worker *w, struct prepared_client *pc, const char *name,
			   const uint8_t *text, uint32_t len) WUR;
