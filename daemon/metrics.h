/* metrics — what phxd is doing, in numbers: samples, history, alerts and the
 * formatting of the aggregate control answers (STATS, METRICS, HISTORY,
 * ALERTS, REPORT).
 *
 * The data path only increments plain counters in its own structs (router,
 * up_conn, ipc_server) and observes the latency histograms; metrics reads
 * them, never writes.  Every metrics_interval a timer takes one sample
 * (RSS, clients, open upstreams, channels, message rates, push latency over
 * the interval, route cache hit rate, the deepest client queue) into a ring
 * of history_size samples allocated once, and checks the alert thresholds.
 * Everything else is formatted only when asked.
 *
 * The ring, the alert hysteresis and the Prometheus writer are pure and
 * tested on their own (tests/unit_metrics.c).
 */
#ifndef PHX_METRICS_H
#define PHX_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "hist.h"
#include "route_cache.h"

struct buf;
struct chan;
struct conf;
struct ipc_server;
struct router;

/* ---- a sticky-error writer over a buf -------------------------------------- */

/* Formatters append through this: after the first failure nothing more is
 * written and err keeps the error, so a caller checks once at the end. */
struct metrics_out {
	struct buf *b;
	int err;            /* 0 or the first negative errno */
};

void metrics_out_puts(struct metrics_out *o, const char *s);
void metrics_out_printf(struct metrics_out *o, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void metrics_out_u64(struct metrics_out *o, uint64_t v);
/* s[0..len) as a JSON string literal. */
void metrics_out_jstr(struct metrics_out *o, const char *s, size_t len);
/* A double as JSON (null when not finite), with at most 3 decimals. */
void metrics_out_jnum(struct metrics_out *o, double v);

/* ---- Prometheus text exposition format 0.0.4 ---------------------------------- */

enum metrics_type { METRICS_COUNTER, METRICS_GAUGE, METRICS_HISTOGRAM };

struct metrics_label {
	const char *name;   /* [a-zA-Z_][a-zA-Z0-9_]* */
	const char *value;  /* any UTF-8; escaped */
};

/* "# HELP name help\n# TYPE name type\n"; help is escaped (\\ and \n). */
void metrics_prom_family(struct metrics_out *o, const char *name, enum metrics_type type,
			 const char *help);
/* "name{l1="v1",...} value\n"; nl may be 0. */
void metrics_prom_u64(struct metrics_out *o, const char *name,
		      const struct metrics_label *l, size_t nl, uint64_t v);
void metrics_prom_double(struct metrics_out *o, const char *name,
			 const struct metrics_label *l, size_t nl, double v);
/* A whole histogram family from a struct hist (microseconds), in seconds:
 * cumulative name_bucket{le="..."} lines ending with le="+Inf", name_sum
 * and name_count (equal to the +Inf bucket). */
void metrics_prom_hist(struct metrics_out *o, const char *name, const char *help,
		       const struct hist *h);
/* A label value escaped (\\, \" and \n), without quotes. */
void metrics_prom_escape(struct metrics_out *o, const char *s);

/* ---- history ---------------------------------------------------------------- */

enum metrics_alert_id {
	METRICS_ALERT_MEMORY,       /* RSS above alert_memory */
	METRICS_ALERT_CACHE,        /* route cache hit rate below alert_cache_hit_rate */
	METRICS_ALERT_QUEUE,        /* deepest client output queue above alert_queue_depth */
	METRICS_ALERT_RESPONSE,     /* push p99 over the interval above alert_response_time,
				       timeouts counted as slower than any reply */
	METRICS_ALERT_COUNT,
};

struct metrics_sample {
	uint64_t wall_ms;           /* CLOCK_REALTIME, ms since the epoch */
	uint64_t mono_ms;           /* util_now_ms() */
	uint64_t rss;               /* bytes */
	uint64_t queue_max;         /* deepest client output queue, bytes */
	uint64_t msgs_in, msgs_out; /* cumulative: events from and pushes to upstreams */
	uint64_t cache_hits, cache_misses;  /* cumulative route cache lookups */
	uint32_t clients, ups_open, ups_total, channels;
	uint32_t push_count;        /* pushes answered during the interval */
	uint32_t push_timeouts;     /* pushes and joins that timed out during it */
	uint32_t push_p50_us, push_p99_us;  /* of those; 0 when none */
	float in_rate, out_rate;    /* messages per second over the interval */
	int16_t cache_hit_pct;      /* over the interval; -1: no lookups or no cache */
	uint16_t alerts;            /* bit per enum metrics_alert_id: firing */
};

/* A fixed ring of samples: memory allocated once, the oldest overwritten. */
struct metrics_ring {
	struct metrics_sample *s;
	size_t cap, n, head;        /* head: where the next sample goes */
};

/* 0 or -ENOMEM (cap 0 is taken as 1). */
int metrics_ring_init(struct metrics_ring *r, size_t cap);
void metrics_ring_free(struct metrics_ring *r);
/* The slot for a new sample (zeroed), the oldest one when full. */
struct metrics_sample *metrics_ring_push(struct metrics_ring *r);
/* age 0 is the newest sample; NULL when age >= n. */
const struct metrics_sample *metrics_ring_get(const struct metrics_ring *r, size_t age);

/* ---- alerts ----------------------------------------------------------------- */

/* When an alert fires and clears.  above: it fires when the value goes
 * above raise_at and clears when it falls to clear_at or below; otherwise
 * it fires below raise_at and clears at clear_at or above.  Either change
 * needs the condition in samples consecutive measured samples (unmeasured
 * ones neither count nor break the run), so one odd sample changes
 * nothing.  stale: after that many unmeasured samples in a row a firing
 * alert clears (its value is too old to stand for the present); 0: never.
 * off: never fires (and clears at the next step if it was firing). */
struct metrics_rule {
	int above;
	int off;
	double raise_at, clear_at;
	unsigned samples;           /* 0 or 1: at the first sample */
	unsigned stale;
};

#define METRICS_ALERT_SAMPLES 3     /* consecutive samples to raise or clear */

struct metrics_alert {
	int active;
	int have;                   /* value was measured at the last step */
	int measured;               /* value was measured at some step */
	double value;               /* the last measured value */
	uint64_t since_ms;          /* wall clock of the last raise or clear; 0: never */
	uint64_t raised;            /* times raised */
	unsigned streak;            /* measured samples in a row that want a change */
	unsigned idle;              /* unmeasured samples in a row (up to rule->stale) */
	int stale;                  /* the last clear was for want of data */
	int timed_out;              /* response_time: the last value was a timeout */
};

/* One step of the hysteresis with a new measurement (have 0: nothing was
 * measured: the state is kept, unless the rule's stale count is reached).
 * Returns 1 when the alert was raised now, -1 when it cleared now, 0
 * otherwise. */
int metrics_alert_step(struct metrics_alert *a, const struct metrics_rule *r, int have,
		       double value);
/* The rule for a threshold: "above" alerts clear 10 % below it; the cache
 * alert (a percentage that fires below) clears 5 points above it.  A
 * threshold of 0 turns the alert off.  samples is
 * METRICS_ALERT_SAMPLES, stale 0. */
void metrics_rule_set(struct metrics_rule *r, int above, double threshold);

const char *metrics_alert_name(enum metrics_alert_id id);

/* The push reply time of one sampling interval for the response_time alert:
 * the p99 over the pushes answered in it (d, the latency histogram's
 * growth) and the timeouts in it, a timeout counting as slower than any
 * reply.  0 when the interval had neither (nothing measured); else 1 with
 * *ms: the p99 of the replies, or timeout_ms (a lower bound) with
 * *timed_out set when the p99 falls among the timeouts. */
int metrics_response_ms(const struct hist *d, uint64_t timeouts, double timeout_ms,
			double *ms, int *timed_out);
/* A sample value for the Prometheus text: the shortest decimal that reads
 * back as exactly v (up to 17 digits), NaN, +Inf or -Inf; into out (at least
 * 32 bytes). */
void metrics_prom_number(double v, char *out, size_t n);

/* ---- the live figures ---------------------------------------------------------- */

#define METRICS_UP_STATES 6         /* enum up_state */
#define METRICS_CHAN_STATES 4       /* enum chan_state */
#define METRICS_CACHE_MIN_LOOKUPS 20 /* lookups in the window before the cache alert judges */
#define METRICS_WINDOW_MS 60000     /* rates in REPORT and the cache alert look back this far */

struct metrics_now {
	uint64_t rss;
	unsigned clients;
	uint64_t queue_bytes, queue_max;    /* client output queues: total, deepest */
	uint64_t client_buf_bytes;          /* allocated client buffers */
	unsigned ups_total, ups_open;
	unsigned ups_state[METRICS_UP_STATES];
	uint64_t up_connects, up_reconnects, up_disconnects, up_frames_in, up_frames_out,
		 up_bytes_in, up_bytes_out, up_payload_in, up_payload_out, up_buf_bytes;
	size_t channels;
	/* with full only (walks every channel): */
	size_t chan_state[METRICS_CHAN_STATES];
	size_t subscribers;
	int have_cache;
	struct route_cache_stats cache;
};

/* ---- the module ------------------------------------------------------------- */

struct metrics {
	struct ev_loop *loop;
	const struct conf *conf;
	const struct router *rt;            /* read only */
	const struct ipc_server *ipc;       /* read only */
	ev_timer timer;                     /* every metrics_interval */
	struct metrics_ring ring;
	struct metrics_rule rules[METRICS_ALERT_COUNT];
	struct metrics_alert alerts[METRICS_ALERT_COUNT];
	struct hist prev_push;              /* push_latency at the last sample */
	uint64_t prev_timeouts;             /* router timeouts at the last sample */
	double timeout_ms;                  /* shortest push_timeout, for response_time */
	uint64_t start_ms, start_wall_ms;
	char status[128];                   /* "" or "alerts: memory, response_time" */
};

/* Allocates the ring (history_size samples) and sets the rules from conf; all
 * three pointers are borrowed for the life of m.  0 or -ENOMEM with err. */
int metrics_init(struct metrics *m, struct ev_loop *loop, const struct conf *conf,
		 const struct router *rt, const struct ipc_server *ipc,
		 char *err, size_t errlen);
/* After a reload: conf (which may be the same object, changed) gives the
 * new thresholds and metrics_interval; history_size stays until a restart.
 * Alerts that a threshold of 0 turns off clear at the next sample. */
void metrics_reload(struct metrics *m, const struct conf *conf);
/* Starts the sampling timer (the first sample after one interval). */
void metrics_start(struct metrics *m);
/* Stops the timer and frees the ring; m can be init'ed again. */
void metrics_fini(struct metrics *m);
/* Takes one sample now and checks the alerts (the timer calls this). */
void metrics_sample(struct metrics *m);

/* The current figures; full also walks every channel. */
void metrics_collect(const struct metrics *m, struct metrics_now *n, int full);
/* Resident set size from /proc/self/statm, bytes; 0 when unknown. */
uint64_t metrics_rss(void);
/* Short text for the service manager's status line: "" when no alert fires,
 * else "alerts: NAME, NAME".  Valid until the next sample. */
const char *metrics_alert_status(const struct metrics *m);

/* Every channel of every endpoint, busiest first (messages in + out);
 * malloc'ed (free it), *n set.  NULL with *n 0 when there are none or memory
 * is short (then *n is (size_t)-1). */
const struct chan **metrics_chans_by_traffic(const struct router *rt, size_t *n);

/* The answers.  Each appends to o: one JSON line without its newline for
 * STATS, HISTORY, ALERTS; lines ending with '\n' for METRICS and REPORT
 * (never an empty one). */
void metrics_fmt_stats(const struct metrics *m, struct metrics_out *o);
void metrics_fmt_prom(const struct metrics *m, struct metrics_out *o);
/* The newest n samples (all when n is 0), oldest first. */
void metrics_fmt_history(const struct metrics *m, struct metrics_out *o, size_t n);
void metrics_fmt_alerts(const struct metrics *m, struct metrics_out *o);
void metrics_fmt_report(const struct metrics *m, struct metrics_out *o);
/* The binary pool, interned strings and hibernation as JSON members
 * ("binary_pool":{..},"interned":{..},"hibernation":{..}), no braces around. */
void metrics_fmt_pool(const struct metrics *m, struct metrics_out *o);

#endif
