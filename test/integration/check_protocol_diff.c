/*
 * check_protocol_diff.c - a differential, randomized test of how sluice
 * orders and synthesizes the answers to extended-protocol messages when it
 * rewrites named prepared statements in transaction mode (fake ParseComplete
 * and CloseComplete, hidden Parse and Close, skipping after an error until
 * Sync, eviction beyond max_prepared_statements).
 *
 * A seeded generator writes a script for three logical clients: a list of
 * batches, each belonging to one client, made of Parse, Bind, Describe,
 * Execute, Close, Flush and Sync messages (sometimes inside a BEGIN ... COMMIT
 * sent as simple queries, sometimes a simple query of its own). The script is
 * run twice, over raw sockets: directly against PostgreSQL (one session per
 * client) and through sluice in transaction mode with one server and
 * max_prepared_statements = 2, so the clients share the server, their
 * statement names collide there and statements are evicted and prepared
 * again. Batches run one at a time in script order, each read up to its last
 * ReadyForQuery. Every answer is reduced to a token (type, SQLSTATE, command
 * tag, row values, ready status, described types and names) and the two token
 * sequences of every batch must be equal.
 *
 * The documented differences (doc/prepared-statements.md) are kept out by
 * construction: error texts and server-side names are not compared, and the
 * unnamed statement is only used after a Parse of it before the next Sync
 * (outside of that it belongs to whichever client used the server last, on
 * any pooler).
 *
 * It does not look inside sluice. Environment, for investigating a failure:
 * PROTOCOL_DIFF_SEED=<n> runs only that seed, PROTOCOL_DIFF_MAX_PREPARED=<n>
 * overrides max_prepared_statements (0 turns renaming off, which must make
 * the test fail), PROTOCOL_DIFF_VERBOSE=1 prints every script, and
 * PROTOCOL_DIFF_SHRINK=1 removes batches and messages from a failing seed's
 * script while it still differs and prints the result (slow: run it for one
 * seed, with CK_TIMEOUT_MULTIPLIER=10). The "repro" case holds such shrunk
 * scripts, written by hand.
 */
#include "harness.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define N_CLIENTS 3
#define MAX_BATCHES 128
#define MAX_BATCH_MSGS 32
#define N_SEEDS 40
#define READ_TIMEOUT_S 3

/* ---- the PRNG ---------------------------------------------------------------------------- */

/* A number in [0, n) (harness.h). */
static int rng_below(uint64_t *state, int n)
{
	return harness_rng_below(state, n);
}

/* True with probability pct percent. */
static bool rng_pct(uint64_t *state, int pct)
{
	return rng_below(state, 100) < pct;
}

/* ---- scripts ----------------------------------------------------------------------------- */

/*
 * The query texts clients parse. Several clients parse the same texts, so
 * sluice shares server-side statements between them.
 */
static const struct query {
	const char *sql;
	int nparams;
	bool int_param; /* the parameter is an int: values from int_values */
} queries[] = {
	{ "select $1::int + 1", 1, true },
	{ "select $1::text || 'x'", 1, false },
	{ "select 1/$1::int", 1, true }, /* 22012 when the parameter is 0 */
	{ "select 42", 0, false },
	{ "selec 1", 0, false }, /* 42601 at Parse */
};

static const char *const int_values[] = { "0", "1", "7" };
static const char *const text_values[] = { "a", "0" };

/* Simple queries sent as batches of their own. */
static const char *const simple_queries[] = {
	"select 1",
	"select 1/0",
	"",
	"DEALLOCATE ALL",
	"DISCARD ALL",
};

enum msg_kind { M_PARSE, M_BIND, M_DESCRIBE, M_EXECUTE, M_CLOSE, M_FLUSH, M_SYNC, M_QUERY };

struct msg {
	enum msg_kind kind;
	char name[16]; /* statement: Parse, Bind, Describe/Close 'S' ("" = unnamed) */
	char portal[8]; /* Bind, Execute, Describe/Close 'P' */
	char what; /* Describe/Close: 'S' or 'P' */
	char sql[64]; /* Parse, Query */
	int ntypes; /* Parse: declared parameter types (int4), 0 or 1 */
	int nparams; /* Bind: parameters sent */
	const char *param; /* Bind: the value of each parameter */
	int max_rows; /* Execute */
};

struct batch {
	int client;
	int nmsgs;
	int n_ready; /* ReadyForQuery answers expected: one per Sync and per Query */
	struct msg msgs[MAX_BATCH_MSGS];
};

struct script {
	uint64_t seed;
	int nbatches;
	int total_msgs;
	struct batch batches[MAX_BATCHES];
};

/* What the generator knows about one client while writing its batches. */
struct gen_client {
	int next_name; /* names s1 .. s<next_name - 1> have been parsed */
	int name_query[256]; /* query index parsed under s<k> */
	int unnamed_query; /* query of the unnamed statement parsed in this batch, or -1 */
};

