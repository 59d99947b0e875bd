/*
 * fuzz_tls.c - fuzz target for the TLS engine (tls.c) on the bytes a peer
 * sends before and during the handshake: what an accepting engine reads
 * after answering 'S' (or first, for direct TLS), and what a connecting one
 * reads from a server.
 *
 * Input: the first byte picks the side (even: accepting, odd: connecting)
 * and how the rest is cut into chunks fed one at a time, as the socket would
 * deliver them; after each chunk the engine advances (handshake, then a
 * read) and its output is taken, as stream.c does. Whatever the bytes, the
 * engine must not crash or leak, must name the reason when it fails, and
 * must stay failed once it failed.
 *
 * The contexts are made at the first call (fuzz_tls_ctx.c: an ephemeral
 * self-signed certificate for the accepting side).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "sluice/tls.h"



static struct tls_ctx *accept_ctx, *connect_ctx;

/* What the engines sent back over all runs: the replay checks that handshakes got somewhere. */
size_t fuzz_tls_bytes_out;

static void setup(void)
{
	fuzz_tls_contexts(&accept_ctx, &connect_ctx);
}

/* Takes all the engine's output, as the stream would send it. */
static void drain(struct tls_conn *tc)
{
	uint8_t out[4096];
	while (tls_conn_pending(tc) > 0) {
		size_t n = tls_conn_take(tc, out, sizeof(out));
		FUZZ_CHECK(n > 0);
		fuzz_tls_bytes_out += n;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!accept_ctx)
		setup();
	if (size == 0)
		return 0;
	bool accept = (data[0] & 1) == 0;
	size_t chunk = 1 + (data[0] >> 1) * 7; /* 1 to 890 bytes per delivery */
	data++;
	size--;
	struct tls_conn *tc = tls_conn_new(accept ? accept_ctx : connect_ctx, "localhost");
	bool done = false, failed = false;
	if (!accept)
		(void)tls_conn_handshake(tc); /* the ClientHello goes out first */
	drain(tc);
	for (size_t off = 0; off < size && !failed; off += chunk) {
		size_t n = size - off < chunk ? size - off : chunk;
		tls_conn_feed(tc, data + off, n);
		if (!done) {
			enum tls_status st = tls_conn_handshake(tc);
			failed = st == TLS_FAILED;
			done = st == TLS_OK;
			/* A failure names its reason; a finished handshake describes itself. */
			if (failed)
				FUZZ_CHECK(tls_conn_error(tc)[0] != 0);
		}
		if (done) {
			uint8_t plain[2048];
			enum tls_status st;
			while (tls_conn_read(tc, plain, sizeof(plain), &st) > 0)
				;
			failed = st == TLS_FAILED;
		}
		drain(tc);
	}
	char desc[64];
	tls_conn_describe(tc, desc, sizeof(desc));
	FUZZ_CHECK(done || strcmp(desc, "handshake") == 0);
	if (failed && !done)
		FUZZ_CHECK(tls_conn_handshake(tc) == TLS_FAILED);
	tls_conn_shutdown(tc);
	drain(tc);
	tls_conn_free(tc);
	return 0;
}
