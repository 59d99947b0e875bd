/*
 * worker.c - the event loop's owner: start-up, the deferred step after each
 * round of I/O, the periodic tick, reload and shutdown (see worker.h for the
 * loop agenda).
 */
#include "sluice/worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>


#include "sluice/admin.h"
#include "sluice/authq.h"
#include "sluice/cancel.h"
#include "sluice/client.h"
#include "sluice/derive.h"
#include "sluice/hba.h"
#include "sluice/http.h"
#include "sluice/listener.h"
#include "sluice/log.h"
#include "sluice/pool.h"
#include "sluice/rand.h"
#include "sluice/server.h"
#include "sluice/sqlstate.h"
#include "sluice/takeover.h"

#define TICK_MS 250
/* Read buffers kept for reuse (16 KB each); a burst beyond this goes back to malloc. */
#define BUF_FREE_MAX 256
/* How long a connection closed with an error waits for its peer to close. */
#define LINGER_MS 2000

struct db_state *worker_db_state(struct worker *w, const char *db, bool create)
{
	struct db_state *ds;
	HASH_FIND_STR(w->db_states, db, ds);
	if (!ds && create) {
		ds = xcalloc(1, sizeof(*ds));
		ds->name = xstrdup(db);
		HASH_ADD_KEYPTR(hh, w->db_states, ds->name, strlen(ds->name), ds);
	}
	return ds;
}

bool worker_db_paused(struct worker *w, const char *db)
{
	if (w->paused_all || w->suspended)
		return true;
	struct db_state *ds = worker_db_state(w, db, false);
	return ds && ds->paused;
}

/* The wall clock now, in milliseconds since the epoch. */
static uint64_t wall_ms_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t worker_wall_ms_of(const struct worker *w, uint64_t at)
{
	uint64_t now = uv_now(w->loop), wall = wall_ms_now();
	return wall - MIN(wall, now - MIN(now, at));
}

uint64_t worker_now_of_wall_ms(const struct worker *w, uint64_t wall_ms)
{
	uint64_t now = uv_now(w->loop), wall = wall_ms_now();
	return now - MIN(now, wall > wall_ms ? wall - wall_ms : 0);
}

void worker_schedule_kick(struct worker *w, struct pool *p)
{
	if (p->kick_scheduled)
		return;
	p->kick_scheduled = true;
	TAILQ_INSERT_TAIL(&w->kick_queue, p, kick_link);
}

static void finish_exit(struct worker *w);

static void on_poll_soon(uv_timer_t *t)
{
	(void)t; /* the check step that follows is the point */
}

void worker_poll_soon(struct worker *w)
{
	if (!uv_is_active((uv_handle_t *)&w->poll_timer) && w->shutdown != WORKER_EXIT)
		uv_timer_start(&w->poll_timer, on_poll_soon, 2, 0);
}

static void kick_all_pools(struct worker *w)
{
	struct pool *p;
	TAILQ_FOREACH(p, &w->pools, link)
		worker_schedule_kick(w, p);
}

static int total_active_servers(struct worker *w)
{
	int n = 0;
	struct pool *p;
	TAILQ_FOREACH(p, &w->pools, link)
		n += p->n_sv_active;
	return n;
}

/*
 * SIGINT's condition holds for the process: a worker with no server in
 * use waits for the others, whose clients' transactions may still run
 * (and whose clients starting a new one are told "server shutting down").
 */
static bool servers_released_everywhere(struct worker *w)
{
	if (total_active_servers(w) != 0)
		return false;
	struct crew *cr = w->crew.of;
	if (!cr || !cr->started)
		return true;
	bool all = true;
	crew_stop_world(cr);
	for (int i = 0; i < cr->n && all; i++) {
		struct worker *x = cr->workers[i];
		all = x == w || x->crew.gone || total_active_servers(x) == 0;
	}
	crew_resume_world(cr);
	if (!all)
		worker_poll_soon(w);
	return all;
}

static void run_kicks(struct worker *w)
{
	struct pool *p;
	while ((p = TAILQ_FIRST(&w->kick_queue)) != NULL)
		pool_kick(p); /* removes p from the queue */
}

