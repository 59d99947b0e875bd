/*
 * check_tls.c - proves TLS on both sides of sluice with real clients and a
 * real PostgreSQL started with ssl = on: libpq's sslmodes against
 * client_tls_sslmode, certificates checked both ways (verify-full by host
 * name, client certificates under verify-ca), server_tls_sslmode with the
 * server's certificate verified, data through TLS on both sides compared
 * byte for byte with PostgreSQL's own answer, and the hostile cases:
 * plaintext sent after 'S', handshake garbage, a truncated handshake and a
 * wrong CA, each failing only its own connection.
 *
 * The certificates are the harness's (harness_tls_dir()).
 */
#include "harness.h"

#include <openssl/ssl.h>

#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define USERLIST "\"md5user\" \"md5userpw\"\n"
#define APP "dbname=app user=md5user password=md5userpw"

/* [sluice] lines for TLS with clients at mode, with the harness's certificate. */
static char *client_tls(const char *mode)
{
	const char *d = harness_tls_dir();
	return xasprintf("auth_type = md5\nadmin_users = md5user\n"
			 "client_tls_sslmode = %s\nclient_tls_key_file = %s/server.key\n"
			 "client_tls_cert_file = %s/server.crt\nclient_tls_ca_file = %s/ca.crt\n",
		mode, d, d, d);
}

static struct harness_sluice *start_client_tls(const char *mode, const char *more)
{
	char *base = client_tls(mode);
	char *ini = xasprintf("%s%s", base, more ? more : "");
	struct harness_sluice *s = harness_sluice_start(ini, NULL, USERLIST);
	free(ini);
	free(base);
	return s;
}

/* Whether the PostgreSQL session behind conn runs over TLS (pg_stat_ssl). */
static bool server_side_is_tls(PGconn *conn)
{
	char *v = harness_query_text(conn, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
	bool tls = v && strcmp(v, "t") == 0;
	free(v);
	return tls;
}

/* The tls column of the console's SHOW CLIENTS row of user, or SHOW SERVERS'. */
static char *tls_column(const struct harness_sluice *s, const char *show, const char *database)
{
	PGconn *console = harness_connect(s, "dbname=pgbouncer user=md5user password=md5userpw");
	char *v = harness_show_value(console, show, "database", database, "tls");
	PQfinish(console);
	return v;
}

/* ---- clients ------------------------------------------------------------------------ */

START_TEST(test_client_require_takes_tls_and_refuses_plaintext_over_tcp)
{
	struct harness_sluice *s = start_client_tls("require", NULL);
	PGconn *c = harness_connect(s, APP " sslmode=require");
	ck_assert_int_eq(PQsslInUse(c), 1);
	harness_expect_answer(c, "SELECT 40 + 2", "42");
	char *tls = tls_column(s, "SHOW CLIENTS", "app");
	ck_assert_msg(tls && strncmp(tls, "TLSv1.", 6) == 0 && strchr(tls, '/'), "tls column: %s",
		tls ? tls : "(null)");
	free(tls);
	PQfinish(c);

	char *err = harness_connect_error(s, APP " sslmode=disable");
	ck_assert_msg(strstr(err, "SSL required"), "%s", err);
	free(err);

	/* A unix socket is local: it needs no TLS, as with PgBouncer. */
	char *sock = xasprintf("host=%s " APP " sslmode=disable", s->dir);
	c = harness_connect(s, sock);
	harness_expect_answer(c, "SELECT 1", "1");
	PQfinish(c);
	free(sock);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_client_prefer_serves_tls_and_plaintext_alike)
{
	struct harness_sluice *s = start_client_tls("prefer", NULL);
	PGconn *tls = harness_connect(s, APP " sslmode=require");
	PGconn *plain = harness_connect(s, APP " sslmode=disable");
	ck_assert_int_eq(PQsslInUse(tls), 1);
	ck_assert_int_eq(PQsslInUse(plain), 0);
	harness_expect_answer(tls, "SELECT 'a'", "a");
	harness_expect_answer(plain, "SELECT 'b'", "b");
	PQfinish(tls);
	PQfinish(plain);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_client_verify_full_checks_sluice_certificate_and_name)
{
	const char *d = harness_tls_dir();
	int http = harness_free_port();
	char *metrics = xasprintf("metrics_port = %d\n", http);
	struct harness_sluice *s = start_client_tls("require", metrics);
	free(metrics);
	char *ok = xasprintf("host=localhost " APP " sslmode=verify-full sslrootcert=%s/ca.crt", d);
	PGconn *c = harness_connect(s, ok);
	harness_expect_answer(c, "SELECT 1", "1");
	PQfinish(c);
	free(ok);

	char *wrong_ca =
		xasprintf("host=localhost " APP " sslmode=verify-full sslrootcert=%s/other-ca.crt", d);
	char *err = harness_connect_error(s, wrong_ca);
	ck_assert_msg(strstr(err, "certificate verify failed"), "%s", err);
	free(err);
	free(wrong_ca);
	/* sluice saw a failed handshake and goes on serving. */
	ck_assert(harness_sluice_log_wait(s, "TLS handshake failed", 3000));
	c = harness_connect(s, APP " sslmode=require");
	harness_expect_answer(c, "SELECT 1", "1");
	PQfinish(c);
	/* Three handshakes with clients, one of which failed. */
	char *body = harness_http_get(http, "/metrics");
	ck_assert_msg(strstr(body, "sluice_tls_handshakes_total{side=\"client\"} 3\n") &&
			      strstr(body, "sluice_tls_handshake_failures_total{side=\"client\"} 1\n"),
		"%s", body);
	free(body);
	harness_sluice_stop_ok(s);
}
END_TEST

START_TEST(test_client_verify_ca_requires_a_client_certificate)
{
	const char *d = harness_tls_dir();
	struct harness_sluice *s = start_client_tls("verify-ca", NULL);
	char *err = harness_connect_error(s, APP " sslmode=require");
	ck_assert_msg(strstr(err, "certificate") || strstr(err, "SSL"), "%s", err);
	free(err);
	char *with_cert = xasprintf(APP " sslmode=require sslcert=%s/client.crt sslkey=%s/client.key", d, d);
	PGconn *c = harness_connect(s, with_cert);
	harness_expect_answer(c, "SELECT current_user", "md5user");
	PQfinish(c);
	free(with_cert);
	harness_sluice_stop_ok(s);
}
END_TEST

/* Writes text to path, replacing it. */
static void put_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	ck_assert_msg(f != NULL, "%s", path);
	fputs(text, f);
	fclose(f);
}

