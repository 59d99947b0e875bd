/*
 * fuzz.h - what the fuzz targets and their replays share: the target's
 * signature, the check that turns a broken invariant into a crash libFuzzer
 * reports, the seeded generator the replays draw inputs from, and the run
 * over a corpus directory that every replay makes.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken invariant: abort, so that libFuzzer (or the replay's test) reports the input. */
#define FUZZ_CHECK(cond)                                                                           \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

/* xorshift32 from *state (never 0): the same seed gives the same inputs on every machine. */
static inline uint32_t fuzz_random(uint32_t *state)
{
	uint32_t x = *state;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return *state = x;
}

/*
 * Runs the target on every regular file of dir, in name order
 * (fuzz_corpus.c); returns how many. Exits with an error when dir cannot be
 * read. The replays take their corpus directory as their first argument.
 */
int fuzz_run_corpus(const char *dir);

/*
 * Runs the target on per_file mutations of every file of dir (fuzz_corpus.c):
 * bit flips, interesting bytes, deleted, repeated and cut ranges, numbers,
 * and pieces of tokens (a NULL-terminated list, or NULL) inserted; all drawn
 * from seed, so the same inputs on every machine. Returns how many ran.
 */
int fuzz_run_mutations(const char *dir, int per_file, uint32_t seed, const char *const *tokens);

struct tls_ctx;
/*
 * For the TLS targets (fuzz_tls_ctx.c): an accepting context with a fresh
 * self-signed certificate for localhost, and a connecting one.
 */
void fuzz_tls_contexts(struct tls_ctx **accept_ctx, struct tls_ctx **connect_ctx);

/* The corpus of a replay's command line: argv[1], or none (a note on stderr). */
static inline int fuzz_replay_corpus(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "%s: no corpus directory given, only the generated inputs run\n",
			argv[0]);
		return 0;
	}
	return fuzz_run_corpus(argv[1]);
}
