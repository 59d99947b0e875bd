/*
 * check_rq.c - unit tests of rq.c, the request queue, driven by tables of
 * conversations: what sluice sent (pushes) and what PostgreSQL answered
 * (server messages), in order, with the verdict expected for each message
 * and the queue's length after each step. A step's entries which leave the
 * queue carrying a statement are reported through the done callback; the
 * tables say which and whether they were answered.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/pkt.h"
#include "sluice/rq.h"

/* A step: push kind (with a statement when stmt), or a server message type. */
/* END is 0: the steps a conversation leaves out end it. */
enum op { END, PUSH, MSG, READY, COPY_IN, FAKE };

struct step {
	enum op op;
	int arg; /* PUSH: enum rq_kind; MSG: message type */
	bool stmt; /* PUSH: the entry carries a statement */
	int want; /* MSG: verdict; READY: kind retired; FAKE: message type or 0 */
	int len; /* queue length after the step */
	const char *done; /* the done callbacks of the step: "P+" answered Parse, "P-" skipped... */
};

struct conversation {
	const char *name;
	struct step steps[16];
};

static char done_log[64];
static struct pstmt *const STMT = (struct pstmt *)"statement";

static void on_done(void *owner, const struct rq_entry *e, bool answered)
{
	ck_assert_ptr_eq(owner, done_log);
	ck_assert_ptr_eq(e->stmt, STMT);
	size_t n = strlen(done_log);
	ck_assert_uint_lt(n + 2, sizeof(done_log));
	done_log[n] = (char)e->kind;
	done_log[n + 1] = answered ? '+' : '-';
	done_log[n + 2] = '\0';
}

