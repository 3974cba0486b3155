#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "router.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "bpool.h"
#include "intern.h"
#include "conf/conf.h"
#include "ipc/ipc_server.h"
#include "json.h"
#include "log.h"
#include "phx_msg.h"
#include "route_cache.h"
#include "util.h"

/* One client's membership in one channel. */
struct sub {
	struct list_node chan_node;     /* chan->subs */
	struct chan *chan;
	struct ipc_client *client;
	int pending;                    /* its JOIN awaits the server */
	uint64_t deadline;              /* of that JOIN, ms */
	char tag[IPC_TAG_MAX + 1];
};

/* A PUSH or BPUSH from a client, until it is answered. */
struct push {
	struct list_node ep_node;       /* ep->pushes, deadline order */
	struct list_node chan_node;     /* chan->pushes while the channel lives */
	struct list_node client_node;   /* client->pushes while the client lives */
	struct endpoint *ep;
	struct up_slot *slot;           /* where it was sent (in flight) */
	struct chan *chan;              /* NULL once the channel is gone */
	struct ipc_client *client;      /* NULL once the client is gone */
	uint64_t deadline;
	uint64_t sent_us;               /* when it went to the server */
	int inflight;                   /* sent; ref is in ep->inflight */
	int binary;
	char ref[24];
	char tag[IPC_TAG_MAX + 1];
	size_t topic_len, event_len, payload_len;
	const char *topic;              /* interned (common/intern) */
	const char *event;              /* interned while buffered; NULL once sent */
	char *payload;                  /* a pool block while buffered; NULL once sent */
};

static const char *const EMPTY_OBJ = "{}";

static void chan_send_join(struct chan *ch);
static void chan_destroy(struct chan *ch, int send_leave);
static void chan_end_leave(struct chan *ch, const char *payload, size_t plen);
static void ep_free(struct endpoint *ep, const char *why);
static void push_free(struct push *p);
static unsigned slot_active(struct up_slot *sl);
static void chan_move(struct chan *ch, struct up_slot *sl);

/* ------------------------------------------------------------ helpers */

static void tag_copy(char *dst, const struct ipc_str *tag)
{
	size_t n = tag->len < IPC_TAG_MAX ? tag->len : IPC_TAG_MAX;
	if (n)
		memcpy(dst, tag->p, n);
	dst[n] = '\0';
}

static struct ipc_str tag_of(const char *tag)
{
	struct ipc_str t = { tag, strlen(tag) };
	return t;
}

static void reply_ok(struct ipc_client *c, const char *tag, const char *verb,
		     const char *target, size_t tlen, const char *payload, size_t plen)
{
	struct ipc_str t = tag_of(tag);
	ipc_client_wrote(c, ipc_fmt_reply(ipc_client_out(c), 1, 0, &t, verb, target, tlen,
					  payload, plen));
}

static void reply_err(struct ipc_client *c, const char *tag, const char *verb,
		      const char *target, size_t tlen, const char *reason, const char *detail)
{
	struct ipc_str t = tag_of(tag);
	ipc_client_wrote(c, ipc_fmt_error(ipc_client_out(c), &t, verb, target, tlen,
					  reason, detail));
}

/* Sends a server response as our error payload: it is passed on as it came
 * when it is an object, else wrapped. */
static void reply_server_err(struct ipc_client *c, const char *tag, const char *verb,
			     const char *target, size_t tlen, const char *resp, size_t rlen)
{
	if (rlen && resp[0] == '{') {
		struct ipc_str t = tag_of(tag);
		ipc_client_wrote(c, ipc_fmt_reply(ipc_client_out(c), 0, 0, &t, verb, target,
						  tlen, resp, rlen));
		return;
	}
	reply_err(c, tag, verb, target, tlen, "error", NULL);
}

static void state_line(struct chan *ch, struct ipc_client *c, const char *state,
		       const char *payload, size_t plen)
{
	ipc_client_wrote(c, ipc_fmt_state(ipc_client_out(c), ch->topic, ch->topic_len,
					  state, payload, plen));
}

/* {"reason":R,"detail":D} into rt->line's scratch; returns its span. */
static struct json_span reason_obj(struct router *rt, const char *reason, const char *detail)
{
	struct buf *b = &rt->line;
	buf_reset(b);
	buf_puts(b, "{\"reason\":");
	json_put_str(b, reason, strlen(reason));
	if (detail && *detail) {
		buf_puts(b, ",\"detail\":");
		json_put_str(b, detail, strlen(detail));
	}
	buf_putc(b, '}');
	struct json_span s = { buf_rptr(b), buf_len(b) };
	return s;
}

static void client_pending_dec(struct ipc_client *c)
{
	if (c->npending)
		c->npending--;
	ipc_client_check_done(c);
}

/* ---------------------------------------------------------------- push */

static void push_arm_timer(struct endpoint *ep)
{
	struct router *rt = ep->rt;
	if (list_empty(&ep->pushes)) {
		ev_timer_stop(rt->loop, &ep->push_timer);
		return;
	}
	struct push *p = container_of(ep->pushes.next, struct push, ep_node);
	uint64_t now = util_now_ms();
	double in = p->deadline > now ? (double)(p->deadline - now) / 1000.0 : 0.;
	ev_timer_stop(rt->loop, &ep->push_timer);
	ev_timer_set(&ep->push_timer, in + 0.001, 0.);
	ev_timer_start(rt->loop, &ep->push_timer);
}

/* The event and payload of a buffered push: not needed once sent. */
static void push_release_body(struct push *p)
{
	intern_put(p->event);
	bpool_put(p->payload, bpool_class_size(p->payload_len));
	p->event = NULL;
	p->payload = NULL;
}

/* Unlinks and frees a push; the client's pending count drops. */
static void push_free(struct push *p)
{
	struct endpoint *ep = p->ep;
	int was_head = ep->pushes.next == &p->ep_node;
	list_del(&p->ep_node);
	list_del(&p->chan_node);
	if (p->chan && !p->inflight && p->chan->nbuffered)
		p->chan->nbuffered--;
	if (p->inflight)
		hmap_del(&ep->inflight, p->ref, strlen(p->ref));
	struct ipc_client *c = p->client;
	list_del(&p->client_node);
	push_release_body(p);
	intern_put(p->topic);
	bpool_put(p, bpool_class_size(sizeof(*p)));
	if (was_head)
		push_arm_timer(ep);
	if (c)
		client_pending_dec(c);
}

static const char *push_verb(const struct push *p)
{
	return p->binary ? "BPUSH" : "PUSH";
}

static void push_fail(struct push *p, const char *reason, const char *detail)
{
	if (p->client)
		reply_err(p->client, p->tag, push_verb(p), p->topic, p->topic_len, reason, detail);
	push_free(p);
}

/* Channel traffic on an upstream (heartbeats do not count): it is active,
 * and awake if it was hibernating. */
static void slot_touch(struct up_slot *sl)
{
	struct router *rt = sl->ep->rt;
	sl->last_ms = (uint64_t)(ev_now(rt->loop) * 1000.);
	if (sl->hibernating) {
		sl->hibernating = 0;
		rt->ups_hibernating--;
		rt->ups_wakeups++;
		rt->ups_hib_now -= sl->hib_held;
		sl->hib_held = 0;
	}
}

/* The frame prefix of this join's pushes: ["JOIN_REF"," | ",TOPIC, — a push
 * then copies it around its ref instead of encoding the topic again. */
static void chan_build_prefix(struct chan *ch)
{
	struct buf *b = &ch->pre;
	buf_reset(b);
	buf_puts(b, "[\"");
	buf_puts(b, ch->join_ref);
	buf_puts(b, "\",\"");
	ch->pre_split = buf_len(b);
	buf_puts(b, "\",");
	json_put_str(b, ch->topic, ch->topic_len);
	if (buf_putc(b, ',') < 0)
		buf_reset(b); /* out of memory: chan_send_push encodes in full */
}

/* A JSON push [join_ref, ref, topic, event, payload] on the channel's
 * upstream, from its prefix; 0 or a negative errno as up_conn_send_json. */
static int chan_send_push(struct chan *ch, const char *ref, const char *event, size_t elen,
			  const char *payload, size_t plen)
{
	struct up_conn *up = &ch->slot->up;
	struct buf *f = &ch->ep->rt->frame;
	if (buf_len(&ch->pre) == 0)
		return up_conn_send_json(up, ch->join_ref, ref, ch->topic, ch->topic_len, event,
					 elen, payload, plen);
	const char *pre = buf_rptr(&ch->pre);
	buf_reset(f);
	int r = buf_append(f, pre, ch->pre_split);
	if (!r)
		r = buf_puts(f, ref);
	if (!r)
		r = buf_append(f, pre + ch->pre_split, buf_len(&ch->pre) - ch->pre_split);
	if (!r)
		r = json_put_str(f, event, elen);
	if (!r)
		r = buf_putc(f, ',');
	if (!r)
		r = buf_append(f, payload, plen);
	if (!r)
		r = buf_putc(f, ']');
	if (!r)
		r = up_conn_send_text(up, buf_rptr(f), buf_len(f));
	if (f->cap > 65536)
		buf_free(f);
	return r;
}