static void copy_file(const char *from, const char *to)
{
	char *text = harness_read_file(from);
	ck_assert_msg(text != NULL, "%s", from);
	put_file(to, text);
	free(text);
}

/* verify-full against ca's certificate, as libpq sees it: NULL when it connects, else the error. */
static char *verify_full_error(const struct harness_sluice *s, const char *ca)
{
	char *ci = xasprintf("host=localhost port=%d connect_timeout=10 " APP
			     " sslmode=verify-full sslrootcert=%s/%s.crt",
		s->port, harness_tls_dir(), ca);
	PGconn *c = PQconnectdb(ci);
	free(ci);
	char *err = PQstatus(c) == CONNECTION_OK ? NULL : xstrdup(PQerrorMessage(c));
	PQfinish(c);
	return err;
}

/*
 * RELOAD reads the certificate and key again for new connections; a file
 * that cannot be used keeps the context in use, and says why.
 */
START_TEST(test_reload_reads_the_certificate_again_and_keeps_it_when_broken)
{
	const char *d = harness_tls_dir();
	struct harness_sluice *s;
	char *key = NULL, *crt = NULL;
	char *dir = xasprintf("%s/reload", d);
	(void)mkdir(dir, 0700);
	key = xasprintf("%s/tls.key", dir);
	crt = xasprintf("%s/tls.crt", dir);
	char *src_key = xasprintf("%s/server.key", d), *src_crt = xasprintf("%s/server.crt", d);
	copy_file(src_key, key);
	copy_file(src_crt, crt);
	char *ini = xasprintf("auth_type = md5\nclient_tls_sslmode = require\n"
			      "client_tls_key_file = %s\nclient_tls_cert_file = %s\n",
		key, crt);
	s = harness_sluice_start(ini, NULL, USERLIST);
	free(ini);
	char *err = verify_full_error(s, "ca");
	ck_assert_msg(err == NULL, "%s", err);

	/* Another CA's certificate in the same files: new clients see it after RELOAD. */
	char *other_key = xasprintf("%s/other-server.key", d), *other_crt = xasprintf("%s/other-server.crt", d);
	copy_file(other_key, key);
	copy_file(other_crt, crt);
	harness_sluice_signal(s, SIGHUP);
	ck_assert(harness_sluice_log_wait(s, "configuration reloaded", 5000));
	err = verify_full_error(s, "other-ca");
	ck_assert_msg(err == NULL, "%s", err);
	err = verify_full_error(s, "ca");
	ck_assert_msg(err && strstr(err, "certificate verify failed"), "%s", err ? err : "(connected)");
	free(err);

	/* A broken certificate: the reload says so and the context in use stays. */
	put_file(crt, "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n");
	harness_sluice_signal(s, SIGHUP);
	ck_assert(harness_sluice_log_wait(s, "the previous TLS context stays in use", 5000));
	ck_assert(harness_sluice_log_count(s, "client_tls settings: cannot load the certificate file") > 0);
	err = verify_full_error(s, "other-ca");
	ck_assert_msg(err == NULL, "%s", err);
	harness_sluice_stop_ok(s);
	free(key);
	free(crt);
	free(src_key);
	free(src_crt);
	free(other_key);
	free(other_crt);
	free(dir);
}
END_TEST

/*
 * What sluice answers a client that starts with a ClientHello (direct TLS,
 * offering ALPN postgresql when alpn) and then sends its StartupMessage: the
 * first message's type byte, and its body for an ErrorResponse.
 */
