/*
 * crew.c - the workers' threads, mailboxes and the stopping of the world
 * (see crew.h).
 */
#include "sluice/crew.h"

#include <sched.h>
#include <stdlib.h>

#include "sluice/log.h"
#include "sluice/worker.h"

/* The index of the worker whose loop runs on this thread: the main thread's is 0. */
static _Thread_local int self_index;

void crew_init(struct crew *cr, struct worker **workers, int n)
{
	*cr = (struct crew){ .n = n, .workers = workers, .live = n, .holder = -1 };
	uv_mutex_init(&cr->mu);
	uv_mutex_init(&cr->owner);
	uv_cond_init(&cr->parked_cv);
	uv_cond_init(&cr->resume_cv);
	cr->threads = n > 1 ? xcalloc((size_t)n, sizeof(*cr->threads)) : NULL;
	for (int i = 0; i < n; i++) {
		struct crew_member *m = &workers[i]->crew;
		m->of = cr;
		m->index = i;
		uv_mutex_init(&m->mbox_mu);
	}
}

void crew_deinit(struct crew *cr)
{
	for (int i = 0; i < cr->n; i++)
		uv_mutex_destroy(&cr->workers[i]->crew.mbox_mu);
	uv_mutex_destroy(&cr->mu);
	uv_mutex_destroy(&cr->owner);
	uv_cond_destroy(&cr->parked_cv);
	uv_cond_destroy(&cr->resume_cv);
	free(cr->threads);
	cr->threads = NULL;
}

/* With cr->mu held: stays parked until the world may go on. */
static void park(struct crew *cr)
{
	cr->parked++;
	uv_cond_broadcast(&cr->parked_cv);
	while (cr->stop_wanted)
		uv_cond_wait(&cr->resume_cv, &cr->mu);
	cr->parked--;
}

/* Sends w's loop a wake-up, unless it has left (under the mailbox lock: see crew_leave). */
static void wake(struct worker *w)
{
	uv_mutex_lock(&w->crew.mbox_mu);
	if (!w->crew.gone)
		uv_async_send(&w->crew.wake);
	uv_mutex_unlock(&w->crew.mbox_mu);
}

static void run_messages(struct worker *w)
{
	uv_mutex_lock(&w->crew.mbox_mu);
	struct crew_msg *m = w->crew.mbox_head;
	w->crew.mbox_head = w->crew.mbox_tail = NULL;
	uv_mutex_unlock(&w->crew.mbox_mu);
	while (m) {
		struct crew_msg *next = m->next;
		m->run(w, m);
		m = next;
	}
}

static void on_wake(uv_async_t *h)
{
	struct worker *w = container_of(h, struct worker, crew.wake);
	struct crew *cr = w->crew.of;
	uv_mutex_lock(&cr->mu);
	if (cr->stop_wanted)
		park(cr);
	uv_mutex_unlock(&cr->mu);
	/*
	 * With io_uring the reads reported before this wake-up are made first:
	 * worker_settle's answer means they have been read.
	 */
	stream_ctx_read_batch(&w->io);
	run_messages(w);
}

static void thread_main(void *arg)
{
	struct worker *w = arg;
	self_index = w->crew.index;
	uv_run(w->loop, UV_RUN_DEFAULT);
}

int crew_start(struct crew *cr)
{
	if (cr->n == 1)
		return 0;
	for (int i = 0; i < cr->n; i++) {
		struct worker *w = cr->workers[i];
		int rc = uv_async_init(w->loop, &w->crew.wake, on_wake);
		if (rc != 0) {
			log_error("worker %d: cannot make its wake-up handle: %s", i,
				  uv_strerror(rc));
			return rc;
		}
		w->crew.wake_open = true;
	}
	cr->started = true;
	for (int i = 1; i < cr->n; i++) {
		int rc = uv_thread_create(&cr->threads[i], thread_main, cr->workers[i]);
		if (rc != 0) {
			log_error("worker %d: cannot start its thread: %s", i, uv_strerror(rc));
			/* Its loop never runs: it counts as gone. */
			for (int j = i; j < cr->n; j++) {
				struct worker *w = cr->workers[j];
				uv_mutex_lock(&cr->mu);
				w->crew.gone = true;
				cr->live--;
				uv_mutex_unlock(&cr->mu);
			}
			return rc;
		}
	}
	return 0;
}

