/*
 * check_hba.c - unit tests of hba.c: one pg_hba.conf text, a table of
 * connections with the method (and rule line) each must get, and a table of
 * broken lines with the error each must give. Also @files relative to the
 * hba file, and keywords quoted into plain names.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/hba.h"

static const char hba_text[] =
	"# sluice test rules\n"
	"# comments and blank lines are skipped\n"
	"\n"
	"local  all        postgres                 peer\n"                  /* 4 */
	"local  sameuser   all                      trust\n"                 /* 5 */
	"local  replication all                     reject\n"                /* 6 */
	"hostssl app       certuser  0.0.0.0/0      cert\n"                  /* 7 */
	"hostnossl app     certuser  all            reject\n"                /* 8 */
	"host   \"all\"    bob       10.0.0.0/8     password\n"              /* 9: a database named all */
	"host   app,shop   alice,bob 10.1.0.0 255.255.0.0 scram-sha-256\n"   /* 10 */
	"host   all        all       192.168.1.7/32 md5  # trailing comment\n" /* 11 */
	"host   all        all       2001:db8::/32  md5\n"                   /* 12 */
	"host   all        all       ::1/128        trust\n"                 /* 13 */
	"host   all        mallory   all            reject\n"                /* 14 */
	"host   all        all       all \\\n"                                /* 15, joined */
	"       scram-sha-256 clientcert=verify-ca\n";                       /* options ignored */

struct conn_case {
	const char *what;
	bool unix_socket, tls, replication;
	const char *addr; /* NULL for a unix socket */
	const char *database, *user;
	enum hba_method want;
	int line;
};

static const struct conn_case conn_cases[] = {
	{ "local postgres", true, false, false, NULL, "app", "postgres", HBA_PEER, 4 },
	{ "local sameuser", true, false, false, NULL, "bob", "bob", HBA_TRUST, 5 },
	{ "local other", true, false, false, NULL, "app", "bob", HBA_NO_MATCH, 0 },
	{ "local replication", true, false, true, NULL, "app", "bob", HBA_REJECT, 6 },
	{ "replication is not sameuser", true, false, true, NULL, "bob", "bob", HBA_REJECT, 6 },
	{ "cert over TLS", false, true, false, "203.0.113.9", "app", "certuser", HBA_CERT, 7 },
	{ "cert user without TLS", false, false, false, "203.0.113.9", "app", "certuser",
		HBA_REJECT, 8 },
	{ "quoted all is a name", false, false, false, "10.9.9.9", "all", "bob", HBA_PASSWORD, 9 },
	{ "quoted all matches no other", false, false, false, "10.9.9.9", "app", "bob",
		HBA_SCRAM_SHA_256, 15 },
	{ "list and mask", false, false, false, "10.1.2.3", "shop", "alice", HBA_SCRAM_SHA_256, 10 },
	{ "outside the mask", false, false, false, "10.2.2.3", "shop", "alice", HBA_SCRAM_SHA_256,
		15 },
	{ "one host", false, false, false, "192.168.1.7", "x", "y", HBA_MD5, 11 },
	{ "its neighbour", false, false, false, "192.168.1.8", "x", "y", HBA_SCRAM_SHA_256, 15 },
	{ "IPv6 prefix", false, false, false, "2001:db8:1::5", "x", "y", HBA_MD5, 12 },
	{ "IPv6 loopback", false, false, false, "::1", "x", "y", HBA_TRUST, 13 },
	{ "IPv4-mapped matches IPv4 rules", false, false, false, "::ffff:192.168.1.7", "x", "y",
		HBA_MD5, 11 },
	{ "a reject line", false, true, false, "198.51.100.1", "x", "mallory", HBA_REJECT, 14 },
	{ "the catch-all", false, true, false, "198.51.100.1", "x", "y", HBA_SCRAM_SHA_256, 15 },
};

static void to_sockaddr(const char *text, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, text, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		return;
	}
	ck_assert_int_eq(inet_pton(AF_INET6, text, &a6->sin6_addr), 1);
	a6->sin6_family = AF_INET6;
}

START_TEST(test_hba_first_matching_rule_decides)
{
	const struct conn_case *cc = &conn_cases[_i];
	char err[256];
	struct hba *h = hba_parse(hba_text, "/etc/sluice/hba.conf", err, sizeof(err));
	ck_assert_msg(h != NULL, "%s", err);
	ck_assert_int_eq(hba_rule_count(h), 12);
	struct sockaddr_storage ss;
	if (cc->addr)
		to_sockaddr(cc->addr, &ss);
	struct hba_conn c = { cc->unix_socket, cc->tls, cc->replication,
		cc->addr ? (struct sockaddr *)&ss : NULL, cc->database, cc->user };
	int line = -1;
	enum hba_method m = hba_match(h, &c, &line, NULL);
	ck_assert_msg(m == cc->want && line == cc->line, "%s: %s at line %d, want %s at line %d",
		cc->what, hba_method_name(m), line, hba_method_name(cc->want), cc->line);
	hba_unref(h);
}
END_TEST

