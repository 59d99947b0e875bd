/*
 * stream.h - one socket: a TCP or unix-domain socket watched by a libuv poll
 * handle, with a reference-counted read buffer, batched writes and
 * backpressure.
 *
 * stream.c is the only code that reads from or writes to a connection's
 * socket (sluice calls neither uv_read_start nor uv_write: see struct stream).
 * Its owner (a client, a server, a cancel request) embeds struct stream and
 * gets its callbacks with the stream pointer; container_of finds the owner.
 *
 * Reading: bytes arrive in s->rbuf between rbuf->start and rbuf->end. The
 * read callback consumes what it can by advancing rbuf->start (directly or
 * with stream_consume) and leaves an incomplete message in place; the stream
 * keeps it and appends the next read after it. A buffer with nothing left to
 * consume is returned to the free list, so an idle connection holds none.
 *
 * Writing: stream_forward() queues a slice of another stream's read buffer
 * (no copy; the buffer is referenced until the write completes) and
 * stream_write() queues a copy of synthesized bytes. Queued bytes are sent
 * "after this round of I/O" when the loop's owner calls stream_ctx_flush
 * (the worker's check step, see worker.h), in order, with one writev when the
 * socket takes it all.
 *
 * The streams of one loop share a struct stream_ctx: the loop, the read
 * buffers' free list, the output batches' free list, the flush and linger
 * queues and the socket settings. The worker embeds it; the stream layer
 * knows nothing of the worker or of the connections that own streams.
 *
 * Closing: stream_close() starts an asynchronous close; close_cb runs from
 * the loop when the next round starts (never from inside the call, even for
 * a stream that never had a socket), and only then may the owner free
 * memory.
 */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <uv.h>

#include "sluice/buf.h"
#include "sluice/common.h"
#include "sluice/tls.h"

struct stream;

/* New bytes are in s->rbuf. The callback may close the stream. */
typedef void stream_read_cb(struct stream *s);
/* EOF (err == UV_EOF) or a read/write error; the stream is still open. */
typedef void stream_error_cb(struct stream *s, int err);
/* The write queue drained below the low-water mark. */
typedef void stream_drain_cb(struct stream *s);
/* The handle is closed: the owner may free the memory holding the stream. */
typedef void stream_close_cb(struct stream *s);
/*
 * stream_dial's outcome: 0 (connected), or an error: a libuv resolver error
 * (UV_EAI_*) while s->resolved is false, UV_ETIMEDOUT when the time given ran
 * out, else the connect's error. After an error the owner closes the stream.
 */
typedef void stream_connect_cb(struct stream *s, int status);

/* What an owner's streams call back; one constant table per kind of owner. */
struct stream_ops {
	stream_read_cb *read;
	stream_error_cb *error;
	stream_drain_cb *drain; /* may be NULL */
	stream_close_cb *close; /* may be NULL */
	stream_connect_cb *connect; /* streams made by stream_dial */
};

struct dial_req;
struct stream_aux;

/* The TLS handshake is done (status 0) or failed (UV_EPROTO: stream_tls_error says why). */
typedef void stream_tls_cb(struct stream *s, int status);

/* Unsent bytes above which a reader that feeds this stream stops reading. */
#define STREAM_HIGH_WATER (256 * 1024)
#define STREAM_IOV_MAX 64

/*
 * The socket is watched with a uv_poll_t, and the reads and writes are
 * stream.c's own: libuv's read path (its allocation callback, its loop
 * around read, its write requests) cost more instructions per transaction
 * than the calls they wrap. The poll handle is not in the stream but in
 * its context, one per descriptor number (struct stream_ctx's slots), kept
 * from one connection to the next that gets the same number: libuv 1.44's
 * uv_poll_init tries the descriptor in epoll (an add and a remove) and sets
 * it non-blocking (an ioctl), three system calls per connection that a
 * handle made once per number pays once.
 */
struct stream {
	const struct stream_ops *ops; /* the owner's callbacks, given to stream_init */
	struct stream_ctx *ctx;
	struct buf *rbuf;

