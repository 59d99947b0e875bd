/*
 * ledger.h - the counts that hold for a whole process, whichever worker
 * (crew.h) a connection is on: server connections per pool, database and
 * user (pool_size, max_db_connections, max_user_connections), client
 * connections per database and user (max_db_client_connections,
 * max_user_client_connections) and in all (max_client_conn), connection
 * ids, and what the pools of one (database, user) on different workers
 * tell each other (struct pool_share).
 *
 * One mutex guards the tables, so that a server is counted against its
 * pool, its database and its user at once or not at all: with several
 * workers opening servers for the same pool, no limit is exceeded at any
 * instant. Counts that are read on every assignment are also atomics, read
 * without the lock. No libuv, no connection module: numbers and names.
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "sluice/buf.h"
#include "sluice/common.h"
#include "sluice/config.h"
#include "sluice/param.h"

#include <uthash.h>

/* A count by name; an entry exists while its count is above 0 (or a few more, see ledger.c). */
struct ledger_count {
	char *name;
	int n;
	UT_hash_handle hh;
};

/*
 * What the pools of one (database, user) on every worker share: their
 * servers (counted under the ledger's lock), and what each worker
 * publishes of its pool for the others' decisions (atomics, written by
 * that worker only): idle servers, and the wait start of its oldest client
 * no server is on its way for, with how many such clients it has. The
 * welcome (the first login's parameters) is learned once for all.
 */
struct pool_share {
	char *key; /* "db\0user" */
	size_t key_len;
	UT_hash_handle hh;
	int refs; /* the pools (one per worker at most) that point here */
	int servers; /* every server connection of the pool, every state, every worker; atomic */
	int idle[CONFIG_MAX_WORKERS];
	uint64_t wait_since_us[CONFIG_MAX_WORKERS]; /* uv_hrtime µs; 0: nobody waits uncovered */
	int uncovered[CONFIG_MAX_WORKERS];
	int in_flight[CONFIG_MAX_WORKERS]; /* servers sent to that worker, not yet there */
	/*
	 * uv_hrtime µs since when that worker's oldest waiter that needs a new
	 * server (uncovered, or a replication client) has waited; 0: none
	 */
	uint64_t open_since_us[CONFIG_MAX_WORKERS];
	/* uv_now since when that worker's pool is in line for a new server under a shared limit; 0: not */
	uint64_t line_since_ms[CONFIG_MAX_WORKERS];
	int waiting_workers; /* how many have wait_since_us set; atomic */
	bool have_welcome; /* under the lock */
	struct param_set welcome;
	/*
	 * The pools' login outcomes (pool.c): the host the next server tries,
	 * the failures in a row, the last failure's error and time, under the
	 * lock; login_gen (atomic) counts the changes, so that a pool sees
	 * without the lock whether to read them again.
	 */
	uint64_t login_gen;
	unsigned host_next;
	int hosts_failed;
	bool last_login_ok;
	bool last_error_transient;
	uint64_t last_error_at; /* uv_now: every loop reads the same clock */
	char last_error_reason[256];
	struct buf_out last_error;
};

/* A prepared statement's text and the number that names it on every server (prepared.h). */
struct ledger_stmt {
	UT_hash_handle hh; /* keyed by text */
	uint64_t id;
	uint32_t refs; /* the workers' registries that have it, and servers on the move */
	uint32_t len;
	uint8_t text[];
};

struct ledger {
	pthread_mutex_t mu;
	struct ledger_stmt *stmts;
	uint64_t next_stmt_id;
	struct ledger_count *db_servers, *user_servers;
	struct ledger_count *db_clients, *user_clients;
	struct ledger_count *db_shares; /* pool shares by database name */
	struct pool_share *shares;
	int clients; /* every client connection; atomic */
	uint64_t next_conn_id; /* atomic: clients and servers share one sequence, as in PgBouncer */
};

void ledger_init(struct ledger *l);
void ledger_deinit(struct ledger *l);
/* For reading or changing a pool_share's fields that the lock guards; no other ledger call inside. */
void ledger_lock(struct ledger *l);
void ledger_unlock(struct ledger *l);

