/*
 * process.h - what there is one of per process: the configuration in force
 * and the user list, the signals, and the process-wide verbs (reload, SET,
 * shutdown, pause and resume of everything) carried to every worker.
 *
 * Workers never read the configuration file, the auth_file or a signal:
 * the process hands each a snapshot (worker_install_config) and tells it to
 * pause, resume or shut down. The snapshot and the user list are
 * reference-counted, so a worker keeps the one it serves with until it
 * installs the next. Worker 0 runs on the process's loop; with workers = N
 * the others run on threads of their own (crew.h). Every function here
 * that acts on the workers stops the world around it (crew_stop_world; the
 * calls nest), so it may be called from any worker's loop.
 *
 * Signals keep PgBouncer's meanings: SIGHUP reloads; SIGTERM waits for the
 * clients to leave, SIGINT for the servers to be released (either a second
 * time: exit now); SIGQUIT exits now; SIGUSR1 pauses and SIGUSR2 resumes
 * every database.
 *
 * A service manager hears of it (systemd.h): READY=1 once the process
 * serves (main.c), RELOADING=1 then READY=1 around every reload,
 * STOPPING=1 when a shutdown begins, and, while NOTIFY_SOCKET is set, a
 * STATUS= line every few seconds when it changed. Sockets the service
 * manager passed (socket activation) are taken at start and handed to the
 * worker's listeners instead of those the configuration names.
 */
#pragma once

#include <stdbool.h>
#include <uv.h>

#include "sluice/auth.h"
#include "sluice/config.h"
#include "sluice/hba.h"
#include "sluice/pool.h"
#include "sluice/tls.h"
#include "sluice/worker.h"

struct process {
	uv_loop_t *loop;
	struct config *cfg; /* in force; one reference */
	struct auth_userlist *userlist; /* one reference; NULL without auth_file */
	/* The TLS contexts in force, one reference each; NULL: TLS off on that side */
	struct tls_ctx *client_tls;
	struct tls_ctx *server_tls;
	struct hba *hba; /* the auth_hba_file rules, one reference; NULL unless auth_type = hba */
	struct worker worker; /* worker 0, on loop */
	/* Workers 1..n-1 (workers = n), each with a loop of its own: [i - 1]. */
	struct worker *more;
	uv_loop_t *more_loops;
	struct worker **workers; /* all of them, [0] = &worker */
	struct crew crew;
	struct ledger ledger; /* what the workers count together (ledger.h) */
	/* From the command line, kept over reloads: added to verbose (-v)... */
	int verbose_extra;
	/* ...and whether lines also go to stderr when there is a logfile (not with -q or -d). */
	bool log_stderr;
	uv_signal_t sig_term, sig_int, sig_hup, sig_quit, sig_usr1, sig_usr2;
	/* The service manager's status line (only while NOTIFY_SOCKET is set). */
	uv_timer_t status_timer;
	uint64_t status_at; /* uv_now of the last sample */
	uint64_t status_xacts, status_queries; /* the totals then */
	char status_sent[256]; /* the last line sent, so that an unchanged one is not */
	/* The console's RESTART: this binary's path (main.c), and the successor while it runs. */
	char *exe_path;
	uv_process_t successor;
	bool restarting;
};

/*
 * Sets the process up on loop with cfg (one reference passes to it): reads
 * the auth_file, builds the TLS contexts and initialises the worker. -1 with
 * the reason logged.
 */
int process_init(struct process *pr, uv_loop_t *loop, struct config *cfg, int verbose_extra,
		 bool log_stderr) WUR;
/*
 * Starts the worker (listeners: given, a predecessor's sockets, when not
 * NULL; else the service manager's sockets when it passed some, else the
 * configuration's; the tick), the signal watchers, and the status line when
 * a service manager listens.
 */
int process_start(struct process *pr, const struct worker_sockets *given) WUR;
/* Frees what remains once the loop has stopped. */
void process_deinit(struct process *pr);

