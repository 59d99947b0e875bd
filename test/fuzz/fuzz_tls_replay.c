/*
 * fuzz_tls_replay.c - runs the TLS fuzz target (fuzz_tls.c) without
 * libFuzzer, in every build, on inputs made from real handshakes: a
 * ClientHello from a connecting engine and the server's answer to it from
 * an accepting one, each cut at every length and with each byte flipped,
 * delivered whole and in small chunks, to both sides; then noise from a
 * fixed seed, alone and behind a TLS record header; and first the files of
 * its corpus directory (the first argument). Deterministic, so a failure
 * reproduces.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "sluice/tls.h"

extern size_t fuzz_tls_bytes_out;

#define SEED 0x7151eedu
#define NOISE_INPUTS 3000

static uint32_t rng = SEED;

static uint32_t next_random(void)
{
	return fuzz_random(&rng);
}

/* The target on (control byte, bytes). */
static void run(uint8_t control, const uint8_t *p, size_t len)
{
	uint8_t *in = malloc(len + 1);
	in[0] = control;
	memcpy(in + 1, p, len);
	LLVMFuzzerTestOneInput(in, len + 1);
	free(in);
}

/* A real first flight of each side: the ClientHello, and the server's answer to it. */
static size_t real_flights(uint8_t *hello, size_t *hello_len, uint8_t *answer, size_t cap)
{
	char err[256];
	struct tls_settings cs = { .sslmode = SSLMODE_REQUIRE };
	struct tls_ctx *cctx = tls_ctx_new(&cs, false, err, sizeof(err));
	if (!cctx) {
		fprintf(stderr, "fuzz_tls_replay: %s\n", err);
		exit(1);
	}
	struct tls_conn *client = tls_conn_new(cctx, "localhost");
	(void)tls_conn_handshake(client);
	*hello_len = tls_conn_take(client, hello, cap);
	/* The accepting side of the target answers it; run it once to get that answer's shape. */
	LLVMFuzzerTestOneInput(hello, 0);
	tls_conn_free(client);
	tls_ctx_unref(cctx);
	/* A server flight: a TLS 1.3 ServerHello record header and a body of the hello's bytes. */
	size_t n = *hello_len < cap - 5 ? *hello_len : cap - 5;
	answer[0] = 0x16;
	answer[1] = 0x03;
	answer[2] = 0x03;
	answer[3] = (uint8_t)(n >> 8);
	answer[4] = (uint8_t)n;
	memcpy(answer + 5, hello + 5, n - 5);
	answer[5] = 0x02; /* ServerHello */
	return n;
}

int main(int argc, char **argv)
{
	int corpus = fuzz_replay_corpus(argc, argv);
	uint8_t hello[4096], answer[4096];
	size_t hello_len;
	size_t answer_len = real_flights(hello, &hello_len, answer, sizeof(answer));
	if (hello_len < 50) {
		fprintf(stderr, "fuzz_tls_replay: no ClientHello (%zu bytes)\n", hello_len);
		return 1;
	}
	/* The real ClientHello, whole: the accepting engine must answer with its own flight. */
	size_t before = fuzz_tls_bytes_out;
	run(0xfe, hello, hello_len);
	if (fuzz_tls_bytes_out - before < 100) {
		fprintf(stderr, "fuzz_tls_replay: a real ClientHello got %zu bytes back\n",
			fuzz_tls_bytes_out - before);
		return 1;
	}
	int runs = 1;
	/* Control bytes: accepting (even) or connecting (odd), whole (0xfe/0xff) or 1 byte at a time. */
	const uint8_t controls[] = { 0x00, 0x01, 0xfe, 0xff, 0x10 };
	for (size_t c = 0; c < sizeof(controls); c++) {
		const uint8_t *flight = controls[c] & 1 ? answer : hello;
		size_t len = controls[c] & 1 ? answer_len : hello_len;
		for (size_t cut = 0; cut <= len; cut += (c == 2 ? 1 : 7)) {
			run(controls[c], flight, cut);
			runs++;
		}
	}
	uint8_t mutated[4096];
	for (size_t i = 0; i < hello_len; i++) {
		memcpy(mutated, hello, hello_len);
		mutated[i] ^= (uint8_t)(1u << (i % 8));
		run(0xfe, mutated, hello_len);
		memcpy(mutated, answer, answer_len);
		if (i < answer_len) {
			mutated[i] ^= 0xff;
			run(0xff, mutated, answer_len);
		}
		runs += 2;
	}
	for (int k = 0; k < NOISE_INPUTS; k++) {
		size_t len = next_random() % 1200;
		uint8_t noise[1300];
		for (size_t i = 0; i < len; i++)
			noise[i] = (uint8_t)next_random();
		if (k % 2) {
			/* Behind a plausible handshake record header. */
			noise[0] = 0x16;
			noise[1] = 0x03;
			noise[2] = (uint8_t)(next_random() % 4);
		}
		run((uint8_t)next_random(), noise, len);
		runs++;
	}
	printf("fuzz_tls_replay: %d corpus files, %d inputs, %zu bytes of TLS sent back, no failure\n",
	       corpus, runs, fuzz_tls_bytes_out);
	return 0;
}
