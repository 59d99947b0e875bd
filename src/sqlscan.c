/*
 * sqlscan.c - the cheap look and PostgreSQL's parser over client SQL
 * (sqlscan.h).
 */
#include "sluice/sqlscan.h"

#include <ctype.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sluice/common.h"

/* ---- the cheap look ------------------------------------------------------------ */

/*
 * Skips blanks, comments and opening parentheses: where a statement's first
 * word starts. Comments as PostgreSQL's scanner reads them: "--" to the end
 * of the line (\n or \r), and nested block comments.
 */
static const char *word_start(const char *p, const char *end)
{
	while (p < end) {
		if (*p == ' ' || (*p >= '\t' && *p <= '\r') || *p == '(') {
			p++;
		} else if (*p == '-' && p + 1 < end && p[1] == '-') {
			while (p < end && *p != '\n' && *p != '\r')
				p++;
		} else if (*p == '/' && p + 1 < end && p[1] == '*') {
			int depth = 1;
			for (p += 2; p < end && depth > 0; p++) {
				if (p + 1 < end && p[0] == '/' && p[1] == '*')
					depth++, p++;
				else if (p + 1 < end && p[0] == '*' && p[1] == '/')
					depth--, p++;
			}
		} else {
			break;
		}
	}
	return p;
}

/* Whether the word at p is word (lower case), in any case: by hand, as this runs on every query. */
static bool word_is(const char *p, const char *end, const char *word)
{
	size_t i = 0;
	for (; word[i]; i++)
		if (p + i == end || (p[i] | 0x20) != word[i])
			return false;
	return p + i == end || !(isalnum((unsigned char)p[i]) || p[i] == '_');
}

/* The statement whose first word is at p, or whose blanks or comments are: the slow half. */
__attribute__((noinline)) static unsigned word_effects(const char *p, const char *end)
{
	p = word_start(p, end);
	if (p == end)
		return 0;
	switch (*p | 0x20) {
	case 's':
		return word_is(p, end, "set") ? SQL_EFFECT_SETTINGS : 0;
	case 'r':
		return word_is(p, end, "reset") ? SQL_EFFECT_SETTINGS : 0;
	case 'd':
		if (word_is(p, end, "discard"))
			return SQL_EFFECT_SETTINGS | SQL_EFFECT_PINS | SQL_EFFECT_PREPARED;
		if (word_is(p, end, "deallocate"))
			return SQL_EFFECT_PREPARED;
		return word_is(p, end, "declare") || word_is(p, end, "drop") ? SQL_EFFECT_PINS : 0;
	case 'c':
		return word_is(p, end, "create") || word_is(p, end, "close") ? SQL_EFFECT_PINS : 0;
	case 'l':
		return word_is(p, end, "listen") ? SQL_EFFECT_PINS : 0;
	case 'u':
		return word_is(p, end, "unlisten") ? SQL_EFFECT_PINS : 0;
	case 'p':
		return word_is(p, end, "prepare") ? SQL_EFFECT_PREPARED : 0;
	case 'e':
		/* EXPLAIN ANALYZE runs what it explains: a CREATE TEMP TABLE ... AS too. */
		return word_is(p, end, "explain") ? SQL_EFFECT_PINS : 0;
	default:
		return 0;
	}
}

/* The letters the words above begin with, as bits from 'a'. */
#define INITIALS                                                                                   \
	((1u << ('s' - 'a')) | (1u << ('r' - 'a')) | (1u << ('d' - 'a')) | (1u << ('c' - 'a')) |   \
	 (1u << ('l' - 'a')) | (1u << ('u' - 'a')) | (1u << ('p' - 'a')) | (1u << ('e' - 'a')))

/*
 * What the statement starting at p may do. The common first words are told
 * apart here without a call: one whose initial begins none of the words
 * above (INSERT, WITH, BEGIN...), and SELECT from SET by its third letter.
 */
static inline unsigned first_word_effects(const char *p, const char *end)
{
	if (p == end)
		return 0;
	unsigned c = (unsigned char)*p | 0x20;
	if (c >= 'a' && c <= 'z') {
		if (!(INITIALS >> (c - 'a') & 1))
			return 0;
		if (c == 's' && (end - p < 3 || ((unsigned char)p[2] | 0x20) != 't'))
			return 0;
	}
	return word_effects(p, end);
}

