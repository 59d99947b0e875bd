/*
 * config.c - reads sluice.ini (or pgbouncer.ini) and the SLUICE_* environment
 * into an immutable struct config snapshot, and checks it.
 *
 * It owns: the table of [sluice] settings (key, type, field, default, reload
 * policy, doc line), the list of PgBouncer keys sluice accepts but does not
 * implement yet, the parsing of every value type, the [databases] connection
 * strings and [users] entries, SLUICE_<NAME> and SLUICE_DATABASES overrides,
 * and validation with "file:line: message" errors. It does not own what the
 * settings mean at run time (listener, pool, client and server read the
 * snapshot), reloading (process.c builds a new snapshot and hands it to the
 * workers), or the auth_file contents (auth reads that file).
 *
 * config_load_text reads the same from text in memory (an fmemopen stream
 * in place of the file, %include refused), so that the parser runs in tests
 * and under the fuzzer without files.
 *
 * inih does the INI lexing. Debian's inih has run-time knobs; config_load sets
 * them on every call (process-wide, but config is the only inih user): heap
 * line buffer that grows, so long connection strings work; no multi-line
 * values and no inline ';' comments, as in PgBouncer, so a password may
 * contain " ;". inih does not pass line numbers to the handler in this build,
 * so the reader counts lines itself.
 */
#include "sluice/config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <libpq-fe.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "sluice/log.h"
#include "sluice_version.h"

/* ---- names of the enums, one list each ------------------------------------ */

static const char *const pool_mode_names[] = {
	[POOL_MODE_SESSION] = "session",
	[POOL_MODE_TRANSACTION] = "transaction",
	[POOL_MODE_STATEMENT] = "statement",
};

static const char *const session_pinning_names[] = {
	[SESSION_PINNING_PIN] = "pin",
	[SESSION_PINNING_REFUSE] = "refuse",
};

static const char *const io_uring_names[] = {
	[IO_URING_OFF] = "off",
	[IO_URING_AUTO] = "auto",
	[IO_URING_ON] = "on",
};

static const char *const auth_type_names[] = {
	[AUTH_TYPE_TRUST] = "trust",
	[AUTH_TYPE_ANY] = "any",
	[AUTH_TYPE_PLAIN] = "plain",
	[AUTH_TYPE_MD5] = "md5",
	[AUTH_TYPE_SCRAM_SHA_256] = "scram-sha-256",
	[AUTH_TYPE_CERT] = "cert",
	[AUTH_TYPE_HBA] = "hba",
};

static const char *const load_balance_hosts_names[] = {
	[LOAD_BALANCE_HOSTS_ROUND_ROBIN] = "round-robin",
	[LOAD_BALANCE_HOSTS_DISABLE] = "disable",
};

/* PgBouncer auth_type values that sluice rejects with a clear message. */
static const char *const auth_type_unsupported[] = { "pam", "ldap" };

static const char *const sslmode_names[] = {
	[SSLMODE_DISABLE] = "disable",	   [SSLMODE_ALLOW] = "allow",
	[SSLMODE_PREFER] = "prefer",	   [SSLMODE_REQUIRE] = "require",
	[SSLMODE_VERIFY_CA] = "verify-ca", [SSLMODE_VERIFY_FULL] = "verify-full",
};

static const char *const log_format_names[] = {
	[LOG_FORMAT_TEXT] = "text",
	[LOG_FORMAT_JSON] = "json",
};

static int name_index(const char *const *names, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (names[i] && strcasecmp(names[i], s) == 0)
			return (int)i;
	return -1;
}

int config_parse_pool_mode(const char *s)
{
	return name_index(pool_mode_names, ARRAY_SIZE(pool_mode_names), s);
}

const char *config_pool_mode_name(enum pool_mode m)
{
	if ((size_t)m < ARRAY_SIZE(pool_mode_names))
		return pool_mode_names[m];
	return "unknown";
}

const char *config_auth_type_name(enum auth_type t)
{
	if ((size_t)t < ARRAY_SIZE(auth_type_names))
		return auth_type_names[t];
	return "unknown";
}

const char *config_sslmode_name(enum sslmode m)
{
	return (size_t)m < ARRAY_SIZE(sslmode_names) ? sslmode_names[m] : "?";
}

const char *config_load_balance_hosts_name(enum load_balance_hosts lb)
{
	if ((size_t)lb < ARRAY_SIZE(load_balance_hosts_names))
		return load_balance_hosts_names[lb];
	return "unknown";
}

/* ---- value parsers ---------------------------------------------------------
 *
 * Each takes the text, stores the value through out and returns 0, or
 * returns -1 with a message (no location, no key: the caller adds those) in
 * msg. None of them keeps a pointer to the text.
 */

#define MSG_LEN 256

static int parse_int64(const char *s, int64_t min, int64_t max, int64_t *out, char *msg)
{
	char *end;
	if (!*s) {
		snprintf(msg, MSG_LEN, "empty value, expected an integer");
		return -1;
	}
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (end == s || *end) {
		snprintf(msg, MSG_LEN, "\"%s\" is not an integer", s);
		return -1;
	}
	if (errno == ERANGE || v < min || v > max) {
		snprintf(msg, MSG_LEN, "%s is out of range (%lld..%lld)", s, (long long)min,
			 (long long)max);
		return -1;
	}
	*out = v;
	return 0;
}

static int parse_bool(const char *s, bool *out, char *msg)
{
	static const char *const yes[] = { "1", "on", "yes", "true" };
	static const char *const no[] = { "0", "off", "no", "false" };
	if (name_index(yes, ARRAY_SIZE(yes), s) >= 0) {
		*out = true;
		return 0;
	}
	if (name_index(no, ARRAY_SIZE(no), s) >= 0) {
		*out = false;
		return 0;
	}
	snprintf(msg, MSG_LEN, "\"%s\" is not a boolean (use 0/1, on/off, yes/no, true/false)", s);
	return -1;
}

/*
 * A duration: seconds as PgBouncer writes them ("5", "0.5"), or a number with
 * a unit suffix ms/s/min/h/d. Stored in milliseconds, rounded to the nearest.
 * Negative values are rejected; the upper bound is a century.
 */
static int parse_duration(const char *s, int64_t *out, char *msg)
{
	static const struct {
		const char *suffix;
		double ms;
	} units[] = {
		{ "", 1000.0 },	    { "s", 1000.0 },	{ "ms", 1.0 },
		{ "min", 60000.0 }, { "h", 3600000.0 }, { "d", 86400000.0 },
	};
	const double max_ms = 100.0 * 365 * 86400000.0;
	char *end;

	/*
	 * strtod would also take "inf", "nan", hex, exponents and a sign: accept
	 * only digits with at most one '.', and let strtod convert just that.
	 */
	size_t numlen = strspn(s, "0123456789.");
	char num[64];
	if (numlen == 0 || numlen >= sizeof(num))
		goto bad;
	memcpy(num, s, numlen);
	num[numlen] = '\0';
	errno = 0;
	double v = strtod(num, &end);
	/* Also catches a lone "." and a second '.': strtod stops before it. */
	if (errno == ERANGE || *end)
		goto bad;
	const char *unit = s + numlen;
	while (*unit == ' ' || *unit == '\t')
		unit++;
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		if (strcasecmp(unit, units[i].suffix) != 0)
			continue;
		double ms = v * units[i].ms;
		if (ms > max_ms) {
			snprintf(msg, MSG_LEN, "%s is too long a duration", s);
			return -1;
		}
		*out = (int64_t)llround(ms);
		return 0;
	}
bad:
	snprintf(msg, MSG_LEN,
		 "\"%s\" is not a duration (seconds, e.g. 15 or 0.5, or with a unit: 500ms, 2min, "
		 "1h, 1d)",
		 s);
	return -1;
}

static int parse_mode(const char *s, int *out, char *msg)
{
	int v = 0;
	if (!*s)
		goto bad;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '7')
			goto bad;
		v = v * 8 + (*p - '0');
		if (v > 07777)
			goto bad;
	}
	if (v > 0777)
		goto bad;
	*out = v;
	return 0;
bad:
	snprintf(msg, MSG_LEN, "\"%s\" is not a file mode (octal, 0 to 0777)", s);
	return -1;
}

static int parse_pool_mode(const char *s, int *out, char *msg)
{
	int m = config_parse_pool_mode(s);
	if (m < 0) {
		snprintf(msg, MSG_LEN,
			 "\"%s\" is not a pool mode (session, transaction, statement)", s);
		return -1;
	}
	*out = m;
	return 0;
}

static int parse_load_balance_hosts(const char *s, int *out, char *msg)
{
	int lb = name_index(load_balance_hosts_names, ARRAY_SIZE(load_balance_hosts_names), s);
	if (lb < 0) {
		snprintf(msg, MSG_LEN, "\"%s\" is not round-robin or disable", s);
		return -1;
	}
	*out = lb;
	return 0;
}

static int parse_auth_type(const char *s, int *out, char *msg)
{
	int t = name_index(auth_type_names, ARRAY_SIZE(auth_type_names), s);
	if (t < 0 && strcasecmp(s, "password") == 0)
		t = AUTH_TYPE_PLAIN;
	if (t >= 0) {
		*out = t;
		return 0;
	}
	if (name_index(auth_type_unsupported, ARRAY_SIZE(auth_type_unsupported), s) >= 0)
		snprintf(msg, MSG_LEN, "auth_type = %s is not supported by sluice yet", s);
	else
		snprintf(msg, MSG_LEN,
			 "\"%s\" is not an auth_type (trust, any, plain, md5, scram-sha-256, cert, hba)",
			 s);
	return -1;
}

static int parse_sslmode(const char *s, int *out, char *msg)
{
	int m = name_index(sslmode_names, ARRAY_SIZE(sslmode_names), s);
	if (m < 0) {
		snprintf(msg, MSG_LEN,
			 "\"%s\" is not an sslmode (disable, allow, prefer, require, verify-ca, "
			 "verify-full)",
			 s);
		return -1;
	}
	*out = m;
	return 0;
}

static int parse_session_pinning(const char *s, int *out, char *msg)
{
	int v = name_index(session_pinning_names, ARRAY_SIZE(session_pinning_names), s);
	if (v < 0) {
		snprintf(msg, MSG_LEN, "\"%s\" is not a session_pinning (pin, refuse)", s);
		return -1;
	}
	*out = v;
	return 0;
}

static int parse_io_uring(const char *s, int *out, char *msg)
{
	int v = name_index(io_uring_names, ARRAY_SIZE(io_uring_names), s);
	if (v < 0) {
		snprintf(msg, MSG_LEN, "\"%s\" is not an io_uring mode (off, auto, on)", s);
		return -1;
	}
	if (v == IO_URING_ON && !SLUICE_WITH_URING) {
		snprintf(msg, MSG_LEN, "io_uring = on: this sluice was built without liburing");
		return -1;
	}
	*out = v;
	return 0;
}