/* The deferred step, run by libuv's check phase right after polling (see worker.h). */
static void on_check(uv_check_t *h)
{
	struct worker *w = container_of(h, struct worker, flush_check);
	/* uv_now is the time the poll returned: nothing between them updates it. */
	w->idle_ms += uv_now(w->loop) - w->poll_entered_ms;
	/* With io_uring the round's reads are made here, together, as the poll would have. */
	stream_ctx_read_batch(&w->io);
	/* First: their next requests may wait for a server, and the kicks below serve them. */
	client_run_released(w);
	run_kicks(w);
	/*
	 * Before the output: a PAUSE or WAIT_CLOSE that this round completed is
	 * answered in this round's writev, not a tick later. The console
	 * commands that follow it in the client's input run then too, and may
	 * kick pools (RESUME): those kicks run in this round as well.
	 */
	admin_poll(w);
	run_kicks(w);

	stream_ctx_flush(&w->io);
	w->clock_ns = 0; /* the timers of the next round read it again */

	/* Worker 0 watches the signals: it goes last, once every other worker has. */
	if (((w->shutdown == WORKER_WAIT_CLIENTS && w->client_count == 0) ||
	     (w->shutdown == WORKER_WAIT_SERVERS && servers_released_everywhere(w)) ||
	     w->shutdown == WORKER_EXIT) &&
	    (w->crew.index != 0 || crew_others_gone(w)))
		finish_exit(w);
}

static void on_prepare(uv_prepare_t *h)
{
	struct worker *w = container_of(h, struct worker, clock_reset);
	w->clock_ns = 0; /* what the poll wakes up for reads the clock again */
	/*
	 * The loop's time is that of the start of this round: the timers may
	 * have run since. One clock read (no system call) per round.
	 */
	uv_update_time(w->loop);
	w->poll_entered_ms = uv_now(w->loop);
}

/* Ends a stats period: averages move on, and log_stats prints one line per database. */
static void roll_stats(struct worker *w)
{
	double period = (double)w->cfg->stats_period / 1000.0;
	struct pool *p;
	TAILQ_FOREACH(p, &w->pools, link)
		stats_roll(&p->stats);
	if (!w->cfg->log_stats)
		return;
	/* One line per database: sum its pools (pools of a database are few). */
	TAILQ_FOREACH(p, &w->pools, link) {
		struct pool *q;
		bool first = true;
		TAILQ_FOREACH(q, &w->pools, link) {
			if (q == p)
				break;
			if (strcmp(q->db_name, p->db_name) == 0)
				first = false;
		}
		if (!first || p->is_admin)
			continue;
		struct stats_counters start = { 0 }, end = { 0 }, avg;
		TAILQ_FOREACH(q, &w->pools, link) {
			if (strcmp(q->db_name, p->db_name) != 0)
				continue;
			stats_counters_add(&start, &q->stats.period_start);
			stats_counters_add(&end, &q->stats.period_end);
		}
		stats_average(&start, &end, period, &avg);
		log_info("stats: %s: %llu xacts/s, %llu queries/s, %llu client parses/s, "
			 "%llu server parses/s, %llu binds/s, in %llu B/s, out %llu B/s, "
			 "xact %llu us, query %llu us, wait %llu us",
			 p->db_name, (unsigned long long)avg.xact_count,
			 (unsigned long long)avg.query_count,
			 (unsigned long long)avg.client_parse_count,
			 (unsigned long long)avg.server_parse_count,
			 (unsigned long long)avg.bind_count, (unsigned long long)avg.bytes_received,
			 (unsigned long long)avg.bytes_sent, (unsigned long long)avg.xact_time,
			 (unsigned long long)avg.query_time, (unsigned long long)avg.wait_time);
	}
}

static void suspend_tick(struct worker *w, uint64_t now);

static void on_tick(uv_timer_t *t)
{
	struct worker *w = container_of(t, struct worker, tick);
	uint64_t now = uv_now(w->loop);
	struct client *c, *cn;
	for (c = TAILQ_FIRST(&w->clients); c; c = cn) {
		cn = TAILQ_NEXT(c, link);
		if (c->state != CLIENT_WAITING) /* waiters: pool_tick, in queue order */
			client_tick(c, now);
	}
	struct server *s, *sn;
	for (s = TAILQ_FIRST(&w->servers); s; s = sn) {
		sn = TAILQ_NEXT(s, link);
		server_tick(s, now);
	}
	suspend_tick(w, now);
	stream_ctx_tick(&w->io, now, LINGER_MS);
	authq_tick(w->authq, now);
	cancel_tick(w, now);
	listener_tick(&w->listeners, now);
	pool_create_warm(w);
	struct pool *p, *pn;
	for (p = TAILQ_FIRST(&w->pools); p; p = pn) {
		pn = TAILQ_NEXT(p, link);
		pool_tick(p, now);
	}
	if (w->cfg->stats_period > 0 &&
	    now - w->stats_rolled_at >= (uint64_t)w->cfg->stats_period) {
		w->stats_rolled_at = now;
		roll_stats(w);
	}
}

