#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bpool.h"
#include "buf.h"
#include "intern.h"
#include "conf/conf.h"
#include "ipc/ipc_server.h"
#include "json.h"
#include "log.h"
#include "router.h"
#include "util.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIB_F (1024.0 * 1024.0)

static const char *const metrics_up_names[METRICS_UP_STATES] = {
	"idle", "connecting", "tls", "handshake", "open", "wait",
};
static const char *const metrics_chan_names[METRICS_CHAN_STATES] = {
	"waiting", "joining", "joined", "errored",
};

/* ---- the sticky writer ------------------------------------------------------ */

void metrics_out_puts(struct metrics_out *o, const char *s)
{
	if (!o->err)
		o->err = buf_puts(o->b, s);
}

void metrics_out_printf(struct metrics_out *o, const char *fmt, ...)
{
	va_list ap;
	if (o->err)
		return;
	va_start(ap, fmt);
	o->err = buf_vprintf(o->b, fmt, ap);
	va_end(ap);
}

static void metrics_out_putc(struct metrics_out *o, char c)
{
	if (!o->err)
		o->err = buf_putc(o->b, c);
}

void metrics_out_u64(struct metrics_out *o, uint64_t v)
{
	if (!o->err)
		o->err = buf_put_u64(o->b, (unsigned long long)v);
}

void metrics_out_jstr(struct metrics_out *o, const char *s, size_t len)
{
	if (!o->err)
		o->err = json_put_str(o->b, s, len);
}

void metrics_out_jnum(struct metrics_out *o, double v)
{
	if (!isfinite(v)) {
		metrics_out_puts(o, "null");
		return;
	}
	char b[64];
	int n = snprintf(b, sizeof(b), "%.3f", v);
	if (n <= 0 || (size_t)n >= sizeof(b)) {
		metrics_out_puts(o, "null");
		return;
	}
	while (n > 0 && b[n - 1] == '0')     /* 1.500 → 1.5, 2.000 → 2 */
		b[--n] = '\0';
	if (n > 0 && b[n - 1] == '.')
		b[--n] = '\0';
	metrics_out_puts(o, strcmp(b, "-0") == 0 ? "0" : b);
}

/* ---- Prometheus ----------------------------------------------------------------- */

static const char *metrics_type_name(enum metrics_type t)
{
	switch (t) {
	case METRICS_COUNTER: return "counter";
	case METRICS_GAUGE: return "gauge";
	case METRICS_HISTOGRAM: return "histogram";
	}
	return "untyped";
}

void metrics_prom_family(struct metrics_out *o, const char *name, enum metrics_type type,
			 const char *help)
{
	metrics_out_printf(o, "# HELP %s ", name);
	for (const char *p = help; *p; p++) {
		if (*p == '\\')
			metrics_out_puts(o, "\\\\");
		else if (*p == '\n')
			metrics_out_puts(o, "\\n");
		else
			metrics_out_putc(o, *p);
	}
	metrics_out_printf(o, "\n# TYPE %s %s\n", name, metrics_type_name(type));
}

void metrics_prom_escape(struct metrics_out *o, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '\\': metrics_out_puts(o, "\\\\"); break;
		case '"': metrics_out_puts(o, "\\\""); break;
		case '\n': metrics_out_puts(o, "\\n"); break;
		default: metrics_out_putc(o, *s); break;
		}
	}
}

static void metrics_prom_name(struct metrics_out *o, const char *name,
			      const struct metrics_label *l, size_t nl)
{
	metrics_out_puts(o, name);
	if (!nl)
		return;
	metrics_out_puts(o, "{");
	for (size_t i = 0; i < nl; i++) {
		metrics_out_printf(o, "%s%s=\"", i ? "," : "", l[i].name);
		metrics_prom_escape(o, l[i].value);
		metrics_out_puts(o, "\"");
	}
	metrics_out_puts(o, "}");
}

void metrics_prom_u64(struct metrics_out *o, const char *name,
		      const struct metrics_label *l, size_t nl, uint64_t v)
{
	metrics_prom_name(o, name, l, nl);
	metrics_out_puts(o, " ");
	metrics_out_u64(o, v);
	metrics_out_puts(o, "\n");
}

void metrics_prom_number(double v, char *out, size_t n)
{
	if (isnan(v)) {
		snprintf(out, n, "NaN");
		return;
	}
	if (isinf(v)) {
		snprintf(out, n, v > 0 ? "+Inf" : "-Inf");
		return;
	}
	/* %.9g would print a start time of 1700000123.4 as 1.70000012e+09,
	 * seconds off: take the fewest digits that read back exactly */
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(out, n, "%.*g", prec, v);
		if (strtod(out, NULL) == v)
			return;
	}
}

void metrics_prom_double(struct metrics_out *o, const char *name,
			 const struct metrics_label *l, size_t nl, double v)
{
	char b[40];
	metrics_prom_number(v, b, sizeof(b));
	metrics_prom_name(o, name, l, nl);
	metrics_out_printf(o, " %s\n", b);
}

void metrics_prom_hist(struct metrics_out *o, const char *name, const char *help,
		       const struct hist *h)
{
	char n[160];
	uint64_t cum = 0;

	metrics_prom_family(o, name, METRICS_HISTOGRAM, help);
	snprintf(n, sizeof(n), "%s_bucket", name);
	for (unsigned i = 0; i < HIST_NBUCKETS; i++) {
		char le[32];
		cum += h->count[i];
		snprintf(le, sizeof(le), "%g", (double)hist_bounds_us[i] / 1e6);
		struct metrics_label l = { "le", le };
		metrics_prom_u64(o, n, &l, 1, cum);
	}
	cum += h->count[HIST_NBUCKETS];
	struct metrics_label inf = { "le", "+Inf" };
	metrics_prom_u64(o, n, &inf, 1, cum);
	snprintf(n, sizeof(n), "%s_sum", name);
	metrics_prom_double(o, n, NULL, 0, (double)h->sum_us / 1e6);
	snprintf(n, sizeof(n), "%s_count", name);
	metrics_prom_u64(o, n, NULL, 0, cum);
}

/* ---- the ring --------------------------------------------------------------------- */

int metrics_ring_init(struct metrics_ring *r, size_t cap)
{
	memset(r, 0, sizeof(*r));
	if (cap == 0)
		cap = 1;
	r->s = calloc(cap, sizeof(*r->s));
	if (!r->s)
		return -ENOMEM;
	r->cap = cap;
	return 0;
}

void metrics_ring_free(struct metrics_ring *r)
{
	free(r->s);
	memset(r, 0, sizeof(*r));
}

struct metrics_sample *metrics_ring_push(struct metrics_ring *r)
{
	struct metrics_sample *s = &r->s[r->head];
	memset(s, 0, sizeof(*s));
	r->head = (r->head + 1) % r->cap;
	if (r->n < r->cap)
		r->n++;
	return s;
}

const struct metrics_sample *metrics_ring_get(const struct metrics_ring *r, size_t age)
{
	if (age >= r->n)
		return NULL;
	return &r->s[(r->head + r->cap - 1 - age) % r->cap];
}

/* ---- alerts ------------------------------------------------------------------------ */

static const char *const metrics_alert_names[METRICS_ALERT_COUNT] = {
	"memory", "cache_hit_rate", "queue_depth", "response_time",
};

const char *metrics_alert_name(enum metrics_alert_id id)
{
	return (unsigned)id < METRICS_ALERT_COUNT ? metrics_alert_names[id] : "?";
}

void metrics_rule_set(struct metrics_rule *r, int above, double threshold)
{
	r->above = above;
	r->off = threshold <= 0;
	r->raise_at = threshold;
	if (above)
		r->clear_at = threshold * 0.9;
	else
		r->clear_at = threshold + 5 > 100 ? 100 : threshold + 5;
	r->samples = METRICS_ALERT_SAMPLES;
	r->stale = 0;
}

static int metrics_rule_fires(const struct metrics_rule *r, double v)
{
	return r->above ? v > r->raise_at : v < r->raise_at;
}

static int metrics_rule_clears(const struct metrics_rule *r, double v)
{
	return r->above ? v <= r->clear_at : v >= r->clear_at;
}

