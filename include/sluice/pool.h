/*
 * pool.h - the servers and waiting clients of one (database, user).
 *
 * A pool owns the lists its connections sit on (one list per state, so a
 * count is a list length kept by the state setters; the waiting lists are
 * FIFOs: clients waiting for a server, for the pool's first login, and
 * replication clients each waiting for a server of its own), the welcome
 * parameters new clients are greeted with, the state of failing logins
 * (server_login_retry, the cached error, the host to try next), and the
 * decisions: which waiter gets which idle server, when to open a new server
 * (pool_size, reserve_pool_size after reserve_pool_timeout,
 * max_db_connections and max_user_connections shared oldest waiter first,
 * min_pool_size), and when an idle server is checked or closed
 * (server_check_delay, server_lifetime, server_idle_timeout; the jitter on
 * the last two is drawn per server in server.c). It never reads or writes a
 * socket: client.c and server.c do.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "sluice/buf.h"
#include "sluice/config.h"
#include "sluice/param.h"
#include "sluice/stats.h"
#include "sluice/worker.h"

struct client;
struct server;
struct notify_hub;

struct pool {
	struct worker *w;
	char *db_name; /* the name clients use */
	/*
	 * The user servers log in as, and the pool's name in SHOW POOLS: the
	 * database's forced user= when it has one (then every client of the
	 * database shares this pool, whoever it logged in as), else the
	 * clients' own user name.
	 */
	char *user_name;
	const struct config_database *db; /* from the current snapshot */
	/* What it shares with the pools of the same name on other workers (ledger.h). */
	struct pool_share *share;
	/* LISTEN/NOTIFY fan-out in transaction pooling: NULL until a client LISTENs (notify.h). */
	struct notify_hub *notify;
	/* Its [users] entry or NULL, looked up when w->cfg_gen was user_cfg_gen (pool_user_cfg). */
	const struct config_user *user_cfg;
	uint64_t user_cfg_gen;
	uint8_t mode; /* enum pool_mode in that snapshot (pool_mode_of) */

	/* Client lists by state (see client.h). */
	struct client_list waiting_login;
	struct client_list waiting; /* FIFO: oldest first */
	struct client_list active;
	struct client_list idle;
	struct client_list waiting_repl; /* replication clients waiting for a server: FIFO */
	int n_cl_waiting_login, n_cl_waiting, n_cl_active, n_cl_idle, n_cl_waiting_repl;

	/* Server lists by state (see server.h). */
	struct server_list sv_login;
	struct server_list sv_idle; /* most recently used first */
	struct server_list sv_active;
	struct server_list sv_tested;
	struct server_list sv_being_canceled; /* released, waiting for their cancels to finish */
	int n_sv_login, n_sv_idle, n_sv_active, n_sv_tested, n_sv_being_canceled;
	int n_cancels_active; /* CancelRequests forwarded to its servers, not finished */

	/* What new clients are greeted with, learned from the first server login. */
	struct param_set welcome;
	/*
	 * The tracked subset of the welcome: what a client's session has for the
	 * parameters it did not choose. Clients store only the values they chose,
	 * so an idle client costs no per-parameter memory.
	 */
	struct param_set defaults;
	bool have_welcome;
	struct param_profiles profiles; /* of its clients (param.h) */
	/* AuthenticationOk and the ParameterStatus messages of the welcome for clients of one profile. */
	struct buf_out welcome_status;
	uint64_t welcome_status_profile; /* that profile's id; 0: none yet */
	/* The last server login failure, and when: drives server_login_retry. */
	struct buf_out last_error; /* an ErrorResponse message, ready to send */
	uint64_t last_error_at; /* uv_now; 0 = none */
	uint64_t last_error_seq; /* worker->state_changes then: who was waiting before it */
	char last_error_reason[256]; /* why, for the log lines of the clients it fails */
	bool last_login_ok; /* the most recent login attempt succeeded */
	bool last_error_transient; /* it kept the waiters queued (pool_server_login_failed) */
	/*
	 * A database with several hosts: the host the next server tries is
	 * host_next modulo their number (round-robin moves it on every connect,
	 * disable only when a login to that host failed), and how many logins
	 * have failed in a row since the last success. Until every host has
	 * had its turn, a failure is not the pool's: the next host is tried at
	 * once and waiters keep waiting.
	 */
	unsigned host_next;
	int hosts_failed;
	/* With several workers, these login fields are the share's (ledger.h), as of its login_gen then. */
	uint64_t login_gen;

	/*
	 * Credentials a client proved that can log in to the server for this
	 * pool's user when the auth_file has no usable secret: the ClientKey and
	 * ServerKey of a SCRAM exchange, or a cleartext password.
	 */
	bool have_scram_keys;
	uint8_t scram_client_key[32];
	uint8_t scram_server_key[32];
	char *client_password;

	uint64_t last_active; /* uv_now of the last tick that found it in use (pool_idle_timeout) */
	bool is_admin; /* the console's pgbouncer/pgbouncer pseudo-pool: never has servers */
	bool kick_scheduled;
	/* Another worker was asked for servers (pool.c, "one pool on several workers"), at uv_now. */
	bool pull_pending;
	uint64_t pull_at;
	int pull_next; /* the worker asked next for an eviction, round-robin */
	struct pool_stats stats;
	TAILQ_ENTRY(pool) link;
	TAILQ_ENTRY(pool) kick_link;
};