void worker_summarize(const struct worker *w, struct worker_summary *out)
{
	*out = (struct worker_summary){ .clients = w->client_count };
	const struct pool *p;
	TAILQ_FOREACH(p, &w->pools, link) {
		out->clients_waiting += p->n_cl_waiting;
		out->servers_active += p->n_sv_active;
		out->servers_idle += p->n_sv_idle;
		out->servers += p->n_sv_login + p->n_sv_idle + p->n_sv_active + p->n_sv_tested +
				p->n_sv_being_canceled;
		out->xact_count += p->stats.total.xact_count;
		out->query_count += p->stats.total.query_count;
	}
}

/* ---- configuration, pause, shutdown ---------------------------------------------- */

/* Stops (on) or restarts reading on every socket SUSPEND concerns: all but the console's. */
static void suspend_streams(struct worker *w, bool on)
{
	for (struct client *c = client_next(w, NULL); c; c = client_next(w, c))
		if (c->state != CLIENT_CLOSED && c->admin_role == ADMIN_ROLE_NONE)
			stream_suspend(&c->stream, on);
	for (struct server *s = server_next(w, NULL); s; s = server_next(w, s))
		if (s->state != SERVER_CLOSED && s->stream_open)
			stream_suspend(&s->stream, on);
}

void worker_suspend(struct worker *w)
{
	w->suspended = true;
	w->suspended_at = uv_now(w->loop);
	listener_suspend(&w->listeners, true);
	suspend_streams(w, true);
}

/* suspend_timeout: the connections SUSPEND still waits for are closed, as in PgBouncer. */
static void suspend_tick(struct worker *w, uint64_t now)
{
	if (!w->suspended || w->cfg->suspend_timeout <= 0 ||
	    now - w->suspended_at < (uint64_t)w->cfg->suspend_timeout)
		return;
	struct client *c, *cn;
	for (c = TAILQ_FIRST(&w->clients); c; c = cn) {
		cn = TAILQ_NEXT(c, link);
		if (c->state != CLIENT_CLOSED && c->admin_role == ADMIN_ROLE_NONE &&
		    stream_unsent(&c->stream) > 0)
			client_fail(c, SQLSTATE_CONNECTION_FAILURE, "suspend_timeout");
	}
	struct server *s, *sn;
	for (s = TAILQ_FIRST(&w->servers); s; s = sn) {
		sn = TAILQ_NEXT(s, link);
		if (s->state != SERVER_CLOSED && s->stream_open && stream_unsent(&s->stream) > 0)
			server_close(s, "suspend_timeout");
	}
}

bool worker_suspend_done(struct worker *w)
{
	for (struct client *c = client_next(w, NULL); c; c = client_next(w, c))
		if (c->state != CLIENT_CLOSED && c->admin_role == ADMIN_ROLE_NONE &&
		    stream_unsent(&c->stream) > 0)
			return false;
	for (struct server *s = server_next(w, NULL); s; s = server_next(w, s))
		if (s->state != SERVER_CLOSED && s->stream_open && stream_unsent(&s->stream) > 0)
			return false;
	return true;
}

bool worker_resume_all(struct worker *w)
{
	bool paused = w->paused_all || w->suspended;
	w->paused_all = false;
	if (w->suspended) {
		w->suspended = false;
		if (w->shutdown == WORKER_RUNNING)
			listener_suspend(&w->listeners, false);
		suspend_streams(w, false);
	}
	for (struct db_state *ds = w->db_states; ds; ds = ds->hh.next) {
		paused = paused || ds->paused;
		ds->paused = false;
	}
	struct pool *p;
	TAILQ_FOREACH(p, &w->pools, link)
		worker_schedule_kick(w, p);
	return paused;
}

