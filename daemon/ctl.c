#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "conf/conf.h"
#include "ipc/ipc_server.h"
#include "log.h"
#include "router.h"
#include "util.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define CTL_LINE_MAX 8192           /* a command line or an HTTP head line */
#define CTL_HTTP_HEAD_MAX 16384     /* a whole HTTP request head */
#define CTL_READ_CHUNK 4096
#define CTL_IN_MAX (CTL_LINE_MAX + CTL_READ_CHUNK)
#define CTL_OUT_HIGH (1024 * 1024)  /* no new command while this much waits */
#define CTL_ANSWER_MAX (64u * 1024 * 1024)
#define CTL_OUT_MAX (CTL_OUT_HIGH + CTL_ANSWER_MAX)
#define CTL_N_MAX 1000000000L       /* ROUTES N, HISTORY N */

struct ctl_conn {
	struct ctl *ctl;
	struct ctl_listener *l;     /* accepted there: counts in its nconns */
	int fd;
	int http_only;              /* from the TCP listener */
	unsigned long nlines;       /* lines read; an HTTP request line comes first */
	int http;                   /* reading an HTTP request head */
	int http_head_only;         /* a HEAD request: no body */
	int http_status;            /* the answer the request will get */
	size_t http_bytes;          /* of the head so far */
	int discarding;             /* skipping the rest of an overlong line */
	int eof;                    /* the peer shut its side */
	int closing;                /* close once out is flushed */
	int dead;
	int timed_out;              /* the timer fired once: the next time, close */
	ev_io rio, wio;
	ev_timer timer;             /* idle or request deadline */
	struct buf in, out;
	struct list_node node;      /* ctl->conns or ctl->reap */
};

static void ctl_accept_cb(struct ev_loop *loop, ev_io *w, int revents);
static void ctl_pause_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void ctl_read_cb(struct ev_loop *loop, ev_io *w, int revents);
static void ctl_write_cb(struct ev_loop *loop, ev_io *w, int revents);
static void ctl_prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents);
static void ctl_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void ctl_conn_settle(struct ctl_conn *c);

/* ---- commands ------------------------------------------------------------------ */

struct ctl_cmd {
	const char *name;
	const char *args;           /* "" or "[N]": an optional positive count */
	int text;                   /* answer: text lines; else one JSON line */
	void (*fn)(struct ctl *k, struct metrics_out *o, size_t n);
	const char *help;
};

static void ctl_cmd_help(struct ctl *k, struct metrics_out *o, size_t n);

static const char *const ctl_up_names[] = {
	"idle", "connecting", "tls", "handshake", "open", "wait",
};
static const char *const ctl_chan_names[] = { "waiting", "joining", "joined", "errored" };

static const char *ctl_up_state(enum up_state s)
{
	return (unsigned)s < ARRAY_SIZE(ctl_up_names) ? ctl_up_names[s] : "?";
}

static void ctl_json_key(struct metrics_out *o, int first, const char *key)
{
	metrics_out_printf(o, "%s\"%s\":", first ? "" : ",", key);
}

static void ctl_json_u64(struct metrics_out *o, const char *key, uint64_t v)
{
	ctl_json_key(o, 0, key);
	metrics_out_u64(o, v);
}

static void ctl_json_str(struct metrics_out *o, const char *key, const char *s, size_t len)
{
	ctl_json_key(o, 0, key);
	metrics_out_jstr(o, s, len);
}

static void ctl_cmd_stats(struct ctl *k, struct metrics_out *o, size_t n)
{
	(void)n;
	metrics_fmt_stats(&k->metrics, o);
}

/* Our own families, after the daemon's. */
static void ctl_prom_self(const struct ctl *k, struct metrics_out *o)
{
	metrics_prom_family(o, "phxd_control_connections_total", METRICS_COUNTER,
			    "Connections accepted on the control socket and metrics_listen.");
	metrics_prom_u64(o, "phxd_control_connections_total", NULL, 0, k->accepted);
	metrics_prom_family(o, "phxd_control_commands_total", METRICS_COUNTER,
			    "Control commands answered (errors included).");
	metrics_prom_u64(o, "phxd_control_commands_total", NULL, 0, k->commands);
	metrics_prom_family(o, "phxd_control_errors_total", METRICS_COUNTER,
			    "Control commands answered with ERR.");
	metrics_prom_u64(o, "phxd_control_errors_total", NULL, 0, k->errors);
	metrics_prom_family(o, "phxd_control_http_requests_total", METRICS_COUNTER,
			    "HTTP requests served (any status).");
	metrics_prom_u64(o, "phxd_control_http_requests_total", NULL, 0, k->http_requests);
	metrics_prom_family(o, "phxd_control_timeouts_total", METRICS_COUNTER,
			    "Control and metrics connections timed out (idle, or an HTTP request "
			    "head or answer too slow).");
	metrics_prom_u64(o, "phxd_control_timeouts_total", NULL, 0, k->timeouts);
	metrics_prom_family(o, "phxd_control_refused_total", METRICS_COUNTER,
			    "Control and metrics connections refused: the listener's cap was "
			    "reached.");
	metrics_prom_u64(o, "phxd_control_refused_total", NULL, 0, k->refused);
}

