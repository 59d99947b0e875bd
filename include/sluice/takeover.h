/*
 * takeover.h - online restart: a new sluice process takes the listening
 * sockets and the clients of the running one, and no client notices.
 *
 * The new process (sluice -R, or the child the console's RESTART starts)
 * logs in to the running one's console on its unix socket, as the console
 * user "pgbouncer" of the same OS user (peer authentication), and runs two
 * sluice-only commands:
 *
 *   TAKEOVER <version>  The old process refuses any version but
 *                       HANDOVER_VERSION (and the new one exits, leaving it
 *                       serving). It sends one row per listening socket,
 *                       the socket attached (SCM_RIGHTS), the metrics
 *                       listener last, and stops accepting: connections
 *                       wait in the backlog for the new process, which
 *                       starts serving on those sockets at once.
 *   TAKEOVER CLIENTS    The old process sends one row per client, each with
 *                       its socket and its record (handover.h), as soon as
 *                       the client is between transactions with nothing
 *                       queued to it (client_can_hand_over): idle clients
 *                       go at once, the others when their transaction ends.
 *                       The command completes when no client is left but
 *                       the new process's console; the old process then
 *                       closes its listening sockets (leaving the unix
 *                       socket's file to its successor) and exits when that
 *                       console closes.
 *
 * A client in session pooling, linked to its server for life, goes with
 * it: the server's socket in a "server" row just before the client's, once
 * both are idle outside a transaction (server_can_hand_over). Clients that
 * cannot move stay with the old process until they leave: TLS clients
 * (their session state is OpenSSL's) and replication clients. The old
 * process keeps serving them, and exits after the last. Idle servers are
 * not handed over: the new process opens its own.
 *
 * If the new process goes away before TAKEOVER CLIENTS has completed, the
 * old one accepts again on its listening sockets (which it kept) and serves
 * on, as PgBouncer's SUSPEND does when its console leaves; clients handed
 * over by then went with the new process.
 *
 * Rows are (kind text, data bytea); kinds: "listener" (data: its name, for
 * the log), "metrics", "ids" (the old process's next connection id, no
 * socket: the new process's ids start well past it, and a client keeps its
 * id), "server" (no data: the socket of the session the next client row
 * says it is linked to), "client" (data: the record).
 */
#pragma once

#include <stdbool.h>

#include "sluice/config.h"
#include "sluice/worker.h"

struct client;
struct takeover_link;

/* ---- the old process (the console's TAKEOVER; admin.c) ---------------------------- */

/*
 * TAKEOVER <version> from console c (admin.c has checked that it may):
 * answers it whole (rows, CommandComplete) or with an error.
 */
void takeover_send_listeners(struct client *c, const char *version);
/*
 * TAKEOVER CLIENTS: false, with an error sent, unless c is the console that
 * took the listeners. Then admin.c waits on takeover_hand_over.
 */
bool takeover_start_clients(struct client *c);
/*
 * From the console's wait, every loop round: hands over each client that
 * can go now. true once none is left but the console: the old process
 * then lets its listening sockets go and begins its exit.
 */
bool takeover_hand_over(struct worker *w);
/* Console client c is closing: if it is a takeover's, and that takeover unfinished, serve again. */
void takeover_console_gone(struct worker *w, struct client *c);
/* Whether this process has handed its sockets to a successor (its exit must not undo anything). */
bool takeover_handed_over(struct worker *w);

/* ---- the new process (main.c) ---------------------------------------------------- */

/*
 * Connects to the process serving with cfg's unix socket, logs in and takes
 * its listening sockets (TAKEOVER), blocking: the process is not serving yet.
 * *out holds them (takeover_link_sockets) until takeover_link_start. -1,
 * with the reason logged, when there is nothing to take over or the old
 * process refused: it then serves on, untouched.
 */
int takeover_link_open(const struct config *cfg, struct takeover_link **out) WUR;
/* The sockets taken, for worker_start (process_start); they are the worker's from then on. */
void takeover_link_sockets(struct takeover_link *l, struct worker_sockets *ws);
/*
 * The worker is serving on those sockets: asks for the clients (TAKEOVER
 * CLIENTS) and adopts each as it comes, on w's loop, until the old process
 * has none left. The link is w's from this call on (freed at its exit).
 */
void takeover_link_start(struct takeover_link *l, struct worker *w);
/* Frees a link that was never started (a failed start-up), closing what it holds. */
void takeover_link_free(struct takeover_link *l);
/* The worker is exiting: stop receiving (worker.c). */
void takeover_link_stop(struct worker *w);
