/*
 * client.c - one client connection: startup packet, authentication, the
 * welcome, and relaying the client's messages to its linked server while
 * counting the requests that the server must answer.
 *
 * It does not choose servers (pool.c) or read server bytes (server.c). Every
 * way a client ends goes through client_close(), which hands the server back
 * as clean or closes it, and releases the client's memory in the stream's
 * close callback.
 */
#include "sluice/client.h"

#include <assert.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "sluice/admin.h"
#include "sluice/authq.h"
#include "sluice/cancel.h"
#include "sluice/derive.h"
#include "sluice/handover.h"
#include "sluice/hba.h"
#include "sluice/notify.h"
#include "sluice/pkt.h"
#include "sluice/pool.h"
#include "sluice/server.h"
#include "sluice/session.h"
#include "sluice/sqlscan.h"
#include "sluice/sqlstate.h"
#include "sluice/takeover.h"

static const char *const state_names[] = {
#define X(name, text) text,
	CLIENT_STATES(X)
#undef X
};

const char *client_state_name(enum client_state st)
{
	return state_names[st];
}

#define clog(lvl, c, ...)                                                                          \
	do {                                                                                       \
		if (log_enabled(lvl))                                                              \
			log_write(lvl, CLIENT_LOG_CONN(c), __VA_ARGS__);                           \
	} while (0)

/* What a client needs while it logs in only (client->login). */
struct client_login {
	struct auth_session *auth;
	struct derive *derive; /* a key derivation of auth runs on the thread pool (derive.h) */
	/* An auth_query look-up of its user is under way (authq.h); LOGIN holds until it answers. */
	struct worker_lookup *authq;
	struct auth_user *looked_up; /* what the look-up found, until login_done */
	char *looked_up_key; /* its identity, to forget the secret if the login fails */
	uint8_t auth_type; /* enum auth_type: the method chosen (hba resolved) while looking up */
	bool auth_from_hba; /* auth_type came from an auth_hba_file rule */
	char *ident_map; /* the map= of the hba rule that chose cert, or NULL */
	/* route_login's look-up of the database, for login_done while w->cfg_gen is db_cfg_gen. */
	const struct config_database *db;
	uint64_t db_cfg_gen;
};

static void client_process(struct client *c);
static void login_read(struct client *c);

/* ---- state ----------------------------------------------------------------- */

/*
 * Where each state's list and count live in struct pool (offset 0, where
 * pool->w is: the state has none). Tables, not a switch: client_set_state
 * runs three times per transaction, and the lookups were a fifth of its cost.
 */
#define X(name, text) +1
enum { N_CLIENT_STATES = 0 CLIENT_STATES(X) };
#undef X
static const uint16_t list_offset[N_CLIENT_STATES] = {
	[CLIENT_WAITING_LOGIN] = offsetof(struct pool, waiting_login),
	[CLIENT_WAITING] = offsetof(struct pool, waiting),
	[CLIENT_WAITING_REPLICATION] = offsetof(struct pool, waiting_repl),
	[CLIENT_ACTIVE] = offsetof(struct pool, active),
	[CLIENT_IDLE] = offsetof(struct pool, idle),
};
static const uint16_t count_offset[N_CLIENT_STATES] = {
	[CLIENT_WAITING_LOGIN] = offsetof(struct pool, n_cl_waiting_login),
	[CLIENT_WAITING] = offsetof(struct pool, n_cl_waiting),
	[CLIENT_WAITING_REPLICATION] = offsetof(struct pool, n_cl_waiting_repl),
	[CLIENT_ACTIVE] = offsetof(struct pool, n_cl_active),
	[CLIENT_IDLE] = offsetof(struct pool, n_cl_idle),
};
_Static_assert(sizeof(struct pool) <= UINT16_MAX, "pool offsets fit in uint16_t");

static struct client_list *list_of(struct pool *p, enum client_state st)
{
	return (struct client_list *)((char *)p + list_offset[st]);
}

static int *count_of(struct pool *p, enum client_state st)
{
	return (int *)((char *)p + count_offset[st]);
}

void client_check(const struct client *c)
{
#ifndef NDEBUG
	assert((c->state == CLIENT_ACTIVE) == (c->server != NULL));
	if (c->state != CLIENT_LOGIN && c->state != CLIENT_CLOSED)
		assert(c->pool != NULL);
	/* A key derivation belongs to a login; client_close() abandons it. */
	if (c->login && c->login->derive)
		assert(c->state == CLIENT_LOGIN && c->login->auth != NULL);
	/* So does a look-up, which comes before the exchange. */
	if (c->login && c->login->authq)
		assert(c->state == CLIENT_LOGIN && c->login->auth == NULL &&
		       c->login->derive == NULL);
	/* A replication client never shares a server, nor an ordinary client a replication one. */
	if (c->state == CLIENT_WAITING_REPLICATION)
		assert(c->replication != PKT_REPLICATION_NONE);
	if (c->repl_server)
		assert(c->state == CLIENT_WAITING_REPLICATION);
	if (c->server)
		assert(c->server->replication == c->replication);
	if (c->replication && c->state != CLIENT_LOGIN && c->state != CLIENT_CLOSED)
		assert(c->state == CLIENT_WAITING_REPLICATION || c->state == CLIENT_ACTIVE);
#else
	(void)c;
#endif
}

void client_set_state(struct client *c, enum client_state st)
{
	enum client_state old = c->state;
	if (old == st)
		return;
	struct pool *p = c->pool;
	if (list_offset[old]) {
		TAILQ_REMOVE(list_of(p, old), c, state_link);
		(*count_of(p, old))--;
	}
	if (list_offset[st]) {
		/* Waiters are served first come, first served. */
		TAILQ_INSERT_TAIL(list_of(p, st), c, state_link);
		(*count_of(p, st))++;
	}
	c->state = st; /* the one write of client->state: client_set_state */
	c->state_since = uv_now(c->w->loop);
	c->state_seq = ++c->w->state_changes;
	if (st == CLIENT_WAITING || st == CLIENT_WAITING_REPLICATION)
		c->wait_start_us = worker_clock_us(c->w);
	clog(LOG_LEVEL_DEBUG, c, "%s -> %s", state_names[old], state_names[st]);
#ifndef NDEBUG
	client_check(c); /* a call to an empty function otherwise */
#endif
}

/* ---- ending ---------------------------------------------------------------- */

/* What only the login needed goes once it is done (or the client is). */
static void login_forget(struct client *c)
{
	struct client_login *l = c->login;
	if (!l)
		return;
	assert(!l->derive && !l->authq);
	auth_session_free(l->auth);
	auth_user_free(l->looked_up);
	free(l->looked_up_key);
	free(l->ident_map);
	free(l);
	c->login = NULL;
}

/*
 * Gives c its database and user names, copied into one allocation ("db\0user\0")
 * that db_name points at; the old one, if any, is freed after the copy, so
 * db and user may point into it.
 */
static void set_names(struct client *c, const char *db, const char *user)
{
	size_t db_len = strlen(db) + 1, user_len = strlen(user) + 1;
	char *names = xmalloc(db_len + user_len);
	memcpy(names, db, db_len);
	memcpy(names + db_len, user, user_len);
	free(c->db_name);
	c->db_name = names;
	c->user_name = names + db_len;
}

static void on_stream_closed(struct stream *st)
{
	struct client *c = container_of(st, struct client, stream);
	login_forget(c);
	param_set_deinit(&c->params);
	prepared_client_forget_all(c->w, &c->prepared);
	free(c->db_name); /* and user_name with it */
	free(c->admin_wait_db);
	free(c->startup_options);
	free(c);
}

/* Takes c off every list and count and starts closing its socket: client_close's work. */
static void client_end(struct client *c);

void client_close(struct client *c, const char *reason)
{
	if (c->state == CLIENT_CLOSED)
		return;
	struct worker *w = c->w;
	if (w->cfg->log_disconnections || log_enabled(LOG_LEVEL_DEBUG))
		clog(LOG_LEVEL_INFO, c, "closing because: %s (age=%llus)", reason,
		     (unsigned long long)((uv_now(w->loop) - c->connect_time) / 1000));
	client_end(c);
}

static void client_end(struct client *c)
{
	struct worker *w = c->w;
	struct server *s = c->server;
	struct pool *p = c->pool;
	if (s) {
		c->server = NULL;
		server_client_gone(s);
	}
	if (c->repl_server) {
		/* Its own server, still logging in: nobody else may have it. */
		s = c->repl_server;
		c->repl_server = NULL;
		server_owner_gone(s);
	}
	if (c->login && c->login->derive) {
		/* Its memory goes in the close callback; the job must not come back to it. */
		derive_abandon(c->login->derive);
		c->login->derive = NULL;
	}
	if (c->login) {
		worker_authq_cancel(c->login->authq);
		c->login->authq = NULL;
	}
	if (c->profile) {
		param_profile_release(&p->profiles, c->profile);
		c->profile = NULL;
	}
	if (c->listens)
		notify_client_gone(c);
	client_set_state(c, CLIENT_CLOSED);
	if (c->released_queued) {
		TAILQ_REMOVE(&w->released, c, released_link);
		c->released_queued = false;
	}
	if (c->admin_wait) {
		c->admin_wait = 0;
		w->admin_waiters--;
	}
	if (c->settling) {
		worker_settle_forget(w, c);
		c->settling = false;
	}
	TAILQ_REMOVE(&w->clients, c, link);
	w->client_count--;
	__atomic_sub_fetch(&w->clients_now, 1, __ATOMIC_RELAXED);
	__atomic_sub_fetch(&w->ledger->clients, 1, __ATOMIC_RELAXED);
	if (c->admin_role != ADMIN_ROLE_NONE) {
		takeover_console_gone(w, c);
		admin_console_gone(w);
	}
	if (c->counted_db)
		ledger_release(w->ledger, &w->ledger->db_clients, c->counted_db);
	if (c->counted_user)
		ledger_release(w->ledger, &w->ledger->user_clients, c->counted_user);
	c->counted_db = c->counted_user = NULL;
	cancel_unregister(w, c);
	login_forget(c);
	if (c->linger)
		stream_close_linger(&c->stream);
	else
		stream_close(&c->stream);
	if (p)
		worker_schedule_kick(w, p);
}

void client_fail_with(struct client *c, const uint8_t *msg, size_t len, const char *reason)
{
	if (c->state == CLIENT_CLOSED)
		return;
	stream_write(&c->stream, msg, len);
	c->linger = true;
	client_close(c, reason);
}

