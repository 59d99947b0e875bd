/*
 * crew.h - the workers of one process, their threads, and what passes
 * between them.
 *
 * With workers = N, the process runs N workers, each on a libuv loop of its
 * own: worker 0 on the process's loop (the main thread, which also watches
 * the signals), every other one on a thread of its own. A worker's state is
 * touched by its own thread only, with two exceptions that this module
 * arranges:
 *
 *   - messages: a worker posts a struct crew_msg to another's mailbox, and
 *     the receiver runs it on its own loop (a server handed over, a request
 *     for one, a forwarded CancelRequest);
 *   - stopping the world: one worker (for a console command, a /metrics
 *     scrape, a signal) parks every other one between two of its callbacks
 *     and may then read and change their state as if it ran on their loops,
 *     until it resumes them. A parked worker is inside a callback of its
 *     own loop (its wake-up handle, or crew_stop_world of its own), so what
 *     the stopper does to it is what one of its own callbacks could do:
 *     closing its handles, starting its timers, freeing nothing that its
 *     close callbacks free later. The mutex hand-over orders every such
 *     access (ThreadSanitizer sees it).
 *
 * Two workers may want the world at once: the one that gets it first
 * proceeds, the other parks inside crew_stop_world until it is resumed and
 * then stops the world itself. So a caller of crew_stop_world must expect
 * its own worker's state to have been changed by another worker meanwhile
 * (a console client closed by another console's KILL, say).
 *
 * With one worker, nothing here costs anything: no thread, no wake-up
 * handle, and stopping the world is a no-op.
 */
#pragma once

#include <stdbool.h>
#include <uv.h>

#include "sluice/common.h"

struct worker;
struct crew_msg;

/* Runs on the receiving worker's loop; owns m (frees it). */
typedef void crew_msg_fn(struct worker *w, struct crew_msg *m);

/* The header of a message: embed it first in the message's own struct. */
struct crew_msg {
	crew_msg_fn *run;
	struct crew_msg *next;
};

struct crew {
	int n; /* workers, >= 1 */
	struct worker **workers; /* [0] runs on the process's loop */
	uv_thread_t *threads; /* [i] runs workers[i], for i >= 1 */
	uv_mutex_t mu;
	uv_cond_t parked_cv; /* a worker parked, or left */
	uv_cond_t resume_cv; /* the world may go on */
	uv_mutex_t owner; /* held by the worker that stopped the world */
	int holder; /* that worker's index, or -1; atomic: see crew_stop_world */
	int depth; /* nested crew_stop_world calls of the holder */
	bool started; /* the threads run: before, and with one worker, the world needs no stopping */
	bool stop_wanted;
	int parked; /* workers parked now */
	int live; /* workers whose loops still run */
	uint64_t stops; /* how often the world was stopped, for SHOW WORKERS */
};

/* A worker's share of the crew: its mailbox and wake-up handle. */
struct crew_member {
	struct crew *of; /* NULL: a worker of its own (unit tests) */
	int index; /* in crew->workers */
	bool wake_open; /* wake exists (crew of more than one) */
	bool gone; /* its loop no longer runs: it can neither park nor take messages */
	uv_async_t wake;
	uv_mutex_t mbox_mu;
	struct crew_msg *mbox_head, *mbox_tail;
};

/* Sets the crew up for workers[0..n), initialised already; their loops do not run yet. */
void crew_init(struct crew *cr, struct worker **workers, int n);
void crew_deinit(struct crew *cr);
/*
 * Opens each worker's wake-up handle (n > 1) and starts the threads of
 * workers 1..n-1, each running its loop until it ends. 0 or a libuv error
 * (logged); threads started before an error run on.
 */
int crew_start(struct crew *cr) WUR;
/* Waits for the threads to end (after worker 0's loop has). */
void crew_join(struct crew *cr);

/*
 * The worker's loop is about to end (its last handles closing): it parks no
 * more and takes no messages; those in its mailbox are dropped (each is run
 * with w's gone flag set, to free what it holds). Closes the wake-up handle.
 */
void crew_leave(struct worker *w);
/* Whether every worker but w has left. */
bool crew_others_gone(const struct worker *w);

/* Queues m for worker to, whose loop runs it soon; false (m untouched) when to has left. */
bool crew_post(struct worker *to, struct crew_msg *m) WUR;

/*
 * Parks every worker but the caller's (see above; the caller is the worker
 * whose loop runs on this thread). With one worker, before the threads
 * run, or with cr NULL, returns at once. Calls nest: the world goes on at
 * the last crew_resume_world.
 */
void crew_stop_world(struct crew *cr);
void crew_resume_world(struct crew *cr);
