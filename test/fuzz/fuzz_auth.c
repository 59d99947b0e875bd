/*
 * fuzz_auth.c - fuzz target for the auth module (auth.c): the auth_file
 * parser and the server side of a client's authentication, auth_session.
 *
 * Input: a control byte, then bytes read two ways. As an auth_file's text
 * (auth_userlist_parse): it loads or fails with "name:line: why", and a
 * list that loads has users whose secrets are classified as auth.h says.
 * And as the bodies of up to four password-type messages (each a 2-byte
 * big-endian length and that many bytes; a short last one takes the rest),
 * fed to an auth_session as a client would send them. Control bits:
 *   0-2  auth_type: trust, any, plain, md5, scram-sha-256 (modulo 5)
 *   3-5  user: the fixed list's plain, md5, SCRAM and password-less users,
 *        an unknown user, the first user of the input's own list, or
 *        plain and SCRAM again
 *   6    honest client: first the messages a client that knows the
 *        password sends (so the exchange must end as the method and
 *        secret say), then the input's bodies, which must all be refused
 *   7    abandon the first key derivation: the job stays in the session,
 *        or is taken and freed after it, as a client that leaves does
 *
 * Derivations (AUTH_DERIVE) run in the target when cheap: the fixed
 * secrets use 2 iterations, and a job for a new secret (SCRAM against a
 * plaintext password, 4096 iterations) is lowered to 2 before it runs,
 * which changes only how fast the secret it makes is computed. A job above
 * CHEAP_ITERATIONS (from an input's own secret) is abandoned instead.
 *
 * Every Authentication message written is framed and typed as the protocol
 * says; statuses are auth.h's; a finished session refuses every message.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "sluice/auth.h"
#include "sluice/pkt.h"

#define FUZZ_MAX_INPUT (64u * 1024u)
#define CHEAP_ITERATIONS 64
#define PASSWORD "pencil"
#define MECHANISM "SCRAM-SHA-256"

static struct auth_userlist *fixed;
static uint8_t scram_client_key[SCRAM_KEY_LEN], scram_server_key[SCRAM_KEY_LEN];
static const uint8_t mock_seed[SCRAM_KEY_LEN] = { 3 };

static const char *const fixed_names[] = { "plainuser", "md5user", "scramuser", "nopass" };

static void setup(void)
{
	static const uint8_t salt[16] = { 's', 'a', 'l', 't' };
	struct scram_secret sec;
	FUZZ_CHECK(scram_secret_build(PASSWORD, salt, sizeof(salt), 2, &sec) == 0);
	FUZZ_CHECK(scram_derive_keys(PASSWORD, salt, sizeof(salt), 2, scram_client_key,
				     scram_server_key) == 0);
	char *scram = scram_secret_format(&sec);
	char md5[36];
	auth_md5_secret(PASSWORD, "md5user", md5);
	char text[512];
	snprintf(text, sizeof(text),
		 "\"plainuser\" \"" PASSWORD "\"\n\"md5user\" \"%s\"\n\"scramuser\" \"%s\"\n"
		 "\"nopass\" \"\"\n",
		 md5, scram);
	free(scram);
	char err[256];
	FUZZ_CHECK(auth_userlist_parse(text, strlen(text), "fixed", &fixed, err, sizeof(err)) == 0);
}

/* ---- the auth_file -------------------------------------------------------------- */

static int count_lines(const char *text, size_t len)
{
	int n = 1;
	for (size_t i = 0; i + 1 < len; i++)
		n += text[i] == '\n';
	return n;
}

