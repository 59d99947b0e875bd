/*
 * md5.h - MD5 (RFC 1321), for PostgreSQL's md5 authentication only, never
 * for anything that needs a secure hash.
 *
 * Its own code rather than OpenSSL's EVP interface: under OpenSSL 3 each
 * digest through EVP allocates and frees a provider context and walks
 * several layers of dispatch, which cost more than the hash itself, and a
 * connection-per-transaction workload hashes once per login. No state but
 * the caller's struct md5, so any thread may use it.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define MD5_LEN 16

struct md5 {
	uint32_t h[4];
	uint64_t len; /* bytes hashed so far */
	uint8_t buf[64]; /* the first len % 64 bytes of the block in progress */
};

void md5_init(struct md5 *m);
void md5_update(struct md5 *m, const void *p, size_t n);
/* Writes the digest to out and wipes m (its input may have been a password). */
void md5_final(struct md5 *m, uint8_t out[MD5_LEN]);
