/*
 * authq.c - auth_query look-ups with libpq on the loop (see authq.h).
 *
 * Three kinds of object:
 *   struct aq_conn    one libpq connection to a target, in aq->conns by its
 *                     key; it runs the look-ups queued on it in order.
 *   struct aq_lookup  one query for one user, in aq->inflight by its key
 *                     until answered; the owners waiting for it hang off it.
 *   struct aq_cached  a secret found, in aq->cache by the look-up's key.
 *
 * A connection goes RESOLVING (names to addresses on the thread pool) ->
 * CONNECTING (PQconnectPoll) -> READY <-> QUERYING, or to its end: closing
 * it answers every look-up queued on it with AUTHQ_CONNECT_FAILED first.
 * The uv_poll handle watches PQsocket; libpq may replace that socket while
 * connecting (another host, a retry without TLS), so each connect step
 * closes the handle and opens one for the socket libpq has now.
 */
#include "sluice/authq.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <uthash.h>

#include "sluice/log.h"

/* Far more users than a cache for one process's logins needs; past it, nothing more is kept. */
#define CACHE_MAX 10000

#ifndef TAILQ_FOREACH_SAFE
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)                                                 \
	for ((var) = TAILQ_FIRST(head); (var) && ((tvar) = TAILQ_NEXT(var, field), 1);             \
	     (var) = (tvar))
#endif

enum aq_state {
	AQ_RESOLVING,
	AQ_CONNECTING,
	AQ_READY,
	AQ_QUERYING,
};

struct aq_lookup;
struct aq_resolve;

struct aq_conn {
	struct authq *aq;
	char *key; /* the target: hosts, database, user, password */
	UT_hash_handle hh; /* in aq->conns while new look-ups may use it */
	bool retired; /* made with settings since replaced: out of aq->conns, ends when done */
	bool kicked; /* look-ups were queued: start or send from the idle callback */
	TAILQ_ENTRY(aq_conn) link; /* aq->all */
	enum aq_state state;
	PGconn *pg;
	uv_poll_t *poll; /* freed by its close callback; NULL when not watching */
	int n_hosts;
	char **hosts; /* names or socket directories; NULL for libpq's default directory */
	char **addrs; /* numeric addresses resolved, or NULL where none is needed */
	int *ports;
	int resolving; /* index into hosts of the name being resolved */
	struct aq_resolve *gai; /* in flight on the thread pool, or NULL */
	char *dbname, *user, *password;
	uint64_t deadline; /* of the connect or the query under way; 0 none */
	uint64_t idle_since;
	uint64_t answered; /* queries answered on it so far */
	TAILQ_HEAD(, aq_lookup) queue; /* the first is in flight while QUERYING */
	/* The result being read: what the answer will be once libpq returns NULL. */
	struct authq_answer pending;
	char *pending_secret, *pending_error;
	bool have_row;
};

struct authq_wait {
	struct aq_lookup *lookup; /* NULL once answered */
	authq_cb cb;
	void *owner;
	TAILQ_ENTRY(authq_wait) link;
};

struct aq_lookup {
	char *key; /* conn key, query, user: also the cache key */
	UT_hash_handle hh;
	char *user, *query;
	bool retried; /* moved once to a new connection after its first one broke */
	struct aq_conn *conn;
	TAILQ_ENTRY(aq_lookup) link;
	TAILQ_HEAD(, authq_wait) waiters;
};

struct aq_cached {
	char *key;
	char *secret;
	uint64_t expires;
	UT_hash_handle hh;
};

/* A name resolution on the thread pool; outlives its connection if that closes first. */
struct aq_resolve {
	uv_getaddrinfo_t req;
	struct aq_conn *conn; /* NULL once the connection is gone */
};

struct authq {
	uv_loop_t *loop;
	/*
	 * Runs what authq_lookup() queued, once the loop is back at the top:
	 * a look-up that fails at once must not call its owner from inside
	 * authq_lookup(), and an owner's callback must not close a connection
	 * that the code answering it is still using.
	 */
	uv_idle_t kick;
	struct aq_conn *conns; /* by key, the ones new look-ups use */
	TAILQ_HEAD(, aq_conn) all; /* every connection, retired ones too */
	struct aq_lookup *inflight;
	struct aq_cached *cache;
	unsigned cached;
	/* The settings of authq_configure */
	enum sslmode sslmode;
	char *ca_file, *cert_file, *key_file;
	uint64_t connect_timeout, idle_timeout, cache_ttl;
	struct authq_stats stats;
};

