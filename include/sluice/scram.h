/*
 * scram.h - SCRAM-SHA-256 (RFC 5802, RFC 7677) for both roles, I/O-free.
 *
 * Messages in, messages out, verdicts: the whole exchange is unit-tested
 * against the RFC 7677 vectors. Cryptography is OpenSSL's only (HMAC,
 * SHA-256, PBKDF2, RAND_bytes). Channel binding is not offered ("n,," and
 * "biws"); SCRAM-SHA-256-PLUS is not advertised.
 *
 * Ownership: every char ** out-parameter receives a heap string the caller
 * frees. Input buffers are borrowed for the call only.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/common.h"

#define SCRAM_KEY_LEN 32
#define SCRAM_DEFAULT_ITERATIONS 4096
/*
 * Upper bound on the iteration count a server may ask us to compute.
 * PostgreSQL issues 4096 unless scram_iterations is raised; 100,000 covers
 * hardened setups and costs about 0.2 s of CPU, where a fake server's ten
 * million cost every client of the process 19.5 s. A larger request fails
 * the login like a malformed message (scram_client_receive_first).
 */
#define SCRAM_MAX_ITERATIONS 100000

/* A parsed "SCRAM-SHA-256$<iter>:<salt b64>$<StoredKey b64>:<ServerKey b64>" secret. */
struct scram_secret {
	int iterations;
	uint8_t salt[64];
	size_t salt_len;
	uint8_t stored_key[SCRAM_KEY_LEN];
	uint8_t server_key[SCRAM_KEY_LEN];
};

/* 0, or -1 if text is not a well-formed SCRAM secret. */
int scram_parse_secret(const char *text, struct scram_secret *out) WUR;
/* Builds a secret from a plaintext password (fresh random salt). */
int scram_secret_from_password(const char *password, int iterations, struct scram_secret *out) WUR;
/*
 * Builds a secret from a password and a given salt (1..64 bytes). Passwords
 * are not SASLprep-normalized: ASCII passwords match PostgreSQL exactly,
 * others are used as raw bytes (see scram.c).
 */
int scram_secret_build(const char *password, const uint8_t *salt, size_t salt_len, int iterations,
		       struct scram_secret *out) WUR;
/*
 * ClientKey and ServerKey (RFC 5802) from a password, salt and iteration
 * count: what a client derives. -1 only if OpenSSL's PBKDF2 fails.
 */
int scram_derive_keys(const char *password, const uint8_t *salt, size_t salt_len, int iterations,
		      uint8_t client_key[SCRAM_KEY_LEN], uint8_t server_key[SCRAM_KEY_LEN]) WUR;
/* The secret in PostgreSQL's text form; the caller frees it. */
char *scram_secret_format(const struct scram_secret *s);

/*
 * ---- key derivation as a job ----
 *
 * PBKDF2 is the one expensive step of SCRAM: milliseconds at PostgreSQL's
 * 4096 rounds, tens of milliseconds at SCRAM_MAX_ITERATIONS, as long as an auth_file
 * secret says at its own count. So the steps that need it do not derive
 * inline: they hand back a struct scram_job, which the caller runs wherever
 * it likes (the connection code: libuv's thread pool, see derive.h) and then
 * hands to the step that continues the exchange.
 *
 * scram_job_run() reads and writes the job and nothing else: no shared
 * state, no logging, no allocation, so it is safe on any thread while the
 * session that asked for it lives on, or is freed, on another. The job owns
 * copies of its inputs for that reason.
 */

/* Salts up to this long can be derived from (a server's salt is not ours to bound lower). */
#define SCRAM_JOB_SALT_MAX 1024

struct scram_job {
	/* inputs, set by scram_job_new() */
	char *password; /* owned copy, cleansed by scram_job_free() */
	uint8_t salt[SCRAM_JOB_SALT_MAX];
	size_t salt_len;
	int iterations;
	/* outputs, set by scram_job_run(); rc stays -1 for a job never run */
	int rc; /* 0, or -1 if the derivation failed */
	uint8_t client_key[SCRAM_KEY_LEN];
	uint8_t server_key[SCRAM_KEY_LEN];
};

/*
 * A job deriving ClientKey and ServerKey from password, salt (1 to
 * SCRAM_JOB_SALT_MAX bytes, else NULL) and iterations. The caller owns it.
 */
struct scram_job *scram_job_new(const char *password, const uint8_t *salt, size_t salt_len,
				int iterations);