/*
 * Points logging where cfg says: level (verbose), format, logfile (with
 * stderr too when also_stderr), syslog. Returns 0 or log_setup's -errno when
 * the logfile cannot be opened (logging then stays where it was).
 */
int process_log_setup(const struct config *cfg, bool also_stderr) WUR;
/*
 * Replaces the snapshot and user list (SIGHUP, RELOAD) with the files', as
 * PgBouncer does: settings the file does not name go back to their
 * defaults, console SETs included. Settings that need a restart keep their
 * running values (a warning names each the file changed), -v stays added to
 * verbose, and the logfile is reopened (log rotation). The TLS files are
 * read again; a side whose files cannot be used keeps its previous context
 * (logged). Errors keep the old ones and return -1. The service manager is
 * told RELOADING=1 before and READY=1 after, whatever the outcome.
 */
int process_reload(struct process *pr) WUR;
/*
 * The console's SET: a new snapshot with key = value. Errors (-1) keep the
 * old one; so does CONFIG_APPLY_IGNORED (a PgBouncer setting sluice lacks,
 * warned about in err).
 */
int process_set(struct process *pr, const char *key, const char *value,
		struct config_error *err) WUR;
/*
 * Every worker begins to shut down the way given (a later, harsher call
 * wins). The first call tells the service manager STOPPING=1.
 */
void process_shutdown(struct process *pr, enum worker_shutdown how);
/*
 * The console's RESTART: starts `sluice -R` from pr->exe_path (so an
 * upgraded binary takes over) with this process's configuration file and
 * command-line verbosity, detached, to take this process over (takeover.h).
 * 0, or -1 with why (the console's message) written: a restart under way,
 * no binary path, or the spawn failed. The successor's failure is logged
 * when it exits; this process then serves on.
 */
int process_restart(struct process *pr, char *why, size_t len) WUR;
/* PAUSE of everything (SIGUSR1); false when it already was. */
bool process_pause_all(struct process *pr);
/* RESUME of everything (console, SIGUSR2); false when nothing was paused. */
bool process_resume_all(struct process *pr);

/*
 * The workers of w's process, for the console, the metrics and the online
 * restart, which stop the world first (crew.h): how many, worker i (NULL
 * when it has left), and a loop over those whose loops run. Without a
 * process (unit tests), w alone.
 */
int process_n_workers(const struct worker *w);
struct worker *process_nth_worker(struct worker *w, int i);
#define PROCESS_EACH_WORKER(self, i, x)                                                            \
	for (int i = 0; i < process_n_workers(self); i++)                                          \
		if (((x) = process_nth_worker((self), i)) != NULL)

/*
 * Every connection and pool of the process, across its workers, for the
 * console and the metrics, which stop the world first (crew.h): the next
 * after c (NULL: the first). Without a process (unit tests), w's own.
 */
struct client *process_client_next(struct worker *w, struct client *c);
struct server *process_server_next(struct worker *w, struct server *s);
struct pool *process_pool_next(struct worker *w, struct pool *p);
/*
 * One pool of the process's as the console shows it: the pools of one
 * (database, user) on every worker, counts and statistics summed, with the
 * first of them for its names and settings.
 */
struct pool_sum {
	struct pool *pool;
	struct pool_counts counts;
	struct pool_stats stats;
};
/* Every pool_sum, sorted by (database, user); *n of them, in an array the caller frees. */
struct pool_sum *process_pool_sums(struct worker *w, int *n);

/* Worker i of the process, for i in [0, pr->crew.n); NULL when it has left (crew.h). */
struct worker *process_worker(struct process *pr, int i);
/* Whether every worker is paused (PAUSE), or SUSPENDed. */
bool process_paused_all(struct process *pr);
/* The summary of every worker's, summed (the service manager's status line, SHOW WORKERS). */
void process_summarize(struct process *pr, struct worker_summary *out);
