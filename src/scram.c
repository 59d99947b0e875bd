/*
 * scram.c - SCRAM-SHA-256 (RFC 5802, RFC 7677) for both roles, without I/O.
 *
 * It owns the parsing and building of the four SCRAM messages, the secret
 * format PostgreSQL stores ("SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>")
 * and the key derivations. It does not own the PostgreSQL framing around the
 * messages (AuthenticationSASL*, SASLInitialResponse): auth.c and the server
 * login code wrap them. All cryptography is OpenSSL's: HMAC(), SHA256(),
 * PKCS5_PBKDF2_HMAC() and EVP base64; random bytes from rand.h.
 *
 * PBKDF2 runs only inside scram_job_run(), which may be called on any thread;
 * everything else here runs on the caller's (the event loop's) thread. The
 * connection code decides where jobs run; this file knows nothing of threads.
 *
 * Channel binding is never offered. A client may send "n,," or "y,," (the
 * latter means "I could bind but you did not offer -PLUS", which is true); a
 * "p=" request is refused. Authorization identities ("a=") are refused, as
 * PostgreSQL refuses them.
 */
#include "sluice/scram.h"

#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "sluice/rand.h"

/* SCRAM messages are a few hundred bytes; anything far longer is hostile. */
#define SCRAM_MAX_MSG 4096
/* Random bytes in a nonce we generate (base64: 24 printable characters). */
#define SCRAM_NONCE_BYTES 18
/* Salt length of secrets we build, as PostgreSQL's SCRAM_DEFAULT_SALT_LEN. */
#define SCRAM_SALT_BYTES 16
/* The channel-binding attribute for "n,,": base64("n,,"). */
#define SCRAM_CBIND_NONE "biws"

/* ---- primitives --------------------------------------------------------- */

static void hmac256(const uint8_t *key, size_t key_len, const void *data, size_t len,
		    uint8_t out[SCRAM_KEY_LEN])
{
	unsigned int out_len = SCRAM_KEY_LEN;
	/* HMAC() only fails on allocation failure inside OpenSSL. */
	if (!HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &out_len))
		xoom("HMAC");
}

static void sha256(const uint8_t *data, size_t len, uint8_t out[SCRAM_KEY_LEN])
{
	SHA256(data, len, out);
}

/* Heap string with the base64 of in[0..len). */
static char *b64_encode(const uint8_t *in, size_t len)
{
	char *out = xmalloc(4 * ((len + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)out, in, (int)len);
	return out;
}

static bool b64_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/';
}

/*
 * Strict base64 decode of s[0..n): length a multiple of 4, only the alphabet,
 * '=' only as one or two final pad characters. EVP_DecodeBlock would also
 * skip whitespace and counts pad bytes as output, so the input is checked
 * here first and the pad is subtracted. 0 and *out_len, or -1 when malformed
 * or longer than cap.
 */
static int b64_decode(const char *s, size_t n, uint8_t *out, size_t cap, size_t *out_len)
{
	if (n % 4 != 0 || n > SCRAM_MAX_MSG)
		return -1;
	if (n == 0) {
		*out_len = 0;
		return 0;
	}
	size_t pad = 0;
	if (s[n - 1] == '=')
		pad = s[n - 2] == '=' ? 2 : 1;
	for (size_t i = 0; i < n - pad; i++)
		if (!b64_char(s[i]))
			return -1;
	size_t len = n / 4 * 3 - pad;
	if (len > cap)
		return -1;
	uint8_t tmp[SCRAM_MAX_MSG];
	if (EVP_DecodeBlock(tmp, (const unsigned char *)s, (int)n) != (int)(n / 4 * 3))
		return -1;
	memcpy(out, tmp, len);
	*out_len = len;
	return 0;
}

/*
 * ClientKey and ServerKey from a password, as RFC 5802 section 3 defines them.
 * Thread-safe (scram_job_run calls it on a pool thread): it touches only its
 * arguments and OpenSSL, and reports OpenSSL failures by -1 rather than xoom().
 */
