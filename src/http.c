/*
 * http.c - GET /metrics, /health and /ready (see http.h).
 *
 * It owns the HTTP listener, the HTTP connections, the probes that /ready
 * uses, and the rendering of the Prometheus exposition. It does not own any
 * pool, statistic or connection of the pooler: those are read through
 * pool_next/pool_get_counts/server_next and the pool's stats field, and
 * nothing here changes them. The admin console's pseudo-pool (is_admin) is
 * left out of the per-pool metrics: it never has servers and its clients are
 * console sessions, not database traffic (they still count in
 * sluice_client_connections).
 *
 * Life of an HTTP connection: accepted -> READING (bytes accumulate in the
 * stream's read buffer until http_parse_request() stops saying INCOMPLETE)
 * -> WRITING (one response with Connection: close is queued; the worker's
 * flush step sends it) -> closed when the stream drains, or LINGERING first
 * (reading and discarding for a short while) when the client sent more than
 * one request head, so that closing with unread input does not reset the
 * connection before the response arrives. A connection that is still open
 * at its deadline (HTTP_DEADLINE_MS after accept) is closed by the module's
 * timer, so a silent or slow client costs one socket for a bounded time and
 * never blocks the loop.
 *
 * Readiness: sluice is ready while it runs normally (no shutdown begun, its
 * listeners open) and PostgreSQL is known to be reachable: some pool has a
 * usable server (idle, active or tested), or a connect probe to one of the
 * configured databases' host:port (or unix socket) succeeded within
 * PROBE_VALID_MS. Probes are started when /ready is asked and the last round
 * is older than PROBE_CACHE_MS, and once at start-up; /ready answers from
 * what is known then and never waits for a probe. A pool's last_login_ok is
 * not taken as evidence on its own: nothing refreshes it while PostgreSQL is
 * down and no client asks for a server, so it would keep sluice "ready"
 * forever; the probe covers that case instead.
 */
#include "sluice/http.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sluice/authq.h"
#include "sluice/client.h"
#include "sluice/http_parse.h"
#include "sluice/log.h"
#include "sluice/pool.h"
#include "sluice/process.h"
#include "sluice/server.h"
#include "sluice/session.h"
#include "sluice/stats.h"
#include "sluice/stream.h"
#include "sluice/worker.h"
#include "sluice_version.h"

#define HTTP_BACKLOG 64
/* A connection that has not been answered and closed by then is closed. */
#define HTTP_DEADLINE_MS 5000
/* Connections beyond this are accepted and closed at once. */
#define HTTP_MAX_CONNS 64
/* How long a connection may discard surplus input after its response. */
#define HTTP_LINGER_MS 500
#define HTTP_TIMER_MS 250

/* A probe round is reused for this long before /ready starts another. */
#define PROBE_CACHE_MS 1000
/* A successful probe counts as "PostgreSQL reachable" for this long. */
#define PROBE_VALID_MS 2000
/* A probe that has not connected by then failed. */
#define PROBE_TIMEOUT_MS 1000
/* At most this many distinct targets per round. */
#define PROBE_MAX_TARGETS 16

/* ---- module state ---------------------------------------------------------------- */

enum conn_phase {
	CONN_READING,
	CONN_WRITING,
	CONN_LINGERING,
};

struct http;

struct http_conn {
	struct stream stream;
	struct http *h;
	TAILQ_ENTRY(http_conn) link;
	uint64_t deadline; /* uv_now after which the connection is closed */
	enum conn_phase phase;
	bool linger; /* surplus input was seen: discard for a while before closing */
};

struct http_probe {
	struct stream stream;
	struct http *h;
	TAILQ_ENTRY(http_probe) link;
	bool stream_open; /* the handle exists: memory is released by its close callback */
	bool done;
	char host[256];
	int port;
};

struct http {
	struct worker *w;
	/*
	 * The listening socket, watched by a poll (accepted sockets become
	 * streams with stream_adopt, the one way a stream gets a socket it did
	 * not dial); listen_fd is -1 until the poll is initialised.
	 */
	uv_poll_t listener;
	int listen_fd;
	uv_timer_t timer;
	TAILQ_HEAD(, http_conn) conns;
	TAILQ_HEAD(, http_probe) probes;
	int n_conns;
	/* Handles and probes not yet closed; the struct is freed when this reaches 0 after stop. */
	int open;
	bool stopped;
	bool probe_ok; /* some probe has succeeded, at probe_ok_at */
	uint64_t probe_ok_at;
	uint64_t probe_round_at; /* uv_now when the last round started */
	bool probe_round_started;
	char name[96];
};

static void release(struct http *h)
{
	if (--h->open == 0 && h->stopped)
		free(h);
}

