/*
 * session.c - what a server's session holds, against what its client's
 * session should be, in transaction and statement pooling: the settings
 * PostgreSQL does not report, SQL-level prepared statements, and the pins
 * (session.h).
 *
 * It watches the client's SQL on its way (session_watch_sql), asks the
 * server what its session holds once it is clean (the probe: its query,
 * its rows, its answer), and brings a server's session in line with the
 * client's at a link (session_sync), tracked parameters included. The
 * fields it keeps are struct server's (server.h).
 *
 * It does not decide when a server is released, linked or closed, nor
 * read the server's messages: server.c does, and hands it the probe's rows
 * and answer. It does not send on its own: its queries go out through
 * server_send_internal(), recorded in the request queue as sluice's own.
 */
#include "sluice/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sluice/buf.h"
#include "sluice/client.h"
#include "sluice/common.h"
#include "sluice/log.h"
#include "sluice/notify.h"
#include "sluice/param.h"
#include "sluice/pkt.h"
#include "sluice/pool.h"
#include "sluice/server.h"
#include "sluice/sqlscan.h"
#include "sluice/stream.h"
#include "sluice/worker.h"

/* Lines about a server, as server.c writes them ("S-<id> db/user@addr ..."). */
#define slog(lvl, s, ...)                                                                          \
	do {                                                                                       \
		if (log_enabled(lvl))                                                              \
			log_write(lvl, &(s)->lc, __VA_ARGS__);                                     \
	} while (0)

/* Appends a SQL string literal (E'...') of v to out. */
static void put_literal(struct buf_out *out, const char *v)
{
	buf_out_put(out, "E'", 2);
	for (; *v; v++) {
		if (*v == '\'' || *v == '\\')
			buf_out_put_u8(out, (uint8_t)*v);
		buf_out_put_u8(out, (uint8_t)*v);
	}
	buf_out_put_u8(out, '\'');
}

/* ---- pins ---------------------------------------------------------------- */

const char *session_pin_names(unsigned pins, char *out, size_t size)
{
	static const char *const names[] = {
#define X(id, name) name,
		SESSION_PINS(X)
#undef X
	};
	size_t off = 0;
	out[0] = 0;
	for (int i = 0; i < SESSION_PIN_COUNT; i++)
		if (pins & (1u << i) && off < size)
			off += (size_t)snprintf(out + off, size - off, "%s%s", off ? ", " : "",
						names[i]);
	return out;
}

/* ---- the client's session ------------------------------------------------ */

/*
 * A startup parameter's value, kept in the client's params under
 * "@startup:" and its name once the client changes it, for a RESET to go
 * back to (session_probe_answered): PostgreSQL would, but the server's own reset
 * value is its login's, not this client's.
 */
#define STARTUP_KEY "@startup:"
#define STARTUP_KEY_LEN (sizeof(STARTUP_KEY) - 1)

/* Sets a parameter of c's session: its profile is then another one. */
void session_client_param_put(struct client *c, const char *name, const char *value)
{
	int fixed = c->startup_params ? param_fixed_index(name) : -1;
	if (fixed >= 0 && (c->startup_params & (1u << fixed))) {
		const char *was = param_set_get(&c->params, name);
		if (was && strcmp(was, value) != 0) {
			char key[64];
			snprintf(key, sizeof(key), STARTUP_KEY "%s", name);
			param_set_put(&c->params, key, was); /* was lives in its item's own block */
			c->startup_params &= (uint8_t) ~(1u << fixed);
		}
	}
	if (param_set_put(&c->params, name, value) && c->profile) {
		param_profile_release(&c->pool->profiles, c->profile);
		c->profile = NULL;
	}
}

/*
 * An SQL-level prepared statement is kept in the same sets as the
 * settings, under "@prepared:" and its name (no setting's name has an
 * '@'), with its PREPARE statement as the value: so the profiles that let
 * session_sync skip equal sessions cover them too.
 */
#define PREPARED_KEY "@prepared:"
#define PREPARED_KEY_LEN (sizeof(PREPARED_KEY) - 1)

