/*
 * fuzz_tls_startup.c - fuzz target for the TLS-wrapped startup path: what
 * a client sends once its SSLRequest was answered 'S' and the handshake is
 * done, through the TLS engines (tls.c) of both sides and into the startup
 * parsers (pkt_frame_startup, pkt_parse_startup, pkt_parse_options), then
 * the framing of the password messages that follow (pkt_frame).
 *
 * Input: two control bytes, then the client's plaintext. The first byte
 * sets how the ciphertext reaches the accepting engine (1 to 1786 bytes per
 * delivery, as the socket would cut it), the second how the client writes
 * the plaintext (in pieces of 1 to 1021 bytes, one TLS record or more
 * each). After each delivery the accepting engine's plaintext is read and
 * parsed as client.c's login reader would: startup packets while no
 * StartupMessage came (an encryption request inside TLS, a CancelRequest,
 * or a malformed packet ends the connection), then password messages.
 *
 * Checks: the accepting engine gives back exactly the plaintext sent, in
 * order, however it was cut; a packet the framer accepts is within
 * PKT_STARTUP_MAX and parses within its length; parameters are strings
 * within the packet; password messages frame within client.c's bound. Parsed bytes sit in exact-size heap copies, so any read past
 * them is an AddressSanitizer error.
 *
 * The pair of engines is made once, by a real handshake in memory, and
 * kept across inputs (a handshake per input would cost more than the
 * parsing): what the input changes is only the records' content and
 * cutting, and parser failures reproduce from the input alone. A pair
 * that fails or closes is replaced.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "sluice/pkt.h"
#include "sluice/tls.h"

/* More than a startup packet and a few password messages. */
#define FUZZ_MAX_INPUT (64u * 1024u)
/* client.c's bound on a message during authentication (CLIENT_AUTH_MAX). */
#define AUTH_MESSAGE_MAX (65536 + PKT_HDR_LEN + 1)

static struct tls_ctx *accept_ctx, *connect_ctx;
static struct tls_conn *client, *server;

/* Moves everything one engine has to send into the other. */
static void pump(struct tls_conn *from, struct tls_conn *to)
{
	uint8_t buf[4096];
	while (tls_conn_pending(from) > 0) {
		size_t n = tls_conn_take(from, buf, sizeof(buf));
		FUZZ_CHECK(n > 0);
		tls_conn_feed(to, buf, n);
	}
}

/* A connected pair: the handshake run in memory, both sides done. */
static void connect_pair(void)
{
	tls_conn_free(client);
	tls_conn_free(server);
	client = tls_conn_new(connect_ctx, "localhost");
	server = tls_conn_new(accept_ctx, NULL);
	enum tls_status cs = TLS_WANT, ss = TLS_WANT;
	for (int round = 0; round < 10 && (cs != TLS_OK || ss != TLS_OK); round++) {
		if (cs != TLS_OK)
			cs = tls_conn_handshake(client);
		pump(client, server);
		if (ss != TLS_OK)
			ss = tls_conn_handshake(server);
		pump(server, client);
		FUZZ_CHECK(cs != TLS_FAILED && ss != TLS_FAILED);
	}
	FUZZ_CHECK(cs == TLS_OK && ss == TLS_OK);
	/* The client reads what the server sent after the handshake (TLS 1.3 tickets). */
	uint8_t buf[256];
	enum tls_status st;
	while (tls_conn_read(client, buf, sizeof(buf), &st) > 0)
		FUZZ_CHECK(0); /* the server sent no data */
	FUZZ_CHECK(st == TLS_WANT);
}

static uint8_t *copy_exact(const uint8_t *p, size_t n)
{
	uint8_t *c = malloc(n ? n : 1);
	FUZZ_CHECK(c != NULL);
	memcpy(c, p, n);
	return c;
}

/* What the login reader has seen of the decrypted stream. */
struct login {
	uint8_t *buf; /* decrypted bytes, in order */
	size_t len, cap;
	size_t pos; /* the next unparsed byte */
	bool have_startup; /* a StartupMessage came: password messages follow */
	bool ended; /* the connection would have been closed */
};

