/*
 * listener.c - binding, listening and accepting (see listener.h).
 *
 * The listening sockets are sluice's own, watched with uv_poll, rather than
 * libuv's uv_listen: when accept() fails because the process or the system
 * is out of file descriptors, libuv accepts and closes the waiting
 * connections to stop its loop from spinning, so every one of them is
 * dropped without a word. Here accepting pauses instead, and the kernel keeps
 * them in its backlog until descriptors are free again.
 */
#include "sluice/listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "sluice/log.h"

/* One callback accepts at most this many: other work of the loop gets its turn. */
#define ACCEPT_BATCH 64
/* Accepting pauses for this long after a failure, doubling while it fails again. */
#define BACKOFF_FIRST_MS 250
#define BACKOFF_MAX_MS 4000
/* A failing accept is logged at most once per this period (with a count). */
#define FAILURE_LOG_MS 10000

/*
 * Descriptors run out for the process, not for one loop: the workers'
 * listener sets (crew.h) share one report per FAILURE_LOG_MS. uv_now of
 * every loop reads the same clock.
 */
static uint64_t failure_logged_at; /* atomic */
static uint64_t failures_unlogged; /* atomic */

static void pause_accepting(struct listener_set *ls, int err)
{
	struct accept_state *a = &ls->accept;
	uint64_t now = uv_now(ls->loop);
	a->backoff_ms = a->backoff_ms ? MIN(a->backoff_ms * 2, BACKOFF_MAX_MS) : BACKOFF_FIRST_MS;
	a->resume_at = now + a->backoff_ms;
	a->failures++;
	uint64_t unlogged = __atomic_add_fetch(&failures_unlogged, 1, __ATOMIC_RELAXED);
	uint64_t at = __atomic_load_n(&failure_logged_at, __ATOMIC_RELAXED);
	if ((!at || now - at >= FAILURE_LOG_MS) &&
	    __atomic_compare_exchange_n(&failure_logged_at, &at, now, false, __ATOMIC_RELAXED,
					__ATOMIC_RELAXED)) {
		__atomic_sub_fetch(&failures_unlogged, unlogged, __ATOMIC_RELAXED);
		log_error("accept() failed: %s (%llu time(s) since the last report); accepting "
			  "paused for %u ms, waiting connections stay queued",
			  strerror(err), (unsigned long long)unlogged, a->backoff_ms);
	}
	for (struct listener *l = ls->list; l; l = l->next)
		uv_poll_stop(&l->poll);
}

static void on_readable(uv_poll_t *h, int status, int events);

static void resume_accepting(struct listener_set *ls)
{
	ls->accept.resume_at = 0;
	for (struct listener *l = ls->list; l; l = l->next)
		uv_poll_start(&l->poll, UV_READABLE, on_readable);
}

void listener_tick(struct listener_set *ls, uint64_t now)
{
	if (ls->accept.resume_at && now >= ls->accept.resume_at && ls->list && !ls->suspended)
		resume_accepting(ls);
}

void listener_suspend(struct listener_set *ls, bool on)
{
	ls->suspended = on;
	if (on) {
		for (struct listener *l = ls->list; l; l = l->next)
			uv_poll_stop(&l->poll);
	} else if (!ls->accept.resume_at) {
		resume_accepting(ls);
	}
}

void listener_set_init(struct listener_set *ls, uv_loop_t *loop, listener_accept_cb *cb,
		       void *owner, const struct stream_tcp_options *tcp)
{
	*ls = (struct listener_set){ .loop = loop, .accept_cb = cb, .owner = owner, .tcp = tcp };
}

/*
 * A TCP listening socket's options: the ones its connections inherit, and
 * TCP_DEFER_ACCEPT (tcp_defer_accept), with which the kernel hands over a
 * connection only once its startup packet has come, so that accepting it
 * costs no wake-up for the handshake's last ACK and no read that finds
 * nothing (PgBouncer sets it too).
 */
