/*
 * prepared.c - named prepared statements in transaction and statement mode:
 * the registry of statements, each client's names, each server's set, and
 * the rewriting of the client messages that name a statement.
 *
 * It does not relay bytes or match answers: client.c hands it the messages
 * it must look at, and server.c's request queue orders the answers and
 * reports, for every Parse and Close sent here, whether PostgreSQL carried
 * it out (prepared_request_done).
 *
 * The per-server set is updated when a Parse or Close is sent, not when it
 * is answered, so that the next message of the same pipeline sees it. The
 * answer can only take a Parse back (an error made PostgreSQL skip it);
 * entries carry the seq of the request that created them so that a late
 * failure does not remove a statement prepared again since. Evicting Closes
 * are sent only at the start of a batch, where no earlier error can make
 * PostgreSQL skip them; within a batch the set may exceed the limit.
 *
 * Optimism is safe within a batch, because an error makes PostgreSQL skip
 * the rest of it and the request queue reports exactly what was skipped.
 * Across batches of a pipeline it is not: a message that would act on a
 * Parse or Close of an earlier, unanswered batch waits (PREPARED_WAIT) until
 * that batch is answered. A client's Close forgets its name only when
 * answered; until then the name is "closing" and unusable.
 */
#include "sluice/prepared.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "sluice/client.h"
#include "sluice/log.h"
#include "sluice/pool.h"
#include "sluice/server.h"
#include "sluice/sqlstate.h"

#define PSTMT_NAME_MAX 32 /* "sluice_" + 20 digits + NUL */
/* Bind's portal and statement names must be within this many bytes. */
#define BIND_NAMES_MAX (64 * 1024)
/* Describe and Close are names only: buffer them whole up to this size. */
#define SMALL_MESSAGE_MAX (64 * 1024)
/* A DEALLOCATE query is looked at only when this short. */
#define DEALLOCATE_MAX 1024

struct pstmt {
	UT_hash_handle hh; /* registry, keyed by text */
	uint64_t id;
	uint32_t refs;
	uint32_t name_len; /* without NUL */
	char name[PSTMT_NAME_MAX];
	uint32_t text_len;
	uint8_t text[]; /* Parse body after the name: query, parameter count and types */
};

struct prepared_name {
	UT_hash_handle hh;
	struct pstmt *stmt;
	uint64_t id; /* this binding of the name: a new Parse of the name makes a new one */
	bool closing; /* a Close of it awaits its answer */
	char name[];
};

struct prepared_entry {
	UT_hash_handle hh; /* keyed by stmt->id */
	uint64_t id;
	uint32_t seq; /* the request that prepared it */
	struct pstmt *stmt;
	TAILQ_ENTRY(prepared_entry) lru;
};

/* ---- statements ------------------------------------------------------------ */

static struct pstmt *pstmt_get(struct worker *w, const uint8_t *text, uint32_t len)
{
	struct prepared_registry *reg = &w->prepared;
	struct pstmt *st;
	HASH_FIND(hh, reg->by_text, text, len, st);
	if (!st) {
		st = xmalloc(sizeof(*st) + len);
		/* The process's number for the text: a server moving between workers keeps its names. */
		st->id = ledger_stmt_acquire(w->ledger, text, len);
		st->refs = 0;
		st->name_len = (uint32_t)snprintf(st->name, sizeof(st->name), "sluice_%llu",
						  (unsigned long long)st->id);
		st->text_len = len;
		memcpy(st->text, text, len);
		HASH_ADD(hh, reg->by_text, text, len, st);
		reg->n++;
		reg->bytes += sizeof(*st) + len;
	}
	st->refs++;
	return st;
}

static struct pstmt *pstmt_ref(struct pstmt *st)
{
	st->refs++;
	return st;
}