static int parse_log_format(const char *s, int *out, char *msg)
{
	int f = name_index(log_format_names, ARRAY_SIZE(log_format_names), s);
	if (f < 0) {
		snprintf(msg, MSG_LEN, "\"%s\" is not a log format (text, json)", s);
		return -1;
	}
	*out = f;
	return 0;
}

static char *dup_or_null(const char *s);

/* ---- the [sluice] settings table ------------------------------------------ */

enum setting_type {
	ST_INT, /* int, within [min, max] */
	ST_INT_AUTO, /* int, within [min, max], or "auto": 0 */
	ST_U32, /* uint32_t, within [min, max] */
	ST_BOOL,
	ST_DURATION, /* int64_t milliseconds */
	ST_MODE, /* int, octal */
	ST_STRING, /* char *, owned by the snapshot */
	ST_LIST, /* char *, comma-separated; kept as text */
	ST_POOL_MODE, /* enum pool_mode */
	ST_AUTH_TYPE, /* enum auth_type */
	ST_LOG_FORMAT, /* int holding enum log_format */
	ST_FACILITY, /* char *, a syslog facility name (log_syslog_facility) */
	ST_SSLMODE, /* enum sslmode */
	ST_SESSION_PINNING, /* enum session_pinning */
	ST_IO_URING, /* enum io_uring_mode */
};

/* The types whose field is a char * owned by the snapshot. */
static bool type_is_string(enum setting_type t)
{
	return t == ST_STRING || t == ST_LIST || t == ST_FACILITY;
}

struct setting {
	struct config_setting_info info; /* first: config_setting_at returns &info */
	enum setting_type type;
	size_t offset;
	const char *def; /* parsed like file text, so defaults obey the same rules */
	int64_t min, max; /* ST_INT and ST_U32 only */
};

/* One table row; the field is named like the key (guideline 2). */
#define S(key, type, def, reload, min, max, doc)                                                   \
	{                                                                                          \
		{ #key, reload, doc }, type, offsetof(struct config, key), def, min, max           \
	}
#define RELOAD true
#define RESTART false

/*
 * Every [sluice] setting. Defaults are PgBouncer's, except listen_addr, which
 * PgBouncer leaves empty (no TCP) and sluice sets to 127.0.0.1 so a sidecar
 * works without a config file. doc/config.md and etc/sluice.ini must name
 * every key here; check_config fails otherwise.
 */
static const struct setting settings[] = {
	/* Where clients connect. */
	S(listen_addr, ST_LIST, "127.0.0.1", RESTART, 0, 0,
	  "addresses to listen on for TCP, comma-separated; * all, empty none"),
	S(listen_port, ST_INT, "6432", RESTART, 1, 65535,
	  "TCP port, and the unix socket's name .s.PGSQL.<port>"),
	S(unix_socket_dir, ST_STRING, "/tmp", RESTART, 0, 0,
	  "directory of the unix socket; empty disables it"),
	S(unix_socket_mode, ST_MODE, "0777", RESTART, 0, 0, "file mode of the unix socket, octal"),
	S(unix_socket_group, ST_STRING, "", RESTART, 0, 0,
	  "group of the unix socket file (name or number); empty leaves it"),
	S(listen_backlog, ST_INT, "128", RESTART, 1, INT_MAX,
	  "listen(2) backlog: connections the kernel queues before sluice accepts them"),
	S(workers, ST_INT_AUTO, "1", RESTART, 1, CONFIG_MAX_WORKERS,
	  "event loops, each on a thread of its own; auto: one per CPU sluice may use"),
	S(io_uring, ST_IO_URING, "off", RESTART, 0, 0,
	  "batch each loop round's socket reads and writes through io_uring: off, auto (when the "
	  "kernel allows it), on"),
	S(so_reuseport, ST_BOOL, "0", RESTART, 0, 0,
	  "SO_REUSEPORT on TCP listeners: several processes may listen on one port"),
	S(login_notify_message, ST_STRING, "", RELOAD, 0, 0,
	  "a NOTICE sent to every client after login; empty sends none"),
	S(query_wait_notify, ST_DURATION, "5", RELOAD, 0, 0,
	  "tell a client waiting this long for a server that it is queued (NOTICE); 0 never"),
	S(max_client_conn, ST_INT, "100", RELOAD, 1, INT_MAX,
	  "most client connections accepted at once"),

	/* Authentication. */
	S(auth_type, ST_AUTH_TYPE, "md5", RELOAD, 0, 0,
	  "how clients authenticate: trust, any, plain, md5, scram-sha-256"),
	S(auth_file, ST_STRING, "", RELOAD, 0, 0,
	  "file of \"user\" \"secret\" lines (PgBouncer userlist.txt format)"),
	S(auth_hba_file, ST_STRING, "", RELOAD, 0, 0,
	  "pg_hba.conf-format rules that choose the method under auth_type = hba"),
	S(auth_ident_file, ST_STRING, "", RELOAD, 0, 0,
	  "ident maps (map system-user user) for auth_hba_file rules with map="),
	S(auth_user, ST_STRING, "", RELOAD, 0, 0,
	  "user that runs auth_query for users not in auth_file; empty: no look-ups"),
	S(auth_query, ST_STRING,
	  "SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END "
	  "FROM pg_authid WHERE rolname=$1 AND rolcanlogin",
	  RELOAD, 0, 0, "query returning (user, secret) for $1, the user logging in"),
	S(auth_dbname, ST_STRING, "", RELOAD, 0, 0,
	  "[databases] entry auth_query runs in; empty: the client's database"),
	S(auth_query_cache_ttl, ST_DURATION, "0", RELOAD, 0, 0,
	  "keep a secret auth_query found this long (dropped when a login with it fails); 0 never"),

	/* Pooling. */
	S(pool_mode, ST_POOL_MODE, "session", RELOAD, 0, 0,
	  "when a server goes back to the pool: session, transaction, statement"),
	S(default_pool_size, ST_INT, "20", RELOAD, 1, INT_MAX,
	  "server connections per database/user pair"),
	S(min_pool_size, ST_INT, "0", RELOAD, 0, INT_MAX,
	  "keep at least this many server connections open per pool"),
	S(reserve_pool_size, ST_INT, "0", RELOAD, 0, INT_MAX,
	  "extra server connections for pools whose clients waited too long"),
	S(reserve_pool_timeout, ST_DURATION, "5", RELOAD, 0, 0,
	  "wait after which a client may use the reserve pool"),
	S(max_db_connections, ST_INT, "0", RELOAD, 0, INT_MAX,
	  "most server connections per database; 0 unlimited"),
	S(max_user_connections, ST_INT, "0", RELOAD, 0, INT_MAX,
	  "most server connections per user; 0 unlimited"),
	S(max_db_client_connections, ST_INT, "0", RELOAD, 0, INT_MAX,
	  "most client connections per database; 0 unlimited"),
	S(max_user_client_connections, ST_INT, "0", RELOAD, 0, INT_MAX,
	  "most client connections per user; 0 unlimited"),

	/* Server connections. */
	S(server_reset_query, ST_STRING, "DISCARD ALL", RELOAD, 0, 0,
	  "query run when a session-mode client leaves; empty none"),
	S(server_reset_query_always, ST_BOOL, "0", RELOAD, 0, 0,
	  "run server_reset_query in every pool mode"),
	S(session_pinning, ST_SESSION_PINNING, "pin", RELOAD, 0, 0,
	  "transaction/statement mode: pin keeps a client that makes an advisory lock, temporary "
	  "object or held cursor on its server; refuse fails that statement"),
	S(server_check_query, ST_STRING, "<empty>", RELOAD, 0, 0,
	  "query that checks an idle server before reuse; <empty> an empty query, empty none"),
	S(server_check_delay, ST_DURATION, "30", RELOAD, 0, 0,
	  "idle time after which a server is checked before reuse"),
	S(server_lifetime, ST_DURATION, "3600", RELOAD, 0, 0,
	  "close a server connection older than this when it is released"),
	S(server_idle_timeout, ST_DURATION, "600", RELOAD, 0, 0,
	  "close a server connection idle this long; 0 never"),
	S(server_connect_timeout, ST_DURATION, "15", RELOAD, 0, 0,
	  "time allowed for connecting to and logging in to a server"),
	S(server_login_retry, ST_DURATION, "15", RELOAD, 0, 0,
	  "wait before retrying after a failed server login"),

	/* TCP options of every client and server socket (0: the OS default). */
	S(tcp_keepalive, ST_BOOL, "1", RELOAD, 0, 0,
	  "turn on TCP keepalive, so half-open connections are noticed"),
	S(tcp_keepidle, ST_INT, "0", RELOAD, 0, INT_MAX,
	  "idle seconds before the first keepalive probe; 0 OS default"),
	S(tcp_keepintvl, ST_INT, "0", RELOAD, 0, INT_MAX,
	  "seconds between keepalive probes; 0 OS default"),
	S(tcp_keepcnt, ST_INT, "0", RELOAD, 0, INT_MAX,
	  "unanswered keepalive probes before the connection is dropped; 0 OS default"),
	S(tcp_user_timeout, ST_INT, "0", RELOAD, 0, INT_MAX,
	  "milliseconds sent data may stay unacknowledged before the connection is dropped; 0 OS default"),
	S(tcp_defer_accept, ST_INT, "1", RELOAD, 0, 3600,
	  "accept a TCP client once its first bytes arrive, waiting at most this many seconds; 0 off"),

	/* Client limits and timeouts. */
	S(query_timeout, ST_DURATION, "0", RELOAD, 0, 0,
	  "cancel a query that runs longer than this; 0 never"),
	S(query_wait_timeout, ST_DURATION, "120", RELOAD, 0, 0,
	  "fail a client that waits this long for a server; 0 never"),
	S(client_idle_timeout, ST_DURATION, "0", RELOAD, 0, 0,
	  "close a client idle this long; 0 never"),
	S(client_login_timeout, ST_DURATION, "60", RELOAD, 0, 0,
	  "close a client that has not logged in within this time"),
	S(suspend_timeout, ST_DURATION, "10", RELOAD, 0, 0,
	  "SUSPEND closes connections whose output has not drained after this long; 0 never"),
	S(idle_transaction_timeout, ST_DURATION, "0", RELOAD, 0, 0,
	  "close a client idle in a transaction this long; 0 never"),
	S(transaction_timeout, ST_DURATION, "0", RELOAD, 0, 0,
	  "close a client whose transaction has been open this long; 0 never"),
	S(pool_idle_timeout, ST_DURATION, "0", RELOAD, 0, 0,
	  "forget a pool with no clients and no servers for this long; 0 never"),
	S(server_fast_close, ST_BOOL, "0", RELOAD, 0, 0,
	  "session mode: close a server marked for closing as soon as its transaction ends"),
	S(ignore_startup_parameters, ST_LIST, "extra_float_digits", RELOAD, 0, 0,
	  "startup parameters accepted from clients and not passed on"),
	S(track_extra_parameters, ST_LIST, "IntervalStyle", RELOAD, 0, 0,
	  "parameters tracked per client besides PgBouncer's default set"),
	S(max_packet_size, ST_U32, "2147483647", RELOAD, 1024, 2147483647,
	  "largest protocol message accepted, in bytes"),
	S(max_prepared_statements, ST_INT, "200", RELOAD, 0, INT_MAX,
	  "named prepared statements kept per server in transaction/statement mode; 0 off"),
	S(notify_queue_size, ST_U32, "8388608", RELOAD, 8192, 2147483647,
	  "transaction/statement mode: bytes of notifications a listening client may leave "
	  "unread before it is disconnected"),

	/* Logging and process. */
	S(logfile, ST_STRING, "", RELOAD, 0, 0, "log file; empty logs to stderr only"),
	S(pidfile, ST_STRING, "", RESTART, 0, 0, "file to write the process id to; empty none"),
	S(user, ST_STRING, "", RESTART, 0, 0,
	  "run as this OS user once listening (from root); -u overrides; empty stays"),
	S(syslog, ST_BOOL, "0", RELOAD, 0, 0, "log to syslog(3) as well"),
	S(syslog_ident, ST_STRING, "pgbouncer", RELOAD, 0, 0, "the name syslog lines carry"),
	S(syslog_facility, ST_FACILITY, "daemon", RELOAD, 0, 0,
	  "syslog facility: auth, authpriv, daemon, user, local0 to local7"),
	S(log_connections, ST_BOOL, "1", RELOAD, 0, 0, "log each client login"),
	S(log_disconnections, ST_BOOL, "1", RELOAD, 0, 0,
	  "log each client disconnection, with the reason"),
	S(log_pooler_errors, ST_BOOL, "1", RELOAD, 0, 0, "log the errors sluice sends to clients"),
	S(verbose, ST_INT, "0", RELOAD, 0, 3, "log detail: 0 info, 1 debug, 2 and more noise"),
	S(log_format, ST_LOG_FORMAT, "text", RELOAD, 0, 0, "log line format: text or json"),
	S(log_stats, ST_BOOL, "1", RELOAD, 0, 0,
	  "log a stats: line per database every stats_period"),
	S(stats_period, ST_DURATION, "60", RELOAD, 0, 0,
	  "period over which SHOW STATS averages are computed"),

	/* Admin console and metrics. */
	S(admin_users, ST_LIST, "", RELOAD, 0, 0,
	  "users allowed every admin console command, comma-separated"),
	S(stats_users, ST_LIST, "", RELOAD, 0, 0,
	  "users allowed the admin console's read-only SHOW commands"),
	S(metrics_port, ST_INT, "0", RESTART, 0, 65535,
	  "port of the HTTP /metrics, /health and /ready endpoints; 0 off"),
	S(metrics_addr, ST_STRING, "127.0.0.1", RESTART, 0, 0,
	  "address the HTTP endpoints listen on"),

	/* Peering: cancel requests that reach the wrong process behind one port. */
	S(peer_id, ST_INT, "0", RELOAD, 0, 16383,
	  "this process's id among its [peers], kept in its cancel keys; 0 off"),
	S(client_tls_sslmode, ST_SSLMODE, "disable", RELOAD, 0, 0,
	  "TLS with clients: disable, allow, prefer, require, verify-ca, verify-full"),
	S(client_tls_key_file, ST_STRING, "", RELOAD, 0, 0, "private key of sluice's certificate"),
	S(client_tls_cert_file, ST_STRING, "", RELOAD, 0, 0, "sluice's certificate for clients"),
	S(client_tls_ca_file, ST_STRING, "", RELOAD, 0, 0, "CAs that sign client certificates"),
	S(client_tls_protocols, ST_STRING, "secure", RELOAD, 0, 0,
	  "TLS versions offered to clients (secure: TLS 1.2 and 1.3)"),
	S(client_tls_ciphers, ST_STRING, "default", RELOAD, 0, 0, "TLS 1.2 ciphers for clients"),
	S(client_tls13_ciphers, ST_STRING, "default", RELOAD, 0, 0, "TLS 1.3 suites for clients"),
	S(client_tls_ecdhcurve, ST_STRING, "auto", RELOAD, 0, 0, "ECDH groups for clients"),
	S(client_tls_dheparams, ST_STRING, "auto", RELOAD, 0, 0,
	  "DH parameters for clients: auto, legacy, none or a file"),
	S(server_tls_sslmode, ST_SSLMODE, "prefer", RELOAD, 0, 0,
	  "TLS with servers: disable, allow, prefer, require, verify-ca, verify-full"),
	S(server_tls_ca_file, ST_STRING, "", RELOAD, 0, 0, "CAs that sign server certificates"),
	S(server_tls_key_file, ST_STRING, "", RELOAD, 0, 0,
	  "private key of sluice's client certificate"),
	S(server_tls_cert_file, ST_STRING, "", RELOAD, 0, 0, "sluice's certificate for servers"),
	S(server_tls_protocols, ST_STRING, "secure", RELOAD, 0, 0,
	  "TLS versions offered to servers"),
	S(server_tls_ciphers, ST_STRING, "default", RELOAD, 0, 0, "TLS 1.2 ciphers for servers"),
	S(server_tls13_ciphers, ST_STRING, "default", RELOAD, 0, 0, "TLS 1.3 suites for servers"),
	S(server_tls_sslnegotiation, ST_STRING, "postgres", RELOAD, 0, 0,
	  "postgres: SSLRequest first; direct: TLS at once (PostgreSQL 17), needs require"),
};

#undef S

/*
 * Keys PgBouncer accepts in [pgbouncer] that sluice does not implement yet.
 * They load with a warning naming each one, so a pgbouncer.ini can be used
 * as it is; anything in neither table is an error.
 */
static const char *const unimplemented_settings[] = {
	"application_name_add_host",
	"auth_ldap_options",
	"autodb_idle_timeout",
	"cancel_wait_timeout",
	"conffile",
	"disable_pqexec",
	"dns_max_ttl",
	"dns_nxdomain_ttl",
	"dns_zone_check_period",
	"job_name",
	"pkt_buf",
	"resolv_conf",
	"sbuf_loopcnt",
	"scram_iterations",
	"server_round_robin",
	"service_name",
	"tcp_socket_buffer",
};

size_t config_setting_count(void)
{
	return ARRAY_SIZE(settings);
}

const struct config_setting_info *config_setting_at(size_t i)
{
	return i < ARRAY_SIZE(settings) ? &settings[i].info : NULL;
}

const char *config_unimplemented_at(size_t i)
{
	return i < ARRAY_SIZE(unimplemented_settings) ? unimplemented_settings[i] : NULL;
}

static const struct setting *setting_find(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(settings); i++)
		if (strcasecmp(settings[i].info.name, name) == 0)
			return &settings[i];
	return NULL;
}

