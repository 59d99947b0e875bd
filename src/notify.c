/*
 * notify.c - LISTEN/NOTIFY fan-out in transaction pooling (see notify.h).
 *
 * Per pool, a hub (pool->notify, made at the first LISTEN):
 *   struct nchan    a channel some client of the pool listens to, by name,
 *                   with its subscriptions; whether the listener LISTENs
 *                   to it (listening) and what the query in flight does.
 *   struct nclient  a client with channels, by its address: its
 *                   subscriptions and the notifications held for it.
 *   struct nsub     one client on one channel; tentative until the probe
 *                   after its transaction says the LISTEN committed.
 *
 * The listener runs one query at a time, LISTENs and UNLISTENs that bring
 * what it hears in line with the channels that have subscriptions
 * (sync_listener): a channel is freed once nobody is on it and the
 * listener no longer LISTENs to it.
 */
#include "sluice/notify.h"

#include <string.h>
#include <sys/queue.h>
#include <uthash.h>

#include "sluice/client.h"
#include "sluice/config.h"
#include "sluice/log.h"
#include "sluice/pkt.h"
#include "sluice/pool.h"
#include "sluice/server.h"
#include "sluice/sqlscan.h"
#include "sluice/sqlstate.h"
#include "sluice/stream.h"
#include "sluice/worker.h"

enum { SENT_NONE, SENT_LISTEN, SENT_UNLISTEN };

struct nsub;
struct nclient;

struct nchan {
	char *name;
	UT_hash_handle hh; /* hub->channels */
	TAILQ_HEAD(, nsub) subs;
	int n_subs;
	bool listening; /* the listener's LISTEN is done */
	uint8_t sent; /* SENT_*: in the listener's query in flight */
};

struct nsub {
	struct nchan *ch;
	struct nclient *nc;
	bool tentative;
	/*
	 * The fence: what the listener sends is the client's only once it has
	 * answered this many queries (hub->answered). PostgreSQL's listener
	 * sends the notifications it has pending before it reads a query, so
	 * what comes before the answer to a query sent after the client's
	 * LISTEN was seen was committed before that LISTEN, which a direct
	 * session would not hear.
	 */
	uint64_t from;
	TAILQ_ENTRY(nsub) ch_link, c_link;
};

/* A NotificationResponse held for a client, as the listener got it. */
struct nmsg {
	TAILQ_ENTRY(nmsg) link;
	uint32_t len;
	uint8_t data[];
};

struct nclient {
	struct client *c;
	UT_hash_handle hh; /* hub->clients, by c */
	TAILQ_HEAD(, nsub) subs;
	TAILQ_HEAD(, nmsg) held;
	size_t held_bytes;
	bool waiting; /* a request of its waits for the listener (notify_before) */
	bool touched; /* on hub->touched: got notifications in the listener's current read */
	TAILQ_ENTRY(nclient) touched_link;
};

struct notify_hub {
	struct pool *pool;
	struct server *listener; /* NULL while none is open */
	bool busy; /* a query of the listener's is in flight */
	uint64_t sent, answered; /* the listener's queries (of every listener the hub had) */
	uint64_t fence; /* a query is to be sent until sent reaches this (nsub.from) */
	uint64_t failed_at; /* uv_now of the listener's last failure; 0 none */
	struct nchan *channels;
	struct nclient *clients;
	TAILQ_HEAD(, nclient) touched; /* see notify_listener_read_done */
};

static struct notify_hub *hub_of(struct pool *p, bool make)
{
	if (!p->notify && make) {
		p->notify = xcalloc(1, sizeof(*p->notify));
		p->notify->pool = p;
		TAILQ_INIT(&p->notify->touched);
	}
	return p->notify;
}

static struct nclient *nclient_of(struct client *c, bool make)
{
	struct notify_hub *h = c->listens || make ? hub_of(c->pool, make) : NULL;
	if (!h)
		return NULL;
	struct nclient *nc;
	HASH_FIND_PTR(h->clients, &c, nc);
	if (!nc && make) {
		nc = xcalloc(1, sizeof(*nc));
		nc->c = c;
		TAILQ_INIT(&nc->subs);
		TAILQ_INIT(&nc->held);
		HASH_ADD_PTR(h->clients, c, nc);
		c->listens = true;
	}
	return nc;
}

