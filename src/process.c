/*
 * process.c - the configuration in force, the signals and the process-wide
 * verbs, carried to the workers (see process.h).
 */
#include "sluice/process.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/client.h"
#include "sluice/crew.h"
#include "sluice/log.h"
#include "sluice/server.h"
#include "sluice/systemd.h"
#include "sluice/takeover.h"

/* How often the service manager's status line is brought up to date (when it changed). */
#define STATUS_INTERVAL_MS 2000

struct worker *process_worker(struct process *pr, int i)
{
	struct worker *w = pr->workers[i];
	return w->crew.gone ? NULL : w;
}

int process_n_workers(const struct worker *w)
{
	return w->process ? w->process->crew.n : 1;
}

struct worker *process_nth_worker(struct worker *w, int i)
{
	return w->process ? process_worker(w->process, i) : w;
}

/*
 * The next connection or pool after x on any worker (NULL: the first):
 * the rest of x's worker's list, then the next workers' lists in order.
 */
#define DEFINE_NEXT_OF_ANY_WORKER(name, type, next_on_worker)                                      \
	struct type *name(struct worker *w, struct type *x)                                        \
	{                                                                                          \
		int i = 0;                                                                         \
		if (x) {                                                                           \
			struct type *next = next_on_worker(x->w, x);                               \
			if (next)                                                                  \
				return next;                                                       \
			i = x->w->crew.index + 1;                                                  \
		}                                                                                  \
		for (; i < process_n_workers(w); i++) {                                            \
			struct worker *o = process_nth_worker(w, i);                               \
			struct type *first = o ? next_on_worker(o, NULL) : NULL;                   \
			if (first)                                                                 \
				return first;                                                      \
		}                                                                                  \
		return NULL;                                                                       \
	}

DEFINE_NEXT_OF_ANY_WORKER(process_client_next, client, client_next)
DEFINE_NEXT_OF_ANY_WORKER(process_server_next, server, server_next)
DEFINE_NEXT_OF_ANY_WORKER(process_pool_next, pool, pool_next)

static int cmp_pool(const void *a, const void *b)
{
	const struct pool *x = *(const struct pool *const *)a, *y = *(const struct pool *const *)b;
	int d = strcmp(x->db_name, y->db_name);
	return d ? d : strcmp(x->user_name, y->user_name);
}

struct pool_sum *process_pool_sums(struct worker *w, int *n)
{
	int count = 0;
	for (struct pool *p = process_pool_next(w, NULL); p; p = process_pool_next(w, p))
		count++;
	struct pool **v = xmalloc(sizeof(*v) * (size_t)(count ? count : 1));
	int i = 0;
	for (struct pool *p = process_pool_next(w, NULL); p; p = process_pool_next(w, p))
		v[i++] = p;
	qsort(v, (size_t)count, sizeof(*v), cmp_pool);
	struct pool_sum *sums = xcalloc((size_t)(count ? count : 1), sizeof(*sums));
	int k = -1;
	for (i = 0; i < count; i++) {
		struct pool_counts pc;
		pool_get_counts(v[i], &pc);
		if (k < 0 || cmp_pool(&v[i], &sums[k].pool) != 0) {
			sums[++k].pool = v[i];
			sums[k].counts = pc;
			sums[k].stats = v[i]->stats;
			continue;
		}
		struct pool_counts *t = &sums[k].counts;
		t->cl_active += pc.cl_active;
		t->cl_waiting += pc.cl_waiting;
		t->sv_active += pc.sv_active;
		t->sv_idle += pc.sv_idle;
		t->sv_tested += pc.sv_tested;
		t->sv_login += pc.sv_login;
		t->sv_being_canceled += pc.sv_being_canceled;
		t->cancels_active += pc.cancels_active;
		t->maxwait_us = MAX(t->maxwait_us, pc.maxwait_us);
		stats_pool_add(&sums[k].stats, &v[i]->stats);
	}
	free(v);
	*n = k + 1;
	return sums;
}

/* Every worker whose loop still runs, as w; the caller has stopped the world. */
#define EACH_WORKER(pr, i, w)                                                                      \
	for (int i = 0; i < (pr)->crew.n; i++)                                                     \
		if (((w) = process_worker((pr), i)) != NULL)