/* A new connection id, unique in the process. */
uint64_t ledger_next_id(struct ledger *l);
/* Connection ids go on above floor (an online restart's predecessor used those below). */
void ledger_raise_ids(struct ledger *l, uint64_t floor);
uint64_t ledger_last_id(struct ledger *l);

/* The count of name in *table (one of the ledger's), read under the lock. */
int ledger_count_of(struct ledger *l, struct ledger_count **table, const char *name);
/*
 * Counts one more of name in *table and returns its entry, whose count the
 * caller gives back with ledger_release; *n is the count with this one.
 */
struct ledger_count *ledger_acquire(struct ledger *l, struct ledger_count **table, const char *name,
				    int *n);
void ledger_release(struct ledger *l, struct ledger_count **table, struct ledger_count *cc);
/*
 * Calls fn for each name of *table with a count above 0, under the lock
 * (fn must not call into the ledger).
 */
void ledger_each(struct ledger *l, struct ledger_count **table,
		 void (*fn)(void *arg, const char *name, int n), void *arg);

/*
 * The number of a prepared statement's text (Parse's body after the name),
 * the same on every worker, so that a server moving between workers keeps
 * the statements it has under the names they have there ("sluice_<id>"):
 * one reference, given back with ledger_stmt_release.
 */
uint64_t ledger_stmt_acquire(struct ledger *l, const uint8_t *text, uint32_t len);
void ledger_stmt_release(struct ledger *l, const uint8_t *text, uint32_t len);

/*
 * The share of (db, user), made on first use; one reference, dropped with
 * ledger_share_put. *first_of_db: no pool of db existed in the process.
 */
struct pool_share *ledger_share_get(struct ledger *l, const char *db, const char *user,
				    bool *first_of_db);
void ledger_share_put(struct ledger *l, struct pool_share *sh);

/* Limits for one more server: 0 means none (a forced add: a server taken over). */
struct ledger_server_limits {
	int pool; /* pool_size, with the reserve when due */
	int db; /* max_db_connections */
	int user; /* max_user_connections */
};
/*
 * Counts one more server of sh's pool, db and user, if each stays within
 * its limit; all three or none. Returns whether it was counted.
 */
bool ledger_server_add(struct ledger *l, struct pool_share *sh, const char *db, const char *user,
		       const struct ledger_server_limits *lim);
void ledger_server_remove(struct ledger *l, struct pool_share *sh, const char *db,
			  const char *user);
/* Calls fn for every share, under the lock (fn must not call into the ledger). */
void ledger_each_share(struct ledger *l, void (*fn)(void *arg, const struct pool_share *sh),
		       void *arg);

/* The pool's servers on every worker (no lock: may be a moment old). */
static inline int ledger_share_servers(const struct pool_share *sh)
{
	return __atomic_load_n(&sh->servers, __ATOMIC_RELAXED);
}

/* The welcome of sh's pool into out, if one was learned: false otherwise. */
bool ledger_share_welcome(struct ledger *l, struct pool_share *sh, struct param_set *out);
/* Learns the welcome, unless one is known already. */
void ledger_share_learn_welcome(struct ledger *l, struct pool_share *sh,
				const struct param_set *params);

/* Worker i's publications (see struct pool_share). */
static inline void ledger_share_publish(struct pool_share *sh, int i, int idle,
					uint64_t wait_since_us, int uncovered)
{
	if (__atomic_load_n(&sh->idle[i], __ATOMIC_RELAXED) != idle)
		__atomic_store_n(&sh->idle[i], idle, __ATOMIC_RELAXED);
	uint64_t was = __atomic_load_n(&sh->wait_since_us[i], __ATOMIC_RELAXED);
	if (was != wait_since_us) {
		__atomic_store_n(&sh->wait_since_us[i], wait_since_us, __ATOMIC_RELAXED);
		if (!was != !wait_since_us)
			__atomic_add_fetch(&sh->waiting_workers, wait_since_us ? 1 : -1,
					   __ATOMIC_RELAXED);
	}
	if (__atomic_load_n(&sh->uncovered[i], __ATOMIC_RELAXED) != uncovered)
		__atomic_store_n(&sh->uncovered[i], uncovered, __ATOMIC_RELAXED);
}
