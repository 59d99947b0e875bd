/*
 * stream.c - the I/O of every connection's socket (see stream.h).
 *
 * This is the only file that reads from or writes to a connection's socket.
 * libuv only watches it (a uv_poll_t: readable, writable), and the calls are
 * ours: one read per readable event into the pooled buffer (a second only
 * when the first filled it), one writev per stream and loop iteration.
 * Writes are batched per loop iteration: the owner queues slices during its
 * read callback, and the loop owner's check step calls stream_ctx_flush,
 * which tries one non-blocking writev per stream (try_write); only a
 * remainder waits in the stream's write queue, sent when the socket is
 * writable again. A batch in the write queue holds a reference on every
 * buffer it points into until its last byte is sent.
 *
 * The poll watches only what the stream wants (poll_sync): reading while
 * the owner reads, writing while something waits or a connect is under way.
 * Every change of what it watches costs epoll_ctl calls (uv_poll_start
 * removes the socket from epoll and adds it again), so it changes only when
 * the wish does, never per message.
 *
 * The poll handles belong to the context, one per descriptor number
 * (slots), so that a connection whose number was watched before pays no
 * uv_poll_init: in libuv 1.44 that adds the socket to epoll and removes it
 * again to see that it can be polled, and sets it non-blocking, three
 * system calls per connection (a new connection costs one epoll_ctl to be
 * watched, one more that uv_poll_start makes to remove it first, and one
 * to be removed). The owner's close callback, which uv_close's callback
 * used to carry, runs from the reaper when the next round starts.
 *
 * With io_uring (stream_ctx_use_uring) the reads and writes of a round go
 * to the kernel in batches: stream_uring.c.
 */
#include "sluice/stream.h"
#include "stream_internal.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>


/* Below this much free space at the end of rbuf a new read gets a fresh area. */
#define READ_MIN_SPACE 2048

/* Batches kept for reuse; beyond this (after a burst) they go back to malloc. */
#define OUT_FREE_MAX 256

void stream_ctx_init(struct stream_ctx *ctx, uv_loop_t *loop, int buf_free_max)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->loop = loop;
	buf_pool_init(&ctx->bufs, buf_free_max);
	TAILQ_INIT(&ctx->flush_queue);
	TAILQ_INIT(&ctx->linger_queue);
	TAILQ_INIT(&ctx->dial_queue);
	TAILQ_INIT(&ctx->tls_ready);
	TAILQ_INIT(&ctx->reap_queue);
	ctx->max_packet_size = UINT32_MAX;
}

/* The handles of ctx are released: the poll handles of every number, and the reaper. */
static void close_handles(struct stream_ctx *ctx)
{
	ctx->handles_closed = true;
	int own_fd = uv_backend_fd(ctx->loop);
	for (size_t b = 0; b < ctx->slot_blocks; b++) {
		struct stream_slot_block *blk = ctx->slots[b];
		for (int i = 0; blk && i < STREAM_SLOT_BLOCK; i++) {
			if (!(blk->made & (UINT64_C(1) << i)))
				continue;
			uv_poll_t *h = &blk->polls[i];
			/*
			 * Closing a poll handle makes libuv remove its descriptor
			 * number from this loop's epoll set once more. The socket
			 * was closed long ago, and another worker's thread may be
			 * using (or closing) that number now: the handle is pointed
			 * at this loop's own epoll descriptor instead, which the
			 * removal cannot touch (EINVAL), and which no other thread
			 * owns. (libuv 1.44's unix uv_poll_t: io_watcher.fd.)
			 */
			if (!h->data && own_fd >= 0)
				h->io_watcher.fd = own_fd;
			uv_close((uv_handle_t *)h, NULL);
		}
	}
	if (ctx->reaper_made)
		uv_close((uv_handle_t *)&ctx->reaper, NULL);
}

void stream_ctx_close(struct stream_ctx *ctx)
{
	if (ctx->closed)
		return;
	ctx->closed = true;
	/* Owners still to hear of a close are told first: the reaper closes the handles after. */
	if (TAILQ_EMPTY(&ctx->reap_queue))
		close_handles(ctx);
}

void stream_ctx_deinit(struct stream_ctx *ctx)
{
	assert(ctx->handles_closed || (ctx->slot_blocks == 0 && !ctx->reaper_made));
	for (size_t b = 0; b < ctx->slot_blocks; b++)
		free(ctx->slots[b]);
	free(ctx->slots);
	ctx->slots = NULL;
	ctx->slot_blocks = 0;
	while (ctx->out_free) {
		struct stream_out *o = ctx->out_free;
		ctx->out_free = o->next_free;
		free(o);
	}
	ctx->out_free_count = 0;
	free(ctx->cipher_in);
	ctx->cipher_in = NULL;
	if (ctx->stage) {
		buf_unref(ctx->stage);
		ctx->stage = NULL;
	}
	stream_uring_free(ctx);
	buf_pool_deinit(&ctx->bufs);
}

static void tls_advance(struct stream *s);
static void flush_out(struct stream *s);

static void serve_held(struct stream *s);
static void keep_awake(struct stream_ctx *ctx);

void stream_ctx_flush(struct stream_ctx *ctx)
{
	struct stream *s;
	while ((s = TAILQ_FIRST(&ctx->tls_ready)) != NULL) {
		TAILQ_REMOVE(&ctx->tls_ready, s, aux->tls_link);
		s->in_tls_ready = false;
		if (s->tls)
			tls_advance(s);
		else
			serve_held(s);
	}
	if (ctx->uring)
		stream_uring_flush(ctx);
	while ((s = TAILQ_FIRST(&ctx->flush_queue)) != NULL) {
		TAILQ_REMOVE(&ctx->flush_queue, s, flush_link);
		s->in_flush_queue = false;
		/* A stream in the clear skips stream_flush's TLS step: one call less per stream. */
		if (s->tls)
			stream_flush(s);
		else
			flush_out(s);
	}
	/* Every slice of the staging buffer is sent: the next round starts at its beginning. */
	if (ctx->stage && ctx->stage->refs == 1)
		ctx->stage->start = ctx->stage->end = 0;
	/*
	 * A reader resumed by a drain above has its held input served in the
	 * next round, which must not wait for the poll: the reaper's idle
	 * handle keeps the loop from blocking.
	 */
	if (!TAILQ_EMPTY(&ctx->tls_ready))
		keep_awake(ctx);
}

static inline const struct stream_ops *ops_of(const struct stream *s)
{
	return s->ops;
}

/* Queues s for stream_ctx_flush. */
static void schedule_flush(struct stream *s)
{
	if (s->in_flush_queue)
		return;
	s->in_flush_queue = true;
	TAILQ_INSERT_TAIL(&s->ctx->flush_queue, s, flush_link);
}

int stream_init(struct stream_ctx *ctx, struct stream *s, bool pipe, const struct stream_ops *ops)
{
	memset(s, 0, sizeof(*s));
	s->ctx = ctx;
	s->ops = ops;
	s->is_pipe = pipe;
	s->fd = -1;
	return 0;
}

