/* phxsim — a Phoenix Channels (V2 serializer) test server.
 *
 * SYNOPSIS
 *	phxsim [--listen HOST:PORT] [--control PATH] [--tls-cert FILE --tls-key FILE]
 *	       [--idle-timeout SEC] [--max-channels N] [--require-token TOKEN]
 *	       [--compression] [--fragment N] [--quiet] [--verbose] [--help]
 *
 * DESCRIPTION
 *	A single-threaded WebSocket server (libev + wslay) that speaks the
 *	Phoenix Channels V2 wire protocol well enough to test phxd against it:
 *	JSON array frames [join_ref, ref, topic, event, payload] in text frames
 *	and V2 binary frames.  It serves ws:// or, with --tls-cert/--tls-key,
 *	wss:// on the path /socket/websocket?vsn=2.0.0.
 *
 *	Once bound it prints exactly one line, "listening HOST PORT", to stdout.
 *	Logs go to stderr.
 *
 * OPTIONS
 *	--listen HOST:PORT	address to listen on (127.0.0.1:0; port 0 = any)
 *	--control PATH		Unix stream socket for the control protocol
 *	--tls-cert FILE		PEM certificate chain; with --tls-key, serve wss
 *	--tls-key FILE		PEM private key
 *	--idle-timeout SEC	close WebSockets silent for SEC seconds (60; 0 = never)
 *	--max-channels N	channels per socket (100)
 *	--require-token T	the upgrade must carry the connect param token=T
 *	--compression		accept a permessage-deflate offer (RFC 7692),
 *				honouring its window bits and context takeover
 *				parameters; an offer of server_max_window_bits=8
 *				is declined (zlib cannot compress with it)
 *	--fragment N		send messages longer than N bytes (after
 *				compression) in frames of N bytes (0 = whole;
 *				wslay caps a frame at 4096 bytes)
 *	--quiet			log warnings and errors only
 *	--verbose		log debug messages too
 *
 * CHANNELS
 *	phx_join: "nochan:*" → unmatched topic; "private:*" needs {"token":"secret"};
 *	"crashjoin:*" → join crashed; otherwise ok with the params echoed, unless
 *	REFUSE is pending or the socket has --max-channels channels.  Events on a
 *	joined topic: echo, shout (broadcast), fail, noreply, crash, push_me, stop,
 *	sleep {"ms":N}; any other event is echoed.  Binary pushes: "bshout"
 *	broadcasts the data, any other event is echoed in a binary reply.
 *
 * CONTROL PROTOCOL (one command per line, one "OK ..." or "ERR reason" line back)
 *	DROP [TOPIC]			close all connections (or those that joined
 *					TOPIC) abruptly; OK N
 *	CLOSE [CODE]			close frame (1000) to every WebSocket; OK N
 *	STALL | RESUME			stop / restart all WebSocket I/O; OK
 *	REFUSE N			refuse the next N joins; OK
 *	REJECT N			answer the next N upgrades with 403; OK
 *	DELAY MS			delay every reply by MS (0 = off); OK
 *	BROADCAST TOPIC EVENT JSON	[null,null,TOPIC,EVENT,JSON]; OK N
 *	BBROADCAST TOPIC EVENT B64	binary broadcast (kind 2); OK N
 *	PUSH TOPIC EVENT JSON		[JR,null,TOPIC,EVENT,JSON] to each; OK N
 *	CRASH TOPIC			phx_error to each, channels removed; OK N
 *	KICK TOPIC			phx_close to each, channels removed; OK N
 *	CHANNELS TOPIC			OK N (sockets joined to TOPIC)
 *	FLOOD TOPIC EVENT COUNT SIZE	COUNT broadcasts {"seq":I,"pad":"x…"} of about
 *					SIZE bytes, paced by the slowest socket;
 *					OK N (sockets joined at the start) once all
 *					are queued
 *	FRAGMENT N			as --fragment, from now on; OK
 *	CORRUPT TOPIC			a text frame with RSV1 set and a payload that
 *					is not deflate data, to each compressed
 *					socket joined to TOPIC; OK N
 *	STATS				OK {"connections":N,...}; ws_bytes_in/out
 *					count WebSocket bytes (frame headers
 *					included), payload_in/out the messages
 *					before compression, fragmented_out the
 *					messages sent in fragments and
 *					fragments_out their frames
 *					closes_in counts close frames received,
 *					close_in_CODE (present once seen) those
 *					with code 1000..1015, close_in_other
 *					the rest
 *
 * EXIT STATUS
 *	0 after SIGTERM or SIGINT, 1 on a startup error, 2 on a usage error.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <wslay/wslay.h>

#include "b64.h"
#include "buf.h"
#include "hmap.h"
#include "json.h"
#include "list.h"
#include "log.h"
#include "util.h"
#include "daemon/ws_deflate.h"
#include "daemon/ws_hs.h"

#define WS_PATH		"/socket/websocket"
#define MAX_MSG		(16u << 20)	/* largest WebSocket message accepted */
#define OUT_HARD_MAX	(64u << 20)	/* queued output that gets a socket dropped */
#define FLOOD_HIGH	(512u << 10)	/* a flood waits while a socket queues more */
#define FLOOD_LOW	(128u << 10)	/* ... and resumes below this */
#define FLOOD_BATCH	1024		/* messages per flood per loop iteration */
#define FLOOD_MAX_SIZE	(16u << 20)
#define CTL_LINE_MAX	(64u << 10)
#define CTL_OUT_MAX	(1u << 20)
#define CLOSE_GRACE_MS	5000		/* a closing socket that cannot flush */
#define DRAIN_MS	5000		/* reading after an HTTP error answer */
#define TICK_S		0.25		/* the one periodic timer */
#define MAX_SLEEP_MS	3600000u

enum conn_state {
	ST_TLS,		/* SSL_accept in progress */
	ST_HTTP,	/* reading the upgrade request */
	ST_HTTP_OUT,	/* writing the 101 or the error answer */
	ST_DRAIN,	/* error answer sent: discard input until EOF */
	ST_WS,		/* WebSocket */
	ST_DEAD,	/* closed, on sim.dead until reaped */
};

struct conn {
	struct list_node node;		/* sim.conns, or sim.dead once closed */
	struct list_node dnode;		/* sim.doomed: close from the loop */
	unsigned long id;
	int fd;
	enum conn_state st;
	int http_status;		/* answer being written in ST_HTTP_OUT */
	SSL *ssl;
	ev_io io;
	int evmask;			/* events io is started with */
	int rd_ev, wr_ev;		/* event that lets reading / writing progress */
	ev_timer ptimer;		/* pending (delayed) frames */
	struct list_node pending;	/* struct pend, sorted by due time */
	struct buf rbuf;		/* request head, then WebSocket bytes after it */
	struct buf wbuf;		/* HTTP answer */
	struct buf out;			/* WebSocket bytes for the socket, in order:
					 * our frames and those wslay hands over */
	wslay_event_context_ptr ws;
	struct hmap chmap;		/* topic → struct chan (keys: topic->name) */
	struct list_node chans;
	size_t nchans;
	uint64_t since;			/* accept time, or drain start */
	uint64_t last_rx;		/* last WebSocket frame received */
	uint64_t closing_at;		/* close frame queued by us; 0 = not */
	struct wsd_params pmd;		/* permessage-deflate, when pmd.enabled */
	struct wsd wsd;
	struct list_node frags;		/* struct frag being sent in fragments */
	size_t frag_bytes;		/* their bytes not yet handed to wslay */
	char peer[64];
};

/* A message sent in fragments: wslay reads it through frag_read_cb(). */
struct frag {
	struct list_node node;		/* conn->frags */
	struct conn *c;
	size_t len, off, piece;
	unsigned char data[];
};

/* One joined channel: a socket on a topic with its join_ref. */
struct chan {
	struct conn *c;
	struct topic *t;
	struct list_node tnode;		/* topic->subs */
	struct list_node cnode;		/* conn->chans */
	int jr_null;
	size_t jrlen;
	char jr[];
};

struct topic {
	struct list_node subs;		/* struct chan */
	size_t nsubs;
	size_t len;
	char name[];			/* key in sim.topics; not NUL-terminated */
};

/* A frame waiting for its due time (DELAY, sleep). */
struct pend {
	struct list_node node;
	uint64_t due;
	uint8_t opcode;
	size_t len;
	unsigned char data[];
};

struct ctl {
	struct list_node node;		/* sim.ctls, or sim.ctl_dead */
	int fd;
	ev_io io;
	int evmask;
	struct buf rbuf, wbuf;
	int discarding;			/* skipping the rest of an over-long line */
	int eof;
	int dead;
	struct flood *busy;		/* FLOOD not answered yet: lines wait */
};

struct flood {
	struct list_node node;		/* sim.floods */
	struct ctl *ctl;		/* who asked; NULL once it is gone */
	char *topic;
	size_t tlen;
	struct buf pre, post;		/* frame text around the seq number */
	unsigned long long next, count;
	size_t nsocks;
	int blocked;
};

struct stats {
	unsigned long long accepted, joins, leaves, frames_in, frames_out, heartbeats;
	unsigned long long compressed_in, compressed_out, ws_bytes_in, ws_bytes_out;
	unsigned long long payload_in, payload_out;
	unsigned long long fragmented_out, fragments_out;
	/* close frames received: all, by code 1000..1015, any other code */
	unsigned long long closes_in, close_in[16], close_in_other;
};

/* A string from a frame; p == NULL is JSON null. */
struct str {
	const char *p;
	size_t len;
};

/* A decoded client message (text or binary push). */
struct pmsg {
	struct str jr, ref, topic, event;
	const char *pl;			/* JSON payload text, or binary data */
	size_t pllen;
	int bin;
};

/* The one global: the server. */
static struct {
	struct ev_loop *loop;
	/* options */
	const char *listen;
	const char *control;
	const char *tls_cert, *tls_key;
	const char *token;
	unsigned idle_s;
	size_t max_channels;
	int compression;
	size_t fragment;		/* frame size for long messages; 0 = whole */
	/* state */
	SSL_CTX *ssl_ctx;
	int lfd, cfd;
	int control_bound;
	ev_io lio, cio;
	ev_timer accept_pause;
	ev_timer tick;
	ev_prepare reaper;
	ev_prepare flood_w;
	ev_signal sigterm, sigint;
	struct list_node conns, dead, doomed;
	struct list_node ctls, ctl_dead;
	struct list_node floods;
	struct hmap topics;		/* name → struct topic */
	size_t nws;			/* open WebSockets */
	size_t nchans;			/* channels on all sockets */
	unsigned long next_id;
	int stalled;
	unsigned long refuse, reject;
	unsigned delay_ms;
	struct stats st;
	struct buf scratch;		/* decoded strings of the message at hand */
	struct buf obuf;		/* the frame being built */
	struct buf zin;			/* the message at hand, inflated */
	struct buf zout;		/* the frame being queued, compressed */
} sim;

static const char empty_str[] = "";

/* ------------------------------------------------------------------------ */
/* Small helpers */

static struct str str_of(const char *s)
{
	return (struct str){ s, strlen(s) };
}

