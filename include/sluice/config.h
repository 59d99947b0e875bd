/*
 * config.h - the configuration snapshot and how it is read.
 *
 * A snapshot is immutable once loaded: the running workers read it, a reload
 * builds a new one and swaps the pointer, and the old one is freed when
 * nothing refers to it any more. Sources, lowest precedence first: built-in
 * defaults (PgBouncer's), the INI file ([sluice] or its alias [pgbouncer],
 * [databases], [users]), then SLUICE_<NAME> environment variables for every
 * [sluice] setting.
 *
 * Field names are exactly the INI keys, so grep leads from the docs to the
 * code. Durations are stored in milliseconds (the INI gives seconds, as
 * PgBouncer does, fractions allowed); 0 means "disabled" where PgBouncer says so.
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uthash.h>

#include "sluice/common.h"

enum pool_mode {
	POOL_MODE_SESSION = 0,
	POOL_MODE_TRANSACTION = 1,
	POOL_MODE_STATEMENT = 2,
};

enum auth_type {
	AUTH_TYPE_TRUST = 0,
	AUTH_TYPE_ANY, /* trust, and the client's user name is ignored */
	AUTH_TYPE_PLAIN, /* cleartext password ("plain"; "password" is an alias) */
	AUTH_TYPE_MD5, /* md5, or SCRAM when the stored secret is a SCRAM secret */
	AUTH_TYPE_SCRAM_SHA_256,
	AUTH_TYPE_CERT, /* a verified TLS client certificate whose common name is the user */
	AUTH_TYPE_HBA, /* the method of the first auth_hba_file rule that matches */
};

/*
 * How a new server connection of a database with several hosts picks one
 * (PgBouncer's load_balance_hosts): the next in the list each time, or the
 * same one until a connection to it fails.
 */
enum load_balance_hosts {
	LOAD_BALANCE_HOSTS_ROUND_ROBIN = 0,
	LOAD_BALANCE_HOSTS_DISABLE = 1,
};

/* PgBouncer's client_tls_sslmode and server_tls_sslmode, in order of strictness. */
enum sslmode {
	SSLMODE_DISABLE = 0,
	SSLMODE_ALLOW,
	SSLMODE_PREFER,
	SSLMODE_REQUIRE,
	SSLMODE_VERIFY_CA,
	SSLMODE_VERIFY_FULL,
};

/*
 * What transaction and statement pooling do with a statement that makes
 * session state that cannot follow its client to another server (an
 * advisory lock, a temporary object, a WITH HOLD cursor): let it run and
 * keep the client on its server, or refuse it (doc/transaction-mode.md).
 */
enum session_pinning {
	SESSION_PINNING_PIN = 0,
	SESSION_PINNING_REFUSE = 1,
};

/*
 * Whether the workers batch their socket reads and writes through io_uring
 * (stream_ctx_use_uring): never, when the kernel allows it, or always (the
 * start fails without it).
 */
enum io_uring_mode {
	IO_URING_OFF = 0,
	IO_URING_AUTO = 1,
	IO_URING_ON = 2,
};

/* "session"/"transaction"/"statement"; -1 if none matches. */
int config_parse_pool_mode(const char *s);
const char *config_pool_mode_name(enum pool_mode m);
const char *config_auth_type_name(enum auth_type t);
const char *config_load_balance_hosts_name(enum load_balance_hosts lb);
const char *config_sslmode_name(enum sslmode m);

/* One address of a [databases] entry's host list. */
/* Where libpq looks for PostgreSQL's unix socket when no host is given (Debian's build). */
#define CONFIG_DEFAULT_SOCKET_DIR "/var/run/postgresql"
/* The most workers (event loops) a process runs. */
#define CONFIG_MAX_WORKERS 64

struct config_host {
	char *host; /* name, address or unix socket directory (starts with '/') */
	int port;
};

