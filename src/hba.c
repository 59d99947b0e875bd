/*
 * hba.c - auth_hba_file: pg_hba.conf lines into rules, and the first rule
 * that matches a connection (see hba.h).
 *
 * A line is tokens separated by blanks; a token may be quoted ("..." keeps
 * blanks, commas and keywords literal), and a field is a comma-separated list
 * of tokens. A '#' outside quotes ends the line; a '\' at the end of a line
 * joins the next. Names from an @file are read when the file is loaded, so
 * matching never touches the disk.
 *
 * The ident maps of auth_ident_file (pg_ident.conf's "map system-user
 * pg-user" lines) are read with the same tokenizer into the same object, so
 * a reload replaces rules and maps together.
 */
#include "sluice/hba.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum conn_type { CT_LOCAL, CT_HOST, CT_HOSTSSL, CT_HOSTNOSSL };

/* One name of a database or user field; keyword is set for an unquoted all/sameuser/replication. */
struct name {
	char *text;
	bool keyword;
};

struct name_list {
	struct name *v;
	int n;
};

struct rule {
	int line;
	enum conn_type type;
	struct name_list databases, users;
	bool any_addr;
	int family; /* AF_INET or AF_INET6 when !any_addr */
	uint8_t addr[16], mask[16];
	enum hba_method method;
	char *map; /* the map= option, or NULL */
};

/* One ident map line; user NULL is the keyword all. */
struct ident {
	char *map, *system_user, *user;
};

struct hba {
	atomic_int refs;
	struct rule *rules;
	int n;
	struct ident *idents;
	int n_idents;
};

static const char *const method_names[] = {
	[HBA_NO_MATCH] = "no match", [HBA_TRUST] = "trust",
	[HBA_REJECT] = "reject",     [HBA_MD5] = "md5",
	[HBA_PASSWORD] = "password", [HBA_SCRAM_SHA_256] = "scram-sha-256",
	[HBA_CERT] = "cert",	     [HBA_PEER] = "peer",
};

const char *hba_method_name(enum hba_method m)
{
	return (size_t)m < ARRAY_SIZE(method_names) ? method_names[m] : "?";
}

/* ---- tokens ------------------------------------------------------------------------- */

/* One field of a line: its tokens, each with whether it was quoted. */
struct field {
	struct name *tok;
	int n;
};

/*
 * Splits line into fields. A field ends at a blank outside quotes; commas
 * separate its tokens. false on an unterminated quote.
 */
static bool split_fields(const char *line, struct field **out, int *nout)
{
	struct field *fields = NULL;
	int nf = 0;
	const char *p = line;
	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\r')
			p++;
		if (!*p || *p == '#')
			break;
		struct field f = { NULL, 0 };
		for (;;) {
			char buf[1024];
			size_t len = 0;
			bool quoted = false;
			while (*p && *p != ',' && *p != ' ' && *p != '\t' && *p != '\r' &&
			       *p != '#') {
				if (*p == '"') {
					quoted = true;
					p++;
					while (*p && *p != '"') {
						if (len < sizeof(buf) - 1)
							buf[len++] = *p;
						p++;
					}
					if (*p != '"') {
						for (int i = 0; i < f.n; i++)
							free(f.tok[i].text);
						free(f.tok);
						for (int k = 0; k < nf; k++) {
							for (int i = 0; i < fields[k].n; i++)
								free(fields[k].tok[i].text);
							free(fields[k].tok);
						}
						free(fields);
						return false;
					}
					p++;
					continue;
				}
				if (len < sizeof(buf) - 1)
					buf[len++] = *p;
				p++;
			}
			buf[len] = 0;
			f.tok = xrealloc(f.tok, sizeof(*f.tok) * (size_t)(f.n + 1));
			f.tok[f.n++] = (struct name){ xstrdup(buf), !quoted };
			/* A list goes on across blanks next to its commas ("a , b"), as in PgBouncer. */
			const char *q = p + strspn(p, " \t\r");
			if (*q != ',')
				break;
			p = q + 1;
			p += strspn(p, " \t\r");
		}
		fields = xrealloc(fields, sizeof(*fields) * (size_t)(nf + 1));
		fields[nf++] = f;
	}
	*out = fields;
	*nout = nf;
	return true;
}

