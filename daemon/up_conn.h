/* up_conn — one upstream WebSocket connection to a Phoenix endpoint.
 *
 * Owns the TCP socket, the optional TLS session, the HTTP upgrade, the wslay
 * context, the heartbeat and the reconnect schedule.  It knows nothing of
 * channels: it hands decoded messages to its owner through callbacks and
 * sends frames the owner gives it.
 *
 * States: IDLE (not connected, nothing scheduled) → CONNECTING (name lookup
 * off the loop, then TCP to each address in turn) → TLS →
 * HANDSHAKE (HTTP upgrade) → OPEN; on any failure → WAIT (reconnect timer
 * armed) or IDLE when the owner no longer needs the connection.
 */
#ifndef PHX_UP_CONN_H
#define PHX_UP_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>
#include <openssl/ssl.h>
#include <wslay/wslay.h>

#include "backoff.h"
#include "buf.h"
#include "list.h"
#include "url.h"
#include "ws_deflate.h"

struct conf_endpoint;
struct phx_msg;
struct up_conn;

struct addrinfo;
struct res_req;

enum up_state { UP_IDLE, UP_CONNECTING, UP_TLS, UP_HANDSHAKE, UP_OPEN, UP_WAIT };

struct up_callbacks {
	void (*on_open)(struct up_conn *up);
	/* A message from the server (heartbeat replies are consumed). */
	void (*on_message)(struct up_conn *up, const struct phx_msg *m);
	/* The connection is gone (or a connect attempt failed); reason is
	 * readable.  The owner answers what was in flight. */
	void (*on_down)(struct up_conn *up, const char *reason);
	/* Asked before a reconnect is scheduled: 1 when the connection is
	 * still wanted. */
	int (*wanted)(struct up_conn *up);
};

struct up_conn {
	struct ev_loop *loop;
	const struct conf_endpoint *conf;   /* borrowed from the owner */
	struct url url;
	char target[2048];                  /* path?vsn=2.0.0&params */
	char host_hdr[300];
	SSL_CTX *ssl_ctx;                   /* borrowed; NULL for ws:// */
	const struct up_callbacks *cb;
	void *owner;

	enum up_state state;
	int fd;
	SSL *ssl;
	int tls_want;                       /* EV_READ/EV_WRITE a TLS call asked for */
	ev_io io;
	ev_timer timer;                     /* connect timeout, reconnect delay */
	ev_timer hb_timer;
	ev_prepare flush;                   /* writes queued frames once per loop iteration */
	ev_idle kick;                       /* keeps the loop from blocking before that */
	wslay_event_context_ptr ws;         /* the sending side only; made lazily */
	struct buf rbuf;                    /* bytes read, not yet parsed: frames are
					       handled in place when whole in it */
	struct buf wbuf;                    /* bytes to write */
	struct buf frame;                   /* encode scratch; wslay copies frames */
	struct buf zout;                    /* compressed frame scratch */
	struct buf zin;                     /* the message being handled, inflated */
	struct buf msg;                     /* a message assembled from fragments, or
					       one frame too large for rbuf */
	/* the reader (ws_frame): a data frame whose payload streams into msg */
	int rd_frame;                       /* 1 while its payload is coming */
	int rd_fin;                         /* ... and it ends its message */
	uint64_t rd_left;                   /* payload bytes still to come */
	int rd_in_msg;                      /* a fragmented message is open */
	unsigned rd_op;                     /* that message's opcode */
	int rd_rsv1;                        /* ... compressed (RSV1 on its first frame) */
	int rd_shut;                        /* no more reading: close received or sent
					       for a protocol error; teardown once the
					       close is written */
	ev_tstamp last_active;              /* loop time of the last byte in or out */
	char key[32];
	struct wsd_params pmd_offer;        /* what we offer when conf->compression */
	struct wsd_params pmd;              /* negotiated; pmd.enabled: compress */
	struct wsd wsd;                     /* the codec while pmd.enabled */
	int tune_warned;                    /* a failed TCP option was logged */
	struct res_req *res;                /* the name lookup under way, or NULL */
	struct addrinfo *addrs;             /* the addresses being tried ... */
	struct addrinfo *addr_next;         /* ... and the next one to try */

