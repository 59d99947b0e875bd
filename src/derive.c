/*
 * derive.c - SCRAM key derivations on libuv's thread pool (see derive.h).
 *
 * It owns struct derive, the uv_work_t of one job, and the worker's queue of
 * jobs not yet handed to the pool. It does not know what the job is for:
 * clients and servers continue their exchange in their done callbacks.
 *
 * A struct derive is in exactly one place: the worker's waiting list
 * (in_pool false), or libuv's pool (in_pool true, counted in derive_jobs)
 * until its after-work callback, where it is freed.
 *
 * Threads: on_work() runs on a pool thread and touches only the scram_job
 * (scram_job_run's contract); everything else, including the owner pointer
 * that derive_abandon() clears, is read and written on the loop's thread.
 */
#include "sluice/derive.h"

#include <stdlib.h>

#include "sluice/log.h"

/* libuv's own default when UV_THREADPOOL_SIZE is not set. */
#define DEFAULT_THREADPOOL_SIZE 4

struct derive {
	uv_work_t req;
	struct worker *w;
	struct scram_job *job; /* owned until handed to done */
	derive_done_cb *done;
	void *owner; /* NULL once abandoned */
	bool in_pool; /* handed to uv_queue_work; else on w->derive_waiting */
	TAILQ_ENTRY(derive) link; /* w->derive_waiting */
};

void derive_init(struct worker *w)
{
	TAILQ_INIT(&w->derive_waiting);
	/* As libuv reads it: unset means 4, anything below 1 means 1. */
	const char *env = getenv("UV_THREADPOOL_SIZE");
	int threads = env ? atoi(env) : DEFAULT_THREADPOOL_SIZE;
	if (threads < 1)
		threads = 1;
	w->derive_max = threads > 1 ? threads - 1 : 1;
}

/* On a pool thread. */
static void on_work(uv_work_t *req)
{
	struct derive *d = container_of(req, struct derive, req);
	scram_job_run(d->job);
}

static void on_after_work(uv_work_t *req, int status);

static void hand_to_pool(struct derive *d)
{
	struct worker *w = d->w;
	d->in_pool = true;
	w->derive_jobs++;
	/* libuv refuses only a missing work callback: a bug, not a condition. */
	int rc = uv_queue_work(w->loop, &d->req, on_work, on_after_work);
	if (rc != 0) {
		log_error("uv_queue_work: %s", uv_strerror(rc));
		abort();
	}
}

/* On the loop, after on_work returned or the queued work was cancelled. */
static void on_after_work(uv_work_t *req, int status)
{
	struct derive *d = container_of(req, struct derive, req);
	struct worker *w = d->w;
	w->derive_jobs--;
	struct derive *next = TAILQ_FIRST(&w->derive_waiting);
	if (next && w->derive_jobs < w->derive_max) {
		TAILQ_REMOVE(&w->derive_waiting, next, link);
		hand_to_pool(next);
	}
	struct scram_job *job = d->job;
	void *owner = d->owner;
	derive_done_cb *done = d->done;
	free(d);
	/*
	 * Only abandoned jobs are cancelled (status UV_ECANCELED); a job that
	 * did not run still has rc -1, so an owner would fail its login, never
	 * pass it.
	 */
	(void)status;
	if (owner)
		done(owner, job);
	else
		scram_job_free(job);
}

struct derive *derive_start(struct worker *w, struct scram_job *job, derive_done_cb *done,
			    void *owner)
{
	struct derive *d = xcalloc(1, sizeof(*d));
	d->w = w;
	d->job = job;
	d->done = done;
	d->owner = owner;
	if (w->derive_jobs < w->derive_max && TAILQ_EMPTY(&w->derive_waiting))
		hand_to_pool(d);
	else
		TAILQ_INSERT_TAIL(&w->derive_waiting, d, link);
	return d;
}

void derive_abandon(struct derive *d)
{
	if (!d->in_pool) {
		TAILQ_REMOVE(&d->w->derive_waiting, d, link);
		scram_job_free(d->job);
		free(d);
		return;
	}
	d->owner = NULL;
	/* UV_EBUSY when it is running (or done, its after-work callback pending): it comes back. */
	(void)uv_cancel((uv_req_t *)&d->req);
}
