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
 *
 * Peering. Several processes behind one port (so_reuseport, or a TCP load
 * balancer) each see cancels meant for the others' clients. With peer_id
 * set, a key carries the id of the process that handed it out (PgBouncer's
 * layout, so sluice and PgBouncer processes may be peers): bytes 1 and 2 of
 * the eight (the pid's second byte the id's low byte, its third the high
 * byte), and the last two bits a TTL, 3 when handed out. A cancel for
 * another id is forwarded, TTL one lower, to that [peers] entry as a
 * CancelRequest of its own, which the peer handles like any other; a TTL of
 * 0 stops a loop between misconfigured peers. At most pool_size forwards
 * to a peer are in flight; the rest wait, in order, for one to finish.
 */
#include "sluice/cancel.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "sluice/client.h"
#include "sluice/config.h"
#include "sluice/log.h"
#include "sluice/pkt.h"
#include "sluice/pool.h"
#include "sluice/rand.h"
#include "sluice/server.h"

/* The TTL bits of a peered key: the low bits of its last byte. */
#define CANCEL_TTL_MASK 0x03u

struct cancel_conn {
	struct stream stream;
	struct worker *w;
	struct server *server; /* NULL once finished or detached */
	struct cancel_peer *peer; /* a forward to a peer: NULL once finished */
	/* server->cancels while server is set; its peer's active or waiting list while peer is */
	TAILQ_ENTRY(cancel_conn) link;
	bool sent; /* connected and the request queued */
	bool stream_ready; /* dialing: closing goes through the stream */
	uint64_t started; /* uv_now when it started connecting (a peer forward) */
	uint8_t msg[16];
};

TAILQ_HEAD(cancel_queue, cancel_conn);

/* The forwards of one worker to one peer (by id: it outlives reloads of [peers]). */
struct cancel_peer {
	int peer_id;
	struct cancel_queue active; /* connecting or sent */
	struct cancel_queue waiting; /* for a slot under the peer's pool_size */
	int n_active, n_sent, n_waiting;
	UT_hash_handle hh;
};

static struct cancel_peer *peer_get(struct worker *w, int peer_id)
{
	struct cancel_peer *cp;
	HASH_FIND_INT(w->cancel_peers, &peer_id, cp);
	if (!cp) {
		cp = xcalloc(1, sizeof(*cp));
		cp->peer_id = peer_id;
		TAILQ_INIT(&cp->active);
		TAILQ_INIT(&cp->waiting);
		HASH_ADD_INT(w->cancel_peers, peer_id, cp);
	}
	return cp;
}

/* The peer id a key carries (meaningful only when its issuer had peering on). */
static int key_peer_id(uint32_t pid)
{
	return (int)(((pid >> 16) & 0xffu) | (((pid >> 8) & 0xffu) << 8));
}

/* ---- the key table --------------------------------------------------------- */

/* The table never holds fewer slots than this once it holds any. */
#define CANCEL_TABLE_MIN 64u

/*
 * Fibonacci hashing: the top bits of key times 2^64/phi. Every key bit
 * reaches them, so the bits peering fixes (the peer id, the TTL) do not
 * crowd keys together.
 */
static uint32_t home_slot(const struct cancel_table *t, uint64_t key)
{
	uint64_t h = key * UINT64_C(0x9e3779b97f4a7c15);
	return (uint32_t)(h >> 32) & t->mask;
}

void cancel_table_init(struct cancel_table *t)
{
	t->slots = NULL;
	t->mask = 0;
	t->n = 0;
}

void cancel_table_deinit(struct cancel_table *t)
{
	free(t->slots);
	cancel_table_init(t);
}

/* Puts c in the first free slot from its home; the caller made sure one is free. */
static void place(struct cancel_table *t, struct client *c)
{
	uint32_t i = home_slot(t, client_cancel_key(c));
	while (t->slots[i])
		i = (i + 1) & t->mask;
	t->slots[i] = c;
}

static void grow(struct cancel_table *t)
{
	struct client **old = t->slots;
	uint32_t old_cap = old ? t->mask + 1 : 0;
	uint32_t cap = old ? old_cap * 2 : CANCEL_TABLE_MIN;
	t->slots = xcalloc(cap, sizeof(*t->slots));
	t->mask = cap - 1;
	for (uint32_t i = 0; i < old_cap; i++)
		if (old[i])
			place(t, old[i]);
	free(old);
}

