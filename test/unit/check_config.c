/*
 * check_config.c - unit tests of the config module: sluice.ini parsing, every
 * kind of error with its "file:line:" location, the SLUICE_* environment,
 * [databases] connection strings and [users] entries, and the rule that
 * every setting in the table is documented in doc/config.md and
 * etc/sluice.ini.
 *
 * It does not test what the settings do at run time; the integration suites
 * named after each setting do that. Files are written with mkstemp and
 * removed by the test that wrote them. Check forks each test (CK_FORK=yes),
 * so setenv in one test does not leak into the next; the fixture still
 * clears every SLUICE_* variable first so the caller's environment cannot
 * change the results.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/common.h"
#include "sluice/config.h"
#include "sluice/log.h"

#ifndef SRCDIR
#error "SRCDIR must name the source tree"
#endif

extern char **environ;

static void clear_sluice_env(void)
{
	/* unsetenv changes environ, so restart the scan after each removal. */
	for (bool again = true; again;) {
		again = false;
		for (char **e = environ; *e; e++) {
			if (strncmp(*e, "SLUICE_", 7) != 0)
				continue;
			const char *eq = strchr(*e, '=');
			char *name = xstrndup(*e, eq ? (size_t)(eq - *e) : strlen(*e));
			unsetenv(name);
			free(name);
			again = true;
			break;
		}
	}
}

static void setup(void)
{
	clear_sluice_env();
	/* Warnings go to a file nobody reads unless a test asks (keeps output quiet). */
	ck_assert_int_eq(log_setup(LOG_LEVEL_WARNING, LOG_FORMAT_TEXT, "/dev/null", false), 0);
}

static void teardown(void)
{
	log_shutdown();
}

/* Writes text to a fresh temporary file; the caller unlinks and frees the path. */
static char *write_temp(const char *text)
{
	char *path = xstrdup("/tmp/check_config_XXXXXX");
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	size_t len = strlen(text);
	ck_assert_int_eq(write(fd, text, len), (ssize_t)len);
	close(fd);
	return path;
}

/* Loads text as a config file; on failure, err holds the message. */
static struct config *load_text(const char *text, char **path_out, struct config_error *err)
{
	char *path = write_temp(text);
	struct config *cfg = config_load(path, err);
	if (path_out)
		*path_out = path;
	else {
		unlink(path);
		free(path);
	}
	return cfg;
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *s = xmalloc((size_t)n + 1);
	size_t got = fread(s, 1, (size_t)n, f);
	s[got] = '\0';
	fclose(f);
	return s;
}

/* Replaces the contents of an existing file. */
static void write_file_over(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	ck_assert_msg(f != NULL, "cannot write %s", path);
	ck_assert_int_eq(fputs(text, f) >= 0, 1);
	fclose(f);
}

/* ---- defaults ----------------------------------------------------------------- */

START_TEST(test_config_defaults_are_pgbouncer_defaults)
{
	struct config_error err;
	struct config *cfg = config_load(NULL, &err);
	ck_assert_msg(cfg != NULL, "%s", err.text);
	ck_assert_ptr_null(cfg->path);
	ck_assert_str_eq(cfg->listen_addr, "127.0.0.1");
	ck_assert_int_eq(cfg->listen_port, 6432);
	ck_assert_str_eq(cfg->unix_socket_dir, "/tmp");
	ck_assert_int_eq(cfg->unix_socket_mode, 0777);
	ck_assert_int_eq(cfg->auth_type, AUTH_TYPE_MD5);
	ck_assert_str_eq(cfg->auth_file, "");
	ck_assert_int_eq(cfg->pool_mode, POOL_MODE_SESSION);
	ck_assert_int_eq(cfg->default_pool_size, 20);
	ck_assert_int_eq(cfg->min_pool_size, 0);
	ck_assert_int_eq(cfg->reserve_pool_size, 0);
	ck_assert_int_eq(cfg->reserve_pool_timeout, 5000);
	ck_assert_int_eq(cfg->max_client_conn, 100);
	ck_assert_int_eq(cfg->max_db_connections, 0);
	ck_assert_int_eq(cfg->max_user_connections, 0);
	ck_assert_int_eq(cfg->max_db_client_connections, 0);
	ck_assert_int_eq(cfg->max_user_client_connections, 0);
	ck_assert_str_eq(cfg->server_reset_query, "DISCARD ALL");
	ck_assert(!cfg->server_reset_query_always);
	ck_assert_int_eq(cfg->session_pinning, SESSION_PINNING_PIN);
	ck_assert_int_eq(cfg->io_uring, IO_URING_OFF);
	ck_assert_str_eq(cfg->server_check_query, "<empty>");
	ck_assert_int_eq(cfg->server_check_delay, 30000);
	ck_assert_int_eq(cfg->server_lifetime, 3600000);
	ck_assert_int_eq(cfg->server_idle_timeout, 600000);
	ck_assert_int_eq(cfg->server_connect_timeout, 15000);
	ck_assert_int_eq(cfg->server_login_retry, 15000);
	ck_assert_int_eq(cfg->query_timeout, 0);
	ck_assert_int_eq(cfg->query_wait_timeout, 120000);
	ck_assert_int_eq(cfg->client_idle_timeout, 0);
	ck_assert_int_eq(cfg->client_login_timeout, 60000);
	ck_assert_int_eq(cfg->idle_transaction_timeout, 0);
	ck_assert_str_eq(cfg->ignore_startup_parameters, "extra_float_digits");
	ck_assert_str_eq(cfg->track_extra_parameters, "IntervalStyle");
	ck_assert_uint_eq(cfg->max_packet_size, 2147483647u);
	ck_assert_str_eq(cfg->logfile, "");
	ck_assert_str_eq(cfg->pidfile, "");
	ck_assert(cfg->log_connections);
	ck_assert(cfg->log_disconnections);
	ck_assert(cfg->log_pooler_errors);
	ck_assert_int_eq(cfg->verbose, 0);
	ck_assert_int_eq(cfg->log_format, LOG_FORMAT_TEXT);
	ck_assert_ptr_null(cfg->databases);
	ck_assert_ptr_null(cfg->fallback);
	ck_assert_ptr_null(cfg->users);
	config_unref(cfg);
}
END_TEST

/* ---- a good file ------------------------------------------------------------- */

START_TEST(test_config_good_file_sets_every_value_type)
{
	const char *text = "; a comment\n"
			   "# another\n"
			   "[sluice]\n"
			   "listen_addr = *\n"
			   "  listen_port = 7000\n"
			   "unix_socket_dir =\n"
			   "unix_socket_mode = 0700\n"
			   "auth_type = scram-sha-256\n"
			   "auth_file = /etc/sluice/userlist.txt\n"
			   "pool_mode = transaction\n"
			   "default_pool_size = 30\n"
			   "min_pool_size = 2\n"
			   "reserve_pool_timeout = 0.5\n"
			   "server_reset_query_always = yes\n"
			   "session_pinning = Refuse\n"
			   "io_uring = AUTO\n"
			   "log_connections = off\n"
			   "LOG_DISCONNECTIONS = false\n"
			   "server_lifetime = 2min\n"
			   "query_timeout = 250ms\n"
			   "server_reset_query = DISCARD ALL; SELECT 1\n"
			   "ignore_startup_parameters = extra_float_digits, search_path\n"
			   "max_packet_size = 65536\n"
			   "log_format = json\n"
			   "verbose = 2\n";
	struct config_error err;
	struct config *cfg = load_text(text, NULL, &err);
	ck_assert_msg(cfg != NULL, "%s", err.text);
	ck_assert_str_eq(cfg->listen_addr, "*");
	ck_assert_int_eq(cfg->listen_port, 7000);
	ck_assert_str_eq(cfg->unix_socket_dir, "");
	ck_assert_int_eq(cfg->unix_socket_mode, 0700);
	ck_assert_int_eq(cfg->auth_type, AUTH_TYPE_SCRAM_SHA_256);
	ck_assert_str_eq(cfg->auth_file, "/etc/sluice/userlist.txt");
	ck_assert_int_eq(cfg->pool_mode, POOL_MODE_TRANSACTION);
	ck_assert_int_eq(cfg->default_pool_size, 30);
	ck_assert_int_eq(cfg->min_pool_size, 2);
	ck_assert_int_eq(cfg->reserve_pool_timeout, 500);
	ck_assert(cfg->server_reset_query_always);
	ck_assert_int_eq(cfg->session_pinning, SESSION_PINNING_REFUSE);
	ck_assert_int_eq(cfg->io_uring, IO_URING_AUTO);
	ck_assert(!cfg->log_connections);
	ck_assert(!cfg->log_disconnections);
	ck_assert_int_eq(cfg->server_lifetime, 120000);
	ck_assert_int_eq(cfg->query_timeout, 250);
	/* No inline comments, as in PgBouncer: the ';' belongs to the value. */
	ck_assert_str_eq(cfg->server_reset_query, "DISCARD ALL; SELECT 1");
	ck_assert(config_list_contains(cfg->ignore_startup_parameters, "search_path"));
	ck_assert_uint_eq(cfg->max_packet_size, 65536);
	ck_assert_int_eq(cfg->log_format, LOG_FORMAT_JSON);
	ck_assert_int_eq(cfg->verbose, 2);
	ck_assert_uint_eq(cfg->warnings, 0);
	config_unref(cfg);
}
END_TEST