static void free_fields(struct field *fields, int n)
{
	for (int k = 0; k < n; k++) {
		for (int i = 0; i < fields[k].n; i++)
			free(fields[k].tok[i].text);
		free(fields[k].tok);
	}
	free(fields);
}

static bool is_kw(const struct name *t, const char *kw)
{
	return t->keyword && strcmp(t->text, kw) == 0;
}

/* ---- @files -------------------------------------------------------------------------- */

static char *read_whole(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	size_t cap = 4096, n = 0;
	char *s = xmalloc(cap);
	size_t k;
	while ((k = fread(s + n, 1, cap - n - 1, f)) > 0) {
		n += k;
		if (cap - n < 2)
			s = xrealloc(s, cap *= 2);
	}
	s[n] = 0;
	fclose(f);
	return s;
}

/* path resolved against the directory of the file that names it. */
static char *relative_to(const char *file, const char *path)
{
	if (path[0] == '/')
		return xstrdup(path);
	const char *slash = strrchr(file, '/');
	if (!slash)
		return xstrdup(path);
	return xasprintf("%.*s/%s", (int)(slash - file), file, path);
}

/* Adds the names of field to list; an @file adds the names it holds. */
static int add_names(struct name_list *list, const struct field *f, const char *file, int line,
		     char *err, size_t errlen)
{
	for (int i = 0; i < f->n; i++) {
		const struct name *t = &f->tok[i];
		if (!t->keyword || t->text[0] != '@') {
			list->v = xrealloc(list->v, sizeof(*list->v) * (size_t)(list->n + 1));
			list->v[list->n++] = (struct name){ xstrdup(t->text), t->keyword };
			continue;
		}
		char *path = relative_to(file, t->text + 1);
		char *text = read_whole(path);
		if (!text) {
			snprintf(err, errlen, "%s:%d: cannot read %s: %s", file, line, path,
				 strerror(errno));
			free(path);
			return -1;
		}
		/* Names separated by blanks, commas or lines; # comments; quoted names literal. */
		char *save = NULL;
		for (char *ln = strtok_r(text, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save)) {
			struct field *fields;
			int nf;
			if (!split_fields(ln, &fields, &nf)) {
				snprintf(err, errlen, "%s: unterminated quote", path);
				free(text);
				free(path);
				return -1;
			}
			for (int k = 0; k < nf; k++) {
				for (int j = 0; j < fields[k].n; j++) {
					list->v = xrealloc(list->v, sizeof(*list->v) *
									    (size_t)(list->n + 1));
					/* A name from a file is a name, never a keyword. */
					list->v[list->n++] = (struct name){
						xstrdup(fields[k].tok[j].text), false
					};
				}
			}
			free_fields(fields, nf);
		}
		free(text);
		free(path);
	}
	return 0;
}

/* ---- addresses ----------------------------------------------------------------------- */

static void mask_from_prefix(uint8_t *mask, int bytes, int prefix)
{
	memset(mask, 0, 16);
	for (int i = 0; i < bytes; i++) {
		int bits = prefix - i * 8;
		mask[i] = bits >= 8 ? 0xff : bits <= 0 ? 0 : (uint8_t)(0xff << (8 - bits));
	}
}

/* "addr/prefix", or "addr" with mask_text the mask; 0 or -1 with err. */
static int parse_address(struct rule *r, const char *text, const char *mask_text, char *msg,
			 size_t len)
{
	char host[128];
	const char *slash = strchr(text, '/');
	snprintf(host, sizeof(host), "%.*s", slash ? (int)(slash - text) : (int)strlen(text), text);
	int bytes;
	if (inet_pton(AF_INET, host, r->addr) == 1) {
		r->family = AF_INET;
		bytes = 4;
	} else if (inet_pton(AF_INET6, host, r->addr) == 1) {
		r->family = AF_INET6;
		bytes = 16;
	} else {
		snprintf(msg, len, "invalid IP address \"%s\" (host names are not supported)",
			 host);
		return -1;
	}
	if (slash) {
		char *end;
		long prefix = strtol(slash + 1, &end, 10);
		if (*end || end == slash + 1 || prefix < 0 || prefix > bytes * 8) {
			snprintf(msg, len, "invalid CIDR prefix in \"%s\"", text);
			return -1;
		}
		mask_from_prefix(r->mask, bytes, (int)prefix);
	} else if (mask_text) {
		uint8_t m[16] = { 0 };
		if (inet_pton(r->family, mask_text, m) != 1) {
			snprintf(msg, len, "invalid IP mask \"%s\"", mask_text);
			return -1;
		}
		memcpy(r->mask, m, 16);
	} else {
		snprintf(msg, len, "address \"%s\" needs a /prefix or a mask", text);
		return -1;
	}
	for (int i = 0; i < bytes; i++)
		r->addr[i] &= r->mask[i];
	return 0;
}