/* The side allocation of struct stream, made at the first need. */
static struct stream_aux *aux_of(struct stream *s)
{
	if (!s->aux)
		s->aux = xcalloc(1, sizeof(*s->aux));
	return s->aux;
}

static void on_poll(uv_poll_t *h, int status, int events);

/* The poll handle of s's descriptor number; only while s has a socket. */
static inline uv_poll_t *slot_of(const struct stream *s)
{
	unsigned fd = (unsigned)s->fd;
	return &s->ctx->slots[fd >> STREAM_SLOT_SHIFT]->polls[fd & (STREAM_SLOT_BLOCK - 1)];
}

/*
 * The poll handle of descriptor number fd, made now if it never was. A
 * failure of uv_poll_init (a descriptor epoll cannot watch) leaves the
 * number without a handle, to be tried again by its next socket.
 */
static int slot_get(struct stream_ctx *ctx, int fd, uv_poll_t **out)
{
	size_t b = (size_t)fd >> STREAM_SLOT_SHIFT;
	if (b >= ctx->slot_blocks) {
		size_t n = MAX(b + 1, ctx->slot_blocks * 2);
		ctx->slots = xrealloc(ctx->slots, n * sizeof(*ctx->slots));
		memset(ctx->slots + ctx->slot_blocks, 0,
		       (n - ctx->slot_blocks) * sizeof(*ctx->slots));
		ctx->slot_blocks = n;
	}
	if (!ctx->slots[b])
		ctx->slots[b] = xcalloc(1, sizeof(**ctx->slots));
	struct stream_slot_block *blk = ctx->slots[b];
	int i = fd & (STREAM_SLOT_BLOCK - 1);
	if (!(blk->made & (UINT64_C(1) << i))) {
		int rc = uv_poll_init(ctx->loop, &blk->polls[i], fd);
		if (rc != 0)
			return rc;
		blk->made |= UINT64_C(1) << i;
	}
	*out = &blk->polls[i];
	return 0;
}

/* Watches what s wants now: its reads, its pending writes or connect. */
static void poll_sync(struct stream *s)
{
	if (s->fd < 0 || s->close_started)
		return;
	int want = 0;
	if (s->lingering || (s->reading && !s->eof))
		want |= UV_READABLE;
	if (s->connecting || s->queued > 0)
		want |= UV_WRITABLE;
	if (want == s->poll_events)
		return;
	s->poll_events = (uint8_t)want;
	if (want)
		(void)uv_poll_start(slot_of(s), want, on_poll); /* cannot fail on an open handle */
	else
		(void)uv_poll_stop(slot_of(s));
}

/*
 * Makes fd s's socket and watches it from now on. fd is not closed on
 * failure. The handle of a number watched before is taken as it is: it
 * stopped watching when the last socket with that number was closed.
 */
static int attach(struct stream *s, int fd)
{
	uv_poll_t *h;
	if (s->ctx->closed)
		return UV_ECANCELED; /* the loop is ending: no handle may be made or reused */
	int rc = slot_get(s->ctx, fd, &h);
	if (rc != 0)
		return rc;
	h->data = s;
	s->fd = fd;
	poll_sync(s);
	return 0;
}

void stream_tune_socket(int fd, const struct stream_tcp_options *o)
{
	int on = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	on = o->keepalive ? 1 : 0;
	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
	if (on) {
		if (o->keepidle > 0)
			(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &o->keepidle, sizeof(int));
		if (o->keepintvl > 0)
			(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &o->keepintvl,
					 sizeof(int));
		if (o->keepcnt > 0)
			(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &o->keepcnt, sizeof(int));
	}
	if (o->user_timeout > 0) {
		unsigned int ms = (unsigned int)o->user_timeout;
		(void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms));
	}
}

/* tcp_keepalive and friends, and TCP_NODELAY, on a TCP stream's socket once it exists. */
static void apply_tcp_options(struct stream *s)
{
	if (!s->is_pipe && s->fd >= 0)
		stream_tune_socket(s->fd, &s->ctx->tcp);
}

int stream_adopt(struct stream *s, int fd)
{
	/* A system call, in builds with assertions only: see the contract. */
	assert(fcntl(fd, F_GETFL) & O_NONBLOCK);
	int rc = attach(s, fd);
	if (rc != 0)
		close(fd);
	return rc;
}

/*
 * A resolution is allocated for its one use: only a few streams ever
 * connect, so it does not weigh on every idle client. libuv always calls its
 * callback, which frees it.
 */

/* A name being resolved; it outlives its stream if the stream is closed first. */
struct dial_req {
	uv_getaddrinfo_t gai;
	struct stream *s; /* NULL once the stream stopped waiting for it */
};

/* Forgets a resolution in progress: its callback will only free it. */
static void dial_abandon_resolve(struct stream *s)
{
	struct stream_aux *x = s->aux;
	if (!x || !x->dial)
		return;
	x->dial->s = NULL;
	(void)uv_cancel((uv_req_t *)&x->dial->gai);
	x->dial = NULL;
}

/* Takes s off the dial queue; a connect or resolution still running is ignored from now on. */
static void dial_stop(struct stream *s)
{
	if (!s->dialing)
		return;
	s->dialing = false;
	TAILQ_REMOVE(&s->ctx->dial_queue, s, aux->dial_link);
	dial_abandon_resolve(s);
	if (s->connecting) {
		s->connecting = false;
		poll_sync(s);
	}
}

static void dial_done(struct stream *s, int status)
{
	if (!s->dialing)
		return; /* timed out or closed meanwhile */
	dial_stop(s);
	if (status == 0)
		apply_tcp_options(s);
	ops_of(s)->connect(s, status);
}

/* An error found while stream_dial runs is reported at the next tick, never from within it. */
static void dial_fail_later(struct stream *s, int err)
{
	s->aux->dial_error = err;
	s->aux->dial_deadline = 0;
}

/* The socket became writable while connecting: the connect's outcome is known. */
static void connect_done(struct stream *s)
{
	int err = s->aux->dial_error;
	if (err == 0) {
		int so = 0;
		socklen_t len = sizeof(so);
		if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &so, &len) != 0)
			so = errno;
		err = so ? uv_translate_sys_error(so) : 0;
	}
	s->connecting = false;
	poll_sync(s);
	dial_done(s, err);
}

/*
 * A non-blocking socket for addr, connecting. An error of the connect itself
 * is kept and reported when the socket turns writable, which a failed
 * socket does at once: from the loop, never from within stream_dial.
 * Non-zero only when there is no socket to wait on.
 */
static int connect_socket(struct stream *s, const struct sockaddr *addr, socklen_t len)
{
	int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return uv_translate_sys_error(errno);
	int rc = attach(s, fd);
	if (rc != 0) {
		close(fd);
		return rc;
	}
	do
		rc = connect(fd, addr, len);
	while (rc < 0 && errno == EINTR);
	if (rc < 0 && errno != EINPROGRESS)
		s->aux->dial_error = uv_translate_sys_error(errno);
	s->connecting = true;
	poll_sync(s);
	return 0;
}