START_TEST(test_config_pgbouncer_section_is_an_alias)
{
	struct config_error err;
	struct config *cfg = load_text("[pgbouncer]\nlisten_port = 6543\npool_mode = statement\n"
				       "[databases]\nfoo = host=db\n",
				       NULL, &err);
	ck_assert_msg(cfg != NULL, "%s", err.text);
	ck_assert_int_eq(cfg->listen_port, 6543);
	ck_assert_int_eq(cfg->pool_mode, POOL_MODE_STATEMENT);
	ck_assert_ptr_nonnull(config_find_database(cfg, "foo"));
	config_unref(cfg);
}
END_TEST

START_TEST(test_config_later_key_wins)
{
	struct config_error err;
	struct config *cfg = load_text(
		"[sluice]\nlisten_port = 1000\n[pgbouncer]\nlisten_port = 2000\n", NULL, &err);
	ck_assert_msg(cfg != NULL, "%s", err.text);
	ck_assert_int_eq(cfg->listen_port, 2000);
	config_unref(cfg);
}
END_TEST

START_TEST(test_config_long_line_keeps_line_numbers)
{
	/* inih's default line limit is 200 bytes; connection strings grow past it. */
	char pw[1500];
	memset(pw, 'p', sizeof(pw) - 1);
	pw[sizeof(pw) - 1] = '\0';
	char *text = xasprintf(
		"[databases]\napp = host=db password=%s\n\n[sluice]\nlisten_port = x\n", pw);
	char *path;
	struct config_error err;
	struct config *cfg = load_text(text, &path, &err);
	ck_assert_ptr_null(cfg);
	char *want = xasprintf("%s:5: listen_port: \"x\" is not an integer", path);
	ck_assert_str_eq(err.text, want);
	free(want);
	unlink(path);
	free(path);

	/* And the long value itself arrives whole. */
	text[strlen(text) - strlen("\n[sluice]\nlisten_port = x\n")] = '\0';
	cfg = load_text(text, NULL, &err);
	ck_assert_msg(cfg != NULL, "%s", err.text);
	ck_assert_str_eq(config_find_database(cfg, "app")->password, pw);
	config_unref(cfg);
	free(text);
}
END_TEST

/* ---- errors: every kind, with its location ------------------------------------ */

static const struct error_case {
	const char *text;
	const char *error; /* after the file name */
} error_cases[] = {
	{ "[sluice]\nlisten_port = abc\n", ":2: listen_port: \"abc\" is not an integer" },
	{ "[sluice]\n\nlisten_port = 70000\n",
	  ":3: listen_port: 70000 is out of range (1..65535)" },
	{ "[sluice]\nlisten_port = 0\n", ":2: listen_port: 0 is out of range (1..65535)" },
	{ "[sluice]\nlisten_port = 12abc\n", ":2: listen_port: \"12abc\" is not an integer" },
	{ "[sluice]\ndefault_pool_size = 0\n",
	  ":2: default_pool_size: 0 is out of range (1..2147483647)" },
	{ "[sluice]\nmax_client_conn = 99999999999999999999\n",
	  ":2: max_client_conn: 99999999999999999999 is out of range (1..2147483647)" },
	{ "[sluice]\nlisten_port =\n", ":2: listen_port: empty value, expected an integer" },
	{ "[sluice]\nlog_connections = maybe\n",
	  ":2: log_connections: \"maybe\" is not a boolean (use 0/1, on/off, yes/no, true/false)" },
	{ "[sluice]\nserver_lifetime = -1\n",
	  ":2: server_lifetime: \"-1\" is not a duration (seconds, e.g. 15 or 0.5, or with a unit: "
	  "500ms, 2min, 1h, 1d)" },
	{ "[sluice]\nserver_lifetime = 5 weeks\n",
	  ":2: server_lifetime: \"5 weeks\" is not a duration" },
	{ "[sluice]\nunix_socket_mode = 0789\n",
	  ":2: unix_socket_mode: \"0789\" is not a file mode (octal, 0 to 0777)" },
	{ "[sluice]\nunix_socket_mode = 1777\n",
	  ":2: unix_socket_mode: \"1777\" is not a file mode" },
	{ "[sluice]\npool_mode = sometimes\n",
	  ":2: pool_mode: \"sometimes\" is not a pool mode (session, transaction, statement)" },
	{ "[sluice]\nauth_type = hba\n", ": auth_type = hba needs auth_hba_file" },
	{ "[sluice]\nauth_type = pam\n", ":2: auth_type = pam is not supported by sluice yet" },
	{ "[sluice]\nauth_type = ldap\n", ":2: auth_type = ldap is not supported by sluice yet" },
	{ "[sluice]\nauth_type = kerberos\n", ":2: auth_type: \"kerberos\" is not an auth_type" },
	{ "[sluice]\nsession_pinning = sometimes\n",
	  ":2: session_pinning: \"sometimes\" is not a session_pinning (pin, refuse)" },
	{ "[sluice]\nio_uring = yes\n",
	  ":2: io_uring: \"yes\" is not an io_uring mode (off, auto, on)" },
	{ "[sluice]\nlog_format = xml\n",
	  ":2: log_format: \"xml\" is not a log format (text, json)" },
	{ "[sluice]\nverbose = 9\n", ":2: verbose: 9 is out of range (0..3)" },
	{ "[sluice]\nsyslog_facility = local8\n",
	  ":2: syslog_facility: \"local8\" is not a syslog facility (auth, authpriv, daemon, user, "
	  "local0 to local7)" },
	{ "[sluice]\nsyslog = sometimes\n", ":2: syslog: \"sometimes\" is not a boolean" },
	{ "[sluice]\nno_such_setting = 1\n",
	  ":2: unknown setting \"no_such_setting\" in [sluice]" },
	{ "[sluice]\nlisten_port = 1\n[mystery]\nx = 1\n",
	  ":3: unknown section [mystery] (known: sluice, pgbouncer, databases, users, peers)" },
	{ "listen_port = 1\n",
	  ":1: setting \"listen_port\" is outside any section (start with [sluice])" },
	{ "[sluice]\nthis line has no equals sign\n",
	  ":2: syntax error: expected \"key = value\" or \"[section]\"" },
	{ "[sluice]\n%include /nonexistent/other.ini\n",
	  ":2: %include /nonexistent/other.ini: cannot open: No such file or directory" },
	{ "[sluice]\n%include   \n", ":2: %include needs a file name" },
	{ "[sluice]\n%includex.ini\n", ":2: syntax error" },
	{ "[databases]\napp = host=db prot=5432\n",
	  ":2: database \"app\": invalid connection option \"prot\"" },
	{ "[databases]\napp = host=db port=x\n",
	  ":2: database \"app\": port: \"x\" is not an integer" },
	{ "[databases]\napp = host=db port=99999\n",
	  ":2: database \"app\": port: 99999 is out of range (1..65535)" },
	{ "[databases]\napp = host=db pool_size=zero\n",
	  ":2: database \"app\": pool_size: \"zero\" is not an integer" },
	{ "[databases]\napp = host=db pool_size=0\n",
	  ":2: database \"app\": pool_size: 0 is out of range (1..2147483647)" },
	{ "[databases]\napp = host=a,b,c port=1,2\n",
	  ":2: database \"app\": port: 2 ports for 3 hosts (give one, or one per host)" },
	{ "[databases]\napp = host=a,b port=1,x\n",
	  ":2: database \"app\": port: \"x\" is not an integer" },
	{ "[databases]\napp = host=a,,b\n", ":2: database \"app\": host: empty item in \"a,,b\"" },
	{ "[databases]\napp = host=a,b load_balance_hosts=random\n",
	  ":2: database \"app\": load_balance_hosts: \"random\" is not round-robin or disable" },
	{ "[peers]\nx = host=a\n", ":2: peer \"x\": the id \"x\" is not an integer" },
	{ "[peers]\n0 = host=a\n", ":2: peer \"0\": the id 0 is out of range (1..65535)" },
	{ "[peers]\n1 = port=6000\n", ":2: peer 1: host is not set" },
	{ "[peers]\n1 = host=a colour=red\n", ":2: peer 1: unknown key \"colour\"" },
	{ "[peers]\n1 = host=a pool_size=0\n", ":2: peer 1: pool_size: 0 is out of range" },
	{ "[peers]\n1 = host=a\n2 = host=b\n1 = host=c\n",
	  ":4: peer 1 is already defined at line 2" },
	{ "[sluice]\npeer_id = 16384\n", ":2: peer_id: 16384 is out of range (0..16383)" },
	{ "[databases]\napp = pool_mode=never\n",
	  ":2: database \"app\": pool_mode: \"never\" is not a pool mode" },
	{ "[databases]\napp = server_lifetime=soon\n",
	  ":2: database \"app\": server_lifetime: \"soon\" is not a duration" },
	{ "[databases]\napp = host='db\n",
	  ":2: database \"app\": unterminated quoted value for \"host\"" },
	{ "[databases]\napp = host db\n", ":2: database \"app\": missing \"=\" after \"host\"" },
	{ "[databases]\napp = =db\n", ":2: database \"app\": expected a key at \"=db\"" },
	{ "[databases]\napp = host=db sslmode=require\n",
	  ":2: database \"app\": connection option \"sslmode\" is not supported by sluice" },
	{ "[databases]\npgbouncer = host=a\n",
	  ":2: database name \"pgbouncer\" is reserved for the admin console" },
	{ "[databases]\n\"bad = host=a\n", ":2: badly quoted name \"bad" },
	{ "[databases]\napp = host=a\n= host=b\n", ":3: missing database name before \"=\"" },
	{ "[users]\n = pool_size=2\n", ":2: missing user name before \"=\"" },
	{ "[databases]\napp = host=a\n\napp = host=b\n",
	  ":4: database \"app\" is already defined at line 2" },
	{ "[users]\nbob = pool_mode=transaction colour=blue\n",
	  ":2: user \"bob\": unknown key \"colour\"" },
	{ "[users]\nbob = pool_size=-3\n", ":2: user \"bob\": pool_size: -3 is out of range" },
	{ "[users]\nbob = pool_mode=x\n", ":2: user \"bob\": pool_mode: \"x\" is not a pool mode" },
	{ "[users]\nbob = pool_size=2\nbob = pool_size=3\n",
	  ":3: user \"bob\" is already defined at line 2" },
	/* Validation after load: no line of its own, but the file named. */
	{ "[sluice]\nmin_pool_size = 30\n",
	  ": min_pool_size (30) is larger than default_pool_size (20)" },
	{ "[sluice]\nlisten_addr =\nunix_socket_dir =\n",
	  ": listen_addr and unix_socket_dir are both empty: sluice would accept no connections" },
	{ "[databases]\n\napp = host=db pool_size=2 min_pool_size=3\n",
	  ":3: database \"app\": min_pool_size (3) is larger than its pool size (2)" },
};