int scram_derive_keys(const char *password, const uint8_t *salt, size_t salt_len, int iterations,
		      uint8_t client_key[SCRAM_KEY_LEN], uint8_t server_key[SCRAM_KEY_LEN])
{
	uint8_t salted[SCRAM_KEY_LEN];
	unsigned int n1 = SCRAM_KEY_LEN, n2 = SCRAM_KEY_LEN;
	/*
	 * PostgreSQL normalizes passwords with SASLprep and, when that fails
	 * (prohibited characters, invalid UTF-8), uses the bytes unchanged.
	 * sluice does not implement SASLprep: ASCII passwords (unchanged by it)
	 * are exact, and non-ASCII passwords are used as raw bytes, which agrees
	 * with PostgreSQL only when SASLprep would not have changed them.
	 */
	if (PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, (int)salt_len, iterations,
			      EVP_sha256(), SCRAM_KEY_LEN, salted) != 1)
		return -1;
	bool ok = HMAC(EVP_sha256(), salted, sizeof(salted), (const uint8_t *)"Client Key",
		       strlen("Client Key"), client_key, &n1) &&
		  HMAC(EVP_sha256(), salted, sizeof(salted), (const uint8_t *)"Server Key",
		       strlen("Server Key"), server_key, &n2);
	explicit_bzero(salted, sizeof(salted));
	return ok ? 0 : -1;
}

/* Parses a decimal iteration count in [1, max]; -1 otherwise. */
static int parse_iterations(const char *s, size_t n, int max)
{
	if (n == 0 || n > 10)
		return -1;
	long v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	if (v < 1 || v > max)
		return -1;
	return (int)v;
}

/* ---- secrets ------------------------------------------------------------ */

#define SECRET_PREFIX "SCRAM-SHA-256$"

int scram_parse_secret(const char *text, struct scram_secret *out)
{
	if (strncmp(text, SECRET_PREFIX, strlen(SECRET_PREFIX)) != 0)
		return -1;
	const char *p = text + strlen(SECRET_PREFIX);
	const char *colon = strchr(p, ':');
	const char *dollar = colon ? strchr(colon + 1, '$') : NULL;
	const char *colon2 = dollar ? strchr(dollar + 1, ':') : NULL;
	if (!colon || !dollar || !colon2)
		return -1;
	struct scram_secret s;
	memset(&s, 0, sizeof(s));
	s.iterations = parse_iterations(p, (size_t)(colon - p), INT_MAX);
	if (s.iterations < 0)
		return -1;
	const char *salt = colon + 1;
	if (b64_decode(salt, (size_t)(dollar - salt), s.salt, sizeof(s.salt), &s.salt_len) < 0 ||
	    s.salt_len == 0)
		return -1;
	size_t n;
	const char *stored = dollar + 1;
	if (b64_decode(stored, (size_t)(colon2 - stored), s.stored_key, SCRAM_KEY_LEN, &n) < 0 ||
	    n != SCRAM_KEY_LEN)
		return -1;
	const char *server = colon2 + 1;
	if (b64_decode(server, strlen(server), s.server_key, SCRAM_KEY_LEN, &n) < 0 ||
	    n != SCRAM_KEY_LEN)
		return -1;
	*out = s;
	return 0;
}

int scram_secret_build(const char *password, const uint8_t *salt, size_t salt_len, int iterations,
		       struct scram_secret *out)
{
	if (iterations < 1 || salt_len == 0 || salt_len > sizeof(out->salt))
		return -1;
	uint8_t client_key[SCRAM_KEY_LEN];
	memset(out, 0, sizeof(*out));
	out->iterations = iterations;
	memcpy(out->salt, salt, salt_len);
	out->salt_len = salt_len;
	int rc = scram_derive_keys(password, salt, salt_len, iterations, client_key,
				   out->server_key);
	if (rc < 0)
		return -1;
	sha256(client_key, SCRAM_KEY_LEN, out->stored_key);
	explicit_bzero(client_key, sizeof(client_key));
	return 0;
}

int scram_secret_from_password(const char *password, int iterations, struct scram_secret *out)
{
	struct scram_job *j = scram_job_new_secret(password, iterations);
	if (!j)
		return -1;
	scram_job_run(j);
	int rc = scram_secret_from_job(j, out);
	scram_job_free(j);
	return rc;
}

