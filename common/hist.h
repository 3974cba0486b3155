/* hist — a fixed-bucket latency histogram (Prometheus-style cumulative
 * export), cheap enough for the hot path: one comparison loop over a few
 * bucket bounds and two additions per observation. */
#ifndef PHX_HIST_H
#define PHX_HIST_H

#include <stdint.h>

#define HIST_NBUCKETS 16

struct hist {
	uint64_t count[HIST_NBUCKETS + 1]; /* per bucket; the last is +Inf */
	uint64_t total;
	uint64_t sum_us;
};

/* Upper bounds of the buckets, in microseconds (ascending). */
extern const uint64_t hist_bounds_us[HIST_NBUCKETS];

static inline void hist_observe_us(struct hist *h, uint64_t us)
{
	unsigned i = 0;
	while (i < HIST_NBUCKETS && us > hist_bounds_us[i])
		i++;
	h->count[i]++;
	h->total++;
	h->sum_us += us;
}

/* The q-quantile (0..1) in microseconds, interpolated inside its bucket;
 * 0 when empty. */
uint64_t hist_quantile_us(const struct hist *h, double q);

#endif