int metrics_alert_step(struct metrics_alert *a, const struct metrics_rule *r, int have,
		       double value)
{
	a->have = have;
	if (have) {
		a->value = value;
		a->measured = 1;
	}
	if (r->off) {
		a->streak = 0;
		a->idle = 0;
		if (!a->active)
			return 0;
		a->active = 0;
		a->stale = 0;
		return -1;
	}
	if (!have) {
		if (!r->stale || a->idle >= r->stale)
			return 0;
		if (++a->idle < r->stale)
			return 0;
		/* no data for so long that a run in progress means nothing */
		a->streak = 0;
		if (!a->active)
			return 0;
		a->active = 0;
		a->stale = 1;
		return -1;
	}
	a->idle = 0;
	if (!(a->active ? metrics_rule_clears(r, value) : metrics_rule_fires(r, value))) {
		a->streak = 0;
		return 0;
	}
	if (++a->streak < r->samples)
		return 0;
	a->streak = 0;
	a->active = !a->active;
	if (!a->active) {
		a->stale = 0;
		return -1;
	}
	a->stale = 0;
	a->raised++;
	return 1;
}

int metrics_response_ms(const struct hist *d, uint64_t timeouts, double timeout_ms,
			double *ms, int *timed_out)
{
	uint64_t n = d->total + timeouts;
	*timed_out = 0;
	if (!n)
		return 0;
	/* the timeouts sort after every reply: is the p99 rank among them? */
	double rank = 0.99 * (double)n;
	if (rank > (double)d->total) {
		*timed_out = 1;
		*ms = timeout_ms;
		return 1;
	}
	*ms = (double)hist_quantile_us(d, rank / (double)d->total) / 1000.0;
	return 1;
}

/* The value of an alert in its unit, for logs and REPORT. */
static void metrics_alert_value(enum metrics_alert_id id, double v, char *out, size_t n)
{
	switch (id) {
	case METRICS_ALERT_MEMORY:
		snprintf(out, n, "%.1f MiB", v / MIB_F);
		break;
	case METRICS_ALERT_CACHE:
		snprintf(out, n, "%.0f %%", v);
		break;
	case METRICS_ALERT_QUEUE:
		snprintf(out, n, "%.0f bytes", v);
		break;
	case METRICS_ALERT_RESPONSE:
		snprintf(out, n, "%.0f ms", v);
		break;
	default:
		snprintf(out, n, "%g", v);
		break;
	}
}

static const char *metrics_alert_what(enum metrics_alert_id id)
{
	switch (id) {
	case METRICS_ALERT_MEMORY: return "resident memory";
	case METRICS_ALERT_CACHE: return "route cache hit rate";
	case METRICS_ALERT_QUEUE: return "deepest client output queue";
	case METRICS_ALERT_RESPONSE: return "push reply time p99";
	default: return "?";
	}
}

static void metrics_alert_log(const struct metrics *m, enum metrics_alert_id id, int change)
{
	char v[48], t[48];
	const struct metrics_rule *r = &m->rules[id];
	metrics_alert_value(id, m->alerts[id].value, v, sizeof(v));
	metrics_alert_value(id, r->raise_at, t, sizeof(t));
	if (change > 0 && id == METRICS_ALERT_RESPONSE && m->alerts[id].timed_out)
		log_warn("alert raised: %s: pushes got no reply within %s (threshold %s)",
			 metrics_alert_name(id), v, t);
	else if (change > 0)
		log_warn("alert raised: %s: %s is %s, %s the threshold %s", metrics_alert_name(id),
			 metrics_alert_what(id), v, r->above ? "above" : "below", t);
	else if (r->off)
		log_notice("alert cleared: %s: turned off", metrics_alert_name(id));
	else if (m->alerts[id].stale)
		log_notice("alert cleared: %s: nothing measured for %u samples; the last value "
			   "(%s) is stale", metrics_alert_name(id), r->stale, v);
	else
		log_notice("alert cleared: %s: %s is back to %s (threshold %s)",
			   metrics_alert_name(id), metrics_alert_what(id), v, t);
}

static void metrics_status_update(struct metrics *m)
{
	size_t o = 0;
	m->status[0] = '\0';
	for (unsigned i = 0; i < METRICS_ALERT_COUNT; i++) {
		if (!m->alerts[i].active)
			continue;
		int w = snprintf(m->status + o, sizeof(m->status) - o, "%s%s",
				 o ? ", " : "alerts: ", metrics_alert_names[i]);
		if (w < 0 || (size_t)w >= sizeof(m->status) - o)
			break;
		o += (size_t)w;
	}
}

const char *metrics_alert_status(const struct metrics *m)
{
	return m->status;
}

/* ---- collecting ----------------------------------------------------------------- */

uint64_t metrics_rss(void)
{
	char b[128];
	unsigned long long size = 0, res = 0;
	int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, b, sizeof(b) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	b[n] = '\0';
	if (sscanf(b, "%llu %llu", &size, &res) != 2)
		return 0;
	long page = sysconf(_SC_PAGESIZE);
	return (uint64_t)res * (uint64_t)(page > 0 ? page : 4096);
}

static uint64_t metrics_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void metrics_collect_clients(const struct ipc_server *s, struct metrics_now *n)
{
	const struct list_node *p;
	n->clients = s->nclients;
	for (p = s->clients.next; p != &s->clients; p = p->next) {
		const struct ipc_client *c = container_of(p, struct ipc_client, node);
		uint64_t q = buf_len(&c->out);
		n->queue_bytes += q;
		if (q > n->queue_max)
			n->queue_max = q;
		n->client_buf_bytes += c->in.cap + c->out.cap;
	}
}

static void metrics_collect_upstreams(const struct router *rt, struct metrics_now *n)
{
	for (size_t i = 0; i < rt->neps; i++) {
		const struct endpoint *ep = rt->eps[i];
		n->channels += ep->chans.n;
		for (unsigned k = 0; ep->slots && k < ep->nslots; k++) {
			const struct up_conn *up = &ep->slots[k].up;
			n->ups_total++;
			if ((unsigned)up->state < METRICS_UP_STATES)
				n->ups_state[up->state]++;
			n->ups_open += up->state == UP_OPEN;
			n->up_connects += up->connects;
			n->up_disconnects += up->disconnects;
			n->up_reconnects += up->connects > 1 ? up->connects - 1 : 0;
			n->up_frames_in += up->frames_in;
			n->up_frames_out += up->frames_out;
			n->up_bytes_in += up->bytes_in;
			n->up_bytes_out += up->bytes_out;
			n->up_payload_in += up->payload_in;
			n->up_payload_out += up->payload_out;
			n->up_buf_bytes += up->rbuf.cap + up->wbuf.cap + up->frame.cap +
					   up->zout.cap + up->zin.cap + up->msg.cap;
		}
	}
}

static void metrics_collect_chans(const struct router *rt, struct metrics_now *n)
{
	for (size_t i = 0; i < rt->neps; i++) {
		const struct chan *ch;
		for (size_t j = 0; (ch = hmap_next(&rt->eps[i]->chans, &j));) {
			if ((unsigned)ch->state < METRICS_CHAN_STATES)
				n->chan_state[ch->state]++;
			n->subscribers += ch->nsubs;
		}
	}
}

void metrics_collect(const struct metrics *m, struct metrics_now *n, int full)
{
	memset(n, 0, sizeof(*n));
	n->rss = metrics_rss();
	metrics_collect_clients(m->ipc, n);
	metrics_collect_upstreams(m->rt, n);
	if (m->rt->routes) {
		route_cache_stats(m->rt->routes, &n->cache);
		n->have_cache = 1;
	}
	if (full)
		metrics_collect_chans(m->rt, n);
}

/* ---- sampling ------------------------------------------------------------------- */

/* h - prev, bucket by bucket. */
static void metrics_hist_delta(const struct hist *h, const struct hist *prev, struct hist *d)
{
	for (unsigned i = 0; i <= HIST_NBUCKETS; i++)
		d->count[i] = h->count[i] - prev->count[i];
	d->total = h->total - prev->total;
	d->sum_us = h->sum_us - prev->sum_us;
}

/* The newest sample at least window_ms older than s (or the oldest one),
 * NULL when s is the only one. */
static const struct metrics_sample *metrics_ring_back(const struct metrics_ring *r,
						      const struct metrics_sample *s,
						      uint64_t window_ms)
{
	const struct metrics_sample *b = NULL;
	for (size_t age = 1; age < r->n; age++) {
		b = metrics_ring_get(r, age);
		if (s->mono_ms - b->mono_ms >= window_ms)
			break;
	}
	return b;
}