static bool is_unimplemented(const char *name)
{
	return name_index(unimplemented_settings, ARRAY_SIZE(unimplemented_settings), name) >= 0;
}

/* Parses text into the field of s in cfg. 0, or -1 with msg; cfg is untouched on error. */
static int setting_set(struct config *cfg, const struct setting *s, const char *text, char *msg)
{
	void *field = (char *)cfg + s->offset;
	int64_t i64;
	int iv;
	bool b;

	switch (s->type) {
	case ST_INT_AUTO:
		if (strcasecmp(text, "auto") == 0) {
			*(int *)field = 0;
			return 0;
		}
		/* fall through */
	case ST_INT:
		if (parse_int64(text, s->min, s->max, &i64, msg) < 0)
			return -1;
		*(int *)field = (int)i64;
		return 0;
	case ST_U32:
		if (parse_int64(text, s->min, s->max, &i64, msg) < 0)
			return -1;
		*(uint32_t *)field = (uint32_t)i64;
		return 0;
	case ST_BOOL:
		if (parse_bool(text, &b, msg) < 0)
			return -1;
		*(bool *)field = b;
		return 0;
	case ST_DURATION:
		if (parse_duration(text, &i64, msg) < 0)
			return -1;
		*(int64_t *)field = i64;
		return 0;
	case ST_MODE:
		if (parse_mode(text, &iv, msg) < 0)
			return -1;
		*(int *)field = iv;
		return 0;
	case ST_STRING:
	case ST_LIST:
		free(*(char **)field);
		*(char **)field = xstrdup(text);
		return 0;
	case ST_POOL_MODE:
		if (parse_pool_mode(text, &iv, msg) < 0)
			return -1;
		*(enum pool_mode *)field = (enum pool_mode)iv;
		return 0;
	case ST_AUTH_TYPE:
		if (parse_auth_type(text, &iv, msg) < 0)
			return -1;
		*(enum auth_type *)field = (enum auth_type)iv;
		return 0;
	case ST_LOG_FORMAT:
		if (parse_log_format(text, &iv, msg) < 0)
			return -1;
		*(int *)field = iv;
		return 0;
	case ST_SSLMODE:
		if (parse_sslmode(text, &iv, msg) < 0)
			return -1;
		*(enum sslmode *)field = (enum sslmode)iv;
		return 0;
	case ST_SESSION_PINNING:
		if (parse_session_pinning(text, &iv, msg) < 0)
			return -1;
		*(enum session_pinning *)field = (enum session_pinning)iv;
		return 0;
	case ST_IO_URING:
		if (parse_io_uring(text, &iv, msg) < 0)
			return -1;
		*(enum io_uring_mode *)field = (enum io_uring_mode)iv;
		return 0;
	case ST_FACILITY:
		if (log_syslog_facility(text) < 0) {
			snprintf(msg, MSG_LEN,
				 "\"%s\" is not a syslog facility (auth, authpriv, daemon, user, "
				 "local0 to local7)",
				 text);
			return -1;
		}
		free(*(char **)field);
		*(char **)field = xstrdup(text);
		return 0;
	}
	snprintf(msg, MSG_LEN, "internal error: unknown setting type");
	return -1;
}

/* Milliseconds as PgBouncer shows seconds: "5", "0.5", "1.25". */
static void format_duration(int64_t ms, char *buf, size_t len)
{
	if (ms % 1000 == 0) {
		snprintf(buf, len, "%lld", (long long)(ms / 1000));
		return;
	}
	char frac[8];
	snprintf(frac, sizeof(frac), "%03lld", (long long)(ms % 1000));
	for (size_t n = strlen(frac); n > 0 && frac[n - 1] == '0'; n--)
		frac[n - 1] = '\0';
	snprintf(buf, len, "%lld.%s", (long long)(ms / 1000), frac);
}