void worker_begin_shutdown(struct worker *w, enum worker_shutdown how)
{
	if (how > w->shutdown)
		w->shutdown = how;
	/* A shutdown ends a SUSPEND: the clients it waits for must be able to finish. */
	if (w->suspended) {
		w->suspended = false;
		listener_suspend(&w->listeners, false);
		suspend_streams(w, false);
	}
	/* While waiting, new logins are refused (pooler is shutting down) except the console's. */
	listener_stop(&w->listeners, how != WORKER_EXIT);
	/*
	 * Wake the check step even if no I/O happens; it may not run yet, when
	 * the start failed before worker_start (a refused takeover).
	 */
	uv_check_start(&w->flush_check, on_check);
	uv_timer_start(&w->tick, on_tick, 0, TICK_MS);
	struct pool *p;
	TAILQ_FOREACH(p, &w->pools, link)
		worker_schedule_kick(w, p);
}

static void close_handle(uv_handle_t *h)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void finish_exit(struct worker *w)
{
	log_info("shutting down");
	struct client *c;
	while ((c = TAILQ_FIRST(&w->clients)) != NULL)
		client_fail(c, SQLSTATE_ADMIN_SHUTDOWN, "sluice is shutting down");
	struct server *s;
	while ((s = TAILQ_FIRST(&w->servers)) != NULL)
		server_close(s, "shutdown");
	struct pool *p;
	while ((p = TAILQ_FIRST(&w->pools)) != NULL)
		pool_free(p);
	cancel_stop(w);
	/*
	 * The connections above abandoned their key derivations: queued ones
	 * are cancelled, running ones cannot be. uv_run() returns once they are
	 * all back (derive.h), so the loop closes with no work pending.
	 */
	if (w->derive.jobs)
		log_info("waiting for %d key derivation(s) to come back from the thread pool",
			 w->derive.jobs);
	listener_stop(&w->listeners, false);
	http_stop(w);
	takeover_link_stop(w);
	authq_free(w->authq);
	w->authq = NULL;
	/*
	 * Exiting: no waiting for peers to close (the tick that would end it
	 * stops now). Every stream that was dialing is closed by now.
	 */
	stream_ctx_tick(&w->io, UINT64_MAX, 0);
	/* Every stream is closed: the poll handles go once their owners have heard. */
	stream_ctx_close(&w->io);
	uv_timer_stop(&w->tick);
	close_handle((uv_handle_t *)&w->tick);
	uv_timer_stop(&w->poll_timer);
	close_handle((uv_handle_t *)&w->poll_timer);
	uv_check_stop(&w->flush_check);
	close_handle((uv_handle_t *)&w->flush_check);
	uv_prepare_stop(&w->clock_reset);
	close_handle((uv_handle_t *)&w->clock_reset);
	crew_leave(w);
	if (w->exit_cb)
		w->exit_cb(w);
}

/* A listener accepted fd: it becomes a client of this worker. */
/* A connection another worker accepted, for this one to serve (on_accept). */
struct accept_msg {
	struct crew_msg hdr;
	int fd;
	bool is_unix;
	struct sockaddr_storage peer;
};

static void on_accept_msg(struct worker *w, struct crew_msg *m)
{
	struct accept_msg *am = (struct accept_msg *)m;
	/* on_accept counted it here ahead; client_accept counts it for good. */
	__atomic_sub_fetch(&w->clients_now, 1, __ATOMIC_RELAXED);
	if (w->crew.gone)
		close(am->fd); /* its loop has ended: nobody to tell the client */
	else
		client_accept(w, am->fd, am->is_unix, (const struct sockaddr *)&am->peer);
	free(am);
}

/*
 * Whichever worker the kernel woke accepted the connection; it goes to the
 * worker with the fewest clients when that one has fewer by more than one,
 * so that the workers share the clients evenly however the threads are
 * scheduled (a loaded worker wakes last and would get few otherwise, or
 * an idle one all).
 */
static struct worker *least_loaded(struct worker *w)
{
	struct crew *cr = w->crew.of;
	/* Shutting down, a worker may end once its own clients are gone: keep what comes here. */
	if (!cr || !cr->started || w->shutdown != WORKER_RUNNING)
		return w;
	struct worker *best = w;
	int best_n = __atomic_load_n(&w->clients_now, __ATOMIC_RELAXED);
	for (int i = 0; i < cr->n; i++) {
		struct worker *x = cr->workers[i];
		int n = __atomic_load_n(&x->clients_now, __ATOMIC_RELAXED);
		if (n + 1 < best_n && !__atomic_load_n(&x->crew.gone, __ATOMIC_RELAXED)) {
			best = x;
			best_n = n;
		}
	}
	return best;
}