static const struct conversation conversations[] = {
	{ "simple query",
	  { { PUSH, RQ_QUERY, false, 0, 1, "" },
	    { MSG, PKT_RowDescription, false, 0, 1, "" },
	    { MSG, PKT_DataRow, false, 0, 1, "" },
	    { MSG, PKT_CommandComplete, false, 0, 1, "" },
	    { READY, 0, false, RQ_QUERY, 0, "" } } },
	{ "extended pipeline of two batches",
	  { { PUSH, RQ_PARSE, true, 0, 1, "" },
	    { PUSH, RQ_BIND, false, 0, 2, "" },
	    { PUSH, RQ_DESCRIBE, false, 0, 3, "" },
	    { PUSH, RQ_EXECUTE, false, 0, 4, "" },
	    { PUSH, RQ_SYNC, false, 0, 5, "" },
	    { PUSH, RQ_BIND, false, 0, 6, "" },
	    { PUSH, RQ_EXECUTE, false, 0, 7, "" },
	    { PUSH, RQ_SYNC, false, 0, 8, "" },
	    { MSG, PKT_ParseComplete, false, 0, 7, "P+" },
	    { MSG, PKT_BindComplete, false, 0, 6, "" },
	    { MSG, PKT_RowDescription, false, 0, 5, "" },
	    { MSG, PKT_CommandComplete, false, 0, 4, "" },
	    { READY, 0, false, RQ_SYNC, 3, "" },
	    { MSG, PKT_BindComplete, false, 0, 2, "" },
	    { MSG, PKT_CommandComplete, false, 0, 1, "" },
	    { READY, 0, false, RQ_SYNC, 0, "" } } },
	{ "an error mid-pipeline skips the rest of its batch only",
	  { { PUSH, RQ_PARSE, true, 0, 1, "" },
	    { PUSH, RQ_BIND, false, 0, 2, "" },
	    { PUSH, RQ_EXECUTE, false, 0, 3, "" },
	    { PUSH, RQ_SYNC, false, 0, 4, "" },
	    { PUSH, RQ_QUERY, false, 0, 5, "" },
	    { MSG, PKT_ErrorResponse, false, 0, 2, "P-" },
	    { READY, 0, false, RQ_SYNC, 1, "" },
	    { MSG, PKT_CommandComplete, false, 0, 1, "" },
	    { READY, 0, false, RQ_QUERY, 0, "" } } },
	{ "an error before any Sync skips what the client sends until its Sync",
	  { { PUSH, RQ_PARSE, false, 0, 1, "" },
	    { MSG, PKT_ErrorResponse, false, 0, 0, "" },
	    { PUSH, RQ_FAKE_PARSE, true, 0, 1, "" },
	    /* No fake answer while PostgreSQL skips: it goes at the ReadyForQuery. */
	    { FAKE, 0, false, 0, 1, "" },
	    { PUSH, RQ_SYNC, false, 0, 2, "" },
	    { READY, 0, false, RQ_SYNC, 0, "1-" } } },
	{ "hidden requests are swallowed, fakes answered at the head",
	  { { PUSH, RQ_CLOSE_HIDDEN, false, 0, 1, "" },
	    { PUSH, RQ_PARSE_HIDDEN, true, 0, 2, "" },
	    { PUSH, RQ_FAKE_PARSE, true, 0, 3, "" },
	    { PUSH, RQ_BIND, false, 0, 4, "" },
	    { PUSH, RQ_FAKE_CLOSE, true, 0, 5, "" },
	    { PUSH, RQ_SYNC, false, 0, 6, "" },
	    { FAKE, 0, false, 0, 6, "" }, /* not at the head yet */
	    { MSG, PKT_CloseComplete, false, 1, 5, "" },
	    { MSG, PKT_ParseComplete, false, 1, 4, "p+" },
	    { FAKE, 0, false, PKT_ParseComplete, 3, "1+" },
	    { MSG, PKT_BindComplete, false, 0, 2, "" },
	    { FAKE, 0, false, PKT_CloseComplete, 1, "3+" },
	    { READY, 0, false, RQ_SYNC, 0, "" } } },
	{ "a message that answers nothing asked is out of step",
	  { { MSG, PKT_ParseComplete, false, -1, 0, "" },
	    { PUSH, RQ_QUERY, false, 0, 1, "" },
	    { MSG, PKT_BindComplete, false, -1, 1, "" },
	    { MSG, PKT_CloseComplete, false, -1, 1, "" },
	    { READY, 0, false, RQ_QUERY, 0, "" },
	    { READY, 0, false, -1, 0, "" } } },
	{ "COPY FROM STDIN in an extended batch: its Sync is never answered",
	  { { PUSH, RQ_PARSE, false, 0, 1, "" },
	    { PUSH, RQ_BIND, false, 0, 2, "" },
	    { PUSH, RQ_EXECUTE, false, 0, 3, "" },
	    { PUSH, RQ_SYNC, false, 0, 4, "" },
	    { MSG, PKT_ParseComplete, false, 0, 3, "" },
	    { MSG, PKT_BindComplete, false, 0, 2, "" },
	    { COPY_IN, 0, false, 0, 1, "" },
	    { MSG, PKT_CommandComplete, false, 0, 0, "" } } },
	{ "COPY FROM STDIN by a simple query keeps its Query; a Sync at the head goes",
	  { { PUSH, RQ_QUERY, false, 0, 1, "" },
	    { COPY_IN, 0, false, 0, 1, "" },
	    { MSG, PKT_CommandComplete, false, 0, 1, "" },
	    { READY, 0, false, RQ_QUERY, 0, "" },
	    { PUSH, RQ_SYNC, false, 0, 1, "" },
	    { COPY_IN, 0, false, 0, 0, "" } } },
	{ "a re-parse by sluice is retired with the Parse in use it stands for",
	  { { PUSH, RQ_PARSE_IN_USE, true, 0, 1, "" },
	    { PUSH, RQ_SYNC, false, 0, 2, "" },
	    { MSG, PKT_ErrorResponse, false, 0, 1, "5-" },
	    { READY, 0, false, RQ_SYNC, 0, "" } } },
	{ "internal queries and function calls end at their ReadyForQuery",
	  { { PUSH, RQ_INTERNAL, false, 0, 1, "" },
	    { PUSH, RQ_FUNCTION, false, 0, 2, "" },
	    { MSG, PKT_CommandComplete, false, 0, 2, "" },
	    { READY, 0, false, RQ_INTERNAL, 1, "" },
	    { MSG, PKT_ErrorResponse, false, 0, 1, "" },
	    { READY, 0, false, RQ_FUNCTION, 0, "" } } },
};

START_TEST(test_rq_conversations)
{
	const struct conversation *cv = &conversations[_i];
	struct rq q;
	rq_init(&q, on_done, done_log);
	for (int i = 0; i < 16 && cv->steps[i].op != END; i++) {
		const struct step *st = &cv->steps[i];
		done_log[0] = '\0';
		int got = 0;
		switch (st->op) {
		case PUSH: rq_push(&q, (enum rq_kind)st->arg, st->stmt ? STMT : NULL, 0); break;
		case MSG: got = rq_retire(&q, (uint8_t)st->arg); break;
		case READY: got = rq_ready(&q); break;
		case COPY_IN: rq_copy_in(&q); break;
		case FAKE: got = rq_take_fake(&q); break;
		case END: break;
		}
		ck_assert_msg(got == st->want, "%s, step %d: verdict %d, want %d", cv->name, i, got,
			      st->want);
		ck_assert_msg(st->len < 0 || q.len == (uint32_t)st->len,
			      "%s, step %d: %u entries, want %d", cv->name, i, q.len, st->len);
		ck_assert_msg(strcmp(done_log, st->done) == 0, "%s, step %d: done \"%s\", want \"%s\"",
			      cv->name, i, done_log, st->done);
	}
	ck_assert_msg(q.len == 0 && !rq_batches_pending(&q), "%s: %u entries left", cv->name, q.len);
	rq_deinit(&q);
}
END_TEST