void config_setting_value(const struct config *cfg, size_t i, char *buf, size_t len)
{
	if (i >= ARRAY_SIZE(settings) || len == 0)
		return;
	const struct setting *s = &settings[i];
	const void *field = (const char *)cfg + s->offset;
	const char *str;

	switch (s->type) {
	case ST_INT_AUTO:
		if (*(const int *)field == 0) {
			snprintf(buf, len, "auto");
			return;
		}
		/* fall through */
	case ST_INT:
		snprintf(buf, len, "%d", *(const int *)field);
		return;
	case ST_U32:
		snprintf(buf, len, "%u", (unsigned)*(const uint32_t *)field);
		return;
	case ST_BOOL:
		snprintf(buf, len, "%d", *(const bool *)field ? 1 : 0);
		return;
	case ST_DURATION:
		format_duration(*(const int64_t *)field, buf, len);
		return;
	case ST_MODE:
		snprintf(buf, len, "0%o", (unsigned)*(const int *)field);
		return;
	case ST_STRING:
	case ST_LIST:
	case ST_FACILITY:
		str = *(char *const *)field;
		snprintf(buf, len, "%s", str ? str : "");
		return;
	case ST_POOL_MODE:
		snprintf(buf, len, "%s", config_pool_mode_name(*(const enum pool_mode *)field));
		return;
	case ST_AUTH_TYPE:
		snprintf(buf, len, "%s", config_auth_type_name(*(const enum auth_type *)field));
		return;
	case ST_SSLMODE:
		snprintf(buf, len, "%s", config_sslmode_name(*(const enum sslmode *)field));
		return;
	case ST_SESSION_PINNING: {
		enum session_pinning v = *(const enum session_pinning *)field;
		snprintf(buf, len, "%s",
			 (size_t)v < ARRAY_SIZE(session_pinning_names) ? session_pinning_names[v]
								       : "unknown");
		return;
	}
	case ST_IO_URING: {
		enum io_uring_mode v = *(const enum io_uring_mode *)field;
		snprintf(buf, len, "%s",
			 (size_t)v < ARRAY_SIZE(io_uring_names) ? io_uring_names[v] : "unknown");
		return;
	}
	case ST_LOG_FORMAT: {
		int f = *(const int *)field;
		snprintf(buf, len, "%s",
			 (size_t)f < ARRAY_SIZE(log_format_names) ? log_format_names[f]
								  : "unknown");
		return;
	}
	}
	snprintf(buf, len, "?");
}

int config_apply(struct config *cfg, const char *key, const char *value, struct config_error *err)
{
	char msg[MSG_LEN];
	const struct setting *s = setting_find(key);
	if (!s && is_unimplemented(key)) {
		/* As in the file: a PgBouncer setting sluice lacks is named, not refused. */
		snprintf(err->text, sizeof(err->text),
			 "setting %s is not implemented by sluice yet and is ignored", key);
		return CONFIG_APPLY_IGNORED;
	}
	if (!s) {
		snprintf(err->text, sizeof(err->text), "unknown setting: %s", key);
		return -1;
	}
	if (!s->info.reloadable) {
		snprintf(err->text, sizeof(err->text),
			 "%s cannot be changed while sluice runs; edit the config file and restart",
			 s->info.name);
		return -1;
	}
	if (setting_set(cfg, s, value, msg) < 0) {
		snprintf(err->text, sizeof(err->text), "%s: %s", s->info.name, msg);
		return -1;
	}
	return 0;
}

void config_keep_restart_settings(struct config *next, const struct config *running)
{
	char was[512], now[512];
	for (size_t i = 0; i < ARRAY_SIZE(settings); i++) {
		const struct setting *s = &settings[i];
		if (s->info.reloadable)
			continue;
		config_setting_value(running, i, was, sizeof(was));
		config_setting_value(next, i, now, sizeof(now));
		if (strcmp(was, now) != 0) {
			log_warning("%s changed from \"%s\" to \"%s\": it takes effect at the next "
				    "restart",
				    s->info.name, was, now);
			next->warnings++;
		}
		void *dst = (char *)next + s->offset;
		const void *src = (const char *)running + s->offset;
		if (type_is_string(s->type)) {
			free(*(char **)dst);
			*(char **)dst = dup_or_null(*(char *const *)src);
			continue;
		}
		switch (s->type) {
		case ST_BOOL:
			*(bool *)dst = *(const bool *)src;
			break;
		case ST_U32:
			*(uint32_t *)dst = *(const uint32_t *)src;
			break;
		case ST_DURATION:
			*(int64_t *)dst = *(const int64_t *)src;
			break;
		default:
			*(int *)dst = *(const int *)src;
			break;
		}
	}
}

int config_setting_index(const char *key)
{
	const struct setting *s = setting_find(key);
	return s ? (int)(s - settings) : -1;
}

const char *config_setting_default(size_t i)
{
	return i < ARRAY_SIZE(settings) ? settings[i].def : NULL;
}

/* ---- errors ---------------------------------------------------------------- */

/* "where:line: message", or "where: message" when line is 0. */
PRINTF_LIKE(4, 5)
static void set_error(struct config_error *err, const char *where, int line, const char *fmt, ...)
{
	size_t size = sizeof(err->text);
	int n = 0;
	if (where && line > 0)
		n = snprintf(err->text, size, "%s:%d: ", where, line);
	else if (where)
		n = snprintf(err->text, size, "%s: ", where);
	if (n < 0)
		n = 0;
	if ((size_t)n >= size)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->text + n, size - (size_t)n, fmt, ap);
	va_end(ap);
}

/* Puts "prefix: " in front of the message in msg (MSG_LEN bytes), cutting its end. */
static void msg_prefix(char *msg, const char *prefix)
{
	size_t plen = strlen(prefix) + 2, mlen = strlen(msg);
	if (plen >= MSG_LEN)
		return;
	if (mlen > MSG_LEN - 1 - plen)
		mlen = MSG_LEN - 1 - plen;
	memmove(msg + plen, msg, mlen);
	msg[plen + mlen] = '\0';
	memcpy(msg, prefix, plen - 2);
	msg[plen - 2] = ':';
	msg[plen - 1] = ' ';
}

/* ---- connection-string tokenizer ------------------------------------------
 *
 * [databases] and [users] values are "key=value key='value with spaces'" as
 * libpq writes them: single quotes, and a backslash escaping the next
 * character inside or outside quotes. Whitespace may surround '='.
 */

struct kv {
	char *key;
	char *value;
};

struct kv_list {
	struct kv *items;
	size_t n;
};

static void kv_list_free(struct kv_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->items[i].key);
		free(l->items[i].value);
	}
	free(l->items);
	l->items = NULL;
	l->n = 0;
}

/* Splits s into out (which the caller frees with kv_list_free, also on error). */
static int kv_tokenize(const char *s, struct kv_list *out, char *msg)
{
	const char *p = s;
	size_t cap = 0;
	char *val = NULL;

	out->items = NULL;
	out->n = 0;
	for (;;) {
		while (isspace((unsigned char)*p))
			p++;
		if (!*p)
			return 0;
		const char *k = p;
		while (isalnum((unsigned char)*p) || *p == '_')
			p++;
		if (p == k) {
			snprintf(msg, MSG_LEN, "expected a key at \"%.20s\"", p);
			return -1;
		}
		size_t klen = (size_t)(p - k);
		while (isspace((unsigned char)*p))
			p++;
		if (*p != '=') {
			snprintf(msg, MSG_LEN, "missing \"=\" after \"%.*s\"", (int)MIN(klen, 40),
				 k);
			return -1;
		}
		p++;
		while (isspace((unsigned char)*p))
			p++;

		/* The value is never longer than the rest of s. */
		val = xmalloc(strlen(p) + 1);
		size_t vlen = 0;
		if (*p == '\'') {
			p++;
			while (*p && *p != '\'') {
				if (*p == '\\' && p[1])
					p++;
				val[vlen++] = *p++;
			}
			if (*p != '\'') {
				snprintf(msg, MSG_LEN, "unterminated quoted value for \"%.*s\"",
					 (int)MIN(klen, 40), k);
				free(val);
				return -1;
			}
			p++;
		} else {
			while (*p && !isspace((unsigned char)*p)) {
				if (*p == '\\' && p[1])
					p++;
				val[vlen++] = *p++;
			}
		}
		val[vlen] = '\0';

		if (out->n == cap) {
			cap = cap ? cap * 2 : 8;
			out->items = xrealloc(out->items, cap * sizeof(*out->items));
		}
		out->items[out->n].key = xstrndup(k, klen);
		out->items[out->n].value = val;
		out->n++;
		val = NULL;
	}
}

/* Appends key='value' (quoted for libpq) to a growing string. */
static void conninfo_append(char **str, const char *key, const char *value)
{
	size_t old = *str ? strlen(*str) : 0;
	size_t need = old + strlen(key) + 2 * strlen(value) + 5;
	char *s = xrealloc(*str, need);
	char *w = s + old;
	if (old)
		*w++ = ' ';
	w += sprintf(w, "%s='", key);
	for (const char *v = value; *v; v++) {
		if (*v == '\'' || *v == '\\')
			*w++ = '\\';
		*w++ = *v;
	}
	*w++ = '\'';
	*w = '\0';
	*str = s;
}

/* ---- [databases] and [users] keys ----------------------------------------- */

enum entry_key_type {
	EK_INT, /* int >= min */
	EK_POOL_MODE, /* int holding enum pool_mode */
	EK_LOAD_BALANCE, /* int holding enum load_balance_hosts */
	EK_DURATION, /* int64_t ms */
	EK_STRING, /* char * */
	EK_UNIMPLEMENTED, /* PgBouncer knows it, sluice ignores it with a warning */
};

struct entry_key {
	const char *name;
	enum entry_key_type type;
	size_t offset;
	int min;
};

#define D(name) offsetof(struct config_database, name)
/* PgBouncer's own [databases] keys; everything else goes to libpq's parser. */
static const struct entry_key database_keys[] = {
	{ "pool_size", EK_INT, D(pool_size), 1 },
	{ "min_pool_size", EK_INT, D(min_pool_size), 0 },
	{ "reserve_pool_size", EK_INT, D(reserve_pool_size), 0 },
	{ "reserve_pool", EK_INT, D(reserve_pool_size), 0 }, /* PgBouncer's old name */
	{ "max_db_connections", EK_INT, D(max_db_connections), 0 },
	{ "max_db_client_connections", EK_INT, D(max_db_client_connections), 0 },
	{ "pool_mode", EK_POOL_MODE, D(pool_mode), 0 },
	{ "server_lifetime", EK_DURATION, D(server_lifetime), 0 },
	{ "connect_query", EK_STRING, D(connect_query), 0 },
	{ "client_encoding", EK_STRING, D(client_encoding), 0 },
	{ "datestyle", EK_STRING, D(datestyle), 0 },
	{ "timezone", EK_STRING, D(timezone), 0 },
	{ "application_name", EK_STRING, D(application_name), 0 },
	{ "auth_user", EK_STRING, D(auth_user), 0 },
	{ "auth_query", EK_STRING, D(auth_query), 0 },
	{ "auth_dbname", EK_STRING, D(auth_dbname), 0 },
	{ "load_balance_hosts", EK_LOAD_BALANCE, D(load_balance_hosts), 0 },
	{ "target_session_attrs", EK_UNIMPLEMENTED, 0, 0 },
	{ "query_wait_timeout", EK_DURATION, D(query_wait_timeout), 0 },
};
#undef D