/* Sends a buffered push now that its channel is joined. */
static int push_send(struct push *p)
{
	struct chan *ch = p->chan;
	struct up_conn *up = &ch->slot->up;
	char ref[24];
	up_conn_next_ref(up, ref);
	slot_touch(ch->slot);
	int r = p->binary ?
		up_conn_send_binary(up, ch->join_ref, ref, ch->topic, ch->topic_len,
				    p->event, p->event_len, p->payload, p->payload_len) :
		chan_send_push(ch, ref, p->event, p->event_len, p->payload, p->payload_len);
	if (r < 0)
		return r;
	memcpy(p->ref, ref, sizeof(ref));
	if (hmap_put(&p->ep->inflight, p->ref, strlen(p->ref), p) < 0)
		return -ENOMEM;
	if (ch->nbuffered)
		ch->nbuffered--;
	p->inflight = 1;
	p->slot = ch->slot;
	p->sent_us = util_now_us();
	ch->msgs_out++;
	ch->bytes_out += p->payload_len;
	push_release_body(p);
	return 0;
}

static void chan_flush_buffered(struct chan *ch)
{
	struct list_node *n, *t;
	list_for_each_safe(n, t, &ch->pushes) {
		struct push *p = container_of(n, struct push, chan_node);
		if (p->inflight)
			continue;
		int r = push_send(p);
		if (r < 0) {
			push_fail(p, "upstream unavailable", strerror(-r));
			continue;
		}
	}
}

static void push_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct endpoint *ep = container_of(w, struct endpoint, push_timer);
	uint64_t now = util_now_ms();
	(void)loop;
	(void)revents;
	while (!list_empty(&ep->pushes)) {
		struct push *p = container_of(ep->pushes.next, struct push, ep_node);
		if (p->deadline > now)
			break;
		ep->rt->timeouts++;
		struct up_conn *up = p->chan ? &p->chan->slot->up : NULL;
		if (!p->inflight && up && !up_conn_is_open(up))
			push_fail(p, "upstream unavailable", up->last_error);
		else
			push_fail(p, "timeout", p->inflight ? "no reply from the server" :
				  "channel not joined in time");
	}
	push_arm_timer(ep);
}

/* Answers in-flight pushes of a channel (or detaches them from it). */
static void chan_fail_pushes(struct chan *ch, int inflight_too, const char *reason,
			     const char *detail)
{
	struct list_node *n, *t;
	list_for_each_safe(n, t, &ch->pushes) {
		struct push *p = container_of(n, struct push, chan_node);
		if (p->inflight && !inflight_too)
			continue;
		push_fail(p, reason, detail);
	}
}

/* -------------------------------------------------------------- chans */

static void join_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void rejoin_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* ------------------------------------------------------- the route cache */

void router_routes_default_name(const char *socket_path, char *out, size_t n)
{
	route_cache_default_name(socket_path, out, n);
}

static void routes_failed(struct router *rt, int r, const char *what);

/* Opens (or attaches to) the shared memory route cache; without one phxd
 * works the same, it only forgets routes across restarts (so a /dev/shm too
 * small for route_cache_size costs the cache, not the daemon). */
static void routes_open(struct router *rt)
{
	const struct conf *c = rt->conf;
	char err[256] = "";
	if (!c->route_cache_size)
		return;
	if (c->route_cache_name)
		snprintf(rt->routes_name, sizeof(rt->routes_name), "%s", c->route_cache_name);
	else
		router_routes_default_name(c->socket_path, rt->routes_name, sizeof(rt->routes_name));
	struct route_cache_params p = {
		.capacity = c->route_cache_size,
		.ttl_ms = c->route_cache_ttl_ms,
		.now_ms = util_now_ms(),
	};
	int r = route_cache_open(&rt->routes, rt->routes_name, &p, err, sizeof(err));
	if (r < 0) {
		log_warn("route cache %s: %s; running without it", rt->routes_name, err);
		rt->routes = NULL;
		return;
	}
	struct route_cache_stats st;
	route_cache_stats(rt->routes, &st);
	if (r != 1)
		return;
	/* Nothing is joined yet: routes a killed phxd left joined or joining
	 * become "none" (their slots still warm the topics that come back),
	 * so that those nobody rejoins expire after route_cache_ttl. */
	int n = route_cache_demote(rt->routes, util_now_ms());
	if (n < 0) {
		routes_failed(rt, n, "the demotion of stale routes");
		return;
	}
	log_info("route cache %s: %u routes from the previous run%s", rt->routes_name,
		 st.entries, n ? " (some were left joined by a phxd that did not stop cleanly)" : "");
}

/* A cache call failed: -EIO means the segment was changed behind our back;
 * it is rebuilt.  Other errors only cost this one route. */
static void routes_failed(struct router *rt, int r, const char *what)
{
	if (r != -EIO)
		return;
	log_warn("route cache %s: corrupted during %s; rebuilding it", rt->routes_name, what);
	rt->routes = route_cache_close(rt->routes);
	routes_open(rt);
}

static void routes_put(struct chan *ch, enum route_state st)
{
	struct router *rt = ch->ep->rt;
	if (!rt->routes || !ch->slot)
		return;
	int r = route_cache_put(rt->routes, ch->topic, ch->topic_len, ch->ep->conf->name,
				(uint16_t)ch->slot->index, st, util_now_ms());
	if (r < 0)
		routes_failed(rt, r, "an update");
}

/* The connection this topic used last time, when it has room. */
static struct up_slot *routes_slot(struct endpoint *ep, const char *topic, size_t tlen)
{
	struct router *rt = ep->rt;
	struct route_entry e;
	if (!rt->routes)
		return NULL;
	int r = route_cache_lookup_ep(rt->routes, ep->conf->name, topic, tlen, util_now_ms(), &e);
	if (r < 0) {
		routes_failed(rt, r, "a lookup");
		return NULL;
	}
	if (e.slot >= ep->nslots)
		return NULL;
	struct up_slot *sl = &ep->slots[e.slot];
	return sl->nchans < sl->limit ? sl : NULL;
}

/* Once: more channels than the cache has entries.  Joined routes are
 * evicted only when nothing else is left, so past that point routes get
 * lost and those topics may come back on other connections after a
 * restart. */
static void routes_check_room(struct router *rt)
{
	if (!rt->routes || rt->routes_full_warned)
		return;
	size_t n = 0;
	for (size_t i = 0; i < rt->neps; i++)
		n += rt->eps[i]->chans.n;
	if (n <= rt->conf->route_cache_size)
		return;
	rt->routes_full_warned = 1;
	log_warn("route cache %s: %zu channels, more than route_cache_size (%u): routes of "
		 "joined channels are being evicted; raise route_cache_size", rt->routes_name,
		 n, rt->conf->route_cache_size);
}

static void routes_cleanup_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct router *rt = container_of(w, struct router, routes_cleanup);
	(void)loop;
	(void)revents;
	if (rt->routes) {
		int r = route_cache_cleanup(rt->routes, util_now_ms());
		if (r < 0)
			routes_failed(rt, r, "the cleanup");
	}
}

/* ------------------------------------------------------------- the pool */

unsigned router_ep_open(const struct endpoint *ep)
{
	unsigned n = 0;
	for (unsigned i = 0; i < ep->nslots; i++)
		n += up_conn_is_open(&ep->slots[i].up);
	return n;
}

/* Channels a connection may carry, as configured. */
static unsigned slot_conf_limit(const struct up_slot *sl)
{
	unsigned m = sl->ep->conf->max_channels;
	return m ? m : 100;
}

/* The least loaded connection with room, other than `not`; ties go to the
 * lowest index, so connections open in order.  NULL when all are full. */
static struct up_slot *slot_pick(struct endpoint *ep, const struct up_slot *not)
{
	struct up_slot *best = NULL;
	for (unsigned i = 0; i < ep->nslots; i++) {
		struct up_slot *sl = &ep->slots[i];
		if (sl == not || sl->nchans >= sl->limit)
			continue;
		if (!best || sl->nchans < best->nchans)
			best = sl;
	}
	return best;
}

static void chan_assign(struct chan *ch, struct up_slot *sl)
{
	ch->slot = sl;
	list_add_tail(&sl->chans, &ch->slot_node);
	sl->nchans++;
	ev_timer_stop(ch->ep->rt->loop, &sl->idle);
}

static void chan_unassign(struct chan *ch)
{
	struct up_slot *sl = ch->slot;
	if (!sl)
		return;
	list_del(&ch->slot_node);
	sl->nchans--;
	ch->slot = NULL;
	/* an unused connection above pool_min closes after a while */
	if (sl->nchans == 0 && sl->index >= sl->ep->conf->pool_min &&
	    sl->up.state != UP_IDLE) {
		ev_timer_set(&sl->idle, sl->ep->conf->pool_idle_ms / 1000.0, 0.);
		ev_timer_start(sl->ep->rt->loop, &sl->idle);
	}
}