static void on_handle_closed(uv_handle_t *hd)
{
	release(hd->data);
}

static void on_timer(uv_timer_t *t);

static void timer_arm(struct http *h)
{
	if (!h->stopped && !uv_is_active((uv_handle_t *)&h->timer))
		uv_timer_start(&h->timer, on_timer, HTTP_TIMER_MS, HTTP_TIMER_MS);
}

/* ---- probes -------------------------------------------------------------------- */

static void probe_free(struct http_probe *pr)
{
	struct http *h = pr->h;
	TAILQ_REMOVE(&h->probes, pr, link);
	free(pr);
	release(h);
}

static void probe_on_closed(struct stream *s)
{
	probe_free(container_of(s, struct http_probe, stream));
}

/* Ends a probe; its memory goes when the handle is closed. */
static void probe_finish(struct http_probe *pr)
{
	if (pr->done)
		return;
	pr->done = true;
	if (pr->stream_open)
		stream_close(&pr->stream);
	else
		probe_free(pr);
}

static void probe_on_error(struct stream *s, int err)
{
	(void)err;
	probe_finish(container_of(s, struct http_probe, stream));
}

static void probe_on_connected(struct stream *s, int status)
{
	struct http_probe *pr = container_of(s, struct http_probe, stream);
	struct http *h = pr->h;
	if (status == 0) {
		h->probe_ok = true;
		h->probe_ok_at = uv_now(h->w->loop);
	} else {
		log_debug("http: probe of %s:%d failed: %s", pr->host, pr->port,
			  uv_strerror(status));
	}
	probe_finish(pr);
}

/* A probe only connects: it never reads. */
static const struct stream_ops probe_stream_ops = {
	.error = probe_on_error,
	.close = probe_on_closed,
	.connect = probe_on_connected,
};

static void probe_start(struct http *h, const char *host, int port)
{
	struct http_probe *pr = xcalloc(1, sizeof(*pr));
	pr->h = h;
	pr->port = port;
	snprintf(pr->host, sizeof(pr->host), "%s", host);
	TAILQ_INSERT_TAIL(&h->probes, pr, link);
	h->open++;
	if (stream_dial(&h->w->io, &pr->stream, &probe_stream_ops, host, port, PROBE_TIMEOUT_MS) !=
	    0) {
		probe_finish(pr);
		return;
	}
	pr->stream_open = true;
}

/* Adds each of d's host:port pairs to targets unless it is there already; returns the new count. */
static int probe_target_add(const struct config_database *d, const char **hosts, int *ports, int n)
{
	for (int i = 0; i < d->n_hosts && n < PROBE_MAX_TARGETS; i++) {
		const struct config_host *ch = &d->hosts[i];
		const char *host = ch->host && *ch->host ? ch->host : CONFIG_DEFAULT_SOCKET_DIR;
		bool seen = false;
		for (int k = 0; k < n && !seen; k++)
			seen = ports[k] == ch->port && strcmp(hosts[k], host) == 0;
		if (seen)
			continue;
		hosts[n] = host;
		ports[n] = ch->port;
		n++;
	}
	return n;
}

/* One probe per distinct host:port of the [databases] entries and the fallback. */
static void probe_round(struct http *h)
{
	const struct config *cfg = h->w->cfg;
	/* Borrowed from the snapshot; probe_start copies them before the loop can run. */
	const char *hosts[PROBE_MAX_TARGETS];
	int ports[PROBE_MAX_TARGETS];
	int n = 0;
	h->probe_round_started = true;
	h->probe_round_at = uv_now(h->w->loop);
	for (const struct config_database *d = cfg->databases; d && n < PROBE_MAX_TARGETS;
	     d = d->hh.next)
		n = probe_target_add(d, hosts, ports, n);
	if (cfg->fallback && n < PROBE_MAX_TARGETS)
		n = probe_target_add(cfg->fallback, hosts, ports, n);
	for (int k = 0; k < n; k++)
		probe_start(h, hosts[k], ports[k]);
}

/* ---- readiness ------------------------------------------------------------------- */

static bool pools_have_server(struct worker *w)
{
	for (struct pool *p = process_pool_next(w, NULL); p; p = process_pool_next(w, p)) {
		if (p->is_admin)
			continue;
		struct pool_counts pc;
		pool_get_counts(p, &pc);
		if (pc.sv_idle + pc.sv_active + pc.sv_tested > 0)
			return true;
	}
	return false;
}

