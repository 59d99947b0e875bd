/*
 * worker.c - the event loop's owner: start-up, the deferred step after each
 * round of I/O, the periodic tick, reload and shutdown (see worker.h for the
 * loop agenda).
 */
#include "sluice/worker.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


#include "sluice/admin.h"
#include "sluice/cancel.h"
#include "sluice/client.h"
#include "sluice/derive.h"
#include "sluice/http.h"
#include "sluice/listener.h"
#include "sluice/log.h"
#include "sluice/pool.h"
#include "sluice/rand.h"
#include "sluice/server.h"
#include "sluice/sqlstate.h"

#define TICK_MS 250
/* Read buffers kept for reuse (16 KB each); a burst beyond this goes back to malloc. */
#define BUF_FREE_MAX 256
/* How long a connection closed with an error waits for its peer to close. */
#define LINGER_MS 2000

int worker_count_adjust(struct conn_count **table, const char *name, int delta)
{
	struct conn_count *cc;
	HASH_FIND_STR(*table, name, cc);
	if (!cc) {
		if (delta == 0)
			return 0;
		cc = xcalloc(1, sizeof(*cc));
		cc->name = xstrdup(name);
		HASH_ADD_KEYPTR(hh, *table, cc->name, strlen(cc->name), cc);
	}
	cc->n += delta;
	int n = cc->n;
	if (n == 0) {
		HASH_DEL(*table, cc);
		free(cc->name);
		free(cc);
	}
	return n;
}

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
	if (w->paused_all)
		return true;
	struct db_state *ds = worker_db_state(w, db, false);
	return ds && ds->paused;
}

void worker_schedule_flush(struct worker *w, struct stream *s)
{
	if (s->in_flush_queue)
		return;
	s->in_flush_queue = true;
	TAILQ_INSERT_TAIL(&w->flush_queue, s, flush_link);
}

void worker_schedule_kick(struct worker *w, struct pool *p)
{
	if (p->kick_scheduled)
		return;
	p->kick_scheduled = true;
	TAILQ_INSERT_TAIL(&w->kick_queue, p, kick_link);
}

static void finish_exit(struct worker *w);

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
 * The deferred step, run by libuv's check phase right after polling:
 *   1. assignment for every pool that gained a waiter or lost a server;
 *   2. every stream's queued output, one writev each (assignment may have
 *      queued some, so it runs first);
 *   3. a shutdown whose condition now holds.
 */
static void on_check(uv_check_t *h)
{
	struct worker *w = container_of(h, struct worker, flush_check);
	struct pool *p;
	while ((p = TAILQ_FIRST(&w->kick_queue)) != NULL)
		pool_kick(p); /* removes p from the queue */

	struct stream *s;
	while ((s = TAILQ_FIRST(&w->flush_queue)) != NULL) {
		TAILQ_REMOVE(&w->flush_queue, s, flush_link);
		s->in_flush_queue = false;
		stream_flush(s);
	}

	admin_poll(w);

	if ((w->shutdown == WORKER_WAIT_CLIENTS && w->client_count == 0) ||
	    (w->shutdown == WORKER_WAIT_SERVERS && total_active_servers(w) == 0) ||
	    w->shutdown == WORKER_EXIT)
		finish_exit(w);
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
			 (unsigned long long)avg.query_count, (unsigned long long)avg.client_parse_count,
			 (unsigned long long)avg.server_parse_count, (unsigned long long)avg.bind_count,
			 (unsigned long long)avg.bytes_received, (unsigned long long)avg.bytes_sent,
			 (unsigned long long)avg.xact_time, (unsigned long long)avg.query_time,
			 (unsigned long long)avg.wait_time);
	}
}

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
	stream_linger_expire(w, now, LINGER_MS);
	cancel_tick(w, now);
	listener_tick(w, now);
	pool_create_warm(w);
	struct pool *p, *pn;
	for (p = TAILQ_FIRST(&w->pools); p; p = pn) {
		pn = TAILQ_NEXT(p, link);
		pool_tick(p, now);
	}
	if (w->cfg->stats_period > 0 && now - w->stats_rolled_at >= (uint64_t)w->cfg->stats_period) {
		w->stats_rolled_at = now;
		roll_stats(w);
	}
}

/* ---- signals, reload, shutdown --------------------------------------------------- */

