/*
 * process.c - the configuration in force, the signals and the process-wide
 * verbs, carried to the workers (see process.h).
 */
#include "sluice/process.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/log.h"
#include "sluice/systemd.h"
#include "sluice/takeover.h"

/* How often the service manager's status line is brought up to date (when it changed). */
#define STATUS_INTERVAL_MS 2000

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
	worker_install_hba(&pr->worker, h);
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
	worker_install_tls(&pr->worker, c, s, reconnect);
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
	worker_install_config(&pr->worker, cfg, ul);
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
	int rc = reload(pr);
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
	install(pr, cfg, auth_userlist_ref(pr->userlist));
	log_info("console SET %s = %s", key, value);
	return 0;
}

void process_shutdown(struct process *pr, enum worker_shutdown how)
{
	if (pr->worker.shutdown == WORKER_RUNNING)
		systemd_notify_stopping();
	worker_begin_shutdown(&pr->worker, how);
}

bool process_pause_all(struct process *pr)
{
	bool was = pr->worker.paused_all;
	pr->worker.paused_all = true;
	return !was;
}

bool process_resume_all(struct process *pr)
{
	return worker_resume_all(&pr->worker);
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
	worker_summarize(&pr->worker, &sum);
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
	if (load_userlist(cfg, &pr->userlist) != 0)
		return -1;
	struct hba *rules;
	if (load_hba(cfg, &rules) != 0)
		return -1;
	if (worker_init(&pr->worker, loop, cfg, pr->userlist) != 0) {
		hba_unref(rules);
		return -1;
	}
	pr->worker.process = pr;
	pr->worker.exit_cb = on_worker_exit;
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
	return rc;
}

void process_deinit(struct process *pr)
{
	free(pr->exe_path);
	pr->exe_path = NULL;
	worker_deinit(&pr->worker);
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
