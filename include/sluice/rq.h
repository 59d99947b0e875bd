/*
 * rq.h - a server connection's request queue, with no I/O: what was sent to
 * PostgreSQL and not yet answered, in order, and so when the server is done.
 *
 * Every request sent to a server is pushed as an entry: a client's Query,
 * Sync or FunctionCall (answered up to its ReadyForQuery), one of sluice's
 * own queries (INTERNAL: its answer is swallowed), and the extended-protocol
 * messages (Parse, Bind, Describe, Execute, Close), each retired by the
 * message that completes it (ParseComplete, BindComplete, RowDescription or
 * NoData, CommandComplete..., CloseComplete).
 *
 * For each message from the server the owner asks rq_retire() for a
 * verdict: relay it, swallow it (the answer to a hidden request of
 * sluice's), or close the server (it answers nothing that was asked). An
 * ErrorResponse to an extended request retires, unanswered, every extended
 * entry up to the next Sync, as PostgreSQL skips them; with no Sync queued
 * yet, the queue skips what the client sends until its Sync as well.
 *
 * Fake entries stand for answers sluice gives itself (a Parse of a
 * statement the server already has, a Close of one it keeps): the owner
 * takes them with rq_take_fake() as soon as they reach the head, so the
 * client sees the answer where PostgreSQL would have put it.
 *
 * Entries may carry a prepared statement (an opaque reference, with the
 * client's name binding name_id): the done callback is told of each entry
 * that leaves, and whether PostgreSQL carried it out, so that prepared.c
 * can keep its names and sets exact.
 */
#pragma once

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>

#include "sluice/common.h"
#include "sluice/pkt.h"

struct pstmt;

/* Kinds of entries; the values are the letters the debug log shows. */
enum rq_kind {
	RQ_QUERY = 'Q', /* a client's simple Query */
	RQ_SYNC = 'S', /* a client's Sync */
	RQ_FUNCTION = 'F', /* a client's FunctionCall */
	RQ_INTERNAL = 'i', /* sluice's own query: swallow the response */
	RQ_PARSE = 'P',
	RQ_PARSE_HIDDEN = 'p', /* sluice's Parse before a Bind: swallow ParseComplete */
	RQ_BIND = 'B',
	RQ_DESCRIBE = 'D',
	RQ_EXECUTE = 'E',
	RQ_CLOSE = 'C',
	RQ_CLOSE_HIDDEN = 'c', /* sluice's Close of an evicted statement */
	RQ_FAKE_PARSE = '1', /* answer ParseComplete */
	RQ_FAKE_CLOSE = '3', /* answer CloseComplete; the client's name goes when it is answered */
	RQ_PARSE_IN_USE = '5', /* a Parse PostgreSQL is expected to refuse (prepared.c) */
};

/*
 * One entry: stmt (referenced; the done callback takes it over) for Parse
 * (also fake) and Close entries of named statements; seq numbers the
 * server's requests in the order sent.
 */
struct rq_entry {
	uint8_t kind;
	uint32_t seq;
	struct pstmt *stmt;
	uint64_t name_id; /* a client's Parse or Close: which binding of its name (prepared.c) */
};

/* An entry left the queue; answered: PostgreSQL carried it out (else it skipped it). */
typedef void rq_done_cb(void *owner, const struct rq_entry *e, bool answered);

struct rq {
	struct rq_entry *ring;
	uint32_t head, len, cap;
	uint32_t seq; /* seq of the last entry pushed */
	uint32_t stmts; /* entries that carry a statement */
	uint32_t boundaries; /* Query, Sync, FunctionCall and internal entries */
	uint32_t batch_first_seq; /* seq the first entry of the current batch has or will have */
	bool skipping; /* an error was answered and PostgreSQL skips messages until the next Sync */
	/*
	 * rq_head(), kept by push and pop: the relay asks for it several times
	 * per message, and one load is cheaper than finding the entry.
	 */
	int16_t head_kind;
	rq_done_cb *done; /* called for entries with a statement */
	void *owner;
};

void rq_init(struct rq *q, rq_done_cb *done, void *owner);
/* Retires what is left, unanswered, and frees the ring. */
void rq_deinit(struct rq *q);

/* Entries that end a batch: what follows them is not skipped by an error before them. */
static inline bool rq_kind_is_boundary(int kind)
{
	return kind == RQ_QUERY || kind == RQ_SYNC || kind == RQ_FUNCTION || kind == RQ_INTERNAL;
}

/* Doubles the ring, keeping the entries in order (rq_push, when it is full). */
void rq_grow(struct rq *q);

/*
 * Appends an entry. Inline: every message sent that PostgreSQL answers is
 * pushed, five per extended-protocol query. The ring's capacity is a power
 * of two, so the wrap is a mask.
 */