static int str_eq(struct str a, struct str b)
{
	if (!a.p || !b.p)
		return !a.p && !b.p;
	return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static int str_is(struct str a, const char *lit)
{
	return a.p && str_eq(a, str_of(lit));
}

static int str_prefix(struct str a, const char *lit)
{
	size_t n = strlen(lit);
	return a.p && a.len >= n && memcmp(a.p, lit, n) == 0;
}

/* Log-safe length of a string (log lines are bounded anyway). */
static int str_loglen(struct str s)
{
	return s.len > 200 ? 200 : (int)s.len;
}

static uint64_t now_ms(void)
{
	return util_now_ms();
}

/* Parses a decimal unsigned number that must fill all of s. */
static int parse_ulong(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Frame encoding.  Builders append to b; callers reset it first. */

static int put_jstr(struct buf *b, struct str s)
{
	if (!s.p)
		return buf_puts(b, "null");
	return json_put_str(b, s.p, s.len);
}

/* "[JR,REF,TOPIC,EVENT," — the caller appends the payload and "]". */
static int frame_begin(struct buf *b, struct str jr, struct str ref,
		       struct str topic, struct str event)
{
	int r;
	if ((r = buf_putc(b, '[')) < 0 || (r = put_jstr(b, jr)) < 0 ||
	    (r = buf_putc(b, ',')) < 0 || (r = put_jstr(b, ref)) < 0 ||
	    (r = buf_putc(b, ',')) < 0 || (r = put_jstr(b, topic)) < 0 ||
	    (r = buf_putc(b, ',')) < 0 || (r = put_jstr(b, event)) < 0)
		return r;
	return buf_putc(b, ',');
}

/* A whole JSON frame; payload is valid JSON and is compacted. */
static int frame_json(struct buf *b, struct str jr, struct str ref,
		      struct str topic, struct str event,
		      const char *pl, size_t pllen)
{
	int r = frame_begin(b, jr, ref, topic, event);
	if (r == 0)
		r = json_put_compact(b, pl, pllen);
	if (r == 0)
		r = buf_putc(b, ']');
	return r;
}

/* [JR,REF,TOPIC,"phx_reply",{"response":RESP,"status":"ok"|"error"}] */
static int frame_reply(struct buf *b, struct str jr, struct str ref,
		       struct str topic, int ok, const char *resp, size_t rlen)
{
	int r = frame_begin(b, jr, ref, topic, str_of("phx_reply"));
	if (r == 0)
		r = buf_puts(b, "{\"response\":");
	if (r == 0)
		r = json_put_compact(b, resp, rlen);
	if (r == 0)
		r = buf_puts(b, ok ? ",\"status\":\"ok\"}]" : ",\"status\":\"error\"}]");
	return r;
}

/* Binary reply, kind 1: join_ref, ref, topic, status, data. */
static int frame_bin_reply(struct buf *b, struct str jr, struct str ref,
			   struct str topic, const char *status,
			   const void *data, size_t dlen)
{
	size_t sl = strlen(status);
	if (jr.len > 255 || ref.len > 255 || topic.len > 255 || sl > 255)
		return -EMSGSIZE;
	unsigned char h[5] = { 1, (unsigned char)jr.len, (unsigned char)ref.len,
			       (unsigned char)topic.len, (unsigned char)sl };
	int r;
	if ((r = buf_append(b, h, sizeof(h))) < 0 ||
	    (r = buf_append(b, jr.p, jr.len)) < 0 ||
	    (r = buf_append(b, ref.p, ref.len)) < 0 ||
	    (r = buf_append(b, topic.p, topic.len)) < 0 ||
	    (r = buf_append(b, status, sl)) < 0)
		return r;
	return buf_append(b, data, dlen);
}

/* Binary broadcast, kind 2: topic, event, data. */
static int frame_bin_bcast(struct buf *b, struct str topic, struct str event,
			   const void *data, size_t dlen)
{
	if (topic.len > 255 || event.len > 255)
		return -EMSGSIZE;
	unsigned char h[3] = { 2, (unsigned char)topic.len, (unsigned char)event.len };
	int r;
	if ((r = buf_append(b, h, sizeof(h))) < 0 ||
	    (r = buf_append(b, topic.p, topic.len)) < 0 ||
	    (r = buf_append(b, event.p, event.len)) < 0)
		return r;
	return buf_append(b, data, dlen);
}

static struct buf *obuf_reset(void)
{
	buf_reset(&sim.obuf);
	if (sim.obuf.cap > (1u << 20))
		buf_free(&sim.obuf);
	return &sim.obuf;
}

/* ------------------------------------------------------------------------ */
/* Decoding client messages */

/* Splits a JSON array of exactly five values into their spans. */
static int split5(const char *p, size_t len, struct json_span el[5])
{
	size_t i = json_ws(p, len, 0);
	if (i >= len || p[i] != '[')
		return -EINVAL;
	i = json_ws(p, len, i + 1);
	for (int k = 0; k < 5; k++) {
		long n = json_skip(p + i, len - i, NULL);
		if (n < 0)
			return -EINVAL;
		el[k].p = p + i;
		el[k].len = (size_t)n;
		i = json_ws(p, len, i + (size_t)n);
		if (i >= len)
			return -EINVAL;
		if (k < 4) {
			if (p[i] != ',')
				return -EINVAL;
			i = json_ws(p, len, i + 1);
		}
	}
	if (p[i] != ']')
		return -EINVAL;
	return json_ws(p, len, i + 1) == len ? 0 : -EINVAL;
}

static int pmsg_from_text(struct pmsg *m, const char *p, size_t len)
{
	struct json_span el[5];
	size_t off[4], n[4];
	int null[4];

	if (split5(p, len, el) < 0)
		return -EINVAL;
	buf_reset(&sim.scratch);
	if (sim.scratch.cap > (1u << 20))
		buf_free(&sim.scratch);
	for (int k = 0; k < 4; k++) {
		enum json_type t = json_peek(el[k].p, el[k].len);
		null[k] = (t == JSON_T_NULL);
		off[k] = buf_len(&sim.scratch);
		if (null[k] && k < 2)
			continue;
		if (t != JSON_T_STRING)
			return -EINVAL;
		if (json_str_decode(el[k].p, el[k].len, &sim.scratch) < 0)
			return -EINVAL;
	}
	for (int k = 0; k < 4; k++)
		n[k] = (k < 3 ? off[k + 1] : buf_len(&sim.scratch)) - off[k];
	struct str *dst[4] = { &m->jr, &m->ref, &m->topic, &m->event };
	for (int k = 0; k < 4; k++) {
		if (null[k])
			*dst[k] = (struct str){ NULL, 0 };
		else if (n[k] == 0)
			*dst[k] = (struct str){ empty_str, 0 };
		else
			*dst[k] = (struct str){ sim.scratch.data + off[k], n[k] };
	}
	m->pl = el[4].p;
	m->pllen = el[4].len;
	m->bin = 0;
	return 0;
}

/* V2 binary push (kind 0): u8 jr_len, ref_len, topic_len, event_len, then
 * the strings, then the data. */
static int pmsg_from_bin(struct pmsg *m, const uint8_t *p, size_t len)
{
	if (len < 5 || p[0] != 0)
		return -EINVAL;
	size_t jl = p[1], rl = p[2], tl = p[3], el = p[4];
	if (5 + jl + rl + tl + el > len)
		return -EINVAL;
	const char *s = (const char *)p + 5;
	m->jr = (struct str){ s, jl };
	m->ref = (struct str){ s + jl, rl };
	m->topic = (struct str){ s + jl + rl, tl };
	m->event = (struct str){ s + jl + rl + tl, el };
	m->pl = s + jl + rl + tl + el;
	m->pllen = len - 5 - jl - rl - tl - el;
	m->bin = 1;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Topics and channels */

static struct topic *topic_get(struct str name)
{
	return hmap_get(&sim.topics, name.p, name.len);
}

/* Frees t once nobody is joined to it. */
static void topic_gc(struct topic *t)
{
	if (!t || t->nsubs)
		return;
	hmap_del(&sim.topics, t->name, t->len);
	free(t);
}

static struct chan *conn_chan(struct conn *c, struct str topic)
{
	return hmap_get(&c->chmap, topic.p, topic.len);
}

static struct str chan_jr(const struct chan *ch)
{
	return (struct str){ ch->jr_null ? NULL : ch->jr, ch->jrlen };
}

static struct chan *chan_add(struct conn *c, struct str topic, struct str jr)
{
	struct topic *t = topic_get(topic);
	int fresh = 0;

	if (!t) {
		t = malloc(sizeof(*t) + topic.len + 1);
		if (!t)
			return NULL;
		list_init(&t->subs);
		t->nsubs = 0;
		t->len = topic.len;
		memcpy(t->name, topic.p, topic.len);
		t->name[topic.len] = '\0';
		if (hmap_put(&sim.topics, t->name, t->len, t) < 0) {
			free(t);
			return NULL;
		}
		fresh = 1;
	}
	struct chan *ch = malloc(sizeof(*ch) + jr.len + 1);
	if (!ch || hmap_put(&c->chmap, t->name, t->len, ch) < 0) {
		free(ch);
		if (fresh)
			topic_gc(t);
		return NULL;
	}
	ch->c = c;
	ch->t = t;
	ch->jr_null = !jr.p;
	ch->jrlen = jr.len;
	if (jr.len)
		memcpy(ch->jr, jr.p, jr.len);
	ch->jr[jr.len] = '\0';
	list_add_tail(&t->subs, &ch->tnode);
	list_add_tail(&c->chans, &ch->cnode);
	t->nsubs++;
	c->nchans++;
	sim.nchans++;
	return ch;
}

/* Removes and frees ch; its topic stays until topic_gc(). */
static struct topic *chan_del(struct chan *ch)
{
	struct topic *t = ch->t;
	struct conn *c = ch->c;

	hmap_del(&c->chmap, t->name, t->len);
	list_del(&ch->tnode);
	list_del(&ch->cnode);
	t->nsubs--;
	c->nchans--;
	sim.nchans--;
	free(ch);
	return t;
}

/* ------------------------------------------------------------------------ */
/* Connections: output */

static void conn_update(struct conn *c);
static void flood_kick(void);

/* Closes c from the loop (never inside the caller's iteration). */
static void conn_doom(struct conn *c, const char *why)
{
	if (c->st == ST_DEAD || list_linked(&c->dnode))
		return;
	log_debug("conn %lu: %s", c->id, why);
	list_add_tail(&sim.doomed, &c->dnode);
}

/* Bytes queued for c: wslay's whole messages, our fragmented ones, and
 * the frames in c->out not yet written. */
static size_t conn_queued(const struct conn *c)
{
	return wslay_event_get_queued_msg_length(c->ws) + c->frag_bytes + buf_len(&c->out);
}

/* Anything for the socket? */
static int conn_want_write(const struct conn *c)
{
	return buf_len(&c->out) || wslay_event_want_write(c->ws);
}

/* Encodes one unfragmented server frame (FIN, RSV bits rsv, not masked)
 * straight into c->out: no wslay message, no copy of our own, no system
 * call per frame.  Only when wslay holds nothing, so the order holds.
 * 0 or WSLAY_ERR_NOMEM. */
static int conn_put_frame(struct conn *c, uint8_t opcode, const void *p, size_t n,
			  uint8_t rsv)
{
	size_t hl = n < 126 ? 2 : n <= 0xffff ? 4 : 10;
	uint8_t *h = (uint8_t *)buf_reserve(&c->out, hl + n);

	if (!h)
		return WSLAY_ERR_NOMEM;
	h[0] = (uint8_t)(0x80u | (unsigned)rsv << 4 | (opcode & 0x0fu));
	if (n < 126) {
		h[1] = (uint8_t)n;
	} else if (n <= 0xffff) {
		h[1] = 126;
		h[2] = (uint8_t)(n >> 8);
		h[3] = (uint8_t)n;
	} else {
		h[1] = 127;
		for (int i = 0; i < 8; i++)
			h[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
	}
	if (n)
		memcpy(h + hl, p, n);
	buf_commit(&c->out, hl + n);
	return 0;
}

static ssize_t frag_read_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
			    const union wslay_event_msg_source *src, int *eof, void *user)
{
	struct frag *f = src->data;
	size_t n = f->len - f->off;

	(void)ctx;
	(void)user;
	if (n > f->piece)
		n = f->piece;
	if (n > len)
		n = len;
	memcpy(buf, f->data + f->off, n);
	f->off += n;
	f->c->frag_bytes -= n;
	sim.st.fragments_out++;
	if (f->off == f->len) {
		*eof = 1;
		list_del(&f->node);
		free(f);
	}
	return (ssize_t)n;
}

/* Queues p[0..n) (n > 0) to go out in frames of sim.fragment bytes; RSV1,
 * if set, goes on the first frame only (wslay clears it after). */
static int conn_queue_frag(struct conn *c, uint8_t opcode, const void *p, size_t n,
			   uint8_t rsv)
{
	struct frag *f = malloc(sizeof(*f) + n);
	if (!f)
		return WSLAY_ERR_NOMEM;
	f->c = c;
	f->len = n;
	f->off = 0;
	f->piece = sim.fragment;
	memcpy(f->data, p, n);
	struct wslay_event_fragmented_msg fm = { .opcode = opcode, .read_callback = frag_read_cb };
	fm.source.data = f;
	int r = wslay_event_queue_fragmented_msg_ex(c->ws, &fm, rsv);
	if (r < 0) {
		free(f);
		return r;
	}
	list_add_tail(&c->frags, &f->node);
	c->frag_bytes += n;
	sim.st.fragmented_out++;
	return 0;
}

static void frags_free_all(struct conn *c)
{
	struct list_node *pos, *tmp;
	list_for_each_safe(pos, tmp, &c->frags) {
		list_del(pos);
		free(container_of(pos, struct frag, node));
	}
	c->frag_bytes = 0;
}

/* Hands one frame to wslay (which copies it), compressed when
 * permessage-deflate is on, in fragments with --fragment. */
static void conn_queue(struct conn *c, uint8_t opcode, const void *p, size_t n)
{
	struct wslay_event_msg m = { opcode, p, n };
	uint8_t rsv = WSLAY_RSV_NONE;
	int r;

	if (c->st != ST_WS)
		return;
	sim.st.payload_out += n;
	if (c->pmd.enabled) {
		buf_reset(&sim.zout);
		if (wsd_deflate(&c->wsd, p, n, &sim.zout) < 0) {
			conn_doom(c, "cannot compress a frame");
			return;
		}
		m.msg = (const uint8_t *)buf_rptr(&sim.zout);
		m.msg_length = buf_len(&sim.zout);
		rsv = WSLAY_RSV1_BIT;
		sim.st.compressed_out++;
	}
	if (sim.fragment && m.msg_length > sim.fragment)
		r = conn_queue_frag(c, opcode, m.msg, m.msg_length, rsv);
	else if (wslay_event_get_write_enabled(c->ws) && !wslay_event_want_write(c->ws))
		/* wslay holds nothing (a close it queued would be there until
		 * sent, and then writing is off): the frame goes after c->out */
		r = conn_put_frame(c, opcode, m.msg, m.msg_length, rsv);
	else
		r = wslay_event_queue_msg_ex(c->ws, &m, rsv);
	if (sim.zout.cap > (1u << 20))
		buf_free(&sim.zout);
	if (r == WSLAY_ERR_NO_MORE_MSG)
		return;
	if (r < 0) {
		conn_doom(c, "cannot queue a frame");
		return;
	}
	sim.st.frames_out++;
	if (conn_queued(c) > OUT_HARD_MAX) {
		log_warn("conn %lu (%s): over %u bytes queued, dropping it", c->id,
			 c->peer, OUT_HARD_MAX);
		conn_doom(c, "output overflow");
		return;
	}
	conn_update(c);
}

static void pend_arm(struct conn *c)
{
	ev_timer_stop(sim.loop, &c->ptimer);
	if (list_empty(&c->pending))
		return;
	struct pend *p = container_of(c->pending.next, struct pend, node);
	uint64_t now = now_ms();
	double after = p->due > now ? (double)(p->due - now) / 1000.0 : 0.0;
	ev_timer_set(&c->ptimer, after, 0.0);
	ev_timer_start(sim.loop, &c->ptimer);
}

/* Sends a frame to one socket at time `due` (ms, util_now_ms clock), after
 * every frame already waiting for an earlier or equal time. */
static void conn_defer(struct conn *c, uint8_t opcode, const void *p, size_t n,
		       uint64_t due)
{
	struct list_node *pos;

	if (c->st != ST_WS)
		return;
	/* insertion point: after the last frame due earlier or at the same
	 * time (searched from the tail: due times mostly grow) */
	for (pos = c->pending.prev; pos != &c->pending; pos = pos->prev)
		if (container_of(pos, struct pend, node)->due <= due)
			break;
	if (pos == &c->pending && due <= now_ms()) {
		conn_queue(c, opcode, p, n);
		return;
	}
	pos = pos->next;
	struct pend *pd = malloc(sizeof(*pd) + n);
	if (!pd) {
		conn_doom(c, "out of memory");
		return;
	}
	pd->due = due;
	pd->opcode = opcode;
	pd->len = n;
	if (n)
		memcpy(pd->data, p, n);
	list_add_tail(pos, &pd->node);	/* inserts before pos */
	pend_arm(c);
}

static void pend_free_all(struct conn *c)
{
	struct list_node *pos, *tmp;
	list_for_each_safe(pos, tmp, &c->pending) {
		list_del(pos);
		free(container_of(pos, struct pend, node));
	}
	ev_timer_stop(sim.loop, &c->ptimer);
}

static void ptimer_cb(struct ev_loop *l, ev_timer *w, int revents)
{
	struct conn *c = container_of(w, struct conn, ptimer);
	uint64_t now = now_ms() + 1;	/* timers may fire a hair early */

	(void)l;
	(void)revents;
	while (!list_empty(&c->pending) && c->st == ST_WS) {
		struct pend *p = container_of(c->pending.next, struct pend, node);
		if (p->due > now)
			break;
		list_del(&p->node);
		conn_queue(c, p->opcode, p->data, p->len);
		free(p);
	}
	pend_arm(c);
}

static uint64_t reply_due(unsigned long extra_ms)
{
	return now_ms() + sim.delay_ms + extra_ms;
}

/* Sends buf b as a text frame to c at due. */
static void send_text(struct conn *c, struct buf *b, uint64_t due)
{
	if (buf_len(b))
		conn_defer(c, WSLAY_TEXT_FRAME, buf_rptr(b), buf_len(b), due);
}

/* ok/error reply to m, delayed by DELAY (+ extra); returns the due time. */
static uint64_t reply(struct conn *c, const struct pmsg *m, struct str jr, int ok,
		      const char *resp, size_t rlen, unsigned long extra_ms)
{
	struct buf *b = obuf_reset();
	uint64_t due = reply_due(extra_ms);

	if (frame_reply(b, jr, m->ref, m->topic, ok, resp, rlen) == 0)
		send_text(c, b, due);
	else
		conn_doom(c, "cannot build a reply");
	return due;
}

static uint64_t reply_lit(struct conn *c, const struct pmsg *m, struct str jr,
			  int ok, const char *resp)
{
	return reply(c, m, jr, ok, resp, strlen(resp), 0);
}

static uint64_t reply_reason(struct conn *c, const struct pmsg *m, struct str jr,
			     const char *reason)
{
	char resp[96];
	snprintf(resp, sizeof(resp), "{\"reason\":\"%s\"}", reason);
	return reply_lit(c, m, jr, 0, resp);
}

/* [JR,JR,topic,EVENT,{}] (phx_close, phx_error) to one socket. */
static void send_chan_event(struct conn *c, struct str jr, struct str topic,
			    const char *event, uint64_t due)
{
	struct buf *b = obuf_reset();
	if (frame_json(b, jr, jr, topic, str_of(event), "{}", 2) == 0)
		send_text(c, b, due);
}

/* Sends the frame in p[0..n) to every socket joined to t. */
static size_t topic_send(struct topic *t, uint8_t opcode, const void *p, size_t n)
{
	struct list_node *pos;
	size_t cnt = 0;

	if (!t)
		return 0;
	for (pos = t->subs.next; pos != &t->subs; pos = pos->next) {
		struct chan *ch = container_of(pos, struct chan, tnode);
		conn_queue(ch->c, opcode, p, n);
		cnt++;
	}
	return cnt;
}

/* ------------------------------------------------------------------------ */
/* Connections: transport (plain or TLS) */

static const char *ssl_errstr(void)
{
	static char s[256];
	unsigned long e = ERR_peek_last_error();
	if (!e)
		return "unknown TLS error";
	ERR_error_string_n(e, s, sizeof(s));
	return s;
}

/* Bytes read (> 0), 0 at EOF, -EAGAIN, or a negative errno. */
static ssize_t conn_read(struct conn *c, void *p, size_t n)
{
	if (!c->ssl) {
		for (;;) {
			ssize_t r = recv(c->fd, p, n, 0);
			if (r >= 0)
				return r;
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return -EAGAIN;
			return -errno;
		}
	}
	ERR_clear_error();
	int r = SSL_read(c->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
	if (r > 0) {
		c->rd_ev = EV_READ;
		return r;
	}
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		c->rd_ev = EV_READ;
		return -EAGAIN;
	case SSL_ERROR_WANT_WRITE:
		c->rd_ev = EV_WRITE;
		return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		return errno ? -errno : 0;
	default:
		log_debug("conn %lu: TLS read: %s", c->id, ssl_errstr());
		return -EPROTO;
	}
}

/* Bytes written (> 0), -EAGAIN, or a negative errno. */
static ssize_t conn_write(struct conn *c, const void *p, size_t n, int more)
{
	if (!c->ssl) {
		for (;;) {
			ssize_t r = send(c->fd, p, n, MSG_NOSIGNAL | (more ? MSG_MORE : 0));
			if (r >= 0)
				return r;
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return -EAGAIN;
			return -errno;
		}
	}
	ERR_clear_error();
	int r = SSL_write(c->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
	if (r > 0) {
		c->wr_ev = EV_WRITE;
		return r;
	}
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		c->wr_ev = EV_READ;
		return -EAGAIN;
	case SSL_ERROR_WANT_WRITE:
		c->wr_ev = EV_WRITE;
		return -EAGAIN;
	case SSL_ERROR_SYSCALL:
		return errno ? -errno : -EPIPE;
	default:
		log_debug("conn %lu: TLS write: %s", c->id, ssl_errstr());
		return -EPROTO;
	}
}

/* ------------------------------------------------------------------------ */
/* Connections: lifecycle */

/* Closes c now: channels removed, I/O stopped, fd closed.  The memory is
 * freed later by the reaper, so callers up the stack may still look at it. */
static void conn_close(struct conn *c, int graceful)
{
	struct list_node *pos, *tmp;

	if (c->st == ST_DEAD)
		return;
	list_for_each_safe(pos, tmp, &c->chans)
		topic_gc(chan_del(container_of(pos, struct chan, cnode)));
	hmap_free(&c->chmap);
	pend_free_all(c);
	ev_io_stop(sim.loop, &c->io);
	if (c->ws) {
		wslay_event_context_free(c->ws);
		c->ws = NULL;
	}
	frags_free_all(c);	/* after wslay: it may point at them no more */
	wsd_fini(&c->wsd);
	if (c->ssl) {
		if (graceful && c->st != ST_TLS) {
			ERR_clear_error();
			SSL_shutdown(c->ssl);	/* best effort close_notify */
		}
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	buf_free(&c->rbuf);
	buf_free(&c->wbuf);
	buf_free(&c->out);
	if (c->st == ST_WS)
		sim.nws--;
	log_debug("conn %lu (%s): closed", c->id, c->peer);
	c->st = ST_DEAD;
	list_del(&c->dnode);
	list_del(&c->node);
	list_add_tail(&sim.dead, &c->node);
	if (!list_empty(&sim.floods))
		flood_kick();	/* a slow socket may have been holding a flood */
}

static void conn_update(struct conn *c)
{
	int ev = 0;

	if (c->st == ST_DEAD)
		return;
	if (!sim.stalled || c->closing_at) {
		switch (c->st) {
		case ST_TLS:
		case ST_HTTP:
		case ST_DRAIN:
			ev = c->rd_ev;
			break;
		case ST_HTTP_OUT:
			ev = c->wr_ev;
			break;
		case ST_WS:
			if (wslay_event_want_read(c->ws))
				ev |= c->rd_ev;
			if (conn_want_write(c))
				ev |= c->wr_ev;
			break;
		case ST_DEAD:
			break;
		}
	}
	if (ev == c->evmask)
		return;
	ev_io_stop(sim.loop, &c->io);
	c->evmask = ev;
	if (ev) {
		ev_io_set(&c->io, c->fd, ev);
		ev_io_start(sim.loop, &c->io);
	}
}

/* Queues a close frame; the socket is closed once it is sent. */
static int conn_ws_close(struct conn *c, uint16_t code)
{
	if (c->st != ST_WS)
		return -EINVAL;
	if (!c->closing_at)
		c->closing_at = now_ms();
	int r = wslay_event_queue_close(c->ws, code, NULL, 0);
	if (r < 0 && r != WSLAY_ERR_NO_MORE_MSG) {
		conn_doom(c, "cannot queue close");
		return -EIO;
	}
	conn_update(c);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Phoenix channel behaviour */

static void handle_join(struct conn *c, const struct pmsg *m)
{
	struct chan *old = conn_chan(c, m->topic);
	const char *reason = NULL;

	if (old) {
		send_chan_event(c, chan_jr(old), m->topic, "phx_close", now_ms());
		topic_gc(chan_del(old));
	}
	if (str_prefix(m->topic, "nochan:")) {
		reason = "unmatched topic";
	} else if (str_prefix(m->topic, "private:")) {
		struct json_span tok;
		char v[16];
		size_t vl = 0;
		if (json_obj_get(m->pl, m->pllen, "token", &tok) < 0 ||
		    json_peek(tok.p, tok.len) != JSON_T_STRING ||
		    json_str_decode_to(tok.p, tok.len, v, sizeof(v), &vl) < 0 ||
		    vl != 6 || memcmp(v, "secret", 6) != 0)
			reason = "unauthorized";
	} else if (str_prefix(m->topic, "crashjoin:")) {
		reason = "join crashed";
	}
	if (!reason && sim.refuse > 0) {
		sim.refuse--;
		reason = "refused";
	}
	if (!reason && c->nchans >= sim.max_channels)
		reason = "too many channels joined";
	if (reason) {
		log_debug("conn %lu: join %.*s refused: %s", c->id,
			  str_loglen(m->topic), m->topic.p, reason);
		reply_reason(c, m, m->jr, reason);
		return;
	}
	if (!chan_add(c, m->topic, m->jr)) {
		conn_doom(c, "out of memory");
		return;
	}
	sim.st.joins++;
	reply(c, m, m->jr, 1, m->pl, m->pllen, 0);
}

/* The delay of a "sleep" event: payload {"ms":N}. */
static unsigned long sleep_ms(const struct pmsg *m)
{
	struct json_span v;
	char num[24];
	unsigned long ms;

	if (json_obj_get(m->pl, m->pllen, "ms", &v) < 0 ||
	    json_peek(v.p, v.len) != JSON_T_NUMBER || v.len >= sizeof(num))
		return 0;
	memcpy(num, v.p, v.len);
	num[v.len] = '\0';
	if (parse_ulong(num, MAX_SLEEP_MS, &ms) < 0)
		return 0;
	return ms;
}

static void handle_bin_event(struct conn *c, struct chan *ch, const struct pmsg *m)
{
	struct buf *b;

	if (str_is(m->event, "bshout")) {
		b = obuf_reset();
		if (frame_bin_bcast(b, m->topic, m->event, m->pl, m->pllen) == 0)
			topic_send(ch->t, WSLAY_BINARY_FRAME, buf_rptr(b), buf_len(b));
		reply_lit(c, m, m->jr, 1, "{}");
		return;
	}
	b = obuf_reset();
	if (frame_bin_reply(b, m->jr, m->ref, m->topic, "ok", m->pl, m->pllen) == 0)
		conn_defer(c, WSLAY_BINARY_FRAME, buf_rptr(b), buf_len(b), reply_due(0));
}

static void handle_event(struct conn *c, struct chan *ch, const struct pmsg *m)
{
	struct str jr = chan_jr(ch);
	struct buf *b;
	uint64_t due;

	if (str_is(m->event, "phx_leave") || str_is(m->event, "stop")) {
		if (str_is(m->event, "phx_leave"))
			sim.st.leaves++;
		due = reply_lit(c, m, jr, 1, "{}");
		send_chan_event(c, jr, m->topic, "phx_close", due);
		topic_gc(chan_del(ch));
		return;
	}
	if (m->bin) {
		handle_bin_event(c, ch, m);
		return;
	}
	if (str_is(m->event, "shout")) {
		b = obuf_reset();
		if (frame_json(b, (struct str){ NULL, 0 }, (struct str){ NULL, 0 },
			       m->topic, m->event, m->pl, m->pllen) == 0)
			topic_send(ch->t, WSLAY_TEXT_FRAME, buf_rptr(b), buf_len(b));
		reply_lit(c, m, jr, 1, "{}");
	} else if (str_is(m->event, "fail")) {
		reply_reason(c, m, jr, "failed");
	} else if (str_is(m->event, "noreply")) {
		/* nothing */
	} else if (str_is(m->event, "crash")) {
		send_chan_event(c, jr, m->topic, "phx_error", now_ms());
		topic_gc(chan_del(ch));
	} else if (str_is(m->event, "push_me")) {
		b = obuf_reset();
		if (frame_json(b, jr, (struct str){ NULL, 0 }, m->topic,
			       str_of("pushed"), m->pl, m->pllen) == 0)
			send_text(c, b, now_ms());
		reply_lit(c, m, jr, 1, "{}");
	} else if (str_is(m->event, "sleep")) {
		reply(c, m, jr, 1, "{}", 2, sleep_ms(m));
	} else {
		/* "echo" and anything else */
		reply(c, m, jr, 1, m->pl, m->pllen, 0);
	}
}

static void handle_msg(struct conn *c, const struct pmsg *m)
{
	if (str_is(m->topic, "phoenix") && str_is(m->event, "heartbeat")) {
		sim.st.heartbeats++;
		reply_lit(c, m, (struct str){ NULL, 0 }, 1, "{}");
		return;
	}
	if (str_is(m->event, "phx_join")) {
		if (m->bin) {
			log_debug("conn %lu: binary phx_join ignored", c->id);
			return;
		}
		handle_join(c, m);
		return;
	}
	struct chan *ch = conn_chan(c, m->topic);
	if (!ch) {
		reply_reason(c, m, (struct str){ NULL, 0 }, "unmatched topic");
		return;
	}
	if (!str_eq(chan_jr(ch), m->jr)) {
		log_debug("conn %lu: stale join_ref on %.*s ignored", c->id,
			  str_loglen(m->topic), m->topic.p);
		return;
	}
	handle_event(c, ch, m);
}

/* ------------------------------------------------------------------------ */
/* wslay callbacks */

static ssize_t ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *data, size_t len,
			  int flags, void *user)
{
	struct conn *c = user;
	(void)flags;

	/* bytes that came right after the request head go first */
	if (buf_len(&c->rbuf)) {
		size_t n = buf_len(&c->rbuf) < len ? buf_len(&c->rbuf) : len;
		memcpy(data, buf_rptr(&c->rbuf), n);
		buf_consume(&c->rbuf, n);
		buf_release(&c->rbuf);
		return (ssize_t)n;
	}
	ssize_t r = conn_read(c, data, len);
	if (r > 0) {
		sim.st.ws_bytes_in += (unsigned long long)r;
		return r;
	}
	wslay_event_set_error(ctx, r == -EAGAIN ? WSLAY_ERR_WOULDBLOCK :
			      WSLAY_ERR_CALLBACK_FAILURE);
	if (r == 0)
		log_debug("conn %lu: EOF", c->id);
	return -1;
}

/* wslay's frames join ours in c->out, whole (never a partial write, so
 * wslay is never in the middle of a frame when conn_put_frame adds one);
 * conn_out_write sends them. */
static ssize_t ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data,
			  size_t len, int flags, void *user)
{
	struct conn *c = user;

	(void)flags;
	if (buf_append(&c->out, data, len) < 0) {
		wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
		return -1;
	}
	return (ssize_t)len;
}

/* A message with RSV1: inflated into sim.zin, with the client's window and
 * context takeover.  A failure fails the connection (close 1007). */
static int ws_inflate(struct conn *c, const struct wslay_event_on_msg_recv_arg *arg,
		      const uint8_t **msg, size_t *len)
{
	buf_reset(&sim.zin);
	if (sim.zin.cap > (1u << 20))
		buf_free(&sim.zin);
	int r = wsd_inflate(&c->wsd, arg->msg, arg->msg_length, MAX_MSG, &sim.zin);
	if (r < 0) {
		log_warn("conn %lu (%s): bad compressed message: %s", c->id, c->peer,
			 r == -EPROTO ? c->wsd.err : strerror(-r));
		wslay_event_shutdown_read(c->ws);
		conn_ws_close(c, r == -EMSGSIZE ? 1009 : 1007);
		return r;
	}
	sim.st.compressed_in++;
	*msg = (const uint8_t *)buf_rptr(&sim.zin);
	*len = buf_len(&sim.zin);
	return 0;
}

static void ws_msg_cb(wslay_event_context_ptr ctx,
		      const struct wslay_event_on_msg_recv_arg *arg, void *user)
{
	struct conn *c = user;
	struct pmsg m;
	const uint8_t *msg = arg->msg;
	size_t len = arg->msg_length;
	(void)ctx;

	c->last_rx = now_ms();
	if (c->st != ST_WS)
		return;
	if ((arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME) &&
	    (arg->rsv & WSLAY_RSV1_BIT) && ws_inflate(c, arg, &msg, &len) < 0)
		return;
	if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME)
		sim.st.payload_in += len;
	if (arg->opcode == WSLAY_TEXT_FRAME) {
		sim.st.frames_in++;
		if (pmsg_from_text(&m, (const char *)msg, len) < 0) {
			log_debug("conn %lu: malformed text frame ignored", c->id);
			return;
		}
		handle_msg(c, &m);
	} else if (arg->opcode == WSLAY_BINARY_FRAME) {
		sim.st.frames_in++;
		if (pmsg_from_bin(&m, msg, len) < 0) {
			log_debug("conn %lu: malformed binary frame ignored", c->id);
			return;
		}
		handle_msg(c, &m);
	} else if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
		log_debug("conn %lu: close frame %u", c->id, arg->status_code);
		sim.st.closes_in++;
		if (arg->status_code >= 1000 && arg->status_code < 1016)
			sim.st.close_in[arg->status_code - 1000]++;
		else
			sim.st.close_in_other++;
	}
}

static const struct wslay_event_callbacks ws_callbacks = {
	.recv_callback = ws_recv_cb,
	.send_callback = ws_send_cb,
	.on_msg_recv_callback = ws_msg_cb,
};

/* ------------------------------------------------------------------------ */
/* Connection state machine */

/* Writes c->out until it is empty or the socket is full: large writes,
 * however many frames they hold.  0 or a negative errno. */
static int conn_out_write(struct conn *c)
{
	while (buf_len(&c->out)) {
		size_t n = buf_len(&c->out);
		ssize_t r = conn_write(c, buf_rptr(&c->out), n, 0);
		if (r == -EAGAIN)
			return 0;
		if (r < 0)
			return (int)r;
		sim.st.ws_bytes_out += (unsigned long long)r;
		buf_consume(&c->out, (size_t)r);
		if (!c->ssl && (size_t)r < n)
			return 0;	/* the socket is full: the next try would say so */
	}
	/* a flood's buffer goes once the flood is over */
	if (c->out.cap > FLOOD_LOW && list_empty(&sim.floods))
		buf_free(&c->out);
	return 0;
}

/* WebSocket I/O.  0, or < 0 when c must be closed (-ECONNRESET: cleanly). */
static int conn_ws_io(struct conn *c, int revents)
{
	int r;

	if ((revents & c->rd_ev) && wslay_event_want_read(c->ws)) {
		r = wslay_event_recv(c->ws);
		if (r < 0)
			return -EIO;
		if (c->st != ST_WS)
			return 0;
	}
	if (wslay_event_want_write(c->ws) && wslay_event_send(c->ws) < 0)
		return -EIO;
	if (buf_len(&c->out)) {
		if (conn_out_write(c) < 0)
			return -EIO;
		if (!list_empty(&sim.floods) && conn_queued(c) < FLOOD_LOW)
			flood_kick();
	}
	if (buf_len(&c->out))
		return 0;
	if (!wslay_event_want_read(c->ws) && !wslay_event_want_write(c->ws))
		return -ECONNRESET;
	if (c->closing_at && wslay_event_get_close_sent(c->ws))
		return -ECONNRESET;
	return 0;
}

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Finds name in a query string "k=v&k2=v2" (q may be NULL) and copies its
 * percent-decoded value into out.  1 found, 0 absent, -EINVAL malformed or
 * longer than cap - 1 bytes. */
static int query_get(const char *q, const char *name, char *out, size_t cap)
{
	size_t nl = strlen(name);

	while (q && *q) {
		const char *amp = strchr(q, '&');
		size_t seg = amp ? (size_t)(amp - q) : strlen(q);
		const char *eq = memchr(q, '=', seg);
		size_t kl = eq ? (size_t)(eq - q) : seg;
		if (kl == nl && memcmp(q, name, nl) == 0) {
			size_t o = 0;
			for (size_t i = kl + 1; eq && i < seg; i++) {
				int ch = (unsigned char)q[i];
				if (ch == '+') {
					ch = ' ';
				} else if (ch == '%') {
					if (i + 2 >= seg)
						return -EINVAL;
					int hi = hexval(q[i + 1]), lo = hexval(q[i + 2]);
					if (hi < 0 || lo < 0)
						return -EINVAL;
					ch = hi * 16 + lo;
					i += 2;
				}
				if (o + 1 >= cap)
					return -EINVAL;
				out[o++] = (char)ch;
			}
			out[o] = '\0';
			return 1;
		}
		q = amp ? amp + 1 : NULL;
	}
	return 0;
}

/* Decides the answer to a parsed upgrade request: 101 or an error. */
static int http_decide(struct conn *c, const struct ws_hs_req *req,
		       const char **reason)
{
	char path[sizeof(req->target)], val[1024];
	char redacted[256];
	const char *q = strchr(req->target, '?');
	size_t pl = q ? (size_t)(q - req->target) : strlen(req->target);

	memcpy(path, req->target, pl);
	path[pl] = '\0';
	log_redact_url(req->target, redacted, sizeof(redacted));
	log_debug("conn %lu: GET %s", c->id, redacted);
	if (strcmp(path, WS_PATH) != 0) {
		*reason = "Not Found";
		return 404;
	}
	if (!req->upgrade_ok) {
		*reason = "Bad Request";
		return 400;
	}
	*reason = "Forbidden";
	if (sim.reject > 0) {
		sim.reject--;
		log_info("conn %lu: upgrade rejected (REJECT)", c->id);
		return 403;
	}
	if (query_get(q ? q + 1 : NULL, "vsn", val, sizeof(val)) != 1 ||
	    strcmp(val, "2.0.0") != 0) {
		log_info("conn %lu: upgrade without vsn=2.0.0", c->id);
		return 403;
	}
	if (sim.token && (query_get(q ? q + 1 : NULL, "token", val, sizeof(val)) != 1 ||
			  strcmp(val, sim.token) != 0)) {
		log_info("conn %lu: upgrade with a bad token", c->id);
		return 403;
	}
	*reason = "Switching Protocols";
	return 101;
}

static int conn_http_write(struct conn *c);

/* Our answer to a permessage-deflate offer, into c->pmd (enabled = 0:
 * declined or not offered).  Every parameter is honoured. */
static void pmd_accept(struct conn *c, const struct ws_hs_req *req)
{
	const struct wsd_params *o = &req->pmd;

	wsd_params_default(&c->pmd);
	if (!sim.compression || !o->enabled)
		return;
	if (o->server_max_window_bits < WSD_DEFLATE_BITS_MIN) {
		log_info("conn %lu: permessage-deflate with server_max_window_bits=%u declined",
			 c->id, o->server_max_window_bits);
		return;
	}
	c->pmd = *o;
	c->pmd.enabled = 1;
	if (wsd_init(&c->wsd, &c->pmd, WSD_SERVER, WSD_LEVEL_DEFAULT) < 0) {
		wsd_params_default(&c->pmd);
		return;
	}
	log_debug("conn %lu: permessage-deflate: server %u bits%s, client %u bits%s", c->id,
		  c->pmd.server_max_window_bits,
		  c->pmd.server_no_context_takeover ? " no takeover" : "",
		  c->pmd.client_max_window_bits,
		  c->pmd.client_no_context_takeover ? " no takeover" : "");
}

static int conn_http_answer(struct conn *c, const struct ws_hs_req *req, int status,
			    const char *reason)
{
	int r;

	buf_reset(&c->wbuf);
	c->http_status = status;
	if (status == 101) {
		r = wslay_event_context_server_init(&c->ws, &ws_callbacks, c);
		if (r < 0) {
			c->ws = NULL;
			return -ENOMEM;
		}
		wslay_event_config_set_max_recv_msg_length(c->ws, MAX_MSG);
		pmd_accept(c, req);
		if (c->pmd.enabled)
			wslay_event_config_set_allowed_rsv_bits(c->ws, WSLAY_RSV1_BIT);
		r = ws_hs_response_101(&c->wbuf, req->key, &c->pmd);
	} else {
		r = ws_hs_response_error(&c->wbuf, status, reason);
	}
	if (r < 0)
		return r;
	c->st = ST_HTTP_OUT;
	c->wr_ev = EV_WRITE;
	return conn_http_write(c);
}

static int conn_http_read(struct conn *c)
{
	struct ws_hs_req req;

	for (;;) {
		char *w = buf_reserve(&c->rbuf, 4096);
		if (!w)
			return -ENOMEM;
		ssize_t n = conn_read(c, w, 4096);
		if (n == -EAGAIN)
			return 0;
		if (n == 0)
			return -ECONNRESET;
		if (n < 0)
			return (int)n;
		buf_commit(&c->rbuf, (size_t)n);
		long h = ws_hs_parse_request(buf_rptr(&c->rbuf), buf_len(&c->rbuf), &req);
		if (h == 0)
			continue;
		if (h < 0) {
			log_info("conn %lu (%s): bad upgrade request", c->id, c->peer);
			buf_reset(&c->rbuf);
			return conn_http_answer(c, NULL, 400, "Bad Request");
		}
		buf_consume(&c->rbuf, (size_t)h);
		const char *reason = NULL;
		int status = http_decide(c, &req, &reason);
		if (status != 101)
			buf_reset(&c->rbuf);
		return conn_http_answer(c, &req, status, reason);
	}
}

static int conn_tls_accept(struct conn *c)
{
	ERR_clear_error();
	int r = SSL_accept(c->ssl);
	if (r == 1) {
		c->st = ST_HTTP;
		c->rd_ev = EV_READ;
		return conn_http_read(c);
	}
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		c->rd_ev = EV_READ;
		return 0;
	case SSL_ERROR_WANT_WRITE:
		c->rd_ev = EV_WRITE;
		return 0;
	default:
		log_info("conn %lu (%s): TLS handshake failed: %s", c->id, c->peer,
			 ssl_errstr());
		return -EPROTO;
	}
}