void client_fail(struct client *c, const char *sqlstate, const char *fmt, ...)
{
	if (c->state == CLIENT_CLOSED)
		return;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	struct buf_out out;
	buf_out_init(&out);
	pkt_put_ErrorResponse(&out, "FATAL", sqlstate, msg);
	if (c->w->cfg->log_pooler_errors)
		clog(LOG_LEVEL_WARNING, c, "pooler error: %s (%s)", msg, sqlstate);
	client_fail_with(c, out.data, out.len, msg);
	buf_out_deinit(&out);
}

void client_notice(struct client *c, const char *text)
{
	struct buf_out out;
	buf_out_init(&out);
	pkt_put_NoticeResponse(&out, "00000", text);
	stream_write(&c->stream, out.data, out.len);
	buf_out_deinit(&out);
}

/* ---- login ----------------------------------------------------------------- */

/*
 * max_db_client_connections and max_user_client_connections, checked as
 * PgBouncer checks them: once the startup packet names a database and a
 * user, before authentication. A client is counted first and refused when
 * the count is then above the limit, so a client that goes on to fail its
 * login holds its place until it leaves (client_close releases it).
 *
 * db is the name counted (the console's aliases count as ADMIN_DB); user is
 * the name counted for the user limit, or NULL when PgBouncer would not count
 * the user (see the callers). pass is the console's exemption: a login name
 * in admin_users is counted but never refused. false: c was refused and is
 * closing.
 */
static bool admit_user(struct client *c, const char *user, bool pass);

static bool client_admit(struct client *c, const char *db, int db_limit, const char *user,
			 bool pass)
{
	struct worker *w = c->w;
	int n;
	c->counted_db = ledger_acquire(w->ledger, &w->ledger->db_clients, db, &n);
	if (db_limit > 0 && n > db_limit && !pass) {
		clog(LOG_LEVEL_DEBUG, c, "database %s full of clients (%d > %d)", db, n, db_limit);
		client_fail(c, SQLSTATE_TOO_MANY_CONNECTIONS,
			    "client connections exceeded (max_db_client_connections)");
		return false;
	}
	return !user || admit_user(c, user, pass);
}

/* The user half of client_admit, also for a user an auth_query look-up made known. */
static bool admit_user(struct client *c, const char *user, bool pass)
{
	struct worker *w = c->w;
	int n;
	c->counted_user = ledger_acquire(w->ledger, &w->ledger->user_clients, user, &n);
	int user_limit = config_user_client_limit(w->cfg, user);
	if (user_limit > 0 && n > user_limit && !pass) {
		clog(LOG_LEVEL_DEBUG, c, "user %s full of clients (%d > %d)", user, n, user_limit);
		client_fail(c, SQLSTATE_TOO_MANY_CONNECTIONS,
			    "client connections exceeded (max_user_client_connections)");
		return false;
	}
	return true;
}

/*
 * Whether PgBouncer would count a login as this user: it counts users it
 * knows (auth_file, [users]), not names that will fail authentication.
 * Without an auth_file sluice knows every name (anyone may log in).
 */
static bool user_is_known(struct worker *w, const char *user)
{
	return !w->userlist || auth_userlist_find(w->userlist, user) ||
	       config_find_user(w->cfg, user);
}

static bool ignored_param(struct client *c, const char *key)
{
	return config_list_contains(c->w->cfg->ignore_startup_parameters, key);
}

/*
 * Accepts a session parameter from the startup packet (directly or through
 * "options"). false: it is neither tracked nor ignored.
 */
static bool take_param(struct client *c, const char *key, const char *val)
{
	if (param_is_tracked(key, c->w->cfg->track_extra_parameters)) {
		param_set_put(&c->params, key, val);
		int fixed = param_fixed_index(key);
		if (fixed >= 0)
			c->startup_params |= (uint8_t)(1u << fixed);
		return true;
	}
	return ignored_param(c, key);
}

/*
 * Takes the settings of the startup "options" value. false, with why (always
 * written) the message for the client, in PgBouncer's words: a malformed
 * value or a parameter that is neither tracked nor ignored.
 */
static bool take_options(struct client *c, const char *opts, char *why, size_t whylen)
{
	struct pkt_options o;
	char detail[128];
	if (pkt_parse_options(opts, &o, detail, sizeof(detail)) != PKT_OK) {
		clog(LOG_LEVEL_DEBUG, c, "startup options refused: %s", detail);
		snprintf(why, whylen,
			 "unsupported options startup parameter: only '-c config=val' and "
			 "'--config=val' are allowed");
		return false;
	}
	bool ok = true;
	for (int i = 0; i < o.n && ok; i++) {
		/*
		 * With "options" itself in ignore_startup_parameters, untracked keys
		 * inside it are dropped rather than refused, as in PgBouncer.
		 */
		if (!take_param(c, o.names[i], o.values[i]) && !ignored_param(c, "options")) {
			snprintf(why, whylen, "unsupported startup parameter in options: %s",
				 o.names[i]);
			ok = false;
		}
	}
	pkt_options_free(&o);
	return ok;
}

static void write_out(struct client *c, struct buf_out *out)
{
	stream_write(&c->stream, out->data, out->len);
	buf_out_reset(out);
}

/* Authentication succeeded: join the pool, greet the client or wait for a greeting. */
static void login_done(struct client *c)
{
	struct worker *w = c->w;
	if (c->admin_role) {
		login_forget(c);
		c->pool = admin_pool(w);
		c->pool->stats.total.client_login_count++;
		client_set_state(c, CLIENT_IDLE);
		admin_welcome(c);
		client_process(c);
		return;
	}
	/* Found again only if a reload came during the authentication. */
	const struct config_database *db = c->login->db && c->login->db_cfg_gen == w->cfg_gen
						   ? c->login->db
						   : config_find_database(w->cfg, c->db_name);
	if (!db) {
		client_fail(c, SQLSTATE_INVALID_CATALOG_NAME, "no such database: %s", c->db_name);
		return;
	}
	struct pool *p = pool_get(w, c->db_name, c->user_name, db);
	c->pool = p;
	p->stats.total.client_login_count++;
	/*
	 * What the client proved is a secret of its own user: it can log in to
	 * the server only for a pool of that user, not for a forced user's.
	 */
	if (c->login->auth && strcmp(c->user_name, p->user_name) == 0) {
		uint8_t ck[32], sk[32];
		if (auth_session_scram_keys(c->login->auth, ck, sk)) {
			memcpy(p->scram_client_key, ck, 32);
			memcpy(p->scram_server_key, sk, 32);
			p->have_scram_keys = true;
		}
		/*
		 * A password the client sent, else a secret auth_query found that
		 * can answer a server's password or md5 request.
		 */
		const char *pw = auth_session_password(c->login->auth);
		const struct auth_secret *ls = c->login->looked_up ? &c->login->looked_up->secret
								   : NULL;
		if (!pw && ls && (ls->kind == AUTH_SECRET_PLAIN || ls->kind == AUTH_SECRET_MD5))
			pw = ls->text;
		if (pw && (!p->client_password || strcmp(pw, p->client_password) != 0)) {
			free(p->client_password);
			p->client_password = xstrdup(pw);
		}
	}
	login_forget(c);
	if (w->cfg->log_connections) {
		/* PgBouncer's line, with its tls= part when the client is encrypted. */
		char tls[64];
		stream_tls_describe(&c->stream, tls, sizeof(tls));
		clog(LOG_LEVEL_INFO, c, "login attempt: db=%s user=%s%s%s", c->db_name,
		     c->user_name, tls[0] ? " tls=" : "", tls);
	}
	if (c->replication) {
		/* Greeted from a server of its own, once pool.c has opened it and it logged in. */
		c->request_time = uv_now(w->loop);
		client_set_state(c, CLIENT_WAITING_REPLICATION);
		pool_want_server(p, c);
		return;
	}
	if (p->have_welcome) {
		client_set_state(c, CLIENT_WAITING_LOGIN);
		client_welcome(c);
		return;
	}
	client_set_state(c, CLIENT_WAITING_LOGIN);
	pool_kick(p);
}

void client_welcome(struct client *c)
{
	pool_send_welcome(c->pool, c);
	client_set_state(c, CLIENT_IDLE);
	client_process(c);
}

static void send_negotiate(struct client *c, const struct pkt_startup *st)
{
	struct buf_out out;
	buf_out_init(&out);
	size_t m = pkt_begin(&out, PKT_NegotiateProtocolVersion);
	buf_out_put_be32(&out, PKT_PROTOCOL_3_0);
	int n = 0;
	for (int i = 0; i < st->nparams; i++)
		if (strncmp(st->keys[i], "_pq_.", 5) == 0)
			n++;
	buf_out_put_be32(&out, (uint32_t)n);
	for (int i = 0; i < st->nparams; i++)
		if (strncmp(st->keys[i], "_pq_.", 5) == 0)
			buf_out_put_cstr(&out, st->keys[i]);
	pkt_end(&out, m);
	write_out(c, &out);
	buf_out_deinit(&out);
}

static void on_derived(void *owner, struct scram_job *job);

/*
 * A wrong password, or an unknown user's mock exchange, ends: 28P01 in
 * PgBouncer's words, "SASL authentication failed" after a SCRAM exchange and
 * PostgreSQL's "password authentication failed for user" after the others.
 * Nothing says which of the two it was.
 */
static void fail_password(struct client *c)
{
	if (c->login->auth && auth_session_is_sasl(c->login->auth))
		client_fail(c, SQLSTATE_INVALID_PASSWORD, "SASL authentication failed");
	else
		client_fail(c, SQLSTATE_INVALID_PASSWORD,
			    "password authentication failed for user \"%s\"", c->user_name);
}

/*
 * Acts on what an authentication step returned: AUTH_OK logs in, AUTH_FAILED
 * ends the client with 28P01, AUTH_CONTINUE waits for the client's next
 * message, and AUTH_DERIVE hands the key derivation the step asked for to
 * the thread pool (derive.h); on_derived() continues the exchange. Until
 * then login_read() leaves the client's bytes alone.
 */
static void auth_next(struct client *c, int rc)
{
	if (rc == AUTH_DERIVE) {
		c->login->derive = derive_start(&c->w->derive,
						auth_session_take_job(c->login->auth), on_derived,
						c);
		clog(LOG_LEVEL_DEBUG, c, "client key derivation handed to the thread pool");
		return;
	}
	if (rc == AUTH_OK) {
		login_done(c);
	} else if (rc == AUTH_FAILED) {
		clog(LOG_LEVEL_WARNING, c, "authentication failed: %s",
		     auth_session_failure(c->login->auth));
		/* A password changed since the secret was cached: read it again next time. */
		if (c->login->looked_up_key)
			worker_authq_forget(c->w, c->login->looked_up_key);
		fail_password(c);
	}
}

/*
 * The derivation a step asked for has run (on the loop again). The client
 * is still in LOGIN: client_close() abandons the job, so a closed client is
 * never called back.
 */
