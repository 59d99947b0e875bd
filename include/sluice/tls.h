/*
 * tls.h - TLS without I/O: OpenSSL contexts built from sluice's settings,
 * and one connection's TLS engine (an SSL object between two memory BIOs).
 *
 * The engine never touches a socket. Ciphertext that arrived is fed in
 * (tls_conn_feed), plaintext comes out (tls_conn_read); plaintext to send
 * goes in (tls_conn_write) and the ciphertext to put on the wire is taken
 * out (tls_conn_take). stream.c drives it, so client and server code never
 * know whether a connection is encrypted, and the fuzzer drives it the same
 * way with bytes from a file.
 *
 * A context is reference-counted: every connection started with it holds a
 * reference, so a reload that builds a new context leaves the connections of
 * the old one working until they end.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "sluice/common.h"
#include "sluice/config.h"

/* What a context is made of: the settings of one side, as written. NULL or "" is unset. */
struct tls_settings {
	enum sslmode sslmode;
	const char *key_file;
	const char *cert_file;
	const char *ca_file;
	const char *
		protocols; /* PgBouncer's: secure, all, legacy, default, or tlsv1.0..tlsv1.3 list */
	const char *
		ciphers; /* default, secure, fast, normal, compat, legacy, insecure, all, or OpenSSL's */
	const char *tls13_ciphers;
	const char *ecdhcurve; /* auto, none, or OpenSSL group names */
	const char *dheparams; /* auto, legacy, none, or a file of DH parameters */
};

struct tls_ctx;

/*
 * Builds a context for accepting (sluice as the TLS server, for clients) or
 * connecting (sluice as the TLS client, to PostgreSQL). NULL with a message
 * in err when a file cannot be read or a value is not understood: the
 * caller keeps what it had.
 */
struct tls_ctx *tls_ctx_new(const struct tls_settings *ts, bool accept, char *err,
			    size_t errlen) WUR;
struct tls_ctx *tls_ctx_ref(struct tls_ctx *ctx);
void tls_ctx_unref(struct tls_ctx *ctx);
enum sslmode tls_ctx_sslmode(const struct tls_ctx *ctx);

/* What a step of the engine came to. */
enum tls_status {
	TLS_OK = 0, /* done (handshake complete, or bytes moved) */
	TLS_WANT = 1, /* needs more ciphertext from the peer */
	TLS_CLOSED = 2, /* the peer sent close_notify */
	TLS_FAILED = -1, /* fatal: tls_conn_error says why; an alert may wait in the output */
};

struct tls_conn;

/*
 * A new engine on ctx. For a connecting engine, host is the name sent as SNI
 * (not for an address or a unix socket) and checked against the certificate
 * under verify-full; NULL for an accepting one.
 */
struct tls_conn *tls_conn_new(struct tls_ctx *ctx, const char *host);
void tls_conn_free(struct tls_conn *tc);
/* Hands ciphertext that arrived to the engine (copied). */
void tls_conn_feed(struct tls_conn *tc, const void *p, size_t len);
/* Advances the handshake with what was fed: TLS_OK once complete, TLS_WANT, TLS_FAILED. */
enum tls_status tls_conn_handshake(struct tls_conn *tc);
/*
 * Decrypts into buf: > 0 bytes, or 0 with *st TLS_WANT (nothing complete
 * yet), TLS_CLOSED or TLS_FAILED.
 */
size_t tls_conn_read(struct tls_conn *tc, void *buf, size_t len, enum tls_status *st);
/* Whether decrypted or undecrypted input is held: more can be read without feeding. */
bool tls_conn_has_input(const struct tls_conn *tc);
/* Encrypts all of p[0..len) into the output; TLS_OK or TLS_FAILED. */
enum tls_status tls_conn_write(struct tls_conn *tc, const void *p, size_t len);
/* Starts a clean close: a close_notify goes to the output. */
void tls_conn_shutdown(struct tls_conn *tc);
/* Ciphertext waiting to be sent. */
size_t tls_conn_pending(const struct tls_conn *tc);
/* Moves up to len bytes of waiting ciphertext into buf; returns how many. */
size_t tls_conn_take(struct tls_conn *tc, void *buf, size_t len);
/* Why the engine failed, for a log line or an error message. */
const char *tls_conn_error(const struct tls_conn *tc);
/* "TLSv1.3/TLS_AES_256_GCM_SHA384" once the handshake is done, as PgBouncer's tls column. */
void tls_conn_describe(const struct tls_conn *tc, char *out, size_t len);
/*
 * The peer's verified certificate's common name (NULL if there is none or it
 * was not verified); the engine owns it.
 */
const char *tls_conn_peer_cn(struct tls_conn *tc);
/* Whether the peer asked for ALPN "postgresql" (direct TLS, PostgreSQL 17). */
bool tls_conn_alpn_postgresql(const struct tls_conn *tc);