static void slot_idle_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct up_slot *sl = container_of(w, struct up_slot, idle);
	(void)loop;
	(void)revents;
	if (sl->nchans == 0 && sl->index >= sl->ep->conf->pool_min)
		up_conn_close(&sl->up, "idle: no channels");
}

static struct chan *chan_new(struct endpoint *ep, const char *topic, size_t tlen,
			     const char *params, size_t plen)
{
	struct chan *ch = calloc(1, sizeof(*ch));
	if (!ch)
		return NULL;
	ch->ep = ep;
	ch->topic = intern_get(topic, tlen);
	if (!ch->topic) {
		free(ch);
		return NULL;
	}
	ch->topic_len = tlen;
	buf_init(&ch->params, 0);
	buf_init(&ch->resp, 0);
	buf_init(&ch->pre, 0);
	list_init(&ch->subs);
	list_init(&ch->pushes);
	if (backoff_parse(&ch->rejoin_bo, ep->conf->rejoin_backoff, 25) < 0)
		backoff_parse(&ch->rejoin_bo, BACKOFF_REJOIN_DEFAULT, 25);
	ev_timer_init(&ch->rejoin_timer, rejoin_timer_cb, 0., 0.);
	ev_timer_init(&ch->join_timer, join_timer_cb, 0., 0.);
	list_init(&ch->slot_node);
	struct up_slot *sl = routes_slot(ep, topic, tlen);
	if (sl)
		ep->rt->routes_warm++;
	else
		sl = slot_pick(ep, NULL);
	if (!sl || (plen ? buf_append(&ch->params, params, plen) :
			   buf_puts(&ch->params, EMPTY_OBJ)) < 0 ||
	    hmap_put(&ep->chans, ch->topic, tlen, ch) < 0) {
		buf_free(&ch->params);
		intern_put(ch->topic);
		free(ch);
		return NULL;
	}
	chan_assign(ch, sl);
	routes_put(ch, ROUTE_STATE_JOINING);
	routes_check_room(ep->rt);
	return ch;
}

static void sub_unlink(struct sub *s)
{
	struct chan *ch = s->chan;
	list_del(&s->chan_node);
	ch->nsubs--;
	if (s->pending) {
		ch->npending--;
		client_pending_dec(s->client);
	}
	hmap_del(&s->client->subs, ch->topic, ch->topic_len);
	free(s);
}

static void chan_arm_join_timer(struct chan *ch)
{
	struct router *rt = ch->ep->rt;
	uint64_t first = UINT64_MAX;
	struct list_node *n, *t;
	list_for_each_safe(n, t, &ch->subs) {
		struct sub *s = container_of(n, struct sub, chan_node);
		if (s->pending && s->deadline < first)
			first = s->deadline;
	}
	ev_timer_stop(rt->loop, &ch->join_timer);
	if (first == UINT64_MAX)
		return;
	uint64_t now = util_now_ms();
	ev_timer_set(&ch->join_timer, first > now ? (double)(first - now) / 1000.0 + 0.001 : 0.001, 0.);
	ev_timer_start(rt->loop, &ch->join_timer);
}

static void join_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct chan *ch = container_of(w, struct chan, join_timer);
	struct endpoint *ep = ch->ep;
	uint64_t now = util_now_ms();
	struct list_node *n, *t;
	(void)loop;
	(void)revents;
	list_for_each_safe(n, t, &ch->subs) {
		struct sub *s = container_of(n, struct sub, chan_node);
		if (!s->pending || s->deadline > now)
			continue;
		ep->rt->timeouts++;
		if (ch->parked)
			reply_err(s->client, s->tag, "JOIN", ch->topic, ch->topic_len,
				  "too many channels", "every upstream of this endpoint is full");
		else if (up_conn_is_open(&ch->slot->up))
			reply_err(s->client, s->tag, "JOIN", ch->topic, ch->topic_len, "timeout",
				  "no join reply from the server");
		else
			reply_err(s->client, s->tag, "JOIN", ch->topic, ch->topic_len,
				  "upstream unavailable", ch->slot->up.last_error);
		sub_unlink(s);
	}
	if (ch->nsubs == 0) {
		chan_destroy(ch, 1);
		return;
	}
	chan_arm_join_timer(ch);
}

static void chan_schedule_rejoin(struct chan *ch)
{
	struct router *rt = ch->ep->rt;
	unsigned ms = backoff_next(&ch->rejoin_bo, util_rand32());
	ch->state = CH_ERRORED;
	routes_put(ch, ROUTE_STATE_ERRORED);
	ev_timer_stop(rt->loop, &ch->rejoin_timer);
	ev_timer_set(&ch->rejoin_timer, ms / 1000.0, 0.);
	ev_timer_start(rt->loop, &ch->rejoin_timer);
	log_info("endpoint '%s': rejoining '%s' in %u ms", ch->ep->conf->name, ch->topic, ms);
}

static void rejoin_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct chan *ch = container_of(w, struct chan, rejoin_timer);
	(void)loop;
	(void)revents;
	if (ch->state != CH_ERRORED)
		return;
	if (ch->parked && slot_active(ch->slot) >= ch->slot->limit) {
		/* waiting for room: another connection, or this one later */
		struct up_slot *sl = slot_pick(ch->ep, ch->slot);
		if (sl)
			chan_move(ch, sl);
		else
			chan_schedule_rejoin(ch);
		return;
	}
	if (up_conn_is_open(&ch->slot->up))
		chan_send_join(ch);
	else
		ch->state = CH_WAIT_UP;
}

static void chan_send_join(struct chan *ch)
{
	struct up_conn *up = &ch->slot->up;
	if (!up_conn_is_open(up)) {
		ch->state = CH_WAIT_UP;
		up_conn_start(up);
		return;
	}
	up_conn_next_ref(up, ch->join_ref);
	chan_build_prefix(ch);
	slot_touch(ch->slot);
	if (up_conn_send_json(up, ch->join_ref, ch->join_ref, ch->topic, ch->topic_len,
			      "phx_join", 8, buf_rptr(&ch->params), buf_len(&ch->params)) < 0) {
		ch->state = CH_WAIT_UP;
		return;
	}
	ch->join_sent_us = util_now_us();
	ch->state = CH_JOINING;
}

/* Sends every subscriber that is joined (not pending) the same line. */
static void chan_state_all(struct chan *ch, const char *state, const char *payload,
			   size_t plen)
{
	struct list_node *n, *t;
	list_for_each_safe(n, t, &ch->subs) {
		struct sub *s = container_of(n, struct sub, chan_node);
		if (!s->pending)
			state_line(ch, s->client, state, payload, plen);
	}
}

/* Frees the channel.  send_leave: tell the server (we left); otherwise the
 * server ended it. */
static void chan_set_parked(struct chan *ch, int parked)
{
	if (ch->parked == !!parked)
		return;
	ch->parked = !!parked;
	if (parked)
		ch->ep->nparked++;
	else
		ch->ep->nparked--;
}

/* A channel left a connection of ep: a rejoin waiting for room (parked)
 * tries now rather than at its next rejoin_backoff step.  One, since one
 * place was freed; it moves to whichever connection has the room. */
static void ep_wake_parked(struct endpoint *ep)
{
	struct chan *ch;
	if (!ep->nparked)
		return;
	for (size_t k = 0; (ch = hmap_next(&ep->chans, &k));) {
		if (!ch->parked || ch->state != CH_ERRORED)
			continue;
		ev_timer_stop(ep->rt->loop, &ch->rejoin_timer);
		ev_timer_set(&ch->rejoin_timer, 0., 0.);
		ev_timer_start(ep->rt->loop, &ch->rejoin_timer);
		return;
	}
}

static void chan_destroy(struct chan *ch, int send_leave)
{
	struct endpoint *ep = ch->ep;
	struct router *rt = ep->rt;
	struct list_node *n, *t;
	int held = ch->state == CH_JOINED || ch->state == CH_JOINING;

	if (send_leave && (ch->state == CH_JOINING || ch->state == CH_JOINED) &&
	    up_conn_is_open(&ch->slot->up)) {
		char ref[24];
		up_conn_next_ref(&ch->slot->up, ref);
		slot_touch(ch->slot);
		up_conn_send_json(&ch->slot->up, ch->join_ref, ref, ch->topic, ch->topic_len,
				  "phx_leave", 9, EMPTY_OBJ, 2);
	}
	/* Buffered pushes die with the channel; pushes in flight keep waiting
	 * for their reply (the server answers them before the leave). */
	list_for_each_safe(n, t, &ch->pushes) {
		struct push *p = container_of(n, struct push, chan_node);
		if (!p->inflight) {
			push_fail(p, "channel closed", "the channel ended before the push was sent");
			continue;
		}
		list_del(&p->chan_node);
		p->chan = NULL;
	}
	list_for_each_safe(n, t, &ch->subs)
		sub_unlink(container_of(n, struct sub, chan_node));
	ev_timer_stop(rt->loop, &ch->rejoin_timer);
	ev_timer_stop(rt->loop, &ch->join_timer);
	routes_put(ch, ROUTE_STATE_NONE); /* remembered until route_cache_ttl */
	chan_unassign(ch);
	chan_set_parked(ch, 0);
	hmap_del(&ep->chans, ch->topic, ch->topic_len);
	buf_free(&ch->params);
	buf_free(&ch->resp);
	buf_free(&ch->pre);
	intern_put(ch->topic);
	free(ch);
	if (held)
		ep_wake_parked(ep);
}

