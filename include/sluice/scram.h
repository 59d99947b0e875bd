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
int scram_server_final(struct scram_server *s, const uint8_t *msg, size_t len,
		       char **server_final, bool *ok) WUR;
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
/* server-first-message -> client-final-message. -1 on malformed input or a bad nonce. */
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