void cancel_table_add(struct cancel_table *t, struct client *c)
{
	/* At most half full: probes stay short, and find always meets an empty slot. */
	if (!t->slots || (t->n + 1) * 2 > t->mask + 1)
		grow(t);
	place(t, c);
	t->n++;
}

struct client *cancel_table_find(const struct cancel_table *t, uint64_t key)
{
	if (!t->slots)
		return NULL;
	for (uint32_t i = home_slot(t, key); t->slots[i]; i = (i + 1) & t->mask)
		if (client_cancel_key(t->slots[i]) == key)
			return t->slots[i];
	return NULL;
}

void cancel_table_remove(struct cancel_table *t, struct client *c)
{
	if (!t->slots)
		return;
	uint32_t i = home_slot(t, client_cancel_key(c));
	while (t->slots[i] != c) {
		if (!t->slots[i])
			return;
		i = (i + 1) & t->mask;
	}
	/*
	 * Backward shift: a later entry of the same run moves into the hole
	 * unless its home lies after the hole (cyclically), where a probe for
	 * it would start past the hole and must still reach it. The run stays
	 * unbroken, so no tombstone is needed.
	 */
	for (uint32_t j = (i + 1) & t->mask; t->slots[j]; j = (j + 1) & t->mask) {
		uint32_t home = home_slot(t, client_cancel_key(t->slots[j]));
		if (((j - home) & t->mask) >= ((j - i) & t->mask)) {
			t->slots[i] = t->slots[j];
			i = j;
		}
	}
	t->slots[i] = NULL;
	t->n--;
}

/* ---- keys ------------------------------------------------------------------- */

void cancel_register(struct worker *w, struct client *c)
{
	int peer_id = w->cfg->peer_id;
	do {
		uint8_t r[8];
		rand_bytes(r, sizeof(r));
		c->cancel_pid = get_be32(r) & 0x7fffffffu;
		c->cancel_key = get_be32(r + 4);
		if (peer_id > 0) {
			/* 45 random bits are left, as in PgBouncer's keys. */
			c->cancel_pid = (c->cancel_pid & 0x7f0000ffu) |
					((uint32_t)(peer_id & 0xff) << 16) |
					((uint32_t)((peer_id >> 8) & 0xff) << 8);
			c->cancel_key |= CANCEL_TTL_MASK;
		}
	} while (cancel_table_find(&w->cancel_keys, client_cancel_key(c)));
	cancel_table_add(&w->cancel_keys, c);
}

bool cancel_register_key(struct worker *w, struct client *c)
{
	if (cancel_table_find(&w->cancel_keys, client_cancel_key(c))) {
		cancel_register(w, c);
		return false;
	}
	cancel_table_add(&w->cancel_keys, c);
	return true;
}

void cancel_unregister(struct worker *w, struct client *c)
{
	cancel_table_remove(&w->cancel_keys, c);
}

static void peer_start(struct worker *w, struct cancel_conn *cc);

/* Takes cc off its peer's active list and lets the next waiting forward start. */
static void peer_detach(struct worker *w, struct cancel_conn *cc)
{
	struct cancel_peer *cp = cc->peer;
	if (!cp)
		return;
	cc->peer = NULL;
	TAILQ_REMOVE(&cp->active, cc, link);
	cp->n_active--;
	if (cc->sent)
		cp->n_sent--;
	struct cancel_conn *next = TAILQ_FIRST(&cp->waiting);
	if (next) {
		TAILQ_REMOVE(&cp->waiting, next, link);
		cp->n_waiting--;
		peer_start(w, next);
	}
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
	peer_detach(cc->w, cc);
	if (cc->stream_ready)
		stream_close(&cc->stream);
	else
		free(cc);
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
		if (cc->peer)
			log_warning("cancel request for peer %d not forwarded: %s%s",
				    cc->peer->peer_id,
				    st->resolved ? "" : "could not resolve its host: ",
				    uv_strerror(status));
		finish(cc);
		return;
	}
	stream_write(st, cc->msg, sizeof(cc->msg));
	cc->sent = true;
	if (cc->peer) {
		/* Wait for the peer to close: it has passed the cancel on by then. */
		cc->peer->n_sent++;
		stream_read_start(st);
		return;
	}
	if (!cc->server) {
		/* Nobody waits for this one any more: send it and go. */
		stream_close(st);
		return;
	}
	stream_read_start(st);
}

