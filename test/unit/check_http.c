/*
 * check_http.c - unit tests of the http module's request parser
 * (http_parse_request): good requests from a table, every prefix of a good
 * request being incomplete, malformed request lines and header fields,
 * heads over HTTP_MAX_HEAD, absolute URIs and query strings, and a
 * fixed-seed fuzz loop.
 *
 * It tests only the I/O-free parser; serving over sockets is the
 * integration suite check_metrics.c. Inputs are copied into heap blocks of
 * exactly their size, so a read past the end is an AddressSanitizer error
 * instead of a silent pass.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/common.h"
#include "sluice/http_parse.h"

/* A heap copy of exactly n bytes, so reading byte n is an ASan error. */
static char *exact_copy(const void *p, size_t n)
{
	char *c = xmalloc(n ? n : 1);
	if (n)
		memcpy(c, p, n);
	return c;
}

static int parse_exact(const char *s, size_t n, struct http_request *r)
{
	char *c = exact_copy(s, n);
	int rc = http_parse_request(c, n, r);
	/* The borrowed pointers must point into the buffer (or at a literal "/"). */
	if (rc == HTTP_PARSE_COMPLETE) {
		ck_assert_ptr_eq(r->method, c);
		ck_assert(r->head_len <= n);
		if (r->query)
			ck_assert(r->query >= c && r->query + r->query_len <= c + n);
	}
	free(c);
	return rc;
}

/* ---- good requests ------------------------------------------------------------- */

struct good_case {
	const char *name;
	const char *text;
	const char *method;
	const char *path;
	const char *query; /* NULL: no '?' */
	int minor;
};

static const struct good_case good_cases[] = {
	{ "get metrics 1.1", "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", "GET", "/metrics", NULL,
	  1 },
	{ "get health 1.0 no headers", "GET /health HTTP/1.0\r\n\r\n", "GET", "/health", NULL, 0 },
	{ "head ready", "HEAD /ready HTTP/1.1\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n", "HEAD",
	  "/ready", NULL, 1 },
	{ "bare LF line ends", "GET /metrics HTTP/1.1\nHost: a\n\n", "GET", "/metrics", NULL, 1 },
	{ "query string", "GET /metrics?x=1 HTTP/1.1\r\n\r\n", "GET", "/metrics", "x=1", 1 },
	{ "empty query", "GET /metrics? HTTP/1.1\r\n\r\n", "GET", "/metrics", "", 1 },
	{ "fragment dropped", "GET /health#frag HTTP/1.1\r\n\r\n", "GET", "/health", NULL, 1 },
	{ "absolute uri", "GET http://127.0.0.1:9127/metrics HTTP/1.1\r\n\r\n", "GET", "/metrics",
	  NULL, 1 },
	{ "absolute uri with query", "GET HTTP://host/ready?a=b&c HTTP/1.1\r\n\r\n", "GET",
	  "/ready", "a=b&c", 1 },
	{ "absolute https no path", "GET https://host HTTP/1.1\r\n\r\n", "GET", "/", NULL, 1 },
	{ "absolute no path but query", "GET http://host?q HTTP/1.1\r\n\r\n", "GET", "/", "q", 1 },
	{ "other method parses", "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "POST",
	  "/metrics", NULL, 1 },
	{ "weird token method", "M-SEARCH * HTTP/1.1\r\n\r\n", "M-SEARCH", "*", NULL, 1 },
	{ "empty header value", "GET / HTTP/1.1\r\nX-Empty:\r\n\r\n", "GET", "/", NULL, 1 },
	{ "header with tab and obs-text", "GET / HTTP/1.1\r\nX: a\tb\xc3\xa9\r\n\r\n", "GET", "/",
	  NULL, 1 },
	{ "percent-encoded path kept", "GET /met%72ics HTTP/1.1\r\n\r\n", "GET", "/met%72ics", NULL,
	  1 },
};

/*
 * The tables are walked inside one test each (not one forked test per row):
 * a forked child per row costs a leak check each under AddressSanitizer.
 */
