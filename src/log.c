/*
 * log.c - levelled logging as text or JSON lines, to stderr and/or a file,
 * and to syslog(3) when asked.
 *
 * A line is formatted once into a stack buffer and written with one write(2)
 * per destination, so lines from a crashing process are not interleaved.
 * Logging is never on the relay path at the default level: callers check
 * log_enabled() (the log_debug macro does) before formatting anything.
 * Control characters are escaped in both formats, so nothing a client sends
 * can start a line of its own.
 */
#include "sluice/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

enum log_level log_level_current = LOG_LEVEL_INFO;

static struct {
	enum log_format format;
	int fd; /* -1: none */
	char *path;
	bool also_stderr;
	bool syslog_open;
	char *syslog_ident; /* openlog() keeps the pointer: freed only after closelog() */
	int syslog_facility;
} L = { LOG_FORMAT_TEXT, -1, NULL, true, false, NULL, 0 };

static const char *const level_names[] = { "ERROR", "WARNING", "LOG", "DEBUG", "NOISE" };

/*
 * The pid each line carries: getpid() is a system call, so it is read once
 * (log_setup) and again in a forked child (daemonizing), before which a
 * line asks the kernel.
 */
static pid_t log_pid;

static void learn_pid(void)
{
	log_pid = getpid();
}

/* syslog priorities by level; debug detail stays out of syslog, as in PgBouncer. */
static const int syslog_priorities[] = { LOG_ERR, LOG_WARNING, LOG_INFO, -1, -1 };

/* PgBouncer's facility names. */
static const struct {
	const char *name;
	int code;
} facilities[] = {
	{ "auth", LOG_AUTH },	  { "authpriv", LOG_AUTHPRIV }, { "daemon", LOG_DAEMON },
	{ "user", LOG_USER },	  { "local0", LOG_LOCAL0 },	{ "local1", LOG_LOCAL1 },
	{ "local2", LOG_LOCAL2 }, { "local3", LOG_LOCAL3 },	{ "local4", LOG_LOCAL4 },
	{ "local5", LOG_LOCAL5 }, { "local6", LOG_LOCAL6 },	{ "local7", LOG_LOCAL7 },
};

int log_syslog_facility(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(facilities); i++)
		if (strcasecmp(facilities[i].name, name) == 0)
			return facilities[i].code;
	return -1;
}

void log_setup_syslog(bool on, const char *ident, const char *facility)
{
	int code = facility ? log_syslog_facility(facility) : -1;
	if (code < 0)
		code = LOG_DAEMON;
	if (on && L.syslog_open && L.syslog_facility == code && strcmp(L.syslog_ident, ident) == 0)
		return;
	if (L.syslog_open)
		closelog();
	L.syslog_open = false;
	free(L.syslog_ident);
	L.syslog_ident = NULL;
	if (!on)
		return;
	L.syslog_ident = xstrdup(ident);
	L.syslog_facility = code;
	/*
	 * LOG_NDELAY connects to /dev/log now, not at the first line, so that
	 * the socket is open before sluice gives up root (-u).
	 */
	openlog(L.syslog_ident, LOG_PID | LOG_NDELAY, code);
	L.syslog_open = true;
}

