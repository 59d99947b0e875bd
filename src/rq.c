/*
 * rq.c - a server connection's request queue (see rq.h): a ring of entries
 * that grows by doubling and never shrinks (a server's pipeline depth is
 * what its clients send, and the ring is freed with the server).
 */
#include "sluice/rq.h"

#include <stdlib.h>

#include "sluice/pkt.h"

void rq_init(struct rq *q, rq_done_cb *done, void *owner)
{
	*q = (struct rq){ .head_kind = -1, .done = done, .owner = owner };
}

void rq_deinit(struct rq *q)
{
	while (q->len)
		rq_pop(q, false);
	free(q->ring);
	q->ring = NULL;
	q->cap = 0;
}

/* Entries retired by an extended-protocol completion rather than by ReadyForQuery. */
static bool is_extended(int kind)
{
	switch (kind) {
	case RQ_PARSE:
	case RQ_PARSE_HIDDEN:
	case RQ_BIND:
	case RQ_DESCRIBE:
	case RQ_EXECUTE:
	case RQ_CLOSE:
	case RQ_CLOSE_HIDDEN:
	case RQ_FAKE_PARSE:
	case RQ_FAKE_CLOSE:
	case RQ_PARSE_IN_USE:
		return true;
	default:
		return false;
	}
}

/* cap is a power of two (16, then doubled), so the wrap is a mask, not a division. */
static struct rq_entry *at(const struct rq *q, uint32_t i)
{
	return &q->ring[(q->head + i) & (q->cap - 1)];
}

void rq_grow(struct rq *q)
{
	uint32_t cap = q->cap ? q->cap * 2 : 16;
	struct rq_entry *n = xmalloc(cap * sizeof(*n));
	for (uint32_t i = 0; i < q->len; i++)
		n[i] = *at(q, i);
	free(q->ring);
	q->ring = n;
	q->cap = cap;
	q->head = 0;
}

void rq_pop_slow(struct rq *q, bool answered)
{
	const struct rq_entry *e = &q->ring[q->head];
	q->head = (q->head + 1) & (q->cap - 1);
	q->len--;
	q->head_kind = q->len ? q->ring[q->head].kind : -1;
	if (rq_kind_is_boundary(e->kind))
		q->boundaries--;
	if (e->stmt) {
		/* A copy: the callback may push, and a push may move the ring. */
		struct rq_entry done = *e;
		q->stmts--;
		q->done(q->owner, &done, answered);
	}
}

/* Removes the first entry of kind after the head, keeping the others in order. */
static void remove_first(struct rq *q, enum rq_kind kind)
{
	for (uint32_t i = 1; i < q->len; i++) {
		if (at(q, i)->kind != kind)
			continue;
		for (uint32_t j = i; j + 1 < q->len; j++)
			*at(q, j) = *at(q, j + 1);
		q->len--;
		if (rq_kind_is_boundary(kind))
			q->boundaries--;
		return;
	}
}

/* An ErrorResponse: PostgreSQL skips the rest of the batch, up to its Sync. */
static void skip_batch(struct rq *q)
{
	while (is_extended(rq_head(q)))
		rq_pop(q, false);
}

int rq_retire_extended(struct rq *q, uint8_t type)
{
	int head = rq_head(q);
	switch (type) {
	case PKT_ParseComplete:
		if (head != RQ_PARSE && head != RQ_PARSE_HIDDEN && head != RQ_PARSE_IN_USE)
			return -1;
		rq_pop(q, true);
		return head == RQ_PARSE_HIDDEN;
	case PKT_BindComplete:
		if (head != RQ_BIND)
			return -1;
		rq_pop(q, true);
		return 0;
	case PKT_CloseComplete:
		if (head != RQ_CLOSE && head != RQ_CLOSE_HIDDEN)
			return -1;
		rq_pop(q, true);
		return head == RQ_CLOSE_HIDDEN;
	case PKT_RowDescription:
	case PKT_NoData:
		if (head == RQ_DESCRIBE)
			rq_pop(q, true);
		return 0;
	case PKT_CommandComplete:
	case PKT_EmptyQueryResponse:
	case PKT_PortalSuspended:
		if (head == RQ_EXECUTE)
			rq_pop(q, true);
		return 0;
	case PKT_ErrorResponse:
		if (is_extended(head)) {
			skip_batch(q);
			/*
			 * No Sync sent yet: whatever the client sends until its Sync is
			 * skipped too, even what is held back now and sent later.
			 */
			if (q->len == 0)
				q->skipping = true;
		}
		return 0;
	default:
		return 0;
	}
}

int rq_ready(struct rq *q)
{
	/* Anything extended still queued was skipped (after an error, or COPY failed). */
	skip_batch(q);
	q->skipping = false;
	int kind = rq_head(q);
	if (kind < 0)
		return kind;
	/*
	 * Mostly the head is a Query's or a Sync's entry without a statement:
	 * it leaves here, without rq_pop_slow's call.
	 */
	struct rq_entry *e = &q->ring[q->head];
	if (e->stmt || !rq_kind_is_boundary(kind)) {
		rq_pop(q, true);
		return kind;
	}
	q->boundaries--;
	q->head = (q->head + 1) & (q->cap - 1);
	q->head_kind = --q->len ? q->ring[q->head].kind : -1;
	return kind;
}

void rq_copy_in(struct rq *q)
{
	int head = rq_head(q);
	if (head == RQ_SYNC)
		rq_pop(q, true);
	else if (head == RQ_EXECUTE)
		remove_first(q, RQ_SYNC);
}

uint8_t rq_take_fake(struct rq *q)
{
	/* While PostgreSQL skips the batch, fakes are skipped with it (at its ReadyForQuery). */
	if (q->skipping)
		return 0;
	uint8_t type;
	switch (rq_head(q)) {
	case RQ_FAKE_PARSE:
		type = PKT_ParseComplete;
		break;
	case RQ_FAKE_CLOSE:
		type = PKT_CloseComplete;
		break;
	default:
		return 0;
	}
	rq_pop(q, true);
	return type;
}

bool rq_prepared_unsettled(const struct rq *q)
{
	if (q->stmts == 0)
		return false;
	/* Entries retire in order: the oldest one carrying a statement decides. */
	for (uint32_t i = 0; i < q->len; i++) {
		const struct rq_entry *e = at(q, i);
		if (e->stmt)
			return (int32_t)(e->seq - q->batch_first_seq) < 0;
	}
	return false;
}