static struct auth_userlist *fuzz_userlist(const char *text, size_t len)
{
	struct auth_userlist *list = (struct auth_userlist *)&fixed; /* must be overwritten */
	char err[256];
	memset(err, 0xAA, sizeof(err));
	int rc = auth_userlist_parse(text, len, "users.txt", &list, err, sizeof(err));
	FUZZ_CHECK(rc == 0 || rc == -1);
	if (rc < 0) {
		/* "users.txt:<line>: why", the line one of the text's. */
		FUZZ_CHECK(list == NULL && memchr(err, '\0', sizeof(err)) != NULL);
		FUZZ_CHECK(strncmp(err, "users.txt:", 10) == 0);
		char *end = NULL;
		long line = strtol(err + 10, &end, 10);
		FUZZ_CHECK(end != err + 10 && strncmp(end, ": ", 2) == 0 && end[2] != '\0');
		FUZZ_CHECK(line >= 1 && line <= count_lines(text, len));
		return NULL;
	}
	FUZZ_CHECK(list != NULL);
	struct auth_user *u, *tmp;
	HASH_ITER(hh, list->users, u, tmp) {
		FUZZ_CHECK(u->name[0] != '\0' && auth_userlist_find(list, u->name) == u);
		const struct auth_secret *s = &u->secret;
		struct scram_secret again;
		switch (s->kind) {
		case AUTH_SECRET_NONE:
			FUZZ_CHECK(s->text[0] == '\0');
			break;
		case AUTH_SECRET_PLAIN:
			FUZZ_CHECK(s->text[0] != '\0' && !auth_is_md5_secret(s->text));
			FUZZ_CHECK(strncmp(s->text, "SCRAM-SHA-256$", 14) != 0);
			break;
		case AUTH_SECRET_MD5:
			FUZZ_CHECK(auth_is_md5_secret(s->text));
			break;
		case AUTH_SECRET_SCRAM:
			FUZZ_CHECK(scram_parse_secret(s->text, &again) == 0);
			FUZZ_CHECK(again.iterations == s->scram.iterations);
			break;
		default:
			FUZZ_CHECK(0);
		}
	}
	return list;
}

/* ---- a session ------------------------------------------------------------------ */

/*
 * Checks the messages out holds from offset from: each an Authentication
 * message, whole, with a code sluice sends. Returns the last one's code
 * (-1 if none) and its data after the code.
 */
static int check_out(const struct buf_out *out, size_t from, const uint8_t **data, size_t *len)
{
	int code = -1;
	while (from < out->len) {
		struct pkt_hdr h;
		FUZZ_CHECK(pkt_frame(out->data + from, out->len - from, 1 << 16, &h) == PKT_OK);
		FUZZ_CHECK(h.type == PKT_Authentication && h.len >= PKT_HDR_LEN + 4);
		FUZZ_CHECK(h.len <= out->len - from);
		code = (int)get_be32(out->data + from + PKT_HDR_LEN);
		FUZZ_CHECK(code == PKT_AUTH_CLEARTEXT || code == PKT_AUTH_MD5 ||
			   code == PKT_AUTH_SASL || code == PKT_AUTH_SASL_CONTINUE ||
			   code == PKT_AUTH_SASL_FINAL);
		if (code == PKT_AUTH_MD5)
			FUZZ_CHECK(h.len == PKT_HDR_LEN + 8);
		*data = out->data + from + PKT_HDR_LEN + 4;
		*len = h.len - PKT_HDR_LEN - 4;
		from += h.len;
	}
	return code;
}

struct run {
	struct auth_session *s;
	struct buf_out out;
	bool abandon; /* control bit 7 */
	bool abandon_take; /* how: take the job and free it after the session */
	struct scram_job *taken; /* the abandoned job, when taken */
	bool abandoned;
};

/* Runs the derivations a status asks for, while cheap; returns the status they lead to. */
static int derive(struct run *r, int st)
{
	while (st == AUTH_DERIVE) {
		size_t before = r->out.len;
		if (r->abandon) {
			if (r->abandon_take)
				r->taken = auth_session_take_job(r->s);
			r->abandoned = true;
			return st;
		}
		struct scram_job *job = auth_session_take_job(r->s);
		FUZZ_CHECK(job != NULL && auth_session_take_job(r->s) == NULL);
		FUZZ_CHECK(job->iterations >= 1 && job->salt_len >= 1);
		/* A new secret's count: lowered, which only makes the secret cheaper. */
		if (job->iterations == SCRAM_DEFAULT_ITERATIONS)
			job->iterations = 2;
		if (job->iterations > CHEAP_ITERATIONS) {
			scram_job_free(job);
			r->abandoned = true;
			return st;
		}
		scram_job_run(job);
		FUZZ_CHECK(job->rc == 0);
		/* Until resumed the session takes no message. */
		FUZZ_CHECK(r->out.len == before);
		st = auth_session_resume(r->s, job, &r->out);
		scram_job_free(job);
	}
	return st;
}