static void ctl_cmd_metrics(struct ctl *k, struct metrics_out *o, size_t n)
{
	(void)n;
	metrics_fmt_prom(&k->metrics, o);
	ctl_prom_self(k, o);
}

static void ctl_cmd_upstreams(struct ctl *k, struct metrics_out *o, size_t n)
{
	const struct router *rt = k->rt;
	int first = 1;
	(void)n;
	metrics_out_puts(o, "{\"upstreams\":[");
	for (size_t i = 0; i < rt->neps; i++) {
		const struct endpoint *ep = rt->eps[i];
		for (unsigned s = 0; ep->slots && s < ep->nslots; s++) {
			const struct up_slot *sl = &ep->slots[s];
			const struct up_conn *up = &sl->up;
			metrics_out_puts(o, first ? "{" : ",{");
			first = 0;
			ctl_json_key(o, 1, "endpoint");
			metrics_out_jstr(o, ep->conf->name, strlen(ep->conf->name));
			ctl_json_u64(o, "index", sl->index);
			ctl_json_str(o, "state", ctl_up_state(up->state), strlen(ctl_up_state(up->state)));
			ctl_json_u64(o, "channels", sl->nchans);
			ctl_json_u64(o, "limit", sl->limit);
			ctl_json_u64(o, "connects", up->connects);
			ctl_json_u64(o, "disconnects", up->disconnects);
			ctl_json_u64(o, "frames_in", up->frames_in);
			ctl_json_u64(o, "frames_out", up->frames_out);
			ctl_json_u64(o, "bytes_in", up->bytes_in);
			ctl_json_u64(o, "bytes_out", up->bytes_out);
			ctl_json_u64(o, "payload_bytes_in", up->payload_in);
			ctl_json_u64(o, "payload_bytes_out", up->payload_out);
			ctl_json_u64(o, "queued_bytes", buf_len(&up->wbuf));
			ctl_json_str(o, "last_error", up->last_error,
				     strnlen(up->last_error, sizeof(up->last_error)));
			metrics_out_puts(o, "}");
		}
	}
	metrics_out_puts(o, "]}");
}

static void ctl_cmd_clients(struct ctl *k, struct metrics_out *o, size_t n)
{
	const struct ipc_server *s = k->ipc;
	const struct list_node *p;
	int first = 1;
	(void)n;
	metrics_out_puts(o, "{\"clients\":[");
	for (p = s->clients.next; p != &s->clients; p = p->next) {
		const struct ipc_client *c = container_of(p, struct ipc_client, node);
		if (c->dead)
			continue;
		metrics_out_puts(o, first ? "{" : ",{");
		first = 0;
		ctl_json_key(o, 1, "id");
		metrics_out_u64(o, c->id);
		metrics_out_printf(o, ",\"pid\":%ld,\"uid\":%lu,\"gid\":%lu", (long)c->pid,
				   (unsigned long)c->uid, (unsigned long)c->gid);
		ctl_json_u64(o, "topics", c->subs.n);
		ctl_json_u64(o, "pending", c->npending);
		ctl_json_u64(o, "queue_bytes", buf_len(&c->out));
		ctl_json_u64(o, "input_bytes", buf_len(&c->in));
		const char *ep = c->ep >= 0 && (size_t)c->ep < k->rt->neps ?
				 k->rt->eps[c->ep]->conf->name : NULL;
		ctl_json_key(o, 0, "endpoint");
		if (ep)
			metrics_out_jstr(o, ep, strlen(ep));
		else
			metrics_out_puts(o, "null");
		const char *st = c->closing ? "closing" : c->eof ? "half-closed" : "open";
		ctl_json_str(o, "state", st, strlen(st));
		metrics_out_puts(o, "}");
	}
	metrics_out_puts(o, "]}");
}

static uint64_t ctl_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void ctl_json_route(struct metrics_out *o, const struct chan *ch, uint64_t now,
			   uint64_t wall)
{
	const char *st = (unsigned)ch->state < ARRAY_SIZE(ctl_chan_names) ?
			 ctl_chan_names[ch->state] : "?";
	metrics_out_puts(o, "{\"topic\":");
	metrics_out_jstr(o, ch->topic, ch->topic_len);
	ctl_json_str(o, "endpoint", ch->ep->conf->name, strlen(ch->ep->conf->name));
	ctl_json_key(o, 0, "upstream");
	if (ch->slot)
		metrics_out_u64(o, ch->slot->index);
	else
		metrics_out_puts(o, "null");
	ctl_json_str(o, "state", st, strlen(st));
	ctl_json_u64(o, "subscribers", ch->nsubs);
	ctl_json_u64(o, "pending", ch->npending);
	ctl_json_u64(o, "buffered", ch->nbuffered);
	ctl_json_u64(o, "msgs_in", ch->msgs_in);
	ctl_json_u64(o, "bytes_in", ch->bytes_in);
	ctl_json_u64(o, "msgs_out", ch->msgs_out);
	ctl_json_u64(o, "bytes_out", ch->bytes_out);
	if (ch->last_ms && ch->last_ms <= now) {
		ctl_json_u64(o, "idle_ms", now - ch->last_ms);
		ctl_json_u64(o, "last_activity", wall - (now - ch->last_ms));
	} else {
		metrics_out_puts(o, ",\"idle_ms\":null,\"last_activity\":null");
	}
	metrics_out_puts(o, "}");
}

