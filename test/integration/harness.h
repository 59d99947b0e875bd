/*
 * harness.h - the integration test harness: a throwaway PostgreSQL per test
 * executable, sluice processes started per test on free ports, a scripted fake
 * PostgreSQL for what the real one never does, and libpq helpers that fail the
 * running Check test instead of returning errors.
 *
 * It owns the temporary directory of the executable (the PostgreSQL data
 * directory, its socket, its log, and one sub-directory per sluice started),
 * and removes all of it at exit, also when a test failed. It does not know
 * anything about sluice's internals: sluice is a binary ($SLUICE_BIN) that is
 * given an ini file and talked to over sockets.
 *
 * Process model. Check runs every test in a forked child (CK_FORK, the
 * default). PostgreSQL is therefore started in the parent, by
 * harness_run_suite(), before the first fork, and every child talks to the
 * same server; sluice processes are started inside the test (the child) and
 * die with it (PR_SET_PDEATHSIG, and Check kills the child's process group on
 * a timeout). Nothing here keeps a libpq connection open across a fork.
 *
 * When the tests run as root, initdb, pg_ctl and postgres run as the OS user
 * `postgres` (initdb refuses root) and the temporary directory is chowned to
 * it. sluice itself runs as the calling user.
 *
 * Roles provisioned on PostgreSQL, each with LOGIN and password <name>pw:
 *   md5user    password stored as md5,   pg_hba: md5 from 127.0.0.1
 *   scramuser  password stored as SCRAM, pg_hba: scram-sha-256 from 127.0.0.1
 *   plainuser  password stored as SCRAM, pg_hba: password (cleartext)
 *   trustuser  password stored as SCRAM, pg_hba: trust
 * plus the bootstrap superuser HARNESS_SUPERUSER (trust locally and over TCP),
 * the only role with pg_hba lines for physical replication (local and
 * 127.0.0.1, trust). wal_level is logical, so logical replication slots
 * (test_decoding, pgoutput) work; max_wal_senders and max_replication_slots
 * are 20.
 * Database `app` (everyone may connect, create and use schema public) holds a
 * table `items (id int primary key, name text)` with rows 1..3, writable by
 * every role.
 *
 * Environment read: PG_BINDIR (directory of initdb/pg_ctl; default
 * `pg_config --bindir`), SLUICE_BIN (the sluice executable), SLUICE_WRAPPER
 * (a command line, split on spaces, that sluice is run under, e.g. valgrind;
 * it also stretches every wait), TMPDIR (where the directory is created).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <check.h>
#include <libpq-fe.h>

#include "sluice/common.h"

#define HARNESS_SUPERUSER "postgres"
#define HARNESS_DATABASE "app"

/* The running PostgreSQL. Strings live until exit; read, never modify. */
struct harness_pg {
	const char *host; /* "127.0.0.1" */
	int port; /* TCP port, also the number in the unix socket's name */
	const char *socket_dir; /* directory of .s.PGSQL.<port> */
	const char *superuser; /* HARNESS_SUPERUSER */
	const char *bindir; /* where initdb and pg_ctl were found */
	const char *dir; /* the executable's temporary directory */
};

/*
 * One sluice process. Fields are read-only for tests; the struct and its
 * directory are released by harness_sluice_free().
 */
struct harness_sluice {
	pid_t pid; /* 0 once it has been reaped */
	int port; /* listen_port: TCP on 127.0.0.1 and the unix socket's number */
	char *dir; /* its directory: unix socket, ini, userlist, log */
	char *ini_path;
	char *log_path; /* sluice's stderr and stdout */
	int status; /* harness_sluice_stop()'s result once reaped */
};

/*
 * Creates a Check runner for suite, starts PostgreSQL in this (the parent)
 * process, runs every test, prints the results and returns the process exit
 * code (0 when every test passed). PostgreSQL is stopped and the directory
 * removed at exit. Every integration suite's main() is `return
 * harness_run_suite(my_suite());`.
 */