/* For response_time: the shortest push_timeout of the endpoints (what a
 * timeout says about the reply time, at least), and how many samples
 * without a reply or a timeout make its value stale.  While pushes are
 * made, every one is answered or times out within the longest push or join
 * timeout; twice that without either means nobody pushes any more. */
static void metrics_response_rule(struct metrics *m)
{
	unsigned shortest = 0, longest = 0;
	for (size_t i = 0; i < m->rt->neps; i++) {
		const struct conf_endpoint *c = m->rt->eps[i]->conf;
		unsigned t = c->push_timeout_ms > c->join_timeout_ms ? c->push_timeout_ms :
			     c->join_timeout_ms;
		if (!shortest || c->push_timeout_ms < shortest)
			shortest = c->push_timeout_ms;
		if (t > longest)
			longest = t;
	}
	unsigned every = m->conf->metrics_interval_ms ? m->conf->metrics_interval_ms : 1000;
	uint64_t stale = (2 * (uint64_t)longest + every - 1) / every;
	m->timeout_ms = shortest;
	m->rules[METRICS_ALERT_RESPONSE].stale = stale < METRICS_ALERT_SAMPLES ?
						  METRICS_ALERT_SAMPLES :
						  stale > 1000000 ? 1000000 : (unsigned)stale;
}

/* d: the pushes answered since the last sample. */
static void metrics_check_alerts(struct metrics *m, struct metrics_sample *s,
				 const struct hist *d)
{
	double resp = 0;
	int timed_out = 0;
	int have[METRICS_ALERT_COUNT] = {
		[METRICS_ALERT_MEMORY] = s->rss > 0,
		[METRICS_ALERT_QUEUE] = 1,
	};
	metrics_response_rule(m);
	have[METRICS_ALERT_RESPONSE] = metrics_response_ms(d, s->push_timeouts, m->timeout_ms,
							   &resp, &timed_out);
	double v[METRICS_ALERT_COUNT] = {
		[METRICS_ALERT_MEMORY] = (double)s->rss,
		[METRICS_ALERT_QUEUE] = (double)s->queue_max,
		/* no reply at all is slower than any threshold */
		[METRICS_ALERT_RESPONSE] = timed_out ? INFINITY : resp,
	};
	if (have[METRICS_ALERT_RESPONSE])
		m->alerts[METRICS_ALERT_RESPONSE].timed_out = timed_out;
	const struct metrics_sample *b = metrics_ring_back(&m->ring, s, METRICS_WINDOW_MS);
	/* (counters of a cache that was rebuilt start again from 0) */
	if (b && m->rt->routes && s->cache_hits >= b->cache_hits &&
	    s->cache_misses >= b->cache_misses) {
		uint64_t hits = s->cache_hits - b->cache_hits;
		uint64_t lookups = hits + s->cache_misses - b->cache_misses;
		have[METRICS_ALERT_CACHE] = lookups >= METRICS_CACHE_MIN_LOOKUPS;
		if (lookups)
			v[METRICS_ALERT_CACHE] = 100.0 * (double)hits / (double)lookups;
	}
	int changed = 0;
	for (unsigned i = 0; i < METRICS_ALERT_COUNT; i++) {
		int c = metrics_alert_step(&m->alerts[i], &m->rules[i], have[i], v[i]);
		if (i == METRICS_ALERT_RESPONSE && have[i] && timed_out)
			m->alerts[i].value = resp;      /* shown: the timeout, not inf */
		if (c) {
			m->alerts[i].since_ms = s->wall_ms;
			metrics_alert_log(m, i, c);
			changed = 1;
		}
		if (m->alerts[i].active)
			s->alerts |= (uint16_t)(1u << i);
	}
	if (changed)
		metrics_status_update(m);
}

void metrics_sample(struct metrics *m)
{
	struct metrics_now n;
	const struct metrics_sample *prev = metrics_ring_get(&m->ring, 0);
	struct metrics_sample last = prev ? *prev : (struct metrics_sample){ 0 };
	struct hist d;

	metrics_collect(m, &n, 0);
	struct metrics_sample *s = metrics_ring_push(&m->ring);
	s->wall_ms = metrics_wall_ms();
	s->mono_ms = util_now_ms();
	s->rss = n.rss;
	s->queue_max = n.queue_max;
	s->clients = n.clients;
	s->ups_open = n.ups_open;
	s->ups_total = n.ups_total;
	s->channels = (uint32_t)n.channels;
	s->msgs_in = m->rt->events_in;
	s->msgs_out = m->rt->pushes;
	s->cache_hits = n.cache.hits;
	s->cache_misses = n.cache.misses;
	s->cache_hit_pct = -1;

	uint64_t since = prev ? last.mono_ms : m->start_ms;
	double secs = s->mono_ms > since ? (double)(s->mono_ms - since) / 1000.0 : 0;
	if (secs > 0) {
		s->in_rate = (float)((double)(s->msgs_in - last.msgs_in) / secs);
		s->out_rate = (float)((double)(s->msgs_out - last.msgs_out) / secs);
	}
	uint64_t lookups = (s->cache_hits - last.cache_hits) + (s->cache_misses - last.cache_misses);
	if (n.have_cache && lookups && s->cache_hits >= last.cache_hits &&
	    s->cache_misses >= last.cache_misses)
		s->cache_hit_pct = (int16_t)(100 * (s->cache_hits - last.cache_hits) / lookups);

	metrics_hist_delta(&m->rt->push_latency, &m->prev_push, &d);
	m->prev_push = m->rt->push_latency;
	s->push_count = (uint32_t)d.total;
	s->push_p50_us = (uint32_t)hist_quantile_us(&d, 0.50);
	s->push_p99_us = (uint32_t)hist_quantile_us(&d, 0.99);
	/* (a reload that replaced the router's counters cannot happen: they
	 * live as long as the router; still, never wrap) */
	s->push_timeouts = m->rt->timeouts >= m->prev_timeouts ?
			   (uint32_t)(m->rt->timeouts - m->prev_timeouts) : 0;
	m->prev_timeouts = m->rt->timeouts;
	metrics_check_alerts(m, s, &d);
}

static void metrics_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct metrics *m = container_of(w, struct metrics, timer);
	(void)loop;
	(void)revents;
	metrics_sample(m);
}

/* The rules and the timer period from m->conf. */
static void metrics_apply_conf(struct metrics *m)
{
	const struct conf *conf = m->conf;
	metrics_rule_set(&m->rules[METRICS_ALERT_MEMORY], 1, (double)conf->alert_memory);
	metrics_rule_set(&m->rules[METRICS_ALERT_CACHE], 0, (double)conf->alert_cache_hit_rate);
	metrics_rule_set(&m->rules[METRICS_ALERT_QUEUE], 1, (double)conf->alert_queue_depth);
	metrics_rule_set(&m->rules[METRICS_ALERT_RESPONSE], 1, (double)conf->alert_response_ms);
	double every = (double)(conf->metrics_interval_ms ? conf->metrics_interval_ms : 1000) / 1e3;
	m->timer.repeat = every;
}

int metrics_init(struct metrics *m, struct ev_loop *loop, const struct conf *conf,
		 const struct router *rt, const struct ipc_server *ipc,
		 char *err, size_t errlen)
{
	memset(m, 0, sizeof(*m));
	m->loop = loop;
	m->conf = conf;
	m->rt = rt;
	m->ipc = ipc;
	if (metrics_ring_init(&m->ring, conf->history_size) < 0) {
		snprintf(err, errlen, "metrics: no memory for %u history samples",
			 conf->history_size);
		return -ENOMEM;
	}
	m->start_ms = util_now_ms();
	m->start_wall_ms = metrics_wall_ms();
	m->prev_push = rt->push_latency;
	m->prev_timeouts = rt->timeouts;
	ev_timer_init(&m->timer, metrics_timer_cb, 1., 1.);
	metrics_apply_conf(m);
	return 0;
}

void metrics_reload(struct metrics *m, const struct conf *conf)
{
	m->conf = conf;
	metrics_apply_conf(m);
	if (ev_is_active(&m->timer))
		ev_timer_again(m->loop, &m->timer);
	if (conf->history_size != m->ring.cap)
		log_warn("reload: history_size takes effect at the next restart");
}

void metrics_start(struct metrics *m)
{
	if (ev_is_active(&m->timer))
		return;
	ev_timer_start(m->loop, &m->timer);
	ev_unref(m->loop); /* sampling alone keeps nothing alive */
}