static void on_signal(uv_signal_t *h, int signum)
{
	struct worker *w = h->data;
	switch (signum) {
	case SIGHUP:
		log_info("SIGHUP: reloading configuration");
		if (worker_reload(w) != 0)
			log_error("reload failed; the previous configuration stays in effect");
		break;
	case SIGTERM:
		if (w->shutdown == WORKER_WAIT_CLIENTS) {
			log_info("second SIGTERM: exiting now");
			worker_begin_shutdown(w, WORKER_EXIT);
		} else {
			log_info("SIGTERM: no new connections; exiting when clients are gone");
			worker_begin_shutdown(w, WORKER_WAIT_CLIENTS);
		}
		break;
	case SIGINT:
		if (w->shutdown == WORKER_WAIT_SERVERS) {
			log_info("second SIGINT: exiting now");
			worker_begin_shutdown(w, WORKER_EXIT);
		} else {
			log_info("SIGINT: no new connections; exiting when servers are released");
			worker_begin_shutdown(w, WORKER_WAIT_SERVERS);
		}
		break;
	case SIGQUIT:
		log_info("SIGQUIT: exiting now");
		worker_begin_shutdown(w, WORKER_EXIT);
		break;
	case SIGUSR1:
		if (w->paused_all) {
			log_info("SIGUSR1: already paused");
		} else {
			log_info("SIGUSR1: pausing all databases (as PAUSE)");
			w->paused_all = true;
		}
		break;
	case SIGUSR2:
		if (w->shutdown != WORKER_RUNNING)
			log_info("got SIGUSR2 while shutting down, ignoring");
		else if (worker_resume_all(w))
			log_info("SIGUSR2: resuming (as RESUME)");
		else
			log_info("SIGUSR2: not paused");
		break;
	}
}

bool worker_resume_all(struct worker *w)
{
	bool paused = w->paused_all;
	w->paused_all = false;
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
	/* While waiting, new logins are refused (pooler is shutting down) except the console's. */
	listener_stop(w, how != WORKER_EXIT);
	/* Wake the check step even if no I/O happens. */
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
	/* Exiting: no waiting for peers to close (the tick that would end it stops now). */
	stream_linger_expire(w, UINT64_MAX, 0);
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
	if (w->derive_jobs)
		log_info("waiting for %d key derivation(s) to come back from the thread pool",
			 w->derive_jobs);
	listener_stop(w, false);
	http_stop(w);
	uv_timer_stop(&w->tick);
	close_handle((uv_handle_t *)&w->tick);
	uv_check_stop(&w->flush_check);
	close_handle((uv_handle_t *)&w->flush_check);
	close_handle((uv_handle_t *)&w->sig_term);
	close_handle((uv_handle_t *)&w->sig_int);
	close_handle((uv_handle_t *)&w->sig_hup);
	close_handle((uv_handle_t *)&w->sig_quit);
	close_handle((uv_handle_t *)&w->sig_usr1);
	close_handle((uv_handle_t *)&w->sig_usr2);
}

static int load_userlist(const struct config *cfg, struct auth_userlist **out)
{
	*out = NULL;
	if (!cfg->auth_file || !*cfg->auth_file)
		return 0;
	char err[512];
	if (auth_userlist_load(cfg->auth_file, out, err, sizeof(err)) != 0) {
		log_error("%s", err);
		return -1;
	}
	return 0;
}

static int install_config(struct worker *w, struct config *cfg, bool read_auth_file);

int worker_log_setup(const struct config *cfg, bool also_stderr)
{
	enum log_level lvl = cfg->verbose >= 2	 ? LOG_LEVEL_NOISE
			     : cfg->verbose == 1 ? LOG_LEVEL_DEBUG
						 : LOG_LEVEL_INFO;
	int rc = log_setup(lvl, (enum log_format)cfg->log_format, cfg->logfile, also_stderr);
	log_setup_syslog(cfg->syslog, cfg->syslog_ident, cfg->syslog_facility);
	return rc;
}

int worker_reload(struct worker *w)
{
	struct config_error err;
	struct config *cfg = config_load(w->cfg->path, &err);
	if (!cfg) {
		log_error("%s", err.text);
		return -1;
	}
	config_keep_restart_settings(cfg, w->cfg);
	cfg->verbose = MIN(cfg->verbose + w->verbose_extra, 3);
	/* A rotated logfile is let go here, as PgBouncer does on reload. */
	log_reopen();
	if (install_config(w, cfg, true) != 0)
		return -1;
	log_info("configuration reloaded");
	return 0;
}

int worker_set(struct worker *w, const char *key, const char *value, struct config_error *err)
{
	/* Only this key changes: unreloaded edits of the file stay unapplied. */
	struct config *cfg = config_copy(w->cfg);
	int rc = config_apply(cfg, key, value, err);
	if (rc != 0) {
		config_free(cfg);
		if (rc == CONFIG_APPLY_IGNORED)
			log_warning("console SET: %s", err->text);
		return rc;
	}
	if (install_config(w, cfg, false) != 0) {
		snprintf(err->text, sizeof(err->text), "the new configuration could not be installed");
		return -1;
	}
	log_info("console SET %s = %s", key, value);
	return 0;
}

