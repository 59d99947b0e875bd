/*
 * auth.c - the user list (PgBouncer's auth_file) and the server side of a
 * client's password authentication, without I/O.
 *
 * It owns: parsing the auth_file into a hash of users with classified
 * secrets; the md5 password arithmetic; and struct auth_session, which picks
 * the method a client must use (from auth_type and the stored secret, as
 * PgBouncer does), writes the Authentication* requests into a buf_out and
 * judges the client's answers. It does not own sockets, timers, the
 * AuthenticationOk that follows success, or the ErrorResponse after failure:
 * the client module sends those. The SCRAM exchange itself is scram.c's.
 *
 * Key derivations (PBKDF2) never run here: a step that needs one stops in a
 * DERIVE step with a scram_job for the caller to run, and
 * auth_session_resume() continues from the job's keys.
 *
 * Failure never tells the client why (no user enumeration): an unknown user,
 * a user without a password and a wrong password go through the same
 * messages and fail at the same step; auth_session_failure() says which, for
 * the log.
 */
#include "sluice/auth.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "sluice/md5.h"
#include "sluice/pkt.h"
#include "sluice/rand.h"

#define SCRAM_MECHANISM "SCRAM-SHA-256"
#define MD5_PREFIX "md5"
#define MD5_SECRET_LEN 35 /* "md5" + 32 hex digits */

/* ---- md5 ---------------------------------------------------------------- */

bool auth_is_md5_secret(const char *s)
{
	if (strlen(s) != MD5_SECRET_LEN || strncmp(s, MD5_PREFIX, 3) != 0)
		return false;
	return strspn(s + 3, "0123456789abcdef") == 32;
}

/*
 * Lowercase hex MD5 of a || b into out[33]. If OpenSSL refuses MD5 (a FIPS
 * provider), out is "", which matches no response: md5 logins then fail
 * rather than the process. The hash itself is md5.c's (see md5.h for why);
 * OpenSSL is only asked, once, whether MD5 is allowed.
 */
static bool md5_allowed;
static pthread_once_t md5_once = PTHREAD_ONCE_INIT;

static void ask_md5(void)
{
	EVP_MD *md = EVP_MD_fetch(NULL, "MD5", NULL);
	md5_allowed = md != NULL;
	EVP_MD_free(md);
}

static void md5_hex(const void *a, size_t alen, const void *b, size_t blen, char out[33])
{
	static const char hex[] = "0123456789abcdef";
	out[0] = '\0';
	pthread_once(&md5_once, ask_md5);
	if (!md5_allowed)
		return;
	struct md5 m;
	uint8_t md[MD5_LEN];
	md5_init(&m);
	md5_update(&m, a, alen);
	md5_update(&m, b, blen);
	md5_final(&m, md);
	for (unsigned int i = 0; i < MD5_LEN; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 0xf];
	}
	out[32] = '\0';
	explicit_bzero(md, sizeof(md));
}

void auth_md5_secret(const char *password, const char *user, char out[36])
{
	char hex[33];
	md5_hex(password, strlen(password), user, strlen(user), hex);
	if (hex[0] == '\0') {
		out[0] = '\0';
		return;
	}
	memcpy(out, MD5_PREFIX, 3);
	memcpy(out + 3, hex, 33);
}

void auth_md5_response(const char *secret, const char *user, const uint8_t salt[4], char out[36])
{
	char inner[36];
	if (auth_is_md5_secret(secret))
		memcpy(inner, secret, sizeof(inner));
	else
		auth_md5_secret(secret, user, inner);
	char hex[33];
	if (inner[0] == '\0') {
		out[0] = '\0';
		return;
	}
	md5_hex(inner + 3, 32, salt, 4, hex);
	if (hex[0] == '\0') {
		out[0] = '\0';
		return;
	}
	memcpy(out, MD5_PREFIX, 3);
	memcpy(out + 3, hex, 33);
}

/* ---- the user list ------------------------------------------------------ */