static void on_derived(void *owner, struct scram_job *job)
{
	struct client *c = owner;
	c->login->derive = NULL;
	struct buf_out out;
	buf_out_init(&out);
	int rc = auth_session_resume(c->login->auth, job, &out);
	scram_job_free(job);
	write_out(c, &out);
	buf_out_deinit(&out);
	auth_next(c, rc);
	if (c->state == CLIENT_CLOSED)
		return;
	/* Bytes that arrived meanwhile: the next auth message, or more. */
	stream_resume(&c->stream);
	if (c->state == CLIENT_LOGIN)
		login_read(c);
}

/* Runs the authentication exchange with the stored secret of the client's user. */
/*
 * hba's peer method: the unix-socket peer's OS user is the user, or, with
 * an ident map, the map lets that OS user log in as the user.
 */
static bool peer_may_be(struct client *c, const char *map)
{
	unsigned uid;
	if (!c->stream.is_pipe || !stream_peer_cred(&c->stream, &uid, &c->peer_pid))
		return false;
	char buf[1024];
	struct passwd pw, *found = NULL;
	if (getpwuid_r((uid_t)uid, &pw, buf, sizeof(buf), &found) != 0 || !found)
		return false;
	if (!map)
		return strcmp(found->pw_name, c->user_name) == 0;
	if (hba_ident_allows(c->w->hba, map, found->pw_name, c->user_name))
		return true;
	/* PgBouncer's words, for operators who grep for them. */
	clog(LOG_LEVEL_WARNING, c, "ident map %s cannot be matched", map);
	return false;
}

/*
 * auth_type = hba: the method of the first auth_hba_file rule that matches
 * this login, as an auth_type in *type. false when the rules refuse it (the
 * client has been failed, in PostgreSQL's words) or a peer check failed.
 */
static bool hba_method_of(struct client *c, enum auth_type *type)
{
	const struct hba *h = c->w->hba;
	struct sockaddr_storage ss;
	bool tcp = stream_peer_sockaddr(&c->stream, &ss);
	struct hba_conn hc = { .unix_socket = c->stream.is_pipe,
			       .tls = c->stream.tls,
			       .replication = c->replication != 0,
			       .addr = tcp ? (const struct sockaddr *)&ss : NULL,
			       .database = c->db_name,
			       .user = c->user_name };
	int line = 0;
	const char *map = NULL;
	enum hba_method m = h ? hba_match(h, &hc, &line, &map) : HBA_NO_MATCH;
	char host[64] = "[local]";
	int port;
	if (!c->stream.is_pipe)
		(void)stream_address(&c->stream, false, host, sizeof(host), &port);
	switch (m) {
	case HBA_TRUST:
		*type = AUTH_TYPE_TRUST;
		return true;
	case HBA_MD5:
		*type = AUTH_TYPE_MD5;
		return true;
	case HBA_PASSWORD:
		*type = AUTH_TYPE_PLAIN;
		return true;
	case HBA_SCRAM_SHA_256:
		*type = AUTH_TYPE_SCRAM_SHA_256;
		return true;
	case HBA_CERT:
		/* Checked once the user is known (authenticate); the map may be reloaded meanwhile. */
		free(c->login->ident_map);
		c->login->ident_map = map ? xstrdup(map) : NULL;
		*type = AUTH_TYPE_CERT;
		return true;
	case HBA_PEER:
		if (peer_may_be(c, map)) {
			*type = AUTH_TYPE_TRUST;
			return true;
		}
		clog(LOG_LEVEL_WARNING, c,
		     "authentication failed: peer is not OS user \"%s\" (%s line %d)", c->user_name,
		     c->w->cfg->auth_hba_file, line);
		client_fail(c, SQLSTATE_INVALID_AUTHORIZATION,
			    "peer authentication failed for user \"%s\"", c->user_name);
		return false;
	case HBA_REJECT:
		clog(LOG_LEVEL_WARNING, c, "authentication failed: rejected by %s line %d",
		     c->w->cfg->auth_hba_file, line);
		client_fail(
			c, SQLSTATE_INVALID_AUTHORIZATION,
			"pg_hba.conf rejects connection for host \"%s\", user \"%s\", database \"%s\"%s",
			host, c->user_name, c->db_name, hc.tls ? ", SSL encryption" : "");
		return false;
	case HBA_NO_MATCH:
	default:
		clog(LOG_LEVEL_WARNING, c, "authentication failed: no rule of %s matches",
		     c->w->cfg->auth_hba_file);
		client_fail(c, SQLSTATE_INVALID_AUTHORIZATION,
			    "no pg_hba.conf entry for host \"%s\", user \"%s\", database \"%s\"%s",
			    host, c->user_name, c->db_name, hc.tls ? ", SSL encryption" : "");
		return false;
	}
}

/*
 * Authenticates c with type (hba already resolved) against au, the user of
 * the auth_file or of an auth_query look-up (NULL: unknown).
 */
static void authenticate(struct client *c, enum auth_type type, bool from_hba,
			 const struct auth_user *au)
{
	struct worker *w = c->w;
	/*
	 * trust still requires the user to be known when there is an auth_file
	 * (as PgBouncer, in its words); an hba rule's trust (or peer) is
	 * PostgreSQL's and needs no listing. No password hides anything here:
	 * a known user gets in at once, so the answer names no secret.
	 */
	if (type == AUTH_TYPE_TRUST && !from_hba && w->userlist && !au) {
		clog(LOG_LEVEL_WARNING, c, "authentication failed: no such user in the auth_file");
		client_fail(c, SQLSTATE_INVALID_AUTHORIZATION, "\"trust\" authentication failed");
		return;
	}
	if (type == AUTH_TYPE_CERT) {
		/*
		 * The handshake verified the certificate against client_tls_ca_file;
		 * its common name must be the user (PgBouncer's words on failure).
		 */
		struct tls_conn *tls = stream_tls(&c->stream);
		const char *cn = tls ? tls_conn_peer_cn(tls) : NULL;
		const char *why = !tls	? "TLS connection required"
				  : !cn ? "TLS client certificate required"
					: NULL;
		/* With an hba rule's map=, the ident map says which users the name may be. */
		if (!why && c->login->ident_map &&
		    (!w->hba || !hba_ident_allows(w->hba, c->login->ident_map, cn, c->user_name))) {
			clog(LOG_LEVEL_WARNING, c, "ident map: %s does not have a match",
			     c->login->ident_map);
			why = "certificate authentication failed";
		} else if (!why && !c->login->ident_map && strcmp(cn, c->user_name) != 0) {
			why = "TLS certificate name mismatch";
		}
		if (why) {
			clog(LOG_LEVEL_WARNING, c, "authentication failed: %s", why);
			client_fail(c, SQLSTATE_INVALID_AUTHORIZATION, "%s", why);
			return;
		}
		type = AUTH_TYPE_TRUST;
	}
	c->login->auth = auth_session_new(type, c->user_name, au, w->mock_seed);
	struct buf_out out;
	buf_out_init(&out);
	int rc = auth_session_start(c->login->auth, &out);
	write_out(c, &out);
	buf_out_deinit(&out);
	auth_next(c, rc);
}

/* A login failed for the configuration's sake: PgBouncer's words to the client, ours to the log. */
static void fail_config(struct client *c, const char *why)
{
	clog(LOG_LEVEL_ERROR, c, "%s", why);
	client_fail(c, SQLSTATE_CONFIG_FILE_ERROR, "bouncer config error");
}

/*
 * Where c's user is looked up when the auth_file does not list it, as
 * PgBouncer decides: with the auth_user of c's [databases] entry or the
 * global one, in the database of the entry's auth_dbname, the global
 * auth_dbname, or else c's own database. 1: t filled; 0: no look-up (no
 * auth_user, or a database sluice does not know, which fails later); -1: c
 * was failed.
 */
static int lookup_target(struct client *c, struct authq_target *t)
{
	struct worker *w = c->w;
	const struct config *cfg = w->cfg;
	const struct config_database *dbc = c->admin_role ? NULL
							  : config_find_database(cfg, c->db_name);
	if (!c->admin_role && !dbc)
		return 0;
	const char *auth_user = dbc && dbc->auth_user ? dbc->auth_user : cfg->auth_user;
	if (!*auth_user)
		return 0;
	const char *auth_db = dbc && dbc->auth_dbname ? dbc->auth_dbname
			      : *cfg->auth_dbname     ? cfg->auth_dbname
						      : c->db_name;
	const struct config_database *adb = config_find_database(cfg, auth_db);
	char why[256] = "";
	if (admin_is_console_db(auth_db))
		snprintf(why, sizeof(why),
			 "cannot use the reserved \"%s\" database as an auth_dbname", auth_db);
	else if (!adb)
		snprintf(why, sizeof(why), "authentication database \"%s\" is not configured",
			 auth_db);
	if (why[0]) {
		fail_config(c, why);
		return -1;
	}
	struct db_state *ds = worker_db_state(w, auth_db, false);
	if (ds && ds->disabled) {
		client_fail(c, SQLSTATE_CANNOT_CONNECT_NOW,
			    "authentication database \"%s\" is disabled", auth_db);
		return -1;
	}
	/*
	 * auth_user's password: libpq logs in with a password, so an md5 or
	 * SCRAM secret in the auth_file cannot serve (the server may still
	 * trust auth_user, as PgBouncer's docs allow).
	 */
	const struct auth_user *au = w->userlist ? auth_userlist_find(w->userlist, auth_user)
						 : NULL;
	const char *password = NULL;
	if (au && au->secret.kind == AUTH_SECRET_PLAIN)
		password = au->secret.text;
	else if (au && au->secret.kind != AUTH_SECRET_NONE)
		clog(LOG_LEVEL_WARNING, c,
		     "auth_user %s has a hashed secret in the auth_file: the look-up logs in "
		     "without a password",
		     auth_user);
	else if (adb->user && adb->password && strcmp(adb->user, auth_user) == 0)
		password = adb->password;
	*t = (struct authq_target){
		.hosts = adb->hosts,
		.n_hosts = adb->n_hosts,
		.dbname = adb->dbname ? adb->dbname : auth_db,
		.user = auth_user,
		.password = password,
		.query = dbc && dbc->auth_query ? dbc->auth_query : cfg->auth_query,
	};
	return 1;
}

static void on_looked_up(void *owner, const struct authq_answer *a);

/*
 * Chooses the method (an hba rule's under auth_type = hba), looks the user
 * up when the auth_file does not know it and an auth_user is set, then
 * authenticates.
 */