/* The server closed or refused the channel for good. */
static void chan_end(struct chan *ch, const char *payload, size_t plen, const char *verb_for_pending)
{
	struct list_node *n, *t;
	list_for_each_safe(n, t, &ch->subs) {
		struct sub *s = container_of(n, struct sub, chan_node);
		if (s->pending)
			reply_server_err(s->client, s->tag, verb_for_pending, ch->topic,
					 ch->topic_len, payload, plen);
		else
			state_line(ch, s->client, "closed", payload, plen);
	}
	chan_fail_pushes(ch, 1, "channel closed", "closed by the server");
	chan_destroy(ch, 0);
}

/* We end the channel (its endpoint is going away): subscribers hear why,
 * and the server gets a phx_leave. */
static void chan_end_leave(struct chan *ch, const char *payload, size_t plen)
{
	struct list_node *n, *t;
	list_for_each_safe(n, t, &ch->subs) {
		struct sub *s = container_of(n, struct sub, chan_node);
		if (s->pending)
			reply_server_err(s->client, s->tag, "JOIN", ch->topic, ch->topic_len,
					 payload, plen);
		else
			state_line(ch, s->client, "closed", payload, plen);
	}
	chan_fail_pushes(ch, 1, "channel closed", "its endpoint was removed");
	chan_destroy(ch, 1);
}

/* --------------------------------------------------- upstream messages */

/* Phoenix refuses a join past its per-socket channel limit with
 * {"reason":"too many channels joined"}. */
static int is_full_refusal(const char *resp, size_t rlen)
{
	static const char full[] = "\"too many channels joined\"";
	struct json_span r;
	return json_obj_get(resp, rlen, "reason", &r) == 0 && r.len == sizeof(full) - 1 &&
	       memcmp(r.p, full, r.len) == 0;
}

/* Channels the server has joined on this connection. */
static unsigned slot_joined(struct up_slot *sl)
{
	unsigned n = 0;
	struct list_node *p, *t;
	list_for_each_safe(p, t, &sl->chans)
		n += container_of(p, struct chan, slot_node)->state == CH_JOINED;
	return n;
}

/* Channels joined or being joined on this connection: what a join sent now
 * would be counted with. */
static unsigned slot_active(struct up_slot *sl)
{
	unsigned n = 0;
	struct list_node *p, *t;
	list_for_each_safe(p, t, &sl->chans) {
		enum chan_state st = container_of(p, struct chan, slot_node)->state;
		n += st == CH_JOINED || st == CH_JOINING;
	}
	return n;
}

/* The channel goes to connection sl (opened if it is not) and joins there. */
static void chan_move(struct chan *ch, struct up_slot *sl)
{
	chan_unassign(ch);
	chan_assign(ch, sl);
	routes_put(ch, ROUTE_STATE_JOINING);
	ch->ep->rt->moved++;
	chan_send_join(ch);
}

/* The server refused ch as one channel too many on its connection: that
 * connection's limit becomes the channels it has joined (until it
 * reconnects), and the channel moves to a connection with room, opening one
 * if pool_size allows.  The server's refusal never reaches a client: when
 * no connection has room, a first join is answered with phxd's own "too
 * many channels" (as a JOIN is when the pool is known to be full), and a
 * rejoin waits for room ("parked": STATE rejoining with that reason, then
 * a try when a channel of the endpoint leaves, or at each rejoin_backoff
 * step). */
static void chan_on_full(struct chan *ch)
{
	struct endpoint *ep = ch->ep;
	struct router *rt = ep->rt;
	struct up_slot *old = ch->slot;
	unsigned joined = slot_joined(old);
	if (joined == 0)
		joined = 1;
	if (joined < old->limit) {
		old->limit = joined;
		log_warn("endpoint '%s': upstream %u is full at %u channels (the server's limit; "
			 "set max_channels_per_upstream to match)", ep->conf->name, old->index,
			 old->limit);
	}
	struct up_slot *sl = slot_pick(ep, old);
	if (sl) {
		chan_move(ch, sl);
		return;
	}
	struct json_span r = reason_obj(rt, "too many channels",
					"every upstream of this endpoint is full: the server "
					"takes no more channels on any of them");
	if (!ch->ever_joined) {
		rt->join_errors++;
		log_warn("endpoint '%s': no upstream has room for '%s'", ep->conf->name, ch->topic);
		chan_end(ch, r.p, r.len, "JOIN");
		return;
	}
	if (!ch->parked) {
		log_warn("endpoint '%s': no upstream has room to rejoin '%s'; waiting for room",
			 ep->conf->name, ch->topic);
		chan_state_all(ch, "rejoining", r.p, r.len);
		chan_set_parked(ch, 1);
	}
	chan_schedule_rejoin(ch);
}

static void on_join_reply(struct chan *ch, const struct phx_msg *m)
{
	struct router *rt = ch->ep->rt;
	struct list_node *n, *t;
	const char *resp = m->binary ? EMPTY_OBJ : m->response;
	size_t rlen = m->binary ? 2 : m->response_len;

	hist_observe_us(&rt->join_latency, util_now_us() - ch->join_sent_us);
	if (strcmp(m->status, "ok") == 0) {
		int rejoined = ch->ever_joined;
		ch->state = CH_JOINED;
		chan_set_parked(ch, 0);
		routes_put(ch, ROUTE_STATE_JOINED);
		ch->ever_joined = 1;
		backoff_reset(&ch->rejoin_bo);
		buf_reset(&ch->resp);
		if (buf_append(&ch->resp, resp, rlen) < 0)
			buf_puts(&ch->resp, EMPTY_OBJ);
		list_for_each_safe(n, t, &ch->subs) {
			struct sub *s = container_of(n, struct sub, chan_node);
			if (s->pending) {
				s->pending = 0;
				ch->npending--;
				reply_ok(s->client, s->tag, "JOIN", ch->topic, ch->topic_len, resp, rlen);
				client_pending_dec(s->client);
			} else if (rejoined) {
				state_line(ch, s->client, "rejoined", resp, rlen);
			}
		}
		ev_timer_stop(rt->loop, &ch->join_timer);
		if (rejoined)
			log_info("endpoint '%s': rejoined '%s'", ch->ep->conf->name, ch->topic);
		chan_flush_buffered(ch);
		return;
	}
	if (is_full_refusal(resp, rlen)) {
		chan_on_full(ch);
		return;
	}
	rt->join_errors++;
	if (!ch->ever_joined) {
		/* refused: every waiting client hears the server's reason */
		chan_end(ch, resp, rlen, "JOIN");
		return;
	}
	/* a refused rejoin: keep trying; subscribers hear why */
	log_warn("endpoint '%s': rejoin of '%s' refused: %.*s", ch->ep->conf->name, ch->topic,
		 (int)(rlen > 200 ? 200 : rlen), resp);
	chan_state_all(ch, "rejoining", resp, rlen);
	chan_schedule_rejoin(ch);
}

static void on_push_reply(struct up_slot *sl, const struct phx_msg *m)
{
	struct endpoint *ep = sl->ep;
	struct push *p = hmap_get(&ep->inflight, m->ref, strlen(m->ref));
	if (!p || p->slot != sl || p->topic_len != m->topic_len ||
	    memcmp(p->topic, m->topic, m->topic_len))
		return; /* a leave's reply, or a push already answered */
	ep->rt->replies++;
	hist_observe_us(&ep->rt->push_latency, util_now_us() - p->sent_us);
	if (p->client) {
		int ok = strcmp(m->status, "ok") == 0;
		struct ipc_str t = tag_of(p->tag);
		if (m->binary)
			ipc_client_wrote(p->client, ipc_fmt_reply(ipc_client_out(p->client), ok, 1,
								   &t, push_verb(p), p->topic,
								   p->topic_len, m->response,
								   m->response_len));
		else if (ok || (m->response_len && m->response[0] == '{'))
			ipc_client_wrote(p->client, ipc_fmt_reply(ipc_client_out(p->client), ok, 0,
								   &t, push_verb(p), p->topic,
								   p->topic_len, m->response,
								   m->response_len));
		else
			reply_err(p->client, p->tag, push_verb(p), p->topic, p->topic_len,
				  m->status, NULL);
	}
	push_free(p);
}

