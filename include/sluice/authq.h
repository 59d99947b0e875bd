/*
 * authq.h - auth_query look-ups: the secret of a user the auth_file does not
 * list, read from PostgreSQL with libpq on the worker's loop.
 *
 * A look-up connects as auth_user to the authentication database
 * (PQconnectStartParams, PQconnectPoll), sends auth_query with the user name
 * as its one parameter (PQsendQueryParams: never spliced into the SQL) and
 * reads the answer, all driven by a uv_poll on PQsocket, so no step blocks
 * the loop. Host names are resolved on the thread pool first and handed to
 * libpq as hostaddr, since libpq would resolve them blocking.
 *
 * One connection per target (hosts, database, user, password) runs its
 * look-ups one after another and is kept for the next ones until it has been
 * idle for server_idle_timeout. Logins for a user whose look-up is in flight
 * join it instead of starting another (a stampede runs one query). A secret
 * found is kept for auth_query_cache_ttl (0: not kept) unless the login made
 * with it fails (authq_forget), so a changed password is read again at once.
 *
 * Answers reach the owner through its callback, never from inside
 * authq_lookup(); a cached answer is returned by authq_lookup() itself.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "sluice/common.h"
#include "sluice/config.h"

enum authq_status {
	AUTHQ_FOUND = 0, /* a row: secret holds its second column (NULL if SQL NULL) */
	AUTHQ_NOT_FOUND, /* no row: no such user */
	AUTHQ_QUERY_FAILED, /* the server refused the query, or its answer has the wrong shape */
	AUTHQ_CONNECT_FAILED, /* the authentication database could not be reached or logged in to */
};

/* What a look-up found; strings are borrowed for the duration of the callback (or call). */
struct authq_answer {
	enum authq_status status;
	const char *secret; /* AUTHQ_FOUND: the password column; NULL when it was NULL */
	const char *error; /* the failures: why, for the log */
	/*
	 * AUTHQ_CONNECT_FAILED because PostgreSQL refused the login: its message
	 * (e.g. database "x" does not exist) and SQLSTATE (NULL if unknown).
	 */
	const char *server_message;
	const char *sqlstate;
	const char *key; /* the look-up's identity, for authq_forget() */
};

/* Where and how to look a user up. Borrowed for the call; authq copies what it keeps. */
struct authq_target {
	const struct config_host *hosts; /* the authentication database's hosts, n_hosts >= 1 */
	int n_hosts;
	const char *dbname; /* the database on the server */
	const char *user; /* auth_user */
	const char *password; /* auth_user's password, NULL: none (the server may trust it) */
	const char *query; /* auth_query, with $1 for the user name */
};

/* Statuses fed to the metrics, one counter each, plus answers served from the cache. */
struct authq_stats {
	uint64_t queries[4]; /* by enum authq_status */
	uint64_t cache_hits;
	uint64_t joined; /* logins that joined a look-up already in flight */
};

typedef void (*authq_cb)(void *owner, const struct authq_answer *answer);

struct authq;
struct authq_wait;

struct authq *authq_new(uv_loop_t *loop);
/*
 * Takes the settings of cfg (server_tls_*, server_connect_timeout,
 * server_idle_timeout, auth_query_cache_ttl) for the look-ups started from
 * now on. Cached secrets are dropped, and connections made with the old
 * settings close once their queued look-ups are answered.
 */
void authq_configure(struct authq *aq, const struct config *cfg);
/*
 * Looks user up at t. Returns true with *now filled (borrowed until the next
 * call into aq) when the cache answers; else false with *wait set: cb(owner,
 * answer) follows exactly once unless authq_cancel(*wait) comes first.
 */
bool authq_lookup(struct authq *aq, const struct authq_target *t, const char *user, authq_cb cb,
		  void *owner, struct authq_answer *now, struct authq_wait **wait) WUR;
/* The owner leaves: its callback will not be called. The look-up itself goes on. */
void authq_cancel(struct authq_wait *wait);
/* A login with the secret of key failed: the next login looks it up again. */
void authq_forget(struct authq *aq, const char *key);
/* Timeouts of connects and queries, idle connections, expired cache entries. */
void authq_tick(struct authq *aq, uint64_t now);
const struct authq_stats *authq_stats(const struct authq *aq);
/*
 * Closes the connections, answering the look-ups still queued with
 * AUTHQ_CONNECT_FAILED (owners should have cancelled by now), and frees aq
 * once the loop has run its close callbacks.
 */
void authq_free(struct authq *aq);
