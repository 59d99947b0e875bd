/*
 * check_bad_input.c - sluice against malformed and unusual protocol input on
 * raw sockets: broken startup packets, random bytes, encryption requests,
 * bad messages after login, oversized messages and protocol negotiation.
 *
 * Every case asserts what the client is told (an ErrorResponse with the
 * expected SQLSTATE, an 'N', a NegotiateProtocolVersion) and that the
 * connection is closed within a bounded time, never left hanging; then that
 * a normal libpq client still connects and queries, and that sluice exits
 * cleanly at the end. It does not test authentication methods or pooling.
 */
#include "harness.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define USERLIST "\"trustuser\" \"trustuserpw\"\n"
/* A short login timeout bounds how long sluice waits for an incomplete packet. */
#define SLUICE_EXTRA "auth_type = trust\nclient_login_timeout = 1\n"

/* ---- raw protocol helpers --------------------------------------------------- */

static void send_all(int fd, const void *data, size_t len)
{
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
}

/*
 * Builds a startup packet with the given protocol code and NUL-separated
 * key/value text (pairs, each string with its NUL); terminated adds the
 * final NUL. Returns its length; buf must hold 4 + 4 + pairs_len + 1.
 */
static size_t build_startup(unsigned char *buf, uint32_t code, const char *pairs,
	size_t pairs_len, bool terminated)
{
	size_t len = 8 + pairs_len + (terminated ? 1 : 0);
	put_be32(buf, (uint32_t)len);
	put_be32(buf + 4, code);
	memcpy(buf + 8, pairs, pairs_len);
	if (terminated)
		buf[8 + pairs_len] = '\0';
	return len;
}

static const char login_pairs[] = "user\0trustuser\0database\0app";
#define LOGIN_PAIRS_LEN sizeof(login_pairs) /* includes the NUL after "app" */

/* What a raw exchange produced: every byte until close or timeout. */
struct reply {
	unsigned char data[16384];
	size_t len;
	bool closed; /* the peer closed (EOF or reset) before the deadline */
};

/*
 * Reads until the peer closes or timeout_ms passes, or (stop_at != 0) until
 * a complete message of type stop_at has arrived. Bounded by poll().
 */
static void read_reply(int fd, struct reply *r, int timeout_ms, char stop_at)
{
	memset(r, 0, sizeof(*r));
	long deadline = harness_now_ms() + timeout_ms;
	for (;;) {
		if (stop_at) {
			/* Walk the complete messages received so far. */
			size_t off = 0;
			while (off + 5 <= r->len) {
				uint32_t n = get_be32(r->data + off + 1);
				if (off + 1 + n > r->len)
					break;
				if (r->data[off] == stop_at)
					return;
				off += 1 + n;
			}
		}
		long left = deadline - harness_now_ms();
		if (left <= 0)
			return;
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int pr = poll(&pfd, 1, (int)left);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			return;
		if (r->len == sizeof(r->data))
			return;
		ssize_t n = read(fd, r->data + r->len, sizeof(r->data) - r->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r->closed = true;
			return;
		}
		r->len += (size_t)n;
	}
}

/*
 * Finds the first message of type t in r (regular framing: type, length);
 * returns its body and length, or NULL.
 */
static const unsigned char *find_msg(const struct reply *r, size_t start, char t, size_t *body_len)
{
	size_t off = start;
	while (off + 5 <= r->len) {
		uint32_t n = get_be32(r->data + off + 1);
		if (n < 4 || off + 1 + n > r->len)
			return NULL;
		if (r->data[off] == t) {
			*body_len = n - 4;
			return r->data + off + 5;
		}
		off += 1 + n;
	}
	return NULL;
}

/* The SQLSTATE ('C' field) of the first ErrorResponse in r, or "" if none. */
static const char *error_sqlstate(const struct reply *r, char out[6])
{
	out[0] = '\0';
	size_t len;
	const unsigned char *b = find_msg(r, 0, 'E', &len);
	if (!b)
		return out;
	size_t i = 0;
	while (i < len && b[i] != '\0') {
		char field = (char)b[i++];
		const char *val = (const char *)b + i;
		size_t vl = strnlen(val, len - i);
		if (field == 'C' && vl == 5) {
			memcpy(out, val, 5);
			out[5] = '\0';
			return out;
		}
		i += vl + 1;
	}
	return out;
}

