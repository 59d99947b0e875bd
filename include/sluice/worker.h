/*
 * worker.h - one event loop and everything that lives on it.
 *
 * All mutable state of the pooler hangs off struct worker: listeners,
 * clients, servers, pools, buffers, timers. Besides the workers, the
 * process (process.h) holds the configuration snapshot in force, the user
 * list and the signals; a worker serves with references to the snapshot
 * and list it was last handed. sluice runs one worker today; nothing else
 * being global is what makes N workers a later step.
 *
 * The loop agenda, per iteration (libuv phases). This is the one written
 * description; doc/internals.md points here.
 *   1. timers: the tick, every 250 ms (on_tick): client and server
 *      timeouts, lingering closes, cancel forwards, the accept pause, warm
 *      pools, pool expiry and waiter timeouts (pool_tick), the stats period.
 *   1b. idle, only after a round that closed streams: their owners' close
 *      callbacks (stream.c's reaper); connection memory is freed here.
 *   1c. prepare (on_prepare): forget the cached clock, note when the poll
 *      starts (SHOW WORKERS' busy share).
 *   2. poll: reads, writes, accepts, connects, signals (the process's).
 *   3. check (on_check, "after this round of I/O"), in this order:
 *      a. clients whose servers were released this round process what they
 *         sent meanwhile (client_run_released): a release never re-enters
 *         the client from inside its server's read callback;
 *      b. pool assignment for every pool kicked during the round
 *         (worker_schedule_kick): waiters get idle servers, servers open;
 *      c. console clients waiting for PAUSE or WAIT_CLOSE that the round
 *         completed are answered (admin_poll), then b. again for the pools
 *         their next commands kicked;
 *      d. every stream's queued output, one writev per stream
 *         (stream_ctx_flush; a. to c. queue output too, so this is
 *         late);
 *      e. a shutdown whose condition now holds is finished (finish_exit).
 *   4. close callbacks of libuv handles (timers, listeners, look-ups);
 *      a stream has no handle of its own: its owner hears at 1b.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <uv.h>

#include "sluice/auth.h"
#include "sluice/authq.h"
#include "sluice/buf.h"
#include "sluice/cancel.h"
#include "sluice/common.h"
#include "sluice/config.h"
#include "sluice/crew.h"
#include "sluice/derive.h"
#include "sluice/ledger.h"
#include "sluice/listener.h"
#include "sluice/prepared.h"
#include "sluice/stream.h"

struct hba;

struct pool;
struct process;
struct client;
struct cancel_peer;
struct server;
struct takeover_out;
struct takeover_link;

TAILQ_HEAD(client_list, client);
TAILQ_HEAD(server_list, server);
TAILQ_HEAD(pool_list, pool);

/*
 * Runtime state of a database name set from the admin console (PAUSE,
 * DISABLE, KILL, RECONNECT). It outlives pools and reloads.
 */
struct db_state {
	char *name;
	bool paused; /* PAUSE/KILL: no server is handed out until RESUME */
	bool disabled; /* DISABLE: new clients are refused until ENABLE */
	UT_hash_handle hh;
};

enum worker_shutdown {
	WORKER_RUNNING = 0,
	WORKER_WAIT_CLIENTS, /* SIGTERM: stop accepting, exit when clients are gone */
	WORKER_WAIT_SERVERS, /* SIGINT: stop accepting, exit when servers are released */
	WORKER_EXIT, /* stop now */
};

struct worker {
	uv_loop_t *loop;
	struct crew_member crew; /* its place among the process's workers (crew.h) */
	struct process
		*process; /* what the console's process-wide verbs act on; NULL in unit tests */
	/* Called once the worker has closed its handles at exit (process.c closes its own). */
	void (*exit_cb)(struct worker *w);
	struct config *cfg; /* the snapshot this worker serves with; one reference */
	uint64_t cfg_gen; /* counts the snapshots installed: what was looked up in cfg is valid while it stays */
	struct auth_userlist *userlist; /* one reference; NULL without auth_file */
	/* The TLS contexts in force (worker_install_tls), one reference each; NULL: off on that side */
	struct tls_ctx *client_tls;
	struct tls_ctx *server_tls;
	struct hba *hba; /* auth_hba_file's rules (worker_install_hba), one reference; or NULL */
	uint8_t mock_seed[32]; /* SCRAM mock for unknown users */
	struct stream_ctx io; /* what its streams share: buffers, flush and linger queues */