#define U(name) offsetof(struct config_user, name)
static const struct entry_key user_keys[] = {
	{ "pool_mode", EK_POOL_MODE, U(pool_mode), 0 },
	{ "pool_size", EK_INT, U(pool_size), 1 },
	{ "max_user_connections", EK_INT, U(max_user_connections), 0 },
	{ "max_user_client_connections", EK_INT, U(max_user_client_connections), 0 },
	{ "reserve_pool_size", EK_INT, U(reserve_pool_size), 0 },
	{ "query_timeout", EK_DURATION, U(query_timeout), 0 },
	{ "query_wait_timeout", EK_DURATION, U(query_wait_timeout), 0 },
	{ "idle_transaction_timeout", EK_DURATION, U(idle_transaction_timeout), 0 },
	{ "transaction_timeout", EK_DURATION, U(transaction_timeout), 0 },
	{ "client_idle_timeout", EK_DURATION, U(client_idle_timeout), 0 },
};
#undef U

static const struct entry_key *entry_key_find(const struct entry_key *keys, size_t n,
					      const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

/*
 * Stores one key of a [databases] or [users] entry into the struct at base.
 * 1 when it was an unimplemented key (the caller warns), 0 stored, -1 msg.
 */
static int entry_key_set(void *base, const struct entry_key *k, const char *value, char *msg)
{
	void *field = (char *)base + k->offset;
	int64_t i64;
	int iv;

	switch (k->type) {
	case EK_INT:
		if (parse_int64(value, k->min, INT_MAX, &i64, msg) < 0)
			return -1;
		*(int *)field = (int)i64;
		return 0;
	case EK_POOL_MODE:
		if (parse_pool_mode(value, &iv, msg) < 0)
			return -1;
		*(int *)field = iv;
		return 0;
	case EK_LOAD_BALANCE:
		if (parse_load_balance_hosts(value, &iv, msg) < 0)
			return -1;
		*(int *)field = iv;
		return 0;
	case EK_DURATION:
		if (parse_duration(value, &i64, msg) < 0)
			return -1;
		*(int64_t *)field = i64;
		return 0;
	case EK_STRING:
		free(*(char **)field);
		*(char **)field = xstrdup(value);
		return 0;
	case EK_UNIMPLEMENTED:
		return 1;
	}
	return -1;
}

static void database_free(struct config_database *db)
{
	if (!db)
		return;
	free(db->name);
	free(db->host);
	for (int i = 0; i < db->n_hosts; i++)
		free(db->hosts[i].host);
	free(db->hosts);
	free(db->dbname);
	free(db->user);
	free(db->password);
	free(db->connect_query);
	free(db->client_encoding);
	free(db->datestyle);
	free(db->timezone);
	free(db->application_name);
	free(db->auth_user);
	free(db->auth_query);
	free(db->auth_dbname);
	free(db);
}

/*
 * Reads host/dbname/user/password from libpq's parse of the rest; the port
 * text goes to *ports (the caller owns it) for database_split_hosts.
 */
static int database_take_libpq(struct config_database *db, const char *conninfo, char **ports,
			       char *msg)
{
	char *pqerr = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &pqerr);
	int rc = 0;

	if (!opts) {
		if (pqerr) {
			size_t n = strlen(pqerr);
			while (n > 0 && (pqerr[n - 1] == '\n' || pqerr[n - 1] == ' '))
				pqerr[--n] = '\0';
			snprintf(msg, MSG_LEN, "%s", pqerr);
			PQfreemem(pqerr);
		} else {
			snprintf(msg, MSG_LEN, "libpq could not parse the connection string");
		}
		return -1;
	}
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		if (!o->val)
			continue;
		if (strcmp(o->keyword, "host") == 0) {
			db->host = xstrdup(o->val);
		} else if (strcmp(o->keyword, "dbname") == 0) {
			db->dbname = xstrdup(o->val);
		} else if (strcmp(o->keyword, "user") == 0) {
			db->user = xstrdup(o->val);
		} else if (strcmp(o->keyword, "password") == 0) {
			db->password = xstrdup(o->val);
		} else if (strcmp(o->keyword, "port") == 0) {
			free(*ports);
			*ports = xstrdup(o->val);
		} else {
			/* libpq knows it, but sluice does not pass it on: refuse, not ignore. */
			snprintf(msg, MSG_LEN,
				 "connection option \"%s\" is not supported by sluice", o->keyword);
			rc = -1;
			break;
		}
	}
	PQconninfoFree(opts);
	return rc;
}

/* The number of comma-separated items in list. */
static int list_items(const char *list)
{
	int n = 1;
	for (const char *p = list; *p; p++)
		n += *p == ',';
	return n;
}

/*
 * Fills db->hosts from db->host and the port text (NULL: 5432), as libpq
 * pairs them: one port for every host, or one port per host. An empty host
 * item is refused: PgBouncer skips it, libpq reads it as its default socket,
 * and neither is likely what was meant.
 */
static int database_split_hosts(struct config_database *db, const char *ports, char *msg)
{
	int n = db->host ? list_items(db->host) : 1;
	int n_ports = ports ? list_items(ports) : 1;
	if (n_ports != 1 && n_ports != n) {
		snprintf(msg, MSG_LEN, "port: %d ports for %d hosts (give one, or one per host)",
			 n_ports, n);
		return -1;
	}
	db->hosts = xcalloc((size_t)n, sizeof(*db->hosts));
	db->n_hosts = n;
	const char *h = db->host, *pt = ports;
	for (int i = 0; i < n; i++) {
		int port = 5432;
		if (pt) {
			size_t len = strcspn(pt, ",");
			char text[32];
			int64_t v;
			snprintf(text, sizeof(text), "%.*s", (int)MIN(len, sizeof(text) - 1), pt);
			if (parse_int64(text, 1, 65535, &v, msg) < 0) {
				msg_prefix(msg, "port");
				return -1;
			}
			port = (int)v;
			if (n_ports > 1)
				pt += len + (pt[len] == ',');
		}
		db->hosts[i].port = port;
		if (h) {
			size_t len = strcspn(h, ",");
			if (len == 0) {
				snprintf(msg, MSG_LEN, "host: empty item in \"%s\"", db->host);
				return -1;
			}
			db->hosts[i].host = xstrndup(h, len);
			h += len + (h[len] == ',');
		}
	}
	db->port = db->hosts[0].port;
	return 0;
}

/* ---- the load state -------------------------------------------------------- */

/* PgBouncer's limit on nested %include files; deeper nesting is an error. */
#define INCLUDE_MAX 10

/* One file of the stack being read: the config file and the %include files it opened. */
struct load_file {
	FILE *fp;
	char *path; /* as written, so messages name it as the operator did */
	int line; /* this file's line count while an included file is read */
	dev_t dev; /* identity, to refuse a file that includes itself */
	ino_t ino;
};

struct load {
	struct config *cfg;
	struct config_error *err;
	const char *where; /* file name, or the environment variable */
	int line; /* the line being handled */
	int section_line; /* the line of the last [section] header */
	bool line_start; /* the reader is at the start of a physical line */
	struct load_file files[INCLUDE_MAX + 1]; /* [0] the config file */
	int depth; /* index in files of the file being read */
	bool from_text; /* config_load_text: %include lines are refused, not followed */
	bool failed; /* err holds a message */
	enum { SEC_NONE, SEC_SLUICE, SEC_DATABASES, SEC_USERS, SEC_PEERS } section;
	char section_name[64];
};