int harness_run_suite(Suite *suite) WUR;

/*
 * A test case whose timeout suits integration tests (60 s, stretched under
 * SLUICE_WRAPPER; Check's own default is 4 s). Use it instead of tcase_create.
 */
TCase *harness_tcase(const char *name);

/*
 * The running PostgreSQL, started and provisioned on first use (normally by
 * harness_run_suite()). A failure to start fails the current test, or exits
 * the process when called outside of a test.
 */
const struct harness_pg *harness_pg(void);

/*
 * A TCP port on 127.0.0.1 that nobody listens on right now. Another process
 * may take it before the caller binds it; the start functions retry on a new
 * port when that happens.
 */
int harness_free_port(void);

/*
 * The directory of the test certificates (made once per executable with the
 * openssl command): ca.crt/key; server.crt/key for localhost and 127.0.0.1,
 * signed by ca; client.crt/key for CN=md5user, signed by ca; other-ca.crt
 * and other-server.crt/key, a second CA and a localhost certificate of its;
 * expired-client.crt/key (CN=md5user) and expired-server.crt/key
 * (localhost), signed by ca and expired a second after they were made.
 */
const char *harness_tls_dir(void);
/*
 * Before harness_run_suite(): this executable's PostgreSQL starts with
 * ssl = on, serving server.crt, so TLS to servers can be tested.
 */
void harness_pg_enable_ssl(void);

/*
 * Starts sluice with a fresh ini in a fresh directory and waits (bounded)
 * until its TCP port accepts connections; fails the test with the log when it
 * does not. The ini has:
 *
 *   [sluice]  listen_addr=127.0.0.1, listen_port=<free>, unix_socket_dir=<dir>,
 *             logfile= (empty: stderr, which goes to the log file),
 *             auth_file=<dir>/userlist.txt when userlist is not NULL,
 *             then the lines of sluice_extra (may be NULL);
 *   [databases] databases (NULL: `app` and `postgres` on the harness's server);
 *   [users]   empty.
 *
 * In all three strings @PGHOST@, @PGPORT@, @PGSOCKET@ (PostgreSQL's socket
 * directory) and @DIR@ (the sluice directory) are replaced by their values,
 * e.g. "app = host=@PGHOST@ port=@PGPORT@ dbname=app pool_size=2\n".
 * userlist is the whole auth_file text (`"md5user" "md5userpw"` lines).
 * The returned process is released with harness_sluice_free().
 */
struct harness_sluice *harness_sluice_start(const char *sluice_extra, const char *databases,
	const char *userlist);

/*
 * harness_sluice_start() on a given listen_port, for several processes
 * sharing one port (so_reuseport = 1 in sluice_extra of each): it is up when
 * its own unix socket exists. No retry on another port.
 */
struct harness_sluice *harness_sluice_start_on_port(const char *sluice_extra,
	const char *databases, const char *userlist, int port);

/*
 * What harness_sluice_start_with() adds to a start: environment for sluice,
 * and listening sockets handed over the way a service manager hands them
 * (socket activation).
 */
struct harness_spawn {
	/*
	 * NULL, or a NULL-terminated list applied in sluice's process before
	 * exec: "NAME=value" sets NAME, "NAME" alone unsets it (e.g.
	 * NOTIFY_SOCKET=<path of a datagram socket the test reads>).
	 */
	const char *const *env;
	/*
	 * Sockets passed as descriptors 3, 4, ... (in this order), with
	 * LISTEN_FDS=n_listen_fds and LISTEN_PID=<sluice's pid> set, as systemd
	 * does; at most 16. The test keeps its own descriptors (close them to
	 * see what sluice does with its copies). Since they listen before
	 * sluice runs, sluice counts as up when its log says it started.
	 */
	const int *listen_fds;
	int n_listen_fds;
};

