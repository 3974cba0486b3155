/* memory — phxd's memory with idle local clients and with idle upstreams.
 *
 *   clients:   one phxd (max_clients 100000); local clients are connected in
 *              steps (default 0, 1,000, 10,000), each says PING and reads
 *              the answer (so phxd has set it up fully), and at each step,
 *              once idle, phxd's VmRSS is read: per client = (RSS(N) -
 *              RSS(0)) / N.
 *   upstreams: for each count U (default 1, 16, 64) a fresh phxd with
 *              pool_size = pool_min = U (kept warm), no channels; RSS once
 *              phxsim sees U connections: per upstream = (RSS(U) - RSS(1)) /
 *              (U - 1).
 * With --mallocs SO, phxd runs with malloc_count.so preloaded and each
 * record also has the live heap (bytes allocated and not freed), which
 * counts bytes exactly where RSS counts pages.
 *
 * Hibernation (idle clients and upstreams giving back their buffers) is not
 * in phxd yet: the records carry hibernated_* fields as null, for the
 * report's column.
 *
 *   bench/memory [--clients 0,1000,10000] [--upstreams 1,16,64]
 *                [--mallocs SO --mcount FILE]
 *
 * Needs PHXD_BIN and PHXSIM_BIN.  One JSON record per step on stdout.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench/bench_util.h"
#include "tests/it_util.h"

#define MAX_STEPS 16
#define SETTLE_US 300000        /* after the last change, before reading RSS */

struct opts {
	long clients[MAX_STEPS];
	int nclients;
	long ups[MAX_STEPS];
	int nups;
	const char *so, *mfile;
};

static int parse_list(const char *s, long *out, int max)
{
	int n = 0;
	char *end;

	while (*s && n < max) {
		out[n++] = strtol(s, &end, 10);
		if (end == s || out[n - 1] < 0)
			return -1;
		s = *end == ',' ? end + 1 : end;
	}
	return *s ? -1 : n;
}

/* Live heap in KiB from the malloc counters, or NAN without them. */
static double heap_kib(const volatile struct bu_mcount *mc)
{
	return mc ? (double)mc->live / 1024.0 : NAN;
}

static void start_env(struct it_env *e, const struct opts *o, const char *endpoint_conf)
{
	if (o->so)
		bu_mcount_wrap(o->so, o->mfile);
	it_env_start(e, NULL, "max_clients = 100000\n", endpoint_conf);
}

/* Connects clients until there are want, each PINGed and answered. */
static void grow_to(struct it_env *e, int *fds, long *have, long want)
{
	char line[256];

	for (; *have < want; (*have)++) {
		int fd = bu_unix_connect(e->sock);
		if (fd < 0)
			bu_die("memory: connect %ld: %s", *have, strerror(errno));
		if (send(fd, "PING\n", 5, MSG_NOSIGNAL) != 5 ||
		    it_fd_line(fd, line, sizeof(line), IT_TIMEOUT_MS) < 0 ||
		    strncmp(line, "OK PING", 7) != 0)
			bu_die("memory: client %ld got no answer to PING", *have);
		fds[*have] = fd;
	}
}

static void clients_run(const struct opts *o)
{
	struct it_env env;
	long max = 0, have = 0;
	double rss0 = 0, heap0 = 0;

	for (int i = 0; i < o->nclients; i++)
		if (o->clients[i] > max)
			max = o->clients[i];
	if (bu_raise_nofile() < max + 64)
		bu_die("memory: %ld clients need more descriptors (ulimit -n)", max);
	int *fds = calloc((size_t)max + 1, sizeof(*fds));
	if (!fds)
		bu_die("memory: out of memory");
	start_env(&env, o, NULL);
	const volatile struct bu_mcount *mc = o->mfile ? bu_mcount_open(o->mfile) : NULL;
	for (int i = 0; i < o->nclients; i++) {
		long want = o->clients[i];
		grow_to(&env, fds, &have, want);
		usleep(SETTLE_US);
		double rss = (double)bu_rss_kib(env.phxd), heap = heap_kib(mc);
		if (i == 0) {
			rss0 = rss;
			heap0 = heap;
		}
		char kase[32];
		snprintf(kase, sizeof(kase), "clients-%ld", want);
		bu_rec_begin("memory", "phxd", kase);
		bu_rec_num("clients", (double)want);
		bu_rec_num("rss_kib", rss);
		bu_rec_num("heap_kib", heap);
		bu_rec_num("rss_per_client_kib", want && i ? (rss - rss0) / (double)want : NAN);
		bu_rec_num("heap_per_client_kib", want && i ? (heap - heap0) / (double)want : NAN);
		bu_rec_num("hibernated_rss_per_client_kib", NAN);
		bu_rec_end();
	}
	for (long k = 0; k < have; k++)
		close(fds[k]);
	free(fds);
	it_env_stop(&env);
}