static void pstmt_unref(struct worker *w, struct pstmt *st)
{
	if (--st->refs)
		return;
	HASH_DEL(w->prepared.by_text, st);
	w->prepared.n--;
	w->prepared.bytes -= sizeof(*st) + st->text_len;
	ledger_stmt_release(w->ledger, st->text, st->text_len);
	free(st);
}

/* ---- a client's names ------------------------------------------------------ */

static struct prepared_name *name_find(struct prepared_client *pc, const char *name)
{
	struct prepared_name *n;
	HASH_FIND_STR(pc->by_name, name, n);
	return n;
}

uint32_t prepared_client_count(const struct prepared_client *pc)
{
	return (uint32_t)HASH_COUNT(pc->by_name);
}

/* The name as Bind, Describe and Close see it: not while a Close of it is pending. */
static struct prepared_name *name_live(struct prepared_client *pc, const char *name)
{
	struct prepared_name *n = name_find(pc, name);
	return n && !n->closing ? n : NULL;
}

static void name_drop(struct worker *w, struct prepared_client *pc, struct prepared_name *n)
{
	HASH_DEL(pc->by_name, n);
	pstmt_unref(w, n->stmt);
	free(n);
}

/* Names st; a closing name the client had is taken over (its Close was sent first). */
static struct prepared_name *name_bind(struct worker *w, struct prepared_client *pc,
				       const char *name, struct pstmt *st)
{
	struct prepared_name *n = name_find(pc, name);
	if (n) {
		pstmt_unref(w, n->stmt);
	} else {
		size_t len = strlen(name) + 1;
		n = xmalloc(sizeof(*n) + len);
		memcpy(n->name, name, len);
		HASH_ADD_STR(pc->by_name, name, n);
	}
	n->stmt = st;
	n->id = ++w->prepared.next_name_id;
	n->closing = false;
	return n;
}

/* The binding id, if the client still has it. */
static struct prepared_name *name_by_id(struct prepared_client *pc, uint64_t id)
{
	struct prepared_name *n, *tmp;
	HASH_ITER(hh, pc->by_name, n, tmp) {
		if (n->id == id)
			return n;
	}
	return NULL;
}

void prepared_client_forget_all(struct worker *w, struct prepared_client *pc)
{
	struct prepared_name *n, *tmp;
	HASH_ITER(hh, pc->by_name, n, tmp)
		name_drop(w, pc, n);
}

void prepared_client_each(const struct prepared_client *pc, prepared_each_cb *fn, void *arg)
{
	struct prepared_name *n, *tmp;
	HASH_ITER(hh, pc->by_name, n, tmp) {
		if (!n->closing)
			fn(arg, n->name, n->stmt->text, n->stmt->text_len);
	}
}

bool prepared_client_adopt(struct worker *w, struct prepared_client *pc, const char *name,
			   const uint8_t *text, uint32_t len)
{
	/* What on_parse would have accepted: a query and its parameter types, nothing more. */
	struct pkt_reader r;
	pkt_reader_init(&r, text, len);
	const char *query = pkt_get_cstr(&r);
	uint16_t ntypes = pkt_get_be16(&r);
	pkt_get_bytes(&r, (size_t)ntypes * 4);
	if (!query || r.bad || pkt_remaining(&r) != 0 || !*name || name_find(pc, name))
		return false;
	name_bind(w, pc, name, pstmt_get(w, text, len));
	return true;
}

/* ---- a server's set ------------------------------------------------------- */

void prepared_server_init(struct prepared_server *ps)
{
	ps->by_id = NULL;
	TAILQ_INIT(&ps->lru);
	ps->n = 0;
}

static struct prepared_entry *entry_find(struct prepared_server *ps, const struct pstmt *st)
{
	struct prepared_entry *e;
	HASH_FIND(hh, ps->by_id, &st->id, sizeof(st->id), e);
	return e;
}

