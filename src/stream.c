/*
 * stream.c - libuv stream plumbing for every socket (see stream.h).
 *
 * This is the only file that starts or stops reads and issues writes. Writes
 * are batched per loop iteration: the owner queues slices during its read
 * callback, and the loop owner's check step calls stream_ctx_flush, which
 * tries one non-blocking writev per stream (try_write) and hands only a
 * remainder to uv_write.
 * A request that goes to uv_write holds a reference on every buffer it
 * points into until its callback.
 */
#include "sluice/stream.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

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
	ctx->max_packet_size = UINT32_MAX;
}

void stream_ctx_deinit(struct stream_ctx *ctx)
{
	while (ctx->out_free) {
		struct stream_out *o = ctx->out_free;
		ctx->out_free = o->next_free;
		free(o);
	}
	ctx->out_free_count = 0;
	free(ctx->cipher_in);
	ctx->cipher_in = NULL;
	buf_pool_deinit(&ctx->bufs);
}

static void tls_advance(struct stream *s);

void stream_ctx_flush(struct stream_ctx *ctx)
{
	struct stream *s;
	while ((s = TAILQ_FIRST(&ctx->tls_ready)) != NULL) {
		TAILQ_REMOVE(&ctx->tls_ready, s, tls_link);
		s->in_tls_ready = false;
		tls_advance(s);
	}
	while ((s = TAILQ_FIRST(&ctx->flush_queue)) != NULL) {
		TAILQ_REMOVE(&ctx->flush_queue, s, flush_link);
		s->in_flush_queue = false;
		stream_flush(s);
	}
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
	s->read_max = ctx->max_packet_size;
	return pipe ? uv_pipe_init(ctx->loop, &s->h.pipe, 0) : uv_tcp_init(ctx->loop, &s->h.tcp);
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
	uv_os_fd_t fd;
	if (!s->is_pipe && uv_fileno(&s->h.handle, &fd) == 0)
		stream_tune_socket(fd, &s->ctx->tcp);
}

int stream_accept(struct stream *s, uv_stream_t *listener)
{
	int rc = uv_accept(listener, &s->h.base);
	if (rc == 0)
		apply_tcp_options(s);
	return rc;
}

int stream_adopt(struct stream *s, int fd)
{
	int rc = s->is_pipe ? uv_pipe_open(&s->h.pipe, fd) : uv_tcp_open(&s->h.tcp, fd);
	if (rc != 0)
		close(fd);
	return rc;
}

/*
 * Connect, resolve and shutdown requests are allocated for their one use:
 * only a few streams ever connect or linger, so they do not weigh on every
 * idle client. libuv always calls their callbacks (a connect's with
 * UV_ECANCELED when its handle is closed), and the callbacks free them.
 */

/* A name being resolved; it outlives its stream if the stream is closed first. */
struct dial_req {
	uv_getaddrinfo_t gai;
	struct stream *s; /* NULL once the stream stopped waiting for it */
};

/* Forgets a resolution in progress: its callback will only free it. */
static void dial_abandon_resolve(struct stream *s)
{
	if (!s->dial)
		return;
	s->dial->s = NULL;
	(void)uv_cancel((uv_req_t *)&s->dial->gai);
	s->dial = NULL;
}

/* Takes s off the dial queue; a connect or resolution still running is ignored from now on. */
static void dial_stop(struct stream *s)
{
	if (!s->dialing)
		return;
	s->dialing = false;
	TAILQ_REMOVE(&s->ctx->dial_queue, s, dial_link);
	dial_abandon_resolve(s);
}

static void dial_done(struct stream *s, int status)
{
	if (!s->dialing)
		return; /* timed out or closed meanwhile */
	dial_stop(s);
	if (status == 0)
		apply_tcp_options(s);
	s->ops->connect(s, status);
}

/* An error found while stream_dial runs is reported at the next tick, never from within it. */
static void dial_fail_later(struct stream *s, int err)
{
	s->dial_error = err;
	s->dial_deadline = 0;
}

static void on_connect(uv_connect_t *req, int status)
{
	struct stream *s = req->data;
	free(req);
	if (s->closing)
		return;
	dial_done(s, status);
}

static int connect_tcp(struct stream *s, const struct sockaddr *addr)
{
	uv_connect_t *req = xmalloc(sizeof(*req));
	req->data = s;
	int rc = uv_tcp_connect(req, &s->h.tcp, addr, on_connect);
	if (rc != 0)
		free(req);
	return rc;
}

