/* direct — the "direct C" baseline: C programs talking to the Phoenix server
 * themselves over WebSocket (bench/wsc), with no daemon in between.  Same
 * server (phxsim, started here on loopback), same payloads and the same
 * records as bench/rtt and bench/fanout, so bench/report can put them side
 * by side.
 *
 *   direct rtt    [--clients N] [--count M] [--size S] [--warmup W]
 *       N WebSocket connections, each joined to its own topic, each doing M
 *       sequential push("echo") → reply round trips, all at once.
 *   direct fanout [--subs N] [--count M] [--size S]
 *       N WebSocket connections joined to one topic; phxsim FLOODs M
 *       broadcasts of about S bytes; timed until every connection has all.
 *
 * Needs PHXSIM_BIN (or ./tests/phxsim/phxsim).  One JSON record on stdout.
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
#include <unistd.h>

#include "bench/bench_util.h"
#include "bench/wsc.h"
#include "daemon/phx_msg.h"
#include "tests/it_util.h"

struct peer {
	struct wsc ws;
	int idx;
	char topic[32];
	char join_ref[24];
	char ref[24];           /* the push awaiting its reply */
	int joined;
	long left;              /* round trips (rtt) or events (fanout) still to go */
	long warm;              /* rtt: unmeasured round trips first */
	double t_sent;
};

struct run {
	struct it_env env;
	int ep;
	struct peer *p;
	int n;
	int mode_fanout;
	const char *payload;
	size_t plen;
	int joined, done;
	struct bu_lat lat;
};

static struct run R;

static void push_next(struct peer *p)
{
	wsc_ref(&p->ws, p->ref);
	p->t_sent = bu_now();
	if (wsc_send(&p->ws, p->join_ref, p->ref, p->topic, "echo", R.payload, R.plen) < 0)
		bu_die("direct: send failed on connection %d", p->idx);
}

static void on_reply(struct peer *p, const struct phx_msg *m)
{
	if (!p->joined) {
		if (strcmp(m->ref, p->join_ref) != 0)
			return;
		if (strcmp(m->status, "ok") != 0)
			bu_die("direct: join of %s refused", p->topic);
		p->joined = 1;
		R.joined++;
		return;
	}
	if (strcmp(m->ref, p->ref) != 0)
		return;
	if (p->warm > 0) {
		p->warm--;
	} else {
		bu_lat_add(&R.lat, (bu_now() - p->t_sent) * 1e6);
		if (--p->left == 0) {
			R.done++;
			return;
		}
	}
	push_next(p);
}

static void on_msg(struct wsc *c, const struct phx_msg *m)
{
	struct peer *p = c->user;

	if (m->is_reply) {
		on_reply(p, m);
		return;
	}
	if (R.mode_fanout && p->left > 0 && strcmp(m->event, "ev") == 0 &&
	    --p->left == 0)
		R.done++;
}

/* Waits for events until cond() holds or deadline passes. */
static void loop_until(int (*cond)(void), double deadline)
{
	struct epoll_event evs[256];

	while (!cond()) {
		if (bu_now() > deadline)
			bu_die("direct: timed out (%d joined, %d done of %d)", R.joined, R.done,
			       R.n);
		int k = epoll_wait(R.ep, evs, 256, 1000);
		for (int i = 0; i < k; i++) {
			struct peer *p = evs[i].data.ptr;
			if (wsc_read(&p->ws) < 0 || wsc_flush(&p->ws) < 0)
				bu_die("direct: connection %d failed", p->idx);
			struct epoll_event ev = { .events = EPOLLIN, .data.ptr = p };
			if (wsc_want_write(&p->ws))
				ev.events |= EPOLLOUT;
			epoll_ctl(R.ep, EPOLL_CTL_MOD, p->ws.fd, &ev);
		}
	}
}

static int all_joined(void)
{
	return R.joined == R.n;
}

static int all_done(void)
{
	return R.done == R.n;
}

static void open_all(void)
{
	char err[256] = "";

	R.ep = epoll_create1(EPOLL_CLOEXEC);
	if (R.ep < 0)
		bu_die("direct: epoll: %s", strerror(errno));
	for (int i = 0; i < R.n; i++) {
		struct peer *p = &R.p[i];
		p->idx = i;
		if (wsc_open(&p->ws, "127.0.0.1", R.env.port, on_msg, p, err, sizeof(err)) < 0)
			bu_die("direct: connection %d: %s", i, err);
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = p };
		if (epoll_ctl(R.ep, EPOLL_CTL_ADD, p->ws.fd, &ev) < 0)
			bu_die("direct: epoll_ctl: %s", strerror(errno));
		if (R.mode_fanout)
			snprintf(p->topic, sizeof(p->topic), "bench:fan");
		else
			snprintf(p->topic, sizeof(p->topic), "bench:rtt:%d", i);
		wsc_ref(&p->ws, p->join_ref);
		if (wsc_send(&p->ws, p->join_ref, p->join_ref, p->topic, "phx_join", "{}", 2) < 0)
			bu_die("direct: join send failed");
	}
	loop_until(all_joined, bu_now() + 60);
}

