/* notify — tells the service manager how phxd is doing (sd_notify).
 *
 * READY=1 once the sockets listen, STATUS= lines with a short live summary,
 * WATCHDOG=1 from the event loop when the manager asks for it
 * (WATCHDOG_USEC), RELOADING=1 and STOPPING=1.  Without NOTIFY_SOCKET every
 * call does nothing; built --without-systemd everything is a no-op.
 *
 * notify knows nothing of clients or upstreams: the daemon passes a callback
 * that fills struct notify_stats, called every NOTIFY_STATUS_INTERVAL seconds;
 * a STATUS= line goes out only when the summary changed.
 */
#ifndef PHX_NOTIFY_H
#define PHX_NOTIFY_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#define NOTIFY_STATUS_INTERVAL 2.0   /* seconds between summaries */
#define NOTIFY_STATUS_MAX 256        /* bytes in one STATUS= text */

struct notify_stats {
	unsigned clients;
	unsigned ups_open, ups_total;
	size_t channels;
	const char *alerts;          /* "" or e.g. "alerts: memory"; may be NULL */
};

typedef void notify_stats_fn(void *ctx, struct notify_stats *st);

struct notify {
	struct ev_loop *loop;
	int enabled;                 /* NOTIFY_SOCKET is set (and libsystemd used) */
	uint64_t watchdog_usec;      /* WATCHDOG_USEC; 0: no watchdog */
	ev_timer watchdog;           /* WATCHDOG=1 every watchdog_usec / 2 */
	ev_timer status;             /* summary every NOTIFY_STATUS_INTERVAL */
	notify_stats_fn *stats;
	void *ctx;
	char last[NOTIFY_STATUS_MAX]; /* the last summary sent */
};

/* Reads NOTIFY_SOCKET and WATCHDOG_USEC; starts nothing.  stats and ctx are
 * borrowed for the life of n. */
void notify_init(struct notify *n, struct ev_loop *loop, notify_stats_fn *stats, void *ctx);
/* Starts the watchdog (sending a first WATCHDOG=1 now) and the summaries
 * (the first on the next loop iteration). */
void notify_start(struct notify *n);
/* Stops both timers.  Accepts an n that was never started. */
void notify_stop(struct notify *n);
/* Formats a summary: "2 clients, 1/1 upstreams connected, 3 channels".
 * Returns what snprintf returns. */
int notify_format_stats(const struct notify_stats *st, char *out, size_t len);

/* READY=1, with STATUS=status unless status is NULL.  Also after a reload. */
void notify_ready(const char *status);
/* STATUS=...; newlines in the text become spaces. */
void notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* RELOADING=1 (with MONOTONIC_USEC); send notify_ready() when done. */
void notify_reloading(void);
/* STOPPING=1. */
void notify_stopping(void);

#endif