static struct msg *batch_add(struct batch *b, enum msg_kind kind)
{
	ck_assert_int_lt(b->nmsgs, MAX_BATCH_MSGS);
	struct msg *m = &b->msgs[b->nmsgs++];
	memset(m, 0, sizeof(*m));
	m->kind = kind;
	if (kind == M_SYNC || kind == M_QUERY)
		b->n_ready++;
	return m;
}

static const char *const portals[] = { "", "p1", "p2" };

/*
 * A statement name for Bind, Describe or Close: mostly one the client parsed
 * (live, closed, failed or skipped: only PostgreSQL knows), sometimes one it
 * never parsed (possibly another client's), sometimes the unnamed statement
 * when this batch parsed it. Returns the query index the name was parsed
 * with, or -1 when unknown.
 */
static int pick_statement(uint64_t *r, struct gen_client *g, char *name, size_t cap)
{
	int roll = rng_below(r, 100);
	if (roll < 15 && g->unnamed_query >= 0) {
		name[0] = '\0';
		return g->unnamed_query;
	}
	if (roll < 80 && g->next_name > 1) {
		int k = 1 + rng_below(r, g->next_name - 1);
		snprintf(name, cap, "s%d", k);
		return g->name_query[k];
	}
	/* Never parsed by this client: a little above its counter. */
	snprintf(name, cap, "s%d", g->next_name + 1 + rng_below(r, 3));
	return -1;
}

/*
 * Appends a Sync-terminated run of extended-protocol messages for client g.
 * The unnamed statement is used only after a Parse of it in the same run:
 * if an error before that Parse makes PostgreSQL skip it, it skips the uses
 * too, whereas after a Sync the unnamed statement of an earlier run would
 * be the server session's, which on a pooler is not the client's.
 */
static void gen_segment(uint64_t *r, struct batch *b, struct gen_client *g)
{
	g->unnamed_query = -1;
	int n = 1 + rng_below(r, 6);
	for (int i = 0; i < n && b->nmsgs < MAX_BATCH_MSGS - 4; i++) {
		int roll = rng_below(r, 100);
		if (roll < 30) {
			struct msg *m = batch_add(b, M_PARSE);
			int q = rng_below(r, (int)ARRAY_SIZE(queries));
			snprintf(m->sql, sizeof(m->sql), "%s", queries[q].sql);
			if (queries[q].int_param && rng_pct(r, 25))
				m->ntypes = 1;
			if (rng_pct(r, 20) || g->next_name >= 255) {
				m->name[0] = '\0';
				g->unnamed_query = q;
			} else if (g->next_name > 1 && rng_pct(r, 15)) {
				/* A name parsed before: 42P05 while it lives, taken once closed. */
				int k = 1 + rng_below(r, g->next_name - 1);
				snprintf(m->name, sizeof(m->name), "s%d", k);
			} else {
				int k = g->next_name++;
				snprintf(m->name, sizeof(m->name), "s%d", k);
				g->name_query[k] = q;
			}
		} else if (roll < 60) {
			struct msg *m = batch_add(b, M_BIND);
			int q = pick_statement(r, g, m->name, sizeof(m->name));
			snprintf(m->portal, sizeof(m->portal), "%s",
				portals[rng_below(r, (int)ARRAY_SIZE(portals))]);
			/* The right count for a known query; any count for an unknown name. */
			m->nparams = q >= 0 ? queries[q].nparams : rng_below(r, 2);
			if (q >= 0 && !queries[q].int_param)
				m->param = text_values[rng_below(r, (int)ARRAY_SIZE(text_values))];
			else
				m->param = int_values[rng_below(r, (int)ARRAY_SIZE(int_values))];
			if (rng_pct(r, 25)) {
				struct msg *d = batch_add(b, M_DESCRIBE);
				d->what = 'P';
				snprintf(d->portal, sizeof(d->portal), "%s", m->portal);
			}
			if (rng_pct(r, 75)) {
				struct msg *e = batch_add(b, M_EXECUTE);
				snprintf(e->portal, sizeof(e->portal), "%s", m->portal);
				e->max_rows = rng_pct(r, 25) ? 1 : 0;
			}
		} else if (roll < 72) {
			struct msg *m = batch_add(b, M_DESCRIBE);
			m->what = rng_pct(r, 75) ? 'S' : 'P';
			if (m->what == 'S')
				(void)pick_statement(r, g, m->name, sizeof(m->name));
			else
				snprintf(m->portal, sizeof(m->portal), "%s",
					portals[rng_below(r, (int)ARRAY_SIZE(portals))]);
		} else if (roll < 80) {
			struct msg *m = batch_add(b, M_EXECUTE);
			snprintf(m->portal, sizeof(m->portal), "%s",
				portals[rng_below(r, (int)ARRAY_SIZE(portals))]);
			m->max_rows = rng_pct(r, 30) ? 1 : 0;
		} else if (roll < 94) {
			struct msg *m = batch_add(b, M_CLOSE);
			m->what = rng_pct(r, 80) ? 'S' : 'P';
			if (m->what == 'S')
				(void)pick_statement(r, g, m->name, sizeof(m->name));
			else
				snprintf(m->portal, sizeof(m->portal), "%s",
					portals[rng_below(r, (int)ARRAY_SIZE(portals))]);
		} else if (i + 1 < n) {
			(void)batch_add(b, M_FLUSH);
		}
	}
	(void)batch_add(b, M_SYNC);
}