static void tune_listening(const struct listener *l, const struct stream_tcp_options *tcp)
{
	stream_tune_socket(l->fd, tcp);
	int secs = tcp->defer_accept;
	if (setsockopt(l->fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs, sizeof(secs)) != 0)
		log_warning("tcp_defer_accept on %s: %s", l->name, strerror(errno));
}

void listener_set_retune(struct listener_set *ls)
{
	for (struct listener *l = ls->list; l; l = l->next)
		if (!l->is_unix)
			tune_listening(l, ls->tcp);
}

static void on_readable(uv_poll_t *h, int status, int events)
{
	struct listener *l = container_of(h, struct listener, poll);
	struct listener_set *ls = l->set;
	(void)events;
	if (status < 0) {
		log_warning("listening socket %s: %s", l->name, uv_strerror(status));
		return;
	}
	/*
	 * One connection per readable event: the poll is level-triggered, so
	 * the next loop iteration comes back for any other in the backlog, and
	 * an accept that can only say EAGAIN is one syscall per connection
	 * saved. Only failures that lose a connection try again at once.
	 */
	for (int i = 0; i < ACCEPT_BATCH && !ls->accept.resume_at; i++) {
		struct sockaddr_storage peer;
		socklen_t peer_len = sizeof(peer);
		int fd = accept4(l->fd, (struct sockaddr *)&peer, &peer_len,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			ls->accept.backoff_ms = 0;
			ls->accept_cb(ls->owner, fd, l->is_unix, (const struct sockaddr *)&peer);
			return;
		}
		switch (errno) {
		case EAGAIN:
#if EAGAIN != EWOULDBLOCK
		case EWOULDBLOCK:
#endif
			return;
		case EINTR:
		case ECONNABORTED:
		case EPROTO:
			continue; /* that connection is gone; the next may be fine */
		default:
			/* EMFILE, ENFILE, ENOBUFS, ENOMEM: trying again at once cannot help. */
			pause_accepting(ls, errno);
			return;
		}
	}
}

static void on_closed(uv_handle_t *h)
{
	struct listener *l = container_of(h, struct listener, poll);
	close(l->fd);
	free(l);
}

/*
 * Watches fd (bound and listening) as listener name; closes fd on failure.
 * owns_file: name is a unix socket file bound here, to remove at close.
 */
static int watch(struct listener_set *ls, int fd, const char *name, bool is_unix, bool owns_file,
		 bool quiet)
{
	struct listener *l = xcalloc(1, sizeof(*l));
	l->set = ls;
	l->fd = fd;
	l->is_unix = is_unix;
	l->owns_file = owns_file;
	snprintf(l->name, sizeof(l->name), "%s", name);
	int rc = uv_poll_init_socket(ls->loop, &l->poll, fd);
	if (rc < 0) {
		log_error("cannot listen on %s: %s", name, uv_strerror(rc));
		close(fd);
		free(l);
		return rc;
	}
	if (!is_unix)
		tune_listening(l, ls->tcp);
	l->next = ls->list;
	ls->list = l;
	if (!ls->accept.resume_at && !ls->suspended)
		uv_poll_start(&l->poll, UV_READABLE, on_readable);
	if (!quiet)
		log_info("listening on %s", name);
	return 0;
}

static int listen_sockaddr(struct listener_set *ls, const struct config *cfg,
			   const struct sockaddr *sa, socklen_t len)
{
	bool v6 = sa->sa_family == AF_INET6;
	char ip[INET6_ADDRSTRLEN] = "?", name[160];
	const void *a = v6 ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
			   : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
	inet_ntop(sa->sa_family, a, ip, sizeof(ip));
	int port = ntohs(v6 ? ((const struct sockaddr_in6 *)sa)->sin6_port
			    : ((const struct sockaddr_in *)sa)->sin_port);
	snprintf(name, sizeof(name), v6 ? "[%s]:%d" : "%s:%d", ip, port);
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		int rc = -errno;
		log_error("cannot listen on %s: %s", name, strerror(errno));
		return rc;
	}
	int on = 1;
	/* A restart must not wait for the old process's connections in TIME_WAIT. */
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (cfg->so_reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0)
		log_warning("so_reuseport on %s: %s", name, strerror(errno));
	if (v6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
	if (bind(fd, sa, len) != 0 || listen(fd, cfg->listen_backlog) != 0) {
		int rc = -errno;
		log_error("cannot listen on %s: %s", name, strerror(errno));
		close(fd);
		return rc;
	}
	return watch(ls, fd, name, false, false, false);
}

