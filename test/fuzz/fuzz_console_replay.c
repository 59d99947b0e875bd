/*
 * fuzz_console_replay.c - runs the console fuzz target (fuzz_console.c)
 * without libFuzzer, in every build: the files of its corpus directory
 * (the first argument), mutations of them from a fixed seed with the
 * grammar's pieces inserted, and words and values at and just past the
 * sizes of their fields. Deterministic, so a failure reproduces.
 */
#include <stdio.h>
#include <string.h>

#include "fuzz.h"
#include "sluice/console.h"

#define SEED 0xc0501eedu
#define MUTATIONS_PER_FILE 3000

static const char *const tokens[] = {
	"SHOW", "SET", "set", " ", "\t", ";", "\"", "'", "''", "=", " TO ", "to", "_", ".", "-",
	"POOLS", "KILL_CLIENT", "\"\"", "\n", NULL,
};

static void run(const char *text)
{
	(void)LLVMFuzzerTestOneInput((const uint8_t *)text, strlen(text));
}

int main(int argc, char **argv)
{
	int corpus = fuzz_replay_corpus(argc, argv);
	int mutations = argc > 1 ? fuzz_run_mutations(argv[1], MUTATIONS_PER_FILE, SEED, tokens) : 0;
	struct console_command cmd;
	char word[400], sql[1000];
	memset(word, 'w', sizeof(word) - 1);
	word[sizeof(word) - 1] = '\0';
	int fixed = 0;
	/* Every length around each field's size, bare and quoted. */
	for (int len = 0; len <= (int)sizeof(cmd.set_value) + 1; len++) {
		/* What goes before and after the word. */
		static const char *const forms[][2] = {
			{ "", "" },	     { "\"", "\"" },	  { "show ", "" },  { "show \"", "\"" },
			{ "set ", " = 1" }, { "set k = ", "" }, { "set k = '", "'" },
		};
		for (size_t f = 0; f < sizeof(forms) / sizeof(forms[0]); f++) {
			snprintf(sql, sizeof(sql), "%s%.*s%s", forms[f][0], len, word, forms[f][1]);
			run(sql);
			fixed++;
		}
	}
	printf("fuzz_console_replay: %d corpus files, %d mutations (seed %#x), %d fixed inputs, no "
	       "failure\n",
	       corpus, mutations, SEED, fixed);
	return 0;
}