/* One [databases] entry. Unset numeric fields are -1 (use the global). */
struct config_database {
	char *name; /* the name clients ask for; "*" is the fallback entry */
	char *host; /* as written, maybe a list; NULL: libpq's default unix socket directory */
	int port; /* the first port; default 5432 */
	/*
	 * host and port split into the addresses to try, at least one: "a,b"
	 * with one port gives both that port, a list of ports pairs with the
	 * hosts. A NULL host is libpq's default unix socket directory.
	 */
	struct config_host *hosts;
	int n_hosts;
	int load_balance_hosts; /* enum load_balance_hosts; matters only with n_hosts > 1 */
	char *dbname; /* database on the server; default: name (fallback: NULL = the client's) */
	char *user; /* force this server user; NULL: the client's */
	char *password; /* password for user; NULL: from auth_file */
	int pool_size;
	int min_pool_size;
	int reserve_pool_size;
	int max_db_connections;
	int max_db_client_connections; /* -1 unset; 0 too means the global value (as PgBouncer) */
	int64_t query_wait_timeout; /* ms, -1 unset; 0 is a value (never) */
	int pool_mode; /* enum pool_mode or -1 */
	int64_t server_lifetime; /* ms, -1 unset */
	char *connect_query;
	char *client_encoding;
	char *datestyle;
	char *timezone;
	char *application_name;
	/* auth_query look-ups for this database; NULL: the global setting */
	char *auth_user;
	char *auth_query;
	char *auth_dbname;
	int line; /* where it was defined, for messages */
	UT_hash_handle hh;
};

/* One [users] entry. */
struct config_user {
	char *name;
	int pool_mode; /* -1 unset */
	int pool_size; /* -1 unset */
	int max_user_connections; /* -1 unset */
	int max_user_client_connections; /* -1 unset; 0 too means the global value (as PgBouncer) */
	int reserve_pool_size; /* -1 unset */
	/*
	 * Timeouts in ms, -1 unset. As in PgBouncer, 0 counts as unset for all but
	 * query_wait_timeout, where 0 is a value (never): see config_*_timeout.
	 */
	int64_t query_timeout;
	int64_t idle_transaction_timeout;
	int64_t transaction_timeout;
	int64_t client_idle_timeout;
	int64_t query_wait_timeout;
	int line;
	UT_hash_handle hh;
};

/*
 * One [peers] entry: another sluice (or PgBouncer) process behind the same
 * port, to which CancelRequests for its clients are forwarded.
 */
struct config_peer {
	int peer_id; /* the key; 1..65535 */
	char *host; /* address, name or unix socket directory (starts with '/') */
	int port; /* default 6432 */
	int pool_size; /* cancels in flight to it at once; -1: default_pool_size */
	int line;
	UT_hash_handle hh;
};

struct config {
	/*
	 * Snapshots are immutable and shared: each holder (the process, each
	 * worker) owns one reference, so a reload can replace the process's
	 * snapshot while a worker still serves with the old one.
	 */
	atomic_int refs;
	char *path; /* the file read, NULL when configured from the environment only */