/*
 * The function names that matter in a text with a '(', found from their
 * '_' (most queries have few): set_config, and pg_advisory_* and
 * pg_try_advisory_* (the session locks and their unlocks), from the '_'
 * after "advisory". And a U&"..." identifier, which could spell either
 * with escapes.
 */
static unsigned function_effects(const char *text, size_t len)
{
	unsigned effects = 0;
	const char *p = text, *end = text + len;
	while ((p = memchr(p, '_', (size_t)(end - p))) != NULL) {
		char before = p > text ? (char)(p[-1] | 0x20) : 0;
		if (before == 't' && p - text >= 3 && end - p >= 7 &&
		    strncasecmp(p - 3, "set_config", 10) == 0)
			effects |= SQL_EFFECT_SETTINGS;
		else if (before == 'y' && p - text >= 8 && strncasecmp(p - 8, "advisory", 8) == 0)
			effects |= SQL_EFFECT_PINS; /* pg_advisory_..., pg_try_advisory_... */
		p++;
	}
	for (p = text; (p = memchr(p, '&', (size_t)(end - p))) != NULL; p++)
		if (p > text && (p[-1] | 0x20) == 'u' && p + 1 < end && p[1] == '"')
			return SQL_EFFECT_SETTINGS | SQL_EFFECT_PINS | SQL_EFFECT_PREPARED;
	return effects;
}

/*
 * The statements after each ';' and whether a '(' occurs: the careful pass,
 * once the fast one in sql_scan_cheap saw either byte.
 */
__attribute__((noinline)) static unsigned scan_marks(const char *text, size_t len)
{
	unsigned effects = 0;
	bool call = false;
	for (const char *p = text, *end = text + len; p < end; p++) {
		if (*p == ';')
			effects |= first_word_effects(p + 1, end);
		else if (*p == '(')
			call = true;
	}
	return call ? effects | function_effects(text, len) : effects;
}

/*
 * The look at a text the fast pass could not settle: a short one, or one
 * with a ';' before its end or a '('.
 */
__attribute__((noinline)) static unsigned scan_careful(const char *text, size_t len)
{
	/* A ';' (and blanks) at the very end starts no statement: left out, so it costs nothing. */
	while (len && (text[len - 1] == ';' || text[len - 1] == ' ' || text[len - 1] == '\n'))
		len--;
	return first_word_effects(text, text + len) | scan_marks(text, len);
}

/*
 * Whether any of the n bytes at text (n >= 16) is ';' or '(', 16 at a
 * time, the last block ending at the text's end. SSE2 is part of x86-64;
 * elsewhere a plain loop does the same.
 */
static inline bool any_marks(const char *text, size_t n)
{
#ifdef __SSE2__
	const __m128i semi = _mm_set1_epi8(';'), paren = _mm_set1_epi8('(');
	const char *last = text + n - 16;
	__m128i v = _mm_loadu_si128((const __m128i *)(const void *)last);
	__m128i hit = _mm_or_si128(_mm_cmpeq_epi8(v, semi), _mm_cmpeq_epi8(v, paren));
	for (const char *p = text; p < last; p += 16) {
		v = _mm_loadu_si128((const __m128i *)(const void *)p);
		hit = _mm_or_si128(hit,
				   _mm_or_si128(_mm_cmpeq_epi8(v, semi), _mm_cmpeq_epi8(v, paren)));
	}
	return _mm_movemask_epi8(hit) != 0;
#else
	unsigned char hit = 0;
	for (size_t i = 0; i < n; i++)
		hit |= text[i] == ';' || text[i] == '(';
	return hit;
#endif
}

unsigned sql_scan_cheap(const char *text, size_t len)
{
	/*
	 * Every ';' but a last one may end a statement (one inside a literal
	 * only costs a parse), and a function is called only with a '('. Most
	 * texts have neither: one pass says so, and only the first word
	 * counts. The bytes the careful pass would leave out at the end are
	 * then blanks at most, which change nothing of the first word's look.
	 */
	if (len > 16) {
		size_t n = len - (text[len - 1] == ';');
		if (!any_marks(text, n))
			return first_word_effects(text, text + n);
	}
	return scan_careful(text, len);
}

/* ---- PostgreSQL's parser --------------------------------------------------------- */

static void note_custom(struct sql_scan_result *out, const char *name)
{
	if (!name || !strchr(name, '.') || out->n_custom == SQL_SCAN_CUSTOM_MAX)
		return;
	for (int i = 0; i < out->n_custom; i++)
		if (strcasecmp(out->custom[i], name) == 0)
			return;
	out->custom[out->n_custom++] = xstrdup(name);
}

