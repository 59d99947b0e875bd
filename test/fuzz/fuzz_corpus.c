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

int fuzz_run_corpus(const char *dir)
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
			(void)LLVMFuzzerTestOneInput(data, len);
			free(data);
			runs++;
		}
		free(names[i]);
	}
	free(names);
	return runs;
}
