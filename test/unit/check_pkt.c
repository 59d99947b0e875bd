/*
 * check_pkt.c - unit tests of the pkt module: incremental framing of a stream
 * split at every byte, malformed and oversized headers, startup-phase packets
 * (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest), the bounds of
 * the body reader, ErrorResponse field parsing, and every builder read back
 * through the parsers.
 *
 * It tests only pkt.c's interface. Inputs that a parser must not read past
 * are copied into heap blocks of exactly their size, so an over-read shows
 * up under AddressSanitizer instead of passing silently. The buf module's
 * own behaviour is tested in check_buf.c.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/buf.h"
#include "sluice/pkt.h"

/* A literal with embedded NULs, as pointer and length (without the final NUL of C). */
#define LIT(s) (const uint8_t *)(s), (sizeof(s) - 1)

/* A heap copy of exactly n bytes, so reading byte n is an ASan error. */
static uint8_t *exact_copy(const void *p, size_t n)
{
	uint8_t *c = xmalloc(n ? n : 1);
	if (n)
		memcpy(c, p, n);
	return c;
}

/* ---- framing a stream split at every byte ---------------------------------- */

#define STREAM_MAX_LEN (1u << 20)
#define BIG_BODY (100u * 1024u)

struct msg_span {
	uint8_t type;
	size_t off; /* offset of the type byte in the stream */
	uint32_t len; /* whole message */
};

/*
 * The stream the split tests frame: messages of different sizes, including
 * two with 0-byte bodies and one 100 KB CopyData. Fills the expected spans.
 */
static void build_stream(struct buf_out *out, struct msg_span *spans, size_t *nspans)
{
	size_t n = 0;
	uint8_t *big = xmalloc(BIG_BODY);
	for (size_t i = 0; i < BIG_BODY; i++)
		big[i] = (uint8_t)(i * 7 + 3);

#define SPAN_BEGIN() size_t before_ = out->len
#define SPAN_END(t)                                                                                \
	do {                                                                                       \
		spans[n].type = (t);                                                               \
		spans[n].off = before_;                                                            \
		spans[n].len = (uint32_t)(out->len - before_);                                     \
		n++;                                                                               \
	} while (0)
	{
		SPAN_BEGIN();
		pkt_put_Query(out, "SELECT 1");
		SPAN_END(PKT_Query);
	}
	{
		SPAN_BEGIN();
		pkt_put_Terminate(out); /* 0-byte body */
		SPAN_END(PKT_Terminate);
	}
	{
		SPAN_BEGIN();
		size_t m = pkt_begin(out, PKT_CopyData);
		buf_out_put(out, big, BIG_BODY);
		pkt_end(out, m);
		SPAN_END(PKT_CopyData);
	}
	{
		SPAN_BEGIN();
		pkt_put_ReadyForQuery(out, 'I');
		SPAN_END(PKT_ReadyForQuery);
	}
	{
		SPAN_BEGIN();
		size_t m = pkt_begin(out, PKT_Sync); /* 0-byte body */
		pkt_end(out, m);
		SPAN_END(PKT_Sync);
	}
	{
		SPAN_BEGIN();
		pkt_put_ParameterStatus(out, "application_name", "check_pkt");
		SPAN_END(PKT_ParameterStatus);
	}
	{
		SPAN_BEGIN();
		pkt_put_BackendKeyData(out, 1234, 0xdeadbeef);
		SPAN_END(PKT_BackendKeyData);
	}
#undef SPAN_BEGIN
#undef SPAN_END
	free(big);
	*nspans = n;
}

/*
 * The caller-side loop: frames what it can from stream[pos..avail), checks
 * each verdict against the expected spans and counts the messages it found.
 * Stops at the first message that is not whole yet. It returns what went
 * wrong, or NULL; plain comparisons keep Check's per-assertion bookkeeping
 * out of a loop that runs a million times.
 */
static const char *consume(const uint8_t *stream, size_t avail, size_t *pos,
			   const struct msg_span *spans, size_t nspans, size_t *found)
{
	for (;;) {
		struct pkt_hdr h = { 0, 0 };
		size_t have = avail - *pos;
		int rc = pkt_frame(stream + *pos, have, STREAM_MAX_LEN, &h);
		if (have < PKT_HDR_LEN)
			return rc == PKT_INCOMPLETE ? NULL : "short header not INCOMPLETE";
		if (rc != PKT_OK)
			return "whole header not OK";
		if (*found >= nspans)
			return "more messages than were sent";
		const struct msg_span *want = &spans[*found];
		if (*pos != want->off)
			return "message boundary moved";
		if (h.type != want->type)
			return "wrong type";
		if (h.len != want->len)
			return "wrong length";
		if (h.len > have)
			return NULL;
		(*found)++;
		*pos += h.len;
	}
}

START_TEST(test_pkt_frame_split_at_every_byte)
{
	struct buf_out out;
	struct msg_span spans[16];
	size_t nspans;
	buf_out_init(&out);
	build_stream(&out, spans, &nspans);

	for (size_t split = 0; split <= out.len; split++) {
		size_t pos = 0, found = 0;
		/* First the prefix, as one read would deliver it... */
		const char *err = consume(out.data, split, &pos, spans, nspans, &found);
		if (err)
			ck_abort_msg("split at %zu, first part: %s", split, err);
		/* ...it holds exactly the messages that end inside it... */
		size_t whole = 0;
		while (whole < nspans && spans[whole].off + spans[whole].len <= split)
			whole++;
		if (found != whole)
			ck_abort_msg("split at %zu: %zu messages, want %zu", split, found, whole);
		/* ...then the rest, after which every boundary has been seen. */
		err = consume(out.data, out.len, &pos, spans, nspans, &found);
		if (err)
			ck_abort_msg("split at %zu, second part: %s", split, err);
		if (found != nspans || pos != out.len)
			ck_abort_msg("split at %zu: stream not consumed exactly", split);
	}
	ck_assert_uint_eq(nspans, 7);
	buf_out_deinit(&out);
}
END_TEST

/* Every header prefix shorter than 5 bytes, in an exact-size block, is INCOMPLETE. */
START_TEST(test_pkt_frame_short_header_is_incomplete)
{
	static const uint8_t hdr[] = { 'Q', 0, 0, 0, 9, 'S', 'E', 'L', 'E' };
	for (size_t n = 0; n < PKT_HDR_LEN; n++) {
		uint8_t *c = exact_copy(hdr, n);
		struct pkt_hdr h = { 0, 0 };
		ck_assert_int_eq(pkt_frame(c, n, 1000, &h), PKT_INCOMPLETE);
		free(c);
	}
	uint8_t *c = exact_copy(hdr, PKT_HDR_LEN);
	struct pkt_hdr h = { 0, 0 };
	ck_assert_int_eq(pkt_frame(c, PKT_HDR_LEN, 1000, &h), PKT_OK);
	ck_assert_uint_eq(h.type, 'Q');
	ck_assert_uint_eq(h.len, 10);
	free(c);
}
END_TEST