static bool address_matches(const struct rule *r, const struct sockaddr *sa)
{
	if (r->any_addr)
		return true;
	if (!sa)
		return false;
	const uint8_t *a;
	uint8_t mapped[4];
	int bytes;
	if (sa->sa_family == AF_INET) {
		a = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
		bytes = 4;
	} else if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		a = (const uint8_t *)a6;
		bytes = 16;
		/* An IPv4 client on a dual-stack socket matches IPv4 rules, as in PostgreSQL. */
		if (r->family == AF_INET && IN6_IS_ADDR_V4MAPPED(a6)) {
			memcpy(mapped, a + 12, 4);
			a = mapped;
			bytes = 4;
		}
	} else {
		return false;
	}
	if ((bytes == 4) != (r->family == AF_INET))
		return false;
	for (int i = 0; i < bytes; i++)
		if ((a[i] & r->mask[i]) != r->addr[i])
			return false;
	return true;
}

/* ---- lines --------------------------------------------------------------------------- */

static int parse_method(const char *s)
{
	for (size_t i = HBA_TRUST; i < ARRAY_SIZE(method_names); i++)
		if (strcmp(s, method_names[i]) == 0)
			return (int)i;
	return -1;
}

static void free_rule(struct rule *r)
{
	free(r->map);
	for (int i = 0; i < r->databases.n; i++)
		free(r->databases.v[i].text);
	for (int i = 0; i < r->users.n; i++)
		free(r->users.v[i].text);
	free(r->databases.v);
	free(r->users.v);
}

/* One line's fields into r; 0, or -1 with "file:line: why" in err. */
static int parse_rule(struct rule *r, const struct field *f, int nf, const char *file, int line,
		      char *err, size_t errlen)
{
	char msg[200] = "";
	static const char *const types[] = { "local", "host", "hostssl", "hostnossl" };
	int t = -1;
	for (int i = 0; i < (int)ARRAY_SIZE(types); i++)
		if (f[0].n == 1 && is_kw(&f[0].tok[0], types[i]))
			t = i;
	if (t < 0) {
		snprintf(msg, sizeof(msg), "invalid connection type \"%s\"", f[0].tok[0].text);
		goto fail;
	}
	r->type = (enum conn_type)t;
	int need = r->type == CT_LOCAL ? 4 : 5;
	if (nf < need) {
		snprintf(msg, sizeof(msg), "end of line before the authentication method");
		goto fail;
	}
	if (add_names(&r->databases, &f[1], file, line, err, errlen) < 0 ||
	    add_names(&r->users, &f[2], file, line, err, errlen) < 0)
		return -1;
	int mi = 3;
	if (r->type != CT_LOCAL) {
		const struct field *a = &f[3];
		if (a->n != 1) {
			snprintf(msg, sizeof(msg), "an address field holds one address");
			goto fail;
		}
		if (is_kw(&a->tok[0], "all")) {
			r->any_addr = true;
			mi = 4;
		} else {
			/* A bare address takes the next field as its mask. */
			bool cidr = strchr(a->tok[0].text, '/') != NULL;
			const char *mask = !cidr && nf > 5 ? f[4].tok[0].text : NULL;
			if (parse_address(r, a->tok[0].text, mask, msg, sizeof(msg)) < 0)
				goto fail;
			mi = cidr ? 4 : 5;
		}
	}
	if (mi >= nf || f[mi].n != 1) {
		snprintf(msg, sizeof(msg), "end of line before the authentication method");
		goto fail;
	}
	int m = parse_method(f[mi].tok[0].text);
	if (m < 0) {
		snprintf(msg, sizeof(msg), "unsupported authentication method \"%s\"",
			 f[mi].tok[0].text);
		goto fail;
	}
	if (m == HBA_PEER && r->type != CT_LOCAL) {
		snprintf(msg, sizeof(msg), "peer authentication is only for local connections");
		goto fail;
	}
	if (m == HBA_CERT && r->type == CT_LOCAL) {
		snprintf(msg, sizeof(msg), "cert authentication is only for hostssl connections");
		goto fail;
	}
	r->method = (enum hba_method)m;
	/* Options: map= names an ident map (cert and peer); the others are ignored, as PgBouncer. */
	for (int i = mi + 1; i < nf; i++) {
		const char *o = f[i].tok[0].text;
		if (f[i].n == 1 && strncmp(o, "map=", 4) == 0) {
			if (!o[4] || (m != HBA_CERT && m != HBA_PEER)) {
				snprintf(msg, sizeof(msg), "map= needs a name, and cert or peer");
				goto fail;
			}
			free(r->map);
			r->map = xstrdup(o + 4);
		}
	}
	return 0;
fail:
	snprintf(err, errlen, "%s:%d: %s", file, line, msg);
	return -1;
}