static struct nchan *channel_of(struct notify_hub *h, const char *name, bool make)
{
	struct nchan *ch;
	HASH_FIND_STR(h->channels, name, ch);
	if (!ch && make) {
		ch = xcalloc(1, sizeof(*ch));
		ch->name = xstrdup(name);
		TAILQ_INIT(&ch->subs);
		HASH_ADD_KEYPTR(hh, h->channels, ch->name, strlen(ch->name), ch);
	}
	return ch;
}

static struct nsub *sub_of(struct nclient *nc, const char *name)
{
	struct nsub *sb;
	TAILQ_FOREACH(sb, &nc->subs, c_link)
		if (strcmp(sb->ch->name, name) == 0)
			return sb;
	return NULL;
}

static void sync_listener(struct notify_hub *h);

/*
 * Whether the listener hears ch, and will go on: its LISTEN is done and no
 * UNLISTEN of it is on its way (sent when its last client left; a client
 * that LISTENs meanwhile waits for the LISTEN after it).
 */
static bool heard(const struct nchan *ch)
{
	return ch->listening && ch->sent != SENT_UNLISTEN;
}

static void sub_remove(struct notify_hub *h, struct nsub *sb)
{
	TAILQ_REMOVE(&sb->ch->subs, sb, ch_link);
	sb->ch->n_subs--;
	TAILQ_REMOVE(&sb->nc->subs, sb, c_link);
	free(sb);
	(void)h;
}

static struct nsub *sub_add(struct nclient *nc, struct nchan *ch, bool tentative)
{
	struct nsub *sb = xcalloc(1, sizeof(*sb));
	sb->ch = ch;
	sb->nc = nc;
	sb->tentative = tentative;
	TAILQ_INSERT_TAIL(&ch->subs, sb, ch_link);
	ch->n_subs++;
	TAILQ_INSERT_TAIL(&nc->subs, sb, c_link);
	return sb;
}

static void nclient_free(struct notify_hub *h, struct nclient *nc)
{
	struct nsub *sb;
	while ((sb = TAILQ_FIRST(&nc->subs)) != NULL)
		sub_remove(h, sb);
	struct nmsg *m;
	while ((m = TAILQ_FIRST(&nc->held)) != NULL) {
		TAILQ_REMOVE(&nc->held, m, link);
		free(m);
	}
	HASH_DEL(h->clients, nc);
	if (nc->touched)
		TAILQ_REMOVE(&h->touched, nc, touched_link);
	nc->c->listens = false;
	free(nc);
}

/* ---- the listener --------------------------------------------------------------- */

static void put_ident(struct buf_out *sql, const char *name)
{
	buf_out_put_u8(sql, '"');
	for (const char *p = name; *p; p++) {
		if (*p == '"')
			buf_out_put_u8(sql, '"');
		buf_out_put_u8(sql, (uint8_t)*p);
	}
	buf_out_put_u8(sql, '"');
}

/* Whether a failed listener is still in its pause (server_login_retry), as a pool's login is. */
static bool in_backoff(const struct notify_hub *h)
{
	const struct config *cfg = h->pool->w->cfg;
	return h->failed_at &&
	       uv_now(h->pool->w->loop) - h->failed_at < (uint64_t)cfg->server_login_retry;
}

/* The listener is gone: it LISTENs to nothing, and channels nobody is on go. */
static void forget_listening(struct notify_hub *h)
{
	h->busy = false;
	h->answered = h->sent; /* nothing more comes from it; the next listener starts anew */
	struct nchan *ch, *tmp;
	HASH_ITER(hh, h->channels, ch, tmp) {
		ch->listening = false;
		ch->sent = SENT_NONE;
		if (!ch->n_subs) {
			HASH_DEL(h->channels, ch);
			free(ch->name);
			free(ch);
		}
	}
}

/*
 * Brings what the listener LISTENs to in line with the channels that have
 * clients: one query at a time, once it is logged in; opens it if needed.
 */