START_TEST(test_config_error_names_file_and_line)
{
	const struct error_case *c = &error_cases[_i];
	char *path;
	struct config_error err;
	struct config *cfg = load_text(c->text, &path, &err);
	ck_assert_msg(cfg == NULL, "case %d loaded but should fail with %s", _i, c->error);
	char *want = xasprintf("%s%s", path, c->error);
	/* Long messages are given by their start only. */
	ck_assert_msg(strncmp(err.text, want, strlen(want)) == 0,
		      "case %d: got \"%s\", want \"%s\"", _i, err.text, want);
	free(want);
	unlink(path);
	free(path);
}
END_TEST

/* The same text given as text: the same message, naming the name given, and no file opened. */
START_TEST(test_config_text_errors_name_the_name_given)
{
	const struct error_case *c = &error_cases[_i];
	struct config_error err;
	struct config *cfg = config_load_text(c->text, strlen(c->text), "mem.ini", &err);
	ck_assert_msg(cfg == NULL, "case %d loaded but should fail with %s", _i, c->error);
	const char *error = c->error;
	if (strstr(c->text, "%include /"))
		error = ":2: %include /nonexistent/other.ini: not followed in a configuration given "
			"as text";
	char *want = xasprintf("mem.ini%s", error);
	ck_assert_msg(strncmp(err.text, want, strlen(want)) == 0,
		      "case %d: got \"%s\", want \"%s\"", _i, err.text, want);
	free(want);
}
END_TEST

START_TEST(test_config_text_loads_like_a_file)
{
	static const char text[] = "[sluice]\nlisten_port = 6611\n[databases]\napp = host=db\n";
	struct config_error err;
	struct config *cfg = config_load_text(text, sizeof(text) - 1, "mem.ini", &err);
	ck_assert_msg(cfg != NULL, "%s", err.text);
	ck_assert_int_eq(cfg->listen_port, 6611);
	ck_assert_str_eq(cfg->path, "mem.ini");
	ck_assert_ptr_nonnull(config_find_database(cfg, "app"));
	config_unref(cfg);
	/* Empty text is an empty file: the defaults. */
	cfg = config_load_text("", 0, "empty.ini", &err);
	ck_assert_msg(cfg != NULL, "%s", err.text);
	config_unref(cfg);
}
END_TEST

START_TEST(test_config_missing_file_is_an_error)
{
	struct config_error err;
	struct config *cfg = config_load("/nonexistent/sluice.ini", &err);
	ck_assert_ptr_null(cfg);
	ck_assert_str_eq(err.text,
			 "/nonexistent/sluice.ini: cannot open: No such file or directory");
}
END_TEST

/* ---- %include ------------------------------------------------------------------- */

START_TEST(test_config_include_reads_the_file_in_place)
{
	/* No section header in the included file: its keys stay in [sluice], as in PgBouncer. */
	char *inc = write_temp("listen_port = 6501\n\n[databases]\nother = host=h2");
	char *text = xasprintf("[sluice]\nmax_client_conn = 7\n  %%include  %s  \n"
			       "app = host=h1\n",
			       inc);
	struct config_error err;
	struct config *cfg = load_text(text, NULL, &err);
	ck_assert_msg(cfg != NULL, "%s", err.text);
	ck_assert_int_eq(cfg->listen_port, 6501);
	ck_assert_int_eq(cfg->max_client_conn, 7);
	/* The included file switched to [databases] and its last line had no newline. */
	ck_assert_str_eq(config_find_database(cfg, "other")->host, "h2");
	ck_assert_str_eq(config_find_database(cfg, "app")->host, "h1");
	config_unref(cfg);
	free(text);
	unlink(inc);
	free(inc);
}
END_TEST

START_TEST(test_config_include_relative_name_is_from_the_working_directory)
{
	char *inc = write_temp("[sluice]\nlisten_port = 6502\n");
	ck_assert_int_eq(chdir("/tmp"), 0);
	char *text = xasprintf("%%include %s\n", inc + strlen("/tmp/"));
	struct config_error err;
	struct config *cfg = load_text(text, NULL, &err);
	ck_assert_msg(cfg != NULL, "%s", err.text);
	ck_assert_int_eq(cfg->listen_port, 6502);
	config_unref(cfg);
	free(text);
	unlink(inc);
	free(inc);
}
END_TEST