void metrics_fini(struct metrics *m)
{
	if (ev_is_active(&m->timer)) {
		ev_ref(m->loop);
		ev_timer_stop(m->loop, &m->timer);
	}
	metrics_ring_free(&m->ring);
}

/* ---- channels by traffic ----------------------------------------------------------- */

static uint64_t metrics_chan_traffic(const struct chan *ch)
{
	return ch->msgs_in + ch->msgs_out;
}

static int metrics_chan_cmp(const void *a, const void *b)
{
	const struct chan *x = *(const struct chan *const *)a;
	const struct chan *y = *(const struct chan *const *)b;
	uint64_t tx = metrics_chan_traffic(x), ty = metrics_chan_traffic(y);
	if (tx != ty)
		return tx > ty ? -1 : 1;
	size_t n = x->topic_len < y->topic_len ? x->topic_len : y->topic_len;
	int c = memcmp(x->topic, y->topic, n);
	if (c)
		return c;
	return x->topic_len < y->topic_len ? -1 : x->topic_len > y->topic_len;
}

const struct chan **metrics_chans_by_traffic(const struct router *rt, size_t *n)
{
	size_t total = 0, k = 0;
	for (size_t i = 0; i < rt->neps; i++)
		total += rt->eps[i]->chans.n;
	*n = 0;
	if (!total)
		return NULL;
	const struct chan **v = malloc(total * sizeof(*v));
	if (!v) {
		*n = (size_t)-1;
		return NULL;
	}
	for (size_t i = 0; i < rt->neps; i++) {
		const struct chan *ch;
		for (size_t j = 0; k < total && (ch = hmap_next(&rt->eps[i]->chans, &j));)
			v[k++] = ch;
	}
	qsort(v, k, sizeof(*v), metrics_chan_cmp);
	*n = k;
	return v;
}

/* ---- STATS ---------------------------------------------------------------------- */

static void metrics_json_latency(struct metrics_out *o, const char *name, const struct hist *h)
{
	metrics_out_printf(o, "\"%s\":{\"count\":", name);
	metrics_out_u64(o, h->total);
	metrics_out_puts(o, ",\"mean_ms\":");
	metrics_out_jnum(o, h->total ? (double)h->sum_us / (double)h->total / 1000.0 : 0);
	static const struct { const char *k; double q; } qs[] = {
		{ "p50_ms", 0.50 }, { "p90_ms", 0.90 }, { "p99_ms", 0.99 },
	};
	for (size_t i = 0; i < ARRAY_SIZE(qs); i++) {
		metrics_out_printf(o, ",\"%s\":", qs[i].k);
		metrics_out_jnum(o, (double)hist_quantile_us(h, qs[i].q) / 1000.0);
	}
	metrics_out_puts(o, "}");
}

/* "key":N pairs from parallel arrays, comma-separated. */
static void metrics_json_u64s(struct metrics_out *o, const char *const *keys,
			      const uint64_t *vals, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		metrics_out_printf(o, "%s\"%s\":", i ? "," : "", keys[i]);
		metrics_out_u64(o, vals[i]);
	}
}

static void metrics_json_cache(struct metrics_out *o, const struct metrics_now *n)
{
	if (!n->have_cache) {
		metrics_out_puts(o, "null");
		return;
	}
	const struct route_cache_stats *c = &n->cache;
	static const char *const k[] = { "hits", "misses", "inserts", "updates", "deletes",
					  "evictions", "expirations", "entries", "capacity" };
	uint64_t v[] = { c->hits, c->misses, c->inserts, c->updates, c->deletes, c->evictions,
			 c->expirations, c->entries, c->capacity };
	metrics_out_puts(o, "{");
	metrics_json_u64s(o, k, v, ARRAY_SIZE(k));
	uint64_t lookups = c->hits + c->misses;
	metrics_out_puts(o, ",\"hit_rate\":");
	if (lookups)
		metrics_out_jnum(o, 100.0 * (double)c->hits / (double)lookups);
	else
		metrics_out_puts(o, "null");
	metrics_out_puts(o, "}");
}

void metrics_fmt_pool(const struct metrics *m, struct metrics_out *o)
{
	const struct bpool_stats *b = bpool_stats();
	const struct intern_stats *is = intern_stats();
	static const char *const bk[] = { "hits", "misses", "bytes_saved", "releases",
					  "released_bytes", "entries", "bytes", "in_use",
					  "in_use_bytes", "trims" };
	uint64_t bv[] = { b->hits, b->misses, b->saved, b->releases, b->released_bytes,
			  b->entries, b->bytes, b->in_use, b->in_use_bytes, b->trims };
	metrics_out_puts(o, "\"binary_pool\":{");
	metrics_json_u64s(o, bk, bv, ARRAY_SIZE(bk));
	static const char *const ik[] = { "hits", "misses", "releases", "entries", "unused",
					  "bytes" };
	uint64_t iv[] = { is->hits, is->misses, is->releases, is->entries, is->unused,
			  is->bytes };
	metrics_out_puts(o, "},\"interned\":{");
	metrics_json_u64s(o, ik, iv, ARRAY_SIZE(ik));
	static const char *const hk[] = { "clients", "upstreams", "client_wakeups",
					  "upstream_wakeups", "client_released_bytes",
					  "upstream_released_bytes", "client_held_bytes",
					  "upstream_held_bytes" };
	uint64_t hv[] = { m->ipc->hibernating, m->rt->ups_hibernating, m->ipc->wakeups,
			  m->rt->ups_wakeups, m->ipc->hib_bytes, m->rt->ups_hib_bytes,
			  m->ipc->hib_now, m->rt->ups_hib_now };
	metrics_out_printf(o, "},\"hibernation\":{\"enabled\":%s,",
			   m->conf->hibernation_enabled ? "true" : "false");
	metrics_json_u64s(o, hk, hv, ARRAY_SIZE(hk));
	metrics_out_puts(o, "}");
}

static void metrics_json_alert_names(const struct metrics *m, struct metrics_out *o)
{
	int first = 1;
	metrics_out_puts(o, "[");
	for (unsigned i = 0; i < METRICS_ALERT_COUNT; i++) {
		if (!m->alerts[i].active)
			continue;
		metrics_out_printf(o, "%s\"%s\"", first ? "" : ",", metrics_alert_names[i]);
		first = 0;
	}
	metrics_out_puts(o, "]");
}