static void run_auth(struct client *c, enum auth_type type)
{
	struct worker *w = c->w;
	bool from_hba = type == AUTH_TYPE_HBA;
	if (from_hba && !hba_method_of(c, &type))
		return;
	const struct auth_user *au = w->userlist ? auth_userlist_find(w->userlist, c->user_name)
						 : NULL;
	if (!au && type != AUTH_TYPE_ANY) {
		struct authq_target t;
		int rc = lookup_target(c, &t);
		if (rc < 0)
			return;
		if (rc > 0) {
			c->login->auth_type = (uint8_t)type;
			c->login->auth_from_hba = from_hba;
			struct authq_answer now;
			if (worker_authq_lookup(w, &t, c->user_name, on_looked_up, c, &now,
						&c->login->authq))
				on_looked_up(c, &now);
			else
				clog(LOG_LEVEL_DEBUG, c, "looking the user up with auth_query");
			return;
		}
	}
	authenticate(c, type, from_hba, au);
}

/*
 * The auth_query look-up answered: authenticate against what it found, or
 * end the login (PgBouncer's words to the client: "no such user", "bouncer
 * config error"). Bytes the client sent meanwhile are read now.
 */
static void on_looked_up(void *owner, const struct authq_answer *a)
{
	struct client *c = owner;
	c->login->authq = NULL;
	switch (a->status) {
	case AUTHQ_FOUND:
		c->login->looked_up = auth_user_new(c->user_name, a->secret);
		if (!c->login->looked_up) {
			clog(LOG_LEVEL_WARNING, c, "auth_query returned a malformed SCRAM secret");
			worker_authq_forget(c->w, a->key);
			client_fail(c, SQLSTATE_INVALID_PASSWORD,
				    "password authentication failed for user \"%s\"", c->user_name);
			return;
		}
		c->login->looked_up_key = xstrdup(a->key);
		/* Known now: counted against its user's client limit, as PgBouncer does. */
		if (!c->counted_user && !admit_user(c, c->user_name, false))
			return;
		authenticate(c, (enum auth_type)c->login->auth_type, c->login->auth_from_hba,
			     c->login->looked_up);
		break;
	case AUTHQ_NOT_FOUND:
		/* PgBouncer's answer: without a mock exchange, the client learns the user is unknown. */
		clog(LOG_LEVEL_INFO, c, "no such user: %s", c->user_name);
		client_fail(c, SQLSTATE_INVALID_AUTHORIZATION, "no such user");
		return;
	case AUTHQ_QUERY_FAILED:
		fail_config(c, a->error);
		return;
	case AUTHQ_CONNECT_FAILED:
		if (a->server_message) {
			/* As PgBouncer passes on a failed server login: PostgreSQL's words. */
			clog(LOG_LEVEL_WARNING, c,
			     "auth_query look-up failed: server login failed: FATAL %s",
			     a->server_message);
			client_fail(c, a->sqlstate ? a->sqlstate : SQLSTATE_CONNECTION_FAILURE,
				    "%s", a->server_message);
			return;
		}
		clog(LOG_LEVEL_WARNING, c, "auth_query look-up failed: %s", a->error);
		client_fail(c, SQLSTATE_CONNECTION_FAILURE,
			    "could not look the user up in the authentication database");
		return;
	}
	if (c->state == CLIENT_LOGIN && !c->login->derive) {
		stream_resume(&c->stream);
		login_read(c);
	}
}

/* Whether the unix-socket peer runs as our own OS user (SO_PEERCRED). */
static bool peer_is_self(struct client *c)
{
	if (!c->stream.is_pipe)
		return false;
	unsigned uid;
	if (!stream_peer_cred(&c->stream, &uid, &c->peer_pid))
		return false;
	return uid == (unsigned)geteuid();
}

/* A login to the admin console database: decide the role, then authenticate. */
static void start_console_login(struct client *c)
{
	const struct config *cfg = c->w->cfg;
	bool self = peer_is_self(c);
	bool peer_login = self && strcmp(c->user_name, "pgbouncer") == 0;
	/*
	 * The client limits, as PgBouncer applies them to its console: a peer
	 * login or auth_type=any logs in with the console's own credentials, so
	 * the exemption of admin_users is decided on the name "pgbouncer", and the
	 * user counted is "pgbouncer" (none for a peer login or, under any, for a
	 * name in admin_users). Otherwise the client's name, when it is known.
	 */
	const char *counted = NULL;
	bool any = cfg->auth_type == AUTH_TYPE_ANY;
	if (peer_login)
		counted = NULL;
	else if (any)
		counted = config_list_contains(cfg->admin_users, c->user_name) ? NULL : ADMIN_DB;
	else if (user_is_known(c->w, c->user_name))
		counted = c->user_name;
	const char *login_name = peer_login || any ? ADMIN_DB : c->user_name;
	if (!client_admit(c, ADMIN_DB, config_db_client_limit(cfg, NULL), counted,
			  config_list_contains(cfg->admin_users, login_name)))
		return;
	enum admin_role role = admin_role_of(cfg, c->user_name, self);
	if (role == ADMIN_ROLE_NONE) {
		client_fail(c, SQLSTATE_INVALID_AUTHORIZATION,
			    "not allowed to connect to the admin console as user \"%s\"",
			    c->user_name);
		return;
	}
	c->admin_role = (uint8_t)role;
	if (peer_login || any) {
		/* Peer credentials (or auth_type=any) are the authentication. */
		login_done(c);
		return;
	}
	run_auth(c, c->w->cfg->auth_type);
}

/*
 * strcmp(k, name) == 0, the first byte first: every startup parameter is
 * tried against several names.
 */
static bool key_is(const char *k, const char *name)
{
	return k[0] == name[0] && strcmp(k, name) == 0;
}

/* Handles a whole StartupMessage. */
/*
 * Takes the startup parameters other than user and database: replication
 * (first, as it decides how options is taken), options, and the session
 * parameters the client sets. false when one is refused (the client has
 * been failed).
 */
static bool take_startup_params(struct client *c, const struct pkt_startup *st)
{
	/* Read first: it decides how "options" is taken. */
	const char *repl = pkt_startup_get(st, "replication");
	if (repl) {
		enum pkt_replication r;
		if (pkt_parse_replication(repl, &r) != PKT_OK) {
			/* PostgreSQL's words; PgBouncer would take it for a normal login. */
			client_fail(c, SQLSTATE_INVALID_PARAMETER_VALUE,
				    "invalid value for parameter \"replication\": \"%s\"", repl);
			return false;
		}
		c->replication = (uint8_t)r;
	}

	for (int i = 0; i < st->nparams; i++) {
		const char *k = st->keys[i], *v = st->vals[i];
		char why[256];
		if (key_is(k, "user") || key_is(k, "database") ||
		    (k[0] == '_' && strncmp(k, "_pq_.", 5) == 0))
			continue;
		if (key_is(k, "replication"))
			continue;
		if (key_is(k, "options") && c->replication) {
			/*
			 * Its server is its own, so every option can go there as it is,
			 * tracked or not; PostgreSQL judges them (as PgBouncer does).
			 */
			free(c->startup_options);
			c->startup_options = xstrdup(v);
			continue;
		}
		if (key_is(k, "options")) {
			if (!take_options(c, v, why, sizeof(why))) {
				client_fail(c, SQLSTATE_FEATURE_NOT_SUPPORTED, "%s", why);
				return false;
			}
			continue;
		}
		if (!take_param(c, k, v)) {
			client_fail(c, SQLSTATE_FEATURE_NOT_SUPPORTED,
				    "unsupported startup parameter: %s", k);
			return false;
		}
	}

	return true;
}

/*
 * Where a client with its names and parameters goes next: the console's
 * login, a refusal (shutting down, auth_type=any without a forced user,
 * client limits, DISABLE), or authentication.
 */
static void route_login(struct client *c)
{
	struct worker *w = c->w;
	if (admin_is_console_db(c->db_name)) {
		if (c->replication) {
			client_fail(c, SQLSTATE_FEATURE_NOT_SUPPORTED,
				    "the admin console does not take replication connections");
			return;
		}
		/* The console stays reachable (on the unix socket) while shutting down. */
		start_console_login(c);
		return;
	}
	if (w->shutdown != WORKER_RUNNING) {
		client_fail(c, SQLSTATE_CANNOT_CONNECT_NOW, "pooler is shutting down");
		return;
	}
	const struct config_database *dbc = config_find_database(w->cfg, c->db_name);
	c->login->db = dbc;
	c->login->db_cfg_gen = w->cfg_gen;
	enum auth_type type = w->cfg->auth_type;
	if (!dbc) {
		/*
		 * As PgBouncer and PostgreSQL: the client authenticates first, and
		 * only then hears that the database does not exist (login_done), so
		 * that database names cannot be probed without a password.
		 */
		if (type == AUTH_TYPE_ANY)
			client_fail(c, SQLSTATE_INVALID_CATALOG_NAME, "no such database: %s",
				    c->db_name);
		else
			run_auth(c, type);
		return;
	}
	if (type == AUTH_TYPE_ANY) {
		if (!dbc->user) {
			client_fail(c, SQLSTATE_INVALID_AUTHORIZATION,
				    "auth_type=any requires a forced user in [databases] for %s",
				    c->db_name);
			return;
		}
		set_names(c, c->db_name, dbc->user);
	}
	/* With auth_type=any the forced user is the login, and always counted. */
	const char *counted = type == AUTH_TYPE_ANY || user_is_known(w, c->user_name) ? c->user_name
										      : NULL;
	if (!client_admit(c, c->db_name, config_db_client_limit(w->cfg, dbc), counted, false))
		return;
	struct db_state *ds = worker_db_state(w, c->db_name, false);
	if (ds && ds->disabled) {
		client_fail(c, SQLSTATE_CANNOT_CONNECT_NOW, "database \"%s\" is disabled",
			    c->db_name);
		return;
	}
	run_auth(c, type);
}

/* A StartupMessage: the protocol version, the names, the parameters, then route_login. */
static void handle_startup(struct client *c, const struct pkt_startup *st)
{
	uint32_t major = st->code >> 16, minor = st->code & 0xffff;
	if (c->over_limit) {
		client_fail(c, SQLSTATE_TOO_MANY_CONNECTIONS,
			    "no more connections allowed (max_client_conn)");
		return;
	}
	if (major != 3) {
		client_fail(c, SQLSTATE_FEATURE_NOT_SUPPORTED,
			    "unsupported frontend protocol %u.%u: server supports 3.0", major,
			    minor);
		return;
	}
	/* As PgBouncer: a unix socket is trusted to be local, TCP must be encrypted. */
	const struct tls_ctx *tls = c->w->client_tls;
	if (!c->stream.tls && !c->stream.is_pipe && tls &&
	    tls_ctx_sslmode(tls) >= SSLMODE_REQUIRE) {
		client_fail(c, SQLSTATE_INVALID_AUTHORIZATION, "SSL required");
		return;
	}
	bool has_pq = false;
	for (int i = 0; i < st->nparams; i++)
		if (strncmp(st->keys[i], "_pq_.", 5) == 0)
			has_pq = true;
	if (minor > 0 || has_pq)
		send_negotiate(c, st);

	const char *user = pkt_startup_get(st, "user");
	if (!user || !*user) {
		client_fail(c, SQLSTATE_PROTOCOL_VIOLATION, "no user name in startup packet");
		return;
	}
	const char *db = pkt_startup_get(st, "database");
	if (!db || !*db)
		db = user;
	set_names(c, db, user);

	if (take_startup_params(c, st))
		route_login(c);
}