START_TEST(test_config_include_errors_name_the_included_file_and_line)
{
	char *inc = write_temp("[sluice]\n\nlisten_port = x\n");
	char *text = xasprintf("[sluice]\n%%include %s\n", inc);
	char *path;
	struct config_error err;
	struct config *cfg = load_text(text, &path, &err);
	ck_assert_ptr_null(cfg);
	char *want = xasprintf("%s:3: listen_port: \"x\" is not an integer", inc);
	ck_assert_str_eq(err.text, want);
	free(want);
	free(text);
	unlink(path);
	free(path);

	/* After the include, the main file's own line numbers go on where they were. */
	text = xasprintf("[sluice]\n%%include %s\n\nlisten_port = y\n", inc);
	write_file_over(inc, "listen_port = 6503\n");
	cfg = load_text(text, &path, &err);
	ck_assert_ptr_null(cfg);
	want = xasprintf("%s:4: listen_port: \"y\" is not an integer", path);
	ck_assert_str_eq(err.text, want);
	free(want);
	free(text);
	unlink(path);
	free(path);
	unlink(inc);
	free(inc);
}
END_TEST

START_TEST(test_config_include_loop_is_an_error)
{
	/* a includes b, b includes a: refused at once, naming the file already being read. */
	char *a = write_temp("");
	char *b = write_temp("");
	char *text_a = xasprintf("[sluice]\n%%include %s\n", b);
	char *text_b = xasprintf("listen_port = 6504\n%%include %s\n", a);
	write_file_over(a, text_a);
	write_file_over(b, text_b);
	struct config_error err;
	struct config *cfg = config_load(a, &err);
	ck_assert_ptr_null(cfg);
	char *want = xasprintf("%s:2: %%include %s: include loop: %s is already being read", b, a,
			       a);
	ck_assert_str_eq(err.text, want);
	free(want);

	/* A file that includes itself. */
	char *self = xasprintf("[sluice]\n%%include %s\n", a);
	write_file_over(a, self);
	cfg = config_load(a, &err);
	ck_assert_ptr_null(cfg);
	ck_assert_msg(strstr(err.text, "include loop") != NULL, "%s", err.text);
	free(self);
	free(text_a);
	free(text_b);
	unlink(a);
	unlink(b);
	free(a);
	free(b);
}
END_TEST

START_TEST(test_config_include_nesting_deeper_than_ten_is_an_error)
{
	/* files[0] includes files[1] ... : ten levels of include are fine, eleven are not. */
	char *files[12];
	for (int i = 0; i < 12; i++)
		files[i] = write_temp("");
	for (int depth = 10; depth <= 11; depth++) {
		for (int i = 0; i < depth; i++) {
			char *t = xasprintf("%s%%include %s\n", i == 0 ? "[sluice]\n" : "",
					    files[i + 1]);
			write_file_over(files[i], t);
			free(t);
		}
		write_file_over(files[depth], "listen_port = 6505\n");
		struct config_error err;
		struct config *cfg = config_load(files[0], &err);
		if (depth == 10) {
			ck_assert_msg(cfg != NULL, "%s", err.text);
			ck_assert_int_eq(cfg->listen_port, 6505);
			config_unref(cfg);
		} else {
			ck_assert_ptr_null(cfg);
			char *want = xasprintf("%s:1: %%include %s: include nesting level too deep "
					       "(more than 10 files)",
					       files[10], files[11]);
			ck_assert_str_eq(err.text, want);
			free(want);
		}
	}
	for (int i = 0; i < 12; i++) {
		unlink(files[i]);
		free(files[i]);
	}
}
END_TEST

/* ---- unimplemented PgBouncer keys ------------------------------------------- */

START_TEST(test_config_unimplemented_pgbouncer_key_warns_but_loads)
{
	char *logpath = write_temp("");
	ck_assert_int_eq(log_setup(LOG_LEVEL_WARNING, LOG_FORMAT_TEXT, logpath, false), 0);

	char *path;
	struct config_error err;
	struct config *cfg = load_text("[pgbouncer]\n"
				       "auth_file = /dev/null\n"
				       "dns_max_ttl = 15\n"
				       "server_round_robin = 1\n"
				       "listen_port = 6500\n"
				       "[databases]\n"
				       "app = host=db target_session_attrs=any\n"
				       "[users]\n"
				       "bob = query_timeout=5 reserve_pool_size=1\n",
				       &path, &err);
	ck_assert_msg(cfg != NULL, "%s", err.text);
	ck_assert_int_eq(cfg->listen_port, 6500);
	ck_assert_uint_eq(cfg->warnings, 3);
	/* [users] timeouts are implemented now: taken, not warned about. */
	ck_assert_int_eq(config_find_user(cfg, "bob")->query_timeout, 5000);
	config_unref(cfg);
	log_shutdown();

	char *log = read_file(logpath);
	const char *expect[] = {
		":3: setting dns_max_ttl is not implemented by sluice yet and is ignored",
		":4: setting server_round_robin is not implemented by sluice yet and is ignored",
		":7: database \"app\": target_session_attrs is not implemented by sluice yet",
	};
	for (size_t i = 0; i < ARRAY_SIZE(expect); i++) {
		char *want = xasprintf("%s%s", path, expect[i]);
		ck_assert_msg(strstr(log, want) != NULL, "log lacks \"%s\":\n%s", want, log);
		free(want);
	}
	free(log);
	unlink(logpath);
	free(logpath);
	unlink(path);
	free(path);
}
END_TEST

/* ---- durations ---------------------------------------------------------------- */

static const struct {
	const char *text;
	int64_t ms; /* -1: must be rejected */
} duration_cases[] = {
	{ "0", 0 },	    { "5", 5000 },	{ "0.5", 500 },
	{ ".25", 250 },	    { "1.0006", 1001 }, { "250ms", 250 },
	{ "3s", 3000 },	    { "2min", 120000 }, { "1h", 3600000 },
	{ "1d", 86400000 }, { "1.5 s", 1500 },	{ "10 MIN", 600000 },
	{ "-1", -1 },	    { "", -1 },		{ "abc", -1 },
	{ "5x", -1 },	    { "inf", -1 },	{ "nan", -1 },
	{ "0x10", -1 },	    { "1e400", -1 },	{ "999999999999", -1 },
	{ "5 5", -1 },
};

START_TEST(test_config_duration_parses_seconds_and_units)
{
	char *text = xasprintf("[sluice]\nserver_idle_timeout = %s\n", duration_cases[_i].text);
	struct config_error err;
	struct config *cfg = load_text(text, NULL, &err);
	free(text);
	if (duration_cases[_i].ms < 0) {
		ck_assert_msg(cfg == NULL, "\"%s\" was accepted", duration_cases[_i].text);
		ck_assert_ptr_nonnull(strstr(err.text, "server_idle_timeout: "));
		return;
	}
	ck_assert_msg(cfg != NULL, "\"%s\": %s", duration_cases[_i].text, err.text);
	ck_assert_int_eq(cfg->server_idle_timeout, duration_cases[_i].ms);
	config_unref(cfg);
}
END_TEST

static const struct {
	const char *text;
	int value; /* -1: rejected */
} bool_cases[] = {
	{ "1", 1 },   { "on", 1 }, { "yes", 1 },   { "true", 1 }, { "TRUE", 1 }, { "0", 0 },
	{ "off", 0 }, { "no", 0 }, { "false", 0 }, { "2", -1 },	  { "", -1 },	 { "y", -1 },
};

START_TEST(test_config_bool_accepts_pgbouncer_spellings)
{
	char *text = xasprintf("[sluice]\nlog_pooler_errors = %s\n", bool_cases[_i].text);
	struct config_error err;
	struct config *cfg = load_text(text, NULL, &err);
	free(text);
	if (bool_cases[_i].value < 0) {
		ck_assert_msg(cfg == NULL, "\"%s\" was accepted", bool_cases[_i].text);
		return;
	}
	ck_assert_msg(cfg != NULL, "%s", err.text);
	ck_assert_int_eq(cfg->log_pooler_errors, bool_cases[_i].value);
	config_unref(cfg);
}
END_TEST

/* ---- [databases] and [users] --------------------------------------------------- */