static const struct bad_case {
	const char *text;
	const char *error;
} bad_cases[] = {
	{ "hostx all all all md5\n", "hba.conf:1: invalid connection type \"hostx\"" },
	{ "host all all\n", "hba.conf:1: end of line before the authentication method" },
	{ "host all all 10.0.0.0 md5\n", "hba.conf:1: address \"10.0.0.0\" needs a /prefix or a mask" },
	{ "host all all 10.0.0.0 255.0.x.0 md5\n", "hba.conf:1: invalid IP mask \"255.0.x.0\"" },
	{ "host all all 10.0.0.0/33 md5\n", "hba.conf:1: invalid CIDR prefix in \"10.0.0.0/33\"" },
	{ "host all all db.example.com/32 md5\n",
		"hba.conf:1: invalid IP address \"db.example.com\" (host names are not supported)" },
	{ "\n\nlocal all all ident\n", "hba.conf:3: unsupported authentication method \"ident\"" },
	{ "host all all all peer\n", "hba.conf:1: peer authentication is only for local connections" },
	{ "local all all cert\n", "hba.conf:1: cert authentication is only for hostssl connections" },
	{ "local \"all all trust\n", "hba.conf:1: unterminated quote" },
	{ "local @nonexistent all trust\n", "hba.conf:1: cannot read /nowhere/nonexistent" },
};

START_TEST(test_hba_broken_lines_name_file_and_line)
{
	const struct bad_case *bc = &bad_cases[_i];
	char err[256] = "";
	struct hba *h = hba_parse(bc->text, "/nowhere/hba.conf", err, sizeof(err));
	ck_assert_msg(h == NULL, "accepted: %s", bc->text);
	ck_assert_msg(strstr(err, bc->error) != NULL, "%s: got \"%s\"", bc->text, err);
}
END_TEST

/* @file names are read relative to the hba file, and a name in them is never a keyword. */
START_TEST(test_hba_at_files_are_read_relative_to_the_hba_file)
{
	char dir[] = "/tmp/check_hba.XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	char path[256], users[256];
	snprintf(path, sizeof(path), "%s/hba.conf", dir);
	snprintf(users, sizeof(users), "%s/admins.txt", dir);
	FILE *f = fopen(users, "w");
	fputs("# the admins\nann, ben\nall\n", f);
	fclose(f);
	f = fopen(path, "w");
	fputs("local all @admins.txt trust\nlocal all all reject\n", f);
	fclose(f);
	char err[256];
	struct hba *h = hba_load(path, NULL, err, sizeof(err));
	ck_assert_msg(h != NULL, "%s", err);
	int line;
	struct hba_conn c = { true, false, false, NULL, "app", "ben" };
	ck_assert_int_eq(hba_match(h, &c, &line, NULL), HBA_TRUST);
	c.user = "carl";
	ck_assert_int_eq(hba_match(h, &c, &line, NULL), HBA_REJECT);
	c.user = "all"; /* a user literally named all, from the file */
	ck_assert_int_eq(hba_match(h, &c, &line, NULL), HBA_TRUST);
	hba_unref(h);
	unlink(users);
	unlink(path);
	rmdir(dir);
}
END_TEST

/* Lists with blanks beside their commas, as PgBouncer's own test rules write them. */
START_TEST(test_hba_lists_may_have_blanks_around_commas)
{
	char err[256];
	struct hba *h = hba_parse("host tmp1,all user1,user2 , user3  16.0.0.0/8 md5\n"
				  "host all u1 ,u2,  u3 17.0.0.0/8 trust\n",
		"hba.conf", err, sizeof(err));
	ck_assert_msg(h != NULL, "%s", err);
	struct sockaddr_storage ss;
	to_sockaddr("16.0.0.1", &ss);
	struct hba_conn c = { false, false, false, (struct sockaddr *)&ss, "db", "user3" };
	int line;
	ck_assert_int_eq(hba_match(h, &c, &line, NULL), HBA_MD5);
	c.user = "user4";
	ck_assert_int_eq(hba_match(h, &c, &line, NULL), HBA_NO_MATCH);
	to_sockaddr("17.0.0.1", &ss);
	c.user = "u2";
	ck_assert_int_eq(hba_match(h, &c, &line, NULL), HBA_TRUST);
	c.user = "u3";
	ck_assert_int_eq(hba_match(h, &c, &line, NULL), HBA_TRUST);
	hba_unref(h);
}
END_TEST