static int conn_http_write(struct conn *c)
{
	while (buf_len(&c->wbuf)) {
		ssize_t n = conn_write(c, buf_rptr(&c->wbuf), buf_len(&c->wbuf), 0);
		if (n == -EAGAIN)
			return 0;
		if (n < 0)
			return (int)n;
		buf_consume(&c->wbuf, (size_t)n);
	}
	buf_free(&c->wbuf);
	if (c->http_status != 101) {
		/* let the answer arrive before the connection goes away */
		if (c->ssl) {
			ERR_clear_error();
			SSL_shutdown(c->ssl);
		}
		shutdown(c->fd, SHUT_WR);
		c->st = ST_DRAIN;
		c->rd_ev = EV_READ;
		c->since = now_ms();
		return 0;
	}
	c->st = ST_WS;
	c->rd_ev = EV_READ;
	c->wr_ev = EV_WRITE;
	c->last_rx = now_ms();
	sim.nws++;
	sim.st.accepted++;
	log_info("conn %lu (%s): WebSocket open", c->id, c->peer);
	/* frames may already be buffered (rbuf, or inside the TLS layer) */
	return conn_ws_io(c, EV_READ | EV_WRITE);
}

static int conn_drain(struct conn *c)
{
	char tmp[4096];

	for (;;) {
		ssize_t n = recv(c->fd, tmp, sizeof(tmp), 0);
		if (n > 0)
			continue;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		return -ECONNRESET;
	}
}