int log_setup(enum log_level level, enum log_format format, const char *logfile, bool also_stderr)
{
	static bool forks_learn;
	if (!forks_learn) {
		learn_pid();
		forks_learn = pthread_atfork(NULL, NULL, learn_pid) == 0;
	}
	log_level_current = level;
	L.format = format;
	if (logfile && *logfile) {
		if (!L.path || strcmp(L.path, logfile) != 0) {
			int fd = open(logfile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
			if (fd < 0)
				return -errno;
			if (L.fd >= 0)
				close(L.fd);
			L.fd = fd;
			free(L.path);
			L.path = xstrdup(logfile);
		}
		L.also_stderr = also_stderr;
	} else {
		if (L.fd >= 0)
			close(L.fd);
		L.fd = -1;
		free(L.path);
		L.path = NULL;
		L.also_stderr = true;
	}
	return 0;
}

void log_reopen(void)
{
	if (!L.path)
		return;
	int fd = open(L.path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (fd < 0)
		return;
	if (L.fd >= 0)
		close(L.fd);
	L.fd = fd;
}

void log_shutdown(void)
{
	if (L.fd >= 0)
		close(L.fd);
	L.fd = -1;
	free(L.path);
	L.path = NULL;
	log_setup_syslog(false, NULL, NULL);
}

/* Appends s to the line as a JSON string body (without quotes). */
static size_t json_escape(char *dst, size_t cap, size_t n, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	for (; *s && n + 7 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			dst[n++] = '\\';
			dst[n++] = (char)c;
		} else if (c < 0x20) {
			dst[n++] = '\\';
			dst[n++] = 'u';
			dst[n++] = '0';
			dst[n++] = '0';
			dst[n++] = hex[c >> 4];
			dst[n++] = hex[c & 15];
		} else {
			dst[n++] = (char)c;
		}
	}
	return n;
}

/*
 * Appends s to a text line with control characters escaped (\n, \r, \t,
 * \xHH): user and database names, and messages quoting what a client sent,
 * come from the network, and a raw newline there would forge a log line.
 */
static size_t text_escape(char *dst, size_t cap, size_t n, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	for (; *s && n + 5 < cap; s++) {
		/* A run of printable bytes (the NUL ends it too) is copied at once. */
		const char *end = s;
		while ((unsigned char)*end >= 0x20 && *end != 0x7f)
			end++;
		if (end > s) {
			size_t run = MIN((size_t)(end - s), cap - 5 - n);
			memcpy(dst + n, s, run);
			n += run;
			s += run - 1;
			continue;
		}
		unsigned char c = (unsigned char)*s;
		dst[n++] = '\\';
		if (c == '\n') {
			dst[n++] = 'n';
		} else if (c == '\r') {
			dst[n++] = 'r';
		} else if (c == '\t') {
			dst[n++] = 't';
		} else {
			dst[n++] = 'x';
			dst[n++] = hex[c >> 4];
			dst[n++] = hex[c & 15];
		}
	}
	return n;
}

/* Appends len bytes of s to the line, as many as fit. */
static size_t put(char *dst, size_t cap, size_t n, const char *s, size_t len)
{
	if (n >= cap)
		return n;
	len = MIN(len, cap - n);
	memcpy(dst + n, s, len);
	return n + len;
}

static size_t put_str(char *dst, size_t cap, size_t n, const char *s)
{
	return put(dst, cap, n, s, strlen(s));
}

static size_t put_u64(char *dst, size_t cap, size_t n, uint64_t v)
{
	char digits[20];
	size_t k = sizeof(digits);
	do {
		digits[--k] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return put(dst, cap, n, digits + k, sizeof(digits) - k);
}

/*
 * Writes tv as local time the way PgBouncer does ("2026-12-07 15:04:05.123")
 * and returns its length. localtime_r and strftime cost more than the rest
 * of a line together, so each thread keeps the text of its last second.
 */
static size_t format_time(char dst[32], const struct timeval *tv)
{
	static _Thread_local time_t sec = -1;
	static _Thread_local char text[24];
	static _Thread_local size_t len;
	if (tv->tv_sec != sec) {
		struct tm tm;
		localtime_r(&tv->tv_sec, &tm);
		len = strftime(text, sizeof(text), "%Y-%m-%d %H:%M:%S", &tm);
		sec = tv->tv_sec;
	}
	memcpy(dst, text, len);
	int ms = (int)(tv->tv_usec / 1000);
	dst[len] = '.';
	dst[len + 1] = (char)('0' + ms / 100);
	dst[len + 2] = (char)('0' + ms / 10 % 10);
	dst[len + 3] = (char)('0' + ms % 10);
	dst[len + 4] = '\0';
	return len + 4;
}

static size_t append(char *dst, size_t cap, size_t n, const char *fmt, ...) PRINTF_LIKE(4, 5);
static size_t append(char *dst, size_t cap, size_t n, const char *fmt, ...)
{
	if (n >= cap)
		return n;
	va_list ap;
	va_start(ap, fmt);
	int k = vsnprintf(dst + n, cap - n, fmt, ap);
	va_end(ap);
	if (k < 0)
		return n;
	return MIN(cap - 1, n + (size_t)k);
}

void log_write(enum log_level lvl, const struct log_conn *conn, const char *fmt, ...)
{
	if (!log_enabled(lvl))
		return;
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	struct timeval tv;
	gettimeofday(&tv, NULL);
	char ts[32];
	size_t tl = format_time(ts, &tv);
	int pid = log_pid ? (int)log_pid : (int)getpid();

	char line[4096];
	size_t n = 0, cap = sizeof(line) - 2;
	/* Where the line starts without time, pid and level (syslog adds its own). */
	size_t body = 0;
	if (L.format == LOG_FORMAT_JSON) {
		n = append(line, cap, n, "{\"ts\":\"%s\",\"pid\":%d,\"level\":\"%s\"", ts, pid,
			   level_names[lvl]);
		if (conn) {
			n = append(line, cap, n, ",\"conn\":\"%c-%llu\"", conn->kind,
				   (unsigned long long)conn->id);
			const char *keys[] = { "db", "user", "addr" };
			const char *vals[] = { conn->db, conn->user, conn->addr };
			for (int i = 0; i < 3; i++) {
				if (!vals[i])
					continue;
				n = append(line, cap, n, ",\"%s\":\"", keys[i]);
				n = json_escape(line, cap, n, vals[i]);
				n = append(line, cap, n, "\"");
			}
		}
		n = append(line, cap, n, ",\"msg\":\"");
		n = json_escape(line, cap, n, msg);
		n = append(line, cap, n, "\"}");
	} else {
		/* Put together by hand: a connection logs two lines, and vsnprintf is slow. */
		n = put(line, cap, n, ts, tl);
		n = put(line, cap, n, " ", 1);
		n = put_u64(line, cap, n, (uint64_t)pid);
		n = put(line, cap, n, " ", 1);
		n = put_str(line, cap, n, level_names[lvl]);
		n = put(line, cap, n, " ", 1);
		body = n;
		if (conn) {
			/* PgBouncer's layout, which operators' patterns match: "C-17: db/user@addr msg". */
			char kind[2] = { conn->kind, '-' };
			n = put(line, cap, n, kind, 2);
			n = put_u64(line, cap, n, conn->id);
			n = put(line, cap, n, ": ", 2);
			n = text_escape(line, cap, n, conn->db ? conn->db : "(nodb)");
			n = put(line, cap, n, "/", 1);
			n = text_escape(line, cap, n, conn->user ? conn->user : "(nouser)");
			n = put(line, cap, n, "@", 1);
			n = text_escape(line, cap, n, conn->addr ? conn->addr : "?");
			n = put(line, cap, n, " ", 1);
		}
		n = text_escape(line, cap, n, msg);
	}
	if (L.syslog_open && syslog_priorities[lvl] >= 0) {
		line[n] = '\0';
		syslog(syslog_priorities[lvl], "%s", line + body);
	}
	line[n++] = '\n';

	if (L.fd >= 0) {
		ssize_t w = write(L.fd, line, n);
		(void)w;
	}
	if (L.fd < 0 || L.also_stderr) {
		ssize_t w = write(STDERR_FILENO, line, n);
		(void)w;
	}
}
