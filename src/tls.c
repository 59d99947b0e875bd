/*
 * tls.c - OpenSSL contexts from PgBouncer's TLS settings, and the I/O-free
 * engine stream.c drives (see tls.h).
 *
 * The engine is an SSL object between two memory BIOs. They never block, so
 * a handshake step, a read or a write always returns at once: "want more
 * input" is the only waiting there is, and the stream turns it into reading
 * the socket again. SSL_MODE_RELEASE_BUFFERS lets an idle connection drop
 * OpenSSL's record buffers.
 */
#include "sluice/tls.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct tls_ctx {
	SSL_CTX *ssl;
	enum sslmode sslmode;
	bool accept;
	atomic_int refs;
};

struct tls_conn {
	SSL *ssl;
	BIO *rbio; /* ciphertext from the peer, owned by ssl */
	BIO *wbio; /* ciphertext for the peer, owned by ssl */
	struct tls_ctx *ctx;
	char *peer_cn;
	char error[200];
};

static bool is_set(const char *s)
{
	return s && *s;
}

/* OpenSSL's error queue as one line (emptied), after what. */
static void openssl_error(char *err, size_t len, const char *what)
{
	unsigned long e = ERR_get_error();
	char reason[160] = "";
	if (e)
		ERR_error_string_n(e, reason, sizeof(reason));
	ERR_clear_error();
	snprintf(err, len, "%s%s%s", what, e ? ": " : "", reason);
}

/*
 * PgBouncer's protocol lists (libusual's tls_config_parse_protocols): names
 * joined by ',' or ':', "all", "secure" (TLS 1.2 and 1.3), "legacy" and
 * "default". OpenSSL takes a range, so the versions named must be one run.
 */
static int set_protocols(SSL_CTX *c, const char *list, char *err, size_t errlen)
{
	static const struct {
		const char *name;
		int version;
	} versions[] = {
		{ "tlsv1.0", TLS1_VERSION },
		{ "tlsv1.1", TLS1_1_VERSION },
		{ "tlsv1.2", TLS1_2_VERSION },
		{ "tlsv1.3", TLS1_3_VERSION },
	};
	unsigned mask = 0;
	char copy[256];
	snprintf(copy, sizeof(copy), "%s", is_set(list) ? list : "secure");
	char *save = NULL;
	for (char *tok = strtok_r(copy, ",: \t", &save); tok;
	     tok = strtok_r(NULL, ",: \t", &save)) {
		if (strcasecmp(tok, "all") == 0 || strcasecmp(tok, "legacy") == 0) {
			mask |= 0xf;
			continue;
		}
		if (strcasecmp(tok, "secure") == 0 || strcasecmp(tok, "default") == 0) {
			mask |= 0xc;
			continue;
		}
		size_t i = 0;
		while (i < ARRAY_SIZE(versions) && strcasecmp(tok, versions[i].name) != 0)
			i++;
		if (i == ARRAY_SIZE(versions)) {
			snprintf(err, errlen, "unknown TLS protocol \"%s\"", tok);
			return -1;
		}
		mask |= 1u << i;
	}
	int lo = 0, hi = 3;
	while (!(mask & (1u << lo)))
		lo++;
	while (!(mask & (1u << hi)))
		hi--;
	for (int i = lo; i <= hi; i++) {
		if (!(mask & (1u << i))) {
			snprintf(err, errlen, "TLS protocols \"%s\" are not one range of versions",
				 list);
			return -1;
		}
	}
	/* TLS 1.0 and 1.1 need OpenSSL's security level 0 to be offered at all. */
	if (lo < 2)
		SSL_CTX_set_security_level(c, 0);
	if (!SSL_CTX_set_min_proto_version(c, versions[lo].version) ||
	    !SSL_CTX_set_max_proto_version(c, versions[hi].version)) {
		openssl_error(err, errlen, "cannot set the TLS protocols");
		return -1;
	}
	return 0;
}

