/*
 * http_parse.c - the HTTP/1.x request-head parser, with no I/O (see
 * http_parse.h). It reads only the bytes it is given and keeps no state
 * between calls: the caller hands it the whole buffer again when more has
 * arrived, which for heads of at most HTTP_MAX_HEAD bytes costs nothing.
 */
#include "sluice/http_parse.h"

#include <stdbool.h>
#include <string.h>

/* The longest method accepted (the longest registered one is 17 characters). */
#define HTTP_MAX_METHOD 16

/* RFC 9110 tchar: the characters of a method or a header field name. */
static bool is_tchar(unsigned char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
		return true;
	return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Running out of bytes at a valid point: more may come, unless the head is already too big. */
static int need_more(size_t len)
{
	return len >= HTTP_MAX_HEAD ? HTTP_PARSE_TOO_LARGE : HTTP_PARSE_INCOMPLETE;
}

/*
 * A line end at p[*i]: CRLF or a bare LF. Returns 0 and moves *i past it,
 * or an enum http_parse_result when it is not one (yet).
 */
static int line_end(const unsigned char *p, size_t n, size_t len, size_t *i)
{
	if (*i == n)
		return need_more(len);
	if (p[*i] == '\n') {
		*i += 1;
		return 0;
	}
	if (p[*i] != '\r')
		return HTTP_PARSE_MALFORMED;
	if (*i + 1 == n)
		return need_more(len);
	if (p[*i + 1] != '\n')
		return HTTP_PARSE_MALFORMED;
	*i += 2;
	return 0;
}

/* Splits a request target into path and query; absolute-form loses its scheme and authority. */
static int split_target(const char *t, size_t tlen, struct http_request *out)
{
	size_t skip = 0;
	if (tlen >= 7 && strncasecmp(t, "http://", 7) == 0)
		skip = 7;
	else if (tlen >= 8 && strncasecmp(t, "https://", 8) == 0)
		skip = 8;
	if (skip) {
		size_t a = skip;
		while (a < tlen && t[a] != '/' && t[a] != '?' && t[a] != '#')
			a++;
		if (a == skip)
			return HTTP_PARSE_MALFORMED; /* no authority */
		t += a;
		tlen -= a;
		if (tlen == 0 || t[0] != '/') {
			/* "http://host?x": the path is "/" and the rest is the query. */
			out->path = "/";
			out->path_len = 1;
			goto query;
		}
	} else if (!(tlen == 1 && t[0] == '*') && t[0] != '/') {
		return HTTP_PARSE_MALFORMED; /* authority-form (CONNECT) or garbage */
	}
	size_t plen = 0;
	while (plen < tlen && t[plen] != '?' && t[plen] != '#')
		plen++;
	out->path = t;
	out->path_len = plen;
	t += plen;
	tlen -= plen;
query:
	if (tlen > 0 && t[0] == '?') {
		size_t qlen = 1;
		while (qlen < tlen && t[qlen] != '#')
			qlen++;
		out->query = t + 1;
		out->query_len = qlen - 1;
	}
	return HTTP_PARSE_COMPLETE;
}

int http_parse_request(const char *buf, size_t len, struct http_request *out)
{
	const unsigned char *p = (const unsigned char *)buf;
	/* Nothing past HTTP_MAX_HEAD is ever looked at. */
	size_t n = MIN(len, (size_t)HTTP_MAX_HEAD);
	size_t i = 0;
	int rc;
	memset(out, 0, sizeof(*out));

	/* Request line: method SP request-target SP HTTP/1.x CRLF */
	while (i < n && i <= HTTP_MAX_METHOD && is_tchar(p[i]))
		i++;
	if (i > HTTP_MAX_METHOD)
		return HTTP_PARSE_MALFORMED;
	if (i == n)
		return need_more(len);
	if (i == 0 || p[i] != ' ')
		return HTTP_PARSE_MALFORMED;
	out->method = buf;
	out->method_len = i;
	size_t t0 = ++i;
	while (i < n && p[i] > 0x20 && p[i] < 0x7f)
		i++;
	if (i == n)
		return need_more(len);
	if (i == t0 || p[i] != ' ')
		return HTTP_PARSE_MALFORMED;
	size_t t1 = i++;
	static const char version[] = "HTTP/1.";
	for (size_t k = 0; k < sizeof(version) - 1; k++, i++) {
		if (i == n)
			return need_more(len);
		if (p[i] != (unsigned char)version[k])
			return HTTP_PARSE_MALFORMED;
	}
	if (i == n)
		return need_more(len);
	if (p[i] != '0' && p[i] != '1')
		return HTTP_PARSE_MALFORMED;
	out->version_minor = p[i] - '0';
	i++;
	if ((rc = line_end(p, n, len, &i)) != 0)
		return rc;

	/* Header fields: name ":" value CRLF, checked and skipped; a blank line ends them. */
	for (;;) {
		if (i == n)
			return need_more(len);
		if (p[i] == '\r' || p[i] == '\n') {
			if ((rc = line_end(p, n, len, &i)) != 0)
				return rc;
			break;
		}
		size_t f0 = i;
		while (i < n && is_tchar(p[i]))
			i++;
		if (i == n)
			return need_more(len);
		/* Also refuses obsolete line folding and whitespace before the colon. */
		if (i == f0 || p[i] != ':')
			return HTTP_PARSE_MALFORMED;
		i++;
		while (i < n && (p[i] == '\t' || (p[i] >= 0x20 && p[i] != 0x7f)))
			i++;
		if ((rc = line_end(p, n, len, &i)) != 0)
			return rc;
	}
	out->head_len = i;
	rc = split_target(buf + t0, t1 - t0, out);
	if (rc != HTTP_PARSE_COMPLETE)
		memset(out, 0, sizeof(*out));
	return rc;
}
