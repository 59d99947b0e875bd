/*
 * fuzz_tls_ctx.c - the TLS contexts the TLS fuzz targets share: an
 * accepting one with a certificate made in memory (an ephemeral P-256 key,
 * self-signed for localhost) and a connecting one, both sslmode=require.
 * The certificate is written to a private temporary directory, since
 * contexts are built from files as sluice builds them, and removed once
 * read.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "fuzz.h"
#include "sluice/tls.h"

/* A self-signed certificate for localhost and its key, as PEM files in dir. */
static void make_identity(const char *dir, char *key_path, char *cert_path, size_t len)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	FUZZ_CHECK(key && x);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, key);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1,
				   -1, 0);
	X509_set_issuer_name(x, name);
	FUZZ_CHECK(X509_sign(x, key, EVP_sha256()) > 0);
	snprintf(key_path, len, "%s/key.pem", dir);
	snprintf(cert_path, len, "%s/cert.pem", dir);
	FILE *f = fopen(key_path, "w");
	FUZZ_CHECK(f && PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL));
	fclose(f);
	f = fopen(cert_path, "w");
	FUZZ_CHECK(f && PEM_write_X509(f, x));
	fclose(f);
	X509_free(x);
	EVP_PKEY_free(key);
}

void fuzz_tls_contexts(struct tls_ctx **accept_ctx, struct tls_ctx **connect_ctx)
{
	char dir[] = "/tmp/sluice-fuzz-tls.XXXXXX";
	FUZZ_CHECK(mkdtemp(dir) != NULL);
	char key[256], cert[256], err[256];
	make_identity(dir, key, cert, sizeof(key));
	struct tls_settings as = { .sslmode = SSLMODE_REQUIRE, .key_file = key, .cert_file = cert };
	*accept_ctx = tls_ctx_new(&as, true, err, sizeof(err));
	struct tls_settings cs = { .sslmode = SSLMODE_REQUIRE };
	*connect_ctx = tls_ctx_new(&cs, false, err, sizeof(err));
	FUZZ_CHECK(*accept_ctx && *connect_ctx);
	/* The files were read into the contexts: the directory is not needed any more. */
	unlink(key);
	unlink(cert);
	rmdir(dir);
}