/*
 * The longest authentication message read: PgBouncer takes passwords of up
 * to 64 KiB, so a client configured for it must not be refused here.
 */
#define CLIENT_AUTH_MAX (65536 + PKT_HDR_LEN + 1)

/* The first byte of a TLS handshake record (a ClientHello). */
#define TLS_RECORD_HANDSHAKE 0x16

/* The client's TLS handshake is over: the StartupMessage follows inside it, or it failed. */
static void on_tls_ready(struct stream *st, int status)
{
	struct client *c = container_of(st, struct client, stream);
	c->w->stats_tls_handshakes[0]++;
	if (status != 0) {
		c->w->stats_tls_failures[0]++;
		/* The alert, if any, is the client's answer: nothing of the protocol can be sent. */
		clog(LOG_LEVEL_WARNING, c, "TLS handshake failed: %s", stream_tls_error(st));
		c->linger = true;
		client_close(c, "TLS handshake failed");
		return;
	}
	if (c->direct_tls && !tls_conn_alpn_postgresql(stream_tls(st))) {
		/* PostgreSQL's rule: without ALPN a direct connection could be another protocol's. */
		client_fail(c, SQLSTATE_PROTOCOL_VIOLATION,
			    "received direct SSL connection request without ALPN protocol "
			    "negotiation extension");
		return;
	}
	char desc[64];
	stream_tls_describe(st, desc, sizeof(desc));
	clog(LOG_LEVEL_DEBUG, c, "TLS established: %s", desc);
}

/*
 * Handles the packet at the head of the input before the client has a name:
 * an SSLRequest or GSSENCRequest (answered 'N'), a CancelRequest, or the
 * StartupMessage. false when reading must stop: incomplete input, or the
 * client was failed or closed.
 */
static bool read_startup_packet(struct client *c)
{
	struct stream *st = &c->stream;
	size_t avail = stream_avail(st);
	const uint8_t *p = stream_data(st);
	/*
	 * A TLS handshake record where a length should be: PostgreSQL 17's
	 * direct TLS (sslnegotiation=direct), with no SSLRequest first.
	 */
	if (p[0] == TLS_RECORD_HANDSHAKE && !st->tls && c->w->client_tls && !st->is_pipe) {
		c->direct_tls = true;
		stream_start_tls(st, c->w->client_tls, NULL, on_tls_ready);
		return false;
	}
	uint32_t len;
	int rc = pkt_frame_startup(p, avail, &len);
	if (rc == PKT_INCOMPLETE)
		return false;
	if (rc != PKT_OK) {
		client_fail(c, SQLSTATE_PROTOCOL_VIOLATION, "invalid startup packet length");
		return false;
	}
	if (len > avail) {
		stream_reserve(st, len);
		return false;
	}
	struct pkt_startup sp;
	if (pkt_parse_startup(p, len, &sp) != PKT_OK) {
		client_fail(c, SQLSTATE_PROTOCOL_VIOLATION, "malformed startup packet");
		return false;
	}
	if (sp.code == PKT_SSL_REQUEST_CODE || sp.code == PKT_GSSENC_REQUEST_CODE) {
		if (st->tls) {
			client_fail(c, SQLSTATE_PROTOCOL_VIOLATION,
				    "encryption requested on an encrypted connection");
			return false;
		}
		/*
		 * Bytes sent before our answer would be a spoofing attempt
		 * (CVE-2021-23222): they would be taken for the TLS peer's.
		 */
		if (avail > len) {
			client_fail(c, SQLSTATE_PROTOCOL_VIOLATION,
				    "unexpected data after encryption request");
			return false;
		}
		stream_consume(st, len);
		if (sp.code == PKT_SSL_REQUEST_CODE && c->w->client_tls && !st->is_pipe) {
			stream_write(st, "S", 1);
			stream_start_tls(st, c->w->client_tls, NULL, on_tls_ready);
			return false;
		}
		stream_write(st, "N", 1);
		return true;
	}
	if (sp.code == PKT_CANCEL_REQUEST_CODE) {
		stream_consume(st, len);
		char reason[128];
		cancel_accept(c->w, sp.cancel_pid, sp.cancel_key, reason, sizeof(reason));
		client_close(c, reason);
		return false;
	}
	/*
	 * Consumed before it is handled (sp still points into the buffer, which
	 * consuming does not release): with trust a login completes inside
	 * handle_startup(), and the welcomed client must not see its own
	 * startup packet as a request.
	 */
	stream_consume(st, len);
	handle_startup(c, &sp);
	return true;
}

/* Hands the password message at the head of the input to the authentication; false as above. */
static bool read_auth_message(struct client *c)
{
	struct stream *st = &c->stream;
	size_t avail = stream_avail(st);
	const uint8_t *p = stream_data(st);
	struct pkt_hdr h;
	int rc = pkt_frame(p, avail, CLIENT_AUTH_MAX, &h);
	if (rc == PKT_INCOMPLETE)
		return false;
	if (rc == PKT_TOO_LARGE && p[0] == PKT_PasswordMessage && c->login->auth) {
		/* No password is this long: a wrong one, not a broken client. */
		clog(LOG_LEVEL_WARNING, c, "authentication failed: password message too long");
		fail_password(c);
		return false;
	}
	if (rc != PKT_OK || h.type != PKT_PasswordMessage || !c->login->auth) {
		client_fail(c, SQLSTATE_PROTOCOL_VIOLATION,
			    "expected a password message during authentication");
		return false;
	}
	if (h.len > avail) {
		stream_reserve(st, h.len);
		return false;
	}
	struct buf_out out;
	buf_out_init(&out);
	int ar = auth_session_step(c->login->auth, p + PKT_HDR_LEN, h.len - PKT_HDR_LEN, &out);
	stream_consume(st, h.len);
	write_out(c, &out);
	buf_out_deinit(&out);
	auth_next(c, ar);
	return true;
}

/* Reads the login phase: the startup packets, then the authentication messages. */
static void login_read(struct client *c)
{
	struct stream *st = &c->stream;
	if (c->login->derive || c->login->authq) {
		/* A key derivation or a look-up is pending: hold what arrives, within a bound. */
		if (stream_avail(st) >= BUF_SIZE / 2)
			stream_pause(st);
		return;
	}
	while (c->state == CLIENT_LOGIN && !c->login->derive && !c->login->authq &&
	       stream_avail(st) > 0) {
		bool more = c->user_name ? read_auth_message(c) : read_startup_packet(c);
		if (!more)
			return;
	}
}

/* ---- relay ----------------------------------------------------------------- */

void client_check_backpressure(struct client *c)
{
	if (c->server && stream_unsent(&c->stream) > STREAM_HIGH_WATER)
		stream_pause(&c->server->stream);
}

/*
 * Reads the header of the client's next message against max_packet_size.
 * PKT_INCOMPLETE: fewer than 5 bytes yet. A malformed or oversized header
 * fails the client (54000 / 08P01) and returns PKT_MALFORMED.
 */
static int frame_failed(struct client *c, int rc);

static inline __attribute__((always_inline)) int frame_message(struct client *c, struct pkt_hdr *h)
{
	struct stream *st = &c->stream;
	size_t avail = stream_avail(st);
	if (avail < PKT_HDR_LEN)
		return PKT_INCOMPLETE;
	int rc = pkt_frame(stream_data(st), avail, c->w->cfg->max_packet_size, h);
	return rc == PKT_OK ? PKT_OK : frame_failed(c, rc);
}

/* frame_message's failures, out of line: inlined, it is paid by every message. */
static __attribute__((noinline, cold)) int frame_failed(struct client *c, int rc)
{
	struct stream *st = &c->stream;
	if (rc == PKT_TOO_LARGE) {
		client_fail(c, SQLSTATE_PROGRAM_LIMIT_EXCEEDED,
			    "message of %u bytes exceeds max_packet_size",
			    get_be32(stream_data(st) + 1));
		return PKT_MALFORMED;
	}
	client_fail(c, SQLSTATE_PROTOCOL_VIOLATION, "invalid message length");
	return PKT_MALFORMED;
}

/* A request arrived with no server linked: queue for one. */
static void want_server(struct client *c)
{
	c->request_time = uv_now(c->w->loop);
	if (pool_serve_now(c->pool, c))
		return;
	client_set_state(c, CLIENT_WAITING);
	pool_want_server(c->pool, c);
}

/*
 * Gives prepared.c the client messages that may name a prepared statement.
 * Returns true when the message was handled there (relay goes on with the
 * next one, or with the rest of this one in pass_remaining), false when it
 * is to be relayed as it is; *stop says relay must return instead.
 */
static bool relay_prepared(struct client *c, const struct pkt_hdr *h, bool *stop)
{
	struct stream *st = &c->stream;
	struct server *s = c->server;
	uint32_t rest = 0;
	enum prepared_rc rc;
	*stop = false;
	if (h->type == PKT_Query) {
		/* Answered without PostgreSQL only when nothing else is under way. */
		if (!prepared_client_any(&c->prepared) || s->rq.len || s->pass_remaining ||
		    s->txn_status == 'E')
			return false;
		rc = prepared_client_deallocate(c, h, s->txn_status);
	} else {
		rc = prepared_client_message(c, h, &rest);
	}
	switch (rc) {
	case PREPARED_RELAY:
		return false;
	case PREPARED_WAIT:
		/* Read nothing more until the server's answers move on (server.c resumes us). */
		c->prepared_wait = true;
		stream_pause(st);
		*stop = true;
		return true;
	case PREPARED_MORE:
	case PREPARED_FAILED:
		*stop = true;
		return true;
	case PREPARED_DONE:
		break;
	}
	c->pool->stats.total.bytes_received += h->len - rest;
	if (h->type == PKT_Query) {
		server_maybe_release(s);
		return true;
	}
	c->ext_open = true;
	if (rest) {
		size_t n = MIN(stream_avail(st), (size_t)rest);
		stream_forward(&s->stream, st, n);
		c->pool->stats.total.bytes_received += n;
		c->pass_remaining = rest - (uint32_t)n;
	}
	return true;
}