static const char *string_of(const PgQuery__Node *n)
{
	if (n && n->node_case == PG_QUERY__NODE__NODE_STRING && n->string)
		return n->string->sval;
	return NULL;
}

static void visit_variable_set(const PgQuery__VariableSetStmt *v, struct sql_scan_result *out)
{
	/* SET LOCAL ends with its transaction (as does SET inside a function with a SET clause). */
	if (v->is_local)
		return;
	out->effects |= SQL_EFFECT_SETTINGS;
	note_custom(out, v->name);
}

static void visit_func_call(const PgQuery__FuncCall *f, struct sql_scan_result *out)
{
	const char *name = f->n_funcname ? string_of(f->funcname[f->n_funcname - 1]) : NULL;
	if (!name)
		return;
	if (strncmp(name, "pg_advisory_", 12) == 0 && !strstr(name, "xact")) {
		out->effects |= SQL_EFFECT_PINS; /* a session lock, or its unlock */
		return;
	}
	if (strcmp(name, "set_config") != 0)
		return;
	out->effects |= SQL_EFFECT_SETTINGS;
	/* set_config('myapp.x', ...): a literal first argument names the setting. */
	const PgQuery__Node *a = f->n_args ? f->args[0] : NULL;
	if (a && a->node_case == PG_QUERY__NODE__NODE_A_CONST &&
	    a->a_const->val_case == PG_QUERY__A__CONST__VAL_SVAL && a->a_const->sval)
		note_custom(out, a->a_const->sval->sval);
}

/* A temporary relation named in a CREATE (pg_temp.x, or CREATE TEMP ...). */
static void visit_range_var(const PgQuery__RangeVar *rv, struct sql_scan_result *out)
{
	if ((rv->relpersistence && strcmp(rv->relpersistence, "t") == 0) ||
	    (rv->schemaname && strcmp(rv->schemaname, "pg_temp") == 0))
		out->effects |= SQL_EFFECT_PINS;
}

/*
 * Visits every message of the tree through protobuf-c's descriptors, so a
 * set_config or an advisory lock is found however deep it sits (a subquery,
 * a CTE, a function argument) without a walker per node type; relations:
 * a temporary relation near the top counts too (visit_statement).
 */
static void walk(const ProtobufCMessage *m, struct sql_scan_result *out, int depth, bool relations)
{
	if (!m || depth > 200)
		return;
	const ProtobufCMessageDescriptor *d = m->descriptor;
	if (d == &pg_query__func_call__descriptor)
		visit_func_call((const PgQuery__FuncCall *)m, out);
	else if (relations && d == &pg_query__range_var__descriptor && depth <= 3)
		visit_range_var((const PgQuery__RangeVar *)m, out);
	else if (relations && d == &pg_query__string__descriptor && depth <= 4 &&
		 strcmp(((const PgQuery__String *)m)->sval, "pg_temp") == 0)
		out->effects |=
			SQL_EFFECT_PINS; /* a name in pg_temp: a temporary function, type... */
	const char *base = (const char *)m;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
			/* Only the member the case names is there. */
			if (*(const uint32_t *)(base + f->quantifier_offset) != f->id)
				continue;
		}
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)(base + f->quantifier_offset);
			ProtobufCMessage *const *items = *(
				ProtobufCMessage *const *const *)(base + f->offset);
			for (size_t j = 0; j < n; j++)
				walk(items[j], out, depth + 1, relations);
		} else {
			walk(*(ProtobufCMessage *const *)(base + f->offset), out, depth + 1,
			     relations);
		}
	}
}

/* CURSOR_OPT_HOLD of PostgreSQL's parsenodes.h: a WITH HOLD cursor outlives its transaction. */
#define CURSOR_OPT_HOLD 0x0020

/*
 * A statement of the text. SET, RESET and DISCARD count only as
 * statements of their own: inside CREATE FUNCTION or ALTER ROLE the same
 * clause changes a function or a role, not this session. A temporary
 * relation counts where a CREATE names it (depth 3 at most: the statement,
 * its node, the RangeVar or IntoClause), not where a query reads one; so
 * does a function, type or domain a CREATE names in pg_temp (depth 4: its
 * name list's String).
 */
