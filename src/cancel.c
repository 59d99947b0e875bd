/*
 * cancel.c - client cancel keys and CancelRequest forwarding (see cancel.h).
 *
 * A forwarded cancel is a tiny connection of its own: connect, write the 16
 * bytes, close. The close writes what is queued first, so nothing lingers
 * and no timer is needed.
 */
#include "sluice/cancel.h"

#include <stdlib.h>
#include <string.h>

#include "sluice/client.h"
#include "sluice/log.h"
#include "sluice/pkt.h"
#include "sluice/rand.h"
#include "sluice/server.h"

struct cancel_conn {
	struct stream stream;
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

static void on_closed(struct stream *st)
{
	free(container_of(st, struct cancel_conn, stream));
}

static void on_read(struct stream *st)
{
	stream_consume(st, stream_avail(st));
}

static void on_error(struct stream *st, int err)
{
	(void)err;
	stream_close(st);
}

static void on_connected(struct stream *st, int status)
{
	struct cancel_conn *cc = container_of(st, struct cancel_conn, stream);
	if (status == 0)
		stream_write(st, cc->msg, sizeof(cc->msg));
	stream_close(st);
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
	log_write(LOG_LEVEL_INFO, &c->lc, "forwarding cancel request to S-%llu",
		  (unsigned long long)s->id);
	if (pipe) {
		stream_connect_pipe(&cc->stream, s->addr, on_connected);
		return;
	}
	if (stream_connect_tcp(&cc->stream, (const struct sockaddr *)&s->peer, on_connected) != 0)
		stream_close(&cc->stream);
}
