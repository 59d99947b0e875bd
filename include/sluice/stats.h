/*
 * stats.h - counters, per-period averages and histograms of pool activity.
 *
 * Each pool owns one struct pool_stats and its modules bump the counters on
 * the events they see (server.c: queries, transactions, bytes from servers;
 * client.c: bytes from clients, Parse/Bind, logins; pool.c: assignments and
 * waits). Totals are monotonic since the pool was created. Every
 * stats_period the worker rolls each pool's period (stats_roll), and averages
 * are computed as PgBouncer computes them: counts and bytes per second over
 * the last complete period; transaction, query and wait times as the mean of
 * that period's events (microseconds). The admin console and /metrics read
 * only through the functions here and in pool.h.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* The counters PgBouncer reports in SHOW STATS, in its column order. */
#define STATS_COUNTERS(X)                                                                          \
	X(server_assignment_count)                                                                 \
	X(xact_count)                                                                              \
	X(query_count)                                                                             \
	X(bytes_received)                                                                          \
	X(bytes_sent)                                                                              \
	X(xact_time)                                                                               \
	X(query_time)                                                                              \
	X(wait_time)                                                                               \
	X(client_parse_count)                                                                      \
	X(server_parse_count)                                                                      \
	X(bind_count)                                                                              \
	X(client_login_count)

struct stats_counters {
#define X(name) uint64_t name;
	STATS_COUNTERS(X)
#undef X
};

/* Histogram bucket upper bounds, in seconds (Prometheus `le`), +Inf implied. */
#define STATS_HIST_BUCKETS 14
extern const double stats_hist_bounds[STATS_HIST_BUCKETS];

struct stats_hist {
	uint64_t bucket[STATS_HIST_BUCKETS + 1]; /* non-cumulative; last is +Inf */
	uint64_t count;
	uint64_t sum_us;
};

/* Why a server connection was closed (SHOW POOL_WAITS, metrics). */
#define STATS_CLOSE_REASONS(X)                                                                     \
	X(lifetime)                                                                                \
	X(idle)                                                                                    \
	X(error)                                                                                   \
	X(reload)                                                                                  \
	X(other)

enum stats_close_reason {
#define X(name) STATS_CLOSE_##name,
	STATS_CLOSE_REASONS(X)
#undef X
		STATS_CLOSE_COUNT
};

struct pool_stats {
	struct stats_counters total;
	/* Totals at the start and end of the last complete period. */
	struct stats_counters period_start;
	struct stats_counters period_end;
	uint64_t wait_count; /* assignments that had to wait */
	uint64_t max_wait_us;
	uint64_t timeout_count; /* clients failed by query_wait_timeout */
	uint64_t reuse_count; /* assignments served by a server that had served before */
	uint64_t servers_opened;
	uint64_t servers_closed[STATS_CLOSE_COUNT];
	struct stats_hist wait_hist; /* time clients waited for a server */
	struct stats_hist xact_hist; /* transaction duration */
};

void stats_hist_add(struct stats_hist *h, uint64_t us);
/* Ends the current period: period_start <- period_end <- total. */
void stats_roll(struct pool_stats *s);
/* a += b, field by field. */
void stats_counters_add(struct stats_counters *a, const struct stats_counters *b);
/* a += b for every counter and histogram; max_wait_us is the larger one. */
void stats_pool_add(struct pool_stats *a, const struct pool_stats *b);
/*
 * Averages over a period from its start and end totals (PgBouncer's
 * calc_average): counts and bytes per second; xact_time per transaction,
 * query_time per query, wait_time per assignment, in microseconds.
 */
void stats_average(const struct stats_counters *start, const struct stats_counters *end,
		   double period_s, struct stats_counters *avg);
const char *stats_close_reason_name(enum stats_close_reason r);
