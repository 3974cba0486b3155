/* memory — phxd's memory with idle local clients and with idle upstreams,
 * awake and hibernated.
 *
 * Every step runs two phxd side by side, each with its own phxsim:
 *   A (awake):      hibernation_enabled = false; with --mallocs it runs
 *                   with malloc_count.so preloaded and each record also has
 *                   its live heap (bytes allocated and not freed), which
 *                   counts bytes exactly where RSS counts pages;
 *   B (hibernated): hibernation_idle_timeout = 500ms, never under the
 *                   malloc counter or any other PHX_TEST_WRAPPER (unless
 *                   --hib-mcount asks for its heap); read once its STATS
 *                   counts every client and upstream as hibernating
 *                   (buffers released, malloc_trim done).
 *
 *   clients:   local clients are connected to both in steps (default 0,
 *              1,000, 10,000), each says PING and reads the answer (so phxd
 *              has set it up fully), and at each step, once idle, VmRSS is
 *              read: per client = (RSS(N) - RSS(0)) / N, for A and for B.
 *              Each phxd's clients are held by a child process of their own
 *              (two sets of 10,000 would pass a 20,000 descriptor limit).
 *   upstreams: for each count U (default 1, 16, 64) a fresh A and B with
 *              pool_size = pool_min = U (kept warm), no channels; RSS once
 *              phxsim sees U connections (and, for B, STATS U upstreams
 *              hibernating): per upstream = (RSS(U) - RSS(1)) / (U - 1).
 * Each record also has the free blocks phxd's binary pool keeps for reuse
 * (pool_kib, STATS binary_pool.bytes), for A and for B: what hibernation
 * releases goes there first and leaves it (to malloc, then malloc_trim)
 * past binary_pool_size / hibernation_memory_threshold or after
 * binary_max_age, so B runs with binary_max_age = 1s and is read 1.5 s
 * after everything hibernates: the steady state of an idle phxd.
 *
 *   bench/memory [--clients 0,1000,10000] [--upstreams 1,16,64]
 *                [--mallocs SO --mcount FILE [--hib-mcount FILE]]
 *
 * Needs PHXD_BIN and PHXSIM_BIN.  One JSON record per step on stdout.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench_util.h"
#include "tests/it_util.h"

#define MAX_STEPS 16
#define SETTLE_US 300000        /* after the last change, before reading RSS */
#define HIB_WAIT_S 60           /* for B's STATS to count everyone hibernating */

static const char awake_conf[] = "max_clients = 100000\nhibernation_enabled = false\n";
/* B: hibernation after 500 ms idle, and the pool's free blocks released
 * after 1 s unused: the figure is the steady state of an idle phxd (with
 * the defaults the same comes binary_max_age = 300 s later) */
static const char hib_conf[] = "max_clients = 100000\nhibernation_idle_timeout = 500ms\n"
			       "binary_max_age = 1s\nbinary_cleanup_interval = 200ms\n";

struct opts {
	long clients[MAX_STEPS];
	int nclients;
	long ups[MAX_STEPS];
	int nups;
	const char *so, *mfile, *hib_mfile;
};

/* One phxd of the pair: its processes and, for clients, the child that
 * holds its connections. */
