/* topics — many topics over the upstream pool, one subscriber each, with
 * mixed traffic.
 *
 * Starts phxsim (--max-channels 200, Phoenix's limit raised as a server
 * operator would) and phxd with pool_size 64 and max_channels_per_upstream
 * 200 (room for 12,800 topics).  N local clients each JOIN T/N topics of
 * their own in one batch line, all at once: the join phase is timed.  Then
 * the mixed phase: phxsim BROADCASTs B events, each to a topic drawn at
 * random (pipelined on one control connection, a window of W), while P of
 * the clients push "echo" round trips in a closed loop; it ends when every
 * broadcast has reached its one subscriber.  Reports joins per second, the
 * upstreams used, phxd's RSS with every topic joined, events and pushes per
 * second, push latency under that load, phxd's CPU per message and the
 * CPU shares of phxd, phxsim and this program.
 *
 *   bench/topics [--clients N] [--topics T] [--broadcasts B] [--pushers P]
 *                [--size S] [--window W]
 *
 * Needs PHXD_BIN and PHXSIM_BIN.  One JSON record on stdout.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench/bench_util.h"
#include "buf.h"
#include "tests/it_util.h"

#define CTL_TAG UINT32_MAX     /* epoll data of the control connection */

struct cl {
	int fd;
	unsigned first;         /* its topics: first .. first + per - 1 */
	unsigned joins_left;
	int pushing;            /* a pusher: one push in flight at a time */
	double t_sent;
	size_t len;
	char buf[8192];
};

struct opts {
	int clients, topics, broadcasts, pushers, size, window;
};

static struct {
	struct opts o;
	struct it_env env;
	struct cl *c;
	int ep, ctl;
	int per;                /* topics per client */
	int joined_clients;
	long events, pushes, bcast_sent, bcast_acked;
	int mixed;              /* in the mixed phase */
	char *payload;
	size_t plen;
	struct bu_lat lat;
	struct buf cout;        /* control lines not written yet */
	uint64_t rng;
} R;

static uint32_t rnd(void)
{
	R.rng ^= R.rng << 13;
	R.rng ^= R.rng >> 7;
	R.rng ^= R.rng << 17;
	return (uint32_t)(R.rng >> 32);
}

static void push_next(struct cl *c)
{
	char line[128 + 65536];
	int n = snprintf(line, sizeof(line), "PUSH t:%u echo %s\n", c->first, R.payload);

	c->t_sent = bu_now();
	bu_send_all(c->fd, line, (size_t)n);
}

static void on_line(struct cl *c, const char *l, size_t n)
{
	if (n >= 6 && memcmp(l, "EVENT ", 6) == 0) {
		R.events++;
	} else if (n >= 8 && memcmp(l, "OK JOIN ", 8) == 0) {
		if (--c->joins_left == 0)
			R.joined_clients++;
	} else if (n >= 8 && memcmp(l, "OK PUSH ", 8) == 0) {
		bu_lat_add(&R.lat, (bu_now() - c->t_sent) * 1e6);
		R.pushes++;
		if (R.mixed)
			push_next(c);
		else
			c->pushing = 0;
	} else {
		bu_die("topics: unexpected line '%.*s'", (int)(n > 160 ? 160 : n), l);
	}
}

static void line_cb(void *arg, const char *l, size_t n)
{
	on_line(arg, l, n);
}

static void client_read(struct cl *c)
{
	bu_read_lines(c->fd, c->buf, sizeof(c->buf), &c->len, "topics", line_cb, c);
}

