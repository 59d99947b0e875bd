/*
 * fuzz.h - what the fuzz targets and their replays share: the target's
 * signature, the check that turns a broken invariant into a crash libFuzzer
 * reports, and the seeded generator the replays draw inputs from.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
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