static bool is_prepared_key(const char *name)
{
	return name[0] == '@' && strncmp(name, PREPARED_KEY, PREPARED_KEY_LEN) == 0;
}

/* ---- watching SQL -------------------------------------------------------- */

bool session_watch_sql(struct server *s, const char *text)
{
	if (!text) {
		s->probe_due = s->probe_pins = true; /* not at hand whole: ask */
		return false;
	}
	struct sql_scan_result r;
	sql_scan_parse(text, &r);
	struct client *c = s->client;
	/* Its own query may go ahead of the client's only when nothing of the client's is under way. */
	bool quiet = s->rq.len == 0 && s->txn_status == 'I' && !s->probe_seq &&
		     s->pass_remaining == 0 && c->pass_remaining == 0 && !c->ext_open;
	if (notify_before(c, s, &r, quiet)) {
		sql_scan_result_deinit(&r);
		return true;
	}
	if (r.effects & (SQL_EFFECT_SETTINGS | SQL_EFFECT_PINS | SQL_EFFECT_PREPARED))
		s->probe_due = true;
	for (int i = 0; i < r.n_prepares; i++) {
		size_t n = strlen(r.prepare_name[i]);
		char *key = xmalloc(PREPARED_KEY_LEN + n + 1);
		memcpy(key, PREPARED_KEY, PREPARED_KEY_LEN);
		memcpy(key + PREPARED_KEY_LEN, r.prepare_name[i], n + 1);
		param_set_put(&s->probe_prepares, key, r.prepare_text[i]);
		free(key);
	}
	if (r.effects & SQL_EFFECT_PINS)
		s->probe_pins = true;
	for (int i = 0; i < r.n_custom; i++)
		param_set_put(&s->probe_names, r.custom[i], "");
	sql_scan_result_deinit(&r);
	return false;
}

/* ---- the probe ----------------------------------------------------------- */

/*
 * Asks the server which session settings it has now, after a request that
 * may have changed them (session_watch_sql): every setting a SET gave this
 * session (pg_settings' source "session"), the role, and the custom names
 * the requests mentioned or the session has, which pg_settings leaves out.
 * The rows are what the client's session is from now on (session_probe_answered).
 */