/*
 * Publishes cfg (taking ownership), with a freshly read auth file when asked
 * (RELOAD) or the current one (SET; an auth_file change needs RELOAD).
 */
static int install_config(struct worker *w, struct config *cfg, bool read_auth_file)
{
	struct auth_userlist *ul = w->userlist;
	if (read_auth_file && load_userlist(cfg, &ul) != 0) {
		config_free(cfg);
		return -1;
	}
	if (worker_log_setup(cfg, w->log_stderr) != 0)
		log_warning("cannot open logfile %s; logging stays where it was", cfg->logfile);
	struct config *old = w->cfg;
	struct auth_userlist *old_ul = w->userlist;
	w->cfg = cfg;
	w->userlist = ul;
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
					    "database %s was removed from the configuration", p->db_name);
		}
		struct server *s, *sn;
		for (s = TAILQ_FIRST(&w->servers); s; s = sn) {
			sn = TAILQ_NEXT(s, link);
			if (s->pool == p)
				server_close(s, "database removed from configuration");
		}
		pool_free(p);
	}
	config_free(old);
	if (old_ul != ul)
		auth_userlist_free(old_ul);
	kick_all_pools(w);
	pool_create_warm(w);
	return 0;
}

/* ---- lifecycle ------------------------------------------------------------------ */

int worker_init(struct worker *w, uv_loop_t *loop, struct config *cfg)
{
	memset(w, 0, sizeof(*w));
	w->log_stderr = true;
	w->loop = loop;
	w->cfg = cfg;
	buf_pool_init(&w->bufs, BUF_FREE_MAX);
	TAILQ_INIT(&w->clients);
	TAILQ_INIT(&w->servers);
	TAILQ_INIT(&w->pools);
	TAILQ_INIT(&w->flush_queue);
	TAILQ_INIT(&w->linger_queue);
	TAILQ_INIT(&w->kick_queue);
	derive_init(w);
	w->start_time = (uint64_t)time(NULL);
	w->stats_rolled_at = uv_now(loop);
	rand_bytes(w->mock_seed, sizeof(w->mock_seed));
	if (load_userlist(cfg, &w->userlist) != 0)
		return -1;
	uv_check_init(loop, &w->flush_check);
	uv_timer_init(loop, &w->tick);
	uv_signal_init(loop, &w->sig_term);
	uv_signal_init(loop, &w->sig_int);
	uv_signal_init(loop, &w->sig_hup);
	uv_signal_init(loop, &w->sig_quit);
	uv_signal_init(loop, &w->sig_usr1);
	uv_signal_init(loop, &w->sig_usr2);
	w->sig_term.data = w->sig_int.data = w->sig_hup.data = w;
	w->sig_quit.data = w->sig_usr1.data = w->sig_usr2.data = w;
	return 0;
}

int worker_start(struct worker *w)
{
	/* The check step first: a failed start exits through it (finish_exit). */
	uv_check_start(&w->flush_check, on_check);
	uv_timer_start(&w->tick, on_tick, TICK_MS, TICK_MS);
	uv_signal_start(&w->sig_term, on_signal, SIGTERM);
	uv_signal_start(&w->sig_int, on_signal, SIGINT);
	uv_signal_start(&w->sig_hup, on_signal, SIGHUP);
	uv_signal_start(&w->sig_quit, on_signal, SIGQUIT);
	uv_signal_start(&w->sig_usr1, on_signal, SIGUSR1);
	uv_signal_start(&w->sig_usr2, on_signal, SIGUSR2);
	int rc = listener_start_all(w);
	if (rc == 0)
		rc = http_start(w);
	return rc;
}

static void count_table_free(struct conn_count **table)
{
	struct conn_count *cc, *tmp;
	HASH_ITER(hh, *table, cc, tmp) {
		HASH_DEL(*table, cc);
		free(cc->name);
		free(cc);
	}
}

void worker_deinit(struct worker *w)
{
	count_table_free(&w->db_counts);
	count_table_free(&w->user_counts);
	count_table_free(&w->db_client_counts);
	count_table_free(&w->user_client_counts);
	struct db_state *ds, *dtmp;
	HASH_ITER(hh, w->db_states, ds, dtmp) {
		HASH_DEL(w->db_states, ds);
		free(ds->name);
		free(ds);
	}
	auth_userlist_free(w->userlist);
	w->userlist = NULL;
	while (w->out_free) {
		struct stream_out *o = w->out_free;
		w->out_free = o->next_free;
		free(o);
	}
	buf_pool_deinit(&w->bufs);
	config_free(w->cfg);
	w->cfg = NULL;
}