static int wait_connections(struct it_env *e, long n)
{
	double end = bu_now() + 30;

	while (bu_now() < end) {
		const char *st = it_ctl(e, "STATS");
		const char *p = strstr(st, "\"connections\":");
		if (p && atol(p + 14) == n)
			return 1;
		usleep(50000);
	}
	return 0;
}

static void upstreams_run(const struct opts *o)
{
	double rss1 = NAN, heap1 = NAN;
	long u1 = 0;

	for (int i = 0; i < o->nups; i++) {
		struct it_env env;
		char conf[128];
		long u = o->ups[i];
		snprintf(conf, sizeof(conf), "pool_size = %ld\npool_min = %ld\n", u, u);
		start_env(&env, o, conf);
		const volatile struct bu_mcount *mc = o->mfile ? bu_mcount_open(o->mfile) : NULL;
		if (!wait_connections(&env, u))
			bu_die("memory: phxd did not open %ld upstreams", u);
		usleep(SETTLE_US);
		double rss = (double)bu_rss_kib(env.phxd), heap = heap_kib(mc);
		if (i == 0) {
			rss1 = rss;
			heap1 = heap;
			u1 = u;
		}
		char kase[32];
		snprintf(kase, sizeof(kase), "upstreams-%ld", u);
		bu_rec_begin("memory", "phxd", kase);
		bu_rec_num("upstreams", (double)u);
		bu_rec_num("rss_kib", rss);
		bu_rec_num("heap_kib", heap);
		bu_rec_num("rss_per_upstream_kib", i ? (rss - rss1) / (double)(u - u1) : NAN);
		bu_rec_num("heap_per_upstream_kib", i ? (heap - heap1) / (double)(u - u1) : NAN);
		bu_rec_num("hibernated_rss_per_upstream_kib", NAN);
		bu_rec_end();
		it_env_stop(&env);
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: memory [--clients 0,1000,10000] [--upstreams 1,16,64] "
			"[--mallocs SO --mcount FILE]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct opts o = { .clients = { 0, 1000, 10000 }, .nclients = 3,
			  .ups = { 1, 16, 64 }, .nups = 3 };
	static const struct option lopts[] = {
		{ "clients", required_argument, NULL, 'c' },
		{ "upstreams", required_argument, NULL, 'u' },
		{ "mallocs", required_argument, NULL, 'a' },
		{ "mcount", required_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 },
	};
	int k;

	while ((k = getopt_long(argc, argv, "c:u:a:f:", lopts, NULL)) != -1) {
		switch (k) {
		case 'c': o.nclients = parse_list(optarg, o.clients, MAX_STEPS); break;
		case 'u': o.nups = parse_list(optarg, o.ups, MAX_STEPS); break;
		case 'a': o.so = optarg; break;
		case 'f': o.mfile = optarg; break;
		default: usage();
		}
	}
	if (o.nclients < 0 || o.nups < 0 || !o.so != !o.mfile)
		usage();
	for (int i = 0; i < o.nups; i++)
		if (o.ups[i] < 1 || o.ups[i] > 64)
			bu_die("memory: upstreams are 1..64 (pool_size)");
	if (o.nclients)
		clients_run(&o);
	if (o.nups)
		upstreams_run(&o);
	return 0;
}