static void hb_query(struct batch *b, const char *sql)
{
	struct msg *m = batch_add(b, M_QUERY);
	snprintf(m->sql, sizeof(m->sql), "%s", sql);
}

/*
 * Writes the script of seed: batches for random clients until 60..150
 * messages. No client is inside a transaction block at the end of a batch.
 */
static void gen_script(uint64_t seed, struct script *s)
{
	memset(s, 0, sizeof(*s));
	s->seed = seed;
	uint64_t r = seed * 0x2545f4914f6cdd1dull + 1;
	struct gen_client g[N_CLIENTS];
	for (int c = 0; c < N_CLIENTS; c++) {
		g[c].next_name = 1;
		g[c].unnamed_query = -1;
	}
	int target = 60 + rng_below(&r, 91);
	while (s->total_msgs < target && s->nbatches < MAX_BATCHES) {
		struct batch *b = &s->batches[s->nbatches++];
		b->client = rng_below(&r, N_CLIENTS);
		struct gen_client *gc = &g[b->client];
		gc->unnamed_query = -1;
		int roll = rng_below(&r, 100);
		if (roll < 12) {
			hb_query(b, simple_queries[rng_below(&r, (int)ARRAY_SIZE(simple_queries))]);
		} else if (roll < 30) {
			/* A transaction block around segments, maybe aborted in the middle. */
			hb_query(b, "begin");
			int segs = 1 + rng_below(&r, 3);
			for (int i = 0; i < segs; i++) {
				gen_segment(&r, b, gc);
				if (rng_pct(&r, 20))
					hb_query(b, rng_pct(&r, 50) ? "select 1/0" : "select 1");
			}
			hb_query(b, "commit");
		} else {
			int segs = 1 + (rng_pct(&r, 25) ? 1 : 0);
			for (int i = 0; i < segs; i++)
				gen_segment(&r, b, gc);
		}
		s->total_msgs += b->nmsgs;
	}
}

/* One message as text, for failure reports. */
static void msg_describe(const struct msg *m, char *out, size_t cap)
{
	switch (m->kind) {
	case M_PARSE:
		snprintf(out, cap, "Parse(\"%s\", \"%s\"%s)", m->name, m->sql,
			m->ntypes ? ", int4" : "");
		break;
	case M_BIND:
		if (m->nparams)
			snprintf(out, cap, "Bind(portal \"%s\", stmt \"%s\", '%s')", m->portal,
				m->name, m->param);
		else
			snprintf(out, cap, "Bind(portal \"%s\", stmt \"%s\")", m->portal, m->name);
		break;
	case M_DESCRIBE:
	case M_CLOSE:
		snprintf(out, cap, "%s(%c \"%s\")", m->kind == M_DESCRIBE ? "Describe" : "Close",
			m->what, m->what == 'S' ? m->name : m->portal);
		break;
	case M_EXECUTE:
		snprintf(out, cap, "Execute(\"%s\", %d)", m->portal, m->max_rows);
		break;
	case M_FLUSH:
		snprintf(out, cap, "Flush");
		break;
	case M_SYNC:
		snprintf(out, cap, "Sync");
		break;
	case M_QUERY:
		snprintf(out, cap, "Query(\"%s\")", m->sql);
		break;
	}
}

/* The whole batch as text (heap). */
static char *batch_describe(const struct batch *b)
{
	char *out = xasprintf("client %d:", b->client + 1);
	for (int i = 0; i < b->nmsgs; i++) {
		char one[160];
		msg_describe(&b->msgs[i], one, sizeof(one));
		char *next = xasprintf("%s %s", out, one);
		free(out);
		out = next;
	}
	return out;
}

/* ---- the wire ---------------------------------------------------------------------------- */

/* A growing byte buffer for outgoing messages. */
struct wbuf {
	uint8_t *p;
	size_t len, cap;
};

static void wbuf_put(struct wbuf *w, const void *data, size_t n)
{
	if (w->len + n > w->cap) {
		w->cap = (w->len + n) * 2 + 64;
		w->p = xrealloc(w->p, w->cap);
	}
	memcpy(w->p + w->len, data, n);
	w->len += n;
}

static void wbuf_str(struct wbuf *w, const char *s)
{
	wbuf_put(w, s, strlen(s) + 1);
}

static void wbuf_be16(struct wbuf *w, uint16_t v)
{
	uint8_t b[2];
	put_be16(b, v);
	wbuf_put(w, b, 2);
}

static void wbuf_be32(struct wbuf *w, uint32_t v)
{
	uint8_t b[4];
	put_be32(b, v);
	wbuf_put(w, b, 4);
}

