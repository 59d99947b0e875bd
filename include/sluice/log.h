/*
 * log.h - levelled logging to stderr, a file, or syslog, as text or JSON.
 *
 * Every connection log line starts with the connection's tag
 * ("C-17 db/user@addr:port" or "S-4 db/user@host:port"); in JSON format the
 * same facts are separate fields. The level is process-wide and set once from
 * the config (and again on reload); everything else is per call.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "sluice/common.h"

enum log_level {
	LOG_LEVEL_ERROR = 0,
	LOG_LEVEL_WARNING = 1,
	LOG_LEVEL_INFO = 2,
	LOG_LEVEL_DEBUG = 3, /* verbose = 1 */
	LOG_LEVEL_NOISE = 4, /* verbose >= 2 */
};

enum log_format {
	LOG_FORMAT_TEXT = 0,
	LOG_FORMAT_JSON = 1,
};

/* Who a line is about; NULL members are left out. */
struct log_conn {
	char kind; /* 'C' client, 'S' server */
	uint64_t id;
	const char *db;
	const char *user;
	const char *addr; /* "1.2.3.4:5678" or "unix" */
};

extern enum log_level log_level_current;

/*
 * (Re)configures logging. logfile NULL or "" means stderr only; when a file
 * is given, lines go to it and, while the process runs in the foreground, also
 * to stderr. Returns 0 or -errno when the file cannot be opened (the previous
 * destination stays).
 */
int log_setup(enum log_level level, enum log_format format, const char *logfile,
	      bool also_stderr) WUR;
/*
 * Sends lines to syslog(3) as well (on), or stops (off): ident and facility
 * (a name of log_syslog_facility's, NULL or unknown: daemon) as syslog_ident
 * and syslog_facility say. Errors, warnings and informational lines go,
 * debug detail does not, as in PgBouncer. Text lines go without the time,
 * pid and level (syslog records those), JSON lines whole. Reconnects only
 * when something changed.
 */
void log_setup_syslog(bool on, const char *ident, const char *facility);
/* The syslog(3) facility code of a PgBouncer facility name (auth, authpriv,
 * daemon, user, local0..local7; any case), or -1. */
int log_syslog_facility(const char *name);
/* Reopens the log file (after rotation, on SIGHUP). */
void log_reopen(void);
void log_shutdown(void);

static inline bool log_enabled(enum log_level lvl)
{
	return lvl <= log_level_current;
}

void log_write(enum log_level lvl, const struct log_conn *conn, const char *fmt, ...)
	PRINTF_LIKE(3, 4);

#define log_error(...) log_write(LOG_LEVEL_ERROR, NULL, __VA_ARGS__)
#define log_warning(...) log_write(LOG_LEVEL_WARNING, NULL, __VA_ARGS__)
#define log_info(...) log_write(LOG_LEVEL_INFO, NULL, __VA_ARGS__)
#define log_debug(...)                                                                             \
	do {                                                                                       \
		if (log_enabled(LOG_LEVEL_DEBUG))                                                  \
			log_write(LOG_LEVEL_DEBUG, NULL, __VA_ARGS__);                             \
	} while (0)
