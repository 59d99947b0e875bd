/*
 * derive.c - SCRAM key derivations on libuv's thread pool (see derive.h).
 *
 * It owns struct derive, the uv_work_t of one job, and the loop's queue of
 * jobs not yet handed to the pool. It does not know what the job is for:
 * clients and servers continue their exchange in their done callbacks.
 *
 * A struct derive is in exactly one place: the queue's waiting list
 * (in_pool false), or libuv's pool (in_pool true, counted in jobs)
 * until its after-work callback, where it is freed.
 *
 * Threads: on_work() runs on a pool thread and touches only the scram_job
 * (scram_job_run's contract); everything else, including the owner pointer
 * that derive_abandon() clears, is read and written on the loop's thread.
 */
#include "sluice/derive.h"

#include <stdlib.h>

#include <openssl/crypto.h>

#include "sluice/log.h"

/* libuv's own default when UV_THREADPOOL_SIZE is not set. */
#define DEFAULT_THREADPOOL_SIZE 4

struct derive {
	uv_work_t req;
	struct derive_queue *q;
	struct scram_job *job; /* owned until handed to done */
	derive_done_cb *done;
	void *owner; /* NULL once abandoned */
	bool in_pool; /* handed to uv_queue_work; else on q->waiting */
	TAILQ_ENTRY(derive) link; /* q->waiting */
};

void derive_queue_init(struct derive_queue *q, uv_loop_t *loop)
{
	q->loop = loop;
	q->jobs = 0;
	TAILQ_INIT(&q->waiting);
	/* As libuv reads it: unset means 4, anything below 1 means 1. */
	const char *env = getenv("UV_THREADPOOL_SIZE");
	int threads = env ? atoi(env) : DEFAULT_THREADPOOL_SIZE;
	if (threads < 1)
		threads = 1;
	q->max = threads > 1 ? threads - 1 : 1;
}

/*
 * On a pool thread. OpenSSL keeps per-thread state (its error queue) for a
 * thread that used it, and frees it only when the thread exits while
 * OpenSSL is still initialised; libuv's pool threads are joined after
 * OpenSSL's atexit cleanup, so that state would leak at every exit. It is
 * released after each job instead: next to a key derivation it costs
 * nothing.
 */
static void on_work(uv_work_t *req)
{
	struct derive *d = container_of(req, struct derive, req);
	scram_job_run(d->job);
	OPENSSL_thread_stop();
}

static void on_after_work(uv_work_t *req, int status);

static void hand_to_pool(struct derive *d)
{
	struct derive_queue *q = d->q;
	int rc = uv_queue_work(q->loop, &d->req, on_work, on_after_work);
	if (rc != 0) {
		/*
		 * libuv refuses only a missing work callback, which cannot happen;
		 * should it, the job waits at the head of the queue for the next
		 * finished one, and its connection's login times out if none
		 * comes: that connection fails, not the process.
		 */
		log_error("key derivation not started: uv_queue_work: %s", uv_strerror(rc));
		TAILQ_INSERT_HEAD(&q->waiting, d, link);
		return;
	}
	d->in_pool = true;
	q->jobs++;
}

/* On the loop, after on_work returned or the queued work was cancelled. */
static void on_after_work(uv_work_t *req, int status)
{
	struct derive *d = container_of(req, struct derive, req);
	struct derive_queue *q = d->q;
	q->jobs--;
	struct derive *next = TAILQ_FIRST(&q->waiting);
	if (next && q->jobs < q->max) {
		TAILQ_REMOVE(&q->waiting, next, link);
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

struct derive *derive_start(struct derive_queue *q, struct scram_job *job, derive_done_cb *done,
			    void *owner)
{
	struct derive *d = xcalloc(1, sizeof(*d));
	d->q = q;
	d->job = job;
	d->done = done;
	d->owner = owner;
	if (q->jobs < q->max && TAILQ_EMPTY(&q->waiting))
		hand_to_pool(d);
	else
		TAILQ_INSERT_TAIL(&q->waiting, d, link);
	return d;
}

void derive_abandon(struct derive *d)
{
	if (!d->in_pool) {
		TAILQ_REMOVE(&d->q->waiting, d, link);
		scram_job_free(d->job);
		free(d);
		return;
	}
	d->owner = NULL;
	/* UV_EBUSY when it is running (or done, its after-work callback pending): it comes back. */
	(void)uv_cancel((uv_req_t *)&d->req);
}