/* ---- malformed and oversized headers ------------------------------------- */

struct frame_case {
	const char *name;
	uint32_t len_field; /* the Int32 after the type byte */
	uint32_t max_len;
	int expect;
	uint32_t whole; /* h.len when PKT_OK */
};

static const struct frame_case frame_cases[] = {
	{ "length 0", 0, 1000, PKT_MALFORMED, 0 },
	{ "length 3", 3, 1000, PKT_MALFORMED, 0 },
	{ "length 3 with max_len 0", 3, 0, PKT_MALFORMED, 0 },
	{ "length 4 (empty body)", 4, 1000, PKT_OK, 5 },
	{ "whole message exactly max_len", 999, 1000, PKT_OK, 1000 },
	{ "whole message max_len + 1", 1000, 1000, PKT_TOO_LARGE, 0 },
	{ "whole message far above max_len", 0x7fffffff, 1000, PKT_TOO_LARGE, 0 },
	{ "length 0xFFFFFFFF", 0xffffffff, 1000, PKT_TOO_LARGE, 0 },
	{ "length 0xFFFFFFFF with max_len 0xFFFFFFFF", 0xffffffff, 0xffffffff, PKT_TOO_LARGE, 0 },
	{ "length 0xFFFFFFFE with max_len 0xFFFFFFFF", 0xfffffffe, 0xffffffff, PKT_OK, 0xffffffff },
	{ "empty body with max_len 5", 4, 5, PKT_OK, 5 },
	{ "empty body with max_len 4", 4, 4, PKT_TOO_LARGE, 0 },
	{ "empty body with max_len 0", 4, 0, PKT_TOO_LARGE, 0 },
};

START_TEST(test_pkt_frame_rejects_bad_lengths)
{
	const struct frame_case *fc = &frame_cases[_i];
	uint8_t hdr[PKT_HDR_LEN] = { 'D' };
	put_be32(hdr + 1, fc->len_field);
	uint8_t *c = exact_copy(hdr, sizeof(hdr));
	struct pkt_hdr h = { 0, 0 };
	int rc = pkt_frame(c, sizeof(hdr), fc->max_len, &h);
	ck_assert_msg(rc == fc->expect, "%s: got %d, want %d", fc->name, rc, fc->expect);
	if (fc->expect == PKT_OK) {
		ck_assert_uint_eq(h.type, 'D');
		ck_assert_msg(h.len == fc->whole, "%s: len %u", fc->name, h.len);
	}
	free(c);
}
END_TEST

/* ---- startup packets ------------------------------------------------------ */

struct startup_frame_case {
	const char *name;
	size_t avail;
	uint32_t len_field;
	int expect;
};

static const struct startup_frame_case startup_frame_cases[] = {
	{ "nothing", 0, 0, PKT_INCOMPLETE },
	{ "3 bytes", 3, 8, PKT_INCOMPLETE },
	{ "length 0", 4, 0, PKT_MALFORMED },
	{ "length 7", 4, 7, PKT_MALFORMED },
	{ "length 8", 4, 8, PKT_OK },
	{ "length 8 with body present", 8, 8, PKT_OK },
	{ "length exactly PKT_STARTUP_MAX", 4, PKT_STARTUP_MAX, PKT_OK },
	{ "length PKT_STARTUP_MAX + 1", 4, PKT_STARTUP_MAX + 1, PKT_MALFORMED },
	{ "length 0xFFFFFFFF", 4, 0xffffffff, PKT_MALFORMED },
};

START_TEST(test_pkt_frame_startup_checks_length)
{
	const struct startup_frame_case *fc = &startup_frame_cases[_i];
	uint8_t p[8] = { 0 };
	put_be32(p, fc->len_field);
	put_be32(p + 4, PKT_PROTOCOL_3_0);
	uint8_t *c = exact_copy(p, fc->avail);
	uint32_t len = 0;
	int rc = pkt_frame_startup(c, fc->avail, &len);
	ck_assert_msg(rc == fc->expect, "%s: got %d, want %d", fc->name, rc, fc->expect);
	if (rc == PKT_OK)
		ck_assert_uint_eq(len, fc->len_field);
	free(c);
}
END_TEST

struct startup_case {
	const char *name;
	uint32_t code;
	const uint8_t *body; /* after the length word and the code */
	size_t body_len;
	int len_delta; /* added to the length word only, to make it lie */
	int expect;
	int nparams;
	const char *key0, *val0, *key1, *val1;
	uint32_t pid, key; /* CancelRequest */
};