	struct listener_set listeners;
	struct client_list clients; /* every client connection */
	struct server_list servers; /* every server connection */
	struct pool_list pools;
	/*
	 * The process's counts (ledger.h): servers by pool, database and user,
	 * clients by database and user (past their startup packet, see
	 * client_admit) and in all, connection ids. A worker of its own (unit
	 * tests) keeps them in own_ledger.
	 */
	struct ledger *ledger;
	struct ledger own_ledger;
	struct cancel_table cancel_keys; /* every client, by client_cancel_key */
	struct cancel_peer *cancel_peers; /* cancel.c's forwards to [peers], by peer_id */
	struct db_state *db_states;
	struct prepared_registry prepared; /* named statements of all clients */
	bool paused_all; /* PAUSE without a database */
	bool suspended; /* SUSPEND: no accepting, no reading but the console's (worker_suspend) */
	/* Online restart, old side (takeover.h): the state of the handing over, or NULL. */
	struct takeover_out *handing_over;
	/* ...while clients go: waiters that can move get no server here (pool.c) */
	bool holding_movable;
	/* New side: the link that brings the old process's clients, until they are all here. */
	struct takeover_link *taking_over;
	uint64_t suspended_at; /* uv_now of the SUSPEND, for suspend_timeout */
	int admin_waiters; /* console clients waiting for PAUSE/WAIT_CLOSE to finish */
	struct pool *admin_pool; /* the pgbouncer/pgbouncer pseudo-pool, created on use */
	uint64_t start_time; /* wall clock, seconds */
	uint64_t stats_rolled_at; /* uv_now of the last stats period roll */
	struct http *http; /* NULL unless metrics_port is set */
	int client_count;
	/* client_count for the other workers to read (atomic), and connections posted to it */
	int clients_now;
	/*
	 * Clients accepted past max_client_conn with other workers running,
	 * held until those have caught up (worker_settle): the first
	 * settle_covered of them are covered by the round of messages in flight,
	 * which waits for settle_replies more answers.
	 */
	struct client **settling;
	int n_settling, settling_cap, settle_covered, settle_replies;
	struct derive_queue derive; /* key derivations on the thread pool (derive.h) */
	struct authq *authq; /* auth_query look-ups (authq.h) */
	uint64_t stats_logins_evicted; /* logins closed at max_client_conn to make room */
	/*
	 * LISTEN fan-out (notify.h): notifications handed to clients, and
	 * listening clients closed for a backlog over notify_queue_size or for
	 * their listener's loss.
	 */
	uint64_t stats_notifications;
	uint64_t stats_notify_closed_backlog, stats_notify_closed_lost;
	/* TLS handshakes completed and failed, [0] with clients, [1] with servers */
	uint64_t stats_tls_handshakes[2];
	uint64_t stats_tls_failures[2];
	uint64_t state_changes; /* client state changes so far (client->state_seq) */
	uint64_t started_ns; /* uv_hrtime at worker_init, for SHOW WORKERS */
	/*
	 * How long the loop waited in its polls (SHOW WORKERS' busy share),
	 * in uv_now milliseconds, measured by the prepare and check steps:
	 * libuv's own measure (UV_METRICS_IDLE_TIME) polls once more without
	 * waiting before every poll that waits, a system call per wake-up.
	 */
	uint64_t idle_ms;
	uint64_t poll_entered_ms; /* uv_now just before this round's poll */
	uint64_t servers_moved_in, servers_moved_out; /* between workers (pool.c) */