static void deliver_event(struct chan *ch, const struct phx_msg *m)
{
	struct router *rt = ch->ep->rt;
	struct buf *line = &rt->line;
	struct list_node *n, *t;

	ch->msgs_in++;
	ch->bytes_in += m->payload_len;
	ch->last_ms = util_now_ms();
	rt->events_in++;
	buf_reset(line);
	if (ipc_fmt_event_nl(line, m->binary, ch->topic, ch->topic_len, m->event,
			     m->event_len, m->payload, m->payload_len, m->payload_nl) < 0) {
		/* e.g. an event name with a space cannot be written on a line */
		rt->events_dropped++;
		log_info("endpoint '%s': dropped event '%s' on '%s': not writable as a line",
			 ch->ep->conf->name, m->event, ch->topic);
		return;
	}
	list_for_each_safe(n, t, &ch->subs) {
		struct sub *s = container_of(n, struct sub, chan_node);
		if (s->pending)
			continue;
		rt->deliveries++;
		ipc_client_write(s->client, buf_rptr(line), buf_len(line));
	}
	if (line->cap > 65536)
		buf_free(line);
}

static void up_on_message(struct up_conn *up, const struct phx_msg *m)
{
	struct up_slot *sl = up->owner;
	slot_touch(sl);
	struct endpoint *ep = sl->ep;
	struct chan *ch = hmap_get(&ep->chans, m->topic, m->topic_len);

	/* a topic lives on one connection; anything else is stale */
	if (ch && ch->slot != sl)
		ch = NULL;
	if (m->is_reply) {
		if (ch && ch->state == CH_JOINING && m->has_ref && strcmp(m->ref, ch->join_ref) == 0) {
			on_join_reply(ch, m);
			return;
		}
		if (m->has_ref)
			on_push_reply(sl, m);
		return;
	}
	if (!ch)
		return;
	/* messages of an older join of this topic are stale */
	if (m->has_join_ref && strcmp(m->join_ref, ch->join_ref) != 0)
		return;
	if (!m->binary && m->event_len == 9 && memcmp(m->event, "phx_error", 9) == 0) {
		if (ch->state != CH_JOINED && ch->state != CH_JOINING)
			return;
		log_warn("endpoint '%s': channel '%s' crashed (phx_error)", ep->conf->name, ch->topic);
		struct json_span r = reason_obj(ep->rt, "channel error", NULL);
		if (m->payload_len > 2 && m->payload[0] == '{')
			r = (struct json_span){ m->payload, m->payload_len };
		chan_state_all(ch, "rejoining", r.p, r.len);
		chan_fail_pushes(ch, 1, "channel error", "the channel crashed on the server");
		chan_schedule_rejoin(ch);
		return;
	}
	if (!m->binary && m->event_len == 9 && memcmp(m->event, "phx_close", 9) == 0) {
		struct json_span r = reason_obj(ep->rt, "closed by server", NULL);
		log_info("endpoint '%s': server closed channel '%s'", ep->conf->name, ch->topic);
		chan_end(ch, r.p, r.len, "JOIN");
		return;
	}
	deliver_event(ch, m);
}

static void up_on_open(struct up_conn *up)
{
	struct up_slot *sl = up->owner;
	struct list_node *n, *t;
	/* a new connection: the server may take more than the last one did */
	sl->limit = slot_conf_limit(sl);
	list_for_each_safe(n, t, &sl->chans) {
		struct chan *ch = container_of(n, struct chan, slot_node);
		ev_timer_stop(sl->ep->rt->loop, &ch->rejoin_timer);
		backoff_reset(&ch->rejoin_bo);
		chan_send_join(ch);
	}
	if (sl->nchans == 0 && sl->index >= sl->ep->conf->pool_min) {
		ev_timer_set(&sl->idle, sl->ep->conf->pool_idle_ms / 1000.0, 0.);
		ev_timer_start(sl->ep->rt->loop, &sl->idle);
	}
}

static void up_on_down(struct up_conn *up, const char *reason)
{
	struct up_slot *sl = up->owner;
	struct endpoint *ep = sl->ep;
	struct router *rt = ep->rt;
	struct json_span r = reason_obj(rt, "disconnected", reason);
	/* reason_obj's scratch is reused below: keep a copy */
	char payload[400];
	size_t plen = r.len < sizeof(payload) ? r.len : 0;
	memcpy(payload, r.p, plen);
	if (!plen) {
		memcpy(payload, "{\"reason\":\"disconnected\"}", 25);
		plen = 25;
	}
	struct list_node *n, *t;
	list_for_each_safe(n, t, &sl->chans) {
		struct chan *ch = container_of(n, struct chan, slot_node);
		ev_timer_stop(rt->loop, &ch->rejoin_timer);
		if (ch->state == CH_WAIT_UP)
			continue;
		if (ch->state == CH_JOINED || ch->ever_joined)
			chan_state_all(ch, "rejoining", payload, plen);
		ch->state = CH_WAIT_UP;
	}
	/* pushes on the wire are lost with the connection: say so now */
	list_for_each_safe(n, t, &ep->pushes) {
		struct push *p = container_of(n, struct push, ep_node);
		if (p->inflight && p->slot == sl)
			push_fail(p, "disconnected", reason);
	}
}

static int up_wanted(struct up_conn *up)
{
	struct up_slot *sl = up->owner;
	return sl->nchans > 0 || sl->index < sl->ep->conf->pool_min;
}

static const struct up_callbacks router_up_cbs = {
	.on_open = up_on_open,
	.on_message = up_on_message,
	.on_down = up_on_down,
	.wanted = up_wanted,
};

/* ------------------------------------------------------ access control */

/* The [access] section for this client: the first whose uid or gid list
 * names it (its primary group or a supplementary one), or one with neither
 * list.  NULL: none matches (denied). */
static const struct conf_access *access_for(const struct router *rt, const struct ipc_client *c)
{
	const struct conf *cf = rt->conf;
	for (size_t i = 0; i < cf->naccess; i++) {
		const struct conf_access *a = &cf->access[i];
		if (!a->nuids && !a->ngids)
			return a;
		for (size_t k = 0; k < a->nuids; k++)
			if (a->uids[k] == (unsigned)c->uid)
				return a;
		for (size_t k = 0; k < a->ngids; k++) {
			if (a->gids[k] == (unsigned)c->gid)
				return a;
			/* supplementary groups count too (SO_PEERGROUPS) */
			for (unsigned j = 0; j < c->ngroups; j++)
				if (a->gids[k] == (unsigned)c->groups[j])
					return a;
		}
	}
	return NULL;
}

enum access_what { ACCESS_ENDPOINT, ACCESS_JOIN, ACCESS_PUSH };

/* 1 when the client may: use endpoint ep (ACCESS_ENDPOINT), join topic s on
 * ep (ACCESS_JOIN: checks the endpoint too), push event s (ACCESS_PUSH).
 * Without [access] sections everything is allowed. */
static int access_ok(const struct router *rt, const struct ipc_client *c,
		     enum access_what what, const struct endpoint *ep, const char *s, size_t len)
{
	if (!rt->conf->naccess)
		return 1;
	const struct conf_access *a = access_for(rt, c);
	if (!a)
		return 0;
	if (ep && !conf_glob_match(a->endpoints, ep->conf->name, strlen(ep->conf->name)))
		return 0;
	switch (what) {
	case ACCESS_ENDPOINT:
		return 1;
	case ACCESS_JOIN:
		return conf_glob_match(a->join, s, len);
	case ACCESS_PUSH:
		return conf_glob_match(a->push, s, len);
	}
	return 0;
}

/* Answers a denied command; counted, and logged at most once a second. */
static void access_deny(struct router *rt, struct ipc_client *c, const char *tag,
			const char *verb, const char *target, size_t tlen, const char *what,
			const char *s, size_t len)
{
	char detail[400];
	snprintf(detail, sizeof(detail), "uid %u gid %u may not %s '%.*s'", (unsigned)c->uid,
		 (unsigned)c->gid, what, (int)(len > 255 ? 255 : len), s);
	reply_err(c, tag, verb, target, tlen, "access denied", detail);
	rt->denied++;
	uint64_t now = util_now_ms();
	if (now - rt->deny_log_ms >= 1000) {
		log_notice("access denied: client %llu (pid %d): %s%s", (unsigned long long)c->id,
			   (int)c->pid, detail, rt->deny_unlogged ? " (and earlier denials)" : "");
		rt->deny_log_ms = now;
		rt->deny_unlogged = 0;
	} else {
		rt->deny_unlogged++;
	}
}

/* push_rate: a token bucket per client; 1 when this push may go. */
static int push_allowed(const struct router *rt, struct ipc_client *c)
{
	const struct conf *cf = rt->conf;
	if (!cf->push_rate)
		return 1;
	uint64_t now = util_now_ms();
	if (!c->push_ms) {
		c->push_tokens = cf->push_burst;
	} else {
		c->push_tokens += (double)(now - c->push_ms) * cf->push_rate / 1000.0;
		if (c->push_tokens > cf->push_burst)
			c->push_tokens = cf->push_burst;
	}
	c->push_ms = now;
	if (c->push_tokens < 1.0)
		return 0;
	c->push_tokens -= 1.0;
	return 1;
}