static void str_free(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

/* Keys are strings joined with a 0x1f separator; their parts never hold one usefully. */
static void key_add(char **key, const char *part)
{
	size_t old = *key ? strlen(*key) : 0, n = strlen(part ? part : "");
	*key = xrealloc(*key, old + n + 2);
	memcpy(*key + old, part ? part : "", n);
	(*key)[old + n] = '\x1f';
	(*key)[old + n + 1] = '\0';
}

static char *conn_key(const struct authq_target *t)
{
	char *key = NULL, port[16];
	for (int i = 0; i < t->n_hosts; i++) {
		snprintf(port, sizeof(port), "%d", t->hosts[i].port);
		key_add(&key, t->hosts[i].host ? t->hosts[i].host : "");
		key_add(&key, port);
	}
	key_add(&key, t->dbname);
	key_add(&key, t->user);
	key_add(&key, t->password ? t->password : "\x1e"); /* none differs from "" */
	return key;
}

/* ---- cache ---------------------------------------------------------------------- */

static void cached_free(struct authq *aq, struct aq_cached *e)
{
	HASH_DEL(aq->cache, e);
	aq->cached--;
	str_free(e->key);
	str_free(e->secret);
	free(e);
}

static void cache_put(struct authq *aq, const char *key, const char *secret)
{
	if (aq->cache_ttl == 0 || !secret)
		return;
	struct aq_cached *e;
	HASH_FIND_STR(aq->cache, key, e);
	if (e)
		cached_free(aq, e);
	if (aq->cached >= CACHE_MAX)
		return;
	e = xcalloc(1, sizeof(*e));
	e->key = xstrdup(key);
	e->secret = xstrdup(secret);
	e->expires = uv_now(aq->loop) + aq->cache_ttl;
	HASH_ADD_KEYPTR(hh, aq->cache, e->key, strlen(e->key), e);
	aq->cached++;
}

void authq_forget(struct authq *aq, const char *key)
{
	struct aq_cached *e;
	HASH_FIND_STR(aq->cache, key, e);
	if (e)
		cached_free(aq, e);
}

/* ---- answering ------------------------------------------------------------------ */

/*
 * Answers every owner of l and frees it. The callbacks may start look-ups
 * and cancel waits, so l leaves the in-flight table and its queue first and
 * each wait is detached before its owner hears.
 */
static void answer(struct authq *aq, struct aq_lookup *l, const struct authq_answer *a)
{
	HASH_DEL(aq->inflight, l);
	if (l->conn)
		TAILQ_REMOVE(&l->conn->queue, l, link);
	aq->stats.queries[a->status]++;
	if (a->status == AUTHQ_FOUND)
		cache_put(aq, l->key, a->secret);
	struct authq_answer copy = *a;
	copy.key = l->key;
	struct authq_wait *w;
	while ((w = TAILQ_FIRST(&l->waiters)) != NULL) {
		TAILQ_REMOVE(&l->waiters, w, link);
		w->lookup = NULL;
		w->cb(w->owner, &copy);
		free(w);
	}
	str_free(l->key);
	free(l->user);
	free(l->query);
	free(l);
}

void authq_cancel(struct authq_wait *w)
{
	if (!w)
		return;
	if (w->lookup)
		TAILQ_REMOVE(&w->lookup->waiters, w, link);
	free(w);
}

/* ---- connections ---------------------------------------------------------------- */

/*
 * The one write of a connection's state: RESOLVING -> CONNECTING -> READY
 * <-> QUERYING (authq.c's header comment); an end goes through conn_close.
 */
static void conn_set_state(struct aq_conn *cn, enum aq_state st)
{
	static const char *const names[] = { "resolving", "connecting", "ready", "querying" };
	log_debug("auth_query connection to %s@%s: %s -> %s", cn->user, cn->dbname,
		  names[cn->state], names[st]);
	cn->state = st;
}

static void on_poll_closed(uv_handle_t *h)
{
	free(h);
}

static void unwatch(struct aq_conn *cn)
{
	if (cn->poll) {
		uv_poll_stop(cn->poll);
		uv_close((uv_handle_t *)cn->poll, on_poll_closed);
		cn->poll = NULL;
	}
}

static void on_poll(uv_poll_t *h, int status, int events);
static void on_kick(uv_idle_t *h);

/* Watches libpq's socket for events (UV_READABLE/UV_WRITABLE). false: no socket. */
static bool watch(struct aq_conn *cn, int events)
{
	int fd = PQsocket(cn->pg);
	if (fd < 0)
		return false;
	if (!cn->poll) {
		cn->poll = xcalloc(1, sizeof(*cn->poll));
		if (uv_poll_init_socket(cn->aq->loop, cn->poll, fd) != 0) {
			free(cn->poll);
			cn->poll = NULL;
			return false;
		}
		cn->poll->data = cn;
	}
	return uv_poll_start(cn->poll, events, on_poll) == 0;
}

static void conn_free(struct aq_conn *cn)
{
	unwatch(cn);
	if (cn->pg)
		PQfinish(cn->pg);
	if (cn->gai)
		cn->gai->conn = NULL;
	for (int i = 0; i < cn->n_hosts; i++) {
		free(cn->hosts[i]);
		free(cn->addrs[i]);
	}
	free(cn->hosts);
	free(cn->addrs);
	free(cn->ports);
	free(cn->dbname);
	free(cn->user);
	str_free(cn->password);
	str_free(cn->pending_secret);
	free(cn->pending_error);
	str_free(cn->key);
	free(cn);
}

/* New look-ups no longer use cn; it ends once those queued on it are answered. */
static void retire(struct aq_conn *cn)
{
	if (!cn->retired)
		HASH_DEL(cn->aq->conns, cn);
	cn->retired = true;
}

/*
 * Ends cn: every look-up still queued on it hears status with why. It leaves
 * the table first, so a look-up started from a callback makes a new one.
 */
static void conn_close(struct aq_conn *cn, enum authq_status status, const char *why)
{
	struct authq *aq = cn->aq;
	retire(cn);
	TAILQ_REMOVE(&aq->all, cn, link);
	unwatch(cn);
	struct aq_lookup *l;
	struct authq_answer a = { .status = status, .error = why };
	/*
	 * PostgreSQL refused the login: libpq's line (verbose) reads "...
	 * FATAL:  3D000: database "x" does not exist"; the owner may pass that
	 * on as PgBouncer passes a failed server login's error.
	 */
	char sqlstate[6] = "";
	const char *fatal = strstr(why, "FATAL:  ");
	if (fatal) {
		fatal += strlen("FATAL:  ");
		if (strlen(fatal) > 7 && fatal[5] == ':' && fatal[6] == ' ') {
			memcpy(sqlstate, fatal, 5);
			fatal += 7;
		}
		a.server_message = fatal;
		a.sqlstate = sqlstate[0] ? sqlstate : NULL;
	}
	while ((l = TAILQ_FIRST(&cn->queue)) != NULL) {
		answer(aq, l, &a);
	}
	conn_free(cn);
}

static struct aq_conn *conn_new(struct authq *aq, const struct authq_target *t, char *key);

/*
 * cn broke while a query was sent or read. A connection that answered
 * before may have been closed by the server in between (a restart,
 * idle_session_timeout) without it showing yet, so its look-ups get one more
 * try on a new connection before they fail.
 */
static void conn_lost(struct aq_conn *cn, const char *why)
{
	struct aq_conn *fresh = NULL;
	struct aq_lookup *l, *next;
	for (l = TAILQ_FIRST(&cn->queue); cn->answered > 0 && l; l = next) {
		next = TAILQ_NEXT(l, link);
		if (l->retried)
			continue;
		if (!fresh) {
			struct config_host *hosts = xcalloc((size_t)cn->n_hosts, sizeof(*hosts));
			for (int i = 0; i < cn->n_hosts; i++)
				hosts[i] = (struct config_host){ cn->hosts[i], cn->ports[i] };
			struct authq_target t = { hosts,    cn->n_hosts,  cn->dbname,
						  cn->user, cn->password, NULL };
			retire(cn);
			fresh = conn_new(cn->aq, &t, xstrdup(cn->key));
			free(hosts);
		}
		TAILQ_REMOVE(&cn->queue, l, link);
		l->retried = true;
		l->conn = fresh;
		TAILQ_INSERT_TAIL(&fresh->queue, l, link);
	}
	if (fresh) {
		log_debug("auth_query connection lost (%s): trying again on a new one", why);
		fresh->kicked = true;
		uv_idle_start(&cn->aq->kick, on_kick);
	}
	conn_close(cn, AUTHQ_CONNECT_FAILED, why);
}

/* libpq's message, one line, for the log. */
static const char *pg_error(PGconn *pg, char *buf, size_t len)
{
	snprintf(buf, len, "%s", pg ? PQerrorMessage(pg) : "out of memory");
	buf[strcspn(buf, "\n")] = '\0';
	return buf;
}

static void notice_to_log(void *arg, const char *message)
{
	(void)arg;
	log_debug("auth_query connection: %.*s", (int)strcspn(message, "\n"), message);
}

static void send_next(struct aq_conn *cn);

/* Hands the (resolved) target to libpq and takes the first connect step. */
static void start_connect(struct aq_conn *cn)
{
	struct authq *aq = cn->aq;
	/* Comma lists, one entry per host; an empty hostaddr entry lets libpq use host. */
	char *host = NULL, *hostaddr = NULL, *port = NULL;
	size_t hl = 0, al = 0, pl = 0;
	FILE *hf = open_memstream(&host, &hl), *af = open_memstream(&hostaddr, &al),
	     *pf = open_memstream(&port, &pl);
	for (int i = 0; i < cn->n_hosts; i++) {
		const char *sep = i ? "," : "";
		fprintf(hf, "%s%s", sep, cn->hosts[i] ? cn->hosts[i] : CONFIG_DEFAULT_SOCKET_DIR);
		fprintf(af, "%s%s", sep, cn->addrs[i] ? cn->addrs[i] : "");
		fprintf(pf, "%s%d", sep, cn->ports[i]);
	}
	fclose(hf);
	fclose(af);
	fclose(pf);
	bool any_addr = false;
	for (int i = 0; i < cn->n_hosts; i++)
		any_addr = any_addr || cn->addrs[i];
	const char *keys[16], *vals[16];
	int n = 0;
#define KV(k, v)                                                                                   \
	do {                                                                                       \
		keys[n] = (k);                                                                     \
		vals[n++] = (v);                                                                   \
	} while (0)
	KV("host", host);
	if (any_addr)
		KV("hostaddr", hostaddr);
	KV("port", port);
	KV("dbname", cn->dbname);
	KV("user", cn->user);
	if (cn->password)
		KV("password", cn->password);
	KV("sslmode", config_sslmode_name(aq->sslmode));
	if (aq->ca_file)
		KV("sslrootcert", aq->ca_file);
	if (aq->cert_file)
		KV("sslcert", aq->cert_file);
	if (aq->key_file)
		KV("sslkey", aq->key_file);
	/* No Kerberos probe (it may block); visible in pg_stat_activity for what it is. */
	KV("gssencmode", "disable");
	KV("application_name", "sluice auth_query");
	KV(NULL, NULL);
#undef KV
	cn->pg = PQconnectStartParams(keys, vals, 0);
	free(host);
	free(hostaddr);
	free(port);
	char err[256];
	if (!cn->pg || PQstatus(cn->pg) == CONNECTION_BAD) {
		conn_close(cn, AUTHQ_CONNECT_FAILED, pg_error(cn->pg, err, sizeof(err)));
		return;
	}
	PQsetNoticeProcessor(cn->pg, notice_to_log, NULL);
	/* So that a refused login's message carries its SQLSTATE (conn_close). */
	PQsetErrorVerbosity(cn->pg, PQERRORS_VERBOSE);
	conn_set_state(cn, AQ_CONNECTING);
	/* libpq's contract: start as if PQconnectPoll had asked to write. */
	if (!watch(cn, UV_WRITABLE))
		conn_close(cn, AUTHQ_CONNECT_FAILED, pg_error(cn->pg, err, sizeof(err)));
}

static void resolve_next(struct aq_conn *cn);

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct aq_resolve *r = container_of(req, struct aq_resolve, req);
	struct aq_conn *cn = r->conn;
	free(r);
	if (!cn) {
		uv_freeaddrinfo(res);
		return;
	}
	cn->gai = NULL;
	char addr[64] = "";
	if (status == 0 && res)
		uv_ip_name(res->ai_addr, addr, sizeof(addr));
	uv_freeaddrinfo(res);
	if (!addr[0]) {
		char why[256];
		snprintf(why, sizeof(why), "could not resolve \"%s\": %s", cn->hosts[cn->resolving],
			 status ? uv_strerror(status) : "no address");
		conn_close(cn, AUTHQ_CONNECT_FAILED, why);
		return;
	}
	cn->addrs[cn->resolving++] = xstrdup(addr);
	resolve_next(cn);
}