/*
 * session_pinning = refuse: the Query or Parse framed as h, whole at the
 * front of the read buffer, with text its SQL, is replaced there by one
 * whose statement that would pin the client (sqlscan.h, pin_made) is a DO
 * block raising 0A000 (sql_scan_refusal). The server fails it where it
 * would have run, so the client's transaction ends as PostgreSQL leaves it
 * after a failed statement: idle outside a block, aborted inside one. A
 * Parse keeps its name and its parameters (a Bind must still match): a
 * type left to the server (0, or a $n not declared) becomes text, as a DO
 * has nothing to infer it from; the statement's Execute fails. Returns the
 * text now sent (malloc'd: the caller frees it), h framing its message, or
 * NULL when nothing in text would pin and the message is left as it was.
 */
static char *refuse_pinning(struct client *c, struct pkt_hdr *h, const char *text)
{
	struct sql_scan_result r;
	sql_scan_parse(text, &r);
	char *sql = r.pin_made != SQL_PIN_MADE_NONE
			    ? sql_scan_refusal(text, &r,
					       config_pool_mode_name(pool_mode_of(c->pool)))
			    : NULL;
	if (!sql) {
		sql_scan_result_deinit(&r);
		return NULL;
	}
	clog(LOG_LEVEL_INFO, c, "refused %s (session_pinning = refuse)", r.pin_what);
	int params = r.pin_params;
	sql_scan_result_deinit(&r);
	struct buf_out out;
	buf_out_init(&out);
	size_t m = pkt_begin(&out, h->type);
	if (h->type == PKT_Parse) {
		struct pkt_reader rd;
		pkt_reader_init(&rd, stream_data(&c->stream) + PKT_HDR_LEN, h->len - PKT_HDR_LEN);
		buf_out_put_cstr(&out, pkt_get_cstr(&rd)); /* the name: whole, as text was found */
		pkt_get_cstr(&rd);
		buf_out_put_cstr(&out, sql);
		/*
		 * As many parameters as PostgreSQL would have found: the types
		 * the client gave, and the $n it left to the server (as text).
		 */
		uint16_t ntypes = pkt_get_be16(&rd);
		if (rd.bad)
			ntypes = 0;
		uint16_t n = (uint16_t)MIN(MAX((int)ntypes, params), UINT16_MAX);
		buf_out_put_be16(&out, n);
		for (uint16_t i = 0; i < n; i++) {
			uint32_t type = i < ntypes ? pkt_get_be32(&rd) : 0;
			buf_out_put_be32(&out, type && !rd.bad ? type : 25 /* text */);
		}
	} else {
		buf_out_put_cstr(&out, sql);
	}
	pkt_end(&out, m);
	/* The client's bytes count as received; the relay adds the new message's. */
	c->pool->stats.total.bytes_received += h->len - out.len;
	stream_replace_front(&c->stream, h->len, out.data, out.len);
	h->len = (uint32_t)out.len;
	buf_out_deinit(&out);
	return sql;
}

/*
 * Shows the server a Query's or Parse's SQL text (session_watch_sql) when
 * its session outlives this client's turn on it. h: the message at the
 * front of the read buffer, avail bytes of it there; with session_pinning
 * = refuse it may be replaced there (refuse_pinning), and h then frames the
 * new one. Returns session_watch_sql's answer: true when the text waits.
 */
__attribute__((noinline)) static bool watch_sql(struct client *c, struct server *s,
						struct pkt_hdr *h, size_t avail)
{
	if (pool_mode_of(c->pool) == POOL_MODE_SESSION)
		return false;
	const char *body = (const char *)stream_data(&c->stream) + PKT_HDR_LEN;
	size_t blen = MIN(avail, (size_t)h->len) - PKT_HDR_LEN;
	bool whole = avail >= h->len && (h->type != PKT_Query || (blen && !body[blen - 1]));
	if (h->type == PKT_Parse) {
		/* The unnamed statement's empty name is the common case: no search for it. */
		const char *name_end = blen && !body[0] ? body : memchr(body, 0, blen);
		if (!name_end) {
			return session_watch_sql(s, NULL);
		}
		blen -= (size_t)(name_end + 1 - body);
		body = name_end + 1;
	}
	if (!whole) {
		return session_watch_sql(s, NULL);
	}
	/*
	 * A Query's text ends the message. A Parse's is followed by its
	 * parameter types: mostly none (drivers leave them to the server), so
	 * its NUL and a count of 0 end the message; otherwise it is searched for.
	 */
	const char *end = h->type == PKT_Query ? body + blen - 1
			  : blen >= 3 && !body[blen - 3] && !body[blen - 2] && !body[blen - 1]
				  ? body + blen - 3
				  : memchr(body, 0, blen);
	if (!end) {
		return session_watch_sql(s, NULL);
	}
	unsigned maybe = sql_scan_cheap(body, (size_t)(end - body));
	if ((maybe & SQL_EFFECT_PINS) && c->w->cfg->session_pinning == SESSION_PINNING_REFUSE) {
		char *sql = refuse_pinning(c, h, body);
		if (sql) {
			/* The statements before the refused one still run: what they change is asked as usual. */
			bool wait = sql_scan_cheap(sql, strlen(sql)) && session_watch_sql(s, sql);
			free(sql);
			return wait;
		}
	}
	return maybe && session_watch_sql(s, body);
}

/*
 * watch_sql's common answer without its call: false for a text nothing
 * need watch, true when watch_sql must look (it looks again from the
 * start). Settled here: a session pool's, and a whole Query's or a whole
 * Parse's of the unnamed statement with no parameter types (what drivers
 * send) in which the cheap look finds nothing.
 */
static inline bool sql_needs_watch(const struct client *c, const struct pkt_hdr *h, size_t avail)
{
	if (pool_mode_of(c->pool) == POOL_MODE_SESSION)
		return false;
	if (avail < h->len || h->len < PKT_HDR_LEN + 4)
		return true;
	const char *body = (const char *)stream_data(&c->stream) + PKT_HDR_LEN;
	size_t blen = h->len - PKT_HDR_LEN;
	if (h->type == PKT_Query)
		return body[blen - 1] || sql_scan_cheap(body, blen - 1);
	/* A Parse: an empty name, the text and its NUL, a count of 0 parameter types. */
	return body[0] || body[blen - 3] || body[blen - 2] || body[blen - 1] ||
	       sql_scan_cheap(body + 1, blen - 4);
}

/*
 * Whether the Parse framed as h, at the front of st, is of the unnamed
 * statement, which prepared.c relays as it is (on_parse): its name, the
 * first byte of the body, is empty. false when that byte is not here yet,
 * or there is none (prepared.c then waits, or refuses the message).
 */
static inline bool parse_is_unnamed(const struct stream *st, const struct pkt_hdr *h)
{
	return h->len > PKT_HDR_LEN && stream_avail(st) > PKT_HDR_LEN &&
	       stream_data(st)[PKT_HDR_LEN] == 0;
}

/* Forwards every complete (or streaming) message to the linked server. */
static void relay(struct client *c)
{
	struct stream *st = &c->stream;
	while (c->state == CLIENT_ACTIVE && stream_avail(st) > 0) {
		struct server *s = c->server;
		size_t avail = stream_avail(st);
		if (c->pass_remaining) {
			size_t n = MIN(avail, (size_t)c->pass_remaining);
			stream_forward(&s->stream, st, n);
			c->pool->stats.total.bytes_received += n;
			c->pass_remaining -= (uint32_t)n;
			if (c->pass_remaining == 0 && s->rq.len == 0)
				server_maybe_release(s);
			continue;
		}
		if (s->probe_seq) {
			/*
			 * The server is asked what the last request left in its
			 * session: the next waits for the answer, which may move
			 * the client to another server or re-apply a setting first.
			 */
			c->prepared_wait = true;
			stream_pause(st);
			goto out;
		}
		struct pkt_hdr h;
		int rc = frame_message(c, &h);
		if (rc == PKT_INCOMPLETE)
			break;
		if (rc != PKT_OK)
			return;
		bool stop;
		if (h.type == PKT_Query || h.type == PKT_Parse) {
			if (sql_needs_watch(c, &h, avail) && watch_sql(c, s, &h, avail)) {
				/* A LISTEN waits for the pool's listener (notify.h), which resumes it. */
				c->prepared_wait = true;
				stream_pause(st);
				goto out;
			}
			avail = stream_avail(st); /* h may frame a refusal now (session_pinning) */
		}
		switch (h.type) {
		case PKT_Query:
			/* Only a DEALLOCATE of the client's own names concerns prepared.c. */
			if (prepared_client_any(&c->prepared) && relay_prepared(c, &h, &stop)) {
				if (stop)
					goto out;
				continue;
			}
			server_push_request(s, RQ_QUERY, NULL);
			break;
		case PKT_Sync:
			server_push_request(s, RQ_SYNC, NULL);
			c->ext_open = false;
			break;
		case PKT_FunctionCall:
			server_push_request(s, RQ_FUNCTION, NULL);
			break;
		case PKT_Parse:
		case PKT_Bind:
		case PKT_Describe:
		case PKT_Close:
			/*
			 * prepared.c relays a Bind, Describe or Close untouched when
			 * the client has no statement names, and a Parse of the
			 * unnamed statement always: skip asking it then.
			 */
			if ((prepared_client_any(&c->prepared) ||
			     (h.type == PKT_Parse && !parse_is_unnamed(st, &h))) &&
			    relay_prepared(c, &h, &stop)) {
				if (stop)
					goto out;
				continue;
			}
			server_push_request(s, (enum rq_kind)h.type, NULL);
			c->ext_open = true;
			break;
		case PKT_Execute:
			server_push_request(s, RQ_EXECUTE, NULL);
			c->ext_open = true;
			break;
		case PKT_Flush:
			c->ext_open = true;
			break;
		case PKT_CopyDone:
		case PKT_CopyFail:
			s->copy_in = false;
			break;
		case PKT_CopyData:
			break;
		case PKT_Terminate:
			stream_consume(st, MIN(avail, (size_t)h.len));
			client_close(c, "client sent Terminate");
			return;
		default:
			client_fail(c, SQLSTATE_PROTOCOL_VIOLATION,
				    "unexpected message type 0x%02x", h.type);
			return;
		}
		size_t n = MIN(avail, (size_t)h.len);
		stream_forward(&s->stream, st, n);
		c->pool->stats.total.bytes_received += n;
		c->pass_remaining = h.len - (uint32_t)n;
	}
out:
	if (c->server && stream_unsent(&c->server->stream) > STREAM_HIGH_WATER)
		stream_pause(st);
}