static char direct_tls_answer(int port, bool alpn, char *body, size_t len)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (alpn)
		SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x0apostgresql", 11);
	int fd = harness_raw_connect(port);
	SSL *ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	ck_assert_int_eq(SSL_connect(ssl), 1);
	static const char params[] = "user\0md5user\0database\0app\0";
	uint8_t startup[64];
	uint32_t n = 8 + sizeof(params);
	startup[0] = 0;
	startup[1] = 0;
	startup[2] = 0;
	startup[3] = (uint8_t)n;
	startup[4] = 0;
	startup[5] = 3;
	startup[6] = 0;
	startup[7] = 0;
	memcpy(startup + 8, params, sizeof(params));
	ck_assert_int_eq(SSL_write(ssl, startup, (int)n), (int)n);
	uint8_t msg[512];
	int got = 0, k;
	while (got < 5 && (k = SSL_read(ssl, msg + got, (int)sizeof(msg) - got)) > 0)
		got += k;
	ck_assert_int_ge(got, 5);
	uint32_t mlen = ((uint32_t)msg[1] << 24) | ((uint32_t)msg[2] << 16) |
		((uint32_t)msg[3] << 8) | msg[4];
	while ((uint32_t)got < mlen + 1 && got < (int)sizeof(msg) &&
		(k = SSL_read(ssl, msg + got, (int)sizeof(msg) - got)) > 0)
		got += k;
	size_t blen = (size_t)got - 5 < len - 1 ? (size_t)got - 5 : len - 1;
	for (size_t i = 0; i < blen; i++)
		body[i] = msg[5 + i] ? (char)msg[5 + i] : ' ';
	body[blen] = 0;
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
	return (char)msg[0];
}

/* PostgreSQL 17's direct TLS: a ClientHello first, with ALPN postgresql; without it, refused. */
START_TEST(test_client_direct_tls_needs_alpn_postgresql)
{
	struct harness_sluice *s = start_client_tls("require", NULL);
	char body[512];
	/* AuthenticationMD5Password: the login goes on inside TLS. */
	ck_assert_int_eq(direct_tls_answer(s->port, true, body, sizeof(body)), 'R');
	ck_assert_int_eq(direct_tls_answer(s->port, false, body, sizeof(body)), 'E');
	ck_assert_msg(strstr(body, "without ALPN"), "%s", body);
	harness_sluice_stop_ok(s);
}
END_TEST

/*
 * auth_type = cert: a verified client certificate whose common name is the
 * user logs in without a password; each way of failing it says why.
 */
START_TEST(test_auth_type_cert_takes_the_user_from_the_certificate)
{
	const char *d = harness_tls_dir();
	struct harness_sluice *s = start_client_tls("require", "auth_type = cert\n");
	char *ci = xasprintf("dbname=app user=md5user sslmode=require sslcert=%s/client.crt "
			     "sslkey=%s/client.key",
		d, d);
	PGconn *c = harness_connect(s, ci);
	harness_expect_answer(c, "SELECT current_user", "md5user");
	PQfinish(c);
	free(ci);

	/* The certificate names md5user, not postgres. */
	ci = xasprintf("dbname=app user=%s sslmode=require sslcert=%s/client.crt "
		       "sslkey=%s/client.key",
		HARNESS_SUPERUSER, d, d);
	char *err = harness_connect_error(s, ci);
	ck_assert_msg(strstr(err, "TLS certificate name mismatch"), "%s", err);
	free(err);
	free(ci);
	err = harness_connect_error(s, "dbname=app user=md5user sslmode=require");
	ck_assert_msg(strstr(err, "TLS client certificate required"), "%s", err);
	free(err);
	/* A unix socket has no TLS. */
	ci = xasprintf("host=%s dbname=app user=md5user", s->dir);
	err = harness_connect_error(s, ci);
	ck_assert_msg(strstr(err, "TLS connection required"), "%s", err);
	free(err);
	free(ci);
	harness_sluice_stop_ok(s);
}
END_TEST

/*
 * auth_type = hba: each rule's effect is observed (TLS with md5, a reject
 * without TLS, no rule at all, a peer that is not the user), and RELOAD
 * reads the file again, keeping the rules in force when the new file is
 * broken.
 */
START_TEST(test_hba_rules_choose_the_method_and_reload)
{
	char *hba_path = xasprintf("%s/hba-%d.conf", harness_tls_dir(), (int)getpid());
	put_file(hba_path, "local     app md5user              peer\n"
			   "hostssl   app md5user 127.0.0.1/32 md5\n"
			   "hostnossl app md5user 127.0.0.1/32 reject\n");
	char *more = xasprintf("auth_type = hba\nauth_hba_file = %s\n", hba_path);
	struct harness_sluice *s = start_client_tls("prefer", more);
	free(more);
	PGconn *c = harness_connect(s, APP " sslmode=require");
	harness_expect_answer(c, "SELECT current_user", "md5user");
	PQfinish(c);
	char *err = harness_connect_error(s, APP " sslmode=disable");
	ck_assert_msg(strstr(err, "pg_hba.conf rejects connection for host \"127.0.0.1\", user "
				  "\"md5user\", database \"app\""),
		"%s", err);
	free(err);
	err = harness_connect_error(s, "dbname=postgres user=md5user password=md5userpw sslmode=require");
	ck_assert_msg(strstr(err, "no pg_hba.conf entry for host \"127.0.0.1\", user \"md5user\", "
				  "database \"postgres\", SSL encryption"),
		"%s", err);
	free(err);
	/* The test runs as another OS user than md5user. */
	char *sock = xasprintf("host=%s " APP, s->dir);
	err = harness_connect_error(s, sock);
	ck_assert_msg(strstr(err, "peer authentication failed for user \"md5user\""), "%s", err);
	free(err);
	free(sock);

	/* A new rule before the reject: read at RELOAD. */
	put_file(hba_path, "hostnossl app md5user 127.0.0.1/32 trust\n"
			   "hostssl   app md5user 127.0.0.1/32 md5\n");
	harness_sluice_signal(s, SIGHUP);
	ck_assert(harness_sluice_log_wait(s, "configuration reloaded", 5000));
	c = harness_connect(s, "dbname=app user=md5user sslmode=disable");
	harness_expect_answer(c, "SELECT 1", "1");
	PQfinish(c);
	/* A broken file: the reload fails and the rules in force stay. */
	put_file(hba_path, "hostnossl app md5user 127.0.0.1/32 ident\n");
	harness_sluice_signal(s, SIGHUP);
	ck_assert(harness_sluice_log_wait(s, "unsupported authentication method \"ident\"", 5000));
	c = harness_connect(s, "dbname=app user=md5user sslmode=disable");
	harness_expect_answer(c, "SELECT 1", "1");
	PQfinish(c);
	harness_sluice_stop_ok(s);
	unlink(hba_path);
	free(hba_path);
}
END_TEST

