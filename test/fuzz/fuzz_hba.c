/*
 * fuzz_hba.c - fuzz target for the auth_hba_file parser (hba.c): the input
 * is the file's text. Whatever it holds, parsing must not crash or leak,
 * must either give rules or an error naming the file, and the rules given
 * must answer a few connections (a unix socket, IPv4 and IPv6, with and
 * without TLS, a replication connection) with a method that exists.
 *
 * The same text is then read as an auth_ident_file into the rules parsed
 * from a fixed file: an error names the file, and maps answer a few look-ups
 * (consistently: the same question twice gets the same answer).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "sluice/hba.h"



/* Text files are small; the parser is linear, so a cap only keeps runs quick. */
#define FUZZ_MAX_INPUT (64u * 1024u)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > FUZZ_MAX_INPUT)
		size = FUZZ_MAX_INPUT;
	char *text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = 0; /* a NUL inside ends the text, as it would a C string read from the file */
	char err[256] = "";
	struct hba *id = hba_parse("local all all peer map=m\n", "hba.conf", err, sizeof(err));
	FUZZ_CHECK(id != NULL);
	if (hba_parse_ident(id, text, "/nonexistent/ident.conf", err, sizeof(err)) < 0) {
		FUZZ_CHECK(strncmp(err, "/nonexistent/ident.conf:", 24) == 0);
	} else {
		static const char *const names[] = { "m", "root", "postgres", "all", "", "a b" };
		for (size_t i = 0; i < 6; i++)
			for (size_t k = 0; k < 6; k++)
				FUZZ_CHECK(hba_ident_allows(id, "m", names[i], names[k]) ==
					   hba_ident_allows(id, "m", names[i], names[k]));
		(void)hba_unknown_map(id);
	}
	hba_unref(id);
	/* A directory that does not exist: @files fail cleanly instead of reading the disk. */
	struct hba *h = hba_parse(text, "/nonexistent/hba.conf", err, sizeof(err));
	free(text);
	if (!h) {
		FUZZ_CHECK(strncmp(err, "/nonexistent/", 13) == 0);
		return 0;
	}
	struct sockaddr_in a4 = { .sin_family = AF_INET };
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6 };
	inet_pton(AF_INET, "10.1.2.3", &a4.sin_addr);
	inet_pton(AF_INET6, "2001:db8::7", &a6.sin6_addr);
	const struct hba_conn conns[] = {
		{ true, false, false, NULL, "app", "alice" },
		{ false, false, false, (struct sockaddr *)&a4, "app", "alice" },
		{ false, true, false, (struct sockaddr *)&a6, "alice", "alice" },
		{ false, true, true, (struct sockaddr *)&a4, "replication", "bob" },
	};
	for (size_t i = 0; i < sizeof(conns) / sizeof(conns[0]); i++) {
		int line = -1;
		const char *map = NULL;
		enum hba_method m = hba_match(h, &conns[i], &line, &map);
		FUZZ_CHECK(!map || m == HBA_CERT || m == HBA_PEER);
		FUZZ_CHECK(m >= HBA_NO_MATCH && m <= HBA_PEER);
		FUZZ_CHECK((m == HBA_NO_MATCH) == (line == 0));
		FUZZ_CHECK(strcmp(hba_method_name(m), "?") != 0);
	}
	hba_unref(h);
	return 0;
}
