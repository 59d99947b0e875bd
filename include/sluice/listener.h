/*
 * listener.h - the TCP and unix-socket listeners of a worker.
 *
 * It owns the listening sockets and hands each accepted connection to
 * client_accept(); max_client_conn is enforced there, where the client can be
 * told why in an ErrorResponse. When accept() fails (out of file
 * descriptors), accepting pauses with a growing backoff and the waiting
 * connections stay in the kernel's backlog (worker->accept).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "sluice/common.h"
#include "sluice/worker.h"

struct listener {
	uv_poll_t poll; /* readable: connections wait in the backlog */
	int fd;
	struct worker *w;
	bool is_unix;
	char name[160];
	struct listener *next;
};

/* Opens every listener cfg asks for. Errors are logged and returned. */
int listener_start_all(struct worker *w) WUR;
/*
 * Closes the listeners: all of them, or (keep_unix) the TCP ones only, so that
 * the console stays reachable on the unix socket while a shutdown waits.
 */
void listener_stop(struct worker *w, bool keep_unix);
/*
 * Gives the unix socket file to uid (and gid, unless unix_socket_group set
 * one), so that after sluice gives up root (-u) the file is the user's, as
 * PgBouncer's is, and can be removed at exit. 0 or -errno (logged).
 */
int listener_chown_unix(struct worker *w, unsigned uid, unsigned gid) WUR;
/* From the worker's tick: resumes accepting once a pause after a failure is over. */
void listener_tick(struct worker *w, uint64_t now);