/* host is an IP address or a name, which is resolved now (startup) to every address it has. */
static int listen_tcp(struct listener_set *ls, const struct config *cfg, const char *host, int port)
{
	char service[16];
	snprintf(service, sizeof(service), "%d", port);
	struct addrinfo hints = { .ai_family = AF_UNSPEC,
				  .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	int rc = getaddrinfo(host, service, &hints, &res);
	if (rc != 0) {
		log_error("listen_addr %s: %s", host, gai_strerror(rc));
		return UV_EINVAL;
	}
	/* A name is served when one of its addresses is (localhost without IPv6). */
	int ok = 0, err = UV_EADDRNOTAVAIL;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		int one = listen_sockaddr(ls, cfg, ai->ai_addr, ai->ai_addrlen);
		if (one == 0)
			ok++;
		else
			err = one;
	}
	freeaddrinfo(res);
	return ok ? 0 : err;
}

/*
 * Gives the socket file unix_socket_group (a name or a number), as PgBouncer
 * does, so that members of that group may connect with a mode like 0770.
 */
static int set_group(const char *path, const char *group)
{
	if (!group || !*group)
		return 0;
	char *end;
	errno = 0;
	unsigned long v = strtoul(group, &end, 10);
	gid_t gid;
	if (!*end && !errno) {
		gid = (gid_t)v;
	} else {
		const struct group *gr = getgrnam(group);
		if (!gr) {
			log_error("could not find group '%s'", group);
			return -1;
		}
		gid = gr->gr_gid;
	}
	if (chown(path, (uid_t)-1, gid) != 0) {
		log_error("chown(%s, group %s) failed: %s", path, group, strerror(errno));
		return -1;
	}
	return 0;
}

static int listen_unix(struct listener_set *ls, const struct config *cfg)
{
	const char *dir = cfg->unix_socket_dir;
	int port = cfg->listen_port;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/.s.PGSQL.%d", dir, port);
	if (n < 0 || (size_t)n >= sizeof(sa.sun_path)) {
		log_error("cannot listen in %s: the socket path is too long", dir);
		return UV_ENAMETOOLONG;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		int rc = -errno;
		log_error("cannot listen on %s: %s", sa.sun_path, strerror(errno));
		return rc;
	}
	/* A socket file left by a process that died would make bind fail. */
	unlink(sa.sun_path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int rc = -errno;
		log_error("cannot listen on %s: %s", sa.sun_path, strerror(errno));
		close(fd);
		return rc;
	}
	/* Mode and group before listen(): no client connects while they are the defaults. */
	chmod(sa.sun_path, (mode_t)cfg->unix_socket_mode);
	if (set_group(sa.sun_path, cfg->unix_socket_group) != 0) {
		close(fd);
		unlink(sa.sun_path);
		return UV_EINVAL;
	}
	if (listen(fd, cfg->listen_backlog) != 0) {
		int rc = -errno;
		log_error("cannot listen on %s: %s", sa.sun_path, strerror(errno));
		close(fd);
		unlink(sa.sun_path);
		return rc;
	}
	return watch(ls, fd, sa.sun_path, true, true, false);
}

int listener_chown_unix(struct listener_set *ls, const struct config *cfg, unsigned uid,
			unsigned gid)
{
	for (struct listener *l = ls->list; l; l = l->next) {
		/* An adopted socket's file belongs to whoever made it (SocketUser=). */
		if (!l->is_unix || !l->owns_file)
			continue;
		/* A group set by unix_socket_group stays. */
		gid_t g = *cfg->unix_socket_group ? (gid_t)-1 : (gid_t)gid;
		if (chown(l->name, (uid_t)uid, g) != 0) {
			int rc = -errno;
			log_error("chown(%s) failed: %s", l->name, strerror(errno));
			return rc;
		}
	}
	return 0;
}