/* Queues control lines while the window allows, writes what fits. */
static void ctl_pump(void)
{
	while (R.bcast_sent < R.o.broadcasts && R.bcast_sent - R.bcast_acked < R.o.window) {
		if (buf_printf(&R.cout, "BROADCAST t:%u ev %s\n", rnd() % (unsigned)R.o.topics,
			       R.payload) < 0)
			bu_die("topics: out of memory");
		R.bcast_sent++;
	}
	while (buf_len(&R.cout)) {
		ssize_t w = send(R.ctl, buf_rptr(&R.cout), buf_len(&R.cout), MSG_NOSIGNAL);
		if (w < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		if (w <= 0)
			bu_die("topics: control: %s", strerror(errno));
		buf_consume(&R.cout, (size_t)w);
	}
	struct epoll_event ev = { .events = EPOLLIN | (buf_len(&R.cout) ? EPOLLOUT : 0),
				  .data.u32 = CTL_TAG };
	epoll_ctl(R.ep, EPOLL_CTL_MOD, R.ctl, &ev);
}

static void ctl_read(void)
{
	char b[16384];
	ssize_t r = read(R.ctl, b, sizeof(b));

	if (r < 0 && errno == EAGAIN)
		return;
	if (r <= 0)
		bu_die("topics: phxsim control closed");
	for (ssize_t i = 0; i < r; i++) {
		if (b[i] == 'E' && (i == 0 || b[i - 1] == '\n'))
			bu_die("topics: phxsim refused a broadcast");
		R.bcast_acked += b[i] == '\n';
	}
}

static void poll_once(void)
{
	struct epoll_event evs[256];
	int k = epoll_wait(R.ep, evs, 256, 1000);

	for (int i = 0; i < k; i++) {
		if (evs[i].data.u32 == CTL_TAG) {
			if (evs[i].events & EPOLLIN)
				ctl_read();
			ctl_pump();
		} else {
			client_read(&R.c[evs[i].data.u32]);
		}
	}
}

static void connect_all(void)
{
	R.ep = epoll_create1(EPOLL_CLOEXEC);
	for (int i = 0; i < R.o.clients; i++) {
		struct cl *c = &R.c[i];
		c->fd = bu_unix_connect(R.env.sock);
		if (c->fd < 0)
			bu_die("topics: connect %d: %s", i, strerror(errno));
		c->first = (unsigned)(i * R.per);
		c->joins_left = (unsigned)R.per;
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)i };
		epoll_ctl(R.ep, EPOLL_CTL_ADD, c->fd, &ev);
	}
}

/* Every client joins its topics in one line; returns the seconds it took. */
static double join_all(void)
{
	struct buf line;
	double t0 = bu_now();

	buf_init(&line, 0);
	for (int i = 0; i < R.o.clients; i++) {
		buf_reset(&line);
		buf_puts(&line, "JOIN");
		for (int k = 0; k < R.per; k++)
			buf_printf(&line, " t:%u", R.c[i].first + (unsigned)k);
		buf_putc(&line, '\n');
		bu_send_all(R.c[i].fd, buf_rptr(&line), buf_len(&line));
	}
	buf_free(&line);
	while (R.joined_clients < R.o.clients) {
		if (bu_now() - t0 > 300)
			bu_die("topics: joins timed out (%d of %d clients)", R.joined_clients,
			       R.o.clients);
		poll_once();
	}
	return bu_now() - t0;
}

static int stats_field(const char *stats, const char *name)
{
	char key[64];
	const char *p;

	snprintf(key, sizeof(key), "\"%s\":", name);
	p = strstr(stats, key);
	return p ? atoi(p + strlen(key)) : -1;
}

static void mixed(double *secs, double *cpu_d, double *cpu_sim, double *cpu_me)
{
	double d0 = bu_cpu_s(R.env.phxd), s0 = bu_cpu_s(R.env.sim), m0 = bu_self_cpu_s();
	double t0 = bu_now();

	R.ctl = bu_unix_connect(R.env.ctl);
	if (R.ctl < 0)
		bu_die("topics: phxsim control: %s", strerror(errno));
	bu_nonblock(R.ctl);
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = CTL_TAG };
	epoll_ctl(R.ep, EPOLL_CTL_ADD, R.ctl, &ev);
	R.mixed = 1;
	for (int i = 0; i < R.o.pushers && i < R.o.clients; i++) {
		R.c[i].pushing = 1;
		push_next(&R.c[i]);
	}
	ctl_pump();
	while (R.events < R.o.broadcasts) {
		if (bu_now() - t0 > 600)
			bu_die("topics: mixed phase timed out (%ld of %d events)", R.events,
			       R.o.broadcasts);
		poll_once();
	}
	R.mixed = 0;
	*secs = bu_now() - t0;
	*cpu_d = bu_cpu_s(R.env.phxd) - d0;
	*cpu_sim = bu_cpu_s(R.env.sim) - s0;
	*cpu_me = bu_self_cpu_s() - m0;
	/* let the last pushes finish, so phxd stops cleanly */
	for (int busy = 1; busy && bu_now() - t0 < 620;) {
		busy = 0;
		for (int i = 0; i < R.o.pushers && i < R.o.clients; i++)
			busy |= R.c[i].pushing;
		if (busy)
			poll_once();
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: topics [--clients N] [--topics T] [--broadcasts B] "
			"[--pushers P] [--size S] [--window W]\n");
	exit(2);
}