static inline void rq_push(struct rq *q, enum rq_kind kind, struct pstmt *stmt, uint64_t name_id)
{
	if (q->len == q->cap)
		rq_grow(q);
	struct rq_entry *e = &q->ring[(q->head + q->len) & (q->cap - 1)];
	e->kind = (uint8_t)kind;
	e->seq = ++q->seq;
	e->stmt = stmt;
	e->name_id = name_id;
	if (q->len++ == 0)
		q->head_kind = (int16_t)kind;
	if (stmt)
		q->stmts++;
	if (rq_kind_is_boundary(kind)) {
		q->boundaries++;
		q->batch_first_seq = q->seq + 1;
	}
}

/* The head entry's kind, or -1 when the queue is empty. (Inline: asked for every server message.) */
static inline int rq_head(const struct rq *q)
{
	assert(q->head_kind == (q->len ? q->ring[q->head].kind : -1));
	return q->head_kind;
}
/* The head entry, or NULL. */
static inline const struct rq_entry *rq_head_entry(const struct rq *q)
{
	return q->len ? &q->ring[q->head] : NULL;
}
/* rq_pop's general case: an entry with a statement (the done callback) or a batch's end. */
void rq_pop_slow(struct rq *q, bool answered);
/*
 * Retires the head entry; answered says whether PostgreSQL carried it out.
 * Inline: nearly every entry retired is an extended message of the unnamed
 * statement or portal, which only leaves the ring.
 */
static inline void rq_pop(struct rq *q, bool answered)
{
	const struct rq_entry *e = &q->ring[q->head];
	if (e->stmt || rq_kind_is_boundary(e->kind)) {
		rq_pop_slow(q, answered);
		return;
	}
	q->head = (q->head + 1) & (q->cap - 1);
	q->head_kind = --q->len ? q->ring[q->head].kind : -1;
}

/*
 * The verdict for a server message of type that is not ReadyForQuery:
 * retires the extended-protocol entry it completes. 1: it answers one of
 * sluice's hidden requests (swallow it); 0: relay it; -1: it answers
 * nothing that was asked (the server is out of step).
 */
int rq_retire_extended(struct rq *q, uint8_t type);
static inline int rq_retire(struct rq *q, uint8_t type)
{
	int head = rq_head(q);
	/*
	 * Decided inline, as the relay asks for every message: a row, which
	 * retires nothing, and the completion of the client request at the
	 * head, the usual answers of an extended-protocol query.
	 */
	switch (type) {
	case PKT_DataRow:
		return 0;
	case PKT_ParseComplete:
		if (head != RQ_PARSE)
			break;
		rq_pop(q, true);
		return 0;
	case PKT_BindComplete:
		if (head != RQ_BIND)
			break;
		rq_pop(q, true);
		return 0;
	case PKT_RowDescription:
	case PKT_NoData:
		if (head != RQ_DESCRIBE)
			break;
		rq_pop(q, true);
		return 0;
	case PKT_CommandComplete:
		if (head != RQ_EXECUTE)
			break;
		rq_pop(q, true);
		return 0;
	default:
		break;
	}
	/*
	 * Under a Query, Sync, FunctionCall or internal entry only ReadyForQuery
	 * (rq_ready) retires anything, and only the extended completions are out
	 * of step.
	 */
	if (rq_kind_is_boundary(head) && type != PKT_ParseComplete && type != PKT_BindComplete &&
	    type != PKT_CloseComplete)
		return 0;
	return rq_retire_extended(q, type);
}
/*
 * ReadyForQuery: retires what is left of a skipped batch and then the
 * entry it completes, which is returned (its kind), or -1 when none was
 * waiting (the server is out of step).
 */
int rq_ready(struct rq *q);
/*
 * CopyInResponse: the Sync of the batch that started COPY reached the
 * server in copy mode and will not be answered; it leaves the queue.
 */
void rq_copy_in(struct rq *q);
/*
 * The message type (ParseComplete, CloseComplete) of the fake entry at the
 * head, which leaves the queue, or 0. Not while the batch is being skipped.
 */
uint8_t rq_take_fake(struct rq *q);

/* The seq of the request the next message from the server answers. */
static inline uint32_t rq_answering_seq(const struct rq *q)
{
	return q->len ? q->ring[q->head].seq : q->seq + 1;
}
/*
 * Whether an entry carrying a statement belongs to a batch sent before the
 * current one: until it is answered, what the server has prepared is not
 * known for sure.
 */
bool rq_prepared_unsettled(const struct rq *q);
/* Whether a Query, Sync, FunctionCall or internal query is still queued. */
static inline bool rq_batches_pending(const struct rq *q)
{
	return q->boundaries > 0;
}