static void conn_io_cb(struct ev_loop *l, ev_io *w, int revents)
{
	struct conn *c = container_of(w, struct conn, io);
	int r = 0;

	(void)l;
	switch (c->st) {
	case ST_TLS:
		r = conn_tls_accept(c);
		break;
	case ST_HTTP:
		r = conn_http_read(c);
		break;
	case ST_HTTP_OUT:
		r = conn_http_write(c);
		break;
	case ST_DRAIN:
		r = conn_drain(c);
		break;
	case ST_WS:
		r = conn_ws_io(c, revents);
		break;
	case ST_DEAD:
		return;
	}
	if (r < 0) {
		if (r != -ECONNRESET)
			log_debug("conn %lu: closing: %s", c->id, strerror(-r));
		conn_close(c, r == -ECONNRESET);
		return;
	}
	conn_update(c);
}

/* Sends what a timer or a control command queued, without waiting for the
 * next loop iteration. */
static void conn_flush(struct conn *c)
{
	if (c->st != ST_WS || (sim.stalled && !c->closing_at))
		return;
	int r = conn_ws_io(c, 0);
	if (r < 0)
		conn_doom(c, "flush failed");
	else
		conn_update(c);
}

static void conn_new(int fd, const struct sockaddr_storage *ss, socklen_t sl)
{
	struct conn *c = calloc(1, sizeof(*c));
	char host[INET6_ADDRSTRLEN], serv[16];
	int one = 1;

	if (!c) {
		close(fd);
		return;
	}
	c->id = ++sim.next_id;
	c->fd = fd;
	c->st = ST_HTTP;
	c->rd_ev = EV_READ;
	c->wr_ev = EV_WRITE;
	c->since = now_ms();
	list_init(&c->pending);
	list_init(&c->chans);
	list_init(&c->dnode);
	list_init(&c->frags);
	wsd_params_default(&c->pmd);
	hmap_init(&c->chmap);
	buf_init(&c->rbuf, 0);
	buf_init(&c->wbuf, 0);
	buf_init(&c->out, 0);
	ev_io_init(&c->io, conn_io_cb, fd, EV_READ);
	ev_timer_init(&c->ptimer, ptimer_cb, 0.0, 0.0);
	if (getnameinfo((const struct sockaddr *)ss, sl, host, sizeof(host), serv,
			sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV) == 0)
		snprintf(c->peer, sizeof(c->peer), "%s:%s", host, serv);
	else
		snprintf(c->peer, sizeof(c->peer), "?");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	list_add_tail(&sim.conns, &c->node);
	if (sim.ssl_ctx) {
		c->ssl = SSL_new(sim.ssl_ctx);
		if (!c->ssl || !SSL_set_fd(c->ssl, fd)) {
			log_warn("conn %lu: cannot set up TLS: %s", c->id, ssl_errstr());
			conn_close(c, 0);
			return;
		}
		SSL_set_accept_state(c->ssl);
		c->st = ST_TLS;
	}
	log_debug("conn %lu (%s): accepted", c->id, c->peer);
	conn_update(c);
}

