/*
 * check_auth_methods.c - how clients log in to sluice and how sluice logs in
 * to PostgreSQL, through real libpq clients and, where the exact protocol
 * step matters, raw sockets.
 *
 * Client side: every auth_type (trust, any, plain and its alias password,
 * md5, scram-sha-256) against every kind of auth_file secret (plaintext, md5,
 * SCRAM-SHA-256), which Authentication request each combination produces,
 * that right passwords log in and wrong ones fail with 28P01, that an unknown
 * user cannot be told from a wrong password, forced users, unknown databases
 * and the `*` fallback entry. Server side: each of the harness's roles (md5,
 * SCRAM, cleartext, trust in pg_hba.conf) with the secrets sluice can use for
 * it, SCRAM pass-through of the client's keys, and what a client sees when
 * the server login fails (PostgreSQL's own error, server_login_retry).
 *
 * It does not test TLS, auth_query, hba files or reloads; other suites own
 * those. SCRAM and md5 secrets are taken from PostgreSQL itself (pg_authid,
 * md5()), so this file needs no crypto of its own: the one SCRAM exchange it
 * drives by hand only needs a proof that is wrong.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- secrets ---------------------------------------------------------------- */

enum secret_kind {
	SECRET_PLAIN,
	SECRET_MD5,
	SECRET_SCRAM,
};

/*
 * The auth_file secret of user (whose password is <user>pw) of the given
 * kind, as a heap string. SCRAM secrets are the ones PostgreSQL stores, so
 * only roles whose password PostgreSQL keeps as SCRAM have one.
 */
static char *secret_of(const char *user, enum secret_kind kind)
{
	char *s = NULL;
	switch (kind) {
	case SECRET_PLAIN:
		s = xasprintf("%spw", user);
		break;
	case SECRET_MD5:
		s = harness_pg_exec("SELECT 'md5' || md5('%spw' || '%s')", user, user);
		break;
	case SECRET_SCRAM:
		s = harness_pg_exec("SELECT rolpassword FROM pg_authid WHERE rolname = '%s'", user);
		ck_assert_msg(s && strncmp(s, "SCRAM-SHA-256$", 14) == 0, "%s has no SCRAM secret",
			user);
		break;
	}
	ck_assert_ptr_nonnull(s);
	return s;
}

/* One auth_file line, "user" "secret\n", as a heap string. */
static char *userlist_line(const char *user, enum secret_kind kind)
{
	char *secret = secret_of(user, kind);
	char *line = xasprintf("\"%s\" \"%s\"\n", user, secret);
	free(secret);
	return line;
}

/*
 * How many server logins of the pool have failed so far, by the WARNING line
 * sluice logs before it tells any client (so no client can see the error
 * before the line is written).
 */
static int failed_server_logins(const struct harness_sluice *s)
{
	char *log = harness_sluice_log(s);
	int n = 0;
	for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n"))
		if (strstr(line, " WARNING ") && strstr(line, "server login failed:") &&
			!strstr(line, "closing because"))
			n++;
	if (getenv("AUTHIT_SHOW_LOG")) {
		free(log);
		log = harness_sluice_log(s);
		fprintf(stderr, "%s\n", log);
	}
	free(log);
	return n;
}

/* Connects as user with password through s and asserts who it runs as on which database. */
static void assert_logs_in_as(const struct harness_sluice *s, const char *conninfo,
	const char *expect_user, const char *expect_db)
{
	PGconn *conn = harness_connect(s, conninfo);
	char *who = harness_query_text(conn, "SELECT current_user || '@' || current_database()");
	char *expect = xasprintf("%s@%s", expect_user, expect_db);
	ck_assert_str_eq(who, expect);
	free(expect);
	free(who);
	if (strcmp(expect_db, "app") == 0) {
		char *count = harness_query_text(conn, "SELECT count(*) FROM items WHERE id <= 3");
		ck_assert_str_eq(count, "3");
		free(count);
	}
	PQfinish(conn);
}