START_TEST(test_config_databases_parse_connection_strings)
{
	struct config_error err;
	struct config *cfg = load_text(
		"[databases]\n"
		"app = host=db1 port=5433 dbname=appdb user=svc password='it''s' pool_size=5 "
		"min_pool_size=1 reserve_pool_size=2 max_db_connections=9 pool_mode=transaction "
		"server_lifetime=90 connect_query='SELECT 1' client_encoding=UTF8 "
		"datestyle=ISO timezone=UTC application_name=app auth_user=auth\n"
		"plain = \n"
		"quoted = host = 'a b' password='x\\'y\\\\z' user=we\\ ird\n"
		"sock = host=/var/run/postgresql\n",
		NULL, &err);
	ck_assert_msg(cfg == NULL, "doubled quotes are not libpq syntax and must be rejected");
	ck_assert_ptr_nonnull(strstr(err.text, "database \"app\""));

	cfg = load_text(
		"[databases]\n"
		"app = host=db1 port=5433 dbname=appdb user=svc password='s e;cret' pool_size=5 "
		"min_pool_size=1 reserve_pool_size=2 max_db_connections=9 pool_mode=transaction "
		"server_lifetime=90 connect_query='SELECT 1' client_encoding=UTF8 "
		"datestyle=ISO timezone=UTC application_name=app auth_user=auth\n"
		"plain = \n"
		"quoted = host = 'a b' password='x\\'y\\\\z' user=we\\ ird\n"
		"sock = host=/var/run/postgresql\n"
		"\"my-db\"\"x\" = host=q\n",
		NULL, &err);
	ck_assert_msg(cfg != NULL, "%s", err.text);
	ck_assert_str_eq(config_find_database(cfg, "my-db\"x")->dbname, "my-db\"x");

	const struct config_database *db = config_find_database(cfg, "app");
	ck_assert_ptr_nonnull(db);
	ck_assert_str_eq(db->name, "app");
	ck_assert_str_eq(db->host, "db1");
	ck_assert_int_eq(db->port, 5433);
	ck_assert_str_eq(db->dbname, "appdb");
	ck_assert_str_eq(db->user, "svc");
	ck_assert_str_eq(db->password, "s e;cret");
	ck_assert_int_eq(db->pool_size, 5);
	ck_assert_int_eq(db->min_pool_size, 1);
	ck_assert_int_eq(db->reserve_pool_size, 2);
	ck_assert_int_eq(db->max_db_connections, 9);
	ck_assert_int_eq(db->pool_mode, POOL_MODE_TRANSACTION);
	ck_assert_int_eq(db->server_lifetime, 90000);
	ck_assert_str_eq(db->connect_query, "SELECT 1");
	ck_assert_str_eq(db->client_encoding, "UTF8");
	ck_assert_str_eq(db->datestyle, "ISO");
	ck_assert_str_eq(db->timezone, "UTC");
	ck_assert_str_eq(db->application_name, "app");
	ck_assert_int_eq(db->line, 2);

	db = config_find_database(cfg, "plain");
	ck_assert_ptr_nonnull(db);
	ck_assert_ptr_null(db->host);
	ck_assert_int_eq(db->port, 5432);
	ck_assert_str_eq(db->dbname, "plain");
	ck_assert_ptr_null(db->user);
	ck_assert_ptr_null(db->password);
	ck_assert_int_eq(db->pool_size, -1);
	ck_assert_int_eq(db->min_pool_size, -1);
	ck_assert_int_eq(db->reserve_pool_size, -1);
	ck_assert_int_eq(db->max_db_connections, -1);
	ck_assert_int_eq(db->pool_mode, -1);
	ck_assert_int_eq(db->server_lifetime, -1);
	ck_assert_ptr_null(db->connect_query);

	db = config_find_database(cfg, "quoted");
	ck_assert_str_eq(db->host, "a b");
	ck_assert_str_eq(db->password, "x'y\\z");
	ck_assert_str_eq(db->user, "we ird");

	ck_assert_str_eq(config_find_database(cfg, "sock")->host, "/var/run/postgresql");
	ck_assert_ptr_null(config_find_database(cfg, "missing"));
	ck_assert_ptr_null(config_find_database(cfg, "*"));
	config_unref(cfg);
}
END_TEST

START_TEST(test_config_fallback_database_catches_unknown_names)
{
	struct config_error err;
	struct config *cfg =
		load_text("[databases]\napp = host=a\n* = host=fallback port=6000\n", NULL, &err);
	ck_assert_msg(cfg != NULL, "%s", err.text);
	ck_assert_ptr_nonnull(cfg->fallback);
	ck_assert_str_eq(config_find_database(cfg, "app")->host, "a");
	const struct config_database *db = config_find_database(cfg, "other");
	ck_assert_ptr_eq(db, cfg->fallback);
	ck_assert_str_eq(db->host, "fallback");
	ck_assert_int_eq(db->port, 6000);
	/* The fallback connects to whatever database the client asked for. */
	ck_assert_ptr_null(db->dbname);
	config_unref(cfg);
}
END_TEST

START_TEST(test_config_auth_query_settings_global_and_per_database)
{
	struct config_error err;
	struct config *cfg = load_text(
		"[databases]\n"
		"app = host=a auth_user=looker auth_query='SELECT u, p FROM f($1)' auth_dbname=meta\n"
		"meta = host=b\n"
		"[pgbouncer]\nauth_user = global_looker\nauth_query_cache_ttl = 30\n",
		NULL, &err);
	ck_assert_msg(cfg != NULL, "%s", err.text);
	const struct config_database *app = config_find_database(cfg, "app");
	ck_assert_str_eq(app->auth_user, "looker");
	ck_assert_str_eq(app->auth_query, "SELECT u, p FROM f($1)");
	ck_assert_str_eq(app->auth_dbname, "meta");
	ck_assert_ptr_null(config_find_database(cfg, "meta")->auth_user);
	ck_assert_str_eq(cfg->auth_user, "global_looker");
	ck_assert_int_eq(cfg->auth_query_cache_ttl, 30000);
	/* PgBouncer's default query, and no authentication database: the client's own. */
	ck_assert_ptr_nonnull(strstr(cfg->auth_query, "FROM pg_authid WHERE rolname=$1"));
	ck_assert_str_eq(cfg->auth_dbname, "");
	/* A copy (SET, RELOAD) keeps the per-database ones. */
	struct config *copy = config_copy(cfg);
	ck_assert_str_eq(config_find_database(copy, "app")->auth_query, "SELECT u, p FROM f($1)");
	config_unref(copy);
	config_unref(cfg);

	/* Direct TLS to servers: postgres or direct, and direct only where TLS is required. */
	cfg = load_text("[pgbouncer]\nserver_tls_sslnegotiation = direct\nserver_tls_sslmode = "
			"verify-full\n",
		NULL, &err);
	ck_assert_msg(cfg != NULL, "%s", err.text);
	config_unref(cfg);
	ck_assert_ptr_null(load_text("[pgbouncer]\nserver_tls_sslnegotiation = direct\n", NULL, &err));
	ck_assert_msg(strstr(err.text, "needs server_tls_sslmode require") != NULL, "%s", err.text);
	ck_assert_ptr_null(load_text("[pgbouncer]\nserver_tls_sslnegotiation = maybe\n", NULL, &err));
	ck_assert_msg(strstr(err.text, "must be postgres or direct") != NULL, "%s", err.text);

	/* The console's database answers no queries: refused in PgBouncer's words. */
	for (int i = 0; i < 2; i++) {
		char *text = xasprintf("[pgbouncer]\nauth_dbname = %s\n", i ? "sluice" : "pgbouncer");
		ck_assert_ptr_null(load_text(text, NULL, &err));
		ck_assert_msg(strstr(err.text, "cannot use the reserved") != NULL, "%s", err.text);
		free(text);
	}
}
END_TEST

