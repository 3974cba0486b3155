/* router — channels: topic → subscribed local clients, one upstream join
 * per (endpoint, topic), pushes and their replies.
 *
 * Sits between ipc_server (local clients) and up_conn (upstream WebSocket).
 * Local commands come in through router_on_command(); upstream messages
 * through the up_conn callbacks.  Every event from an upstream reaches its
 * subscribers through one hash lookup and is formatted once.
 */
#ifndef PHX_ROUTER_H
#define PHX_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "backoff.h"
#include "buf.h"
#include "hmap.h"
#include "ipc/ipc_line.h"
#include "list.h"
#include "up_conn.h"

struct conf;
struct conf_endpoint;
struct ipc_client;
struct ipc_server;
struct router;

enum chan_state {
	CH_WAIT_UP,     /* join not sent: upstream not open */
	CH_JOINING,     /* phx_join sent, reply awaited */
	CH_JOINED,
	CH_ERRORED,     /* phx_error or refused rejoin: rejoin timer armed */
};

struct chan {
	struct endpoint *ep;
	enum chan_state state;
	int ever_joined;
	char join_ref[24];
	struct buf params;          /* first joiner's params (JSON object) */
	struct buf resp;            /* last join response (JSON) */
	struct list_node subs;      /* struct sub */
	unsigned nsubs, npending;   /* npending: subs waiting for the join reply */
	struct list_node pushes;    /* struct push: buffered and in flight */
	unsigned nbuffered;
	struct backoff rejoin_bo;
	ev_timer rejoin_timer;
	ev_timer join_timer;        /* deadline of the oldest pending JOIN */
	uint64_t msgs_in, bytes_in, msgs_out;
	size_t topic_len;
	char topic[];               /* NUL-terminated */
};

struct endpoint {
	struct router *rt;
	int index;
	const struct conf_endpoint *conf;
	struct up_conn up;
	SSL_CTX *ssl_ctx;
	struct hmap chans;          /* topic → struct chan */
	struct hmap inflight;       /* ref → struct push sent, reply awaited */
	struct list_node pushes;    /* every push, oldest first (deadline order) */
	ev_timer push_timer;
};

struct router {
	struct ev_loop *loop;
	const struct conf *conf;
	struct endpoint *eps;
	size_t neps;
	int default_ep;
	struct buf line;            /* scratch: one event line for all subscribers */
	struct buf bin;             /* scratch: decoded base64 */
	/* counters */
	uint64_t joins, leaves, pushes, replies, events_in, events_dropped, deliveries,
		 timeouts, join_errors;
};

/* 0 or a negative errno with err.  conf must outlive the router. */
int router_init(struct router *rt, struct ev_loop *loop, const struct conf *conf,
		char *err, size_t errlen);
/* Leaves every channel (best effort), closes upstreams, frees everything. */
void router_fini(struct router *rt);

/* ipc_server handlers (ctx is the router). */
void router_on_command(void *ctx, struct ipc_client *c, const struct ipc_cmd *cmd);
void router_on_close(void *ctx, struct ipc_client *c);

#endif
