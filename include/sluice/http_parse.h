/*
 * http_parse.h - the request-head parser of the built-in HTTP endpoints
 * (http.h), with no I/O: bytes in, a parsed head or a verdict out, so that
 * it can be tested and fuzzed without sockets.
 */
#pragma once

#include <stddef.h>

#include "sluice/common.h"

/* Largest request head (request line + headers + blank line) accepted; more is 431. */
#define HTTP_MAX_HEAD 8192

/* What http_parse_request() says about the bytes it was given. */
enum http_parse_result {
	HTTP_PARSE_COMPLETE = 0, /* a whole head: out is filled */
	HTTP_PARSE_INCOMPLETE = 1, /* a valid prefix: call again with more bytes */
	HTTP_PARSE_MALFORMED = -1, /* not HTTP/1.x we accept: answer 400 */
	HTTP_PARSE_TOO_LARGE = -2, /* the head exceeds HTTP_MAX_HEAD: answer 431 */
};

/*
 * A parsed request head. Every pointer borrows from the buffer given to
 * http_parse_request() and is valid as long as that buffer is, but one:
 * an absolute-form target without a path ("http://host" or
 * "http://host?x=1") has path pointing at a static "/". The strings are
 * not NUL-terminated. For an absolute-form target
 * ("http://host:port/metrics?x=1") path is the part after the authority.
 */
struct http_request {
	const char *method;
	size_t method_len;
	const char *path; /* up to, not including, '?' or '#'; "/" at least */
	size_t path_len;
	const char *query; /* after '?', possibly empty; NULL when there is no '?' */
	size_t query_len;
	int version_minor; /* HTTP/1.<version_minor>: 0 or 1 */
	size_t head_len; /* bytes of the head, including the blank line */
};

/*
 * Parses the request head at the start of buf[0..len). Reads nothing beyond
 * buf + len. Returns an enum http_parse_result; INCOMPLETE only when the
 * bytes so far can still begin a valid head of at most HTTP_MAX_HEAD bytes,
 * so garbage is reported as soon as it is seen. Header fields are checked
 * for syntax and otherwise skipped. Line ends may be CRLF or a bare LF.
 */
int http_parse_request(const char *buf, size_t len, struct http_request *out) WUR;