/* A PREPARE: its name and its own text, the raw statement text[at, at + len). */
static void note_prepare(struct sql_scan_result *out, const char *name, const char *text, size_t at,
			 size_t len)
{
	out->effects |= SQL_EFFECT_PREPARED;
	size_t n = strlen(text);
	if (!name || !*name || at > n || out->n_prepares == SQL_SCAN_PREPARES_MAX)
		return;
	if (len == 0 || at + len > n)
		len = n - at; /* the last statement runs to the end */
	while (at && len && (text[at] == ' ' || (text[at] >= '\t' && text[at] <= '\r')))
		at++, len--; /* the blanks after the ';' before it */
	out->prepare_name[out->n_prepares] = xstrdup(name);
	out->prepare_text[out->n_prepares++] = xstrndup(text + at, len);
}

/* A channel of LISTEN or UNLISTEN, once; beyond the maximum, dropped (the probe still sees them). */
static void note_channel(char **names, int *n, const char *name)
{
	if (!name || !*name || *n == SQL_SCAN_CHANNELS_MAX)
		return;
	for (int i = 0; i < *n; i++)
		if (strcmp(names[i], name) == 0)
			return;
	names[(*n)++] = xstrdup(name);
}

static bool explain_analyzes(const PgQuery__ExplainStmt *e);

static void visit_statement(const PgQuery__Node *stmt, struct sql_scan_result *out)
{
	if (!stmt)
		return;
	switch (stmt->node_case) {
	case PG_QUERY__NODE__NODE_EXPLAIN_STMT:
		/* ANALYZE runs the statement: what it does, it does to the session. */
		if (explain_analyzes(stmt->explain_stmt)) {
			visit_statement(stmt->explain_stmt->query, out);
			return;
		}
		break;
	case PG_QUERY__NODE__NODE_VARIABLE_SET_STMT:
		visit_variable_set(stmt->variable_set_stmt, out);
		break;
	case PG_QUERY__NODE__NODE_DISCARD_STMT:
		out->effects |= SQL_EFFECT_SETTINGS | SQL_EFFECT_PINS | SQL_EFFECT_PREPARED;
		if (stmt->discard_stmt->target == PG_QUERY__DISCARD_MODE__DISCARD_ALL)
			out->unlisten_all = true;
		break;
	case PG_QUERY__NODE__NODE_LISTEN_STMT:
		out->effects |= SQL_EFFECT_PINS;
		note_channel(out->listen, &out->n_listen, stmt->listen_stmt->conditionname);
		break;
	case PG_QUERY__NODE__NODE_UNLISTEN_STMT:
		out->effects |= SQL_EFFECT_PINS;
		if (!stmt->unlisten_stmt->conditionname || !*stmt->unlisten_stmt->conditionname)
			out->unlisten_all = true; /* UNLISTEN * */
		else
			note_channel(out->unlisten, &out->n_unlisten,
				     stmt->unlisten_stmt->conditionname);
		break;
	case PG_QUERY__NODE__NODE_DECLARE_CURSOR_STMT:
		if (stmt->declare_cursor_stmt->options & CURSOR_OPT_HOLD)
			out->effects |= SQL_EFFECT_PINS;
		break;
	case PG_QUERY__NODE__NODE_CLOSE_PORTAL_STMT:
	case PG_QUERY__NODE__NODE_DROP_STMT:
		out->effects |= SQL_EFFECT_PINS;
		break;
	case PG_QUERY__NODE__NODE_DEALLOCATE_STMT:
		out->effects |= SQL_EFFECT_PREPARED;
		break;
	case PG_QUERY__NODE__NODE_CREATE_STMT:
	case PG_QUERY__NODE__NODE_CREATE_TABLE_AS_STMT:
	case PG_QUERY__NODE__NODE_VIEW_STMT:
	case PG_QUERY__NODE__NODE_CREATE_SEQ_STMT:
	case PG_QUERY__NODE__NODE_CREATE_FUNCTION_STMT:
	case PG_QUERY__NODE__NODE_DEFINE_STMT:
	case PG_QUERY__NODE__NODE_COMPOSITE_TYPE_STMT:
	case PG_QUERY__NODE__NODE_CREATE_ENUM_STMT:
	case PG_QUERY__NODE__NODE_CREATE_RANGE_STMT:
	case PG_QUERY__NODE__NODE_CREATE_DOMAIN_STMT:
	case PG_QUERY__NODE__NODE_CREATE_STATS_STMT:
		walk(&stmt->base, out, 0, true); /* and the name of what it creates */
		return;
	default:
		break;
	}
	/* Only a CREATE's relation pins: SELECT INTO TEMP is left out (sqlscan.h). */
	walk(&stmt->base, out, 0, false);
}