/*
 * harness_sluice_start() with what spawn adds (NULL: nothing). With passed
 * sockets there is no retry on another port: the ini's listen_port is
 * then expected to stay unbound anyway.
 */
struct harness_sluice *harness_sluice_start_with(const char *sluice_extra, const char *databases,
	const char *userlist, const struct harness_spawn *spawn);

/*
 * Sends SIGTERM and waits (bounded, 15 s; longer under SLUICE_WRAPPER) for the
 * process. Returns its exit status (0..255), 128 + the signal number when a
 * signal ended it, or -1 when it did not exit in time and had to be killed
 * (that is also printed). AddressSanitizer reports make the status non-zero,
 * valgrind's make it 99, so `ck_assert_int_eq(harness_sluice_stop(s), 0)` is
 * the check that sluice shut down cleanly. Calling it again returns the same
 * status.
 */
int harness_sluice_stop(struct harness_sluice *s);

/*
 * Waits (bounded by timeout_ms) for the process to exit on its own and returns
 * its status as harness_sluice_stop() does, or -1 if it is still running.
 */
int harness_sluice_wait(struct harness_sluice *s, int timeout_ms);

/*
 * Online restart: starts `[SLUICE_WRAPPER] bin -R ini` (bin NULL: SLUICE_BIN),
 * logging to the same file, waits (bounded by timeout_ms) for the process it
 * takes over from to exit, and follows the new one from then on. Returns the
 * old process's status as harness_sluice_stop() does, or -1 if it was still
 * running (the new one is followed all the same).
 */
int harness_sluice_reboot(struct harness_sluice *s, const char *bin, int timeout_ms);
/*
 * Makes the test process the reaper of its orphaned descendants, so that a
 * successor the console's RESTART started (a child of sluice) becomes the
 * test's child once the old process exits. Call it at the start of the test.
 */
void harness_subreaper(void);
/*
 * After the console's RESTART: waits (bounded) for the old process to exit
 * and follows its successor, found through the pidfile @DIR@/sluice.pid (the
 * ini must set it). Returns the old process's status, or -1 as above.
 */
int harness_sluice_follow_restart(struct harness_sluice *s, int timeout_ms);

/* Sends sig to the process (e.g. SIGHUP to reload). Fails the test if it is gone. */
void harness_sluice_signal(struct harness_sluice *s, int sig);

/* Stops the process if it still runs (SIGKILL), removes its directory, frees s. */
void harness_sluice_free(struct harness_sluice *s);

/* The process's resident memory in KiB (VmRSS of /proc/<pid>/status); fails the test if gone. */
long harness_sluice_rss_kib(const struct harness_sluice *s);

/* The whole log so far, as a heap string the caller frees. */
char *harness_sluice_log(const struct harness_sluice *s);
/* How many times needle occurs in the log so far. */
int harness_sluice_log_count(const struct harness_sluice *s, const char *needle);

/*
 * Waits (bounded by timeout_ms) until the log contains needle; returns whether
 * it did. For asserting on things sluice logs asynchronously.
 */
bool harness_sluice_log_wait(const struct harness_sluice *s, const char *needle,
	int timeout_ms) WUR;

/*
 * Opens a libpq connection to sluice's TCP port (s == NULL: directly to
 * PostgreSQL's). conninfo is appended to "host=127.0.0.1 port=N
 * connect_timeout=10", so it may override either. Fails the test, with
 * libpq's message, unless the connection succeeds. The caller PQfinish()es it.
 */
PGconn *harness_connect(const struct harness_sluice *s, const char *conninfo);

/*
 * Like harness_connect() but expects the connection to fail: returns libpq's
 * error message as a heap string the caller frees, and fails the test if the
 * connection succeeded.
 */
char *harness_connect_error(const struct harness_sluice *s, const char *conninfo);

/*
 * Runs sql on conn, failing the test with the server's message unless it
 * succeeds. Returns the first column of the first row as a heap string the
 * caller frees, or NULL when there is no row or the value is SQL NULL.
 */
