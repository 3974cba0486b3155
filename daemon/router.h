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
#include "hist.h"
#include "hmap.h"
#include "ipc/ipc_line.h"
#include "list.h"
#include "up_conn.h"

struct conf;
struct conf_endpoint;
struct route_cache;
struct ipc_client;
struct ipc_server;
struct router;

enum chan_state {
	CH_WAIT_UP,     /* join not sent: upstream not open */
	CH_JOINING,     /* phx_join sent, reply awaited */
	CH_JOINED,
	CH_ERRORED,     /* phx_error or refused rejoin: rejoin timer armed */
};

/* One connection of an endpoint's pool. */
struct up_slot {
	struct endpoint *ep;
	unsigned index;
	struct up_conn up;
	struct list_node chans;     /* struct chan assigned here (sticky) */
	unsigned nchans;
	unsigned limit;             /* channels it may carry; lowered when the
				       server says "too many channels joined",
				       back to max_channels_per_upstream when it
				       reconnects */
	ev_timer idle;              /* closes it when unused, above pool_min */
	uint64_t last_ms;           /* last channel traffic (not heartbeats), ms */
	int hibernating;            /* buffers dropped while idle */
	size_t hib_held;            /* bytes its hibernation released, until it wakes */
};

struct chan {
	struct endpoint *ep;
	struct up_slot *slot;       /* the upstream that carries it */
	struct list_node slot_node; /* slot->chans */
	enum chan_state state;
	int ever_joined;
	int parked;                 /* a rejoin refused for want of room: waits for
				       room on some connection (see chan_on_full) */
	char join_ref[24];
	uint64_t join_sent_us;      /* when the pending phx_join went out */
	struct buf params;          /* first joiner's params (JSON object) */
	struct buf resp;            /* last join response (JSON) */
	struct list_node subs;      /* struct sub */
	unsigned nsubs, npending;   /* npending: subs waiting for the join reply */
	struct list_node pushes;    /* struct push: buffered and in flight */
	unsigned nbuffered;
	struct backoff rejoin_bo;
	ev_timer rejoin_timer;
	ev_timer join_timer;        /* deadline of the oldest pending JOIN */
	uint64_t msgs_in, bytes_in, msgs_out, bytes_out;
	uint64_t last_ms;           /* last message either way */
	struct buf pre;             /* pre-encoded frame prefix of pushes: ["JOIN_REF","
				       and ","TOPIC"," (pre_split: where the ref goes) */
	size_t pre_split;
	size_t topic_len;
	const char *topic;          /* NUL-terminated, interned (common/intern) */
};

struct endpoint {
	struct router *rt;
	int index;
	const struct conf_endpoint *conf;
	struct up_slot *slots;      /* the pool: conf->pool_size connections */
	unsigned nslots;
	uint64_t ref_seq;           /* refs for every connection of the pool */
	SSL_CTX *ssl_ctx;
	struct hmap chans;          /* topic → struct chan */
	unsigned nparked;           /* chans with parked set */
	struct hmap inflight;       /* ref → struct push sent, reply awaited */
	struct list_node pushes;    /* every push, oldest first (deadline order) */
	ev_timer push_timer;
};

struct router {
	struct ev_loop *loop;
	const struct conf *conf;
	struct endpoint **eps;      /* stable objects: a reload adds and removes */
	size_t neps;
	int default_ep;
	struct route_cache *routes; /* topic → upstream, in shared memory; may be NULL */
	char routes_name[256];
	int routes_full_warned;     /* logged: more channels than route_cache_size */
	ev_timer routes_cleanup;
	struct buf line;            /* scratch: one event line for all subscribers */
	struct buf bin;             /* scratch: decoded base64 */
	struct hist push_latency;   /* push sent → reply, for answered pushes */
	struct hist join_latency;   /* phx_join sent → reply */
	/* counters */
	uint64_t joins, leaves, pushes, replies, events_in, events_dropped, deliveries,
		 timeouts, join_errors, moved, routes_warm;
	uint64_t denied, rate_limited, topic_limited;
	uint64_t upstream_busy;      /* pushes refused: upstream_queue_max bytes waiting */
	uint64_t deny_log_ms;       /* last denial logged (rate-limited log) */
	uint64_t deny_unlogged;     /* denials since then */
	/* hibernation of idle upstreams */
	unsigned ups_hibernating;
	uint64_t ups_wakeups, ups_hib_bytes;
	uint64_t ups_hib_now;       /* ... of them, by upstreams hibernating now */
	struct buf frame;           /* scratch: a push frame from a channel's prefix */
};

/* 0 or a negative errno with err.  conf must outlive the router. */
int router_init(struct router *rt, struct ev_loop *loop, const struct conf *conf,
		char *err, size_t errlen);
/* Applies a new, valid configuration nc (which then takes the old one's
 * place: it must live until the next reload).  Unchanged endpoints keep
 * running untouched; changed ones move their channels to new connections
 * (clients see STATE rejoining/rejoined); removed ones close their channels
 * (STATE closed); new ones are added.  remap (one int per old endpoint)
 * gets each old endpoint's new index, or -1 when it was removed, for the
 * clients' USE choice.  On error (-ENOMEM, -EINVAL with err: e.g. a TLS
 * context that cannot be built) nothing changed. */
int router_reload(struct router *rt, const struct conf *nc, int *remap, char *err,
		  size_t errlen);

/* Leaves every channel (best effort), closes upstreams, frees everything. */
void router_fini(struct router *rt);

/* The route cache's shm name when route_cache_name is not set: one per
 * socket path, so two daemons never share a cache. */
void router_routes_default_name(const char *socket_path, char *out, size_t n);

/* Upstreams of an endpoint that are open. */
unsigned router_ep_open(const struct endpoint *ep);

/* Hibernation: every upstream without channel traffic for idle_ms at
 * now_ms drops its buffers (up_conn_hibernate); returns the bytes
 * released. */
size_t router_hibernate_idle(struct router *rt, uint64_t now_ms, uint64_t idle_ms);

/* ipc_server handlers (ctx is the router). */
void router_on_command(void *ctx, struct ipc_client *c, const struct ipc_cmd *cmd);
void router_on_close(void *ctx, struct ipc_client *c);

#endif
