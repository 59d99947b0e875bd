/*
 * fuzz_auth_replay.c - runs the auth fuzz target (fuzz_auth.c) without
 * libFuzzer, in every build: the files of its corpus directory (the first
 * argument), mutations of them from a fixed seed with pieces of the
 * auth_file and of password messages inserted, and every control byte with
 * no message and with a password message, so that every auth_type, user,
 * honest client and abandoned derivation runs. Deterministic, so a failure
 * reproduces.
 */
#include <stdio.h>
#include <string.h>

#include "fuzz.h"

#define SEED 0xa07feedu
#define MUTATIONS_PER_FILE 2000

static const char *const tokens[] = {
	"\"", "\"\"", " ", "\t", "\n", "\r\n", ";", "#", "md5", "SCRAM-SHA-256$", "SCRAM-SHA-256",
	"$4096:", "W22ZaJ0SNY7soEsUEjb6gQ==", ":", "pencil", "\"alice\" \"pencil\"\n",
	"\0\x0e" "SCRAM-SHA-256", "\0\0\0\x1e", "n,,n=,r=", "c=biws,r=", ",p=", NULL,
};

int main(int argc, char **argv)
{
	int corpus = fuzz_replay_corpus(argc, argv);
	int mutations = argc > 1 ? fuzz_run_mutations(argv[1], MUTATIONS_PER_FILE, SEED, tokens) : 0;
	int fixed = 0;
	for (int control = 0; control < 256; control++) {
		uint8_t in[] = { (uint8_t)control, 0, 7, 'p', 'e', 'n', 'c', 'i', 'l', 0 };
		(void)LLVMFuzzerTestOneInput(in, 1);
		(void)LLVMFuzzerTestOneInput(in, sizeof(in));
		fixed += 2;
	}
	printf("fuzz_auth_replay: %d corpus files, %d mutations (seed %#x), %d fixed inputs, no "
	       "failure\n",
	       corpus, mutations, SEED, fixed);
	return 0;
}