/*
 * map= on cert and peer rules: the ident maps of auth_ident_file say which
 * users a certificate's name or an OS user may log in as; a name the map
 * does not pair with the user fails, in PgBouncer's words in the log. A
 * RELOAD reads the maps again with the rules.
 */
START_TEST(test_hba_ident_maps_for_cert_and_peer)
{
	const char *d = harness_tls_dir();
	struct passwd *me = getpwuid(geteuid());
	ck_assert_ptr_nonnull(me);
	char *hba_path = xasprintf("%s/hba-map-%d.conf", d, (int)getpid());
	char *ident_path = xasprintf("%s/ident-%d.conf", d, (int)getpid());
	put_file(hba_path, "hostssl app all 127.0.0.1/32 cert map=certs\n"
			   "local   app all                peer map=osusers\n");
	char *ident = xasprintf("certs md5user md5user\ncerts md5user \"scramuser\"\n"
				"osusers %s trustuser\n",
		me->pw_name);
	put_file(ident_path, ident);
	free(ident);
	char *base = client_tls("require");
	char *more = xasprintf("%sauth_type = hba\nauth_hba_file = %s\nauth_ident_file = %s\n",
		base, hba_path, ident_path);
	/* Passwords for the server logins of the users the maps let in. */
	struct harness_sluice *s = harness_sluice_start(more, NULL,
		USERLIST "\"scramuser\" \"scramuserpw\"\n\"plainuser\" \"plainuserpw\"\n");
	free(more);
	free(base);
	/* The certificate names md5user; the map lets it be scramuser too, not plainuser. */
	static const char *const users[] = { "md5user", "scramuser" };
	for (int i = 0; i < 2; i++) {
		char *ci = xasprintf("dbname=app user=%s sslmode=require sslcert=%s/client.crt "
				     "sslkey=%s/client.key",
			users[i], d, d);
		PGconn *c = harness_connect(s, ci);
		harness_expect_answer(c, "SELECT current_user", users[i]);
		PQfinish(c);
		free(ci);
	}
	char *ci = xasprintf("dbname=app user=plainuser sslmode=require sslcert=%s/client.crt "
			     "sslkey=%s/client.key",
		d, d);
	char *err = harness_connect_error(s, ci);
	ck_assert_msg(strstr(err, "certificate authentication failed"), "%s", err);
	free(err);
	ck_assert(harness_sluice_log_wait(s, "ident map: certs does not have a match", 5000));

	/* Over the unix socket, this OS user may be trustuser, not md5user. */
	char *sock = xasprintf("host=%s dbname=app user=trustuser", s->dir);
	PGconn *c = harness_connect(s, sock);
	harness_expect_answer(c, "SELECT current_user", "trustuser");
	PQfinish(c);
	free(sock);
	sock = xasprintf("host=%s dbname=app user=md5user", s->dir);
	err = harness_connect_error(s, sock);
	ck_assert_msg(strstr(err, "peer authentication failed for user \"md5user\""), "%s", err);
	free(err);
	ck_assert(harness_sluice_log_wait(s, "ident map osusers cannot be matched", 5000));

	/* all: any user, once the maps are read again. */
	ident = xasprintf("certs md5user all\nosusers %s all\n", me->pw_name);
	put_file(ident_path, ident);
	free(ident);
	harness_sluice_signal(s, SIGHUP);
	ck_assert(harness_sluice_log_wait(s, "configuration reloaded", 5000));
	c = harness_connect(s, sock);
	harness_expect_answer(c, "SELECT current_user", "md5user");
	PQfinish(c);
	c = harness_connect(s, ci);
	harness_expect_answer(c, "SELECT current_user", "plainuser");
	PQfinish(c);
	free(sock);
	free(ci);
	harness_sluice_stop_ok(s);
	unlink(hba_path);
	unlink(ident_path);
	free(hba_path);
	free(ident_path);
}
END_TEST

/* ---- hostile clients ---------------------------------------------------------------- */

static const uint8_t ssl_request[8] = { 0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f };

/*
 * Bytes the client sends right after its SSLRequest, before any answer:
 * refused in the clear (CVE-2021-23222), never taken as a ClientHello.
 */
