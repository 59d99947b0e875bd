/*
 * pkt.c - PostgreSQL v3 framing, readers and builders (see pkt.h).
 *
 * Everything here works on byte ranges the caller owns; nothing allocates
 * except the builders, which append to a caller's buf_out, and the options
 * parser, whose result the caller frees.
 */
#include "sluice/pkt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int pkt_frame_startup(const uint8_t *p, size_t avail, uint32_t *len)
{
	if (avail < 4)
		return PKT_INCOMPLETE;
	uint32_t n = get_be32(p);
	if (n < 8 || n > PKT_STARTUP_MAX)
		return PKT_MALFORMED;
	*len = n;
	return PKT_OK;
}

int pkt_parse_startup(const uint8_t *p, uint32_t len, struct pkt_startup *st)
{
	if (len < 8 || get_be32(p) != len)
		return PKT_MALFORMED;
	/* Not a memset of the whole: keys and vals are a kilobyte, read only up to nparams. */
	st->code = get_be32(p + 4);
	st->cancel_pid = st->cancel_key = 0;
	st->nparams = 0;
	switch (st->code) {
	case PKT_CANCEL_REQUEST_CODE:
		if (len != 16)
			return PKT_MALFORMED;
		st->cancel_pid = get_be32(p + 8);
		st->cancel_key = get_be32(p + 12);
		return PKT_OK;
	case PKT_SSL_REQUEST_CODE:
	case PKT_GSSENC_REQUEST_CODE:
		return len == 8 ? PKT_OK : PKT_MALFORMED;
	default:
		break;
	}
	/* A StartupMessage: pairs of strings, then one terminating NUL. */
	const char *s = (const char *)p + 8;
	const char *end = (const char *)p + len;
	for (;;) {
		if (s >= end)
			return PKT_MALFORMED;
		if (*s == '\0')
			return s + 1 == end ? PKT_OK : PKT_MALFORMED;
		const char *k = s;
		const char *z = memchr(k, '\0', (size_t)(end - k));
		if (!z)
			return PKT_MALFORMED;
		const char *v = z + 1;
		if (v >= end)
			return PKT_MALFORMED;
		z = memchr(v, '\0', (size_t)(end - v));
		if (!z)
			return PKT_MALFORMED;
		if (st->nparams == PKT_STARTUP_MAX_PARAMS)
			return PKT_MALFORMED;
		st->keys[st->nparams] = k;
		st->vals[st->nparams] = v;
		st->nparams++;
		s = z + 1;
	}
}

const char *pkt_startup_get(const struct pkt_startup *st, const char *key)
{
	const char *v = NULL;
	/* The first byte first: a login looks up several keys among a handful. */
	for (int i = 0; i < st->nparams; i++)
		if (st->keys[i][0] == key[0] && strcmp(st->keys[i], key) == 0)
			v = st->vals[i];
	return v;
}

/* parse_bool_with_len() of PostgreSQL: a prefix of word, at least min bytes long. */
static bool bool_word(const char *v, size_t len, const char *word, size_t min)
{
	return len >= min && len <= strlen(word) && strncasecmp(v, word, len) == 0;
}

int pkt_parse_replication(const char *value, enum pkt_replication *out)
{
	size_t len = strlen(value);
	bool on;
	if (strcmp(value, "database") == 0) {
		*out = PKT_REPLICATION_LOGICAL;
		return PKT_OK;
	}
	/* "o" alone is neither on nor off; every other first letter decides with one byte. */
	if (bool_word(value, len, "true", 1) || bool_word(value, len, "yes", 1) ||
	    bool_word(value, len, "on", 2) || strcmp(value, "1") == 0)
		on = true;
	else if (bool_word(value, len, "false", 1) || bool_word(value, len, "no", 1) ||
		 bool_word(value, len, "off", 2) || strcmp(value, "0") == 0)
		on = false;
	else
		return PKT_MALFORMED;
	*out = on ? PKT_REPLICATION_PHYSICAL : PKT_REPLICATION_NONE;
	return PKT_OK;
}

const char *pkt_replication_name(enum pkt_replication r)
{
	switch (r) {
	case PKT_REPLICATION_LOGICAL:
		return "logical";
	case PKT_REPLICATION_PHYSICAL:
		return "physical";
	case PKT_REPLICATION_NONE:
		break;
	}
	return "none";
}