static void check_good_case(const struct good_case *gc)
{
	struct http_request r;
	size_t n = strlen(gc->text);
	int rc = parse_exact(gc->text, n, &r);
	ck_assert_msg(rc == HTTP_PARSE_COMPLETE, "%s: rc %d", gc->name, rc);
	ck_assert_msg(r.method_len == strlen(gc->method), "%s: method length", gc->name);
	ck_assert_msg(r.path_len == strlen(gc->path), "%s: path length %zu", gc->name, r.path_len);
	ck_assert_msg(r.version_minor == gc->minor, "%s: version", gc->name);
	ck_assert_msg(r.head_len == n, "%s: head_len %zu of %zu", gc->name, r.head_len, n);
	if (gc->query) {
		ck_assert_msg(r.query != NULL, "%s: query missing", gc->name);
		ck_assert_msg(r.query_len == strlen(gc->query), "%s: query length", gc->name);
	} else {
		ck_assert_msg(r.query == NULL, "%s: unexpected query", gc->name);
	}
	/* Compare the contents through a copy that is still alive. */
	char *c = exact_copy(gc->text, n);
	ck_assert_int_eq(http_parse_request(c, n, &r), HTTP_PARSE_COMPLETE);
	ck_assert_msg(memcmp(r.method, gc->method, r.method_len) == 0, "%s: method", gc->name);
	ck_assert_msg(memcmp(r.path, gc->path, r.path_len) == 0, "%s: path '%.*s'", gc->name,
		      (int)r.path_len, r.path);
	if (gc->query)
		ck_assert_msg(memcmp(r.query, gc->query, r.query_len) == 0, "%s: query", gc->name);
	free(c);
}

START_TEST(test_http_parse_good_request_table)
{
	for (size_t k = 0; k < ARRAY_SIZE(good_cases); k++)
		check_good_case(&good_cases[k]);
}
END_TEST

/* Every prefix of a good request is incomplete; the whole is complete. */
START_TEST(test_http_parse_split_at_every_byte_is_incomplete_until_complete)
{
	for (size_t i = 0; i < ARRAY_SIZE(good_cases); i++) {
		const struct good_case *gc = &good_cases[i];
		size_t n = strlen(gc->text);
		struct http_request r;
		for (size_t k = 0; k < n; k++) {
			int rc = parse_exact(gc->text, k, &r);
			ck_assert_msg(rc == HTTP_PARSE_INCOMPLETE,
				      "%s: prefix of %zu bytes gave %d", gc->name, k, rc);
		}
		ck_assert_int_eq(parse_exact(gc->text, n, &r), HTTP_PARSE_COMPLETE);
	}
}
END_TEST

/* Bytes after the head (a body, a pipelined request) are not part of it. */
START_TEST(test_http_parse_head_len_excludes_following_bytes)
{
	const char *s = "GET /health HTTP/1.1\r\n\r\nGET /ready HTTP/1.1\r\n\r\n";
	struct http_request r;
	ck_assert_int_eq(parse_exact(s, strlen(s), &r), HTTP_PARSE_COMPLETE);
	ck_assert_uint_eq(r.head_len, strlen("GET /health HTTP/1.1\r\n\r\n"));
	ck_assert_uint_eq(r.path_len, 7);
}
END_TEST

/* ---- malformed ----------------------------------------------------------------- */

struct bad_case {
	const char *name;
	const char *text;
	size_t len; /* 0: strlen */
};