START_TEST(test_config_host_list_pairs_ports_with_hosts)
{
	struct config_error err;
	struct config *cfg = load_text("[databases]\n"
				       "one = host=db\n"
				       "same = host=a,/tmp/sock port=6000\n"
				       "paired = host=a,b,c port=1,2,3 load_balance_hosts=DISABLE\n"
				       "none = dbname=x\n",
				       NULL, &err);
	ck_assert_msg(cfg != NULL, "%s", err.text);
	const struct config_database *db = config_find_database(cfg, "one");
	ck_assert_int_eq(db->n_hosts, 1);
	ck_assert_str_eq(db->hosts[0].host, "db");
	ck_assert_int_eq(db->hosts[0].port, 5432);
	ck_assert_int_eq(db->load_balance_hosts, LOAD_BALANCE_HOSTS_ROUND_ROBIN);

	db = config_find_database(cfg, "same");
	ck_assert_str_eq(db->host, "a,/tmp/sock"); /* as written, for SHOW DATABASES */
	ck_assert_int_eq(db->n_hosts, 2);
	ck_assert_str_eq(db->hosts[0].host, "a");
	ck_assert_str_eq(db->hosts[1].host, "/tmp/sock");
	ck_assert_int_eq(db->hosts[0].port, 6000);
	ck_assert_int_eq(db->hosts[1].port, 6000);

	db = config_find_database(cfg, "paired");
	ck_assert_int_eq(db->n_hosts, 3);
	ck_assert_int_eq(db->port, 1);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(db->hosts[i].host[0], "abc"[i]);
		ck_assert_int_eq(db->hosts[i].port, i + 1);
	}
	ck_assert_int_eq(db->load_balance_hosts, LOAD_BALANCE_HOSTS_DISABLE);

	/* No host: one entry, libpq's default socket directory. */
	db = config_find_database(cfg, "none");
	ck_assert_int_eq(db->n_hosts, 1);
	ck_assert_ptr_null(db->hosts[0].host);

	/* A copy (console SET) has hosts of its own. */
	struct config *copy = config_copy(cfg);
	config_unref(cfg);
	db = config_find_database(copy, "paired");
	ck_assert_str_eq(db->hosts[2].host, "c");
	ck_assert_int_eq(db->hosts[2].port, 3);
	config_unref(copy);
}
END_TEST

START_TEST(test_config_peers_section_names_the_other_processes)
{
	struct config_error err;
	struct config *cfg = load_text("[sluice]\npeer_id = 2\ndefault_pool_size = 7\n"
				       "[peers]\n"
				       "1 = host=/tmp/sluice-1 port=6000 pool_size=3\n"
				       "3 = host=10.0.0.3\n",
				       NULL, &err);
	ck_assert_msg(cfg != NULL, "%s", err.text);
	ck_assert_int_eq(cfg->peer_id, 2);
	const struct config_peer *p1 = config_find_peer(cfg, 1);
	ck_assert_str_eq(p1->host, "/tmp/sluice-1");
	ck_assert_int_eq(p1->port, 6000);
	ck_assert_int_eq(config_peer_pool_size(cfg, p1), 3);
	const struct config_peer *p3 = config_find_peer(cfg, 3);
	ck_assert_str_eq(p3->host, "10.0.0.3");
	ck_assert_int_eq(p3->port, 6432); /* PgBouncer's default for a peer */
	ck_assert_int_eq(config_peer_pool_size(cfg, p3), 7);
	ck_assert_ptr_null(config_find_peer(cfg, 2));
	struct config *copy = config_copy(cfg);
	config_unref(cfg);
	ck_assert_str_eq(config_find_peer(copy, 1)->host, "/tmp/sluice-1");
	config_unref(copy);
}
END_TEST

START_TEST(test_config_users_section_sets_per_user_limits)
{
	struct config_error err;
	struct config *cfg =
		load_text("[users]\n"
			  "alice = pool_mode=transaction pool_size=5 max_user_connections=10\n"
			  "bob =\n",
			  NULL, &err);
	ck_assert_msg(cfg != NULL, "%s", err.text);
	const struct config_user *u = config_find_user(cfg, "alice");
	ck_assert_ptr_nonnull(u);
	ck_assert_int_eq(u->pool_mode, POOL_MODE_TRANSACTION);
	ck_assert_int_eq(u->pool_size, 5);
	ck_assert_int_eq(u->max_user_connections, 10);
	ck_assert_int_eq(u->line, 2);
	u = config_find_user(cfg, "bob");
	ck_assert_ptr_nonnull(u);
	ck_assert_int_eq(u->pool_mode, -1);
	ck_assert_int_eq(u->pool_size, -1);
	ck_assert_int_eq(u->max_user_connections, -1);
	ck_assert_ptr_null(config_find_user(cfg, "carol"));
	config_unref(cfg);
}
END_TEST

/*
 * The timeouts PgBouncer reads per user (and query_wait_timeout per database
 * too), decided as its janitor decides them: a user's query_timeout,
 * idle_transaction_timeout, transaction_timeout and client_idle_timeout win
 * only above 0; query_wait_timeout is user if set (0 included), else
 * database if set, else global.
 */
START_TEST(test_config_timeouts_user_over_database_over_global)
{
	struct config_error err;
	struct config *cfg = load_text(
		"[sluice]\nquery_timeout = 30\nidle_transaction_timeout = 20\n"
		"transaction_timeout = 40\nclient_idle_timeout = 50\nquery_wait_timeout = 60\n"
		"[databases]\n"
		"waitdb = host=db query_wait_timeout=7\n"
		"plain = host=db\n"
		"[users]\n"
		"alice = query_timeout=1 idle_transaction_timeout=2 transaction_timeout=0.5 "
		"client_idle_timeout=250ms query_wait_timeout=3 reserve_pool_size=4\n"
		"zero = query_timeout=0 idle_transaction_timeout=0 transaction_timeout=0 "
		"client_idle_timeout=0 query_wait_timeout=0\n"
		"bob = pool_size=2\n",
		NULL, &err);
	ck_assert_msg(cfg != NULL, "%s", err.text);
	const struct config_user *alice = config_find_user(cfg, "alice");
	const struct config_user *zero = config_find_user(cfg, "zero");
	const struct config_user *bob = config_find_user(cfg, "bob");
	const struct config_database *waitdb = config_find_database(cfg, "waitdb");
	const struct config_database *plain = config_find_database(cfg, "plain");
	ck_assert_int_eq(alice->reserve_pool_size, 4);
	ck_assert_int_eq(bob->reserve_pool_size, -1);

	ck_assert_int_eq(config_query_timeout(cfg, alice), 1000);
	ck_assert_int_eq(config_idle_transaction_timeout(cfg, alice), 2000);
	ck_assert_int_eq(config_transaction_timeout(cfg, alice), 500);
	ck_assert_int_eq(config_client_idle_timeout(cfg, alice), 250);
	/* 0 in [users] means "the global value" for these four... */
	ck_assert_int_eq(config_query_timeout(cfg, zero), 30000);
	ck_assert_int_eq(config_idle_transaction_timeout(cfg, zero), 20000);
	ck_assert_int_eq(config_transaction_timeout(cfg, zero), 40000);
	ck_assert_int_eq(config_client_idle_timeout(cfg, zero), 50000);
	ck_assert_int_eq(config_query_timeout(cfg, bob), 30000);
	ck_assert_int_eq(config_transaction_timeout(cfg, NULL), 40000);

	/* ... but a value for query_wait_timeout: user, then database, then global. */
	ck_assert_int_eq(config_query_wait_timeout(cfg, alice, waitdb), 3000);
	ck_assert_int_eq(config_query_wait_timeout(cfg, zero, waitdb), 0);
	ck_assert_int_eq(config_query_wait_timeout(cfg, bob, waitdb), 7000);
	ck_assert_int_eq(config_query_wait_timeout(cfg, NULL, waitdb), 7000);
	ck_assert_int_eq(config_query_wait_timeout(cfg, bob, plain), 60000);
	ck_assert_int_eq(config_query_wait_timeout(cfg, NULL, NULL), 60000);
	config_unref(cfg);

	/* Bad values are refused, naming the key. */
	cfg = load_text("[users]\nbob = transaction_timeout=soon\n", NULL, &err);
	ck_assert_ptr_null(cfg);
	ck_assert_msg(strstr(err.text, "transaction_timeout") != NULL, "%s", err.text);
	cfg = load_text("[databases]\napp = host=db query_wait_timeout=-1\n", NULL, &err);
	ck_assert_ptr_null(cfg);
	ck_assert_msg(strstr(err.text, "query_wait_timeout") != NULL, "%s", err.text);
	/* Per-database query_timeout is not PgBouncer's: libpq refuses it, as PgBouncer does. */
	cfg = load_text("[databases]\napp = host=db query_timeout=1\n", NULL, &err);
	ck_assert_ptr_null(cfg);
}
END_TEST

/*
 * max_db_client_connections / max_user_client_connections: an entry's value
 * above 0 overrides the global one; unset or 0 takes the global one (as
 * PgBouncer), which 0 makes unlimited.
 */
