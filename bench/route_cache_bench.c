/* route_cache_bench — nanoseconds per route cache operation.
 *
 * For each size N: a cache of capacity N in a fresh shm segment is filled
 * with N topics ("bench:room:<i>", 12-17 bytes, joined), then timed:
 *   hit      lookups of present topics in a random order (keyed on
 *            endpoint "main" and topic, as the router looks them up);
 *   miss     lookups of absent topics;
 *   insert   puts of new topics into the full table, each evicting the
 *            least recently used entry (the new topics cycle through a pool
 *            of N + 1, so each is absent again by its next turn);
 *   scan     the same hit lookups done as a linear scan over an array of
 *            the same topics (the unindexed baseline), fewer of them.
 * Topic strings are made before timing; each figure is the best of three
 * runs.  Prints a Markdown table.
 *
 * With --snapshot: readers against a busy writer.  For each size N (10k,
 * 100k, 1M) and JOIN rate (0, 1,000/s, 50,000/s) a forked writer process
 * does, per JOIN, what the router does (a lookup, a put "joining", a put
 * "joined") on random topics of the full table, paced evenly by the clock,
 * while this process takes route_cache_snapshot()s of the segment and
 * counts how many succeed, how many were one atomic copy, and how long
 * they took.
 *
 *   route_cache_bench [ops]      (default 2,000,000 timed operations a cell)
 *   route_cache_bench --snapshot [count [entries [rate]]]
 *                                (snapshots a cell, default 5; entries: that
 *                                cell only, at rate JOINs/s, default 1,000)
 */
#include "daemon/route_cache.h"
#include "log.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

struct topics {
	char *buf;                  /* n strings of 24 bytes */
	size_t *len;
	size_t n;
};

static uint64_t rng_state = 0x853C49E6748FEA9BULL;

static uint32_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 16);
}

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int topics_make(struct topics *t, const char *prefix, size_t first, size_t n)
{
	t->buf = malloc(n * 24);
	t->len = malloc(n * sizeof(*t->len));
	t->n = n;
	if (!t->buf || !t->len)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		t->len[i] = (size_t)snprintf(t->buf + i * 24, 24, "%s%zu", prefix, first + i);
	return 0;
}

static void topics_free(struct topics *t)
{
	free(t->buf);
	free(t->len);
}

static const char *topic(const struct topics *t, size_t i)
{
	return t->buf + i * 24;
}

/* A random order of ops indices into [0, n). */
static uint32_t *order_make(size_t ops, size_t n)
{
	uint32_t *o = malloc(ops * sizeof(*o));

	if (o)
		for (size_t i = 0; i < ops; i++)
			o[i] = rng() % (uint32_t)n;
	return o;
}

static double time_lookups(struct route_cache *rc, const struct topics *t,
			   const uint32_t *order, size_t ops, uint64_t *now, int want)
{
	double t0 = now_ns();
	size_t bad = 0;

	for (size_t i = 0; i < ops; i++) {
		size_t k = order[i];
		bad += route_cache_lookup_ep(rc, "main", topic(t, k), t->len[k], ++*now, NULL) !=
		       want;
	}
	double dt = now_ns() - t0;
	if (bad) {
		fprintf(stderr, "route_cache_bench: %zu unexpected lookup results\n", bad);
		exit(1);
	}
	return dt / (double)ops;
}

static double time_inserts(struct route_cache *rc, const struct topics *fresh, size_t *next,
			   size_t ops, uint64_t *now)
{
	double t0 = now_ns();
	size_t bad = 0;

	for (size_t i = 0; i < ops; i++, (*next)++) {
		size_t k = *next % fresh->n;
		bad += route_cache_put(rc, topic(fresh, k), fresh->len[k], "main", (uint16_t)k,
				       ROUTE_STATE_JOINED, ++*now) != 1;
	}
	double dt = now_ns() - t0;
	if (bad) {
		fprintf(stderr, "route_cache_bench: %zu inserts that were not inserts\n", bad);
		exit(1);
	}
	return dt / (double)ops;
}

/* The unindexed baseline: compare against every topic until found. */
static double time_scan(const struct topics *t, const uint32_t *order, size_t ops)
{
	double t0 = now_ns();
	size_t found = 0;

	for (size_t i = 0; i < ops; i++) {
		const char *key = topic(t, order[i]);
		size_t len = t->len[order[i]];
		for (size_t j = 0; j < t->n; j++) {
			if (t->len[j] == len && memcmp(topic(t, j), key, len) == 0) {
				found++;
				break;
			}
		}
	}
	double dt = now_ns() - t0;
	if (found != ops)
		exit(1);
	return dt / (double)ops;
}

static double min3(double a, double b, double c)
{
	double m = a < b ? a : b;

	return m < c ? m : c;
}

