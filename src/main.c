/*
 * main.c - the command line, daemonizing, giving up root, the pidfile, READY=1
 * for a service manager (systemd.h), and wiring the process (process.h:
 * configuration, signals, workers) to its loop. Nothing else: every
 * behaviour lives in its module.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <uv.h>

#include "sluice/config.h"
#include "sluice/listener.h"
#include "sluice/log.h"
#include "sluice/process.h"
#include "sluice/systemd.h"
#include "sluice/takeover.h"
#include "sluice_version.h"

static void usage(FILE *out)
{
	fprintf(out,
		"sluice %s - a PostgreSQL connection pooler\n"
		"\n"
		"Usage: sluice [OPTION]... [CONFIG.ini]\n"
		"\n"
		"CONFIG.ini is a sluice.ini or pgbouncer.ini. Without it, settings come from\n"
		"SLUICE_* environment variables only.\n"
		"\n"
		"Options:\n"
		"  -d, --daemon     run in the background (needs logfile, syslog or pidfile\n"
		"                   to be useful)\n"
		"  -u, --user=USER  run as USER once listening (started as root); overrides\n"
		"                   the user setting\n"
		"  -R, --reboot     online restart: take over the listening sockets and the\n"
		"                   clients of the sluice running with this configuration\n"
		"                   (through its unix socket), which exits once they moved\n"
		"  -v, --verbose    more logging (repeat for more; kept over reloads)\n"
		"  -q, --quiet      log nothing to stderr when a logfile is set\n"
		"  -V, --version    print the version and exit\n"
		"  -h, --help       print this help and exit\n"
		"\n"
		"Signals: SIGHUP reloads, SIGTERM exits when clients are gone (twice: now),\n"
		"SIGINT exits when servers are released (twice: now).\n"
		"\n"
		"Under systemd (when built with libsystemd, see --version): Type=notify\n"
		"units are told READY, RELOADING, STOPPING and a STATUS line; sockets passed\n"
		"by socket activation (LISTEN_FDS) replace listen_addr and unix_socket_dir.\n",
		SLUICE_VERSION);
}

static int write_pidfile(const char *path)
{
	char buf[32];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	ssize_t w = write(fd, buf, (size_t)n);
	close(fd);
	return w == n ? 0 : -EIO;
}

static bool pidfile_is_ours(const char *path)
{
	FILE *f = fopen(path, "r");
	long pid = -1;
	if (f) {
		if (fscanf(f, "%ld", &pid) != 1)
			pid = -1;
		fclose(f);
	}
	return pid == (long)getpid();
}

/* Who -u or the user setting names; looked up before anything is opened. */
struct run_as {
	char *name;
	uid_t uid;
	gid_t gid;
};

/*
 * Becomes the user, as PgBouncer's -u does, once the listeners are open (so
 * that a port below 1024 works) and before the pidfile is written: the unix
 * socket is handed to the user first, so that it can remove it at exit. The
 * groups become the user's own (initgroups), then the gid, then the uid; a
 * process that could get root back is refused. Not being root, only the
 * current user is possible. 0, or -1 with the reason logged in PgBouncer's
 * words.
 */
static int become_user(struct worker *w, const struct run_as *u)
{
	if (getuid() == u->uid && geteuid() == u->uid && getgid() == u->gid)
		return 0;
	if (geteuid() == 0 && listener_chown_unix(&w->listeners, w->cfg, u->uid, u->gid) != 0)
		return -1;
	if (geteuid() == 0 && initgroups(u->name, u->gid) != 0) {
		log_error("failed to reset groups: %s", strerror(errno));
		return -1;
	}
	if (setgid(u->gid) != 0 || setuid(u->uid) != 0) {
		log_error("failed to assume identity of user '%s': %s", u->name, strerror(errno));
		return -1;
	}
	if (getuid() != u->uid || geteuid() != u->uid || (u->uid != 0 && setuid(0) == 0)) {
		log_error("setuid() failed to work");
		return -1;
	}
	log_info("running as user %s (uid %u, gid %u)", u->name, (unsigned)u->uid,
		 (unsigned)u->gid);
	return 0;
}

/*
 * Forks into the background. The parent waits until the child reports that
 * it listens (or failed) and exits with that outcome, so `sluice -d` returning
 * 0 means the pooler is serving. Returns the child's end of the report pipe.
 */
