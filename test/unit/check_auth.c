/*
 * check_auth.c - unit tests of the auth module: auth_file parsing (a table of
 * good and bad files, errors with line numbers, from a file and from text), md5 known answers, and whole
 * conversations driven through auth_session for every auth_type, every kind
 * of stored secret, right and wrong passwords and unknown users. The test
 * plays the client: it parses the Authentication requests the session writes
 * and answers them (SCRAM with scram.c's client role).
 *
 * It does not test scram.c's message parsing (check_scram.c does) nor any
 * socket code.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/auth.h"
#include "sluice/pkt.h"

#define USER "user"
#define PASSWORD "pencil"
/* printf '%s' pencil user | md5sum */
#define MD5_SECRET "md520c46e3762c864548e296b33c3406aa9"
/* RFC 7677's salt and iterations for "pencil" (values computed with Python hashlib). */
#define SCRAM_SECRET                                                                               \
	"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=" \
	":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="

static const uint8_t seed[SCRAM_KEY_LEN] = { 42 };

/* ---- auth_file ---------------------------------------------------------- */

/* Writes text to a fresh temporary file; the caller unlinks and frees the path. */
static char *write_temp(const char *text)
{
	char *path = strdup("/tmp/check_auth_XXXXXX");
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	size_t len = strlen(text);
	ck_assert_int_eq(write(fd, text, len), (ssize_t)len);
	close(fd);
	return path;
}

struct expect_user {
	const char *name;
	enum auth_secret_kind kind;
	const char *text;
};

struct file_case {
	const char *text;
	int err_line; /* 0: loads; else the line the error names */
	const char *err_what; /* part of the message after "path:line: " */
	size_t nusers;
	struct expect_user users[4];
};

static const struct file_case file_cases[] = {
	{ "", 0, NULL, 0, { { 0 } } },
	{ "\n\n; comment\n# comment\n   \n\t\n", 0, NULL, 0, { { 0 } } },
	{ "\"alice\" \"secret\"\n", 0, NULL, 1, { { "alice", AUTH_SECRET_PLAIN, "secret" } } },
	{ "\"alice\" \"secret\"", 0, NULL, 1, { { "alice", AUTH_SECRET_PLAIN, "secret" } } },
	{ "\"alice\" \"secret\"\r\n", 0, NULL, 1, { { "alice", AUTH_SECRET_PLAIN, "secret" } } },
	{ "  \"alice\"\t\"secret\" \"third field\" and more\n",
	  0,
	  NULL,
	  1,
	  { { "alice", AUTH_SECRET_PLAIN, "secret" } } },
	/* A doubled quote is a literal quote: this is one field, alice"secret. */
	{ "\"alice\"\"secret\"\n", 1, "expected a double-quoted secret", 0, { { 0 } } },
	{ "\"a\"\"b\" \"p\"\"w\"\"\"\n", 0, NULL, 1, { { "a\"b", AUTH_SECRET_PLAIN, "p\"w\"" } } },
	{ "\"user\" \"" MD5_SECRET "\"\n",
	  0,
	  NULL,
	  1,
	  { { "user", AUTH_SECRET_MD5, MD5_SECRET } } },
	{ "\"user\" \"" SCRAM_SECRET "\"\n",
	  0,
	  NULL,
	  1,
	  { { "user", AUTH_SECRET_SCRAM, SCRAM_SECRET } } },
	{ "\"nopw\" \"\"\n", 0, NULL, 1, { { "nopw", AUTH_SECRET_NONE, "" } } },
	/* Not exactly "md5" + 32 lowercase hex digits: a plaintext password. */
	{ "\"u1\" \"md520C46E3762C864548E296B33C3406AA9\"\n\"u2\" \"md5abc\"\n"
	  "\"u3\" \"md520c46e3762c864548e296b33c3406aa90\"\n",
	  0,
	  NULL,
	  3,
	  { { "u1", AUTH_SECRET_PLAIN, "md520C46E3762C864548E296B33C3406AA9" },
	    { "u2", AUTH_SECRET_PLAIN, "md5abc" },
	    { "u3", AUTH_SECRET_PLAIN, "md520c46e3762c864548e296b33c3406aa90" } } },
	{ "\"dup\" \"first\"\n\"other\" \"x\"\n\"dup\" \"second\"\n",
	  0,
	  NULL,
	  2,
	  { { "dup", AUTH_SECRET_PLAIN, "second" }, { "other", AUTH_SECRET_PLAIN, "x" } } },
	{ "alice secret\n", 1, "expected a double-quoted user name", 0, { { 0 } } },
	{ "; ok\n\"alice\" secret\n", 2, "expected a double-quoted secret", 0, { { 0 } } },
	{ "\"a\" \"b\"\n\n\"alice\n", 3, "unterminated user name", 0, { { 0 } } },
	{ "\"alice\" \"secret\n", 1, "unterminated secret", 0, { { 0 } } },
	{ "\"alice\"\n", 1, "expected a double-quoted secret", 0, { { 0 } } },
	{ "\"\" \"secret\"\n", 1, "empty user name", 0, { { 0 } } },
	{ "\"a\" \"b\"\n\"u\" \"SCRAM-SHA-256$4096:QUJD$short:short\"\n",
	  2,
	  "malformed SCRAM-SHA-256 secret",
	  0,
	  { { 0 } } },
};

