/*
 * fuzz_handover_replay.c - runs the handover fuzz target (fuzz_handover.c)
 * without libFuzzer, in every build: the files of its corpus directory (the
 * first argument), mutations of them from a fixed seed, every prefix of a
 * record made here, and that record with each of its length and count
 * fields set to values around the bounds. Deterministic, so a failure
 * reproduces.
 */
#include <stdio.h>
#include <string.h>

#include "fuzz.h"
#include "sluice/handover.h"

#define SEED 0x4a4d0ee5u
#define MUTATIONS_PER_FILE 4000

/* A record with a bit of everything: keys, a password, parameters, statements, input. */
static void sample(struct buf_out *out)
{
	static const uint8_t parse_text[] = "SELECT $1\0\0\1\0\0\0\x17";
	struct handover_param params[] = { { "application_name", "app" },
					   { "DateStyle", "ISO, DMY" } };
	struct handover_prepared prepared[] = { { "s1", parse_text, sizeof(parse_text) - 1 } };
	static const uint8_t input[] = { 'Q', 0, 0, 0, 13, 'S', 'E', 'L', 'E', 'C', 'T', ' ', '1' };
	struct handover_client h = {
		.id = 7,
		.connect_time_ms = 1765000000000ull,
		.addr_family = 2,
		.addr_port = 5432,
		.addr_ip = { 127, 0, 0, 1 },
		.peer_pid = 0,
		.cancel_pid = 0x12345678,
		.cancel_key = 0x9abcdef0,
		.db = "app",
		.user = "alice",
		.have_scram_keys = true,
		.password = "secret",
		.params = params,
		.n_params = 2,
		.prepared = prepared,
		.n_prepared = 1,
		.input = input,
		.input_len = sizeof(input),
		.linked = true,
		.server = { .id = 9, .connect_time_ms = 1765000000000ull, .be_pid = 4711,
			    .be_key = 42, .host_index = 0, .port = 5432, .addr = "127.0.0.1:5432",
			    .host = "127.0.0.1", .params = params, .n_params = 2 },
	};
	memset(h.scram_client_key, 0x11, 32);
	memset(h.scram_server_key, 0x22, 32);
	handover_client_encode(out, &h);
}

int main(int argc, char **argv)
{
	int corpus = fuzz_replay_corpus(argc, argv);
	int mutations = argc > 1 ? fuzz_run_mutations(argv[1], MUTATIONS_PER_FILE, SEED, NULL) : 0;
	struct buf_out rec;
	buf_out_init(&rec);
	sample(&rec);
	int fixed = 0;
	for (size_t len = 0; len <= rec.len; len++, fixed++)
		(void)LLVMFuzzerTestOneInput(rec.data, len);
	/* Each 32-bit field of the record, in turn, set to values around every bound. */
	static const uint32_t values[] = { 0,	     1,		 2,	     255,	 256,
					   257,	     100000,	 100001,     0x7fffffff, 0xfffffffe,
					   0xffffffff };
	for (size_t at = 0; at + 4 <= rec.len; at++) {
		for (size_t v = 0; v < sizeof(values) / sizeof(values[0]); v++, fixed++) {
			uint8_t copy[1024];
			memcpy(copy, rec.data, rec.len);
			copy[at] = (uint8_t)(values[v] >> 24);
			copy[at + 1] = (uint8_t)(values[v] >> 16);
			copy[at + 2] = (uint8_t)(values[v] >> 8);
			copy[at + 3] = (uint8_t)values[v];
			(void)LLVMFuzzerTestOneInput(copy, rec.len);
		}
	}
	buf_out_deinit(&rec);
	printf("fuzz_handover_replay: %d corpus files, %d mutations (seed %#x), %d fixed inputs, "
	       "no failure\n",
	       corpus, mutations, SEED, fixed);
	return 0;
}
