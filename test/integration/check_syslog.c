/*
 * check_syslog.c - syslog, syslog_ident and syslog_facility: sluice's log
 * lines reach syslog(3) with the ident, facility and priority asked for,
 * debug detail stays out, and a reload changes the ident or turns syslog off.
 *
 * glibc's syslog() writes to /dev/log, a path nothing here may take over on
 * a shared machine, and there may be no syslog daemon to read it anyway. So
 * sluice runs in a mount namespace of its own (unshare -m, through
 * SLUICE_WRAPPER) where /dev is a private tmpfs whose "log" is a symlink to
 * a datagram socket this test binds in its own directory: the real /dev/log
 * is never touched, and the test reads exactly the datagrams syslog() sent.
 * That needs root with CAP_SYS_ADMIN, as the suites have in CI; without it
 * (not root, or root in an unprivileged container) the tests say so and pass
 * without checking anything.
 */
#include "harness.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <syslog.h>

#define USERLIST "\"trustuser\" \"trustuserpw\"\n"

/* The socket standing in for /dev/log, and what arrived on it. */
struct fake_syslog {
	char *dir;
	char *sock_path;
	int fd;
	char *received; /* every datagram so far, one per line */
};

/*
 * Binds the socket and makes harness_sluice_start() run sluice in a private
 * mount namespace whose /dev/log leads to it. false when this process may
 * not create mount namespaces (not root).
 */
