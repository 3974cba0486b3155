/* rtt — push → reply round trips through phxd.
 *
 * Starts phxsim and phxd (as the integration tests do), connects N local
 * clients, JOINs each to its own topic, then has every client do M
 * sequential "PUSH topic echo PAYLOAD" → "OK PUSH ..." round trips, all
 * clients at once (after W unmeasured ones each).  Latency percentiles over
 * all round trips, round trips per second, phxd's CPU per round trip and
 * phxsim's CPU share.
 *
 *   bench/rtt [--clients N] [--count M] [--size S] [--warmup W]
 *             [--mallocs SO --mcount FILE]
 *
 * With --mallocs, phxd runs with malloc_count.so preloaded and the record
 * has its heap allocations per round trip.  Needs PHXD_BIN and PHXSIM_BIN
 * (or ./phxd and ./tests/phxsim/phxsim).  One JSON record on stdout.
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
#include "tests/it_util.h"

struct cl {
	int fd, idx;
	char line[160];         /* "PUSH topic echo " */
	size_t line_len;
	char buf[1 << 16];
	size_t len;
	long left, warm;
	double t_sent;
};

static struct {
	struct it_env env;
	struct cl *c;
	int n, done;
	char *out;              /* one push line */
	const char *payload;
	size_t plen;
	struct bu_lat lat;
} R;

static void push_next(struct cl *c)
{
	size_t n = c->line_len;

	memcpy(R.out, c->line, n);
	memcpy(R.out + n, R.payload, R.plen);
	n += R.plen;
	R.out[n++] = '\n';
	c->t_sent = bu_now();
	bu_send_all(c->fd, R.out, n);
}

/* One complete line from the client: the reply to its push. */
static void on_line(struct cl *c, const char *l, size_t n)
{
	if (n < 8 || memcmp(l, "OK PUSH ", 8) != 0)
		bu_die("rtt: client %d: unexpected '%.*s'", c->idx, (int)(n > 120 ? 120 : n), l);
	if (c->warm > 0) {
		c->warm--;
	} else {
		bu_lat_add(&R.lat, (bu_now() - c->t_sent) * 1e6);
		if (--c->left == 0) {
			R.done++;
			return;
		}
	}
	push_next(c);
}

static void line_cb(void *arg, const char *l, size_t n)
{
	on_line(arg, l, n);
}

static void on_readable(struct cl *c)
{
	bu_read_lines(c->fd, c->buf, sizeof(c->buf), &c->len, "rtt", line_cb, c);
}