static const struct stream_ops cancel_stream_ops = {
	.read = on_read,
	.error = on_error,
	.close = on_closed,
	.connect = on_connected,
};

/* A CancelRequest passed on to the other workers (crew.h): one of them may have the client. */
struct cancel_msg {
	struct crew_msg hdr;
	uint32_t pid, key;
};

static void forward_here(struct worker *w, struct client *c);

static void on_cancel_msg(struct worker *w, struct crew_msg *m)
{
	struct cancel_msg *cm = (struct cancel_msg *)m;
	struct client *c = w->crew.gone ? NULL
					: cancel_table_find(&w->cancel_keys,
							    ((uint64_t)cm->pid << 32) | cm->key);
	if (c)
		forward_here(w, c);
	free(cm);
}

void cancel_request(struct worker *w, uint32_t pid, uint32_t key)
{
	struct client *c = cancel_table_find(&w->cancel_keys, ((uint64_t)pid << 32) | key);
	if (c) {
		forward_here(w, c);
		return;
	}
	/*
	 * The kernel gives a CancelRequest's connection to any worker; the
	 * client may be another's. Each looks its own table up (keys are
	 * random 63-bit values: two workers do not hand out the same one).
	 */
	struct crew *cr = w->crew.of;
	for (int i = 0; cr && cr->started && i < cr->n; i++) {
		if (i == w->crew.index)
			continue;
		struct cancel_msg *cm = xcalloc(1, sizeof(*cm));
		cm->hdr.run = on_cancel_msg;
		cm->pid = pid;
		cm->key = key;
		if (!crew_post(cr->workers[i], &cm->hdr))
			free(cm);
	}
	if (!cr || !cr->started)
		log_debug("cancel request for an unknown key: ignored");
}