static void sync_listener(struct notify_hub *h)
{
	struct nchan *ch, *tmp;
	bool wanted = false;
	HASH_ITER(hh, h->channels, ch, tmp) {
		if (!ch->n_subs && !ch->listening && ch->sent == SENT_NONE) {
			HASH_DEL(h->channels, ch);
			free(ch->name);
			free(ch);
			continue;
		}
		wanted |= ch->n_subs > 0;
	}
	if (!h->listener) {
		if (wanted && !in_backoff(h))
			h->listener = server_connect_listener(h->pool);
		return;
	}
	if (!wanted && !h->busy) {
		/* Closed on purpose: no failure, no pause before the next one. */
		struct server *l = h->listener;
		h->listener = NULL;
		forget_listening(h);
		server_close(l, "no client listens any more");
		return;
	}
	if (h->busy || !server_listener_ready(h->listener))
		return;
	struct buf_out sql;
	buf_out_init(&sql);
	HASH_ITER(hh, h->channels, ch, tmp) {
		if (ch->n_subs && !ch->listening) {
			buf_out_put(&sql, "LISTEN ", 7);
			ch->sent = SENT_LISTEN;
		} else if (!ch->n_subs && ch->listening) {
			buf_out_put(&sql, "UNLISTEN ", 9);
			ch->sent = SENT_UNLISTEN;
		} else {
			continue;
		}
		put_ident(&sql, ch->name);
		buf_out_put(&sql, "; ", 2);
	}
	if (!sql.len && h->sent < h->fence)
		buf_out_put(&sql, ";", 1); /* nothing to change: an empty query is the fence */
	if (sql.len) {
		buf_out_put_u8(&sql, 0);
		h->busy = true;
		h->sent++;
		server_listener_send(h->listener, (const char *)sql.data);
	}
	buf_out_deinit(&sql);
}

/* Whether the listener hears sb's channel for it: LISTENed, and past its fence. */
static bool hears_for(const struct notify_hub *h, const struct nsub *sb)
{
	return heard(sb->ch) && h->answered >= sb->from;
}

/* A client waits for its channels: resumed once none of them is still to be listened to. */
static void wake_waiters(struct notify_hub *h)
{
	struct nclient *nc, *tmp;
	HASH_ITER(hh, h->clients, nc, tmp) {
		if (!nc->waiting)
			continue;
		bool ready = true;
		struct nsub *sb;
		TAILQ_FOREACH(sb, &nc->subs, c_link)
			ready &= hears_for(h, sb) || !h->listener;
		if (ready) {
			nc->waiting = false;
			client_prepared_resume(nc->c);
		}
	}
}

void notify_listener_up(struct server *s)
{
	struct notify_hub *h = s->pool->notify;
	h->failed_at = 0;
	sync_listener(h);
}

void notify_listener_answered(struct server *s)
{
	struct notify_hub *h = s->pool->notify;
	h->busy = false;
	h->answered++;
	struct nchan *ch, *tmp;
	HASH_ITER(hh, h->channels, ch, tmp) {
		if (ch->sent == SENT_LISTEN)
			ch->listening = true;
		else if (ch->sent == SENT_UNLISTEN)
			ch->listening = false;
		ch->sent = SENT_NONE;
	}
	wake_waiters(h);
	sync_listener(h);
}

void notify_listener_down(struct server *s, const char *reason)
{
	struct notify_hub *h = s->pool->notify;
	if (!h || h->listener != s)
		return;
	h->listener = NULL;
	h->failed_at = uv_now(s->w->loop);
	/*
	 * What was sent meanwhile is lost: a client that listens through it
	 * would miss notifications without knowing, so it is told and closed,
	 * as a direct session whose server went away would be.
	 */
	struct nclient *nc, *tmp;
	HASH_ITER(hh, h->clients, nc, tmp) {
		bool heard = false;
		struct nsub *sb;
		TAILQ_FOREACH(sb, &nc->subs, c_link)
			heard |= sb->ch->listening;
		if (heard && ++s->w->stats_notify_closed_lost)
			client_fail(nc->c, SQLSTATE_CONNECTION_FAILURE,
				    "the connection sluice listens on for this client's channels was "
				    "lost: %s",
				    reason);
	}
	forget_listening(h);
	/* The rest go on without fan-out: their LISTEN stays on their server, which pins. */
	wake_waiters(h);
	sync_listener(h);
}

/* ---- delivery ------------------------------------------------------------------- */

/* Whether c is between transactions, so that a notification may be written to it now. */
static bool at_rest(const struct client *c)
{
	switch (c->state) {
	case CLIENT_IDLE:
	case CLIENT_WAITING:
		return true;
	case CLIENT_ACTIVE: {
		const struct server *s = c->server;
		return s && s->rq.len == 0 && s->txn_status == 'I' && !s->probe_seq &&
		       s->pass_remaining == 0 && c->pass_remaining == 0 && !c->ext_open;
	}
	default:
		return false;
	}
}

/* The channel a NotificationResponse (whole, checked by pkt_parse_notification) names: after its pid. */
static const char *channel_in(const uint8_t *msg)
{
	return (const char *)msg + PKT_HDR_LEN + 4;
}