static void on_accept(void *owner, int fd, bool is_unix, const struct sockaddr *peer)
{
	struct worker *w = owner;
	/*
	 * With io_uring the reads reported before this connection are made
	 * first: a client's goodbye in the same round frees its place in
	 * max_client_conn before the newcomer is counted, as in the kernel's
	 * order (stream_ctx_read_batch).
	 */
	stream_ctx_read_batch(&w->io);
	struct worker *to = least_loaded(w);
	if (to != w) {
		struct accept_msg *am = xcalloc(1, sizeof(*am));
		am->hdr.run = on_accept_msg;
		am->fd = fd;
		am->is_unix = is_unix;
		memcpy(&am->peer, peer,
		       peer->sa_family == AF_INET6  ? sizeof(struct sockaddr_in6)
		       : peer->sa_family == AF_UNIX ? sizeof(struct sockaddr_un)
						    : sizeof(struct sockaddr_in));
		/* Counted there at once, so that the next accept sees it. */
		__atomic_add_fetch(&to->clients_now, 1, __ATOMIC_RELAXED);
		if (crew_post(to, &am->hdr))
			return;
		__atomic_sub_fetch(&to->clients_now, 1, __ATOMIC_RELAXED);
		free(am);
	}
	client_accept(w, fd, is_unix, peer);
}

/*
 * worker_settle's round: a message to every other worker, which sends it
 * straight back. A worker takes its mailbox when its wake-up handle fires,
 * and the kernel reports that handle after the sockets that were readable
 * before it was signalled, so an answer means those have been read.
 */
struct settle_msg {
	struct crew_msg hdr;
	struct worker *from;
};

static void start_settle_round(struct worker *w);

static void settle_answered(struct worker *w)
{
	if (--w->settle_replies > 0)
		return;
	/* client_settled may close a client, which takes it out of the array: take them first. */
	int n = w->settle_covered;
	struct client **done = xcalloc((size_t)n, sizeof(*done));
	memcpy(done, w->settling, (size_t)n * sizeof(*done));
	memmove(w->settling, w->settling + n, (size_t)(w->n_settling - n) * sizeof(*done));
	w->n_settling -= n;
	w->settle_covered = 0;
	for (int i = 0; i < n; i++) {
		if (done[i]) /* NULL: closed meanwhile */
			client_settled(done[i]);
	}
	free(done);
	if (w->n_settling > 0)
		start_settle_round(w);
}

static void on_settle_answer(struct worker *w, struct crew_msg *m)
{
	free(m);
	settle_answered(w);
}

static void on_settle_question(struct worker *w, struct crew_msg *m)
{
	(void)w;
	struct settle_msg *sm = (struct settle_msg *)m;
	sm->hdr.run = on_settle_answer;
	if (!crew_post(sm->from, &sm->hdr))
		free(sm);
}

static void start_settle_round(struct worker *w)
{
	struct crew *cr = w->crew.of;
	w->settle_covered = w->n_settling;
	w->settle_replies = 1; /* held until every question is out */
	for (int i = 0; i < cr->n; i++) {
		struct worker *x = cr->workers[i];
		if (x == w)
			continue;
		struct settle_msg *sm = xcalloc(1, sizeof(*sm));
		sm->hdr.run = on_settle_question;
		sm->from = w;
		if (crew_post(x, &sm->hdr))
			w->settle_replies++;
		else
			free(sm); /* gone: nothing left to catch up with */
	}
	settle_answered(w);
}

bool worker_settle(struct worker *w, struct client *c)
{
	struct crew *cr = w->crew.of;
	if (!cr || !cr->started || cr->n < 2 || crew_others_gone(w))
		return false;
	if (w->n_settling == w->settling_cap) {
		w->settling_cap = w->settling_cap ? 2 * w->settling_cap : 8;
		w->settling = xrealloc(w->settling, (size_t)w->settling_cap * sizeof(*w->settling));
	}
	w->settling[w->n_settling++] = c;
	if (w->settle_replies == 0)
		start_settle_round(w);
	return true;
}

void worker_settle_forget(struct worker *w, struct client *c)
{
	for (int i = 0; i < w->n_settling; i++) {
		if (w->settling[i] != c)
			continue;
		if (i < w->settle_covered) {
			w->settling[i] = NULL; /* the round in flight counts on its place */
		} else {
			memmove(w->settling + i, w->settling + i + 1,
				(size_t)(w->n_settling - i - 1) * sizeof(*w->settling));
			w->n_settling--;
		}
		return;
	}
}

