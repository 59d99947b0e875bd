/*
 * check_user.c - user and -u/--user: sluice started as root becomes the user
 * once it listens (the kernel's view in /proc says so, and it still serves),
 * the unix socket file becomes the user's; -u wins over the file; an unknown
 * user stops start-up before anything is opened; a process that is not root
 * cannot become someone else. And unix_socket_group, the group the unix
 * socket file is given.
 *
 * Becoming another user needs root, as the suites have in CI; without it the
 * tests that need it say so and pass. The user is `nobody`, which every
 * Debian system has.
 */
#include "harness.h"

#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define USERLIST "\"trustuser\" \"trustuserpw\"\n"

static bool need_root(void)
{
	if (geteuid() == 0)
		return true;
	printf("check_user: not root, cannot test giving root up; skipped\n");
	return false;
}

/* The four ids of a /proc/<pid>/status line ("Uid:" or "Gid:") are all want. */
static void expect_ids(pid_t pid, const char *field, unsigned want)
{
	char *path = xasprintf("/proc/%d/status", (int)pid);
	char *status = harness_read_file(path);
	char *at = strstr(status, field);
	ck_assert_msg(at != NULL, "%s has no %s", path, field);
	unsigned ids[4];
	ck_assert_int_eq(sscanf(at + strlen(field), " %u %u %u %u", &ids[0], &ids[1], &ids[2],
				 &ids[3]),
		4);
	for (int i = 0; i < 4; i++)
		ck_assert_msg(ids[i] == want, "%s %s: %u, want %u", path, field, ids[i], want);
	/* And no supplementary group of root's is left. */
	at = strstr(status, "Groups:");
	ck_assert_ptr_nonnull(at);
	ck_assert_msg(strncmp(at, "Groups:\t0 ", 10) != 0 && strncmp(at, "Groups:\t0\n", 10) != 0,
		"%.40s", at);
	free(status);
	free(path);
}

START_TEST(test_user_setting_gives_root_up_once_listening)
{
	if (!need_root())
		return;
	const struct passwd *pw = getpwnam("nobody");
	ck_assert_ptr_nonnull(pw);
	unsigned uid = pw->pw_uid, gid = pw->pw_gid;
	struct harness_sluice *s =
		harness_sluice_start("auth_type = trust\nuser = nobody\n", NULL, USERLIST);
	ck_assert(harness_sluice_log_wait(s, "running as user nobody", 5000));
	expect_ids(s->pid, "Uid:", uid);
	expect_ids(s->pid, "Gid:", gid);

	/* The socket it opened as root is the user's now, and serves. */
	char *sock = xasprintf("%s/.s.PGSQL.%d", s->dir, s->port);
	struct stat st;
	ck_assert_int_eq(stat(sock, &st), 0);
	ck_assert_uint_eq(st.st_uid, uid);
	free(sock);
	PGconn *c = harness_connect(s, "dbname=app user=trustuser");
	harness_expect_answer(c, "SELECT 1", "1");
	PQfinish(c);
	char *conninfo = xasprintf("host=%s port=%d dbname=app user=trustuser", s->dir, s->port);
	PGconn *u = PQconnectdb(conninfo);
	ck_assert_msg(PQstatus(u) == CONNECTION_OK, "%s", PQerrorMessage(u));
	PQfinish(u);
	free(conninfo);
	ck_assert_int_eq(harness_sluice_log_count(s, "running as root"), 0);
	harness_sluice_stop_ok(s);
}
END_TEST

/* A sluice.ini in a directory of its own that any user may read; the caller frees both. */
static char *write_ini(const char *body, char **dir_out)
{
	char *dir = xstrdup("/tmp/check_user_XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	chmod(dir, 0755);
	char *path = xasprintf("%s/sluice.ini", dir);
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f,
		"[sluice]\nlisten_addr = 127.0.0.1\nlisten_port = %d\nunix_socket_dir =\n"
		"auth_type = trust\n%s\n[databases]\napp = host=127.0.0.1\n",
		harness_free_port(), body);
	fclose(f);
	chmod(path, 0644);
	*dir_out = dir;
	return path;
}

