/*
 * derive.h - SCRAM key derivations (PBKDF2) on libuv's thread pool.
 *
 * A login that needs a derivation (scram.h: struct scram_job) must not run
 * it on the event loop: at SCRAM_MAX_ITERATIONS, or at an auth_file
 * secret's own count, every other connection of the worker would wait. The
 * connection code hands the job to derive_start(), which runs
 * scram_job_run() with uv_queue_work() and calls the owner back on the loop.
 *
 * A connection may end while its job is queued or running. It then calls
 * derive_abandon(): a queued job is cancelled, a running one cannot be, and
 * either way the job and the struct derive stay alive until libuv's
 * after-work callback, which frees them without calling the owner. So the
 * owner's memory may go at once.
 *
 * Threads: libuv has one pool per process (UV_THREADPOOL_SIZE, default 4),
 * and it also resolves server host names (uv_getaddrinfo). So that
 * derivations cannot hold up every new server connection, at most
 * UV_THREADPOOL_SIZE - 1 of them (at least 1) are handed to the pool at a
 * time; the others wait in the loop's own queue, first come first served.
 *
 * Shutdown: a job in the pool counts as an active request of the loop, so
 * uv_run() does not return (and uv_loop_close() is not reached) before every
 * abandoned job has come back; that is at most one derivation's time, since
 * abandoned jobs that have not started are dropped or cancelled.
 */
#pragma once

#include <sys/queue.h>
#include <uv.h>

#include "sluice/scram.h"

struct derive;
TAILQ_HEAD(derive_list, derive);

/* The derivations of one loop (the worker embeds it). */
struct derive_queue {
	uv_loop_t *loop;
	int jobs; /* handed to the thread pool, not yet back */
	int max; /* how many may be in the pool at a time */
	struct derive_list waiting; /* not handed over yet, oldest first */
};

/*
 * Sets up q on loop, with the concurrency limit taken from
 * UV_THREADPOOL_SIZE as libuv reads it.
 */
void derive_queue_init(struct derive_queue *q, uv_loop_t *loop);

/*
 * Called on the loop when the job has run. owner is what derive_start() was
 * given; ownership of job passes to the callee, who frees it
 * (scram_job_free). The struct derive is gone by then.
 */
typedef void derive_done_cb(void *owner, struct scram_job *job);

/*
 * Runs job (ownership passes here) on the thread pool and calls done(owner,
 * job) afterwards, unless derive_abandon() is called first. The returned
 * handle is valid until done is called or derive_abandon() returns.
 */
struct derive *derive_start(struct derive_queue *q, struct scram_job *job, derive_done_cb *done,
			    void *owner);
/*
 * The owner goes away: done will not be called, and the job is freed when
 * the thread pool gives it back (at once if it had not started yet).
 */
void derive_abandon(struct derive *d);