PRINTF_LIKE(2, 3)
static void load_warn(struct load *ld, const char *fmt, ...)
{
	char text[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (ld->line > 0)
		log_warning("%s:%d: %s", ld->where, ld->line, text);
	else
		log_warning("%s: %s", ld->where, text);
	ld->cfg->warnings++;
}

/*
 * Adds one [databases] entry (or replaces one from the file when replace is
 * set, for SLUICE_DATABASES). name and value are borrowed.
 */
static int add_database(struct load *ld, const char *name, const char *value, bool replace)
{
	struct config *cfg = ld->cfg;
	struct config_database *db = xcalloc(1, sizeof(*db));
	struct kv_list kvs = { 0 };
	char *conninfo = NULL, *ports = NULL;
	char msg[MSG_LEN];
	bool fallback = strcmp(name, "*") == 0;

	db->name = xstrdup(name);
	db->port = 5432;
	db->pool_size = -1;
	db->min_pool_size = -1;
	db->reserve_pool_size = -1;
	db->max_db_connections = -1;
	db->max_db_client_connections = -1;
	db->pool_mode = -1;
	db->server_lifetime = -1;
	db->query_wait_timeout = -1;
	db->line = ld->line;

	if (kv_tokenize(value, &kvs, msg) < 0)
		goto fail;
	for (size_t i = 0; i < kvs.n; i++) {
		const struct entry_key *k = entry_key_find(database_keys, ARRAY_SIZE(database_keys),
							   kvs.items[i].key);
		if (!k) {
			conninfo_append(&conninfo, kvs.items[i].key, kvs.items[i].value);
			continue;
		}
		int rc = entry_key_set(db, k, kvs.items[i].value, msg);
		if (rc < 0) {
			msg_prefix(msg, k->name);
			goto fail;
		}
		if (rc > 0)
			load_warn(ld,
				  "database \"%s\": %s is not implemented by sluice yet and is "
				  "ignored",
				  name, k->name);
	}
	if (conninfo && database_take_libpq(db, conninfo, &ports, msg) < 0)
		goto fail;
	if (database_split_hosts(db, ports, msg) < 0)
		goto fail;
	/* The fallback keeps dbname NULL: it connects to the database the client asked for. */
	if (!db->dbname && !fallback)
		db->dbname = xstrdup(name);
	kv_list_free(&kvs);
	free(conninfo);
	free(ports);

	struct config_database *old = NULL;
	if (fallback)
		old = cfg->fallback;
	else
		HASH_FIND_STR(cfg->databases, name, old);
	if (old && !replace) {
		set_error(ld->err, ld->where, ld->line,
			  "database \"%s\" is already defined at line %d", name, old->line);
		ld->failed = true;
		database_free(db);
		return -1;
	}
	if (fallback) {
		database_free(cfg->fallback);
		cfg->fallback = db;
	} else {
		if (old) {
			HASH_DEL(cfg->databases, old);
			database_free(old);
		}
		HASH_ADD_KEYPTR(hh, cfg->databases, db->name, strlen(db->name), db);
	}
	return 0;

fail:
	set_error(ld->err, ld->where, ld->line, "database \"%s\": %s", name, msg);
	ld->failed = true;
	kv_list_free(&kvs);
	free(conninfo);
	free(ports);
	database_free(db);
	return -1;
}

static void user_free(struct config_user *u)
{
	if (!u)
		return;
	free(u->name);
	free(u);
}

static int add_user(struct load *ld, const char *name, const char *value)
{
	struct config *cfg = ld->cfg;
	struct config_user *u = xcalloc(1, sizeof(*u));
	struct kv_list kvs = { 0 };
	char msg[MSG_LEN];

	u->name = xstrdup(name);
	u->pool_mode = -1;
	u->pool_size = -1;
	u->max_user_connections = -1;
	u->max_user_client_connections = -1;
	u->reserve_pool_size = -1;
	u->query_timeout = -1;
	u->idle_transaction_timeout = -1;
	u->transaction_timeout = -1;
	u->client_idle_timeout = -1;
	u->query_wait_timeout = -1;
	u->line = ld->line;

	if (kv_tokenize(value, &kvs, msg) < 0)
		goto fail;
	for (size_t i = 0; i < kvs.n; i++) {
		const struct entry_key *k = entry_key_find(user_keys, ARRAY_SIZE(user_keys),
							   kvs.items[i].key);
		if (!k) {
			snprintf(
				msg, sizeof(msg),
				"unknown key \"%s\" (known: pool_mode, pool_size, reserve_pool_size, "
				"max_user_connections, max_user_client_connections, query_timeout, "
				"query_wait_timeout, idle_transaction_timeout, transaction_timeout, "
				"client_idle_timeout)",
				kvs.items[i].key);
			goto fail;
		}
		int rc = entry_key_set(u, k, kvs.items[i].value, msg);
		if (rc < 0) {
			msg_prefix(msg, k->name);
			goto fail;
		}
		if (rc > 0)
			load_warn(ld,
				  "user \"%s\": %s is not implemented by sluice yet and is ignored",
				  name, k->name);
	}
	kv_list_free(&kvs);

	struct config_user *old = NULL;
	HASH_FIND_STR(cfg->users, name, old);
	if (old) {
		set_error(ld->err, ld->where, ld->line, "user \"%s\" is already defined at line %d",
			  name, old->line);
		ld->failed = true;
		user_free(u);
		return -1;
	}
	HASH_ADD_KEYPTR(hh, cfg->users, u->name, strlen(u->name), u);
	return 0;

fail:
	set_error(ld->err, ld->where, ld->line, "user \"%s\": %s", name, msg);
	ld->failed = true;
	kv_list_free(&kvs);
	user_free(u);
	return -1;
}

static void peer_free(struct config_peer *peer)
{
	if (!peer)
		return;
	free(peer->host);
	free(peer);
}

/* One [peers] line: "<peer_id> = host=... port=... pool_size=...", as PgBouncer's. */
static int add_peer(struct load *ld, const char *name, const char *value)
{
	struct config *cfg = ld->cfg;
	struct config_peer *peer = xcalloc(1, sizeof(*peer));
	struct kv_list kvs = { 0 };
	char msg[MSG_LEN];
	int64_t v;

	peer->port = 6432;
	peer->pool_size = -1;
	peer->line = ld->line;
	if (parse_int64(name, 1, 65535, &v, msg) < 0) {
		set_error(ld->err, ld->where, ld->line, "peer \"%s\": the id %s", name, msg);
		goto fail_set;
	}
	peer->peer_id = (int)v;
	if (kv_tokenize(value, &kvs, msg) < 0)
		goto fail;
	for (size_t i = 0; i < kvs.n; i++) {
		const char *k = kvs.items[i].key, *val = kvs.items[i].value;
		if (strcasecmp(k, "host") == 0) {
			free(peer->host);
			peer->host = xstrdup(val);
		} else if (strcasecmp(k, "port") == 0 || strcasecmp(k, "pool_size") == 0) {
			bool port = strcasecmp(k, "port") == 0;
			if (parse_int64(val, 1, port ? 65535 : INT_MAX, &v, msg) < 0) {
				msg_prefix(msg, port ? "port" : "pool_size");
				goto fail;
			}
			*(port ? &peer->port : &peer->pool_size) = (int)v;
		} else {
			snprintf(msg, sizeof(msg),
				 "unknown key \"%s\" (known: host, port, pool_size)", k);
			goto fail;
		}
	}
	kv_list_free(&kvs);
	if (!peer->host || !*peer->host) {
		snprintf(msg, sizeof(msg), "host is not set");
		goto fail;
	}
	struct config_peer *old = NULL;
	HASH_FIND_INT(cfg->peers, &peer->peer_id, old);
	if (old) {
		set_error(ld->err, ld->where, ld->line, "peer %d is already defined at line %d",
			  peer->peer_id, old->line);
		goto fail_set;
	}
	HASH_ADD_INT(cfg->peers, peer_id, peer);
	return 0;

fail:
	set_error(ld->err, ld->where, ld->line, "peer %s: %s", name, msg);
fail_set:
	ld->failed = true;
	kv_list_free(&kvs);
	peer_free(peer);
	return -1;
}

/* ---- the INI file ----------------------------------------------------------- */

/*
 * "%include FILE", as PgBouncer reads it: at the start of a line (after
 * blanks), the word, at least one blank, then the file name to the end of the
 * line with trailing blanks cut. Returns the name's start in line, or NULL.
 */
static const char *include_directive(const char *line)
{
	while (*line == ' ' || *line == '\t')
		line++;
	if (strncmp(line, "%include", 8) != 0 || (line[8] != ' ' && line[8] != '\t'))
		return NULL;
	line += 8;
	while (*line == ' ' || *line == '\t')
		line++;
	return line;
}

/*
 * Starts reading the file an %include line names, whose text (the first chunk
 * inih asked for) is in chunk. A relative name is taken from the working
 * directory, as PgBouncer does. The file goes on the stack and its lines are
 * handed to inih as if they stood in place of the directive, so a [section]
 * in it carries on after it, as in PgBouncer. -1 with err set on failure.
 */
static int include_push(struct load *ld, const char *chunk)
{
	struct load_file *cur = &ld->files[ld->depth];
	char *text = xstrdup(chunk);
	size_t n = strlen(text);
	if (n > 0 && text[n - 1] != '\n') {
		/* A name longer than inih's buffer: the rest of the line is still unread. */
		char *rest = NULL;
		size_t cap = 0;
		ssize_t got = getline(&rest, &cap, cur->fp);
		if (got > 0) {
			text = xrealloc(text, n + (size_t)got + 1);
			memcpy(text + n, rest, (size_t)got + 1);
		}
		free(rest);
	}
	ld->line_start = true;
	char *name = (char *)include_directive(text);
	n = strlen(name);
	while (n > 0 && isspace((unsigned char)name[n - 1]))
		name[--n] = '\0';

	int rc = -1;
	FILE *fp = NULL;
	struct stat st;
	if (!*name) {
		set_error(ld->err, ld->where, ld->line, "%%include needs a file name");
		goto out;
	}
	if (ld->depth >= INCLUDE_MAX) {
		set_error(ld->err, ld->where, ld->line,
			  "%%include %s: include nesting level too deep (more than %d files)", name,
			  INCLUDE_MAX);
		goto out;
	}
	if (ld->from_text) {
		set_error(ld->err, ld->where, ld->line,
			  "%%include %s: not followed in a configuration given as text", name);
		goto out;
	}
	fp = fopen(name, "r");
	if (!fp || fstat(fileno(fp), &st) != 0) {
		set_error(ld->err, ld->where, ld->line, "%%include %s: cannot open: %s", name,
			  strerror(errno));
		goto out;
	}
	for (int i = 0; i <= ld->depth; i++) {
		if (ld->files[i].dev == st.st_dev && ld->files[i].ino == st.st_ino) {
			set_error(ld->err, ld->where, ld->line,
				  "%%include %s: include loop: %s is already being read", name,
				  ld->files[i].path);
			goto out;
		}
	}
	cur->line = ld->line;
	ld->depth++;
	ld->files[ld->depth] = (struct load_file){
		.fp = fp, .path = xstrdup(name), .dev = st.st_dev, .ino = st.st_ino
	};
	fp = NULL;
	ld->where = ld->files[ld->depth].path;
	ld->line = 0;
	log_debug("%s: reading %%include file %s", ld->files[ld->depth - 1].path, name);
	rc = 0;
out:
	if (fp)
		fclose(fp);
	if (rc < 0)
		ld->failed = true;
	free(text);
	return rc;
}

/* Closes the file on top of the stack; the one that included it goes on. */
static void include_pop(struct load *ld)
{
	struct load_file *f = &ld->files[ld->depth];
	fclose(f->fp);
	free(f->path);
	*f = (struct load_file){ 0 };
	ld->depth--;
	ld->where = ld->files[ld->depth].path;
	ld->line = ld->files[ld->depth].line;
}

/*
 * fgets for inih over the stack of files, counting physical lines. inih may
 * call it several times for one long line (growing its buffer); a new line
 * starts only after a chunk that ended in '\n'. %include lines are followed
 * here and never reach inih. When inih calls the handler, ld->where and
 * ld->line name the file and line it is handling.
 */
static char *read_counting_lines(char *str, int num, void *stream)
{
	struct load *ld = stream;
	char *r;
	for (;;) {
		r = fgets(str, num, ld->files[ld->depth].fp);
		if (!r) {
			if (ferror(ld->files[ld->depth].fp)) {
				set_error(ld->err, ld->where, ld->line, "read error: %s",
					  strerror(errno));
				ld->failed = true;
				return NULL;
			}
			if (ld->depth == 0)
				return NULL;
			include_pop(ld);
			if (!ld->line_start && num > 1) {
				/* The included file's last line had no newline: end it here. */
				ld->line_start = true;
				memcpy(str, "\n", 2);
				return str;
			}
			continue;
		}
		if (ld->line_start && include_directive(r)) {
			ld->line++;
			if (include_push(ld, r) < 0)
				return NULL;
			continue;
		}
		break;
	}
	if (ld->line_start)
		ld->line++;
	/* inih calls the handler only for keys: remember where sections start. */
	if (ld->line_start) {
		const char *p = r;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '[') {
			ld->section_line = ld->line;
			/* inih reports sections only through their keys: check empty ones here. */
			const char *end = strchr(p, ']');
			static const char *const known[] = { "sluice", "pgbouncer", "databases",
							     "users", "peers" };
			bool ok = !end;
			for (size_t i = 0; end && i < ARRAY_SIZE(known) && !ok; i++)
				ok = (size_t)(end - p - 1) == strlen(known[i]) &&
				     strncasecmp(p + 1, known[i], strlen(known[i])) == 0;
			if (!ok) {
				set_error(ld->err, ld->where, ld->line,
					  "unknown section [%.*s] (known: sluice, pgbouncer, databases, "
					  "users, peers)",
					  (int)(end - p - 1), p + 1);
				ld->failed = true;
				return NULL;
			}
		}
	}
	size_t n = strlen(r);
	ld->line_start = n > 0 && r[n - 1] == '\n';
	return r;
}