char *harness_query_text(PGconn *conn, const char *sql);
/*
 * Runs sql (simple protocol), which must succeed without rows; with tag,
 * its command tag must be tag. Fails the test otherwise.
 */
void harness_command_ok(PGconn *conn, const char *sql, const char *tag);

/*
 * Runs sql on conn expecting an error: returns "SQLSTATE message" (e.g.
 * "57014 canceling statement due to statement timeout") as a heap string the
 * caller frees. Fails the test if the command succeeded. A broken connection
 * gives "08006 <libpq's message>".
 */
char *harness_query_error(PGconn *conn, const char *sql);

/*
 * Runs a printf-formatted SQL command as the superuser directly on
 * PostgreSQL (unix socket, database app) on a connection of its own, e.g. to
 * pg_terminate_backend() or to count pg_stat_activity rows. Fails the test on
 * error. Returns the first value as harness_query_text() does.
 */
char *harness_pg_exec(const char *fmt, ...) PRINTF_LIKE(1, 2);

/* harness_pg_exec() for a single integer result (e.g. a count). */
long harness_pg_exec_long(const char *fmt, ...) PRINTF_LIKE(1, 2);

/*
 * Stops PostgreSQL (pg_ctl stop -m fast, which ends every session), starts it
 * again on the same port and data, or both. Bounded; failures fail the test.
 */
void harness_pg_stop(void);
void harness_pg_start(void);
void harness_pg_restart(void);

/*
 * GET path from an HTTP listener (sluice's metrics_port) on 127.0.0.1:port:
 * the whole response, status line and headers included, as a heap string;
 * NULL when nothing listens there. Bounded by a 5 s receive timeout.
 */
char *harness_http_get(int port, const char *path);

/*
 * A blocking TCP socket connected to 127.0.0.1:port, with 10 s send and
 * receive timeouts so that no read can hang a test. For tests that send raw
 * or malformed bytes. Fails the test if it cannot connect; the caller closes it.
 */
int harness_raw_connect(int port);

/*
 * The time, in milliseconds, that PostgreSQL's initdb + start + provisioning
 * took in this process (0 if it was not started here). Printed by
 * harness_run_suite() too.
 */
long harness_pg_startup_ms(void);

/* ---- shared test helpers -------------------------------------------------------------- */

/* CLOCK_MONOTONIC in milliseconds: for deadlines and for timing what a test measures. */
long harness_now_ms(void);

/*
 * A seeded random number in [0, n), splitmix64 from *state: the same
 * sequence on every platform for a seed, so that a randomized test's seed
 * reproduces its failure.
 */
int harness_rng_below(uint64_t *state, int n);

/* Sleeps ms milliseconds (resumed after signals). For poll intervals, never as a wait. */
void harness_sleep_ms(long ms);

/*
 * Reads exactly n bytes from a raw socket. Returns false on EOF, on an error,
 * or when the socket's receive timeout (10 s for harness_raw_connect()) passes;
 * the caller decides whether that fails the test.
 */
bool harness_read_full(int fd, void *buf, size_t n) WUR;

/* Writes all n bytes to a raw socket; fails the test if that cannot be done. */
void harness_write_all(int fd, const void *buf, size_t n);

/*
 * Sends a protocol 3.0 StartupMessage with `user` and `database` on a raw
 * socket; fails the test if the write fails.
 */
void harness_raw_send_startup(int fd, const char *user, const char *db);

/* One regular protocol message read from a raw socket; body is heap memory, NUL-terminated. */
struct harness_msg {
	char type;
	char *body;
	uint32_t len; /* of body, without the type and the length word */
};

/*
 * Reads one regular message (type byte, length, body) from a raw socket into
 * m; the caller frees m->body. Returns false, with nothing to free, when the
 * connection ends (or times out) first. Fails the test on a length below 4 or
 * of 64 KiB and more, which no test here expects.
 */
