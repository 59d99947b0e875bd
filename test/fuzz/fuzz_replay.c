/*
 * fuzz_replay.c - runs the fuzz target without libFuzzer, so its checks run in
 * every build (and under ASan/UBSan in the sanitizer build).
 *
 * It feeds LLVMFuzzerTestOneInput the files of its corpus directory (the
 * first argument: test/fuzz/corpus/fuzz_pkt), a table of handcrafted hostile inputs and
 * then a fixed number of pseudo-random ones from a fixed seed: plain noise,
 * streams of plausible message headers with noisy bodies, and startup packets
 * with noisy parameter lists. The same seed gives the same inputs on every
 * machine, so a failure here reproduces. It does not search for new inputs;
 * that is libFuzzer's job with -Dfuzz=true.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "sluice/buf.h"
#include "sluice/pkt.h"

#define RANDOM_INPUTS 20000
#define SEED 0x5eed1234u

#define IN(s) { (const uint8_t *)(s), sizeof(s) - 1 }

struct input {
	const uint8_t *p;
	size_t len;
};

/* clang-format off */
static const struct input nasty[] = {
	IN(""),
	IN("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
	IN("GET http://h:9/ready?x=1 HTTP/1.0\n\n"),
	IN("GET / HTTP/1.1\r\nBad Header\r\n\r\n"),
	IN("Q"),
	IN("Q\0\0\0"),
	IN("Q\0\0\0\0"),                             /* length 0 */
	IN("Q\0\0\0\3"),                             /* length 3 */
	IN("Q\0\0\0\4"),                             /* empty body */
	IN("Q\xff\xff\xff\xff"),                     /* length 0xFFFFFFFF */
	IN("Q\xff\xff\xff\xfe" "abc"),               /* truncated huge body */
	IN("Q\x80\0\0\0"),
	IN("Q\0\0\0\x0dSELECT 1\0Z\0\0\0\5I"),       /* Query + ReadyForQuery */
	IN("E\0\0\0\x15SERROR\0Mno code\0\0"),       /* ErrorResponse without C */
	IN("E\0\0\0\x0bSERROR"),                     /* unterminated field */
	IN("E\0\0\0\x05S"),
	IN("E\0\0\0\x04"),                           /* empty ErrorResponse */
	IN("E\0\0\0\x05\0"),                         /* no fields */
	IN("N\0\0\0\x0eVFATAL\0C\0\0\0"),
	IN("\0\0\0\x08\x04\xd2\x16\x2f"),            /* SSLRequest */
	IN("\0\0\0\x08\x04\xd2\x16\x30"),            /* GSSENCRequest */
	IN("\0\0\0\x10\x04\xd2\x16\x2e\0\0\0\1\0\0\0\2"), /* CancelRequest */
	IN("\0\0\0\x0c\x04\xd2\x16\x2e\0\0\0\1"),    /* CancelRequest, 12 bytes */
	IN("\0\0\0\x0c\0\3\0\0user"),                /* unterminated key */
	IN("\0\0\0\x0d\0\3\0\0user\0"),              /* key without value */
	IN("\0\0\0\x11\0\3\0\0user\0bob\0"),         /* missing final NUL */
	IN("\0\0\0\x12\0\3\0\0user\0bob\0\0"),       /* good */
	IN("\0\0\0\x13\0\3\0\0user\0bob\0\0"),       /* length word too long */
	IN("\0\0\0\x07\0\3\0\0"),
	IN("\0\0\x27\x11\0\3\0\0"),                  /* length 10001 */
	IN("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"),
	IN("\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"),
};
/* clang-format on */

/* xorshift32; the generator is part of the test's reproducibility. */
static uint32_t rnd(uint32_t *s)
{
	uint32_t x = *s;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	*s = x;
	return x;
}

/* A noisy byte: NULs and protocol letters are common, as parsers care about them. */
static uint8_t noisy_byte(uint32_t *s)
{
	static const uint8_t favourite[] = { 0, 0, 0, 'S', 'V', 'C', 'M', 'D', 0xff, 'E', 'Z' };
	uint32_t r = rnd(s);
	if (r % 3 == 0)
		return favourite[(r >> 8) % ARRAY_SIZE(favourite)];
	return (uint8_t)(r >> 16);
}

/* Messages with plausible headers; lengths are sometimes off by a little or a lot. */
static void gen_stream(struct buf_out *o, uint32_t *s)
{
	static const uint8_t types[] = { 'E', 'N', 'Q', 'Z', 'R', 'S', 'D', 'X', 'p' };
	int n = 1 + (int)(rnd(s) % 12);
	for (int i = 0; i < n; i++) {
		uint32_t body = rnd(s) % 64;
		if (rnd(s) % 50 == 0)
			body = rnd(s) % 4000;
		uint32_t len = body + 4;
		switch (rnd(s) % 16) {
		case 0: len = rnd(s) % 4; break;
		case 1: len += 1; break;
		case 2: len -= 1; break;
		case 3: len = rnd(s); break;
		default: break;
		}
		buf_out_put_u8(o, types[rnd(s) % ARRAY_SIZE(types)]);
		buf_out_put_be32(o, len);
		for (uint32_t j = 0; j < body; j++)
			buf_out_put_u8(o, noisy_byte(s));
	}
}

/* A startup packet: a code, then noisy strings, with an honest or lying length. */
static void gen_startup(struct buf_out *o, uint32_t *s)
{
	static const uint32_t codes[] = { PKT_PROTOCOL_3_0, PKT_CANCEL_REQUEST_CODE,
					  PKT_SSL_REQUEST_CODE, PKT_GSSENC_REQUEST_CODE, 0x00020000u };
	buf_out_put_be32(o, 0);
	buf_out_put_be32(o, codes[rnd(s) % ARRAY_SIZE(codes)]);
	uint32_t n = rnd(s) % 8 == 0 ? rnd(s) % 300 : rnd(s) % 24;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t k = rnd(s) % 6;
		for (uint32_t j = 0; j < k; j++)
			buf_out_put_u8(o, (uint8_t)('a' + rnd(s) % 26));
		if (rnd(s) % 10 != 0)
			buf_out_put_u8(o, 0);
	}
	if (rnd(s) % 4 != 0)
		buf_out_put_u8(o, 0);
	uint32_t len = (uint32_t)o->len;
	if (rnd(s) % 6 == 0)
		len += (uint32_t)(rnd(s) % 5) - 2;
	put_be32(o->data, len);
}