/* Counts for SHOW POOLS and the metrics. */
struct pool_counts {
	int cl_active; /* linked or idle between transactions (PgBouncer counts both) */
	int cl_waiting; /* waiting for a server, or for the first server login */
	int sv_active;
	int sv_idle;
	int sv_tested;
	int sv_login;
	int sv_being_canceled; /* released servers waiting for their cancels to finish */
	int cancels_active; /* CancelRequests forwarded and not finished */
	uint64_t maxwait_us; /* how long the oldest waiter has waited */
};

/* Pools in creation order: pool_next(w, NULL) is the first. */
struct pool *pool_next(struct worker *w, struct pool *p);
void pool_get_counts(const struct pool *p, struct pool_counts *out);

/*
 * The pool a client of db_name that logged in as user_name joins, created on
 * first use: (db_name, the forced user) when db has one, else (db_name,
 * user_name). db comes from w->cfg.
 */
struct pool *pool_get(struct worker *w, const char *db_name, const char *user_name,
		      const struct config_database *db);
void pool_free(struct pool *p);

/*
 * The [users] entry whose settings apply to the pool (pool size and mode,
 * reserve, the server-side timeouts): its user_name's, or NULL.
 */
const struct config_user *pool_user_cfg(const struct pool *p);
/* Looks user_cfg and mode up again for the snapshot in force. */
void pool_refresh_cfg(struct pool *p);
/*
 * Effective settings for this pool: [users] over [databases] over
 * [sluice]. The mode is asked several times per transaction: kept per
 * snapshot, and inline.
 */
static inline enum pool_mode pool_mode_of(const struct pool *p)
{
	if (p->user_cfg_gen != p->w->cfg_gen)
		pool_refresh_cfg((struct pool *)p); /* a cache, not the pool's state */
	return (enum pool_mode)p->mode;
}
int pool_size_of(const struct pool *p);
int pool_min_size_of(const struct pool *p);
/* Server connections the pool has on this worker, in every state. */
int pool_servers_of(const struct pool *p);
/* ... and on every worker of the process: what its limits count. */
int pool_total_servers(const struct pool *p);

/*
 * Asks for a server for client c (already in state WAITING). The pool links
 * one during this loop iteration's assignment step, or keeps c queued. A
 * replication client (WAITING_REPLICATION) gets a new server of its own
 * when the limits allow; an idle server of the pool is closed to make room
 * when the pool is full.
 */
void pool_want_server(struct pool *p, struct client *c);
/*
 * Links an idle server to client c (IDLE, with a request) at once when
 * c would be the only waiter and one is ready, and returns true; c's relay
 * runs before this returns. False: c must queue (pool_want_server).
 */
bool pool_serve_now(struct pool *p, struct client *c);
/* Runs assignment now: idle servers to waiters, new servers for the rest. */
void pool_kick(struct pool *p);

/*
 * The index in p->db->hosts a new server connects to, as load_balance_hosts
 * says; a round-robin pick moves on to the next host.
 */
int pool_pick_host(struct pool *p);
/*
 * A server finished login: adopt its parameters as the welcome set. A
 * replication server is linked to the client it was opened for instead,
 * which is greeted with that server's own parameters.
 */
void pool_server_logged_in(struct pool *p, struct server *s);
/* The first server's parameters become the pool's welcome and defaults (once; later calls do nothing). */
struct param_set;
void pool_learn_welcome(struct pool *p, const struct param_set *params);
/* Online restart: c and s came linked from the old process; link them here (server_link, no wait). */
void pool_link_adopted(struct pool *p, struct client *c, struct server *s);
/*
 * A login to host (an index in p->db->hosts) failed with this ErrorResponse
 * (whole message) or a local reason. With other hosts still to try, the next
 * one is tried at once. Else a transient failure (the server could not be
 * reached, or it is starting up or shutting down) keeps the waiting clients
 * queued for the next attempt, as PgBouncer does; any other fails them with
 * the reason; either way the pool waits server_login_retry.
 */
/*
 * Forgets the last failed login (server_login_retry's wait and cached
 * error): the way servers are reached changed, so the next client tries
 * again at once.
 */
void pool_forget_login_failure(struct pool *p);
void pool_server_login_failed(struct pool *p, int host, const uint8_t *err_msg, size_t len,
			      const char *reason, bool transient);
/* A tracked parameter as client c's session has it: its own choice or the default. */
const char *pool_param_of(const struct pool *p, const struct client *c, const char *name);
/* Sends the welcome (AuthenticationOk..ReadyForQuery) to a client. */
void pool_send_welcome(struct pool *p, struct client *c);

/*
 * Periodic work: wait timeouts, min_pool_size, and pool_idle_timeout, which
 * may free p (callers iterating the pools keep the next one first).
 */
void pool_tick(struct pool *p, uint64_t now);
/*
 * Creates the pool of every database with a forced user and a
 * min_pool_size, if it is not there, and schedules its assignment, so that
 * its servers are opened before any client comes (as PgBouncer's janitor
 * does). Run by the tick and after a reload.
 */
void pool_create_warm(struct worker *w);
/* Re-resolve the pool's database entry after a reload. */
void pool_reconfigure(struct pool *p);
bool pool_is_empty(const struct pool *p);