/* A job for a new secret of password: a fresh random salt (drawn now, on the caller's thread). */
struct scram_job *scram_job_new_secret(const char *password, int iterations);
/* The derivation: thread-safe, see above. */
void scram_job_run(struct scram_job *j);
/* Cleanses and frees j (NULL is fine). */
void scram_job_free(struct scram_job *j);
/*
 * The secret a run job's keys make (StoredKey = H(ClientKey)). -1 if the job
 * failed or its salt is longer than a secret holds (64 bytes).
 */
int scram_secret_from_job(const struct scram_job *j, struct scram_secret *out) WUR;

/* ---- server role: sluice authenticating a client ---- */

struct scram_server;

/*
 * secret NULL means "unknown user": the exchange proceeds with a salt and
 * iteration count derived from mock_seed and the user name, so an unknown
 * user fails at the same step, the same way, as a wrong password.
 */
struct scram_server *scram_server_new(const struct scram_secret *secret, const char *user,
				      const uint8_t mock_seed[SCRAM_KEY_LEN]);
void scram_server_free(struct scram_server *s);
/* client-first-message -> server-first-message. -1 on a malformed message. */
int scram_server_first(struct scram_server *s, const uint8_t *msg, size_t len,
		       char **server_first) WUR;
/*
 * client-final-message -> server-final-message. Returns 0 and sets *ok when
 * the message was well-formed (ok false on a wrong proof; server_final is then
 * NULL); -1 on a malformed message.
 */
int scram_server_final(struct scram_server *s, const uint8_t *msg, size_t len, char **server_final,
		       bool *ok) WUR;
/*
 * After a successful exchange: the ClientKey the client proved it has (and the
 * secret's ServerKey), which let sluice log in to a server that holds the same
 * secret without knowing the password. false before success.
 */
bool scram_server_keys(const struct scram_server *s, uint8_t client_key[SCRAM_KEY_LEN],
		       uint8_t server_key[SCRAM_KEY_LEN]);

/* ---- client role: sluice logging in to PostgreSQL ---- */

struct scram_client;

/*
 * Either password (plaintext) or both client_key and server_key (from a
 * client's earlier SCRAM exchange) must be given.
 */
struct scram_client *scram_client_new(const char *password, const uint8_t *client_key,
				      const uint8_t *server_key);
void scram_client_free(struct scram_client *c);
/* The client-first-message ("n,,n=,r=<nonce>"). */
char *scram_client_first(struct scram_client *c);
/*
 * Takes the server-first-message. With a password, *job is the derivation
 * the proof needs (the caller owns and runs it, then calls
 * scram_client_final_build with it); with keys from a client, *job is NULL
 * and the proof can be built at once. -1 on malformed input, a bad nonce or
 * more than SCRAM_MAX_ITERATIONS rounds.
 */
int scram_client_receive_first(struct scram_client *c, const uint8_t *msg, size_t len,
			       struct scram_job **job) WUR;
/*
 * The client-final-message, from the job scram_client_receive_first() asked
 * for (run; borrowed for the call), or job NULL when it asked for none. -1
 * if called out of turn, without the job it needs, or if the job failed.
 */
int scram_client_final_build(struct scram_client *c, const struct scram_job *job,
			     char **client_final) WUR;
/*
 * server-first-message -> client-final-message, deriving inline: the two
 * calls above with the job run on the calling thread. For tests and tools;
 * the event loop never calls it.
 */
int scram_client_final(struct scram_client *c, const uint8_t *msg, size_t len,
		       char **client_final) WUR;
/* Checks the server-final-message's signature. 0 if the server proved itself. */
int scram_client_verify(struct scram_client *c, const uint8_t *msg, size_t len) WUR;
/*
 * Whether the exchange is complete: the server's signature was verified.
 * Until then an AuthenticationOk proves nothing (a fake server can send one
 * without knowing the password) and must not count.
 */
bool scram_client_done(const struct scram_client *c);

/*
 * ---- for tests only ----
 * Fixed nonces and user name so that an exchange can be replayed against the
 * RFC 7677 vector. Call before scram_server_first / scram_client_first; the
 * strings are copied. Never used outside tests: a fixed nonce defeats replay
 * protection.
 */
void scram_server_set_nonce(struct scram_server *s, const char *server_nonce);
void scram_client_set_nonce(struct scram_client *c, const char *nonce);
/* The n= attribute of the client-first-message (default ""). */
void scram_client_set_user(struct scram_client *c, const char *user);
