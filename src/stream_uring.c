/*
 * stream_uring.c - the stream layer's reads and writes through io_uring
 * (stream_ctx_use_uring, the io_uring setting; stream.h).
 *
 * epoll (libuv's loop) still says which sockets are ready; the calls are
 * made in batches. A readable stream in the clear waits in the context's
 * list until the check step (stream_ctx_read_batch), where the round's
 * reads go to the kernel in one io_uring_enter, and stream_ctx_flush hands
 * the round's writes over in one more (stream_uring_flush). On this
 * machine's loopback TCP a write and a read cost some 7 us of CPU
 * together; in batches of 8 or more they cost about 15% less, and a batch
 * of one would cost 12% more (test/bench/syscall_batch.c, RESULTS.md), so
 * a round with a single read or write makes the plain call.
 *
 * Every operation carries MSG_DONTWAIT: io_uring then completes it within
 * the submission and never arms a poll of its own, so each result is what
 * read or writev would have returned at that moment. The results of a
 * batch are applied to all its streams (bytes counted in, remainders
 * queued) before any owner hears of one, so no callback sees a stream with
 * a half-applied result; a stream closed by an earlier callback of the
 * batch hears nothing more; input read for a stream whose owner stopped
 * reading meanwhile is held (held_input) and served when it reads again.
 *
 * The stream's own steps (its read buffer, delivery, the settling of a
 * write) are stream.c's, reached through stream_internal.h.
 */
#include "sluice/stream.h"
#include "stream_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "sluice/log.h"
#include "sluice_version.h"
#if SLUICE_WITH_URING
#include <liburing.h>
#endif

#if SLUICE_WITH_URING

/* Operations per submission (and the ring's size): a larger round takes several. */
#define URING_BATCH 256

/* One operation of a batch: its stream and what it needs when the result comes. */
struct uring_op {
	struct stream *s;
	struct stream_out *o; /* a write's batch */
	struct msghdr msg; /* a write's */
	uint32_t space; /* a read's: the room offered */
	int res;
};

struct stream_uring {
	struct io_uring ring;
	struct stream **reads; /* readable this round (read_later), in the poll's order */
	size_t nreads, reads_cap;
	struct uring_op ops[URING_BATCH];
};

bool stream_uring_built(void)
{
	return true;
}

int stream_ctx_use_uring(struct stream_ctx *ctx)
{
	if (ctx->uring)
		return 0;
	struct stream_uring *u = xcalloc(1, sizeof(*u));
	/*
	 * SUBMIT_ALL: one failed operation does not stop those after it.
	 * COOP_TASKRUN spares the kernel an interrupt per completion; kernels
	 * before 5.19 lack it, hence the retry without. Not SINGLE_ISSUER: the
	 * ring is made on the main thread, and used by the worker's.
	 */
	int rc = io_uring_queue_init(URING_BATCH, &u->ring,
				     IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN);
	if (rc == -EINVAL)
		rc = io_uring_queue_init(URING_BATCH, &u->ring, IORING_SETUP_SUBMIT_ALL);
	if (rc < 0) {
		free(u);
		return rc; /* a negative errno: libuv's errors are those on Linux */
	}
	ctx->uring = u;
	return 0;
}

/*
 * Submits the n operations prepared in the ring and gathers their results,
 * which MSG_DONTWAIT makes immediate, into ops[].res. Returns how many the
 * kernel took: the first ones, in order. Fewer than n (the kernel short of
 * memory), and io_uring is given up (uring_give_up), which drops the rest
 * unrun: the caller makes those the plain way. A taken operation whose
 * result cannot be had (never seen: each completes in its submission) is
 * cancelled with the ring and reads -ECANCELED: its stream fails, not the
 * process.
 */
static void uring_give_up(struct stream_ctx *ctx, int err);

static int uring_run(struct stream_ctx *ctx, struct stream_uring *u, int n)
{
	int taken = 0, done = 0, rc;
	for (int i = 0; i < n; i++)
		u->ops[i].res = -ECANCELED;
	do
		rc = io_uring_submit_and_wait(&u->ring, (unsigned)n);
	while (rc == -EINTR);
	if (rc > 0)
		taken = rc;
	while (done < taken) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		io_uring_for_each_cqe(&u->ring, head, cqe)
		{
			u->ops[cqe->user_data].res = cqe->res;
			seen++;
		}
		io_uring_cq_advance(&u->ring, seen);
		done += (int)seen;
		if (done == taken)
			break;
		do
			rc = io_uring_wait_cqe_nr(&u->ring, &cqe, (unsigned)(taken - done));
		while (rc == -EINTR);
		if (rc < 0)
			break;
	}
	if (taken < n || done < taken)
		uring_give_up(ctx, rc < 0 ? rc : 0);
	return taken;
}