/* PgBouncer's cipher keywords (libusual's), else an OpenSSL cipher list as written. */
static const char *cipher_list(const char *s)
{
	if (!is_set(s) || strcasecmp(s, "default") == 0 || strcasecmp(s, "secure") == 0)
		return "HIGH:!aNULL";
	if (strcasecmp(s, "fast") == 0 || strcasecmp(s, "normal") == 0)
		return "HIGH:!aNULL";
	if (strcasecmp(s, "compat") == 0 || strcasecmp(s, "legacy") == 0)
		return "HIGH:MEDIUM:!aNULL";
	if (strcasecmp(s, "insecure") == 0 || strcasecmp(s, "all") == 0)
		return "ALL:@SECLEVEL=0";
	return s;
}

static int set_dheparams(SSL_CTX *c, const char *s, char *err, size_t errlen)
{
	if (!is_set(s) || strcasecmp(s, "auto") == 0 || strcasecmp(s, "legacy") == 0) {
		SSL_CTX_set_dh_auto(c, 1);
		return 0;
	}
	if (strcasecmp(s, "none") == 0)
		return 0;
	BIO *b = BIO_new_file(s, "r");
	EVP_PKEY *dh = b ? PEM_read_bio_Parameters(b, NULL) : NULL;
	BIO_free(b);
	if (!dh || !SSL_CTX_set0_tmp_dh_pkey(c, dh)) {
		EVP_PKEY_free(dh);
		openssl_error(err, errlen, "cannot use the DH parameters in the dheparams file");
		return -1;
	}
	return 0;
}

/* Only "postgresql" is spoken; a client offering other protocols gets no ALPN. */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	(void)ssl;
	(void)arg;
	static const unsigned char pg[] = "\x0apostgresql";
	if (SSL_select_next_proto((unsigned char **)out, outlen, pg, sizeof(pg) - 1, in, inlen) ==
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_OK;
	return SSL_TLSEXT_ERR_NOACK;
}

/* Certificates, keys and verification for a context of either side. */
static int set_identity(SSL_CTX *c, const struct tls_settings *ts, bool accept, char *err,
			size_t errlen)
{
	if (accept && ts->sslmode != SSLMODE_DISABLE &&
	    (!is_set(ts->key_file) || !is_set(ts->cert_file))) {
		snprintf(err, errlen, "TLS for clients needs a key file and a certificate file");
		return -1;
	}
	if (is_set(ts->cert_file) && SSL_CTX_use_certificate_chain_file(c, ts->cert_file) != 1) {
		openssl_error(err, errlen, "cannot load the certificate file");
		return -1;
	}
	if (is_set(ts->key_file) &&
	    SSL_CTX_use_PrivateKey_file(c, ts->key_file, SSL_FILETYPE_PEM) != 1) {
		openssl_error(err, errlen, "cannot load the key file");
		return -1;
	}
	if (is_set(ts->key_file) && is_set(ts->cert_file) && SSL_CTX_check_private_key(c) != 1) {
		openssl_error(err, errlen, "the key does not match the certificate");
		return -1;
	}
	if (is_set(ts->ca_file)) {
		if (SSL_CTX_load_verify_locations(c, ts->ca_file, NULL) != 1) {
			openssl_error(err, errlen, "cannot load the CA file");
			return -1;
		}
		if (accept) {
			STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ts->ca_file);
			if (names)
				SSL_CTX_set_client_CA_list(c, names);
		}
	} else if (!accept && ts->sslmode >= SSLMODE_VERIFY_CA) {
		SSL_CTX_set_default_verify_paths(c);
	}
	int verify = SSL_VERIFY_NONE;
	if (ts->sslmode >= SSLMODE_VERIFY_CA)
		verify = SSL_VERIFY_PEER | (accept ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0);
	else if (accept && is_set(ts->ca_file))
		verify =
			SSL_VERIFY_PEER; /* a certificate is asked for, not required (as PgBouncer) */
	SSL_CTX_set_verify(c, verify, NULL);
	return 0;
}