START_TEST(test_auth_user_new_classifies_a_looked_up_secret)
{
	/* SQL NULL and "" are a user without a password, whom nothing matches. */
	struct auth_user *u = auth_user_new("u", NULL);
	ck_assert_ptr_nonnull(u);
	ck_assert_int_eq(u->secret.kind, AUTH_SECRET_NONE);
	ck_assert_str_eq(u->name, "u");
	auth_user_free(u);
	/* A malformed SCRAM secret is refused rather than taken for a password. */
	ck_assert_ptr_null(auth_user_new("u", "SCRAM-SHA-256$4096:bad"));
	/* A password that merely starts with md5 is a password. */
	u = auth_user_new("u", "md5notasecret");
	ck_assert_int_eq(u->secret.kind, AUTH_SECRET_PLAIN);
	/* Its md5 secret is made once, from the password and the name. */
	char md5[36];
	auth_md5_secret("md5notasecret", "u", md5);
	ck_assert_str_eq(u->md5, md5);
	auth_user_free(u);
	/* PostgreSQL's md5 of password "pw" for role "u": md5("pwu"). */
	u = auth_user_new("u", "pw");
	ck_assert_str_eq(u->md5, "md5b350798a23d7544eb353a6f8dca231c2");
	auth_user_free(u);
	u = auth_user_new("u", "md5b350798a23d7544eb353a6f8dca231c2");
	ck_assert_int_eq(u->secret.kind, AUTH_SECRET_MD5);
	ck_assert_str_eq(u->md5, "md5b350798a23d7544eb353a6f8dca231c2");
	auth_user_free(u);
	u = auth_user_new("u", NULL);
	ck_assert_str_eq(u->md5, "");
	auth_user_free(u);
}
END_TEST

START_TEST(test_auth_userlist_load_table)
{
	const struct file_case *tc = &file_cases[_i];
	char *path = write_temp(tc->text);
	struct auth_userlist *list = NULL;
	char err[256] = "";
	int rc = auth_userlist_load(path, &list, err, sizeof(err));
	if (tc->err_line) {
		ck_assert_msg(rc == -1, "case %d loaded", _i);
		ck_assert_ptr_null(list);
		char want[512];
		snprintf(want, sizeof(want), "%s:%d: %s", path, tc->err_line, tc->err_what);
		ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "case %d: \"%s\", want \"%s\"",
			      _i, err, want);
	} else {
		ck_assert_msg(rc == 0, "case %d: %s", _i, err);
		ck_assert_uint_eq(HASH_COUNT(list->users), tc->nusers);
		for (size_t i = 0; i < tc->nusers; i++) {
			const struct expect_user *e = &tc->users[i];
			const struct auth_user *u = auth_userlist_find(list, e->name);
			ck_assert_msg(u != NULL, "case %d: no user \"%s\"", _i, e->name);
			ck_assert_str_eq(u->name, e->name);
			ck_assert_int_eq(u->secret.kind, e->kind);
			ck_assert_str_eq(u->secret.text, e->text);
			if (e->kind == AUTH_SECRET_SCRAM)
				ck_assert_int_eq(u->secret.scram.iterations, 4096);
		}
		ck_assert_ptr_null(auth_userlist_find(list, "nobody"));
	}
	auth_userlist_unref(list);
	unlink(path);
	free(path);
}
END_TEST

/* The text parser gives what loading a file of the same text gives, naming the name it was given. */
START_TEST(test_auth_userlist_parse_agrees_with_load)
{
	const struct file_case *tc = &file_cases[_i];
	char *path = write_temp(tc->text);
	struct auth_userlist *loaded = NULL, *parsed = NULL;
	char lerr[256] = "", perr[256] = "";
	int lrc = auth_userlist_load(path, &loaded, lerr, sizeof(lerr));
	int prc = auth_userlist_parse(tc->text, strlen(tc->text), "users.txt", &parsed, perr,
				      sizeof(perr));
	ck_assert_int_eq(lrc, prc);
	if (lrc < 0) {
		ck_assert_ptr_null(parsed);
		ck_assert_msg(strncmp(perr, "users.txt:", 10) == 0, "%s", perr);
		ck_assert_str_eq(perr + strlen("users.txt"), lerr + strlen(path));
	} else {
		ck_assert_uint_eq(HASH_COUNT(parsed->users), HASH_COUNT(loaded->users));
		const struct auth_user *u, *tmp;
		HASH_ITER(hh, loaded->users, u, tmp) {
			const struct auth_user *p = auth_userlist_find(parsed, u->name);
			ck_assert_ptr_nonnull(p);
			ck_assert_str_eq(p->secret.text, u->secret.text);
		}
	}
	auth_userlist_unref(loaded);
	auth_userlist_unref(parsed);
	unlink(path);
	free(path);
}
END_TEST