START_TEST(test_client_data_sent_with_the_ssl_request_is_refused)
{
	struct harness_sluice *s = start_client_tls("require", NULL);
	int fd = harness_raw_connect(s->port);
	uint8_t both[8 + 64];
	memcpy(both, ssl_request, 8);
	memset(both + 8, 0x16, sizeof(both) - 8);
	harness_write_all(fd, both, sizeof(both));
	char *err = harness_raw_read_error(fd);
	ck_assert_msg(err && strstr(err, "unexpected data after encryption request"), "%s",
		err ? err : "(none)");
	free(err);
	close(fd);
	harness_sluice_stop_ok(s);
}
END_TEST

/*
 * After the 'S': plaintext where the ClientHello belongs, garbage, or a
 * handshake cut short. Each costs only its own connection.
 */
static const struct hostile_case {
	const char *what;
	int kind; /* 0 a StartupMessage in the clear, 1 garbage, 2 half a record then close */
} hostile_cases[] = {
	{ "plaintext StartupMessage after S", 0 },
	{ "garbage after S", 1 },
	{ "truncated ClientHello", 2 },
};

START_TEST(test_client_handshake_garbage_fails_only_that_connection)
{
	const struct hostile_case *hc = &hostile_cases[_i];
	struct harness_sluice *s = start_client_tls("require", NULL);
	PGconn *bystander = harness_connect(s, APP " sslmode=require");
	free(harness_query_text(bystander, "BEGIN"));

	int fd = harness_raw_connect(s->port);
	harness_write_all(fd, ssl_request, sizeof(ssl_request));
	char answer = 0;
	ck_assert(harness_read_full(fd, &answer, 1));
	ck_assert_int_eq(answer, 'S');
	if (hc->kind == 0) {
		harness_raw_send_startup(fd, "md5user", "app");
	} else if (hc->kind == 1) {
		uint8_t junk[300];
		for (size_t i = 0; i < sizeof(junk); i++)
			junk[i] = (uint8_t)(i * 37 + 11);
		harness_write_all(fd, junk, sizeof(junk));
	} else {
		/* A handshake record header announcing 512 bytes, and 10 of them. */
		const uint8_t half[] = { 0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03,
			0x03, 0, 0, 0, 0 };
		harness_write_all(fd, half, sizeof(half));
		shutdown(fd, SHUT_WR);
	}
	/* The connection ends: an alert, or nothing, then EOF. */
	char buf[512];
	long t0 = harness_now_ms();
	while (read(fd, buf, sizeof(buf)) > 0 && harness_now_ms() - t0 < 5000)
		;
	close(fd);
	if (hc->kind != 2)
		ck_assert_msg(harness_sluice_log_wait(s, "TLS handshake failed", 3000), "%s", hc->what);

	harness_expect_answer(bystander, "SELECT 7", "7");
	free(harness_query_text(bystander, "COMMIT"));
	PQfinish(bystander);
	PGconn *c = harness_connect(s, APP " sslmode=require");
	harness_expect_answer(c, "SELECT 1", "1");
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

/* ---- servers ------------------------------------------------------------------------ */

START_TEST(test_server_require_logs_in_over_tls)
{
	struct harness_sluice *s = harness_sluice_start(
		"auth_type = md5\nadmin_users = md5user\nserver_tls_sslmode = require\n", NULL,
		USERLIST);
	PGconn *c = harness_connect(s, APP);
	ck_assert_msg(server_side_is_tls(c), "the server connection is not encrypted");
	char *tls = tls_column(s, "SHOW SERVERS", "app");
	ck_assert_msg(tls && strncmp(tls, "TLSv1.", 6) == 0, "tls column: %s", tls ? tls : "(null)");
	free(tls);
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

/*
 * auth_query's look-ups are server connections too: made with the
 * server_tls_* settings, so verify-full checks the authentication database's
 * certificate and name before any secret is read over it.
 */
START_TEST(test_auth_query_lookups_use_server_tls)
{
	const char *d = harness_tls_dir();
	char *ini = xasprintf("auth_type = md5\nauth_user = " HARNESS_SUPERUSER "\n"
			      "server_tls_sslmode = verify-full\nserver_tls_ca_file = %s/ca.crt\n",
		d);
	/* localhost: the name the server's certificate carries. */
	struct harness_sluice *s = harness_sluice_start(ini,
		"app = host=localhost port=@PGPORT@ dbname=app\n", USERLIST);
	free(ini);
	PGconn *c = harness_connect(s, "dbname=app user=scramuser password=scramuserpw");
	harness_expect_answer(c, "SELECT current_user", "scramuser");
	PQfinish(c);
	char *ssl = harness_pg_exec("SELECT bool_and(ssl)::text FROM pg_stat_ssl JOIN "
				    "pg_stat_activity USING (pid) WHERE application_name = "
				    "'sluice auth_query'");
	ck_assert_msg(ssl && strcmp(ssl, "true") == 0, "look-up over TLS: %s", ssl ? ssl : "none");
	free(ssl);
	harness_sluice_stop_ok(s);

	/* A CA that did not sign the server's certificate: no look-up, a clear error. */
	ini = xasprintf("auth_type = md5\nauth_user = " HARNESS_SUPERUSER "\n"
			"server_tls_sslmode = verify-full\nserver_tls_ca_file = %s/other-ca.crt\n",
		d);
	s = harness_sluice_start(ini, "app = host=localhost port=@PGPORT@ dbname=app\n", USERLIST);
	free(ini);
	char *err = harness_connect_error(s, "dbname=app user=scramuser password=scramuserpw");
	ck_assert_msg(strstr(err, "could not look the user up"), "%s", err);
	free(err);
	ck_assert(harness_sluice_log_wait(s, "certificate verify failed", 5000));
	harness_sluice_stop_ok(s);
}
END_TEST

/*
 * Expired certificates, signed by the right CA: a client's is refused by
 * sluice's handshake (client_tls_sslmode = verify-ca), a server's by sluice's
 * verify-full towards it. The server here is a second sluice serving the
 * expired certificate in front of PostgreSQL.
 */
START_TEST(test_expired_certificates_are_refused_on_both_sides)
{
	const char *d = harness_tls_dir();
	/* Made a second ago or more: make sure of it. */
	harness_sleep_ms(1100);
	char *ca = xasprintf("client_tls_ca_file = %s/ca.crt\n", d);
	struct harness_sluice *s = start_client_tls("verify-ca", ca);
	free(ca);
	char *ci = xasprintf("dbname=app user=md5user sslmode=require sslcert=%s/expired-client.crt "
			     "sslkey=%s/expired-client.key",
		d, d);
	char *err = harness_connect_error(s, ci);
	ck_assert_msg(strstr(err, "expired"), "%s", err);
	free(err);
	free(ci);
	ck_assert(harness_sluice_log_wait(s, "certificate has expired", 5000));
	/* The same client with a valid certificate is let in. */
	ci = xasprintf("dbname=app user=md5user password=md5userpw sslmode=require "
		       "sslcert=%s/client.crt sslkey=%s/client.key",
		d, d);
	PGconn *c = harness_connect(s, ci);
	harness_expect_answer(c, "SELECT 1", "1");
	PQfinish(c);
	free(ci);
	harness_sluice_stop_ok(s);

	char *inner_ini = xasprintf("auth_type = md5\nclient_tls_sslmode = require\n"
				    "client_tls_cert_file = %s/expired-server.crt\n"
				    "client_tls_key_file = %s/expired-server.key\n",
		d, d);
	struct harness_sluice *inner = harness_sluice_start(inner_ini, NULL, USERLIST);
	free(inner_ini);
	char *outer_ini = xasprintf("auth_type = md5\nserver_tls_sslmode = verify-full\n"
				    "server_tls_ca_file = %s/ca.crt\nquery_wait_timeout = 2\n",
		d);
	char *dbs = xasprintf("app = host=localhost port=%d dbname=app\n", inner->port);
	struct harness_sluice *outer = harness_sluice_start(outer_ini, dbs, USERLIST);
	free(outer_ini);
	free(dbs);
	/*
	 * As for any server that cannot be logged in to: the client that was
	 * waiting waits for the next attempt (query_wait_timeout here), the next
	 * one hears the cached reason at once.
	 */
	err = harness_connect_error(outer, APP);
	ck_assert_msg(strstr(err, "query_wait_timeout"), "%s", err);
	free(err);
	ck_assert(harness_sluice_log_wait(outer, "certificate has expired", 5000));
	err = harness_connect_error(outer, APP);
	ck_assert_msg(strstr(err, "server login has been failing") &&
			      strstr(err, "certificate has expired"),
		"%s", err);
	free(err);
	harness_sluice_stop_ok(outer);
	harness_sluice_stop_ok(inner);
}
END_TEST

/*
 * server_tls_sslnegotiation = direct: sluice opens with a ClientHello (ALPN
 * postgresql) instead of an SSLRequest. A second sluice, which takes direct
 * TLS from clients, is the server that accepts it; PostgreSQL 15 does not,
 * which shows that no SSLRequest went first.
 */
START_TEST(test_server_direct_tls)
{
	const char *d = harness_tls_dir();
	struct harness_sluice *inner =
		start_client_tls("require", "admin_users = md5user\n");
	char *outer_ini = xasprintf("auth_type = md5\nserver_tls_sslmode = verify-full\n"
				    "server_tls_ca_file = %s/ca.crt\nserver_tls_sslnegotiation = direct\n"
				    "query_wait_timeout = 2\n",
		d);
	char *dbs = xasprintf("app = host=localhost port=%d dbname=app\n"
			      "pg15 = host=localhost port=@PGPORT@ dbname=app\n",
		inner->port);
	struct harness_sluice *outer = harness_sluice_start(outer_ini, dbs, USERLIST);
	free(outer_ini);
	free(dbs);
	PGconn *c = harness_connect(outer, APP);
	harness_expect_answer(c, "SELECT current_user", "md5user");
	/* The inner sluice's client (the outer's server) is encrypted. */
	char *tls = tls_column(inner, "SHOW CLIENTS", "app");
	ck_assert_msg(tls && strncmp(tls, "TLSv1.", 6) == 0, "tls column: %s", tls ? tls : "(null)");
	free(tls);
	PQfinish(c);

	/* PostgreSQL 15 takes the ClientHello for a malformed startup packet and hangs up. */
	char *err = harness_connect_error(outer, "dbname=pg15 user=md5user password=md5userpw");
	ck_assert_msg(strstr(err, "server login failed: server closed the connection"), "%s", err);
	free(err);
	harness_sluice_stop_ok(outer);
	harness_sluice_stop_ok(inner);
}
END_TEST

START_TEST(test_server_disable_logs_in_in_the_clear)
{
	struct harness_sluice *s = harness_sluice_start(
		"auth_type = md5\nserver_tls_sslmode = disable\n", NULL, USERLIST);
	PGconn *c = harness_connect(s, APP);
	ck_assert(!server_side_is_tls(c));
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

/* A change of server_tls_sslmode (SET or RELOAD) replaces the servers open with new ones. */
START_TEST(test_server_tls_change_reconnects_the_servers)
{
	struct harness_sluice *s = harness_sluice_start(
		"auth_type = md5\nadmin_users = md5user\npool_mode = transaction\n"
		"server_tls_sslmode = disable\n",
		NULL,
		USERLIST);
	PGconn *c = harness_connect(s, APP);
	ck_assert(!server_side_is_tls(c));
	char *pid = harness_query_text(c, "SELECT pg_backend_pid()");
	PGconn *console = harness_connect(s, "dbname=pgbouncer user=md5user password=md5userpw");
	free(harness_query_text(console, "SET server_tls_sslmode = require"));
	PQfinish(console);
	/* The idle server is gone; the next transaction logs in anew, over TLS. */
	ck_assert(server_side_is_tls(c));
	char *pid2 = harness_query_text(c, "SELECT pg_backend_pid()");
	ck_assert_str_ne(pid, pid2);
	free(pid);
	free(pid2);
	PQfinish(c);
	harness_sluice_stop_ok(s);
}
END_TEST

/* verify-full against the host name in [databases]: the right CA passes, another fails the login. */
START_TEST(test_server_verify_full_checks_the_server_certificate)
{
	const char *d = harness_tls_dir();
	char *ini = xasprintf("auth_type = md5\nserver_tls_sslmode = verify-full\n"
			      "server_tls_ca_file = %s/ca.crt\nserver_login_retry = 1\n",
		d);
	const char *dbs = "app = host=localhost port=@PGPORT@ dbname=app\n";
	struct harness_sluice *s = harness_sluice_start(ini, dbs, USERLIST);
	free(ini);
	PGconn *c = harness_connect(s, APP);
	ck_assert(server_side_is_tls(c));
	PQfinish(c);
	harness_sluice_stop_ok(s);

	/*
	 * A failed handshake is a server that cannot be reached, as a refused
	 * connect is: the waiting client stays queued until query_wait_timeout,
	 * the next one fails at once with the cached reason.
	 */
	ini = xasprintf("auth_type = md5\nserver_tls_sslmode = verify-full\n"
			"server_tls_ca_file = %s/other-ca.crt\nquery_wait_timeout = 2\n",
		d);
	s = harness_sluice_start(ini, dbs, USERLIST);
	free(ini);
	char *err = harness_connect_error(s, APP);
	ck_assert_msg(strstr(err, "query_wait_timeout"), "%s", err);
	free(err);
	ck_assert(harness_sluice_log_count(s, "certificate verify failed") > 0);
	err = harness_connect_error(s, APP);
	ck_assert_msg(strstr(err, "certificate verify failed"), "%s", err);
	free(err);
	harness_sluice_stop_ok(s);
}
END_TEST

/* ---- data through TLS on both sides ------------------------------------------------- */

#define COPY_OUT_SQL \
	"COPY (SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 60000) g) TO STDOUT"

/* Everything a COPY TO STDOUT sends, concatenated. */
static char *copy_out(PGconn *c, size_t *len)
{
	PGresult *res = PQexec(c, COPY_OUT_SQL);
	ck_assert_int_eq(PQresultStatus(res), PGRES_COPY_OUT);
	PQclear(res);
	size_t cap = 1 << 20, n = 0;
	char *all = xmalloc(cap);
	char *row;
	int k;
	while ((k = PQgetCopyData(c, &row, 0)) > 0) {
		if (n + (size_t)k > cap) {
			cap = (n + (size_t)k) * 2;
			all = xrealloc(all, cap);
		}
		memcpy(all + n, row, (size_t)k);
		n += (size_t)k;
		PQfreemem(row);
	}
	ck_assert_int_eq(k, -1);
	res = PQgetResult(c);
	ck_assert_int_eq(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);
	*len = n;
	return all;
}

START_TEST(test_large_copy_both_ways_through_tls_on_both_sides)
{
	char *ini = client_tls("require");
	char *full = xasprintf("%sserver_tls_sslmode = require\n", ini);
	struct harness_sluice *s = harness_sluice_start(full, NULL, USERLIST);
	free(full);
	free(ini);
	PGconn *via = harness_connect(s, APP " sslmode=require");
	PGconn *direct = harness_connect(NULL, APP " sslmode=disable");
	size_t n1, n2;
	char *a = copy_out(via, &n1);
	char *b = copy_out(direct, &n2);
	ck_assert_msg(n1 == n2 && n1 > 4000000 && memcmp(a, b, n1) == 0,
		"COPY through TLS differs: %zu bytes against %zu", n1, n2);

	/* The same bytes back in through both TLS links, and counted by PostgreSQL. */
	free(harness_query_text(via, "CREATE TEMP TABLE back (g int, t text)"));
	PGresult *res = PQexec(via, "COPY back FROM STDIN");
	ck_assert_int_eq(PQresultStatus(res), PGRES_COPY_IN);
	PQclear(res);
	for (size_t off = 0; off < n1; off += 100000) {
		size_t k = n1 - off < 100000 ? n1 - off : 100000;
		ck_assert_int_eq(PQputCopyData(via, a + off, (int)k), 1);
	}
	ck_assert_int_eq(PQputCopyEnd(via, NULL), 1);
	res = PQgetResult(via);
	ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "%s", PQresultErrorMessage(res));
	PQclear(res);
	harness_expect_answer(via, "SELECT count(*) FROM back", "60000");
	harness_expect_answer(via,
		"SELECT count(*) FROM back WHERE t = repeat(md5(g::text), 8)", "60000");
	free(a);
	free(b);
	PQfinish(via);
	PQfinish(direct);
	harness_sluice_stop_ok(s);
}
END_TEST

/*
 * A TLS client that asks for a 100 MB result and does not read it: the
 * engine's output counts as unsent, so sluice stops reading the server and
 * its memory stays bounded; the result arrives whole when the client reads.
 */
START_TEST(test_slow_tls_reader_keeps_sluice_memory_bounded)
{
	char *ini = client_tls("require");
	char *full = xasprintf("%sserver_tls_sslmode = require\n", ini);
	struct harness_sluice *s = harness_sluice_start(full, NULL, USERLIST);
	free(full);
	free(ini);
	PGconn *conn = harness_connect(s, APP " sslmode=require");
	harness_expect_answer(conn, "SELECT 1", "1");
	long before = harness_sluice_rss_kib(s);
	ck_assert_int_eq(
		PQsendQuery(conn, "SELECT g, repeat('x', 1000) FROM generate_series(1, 100000) g"), 1);
	harness_sleep_ms(2000);
	long during = harness_sluice_rss_kib(s);
	harness_sleep_ms(2000);
	long later = harness_sluice_rss_kib(s);
	fprintf(stderr, "slow TLS reader: sluice grew by %ld KiB, then by %ld KiB\n",
		during - before, later - during);
#ifdef __SANITIZE_ADDRESS__
	/*
	 * AddressSanitizer keeps freed blocks in quarantine (256 MB by default),
	 * and OpenSSL allocates and frees record buffers as it goes: resident
	 * memory counts the quarantine. What is held must stop growing.
	 */
	ck_assert_msg(later - during < 8 * 1024,
		"sluice kept growing (%ld KiB in 2 s) while a TLS client did not read",
		later - during);
#else
	ck_assert_msg(during - before < 20 * 1024,
		"sluice grew by %ld KiB while a TLS client did not read a 100 MB result",
		during - before);
	ck_assert_msg(later - during < 2 * 1024, "sluice kept growing by %ld KiB",
		later - during);
#endif
	long rows = 0, sum = 0;
	PGresult *res;
	while ((res = PQgetResult(conn)) != NULL) {
		ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
		for (int i = 0; i < PQntuples(res); i++)
			sum += atol(PQgetvalue(res, i, 0));
		rows += PQntuples(res);
		PQclear(res);
	}
	ck_assert_int_eq(rows, 100000);
	ck_assert_int_eq(sum, 100000L * 100001L / 2);
	PQfinish(conn);
	harness_sluice_stop_ok(s);
}
END_TEST

static Suite *tls_suite(void)
{
	Suite *s = suite_create("tls");
	TCase *tc = harness_tcase("tls");
	tcase_add_test(tc, test_client_require_takes_tls_and_refuses_plaintext_over_tcp);
	tcase_add_test(tc, test_client_prefer_serves_tls_and_plaintext_alike);
	tcase_add_test(tc, test_client_verify_full_checks_sluice_certificate_and_name);
	tcase_add_test(tc, test_client_verify_ca_requires_a_client_certificate);
	tcase_add_test(tc, test_reload_reads_the_certificate_again_and_keeps_it_when_broken);
	tcase_add_test(tc, test_client_direct_tls_needs_alpn_postgresql);
	tcase_add_test(tc, test_auth_type_cert_takes_the_user_from_the_certificate);
	tcase_add_test(tc, test_hba_rules_choose_the_method_and_reload);
	tcase_add_test(tc, test_hba_ident_maps_for_cert_and_peer);
	tcase_add_test(tc, test_auth_query_lookups_use_server_tls);
	tcase_add_test(tc, test_expired_certificates_are_refused_on_both_sides);
	tcase_add_test(tc, test_server_direct_tls);
	tcase_add_test(tc, test_client_data_sent_with_the_ssl_request_is_refused);
	tcase_add_loop_test(tc, test_client_handshake_garbage_fails_only_that_connection, 0,
		(int)(sizeof(hostile_cases) / sizeof(hostile_cases[0])));
	tcase_add_test(tc, test_server_require_logs_in_over_tls);
	tcase_add_test(tc, test_server_disable_logs_in_in_the_clear);
	tcase_add_test(tc, test_server_tls_change_reconnects_the_servers);
	tcase_add_test(tc, test_server_verify_full_checks_the_server_certificate);
	tcase_add_test(tc, test_large_copy_both_ways_through_tls_on_both_sides);
	tcase_add_test(tc, test_slow_tls_reader_keeps_sluice_memory_bounded);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	harness_pg_enable_ssl();
	return harness_run_suite(tls_suite());
}