static int on_sluice_setting(struct load *ld, const char *name, const char *value)
{
	char msg[MSG_LEN];
	const struct setting *s = setting_find(name);
	if (s) {
		if (setting_set(ld->cfg, s, value, msg) < 0) {
			if (strncmp(msg, "auth_type = ", 12) == 0)
				set_error(ld->err, ld->where, ld->line, "%s", msg);
			else
				set_error(ld->err, ld->where, ld->line, "%s: %s", s->info.name,
					  msg);
			ld->failed = true;
			return 0;
		}
		return 1;
	}
	if (is_unimplemented(name)) {
		load_warn(ld, "setting %s is not implemented by sluice yet and is ignored", name);
		return 1;
	}
	set_error(ld->err, ld->where, ld->line, "unknown setting \"%s\" in [%s]", name,
		  ld->section_name);
	ld->failed = true;
	return 0;
}

/*
 * A [databases] or [users] name as PgBouncer takes it: bare, or in SQL
 * identifier quotes with "" for a quote. Writes into out (at least as long as
 * name); -1 if a quoted name is not closed properly.
 */
static int entry_name(const char *name, char *out)
{
	size_t n = strlen(name);
	if (name[0] != '"') {
		memcpy(out, name, n + 1);
		return 0;
	}
	if (n < 2 || name[n - 1] != '"')
		return -1;
	size_t w = 0;
	for (size_t i = 1; i < n - 1; i++) {
		if (name[i] == '"') {
			if (name[i + 1] != '"' || i + 1 >= n - 1)
				return -1;
			i++;
		}
		out[w++] = name[i];
	}
	out[w] = '\0';
	return w ? 0 : -1;
}

static int on_entry(struct load *ld, const char *raw, const char *value)
{
	char *name = xmalloc(strlen(raw) + 1);
	int ok = 0;
	if (!*raw) {
		/* "= value": inih hands an empty key on, which no client could ask for. */
		set_error(ld->err, ld->where, ld->line, "missing %s name before \"=\"",
			  ld->section == SEC_DATABASES ? "database" : "user");
		ld->failed = true;
	} else if (entry_name(raw, name) < 0) {
		set_error(ld->err, ld->where, ld->line, "badly quoted name %s", raw);
		ld->failed = true;
	} else if (ld->section == SEC_DATABASES && strcmp(name, "pgbouncer") == 0) {
		set_error(ld->err, ld->where, ld->line,
			  "database name \"pgbouncer\" is reserved for the admin console");
		ld->failed = true;
	} else if (ld->section == SEC_DATABASES) {
		ok = add_database(ld, name, value, false) == 0;
	} else {
		ok = add_user(ld, name, value) == 0;
	}
	free(name);
	return ok;
}

/* inih's callback; its strings live only during the call. Returns 0 to stop. */
static int on_ini_entry(void *user, const char *section, const char *name, const char *value)
{
	struct load *ld = user;

	if (ld->failed)
		return 0;
	if (strcmp(section, ld->section_name) != 0) {
		size_t len = strnlen(section, sizeof(ld->section_name) - 1);
		memcpy(ld->section_name, section, len);
		ld->section_name[len] = '\0';
		if (strcasecmp(section, "sluice") == 0 || strcasecmp(section, "pgbouncer") == 0) {
			ld->section = SEC_SLUICE;
		} else if (strcasecmp(section, "databases") == 0) {
			ld->section = SEC_DATABASES;
		} else if (strcasecmp(section, "users") == 0) {
			ld->section = SEC_USERS;
		} else if (strcasecmp(section, "peers") == 0) {
			ld->section = SEC_PEERS;
		} else if (!*section) {
			set_error(ld->err, ld->where, ld->line,
				  "setting \"%s\" is outside any section (start with [sluice])",
				  name);
			ld->failed = true;
			return 0;
		} else {
			set_error(ld->err, ld->where, ld->section_line,
				  "unknown section [%s] (known: sluice, pgbouncer, databases, users, "
				  "peers)",
				  section);
			ld->failed = true;
			return 0;
		}
	}
	switch (ld->section) {
	case SEC_SLUICE:
		return on_sluice_setting(ld, name, value);
	case SEC_DATABASES:
	case SEC_USERS:
		return on_entry(ld, name, value);
	case SEC_PEERS:
		return add_peer(ld, name, value) == 0;
	case SEC_NONE:
		break;
	}
	return 0;
}

/*
 * Reads the INI stream fp, named path in messages, through inih; closes fp.
 * dev and ino identify the file for the include-loop check (0 for text).
 */
static int load_stream(struct load *ld, FILE *fp, const char *path, dev_t dev, ino_t ino)
{
	ld->depth = 0;
	ld->files[0] =
		(struct load_file){ .fp = fp, .path = xstrdup(path), .dev = dev, .ino = ino };
	ld->where = ld->files[0].path;
	ld->line = 0;
	ld->line_start = true;
	ld->section = SEC_NONE;
	ld->section_name[0] = '\0';
	/* Unset sections are "" in inih: make the first key trigger the section check. */
	snprintf(ld->section_name, sizeof(ld->section_name), "%c", '\x01');

	ini_use_stack = false;
	ini_allow_realloc = true;
	ini_max_line = 1 << 20;
	ini_allow_multiline = false;
	ini_allow_inline_comments = false;
	ini_stop_on_first_error = true;

	int rc = ini_parse_stream(read_counting_lines, ld, on_ini_entry, ld);
	if (rc != 0 && !ld->failed) {
		/*
		 * inih counts lines across the files as one stream; it stops at
		 * the first error, so the reader's position names the line.
		 */
		if (rc == -2)
			set_error(ld->err, path, 0, "out of memory");
		else
			set_error(ld->err, ld->where, ld->line,
				  "syntax error: expected \"key = value\" or \"[section]\"");
	}
	while (ld->depth > 0)
		include_pop(ld);
	fclose(ld->files[0].fp);
	free(ld->files[0].path);
	ld->files[0] = (struct load_file){ 0 };
	ld->where = path;
	return rc == 0 && !ld->failed ? 0 : -1;
}

static int load_file(struct load *ld, const char *path)
{
	FILE *fp = fopen(path, "r");
	struct stat st;
	if (!fp || fstat(fileno(fp), &st) != 0) {
		set_error(ld->err, path, 0, "cannot open: %s", strerror(errno));
		if (fp)
			fclose(fp);
		return -1;
	}
	return load_stream(ld, fp, path, st.st_dev, st.st_ino);
}

/* The text as a stream that reads like the file (NULs included), with no file behind it. */
static int load_text(struct load *ld, const char *text, size_t len, const char *name)
{
	/* fmemopen() in "r" mode only reads the buffer, whatever its prototype says. */
	FILE *fp = fmemopen((void *)text, len, "r");
	if (!fp) {
		set_error(ld->err, name, 0, "cannot read: %s", strerror(errno));
		return -1;
	}
	ld->from_text = true;
	return load_stream(ld, fp, name, 0, 0);
}

/* ---- the environment --------------------------------------------------------- */

static int load_env_settings(struct load *ld)
{
	char var[96], msg[MSG_LEN];

	for (size_t i = 0; i < ARRAY_SIZE(settings); i++) {
		const struct setting *s = &settings[i];
		size_t n = (size_t)snprintf(var, sizeof(var), "SLUICE_%s", s->info.name);
		for (size_t j = 7; j < n && j < sizeof(var); j++)
			var[j] = (char)toupper((unsigned char)var[j]);
		const char *v = getenv(var);
		if (!v)
			continue;
		if (setting_set(ld->cfg, s, v, msg) < 0) {
			set_error(ld->err, var, 0, "%s", msg);
			return -1;
		}
	}
	return 0;
}

/*
 * SLUICE_DATABASES: "[databases]"-style entries separated by newlines or
 * semicolons outside single quotes. Entry numbers stand in for line numbers
 * in messages. Entries replace file entries of the same name.
 */
static int load_env_databases(struct load *ld)
{
	const char *v = getenv("SLUICE_DATABASES");
	if (!v)
		return 0;

	ld->where = "SLUICE_DATABASES";
	ld->line = 0;
	char *copy = xstrdup(v);
	char *p = copy;
	int rc = 0;
	/* Names defined so far here (borrowed from copy), to refuse duplicates. */
	const char **seen = NULL;
	size_t nseen = 0;
	while (*p) {
		/* Find the end of this entry. */
		char *e = p;
		bool quoted = false;
		while (*e && (quoted || (*e != ';' && *e != '\n'))) {
			if (*e == '\\' && e[1])
				e++;
			else if (*e == '\'')
				quoted = !quoted;
			e++;
		}
		char *next = *e ? e + 1 : e;
		*e = '\0';
		ld->line++;

		while (isspace((unsigned char)*p))
			p++;
		if (*p) {
			char *eq = strchr(p, '=');
			if (!eq) {
				set_error(ld->err, ld->where, ld->line,
					  "expected \"name = connection string\"");
				rc = -1;
				break;
			}
			char *name_end = eq;
			while (name_end > p && isspace((unsigned char)name_end[-1]))
				name_end--;
			*name_end = '\0';
			if (!*p) {
				set_error(ld->err, ld->where, ld->line, "missing database name");
				rc = -1;
				break;
			}
			for (size_t i = 0; i < nseen; i++) {
				if (strcmp(seen[i], p) == 0) {
					set_error(ld->err, ld->where, ld->line,
						  "database \"%s\" is already defined in entry %zu",
						  p, i + 1);
					rc = -1;
					goto done;
				}
			}
			seen = xrealloc(seen, (nseen + 1) * sizeof(*seen));
			seen[nseen++] = p;
			if (add_database(ld, p, eq + 1, true) < 0) {
				rc = -1;
				break;
			}
		}
		p = next;
	}
done:
	free(seen);
	free(copy);
	return rc;
}

/* ---- validation ------------------------------------------------------------------ */

/* A database's min_pool_size must fit in its pool, with globals filling unset values. */
static int check_database_sizes(struct load *ld, const char *where,
				const struct config_database *db)
{
	const struct config *cfg = ld->cfg;
	int size = db->pool_size >= 0 ? db->pool_size : cfg->default_pool_size;
	int min = db->min_pool_size >= 0 ? db->min_pool_size : cfg->min_pool_size;
	if (min > size) {
		set_error(ld->err, where, db->line,
			  "database \"%s\": min_pool_size (%d) is larger than its pool size (%d)",
			  db->name, min, size);
		return -1;
	}
	return 0;
}