/* clang-format off */
static const struct startup_case startup_cases[] = {
	{ "StartupMessage with two params", PKT_PROTOCOL_3_0,
	  LIT("user\0alice\0database\0db1\0\0"), 0, PKT_OK, 2, "user", "alice", "database", "db1", 0, 0 },
	{ "StartupMessage with empty value", PKT_PROTOCOL_3_0,
	  LIT("user\0alice\0options\0\0\0"), 0, PKT_OK, 2, "user", "alice", "options", "", 0, 0 },
	{ "StartupMessage with no params", PKT_PROTOCOL_3_0, LIT("\0"), 0, PKT_OK, 0,
	  NULL, NULL, NULL, NULL, 0, 0 },
	{ "StartupMessage with nothing after the code", PKT_PROTOCOL_3_0, LIT(""), 0, PKT_MALFORMED,
	  0, NULL, NULL, NULL, NULL, 0, 0 },
	{ "missing final NUL", PKT_PROTOCOL_3_0, LIT("user\0alice\0"), 0, PKT_MALFORMED, 0,
	  NULL, NULL, NULL, NULL, 0, 0 },
	{ "key without value at end", PKT_PROTOCOL_3_0, LIT("user\0"), 0, PKT_MALFORMED, 0,
	  NULL, NULL, NULL, NULL, 0, 0 },
	{ "second key without value", PKT_PROTOCOL_3_0, LIT("user\0alice\0database\0"), 0,
	  PKT_MALFORMED, 0, NULL, NULL, NULL, NULL, 0, 0 },
	{ "unterminated key", PKT_PROTOCOL_3_0, LIT("user"), 0, PKT_MALFORMED, 0,
	  NULL, NULL, NULL, NULL, 0, 0 },
	{ "unterminated value", PKT_PROTOCOL_3_0, LIT("user\0alice"), 0, PKT_MALFORMED, 0,
	  NULL, NULL, NULL, NULL, 0, 0 },
	{ "bytes after the final NUL", PKT_PROTOCOL_3_0, LIT("user\0alice\0\0junk"), 0,
	  PKT_MALFORMED, 0, NULL, NULL, NULL, NULL, 0, 0 },
	{ "length word one too long", PKT_PROTOCOL_3_0, LIT("user\0alice\0\0"), 1, PKT_MALFORMED,
	  0, NULL, NULL, NULL, NULL, 0, 0 },
	{ "length word one too short", PKT_PROTOCOL_3_0, LIT("user\0alice\0\0"), -1,
	  PKT_MALFORMED, 0, NULL, NULL, NULL, NULL, 0, 0 },
	{ "SSLRequest", PKT_SSL_REQUEST_CODE, LIT(""), 0, PKT_OK, 0, NULL, NULL, NULL, NULL, 0, 0 },
	{ "SSLRequest with extra bytes", PKT_SSL_REQUEST_CODE, LIT("\0\0\0\0"), 0, PKT_MALFORMED,
	  0, NULL, NULL, NULL, NULL, 0, 0 },
	{ "GSSENCRequest", PKT_GSSENC_REQUEST_CODE, LIT(""), 0, PKT_OK, 0,
	  NULL, NULL, NULL, NULL, 0, 0 },
	{ "GSSENCRequest with extra byte", PKT_GSSENC_REQUEST_CODE, LIT("\0"), 0, PKT_MALFORMED,
	  0, NULL, NULL, NULL, NULL, 0, 0 },
	{ "CancelRequest", PKT_CANCEL_REQUEST_CODE, LIT("\x00\x00\x30\x39\xde\xad\xbe\xef"), 0,
	  PKT_OK, 0, NULL, NULL, NULL, NULL, 12345, 0xdeadbeef },
	{ "CancelRequest of 12 bytes", PKT_CANCEL_REQUEST_CODE, LIT("\x00\x00\x30\x39"), 0,
	  PKT_MALFORMED, 0, NULL, NULL, NULL, NULL, 0, 0 },
	{ "CancelRequest of 20 bytes", PKT_CANCEL_REQUEST_CODE,
	  LIT("\x00\x00\x30\x39\xde\xad\xbe\xef\x00\x00\x00\x00"), 0, PKT_MALFORMED, 0,
	  NULL, NULL, NULL, NULL, 0, 0 },
	{ "CancelRequest with lying length word", PKT_CANCEL_REQUEST_CODE,
	  LIT("\x00\x00\x30\x39\xde\xad\xbe\xef"), 4, PKT_MALFORMED, 0,
	  NULL, NULL, NULL, NULL, 0, 0 },
};
/* clang-format on */

START_TEST(test_pkt_parse_startup_table)
{
	const struct startup_case *sc = &startup_cases[_i];
	size_t len = 8 + sc->body_len;
	uint8_t *p = xmalloc(len);
	put_be32(p, (uint32_t)((int)len + sc->len_delta));
	put_be32(p + 4, sc->code);
	if (sc->body_len)
		memcpy(p + 8, sc->body, sc->body_len);

	struct pkt_startup st;
	int rc = pkt_parse_startup(p, (uint32_t)len, &st);
	ck_assert_msg(rc == sc->expect, "%s: got %d, want %d", sc->name, rc, sc->expect);
	if (rc == PKT_OK) {
		ck_assert_uint_eq(st.code, sc->code);
		ck_assert_int_eq(st.nparams, sc->nparams);
		if (sc->key0) {
			ck_assert_str_eq(st.keys[0], sc->key0);
			ck_assert_str_eq(st.vals[0], sc->val0);
			ck_assert_str_eq(pkt_startup_get(&st, sc->key0), sc->val0);
		}
		if (sc->key1) {
			ck_assert_str_eq(st.keys[1], sc->key1);
			ck_assert_str_eq(st.vals[1], sc->val1);
			ck_assert_str_eq(pkt_startup_get(&st, sc->key1), sc->val1);
		}
		ck_assert_ptr_null(pkt_startup_get(&st, "no_such_key"));
		if (sc->code == PKT_CANCEL_REQUEST_CODE) {
			ck_assert_uint_eq(st.cancel_pid, sc->pid);
			ck_assert_uint_eq(st.cancel_key, sc->key);
		}
	}
	free(p);
}
END_TEST

/* A StartupMessage with n parameters k0=v0, k1=v1, ... built by hand. */
static void build_startup_with_params(struct buf_out *out, int n)
{
	buf_out_put_be32(out, 0);
	buf_out_put_be32(out, PKT_PROTOCOL_3_0);
	for (int i = 0; i < n; i++) {
		char k[16], v[16];
		snprintf(k, sizeof(k), "k%d", i);
		snprintf(v, sizeof(v), "v%d", i);
		buf_out_put_cstr(out, k);
		buf_out_put_cstr(out, v);
	}
	buf_out_put_u8(out, 0);
	put_be32(out->data, (uint32_t)out->len);
}

START_TEST(test_pkt_parse_startup_accepts_max_params_rejects_one_more)
{
	static const struct {
		int n;
		int expect;
	} cases[] = {
		{ PKT_STARTUP_MAX_PARAMS - 1, PKT_OK },
		{ PKT_STARTUP_MAX_PARAMS, PKT_OK },
		{ PKT_STARTUP_MAX_PARAMS + 1, PKT_MALFORMED },
		{ PKT_STARTUP_MAX_PARAMS * 3, PKT_MALFORMED },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct buf_out out;
		buf_out_init(&out);
		build_startup_with_params(&out, cases[i].n);
		uint8_t *p = exact_copy(out.data, out.len);
		struct pkt_startup st;
		int rc = pkt_parse_startup(p, (uint32_t)out.len, &st);
		ck_assert_msg(rc == cases[i].expect, "%d params: got %d", cases[i].n, rc);
		if (rc == PKT_OK) {
			ck_assert_int_eq(st.nparams, cases[i].n);
			ck_assert_str_eq(pkt_startup_get(&st, "k0"), "v0");
			char k[16], v[16];
			snprintf(k, sizeof(k), "k%d", cases[i].n - 1);
			snprintf(v, sizeof(v), "v%d", cases[i].n - 1);
			ck_assert_str_eq(pkt_startup_get(&st, k), v);
		}
		free(p);
		buf_out_deinit(&out);
	}
}
END_TEST

START_TEST(test_pkt_parse_startup_rejects_length_below_8)
{
	static const uint8_t p[8] = { 0, 0, 0, 4, 0, 3, 0, 0 };
	for (uint32_t len = 0; len < 8; len++) {
		uint8_t *c = exact_copy(p, len);
		struct pkt_startup st;
		ck_assert_int_eq(pkt_parse_startup(c, len, &st), PKT_MALFORMED);
		free(c);
	}
}
END_TEST