	/* Output queued in this round and not yet handed to the kernel. */
	struct stream_out *out; /* NULL when nothing is pending: idle streams hold none */
	/*
	 * 32 bits each, 8 bytes less in every client: queue_slice flushes
	 * before pending would pass UINT32_MAX, and flush_out fails a stream
	 * whose write queue would (backpressure keeps it near
	 * STREAM_HIGH_WATER long before).
	 */
	uint32_t pending; /* bytes in out */
	uint32_t queued; /* bytes the socket did not take yet (aux->wq), sent when it is writable */
	int fd; /* the socket, -1 before there is one and after the close */

	/*
	 * The flags as bits, together: a stream is in every client's and
	 * server's memory. Only the loop's thread touches them.
	 */
	bool is_pipe : 1;
	bool want_read : 1; /* the owner wants to read */
	bool reading : 1; /* the owner reads: wanted, not paused, not suspended, not closing */
	bool paused : 1; /* backpressure from the peer: read stopped */
	bool suspended : 1; /* the console's SUSPEND: read stopped until stream_suspend(s, false) */
	bool closing : 1;
	bool eof : 1; /* the peer closed its side, or a read failed: nothing more is read */
	bool lingering : 1; /* closing: half-closed, discarding input until the peer closes */
	bool in_flush_queue : 1;
	bool dialing : 1; /* stream_dial: in ctx->dial_queue until ops->connect has run */
	bool connecting : 1; /* the socket's connect is under way: the poll waits for writable */
	bool resolved : 1; /* the address is known: a failure is the connect's */
	bool tls_handshaking : 1;
	bool tls_failed : 1; /* a write failed: reported at the next flush */
	bool in_tls_ready : 1; /* in ctx->tls_ready: the engine holds input for a resumed reader */
	bool read_batched : 1; /* io_uring: readable, its read waits for stream_ctx_read_batch */
	bool held_input : 1; /* io_uring: a batched read came in while the owner did not read */
	bool shut_pending : 1; /* lingering: shut the write side down once aux->wq is sent */
	bool close_started : 1; /* finish_close has run: the close callback follows */
	/*
	 * TLS (stream_start_tls, stream_give_tls): bytes on the socket are the
	 * ciphertext of the engine, aux->tls (stream_tls). A bit here, the
	 * engine in the side allocation: 8 bytes less in every client in the
	 * clear, and the relay's "is it TLS?" reads the flags it reads anyway.
	 */
	bool tls : 1;
	uint8_t poll_events; /* what the poll handle of fd watches now (UV_READABLE, UV_WRITABLE) */
	TAILQ_ENTRY(stream) flush_link;

	/*
	 * What only some streams need, and only for a while (dialing, TLS,
	 * lingering, writes the socket did not take): allocated at the first
	 * need, freed at the close. NULL for an idle client in the clear.
	 */
	struct stream_aux *aux;
};

/* See struct stream's aux. */
struct stream_aux {
	/* stream_dial, while dialing */
	struct dial_req *dial; /* the name being resolved, if it is */
	int dial_error; /* to report at the next tick, or when the socket is writable */
	uint64_t dial_deadline; /* uv_now */
	TAILQ_ENTRY(stream) dial_link;
	/* while tls is set */
	struct tls_conn *tls; /* the engine */
	stream_tls_cb *tls_cb;
	TAILQ_ENTRY(stream) tls_link; /* in ctx->tls_ready (also a plaintext stream's held_input) */
	/* plaintext written during the handshake, encrypted once it is done */
	uint8_t *tls_early;
	size_t tls_early_len;
	/* lingering */
	uint64_t linger_since; /* uv_now */
	/* batches the socket did not take, oldest first (next_free links them) */
	struct stream_out *wq, *wq_tail;
};

TAILQ_HEAD(stream_list, stream);

/* What sockets get once they exist (accepted or connected): tcp_keepalive and friends. */
struct stream_tcp_options {
	bool keepalive;
	int keepidle, keepintvl, keepcnt; /* seconds / count; 0 leaves the kernel's */
	int user_timeout; /* ms; 0 leaves the kernel's */
	int defer_accept; /* listening sockets: TCP_DEFER_ACCEPT seconds; 0 off */
};