/* Whether libpq can use host without a name look-up: a socket directory or a numeric address. */
static bool needs_resolving(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];
	return host && host[0] != '/' && inet_pton(AF_INET, host, buf) != 1 &&
	       inet_pton(AF_INET6, host, buf) != 1;
}

/* Resolves the next host name on the thread pool; with none left, connects. */
static void resolve_next(struct aq_conn *cn)
{
	while (cn->resolving < cn->n_hosts && !needs_resolving(cn->hosts[cn->resolving]))
		cn->resolving++;
	if (cn->resolving == cn->n_hosts) {
		start_connect(cn);
		return;
	}
	struct aq_resolve *r = xcalloc(1, sizeof(*r));
	r->conn = cn;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	int rc = uv_getaddrinfo(cn->aq->loop, &r->req, on_resolved, cn->hosts[cn->resolving], NULL,
				&hints);
	if (rc != 0) {
		free(r);
		conn_close(cn, AUTHQ_CONNECT_FAILED, uv_strerror(rc));
		return;
	}
	cn->gai = r;
}

static struct aq_conn *conn_new(struct authq *aq, const struct authq_target *t, char *key)
{
	struct aq_conn *cn = xcalloc(1, sizeof(*cn));
	cn->aq = aq;
	cn->key = key;
	cn->n_hosts = t->n_hosts;
	cn->hosts = xcalloc((size_t)t->n_hosts, sizeof(char *));
	cn->addrs = xcalloc((size_t)t->n_hosts, sizeof(char *));
	cn->ports = xcalloc((size_t)t->n_hosts, sizeof(int));
	for (int i = 0; i < t->n_hosts; i++) {
		cn->hosts[i] = t->hosts[i].host ? xstrdup(t->hosts[i].host) : NULL;
		cn->ports[i] = t->hosts[i].port;
	}
	cn->dbname = xstrdup(t->dbname);
	cn->user = xstrdup(t->user);
	cn->password = t->password ? xstrdup(t->password) : NULL;
	TAILQ_INIT(&cn->queue);
	HASH_ADD_KEYPTR(hh, aq->conns, cn->key, strlen(cn->key), cn);
	TAILQ_INSERT_TAIL(&aq->all, cn, link);
	conn_set_state(cn, AQ_RESOLVING);
	cn->deadline = uv_now(aq->loop) + aq->connect_timeout;
	return cn;
}

