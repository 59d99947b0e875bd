/*
 * fuzz_hba_replay.c - runs the hba fuzz target (fuzz_hba.c) without
 * libFuzzer, in every build: a table of hostile and valid lines, each also
 * cut at every length, then lines assembled from random pieces of the
 * grammar (keywords, names, quotes, addresses, masks, methods, commas,
 * comments, continuations) from a fixed seed, so a failure reproduces; and
 * first the files of its corpus directory (the first argument).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#define SEED 0x4ba5eedu
#define RANDOM_FILES 20000

static const char *const lines[] = {
	"local all all trust\n",
	"host all all 127.0.0.1/32 md5\n",
	"host all all 10.0.0.0 255.0.0.0 scram-sha-256\n",
	"hostssl app,shop alice,\"bob smith\" ::1/128 cert clientcert=verify-full\n",
	"hostnossl \"all\" all all reject # comment\n",
	"local sameuser all peer\n",
	"local replication all trust\n",
	"host all all all \\\n  password\n",
	"host all all 1.2.3.4/ md5\n",
	"host all all /32 md5\n",
	"host all all 999.1.1.1/8 md5\n",
	"host all all 1.2.3.4 255.255.x.0 md5\n",
	"host \"unterminated all all md5\n",
	"host ,,, ,, all md5\n",
	"host all all ::ffff:1.2.3.4/200 md5\n",
	"local all all\n",
	"local @users.txt all trust\n",
	"\\\n\\\n\\\n",
	"\"\"\n",
	"#\n\n\n   \t  \n",
	/* ident map lines */
	"m root postgres\nm \"bouncer\" all\n",
	"m /^(.*)$ \\1\n",
	"m root +admins\n",
	"hostssl all all all cert map=m\n",
	"host all a , b ,c all md5\n",
};

static const char *const pieces[] = {
	"local", "host", "hostssl", "hostnossl", "all", "sameuser", "replication", "app", "\"all\"",
	"\"a b\"", ",", ",,", "@f", "127.0.0.1/32", "::1/128", "10.0.0.0", "255.255.0.0", "0.0.0.0/0",
	"1.2.3.4/33", "trust", "reject", "md5", "password", "scram-sha-256", "cert", "peer", "ident",
	"opt=1", "#c", "\\\n", "\n", " ", "\t", "\"", "\r\n", "map=m", "map=", "m", "root",
	"/^re$", "+grp", " , ",
};

static uint32_t rng = SEED;

static uint32_t next_random(void)
{
	return fuzz_random(&rng);
}

int main(int argc, char **argv)
{
	int runs = fuzz_replay_corpus(argc, argv);
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		size_t len = strlen(lines[i]);
		for (size_t cut = 0; cut <= len; cut++) {
			LLVMFuzzerTestOneInput((const uint8_t *)lines[i], cut);
			runs++;
		}
	}
	char file[4096];
	for (int k = 0; k < RANDOM_FILES; k++) {
		size_t n = 0;
		int count = 1 + (int)(next_random() % 40);
		for (int j = 0; j < count; j++) {
			const char *p = pieces[next_random() % (sizeof(pieces) / sizeof(pieces[0]))];
			size_t len = strlen(p);
			if (n + len + 1 >= sizeof(file))
				break;
			memcpy(file + n, p, len);
			n += len;
			if (next_random() % 3)
				file[n++] = ' ';
		}
		LLVMFuzzerTestOneInput((const uint8_t *)file, n);
		runs++;
	}
	printf("fuzz_hba_replay: %d inputs, no failure\n", runs);
	return 0;
}