START_TEST(test_pkt_startup_get_takes_the_last_of_a_repeated_key)
{
	static const uint8_t p[] = "\0\0\0\0\0\3\0\0user\0first\0database\0app\0user\0last\0";
	uint8_t *c = exact_copy(p, sizeof(p));
	c[3] = (uint8_t)sizeof(p);
	struct pkt_startup st;
	ck_assert_int_eq(pkt_parse_startup(c, sizeof(p), &st), PKT_OK);
	ck_assert_str_eq(pkt_startup_get(&st, "user"), "last");
	ck_assert_str_eq(pkt_startup_get(&st, "database"), "app");
	ck_assert_ptr_null(pkt_startup_get(&st, "options"));
	free(c);
}
END_TEST

/* ---- startup "options" ----------------------------------------------------- */

struct options_case {
	const char *in;
	int rc;
	const char *want; /* "name=value;name=value;" on PKT_OK, a part of err otherwise */
};

static const struct options_case options_cases[] = {
	{ "", PKT_OK, "" },
	{ "   ", PKT_OK, "" },
	{ "-c DateStyle=ISO", PKT_OK, "DateStyle=ISO;" },
	{ "-cDateStyle=ISO", PKT_OK, "DateStyle=ISO;" },
	{ "--DateStyle=ISO", PKT_OK, "DateStyle=ISO;" },
	{ "-c  a=1\t--b=2   -cc=3", PKT_OK, "a=1;b=2;c=3;" },
	{ "-c statement-timeout=5", PKT_OK, "statement_timeout=5;" },
	{ "-c a=", PKT_OK, "a=;" },
	{ "-c a=b=c", PKT_OK, "a=b=c;" },
	/* pg_split_opts: a backslash takes the next character, spaces included. */
	{ "-c datestyle=German,\\ YMD", PKT_OK, "datestyle=German, YMD;" },
	{ "-c t\\imezone=\\P\\o\\rtugal", PKT_OK, "timezone=Portugal;" },
	{ "-c dat\\estyle\\=\\Ge\\rman", PKT_OK, "datestyle=German;" },
	{ "-c a=x\\\\y", PKT_OK, "a=x\\y;" },
	{ "-c a=x\\", PKT_OK, "a=x\\;" },
	/* The bare "-c" at the end that once left the caller's buffer unwritten. */
	{ "-c", PKT_MALFORMED, "requires a value" },
	{ "-c a=1 -c", PKT_MALFORMED, "requires a value" },
	{ "-c timezone", PKT_MALFORMED, "name=value" },
	{ "-c =1", PKT_MALFORMED, "name=value" },
	{ "-d", PKT_MALFORMED, "unsupported switch" },
	{ "-B 100", PKT_MALFORMED, "unsupported switch" },
	{ "a=1", PKT_MALFORMED, "unsupported switch" },
};

START_TEST(test_pkt_parse_options_table)
{
	const struct options_case *tc = &options_cases[_i];
	struct pkt_options o;
	char err[128];
	memset(err, 'X', sizeof(err));
	int rc = pkt_parse_options(tc->in, &o, err, sizeof(err));
	ck_assert_msg(rc == tc->rc, "%s: rc %d", tc->in, rc);
	ck_assert_msg(memchr(err, '\0', sizeof(err)) != NULL, "%s: err not terminated", tc->in);
	if (rc == PKT_OK) {
		ck_assert_str_eq(err, "");
		char got[256] = "";
		for (int i = 0; i < o.n; i++)
			snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s=%s;", o.names[i],
				 o.values[i]);
		ck_assert_str_eq(got, tc->want);
	} else {
		ck_assert_int_eq(o.n, 0);
		ck_assert_msg(strstr(err, tc->want) != NULL, "%s: err \"%s\"", tc->in, err);
	}
	pkt_options_free(&o);
}
END_TEST

START_TEST(test_pkt_parse_options_with_tiny_err_buffer_still_terminates)
{
	struct pkt_options o;
	char err[4] = { 'X', 'X', 'X', 'X' };
	ck_assert_int_eq(pkt_parse_options("-c", &o, err, sizeof(err)), PKT_MALFORMED);
	ck_assert_int_eq(err[3], '\0');
	pkt_options_free(&o);
}
END_TEST

/* ---- startup "replication" --------------------------------------------------- */

struct replication_case {
	const char *in;
	int rc;
	enum pkt_replication want;
};

/* PostgreSQL's ProcessStartupPacket(): "database", or what parse_bool() takes. */
static const struct replication_case replication_cases[] = {
	{ "database", PKT_OK, PKT_REPLICATION_LOGICAL },
	{ "true", PKT_OK, PKT_REPLICATION_PHYSICAL },
	{ "TRUE", PKT_OK, PKT_REPLICATION_PHYSICAL },
	{ "t", PKT_OK, PKT_REPLICATION_PHYSICAL },
	{ "yes", PKT_OK, PKT_REPLICATION_PHYSICAL },
	{ "Y", PKT_OK, PKT_REPLICATION_PHYSICAL },
	{ "on", PKT_OK, PKT_REPLICATION_PHYSICAL },
	{ "1", PKT_OK, PKT_REPLICATION_PHYSICAL },
	{ "false", PKT_OK, PKT_REPLICATION_NONE },
	{ "fal", PKT_OK, PKT_REPLICATION_NONE },
	{ "no", PKT_OK, PKT_REPLICATION_NONE },
	{ "off", PKT_OK, PKT_REPLICATION_NONE },
	{ "OF", PKT_OK, PKT_REPLICATION_NONE },
	{ "0", PKT_OK, PKT_REPLICATION_NONE },
	/* "database" is matched exactly, as PostgreSQL matches it. */
	{ "Database", PKT_MALFORMED, PKT_REPLICATION_NONE },
	{ "databases", PKT_MALFORMED, PKT_REPLICATION_NONE },
	{ "o", PKT_MALFORMED, PKT_REPLICATION_NONE },
	{ "truex", PKT_MALFORMED, PKT_REPLICATION_NONE },
	{ "offf", PKT_MALFORMED, PKT_REPLICATION_NONE },
	{ "01", PKT_MALFORMED, PKT_REPLICATION_NONE },
	{ "", PKT_MALFORMED, PKT_REPLICATION_NONE },
	{ "physical", PKT_MALFORMED, PKT_REPLICATION_NONE },
};

START_TEST(test_pkt_parse_replication_table)
{
	const struct replication_case *tc = &replication_cases[_i];
	enum pkt_replication r = (enum pkt_replication)99;
	int rc = pkt_parse_replication(tc->in, &r);
	ck_assert_msg(rc == tc->rc, "\"%s\": rc %d", tc->in, rc);
	if (rc == PKT_OK)
		ck_assert_msg(r == tc->want, "\"%s\": %d", tc->in, (int)r);
	else
		ck_assert_msg(r == (enum pkt_replication)99, "\"%s\": out written", tc->in);
}
END_TEST