/* ROUTES [N]: every channel (or the N busiest), busiest first. */
static void ctl_cmd_routes(struct ctl *k, struct metrics_out *o, size_t n)
{
	size_t total;
	const struct chan **v = metrics_chans_by_traffic(k->rt, &total);
	if (!v && total) {
		o->err = -ENOMEM;
		return;
	}
	uint64_t now = util_now_ms(), wall = ctl_wall_ms();
	size_t shown = n && n < total ? n : total;
	metrics_out_printf(o, "{\"count\":%zu,\"shown\":%zu,\"routes\":[", total, shown);
	for (size_t i = 0; i < shown; i++) {
		if (i)
			metrics_out_puts(o, ",");
		ctl_json_route(o, v[i], now, wall);
	}
	metrics_out_puts(o, "]}");
	free(v);
}

static void ctl_json_pool_ep(struct metrics_out *o, const struct endpoint *ep)
{
	char url[512];
	size_t chans = 0;
	log_redact_url(ep->conf->url, url, sizeof(url));
	for (unsigned s = 0; ep->slots && s < ep->nslots; s++)
		chans += ep->slots[s].nchans;
	metrics_out_puts(o, "{\"endpoint\":");
	metrics_out_jstr(o, ep->conf->name, strlen(ep->conf->name));
	ctl_json_str(o, "url", url, strlen(url));
	ctl_json_u64(o, "pool_size", ep->nslots);
	ctl_json_u64(o, "pool_min", ep->conf->pool_min);
	ctl_json_u64(o, "open", router_ep_open(ep));
	ctl_json_u64(o, "channels", chans);
	ctl_json_u64(o, "max_channels", ep->conf->max_channels);
	metrics_out_puts(o, "}");
}

static void ctl_json_pool_slot(struct metrics_out *o, const struct endpoint *ep,
			       const struct up_slot *sl)
{
	const char *st = ctl_up_state(sl->up.state);
	metrics_out_puts(o, "{\"endpoint\":");
	metrics_out_jstr(o, ep->conf->name, strlen(ep->conf->name));
	ctl_json_u64(o, "index", sl->index);
	ctl_json_str(o, "state", st, strlen(st));
	ctl_json_u64(o, "channels", sl->nchans);
	ctl_json_u64(o, "limit", sl->limit);
	metrics_out_printf(o, ",\"idle_close\":%s}", ev_is_active(&sl->idle) ? "true" : "false");
}

/* POOL: the upstream pool of each endpoint, then every slot, then the
 * binary pool, interned strings and hibernation. */
static void ctl_cmd_pool(struct ctl *k, struct metrics_out *o, size_t n)
{
	const struct router *rt = k->rt;
	int first = 1;
	(void)n;
	metrics_out_puts(o, "{\"endpoints\":[");
	for (size_t i = 0; i < rt->neps; i++) {
		if (i)
			metrics_out_puts(o, ",");
		ctl_json_pool_ep(o, rt->eps[i]);
	}
	metrics_out_puts(o, "],\"slots\":[");
	for (size_t i = 0; i < rt->neps; i++) {
		for (unsigned s = 0; rt->eps[i]->slots && s < rt->eps[i]->nslots; s++) {
			if (!first)
				metrics_out_puts(o, ",");
			first = 0;
			ctl_json_pool_slot(o, rt->eps[i], &rt->eps[i]->slots[s]);
		}
	}
	metrics_out_puts(o, "],");
	metrics_fmt_pool(&k->metrics, o);
	metrics_out_puts(o, "}");
}

static void ctl_cmd_history(struct ctl *k, struct metrics_out *o, size_t n)
{
	metrics_fmt_history(&k->metrics, o, n);
}

static void ctl_cmd_alerts(struct ctl *k, struct metrics_out *o, size_t n)
{
	(void)n;
	metrics_fmt_alerts(&k->metrics, o);
}

static void ctl_cmd_report(struct ctl *k, struct metrics_out *o, size_t n)
{
	(void)n;
	metrics_fmt_report(&k->metrics, o);
}

static const struct ctl_cmd ctl_cmds[] = {
	{ "STATS", "", 0, ctl_cmd_stats,
	  "counters, gauges and latency percentiles (one JSON object)" },
	{ "METRICS", "", 1, ctl_cmd_metrics,
	  "Prometheus text format 0.0.4 (also: GET /metrics over HTTP)" },
	{ "UPSTREAMS", "", 0, ctl_cmd_upstreams, "every upstream connection (JSON)" },
	{ "CLIENTS", "", 0, ctl_cmd_clients, "every local client (JSON)" },
	{ "ROUTES", "[N]", 0, ctl_cmd_routes,
	  "channels, busiest first; N: only the N busiest (JSON)" },
	{ "POOL", "", 0, ctl_cmd_pool,
	  "the upstream pool of each endpoint and its slots, the binary buffer pool, "
	  "interned strings, hibernation (JSON)" },
	{ "HISTORY", "[N]", 0, ctl_cmd_history,
	  "the last N samples, oldest first; default all (JSON)" },
	{ "ALERTS", "", 0, ctl_cmd_alerts, "alert states and thresholds (JSON)" },
	{ "REPORT", "", 1, ctl_cmd_report, "a human-readable summary (text)" },
	{ "HELP", "", 1, ctl_cmd_help, "this list (text)" },
	{ "QUIT", "", 1, NULL, "close the connection (no answer)" },
};