/* Parses one line's fields into h: a rule, or an ident map line. 0, or -1 with err. */
typedef int line_parse_cb(struct hba *h, const struct field *f, int nf, const char *file, int line,
			  char *err, size_t errlen);

static int add_rule(struct hba *h, const struct field *f, int nf, const char *file, int line,
		    char *err, size_t errlen)
{
	struct rule r = { .line = line };
	if (parse_rule(&r, f, nf, file, line, err, errlen) < 0) {
		free_rule(&r);
		return -1;
	}
	h->rules = xrealloc(h->rules, sizeof(*h->rules) * (size_t)(h->n + 1));
	h->rules[h->n++] = r;
	return 0;
}

/*
 * "map system-user pg-user", PgBouncer's subset of pg_ident.conf: exact
 * names (quoted or not) and the keyword all for any user; regular
 * expressions, +groups and include directives are refused rather than read
 * as names.
 */
static int add_ident(struct hba *h, const struct field *f, int nf, const char *file, int line,
		     char *err, size_t errlen)
{
	const char *why = NULL;
	if (nf != 3 || f[0].n != 1 || f[1].n != 1 || f[2].n != 1)
		why = "expected map name, system user name and user name";
	else if (f[1].tok[0].keyword && f[1].tok[0].text[0] == '/')
		why = "regular expressions are not supported";
	else if (f[2].tok[0].keyword && f[2].tok[0].text[0] == '+')
		why = "+group names are not supported";
	else if (!f[0].tok[0].text[0] || !f[1].tok[0].text[0] || !f[2].tok[0].text[0])
		why = "empty name";
	if (why) {
		snprintf(err, errlen, "%s:%d: %s", file, line, why);
		return -1;
	}
	h->idents = xrealloc(h->idents, sizeof(*h->idents) * (size_t)(h->n_idents + 1));
	h->idents[h->n_idents++] = (struct ident){
		.map = xstrdup(f[0].tok[0].text),
		.system_user = xstrdup(f[1].tok[0].text),
		.user = is_kw(&f[2].tok[0], "all") ? NULL : xstrdup(f[2].tok[0].text),
	};
	return 0;
}

/* Each logical line of text (physical lines joined where one ends in a backslash) into h. */
static int parse_lines(struct hba *h, const char *text, const char *name, line_parse_cb *parse,
		       char *err, size_t errlen)
{
	char *copy = xstrdup(text);
	char *p = copy;
	int lineno = 0, rc = 0;
	while (*p && rc == 0) {
		char *start = p;
		int first = ++lineno;
		char *nl;
		while ((nl = strchr(p, '\n')) != NULL && nl > start && nl[-1] == '\\') {
			nl[-1] = ' ';
			nl[0] = ' ';
			p = nl + 1;
			lineno++;
		}
		if (nl) {
			*nl = 0;
			p = nl + 1;
		} else {
			p += strlen(p);
		}
		struct field *fields;
		int nf;
		if (!split_fields(start, &fields, &nf)) {
			snprintf(err, errlen, "%s:%d: unterminated quote", name, first);
			rc = -1;
			break;
		}
		if (nf > 0)
			rc = parse(h, fields, nf, name, first, err, errlen);
		free_fields(fields, nf);
	}
	free(copy);
	return rc;
}

struct hba *hba_parse(const char *text, const char *name, char *err, size_t errlen)
{
	struct hba *h = xcalloc(1, sizeof(*h));
	atomic_init(&h->refs, 1);
	if (parse_lines(h, text, name, add_rule, err, errlen) < 0) {
		hba_unref(h);
		return NULL;
	}
	return h;
}

