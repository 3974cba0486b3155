/* ipc_server — the Unix stream socket local programs connect to.
 *
 * Accepts clients, reads lines (bounded by max_line), hands each parsed
 * command to the owner (the router), and writes replies and events from a
 * bounded per-client output queue.  Output is flushed once per loop
 * iteration.  Clients are never freed inside their own callbacks: a closed
 * client goes to a reap list, freed before the loop blocks again.
 */
#ifndef PHX_IPC_SERVER_H
#define PHX_IPC_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <ev.h>

#include "buf.h"
#include "hmap.h"
#include "ipc/ipc_line.h"
#include "list.h"

struct ipc_server;

struct ipc_client {
	struct ipc_server *srv;
	int fd;
	uint64_t id;
	uid_t uid;
	gid_t gid;
	pid_t pid;
	ev_io rio, wio;
	struct buf in, out;
	int discarding;          /* skipping the rest of an overlong line */
	int eof;                 /* peer shut its side; close once done */
	int closing;             /* close requested: flush, then close (deferred) */
	int out_midline;         /* the first queued line is partly sent */
	uint64_t close_by_ms;    /* closing: closed by then even if output remains */
	int dead;                /* closed; waiting to be reaped */
	struct list_node node;   /* srv->clients or srv->reap */
	struct list_node dirty;  /* srv->dirty while output waits */
	/* Owned by the router: */
	struct hmap subs;        /* topic → struct sub */
	struct list_node pushes; /* struct push awaiting a reply */
	unsigned npending;       /* joins and pushes not yet answered */
	double push_tokens;      /* push_rate token bucket */
	uint64_t push_ms;        /* its last refill; 0: never used */
	int ep;                  /* endpoint chosen with USE; -1: the default */
	/* memory */
	uint64_t last_ms;        /* loop time of the last byte in or out */
	int hibernating;         /* buffers dropped while idle (ipc_server_hibernate_idle) */
	size_t hib_held;         /* bytes that hibernating released, until it wakes */
	gid_t *groups;           /* supplementary groups (SO_PEERGROUPS), when asked for */
	unsigned ngroups;
};

struct ipc_handlers {
	void (*on_command)(void *ctx, struct ipc_client *c, const struct ipc_cmd *cmd);
	/* The client is going away: drop everything that refers to it. */
	void (*on_close)(void *ctx, struct ipc_client *c);
};

struct ipc_server {
	struct ev_loop *loop;
	int lfd;
	ev_io lio;
	ev_timer accept_pause;   /* after EMFILE */
	ev_timer linger;         /* wakes the loop for closing clients past their time */
	unsigned lingering;      /* closing clients whose output is not out yet */
	ev_prepare prep;         /* flushes output, reaps closed clients */
	ev_idle kick;            /* no blocking while output waits for prep */
	char path[108];
	int owns_path;           /* we created the socket file */
	size_t max_line;
	size_t queue_max;
	unsigned max_clients;
	int want_groups;         /* fetch each client's supplementary groups */
	size_t sndbuf, rcvbuf;   /* SO_SNDBUF / SO_RCVBUF of client sockets; 0: default */
	unsigned hibernating;    /* clients hibernating now */
	uint64_t wakeups;        /* hibernating clients woken by traffic */
	uint64_t hib_bytes;      /* buffer bytes released by hibernation */
	uint64_t hib_now;        /* ... of them, by clients hibernating now */
	unsigned nclients;
	uint64_t next_id;
	struct list_node clients, dirty, reap;
	const struct ipc_handlers *h;
	void *ctx;
	/* counters */
	uint64_t accepted, refused, lines_in, lines_out, bad_lines, overflows;
	uint64_t bad_by_kind[IPC_BAD_KINDS];   /* bad_lines by enum ipc_bad */
};

void ipc_server_init(struct ipc_server *s, struct ev_loop *loop,
		     const struct ipc_handlers *h, void *ctx, size_t max_line,
		     size_t queue_max, unsigned max_clients);
/* Binds and listens at path with mode (a stale socket file is replaced;
 * another kind of file is not).  0 or -errno with err. */
int ipc_server_listen(struct ipc_server *s, const char *path, unsigned mode,
		      char *err, size_t errlen);
/* Serves fd, a listening Unix stream socket made by someone else (socket
 * activation): made non-blocking and close-on-exec; its file is never
 * removed (owns_path stays 0).  Takes ownership of fd on success only.
 * 0 or -errno with err. */
int ipc_server_adopt(struct ipc_server *s, int fd, char *err, size_t errlen);
/* Closes every client (with a BYE line, best effort) and the listener, and
 * removes the socket file if we created it. */
void ipc_server_close(struct ipc_server *s, const char *bye_reason);

/* After a configuration reload: each client's USE choice follows its
 * endpoint to its new index (remap[old] = new, or -1: back to the default). */
void ipc_server_remap_endpoints(struct ipc_server *s, const int *remap);

/* Output.  Format into ipc_client_out(c), then pass the formatter's result
 * to ipc_client_wrote(): 0 marks the client for flushing; -EMSGSIZE means
 * its queue is full: it is sent a BYE and closed.  The queue holds at most
 * queue_max bytes, except that one line of any size fits an empty queue. */
struct buf *ipc_client_out(struct ipc_client *c);
void ipc_client_wrote(struct ipc_client *c, int r);
/* Appends preformatted bytes (a whole line), with the same overflow rule. */
void ipc_client_write(struct ipc_client *c, const char *p, size_t n);
/* Closes the client after a BYE line (reason may be NULL: no BYE).  The
 * close happens before the loop blocks again, never inside the caller's
 * stack: output written until then is still flushed. */
void ipc_client_close(struct ipc_client *c, const char *bye_reason);
/* Called by the owner when npending drops: a half-closed client that has
 * nothing more to wait for is closed. */
void ipc_client_check_done(struct ipc_client *c);

/* Hibernation: every client idle (no byte in or out) for idle_ms or more at
 * now_ms (loop time, ms) drops its empty buffers back to the pool and is
 * counted as hibernating until its next byte either way.  Returns the
 * bytes released. */
size_t ipc_server_hibernate_idle(struct ipc_server *s, uint64_t now_ms, uint64_t idle_ms);

#endif