START_TEST(test_pkt_replication_names_match_pgbouncer_and_postgresql)
{
	ck_assert_str_eq(pkt_replication_name(PKT_REPLICATION_NONE), "none");
	ck_assert_str_eq(pkt_replication_name(PKT_REPLICATION_LOGICAL), "logical");
	ck_assert_str_eq(pkt_replication_name(PKT_REPLICATION_PHYSICAL), "physical");
	ck_assert_ptr_null(pkt_replication_startup_value(PKT_REPLICATION_NONE));
	ck_assert_str_eq(pkt_replication_startup_value(PKT_REPLICATION_LOGICAL), "database");
	ck_assert_str_eq(pkt_replication_startup_value(PKT_REPLICATION_PHYSICAL), "true");
}
END_TEST

/* ---- the body reader ------------------------------------------------------ */

enum getter { G_U8, G_BE16, G_BE32, G_CSTR, G_BYTES3 };

struct reader_case {
	const char *name;
	enum getter g;
	const uint8_t *body;
	size_t len;
};

static const struct reader_case reader_cases[] = {
	{ "u8 on empty body", G_U8, LIT("") },
	{ "be16 on 1 byte", G_BE16, LIT("\x01") },
	{ "be16 on empty body", G_BE16, LIT("") },
	{ "be32 on 3 bytes", G_BE32, LIT("\x01\x02\x03") },
	{ "be32 on empty body", G_BE32, LIT("") },
	{ "cstr without NUL", G_CSTR, LIT("abc") },
	{ "cstr on empty body", G_CSTR, LIT("") },
	{ "3 bytes from 2", G_BYTES3, LIT("ab") },
	{ "3 bytes from empty body", G_BYTES3, LIT("") },
};

/* Runs one getter; returns whether it returned the failure value (0 or NULL). */
static bool run_getter(struct pkt_reader *r, enum getter g)
{
	switch (g) {
	case G_U8: return pkt_get_u8(r) == 0;
	case G_BE16: return pkt_get_be16(r) == 0;
	case G_BE32: return pkt_get_be32(r) == 0;
	case G_CSTR: return pkt_get_cstr(r) == NULL;
	case G_BYTES3: return pkt_get_bytes(r, 3) == NULL;
	}
	return false;
}

START_TEST(test_pkt_reader_getter_past_end_sets_bad)
{
	const struct reader_case *rc = &reader_cases[_i];
	uint8_t *c = exact_copy(rc->body, rc->len);
	struct pkt_reader r;
	pkt_reader_init(&r, c, rc->len);
	ck_assert_msg(run_getter(&r, rc->g), "%s: returned a value", rc->name);
	ck_assert_msg(r.bad, "%s: bad not set", rc->name);
	ck_assert_uint_le(r.pos, r.len);
	free(c);
}
END_TEST

START_TEST(test_pkt_reader_reads_fields_in_order_then_fails_at_end)
{
	static const uint8_t body[] = { 0x7f, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef,
					'h',  'i',  0,    'x',  'y',  'z' };
	uint8_t *c = exact_copy(body, sizeof(body));
	struct pkt_reader r;
	pkt_reader_init(&r, c, sizeof(body));
	ck_assert_uint_eq(pkt_get_u8(&r), 0x7f);
	ck_assert_uint_eq(pkt_get_be16(&r), 0x1234);
	ck_assert_uint_eq(pkt_get_be32(&r), 0xdeadbeef);
	ck_assert_str_eq(pkt_get_cstr(&r), "hi");
	ck_assert_uint_eq(pkt_remaining(&r), 3);
	const uint8_t *b = pkt_get_bytes(&r, 3);
	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(memcmp(b, "xyz", 3), 0);
	ck_assert(!r.bad);
	ck_assert_uint_eq(pkt_remaining(&r), 0);
	/* Zero bytes at the end are not fewer than remain. */
	ck_assert_ptr_nonnull(pkt_get_bytes(&r, 0));
	ck_assert(!r.bad);
	/* Every getter past the end fails and the reader stays put. */
	for (int g = G_U8; g <= G_BYTES3; g++) {
		ck_assert(run_getter(&r, (enum getter)g));
		ck_assert(r.bad);
		ck_assert_uint_eq(r.pos, sizeof(body));
	}
	free(c);
}
END_TEST

START_TEST(test_pkt_reader_bad_is_sticky)
{
	/* After one overrun, even a read that would fit fails. */
	static const uint8_t body[] = { 1, 2, 3, 4, 'a', 0 };
	struct pkt_reader r;
	pkt_reader_init(&r, body, sizeof(body));
	ck_assert_ptr_null(pkt_get_bytes(&r, sizeof(body) + 1));
	ck_assert(r.bad);
	ck_assert_uint_eq(pkt_get_u8(&r), 0);
	ck_assert_uint_eq(pkt_get_be16(&r), 0);
	ck_assert_uint_eq(pkt_get_be32(&r), 0);
	ck_assert_ptr_null(pkt_get_cstr(&r));
	ck_assert_ptr_null(pkt_get_bytes(&r, 1));
	ck_assert(r.bad);
}
END_TEST

/* ---- ErrorResponse fields ------------------------------------------------- */

struct error_case {
	const char *name;
	const uint8_t *body;
	size_t len;
	int expect;
	const char *severity, *sqlstate, *message, *detail;
};

/* clang-format off */
static const struct error_case error_cases[] = {
	{ "all fields", LIT("SERROR\0VERROR\0C42P01\0Mrelation \"t\" does not exist\0Dmore\0\0"),
	  PKT_OK, "ERROR", "42P01", "relation \"t\" does not exist", "more" },
	{ "localized S only", LIT("SFEHLER\0C28P01\0MPasswort falsch\0\0"),
	  PKT_OK, "FEHLER", "28P01", "Passwort falsch", NULL },
	{ "V preferred over S", LIT("SFEHLER\0VFATAL\0C57P01\0Mbye\0\0"),
	  PKT_OK, "FATAL", "57P01", "bye", NULL },
	{ "V before S", LIT("VFATAL\0SFEHLER\0C57P01\0Mbye\0\0"),
	  PKT_OK, "FATAL", "57P01", "bye", NULL },
	{ "missing C leaves sqlstate NULL", LIT("SERROR\0Mno code here\0\0"),
	  PKT_OK, "ERROR", NULL, "no code here", NULL },
	{ "unknown fields are skipped", LIT("SWARNING\0Hhint\0P12\0C01000\0Mw\0\0"),
	  PKT_OK, "WARNING", "01000", "w", NULL },
	{ "no fields at all", LIT("\0"), PKT_OK, NULL, NULL, NULL, NULL },
	{ "empty body", LIT(""), PKT_MALFORMED, NULL, NULL, NULL, NULL },
	{ "field code without value", LIT("S"), PKT_MALFORMED, NULL, NULL, NULL, NULL },
	{ "unterminated field", LIT("SERROR"), PKT_MALFORMED, NULL, NULL, NULL, NULL },
	{ "unterminated last field", LIT("SERROR\0C42P01\0Mhalf"), PKT_MALFORMED,
	  NULL, NULL, NULL, NULL },
	{ "missing final terminator", LIT("SERROR\0C42P01\0"), PKT_MALFORMED,
	  NULL, NULL, NULL, NULL },
};
/* clang-format on */

