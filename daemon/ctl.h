/* ctl — the control socket: operators' questions, answered from the counters.
 *
 * A second Unix stream socket (control_socket, default control.sock beside
 * the client socket, mode control_socket_mode 0600), separate from the one
 * local programs use.  One command per line (STATS, METRICS, UPSTREAMS,
 * CLIENTS, ROUTES [N], POOL, HISTORY [N], ALERTS, REPORT, HELP, QUIT; case
 * does not matter); every answer is a block of non-empty lines followed by
 * one empty line — a JSON object on one line, or text lines — and an error is
 * the line ERR {"reason":...}.  docs/CONTROL.md describes it.
 *
 * A connection whose first line is an HTTP/1.x request line is served as
 * HTTP instead: GET /metrics answers the Prometheus text, other paths 404,
 * then the connection closes; a first line that looks like HTTP but is not
 * valid gets 400 (505 for another version).  metrics_listen adds a
 * loopback TCP listener that serves only that.
 *
 * Each listener has its own connection cap, so scrapers on metrics_listen
 * can never take the operator's control socket; and every connection has a
 * timer: an HTTP request head must arrive within http_timeout (else 408),
 * a command connection closes after idle_timeout without a byte either way.
 *
 * ctl reads the router, the client server and the configuration and never
 * changes them; it owns the metrics sampler (struct metrics).
 */
#ifndef PHX_CTL_H
#define PHX_CTL_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "list.h"
#include "metrics.h"

struct conf;
struct ipc_server;
struct router;
struct ctl;

#define CTL_MAX_UNIX 32             /* connections at once on the control socket ... */
#define CTL_MAX_TCP 32              /* ... and, apart, on metrics_listen */
#define CTL_IDLE_TIMEOUT 60.        /* s: a command connection with no byte either way */
#define CTL_HTTP_TIMEOUT 10.        /* s: to send a request head; to take the answer */

struct ctl_listener {
	struct ctl *ctl;
	int fd;
	int http_only;              /* the TCP listener: HTTP requests only */
	unsigned nconns, max_conns; /* its connections open now, and at most */
	int owns_path;              /* we bound the Unix socket: unlink at close */
	char path[108];             /* the Unix socket path, or "HOST:PORT" */
	ev_io io;
	ev_timer pause;             /* accept paused after EMFILE */
};

struct ctl {
	struct ev_loop *loop;
	const struct conf *conf;
	const struct router *rt;
	const struct ipc_server *ipc;
	struct metrics metrics;
	struct ctl_listener lunix, ltcp;
	struct list_node conns;     /* struct ctl_conn, open */
	struct list_node reap;      /* closed, freed before the loop blocks */
	double idle_timeout;        /* CTL_IDLE_TIMEOUT, CTL_HTTP_TIMEOUT unless changed */
	double http_timeout;        /* by default; may be changed after ctl_init */
	ev_prepare prep;
	/* counters */
	uint64_t accepted, refused, commands, errors, http_requests, timeouts;
};

/* Sets up the sampler (its ring is allocated here) and starts it; listens to
 * nothing yet.  conf, rt and ipc are borrowed for the life of k.  0 or a
 * negative errno with err. */
int ctl_init(struct ctl *k, struct ev_loop *loop, const struct conf *conf,
	     const struct router *rt, const struct ipc_server *ipc, char *err, size_t errlen);
/* Serves fd (a listening Unix socket from the service manager; k owns it
 * from now on, even when this fails), or when fd < 0 binds control_socket
 * (a stale socket file is replaced).  Then opens metrics_listen if set.  0
 * or a negative errno with err; ctl_close() cleans up either way. */
int ctl_listen(struct ctl *k, int fd, char *err, size_t errlen);
/* Closes every connection and listener (removing the socket file it made)
 * and stops the sampler.  Accepts a k that was only ctl_init'ed. */
void ctl_close(struct ctl *k);

/* After the configuration object given to ctl_init() was replaced in place
 * (a reload): new alert thresholds and metrics_interval apply now;
 * control_socket, control_socket_mode, metrics_listen and history_size at
 * the next restart (a warning says so when they changed). */
void ctl_reload(struct ctl *k);

/* "" when no alert fires, else e.g. "alerts: memory, response_time", for
 * the service manager's status line. */
const char *ctl_alert_status(const struct ctl *k);

/* The control socket path for conf: control_socket, or control.sock in the
 * directory of the client socket.  -ENAMETOOLONG when it does not fit. */
int ctl_socket_path(const struct conf *conf, char *out, size_t n);

#endif