/* Asserts that connecting fails and libpq's message contains needle. */
static void assert_connect_fails_with(const struct harness_sluice *s, const char *conninfo,
	const char *needle)
{
	char *err = harness_connect_error(s, conninfo);
	ck_assert_msg(strstr(err, needle) != NULL, "\"%s\": expected \"%s\", got: %s", conninfo,
		needle, err);
	free(err);
}

/* ---- raw protocol ------------------------------------------------------------- */

#define AUTH_REQ_OK 0
#define AUTH_REQ_CLEARTEXT 3
#define AUTH_REQ_MD5 5
#define AUTH_REQ_SASL 10
#define AUTH_REQ_SASL_CONTINUE 11

static uint32_t raw_be32(const char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return ntohl(v);
}

static void raw_send_msg(int fd, char type, const void *body, size_t len)
{
	unsigned char hdr[5];
	uint32_t n = htonl((uint32_t)(len + 4));
	hdr[0] = (unsigned char)type;
	memcpy(hdr + 1, &n, 4);
	harness_write_all(fd, hdr, sizeof(hdr));
	harness_write_all(fd, body, len);
}

/* Connects to port and sends a protocol 3.0 StartupMessage for user and db. */
static int raw_startup(int port, const char *user, const char *db)
{
	int fd = harness_raw_connect(port);
	harness_raw_send_startup(fd, user, db);
	return fd;
}

/* What the first answer to a StartupMessage was. */
struct raw_outcome {
	int auth_code; /* the Authentication request, or -1 when the answer was an error */
	char sqlstate[6]; /* of the ErrorResponse that ended the exchange, or "" */
	char message[256];
};

static void raw_take_error(const struct harness_msg *m, struct raw_outcome *o)
{
	ck_assert_msg(m->type == 'E', "expected an ErrorResponse, got '%c'", m->type);
	snprintf(o->sqlstate, sizeof(o->sqlstate), "%s", harness_msg_field(m, 'C'));
	snprintf(o->message, sizeof(o->message), "%s", harness_msg_field(m, 'M'));
}

/*
 * Logs in as user to db with a wrong password, answering whatever
 * Authentication request comes with a wrong response of the right shape
 * (a wrong cleartext password, a wrong md5 hash, a SCRAM exchange with a
 * wrong proof), and reports the request and the final error.
 */