START_TEST(test_config_client_connection_limits_entry_over_global)
{
	struct config_error err;
	struct config *cfg =
		load_text("[sluice]\nmax_db_client_connections = 7\nmax_user_client_connections = 4\n"
			  "[databases]\n"
			  "own = host=db max_db_client_connections=2\n"
			  "zero = host=db max_db_client_connections=0\n"
			  "plain = host=db\n"
			  "[users]\n"
			  "alice = max_user_client_connections=9\n"
			  "bob = max_user_client_connections=0\n",
			  NULL, &err);
	ck_assert_msg(cfg != NULL, "%s", err.text);
	ck_assert_int_eq(config_db_client_limit(cfg, config_find_database(cfg, "own")), 2);
	ck_assert_int_eq(config_db_client_limit(cfg, config_find_database(cfg, "zero")), 7);
	ck_assert_int_eq(config_db_client_limit(cfg, config_find_database(cfg, "plain")), 7);
	ck_assert_int_eq(config_db_client_limit(cfg, NULL), 7);
	ck_assert_int_eq(config_user_client_limit(cfg, "alice"), 9);
	ck_assert_int_eq(config_user_client_limit(cfg, "bob"), 4);
	ck_assert_int_eq(config_user_client_limit(cfg, "carol"), 4);
	config_unref(cfg);

	/* A negative value is refused, naming the key. */
	cfg = load_text("[databases]\napp = host=db max_db_client_connections=-1\n", NULL, &err);
	ck_assert_ptr_null(cfg);
	ck_assert_msg(strstr(err.text, "max_db_client_connections") != NULL, "%s", err.text);
	cfg = load_text("[users]\nbob = max_user_client_connections=x\n", NULL, &err);
	ck_assert_ptr_null(cfg);
	ck_assert_msg(strstr(err.text, "max_user_client_connections") != NULL, "%s", err.text);
}
END_TEST

/* ---- the environment ------------------------------------------------------------ */

START_TEST(test_config_env_overrides_file)
{
	setenv("SLUICE_LISTEN_PORT", "7000", 1);
	setenv("SLUICE_POOL_MODE", "transaction", 1);
	setenv("SLUICE_SERVER_LIFETIME", "1.5", 1);
	struct config_error err;
	struct config *cfg = load_text(
		"[sluice]\nlisten_port = 6000\npool_mode = session\nverbose = 1\n", NULL, &err);
	ck_assert_msg(cfg != NULL, "%s", err.text);
	ck_assert_int_eq(cfg->listen_port, 7000);
	ck_assert_int_eq(cfg->pool_mode, POOL_MODE_TRANSACTION);
	ck_assert_int_eq(cfg->server_lifetime, 1500);
	ck_assert_int_eq(cfg->verbose, 1);
	config_unref(cfg);
}
END_TEST

START_TEST(test_config_env_bad_value_names_the_variable)
{
	setenv("SLUICE_LISTEN_PORT", "seventy", 1);
	struct config_error err;
	struct config *cfg = config_load(NULL, &err);
	ck_assert_ptr_null(cfg);
	ck_assert_str_eq(err.text, "SLUICE_LISTEN_PORT: \"seventy\" is not an integer");

	setenv("SLUICE_LISTEN_PORT", "7000", 1);
	setenv("SLUICE_AUTH_TYPE", "pam", 1);
	cfg = config_load(NULL, &err);
	ck_assert_ptr_null(cfg);
	ck_assert_str_eq(err.text,
			 "SLUICE_AUTH_TYPE: auth_type = pam is not supported by sluice yet");
}
END_TEST

START_TEST(test_config_load_without_file_uses_env)
{
	setenv("SLUICE_LISTEN_ADDR", "0.0.0.0", 1);
	setenv("SLUICE_AUTH_TYPE", "trust", 1);
	setenv("SLUICE_DEFAULT_POOL_SIZE", "4", 1);
	setenv("SLUICE_DATABASES",
	       "app = host=db port=5433 password='a;b'; other=host=db2\n"
	       "  * = host=db ;;",
	       1);
	struct config_error err;
	struct config *cfg = config_load(NULL, &err);
	ck_assert_msg(cfg != NULL, "%s", err.text);
	ck_assert_ptr_null(cfg->path);
	ck_assert_str_eq(cfg->listen_addr, "0.0.0.0");
	ck_assert_int_eq(cfg->auth_type, AUTH_TYPE_TRUST);
	ck_assert_int_eq(cfg->default_pool_size, 4);
	const struct config_database *db = config_find_database(cfg, "app");
	ck_assert_ptr_nonnull(db);
	ck_assert_str_eq(db->host, "db");
	ck_assert_int_eq(db->port, 5433);
	ck_assert_str_eq(db->password, "a;b");
	ck_assert_str_eq(config_find_database(cfg, "other")->host, "db2");
	ck_assert_ptr_nonnull(cfg->fallback);
	ck_assert_ptr_eq(config_find_database(cfg, "nope"), cfg->fallback);
	ck_assert_uint_eq(cfg->warnings, 0);
	config_unref(cfg);
}
END_TEST

START_TEST(test_config_sluice_databases_replaces_file_entries)
{
	setenv("SLUICE_DATABASES", "app = host=fromenv", 1);
	struct config_error err;
	struct config *cfg =
		load_text("[databases]\napp = host=fromfile\nkeep = host=k\n", NULL, &err);
	ck_assert_msg(cfg != NULL, "%s", err.text);
	ck_assert_str_eq(config_find_database(cfg, "app")->host, "fromenv");
	ck_assert_str_eq(config_find_database(cfg, "keep")->host, "k");
	config_unref(cfg);
}
END_TEST

static const struct error_case env_database_errors[] = {
	{ "app = host=a; app = host=b",
	  "SLUICE_DATABASES:2: database \"app\" is already defined in entry 1" },
	{ "app = host=a; nonsense", "SLUICE_DATABASES:2: expected \"name = connection string\"" },
	{ " = host=a", "SLUICE_DATABASES:1: missing database name" },
	{ "app = host=a;x = port=no",
	  "SLUICE_DATABASES:2: database \"x\": port: \"no\" is not an integer" },
	{ "app = host='a;b", "SLUICE_DATABASES:1: database \"app\": unterminated quoted value" },
};

START_TEST(test_config_sluice_databases_errors_name_the_entry)
{
	setenv("SLUICE_DATABASES", env_database_errors[_i].text, 1);
	struct config_error err;
	struct config *cfg = config_load(NULL, &err);
	ck_assert_ptr_null(cfg);
	const char *want = env_database_errors[_i].error;
	ck_assert_msg(strncmp(err.text, want, strlen(want)) == 0, "got \"%s\", want \"%s\"",
		      err.text, want);
}
END_TEST

/* ---- the table: rendering and documentation ------------------------------------ */

START_TEST(test_config_setting_value_renders_as_show_config)
{
	struct config_error err;
	struct config *cfg =
		load_text("[sluice]\nreserve_pool_timeout = 1.25\nunix_socket_mode = 0750\n"
			  "auth_type = password\n",
			  NULL, &err);
	ck_assert_msg(cfg != NULL, "%s", err.text);
	const struct {
		const char *name, *value;
	} want[] = {
		{ "listen_port", "6432" },
		{ "unix_socket_mode", "0750" },
		{ "reserve_pool_timeout", "1.25" },
		{ "server_lifetime", "3600" },
		{ "auth_type", "plain" },
		{ "pool_mode", "session" },
		{ "log_connections", "1" },
		{ "server_reset_query_always", "0" },
		{ "session_pinning", "pin" },
		{ "io_uring", "off" },
		{ "max_packet_size", "2147483647" },
		{ "log_format", "text" },
		{ "listen_addr", "127.0.0.1" },
	};
	size_t found = 0;
	for (size_t i = 0; i < config_setting_count(); i++) {
		const struct config_setting_info *info = config_setting_at(i);
		ck_assert_ptr_nonnull(info->doc);
		ck_assert_int_gt(strlen(info->doc), 10);
		for (size_t j = 0; j < ARRAY_SIZE(want); j++) {
			if (strcmp(info->name, want[j].name) != 0)
				continue;
			char buf[64];
			config_setting_value(cfg, i, buf, sizeof(buf));
			ck_assert_str_eq(buf, want[j].value);
			found++;
		}
	}
	ck_assert_uint_eq(found, ARRAY_SIZE(want));
	ck_assert_ptr_null(config_setting_at(config_setting_count()));
	config_unref(cfg);
}
END_TEST