/*
 * The kernel did not take a whole submission: io_uring is given up and the
 * plain calls go on. The operations it did not take are dropped with the
 * ring, unrun. The caller still holds u and frees it (uring_free_spent).
 */
static void uring_give_up(struct stream_ctx *ctx, int err)
{
	log_warning("io_uring: the kernel did not take a submission (%s); plain system calls "
		    "from now on",
		    err < 0 ? strerror(-err) : "some operations refused");
	io_uring_queue_exit(&ctx->uring->ring);
	ctx->uring = NULL;
}

static void uring_free_spent(struct stream_uring *u)
{
	free(u->reads);
	free(u);
}

void stream_uring_free(struct stream_ctx *ctx)
{
	struct stream_uring *u = ctx->uring;
	if (!u)
		return;
	io_uring_queue_exit(&u->ring);
	ctx->uring = NULL;
	uring_free_spent(u);
}

void stream_uring_read_later(struct stream *s)
{
	struct stream_uring *u = s->ctx->uring;
	if (s->read_batched)
		return;
	if (u->nreads == u->reads_cap) {
		u->reads_cap = u->reads_cap ? u->reads_cap * 2 : 64;
		u->reads = xrealloc(u->reads, u->reads_cap * sizeof(*u->reads));
	}
	u->reads[u->nreads++] = s;
	s->read_batched = true;
}

/* Whether a batched read still applies: the stream reads, in the clear, and is open. */
static inline bool read_wanted(const struct stream *s)
{
	return s->read_batched && s->reading && !s->tls && !s->eof && !s->closing && s->fd >= 0;
}

/* One batch of reads, u->ops[0..n): results applied to every stream first, then the owners hear. */
static void read_ops(struct stream_ctx *ctx, struct stream_uring *u, int n)
{
	for (int i = 0; i < n; i++) {
		struct stream *s = u->ops[i].s;
		struct buf *b = stream_x_rbuf_room(s);
		u->ops[i].space = buf_space(b);
		struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
		io_uring_prep_recv(sqe, s->fd, b->data + b->end, u->ops[i].space, MSG_DONTWAIT);
		sqe->user_data = (uint64_t)i;
	}
	/* Those the kernel did not take are not read: the poll reports them again. */
	for (int i = uring_run(ctx, u, n); i < n; i++)
		u->ops[i].res = -EAGAIN;
	/* Nothing runs between the submission and here: each read buffer is as it was given. */
	for (int i = 0; i < n; i++) {
		struct uring_op *op = &u->ops[i];
		op->s->read_batched = false;
		if (op->res > 0)
			op->s->rbuf->end += (uint32_t)op->res;
	}
	for (int i = 0; i < n; i++) {
		struct stream *s = u->ops[i].s;
		int res = u->ops[i].res;
		if (s->close_started || s->closing) {
			stream_x_read_done(s, false, 0); /* closed by an earlier owner's callback */
			continue;
		}
		if (res == -EAGAIN || res == -EWOULDBLOCK || res == -EINTR) {
			stream_x_read_done(s, false, 0);
			continue;
		}
		if (res <= 0) {
			stream_x_read_done(s, false, res == 0 ? UV_EOF : res);
			continue;
		}
		if (!s->reading) {
			s->held_input =
				true; /* served when the owner reads again (stream_ctx_flush) */
			continue;
		}
		/* An earlier owner may have taken it already (a client linked to a freed server). */
		stream_x_read_done(s, s->rbuf && s->rbuf->start < s->rbuf->end, 0);
		if ((uint32_t)res == u->ops[i].space)
			stream_x_read_more(s); /* it filled the space: more is likely waiting */
	}
}

void stream_ctx_read_batch(struct stream_ctx *ctx)
{
	struct stream_uring *u = ctx->uring;
	if (!u || u->nreads == 0)
		return;
	/*
	 * The list is taken off u: a read queued meanwhile (none should be,
	 * the poll is over) starts a list of its own for the next round.
	 */
	size_t total = u->nreads, cap = u->reads_cap;
	struct stream **list = u->reads;
	u->reads = NULL;
	u->nreads = u->reads_cap = 0;
	size_t i = 0;
	while (i < total && ctx->uring) {
		int n = 0;
		for (; i < total && n < URING_BATCH; i++) {
			struct stream *s = list[i];
			if (read_wanted(s))
				u->ops[n++].s = s;
			else
				s->read_batched = false;
		}
		if (n == 1) {
			/* One read: the plain call costs less than a submission. */
			u->ops[0].s->read_batched = false;
			stream_x_read_plain(u->ops[0].s);
		} else if (n > 1) {
			read_ops(ctx, u, n);
		}
	}
	/* Given up: the rest are read the plain way. */
	for (; i < total; i++) {
		struct stream *s = list[i];
		bool wanted = read_wanted(s);
		s->read_batched = false;
		if (wanted)
			stream_x_read_plain(s);
	}
	if (!ctx->uring) {
		free(list);
		uring_free_spent(u);
		return;
	}
	if (u->reads) {
		free(list);
		return;
	}
	u->reads = list; /* kept for the next round */
	u->reads_cap = cap;
}