static struct raw_outcome raw_wrong_password_login(int port, const char *user, const char *db)
{
	struct raw_outcome o = { .auth_code = -1 };
	int fd = raw_startup(port, user, db);
	struct harness_msg m;
	ck_assert_msg(harness_raw_read_msg(fd, &m), "sluice closed without a message");
	if (m.type != 'R') {
		raw_take_error(&m, &o);
		free(m.body);
		close(fd);
		return o;
	}
	ck_assert_uint_ge(m.len, 4);
	o.auth_code = (int)raw_be32(m.body);
	free(m.body);
	switch (o.auth_code) {
	case AUTH_REQ_CLEARTEXT:
		raw_send_msg(fd, 'p', "wrongpw", 8);
		break;
	case AUTH_REQ_MD5:
		raw_send_msg(fd, 'p', "md500000000000000000000000000000000", 36);
		break;
	case AUTH_REQ_SASL: {
		static const char first[] = "n,,n=,r=authitclientnonce0123456789";
		char body[128];
		size_t n = (size_t)snprintf(body, sizeof(body), "SCRAM-SHA-256%c", 0);
		uint32_t flen = htonl((uint32_t)strlen(first));
		memcpy(body + n, &flen, 4);
		n += 4;
		memcpy(body + n, first, strlen(first));
		n += strlen(first);
		raw_send_msg(fd, 'p', body, n);
		ck_assert_msg(harness_raw_read_msg(fd, &m), "sluice closed without a message");
		ck_assert_int_eq(m.type, 'R');
		ck_assert_uint_ge(m.len, 4);
		ck_assert_int_eq(raw_be32(m.body), AUTH_REQ_SASL_CONTINUE);
		/* server-first-message: r=<client nonce><server nonce>,s=...,i=... */
		const char *r = strstr(m.body + 4, "r=");
		ck_assert_ptr_nonnull(r);
		size_t rlen = strcspn(r + 2, ",");
		/* A proof of the right length (32 bytes in base64) that is all zeros. */
		char *fin = xasprintf("c=biws,r=%.*s,p=%s", (int)rlen, r + 2,
			"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
		free(m.body);
		raw_send_msg(fd, 'p', fin, strlen(fin));
		free(fin);
		break;
	}
	default:
		ck_abort_msg("unexpected Authentication request %d", o.auth_code);
	}
	ck_assert_msg(harness_raw_read_msg(fd, &m), "sluice closed without a message");
	raw_take_error(&m, &o);
	free(m.body);
	close(fd);
	return o;
}

/* The first Authentication request code sluice answers a StartupMessage with, or -1 on error. */
static struct raw_outcome raw_first_answer(int port, const char *user, const char *db)
{
	struct raw_outcome o = { .auth_code = -1 };
	int fd = raw_startup(port, user, db);
	struct harness_msg m;
	ck_assert_msg(harness_raw_read_msg(fd, &m), "sluice closed without a message");
	if (m.type == 'R') {
		ck_assert_uint_ge(m.len, 4);
		o.auth_code = (int)raw_be32(m.body);
	} else {
		raw_take_error(&m, &o);
	}
	free(m.body);
	close(fd);
	return o;
}

/* ---- client side: auth_type x secret kind ------------------------------------------ */

/*
 * trustuser is trusted by pg_hba.conf, so only sluice's own check of the
 * client is under test here. Its password is stored by PostgreSQL as SCRAM,
 * which gives the SCRAM secret.
 */
static const struct method_case {
	const char *auth_type;
	enum secret_kind kind;
	int request; /* the Authentication request the client gets */
} method_cases[] = {
	{ "plain", SECRET_PLAIN, AUTH_REQ_CLEARTEXT },
	{ "plain", SECRET_MD5, AUTH_REQ_CLEARTEXT },
	{ "plain", SECRET_SCRAM, AUTH_REQ_CLEARTEXT },
	{ "password", SECRET_PLAIN, AUTH_REQ_CLEARTEXT },
	{ "password", SECRET_SCRAM, AUTH_REQ_CLEARTEXT },
	{ "md5", SECRET_PLAIN, AUTH_REQ_MD5 },
	{ "md5", SECRET_MD5, AUTH_REQ_MD5 },
	{ "md5", SECRET_SCRAM, AUTH_REQ_SASL },
	{ "scram-sha-256", SECRET_PLAIN, AUTH_REQ_SASL },
	{ "scram-sha-256", SECRET_SCRAM, AUTH_REQ_SASL },
	{ "trust", SECRET_PLAIN, AUTH_REQ_OK },
};

static struct harness_sluice *start_with_auth(const char *auth_type, const char *userlist,
	const char *databases)
{
	char *extra = xasprintf("auth_type = %s\n", auth_type);
	struct harness_sluice *s = harness_sluice_start(extra, databases, userlist);
	free(extra);
	return s;
}

/*
 * PgBouncer's words for a refused password: "SASL authentication failed"
 * after a SCRAM exchange, PostgreSQL's "password authentication failed for
 * user" after cleartext and md5 (heap).
 */
static char *refusal(bool sasl, const char *user)
{
	return sasl ? xstrdup("SASL authentication failed")
		    : xasprintf("password authentication failed for user \"%s\"", user);
}

START_TEST(test_client_auth_type_and_secret_choose_method_and_right_password_logs_in)
{
	const struct method_case *mc = &method_cases[_i];
	char *list = userlist_line("trustuser", mc->kind);
	struct harness_sluice *s = start_with_auth(mc->auth_type, list, NULL);
	free(list);

	struct raw_outcome o = raw_first_answer(s->port, "trustuser", "app");
	ck_assert_msg(o.auth_code == mc->request, "auth_type=%s secret kind %d: request %d (%s)",
		mc->auth_type, mc->kind, o.auth_code, o.message);

	assert_logs_in_as(s, "dbname=app user=trustuser password=trustuserpw", "trustuser", "app");
	if (mc->request != AUTH_REQ_OK) {
		char *words = refusal(mc->request == AUTH_REQ_SASL, "trustuser");
		assert_connect_fails_with(s, "dbname=app user=trustuser password=nottheone", words);
		free(words);
	}
	/* The failed attempt did not disturb the pool: a right password still works. */
	assert_logs_in_as(s, "dbname=app user=trustuser password=trustuserpw", "trustuser", "app");
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* Password auth_types: wrong password and unknown user, compared at the protocol level. */
static const char *const password_types[] = { "plain", "md5", "scram-sha-256" };

START_TEST(test_client_wrong_password_and_unknown_user_fail_alike_with_28P01)
{
	const char *type = password_types[_i];
	char *list = userlist_line("trustuser", SECRET_PLAIN);
	struct harness_sluice *s = start_with_auth(type, list, NULL);
	free(list);

	struct raw_outcome wrong = raw_wrong_password_login(s->port, "trustuser", "app");
	struct raw_outcome unknown = raw_wrong_password_login(s->port, "nosuchuser", "app");
	ck_assert_int_gt(wrong.auth_code, 0);
	/* Same request, same SQLSTATE, same words: nothing tells the user exists. */
	ck_assert_int_eq(unknown.auth_code, wrong.auth_code);
	ck_assert_str_eq(wrong.sqlstate, "28P01");
	ck_assert_str_eq(unknown.sqlstate, "28P01");
	bool sasl = wrong.auth_code == AUTH_REQ_SASL;
	char *trustuser = refusal(sasl, "trustuser"), *nosuchuser = refusal(sasl, "nosuchuser");
	ck_assert_str_eq(wrong.message, trustuser);
	ck_assert_str_eq(unknown.message, nosuchuser);

	/* And through libpq, which runs the real exchange for each method. */
	assert_connect_fails_with(s, "dbname=app user=trustuser password=wrong", trustuser);
	assert_connect_fails_with(s, "dbname=app user=nosuchuser password=trustuserpw", nosuchuser);
	free(trustuser);
	free(nosuchuser);
	assert_logs_in_as(s, "dbname=app user=trustuser password=trustuserpw", "trustuser", "app");
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_client_scram_auth_type_refuses_md5_secret_even_with_right_password)
{
	char *list = userlist_line("trustuser", SECRET_MD5);
	struct harness_sluice *s = start_with_auth("scram-sha-256", list, NULL);
	free(list);
	assert_connect_fails_with(s, "dbname=app user=trustuser password=trustuserpw",
		"SASL authentication failed");
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_client_auth_any_lets_any_name_in_as_forced_user)
{
	struct harness_sluice *s = start_with_auth("any", NULL,
		"app = host=@PGHOST@ port=@PGPORT@ dbname=app user=trustuser\n");
	assert_logs_in_as(s, "dbname=app user=whoever", "trustuser", "app");
	assert_logs_in_as(s, "dbname=app user=someone_else password=ignored", "trustuser", "app");
	struct raw_outcome o = raw_first_answer(s->port, "anybody", "app");
	ck_assert_int_eq(o.auth_code, AUTH_REQ_OK);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_client_auth_any_refuses_database_without_forced_user)
{
	struct harness_sluice *s = start_with_auth("any", NULL,
		"app = host=@PGHOST@ port=@PGPORT@ dbname=app user=trustuser\n"
		"postgres = host=@PGHOST@ port=@PGPORT@ dbname=postgres\n");
	struct raw_outcome o = raw_first_answer(s->port, "whoever", "postgres");
	ck_assert_int_eq(o.auth_code, -1);
	ck_assert_str_eq(o.sqlstate, "28000");
	assert_logs_in_as(s, "dbname=app user=whoever", "trustuser", "app");
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_client_trust_refuses_user_missing_from_auth_file)
{
	/* doc/config.md: with trust, the user must still be listed in auth_file when one is set. */
	char *list = userlist_line("trustuser", SECRET_PLAIN);
	struct harness_sluice *s = start_with_auth("trust", list, NULL);
	free(list);
	assert_logs_in_as(s, "dbname=app user=trustuser", "trustuser", "app");
	/* Refused by sluice itself, before any server login is tried for it. */
	struct raw_outcome o = raw_first_answer(s->port, "scramuser", "app");
	ck_assert_int_eq(o.auth_code, -1);
	/* PgBouncer's words: no password is involved. */
	ck_assert_str_eq(o.sqlstate, "28000");
	ck_assert_str_eq(o.message, "\"trust\" authentication failed");
	assert_connect_fails_with(s, "dbname=app user=scramuser", "\"trust\" authentication failed");
	ck_assert_int_eq(harness_sluice_log_count(s, "closing because: \"trust\" authentication failed"), 2);
	ck_assert_int_eq(failed_server_logins(s), 0);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/*
 * An unknown database is named only to a client that authenticated, as
 * PostgreSQL and PgBouncer do: without the password, database names cannot
 * be probed (the answer is the same as for a wrong password).
 */
START_TEST(test_client_unknown_database_is_3D000_only_after_authentication)
{
	char *list = userlist_line("trustuser", SECRET_PLAIN);
	struct harness_sluice *s = start_with_auth("scram-sha-256", list, NULL);
	free(list);
	struct raw_outcome o = raw_first_answer(s->port, "trustuser", "nosuchdb");
	ck_assert_int_eq(o.auth_code, 10); /* AuthenticationSASL, as for a database that exists */
	assert_connect_fails_with(s, "dbname=nosuchdb user=trustuser password=wrong",
		"SASL authentication failed");
	assert_connect_fails_with(s, "dbname=nosuchdb user=nosuchuser password=wrong",
		"SASL authentication failed");
	assert_connect_fails_with(s, "dbname=nosuchdb user=trustuser password=trustuserpw",
		"no such database: nosuchdb");
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_client_fallback_entry_serves_any_database_name)
{
	struct harness_sluice *s = start_with_auth("trust", NULL,
		"* = host=@PGHOST@ port=@PGPORT@\n");
	assert_logs_in_as(s, "dbname=app user=trustuser", "trustuser", "app");
	assert_logs_in_as(s, "dbname=postgres user=trustuser", "trustuser", "postgres");
	/* A name PostgreSQL does not know either: PostgreSQL's own error comes through. */
	assert_connect_fails_with(s, "dbname=authit_nowhere user=trustuser",
		"database \"authit_nowhere\" does not exist");
	assert_logs_in_as(s, "dbname=app user=trustuser", "trustuser", "app");
	/* Each name's first use is logged once, in PgBouncer's words. */
	char *log = harness_sluice_log(s);
	const char *first = strstr(log, "registered new auto-database: app");
	ck_assert_msg(first && !strstr(first + 1, "registered new auto-database: app"), "%s", log);
	ck_assert_msg(strstr(log, "registered new auto-database: postgres"), "%s", log);
	free(log);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_client_welcome_has_server_version_and_sluice_backend_key)
{
	struct harness_sluice *s = start_with_auth("trust", NULL, NULL);
	char *pg_version = harness_pg_exec("SHOW server_version");
	/* Twice: the first client is greeted after a login, the second from the pool's welcome. */
	for (int i = 0; i < 2; i++) {
		PGconn *conn = harness_connect(s, "dbname=app user=trustuser");
		const char *v = PQparameterStatus(conn, "server_version");
		ck_assert_ptr_nonnull(v);
		ck_assert_str_eq(v, pg_version);
		ck_assert_ptr_nonnull(PQparameterStatus(conn, "server_encoding"));
		ck_assert_ptr_nonnull(PQparameterStatus(conn, "client_encoding"));
		char *pid = harness_query_text(conn, "SELECT pg_backend_pid()");
		ck_assert_int_ne(PQbackendPID(conn), atoi(pid));
		free(pid);
		PQfinish(conn);
	}
	free(pg_version);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* ---- server side ------------------------------------------------------------------- */

/*
 * Each case: the user, the client auth_type, the secret in auth_file, and
 * optionally a [databases] password. The server's method is the user's
 * pg_hba.conf line.
 */
static const struct server_case {
	const char *user;
	const char *auth_type;
	enum secret_kind kind;
	bool db_password; /* the password is in [databases], the auth_file only has the client's */
} server_cases[] = {
	/* pg_hba md5, with a plaintext and with an md5 secret. */
	{ "md5user", "md5", SECRET_PLAIN, false },
	{ "md5user", "md5", SECRET_MD5, false },
	{ "md5user", "plain", SECRET_MD5, false },
	/* pg_hba scram-sha-256, from a plaintext password. */
	{ "scramuser", "md5", SECRET_PLAIN, false },
	{ "scramuser", "plain", SECRET_PLAIN, false },
	/* md5 with a SCRAM secret means SCRAM for the client; its keys log in to the server. */
	{ "scramuser", "md5", SECRET_SCRAM, false },
	/* A SCRAM secret and a cleartext client: the password the client sent is used. */
	{ "scramuser", "plain", SECRET_SCRAM, false },
	/* pg_hba password (cleartext). */
	{ "plainuser", "plain", SECRET_PLAIN, false },
	{ "plainuser", "md5", SECRET_PLAIN, false },
	{ "plainuser", "plain", SECRET_SCRAM, false },
	{ "plainuser", "trust", SECRET_PLAIN, true },
	/* pg_hba trust. */
	{ "trustuser", "md5", SECRET_MD5, false },
};

START_TEST(test_server_login_uses_the_secret_the_server_method_needs)
{
	const struct server_case *sc = &server_cases[_i];
	char *list = userlist_line(sc->user, sc->kind);
	char *dbs = NULL;
	if (sc->db_password) {
		free(list);
		list = xstrdup("\"someclient\" \"x\"\n");
		dbs = xasprintf("app = host=@PGHOST@ port=@PGPORT@ dbname=app "
				"user=%s password=%spw\n",
			sc->user, sc->user);
	}
	struct harness_sluice *s = start_with_auth(sc->auth_type, list, dbs);
	free(list);
	free(dbs);
	char *conninfo = sc->db_password
		? xstrdup("dbname=app user=someclient")
		: xasprintf("dbname=app user=%s password=%spw", sc->user, sc->user);
	assert_logs_in_as(s, conninfo, sc->user, "app");
	/* A second client reuses the server or logs in again the same way. */
	assert_logs_in_as(s, conninfo, sc->user, "app");
	free(conninfo);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_server_login_trust_needs_no_password_anywhere)
{
	/* No auth_file at all: nothing to send to PostgreSQL, and it asks for nothing. */
	struct harness_sluice *s = start_with_auth("trust", NULL, NULL);
	assert_logs_in_as(s, "dbname=app user=trustuser", "trustuser", "app");
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/*
 * Client auth_types against a SCRAM secret, then a SCRAM server login: a
 * SCRAM exchange (scram-sha-256, and md5, which means SCRAM with such a
 * secret) reveals the keys in the proof and the server login uses them; a
 * cleartext password (plain) is checked by deriving the keys from the
 * secret's salt and count, and the server login then derives its proof from
 * that password. Both derivations run on the thread pool.
 */
static const char *const passthrough_auth_types[] = { "scram-sha-256", "md5", "plain" };

START_TEST(test_server_login_scram_passthrough_uses_client_keys)
{
	/*
	 * auth_file holds only the SCRAM secret PostgreSQL has: sluice can log
	 * in to PostgreSQL only with what the client's login gave it.
	 */
	char *list = userlist_line("scramuser", SECRET_SCRAM);
	ck_assert_ptr_null(strstr(list, "scramuserpw"));
	struct harness_sluice *s = start_with_auth(passthrough_auth_types[_i], list, NULL);
	free(list);
	/* Fresh servers for each client: the keys are reused for logins after the first. */
	PGconn *a = harness_connect(s, "dbname=app user=scramuser password=scramuserpw");
	PGconn *b = harness_connect(s, "dbname=app user=scramuser password=scramuserpw");
	char *who = harness_query_text(a, "BEGIN; SELECT current_user");
	ck_assert_str_eq(who, "scramuser");
	free(who);
	/* a holds its server in a transaction, so b needs a second server login. */
	who = harness_query_text(b, "SELECT current_user");
	ck_assert_str_eq(who, "scramuser");
	free(who);
	char *pid_a = harness_query_text(a, "SELECT pg_backend_pid()");
	char *pid_b = harness_query_text(b, "SELECT pg_backend_pid()");
	ck_assert_str_ne(pid_a, pid_b); /* two server logins, both with the keys */
	ck_assert_int_eq(harness_pg_exec_long("SELECT count(*) FROM pg_stat_activity "
					      "WHERE usename = 'scramuser' AND pid IN (%s, %s)",
				 pid_a, pid_b),
		2);
	free(pid_a);
	free(pid_b);
	free(harness_query_text(a, "COMMIT"));
	PQfinish(a);
	PQfinish(b);
	/* A wrong password still fails: the keys are the secret's, not a blank cheque. */
	char *words = refusal(strcmp(passthrough_auth_types[_i], "plain") != 0, "scramuser");
	assert_connect_fails_with(s, "dbname=app user=scramuser password=wrong", words);
	free(words);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/*
 * trust for the client, and no secret that can answer the server's SCRAM
 * request: a SCRAM secret without the client's keys, or an MD5 hash (in
 * PgBouncer's words, "wrong password type"), or no auth_file at all.
 */
static const struct unusable_case {
	bool with_file;
	enum secret_kind kind;
	const char *error;
} unusable_cases[] = {
	{ true, SECRET_SCRAM, "server login failed: wrong password type" },
	{ true, SECRET_MD5, "server login failed: wrong password type" },
	{ false, SECRET_PLAIN, "server login failed: no password available" },
};

START_TEST(test_server_login_without_usable_secret_fails_the_client)
{
	const struct unusable_case *uc = &unusable_cases[_i];
	char *list = uc->with_file ? userlist_line("scramuser", uc->kind) : NULL;
	struct harness_sluice *s = start_with_auth("trust", list, NULL);
	free(list);
	char *err = harness_connect_error(s, "dbname=app user=scramuser");
	ck_assert_msg(strstr(err, uc->error) != NULL, "%s", err);
	free(err);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_server_login_failure_gives_postgres_error_and_fails_fast_within_retry)
{
	/* The client is trusted; the server refuses the auth_file's password. */
	char *list = xstrdup("\"scramuser\" \"notscramuserpw\"\n\"trustuser\" \"\"\n");
	struct harness_sluice *s = harness_sluice_start("auth_type = trust\n"
							"server_login_retry = 30\n",
		NULL, list);
	free(list);

	struct raw_outcome o = raw_first_answer(s->port, "scramuser", "app");
	ck_assert_int_eq(o.auth_code, -1);
	ck_assert_str_eq(o.sqlstate, "28P01");
	ck_assert_str_eq(o.message, "password authentication failed for user \"scramuser\"");
	ck_assert_int_eq(failed_server_logins(s), 1);

	/* Within server_login_retry: the same error at once, without asking PostgreSQL. */
	long start = harness_now_ms();
	assert_connect_fails_with(s, "dbname=app user=scramuser",
		"password authentication failed for user \"scramuser\"");
	o = raw_first_answer(s->port, "scramuser", "app");
	ck_assert_str_eq(o.sqlstate, "28P01");
	ck_assert_int_lt(harness_now_ms() - start, 5000);
	ck_assert_int_eq(failed_server_logins(s), 1);

	/* Other pools are served. */
	assert_logs_in_as(s, "dbname=app user=trustuser", "trustuser", "app");
	assert_logs_in_as(s, "dbname=postgres user=trustuser", "trustuser", "postgres");
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_server_login_is_tried_again_after_server_login_retry)
{
	char *list = xstrdup("\"scramuser\" \"notscramuserpw\"\n");
	struct harness_sluice *s = harness_sluice_start("auth_type = trust\n"
							"server_login_retry = 0.5\n",
		NULL, list);
	free(list);
	assert_connect_fails_with(s, "dbname=app user=scramuser",
		"password authentication failed for user \"scramuser\"");
	long failed_at = harness_now_ms();
	ck_assert_int_eq(failed_server_logins(s), 1);
	/* Past the window (with a margin for the loop's clock), a new login is attempted. */
	while (harness_now_ms() - failed_at < 700)
		usleep(20 * 1000);
	assert_connect_fails_with(s, "dbname=app user=scramuser",
		"password authentication failed for user \"scramuser\"");
	ck_assert_int_eq(failed_server_logins(s), 2);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_server_login_recovers_once_the_cause_is_fixed_and_retry_passed)
{
	free(harness_pg_exec("DROP DATABASE IF EXISTS authit_late"));
	struct harness_sluice *s = harness_sluice_start("auth_type = trust\n"
							"server_login_retry = 0.5\n",
		"late = host=@PGHOST@ port=@PGPORT@ dbname=authit_late user=trustuser\n"
		"app = host=@PGHOST@ port=@PGPORT@ dbname=app\n",
		NULL);
	char *err = harness_connect_error(s, "dbname=late user=trustuser");
	ck_assert_msg(strstr(err, "database \"authit_late\" does not exist") != NULL, "%s", err);
	free(err);
	long failed_at = harness_now_ms();
	free(harness_pg_exec("CREATE DATABASE authit_late"));
	while (harness_now_ms() - failed_at < 700)
		usleep(20 * 1000);
	PGconn *conn = harness_connect(s, "dbname=late user=anyone");
	char *db = harness_query_text(conn, "SELECT current_database()");
	ck_assert_str_eq(db, "authit_late");
	free(db);
	PQfinish(conn);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
	free(harness_pg_exec("DROP DATABASE authit_late"));
}
END_TEST

static Suite *auth_methods_suite(void)
{
	Suite *s = suite_create("auth_methods");
	TCase *tc = harness_tcase("client");
	tcase_add_loop_test(tc,
		test_client_auth_type_and_secret_choose_method_and_right_password_logs_in, 0,
		(int)ARRAY_SIZE(method_cases));
	tcase_add_loop_test(tc, test_client_wrong_password_and_unknown_user_fail_alike_with_28P01,
		0, (int)ARRAY_SIZE(password_types));
	tcase_add_test(tc, test_client_scram_auth_type_refuses_md5_secret_even_with_right_password);
	tcase_add_test(tc, test_client_auth_any_lets_any_name_in_as_forced_user);
	tcase_add_test(tc, test_client_auth_any_refuses_database_without_forced_user);
	tcase_add_test(tc, test_client_trust_refuses_user_missing_from_auth_file);
	tcase_add_test(tc, test_client_unknown_database_is_3D000_only_after_authentication);
	tcase_add_test(tc, test_client_fallback_entry_serves_any_database_name);
	tcase_add_test(tc, test_client_welcome_has_server_version_and_sluice_backend_key);
	suite_add_tcase(s, tc);

	tc = harness_tcase("server");
	tcase_add_loop_test(tc, test_server_login_uses_the_secret_the_server_method_needs, 0,
		(int)ARRAY_SIZE(server_cases));
	tcase_add_test(tc, test_server_login_trust_needs_no_password_anywhere);
	tcase_add_loop_test(tc, test_server_login_scram_passthrough_uses_client_keys, 0,
		(int)ARRAY_SIZE(passthrough_auth_types));
	tcase_add_loop_test(tc, test_server_login_without_usable_secret_fails_the_client, 0,
		(int)ARRAY_SIZE(unusable_cases));
	tcase_add_test(tc,
		test_server_login_failure_gives_postgres_error_and_fails_fast_within_retry);
	tcase_add_test(tc, test_server_login_is_tried_again_after_server_login_retry);
	tcase_add_test(tc, test_server_login_recovers_once_the_cause_is_fixed_and_retry_passed);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return harness_run_suite(auth_methods_suite());
}