static void run_rtt(int count, int warmup)
{
	double cpu_sim0, t0, cpu_me0;

	for (int i = 0; i < R.n; i++) {
		R.p[i].left = count;
		R.p[i].warm = warmup;
	}
	cpu_sim0 = bu_cpu_s(R.env.sim);
	cpu_me0 = bu_self_cpu_s();
	t0 = bu_now();
	for (int i = 0; i < R.n; i++)
		push_next(&R.p[i]);
	loop_until(all_done, t0 + 600);
	double secs = bu_now() - t0;
	char kase[16];
	snprintf(kase, sizeof(kase), "c%d", R.n);
	bu_rec_begin("rtt", "direct", kase);
	bu_rec_num("clients", R.n);
	bu_rec_num("count", count);
	bu_rec_num("size", (double)R.plen);
	bu_rec_num("p50_us", bu_lat_pct(&R.lat, 50));
	bu_rec_num("p90_us", bu_lat_pct(&R.lat, 90));
	bu_rec_num("p99_us", bu_lat_pct(&R.lat, 99));
	bu_rec_num("max_us", bu_lat_pct(&R.lat, 100));
	/* warm-up round trips are inside the time: count them too */
	bu_rec_num("rt_per_s", (double)R.n * (count + warmup) / secs);
	bu_rec_num("server_cpu_share", (bu_cpu_s(R.env.sim) - cpu_sim0) / secs);
	bu_rec_num("client_cpu_share", (bu_self_cpu_s() - cpu_me0) / secs);
	bu_rec_end();
}

static void run_fanout(int count, int size)
{
	char cmd[128], line[256];

	for (int i = 0; i < R.n; i++)
		R.p[i].left = count;
	double cpu_sim0 = bu_cpu_s(R.env.sim), cpu_me0 = bu_self_cpu_s();
	double t0 = bu_now();
	int ctl = bu_unix_connect(R.env.ctl);
	snprintf(cmd, sizeof(cmd), "FLOOD bench:fan ev %d %d\n", count, size);
	if (ctl < 0 || write(ctl, cmd, strlen(cmd)) != (ssize_t)strlen(cmd))
		bu_die("direct: phxsim control: %s", strerror(errno));
	loop_until(all_done, t0 + 600);
	double secs = bu_now() - t0;
	if (it_fd_line(ctl, line, sizeof(line), IT_TIMEOUT_MS) < 0 || strncmp(line, "OK", 2))
		bu_die("direct: FLOOD did not finish");
	close(ctl);
	double delivered = (double)R.n * count;
	char kase[16];
	snprintf(kase, sizeof(kase), "s%d", R.n);
	bu_rec_begin("fanout", "direct", kase);
	bu_rec_num("subs", R.n);
	bu_rec_num("count", count);
	bu_rec_num("size", size);
	bu_rec_num("seconds", secs);
	bu_rec_num("delivered_per_s", delivered / secs);
	bu_rec_num("per_sub_per_s", count / secs);
	bu_rec_num("server_cpu_share", (bu_cpu_s(R.env.sim) - cpu_sim0) / secs);
	bu_rec_num("client_cpu_share", (bu_self_cpu_s() - cpu_me0) / secs);
	bu_rec_end();
}

static void usage(void)
{
	fprintf(stderr, "usage: direct rtt [--clients N] [--count M] [--size S] [--warmup W]\n"
			"       direct fanout [--subs N] [--count M] [--size S]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int n = 1, count = 10000, size = 200, warmup = 100, o;
	static const struct option opts[] = {
		{ "clients", required_argument, NULL, 'n' },
		{ "subs", required_argument, NULL, 'n' },
		{ "count", required_argument, NULL, 'm' },
		{ "size", required_argument, NULL, 's' },
		{ "warmup", required_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 },
	};

	if (argc < 2)
		usage();
	if (strcmp(argv[1], "fanout") == 0)
		R.mode_fanout = 1;
	else if (strcmp(argv[1], "rtt") != 0)
		usage();
	optind = 2;
	while ((o = getopt_long(argc, argv, "n:m:s:w:", opts, NULL)) != -1) {
		switch (o) {
		case 'n': n = atoi(optarg); break;
		case 'm': count = atoi(optarg); break;
		case 's': size = atoi(optarg); break;
		case 'w': warmup = atoi(optarg); break;
		default: usage();
		}
	}
	if (n < 1 || count < 1 || size < 16 || warmup < 0)
		usage();
	bu_raise_nofile();
	it_env_prepare(&R.env);
	it_sim_start(&R.env, NULL);
	R.n = n;
	R.p = calloc((size_t)n, sizeof(*R.p));
	R.payload = bu_payload((size_t)size);
	R.plen = strlen(R.payload);
	if (!R.p)
		bu_die("direct: out of memory");
	open_all();
	if (R.mode_fanout)
		run_fanout(count, size);
	else
		run_rtt(count, warmup);
	for (int i = 0; i < n; i++)
		wsc_close(&R.p[i].ws);
	it_env_stop(&R.env);
	free(R.p);
	free((void *)R.payload);
	bu_lat_free(&R.lat);
	return 0;
}