bool harness_raw_read_msg(int fd, struct harness_msg *m) WUR;
/* A console connection on sluice's unix socket as user, logged in (trust or peer), ready for a query. */
int harness_raw_console(const struct harness_sluice *s, const char *user);
/* Sends a simple Query on a raw connection. */
void harness_raw_query(int fd, const char *sql);
/* Runs a command on a raw console and fails the test unless it completes with tag. */
void harness_raw_command(int fd, const char *sql, const char *tag);
/* Waits (bounded, stretched under SLUICE_WRAPPER) for a child to exit: its status, or -1. */
int harness_wait_pid(pid_t pid, int timeout_ms);

/* A field of an ErrorResponse or NoticeResponse ('C' SQLSTATE, 'M' message), or "". */
const char *harness_msg_field(const struct harness_msg *m, char field);

/*
 * Reads messages from a raw socket, skipping all others, until an
 * ErrorResponse, and returns "SQLSTATE message" as a heap string the caller
 * frees, or NULL when the connection ends (or times out) without one.
 */
char *harness_raw_read_error(int fd);

/*
 * Runs sql on conn (as harness_query_text()) and fails the test unless the
 * first value is exactly want; a NULL result fails too.
 */
void harness_expect_answer(PGconn *conn, const char *sql, const char *want);

/*
 * Waits up to timeout_ms for the socket of conn to have something to read (or
 * to be closed) without consuming it; fails the test when nothing arrives in
 * time. Returns how many ms the wait took.
 */
long harness_wait_readable(PGconn *conn, long timeout_ms);

/*
 * Waits up to timeout_ms for the answer to a PQsendQuery() (or similar) to be
 * complete, i.e. PQisBusy() false. Returns whether it is; a broken connection
 * counts as complete, since PQgetResult() will then report the error.
 */
bool harness_wait_not_busy(PGconn *conn, int timeout_ms) WUR;

/*
 * Waits (bounded, 5 s) until PostgreSQL runs a query whose text is exactly
 * sql (state 'active' in pg_stat_activity); fails the test if it never does.
 */
void harness_wait_query_running(const char *sql);

/* How many client backends PostgreSQL has for user (sluice's servers of that user). */
long harness_count_backends(const char *user);

/*
 * Polls (every 20 ms, at most timeout_ms) until harness_count_backends(user)
 * is want; returns the last count, so the caller asserts on it.
 */
long harness_wait_backends(const char *user, long want, long timeout_ms);

/*
 * Runs a console command (SHOW ...) that must return rows tagged SHOW, and
 * returns the value of column col in the first row whose column key_col is
 * key, as a heap string the caller frees, or NULL when no row matches. Fails
 * the test if the command fails or either column does not exist.
 */
char *harness_show_value(PGconn *c, const char *sql, const char *key_col, const char *key,
	const char *col);

/* harness_show_value() as a number; fails the test when no row matches. */
long harness_show_long(PGconn *c, const char *sql, const char *key_col, const char *key,
	const char *col);

/*
 * Stops s, fails the test unless it exited with status 0 (so ASan and
 * valgrind reports surface), and frees it.
 */
void harness_sluice_stop_ok(struct harness_sluice *s);

/* The whole text file at path as a heap string the caller frees; fails the test if unreadable. */
char *harness_read_file(const char *path);

/*
 * Replaces the first occurrence of from in s's ini by to, writing a new file
 * and renaming it over the old one as an editor or a deploy tool would; fails
 * the test if from is not there. Send SIGHUP or RELOAD afterwards.
 */
void harness_sluice_edit_ini(const struct harness_sluice *s, const char *from, const char *to);
/*
 * Adds user_line ("name = key=value ...") to the [users] section of s's ini
 * and reloads with SIGHUP, returning once sluice has logged the reload.
 */
void harness_sluice_reload_with_user(struct harness_sluice *s, const char *user_line);