/* ------------------------------------------------------------------------ */
/* Server-side actions shared by the control protocol */

/* [null,null,topic,event,payload] to everyone on topic. */
static size_t do_broadcast(struct str topic, struct str event, const char *pl,
			   size_t pllen)
{
	struct topic *t = topic_get(topic);
	struct buf *b = obuf_reset();

	if (!t || frame_json(b, (struct str){ NULL, 0 }, (struct str){ NULL, 0 },
			     topic, event, pl, pllen) < 0)
		return 0;
	return topic_send(t, WSLAY_TEXT_FRAME, buf_rptr(b), buf_len(b));
}

/* [JR,null,topic,event,payload] to each socket, with its own join_ref. */
static size_t do_push(struct str topic, struct str event, const char *pl, size_t pllen)
{
	struct topic *t = topic_get(topic);
	struct list_node *pos;
	size_t n = 0;

	if (!t)
		return 0;
	for (pos = t->subs.next; pos != &t->subs; pos = pos->next) {
		struct chan *ch = container_of(pos, struct chan, tnode);
		struct buf *b = obuf_reset();
		if (frame_json(b, chan_jr(ch), (struct str){ NULL, 0 }, topic, event,
			       pl, pllen) == 0)
			send_text(ch->c, b, now_ms());
		n++;
	}
	return n;
}

/* phx_error or phx_close to each socket on topic; channels removed. */
static size_t do_end_topic(struct str topic, const char *event)
{
	struct topic *t = topic_get(topic);
	struct list_node *pos, *tmp;
	size_t n = 0;

	if (!t)
		return 0;
	list_for_each_safe(pos, tmp, &t->subs) {
		struct chan *ch = container_of(pos, struct chan, tnode);
		send_chan_event(ch->c, chan_jr(ch), topic, event, now_ms());
		chan_del(ch);
		n++;
	}
	topic_gc(t);
	return n;
}