void metrics_fmt_stats(const struct metrics *m, struct metrics_out *o)
{
	const struct router *rt = m->rt;
	const struct ipc_server *s = m->ipc;
	const struct metrics_sample *last = metrics_ring_get(&m->ring, 0);
	struct metrics_now n;

	metrics_collect(m, &n, 1);
	metrics_out_printf(o, "{\"version\":\"%s\",\"pid\":%ld,\"time\":", PACKAGE_VERSION,
			   (long)getpid());
	metrics_out_u64(o, metrics_wall_ms());
	metrics_out_puts(o, ",\"uptime_s\":");
	metrics_out_jnum(o, (double)(util_now_ms() - m->start_ms) / 1000.0);

	metrics_out_puts(o, ",\"memory\":{");
	static const char *const mk[] = { "rss_bytes", "client_buffer_bytes",
					  "upstream_buffer_bytes" };
	uint64_t mv[] = { n.rss, n.client_buf_bytes, n.up_buf_bytes };
	metrics_json_u64s(o, mk, mv, ARRAY_SIZE(mk));
	metrics_out_puts(o, ",");
	metrics_fmt_pool(m, o);

	metrics_out_puts(o, "},\"clients\":{");
	static const char *const ck[] = { "connected", "accepted", "refused", "lines_in",
					  "lines_out", "bad_lines", "overflows", "queue_bytes",
					  "queue_max_bytes" };
	uint64_t cv[] = { n.clients, s->accepted, s->refused, s->lines_in, s->lines_out,
			  s->bad_lines, s->overflows, n.queue_bytes, n.queue_max };
	metrics_json_u64s(o, ck, cv, ARRAY_SIZE(ck));
	metrics_out_puts(o, ",\"bad_lines_by_kind\":{");
	metrics_json_u64s(o, ipc_bad_names, s->bad_by_kind, IPC_BAD_KINDS);
	metrics_out_puts(o, "}");

	metrics_out_puts(o, "},\"upstreams\":{\"total\":");
	metrics_out_u64(o, n.ups_total);
	for (unsigned i = 0; i < METRICS_UP_STATES; i++) {
		metrics_out_printf(o, ",\"%s\":", metrics_up_names[i]);
		metrics_out_u64(o, n.ups_state[i]);
	}
	static const char *const uk[] = { "connects", "reconnects", "disconnects", "frames_in",
					  "frames_out",
					  "bytes_in", "bytes_out", "payload_bytes_in",
					  "payload_bytes_out" };
	uint64_t uv[] = { n.up_connects, n.up_reconnects, n.up_disconnects, n.up_frames_in, n.up_frames_out,
			  n.up_bytes_in, n.up_bytes_out, n.up_payload_in, n.up_payload_out };
	metrics_out_puts(o, ",");
	metrics_json_u64s(o, uk, uv, ARRAY_SIZE(uk));

	metrics_out_puts(o, "},\"channels\":{\"total\":");
	metrics_out_u64(o, n.channels);
	for (unsigned i = 0; i < METRICS_CHAN_STATES; i++) {
		metrics_out_printf(o, ",\"%s\":", metrics_chan_names[i]);
		metrics_out_u64(o, n.chan_state[i]);
	}
	metrics_out_puts(o, ",\"subscribers\":");
	metrics_out_u64(o, n.subscribers);

	metrics_out_puts(o, "},\"router\":{");
	static const char *const rk[] = { "joins", "leaves", "join_errors", "pushes", "replies",
					  "timeouts", "events_in", "events_dropped", "deliveries",
					  "moved", "access_denied", "rate_limited", "topic_limited",
					  "upstream_busy" };
	uint64_t rv[] = { rt->joins, rt->leaves, rt->join_errors, rt->pushes, rt->replies,
			  rt->timeouts, rt->events_in, rt->events_dropped, rt->deliveries,
			  rt->moved, rt->denied, rt->rate_limited, rt->topic_limited,
			  rt->upstream_busy };
	metrics_json_u64s(o, rk, rv, ARRAY_SIZE(rk));

	metrics_out_puts(o, "},\"latency\":{");
	metrics_json_latency(o, "push", &rt->push_latency);
	metrics_out_puts(o, ",");
	metrics_json_latency(o, "join", &rt->join_latency);
	metrics_out_puts(o, "},\"rates\":{\"in_per_s\":");
	metrics_out_jnum(o, last ? last->in_rate : 0);
	metrics_out_puts(o, ",\"out_per_s\":");
	metrics_out_jnum(o, last ? last->out_rate : 0);
	metrics_out_puts(o, "},\"cache\":");
	metrics_json_cache(o, &n);
	metrics_out_puts(o, ",\"alerts\":");
	metrics_json_alert_names(m, o);
	metrics_out_puts(o, "}");
}

/* ---- METRICS ------------------------------------------------------------------ */

static void metrics_prom_one(struct metrics_out *o, const char *name, enum metrics_type t,
			     const char *help, uint64_t v)
{
	metrics_prom_family(o, name, t, help);
	metrics_prom_u64(o, name, NULL, 0, v);
}

/* A counter with a direction label, in and out. */
static void metrics_prom_inout(struct metrics_out *o, const char *name, const char *help,
			       uint64_t in, uint64_t out)
{
	struct metrics_label li = { "direction", "in" }, lo = { "direction", "out" };
	metrics_prom_family(o, name, METRICS_COUNTER, help);
	metrics_prom_u64(o, name, &li, 1, in);
	metrics_prom_u64(o, name, &lo, 1, out);
}

/* The binary pool, interned strings and hibernation. */
static void metrics_prom_pool(const struct metrics *m, struct metrics_out *o)
{
	const struct bpool_stats *b = bpool_stats();
	const struct intern_stats *is = intern_stats();
	const struct {
		const char *name;
		enum metrics_type type;
		const char *help;
		uint64_t v;
	} one[] = {
		{ "phxd_binary_pool_hits_total", METRICS_COUNTER,
		  "Buffer blocks served from the binary pool.", b->hits },
		{ "phxd_binary_pool_misses_total", METRICS_COUNTER,
		  "Buffer blocks the binary pool had to allocate.", b->misses },
		{ "phxd_binary_pool_saved_bytes_total", METRICS_COUNTER,
		  "Bytes served from the binary pool instead of malloc.", b->saved },
		{ "phxd_binary_pool_releases_total", METRICS_COUNTER,
		  "Blocks the binary pool gave back to malloc (age, limits).", b->releases },
		{ "phxd_binary_pool_bytes", METRICS_GAUGE,
		  "Free memory the binary pool keeps for reuse.", b->bytes },
		{ "phxd_binary_pool_entries", METRICS_GAUGE,
		  "Free blocks the binary pool keeps for reuse.", b->entries },
		{ "phxd_binary_pool_in_use_bytes", METRICS_GAUGE,
		  "Pool-class blocks in use by buffers.", b->in_use_bytes },
		{ "phxd_memory_trims_total", METRICS_COUNTER,
		  "Times freed memory was given back to the system (malloc_trim).", b->trims },
		{ "phxd_interned_strings", METRICS_GAUGE,
		  "Interned strings (topics, event names) held.", is->entries },
		{ "phxd_interned_bytes", METRICS_GAUGE, "Memory of the interned strings.",
		  is->bytes },
	};
	for (size_t i = 0; i < ARRAY_SIZE(one); i++)
		metrics_prom_one(o, one[i].name, one[i].type, one[i].help, one[i].v);

	const struct {
		const char *name;
		enum metrics_type type;
		const char *help;
		uint64_t clients, ups;
	} two[] = {
		{ "phxd_hibernating", METRICS_GAUGE,
		  "Idle connections whose buffers are released.", m->ipc->hibernating,
		  m->rt->ups_hibernating },
		{ "phxd_hibernation_wakeups_total", METRICS_COUNTER,
		  "Hibernating connections woken by traffic.", m->ipc->wakeups,
		  m->rt->ups_wakeups },
		{ "phxd_hibernation_released_bytes_total", METRICS_COUNTER,
		  "Buffer memory released by hibernation.", m->ipc->hib_bytes,
		  m->rt->ups_hib_bytes },
		{ "phxd_hibernated_bytes", METRICS_GAUGE,
		  "Buffer memory released by the connections hibernating now.", m->ipc->hib_now,
		  m->rt->ups_hib_now },
	};
	struct metrics_label lc = { "owner", "clients" }, lu = { "owner", "upstreams" };
	for (size_t i = 0; i < ARRAY_SIZE(two); i++) {
		metrics_prom_family(o, two[i].name, two[i].type, two[i].help);
		metrics_prom_u64(o, two[i].name, &lc, 1, two[i].clients);
		metrics_prom_u64(o, two[i].name, &lu, 1, two[i].ups);
	}
}

static void metrics_prom_process(const struct metrics *m, struct metrics_out *o,
				 const struct metrics_now *n)
{
	struct metrics_label lv = { "version", PACKAGE_VERSION };
	metrics_prom_family(o, "phxd_build_info", METRICS_GAUGE,
			    "Always 1; the version label names the running phxd.");
	metrics_prom_u64(o, "phxd_build_info", &lv, 1, 1);
	metrics_prom_family(o, "phxd_start_time_seconds", METRICS_GAUGE,
			    "When phxd started, seconds since the Unix epoch.");
	metrics_prom_double(o, "phxd_start_time_seconds", NULL, 0,
			    (double)m->start_wall_ms / 1000.0);
	metrics_prom_family(o, "phxd_uptime_seconds", METRICS_GAUGE, "Seconds since phxd started.");
	metrics_prom_double(o, "phxd_uptime_seconds", NULL, 0,
			    (double)(util_now_ms() - m->start_ms) / 1000.0);
	metrics_prom_one(o, "phxd_resident_memory_bytes", METRICS_GAUGE,
			 "Resident set size of the phxd process.", n->rss);
	struct metrics_label lc = { "owner", "clients" }, lu = { "owner", "upstreams" };
	metrics_prom_family(o, "phxd_buffer_bytes", METRICS_GAUGE,
			    "Memory allocated for connection buffers.");
	metrics_prom_u64(o, "phxd_buffer_bytes", &lc, 1, n->client_buf_bytes);
	metrics_prom_u64(o, "phxd_buffer_bytes", &lu, 1, n->up_buf_bytes);
	metrics_prom_pool(m, o);
}

