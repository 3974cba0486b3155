/* bench_util — what the benchmark programs share: clocks, a process's CPU
 * time and RSS, latency samples and their percentiles, payloads, the phxsim
 * control socket, the malloc counter of malloc_count.so, and one JSON
 * record per measurement on stdout (collected by bench/run, summed up by
 * bench/report).
 */
#ifndef PHX_BENCH_UTIL_H
#define PHX_BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Seconds on the monotonic clock. */
double bu_now(void);
/* CPU seconds (user + system) pid has used, from /proc/PID/stat; 0 when
 * it cannot be read. */
double bu_cpu_s(pid_t pid);
/* CPU seconds this process has used. */
double bu_self_cpu_s(void);
/* VmRSS of pid in KiB, or -1. */
long bu_rss_kib(pid_t pid);
/* Raises RLIMIT_NOFILE to its hard limit; returns the soft limit now. */
long bu_raise_nofile(void);
/* Dies with a message (bench programs have nothing to clean up: the
 * processes they started die with them). */
void bu_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* Reads what fd has into buf (cap bytes, *len used), calls line(arg, l, n)
 * for each complete line (without its '\n') and keeps the rest; dies on EOF,
 * an error or a line longer than cap.  who names the caller in messages. */
void bu_read_lines(int fd, char *buf, size_t cap, size_t *len, const char *who,
		   void (*line)(void *arg, const char *l, size_t n), void *arg);

/* Writes all n bytes to a blocking socket, or dies. */
void bu_send_all(int fd, const char *p, size_t n);

/* A JSON object of exactly size bytes ({"pad":"xx…"}), at least 12; the
 * caller frees it. */
char *bu_payload(size_t size);

/* Latency samples in microseconds. */
struct bu_lat {
	double *v;
	size_t n, cap;
};
void bu_lat_add(struct bu_lat *l, double us);
/* The p-th percentile (0..100, nearest rank); sorts the samples. */
double bu_lat_pct(struct bu_lat *l, double p);
void bu_lat_free(struct bu_lat *l);

/* A connected stream socket to a Unix path, or -1. */
int bu_unix_connect(const char *path);
/* Sets O_NONBLOCK; dies on failure. */
void bu_nonblock(int fd);

/* The counters malloc_count.so keeps in a shared file (PHX_MALLOC_COUNT). */
struct bu_mcount {
	uint64_t magic;
	uint64_t mallocs, callocs, reallocs, frees, memaligns;
	uint64_t bytes;                 /* requested, total */
	int64_t live;                   /* usable bytes allocated and not freed */
};
#define BU_MCOUNT_MAGIC 0x50485843544d4131ULL  /* "PHXCTMA1" */

/* Maps the counter file read-only (NULL when it does not hold counters). */
const volatile struct bu_mcount *bu_mcount_open(const char *path);
/* Allocations (malloc, calloc, realloc, aligned) counted so far. */
uint64_t bu_mcount_allocs(const volatile struct bu_mcount *m);
/* Sets PHX_TEST_WRAPPER so that it_util starts phxd with malloc_count.so
 * (so_path) preloaded, counting into file (truncated here). */
void bu_mcount_wrap(const char *so_path, const char *file);

/* One measurement as a line of JSON on stdout:
 *   bu_rec_begin("rtt", "phxd", "c16"); bu_rec_num("p50_us", x); bu_rec_end();
 * scenario, path (phxd, direct, js, -) and case name the row. */
void bu_rec_begin(const char *scenario, const char *path, const char *kase);
void bu_rec_num(const char *name, double v);
void bu_rec_str(const char *name, const char *v);
void bu_rec_end(void);

#endif