	uint64_t next_ref;
	uint64_t *ref_seq;                  /* where refs come from: &next_ref, or a
					       counter shared by a pool so refs of
					       its connections never collide */
	char hb_ref[24];
	int hb_pending;
	struct backoff reconnect_bo;
	char last_error[256];
	char last_logged[256];              /* last failure logged as a warning */
	int closing;                        /* teardown requested inside a callback */
	int in_recv;

	/* counters; bytes_* are on the wire (TLS and WebSocket framing
	 * included), payload_* the messages before compression / after
	 * inflation */
	uint64_t connects, disconnects, frames_in, frames_out, bytes_in, bytes_out;
	uint64_t payload_in, payload_out;
};

/* Builds the global TLS context for an endpoint (verification per conf);
 * NULL with err on failure.  Logs a warning when tls_verify is off. */
SSL_CTX *up_tls_ctx_new(const struct conf_endpoint *conf, char *err, size_t errlen);

/* Applies the endpoint's TCP options to a TCP socket, best before connect():
 * TCP_NODELAY, SO_KEEPALIVE with TCP_KEEPIDLE/TCP_KEEPINTVL/TCP_KEEPCNT
 * (whole seconds, rounded up), SO_SNDBUF/SO_RCVBUF when not 0.  Returns how
 * many options the kernel refused (0: all set), naming them in why; a
 * refused option leaves the socket usable. */
int up_tcp_tune(int fd, const struct conf_endpoint *conf, char *why, size_t whylen);

/* 0 or -EINVAL with err (bad URL). */
int up_conn_init(struct up_conn *up, struct ev_loop *loop,
		 const struct conf_endpoint *conf, SSL_CTX *ssl_ctx,
		 const struct up_callbacks *cb, void *owner, char *err, size_t errlen);
/* Closes everything; up can be init'ed again. */
void up_conn_fini(struct up_conn *up);

/* Starts connecting unless connecting/open already; a pending reconnect
 * timer is left to run. */
void up_conn_start(struct up_conn *up);
/* Closes the connection now (no reconnect unless wanted() says so). */
void up_conn_close(struct up_conn *up, const char *reason);

static inline int up_conn_is_open(const struct up_conn *up) { return up->state == UP_OPEN; }

/* A fresh message ref, as decimal text in out (at least 24 bytes). */
uint64_t up_conn_next_ref(struct up_conn *up, char *out);

/* Queues a V2 JSON frame; 0 or a negative errno (-ENOTCONN when not open). */
int up_conn_send_json(struct up_conn *up, const char *join_ref, const char *ref,
		      const char *topic, size_t tlen, const char *event, size_t elen,
		      const char *payload, size_t plen);
int up_conn_send_binary(struct up_conn *up, const char *join_ref, const char *ref,
			const char *topic, size_t tlen, const char *event, size_t elen,
			const void *data, size_t dlen);
/* Queues frame[0..len), an already encoded V2 JSON text frame (copied);
 * same return convention as up_conn_send_json. */
int up_conn_send_text(struct up_conn *up, const char *frame, size_t len);

/* Bytes accepted for sending and not yet written to the socket: messages
 * queued in wslay plus bytes staged for the socket (TLS and framing
 * included for the latter).  What an owner bounds to keep a server that
 * stopped reading from growing phxd without limit. */
size_t up_conn_queued(const struct up_conn *up);

/* Releases what an open, quiet connection can rebuild on demand: its read,
 * write and scratch buffers and the wslay context, when no frame or
 * message is partly read and nothing waits to be written.  The next read
 * or send allocates again; nothing is lost or reordered.  Returns the bytes
 * released (the wslay context counted at its approximate size), 0 when
 * nothing could be.  Not from inside the connection's own callbacks. */
size_t up_conn_hibernate(struct up_conn *up);

/* 1 while the connection holds no buffers (hibernated, or not used yet). */
static inline int up_conn_is_hibernated(const struct up_conn *up)
{
	return !up->ws && !up->rbuf.cap && !up->wbuf.cap && !up->msg.cap;
}

/* Loop time (ev_now) when the last byte was read from or written to the
 * connection's socket; 0 before any. */
static inline ev_tstamp up_conn_last_active(const struct up_conn *up)
{
	return up->last_active;
}

#endif