/* ---- what would make a pin (session_pinning = refuse) ------------------------ */

/* A relation a CREATE makes temporary: CREATE TEMP ..., or named in pg_temp. */
static bool range_var_is_temp(const PgQuery__RangeVar *rv)
{
	return rv && ((rv->relpersistence && strcmp(rv->relpersistence, "t") == 0) ||
		      (rv->schemaname && strcmp(rv->schemaname, "pg_temp") == 0));
}

/* A qualified name (a function's, a type's) whose schema is pg_temp. */
static bool name_is_temp(PgQuery__Node *const *names, size_t n)
{
	const char *schema = n >= 2 ? string_of(names[n - 2]) : NULL;
	return schema && strcmp(schema, "pg_temp") == 0;
}

/*
 * The session advisory lock functions f calls, as a static string, or NULL:
 * PostgreSQL's own (unqualified or in pg_catalog), not their unlocks and
 * not the _xact_ ones, which end with the transaction.
 */
static const char *session_lock_call(const PgQuery__FuncCall *f)
{
	static const char *const locks[] = {
		"pg_advisory_lock()",
		"pg_advisory_lock_shared()",
		"pg_try_advisory_lock()",
		"pg_try_advisory_lock_shared()",
	};
	const char *name = f->n_funcname ? string_of(f->funcname[f->n_funcname - 1]) : NULL;
	const char *schema = f->n_funcname >= 2 ? string_of(f->funcname[f->n_funcname - 2]) : NULL;
	if (!name || f->n_funcname > 2 || (schema && strcmp(schema, "pg_catalog") != 0))
		return NULL;
	size_t n = strlen(name);
	for (size_t i = 0; i < ARRAY_SIZE(locks); i++)
		if (strncmp(locks[i], name, n) == 0 && strcmp(locks[i] + n, "()") == 0)
			return locks[i];
	return NULL;
}

/*
 * Calls fn on every message of the tree under m, in order, through
 * protobuf-c's descriptors like walk's, until fn returns non-NULL: that is
 * returned (NULL when fn never did).
 */
typedef const void *visit_fn(const ProtobufCMessage *m, void *arg);
static const void *visit_tree(const ProtobufCMessage *m, int depth, visit_fn *fn, void *arg)
{
	if (!m || depth > 200)
		return NULL;
	const void *found = fn(m, arg);
	if (found)
		return found;
	const ProtobufCMessageDescriptor *d = m->descriptor;
	const char *base = (const char *)m;
	for (unsigned i = 0; i < d->n_fields && !found; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
		    *(const uint32_t *)(base + f->quantifier_offset) != f->id)
			continue;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)(base + f->quantifier_offset);
			ProtobufCMessage *const *items = *(
				ProtobufCMessage *const *const *)(base + f->offset);
			for (size_t j = 0; j < n && !found; j++)
				found = visit_tree(items[j], depth + 1, fn, arg);
		} else {
			found = visit_tree(*(ProtobufCMessage *const *)(base + f->offset),
					   depth + 1, fn, arg);
		}
	}
	return found;
}

/* visit_tree's fn: the first session advisory lock call (session_lock_call's name). */
static const void *session_lock_in(const ProtobufCMessage *m, void *arg)
{
	(void)arg;
	if (m->descriptor != &pg_query__func_call__descriptor)
		return NULL;
	return session_lock_call((const PgQuery__FuncCall *)m);
}

/* visit_tree's fn: the highest $n, in *(int *)arg. */
static const void *param_number(const ProtobufCMessage *m, void *arg)
{
	if (m->descriptor == &pg_query__param_ref__descriptor) {
		int n = ((const PgQuery__ParamRef *)m)->number;
		if (n > *(int *)arg)
			*(int *)arg = n;
	}
	return NULL;
}

