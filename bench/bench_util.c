#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "bench/bench_util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

double bu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Reads a small /proc file into buf; its length, or -1. */
static ssize_t read_proc(pid_t pid, const char *what, char *buf, size_t cap)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, what);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, cap - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	return n;
}

double bu_cpu_s(pid_t pid)
{
	char buf[1024];
	unsigned long ut = 0, st = 0;

	if (read_proc(pid, "stat", buf, sizeof(buf)) < 0)
		return 0;
	const char *p = strrchr(buf, ')');
	/* fields after the command: state is 3, utime 14, stime 15 */
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
			 &ut, &st) != 2)
		return 0;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

double bu_self_cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

long bu_rss_kib(pid_t pid)
{
	char buf[4096];
	long kib;

	if (read_proc(pid, "status", buf, sizeof(buf)) < 0)
		return -1;
	const char *p = strstr(buf, "VmRSS:");
	if (!p || sscanf(p + 6, "%ld", &kib) != 1)
		return -1;
	return kib;
}

long bu_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return -1;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	return (long)rl.rlim_cur;
}

void bu_die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

char *bu_payload(size_t size)
{
	if (size < 12)
		size = 12;
	char *p = malloc(size + 1);
	if (!p)
		bu_die("bench: out of memory");
	/* {"pad":"…"} is 10 bytes around the padding */
	memcpy(p, "{\"pad\":\"", 8);
	memset(p + 8, 'x', size - 10);
	memcpy(p + size - 2, "\"}", 3);
	return p;
}

void bu_lat_add(struct bu_lat *l, double us)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 4096;
		double *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			bu_die("bench: out of memory");
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = us;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

double bu_lat_pct(struct bu_lat *l, double p)
{
	if (l->n == 0)
		return 0;
	qsort(l->v, l->n, sizeof(*l->v), cmp_double);
	size_t rank = (size_t)ceil(p / 100.0 * (double)l->n);
	return l->v[rank ? rank - 1 : 0];
}

void bu_lat_free(struct bu_lat *l)
{
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

int bu_unix_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	if (strlen(path) >= sizeof(sa.sun_path))
		return -1;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

void bu_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		bu_die("bench: fcntl: %s", strerror(errno));
}

const volatile struct bu_mcount *bu_mcount_open(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return NULL;
	void *p = mmap(NULL, sizeof(struct bu_mcount), PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return NULL;
	const volatile struct bu_mcount *m = p;
	if (m->magic != BU_MCOUNT_MAGIC) {
		munmap(p, sizeof(struct bu_mcount));
		return NULL;
	}
	return m;
}

uint64_t bu_mcount_allocs(const volatile struct bu_mcount *m)
{
	return m->mallocs + m->callocs + m->reallocs + m->memaligns;
}

void bu_mcount_wrap(const char *so_path, const char *file)
{
	static char wrap[1024];

	if (truncate(file, 0) != 0 && errno != ENOENT)
		bu_die("bench: truncate %s: %s", file, strerror(errno));
	if (strchr(so_path, ' ') || strchr(file, ' '))
		bu_die("bench: paths with spaces cannot be passed to the wrapper");
	snprintf(wrap, sizeof(wrap), "env LD_PRELOAD=%s PHX_MALLOC_COUNT=%s", so_path, file);
	setenv("PHX_TEST_WRAPPER", wrap, 1);
}

/* ------------------------------------------------------------ records */

static int rec_fields;

static void rec_key(const char *name)
{
	printf("%s\"%s\":", rec_fields++ ? "," : "", name);
}

void bu_rec_begin(const char *scenario, const char *path, const char *kase)
{
	rec_fields = 0;
	putchar('{');
	bu_rec_str("scenario", scenario);
	bu_rec_str("path", path);
	bu_rec_str("case", kase);
}

void bu_rec_num(const char *name, double v)
{
	rec_key(name);
	if (isfinite(v))
		printf("%.10g", v);
	else
		fputs("null", stdout);
}

void bu_rec_str(const char *name, const char *v)
{
	rec_key(name);
	putchar('"');
	for (const char *p = v; *p; p++) {
		if (*p == '"' || *p == '\\')
			putchar('\\');
		if ((unsigned char)*p >= 0x20)
			putchar(*p);
	}
	putchar('"');
}

void bu_rec_end(void)
{
	fputs("}\n", stdout);
	fflush(stdout);
}

void bu_send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			bu_die("send: %s", strerror(errno));
		p += w;
		n -= (size_t)w;
	}
}

void bu_read_lines(int fd, char *buf, size_t cap, size_t *len, const char *who,
		   void (*line)(void *arg, const char *l, size_t n), void *arg)
{
	ssize_t r = read(fd, buf + *len, cap - *len);
	if (r <= 0)
		bu_die("%s: a client was disconnected", who);
	*len += (size_t)r;
	size_t off = 0;
	char *nl;
	while ((nl = memchr(buf + off, '\n', *len - off))) {
		line(arg, buf + off, (size_t)(nl - (buf + off)));
		off = (size_t)(nl - buf) + 1;
	}
	memmove(buf, buf + off, *len - off);
	*len -= off;
	if (*len == cap)
		bu_die("%s: line too long", who);
}