/* What the streams of one loop share (see above). */
struct stream_ctx {
	uv_loop_t *loop;
	struct buf_pool bufs; /* read buffers */
	struct stream_out *out_free; /* free list of output batches */
	int out_free_count;
	struct stream_list flush_queue; /* output queued this round */
	struct stream_list
		linger_queue; /* closing streams waiting for the peer's close, oldest first */
	struct stream_list dial_queue; /* streams connecting (stream_dial) */
	struct stream_list
		tls_ready; /* resumed readers with input held: a TLS engine's, or held_input */
	/*
	 * io_uring (stream_ctx_use_uring): the ring and its batch arrays, NULL
	 * without. The readable streams of a round wait in it for
	 * stream_ctx_read_batch; the round's writes go in one submission.
	 */
	struct stream_uring *uring;
	uint8_t *cipher_in; /* where TLS streams read ciphertext: fed to their engine at once */
	/*
	 * Where stream_write copies synthesized bytes, shared by the streams
	 * of the loop (the slices hold references): one buffer rather than a
	 * pointer in every stream. Rewound when nobody else holds it.
	 */
	struct buf *stage;
	uint32_t max_packet_size; /* the largest message a new stream buffers whole */
	struct stream_tcp_options tcp;
	/*
	 * The poll handles, one per descriptor number, in blocks of
	 * STREAM_SLOT_BLOCK made at the first use of a number in the block.
	 * A handle is made (uv_poll_init) the first time its number is
	 * watched, started and stopped by the streams that have that number,
	 * and closed by stream_ctx_close. Its data field points to the stream
	 * that has the number now, NULL when none has.
	 */
	struct stream_slot_block **slots;
	size_t slot_blocks; /* entries of slots */
	/*
	 * Closed streams whose owners hear it (close callback) when the next
	 * round starts (the reaper, an idle handle made at the first close),
	 * not from inside stream_close: the job uv_close did when each
	 * stream had a handle of its own.
	 */
	struct stream_list reap_queue;
	uv_idle_t reaper;
	bool reaper_made;
	bool closed; /* stream_ctx_close has run */
	bool handles_closed; /* and the handles are closing: a later close takes a handle of its own */
};

#define STREAM_SLOT_SHIFT 6
#define STREAM_SLOT_BLOCK (1 << STREAM_SLOT_SHIFT)

/* STREAM_SLOT_BLOCK poll handles for consecutive descriptor numbers. */
struct stream_slot_block {
	uint64_t made; /* bit i: polls[i] is initialised */
	uv_poll_t polls[STREAM_SLOT_BLOCK];
};

/*
 * A batch of output slices. A stream takes one from the worker's free list
 * when it queues its first slice of a loop iteration; at flush the batch goes
 * back, or, if the socket did not take everything, joins the stream's write
 * queue (aux->wq), holding the buffer references until the rest is sent.
 */
struct stream_out {
	int n;
	int first; /* slices before this one are written */
	uv_buf_t iov[STREAM_IOV_MAX];
	struct buf *bufs[STREAM_IOV_MAX];
	struct stream_out *next_free; /* in the free list, or the next batch of a write queue */
};

/* Sets up ctx on loop, keeping up to buf_free_max read buffers for reuse. */
void stream_ctx_init(struct stream_ctx *ctx, uv_loop_t *loop, int buf_free_max);
/*
 * Closes the handles ctx keeps (the poll handles, the reaper), once every
 * stream of ctx is closed; owners of streams closed just before still hear
 * first. The loop must then run until they are closed, before
 * stream_ctx_deinit and uv_loop_close.
 */
void stream_ctx_close(struct stream_ctx *ctx);
/* Frees the free lists and the handles' memory; after stream_ctx_close and the loop's run. */
void stream_ctx_deinit(struct stream_ctx *ctx);
/*
 * Socket reads and writes through io_uring from now on: the reads of the
 * streams found readable in a round are made together, in one system call,
 * by stream_ctx_read_batch, and stream_ctx_flush hands the round's writes
 * to the kernel in one more. libuv's epoll still says which sockets are
 * ready; every operation is non-blocking (MSG_DONTWAIT) and completes
 * within its submission, so the results are those read and writev would
 * give. A round with one read or one write makes the plain call. 0, or a
 * libuv error: UV_ENOSYS built without liburing, else the kernel's refusal
 * (io_uring_setup: disabled by sysctl, or by a container's seccomp filter).
 */