static bool well_formed(const uint8_t *msg, uint32_t len)
{
	struct pkt_notification n;
	return len >= PKT_HDR_LEN &&
	       pkt_parse_notification(msg + PKT_HDR_LEN, len - PKT_HDR_LEN, &n) == PKT_OK;
}

/*
 * After a read of the listener's: what was written to its clients goes to
 * their sockets now, so that what is left unsent is what they did not read,
 * and a client with more of that (and held) than notify_queue_size is
 * disconnected. A bound on memory, and no notification lost silently.
 */
void notify_listener_read_done(struct server *s)
{
	struct notify_hub *h = s->pool->notify;
	struct nclient *nc;
	while ((nc = TAILQ_FIRST(&h->touched)) != NULL) {
		TAILQ_REMOVE(&h->touched, nc, touched_link);
		nc->touched = false;
		struct client *c = nc->c;
		if (stream_unsent(&c->stream))
			stream_flush(&c->stream);
		size_t limit = c->w->cfg->notify_queue_size;
		size_t unread = nc->held_bytes + stream_unsent(&c->stream);
		if (unread > limit && ++c->w->stats_notify_closed_backlog)
			client_fail(c, SQLSTATE_CONFIGURATION_LIMIT_EXCEEDED,
				    "the client left %zu bytes of notifications unread "
				    "(notify_queue_size is %zu)",
				    unread, limit);
	}
}

static void hold(struct nclient *nc, const uint8_t *msg, uint32_t len)
{
	struct nmsg *m = xmalloc(sizeof(*m) + len);
	m->len = len;
	memcpy(m->data, msg, len);
	TAILQ_INSERT_TAIL(&nc->held, m, link);
	nc->held_bytes += len;
}

void notify_listener_message(struct server *s, const uint8_t *msg, uint32_t len)
{
	struct notify_hub *h = s->pool->notify;
	if (!well_formed(msg, len)) {
		log_write(LOG_LEVEL_WARNING, &s->lc, "malformed NotificationResponse ignored");
		return;
	}
	struct nchan *ch = channel_of(h, channel_in(msg), false);
	if (!ch)
		return;
	struct nsub *sb;
	TAILQ_FOREACH(sb, &ch->subs, ch_link) {
		if (h->answered < sb->from)
			continue; /* committed before the client's LISTEN */
		struct nclient *nc = sb->nc;
		struct client *c = nc->c;
		if (!sb->tentative && TAILQ_EMPTY(&nc->held) && at_rest(c))
			stream_write(&c->stream, msg, len);
		else
			hold(nc, msg, len);
		c->pool->stats.total.bytes_sent += len;
		c->w->stats_notifications++;
		if (!nc->touched) {
			nc->touched = true;
			TAILQ_INSERT_TAIL(&h->touched, nc, touched_link);
		}
	}
}

void notify_at_rest(struct client *c)
{
	struct nclient *nc = nclient_of(c, false);
	if (!nc || TAILQ_EMPTY(&nc->held) || !at_rest(c))
		return;
	struct nmsg *m, *next;
	for (m = TAILQ_FIRST(&nc->held); m; m = next) {
		next = TAILQ_NEXT(m, link);
		struct nsub *sb = sub_of(nc, channel_in(m->data));
		if (sb && sb->tentative)
			continue; /* its LISTEN's transaction is not settled yet */
		if (sb)
			stream_write(&c->stream, m->data, m->len);
		TAILQ_REMOVE(&nc->held, m, link);
		nc->held_bytes -= m->len;
		free(m);
	}
}

bool notify_fans_out(const struct client *c, const uint8_t *msg, uint32_t len)
{
	if (!well_formed(msg, len))
		return false;
	struct nclient *nc = nclient_of((struct client *)c, false);
	struct nsub *sb = nc ? sub_of(nc, channel_in(msg)) : NULL;
	return sb && heard(sb->ch);
}

/* ---- a client's statements ------------------------------------------------------ */