static void set_err(char *err, size_t errlen, const char *fmt, ...) PRINTF_LIKE(3, 4);
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/*
 * Reads a double-quoted field at *pp ("" inside is one literal quote) into a
 * fresh string. -1 if *pp is not a quote or the field is not closed on this
 * line.
 */
static int parse_quoted(const char **pp, char **out)
{
	const char *p = *pp;
	if (*p != '"')
		return -1;
	p++;
	char *val = xmalloc(strlen(p) + 1);
	size_t n = 0;
	for (;;) {
		if (*p == '\0') {
			free(val);
			return -1;
		}
		if (*p == '"') {
			if (p[1] != '"')
				break;
			p++;
		}
		val[n++] = *p++;
	}
	val[n] = '\0';
	*pp = p + 1;
	*out = val;
	return 0;
}

static void secret_deinit(struct auth_secret *sec)
{
	if (sec->text) {
		explicit_bzero(sec->text, strlen(sec->text));
		free(sec->text);
	}
	explicit_bzero(sec, sizeof(*sec));
}

/* Classifies text (taking ownership of it) into sec. -1 on a malformed SCRAM secret. */
static int secret_init(struct auth_secret *sec, char *text)
{
	memset(sec, 0, sizeof(*sec));
	sec->text = text;
	if (strncmp(text, "SCRAM-SHA-256$", strlen("SCRAM-SHA-256$")) == 0) {
		sec->kind = AUTH_SECRET_SCRAM;
		return scram_parse_secret(text, &sec->scram);
	}
	if (auth_is_md5_secret(text))
		sec->kind = AUTH_SECRET_MD5;
	else if (text[0] == '\0')
		sec->kind = AUTH_SECRET_NONE;
	else
		sec->kind = AUTH_SECRET_PLAIN;
	return 0;
}

/* Fills u->md5 from its secret (see auth.h). */
static void derive_md5(struct auth_user *u)
{
	u->md5[0] = '\0';
	if (u->secret.kind == AUTH_SECRET_MD5)
		memcpy(u->md5, u->secret.text, MD5_SECRET_LEN + 1);
	else if (u->secret.kind == AUTH_SECRET_PLAIN)
		auth_md5_secret(u->secret.text, u->name, u->md5);
}

void auth_user_free(struct auth_user *u)
{
	if (!u)
		return;
	free(u->name);
	secret_deinit(&u->secret);
	free(u);
}

struct auth_user *auth_user_new(const char *name, const char *secret)
{
	struct auth_user *u = xcalloc(1, sizeof(*u));
	u->name = xstrdup(name);
	if (secret_init(&u->secret, xstrdup(secret ? secret : "")) < 0) {
		auth_user_free(u);
		return NULL;
	}
	derive_md5(u);
	return u;
}

/* One line of the file: 1 if it held a user, 0 if blank/comment, -1 with err. */
static int parse_line(char *line, struct auth_user **out, const char **why)
{
	line[strcspn(line, "\r\n")] = '\0';
	const char *p = line + strspn(line, " \t");
	if (*p == '\0' || *p == ';' || *p == '#')
		return 0;
	char *name = NULL, *text = NULL;
	if (*p != '"') {
		*why = "expected a double-quoted user name";
		return -1;
	}
	if (parse_quoted(&p, &name) < 0) {
		*why = "unterminated user name";
		return -1;
	}
	if (name[0] == '\0') {
		*why = "empty user name";
		goto fail;
	}
	p += strspn(p, " \t");
	if (*p != '"') {
		*why = "expected a double-quoted secret after the user name";
		goto fail;
	}
	if (parse_quoted(&p, &text) < 0) {
		*why = "unterminated secret";
		goto fail;
	}
	/* Anything after the second field is ignored, as PgBouncer does. */
	struct auth_user *u = xcalloc(1, sizeof(*u));
	u->name = name;
	if (secret_init(&u->secret, text) < 0) {
		*why = "malformed SCRAM-SHA-256 secret";
		auth_user_free(u);
		return -1;
	}
	derive_md5(u);
	*out = u;
	return 1;

fail:
	free(name);
	return -1;
}

