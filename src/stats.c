/*
 * stats.c - period arithmetic and histograms for pool statistics (see
 * stats.h). Nothing here walks pools or connections.
 */
#include "sluice/stats.h"

#include "sluice/common.h"

const double stats_hist_bounds[STATS_HIST_BUCKETS] = {
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
};

void stats_hist_add(struct stats_hist *h, uint64_t us)
{
	/* Bounds are seconds; compare in microseconds without floating point per event. */
	static const uint64_t bounds_us[STATS_HIST_BUCKETS] = {
		100,   250,   500,    1000,   2500,   5000,    10000,
		25000, 50000, 100000, 250000, 500000, 1000000, 5000000,
	};
	/* The first bound us does not pass (STATS_HIST_BUCKETS: +Inf), in four steps, not up to 14. */
	size_t i = 0, n = STATS_HIST_BUCKETS;
	while (n > 0) {
		size_t half = n / 2;
		if (us > bounds_us[i + half]) {
			i += half + 1;
			n -= half + 1;
		} else {
			n = half;
		}
	}
	h->bucket[i]++;
	h->count++;
	h->sum_us += us;
}

void stats_roll(struct pool_stats *s)
{
	s->period_start = s->period_end;
	s->period_end = s->total;
}

void stats_counters_add(struct stats_counters *a, const struct stats_counters *b)
{
#define X(name) a->name += b->name;
	STATS_COUNTERS(X)
#undef X
}

static void hist_add(struct stats_hist *a, const struct stats_hist *b)
{
	for (int i = 0; i <= STATS_HIST_BUCKETS; i++)
		a->bucket[i] += b->bucket[i];
	a->count += b->count;
	a->sum_us += b->sum_us;
}

void stats_pool_add(struct pool_stats *a, const struct pool_stats *b)
{
	stats_counters_add(&a->total, &b->total);
	stats_counters_add(&a->period_start, &b->period_start);
	stats_counters_add(&a->period_end, &b->period_end);
	a->wait_count += b->wait_count;
	a->max_wait_us = MAX(a->max_wait_us, b->max_wait_us);
	a->timeout_count += b->timeout_count;
	a->reuse_count += b->reuse_count;
	a->servers_opened += b->servers_opened;
	for (int i = 0; i < STATS_CLOSE_COUNT; i++)
		a->servers_closed[i] += b->servers_closed[i];
	hist_add(&a->wait_hist, &b->wait_hist);
	hist_add(&a->xact_hist, &b->xact_hist);
}

void stats_average(const struct stats_counters *start, const struct stats_counters *end,
		   double period_s, struct stats_counters *avg)
{
	struct stats_counters d;
#define X(name) d.name = end->name - start->name;
	STATS_COUNTERS(X)
#undef X
	if (period_s <= 0)
		period_s = 1;
#define X(name) avg->name = (uint64_t)((double)d.name / period_s);
	STATS_COUNTERS(X)
#undef X
	avg->xact_time = d.xact_count ? d.xact_time / d.xact_count : 0;
	avg->query_time = d.query_count ? d.query_time / d.query_count : 0;
	avg->wait_time = d.server_assignment_count ? d.wait_time / d.server_assignment_count : 0;
}

const char *stats_close_reason_name(enum stats_close_reason r)
{
	static const char *const names[] = {
#define X(name) #name,
		STATS_CLOSE_REASONS(X)
#undef X
	};
	return r < STATS_CLOSE_COUNT ? names[r] : "other";
}
