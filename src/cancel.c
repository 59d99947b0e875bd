/*
 * cancel.c - client cancel keys and CancelRequest forwarding (see cancel.h).
 *
 * A forwarded cancel is a tiny connection of its own: connect, write the 16
 * bytes, then wait for PostgreSQL to close it. The postmaster closes a
 * cancel connection only after it has signalled the backend, so until then
 * the cancel may still hit whatever that backend runs next: the server is
 * kept from other clients (SERVER_BEING_CANCELED) until every cancel sent
 * for it has finished. A server that closes first forgets its cancels; each
 * is still sent, then closed without waiting.
 */
#include "sluice/cancel.h"

#include <stdlib.h>
#include <string.h>

#include "sluice/client.h"
#include "sluice/log.h"
#include "sluice/pkt.h"
#include "sluice/pool.h"
#include "sluice/rand.h"
#include "sluice/server.h"

struct cancel_conn {
	struct stream stream;
	struct server *server; /* NULL once finished or detached */
	TAILQ_ENTRY(cancel_conn) link; /* server->cancels while server is set */
	bool sent; /* connected and the request queued */
	uint8_t msg[16];
};

void cancel_register(struct worker *w, struct client *c)
{
	struct client *other;
	do {
		uint8_t r[8];
		rand_bytes(r, sizeof(r));
		c->cancel_pid = get_be32(r) & 0x7fffffffu;
		c->cancel_key = get_be32(r + 4);
		c->cancel_key64 = ((uint64_t)c->cancel_pid << 32) | c->cancel_key;
		HASH_FIND(hh, w->cancel_keys, &c->cancel_key64, sizeof(uint64_t), other);
	} while (other);
	HASH_ADD(hh, w->cancel_keys, cancel_key64, sizeof(uint64_t), c);
}

void cancel_unregister(struct worker *w, struct client *c)
{
	struct client *found;
	HASH_FIND(hh, w->cancel_keys, &c->cancel_key64, sizeof(uint64_t), found);
	if (found == c)
		HASH_DELETE(hh, w->cancel_keys, c);
}

/* Takes cc off its server's list; tells the server when it was the last. */
static void detach(struct cancel_conn *cc, bool notify)
{
	struct server *s = cc->server;
	if (!s)
		return;
	cc->server = NULL;
	TAILQ_REMOVE(&s->cancels, cc, link);
	s->pool->n_cancels_active--;
	if (notify && TAILQ_EMPTY(&s->cancels))
		server_cancels_done(s);
}

/* The cancel is over (answered, refused or failed): free the server, then the socket. */
static void finish(struct cancel_conn *cc)
{
	detach(cc, true);
	stream_close(&cc->stream);
}

static void on_closed(struct stream *st)
{
	free(container_of(st, struct cancel_conn, stream));
}

static void on_read(struct stream *st)
{
	/* PostgreSQL sends nothing on a cancel connection; whatever comes is dropped. */
	stream_consume(st, stream_avail(st));
}

static void on_error(struct stream *st, int err)
{
	(void)err;
	finish(container_of(st, struct cancel_conn, stream));
}

static void on_connected(struct stream *st, int status)
{
	struct cancel_conn *cc = container_of(st, struct cancel_conn, stream);
	if (status != 0) {
		finish(cc);
		return;
	}
	stream_write(st, cc->msg, sizeof(cc->msg));
	cc->sent = true;
	if (!cc->server) {
		/* Nobody waits for this one any more: send it and go. */
		stream_close(st);
		return;
	}
	stream_read_start(st);
}

void cancel_request(struct worker *w, uint32_t pid, uint32_t key)
{
	uint64_t k = ((uint64_t)pid << 32) | key;
	struct client *c;
	HASH_FIND(hh, w->cancel_keys, &k, sizeof(uint64_t), c);
	if (!c || !c->server || c->server->state != SERVER_ACTIVE) {
		log_debug("cancel request for an unknown key or an unlinked client: ignored");
		return;
	}
	struct server *s = c->server;
	struct cancel_conn *cc = xcalloc(1, sizeof(*cc));
	struct buf_out out;
	buf_out_init(&out);
	pkt_put_CancelRequest(&out, s->be_pid, s->be_key);
	memcpy(cc->msg, out.data, sizeof(cc->msg));
	buf_out_deinit(&out);
	bool pipe = s->stream.is_pipe;
	if (stream_init(w, &cc->stream, pipe) != 0) {
		free(cc);
		return;
	}
	cc->stream.read_cb = on_read;
	cc->stream.error_cb = on_error;
	cc->stream.close_cb = on_closed;
	cc->server = s;
	TAILQ_INSERT_TAIL(&s->cancels, cc, link);
	s->pool->n_cancels_active++;
	log_write(LOG_LEVEL_INFO, &c->lc, "forwarding cancel request to S-%llu",
		  (unsigned long long)s->id);
	if (pipe) {
		stream_connect_pipe(&cc->stream, s->addr, on_connected);
		return;
	}
	if (stream_connect_tcp(&cc->stream, (const struct sockaddr *)&s->peer, on_connected) != 0)
		finish(cc);
}

void cancel_server_closed(struct server *s)
{
	struct cancel_conn *cc;
	while ((cc = TAILQ_FIRST(&s->cancels)) != NULL) {
		detach(cc, false);
		/*
		 * A cancel still connecting is sent all the same: query_timeout
		 * closes the server and relies on it to stop the backend, which
		 * does not notice a closed socket while it computes.
		 */
		if (cc->sent)
			stream_close(&cc->stream);
	}
}