static void metrics_prom_clients(const struct metrics *m, struct metrics_out *o,
				 const struct metrics_now *n)
{
	const struct ipc_server *s = m->ipc;
	metrics_prom_one(o, "phxd_clients", METRICS_GAUGE, "Local clients connected now.",
			 n->clients);
	metrics_prom_one(o, "phxd_client_connections_total", METRICS_COUNTER,
			 "Local clients accepted.", s->accepted);
	metrics_prom_one(o, "phxd_client_refused_total", METRICS_COUNTER,
			 "Local clients refused (max_clients or no memory).", s->refused);
	metrics_prom_inout(o, "phxd_client_lines_total",
			   "Lines read from (in) and written to (out) local clients.",
			   s->lines_in, s->lines_out);
	metrics_prom_family(o, "phxd_client_bad_lines_total", METRICS_COUNTER,
			    "Client lines answered with an error before reaching the router, "
			    "by kind of problem.");
	for (unsigned k = 0; k < IPC_BAD_KINDS; k++) {
		struct metrics_label l = { "kind", ipc_bad_names[k] };
		metrics_prom_u64(o, "phxd_client_bad_lines_total", &l, 1, s->bad_by_kind[k]);
	}
	metrics_prom_one(o, "phxd_client_queue_overflows_total", METRICS_COUNTER,
			 "Clients disconnected because their output queue was full.",
			 s->overflows);
	metrics_prom_one(o, "phxd_client_queue_bytes", METRICS_GAUGE,
			 "Bytes waiting in all client output queues.", n->queue_bytes);
	metrics_prom_one(o, "phxd_client_queue_max_bytes", METRICS_GAUGE,
			 "Bytes waiting in the deepest client output queue.", n->queue_max);
}

/* One labelled sample per endpoint: get(ep) picks the value. */
static void metrics_prom_per_ep(const struct router *rt, struct metrics_out *o,
				const char *name, enum metrics_type t, const char *help,
				uint64_t (*get)(const struct endpoint *ep))
{
	metrics_prom_family(o, name, t, help);
	for (size_t i = 0; i < rt->neps; i++) {
		struct metrics_label l = { "endpoint", rt->eps[i]->conf->name };
		metrics_prom_u64(o, name, &l, 1, get(rt->eps[i]));
	}
}

#define METRICS_EP_SUM(fname, field) \
	static uint64_t fname(const struct endpoint *ep) \
	{ \
		uint64_t v = 0; \
		for (unsigned k = 0; ep->slots && k < ep->nslots; k++) \
			v += ep->slots[k].up.field; \
		return v; \
	}
METRICS_EP_SUM(metrics_ep_connects, connects)
METRICS_EP_SUM(metrics_ep_disconnects, disconnects)
#undef METRICS_EP_SUM

/* Opens of a pool slot after its first: every connection it made again
 * after a loss, a failed attempt or an idle close. */
static uint64_t metrics_ep_reconnects(const struct endpoint *ep)
{
	uint64_t v = 0;
	for (unsigned k = 0; ep->slots && k < ep->nslots; k++)
		v += ep->slots[k].up.connects > 1 ? ep->slots[k].up.connects - 1 : 0;
	return v;
}

enum metrics_inout { METRICS_FRAMES, METRICS_WIRE, METRICS_PAYLOAD };

static void metrics_up_inout(const struct up_conn *up, enum metrics_inout what,
			     uint64_t *in, uint64_t *out)
{
	switch (what) {
	case METRICS_FRAMES:
		*in += up->frames_in;
		*out += up->frames_out;
		break;
	case METRICS_WIRE:
		*in += up->bytes_in;
		*out += up->bytes_out;
		break;
	case METRICS_PAYLOAD:
		*in += up->payload_in;
		*out += up->payload_out;
		break;
	}
}

static void metrics_prom_ep_inout(const struct router *rt, struct metrics_out *o,
				  const char *name, const char *help, enum metrics_inout what)
{
	metrics_prom_family(o, name, METRICS_COUNTER, help);
	for (size_t i = 0; i < rt->neps; i++) {
		const struct endpoint *ep = rt->eps[i];
		uint64_t in = 0, out = 0;
		for (unsigned k = 0; ep->slots && k < ep->nslots; k++)
			metrics_up_inout(&ep->slots[k].up, what, &in, &out);
		struct metrics_label l[2] = { { "endpoint", ep->conf->name }, { "direction", "in" } };
		metrics_prom_u64(o, name, l, 2, in);
		l[1].value = "out";
		metrics_prom_u64(o, name, l, 2, out);
	}
}

static void metrics_prom_upstreams(const struct router *rt, struct metrics_out *o)
{
	metrics_prom_family(o, "phxd_upstreams", METRICS_GAUGE,
			    "Upstream connections of the pool by state.");
	for (size_t i = 0; i < rt->neps; i++) {
		const struct endpoint *ep = rt->eps[i];
		unsigned st[METRICS_UP_STATES] = { 0 };
		for (unsigned k = 0; ep->slots && k < ep->nslots; k++)
			if ((unsigned)ep->slots[k].up.state < METRICS_UP_STATES)
				st[ep->slots[k].up.state]++;
		for (unsigned s = 0; s < METRICS_UP_STATES; s++) {
			struct metrics_label l[2] = { { "endpoint", ep->conf->name },
						      { "state", metrics_up_names[s] } };
			metrics_prom_u64(o, "phxd_upstreams", l, 2, st[s]);
		}
	}
	metrics_prom_per_ep(rt, o, "phxd_upstream_connects_total", METRICS_COUNTER,
			    "Upstream connections that opened (WebSocket upgrade done).",
			    metrics_ep_connects);
	metrics_prom_per_ep(rt, o, "phxd_upstream_disconnects_total", METRICS_COUNTER,
			    "Upstream connections lost or closed, and failed attempts.",
			    metrics_ep_disconnects);
	metrics_prom_per_ep(rt, o, "phxd_upstream_reconnects_total", METRICS_COUNTER,
			    "Upstream connections opened again by a pool slot that had been open "
			    "before (after a loss, a failed attempt or an idle close).",
			    metrics_ep_reconnects);
	metrics_prom_ep_inout(rt, o, "phxd_upstream_frames_total",
			      "WebSocket messages from (in) and to (out) upstreams.", METRICS_FRAMES);
	metrics_prom_ep_inout(rt, o, "phxd_upstream_bytes_total",
			      "Bytes read from (in) and written to (out) upstream sockets "
			      "(TLS and WebSocket framing included).", METRICS_WIRE);
	metrics_prom_ep_inout(rt, o, "phxd_upstream_payload_bytes_total",
			      "Bytes of WebSocket messages from (in) and to (out) upstreams, "
			      "uncompressed.", METRICS_PAYLOAD);
}

static void metrics_prom_channels(const struct router *rt, struct metrics_out *o)
{
	uint64_t subs = 0;
	metrics_prom_family(o, "phxd_channels", METRICS_GAUGE, "Upstream channels by state.");
	for (size_t i = 0; i < rt->neps; i++) {
		size_t st[METRICS_CHAN_STATES] = { 0 };
		const struct chan *ch;
		for (size_t j = 0; (ch = hmap_next(&rt->eps[i]->chans, &j));) {
			if ((unsigned)ch->state < METRICS_CHAN_STATES)
				st[ch->state]++;
			subs += ch->nsubs;
		}
		for (unsigned s = 0; s < METRICS_CHAN_STATES; s++) {
			struct metrics_label l[2] = { { "endpoint", rt->eps[i]->conf->name },
						      { "state", metrics_chan_names[s] } };
			metrics_prom_u64(o, "phxd_channels", l, 2, st[s]);
		}
	}
	metrics_prom_one(o, "phxd_channel_subscribers", METRICS_GAUGE,
			 "Client subscriptions to channels.", subs);
}