/* Whether EXPLAIN's options run the statement: ANALYZE, unless given as false or off. */
static bool explain_analyzes(const PgQuery__ExplainStmt *e)
{
	for (size_t i = 0; i < e->n_options; i++) {
		const PgQuery__Node *o = e->options[i];
		if (o->node_case != PG_QUERY__NODE__NODE_DEF_ELEM || !o->def_elem->defname ||
		    strcmp(o->def_elem->defname, "analyze") != 0)
			continue;
		const PgQuery__Node *a = o->def_elem->arg;
		if (!a)
			return true;
		if (a->node_case == PG_QUERY__NODE__NODE_BOOLEAN)
			return a->boolean->boolval;
		if (a->node_case == PG_QUERY__NODE__NODE_INTEGER)
			return a->integer->ival != 0;
		const char *v = string_of(a);
		return !v || (strcasecmp(v, "false") != 0 && strcasecmp(v, "off") != 0);
	}
	return false;
}

/*
 * What the statement stmt would leave in the session that pins, and what
 * to call it (*what, a static string); NONE for everything else. A lock
 * counts in the statements that evaluate their expressions: now (SELECT,
 * INSERT, UPDATE, DELETE, MERGE, CALL, COPY, CREATE TABLE AS, EXPLAIN
 * ANALYZE) or when the client runs them later through a name sluice does
 * not see (a cursor's FETCH, a PREPARE's EXECUTE). Not in a definition run
 * by somebody else later: a function's body, a view's query, a default.
 */
