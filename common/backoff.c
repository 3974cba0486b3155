#include "backoff.h"

#include <errno.h>
#include <stdlib.h>

const char BACKOFF_RECONNECT_DEFAULT[] = "10,50,100,150,200,250,500,1000,2000,5000";
const char BACKOFF_REJOIN_DEFAULT[] = "1000,2000,5000,10000";

int backoff_parse(struct backoff *b, const char *spec, unsigned jitter_pct)
{
	struct backoff nb = { .jitter_pct = jitter_pct > 100 ? 100 : jitter_pct };
	const char *p = spec;

	while (*p) {
		while (*p == ' ')
			p++;
		char *end;
		errno = 0;
		unsigned long v = strtoul(p, &end, 10);
		if (end == p || errno || v == 0 || v > 3600000UL)
			return -EINVAL;
		if (nb.nsteps == BACKOFF_MAX_STEPS)
			return -EINVAL;
		nb.steps_ms[nb.nsteps++] = (unsigned)v;
		p = end;
		while (*p == ' ')
			p++;
		if (*p == ',') {
			p++;
			if (!*p)
				return -EINVAL;
		} else if (*p) {
			return -EINVAL;
		}
	}
	if (nb.nsteps == 0)
		return -EINVAL;
	*b = nb;
	return 0;
}

unsigned backoff_next(struct backoff *b, unsigned rnd)
{
	unsigned i = b->attempt < b->nsteps ? b->attempt : b->nsteps - 1;
	unsigned base = b->steps_ms[i];
	if (b->attempt < 0xFFFFu)
		b->attempt++;
	if (!b->jitter_pct)
		return base;
	/* uniform in [base*(1-j), base*(1+j)] */
	unsigned long long span = (unsigned long long)base * b->jitter_pct / 100;
	unsigned long long lo = base - span;
	unsigned long long d = lo + rnd % (span * 2 + 1);
	return d ? (unsigned)d : 1;
}