/* ----------------------------------------------------- local commands */

static void join_one(struct router *rt, struct ipc_client *c, const char *topic, size_t tlen,
		     const struct ipc_str *params, const char *tag)
{
	struct endpoint *ep = rt->eps[c->ep < 0 ? rt->default_ep : c->ep];

	if (tlen == 7 && memcmp(topic, "phoenix", 7) == 0) {
		reply_err(c, tag, "JOIN", topic, tlen, "bad topic", "\"phoenix\" is reserved for heartbeats");
		return;
	}
	if (hmap_get(&c->subs, topic, tlen)) {
		reply_err(c, tag, "JOIN", topic, tlen, "already joined", NULL);
		return;
	}
	if (!access_ok(rt, c, ACCESS_JOIN, ep, topic, tlen)) {
		access_deny(rt, c, tag, "JOIN", topic, tlen, "join", topic, tlen);
		return;
	}
	if (c->subs.n >= rt->conf->max_topics_per_client) {
		char d[64];
		snprintf(d, sizeof(d), "max_topics_per_client is %u", rt->conf->max_topics_per_client);
		rt->topic_limited++;
		reply_err(c, tag, "JOIN", topic, tlen, "too many topics", d);
		return;
	}
	struct chan *ch = hmap_get(&ep->chans, topic, tlen);
	int fresh = 0;
	if (!ch && !slot_pick(ep, NULL)) {
		reply_err(c, tag, "JOIN", topic, tlen, "too many channels",
			  "every upstream of this endpoint carries max_channels_per_upstream channels");
		return;
	}
	if (!ch) {
		ch = chan_new(ep, topic, tlen, params->p, params->len);
		if (!ch) {
			reply_err(c, tag, "JOIN", topic, tlen, "out of memory", NULL);
			return;
		}
		fresh = 1;
	}
	struct sub *s = calloc(1, sizeof(*s));
	if (!s || hmap_put(&c->subs, ch->topic, ch->topic_len, s) < 0) {
		free(s);
		reply_err(c, tag, "JOIN", topic, tlen, "out of memory", NULL);
		if (fresh)
			chan_destroy(ch, 0);
		return;
	}
	s->chan = ch;
	s->client = c;
	memcpy(s->tag, tag, strlen(tag) + 1);
	list_add_tail(&ch->subs, &s->chan_node);
	ch->nsubs++;
	rt->joins++;
	if (ch->state == CH_JOINED) {
		reply_ok(c, tag, "JOIN", ch->topic, ch->topic_len, buf_rptr(&ch->resp),
			 buf_len(&ch->resp));
		return;
	}
	s->pending = 1;
	s->deadline = util_now_ms() + ep->conf->join_timeout_ms;
	ch->npending++;
	c->npending++;
	if (!ev_is_active(&ch->join_timer))
		chan_arm_join_timer(ch);
	if (fresh)
		chan_send_join(ch);
}

static void leave_one(struct router *rt, struct ipc_client *c, const char *topic, size_t tlen,
		      const char *tag)
{
	struct sub *s = hmap_get(&c->subs, topic, tlen);
	if (!s) {
		reply_err(c, tag, "LEAVE", topic, tlen, "not joined", NULL);
		return;
	}
	struct chan *ch = s->chan;
	if (s->pending)
		reply_err(c, s->tag, "JOIN", ch->topic, ch->topic_len, "cancelled",
			  "left before the join completed");
	reply_ok(c, tag, "LEAVE", ch->topic, ch->topic_len, EMPTY_OBJ, 2);
	sub_unlink(s);
	rt->leaves++;
	if (ch->nsubs == 0)
		chan_destroy(ch, 1);
	else if (ch->npending == 0)
		ev_timer_stop(rt->loop, &ch->join_timer);
}

/* JOIN and LEAVE take several topics; each gets its own reply line. */
static void cmd_join(struct router *rt, struct ipc_client *c, const struct ipc_cmd *cmd,
		     const char *tag)
{
	struct ipc_str rest = cmd->more, name;
	join_one(rt, c, cmd->target.p, cmd->target.len, &cmd->payload, tag);
	while (ipc_next_name(&rest, &name))
		join_one(rt, c, name.p, name.len, &cmd->payload, tag);
}

static void cmd_leave(struct router *rt, struct ipc_client *c, const struct ipc_cmd *cmd,
		      const char *tag)
{
	struct ipc_str rest = cmd->more, name;
	leave_one(rt, c, cmd->target.p, cmd->target.len, tag);
	while (ipc_next_name(&rest, &name))
		leave_one(rt, c, name.p, name.len, tag);
}

static void cmd_push(struct router *rt, struct ipc_client *c, const struct ipc_cmd *cmd,
		     const char *tag, int binary)
{
	const char *verb = binary ? "BPUSH" : "PUSH";
	struct sub *s = hmap_get(&c->subs, cmd->target.p, cmd->target.len);
	if (!s) {
		reply_err(c, tag, verb, cmd->target.p, cmd->target.len, "not joined", NULL);
		return;
	}
	struct chan *ch = s->chan;
	struct endpoint *ep = ch->ep;
	const char *payload = cmd->payload.p;
	size_t plen = cmd->payload.len;
	if (!access_ok(rt, c, ACCESS_PUSH, ep, cmd->event.p, cmd->event.len)) {
		access_deny(rt, c, tag, verb, ch->topic, ch->topic_len, "push", cmd->event.p,
			    cmd->event.len);
		return;
	}
	if (!push_allowed(rt, c)) {
		char d[64];
		snprintf(d, sizeof(d), "push_rate is %u per second", rt->conf->push_rate);
		rt->rate_limited++;
		reply_err(c, tag, verb, ch->topic, ch->topic_len, "rate limited", d);
		return;
	}
	if (binary) {
		buf_reset(&rt->bin);
		if (b64_decode(&rt->bin, cmd->payload.p, cmd->payload.len) < 0) {
			reply_err(c, tag, verb, ch->topic, ch->topic_len, "invalid base64", NULL);
			return;
		}
		payload = buf_rptr(&rt->bin);
		plen = buf_len(&rt->bin);
		if (ch->topic_len > 255 || cmd->event.len > 255) {
			reply_err(c, tag, verb, ch->topic, ch->topic_len, "bad topic",
				  "binary pushes take topics and events of at most 255 bytes");
			return;
		}
	} else if (!plen) {
		payload = EMPTY_OBJ;
		plen = 2;
	}
	struct up_conn *up = &ch->slot->up;
	int send_now = ch->state == CH_JOINED && up_conn_is_open(up);
	if (!send_now && ch->nbuffered >= ep->conf->push_buffer) {
		reply_err(c, tag, verb, ch->topic, ch->topic_len, "push buffer full", NULL);
		return;
	}
	/* a server that stopped reading must not make phxd grow without bound */
	if (send_now && up_conn_queued(up) >= ep->conf->upstream_queue_max) {
		char detail[96];
		snprintf(detail, sizeof(detail), "%zu bytes wait for the server (upstream_queue_max)",
			 up_conn_queued(up));
		rt->upstream_busy++;
		reply_err(c, tag, verb, ch->topic, ch->topic_len, "upstream busy", detail);
		return;
	}
	/* from the binary pool, the topic shared with the channel */
	struct push *p = bpool_get(sizeof(*p));
	if (!p) {
		reply_err(c, tag, verb, ch->topic, ch->topic_len, "out of memory", NULL);
		return;
	}
	memset(p, 0, sizeof(*p));
	p->ep = ep;
	p->chan = ch;
	p->client = c;
	p->binary = binary;
	memcpy(p->tag, tag, strlen(tag) + 1);
	p->topic = intern_dup(ch->topic);
	p->topic_len = ch->topic_len;
	p->deadline = util_now_ms() + ep->conf->push_timeout_ms;
	list_init(&p->chan_node);
	list_init(&p->client_node);
	rt->pushes++;
	if (send_now) {
		char ref[24];
		up_conn_next_ref(up, ref);
		slot_touch(ch->slot);
		int r = binary ?
			up_conn_send_binary(up, ch->join_ref, ref, ch->topic, ch->topic_len,
					    cmd->event.p, cmd->event.len, payload, plen) :
			chan_send_push(ch, ref, cmd->event.p, cmd->event.len, payload, plen);
		if (r < 0 || (memcpy(p->ref, ref, sizeof(ref)),
			      hmap_put(&ep->inflight, p->ref, strlen(p->ref), p)) < 0) {
			intern_put(p->topic);
			bpool_put(p, bpool_class_size(sizeof(*p)));
			reply_err(c, tag, verb, ch->topic, ch->topic_len, "upstream unavailable",
				  r < 0 ? strerror(-r) : "out of memory");
			return;
		}
		p->inflight = 1;
		p->slot = ch->slot;
		p->sent_us = util_now_us();
		ch->msgs_out++;
		ch->bytes_out += plen;
		ch->last_ms = p->sent_us / 1000;
	} else {
		/* held until sent: the event name interned, the payload in a
		 * pool block */
		p->event = intern_get(cmd->event.p, cmd->event.len);
		p->payload = bpool_get(plen);
		p->payload_len = plen;
		if (!p->event || !p->payload) {
			push_release_body(p);
			intern_put(p->topic);
			bpool_put(p, bpool_class_size(sizeof(*p)));
			reply_err(c, tag, verb, ch->topic, ch->topic_len, "out of memory", NULL);
			return;
		}
		p->event_len = cmd->event.len;
		memcpy(p->payload, payload, plen);
		ch->nbuffered++;
	}
	list_add_tail(&ch->pushes, &p->chan_node);
	list_add_tail(&c->pushes, &p->client_node);
	int first = list_empty(&ep->pushes);
	list_add_tail(&ep->pushes, &p->ep_node);
	if (first)
		push_arm_timer(ep);
	c->npending++;
}