static void ctl_cmd_help(struct ctl *k, struct metrics_out *o, size_t n)
{
	(void)k;
	(void)n;
	metrics_out_puts(o, "phxd control commands, one per line, any case; each answer ends "
			 "with an empty line:\n");
	for (size_t i = 0; i < ARRAY_SIZE(ctl_cmds); i++) {
		char name[32];
		snprintf(name, sizeof(name), "%s%s%s", ctl_cmds[i].name, *ctl_cmds[i].args ? " " : "",
			 ctl_cmds[i].args);
		metrics_out_printf(o, "  %-12s %s\n", name, ctl_cmds[i].help);
	}
}

/* ---- answers -------------------------------------------------------------------- */

static void ctl_err(struct ctl_conn *c, const char *reason, const char *detail)
{
	struct metrics_out o = { &c->out, 0 };
	size_t start = buf_len(&c->out);
	metrics_out_puts(&o, "ERR {\"reason\":");
	metrics_out_jstr(&o, reason, strlen(reason));
	if (detail) {
		metrics_out_puts(&o, ",\"detail\":");
		metrics_out_jstr(&o, detail, strlen(detail));
	}
	metrics_out_puts(&o, "}\n\n");
	if (o.err)
		buf_truncate(&c->out, start);
	c->ctl->errors++;
}

static const struct ctl_cmd *ctl_cmd_find(const char *name, size_t len)
{
	for (size_t i = 0; i < ARRAY_SIZE(ctl_cmds); i++)
		if (strlen(ctl_cmds[i].name) == len && strncasecmp(ctl_cmds[i].name, name, len) == 0)
			return &ctl_cmds[i];
	return NULL;
}

/* "N": 1..CTL_N_MAX; 0 or -EINVAL. */
static int ctl_parse_count(const char *s, size_t len, size_t *n)
{
	long v = 0;
	if (len == 0 || len > 10)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (s[i] - '0');
	}
	if (v < 1 || v > CTL_N_MAX)
		return -EINVAL;
	*n = (size_t)v;
	return 0;
}

static int ctl_blank(char ch)
{
	return ch == ' ' || ch == '\t';
}

static void ctl_run(struct ctl_conn *c, const struct ctl_cmd *cmd, size_t n)
{
	struct ctl *k = c->ctl;
	struct metrics_out o = { &c->out, 0 };
	size_t start = buf_len(&c->out);

	if (!cmd->fn) {                 /* QUIT */
		c->closing = 1;
		return;
	}
	cmd->fn(k, &o, n);
	if (!cmd->text)
		metrics_out_puts(&o, "\n");
	metrics_out_puts(&o, "\n");
	if (o.err) {
		buf_truncate(&c->out, start);
		if (o.err == -EMSGSIZE)
			ctl_err(c, "answer too large", cmd->args[0] ?
				"ask for fewer, e.g. ROUTES 100" : NULL);
		else
			ctl_err(c, "out of memory", NULL);
	}
}

/* One command line (no newline, may hold anything). */
static void ctl_command(struct ctl_conn *c, const char *line, size_t len)
{
	size_t i = 0, vlen, a;

	while (i < len && ctl_blank(line[i]))
		i++;
	while (len > i && ctl_blank(line[len - 1]))
		len--;
	if (i == len || line[i] == '#')
		return;
	c->ctl->commands++;
	for (vlen = 0; i + vlen < len && !ctl_blank(line[i + vlen]); vlen++)
		;
	const struct ctl_cmd *cmd = ctl_cmd_find(line + i, vlen);
	if (!cmd) {
		ctl_err(c, "unknown command", "HELP lists the commands");
		return;
	}
	for (a = i + vlen; a < len && ctl_blank(line[a]); a++)
		;
	size_t n = 0;
	if (a < len && !cmd->args[0]) {
		ctl_err(c, "too many arguments", NULL);
		return;
	}
	if (a < len && ctl_parse_count(line + a, len - a, &n) < 0) {
		ctl_err(c, "bad argument", "N must be a whole number from 1 to 1000000000");
		return;
	}
	ctl_run(c, cmd, n);
}

/* ---- HTTP ------------------------------------------------------------------------ */

static const char *ctl_http_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 505: return "HTTP Version Not Supported";
	default: return "Error";
	}
}

