/*
 * listener.h - the TCP and unix-socket listeners of one loop.
 *
 * A listener set owns the listening sockets and hands each accepted socket
 * to its owner's callback (the worker's, which makes it a client:
 * max_client_conn is enforced there, where the client can be told why in an
 * ErrorResponse). When accept() fails (out of file descriptors), accepting
 * pauses with a growing backoff and the waiting connections stay in the
 * kernel's backlog.
 *
 * The sockets are opened here from the configuration (listen_addr,
 * listen_port, unix_socket_dir), or adopted: sockets a service manager opened
 * and passed (socket activation), which the process layer hands down
 * (listener_adopt_all). Either way they are the set's, and closed with it; a
 * unix socket file is removed at close only when this set created it.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "sluice/common.h"
#include "sluice/config.h"
#include "sluice/stream.h"

/*
 * A connection was accepted: fd is non-blocking and the callee's, with the
 * listener's socket options; peer is its address (valid during the call).
 */
typedef void listener_accept_cb(void *owner, int fd, bool is_unix, const struct sockaddr *peer);

struct listener {
	uv_poll_t poll; /* readable: connections wait in the backlog */
	int fd;
	struct listener_set *set;
	bool is_unix;
	bool owns_file; /* a unix socket file bound here: removed when it closes */
	/* An address or a unix socket path (chown, unlink); adopted: with its fd, for the logs. */
	char name[160];
	struct listener *next;
};

/* Accepting after accept() failed: paused until resume_at. */
struct accept_state {
	uint64_t resume_at; /* uv_now; 0 while accepting */
	uint32_t backoff_ms; /* the last pause; 0 after a successful accept */
	uint64_t failures; /* all of them: sluice_accept_failures_total */
};

struct listener_set {
	uv_loop_t *loop;
	struct listener *list; /* NULL when none is open */
	struct accept_state accept;
	bool suspended; /* the console's SUSPEND: nothing is accepted, connections wait in the backlog */
	listener_accept_cb *accept_cb;
	void *owner;
	/* What TCP listeners get, and so every socket they accept (stream_tune_socket). */
	const struct stream_tcp_options *tcp;
};

/* tcp is the owner's, read again at every listener_set_retune. */
void listener_set_init(struct listener_set *ls, uv_loop_t *loop, listener_accept_cb *cb,
		       void *owner, const struct stream_tcp_options *tcp);
/* After *tcp changed (a reload): applies it to the TCP listeners, for the sockets they accept next. */
void listener_set_retune(struct listener_set *ls);
/* Opens every listener cfg asks for. Errors are logged and returned. */
int listener_start_all(struct listener_set *ls, const struct config *cfg) WUR;
/*
 * Listens on fds[0..n) instead of what cfg asks for: listening stream
 * sockets (TCP over IPv4 or IPv6, or unix) that the service manager opened
 * and passed. listen_addr and unix_socket_dir are then not used (a warning
 * names the ones set to other than their defaults); the backlog, the socket
 * file's mode and owner are the service manager's to set. Every fd is the
 * set's from this call on, also on error (those not adopted are closed). An
 * fd that is not a listening stream socket of those families fails the
 * start: 0, or a negative errno (logged).
 */
int listener_adopt_all(struct listener_set *ls, const struct config *cfg, const int *fds,
		       int n) WUR;
/*
 * Listens on fds[0..n), the listening sockets of the process this one takes
 * over from (takeover.h), as listener_adopt_all does, except that the unix
 * socket's file becomes the set's (removed at exit). 0 or a negative errno.
 */
int listener_take_over(struct listener_set *ls, const int *fds, int n) WUR;
/*
 * Listens on copies (dup) of from's sockets, as another worker of the same
 * process (crew.h): both loops watch the same listening socket, and the
 * kernel gives each connection to one of them. A unix socket's file stays
 * from's. 0 or a negative errno (logged).
 */
int listener_share(struct listener_set *ls, const struct listener_set *from) WUR;
/*
 * The successor has the sockets (takeover.h): closes the listeners here,
 * leaving the unix socket's file to the successor.
 */
void listener_hand_over(struct listener_set *ls);
/*
 * Closes the listeners: all of them, or (keep_unix) the TCP ones only, so that
 * the console stays reachable on the unix socket while a shutdown waits.
 * Adopted sockets are closed the same way; the service manager keeps its own
 * copies, and the file of an adopted unix socket is left where it is.
 */
void listener_stop(struct listener_set *ls, bool keep_unix);
/*
 * Gives the unix socket file to uid (and gid, unless cfg's
 * unix_socket_group set one), so that after sluice gives up root (-u) the
 * file is the user's, as PgBouncer's is, and can be removed at exit. A socket
 * file the set did not create (adopted) is left to its creator. 0 or -errno
 * (logged).
 */
int listener_chown_unix(struct listener_set *ls, const struct config *cfg, unsigned uid,
			unsigned gid) WUR;
/*
 * SUSPEND (on) and its end (off): while on, no listener accepts, and
 * connections wait in the kernel's backlog (for whoever holds the listening
 * socket next: this process after RESUME, or a successor).
 */
void listener_suspend(struct listener_set *ls, bool on);
/* From the owner's tick: resumes accepting once a pause after a failure is over. */
void listener_tick(struct listener_set *ls, uint64_t now);