/* Adds st (taking over one reference) as prepared by request seq. */
static void entry_add(struct prepared_server *ps, struct pstmt *st, uint32_t seq)
{
	struct prepared_entry *e = xmalloc(sizeof(*e));
	e->id = st->id;
	e->seq = seq;
	e->stmt = st;
	HASH_ADD(hh, ps->by_id, id, sizeof(e->id), e);
	TAILQ_INSERT_TAIL(&ps->lru, e, lru);
	ps->n++;
}

/* Removes e; returns its statement reference to the caller. */
static struct pstmt *entry_remove(struct prepared_server *ps, struct prepared_entry *e)
{
	struct pstmt *st = e->stmt;
	HASH_DEL(ps->by_id, e);
	TAILQ_REMOVE(&ps->lru, e, lru);
	ps->n--;
	free(e);
	return st;
}

/* Sequence numbers wrap: a precedes b. */
static bool seq_before(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) < 0;
}

void prepared_server_forget_all(struct worker *w, struct prepared_server *ps, uint32_t seq)
{
	struct prepared_entry *e, *tmp;
	HASH_ITER(hh, ps->by_id, e, tmp) {
		if (seq_before(e->seq, seq))
			pstmt_unref(w, entry_remove(ps, e));
	}
}

void prepared_server_deinit(struct worker *w, struct prepared_server *ps)
{
	struct prepared_entry *e, *tmp;
	HASH_ITER(hh, ps->by_id, e, tmp)
		pstmt_unref(w, entry_remove(ps, e));
}

void prepared_server_pack(struct worker *w, struct prepared_server *ps, struct prepared_carry *out)
{
	out->n = 0;
	out->items = ps->n ? xcalloc(ps->n, sizeof(*out->items)) : NULL;
	struct prepared_entry *e;
	/* Least recently used first, as the new set keeps them. */
	TAILQ_FOREACH(e, &ps->lru, lru) {
		const struct pstmt *st = e->stmt;
		uint8_t *text = xmalloc(st->text_len);
		memcpy(text, st->text, st->text_len);
		/* Its number stays the text's while it travels, whatever this worker drops. */
		(void)ledger_stmt_acquire(w->ledger, text, st->text_len);
		out->items[out->n].text = text;
		out->items[out->n].len = st->text_len;
		out->n++;
	}
	prepared_server_deinit(w, ps);
}

void prepared_server_unpack(struct worker *w, struct prepared_server *ps, struct prepared_carry *in)
{
	for (uint32_t i = 0; i < in->n; i++) {
		struct pstmt *st = pstmt_get(w, in->items[i].text, in->items[i].len);
		if (entry_find(ps, st))
			pstmt_unref(w, st);
		else
			entry_add(ps, st, 0);
	}
	prepared_carry_free(w->ledger, in);
}

void prepared_carry_free(struct ledger *l, struct prepared_carry *c)
{
	for (uint32_t i = 0; i < c->n; i++) {
		ledger_stmt_release(l, c->items[i].text, c->items[i].len);
		free(c->items[i].text);
	}
	free(c->items);
	c->items = NULL;
	c->n = 0;
}

void prepared_request_done(struct server *s, const struct rq_entry *rq, bool answered)
{
	struct prepared_server *ps = &s->prepared;
	struct pstmt *st = rq->stmt;
	struct prepared_client *pc = s->client ? &s->client->prepared : NULL;
	struct prepared_name *n = pc && rq->name_id ? name_by_id(pc, rq->name_id) : NULL;
	if (n && !answered && (rq->kind == RQ_PARSE || rq->kind == RQ_FAKE_PARSE)) {
		/* The client's Parse failed or was skipped: as on PostgreSQL, its name does not exist. */
		name_drop(s->w, pc, n);
	} else if (answered && rq->kind == RQ_PARSE_IN_USE) {
		/*
		 * PostgreSQL took the Parse that should have been refused: the
		 * session was reset (DISCARD ALL) within the batch. The server now
		 * holds a text sluice does not know under that name, and the client
		 * a name sluice cannot map: neither may be used again.
		 */
		server_mark_close_needed(s);
		if (n)
			name_drop(s->w, pc, n);
	} else if (n && n->closing && rq->kind == RQ_FAKE_CLOSE) {
		/* The client's Close took effect, or was skipped and the name lives on. */
		if (answered)
			name_drop(s->w, pc, n);
		else
			n->closing = false;
	}
	if (!answered && (rq->kind == RQ_PARSE || rq->kind == RQ_PARSE_HIDDEN)) {
		/* PostgreSQL did not prepare it, unless a later Parse did. */
		struct prepared_entry *e = entry_find(ps, st);
		if (e && e->seq == rq->seq)
			pstmt_unref(s->w, entry_remove(ps, e));
	} else if (!answered && rq->kind == RQ_CLOSE_HIDDEN) {
		/*
		 * Closes are sent where nothing can make PostgreSQL skip them; if
		 * one was skipped all the same, what the server holds is unknown.
		 */
		server_mark_close_needed(s);
	}
	pstmt_unref(s->w, st);
}