struct tls_ctx *tls_ctx_new(const struct tls_settings *ts, bool accept, char *err, size_t errlen)
{
	ERR_clear_error();
	SSL_CTX *c = SSL_CTX_new(accept ? TLS_server_method() : TLS_client_method());
	if (!c) {
		openssl_error(err, errlen, "cannot create a TLS context");
		return NULL;
	}
	SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	if (set_protocols(c, ts->protocols, err, errlen) < 0)
		goto fail;
	if (SSL_CTX_set_cipher_list(c, cipher_list(ts->ciphers)) != 1) {
		openssl_error(err, errlen, "no usable cipher in the ciphers setting");
		goto fail;
	}
	if (is_set(ts->tls13_ciphers) && strcasecmp(ts->tls13_ciphers, "default") != 0 &&
	    SSL_CTX_set_ciphersuites(c, ts->tls13_ciphers) != 1) {
		openssl_error(err, errlen, "failed to set the TLSv1.3 cipher suites");
		goto fail;
	}
	if (is_set(ts->ecdhcurve) && strcasecmp(ts->ecdhcurve, "auto") != 0 &&
	    strcasecmp(ts->ecdhcurve, "none") != 0 &&
	    SSL_CTX_set1_groups_list(c, ts->ecdhcurve) != 1) {
		openssl_error(err, errlen, "unknown curve in the ecdhcurve setting");
		goto fail;
	}
	if (accept) {
		if (set_dheparams(c, ts->dheparams, err, errlen) < 0)
			goto fail;
		/* Clients of a pooler reconnect to it rarely: no session tickets to compute. */
		SSL_CTX_set_num_tickets(c, 0);
		SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
		SSL_CTX_set_alpn_select_cb(c, select_alpn, NULL);
	} else {
		/* PostgreSQL 17 expects it with direct TLS; older servers ignore it. */
		static const unsigned char pg[] = "\x0apostgresql";
		SSL_CTX_set_alpn_protos(c, pg, sizeof(pg) - 1);
	}
	if (set_identity(c, ts, accept, err, errlen) < 0)
		goto fail;
	struct tls_ctx *ctx = xcalloc(1, sizeof(*ctx));
	ctx->ssl = c;
	ctx->sslmode = ts->sslmode;
	ctx->accept = accept;
	atomic_init(&ctx->refs, 1);
	return ctx;
fail:
	SSL_CTX_free(c);
	return NULL;
}

struct tls_ctx *tls_ctx_ref(struct tls_ctx *ctx)
{
	atomic_fetch_add(&ctx->refs, 1);
	return ctx;
}

void tls_ctx_unref(struct tls_ctx *ctx)
{
	if (!ctx || atomic_fetch_sub(&ctx->refs, 1) != 1)
		return;
	SSL_CTX_free(ctx->ssl);
	free(ctx);
}

enum sslmode tls_ctx_sslmode(const struct tls_ctx *ctx)
{
	return ctx->sslmode;
}

/* ---- the engine ---------------------------------------------------------------- */

struct tls_conn *tls_conn_new(struct tls_ctx *ctx, const char *host)
{
	struct tls_conn *tc = xcalloc(1, sizeof(*tc));
	tc->ssl = SSL_new(ctx->ssl);
	tc->rbio = BIO_new(BIO_s_mem());
	tc->wbio = BIO_new(BIO_s_mem());
	if (!tc->ssl || !tc->rbio || !tc->wbio)
		xoom("tls_conn_new");
	/* An empty input BIO means "want more", not end of file. */
	BIO_set_mem_eof_return(tc->rbio, -1);
	SSL_set_bio(tc->ssl, tc->rbio, tc->wbio);
	tc->ctx = tls_ctx_ref(ctx);
	if (ctx->accept) {
		SSL_set_accept_state(tc->ssl);
		return tc;
	}
	SSL_set_connect_state(tc->ssl);
	if (host && *host && host[0] != '/') {
		unsigned char addr[16];
		bool numeric = inet_pton(AF_INET, host, addr) == 1 ||
			       inet_pton(AF_INET6, host, addr) == 1;
		/* SNI carries names only (RFC 6066). */
		if (!numeric)
			SSL_set_tlsext_host_name(tc->ssl, host);
		if (ctx->sslmode == SSLMODE_VERIFY_FULL) {
			X509_VERIFY_PARAM *vp = SSL_get0_param(tc->ssl);
			if (numeric)
				X509_VERIFY_PARAM_set1_ip_asc(vp, host);
			else
				X509_VERIFY_PARAM_set1_host(vp, host, 0);
		}
	}
	return tc;
}

void tls_conn_free(struct tls_conn *tc)
{
	if (!tc)
		return;
	SSL_free(tc->ssl); /* frees both BIOs */
	tls_ctx_unref(tc->ctx);
	free(tc->peer_cn);
	free(tc);
}