static void parse(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "clients", required_argument, NULL, 'n' },
		{ "topics", required_argument, NULL, 't' },
		{ "broadcasts", required_argument, NULL, 'b' },
		{ "pushers", required_argument, NULL, 'p' },
		{ "size", required_argument, NULL, 's' },
		{ "window", required_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { 10000, 10000, 100000, 64, 200, 512 };
	int k;

	while ((k = getopt_long(argc, argv, "n:t:b:p:s:w:", lopts, NULL)) != -1) {
		switch (k) {
		case 'n': o.clients = atoi(optarg); break;
		case 't': o.topics = atoi(optarg); break;
		case 'b': o.broadcasts = atoi(optarg); break;
		case 'p': o.pushers = atoi(optarg); break;
		case 's': o.size = atoi(optarg); break;
		case 'w': o.window = atoi(optarg); break;
		default: usage();
		}
	}
	if (o.clients < 1 || o.topics < o.clients || o.topics % o.clients || o.topics > 12800 ||
	    o.broadcasts < 1 || o.pushers < 0 || o.size < 16 || o.size > 60000 || o.window < 1)
		bu_die("topics: need clients >= 1 dividing topics <= 12800, size 16..60000");
	R.o = o;
	R.per = o.topics / o.clients;
}

int main(int argc, char **argv)
{
	double secs, cpu_d, cpu_sim, cpu_me;

	parse(argc, argv);
	if (bu_raise_nofile() < R.o.clients + 64)
		bu_die("topics: %d clients need more descriptors (ulimit -n)", R.o.clients);
	R.rng = 0x9E3779B97F4A7C15ULL;
	R.payload = bu_payload((size_t)R.o.size);
	R.plen = strlen(R.payload);
	R.c = calloc((size_t)R.o.clients, sizeof(*R.c));
	if (!R.c)
		bu_die("topics: out of memory");
	buf_init(&R.cout, 0);
	it_env_prepare(&R.env);
	it_sim_start(&R.env, "--max-channels 200");
	it_phxd_start(&R.env, "max_clients = 100000\nclient_queue_max = 16M\n",
		      "pool_size = 64\nmax_channels_per_upstream = 200\n");
	connect_all();
	double join_s = join_all();
	const char *st = it_ctl(&R.env, "STATS");
	int ups = stats_field(st, "connections"), chans = stats_field(st, "channels");
	long rss = bu_rss_kib(R.env.phxd);
	mixed(&secs, &cpu_d, &cpu_sim, &cpu_me);
	double msgs = (double)R.events + (double)R.pushes;

	char kase[32];
	snprintf(kase, sizeof(kase), "t%d", R.o.topics);
	bu_rec_begin("topics", "phxd", kase);
	bu_rec_num("topics", R.o.topics);
	bu_rec_num("clients", R.o.clients);
	bu_rec_num("upstreams", ups);
	bu_rec_num("server_channels", chans);
	bu_rec_num("join_s", join_s);
	bu_rec_num("joins_per_s", R.o.topics / join_s);
	bu_rec_num("rss_kib", (double)rss);
	bu_rec_num("broadcasts", R.o.broadcasts);
	bu_rec_num("seconds", secs);
	bu_rec_num("events_per_s", (double)R.events / secs);
	bu_rec_num("pushes_per_s", (double)R.pushes / secs);
	bu_rec_num("msgs_per_s", msgs / secs);
	bu_rec_num("push_p50_us", bu_lat_pct(&R.lat, 50));
	bu_rec_num("push_p99_us", bu_lat_pct(&R.lat, 99));
	bu_rec_num("phxd_cpu_us_per_msg", cpu_d * 1e6 / msgs);
	bu_rec_num("phxd_cpu_share", cpu_d / secs);
	bu_rec_num("server_cpu_share", cpu_sim / secs);
	bu_rec_num("client_cpu_share", cpu_me / secs);
	bu_rec_end();

	for (int i = 0; i < R.o.clients; i++)
		close(R.c[i].fd);
	close(R.ctl);
	it_env_stop(&R.env);
	buf_free(&R.cout);
	free(R.c);
	free(R.payload);
	bu_lat_free(&R.lat);
	return 0;
}