char *scram_secret_format(const struct scram_secret *s)
{
	char *salt = b64_encode(s->salt, s->salt_len);
	char *stored = b64_encode(s->stored_key, SCRAM_KEY_LEN);
	char *server = b64_encode(s->server_key, SCRAM_KEY_LEN);
	char *text = xasprintf(SECRET_PREFIX "%d:%s$%s:%s", s->iterations, salt, stored, server);
	free(salt);
	free(stored);
	free(server);
	return text;
}

/* ---- derivation jobs ---------------------------------------------------- */

struct scram_job *scram_job_new(const char *password, const uint8_t *salt, size_t salt_len,
				int iterations)
{
	if (salt_len == 0 || salt_len > SCRAM_JOB_SALT_MAX || iterations < 1)
		return NULL;
	struct scram_job *j = xcalloc(1, sizeof(*j));
	j->password = xstrdup(password);
	memcpy(j->salt, salt, salt_len);
	j->salt_len = salt_len;
	j->iterations = iterations;
	j->rc = -1;
	return j;
}

struct scram_job *scram_job_new_secret(const char *password, int iterations)
{
	uint8_t salt[SCRAM_SALT_BYTES];
	rand_bytes(salt, sizeof(salt));
	return scram_job_new(password, salt, sizeof(salt), iterations);
}

void scram_job_run(struct scram_job *j)
{
	j->rc = scram_derive_keys(j->password, j->salt, j->salt_len, j->iterations, j->client_key,
				  j->server_key);
}

void scram_job_free(struct scram_job *j)
{
	if (!j)
		return;
	explicit_bzero(j->password, strlen(j->password));
	free(j->password);
	explicit_bzero(j, sizeof(*j));
	free(j);
}

int scram_secret_from_job(const struct scram_job *j, struct scram_secret *out)
{
	if (j->rc != 0 || j->salt_len > sizeof(out->salt))
		return -1;
	memset(out, 0, sizeof(*out));
	out->iterations = j->iterations;
	memcpy(out->salt, j->salt, j->salt_len);
	out->salt_len = j->salt_len;
	sha256(j->client_key, SCRAM_KEY_LEN, out->stored_key);
	memcpy(out->server_key, j->server_key, SCRAM_KEY_LEN);
	return 0;
}

/* ---- message attributes ------------------------------------------------- */

/* One "x=value" attribute: borrowed pointers into the message. */
struct attr {
	char name;
	const char *val;
	size_t len;
};

/*
 * Reads the attribute at *pp and moves past it and its trailing comma.
 * -1 if there is no "letter=" there, or a comma ends the message.
 */
static int next_attr(const char **pp, struct attr *a)
{
	const char *p = *pp;
	if (!isalpha((unsigned char)p[0]) || p[1] != '=')
		return -1;
	a->name = p[0];
	a->val = p + 2;
	a->len = strcspn(a->val, ",");
	p = a->val + a->len;
	if (*p == ',') {
		p++;
		if (*p == '\0')
			return -1;
	}
	*pp = p;
	return 0;
}

/* An attribute that must be next and must be called name. */
static int expect_attr(const char **pp, char name, struct attr *a)
{
	if (next_attr(pp, a) < 0 || a->name != name)
		return -1;
	return 0;
}

/* Skips optional extension attributes up to the end of the message. */
static int skip_extensions(const char **pp)
{
	struct attr a;
	while (**pp != '\0')
		if (next_attr(pp, &a) < 0)
			return -1;
	return 0;
}

/* RFC 5802 "printable": %x21-2B / %x2D-7E, i.e. visible ASCII but ','. */
static bool valid_nonce(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x21 || s[i] > 0x7e || s[i] == ',')
			return false;
	return true;
}

/* saslname: any bytes but ',' with '=' only in the escapes "=2C" and "=3D". */
static bool valid_saslname(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '=')
			continue;
		if (n - i < 3 || (strncmp(s + i, "=2C", 3) != 0 && strncmp(s + i, "=3D", 3) != 0))
			return false;
		i += 2;
	}
	return true;
}

/* A NUL-terminated copy of msg, or NULL if it is too long or contains NUL. */
static char *msg_dup(const uint8_t *msg, size_t len)
{
	if (len > SCRAM_MAX_MSG || memchr(msg, '\0', len))
		return NULL;
	return xstrndup((const char *)msg, len);
}

