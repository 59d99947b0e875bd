/*
 * common.h - the few helpers every module may use: allocation that aborts on
 * out-of-memory (the only process exit outside main.c), container_of for
 * handles embedded in their owner, and attribute shorthands.
 *
 * It owns no state. Anything that belongs to one concern lives in that
 * concern's module, not here.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WUR __attribute__((warn_unused_result))
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif
#ifndef MAX
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#endif

/*
 * Allocation wrappers. Out of memory is not a per-connection condition we can
 * recover from sensibly, so these print one line and abort. Per-connection
 * growth is bounded by configuration and fails the connection with 54000
 * before it ever gets here.
 */
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/*
 * The one place the process gives up: memory (or, inside OpenSSL, the
 * resources its primitives allocate) is exhausted. what names the caller.
 */
__attribute__((noreturn)) void xoom(const char *what);
/* printf into a fresh heap string; the caller frees it. */
char *xasprintf(const char *fmt, ...) PRINTF_LIKE(1, 2);

/* Constant-time comparison of two equally long secrets. */
bool mem_equal_ct(const void *a, const void *b, size_t n);

/* Big-endian helpers used by the wire protocol code. */
static inline uint32_t get_be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)(((uint16_t)p[0] << 8) | p[1]);
}
static inline void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}
static inline void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}