static void put_parse(struct buf_out *out, const struct pstmt *st)
{
	size_t m = pkt_begin(out, PKT_Parse);
	buf_out_put(out, st->name, st->name_len + 1);
	buf_out_put(out, st->text, st->text_len);
	pkt_end(out, m);
}

/*
 * Makes sure the linked server has st, queueing a Parse of kind (the
 * client's own, or hidden) when it has not. Room is made by evicting the
 * least recently used statements only when no message of the client's
 * current batch has been sent yet (!ext_open): there nothing can make
 * PostgreSQL skip the Close. Returns true when the server had st already.
 */
static bool ensure_prepared(struct client *c, struct server *s, struct pstmt *st, enum rq_kind kind,
			    uint64_t name_id)
{
	struct prepared_server *ps = &s->prepared;
	struct prepared_entry *e = entry_find(ps, st);
	if (e) {
		TAILQ_REMOVE(&ps->lru, e, lru);
		TAILQ_INSERT_TAIL(&ps->lru, e, lru);
		return true;
	}
	struct buf_out out;
	buf_out_init(&out);
	uint32_t max = (uint32_t)MAX(c->w->cfg->max_prepared_statements, 1);
	while (!c->ext_open && ps->n >= max) {
		struct prepared_entry *old = TAILQ_FIRST(&ps->lru);
		size_t m = pkt_begin(&out, PKT_Close);
		buf_out_put_u8(&out, 'S');
		buf_out_put(&out, old->stmt->name, old->stmt->name_len + 1);
		pkt_end(&out, m);
		stream_write(&s->stream, out.data, out.len);
		buf_out_reset(&out);
		server_push_request(s, RQ_CLOSE_HIDDEN, entry_remove(ps, old));
	}
	put_parse(&out, st);
	stream_write(&s->stream, out.data, out.len);
	buf_out_deinit(&out);
	server_push_named_request(s, kind, pstmt_ref(st), name_id);
	entry_add(ps, pstmt_ref(st), s->rq.seq);
	c->pool->stats.total.server_parse_count++;
	return false;
}

/* ---- client messages ---------------------------------------------------------- */

static bool tracking(const struct client *c)
{
	/* A replication client has its server to itself, as in session mode. */
	return c->w->cfg->max_prepared_statements > 0 && !c->replication &&
	       pool_mode_of(c->pool) != POOL_MODE_SESSION;
}

/* A message naming a statement was malformed: PostgreSQL would end the session too. */
static enum prepared_rc malformed(struct client *c, const char *what)
{
	client_fail(c, SQLSTATE_PROTOCOL_VIOLATION, "malformed %s message", what);
	return PREPARED_FAILED;
}

/* Buffers the whole message; false when it is not all here yet. */
static bool have_whole(struct client *c, const struct pkt_hdr *h)
{
	if (stream_avail(&c->stream) >= h->len)
		return true;
	stream_reserve(&c->stream, h->len);
	return false;
}