static char *nonce_new(void)
{
	uint8_t raw[SCRAM_NONCE_BYTES];
	rand_bytes(raw, sizeof(raw));
	return b64_encode(raw, sizeof(raw));
}

/* ---- server role -------------------------------------------------------- */

enum scram_server_state {
	SCRAM_SERVER_INIT, /* waiting for client-first */
	SCRAM_SERVER_FIRST_SENT, /* waiting for client-final */
	SCRAM_SERVER_DONE, /* success: keys available */
	SCRAM_SERVER_FAILED, /* any error; every later call fails */
};

struct scram_server {
	enum scram_server_state step;
	/*
	 * doomed: the exchange cannot succeed (unknown user). The secret then
	 * holds the mock salt and random keys that no proof matches, and the
	 * final step also refuses explicitly.
	 */
	bool doomed;
	struct scram_secret secret;
	char *fixed_nonce; /* test hook: server nonce part to use instead of a random one */
	char *gs2_header; /* "n,," or "y,,", as the client sent it */
	char *client_first_bare;
	char *server_first;
	char *nonce; /* client nonce + server nonce */
	uint8_t client_key[SCRAM_KEY_LEN]; /* valid in SCRAM_SERVER_DONE */
};

struct scram_server *scram_server_new(const struct scram_secret *secret, const char *user,
				      const uint8_t mock_seed[SCRAM_KEY_LEN])
{
	struct scram_server *s = xcalloc(1, sizeof(*s));
	s->step = SCRAM_SERVER_INIT;
	if (secret) {
		s->secret = *secret;
		return s;
	}
	/*
	 * Unknown user: the salt must be the same on every attempt for the same
	 * name (a changing salt would reveal that the user does not exist), so
	 * it is derived from a process-wide seed, as PostgreSQL's
	 * scram_mock_salt() does.
	 */
	uint8_t mac[SCRAM_KEY_LEN];
	hmac256(mock_seed, SCRAM_KEY_LEN, user ? user : "", user ? strlen(user) : 0, mac);
	s->doomed = true;
	s->secret.iterations = SCRAM_DEFAULT_ITERATIONS;
	memcpy(s->secret.salt, mac, SCRAM_SALT_BYTES);
	s->secret.salt_len = SCRAM_SALT_BYTES;
	rand_bytes(s->secret.stored_key, SCRAM_KEY_LEN);
	rand_bytes(s->secret.server_key, SCRAM_KEY_LEN);
	return s;
}

void scram_server_free(struct scram_server *s)
{
	if (!s)
		return;
	free(s->fixed_nonce);
	free(s->gs2_header);
	free(s->client_first_bare);
	free(s->server_first);
	free(s->nonce);
	explicit_bzero(s, sizeof(*s));
	free(s);
}

void scram_server_set_nonce(struct scram_server *s, const char *server_nonce)
{
	free(s->fixed_nonce);
	s->fixed_nonce = xstrdup(server_nonce);
}

/*
 * gs2-header = gs2-cbind-flag "," [ authzid ] ","; on success *pp points at
 * client-first-message-bare.
 */
static int parse_gs2_header(const char **pp)
{
	const char *p = *pp;
	if (p[0] == 'p')
		return -1; /* channel binding requested: not supported */
	if ((p[0] != 'n' && p[0] != 'y') || p[1] != ',')
		return -1;
	/* An authzid ("a=...") is refused, as PostgreSQL refuses it. */
	if (p[2] != ',')
		return -1;
	*pp = p + 3;
	return 0;
}