/*
 * Why fd cannot be adopted, or NULL when it is a listening stream socket of
 * a family sluice serves (its address then in *ss, *sslen); *rc is set to
 * the error to return.
 */
static const char *unusable(int fd, struct sockaddr_storage *ss, socklen_t *sslen, int *rc)
{
	int type = 0, listening = 0;
	socklen_t len = sizeof(type);
	*rc = UV_EINVAL;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
		*rc = -errno;
		return strerror(errno); /* not open, or not a socket */
	}
	if (type != SOCK_STREAM)
		return "not a stream socket (ListenStream= in the .socket unit)";
	len = sizeof(listening);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening)
		return "not listening (Accept=no in the .socket unit)";
	if (getsockname(fd, (struct sockaddr *)ss, sslen) != 0) {
		*rc = -errno;
		return strerror(errno);
	}
	if (ss->ss_family != AF_INET && ss->ss_family != AF_INET6 && ss->ss_family != AF_UNIX)
		return "not a TCP or unix socket";
	int flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
		*rc = -errno;
		return strerror(errno);
	}
	return NULL;
}

/*
 * Adopts fd, a socket the service manager passed (or, with
 * from_predecessor, the process sluice takes over from): made non-blocking
 * and watched; its backlog and options are left as they are. A unix
 * socket's file is the service manager's, but a predecessor's becomes this
 * set's, to remove at exit as the predecessor would have. Closes fd on
 * failure.
 */
static int adopt(struct listener_set *ls, int fd, bool from_predecessor)
{
	const char *origin = from_predecessor ? "from the previous process"
					      : "passed by the service manager";
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	int rc;
	memset(&ss, 0, sizeof(ss));
	const char *why = unusable(fd, &ss, &sslen, &rc);
	if (why) {
		log_error("socket fd %d %s: %s", fd, origin, why);
		close(fd);
		return rc;
	}
	/* sd_listen_fds made it close-on-exec already; a hand-made environment may not have. */
	(void)fcntl(fd, F_SETFD, FD_CLOEXEC);

	char name[160];
	bool is_unix = ss.ss_family == AF_UNIX;
	if (is_unix) {
		const struct sockaddr_un *un = (const struct sockaddr_un *)&ss;
		size_t n = sslen > offsetof(struct sockaddr_un, sun_path)
				   ? sslen - offsetof(struct sockaddr_un, sun_path)
				   : 0;
		if (n == 0)
			snprintf(name, sizeof(name), "an unnamed unix socket");
		else if (un->sun_path[0] == '\0') /* abstract: the name follows the NUL */
			snprintf(name, sizeof(name), "@%.*s", (int)MIN(n - 1, 100),
				 un->sun_path + 1);
		else
			snprintf(name, sizeof(name), "%.*s", (int)MIN(n, sizeof(un->sun_path)),
				 un->sun_path);
	} else {
		bool v6 = ss.ss_family == AF_INET6;
		const struct sockaddr_in *in4 = (const struct sockaddr_in *)&ss;
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
		char ip[INET6_ADDRSTRLEN] = "?";
		inet_ntop(ss.ss_family,
			  v6 ? (const void *)&in6->sin6_addr : (const void *)&in4->sin_addr, ip,
			  sizeof(ip));
		snprintf(name, sizeof(name), v6 ? "[%s]:%d" : "%s:%d", ip,
			 ntohs(v6 ? in6->sin6_port : in4->sin_port));
	}
	/* A predecessor's socket file is this set's now: its name is the path unlink needs. */
	if (from_predecessor && is_unix && name[0] == '/')
		return watch(ls, fd, name, true, true, false);
	/* Otherwise the name is only shown (logs): the file is never unlinked or chowned. */
	size_t len = strlen(name);
	snprintf(name + len, sizeof(name) - len, " (fd %d, %s)", fd, origin);
	return watch(ls, fd, name, is_unix, false, false);
}