/* A NUL ends its line's text, not the file's, as getline() reads a file. */
START_TEST(test_auth_userlist_parse_nul_ends_the_line)
{
	static const char text[] = "\"a\" \"x\"\0junk \"\n\"b\" \"y\"\n";
	struct auth_userlist *list = NULL;
	char err[256] = "";
	ck_assert_int_eq(auth_userlist_parse(text, sizeof(text) - 1, "u", &list, err, sizeof(err)),
			 0);
	ck_assert_uint_eq(HASH_COUNT(list->users), 2);
	ck_assert_str_eq(auth_userlist_find(list, "b")->secret.text, "y");
	auth_userlist_unref(list);
}
END_TEST

START_TEST(test_auth_userlist_missing_file_names_path)
{
	struct auth_userlist *list = (struct auth_userlist *)1;
	char err[256] = "";
	ck_assert_int_eq(auth_userlist_load("/nonexistent/userlist.txt", &list, err, sizeof(err)),
			 -1);
	ck_assert_ptr_null(list);
	ck_assert_msg(strncmp(err, "/nonexistent/userlist.txt: ", 27) == 0, "%s", err);
	ck_assert_ptr_null(auth_userlist_find(NULL, "x"));
}
END_TEST

/* ---- md5 ---------------------------------------------------------------- */

START_TEST(test_auth_md5_known_answers)
{
	char out[36];
	auth_md5_secret(PASSWORD, USER, out);
	ck_assert_str_eq(out, MD5_SECRET);
	auth_md5_secret("foo\"bar", "bob", out);
	ck_assert_str_eq(out, "md53a9bdb55f88bab37fa07e602b63be6c8");
	/* md5(md5_hex(pw||user) || salt), computed with Python hashlib. */
	const uint8_t salt[4] = { 1, 2, 3, 4 };
	auth_md5_response(PASSWORD, USER, salt, out);
	ck_assert_str_eq(out, "md54376eb6913b38f9aaff38dc7cf19ca76");
	/* From the stored md5 secret the response is the same. */
	auth_md5_response(MD5_SECRET, USER, salt, out);
	ck_assert_str_eq(out, "md54376eb6913b38f9aaff38dc7cf19ca76");
	const uint8_t salt2[4] = { 1, 2, 3, 5 };
	auth_md5_response(PASSWORD, USER, salt2, out);
	ck_assert_str_ne(out, "md54376eb6913b38f9aaff38dc7cf19ca76");
}
END_TEST

/* ---- conversations ------------------------------------------------------ */

enum secret_case { SC_PLAIN, SC_MD5, SC_SCRAM, SC_NONE, SC_UNKNOWN };

static const char *secret_texts[] = { PASSWORD, MD5_SECRET, SCRAM_SECRET, "" };

/*
 * A user holding secret kind sc (NULL for SC_UNKNOWN), made as an auth_query
 * look-up makes one, so that the classification is checked too.
 */
static struct auth_user *make_user(enum secret_case sc)
{
	if (sc == SC_UNKNOWN)
		return NULL;
	static const enum auth_secret_kind kinds[] = { AUTH_SECRET_PLAIN, AUTH_SECRET_MD5,
						       AUTH_SECRET_SCRAM, AUTH_SECRET_NONE };
	struct auth_user *u = auth_user_new(USER, secret_texts[sc]);
	ck_assert_ptr_nonnull(u);
	ck_assert_int_eq(u->secret.kind, kinds[sc]);
	return u;
}

/*
 * Takes the one Authentication message in out: its request code and data
 * (copied to data, at most cap bytes). Empties out.
 */
static uint32_t take_auth(struct buf_out *out, uint8_t *data, size_t cap, size_t *dlen)
{
	ck_assert_uint_ge(out->len, 9);
	ck_assert_int_eq(out->data[0], PKT_Authentication);
	uint32_t len = get_be32(out->data + 1);
	ck_assert_uint_eq(len + 1, out->len);
	uint32_t code = get_be32(out->data + 5);
	*dlen = out->len - 9;
	ck_assert_uint_le(*dlen, cap);
	memcpy(data, out->data + 9, *dlen);
	buf_out_reset(out);
	return code;
}

#define NO_REQUEST 99u

struct conv_result {
	uint32_t request; /* first Authentication code, NO_REQUEST for trust */
	int status;
	bool keys;
	uint8_t client_key[SCRAM_KEY_LEN];
	uint8_t server_key[SCRAM_KEY_LEN];
	bool password_kept;
	bool failure_set;
	int derived; /* how many times the session asked for a key derivation */
};