static enum sql_pin_made pin_made_by(const PgQuery__Node *stmt, const char **what)
{
	if (!stmt)
		return SQL_PIN_MADE_NONE;
	switch (stmt->node_case) {
	case PG_QUERY__NODE__NODE_CREATE_STMT: {
		const PgQuery__CreateStmt *c = stmt->create_stmt;
		if (!range_var_is_temp(c->relation) ||
		    c->oncommit == PG_QUERY__ON_COMMIT_ACTION__ONCOMMIT_DROP)
			return SQL_PIN_MADE_NONE;
		*what = "CREATE TEMP TABLE";
		return SQL_PIN_MADE_TEMPORARY_OBJECT;
	}
	case PG_QUERY__NODE__NODE_CREATE_TABLE_AS_STMT: {
		const PgQuery__CreateTableAsStmt *c = stmt->create_table_as_stmt;
		if (c->into && range_var_is_temp(c->into->rel) &&
		    c->into->on_commit != PG_QUERY__ON_COMMIT_ACTION__ONCOMMIT_DROP) {
			*what = "CREATE TEMP TABLE ... AS";
			return SQL_PIN_MADE_TEMPORARY_OBJECT;
		}
		if (c->into && c->into->skip_data)
			return SQL_PIN_MADE_NONE; /* WITH NO DATA: the query does not run */
		break;
	}
	case PG_QUERY__NODE__NODE_VIEW_STMT:
		if (!range_var_is_temp(stmt->view_stmt->view))
			return SQL_PIN_MADE_NONE;
		*what = "CREATE TEMP VIEW";
		return SQL_PIN_MADE_TEMPORARY_OBJECT;
	case PG_QUERY__NODE__NODE_CREATE_SEQ_STMT:
		if (!range_var_is_temp(stmt->create_seq_stmt->sequence))
			return SQL_PIN_MADE_NONE;
		*what = "CREATE TEMP SEQUENCE";
		return SQL_PIN_MADE_TEMPORARY_OBJECT;
	case PG_QUERY__NODE__NODE_CREATE_FUNCTION_STMT: {
		const PgQuery__CreateFunctionStmt *f = stmt->create_function_stmt;
		if (!name_is_temp(f->funcname, f->n_funcname))
			return SQL_PIN_MADE_NONE;
		*what = f->is_procedure ? "CREATE PROCEDURE pg_temp.*"
					: "CREATE FUNCTION pg_temp.*";
		return SQL_PIN_MADE_TEMPORARY_OBJECT;
	}
	case PG_QUERY__NODE__NODE_DEFINE_STMT: {
		const PgQuery__DefineStmt *d = stmt->define_stmt;
		if (!name_is_temp(d->defnames, d->n_defnames))
			return SQL_PIN_MADE_NONE;
		*what = d->kind == PG_QUERY__OBJECT_TYPE__OBJECT_TYPE ? "CREATE TYPE pg_temp.*"
			: d->kind == PG_QUERY__OBJECT_TYPE__OBJECT_AGGREGATE
				? "CREATE AGGREGATE pg_temp.*"
				: "CREATE ... pg_temp.*";
		return SQL_PIN_MADE_TEMPORARY_OBJECT;
	}
	case PG_QUERY__NODE__NODE_COMPOSITE_TYPE_STMT:
		if (!range_var_is_temp(stmt->composite_type_stmt->typevar))
			return SQL_PIN_MADE_NONE;
		*what = "CREATE TYPE pg_temp.*";
		return SQL_PIN_MADE_TEMPORARY_OBJECT;
	case PG_QUERY__NODE__NODE_CREATE_ENUM_STMT:
		if (!name_is_temp(stmt->create_enum_stmt->type_name,
				  stmt->create_enum_stmt->n_type_name))
			return SQL_PIN_MADE_NONE;
		*what = "CREATE TYPE pg_temp.*";
		return SQL_PIN_MADE_TEMPORARY_OBJECT;
	case PG_QUERY__NODE__NODE_CREATE_RANGE_STMT:
		if (!name_is_temp(stmt->create_range_stmt->type_name,
				  stmt->create_range_stmt->n_type_name))
			return SQL_PIN_MADE_NONE;
		*what = "CREATE TYPE pg_temp.*";
		return SQL_PIN_MADE_TEMPORARY_OBJECT;
	case PG_QUERY__NODE__NODE_CREATE_DOMAIN_STMT:
		if (!name_is_temp(stmt->create_domain_stmt->domainname,
				  stmt->create_domain_stmt->n_domainname))
			return SQL_PIN_MADE_NONE;
		*what = "CREATE DOMAIN pg_temp.*";
		return SQL_PIN_MADE_TEMPORARY_OBJECT;
	case PG_QUERY__NODE__NODE_CREATE_STATS_STMT:
		if (!name_is_temp(stmt->create_stats_stmt->defnames,
				  stmt->create_stats_stmt->n_defnames))
			return SQL_PIN_MADE_NONE;
		*what = "CREATE STATISTICS pg_temp.*";
		return SQL_PIN_MADE_TEMPORARY_OBJECT;
	case PG_QUERY__NODE__NODE_DECLARE_CURSOR_STMT:
		if (stmt->declare_cursor_stmt->options & CURSOR_OPT_HOLD) {
			*what = "DECLARE ... CURSOR WITH HOLD";
			return SQL_PIN_MADE_HELD_CURSOR;
		}
		break;
	case PG_QUERY__NODE__NODE_EXPLAIN_STMT:
		/* EXPLAIN ANALYZE runs its statement, EXPLAIN alone does not. */
		if (!explain_analyzes(stmt->explain_stmt))
			return SQL_PIN_MADE_NONE;
		return pin_made_by(stmt->explain_stmt->query, what);
	case PG_QUERY__NODE__NODE_SELECT_STMT:
	case PG_QUERY__NODE__NODE_INSERT_STMT:
	case PG_QUERY__NODE__NODE_UPDATE_STMT:
	case PG_QUERY__NODE__NODE_DELETE_STMT:
	case PG_QUERY__NODE__NODE_MERGE_STMT:
	case PG_QUERY__NODE__NODE_CALL_STMT:
	case PG_QUERY__NODE__NODE_COPY_STMT:
	case PG_QUERY__NODE__NODE_PREPARE_STMT:
		break;
	default:
		return SQL_PIN_MADE_NONE;
	}
	const char *lock = visit_tree(&stmt->base, 0, session_lock_in, NULL);
	if (!lock)
		return SQL_PIN_MADE_NONE;
	*what = lock;
	return SQL_PIN_MADE_ADVISORY_LOCK;
}

/* Notes the first statement of the text that would make a pin. */
static void note_pin_made(struct sql_scan_result *out, const PgQuery__RawStmt *raw,
			  const char *text)
{
	const char *what = NULL;
	enum sql_pin_made kind = pin_made_by(raw->stmt, &what);
	size_t n = strlen(text);
	if (kind == SQL_PIN_MADE_NONE || raw->stmt_location < 0 || (size_t)raw->stmt_location > n)
		return;
	out->pin_made = kind;
	out->pin_what = what;
	visit_tree(&raw->stmt->base, 0, param_number, &out->pin_params);
	out->pin_at = (size_t)raw->stmt_location;
	/* The last statement's length is 0: it runs to the end. */
	out->pin_len = raw->stmt_len > 0 && out->pin_at + (size_t)raw->stmt_len <= n
			       ? (size_t)raw->stmt_len
			       : n - out->pin_at;
}