/* Forwards a cancel for c, a client of w, to the server it is linked to now. */
static void forward_here(struct worker *w, struct client *c)
{
	if (!c->server || c->server->state != SERVER_ACTIVE) {
		log_debug("cancel request for an unlinked client: ignored");
		return;
	}
	struct server *s = c->server;
	struct cancel_conn *cc = xcalloc(1, sizeof(*cc));
	cc->w = w;
	struct buf_out out;
	buf_out_init(&out);
	pkt_put_CancelRequest(&out, s->be_pid, s->be_key);
	memcpy(cc->msg, out.data, sizeof(cc->msg));
	buf_out_deinit(&out);
	/* The address the server's socket is connected to: a name may resolve elsewhere now. */
	char host[INET6_ADDRSTRLEN] = "";
	int port = 0;
	if (!s->stream.is_pipe && !stream_address(&s->stream, false, host, sizeof(host), &port)) {
		log_debug("cancel request not forwarded: the server's address is unknown");
		free(cc);
		return;
	}
	if (stream_dial(&w->io, &cc->stream, &cancel_stream_ops, s->stream.is_pipe ? s->addr : host,
			port, 0) != 0) {
		free(cc);
		return;
	}
	cc->stream_ready = true;
	cc->server = s;
	TAILQ_INSERT_TAIL(&s->cancels, cc, link);
	s->pool->n_cancels_active++;
	log_write(LOG_LEVEL_INFO, CLIENT_LOG_CONN(c), "forwarding cancel request to S-%llu",
		  (unsigned long long)s->id);
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

/* ---- peering ------------------------------------------------------------------ */

/* cc has a slot under its peer's pool_size: resolve and connect. */
static void peer_start(struct worker *w, struct cancel_conn *cc)
{
	struct cancel_peer *cp = cc->peer;
	TAILQ_INSERT_TAIL(&cp->active, cc, link);
	cp->n_active++;
	cc->started = uv_now(w->loop);
	const struct config_peer *peer = config_find_peer(w->cfg, cp->peer_id);
	if (!peer) {
		log_warning("cancel request for peer %d dropped: [peers] no longer has it",
			    cp->peer_id);
		finish(cc);
		return;
	}
	if (stream_dial(&w->io, &cc->stream, &cancel_stream_ops, peer->host, peer->port,
			(uint64_t)w->cfg->server_connect_timeout) != 0) {
		finish(cc);
		return;
	}
	cc->stream_ready = true;
}

/* Forwards (pid, key) to the peer that issued it; says what happened in reason. */
static void forward_to_peer(struct worker *w, int peer_id, uint32_t pid, uint32_t key, char *reason,
			    size_t len)
{
	if ((key & CANCEL_TTL_MASK) == 0) {
		snprintf(reason, len,
			 "failed to forward cancel request because its TTL was exhausted");
		return;
	}
	const struct config_peer *peer = config_find_peer(w->cfg, peer_id);
	if (!peer) {
		snprintf(reason, len, "could not find peer to forward request to");
		return;
	}
	struct cancel_conn *cc = xcalloc(1, sizeof(*cc));
	cc->w = w;
	struct buf_out out;
	buf_out_init(&out);
	pkt_put_CancelRequest(&out, pid, key - 1); /* one hop fewer left */
	memcpy(cc->msg, out.data, sizeof(cc->msg));
	buf_out_deinit(&out);
	struct cancel_peer *cp = peer_get(w, peer_id);
	cc->peer = cp;
	snprintf(reason, len, "cancel request forwarded to peer %d", peer_id);
	if (cp->n_active >= config_peer_pool_size(w->cfg, peer)) {
		TAILQ_INSERT_TAIL(&cp->waiting, cc, link);
		cp->n_waiting++;
		return;
	}
	peer_start(w, cc);
}

void cancel_accept(struct worker *w, uint32_t pid, uint32_t key, char *reason, size_t len)
{
	snprintf(reason, len, "cancel request handled");
	int own = w->cfg->peer_id;
	if (own > 0) {
		/*
		 * A key of ours has its TTL bits set; one a peer passed on has
		 * fewer. A key ours by id but not known here (or issued under
		 * another peer_id before a reload) is looked up too, so a reload
		 * never strands the clients already connected.
		 */
		uint64_t k = ((uint64_t)pid << 32) | (key | CANCEL_TTL_MASK);
		struct client *c = cancel_table_find(&w->cancel_keys, k);
		int target = key_peer_id(pid);
		if (!c && target != own) {
			forward_to_peer(w, target, pid, key, reason, len);
			return;
		}
		key |= CANCEL_TTL_MASK;
	}
	cancel_request(w, pid, key);
}

void cancel_tick(struct worker *w, uint64_t now)
{
	uint64_t limit = (uint64_t)w->cfg->server_connect_timeout;
	if (!limit)
		return;
	struct cancel_peer *cp, *tmp;
	HASH_ITER(hh, w->cancel_peers, cp, tmp) {
		struct cancel_conn *cc, *next;
		for (cc = TAILQ_FIRST(&cp->active); cc; cc = next) {
			next = TAILQ_NEXT(cc, link);
			/*
			 * A peer that keeps the connection open is not coming back:
			 * free the slot (stream_dial bounds the connecting).
			 */
			if (cc->sent && now - cc->started >= limit) {
				log_warning("cancel request forwarded to peer %d: no answer within "
					    "server_connect_timeout",
					    cp->peer_id);
				finish(cc);
			}
		}
	}
}

void cancel_stop(struct worker *w)
{
	struct cancel_peer *cp, *tmp;
	HASH_ITER(hh, w->cancel_peers, cp, tmp) {
		struct cancel_conn *cc;
		while ((cc = TAILQ_FIRST(&cp->waiting)) != NULL) {
			TAILQ_REMOVE(&cp->waiting, cc, link);
			free(cc);
		}
		while ((cc = TAILQ_FIRST(&cp->active)) != NULL) {
			TAILQ_REMOVE(&cp->active, cc, link);
			cc->peer = NULL;
			if (cc->stream_ready)
				stream_close(&cc->stream);
			else
				free(cc);
		}
		HASH_DEL(w->cancel_peers, cp);
		free(cp);
	}
}

void cancel_peer_counts(struct worker *w, int peer_id, struct cancel_peer_counts *out)
{
	struct cancel_peer *cp;
	HASH_FIND_INT(w->cancel_peers, &peer_id, cp);
	memset(out, 0, sizeof(*out));
	if (!cp)
		return;
	out->active = cp->n_active;
	out->waiting = cp->n_waiting;
	out->sent = cp->n_sent;
	out->connecting = cp->n_active - cp->n_sent;
}
