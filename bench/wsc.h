/* wsc — a minimal Phoenix V2 WebSocket client for the "direct C" baseline of
 * the benchmarks: what a C program would do talking to the server itself,
 * with no daemon in between.
 *
 * Plain ws:// only, no compression, no heartbeats (runs are shorter than the
 * server's idle timeout), no reconnects.  The upgrade is done blocking in
 * wsc_open() with phxd's handshake codec (ws_hs); after that the socket is
 * non-blocking and the caller's event loop calls wsc_read() when it is
 * readable and wsc_flush() when wsc_want_write() says so.  Messages are
 * decoded with phxd's codec (phx_msg) and handed to on_msg.
 */
#ifndef PHX_BENCH_WSC_H
#define PHX_BENCH_WSC_H

#include <stddef.h>
#include <stdint.h>

#include <wslay/wslay.h>

#include "buf.h"

struct phx_msg;
struct wsc;

typedef void (*wsc_msg_fn)(struct wsc *c, const struct phx_msg *m);

struct wsc {
	int fd;
	wslay_event_context_ptr ws;
	struct buf early;       /* bytes read after the handshake head */
	struct buf frame;       /* encode scratch (wslay copies messages) */
	wsc_msg_fn on_msg;
	void *user;
	int failed;
	uint64_t next_ref;
};

/* Connects to ws://host:port/socket/websocket?vsn=2.0.0 and upgrades.
 * 0, or -1 with err. */
int wsc_open(struct wsc *c, const char *host, int port, wsc_msg_fn on_msg, void *user,
	     char *err, size_t errlen);
void wsc_close(struct wsc *c);

/* Queues [join_ref, ref, topic, event, payload] (join_ref/ref may be NULL)
 * and writes what the socket takes.  0 or -1. */
int wsc_send(struct wsc *c, const char *join_ref, const char *ref, const char *topic,
	     const char *event, const char *payload, size_t plen);
/* A fresh ref as text in out (24 bytes). */
void wsc_ref(struct wsc *c, char out[24]);
/* Reads and handles what has arrived; -1 when the connection failed. */
int wsc_read(struct wsc *c);
/* Writes queued frames; -1 when the connection failed. */
int wsc_flush(struct wsc *c);
int wsc_want_write(const struct wsc *c);

#endif