/*
 * Plays the connection code's part after a step: while the session asks for
 * a key derivation (AUTH_DERIVE), it has written nothing and takes no
 * message; the job is taken, run and handed back. Returns the final status.
 */
static int run_derivations(struct auth_session *s, int rc, struct buf_out *out,
			   struct conv_result *res)
{
	while (rc == AUTH_DERIVE) {
		res->derived++;
		ck_assert_uint_eq(out->len, 0);
		struct scram_job *job = auth_session_take_job(s);
		ck_assert_ptr_nonnull(job);
		ck_assert_ptr_null(auth_session_take_job(s));
		scram_job_run(job);
		rc = auth_session_resume(s, job, out);
		scram_job_free(job);
	}
	return rc;
}

/* Plays a well-behaved client that knows password through a whole exchange. */
static struct conv_result converse(enum auth_type type, const struct auth_user *u,
				   const char *password)
{
	struct conv_result res = { .request = NO_REQUEST };
	struct auth_session *s = auth_session_new(type, USER, u, seed);
	struct buf_out out;
	buf_out_init(&out);
	uint8_t data[512];
	size_t dlen;
	int rc = run_derivations(s, auth_session_start(s, &out), &out, &res);
	if (rc == AUTH_OK) {
		ck_assert_uint_eq(out.len, 0);
		goto done;
	}
	ck_assert_int_eq(rc, AUTH_CONTINUE);
	res.request = take_auth(&out, data, sizeof(data), &dlen);
	switch (res.request) {
	case PKT_AUTH_CLEARTEXT:
		ck_assert_uint_eq(dlen, 0);
		rc = auth_session_step(s, (const uint8_t *)password, strlen(password) + 1, &out);
		rc = run_derivations(s, rc, &out, &res);
		break;
	case PKT_AUTH_MD5: {
		ck_assert_uint_eq(dlen, 4);
		char resp[36];
		auth_md5_response(password, USER, data, resp);
		rc = auth_session_step(s, (const uint8_t *)resp, strlen(resp) + 1, &out);
		rc = run_derivations(s, rc, &out, &res);
		break;
	}
	case PKT_AUTH_SASL: {
		ck_assert_uint_eq(dlen, sizeof("SCRAM-SHA-256") + 1);
		ck_assert_mem_eq(data, "SCRAM-SHA-256\0", dlen);
		struct scram_client *c = scram_client_new(password, NULL, NULL);
		char *first = scram_client_first(c);
		uint8_t body[512];
		size_t flen = strlen(first);
		memcpy(body, "SCRAM-SHA-256", sizeof("SCRAM-SHA-256"));
		put_be32(body + sizeof("SCRAM-SHA-256"), (uint32_t)flen);
		memcpy(body + sizeof("SCRAM-SHA-256") + 4, first, flen);
		free(first);
		rc = auth_session_step(s, body, sizeof("SCRAM-SHA-256") + 4 + flen, &out);
		ck_assert_int_eq(rc, AUTH_CONTINUE);
		ck_assert_uint_eq(take_auth(&out, data, sizeof(data), &dlen),
				  PKT_AUTH_SASL_CONTINUE);
		char *final = NULL;
		ck_assert_int_eq(scram_client_final(c, data, dlen, &final), 0);
		rc = auth_session_step(s, (const uint8_t *)final, strlen(final), &out);
		free(final);
		if (rc == AUTH_OK) {
			ck_assert_uint_eq(take_auth(&out, data, sizeof(data), &dlen),
					  PKT_AUTH_SASL_FINAL);
			ck_assert_int_eq(scram_client_verify(c, data, dlen), 0);
		}
		scram_client_free(c);
		break;
	}
	default:
		ck_abort_msg("unexpected request %u", res.request);
	}
	ck_assert_uint_eq(out.len, 0);
done:
	res.status = rc;
	res.keys = auth_session_scram_keys(s, res.client_key, res.server_key);
	res.password_kept = auth_session_password(s) != NULL;
	if (res.password_kept)
		ck_assert_str_eq(auth_session_password(s), password);
	res.failure_set = auth_session_failure(s) != NULL;
	/* After the verdict nothing more is written and nothing more is accepted. */
	ck_assert_int_eq(auth_session_step(s, (const uint8_t *)"x", 2, &out), AUTH_FAILED);
	ck_assert_uint_eq(out.len, 0);
	auth_session_free(s);
	buf_out_deinit(&out);
	return res;
}

struct conv_case {
	enum auth_type type;
	enum secret_case secret;
	uint32_t request;
	bool right_ok; /* does the right password succeed? (a wrong one never does) */
	bool keys; /* are SCRAM keys handed on after success? */
	/*
	 * Does the session ask its caller for a PBKDF2 derivation (AUTH_DERIVE),
	 * which the client module runs off the event loop? Only these two
	 * combinations derive; everything else is cheap enough to run inline.
	 */
	bool derives;
};