/* NULL when ready, else why not (for the response body). */
static const char *not_ready_reason(struct http *h)
{
	struct worker *w = h->w;
	if (w->shutdown != WORKER_RUNNING)
		return "shutting down";
	if (!w->listeners.list)
		return "not accepting clients";
	if (pools_have_server(w))
		return NULL;
	uint64_t now = uv_now(w->loop);
	if (TAILQ_EMPTY(&h->probes) &&
	    (!h->probe_round_started || now - h->probe_round_at >= PROBE_CACHE_MS))
		probe_round(h);
	if (h->probe_ok && now - h->probe_ok_at <= PROBE_VALID_MS)
		return NULL;
	return "no PostgreSQL reachable";
}

/* ---- the metrics text ------------------------------------------------------------ */

struct text {
	char *p;
	size_t len, cap;
};

static void PRINTF_LIKE(2, 3) text_printf(struct text *t, const char *fmt, ...)
{
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		size_t room = t->cap - t->len;
		int n = vsnprintf(t->p ? t->p + t->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if ((size_t)n < room) {
			t->len += (size_t)n;
			return;
		}
		t->cap = MAX(t->cap * 2, t->len + (size_t)n + 1);
		t->p = xrealloc(t->p, t->cap);
	}
}

static void text_put(struct text *t, const char *s)
{
	text_printf(t, "%s", s);
}

/* A label value with backslash, double quote and newline escaped, as the format requires. */
static void put_label_value(struct text *t, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\')
			text_put(t, "\\\\");
		else if (*v == '"')
			text_put(t, "\\\"");
		else if (*v == '\n')
			text_put(t, "\\n");
		else
			text_printf(t, "%c", *v);
	}
}