const char *pkt_replication_startup_value(enum pkt_replication r)
{
	switch (r) {
	case PKT_REPLICATION_LOGICAL:
		return "database";
	case PKT_REPLICATION_PHYSICAL:
		return "true";
	case PKT_REPLICATION_NONE:
		break;
	}
	return NULL;
}

/*
 * The next word of an options string into word (at most cap - 1 bytes, then
 * a NUL); *s moves past it. false at the end of the string or when the word
 * does not fit.
 */
static bool options_word(const char **s, char *word, size_t cap, bool *too_long)
{
	const char *p = *s;
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' || *p == '\v')
		p++;
	if (!*p) {
		*s = p;
		return false;
	}
	size_t n = 0;
	while (*p &&
	       !(*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' || *p == '\v')) {
		if (*p == '\\' && p[1])
			p++;
		if (n + 1 < cap)
			word[n] = *p;
		n++;
		p++;
	}
	*s = p;
	if (n + 1 > cap) {
		*too_long = true;
		return false;
	}
	word[n] = '\0';
	return true;
}

static void options_add(struct pkt_options *o, const char *kv, const char *eq)
{
	o->names = xrealloc(o->names, (size_t)(o->n + 1) * sizeof(*o->names));
	o->values = xrealloc(o->values, (size_t)(o->n + 1) * sizeof(*o->values));
	char *name = xstrndup(kv, (size_t)(eq - kv));
	for (char *c = name; *c; c++)
		if (*c == '-')
			*c = '_';
	o->names[o->n] = name;
	o->values[o->n] = xstrdup(eq + 1);
	o->n++;
}

int pkt_parse_options(const char *opts, struct pkt_options *o, char *err, size_t errlen)
{
	memset(o, 0, sizeof(*o));
	if (errlen)
		err[0] = '\0';
	/* A startup packet is at most PKT_STARTUP_MAX bytes, so no word is longer. */
	char *word = xmalloc(PKT_STARTUP_MAX + 1);
	bool too_long = false, want_value = false;
	int rc = PKT_OK;
	const char *s = opts;
	while (options_word(&s, word, PKT_STARTUP_MAX + 1, &too_long)) {
		const char *kv;
		if (want_value) {
			kv = word;
			want_value = false;
		} else if (strcmp(word, "-c") == 0) {
			want_value = true;
			continue;
		} else if (strncmp(word, "-c", 2) == 0 || strncmp(word, "--", 2) == 0) {
			kv = word + 2;
		} else {
			snprintf(err, errlen, "unsupported switch \"%.64s\"", word);
			rc = PKT_MALFORMED;
			break;
		}
		const char *eq = strchr(kv, '=');
		if (!eq || eq == kv) {
			snprintf(err, errlen, "\"%.64s\" is not of the form name=value", kv);
			rc = PKT_MALFORMED;
			break;
		}
		options_add(o, kv, eq);
	}
	if (rc == PKT_OK && too_long) {
		snprintf(err, errlen, "a word is too long");
		rc = PKT_MALFORMED;
	} else if (rc == PKT_OK && want_value) {
		snprintf(err, errlen, "\"-c\" requires a value");
		rc = PKT_MALFORMED;
	}
	free(word);
	if (rc != PKT_OK)
		pkt_options_free(o);
	return rc;
}

void pkt_options_free(struct pkt_options *o)
{
	for (int i = 0; i < o->n; i++) {
		free(o->names[i]);
		free(o->values[i]);
	}
	free(o->names);
	free(o->values);
	memset(o, 0, sizeof(*o));
}

uint8_t pkt_get_u8(struct pkt_reader *r)
{
	if (r->bad || r->len - r->pos < 1) {
		r->bad = true;
		return 0;
	}
	return r->p[r->pos++];
}

uint16_t pkt_get_be16(struct pkt_reader *r)
{
	if (r->bad || r->len - r->pos < 2) {
		r->bad = true;
		return 0;
	}
	uint16_t v = get_be16(r->p + r->pos);
	r->pos += 2;
	return v;
}

uint32_t pkt_get_be32(struct pkt_reader *r)
{
	if (r->bad || r->len - r->pos < 4) {
		r->bad = true;
		return 0;
	}
	uint32_t v = get_be32(r->p + r->pos);
	r->pos += 4;
	return v;
}

const char *pkt_get_cstr(struct pkt_reader *r)
{
	if (r->bad)
		return NULL;
	const uint8_t *z = memchr(r->p + r->pos, '\0', r->len - r->pos);
	if (!z) {
		r->bad = true;
		return NULL;
	}
	const char *s = (const char *)r->p + r->pos;
	r->pos = (size_t)(z - r->p) + 1;
	return s;
}

const uint8_t *pkt_get_bytes(struct pkt_reader *r, size_t n)
{
	if (r->bad || r->len - r->pos < n) {
		r->bad = true;
		return NULL;
	}
	const uint8_t *s = r->p + r->pos;
	r->pos += n;
	return s;
}

int pkt_parse_notification(const uint8_t *body, size_t len, struct pkt_notification *n)
{
	struct pkt_reader r;
	pkt_reader_init(&r, body, len);
	n->pid = pkt_get_be32(&r);
	n->channel = pkt_get_cstr(&r);
	n->payload = pkt_get_cstr(&r);
	return r.bad || !n->channel || !n->payload || pkt_remaining(&r) ? PKT_MALFORMED : PKT_OK;
}

int pkt_parse_error(const uint8_t *body, size_t len, struct pkt_error *e)
{
	struct pkt_reader r;
	const char *sev_s = NULL, *sev_v = NULL;
	memset(e, 0, sizeof(*e));
	pkt_reader_init(&r, body, len);
	for (;;) {
		uint8_t code = pkt_get_u8(&r);
		if (r.bad)
			return PKT_MALFORMED;
		if (code == 0)
			break;
		const char *v = pkt_get_cstr(&r);
		if (!v)
			return PKT_MALFORMED;
		switch (code) {
		case 'S':
			sev_s = v;
			break;
		case 'V':
			sev_v = v;
			break;
		case 'C':
			e->sqlstate = v;
			break;
		case 'M':
			e->message = v;
			break;
		case 'D':
			e->detail = v;
			break;
		default:
			break;
		}
	}
	e->severity = sev_v ? sev_v : sev_s;
	return PKT_OK;
}

size_t pkt_begin(struct buf_out *out, uint8_t type)
{
	buf_out_put_u8(out, type);
	size_t start = out->len;
	buf_out_put_be32(out, 0);
	return start;
}

void pkt_end(struct buf_out *out, size_t start)
{
	put_be32(out->data + start, (uint32_t)(out->len - start));
}

static void put_error_fields(struct buf_out *out, uint8_t type, const char *severity,
			     const char *sqlstate, const char *message)
{
	size_t m = pkt_begin(out, type);
	buf_out_put_u8(out, 'S');
	buf_out_put_cstr(out, severity);
	buf_out_put_u8(out, 'V');
	buf_out_put_cstr(out, severity);
	buf_out_put_u8(out, 'C');
	buf_out_put_cstr(out, sqlstate);
	buf_out_put_u8(out, 'M');
	buf_out_put_cstr(out, message);
	buf_out_put_u8(out, 0);
	pkt_end(out, m);
}

void pkt_put_ErrorResponse(struct buf_out *out, const char *severity, const char *sqlstate,
			   const char *message)
{
	put_error_fields(out, PKT_ErrorResponse, severity, sqlstate, message);
}

void pkt_put_NoticeResponse(struct buf_out *out, const char *sqlstate, const char *message)
{
	put_error_fields(out, PKT_NoticeResponse, "NOTICE", sqlstate, message);
}

void pkt_put_ReadyForQuery(struct buf_out *out, char status)
{
	size_t m = pkt_begin(out, PKT_ReadyForQuery);
	buf_out_put_u8(out, (uint8_t)status);
	pkt_end(out, m);
}

static void put_auth(struct buf_out *out, uint32_t code, const void *data, size_t len)
{
	size_t m = pkt_begin(out, PKT_Authentication);
	buf_out_put_be32(out, code);
	buf_out_put(out, data, len);
	pkt_end(out, m);
}

void pkt_put_AuthenticationOk(struct buf_out *out)
{
	put_auth(out, PKT_AUTH_OK, NULL, 0);
}

void pkt_put_AuthenticationCleartextPassword(struct buf_out *out)
{
	put_auth(out, PKT_AUTH_CLEARTEXT, NULL, 0);
}

void pkt_put_AuthenticationMD5Password(struct buf_out *out, const uint8_t salt[4])
{
	put_auth(out, PKT_AUTH_MD5, salt, 4);
}

void pkt_put_AuthenticationSASL(struct buf_out *out, const char *mechanism)
{
	size_t m = pkt_begin(out, PKT_Authentication);
	buf_out_put_be32(out, PKT_AUTH_SASL);
	buf_out_put_cstr(out, mechanism);
	buf_out_put_u8(out, 0);
	pkt_end(out, m);
}

void pkt_put_AuthenticationSASLContinue(struct buf_out *out, const void *data, size_t len)
{
	put_auth(out, PKT_AUTH_SASL_CONTINUE, data, len);
}

void pkt_put_AuthenticationSASLFinal(struct buf_out *out, const void *data, size_t len)
{
	put_auth(out, PKT_AUTH_SASL_FINAL, data, len);
}

void pkt_put_ParameterStatus(struct buf_out *out, const char *name, const char *value)
{
	size_t m = pkt_begin(out, PKT_ParameterStatus);
	buf_out_put_cstr(out, name);
	buf_out_put_cstr(out, value);
	pkt_end(out, m);
}

void pkt_put_BackendKeyData(struct buf_out *out, uint32_t pid, uint32_t key)
{
	size_t m = pkt_begin(out, PKT_BackendKeyData);
	buf_out_put_be32(out, pid);
	buf_out_put_be32(out, key);
	pkt_end(out, m);
}

void pkt_put_CommandComplete(struct buf_out *out, const char *tag)
{
	size_t m = pkt_begin(out, PKT_CommandComplete);
	buf_out_put_cstr(out, tag);
	pkt_end(out, m);
}

void pkt_put_Query(struct buf_out *out, const char *sql)
{
	size_t m = pkt_begin(out, PKT_Query);
	buf_out_put_cstr(out, sql);
	pkt_end(out, m);
}

void pkt_put_Terminate(struct buf_out *out)
{
	size_t m = pkt_begin(out, PKT_Terminate);
	pkt_end(out, m);
}

void pkt_put_PasswordMessage(struct buf_out *out, const char *password)
{
	size_t m = pkt_begin(out, PKT_PasswordMessage);
	buf_out_put_cstr(out, password);
	pkt_end(out, m);
}

void pkt_put_SASLInitialResponse(struct buf_out *out, const char *mechanism, const void *data,
				 size_t len)
{
	size_t m = pkt_begin(out, PKT_PasswordMessage);
	buf_out_put_cstr(out, mechanism);
	buf_out_put_be32(out, (uint32_t)len);
	buf_out_put(out, data, len);
	pkt_end(out, m);
}

void pkt_put_SASLResponse(struct buf_out *out, const void *data, size_t len)
{
	size_t m = pkt_begin(out, PKT_PasswordMessage);
	buf_out_put(out, data, len);
	pkt_end(out, m);
}

void pkt_put_StartupMessage(struct buf_out *out, const char *const *keys, const char *const *vals,
			    int n)
{
	size_t start = out->len;
	buf_out_put_be32(out, 0);
	buf_out_put_be32(out, PKT_PROTOCOL_3_0);
	for (int i = 0; i < n; i++) {
		buf_out_put_cstr(out, keys[i]);
		buf_out_put_cstr(out, vals[i]);
	}
	buf_out_put_u8(out, 0);
	put_be32(out->data + start, (uint32_t)(out->len - start));
}

void pkt_put_SSLRequest(struct buf_out *out)
{
	buf_out_put_be32(out, 8);
	buf_out_put_be32(out, PKT_SSL_REQUEST_CODE);
}

void pkt_put_CancelRequest(struct buf_out *out, uint32_t pid, uint32_t key)
{
	buf_out_put_be32(out, 16);
	buf_out_put_be32(out, PKT_CANCEL_REQUEST_CODE);
	buf_out_put_be32(out, pid);
	buf_out_put_be32(out, key);
}
