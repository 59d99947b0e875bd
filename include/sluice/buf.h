/*
 * buf.h - byte buffers for the data path and for building messages.
 *
 * struct buf is a fixed-capacity, reference-counted I/O buffer. A stream reads
 * into one; forwarded bytes are written to the peer straight from it (each
 * pending write holds a reference), so a buffer goes back to its free list
 * only when the reader is done with it and every write from it has completed.
 * Free lists are per worker (struct buf_pool): no locking, no global state.
 *
 * struct buf_out is a growable heap byte string used to build messages that
 * sluice synthesizes (errors, auth requests, queries it sends itself). It is
 * never on the relay path.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "sluice/common.h"

/* Size of pooled buffers: large enough for most result batches. */
#define BUF_SIZE (16 * 1024)

struct buf_pool;

struct buf {
	struct buf_pool *pool; /* NULL for an oversized one-off buffer */
	uint32_t refs;
	uint32_t cap;
	uint32_t start; /* first unconsumed byte */
	uint32_t end; /* one past the last valid byte */
	SLIST_ENTRY(buf) free_link;
	uint8_t data[];
};

struct buf_pool {
	SLIST_HEAD(, buf) free;
	size_t free_count;
	size_t max_free; /* buffers kept beyond this are released to malloc */
	size_t in_use; /* buffers handed out and not yet returned */
};

void buf_pool_init(struct buf_pool *bp, size_t max_free);
/* Releases the free list; buffers still in use must be unreferenced first. */
void buf_pool_deinit(struct buf_pool *bp);

/*
 * A buffer with at least min_cap bytes and one reference owned by the caller.
 * min_cap <= BUF_SIZE comes from the free list; larger ones are allocated
 * exactly and freed on the last unref.
 */
struct buf *buf_get(struct buf_pool *bp, size_t min_cap);
static inline void buf_ref(struct buf *b)
{
	b->refs++;
}
/* buf_unref's work once the last reference went: back to the free list, or freed. */
void buf_release(struct buf *b);
/* Inline: a relayed message drops a reference a few times per transaction. */
static inline void buf_unref(struct buf *b)
{
	if (--b->refs == 0)
		buf_release(b);
}
static inline uint32_t buf_avail(const struct buf *b)
{
	return b->end - b->start;
}
static inline uint32_t buf_space(const struct buf *b)
{
	return b->cap - b->end;
}

struct buf_out {
	uint8_t *data;
	size_t len;
	size_t cap;
};

static inline void buf_out_init(struct buf_out *o)
{
	o->data = NULL;
	o->len = o->cap = 0;
}
void buf_out_deinit(struct buf_out *o);
static inline void buf_out_reset(struct buf_out *o)
{
	o->len = 0;
}
void buf_out_reserve(struct buf_out *o, size_t extra);
void buf_out_put(struct buf_out *o, const void *p, size_t n);
void buf_out_put_u8(struct buf_out *o, uint8_t v);
void buf_out_put_be16(struct buf_out *o, uint16_t v);
void buf_out_put_be32(struct buf_out *o, uint32_t v);
/* Appends s including its terminating NUL, as the protocol's String type. */
void buf_out_put_cstr(struct buf_out *o, const char *s);