static void family(struct text *t, const char *name, const char *type, const char *help)
{
	text_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* `name{database="...",user="..."` without the closing brace, for more labels or none. */
static void pool_series(struct text *t, const char *name, const char *suffix, const struct pool *p)
{
	text_printf(t, "%s%s{database=\"", name, suffix);
	put_label_value(t, p->db_name);
	text_put(t, "\",user=\"");
	put_label_value(t, p->user_name);
	text_put(t, "\"");
}

static void put_seconds(struct text *t, uint64_t us)
{
	text_printf(t, "%" PRIu64 ".%06" PRIu64, us / 1000000, us % 1000000);
}

/* Every pool of the process (the pools of one name on every worker, summed) but the console's. */
#define FOR_POOLS(sums, n, ps)                                                                     \
	for (const struct pool_sum *ps = (sums); ps < (sums) + (n); ps++)                          \
		if (!ps->pool->is_admin)

/* A counter of struct pool_stats: where it is, and whether it is microseconds (-> seconds). */
struct counter_metric {
	const char *name;
	size_t offset;
	bool usec;
	const char *help;
};

#define PS(field) offsetof(struct pool_stats, field)
static const struct counter_metric counter_metrics[] = {
	{ "sluice_pool_server_assignments_total", PS(total.server_assignment_count), false,
	  "Times a server was assigned to a client." },
	{ "sluice_pool_waited_assignments_total", PS(wait_count), false,
	  "Server assignments for which the client had to wait." },
	{ "sluice_pool_wait_seconds_total", PS(total.wait_time), true,
	  "Total time clients waited for a server." },
	{ "sluice_pool_wait_timeouts_total", PS(timeout_count), false,
	  "Clients failed by query_wait_timeout." },
	{ "sluice_pool_server_reuses_total", PS(reuse_count), false,
	  "Server assignments served by a server that had served a client before." },
	{ "sluice_pool_transactions_total", PS(total.xact_count), false,
	  "Transactions completed (a query outside a transaction block counts as one)." },
	{ "sluice_pool_queries_total", PS(total.query_count), false, "Queries pooled." },
	{ "sluice_pool_received_bytes_total", PS(total.bytes_received), false,
	  "Bytes received from clients." },
	{ "sluice_pool_sent_bytes_total", PS(total.bytes_sent), false, "Bytes sent to clients." },
	{ "sluice_pool_transaction_seconds_total", PS(total.xact_time), true,
	  "Total time spent in transactions." },
	{ "sluice_pool_query_seconds_total", PS(total.query_time), true,
	  "Total time spent in queries." },
	{ "sluice_pool_client_parses_total", PS(total.client_parse_count), false,
	  "Parse messages of named statements received from clients." },
	{ "sluice_pool_server_parses_total", PS(total.server_parse_count), false,
	  "Parse messages sent to servers for named statements." },
	{ "sluice_pool_binds_total", PS(total.bind_count), false,
	  "Bind messages of named statements received from clients." },
	{ "sluice_pool_client_logins_total", PS(total.client_login_count), false,
	  "Client logins to the pool." },
	{ "sluice_pool_servers_opened_total", PS(servers_opened), false,
	  "Server connections opened." },
};
#undef PS

/* A counter added to STATS_COUNTERS needs a metric above (and a line in doc/metrics.md). */
_Static_assert(sizeof(struct stats_counters) == 12 * sizeof(uint64_t),
	       "stats_counters changed: update counter_metrics in http.c");

static void put_histogram(struct text *t, const struct pool_sum *sums, int n, const char *name,
			  size_t offset, const char *help)
{
	family(t, name, "histogram", help);
	FOR_POOLS(sums, n, ps)
	{
		const struct pool *p = ps->pool;
		const struct stats_hist *hist =
			(const struct stats_hist *)((const char *)&ps->stats + offset);
		uint64_t cum = 0;
		for (int i = 0; i <= STATS_HIST_BUCKETS; i++) {
			cum += hist->bucket[i];
			pool_series(t, name, "_bucket", p);
			if (i < STATS_HIST_BUCKETS)
				text_printf(t, ",le=\"%g\"} %" PRIu64 "\n", stats_hist_bounds[i],
					    cum);
			else
				text_printf(t, ",le=\"+Inf\"} %" PRIu64 "\n", cum);
		}
		pool_series(t, name, "_sum", p);
		text_put(t, "} ");
		put_seconds(t, hist->sum_us);
		text_put(t, "\n");
		/* _count must equal the +Inf bucket: both are the buckets' sum. */
		pool_series(t, name, "_count", p);
		text_printf(t, "} %" PRIu64 "\n", cum);
	}
}

/* The process-wide series: identity, start time, connection counts, process counters. */
static void render_process_metrics(struct worker *w, struct text *t)
{
	/* The process's: every worker's, summed (the world is stopped). */
	int clients = 0;
	unsigned statements = 0;
	uint64_t evicted = 0, accept_failures = 0, tls[2] = { 0 }, tls_failed[2] = { 0 };
	uint64_t notifications = 0, notify_closed[2] = { 0 };
	int listening = 0;
	struct authq_stats aq = { 0 };
	for (int i = 0; i < (w->process ? w->process->crew.n : 1); i++) {
		struct worker *x = w->process ? process_worker(w->process, i) : w;
		if (!x)
			continue;
		clients += x->client_count;
		statements += x->prepared.n;
		evicted += x->stats_logins_evicted;
		notifications += x->stats_notifications;
		notify_closed[0] += x->stats_notify_closed_backlog;
		notify_closed[1] += x->stats_notify_closed_lost;
		accept_failures += x->listeners.accept.failures;
		for (int k = 0; k < 2; k++) {
			tls[k] += x->stats_tls_handshakes[k];
			tls_failed[k] += x->stats_tls_failures[k];
		}
		const struct authq_stats *one = authq_stats(x->authq);
		for (int k = 0; k < 4; k++)
			aq.queries[k] += one->queries[k];
		aq.cache_hits += one->cache_hits;
		aq.joined += one->joined;
	}
	family(t, "sluice_up", "gauge", "1 while sluice is running.");
	text_put(t, "sluice_up 1\n");
	family(t, "sluice_info", "gauge", "The running sluice version, as a label; always 1.");
	text_put(t, "sluice_info{version=\"");
	put_label_value(t, SLUICE_VERSION);
	text_put(t, "\"} 1\n");
	family(t, "sluice_start_time_seconds", "gauge", "When sluice started, in Unix time.");
	text_printf(t, "sluice_start_time_seconds %" PRIu64 "\n", w->start_time);
	family(t, "sluice_client_connections", "gauge",
	       "Client connections open, in every state, including admin console sessions.");
	text_printf(t, "sluice_client_connections %d\n", clients);
	/* Pinned clients, per reason (SHOW PINS): a client pinned twice counts under each. */
	int pinned[SESSION_PIN_COUNT] = { 0 };
	for (struct server *s = process_server_next(w, NULL); s; s = process_server_next(w, s))
		for (int i = 0; i < SESSION_PIN_COUNT; i++)
			pinned[i] += s->state != SERVER_CLOSED && s->client &&
				     (s->pins & (1u << i));
	family(t, "sluice_clients_pinned", "gauge",
	       "Clients that keep their server between transactions in transaction pooling, "
	       "by what their session holds (SHOW PINS).");
	for (int i = 0; i < SESSION_PIN_COUNT; i++) {
		char name[64];
		session_pin_names(1u << i, name, sizeof(name));
		for (char *p = name; *p; p++)
			if (*p == ' ')
				*p = '_';
		text_printf(t, "sluice_clients_pinned{reason=\"%s\"} %d\n", name, pinned[i]);
	}
	for (struct client *c = process_client_next(w, NULL); c; c = process_client_next(w, c))
		listening += c->state != CLIENT_CLOSED && c->listens;
	family(t, "sluice_clients_listening", "gauge",
	       "Clients with channels the listener connection of their pool hears for them "
	       "(LISTEN in transaction pooling).");
	text_printf(t, "sluice_clients_listening %d\n", listening);
	family(t, "sluice_notifications_total", "counter",
	       "Notifications the listener connections handed to clients, one per client.");
	text_printf(t, "sluice_notifications_total %" PRIu64 "\n", notifications);
	family(t, "sluice_notify_disconnects_total", "counter",
	       "Listening clients closed: reason backlog, more than notify_queue_size unread; "
	       "listener_lost, the connection that listened for them was lost.");
	text_printf(t, "sluice_notify_disconnects_total{reason=\"backlog\"} %" PRIu64 "\n",
		    notify_closed[0]);
	text_printf(t, "sluice_notify_disconnects_total{reason=\"listener_lost\"} %" PRIu64 "\n",
		    notify_closed[1]);
	family(t, "sluice_client_logins_evicted_total", "counter",
	       "Connections that had not logged in after a second, closed at max_client_conn "
	       "to make room for a new one.");
	text_printf(t, "sluice_client_logins_evicted_total %" PRIu64 "\n", evicted);
	family(t, "sluice_accept_failures_total", "counter",
	       "accept() calls that failed (out of file descriptors); each pauses accepting.");
	text_printf(t, "sluice_accept_failures_total %" PRIu64 "\n", accept_failures);
	static const char *const sides[] = { "client", "server" };
	family(t, "sluice_tls_handshakes_total", "counter",
	       "TLS handshakes finished, successful or not, with clients and with servers.");
	for (int i = 0; i < 2; i++)
		text_printf(t, "sluice_tls_handshakes_total{side=\"%s\"} %" PRIu64 "\n", sides[i],
			    tls[i]);
	family(t, "sluice_tls_handshake_failures_total", "counter",
	       "TLS handshakes that failed (bad certificate, no common protocol, garbage).");
	for (int i = 0; i < 2; i++)
		text_printf(t, "sluice_tls_handshake_failures_total{side=\"%s\"} %" PRIu64 "\n",
			    sides[i], tls_failed[i]);
	/* The look-ups' outcomes, then what the cache and the joining spared. */
	static const char *const results[] = { "found", "not_found", "query_failed",
					       "connect_failed" };
	const struct authq_stats *aqs = &aq;
	family(t, "sluice_auth_query_total", "counter",
	       "auth_query look-ups answered, by result; cached and joined ones ran no query.");
	for (int i = 0; i < 4; i++)
		text_printf(t, "sluice_auth_query_total{result=\"%s\"} %" PRIu64 "\n", results[i],
			    aqs->queries[i]);
	text_printf(t, "sluice_auth_query_total{result=\"cached\"} %" PRIu64 "\n", aqs->cache_hits);
	text_printf(t, "sluice_auth_query_total{result=\"joined\"} %" PRIu64 "\n", aqs->joined);
	int servers = 0;
	for (struct server *s = process_server_next(w, NULL); s; s = process_server_next(w, s))
		servers++;
	family(t, "sluice_server_connections", "gauge",
	       "Server connections open, in every state, including those logging in.");
	text_printf(t, "sluice_server_connections %d\n", servers);
	family(t, "sluice_prepared_statements", "gauge",
	       "Distinct named prepared statements (query text and parameter types) in use by "
	       "clients or servers.");
	text_printf(t, "sluice_prepared_statements %u\n", statements);
}

/* The per-pool series: one line per pool (and state, reason or bucket) in each family. */
static void render_pool_metrics(struct worker *w, struct text *t)
{
	int n;
	struct pool_sum *sums = process_pool_sums(w, &n);
	static const char *const cl_states[] = { "active", "waiting" };
	family(t, "sluice_pool_client_connections", "gauge",
	       "Client connections of the pool by state: active (linked to a server or idle "
	       "between transactions) and waiting (for a server).");
	FOR_POOLS(sums, n, ps)
	{
		const struct pool *p = ps->pool;
		struct pool_counts pc = ps->counts;
		int v[] = { pc.cl_active, pc.cl_waiting };
		for (size_t k = 0; k < ARRAY_SIZE(cl_states); k++) {
			pool_series(t, "sluice_pool_client_connections", "", p);
			text_printf(t, ",state=\"%s\"} %d\n", cl_states[k], v[k]);
		}
	}
	static const char *const sv_states[] = { "active", "idle", "tested", "login",
						 "being_canceled" };
	family(t, "sluice_pool_server_connections", "gauge",
	       "Server connections of the pool by state.");
	FOR_POOLS(sums, n, ps)
	{
		const struct pool *p = ps->pool;
		struct pool_counts pc = ps->counts;
		int v[] = { pc.sv_active, pc.sv_idle, pc.sv_tested, pc.sv_login,
			    pc.sv_being_canceled };
		for (size_t k = 0; k < ARRAY_SIZE(sv_states); k++) {
			pool_series(t, "sluice_pool_server_connections", "", p);
			text_printf(t, ",state=\"%s\"} %d\n", sv_states[k], v[k]);
		}
	}
	family(t, "sluice_pool_max_wait_seconds", "gauge",
	       "How long the oldest client now waiting for a server has waited (0 if none).");
	FOR_POOLS(sums, n, ps)
	{
		const struct pool *p = ps->pool;
		struct pool_counts pc = ps->counts;
		pool_series(t, "sluice_pool_max_wait_seconds", "", p);
		text_put(t, "} ");
		put_seconds(t, pc.maxwait_us);
		text_put(t, "\n");
	}
	family(t, "sluice_pool_longest_wait_seconds", "gauge",
	       "The longest any client has waited for a server since the pool was created.");
	FOR_POOLS(sums, n, ps)
	{
		const struct pool *p = ps->pool;
		pool_series(t, "sluice_pool_longest_wait_seconds", "", p);
		text_put(t, "} ");
		put_seconds(t, ps->stats.max_wait_us);
		text_put(t, "\n");
	}

	for (size_t k = 0; k < ARRAY_SIZE(counter_metrics); k++) {
		const struct counter_metric *m = &counter_metrics[k];
		family(t, m->name, "counter", m->help);
		FOR_POOLS(sums, n, ps)
		{
			const struct pool *p = ps->pool;
			uint64_t v = *(const uint64_t *)((const char *)&ps->stats + m->offset);
			pool_series(t, m->name, "", p);
			text_put(t, "} ");
			if (m->usec)
				put_seconds(t, v);
			else
				text_printf(t, "%" PRIu64, v);
			text_put(t, "\n");
		}
	}
	family(t, "sluice_pool_servers_closed_total", "counter",
	       "Server connections closed, by reason (lifetime, idle, error, reload, other).");
	FOR_POOLS(sums, n, ps)
	{
		const struct pool *p = ps->pool;
		for (int r = 0; r < STATS_CLOSE_COUNT; r++) {
			pool_series(t, "sluice_pool_servers_closed_total", "", p);
			text_printf(t, ",reason=\"%s\"} %" PRIu64 "\n",
				    stats_close_reason_name((enum stats_close_reason)r),
				    ps->stats.servers_closed[r]);
		}
	}
	put_histogram(t, sums, n, "sluice_pool_wait_duration_seconds",
		      offsetof(struct pool_stats, wait_hist),
		      "Time clients waited for a server, per server assignment.");
	put_histogram(t, sums, n, "sluice_pool_transaction_duration_seconds",
		      offsetof(struct pool_stats, xact_hist), "Duration of transactions.");
	free(sums);
}

/* ---- connections ----------------------------------------------------------------- */

static void conn_on_closed(struct stream *s)
{
	struct http_conn *c = container_of(s, struct http_conn, stream);
	struct http *h = c->h;
	TAILQ_REMOVE(&h->conns, c, link);
	h->n_conns--;
	free(c);
	release(h);
}

static void conn_close(struct http_conn *c)
{
	stream_close(&c->stream);
}

static void conn_on_error(struct stream *s, int err)
{
	(void)err;
	conn_close(container_of(s, struct http_conn, stream));
}

/* The response is out: close now, or discard surplus input for a moment first. */
static void conn_on_drain(struct stream *s)
{
	struct http_conn *c = container_of(s, struct http_conn, stream);
	if (c->phase != CONN_WRITING)
		return;
	if (!c->linger) {
		conn_close(c);
		return;
	}
	c->phase = CONN_LINGERING;
	c->deadline = MIN(c->deadline, uv_now(c->h->w->loop) + HTTP_LINGER_MS);
}

static void respond(struct http_conn *c, int status, const char *reason, const char *ctype,
		    const char *extra_headers, const char *body, size_t body_len, bool head_only)
{
	char head[512];
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %d %s\r\n"
			 "Content-Type: %s\r\n"
			 "Content-Length: %zu\r\n"
			 "Cache-Control: no-store\r\n"
			 "%s"
			 "Connection: close\r\n\r\n",
			 status, reason, ctype, body_len, extra_headers ? extra_headers : "");
	c->phase = CONN_WRITING;
	stream_write(&c->stream, head, (size_t)MIN(n, (int)sizeof(head) - 1));
	if (!head_only)
		stream_write(&c->stream, body, body_len);
}