void session_probe_send(struct server *s)
{
	struct buf_out sql;
	buf_out_init(&sql);
	static const char head[] =
		"SELECT 's', name, current_setting(name) FROM pg_catalog.pg_settings "
		"WHERE source = 'session' "
		"UNION ALL SELECT 's', 'role', pg_catalog.current_setting('role') "
		"UNION ALL SELECT 's', 'session_authorization', "
		"pg_catalog.current_setting('session_authorization')";
	buf_out_put(&sql, head, sizeof(head) - 1);
	const struct client *c = s->client;
	const struct param_set *sets[] = { &s->probe_names, &s->session, c ? &c->params : NULL };
	bool any = false;
	for (size_t k = 0; k < ARRAY_SIZE(sets); k++) {
		for (int i = 0; sets[k] && i < sets[k]->n; i++) {
			const char *name = sets[k]->items[i].name;
			if (name[0] == '@' || !strchr(name, '.'))
				continue;
			buf_out_put(&sql,
				    any ? ", "
					: " UNION ALL SELECT 's', n, "
					  "pg_catalog.current_setting(n, true) FROM "
					  "pg_catalog.unnest(ARRAY[",
				    strlen(any ? ", "
					       : " UNION ALL SELECT 's', n, "
						 "pg_catalog.current_setting(n, true) FROM "
						 "pg_catalog.unnest(ARRAY["));
			put_literal(&sql, name);
			any = true;
		}
	}
	if (any)
		buf_out_put(&sql, "]::text[]) AS n", strlen("]::text[]) AS n"));
	/* The SQL-level prepared statements' names (their texts are sluice's: session_probe_answered). */
	static const char prepared[] = " UNION ALL SELECT 'q', name, NULL FROM "
				       "pg_catalog.pg_prepared_statements WHERE from_sql";
	buf_out_put(&sql, prepared, sizeof(prepared) - 1);
	/* Pins are asked about after a statement that may make or end one, and while there is one. */
	s->probe_asked_pins = s->probe_pins || s->pins;
	if (s->probe_asked_pins) {
		static const char pins[] =
			" UNION ALL SELECT 'p', 'advisory lock', NULL WHERE EXISTS (SELECT 1 FROM "
			"pg_catalog.pg_locks WHERE locktype = 'advisory' AND pid = "
			"pg_catalog.pg_backend_pid())"
			" UNION ALL SELECT 'p', 'temporary object', NULL WHERE EXISTS (SELECT 1 FROM "
			"pg_catalog.pg_class WHERE relnamespace = pg_catalog.pg_my_temp_schema()) OR "
			"EXISTS (SELECT 1 FROM pg_catalog.pg_proc WHERE pronamespace = "
			"pg_catalog.pg_my_temp_schema()) OR EXISTS (SELECT 1 FROM pg_catalog.pg_type "
			"WHERE typnamespace = pg_catalog.pg_my_temp_schema() AND typrelid = 0) OR "
			"EXISTS (SELECT 1 FROM pg_catalog.pg_statistic_ext WHERE stxnamespace = "
			"pg_catalog.pg_my_temp_schema())"
			" UNION ALL SELECT 'p', 'held cursor', NULL WHERE EXISTS (SELECT 1 FROM "
			"pg_catalog.pg_cursors WHERE is_holdable)"
			" UNION ALL SELECT 'l', l, NULL FROM pg_catalog.pg_listening_channels() AS l";
		buf_out_put(&sql, pins, sizeof(pins) - 1);
		/* Channels the pool's listener hears for the client leave this session (notify.h). */
		if (c && c->listens)
			notify_probe_unlisten(s->client, &sql);
	}
	buf_out_put_u8(&sql, 0);
	param_set_deinit(&s->probe_names);
	param_set_deinit(&s->probed);
	param_set_deinit(&s->probed_channels);
	param_set_copy(&s->probe_prepares_sent, &s->probe_prepares);
	param_set_deinit(&s->probe_prepares);
	s->probed_pins = 0;
	s->probe_due = s->probe_pins = false;
	server_send_internal(s, (const char *)sql.data);
	s->probe_seq = s->rq.seq;
	buf_out_deinit(&sql);
}

/* A row of the probe: name, value; a role of "none" and an empty or unknown custom value are unset. */
void session_probe_row(struct server *s, const uint8_t *body, size_t blen)
{
	struct pkt_reader r;
	pkt_reader_init(&r, body, blen);
	if (pkt_get_be16(&r) != 3)
		return;
	const char *col[3] = { 0 };
	size_t len[3] = { 0 };
	for (int i = 0; i < 3; i++) {
		uint32_t n = pkt_get_be32(&r);
		if (r.bad || n == UINT32_MAX)
			continue; /* NULL */
		col[i] = (const char *)pkt_get_bytes(&r, n);
		len[i] = n;
	}
	if (r.bad || !col[0] || len[0] != 1 || !col[1])
		return;
	if (col[0][0] == 'p') {
		static const char *const names[] = {
#define X(id, name) name,
			SESSION_PINS(X)
#undef X
		};
		for (int i = 0; i < SESSION_PIN_COUNT; i++)
			if (strlen(names[i]) == len[1] && memcmp(names[i], col[1], len[1]) == 0)
				s->probed_pins |= (uint8_t)(1u << i);
		return;
	}
	if (col[0][0] == 'l') {
		char *name = xstrndup(col[1], len[1]);
		param_set_put(&s->probed_channels, name, "");
		free(name);
		return;
	}
	if (col[0][0] == 'q') {
		/* Its text comes from where sluice saw it (session_probe_answered). */
		char *key = xmalloc(PREPARED_KEY_LEN + len[1] + 1);
		memcpy(key, PREPARED_KEY, PREPARED_KEY_LEN);
		memcpy(key + PREPARED_KEY_LEN, col[1], len[1]);
		key[PREPARED_KEY_LEN + len[1]] = 0;
		param_set_put(&s->probed, key, "");
		free(key);
		return;
	}
	if (!col[2])
		return;
	char *name = xstrndup(col[1], len[1]), *value = xstrndup(col[2], len[2]);
	/* The role "none" and the login's own authorization are no setting of the client's. */
	bool unset = (strcmp(name, "role") == 0 && strcmp(value, "none") == 0) ||
		     (strcmp(name, "session_authorization") == 0 &&
		      strcmp(value, s->pool->user_name) == 0);
	if (!unset)
		param_set_put(&s->probed, name, value);
	free(name);
	free(value);
}