/*
 * Guideline 14: a setting that is not documented fails the build. doc/config.md
 * must have a "### name" heading for it and etc/sluice.ini a "name =" line
 * (commented out or not).
 */
START_TEST(test_config_every_setting_is_documented)
{
	char *doc = read_file(SRCDIR "/doc/config.md");
	char *ini = read_file(SRCDIR "/etc/sluice.ini");
	for (size_t i = 0; i < config_setting_count(); i++) {
		const char *name = config_setting_at(i)->name;
		char *heading = xasprintf("\n### %s\n", name);
		ck_assert_msg(strstr(doc, heading) != NULL,
			      "doc/config.md has no \"### %s\" section", name);
		free(heading);
		char *line = xasprintf("\n;%s =", name);
		char *line2 = xasprintf("\n%s =", name);
		ck_assert_msg(strstr(ini, line) || strstr(ini, line2),
			      "etc/sluice.ini has no \"%s =\" line", name);
		free(line);
		free(line2);
	}
	/* And the list of what is accepted but not implemented is the table's. */
	const char *name;
	for (size_t i = 0; (name = config_unimplemented_at(i)) != NULL; i++) {
		char *quoted = xasprintf("`%s`", name);
		ck_assert_msg(strstr(doc, quoted) != NULL, "doc/config.md does not list %s", name);
		free(quoted);
	}
	free(doc);
	free(ini);
}
END_TEST

START_TEST(test_config_sample_ini_loads)
{
	setenv("SLUICE_AUTH_FILE", SRCDIR "/etc/userlist.txt", 1);
	struct config_error err;
	struct config *cfg = config_load(SRCDIR "/etc/sluice.ini", &err);
	ck_assert_msg(cfg != NULL, "%s", err.text);
	ck_assert_uint_eq(cfg->warnings, 0);
	ck_assert_ptr_nonnull(cfg->databases);
	ck_assert_ptr_nonnull(cfg->users);
	config_unref(cfg);
}
END_TEST

/* ---- small helpers ------------------------------------------------------------- */

START_TEST(test_config_list_contains_trims_and_ignores_case)
{
	ck_assert(config_list_contains("a, Search_Path ,c", "search_path"));
	ck_assert(config_list_contains("extra_float_digits", "extra_float_digits"));
	ck_assert(config_list_contains(" x ,y", "y"));
	ck_assert(!config_list_contains("search_path_x", "search_path"));
	ck_assert(!config_list_contains("", "a"));
	ck_assert(!config_list_contains("a,,b", ""));
	ck_assert(!config_list_contains(NULL, "a"));
}
END_TEST

START_TEST(test_config_enum_names_round_trip)
{
	for (int m = POOL_MODE_SESSION; m <= POOL_MODE_STATEMENT; m++)
		ck_assert_int_eq(config_parse_pool_mode(config_pool_mode_name(m)), m);
	ck_assert_int_eq(config_parse_pool_mode("Transaction"), POOL_MODE_TRANSACTION);
	ck_assert_int_eq(config_parse_pool_mode("tx"), -1);
	ck_assert_str_eq(config_auth_type_name(AUTH_TYPE_SCRAM_SHA_256), "scram-sha-256");
	ck_assert_str_eq(config_auth_type_name(AUTH_TYPE_ANY), "any");
}
END_TEST

START_TEST(test_config_copy_is_deep_and_apply_changes_only_the_copy)
{
	struct config_error err;
	struct config *cfg = load_text("[sluice]\n"
				       "listen_port = 7001\n"
				       "admin_users = alice, bob\n"
				       "[databases]\n"
				       "app = host=db1 port=5433 dbname=real pool_size=7\n"
				       "* = host=fallback\n"
				       "[users]\n"
				       "carol = pool_mode=statement\n",
				       NULL, &err);
	ck_assert_msg(cfg != NULL, "%s", err.text);
	struct config *copy = config_copy(cfg);
	ck_assert_int_eq(config_apply(copy, "default_pool_size", "33", &err), 0);
	ck_assert_int_ne(config_apply(copy, "listen_port", "7002", &err), 0);
	ck_assert_msg(strstr(err.text, "restart") != NULL, "%s", err.text);
	ck_assert_int_ne(config_apply(copy, "no_such_key", "1", &err), 0);
	ck_assert_int_eq(cfg->default_pool_size, 20);
	config_unref(cfg); /* the copy must not share anything with it */
	ck_assert_int_eq(copy->default_pool_size, 33);
	ck_assert_int_eq(copy->listen_port, 7001);
	ck_assert_str_eq(copy->admin_users, "alice, bob");
	const struct config_database *db = config_find_database(copy, "app");
	ck_assert_ptr_nonnull(db);
	ck_assert_str_eq(db->host, "db1");
	ck_assert_int_eq(db->port, 5433);
	ck_assert_str_eq(db->dbname, "real");
	ck_assert_int_eq(db->pool_size, 7);
	db = config_find_database(copy, "other");
	ck_assert_ptr_nonnull(db);
	ck_assert_str_eq(db->host, "fallback");
	const struct config_user *u = config_find_user(copy, "carol");
	ck_assert_ptr_nonnull(u);
	ck_assert_int_eq(u->pool_mode, POOL_MODE_STATEMENT);
	config_unref(copy);
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_config_defaults_are_pgbouncer_defaults);
	tcase_add_test(tc, test_config_good_file_sets_every_value_type);
	tcase_add_test(tc, test_config_pgbouncer_section_is_an_alias);
	tcase_add_test(tc, test_config_later_key_wins);
	tcase_add_test(tc, test_config_long_line_keeps_line_numbers);
	tcase_add_loop_test(tc, test_config_error_names_file_and_line, 0, ARRAY_SIZE(error_cases));
	tcase_add_loop_test(tc, test_config_text_errors_name_the_name_given, 0,
			    ARRAY_SIZE(error_cases));
	tcase_add_test(tc, test_config_text_loads_like_a_file);
	tcase_add_test(tc, test_config_missing_file_is_an_error);
	tcase_add_test(tc, test_config_include_reads_the_file_in_place);
	tcase_add_test(tc, test_config_include_relative_name_is_from_the_working_directory);
	tcase_add_test(tc, test_config_include_errors_name_the_included_file_and_line);
	tcase_add_test(tc, test_config_include_loop_is_an_error);
	tcase_add_test(tc, test_config_include_nesting_deeper_than_ten_is_an_error);
	tcase_add_test(tc, test_config_unimplemented_pgbouncer_key_warns_but_loads);
	tcase_add_loop_test(tc, test_config_duration_parses_seconds_and_units, 0,
			    ARRAY_SIZE(duration_cases));
	tcase_add_loop_test(tc, test_config_bool_accepts_pgbouncer_spellings, 0,
			    ARRAY_SIZE(bool_cases));
	tcase_add_test(tc, test_config_databases_parse_connection_strings);
	tcase_add_test(tc, test_config_fallback_database_catches_unknown_names);
	tcase_add_test(tc, test_config_auth_query_settings_global_and_per_database);
	tcase_add_test(tc, test_config_host_list_pairs_ports_with_hosts);
	tcase_add_test(tc, test_config_peers_section_names_the_other_processes);
	tcase_add_test(tc, test_config_users_section_sets_per_user_limits);
	tcase_add_test(tc, test_config_client_connection_limits_entry_over_global);
	tcase_add_test(tc, test_config_timeouts_user_over_database_over_global);
	tcase_add_test(tc, test_config_env_overrides_file);
	tcase_add_test(tc, test_config_env_bad_value_names_the_variable);
	tcase_add_test(tc, test_config_load_without_file_uses_env);
	tcase_add_test(tc, test_config_sluice_databases_replaces_file_entries);
	tcase_add_loop_test(tc, test_config_sluice_databases_errors_name_the_entry, 0,
			    ARRAY_SIZE(env_database_errors));
	tcase_add_test(tc, test_config_setting_value_renders_as_show_config);
	tcase_add_test(tc, test_config_copy_is_deep_and_apply_changes_only_the_copy);
	tcase_add_test(tc, test_config_every_setting_is_documented);
	tcase_add_test(tc, test_config_sample_ini_loads);
	tcase_add_test(tc, test_config_list_contains_trims_and_ignores_case);
	tcase_add_test(tc, test_config_enum_names_round_trip);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(config_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