int hba_parse_ident(struct hba *h, const char *text, const char *name, char *err, size_t errlen)
{
	return parse_lines(h, text, name, add_ident, err, errlen);
}

struct hba *hba_load(const char *path, const char *ident_path, char *err, size_t errlen)
{
	char *text = read_whole(path);
	if (!text) {
		snprintf(err, errlen, "cannot read auth_hba_file %s: %s", path, strerror(errno));
		return NULL;
	}
	struct hba *h = hba_parse(text, path, err, errlen);
	free(text);
	if (!h || !ident_path || !*ident_path)
		return h;
	text = read_whole(ident_path);
	if (!text) {
		snprintf(err, errlen, "cannot read auth_ident_file %s: %s", ident_path,
			 strerror(errno));
		hba_unref(h);
		return NULL;
	}
	int rc = hba_parse_ident(h, text, ident_path, err, errlen);
	free(text);
	if (rc < 0) {
		hba_unref(h);
		return NULL;
	}
	return h;
}

const char *hba_unknown_map(const struct hba *h)
{
	for (int i = 0; i < h->n; i++) {
		const char *map = h->rules[i].map;
		bool found = false;
		for (int k = 0; map && k < h->n_idents && !found; k++)
			found = strcmp(h->idents[k].map, map) == 0;
		if (map && !found)
			return map;
	}
	return NULL;
}

bool hba_ident_allows(const struct hba *h, const char *map, const char *system_user,
		      const char *user)
{
	for (int i = 0; i < h->n_idents; i++) {
		const struct ident *id = &h->idents[i];
		if (strcmp(id->map, map) == 0 && strcmp(id->system_user, system_user) == 0 &&
		    (!id->user || strcmp(id->user, user) == 0))
			return true;
	}
	return false;
}

struct hba *hba_ref(struct hba *h)
{
	if (h)
		atomic_fetch_add(&h->refs, 1);
	return h;
}

void hba_unref(struct hba *h)
{
	if (!h || atomic_fetch_sub(&h->refs, 1) != 1)
		return;
	for (int i = 0; i < h->n; i++)
		free_rule(&h->rules[i]);
	free(h->rules);
	for (int i = 0; i < h->n_idents; i++) {
		free(h->idents[i].map);
		free(h->idents[i].system_user);
		free(h->idents[i].user);
	}
	free(h->idents);
	free(h);
}

int hba_rule_count(const struct hba *h)
{
	return h->n;
}

static bool database_matches(const struct name_list *l, const struct hba_conn *c)
{
	for (int i = 0; i < l->n; i++) {
		const struct name *n = &l->v[i];
		if (n->keyword && strcmp(n->text, "replication") == 0) {
			if (c->replication)
				return true;
			continue;
		}
		/* "all" and "sameuser" do not match replication connections, as in PostgreSQL. */
		if (c->replication)
			continue;
		if (n->keyword && strcmp(n->text, "all") == 0)
			return true;
		if (n->keyword && strcmp(n->text, "sameuser") == 0) {
			if (strcmp(c->database, c->user) == 0)
				return true;
			continue;
		}
		if (strcmp(n->text, c->database) == 0)
			return true;
	}
	return false;
}

static bool user_matches(const struct name_list *l, const char *user)
{
	for (int i = 0; i < l->n; i++) {
		const struct name *n = &l->v[i];
		if ((n->keyword && strcmp(n->text, "all") == 0) || strcmp(n->text, user) == 0)
			return true;
	}
	return false;
}

enum hba_method hba_match(const struct hba *h, const struct hba_conn *c, int *line,
			  const char **map)
{
	for (int i = 0; i < h->n; i++) {
		const struct rule *r = &h->rules[i];
		if ((r->type == CT_LOCAL) != c->unix_socket)
			continue;
		if ((r->type == CT_HOSTSSL && !c->tls) || (r->type == CT_HOSTNOSSL && c->tls))
			continue;
		if (r->type != CT_LOCAL && !address_matches(r, c->addr))
			continue;
		if (!database_matches(&r->databases, c) || !user_matches(&r->users, c->user))
			continue;
		*line = r->line;
		if (map)
			*map = r->map;
		return r->method;
	}
	*line = 0;
	if (map)
		*map = NULL;
	return HBA_NO_MATCH;
}