int stream_ctx_use_uring(struct stream_ctx *ctx);
/* Whether this build has io_uring, and liburing's version ("" without). */
bool stream_uring_built(void);
/*
 * The loop owner's check step, first: the reads of the round's readable
 * streams (io_uring only; nothing to do otherwise), each delivered to its
 * owner as the poll would have. Also called, before it acts, by any other
 * callback of the poll whose effect must follow the reads the kernel
 * reported before it (an accept, another worker's message): the round's
 * order of events stays the kernel's.
 */
void stream_ctx_read_batch(struct stream_ctx *ctx);
/*
 * The loop owner's check step: hands resumed TLS readers the input their
 * engine held, then sends the output every stream queued this round.
 */
void stream_ctx_flush(struct stream_ctx *ctx);
/*
 * The loop owner's tick: closes lingering streams older than linger_ms and
 * reports connects whose time ran out (UV_ETIMEDOUT).
 */
void stream_ctx_tick(struct stream_ctx *ctx, uint64_t now, uint64_t linger_ms);

/*
 * Initialises s as a TCP or unix-socket stream of ctx, calling back ops; it
 * has no socket until stream_adopt. Cannot fail today (0).
 */
int stream_init(struct stream_ctx *ctx, struct stream *s, bool pipe,
		const struct stream_ops *ops) WUR;
/*
 * Makes the accepted socket fd s's connection, after stream_init; fd is
 * s's now, even on failure. fd must be non-blocking already (accept4's
 * SOCK_NONBLOCK, or a copy of such a socket): the poll handle of a number
 * already watched once does not set it again. fd keeps the options it has:
 * an accepted socket inherits its listener's (stream_tune_socket).
 */
int stream_adopt(struct stream *s, int fd) WUR;
/*
 * Gives the TCP socket fd TCP_NODELAY and o's keepalive and user timeout (0
 * leaves the kernel's value). On a listening socket this is also what every
 * socket it accepts starts with (Linux copies them): clients' sockets then
 * need no setsockopt of their own. Failures are harmless and not reported.
 */
void stream_tune_socket(int fd, const struct stream_tcp_options *o);
/*
 * "1.2.3.4:5678" or "::1:5678" of sa (AF_INET or AF_INET6, the port after
 * the last colon; "unix" for AF_UNIX, "?" otherwise), as stream_peer_name
 * writes it.
 */
void stream_format_address(const struct sockaddr *sa, char *out, size_t len);

/*
 * A peer's address in 20 bytes instead of its text: every client keeps one
 * for its whole life, and the text is wanted only for a log line or a SHOW
 * row. Printed, it reads exactly as stream_format_address prints the
 * sockaddr it was made from (uv_ip6_name prints no scope id, so none is
 * kept).
 */
struct stream_addr {
	uint8_t family; /* AF_INET, AF_INET6, AF_UNIX; AF_UNSPEC for anything else ("?") */
	uint16_t port; /* host order */
	uint8_t ip[16]; /* the first 4 for AF_INET */
};

/* Room for the longest text: an IPv6 address, ':', a port and the NUL. */
#define STREAM_ADDR_TEXT_MAX (INET6_ADDRSTRLEN + sizeof(":65535"))

/* Keeps what stream_addr_format needs of sa; sa NULL makes an unknown address ("?"). */
void stream_addr_set(struct stream_addr *a, const struct sockaddr *sa);
/* Writes a's text into out (STREAM_ADDR_TEXT_MAX bytes hold any) and returns out. */
char *stream_addr_format(const struct stream_addr *a, char *out, size_t len);
/*
 * The one way sluice connects out (servers, cancel requests, readiness
 * probes): initialises s as stream_init does and connects it to a PostgreSQL
 * address. host is a name or numeric address (resolved on libuv's thread
 * pool unless numeric), or, starting with '/', a unix socket: the directory
 * holding PostgreSQL's ".s.PGSQL.<port>", or the socket itself when port is
 * 0. cb runs once, from the loop, never from within this call, unless s is
 * closed first; timeout_ms (0: none) bounds resolving and connecting
 * together, to the owner's tick. Non-zero only if s could not be
 * initialised (it is then not open).
 */
