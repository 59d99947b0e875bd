/*
 * sqlscan.h - what a client's SQL text may do to its session beyond the
 * transaction that runs it.
 *
 * In transaction and statement pooling, a server's session outlives the
 * client's turn on it: a SET made by one client would be seen by the next.
 * sluice looks at every simple Query and every Parse text in two steps:
 *
 *   1. sql_scan_cheap: a look at the first word of each statement (after
 *      a ';', comments and parentheses) and for a few names anywhere
 *      (set_config, the advisory lock functions, "temp"). It errs on the
 *      side of "maybe"; a text with no ';' but a last one and no '(' costs
 *      one SSE2 pass and a look at its first word (under 70 instructions
 *      for pgbench's SELECT), so the common SELECT and INSERT pay little.
 *   2. sql_scan_parse, only on a "maybe": PostgreSQL's own parser
 *      (libpg_query) says which statements they are.
 *
 * Not recognised, to keep the common path cheap: SELECT ... INTO TEMP
 * (looking for it would mean searching every SELECT for a word); CREATE
 * TEMP TABLE ... AS does the same and is.
 *
 * What a statement did is then asked of the server itself (session.c's
 * probe), so PostgreSQL's rules (a SET rolled back with its transaction,
 * SET LOCAL ending with it, a failed statement changing nothing) hold
 * without sluice modelling them.
 *
 * I/O-free, and safe on any thread (libpg_query keeps its memory per thread).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* What a text may change, as a bit set. */
enum {
	/* Session settings: SET, RESET, SET SESSION ..., set_config, DISCARD. */
	SQL_EFFECT_SETTINGS = 1u << 0,
	/*
	 * State that cannot follow a client to another server, made or dropped:
	 * temporary tables, views, sequences, functions and types, session advisory locks, WITH
	 * HOLD cursors, LISTEN, SQL-level PREPARE (and DROP, CLOSE, UNLISTEN,
	 * DEALLOCATE, DISCARD, the unlock functions, which may end it).
	 */
	SQL_EFFECT_PINS = 1u << 1,
	/* SQL-level prepared statements: PREPARE, DEALLOCATE. */
	SQL_EFFECT_PREPARED = 1u << 2,
};

/* Bits of what the first look cannot rule out; 0 for the common query. */
unsigned sql_scan_cheap(const char *text, size_t len);

/*
 * The settings whose names are not PostgreSQL's own ("myapp.tenant"): the
 * probe cannot list them (pg_settings leaves placeholders out), so it asks
 * for them by name.
 */
#define SQL_SCAN_CUSTOM_MAX 16
/*
 * And each PREPARE's name and its own statement text ("PREPARE p (int) AS
 * SELECT $1", cut from a text of several statements), to prepare it again
 * on another server.
 */
#define SQL_SCAN_PREPARES_MAX 16
#define SQL_SCAN_CHANNELS_MAX 16
/*
 * The state that would pin a client, by kind, for session_pinning = refuse
 * (doc/transaction-mode.md): only what makes a pin, never what ends one.
 */
enum sql_pin_made {
	SQL_PIN_MADE_NONE = 0,
	/* pg_advisory_lock, pg_advisory_lock_shared, pg_try_advisory_lock[_shared]. */
	SQL_PIN_MADE_ADVISORY_LOCK,
	/* A CREATE of a temporary table (not ON COMMIT DROP), view, sequence, or anything in pg_temp. */
	SQL_PIN_MADE_TEMPORARY_OBJECT,
	/* DECLARE ... CURSOR WITH HOLD. */
	SQL_PIN_MADE_HELD_CURSOR,
};
struct sql_scan_result {
	unsigned effects;
	/*
	 * The first statement that would make a pin when it runs: what it is
	 * (a static string, "CREATE TEMP TABLE", "pg_advisory_lock()") and where
	 * it is, text[pin_at, pin_at + pin_len). NONE for the others, however
	 * effects has SQL_EFFECT_PINS (a DROP, a CLOSE, an unlock may end one).
	 */
	enum sql_pin_made pin_made;
	const char *pin_what;
	size_t pin_at, pin_len;
	/* Its highest parameter number ($3: 3): what a Parse of it takes, declared or not. */
	int pin_params;
	int n_custom;
	char *custom[SQL_SCAN_CUSTOM_MAX]; /* owned; names beyond the maximum are dropped */
	int n_prepares;
	char *prepare_name[SQL_SCAN_PREPARES_MAX]; /* owned, as above */
	char *prepare_text[SQL_SCAN_PREPARES_MAX];
	/*
	 * The channels LISTEN and UNLISTEN name (owned, as above), and whether
	 * an UNLISTEN * or a DISCARD ALL ends every one: in transaction pooling
	 * a client's channels are listened to elsewhere (notify.h).
	 */
	int n_listen, n_unlisten;
	char *listen[SQL_SCAN_CHANNELS_MAX];
	char *unlisten[SQL_SCAN_CHANNELS_MAX];
	bool unlisten_all;
};

/*
 * Parses text (NUL-terminated) and fills out. A text PostgreSQL would
 * refuse to parse has no effect: the server refuses all of it. Free with
 * sql_scan_result_deinit.
 */
void sql_scan_parse(const char *text, struct sql_scan_result *out);
void sql_scan_result_deinit(struct sql_scan_result *r);

/*
 * The text to run instead of text, which r (sql_scan_parse's of it) found
 * would make a pin: the statement that makes it replaced with a DO block
 * that raises PostgreSQL's own error, SQLSTATE 0A000 with a message naming
 * the construct and the setting (in pool_mode's words: "transaction",
 * "statement") and a hint. The statements before it still run and those
 * after it are skipped, and the transaction is left as PostgreSQL leaves it
 * after a failed statement, because the server itself fails it. Returns a
 * malloc'd NUL-terminated string; NULL when r has no pin_made.
 */
char *sql_scan_refusal(const char *text, const struct sql_scan_result *r, const char *pool_mode);