struct side {
	struct it_env env;
	const volatile struct bu_mcount *mc;
	pid_t holder;
	int hfd;                /* socketpair to the holder */
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

/* Starts A (hib 0: PHX_TEST_WRAPPER as set, or the malloc counter) or B
 * (hib 1: no wrapper, or only the counter of --hib-mcount). */
static void side_start(struct side *s, const struct opts *o, int hib, const char *endpoint_conf)
{
	const char *mfile = hib ? o->hib_mfile : o->mfile;

	memset(s, 0, sizeof(*s));
	s->hfd = -1;
	if (!hib) {
		if (o->so)
			bu_mcount_wrap(o->so, o->mfile);
		it_env_start(&s->env, NULL, awake_conf, endpoint_conf);
	} else {
		const char *w = getenv("PHX_TEST_WRAPPER");
		char *saved = w ? strdup(w) : NULL;
		if (w && !saved)
			bu_die("memory: out of memory");
		unsetenv("PHX_TEST_WRAPPER");
		if (mfile)
			bu_mcount_wrap(o->so, mfile);
		it_env_start(&s->env, NULL, hib_conf, endpoint_conf);
		if (saved)
			setenv("PHX_TEST_WRAPPER", saved, 1);
		else
			unsetenv("PHX_TEST_WRAPPER");
		free(saved);
	}
	s->mc = mfile ? bu_mcount_open(mfile) : NULL;
}

static void side_stop(struct side *s)
{
	if (s->hfd >= 0) {
		close(s->hfd);  /* the holder closes its clients and exits */
		waitpid(s->holder, NULL, 0);
		s->hfd = -1;
	}
	it_env_stop(&s->env);
}

/* Connects clients to sock until there are want, each PINGed and answered. */
static void grow_to(const char *sock, int *fds, long *have, long want)
{
	char line[256];

	for (; *have < want; (*have)++) {
		int fd = bu_unix_connect(sock);
		if (fd < 0)
			bu_die("memory: connect %ld: %s", *have, strerror(errno));
		if (send(fd, "PING\n", 5, MSG_NOSIGNAL) != 5 ||
		    it_fd_line(fd, line, sizeof(line), IT_TIMEOUT_MS) < 0 ||
		    strncmp(line, "OK PING", 7) != 0)
			bu_die("memory: client %ld got no answer to PING", *have);
		fds[*have] = fd;
	}
}

/* The holder: reads a client count from fd, grows to it, answers with the
 * count; exits (closing every client) when fd closes. */
static void __attribute__((noreturn)) holder_main(int fd, const char *sock, long max)
{
	int *fds = calloc((size_t)max + 1, sizeof(*fds));
	long have = 0, want;

	if (!fds)
		bu_die("memory: out of memory");
	while (read(fd, &want, sizeof(want)) == (ssize_t)sizeof(want)) {
		if (want > max)
			bu_die("memory: holder asked for %ld clients", want);
		grow_to(sock, fds, &have, want);
		if (send(fd, &have, sizeof(have), MSG_NOSIGNAL) != (ssize_t)sizeof(have))
			break;
	}
	_exit(0);
}

/* other: the side whose holder may already run (its socket must not stay
 * open in this child, or that holder never sees it close). */
static void holder_start(struct side *s, const struct side *other, long max)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		bu_die("memory: socketpair: %s", strerror(errno));
	fflush(NULL);   /* the child must not write the records again */
	pid_t pid = fork();
	if (pid < 0)
		bu_die("memory: fork: %s", strerror(errno));
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(sv[0]);
		if (other && other->hfd >= 0)
			close(other->hfd);
		holder_main(sv[1], s->env.sock, max);
	}
	close(sv[1]);
	s->holder = pid;
	s->hfd = sv[0];
}

static void holder_ask(struct side *s, long want)
{
	if (send(s->hfd, &want, sizeof(want), MSG_NOSIGNAL) != (ssize_t)sizeof(want))
		bu_die("memory: holder: %s", strerror(errno));
}

static void holder_wait(struct side *s, long want)
{
	long have;

	if (read(s->hfd, &have, sizeof(have)) != (ssize_t)sizeof(have) || have != want)
		bu_die("memory: the holder of %s did not reach %ld clients", s->env.sock, want);
}

/* The number after "key": inside the object "obj": of phxd's STATS (an
 * object without nested ones); -1 when it is missing. */
static long stat_num(struct it_env *e, const char *obj, const char *key)
{
	const char *st = it_phxd_ctl(e, "STATS");
	char pat[64];

	if (!st)
		return -1;
	snprintf(pat, sizeof(pat), "\"%s\":{", obj);
	const char *o = strstr(st, pat);
	if (!o)
		return -1;
	const char *end = strchr(o + strlen(pat), '}');
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	const char *k = strstr(o, pat);
	if (!k || !end || k > end)
		return -1;
	return strtol(k + strlen(pat), NULL, 10);
}

/* The free blocks phxd's binary pool keeps for reuse, KiB (STATS). */
static double pool_kib(struct side *s)
{
	long b = stat_num(&s->env, "binary_pool", "bytes");
	return b < 0 ? NAN : (double)b / 1024.0;
}

/* Waits until B's STATS counts clients and upstreams hibernating; dies
 * after HIB_WAIT_S. */
static void wait_hibernated(struct side *s, long clients, long ups)
{
	double end = bu_now() + HIB_WAIT_S;
	long c = -1, u = -1;

	while (bu_now() < end) {
		c = stat_num(&s->env, "hibernation", "clients");
		u = stat_num(&s->env, "hibernation", "upstreams");
		if (c == clients && u == ups)
			break;
		usleep(50000);
	}
	if (c == clients && u == ups) {
		/* the pool's age release (1 s) and its malloc_trim */
		usleep(1500000);
		return;
	}
	bu_die("memory: after %d s, %ld of %ld clients and %ld of %ld upstreams hibernate",
	       HIB_WAIT_S, c, clients, u, ups);
}

/* phxsim's count of WebSocket connections reaches n; 0 after 30 s. */
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

/* One step's figures: A awake, B once everything hibernates. */
struct figs {
	double rss, heap, pool;         /* A */
	double hrss, hheap, hpool;      /* B */
};

