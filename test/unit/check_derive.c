/*
 * check_derive.c - unit tests of derive.c: SCRAM key derivations run on
 * libuv's thread pool while the loop goes on, come back to their owner on
 * the loop, and, once abandoned, never come back but are freed (the leak
 * checkers of the ASan and valgrind builds see it) and let the loop close.
 *
 * A bare loop and a derive_queue are enough: derive.c knows nothing of the
 * worker that embeds the queue.
 */
#include <check.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/derive.h"

/* RFC 7677: "pencil" with this salt and 4096 rounds gives this ClientKey. */
static const uint8_t v_salt[] = { 0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e,
				  0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36, 0xfa, 0x81 };
static const uint8_t v_client_key[SCRAM_KEY_LEN] = {
	0xa6, 0x0f, 0xc9, 0x23, 0xd6, 0x7e, 0x86, 0x44, 0xa9, 0x2d, 0x16,
	0xb9, 0x6e, 0xda, 0x5e, 0xf4, 0x65, 0x6b, 0x0c, 0x72, 0x5c, 0x48,
	0x43, 0x74, 0xbe, 0x25, 0x53, 0x55, 0x76, 0x99, 0x6e, 0x8b,
};
/* A derivation of a few hundred milliseconds: long next to a loop iteration. */
#define SLOW_ITERATIONS 1000000

struct owner {
	int calls;
	bool on_loop_thread;
	int rc;
	uint8_t client_key[SCRAM_KEY_LEN];
	int ticks_before; /* timer ticks seen before the callback */
};

static pthread_t loop_thread;
static int ticks;

static void on_done(void *p, struct scram_job *job)
{
	struct owner *o = p;
	o->calls++;
	o->on_loop_thread = pthread_equal(pthread_self(), loop_thread);
	o->rc = job->rc;
	memcpy(o->client_key, job->client_key, SCRAM_KEY_LEN);
	o->ticks_before = ticks;
	scram_job_free(job);
}

static void on_tick(uv_timer_t *t)
{
	ticks++;
	(void)t;
}

static void queue_setup(struct derive_queue *q, uv_loop_t *loop)
{
	ck_assert_int_eq(uv_loop_init(loop), 0);
	derive_queue_init(q, loop);
	loop_thread = pthread_self();
	ticks = 0;
}