static void cmd_topics(struct router *rt, struct ipc_client *c, const char *tag)
{
	static const char *names[] = { "connecting", "joining", "joined", "rejoining" };
	struct buf *b = &rt->line;
	struct sub *s;
	buf_reset(b);
	buf_puts(b, "{\"topics\":[");
	int first = 1;
	for (size_t i = 0; (s = hmap_next(&c->subs, &i));) {
		struct chan *ch = s->chan;
		buf_puts(b, first ? "{\"topic\":" : ",{\"topic\":");
		first = 0;
		json_put_str(b, ch->topic, ch->topic_len);
		buf_puts(b, ",\"endpoint\":");
		json_put_str(b, ch->ep->conf->name, strlen(ch->ep->conf->name));
		buf_printf(b, ",\"upstream\":%u,\"state\":\"%s\"}", ch->slot ? ch->slot->index : 0,
			   s->pending ? "pending" : names[ch->state]);
	}
	buf_puts(b, "]}");
	reply_ok(c, tag, "TOPICS", NULL, 0, buf_rptr(b), buf_len(b));
}

static void cmd_endpoints(struct router *rt, struct ipc_client *c, const char *tag)
{
	struct buf *b = &rt->line;
	buf_reset(b);
	buf_puts(b, "{\"default\":");
	const char *d = rt->eps[rt->default_ep]->conf->name;
	json_put_str(b, d, strlen(d));
	buf_puts(b, ",\"endpoints\":[");
	for (size_t i = 0; i < rt->neps; i++) {
		const char *n = rt->eps[i]->conf->name;
		if (i)
			buf_putc(b, ',');
		buf_puts(b, "{\"name\":");
		json_put_str(b, n, strlen(n));
		buf_printf(b, ",\"upstreams\":%u,\"connected\":%u}", rt->eps[i]->nslots,
			   router_ep_open(rt->eps[i]));
	}
	buf_puts(b, "]}");
	reply_ok(c, tag, "ENDPOINTS", NULL, 0, buf_rptr(b), buf_len(b));
}

void router_on_command(void *ctx, struct ipc_client *c, const struct ipc_cmd *cmd)
{
	struct router *rt = ctx;
	char tag[IPC_TAG_MAX + 1];
	tag_copy(tag, &cmd->tag);

	switch (cmd->verb) {
	case IPC_V_JOIN:
		cmd_join(rt, c, cmd, tag);
		break;
	case IPC_V_LEAVE:
		cmd_leave(rt, c, cmd, tag);
		break;
	case IPC_V_PUSH:
		cmd_push(rt, c, cmd, tag, 0);
		break;
	case IPC_V_BPUSH:
		cmd_push(rt, c, cmd, tag, 1);
		break;
	case IPC_V_USE:
		for (size_t i = 0; i < rt->neps; i++) {
			const char *n = rt->eps[i]->conf->name;
			if (strlen(n) == cmd->target.len && memcmp(n, cmd->target.p, cmd->target.len) == 0) {
				if (!access_ok(rt, c, ACCESS_ENDPOINT, rt->eps[i], NULL, 0)) {
					access_deny(rt, c, tag, "USE", n, strlen(n), "use endpoint", n,
						    strlen(n));
					return;
				}
				c->ep = (int)i;
				reply_ok(c, tag, "USE", n, strlen(n), EMPTY_OBJ, 2);
				return;
			}
		}
		reply_err(c, tag, "USE", cmd->target.p, cmd->target.len, "unknown endpoint", NULL);
		break;
	case IPC_V_ENDPOINTS:
		cmd_endpoints(rt, c, tag);
		break;
	case IPC_V_TOPICS:
		cmd_topics(rt, c, tag);
		break;
	case IPC_V_PING:
		reply_ok(c, tag, "PING", NULL, 0, EMPTY_OBJ, 2);
		break;
	case IPC_V_HELP: {
		static const char help[] =
			"{\"commands\":[\"JOIN TOPIC [PARAMS]\",\"LEAVE TOPIC\","
			"\"PUSH TOPIC EVENT [PAYLOAD]\",\"BPUSH TOPIC EVENT BASE64\","
			"\"USE ENDPOINT\",\"ENDPOINTS\",\"TOPICS\",\"PING\",\"HELP\",\"QUIT\"],"
			"\"doc\":\"man phxd, docs/PROTOCOL.md\"}";
		reply_ok(c, tag, "HELP", NULL, 0, help, sizeof(help) - 1);
		break;
	}
	case IPC_V_QUIT:
		reply_ok(c, tag, "QUIT", NULL, 0, EMPTY_OBJ, 2);
		ipc_client_close(c, NULL);
		break;
	default:
		reply_err(c, tag, "?", NULL, 0, "unknown verb", NULL);
		break;
	}
}

void router_on_close(void *ctx, struct ipc_client *c)
{
	struct router *rt = ctx;
	struct sub *s;
	struct list_node *n, *t;
	(void)rt;
	/* pushes: buffered ones are dropped, in-flight ones forget the client */
	list_for_each_safe(n, t, &c->pushes) {
		struct push *p = container_of(n, struct push, client_node);
		list_del(&p->client_node);
		p->client = NULL;
		if (!p->inflight)
			push_free(p);
	}
	/* subscriptions: hmap_del in sub_unlink reshuffles the table, so
	 * restart the scan after each removal */
	for (;;) {
		size_t i = 0;
		if (!(s = hmap_next(&c->subs, &i)))
			break;
		struct chan *ch = s->chan;
		sub_unlink(s);
		if (ch->nsubs == 0)
			chan_destroy(ch, 1);
	}
	c->npending = 0;
}

/* ----------------------------------------------------------- lifecycle */

/* A new endpoint with its (unconnected) pool; NULL with err. */
static struct endpoint *ep_new(struct router *rt, const struct conf_endpoint *ce, int index,
			       char *err, size_t errlen)
{
	struct endpoint *ep = calloc(1, sizeof(*ep));
	if (!ep) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	ep->rt = rt;
	ep->index = index;
	ep->conf = ce;
	hmap_init(&ep->chans);
	hmap_init(&ep->inflight);
	list_init(&ep->pushes);
	ev_timer_init(&ep->push_timer, push_timer_cb, 0., 0.);
	if (strncasecmp(ce->url, "wss:", 4) == 0) {
		ep->ssl_ctx = up_tls_ctx_new(ce, err, errlen);
		if (!ep->ssl_ctx)
			goto fail;
	}
	ep->nslots = ce->pool_size ? ce->pool_size : 1;
	ep->slots = calloc(ep->nslots, sizeof(*ep->slots));
	if (!ep->slots) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (unsigned k = 0; k < ep->nslots; k++) {
		struct up_slot *sl = &ep->slots[k];
		sl->ep = ep;
		sl->index = k;
		sl->limit = slot_conf_limit(sl);
		list_init(&sl->chans);
		ev_timer_init(&sl->idle, slot_idle_cb, 0., 0.);
		if (up_conn_init(&sl->up, rt->loop, ce, ep->ssl_ctx, &router_up_cbs, sl, err,
				 errlen) < 0)
			goto fail;
		sl->up.ref_seq = &ep->ref_seq;
	}
	return ep;
fail:
	ep_free(ep, NULL);
	return NULL;
}

/* pool_min connections are kept warm. */
static void ep_warm(struct endpoint *ep)
{
	for (unsigned k = 0; k < ep->nslots && k < ep->conf->pool_min; k++)
		up_conn_start(&ep->slots[k].up);
}

/* Ends every channel (leaving it: why NULL) or tells its subscribers it is
 * gone (STATE closed with why), closes the pool and frees the endpoint. */