static int daemonize(void)
{
	int fds[2];
	if (pipe(fds) != 0) {
		perror("sluice: pipe");
		exit(1);
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("sluice: fork");
		exit(1);
	}
	if (pid > 0) {
		close(fds[1]);
		char c = '1';
		ssize_t n;
		do
			n = read(fds[0], &c, 1);
		while (n < 0 && errno == EINTR);
		/* _exit: what the parent holds (the config) and its stdio buffers are the child's now. */
		_exit(n == 1 && c == '0' ? 0 : 1);
	}
	close(fds[0]);
	setsid();
	int fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		if (fd > 2)
			close(fd);
	}
	return fds[1];
}

/* Tells a waiting parent (after -d) whether start-up worked. */
static void report_start(int *fd, bool ok)
{
	if (*fd < 0)
		return;
	ssize_t w = write(*fd, ok ? "0" : "1", 1);
	(void)w;
	close(*fd);
	*fd = -1;
}

struct cmdline {
	bool daemon, quiet;
	bool reboot; /* -R: take over from the process running with this configuration */
	const char *user; /* -u */
	int verbose; /* how many -v */
	const char *path; /* the ini file, or NULL */
};

/* Reads the options into cl. Returns -1 to go on, or the exit status (--help, --version, errors). */
static int parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	static const struct option opts[] = {
		{ "daemon", no_argument, NULL, 'd' }, { "verbose", no_argument, NULL, 'v' },
		{ "quiet", no_argument, NULL, 'q' },  { "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },   { "user", required_argument, NULL, 'u' },
		{ "reboot", no_argument, NULL, 'R' }, { NULL, 0, NULL, 0 },
	};
	*cl = (struct cmdline){ 0 };
	int ch;
	while ((ch = getopt_long(argc, argv, "dvqVhRu:", opts, NULL)) != -1) {
		switch (ch) {
		case 'd':
			cl->daemon = true;
			break;
		case 'u':
			cl->user = optarg;
			break;
		case 'v':
			cl->verbose++;
			break;
		case 'q':
			cl->quiet = true;
			break;
		case 'V':
			/* The first line is SHOW VERSION's, as PgBouncer's is. */
			printf("%s\nsluice %s\nlibuv %s\n%s\n", SLUICE_PRODUCT, SLUICE_VERSION,
			       uv_version_string(), OpenSSL_version(OPENSSL_VERSION));
			/* Whether a Type=notify unit and socket activation can work. */
			if (systemd_built_in())
				printf("systemd support: yes (libsystemd %s: sd_notify, socket "
				       "activation)\n",
				       SLUICE_LIBSYSTEMD_VERSION);
			else
				printf("systemd support: no (built without libsystemd: use "
				       "Type=simple units, no socket activation)\n");
			if (SLUICE_WITH_URING)
				printf("io_uring support: yes (liburing %s)\n",
				       SLUICE_LIBURING_VERSION);
			else
				printf("io_uring support: no (built without liburing: io_uring = on "
				       "is refused)\n");
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		case 'R':
			cl->reboot = true;
			break;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (argc - optind > 1) {
		usage(stderr);
		return 2;
	}
	cl->path = optind < argc ? argv[optind] : NULL;
	return -1;
}

/*
 * Runs the process on loop until it exits: start, give root up, write the
 * pidfile, tell a waiting parent (report_fd after -d) how start-up went.
 * cfg's reference passes to the process. Returns the exit status;
 * *wrote_pidfile says whether the pidfile is this process's to remove.
 */
static int serve(uv_loop_t *loop, struct config *cfg, const struct cmdline *cl,
		 const struct run_as *run_as, int *report_fd, const char *pidfile,
		 bool *wrote_pidfile)
{
	struct process pr;
	if (process_init(&pr, loop, cfg, cl->verbose, !cl->daemon && !cl->quiet) != 0) {
		log_error("start-up failed");
		return 1;
	}
	/* RESTART runs the binary at this path: an upgraded binary put there takes over. */
	char exe[PATH_MAX];
	ssize_t exe_len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (exe_len > 0) {
		exe[exe_len] = '\0';
		pr.exe_path = xstrdup(exe);
	}
	int rc = 0;
	/*
	 * -R: the sockets come from the running process, which lets only its
	 * own OS user take them; so the user is taken on first (there is no
	 * socket file of ours to hand over to it).
	 */
	struct takeover_link *link = NULL;
	struct worker_sockets taken;
	if (cl->reboot) {
		if ((run_as->name && become_user(&pr.worker, run_as) != 0) ||
		    takeover_link_open(pr.cfg, &link) != 0) {
			log_error(
				"online restart (-R) failed: the running process, if any, serves on");
			rc = 1;
		} else {
			takeover_link_sockets(link, &taken);
		}
	}
	if (rc != 0 || process_start(&pr, link ? &taken : NULL) != 0 ||
	    (run_as->name && !cl->reboot && become_user(&pr.worker, run_as) != 0)) {
		rc = 1;
	} else {
		if (!run_as->name && geteuid() == 0)
			log_info(
				"running as root: set user (or -u) to give root up once listening");
		/* The pidfile appears once sluice listens: its presence means "serving". */
		if (pidfile && write_pidfile(pidfile) != 0) {
			log_error("cannot write pidfile %s", pidfile);
			rc = 1;
		}
		*wrote_pidfile = pidfile && rc == 0;
	}
	if (rc != 0) {
		/* The old process sees its console go before the clients, and serves on. */
		takeover_link_free(link);
		report_start(report_fd, false);
		process_shutdown(&pr, WORKER_EXIT);
		uv_run(loop, UV_RUN_DEFAULT);
		process_deinit(&pr);
		return rc;
	}
	report_start(report_fd, true);
	log_info("sluice %s started (pid %d)%s", SLUICE_VERSION, (int)getpid(),
		 link ? ", taking over" : "");
	/*
	 * Listening, root given up, pidfile written: a Type=notify unit is now
	 * active; after a takeover, with this process as its main one.
	 */
	if (link)
		systemd_notify_mainpid();
	systemd_notify_ready();
	if (link)
		takeover_link_start(link, &pr.worker);
	uv_run(loop, UV_RUN_DEFAULT);
	process_deinit(&pr);
	log_info("sluice stopped");
	return 0;
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	int rc = parse_cmdline(argc, argv, &cl);
	if (rc >= 0)
		return rc;

	struct config_error err;
	struct config *cfg = config_load(cl.path, &err);
	if (!cfg) {
		fprintf(stderr, "sluice: %s\n", err.text);
		return 1;
	}
	cfg->verbose = MIN(cfg->verbose + cl.verbose, 3);
	if (process_log_setup(cfg, !cl.daemon && !cl.quiet) != 0) {
		fprintf(stderr, "sluice: cannot open logfile %s: %s\n", cfg->logfile,
			strerror(errno));
		config_unref(cfg);
		return 1;
	}
	/* The command line wins over the file, as in PgBouncer. */
	const char *user = cl.user ? cl.user : *cfg->user ? cfg->user : NULL;
	struct run_as run_as = { 0 };
	if (user) {
		errno = 0;
		const struct passwd *pw = getpwnam(user);
		if (!pw) {
			log_error("could not find user '%s' to switch to", user);
			config_unref(cfg);
			log_shutdown();
			return 1;
		}
		run_as = (struct run_as){ xstrdup(pw->pw_name), pw->pw_uid, pw->pw_gid };
	}
	/*
	 * A service manager that waits for READY=1 follows the process it
	 * started, which exits at once with -d (NotifyAccess=main refuses the
	 * daemon's messages). Type=notify units run sluice in the foreground.
	 */
	if (cl.daemon && getenv("NOTIFY_SOCKET"))
		log_warning("-d with NOTIFY_SOCKET set: a Type=notify unit must run sluice "
			    "without -d");
	int report_fd = cl.daemon ? daemonize() : -1;
	char *pidfile = cfg->pidfile && *cfg->pidfile ? xstrdup(cfg->pidfile) : NULL;
	signal(SIGPIPE, SIG_IGN);
	srandom((unsigned)time(NULL) ^ (unsigned)getpid());

	uv_loop_t loop;
	uv_loop_init(&loop);
	bool wrote_pidfile = false;
	rc = serve(&loop, cfg, &cl, &run_as, &report_fd, pidfile, &wrote_pidfile);
	report_start(&report_fd, false);
	uv_loop_close(&loop);
	/*
	 * Only our own: after a failed start, the file may be another
	 * instance's, and after an online restart it names the successor.
	 */
	if (wrote_pidfile && pidfile_is_ours(pidfile))
		unlink(pidfile);
	free(pidfile);
	free(run_as.name);
	log_shutdown();
	return rc;
}