	/* [sluice] */
	char *listen_addr; /* comma-separated; "*" all; "" no TCP */
	int listen_port;
	char *unix_socket_dir; /* "" disables the unix socket */
	int unix_socket_mode;
	char *unix_socket_group; /* "" leaves the socket's group as created */
	int listen_backlog;
	bool so_reuseport;
	int workers; /* 0: auto (process.c resolves it) */
	char *login_notify_message; /* "" sends none */
	int64_t query_wait_notify; /* ms; 0 never */
	enum auth_type auth_type;
	char *auth_file;
	char *auth_hba_file; /* "" none */
	char *auth_ident_file; /* "" none */
	char *auth_user; /* "" none: users not in auth_file are unknown */
	char *auth_query; /* $1 is the user name */
	char *auth_dbname; /* "" the client's database */
	int64_t auth_query_cache_ttl; /* ms; 0 never kept */
	enum pool_mode pool_mode;
	int default_pool_size;
	int min_pool_size;
	int reserve_pool_size;
	int64_t reserve_pool_timeout; /* ms */
	int max_client_conn;
	int max_db_connections; /* 0 unlimited */
	int max_user_connections; /* 0 unlimited */
	int max_db_client_connections; /* 0 unlimited */
	int max_user_client_connections; /* 0 unlimited */
	char *server_reset_query;
	bool server_reset_query_always;
	enum session_pinning session_pinning;
	enum io_uring_mode io_uring;
	char *server_check_query;
	int64_t server_check_delay; /* ms */
	int64_t server_lifetime; /* ms */
	int64_t server_idle_timeout; /* ms */
	int64_t server_connect_timeout; /* ms */
	int64_t server_login_retry; /* ms */
	bool tcp_keepalive;
	int tcp_keepidle; /* s; 0 OS default */
	int tcp_keepintvl; /* s; 0 OS default */
	int tcp_keepcnt; /* 0 OS default */
	int tcp_user_timeout; /* ms; 0 OS default */
	int tcp_defer_accept; /* s; 0 off */
	int64_t query_timeout; /* ms */
	int64_t query_wait_timeout; /* ms */
	int64_t client_idle_timeout; /* ms */
	int64_t client_login_timeout; /* ms */
	int64_t suspend_timeout; /* ms; 0 never */
	int64_t idle_transaction_timeout; /* ms */
	int64_t transaction_timeout; /* ms */
	int64_t pool_idle_timeout; /* ms; 0 never */
	bool server_fast_close;
	char *ignore_startup_parameters; /* comma-separated */
	char *track_extra_parameters; /* comma-separated */
	uint32_t max_packet_size;
	uint32_t notify_queue_size; /* bytes of unread notifications per client (notify.h) */
	int max_prepared_statements; /* per server; 0 disables renaming */
	char *logfile;
	char *pidfile;
	char *user; /* "" stays the user sluice was started as */
	bool syslog;
	char *syslog_ident;
	char *syslog_facility; /* a name log_syslog_facility knows */
	bool log_connections;
	bool log_disconnections;
	bool log_pooler_errors;
	int verbose;
	int log_format; /* enum log_format */
	bool log_stats;
	int64_t stats_period; /* ms */
	char *admin_users; /* comma-separated */
	char *stats_users; /* comma-separated */
	int metrics_port; /* 0: no HTTP listener */
	char *metrics_addr;
	int peer_id; /* 0: peering off; else encoded in the cancel keys handed out */
	/* TLS with clients; files and lists are read by tls_ctx_new ("" unset) */
	enum sslmode client_tls_sslmode;
	char *client_tls_key_file;
	char *client_tls_cert_file;
	char *client_tls_ca_file;
	char *client_tls_protocols;
	char *client_tls_ciphers;
	char *client_tls13_ciphers;
	char *client_tls_ecdhcurve;
	char *client_tls_dheparams;
	/* TLS with servers */
	enum sslmode server_tls_sslmode;
	char *server_tls_key_file;
	char *server_tls_cert_file;
	char *server_tls_ca_file;
	char *server_tls_protocols;
	char *server_tls_ciphers;
	char *server_tls13_ciphers;
	char *server_tls_sslnegotiation; /* "postgres" or "direct" */

	/* [databases] and [users], hashed by name; fallback is the "*" entry or NULL. */
	struct config_database *databases;
	struct config_database *fallback;
	struct config_user *users;
	struct config_peer *peers; /* [peers], hashed by peer_id */

	/* How many warnings config_load logged (unimplemented keys...), for --check-config. */
	unsigned warnings;
};

/* Where a load failed: "file:line: message", or just the message. */
struct config_error {
	char text[512];
};

/*
 * Reads path (NULL: defaults and environment only) and applies SLUICE_*
 * overrides. Returns a new snapshot (one reference) or NULL with err filled. Unknown keys are
 * errors; keys PgBouncer knows but sluice does not implement yet are logged
 * as warnings naming them. Not thread-safe: it sets inih's process-wide
 * parser options, so call it from the main thread only.
 */
struct config *config_load(const char *path, struct config_error *err) WUR;
/*
 * As config_load, on a file's text instead of a file: len bytes of text
 * (borrowed for the call; NULs are read as in a file), named name in
 * messages and in cfg->path. It opens no file: an %include line is an
 * error. The SLUICE_* environment still applies. For tests and the fuzzer.
 */
