/*
 * console.h - the admin console's command grammar, I/O-free: the text of
 * a console query in, a parsed command out.
 *
 * It knows the shape of PgBouncer's console commands and nothing of what
 * they mean: which verbs and SHOW arguments exist, who may run them and
 * what they do are admin.c's. Being protocol code, it is unit-tested and
 * fuzzed without a loop or a socket.
 */
#pragma once

#include <stdbool.h>

#include "sluice/common.h"

/*
 * A console command as PgBouncer's grammar allows:
 *   WORD [WORD] [;]          (a word: letters, digits, '_', '.' and '-',
 *                             lower-cased; or "quoted", kept as written)
 *   SET key = value [;]      (TO for =; value: a bare token up to a blank or
 *                             ';', or a 'string' with '' for a quote)
 * Blanks may surround every part. Words and values that do not fit their
 * field are syntax errors.
 */
struct console_command {
	char verb[16]; /* the first word; "set" for SET */
	char arg[64]; /* the second word (SET: the key) */
	bool has_arg; /* a second word was given (false for SET, whose key is always there) */
	bool is_set; /* SET key = value */
	char set_value[256];
};

/*
 * Parses sql (a NUL-terminated query text, borrowed) into cmd. 0, or -1 on
 * a syntax error, after which cmd holds nothing to rely on.
 */
int console_parse(const char *sql, struct console_command *cmd) WUR;
/* Whether sql holds only blanks: an empty query, answered with EmptyQueryResponse. */
bool console_is_empty(const char *sql);