void crew_join(struct crew *cr)
{
	for (int i = 1; i < cr->n; i++)
		if (cr->threads[i])
			uv_thread_join(&cr->threads[i]);
}

static void close_wake(uv_handle_t *h)
{
	(void)h;
}

void crew_leave(struct worker *w)
{
	struct crew *cr = w->crew.of;
	if (!cr || !cr->started || w->crew.gone)
		return;
	/*
	 * gone under the mailbox lock: a poster that saw it unset has sent its
	 * wake-up before the handle closes below.
	 */
	uv_mutex_lock(&w->crew.mbox_mu);
	uv_mutex_lock(&cr->mu);
	__atomic_store_n(&w->crew.gone, true, __ATOMIC_RELAXED); /* on_accept reads it unlocked */
	cr->live--;
	uv_cond_broadcast(&cr->parked_cv);
	uv_mutex_unlock(&cr->mu);
	uv_mutex_unlock(&w->crew.mbox_mu);
	/* What was posted before: each frees what it holds, seeing gone. */
	run_messages(w);
	if (w->crew.wake_open)
		uv_close((uv_handle_t *)&w->crew.wake, close_wake);
	/* Worker 0 waits for the others before it ends (worker.c). */
	if (w->crew.index != 0)
		wake(cr->workers[0]);
}

bool crew_others_gone(const struct worker *w)
{
	struct crew *cr = w->crew.of;
	if (!cr || !cr->started)
		return true;
	uv_mutex_lock(&cr->mu);
	bool all = cr->live <= (w->crew.gone ? 0 : 1);
	uv_mutex_unlock(&cr->mu);
	return all;
}

bool crew_post(struct worker *to, struct crew_msg *m)
{
	m->next = NULL;
	uv_mutex_lock(&to->crew.mbox_mu);
	bool ok = !to->crew.gone && to->crew.wake_open;
	if (ok) {
		if (to->crew.mbox_tail)
			to->crew.mbox_tail->next = m;
		else
			to->crew.mbox_head = m;
		to->crew.mbox_tail = m;
		uv_async_send(&to->crew.wake);
	}
	uv_mutex_unlock(&to->crew.mbox_mu);
	return ok;
}

void crew_stop_world(struct crew *cr)
{
	if (!cr || !cr->started)
		return;
	/* Only the holder's own thread ever finds its own index here. */
	if (__atomic_load_n(&cr->holder, __ATOMIC_RELAXED) == self_index) {
		cr->depth++;
		return;
	}
	/*
	 * Another worker may hold the world, or be about to: be parked by it
	 * first (it waits for this worker too), then try again.
	 */
	while (uv_mutex_trylock(&cr->owner) != 0) {
		uv_mutex_lock(&cr->mu);
		if (cr->stop_wanted)
			park(cr);
		uv_mutex_unlock(&cr->mu);
		sched_yield();
	}
	uv_mutex_lock(&cr->mu);
	cr->stop_wanted = true;
	cr->stops++;
	uv_mutex_unlock(&cr->mu);
	for (int i = 0; i < cr->n; i++)
		if (i != self_index)
			wake(cr->workers[i]);
	uv_mutex_lock(&cr->mu);
	while (cr->parked < cr->live - 1)
		uv_cond_wait(&cr->parked_cv, &cr->mu);
	uv_mutex_unlock(&cr->mu);
	__atomic_store_n(&cr->holder, self_index, __ATOMIC_RELAXED);
	cr->depth = 1;
}

void crew_resume_world(struct crew *cr)
{
	if (!cr || !cr->started || --cr->depth > 0)
		return;
	__atomic_store_n(&cr->holder, -1, __ATOMIC_RELAXED);
	uv_mutex_lock(&cr->mu);
	cr->stop_wanted = false;
	uv_cond_broadcast(&cr->resume_cv);
	uv_mutex_unlock(&cr->mu);
	uv_mutex_unlock(&cr->owner);
}