/* The settings the stream layer applies to sockets from now on. */
static void configure_streams(struct worker *w)
{
	const struct config *cfg = w->cfg;
	w->io.max_packet_size = (uint32_t)cfg->max_packet_size;
	w->io.tcp = (struct stream_tcp_options){
		.keepalive = cfg->tcp_keepalive,
		.keepidle = cfg->tcp_keepidle,
		.keepintvl = cfg->tcp_keepintvl,
		.keepcnt = cfg->tcp_keepcnt,
		.user_timeout = (int)cfg->tcp_user_timeout,
		.defer_accept = cfg->tcp_defer_accept,
	};
	listener_set_retune(&w->listeners);
}

void worker_install_config(struct worker *w, struct config *cfg, struct auth_userlist *ul)
{
	struct config *old = w->cfg;
	struct auth_userlist *old_ul = w->userlist;
	w->cfg = config_ref(cfg);
	w->cfg_gen++;
	w->userlist = auth_userlist_ref(ul);
	configure_streams(w);
	authq_configure(w->authq, cfg);
	struct pool *p, *pn;
	for (p = TAILQ_FIRST(&w->pools); p; p = pn) {
		pn = TAILQ_NEXT(p, link);
		if (p->is_admin)
			continue;
		if (config_find_database(cfg, p->db_name)) {
			pool_reconfigure(p);
			continue;
		}
		/* The database is gone from the config: end its connections. */
		struct client *c, *cn;
		for (c = TAILQ_FIRST(&w->clients); c; c = cn) {
			cn = TAILQ_NEXT(c, link);
			if (c->pool == p)
				client_fail(c, SQLSTATE_ADMIN_SHUTDOWN,
					    "database %s was removed from the configuration",
					    p->db_name);
		}
		struct server *s, *sn;
		for (s = TAILQ_FIRST(&w->servers); s; s = sn) {
			sn = TAILQ_NEXT(s, link);
			if (s->pool == p)
				server_close(s, "database removed from configuration");
		}
		pool_free(p);
	}
	config_unref(old);
	auth_userlist_unref(old_ul);
	kick_all_pools(w);
	pool_create_warm(w);
}

/* ---- lifecycle ------------------------------------------------------------------ */

void worker_install_tls(struct worker *w, struct tls_ctx *client_tls, struct tls_ctx *server_tls,
			bool reconnect_servers)
{
	if (reconnect_servers) {
		/* An idle server closes at once and leaves the list: step before it goes. */
		struct server *s, *next;
		for (s = TAILQ_FIRST(&w->servers); s; s = next) {
			next = TAILQ_NEXT(s, link);
			server_mark_close_needed(s);
		}
		struct pool *p;
		TAILQ_FOREACH(p, &w->pools, link)
			pool_forget_login_failure(p);
	}
	tls_ctx_unref(w->client_tls);
	tls_ctx_unref(w->server_tls);
	w->client_tls = client_tls ? tls_ctx_ref(client_tls) : NULL;
	w->server_tls = server_tls ? tls_ctx_ref(server_tls) : NULL;
}

void worker_install_hba(struct worker *w, struct hba *h)
{
	hba_unref(w->hba);
	w->hba = hba_ref(h);
}

int worker_init(struct worker *w, uv_loop_t *loop, struct config *cfg, struct auth_userlist *ul)
{
	memset(w, 0, sizeof(*w));
	w->loop = loop;
	ledger_init(&w->own_ledger);
	w->ledger = &w->own_ledger;
	w->cfg = config_ref(cfg);
	w->cfg_gen++;
	w->userlist = auth_userlist_ref(ul);
	stream_ctx_init(&w->io, loop, BUF_FREE_MAX);
	listener_set_init(&w->listeners, loop, on_accept, w, &w->io.tcp);
	configure_streams(w);
	TAILQ_INIT(&w->clients);
	cancel_table_init(&w->cancel_keys);
	TAILQ_INIT(&w->servers);
	TAILQ_INIT(&w->pools);
	TAILQ_INIT(&w->released);
	TAILQ_INIT(&w->kick_queue);
	derive_queue_init(&w->derive, loop);
	w->authq = authq_new(loop);
	authq_configure(w->authq, cfg);
	w->start_time = (uint64_t)time(NULL);
	w->started_ns = uv_hrtime();
	w->poll_entered_ms = uv_now(loop);
	w->stats_rolled_at = uv_now(loop);
	rand_bytes(w->mock_seed, sizeof(w->mock_seed));
	uv_check_init(loop, &w->flush_check);
	uv_prepare_init(loop, &w->clock_reset);
	uv_timer_init(loop, &w->tick);
	uv_timer_init(loop, &w->poll_timer);
	if (cfg->io_uring != IO_URING_OFF) {
		int rc = stream_ctx_use_uring(&w->io);
		if (rc < 0 && cfg->io_uring == IO_URING_ON) {
			log_error("io_uring = on, but the kernel refused io_uring: %s",
				  uv_strerror(rc));
			return -1;
		}
	}
	return 0;
}