/* Adopts fds[0..n) in order; after a failure the rest are closed, so that all are taken. */
static int adopt_each(struct listener_set *ls, const int *fds, int n, bool from_predecessor)
{
	int rc = 0;
	for (int i = 0; i < n; i++) {
		if (rc == 0)
			rc = adopt(ls, fds[i], from_predecessor);
		else
			close(fds[i]);
	}
	return rc;
}

/* Whether setting key has its default value in cfg. */
static bool is_default(const struct config *cfg, const char *key)
{
	int i = config_setting_index(key);
	if (i < 0)
		return true;
	char v[256];
	config_setting_value(cfg, (size_t)i, v, sizeof(v));
	return strcmp(v, config_setting_default((size_t)i)) == 0;
}

int listener_adopt_all(struct listener_set *ls, const struct config *cfg, const int *fds, int n)
{
	/* What the service manager's socket unit decides instead (PgBouncer warns the same way). */
	static const char *const unused[] = { "listen_addr",	  "unix_socket_dir",
					      "unix_socket_mode", "unix_socket_group",
					      "listen_backlog",	  "so_reuseport" };
	for (size_t i = 0; i < ARRAY_SIZE(unused); i++) {
		int k = config_setting_index(unused[i]);
		if (k < 0 || is_default(cfg, unused[i]))
			continue;
		char v[256];
		config_setting_value(cfg, (size_t)k, v, sizeof(v));
		log_warning("sockets passed by the service manager: %s = %s is ignored (the "
			    ".socket unit says where and how to listen)",
			    unused[i], v);
	}
	return adopt_each(ls, fds, n, false);
}

int listener_take_over(struct listener_set *ls, const int *fds, int n)
{
	return adopt_each(ls, fds, n, true);
}

int listener_share(struct listener_set *ls, const struct listener_set *from)
{
	for (const struct listener *l = from->list; l; l = l->next) {
		int fd = fcntl(l->fd, F_DUPFD_CLOEXEC, 0);
		if (fd < 0) {
			int rc = -errno;
			log_error("cannot share the listener on %s: %s", l->name, strerror(errno));
			return rc;
		}
		/* The file, if any, stays from's: only its set removes it; one log line is enough. */
		int rc = watch(ls, fd, l->name, l->is_unix, false, true);
		if (rc != 0)
			return rc;
	}
	return 0;
}

void listener_hand_over(struct listener_set *ls)
{
	for (struct listener *l = ls->list; l; l = l->next)
		l->owns_file = false;
	listener_stop(ls, false);
}

int listener_start_all(struct listener_set *ls, const struct config *cfg)
{
	int rc = 0;
	if (cfg->listen_addr && *cfg->listen_addr) {
		char *list = xstrdup(cfg->listen_addr), *save = NULL;
		for (char *tok = strtok_r(list, ", ", &save); tok && rc == 0;
		     tok = strtok_r(NULL, ", ", &save)) {
			if (strcmp(tok, "*") == 0) {
				rc = listen_tcp(ls, cfg, "0.0.0.0", cfg->listen_port);
				/* IPv6 is optional: a host without it still serves IPv4. */
				if (rc == 0 && listen_tcp(ls, cfg, "::", cfg->listen_port) != 0)
					log_warning("IPv6 listener not available");
			} else {
				rc = listen_tcp(ls, cfg, tok, cfg->listen_port);
			}
		}
		free(list);
	}
	if (rc == 0 && cfg->unix_socket_dir && *cfg->unix_socket_dir)
		rc = listen_unix(ls, cfg);
	return rc;
}

void listener_stop(struct listener_set *ls, bool keep_unix)
{
	struct listener **link = &ls->list;
	while (*link) {
		struct listener *l = *link;
		if (keep_unix && l->is_unix) {
			link = &l->next;
			continue;
		}
		*link = l->next;
		/* Only a file bound here: an adopted socket's stays for the next start. */
		if (l->owns_file)
			unlink(l->name);
		uv_close((uv_handle_t *)&l->poll, on_closed);
	}
}
