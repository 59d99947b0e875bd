/*
 * buf.c - reference-counted I/O buffers with a per-worker free list, and the
 * growable buf_out used to build synthesized messages.
 *
 * The free list exists so that the relay path allocates nothing per message:
 * a buffer is taken when bytes arrive and returned when the last write that
 * references it completes. Oversized buffers (for a message that must be
 * inspected whole and does not fit BUF_SIZE) are one-offs and never pooled.
 */
#include "sluice/buf.h"

#include <stdlib.h>
#include <string.h>

void buf_pool_init(struct buf_pool *bp, size_t max_free)
{
	SLIST_INIT(&bp->free);
	bp->free_count = 0;
	bp->max_free = max_free;
	bp->in_use = 0;
}

void buf_pool_deinit(struct buf_pool *bp)
{
	struct buf *b;
	while ((b = SLIST_FIRST(&bp->free)) != NULL) {
		SLIST_REMOVE_HEAD(&bp->free, free_link);
		free(b);
	}
	bp->free_count = 0;
}

struct buf *buf_get(struct buf_pool *bp, size_t min_cap)
{
	struct buf *b;
	if (min_cap <= BUF_SIZE && bp) {
		b = SLIST_FIRST(&bp->free);
		if (b) {
			SLIST_REMOVE_HEAD(&bp->free, free_link);
			bp->free_count--;
		} else {
			b = xmalloc(sizeof(*b) + BUF_SIZE);
			b->cap = BUF_SIZE;
		}
		b->pool = bp;
		bp->in_use++;
	} else {
		b = xmalloc(sizeof(*b) + min_cap);
		b->cap = (uint32_t)min_cap;
		b->pool = NULL;
	}
	b->refs = 1;
	b->start = b->end = 0;
	return b;
}

void buf_release(struct buf *b)
{
	struct buf_pool *bp = b->pool;
	if (!bp) {
		free(b);
		return;
	}
	bp->in_use--;
	if (bp->free_count >= bp->max_free) {
		free(b);
		return;
	}
	SLIST_INSERT_HEAD(&bp->free, b, free_link);
	bp->free_count++;
}

void buf_out_deinit(struct buf_out *o)
{
	free(o->data);
	buf_out_init(o);
}

void buf_out_reserve(struct buf_out *o, size_t extra)
{
	if (o->len + extra <= o->cap)
		return;
	size_t cap = o->cap ? o->cap : 256;
	while (cap < o->len + extra)
		cap *= 2;
	o->data = xrealloc(o->data, cap);
	o->cap = cap;
}

void buf_out_put(struct buf_out *o, const void *p, size_t n)
{
	buf_out_reserve(o, n);
	if (n)
		memcpy(o->data + o->len, p, n);
	o->len += n;
}

void buf_out_put_u8(struct buf_out *o, uint8_t v)
{
	buf_out_reserve(o, 1);
	o->data[o->len++] = v;
}

void buf_out_put_be16(struct buf_out *o, uint16_t v)
{
	buf_out_reserve(o, 2);
	put_be16(o->data + o->len, v);
	o->len += 2;
}

void buf_out_put_be32(struct buf_out *o, uint32_t v)
{
	buf_out_reserve(o, 4);
	put_be32(o->data + o->len, v);
	o->len += 4;
}

void buf_out_put_cstr(struct buf_out *o, const char *s)
{
	buf_out_put(o, s, strlen(s) + 1);
}