/*
 * The server has st, but its transaction has failed: PostgreSQL refuses
 * every Parse then except of COMMIT/ROLLBACK-like statements. A Parse of the
 * same text under a throwaway name gets the answer PostgreSQL would give the
 * client (ParseComplete or 25P02), and a hidden Close of that name follows.
 */
static void parse_in_failed_transaction(struct client *c, struct server *s, struct pstmt *st,
					uint64_t name_id)
{
	static const char tmp_name[] = "sluice_probe";
	struct buf_out out;
	buf_out_init(&out);
	size_t m = pkt_begin(&out, PKT_Parse);
	buf_out_put(&out, tmp_name, sizeof(tmp_name));
	buf_out_put(&out, st->text, st->text_len);
	pkt_end(&out, m);
	m = pkt_begin(&out, PKT_Close);
	buf_out_put_u8(&out, 'S');
	buf_out_put(&out, tmp_name, sizeof(tmp_name));
	pkt_end(&out, m);
	stream_write(&s->stream, out.data, out.len);
	buf_out_deinit(&out);
	server_push_named_request(s, RQ_PARSE, pstmt_ref(st), name_id);
	server_push_request(s, RQ_CLOSE_HIDDEN, NULL);
	c->pool->stats.total.server_parse_count++;
}

/*
 * A Parse of a name the client has prepared already: PostgreSQL refuses it
 * with 42P05, and the refusal must leave the session as PostgreSQL's would
 * (the rest of the batch skipped, a transaction block aborted). So the
 * server itself is asked to refuse it: the new text is parsed under the
 * server-side name of the statement the name has, which the server holds,
 * and fails at the same check in the same place. Its ErrorResponse names
 * sluice's statement; prepared_name_in_use_error tells the client its own.
 */
static void refuse_name_in_use(struct client *c, struct server *s, struct prepared_name *n,
			       const struct pstmt *text)
{
	ensure_prepared(c, s, n->stmt, RQ_PARSE_HIDDEN, 0);
	struct buf_out out;
	buf_out_init(&out);
	size_t m = pkt_begin(&out, PKT_Parse);
	buf_out_put(&out, n->stmt->name, n->stmt->name_len + 1);
	buf_out_put(&out, text->text, text->text_len);
	pkt_end(&out, m);
	stream_write(&s->stream, out.data, out.len);
	buf_out_deinit(&out);
	server_push_named_request(s, RQ_PARSE_IN_USE, pstmt_ref(n->stmt), n->id);
	c->pool->stats.total.server_parse_count++;
}

bool prepared_name_in_use_error(struct server *s, const struct rq_entry *rq, const uint8_t *msg,
				uint32_t len)
{
	struct pkt_error e;
	if (pkt_parse_error(msg + PKT_HDR_LEN, len - PKT_HDR_LEN, &e) != PKT_OK || !e.sqlstate ||
	    strcmp(e.sqlstate, SQLSTATE_DUPLICATE_PSTATEMENT) != 0 || !s->client)
		return false; /* any other refusal is what PostgreSQL would tell the client */
	struct client *c = s->client;
	struct prepared_name *n = name_by_id(&c->prepared, rq->name_id);
	if (!n)
		return false;
	log_write(LOG_LEVEL_INFO, CLIENT_LOG_CONN(c),
		  "prepared statement '%s' was already prepared", n->name);
	char *text = xasprintf("prepared statement \"%s\" already exists", n->name);
	struct buf_out out;
	buf_out_init(&out);
	pkt_put_ErrorResponse(&out, e.severity ? e.severity : "ERROR",
			      SQLSTATE_DUPLICATE_PSTATEMENT, text);
	free(text);
	stream_write(&c->stream, out.data, out.len);
	buf_out_deinit(&out);
	return true;
}