static void metrics_prom_router(const struct router *rt, struct metrics_out *o)
{
	const struct {
		const char *name, *help;
		uint64_t v;
	} c[] = {
		{ "phxd_joins_total", "JOIN commands that asked for a topic.", rt->joins },
		{ "phxd_leaves_total", "LEAVE commands that left a topic.", rt->leaves },
		{ "phxd_join_errors_total", "Joins the server refused or that failed.",
		  rt->join_errors },
		{ "phxd_pushes_total", "PUSH and BPUSH commands accepted.", rt->pushes },
		{ "phxd_push_replies_total", "Server replies to pushes.", rt->replies },
		{ "phxd_push_timeouts_total", "Pushes and joins that got no reply in time.",
		  rt->timeouts },
		{ "phxd_events_total", "Messages from upstreams on joined topics.", rt->events_in },
		{ "phxd_event_deliveries_total", "Event lines queued to clients.", rt->deliveries },
		{ "phxd_events_dropped_total", "Upstream messages for topics nobody joined.",
		  rt->events_dropped },
		{ "phxd_channel_moves_total", "Channels moved to another upstream of the pool.",
		  rt->moved },
		{ "phxd_access_denied_total", "Commands refused by the [access] rules.",
		  rt->denied },
		{ "phxd_push_rate_limited_total", "Pushes refused by push_rate.", rt->rate_limited },
		{ "phxd_topic_limit_total", "JOINs refused by max_topics_per_client.",
		  rt->topic_limited },
		{ "phxd_push_upstream_busy_total",
		  "Pushes refused: upstream_queue_max bytes waited for the server.",
		  rt->upstream_busy },
	};
	for (size_t i = 0; i < ARRAY_SIZE(c); i++)
		metrics_prom_one(o, c[i].name, METRICS_COUNTER, c[i].help, c[i].v);
	metrics_prom_hist(o, "phxd_push_duration_seconds",
			  "Time from a push sent upstream to its reply.", &rt->push_latency);
	metrics_prom_hist(o, "phxd_join_duration_seconds",
			  "Time from phx_join sent upstream to its reply.", &rt->join_latency);
}

static void metrics_prom_cache(struct metrics_out *o, const struct metrics_now *n)
{
	const struct route_cache_stats *c = &n->cache;
	if (!n->have_cache)
		return;
	metrics_prom_one(o, "phxd_route_cache_hits_total", METRICS_COUNTER,
			 "Route cache lookups that found the topic.", c->hits);
	metrics_prom_one(o, "phxd_route_cache_misses_total", METRICS_COUNTER,
			 "Route cache lookups that did not.", c->misses);
	metrics_prom_one(o, "phxd_route_cache_inserts_total", METRICS_COUNTER,
			 "Routes added to the cache.", c->inserts);
	metrics_prom_one(o, "phxd_route_cache_updates_total", METRICS_COUNTER,
			 "Routes changed in place.", c->updates);
	metrics_prom_one(o, "phxd_route_cache_deletes_total", METRICS_COUNTER,
			 "Routes removed by a delete.", c->deletes);
	metrics_prom_one(o, "phxd_route_cache_evictions_total", METRICS_COUNTER,
			 "Routes evicted from the full cache.", c->evictions);
	metrics_prom_one(o, "phxd_route_cache_expirations_total", METRICS_COUNTER,
			 "Routes expired after route_cache_ttl.", c->expirations);
	metrics_prom_one(o, "phxd_route_cache_entries", METRICS_GAUGE,
			 "Routes in the cache.", c->entries);
	metrics_prom_one(o, "phxd_route_cache_capacity", METRICS_GAUGE,
			 "Routes the cache holds at most.", c->capacity);
}

static void metrics_prom_alerts(const struct metrics *m, struct metrics_out *o)
{
	metrics_prom_family(o, "phxd_alert_active", METRICS_GAUGE,
			    "1 while the alert fires (see ALERTS on the control socket).");
	for (unsigned i = 0; i < METRICS_ALERT_COUNT; i++) {
		struct metrics_label l = { "alert", metrics_alert_names[i] };
		metrics_prom_u64(o, "phxd_alert_active", &l, 1, (uint64_t)m->alerts[i].active);
	}
}

void metrics_fmt_prom(const struct metrics *m, struct metrics_out *o)
{
	struct metrics_now n;
	metrics_collect(m, &n, 0);
	metrics_prom_process(m, o, &n);
	metrics_prom_clients(m, o, &n);
	metrics_prom_upstreams(m->rt, o);
	metrics_prom_channels(m->rt, o);
	metrics_prom_router(m->rt, o);
	metrics_prom_cache(o, &n);
	metrics_prom_alerts(m, o);
}

/* ---- HISTORY, ALERTS ---------------------------------------------------------- */

static void metrics_json_sample(struct metrics_out *o, const struct metrics_sample *s)
{
	metrics_out_puts(o, "{\"t\":");
	metrics_out_u64(o, s->wall_ms);
	static const char *const k[] = { "rss_bytes", "clients", "upstreams_open", "channels",
					 "queue_max_bytes", "push_count", "push_timeouts" };
	uint64_t v[] = { s->rss, s->clients, s->ups_open, s->channels, s->queue_max,
			 s->push_count, s->push_timeouts };
	metrics_out_puts(o, ",");
	metrics_json_u64s(o, k, v, ARRAY_SIZE(k));
	metrics_out_puts(o, ",\"in_per_s\":");
	metrics_out_jnum(o, s->in_rate);
	metrics_out_puts(o, ",\"out_per_s\":");
	metrics_out_jnum(o, s->out_rate);
	metrics_out_puts(o, ",\"push_p50_ms\":");
	metrics_out_jnum(o, s->push_p50_us / 1000.0);
	metrics_out_puts(o, ",\"push_p99_ms\":");
	metrics_out_jnum(o, s->push_p99_us / 1000.0);
	metrics_out_puts(o, ",\"cache_hit_rate\":");
	if (s->cache_hit_pct < 0)
		metrics_out_puts(o, "null");
	else
		metrics_out_u64(o, (uint64_t)s->cache_hit_pct);
	metrics_out_puts(o, ",\"alerts\":[");
	int first = 1;
	for (unsigned i = 0; i < METRICS_ALERT_COUNT; i++) {
		if (!(s->alerts & (1u << i)))
			continue;
		metrics_out_printf(o, "%s\"%s\"", first ? "" : ",", metrics_alert_names[i]);
		first = 0;
	}
	metrics_out_puts(o, "]}");
}

void metrics_fmt_history(const struct metrics *m, struct metrics_out *o, size_t n)
{
	const struct metrics_ring *r = &m->ring;
	if (n == 0 || n > r->n)
		n = r->n;
	metrics_out_printf(o, "{\"interval_ms\":%u,\"size\":%zu,\"count\":%zu,\"samples\":[",
			   m->conf->metrics_interval_ms, r->cap, n);
	for (size_t age = n; age-- > 0;) {
		metrics_json_sample(o, metrics_ring_get(r, age));
		if (age)
			metrics_out_puts(o, ",");
	}
	metrics_out_puts(o, "]}");
}

static const char *metrics_alert_unit(enum metrics_alert_id id)
{
	switch (id) {
	case METRICS_ALERT_MEMORY: return "bytes";
	case METRICS_ALERT_CACHE: return "percent";
	case METRICS_ALERT_QUEUE: return "bytes";
	case METRICS_ALERT_RESPONSE: return "ms";
	default: return "";
	}
}

void metrics_fmt_alerts(const struct metrics *m, struct metrics_out *o)
{
	metrics_out_puts(o, "{\"active\":");
	metrics_json_alert_names(m, o);
	metrics_out_puts(o, ",\"alerts\":[");
	for (unsigned i = 0; i < METRICS_ALERT_COUNT; i++) {
		const struct metrics_alert *a = &m->alerts[i];
		const struct metrics_rule *r = &m->rules[i];
		metrics_out_printf(o, "%s{\"name\":\"%s\",\"state\":\"%s\",\"unit\":\"%s\","
				   "\"threshold\":", i ? "," : "", metrics_alert_names[i],
				   r->off ? "off" : a->active ? "firing" : "ok",
				   metrics_alert_unit(i));
		metrics_out_jnum(o, r->raise_at);
		metrics_out_puts(o, ",\"clear_at\":");
		metrics_out_jnum(o, r->clear_at);
		metrics_out_puts(o, ",\"value\":");
		if (a->measured)
			metrics_out_jnum(o, a->value);
		else
			metrics_out_puts(o, "null");
		metrics_out_printf(o, ",\"measured_now\":%s,\"stale\":%s", a->have ? "true" : "false",
				   a->stale ? "true" : "false");
		if (i == METRICS_ALERT_RESPONSE)
			metrics_out_printf(o, ",\"timed_out\":%s", a->timed_out ? "true" : "false");
		metrics_out_printf(o, ",\"samples\":%u", r->samples);
		metrics_out_puts(o, ",\"since\":");
		if (a->since_ms)
			metrics_out_u64(o, a->since_ms);
		else
			metrics_out_puts(o, "null");
		metrics_out_puts(o, ",\"raised\":");
		metrics_out_u64(o, a->raised);
		metrics_out_puts(o, "}");
	}
	metrics_out_puts(o, "]}");
}

