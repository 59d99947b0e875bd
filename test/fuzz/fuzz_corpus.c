/*
 * fuzz_corpus.c - runs a fuzz target on every file of its corpus directory
 * (test/fuzz/corpus/<target>/), for the replays: the seeds, and every input
 * that once crashed a target and was dropped there, are fixed inputs of the
 * unit suite in every build.
 *
 * Files are run in name order, so a failure reproduces; names starting with
 * a dot and anything but regular files are skipped. Each file is handed to
 * the target in a heap block of its exact size, so that AddressSanitizer
 * sees a read past its end. A directory that cannot be read ends the replay
 * with an error: a corpus that silently vanished would look like a pass.
 *
 * It also mutates the corpus the way libFuzzer would, but from a fixed
 * seed (fuzz_random): the replays of the targets whose inputs are text
 * (SCRAM messages, auth_file, config, console commands) take their
 * generated inputs from it, with a dictionary of their grammar's pieces.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

/* The whole of path in a block of exactly its size (1 byte for an empty file). */
static uint8_t *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	uint8_t *data = NULL;
	size_t n = 0, cap = 0;
	for (;;) {
		if (n == cap) {
			cap = cap ? cap * 2 : 4096;
			data = realloc(data, cap);
			FUZZ_CHECK(data != NULL);
		}
		size_t got = fread(data + n, 1, cap - n, f);
		n += got;
		if (got == 0)
			break;
	}
	bool bad = ferror(f);
	fclose(f);
	if (bad) {
		free(data);
		return NULL;
	}
	/* Exact size: the target must not read a byte past the file's end unnoticed. */
	uint8_t *exact = malloc(n ? n : 1);
	FUZZ_CHECK(exact != NULL);
	memcpy(exact, data, n);
	free(data);
	*len = n;
	return exact;
}

/* Calls fn on every regular file of dir in name order; returns how many. */
static int each_file(const char *dir, void (*fn)(const uint8_t *data, size_t len, void *arg),
		     void *arg)
{
	struct dirent **names;
	int n = scandir(dir, &names, NULL, alphasort);
	if (n < 0) {
		fprintf(stderr, "fuzz corpus %s: %s\n", dir, strerror(errno));
		exit(EXIT_FAILURE);
	}
	int runs = 0;
	for (int i = 0; i < n; i++) {
		char path[4096];
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
		if (names[i]->d_name[0] != '.' && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			size_t len = 0;
			uint8_t *data = read_all(path, &len);
			if (!data) {
				fprintf(stderr, "fuzz corpus %s: cannot read\n", path);
				exit(EXIT_FAILURE);
			}
			fn(data, len, arg);
			free(data);
			runs++;
		}
		free(names[i]);
	}
	free(names);
	return runs;
}

static void run_one(const uint8_t *data, size_t len, void *arg)
{
	(void)arg;
	(void)LLVMFuzzerTestOneInput(data, len);
}

int fuzz_run_corpus(const char *dir)
{
	return each_file(dir, run_one, NULL);
}

/* ---- mutations ------------------------------------------------------------------ */

struct mutate {
	int per_file;
	uint32_t rng;
	const char *const *tokens;
	size_t ntokens;
	int runs;
};

/* Bytes parsers care about: separators, quotes, escapes, line ends, the extremes. */
static const uint8_t interesting[] = { 0, '\n', '\r', ' ', '\t', ',', '=', '"', '\'', '\\',
				       ';', '#', '[', ']', '$', ':', '%', 0x7f, 0x80, 0xff };

/* One mutation of buf[0..*len) in place; cap is its size. */
static void mutate_once(struct mutate *m, uint8_t *buf, size_t *len, size_t cap)
{
	uint32_t r = fuzz_random(&m->rng);
	size_t n = *len;
	size_t at = n ? fuzz_random(&m->rng) % n : 0;
	switch (r % 7) {
	case 0: /* flip a bit */
		if (n)
			buf[at] ^= (uint8_t)(1u << (fuzz_random(&m->rng) % 8));
		break;
	case 1: /* an interesting byte */
		if (n)
			buf[at] = interesting[fuzz_random(&m->rng) % sizeof(interesting)];
		break;
	case 2: { /* delete a range */
		size_t k = n - at < 8 ? n - at : 1 + fuzz_random(&m->rng) % 8;
		memmove(buf + at, buf + at + k, n - at - k);
		*len = n - k;
		break;
	}
	case 3: { /* duplicate a range */
		size_t k = 1 + fuzz_random(&m->rng) % 16;
		if (at + k > n)
			k = n - at;
		if (n + k <= cap) {
			memmove(buf + at + k, buf + at, n - at);
			*len = n + k;
		}
		break;
	}
	case 4: /* cut */
		*len = at;
		break;
	case 5: { /* a digit string where there was one byte: counts, ports, lengths */
		static const char *const numbers[] = { "0", "-1", "4294967296", "99999999999999999999",
						       "2147483648", "1e9", "0x10", "00000001" };
		const char *t = numbers[fuzz_random(&m->rng) % 8];
		size_t k = strlen(t);
		if (n && n - 1 + k <= cap) {
			memmove(buf + at + k, buf + at + 1, n - at - 1);
			memcpy(buf + at, t, k);
			*len = n - 1 + k;
		}
		break;
	}
	default: { /* a piece of the grammar */
		if (!m->ntokens)
			break;
		const char *t = m->tokens[fuzz_random(&m->rng) % m->ntokens];
		size_t k = strlen(t);
		if (n + k <= cap) {
			memmove(buf + at + k, buf + at, n - at);
			memcpy(buf + at, t, k);
			*len = n + k;
		}
		break;
	}
	}
}

static void mutate_file(const uint8_t *data, size_t len, void *arg)
{
	struct mutate *m = arg;
	size_t cap = len * 2 + 256;
	uint8_t *buf = malloc(cap);
	FUZZ_CHECK(buf != NULL);
	for (int i = 0; i < m->per_file; i++) {
		memcpy(buf, data, len);
		size_t n = len;
		int rounds = 1 + (int)(fuzz_random(&m->rng) % 4);
		for (int k = 0; k < rounds; k++)
			mutate_once(m, buf, &n, cap);
		/* Exact size again, for AddressSanitizer. */
		uint8_t *exact = malloc(n ? n : 1);
		FUZZ_CHECK(exact != NULL);
		memcpy(exact, buf, n);
		(void)LLVMFuzzerTestOneInput(exact, n);
		free(exact);
		m->runs++;
	}
	free(buf);
}

int fuzz_run_mutations(const char *dir, int per_file, uint32_t seed, const char *const *tokens)
{
	struct mutate m = { .per_file = per_file, .rng = seed ? seed : 1, .tokens = tokens };
	while (tokens && tokens[m.ntokens])
		m.ntokens++;
	(void)each_file(dir, mutate_file, &m);
	return m.runs;
}