/* Acts on buffered client bytes according to the state. */
static void client_process(struct client *c)
{
	struct stream *st = &c->stream;
	switch (c->state) {
	case CLIENT_LOGIN:
		login_read(c);
		return;
	case CLIENT_IDLE: {
		if (c->admin_role) {
			admin_handle(c);
			return;
		}
		/* A bad header is refused before a server is linked only to be closed. */
		struct pkt_hdr h;
		if (frame_message(c, &h) != PKT_OK)
			return;
		uint8_t type = h.type;
		if (type == PKT_Terminate) {
			stream_consume(st, stream_avail(st));
			client_close(c, "client sent Terminate");
			return;
		}
		if (type == PKT_Query && prepared_client_any(&c->prepared)) {
			/* DEALLOCATE of its own statement names needs no server. */
			enum prepared_rc rc = prepared_client_deallocate(c, &h, 'I');
			if (rc == PREPARED_MORE)
				return;
			if (rc == PREPARED_DONE) {
				client_process(c);
				return;
			}
		}
		want_server(c);
		return;
	}
	case CLIENT_WAITING:
	case CLIENT_WAITING_LOGIN:
	case CLIENT_WAITING_REPLICATION:
		/* Keep reading to notice a disconnect, but bound what we hold. */
		if (stream_avail(st) >= BUF_SIZE / 2)
			stream_pause(st);
		return;
	case CLIENT_ACTIVE:
		relay(c);
		return;
	case CLIENT_CLOSED:
		return;
	}
}

void client_linked(struct client *c)
{
	stream_resume(&c->stream);
	client_process(c);
}

void client_unlinked(struct client *c)
{
	client_set_state(c, CLIENT_IDLE);
	c->ext_open = false;
	c->pass_remaining = 0;
	if (c->prepared_wait) {
		c->prepared_wait = false;
		stream_resume(&c->stream);
	}
	/*
	 * What the client sent meanwhile runs in the check phase, not here: the
	 * caller is its server's read callback (or the client's own relay), and
	 * the client's next request could otherwise take a server, even the same
	 * one, before the caller has finished with it.
	 */
	if (!c->released_queued) {
		c->released_queued = true;
		TAILQ_INSERT_TAIL(&c->w->released, c, released_link);
	}
	if (c->listens)
		notify_at_rest(c); /* between transactions: what its channels heard meanwhile */
}

void client_run_released(struct worker *w)
{
	struct client *c;
	while ((c = TAILQ_FIRST(&w->released)) != NULL) {
		TAILQ_REMOVE(&w->released, c, released_link);
		c->released_queued = false;
		/*
		 * Most released clients sent nothing meanwhile: an IDLE client
		 * with no input has nothing to process (the console's IDLE step
		 * runs without input, but a console is never linked).
		 */
		if (c->state == CLIENT_IDLE && !c->admin_role && stream_avail(&c->stream) == 0)
			continue;
		client_process(c);
	}
}

void client_prepared_resume(struct client *c)
{
	if (!c->prepared_wait)
		return;
	c->prepared_wait = false;
	stream_resume(&c->stream);
	client_process(c);
}

static void on_read(struct stream *st)
{
	struct client *c = container_of(st, struct client, stream);
	client_process(c);
}

static void on_error(struct stream *st, int err)
{
	struct client *c = container_of(st, struct client, stream);
	if (err == UV_EOF)
		client_close(c, "client closed the connection");
	else
		client_close(c, uv_strerror(err));
}

static void on_drain(struct stream *st)
{
	/* The client took what its server sent: let the server send more. */
	struct client *c = container_of(st, struct client, stream);
	if (c->server)
		stream_resume(&c->server->stream);
}

/*
 * A login gets this long before a newcomer may take its place at
 * max_client_conn: real clients authenticate in milliseconds.
 */
#define LOGIN_EVICT_AFTER_MS 1000

/*
 * max_client_conn is reached: makes room for newcomer by closing the oldest
 * connection that has still not authenticated after LOGIN_EVICT_AFTER_MS.
 * So sockets that connect and stay silent (or stall inside authentication)
 * cannot keep real clients out until client_login_timeout: each newcomer
 * displaces one of them. Logged-in clients are never displaced. The scan is
 * from the oldest connection and runs only at the limit. false: none to close.
 */
static bool evict_stalled_login(struct worker *w, struct client *newcomer)
{
	uint64_t now = uv_now(w->loop);
	struct client *c;
	TAILQ_FOREACH(c, &w->clients, link) {
		if (c == newcomer || now - c->connect_time < LOGIN_EVICT_AFTER_MS)
			break; /* accept order: every later one is younger */
		if (c->state != CLIENT_LOGIN)
			continue;
		w->stats_logins_evicted++;
		client_fail(c, SQLSTATE_TOO_MANY_CONNECTIONS,
			    "no more connections allowed (max_client_conn): closing a connection "
			    "that had not logged in after %llu ms",
			    (unsigned long long)(now - c->connect_time));
		return true;
	}
	return false;
}

static const struct stream_ops client_stream_ops = {
	.read = on_read,
	.error = on_error,
	.drain = on_drain,
	.close = on_stream_closed,
};

void client_accept(struct worker *w, int fd, bool is_unix, const struct sockaddr *peer)
{
	struct client *c = xcalloc(1, sizeof(*c));
	c->w = w; /* state: CLIENT_LOGIN is 0, as calloc leaves it */
	c->login = xcalloc(1, sizeof(*c->login));
	param_set_init(&c->params);
	if (stream_init(&w->io, &c->stream, is_unix, &client_stream_ops) != 0) {
		close(fd);
		free(c->login);
		free(c);
		return;
	}
	c->id = ledger_next_id(w->ledger);
	c->connect_time = c->state_since = uv_now(w->loop);
	TAILQ_INSERT_TAIL(&w->clients, c, link);
	w->client_count++;
	int total = __atomic_add_fetch(&w->ledger->clients, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&w->clients_now, 1, __ATOMIC_RELAXED);
	if (stream_adopt(&c->stream, fd) != 0) {
		stream_addr_set(&c->addr, NULL);
		client_close(c, "accept failed");
		return;
	}
	stream_addr_set(&c->addr, peer);
	cancel_register(w, c);
	/*
	 * Over the limit, the client is refused only once its StartupMessage has
	 * arrived: libpq first sends SSLRequest and cannot take an error in reply,
	 * and a CancelRequest must still get through. PostgreSQL does the same.
	 */
	if (total > w->cfg->max_client_conn) {
		c->settling = true;
		if (worker_settle(w, c))
			return; /* client_settled goes on */
		c->settling = false;
		c->over_limit = !evict_stalled_login(w, c);
	}
	stream_read_start(&c->stream);
	stream_read_now(&c->stream);
}

void client_settled(struct client *c)
{
	struct worker *w = c->w;
	/* Closed by a client_settled before it in the same round (evicted): freed later, not yet. */
	if (!c->settling)
		return;
	c->settling = false;
	if (__atomic_load_n(&w->ledger->clients, __ATOMIC_RELAXED) > w->cfg->max_client_conn)
		c->over_limit = !evict_stalled_login(w, c);
	stream_read_start(&c->stream);
	stream_read_now(&c->stream);
}

/* ---- online restart (takeover.h) ------------------------------------------------ */

bool client_may_move(const struct client *c)
{
	/*
	 * TLS state is OpenSSL's; a replication client's server is its own for
	 * life; a session's server goes along, so it must be in the clear too.
	 * In transaction pooling, a pinned client's session and a listening
	 * client's channels (notify.h) are this process's and this worker's.
	 */
	return c->state != CLIENT_CLOSED && !c->stream.tls && !c->stream.closing &&
	       !c->replication && !(c->server && c->server->stream.tls) && !c->listens &&
	       !(c->server && c->server->pins);
}

/* Session pooling: linked for life, so the client goes with its server, both idle. */
static bool idle_in_session(const struct client *c)
{
	return c->state == CLIENT_ACTIVE && c->server &&
	       pool_mode_of(c->pool) == POOL_MODE_SESSION && !c->pass_remaining && !c->ext_open &&
	       !c->prepared_wait && server_can_hand_over(c->server);
}

bool client_can_hand_over(const struct client *c)
{
	/*
	 * Between transactions: no server (a WAITING client's request is still
	 * in its read buffer, and goes along), or idle in its session with its
	 * server; nothing queued to it. A console client only when no command
	 * of its waits.
	 */
	bool between = c->state == CLIENT_IDLE || (c->state == CLIENT_WAITING && !c->admin_role) ||
		       idle_in_session(c);
	return between && client_may_move(c) && !c->admin_wait && stream_unsent(&c->stream) == 0 &&
	       stream_fd(&c->stream) >= 0;
}

struct export
{
	struct handover_prepared *items;
	uint32_t n, cap;
};

static void export_prepared(void *arg, const char *name, const uint8_t *text, uint32_t len)
{
	struct export *e = arg;
	if (e->n == e->cap) {
		e->cap = e->cap ? 2 * e->cap : 8;
		e->items = xrealloc(e->items, e->cap * sizeof(*e->items));
	}
	e->items[e->n++] = (struct handover_prepared){ name, text, len };
}

void client_hand_over_record(const struct client *c, struct buf_out *out)
{
	struct worker *w = c->w;
	struct handover_client h = {
		.id = c->id,
		.connect_time_ms = worker_wall_ms_of(w, c->connect_time),
		.is_unix = c->stream.is_pipe,
		.admin_role = c->admin_role,
		.addr_family = c->addr.family,
		.addr_port = c->addr.port,
		.peer_pid = c->peer_pid,
		.cancel_pid = c->cancel_pid,
		.cancel_key = c->cancel_key,
		.db = c->db_name,
		.user = c->user_name,
		.input = stream_avail(&c->stream) ? stream_data(&c->stream) : NULL,
		.input_len = (uint32_t)stream_avail(&c->stream),
	};
	memcpy(h.addr_ip, c->addr.ip, sizeof(h.addr_ip));
	const struct pool *p = c->pool;
	if (p && !p->is_admin) {
		h.have_scram_keys = p->have_scram_keys;
		memcpy(h.scram_client_key, p->scram_client_key, 32);
		memcpy(h.scram_server_key, p->scram_server_key, 32);
		h.password = p->client_password;
	}
	struct handover_param params[HANDOVER_MAX_PARAMS];
	for (int i = 0; i < c->params.n && i < HANDOVER_MAX_PARAMS; i++)
		params[h.n_params++] = (struct handover_param){ c->params.items[i].name,
								c->params.items[i].value };
	h.params = params;
	struct export e = { 0 };
	prepared_client_each(&c->prepared, export_prepared, &e);
	h.prepared = e.items;
	h.n_prepared = e.n;
	struct handover_param server_params[HANDOVER_MAX_PARAMS];
	const struct server *s = c->server;
	if (s) {
		h.linked = true;
		h.server = (struct handover_server){
			.id = s->id,
			.connect_time_ms = worker_wall_ms_of(w, s->connect_time),
			.be_pid = s->be_pid,
			.be_key = s->be_key,
			.host_index = s->host_index,
			.port = s->port,
			.addr = s->addr,
			.host = s->host,
			.params = server_params,
		};
		for (int i = 0; i < s->params.n && i < HANDOVER_MAX_PARAMS; i++)
			server_params[h.server.n_params++] = (struct handover_param){
				s->params.items[i].name, s->params.items[i].value
			};
	}
	handover_client_encode(out, &h);
	free(e.items);
}

