/*
 * fuzz_scram.c - fuzz target for SCRAM-SHA-256 in both roles (scram.c):
 * sluice as the server a client authenticates to, and as the client that
 * logs in to PostgreSQL, each fed messages from the input.
 *
 * Input: a control byte, then the first message, then after the first
 * '\n' the second (a SCRAM message never holds a newline, so the split
 * costs nothing; NULs stay in, and must be refused). Control bits:
 *   0  role: 0 server (client-first, client-final), 1 client (server-first,
 *      server-final)
 *   1  server: the user is unknown (the mock exchange); client: it logs in
 *      with keys from an earlier exchange instead of the password
 *   2  honest peer: the second message is not the input's but the one a
 *      peer that knows the password would send, with the input's second
 *      part added as extension attributes; with no second part the
 *      exchange must then succeed (and for an unknown user, fail as a wrong
 *      password does)
 * Nonces are fixed with the test hooks so that the input can echo them.
 *
 * Checks: return codes are those scram.h documents, out-parameters are set
 * exactly when it says, messages built are well-formed printable strings
 * that carry the nonces, an iteration count above SCRAM_MAX_ITERATIONS is
 * refused, a derivation is run only when cheap (and its job's absence is
 * refused), and a finished exchange takes no further message. The input
 * is also read as a stored secret, which must survive formatting and
 * parsing again unchanged.
 *
 * It owns no I/O; all state between inputs is the fixed secret and keys.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "fuzz.h"
#include "sluice/scram.h"

/* SCRAM messages are a few hundred bytes and the parsers refuse past 4 KB. */
#define FUZZ_MAX_INPUT (16u * 1024u)
/* Derivations run only up to this count, so that one input stays fast. */
#define CHEAP_ITERATIONS 64

#define PASSWORD "pencil"
#define SERVER_NONCE "3rfcNHYJY1ZVvWVs7j"
#define CLIENT_NONCE "rOprNGfwEbeRWgbNEkqO"
/* RFC 7677's salt and count for "pencil", in PostgreSQL's stored form. */
#define SECRET                                                                                     \
	"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=" \
	":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="

static struct scram_secret secret;
static uint8_t client_key[SCRAM_KEY_LEN], server_key[SCRAM_KEY_LEN];
static const uint8_t mock_seed[SCRAM_KEY_LEN] = { 7 };
static bool ready;

static void setup(void)
{
	FUZZ_CHECK(scram_parse_secret(SECRET, &secret) == 0);
	FUZZ_CHECK(scram_derive_keys(PASSWORD, secret.salt, secret.salt_len, secret.iterations,
				     client_key, server_key) == 0);
	uint8_t stored[SCRAM_KEY_LEN];
	SHA256(client_key, SCRAM_KEY_LEN, stored);
	FUZZ_CHECK(memcmp(stored, secret.stored_key, SCRAM_KEY_LEN) == 0);
	ready = true;
}

/* ---- the arithmetic of an honest peer (RFC 5802 section 3) ---------------- */

static char *b64(const uint8_t *p, size_t n)
{
	char *out = malloc(4 * ((n + 2) / 3) + 1);
	FUZZ_CHECK(out != NULL);
	EVP_EncodeBlock((unsigned char *)out, p, (int)n);
	return out;
}

static void hmac(const uint8_t key[SCRAM_KEY_LEN], const char *text, uint8_t out[SCRAM_KEY_LEN])
{
	unsigned int len = SCRAM_KEY_LEN;
	FUZZ_CHECK(HMAC(EVP_sha256(), key, SCRAM_KEY_LEN, (const uint8_t *)text, strlen(text), out,
			&len) != NULL);
}

/* "a,b,c" in a fresh string. */
static char *join3(const char *a, const char *b, const char *c)
{
	size_t n = strlen(a) + strlen(b) + strlen(c) + 3;
	char *s = malloc(n);
	FUZZ_CHECK(s != NULL);
	snprintf(s, n, "%s,%s,%s", a, b, c);
	return s;
}

/* ---- checks on what the module builds ---------------------------------------- */

/* Visible ASCII only: what every SCRAM message sluice builds is made of. */
static bool printable(const char *s)
{
	for (; *s; s++)
		if (*s < 0x21 || *s > 0x7e)
			return false;
	return true;
}

/* The value of attribute name in msg (up to the next ','), or NULL. */
static const char *attr(const char *msg, char name, size_t *len)
{
	for (const char *p = msg; p; p = strchr(p, ',')) {
		if (*p == ',')
			p++;
		if (p[0] == name && p[1] == '=') {
			*len = strcspn(p + 2, ",");
			return p + 2;
		}
	}
	return NULL;
}