int main(int argc, char **argv)
{
	int corpus = fuzz_replay_corpus(argc, argv);
	for (size_t i = 0; i < ARRAY_SIZE(nasty); i++)
		(void)LLVMFuzzerTestOneInput(nasty[i].p, nasty[i].len);

	/* StartupMessages with exactly PKT_STARTUP_MAX_PARAMS parameters and one more. */
	struct buf_out o;
	buf_out_init(&o);
	for (int extra = 0; extra <= 1; extra++) {
		static const char *const kv[] = { "k", "v" };
		const char *keys[PKT_STARTUP_MAX_PARAMS + 1], *vals[PKT_STARTUP_MAX_PARAMS + 1];
		for (int i = 0; i < PKT_STARTUP_MAX_PARAMS + extra; i++) {
			keys[i] = kv[0];
			vals[i] = kv[1];
		}
		buf_out_reset(&o);
		pkt_put_StartupMessage(&o, keys, vals, PKT_STARTUP_MAX_PARAMS + extra);
		(void)LLVMFuzzerTestOneInput(o.data, o.len);
	}

	/* A stream far above the startup limit, made of many small messages. */
	buf_out_reset(&o);
	while (o.len < 300 * 1024)
		pkt_put_ErrorResponse(&o, "ERROR", "42P01", "relation does not exist");
	(void)LLVMFuzzerTestOneInput(o.data, o.len);

	uint32_t s = SEED;
	for (int i = 0; i < RANDOM_INPUTS; i++) {
		buf_out_reset(&o);
		switch (rnd(&s) % 3) {
		case 0: {
			uint32_t n = rnd(&s) % 512;
			for (uint32_t j = 0; j < n; j++)
				buf_out_put_u8(&o, noisy_byte(&s));
			break;
		}
		case 1: gen_stream(&o, &s); break;
		default: gen_startup(&o, &s); break;
		}
		(void)LLVMFuzzerTestOneInput(o.data ? o.data : (const uint8_t *)"", o.len);
	}
	buf_out_deinit(&o);
	printf("fuzz_pkt replay: %d corpus files, %zu handcrafted, 2 startup, 1 long stream, %d "
	       "pseudo-random inputs (seed %#x)\n",
	       corpus, ARRAY_SIZE(nasty), RANDOM_INPUTS, SEED);
	return EXIT_SUCCESS;
}