struct config *config_load_text(const char *text, size_t len, const char *name,
				struct config_error *err) WUR;
/* Takes another reference to cfg; returns cfg. Any thread. */
struct config *config_ref(struct config *cfg);
/* Drops a reference (NULL is ignored); the last one frees the snapshot. Any thread. */
void config_unref(struct config *cfg);
/*
 * A deep copy of a snapshot, with one reference (the console's SET changes a
 * copy, then swaps it in).
 */
struct config *config_copy(const struct config *cfg);

/* The entry for a client's database name: exact match, else the fallback, else NULL. */
const struct config_database *config_find_database(const struct config *cfg, const char *name);
const struct config_user *config_find_user(const struct config *cfg, const char *name);
const struct config_peer *config_find_peer(const struct config *cfg, int peer_id);
/* The pool_size of a peer: its own, else default_pool_size. */
int config_peer_pool_size(const struct config *cfg, const struct config_peer *peer);

/*
 * The client connection limits that apply (0 unlimited): the [databases]
 * entry's max_db_client_connections, or the [users] entry's
 * max_user_client_connections, when it is above 0, else the global value.
 * db may be NULL (no entry: the global value).
 */
int config_db_client_limit(const struct config *cfg, const struct config_database *db);
int config_user_client_limit(const struct config *cfg, const char *user);

/*
 * The timeouts that apply (ms, 0 never), decided as PgBouncer decides them.
 * u is the [users] entry (NULL: none), db the [databases] entry (NULL: none).
 * query_timeout, idle_transaction_timeout, transaction_timeout and
 * client_idle_timeout: the user's value when above 0, else the global one
 * (there are no per-database values). query_wait_timeout: the user's value
 * if set (0 included), else the database's if set, else the global one.
 */
int64_t config_query_timeout(const struct config *cfg, const struct config_user *u);
int64_t config_idle_transaction_timeout(const struct config *cfg, const struct config_user *u);
int64_t config_transaction_timeout(const struct config *cfg, const struct config_user *u);
int64_t config_client_idle_timeout(const struct config *cfg, const struct config_user *u);
int64_t config_query_wait_timeout(const struct config *cfg, const struct config_user *u,
				  const struct config_database *db);

/* true if name is in the comma-separated list (case-insensitive, spaces trimmed). */
bool config_list_contains(const char *list, const char *name);

/*
 * The table of [sluice] settings, for documentation checks and, later, the
 * admin console's SHOW CONFIG / SET. Each entry names the key, renders the
 * current value into buf, and says whether a reload may change it.
 */
struct config_setting_info {
	const char *name;
	bool reloadable;
	const char *doc; /* one line */
};
size_t config_setting_count(void);
const struct config_setting_info *config_setting_at(size_t i);
/*
 * Sets one reloadable [sluice] setting in a snapshot that is not published
 * yet (the admin console's SET). Unknown keys, keys that need a restart and
 * bad values are errors (-1) with a message for the client. A PgBouncer
 * setting sluice does not implement changes nothing and returns
 * CONFIG_APPLY_IGNORED with a warning in err, as the file does.
 */
#define CONFIG_APPLY_IGNORED 1
int config_apply(struct config *cfg, const char *key, const char *value,
		 struct config_error *err) WUR;
/*
 * For a reload: gives next (a snapshot just loaded) the running values of
 * every setting that needs a restart, since the listeners, pidfile and user
 * stay as they are until then, so that SHOW CONFIG tells what is in effect.
 * Each one the file changed is logged as a warning (PgBouncer ignores such
 * a change silently).
 */
void config_keep_restart_settings(struct config *next, const struct config *running);
/* Index of a setting in the table, or -1. */
int config_setting_index(const char *key);
/* The default of setting i, as text. */
const char *config_setting_default(size_t i);
/* Renders the value of setting i in cfg as text (as SHOW CONFIG would). */
void config_setting_value(const struct config *cfg, size_t i, char *buf, size_t len);

/*
 * The PgBouncer [pgbouncer] keys sluice accepts with a warning but does not
 * implement yet, for the documentation check; NULL past the end.
 */
const char *config_unimplemented_at(size_t i);