static const struct conv_case conv_cases[] = {
	{ AUTH_TYPE_TRUST, SC_PLAIN, NO_REQUEST, true, false, false },
	{ AUTH_TYPE_TRUST, SC_MD5, NO_REQUEST, true, false, false },
	{ AUTH_TYPE_TRUST, SC_SCRAM, NO_REQUEST, true, false, false },
	{ AUTH_TYPE_TRUST, SC_NONE, NO_REQUEST, true, false, false },
	{ AUTH_TYPE_TRUST, SC_UNKNOWN, NO_REQUEST, true, false, false },
	{ AUTH_TYPE_ANY, SC_PLAIN, NO_REQUEST, true, false, false },
	{ AUTH_TYPE_ANY, SC_UNKNOWN, NO_REQUEST, true, false, false },
	{ AUTH_TYPE_PLAIN, SC_PLAIN, PKT_AUTH_CLEARTEXT, true, false, false },
	{ AUTH_TYPE_PLAIN, SC_MD5, PKT_AUTH_CLEARTEXT, true, false, false },
	{ AUTH_TYPE_PLAIN, SC_SCRAM, PKT_AUTH_CLEARTEXT, true, true, true },
	{ AUTH_TYPE_PLAIN, SC_NONE, PKT_AUTH_CLEARTEXT, false, false, false },
	{ AUTH_TYPE_PLAIN, SC_UNKNOWN, PKT_AUTH_CLEARTEXT, false, false, false },
	{ AUTH_TYPE_MD5, SC_PLAIN, PKT_AUTH_MD5, true, false, false },
	{ AUTH_TYPE_MD5, SC_MD5, PKT_AUTH_MD5, true, false, false },
	{ AUTH_TYPE_MD5, SC_SCRAM, PKT_AUTH_SASL, true, true, false },
	{ AUTH_TYPE_MD5, SC_NONE, PKT_AUTH_MD5, false, false, false },
	{ AUTH_TYPE_MD5, SC_UNKNOWN, PKT_AUTH_MD5, false, false, false },
	{ AUTH_TYPE_SCRAM_SHA_256, SC_PLAIN, PKT_AUTH_SASL, true, false, true },
	{ AUTH_TYPE_SCRAM_SHA_256, SC_MD5, PKT_AUTH_SASL, false, false, false },
	{ AUTH_TYPE_SCRAM_SHA_256, SC_SCRAM, PKT_AUTH_SASL, true, true, false },
	{ AUTH_TYPE_SCRAM_SHA_256, SC_NONE, PKT_AUTH_SASL, false, false, false },
	{ AUTH_TYPE_SCRAM_SHA_256, SC_UNKNOWN, PKT_AUTH_SASL, false, false, false },
};

/* Loop index i: case i / 2, with the right password when i is even. */
START_TEST(test_auth_session_conversation_table)
{
	const struct conv_case *tc = &conv_cases[_i / 2];
	bool right = _i % 2 == 0;
	struct auth_user *u = make_user(tc->secret);
	struct conv_result r = converse(tc->type, u, right ? PASSWORD : "pencil2");
	bool want_ok = tc->request == NO_REQUEST || (right && tc->right_ok);
	ck_assert_msg(r.request == tc->request, "case %d: request %u, want %u", _i, r.request,
		      tc->request);
	ck_assert_msg(r.status == (want_ok ? AUTH_OK : AUTH_FAILED), "case %d: status %d", _i,
		      r.status);
	ck_assert_msg(r.failure_set == !want_ok, "case %d: failure reason", _i);
	ck_assert_msg(r.keys == (want_ok && tc->keys), "case %d: keys %d", _i, r.keys);
	ck_assert_msg(r.derived == (tc->derives ? 1 : 0), "case %d: derived %d times", _i,
		      r.derived);
	ck_assert(r.password_kept == (want_ok && tc->request == PKT_AUTH_CLEARTEXT));
	if (r.keys) {
		/* The keys handed on are the ones the password derives for the stored salt. */
		uint8_t ck[SCRAM_KEY_LEN], sk[SCRAM_KEY_LEN];
		ck_assert_int_eq(scram_derive_keys(PASSWORD, u->secret.scram.salt,
						   u->secret.scram.salt_len,
						   u->secret.scram.iterations, ck, sk),
				 0);
		ck_assert_mem_eq(r.client_key, ck, SCRAM_KEY_LEN);
		ck_assert_mem_eq(r.server_key, sk, SCRAM_KEY_LEN);
	}
	auth_user_free(u);
}
END_TEST