static void measure(struct side *a, struct side *b, long clients, long ups, struct figs *f)
{
	usleep(SETTLE_US);
	f->rss = (double)bu_rss_kib(a->env.phxd);
	f->heap = heap_kib(a->mc);
	wait_hibernated(b, clients, ups);
	usleep(SETTLE_US);
	f->hrss = (double)bu_rss_kib(b->env.phxd);
	f->hheap = heap_kib(b->mc);
	f->pool = pool_kib(a);
	f->hpool = pool_kib(b);
}

/* A record of the step: its figures, and per unit ("client", "upstream")
 * their growth over the base step divided by du (NAN: no per-unit figure). */
static void record(const char *kase, const char *unit, long n, const struct figs *f,
		   const struct figs *base, double du)
{
	char key[64];
	bu_rec_begin("memory", "phxd", kase);
	snprintf(key, sizeof(key), "%ss", unit);
	bu_rec_num(key, (double)n);
	bu_rec_num("rss_kib", f->rss);
	bu_rec_num("heap_kib", f->heap);
	bu_rec_num("pool_kib", f->pool);
	bu_rec_num("hibernated_rss_kib", f->hrss);
	bu_rec_num("hibernated_heap_kib", f->hheap);
	bu_rec_num("hibernated_pool_kib", f->hpool);
	const struct {
		const char *name;
		double v, v0;
	} per[] = {
		{ "rss", f->rss, base->rss },
		{ "heap", f->heap, base->heap },
		{ "hibernated_rss", f->hrss, base->hrss },
		{ "hibernated_heap", f->hheap, base->hheap },
		{ "hibernated_pool", f->hpool, base->hpool },
	};
	for (size_t k = 0; k < sizeof(per) / sizeof(per[0]); k++) {
		snprintf(key, sizeof(key), "%s_per_%s_kib", per[k].name, unit);
		bu_rec_num(key, isnan(du) ? NAN : (per[k].v - per[k].v0) / du);
	}
	bu_rec_end();
}

static void clients_run(const struct opts *o)
{
	struct side a, b;
	struct figs f, base;
	long max = 0;

	for (int i = 0; i < o->nclients; i++)
		if (o->clients[i] > max)
			max = o->clients[i];
	if (bu_raise_nofile() < max + 64)
		bu_die("memory: %ld clients need more descriptors (ulimit -n)", max);
	side_start(&a, o, 0, NULL);
	side_start(&b, o, 1, NULL);
	/* the default pool keeps one upstream open: B's hibernates too */
	if (!wait_connections(&a.env, 1) || !wait_connections(&b.env, 1))
		bu_die("memory: phxd did not open its upstream");
	holder_start(&a, NULL, max);
	holder_start(&b, &a, max);
	for (int i = 0; i < o->nclients; i++) {
		long want = o->clients[i];
		holder_ask(&a, want);
		holder_ask(&b, want);
		holder_wait(&a, want);
		holder_wait(&b, want);
		measure(&a, &b, want, 1, &f);
		if (i == 0)
			base = f;
		char kase[32];
		snprintf(kase, sizeof(kase), "clients-%ld", want);
		record(kase, "client", want, &f, &base, want && i ? (double)want : NAN);
	}
	side_stop(&a);
	side_stop(&b);
}

static void upstreams_run(const struct opts *o)
{
	struct figs f, base;
	long u1 = 0;

	for (int i = 0; i < o->nups; i++) {
		struct side a, b;
		char conf[128];
		long u = o->ups[i];
		snprintf(conf, sizeof(conf), "pool_size = %ld\npool_min = %ld\n", u, u);
		side_start(&a, o, 0, conf);
		side_start(&b, o, 1, conf);
		if (!wait_connections(&a.env, u) || !wait_connections(&b.env, u))
			bu_die("memory: phxd did not open %ld upstreams", u);
		measure(&a, &b, 0, u, &f);
		if (i == 0) {
			base = f;
			u1 = u;
		}
		char kase[32];
		snprintf(kase, sizeof(kase), "upstreams-%ld", u);
		record(kase, "upstream", u, &f, &base, i ? (double)(u - u1) : NAN);
		side_stop(&a);
		side_stop(&b);
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: memory [--clients 0,1000,10000] [--upstreams 1,16,64] "
			"[--mallocs SO --mcount FILE [--hib-mcount FILE]]\n");
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
		{ "hib-mcount", required_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int k;

	while ((k = getopt_long(argc, argv, "c:u:a:f:h:", lopts, NULL)) != -1) {
		switch (k) {
		case 'c': o.nclients = parse_list(optarg, o.clients, MAX_STEPS); break;
		case 'u': o.nups = parse_list(optarg, o.ups, MAX_STEPS); break;
		case 'a': o.so = optarg; break;
		case 'f': o.mfile = optarg; break;
		case 'h': o.hib_mfile = optarg; break;
		default: usage();
		}
	}
	if (o.nclients < 0 || o.nups < 0 || !o.so != !o.mfile || (o.hib_mfile && !o.so))
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