static void on_resolved(uv_getaddrinfo_t *gai, int status, struct addrinfo *res)
{
	struct dial_req *d = container_of(gai, struct dial_req, gai);
	struct stream *s = d->s;
	free(d);
	if (s) {
		s->aux->dial = NULL;
		if (status == 0 && !res)
			status = UV_EAI_NONAME;
		if (status == 0) {
			s->resolved = true;
			status = connect_socket(s, res->ai_addr, res->ai_addrlen);
		}
		if (status != 0)
			dial_done(s, status);
	}
	uv_freeaddrinfo(res);
}

int stream_dial(struct stream_ctx *ctx, struct stream *s, const struct stream_ops *ops,
		const char *host, int port, uint64_t timeout_ms)
{
	bool pipe = host[0] == '/';
	int rc = stream_init(ctx, s, pipe, ops);
	if (rc != 0)
		return rc;
	struct stream_aux *x = aux_of(s);
	s->dialing = true;
	x->dial_deadline = timeout_ms ? uv_now(ctx->loop) + timeout_ms : UINT64_MAX;
	TAILQ_INSERT_TAIL(&ctx->dial_queue, s, aux->dial_link);
	if (pipe) {
		struct sockaddr_un un = { .sun_family = AF_UNIX };
		int n = port > 0 ? snprintf(un.sun_path, sizeof(un.sun_path), "%s/.s.PGSQL.%d",
					    host, port)
				 : snprintf(un.sun_path, sizeof(un.sun_path), "%s", host);
		s->resolved = true;
		rc = n < 0 || (size_t)n >= sizeof(un.sun_path)
			     ? UV_ENAMETOOLONG
			     : connect_socket(s, (const struct sockaddr *)&un, sizeof(un));
		if (rc != 0)
			dial_fail_later(s, rc);
		return 0;
	}
	/* A numeric address needs no trip to the thread pool. */
	struct sockaddr_storage ss;
	if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) == 0 ||
	    uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) == 0) {
		s->resolved = true;
		rc = connect_socket(s, (const struct sockaddr *)&ss,
				    ss.ss_family == AF_INET ? sizeof(struct sockaddr_in)
							    : sizeof(struct sockaddr_in6));
		if (rc != 0)
			dial_fail_later(s, rc);
		return 0;
	}
	char portstr[16];
	snprintf(portstr, sizeof(portstr), "%d", port);
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct dial_req *d = xcalloc(1, sizeof(*d));
	d->s = s;
	rc = uv_getaddrinfo(ctx->loop, &d->gai, on_resolved, host, portstr, &hints);
	if (rc != 0) {
		free(d);
		dial_fail_later(s, rc);
		return 0;
	}
	x->dial = d;
	return 0;
}

/* getsockname or getpeername of s's socket. */
static bool sock_addr(const struct stream *s, bool local, struct sockaddr_storage *ss)
{
	socklen_t n = sizeof(*ss);
	if (s->fd < 0)
		return false;
	return (local ? getsockname(s->fd, (struct sockaddr *)ss, &n)
		      : getpeername(s->fd, (struct sockaddr *)ss, &n)) == 0;
}

bool stream_address(const struct stream *s, bool local, char *host, size_t len, int *port)
{
	if (s->is_pipe)
		return false;
	struct sockaddr_storage ss;
	if (!sock_addr(s, local, &ss))
		return false;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		uv_ip4_name(a, host, len);
		*port = ntohs(a->sin_port);
		return true;
	}
	if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		uv_ip6_name(a, host, len);
		*port = ntohs(a->sin6_port);
		return true;
	}
	return false;
}

bool stream_peer_sockaddr(const struct stream *s, struct sockaddr_storage *ss)
{
	return !s->is_pipe && sock_addr(s, false, ss);
}

