/*
 * listener.h - the TCP and unix-socket listeners of a worker.
 *
 * It owns the listening handles and hands each accepted connection to
 * client_accept(); max_client_conn is enforced there, where the client can be
 * told why in an ErrorResponse.
 */
#pragma once

#include <stdbool.h>
#include <uv.h>

#include "sluice/common.h"
#include "sluice/worker.h"

struct listener {
	union {
		uv_handle_t handle;
		uv_stream_t base;
		uv_tcp_t tcp;
		uv_pipe_t pipe;
	} h;
	struct worker *w;
	bool is_unix;
	char name[160];
	struct listener *next;
};

/* Opens every listener cfg asks for. Errors are logged and returned. */
int listener_start_all(struct worker *w) WUR;
/* Closes all listeners (shutdown): no new clients. */
void listener_stop_all(struct worker *w);