static void on_resolved(uv_getaddrinfo_t *gai, int status, struct addrinfo *res)
{
	struct dial_req *d = container_of(gai, struct dial_req, gai);
	struct stream *s = d->s;
	free(d);
	if (s) {
		s->dial = NULL;
		if (status == 0 && !res)
			status = UV_EAI_NONAME;
		if (status == 0) {
			s->resolved = true;
			status = connect_tcp(s, res->ai_addr);
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
	s->dialing = true;
	s->dial_deadline = timeout_ms ? uv_now(ctx->loop) + timeout_ms : UINT64_MAX;
	TAILQ_INSERT_TAIL(&ctx->dial_queue, s, dial_link);
	if (pipe) {
		char path[PATH_MAX];
		if (port > 0)
			snprintf(path, sizeof(path), "%s/.s.PGSQL.%d", host, port);
		else
			snprintf(path, sizeof(path), "%s", host);
		s->resolved = true;
		uv_connect_t *req = xmalloc(sizeof(*req));
		req->data = s;
		uv_pipe_connect(req, &s->h.pipe, path,
				on_connect); /* reports errors through on_connect */
		return 0;
	}
	/* A numeric address needs no trip to the thread pool. */
	struct sockaddr_storage ss;
	if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) == 0 ||
	    uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) == 0) {
		s->resolved = true;
		rc = connect_tcp(s, (const struct sockaddr *)&ss);
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
	s->dial = d;
	return 0;
}

bool stream_address(const struct stream *s, bool local, char *host, size_t len, int *port)
{
	if (s->is_pipe)
		return false;
	struct sockaddr_storage ss;
	int n = sizeof(ss);
	int rc = local ? uv_tcp_getsockname(&s->h.tcp, (struct sockaddr *)&ss, &n)
		       : uv_tcp_getpeername(&s->h.tcp, (struct sockaddr *)&ss, &n);
	if (rc != 0)
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
	int n = sizeof(*ss);
	return !s->is_pipe && uv_tcp_getpeername(&s->h.tcp, (struct sockaddr *)ss, &n) == 0;
}

bool stream_peer_cred(const struct stream *s, unsigned *uid, int *pid)
{
	uv_os_fd_t fd;
	if (!s->is_pipe || uv_fileno(&s->h.handle, &fd) != 0)
		return false;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
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
	int n = sizeof(ss);
	int rc = local ? uv_tcp_getsockname(&s->h.tcp, (struct sockaddr *)&ss, &n)
		       : uv_tcp_getpeername(&s->h.tcp, (struct sockaddr *)&ss, &n);
	if (rc != 0)
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
static void on_close(uv_handle_t *h);

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

/* Room at the end of s's read buffer for the next bytes (a fresh or moved buffer if needed). */
static void rbuf_space(struct stream *s, uv_buf_t *out)
{
	struct buf *b = s->rbuf;
	if (!b) {
		b = s->rbuf = buf_get(&s->ctx->bufs, BUF_SIZE);
	} else if (buf_space(b) < READ_MIN_SPACE) {
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
	out->base = (char *)b->data + b->end;
	out->len = buf_space(b);
}

/* Ciphertext is read into the context's one scratch area and fed to the engine at once. */
#define CIPHER_IN_SIZE (BUF_SIZE + 1024)

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
	struct stream *s = container_of(h, struct stream, h.handle);
	(void)suggested;
	if (s->tls && !s->lingering) {
		if (!s->ctx->cipher_in)
			s->ctx->cipher_in = xmalloc(CIPHER_IN_SIZE);
		*out = uv_buf_init((char *)s->ctx->cipher_in, CIPHER_IN_SIZE);
		return;
	}
	rbuf_space(s, out);
}


static void on_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *ub)
{
	struct stream *s = container_of(h, struct stream, h.base);
	if (s->lingering) {
		/* Closing: input is discarded until the peer closes its side. */
		if (s->rbuf)
			s->rbuf->start = s->rbuf->end = 0;
		if (nread < 0)
			finish_close(s);
		return;
	}
	if (nread > 0 && s->tls) {
		tls_conn_feed(s->tls, ub->base, (size_t)nread);
		tls_advance(s);
		return;
	}
	if (nread > 0) {
		s->rbuf->end += (uint32_t)nread;
		s->ops->read(s);
		release_rbuf_after_read(s);
		return;
	}
	if (nread == UV_EOF)
		s->eof = true;
	if (nread < 0 && !s->closing)
		s->ops->error(s, (int)nread);
	release_rbuf_after_read(s);
}

