/*
 * fuzz_pkt.c - the libFuzzer target for the pkt parsers.
 *
 * One input is read four ways: as a startup-phase packet (pkt_frame_startup
 * then pkt_parse_startup, and the packet's "options" through
 * pkt_parse_options), as the whole of a startup packet of its own size, as an
 * "options" value itself, and as a stream of typed messages delivered in chunks whose sizes come from
 * a fixed generator, framed with pkt_frame the way a connection would; each
 * whole message body goes through pkt_parse_error, pkt_parse_notification
 * and the body reader. Parsed
 * data is copied into exact-size heap blocks first, so any read past what a
 * parser was given is an AddressSanitizer error, and every contract in pkt.h
 * that can be checked from outside is checked with abort().
 *
 * The same input is also an HTTP request head for http_parse_request (the
 * metrics endpoint's parser): a complete head lies within the input, its
 * fields within the head, and its own prefix parses to the same head.
 *
 * It owns no I/O and no state between inputs. fuzz_replay.c runs it on fixed
 * inputs in every build; -Dfuzz=true builds it for libFuzzer under clang.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "sluice/buf.h"
#include "sluice/http_parse.h"
#include "sluice/pkt.h"


/* Inputs are cut here so that one run stays fast whatever the fuzzer sends. */
#define FUZZ_MAX_INPUT (256u * 1024u)


static uint8_t *copy_exact(const uint8_t *p, size_t n)
{
	uint8_t *c = xmalloc(n ? n : 1);
	if (n)
		memcpy(c, p, n);
	return c;
}

/* Touches every byte of a string a parser said is NUL-terminated. */
static size_t touch(const char *s)
{
	return s ? strlen(s) : 0;
}

/* An "options" value: every result is well formed, and err is always a string. */
static void fuzz_options(const char *opts)
{
	struct pkt_options o;
	char err[64];
	memset(err, 0xAA, sizeof(err));
	int rc = pkt_parse_options(opts, &o, err, sizeof(err));
	FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL);
	FUZZ_CHECK(rc == PKT_OK || rc == PKT_MALFORMED);
	FUZZ_CHECK(rc == PKT_OK ? err[0] == '\0' : (err[0] != '\0' && o.n == 0));
	for (int i = 0; i < o.n; i++) {
		FUZZ_CHECK(touch(o.names[i]) > 0 && strchr(o.names[i], '-') == NULL);
		(void)touch(o.values[i]);
	}
	pkt_options_free(&o);
}

static void fuzz_startup(const uint8_t *data, size_t size)
{
	uint32_t len = 0;
	int rc = pkt_frame_startup(data, size, &len);
	if (size < 4)
		FUZZ_CHECK(rc == PKT_INCOMPLETE);
	if (rc == PKT_OK)
		FUZZ_CHECK(len >= 8 && len <= PKT_STARTUP_MAX);

	/* The packet the length word announces, if all of it is here... */
	if (rc == PKT_OK && len <= size) {
		uint8_t *p = copy_exact(data, len);
		struct pkt_startup st;
		if (pkt_parse_startup(p, len, &st) == PKT_OK) {
			FUZZ_CHECK(st.nparams >= 0 && st.nparams <= PKT_STARTUP_MAX_PARAMS);
			size_t total = 0;
			for (int i = 0; i < st.nparams; i++)
				total += touch(st.keys[i]) + touch(st.vals[i]) + 2;
			FUZZ_CHECK(total <= len);
			(void)touch(pkt_startup_get(&st, "user"));
			const char *opts = pkt_startup_get(&st, "options");
			if (opts)
				fuzz_options(opts);
		}
		free(p);
	}
	/* ...and the whole input taken as one packet, whatever it announces. */
	if (size <= PKT_STARTUP_MAX) {
		uint8_t *p = copy_exact(data, size);
		struct pkt_startup st;
		if (pkt_parse_startup(p, (uint32_t)size, &st) == PKT_OK) {
			FUZZ_CHECK(size >= 8 && get_be32(data) == size);
			for (int i = 0; i < st.nparams; i++)
				(void)(touch(st.keys[i]) + touch(st.vals[i]));
		}
		free(p);
	}
}

