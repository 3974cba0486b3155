/* fanout — routed messages per second through phxd.
 *
 * Starts phxsim and phxd (as the integration tests do), joins N local
 * clients to one topic (or spreads them over T topics), has phxsim flood
 * each topic with M broadcasts of about S bytes, and measures how fast the
 * events reach every client, with phxd's and phxsim's CPU time.
 *
 *   bench/fanout [--subs N] [--topics T] [--count M] [--size S] [--json]
 *                [--mallocs SO --mcount FILE]
 *
 * --json prints one JSON record (bench/run collects them) instead of a
 * Markdown table row.  With --mallocs, phxd runs with malloc_count.so
 * preloaded and the record has its heap allocations per delivered event.
 * RLIMIT_NOFILE is raised to its hard limit (1,000 clients need it).
 * Needs PHXD_BIN and PHXSIM_BIN (or ./phxd and ./tests/phxsim/phxsim).
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
#include "tests/it_util.h"

struct opts {
	int subs, topics, count, size, json;
	const char *so, *mfile;
};

struct result {
	double secs, cpu_d, cpu_sim, cpu_me, allocs;
};

/* Sends a control command to phxsim without waiting for its answer. */
static int ctl_send(const struct it_env *e, const char *cmd)
{
	int fd = bu_unix_connect(e->ctl);

	if (fd < 0 || write(fd, cmd, strlen(cmd)) != (ssize_t)strlen(cmd))
		bu_die("fanout: phxsim control %s: %s", e->ctl, strerror(errno));
	return fd;
}

/* Connects and JOINs the clients, round robin over the topics. */
static struct it_client **join_all(struct it_env *env, const struct opts *o)
{
	struct it_client **c = calloc((size_t)o->subs, sizeof(*c));

	if (!c)
		bu_die("fanout: out of memory");
	for (int i = 0; i < o->subs; i++) {
		c[i] = it_connect(env);
		it_send(c[i], "JOIN bench:%d", i % o->topics);
		const char *l = it_line(c[i], IT_TIMEOUT_MS);
		if (!l || strncmp(l, "OK JOIN", 7) != 0)
			bu_die("fanout: join failed: %s", l ? l : "(nothing)");
	}
	return c;
}

/* Reads every client until each has count lines. */
static void read_all(struct it_client **c, const struct opts *o, double deadline)
{
	static char buf[1 << 16];
	long *got = calloc((size_t)o->subs, sizeof(*got));
	int ep = epoll_create1(EPOLL_CLOEXEC), done = 0;

	if (!got || ep < 0)
		bu_die("fanout: out of memory");
	for (int i = 0; i < o->subs; i++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)i };
		epoll_ctl(ep, EPOLL_CTL_ADD, c[i]->fd, &ev);
	}
	while (done < o->subs) {
		struct epoll_event evs[256];
		if (bu_now() > deadline)
			bu_die("fanout: timed out (%d of %d clients done)", done, o->subs);
		int k = epoll_wait(ep, evs, 256, 1000);
		for (int j = 0; j < k; j++) {
			uint32_t i = evs[j].data.u32;
			ssize_t r = read(c[i]->fd, buf, sizeof(buf));
			if (r <= 0)
				bu_die("fanout: client %u closed after %ld events", i, got[i]);
			for (const char *p = buf; (p = memchr(p, '\n', (size_t)(buf + r - p))); p++)
				got[i]++;
			if (got[i] >= o->count) {
				done++;
				epoll_ctl(ep, EPOLL_CTL_DEL, c[i]->fd, NULL);
			}
		}
	}
	close(ep);
	free(got);
}

static void measure(struct it_env *env, struct it_client **c, const struct opts *o,
		    struct result *res)
{
	const volatile struct bu_mcount *mc = o->mfile ? bu_mcount_open(o->mfile) : NULL;
	int *ctl = calloc((size_t)o->topics, sizeof(*ctl));

	if (o->mfile && !mc)
		bu_die("fanout: no malloc counters in %s", o->mfile);
	if (!ctl)
		bu_die("fanout: out of memory");
	double cpu_d0 = bu_cpu_s(env->phxd), cpu_s0 = bu_cpu_s(env->sim);
	double cpu_me0 = bu_self_cpu_s();
	uint64_t a0 = mc ? bu_mcount_allocs(mc) : 0;
	double t0 = bu_now();
	for (int t = 0; t < o->topics; t++) {
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "FLOOD bench:%d ev %d %d\n", t, o->count, o->size);
		ctl[t] = ctl_send(env, cmd);
	}
	read_all(c, o, t0 + 600);
	res->secs = bu_now() - t0;
	res->cpu_d = bu_cpu_s(env->phxd) - cpu_d0;
	res->cpu_sim = bu_cpu_s(env->sim) - cpu_s0;
	res->cpu_me = bu_self_cpu_s() - cpu_me0;
	res->allocs = mc ? (double)(bu_mcount_allocs(mc) - a0) : -1;
	for (int t = 0; t < o->topics; t++)
		close(ctl[t]);
	free(ctl);
}