/* Is line an HTTP/1.x request line?  Sets the status it will get. */
static int ctl_http_request_line(struct ctl_conn *c, const char *line, size_t len)
{
	const char *sp1 = memchr(line, ' ', len);
	if (!sp1 || len < 14 || memcmp(line + len - 9, " HTTP/1.", 8) != 0 ||
	    (line[len - 1] != '0' && line[len - 1] != '1'))
		return 0;
	size_t mlen = (size_t)(sp1 - line);
	for (size_t i = 0; i < mlen; i++)
		if (line[i] < 'A' || line[i] > 'Z')
			return 0;
	const char *target = sp1 + 1, *end = line + len - 9;
	if (target >= end || memchr(target, ' ', (size_t)(end - target)))
		return 0;
	/* absolute form: http://host/path */
	if ((size_t)(end - target) > 7 && strncasecmp(target, "http://", 7) == 0) {
		const char *slash = memchr(target + 7, '/', (size_t)(end - target - 7));
		target = slash ? slash : end;
	}
	const char *q = memchr(target, '?', (size_t)(end - target));
	size_t plen = (size_t)((q ? q : end) - target);
	int get = mlen == 3 && memcmp(line, "GET", 3) == 0;
	c->http_head_only = mlen == 4 && memcmp(line, "HEAD", 4) == 0;
	if (!get && !c->http_head_only)
		c->http_status = 405;
	else if (plen == 8 && memcmp(target, "/metrics", 8) == 0)
		c->http_status = 200;
	else
		c->http_status = 404;
	return 1;
}

/* A first line that is not a valid request line but names an HTTP version
 * (" HTTP/" in it): an HTTP client that will not understand ERR lines.  The
 * status its request gets: 505 for a well-formed version other than 1.0 and
 * 1.1, 400 for anything else; 0 when it does not look like HTTP at all. */
static int ctl_http_malformed(const char *line, size_t len)
{
	const char *v = NULL;
	for (size_t i = 0; i + 6 <= len; i++)
		if (memcmp(line + i, " HTTP/", 6) == 0)
			v = line + i + 6;
	if (!v)
		return 0;
	size_t vlen = (size_t)(line + len - v);
	if (vlen == 3 && v[0] >= '0' && v[0] <= '9' && v[1] == '.' && v[2] >= '0' && v[2] <= '9' &&
	    !(v[0] == '1' && (v[2] == '0' || v[2] == '1')))
		return 505;
	if (vlen == 1 && v[0] >= '2' && v[0] <= '9')    /* "HTTP/2", "HTTP/3" */
		return 505;
	return 400;
}

/* The response to the request just read; the connection closes after it. */
static void ctl_http_respond(struct ctl_conn *c, int status)
{
	struct ctl *k = c->ctl;
	struct buf body;
	struct metrics_out o;
	const char *type = "text/plain; charset=utf-8";

	k->http_requests++;
	buf_init(&body, CTL_ANSWER_MAX);
	o.b = &body;
	o.err = 0;
	if (status == 200) {
		metrics_fmt_prom(&k->metrics, &o);
		ctl_prom_self(k, &o);
		type = "text/plain; version=0.0.4; charset=utf-8";
		if (o.err) {
			buf_reset(&body);
			o.err = 0;
			status = 500;
		}
	}
	if (status != 200)
		metrics_out_printf(&o, "%d %s\n", status, ctl_http_reason(status));
	struct metrics_out h = { &c->out, 0 };
	metrics_out_printf(&h, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			   "%sConnection: close\r\n\r\n", status, ctl_http_reason(status), type,
			   buf_len(&body), status == 405 ? "Allow: GET, HEAD\r\n" : "");
	if (!c->http_head_only && !h.err && buf_len(&body))
		h.err = buf_append(&c->out, buf_rptr(&body), buf_len(&body));
	buf_free(&body);
	if (h.err)
		buf_reset(&c->out);
	c->http = 0;
	c->closing = 1;
}

/* A line of the request head. */
static void ctl_http_line(struct ctl_conn *c, size_t len)
{
	c->http_bytes += len + 1;
	if (len == 0)
		ctl_http_respond(c, c->http_status);
	else if (c->http_bytes > CTL_HTTP_HEAD_MAX)
		ctl_http_respond(c, 431);
}

/* ---- connections -------------------------------------------------------------- */

static void ctl_conn_free(struct ctl_conn *c)
{
	buf_free(&c->in);
	buf_free(&c->out);
	free(c);
}

/* Closes the socket now; the struct is freed before the loop blocks again. */
static void ctl_conn_close(struct ctl_conn *c)
{
	struct ctl *k = c->ctl;
	if (c->dead)
		return;
	c->dead = 1;
	ev_io_stop(k->loop, &c->rio);
	ev_io_stop(k->loop, &c->wio);
	ev_timer_stop(k->loop, &c->timer);
	if (c->fd >= 0) {
		shutdown(c->fd, SHUT_WR);
		close(c->fd);
		c->fd = -1;
	}
	list_del(&c->node);
	list_add_tail(&k->reap, &c->node);
	c->l->nconns--;
	ev_prepare_start(k->loop, &k->prep);
}

/* One complete line from c->in, of len bytes (CR removed). */
static void ctl_conn_line(struct ctl_conn *c, const char *line, size_t len)
{
	if (c->http) {
		ctl_http_line(c, len);
		return;
	}
	if (c->nlines++ == 0) {
		int bad = 0;
		if (ctl_http_request_line(c, line, len) || (bad = ctl_http_malformed(line, len))) {
			/* read the rest of the head, then answer; within http_timeout */
			c->http = 1;
			c->http_bytes = len + 1;
			if (bad) {
				c->http_head_only = 0;
				c->http_status = bad;
			}
			c->timer.repeat = c->ctl->http_timeout;
			ev_timer_again(c->ctl->loop, &c->timer);
			return;
		}
	}
	if (c->http_only) {
		c->http_head_only = 0;
		ctl_http_respond(c, 400);
		return;
	}
	ctl_command(c, line, len);
}