int auth_userlist_parse(const char *text, size_t len, const char *name, struct auth_userlist **out,
			char *err, size_t errlen)
{
	*out = NULL;
	struct auth_userlist *list = xcalloc(1, sizeof(*list));
	atomic_init(&list->refs, 1);
	/* One line at a time in a buffer of its own, '\n' included, as getline would give it. */
	char *line = NULL;
	size_t cap = 0, pos = 0;
	int lineno = 0, rc = 0;
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (text + pos)) + 1 : len - pos;
		if (n + 1 > cap) {
			if (line) {
				explicit_bzero(line, cap);
				free(line);
			}
			cap = n + 1;
			line = xmalloc(cap);
		}
		memcpy(line, text + pos, n);
		line[n] = '\0';
		pos += n;
		lineno++;
		struct auth_user *u = NULL, *old = NULL;
		const char *why = NULL;
		int r = parse_line(line, &u, &why);
		if (r < 0) {
			set_err(err, errlen, "%s:%d: %s", name, lineno, why);
			rc = -1;
			break;
		}
		if (r == 0)
			continue;
		/* A later line for the same user replaces the earlier one. */
		HASH_FIND_STR(list->users, u->name, old);
		if (old) {
			HASH_DEL(list->users, old);
			auth_user_free(old);
		}
		HASH_ADD_KEYPTR(hh, list->users, u->name, strlen(u->name), u);
	}
	if (line) {
		explicit_bzero(line, cap);
		free(line);
	}
	if (rc < 0) {
		auth_userlist_unref(list);
		return -1;
	}
	*out = list;
	return 0;
}

/*
 * The whole of f in a heap block (*len bytes, NUL after them); NULL on a read
 * error. The block holds secrets: every copy left behind while it grows is
 * cleansed, and so must the caller's be.
 */
static char *read_secret_file(FILE *f, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *data = xmalloc(cap);
	for (;;) {
		if (n + 1 == cap) {
			char *bigger = xmalloc(cap * 2);
			memcpy(bigger, data, n);
			explicit_bzero(data, cap);
			free(data);
			data = bigger;
			cap *= 2;
		}
		size_t got = fread(data + n, 1, cap - 1 - n, f);
		n += got;
		if (got == 0)
			break;
	}
	data[n] = '\0';
	if (ferror(f)) {
		explicit_bzero(data, cap);
		free(data);
		return NULL;
	}
	*len = n;
	return data;
}

