/*
 * fuzz_scram_replay.c - runs the SCRAM fuzz target (fuzz_scram.c) without
 * libFuzzer, in every build: the files of its corpus directory (the first
 * argument), mutations of them from a fixed seed with SCRAM's attribute
 * pieces inserted, and the iteration counts around the cap and the cheap
 * limit, in both roles, with and without the honest peer. Deterministic,
 * so a failure reproduces.
 */
#include <stdio.h>
#include <string.h>

#include "fuzz.h"
#include "sluice/scram.h"

#define SEED 0x5c4a3eedu
#define MUTATIONS_PER_FILE 5000

static const char *const tokens[] = {
	"n,,", "y,,", "p=", "a=", "n=", "r=", "s=", "i=", "c=", "v=", "e=", "m=", "x=", ",", "=2C",
	"=3D", "=", "biws", "eSws", "rOprNGfwEbeRWgbNEkqO", "3rfcNHYJY1ZVvWVs7j", "W22ZaJ0SNY7soEsUEjb6gQ==",
	"====", "\n", "SCRAM-SHA-256$", "$", ":", NULL,
};

static void run_text(uint8_t control, const char *text)
{
	uint8_t buf[512];
	size_t n = strlen(text);
	FUZZ_CHECK(n + 1 <= sizeof(buf));
	buf[0] = control;
	memcpy(buf + 1, text, n);
	(void)LLVMFuzzerTestOneInput(buf, n + 1);
}

int main(int argc, char **argv)
{
	int corpus = fuzz_replay_corpus(argc, argv);
	int mutations = argc > 1 ? fuzz_run_mutations(argv[1], MUTATIONS_PER_FILE, SEED, tokens) : 0;
	/* Counts around SCRAM_MAX_ITERATIONS and the target's cheap limit, in all client modes. */
	static const long long counts[] = { 0, 1, 2, 63, 64, 65, 4096, SCRAM_MAX_ITERATIONS - 1,
					    SCRAM_MAX_ITERATIONS, SCRAM_MAX_ITERATIONS + 1,
					    2147483647LL, 2147483648LL, 9999999999LL };
	int fixed = 0;
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		char msg[256];
		snprintf(msg, sizeof(msg),
			 "r=rOprNGfwEbeRWgbNEkqO3rfcNHYJY1ZVvWVs7j,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=%lld",
			 counts[i]);
		for (uint8_t control = 1; control < 8; control += 2) {
			run_text(control, msg);
			fixed++;
		}
	}
	/* The honest peers of both roles, with every control bit. */
	for (uint8_t control = 0; control < 8; control++) {
		run_text(control, control & 1 ? "r=rOprNGfwEbeRWgbNEkqOX,s=QUJD,i=3"
					      : "n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL");
		fixed++;
	}
	printf("fuzz_scram_replay: %d corpus files, %d mutations (seed %#x), %d fixed inputs, no "
	       "failure\n",
	       corpus, mutations, SEED, fixed);
	return 0;
}