START_TEST(test_auth_scram_keys_log_in_to_server_holding_secret)
{
	/* The keys from a client's SCRAM login let sluice pass a server's SCRAM. */
	struct auth_user *u = make_user(SC_SCRAM);
	struct conv_result r = converse(AUTH_TYPE_SCRAM_SHA_256, u, PASSWORD);
	ck_assert(r.keys);
	struct scram_server *srv = scram_server_new(&u->secret.scram, USER, seed);
	struct scram_client *c = scram_client_new(NULL, r.client_key, r.server_key);
	char *cf = scram_client_first(c), *sf = NULL, *cfin = NULL, *sfin = NULL;
	bool ok = false;
	ck_assert_int_eq(scram_server_first(srv, (const uint8_t *)cf, strlen(cf), &sf), 0);
	ck_assert_int_eq(scram_client_final(c, (const uint8_t *)sf, strlen(sf), &cfin), 0);
	ck_assert_int_eq(scram_server_final(srv, (const uint8_t *)cfin, strlen(cfin), &sfin, &ok),
			 0);
	ck_assert(ok);
	ck_assert_int_eq(scram_client_verify(c, (const uint8_t *)sfin, strlen(sfin)), 0);
	free(cf);
	free(sf);
	free(cfin);
	free(sfin);
	scram_client_free(c);
	scram_server_free(srv);
	auth_user_free(u);
}
END_TEST

START_TEST(test_auth_unknown_user_scram_salt_is_stable)
{
	/* Two attempts for the same unknown user see the same salt: nothing to tell apart. */
	char first[2][256];
	for (int i = 0; i < 2; i++) {
		struct auth_session *s = auth_session_new(AUTH_TYPE_SCRAM_SHA_256, "ghost", NULL,
							  seed);
		struct buf_out out;
		buf_out_init(&out);
		ck_assert_int_eq(auth_session_start(s, &out), AUTH_CONTINUE);
		buf_out_reset(&out);
		static const char body[] = "SCRAM-SHA-256\0\0\0\0\x0bn,,n=,r=abc";
		int rc = auth_session_step(s, (const uint8_t *)body, sizeof(body) - 1, &out);
		ck_assert_int_eq(rc, AUTH_CONTINUE);
		uint8_t data[256];
		size_t dlen;
		ck_assert_uint_eq(take_auth(&out, data, sizeof(data) - 1, &dlen),
				  PKT_AUTH_SASL_CONTINUE);
		data[dlen] = '\0';
		/* Drop the random server nonce: keep ",s=...,i=..." */
		snprintf(first[i], sizeof(first[i]), "%s", strstr((char *)data, ",s="));
		auth_session_free(s);
		buf_out_deinit(&out);
	}
	ck_assert_str_eq(first[0], first[1]);
	ck_assert_ptr_nonnull(strstr(first[0], ",i=4096"));
}
END_TEST

/* ---- malformed and unexpected messages ---------------------------------- */

struct bad_case {
	enum auth_type type;
	enum secret_case secret;
	/* One or two messages fed after start: the last must fail, a first of two continue. */
	const char *m1;
	size_t l1;
	const char *m2;
	size_t l2;
};

#define M(s) s, sizeof(s) - 1
#define GOOD_INITIAL "SCRAM-SHA-256\0\0\0\0\x0bn,,n=,r=abc"

static const struct bad_case bad_cases[] = {
	{ AUTH_TYPE_PLAIN, SC_PLAIN, M(""), NULL, 0 },
	{ AUTH_TYPE_PLAIN, SC_PLAIN, M("pencil"), NULL, 0 }, /* no NUL */
	{ AUTH_TYPE_PLAIN, SC_PLAIN, M("pencil\0\0"), NULL, 0 },
	{ AUTH_TYPE_PLAIN, SC_PLAIN, M("pen\0cil\0"), NULL, 0 },
	{ AUTH_TYPE_MD5, SC_MD5, M(""), NULL, 0 },
	{ AUTH_TYPE_MD5, SC_MD5, M("md5"), NULL, 0 },
	{ AUTH_TYPE_MD5, SC_MD5, M("md5\0"), NULL, 0 },
	{ AUTH_TYPE_SCRAM_SHA_256, SC_SCRAM, M(""), NULL, 0 },
	{ AUTH_TYPE_SCRAM_SHA_256, SC_SCRAM, M("SCRAM-SHA-256"), NULL, 0 },
	{ AUTH_TYPE_SCRAM_SHA_256, SC_SCRAM, M("SCRAM-SHA-256\0"), NULL, 0 },
	{ AUTH_TYPE_SCRAM_SHA_256, SC_SCRAM, M("SCRAM-SHA-256\0\0\0\0"), NULL, 0 },
	{ AUTH_TYPE_SCRAM_SHA_256, SC_SCRAM, M("SCRAM-SHA-256\0\xff\xff\xff\xff"), NULL, 0 },
	{ AUTH_TYPE_SCRAM_SHA_256, SC_SCRAM, M("SCRAM-SHA-256\0\0\0\0\x0cn,,n=,r=abc"), NULL, 0 },
	{ AUTH_TYPE_SCRAM_SHA_256, SC_SCRAM, M("SCRAM-SHA-256\0\0\0\0\x0an,,n=,r=abc"), NULL, 0 },
	{ AUTH_TYPE_SCRAM_SHA_256, SC_SCRAM, M("SCRAM-SHA-256\0\x80\0\0\x0bn,,n=,r=abc"), NULL, 0 },
	{ AUTH_TYPE_SCRAM_SHA_256,
	  SC_SCRAM,
	  M("SCRAM-SHA-256-PLUS\0\0\0\0\x0bn,,n=,r=abc"), NULL, 0 },
	{ AUTH_TYPE_SCRAM_SHA_256, SC_SCRAM, M("PLAIN\0\0\0\0\x0bn,,n=,r=abc"), NULL, 0 },
	{ AUTH_TYPE_SCRAM_SHA_256, SC_SCRAM, M("SCRAM-SHA-256\0\0\0\0\x0bp,,n=,r=abc"), NULL, 0 },
	{ AUTH_TYPE_SCRAM_SHA_256, SC_SCRAM, M(GOOD_INITIAL), M("") },
	{ AUTH_TYPE_SCRAM_SHA_256, SC_SCRAM, M(GOOD_INITIAL), M("c=biws") },
	{ AUTH_TYPE_SCRAM_SHA_256, SC_SCRAM, M(GOOD_INITIAL), M(GOOD_INITIAL) },
	{ AUTH_TYPE_SCRAM_SHA_256, SC_UNKNOWN, M(GOOD_INITIAL), M("c=biws,r=abc,p=x") },
};