void sql_scan_parse(const char *text, struct sql_scan_result *out)
{
	memset(out, 0, sizeof(*out));
	PgQueryProtobufParseResult r = pg_query_parse_protobuf(text);
	if (!r.error) {
		PgQuery__ParseResult *tree =
			pg_query__parse_result__unpack(NULL, r.parse_tree.len,
						       (const uint8_t *)r.parse_tree.data);
		if (tree) {
			for (size_t i = 0; i < tree->n_stmts; i++) {
				const PgQuery__RawStmt *raw = tree->stmts[i];
				visit_statement(raw->stmt, out);
				if (out->pin_made == SQL_PIN_MADE_NONE)
					note_pin_made(out, raw, text);
				if (raw->stmt &&
				    raw->stmt->node_case == PG_QUERY__NODE__NODE_PREPARE_STMT)
					/* Alone, the whole text: pg_prepared_statements shows it so. */
					note_prepare(out, raw->stmt->prepare_stmt->name, text,
						     tree->n_stmts == 1
							     ? 0
							     : (size_t)raw->stmt_location,
						     tree->n_stmts == 1 ? 0
									: (size_t)raw->stmt_len);
			}
			pg_query__parse_result__free_unpacked(tree, NULL);
		}
	}
	pg_query_free_protobuf_parse_result(r);
}

void sql_scan_result_deinit(struct sql_scan_result *r)
{
	for (int i = 0; i < r->n_custom; i++)
		free(r->custom[i]);
	r->n_custom = 0;
	for (int i = 0; i < r->n_prepares; i++) {
		free(r->prepare_name[i]);
		free(r->prepare_text[i]);
	}
	r->n_prepares = 0;
	for (int i = 0; i < r->n_listen; i++)
		free(r->listen[i]);
	for (int i = 0; i < r->n_unlisten; i++)
		free(r->unlisten[i]);
	r->n_listen = r->n_unlisten = 0;
	r->unlisten_all = false;
}

/* s between single quotes, as an SQL literal: each ' doubled (no backslash is special in it). */
static char *quoted(const char *s)
{
	size_t n = 2;
	for (const char *p = s; *p; p++)
		n += *p == '\'' ? 2 : 1;
	char *q = xmalloc(n + 1), *o = q;
	*o++ = '\'';
	for (const char *p = s; *p; p++) {
		if (*p == '\'')
			*o++ = '\'';
		*o++ = *p;
	}
	*o++ = '\'';
	*o = 0;
	return q;
}

char *sql_scan_refusal(const char *text, const struct sql_scan_result *r, const char *pool_mode)
{
	const char *what, *hint;
	switch (r->pin_made) {
	case SQL_PIN_MADE_ADVISORY_LOCK:
		what = "session advisory locks";
		hint = "Use pg_advisory_xact_lock(), which the end of the transaction releases, "
		       "or session pooling.";
		break;
	case SQL_PIN_MADE_TEMPORARY_OBJECT:
		what = "temporary objects";
		hint = strncmp(r->pin_what, "CREATE TEMP TABLE", 17) == 0
			       ? "Use CREATE TEMP TABLE ... ON COMMIT DROP in a transaction block, "
				 "or session pooling."
			       : "Create the object in a schema of its own, or use session pooling.";
		break;
	case SQL_PIN_MADE_HELD_CURSOR:
		what = "cursors WITH HOLD";
		hint = "Declare the cursor without WITH HOLD in a transaction block, or use session "
		       "pooling.";
		break;
	default:
		return NULL;
	}
	char *message = xasprintf("%s are not allowed in %s pooling (session_pinning = refuse)",
				  what, pool_mode);
	char *detail = xasprintf("%s leaves state in the server's session after the transaction, "
				 "which would keep the server from the other clients.",
				 r->pin_what);
	char *qm = quoted(message), *qd = quoted(detail), *qh = quoted(hint);
	/*
	 * The block's text is all sluice's (none of the client's text is in it),
	 * so the dollar quote cannot be closed early; the statement it stands
	 * for is cut at PostgreSQL's own statement boundaries.
	 */
	char *sql = xasprintf("%.*s DO $sluice_refuse$BEGIN RAISE EXCEPTION USING ERRCODE = "
			      "'0A000', MESSAGE = %s, DETAIL = %s, HINT = %s; END$sluice_refuse$%s",
			      (int)r->pin_at, text, qm, qd, qh, text + r->pin_at + r->pin_len);
	free(message);
	free(detail);
	free(qm);
	free(qd);
	free(qh);
	return sql;
}