int worker_start(struct worker *w, const struct worker_sockets *ws)
{
	/* The check step first: a failed start exits through it (finish_exit). */
	uv_check_start(&w->flush_check, on_check);
	uv_prepare_start(&w->clock_reset, on_prepare);
	uv_timer_start(&w->tick, on_tick, TICK_MS, TICK_MS);
	if (ws && ws->share)
		return listener_share(&w->listeners, ws->share);
	int http_fd = ws ? ws->http_fd : -1;
	int rc = ws ? ws->n : 0;
	if (rc > 0 && ws->from_predecessor)
		rc = listener_take_over(&w->listeners, ws->fds, ws->n);
	else if (rc > 0)
		rc = listener_adopt_all(&w->listeners, w->cfg, ws->fds, ws->n);
	else if (rc == 0)
		rc = listener_start_all(&w->listeners, w->cfg);
	if (rc == 0) {
		rc = http_start(w, http_fd);
	} else if (http_fd >= 0) {
		close(http_fd);
	}
	return rc;
}

void worker_deinit(struct worker *w)
{
	ledger_deinit(&w->own_ledger);
	struct db_state *ds, *dtmp;
	HASH_ITER(hh, w->db_states, ds, dtmp) {
		HASH_DEL(w->db_states, ds);
		free(ds->name);
		free(ds);
	}
	cancel_table_deinit(&w->cancel_keys);
	free(w->settling);
	free(w->handing_over);
	w->handing_over = NULL;
	auth_userlist_unref(w->userlist);
	worker_install_tls(w, NULL, NULL, false);
	worker_install_hba(w, NULL);
	w->userlist = NULL;
	stream_ctx_deinit(&w->io);
	config_unref(w->cfg);
	w->cfg = NULL;
}

/* ---- auth_query for every worker (authq.h) ---------------------------------------- */

/*
 * The process has one auth_query cache and one connection per target:
 * worker 0's. Another worker's look-up is relayed there and its answer
 * back (crew.h), so a stampede on every worker still runs one query and a
 * failed login's forgetting holds for all.
 */
struct worker_lookup {
	struct authq_wait *local; /* worker 0's own */
	authq_cb cb;
	void *owner;
	bool cancelled; /* relayed: the owner left; freed when the answer comes */
};

struct lookup_msg {
	struct crew_msg hdr;
	struct worker_lookup *wl; /* the asker's, touched on its own loop only */
	int from;
	/* a request: the target and user, copied */
	struct config_host *hosts;
	int n_hosts;
	char *dbname, *user, *password, *query, *lookup_user;
	/* or a forget */
	char *forget_key;
	/* an answer, copied */
	struct authq_answer a;
	bool is_answer;
};

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

static void lookup_msg_free(struct lookup_msg *m)
{
	for (int i = 0; i < m->n_hosts; i++)
		free(m->hosts[i].host);
	free(m->hosts);
	free(m->dbname);
	free(m->user);
	free(m->password);
	free(m->query);
	free(m->lookup_user);
	free(m->forget_key);
	free((char *)m->a.secret);
	free((char *)m->a.error);
	free((char *)m->a.server_message);
	free((char *)m->a.sqlstate);
	free((char *)m->a.key);
	free(m);
}

static void on_lookup_msg(struct worker *w, struct crew_msg *hdr);

/* Worker 0: the answer to a relayed look-up goes back to its worker. */
static void relay_answer(struct worker *w, int to, struct worker_lookup *wl,
			 const struct authq_answer *a)
{
	struct lookup_msg *m = xcalloc(1, sizeof(*m));
	m->hdr.run = on_lookup_msg;
	m->is_answer = true;
	m->wl = wl;
	m->a = (struct authq_answer){
		.status = a->status,
		.secret = dup_or_null(a->secret),
		.error = dup_or_null(a->error),
		.server_message = dup_or_null(a->server_message),
		.sqlstate = dup_or_null(a->sqlstate),
		.key = dup_or_null(a->key),
	};
	if (!crew_post(w->crew.of->workers[to], &m->hdr)) {
		free(wl); /* that worker has left, and its clients with it */
		lookup_msg_free(m);
	}
}