/* Answers a line longer than CTL_LINE_MAX (already dropped). */
static void ctl_conn_overlong(struct ctl_conn *c)
{
	if (c->http || c->http_only) {
		ctl_http_respond(c, c->http ? 431 : 400);
		return;
	}
	c->nlines++;
	ctl_err(c, "line too long", "a command line has at most 8192 bytes");
}

/* Handles the complete lines read, as long as the output is not too deep. */
static void ctl_conn_process(struct ctl_conn *c)
{
	while (!c->closing && !c->dead && buf_len(&c->out) < CTL_OUT_HIGH) {
		long nl = buf_find(&c->in, 0, '\n');
		size_t avail = buf_len(&c->in);
		if (nl < 0) {
			if (c->discarding) {
				buf_reset(&c->in);
			} else if (avail > CTL_LINE_MAX) {
				/* drop it up to its newline, whenever that comes */
				buf_reset(&c->in);
				c->discarding = 1;
				ctl_conn_overlong(c);
				continue;
			} else if (c->eof && avail) {
				/* a last line without its newline */
				ctl_conn_line(c, buf_rptr(&c->in), avail);
				buf_reset(&c->in);
			}
			if (c->eof && c->http)      /* a head cut short: no empty line */
				ctl_http_respond(c, 400);
			return;
		}
		const char *line = buf_rptr(&c->in);
		size_t len = (size_t)nl;
		if (c->discarding) {
			c->discarding = 0;
		} else if (len > CTL_LINE_MAX) {
			ctl_conn_overlong(c);
		} else {
			if (len && line[len - 1] == '\r')
				len--;
			ctl_conn_line(c, line, len);
		}
		buf_consume(&c->in, (size_t)nl + 1);
	}
}

/* Watchers from the state: write while output waits; read while the output
 * is not deep and the peer may send more; close when all is done. */
static void ctl_conn_settle(struct ctl_conn *c)
{
	struct ev_loop *loop = c->ctl->loop;
	if (c->dead)
		return;
	if (buf_len(&c->out)) {
		if (!ev_is_active(&c->wio))
			ev_io_start(loop, &c->wio);
	} else {
		ev_io_stop(loop, &c->wio);
		if (c->closing || (c->eof && buf_find(&c->in, 0, '\n') < 0)) {
			ctl_conn_close(c);
			return;
		}
	}
	if (c->eof || c->closing || buf_len(&c->out) >= CTL_OUT_HIGH)
		ev_io_stop(loop, &c->rio);
	else if (!ev_is_active(&c->rio))
		ev_io_start(loop, &c->rio);
}

static void ctl_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct ctl_conn *c = container_of(w, struct ctl_conn, rio);
	(void)revents;
	char *p = buf_reserve(&c->in, CTL_READ_CHUNK);
	if (!p) {
		ctl_conn_close(c);
		return;
	}
	ssize_t r = read(c->fd, p, CTL_READ_CHUNK);
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (r < 0) {
		ctl_conn_close(c);
		return;
	}
	if (r == 0) {
		c->eof = 1;
	} else {
		buf_commit(&c->in, (size_t)r);
		/* commands: any byte is activity; an HTTP head has a deadline */
		if (!c->http && !c->http_only && !c->closing)
			ev_timer_again(loop, &c->timer);
	}
	ctl_conn_process(c);
	ctl_conn_settle(c);
}

static void ctl_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct ctl_conn *c = container_of(w, struct ctl_conn, wio);
	(void)revents;
	while (buf_len(&c->out)) {
		ssize_t r = send(c->fd, buf_rptr(&c->out), buf_len(&c->out), MSG_NOSIGNAL);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (r <= 0) {
			ctl_conn_close(c);
			return;
		}
		buf_consume(&c->out, (size_t)r);
		ev_timer_again(loop, &c->timer);   /* the peer takes the answer */
	}
	buf_release(&c->out);
	ctl_conn_process(c);
	ctl_conn_settle(c);
}

static void ctl_prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct ctl *k = container_of(w, struct ctl, prep);
	struct list_node *n, *t;
	(void)revents;
	list_for_each_safe(n, t, &k->reap) {
		list_del(n);
		ctl_conn_free(container_of(n, struct ctl_conn, node));
	}
	ev_prepare_stop(loop, w);
}

/* A connection that said nothing for too long, or whose HTTP head or
 * answer did not get through in time.  A request head in progress gets a
 * 408 and one more period to take it; anything else is closed. */
static void ctl_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct ctl_conn *c = container_of(w, struct ctl_conn, timer);
	(void)loop;
	(void)revents;
	c->ctl->timeouts++;
	if (!c->timed_out && buf_len(&c->out) == 0 && !c->closing &&
	    (c->http || c->http_only)) {
		c->timed_out = 1;
		ctl_http_respond(c, 408);
		ev_timer_again(loop, &c->timer);
		ctl_conn_settle(c);
		return;
	}
	ctl_conn_close(c);
}