static void ep_free(struct endpoint *ep, const char *why)
{
	struct router *rt = ep->rt;
	struct chan *ch;
	for (;;) {
		size_t k = 0;
		if (!(ch = hmap_next(&ep->chans, &k)))
			break;
		if (why) {
			struct json_span r = reason_obj(rt, why, NULL);
			chan_end_leave(ch, r.p, r.len);
		} else {
			chan_fail_pushes(ch, 1, "shutting down", NULL);
			chan_destroy(ch, 1);
		}
	}
	while (!list_empty(&ep->pushes))
		push_free(container_of(ep->pushes.next, struct push, ep_node));
	for (unsigned k = 0; ep->slots && k < ep->nslots; k++) {
		struct up_slot *sl = &ep->slots[k];
		ev_timer_stop(rt->loop, &sl->idle);
		if (sl->hibernating) {
			rt->ups_hibernating--;
			rt->ups_hib_now -= sl->hib_held;
		}
		if (sl->up.loop)
			up_conn_close(&sl->up, why ? why : "shutting down");
	}
	free(ep->slots);
	ev_timer_stop(rt->loop, &ep->push_timer);
	hmap_free(&ep->chans);
	hmap_free(&ep->inflight);
	if (ep->ssl_ctx)
		SSL_CTX_free(ep->ssl_ctx);
	free(ep);
}

/* Moves every channel of old (whose options changed) to its replacement:
 * subscriptions and buffered pushes stay, pushes in flight on the old
 * connections are answered, and the channels rejoin on the new pool. */
static void ep_migrate(struct endpoint *old, struct endpoint *nep)
{
	struct router *rt = old->rt;
	struct json_span r = reason_obj(rt, "configuration reloaded", NULL);
	char payload[64];
	size_t plen = r.len < sizeof(payload) ? r.len : 0;
	memcpy(payload, r.p, plen);
	struct chan *ch;
	for (;;) {
		size_t k = 0;
		if (!(ch = hmap_next(&old->chans, &k)))
			break;
		hmap_del(&old->chans, ch->topic, ch->topic_len);
		struct list_node *n, *t;
		list_for_each_safe(n, t, &ch->pushes) {
			struct push *p = container_of(n, struct push, chan_node);
			if (p->inflight)
				push_fail(p, "disconnected", "configuration reloaded");
		}
		ev_timer_stop(rt->loop, &ch->rejoin_timer);
		chan_unassign(ch);
		if (ch->state == CH_JOINED || ch->ever_joined)
			chan_state_all(ch, "rejoining", payload, plen);
		ch->state = CH_WAIT_UP;
		ch->ep = nep;
		backoff_parse(&ch->rejoin_bo, nep->conf->rejoin_backoff, 25);
		struct up_slot *sl = slot_pick(nep, NULL);
		if (!sl || hmap_put(&nep->chans, ch->topic, ch->topic_len, ch) < 0) {
			struct json_span e = reason_obj(rt, "too many channels",
							"the new pool has no room for this topic");
			ch->ep = old; /* chan_end ends it where it was */
			hmap_put(&old->chans, ch->topic, ch->topic_len, ch);
			chan_end_leave(ch, e.p, e.len);
			continue;
		}
		chan_assign(ch, sl);
	}
	/* buffered pushes keep their order and deadlines */
	while (!list_empty(&old->pushes)) {
		struct push *p = container_of(old->pushes.next, struct push, ep_node);
		list_del(&p->ep_node);
		p->ep = nep;
		list_add_tail(&nep->pushes, &p->ep_node);
	}
	ev_timer_stop(rt->loop, &old->push_timer);
	push_arm_timer(nep);
}

int router_reload(struct router *rt, const struct conf *nc, int *remap, char *err,
		  size_t errlen)
{
	size_t n = nc->nendpoints;
	struct endpoint **neweps = calloc(n, sizeof(*neweps));
	struct endpoint **olds = calloc(n, sizeof(*olds)); /* same name, if any */
	char *kept = calloc(rt->neps ? rt->neps : 1, 1);
	int r = -ENOMEM;
	if (!neweps || !olds || !kept) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	/* 1: build what is new or changed; nothing running is touched yet */
	for (size_t j = 0; j < n; j++) {
		const struct conf_endpoint *ce = &nc->endpoints[j];
		for (size_t i = 0; i < rt->neps; i++)
			if (strcmp(rt->eps[i]->conf->name, ce->name) == 0)
				olds[j] = rt->eps[i];
		if (olds[j] && conf_endpoint_equal(olds[j]->conf, ce))
			continue;
		neweps[j] = ep_new(rt, ce, (int)j, err, errlen);
		if (!neweps[j]) {
			for (size_t k = 0; k < j; k++)
				if (neweps[k])
					ep_free(neweps[k], NULL);
			r = -EINVAL;
			goto out;
		}
	}
	/* 2: switch over */
	for (size_t i = 0; i < rt->neps; i++)
		remap[i] = -1;
	for (size_t j = 0; j < n; j++) {
		struct endpoint *old = olds[j];
		size_t oi = 0;
		if (old) {
			while (rt->eps[oi] != old)
				oi++;
			kept[oi] = 1;
			remap[oi] = (int)j;
		}
		if (!neweps[j]) {
			/* unchanged: it follows the new configuration's copy */
			old->conf = &nc->endpoints[j];
			old->index = (int)j;
			for (unsigned k = 0; k < old->nslots; k++)
				old->slots[k].up.conf = old->conf;
			neweps[j] = old;
			continue;
		}
		if (old) {
			log_notice("endpoint '%s': options changed: moving its %zu channel%s to "
				   "new connections", old->conf->name, old->chans.n,
				   old->chans.n == 1 ? "" : "s");
			ep_migrate(old, neweps[j]);
			ep_free(old, NULL);
		} else {
			log_notice("endpoint '%s': added", nc->endpoints[j].name);
		}
	}
	for (size_t i = 0; i < rt->neps; i++) {
		if (kept[i])
			continue;
		log_notice("endpoint '%s': removed; its channels are closed",
			   rt->eps[i]->conf->name);
		ep_free(rt->eps[i], "endpoint removed");
	}
	free(rt->eps);
	rt->eps = neweps;
	neweps = NULL;
	rt->neps = n;
	rt->conf = nc;
	const struct conf_endpoint *d = conf_default_endpoint(nc);
	rt->default_ep = d ? (int)(d - nc->endpoints) : 0;
	/* new pools start; moved channels rejoin */
	for (size_t j = 0; j < n; j++) {
		struct endpoint *ep = rt->eps[j];
		struct chan *ch;
		ep_warm(ep);
		for (size_t k = 0; (ch = hmap_next(&ep->chans, &k));)
			if (ch->state == CH_WAIT_UP)
				chan_send_join(ch);
	}
	r = 0;
out:
	free(neweps);
	free(olds);
	free(kept);
	return r;
}

size_t router_hibernate_idle(struct router *rt, uint64_t now_ms, uint64_t idle_ms)
{
	size_t freed = 0;
	for (size_t i = 0; i < rt->neps; i++) {
		struct endpoint *ep = rt->eps[i];
		for (unsigned k = 0; k < ep->nslots; k++) {
			struct up_slot *sl = &ep->slots[k];
			if (!up_conn_is_open(&sl->up) || now_ms - sl->last_ms < idle_ms)
				continue;
			/* heartbeats since the last round took buffers again:
			 * released again, without counting a new hibernation */
			size_t f = up_conn_hibernate(&sl->up);
			freed += f;
			/* (a partly read frame or queued writes keep it awake) */
			if (!sl->hibernating && up_conn_is_hibernated(&sl->up)) {
				sl->hibernating = 1;
				rt->ups_hibernating++;
				sl->hib_held = f;
				rt->ups_hib_now += f;
			}
		}
	}
	rt->ups_hib_bytes += freed;
	return freed;
}

int router_init(struct router *rt, struct ev_loop *loop, const struct conf *conf,
		char *err, size_t errlen)
{
	memset(rt, 0, sizeof(*rt));
	rt->loop = loop;
	rt->conf = conf;
	buf_init(&rt->line, 0);
	buf_init(&rt->bin, 0);
	buf_init(&rt->frame, 0);
	ev_timer_init(&rt->routes_cleanup, routes_cleanup_cb, conf->route_cleanup_ms / 1000.0,
		      conf->route_cleanup_ms / 1000.0);
	rt->eps = calloc(conf->nendpoints, sizeof(*rt->eps));
	if (!rt->eps) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < conf->nendpoints; i++) {
		rt->eps[i] = ep_new(rt, &conf->endpoints[i], (int)i, err, errlen);
		if (!rt->eps[i])
			goto fail;
		rt->neps++;
	}
	const struct conf_endpoint *d = conf_default_endpoint(conf);
	rt->default_ep = d ? (int)(d - conf->endpoints) : 0;
	routes_open(rt);
	if (rt->routes)
		ev_timer_start(loop, &rt->routes_cleanup);
	for (size_t i = 0; i < rt->neps; i++)
		ep_warm(rt->eps[i]);
	return 0;
fail:
	router_fini(rt);
	return -EINVAL;
}

void router_fini(struct router *rt)
{
	for (size_t i = 0; i < rt->neps; i++)
		ep_free(rt->eps[i], NULL);
	free(rt->eps);
	rt->eps = NULL;
	rt->neps = 0;
	ev_timer_stop(rt->loop, &rt->routes_cleanup);
	rt->routes = route_cache_close(rt->routes);
	buf_free(&rt->line);
	buf_free(&rt->bin);
	buf_free(&rt->frame);
}