/* "v=" and the base64 of 32 bytes, nothing else. */
static bool signature_well_formed(const char *s)
{
	return strncmp(s, "v=", 2) == 0 && strlen(s) == 2 + 44 && s[45] == '=' && printable(s);
}

/* The decimal value of the input's own i= attribute, or -1 if it has none or it is no number. */
static long long claimed_iterations(const char *msg)
{
	size_t len = 0;
	const char *v = attr(msg, 'i', &len);
	if (!v || len == 0 || len > 18 || strspn(v, "0123456789") < len)
		return -1;
	return strtoll(v, NULL, 10);
}

/* ---- server role ----------------------------------------------------------------- */

/* What an honest client sends as client-final, given the exchange so far. */
static char *honest_client_final(const char *client_first, const char *server_first,
				 const char *extensions)
{
	const char *bare = client_first + 3; /* after "n,," or "y,," */
	char *cbind = b64((const uint8_t *)client_first, 3);
	size_t nlen = 0;
	const char *nonce = attr(server_first, 'r', &nlen);
	FUZZ_CHECK(nonce != NULL);
	size_t wn = strlen(cbind) + nlen + strlen(extensions) + 16;
	char *without_proof = malloc(wn);
	FUZZ_CHECK(without_proof != NULL);
	snprintf(without_proof, wn, "c=%s,r=%.*s%s%s", cbind, (int)nlen, nonce,
		 *extensions ? "," : "", extensions);
	char *auth_message = join3(bare, server_first, without_proof);
	uint8_t stored[SCRAM_KEY_LEN], sig[SCRAM_KEY_LEN], proof[SCRAM_KEY_LEN];
	SHA256(client_key, SCRAM_KEY_LEN, stored);
	hmac(stored, auth_message, sig);
	for (size_t i = 0; i < SCRAM_KEY_LEN; i++)
		proof[i] = client_key[i] ^ sig[i];
	char *p64 = b64(proof, SCRAM_KEY_LEN);
	size_t fn = wn + strlen(p64) + 4;
	char *final = malloc(fn);
	FUZZ_CHECK(final != NULL);
	snprintf(final, fn, "%s,p=%s", without_proof, p64);
	free(p64);
	free(auth_message);
	free(without_proof);
	free(cbind);
	return final;
}

static void fuzz_server(uint8_t control, const uint8_t *first, size_t first_len,
			const uint8_t *second, size_t second_len, bool has_second)
{
	bool unknown = control & 2, honest = control & 4;
	struct scram_server *s = scram_server_new(unknown ? NULL : &secret, "alice", mock_seed);
	scram_server_set_nonce(s, SERVER_NONCE);
	char *server_first = (char *)"unset";
	int rc = scram_server_first(s, first, first_len, &server_first);
	FUZZ_CHECK(rc == 0 || rc == -1);
	FUZZ_CHECK((rc == 0) == (server_first != NULL));
	if (rc < 0) {
		/* A failed exchange takes nothing more. */
		char *sf = (char *)"unset";
		bool ok = true;
		FUZZ_CHECK(scram_server_final(s, second, second_len, &sf, &ok) == -1);
		FUZZ_CHECK(sf == NULL && !ok);
		scram_server_free(s);
		return;
	}
	/* r=<client nonce><ours>,s=<salt>,i=<count>, the client's nonce copied from its message. */
	size_t nlen = 0, clen = 0, slen = 0;
	const char *nonce = attr(server_first, 'r', &nlen);
	char *text = strndup((const char *)first, first_len);
	FUZZ_CHECK(text != NULL && strlen(text) == first_len);
	const char *cnonce = attr(text + 3, 'r', &clen);
	FUZZ_CHECK(printable(server_first) && strncmp(server_first, "r=", 2) == 0);
	FUZZ_CHECK(nonce && cnonce && nlen == clen + strlen(SERVER_NONCE));
	FUZZ_CHECK(memcmp(nonce, cnonce, clen) == 0);
	FUZZ_CHECK(memcmp(nonce + clen, SERVER_NONCE, strlen(SERVER_NONCE)) == 0);
	FUZZ_CHECK(attr(server_first, 's', &slen) != NULL && slen > 0 && slen % 4 == 0);
	FUZZ_CHECK(claimed_iterations(server_first) ==
		   (unknown ? SCRAM_DEFAULT_ITERATIONS : secret.iterations));

	char *final_msg = NULL;
	if (honest) {
		char *ext = strndup((const char *)second, second_len);
		FUZZ_CHECK(ext != NULL);
		final_msg = honest_client_final(text, server_first, ext);
		free(ext);
		second = (const uint8_t *)final_msg;
		second_len = strlen(final_msg);
	}
	char *server_final = (char *)"unset";
	bool ok = true;
	rc = scram_server_final(s, second, second_len, &server_final, &ok);
	FUZZ_CHECK(rc == 0 || rc == -1);
	FUZZ_CHECK(ok == (server_final != NULL));
	FUZZ_CHECK(rc == 0 || !ok);
	/* An unknown user never gets in, whatever the proof. */
	FUZZ_CHECK(!(unknown && ok));
	/* An honest client without extensions is let in, unless the user is unknown. */
	if (honest && !has_second)
		FUZZ_CHECK(rc == 0 && ok == !unknown);
	uint8_t ck[SCRAM_KEY_LEN], sk[SCRAM_KEY_LEN];
	FUZZ_CHECK(scram_server_keys(s, ck, sk) == ok);
	if (ok) {
		FUZZ_CHECK(signature_well_formed(server_final));
		FUZZ_CHECK(memcmp(ck, client_key, SCRAM_KEY_LEN) == 0);
		FUZZ_CHECK(memcmp(sk, server_key, SCRAM_KEY_LEN) == 0);
		free(server_final);
	}
	/* Done or failed: a repeated message is refused. */
	char *again = (char *)"unset";
	FUZZ_CHECK(scram_server_first(s, first, first_len, &again) == -1 && again == NULL);
	free(final_msg);
	free(text);
	free(server_first);
	scram_server_free(s);
}