static void assert_str_or_null(const char *name, const char *field, const char *got,
			       const char *want)
{
	if (!want)
		ck_assert_msg(got == NULL, "%s: %s is \"%s\", want NULL", name, field, got);
	else
		ck_assert_msg(got && strcmp(got, want) == 0, "%s: %s is \"%s\", want \"%s\"", name,
			      field, got ? got : "(null)", want);
}

START_TEST(test_pkt_parse_error_table)
{
	const struct error_case *ec = &error_cases[_i];
	uint8_t *c = exact_copy(ec->body, ec->len);
	struct pkt_error e;
	int rc = pkt_parse_error(c, ec->len, &e);
	ck_assert_msg(rc == ec->expect, "%s: got %d, want %d", ec->name, rc, ec->expect);
	if (rc == PKT_OK) {
		assert_str_or_null(ec->name, "severity", e.severity, ec->severity);
		assert_str_or_null(ec->name, "sqlstate", e.sqlstate, ec->sqlstate);
		assert_str_or_null(ec->name, "message", e.message, ec->message);
		assert_str_or_null(ec->name, "detail", e.detail, ec->detail);
	}
	free(c);
}
END_TEST

/* ---- builders, read back through the parsers ------------------------------ */

/*
 * Frames the message at out->data + off, which must be whole and end exactly
 * at out->len; returns its body through a reader.
 */
static uint8_t frame_last(const struct buf_out *out, size_t off, struct pkt_reader *r)
{
	struct pkt_hdr h;
	ck_assert_int_eq(pkt_frame(out->data + off, out->len - off, 1u << 20, &h), PKT_OK);
	ck_assert_uint_eq(h.len, out->len - off);
	pkt_reader_init(r, out->data + off + PKT_HDR_LEN, h.len - PKT_HDR_LEN);
	return h.type;
}

START_TEST(test_pkt_parse_notification_takes_exactly_pid_channel_payload)
{
	static const uint8_t ok[] = { 0, 0, 0x30, 0x39, 'c', 'h', 0, 'h', 'i', 0 };
	struct pkt_notification n;
	ck_assert_int_eq(pkt_parse_notification(ok, sizeof(ok), &n), PKT_OK);
	ck_assert_uint_eq(n.pid, 12345);
	ck_assert_str_eq(n.channel, "ch");
	ck_assert_str_eq(n.payload, "hi");
	/* An empty payload is one; a missing one, a short pid or bytes after it are not. */
	static const uint8_t empty[] = { 0, 0, 0, 1, 'c', 0, 0 };
	ck_assert_int_eq(pkt_parse_notification(empty, sizeof(empty), &n), PKT_OK);
	ck_assert_str_eq(n.payload, "");
	ck_assert_int_eq(pkt_parse_notification(ok, sizeof(ok) - 1, &n), PKT_MALFORMED);
	ck_assert_int_eq(pkt_parse_notification(ok, 7, &n), PKT_MALFORMED);
	ck_assert_int_eq(pkt_parse_notification(ok, 3, &n), PKT_MALFORMED);
	static const uint8_t trailing[] = { 0, 0, 0, 1, 'c', 0, 'p', 0, 'x' };
	ck_assert_int_eq(pkt_parse_notification(trailing, sizeof(trailing), &n), PKT_MALFORMED);
}
END_TEST

START_TEST(test_pkt_put_ErrorResponse_round_trips)
{
	struct buf_out out;
	buf_out_init(&out);
	buf_out_put(&out, "junk", 4); /* builders append; pkt_end patches at an offset */
	pkt_put_ErrorResponse(&out, "FATAL", "53300", "too many clients");
	struct pkt_reader r;
	ck_assert_uint_eq(frame_last(&out, 4, &r), PKT_ErrorResponse);
	struct pkt_error e;
	ck_assert_int_eq(pkt_parse_error(r.p, r.len, &e), PKT_OK);
	ck_assert_str_eq(e.severity, "FATAL");
	ck_assert_str_eq(e.sqlstate, "53300");
	ck_assert_str_eq(e.message, "too many clients");
	ck_assert_ptr_null(e.detail);
	/* Both S and V are sent, S first, as PostgreSQL 9.6+ does. */
	ck_assert_uint_eq(pkt_get_u8(&r), 'S');
	ck_assert_str_eq(pkt_get_cstr(&r), "FATAL");
	ck_assert_uint_eq(pkt_get_u8(&r), 'V');
	buf_out_deinit(&out);
}
END_TEST

START_TEST(test_pkt_put_NoticeResponse_round_trips)
{
	struct buf_out out;
	buf_out_init(&out);
	pkt_put_NoticeResponse(&out, "01000", "careful");
	struct pkt_reader r;
	ck_assert_uint_eq(frame_last(&out, 0, &r), PKT_NoticeResponse);
	struct pkt_error e;
	ck_assert_int_eq(pkt_parse_error(r.p, r.len, &e), PKT_OK);
	ck_assert_str_eq(e.severity, "NOTICE");
	ck_assert_str_eq(e.sqlstate, "01000");
	ck_assert_str_eq(e.message, "careful");
	buf_out_deinit(&out);
}
END_TEST

START_TEST(test_pkt_put_ReadyForQuery_round_trips)
{
	static const char statuses[] = { 'I', 'T', 'E' };
	for (size_t i = 0; i < ARRAY_SIZE(statuses); i++) {
		struct buf_out out;
		buf_out_init(&out);
		pkt_put_ReadyForQuery(&out, statuses[i]);
		struct pkt_reader r;
		ck_assert_uint_eq(frame_last(&out, 0, &r), PKT_ReadyForQuery);
		ck_assert_uint_eq(r.len, 1);
		ck_assert_uint_eq(pkt_get_u8(&r), (uint8_t)statuses[i]);
		ck_assert(!r.bad);
		buf_out_deinit(&out);
	}
}
END_TEST

struct auth_case {
	const char *name;
	uint32_t code;
	const uint8_t *payload; /* what follows the code */
	size_t payload_len;
};

static const uint8_t md5_salt[4] = { 0x01, 0xfe, 0x00, 0x7f };