bool stream_peer_cred(const struct stream *s, unsigned *uid, int *pid)
{
	if (!s->is_pipe || s->fd < 0)
		return false;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(s->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
		return false;
	*uid = (unsigned)cred.uid;
	*pid = (int)cred.pid;
	return true;
}

/* Writes the decimal digits of v at the end of buf[0..*pos), moving *pos back. */
static void put_decimal_backwards(char *buf, size_t *pos, unsigned v)
{
	do {
		buf[--*pos] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
}

void stream_format_address(const struct sockaddr *sa, char *out, size_t len)
{
	if (len == 0)
		return;
	if (sa->sa_family == AF_INET) {
		/*
		 * A client's address is printed for every log line and SHOW
		 * row about it (stream_addr_format): by hand, which costs a
		 * twentieth of inet_ntop and snprintf. Written backwards from
		 * the port.
		 */
		const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
		const uint8_t *ip = (const uint8_t *)&a->sin_addr;
		char buf[sizeof("255.255.255.255:65535")];
		size_t pos = sizeof(buf);
		put_decimal_backwards(buf, &pos, ntohs(a->sin_port));
		buf[--pos] = ':';
		for (int i = 3; i >= 0; i--) {
			put_decimal_backwards(buf, &pos, ip[i]);
			if (i)
				buf[--pos] = '.';
		}
		size_t n = sizeof(buf) - pos;
		if (n >= len)
			n = len - 1;
		memcpy(out, buf + pos, n);
		out[n] = '\0';
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
		char host[64];
		uv_ip6_name(a, host, sizeof(host));
		snprintf(out, len, "%s:%d", host, ntohs(a->sin6_port));
	} else {
		snprintf(out, len, "%s", sa->sa_family == AF_UNIX ? "unix" : "?");
	}
}

void stream_addr_set(struct stream_addr *a, const struct sockaddr *sa)
{
	memset(a, 0, sizeof(*a));
	if (!sa)
		return;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		a->family = AF_INET;
		a->port = ntohs(in->sin_port);
		memcpy(a->ip, &in->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		a->family = AF_INET6;
		a->port = ntohs(in6->sin6_port);
		memcpy(a->ip, &in6->sin6_addr, 16);
	} else if (sa->sa_family == AF_UNIX) {
		a->family = AF_UNIX;
	}
}

char *stream_addr_format(const struct stream_addr *a, char *out, size_t len)
{
	/* Through the sockaddr again, so the text cannot drift from stream_format_address's. */
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	if (a->family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		in->sin_family = AF_INET;
		in->sin_port = htons(a->port);
		memcpy(&in->sin_addr, a->ip, 4);
	} else if (a->family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(a->port);
		memcpy(&in6->sin6_addr, a->ip, 16);
	} else {
		ss.ss_family = a->family;
	}
	stream_format_address((const struct sockaddr *)&ss, out, len);
	return out;
}

/* "host:port" of one end of a TCP stream ("unix" for a pipe). */
static void sock_name(struct stream *s, bool local, char *out, size_t len)
{
	if (s->is_pipe) {
		snprintf(out, len, "unix");
		return;
	}
	struct sockaddr_storage ss;
	if (!sock_addr(s, local, &ss))
		ss.ss_family = AF_UNSPEC;
	stream_format_address((const struct sockaddr *)&ss, out, len);
}

void stream_peer_name(struct stream *s, char *out, size_t len)
{
	sock_name(s, false, out, len);
}

void stream_local_name(struct stream *s, char *out, size_t len)
{
	sock_name(s, true, out, len);
}

static void finish_close(struct stream *s);

/*
 * After a read callback: an empty buffer goes back to the free list, and so
 * does the buffer of a stream that was closed during the callback. Waiting
 * for the close callback instead would let a burst of disconnects (10,000
 * clients sending Terminate in one loop iteration) hold a buffer each at the
 * same time: 160 MB that malloc then keeps.
 */
static void release_rbuf_after_read(struct stream *s)
{
	if (s->rbuf && (s->closing || s->rbuf->start == s->rbuf->end)) {
		buf_unref(s->rbuf);
		s->rbuf = NULL;
	}
}

/* rbuf_space's rarer case: too little room left at the end of the read buffer. */
static struct buf *rbuf_make_room(struct stream *s)
{
	struct buf *b = s->rbuf;
	{
		uint32_t left = buf_avail(b);
		if (b->refs == 1 && left + READ_MIN_SPACE <= b->cap) {
			/* Nobody else points into it: slide the partial message down. */
			memmove(b->data, b->data + b->start, left);
			b->start = 0;
			b->end = left;
		} else {
			/* Writes still reference it (or it is full): continue in a new one. */
			struct buf *nb = buf_get(&s->ctx->bufs, MAX((size_t)BUF_SIZE,
								    (size_t)left + READ_MIN_SPACE));
			memcpy(nb->data, b->data + b->start, left);
			nb->end = left;
			buf_unref(b);
			b = s->rbuf = nb;
		}
	}
	return b;
}

/* Room at the end of s's read buffer for the next bytes (a fresh or moved buffer if needed). */
static inline struct buf *rbuf_room(struct stream *s)
{
	struct buf *b = s->rbuf;
	if (!b)
		return s->rbuf = buf_get(&s->ctx->bufs, BUF_SIZE);
	if (buf_space(b) < READ_MIN_SPACE)
		return rbuf_make_room(s);
	return b;
}

static void rbuf_space(struct stream *s, uv_buf_t *out)
{
	struct buf *b = rbuf_room(s);
	out->base = (char *)b->data + b->end;
	out->len = buf_space(b);
}

/* Ciphertext is read into the context's one scratch area and fed to the engine at once. */
#define CIPHER_IN_SIZE (BUF_SIZE + 1024)

/* Where the next read goes: the read buffer, or the ciphertext area of a TLS stream. */
static void read_space(struct stream *s, uv_buf_t *out)
{
	if (s->tls && !s->lingering) {
		if (!s->ctx->cipher_in)
			s->ctx->cipher_in = xmalloc(CIPHER_IN_SIZE);
		*out = (uv_buf_t){ .base = (char *)s->ctx->cipher_in, .len = CIPHER_IN_SIZE };
		return;
	}
	rbuf_space(s, out);
}

/*
 * What a read gave (nread bytes at ub->base, 0 for nothing yet, UV_EOF or an
 * error) goes to the owner, or is discarded while lingering.
 */
static void deliver(struct stream *s, ssize_t nread, const uv_buf_t *ub)
{
	if (s->lingering) {
		/* Closing: input is discarded until the peer closes its side. */
		if (s->rbuf)
			s->rbuf->start = s->rbuf->end = 0;
		if (nread < 0)
			finish_close(s);
		return;
	}
	if (nread > 0 && s->tls) {
		tls_conn_feed(s->aux->tls, ub->base, (size_t)nread);
		tls_advance(s);
		return;
	}
	if (nread > 0) {
		s->rbuf->end += (uint32_t)nread;
		ops_of(s)->read(s);
		release_rbuf_after_read(s);
		return;
	}
	if (nread < 0) {
		/* Either way nothing more will be read: the poll stops watching for it. */
		s->eof = true;
		poll_sync(s);
		if (!s->closing)
			ops_of(s)->error(s, (int)nread);
	}
	release_rbuf_after_read(s);
}

/* A resumed reader gets the input a batched read brought while it did not read (held_input). */
static void serve_held(struct stream *s)
{
	s->held_input = false;
	if (s->reading && s->rbuf && s->rbuf->start < s->rbuf->end) {
		ops_of(s)->read(s);
		release_rbuf_after_read(s);
	}
}

/* A failed read's errno as deliver takes it: 0 for nothing yet, else a libuv error. */
static ssize_t read_error(int err)
{
	return err == EAGAIN || err == EWOULDBLOCK ? 0 : uv_translate_sys_error(err);
}

/* One read(2) into the space given: bytes, 0 for nothing yet, UV_EOF, or an error. */
static ssize_t read_once(struct stream *s, const uv_buf_t *b)
{
	ssize_t n;
	do
		n = read(s->fd, b->base, b->len);
	while (n < 0 && errno == EINTR);
	if (n > 0)
		return n;
	return n == 0 ? UV_EOF : read_error(errno);
}

/*
 * The socket is readable. One read, as a message is usually smaller than
 * the space offered; another only when the read filled the space, as the
 * rest is then likely waiting (level-triggered: anything left is reported
 * again by the next poll).
 */
static void on_readable(struct stream *s)
{
	for (int round = 0; round < 32; round++) {
		if (!(s->reading || s->lingering) || s->eof || s->close_started)
			return;
		uv_buf_t b;
		read_space(s, &b);
		ssize_t n = read_once(s, &b);
		deliver(s, n, &b);
		if (n <= 0 || (size_t)n < b.len)
			return;
	}
}

void stream_read_now(struct stream *s)
{
	if (!s->reading || s->fd < 0 || s->eof)
		return;
	uv_buf_t b;
	read_space(s, &b);
	ssize_t n = read_once(s, &b);
	if (n > 0 || n == UV_EOF)
		deliver(s, n, &b);
	else
		release_rbuf_after_read(s); /* nothing yet (or an error): the poll will see it */
}

static void update_reading(struct stream *s)
{
	bool want = s->want_read && !s->paused && !s->suspended && !s->closing;
	if (want == s->reading)
		return;
	s->reading = want;
	poll_sync(s);
	/* The socket may have nothing more to say: the engine's input is handed over at the check step. */
	if (want && !s->in_tls_ready &&
	    (s->held_input || (s->tls && !s->tls_handshaking && tls_conn_has_input(s->aux->tls)))) {
		aux_of(s);
		s->in_tls_ready = true;
		TAILQ_INSERT_TAIL(&s->ctx->tls_ready, s, aux->tls_link);
	}
}

void stream_read_start(struct stream *s)
{
	s->want_read = true;
	update_reading(s);
}

void stream_read_stop(struct stream *s)
{
	s->want_read = false;
	update_reading(s);
}

void stream_pause(struct stream *s)
{
	s->paused = true;
	update_reading(s);
}

void stream_unpause(struct stream *s)
{
	s->paused = false;
	update_reading(s);
}

void stream_suspend(struct stream *s, bool on)
{
	s->suspended = on;
	update_reading(s);
}

int stream_fd(const struct stream *s)
{
	return s->fd;
}

int stream_send_fd(struct stream *s, const void *p, size_t len, int fd, uint64_t timeout_ms)
{
	if (!s->is_pipe || s->tls || s->closing)
		return UV_ENOTSUP;
	stream_flush(s);
	if (s->pending || s->queued)
		return UV_EBUSY;
	int sock = stream_fd(s);
	if (sock < 0)
		return UV_EBADF;
	uint64_t deadline = uv_hrtime() / 1000000 + timeout_ms;
	const uint8_t *at = p;
	bool attach = fd >= 0;
	union {
		struct cmsghdr align;
		uint8_t space[CMSG_SPACE(sizeof(int))];
	} control;
	while (len > 0) {
		struct iovec iov = { .iov_base = (void *)at, .iov_len = len };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
		if (attach) {
			/* The descriptor rides with the first byte that goes: once only. */
			memset(&control, 0, sizeof(control));
			msg.msg_control = control.space;
			msg.msg_controllen = sizeof(control.space);
			struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(cm), &fd, sizeof(int));
		}
		ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL);
		if (n >= 0) {
			at += n;
			len -= (size_t)n;
			attach = false;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return uv_translate_sys_error(errno);
		uint64_t now = uv_hrtime() / 1000000;
		if (now >= deadline)
			return UV_ETIMEDOUT;
		struct pollfd pfd = { .fd = sock, .events = POLLOUT };
		if (poll(&pfd, 1, (int)MIN(deadline - now, (uint64_t)INT_MAX)) < 0 &&
		    errno != EINTR)
			return uv_translate_sys_error(errno);
	}
	return 0;
}

void stream_preload(struct stream *s, const void *p, size_t len)
{
	if (len == 0)
		return;
	if (!s->rbuf)
		s->rbuf = buf_get(&s->ctx->bufs, MAX(len + READ_MIN_SPACE, (size_t)BUF_SIZE));
	stream_reserve(s, buf_avail(s->rbuf) + len);
	struct buf *b = s->rbuf;
	memcpy(b->data + b->end, p, len);
	b->end += (uint32_t)len;
}

ssize_t stream_recv_fd(int sock, void *p, size_t len, int *fd)
{
	/* Room for a few: any beyond the first are closed, never leaked. */
	union {
		struct cmsghdr align;
		uint8_t space[CMSG_SPACE(sizeof(int) * 4)];
	} control;
	struct iovec iov = { .iov_base = p, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov,
			      .msg_iovlen = 1,
			      .msg_control = control.space,
			      .msg_controllen = sizeof(control.space) };
	ssize_t n;
	do
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return uv_translate_sys_error(errno);
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int got;
			memcpy(&got, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (*fd < 0)
				*fd = got;
			else
				close(got);
		}
	}
	if (msg.msg_flags & MSG_CTRUNC)
		return UV_EMSGSIZE;
	return n;
}

