/*
 * stream_internal.h - what stream.c and stream_uring.c share, and nothing
 * else includes: the io_uring engine's entry points, called by stream.c,
 * and the stream's own steps (stream.c's static functions, wrapped) with
 * which a batch ends as a plain call would.
 */
#ifndef SLUICE_STREAM_INTERNAL_H
#define SLUICE_STREAM_INTERNAL_H

#include "sluice/stream.h"

/* ---- stream_uring.c, for stream.c ---- */

/* Queues a readable stream in the clear for stream_ctx_read_batch (ctx->uring is set). */
void stream_uring_read_later(struct stream *s);
/* stream_ctx_flush's step for the streams in the clear (ctx->uring is set); the rest stay queued. */
void stream_uring_flush(struct stream_ctx *ctx);
/* Frees ctx's ring, if it has one (stream_ctx_deinit). */
void stream_uring_free(struct stream_ctx *ctx);

/* ---- stream.c, for stream_uring.c ---- */

/* Room at the end of s's read buffer for the next bytes (a fresh or moved buffer if needed). */
struct buf *stream_x_rbuf_room(struct stream *s);
/* One read(2) into s's read buffer, handed to the owner. */
void stream_x_read_plain(struct stream *s);
/*
 * After a read whose bytes are counted in: the owner's read callback if
 * deliver_it, then the empty read buffer goes back. nread < 0: the read's
 * error or UV_EOF for the owner instead.
 */
void stream_x_read_done(struct stream *s, bool deliver_it, ssize_t nread);
/* Reads on while the reads fill the space offered (a full read: more is likely waiting). */
void stream_x_read_more(struct stream *s);
/* One writev: bytes written, UV_EAGAIN, or another error. */
int stream_x_try_write(struct stream *s, const uv_buf_t *iov, int n);
/* A write's result applied to batch o, off the stream: 1 all sent, 0 a rest queued, or an error. */
int stream_x_flush_settle(struct stream *s, struct stream_out *o, int w);
/* The owner hears what stream_x_flush_settle decided (drain, or the error). */
void stream_x_flush_tell(struct stream *s, int settled);

#endif