/* Reads a body with a mix of getters until the reader goes bad. */
static void fuzz_reader(const uint8_t *body, size_t len)
{
	struct pkt_reader r;
	pkt_reader_init(&r, body, len);
	unsigned step = 0;
	while (!r.bad) {
		size_t before = pkt_remaining(&r);
		switch (step++ % 5) {
		case 0: (void)pkt_get_u8(&r); break;
		case 1: (void)pkt_get_be16(&r); break;
		case 2: (void)pkt_get_be32(&r); break;
		case 3: (void)touch(pkt_get_cstr(&r)); break;
		case 4: (void)pkt_get_bytes(&r, 3); break;
		}
		FUZZ_CHECK(r.pos <= r.len);
		/* Either it consumed something or it failed: it cannot loop forever. */
		FUZZ_CHECK(r.bad || pkt_remaining(&r) < before);
	}
}

/* An ErrorResponse body parsed, rebuilt by the builder and parsed again. */
static void fuzz_error(const uint8_t *body, size_t len)
{
	struct pkt_error e;
	if (pkt_parse_error(body, len, &e) != PKT_OK)
		return;
	(void)(touch(e.severity) + touch(e.message) + touch(e.detail) + touch(e.sqlstate));
	if (!e.severity || !e.sqlstate || !e.message)
		return;
	struct buf_out out;
	buf_out_init(&out);
	pkt_put_ErrorResponse(&out, e.severity, e.sqlstate, e.message);
	struct pkt_hdr h;
	FUZZ_CHECK(pkt_frame(out.data, out.len, UINT32_MAX, &h) == PKT_OK);
	FUZZ_CHECK(h.type == PKT_ErrorResponse && h.len == out.len);
	struct pkt_error again;
	FUZZ_CHECK(pkt_parse_error(out.data + PKT_HDR_LEN, out.len - PKT_HDR_LEN, &again) ==
		   PKT_OK);
	FUZZ_CHECK(strcmp(again.severity, e.severity) == 0);
	FUZZ_CHECK(strcmp(again.sqlstate, e.sqlstate) == 0);
	FUZZ_CHECK(strcmp(again.message, e.message) == 0);
	buf_out_deinit(&out);
}

/* A NotificationResponse body: its strings lie within it, and end it exactly. */
static void fuzz_notification(const uint8_t *body, size_t len)
{
	struct pkt_notification n;
	if (pkt_parse_notification(body, len, &n) != PKT_OK)
		return;
	size_t cl = strlen(n.channel), pl = strlen(n.payload);
	FUZZ_CHECK(n.channel == (const char *)body + 4);
	FUZZ_CHECK(n.payload == n.channel + cl + 1);
	FUZZ_CHECK(4 + cl + 1 + pl + 1 == len);
}

/*
 * Frames data as a stream that arrives in chunks. The consumer keeps the
 * offset of the next message and frames stream[pos..fed) after every chunk,
 * as a connection's read callback would.
 */