START_TEST(test_auth_session_rejects_malformed_messages)
{
	const struct bad_case *tc = &bad_cases[_i];
	struct auth_user *u = make_user(tc->secret);
	struct auth_session *s = auth_session_new(tc->type, USER, u, seed);
	struct buf_out out;
	buf_out_init(&out);
	ck_assert_int_eq(auth_session_start(s, &out), AUTH_CONTINUE);
	int n = tc->m2 ? 2 : 1;
	for (int i = 0; i < n; i++) {
		buf_out_reset(&out);
		const char *msg = i == 0 ? tc->m1 : tc->m2;
		size_t len = i == 0 ? tc->l1 : tc->l2;
		int rc = auth_session_step(s, (const uint8_t *)msg, len, &out);
		int want = i == n - 1 ? AUTH_FAILED : AUTH_CONTINUE;
		ck_assert_msg(rc == want, "case %d msg %d: rc %d", _i, i, rc);
	}
	ck_assert_uint_eq(out.len, 0);
	ck_assert_ptr_nonnull(auth_session_failure(s));
	auth_session_free(s);
	buf_out_deinit(&out);
	auth_user_free(u);
}
END_TEST

START_TEST(test_auth_session_rejects_messages_out_of_turn)
{
	struct buf_out out;
	buf_out_init(&out);
	/* Before start. */
	struct auth_session *s = auth_session_new(AUTH_TYPE_PLAIN, USER, NULL, seed);
	ck_assert_int_eq(auth_session_step(s, (const uint8_t *)"pencil", 7, &out), AUTH_FAILED);
	ck_assert_ptr_nonnull(auth_session_failure(s));
	auth_session_free(s);
	/* After trust succeeded. */
	s = auth_session_new(AUTH_TYPE_TRUST, USER, NULL, seed);
	ck_assert_int_eq(auth_session_start(s, &out), AUTH_OK);
	ck_assert_ptr_null(auth_session_failure(s));
	ck_assert_int_eq(auth_session_step(s, (const uint8_t *)"pencil", 7, &out), AUTH_FAILED);
	auth_session_free(s);
	/* Started twice. */
	struct auth_user *u = make_user(SC_PLAIN);
	s = auth_session_new(AUTH_TYPE_MD5, USER, u, seed);
	ck_assert_int_eq(auth_session_start(s, &out), AUTH_CONTINUE);
	buf_out_reset(&out);
	ck_assert_int_eq(auth_session_start(s, &out), AUTH_FAILED);
	ck_assert_uint_eq(out.len, 0);
	auth_session_free(s);
	auth_user_free(u);
	buf_out_deinit(&out);
}
END_TEST

/*
 * While a derivation is pending the session takes no message, a resume
 * without the job or with a job that failed fails the login, and a session
 * freed before its job was taken frees the job (the leak checkers see it).
 */