/* ---- the query ------------------------------------------------------------------ */

/* Takes one result of the query into cn->pending. */
static void take_result(struct aq_conn *cn, PGresult *res)
{
	char buf[512];
	switch (PQresultStatus(res)) {
	case PGRES_TUPLES_OK:
		if (PQnfields(res) != 2) {
			snprintf(buf, sizeof(buf), "expected 2 columns from auth_query, not %d",
				 PQnfields(res));
			break;
		}
		if (PQntuples(res) == 0 || cn->have_row)
			return;
		if (PQgetisnull(res, 0, 0)) {
			snprintf(buf, sizeof(buf), "auth_query response contained null user name");
			break;
		}
		cn->have_row = true;
		if (!PQgetisnull(res, 0, 1))
			cn->pending_secret = xstrdup(PQgetvalue(res, 0, 1));
		return;
	case PGRES_COMMAND_OK:
		snprintf(buf, sizeof(buf),
			 "auth_query returned no rows description (not a query?)");
		break;
	default: {
		const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
		snprintf(buf, sizeof(buf), "error in auth_query: %s",
			 msg ? msg : PQresultErrorMessage(res));
		buf[strcspn(buf, "\n")] = '\0';
		break;
	}
	}
	if (!cn->pending_error)
		cn->pending_error = xstrdup(buf);
}