static int bench_size(uint32_t n, size_t ops)
{
	struct route_cache_params p = { .capacity = n };
	struct topics live, absent, fresh;
	struct route_cache *rc;
	char name[64], err[256];
	double hit[3], miss[3], ins[3], scan;
	uint64_t now = 0;
	size_t next = 0, scan_ops;
	uint32_t *order, *morder;

	snprintf(name, sizeof(name), "/phxd-bench-%d", (int)getpid());
	route_cache_unlink(name);
	if (route_cache_open(&rc, name, &p, err, sizeof(err)) < 0) {
		fprintf(stderr, "route_cache_bench: %s\n", err);
		return -1;
	}
	route_cache_unlink(name);       /* the mapping stays; nothing left if killed */
	if (topics_make(&live, "bench:room:", 0, n) || topics_make(&absent, "bench:none:", 0, n) ||
	    topics_make(&fresh, "bench:new:", 0, (size_t)n + 1) || !(order = order_make(ops, n)) ||
	    !(morder = order_make(ops, n)))
		return -1;
	for (size_t i = 0; i < n; i++)
		route_cache_put(rc, topic(&live, i), live.len[i], "main", (uint16_t)i,
				ROUTE_STATE_JOINED, ++now);
	for (int r = 0; r < 3; r++) {
		hit[r] = time_lookups(rc, &live, order, ops, &now, 0);
		miss[r] = time_lookups(rc, &absent, morder, ops, &now, -ENOENT);
	}
	/* Inserts last: they replace the live topics. */
	for (int r = 0; r < 3; r++)
		ins[r] = time_inserts(rc, &fresh, &next, ops, &now);
	scan_ops = n >= 100000 ? 200 : n >= 1000 ? 20000 : ops;
	scan = time_scan(&live, order, scan_ops);

	struct route_cache_stats st;
	route_cache_stats(rc, &st);
	printf("| %9u | %9.1f | %9.1f | %15.1f | %13.1f | %7.0f× | %8.2f MB |\n", n,
	       min3(hit[0], hit[1], hit[2]), min3(miss[0], miss[1], miss[2]),
	       min3(ins[0], ins[1], ins[2]), scan, scan / min3(hit[0], hit[1], hit[2]),
	       (double)route_cache_segment_size(&p) / 1e6);
	fflush(stdout);
	if (st.entries != n || st.evictions != 3 * ops)
		fprintf(stderr, "route_cache_bench: unexpected stats at %u\n", n);
	route_cache_close(rc);
	topics_free(&live);
	topics_free(&absent);
	topics_free(&fresh);
	free(order);
	free(morder);
	return 0;
}

/* ---- --snapshot: readers against a busy writer --------------------------------- */

static volatile sig_atomic_t snap_stop;

static void snap_on_term(int sig)
{
	(void)sig;
	snap_stop = 1;
}

/* The writer: rate JOINs a second (0: none), each a lookup and two puts of a
 * random topic of live, paced by the clock until SIGTERM; then writes how
 * many it did and in how many ns to res_fd. */
static void snap_writer(struct route_cache *rc, const struct topics *live, unsigned rate,
			int res_fd)
{
	struct sigaction sa;
	struct timespec start, next, end;
	uint64_t done = 0, now = 1u << 30, out[2];
	int bad = 0;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = snap_on_term;   /* no SA_RESTART: the sleep ends */
	sigaction(SIGTERM, &sa, NULL);
	prctl(PR_SET_TIMERSLACK, 1000UL);   /* pace at 20 us, not at the 50 us default slack */
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (!snap_stop && rate) {
		double due_ns = (double)(done + 1) * 1e9 / rate;

		next.tv_sec = start.tv_sec + (time_t)(due_ns / 1e9);
		next.tv_nsec = start.tv_nsec + (long)(due_ns - (double)(time_t)(due_ns / 1e9) * 1e9);
		if (next.tv_nsec >= 1000000000L) {
			next.tv_sec++;
			next.tv_nsec -= 1000000000L;
		}
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
		if (snap_stop)
			break;
		size_t k = rng() % live->n;
		bad |= route_cache_lookup_ep(rc, "main", topic(live, k), live->len[k], ++now,
					     NULL) != 0;
		bad |= route_cache_put(rc, topic(live, k), live->len[k], "main", (uint16_t)k,
				       ROUTE_STATE_JOINING, ++now) != 0;
		bad |= route_cache_put(rc, topic(live, k), live->len[k], "main", (uint16_t)k,
				       ROUTE_STATE_JOINED, ++now) != 0;
		done++;
	}
	clock_gettime(CLOCK_MONOTONIC, &end);
	while (!snap_stop)
		pause();
	out[0] = done;
	out[1] = (uint64_t)(end.tv_sec - start.tv_sec) * 1000000000u +
		 (uint64_t)(end.tv_nsec - start.tv_nsec);
	if (write(res_fd, out, sizeof(out)) != (ssize_t)sizeof(out))
		_exit(3);
	_exit(bad ? 1 : 0);
}