int stream_dial(struct stream_ctx *ctx, struct stream *s, const struct stream_ops *ops,
		const char *host, int port, uint64_t timeout_ms) WUR;

/*
 * Makes s a TLS stream from now on, with an engine on ctx (host: see
 * tls_conn_new): bytes already read and not consumed are its first
 * ciphertext (a ClientHello that came without an SSLRequest), and reading
 * starts. Whatever is queued already is sent in the clear first (the 'S'
 * that answers an SSLRequest). cb runs once, from the loop's check step or
 * a read, never from inside this call, when the handshake is done or has
 * failed; until then the owner reads nothing, and what it writes waits.
 * After a failure an alert may still be sent: close with stream_close_linger.
 */
void stream_start_tls(struct stream *s, struct tls_ctx *ctx, const char *host, stream_tls_cb *cb);
/* The TLS engine of s, NULL in the clear. Borrowed: it lives as long as the stream has it. */
static inline struct tls_conn *stream_tls(const struct stream *s)
{
	return s->tls ? s->aux->tls : NULL;
}
/* Why the TLS handshake or a TLS read or write failed. */
const char *stream_tls_error(const struct stream *s);
/*
 * A TLS session moving with its socket to another loop of the process (a
 * server moving between workers): stream_take_tls takes the engine out of
 * s, which must be quiet (handshake done, nothing buffered either way), so
 * that closing s then sends nothing; NULL when it is not quiet or not TLS.
 * stream_give_tls puts it in a stream that has adopted the socket's copy.
 */
struct tls_conn *stream_take_tls(struct stream *s);
void stream_give_tls(struct stream *s, struct tls_conn *t);
/* PgBouncer's tls column ("TLSv1.3/TLS_AES_256_GCM_SHA384"), or "" in the clear. */
void stream_tls_describe(const struct stream *s, char *out, size_t len);

/* "1.2.3.4:5678" of the peer, or "unix". */
void stream_peer_name(struct stream *s, char *out, size_t len);
/* The same for this end of the connection. */
void stream_local_name(struct stream *s, char *out, size_t len);
/*
 * The address of this end (local) or of the peer of a TCP stream, as host
 * (IPv6 without brackets) and port. false for a pipe or when the socket
 * cannot tell (host and port are then left as they were).
 */
bool stream_address(const struct stream *s, bool local, char *host, size_t len, int *port);
/* The peer's address of a TCP stream as a sockaddr; false for a pipe or when unknown. */
bool stream_peer_sockaddr(const struct stream *s, struct sockaddr_storage *ss);
/*
 * The peer's process credentials on a unix socket (SO_PEERCRED). false for
 * TCP or when the kernel cannot tell.
 */
bool stream_peer_cred(const struct stream *s, unsigned *uid, int *pid);

void stream_read_start(struct stream *s);
/*
 * Reads what has already arrived now rather than after the next poll: a
 * client's first message is usually waiting by the time its connection is
 * accepted, and reading it at once saves the loop a wake-up per connection.
 * Calls read_cb or error_cb as the loop would. Only while reading.
 */
void stream_read_now(struct stream *s);
void stream_read_stop(struct stream *s);
/* Backpressure: stop/resume reading without changing want_read. */
void stream_pause(struct stream *s);
/* stream_resume's work, for a paused stream. */
void stream_unpause(struct stream *s);
static inline void stream_resume(struct stream *s)
{
	/* Nearly every call (a drain after each flush) finds nothing paused: no call then. */
	if (s->paused)
		stream_unpause(s);
}
/*
 * The console's SUSPEND (on) and its end (off): reading stops, whatever the
 * owner and backpressure want, until it is turned off again; writing goes
 * on, so queued output still drains.
 */
void stream_suspend(struct stream *s, bool on);
/* The socket's file descriptor, or -1 when the handle has none (yet). Borrowed: never close it. */
int stream_fd(const struct stream *s);
/*
 * SHOW FDS: sends p[0..len) on the unix-socket stream s now, with a copy of
 * fd attached by SCM_RIGHTS when fd >= 0, waiting (poll) up to timeout_ms
 * for the socket to take it all. Nothing else may be unsent: output queued
 * on s is flushed first, and UV_EBUSY is returned (nothing sent) if some of
 * it is still in flight. UV_ENOTSUP for TCP or TLS streams, UV_ETIMEDOUT,
 * or the send's error; after any error but UV_EBUSY and UV_ENOTSUP part of
 * p may be sent, and the owner closes the stream.
 */