static enum prepared_rc on_parse(struct client *c, const struct pkt_hdr *h)
{
	struct stream *cs = &c->stream;
	size_t avail = stream_avail(cs);
	if (h->len == PKT_HDR_LEN)
		return malformed(c, "Parse");
	if (avail == PKT_HDR_LEN)
		return PREPARED_MORE;
	if (stream_data(cs)[PKT_HDR_LEN] == 0 || !tracking(c))
		return PREPARED_RELAY; /* the unnamed statement lives within one batch */
	if (!have_whole(c, h))
		return PREPARED_MORE;

	struct pkt_reader r;
	pkt_reader_init(&r, stream_data(cs) + PKT_HDR_LEN, h->len - PKT_HDR_LEN);
	const char *name = pkt_get_cstr(&r);
	size_t text_at = r.pos;
	const char *query = pkt_get_cstr(&r);
	uint16_t ntypes = pkt_get_be16(&r);
	pkt_get_bytes(&r, (size_t)ntypes * 4);
	if (!name || !query || r.bad || pkt_remaining(&r) != 0)
		return malformed(c, "Parse");

	struct worker *w = c->w;
	struct server *s = c->server;
	if (rq_prepared_unsettled(&s->rq))
		return PREPARED_WAIT;
	struct pstmt *st = pstmt_get(w, r.p + text_at, (uint32_t)(r.len - text_at));
	if (entry_find(&s->prepared, st) && rq_batches_pending(&s->rq)) {
		/* Answering it needs the transaction state the earlier batches leave. */
		pstmt_unref(w, st);
		return PREPARED_WAIT;
	}
	struct prepared_name *in_use = name_live(&c->prepared, name);
	if (in_use && rq_batches_pending(&s->rq)) {
		/* Whether it is still in use depends on earlier batches (a DISCARD ALL). */
		pstmt_unref(w, st);
		return PREPARED_WAIT;
	}
	c->pool->stats.total.client_parse_count++;
	if (in_use) {
		refuse_name_in_use(c, s, in_use, st);
		pstmt_unref(w, st);
		stream_consume(cs, h->len);
		return PREPARED_DONE;
	}
	uint64_t name_id = name_bind(w, &c->prepared, name, st)->id;
	if (ensure_prepared(c, s, st, RQ_PARSE, name_id)) {
		if (s->txn_status == 'E')
			parse_in_failed_transaction(c, s, st, name_id);
		else
			server_push_named_request(s, RQ_FAKE_PARSE, pstmt_ref(st), name_id);
	}
	stream_consume(cs, h->len);
	return PREPARED_DONE;
}

static enum prepared_rc on_bind(struct client *c, const struct pkt_hdr *h, uint32_t *rest)
{
	struct stream *cs = &c->stream;
	if (!prepared_client_any(&c->prepared))
		return PREPARED_RELAY;
	/* Only the two names are needed; the parameters may be large and are relayed. */
	size_t avail = stream_avail(cs);
	size_t have = MIN(avail, (size_t)h->len) - PKT_HDR_LEN;
	const uint8_t *names = stream_data(cs) + PKT_HDR_LEN;
	const uint8_t *end1 = memchr(names, 0, have);
	const uint8_t *end2 = end1 ? memchr(end1 + 1, 0, have - (size_t)(end1 + 1 - names)) : NULL;
	if (!end2) {
		if (avail >= h->len)
			return malformed(c, "Bind");
		if (avail >= BIND_NAMES_MAX) {
			client_fail(c, SQLSTATE_PROGRAM_LIMIT_EXCEEDED,
				    "Bind message names longer than %d bytes", BIND_NAMES_MAX);
			return PREPARED_FAILED;
		}
		stream_reserve(cs, MIN((size_t)h->len, (size_t)BIND_NAMES_MAX));
		return PREPARED_MORE;
	}
	const char *portal = (const char *)names;
	const char *name = (const char *)end1 + 1;
	struct prepared_name *n = *name ? name_find(&c->prepared, name) : NULL;
	struct server *s = c->server;
	if (n && rq_prepared_unsettled(&s->rq))
		return PREPARED_WAIT; /* whether the name lives depends on an earlier batch */
	if (!n || n->closing)
		return PREPARED_RELAY; /* unnamed, or unknown: PostgreSQL answers */