/* A normal libpq client still gets in and gets an answer. */
static void assert_sluice_serves(const struct harness_sluice *s)
{
	PGconn *conn = harness_connect(s, "dbname=app user=trustuser");
	harness_expect_answer(conn, "SELECT count(*) FROM items", "3");
	PQfinish(conn);
}

/*
 * Sends one StartupMessage with protocol code and pairs on a new raw socket
 * and collects the reply until ReadyForQuery, an error close, or 5 s.
 */
static void startup_until_ready(const struct harness_sluice *s, uint32_t code, const char *pairs,
	size_t pairs_len, struct reply *r)
{
	int fd = harness_raw_connect(s->port);
	unsigned char pkt[128];
	ck_assert_uint_le(8 + pairs_len + 1, sizeof(pkt));
	size_t n = build_startup(pkt, code, pairs, pairs_len, true);
	send_all(fd, pkt, n);
	read_reply(fd, r, 5000, 'Z');
	close(fd);
}

/* Logs in on a raw socket and reads up to the first ReadyForQuery. */
static int raw_login(const struct harness_sluice *s)
{
	int fd = harness_raw_connect(s->port);
	unsigned char pkt[128];
	size_t n = build_startup(pkt, 0x00030000, login_pairs, LOGIN_PAIRS_LEN, true);
	send_all(fd, pkt, n);
	struct reply r;
	read_reply(fd, &r, 5000, 'Z');
	size_t len;
	ck_assert_msg(find_msg(&r, 0, 'Z', &len) != NULL, "no ReadyForQuery after login (%zu bytes)",
		r.len);
	return fd;
}

/* ---- malformed startup packets ---------------------------------------------- */

static const char v2_pairs[] = "user\0trustuser\0database\0app";

static const struct bad_startup_case {
	const char *name;
	unsigned char bytes[64];
	size_t len;
	const char *sqlstate;
} bad_startup_cases[] = {
	{ "length below 8", { 0, 0, 0, 4 }, 4, "08P01" },
	{ "length 7", { 0, 0, 0, 7, 0, 3, 0 }, 7, "08P01" },
	{ "length above 10000", { 0, 0, 0x27, 0x11, 0, 3, 0, 0 }, 8, "08P01" },
	{ "length 0xFFFFFFFF", { 0xff, 0xff, 0xff, 0xff, 0, 3, 0, 0 }, 8, "08P01" },
	/* SSLRequest (80877103) whose length claims 4 more bytes. */
	{ "SSLRequest with extra bytes in the packet",
		{ 0, 0, 0, 12, 0x04, 0xd2, 0x16, 0x2f, 1, 2, 3, 4 }, 12, "08P01" },
	/* A CancelRequest must be exactly 16 bytes long. */
	{ "CancelRequest of 12 bytes", { 0, 0, 0, 12, 0x04, 0xd2, 0x16, 0x2e, 1, 2, 3, 4 }, 12,
		"08P01" },
};