bool notify_before(struct client *c, struct server *s, const struct sql_scan_result *r, bool mirror)
{
	if (!r->n_listen && !r->n_unlisten && !r->unlisten_all)
		return false;
	struct nclient *nc = nclient_of(c, r->n_listen > 0);
	if (!nc)
		return false; /* an UNLISTEN with nothing fanned out: the server has it all */
	struct notify_hub *h = c->pool->notify;
	bool wait = false;
	for (int i = 0; i < r->n_listen; i++) {
		struct nchan *ch = channel_of(h, r->listen[i], true);
		struct nsub *sb = sub_of(nc, ch->name);
		if (!sb) {
			sb = sub_add(nc, ch, true);
			sb->from = h->sent + 1;
			if (h->fence < sb->from)
				h->fence = sb->from;
		}
		/* Without a listener (failing, in its pause), the LISTEN stays on the server. */
		wait |= !hears_for(h, sb) && !in_backoff(h);
	}
	if (wait) {
		nc->waiting = true;
		sync_listener(h);
		if (h->listener)
			return true; /* until its LISTENs are answered (wake_waiters) */
		nc->waiting = false; /* it could not even be opened: the server listens itself */
	}
	if (r->n_unlisten || r->unlisten_all) {
		/*
		 * The server listens to none of c's confirmed channels: for the
		 * probe to show what the UNLISTEN did, it listens to them first.
		 * When something of c's is under way, that cannot go in between,
		 * and the UNLISTEN is taken at its word now (one rolled back with
		 * its transaction is not undone then).
		 */
		struct buf_out sql;
		buf_out_init(&sql);
		struct nsub *sb, *next;
		for (sb = TAILQ_FIRST(&nc->subs); sb; sb = next) {
			next = TAILQ_NEXT(sb, c_link);
			if (sb->tentative)
				continue;
			if (mirror) {
				buf_out_put(&sql, "LISTEN ", 7);
				put_ident(&sql, sb->ch->name);
				buf_out_put(&sql, "; ", 2);
				continue;
			}
			bool named = r->unlisten_all;
			for (int i = 0; !named && i < r->n_unlisten; i++)
				named = strcmp(r->unlisten[i], sb->ch->name) == 0;
			if (named)
				sub_remove(h, sb);
		}
		if (sql.len) {
			buf_out_put_u8(&sql, 0);
			server_send_mirror(s, (const char *)sql.data);
		}
		buf_out_deinit(&sql);
		sync_listener(h);
	}
	return false;
}

void notify_probe_unlisten(struct client *c, struct buf_out *sql)
{
	struct nclient *nc = nclient_of(c, false);
	if (!nc)
		return;
	struct nsub *sb;
	TAILQ_FOREACH(sb, &nc->subs, c_link) {
		if (!hears_for(c->pool->notify, sb))
			continue;
		buf_out_put(sql, "; UNLISTEN ", 11);
		put_ident(sql, sb->ch->name);
	}
}

bool notify_settle(struct client *c, struct server *s, const struct param_set *channels)
{
	struct nclient *nc = nclient_of(c, false);
	struct notify_hub *h = c->pool->notify;
	bool mirrored = s->listen_mirrored;
	s->listen_mirrored = false;
	bool kept = false;
	if (nc) {
		struct nsub *sb, *next;
		for (sb = TAILQ_FIRST(&nc->subs); sb; sb = next) {
			next = TAILQ_NEXT(sb, c_link);
			if (param_set_get(channels, sb->ch->name)) {
				/* On the server: fanned out if the listener hears it (the probe UNLISTENed it there). */
				if (hears_for(h, sb))
					sb->tentative = false;
				else
					sub_remove(h, sb);
			} else if (sb->tentative || mirrored) {
				sub_remove(h, sb); /* rolled back, or UNLISTENed */
			}
		}
	}
	for (int i = 0; i < channels->n; i++) {
		struct nsub *sb = nc ? sub_of(nc, channels->items[i].name) : NULL;
		kept |= !sb; /* not the listener's: it stays on the server */
	}
	if (nc && TAILQ_EMPTY(&nc->subs) && TAILQ_EMPTY(&nc->held))
		nclient_free(h, nc);
	if (h)
		sync_listener(h);
	return kept;
}

void notify_client_gone(struct client *c)
{
	struct nclient *nc = nclient_of(c, false);
	if (!nc)
		return;
	struct notify_hub *h = c->pool->notify;
	nclient_free(h, nc);
	sync_listener(h);
}

void notify_pool_free(struct pool *p)
{
	struct notify_hub *h = p->notify;
	if (!h)
		return;
	struct nclient *nc, *tmp;
	HASH_ITER(hh, h->clients, nc, tmp)
		nclient_free(h, nc);
	if (h->listener)
		server_close(h->listener, "pool removed");
	struct nchan *ch, *ctmp;
	HASH_ITER(hh, h->channels, ch, ctmp) {
		HASH_DEL(h->channels, ch);
		free(ch->name);
		free(ch);
	}
	free(h);
	p->notify = NULL;
}