static void respond_text(struct http_conn *c, int status, const char *reason, const char *body,
			 const char *extra_headers, bool head_only)
{
	respond(c, status, reason, "text/plain; charset=utf-8", extra_headers, body, strlen(body),
		head_only);
}

static bool path_is(const struct http_request *r, const char *p)
{
	return r->path_len == strlen(p) && memcmp(r->path, p, r->path_len) == 0;
}

static bool method_is(const struct http_request *r, const char *m)
{
	return r->method_len == strlen(m) && memcmp(r->method, m, r->method_len) == 0;
}

static void serve(struct http_conn *c, const struct http_request *r)
{
	struct http *h = c->h;
	bool head_only = method_is(r, "HEAD");
	bool known = path_is(r, "/metrics") || path_is(r, "/health") || path_is(r, "/ready");
	if (!known) {
		respond_text(c, 404, "Not Found", "not found\n", NULL, head_only);
		return;
	}
	if (!head_only && !method_is(r, "GET")) {
		respond_text(c, 405, "Method Not Allowed", "method not allowed\n",
			     "Allow: GET, HEAD\r\n", false);
		return;
	}
	if (path_is(r, "/health")) {
		respond_text(c, 200, "OK", "ok\n", NULL, head_only);
	} else if (path_is(r, "/ready")) {
		struct crew *cr = h->w->process ? &h->w->process->crew : NULL;
		crew_stop_world(cr);
		const char *why = not_ready_reason(h);
		crew_resume_world(cr);
		if (!why) {
			respond_text(c, 200, "OK", "ready\n", NULL, head_only);
		} else {
			char body[128];
			snprintf(body, sizeof(body), "not ready: %s\n", why);
			respond_text(c, 503, "Service Unavailable", body, NULL, head_only);
		}
	} else {
		struct text t = { 0 };
		struct crew *cr = h->w->process ? &h->w->process->crew : NULL;
		crew_stop_world(cr);
		render_process_metrics(h->w, &t);
		render_pool_metrics(h->w, &t);
		crew_resume_world(cr);
		respond(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", NULL, t.p, t.len,
			head_only);
		free(t.p);
	}
}

