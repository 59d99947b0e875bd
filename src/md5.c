/*
 * md5.c - MD5 as RFC 1321 describes it (see md5.h): a 64-byte block at a
 * time, four rounds of sixteen steps over four 32-bit words.
 */
#include "sluice/md5.h"

#include <string.h>

/* The sines table of RFC 1321, 3.4: floor(2^32 * abs(sin(i + 1))). */
static const uint32_t K[64] = {
	0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613,
	0xfd469501, 0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193,
	0xa679438e, 0x49b40821, 0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d,
	0x02441453, 0xd8a1e681, 0xe7d3fbc8, 0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed,
	0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a, 0xfffa3942, 0x8771f681, 0x6d9d6122,
	0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70, 0x289b7ec6, 0xeaa127fa,
	0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665, 0xf4292244,
	0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
	0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb,
	0xeb86d391,
};

/* The rotation of step i: a round repeats its four. */
static const uint8_t S[4][4] = {
	{ 7, 12, 17, 22 }, { 5, 9, 14, 20 }, { 4, 11, 16, 23 }, { 6, 10, 15, 21 }
};
#define SHIFT(i) S[(i) >> 4][(i)&3]
/* The word of the block step i reads. */
#define WORD(i)                                                                                    \
	((i) < 16   ? (i)                                                                          \
	 : (i) < 32 ? (5 * (i) + 1) & 15                                                           \
	 : (i) < 48 ? (3 * (i) + 5) & 15                                                           \
		    : (7 * (i)) & 15)

/* The four rounds' functions of b, c, d. */
#define F(b, c, d) ((d) ^ ((b) & ((c) ^ (d))))
#define G(b, c, d) ((c) ^ ((d) & ((b) ^ (c))))
#define H(b, c, d) ((b) ^ (c) ^ (d))
#define I(b, c, d) ((c) ^ ((b) | ~(d)))

/*
 * Step i mixes fn(b, c, d) and a word of the block into a. Written out, not
 * looped: with i a constant the word, the rotation and K[i] fold into the
 * instructions, and the words change roles by renaming (a loop was three
 * times the instructions; GCC did not unroll it).
 */
#define STEP(fn, a, b, c, d, i) (a) = (b) + rotl((a) + fn(b, c, d) + K[i] + x[WORD(i)], SHIFT(i))
/* Four steps: after each, the words move one place, (a, b, c, d) -> (d, a, b, c). */
#define STEP4(fn, i)                                                                               \
	STEP(fn, a, b, c, d, (i));                                                                 \
	STEP(fn, d, a, b, c, (i) + 1);                                                             \
	STEP(fn, c, d, a, b, (i) + 2);                                                             \
	STEP(fn, b, c, d, a, (i) + 3)

static inline uint32_t rotl(uint32_t x, unsigned n)
{
	return (x << n) | (x >> (32 - n));
}

static inline uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void block(uint32_t h[4], const uint8_t *p)
{
	uint32_t x[16];
	for (int i = 0; i < 16; i++)
		x[i] = get_le32(p + 4 * i);
	uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
	STEP4(F, 0);
	STEP4(F, 4);
	STEP4(F, 8);
	STEP4(F, 12);
	STEP4(G, 16);
	STEP4(G, 20);
	STEP4(G, 24);
	STEP4(G, 28);
	STEP4(H, 32);
	STEP4(H, 36);
	STEP4(H, 40);
	STEP4(H, 44);
	STEP4(I, 48);
	STEP4(I, 52);
	STEP4(I, 56);
	STEP4(I, 60);
	h[0] += a;
	h[1] += b;
	h[2] += c;
	h[3] += d;
}

void md5_init(struct md5 *m)
{
	m->h[0] = 0x67452301;
	m->h[1] = 0xefcdab89;
	m->h[2] = 0x98badcfe;
	m->h[3] = 0x10325476;
	m->len = 0;
}

void md5_update(struct md5 *m, const void *data, size_t n)
{
	const uint8_t *p = data;
	size_t have = (size_t)(m->len % 64);
	m->len += n;
	if (have) {
		size_t take = 64 - have < n ? 64 - have : n;
		memcpy(m->buf + have, p, take);
		p += take;
		n -= take;
		if (have + take < 64)
			return;
		block(m->h, m->buf);
	}
	for (; n >= 64; p += 64, n -= 64)
		block(m->h, p);
	memcpy(m->buf, p, n);
}

void md5_final(struct md5 *m, uint8_t out[MD5_LEN])
{
	/* A 1 bit, zeros up to 56 bytes into a block, the length in bits (little-endian). */
	uint64_t bits = m->len * 8;
	size_t have = (size_t)(m->len % 64);
	m->buf[have++] = 0x80;
	if (have > 56) {
		memset(m->buf + have, 0, 64 - have);
		block(m->h, m->buf);
		have = 0;
	}
	memset(m->buf + have, 0, 56 - have);
	put_le32(m->buf + 56, (uint32_t)bits);
	put_le32(m->buf + 60, (uint32_t)(bits >> 32));
	block(m->h, m->buf);
	for (int i = 0; i < 4; i++)
		put_le32(out + 4 * i, m->h[i]);
	explicit_bzero(m, sizeof(*m));
}