int auth_userlist_load(const char *path, struct auth_userlist **out, char *err, size_t errlen)
{
	*out = NULL;
	FILE *f = fopen(path, "r");
	if (!f) {
		set_err(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	size_t len = 0;
	char *text = read_secret_file(f, &len);
	int saved = errno;
	fclose(f);
	if (!text) {
		set_err(err, errlen, "%s: read error: %s", path, strerror(saved));
		return -1;
	}
	int rc = auth_userlist_parse(text, len, path, out, err, errlen);
	explicit_bzero(text, len);
	free(text);
	return rc;
}

struct auth_userlist *auth_userlist_ref(struct auth_userlist *list)
{
	if (list)
		atomic_fetch_add_explicit(&list->refs, 1, memory_order_relaxed);
	return list;
}

void auth_userlist_unref(struct auth_userlist *list)
{
	if (!list || atomic_fetch_sub_explicit(&list->refs, 1, memory_order_acq_rel) != 1)
		return;
	struct auth_user *u, *tmp;
	HASH_ITER(hh, list->users, u, tmp) {
		HASH_DEL(list->users, u);
		auth_user_free(u);
	}
	free(list);
}

const struct auth_user *auth_userlist_find(const struct auth_userlist *list, const char *name)
{
	struct auth_user *u = NULL;
	if (list && name)
		HASH_FIND_STR(list->users, name, u);
	return u;
}

/* ---- the session -------------------------------------------------------- */

enum auth_method {
	AUTH_METHOD_TRUST,
	AUTH_METHOD_CLEARTEXT,
	AUTH_METHOD_MD5,
	AUTH_METHOD_SCRAM,
};

/*
 * trust: START -> OK.
 * cleartext, md5: START -> WAIT_PASSWORD -> OK | FAILED.
 *   cleartext against a SCRAM secret: WAIT_PASSWORD -> DERIVE_PASSWORD -> OK | FAILED.
 * scram: START -> WAIT_SASL_INITIAL -> WAIT_SASL_RESPONSE -> OK | FAILED.
 *   scram against a plaintext secret: START -> DERIVE_SECRET -> WAIT_SASL_INITIAL ...
 * The DERIVE steps are left only by auth_session_resume(); any message then
 * fails, as does any call in OK or FAILED.
 */
enum auth_step {
	AUTH_STEP_START,
	AUTH_STEP_DERIVE_SECRET, /* a SCRAM secret for this exchange is being derived */
	AUTH_STEP_WAIT_PASSWORD,
	AUTH_STEP_DERIVE_PASSWORD, /* a cleartext password's keys are being derived */
	AUTH_STEP_WAIT_SASL_INITIAL,
	AUTH_STEP_WAIT_SASL_RESPONSE,
	AUTH_STEP_OK,
	AUTH_STEP_FAILED,
};

struct auth_session {
	enum auth_method method;
	enum auth_step step;
	char *user_name;
	/* A copy of the user's secret: the list may be reloaded during the exchange. */
	struct auth_secret secret;
	/*
	 * Why the exchange cannot succeed whatever the client sends (unknown
	 * user, no password, an md5 secret under scram), or NULL. The exchange
	 * still runs to its last step so that the client cannot tell.
	 */
	const char *doomed;
	const char *failure;
	uint8_t md5_salt[4];
	char md5_secret[36]; /* the user's md5 secret, or "" (auth_user.md5) */
	struct scram_server *scram;
	uint8_t mock_seed[SCRAM_KEY_LEN];
	bool have_keys;
	uint8_t client_key[SCRAM_KEY_LEN];
	uint8_t server_key[SCRAM_KEY_LEN];
	char *password; /* after AUTH_OK via cleartext */
	struct scram_job *job; /* after AUTH_DERIVE, until taken */
	size_t size; /* of the allocation: the struct, then user_name and secret.text */
	char strings[];
};

static int fail(struct auth_session *s, const char *why)
{
	s->step = AUTH_STEP_FAILED;
	s->failure = why;
	return AUTH_FAILED;
}

struct auth_session *auth_session_new(enum auth_type type, const char *user_name,
				      const struct auth_user *user,
				      const uint8_t mock_seed[SCRAM_KEY_LEN])
{
	/*
	 * The copies of the name and the secret live in the session's own
	 * allocation: one malloc per login instead of three.
	 */
	if (!user_name)
		user_name = "";
	const char *text = user && user->secret.text ? user->secret.text : "";
	size_t name_size = strlen(user_name) + 1, text_size = strlen(text) + 1;
	size_t size = sizeof(struct auth_session) + name_size + text_size;
	struct auth_session *s = xcalloc(1, size);
	s->size = size;
	s->step = AUTH_STEP_START;
	s->user_name = memcpy(s->strings, user_name, name_size);
	memcpy(s->mock_seed, mock_seed, SCRAM_KEY_LEN);
	if (user) {
		s->secret = user->secret;
		/* The md5 secret is salted with the name: only the same name may use it. */
		if (strcmp(user->name, s->user_name) == 0)
			memcpy(s->md5_secret, user->md5, sizeof(s->md5_secret));
	} else {
		s->secret.kind = AUTH_SECRET_NONE;
		s->doomed = "no such user";
	}
	s->secret.text = memcpy(s->strings + name_size, text, text_size);
	if (user && s->secret.kind == AUTH_SECRET_NONE)
		s->doomed = "user has no password";

	switch (type) {
	case AUTH_TYPE_TRUST:
	case AUTH_TYPE_ANY:
		s->method = AUTH_METHOD_TRUST;
		break;
	case AUTH_TYPE_PLAIN:
		s->method = AUTH_METHOD_CLEARTEXT;
		break;
	case AUTH_TYPE_MD5:
		/* As PgBouncer: md5 means SCRAM when only a SCRAM secret is known. */
		s->method = s->secret.kind == AUTH_SECRET_SCRAM ? AUTH_METHOD_SCRAM
								: AUTH_METHOD_MD5;
		break;
	case AUTH_TYPE_SCRAM_SHA_256:
	default:
		s->method = AUTH_METHOD_SCRAM;
		break;
	}
	if (s->method == AUTH_METHOD_SCRAM && s->secret.kind == AUTH_SECRET_MD5)
		s->doomed = "SCRAM authentication is impossible with an md5 secret";
	return s;
}

void auth_session_free(struct auth_session *s)
{
	if (!s)
		return;
	scram_server_free(s->scram);
	scram_job_free(s->job);
	if (s->password) {
		explicit_bzero(s->password, strlen(s->password));
		free(s->password);
	}
	/* The secret's copy with the rest (see auth_session_new). */
	explicit_bzero(s, s->size);
	free(s);
}

/* Sends AuthenticationSASL for an exchange against secret (NULL: the mock). */
static int offer_sasl(struct auth_session *s, const struct scram_secret *secret,
		      struct buf_out *out)
{
	s->scram = scram_server_new(secret, s->user_name, s->mock_seed);
	pkt_put_AuthenticationSASL(out, SCRAM_MECHANISM);
	s->step = AUTH_STEP_WAIT_SASL_INITIAL;
	return AUTH_CONTINUE;
}

int auth_session_start(struct auth_session *s, struct buf_out *out)
{
	if (s->step != AUTH_STEP_START)
		return fail(s, "session started twice");
	switch (s->method) {
	case AUTH_METHOD_TRUST:
		s->step = AUTH_STEP_OK;
		return AUTH_OK;
	case AUTH_METHOD_CLEARTEXT:
		pkt_put_AuthenticationCleartextPassword(out);
		s->step = AUTH_STEP_WAIT_PASSWORD;
		return AUTH_CONTINUE;
	case AUTH_METHOD_MD5:
		rand_bytes(s->md5_salt, sizeof(s->md5_salt));
		pkt_put_AuthenticationMD5Password(out, s->md5_salt);
		s->step = AUTH_STEP_WAIT_PASSWORD;
		return AUTH_CONTINUE;
	case AUTH_METHOD_SCRAM:
		break;
	}

	if (!s->doomed && s->secret.kind != AUTH_SECRET_SCRAM) {
		/*
		 * A plaintext secret: SCRAM against a secret made for this
		 * exchange, once the caller has derived it. Its keys are of no use
		 * for logging in to a server (different salt), so none are handed
		 * on.
		 */
		s->job = scram_job_new_secret(s->secret.text, SCRAM_DEFAULT_ITERATIONS);
		s->step = AUTH_STEP_DERIVE_SECRET;
		return AUTH_DERIVE;
	}
	/* doomed: secret NULL, the mock exchange that fails at the last step. */
	return offer_sasl(s, s->doomed ? NULL : &s->secret.scram, out);
}

/* The password of a PasswordMessage: a cstring that fills the body exactly. */
static const char *password_of(const uint8_t *body, size_t len)
{
	if (len == 0 || body[len - 1] != '\0' || memchr(body, '\0', len) != body + len - 1)
		return NULL;
	return (const char *)body;
}

/* Compares two strings in time that depends on neither content nor length. */
static bool str_equal_ct(const char *a, const char *b)
{
	uint8_t ha[SHA256_DIGEST_LENGTH], hb[SHA256_DIGEST_LENGTH];
	SHA256((const uint8_t *)a, strlen(a), ha);
	SHA256((const uint8_t *)b, strlen(b), hb);
	return mem_equal_ct(ha, hb, sizeof(ha));
}

/* A cleartext password against a plaintext or md5 secret (SCRAM: scram_keys_match). */
static bool check_cleartext(struct auth_session *s, const char *password)
{
	switch (s->secret.kind) {
	case AUTH_SECRET_PLAIN:
		return str_equal_ct(password, s->secret.text);
	case AUTH_SECRET_MD5: {
		char md5[36];
		auth_md5_secret(password, s->user_name, md5);
		return str_equal_ct(md5, s->secret.text);
	}
	case AUTH_SECRET_SCRAM:
	case AUTH_SECRET_NONE:
		break;
	}
	return false;
}

/*
 * The keys a job derived from a cleartext password, as a SCRAM client would,
 * against the stored SCRAM secret. On a match they are the secret's own
 * keys, so they are kept for server login exactly as after a SCRAM exchange.
 */
static bool scram_keys_match(struct auth_session *s, const struct scram_job *job)
{
	const struct scram_secret *st = &s->secret.scram;
	uint8_t stored[SCRAM_KEY_LEN];
	if (job->rc != 0)
		return false;
	SHA256(job->client_key, SCRAM_KEY_LEN, stored);
	bool ok = mem_equal_ct(stored, st->stored_key, SCRAM_KEY_LEN) &&
		  mem_equal_ct(job->server_key, st->server_key, SCRAM_KEY_LEN);
	if (ok) {
		memcpy(s->client_key, job->client_key, SCRAM_KEY_LEN);
		memcpy(s->server_key, job->server_key, SCRAM_KEY_LEN);
		s->have_keys = true;
	}
	return ok;
}

/* The end of a password exchange: ok says whether password matched. */
static int password_verdict(struct auth_session *s, bool ok, const char *password)
{
	if (s->doomed)
		return fail(s, s->doomed);
	if (!ok)
		return fail(s, "password does not match");
	if (s->method == AUTH_METHOD_CLEARTEXT)
		s->password = xstrdup(password);
	s->step = AUTH_STEP_OK;
	return AUTH_OK;
}

static int step_password(struct auth_session *s, const uint8_t *body, size_t len)
{
	const char *password = password_of(body, len);
	if (!password)
		return fail(s, "malformed password message");
	bool ok;
	if (s->method == AUTH_METHOD_CLEARTEXT && s->secret.kind == AUTH_SECRET_SCRAM) {
		/* The keys are derived by the caller; auth_session_resume() judges them. */
		const struct scram_secret *st = &s->secret.scram;
		s->job = scram_job_new(password, st->salt, st->salt_len, st->iterations);
		if (!s->job)
			return fail(s, "the SCRAM secret cannot be used");
		s->step = AUTH_STEP_DERIVE_PASSWORD;
		return AUTH_DERIVE;
	}
	if (s->method == AUTH_METHOD_CLEARTEXT) {
		ok = check_cleartext(s, password);
	} else {
		/* md5 never runs against a SCRAM secret: auth_session_new chose SCRAM then. */
		char expect[36];
		ok = false;
		if (s->secret.kind == AUTH_SECRET_PLAIN || s->secret.kind == AUTH_SECRET_MD5) {
			/* One MD5 with the user's md5 secret, made when the user was loaded. */
			auth_md5_response(s->md5_secret[0] ? s->md5_secret : s->secret.text,
					  s->user_name, s->md5_salt, expect);
			/* Both are "md5" and 32 hex digits: only the length is public. */
			ok = expect[0] != '\0' && strlen(password) == MD5_SECRET_LEN &&
			     mem_equal_ct(password, expect, MD5_SECRET_LEN);
		}
	}
	return password_verdict(s, ok, password);
}

static int step_sasl_initial(struct auth_session *s, const uint8_t *body, size_t len,
			     struct buf_out *out)
{
	struct pkt_reader r;
	pkt_reader_init(&r, body, len);
	const char *mechanism = pkt_get_cstr(&r);
	int32_t data_len = (int32_t)pkt_get_be32(&r);
	if (r.bad)
		return fail(s, "malformed SASLInitialResponse");
	if (strcmp(mechanism, SCRAM_MECHANISM) != 0)
		return fail(s, "client chose a SASL mechanism that was not offered");
	if (data_len < 0)
		return fail(s, "SASLInitialResponse without a client-first-message");
	if ((size_t)data_len != pkt_remaining(&r))
		return fail(s, "malformed SASLInitialResponse: length does not match");
	const uint8_t *data = pkt_get_bytes(&r, (size_t)data_len);
	char *server_first = NULL;
	if (scram_server_first(s->scram, data, (size_t)data_len, &server_first) < 0)
		return fail(s, "malformed SCRAM client-first-message");
	pkt_put_AuthenticationSASLContinue(out, server_first, strlen(server_first));
	free(server_first);
	s->step = AUTH_STEP_WAIT_SASL_RESPONSE;
	return AUTH_CONTINUE;
}

static int step_sasl_response(struct auth_session *s, const uint8_t *body, size_t len,
			      struct buf_out *out)
{
	char *server_final = NULL;
	bool ok = false;
	if (scram_server_final(s->scram, body, len, &server_final, &ok) < 0)
		return fail(s, "malformed SCRAM client-final-message");
	if (s->doomed) {
		free(server_final);
		return fail(s, s->doomed);
	}
	if (!ok)
		return fail(s, "password does not match");
	pkt_put_AuthenticationSASLFinal(out, server_final, strlen(server_final));
	free(server_final);
	/* Keys are worth handing on only when they are the stored secret's. */
	if (s->secret.kind == AUTH_SECRET_SCRAM)
		s->have_keys = scram_server_keys(s->scram, s->client_key, s->server_key);
	s->step = AUTH_STEP_OK;
	return AUTH_OK;
}

int auth_session_step(struct auth_session *s, const uint8_t *body, size_t len, struct buf_out *out)
{
	switch (s->step) {
	case AUTH_STEP_WAIT_PASSWORD:
		return step_password(s, body, len);
	case AUTH_STEP_WAIT_SASL_INITIAL:
		return step_sasl_initial(s, body, len, out);
	case AUTH_STEP_WAIT_SASL_RESPONSE:
		return step_sasl_response(s, body, len, out);
	case AUTH_STEP_START:
	case AUTH_STEP_DERIVE_SECRET:
	case AUTH_STEP_DERIVE_PASSWORD:
	case AUTH_STEP_OK:
	case AUTH_STEP_FAILED:
		break;
	}
	return fail(s, "unexpected password message");
}

struct scram_job *auth_session_take_job(struct auth_session *s)
{
	struct scram_job *j = s->job;
	s->job = NULL;
	return j;
}

int auth_session_resume(struct auth_session *s, const struct scram_job *job, struct buf_out *out)
{
	if (!job)
		return fail(s, "key derivation resumed without its job");
	switch (s->step) {
	case AUTH_STEP_DERIVE_SECRET: {
		struct scram_secret built;
		if (scram_secret_from_job(job, &built) < 0)
			return fail(s, "cannot derive a SCRAM secret from the password");
		int rc = offer_sasl(s, &built, out);
		explicit_bzero(&built, sizeof(built));
		return rc;
	}
	case AUTH_STEP_DERIVE_PASSWORD:
		return password_verdict(s, scram_keys_match(s, job), job->password);
	case AUTH_STEP_START:
	case AUTH_STEP_WAIT_PASSWORD:
	case AUTH_STEP_WAIT_SASL_INITIAL:
	case AUTH_STEP_WAIT_SASL_RESPONSE:
	case AUTH_STEP_OK:
	case AUTH_STEP_FAILED:
		break;
	}
	return fail(s, "key derivation resumed out of turn");
}

bool auth_session_is_sasl(const struct auth_session *s)
{
	return s->method == AUTH_METHOD_SCRAM;
}

const char *auth_session_failure(const struct auth_session *s)
{
	return s->failure;
}

bool auth_session_scram_keys(const struct auth_session *s, uint8_t client_key[SCRAM_KEY_LEN],
			     uint8_t server_key[SCRAM_KEY_LEN])
{
	if (s->step != AUTH_STEP_OK || !s->have_keys)
		return false;
	memcpy(client_key, s->client_key, SCRAM_KEY_LEN);
	memcpy(server_key, s->server_key, SCRAM_KEY_LEN);
	return true;
}

const char *auth_session_password(const struct auth_session *s)
{
	return s->step == AUTH_STEP_OK ? s->password : NULL;
}
