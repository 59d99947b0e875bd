/*
 * http.h - the built-in HTTP endpoints: GET /metrics (Prometheus text
 * exposition format 0.0.4), GET /health and GET /ready, on metrics_addr:
 * metrics_port.
 *
 * The module owns its listener, its HTTP connections (each embeds a struct
 * stream; all socket I/O goes through stream.h), a timer that enforces a
 * per-connection deadline, and the TCP/unix-socket probes /ready uses to
 * learn whether PostgreSQL is reachable when no pool has a server. It reads
 * pools, statistics and the worker's state only through their modules'
 * functions and fields; it never changes them.
 *
 * The server is deliberately minimal: one request per connection, every
 * response carries `Connection: close`, request bodies are ignored, and a
 * request head is at most HTTP_MAX_HEAD bytes. The request parser is I/O-free
 * (http_parse.h) so that it can be tested (and fuzzed) without sockets.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "sluice/common.h"

struct worker;

/*
 * Opens the HTTP listener when w->cfg->metrics_port is not 0 (a no-op
 * returning 0 otherwise) and sets w->http. fd >= 0 is a listening socket
 * to serve on instead of binding one (a predecessor's, takeover.h), the
 * listener's from this call on. Returns 0 or a negative libuv error,
 * logged, when the address cannot be listened on.
 */
int http_start(struct worker *w, int fd) WUR;
/* The listening socket's descriptor (borrowed), or -1 when there is none. */
int http_listen_fd(const struct worker *w);

/*
 * Closes the listener, every open HTTP connection and every probe (at
 * shutdown). Memory is released from the close callbacks; w->http is NULL
 * on return. Safe to call when http_start() did nothing, and more than once.
 */
void http_stop(struct worker *w);