struct relay {
	struct worker *w;
	int to;
	struct worker_lookup *wl;
};

static void on_relayed_answer(void *owner, const struct authq_answer *a)
{
	struct relay *r = owner;
	relay_answer(r->w, r->to, r->wl, a);
	free(r);
}

static void on_lookup_msg(struct worker *w, struct crew_msg *hdr)
{
	struct lookup_msg *m = (struct lookup_msg *)hdr;
	if (m->is_answer) {
		struct worker_lookup *wl = m->wl;
		if (!wl->cancelled && !w->crew.gone)
			wl->cb(wl->owner, &m->a);
		free(wl);
	} else if (m->forget_key) {
		if (!w->crew.gone)
			authq_forget(w->authq, m->forget_key);
	} else if (w->crew.gone) {
		struct authq_answer a = { .status = AUTHQ_CONNECT_FAILED,
					  .error = "sluice is shutting down" };
		relay_answer(w, m->from, m->wl, &a);
	} else {
		struct authq_target t = {
			.hosts = m->hosts,
			.n_hosts = m->n_hosts,
			.dbname = m->dbname,
			.user = m->user,
			.password = m->password,
			.query = m->query,
		};
		struct relay *r = xcalloc(1, sizeof(*r));
		*r = (struct relay){ .w = w, .to = m->from, .wl = m->wl };
		struct authq_answer now;
		struct authq_wait *wait;
		if (authq_lookup(w->authq, &t, m->lookup_user, on_relayed_answer, r, &now, &wait))
			on_relayed_answer(r, &now);
	}
	lookup_msg_free(m);
}

/* A look-up of worker 0's own answered: its owner hears, and the handle goes. */
static void on_local_answer(void *arg, const struct authq_answer *a)
{
	struct worker_lookup *wl = arg;
	wl->cb(wl->owner, a);
	free(wl);
}

/* Whether w relays its look-ups to worker 0. */
static bool relays(const struct worker *w)
{
	const struct crew *cr = w->crew.of;
	return cr && cr->started && w->crew.index != 0;
}

bool worker_authq_lookup(struct worker *w, const struct authq_target *t, const char *user,
			 authq_cb cb, void *owner, struct authq_answer *now,
			 struct worker_lookup **wait)
{
	struct worker_lookup *wl = xcalloc(1, sizeof(*wl));
	wl->cb = cb;
	wl->owner = owner;
	*wait = NULL;
	if (!relays(w)) {
		if (authq_lookup(w->authq, t, user, on_local_answer, wl, now, &wl->local)) {
			free(wl);
			return true;
		}
		*wait = wl;
		return false;
	}
	struct lookup_msg *m = xcalloc(1, sizeof(*m));
	m->hdr.run = on_lookup_msg;
	m->wl = wl;
	m->from = w->crew.index;
	m->n_hosts = t->n_hosts;
	m->hosts = xcalloc((size_t)t->n_hosts, sizeof(*m->hosts));
	for (int i = 0; i < t->n_hosts; i++)
		m->hosts[i] = (struct config_host){ dup_or_null(t->hosts[i].host),
						    t->hosts[i].port };
	m->dbname = dup_or_null(t->dbname);
	m->user = dup_or_null(t->user);
	m->password = dup_or_null(t->password);
	m->query = dup_or_null(t->query);
	m->lookup_user = xstrdup(user);
	if (!crew_post(w->crew.of->workers[0], &m->hdr)) {
		lookup_msg_free(m);
		free(wl);
		*now = (struct authq_answer){ .status = AUTHQ_CONNECT_FAILED,
					      .error = "sluice is shutting down" };
		return true;
	}
	*wait = wl;
	return false;
}

void worker_authq_cancel(struct worker_lookup *wl)
{
	if (!wl)
		return;
	if (wl->local) {
		authq_cancel(wl->local);
		free(wl);
	} else {
		wl->cancelled = true;
	}
}

void worker_authq_forget(struct worker *w, const char *key)
{
	if (!relays(w)) {
		authq_forget(w->authq, key);
		return;
	}
	struct lookup_msg *m = xcalloc(1, sizeof(*m));
	m->hdr.run = on_lookup_msg;
	m->forget_key = xstrdup(key);
	if (!crew_post(w->crew.of->workers[0], &m->hdr))
		lookup_msg_free(m);
}