void stream_read_now(struct stream *s)
{
	uv_os_fd_t fd;
	if (!s->reading || uv_fileno(&s->h.handle, &fd) != 0)
		return;
	uv_buf_t b;
	on_alloc(&s->h.handle, 0, &b);
	ssize_t n = recv(fd, b.base, b.len, MSG_DONTWAIT);
	if (n > 0)
		on_read(&s->h.base, n, &b);
	else if (n == 0)
		on_read(&s->h.base, UV_EOF, &b);
	else
		release_rbuf_after_read(s); /* nothing yet (or an error): the loop will see it */
}

static void update_reading(struct stream *s)
{
	bool want = s->want_read && !s->paused && !s->suspended && !s->closing;
	if (want == s->reading)
		return;
	if (want) {
		if (uv_read_start(&s->h.base, on_alloc, on_read) == 0)
			s->reading = true;
		/* The socket may have nothing more to say: the engine's input is handed over at the check step. */
		if (s->reading && s->tls && !s->tls_handshaking && !s->in_tls_ready &&
		    tls_conn_has_input(s->tls)) {
			s->in_tls_ready = true;
			TAILQ_INSERT_TAIL(&s->ctx->tls_ready, s, tls_link);
		}
	} else {
		uv_read_stop(&s->h.base);
		s->reading = false;
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

void stream_resume(struct stream *s)
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
	uv_os_fd_t fd;
	if (uv_fileno(&s->h.handle, &fd) != 0)
		return -1;
	return fd;
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
	o->bytes = 0;
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

static void queue_slice(struct stream *dst, struct buf *b, const uint8_t *p, size_t len)
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
		if (o->bufs[o->n - 1] == b && (uint8_t *)last->base + last->len == p) {
			last->len += len;
			dst->pending += len;
			return;
		}
	}
	if (o->n == STREAM_IOV_MAX) {
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
	dst->pending += len;
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
	/* Copies go into a staging buffer that lives only until the next flush. */
	struct buf *st = dst->stage;
	if (!st || buf_space(st) < len) {
		if (st)
			buf_unref(st);
		st = dst->stage = buf_get(&dst->ctx->bufs, MAX(len, (size_t)BUF_SIZE));
	}
	memcpy(st->data + st->end, p, len);
	st->end += (uint32_t)len;
	queue_slice(dst, st, st->data + st->end - len, len);
}

/* Drops whatever is queued and not yet handed to the kernel or libuv. */
static void release_out(struct stream *s)
{
	struct stream_out *o = s->out;
	if (o) {
		for (int i = o->first; i < o->n; i++)
			buf_unref(o->bufs[i]);
		out_put(s->ctx, o);
		s->out = NULL;
	}
	s->pending = 0;
	if (s->stage) {
		buf_unref(s->stage);
		s->stage = NULL;
	}
}

static void on_write(uv_write_t *req, int status)
{
	struct stream_out *o = container_of(req, struct stream_out, req);
	struct stream *s = o->s;
	for (int i = o->first; i < o->n; i++)
		buf_unref(o->bufs[i]);
	s->queued -= o->bytes;
	out_put(s->ctx, o);
	if (s->closing)
		return;
	if (status < 0) {
		s->ops->error(s, status);
		return;
	}
	if (s->queued == 0 && s->ops->drain)
		s->ops->drain(s);
}

static void tls_drain(struct stream *s, bool may_flush);

/*
 * uv_try_write's contract (bytes written, UV_EAGAIN, or another error) with
 * one writev of our own: libuv's checks cost more than the write's own
 * instructions, and the callers already know what they test (no uv_write in
 * flight, the stream not closed). A stream still connecting goes through
 * libuv, which knows whether the connect has finished. uv_buf_t is laid out
 * as struct iovec on Unix (uv/unix.h says it may be cast).
 */
static int try_write(struct stream *s, const uv_buf_t *iov, int n)
{
	uv_os_fd_t fd;
	if (s->dialing || uv_fileno(&s->h.handle, &fd) != 0)
		return uv_try_write(&s->h.base, iov, (unsigned int)n);
	ssize_t w;
	do
		w = writev(fd, (const struct iovec *)iov, n);
	while (w < 0 && errno == EINTR);
	if (w >= 0)
		return (int)w;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
		return UV_EAGAIN;
	return uv_translate_sys_error(errno);
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
	/* The staging buffer is referenced by the slices that need it; let it go. */
	if (s->stage) {
		buf_unref(s->stage);
		s->stage = NULL;
	}
	int n = o->n;
	/* Writing ahead of an uv_write still in flight would reorder bytes. */
	if (s->queued == 0) {
		int w = try_write(s, o->iov, n);
		if (w < 0 && w != UV_EAGAIN) {
			release_out(s);
			s->ops->error(s, w);
			return;
		}
		size_t done = w > 0 ? (size_t)w : 0;
		while (o->first < n && done >= o->iov[o->first].len) {
			done -= o->iov[o->first].len;
			buf_unref(o->bufs[o->first]);
			o->first++;
		}
		if (o->first < n) {
			o->iov[o->first].base += done;
			o->iov[o->first].len -= done;
		}
	}
	s->pending = 0;
	s->out = NULL;
	if (o->first == n) {
		out_put(s->ctx, o);
		/* A reader paused for our sake waits for this, even if no uv_write ran. */
		if (s->ops->drain)
			s->ops->drain(s);
		return;
	}
	/* The batch itself becomes the write request: it keeps the buffer references. */
	o->s = s;
	for (int i = o->first; i < n; i++)
		o->bytes += o->iov[i].len;
	int rc = uv_write(&o->req, &s->h.base, o->iov + o->first, (unsigned int)(n - o->first),
			  on_write);
	if (rc < 0) {
		for (int i = o->first; i < n; i++)
			buf_unref(o->bufs[i]);
		out_put(s->ctx, o);
		s->ops->error(s, rc);
		return;
	}
	s->queued += o->bytes;
}

void stream_flush(struct stream *s)
{
	if (s->tls && !s->closing) {
		if (s->tls_failed) {
			s->tls_failed = false;
			release_out(s);
			s->ops->error(s, UV_EPROTO);
			return;
		}
		tls_drain(s, true);
	}
	flush_out(s);
}

static void on_close(uv_handle_t *h)
{
	struct stream *s = container_of(h, struct stream, h.handle);
	if (s->rbuf) {
		buf_unref(s->rbuf);
		s->rbuf = NULL;
	}
	if (s->stage) {
		buf_unref(s->stage);
		s->stage = NULL;
	}
	if (s->tls) {
		tls_conn_free(s->tls);
		s->tls = NULL;
		free(s->tls_early);
		s->tls_early = NULL;
	}
	if (s->ops->close)
		s->ops->close(s);
}

/* Takes the stream off every queue of its context and hands the handle to uv_close. */
static void finish_close(struct stream *s)
{
	release_out(s);
	if (s->in_flush_queue) {
		TAILQ_REMOVE(&s->ctx->flush_queue, s, flush_link);
		s->in_flush_queue = false;
	}
	if (s->lingering) {
		TAILQ_REMOVE(&s->ctx->linger_queue, s, flush_link);
		s->lingering = false;
	}
	if (s->in_tls_ready) {
		TAILQ_REMOVE(&s->ctx->tls_ready, s, tls_link);
		s->in_tls_ready = false;
	}
	if (s->reading) {
		uv_read_stop(&s->h.base);
		s->reading = false;
	}
	if (!uv_is_closing(&s->h.handle))
		uv_close(&s->h.handle, on_close);
}

void stream_close(struct stream *s)
{
	if (s->closing)
		return;
	dial_stop(s);
	if (s->tls && !s->tls_handshaking) {
		tls_conn_shutdown(s->tls);
		tls_drain(s, false);
	}
	s->closing = true;
	/* One last non-blocking attempt, errors ignored: the connection is ending. */
	if (s->out && s->queued == 0)
		(void)try_write(s, s->out->iov + s->out->first, s->out->n - s->out->first);
	finish_close(s);
}

static void on_linger_shutdown(uv_shutdown_t *req, int status)
{
	struct stream *s = req->data;
	free(req);
	if (status < 0 && s->lingering)
		finish_close(s);
}

void stream_close_linger(struct stream *s)
{
	if (s->closing)
		return;
	if (s->eof || s->dialing) {
		stream_close(s);
		return;
	}
	if (s->tls && !s->tls_handshaking)
		tls_conn_shutdown(s->tls);
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
	/* Both queues use flush_link: leave the flush queue first. */
	if (s->in_flush_queue) {
		TAILQ_REMOVE(&s->ctx->flush_queue, s, flush_link);
		s->in_flush_queue = false;
	}
	s->lingering = true;
	s->linger_since = uv_now(s->ctx->loop);
	TAILQ_INSERT_TAIL(&s->ctx->linger_queue, s, flush_link);
	uv_shutdown_t *req = xmalloc(sizeof(*req));
	req->data = s;
	if (uv_shutdown(req, &s->h.base, on_linger_shutdown) != 0) {
		free(req);
		finish_close(s);
		return;
	}
	if (!s->reading && uv_read_start(&s->h.base, on_alloc, on_read) == 0)
		s->reading = true;
}

void stream_ctx_tick(struct stream_ctx *ctx, uint64_t now, uint64_t linger_ms)
{
	struct stream *s;
	while ((s = TAILQ_FIRST(&ctx->linger_queue)) != NULL && now - s->linger_since >= linger_ms)
		finish_close(s);
	/* From the head after each report: its owner may close other dialing streams. */
	bool reported;
	do {
		reported = false;
		TAILQ_FOREACH(s, &ctx->dial_queue, dial_link) {
			if (now >= s->dial_deadline) {
				dial_done(s, s->dial_error ? s->dial_error : UV_ETIMEDOUT);
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
	while (tls_conn_pending(s->tls) > 0) {
		if (s->out && s->out->n == STREAM_IOV_MAX) {
			if (!may_flush)
				return;
			flush_out(s);
			if (s->closing)
				return;
		}
		struct buf *b = buf_get(&s->ctx->bufs, BUF_SIZE);
		b->end = (uint32_t)tls_conn_take(s->tls, b->data, b->cap);
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
		s->tls_early = xrealloc(s->tls_early, s->tls_early_len + len);
		memcpy(s->tls_early + s->tls_early_len, p, len);
		s->tls_early_len += len;
		return;
	}
	if (tls_conn_write(s->tls, p, len) != TLS_OK)
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
		size_t n = tls_conn_read(s->tls, b.base, b.len, &st);
		if (n == 0) {
			release_rbuf_after_read(s);
			/* Reading can produce output (a reply to a key update). */
			if (tls_conn_pending(s->tls) > 0)
				schedule_flush(s);
			if (st == TLS_WANT)
				return;
			if (st == TLS_CLOSED)
				s->eof = true;
			s->ops->error(s, st == TLS_CLOSED ? UV_EOF : UV_EPROTO);
			return;
		}
		s->rbuf->end += (uint32_t)n;
		s->ops->read(s);
		release_rbuf_after_read(s);
	}
}

/* Runs the engine on the ciphertext fed: the handshake first, then the owner's input. */
static void tls_advance(struct stream *s)
{
	if (s->tls_handshaking) {
		enum tls_status st = tls_conn_handshake(s->tls);
		if (tls_conn_pending(s->tls) > 0)
			schedule_flush(s);
		if (st == TLS_WANT)
			return;
		s->tls_handshaking = false;
		if (st == TLS_OK && s->tls_early_len) {
			tls_write(s, s->tls_early, s->tls_early_len);
			free(s->tls_early);
			s->tls_early = NULL;
			s->tls_early_len = 0;
		}
		s->tls_cb(s, st == TLS_OK ? 0 : UV_EPROTO);
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
	s->tls = tls_conn_new(ctx, host);
	s->tls_cb = cb;
	s->tls_early = NULL;
	s->tls_early_len = 0;
	s->tls_handshaking = true;
	if (s->rbuf && buf_avail(s->rbuf) > 0) {
		tls_conn_feed(s->tls, s->rbuf->data + s->rbuf->start, buf_avail(s->rbuf));
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
		TAILQ_INSERT_TAIL(&s->ctx->tls_ready, s, tls_link);
	}
}

struct tls_conn *stream_take_tls(struct stream *s)
{
	if (!s->tls || s->tls_handshaking || s->in_tls_ready || s->tls_failed ||
	    tls_conn_has_input(s->tls) || tls_conn_pending(s->tls) > 0)
		return NULL;
	struct tls_conn *t = s->tls;
	s->tls = NULL;
	free(s->tls_early);
	s->tls_early = NULL;
	return t;
}

void stream_give_tls(struct stream *s, struct tls_conn *t)
{
	s->tls = t;
	s->tls_cb = NULL;
	s->tls_early = NULL;
	s->tls_early_len = 0;
	s->tls_handshaking = false;
}

const char *stream_tls_error(const struct stream *s)
{
	return s->tls ? tls_conn_error(s->tls) : "not a TLS connection";
}

void stream_tls_describe(const struct stream *s, char *out, size_t len)
{
	if (s->tls)
		tls_conn_describe(s->tls, out, len);
	else if (len)
		out[0] = 0;
}
