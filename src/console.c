/*
 * console.c - the admin console's command grammar (see console.h): words,
 * SET's values and the optional ';' at the end, read from a query's text.
 *
 * It owns only the parsing. It does not own the tables of SHOW arguments
 * and control commands, the checks of who may run them, or the answers
 * (admin.c), nor the framing of the Query message that carried the text.
 */
#include "sluice/console.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

static const char *skip_ws(const char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	return s;
}

/* Reads one WORD into out (lower-cased unless quoted). NULL on a syntax error. */
static const char *read_word(const char *s, char *out, size_t len)
{
	size_t n = 0;
	if (*s == '"') {
		s++;
		while (*s && *s != '"') {
			if (n + 1 >= len)
				return NULL;
			out[n++] = *s++;
		}
		if (*s != '"')
			return NULL;
		s++;
	} else {
		while (isalnum((unsigned char)*s) || *s == '_' || *s == '.' || *s == '-') {
			if (n + 1 >= len)
				return NULL;
			out[n++] = (char)tolower((unsigned char)*s++);
		}
		if (n == 0)
			return NULL;
	}
	out[n] = '\0';
	return s;
}

/* Reads SET's value: 'string' (with '' for a quote) or a bare token. */
static const char *read_value(const char *s, char *out, size_t len)
{
	size_t n = 0;
	if (*s == '\'') {
		s++;
		for (;;) {
			if (!*s)
				return NULL;
			if (*s == '\'') {
				if (s[1] != '\'')
					break;
				s++;
			}
			if (n + 1 >= len)
				return NULL;
			out[n++] = *s++;
		}
		s++;
	} else {
		while (*s && !isspace((unsigned char)*s) && *s != ';') {
			if (n + 1 >= len)
				return NULL;
			out[n++] = *s++;
		}
		if (n == 0)
			return NULL;
	}
	out[n] = '\0';
	return s;
}

/* Whether only blanks, and at most one ';' among them, are left. */
static bool at_end(const char *s)
{
	s = skip_ws(s);
	if (*s == ';')
		s = skip_ws(s + 1);
	return *s == '\0';
}

bool console_is_empty(const char *sql)
{
	return *skip_ws(sql) == '\0';
}

int console_parse(const char *sql, struct console_command *cmd)
{
	memset(cmd, 0, sizeof(*cmd));
	const char *s = read_word(skip_ws(sql), cmd->verb, sizeof(cmd->verb));
	if (!s)
		return -1;
	if (strcmp(cmd->verb, "set") == 0) {
		cmd->is_set = true;
		s = read_word(skip_ws(s), cmd->arg, sizeof(cmd->arg));
		if (!s)
			return -1;
		s = skip_ws(s);
		if (*s == '=')
			s++;
		else if (strncasecmp(s, "to", 2) == 0 && isspace((unsigned char)s[2]))
			s += 2;
		else
			return -1;
		s = read_value(skip_ws(s), cmd->set_value, sizeof(cmd->set_value));
		return s && at_end(s) ? 0 : -1;
	}
	if (at_end(s))
		return 0;
	if (!isspace((unsigned char)*s))
		return -1;
	s = read_word(skip_ws(s), cmd->arg, sizeof(cmd->arg));
	if (!s)
		return -1;
	cmd->has_arg = true;
	return at_end(s) ? 0 : -1;
}
