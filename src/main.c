/*
 * main.c - the command line, daemonizing, giving up root, the pidfile, and
 * wiring the process (process.h: configuration, signals, workers) to its loop. Nothing else: every behaviour lives in its
 * module.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
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
		"  -v, --verbose    more logging (repeat for more; kept over reloads)\n"
		"  -q, --quiet      log nothing to stderr when a logfile is set\n"
		"  -V, --version    print the version and exit\n"
		"  -h, --help       print this help and exit\n"
		"\n"
		"Signals: SIGHUP reloads, SIGTERM exits when clients are gone (twice: now),\n"
		"SIGINT exits when servers are released (twice: now).\n",
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
	if (geteuid() == 0 && listener_chown_unix(w, u->uid, u->gid) != 0)
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

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "daemon", no_argument, NULL, 'd' },  { "verbose", no_argument, NULL, 'v' },
		{ "quiet", no_argument, NULL, 'q' },   { "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },    { "user", required_argument, NULL, 'u' },
		{ NULL, 0, NULL, 0 },
	};
	bool daemon = false, quiet = false;
	const char *user = NULL;
	int verbose = 0, ch;
	while ((ch = getopt_long(argc, argv, "dvqVhu:", opts, NULL)) != -1) {
		switch (ch) {
		case 'd': daemon = true; break;
		case 'u': user = optarg; break;
		case 'v': verbose++; break;
		case 'q': quiet = true; break;
		case 'V':
			/* The first line is SHOW VERSION's, as PgBouncer's is. */
			printf("%s\nsluice %s\nlibuv %s\n%s\n", SLUICE_PRODUCT, SLUICE_VERSION,
			       uv_version_string(), OpenSSL_version(OPENSSL_VERSION));
			return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (argc - optind > 1) {
		usage(stderr);
		return 2;
	}
	const char *path = optind < argc ? argv[optind] : NULL;

	struct config_error err;
	struct config *cfg = config_load(path, &err);
	if (!cfg) {
		fprintf(stderr, "sluice: %s\n", err.text);
		return 1;
	}
	cfg->verbose = MIN(cfg->verbose + verbose, 3);
	if (process_log_setup(cfg, !daemon && !quiet) != 0) {
		fprintf(stderr, "sluice: cannot open logfile %s: %s\n", cfg->logfile, strerror(errno));
		config_unref(cfg);
		return 1;
	}
	/* The command line wins over the file, as in PgBouncer. */
	if (!user && *cfg->user)
		user = cfg->user;
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
	int report_fd = daemon ? daemonize() : -1;
	char *pidfile = cfg->pidfile && *cfg->pidfile ? xstrdup(cfg->pidfile) : NULL;
	signal(SIGPIPE, SIG_IGN);
	srandom((unsigned)time(NULL) ^ (unsigned)getpid());

	uv_loop_t loop;
	uv_loop_init(&loop);
	struct process pr;
	int rc = 1;
	if (process_init(&pr, &loop, cfg, verbose, !daemon && !quiet) != 0) {
		log_error("start-up failed");
		goto out;
	}
	if (process_start(&pr) != 0 || (run_as.name && become_user(&pr.worker, &run_as) != 0)) {
		process_shutdown(&pr, WORKER_EXIT);
		uv_run(&loop, UV_RUN_DEFAULT);
		process_deinit(&pr);
		goto out;
	}
	if (!run_as.name && geteuid() == 0)
		log_info("running as root: set user (or -u) to give root up once listening");
	/* The pidfile appears once sluice listens: its presence means "serving". */
	if (pidfile && write_pidfile(pidfile) != 0) {
		log_error("cannot write pidfile %s", pidfile);
		free(pidfile);
		pidfile = NULL;
		report_start(&report_fd, false);
		process_shutdown(&pr, WORKER_EXIT);
		uv_run(&loop, UV_RUN_DEFAULT);
		process_deinit(&pr);
		goto out;
	}
	report_start(&report_fd, true);
	log_info("sluice %s started (pid %d)", SLUICE_VERSION, (int)getpid());
	uv_run(&loop, UV_RUN_DEFAULT);
	rc = 0;
	process_deinit(&pr);
	log_info("sluice stopped");
out:
	report_start(&report_fd, false);
	uv_loop_close(&loop);
	if (pidfile) {
		unlink(pidfile);
		free(pidfile);
	}
	free(run_as.name);
	log_shutdown();
	return rc;
}