static int snap_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int snap_cell(uint32_t n, unsigned rate, unsigned count)
{
	struct route_cache_params p = { .capacity = n };
	struct route_cache *rc;
	struct topics live;
	char name[64], err[256];
	unsigned ok = 0, eagain = 0, other = 0, atomic = 0;
	double ms[64], tries = 0;
	uint64_t wr[2] = { 0, 1 };
	int res[2], status;
	pid_t pid;

	if (count > ARRAY_SIZE(ms))
		count = ARRAY_SIZE(ms);
	snprintf(name, sizeof(name), "/phxd-bench-snap-%d", (int)getpid());
	route_cache_unlink(name);
	if (route_cache_open(&rc, name, &p, err, sizeof(err)) < 0) {
		fprintf(stderr, "route_cache_bench: %s\n", err);
		return -1;
	}
	if (topics_make(&live, "bench:room:", 0, n))
		return -1;
	for (size_t i = 0; i < n; i++)
		route_cache_put(rc, topic(&live, i), live.len[i], "main", (uint16_t)i,
				ROUTE_STATE_JOINED, 1 + i);
	if (pipe(res) < 0 || (pid = fork()) < 0)
		return -1;
	if (pid == 0) {
		close(res[0]);
		snap_writer(rc, &live, rate, res[1]);
	}
	close(res[1]);
	usleep(50000);
	for (unsigned i = 0; i < count; i++) {
		struct route_snapshot *s = NULL;
		double a = now_ns();
		int r = route_cache_snapshot(name, &s, err, sizeof(err));

		ms[i] = (now_ns() - a) / 1e6;
		if (r == 0) {
			ok++;
			tries += s->tries;
#ifdef ROUTE_SNAP_PER_ENTRY
			atomic += s->atomic;
#else
			atomic++;
#endif
			if (s->n != n) {
				fprintf(stderr, "route_cache_bench: snapshot of %zu entries, "
					"want %u\n", s->n, n);
				other++;
			}
			route_snapshot_free(s);
		} else if (r == -EAGAIN) {
			eagain++;
		} else {
			fprintf(stderr, "route_cache_bench: snapshot: %s\n", err);
			other++;
		}
	}
	kill(pid, SIGTERM);
	if (read(res[0], wr, sizeof(wr)) != (ssize_t)sizeof(wr) || !wr[1])
		wr[0] = 0, wr[1] = 1;
	close(res[0]);
	waitpid(pid, &status, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fprintf(stderr, "route_cache_bench: the writer failed\n");
	qsort(ms, count, sizeof(ms[0]), snap_cmp);
	printf("| %9u | %7u | %9.0f | %2u / %-2u | %6u | %6u | %7.1f | %9.1f | %9.1f |\n", n,
	       rate, (double)wr[0] * 1e9 / (double)wr[1], ok, count, eagain, atomic,
	       ok ? tries / ok : 0.0, ms[count / 2], ms[count - 1]);
	fflush(stdout);
	route_cache_close(rc);
	route_cache_unlink(name);
	topics_free(&live);
	return other ? -1 : 0;
}

/* One cell when size is given, else all of them. */
static int snap_main(unsigned count, uint32_t size, unsigned rate)
{
	static const uint32_t sizes[] = { 10000, 100000, 1000000 };
	static const unsigned rates[] = { 0, 1000, 50000 };

	fputs("| entries   | JOINs/s | achieved  | ok      | EAGAIN | atomic | tries   "
	      "| median ms | max ms    |\n"
	      "|----------:|--------:|----------:|--------:|-------:|-------:|--------:"
	      "|----------:|----------:|\n", stdout);
	if (size)
		return snap_cell(size, rate, count) < 0;
	for (size_t i = 0; i < ARRAY_SIZE(sizes); i++)
		for (size_t j = 0; j < ARRAY_SIZE(rates); j++)
			if (snap_cell(sizes[i], rates[j], count) < 0)
				return 1;
	return 0;
}

int main(int argc, char **argv)
{
	static const uint32_t sizes[] = { 10, 1000, 100000, 1000000 };
	int snap = argc > 1 && strcmp(argv[1], "--snapshot") == 0;
	size_t ops = argc > 1 + snap ? strtoul(argv[1 + snap], NULL, 10) : snap ? 5 : 2000000;

	if (!ops) {
		fprintf(stderr, "usage: route_cache_bench [ops] | --snapshot [count]\n");
		return 2;
	}
	log_init("route_cache_bench");
	log_set_level(LOG_LVL_WARN);
	if (snap)
		return snap_main((unsigned)ops, argc > 3 ? (uint32_t)strtoul(argv[3], NULL, 10) : 0,
				 argc > 4 ? (unsigned)strtoul(argv[4], NULL, 10) : 1000);
	fputs("| entries   | hit ns    | miss ns   | insert+evict ns | linear scan ns "
	      "| scan/hit | segment    |\n"
	      "|----------:|----------:|----------:|----------------:|---------------:"
	      "|---------:|-----------:|\n", stdout);
	for (size_t i = 0; i < ARRAY_SIZE(sizes); i++)
		if (bench_size(sizes[i], ops) < 0)
			return 1;
	return 0;
}