static void ctl_refuse(struct ctl *k, int fd, int http_only)
{
	static const char msg[] = "ERR {\"reason\":\"too many control connections\"}\n\n";
	static const char http[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
				   "Connection: close\r\n\r\n";
	ssize_t w = send(fd, http_only ? http : msg, http_only ? sizeof(http) - 1 : sizeof(msg) - 1,
			 MSG_NOSIGNAL | MSG_DONTWAIT);
	(void)w;
	close(fd);
	k->refused++;
}

static void ctl_accept_one(struct ctl_listener *l, int fd)
{
	struct ctl *k = l->ctl;
	if (l->nconns >= l->max_conns) {
		ctl_refuse(k, fd, l->http_only);
		return;
	}
	struct ctl_conn *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->ctl = k;
	c->l = l;
	c->fd = fd;
	c->http_only = l->http_only;
	buf_init(&c->in, CTL_IN_MAX);
	buf_init(&c->out, CTL_OUT_MAX);
	ev_io_init(&c->rio, ctl_read_cb, fd, EV_READ);
	ev_io_init(&c->wio, ctl_write_cb, fd, EV_WRITE);
	ev_io_start(k->loop, &c->rio);
	ev_init(&c->timer, ctl_timer_cb);
	c->timer.repeat = l->http_only ? k->http_timeout : k->idle_timeout;
	ev_timer_again(k->loop, &c->timer);
	list_add_tail(&k->conns, &c->node);
	l->nconns++;
	k->accepted++;
}

static void ctl_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct ctl_listener *l = container_of(w, struct ctl_listener, io);
	(void)revents;
	for (int i = 0; i < 16; i++) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			ctl_accept_one(l, fd);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			log_warn("control %s: accept: %s: pausing for 1 s", l->path, strerror(errno));
			ev_io_stop(loop, &l->io);
			ev_timer_start(loop, &l->pause);
		}
		return;
	}
}

static void ctl_pause_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct ctl_listener *l = container_of(w, struct ctl_listener, pause);
	(void)revents;
	if (l->fd >= 0)
		ev_io_start(loop, &l->io);
}

/* ---- listeners ------------------------------------------------------------------ */

int ctl_socket_path(const struct conf *conf, char *out, size_t n)
{
	int w;
	if (conf->control_socket) {
		w = snprintf(out, n, "%s", conf->control_socket);
	} else {
		const char *slash = strrchr(conf->socket_path, '/');
		if (slash)
			w = snprintf(out, n, "%.*scontrol.sock",
				     (int)(slash - conf->socket_path + 1), conf->socket_path);
		else
			w = snprintf(out, n, "control.sock");
	}
	if (w < 0 || (size_t)w >= n || (size_t)w >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return -ENAMETOOLONG;
	return 0;
}

/* Binds a Unix socket at path with mode (a stale socket file is replaced;
 * a live one or another kind of file is not).  The fd or -errno with err. */
static int ctl_bind_unix(const char *path, unsigned mode, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "control socket: %s exists and is not a socket", path);
			return -EEXIST;
		}
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int live = probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0;
		if (probe >= 0)
			close(probe);
		if (live) {
			snprintf(err, errlen, "control socket: %s is in use by another process", path);
			return -EADDRINUSE;
		}
		unlink(path);
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "control socket: %s", strerror(e));
		return -e;
	}
	mode_t old = umask(0777);
	int r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	int e = errno;
	umask(old);
	if (r < 0) {
		snprintf(err, errlen, "control socket: bind %s: %s", path, strerror(e));
		close(fd);
		return -e;
	}
	if (chmod(path, mode) < 0 || listen(fd, 16) < 0) {
		e = errno;
		snprintf(err, errlen, "control socket: listen on %s: %s", path, strerror(e));
		close(fd);
		unlink(path);
		return -e;
	}
	return fd;
}

/* 0 when fd is a listening Unix stream socket (made non-blocking). */
static int ctl_check_adopted(int fd, char *err, size_t errlen)
{
	int type = 0, domain = 0, acc = 0;
	socklen_t l1 = sizeof(type), l2 = sizeof(domain), l3 = sizeof(acc);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l1) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &l2) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &l3) < 0) {
		int e = errno;
		snprintf(err, errlen, "control socket: descriptor %d: %s", fd, strerror(e));
		return -e;
	}
	if (domain != AF_UNIX || type != SOCK_STREAM || !acc) {
		snprintf(err, errlen, "control socket: descriptor %d is not a listening Unix "
			 "stream socket", fd);
		return -ENOTSOCK;
	}
	int r = util_set_nonblock(fd);
	if (r < 0)
		snprintf(err, errlen, "control socket: descriptor %d: %s", fd, strerror(-r));
	return r;
}

static void ctl_adopted_name(int fd, char *out, size_t n)
{
	struct sockaddr_un sa;
	socklen_t len = sizeof(sa);
	memset(&sa, 0, sizeof(sa));
	if (getsockname(fd, (struct sockaddr *)&sa, &len) == 0 && sa.sun_path[0])
		snprintf(out, n, "%.*s", (int)sizeof(sa.sun_path), sa.sun_path);
	else
		snprintf(out, n, "(descriptor %d)", fd);
}