	struct pstmt *st = n->stmt;
	c->pool->stats.total.bind_count++;
	ensure_prepared(c, s, st, RQ_PARSE_HIDDEN, 0);
	size_t portal_len = (size_t)(end1 - names) + 1, name_len = strlen(name) + 1;
	size_t consumed = PKT_HDR_LEN + portal_len + name_len;
	struct buf_out out;
	buf_out_init(&out);
	buf_out_put_u8(&out, PKT_Bind);
	buf_out_put_be32(&out, (uint32_t)(h->len - 1 - name_len + st->name_len + 1));
	buf_out_put(&out, portal, portal_len);
	buf_out_put(&out, st->name, st->name_len + 1);
	stream_write(&s->stream, out.data, out.len);
	buf_out_deinit(&out);
	server_push_request(s, RQ_BIND, NULL);
	stream_consume(cs, consumed);
	*rest = h->len - (uint32_t)consumed;
	return PREPARED_DONE;
}

/* Describe 'S' and Close 'S' of a client name; NULL for anything else. */
static struct prepared_name *statement_named(struct client *c, const struct pkt_hdr *h,
					     enum prepared_rc *rc, const char *what)
{
	*rc = PREPARED_RELAY;
	if (!prepared_client_any(&c->prepared) || h->len > SMALL_MESSAGE_MAX)
		return NULL;
	if (!have_whole(c, h)) {
		*rc = PREPARED_MORE;
		return NULL;
	}
	struct pkt_reader r;
	pkt_reader_init(&r, stream_data(&c->stream) + PKT_HDR_LEN, h->len - PKT_HDR_LEN);
	uint8_t kind = pkt_get_u8(&r);
	const char *name = pkt_get_cstr(&r);
	if (!name || r.bad || pkt_remaining(&r) != 0) {
		*rc = malformed(c, what);
		return NULL;
	}
	if (kind != 'S' || !*name)
		return NULL;
	struct prepared_name *n = name_find(&c->prepared, name);
	if (n && rq_prepared_unsettled(&c->server->rq)) {
		*rc = PREPARED_WAIT; /* whether the name lives depends on an earlier batch */
		return NULL;
	}
	return n && !n->closing ? n : NULL;
}

static enum prepared_rc on_describe(struct client *c, const struct pkt_hdr *h)
{
	enum prepared_rc rc;
	struct prepared_name *n = statement_named(c, h, &rc, "Describe");
	if (!n)
		return rc;
	struct server *s = c->server;
	struct pstmt *st = n->stmt;
	ensure_prepared(c, s, st, RQ_PARSE_HIDDEN, 0);
	struct buf_out out;
	buf_out_init(&out);
	size_t m = pkt_begin(&out, PKT_Describe);
	buf_out_put_u8(&out, 'S');
	buf_out_put(&out, st->name, st->name_len + 1);
	pkt_end(&out, m);
	stream_write(&s->stream, out.data, out.len);
	buf_out_deinit(&out);
	server_push_request(s, RQ_DESCRIBE, NULL);
	stream_consume(&c->stream, h->len);
	return PREPARED_DONE;
}

static enum prepared_rc on_close(struct client *c, const struct pkt_hdr *h)
{
	enum prepared_rc rc;
	struct prepared_name *n = statement_named(c, h, &rc, "Close");
	if (!n)
		return rc;
	/* The server keeps the statement for other clients and later use. */
	n->closing = true;
	server_push_named_request(c->server, RQ_FAKE_CLOSE, pstmt_ref(n->stmt), n->id);
	stream_consume(&c->stream, h->len);
	return PREPARED_DONE;
}