static int step(struct run *r, const uint8_t *body, size_t len)
{
	int st = auth_session_step(r->s, body, len, &r->out);
	FUZZ_CHECK(st == AUTH_CONTINUE || st == AUTH_OK || st == AUTH_FAILED || st == AUTH_DERIVE);
	return derive(r, st);
}

/* The client that knows the password; returns the status the exchange ended in. */
static int honest_client(struct run *r, int st, const char *user, bool password_mode)
{
	const uint8_t *data;
	size_t len;
	size_t from = 0;
	while (st == AUTH_CONTINUE) {
		int code = check_out(&r->out, from, &data, &len);
		from = r->out.len;
		if (code == PKT_AUTH_CLEARTEXT) {
			st = step(r, (const uint8_t *)PASSWORD, sizeof(PASSWORD));
		} else if (code == PKT_AUTH_MD5) {
			char resp[36];
			auth_md5_response(PASSWORD, user, data, resp);
			st = step(r, (const uint8_t *)resp, strlen(resp) + 1);
		} else if (code == PKT_AUTH_SASL) {
			/* The mechanism list: SCRAM-SHA-256, then an empty name. */
			FUZZ_CHECK(len == sizeof(MECHANISM) + 1 && data[len - 1] == '\0');
			FUZZ_CHECK(memcmp(data, MECHANISM, sizeof(MECHANISM)) == 0);
			break;
		} else {
			FUZZ_CHECK(0);
		}
	}
	if (st != AUTH_CONTINUE)
		return st;
	/* SCRAM: a password client only where that is cheap, else one with the fixed keys. */
	struct scram_client *c = password_mode
					 ? scram_client_new(PASSWORD, NULL, NULL)
					 : scram_client_new(NULL, scram_client_key, scram_server_key);
	char *first = scram_client_first(c);
	size_t flen = strlen(first);
	uint8_t *initial = malloc(sizeof(MECHANISM) + 4 + flen);
	FUZZ_CHECK(initial != NULL);
	memcpy(initial, MECHANISM, sizeof(MECHANISM));
	put_be32(initial + sizeof(MECHANISM), (uint32_t)flen);
	memcpy(initial + sizeof(MECHANISM) + 4, first, flen);
	st = step(r, initial, sizeof(MECHANISM) + 4 + flen);
	free(initial);
	free(first);
	if (st == AUTH_CONTINUE) {
		FUZZ_CHECK(check_out(&r->out, from, &data, &len) == PKT_AUTH_SASL_CONTINUE);
		from = r->out.len;
		char *final = NULL;
		if (scram_client_final(c, data, len, &final) == 0) {
			st = step(r, (const uint8_t *)final, strlen(final));
			free(final);
			if (st == AUTH_OK) {
				FUZZ_CHECK(check_out(&r->out, from, &data, &len) ==
					   PKT_AUTH_SASL_FINAL);
				/* The server proves itself to the honest client. */
				FUZZ_CHECK(scram_client_verify(c, data, len) == 0);
			}
		}
	}
	scram_client_free(c);
	return st;
}