static const struct auth_case auth_cases[] = {
	{ "AuthenticationOk", PKT_AUTH_OK, LIT("") },
	{ "AuthenticationCleartextPassword", PKT_AUTH_CLEARTEXT, LIT("") },
	{ "AuthenticationMD5Password", PKT_AUTH_MD5, md5_salt, 4 },
	{ "AuthenticationSASL", PKT_AUTH_SASL, LIT("SCRAM-SHA-256\0\0") },
	{ "AuthenticationSASLContinue", PKT_AUTH_SASL_CONTINUE, LIT("r=abc,s=c2FsdA==,i=4096") },
	{ "AuthenticationSASLFinal", PKT_AUTH_SASL_FINAL, LIT("v=c2lnbmF0dXJl") },
	{ "AuthenticationSASLContinue with NUL bytes", PKT_AUTH_SASL_CONTINUE, LIT("a\0b\0") },
};

START_TEST(test_pkt_put_Authentication_round_trips)
{
	const struct auth_case *ac = &auth_cases[_i];
	struct buf_out out;
	buf_out_init(&out);
	switch (ac->code) {
	case PKT_AUTH_OK: pkt_put_AuthenticationOk(&out); break;
	case PKT_AUTH_CLEARTEXT: pkt_put_AuthenticationCleartextPassword(&out); break;
	case PKT_AUTH_MD5: pkt_put_AuthenticationMD5Password(&out, ac->payload); break;
	case PKT_AUTH_SASL: pkt_put_AuthenticationSASL(&out, "SCRAM-SHA-256"); break;
	case PKT_AUTH_SASL_CONTINUE:
		pkt_put_AuthenticationSASLContinue(&out, ac->payload, ac->payload_len);
		break;
	case PKT_AUTH_SASL_FINAL:
		pkt_put_AuthenticationSASLFinal(&out, ac->payload, ac->payload_len);
		break;
	default: ck_abort_msg("%s: no builder", ac->name);
	}
	struct pkt_reader r;
	ck_assert_uint_eq(frame_last(&out, 0, &r), PKT_Authentication);
	ck_assert_msg(pkt_get_be32(&r) == ac->code, "%s: wrong code", ac->name);
	ck_assert_msg(pkt_remaining(&r) == ac->payload_len, "%s: payload of %zu bytes", ac->name,
		      pkt_remaining(&r));
	const uint8_t *b = pkt_get_bytes(&r, ac->payload_len);
	ck_assert(!r.bad);
	ck_assert_msg(ac->payload_len == 0 || memcmp(b, ac->payload, ac->payload_len) == 0,
		      "%s: payload differs", ac->name);
	buf_out_deinit(&out);
}
END_TEST

START_TEST(test_pkt_put_ParameterStatus_round_trips)
{
	struct buf_out out;
	buf_out_init(&out);
	pkt_put_ParameterStatus(&out, "server_version", "16.2");
	struct pkt_reader r;
	ck_assert_uint_eq(frame_last(&out, 0, &r), PKT_ParameterStatus);
	ck_assert_str_eq(pkt_get_cstr(&r), "server_version");
	ck_assert_str_eq(pkt_get_cstr(&r), "16.2");
	ck_assert_uint_eq(pkt_remaining(&r), 0);
	ck_assert(!r.bad);
	buf_out_deinit(&out);
}
END_TEST

START_TEST(test_pkt_put_BackendKeyData_round_trips)
{
	struct buf_out out;
	buf_out_init(&out);
	pkt_put_BackendKeyData(&out, 0x80000001u, 0xfffffffeu);
	struct pkt_reader r;
	ck_assert_uint_eq(frame_last(&out, 0, &r), PKT_BackendKeyData);
	ck_assert_uint_eq(r.len, 8);
	ck_assert_uint_eq(pkt_get_be32(&r), 0x80000001u);
	ck_assert_uint_eq(pkt_get_be32(&r), 0xfffffffeu);
	ck_assert(!r.bad);
	buf_out_deinit(&out);
}
END_TEST

struct cstr_msg_case {
	const char *name;
	uint8_t type;
	const char *s;
};

static const struct cstr_msg_case cstr_msg_cases[] = {
	{ "CommandComplete", PKT_CommandComplete, "SELECT 1" },
	{ "Query", PKT_Query, "SELECT 'x'" },
	{ "Query empty", PKT_Query, "" },
	{ "PasswordMessage", PKT_PasswordMessage, "s3cret" },
};

START_TEST(test_pkt_put_single_string_messages_round_trip)
{
	const struct cstr_msg_case *mc = &cstr_msg_cases[_i];
	struct buf_out out;
	buf_out_init(&out);
	switch (mc->type) {
	case PKT_CommandComplete: pkt_put_CommandComplete(&out, mc->s); break;
	case PKT_Query: pkt_put_Query(&out, mc->s); break;
	case PKT_PasswordMessage: pkt_put_PasswordMessage(&out, mc->s); break;
	default: ck_abort_msg("%s: no builder", mc->name);
	}
	struct pkt_reader r;
	ck_assert_uint_eq(frame_last(&out, 0, &r), mc->type);
	ck_assert_str_eq(pkt_get_cstr(&r), mc->s);
	ck_assert_uint_eq(pkt_remaining(&r), 0);
	buf_out_deinit(&out);
}
END_TEST

START_TEST(test_pkt_put_Terminate_is_header_only)
{
	struct buf_out out;
	buf_out_init(&out);
	pkt_put_Terminate(&out);
	struct pkt_reader r;
	ck_assert_uint_eq(frame_last(&out, 0, &r), PKT_Terminate);
	ck_assert_uint_eq(out.len, PKT_HDR_LEN);
	ck_assert_uint_eq(r.len, 0);
	buf_out_deinit(&out);
}
END_TEST

START_TEST(test_pkt_put_SASLInitialResponse_layout)
{
	static const char data[] = "n,,n=,r=rOprNGfwEbeRWgbNEkqO";
	struct buf_out out;
	buf_out_init(&out);
	pkt_put_SASLInitialResponse(&out, "SCRAM-SHA-256", data, sizeof(data) - 1);
	struct pkt_reader r;
	ck_assert_uint_eq(frame_last(&out, 0, &r), PKT_PasswordMessage);
	ck_assert_str_eq(pkt_get_cstr(&r), "SCRAM-SHA-256");
	ck_assert_uint_eq(pkt_get_be32(&r), sizeof(data) - 1);
	const uint8_t *b = pkt_get_bytes(&r, sizeof(data) - 1);
	ck_assert(!r.bad);
	ck_assert_int_eq(memcmp(b, data, sizeof(data) - 1), 0);
	ck_assert_uint_eq(pkt_remaining(&r), 0);
	buf_out_deinit(&out);
}
END_TEST