static bool fake_syslog_start(struct fake_syslog *f)
{
	if (geteuid() != 0) {
		printf("check_syslog: not root, cannot give sluice a private /dev/log; skipped\n");
		return false;
	}
	/* Root in a container may still lack CAP_SYS_ADMIN: try it, privately. */
	if (system("unshare -m sh -c 'mount -t tmpfs check_syslog /dev' >/dev/null 2>&1") != 0) {
		printf("check_syslog: cannot mount in a private mount namespace here (unshare -m "
		       "needs CAP_SYS_ADMIN); skipped\n");
		return false;
	}
	f->dir = xstrdup("/tmp/check_syslog_XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(f->dir));
	f->sock_path = xasprintf("%s/log", f->dir);
	f->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(f->fd, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->sock_path);
	ck_assert_int_eq(bind(f->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	chmod(f->sock_path, 0666);
	f->received = xstrdup("");

	char *script = xasprintf("%s/ns.sh", f->dir);
	char *text = xasprintf("#!/bin/sh\n"
			       "# Runs in sluice's own mount namespace: nothing here is seen outside.\n"
			       "set -e\n"
			       "mount -t tmpfs -o mode=755 check_syslog /dev\n"
			       "mknod -m 666 /dev/null c 1 3\n"
			       "ln -s %s /dev/log\n"
			       "exec \"$@\"\n",
		f->sock_path);
	FILE *out = fopen(script, "w");
	ck_assert_ptr_nonnull(out);
	fputs(text, out);
	fclose(out);
	chmod(script, 0755);
	const char *old = getenv("SLUICE_WRAPPER");
	char *wrapper = xasprintf("unshare -m %s%s%s", script, old ? " " : "", old ? old : "");
	setenv("SLUICE_WRAPPER", wrapper, 1);
	free(wrapper);
	free(text);
	free(script);
	return true;
}

static void fake_syslog_free(struct fake_syslog *f)
{
	close(f->fd);
	unlink(f->sock_path);
	char *script = xasprintf("%s/ns.sh", f->dir);
	unlink(script);
	free(script);
	rmdir(f->dir);
	free(f->dir);
	free(f->sock_path);
	free(f->received);
}

/* Takes the datagrams that arrive within ms into f->received. */
static void fake_syslog_drain(struct fake_syslog *f, int ms)
{
	long deadline = harness_now_ms() + ms;
	for (;;) {
		long left = deadline - harness_now_ms();
		struct pollfd p = { .fd = f->fd, .events = POLLIN };
		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return;
		char buf[4096];
		ssize_t n = recv(f->fd, buf, sizeof(buf) - 1, 0);
		if (n <= 0)
			continue;
		buf[n] = '\0';
		char *all = xasprintf("%s%s\n", f->received, buf);
		free(f->received);
		f->received = all;
	}
}

/* Waits (bounded) for a datagram that contains needle; returns that datagram's line. */
static char *fake_syslog_wait(struct fake_syslog *f, const char *needle, int timeout_ms)
{
	long deadline = harness_now_ms() + timeout_ms;
	for (;;) {
		char *at = strstr(f->received, needle);
		if (at) {
			char *start = at;
			while (start > f->received && start[-1] != '\n')
				start--;
			return xstrndup(start, strcspn(start, "\n"));
		}
		if (harness_now_ms() >= deadline)
			return NULL;
		fake_syslog_drain(f, 50);
	}
}

START_TEST(test_lines_reach_syslog_with_ident_facility_and_priority)
{
	struct fake_syslog f;
	if (!fake_syslog_start(&f))
		return;
	struct harness_sluice *s = harness_sluice_start("auth_type = trust\nverbose = 1\n"
							"syslog = 1\nsyslog_ident = sluicetest\n"
							"syslog_facility = local3\n",
		NULL, USERLIST);
	char want[64];
	/* local3 is facility 19: 19 * 8 + LOG_INFO. */
	snprintf(want, sizeof(want), "<%d>", LOG_LOCAL3 | LOG_INFO);
	char *line = fake_syslog_wait(&f, " started (pid ", 5000);
	ck_assert_msg(line != NULL, "no start-up line in syslog; got:\n%s", f.received);
	ck_assert_msg(strncmp(line, want, strlen(want)) == 0, "want %s: %s", want, line);
	char *tag = xasprintf("sluicetest[%d]: sluice ", (int)s->pid);
	ck_assert_msg(strstr(line, tag) != NULL, "want \"%s\" in: %s", tag, line);
	free(tag);
	free(line);

	/* A connection's line, with its tag but not the time and pid of the text log. */
	PGconn *c = harness_connect(s, "dbname=app user=trustuser");
	harness_expect_answer(c, "SELECT 1", "1");
	PQfinish(c);
	line = fake_syslog_wait(&f, "login attempt: db=app user=trustuser", 5000);
	ck_assert_msg(line != NULL, "no login line in syslog; got:\n%s", f.received);
	ck_assert_msg(strstr(line, "]: C-") != NULL, "%s", line);

	/* Warnings go with their own priority: a reload that changes a restart-only setting. */
	free(line);
	char *port = xasprintf("listen_port = %d", s->port);
	harness_sluice_edit_ini(s, port, "listen_port = 1");
	free(port);
	harness_sluice_signal(s, SIGHUP);
	snprintf(want, sizeof(want), "<%d>", LOG_LOCAL3 | LOG_WARNING);
	line = fake_syslog_wait(&f, "listen_port changed from", 5000);
	ck_assert_msg(line != NULL && strncmp(line, want, strlen(want)) == 0, "want %s: %s", want,
		line ? line : f.received);
	free(line);

	/* verbose = 1 puts debug lines in the text log, never in syslog. */
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	ck_assert_int_gt(harness_sluice_log_count(s, " DEBUG "), 0);
	fake_syslog_drain(&f, 200);
	snprintf(want, sizeof(want), "<%d>", LOG_LOCAL3 | LOG_DEBUG);
	ck_assert_msg(strstr(f.received, want) == NULL, "a debug line reached syslog:\n%s",
		f.received);
	ck_assert_msg(strstr(f.received, "sluice stopped") != NULL, "%s", f.received);
	harness_sluice_free(s);
	fake_syslog_free(&f);
}
END_TEST

START_TEST(test_reload_changes_the_ident_and_turns_syslog_off)
{
	struct fake_syslog f;
	if (!fake_syslog_start(&f))
		return;
	struct harness_sluice *s = harness_sluice_start(
		"auth_type = trust\nsyslog = 1\nsyslog_ident = first\n", NULL, USERLIST);
	char *line = fake_syslog_wait(&f, " started (pid ", 5000);
	ck_assert_msg(line && strstr(line, "first["), "%s", line ? line : f.received);
	/* PgBouncer's default facility is daemon. */
	char want[64];
	snprintf(want, sizeof(want), "<%d>", LOG_DAEMON | LOG_INFO);
	ck_assert_msg(strncmp(line, want, strlen(want)) == 0, "want %s: %s", want, line);
	free(line);

	harness_sluice_edit_ini(s, "syslog_ident = first", "syslog_ident = second");
	harness_sluice_signal(s, SIGHUP);
	line = fake_syslog_wait(&f, "configuration reloaded", 5000);
	ck_assert_msg(line && strstr(line, "second["), "%s", line ? line : f.received);
	free(line);

	harness_sluice_edit_ini(s, "syslog = 1", "syslog = 0");
	harness_sluice_signal(s, SIGHUP);
	ck_assert(harness_sluice_log_wait(s, "SIGHUP: reloading configuration", 5000));
	long deadline = harness_now_ms() + 5000;
	while (harness_sluice_log_count(s, "configuration reloaded") < 2 &&
		harness_now_ms() < deadline)
		harness_sleep_ms(20);
	ck_assert_int_eq(harness_sluice_log_count(s, "configuration reloaded"), 2);
	PGconn *c = harness_connect(s, "dbname=app user=trustuser");
	PQfinish(c);
	fake_syslog_drain(&f, 300);
	/* The SIGHUP line went out before the reload; nothing after it did. */
	const char *tail = strstr(f.received, "configuration reloaded");
	ck_assert_ptr_nonnull(tail);
	ck_assert_msg(strstr(tail + 1, "configuration reloaded") == NULL &&
			strstr(f.received, "login attempt") == NULL,
		"syslog went on after syslog = 0:\n%s", f.received);
	harness_sluice_stop_ok(s);
	fake_syslog_free(&f);
}
END_TEST

static Suite *syslog_suite(void)
{
	Suite *s = suite_create("syslog");
	TCase *tc = harness_tcase("syslog");
	tcase_add_test(tc, test_lines_reach_syslog_with_ident_facility_and_priority);
	tcase_add_test(tc, test_reload_changes_the_ident_and_turns_syslog_off);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return harness_run_suite(syslog_suite());
}