static void report(const struct opts *o, const struct result *r)
{
	double delivered = (double)o->subs * o->count;
	char kase[32];

	if (!o->json) {
		printf("| %d | %d | %d | %d | %.2f | %.0f | %.0f | %.2f | %.0f%% |\n", o->subs,
		       o->topics, o->count, o->size, r->secs, delivered / r->secs,
		       o->count / r->secs, r->cpu_d * 1e6 / delivered, 100 * r->cpu_sim / r->secs);
		return;
	}
	if (o->topics == 1)
		snprintf(kase, sizeof(kase), "s%d", o->subs);
	else
		snprintf(kase, sizeof(kase), "s%d-t%d", o->subs, o->topics);
	/* counted runs are slower: a scenario of their own */
	if (r->allocs >= 0)
		snprintf(kase, sizeof(kase), "event");
	bu_rec_begin(r->allocs >= 0 ? "allocs" : "fanout", "phxd", kase);
	bu_rec_num("subs", o->subs);
	bu_rec_num("topics", o->topics);
	bu_rec_num("count", o->count);
	bu_rec_num("size", o->size);
	bu_rec_num("seconds", r->secs);
	bu_rec_num("delivered_per_s", delivered / r->secs);
	bu_rec_num("per_sub_per_s", o->count / r->secs);
	bu_rec_num("phxd_cpu_s", r->cpu_d);
	bu_rec_num("phxd_cpu_us_per_msg", r->cpu_d * 1e6 / delivered);
	bu_rec_num("phxd_cpu_share", r->cpu_d / r->secs);
	bu_rec_num("server_cpu_share", r->cpu_sim / r->secs);
	bu_rec_num("client_cpu_share", r->cpu_me / r->secs);
	if (r->allocs >= 0)
		bu_rec_num("allocs_per_msg", r->allocs / delivered);
	bu_rec_end();
}

static void usage(void)
{
	fprintf(stderr, "usage: fanout [--subs N] [--topics T] [--count M] [--size S] [--json] "
			"[--mallocs SO --mcount FILE]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct opts o = { .subs = 1, .topics = 1, .count = 100000, .size = 200 };
	int k;
	static const struct option lopts[] = {
		{ "subs", required_argument, NULL, 'n' },
		{ "topics", required_argument, NULL, 't' },
		{ "count", required_argument, NULL, 'm' },
		{ "size", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "mallocs", required_argument, NULL, 'a' },
		{ "mcount", required_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 },
	};

	while ((k = getopt_long(argc, argv, "n:t:m:s:ja:f:", lopts, NULL)) != -1) {
		switch (k) {
		case 'n': o.subs = atoi(optarg); break;
		case 't': o.topics = atoi(optarg); break;
		case 'm': o.count = atoi(optarg); break;
		case 's': o.size = atoi(optarg); break;
		case 'j': o.json = 1; break;
		case 'a': o.so = optarg; break;
		case 'f': o.mfile = optarg; break;
		default: usage();
		}
	}
	if (o.subs < 1 || o.topics < 1 || o.topics > o.subs || o.count < 1 || o.size < 16 ||
	    !o.so != !o.mfile) {
		fprintf(stderr, "fanout: need subs >= topics >= 1, count >= 1, size >= 16\n");
		usage();
	}
	if (bu_raise_nofile() < o.subs + 64)
		bu_die("fanout: %d clients need more descriptors (ulimit -n)", o.subs);
	if (o.so)
		bu_mcount_wrap(o.so, o.mfile);

	struct it_env env;
	struct result res;
	/* queues large enough that the bench measures throughput, not drops */
	it_env_start(&env, NULL, "client_queue_max = 256M\nmax_clients = 100000\n",
		     "pool_size = 4\n");
	struct it_client **c = join_all(&env, &o);
	measure(&env, c, &o, &res);
	report(&o, &res);
	for (int i = 0; i < o.subs; i++)
		it_close(c[i]);
	it_env_stop(&env);
	free(c);
	return 0;
}