/*
 * A RESET (or RESET ALL, DISCARD ALL) of a parameter the client gave in
 * its startup packet: PostgreSQL goes back to that value, but the server
 * went back to its login's, which no longer counts as set by the session
 * (the probe does not list it). The client gets its own back: in params,
 * which the next link applies, and told at once, as a direct connection's
 * ParameterStatus would.
 */
static bool restore_startup_values(struct server *s, struct client *c)
{
	bool restored = false;
	for (int i = 0; i < c->params.n; i++) {
		const char *key = c->params.items[i].name;
		if (key[0] != '@' || strncmp(key, STARTUP_KEY, STARTUP_KEY_LEN) != 0)
			continue;
		const char *name = key + STARTUP_KEY_LEN;
		const char *now = param_set_get(&c->params, name);
		if (param_set_get(&s->probed, name) ||
		    (now && strcmp(now, c->params.items[i].value) == 0))
			continue;
		char *n = xstrdup(name), *v = xstrdup(c->params.items[i].value);
		session_client_param_put(c, n, v);
		restored = true;
		struct buf_out out;
		buf_out_init(&out);
		pkt_put_ParameterStatus(&out, n, v);
		stream_write(&c->stream, out.data, out.len);
		buf_out_deinit(&out);
		free(n);
		free(v);
	}
	return restored;
}

/*
 * Whether s lacks the client's statement key because PostgreSQL could not
 * prepare it there (session_reprepare_failed): the client still has it, as
 * a direct session would, and the next link tries again.
 */
static bool could_not_prepare(const struct server *s, const char *key)
{
	const char *v = param_set_get(&s->reprepares, key);
	return v && strcmp(v, "failed") == 0;
}

/*
 * The probe's answer is complete: the server's untracked session is what
 * it found, and so is the client's (its tracked parameters stay, kept by
 * ParameterStatus).
 */
