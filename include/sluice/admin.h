/*
 * admin.h - the admin console: the pseudo-database `pgbouncer` (alias
 * `sluice`) that answers PgBouncer's SHOW and control commands.
 *
 * A console client is an ordinary struct client whose pool is the
 * pgbouncer/pgbouncer pseudo-pool (it never has servers). Its queries are
 * parsed by console.h's grammar and answered here; everything it shows is read through the pool,
 * client, server and stats functions, never by walking their lists.
 */
#pragma once

#include <stdbool.h>

#include "sluice/worker.h"

struct client;

/*
 * The console's database name as SHOW DATABASES lists it (the alias
 * "sluice" counts as it), and the user its pseudo-pool is for.
 */
#define ADMIN_DB "pgbouncer"

enum admin_role {
	ADMIN_ROLE_NONE = 0,
	ADMIN_ROLE_STATS = 1, /* read-only SHOW commands */
	ADMIN_ROLE_ADMIN = 2, /* everything */
};

/* Deferred commands a console client may be waiting on. */
enum admin_wait {
	ADMIN_WAIT_NONE = 0,
	ADMIN_WAIT_PAUSE,
	ADMIN_WAIT_CLOSE,
	ADMIN_WAIT_SUSPEND,
	ADMIN_WAIT_TAKEOVER, /* TAKEOVER CLIENTS: until every client that can go went */
};

/* Whether db names the console ("pgbouncer" or "sluice"). */
bool admin_is_console_db(const char *db);
/*
 * The role user gets on the console: admin_users, stats_users, peer
 * credentials (peer_is_self: a unix-socket client running as sluice's own OS
 * user, logging in as "pgbouncer"), and auth_type=any (anyone else is a stats
 * user, as PgBouncer documents).
 */
enum admin_role admin_role_of(const struct config *cfg, const char *user, bool peer_is_self);
/* The console's pseudo-pool (created on first use). */
struct pool *admin_pool(struct worker *w);
/* A console command's end: CommandComplete with tag, then ReadyForQuery. */
void admin_send_complete(struct client *c, const char *tag);
/* A console command's refusal: an ERROR (not FATAL, the console stays usable), then ReadyForQuery. */
void admin_send_error(struct client *c, const char *sqlstate, const char *fmt, ...)
	PRINTF_LIKE(3, 4);
/*
 * A console client is gone (client.c, after taking it off the worker's
 * list): if it was the last one while SUSPENDed, the pooler resumes, as
 * PgBouncer does, so that a takeover that died half-way leaves it serving.
 */
void admin_console_gone(struct worker *w);
/* Greets an authenticated console client. */
void admin_welcome(struct client *c);
/* Handles what a console client sent (simple Query protocol only). */
void admin_handle(struct client *c);
/* Completes PAUSE/WAIT_CLOSE commands whose condition now holds. */
void admin_poll(struct worker *w);
