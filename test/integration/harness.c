/*
 * harness.c - a throwaway PostgreSQL and per-test sluice processes for the
 * Check integration suites; the contracts are in harness.h.
 *
 * It owns every process it starts and the executable's temporary directory.
 * It does not own sluice's behaviour: everything it knows about sluice is the
 * command line, the ini keys it writes and the ports it waits for.
 *
 * Every wait here is a polling loop with a deadline (no test may hang), and
 * every failure goes through harness_die(), which fails the running Check
 * test, or exits when PostgreSQL is being set up before the tests run.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* How long the pieces may take before the harness gives up (ms, unscaled). */
#define PG_CTL_TIMEOUT_MS 60000
#define SLUICE_START_TIMEOUT_MS 10000
#define SLUICE_STOP_TIMEOUT_MS 15000
#define TCASE_TIMEOUT_S 60
#define POLL_INTERVAL_MS 20
#define START_ATTEMPTS 3

/*
 * The PostgreSQL of this executable. Filled in once, before Check forks, so
 * every test child sees the same values; nothing in it changes afterwards.
 */
static struct {
	bool started;
	pid_t owner; /* the process that started it and must stop it */
	long startup_ms;
	int port;
	char *dir; /* the executable's temporary directory */
	char *datadir;
	char *bindir;
	char *setup_log; /* output of initdb and pg_ctl */
	char *server_log; /* PostgreSQL's own log */
	bool as_postgres; /* run PostgreSQL's binaries as the OS user postgres */
	uid_t pg_uid;
	gid_t pg_gid;
	struct harness_pg pub;
} pg;

/* harness_pg_enable_ssl() was called: PostgreSQL starts with ssl = on. */
static bool pg_ssl;

/* The directory's creator removes it at exit; see harness_dir(). */
static pid_t dir_owner;
/* true only while harness_run_suite() sets up before the first test. */
static bool outside_tests;
static bool cleanup_registered;

/*
 * sluice processes started and not yet freed, for the exit handler: a test
 * that fails half-way leaves its sluice behind, and this process (or, in fork
 * mode, the kernel through PR_SET_PDEATHSIG) must kill it.
 */
struct sluice_entry {
	struct harness_sluice *s;
	pid_t creator;
	struct sluice_entry *next;
};
static struct sluice_entry *live_sluices;

/* ---- small helpers ------------------------------------------------------- */

/*
 * Fails the current test with a message, or, before the tests run, prints it
 * and exits (the exit handler cleans up). Never returns.
 */
static void harness_die(const char *fmt, ...) PRINTF_LIKE(1, 2) __attribute__((noreturn));
static void harness_die(const char *fmt, ...)
{
	char msg[8192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (outside_tests) {
		fprintf(stderr, "harness: %s\n", msg);
		exit(EXIT_FAILURE);
	}
	ck_abort_msg("harness: %s", msg);
	abort(); /* not reached: ck_abort_msg does not return */
}

int harness_rng_below(uint64_t *state, int n)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return (int)((z ^ (z >> 31)) % (uint64_t)n);
}

long harness_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void harness_sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Under a wrapper such as valgrind sluice starts and stops many times slower. */
static int wait_scale(void)
{
	const char *w = getenv("SLUICE_WRAPPER");
	return w && *w ? 10 : 1;
}

/* Exit status as the shell reports it: the code, or 128 + the signal. */
static int decode_status(int wstatus)
{
	if (WIFEXITED(wstatus))
		return WEXITSTATUS(wstatus);
	if (WIFSIGNALED(wstatus))
		return 128 + WTERMSIG(wstatus);
	return -1;
}

/*
 * Waits up to timeout_ms for pid. Returns its decoded status, or -1 if it is
 * still running (it is then neither killed nor reaped).
 */
static int wait_pid_bounded(pid_t pid, int timeout_ms)
{
	long deadline = harness_now_ms() + timeout_ms;
	for (;;) {
		int wstatus;
		pid_t r = waitpid(pid, &wstatus, WNOHANG);
		if (r == pid)
			return decode_status(wstatus);
		if (r < 0 && errno != EINTR)
			return -1;
		if (harness_now_ms() >= deadline)
			return -1;
		harness_sleep_ms(POLL_INTERVAL_MS);
	}
}

/* The whole file as a heap string; NULL if it cannot be read. */
static char *read_text_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	size_t cap = 4096, len = 0;
	char *text = xmalloc(cap);
	size_t n;
	while ((n = fread(text + len, 1, cap - len - 1, f)) > 0) {
		len += n;
		if (cap - len - 1 == 0) {
			cap *= 2;
			text = xrealloc(text, cap);
		}
	}
	fclose(f);
	text[len] = '\0';
	return text;
}

static void write_text_file(const char *path, const char *text, bool append)
{
	FILE *f = fopen(path, append ? "a" : "w");
	if (!f)
		harness_die("cannot write %s: %s", path, strerror(errno));
	fputs(text, f);
	if (fclose(f) != 0)
		harness_die("cannot write %s: %s", path, strerror(errno));
}