	/* Clients their servers let go of this round, to run in the check phase (client_unlinked). */
	struct client_list released;
	struct pool_list kick_queue;
	uv_check_t flush_check;
	uv_prepare_t clock_reset; /* forgets clock_ns and notes the time before each poll */
	uv_timer_t tick;
	uv_timer_t poll_timer; /* worker_poll_soon */
	enum worker_shutdown shutdown;
	uint64_t clock_ns; /* worker_clock_ns(); 0 until read in this wake-up */
};

/*
 * uv_hrtime() read once per wake-up of the loop (PgBouncer's cached time):
 * the statistics of every message handled in one wake-up share a clock
 * read, which is then as old as that wake-up at most. Timeouts use uv_now.
 */
static inline uint64_t worker_clock_ns(struct worker *w)
{
	if (w->clock_ns == 0)
		w->clock_ns = uv_hrtime();
	return w->clock_ns;
}

static inline uint64_t worker_clock_us(struct worker *w)
{
	return worker_clock_ns(w) / 1000;
}

/*
 * What the admin console and the metrics know of one connection: one row of
 * SHOW CLIENTS / SHOW SERVERS / SHOW SOCKETS. Strings are borrowed from the
 * connection and valid until it changes; copy before yielding to the loop.
 */
struct conn_info {
	char type; /* 'C' or 'S' */
	const char *user;
	const char *database;
	const char *state_name; /* PgBouncer's: active, idle, waiting, used, tested, login... */
	const char *socket_state; /* SHOW SOCKETS: cl_active, sv_idle, ... */
	char addr[64];
	int port;
	char local_addr[64];
	int local_port;
	uint64_t connect_time; /* wall clock, seconds */
	uint64_t request_time; /* wall clock, seconds */
	uint64_t wait_us; /* how long it has been waiting, 0 if not */
	bool close_needed;
	const void *ptr;
	const void *link; /* the linked peer, or NULL */
	int remote_pid;
	const char *application_name;
	char tls[64]; /* "TLSv1.3/TLS_AES_256_GCM_SHA384", or "" in the clear */
	uint64_t id;
	uint32_t recv_avail; /* unconsumed bytes read */
	uint32_t pkt_remain; /* bytes of the current message still to relay */
	uint32_t send_pending; /* bytes queued to send */
	uint32_t prepared_statements; /* a client's names, a server's prepared statements */
	uint8_t replication; /* enum pkt_replication */
};

/* Sets up the worker on loop with cfg and ul (NULL: no auth_file); it takes a reference to each. */
int worker_init(struct worker *w, uv_loop_t *loop, struct config *cfg,
		struct auth_userlist *ul) WUR;
/*
 * New connections use these contexts from now on (NULL: no TLS on that
 * side); the worker takes a reference to each. Connections already
 * encrypted keep the context they started with; with reconnect_servers,
 * every server is closed once released (as RECONNECT does).
 */
void worker_install_tls(struct worker *w, struct tls_ctx *client_tls, struct tls_ctx *server_tls,
			bool reconnect_servers);
/* New logins are matched against h from now on (NULL: none loaded); the worker takes a reference. */
void worker_install_hba(struct worker *w, struct hba *h);
/*
 * Listening sockets a worker is given instead of opening its own: the
 * service manager's (systemd.h), or a predecessor's (takeover.h,
 * from_predecessor). They are the worker's from worker_start on.
 */
struct worker_sockets {
	const int *fds; /* the client listeners */
	int n; /* how many; negative: they could not be taken, an error to return */
	bool from_predecessor;
	int http_fd; /* the metrics listener, or -1 */
	/* Another worker's listeners, to watch as well (crew.h); the metrics listener is its alone. */
	const struct listener_set *share;
};

/*
 * Opens listeners and starts the tick; after this the loop may run, also
 * when it failed (a shutdown then ends it). Without ws, or with ws->n 0, the
 * listeners are opened where the snapshot says; a negative ws->n is returned
 * as the error, and nothing is opened.
 */
int worker_start(struct worker *w, const struct worker_sockets *ws) WUR;
/* Frees what remains after the loop has stopped. */
void worker_deinit(struct worker *w);

