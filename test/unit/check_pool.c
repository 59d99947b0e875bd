/*
 * check_pool.c - state transitions and pool accounting without a network.
 *
 * A worker is set up on a libuv loop that never runs and never listens;
 * clients and servers are bare structs attached to a real pool, so
 * client_set_state()/server_set_state() move them between the pool's lists
 * exactly as on the data path, and the counts the console and /metrics
 * report (pool_get_counts) must follow. The statistics arithmetic (periods,
 * averages as PgBouncer computes them, histograms) is checked with known
 * numbers.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "sluice/authq.h"
#include "sluice/client.h"
#include "sluice/config.h"
#include "sluice/pool.h"
#include "sluice/server.h"
#include "sluice/stats.h"
#include "sluice/worker.h"

static uv_loop_t loop;
static struct worker w;
static struct pool *pool;

static void setup(void)
{
	struct config_error err;
	unsetenv("SLUICE_DATABASES");
	struct config *cfg = config_load(NULL, &err);
	ck_assert_msg(cfg != NULL, "%s", err.text);
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	ck_assert_int_eq(worker_init(&w, &loop, cfg, NULL), 0);
	config_unref(cfg); /* the worker holds its own reference */
	static struct config_database db = {
		.name = "app", .port = 5432, .pool_size = -1, .min_pool_size = -1,
		.reserve_pool_size = -1, .max_db_connections = -1, .pool_mode = -1,
		.server_lifetime = -1,
	};
	pool = pool_get(&w, "app", "alice", &db);
}