/* ------------------------------------------------------------------------ */
/* FLOOD */

static void ctl_flood_done(struct ctl *k, size_t n);

static void flood_kick(void)
{
	struct list_node *pos;

	for (pos = sim.floods.next; pos != &sim.floods; pos = pos->next)
		container_of(pos, struct flood, node)->blocked = 0;
	if (!list_empty(&sim.floods))
		ev_prepare_start(sim.loop, &sim.flood_w);
}

static void flood_free(struct flood *f)
{
	list_del(&f->node);
	buf_free(&f->pre);
	buf_free(&f->post);
	free(f->topic);
	free(f);
}

static void flood_finish(struct flood *f)
{
	struct ctl *k = f->ctl;
	size_t n = f->nsocks;

	log_info("flood on %.*s done: %llu messages", (int)(f->tlen > 200 ? 200 : f->tlen),
		 f->topic, f->next);
	flood_free(f);
	if (k)
		ctl_flood_done(k, n);
}

/* Is any socket on t holding FLOOD_HIGH bytes or more? */
static int flood_full(const struct topic *t)
{
	const struct list_node *pos;

	for (pos = t->subs.next; pos != &t->subs; pos = pos->next) {
		const struct chan *ch = container_of(pos, struct chan, tnode);
		if (ch->c->st == ST_WS && conn_queued(ch->c) >= FLOOD_HIGH)
			return 1;
	}
	return 0;
}

/* Queues up to FLOOD_BATCH messages; 1 when the flood is over. */
static int flood_step(struct flood *f)
{
	struct topic *t = hmap_get(&sim.topics, f->topic, f->tlen);
	struct buf *b = &sim.obuf;

	for (int i = 0; i < FLOOD_BATCH; i++) {
		if (!t || f->next >= f->count)
			return 1;
		if (flood_full(t)) {
			f->blocked = 1;
			return 0;
		}
		buf_reset(b);
		if (buf_append(b, buf_rptr(&f->pre), buf_len(&f->pre)) < 0 ||
		    buf_put_u64(b, f->next) < 0 ||
		    buf_append(b, buf_rptr(&f->post), buf_len(&f->post)) < 0)
			return 1;
		topic_send(t, WSLAY_TEXT_FRAME, buf_rptr(b), buf_len(b));
		f->next++;
	}
	return f->next >= f->count;
}

static void flood_cb(struct ev_loop *l, ev_prepare *w, int revents)
{
	struct list_node *pos, *tmp;
	int active = 0;

	(void)l;
	(void)w;
	(void)revents;
	list_for_each_safe(pos, tmp, &sim.floods) {
		struct flood *f = container_of(pos, struct flood, node);
		if (f->blocked)
			continue;
		if (flood_step(f)) {
			flood_finish(f);
			tmp = sim.floods.next;	/* the list may have changed */
			continue;
		}
		if (!f->blocked)
			active = 1;
	}
	/* any flood added meanwhile is unblocked */
	for (pos = sim.floods.next; pos != &sim.floods; pos = pos->next)
		if (!container_of(pos, struct flood, node)->blocked)
			active = 1;
	if (!active)
		ev_prepare_stop(sim.loop, &sim.flood_w);
}