static const struct bad_case bad_cases[] = {
	{ "empty line first", "\r\nGET / HTTP/1.1\r\n\r\n", 0 },
	{ "space first", " GET / HTTP/1.1\r\n\r\n", 0 },
	{ "lowercase http", "GET / http/1.1\r\n\r\n", 0 },
	{ "http 2", "GET / HTTP/2.0\r\n\r\n", 0 },
	{ "http 1.2", "GET / HTTP/1.2\r\n\r\n", 0 },
	{ "http 0.9 style", "GET /\r\n\r\n", 0 },
	{ "two spaces", "GET  / HTTP/1.1\r\n\r\n", 0 },
	{ "missing version", "GET / \r\n\r\n", 0 },
	{ "trailing junk after version", "GET / HTTP/1.1x\r\n\r\n", 0 },
	{ "CR without LF", "GET / HTTP/1.1\rX\r\n\r\n", 0 },
	{ "tab separator", "GET\t/ HTTP/1.1\r\n\r\n", 0 },
	{ "NUL in method", "GE\0T / HTTP/1.1\r\n\r\n", 19 },
	{ "NUL in target", "GET /\0 HTTP/1.1\r\n\r\n", 19 },
	{ "control in target", "GET /\x01 HTTP/1.1\r\n\r\n", 0 },
	{ "utf-8 in target", "GET /\xc3\xa9 HTTP/1.1\r\n\r\n", 0 },
	{ "method too long", "ABCDEFGHIJKLMNOPQ / HTTP/1.1\r\n\r\n", 0 },
	{ "method with slash", "G/T / HTTP/1.1\r\n\r\n", 0 },
	{ "authority form", "CONNECT host:443 HTTP/1.1\r\n\r\n", 0 },
	{ "relative target", "GET metrics HTTP/1.1\r\n\r\n", 0 },
	{ "absolute without authority", "GET http:///metrics HTTP/1.1\r\n\r\n", 0 },
	{ "header without colon", "GET / HTTP/1.1\r\nHost x\r\n\r\n", 0 },
	{ "header space before colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 0 },
	{ "header empty name", "GET / HTTP/1.1\r\n: x\r\n\r\n", 0 },
	{ "obsolete line folding", "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", 0 },
	{ "control in header value", "GET / HTTP/1.1\r\nA: b\x01\r\n\r\n", 0 },
	{ "DEL in header value", "GET / HTTP/1.1\r\nA: b\x7f\r\n\r\n", 0 },
	{ "binary garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 0 },
	{ "postgres startup", "\0\0\0\x08\x04\xd2\x16\x2f", 8 },
};

START_TEST(test_http_parse_malformed_table)
{
	for (size_t i = 0; i < ARRAY_SIZE(bad_cases); i++) {
		const struct bad_case *bc = &bad_cases[i];
		size_t n = bc->len ? bc->len : strlen(bc->text);
		struct http_request r;
		int rc = parse_exact(bc->text, n, &r);
		ck_assert_msg(rc == HTTP_PARSE_MALFORMED, "%s: rc %d", bc->name, rc);
	}
}
END_TEST

/* Garbage is reported as soon as it is seen, not after waiting for a blank line. */
START_TEST(test_http_parse_garbage_is_malformed_before_line_end)
{
	struct http_request r;
	ck_assert_int_eq(parse_exact("\x16\x03", 2, &r), HTTP_PARSE_MALFORMED);
	ck_assert_int_eq(parse_exact("GET / HTTP/2", 12, &r), HTTP_PARSE_MALFORMED);
	ck_assert_int_eq(parse_exact("GET / HTTP/1.1\r\nBad Header", 26, &r),
			 HTTP_PARSE_MALFORMED);
}
END_TEST

/* ---- size bounds ----------------------------------------------------------------- */

/* A head of exactly `total` bytes: a request line, one long header, the blank line. */
static char *head_of_size(size_t total)
{
	const char *start = "GET /metrics HTTP/1.1\r\nX-Pad: ";
	const char *end = "\r\n\r\n";
	ck_assert(total >= strlen(start) + strlen(end));
	char *s = xmalloc(total + 1);
	size_t pad = total - strlen(start) - strlen(end);
	memcpy(s, start, strlen(start));
	memset(s + strlen(start), 'a', pad);
	memcpy(s + strlen(start) + pad, end, strlen(end));
	s[total] = '\0';
	return s;
}

START_TEST(test_http_parse_head_of_max_size_is_complete)
{
	char *s = head_of_size(HTTP_MAX_HEAD);
	struct http_request r;
	ck_assert_int_eq(parse_exact(s, HTTP_MAX_HEAD, &r), HTTP_PARSE_COMPLETE);
	ck_assert_uint_eq(r.head_len, HTTP_MAX_HEAD);
	ck_assert_int_eq(parse_exact(s, HTTP_MAX_HEAD - 1, &r), HTTP_PARSE_INCOMPLETE);
	free(s);
}
END_TEST

START_TEST(test_http_parse_head_over_max_size_is_too_large)
{
	char *s = head_of_size(HTTP_MAX_HEAD + 1);
	struct http_request r;
	/* Once HTTP_MAX_HEAD bytes are there without an end, it is too large. */
	ck_assert_int_eq(parse_exact(s, HTTP_MAX_HEAD, &r), HTTP_PARSE_TOO_LARGE);
	ck_assert_int_eq(parse_exact(s, HTTP_MAX_HEAD + 1, &r), HTTP_PARSE_TOO_LARGE);
	free(s);
	/* Many small headers count just like one big one. */
	size_t cap = 4 * HTTP_MAX_HEAD;
	char *m = xmalloc(cap);
	size_t len = (size_t)snprintf(m, cap, "GET / HTTP/1.1\r\n");
	while (len + 16 < cap)
		len += (size_t)snprintf(m + len, cap - len, "X-A: 1234567\r\n");
	ck_assert_int_eq(parse_exact(m, len, &r), HTTP_PARSE_TOO_LARGE);
	free(m);
	/* A request line that never ends. */
	char *t = xmalloc(2 * HTTP_MAX_HEAD);
	memcpy(t, "GET /", 5);
	memset(t + 5, 'x', 2 * HTTP_MAX_HEAD - 5);
	ck_assert_int_eq(parse_exact(t, 2 * HTTP_MAX_HEAD, &r), HTTP_PARSE_TOO_LARGE);
	ck_assert_int_eq(parse_exact(t, HTTP_MAX_HEAD - 1, &r), HTTP_PARSE_INCOMPLETE);
	free(t);
}
END_TEST

/* ---- fuzz -------------------------------------------------------------------------- */

/* A small deterministic generator (xorshift64*), so that failures reproduce. */
static uint64_t rng_state;
static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ULL;
}

/*
 * 10,000 inputs from a fixed seed: random bytes, mutated good requests and
 * random splices of request fragments. The parser must return one of its
 * four results, never read past the input (ASan), and report COMPLETE only
 * with a head inside the input.
 */
START_TEST(test_http_parse_fuzz_never_crashes_or_overreads)
{
	static const char *const pieces[] = {
		"GET", "HEAD", "POST", " ", "/", "/metrics", "?x=1", "http://h", "HTTP/1.", "1",
		"0",
		"\r\n", "\n", "\r", "Host", ":", " v", "\t", "\0", "\x80", "#",
	};
	rng_state = 0x5eed5eed12345678ULL;
	size_t cap = HTTP_MAX_HEAD + 512;
	char *work = xmalloc(cap);
	int seen[4] = { 0 };
	for (int iter = 0; iter < 10000; iter++) {
		size_t len = 0;
		switch (iter % 4) {
		case 0: /* random bytes, mostly printable */
			len = rng() % 200;
			for (size_t i = 0; i < len; i++)
				work[i] = (rng() % 4) ? (char)(0x20 + rng() % 95)
						      : (char)(rng() & 0xff);
			break;
		case 1: { /* a good request with a few bytes changed, cut anywhere */
			const struct good_case *gc = &good_cases[rng() % ARRAY_SIZE(good_cases)];
			len = strlen(gc->text);
			memcpy(work, gc->text, len);
			for (int m = (int)(rng() % 4); m > 0; m--)
				work[rng() % len] = (char)(rng() & 0xff);
			len = rng() % (len + 1);
			break;
		}
		case 2: { /* a long header around HTTP_MAX_HEAD, sometimes with an end */
			const char *start = "GET /metrics HTTP/1.1\r\nX: ";
			memcpy(work, start, strlen(start));
			len = HTTP_MAX_HEAD - 64 + rng() % 256;
			for (size_t i = strlen(start); i < len; i++)
				work[i] = (char)('a' + rng() % 26);
			if (rng() % 2)
				memcpy(work + len - 4, "\r\n\r\n", 4);
			break;
		}
		default: /* fragments spliced together, sometimes very long */
			while (len < cap - 16 && (rng() % 40) != 0) {
				const char *p = pieces[rng() % ARRAY_SIZE(pieces)];
				size_t pl = p[0] ? strlen(p) : 1;
				size_t reps = (rng() % 50 == 0) ? 1 + rng() % 600 : 1;
				for (size_t k = 0; k < reps && len + pl < cap; k++) {
					memcpy(work + len, p, pl);
					len += pl;
				}
			}
			break;
		}
		struct http_request r;
		char *c = exact_copy(work, len);
		int rc = http_parse_request(c, len, &r);
		ck_assert_msg(rc == HTTP_PARSE_COMPLETE || rc == HTTP_PARSE_INCOMPLETE ||
				      rc == HTTP_PARSE_MALFORMED || rc == HTTP_PARSE_TOO_LARGE,
			      "iteration %d: rc %d", iter, rc);
		if (rc == HTTP_PARSE_COMPLETE) {
			ck_assert(r.head_len > 0 && r.head_len <= len);
			ck_assert(r.head_len <= HTTP_MAX_HEAD);
			ck_assert(r.method == c && r.method_len > 0);
			ck_assert(r.path_len > 0);
			ck_assert(r.version_minor == 0 || r.version_minor == 1);
		}
		if (rc == HTTP_PARSE_INCOMPLETE)
			ck_assert(len < HTTP_MAX_HEAD);
		seen[rc == HTTP_PARSE_COMPLETE ? 0 : rc == HTTP_PARSE_INCOMPLETE ? 1 :
			rc == HTTP_PARSE_MALFORMED ? 2 : 3]++;
		free(c);
	}
	free(work);
	/* The generator must have exercised every outcome, or the loop proves little. */
	for (int k = 0; k < 4; k++)
		ck_assert_msg(seen[k] > 0, "outcome %d never produced", k);
}
END_TEST

static Suite *http_suite(void)
{
	Suite *s = suite_create("http");
	TCase *tc = tcase_create("parse");
	tcase_add_test(tc, test_http_parse_good_request_table);
	tcase_add_test(tc, test_http_parse_split_at_every_byte_is_incomplete_until_complete);
	tcase_add_test(tc, test_http_parse_head_len_excludes_following_bytes);
	tcase_add_test(tc, test_http_parse_malformed_table);
	tcase_add_test(tc, test_http_parse_garbage_is_malformed_before_line_end);
	suite_add_tcase(s, tc);

	tc = tcase_create("bounds");
	tcase_add_test(tc, test_http_parse_head_of_max_size_is_complete);
	tcase_add_test(tc, test_http_parse_head_over_max_size_is_too_large);
	suite_add_tcase(s, tc);

	tc = tcase_create("fuzz");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_http_parse_fuzz_never_crashes_or_overreads);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(http_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