static void usage(void)
{
	fprintf(stderr, "usage: rtt [--clients N] [--count M] [--size S] [--warmup W] "
			"[--mallocs SO --mcount FILE]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int n = 1, count = 10000, size = 200, warmup = 100, o;
	const char *so = NULL, *mfile = NULL;
	static const struct option opts[] = {
		{ "clients", required_argument, NULL, 'n' },
		{ "count", required_argument, NULL, 'm' },
		{ "size", required_argument, NULL, 's' },
		{ "warmup", required_argument, NULL, 'w' },
		{ "mallocs", required_argument, NULL, 'a' },
		{ "mcount", required_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 },
	};

	while ((o = getopt_long(argc, argv, "n:m:s:w:a:f:", opts, NULL)) != -1) {
		switch (o) {
		case 'n': n = atoi(optarg); break;
		case 'm': count = atoi(optarg); break;
		case 's': size = atoi(optarg); break;
		case 'w': warmup = atoi(optarg); break;
		case 'a': so = optarg; break;
		case 'f': mfile = optarg; break;
		default: usage();
		}
	}
	if (n < 1 || count < 1 || size < 16 || warmup < 0 || !so != !mfile)
		usage();
	bu_raise_nofile();
	if (so)
		bu_mcount_wrap(so, mfile);
	R.n = n;
	R.payload = bu_payload((size_t)size);
	R.plen = strlen(R.payload);
	R.out = malloc(R.plen + 256);
	R.c = calloc((size_t)n, sizeof(*R.c));
	if (!R.out || !R.c)
		bu_die("rtt: out of memory");
	it_env_start(&R.env, NULL, "max_clients = 100000\n", "pool_size = 4\n");
	const volatile struct bu_mcount *mc = mfile ? bu_mcount_open(mfile) : NULL;
	if (mfile && !mc)
		bu_die("rtt: no malloc counters in %s (was malloc_count.so preloaded?)", mfile);

	int ep = epoll_create1(EPOLL_CLOEXEC);
	for (int i = 0; i < n; i++) {
		struct cl *c = &R.c[i];
		struct it_client *ic = it_connect(&R.env);
		c->fd = ic->fd;
		c->idx = i;
		free(ic);       /* the descriptor is ours now */
		c->line_len = (size_t)snprintf(c->line, sizeof(c->line), "PUSH bench:rtt:%d echo ", i);
		char join[64];
		int jl = snprintf(join, sizeof(join), "JOIN bench:rtt:%d\n", i);
		bu_send_all(c->fd, join, (size_t)jl);
		char l[4096];
		if (it_fd_line(c->fd, l, sizeof(l), IT_TIMEOUT_MS) < 0 || strncmp(l, "OK JOIN", 7))
			bu_die("rtt: join failed: %s", l);
		c->left = count;
		c->warm = warmup;
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
		epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
	}

	double cpu_d0 = bu_cpu_s(R.env.phxd), cpu_s0 = bu_cpu_s(R.env.sim);
	double cpu_me0 = bu_self_cpu_s();
	uint64_t a0 = mc ? bu_mcount_allocs(mc) : 0;
	double t0 = bu_now();
	for (int i = 0; i < n; i++)
		push_next(&R.c[i]);
	while (R.done < n) {
		struct epoll_event evs[64];
		int k = epoll_wait(ep, evs, 64, 1000);
		for (int i = 0; i < k; i++)
			on_readable(evs[i].data.ptr);
		if (bu_now() - t0 > 600)
			bu_die("rtt: timed out");
	}
	double secs = bu_now() - t0;
	double total = (double)n * (count + warmup);
	double cpu_d = bu_cpu_s(R.env.phxd) - cpu_d0;

	char kase[16];
	snprintf(kase, sizeof(kase), "c%d", n);
	/* counted runs are slower: a scenario of their own */
	if (mc)
		bu_rec_begin("allocs", "phxd", "push");
	else
		bu_rec_begin("rtt", "phxd", kase);
	bu_rec_num("clients", n);
	bu_rec_num("count", count);
	bu_rec_num("size", size);
	bu_rec_num("p50_us", bu_lat_pct(&R.lat, 50));
	bu_rec_num("p90_us", bu_lat_pct(&R.lat, 90));
	bu_rec_num("p99_us", bu_lat_pct(&R.lat, 99));
	bu_rec_num("max_us", bu_lat_pct(&R.lat, 100));
	bu_rec_num("rt_per_s", total / secs);
	bu_rec_num("phxd_cpu_us_per_rt", cpu_d * 1e6 / total);
	bu_rec_num("phxd_cpu_share", cpu_d / secs);
	bu_rec_num("server_cpu_share", (bu_cpu_s(R.env.sim) - cpu_s0) / secs);
	bu_rec_num("client_cpu_share", (bu_self_cpu_s() - cpu_me0) / secs);
	if (mc)
		bu_rec_num("allocs_per_rt", (double)(bu_mcount_allocs(mc) - a0) / total);
	bu_rec_end();

	for (int i = 0; i < n; i++)
		close(R.c[i].fd);
	close(ep);
	it_env_stop(&R.env);
	free(R.c);
	free(R.out);
	free((void *)R.payload);
	bu_lat_free(&R.lat);
	return 0;
}