enum prepared_rc prepared_client_message(struct client *c, const struct pkt_hdr *h, uint32_t *rest)
{
	*rest = 0;
	switch (h->type) {
	case PKT_Parse:
		return on_parse(c, h);
	case PKT_Bind:
		return on_bind(c, h, rest);
	case PKT_Describe:
		return on_describe(c, h);
	case PKT_Close:
		return on_close(c, h);
	default:
		return PREPARED_RELAY;
	}
}

/* ---- DEALLOCATE ------------------------------------------------------------ */

static const char *skip_space(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f')
		p++;
	return p;
}

/* Matches keyword kw (case-insensitive) followed by a non-identifier byte. */
static const char *keyword(const char *p, const char *kw)
{
	size_t n = strlen(kw);
	if (strncasecmp(p, kw, n) != 0)
		return NULL;
	unsigned char next = (unsigned char)p[n];
	if (isalnum(next) || next == '_' || next == '$' || next >= 0x80)
		return NULL;
	return p + n;
}

/*
 * Reads an SQL identifier into out (unquoted ones folded to lower case, as
 * PostgreSQL does). Returns the byte after it, NULL if there is none.
 */
static const char *identifier(const char *p, char *out, size_t cap)
{
	size_t n = 0;
	if (*p == '"') {
		for (p++;; p++) {
			if (*p == 0)
				return NULL;
			if (*p == '"' && *++p != '"')
				break;
			if (n + 1 >= cap)
				return NULL;
			out[n++] = *p;
		}
	} else {
		unsigned char ch = (unsigned char)*p;
		if (!(isalpha(ch) || ch == '_' || ch >= 0x80))
			return NULL;
		for (; (ch = (unsigned char)*p) &&
		       (isalnum(ch) || ch == '_' || ch == '$' || ch >= 0x80);
		     p++) {
			if (n + 1 >= cap)
				return NULL;
			out[n++] = (char)(ch < 0x80 ? tolower(ch) : ch);
		}
	}
	if (n == 0)
		return NULL;
	out[n] = 0;
	return p;
}

enum prepared_rc prepared_client_deallocate(struct client *c, const struct pkt_hdr *h,
					    char txn_status)
{
	if (!prepared_client_any(&c->prepared) || h->len > DEALLOCATE_MAX)
		return PREPARED_RELAY;
	if (!have_whole(c, h))
		return PREPARED_MORE;
	const char *sql = (const char *)stream_data(&c->stream) + PKT_HDR_LEN;
	size_t len = h->len - PKT_HDR_LEN;
	if (len == 0 || sql[len - 1] != 0 || strlen(sql) != len - 1)
		return PREPARED_RELAY; /* let PostgreSQL judge it */

	char name[DEALLOCATE_MAX];
	const char *p = keyword(skip_space(sql), "deallocate");
	if (!p)
		return PREPARED_RELAY;
	p = skip_space(p);
	const char *after_prepare = keyword(p, "prepare");
	if (after_prepare && *skip_space(after_prepare))
		p = skip_space(after_prepare);
	const char *all = keyword(p, "all");
	if (!all && !(p = identifier(p, name, sizeof(name))))
		return PREPARED_RELAY;
	if (all)
		p = all;
	p = skip_space(p);
	if (*p == ';')
		p = skip_space(p + 1);
	if (*p)
		return PREPARED_RELAY;

	if (all) {
		prepared_client_forget_all(c->w, &c->prepared);
	} else {
		struct prepared_name *n = name_live(&c->prepared, name);
		if (!n)
			return PREPARED_RELAY; /* not ours: PostgreSQL answers */
		name_drop(c->w, &c->prepared, n);
	}
	struct buf_out out;
	buf_out_init(&out);
	pkt_put_CommandComplete(&out, all ? "DEALLOCATE ALL" : "DEALLOCATE");
	pkt_put_ReadyForQuery(&out, txn_status);
	stream_write(&c->stream, out.data, out.len);
	buf_out_deinit(&out);
	stream_consume(&c->stream, h->len);
	return PREPARED_DONE;
}