static void conn_on_read(struct stream *s)
{
	struct http_conn *c = container_of(s, struct http_conn, stream);
	size_t avail = stream_avail(s);
	if (c->phase != CONN_READING) {
		stream_consume(s, avail); /* surplus after the request: discarded */
		return;
	}
	struct http_request r;
	int rc = http_parse_request((const char *)stream_data(s), avail, &r);
	switch (rc) {
	case HTTP_PARSE_INCOMPLETE:
		return; /* the stream keeps the bytes and appends the next read */
	case HTTP_PARSE_COMPLETE:
		c->linger = avail > r.head_len;
		serve(c, &r);
		break;
	case HTTP_PARSE_TOO_LARGE:
		c->linger = true;
		respond_text(c, 431, "Request Header Fields Too Large", "request head too large\n",
			     NULL, false);
		break;
	default:
		c->linger = true;
		respond_text(c, 400, "Bad Request", "bad request\n", NULL, false);
		break;
	}
	stream_consume(s, avail);
	if (!c->linger)
		stream_read_stop(s);
}

static const struct stream_ops conn_stream_ops = {
	.read = conn_on_read,
	.error = conn_on_error,
	.drain = conn_on_drain,
	.close = conn_on_closed,
};

/* The listening socket is readable: one connection is accepted per event (it is level-triggered). */
static void on_connection(uv_poll_t *ls, int status, int events)
{
	struct http *h = container_of(ls, struct http, listener);
	(void)events;
	int fd = status < 0 ? -1 : accept4(h->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		int err = status < 0 ? status : uv_translate_sys_error(errno);
		if (err != UV_EAGAIN && err != UV_EINTR && err != UV_ECONNABORTED)
			log_warning("http: accept on %s failed: %s", h->name, uv_strerror(err));
		if (status < 0) /* libuv stopped watching (EPOLLERR): watch again */
			(void)uv_poll_start(&h->listener, UV_READABLE, on_connection);
		return;
	}
	struct http_conn *c = xcalloc(1, sizeof(*c));
	c->h = h;
	if (stream_init(&h->w->io, &c->stream, false, &conn_stream_ops) != 0) {
		close(fd);
		free(c);
		return;
	}
	TAILQ_INSERT_TAIL(&h->conns, c, link);
	h->n_conns++;
	h->open++;
	c->deadline = uv_now(h->w->loop) + HTTP_DEADLINE_MS;
	if (stream_adopt(&c->stream, fd) != 0 || h->n_conns > HTTP_MAX_CONNS) {
		conn_close(c);
		return;
	}
	stream_tune_socket(fd, &h->w->io.tcp);
	timer_arm(h);
	stream_read_start(&c->stream);
}

