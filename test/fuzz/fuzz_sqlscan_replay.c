/*
 * fuzz_sqlscan_replay.c - runs the sqlscan fuzz target (fuzz_sqlscan.c)
 * without libFuzzer, in every build: the files of its corpus directory (the
 * first argument), a table of texts each also cut at every length, then
 * texts assembled from random pieces of SQL (keywords, comments of both
 * kinds, literals, semicolons, set_config calls) from a fixed seed, so a
 * failure reproduces.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#define SEED 0x5e55105u
#define RANDOM_TEXTS 4000

static const char *const texts[] = {
	"SET statement_timeout = '5s'",
	"select 1; set local work_mem = '1MB'; reset all",
	"/* a /* b */ c */ SET x.y TO 'z'",
	"-- c\rDISCARD ALL",
	"SELECT set_config('a.b', 'c', false), U&\"\\0073et_config\"('d.e', 'f', true)",
	"CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path = a AS 'SELECT 1'",
	"SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
	"SELECT $$;SET$$, ';RESET', E'\\';SET x=1'",
};

static const char *const pieces[] = {
	"SET", "set", "RESET", "ALL", "DISCARD", "LOCAL", "SESSION", "ROLE", "x", "a.b", "=", "TO",
	"'v'", "'", "\"", "$$", ";", " ", "\n", "\r", "--", "/*", "*/", "(", ")", "SELECT",
	"set_config", "pg_catalog.", "(", "'a.b'", ",", "false", "true", "U&", "\"x\"", "BEGIN",
	"COMMIT", "CREATE FUNCTION f() RETURNS int LANGUAGE sql", "AS 'SELECT 1'", "DEFAULT", "1",
	"E'\\''",
};

static uint32_t rng = SEED;

int main(int argc, char **argv)
{
	int runs = fuzz_replay_corpus(argc, argv);
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		size_t len = strlen(texts[i]);
		for (size_t cut = 0; cut <= len; cut++) {
			LLVMFuzzerTestOneInput((const uint8_t *)texts[i], cut);
			runs++;
		}
	}
	char text[2048];
	for (int k = 0; k < RANDOM_TEXTS; k++) {
		size_t n = 0;
		int count = 1 + (int)(fuzz_random(&rng) % 30);
		for (int j = 0; j < count; j++) {
			const char *p = pieces[fuzz_random(&rng) % (sizeof(pieces) / sizeof(pieces[0]))];
			size_t len = strlen(p);
			if (n + len + 1 >= sizeof(text))
				break;
			memcpy(text + n, p, len);
			n += len;
			if (fuzz_random(&rng) % 3)
				text[n++] = ' ';
		}
		LLVMFuzzerTestOneInput((const uint8_t *)text, n);
		runs++;
	}
	printf("fuzz_sqlscan_replay: %d inputs, no failure\n", runs);
	return 0;
}