/* One startup-phase packet at l->pos; false when the reader must wait or stop. */
static bool read_startup(struct login *l)
{
	size_t avail = l->len - l->pos;
	uint32_t len = 0;
	int rc = pkt_frame_startup(l->buf + l->pos, avail, &len);
	if (rc == PKT_INCOMPLETE) {
		FUZZ_CHECK(avail < 4);
		return false;
	}
	if (rc != PKT_OK) {
		l->ended = true;
		return false;
	}
	FUZZ_CHECK(len >= 8 && len <= PKT_STARTUP_MAX);
	if (len > avail)
		return false;
	uint8_t *p = copy_exact(l->buf + l->pos, len);
	struct pkt_startup sp;
	rc = pkt_parse_startup(p, len, &sp);
	l->pos += len;
	if (rc != PKT_OK) {
		l->ended = true;
		free(p);
		return false;
	}
	if (sp.code == PKT_SSL_REQUEST_CODE || sp.code == PKT_GSSENC_REQUEST_CODE ||
	    sp.code == PKT_CANCEL_REQUEST_CODE) {
		/* Encryption asked for inside TLS, or a cancel: the connection ends here. */
		l->ended = true;
		free(p);
		return false;
	}
	FUZZ_CHECK(sp.nparams >= 0 && sp.nparams <= PKT_STARTUP_MAX_PARAMS);
	size_t total = 0;
	for (int i = 0; i < sp.nparams; i++) {
		FUZZ_CHECK((const uint8_t *)sp.keys[i] >= p && (const uint8_t *)sp.vals[i] < p + len);
		total += strlen(sp.keys[i]) + strlen(sp.vals[i]) + 2;
	}
	FUZZ_CHECK(total <= len);
	const char *opts = pkt_startup_get(&sp, "options");
	if (opts) {
		struct pkt_options o;
		char err[64];
		if (pkt_parse_options(opts, &o, err, sizeof(err)) == PKT_OK)
			pkt_options_free(&o);
	}
	l->have_startup = true;
	free(p);
	return true;
}

/* One password message at l->pos, framed as during authentication. */
static bool read_password(struct login *l)
{
	size_t avail = l->len - l->pos;
	struct pkt_hdr h;
	int rc = pkt_frame(l->buf + l->pos, avail, AUTH_MESSAGE_MAX, &h);
	if (rc == PKT_INCOMPLETE)
		return false;
	if (rc != PKT_OK || h.type != PKT_PasswordMessage) {
		l->ended = true;
		return false;
	}
	FUZZ_CHECK(h.len >= PKT_HDR_LEN && h.len <= AUTH_MESSAGE_MAX);
	if (h.len > avail)
		return false;
	uint8_t *body = copy_exact(l->buf + l->pos + PKT_HDR_LEN, h.len - PKT_HDR_LEN);
	struct pkt_reader r;
	pkt_reader_init(&r, body, h.len - PKT_HDR_LEN);
	const char *s = pkt_get_cstr(&r);
	FUZZ_CHECK(r.bad || (s && (const uint8_t *)s == body));
	free(body);
	l->pos += h.len;
	return true;
}

/* The accepting side's read callback: decrypt what arrived, then parse what is whole. */
static void server_read(struct login *l)
{
	for (;;) {
		uint8_t plain[2048];
		enum tls_status st;
		size_t n = tls_conn_read(server, plain, sizeof(plain), &st);
		if (n == 0) {
			FUZZ_CHECK(st == TLS_WANT);
			break;
		}
		FUZZ_CHECK(l->len + n <= l->cap);
		memcpy(l->buf + l->len, plain, n);
		l->len += n;
	}
	while (!l->ended && l->pos < l->len)
		if (!(l->have_startup ? read_password(l) : read_startup(l)))
			break;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!accept_ctx)
		fuzz_tls_contexts(&accept_ctx, &connect_ctx);
	if (!client)
		connect_pair();
	if (size < 2)
		return 0;
	if (size > FUZZ_MAX_INPUT)
		size = FUZZ_MAX_INPUT;
	size_t deliver = 1 + (size_t)data[0] * 7;
	size_t piece = 1 + (size_t)data[1] * 4;
	const uint8_t *text = data + 2;
	size_t len = size - 2;

	struct login l = { .cap = len ? len : 1 };
	l.buf = malloc(l.cap);
	FUZZ_CHECK(l.buf != NULL);
	/* The client writes its plaintext in pieces; the ciphertext arrives in other cuts. */
	uint8_t *wire = NULL;
	size_t wire_len = 0;
	for (size_t off = 0; off < len; off += piece) {
		size_t n = len - off < piece ? len - off : piece;
		FUZZ_CHECK(tls_conn_write(client, text + off, n) == TLS_OK);
		size_t pending = tls_conn_pending(client);
		wire = realloc(wire, wire_len + pending);
		FUZZ_CHECK(wire != NULL || wire_len + pending == 0);
		FUZZ_CHECK(tls_conn_take(client, wire + wire_len, pending) == pending);
		wire_len += pending;
	}
	for (size_t off = 0; off < wire_len; off += deliver) {
		size_t n = wire_len - off < deliver ? wire_len - off : deliver;
		tls_conn_feed(server, wire + off, n);
		server_read(&l);
	}
	/* Whatever the cuts, the server got the client's bytes, all of them, in order. */
	FUZZ_CHECK(l.len == len && (len == 0 || memcmp(l.buf, text, len) == 0));
	FUZZ_CHECK(!tls_conn_has_input(server));
	free(wire);
	free(l.buf);
	return 0;
}