/* A listening TCP socket on ss (only IPv6 on an IPv6 address, as libuv's UV_TCP_IPV6ONLY). */
static int listen_socket(const struct sockaddr_storage *ss)
{
	bool v6 = ss->ss_family == AF_INET6;
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return uv_translate_sys_error(errno);
	int on = 1;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (v6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
	socklen_t len = v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	if (bind(fd, (const struct sockaddr *)ss, len) != 0 || listen(fd, HTTP_BACKLOG) != 0) {
		int err = uv_translate_sys_error(errno);
		close(fd);
		return err;
	}
	return fd;
}

/* Deadlines of connections; the timer stops when there is nothing to watch. */
static void on_timer(uv_timer_t *t)
{
	struct http *h = container_of(t, struct http, timer);
	uint64_t now = uv_now(h->w->loop);
	struct http_conn *c, *cn;
	for (c = TAILQ_FIRST(&h->conns); c; c = cn) {
		cn = TAILQ_NEXT(c, link);
		if (!c->stream.closing && now >= c->deadline) {
			if (c->phase == CONN_READING)
				log_debug("http: closing a client that sent no request in time");
			conn_close(c);
		}
	}
	if (TAILQ_EMPTY(&h->conns))
		uv_timer_stop(&h->timer);
}

/* ---- start and stop -------------------------------------------------------------- */

int http_start(struct worker *w, int fd)
{
	const struct config *cfg = w->cfg;
	if (cfg->metrics_port == 0) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	const char *addr = cfg->metrics_addr && *cfg->metrics_addr ? cfg->metrics_addr
								   : "127.0.0.1";
	if (strcmp(addr, "*") == 0)
		addr = "0.0.0.0";
	struct http *h = xcalloc(1, sizeof(*h));
	h->w = w;
	TAILQ_INIT(&h->conns);
	TAILQ_INIT(&h->probes);
	snprintf(h->name, sizeof(h->name), strchr(addr, ':') ? "[%s]:%d" : "%s:%d", addr,
		 cfg->metrics_port);
	uv_timer_init(w->loop, &h->timer);
	h->timer.data = h;
	h->open++;
	h->listen_fd = -1;
	w->http = h;

	int rc = 0;
	if (fd < 0) {
		struct sockaddr_storage ss;
		bool v6 = strchr(addr, ':') != NULL;
		rc = v6 ? uv_ip6_addr(addr, cfg->metrics_port, (struct sockaddr_in6 *)&ss)
			: uv_ip4_addr(addr, cfg->metrics_port, (struct sockaddr_in *)&ss);
		if (rc < 0) {
			log_error("metrics_addr %s is not an IP address: %s", addr,
				  uv_strerror(rc));
			http_stop(w);
			return rc;
		}
		fd = listen_socket(&ss);
		if (fd < 0)
			rc = fd;
	}
	/* fd: the predecessor's listening socket, or ours, bound and listening. */
	if (rc == 0) {
		rc = uv_poll_init(w->loop, &h->listener, fd);
		if (rc == 0) {
			h->listener.data = h;
			h->listen_fd = fd;
			h->open++;
			rc = uv_poll_start(&h->listener, UV_READABLE, on_connection);
		} else {
			close(fd);
		}
	}
	if (rc < 0) {
		log_error("cannot listen on http://%s: %s", h->name, uv_strerror(rc));
		http_stop(w);
		return rc;
	}
	log_info("listening on http://%s (metrics, health, ready)", h->name);
	/* So that the first /ready after start-up can already know the answer. */
	probe_round(h);
	return 0;
}

int http_listen_fd(const struct worker *w)
{
	return w->http ? w->http->listen_fd : -1;
}

void http_stop(struct worker *w)
{
	struct http *h = w->http;
	if (!h)
		return;
	w->http = NULL;
	h->stopped = true;
	/* Hold a reference so that callbacks run synchronously cannot free h under us. */
	h->open++;
	if (h->listen_fd >= 0) {
		/* The close stops the poll at once: the socket may go with it. */
		uv_close((uv_handle_t *)&h->listener, on_handle_closed);
		close(h->listen_fd);
		h->listen_fd = -1;
	}
	uv_timer_stop(&h->timer);
	uv_close((uv_handle_t *)&h->timer, on_handle_closed);
	struct http_conn *c, *cn;
	for (c = TAILQ_FIRST(&h->conns); c; c = cn) {
		cn = TAILQ_NEXT(c, link);
		conn_close(c);
	}
	struct http_probe *pr, *pn;
	for (pr = TAILQ_FIRST(&h->probes); pr; pr = pn) {
		pn = TAILQ_NEXT(pr, link);
		probe_finish(pr);
	}
	release(h);
}