/* ---- client role ----------------------------------------------------------------- */

/* The server-final an honest server sends after client_final, and the input's extensions. */
static char *honest_server_final(const char *server_first, const char *client_final,
				 const uint8_t key[SCRAM_KEY_LEN], const char *extensions)
{
	const char *p = strstr(client_final, ",p=");
	FUZZ_CHECK(p != NULL);
	char *without_proof = strndup(client_final, (size_t)(p - client_final));
	FUZZ_CHECK(without_proof != NULL);
	char *auth_message = join3("n=,r=" CLIENT_NONCE, server_first, without_proof);
	uint8_t sig[SCRAM_KEY_LEN];
	hmac(key, auth_message, sig);
	char *v = b64(sig, SCRAM_KEY_LEN);
	size_t n = strlen(v) + strlen(extensions) + 4;
	char *msg = malloc(n);
	FUZZ_CHECK(msg != NULL);
	snprintf(msg, n, "v=%s%s%s", v, *extensions ? "," : "", extensions);
	free(v);
	free(auth_message);
	free(without_proof);
	return msg;
}

static void fuzz_client(uint8_t control, const uint8_t *first, size_t first_len,
			const uint8_t *second, size_t second_len, bool has_second)
{
	bool with_keys = control & 2, honest = control & 4;
	struct scram_client *c = with_keys ? scram_client_new(NULL, client_key, server_key)
					   : scram_client_new(PASSWORD, NULL, NULL);
	FUZZ_CHECK(c != NULL);
	scram_client_set_nonce(c, CLIENT_NONCE);
	char *client_first = scram_client_first(c);
	FUZZ_CHECK(strcmp(client_first, "n,,n=,r=" CLIENT_NONCE) == 0);
	free(client_first);

	struct scram_job *job = (struct scram_job *)&control; /* must be overwritten */
	int rc = scram_client_receive_first(c, first, first_len, &job);
	FUZZ_CHECK(rc == 0 || rc == -1);
	FUZZ_CHECK(rc == 0 ? (job != NULL) == !with_keys : job == NULL);
	char *text = strndup((const char *)first, first_len);
	FUZZ_CHECK(text != NULL);
	/* The cap: a count above SCRAM_MAX_ITERATIONS is refused before any work. */
	long long claimed = claimed_iterations(text);
	if (claimed > SCRAM_MAX_ITERATIONS || claimed == 0)
		FUZZ_CHECK(rc == -1);
	if (rc < 0) {
		char *cf = (char *)"unset";
		FUZZ_CHECK(scram_client_final_build(c, NULL, &cf) == -1 && cf == NULL);
		FUZZ_CHECK(scram_client_verify(c, second, second_len) == -1);
		FUZZ_CHECK(!scram_client_done(c));
		goto out;
	}
	FUZZ_CHECK(strlen(text) == first_len && strncmp(text, "r=" CLIENT_NONCE, 22) == 0);
	if (job) {
		FUZZ_CHECK(job->iterations >= 1 && job->iterations <= SCRAM_MAX_ITERATIONS);
		FUZZ_CHECK(job->iterations == claimed);
		FUZZ_CHECK(job->salt_len >= 1 && job->salt_len <= SCRAM_JOB_SALT_MAX);
		FUZZ_CHECK(job->rc == -1 && strcmp(job->password, PASSWORD) == 0);
		if (job->iterations > CHEAP_ITERATIONS) {
			/* Too dear to run here: a job that never ran must be refused. */
			char *cf = (char *)"unset";
			FUZZ_CHECK(scram_client_final_build(c, job, &cf) == -1 && cf == NULL);
			FUZZ_CHECK(!scram_client_done(c));
			goto out;
		}
		scram_job_run(job);
		FUZZ_CHECK(job->rc == 0);
	}
	char *client_final = (char *)"unset";
	rc = scram_client_final_build(c, job, &client_final);
	FUZZ_CHECK(rc == 0 && client_final != NULL && printable(client_final));
	FUZZ_CHECK(strncmp(client_final, "c=biws,r=", 9) == 0);
	size_t nlen = 0, plen = 0;
	const char *nonce = attr(text, 'r', &nlen);
	const char *proof = attr(client_final, 'p', &plen);
	FUZZ_CHECK(nonce && strncmp(client_final + 9, nonce, nlen) == 0);
	FUZZ_CHECK(proof && plen == 44 && proof[plen] == '\0');

	char *final_msg = NULL;
	if (honest) {
		char *ext = strndup((const char *)second, second_len);
		FUZZ_CHECK(ext != NULL);
		final_msg = honest_server_final(text, client_final, job ? job->server_key : server_key,
						ext);
		free(ext);
		second = (const uint8_t *)final_msg;
		second_len = strlen(final_msg);
	}
	rc = scram_client_verify(c, second, second_len);
	FUZZ_CHECK(rc == 0 || rc == -1);
	FUZZ_CHECK(scram_client_done(c) == (rc == 0));
	if (honest && !has_second)
		FUZZ_CHECK(rc == 0);
	/* Verified or failed: nothing more is taken. */
	FUZZ_CHECK(scram_client_verify(c, second, second_len) == -1);
	free(final_msg);
	free(client_final);
out:
	free(text);
	scram_job_free(job);
	scram_client_free(c);
}