/* Appends message m (type, length, body) to w. */
static void encode_msg(struct wbuf *w, const struct msg *m)
{
	static const char types[] = { [M_PARSE] = 'P', [M_BIND] = 'B', [M_DESCRIBE] = 'D',
		[M_EXECUTE] = 'E', [M_CLOSE] = 'C', [M_FLUSH] = 'H', [M_SYNC] = 'S',
		[M_QUERY] = 'Q' };
	uint8_t type = (uint8_t)types[m->kind];
	wbuf_put(w, &type, 1);
	size_t len_at = w->len;
	wbuf_be32(w, 0);
	switch (m->kind) {
	case M_PARSE:
		wbuf_str(w, m->name);
		wbuf_str(w, m->sql);
		wbuf_be16(w, (uint16_t)m->ntypes);
		if (m->ntypes)
			wbuf_be32(w, 23); /* int4 */
		break;
	case M_BIND:
		wbuf_str(w, m->portal);
		wbuf_str(w, m->name);
		wbuf_be16(w, 0); /* every parameter in text format */
		wbuf_be16(w, (uint16_t)m->nparams);
		for (int i = 0; i < m->nparams; i++) {
			wbuf_be32(w, (uint32_t)strlen(m->param));
			wbuf_put(w, m->param, strlen(m->param));
		}
		wbuf_be16(w, 0); /* every result column in text format */
		break;
	case M_DESCRIBE:
	case M_CLOSE:
		wbuf_put(w, &m->what, 1);
		wbuf_str(w, m->what == 'S' ? m->name : m->portal);
		break;
	case M_EXECUTE:
		wbuf_str(w, m->portal);
		wbuf_be32(w, (uint32_t)m->max_rows);
		break;
	case M_FLUSH:
	case M_SYNC:
		break;
	case M_QUERY:
		wbuf_str(w, m->sql);
		break;
	}
	put_be32(w->p + len_at, (uint32_t)(w->len - len_at));
}

/* A growing string of space-separated tokens. */
struct tokens {
	char *s;
	size_t len, cap;
};

static void tokens_add(struct tokens *t, const char *fmt, ...) PRINTF_LIKE(2, 3);

static void tokens_add(struct tokens *t, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *one = NULL;
	int n = vasprintf(&one, fmt, ap);
	va_end(ap);
	ck_assert_int_ge(n, 0);
	if (t->len + (size_t)n + 2 > t->cap) {
		t->cap = (t->len + (size_t)n + 2) * 2;
		t->s = xrealloc(t->s, t->cap);
	}
	if (t->len)
		t->s[t->len++] = ' ';
	memcpy(t->s + t->len, one, (size_t)n + 1);
	t->len += (size_t)n;
	free(one);
}

/* Appends the token of message m; NoticeResponse and ParameterStatus give none. */
static void tokenize(struct tokens *t, const struct harness_msg *m)
{
	const uint8_t *p = (const uint8_t *)m->body, *end = p + m->len;
	switch (m->type) {
	case 'N':
	case 'S':
		return;
	case 'E':
		tokens_add(t, "E:%s", harness_msg_field(m, 'C'));
		return;
	case 'C':
		tokens_add(t, "C:%s", m->body);
		return;
	case 'Z':
		tokens_add(t, "Z:%c", m->len ? m->body[0] : '?');
		return;
	case 'D': {
		struct tokens row = { 0 };
		uint16_t n = p + 2 <= end ? get_be16(p) : 0;
		p += 2;
		for (uint16_t i = 0; i < n && p + 4 <= end; i++) {
			int32_t vl = (int32_t)get_be32(p);
			p += 4;
			if (vl < 0) {
				tokens_add(&row, "NULL");
			} else {
				size_t l = MIN((size_t)vl, (size_t)(end - p));
				tokens_add(&row, "'%.*s'", (int)l, (const char *)p);
				p += l;
			}
		}
		tokens_add(t, "D:[%s]", row.s ? row.s : "");
		free(row.s);
		return;
	}
	case 't': {
		struct tokens ty = { 0 };
		uint16_t n = p + 2 <= end ? get_be16(p) : 0;
		p += 2;
		for (uint16_t i = 0; i < n && p + 4 <= end; i++, p += 4)
			tokens_add(&ty, "%u", get_be32(p));
		tokens_add(t, "t:[%s]", ty.s ? ty.s : "");
		free(ty.s);
		return;
	}
	case 'T': {
		struct tokens cols = { 0 };
		uint16_t n = p + 2 <= end ? get_be16(p) : 0;
		p += 2;
		for (uint16_t i = 0; i < n && p < end; i++) {
			const char *name = (const char *)p;
			p += strnlen(name, (size_t)(end - p)) + 1;
			/* table oid 4, column 2, type oid 4, size 2, modifier 4, format 2 */
			uint32_t oid = p + 10 <= end ? get_be32(p + 6) : 0;
			p += 18;
			tokens_add(&cols, "%s/%u", name, oid);
		}
		tokens_add(t, "T:[%s]", cols.s ? cols.s : "");
		free(cols.s);
		return;
	}
	default:
		tokens_add(t, "%c", m->type);
		return;
	}
}

