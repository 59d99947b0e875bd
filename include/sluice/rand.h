/*
 * rand.h - unguessable random bytes (salts, nonces, cancel keys) from
 * OpenSSL's CSPRNG, drawn in blocks: every RAND_bytes call costs a getpid
 * (OpenSSL's fork check), which a connection-per-transaction workload would
 * otherwise pay several times per connection.
 *
 * The block is per thread and emptied in a forked child, so no two
 * processes or workers hand out the same bytes.
 */
#pragma once

#include <stddef.h>

/* Fills out with n random bytes; a CSPRNG that fails aborts (xoom). */
void rand_bytes(void *out, size_t n);