void stream_reserve(struct stream *s, size_t len)
{
	struct buf *b = s->rbuf;
	if (b->start + len <= b->cap)
		return;
	uint32_t left = buf_avail(b);
	struct buf *nb = buf_get(&s->ctx->bufs, MAX(len + READ_MIN_SPACE, (size_t)BUF_SIZE));
	memcpy(nb->data, b->data + b->start, left);
	nb->end = left;
	buf_unref(b);
	s->rbuf = nb;
}

void stream_replace_front(struct stream *s, size_t n, const void *p, size_t len)
{
	struct buf *b = s->rbuf;
	if (len <= n) {
		b->start += (uint32_t)(n - len);
	} else {
		stream_reserve(s, buf_avail(b) + (len - n));
		b = s->rbuf;
		memmove(b->data + b->start + len, b->data + b->start + n, buf_avail(b) - n);
		b->end += (uint32_t)(len - n);
	}
	memcpy(b->data + b->start, p, len);
}

/* An output batch from the free list: streams hold one only while output is pending. */
static struct stream_out *out_get(struct stream_ctx *ctx)
{
	struct stream_out *o = ctx->out_free;
	if (o) {
		ctx->out_free = o->next_free;
		ctx->out_free_count--;
	} else {
		o = xmalloc(sizeof(*o));
	}
	o->n = 0;
	o->first = 0;
	o->next_free = NULL;
	return o;
}

static void out_put(struct stream_ctx *ctx, struct stream_out *o)
{
	if (ctx->out_free_count >= OUT_FREE_MAX) {
		free(o);
		return;
	}
	o->next_free = ctx->out_free;
	ctx->out_free = o;
	ctx->out_free_count++;
}

/* Inlined into its callers: a forwarded message pays one call, not two. */
static inline __attribute__((always_inline)) void queue_slice(struct stream *dst, struct buf *b,
							      const uint8_t *p, size_t len)
{
	if (len == 0)
		return;
	struct stream_out *o = dst->out;
	if (!o) {
		o = dst->out = out_get(dst->ctx);
		schedule_flush(dst);
	} else if (o->n > 0) {
		uv_buf_t *last = &o->iov[o->n - 1];
		/* Consecutive slices of one buffer become one iovec. */
		if (o->bufs[o->n - 1] == b && (uint8_t *)last->base + last->len == p &&
		    len <= UINT32_MAX - dst->pending) {
			last->len += len;
			dst->pending += (uint32_t)len;
			return;
		}
	}
	if (o->n == STREAM_IOV_MAX || len > UINT32_MAX - dst->pending) {
		stream_flush(dst);
		if (dst->closing)
			return;
		o = dst->out = out_get(dst->ctx);
		schedule_flush(dst);
	}
	buf_ref(b);
	/* Not uv_buf_init: a call into libuv for two stores, three times a transaction. */
	o->iov[o->n] = (uv_buf_t){ .base = (char *)p, .len = len };
	o->bufs[o->n] = b;
	o->n++;
	dst->pending += (uint32_t)len;
}

static void tls_write(struct stream *s, const void *p, size_t len);

void stream_forward_slice(struct stream *dst, struct stream *src, size_t len)
{
	struct buf *b = src->rbuf;
	if (dst->tls)
		tls_write(dst, b->data + b->start, len);
	else if (!dst->closing)
		queue_slice(dst, b, b->data + b->start, len);
	b->start += (uint32_t)len;
}

void stream_write(struct stream *dst, const void *p, size_t len)
{
	if (dst->closing || len == 0)
		return;
	if (dst->tls) {
		tls_write(dst, p, len);
		return;
	}
	/* Copies go into the loop's staging buffer; the slice holds a reference. */
	struct stream_ctx *ctx = dst->ctx;
	struct buf *st = ctx->stage;
	if (!st || buf_space(st) < len) {
		if (st)
			buf_unref(st);
		st = ctx->stage = buf_get(&ctx->bufs, MAX(len, (size_t)BUF_SIZE));
	}
	memcpy(st->data + st->end, p, len);
	st->end += (uint32_t)len;
	queue_slice(dst, st, st->data + st->end - len, len);
}

/* Gives back a batch's references from slice `from` on, and the batch. */
static void out_drop(struct stream_ctx *ctx, struct stream_out *o)
{
	for (int i = o->first; i < o->n; i++)
		buf_unref(o->bufs[i]);
	out_put(ctx, o);
}

/* Drops whatever is queued and not yet handed to the kernel. */
static void release_out(struct stream *s)
{
	if (s->out) {
		out_drop(s->ctx, s->out);
		s->out = NULL;
	}
	s->pending = 0;
}