int scram_server_first(struct scram_server *s, const uint8_t *msg, size_t len, char **server_first)
{
	*server_first = NULL;
	if (s->step != SCRAM_SERVER_INIT)
		goto fail;
	char *text = msg_dup(msg, len);
	if (!text)
		goto fail;
	const char *p = text;
	struct attr user, nonce;
	if (parse_gs2_header(&p) < 0)
		goto fail_text;
	const char *bare = p;
	/* "m=" (mandatory extension) would be here in place of "n=": refused. */
	if (expect_attr(&p, 'n', &user) < 0 || !valid_saslname(user.val, user.len))
		goto fail_text;
	if (expect_attr(&p, 'r', &nonce) < 0 || !valid_nonce(nonce.val, nonce.len))
		goto fail_text;
	if (skip_extensions(&p) < 0)
		goto fail_text;

	s->gs2_header = xstrndup(text, (size_t)(bare - text));
	s->client_first_bare = xstrdup(bare);
	char *snonce = s->fixed_nonce ? xstrdup(s->fixed_nonce) : nonce_new();
	s->nonce = xasprintf("%.*s%s", (int)nonce.len, nonce.val, snonce);
	free(snonce);
	char *salt = b64_encode(s->secret.salt, s->secret.salt_len);
	s->server_first = xasprintf("r=%s,s=%s,i=%d", s->nonce, salt, s->secret.iterations);
	free(salt);
	free(text);
	*server_first = xstrdup(s->server_first);
	s->step = SCRAM_SERVER_FIRST_SENT;
	return 0;

fail_text:
	free(text);
fail:
	s->step = SCRAM_SERVER_FAILED;
	return -1;
}

int scram_server_final(struct scram_server *s, const uint8_t *msg, size_t len, char **server_final,
		       bool *ok)
{
	*server_final = NULL;
	*ok = false;
	if (s->step != SCRAM_SERVER_FIRST_SENT)
		goto fail;
	char *text = msg_dup(msg, len);
	if (!text)
		goto fail;
	const char *p = text;
	struct attr cbind, nonce, proof;
	/* The channel-binding data must repeat the gs2 header, byte for byte. */
	if (expect_attr(&p, 'c', &cbind) < 0)
		goto fail_text;
	char *expect_cbind = b64_encode((const uint8_t *)s->gs2_header, strlen(s->gs2_header));
	bool cbind_ok = cbind.len == strlen(expect_cbind) &&
			memcmp(cbind.val, expect_cbind, cbind.len) == 0;
	free(expect_cbind);
	if (!cbind_ok)
		goto fail_text;
	if (expect_attr(&p, 'r', &nonce) < 0 || nonce.len != strlen(s->nonce) ||
	    memcmp(nonce.val, s->nonce, nonce.len) != 0)
		goto fail_text;
	/* Extensions may precede the proof, which must be the last attribute. */
	const char *without_proof_end;
	for (;;) {
		without_proof_end = p - 1; /* the comma before this attribute */
		struct attr a;
		if (next_attr(&p, &a) < 0)
			goto fail_text;
		if (a.name == 'p') {
			proof = a;
			break;
		}
	}
	if (*p != '\0')
		goto fail_text;
	uint8_t proof_bytes[SCRAM_KEY_LEN];
	size_t proof_len;
	if (b64_decode(proof.val, proof.len, proof_bytes, sizeof(proof_bytes), &proof_len) < 0 ||
	    proof_len != SCRAM_KEY_LEN)
		goto fail_text;

	char *auth_message = xasprintf("%s,%s,%.*s", s->client_first_bare, s->server_first,
				       (int)(without_proof_end - text), text);
	free(text);
	uint8_t signature[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN], stored[SCRAM_KEY_LEN];
	hmac256(s->secret.stored_key, SCRAM_KEY_LEN, auth_message, strlen(auth_message), signature);
	for (size_t i = 0; i < SCRAM_KEY_LEN; i++)
		client_key[i] = proof_bytes[i] ^ signature[i];
	sha256(client_key, SCRAM_KEY_LEN, stored);
	bool match = mem_equal_ct(stored, s->secret.stored_key, SCRAM_KEY_LEN);
	if (!match || s->doomed) {
		/* Well-formed but wrong: the caller reports a failed password. */
		free(auth_message);
		s->step = SCRAM_SERVER_FAILED;
		return 0;
	}
	uint8_t server_sig[SCRAM_KEY_LEN];
	hmac256(s->secret.server_key, SCRAM_KEY_LEN, auth_message, strlen(auth_message),
		server_sig);
	free(auth_message);
	char *v = b64_encode(server_sig, SCRAM_KEY_LEN);
	*server_final = xasprintf("v=%s", v);
	free(v);
	memcpy(s->client_key, client_key, SCRAM_KEY_LEN);
	explicit_bzero(client_key, sizeof(client_key));
	s->step = SCRAM_SERVER_DONE;
	*ok = true;
	return 0;

fail_text:
	free(text);
fail:
	s->step = SCRAM_SERVER_FAILED;
	return -1;
}