/* Starts a flood; its answer goes to k when all messages are queued. */
static int flood_start(struct ctl *k, struct str topic, struct str event,
		       unsigned long long count, size_t size)
{
	struct topic *t = topic_get(topic);
	struct flood *f = calloc(1, sizeof(*f));
	char digits[24];
	int r;

	if (!f)
		return -ENOMEM;
	buf_init(&f->pre, 0);
	buf_init(&f->post, 0);
	f->topic = malloc(topic.len + 1);
	if (!f->topic) {
		free(f);
		return -ENOMEM;
	}
	memcpy(f->topic, topic.p, topic.len);
	f->tlen = topic.len;
	f->count = count;
	f->ctl = k;
	f->nsocks = t ? t->nsubs : 0;
	list_init(&f->node);
	/* payload {"seq":I,"pad":"x…"} of about size bytes */
	size_t dl = (size_t)snprintf(digits, sizeof(digits), "%llu", count ? count - 1 : 0);
	size_t fixed = strlen("{\"seq\":,\"pad\":\"\"}") + dl;
	size_t pad = size > fixed ? size - fixed : 0;
	r = frame_begin(&f->pre, (struct str){ NULL, 0 }, (struct str){ NULL, 0 },
			topic, event);
	if (r == 0)
		r = buf_puts(&f->pre, "{\"seq\":");
	if (r == 0)
		r = buf_puts(&f->post, ",\"pad\":\"");
	char *w = r == 0 ? buf_reserve(&f->post, pad + 3) : NULL;
	if (!w) {
		flood_free(f);
		return r < 0 ? r : -ENOMEM;
	}
	memset(w, 'x', pad);
	memcpy(w + pad, "\"}]", 3);
	buf_commit(&f->post, pad + 3);
	list_add_tail(&sim.floods, &f->node);
	k->busy = f;
	flood_kick();
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Control socket */

static void ctl_update(struct ctl *k);
static void ctl_process(struct ctl *k);

static void ctl_close(struct ctl *k)
{
	struct list_node *pos;

	if (k->dead)
		return;
	k->dead = 1;
	for (pos = sim.floods.next; pos != &sim.floods; pos = pos->next) {
		struct flood *f = container_of(pos, struct flood, node);
		if (f->ctl == k)
			f->ctl = NULL;
	}
	ev_io_stop(sim.loop, &k->io);
	close(k->fd);
	k->fd = -1;
	buf_free(&k->rbuf);
	buf_free(&k->wbuf);
	list_del(&k->node);
	list_add_tail(&sim.ctl_dead, &k->node);
}

static void ctl_printf(struct ctl *k, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void ctl_printf(struct ctl *k, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = buf_vprintf(&k->wbuf, fmt, ap);
	va_end(ap);
	if (r == 0)
		r = buf_putc(&k->wbuf, '\n');
	if (r < 0) {
		log_warn("control client: output overflow, closing it");
		ctl_close(k);
	}
}

static int ctl_flush(struct ctl *k)
{
	while (buf_len(&k->wbuf)) {
		ssize_t n = send(k->fd, buf_rptr(&k->wbuf), buf_len(&k->wbuf), MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n <= 0)
			return -EPIPE;
		buf_consume(&k->wbuf, (size_t)n);
	}
	buf_release(&k->wbuf);
	return 0;
}

static void ctl_update(struct ctl *k)
{
	int ev = 0;

	if (k->dead)
		return;
	if (ctl_flush(k) < 0) {
		ctl_close(k);
		return;
	}
	if (k->eof && !k->busy && !buf_len(&k->wbuf)) {
		ctl_close(k);
		return;
	}
	if (!k->eof && !k->busy)
		ev |= EV_READ;
	if (buf_len(&k->wbuf))
		ev |= EV_WRITE;
	if (ev == k->evmask)
		return;
	ev_io_stop(sim.loop, &k->io);
	k->evmask = ev;
	if (ev) {
		ev_io_set(&k->io, k->fd, ev);
		ev_io_start(sim.loop, &k->io);
	}
}

static void ctl_flood_done(struct ctl *k, size_t n)
{
	k->busy = NULL;
	ctl_printf(k, "OK %zu", n);
	ctl_process(k);
	ctl_update(k);
}

/* Next space-separated token of *p (NUL-terminated in place), or NULL. */
static char *tok(char **p)
{
	char *s = *p;

	while (*s == ' ' || *s == '\t')
		s++;
	if (!*s) {
		*p = s;
		return NULL;
	}
	char *e = s;
	while (*e && *e != ' ' && *e != '\t')
		e++;
	if (*e)
		*e++ = '\0';
	*p = e;
	return s;
}

/* The rest of the line, trimmed; NULL if empty. */
static char *rest(char **p)
{
	char *s = *p;

	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
	*p = s + n;
	return n ? s : NULL;
}

static int cmd_drop(struct ctl *k, char *args)
{
	struct list_node *pos, *tmp;
	size_t n = 0;
	char *topic = tok(&args);

	/* DROP: every connection; DROP TOPIC: those that joined TOPIC */
	list_for_each_safe(pos, tmp, &sim.conns) {
		struct conn *c = container_of(pos, struct conn, node);
		if (topic && !hmap_get(&c->chmap, topic, strlen(topic)))
			continue;
		conn_close(c, 0);
		n++;
	}
	log_info("DROP: %zu connections", n);
	ctl_printf(k, "OK %zu", n);
	return 0;
}

static int cmd_close(struct ctl *k, char *args)
{
	struct list_node *pos, *tmp;
	unsigned long code = 1000;
	char *a = tok(&args);
	size_t n = 0;

	if (a && (parse_ulong(a, 4999, &code) < 0 || code < 1000 || code == 1004 ||
		  code == 1005 || code == 1006 || code == 1015)) {
		ctl_printf(k, "ERR bad close code");
		return 0;
	}
	list_for_each_safe(pos, tmp, &sim.conns) {
		struct conn *c = container_of(pos, struct conn, node);
		if (c->st != ST_WS)
			continue;
		if (conn_ws_close(c, (uint16_t)code) == 0)
			conn_flush(c);
		n++;
	}
	log_info("CLOSE %lu: %zu sockets", code, n);
	ctl_printf(k, "OK %zu", n);
	return 0;
}

static int cmd_stall(struct ctl *k, char *args)
{
	struct list_node *pos;

	(void)args;
	sim.stalled = 1;
	for (pos = sim.conns.next; pos != &sim.conns; pos = pos->next)
		conn_update(container_of(pos, struct conn, node));
	log_info("STALL");
	ctl_printf(k, "OK");
	return 0;
}

static int cmd_resume(struct ctl *k, char *args)
{
	struct list_node *pos;
	uint64_t now = now_ms();

	(void)args;
	sim.stalled = 0;
	for (pos = sim.conns.next; pos != &sim.conns; pos = pos->next) {
		struct conn *c = container_of(pos, struct conn, node);
		c->last_rx = now;
		c->since = now;
		conn_update(c);
		/* data may sit inside the TLS layer with no fd event to come */
		if (c->ssl && c->st == ST_WS && SSL_pending(c->ssl) > 0)
			ev_feed_event(sim.loop, &c->io, EV_READ);
	}
	log_info("RESUME");
	ctl_printf(k, "OK");
	return 0;
}

static int cmd_count(struct ctl *k, char *args, unsigned long *dst, const char *what)
{
	unsigned long v;
	char *a = tok(&args);

	if (parse_ulong(a, ULONG_MAX, &v) < 0 || tok(&args)) {
		ctl_printf(k, "ERR usage: %s N", what);
		return 0;
	}
	*dst = v;
	ctl_printf(k, "OK");
	return 0;
}

static int cmd_refuse(struct ctl *k, char *args)
{
	return cmd_count(k, args, &sim.refuse, "REFUSE");
}

static int cmd_reject(struct ctl *k, char *args)
{
	return cmd_count(k, args, &sim.reject, "REJECT");
}

static int cmd_delay(struct ctl *k, char *args)
{
	unsigned long v;
	char *a = tok(&args);

	if (parse_ulong(a, MAX_SLEEP_MS, &v) < 0 || tok(&args)) {
		ctl_printf(k, "ERR usage: DELAY MS");
		return 0;
	}
	sim.delay_ms = (unsigned)v;
	ctl_printf(k, "OK");
	return 0;
}

/* TOPIC EVENT JSON; 0 or an ERR already sent. */
static int args_tej(struct ctl *k, char *args, const char *cmd, struct str *topic,
		    struct str *event, struct json_span *js)
{
	char *t = tok(&args), *e = tok(&args), *j = rest(&args);

	if (!t || !e || !j) {
		ctl_printf(k, "ERR usage: %s TOPIC EVENT JSON", cmd);
		return -EINVAL;
	}
	if (json_validate(j, strlen(j), js) < 0) {
		ctl_printf(k, "ERR invalid JSON");
		return -EINVAL;
	}
	*topic = str_of(t);
	*event = str_of(e);
	return 0;
}

static int cmd_broadcast(struct ctl *k, char *args)
{
	struct str topic, event;
	struct json_span js;

	if (args_tej(k, args, "BROADCAST", &topic, &event, &js) == 0)
		ctl_printf(k, "OK %zu", do_broadcast(topic, event, js.p, js.len));
	return 0;
}

static int cmd_push(struct ctl *k, char *args)
{
	struct str topic, event;
	struct json_span js;

	if (args_tej(k, args, "PUSH", &topic, &event, &js) == 0)
		ctl_printf(k, "OK %zu", do_push(topic, event, js.p, js.len));
	return 0;
}

static int cmd_bbroadcast(struct ctl *k, char *args)
{
	char *t = tok(&args), *e = tok(&args), *d = tok(&args);
	struct buf data, *b;
	size_t n = 0;

	if (!t || !e || !d || tok(&args)) {
		ctl_printf(k, "ERR usage: BBROADCAST TOPIC EVENT BASE64");
		return 0;
	}
	if (strlen(t) > 255 || strlen(e) > 255) {
		ctl_printf(k, "ERR topic or event longer than 255 bytes");
		return 0;
	}
	buf_init(&data, 0);
	if (b64_decode(&data, d, strlen(d)) < 0) {
		ctl_printf(k, "ERR invalid base64");
		buf_free(&data);
		return 0;
	}
	b = obuf_reset();
	if (frame_bin_bcast(b, str_of(t), str_of(e),
			    buf_len(&data) ? buf_rptr(&data) : empty_str,
			    buf_len(&data)) == 0)
		n = topic_send(topic_get(str_of(t)), WSLAY_BINARY_FRAME, buf_rptr(b),
			       buf_len(b));
	buf_free(&data);
	ctl_printf(k, "OK %zu", n);
	return 0;
}

static int cmd_end_topic(struct ctl *k, char *args, const char *cmd, const char *event)
{
	char *t = tok(&args);

	if (!t || tok(&args)) {
		ctl_printf(k, "ERR usage: %s TOPIC", cmd);
		return 0;
	}
	ctl_printf(k, "OK %zu", do_end_topic(str_of(t), event));
	return 0;
}

static int cmd_crash(struct ctl *k, char *args)
{
	return cmd_end_topic(k, args, "CRASH", "phx_error");
}

static int cmd_kick(struct ctl *k, char *args)
{
	return cmd_end_topic(k, args, "KICK", "phx_close");
}

static int cmd_channels(struct ctl *k, char *args)
{
	char *t = tok(&args);
	struct topic *tp;

	if (!t || tok(&args)) {
		ctl_printf(k, "ERR usage: CHANNELS TOPIC");
		return 0;
	}
	tp = topic_get(str_of(t));
	ctl_printf(k, "OK %zu", tp ? tp->nsubs : 0);
	return 0;
}

static int cmd_flood(struct ctl *k, char *args)
{
	char *t = tok(&args), *e = tok(&args), *cs = tok(&args), *ss = tok(&args);
	unsigned long count, size;

	if (!t || !e || parse_ulong(cs, ULONG_MAX, &count) < 0 ||
	    parse_ulong(ss, FLOOD_MAX_SIZE, &size) < 0 || tok(&args)) {
		ctl_printf(k, "ERR usage: FLOOD TOPIC EVENT COUNT SIZE");
		return 0;
	}
	if (flood_start(k, str_of(t), str_of(e), count, size) < 0) {
		ctl_printf(k, "ERR out of memory");
		return 0;
	}
	log_info("FLOOD %s %s %lu %lu", t, e, count, size);
	return 1;	/* answered when done */
}

static int cmd_fragment(struct ctl *k, char *args)
{
	unsigned long v;
	char *a = tok(&args);

	if (parse_ulong(a, MAX_MSG, &v) < 0 || tok(&args)) {
		ctl_printf(k, "ERR usage: FRAGMENT N");
		return 0;
	}
	sim.fragment = v;
	ctl_printf(k, "OK");
	return 0;
}

/* RSV1 on a payload whose first block has the reserved type 3: any
 * inflater must reject it. */
static int cmd_corrupt(struct ctl *k, char *args)
{
	static const uint8_t junk[] = { 0xff, 0xff, 0xff, 0xff, 0x00, 0x01 };
	struct wslay_event_msg m = { WSLAY_TEXT_FRAME, junk, sizeof(junk) };
	char *t = tok(&args);
	struct topic *tp;
	struct list_node *pos;
	size_t n = 0;

	if (!t || tok(&args)) {
		ctl_printf(k, "ERR usage: CORRUPT TOPIC");
		return 0;
	}
	tp = topic_get(str_of(t));
	for (pos = tp ? tp->subs.next : NULL; tp && pos != &tp->subs; pos = pos->next) {
		struct conn *c = container_of(pos, struct chan, tnode)->c;
		if (c->st != ST_WS || !c->pmd.enabled ||
		    wslay_event_queue_msg_ex(c->ws, &m, WSLAY_RSV1_BIT) < 0)
			continue;
		conn_flush(c);
		n++;
	}
	log_info("CORRUPT %s: %zu sockets", t, n);
	ctl_printf(k, "OK %zu", n);
	return 0;
}

static int cmd_stats(struct ctl *k, char *args)
{
	struct list_node *pos;
	size_t npmd = 0;
	char closes[1024];
	int cl;

	(void)args;
	for (pos = sim.conns.next; pos != &sim.conns; pos = pos->next) {
		struct conn *c = container_of(pos, struct conn, node);
		npmd += c->st == ST_WS && c->pmd.enabled;
	}
	/* "closes_in":N, then "close_in_CODE":N for the codes seen */
	cl = snprintf(closes, sizeof(closes), "\"closes_in\":%llu", sim.st.closes_in);
	for (unsigned i = 0; i < 16; i++)
		if (sim.st.close_in[i])
			cl += snprintf(closes + cl, sizeof(closes) - (size_t)cl,
				       ",\"close_in_%u\":%llu", 1000 + i, sim.st.close_in[i]);
	if (sim.st.close_in_other)
		snprintf(closes + cl, sizeof(closes) - (size_t)cl, ",\"close_in_other\":%llu",
			 sim.st.close_in_other);
	ctl_printf(k, "OK {\"connections\":%zu,\"accepted\":%llu,\"joins\":%llu,"
		   "\"leaves\":%llu,\"channels\":%zu,\"frames_in\":%llu,"
		   "\"frames_out\":%llu,\"heartbeats\":%llu,\"compressed_connections\":%zu,"
		   "\"compressed_in\":%llu,\"compressed_out\":%llu,\"ws_bytes_in\":%llu,"
		   "\"ws_bytes_out\":%llu,\"payload_in\":%llu,\"payload_out\":%llu,"
		   "\"fragmented_out\":%llu,\"fragments_out\":%llu,%s}",
		   sim.nws, sim.st.accepted, sim.st.joins, sim.st.leaves, sim.nchans,
		   sim.st.frames_in, sim.st.frames_out, sim.st.heartbeats, npmd,
		   sim.st.compressed_in, sim.st.compressed_out, sim.st.ws_bytes_in,
		   sim.st.ws_bytes_out, sim.st.payload_in, sim.st.payload_out,
		   sim.st.fragmented_out, sim.st.fragments_out, closes);
	return 0;
}

static const struct {
	const char *name;
	int (*fn)(struct ctl *k, char *args);	/* 1: the answer comes later */
} ctl_cmds[] = {
	{ "DROP", cmd_drop },
	{ "CLOSE", cmd_close },
	{ "STALL", cmd_stall },
	{ "RESUME", cmd_resume },
	{ "REFUSE", cmd_refuse },
	{ "REJECT", cmd_reject },
	{ "DELAY", cmd_delay },
	{ "BROADCAST", cmd_broadcast },
	{ "BBROADCAST", cmd_bbroadcast },
	{ "PUSH", cmd_push },
	{ "CRASH", cmd_crash },
	{ "KICK", cmd_kick },
	{ "CHANNELS", cmd_channels },
	{ "FLOOD", cmd_flood },
	{ "FRAGMENT", cmd_fragment },
	{ "CORRUPT", cmd_corrupt },
	{ "STATS", cmd_stats },
};

static void ctl_line(struct ctl *k, char *line)
{
	char *p = line;
	char *name = tok(&p);

	if (!name) {
		ctl_printf(k, "ERR unknown command");
		return;
	}
	for (size_t i = 0; i < sizeof(ctl_cmds) / sizeof(ctl_cmds[0]); i++) {
		if (strcasecmp(name, ctl_cmds[i].name) == 0) {
			ctl_cmds[i].fn(k, p);
			return;
		}
	}
	ctl_printf(k, "ERR unknown command");
}

/* Runs every complete line in rbuf, stopping while a FLOOD is unanswered. */
static void ctl_process(struct ctl *k)
{
	while (!k->dead && !k->busy && buf_len(&k->rbuf)) {
		long nl = buf_find(&k->rbuf, 0, '\n');
		size_t len;
		if (nl < 0) {
			if (buf_len(&k->rbuf) > CTL_LINE_MAX) {
				if (!k->discarding)
					ctl_printf(k, "ERR line too long");
				k->discarding = 1;
				buf_reset(&k->rbuf);
				return;
			}
			if (!k->eof)
				return;
			/* a last line without a newline */
			if (!buf_reserve(&k->rbuf, 1)) {
				ctl_close(k);
				return;
			}
			k->rbuf.data[k->rbuf.wpos++] = '\n';
			continue;
		}
		len = (size_t)nl;
		char *line = buf_rptr(&k->rbuf);
		if (k->discarding) {
			k->discarding = 0;
			buf_consume(&k->rbuf, len + 1);
			continue;
		}
		if (len > CTL_LINE_MAX) {
			ctl_printf(k, "ERR line too long");
			buf_consume(&k->rbuf, len + 1);
			continue;
		}
		line[len] = '\0';
		if (len && line[len - 1] == '\r')
			line[len - 1] = '\0';
		int r = 0;
		for (size_t i = 0; i < len; i++) {
			if (line[i] == '\0' && i + 1 < len) {
				r = -1;	/* embedded NUL: treat as garbage */
				break;
			}
		}
		/* the handler may start a flood; consume first, so the line's
		 * bytes are not reprocessed if the buffer is touched */
		if (r < 0)
			ctl_printf(k, "ERR unknown command");
		else
			ctl_line(k, line);
		buf_consume(&k->rbuf, len + 1);
	}
	buf_release(&k->rbuf);
}

static void ctl_io_cb(struct ev_loop *l, ev_io *w, int revents)
{
	struct ctl *k = container_of(w, struct ctl, io);

	(void)l;
	if (revents & EV_READ) {
		for (int i = 0; i < 16 && !k->eof; i++) {
			char *b = buf_reserve(&k->rbuf, 16384);
			if (!b) {
				ctl_close(k);
				return;
			}
			ssize_t n = recv(k->fd, b, 16384, 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				break;
			if (n <= 0) {
				k->eof = 1;
				break;
			}
			buf_commit(&k->rbuf, (size_t)n);
			ctl_process(k);
			if (k->dead || k->busy)
				break;
		}
		if (k->eof)
			ctl_process(k);
	}
	ctl_update(k);
}

static void ctl_accept_cb(struct ev_loop *l, ev_io *w, int revents)
{
	(void)l;
	(void)w;
	(void)revents;
	for (;;) {
		int fd = accept4(sim.cfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				log_warn("control accept: %s", strerror(errno));
			return;
		}
		struct ctl *k = calloc(1, sizeof(*k));
		if (!k) {
			close(fd);
			continue;
		}
		k->fd = fd;
		buf_init(&k->rbuf, CTL_LINE_MAX + 16384 + 1);
		buf_init(&k->wbuf, CTL_OUT_MAX);
		ev_io_init(&k->io, ctl_io_cb, fd, EV_READ);
		list_add_tail(&sim.ctls, &k->node);
		ctl_update(k);
	}
}

/* ------------------------------------------------------------------------ */
/* Listening, timers, signals */

static void listen_cb(struct ev_loop *l, ev_io *w, int revents)
{
	(void)w;
	(void)revents;
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(sim.lfd, (struct sockaddr *)&ss, &sl,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				log_warn("accept: %s; pausing 100 ms", strerror(errno));
				ev_io_stop(l, &sim.lio);
				ev_timer_set(&sim.accept_pause, 0.1, 0.0);
				ev_timer_start(l, &sim.accept_pause);
			} else if (errno != EAGAIN && errno != EWOULDBLOCK) {
				log_warn("accept: %s", strerror(errno));
			}
			return;
		}
		conn_new(fd, &ss, sl);
	}
}

static void accept_pause_cb(struct ev_loop *l, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	ev_io_start(l, &sim.lio);
}

/* The one periodic timer: idle WebSockets, slow handshakes, stuck closes. */
static void tick_cb(struct ev_loop *l, ev_timer *w, int revents)
{
	struct list_node *pos, *tmp;
	uint64_t now = now_ms();
	uint64_t idle = (uint64_t)sim.idle_s * 1000u;

	(void)l;
	(void)w;
	(void)revents;
	list_for_each_safe(pos, tmp, &sim.conns) {
		struct conn *c = container_of(pos, struct conn, node);
		if (c->closing_at) {
			if (now - c->closing_at > CLOSE_GRACE_MS)
				conn_close(c, 0);
			continue;
		}
		if (sim.stalled)
			continue;	/* a stalled peer answers nothing, not even a close */
		switch (c->st) {
		case ST_WS:
			if (idle && now - c->last_rx > idle) {
				log_info("conn %lu (%s): idle for %u s, closing", c->id,
					 c->peer, sim.idle_s);
				if (conn_ws_close(c, 1000) == 0)
					conn_flush(c);
			}
			break;
		case ST_DRAIN:
			if (now - c->since > DRAIN_MS)
				conn_close(c, 0);
			break;
		case ST_DEAD:
			break;
		default:
			if (idle && now - c->since > idle)
				conn_close(c, 0);
			break;
		}
	}
}

static void ctl_free(struct ctl *k)
{
	list_del(&k->node);
	buf_free(&k->rbuf);
	buf_free(&k->wbuf);
	free(k);
}

/* Before the loop blocks: close doomed sockets, free closed objects. */
static void reaper_cb(struct ev_loop *l, ev_prepare *w, int revents)
{
	struct list_node *pos, *tmp;

	(void)l;
	(void)w;
	(void)revents;
	list_for_each_safe(pos, tmp, &sim.doomed)
		conn_close(container_of(pos, struct conn, dnode), 0);
	list_for_each_safe(pos, tmp, &sim.dead) {
		list_del(pos);
		free(container_of(pos, struct conn, node));
	}
	list_for_each_safe(pos, tmp, &sim.ctl_dead)
		ctl_free(container_of(pos, struct ctl, node));
}

static void signal_cb(struct ev_loop *l, ev_signal *w, int revents)
{
	(void)revents;
	log_info("signal %d: exiting", w->signum);
	ev_break(l, EVBREAK_ALL);
}

/* Splits "HOST:PORT" or "[V6]:PORT". */
static int split_hostport(const char *s, char *host, size_t hcap, char *port,
			  size_t pcap)
{
	const char *colon;
	size_t hl;

	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (!rb || rb[1] != ':')
			return -EINVAL;
		hl = (size_t)(rb - s - 1);
		s++;
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -EINVAL;
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= hcap || strlen(colon + 1) == 0 || strlen(colon + 1) >= pcap)
		return -EINVAL;
	memcpy(host, s, hl);
	host[hl] = '\0';
	strcpy(port, colon + 1);
	return 0;
}