/* Drops the write queue too: the stream is closing, or its socket failed. */
static void release_wq(struct stream *s)
{
	struct stream_aux *x = s->aux;
	while (x && x->wq) {
		struct stream_out *o = x->wq;
		x->wq = o->next_free;
		out_drop(s->ctx, o);
	}
	if (x)
		x->wq_tail = NULL;
	s->queued = 0;
}

static void tls_drain(struct stream *s, bool may_flush);

/*
 * One writev of iov[0..n) on s's socket: bytes written, UV_EAGAIN, or
 * another error. A stream still connecting, or without a socket yet, takes
 * nothing: its batch waits in the write queue for the connect. uv_buf_t is
 * laid out as struct iovec on Unix (uv/unix.h says it may be cast).
 */
static int try_write(struct stream *s, const uv_buf_t *iov, int n)
{
	if (s->dialing || s->fd < 0)
		return UV_EAGAIN;
	ssize_t w;
	do
		w = writev(s->fd, (const struct iovec *)iov, n);
	while (w < 0 && errno == EINTR);
	if (w >= 0)
		return (int)w;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
		return UV_EAGAIN;
	return uv_translate_sys_error(errno);
}

/* Moves o's first slice mark past the w bytes written; true when all of it is. */
static bool out_advance(struct stream_out *o, size_t done)
{
	while (o->first < o->n && done >= o->iov[o->first].len) {
		done -= o->iov[o->first].len;
		buf_unref(o->bufs[o->first]);
		o->first++;
	}
	if (o->first < o->n) {
		o->iov[o->first].base += done;
		o->iov[o->first].len -= done;
		return false;
	}
	return true;
}

/* Half-closes a lingering stream's socket once its output is gone. */
static void linger_shutdown(struct stream *s)
{
	s->shut_pending = false;
	if (shutdown(s->fd, SHUT_WR) != 0)
		finish_close(s);
}

/*
 * The socket is writable: sends the write queue, oldest batch first, until
 * the socket takes no more. Once it is empty the poll stops watching for
 * writable, and the owner hears drain.
 */
static void on_writable(struct stream *s)
{
	struct stream_aux *x = s->aux;
	while (x && x->wq) {
		struct stream_out *o = x->wq;
		int w = try_write(s, o->iov + o->first, o->n - o->first);
		if (w == UV_EAGAIN)
			return;
		if (w < 0) {
			release_wq(s);
			poll_sync(s);
			if (s->lingering)
				finish_close(s);
			else if (!s->closing)
				ops_of(s)->error(s, w);
			return;
		}
		s->queued -= (uint32_t)w;
		if (!out_advance(o, (size_t)w))
			return;
		x->wq = o->next_free;
		if (!x->wq)
			x->wq_tail = NULL;
		out_put(s->ctx, o);
	}
	poll_sync(s);
	if (s->lingering) {
		if (s->shut_pending)
			linger_shutdown(s);
		return;
	}
	if (!s->closing && ops_of(s)->drain)
		ops_of(s)->drain(s);
}

/* What libuv saw on s's socket: the general case (out of line, so that on_poll stays lean). */
__attribute__((noinline)) static void on_poll_any(struct stream *s, int status, int events)
{
	if (status < 0) {
		/*
		 * An error on the socket (EPOLLERR): libuv stopped watching.
		 * The read, the write or the connect below finds the error
		 * itself, as it would on a readable or writable socket, and
		 * the poll is started again if the stream goes on.
		 */
		s->poll_events = 0;
		events = UV_READABLE | UV_WRITABLE;
	}
	if (s->connecting) {
		if (events & UV_WRITABLE)
			connect_done(s);
		if (s->connecting || s->close_started)
			return;
	}
	if (events & UV_READABLE)
		on_readable(s);
	if ((events & UV_WRITABLE) && s->queued > 0 && !s->close_started)
		on_writable(s);
	/* Every change of wish above watched for itself; only an error's restart is left. */
	if (status < 0)
		poll_sync(s);
}

/* One read(2) into s's read buffer, handed to the owner: on_poll's common case. */
static void read_plain(struct stream *s)
{
	struct buf *b = rbuf_room(s);
	size_t space = buf_space(b);
	ssize_t n = read(s->fd, b->data + b->end, space);
	if (n <= 0) {
		if (n < 0 && errno == EINTR) {
			on_readable(s);
			return;
		}
		uv_buf_t none = { 0 };
		deliver(s, n == 0 ? UV_EOF : read_error(errno), &none);
		return;
	}
	b->end += (uint32_t)n;
	ops_of(s)->read(s);
	release_rbuf_after_read(s);
	if ((size_t)n == space)
		on_readable(s); /* it filled the space: more is likely waiting */
}

/*
 * What libuv saw on s's socket. The case of nearly every call, a request or
 * an answer on a socket in the clear, is read straight into the read buffer
 * (with io_uring: at the check step, with the round's other reads);
 * anything else (TLS, errors, writable, connects, a full read) goes the
 * general way.
 */
static void on_poll(uv_poll_t *h, int status, int events)
{
	struct stream *s = h->data;
	if (status != 0 || events != UV_READABLE || !s->reading || s->tls || s->eof) {
		on_poll_any(s, status, events);
		return;
	}
	if (s->ctx->uring)
		stream_uring_read_later(s);
	else
		read_plain(s);
}

/*
 * Settles a batch the socket took w bytes of (or UV_EAGAIN, or an error):
 * what is left joins the write queue. No owner hears of it here (that is
 * flush_tell's), so that an io_uring batch of many streams is settled
 * before any owner runs. 1: all of it is sent (the owner hears drain); 0:
 * a rest waits for the socket; else an error for the owner.
 */
static int flush_settle(struct stream *s, struct stream_out *o, int w)
{
	if (w < 0 && w != UV_EAGAIN) {
		out_drop(s->ctx, o);
		return w;
	}
	out_advance(o, w > 0 ? (size_t)w : 0);
	int n = o->n;
	if (o->first == n) {
		out_put(s->ctx, o);
		return 1;
	}
	/* The rest waits for the socket, keeping its buffer references. */
	size_t rest = 0;
	for (int i = o->first; i < n; i++)
		rest += o->iov[i].len;
	if (rest > UINT32_MAX - s->queued) {
		/* Beyond what queued counts: a peer that reads nothing while we write gigabytes. */
		out_drop(s->ctx, o);
		return UV_ENOBUFS;
	}
	struct stream_aux *x = aux_of(s);
	s->queued += (uint32_t)rest;
	o->next_free = NULL;
	if (x->wq_tail)
		x->wq_tail->next_free = o;
	else
		x->wq = o;
	x->wq_tail = o;
	poll_sync(s);
	return 0;
}

/* The owner hears what flush_settle decided. */
static void flush_tell(struct stream *s, int settled)
{
	if (settled < 0) {
		if (!s->closing)
			ops_of(s)->error(s, settled);
	} else if (settled == 1 && !s->closing && ops_of(s)->drain) {
		/* A reader paused for our sake waits for this. */
		ops_of(s)->drain(s);
	}
}