static int ctl_bind_tcp(const char *spec, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	size_t len;
	int one = 1;

	if (conf_parse_loopback(spec, &ss, &len) < 0) {
		snprintf(err, errlen, "metrics_listen: '%s' is not a loopback HOST:PORT", spec);
		return -EINVAL;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "metrics_listen: %s", strerror(e));
		return -e;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, (socklen_t)len) < 0 || listen(fd, 16) < 0) {
		int e = errno;
		snprintf(err, errlen, "metrics_listen: %s: %s", spec, strerror(e));
		close(fd);
		return -e;
	}
	return fd;
}

static void ctl_listener_start(struct ctl *k, struct ctl_listener *l, int fd, int http_only)
{
	l->ctl = k;
	l->fd = fd;
	l->http_only = http_only;
	l->nconns = 0;
	l->max_conns = http_only ? CTL_MAX_TCP : CTL_MAX_UNIX;
	ev_io_init(&l->io, ctl_accept_cb, fd, EV_READ);
	ev_timer_init(&l->pause, ctl_pause_cb, 1., 0.);
	ev_io_start(k->loop, &l->io);
}

static void ctl_listener_close(struct ctl *k, struct ctl_listener *l)
{
	if (l->fd < 0)
		return;
	ev_io_stop(k->loop, &l->io);
	ev_timer_stop(k->loop, &l->pause);
	close(l->fd);
	l->fd = -1;
	if (l->owns_path)
		unlink(l->path);
	l->owns_path = 0;
}

int ctl_listen(struct ctl *k, int fd, char *err, size_t errlen)
{
	int r;
	if (fd >= 0) {
		if ((r = ctl_check_adopted(fd, err, errlen)) < 0) {
			close(fd);
			return r;
		}
		ctl_adopted_name(fd, k->lunix.path, sizeof(k->lunix.path));
	} else {
		if (ctl_socket_path(k->conf, k->lunix.path, sizeof(k->lunix.path)) < 0) {
			snprintf(err, errlen, "control socket path too long (at most 107 bytes)");
			return -ENAMETOOLONG;
		}
		if ((fd = ctl_bind_unix(k->lunix.path, k->conf->control_socket_mode, err,
					errlen)) < 0)
			return fd;
		k->lunix.owns_path = 1;
	}
	ctl_listener_start(k, &k->lunix, fd, 0);
	if (k->lunix.owns_path)
		log_info("control socket on %s", k->lunix.path);
	else
		log_info("control socket received from the service manager: serving %s",
			 k->lunix.path);
	if (!k->conf->metrics_listen)
		return 0;
	if ((fd = ctl_bind_tcp(k->conf->metrics_listen, err, errlen)) < 0)
		return fd;
	snprintf(k->ltcp.path, sizeof(k->ltcp.path), "%s", k->conf->metrics_listen);
	ctl_listener_start(k, &k->ltcp, fd, 1);
	log_info("metrics on http://%s/metrics", k->ltcp.path);
	return 0;
}

/* ---- the module -------------------------------------------------------------- */

int ctl_init(struct ctl *k, struct ev_loop *loop, const struct conf *conf,
	     const struct router *rt, const struct ipc_server *ipc, char *err, size_t errlen)
{
	memset(k, 0, sizeof(*k));
	k->loop = loop;
	k->conf = conf;
	k->rt = rt;
	k->ipc = ipc;
	k->lunix.fd = -1;
	k->ltcp.fd = -1;
	list_init(&k->conns);
	list_init(&k->reap);
	k->idle_timeout = CTL_IDLE_TIMEOUT;
	k->http_timeout = CTL_HTTP_TIMEOUT;
	ev_prepare_init(&k->prep, ctl_prepare_cb);
	int r = metrics_init(&k->metrics, loop, conf, rt, ipc, err, errlen);
	if (r < 0)
		return r;
	metrics_start(&k->metrics);
	return 0;
}

void ctl_close(struct ctl *k)
{
	struct list_node *n, *t;
	if (!k->loop)
		return;
	list_for_each_safe(n, t, &k->conns)
		ctl_conn_close(container_of(n, struct ctl_conn, node));
	list_for_each_safe(n, t, &k->reap) {
		list_del(n);
		ctl_conn_free(container_of(n, struct ctl_conn, node));
	}
	ev_prepare_stop(k->loop, &k->prep);
	ctl_listener_close(k, &k->lunix);
	ctl_listener_close(k, &k->ltcp);
	metrics_fini(&k->metrics);
	k->loop = NULL;
}

void ctl_reload(struct ctl *k)
{
	char path[sizeof(k->lunix.path)];
	const char *ml = k->conf->metrics_listen;
	metrics_reload(&k->metrics, k->conf);
	if (k->lunix.owns_path && (ctl_socket_path(k->conf, path, sizeof(path)) < 0 ||
				   strcmp(path, k->lunix.path) != 0))
		log_warn("reload: control_socket takes effect at the next restart");
	if (strcmp(ml ? ml : "", k->ltcp.path) != 0)
		log_warn("reload: metrics_listen takes effect at the next restart");
}

const char *ctl_alert_status(const struct ctl *k)
{
	return metrics_alert_status(&k->metrics);
}