bool scram_server_keys(const struct scram_server *s, uint8_t client_key[SCRAM_KEY_LEN],
		       uint8_t server_key[SCRAM_KEY_LEN])
{
	if (s->step != SCRAM_SERVER_DONE)
		return false;
	memcpy(client_key, s->client_key, SCRAM_KEY_LEN);
	memcpy(server_key, s->secret.server_key, SCRAM_KEY_LEN);
	return true;
}

/* ---- client role -------------------------------------------------------- */

enum scram_client_state {
	SCRAM_CLIENT_INIT, /* client-first not built yet */
	SCRAM_CLIENT_FIRST_SENT, /* waiting for server-first */
	SCRAM_CLIENT_FIRST_RECEIVED, /* server-first taken: client-final to build */
	SCRAM_CLIENT_FINAL_SENT, /* waiting for server-final */
	SCRAM_CLIENT_DONE, /* the server proved itself */
	SCRAM_CLIENT_FAILED,
};

struct scram_client {
	enum scram_client_state step;
	char *password; /* NULL in pass-through mode */
	uint8_t client_key[SCRAM_KEY_LEN]; /* pass-through mode */
	uint8_t server_key[SCRAM_KEY_LEN];
	char *user; /* the n= attribute: "" unless a test sets it */
	char *nonce; /* our nonce */
	char *client_first_bare;
	char *server_first; /* as received, in SCRAM_CLIENT_FIRST_RECEIVED */
	char *full_nonce; /* ours and the server's, from server-first */
	uint8_t server_signature[SCRAM_KEY_LEN]; /* expected in server-final */
};

struct scram_client *scram_client_new(const char *password, const uint8_t *client_key,
				      const uint8_t *server_key)
{
	if (!password && (!client_key || !server_key))
		return NULL;
	struct scram_client *c = xcalloc(1, sizeof(*c));
	c->step = SCRAM_CLIENT_INIT;
	if (password) {
		c->password = xstrdup(password);
	} else {
		memcpy(c->client_key, client_key, SCRAM_KEY_LEN);
		memcpy(c->server_key, server_key, SCRAM_KEY_LEN);
	}
	/*
	 * PostgreSQL takes the user from the startup packet and ignores n=, so
	 * libpq sends it empty; so do we.
	 */
	c->user = xstrdup("");
	return c;
}

void scram_client_free(struct scram_client *c)
{
	if (!c)
		return;
	if (c->password) {
		explicit_bzero(c->password, strlen(c->password));
		free(c->password);
	}
	free(c->user);
	free(c->nonce);
	free(c->client_first_bare);
	free(c->server_first);
	free(c->full_nonce);
	explicit_bzero(c, sizeof(*c));
	free(c);
}

void scram_client_set_nonce(struct scram_client *c, const char *nonce)
{
	free(c->nonce);
	c->nonce = xstrdup(nonce);
}

void scram_client_set_user(struct scram_client *c, const char *user)
{
	free(c->user);
	c->user = xstrdup(user);
}

char *scram_client_first(struct scram_client *c)
{
	if (!c->nonce)
		c->nonce = nonce_new();
	free(c->client_first_bare);
	c->client_first_bare = xasprintf("n=%s,r=%s", c->user, c->nonce);
	c->step = SCRAM_CLIENT_FIRST_SENT;
	return xasprintf("n,,%s", c->client_first_bare);
}

int scram_client_receive_first(struct scram_client *c, const uint8_t *msg, size_t len,
			       struct scram_job **job)
{
	*job = NULL;
	if (c->step != SCRAM_CLIENT_FIRST_SENT)
		goto fail;
	char *text = msg_dup(msg, len);
	if (!text)
		goto fail;
	const char *p = text;
	struct attr nonce, salt, iter;
	/* A leading "m=" (mandatory extension) fails here: r= must come first. */
	if (expect_attr(&p, 'r', &nonce) < 0 || !valid_nonce(nonce.val, nonce.len))
		goto fail_text;
	/* The server's nonce extends ours with a non-empty part of its own. */
	size_t ours = strlen(c->nonce);
	if (nonce.len <= ours || memcmp(nonce.val, c->nonce, ours) != 0)
		goto fail_text;
	uint8_t salt_bytes[SCRAM_JOB_SALT_MAX];
	size_t salt_len;
	if (expect_attr(&p, 's', &salt) < 0 ||
	    b64_decode(salt.val, salt.len, salt_bytes, sizeof(salt_bytes), &salt_len) < 0 ||
	    salt_len == 0)
		goto fail_text;
	int iterations;
	if (expect_attr(&p, 'i', &iter) < 0 ||
	    (iterations = parse_iterations(iter.val, iter.len, SCRAM_MAX_ITERATIONS)) < 0)
		goto fail_text;
	if (skip_extensions(&p) < 0)
		goto fail_text;