void session_probe_answered(struct server *s)
{
	const char *extra = s->w->cfg->track_extra_parameters;
	s->probe_seq = 0;
	/*
	 * A prepared statement's text: from the request that prepared it, or
	 * as the session had it. One PostgreSQL has that sluice never saw
	 * prepared (dynamic SQL in a function) cannot be made again elsewhere,
	 * and is left out.
	 */
	struct client *owner = s->client;
	for (int i = 0; i < s->probed.n;) {
		struct param *pp = &s->probed.items[i];
		if (!is_prepared_key(pp->name)) {
			i++;
			continue;
		}
		const char *text = param_set_get_as(&s->probe_prepares_sent, pp);
		if (!text && owner)
			text = param_set_get_as(&owner->params, pp);
		if (!text)
			text = param_set_get_as(&s->session, pp);
		if (text && *text) {
			param_set_put(&s->probed, pp->name, text);
			i++;
		} else {
			param_set_remove(&s->probed, pp->name);
		}
	}
	param_set_deinit(&s->probe_prepares_sent);
	param_set_deinit(&s->session);
	for (int i = 0; i < s->probed.n; i++) {
		const struct param *pp = &s->probed.items[i];
		if (!param_is_tracked(pp->name, extra))
			param_set_put(&s->session, pp->name, pp->value);
	}
	struct client *c = s->client;
	bool restored = c && restore_startup_values(s, c);
	param_set_deinit(&s->probed);
	s->synced_profile = 0;
	/*
	 * A channel the session listens to pins, unless the pool's listener
	 * took it over (notify_settle); in session pooling, none is asked.
	 */
	if (s->probe_asked_pins) {
		if (s->probed_channels.n && (!c || pool_mode_of(s->pool) == POOL_MODE_SESSION ||
					     notify_settle(c, s, &s->probed_channels)))
			s->probed_pins |= SESSION_PIN_LISTEN;
		else if (c && c->listens)
			(void)notify_settle(c, s, &s->probed_channels);
		param_set_deinit(&s->probed_channels);
	}
	if (s->probe_asked_pins && s->pins != s->probed_pins) {
		char was[128], now[128];
		slog(LOG_LEVEL_DEBUG, s, "pins: %s -> %s",
		     s->pins ? session_pin_names(s->pins, was, sizeof(was)) : "none",
		     s->probed_pins ? session_pin_names(s->probed_pins, now, sizeof(now)) : "none");
		if (!s->pins)
			s->pinned_since = uv_now(s->w->loop);
		s->pins = s->probed_pins;
	}
	if (log_enabled(LOG_LEVEL_NOISE)) {
		struct buf_out t;
		buf_out_init(&t);
		for (int i = 0; i < s->session.n; i++) {
			if (i)
				buf_out_put(&t, ", ", 2);
			buf_out_put(&t, s->session.items[i].name, strlen(s->session.items[i].name));
			buf_out_put_u8(&t, '=');
			buf_out_put(&t, s->session.items[i].value,
				    strlen(s->session.items[i].value));
		}
		buf_out_put_u8(&t, 0);
		slog(LOG_LEVEL_NOISE, s, "session settings of C-%llu now: %s",
		     c ? (unsigned long long)c->id : 0ULL, (const char *)t.data);
		buf_out_deinit(&t);
	}
	if (!c)
		return;
	bool changed = false, missing = false;
	for (int i = 0; i < c->params.n;) {
		const struct param *cp = &c->params.items[i];
		if (cp->name[0] == '@' && !is_prepared_key(cp->name)) {
			i++; /* "@startup:" keys are c's own, never a server's */
			continue;
		}
		if (!param_is_tracked(cp->name, extra) && !param_set_get_as(&s->session, cp) &&
		    !could_not_prepare(s, cp->name)) {
			param_set_remove(&c->params, cp->name);
			changed = true;
		} else {
			missing |= is_prepared_key(cp->name) && !param_set_get_as(&s->session, cp);
			i++;
		}
	}
	for (int i = 0; i < s->session.n; i++)
		changed |= param_set_put(&c->params, s->session.items[i].name,
					 s->session.items[i].value);
	if (changed && c->profile) {
		param_profile_release(&c->pool->profiles, c->profile);
		c->profile = NULL;
	}
	/*
	 * A pinned client keeps this server, with no link to apply what a RESET
	 * took back, or to try again a statement it could not prepare here.
	 */
	if ((restored || missing) && s->pins)
		session_sync(s, c);
}

/* ---- at a link ----------------------------------------------------------- */

/*
 * Adds "SET name TO value;" to sql unless the server has that value
 * already: in params for what PostgreSQL reports (tracked), in session for
 * the rest, which the SET itself is then recorded in.
 */
static void append_set_if_differs(struct server *s, struct buf_out *sql, const struct param *want,
				  bool tracked)
{
	const char *sv = param_set_get_as(tracked ? &s->params : &s->session, want);
	if (sv && strcmp(sv, want->value) == 0)
		return;
	if (tracked) {
		buf_out_put(sql, "SET ", 4);
		buf_out_put(sql, want->name, strlen(want->name));
		buf_out_put(sql, " TO ", 4);
		put_literal(sql, want->value);
		buf_out_put(sql, ";", 1);
		return;
	}
	/*
	 * set_config reads the value as postgresql.conf would: a list such as
	 * search_path's "foo, public" is two names, where SET would take the
	 * literal for one.
	 */
	static const char call[] = "SELECT pg_catalog.set_config(";
	buf_out_put(sql, call, sizeof(call) - 1);
	put_literal(sql, want->name);
	buf_out_put(sql, ", ", 2);
	put_literal(sql, want->value);
	buf_out_put(sql, ", false);", 9);
	param_set_put(&s->session, want->name, want->value);
}