/*
 * Runs file (a path, or a name looked up on PATH) with argv (NULL-terminated)
 * and stdout and stderr together collected into *out (heap). env is NULL or a
 * NULL-terminated list applied in the child first: "NAME=value" sets NAME,
 * "NAME" alone unsets it. Killed after timeout_ms. Returns the exit status,
 * or -1 when it was killed or did not exit normally.
 */
int harness_run_program(const char *file, char *const argv[], const char *const env[],
			long timeout_ms, char **out);
/* pgbench from PG_BINDIR when it is there, else "pgbench" for PATH (heap). */
char *harness_pgbench_path(void);
/* harness_run_program() of that pgbench with md5user's password and no PGOPTIONS. */
int harness_run_pgbench(char *const argv[], long timeout_ms, char **out);
/*
 * pgbench -i -s 1 directly on PostgreSQL, as md5user, in the test database,
 * unless an earlier test of this executable did it (the tables outlive tests).
 */
void harness_pgbench_init(void);

/* ---- a fake PostgreSQL ---------------------------------------------------------------- */

/*
 * A scripted stand-in for PostgreSQL, for what the real one never does (skip
 * the SCRAM proof, ask for ten million rounds, never finish a cancel). It is a
 * forked child of the test, listening on a free port of 127.0.0.1, that
 * accepts one connection at a time (the next waits in the backlog, unanswered)
 * and runs the suite's serve on it with a 10 s receive timeout, so that no
 * read hangs it. It tells the test what happened as one-byte events on a pipe:
 * 'a' for every accepted connection, and whatever serve reports with
 * harness_fake_report(). Check kills it with the test's process group if the
 * test fails before harness_fake_stop().
 */

/*
 * Runs in the fake's child for one accepted connection conn, which the child
 * closes when serve returns. arg is harness_fake_start()'s, e.g. the mode of
 * the suite's script. serve may _exit(0) (the helpers below do on a failed
 * write); it must not use Check's assertions, which belong to the test.
 */
typedef void harness_fake_serve_cb(int conn, int events_fd, int arg);

struct harness_fake {
	pid_t pid;
	int port;
	int events_fd; /* read end of the event pipe, non-blocking */
	/*
	 * Events read from the pipe and not yet taken, by kind: taking one kind
	 * (waiting for 'f', counting 'a') leaves the others for their own readers.
	 */
	int pending[256];
};

/* Starts a fake running serve(conn, events_fd, arg) on each connection; fails the test on error. */
struct harness_fake harness_fake_start(harness_fake_serve_cb *serve, int arg);

/*
 * Waits up to timeout_ms (0: only what has arrived) for an event ev not taken
 * before, takes it and returns true; events of other kinds stay pending.
 * Returns false when none comes in time or the fake has exited.
 */
bool harness_fake_wait_event(struct harness_fake *f, char ev, long timeout_ms) WUR;

/* Takes every event ev that has arrived and not been taken, and returns how many. */
int harness_fake_count_events(struct harness_fake *f, char ev);

/* Kills the fake, reaps it and closes the pipe. */
void harness_fake_stop(struct harness_fake *f);

/* In serve: reports ev to the test. Ends the child (_exit(0)) when the test is gone. */
void harness_fake_report(int events_fd, char ev);

/*
 * In serve: writes one regular message (type, length, body) in a single
 * write(). Ends the child (_exit(0)) when the connection is gone.
 */
void harness_fake_put_msg(int fd, char type, const void *body, uint32_t len);

/*
 * In serve: reads one length-prefixed packet, typed (a type byte first) or
 * not (a startup packet; an SSLRequest before it is answered 'N' and skipped).
 * Returns false at EOF, on the receive timeout or on a
 * length below 4 or above 64 KiB. On success the body, NUL-terminated, goes to
 * *body (heap, the caller frees it) unless body is NULL, when it is skipped.
 */
bool harness_fake_read_packet(int fd, bool typed, char **body) WUR;