/* The answering seq and the unsettled test follow batches across a pipeline. */
START_TEST(test_rq_prepared_unsettled_until_the_earlier_batch_is_answered)
{
	struct rq q;
	rq_init(&q, on_done, done_log);
	done_log[0] = '\0';
	ck_assert_uint_eq(rq_answering_seq(&q), 1);
	rq_push(&q, RQ_PARSE, STMT, 7); /* seq 1, batch 1 */
	ck_assert(!rq_prepared_unsettled(&q)); /* the current batch: settled by its own answer */
	rq_push(&q, RQ_SYNC, NULL, 0); /* seq 2 ends batch 1 */
	ck_assert(rq_batches_pending(&q));
	ck_assert(rq_prepared_unsettled(&q)); /* batch 2 cannot know what batch 1 prepared */
	rq_push(&q, RQ_BIND, NULL, 0); /* seq 3 */
	ck_assert_uint_eq(rq_answering_seq(&q), 1);
	ck_assert_int_eq(rq_retire(&q, PKT_ParseComplete), 0);
	ck_assert_str_eq(done_log, "P+");
	ck_assert(!rq_prepared_unsettled(&q));
	ck_assert_uint_eq(rq_answering_seq(&q), 2);
	ck_assert_int_eq(rq_ready(&q), RQ_SYNC);
	ck_assert(!rq_batches_pending(&q));
	ck_assert_uint_eq(rq_head_entry(&q)->seq, 3);
	rq_deinit(&q); /* the Bind left unanswered: freed without a callback (no statement) */
	ck_assert_str_eq(done_log, "P+");
}
END_TEST

/* The ring wraps and grows with entries in place, keeping their order. */
START_TEST(test_rq_ring_grows_across_the_wrap)
{
	struct rq q;
	rq_init(&q, on_done, done_log);
	for (int i = 0; i < 10; i++)
		rq_push(&q, RQ_QUERY, NULL, 0);
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(rq_ready(&q), RQ_QUERY);
	/* The head is at 10 of 16 now: 40 more entries wrap and grow twice. */
	for (int i = 0; i < 40; i++)
		rq_push(&q, i % 2 ? RQ_SYNC : RQ_QUERY, NULL, 0);
	ck_assert_uint_eq(q.cap, 64);
	for (int i = 0; i < 40; i++) {
		ck_assert_uint_eq(rq_head_entry(&q)->seq, 11 + (uint32_t)i);
		ck_assert_int_eq(rq_ready(&q), i % 2 ? RQ_SYNC : RQ_QUERY);
	}
	rq_deinit(&q);
}
END_TEST

/*
 * rq_retire decides some verdicts inline without calling rq_retire_extended:
 * for every head (and an empty queue) and every message type, both give the
 * same verdict and leave the queue the same.
 */
START_TEST(test_rq_inline_verdicts_match_the_full_ones)
{
	static const int heads[] = { -1,
				     RQ_QUERY,
				     RQ_SYNC,
				     RQ_FUNCTION,
				     RQ_INTERNAL,
				     RQ_PARSE,
				     RQ_PARSE_HIDDEN,
				     RQ_BIND,
				     RQ_DESCRIBE,
				     RQ_EXECUTE,
				     RQ_CLOSE,
				     RQ_CLOSE_HIDDEN,
				     RQ_FAKE_PARSE,
				     RQ_FAKE_CLOSE,
				     RQ_PARSE_IN_USE };
	for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
		for (int type = 0; type < 256; type++) {
			struct rq a, b;
			rq_init(&a, on_done, done_log);
			rq_init(&b, on_done, done_log);
			if (heads[i] >= 0) {
				rq_push(&a, heads[i], NULL, 0);
				rq_push(&b, heads[i], NULL, 0);
			}
			rq_push(&a, RQ_SYNC, NULL, 0);
			rq_push(&b, RQ_SYNC, NULL, 0);
			ck_assert_int_eq(rq_retire(&a, (uint8_t)type),
					 rq_retire_extended(&b, (uint8_t)type));
			ck_assert_uint_eq(a.len, b.len);
			ck_assert_int_eq(rq_head(&a), rq_head(&b));
			ck_assert_int_eq(a.skipping, b.skipping);
			rq_deinit(&a);
			rq_deinit(&b);
		}
	}
}
END_TEST

static Suite *rq_suite(void)
{
	Suite *s = suite_create("rq");
	TCase *tc = tcase_create("rq");
	tcase_add_loop_test(tc, test_rq_conversations, 0,
			    (int)(sizeof(conversations) / sizeof(conversations[0])));
	tcase_add_test(tc, test_rq_prepared_unsettled_until_the_earlier_batch_is_answered);
	tcase_add_test(tc, test_rq_ring_grows_across_the_wrap);
	tcase_add_test(tc, test_rq_inline_verdicts_match_the_full_ones);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(rq_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