void client_handed_over(struct client *c)
{
	if (c->state == CLIENT_CLOSED)
		return;
	clog(LOG_LEVEL_DEBUG, c, "handed over to the new process");
	/* Whatever was read is in the record: nothing is left for the close to see. */
	if (c->stream.rbuf)
		stream_consume(&c->stream, stream_avail(&c->stream));
	/* Its session's server went with it: neither reset nor released here. */
	if (c->server)
		server_handed_over(c->server);
	client_end(c);
}

/* A handed-over client's pool, with the credentials the old process had for it; NULL: failed. */
static struct pool *adopt_pool(struct client *c, const struct handover_client *h)
{
	struct worker *w = c->w;
	if (c->admin_role) {
		if (!client_admit(c, ADMIN_DB, 0, NULL, true))
			return NULL;
		return admin_pool(w);
	}
	const struct config_database *db = config_find_database(w->cfg, c->db_name);
	if (!db) {
		client_fail(c, SQLSTATE_INVALID_CATALOG_NAME,
			    "no such database: %s (not in the configuration of the new process)",
			    c->db_name);
		return NULL;
	}
	/* Counted as at login, never refused: it was let in already. */
	if (!client_admit(c, c->db_name, 0, c->user_name, true))
		return NULL;
	struct pool *p = pool_get(w, c->db_name, c->user_name, db);
	if (strcmp(c->user_name, p->user_name) != 0)
		return p;
	if (h->have_scram_keys && !p->have_scram_keys) {
		memcpy(p->scram_client_key, h->scram_client_key, 32);
		memcpy(p->scram_server_key, h->scram_server_key, 32);
		p->have_scram_keys = true;
	}
	if (h->password && !p->client_password)
		p->client_password = xstrdup(h->password);
	return p;
}

void client_adopt(struct worker *w, int fd, const struct handover_client *h, int server_fd)
{
	struct client *c = xcalloc(1, sizeof(*c));
	c->w = w;
	param_set_init(&c->params);
	if (stream_init(&w->io, &c->stream, h->is_unix, &client_stream_ops) != 0) {
		close(fd);
		if (server_fd >= 0)
			close(server_fd);
		free(c);
		return;
	}
	c->id = h->id ? h->id : ledger_next_id(w->ledger);
	/* Its age goes on from the old process's connect time (SHOW CLIENTS, the logs). */
	c->connect_time = worker_now_of_wall_ms(w, h->connect_time_ms);
	c->state_since = c->request_time = uv_now(w->loop);
	c->addr = (struct stream_addr){ .family = h->addr_family, .port = h->addr_port };
	memcpy(c->addr.ip, h->addr_ip, sizeof(c->addr.ip));
	c->peer_pid = h->peer_pid;
	c->admin_role = h->admin_role;
	set_names(c, h->db, h->user);
	TAILQ_INSERT_TAIL(&w->clients, c, link);
	w->client_count++;
	__atomic_add_fetch(&w->clients_now, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&w->ledger->clients, 1, __ATOMIC_RELAXED);
	if (stream_adopt(&c->stream, fd) != 0) {
		if (server_fd >= 0)
			close(server_fd);
		client_close(c, "taking over the socket failed");
		return;
	}
	c->cancel_pid = h->cancel_pid;
	c->cancel_key = h->cancel_key;
	if (!cancel_register_key(w, c))
		clog(LOG_LEVEL_WARNING, c,
		     "its cancel key is in use here already: it got a new one, so a cancel "
		     "request with the old one will not reach it");
	for (uint32_t i = 0; i < h->n_params; i++)
		param_set_put(&c->params, h->params[i].name, h->params[i].value);
	for (uint32_t i = 0; i < h->n_prepared; i++) {
		const struct handover_prepared *hp = &h->prepared[i];
		if (!prepared_client_adopt(w, &c->prepared, hp->name, hp->text, hp->text_len)) {
			if (server_fd >= 0)
				close(server_fd);
			client_fail(c, SQLSTATE_PROTOCOL_VIOLATION,
				    "the old process handed over a malformed prepared statement");
			return;
		}
	}
	struct pool *p = adopt_pool(c, h);
	if (!p) {
		if (server_fd >= 0)
			close(server_fd);
		return;
	}
	c->pool = p;
	clog(LOG_LEVEL_DEBUG, c, "taken over from the old process");
	client_set_state(c, CLIENT_IDLE);
	stream_preload(&c->stream, h->input, h->input_len);
	stream_read_start(&c->stream);
	if (h->linked) {
		/* Its session: the server it was linked to, linked to it again. */
		struct server *s = server_fd >= 0
					   ? server_adopt(p, server_fd, &h->server, h->server.id)
					   : NULL;
		if (!s) {
			client_fail(c, SQLSTATE_CONNECTION_FAILURE,
				    "the server of this session could not be taken over");
			return;
		}
		pool_link_adopted(p, c, s);
		return;
	}
	if (server_fd >= 0)
		close(server_fd);
	if (stream_avail(&c->stream))
		client_process(c);
}

/*
 * As PgBouncer: the global query_timeout bounds a wait for a server too (a
 * query that never got one has run that long, as far as its client knows);
 * query_wait_timeout comes from [users], [databases] or the global value.
 * Waiting for the pool's first login is such a wait.
 */
static void wait_timed_out(struct client *c, uint64_t age)
{
	const struct config *cfg = c->w->cfg;
	int64_t limit = config_query_wait_timeout(cfg, config_find_user(cfg, c->user_name),
						  c->pool->db);
	if (cfg->query_timeout && age >= (uint64_t)cfg->query_timeout) {
		c->pool->stats.timeout_count++;
		client_fail(c, SQLSTATE_QUERY_CANCELED, "query_timeout");
	} else if (limit && age >= (uint64_t)limit) {
		c->pool->stats.timeout_count++;
		client_fail(c, SQLSTATE_PROTOCOL_VIOLATION, "query_wait_timeout");
	}
}

void client_tick(struct client *c, uint64_t now)
{
	const struct config *cfg = c->w->cfg;
	uint64_t age = now - c->state_since;
	int64_t limit;
	switch (c->state) {
	case CLIENT_LOGIN:
	case CLIENT_WAITING_LOGIN:
		if (cfg->client_login_timeout &&
		    now - c->connect_time >= (uint64_t)cfg->client_login_timeout)
			client_fail(c, SQLSTATE_PROTOCOL_VIOLATION, "client_login_timeout");
		else if (c->state == CLIENT_WAITING_LOGIN)
			wait_timed_out(c, age);
		break;
	case CLIENT_WAITING:
	case CLIENT_WAITING_REPLICATION: /* greeted, then waiting: a waiter to PgBouncer too */
		wait_timed_out(c, age);
		break;
	case CLIENT_IDLE:
		limit = config_client_idle_timeout(cfg, config_find_user(cfg, c->user_name));
		if (limit && age >= (uint64_t)limit)
			client_fail(c, SQLSTATE_PROTOCOL_VIOLATION, "client_idle_timeout");
		break;
	default:
		break;
	}
}

/* ---- reading client state (admin console, metrics) ----------------------------- */

struct client *client_next(struct worker *w, struct client *c)
{
	return c ? TAILQ_NEXT(c, link) : TAILQ_FIRST(&w->clients);
}

struct client *client_find(struct worker *w, uint64_t id)
{
	struct client *c;
	TAILQ_FOREACH(c, &w->clients, link)
		if (c->id == id)
			return c;
	return NULL;
}

/* Splits "host:port" (our peer-name format) into its parts. */
static void split_addr(const char *addr, char *host, size_t len, int *port)
{
	const char *colon = strrchr(addr, ':');
	if (!colon) {
		snprintf(host, len, "%s", addr);
		*port = 0;
		return;
	}
	snprintf(host, len, "%.*s", (int)(colon - addr), addr);
	*port = atoi(colon + 1);
}

static uint64_t wall_of(const struct worker *w, uint64_t at_ms)
{
	uint64_t now_ms = uv_now(w->loop);
	uint64_t ago = now_ms > at_ms ? (now_ms - at_ms) / 1000 : 0;
	return (uint64_t)time(NULL) - ago;
}

void client_info(const struct client *c, struct conn_info *out)
{
	memset(out, 0, sizeof(*out));
	out->type = 'C';
	out->user = c->user_name;
	out->database = c->db_name;
	switch (c->state) {
	case CLIENT_ACTIVE:
		out->state_name = "active";
		out->socket_state = "cl_active";
		break;
	case CLIENT_IDLE:
		out->state_name = "idle";
		out->socket_state = "cl_active";
		break;
	case CLIENT_WAITING:
	case CLIENT_WAITING_LOGIN:
	case CLIENT_WAITING_REPLICATION:
		out->state_name = "waiting";
		out->socket_state = "cl_waiting";
		break;
	default:
		out->state_name = "login";
		out->socket_state = "cl_login";
		break;
	}
	if (c->stream.is_pipe) {
		snprintf(out->addr, sizeof(out->addr), "unix");
		out->port = c->w->cfg->listen_port;
		snprintf(out->local_addr, sizeof(out->local_addr), "unix");
		out->local_port = c->w->cfg->listen_port;
	} else {
		char text[STREAM_ADDR_TEXT_MAX];
		split_addr(client_addr_text(c, text, sizeof(text)), out->addr, sizeof(out->addr),
			   &out->port);
		(void)stream_address(&c->stream, true, out->local_addr, sizeof(out->local_addr),
				     &out->local_port);
	}
	out->connect_time = wall_of(c->w, c->connect_time);
	out->request_time = wall_of(c->w, c->request_time ? c->request_time : c->connect_time);
	if (c->state == CLIENT_WAITING || c->state == CLIENT_WAITING_REPLICATION)
		out->wait_us = uv_hrtime() / 1000 - c->wait_start_us;
	out->ptr = c;
	out->link = c->server;
	out->remote_pid = c->peer_pid;
	out->application_name = c->pool ? pool_param_of(c->pool, c, "application_name")
					: param_set_get(&c->params, "application_name");
	stream_tls_describe(&c->stream, out->tls, sizeof(out->tls));
	out->id = c->id;
	out->recv_avail = (uint32_t)stream_avail(&c->stream);
	out->pkt_remain = c->pass_remaining;
	out->send_pending = (uint32_t)stream_unsent(&c->stream);
	out->prepared_statements = prepared_client_count(&c->prepared);
	out->replication = c->replication;
}