static void fuzz_session(uint8_t control, const uint8_t *in, size_t size,
			 const struct auth_userlist *own)
{
	static const enum auth_type types[] = { AUTH_TYPE_TRUST, AUTH_TYPE_ANY, AUTH_TYPE_PLAIN,
						AUTH_TYPE_MD5, AUTH_TYPE_SCRAM_SHA_256 };
	enum auth_type type = types[(control & 7) % 5];
	unsigned who = (control >> 3) & 7;
	const struct auth_user *user = NULL;
	const char *name = "nobody";
	if (who < 4 || who >= 6) {
		name = fixed_names[who < 4 ? who : (who == 6 ? 0 : 2)];
		user = auth_userlist_find(fixed, name);
		FUZZ_CHECK(user != NULL);
	} else if (who == 5 && own && own->users) {
		user = own->users;
		name = user->name;
	}
	bool honest = control & 0x40;
	struct run r = { .abandon = control & 0x80, .abandon_take = size % 2 == 1 };
	buf_out_init(&r.out);
	r.s = auth_session_new(type, name, user, mock_seed);
	int st = auth_session_start(r.s, &r.out);
	FUZZ_CHECK(st == AUTH_CONTINUE || st == AUTH_OK || st == AUTH_DERIVE);
	FUZZ_CHECK((st == AUTH_OK) == (type == AUTH_TYPE_TRUST || type == AUTH_TYPE_ANY));
	FUZZ_CHECK((st == AUTH_CONTINUE) == (r.out.len > 0));
	st = derive(&r, st);

	if (honest && !r.abandoned) {
		bool known = user && user->secret.kind != AUTH_SECRET_NONE;
		bool scram = type == AUTH_TYPE_SCRAM_SHA_256 ||
			     (type == AUTH_TYPE_MD5 && user && user->secret.kind == AUTH_SECRET_SCRAM);
		bool plaintext = user && user->secret.kind == AUTH_SECRET_PLAIN;
		bool fixed_user = who != 5;
		st = honest_client(&r, st, name, plaintext);
		if (r.abandoned)
			goto out;
		/* The verdict the method and the secret call for, for the fixed users. */
		bool should = type == AUTH_TYPE_TRUST || type == AUTH_TYPE_ANY ||
			      (known && !(scram && user->secret.kind == AUTH_SECRET_MD5));
		if (fixed_user)
			FUZZ_CHECK((st == AUTH_OK) == should);
		if (st == AUTH_OK && type == AUTH_TYPE_PLAIN)
			FUZZ_CHECK(strcmp(auth_session_password(r.s), PASSWORD) == 0);
		uint8_t ck[SCRAM_KEY_LEN], sk[SCRAM_KEY_LEN];
		if (st == AUTH_OK && fixed_user && user && user->secret.kind == AUTH_SECRET_SCRAM &&
		    type != AUTH_TYPE_TRUST && type != AUTH_TYPE_ANY) {
			/* Keys for server login: the stored secret's, whichever way they were proved. */
			FUZZ_CHECK(auth_session_scram_keys(r.s, ck, sk));
			FUZZ_CHECK(memcmp(ck, scram_client_key, SCRAM_KEY_LEN) == 0);
			FUZZ_CHECK(memcmp(sk, scram_server_key, SCRAM_KEY_LEN) == 0);
		}
	}

	/* The input's bodies: 2-byte length, then the bytes. */
	size_t pos = 0;
	for (int i = 0; i < 4 && pos < size && !r.abandoned; i++) {
		bool over = st == AUTH_OK || st == AUTH_FAILED;
		size_t len = size - pos >= 2 ? (size_t)in[pos] << 8 | in[pos + 1] : 0;
		pos += size - pos >= 2 ? 2 : size - pos;
		if (len > size - pos)
			len = size - pos;
		uint8_t *body = malloc(len ? len : 1);
		FUZZ_CHECK(body != NULL);
		memcpy(body, in + pos, len);
		pos += len;
		size_t before = r.out.len;
		st = step(&r, body, len);
		free(body);
		if (r.abandoned)
			break;
		/* A finished exchange takes nothing more, and says why it failed. */
		if (over)
			FUZZ_CHECK(st == AUTH_FAILED && r.out.len == before);
		if (st == AUTH_FAILED)
			FUZZ_CHECK(auth_session_failure(r.s) != NULL &&
				   auth_session_failure(r.s)[0] != '\0');
		const uint8_t *data;
		size_t dlen;
		if (r.out.len > before)
			(void)check_out(&r.out, before, &data, &dlen);
		/* Nobody gets in without the password: unknown and password-less users never do. */
		if (st == AUTH_OK && type != AUTH_TYPE_TRUST && type != AUTH_TYPE_ANY)
			FUZZ_CHECK(user && user->secret.kind != AUTH_SECRET_NONE);
	}
out:
	auth_session_free(r.s);
	scram_job_free(r.taken);
	buf_out_deinit(&r.out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!fixed)
		setup();
	if (size == 0)
		return 0;
	if (size > FUZZ_MAX_INPUT)
		size = FUZZ_MAX_INPUT;
	uint8_t *in = malloc(size - 1 ? size - 1 : 1);
	FUZZ_CHECK(in != NULL);
	memcpy(in, data + 1, size - 1);
	struct auth_userlist *own = fuzz_userlist((const char *)in, size - 1);
	fuzz_session(data[0], in, size - 1, own);
	auth_userlist_unref(own);
	free(in);
	return 0;
}
