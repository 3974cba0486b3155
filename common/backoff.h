/* backoff — delay schedules with jitter for reconnects and rejoins. */
#ifndef PHX_BACKOFF_H
#define PHX_BACKOFF_H

#define BACKOFF_MAX_STEPS 16

struct backoff {
	unsigned steps_ms[BACKOFF_MAX_STEPS];
	unsigned nsteps;
	unsigned attempt;       /* tries since the last reset */
	unsigned jitter_pct;    /* +- this percentage, 0..100 */
};

/* Phoenix JS client schedules (ms). */
extern const char BACKOFF_RECONNECT_DEFAULT[];
extern const char BACKOFF_REJOIN_DEFAULT[];

/* Parses "10,50,100" into b (1..BACKOFF_MAX_STEPS positive values);
 * 0 or -EINVAL. */
int backoff_parse(struct backoff *b, const char *spec, unsigned jitter_pct);
/* Delay for the next attempt, in ms, and counts the attempt.  rnd is a
 * random value (any 32 bits) that picks the jitter. */
unsigned backoff_next(struct backoff *b, unsigned rnd);
static inline void backoff_reset(struct backoff *b) { b->attempt = 0; }

#endif