START_TEST(test_pkt_put_SASLResponse_is_raw_data)
{
	static const uint8_t data[] = { 'c', '=', 0, 0xff, 'p' };
	struct buf_out out;
	buf_out_init(&out);
	pkt_put_SASLResponse(&out, data, sizeof(data));
	struct pkt_reader r;
	ck_assert_uint_eq(frame_last(&out, 0, &r), PKT_PasswordMessage);
	ck_assert_uint_eq(r.len, sizeof(data));
	ck_assert_int_eq(memcmp(r.p, data, sizeof(data)), 0);
	buf_out_deinit(&out);
}
END_TEST

START_TEST(test_pkt_put_StartupMessage_round_trips)
{
	static const char *const keys[] = { "user", "database", "application_name" };
	static const char *const vals[] = { "alice", "db1", "" };
	struct buf_out out;
	buf_out_init(&out);
	pkt_put_StartupMessage(&out, keys, vals, 3);
	uint32_t len = 0;
	ck_assert_int_eq(pkt_frame_startup(out.data, out.len, &len), PKT_OK);
	ck_assert_uint_eq(len, out.len);
	struct pkt_startup st;
	ck_assert_int_eq(pkt_parse_startup(out.data, len, &st), PKT_OK);
	ck_assert_uint_eq(st.code, PKT_PROTOCOL_3_0);
	ck_assert_int_eq(st.nparams, 3);
	for (int i = 0; i < 3; i++) {
		ck_assert_str_eq(st.keys[i], keys[i]);
		ck_assert_str_eq(pkt_startup_get(&st, keys[i]), vals[i]);
	}
	buf_out_deinit(&out);
}
END_TEST

START_TEST(test_pkt_put_CancelRequest_round_trips)
{
	struct buf_out out;
	buf_out_init(&out);
	pkt_put_CancelRequest(&out, 4242, 0xcafef00d);
	ck_assert_uint_eq(out.len, 16);
	uint32_t len = 0;
	ck_assert_int_eq(pkt_frame_startup(out.data, out.len, &len), PKT_OK);
	ck_assert_uint_eq(len, 16);
	struct pkt_startup st;
	ck_assert_int_eq(pkt_parse_startup(out.data, len, &st), PKT_OK);
	ck_assert_uint_eq(st.code, PKT_CANCEL_REQUEST_CODE);
	ck_assert_uint_eq(st.cancel_pid, 4242);
	ck_assert_uint_eq(st.cancel_key, 0xcafef00d);
	buf_out_deinit(&out);
}
END_TEST

START_TEST(test_pkt_begin_end_brackets_any_message)
{
	struct buf_out out;
	buf_out_init(&out);
	pkt_put_Query(&out, "SELECT 1");
	size_t first = out.len;
	size_t m = pkt_begin(&out, PKT_CopyData);
	buf_out_put(&out, "abc", 3);
	pkt_end(&out, m);
	struct pkt_reader r;
	ck_assert_uint_eq(frame_last(&out, first, &r), PKT_CopyData);
	ck_assert_uint_eq(r.len, 3);
	ck_assert_int_eq(memcmp(r.p, "abc", 3), 0);
	/* The earlier message is untouched. */
	struct pkt_hdr h;
	ck_assert_int_eq(pkt_frame(out.data, out.len, 1000, &h), PKT_OK);
	ck_assert_uint_eq(h.type, PKT_Query);
	ck_assert_uint_eq(h.len, first);
	buf_out_deinit(&out);
}
END_TEST

static Suite *pkt_suite(void)
{
	Suite *s = suite_create("pkt");
	TCase *tc = tcase_create("frame");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_pkt_frame_split_at_every_byte);
	tcase_add_test(tc, test_pkt_frame_short_header_is_incomplete);
	tcase_add_loop_test(tc, test_pkt_frame_rejects_bad_lengths, 0, (int)ARRAY_SIZE(frame_cases));
	suite_add_tcase(s, tc);

	tc = tcase_create("startup");
	tcase_add_loop_test(tc, test_pkt_frame_startup_checks_length, 0,
			    (int)ARRAY_SIZE(startup_frame_cases));
	tcase_add_loop_test(tc, test_pkt_parse_startup_table, 0, (int)ARRAY_SIZE(startup_cases));
	tcase_add_test(tc, test_pkt_parse_startup_accepts_max_params_rejects_one_more);
	tcase_add_test(tc, test_pkt_parse_startup_rejects_length_below_8);
	tcase_add_test(tc, test_pkt_startup_get_takes_the_last_of_a_repeated_key);
	tcase_add_loop_test(tc, test_pkt_parse_options_table, 0, (int)ARRAY_SIZE(options_cases));
	tcase_add_test(tc, test_pkt_parse_options_with_tiny_err_buffer_still_terminates);
	tcase_add_loop_test(tc, test_pkt_parse_replication_table, 0,
			    (int)ARRAY_SIZE(replication_cases));
	tcase_add_test(tc, test_pkt_replication_names_match_pgbouncer_and_postgresql);
	suite_add_tcase(s, tc);

	tc = tcase_create("reader");
	tcase_add_loop_test(tc, test_pkt_reader_getter_past_end_sets_bad, 0,
			    (int)ARRAY_SIZE(reader_cases));
	tcase_add_test(tc, test_pkt_reader_reads_fields_in_order_then_fails_at_end);
	tcase_add_test(tc, test_pkt_reader_bad_is_sticky);
	suite_add_tcase(s, tc);

	tc = tcase_create("error");
	tcase_add_loop_test(tc, test_pkt_parse_error_table, 0, (int)ARRAY_SIZE(error_cases));
	tcase_add_test(tc, test_pkt_parse_notification_takes_exactly_pid_channel_payload);
	suite_add_tcase(s, tc);

	tc = tcase_create("builders");
	tcase_add_test(tc, test_pkt_put_ErrorResponse_round_trips);
	tcase_add_test(tc, test_pkt_put_NoticeResponse_round_trips);
	tcase_add_test(tc, test_pkt_put_ReadyForQuery_round_trips);
	tcase_add_loop_test(tc, test_pkt_put_Authentication_round_trips, 0,
			    (int)ARRAY_SIZE(auth_cases));
	tcase_add_test(tc, test_pkt_put_ParameterStatus_round_trips);
	tcase_add_test(tc, test_pkt_put_BackendKeyData_round_trips);
	tcase_add_loop_test(tc, test_pkt_put_single_string_messages_round_trip, 0,
			    (int)ARRAY_SIZE(cstr_msg_cases));
	tcase_add_test(tc, test_pkt_put_Terminate_is_header_only);
	tcase_add_test(tc, test_pkt_put_SASLInitialResponse_layout);
	tcase_add_test(tc, test_pkt_put_SASLResponse_is_raw_data);
	tcase_add_test(tc, test_pkt_put_StartupMessage_round_trips);
	tcase_add_test(tc, test_pkt_put_CancelRequest_round_trips);
	tcase_add_test(tc, test_pkt_begin_end_brackets_any_message);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(pkt_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