void tls_conn_feed(struct tls_conn *tc, const void *p, size_t len)
{
	if (len && BIO_write(tc->rbio, p, (int)len) != (int)len)
		xoom("tls_conn_feed");
}

/* Classifies a failed SSL call; TLS_FAILED records why. */
static enum tls_status status_of(struct tls_conn *tc, int rc, const char *what)
{
	int e = SSL_get_error(tc->ssl, rc);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		ERR_clear_error();
		return TLS_WANT;
	}
	if (e == SSL_ERROR_ZERO_RETURN) {
		ERR_clear_error();
		return TLS_CLOSED;
	}
	long v = SSL_get_verify_result(tc->ssl);
	if (v != X509_V_OK) {
		ERR_clear_error();
		snprintf(tc->error, sizeof(tc->error), "%s: certificate verify failed: %s", what,
			 X509_verify_cert_error_string(v));
	} else {
		openssl_error(tc->error, sizeof(tc->error), what);
	}
	return TLS_FAILED;
}

enum tls_status tls_conn_handshake(struct tls_conn *tc)
{
	int rc = SSL_do_handshake(tc->ssl);
	if (rc == 1)
		return TLS_OK;
	enum tls_status st = status_of(tc, rc, "TLS handshake failed");
	return st == TLS_CLOSED ? TLS_FAILED : st;
}

size_t tls_conn_read(struct tls_conn *tc, void *buf, size_t len, enum tls_status *st)
{
	size_t n = 0;
	if (SSL_read_ex(tc->ssl, buf, len, &n) == 1) {
		*st = TLS_OK;
		return n;
	}
	*st = status_of(tc, 0, "TLS read failed");
	return 0;
}

bool tls_conn_has_input(const struct tls_conn *tc)
{
	return SSL_pending(tc->ssl) > 0 || BIO_ctrl_pending(tc->rbio) > 0;
}

enum tls_status tls_conn_write(struct tls_conn *tc, const void *p, size_t len)
{
	size_t n = 0;
	if (len == 0 || (SSL_write_ex(tc->ssl, p, len, &n) == 1 && n == len))
		return TLS_OK;
	return status_of(tc, 0, "TLS write failed") == TLS_FAILED ? TLS_FAILED : TLS_OK;
}

void tls_conn_shutdown(struct tls_conn *tc)
{
	if (SSL_is_init_finished(tc->ssl))
		(void)SSL_shutdown(tc->ssl);
	ERR_clear_error();
}

size_t tls_conn_pending(const struct tls_conn *tc)
{
	return BIO_ctrl_pending(tc->wbio);
}

size_t tls_conn_take(struct tls_conn *tc, void *buf, size_t len)
{
	int n = BIO_read(tc->wbio, buf, (int)MIN(len, (size_t)INT32_MAX));
	return n > 0 ? (size_t)n : 0;
}

const char *tls_conn_error(const struct tls_conn *tc)
{
	return tc->error[0] ? tc->error : "TLS failed";
}

void tls_conn_describe(const struct tls_conn *tc, char *out, size_t len)
{
	if (!SSL_is_init_finished(tc->ssl)) {
		snprintf(out, len, "handshake");
		return;
	}
	snprintf(out, len, "%s/%s", SSL_get_version(tc->ssl), SSL_get_cipher_name(tc->ssl));
}

const char *tls_conn_peer_cn(struct tls_conn *tc)
{
	if (tc->peer_cn)
		return tc->peer_cn;
	X509 *cert = SSL_get0_peer_certificate(tc->ssl);
	if (!cert || SSL_get_verify_result(tc->ssl) != X509_V_OK)
		return NULL;
	char cn[256];
	int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn,
					  sizeof(cn));
	/* A CN with a NUL inside, or cut off, names nobody. */
	if (n <= 0 || (size_t)n >= sizeof(cn) || strlen(cn) != (size_t)n)
		return NULL;
	tc->peer_cn = xstrdup(cn);
	return tc->peer_cn;
}

bool tls_conn_alpn_postgresql(const struct tls_conn *tc)
{
	const unsigned char *p = NULL;
	unsigned int len = 0;
	SSL_get0_alpn_selected(tc->ssl, &p, &len);
	return len == 10 && memcmp(p, "postgresql", 10) == 0;
}