/* Appends "DEALLOCATE <name>;" for the statement kept under key. */
static void put_deallocate(struct buf_out *sql, const char *key)
{
	buf_out_put(sql, "DEALLOCATE \"", 12);
	for (const char *p = key + PREPARED_KEY_LEN; *p; p++) {
		if (*p == '"')
			buf_out_put_u8(sql, '"');
		buf_out_put_u8(sql, (uint8_t)*p);
	}
	buf_out_put(sql, "\";", 2);
}

/*
 * Whether the client's statement under key must be prepared on the server
 * (session_sync sends the PREPARE as a query of its own, so that
 * pg_prepared_statements shows the client's text, not sluice's batch);
 * one of the same name the server has otherwise is deallocated in sql.
 */
static bool prepare_needed(struct server *s, struct buf_out *sql, const struct param *want)
{
	const char *sv = param_set_get_as(&s->session, want);
	if (sv && strcmp(sv, want->value) == 0)
		return false;
	if (sv)
		put_deallocate(sql, want->name);
	param_set_put(&s->session, want->name, want->value);
	return true;
}

/*
 * The untracked settings and the SQL-level prepared statements: those of
 * the server's session that c does not have go first (a RESET role before
 * a SET that needs the login's privileges, a DEALLOCATE before a PREPARE
 * of the same name), then c's settings, its statements (prepared with its
 * search_path), and its role last (a SET after it could need what the
 * role lacks).
 */
static void append_session(struct server *s, struct buf_out *sql, const struct client *c,
			   struct param_set *prepares)
{
	const char *extra = s->w->cfg->track_extra_parameters;
	/* Back to the login first: the other RESETs may need its privileges. */
	if (param_set_get(&s->session, "session_authorization") &&
	    !param_set_get(&c->params, "session_authorization")) {
		buf_out_put(sql, "RESET session_authorization;", 28);
		param_set_remove(&s->session, "session_authorization");
	}
	for (int i = 0; i < s->session.n;) {
		const struct param *sp = &s->session.items[i];
		if (param_set_get_as(&c->params, sp)) {
			i++;
			continue;
		}
		if (is_prepared_key(sp->name)) {
			put_deallocate(sql, sp->name);
		} else {
			buf_out_put(sql, "RESET ", 6);
			buf_out_put(sql, sp->name, strlen(sp->name));
			buf_out_put(sql, ";", 1);
		}
		param_set_remove(&s->session, sp->name); /* the last item takes its place */
	}
	const struct param *role = NULL, *authorization = NULL;
	bool prepared = false;
	for (int i = 0; i < c->params.n; i++) {
		const struct param *cp = &c->params.items[i];
		if (param_is_tracked(cp->name, extra))
			continue;
		if (strcasecmp(cp->name, "role") == 0)
			role = cp;
		else if (strcasecmp(cp->name, "session_authorization") == 0)
			authorization = cp;
		else if (is_prepared_key(cp->name))
			prepared = true;
		else if (cp->name[0] != '@') /* not "@startup:" */
			append_set_if_differs(s, sql, cp, false);
	}
	/* The session user after the settings (made as the login), and it resets the role. */
	if (authorization)
		append_set_if_differs(s, sql, authorization, false);
	for (int i = 0; prepared && i < c->params.n; i++)
		if (is_prepared_key(c->params.items[i].name) &&
		    prepare_needed(s, sql, &c->params.items[i]))
			param_set_put(prepares, c->params.items[i].name, c->params.items[i].value);
	if (role)
		append_set_if_differs(s, sql, role, false);
}

/*
 * Brings the server's session parameters in line with the client's,
 * unless they are known to match already (the common case: clients of a
 * pool mostly want the same values).
 */