/* ---- the input as a stored secret -------------------------------------------------- */

static void fuzz_secret(const char *text)
{
	struct scram_secret a, b;
	if (scram_parse_secret(text, &a) < 0)
		return;
	FUZZ_CHECK(a.iterations >= 1 && a.salt_len >= 1 && a.salt_len <= sizeof(a.salt));
	char *formatted = scram_secret_format(&a);
	FUZZ_CHECK(printable(formatted));
	FUZZ_CHECK(scram_parse_secret(formatted, &b) == 0);
	FUZZ_CHECK(a.iterations == b.iterations && a.salt_len == b.salt_len);
	FUZZ_CHECK(memcmp(a.salt, b.salt, a.salt_len) == 0);
	FUZZ_CHECK(memcmp(a.stored_key, b.stored_key, SCRAM_KEY_LEN) == 0);
	FUZZ_CHECK(memcmp(a.server_key, b.server_key, SCRAM_KEY_LEN) == 0);
	free(formatted);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ready)
		setup();
	if (size == 0)
		return 0;
	if (size > FUZZ_MAX_INPUT)
		size = FUZZ_MAX_INPUT;
	uint8_t control = data[0];
	/* Exact-size copies, so that a read past a message is an AddressSanitizer error. */
	size_t rest = size - 1;
	const uint8_t *nl = memchr(data + 1, '\n', rest);
	size_t first_len = nl ? (size_t)(nl - (data + 1)) : rest;
	size_t second_len = nl ? rest - first_len - 1 : 0;
	uint8_t *first = malloc(first_len ? first_len : 1);
	uint8_t *second = malloc(second_len ? second_len : 1);
	FUZZ_CHECK(first && second);
	memcpy(first, data + 1, first_len);
	if (second_len)
		memcpy(second, nl + 1, second_len);
	if (control & 1)
		fuzz_client(control, first, first_len, second, second_len, second_len > 0);
	else
		fuzz_server(control, first, first_len, second, second_len, second_len > 0);
	char *text = strndup((const char *)data + 1, rest);
	FUZZ_CHECK(text != NULL);
	fuzz_secret(text);
	free(text);
	free(first);
	free(second);
	return 0;
}