int process_log_setup(const struct config *cfg, bool also_stderr)
{
	enum log_level lvl = cfg->verbose >= 2	 ? LOG_LEVEL_NOISE
			     : cfg->verbose == 1 ? LOG_LEVEL_DEBUG
						 : LOG_LEVEL_INFO;
	int rc = log_setup(lvl, (enum log_format)cfg->log_format, cfg->logfile, also_stderr);
	log_setup_syslog(cfg->syslog, cfg->syslog_ident, cfg->syslog_facility);
	return rc;
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

/* The auth_hba_file rules and auth_ident_file maps when auth_type = hba (else NULL): 0, or -1 logged. */
static int load_hba(const struct config *cfg, struct hba **out)
{
	*out = NULL;
	if (cfg->auth_type != AUTH_TYPE_HBA)
		return 0;
	char err[512];
	*out = hba_load(cfg->auth_hba_file, cfg->auth_ident_file, err, sizeof(err));
	if (!*out) {
		log_error("%s", err);
		return -1;
	}
	/* PgBouncer loads such a file too; every login its rule matches will fail. */
	const char *map = hba_unknown_map(*out);
	if (map)
		log_warning(
			"%s: ident map \"%s\" is not in auth_ident_file: logins by its rule fail",
			cfg->auth_hba_file, map);
	return 0;
}

/* Makes h (one reference passes) the rules in force, in the process and every worker. */
static void install_hba(struct process *pr, struct hba *h)
{
	hba_unref(pr->hba);
	pr->hba = h;
	struct worker *w;
	EACH_WORKER(pr, i, w)
	worker_install_hba(w, h);
}

/*
 * The context cfg asks for on one side (accept: with clients), or NULL when
 * TLS is off there. When a file or value cannot be used, the reason is
 * logged, *failed is set and old stays (a new reference).
 */
static struct tls_ctx *side_tls(const struct config *cfg, bool accept, struct tls_ctx *old,
				bool *failed)
{
	struct tls_settings ts;
	if (accept)
		ts = (struct tls_settings){ cfg->client_tls_sslmode,   cfg->client_tls_key_file,
					    cfg->client_tls_cert_file, cfg->client_tls_ca_file,
					    cfg->client_tls_protocols, cfg->client_tls_ciphers,
					    cfg->client_tls13_ciphers, cfg->client_tls_ecdhcurve,
					    cfg->client_tls_dheparams };
	else
		ts = (struct tls_settings){ cfg->server_tls_sslmode,
					    cfg->server_tls_key_file,
					    cfg->server_tls_cert_file,
					    cfg->server_tls_ca_file,
					    cfg->server_tls_protocols,
					    cfg->server_tls_ciphers,
					    cfg->server_tls13_ciphers,
					    NULL,
					    NULL };
	if (ts.sslmode == SSLMODE_DISABLE)
		return NULL;
	char err[256];
	struct tls_ctx *ctx = tls_ctx_new(&ts, accept, err, sizeof(err));
	if (ctx)
		return ctx;
	/* "TLS setup failed" is PgBouncer's, which its operators and tests match. */
	log_error("TLS setup failed: %s_tls settings: %s%s", accept ? "client" : "server", err,
		  old ? "; the previous TLS context stays in use" : "");
	*failed = true;
	return old ? tls_ctx_ref(old) : NULL;
}

/* Whether a server_tls_* setting differs between a and b. */
static bool server_tls_differs(const struct config *a, const struct config *b)
{
	const char *const sa[] = { a->server_tls_key_file,	a->server_tls_cert_file,
				   a->server_tls_ca_file,	a->server_tls_protocols,
				   a->server_tls_ciphers,	a->server_tls13_ciphers,
				   a->server_tls_sslnegotiation };
	const char *const sb[] = { b->server_tls_key_file,	b->server_tls_cert_file,
				   b->server_tls_ca_file,	b->server_tls_protocols,
				   b->server_tls_ciphers,	b->server_tls13_ciphers,
				   b->server_tls_sslnegotiation };
	if (a->server_tls_sslmode != b->server_tls_sslmode)
		return true;
	for (size_t i = 0; i < ARRAY_SIZE(sa); i++)
		if (strcmp(sa[i] ? sa[i] : "", sb[i] ? sb[i] : "") != 0)
			return true;
	return false;
}

/*
 * Builds both sides' contexts from cfg and hands them to every worker;
 * false if one failed. reconnect: the server settings changed, so the
 * servers open now are closed as they are released (PgBouncer does the
 * same), and the next ones log in the new way.
 */
static bool install_tls(struct process *pr, const struct config *cfg, bool reconnect)
{
	bool failed = false;
	struct tls_ctx *c = side_tls(cfg, true, pr->client_tls, &failed);
	struct tls_ctx *s = side_tls(cfg, false, pr->server_tls, &failed);
	tls_ctx_unref(pr->client_tls);
	tls_ctx_unref(pr->server_tls);
	pr->client_tls = c;
	pr->server_tls = s;
	struct worker *w;
	EACH_WORKER(pr, i, w)
	worker_install_tls(w, c, s, reconnect);
	return !failed;
}

/*
 * Makes cfg (whose reference passes to the process) and ul (likewise; NULL
 * without auth_file) the ones in force, and hands them to every worker.
 */
static void install(struct process *pr, struct config *cfg, struct auth_userlist *ul)
{
	bool reconnect = server_tls_differs(pr->cfg, cfg);
	if (process_log_setup(cfg, pr->log_stderr) != 0)
		log_warning("cannot open logfile %s; logging stays where it was", cfg->logfile);
	config_unref(pr->cfg);
	auth_userlist_unref(pr->userlist);
	pr->cfg = cfg;
	pr->userlist = ul;
	struct worker *w;
	EACH_WORKER(pr, i, w)
	worker_install_config(w, cfg, ul);
	(void)install_tls(pr, cfg, reconnect);
}

static int reload(struct process *pr)
{
	struct config_error err;
	struct config *cfg = config_load(pr->cfg->path, &err);
	if (!cfg) {
		log_error("%s", err.text);
		return -1;
	}
	config_keep_restart_settings(cfg, pr->cfg);
	cfg->verbose = MIN(cfg->verbose + pr->verbose_extra, 3);
	struct auth_userlist *ul;
	if (load_userlist(cfg, &ul) != 0) {
		config_unref(cfg);
		return -1;
	}
	struct hba *h;
	if (load_hba(cfg, &h) != 0) {
		auth_userlist_unref(ul);
		config_unref(cfg);
		return -1;
	}
	/* A rotated logfile is let go here, as PgBouncer does on reload. */
	log_reopen();
	install(pr, cfg, ul);
	install_hba(pr, h);
	log_info("configuration reloaded");
	return 0;
}

int process_reload(struct process *pr)
{
	/* notify-reload waits for READY=1 after RELOADING=1, also when the reload failed. */
	systemd_notify_reloading();
	crew_stop_world(&pr->crew);
	int rc = reload(pr);
	crew_resume_world(&pr->crew);
	systemd_notify_ready();
	return rc;
}

int process_set(struct process *pr, const char *key, const char *value, struct config_error *err)
{
	/* Only this key changes: unreloaded edits of the file stay unapplied. */
	struct config *cfg = config_copy(pr->cfg);
	int rc = config_apply(cfg, key, value, err);
	if (rc != 0) {
		config_unref(cfg);
		if (rc == CONFIG_APPLY_IGNORED)
			log_warning("console SET: %s", err->text);
		return rc;
	}
	/* An auth_file change needs RELOAD: SET keeps the list in force. */
	crew_stop_world(&pr->crew);
	install(pr, cfg, auth_userlist_ref(pr->userlist));
	crew_resume_world(&pr->crew);
	log_info("console SET %s = %s", key, value);
	return 0;
}

void process_shutdown(struct process *pr, enum worker_shutdown how)
{
	if (pr->worker.shutdown == WORKER_RUNNING)
		systemd_notify_stopping();
	crew_stop_world(&pr->crew);
	struct worker *w;
	EACH_WORKER(pr, i, w)
	worker_begin_shutdown(w, how);
	crew_resume_world(&pr->crew);
}

bool process_pause_all(struct process *pr)
{
	crew_stop_world(&pr->crew);
	bool was = pr->worker.paused_all;
	struct worker *w;
	EACH_WORKER(pr, i, w)
	w->paused_all = true;
	crew_resume_world(&pr->crew);
	return !was;
}

bool process_resume_all(struct process *pr)
{
	crew_stop_world(&pr->crew);
	bool any = false;
	struct worker *w;
	EACH_WORKER(pr, i, w)
	any = worker_resume_all(w) || any;
	crew_resume_world(&pr->crew);
	return any;
}

bool process_paused_all(struct process *pr)
{
	return pr->worker.paused_all;
}

void process_summarize(struct process *pr, struct worker_summary *out)
{
	*out = (struct worker_summary){ 0 };
	crew_stop_world(&pr->crew);
	struct worker *w;
	EACH_WORKER(pr, i, w)
	{
		struct worker_summary one;
		worker_summarize(w, &one);
		out->clients += one.clients;
		out->clients_waiting += one.clients_waiting;
		out->servers += one.servers;
		out->servers_active += one.servers_active;
		out->servers_idle += one.servers_idle;
		out->xact_count += one.xact_count;
		out->query_count += one.query_count;
	}
	crew_resume_world(&pr->crew);
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct process *pr = h->data;
	enum worker_shutdown state = pr->worker.shutdown;
	switch (signum) {
	case SIGHUP:
		log_info("SIGHUP: reloading configuration");
		if (process_reload(pr) != 0)
			log_error("reload failed; the previous configuration stays in effect");
		break;
	case SIGTERM:
		if (state == WORKER_WAIT_CLIENTS) {
			log_info("second SIGTERM: exiting now");
			process_shutdown(pr, WORKER_EXIT);
		} else {
			log_info("SIGTERM: no new connections; exiting when clients are gone");
			process_shutdown(pr, WORKER_WAIT_CLIENTS);
		}
		break;
	case SIGINT:
		if (state == WORKER_WAIT_SERVERS) {
			log_info("second SIGINT: exiting now");
			process_shutdown(pr, WORKER_EXIT);
		} else {
			log_info("SIGINT: no new connections; exiting when servers are released");
			process_shutdown(pr, WORKER_WAIT_SERVERS);
		}
		break;
	case SIGQUIT:
		log_info("SIGQUIT: exiting now");
		process_shutdown(pr, WORKER_EXIT);
		break;
	case SIGUSR1:
		if (process_pause_all(pr))
			log_info("SIGUSR1: pausing all databases (as PAUSE)");
		else
			log_info("SIGUSR1: already paused");
		break;
	case SIGUSR2:
		if (state != WORKER_RUNNING)
			log_info("got SIGUSR2 while shutting down, ignoring");
		else if (process_resume_all(pr))
			log_info("SIGUSR2: resuming (as RESUME)");
		else
			log_info("SIGUSR2: not paused");
		break;
	}
}

/*
 * The service manager's status line: connections now, and transactions and
 * queries per second since the last sample. Sent only when it changed, so
 * an idle pooler sends nothing.
 */
static void on_status_timer(uv_timer_t *t)
{
	struct process *pr = container_of(t, struct process, status_timer);
	struct worker_summary sum;
	process_summarize(pr, &sum);
	uint64_t now = uv_now(pr->loop);
	uint64_t ms = now - pr->status_at;
	/* A pool that went at a reload took its totals along: no rate for that sample. */
	uint64_t xacts = sum.xact_count >= pr->status_xacts ? sum.xact_count - pr->status_xacts : 0;
	uint64_t queries = sum.query_count >= pr->status_queries
				   ? sum.query_count - pr->status_queries
				   : 0;
	bool first = pr->status_at == 0;
	pr->status_at = now;
	pr->status_xacts = sum.xact_count;
	pr->status_queries = sum.query_count;
	if (first || ms == 0) {
		xacts = queries = 0;
	} else {
		xacts = xacts * 1000 / ms;
		queries = queries * 1000 / ms;
	}

	static const char *const states[] = {
		[WORKER_RUNNING] = "",
		[WORKER_WAIT_CLIENTS] = "shutting down, waiting for clients; ",
		[WORKER_WAIT_SERVERS] = "shutting down, waiting for servers; ",
		[WORKER_EXIT] = "shutting down; ",
	};
	char line[sizeof(pr->status_sent)];
	snprintf(line, sizeof(line),
		 "%s%sclients: %d (%d waiting), servers: %d (%d active, %d idle), "
		 "%llu xacts/s, %llu queries/s",
		 states[pr->worker.shutdown], pr->worker.paused_all ? "paused; " : "", sum.clients,
		 sum.clients_waiting, sum.servers, sum.servers_active, sum.servers_idle,
		 (unsigned long long)xacts, (unsigned long long)queries);
	if (strcmp(line, pr->status_sent) == 0)
		return;
	snprintf(pr->status_sent, sizeof(pr->status_sent), "%s", line);
	systemd_notify_status(line);
}

static uv_signal_t *signal_handle(struct process *pr, int i)
{
	uv_signal_t *const all[] = { &pr->sig_term, &pr->sig_int,  &pr->sig_hup,
				     &pr->sig_quit, &pr->sig_usr1, &pr->sig_usr2 };
	return i < (int)ARRAY_SIZE(all) ? all[i] : NULL;
}

/*
 * The worker has stopped its handles: so do the signal watchers, or the loop
 * would never end.
 */
static void on_successor_exit(uv_process_t *h, int64_t status, int signo)
{
	struct process *pr = h->data;
	pr->restarting = false;
	uv_close((uv_handle_t *)h, NULL);
	if (status == 0 && signo == 0) {
		log_info("RESTART: the new process (pid %d) exited with status 0", h->pid);
		return;
	}
	log_warning("RESTART: the new process (pid %d) %s %d%s", h->pid,
		    signo ? "was killed by signal" : "exited with status",
		    signo ? signo : (int)status,
		    takeover_handed_over(&pr->worker) ? "" : "; this process serves on");
}

int process_restart(struct process *pr, char *why, size_t len)
{
	if (pr->restarting) {
		snprintf(why, len, "a restart is under way already (pid %d)", pr->successor.pid);
		return -1;
	}
	if (!pr->exe_path) {
		snprintf(why, len, "the path of sluice's binary is not known");
		return -1;
	}
	char *args[16];
	int n = 0;
	args[n++] = pr->exe_path;
	args[n++] = "-R";
	for (int i = 0; i < pr->verbose_extra && i < 3; i++)
		args[n++] = "-v";
	if (!pr->log_stderr)
		args[n++] = "-q";
	if (pr->cfg->path)
		args[n++] = pr->cfg->path;
	args[n] = NULL;
	/* Standard input, output and error are this process's; the rest is not inherited. */
	uv_stdio_container_t stdio[3] = {
		{ .flags = UV_INHERIT_FD, .data.fd = 0 },
		{ .flags = UV_INHERIT_FD, .data.fd = 1 },
		{ .flags = UV_INHERIT_FD, .data.fd = 2 },
	};
	uv_process_options_t opts = {
		.exit_cb = on_successor_exit,
		.file = pr->exe_path,
		.args = args,
		.flags = UV_PROCESS_DETACHED,
		.stdio_count = 3,
		.stdio = stdio,
	};
	int rc = uv_spawn(pr->loop, &pr->successor, &opts);
	if (rc != 0) {
		snprintf(why, len, "cannot start %s: %s", pr->exe_path, uv_strerror(rc));
		uv_close((uv_handle_t *)&pr->successor, NULL);
		return -1;
	}
	pr->successor.data = pr;
	pr->restarting = true;
	log_info("RESTART: started %s -R (pid %d) to take over", pr->exe_path, pr->successor.pid);
	return 0;
}

static void on_worker_exit(struct worker *w)
{
	struct process *pr = w->process;
	/* A successor still running is left to run: it is detached, and the sockets are its. */
	if (pr->restarting && !uv_is_closing((uv_handle_t *)&pr->successor)) {
		pr->restarting = false;
		uv_close((uv_handle_t *)&pr->successor, NULL);
	}
	uv_signal_t *h;
	for (int i = 0; (h = signal_handle(pr, i)) != NULL; i++)
		if (!uv_is_closing((uv_handle_t *)h))
			uv_close((uv_handle_t *)h, NULL);
	if (!uv_is_closing((uv_handle_t *)&pr->status_timer))
		uv_close((uv_handle_t *)&pr->status_timer, NULL);
}

int process_init(struct process *pr, uv_loop_t *loop, struct config *cfg, int verbose_extra,
		 bool log_stderr)
{
	memset(pr, 0, sizeof(*pr));
	pr->loop = loop;
	pr->cfg = cfg;
	pr->verbose_extra = verbose_extra;
	pr->log_stderr = log_stderr;
	int n = cfg->workers > 0 ? cfg->workers
				 : (int)MIN(uv_available_parallelism(), CONFIG_MAX_WORKERS);
	ledger_init(&pr->ledger);
	pr->workers = xcalloc((size_t)n, sizeof(*pr->workers));
	pr->workers[0] = &pr->worker;
	if (n > 1) {
		pr->more = xcalloc((size_t)n - 1, sizeof(*pr->more));
		pr->more_loops = xcalloc((size_t)n - 1, sizeof(*pr->more_loops));
	}
	if (load_userlist(cfg, &pr->userlist) != 0)
		return -1;
	struct hba *rules;
	if (load_hba(cfg, &rules) != 0)
		return -1;
	for (int i = 0; i < n; i++) {
		uv_loop_t *l = loop;
		if (i > 0) {
			l = &pr->more_loops[i - 1];
			uv_loop_init(l);
			pr->workers[i] = &pr->more[i - 1];
		}
		if (worker_init(pr->workers[i], l, cfg, pr->userlist) != 0) {
			hba_unref(rules);
			return -1;
		}
		pr->workers[i]->process = pr;
		pr->workers[i]->ledger = &pr->ledger;
	}
	if (cfg->io_uring == IO_URING_AUTO && !pr->worker.io.uring)
		log_warning("io_uring = auto: io_uring is not available%s; plain system calls",
			    stream_uring_built() ? " (the kernel refused it)" : " in this build");
	pr->worker.exit_cb = on_worker_exit;
	crew_init(&pr->crew, pr->workers, n);
	install_hba(pr, rules);
	if (!install_tls(pr, cfg, false))
		return -1;
	uv_signal_t *h;
	for (int i = 0; (h = signal_handle(pr, i)) != NULL; i++) {
		uv_signal_init(loop, h);
		h->data = pr;
	}
	uv_timer_init(loop, &pr->status_timer);
	return 0;
}

int process_start(struct process *pr, const struct worker_sockets *given)
{
	static const int signums[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };
	for (size_t i = 0; i < ARRAY_SIZE(signums); i++)
		uv_signal_start(signal_handle(pr, (int)i), on_signal, signums[i]);
	/* The first line right after READY=1 (the first loop round), then every interval. */
	if (systemd_notify_wanted())
		uv_timer_start(&pr->status_timer, on_status_timer, 0, STATUS_INTERVAL_MS);
	/*
	 * Socket activation: the service manager's sockets, from
	 * SYSTEMD_LISTEN_FDS_START on. A malformed LISTEN_FDS fails the start
	 * (worker_start returns that error and opens nothing).
	 */
	int n = given ? 0 : systemd_listen_fds();
	int *fds = n > 0 ? xcalloc((size_t)n, sizeof(*fds)) : NULL;
	for (int i = 0; i < n; i++)
		fds[i] = SYSTEMD_LISTEN_FDS_START + i;
	struct worker_sockets ws = { .fds = fds, .n = n, .http_fd = -1 };
	int rc = worker_start(&pr->worker, given ? given : &ws);
	free(fds);
	/* The other workers watch worker 0's listening sockets too. */
	struct worker_sockets shared = { .http_fd = -1, .share = &pr->worker.listeners };
	for (int i = 1; i < pr->crew.n && rc == 0; i++)
		rc = worker_start(pr->workers[i], &shared);
	if (rc == 0)
		rc = crew_start(&pr->crew);
	if (rc == 0 && pr->crew.n > 1)
		log_info("%d workers", pr->crew.n);
	return rc;
}

void process_deinit(struct process *pr)
{
	free(pr->exe_path);
	pr->exe_path = NULL;
	if (pr->crew.started) {
		crew_join(&pr->crew);
	} else {
		/* Threads never ran: their loops end here, through the shutdown begun for all. */
		for (int i = 1; i < pr->crew.n; i++)
			uv_run(pr->workers[i]->loop, UV_RUN_DEFAULT);
	}
	for (int i = 1; i < pr->crew.n; i++) {
		worker_deinit(pr->workers[i]);
		if (uv_loop_close(pr->workers[i]->loop) != 0)
			log_warning("worker %d: its loop still had handles at exit", i);
	}
	worker_deinit(&pr->worker);
	if (pr->crew.n > 0)
		crew_deinit(&pr->crew);
	free(pr->more);
	free(pr->more_loops);
	free(pr->workers);
	if (pr->crew.n > 0)
		ledger_deinit(&pr->ledger);
	pr->more = NULL;
	pr->more_loops = NULL;
	pr->workers = NULL;
	tls_ctx_unref(pr->client_tls);
	tls_ctx_unref(pr->server_tls);
	pr->client_tls = pr->server_tls = NULL;
	hba_unref(pr->hba);
	pr->hba = NULL;
	auth_userlist_unref(pr->userlist);
	config_unref(pr->cfg);
	pr->userlist = NULL;
	pr->cfg = NULL;
}
