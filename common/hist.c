#include "hist.h"

const uint64_t hist_bounds_us[HIST_NBUCKETS] = {
	100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000,
	500000, 1000000, 2500000, 5000000, 10000000,
};

uint64_t hist_quantile_us(const struct hist *h, double q)
{
	if (h->total == 0)
		return 0;
	if (q < 0)
		q = 0;
	if (q > 1)
		q = 1;
	double rank = q * (double)h->total;
	uint64_t seen = 0;
	for (unsigned i = 0; i <= HIST_NBUCKETS; i++) {
		if (h->count[i] == 0 || (double)(seen + h->count[i]) < rank) {
			seen += h->count[i];
			continue;
		}
		if (i == HIST_NBUCKETS)
			return hist_bounds_us[HIST_NBUCKETS - 1]; /* beyond the last bound */
		uint64_t lo = i ? hist_bounds_us[i - 1] : 0, hi = hist_bounds_us[i];
		double frac = ((rank - (double)seen) / (double)h->count[i]);
		if (frac < 0)
			frac = 0;
		return lo + (uint64_t)(frac * (double)(hi - lo));
	}
	return hist_bounds_us[HIST_NBUCKETS - 1];
}
