#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include "notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "list.h"
#include "log.h"

#define NOTIFY_MSG_MAX (NOTIFY_STATUS_MAX + 64)

/* One datagram to the manager.  A failure is logged once: phxd runs on
 * without it, but the manager will think it never started or hung. */
static void notify_send(const char *msg)
{
#ifdef HAVE_SYSTEMD
	static int warned;
	int r = sd_notify(0, msg);
	if (r < 0 && !warned) {
		warned = 1;
		log_warn("sd_notify: %s", strerror(-r));
	}
#else
	(void)msg;
#endif
}

/* A STATUS= value is one line: the rest would be read as more assignments. */
static void notify_one_line(char *s)
{
	for (; *s; s++)
		if (*s == '\n' || *s == '\r')
			*s = ' ';
}

void notify_ready(const char *status)
{
	char msg[NOTIFY_MSG_MAX];
	if (!status) {
		notify_send("READY=1");
		return;
	}
	snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", status);
	notify_one_line(msg + strlen("READY=1\nSTATUS="));
	notify_send(msg);
}

void notify_status(const char *fmt, ...)
{
	char msg[NOTIFY_MSG_MAX] = "STATUS=";
	size_t pre = strlen(msg);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg + pre, sizeof(msg) - pre, fmt, ap);
	va_end(ap);
	notify_one_line(msg + pre);
	notify_send(msg);
}

void notify_reloading(void)
{
	char msg[NOTIFY_MSG_MAX];
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading the configuration",
		 (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000ULL);
	notify_send(msg);
}

void notify_stopping(void)
{
	notify_send("STOPPING=1\nSTATUS=shutting down");
}

static const char *plural(unsigned long long n)
{
	return n == 1 ? "" : "s";
}

int notify_format_stats(const struct notify_stats *st, char *out, size_t len)
{
	int alerts = st->alerts && *st->alerts;
	return snprintf(out, len, "%u client%s, %u/%u upstream%s connected, %zu channel%s%s%s",
			st->clients, plural(st->clients), st->ups_open, st->ups_total,
			plural(st->ups_total), st->channels, plural(st->channels),
			alerts ? "; " : "", alerts ? st->alerts : "");
}

static void notify_watchdog_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	notify_send("WATCHDOG=1");
}

static void notify_status_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct notify *n = container_of(w, struct notify, status);
	struct notify_stats st = { 0 };
	char now[NOTIFY_STATUS_MAX];
	(void)loop;
	(void)revents;
	n->stats(n->ctx, &st);
	notify_format_stats(&st, now, sizeof(now));
	if (strcmp(now, n->last) == 0)
		return;
	memcpy(n->last, now, sizeof(now));
	notify_status("%s", now);
}

/* WATCHDOG_USEC (and WATCHDOG_PID when set) → n->watchdog_usec. */
static void notify_read_watchdog(struct notify *n)
{
#ifdef HAVE_SYSTEMD
	uint64_t usec = 0;
	int r = sd_watchdog_enabled(0, &usec);
	if (r < 0)
		log_warn("ignoring the watchdog settings: %s", strerror(-r));
	else if (r > 0)
		n->watchdog_usec = usec;
#else
	(void)n;
#endif
}

void notify_init(struct notify *n, struct ev_loop *loop, notify_stats_fn *stats, void *ctx)
{
	memset(n, 0, sizeof(*n));
	n->loop = loop;
	n->stats = stats;
	n->ctx = ctx;
	ev_timer_init(&n->watchdog, notify_watchdog_cb, 0., 0.);
	ev_timer_init(&n->status, notify_status_cb, 0., NOTIFY_STATUS_INTERVAL);
#ifdef HAVE_SYSTEMD
	const char *sock = getenv("NOTIFY_SOCKET");
	n->enabled = sock && *sock;
#endif
	if (n->enabled)
		notify_read_watchdog(n);
}

void notify_start(struct notify *n)
{
	if (!n->enabled)
		return;
	if (n->watchdog_usec) {
		double every = (double)n->watchdog_usec / 2e6;
		ev_timer_set(&n->watchdog, every, every);
		ev_timer_start(n->loop, &n->watchdog);
		notify_send("WATCHDOG=1");
		log_info("watchdog: WATCHDOG=1 every %.3f s", every);
	}
	ev_timer_start(n->loop, &n->status);
}

void notify_stop(struct notify *n)
{
	if (!n->loop)
		return;
	ev_timer_stop(n->loop, &n->watchdog);
	ev_timer_stop(n->loop, &n->status);
}