/* The last part of a log, for failure messages that must stay readable. */
static const char *tail_of(const char *text, size_t max)
{
	if (!text)
		return "(no log)";
	size_t len = strlen(text);
	return len > max ? text + len - max : text;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void rm_rf(const char *path)
{
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Replaces every occurrence of each key by its value; a fresh heap string. */
static char *substitute(const char *text, const char *const *pairs, size_t npairs)
{
	char *out = xstrdup(text);
	for (size_t i = 0; i + 1 < npairs; i += 2) {
		const char *key = pairs[i], *value = pairs[i + 1];
		char *hit;
		size_t offset = 0;
		while ((hit = strstr(out + offset, key)) != NULL) {
			size_t at = (size_t)(hit - out);
			char *next = xasprintf("%.*s%s%s", (int)at, out, value, hit + strlen(key));
			free(out);
			out = next;
			offset = at + strlen(value);
		}
	}
	return out;
}

/* vprintf into a fresh heap string; aborts on out-of-memory like xasprintf. */
static char *vformat(const char *fmt, va_list ap)
{
	char *s = NULL;
	if (vasprintf(&s, fmt, ap) < 0) {
		fprintf(stderr, "harness: out of memory formatting a string\n");
		abort();
	}
	return s;
}

/* printf onto the end of a heap string, replacing it. */
static void appendf(char **s, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void appendf(char **s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *tail = vformat(fmt, ap);
	va_end(ap);
	char *joined = xasprintf("%s%s", *s, tail);
	free(*s);
	free(tail);
	*s = joined;
}

/* Whether the ini text sets key (a line "key =" or "key=", leading blanks allowed). */
static bool ini_has_key(const char *text, const char *key)
{
	size_t klen = strlen(key);
	const char *line = text;
	while (line && *line) {
		const char *p = line + strspn(line, " \t");
		if (strncmp(p, key, klen) == 0) {
			p += klen;
			p += strspn(p, " \t");
			if (*p == '=')
				return true;
		}
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	return false;
}

/*
 * Runs argv (argv[0] a path) with stdout and stderr appended to out_path,
 * optionally as the OS user postgres, and waits up to timeout_ms. Returns the
 * decoded exit status, or -1 when it was killed for taking too long.
 */
static int run_command(char *const argv[], bool as_postgres, const char *out_path,
	int timeout_ms)
{
	pid_t pid = fork();
	if (pid < 0)
		harness_die("fork: %s", strerror(errno));
	if (pid == 0) {
		int out = open(out_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (out < 0 || in < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
			_exit(126);
		/* initdb may chdir back to where it started; make that somewhere it may read. */
		if (chdir(pg.dir ? pg.dir : "/") < 0)
			_exit(126);
		bool dropped = !as_postgres ||
			(setgroups(1, &pg.pg_gid) == 0 && setgid(pg.pg_gid) == 0 &&
				setuid(pg.pg_uid) == 0);
		if (!dropped) {
			dprintf(2, "harness: cannot become postgres: %s\n", strerror(errno));
			_exit(126);
		}
		execv(argv[0], argv);
		dprintf(2, "harness: exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	int status = wait_pid_bounded(pid, timeout_ms);
	if (status < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	return status;
}

/* ---- the temporary directory and the exit handler ------------------------ */

static void kill_own_sluices(void)
{
	for (struct sluice_entry *e = live_sluices; e; e = e->next) {
		if (e->creator == getpid() && e->s->pid > 0) {
			kill(e->s->pid, SIGKILL);
			waitpid(e->s->pid, NULL, 0);
			e->s->pid = 0;
		}
	}
}

static void stop_pg_immediately(void)
{
	char *pg_ctl = xasprintf("%s/pg_ctl", pg.bindir);
	char *argv[] = { pg_ctl, "-D", pg.datadir, "-m", "immediate", "-w", "-t", "30", "stop",
		NULL };
	run_command(argv, pg.as_postgres, pg.setup_log, PG_CTL_TIMEOUT_MS);
	free(pg_ctl);
}

/*
 * Runs in every process that inherited it, so each part is guarded by the pid
 * that owns it: Check's test children exit() through here too and must not
 * stop the PostgreSQL their siblings still use.
 */
static void harness_cleanup(void)
{
	kill_own_sluices();
	if (pg.started && pg.owner == getpid()) {
		stop_pg_immediately();
		pg.started = false;
	}
	if (pg.dir && dir_owner == getpid() && !getenv("HARNESS_KEEP")) {
		rm_rf(pg.dir);
	}
}

/*
 * A signal that ends the whole executable (meson's timeout sends SIGTERM)
 * must still stop PostgreSQL: exit() runs harness_cleanup(). This is not
 * async-signal-safe in theory; in practice the parent is waiting for a test
 * child when the signal comes, and a leaked postgres is the worse outcome.
 */
static void on_fatal_signal(int sig)
{
	signal(sig, SIG_DFL);
	exit(128 + sig);
}

static void register_cleanup(void)
{
	if (cleanup_registered)
		return;
	cleanup_registered = true;
	atexit(harness_cleanup);
}

/* The executable's temporary directory, created on first use (owned by postgres when root). */
static const char *harness_dir(void)
{
	if (pg.dir)
		return pg.dir;
	register_cleanup();
	if (geteuid() == 0) {
		struct passwd *pw = getpwnam("postgres");
		if (!pw)
			harness_die("as root, PostgreSQL must run as the OS user 'postgres', "
				    "which does not exist");
		pg.as_postgres = true;
		pg.pg_uid = pw->pw_uid;
		pg.pg_gid = pw->pw_gid;
	}
	const char *base = getenv("TMPDIR");
	char *templ = xasprintf("%s/sluice-it.XXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(templ))
		harness_die("mkdtemp %s: %s", templ, strerror(errno));
	if (pg.as_postgres && chown(templ, pg.pg_uid, pg.pg_gid) < 0)
		harness_die("chown %s: %s", templ, strerror(errno));
	pg.dir = templ;
	dir_owner = getpid();
	return pg.dir;
}

/* ---- PostgreSQL ---------------------------------------------------------- */

static char *find_bindir(void)
{
	const char *env = getenv("PG_BINDIR");
	if (env && *env)
		return xstrdup(env);
	FILE *p = popen("pg_config --bindir", "r");
	char line[4096] = "";
	if (!p || !fgets(line, sizeof(line), p)) {
		if (p)
			pclose(p);
		harness_die("PG_BINDIR is not set and `pg_config --bindir` gave nothing");
	}
	pclose(p);
	line[strcspn(line, "\r\n")] = '\0';
	return xstrdup(line);
}

static const char pg_hba_conf[] =
	"# Written by the sluice integration harness.\n"
	"local all all trust\n"
	"local replication " HARNESS_SUPERUSER " trust\n"
	"host replication " HARNESS_SUPERUSER " 127.0.0.1/32 trust\n"
	"host all md5user 127.0.0.1/32 md5\n"
	"host all scramuser 127.0.0.1/32 scram-sha-256\n"
	"host all plainuser 127.0.0.1/32 password\n"
	"host all all 127.0.0.1/32 trust\n";

/* Settings appended after initdb; a later "port" line from a retry overrides this one. */
static void write_pg_settings(void)
{
	char *conf = xasprintf("%s/postgresql.conf", pg.datadir);
	char *text = xasprintf("\n# sluice integration harness\n"
			       "port = %d\n"
			       "listen_addresses = '127.0.0.1'\n"
			       "unix_socket_directories = '%s'\n"
			       "fsync = off\n"
			       "synchronous_commit = off\n"
			       "full_page_writes = off\n"
			       "max_connections = 200\n"
			       /* check_replication: pg_recvlogical and subscribers. */
			       "wal_level = logical\n"
			       "max_wal_senders = 20\n"
			       "max_replication_slots = 20\n"
			       "shared_buffers = 32MB\n",
		pg.port, pg.dir);
	write_text_file(conf, text, true);
	free(text);
	if (pg_ssl) {
		const char *tls = harness_tls_dir();
		text = xasprintf("ssl = on\nssl_cert_file = '%s/server.crt'\n"
				 "ssl_key_file = '%s/server.key'\nssl_ca_file = '%s/ca.crt'\n",
			tls, tls, tls);
		write_text_file(conf, text, true);
		free(text);
	}
	free(conf);
	char *hba = xasprintf("%s/pg_hba.conf", pg.datadir);
	write_text_file(hba, pg_hba_conf, false);
	free(hba);
}

static int pg_ctl_start(void)
{
	char *pg_ctl = xasprintf("%s/pg_ctl", pg.bindir);
	char *argv[] = { pg_ctl, "-D", pg.datadir, "-l", pg.server_log, "-w", "-t", "60", "start",
		NULL };
	int status = run_command(argv, pg.as_postgres, pg.setup_log, PG_CTL_TIMEOUT_MS);
	free(pg_ctl);
	return status;
}

/* Runs sql on a superuser connection to dbname; harness_die() on error. */
static char *pg_exec_on(const char *dbname, const char *sql)
{
	char *conninfo = xasprintf("host=%s port=%d user=%s dbname=%s connect_timeout=10", pg.dir,
		pg.port, HARNESS_SUPERUSER, dbname);
	PGconn *conn = PQconnectdb(conninfo);
	free(conninfo);
	if (PQstatus(conn) != CONNECTION_OK) {
		char *err = xstrdup(PQerrorMessage(conn));
		PQfinish(conn);
		harness_die("superuser connection to PostgreSQL failed: %s", err);
	}
	PGresult *res = PQexec(conn, sql);
	ExecStatusType st = PQresultStatus(res);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		char *err = xstrdup(PQerrorMessage(conn));
		PQclear(res);
		PQfinish(conn);
		harness_die("superuser query failed: %s\n%s", sql, err);
	}
	char *value = NULL;
	if (st == PGRES_TUPLES_OK && PQntuples(res) > 0 && PQnfields(res) > 0 &&
		!PQgetisnull(res, 0, 0))
		value = xstrdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	PQfinish(conn);
	return value;
}

/* The roles, database and table described in harness.h. */
static void provision(void)
{
	static const char *const on_postgres[] = {
		"SET password_encryption = 'md5';"
		"CREATE ROLE md5user LOGIN PASSWORD 'md5userpw';"
		"SET password_encryption = 'scram-sha-256';"
		"CREATE ROLE scramuser LOGIN PASSWORD 'scramuserpw';"
		"CREATE ROLE plainuser LOGIN PASSWORD 'plainuserpw';"
		"CREATE ROLE trustuser LOGIN PASSWORD 'trustuserpw';",
		/* CREATE DATABASE refuses the implicit transaction of a multi-statement string. */
		"CREATE DATABASE " HARNESS_DATABASE,
		"GRANT ALL ON DATABASE " HARNESS_DATABASE " TO PUBLIC",
	};
	static const char on_app[] =
		"GRANT ALL ON SCHEMA public TO PUBLIC;"
		"CREATE TABLE items (id int PRIMARY KEY, name text);"
		"INSERT INTO items VALUES (1, 'one'), (2, 'two'), (3, 'three');"
		"GRANT ALL ON items TO PUBLIC;";
	for (size_t i = 0; i < ARRAY_SIZE(on_postgres); i++)
		free(pg_exec_on("postgres", on_postgres[i]));
	free(pg_exec_on(HARNESS_DATABASE, on_app));
}

static void pg_start_and_provision(void)
{
	long t0 = harness_now_ms();
	harness_dir();
	pg.bindir = find_bindir();
	pg.datadir = xasprintf("%s/data", pg.dir);
	pg.setup_log = xasprintf("%s/pg_setup.log", pg.dir);
	pg.server_log = xasprintf("%s/postgres.log", pg.dir);

	char *initdb = xasprintf("%s/initdb", pg.bindir);
	char *argv[] = { initdb, "-D", pg.datadir, "-U", HARNESS_SUPERUSER, "-A", "trust", "-E",
		"UTF8", "--no-locale", "--no-sync", NULL };
	int status = run_command(argv, pg.as_postgres, pg.setup_log, PG_CTL_TIMEOUT_MS);
	free(initdb);
	if (status != 0) {
		char *log = read_text_file(pg.setup_log);
		harness_die("initdb failed (status %d):\n%s", status, tail_of(log, 3000));
	}

	/* A free port may be taken before postgres binds it: retry on another. */
	for (int attempt = 1;; attempt++) {
		pg.port = harness_free_port();
		write_pg_settings();
		status = pg_ctl_start();
		if (status == 0)
			break;
		char *log = read_text_file(pg.server_log);
		bool in_use = log && strstr(log, "already in use");
		if (!in_use || attempt == START_ATTEMPTS) {
			char *setup = read_text_file(pg.setup_log);
			harness_die("pg_ctl start failed (status %d):\n%s\n%s", status,
				tail_of(setup, 2000), tail_of(log, 3000));
		}
		free(log);
	}
	pg.started = true;
	pg.owner = getpid();
	provision();

	pg.pub.host = "127.0.0.1";
	pg.pub.port = pg.port;
	pg.pub.socket_dir = pg.dir;
	pg.pub.superuser = HARNESS_SUPERUSER;
	pg.pub.bindir = pg.bindir;
	pg.pub.dir = pg.dir;
	pg.startup_ms = harness_now_ms() - t0;
}

const struct harness_pg *harness_pg(void)
{
	if (!pg.pub.host)
		pg_start_and_provision();
	return &pg.pub;
}

long harness_pg_startup_ms(void)
{
	return pg.startup_ms;
}

void harness_pg_stop(void)
{
	harness_pg();
	char *pg_ctl = xasprintf("%s/pg_ctl", pg.bindir);
	char *argv[] = { pg_ctl, "-D", pg.datadir, "-m", "fast", "-w", "-t", "60", "stop", NULL };
	int status = run_command(argv, pg.as_postgres, pg.setup_log, PG_CTL_TIMEOUT_MS);
	free(pg_ctl);
	if (status != 0) {
		char *log = read_text_file(pg.setup_log);
		harness_die("pg_ctl stop failed (status %d):\n%s", status, tail_of(log, 2000));
	}
}

void harness_pg_start(void)
{
	harness_pg();
	int status = pg_ctl_start();
	if (status != 0) {
		char *log = read_text_file(pg.server_log);
		harness_die("pg_ctl start failed (status %d):\n%s", status, tail_of(log, 3000));
	}
}

void harness_pg_restart(void)
{
	harness_pg_stop();
	harness_pg_start();
}

char *harness_pg_exec(const char *fmt, ...)
{
	harness_pg();
	va_list ap;
	va_start(ap, fmt);
	char *sql = vformat(fmt, ap);
	va_end(ap);
	char *value = pg_exec_on(HARNESS_DATABASE, sql);
	free(sql);
	return value;
}

long harness_pg_exec_long(const char *fmt, ...)
{
	harness_pg();
	va_list ap;
	va_start(ap, fmt);
	char *sql = vformat(fmt, ap);
	va_end(ap);
	char *value = pg_exec_on(HARNESS_DATABASE, sql);
	if (!value)
		harness_die("no value from: %s", sql);
	char *end;
	long n = strtol(value, &end, 10);
	if (*end != '\0')
		harness_die("not an integer (%s) from: %s", value, sql);
	free(value);
	free(sql);
	return n;
}

/* ---- ports and sockets --------------------------------------------------- */

int harness_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		harness_die("socket: %s", strerror(errno));
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0 };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(sa);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
		int err = errno;
		close(fd);
		harness_die("cannot find a free port: %s", strerror(err));
	}
	close(fd);
	return ntohs(sa.sin_port);
}

int harness_raw_connect(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		harness_die("socket: %s", strerror(errno));
	struct timeval tv = { .tv_sec = 10 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int err = errno;
		close(fd);
		harness_die("connect to 127.0.0.1:%d: %s", port, strerror(err));
	}
	return fd;
}

/*
 * Whether something listens on 127.0.0.1:port (or on any address), read from
 * /proc/net/tcp so that waiting for sluice does not itself open a client
 * connection that would show up in sluice's logs and statistics.
 */
/*
 * Whether a socket listens at path (/proc/net/unix, flag __SO_ACCEPTCON),
 * without connecting: a probe would be a client in sluice's log and ids.
 * The file alone says less: it exists from bind(), before listen().
 */
static bool unix_socket_listening(const char *path)
{
	FILE *f = fopen("/proc/net/unix", "r");
	if (!f)
		return access(path, F_OK) == 0;
	char line[1024];
	bool found = false;
	while (!found && fgets(line, sizeof(line), f)) {
		unsigned flags;
		char p[512];
		if (sscanf(line, "%*x: %*x %*x %x %*x %*x %*u %511s", &flags, p) != 2)
			continue;
		found = (flags & 0x10000) && strcmp(p, path) == 0;
	}
	fclose(f);
	return found;
}

static bool tcp_port_listening(int port)
{
	FILE *f = fopen("/proc/net/tcp", "r");
	if (!f) {
		/* No procfs: fall back to a probing connect. */
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_in sa = { .sin_family = AF_INET };
		sa.sin_port = htons((uint16_t)port);
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
		if (fd >= 0)
			close(fd);
		return ok;
	}
	char line[512];
	bool found = false;
	while (!found && fgets(line, sizeof(line), f)) {
		unsigned addr, lport, state;
		if (sscanf(line, " %*d: %8X:%4X %*8X:%*4X %2X", &addr, &lport, &state) != 3)
			continue;
		/* 0A is TCP_LISTEN; the address is in network order, printed as a host integer. */
		found = state == 0x0A && lport == (unsigned)port &&
			(addr == 0 || addr == htonl(INADDR_LOOPBACK));
	}
	fclose(f);
	return found;
}

/* ---- sluice -------------------------------------------------------------- */

static const char *sluice_bin(void)
{
	const char *bin = getenv("SLUICE_BIN");
	if (!bin || !*bin)
		harness_die("SLUICE_BIN is not set (meson test sets it to the built sluice)");
	return bin;
}

/* At most this many sockets are passed (struct harness_spawn). */
#define SPAWN_MAX_FDS 16

/*
 * In the child, before exec: applies spawn's environment and puts its
 * sockets at 3, 4, ... with LISTEN_FDS and LISTEN_PID. Returns false when
 * that cannot be done (the child then exits).
 */
static bool apply_spawn(const struct harness_spawn *spawn)
{
	for (const char *const *e = spawn->env; e && *e; e++) {
		const char *eq = strchr(*e, '=');
		if (eq) {
			char *name = strndup(*e, (size_t)(eq - *e));
			bool ok = name && setenv(name, eq + 1, 1) == 0;
			free(name);
			if (!ok)
				return false;
		} else if (unsetenv(*e) != 0) {
			return false;
		}
	}
	int n = spawn->n_listen_fds;
	if (n <= 0)
		return true;
	if (n > SPAWN_MAX_FDS)
		return false;
	/*
	 * Copies above the targets first, so that a socket that already is one
	 * of 3.. is not overwritten before it is moved; they close at exec.
	 */
	int tmp[SPAWN_MAX_FDS];
	for (int i = 0; i < n; i++)
		if ((tmp[i] = fcntl(spawn->listen_fds[i], F_DUPFD_CLOEXEC, 3 + n)) < 0)
			return false;
	for (int i = 0; i < n; i++)
		if (dup2(tmp[i], 3 + i) < 0) /* the copy at 3 + i is not close-on-exec */
			return false;
	char num[16];
	snprintf(num, sizeof(num), "%d", n);
	if (setenv("LISTEN_FDS", num, 1) != 0)
		return false;
	snprintf(num, sizeof(num), "%d", (int)getpid());
	return setenv("LISTEN_PID", num, 1) == 0;
}

/*
 * Forks and execs `[wrapper words...] sluice ini`, output to the log, with
 * what spawn adds (may be NULL); returns the child's pid.
 */
static pid_t spawn_sluice_as(const struct harness_sluice *s, const struct harness_spawn *spawn,
	const char *bin, bool reboot)
{
	const char *wrapper = getenv("SLUICE_WRAPPER");
	char *words = xstrdup(wrapper ? wrapper : "");
	char *argv[64];
	size_t argc = 0;
	char *save = NULL;
	for (char *w = strtok_r(words, " \t", &save); w && argc < ARRAY_SIZE(argv) - 3;
		w = strtok_r(NULL, " \t", &save))
		argv[argc++] = w;
	argv[argc++] = (char *)bin;
	if (reboot)
		argv[argc++] = "-R";
	argv[argc++] = s->ini_path;
	argv[argc] = NULL;

	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0)
		harness_die("fork: %s", strerror(errno));
	if (pid == 0) {
		/* Die with the test process however it ends (Check's _exit, a timeout). */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(125);
		int out = open(s->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (out < 0 || in < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
			_exit(126);
		if (spawn && !apply_spawn(spawn)) {
			dprintf(2, "harness: cannot set up the environment or sockets: %s\n",
				strerror(errno));
			_exit(126);
		}
		execvp(argv[0], argv);
		dprintf(2, "harness: exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	free(words);
	return pid;
}

static pid_t spawn_sluice(const struct harness_sluice *s, const struct harness_spawn *spawn)
{
	return spawn_sluice_as(s, spawn, sluice_bin(), false);
}

static void write_sluice_files(struct harness_sluice *s, const char *sluice_extra,
	const char *databases, const char *userlist)
{
	bool need_pg = !databases || (sluice_extra && strstr(sluice_extra, "@PG")) ||
		strstr(databases, "@PG") || (userlist && strstr(userlist, "@PG"));
	const struct harness_pg *p = need_pg ? harness_pg() : NULL;
	char port[16];
	snprintf(port, sizeof(port), "%d", p ? p->port : 0);
	const char *const pairs[] = {
		"@PGHOST@", "127.0.0.1", "@PGPORT@", port,
		"@PGSOCKET@", p ? p->socket_dir : "", "@DIR@", s->dir,
	};
	const char *extra = sluice_extra ? sluice_extra : "";
	const char *dbs = databases ? databases
				    : "app = host=@PGHOST@ port=@PGPORT@ dbname=app\n"
				      "postgres = host=@PGHOST@ port=@PGPORT@ dbname=postgres\n";

	char *userlist_path = xasprintf("%s/userlist.txt", s->dir);
	if (userlist) {
		char *text = substitute(userlist, pairs, ARRAY_SIZE(pairs));
		write_text_file(userlist_path, text, false);
		free(text);
	}

	/*
	 * Defaults only for keys the test does not set itself, so that no key
	 * appears twice. listen_port is always the harness's: tests need to know it.
	 */
	char *raw = xasprintf("[sluice]\n; written by the sluice integration harness\n"
			      "listen_port = %d\n", s->port);
	if (!ini_has_key(extra, "listen_addr"))
		appendf(&raw, "listen_addr = 127.0.0.1\n");
	if (!ini_has_key(extra, "unix_socket_dir"))
		appendf(&raw, "unix_socket_dir = %s\n", s->dir);
	if (!ini_has_key(extra, "logfile"))
		appendf(&raw, "logfile =\n");
	if (userlist && !ini_has_key(extra, "auth_file"))
		appendf(&raw, "auth_file = %s\n", userlist_path);
	/* The suites' second run (meson: <suite>_w2) is with several workers. */
	const char *workers = getenv("SLUICE_TEST_WORKERS");
	if (workers && *workers && !ini_has_key(extra, "workers"))
		appendf(&raw, "workers = %s\n", workers);
	/*
	 * The <suite>_uring runs are with io_uring, except under valgrind:
	 * memcheck does not see the kernel fill a buffer through the ring, and
	 * would report every byte read that way as uninitialised.
	 */
	const char *uring = getenv("SLUICE_TEST_IO_URING");
	const char *wrapper = getenv("SLUICE_WRAPPER");
	if (uring && *uring && !ini_has_key(extra, "io_uring") &&
	    !(wrapper && strstr(wrapper, "valgrind")))
		appendf(&raw, "io_uring = %s\n", uring);
	appendf(&raw, "%s\n[databases]\n%s\n[users]\n", extra, dbs);
	char *ini = substitute(raw, pairs, ARRAY_SIZE(pairs));
	write_text_file(s->ini_path, ini, false);
	free(ini);
	free(raw);
	free(userlist_path);
}

static struct harness_sluice *sluice_start(const char *sluice_extra, const char *databases,
	const char *userlist, int fixed_port, const struct harness_spawn *spawn);

struct harness_sluice *harness_sluice_start(const char *sluice_extra, const char *databases,
	const char *userlist)
{
	return sluice_start(sluice_extra, databases, userlist, 0, NULL);
}

struct harness_sluice *harness_sluice_start_on_port(const char *sluice_extra,
	const char *databases, const char *userlist, int port)
{
	return sluice_start(sluice_extra, databases, userlist, port, NULL);
}

struct harness_sluice *harness_sluice_start_with(const char *sluice_extra, const char *databases,
	const char *userlist, const struct harness_spawn *spawn)
{
	return sluice_start(sluice_extra, databases, userlist, 0, spawn);
}

/* Whether sluice's log says it started: it listens, and it has given up root. */
static bool log_says_started(const struct harness_sluice *s)
{
	char *log = read_text_file(s->log_path);
	bool found = log && strstr(log, " started (pid ") != NULL;
	free(log);
	return found;
}

static struct harness_sluice *sluice_start(const char *sluice_extra, const char *databases,
	const char *userlist, int fixed_port, const struct harness_spawn *spawn)
{
	const char *base = harness_dir();
	struct harness_sluice *s = xcalloc(1, sizeof(*s));
	s->dir = xasprintf("%s/sluice.XXXXXX", base);
	if (!mkdtemp(s->dir))
		harness_die("mkdtemp %s: %s", s->dir, strerror(errno));
	s->ini_path = xasprintf("%s/sluice.ini", s->dir);
	s->log_path = xasprintf("%s/sluice.log", s->dir);

	struct sluice_entry *e = xcalloc(1, sizeof(*e));
	e->s = s;
	e->creator = getpid();
	e->next = live_sluices;
	live_sluices = e;

	/* On a shared port the TCP port says nothing: its own unix socket does. */
	bool tcp = !(sluice_extra && ini_has_key(sluice_extra, "listen_addr")) && !fixed_port;
	/* Passed sockets listen before sluice runs: only its log can say that it is up. */
	bool passed = spawn && spawn->n_listen_fds > 0;
	int timeout = SLUICE_START_TIMEOUT_MS * wait_scale();
	for (int attempt = 1;; attempt++) {
		s->port = fixed_port ? fixed_port : harness_free_port();
		write_sluice_files(s, sluice_extra, databases, userlist);
		s->pid = spawn_sluice(s, spawn);
		char *sock = xasprintf("%s/.s.PGSQL.%d", s->dir, s->port);
		long deadline = harness_now_ms() + timeout;
		bool up = false, exited = false;
		while (!up && harness_now_ms() < deadline) {
			int wstatus;
			if (waitpid(s->pid, &wstatus, WNOHANG) == s->pid) {
				s->status = decode_status(wstatus);
				s->pid = 0;
				exited = true;
				break;
			}
			up = passed ? log_says_started(s)
				    : tcp ? tcp_port_listening(s->port) : unix_socket_listening(sock);
			if (!up)
				harness_sleep_ms(POLL_INTERVAL_MS);
		}
		/*
		 * sluice binds its TCP port a moment before its unix socket (so that
		 * a port in use stops it before it replaces another process's socket
		 * file): give the socket that moment. A fake sluice may have none.
		 */
		bool own_unix = !(sluice_extra && ini_has_key(sluice_extra, "unix_socket_dir"));
		for (long end = harness_now_ms() + 1000;
		     up && tcp && own_unix && !passed && !unix_socket_listening(sock) &&
		     harness_now_ms() < end;)
			harness_sleep_ms(POLL_INTERVAL_MS);
		free(sock);
		if (up)
			return s;
		char *log = read_text_file(s->log_path);
		if (exited && log && strstr(log, "in use") && attempt < START_ATTEMPTS &&
			!fixed_port && !passed) {
			/* Someone took the free port first; truncate the log and try another. */
			free(log);
			write_text_file(s->log_path, "", false);
			continue;
		}
		if (!exited) {
			kill(s->pid, SIGKILL);
			waitpid(s->pid, NULL, 0);
			s->pid = 0;
		}
		char *what = exited ? xasprintf("exited with status %d during start-up", s->status)
				    : xasprintf("did not listen within %d ms", timeout);
		char *msg = xasprintf("sluice %s (port %d, %s):\n%s", what, s->port, s->ini_path,
			tail_of(log, 4000));
		free(what);
		free(log);
		harness_die("%s", msg);
	}
}

int harness_sluice_wait(struct harness_sluice *s, int timeout_ms)
{
	if (s->pid == 0)
		return s->status;
	int status = wait_pid_bounded(s->pid, timeout_ms);
	if (status >= 0) {
		s->status = status;
		s->pid = 0;
	}
	return status;
}

int harness_sluice_reboot(struct harness_sluice *s, const char *bin, int timeout_ms)
{
	pid_t old = s->pid;
	pid_t fresh = spawn_sluice_as(s, NULL, bin ? bin : sluice_bin(), true);
	int status = old ? wait_pid_bounded(old, timeout_ms * wait_scale()) : s->status;
	s->pid = fresh;
	s->status = 0;
	return status;
}

void harness_subreaper(void)
{
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
		harness_die("prctl(PR_SET_CHILD_SUBREAPER): %s", strerror(errno));
}

int harness_sluice_follow_restart(struct harness_sluice *s, int timeout_ms)
{
	pid_t old = s->pid;
	int status = old ? wait_pid_bounded(old, timeout_ms * wait_scale()) : s->status;
	char *path = xasprintf("%s/sluice.pid", s->dir);
	char *text = read_text_file(path);
	free(path);
	long pid = text ? strtol(text, NULL, 10) : 0;
	free(text);
	if (pid <= 0 || pid == old)
		harness_die("after RESTART the pidfile names no new process (%ld)", pid);
	s->pid = (pid_t)pid;
	s->status = 0;
	return status;
}

int harness_sluice_stop(struct harness_sluice *s)
{
	if (s->pid == 0)
		return s->status;
	kill(s->pid, SIGTERM);
	int timeout = SLUICE_STOP_TIMEOUT_MS * wait_scale();
	if (harness_sluice_wait(s, timeout) >= 0)
		return s->status;
	fprintf(stderr,
		"harness: sluice (pid %d, %s) did not exit within %d ms of SIGTERM; killed\n",
		(int)s->pid, s->dir, timeout);
	kill(s->pid, SIGKILL);
	waitpid(s->pid, NULL, 0);
	s->pid = 0;
	s->status = -1;
	return -1;
}

void harness_sluice_signal(struct harness_sluice *s, int sig)
{
	if (s->pid == 0 || kill(s->pid, sig) < 0)
		harness_die("cannot signal sluice: it is not running (status %d)", s->status);
}

void harness_sluice_free(struct harness_sluice *s)
{
	if (!s)
		return;
	if (s->pid > 0) {
		kill(s->pid, SIGKILL);
		waitpid(s->pid, NULL, 0);
	}
	for (struct sluice_entry **pp = &live_sluices; *pp; pp = &(*pp)->next) {
		if ((*pp)->s == s) {
			struct sluice_entry *e = *pp;
			*pp = e->next;
			free(e);
			break;
		}
	}
	if (!getenv("HARNESS_KEEP"))
		rm_rf(s->dir);
	free(s->dir);
	free(s->ini_path);
	free(s->log_path);
	free(s);
}

char *harness_sluice_log(const struct harness_sluice *s)
{
	char *log = read_text_file(s->log_path);
	return log ? log : xstrdup("");
}

int harness_sluice_log_count(const struct harness_sluice *s, const char *needle)
{
	char *log = harness_sluice_log(s);
	int n = 0;
	for (const char *p = log; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	free(log);
	return n;
}

bool harness_sluice_log_wait(const struct harness_sluice *s, const char *needle, int timeout_ms)
{
	long deadline = harness_now_ms() + (long)timeout_ms * wait_scale();
	for (;;) {
		char *log = harness_sluice_log(s);
		bool found = strstr(log, needle) != NULL;
		free(log);
		if (found)
			return true;
		if (harness_now_ms() >= deadline)
			return false;
		harness_sleep_ms(POLL_INTERVAL_MS);
	}
}

/* ---- libpq helpers ------------------------------------------------------- */

static PGconn *connect_to(const struct harness_sluice *s, const char *conninfo)
{
	int port = s ? s->port : harness_pg()->port;
	char *full = xasprintf("host=127.0.0.1 port=%d connect_timeout=10 %s", port,
		conninfo ? conninfo : "");
	PGconn *conn = PQconnectdb(full);
	free(full);
	return conn;
}

/* libpq's multi-line messages end in a newline; failure messages read better without it. */
static char *chomp_copy(const char *text)
{
	char *copy = xstrdup(text ? text : "");
	size_t n = strlen(copy);
	while (n > 0 && (copy[n - 1] == '\n' || copy[n - 1] == ' '))
		copy[--n] = '\0';
	return copy;
}

PGconn *harness_connect(const struct harness_sluice *s, const char *conninfo)
{
	PGconn *conn = connect_to(s, conninfo);
	if (PQstatus(conn) != CONNECTION_OK) {
		char *err = chomp_copy(PQerrorMessage(conn));
		PQfinish(conn);
		/* A failure seen only in CI explains itself with sluice's side of it. */
		char *log = s ? harness_sluice_log(s) : xstrdup("");
		size_t len = strlen(log);
		const char *tail = len > 3000 ? log + len - 3000 : log;
		harness_die("connecting to %s with \"%s\" failed: %s%s%s", s ? "sluice" : "PostgreSQL",
			conninfo, err, s ? "\nsluice's log ends with:\n" : "", tail);
	}
	return conn;
}

char *harness_connect_error(const struct harness_sluice *s, const char *conninfo)
{
	PGconn *conn = connect_to(s, conninfo);
	bool ok = PQstatus(conn) == CONNECTION_OK;
	char *err = chomp_copy(PQerrorMessage(conn));
	PQfinish(conn);
	if (ok) {
		free(err);
		harness_die("connecting to %s with \"%s\" succeeded but was expected to fail",
			s ? "sluice" : "PostgreSQL", conninfo);
	}
	return err;
}

void harness_command_ok(PGconn *conn, const char *sql, const char *tag)
{
	PGresult *res = PQexec(conn, sql);
	ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "%s: %s", sql,
		PQresultErrorMessage(res));
	if (tag)
		ck_assert_msg(strcmp(PQcmdStatus(res), tag) == 0, "%s: tag %s, want %s", sql,
			PQcmdStatus(res), tag);
	PQclear(res);
}

char *harness_query_text(PGconn *conn, const char *sql)
{
	PGresult *res = PQexec(conn, sql);
	ExecStatusType st = PQresultStatus(res);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		char *err = chomp_copy(PQerrorMessage(conn));
		PQclear(res);
		harness_die("query \"%s\" failed: %s", sql, err);
	}
	char *value = NULL;
	if (st == PGRES_TUPLES_OK && PQntuples(res) > 0 && PQnfields(res) > 0 &&
		!PQgetisnull(res, 0, 0))
		value = xstrdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return value;
}

char *harness_query_error(PGconn *conn, const char *sql)
{
	PGresult *res = PQexec(conn, sql);
	ExecStatusType st = PQresultStatus(res);
	if (res && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)) {
		PQclear(res);
		harness_die("query \"%s\" succeeded but was expected to fail", sql);
	}
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	char *msg = chomp_copy(primary ? primary : PQerrorMessage(conn));
	/* No SQLSTATE means libpq made the error up itself: the connection is gone. */
	char *out = xasprintf("%s %s", state ? state : "08006", msg);
	free(msg);
	PQclear(res);
	return out;
}

/* ---- running a suite ----------------------------------------------------- */

TCase *harness_tcase(const char *name)
{
	TCase *tc = tcase_create(name);
	tcase_set_timeout(tc, TCASE_TIMEOUT_S * wait_scale());
	return tc;
}

int harness_run_suite(Suite *suite)
{
	register_cleanup();
	signal(SIGTERM, on_fatal_signal);
	signal(SIGINT, on_fatal_signal);
	signal(SIGHUP, on_fatal_signal);
	/* A test that writes to a socket sluice closed must fail, not kill the runner. */
	signal(SIGPIPE, SIG_IGN);

	outside_tests = true;
	const struct harness_pg *p = harness_pg();
	fprintf(stderr, "harness: PostgreSQL on 127.0.0.1:%d (socket dir %s) ready in %ld ms\n",
		p->port, p->socket_dir, pg.startup_ms);
	fflush(stderr);
	outside_tests = false;

	SRunner *sr = srunner_create(suite);
	srunner_run_all(sr, getenv("CK_VERBOSITY") ? CK_ENV : CK_VERBOSE);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* ---- shared test helpers -------------------------------------------------------------- */

bool harness_read_full(int fd, void *buf, size_t n)
{
	uint8_t *p = buf;
	while (n > 0) {
		ssize_t r = read(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		p += r;
		n -= (size_t)r;
	}
	return true;
}

void harness_write_all(int fd, const void *buf, size_t n)
{
	const uint8_t *p = buf;
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		ck_assert_msg(w > 0, "write to a raw socket failed: %s",
			w < 0 ? strerror(errno) : "nothing written");
		p += w;
		n -= (size_t)w;
	}
}

void harness_raw_send_startup(int fd, const char *user, const char *db)
{
	uint8_t pkt[512];
	size_t n = 8;
	int w = snprintf((char *)pkt + n, sizeof(pkt) - n, "user%c%s%cdatabase%c%s%c", 0, user, 0,
		0, db, 0);
	ck_assert_msg(w > 0 && (size_t)w < sizeof(pkt) - n - 1, "startup packet too long");
	n += (size_t)w;
	pkt[n++] = '\0';
	put_be32(pkt, (uint32_t)n);
	put_be32(pkt + 4, 3u << 16);
	harness_write_all(fd, pkt, n);
}

bool harness_raw_read_msg(int fd, struct harness_msg *m)
{
	uint8_t hdr[5];
	if (!harness_read_full(fd, hdr, sizeof(hdr)))
		return false;
	uint32_t len = get_be32(hdr + 1);
	ck_assert_msg(len >= 4 && len < 65536, "message '%c' with length %u", hdr[0], len);
	m->type = (char)hdr[0];
	m->len = len - 4;
	m->body = xmalloc(m->len + 1);
	if (!harness_read_full(fd, m->body, m->len)) {
		free(m->body);
		m->body = NULL;
		return false;
	}
	m->body[m->len] = '\0';
	return true;
}

const char *harness_msg_field(const struct harness_msg *m, char field)
{
	const char *p = m->body, *end = m->body + m->len;
	while (p < end && *p) {
		char f = *p++;
		if (f == field)
			return p;
		p += strlen(p) + 1;
	}
	return "";
}

char *harness_raw_read_error(int fd)
{
	struct harness_msg m;
	while (harness_raw_read_msg(fd, &m)) {
		if (m.type == 'E') {
			char *out = xasprintf("%s %s", harness_msg_field(&m, 'C'),
				harness_msg_field(&m, 'M'));
			free(m.body);
			return out;
		}
		free(m.body);
	}
	return NULL;
}

void harness_expect_answer(PGconn *conn, const char *sql, const char *want)
{
	char *v = harness_query_text(conn, sql);
	ck_assert_msg(v && strcmp(v, want) == 0, "%s gave %s, expected %s", sql, v ? v : "NULL",
		want);
	free(v);
}

long harness_wait_readable(PGconn *conn, long timeout_ms)
{
	long t0 = harness_now_ms();
	struct pollfd pfd = { .fd = PQsocket(conn), .events = POLLIN };
	int rc = poll(&pfd, 1, (int)timeout_ms);
	ck_assert_msg(rc == 1, "nothing arrived in %ld ms", timeout_ms);
	return harness_now_ms() - t0;
}

bool harness_wait_not_busy(PGconn *conn, int timeout_ms)
{
	long deadline = harness_now_ms() + timeout_ms;
	for (;;) {
		if (!PQconsumeInput(conn) || !PQisBusy(conn))
			return true;
		long left = deadline - harness_now_ms();
		if (left <= 0)
			return false;
		struct pollfd pfd = { .fd = PQsocket(conn), .events = POLLIN };
		(void)poll(&pfd, 1, (int)left);
	}
}

void harness_wait_query_running(const char *sql)
{
	long deadline = harness_now_ms() + 5000;
	while (harness_pg_exec_long("SELECT count(*) FROM pg_stat_activity "
				    "WHERE state = 'active' AND query = '%s'",
		       sql) == 0) {
		ck_assert_msg(harness_now_ms() < deadline, "%s never started on the server", sql);
		harness_sleep_ms(POLL_INTERVAL_MS);
	}
}

long harness_count_backends(const char *user)
{
	return harness_pg_exec_long("SELECT count(*) FROM pg_stat_activity "
				    "WHERE usename = '%s' AND backend_type = 'client backend'",
		user);
}

long harness_wait_backends(const char *user, long want, long timeout_ms)
{
	long deadline = harness_now_ms() + timeout_ms, n;
	while ((n = harness_count_backends(user)) != want && harness_now_ms() < deadline)
		harness_sleep_ms(POLL_INTERVAL_MS);
	return n;
}

char *harness_show_value(PGconn *c, const char *sql, const char *key_col, const char *key,
	const char *col)
{
	PGresult *res = PQexec(c, sql);
	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", sql,
		PQresultErrorMessage(res));
	ck_assert_str_eq(PQcmdStatus(res), "SHOW");
	int kk = PQfnumber(res, key_col), kc = PQfnumber(res, col);
	ck_assert_msg(kk >= 0, "%s has no column %s", sql, key_col);
	ck_assert_msg(kc >= 0, "%s has no column %s", sql, col);
	char *v = NULL;
	for (int i = 0; i < PQntuples(res) && !v; i++)
		if (strcmp(PQgetvalue(res, i, kk), key) == 0)
			v = xstrdup(PQgetvalue(res, i, kc));
	PQclear(res);
	return v;
}

long harness_show_long(PGconn *c, const char *sql, const char *key_col, const char *key,
	const char *col)
{
	char *v = harness_show_value(c, sql, key_col, key, col);
	ck_assert_msg(v != NULL, "%s: no row %s = %s", sql, key_col, key);
	long n = strtol(v, NULL, 10);
	free(v);
	return n;
}

void harness_sluice_stop_ok(struct harness_sluice *s)
{
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}

char *harness_read_file(const char *path)
{
	char *text = read_text_file(path);
	ck_assert_msg(text != NULL, "cannot open %s: %s", path, strerror(errno));
	return text;
}

void harness_sluice_edit_ini(const struct harness_sluice *s, const char *from, const char *to)
{
	char *ini = harness_read_file(s->ini_path);
	char *at = strstr(ini, from);
	ck_assert_msg(at != NULL, "'%s' not in the ini:\n%s", from, ini);
	*at = '\0';
	char *edited = xasprintf("%s%s%s", ini, to, at + strlen(from));
	char *tmp = xasprintf("%s.new", s->ini_path);
	write_text_file(tmp, edited, false);
	ck_assert_msg(rename(tmp, s->ini_path) == 0, "cannot rename %s: %s", tmp, strerror(errno));
	free(tmp);
	free(edited);
	free(ini);
}

void harness_sluice_reload_with_user(struct harness_sluice *s, const char *user_line)
{
	char *users = xasprintf("[users]\n%s\n", user_line);
	harness_sluice_edit_ini(s, "[users]\n", users);
	free(users);
	int before = harness_sluice_log_count(s, "configuration reloaded");
	harness_sluice_signal(s, SIGHUP);
	long deadline = harness_now_ms() + 3000;
	while (harness_sluice_log_count(s, "configuration reloaded") == before &&
	       harness_now_ms() < deadline)
		harness_sleep_ms(POLL_INTERVAL_MS);
	ck_assert_msg(harness_sluice_log_count(s, "configuration reloaded") > before,
		"sluice did not log the reload");
}

/* ---- external programs ------------------------------------------------------------ */

int harness_run_program(const char *file, char *const argv[], const char *const env[],
			long timeout_ms, char **out)
{
	int pfd[2];
	ck_assert_int_eq(pipe(pfd), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		close(pfd[0]);
		close(pfd[1]);
		for (size_t i = 0; env && env[i]; i++) {
			const char *eq = strchr(env[i], '=');
			if (!eq) {
				unsetenv(env[i]);
				continue;
			}
			char *name = xstrndup(env[i], (size_t)(eq - env[i]));
			setenv(name, eq + 1, 1);
			free(name);
		}
		execvp(file, argv);
		fprintf(stderr, "cannot run %s: %s\n", file, strerror(errno));
		_exit(127);
	}
	close(pfd[1]);
	size_t len = 0, cap = 8192;
	char *buf = xmalloc(cap);
	long deadline = harness_now_ms() + timeout_ms;
	bool killed = false;
	for (;;) {
		long left = deadline - harness_now_ms();
		if (left <= 0) {
			kill(pid, SIGKILL);
			killed = true;
			break;
		}
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		if (poll(&p, 1, (int)left) <= 0)
			continue;
		if (len + 1024 > cap) {
			cap *= 2;
			buf = xrealloc(buf, cap);
		}
		ssize_t n = read(pfd[0], buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	close(pfd[0]);
	int status = 0;
	waitpid(pid, &status, 0);
	*out = buf;
	if (killed || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

int harness_run_pgbench(char *const argv[], long timeout_ms, char **out)
{
	static const char *const env[] = { "PGPASSWORD=md5userpw", "PGOPTIONS", NULL };
	char *bin = harness_pgbench_path();
	int rc = harness_run_program(bin, argv, env, timeout_ms, out);
	free(bin);
	return rc;
}

char *harness_pgbench_path(void)
{
	const char *dir = getenv("PG_BINDIR");
	if (dir) {
		char *p = xasprintf("%s/pgbench", dir);
		if (access(p, X_OK) == 0)
			return p;
		free(p);
	}
	return xstrdup("pgbench");
}

void harness_pgbench_init(void)
{
	char *exists = harness_pg_exec("SELECT to_regclass('pgbench_accounts')::text");
	bool done_before = exists != NULL;
	free(exists);
	if (done_before)
		return;
	char port[16];
	snprintf(port, sizeof(port), "%d", harness_pg()->port);
	char *const argv[] = { "pgbench", "-i", "-s", "1", "-q", "-h", "127.0.0.1", "-p", port,
		"-U", "md5user", HARNESS_DATABASE, NULL };
	char *out = NULL;
	int rc = harness_run_pgbench(argv, 60000, &out);
	ck_assert_msg(rc == 0, "pgbench -i exited %d:\n%s", rc, out);
	free(out);
	ck_assert_int_eq(harness_pg_exec_long("SELECT count(*) FROM pgbench_accounts"), 100000);
}

/* ---- a fake PostgreSQL ------------------------------------------------------------ */

/* The fake's child: never returns into the test it was forked from. */
static void fake_accept_loop(int lfd, int events_fd, harness_fake_serve_cb *serve, int arg)
	__attribute__((noreturn));
static void fake_accept_loop(int lfd, int events_fd, harness_fake_serve_cb *serve, int arg)
{
	for (;;) {
		int conn = accept(lfd, NULL, NULL);
		if (conn < 0)
			_exit(0);
		struct timeval tv = { .tv_sec = 10 };
		setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		harness_fake_report(events_fd, 'a');
		serve(conn, events_fd, arg);
		close(conn);
	}
}

struct harness_fake harness_fake_start(harness_fake_serve_cb *serve, int arg)
{
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(lfd, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(lfd, 64), 0);
	socklen_t al = sizeof(a);
	ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&a, &al), 0);
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(p[0]);
		fake_accept_loop(lfd, p[1], serve, arg);
	}
	close(lfd);
	close(p[1]);
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	struct harness_fake f = { .pid = pid, .port = ntohs(a.sin_port), .events_fd = p[0] };
	return f;
}

/* Moves what the pipe holds into f->pending; returns false once the fake has exited. */
static bool fake_drain_events(struct harness_fake *f)
{
	unsigned char b[256];
	ssize_t r;
	while ((r = read(f->events_fd, b, sizeof(b))) > 0)
		for (ssize_t i = 0; i < r; i++)
			f->pending[b[i]]++;
	return r < 0 && (errno == EAGAIN || errno == EINTR);
}

bool harness_fake_wait_event(struct harness_fake *f, char ev, long timeout_ms)
{
	long deadline = harness_now_ms() + timeout_ms;
	for (;;) {
		bool open = fake_drain_events(f);
		if (f->pending[(unsigned char)ev] > 0) {
			f->pending[(unsigned char)ev]--;
			return true;
		}
		long left = deadline - harness_now_ms();
		if (!open || left <= 0)
			return false;
		struct pollfd pfd = { .fd = f->events_fd, .events = POLLIN };
		(void)poll(&pfd, 1, (int)left);
	}
}

int harness_fake_count_events(struct harness_fake *f, char ev)
{
	(void)fake_drain_events(f);
	int n = f->pending[(unsigned char)ev];
	f->pending[(unsigned char)ev] = 0;
	return n;
}

void harness_fake_stop(struct harness_fake *f)
{
	kill(f->pid, SIGKILL);
	waitpid(f->pid, NULL, 0);
	close(f->events_fd);
}

void harness_fake_report(int events_fd, char ev)
{
	if (write(events_fd, &ev, 1) != 1)
		_exit(0);
}

void harness_fake_put_msg(int fd, char type, const void *body, uint32_t len)
{
	/*
	 * One message in one write: split in two, the body would wait for the
	 * header's delayed ACK (Nagle), tens of milliseconds that would blur
	 * what a test times (check_key_derivation times a derivation).
	 */
	uint8_t *msg = xmalloc(5 + (size_t)len);
	msg[0] = (uint8_t)type;
	put_be32(msg + 1, len + 4);
	if (len)
		memcpy(msg + 5, body, len);
	bool written = write(fd, msg, 5 + (size_t)len) == (ssize_t)(5 + (size_t)len);
	free(msg);
	if (!written)
		_exit(0);
}

bool harness_fake_read_packet(int fd, bool typed, char **body)
{
	if (!typed) {
		/*
		 * sluice asks for TLS first (server_tls_sslmode = prefer, as
		 * PgBouncer): a fake server declines, as a PostgreSQL without
		 * ssl does, and the StartupMessage follows.
		 */
		uint8_t first[8];
		if (!harness_read_full(fd, first, 8))
			return false;
		if (get_be32(first) == 8 && get_be32(first + 4) == 80877103u) {
			harness_write_all(fd, "N", 1);
			return harness_fake_read_packet(fd, false, body);
		}
		uint32_t len = get_be32(first);
		if (len < 8 || len > 65536)
			return false;
		char *rest = xcalloc(1, len - 4 + 1);
		memcpy(rest, first + 4, 4);
		bool ok = len == 8 || harness_read_full(fd, rest + 4, len - 8);
		if (ok && body)
			*body = rest;
		else
			free(rest);
		return ok;
	}
	uint8_t hdr[5];
	size_t hl = typed ? 5 : 4;
	if (!harness_read_full(fd, hdr, hl))
		return false;
	uint32_t len = get_be32(hdr + hl - 4);
	if (len < 4 || len > 65536)
		return false;
	char *rest = xcalloc(1, len - 4 + 1);
	bool ok = len == 4 || harness_read_full(fd, rest, len - 4);
	if (ok && body)
		*body = rest;
	else
		free(rest);
	return ok;
}

/* ---- TLS ------------------------------------------------------------------ */

/*
 * The certificates, made with the openssl command: a CA, a certificate for
 * localhost and 127.0.0.1 signed by it (PostgreSQL's and sluice's), a client
 * certificate for md5user, and a second CA with its own localhost
 * certificate, which the first CA's clients must refuse. The expired- ones
 * are signed by the first CA and valid for no time at all (-days 0: expired
 * a second after they are made).
 */
static const char make_certs_sh[] =
	"set -e\n"
	"cd \"$1\"\n"
	"req() { openssl req -new -newkey rsa:2048 -nodes -keyout \"$1.key\" -out \"$1.csr\" "
	"-subj \"/CN=$2\" 2>/dev/null; }\n"
	"sign() { openssl x509 -req -in \"$1.csr\" -CA \"$2.crt\" -CAkey \"$2.key\" "
	"-CAcreateserial -out \"$1.crt\" -days 30 $3 2>/dev/null; }\n"
	"for ca in ca other-ca; do openssl req -x509 -newkey rsa:2048 -nodes -keyout $ca.key "
	"-out $ca.crt -days 30 -subj \"/CN=sluice test $ca\" 2>/dev/null; done\n"
	"printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext\n"
	"req server localhost && sign server ca '-extfile san.ext'\n"
	"req other-server localhost && sign other-server other-ca '-extfile san.ext'\n"
	"req client md5user && sign client ca\n"
	"req expired-client md5user && sign expired-client ca '-days 0'\n"
	"req expired-server localhost && sign expired-server ca '-extfile san.ext -days 0'\n"
	"chmod 600 *.key\n";

const char *harness_tls_dir(void)
{
	static char *dir;
	if (dir)
		return dir;
	char *d = xasprintf("%s/tls", harness_dir());
	if (mkdir(d, 0700) < 0 && errno != EEXIST)
		harness_die("mkdir %s: %s", d, strerror(errno));
	char *argv[] = { "/bin/sh", "-c", (char *)make_certs_sh, "make_certs", d, NULL };
	char *log = xasprintf("%s/make_certs.log", harness_dir());
	int status = run_command(argv, false, log, 60000);
	if (status != 0)
		harness_die("making the test certificates failed (status %d): %s", status,
			tail_of(read_text_file(log), 2000));
	free(log);
	/* PostgreSQL reads its key as the user it runs as, and wants it private. */
	if (pg.as_postgres) {
		const char *files[] = { "", "/server.key", "/server.crt", "/ca.crt" };
		for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
			char *f = xasprintf("%s%s", d, files[i]);
			if (chown(f, pg.pg_uid, pg.pg_gid) < 0)
				harness_die("chown %s: %s", f, strerror(errno));
			free(f);
		}
	}
	dir = d;
	return dir;
}

void harness_pg_enable_ssl(void)
{
	pg_ssl = true;
}

long harness_sluice_rss_kib(const struct harness_sluice *s)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)s->pid);
	char *status = harness_read_file(path);
	ck_assert_msg(status != NULL, "%s: sluice is gone", path);
	const char *line = strstr(status, "VmRSS:");
	ck_assert_ptr_nonnull(line);
	long kib = atol(line + strlen("VmRSS:"));
	free(status);
	return kib;
}

char *harness_http_get(int port, const char *path)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return NULL;
	}
	struct timeval tv = { 5, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	char *req = xasprintf("GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
	harness_write_all(fd, req, strlen(req));
	free(req);
	size_t cap = 65536, n = 0;
	char *all = xmalloc(cap);
	ssize_t k;
	while ((k = read(fd, all + n, cap - n - 1)) > 0) {
		n += (size_t)k;
		if (cap - n < 1024)
			all = xrealloc(all, cap *= 2);
	}
	all[n] = 0;
	close(fd);
	return all;
}

/* ---- a raw console on the unix socket ------------------------------------------------ */

int harness_raw_console(const struct harness_sluice *s, const char *user)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/.s.PGSQL.%d", s->dir, s->port);
	ck_assert_msg(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect %s: %s",
		sa.sun_path, strerror(errno));
	struct timeval tv = { .tv_sec = 10 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	harness_raw_send_startup(fd, user, "pgbouncer");
	struct harness_msg m;
	for (;;) {
		ck_assert_msg(harness_raw_read_msg(fd, &m), "the console login did not finish");
		char type = m.type;
		ck_assert_msg(type != 'E', "console login: %s", harness_msg_field(&m, 'M'));
		free(m.body);
		if (type == 'Z')
			return fd;
	}
}

void harness_raw_query(int fd, const char *sql)
{
	uint32_t len = (uint32_t)(4 + strlen(sql) + 1);
	uint8_t hdr[5] = { 'Q', (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
		(uint8_t)len };
	harness_write_all(fd, hdr, sizeof(hdr));
	harness_write_all(fd, sql, strlen(sql) + 1);
}

void harness_raw_command(int fd, const char *sql, const char *tag)
{
	harness_raw_query(fd, sql);
	bool completed = false;
	struct harness_msg m;
	for (;;) {
		ck_assert_msg(harness_raw_read_msg(fd, &m), "%s: no answer", sql);
		char type = m.type;
		ck_assert_msg(type != 'E', "%s: %s", sql, harness_msg_field(&m, 'M'));
		if (type == 'C') {
			ck_assert_str_eq(m.body, tag);
			completed = true;
		}
		free(m.body);
		if (type == 'Z')
			break;
	}
	ck_assert(completed);
}

int harness_wait_pid(pid_t pid, int timeout_ms)
{
	return wait_pid_bounded(pid, timeout_ms * wait_scale());
}