/* The query's results are all read: answer its look-up and go on with the next. */
static void query_done(struct aq_conn *cn)
{
	struct aq_lookup *l = TAILQ_FIRST(&cn->queue);
	struct authq_answer a = { 0 };
	if (cn->pending_error) {
		a.status = AUTHQ_QUERY_FAILED;
		a.error = cn->pending_error;
	} else if (cn->have_row) {
		a.status = AUTHQ_FOUND;
		a.secret = cn->pending_secret;
	} else {
		a.status = AUTHQ_NOT_FOUND;
	}
	char *secret = cn->pending_secret, *error = cn->pending_error;
	cn->pending_secret = cn->pending_error = NULL;
	cn->have_row = false;
	/*
	 * Still QUERYING while the owners hear: a look-up they start for this
	 * target only queues on cn, so cn cannot close under this call.
	 */
	answer(cn->aq, l, &a);
	str_free(secret);
	free(error);
	cn->answered++;
	conn_set_state(cn, AQ_READY);
	cn->deadline = 0;
	cn->idle_since = uv_now(cn->aq->loop);
	send_next(cn);
}

/* Reads what libpq has; a whole answer moves on to the next look-up. */
static void read_results(struct aq_conn *cn)
{
	char err[256];
	if (!PQconsumeInput(cn->pg)) {
		conn_lost(cn, pg_error(cn->pg, err, sizeof(err)));
		return;
	}
	while (!PQisBusy(cn->pg)) {
		PGresult *res = PQgetResult(cn->pg);
		if (!res) {
			query_done(cn);
			return;
		}
		take_result(cn, res);
		PQclear(res);
	}
}