static const char ident_rules[] = "hostssl app all 0.0.0.0/0 cert map=certs\n"
				 "hostssl all all 0.0.0.0/0 cert clientcert=verify-full map=open\n"
				 "local all all peer map=osusers\n";
static const char ident_text[] = "# MAP  SYSTEM-USER  USER\n"
				 "certs  pgbouncer.acme.org someuser\n"
				 "certs  pgbouncer.acme.org \"anotheruser\"\n"
				 "open   \"bouncer\"          all\n"
				 "osusers root postgres\n";

START_TEST(test_hba_ident_maps)
{
	char err[256];
	struct hba *h = hba_parse(ident_rules, "hba.conf", err, sizeof(err));
	ck_assert_msg(h != NULL, "%s", err);
	/* Before the ident file is read, every map= names an unknown map. */
	ck_assert_str_eq(hba_unknown_map(h), "certs");
	ck_assert_int_eq(hba_parse_ident(h, ident_text, "ident.conf", err, sizeof(err)), 0);
	ck_assert_ptr_null(hba_unknown_map(h));

	struct sockaddr_storage ss;
	to_sockaddr("203.0.113.5", &ss);
	struct hba_conn c = { false, true, false, (struct sockaddr *)&ss, "app", "x" };
	int line;
	const char *map = "unset";
	ck_assert_int_eq(hba_match(h, &c, &line, &map), HBA_CERT);
	ck_assert_str_eq(map, "certs");
	c.database = "other";
	ck_assert_int_eq(hba_match(h, &c, &line, &map), HBA_CERT);
	ck_assert_str_eq(map, "open");
	struct hba_conn u = { true, false, false, NULL, "app", "postgres" };
	ck_assert_int_eq(hba_match(h, &u, &line, &map), HBA_PEER);
	ck_assert_str_eq(map, "osusers");

	static const struct {
		const char *map, *system_user, *user;
		bool allowed;
	} cases[] = {
		{ "certs", "pgbouncer.acme.org", "someuser", true },
		{ "certs", "pgbouncer.acme.org", "anotheruser", true },
		{ "certs", "pgbouncer.acme.org", "bouncer", false },
		{ "certs", "bouncer", "someuser", false },
		{ "open", "bouncer", "anyone", true },
		{ "open", "pgbouncer.acme.org", "anyone", false },
		{ "osusers", "root", "postgres", true },
		{ "osusers", "root", "someuser", false },
		{ "nosuchmap", "root", "postgres", false },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		ck_assert_msg(hba_ident_allows(h, cases[i].map, cases[i].system_user,
				      cases[i].user) == cases[i].allowed,
			"%s %s %s", cases[i].map, cases[i].system_user, cases[i].user);
	hba_unref(h);

	/* What PgBouncer's subset leaves out is an error, not a name. */
	static const struct {
		const char *text, *error;
	} bad[] = {
		{ "m /^(.*)$ \\1\n", "ident.conf:1: regular expressions are not supported" },
		{ "m root +admins\n", "ident.conf:1: +group names are not supported" },
		{ "\nm root\n", "ident.conf:2: expected map name, system user name and user name" },
		{ "include other.conf\n", "ident.conf:1: expected map name" },
		{ "m a,b c\n", "ident.conf:1: expected map name" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		h = hba_parse("", "hba.conf", err, sizeof(err));
		ck_assert_int_eq(hba_parse_ident(h, bad[i].text, "ident.conf", err, sizeof(err)), -1);
		ck_assert_msg(strstr(err, bad[i].error) != NULL, "%s: %s", bad[i].text, err);
		hba_unref(h);
	}
	/* map= belongs to cert and peer rules. */
	ck_assert_ptr_null(hba_parse("host all all all md5 map=x\n", "hba.conf", err, sizeof(err)));
	ck_assert_msg(strstr(err, "map=") != NULL, "%s", err);
}
END_TEST

static Suite *hba_suite(void)
{
	Suite *s = suite_create("hba");
	TCase *tc = tcase_create("hba");
	tcase_add_loop_test(tc, test_hba_first_matching_rule_decides, 0,
		(int)(sizeof(conn_cases) / sizeof(conn_cases[0])));
	tcase_add_loop_test(tc, test_hba_broken_lines_name_file_and_line, 0,
		(int)(sizeof(bad_cases) / sizeof(bad_cases[0])));
	tcase_add_test(tc, test_hba_at_files_are_read_relative_to_the_hba_file);
	tcase_add_test(tc, test_hba_lists_may_have_blanks_around_commas);
	tcase_add_test(tc, test_hba_ident_maps);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(hba_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
