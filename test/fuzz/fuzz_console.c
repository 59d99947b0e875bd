/*
 * fuzz_console.c - fuzz target for the admin console's command grammar
 * (console.c): the input, up to its first NUL, is a console query's text.
 *
 * console_parse must answer 0 or -1 and leave every field a string within
 * its array; a blank text is never a command. What it parsed must be
 * written again in a canonical form (every word quoted, SET's value in
 * single quotes with '' for a quote) that parses to exactly the same
 * command: the grammar loses nothing it claims to have read. Bare words
 * come back lower-cased and made of the word characters only.
 *
 * It owns no I/O and no state between inputs.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "sluice/console.h"

/* Console queries are short; the grammar is linear, so a cap only keeps runs quick. */
#define FUZZ_MAX_INPUT (16u * 1024u)

static bool terminated(const char *field, size_t size)
{
	return memchr(field, '\0', size) != NULL;
}

static bool bare_word(const char *s)
{
	for (; *s; s++)
		if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '_' ||
		      *s == '.' || *s == '-'))
			return false;
	return true;
}

/* cmd written back as "verb" ["arg"], or "set" "key" = 'value'. */
static char *render(const struct console_command *cmd)
{
	size_t cap = sizeof(cmd->verb) + sizeof(cmd->arg) + 2 * sizeof(cmd->set_value) + 16;
	char *out = malloc(cap);
	FUZZ_CHECK(out != NULL);
	size_t n = (size_t)snprintf(out, cap, "\"%s\"", cmd->verb);
	if (cmd->is_set || cmd->has_arg)
		n += (size_t)snprintf(out + n, cap - n, " \"%s\"", cmd->arg);
	if (cmd->is_set) {
		n += (size_t)snprintf(out + n, cap - n, " = '");
		for (const char *v = cmd->set_value; *v; v++) {
			if (*v == '\'')
				out[n++] = '\'';
			out[n++] = *v;
		}
		out[n++] = '\'';
		out[n] = '\0';
	}
	FUZZ_CHECK(n < cap);
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > FUZZ_MAX_INPUT)
		size = FUZZ_MAX_INPUT;
	char *sql = malloc(size + 1);
	FUZZ_CHECK(sql != NULL);
	memcpy(sql, data, size);
	sql[size] = '\0';
	/* An exact-size copy of the C string, so that reading past its NUL is an ASan error. */
	char *text = strdup(sql);
	free(sql);
	FUZZ_CHECK(text != NULL);

	struct console_command cmd;
	memset(&cmd, 0xAA, sizeof(cmd));
	int rc = console_parse(text, &cmd);
	FUZZ_CHECK(rc == 0 || rc == -1);
	if (console_is_empty(text))
		FUZZ_CHECK(rc == -1);
	if (rc == 0) {
		FUZZ_CHECK(terminated(cmd.verb, sizeof(cmd.verb)));
		FUZZ_CHECK(terminated(cmd.arg, sizeof(cmd.arg)));
		FUZZ_CHECK(terminated(cmd.set_value, sizeof(cmd.set_value)));
		FUZZ_CHECK(!(cmd.is_set && cmd.has_arg));
		FUZZ_CHECK(!cmd.is_set || strcmp(cmd.verb, "set") == 0);
		FUZZ_CHECK(cmd.is_set || strcmp(cmd.verb, "set") != 0);
		FUZZ_CHECK(cmd.is_set || cmd.has_arg || cmd.arg[0] == '\0');
		/* Only a quoted word is empty. */
		if ((cmd.is_set && cmd.arg[0] == '\0') || cmd.verb[0] == '\0')
			FUZZ_CHECK(strchr(text, '"') != NULL);
		/* A verb written bare comes back lower-cased, of word characters only. */
		const char *start = text;
		while (isspace((unsigned char)*start))
			start++;
		if (*start != '"')
			FUZZ_CHECK(cmd.verb[0] != '\0' && bare_word(cmd.verb));

		char *again_text = render(&cmd);
		struct console_command again;
		FUZZ_CHECK(console_parse(again_text, &again) == 0);
		FUZZ_CHECK(strcmp(again.verb, cmd.verb) == 0 && strcmp(again.arg, cmd.arg) == 0);
		FUZZ_CHECK(again.is_set == cmd.is_set && again.has_arg == cmd.has_arg);
		FUZZ_CHECK(strcmp(again.set_value, cmd.set_value) == 0);
		free(again_text);
	}
	free(text);
	return 0;
}