void session_sync(struct server *s, struct client *c)
{
	struct pool *p = s->pool;
	if (!c->profile)
		c->profile = param_profile_get(&p->profiles, &c->params, &p->defaults);
	uint64_t profile = param_profile_id(c->profile);
	if (s->synced_profile == profile)
		return; /* what it could not prepare (reprepares) holds for this profile too */
	if (s->reprepares.n)
		param_set_deinit(&s->reprepares); /* it was for another session */
	struct buf_out sql;
	buf_out_init(&sql);
	const char *extra = s->w->cfg->track_extra_parameters;
	struct param_set prepares;
	param_set_init(&prepares);
	if (s->session.n || c->params.n)
		append_session(s, &sql, c, &prepares);
	for (int i = 0; i < c->params.n; i++) {
		const struct param *cp = &c->params.items[i];
		if (param_is_tracked(cp->name, extra))
			append_set_if_differs(s, &sql, cp, true);
	}
	/* Parameters the client did not choose go back to the pool's defaults. */
	const struct param_set *defs = &p->defaults;
	for (int i = 0; i < defs->n; i++) {
		const struct param *dp = &defs->items[i];
		if (!param_set_get_as(&c->params, dp))
			append_set_if_differs(s, &sql, dp, true);
	}
	if (sql.len) {
		/*
		 * The ParameterStatus answers say what the server has now; the
		 * untracked settings send none, so the profile it matched is
		 * forgotten here (the next link compares again).
		 */
		s->synced_profile = 0;
		buf_out_put_u8(&sql, 0);
		server_send_internal(s, (const char *)sql.data);
	} else if (!prepares.n) {
		s->synced_profile = profile;
	}
	buf_out_deinit(&sql);
	/* The client's statements the server lacks, each as the query that prepared it. */
	for (int i = 0; i < prepares.n; i++) {
		s->synced_profile = 0;
		server_send_internal(s, prepares.items[i].value);
		char seq[16];
		snprintf(seq, sizeof(seq), "%u", s->rq.seq);
		param_set_put(&s->reprepares, prepares.items[i].name, seq);
	}
	param_set_deinit(&prepares);
}

bool session_reprepare_failed(struct server *s, uint32_t seq, const struct pkt_error *e)
{
	char want[16];
	snprintf(want, sizeof(want), "%u", seq);
	for (int i = 0; i < s->reprepares.n; i++) {
		const struct param *rp = &s->reprepares.items[i];
		if (strcmp(rp->value, want) != 0)
			continue;
		/*
		 * PostgreSQL keeps a prepared statement whose table was dropped
		 * (or is another session's temporary one); it cannot be made
		 * again here. The client goes on: this server lacks the
		 * statement, and an EXECUTE of it fails (26000) rather than the
		 * client being disconnected.
		 */
		slog(LOG_LEVEL_INFO, s, "could not prepare %s again for C-%llu: %s %s",
		     rp->name + PREPARED_KEY_LEN,
		     s->client ? (unsigned long long)s->client->id : 0ULL,
		     e->sqlstate ? e->sqlstate : "?", e->message ? e->message : "?");
		param_set_remove(&s->session, rp->name);
		param_set_put(&s->reprepares, rp->name, "failed");
		return true;
	}
	return false;
}

/*
 * The SET that session_sync() sent for c succeeded (so every value of c's
 * that the server still spells differently was just applied). A value PostgreSQL took
 * but spells otherwise ("ISO" kept as "ISO, MDY") changes nothing it would
 * report, so the two spellings would differ again at every link, and cost a
 * SET each time: c adopts the server's spelling, and hears it as a direct
 * connection would have (PgBouncer's varcache_set_canonical).
 */
void session_adopt_canonical(struct server *s, struct client *c)
{
	struct buf_out out;
	buf_out_init(&out);
	for (int i = 0; i < c->params.n; i++) {
		struct param *cp = &c->params.items[i];
		const char *sv = param_set_get_as(&s->params, cp);
		if (sv && strcmp(sv, cp->value) != 0) {
			slog(LOG_LEVEL_NOISE, s, "%s is spelled %s by the server, not %s", cp->name,
			     sv, cp->value);
			pkt_put_ParameterStatus(&out, cp->name, sv);
			session_client_param_put(c, cp->name, sv);
		}
	}
	if (out.len)
		stream_write(&c->stream, out.data, out.len);
	buf_out_deinit(&out);
}