static int validate(struct load *ld)
{
	struct config *cfg = ld->cfg;
	const char *where = cfg->path ? cfg->path : "environment";

	if (cfg->min_pool_size > cfg->default_pool_size) {
		set_error(ld->err, where, 0,
			  "min_pool_size (%d) is larger than default_pool_size (%d)",
			  cfg->min_pool_size, cfg->default_pool_size);
		return -1;
	}
	if (!*cfg->listen_addr && !*cfg->unix_socket_dir) {
		set_error(ld->err, where, 0,
			  "listen_addr and unix_socket_dir are both empty: sluice would accept no "
			  "connections");
		return -1;
	}
	struct config_database *db, *tmp;
	HASH_ITER(hh, cfg->databases, db, tmp) {
		if (check_database_sizes(ld, where, db) < 0)
			return -1;
	}
	if (cfg->fallback && check_database_sizes(ld, where, cfg->fallback) < 0)
		return -1;
	/* The console's database answers no queries: PgBouncer refuses it in its words. */
	if (strcmp(cfg->auth_dbname, "pgbouncer") == 0 || strcmp(cfg->auth_dbname, "sluice") == 0) {
		set_error(ld->err, where, 0,
			  "cannot use the reserved \"%s\" database as an auth_dbname",
			  cfg->auth_dbname);
		return -1;
	}
	bool direct = strcmp(cfg->server_tls_sslnegotiation, "direct") == 0;
	if (!direct && strcmp(cfg->server_tls_sslnegotiation, "postgres") != 0) {
		set_error(ld->err, where, 0,
			  "server_tls_sslnegotiation must be postgres or direct");
		return -1;
	}
	/* As libpq: without TLS required there is nothing to fall back to after a ClientHello. */
	if (direct && cfg->server_tls_sslmode < SSLMODE_REQUIRE) {
		set_error(ld->err, where, 0,
			  "server_tls_sslnegotiation = direct needs server_tls_sslmode require, "
			  "verify-ca or verify-full");
		return -1;
	}
	if (cfg->auth_type == AUTH_TYPE_HBA && !*cfg->auth_hba_file) {
		set_error(ld->err, where, 0, "auth_type = hba needs auth_hba_file");
		return -1;
	}
	if (cfg->auth_type != AUTH_TYPE_TRUST && cfg->auth_type != AUTH_TYPE_ANY &&
	    cfg->auth_type != AUTH_TYPE_CERT && cfg->auth_type != AUTH_TYPE_HBA &&
	    !*cfg->auth_file) {
		cfg->warnings++;
		log_warning("%s: auth_type = %s but auth_file is not set: no client can log in",
			    where, config_auth_type_name(cfg->auth_type));
	}
	return 0;
}

/* ---- load and free ------------------------------------------------------------- */

/*
 * A snapshot from the defaults, then the file (path) or the text (text and
 * len, named path), then the environment; validated.
 */
static struct config *load(const char *path, const char *text, size_t len, struct config_error *err)
{
	struct config *cfg = xcalloc(1, sizeof(*cfg));
	atomic_init(&cfg->refs, 1);
	struct load ld = { .cfg = cfg, .err = err };
	char msg[MSG_LEN];

	err->text[0] = '\0';
	for (size_t i = 0; i < ARRAY_SIZE(settings); i++) {
		if (setting_set(cfg, &settings[i], settings[i].def, msg) < 0) {
			set_error(err, NULL, 0, "internal error: default of %s: %s",
				  settings[i].info.name, msg);
			goto fail;
		}
	}
	if (path) {
		cfg->path = xstrdup(path);
		if ((text ? load_text(&ld, text, len, path) : load_file(&ld, path)) < 0)
			goto fail;
	}
	ld.line = 0;
	if (load_env_settings(&ld) < 0 || load_env_databases(&ld) < 0)
		goto fail;
	if (validate(&ld) < 0)
		goto fail;
	return cfg;

fail:
	config_unref(cfg);
	return NULL;
}

struct config *config_load(const char *path, struct config_error *err)
{
	return load(path, NULL, 0, err);
}

struct config *config_load_text(const char *text, size_t len, const char *name,
				struct config_error *err)
{
	return load(name, text, len, err);
}

struct config *config_ref(struct config *cfg)
{
	atomic_fetch_add_explicit(&cfg->refs, 1, memory_order_relaxed);
	return cfg;
}

void config_unref(struct config *cfg)
{
	/* acq_rel: the freeing thread must see every write made before other releases. */
	if (!cfg || atomic_fetch_sub_explicit(&cfg->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(settings); i++) {
		if (type_is_string(settings[i].type))
			free(*(char **)((char *)cfg + settings[i].offset));
	}
	struct config_database *db, *dtmp;
	HASH_ITER(hh, cfg->databases, db, dtmp) {
		HASH_DEL(cfg->databases, db);
		database_free(db);
	}
	database_free(cfg->fallback);
	struct config_user *u, *utmp;
	HASH_ITER(hh, cfg->users, u, utmp) {
		HASH_DEL(cfg->users, u);
		user_free(u);
	}
	struct config_peer *peer, *ptmp;
	HASH_ITER(hh, cfg->peers, peer, ptmp) {
		HASH_DEL(cfg->peers, peer);
		peer_free(peer);
	}
	free(cfg->path);
	free(cfg);
}

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

static struct config_database *database_copy(const struct config_database *src)
{
	if (!src)
		return NULL;
	struct config_database *db = xmalloc(sizeof(*db));
	*db = *src;
	memset(&db->hh, 0, sizeof(db->hh));
	db->name = dup_or_null(src->name);
	db->host = dup_or_null(src->host);
	db->dbname = dup_or_null(src->dbname);
	db->user = dup_or_null(src->user);
	db->password = dup_or_null(src->password);
	db->connect_query = dup_or_null(src->connect_query);
	db->client_encoding = dup_or_null(src->client_encoding);
	db->datestyle = dup_or_null(src->datestyle);
	db->timezone = dup_or_null(src->timezone);
	db->application_name = dup_or_null(src->application_name);
	db->auth_user = dup_or_null(src->auth_user);
	db->auth_query = dup_or_null(src->auth_query);
	db->auth_dbname = dup_or_null(src->auth_dbname);
	db->hosts = xcalloc((size_t)src->n_hosts, sizeof(*db->hosts));
	for (int i = 0; i < src->n_hosts; i++) {
		db->hosts[i].host = dup_or_null(src->hosts[i].host);
		db->hosts[i].port = src->hosts[i].port;
	}
	return db;
}

struct config *config_copy(const struct config *src)
{
	struct config *cfg = xmalloc(sizeof(*cfg));
	*cfg = *src;
	atomic_init(&cfg->refs, 1);
	cfg->path = dup_or_null(src->path);
	for (size_t i = 0; i < ARRAY_SIZE(settings); i++) {
		if (type_is_string(settings[i].type)) {
			char **field = (char **)((char *)cfg + settings[i].offset);
			*field = dup_or_null(*field);
		}
	}
	cfg->databases = NULL;
	for (const struct config_database *d = src->databases; d; d = d->hh.next) {
		struct config_database *db = database_copy(d);
		HASH_ADD_KEYPTR(hh, cfg->databases, db->name, strlen(db->name), db);
	}
	cfg->fallback = database_copy(src->fallback);
	cfg->users = NULL;
	for (const struct config_user *u = src->users; u; u = u->hh.next) {
		struct config_user *c = xmalloc(sizeof(*c));
		*c = *u;
		memset(&c->hh, 0, sizeof(c->hh));
		c->name = xstrdup(u->name);
		HASH_ADD_KEYPTR(hh, cfg->users, c->name, strlen(c->name), c);
	}
	cfg->peers = NULL;
	for (const struct config_peer *pe = src->peers; pe; pe = pe->hh.next) {
		struct config_peer *c = xmalloc(sizeof(*c));
		*c = *pe;
		memset(&c->hh, 0, sizeof(c->hh));
		c->host = xstrdup(pe->host);
		HASH_ADD_INT(cfg->peers, peer_id, c);
	}
	return cfg;
}

/* ---- lookups ------------------------------------------------------------------ */

const struct config_database *config_find_database(const struct config *cfg, const char *name)
{
	struct config_database *db = NULL;
	HASH_FIND_STR(cfg->databases, name, db);
	return db ? db : cfg->fallback;
}

const struct config_user *config_find_user(const struct config *cfg, const char *name)
{
	struct config_user *u = NULL;
	HASH_FIND_STR(cfg->users, name, u);
	return u;
}

const struct config_peer *config_find_peer(const struct config *cfg, int peer_id)
{
	struct config_peer *peer = NULL;
	HASH_FIND_INT(cfg->peers, &peer_id, peer);
	return peer;
}

int config_peer_pool_size(const struct config *cfg, const struct config_peer *peer)
{
	return peer->pool_size > 0 ? peer->pool_size : cfg->default_pool_size;
}

int config_db_client_limit(const struct config *cfg, const struct config_database *db)
{
	if (db && db->max_db_client_connections > 0)
		return db->max_db_client_connections;
	return cfg->max_db_client_connections;
}

int config_user_client_limit(const struct config *cfg, const char *user)
{
	const struct config_user *u = config_find_user(cfg, user);
	if (u && u->max_user_client_connections > 0)
		return u->max_user_client_connections;
	return cfg->max_user_client_connections;
}

/* A [users] timeout overrides the global one only when above 0, as in PgBouncer. */
static int64_t user_over_global(int64_t user_value, int64_t global)
{
	return user_value > 0 ? user_value : global;
}

int64_t config_query_timeout(const struct config *cfg, const struct config_user *u)
{
	return user_over_global(u ? u->query_timeout : -1, cfg->query_timeout);
}

int64_t config_idle_transaction_timeout(const struct config *cfg, const struct config_user *u)
{
	return user_over_global(u ? u->idle_transaction_timeout : -1,
				cfg->idle_transaction_timeout);
}

int64_t config_transaction_timeout(const struct config *cfg, const struct config_user *u)
{
	return user_over_global(u ? u->transaction_timeout : -1, cfg->transaction_timeout);
}

int64_t config_client_idle_timeout(const struct config *cfg, const struct config_user *u)
{
	return user_over_global(u ? u->client_idle_timeout : -1, cfg->client_idle_timeout);
}

int64_t config_query_wait_timeout(const struct config *cfg, const struct config_user *u,
				  const struct config_database *db)
{
	if (u && u->query_wait_timeout >= 0)
		return u->query_wait_timeout;
	if (db && db->query_wait_timeout >= 0)
		return db->query_wait_timeout;
	return cfg->query_wait_timeout;
}

bool config_list_contains(const char *list, const char *name)
{
	if (!list || !name || !*name)
		return false;
	size_t nlen = strlen(name);
	const char *p = list;
	while (*p) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		const char *start = p;
		while (*p && *p != ',')
			p++;
		const char *end = p;
		while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		if ((size_t)(end - start) == nlen && strncasecmp(start, name, nlen) == 0)
			return true;
	}
	return false;
}