static void fuzz_stream(const uint8_t *data, size_t size, uint32_t max_len, uint32_t seed)
{
	size_t fed = 0, pos = 0;
	uint32_t x = seed | 1;
	while (fed < size) {
		/* xorshift32: chunk sizes from 1 byte to a few kilobytes. */
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		size_t chunk = (x & 3) == 0 ? 1 + (x >> 8) % 4096 : 1 + (x >> 8) % 16;
		fed = MIN(size, fed + chunk);
		for (;;) {
			size_t avail = fed - pos;
			/* Zeroed: with pkt_frame inline, GCC cannot see that rc == rc2 guards the compare. */
			struct pkt_hdr h = { 0 };
			int rc = pkt_frame(data + pos, avail, max_len, &h);
			/* The verdict depends on the header alone: check it on an exact copy. */
			size_t hn = MIN(avail, (size_t)PKT_HDR_LEN);
			uint8_t *hc = copy_exact(data + pos, hn);
			struct pkt_hdr h2 = { 0 };
			int rc2 = pkt_frame(hc, hn, max_len, &h2);
			free(hc);
			FUZZ_CHECK(rc == rc2);
			if (rc == PKT_INCOMPLETE) {
				FUZZ_CHECK(avail < PKT_HDR_LEN);
				break;
			}
			FUZZ_CHECK(avail >= PKT_HDR_LEN);
			if (rc != PKT_OK)
				return; /* the connection would be failed here */
			FUZZ_CHECK(h.type == h2.type && h.len == h2.len);
			FUZZ_CHECK(h.len >= PKT_HDR_LEN && h.len <= max_len);
			FUZZ_CHECK(h.type == data[pos] && h.len - 1 == get_be32(data + pos + 1));
			if (h.len > avail)
				break;
			size_t blen = h.len - PKT_HDR_LEN;
			uint8_t *body = copy_exact(data + pos + PKT_HDR_LEN, blen);
			fuzz_error(body, blen);
			fuzz_notification(body, blen);
			fuzz_reader(body, blen);
			free(body);
			pos += h.len;
		}
	}
}

static bool within(const char *p, size_t n, const uint8_t *buf, size_t len)
{
	return p >= (const char *)buf && p + n <= (const char *)buf + len;
}

static void fuzz_http(const uint8_t *in, size_t size)
{
	struct http_request r;
	int rc = http_parse_request((const char *)in, size, &r);
	FUZZ_CHECK(rc == HTTP_PARSE_COMPLETE || rc == HTTP_PARSE_INCOMPLETE ||
		   rc == HTTP_PARSE_MALFORMED || rc == HTTP_PARSE_TOO_LARGE);
	if (rc == HTTP_PARSE_INCOMPLETE)
		FUZZ_CHECK(size < HTTP_MAX_HEAD);
	if (rc != HTTP_PARSE_COMPLETE)
		return;
	FUZZ_CHECK(r.head_len <= size && r.head_len <= HTTP_MAX_HEAD);
	FUZZ_CHECK(r.method_len > 0 && within(r.method, r.method_len, in, r.head_len));
	/* The path is within the head, or the static "/" of an absolute target without one. */
	FUZZ_CHECK(r.path_len > 0 && (within(r.path, r.path_len, in, r.head_len) ||
				      (r.path_len == 1 && r.path[0] == '/')));
	FUZZ_CHECK(!r.query || within(r.query, r.query_len, in, r.head_len));
	FUZZ_CHECK(r.version_minor == 0 || r.version_minor == 1);
	/* Stateless: the head alone parses to the same head. */
	uint8_t *head = copy_exact(in, r.head_len);
	struct http_request again;
	FUZZ_CHECK(http_parse_request((const char *)head, r.head_len, &again) ==
		   HTTP_PARSE_COMPLETE);
	FUZZ_CHECK(again.head_len == r.head_len && again.path_len == r.path_len);
	free(head);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > FUZZ_MAX_INPUT)
		size = FUZZ_MAX_INPUT;
	uint8_t *in = copy_exact(data, size);
	fuzz_startup(in, size);
	/* The input as an "options" value, up to its first NUL. */
	char *text = xstrndup((const char *)in, size);
	fuzz_options(text);
	free(text);
	/* A realistic limit, and a tiny one that makes TOO_LARGE common. */
	fuzz_stream(in, size, 1u << 20, (uint32_t)size * 2654435761u);
	fuzz_stream(in, size, 64, (uint32_t)size + 0x9e3779b9u);
	fuzz_http(in, size);
	free(in);
	return 0;
}
