/*
 * fuzz_tls_startup_replay.c - runs the TLS startup fuzz target
 * (fuzz_tls_startup.c) without libFuzzer, in every build: the files of its
 * corpus directory (the first argument; real startup packets and password
 * messages with several ways of cutting them), mutations of them from a
 * fixed seed, and a StartupMessage under every pair of control bytes'
 * low values. Deterministic in what the parsers see, so a failure
 * reproduces.
 */
#include <stdio.h>
#include <string.h>

#include "fuzz.h"
#include "sluice/buf.h"
#include "sluice/pkt.h"

#define SEED 0x7157a27u
#define MUTATIONS_PER_FILE 1000

/* Tokens are C strings: the NULs of the packets come from the mutations' interesting bytes. */
static const char *const tokens[] = {
	"user", "database", "options", "replication", "-c ", "--", "\\ ", "\x04\xd2\x16\x2f", "p",
	"\xff\xff", NULL,
};

int main(int argc, char **argv)
{
	int corpus = fuzz_replay_corpus(argc, argv);
	int mutations = argc > 1 ? fuzz_run_mutations(argv[1], MUTATIONS_PER_FILE, SEED, tokens) : 0;
	static const char *const keys[] = { "user", "database" }, *const vals[] = { "u", "d" };
	struct buf_out o;
	buf_out_init(&o);
	int fixed = 0;
	for (int a = 0; a < 16; a++) {
		for (int b = 0; b < 16; b++) {
			buf_out_reset(&o);
			buf_out_put_u8(&o, (uint8_t)a);
			buf_out_put_u8(&o, (uint8_t)b);
			pkt_put_StartupMessage(&o, keys, vals, 2);
			(void)LLVMFuzzerTestOneInput(o.data, o.len);
			fixed++;
		}
	}
	buf_out_deinit(&o);
	printf("fuzz_tls_startup_replay: %d corpus files, %d mutations (seed %#x), %d fixed inputs, "
	       "no failure\n",
	       corpus, mutations, SEED, fixed);
	return 0;
}