/*
 * Serves with cfg and ul from now on (the worker takes a reference to each
 * and drops the old ones): pools take their new settings, pools of a
 * database no longer configured are closed with their clients, and the
 * warm pools are opened (process.c's reload and SET).
 */
void worker_install_config(struct worker *w, struct config *cfg, struct auth_userlist *ul);
/* Stops accepting and begins the shutdown given; a harsher one may follow, never a milder. */
void worker_begin_shutdown(struct worker *w, enum worker_shutdown how);
/* RESUME of every database of this worker, and the end of a SUSPEND; false when nothing was paused. */
bool worker_resume_all(struct worker *w);
/*
 * The console's SUSPEND: listeners stop accepting (connections wait in the
 * backlog), every client and server socket but the console's stops reading,
 * no server is handed out or opened, and queued output goes on draining
 * (worker_suspend_done); past suspend_timeout, the tick closes the
 * connections that still have output queued. Only worker_resume_all (RESUME, SIGUSR2, the last
 * console connection going) or the end of the process undoes it.
 */
void worker_suspend(struct worker *w);
/* Whether every socket that SUSPEND stopped has sent all it had queued. */
bool worker_suspend_done(struct worker *w);

/*
 * A few numbers for a one-line summary (the service manager's STATUS=,
 * process.c): connections now, and transaction and query totals of the
 * pools that exist now (a pool that goes, at a reload, takes its totals
 * with it). Cheap: a walk over the pools, none over connections.
 */
struct worker_summary {
	int clients; /* every client connection, console included */
	int clients_waiting; /* waiting for a server */
	int servers; /* every server connection, logging in included */
	int servers_active; /* linked to a client */
	int servers_idle; /* idle in a pool */
	uint64_t xact_count;
	uint64_t query_count;
};
void worker_summarize(const struct worker *w, struct worker_summary *out);

/*
 * Between the loop's clock (uv_now, milliseconds) and the wall clock
 * (milliseconds since the epoch), for times that travel to another process
 * (an online restart's connect times); a time in the future comes back as now.
 */
uint64_t worker_wall_ms_of(const struct worker *w, uint64_t at);
uint64_t worker_now_of_wall_ms(const struct worker *w, uint64_t wall_ms);

/*
 * Makes the loop go round again in a few milliseconds, even with nothing to
 * read: for a check step that waits on other workers (admin_poll).
 */
void worker_poll_soon(struct worker *w);

/*
 * auth_query look-ups of w's clients (authq.h: authq_lookup, authq_cancel,
 * authq_forget with the same contracts), run by worker 0's authq for the
 * whole process: another worker's are relayed there and answered back.
 */
struct worker_lookup;
bool worker_authq_lookup(struct worker *w, const struct authq_target *t, const char *user,
			 authq_cb cb, void *owner, struct authq_answer *now,
			 struct worker_lookup **wait) WUR;
void worker_authq_cancel(struct worker_lookup *wait);
void worker_authq_forget(struct worker *w, const char *key);

/*
 * A count shared with other workers says no (max_client_conn), but a client
 * may have left on another worker just before this one arrived, and that
 * worker may not have read its goodbye yet: the order the kernel saw is not
 * the order two threads act in. worker_settle holds c (it reads nothing)
 * for one round of messages to every other worker; each answers after the
 * events already waiting on its loop, so when all have, client_settled(c)
 * decides on counts that follow the kernel's order. false: no other worker
 * runs, decide now. A client closed meanwhile calls worker_settle_forget.
 */
bool worker_settle(struct worker *w, struct client *c);
void worker_settle_forget(struct worker *w, struct client *c);

/* Queues a pool for the assignment step of this loop iteration. */
void worker_schedule_kick(struct worker *w, struct pool *p);

/* The db_state of a name; created (all flags off) when create is set, else NULL if none. */
struct db_state *worker_db_state(struct worker *w, const char *db, bool create);
/* Whether servers of db may be handed out (no PAUSE in effect). */
bool worker_db_paused(struct worker *w, const char *db);