/* ---- REPORT ------------------------------------------------------------------------ */

static void metrics_human_bytes(double v, char *out, size_t n)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	unsigned u = 0;
	while (v >= 1024 && u + 1 < ARRAY_SIZE(units)) {
		v /= 1024;
		u++;
	}
	snprintf(out, n, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

static void metrics_human_duration(uint64_t ms, char *out, size_t n)
{
	uint64_t s = ms / 1000;
	if (s >= 86400)
		snprintf(out, n, "%llud %02lluh %02llum", (unsigned long long)(s / 86400),
			 (unsigned long long)(s % 86400 / 3600), (unsigned long long)(s % 3600 / 60));
	else if (s >= 3600)
		snprintf(out, n, "%lluh %02llum %02llus", (unsigned long long)(s / 3600),
			 (unsigned long long)(s % 3600 / 60), (unsigned long long)(s % 60));
	else
		snprintf(out, n, "%llum %02llus", (unsigned long long)(s / 60),
			 (unsigned long long)(s % 60));
}

static void metrics_report_latency(struct metrics_out *o, const char *what, const struct hist *h)
{
	if (!h->total) {
		metrics_out_printf(o, "%-16s none yet\n", what);
		return;
	}
	metrics_out_printf(o, "%-16s p50 %.1f ms, p90 %.1f ms, p99 %.1f ms (%llu answered)\n", what,
			   (double)hist_quantile_us(h, 0.50) / 1000.0,
			   (double)hist_quantile_us(h, 0.90) / 1000.0,
			   (double)hist_quantile_us(h, 0.99) / 1000.0,
			   (unsigned long long)h->total);
}

static void metrics_report_rates(const struct metrics *m, struct metrics_out *o)
{
	const struct metrics_sample *s = metrics_ring_get(&m->ring, 0);
	const struct metrics_sample *b = s ? metrics_ring_back(&m->ring, s, METRICS_WINDOW_MS) : NULL;
	if (!b || s->mono_ms <= b->mono_ms) {
		metrics_out_printf(o, "%-16s not measured yet\n", "throughput");
		return;
	}
	double secs = (double)(s->mono_ms - b->mono_ms) / 1000.0;
	metrics_out_printf(o, "%-16s in %.1f msg/s (from upstreams), out %.1f msg/s (pushes), "
			   "over the last %.0f s\n", "throughput",
			   (double)(s->msgs_in - b->msgs_in) / secs,
			   (double)(s->msgs_out - b->msgs_out) / secs, secs);
}

static void metrics_report_cache(struct metrics_out *o, const struct metrics_now *n)
{
	if (!n->have_cache) {
		metrics_out_printf(o, "%-16s off\n", "route cache");
		return;
	}
	uint64_t lookups = n->cache.hits + n->cache.misses;
	metrics_out_printf(o, "%-16s %u/%u routes, ", "route cache", n->cache.entries,
			   n->cache.capacity);
	if (lookups)
		metrics_out_printf(o, "hit rate %.1f %% (%llu hits, %llu misses)\n",
				   100.0 * (double)n->cache.hits / (double)lookups,
				   (unsigned long long)n->cache.hits,
				   (unsigned long long)n->cache.misses);
	else
		metrics_out_puts(o, "no lookups yet\n");
}

#define METRICS_REPORT_TOP 5

static void metrics_report_topics(const struct metrics *m, struct metrics_out *o)
{
	size_t n;
	const struct chan **v = metrics_chans_by_traffic(m->rt, &n);
	if (!v) {
		metrics_out_printf(o, "%-16s %s\n", "top topics", n ? "(out of memory)" : "none");
		return;
	}
	metrics_out_printf(o, "%-16s by messages in+out\n", "top topics");
	for (size_t i = 0; i < n && i < METRICS_REPORT_TOP; i++) {
		char bi[32], bo[32];
		metrics_human_bytes((double)v[i]->bytes_in, bi, sizeof(bi));
		metrics_human_bytes((double)v[i]->bytes_out, bo, sizeof(bo));
		metrics_out_printf(o, "  %-30.*s in %llu (%s), out %llu (%s), %u subscriber%s\n",
				   (int)(v[i]->topic_len > 200 ? 200 : v[i]->topic_len), v[i]->topic,
				   (unsigned long long)v[i]->msgs_in, bi,
				   (unsigned long long)v[i]->msgs_out, bo, v[i]->nsubs,
				   v[i]->nsubs == 1 ? "" : "s");
	}
	free(v);
}

static void metrics_report_alerts(const struct metrics *m, struct metrics_out *o)
{
	int any = 0;
	for (unsigned i = 0; i < METRICS_ALERT_COUNT; i++) {
		const struct metrics_alert *a = &m->alerts[i];
		if (!a->active)
			continue;
		char v[48], t[48];
		metrics_alert_value(i, a->value, v, sizeof(v));
		metrics_alert_value(i, m->rules[i].raise_at, t, sizeof(t));
		unsigned long long secs = (metrics_wall_ms() - a->since_ms) / 1000;
		if (i == METRICS_ALERT_RESPONSE && a->timed_out)
			metrics_out_printf(o, "%-16s %s: pushes got no reply within %s (threshold %s), "
					   "for %llu s\n", any ? "" : "alerts", metrics_alert_names[i],
					   v, t, secs);
		else
			metrics_out_printf(o, "%-16s %s: %s is %s (threshold %s), for %llu s\n",
					   any ? "" : "alerts", metrics_alert_names[i],
					   metrics_alert_what(i), v, t, secs);
		any = 1;
	}
	if (!any)
		metrics_out_printf(o, "%-16s none\n", "alerts");
}

void metrics_fmt_report(const struct metrics *m, struct metrics_out *o)
{
	const struct router *rt = m->rt;
	const struct ipc_server *s = m->ipc;
	struct metrics_now n;
	char a[48], b[48], c[48];

	metrics_collect(m, &n, 1);
	metrics_human_duration(util_now_ms() - m->start_ms, a, sizeof(a));
	metrics_out_printf(o, "phxd %s, pid %ld, up %s\n", PACKAGE_VERSION, (long)getpid(), a);
	metrics_out_printf(o, "%-16s %u connected (%llu accepted, %llu refused, %llu dropped "
			   "for a full queue)\n", "clients", n.clients,
			   (unsigned long long)s->accepted, (unsigned long long)s->refused,
			   (unsigned long long)s->overflows);
	metrics_out_printf(o, "%-16s %u/%u open, %llu connects (%llu again), %llu disconnects\n",
			   "upstreams", n.ups_open, n.ups_total, (unsigned long long)n.up_connects,
			   (unsigned long long)n.up_reconnects,
			   (unsigned long long)n.up_disconnects);
	metrics_out_printf(o, "%-16s %zu (%zu joined, %zu joining, %zu waiting, %zu errored), "
			   "%zu subscriptions\n", "channels", n.channels, n.chan_state[2],
			   n.chan_state[1], n.chan_state[0], n.chan_state[3], n.subscribers);
	metrics_out_printf(o, "%-16s %llu joins, %llu leaves, %llu join errors, %llu pushes, "
			   "%llu timeouts, %llu events\n", "totals",
			   (unsigned long long)rt->joins, (unsigned long long)rt->leaves,
			   (unsigned long long)rt->join_errors, (unsigned long long)rt->pushes,
			   (unsigned long long)rt->timeouts, (unsigned long long)rt->events_in);
	metrics_report_rates(m, o);
	metrics_report_latency(o, "push latency", &rt->push_latency);
	metrics_report_latency(o, "join latency", &rt->join_latency);
	metrics_human_bytes((double)n.rss, a, sizeof(a));
	metrics_human_bytes((double)(n.client_buf_bytes + n.up_buf_bytes), b, sizeof(b));
	metrics_human_bytes((double)n.queue_max, c, sizeof(c));
	metrics_out_printf(o, "%-16s RSS %s, buffers %s, deepest client queue %s\n", "memory",
			   a, b, c);
	metrics_report_cache(o, &n);
	metrics_report_topics(m, o);
	metrics_report_alerts(m, o);
}