/* Sends the first queued look-up's query, if the connection is free for it. */
static void send_next(struct aq_conn *cn)
{
	struct aq_lookup *l = TAILQ_FIRST(&cn->queue);
	if (cn->state != AQ_READY)
		return;
	char err[256];
	if (!l) {
		/* Idle: watched, so that a server that goes away is noticed now, not at next use. */
		if (cn->retired)
			conn_close(cn, AUTHQ_CONNECT_FAILED, "settings changed");
		else if (!watch(cn, UV_READABLE))
			conn_close(cn, AUTHQ_CONNECT_FAILED, pg_error(cn->pg, err, sizeof(err)));
		return;
	}
	const char *params[1] = { l->user };
	if (!PQsendQueryParams(cn->pg, l->query, 1, NULL, params, NULL, NULL, 0)) {
		conn_lost(cn, pg_error(cn->pg, err, sizeof(err)));
		return;
	}
	conn_set_state(cn, AQ_QUERYING);
	cn->deadline = uv_now(cn->aq->loop) + cn->aq->connect_timeout;
	int rc = PQflush(cn->pg);
	if (rc < 0 || !watch(cn, UV_READABLE | (rc == 1 ? UV_WRITABLE : 0)))
		conn_lost(cn, pg_error(cn->pg, err, sizeof(err)));
}

