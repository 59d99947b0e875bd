/*
 * rand.c - random bytes in blocks from OpenSSL's CSPRNG (see rand.h).
 */
#include "sluice/rand.h"

#include <openssl/rand.h>
#include <pthread.h>
#include <string.h>

#include "sluice/common.h"

/*
 * A refill has a fixed cost in OpenSSL's DRBG (thousands of instructions)
 * besides the bytes, and a login draws 12 (a cancel key, an md5 salt): with
 * 512-byte blocks that cost came every 40 logins, now every 340.
 */
#define RAND_BLOCK 4096

static _Thread_local unsigned char block[RAND_BLOCK];
static _Thread_local size_t left; /* unused bytes at the end of block */
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* A forked child must not hand out the bytes its parent will hand out too. */
static void forget_in_child(void)
{
	explicit_bzero(block, sizeof(block));
	left = 0;
}

static void register_atfork(void)
{
	pthread_atfork(NULL, NULL, forget_in_child);
}

void rand_bytes(void *out, size_t n)
{
	pthread_once(&atfork_once, register_atfork);
	unsigned char *o = out;
	while (n > 0) {
		if (left == 0) {
			if (RAND_bytes(block, sizeof(block)) != 1)
				xoom("RAND_bytes");
			left = sizeof(block);
		}
		size_t take = MIN(n, left);
		unsigned char *from = block + sizeof(block) - left;
		memcpy(o, from, take);
		explicit_bzero(from, take); /* handed-out bytes do not stay in memory */
		o += take;
		n -= take;
		left -= take;
	}
}