START_TEST(test_auth_session_pending_derivation_is_strict)
{
	struct buf_out out;
	buf_out_init(&out);
	struct auth_user *plain = make_user(SC_PLAIN), *scram = make_user(SC_SCRAM);

	/* SCRAM against a plaintext secret: nothing is sent until the secret exists. */
	struct auth_session *s = auth_session_new(AUTH_TYPE_SCRAM_SHA_256, USER, plain, seed);
	ck_assert_int_eq(auth_session_start(s, &out), AUTH_DERIVE);
	ck_assert_uint_eq(out.len, 0);
	struct scram_job *job = auth_session_take_job(s);
	ck_assert_ptr_nonnull(job);
	ck_assert_int_eq(auth_session_step(s, (const uint8_t *)GOOD_INITIAL,
					   sizeof(GOOD_INITIAL) - 1, &out),
			 AUTH_FAILED);
	ck_assert_uint_eq(out.len, 0);
	/* The session failed: the job, now run, is refused too. */
	scram_job_run(job);
	ck_assert_int_eq(auth_session_resume(s, job, &out), AUTH_FAILED);
	ck_assert_uint_eq(out.len, 0);
	auth_session_free(s);
	/* The job outlives its session: the connection code frees it. */
	scram_job_free(job);

	/* A job that never ran (rc -1) fails the login rather than passing it. */
	s = auth_session_new(AUTH_TYPE_PLAIN, USER, scram, seed);
	ck_assert_int_eq(auth_session_start(s, &out), AUTH_CONTINUE);
	buf_out_reset(&out);
	ck_assert_int_eq(auth_session_step(s, (const uint8_t *)PASSWORD, sizeof(PASSWORD), &out),
			 AUTH_DERIVE);
	job = auth_session_take_job(s);
	ck_assert_int_eq(auth_session_resume(s, job, &out), AUTH_FAILED);
	ck_assert_ptr_null(auth_session_password(s));
	scram_job_free(job);
	auth_session_free(s);

	/* Resumed with no job, or when none was asked for. */
	s = auth_session_new(AUTH_TYPE_PLAIN, USER, scram, seed);
	ck_assert_int_eq(auth_session_start(s, &out), AUTH_CONTINUE);
	buf_out_reset(&out);
	ck_assert_int_eq(auth_session_step(s, (const uint8_t *)PASSWORD, sizeof(PASSWORD), &out),
			 AUTH_DERIVE);
	ck_assert_int_eq(auth_session_resume(s, NULL, &out), AUTH_FAILED);
	auth_session_free(s); /* with its job never taken */
	s = auth_session_new(AUTH_TYPE_PLAIN, USER, plain, seed);
	ck_assert_int_eq(auth_session_start(s, &out), AUTH_CONTINUE);
	buf_out_reset(&out);
	job = scram_job_new(PASSWORD, (const uint8_t *)"salt", 4, 1);
	scram_job_run(job);
	ck_assert_int_eq(auth_session_resume(s, job, &out), AUTH_FAILED);
	scram_job_free(job);
	auth_session_free(s);

	auth_user_free(plain);
	auth_user_free(scram);
	buf_out_deinit(&out);
}
END_TEST

START_TEST(test_auth_md5_salt_is_random)
{
	struct auth_user *u = make_user(SC_MD5);
	uint8_t salts[2][4];
	for (int i = 0; i < 2; i++) {
		struct auth_session *s = auth_session_new(AUTH_TYPE_MD5, USER, u, seed);
		struct buf_out out;
		buf_out_init(&out);
		ck_assert_int_eq(auth_session_start(s, &out), AUTH_CONTINUE);
		size_t dlen;
		ck_assert_uint_eq(take_auth(&out, salts[i], 4, &dlen), PKT_AUTH_MD5);
		auth_session_free(s);
		buf_out_deinit(&out);
	}
	/* 2^-32 chance of a false failure. */
	ck_assert(memcmp(salts[0], salts[1], 4) != 0);
	auth_user_free(u);
}
END_TEST

static Suite *auth_suite(void)
{
	Suite *s = suite_create("auth");
	TCase *tc = tcase_create("userlist");
	tcase_add_loop_test(tc, test_auth_userlist_load_table, 0, (int)ARRAY_SIZE(file_cases));
	tcase_add_loop_test(tc, test_auth_userlist_parse_agrees_with_load, 0,
			    (int)ARRAY_SIZE(file_cases));
	tcase_add_test(tc, test_auth_userlist_parse_nul_ends_the_line);
	tcase_add_test(tc, test_auth_user_new_classifies_a_looked_up_secret);
	tcase_add_test(tc, test_auth_userlist_missing_file_names_path);
	suite_add_tcase(s, tc);

	tc = tcase_create("md5");
	tcase_add_test(tc, test_auth_md5_known_answers);
	tcase_add_test(tc, test_auth_md5_salt_is_random);
	suite_add_tcase(s, tc);

	tc = tcase_create("session");
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, test_auth_session_conversation_table, 0,
			    (int)(2 * ARRAY_SIZE(conv_cases)));
	tcase_add_test(tc, test_auth_scram_keys_log_in_to_server_holding_secret);
	tcase_add_test(tc, test_auth_unknown_user_scram_salt_is_stable);
	tcase_add_loop_test(tc, test_auth_session_rejects_malformed_messages, 0,
			    (int)ARRAY_SIZE(bad_cases));
	tcase_add_test(tc, test_auth_session_rejects_messages_out_of_turn);
	tcase_add_test(tc, test_auth_session_pending_derivation_is_strict);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(auth_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