static void connect_step(struct aq_conn *cn)
{
	char err[256];
	PostgresPollingStatusType st = PQconnectPoll(cn->pg);
	/* The socket may be a new one now: watch afresh. */
	unwatch(cn);
	switch (st) {
	case PGRES_POLLING_OK:
		if (PQsetnonblocking(cn->pg, 1) != 0) {
			conn_close(cn, AUTHQ_CONNECT_FAILED, pg_error(cn->pg, err, sizeof(err)));
			return;
		}
		conn_set_state(cn, AQ_READY);
		cn->deadline = 0;
		cn->idle_since = uv_now(cn->aq->loop);
		send_next(cn);
		return;
	case PGRES_POLLING_READING:
	case PGRES_POLLING_WRITING:
		if (watch(cn, st == PGRES_POLLING_READING ? UV_READABLE : UV_WRITABLE))
			return;
		/* fall through */
	default:
		conn_close(cn, AUTHQ_CONNECT_FAILED, pg_error(cn->pg, err, sizeof(err)));
		return;
	}
}

static void on_poll(uv_poll_t *h, int status, int events)
{
	struct aq_conn *cn = h->data;
	if (cn->state == AQ_CONNECTING) {
		connect_step(cn); /* an error shows in libpq's next step */
		return;
	}
	char err[256];
	if (status < 0) {
		/*
		 * An error on the socket (the server reset the connection): libuv
		 * has stopped watching it, so nothing more would be noticed. What
		 * the server said last (its FATAL) is read for the message; the
		 * queued look-ups get their one more try on a new connection.
		 */
		(void)PQconsumeInput(cn->pg);
		const char *why = pg_error(cn->pg, err, sizeof(err));
		conn_lost(cn, *why ? why : "connection reset by the server");
		return;
	}
	if (cn->state != AQ_QUERYING) {
		/*
		 * Idle: a server that closed goes; what else it sends unasked (a
		 * notice) is read. A look-up queued in this round and not sent yet
		 * (the login came with the close) gets its try on a new connection.
		 */
		if (!PQconsumeInput(cn->pg))
			conn_lost(cn, "closed by the server while idle");
		return;
	}
	if (events & UV_WRITABLE) {
		int rc = PQflush(cn->pg);
		if (rc < 0 || !watch(cn, UV_READABLE | (rc == 1 ? UV_WRITABLE : 0))) {
			conn_lost(cn, pg_error(cn->pg, err, sizeof(err)));
			return;
		}
	}
	if (events & UV_READABLE)
		read_results(cn);
}

/* ---- the interface -------------------------------------------------------------- */

/*
 * Starts the connections authq_lookup() made and sends what it queued. An
 * action may close connections (and answer owners, who may queue more), so
 * the walk starts over after each one.
 */
static void on_kick(uv_idle_t *h)
{
	struct authq *aq = container_of(h, struct authq, kick);
	uv_idle_stop(h);
	struct aq_conn *cn;
again:
	TAILQ_FOREACH(cn, &aq->all, link) {
		if (!cn->kicked)
			continue;
		cn->kicked = false;
		if (cn->state == AQ_RESOLVING && !cn->gai)
			resolve_next(cn);
		else
			send_next(cn);
		goto again;
	}
}

struct authq *authq_new(uv_loop_t *loop)
{
	struct authq *aq = xcalloc(1, sizeof(*aq));
	aq->loop = loop;
	uv_idle_init(loop, &aq->kick);
	TAILQ_INIT(&aq->all);
	aq->connect_timeout = 15000;
	return aq;
}

static char *setting(const char *s)
{
	return s && *s ? xstrdup(s) : NULL;
}

void authq_configure(struct authq *aq, const struct config *cfg)
{
	aq->sslmode = cfg->server_tls_sslmode;
	free(aq->ca_file);
	free(aq->cert_file);
	free(aq->key_file);
	aq->ca_file = setting(cfg->server_tls_ca_file);
	aq->cert_file = setting(cfg->server_tls_cert_file);
	aq->key_file = setting(cfg->server_tls_key_file);
	aq->connect_timeout = (uint64_t)cfg->server_connect_timeout;
	aq->idle_timeout = (uint64_t)cfg->server_idle_timeout;
	aq->cache_ttl = (uint64_t)cfg->auth_query_cache_ttl;
	struct aq_cached *e, *etmp;
	HASH_ITER(hh, aq->cache, e, etmp)
		cached_free(aq, e);
	/* Idle ones go now; busy ones once their queue is done (send_next). */
	struct aq_conn *cn, *ctmp;
	TAILQ_FOREACH_SAFE(cn, &aq->all, link, ctmp) {
		retire(cn);
		if (cn->state == AQ_READY && TAILQ_EMPTY(&cn->queue))
			conn_close(cn, AUTHQ_CONNECT_FAILED, "settings changed");
	}
}