START_TEST(test_bad_startup_packet_gets_error_and_close)
{
	const struct bad_startup_case *bc = &bad_startup_cases[_i];
	struct harness_sluice *s = harness_sluice_start(SLUICE_EXTRA, NULL, USERLIST);
	int fd = harness_raw_connect(s->port);
	send_all(fd, bc->bytes, bc->len);
	struct reply r;
	read_reply(fd, &r, 3000, 0);
	close(fd);
	char st[6];
	ck_assert_msg(r.closed, "%s: connection not closed", bc->name);
	ck_assert_msg(strcmp(error_sqlstate(&r, st), bc->sqlstate) == 0,
		"%s: expected SQLSTATE %s, got '%s' (%zu bytes)", bc->name, bc->sqlstate, st, r.len);
	assert_sluice_serves(s);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/*
 * Sends one StartupMessage built from pairs (terminated: with its final NUL)
 * and expects an ErrorResponse with sqlstate and a close; sluice keeps serving.
 */
static void expect_startup_refused(uint32_t code, const char *pairs, size_t len, bool terminated,
	const char *sqlstate)
{
	struct harness_sluice *s = harness_sluice_start(SLUICE_EXTRA, NULL, USERLIST);
	int fd = harness_raw_connect(s->port);
	unsigned char pkt[128];
	size_t n = build_startup(pkt, code, pairs, len, terminated);
	send_all(fd, pkt, n);
	struct reply r;
	read_reply(fd, &r, 3000, 0);
	close(fd);
	char st[6];
	ck_assert(r.closed);
	ck_assert_str_eq(error_sqlstate(&r, st), sqlstate);
	assert_sluice_serves(s);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}

START_TEST(test_protocol_2_startup_is_refused_with_0A000)
{
	expect_startup_refused(0x00020000, v2_pairs, sizeof(v2_pairs), true, "0A000");
}
END_TEST

START_TEST(test_startup_without_final_nul_is_08P01)
{
	expect_startup_refused(0x00030000, login_pairs, LOGIN_PAIRS_LEN, false, "08P01");
}
END_TEST

START_TEST(test_random_bytes_are_closed)
{
	struct harness_sluice *s = harness_sluice_start(SLUICE_EXTRA, NULL, USERLIST);
	for (unsigned seed = 1; seed <= 4; seed++) {
		unsigned char junk[4096];
		unsigned state = seed * 2654435761u;
		for (size_t i = 0; i < sizeof(junk); i++) {
			state = state * 1103515245u + 12345u;
			junk[i] = (unsigned char)(state >> 16);
		}
		int fd = harness_raw_connect(s->port);
		/* sluice may close before taking all of it; a short write is fine. */
		ssize_t w = write(fd, junk, sizeof(junk));
		(void)w;
		struct reply r;
		/* client_login_timeout (1 s) bounds a packet that claims more bytes. */
		read_reply(fd, &r, 4000, 0);
		close(fd);
		ck_assert_msg(r.closed, "seed %u: connection not closed", seed);
	}
	assert_sluice_serves(s);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* ---- encryption requests ---------------------------------------------------- */

static const struct enc_case {
	const char *name;
	uint32_t code;
} enc_cases[] = {
	{ "SSLRequest", 80877103 },
	{ "GSSENCRequest", 80877104 },
};

START_TEST(test_encryption_request_answered_N_then_login_works)
{
	const struct enc_case *ec = &enc_cases[_i];
	struct harness_sluice *s = harness_sluice_start(SLUICE_EXTRA, NULL, USERLIST);
	int fd = harness_raw_connect(s->port);
	unsigned char req[8];
	put_be32(req, 8);
	put_be32(req + 4, ec->code);
	send_all(fd, req, sizeof(req));
	char answer = 0;
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	ck_assert_int_eq(poll(&pfd, 1, 3000), 1);
	ck_assert_int_eq(read(fd, &answer, 1), 1);
	ck_assert_msg(answer == 'N', "%s answered '%c'", ec->name, answer);

	unsigned char pkt[128];
	size_t n = build_startup(pkt, 0x00030000, login_pairs, LOGIN_PAIRS_LEN, true);
	send_all(fd, pkt, n);
	struct reply r;
	read_reply(fd, &r, 5000, 'Z');
	size_t len;
	const unsigned char *auth = find_msg(&r, 0, 'R', &len);
	ck_assert_msg(auth != NULL && len == 4 && get_be32(auth) == 0,
		"%s: no AuthenticationOk after 'N'", ec->name);
	ck_assert_msg(find_msg(&r, 0, 'Z', &len) != NULL, "%s: no ReadyForQuery", ec->name);
	ck_assert_ptr_null(find_msg(&r, 0, 'E', &len));
	close(fd);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_sslrequest_followed_by_bytes_before_answer_is_refused)
{
	struct harness_sluice *s = harness_sluice_start(SLUICE_EXTRA, NULL, USERLIST);
	int fd = harness_raw_connect(s->port);
	/* SSLRequest and a StartupMessage in one write: bytes the 'N' did not answer. */
	unsigned char pkt[160];
	put_be32(pkt, 8);
	put_be32(pkt + 4, 80877103);
	size_t n = build_startup(pkt + 8, 0x00030000, login_pairs, LOGIN_PAIRS_LEN, true);
	send_all(fd, pkt, 8 + n);
	struct reply r;
	read_reply(fd, &r, 3000, 0);
	close(fd);
	ck_assert(r.closed);
	/* The error follows the 'N' if sluice answered before it saw the rest. */
	size_t start = r.len > 0 && r.data[0] == 'N' ? 1 : 0;
	struct reply tail = { .len = r.len - start, .closed = true };
	memcpy(tail.data, r.data + start, tail.len);
	char st[6];
	ck_assert_str_eq(error_sqlstate(&tail, st), "08P01");
	size_t len;
	ck_assert_msg(find_msg(&tail, 0, 'Z', &len) == NULL, "the spoofed startup logged in");
	assert_sluice_serves(s);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_libpq_sslmode_prefer_falls_back_and_require_fails)
{
	struct harness_sluice *s = harness_sluice_start(SLUICE_EXTRA, NULL, USERLIST);
	PGconn *conn = harness_connect(s, "dbname=app user=trustuser sslmode=prefer");
	ck_assert_int_eq(PQsslInUse(conn), 0);
	char *v = harness_query_text(conn, "SELECT 40 + 2");
	ck_assert_str_eq(v, "42");
	free(v);
	PQfinish(conn);
	char *err = harness_connect_error(s, "dbname=app user=trustuser sslmode=require");
	ck_assert_msg(strstr(err, "SSL") != NULL, "%s", err);
	free(err);
	assert_sluice_serves(s);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* ---- bad messages after login ---------------------------------------------- */

static const struct bad_msg_case {
	const char *name;
	unsigned char bytes[16];
	size_t len;
} bad_msg_cases[] = {
	{ "Query with length 3", { 'Q', 0, 0, 0, 3, 'x', 0 }, 7 },
	{ "Query with length 0", { 'Q', 0, 0, 0, 0 }, 5 },
	{ "unknown type 'z'", { 'z', 0, 0, 0, 4 }, 5 },
	{ "unknown type 0x01 with body", { 0x01, 0, 0, 0, 6, 'a', 'b' }, 7 },
};

START_TEST(test_bad_message_after_login_is_08P01)
{
	const struct bad_msg_case *bc = &bad_msg_cases[_i];
	struct harness_sluice *s = harness_sluice_start(SLUICE_EXTRA, NULL, USERLIST);
	int fd = raw_login(s);
	send_all(fd, bc->bytes, bc->len);
	struct reply r;
	read_reply(fd, &r, 3000, 0);
	close(fd);
	char st[6];
	ck_assert_msg(r.closed, "%s: connection not closed", bc->name);
	ck_assert_msg(strcmp(error_sqlstate(&r, st), "08P01") == 0, "%s: SQLSTATE '%s'", bc->name,
		st);
	assert_sluice_serves(s);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

START_TEST(test_message_over_max_packet_size_is_54000_and_spares_others)
{
	struct harness_sluice *s = harness_sluice_start(SLUICE_EXTRA "max_packet_size = 4096\n",
		NULL, USERLIST);
	/* A bystander in the middle of a transaction on its own server. */
	PGconn *other = harness_connect(s, "dbname=app user=trustuser");
	free(harness_query_text(other, "BEGIN"));
	free(harness_query_text(other, "SELECT 1"));

	PGconn *conn = harness_connect(s, "dbname=app user=trustuser");
	char *sql = xmalloc(10 * 1024 + 64);
	strcpy(sql, "SELECT length('");
	size_t off = strlen(sql);
	memset(sql + off, 'x', 10 * 1024);
	strcpy(sql + off + 10 * 1024, "')");
	PGresult *res = PQexec(conn, sql);
	ck_assert_int_eq(PQresultStatus(res), PGRES_FATAL_ERROR);
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	/*
	 * sluice lingers before closing, so no reset eats the ErrorResponse: libpq
	 * receives it. libpq then reports the EOF that follows a FATAL error as the
	 * result (as with PostgreSQL's own FATAL errors), so the SQLSTATE is not on
	 * the PGresult; the message is in the connection's error text, and the
	 * SQLSTATE in sluice's log line below.
	 */
	if (state)
		ck_assert_str_eq(state, "54000");
	ck_assert_msg(strstr(PQerrorMessage(conn), "exceeds max_packet_size") != NULL, "%s",
		PQerrorMessage(conn));
	PQclear(res);
	ck_assert(harness_sluice_log_wait(s, "exceeds max_packet_size (54000)", 3000));
	free(sql);
	ck_assert_int_eq(PQstatus(conn), CONNECTION_BAD);
	PQfinish(conn);

	/* Just below the limit still passes. */
	conn = harness_connect(s, "dbname=app user=trustuser");
	sql = xmalloc(4096);
	strcpy(sql, "SELECT length('");
	off = strlen(sql);
	memset(sql + off, 'y', 3000);
	strcpy(sql + off + 3000, "')");
	char *v = harness_query_text(conn, sql);
	ck_assert_str_eq(v, "3000");
	free(v);
	free(sql);
	PQfinish(conn);

	v = harness_query_text(other, "SELECT count(*) FROM items");
	ck_assert_str_eq(v, "3");
	free(v);
	free(harness_query_text(other, "COMMIT"));
	PQfinish(other);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* ---- protocol negotiation ---------------------------------------------------- */

START_TEST(test_protocol_3_2_with_pq_option_gets_negotiate_then_login)
{
	struct harness_sluice *s = harness_sluice_start(SLUICE_EXTRA, NULL, USERLIST);
	static const char pairs[] = "user\0trustuser\0database\0app\0_pq_.foo\0bar";
	struct reply r;
	startup_until_ready(s, 0x00030002, pairs, sizeof(pairs), &r);
	size_t len;
	const unsigned char *v = find_msg(&r, 0, 'v', &len);
	ck_assert_msg(v != NULL, "no NegotiateProtocolVersion (%zu bytes)", r.len);
	ck_assert_uint_ge(len, 8);
	ck_assert_uint_eq(get_be32(v), 0x00030000);
	ck_assert_uint_eq(get_be32(v + 4), 1);
	ck_assert_uint_eq(len, 8 + sizeof("_pq_.foo"));
	ck_assert_str_eq((const char *)v + 8, "_pq_.foo");
	ck_assert_ptr_nonnull(find_msg(&r, 0, 'R', &len));
	ck_assert_ptr_nonnull(find_msg(&r, 0, 'Z', &len));
	ck_assert_ptr_null(find_msg(&r, 0, 'E', &len));
	/* The negotiation comes before authentication. */
	ck_assert_int_eq(r.data[0], 'v');
	assert_sluice_serves(s);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* ---- startup "options" ------------------------------------------------------- */

#define OPTIONS_REFUSED                                                                            \
	"0A000 unsupported options startup parameter: only '-c config=val' and '--config=val' "  \
	"are allowed"

static const struct options_case {
	const char *options;
	const char *error; /* the whole "SQLSTATE message" the client must get */
} options_cases[] = {
	/* A bare "-c" at the end once sent 128 bytes of uninitialised stack. */
	{ "-c", OPTIONS_REFUSED },
	{ "-c DateStyle=ISO -c", OPTIONS_REFUSED },
	{ "-c timezone", OPTIONS_REFUSED },
	{ "-d", OPTIONS_REFUSED },
	{ "-c enable_seqscan=false", "0A000 unsupported startup parameter in options: enable_seqscan" },
};

START_TEST(test_bad_startup_options_get_an_exact_error)
{
	const struct options_case *oc = &options_cases[_i];
	struct harness_sluice *s = harness_sluice_start(SLUICE_EXTRA, NULL, USERLIST);
	int fd = harness_raw_connect(s->port);
	char pairs[256];
	int plen = snprintf(pairs, sizeof(pairs), "user%ctrustuser%cdatabase%capp%coptions%c%s",
		0, 0, 0, 0, 0, oc->options);
	unsigned char pkt[300];
	size_t n = build_startup(pkt, 0x00030000, pairs, (size_t)plen + 1, true);
	send_all(fd, pkt, n);
	char *err = harness_raw_read_error(fd);
	close(fd);
	ck_assert_ptr_nonnull(err);
	ck_assert_str_eq(err, oc->error);
	free(err);
	assert_sluice_serves(s);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* PostgreSQL takes the last of a repeated key; so does sluice (the first user does not exist). */
START_TEST(test_startup_with_user_twice_logs_in_as_the_last)
{
	struct harness_sluice *s = harness_sluice_start(SLUICE_EXTRA, NULL, USERLIST);
	static const char pairs[] = "user\0nosuchuser\0database\0app\0user\0trustuser";
	struct reply r;
	startup_until_ready(s, 0x00030000, pairs, sizeof(pairs), &r);
	size_t len;
	ck_assert_ptr_null(find_msg(&r, 0, 'E', &len));
	ck_assert_ptr_nonnull(find_msg(&r, 0, 'Z', &len));
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

/* Password messages longer than any startup packet: a wrong password, 28P01, at any size. */
static const size_t long_password_sizes[] = { 20000, 65000, 200000 };

START_TEST(test_long_password_message_fails_authentication_not_the_protocol)
{
	struct harness_sluice *s = harness_sluice_start("auth_type = plain\n", NULL, USERLIST);
	int fd = harness_raw_connect(s->port);
	harness_raw_send_startup(fd, "trustuser", "app");
	struct harness_msg m;
	ck_assert(harness_raw_read_msg(fd, &m));
	ck_assert_int_eq(m.type, 'R');
	ck_assert_int_eq(get_be32((const uint8_t *)m.body), 3); /* AuthenticationCleartextPassword */
	free(m.body);
	size_t n = long_password_sizes[_i];
	unsigned char *pw = malloc(5 + n + 1);
	pw[0] = 'p';
	put_be32(pw + 1, (uint32_t)(4 + n + 1));
	memset(pw + 5, 'x', n);
	pw[5 + n] = '\0';
	harness_write_all(fd, pw, 5 + n + 1);
	free(pw);
	char *err = harness_raw_read_error(fd);
	close(fd);
	ck_assert_ptr_nonnull(err);
	ck_assert_str_eq(err, "28P01 password authentication failed for user \"trustuser\"");
	free(err);
	PGconn *conn = harness_connect(s, "dbname=app user=trustuser password=trustuserpw");
	harness_expect_answer(conn, "SELECT count(*) FROM items", "3");
	PQfinish(conn);
	ck_assert_int_eq(harness_sluice_stop(s), 0);
	harness_sluice_free(s);
}
END_TEST

static Suite *bad_input_suite(void)
{
	Suite *s = suite_create("bad_input");
	TCase *tc = harness_tcase("startup");
	tcase_add_loop_test(tc, test_bad_startup_packet_gets_error_and_close, 0,
		(int)ARRAY_SIZE(bad_startup_cases));
	tcase_add_test(tc, test_protocol_2_startup_is_refused_with_0A000);
	tcase_add_test(tc, test_startup_without_final_nul_is_08P01);
	tcase_add_test(tc, test_random_bytes_are_closed);
	tcase_add_test(tc, test_protocol_3_2_with_pq_option_gets_negotiate_then_login);
	tcase_add_loop_test(tc, test_bad_startup_options_get_an_exact_error, 0,
		(int)ARRAY_SIZE(options_cases));
	tcase_add_test(tc, test_startup_with_user_twice_logs_in_as_the_last);
	tcase_add_loop_test(tc, test_long_password_message_fails_authentication_not_the_protocol, 0,
		(int)ARRAY_SIZE(long_password_sizes));
	suite_add_tcase(s, tc);

	tc = harness_tcase("encryption");
	tcase_add_loop_test(tc, test_encryption_request_answered_N_then_login_works, 0,
		(int)ARRAY_SIZE(enc_cases));
	tcase_add_test(tc, test_sslrequest_followed_by_bytes_before_answer_is_refused);
	tcase_add_test(tc, test_libpq_sslmode_prefer_falls_back_and_require_fails);
	suite_add_tcase(s, tc);

	tc = harness_tcase("messages");
	tcase_add_loop_test(tc, test_bad_message_after_login_is_08P01, 0,
		(int)ARRAY_SIZE(bad_msg_cases));
	tcase_add_test(tc, test_message_over_max_packet_size_is_54000_and_spares_others);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return harness_run_suite(bad_input_suite());
}