START_TEST(test_derive_runs_on_the_pool_and_answers_on_the_loop)
{
	uv_loop_t loop;
	struct derive_queue q;
	queue_setup(&q, &loop);
	struct owner o = { 0 };
	struct scram_job *job = scram_job_new("pencil", v_salt, sizeof(v_salt), 4096);
	struct derive *d = derive_start(&q, job, on_done, &o);
	ck_assert_ptr_nonnull(d);
	ck_assert_int_eq(q.jobs, 1);
	ck_assert_int_eq(o.calls, 0); /* never from inside derive_start */
	ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
	ck_assert_int_eq(o.calls, 1);
	ck_assert(o.on_loop_thread);
	ck_assert_int_eq(o.rc, 0);
	ck_assert_mem_eq(o.client_key, v_client_key, SCRAM_KEY_LEN);
	ck_assert_int_eq(q.jobs, 0);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

static void stop_when_done(uv_timer_t *t)
{
	on_tick(t);
	struct derive_queue *q = t->data;
	if (q->jobs == 0)
		uv_close((uv_handle_t *)t, NULL);
}

START_TEST(test_derive_leaves_the_loop_running_meanwhile)
{
	uv_loop_t loop;
	struct derive_queue q;
	queue_setup(&q, &loop);
	struct owner o = { 0 };
	uv_timer_t timer;
	uv_timer_init(&loop, &timer);
	timer.data = &q;
	uv_timer_start(&timer, stop_when_done, 1, 1);
	struct scram_job *job = scram_job_new("pencil", v_salt, sizeof(v_salt), SLOW_ITERATIONS);
	(void)derive_start(&q, job, on_done, &o);
	ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
	ck_assert_int_eq(o.calls, 1);
	ck_assert_int_eq(o.rc, 0);
	/* A 1 ms timer kept firing while the derivation ran (hundreds of ms). */
	ck_assert_msg(o.ticks_before >= 10, "the loop turned %d times meanwhile", o.ticks_before);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

/*
 * With one pool thread, the first job runs and the others wait in the
 * queue; the running one and a waiting one are abandoned (the
 * running one cannot be stopped, the waiting one is dropped at once).
 * Neither owner hears back, both jobs are freed, the job behind them runs,
 * and the loop has nothing left when uv_run returns.
 */
START_TEST(test_derive_abandoned_jobs_never_answer_and_are_freed)
{
	ck_assert_int_eq(setenv("UV_THREADPOOL_SIZE", "1", 1), 0);
	uv_loop_t loop;
	struct derive_queue q;
	queue_setup(&q, &loop);
	struct owner running = { 0 }, queued = { 0 }, kept = { 0 };
	struct derive *a = derive_start(
		&q, scram_job_new("pencil", v_salt, sizeof(v_salt), SLOW_ITERATIONS), on_done,
		&running);
	struct derive *b = derive_start(
		&q, scram_job_new("pencil", v_salt, sizeof(v_salt), SLOW_ITERATIONS), on_done,
		&queued);
	(void)derive_start(&q, scram_job_new("pencil", v_salt, sizeof(v_salt), 4096), on_done,
			   &kept);
	/* Let the pool thread start and pick up the first job (microseconds). */
	uv_sleep(100);
	ck_assert_int_eq(q.jobs, 1);
	derive_abandon(a);
	derive_abandon(b);
	ck_assert_int_eq(q.jobs, 1); /* the running job still owes its after-work callback */
	ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
	ck_assert_int_eq(running.calls, 0);
	ck_assert_int_eq(queued.calls, 0);
	ck_assert_int_eq(kept.calls, 1);
	ck_assert_int_eq(kept.rc, 0);
	ck_assert_mem_eq(kept.client_key, v_client_key, SCRAM_KEY_LEN);
	ck_assert_int_eq(q.jobs, 0);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

/*
 * The pool also resolves host names: derivations take at most all but one
 * of its threads (UV_THREADPOOL_SIZE, 4 when unset), and the rest wait
 * their turn.
 */
START_TEST(test_derive_leaves_a_pool_thread_for_name_resolution)
{
	static const struct {
		const char *env; /* NULL: unset */
		int max;
	} cases[] = { { NULL, 3 }, { "3", 2 }, { "2", 1 }, { "1", 1 }, { "0", 1 } };
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (cases[i].env)
			ck_assert_int_eq(setenv("UV_THREADPOOL_SIZE", cases[i].env, 1), 0);
		else
			ck_assert_int_eq(unsetenv("UV_THREADPOOL_SIZE"), 0);
		uv_loop_t loop;
		struct derive_queue q;
		queue_setup(&q, &loop);
		ck_assert_int_eq(q.max, cases[i].max);
		struct owner o[4] = { { 0 } };
		for (int j = 0; j < 4; j++)
			(void)derive_start(&q, scram_job_new("pencil", v_salt, sizeof(v_salt), 4096),
					   on_done, &o[j]);
		ck_assert_int_eq(q.jobs, cases[i].max);
		ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
		for (int j = 0; j < 4; j++) {
			ck_assert_int_eq(o[j].calls, 1);
			ck_assert_mem_eq(o[j].client_key, v_client_key, SCRAM_KEY_LEN);
		}
		ck_assert_int_eq(q.jobs, 0);
		ck_assert_int_eq(uv_loop_close(&loop), 0);
	}
}
END_TEST

static Suite *derive_suite(void)
{
	Suite *s = suite_create("derive");
	TCase *tc = tcase_create("derive");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_derive_runs_on_the_pool_and_answers_on_the_loop);
	tcase_add_test(tc, test_derive_leaves_the_loop_running_meanwhile);
	tcase_add_test(tc, test_derive_abandoned_jobs_never_answer_and_are_freed);
	tcase_add_test(tc, test_derive_leaves_a_pool_thread_for_name_resolution);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(derive_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