static void remove_ini(char *path, char *dir)
{
	unlink(path);
	rmdir(dir);
	free(path);
	free(dir);
}

START_TEST(test_command_line_user_wins_over_the_file_and_an_unknown_one_stops_start_up)
{
	char *dir;
	char *ini = write_ini("user = nobody", &dir);
	const char *bin = getenv("SLUICE_BIN");
	ck_assert_ptr_nonnull(bin);
	char *out = NULL;
	char *const argv[] = { (char *)bin, "-u", "no_such_user_here", ini, NULL };
	int rc = harness_run_program(bin, argv, NULL, 10000, &out);
	ck_assert_int_eq(rc, 1);
	ck_assert_msg(strstr(out, "could not find user 'no_such_user_here' to switch to"), "%s",
		out);
	/* Refused before anything was opened. */
	ck_assert_msg(strstr(out, "listening on") == NULL, "%s", out);
	free(out);

	char *const argv2[] = { (char *)bin, "--user=no_such_user_here", ini, NULL };
	rc = harness_run_program(bin, argv2, NULL, 10000, &out);
	ck_assert_int_eq(rc, 1);
	ck_assert_msg(strstr(out, "could not find user 'no_such_user_here'"), "%s", out);
	free(out);
	remove_ini(ini, dir);
}
END_TEST

START_TEST(test_not_root_only_the_current_user_is_possible)
{
	if (!need_root())
		return;
	char *dir;
	char *ini = write_ini("", &dir);
	const char *bin = getenv("SLUICE_BIN");
	ck_assert_ptr_nonnull(bin);
	char *out = NULL;
	/* setpriv runs sluice as nobody, with no way back to root. */
	char *const argv[] = { "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
		(char *)bin, "-u", "root", ini, NULL };
	int rc = harness_run_program("setpriv", argv, NULL, 10000, &out);
	ck_assert_msg(rc == 1, "exit %d: %s", rc, out);
	ck_assert_msg(strstr(out, "failed to assume identity of user 'root': Operation not "
				  "permitted"),
		"%s", out);
	free(out);

	remove_ini(ini, dir);
}
END_TEST

START_TEST(test_unix_socket_group_is_given_to_the_socket_file)
{
	if (!need_root())
		return;
	const struct group *gr = getgrnam("nogroup");
	ck_assert_ptr_nonnull(gr);
	unsigned gid = gr->gr_gid;
	struct harness_sluice *s = harness_sluice_start(
		"auth_type = trust\nunix_socket_group = nogroup\nunix_socket_mode = 0770\n", NULL,
		USERLIST);
	char *sock = xasprintf("%s/.s.PGSQL.%d", s->dir, s->port);
	struct stat st;
	ck_assert_int_eq(stat(sock, &st), 0);
	ck_assert_uint_eq(st.st_gid, gid);
	ck_assert_uint_eq(st.st_mode & 0777, 0770);
	free(sock);
	harness_sluice_stop_ok(s);

	/* An unknown group stops start-up. */
	char *dir;
	char *body = xasprintf("unix_socket_dir = /tmp\nunix_socket_group = no_such_group_here");
	char *ini = write_ini(body, &dir);
	const char *bin = getenv("SLUICE_BIN");
	char *out = NULL;
	char *const argv[] = { (char *)bin, ini, NULL };
	int rc = harness_run_program(bin, argv, NULL, 10000, &out);
	ck_assert_msg(rc == 1, "exit %d: %s", rc, out);
	ck_assert_msg(strstr(out, "could not find group 'no_such_group_here'"), "%s", out);
	free(out);
	free(body);
	remove_ini(ini, dir);
}
END_TEST

static Suite *user_suite(void)
{
	Suite *s = suite_create("user");
	TCase *tc = harness_tcase("user");
	tcase_add_test(tc, test_user_setting_gives_root_up_once_listening);
	tcase_add_test(tc, test_command_line_user_wins_over_the_file_and_an_unknown_one_stops_start_up);
	tcase_add_test(tc, test_not_root_only_the_current_user_is_possible);
	tcase_add_test(tc, test_unix_socket_group_is_given_to_the_socket_file);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return harness_run_suite(user_suite());
}