static void close_unless_closing(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void teardown(void)
{
	pool_free(pool);
	authq_free(w.authq);
	w.authq = NULL;
	/* The handles worker_init made were never started; close them before the loop. */
	uv_walk(&loop, close_unless_closing, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	worker_deinit(&w);
	uv_loop_close(&loop);
}

static struct client *new_client(void)
{
	struct client *c = calloc(1, sizeof(*c));
	c->w = &w;
	c->pool = pool;
	c->state = CLIENT_LOGIN;
	return c;
}

static struct server *new_server(void)
{
	struct server *s = calloc(1, sizeof(*s));
	s->w = &w;
	s->pool = pool;
	s->state = SERVER_CLOSED;
	s->txn_status = 'I';
	return s;
}

START_TEST(test_pool_get_returns_one_pool_per_database_and_user)
{
	ck_assert_ptr_eq(pool_get(&w, "app", "alice", pool->db), pool);
	struct pool *other = pool_get(&w, "app", "bob", pool->db);
	ck_assert_ptr_ne(other, pool);
	ck_assert_ptr_eq(pool_next(&w, NULL), pool);
	ck_assert_ptr_eq(pool_next(&w, pool), other);
	pool_free(other);
}
END_TEST

START_TEST(test_client_states_move_between_lists_and_counts)
{
	struct client *a = new_client(), *b = new_client();
	struct pool_counts pc;
	client_set_state(a, CLIENT_WAITING_LOGIN);
	pool_get_counts(pool, &pc);
	ck_assert_int_eq(pc.cl_waiting, 1); /* waiting for the first server login counts */
	client_set_state(a, CLIENT_IDLE);
	client_set_state(b, CLIENT_WAITING);
	pool_get_counts(pool, &pc);
	ck_assert_int_eq(pc.cl_active, 1); /* idle between transactions counts as active */
	ck_assert_int_eq(pc.cl_waiting, 1);
	ck_assert_int_eq(pool->n_cl_idle, 1);
	ck_assert_int_eq(pool->n_cl_waiting, 1);

	/* Linked: ACTIVE requires a server (client_check). */
	struct server *s = new_server();
	b->server = s;
	client_set_state(b, CLIENT_ACTIVE);
	pool_get_counts(pool, &pc);
	ck_assert_int_eq(pc.cl_active, 2);
	ck_assert_int_eq(pc.cl_waiting, 0);

	b->server = NULL;
	client_set_state(b, CLIENT_CLOSED);
	client_set_state(a, CLIENT_CLOSED);
	pool_get_counts(pool, &pc);
	ck_assert_int_eq(pc.cl_active, 0);
	ck_assert_int_eq(pc.cl_waiting, 0);
	ck_assert(pool_is_empty(pool));
	free(a);
	free(b);
	free(s);
}
END_TEST

START_TEST(test_waiters_are_queued_first_come_first_served)
{
	struct client *c[4];
	for (int i = 0; i < 4; i++) {
		c[i] = new_client();
		client_set_state(c[i], CLIENT_IDLE);
	}
	/* Ask in the order 2, 0, 3, 1: the queue keeps that order. */
	int order[] = { 2, 0, 3, 1 };
	for (int i = 0; i < 4; i++)
		client_set_state(c[order[i]], CLIENT_WAITING);
	struct client *x = TAILQ_FIRST(&pool->waiting);
	for (int i = 0; i < 4; i++, x = TAILQ_NEXT(x, state_link))
		ck_assert_ptr_eq(x, c[order[i]]);
	struct pool_counts pc;
	pool_get_counts(pool, &pc);
	ck_assert_int_eq(pc.cl_waiting, 4);
	/* The oldest waiter's wait is what maxwait reports. */
	c[2]->wait_start_us = uv_hrtime() / 1000 - 2500000;
	pool_get_counts(pool, &pc);
	ck_assert_uint_ge(pc.maxwait_us, 2500000);
	ck_assert_uint_lt(pc.maxwait_us, 60000000);
	for (int i = 0; i < 4; i++) {
		client_set_state(c[i], CLIENT_CLOSED);
		free(c[i]);
	}
}
END_TEST

START_TEST(test_server_states_move_between_lists_and_counts)
{
	struct server *s = new_server(), *t = new_server();
	struct pool_counts pc;
	server_set_state(s, SERVER_LOGIN);
	server_set_state(t, SERVER_LOGIN);
	pool_get_counts(pool, &pc);
	ck_assert_int_eq(pc.sv_login, 2);
	server_set_state(s, SERVER_IDLE);
	server_set_state(t, SERVER_IDLE);
	/* Idle servers are handed out most recently used first. */
	ck_assert_ptr_eq(TAILQ_FIRST(&pool->sv_idle), t);
	struct client *c = new_client();
	t->client = c;
	server_set_state(t, SERVER_ACTIVE);
	pool_get_counts(pool, &pc);
	ck_assert_int_eq(pc.sv_active, 1);
	ck_assert_int_eq(pc.sv_idle, 1);
	ck_assert_int_eq(pc.sv_login, 0);
	t->client = NULL;
	server_set_state(t, SERVER_TESTED);
	pool_get_counts(pool, &pc);
	ck_assert_int_eq(pc.sv_tested, 1);
	ck_assert_int_eq(pc.sv_active, 0);
	server_set_state(t, SERVER_CLOSED);
	server_set_state(s, SERVER_CLOSED);
	ck_assert(pool_is_empty(pool));
	free(s);
	free(t);
	free(c);
}
END_TEST

START_TEST(test_effective_settings_follow_user_then_database_then_global)
{
	ck_assert_int_eq(pool_size_of(pool), 20); /* default_pool_size */
	ck_assert_int_eq(pool_mode_of(pool), POOL_MODE_SESSION);
	struct config_database db = *pool->db;
	db.pool_size = 7;
	db.pool_mode = POOL_MODE_TRANSACTION;
	db.min_pool_size = 2;
	const struct config_database *saved = pool->db;
	pool->db = &db;
	pool->user_cfg_gen = 0; /* as a reload's rebinding of the database does (pool.c) */
	ck_assert_int_eq(pool_size_of(pool), 7);
	ck_assert_int_eq(pool_mode_of(pool), POOL_MODE_TRANSACTION);
	ck_assert_int_eq(pool_min_size_of(pool), 2);
	pool->db = saved;
	pool->user_cfg_gen = 0;
}
END_TEST

START_TEST(test_stats_average_is_pgbouncers_calc_average)
{
	struct stats_counters start = { 0 }, end = { 0 }, avg;
	start.xact_count = 100;
	end.xact_count = 160; /* 60 in the period */
	end.xact_time = 60 * 250; /* 250 us each */
	end.query_count = 120;
	end.query_time = 120 * 100;
	end.server_assignment_count = 30;
	end.wait_time = 30 * 40;
	end.bytes_received = 6000;
	stats_average(&start, &end, 60.0, &avg);
	ck_assert_uint_eq(avg.xact_count, 1); /* per second */
	ck_assert_uint_eq(avg.query_count, 2);
	ck_assert_uint_eq(avg.bytes_received, 100);
	ck_assert_uint_eq(avg.xact_time, 250); /* per transaction */
	ck_assert_uint_eq(avg.query_time, 100); /* per query */
	ck_assert_uint_eq(avg.wait_time, 40); /* per assignment */

	/* No events: averages are 0, never a division by zero. */
	stats_average(&end, &end, 60.0, &avg);
	ck_assert_uint_eq(avg.xact_time, 0);
	ck_assert_uint_eq(avg.wait_time, 0);
}
END_TEST

START_TEST(test_stats_roll_keeps_the_last_complete_period)
{
	struct pool_stats st;
	memset(&st, 0, sizeof(st));
	st.total.query_count = 10;
	stats_roll(&st);
	st.total.query_count = 25;
	stats_roll(&st);
	st.total.query_count = 99; /* the current, incomplete period does not count */
	ck_assert_uint_eq(st.period_start.query_count, 10);
	ck_assert_uint_eq(st.period_end.query_count, 25);
}
END_TEST

START_TEST(test_stats_hist_buckets_by_upper_bound)
{
	struct stats_hist h;
	memset(&h, 0, sizeof(h));
	stats_hist_add(&h, 50); /* <= 100 us */
	stats_hist_add(&h, 100); /* on the bound: same bucket */
	stats_hist_add(&h, 101); /* next bucket (250 us) */
	stats_hist_add(&h, 7000000); /* beyond 5 s: +Inf */
	ck_assert_uint_eq(h.bucket[0], 2);
	ck_assert_uint_eq(h.bucket[1], 1);
	ck_assert_uint_eq(h.bucket[STATS_HIST_BUCKETS], 1);
	ck_assert_uint_eq(h.count, 4);
	ck_assert_uint_eq(h.sum_us, 50 + 100 + 101 + 7000000);
	ck_assert(stats_hist_bounds[0] == 0.0001);
	for (int i = 1; i < STATS_HIST_BUCKETS; i++)
		ck_assert(stats_hist_bounds[i] > stats_hist_bounds[i - 1]);
}
END_TEST

static Suite *pool_suite(void)
{
	Suite *s = suite_create("pool");
	TCase *tc = tcase_create("states");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_pool_get_returns_one_pool_per_database_and_user);
	tcase_add_test(tc, test_client_states_move_between_lists_and_counts);
	tcase_add_test(tc, test_waiters_are_queued_first_come_first_served);
	tcase_add_test(tc, test_server_states_move_between_lists_and_counts);
	tcase_add_test(tc, test_effective_settings_follow_user_then_database_then_global);
	suite_add_tcase(s, tc);
	TCase *ts = tcase_create("stats");
	tcase_add_test(ts, test_stats_average_is_pgbouncers_calc_average);
	tcase_add_test(ts, test_stats_roll_keeps_the_last_complete_period);
	tcase_add_test(ts, test_stats_hist_buckets_by_upper_bound);
	suite_add_tcase(s, ts);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(pool_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