static int listen_tcp(const char *spec)
{
	char host[256], port[16], nh[INET6_ADDRSTRLEN], np[16];
	struct addrinfo hints = { 0 }, *res, *ai;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd = -1, one = 1, r;

	if (split_hostport(spec, host, sizeof(host), port, sizeof(port)) < 0) {
		log_err("--listen %s: expected HOST:PORT", spec);
		return -EINVAL;
	}
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	r = getaddrinfo(host, port, &hints, &res);
	if (r) {
		log_err("--listen %s: %s", spec, gai_strerror(r));
		return -EINVAL;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			    ai->ai_protocol);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1024) == 0)
			break;
		r = errno;
		close(fd);
		fd = -1;
		errno = r;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		r = errno;
		log_err("--listen %s: %s", spec, strerror(r));
		return -r;
	}
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 ||
	    getnameinfo((struct sockaddr *)&ss, sl, nh, sizeof(nh), np, sizeof(np),
			NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		log_err("--listen %s: cannot read the bound address", spec);
		close(fd);
		return -EIO;
	}
	sim.lfd = fd;
	printf("listening %s %s\n", nh, np);
	return 0;
}

static int listen_control(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		log_err("--control %s: path too long", path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			log_err("--control %s: exists and is not a socket", path);
			return -EEXIST;
		}
		unlink(path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0) {
		int r = errno;
		log_err("--control %s: %s", path, strerror(r));
		close(fd);
		return -r;
	}
	sim.cfd = fd;
	sim.control_bound = 1;
	return 0;
}

static int tls_setup(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (!ctx) {
		log_err("TLS: %s", ssl_errstr());
		return -ENOMEM;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
			 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_use_certificate_chain_file(ctx, sim.tls_cert) != 1) {
		log_err("--tls-cert %s: %s", sim.tls_cert, ssl_errstr());
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, sim.tls_key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		log_err("--tls-key %s: %s", sim.tls_key, ssl_errstr());
		goto fail;
	}
	sim.ssl_ctx = ctx;
	return 0;
fail:
	SSL_CTX_free(ctx);
	return -EINVAL;
}

/* ------------------------------------------------------------------------ */
/* Startup and shutdown */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: phxsim [--listen HOST:PORT] [--control PATH]\n"
		"              [--tls-cert FILE --tls-key FILE] [--idle-timeout SEC]\n"
		"              [--max-channels N] [--require-token TOKEN]\n"
		"              [--compression] [--fragment N] [--quiet] [--verbose] [--help]\n"
		"A Phoenix Channels V2 test server.  Prints \"listening HOST PORT\" once bound.\n"
		"Control commands (one per line on --control): DROP [TOPIC], CLOSE [CODE], STALL,\n"
		"RESUME, REFUSE N, REJECT N, DELAY MS, BROADCAST TOPIC EVENT JSON,\n"
		"BBROADCAST TOPIC EVENT BASE64, PUSH TOPIC EVENT JSON, CRASH TOPIC,\n"
		"KICK TOPIC, CHANNELS TOPIC, FLOOD TOPIC EVENT COUNT SIZE, FRAGMENT N,\n"
		"CORRUPT TOPIC, STATS.\n");
}

static int parse_args(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "control", required_argument, NULL, 'c' },
		{ "tls-cert", required_argument, NULL, 'C' },
		{ "tls-key", required_argument, NULL, 'K' },
		{ "idle-timeout", required_argument, NULL, 'i' },
		{ "max-channels", required_argument, NULL, 'm' },
		{ "require-token", required_argument, NULL, 't' },
		{ "compression", no_argument, NULL, 'z' },
		{ "fragment", required_argument, NULL, 'f' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned long v;
	int o;

	while ((o = getopt_long(argc, argv, "hqv", opts, NULL)) != -1) {
		switch (o) {
		case 'l':
			sim.listen = optarg;
			break;
		case 'c':
			sim.control = optarg;
			break;
		case 'C':
			sim.tls_cert = optarg;
			break;
		case 'K':
			sim.tls_key = optarg;
			break;
		case 'i':
			if (parse_ulong(optarg, 86400 * 365, &v) < 0) {
				fprintf(stderr, "phxsim: bad --idle-timeout: %s\n", optarg);
				return -EINVAL;
			}
			sim.idle_s = (unsigned)v;
			break;
		case 'm':
			if (parse_ulong(optarg, 10000000, &v) < 0) {
				fprintf(stderr, "phxsim: bad --max-channels: %s\n", optarg);
				return -EINVAL;
			}
			sim.max_channels = v;
			break;
		case 't':
			sim.token = optarg;
			break;
		case 'z':
			sim.compression = 1;
			break;
		case 'f':
			if (parse_ulong(optarg, MAX_MSG, &v) < 0) {
				fprintf(stderr, "phxsim: bad --fragment: %s\n", optarg);
				return -EINVAL;
			}
			sim.fragment = v;
			break;
		case 'q':
			log_set_level(LOG_LVL_WARN);
			break;
		case 'v':
			log_set_level(LOG_LVL_DEBUG);
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "phxsim: unexpected argument: %s\n", argv[optind]);
		return -EINVAL;
	}
	if (!sim.tls_cert != !sim.tls_key) {
		fprintf(stderr, "phxsim: --tls-cert and --tls-key go together\n");
		return -EINVAL;
	}
	return 0;
}

static void sim_init(void)
{
	sim.listen = "127.0.0.1:0";
	sim.idle_s = 60;
	sim.max_channels = 100;
	sim.lfd = sim.cfd = -1;
	list_init(&sim.conns);
	list_init(&sim.dead);
	list_init(&sim.doomed);
	list_init(&sim.ctls);
	list_init(&sim.ctl_dead);
	list_init(&sim.floods);
	hmap_init(&sim.topics);
	buf_init(&sim.scratch, 0);
	buf_init(&sim.obuf, 0);
	buf_init(&sim.zin, 0);
	buf_init(&sim.zout, 0);
}

static void sim_cleanup(void)
{
	struct list_node *pos, *tmp;

	/* say goodbye where the socket takes it right away */
	list_for_each_safe(pos, tmp, &sim.conns) {
		struct conn *c = container_of(pos, struct conn, node);
		if (c->st == ST_WS && !sim.stalled &&
		    wslay_event_queue_close(c->ws, 1001, NULL, 0) == 0 &&
		    wslay_event_send(c->ws) == 0)
			conn_out_write(c);
		conn_close(c, 1);
	}
	list_for_each_safe(pos, tmp, &sim.ctls)
		ctl_close(container_of(pos, struct ctl, node));
	list_for_each_safe(pos, tmp, &sim.floods)
		flood_free(container_of(pos, struct flood, node));
	reaper_cb(sim.loop, &sim.reaper, 0);
	if (sim.lfd >= 0)
		close(sim.lfd);
	if (sim.cfd >= 0)
		close(sim.cfd);
	if (sim.control_bound)
		unlink(sim.control);
	hmap_free(&sim.topics);	/* empty: every channel went with its socket */
	buf_free(&sim.scratch);
	buf_free(&sim.obuf);
	buf_free(&sim.zin);
	buf_free(&sim.zout);
	if (sim.ssl_ctx)
		SSL_CTX_free(sim.ssl_ctx);
	ev_loop_destroy(sim.loop);
}

int main(int argc, char **argv)
{
	struct ev_loop *l;

	sim_init();
	log_init("phxsim");
	if (parse_args(argc, argv) < 0)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	if (sim.tls_cert && tls_setup() < 0)
		return 1;
	l = sim.loop = ev_default_loop(EVFLAG_AUTO);
	if (!l) {
		log_err("cannot initialise libev");
		return 1;
	}
	if (sim.control && listen_control(sim.control) < 0)
		goto fail;
	if (listen_tcp(sim.listen) < 0)
		goto fail;
	fflush(stdout);

	ev_io_init(&sim.lio, listen_cb, sim.lfd, EV_READ);
	ev_io_start(l, &sim.lio);
	ev_timer_init(&sim.accept_pause, accept_pause_cb, 0.1, 0.0);
	if (sim.cfd >= 0) {
		ev_io_init(&sim.cio, ctl_accept_cb, sim.cfd, EV_READ);
		ev_io_start(l, &sim.cio);
	}
	ev_timer_init(&sim.tick, tick_cb, TICK_S, TICK_S);
	ev_timer_start(l, &sim.tick);
	ev_prepare_init(&sim.reaper, reaper_cb);
	ev_prepare_start(l, &sim.reaper);
	ev_prepare_init(&sim.flood_w, flood_cb);
	ev_signal_init(&sim.sigterm, signal_cb, SIGTERM);
	ev_signal_start(l, &sim.sigterm);
	ev_signal_init(&sim.sigint, signal_cb, SIGINT);
	ev_signal_start(l, &sim.sigint);
	log_info("serving %s on %s%s%s", sim.ssl_ctx ? "wss" : "ws", sim.listen,
		 sim.control ? ", control " : "", sim.control ? sim.control : "");

	ev_run(l, 0);

	sim_cleanup();
	return 0;
fail:
	sim_cleanup();
	return 1;
}