/* Sends the batch queued on s (for a TLS stream: ciphertext). */
static void flush_out(struct stream *s)
{
	struct stream_out *o = s->out;
	if (!o)
		return;
	if (s->closing) {
		release_out(s);
		return;
	}
	/* Writing ahead of the write queue would reorder bytes. */
	int w = s->queued == 0 ? try_write(s, o->iov, o->n) : UV_EAGAIN;
	s->pending = 0;
	s->out = NULL;
	flush_tell(s, flush_settle(s, o, w));
}


void stream_flush(struct stream *s)
{
	if (s->tls && !s->closing) {
		if (s->tls_failed) {
			s->tls_failed = false;
			release_out(s);
			ops_of(s)->error(s, UV_EPROTO);
			return;
		}
		tls_drain(s, true);
	}
	flush_out(s);
}

/* The handle is released: the last of the stream's memory goes, then the owner may free it. */
static void closed(struct stream *s)
{
	if (s->rbuf) {
		buf_unref(s->rbuf);
		s->rbuf = NULL;
	}
	if (s->tls) {
		tls_conn_free(s->aux->tls);
		s->tls = false;
	}
	if (s->aux) {
		free(s->aux->tls_early);
		free(s->aux);
		s->aux = NULL;
	}
	if (ops_of(s)->close)
		ops_of(s)->close(s);
}

/* The next round starts: owners of the streams closed in the last one hear it. */
static void on_reap(uv_idle_t *h);

/* The reaper runs at the next round's start, and the poll before it does not block. */
static void keep_awake(struct stream_ctx *ctx)
{
	if (ctx->handles_closed)
		return;
	if (!ctx->reaper_made) {
		uv_idle_init(ctx->loop, &ctx->reaper);
		ctx->reaper_made = true;
	}
	if (!uv_is_active((uv_handle_t *)&ctx->reaper))
		uv_idle_start(&ctx->reaper, on_reap);
}

static void on_reap(uv_idle_t *h)
{
	struct stream_ctx *ctx = container_of(h, struct stream_ctx, reaper);
	struct stream *s;
	/* Close callbacks may close more streams: they are heard in this call too. */
	while ((s = TAILQ_FIRST(&ctx->reap_queue)) != NULL) {
		TAILQ_REMOVE(&ctx->reap_queue, s, flush_link);
		closed(s);
	}
	uv_idle_stop(h);
	if (ctx->closed && !ctx->handles_closed)
		close_handles(ctx);
}

/*
 * A stream closed after the context's handles were (at the very end of a
 * loop) still lets its owner hear from the loop, not from inside
 * stream_close: a handle made only to be closed carries the call.
 */
struct close_later {
	uv_idle_t idle;
	struct stream *s;
};

static void on_close_later(uv_handle_t *h)
{
	struct close_later *cl = container_of(h, struct close_later, idle);
	struct stream *s = cl->s;
	free(cl);
	closed(s);
}

/* Takes the stream off every queue of its context and starts closing the handle. */
static void finish_close(struct stream *s)
{
	release_out(s);
	release_wq(s);
	if (s->in_flush_queue) {
		TAILQ_REMOVE(&s->ctx->flush_queue, s, flush_link);
		s->in_flush_queue = false;
	}
	if (s->lingering) {
		TAILQ_REMOVE(&s->ctx->linger_queue, s, flush_link);
		s->lingering = false;
	}
	if (s->in_tls_ready) {
		TAILQ_REMOVE(&s->ctx->tls_ready, s, aux->tls_link);
		s->in_tls_ready = false;
	}
	s->read_batched = false; /* stream_ctx_read_batch passes it by */
	s->held_input = false;
	s->reading = false;
	if (s->close_started)
		return;
	s->close_started = true;
	if (s->fd >= 0) {
		/*
		 * The handle stays for the next socket with this number. A
		 * handle that watches nothing has the socket out of epoll
		 * already: no uv_poll_stop (it would remove it once more).
		 * Stopping before the close matters when a copy of the socket
		 * lives on (a server moved to another worker): epoll would
		 * otherwise keep reporting it.
		 */
		uv_poll_t *h = slot_of(s);
		if (s->poll_events)
			(void)uv_poll_stop(h);
		s->poll_events = 0;
		h->data = NULL;
		close(s->fd);
		s->fd = -1;
	}
	struct stream_ctx *ctx = s->ctx;
	if (!ctx->handles_closed) {
		/* flush_link is free: the stream left the flush and linger queues above. */
		TAILQ_INSERT_TAIL(&ctx->reap_queue, s, flush_link);
		keep_awake(ctx);
		return;
	}
	struct close_later *cl = xmalloc(sizeof(*cl));
	cl->s = s;
	uv_idle_init(s->ctx->loop, &cl->idle);
	uv_close((uv_handle_t *)&cl->idle, on_close_later);
}

void stream_close(struct stream *s)
{
	if (s->closing)
		return;
	dial_stop(s);
	if (s->tls && !s->tls_handshaking) {
		tls_conn_shutdown(s->aux->tls);
		tls_drain(s, false);
	}
	s->closing = true;
	/* One last non-blocking attempt, errors ignored: the connection is ending. */
	if (s->out && s->queued == 0)
		(void)try_write(s, s->out->iov + s->out->first, s->out->n - s->out->first);
	finish_close(s);
}

void stream_close_linger(struct stream *s)
{
	if (s->closing)
		return;
	if (s->eof || s->dialing || s->fd < 0) {
		stream_close(s);
		return;
	}
	if (s->tls && !s->tls_handshaking)
		tls_conn_shutdown(s->aux->tls);
	/*
	 * Closing a socket with unread input makes the kernel send a reset, which
	 * destroys an ErrorResponse the peer has not read yet (the rest of an
	 * oversized message may still be on its way). So: send what is queued,
	 * half-close, and discard input until the peer closes too or the linger
	 * time runs out (the loop owner's tick calls stream_ctx_tick).
	 */
	stream_flush(s);
	if (s->closing)
		return; /* the flush failed and the owner closed it */
	s->closing = true;
	s->reading = false;
	/* Both queues use flush_link: leave the flush queue first. */
	if (s->in_flush_queue) {
		TAILQ_REMOVE(&s->ctx->flush_queue, s, flush_link);
		s->in_flush_queue = false;
	}
	s->lingering = true;
	aux_of(s)->linger_since = uv_now(s->ctx->loop);
	TAILQ_INSERT_TAIL(&s->ctx->linger_queue, s, flush_link);
	/* The write side is shut down once the write queue is sent. */
	if (s->queued > 0)
		s->shut_pending = true;
	else
		linger_shutdown(s);
	poll_sync(s);
}

void stream_ctx_tick(struct stream_ctx *ctx, uint64_t now, uint64_t linger_ms)
{
	struct stream *s;
	while ((s = TAILQ_FIRST(&ctx->linger_queue)) != NULL &&
	       now - s->aux->linger_since >= linger_ms)
		finish_close(s);
	/* From the head after each report: its owner may close other dialing streams. */
	bool reported;
	do {
		reported = false;
		TAILQ_FOREACH(s, &ctx->dial_queue, aux->dial_link) {
			if (now >= s->aux->dial_deadline) {
				dial_done(s,
					  s->aux->dial_error ? s->aux->dial_error : UV_ETIMEDOUT);
				reported = true;
				break;
			}
		}
	} while (reported);
}