int stream_send_fd(struct stream *s, const void *p, size_t len, int fd, uint64_t timeout_ms) WUR;

/*
 * The other end of stream_send_fd, on a plain socket sock (not a stream's:
 * an online restart's link to its predecessor, takeover.h): one recvmsg of
 * up to len bytes into p, blocking or not as sock is. A descriptor that
 * came along is stored in *fd when that is -1 (and closed when *fd holds
 * one already: each message carries one at most). Bytes read, 0 at EOF,
 * or a negative libuv error (UV_EAGAIN; UV_EMSGSIZE when descriptors
 * were cut off).
 */
ssize_t stream_recv_fd(int sock, void *p, size_t len, int *fd) WUR;
/*
 * Puts p[0..len) into s's read buffer as if just read (after what is there):
 * bytes a client had sent to the process it was handed over from.
 */
void stream_preload(struct stream *s, const void *p, size_t len);

static inline void stream_consume(struct stream *s, size_t n)
{
	s->rbuf->start += (uint32_t)n;
}
static inline size_t stream_avail(const struct stream *s)
{
	return s->rbuf ? buf_avail(s->rbuf) : 0;
}
static inline const uint8_t *stream_data(const struct stream *s)
{
	return s->rbuf->data + s->rbuf->start;
}
/*
 * Makes sure the read buffer can hold a whole message of len bytes starting
 * at rbuf->start (for messages that must be inspected whole). Copies the
 * unconsumed bytes into a larger buffer when needed.
 */
void stream_reserve(struct stream *s, size_t len);

/*
 * Replaces the first n unconsumed bytes of s's read buffer with p[0..len),
 * as if the peer had sent those instead (a client message sluice rewrites
 * before relaying it: session_pinning = refuse). Only unconsumed bytes
 * move, so slices already queued from the buffer are untouched.
 */
void stream_replace_front(struct stream *s, size_t n, const void *p, size_t len);

/* stream_forward's general case: a new slice, or a TLS stream. */
void stream_forward_slice(struct stream *dst, struct stream *src, size_t len);
/*
 * Queues len bytes of src's read buffer starting at rbuf->start, then
 * consumes them. Inline when the bytes continue the last slice queued on dst
 * (the next message of a pipeline or of a result): its iovec grows.
 */
static inline void stream_forward(struct stream *dst, struct stream *src, size_t len)
{
	struct buf *b = src->rbuf;
	struct stream_out *o = dst->out;
	const uint8_t *p = b->data + b->start;
	if (o && o->n > 0 && !dst->tls && !dst->closing && o->bufs[o->n - 1] == b &&
	    (const uint8_t *)o->iov[o->n - 1].base + o->iov[o->n - 1].len == p &&
	    len <= UINT32_MAX - dst->pending) {
		o->iov[o->n - 1].len += len;
		dst->pending += (uint32_t)len;
		b->start += (uint32_t)len;
		return;
	}
	stream_forward_slice(dst, src, len);
}
/* Queues a copy of p[0..len). */
void stream_write(struct stream *dst, const void *p, size_t len);
/* Sends everything queued on s now (normally stream_ctx_flush does it). */
void stream_flush(struct stream *s);
/* Bytes queued or in flight (for backpressure). */
static inline size_t stream_unsent(const struct stream *s)
{
	/* A TLS stream's ciphertext waits in its engine until the flush: it counts too. */
	return (size_t)s->pending + s->queued + (s->tls ? tls_conn_pending(s->aux->tls) : 0);
}

/*
 * Starts closing: queued bytes are tried once without blocking (an
 * ErrorResponse usually fits the socket buffer), the rest is dropped, reading
 * stops and close_cb follows from the loop. Safe to call more than once.
 */
void stream_close(struct stream *s);
/*
 * Like stream_close, for ending a connection with an error the peer must be
 * able to read: queued bytes are sent, the write side is shut down, and input
 * is discarded until the peer closes or the linger time runs out, so no reset
 * destroys the error. close_cb follows as for stream_close.
 */
void stream_close_linger(struct stream *s);