bool authq_lookup(struct authq *aq, const struct authq_target *t, const char *user, authq_cb cb,
		  void *owner, struct authq_answer *now, struct authq_wait **wait)
{
	char *ckey = conn_key(t), *key = xstrdup(ckey);
	key_add(&key, t->query);
	key_add(&key, user);
	*wait = NULL;

	struct aq_cached *e;
	HASH_FIND_STR(aq->cache, key, e);
	if (e && e->expires > uv_now(aq->loop)) {
		aq->stats.cache_hits++;
		*now = (struct authq_answer){ .status = AUTHQ_FOUND,
					      .secret = e->secret,
					      .key = e->key };
		str_free(ckey);
		str_free(key);
		return true;
	}
	if (e)
		cached_free(aq, e);

	struct authq_wait *w = xcalloc(1, sizeof(*w));
	w->cb = cb;
	w->owner = owner;
	*wait = w;
	struct aq_lookup *l;
	HASH_FIND_STR(aq->inflight, key, l);
	if (l) {
		aq->stats.joined++;
		w->lookup = l;
		TAILQ_INSERT_TAIL(&l->waiters, w, link);
		str_free(ckey);
		str_free(key);
		return false;
	}
	l = xcalloc(1, sizeof(*l));
	l->key = key;
	l->user = xstrdup(user);
	l->query = xstrdup(t->query);
	TAILQ_INIT(&l->waiters);
	w->lookup = l;
	TAILQ_INSERT_TAIL(&l->waiters, w, link);
	HASH_ADD_KEYPTR(hh, aq->inflight, l->key, strlen(l->key), l);

	struct aq_conn *cn;
	HASH_FIND_STR(aq->conns, ckey, cn);
	if (!cn)
		cn = conn_new(aq, t, ckey);
	else
		str_free(ckey);
	l->conn = cn;
	TAILQ_INSERT_TAIL(&cn->queue, l, link);
	cn->kicked = true;
	uv_idle_start(&aq->kick, on_kick);
	return false;
}

void authq_tick(struct authq *aq, uint64_t now)
{
	if (!aq)
		return;
	struct aq_conn *cn, *ctmp;
	TAILQ_FOREACH_SAFE(cn, &aq->all, link, ctmp) {
		if (cn->deadline && now >= cn->deadline) {
			conn_close(cn, AUTHQ_CONNECT_FAILED,
				   cn->state == AQ_QUERYING ? "auth_query timed out"
							    : "connect timed out");
		} else if (cn->state == AQ_READY && TAILQ_EMPTY(&cn->queue) &&
			   aq->idle_timeout > 0 && now - cn->idle_since >= aq->idle_timeout) {
			conn_close(cn, AUTHQ_CONNECT_FAILED, "idle");
		}
	}
	struct aq_cached *e, *etmp;
	HASH_ITER(hh, aq->cache, e, etmp) {
		if (e->expires <= now)
			cached_free(aq, e);
	}
}

const struct authq_stats *authq_stats(const struct authq *aq)
{
	return &aq->stats;
}

static void on_closed(uv_handle_t *h)
{
	free(container_of((uv_idle_t *)h, struct authq, kick));
}

void authq_free(struct authq *aq)
{
	if (!aq)
		return;
	struct aq_conn *cn;
	while ((cn = TAILQ_FIRST(&aq->all)) != NULL)
		conn_close(cn, AUTHQ_CONNECT_FAILED, "shutting down");
	struct aq_cached *e, *etmp;
	HASH_ITER(hh, aq->cache, e, etmp)
		cached_free(aq, e);
	free(aq->ca_file);
	free(aq->cert_file);
	free(aq->key_file);
	uv_close((uv_handle_t *)&aq->kick, on_closed);
}