/* ---- TLS ----------------------------------------------------------------------- */

/*
 * Moves the engine's ciphertext into the output batch. may_flush: a full
 * batch is sent first (the flush path); otherwise what does not fit is left
 * (closing: the last attempt takes what it can).
 */
static void tls_drain(struct stream *s, bool may_flush)
{
	while (tls_conn_pending(s->aux->tls) > 0) {
		if (s->out && s->out->n == STREAM_IOV_MAX) {
			if (!may_flush)
				return;
			flush_out(s);
			if (s->closing)
				return;
		}
		struct buf *b = buf_get(&s->ctx->bufs, BUF_SIZE);
		b->end = (uint32_t)tls_conn_take(s->aux->tls, b->data, b->cap);
		queue_slice(s, b, b->data, b->end);
		buf_unref(b);
	}
}

/*
 * Plaintext from the owner: encrypted now (the engine copies it), or kept
 * until the handshake is done. A failure is reported at the flush, not from
 * inside the owner's write.
 */
static void tls_write(struct stream *s, const void *p, size_t len)
{
	if (s->closing || len == 0)
		return;
	if (s->tls_handshaking) {
		struct stream_aux *x = s->aux;
		x->tls_early = xrealloc(x->tls_early, x->tls_early_len + len);
		memcpy(x->tls_early + x->tls_early_len, p, len);
		x->tls_early_len += len;
		return;
	}
	if (tls_conn_write(s->aux->tls, p, len) != TLS_OK)
		s->tls_failed = true;
	schedule_flush(s);
}

/* Decrypts what the engine holds into the read buffer for the owner, while it reads. */
static void tls_deliver(struct stream *s)
{
	while (s->reading && !s->closing) {
		uv_buf_t b;
		rbuf_space(s, &b);
		enum tls_status st;
		size_t n = tls_conn_read(s->aux->tls, b.base, b.len, &st);
		if (n == 0) {
			release_rbuf_after_read(s);
			/* Reading can produce output (a reply to a key update). */
			if (tls_conn_pending(s->aux->tls) > 0)
				schedule_flush(s);
			if (st == TLS_WANT)
				return;
			if (st == TLS_CLOSED)
				s->eof = true;
			ops_of(s)->error(s, st == TLS_CLOSED ? UV_EOF : UV_EPROTO);
			return;
		}
		s->rbuf->end += (uint32_t)n;
		ops_of(s)->read(s);
		release_rbuf_after_read(s);
	}
}

/* Runs the engine on the ciphertext fed: the handshake first, then the owner's input. */
static void tls_advance(struct stream *s)
{
	if (s->tls_handshaking) {
		enum tls_status st = tls_conn_handshake(s->aux->tls);
		if (tls_conn_pending(s->aux->tls) > 0)
			schedule_flush(s);
		if (st == TLS_WANT)
			return;
		s->tls_handshaking = false;
		struct stream_aux *x = s->aux;
		if (st == TLS_OK && x->tls_early_len) {
			uint8_t *early = x->tls_early;
			size_t len = x->tls_early_len;
			x->tls_early = NULL;
			x->tls_early_len = 0;
			tls_write(s, early, len);
			free(early);
		}
		x->tls_cb(s, st == TLS_OK ? 0 : UV_EPROTO);
		if (st != TLS_OK || s->closing)
			return;
	}
	tls_deliver(s);
}

void stream_start_tls(struct stream *s, struct tls_ctx *ctx, const char *host, stream_tls_cb *cb)
{
	/* What is queued (the 'S') goes out in the clear, ahead of any ciphertext. */
	flush_out(s);
	if (s->closing)
		return;
	assert(!s->dialing && !s->tls);
	struct stream_aux *x = aux_of(s);
	x->tls = tls_conn_new(ctx, host);
	s->tls = true;
	x->tls_cb = cb;
	x->tls_early = NULL;
	x->tls_early_len = 0;
	s->tls_handshaking = true;
	if (s->rbuf && buf_avail(s->rbuf) > 0) {
		tls_conn_feed(s->aux->tls, s->rbuf->data + s->rbuf->start, buf_avail(s->rbuf));
		s->rbuf->start = s->rbuf->end;
	}
	release_rbuf_after_read(s);
	stream_read_start(s);
	/*
	 * A connecting engine speaks first, an accepting one may have its
	 * ClientHello already: both take their first step at the check step,
	 * so cb never runs from inside this call.
	 */
	if (!s->in_tls_ready) {
		s->in_tls_ready = true;
		TAILQ_INSERT_TAIL(&s->ctx->tls_ready, s, aux->tls_link);
	}
}

struct tls_conn *stream_take_tls(struct stream *s)
{
	if (!s->tls || s->tls_handshaking || s->in_tls_ready || s->tls_failed ||
	    tls_conn_has_input(s->aux->tls) || tls_conn_pending(s->aux->tls) > 0)
		return NULL;
	/* A TLS stream has its side allocation (stream_start_tls, stream_give_tls). */
	struct stream_aux *x = s->aux;
	struct tls_conn *t = x->tls;
	x->tls = NULL;
	s->tls = false;
	free(x->tls_early);
	x->tls_early = NULL;
	x->tls_early_len = 0;
	return t;
}

void stream_give_tls(struct stream *s, struct tls_conn *t)
{
	/* A TLS stream has its side allocation: ctx->tls_ready links through it. */
	struct stream_aux *x = aux_of(s);
	x->tls = t;
	s->tls = true;
	x->tls_cb = NULL;
	x->tls_early = NULL;
	x->tls_early_len = 0;
	s->tls_handshaking = false;
}

const char *stream_tls_error(const struct stream *s)
{
	return s->tls ? tls_conn_error(s->aux->tls) : "not a TLS connection";
}

void stream_tls_describe(const struct stream *s, char *out, size_t len)
{
	if (s->tls)
		tls_conn_describe(s->aux->tls, out, len);
	else if (len)
		out[0] = 0;
}

/* ---- for stream_uring.c (stream_internal.h): its batches end as these calls do ---- */

struct buf *stream_x_rbuf_room(struct stream *s)
{
	return rbuf_room(s);
}

void stream_x_read_plain(struct stream *s)
{
	read_plain(s);
}

void stream_x_read_done(struct stream *s, bool deliver_it, ssize_t nread)
{
	if (nread < 0) {
		uv_buf_t none = { 0 };
		deliver(s, nread, &none);
		return;
	}
	if (deliver_it)
		ops_of(s)->read(s);
	release_rbuf_after_read(s);
}

void stream_x_read_more(struct stream *s)
{
	on_readable(s);
}

int stream_x_try_write(struct stream *s, const uv_buf_t *iov, int n)
{
	return try_write(s, iov, n);
}

int stream_x_flush_settle(struct stream *s, struct stream_out *o, int w)
{
	return flush_settle(s, o, w);
}

void stream_x_flush_tell(struct stream *s, int settled)
{
	flush_tell(s, settled);
}
