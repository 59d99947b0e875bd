/*
 * fuzz_config_replay.c - runs the config fuzz target (fuzz_config.c)
 * without libFuzzer, in every build: the files of its corpus directory
 * (the first argument; etc/sluice.ini among them) and mutations of them
 * from a fixed seed with pieces of the INI grammar and of connection
 * strings inserted. Deterministic, so a failure reproduces.
 */
#include <stdio.h>

#include "fuzz.h"

#define SEED 0xc0f1eedu
#define MUTATIONS_PER_FILE 1500

static const char *const tokens[] = {
	"[sluice]\n", "[pgbouncer]\n", "[databases]\n", "[users]\n", "[peers]\n", "[", "]", " = ",
	"=", "\n", "\r\n", ";", "#", "'", "\\", "\"", "%include ", "%include /nonexistent\n",
	"host=", "port=", "dbname=", "user=", "password=", "pool_size=", "pool_mode=", "auth_query=",
	"load_balance_hosts=", ",", "* = ", "listen_port = ", "auth_type = ", "ms", "s", "min", "h",
	"d", "yes", "off", "transaction", "verify-full", "1 = host=", NULL,
};

int main(int argc, char **argv)
{
	int corpus = fuzz_replay_corpus(argc, argv);
	int mutations = argc > 1 ? fuzz_run_mutations(argv[1], MUTATIONS_PER_FILE, SEED, tokens) : 0;
	printf("fuzz_config_replay: %d corpus files, %d mutations (seed %#x), no failure\n", corpus,
	       mutations, SEED);
	return 0;
}