	if (c->password)
		*job = scram_job_new(c->password, salt_bytes, salt_len, iterations);
	c->full_nonce = xstrndup(nonce.val, nonce.len);
	c->server_first = text;
	c->step = SCRAM_CLIENT_FIRST_RECEIVED;
	return 0;

fail_text:
	free(text);
fail:
	c->step = SCRAM_CLIENT_FAILED;
	return -1;
}

int scram_client_final_build(struct scram_client *c, const struct scram_job *job,
			     char **client_final)
{
	*client_final = NULL;
	if (c->step != SCRAM_CLIENT_FIRST_RECEIVED)
		goto fail;
	const uint8_t *client_key = c->client_key, *server_key = c->server_key;
	if (c->password) {
		if (!job || job->rc != 0)
			goto fail;
		client_key = job->client_key;
		server_key = job->server_key;
	}
	char *without_proof = xasprintf("c=" SCRAM_CBIND_NONE ",r=%s", c->full_nonce);
	char *auth_message = xasprintf("%s,%s,%s", c->client_first_bare, c->server_first,
				       without_proof);
	uint8_t stored[SCRAM_KEY_LEN], signature[SCRAM_KEY_LEN], proof[SCRAM_KEY_LEN];
	sha256(client_key, SCRAM_KEY_LEN, stored);
	hmac256(stored, SCRAM_KEY_LEN, auth_message, strlen(auth_message), signature);
	for (size_t i = 0; i < SCRAM_KEY_LEN; i++)
		proof[i] = client_key[i] ^ signature[i];
	hmac256(server_key, SCRAM_KEY_LEN, auth_message, strlen(auth_message), c->server_signature);
	free(auth_message);
	char *proof_b64 = b64_encode(proof, SCRAM_KEY_LEN);
	explicit_bzero(proof, sizeof(proof));
	*client_final = xasprintf("%s,p=%s", without_proof, proof_b64);
	free(proof_b64);
	free(without_proof);
	c->step = SCRAM_CLIENT_FINAL_SENT;
	return 0;

fail:
	c->step = SCRAM_CLIENT_FAILED;
	return -1;
}

int scram_client_final(struct scram_client *c, const uint8_t *msg, size_t len, char **client_final)
{
	struct scram_job *job = NULL;
	*client_final = NULL;
	if (scram_client_receive_first(c, msg, len, &job) < 0)
		return -1;
	if (job)
		scram_job_run(job);
	int rc = scram_client_final_build(c, job, client_final);
	scram_job_free(job);
	return rc;
}

bool scram_client_done(const struct scram_client *c)
{
	return c->step == SCRAM_CLIENT_DONE;
}

int scram_client_verify(struct scram_client *c, const uint8_t *msg, size_t len)
{
	if (c->step != SCRAM_CLIENT_FINAL_SENT)
		goto fail;
	char *text = msg_dup(msg, len);
	if (!text)
		goto fail;
	const char *p = text;
	struct attr v;
	/* "e=..." (a server-error) fails here like any other non-"v=" message. */
	if (expect_attr(&p, 'v', &v) < 0 || skip_extensions(&p) < 0)
		goto fail_text;
	uint8_t sig[SCRAM_KEY_LEN];
	size_t sig_len;
	if (b64_decode(v.val, v.len, sig, sizeof(sig), &sig_len) < 0 || sig_len != SCRAM_KEY_LEN ||
	    !mem_equal_ct(sig, c->server_signature, SCRAM_KEY_LEN))
		goto fail_text;
	free(text);
	c->step = SCRAM_CLIENT_DONE;
	return 0;

fail_text:
	free(text);
fail:
	c->step = SCRAM_CLIENT_FAILED;
	return -1;
}