/* Whether s's output can go in a write batch: in the clear, nothing queued before it, connected. */
static inline bool write_batchable(const struct stream *s)
{
	return s->out && !s->tls && !s->closing && s->queued == 0 && !s->dialing && s->fd >= 0;
}

/* One batch of writes, u->ops[0..n) (their outputs taken off the streams): settled, then told. */
static void write_ops(struct stream_ctx *ctx, struct stream_uring *u, int n)
{
	for (int i = 0; i < n; i++) {
		struct uring_op *op = &u->ops[i];
		struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
		/* One slice (a forwarded message, nearly always): a send, which copies no msghdr in. */
		if (op->o->n == 1) {
			io_uring_prep_send(sqe, op->s->fd, op->o->iov[0].base, op->o->iov[0].len,
					   MSG_DONTWAIT | MSG_NOSIGNAL);
		} else {
			op->msg = (struct msghdr){ .msg_iov = (struct iovec *)op->o->iov,
						   .msg_iovlen = (size_t)op->o->n };
			io_uring_prep_sendmsg(sqe, op->s->fd, &op->msg,
					      MSG_DONTWAIT | MSG_NOSIGNAL);
		}
		sqe->user_data = (uint64_t)i;
	}
	/* Those the kernel did not take are not written: the plain call. */
	for (int i = uring_run(ctx, u, n); i < n; i++)
		u->ops[i].res = stream_x_try_write(u->ops[i].s, u->ops[i].o->iov, u->ops[i].o->n);
	for (int i = 0; i < n; i++) {
		struct uring_op *op = &u->ops[i];
		int w = op->res;
		if (w < 0)
			w = (w == -EAGAIN || w == -EWOULDBLOCK || w == -ENOBUFS) ? UV_EAGAIN : w;
		op->res = stream_x_flush_settle(op->s, op->o, w);
	}
	for (int i = 0; i < n; i++)
		stream_x_flush_tell(u->ops[i].s, u->ops[i].res);
}

/*
 * stream_ctx_flush's output step with io_uring: the streams in the clear go
 * together; the rest (TLS, a write queue, a dial) stay in the queue for the
 * plain step after it.
 */
void stream_uring_flush(struct stream_ctx *ctx)
{
	struct stream_uring *u;
	while ((u = ctx->uring) != NULL) {
		int n = 0;
		struct stream *s, *next;
		for (s = TAILQ_FIRST(&ctx->flush_queue); s && n < URING_BATCH; s = next) {
			next = TAILQ_NEXT(s, flush_link);
			if (!write_batchable(s))
				continue;
			TAILQ_REMOVE(&ctx->flush_queue, s, flush_link);
			s->in_flush_queue = false;
			u->ops[n].s = s;
			u->ops[n].o = s->out;
			s->out = NULL;
			s->pending = 0;
			n++;
		}
		if (n == 0)
			return;
		if (n == 1) {
			/* One write: the plain call costs less than a submission. */
			struct stream *one = u->ops[0].s;
			int w = stream_x_try_write(one, u->ops[0].o->iov, u->ops[0].o->n);
			stream_x_flush_tell(one, stream_x_flush_settle(one, u->ops[0].o, w));
			continue;
		}
		write_ops(ctx, u, n);
		if (!ctx->uring)
			uring_free_spent(u);
	}
}

#else /* !SLUICE_WITH_URING */

bool stream_uring_built(void)
{
	return false;
}

int stream_ctx_use_uring(struct stream_ctx *ctx)
{
	(void)ctx;
	return UV_ENOSYS;
}

void stream_ctx_read_batch(struct stream_ctx *ctx)
{
	(void)ctx;
}

void stream_uring_free(struct stream_ctx *ctx)
{
	(void)ctx;
}

void stream_uring_read_later(struct stream *s)
{
	stream_x_read_plain(s); /* unreachable: ctx->uring is always NULL */
}

void stream_uring_flush(struct stream_ctx *ctx)
{
	(void)ctx;
}

#endif /* SLUICE_WITH_URING */