/* Sets a short receive timeout on fd, so that a missing answer fails quickly. */
static void set_read_timeout(int fd, int seconds)
{
	struct timeval tv = { .tv_sec = seconds };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

/* Connects one logical client as trustuser to database app on port and waits until ready. */
static int client_connect(int port)
{
	int fd = harness_raw_connect(port);
	harness_raw_send_startup(fd, "trustuser", "app");
	for (;;) {
		struct harness_msg m;
		ck_assert_msg(harness_raw_read_msg(fd, &m), "port %d: no ReadyForQuery at login",
			port);
		char t = m.type;
		if (t == 'E')
			ck_abort_msg("port %d: login failed: %s %s", port,
				harness_msg_field(&m, 'C'), harness_msg_field(&m, 'M'));
		free(m.body);
		if (t == 'Z')
			break;
	}
	set_read_timeout(fd, READ_TIMEOUT_S);
	return fd;
}

/*
 * Runs script s against port (PostgreSQL or sluice), one connection per
 * client, and returns the token string of every batch (heap, caller frees
 * each and the array). A connection that ends or stays silent ends the run:
 * its batch gets an <eof> token and the later batches "<not run>".
 */
static char **run_script(const struct script *s, int port)
{
	int fds[N_CLIENTS];
	for (int c = 0; c < N_CLIENTS; c++)
		fds[c] = client_connect(port);
	char **out = xcalloc((size_t)s->nbatches, sizeof(*out));
	bool broken = false;
	for (int i = 0; i < s->nbatches; i++) {
		const struct batch *b = &s->batches[i];
		if (broken) {
			out[i] = xstrdup("<not run>");
			continue;
		}
		struct wbuf w = { 0 };
		for (int k = 0; k < b->nmsgs; k++)
			encode_msg(&w, &b->msgs[k]);
		int fd = fds[b->client];
		harness_write_all(fd, w.p, w.len);
		free(w.p);
		struct tokens t = { 0 };
		for (int ready = 0; ready < b->n_ready;) {
			struct harness_msg m;
			if (!harness_raw_read_msg(fd, &m)) {
				tokens_add(&t, "<eof>");
				broken = true;
				break;
			}
			tokenize(&t, &m);
			if (m.type == 'Z')
				ready++;
			free(m.body);
		}
		out[i] = t.s ? t.s : xstrdup("");
	}
	for (int c = 0; c < N_CLIENTS; c++) {
		/* Terminate, so that neither side logs an unexpected end of the connection. */
		static const uint8_t terminate[5] = { 'X', 0, 0, 0, 4 };
		harness_write_all(fds[c], terminate, sizeof(terminate));
		close(fds[c]);
	}
	return out;
}

static void free_results(char **r, int n)
{
	for (int i = 0; i < n; i++)
		free(r[i]);
	free(r);
}

static void print_script(const struct script *s)
{
	fprintf(stderr, "seed %llu: %d batches, %d messages\n", (unsigned long long)s->seed,
		s->nbatches, s->total_msgs);
	for (int i = 0; i < s->nbatches; i++) {
		char *d = batch_describe(&s->batches[i]);
		fprintf(stderr, "  batch %d: %s\n", i, d);
		free(d);
	}
}

/* ---- the tests --------------------------------------------------------------------------- */

static int env_int(const char *name, int dflt)
{
	const char *v = getenv(name);
	return v && *v ? atoi(v) : dflt;
}

/*
 * Runs script s directly and through a fresh sluice. Returns the index of the
 * first batch whose answers differ, with both token sequences in *direct_out
 * and *pooled_out (heap), or -1 when all agree. A non-zero exit status of
 * sluice is stored in *status.
 */
static int diff_run(const struct script *s, char **direct_out, char **pooled_out, int *status,
	char **log_out)
{
	const struct harness_pg *pg = harness_pg();
	char **direct = run_script(s, pg->port);

	char ini[256];
	snprintf(ini, sizeof(ini),
		"auth_type = trust\npool_mode = transaction\nmax_prepared_statements = %d\n"
		"query_wait_timeout = 5\n",
		env_int("PROTOCOL_DIFF_MAX_PREPARED", 2));
	struct harness_sluice *sl = harness_sluice_start(ini,
		"app = host=@PGHOST@ port=@PGPORT@ dbname=app pool_size=1\n",
		"\"trustuser\" \"trustuserpw\"\n");
	char **pooled = run_script(s, sl->port);
	*status = harness_sluice_stop(sl);

	int bad = -1;
	for (int i = 0; i < s->nbatches && bad < 0; i++) {
		if (strcmp(direct[i], pooled[i]) != 0) {
			bad = i;
			*direct_out = xstrdup(direct[i]);
			*pooled_out = xstrdup(pooled[i]);
			if (log_out)
				*log_out = harness_sluice_log(sl);
		}
	}
	free_results(direct, s->nbatches);
	free_results(pooled, s->nbatches);
	harness_sluice_free(sl);
	return bad;
}

/*
 * Runs script s both ways and fails at the first batch whose answers differ,
 * with the seed, the batch, and both token sequences (the whole script and
 * sluice's log go to stderr); fails too when sluice did not exit cleanly.
 */
static void diff_script(const struct script *s)
{
	if (env_int("PROTOCOL_DIFF_VERBOSE", 0))
		print_script(s);
	char *direct = NULL, *pooled = NULL, *log = NULL;
	int status = 0;
	int i = diff_run(s, &direct, &pooled, &status, &log);
	if (i >= 0) {
		char *d = batch_describe(&s->batches[i]);
		print_script(s);
		fprintf(stderr,
			"seed %llu, batch %d differs\n  batch:   %s\n  direct:  %s\n  sluice:  %s\n"
			"sluice log:\n%s\n",
			(unsigned long long)s->seed, i, d, direct, pooled, log);
		ck_abort_msg("seed %llu, batch %d (%s): direct [%s] but through sluice [%s]",
			(unsigned long long)s->seed, i, d, direct, pooled);
	}
	ck_assert_msg(status == 0, "seed %llu: sluice exited with status %d",
		(unsigned long long)s->seed, status);
}

/* ---- shrinking ----------------------------------------------------------------------------- */

/* Whether the script keeps the generator's rules (see the top of the file). */
static bool script_valid(const struct script *s)
{
	for (int i = 0; i < s->nbatches; i++) {
		const struct batch *b = &s->batches[i];
		if (b->nmsgs == 0)
			return false;
		enum msg_kind last = b->msgs[b->nmsgs - 1].kind;
		if (last != M_SYNC && last != M_QUERY)
			return false;
		bool unnamed = false, open_extended = false;
		int depth = 0;
		for (int k = 0; k < b->nmsgs; k++) {
			const struct msg *m = &b->msgs[k];
			/*
			 * A simple query inside an unsynced extended batch keeps the
			 * server (sluice cannot hand it on): not what the tests are about.
			 */
			if (m->kind == M_QUERY && open_extended)
				return false;
			open_extended = m->kind != M_SYNC && m->kind != M_QUERY;
			if (m->kind == M_SYNC)
				unnamed = false;
			if (m->kind == M_PARSE && !m->name[0])
				unnamed = true;
			if ((m->kind == M_BIND || (m->kind == M_DESCRIBE && m->what == 'S')) &&
				!m->name[0] && !unnamed)
				return false;
			if (m->kind == M_QUERY && strcmp(m->sql, "begin") == 0)
				depth++;
			if (m->kind == M_QUERY && strcmp(m->sql, "commit") == 0)
				depth--;
			if (depth < 0)
				return false;
		}
		if (depth != 0)
			return false;
	}
	return true;
}

static void batch_recount(struct batch *b)
{
	b->n_ready = 0;
	for (int k = 0; k < b->nmsgs; k++)
		if (b->msgs[k].kind == M_SYNC || b->msgs[k].kind == M_QUERY)
			b->n_ready++;
}

/* Whether candidate c still differs; c is kept in *s when it does. */
static bool shrink_try(struct script *s, const struct script *c)
{
	if (!script_valid(c))
		return false;
	char *direct = NULL, *pooled = NULL;
	int status = 0;
	int bad = diff_run(c, &direct, &pooled, &status, NULL);
	free(direct);
	free(pooled);
	if (bad < 0)
		return false;
	memcpy(s, c, sizeof(*s));
	return true;
}

/*
 * Removes batches, then single messages, while the script still differs
 * somewhere, until nothing more can go (a local minimum), and prints it.
 */
static void shrink_script(struct script *s)
{
	static struct script c;
	bool progress = true;
	while (progress) {
		progress = false;
		for (int i = s->nbatches - 1; i >= 0; i--) {
			memcpy(&c, s, sizeof(c));
			memmove(&c.batches[i], &c.batches[i + 1],
				sizeof(c.batches[0]) * (size_t)(c.nbatches - i - 1));
			c.nbatches--;
			if (shrink_try(s, &c))
				progress = true;
		}
		for (int i = s->nbatches - 1; i >= 0; i--) {
			for (int k = s->batches[i].nmsgs - 1; k >= 0; k--) {
				if (k >= s->batches[i].nmsgs)
					continue;
				memcpy(&c, s, sizeof(c));
				struct batch *b = &c.batches[i];
				memmove(&b->msgs[k], &b->msgs[k + 1],
					sizeof(b->msgs[0]) * (size_t)(b->nmsgs - k - 1));
				b->nmsgs--;
				batch_recount(b);
				if (shrink_try(s, &c))
					progress = true;
			}
		}
	}
	fprintf(stderr, "shrunk:\n");
	print_script(s);
	char *direct = NULL, *pooled = NULL;
	int status = 0;
	int bad = diff_run(s, &direct, &pooled, &status, NULL);
	fprintf(stderr, "batch %d\n  direct:  %s\n  sluice:  %s\n", bad, direct ? direct : "",
		pooled ? pooled : "");
	free(direct);
	free(pooled);
}

static void diff_seed(uint64_t seed)
{
	static struct script s; /* large; one per test process */
	gen_script(seed, &s);
	if (env_int("PROTOCOL_DIFF_SHRINK", 0))
		shrink_script(&s);
	diff_script(&s);
}

/* ---- hand-written scripts ------------------------------------------------------------------ */

/*
 * Builders for the minimal reproductions below: the shrunk form of scripts
 * the generator found. A hand-written script has seed 0 in reports.
 */
static struct batch *hb(struct script *s, int client)
{
	ck_assert_int_lt(s->nbatches, MAX_BATCHES);
	struct batch *b = &s->batches[s->nbatches++];
	memset(b, 0, sizeof(*b));
	b->client = client - 1;
	return b;
}

static void hb_parse(struct batch *b, const char *name, const char *sql)
{
	struct msg *m = batch_add(b, M_PARSE);
	snprintf(m->name, sizeof(m->name), "%s", name);
	snprintf(m->sql, sizeof(m->sql), "%s", sql);
}

/* Bind of statement name to the unnamed portal, with one parameter unless param is NULL. */
static void hb_bind(struct batch *b, const char *name, const char *param)
{
	struct msg *m = batch_add(b, M_BIND);
	snprintf(m->name, sizeof(m->name), "%s", name);
	m->nparams = param ? 1 : 0;
	m->param = param;
}

static void hb_describe_statement(struct batch *b, const char *name)
{
	struct msg *m = batch_add(b, M_DESCRIBE);
	m->what = 'S';
	snprintf(m->name, sizeof(m->name), "%s", name);
}

static void hb_close_statement(struct batch *b, const char *name)
{
	struct msg *m = batch_add(b, M_CLOSE);
	m->what = 'S';
	snprintf(m->name, sizeof(m->name), "%s", name);
}

static void hb_execute(struct batch *b)
{
	(void)batch_add(b, M_EXECUTE);
}

static void hb_sync(struct batch *b)
{
	(void)batch_add(b, M_SYNC);
}

START_TEST(test_random_scripts_answer_as_a_direct_connection_does)
{
	/* PROTOCOL_DIFF_SEED runs that one seed, which may be any number, in the first iteration. */
	int only = env_int("PROTOCOL_DIFF_SEED", -1);
	if (only >= 0) {
		if (_i == 0)
			diff_seed((uint64_t)only);
		return;
	}
	diff_seed((uint64_t)_i);
}
END_TEST

/*
 * A Parse sent inside a failed transaction block fails on PostgreSQL with
 * 25P02; it must not be answered ParseComplete because the server already has
 * the statement (client 2 prepared it).
 */
START_TEST(test_parse_in_failed_transaction_fails_as_on_postgresql)
{
	static struct script s;
	memset(&s, 0, sizeof(s));
	struct batch *b = hb(&s, 2);
	hb_parse(b, "s1", "select 42");
	hb_sync(b);
	b = hb(&s, 1);
	hb_query(b, "begin");
	hb_query(b, "select 1/0");
	hb_parse(b, "s1", "select 42");
	hb_sync(b);
	hb_query(b, "commit");
	b = hb(&s, 1);
	hb_describe_statement(b, "s1");
	hb_sync(b);
	diff_script(&s);
}
END_TEST

/*
 * A Bind inside a failed transaction block of a statement the client has but
 * the server does not (DISCARD ALL by another client dropped it) fails on
 * PostgreSQL with 25P02.
 */
START_TEST(test_bind_in_failed_transaction_of_a_statement_the_server_lacks)
{
	static struct script s;
	memset(&s, 0, sizeof(s));
	struct batch *b = hb(&s, 1);
	hb_parse(b, "s1", "select 42");
	hb_sync(b);
	b = hb(&s, 2);
	hb_query(b, "DISCARD ALL");
	b = hb(&s, 1);
	hb_query(b, "begin");
	hb_query(b, "select 1/0");
	hb_bind(b, "s1", NULL);
	hb_execute(b);
	hb_sync(b);
	hb_query(b, "commit");
	diff_script(&s);
}
END_TEST

/*
 * A Parse that PostgreSQL skips after an error leaves no name behind, also
 * when sluice answered it itself because the server had the statement (client
 * 2 prepared it). Shrunk from seed 9.
 */
START_TEST(test_parse_skipped_after_an_error_leaves_no_name)
{
	static struct script s;
	memset(&s, 0, sizeof(s));
	struct batch *b = hb(&s, 2);
	hb_parse(b, "s1", "select 42");
	hb_sync(b);
	b = hb(&s, 1);
	hb_bind(b, "s9", NULL);
	hb_parse(b, "s1", "select 42");
	hb_sync(b);
	hb_describe_statement(b, "s1");
	hb_sync(b);
	diff_script(&s);
}
END_TEST

/*
 * A pipeline of two Sync-terminated runs: the Parse in the first is skipped
 * after an error, so the same query parsed under another name in the second
 * must really be prepared, not answered from the first. Shrunk from seed 24.
 */
START_TEST(test_parse_after_a_skipped_parse_of_the_same_query_in_one_pipeline)
{
	static struct script s;
	memset(&s, 0, sizeof(s));
	struct batch *b = hb(&s, 1);
	hb_bind(b, "s9", NULL);
	hb_parse(b, "s1", "select 42");
	hb_sync(b);
	hb_parse(b, "s2", "select 42");
	hb_describe_statement(b, "s2");
	hb_sync(b);
	diff_script(&s);
}
END_TEST

/* A Parse that PostgreSQL skips after an error leaves no name behind (server lacks it). */
START_TEST(test_parse_skipped_after_an_error_leaves_no_name_new_statement)
{
	static struct script s;
	memset(&s, 0, sizeof(s));
	struct batch *b = hb(&s, 1);
	hb_bind(b, "s9", NULL);
	hb_parse(b, "s1", "select 42");
	hb_sync(b);
	b = hb(&s, 1);
	hb_describe_statement(b, "s1");
	hb_sync(b);
	diff_script(&s);
}
END_TEST

/* Closing the unnamed statement does not touch a named one. */
START_TEST(test_close_of_the_unnamed_statement_keeps_named_ones)
{
	static struct script s;
	memset(&s, 0, sizeof(s));
	struct batch *b = hb(&s, 1);
	hb_parse(b, "s1", "select 42");
	hb_sync(b);
	b = hb(&s, 1);
	hb_close_statement(b, "");
	hb_describe_statement(b, "s1");
	hb_sync(b);
	diff_script(&s);
}
END_TEST

/* A Close that PostgreSQL skips after an error keeps the name. */
START_TEST(test_close_skipped_after_an_error_keeps_the_name)
{
	static struct script s;
	memset(&s, 0, sizeof(s));
	struct batch *b = hb(&s, 1);
	hb_parse(b, "s1", "select 42");
	hb_bind(b, "s9", NULL);
	hb_close_statement(b, "s1");
	hb_sync(b);
	b = hb(&s, 1);
	hb_describe_statement(b, "s1");
	hb_sync(b);
	diff_script(&s);
}
END_TEST

/* The generator itself: scripts are reproducible, sized as intended and not degenerate. */
START_TEST(test_generator_is_deterministic_and_covers_every_message)
{
	static struct script a, b;
	int kinds[M_QUERY + 1] = { 0 };
	for (uint64_t seed = 0; seed < N_SEEDS; seed++) {
		gen_script(seed, &a);
		gen_script(seed, &b);
		ck_assert_msg(memcmp(&a, &b, sizeof(a)) == 0, "seed %llu differs between runs",
			(unsigned long long)seed);
		ck_assert_int_ge(a.total_msgs, 60);
		ck_assert_int_le(a.total_msgs, 150 + MAX_BATCH_MSGS);
		for (int i = 0; i < a.nbatches; i++) {
			const struct batch *bt = &a.batches[i];
			enum msg_kind last = bt->msgs[bt->nmsgs - 1].kind;
			ck_assert_msg(last == M_SYNC || last == M_QUERY,
				"seed %llu batch %d does not end in Sync or Query",
				(unsigned long long)seed, i);
			for (int k = 0; k < bt->nmsgs; k++)
				kinds[bt->msgs[k].kind]++;
		}
	}
	for (int k = 0; k <= M_QUERY; k++)
		ck_assert_msg(kinds[k] > 0, "message kind %d never generated", k);
}
END_TEST

static Suite *protocol_diff_suite(void)
{
	Suite *s = suite_create("protocol_diff");
	TCase *tc = harness_tcase("protocol_diff");
	tcase_add_test(tc, test_generator_is_deterministic_and_covers_every_message);
	tcase_add_loop_test(tc, test_random_scripts_answer_as_a_direct_connection_does, 0,
		N_SEEDS);
	suite_add_tcase(s, tc);
	TCase *repro = harness_tcase("repro");
	tcase_add_test(repro, test_parse_in_failed_transaction_fails_as_on_postgresql);
	tcase_add_test(repro, test_bind_in_failed_transaction_of_a_statement_the_server_lacks);
	tcase_add_test(repro, test_parse_skipped_after_an_error_leaves_no_name);
	tcase_add_test(repro, test_parse_skipped_after_an_error_leaves_no_name_new_statement);
	tcase_add_test(repro, test_parse_after_a_skipped_parse_of_the_same_query_in_one_pipeline);
	tcase_add_test(repro, test_close_of_the_unnamed_statement_keeps_named_ones);
	tcase_add_test(repro, test_close_skipped_after_an_error_keeps_the_name);
	suite_add_tcase(s, repro);
	return s;
}

int main(void)
{
	return harness_run_suite(protocol_diff_suite());
}
