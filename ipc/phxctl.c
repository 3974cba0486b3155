/* phxctl — the command-line client of phxd.
 *
 * Asks the control socket (stats, metrics, routes, ...) and prints the
 * answer: as phxd sent it when stdout is not a terminal, indented JSON or
 * aligned tables when it is.  Talks the line protocol on the client socket
 * for `join` (prints a topic's events until interrupted) and `push` (prints
 * the reply), so shell scripts need no socat.  Exit status: 0 ok, 1 phxd
 * answered ERR, 2 usage, connection error or timeout.  docs/phxctl.1.
 *
 * `routes --shm` reads phxd's route cache segment itself, through the
 * reader side of daemon/route_cache (which never writes to it and never
 * logs); otherwise phxctl only needs json-c and libc.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>  /* not common/json.h */

#include "daemon/route_cache.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

#define PHXCTL_DEFAULT_SOCKET "/run/phxd/phxd.sock"
#define PHXCTL_DEFAULT_CONTROL "/run/phxd/control.sock"
#define PHXCTL_LINE_MAX (256u * 1024 * 1024)   /* longest line we accept */
#define PHXCTL_NAME_MAX 255

enum { EXIT_OK = 0, EXIT_ERR = 1, EXIT_USAGE = 2 };

struct opts {
	const char *socket;
	const char *control;
	const char *endpoint;
	const char *params;
	int timeout_ms;
	int pretty;             /* 1 pretty, 0 raw */
};

/* A connection with a read buffer. */
struct conn {
	int fd;
	char *buf;
	size_t len, cap;
	char *line;             /* the last line read (inside buf until the next read;
				   callers may split it in place) */
	size_t used;            /* bytes of buf that line took, newline included */
};

static volatile sig_atomic_t phxctl_stop;
/* SIGINT and SIGTERM stay blocked except inside ppoll(), so a signal cannot
 * slip in between the check of phxctl_stop and the wait. */
static sigset_t phxctl_waitmask;
static int phxctl_masked;

static void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die_usage(const char *fmt, ...)
{
	va_list ap;
	fputs("phxctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'phxctl --help'.\n", stderr);
	exit(EXIT_USAGE);
}

static void fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void fail(int code, const char *fmt, ...)
{
	va_list ap;
	fputs("phxctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(code);
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: phxctl [OPTIONS] COMMAND [ARGS]\n"
		"The command-line client of phxd.\n\n"
		"Control socket commands:\n"
		"  stats                  counters, gauges, latency percentiles\n"
		"  metrics                Prometheus text format\n"
		"  routes [N]             channels, busiest first (the N busiest)\n"
		"  routes --shm [NAME]    the route cache, read from shared memory, not asked\n"
		"                         (default: the segment of the client socket's phxd)\n"
		"  upstreams              upstream connections\n"
		"  clients                local clients\n"
		"  pool                   the upstream pools, binary pool, hibernation\n"
		"  history [N]            the last N samples (default all)\n"
		"  alerts                 alert states and thresholds\n"
		"  report                 a human-readable summary\n"
		"  help                   the control commands phxd knows\n\n"
		"Client socket commands:\n"
		"  join TOPIC [PARAMS]    join TOPIC and print its EVENT lines until interrupted\n"
		"  push TOPIC EVENT [JSON]  join TOPIC, push EVENT (payload default {}), print the reply\n\n"
		"Options:\n"
		"  -c, --control PATH     control socket (default $PHXD_CONTROL, else control.sock\n"
		"                         beside the client socket: %s)\n"
		"  -s, --socket PATH      client socket (default $PHXD_SOCKET or %s)\n"
		"  -e, --endpoint NAME    join on this endpoint (USE NAME)\n"
		"  -p, --params JSON      join params for push (default {})\n"
		"  -t, --timeout SEC      wait at most SEC seconds for an answer (default 10)\n"
		"  -r, --raw              print answers as phxd sent them (default when piped)\n"
		"  -P, --pretty           indented JSON and aligned tables (default on a terminal)\n"
		"  -V, --version          print the version\n"
		"  -h, --help             this help\n\n"
		"Exit status: 0 ok; 1 phxd answered with an error (refused join, failed push);\n"
		"2 usage error, connection error or timeout.\n",
		PHXCTL_DEFAULT_CONTROL, PHXCTL_DEFAULT_SOCKET);
}

/* ---- sockets -------------------------------------------------------------------- */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void conn_open(struct conn *c, const char *path, const char *what)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	memset(c, 0, sizeof(*c));
	if (strlen(path) >= sizeof(sa.sun_path))
		fail(EXIT_USAGE, "%s path too long: %s", what, path);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		fail(EXIT_USAGE, "socket: %s", strerror(errno));
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		fail(EXIT_USAGE, "cannot connect to the %s %s: %s", what, path, strerror(errno));
}

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	free(c->buf);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

static void conn_send(struct conn *c, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			fail(EXIT_USAGE, "write to phxd: %s", strerror(errno));
		s += w;
		n -= (size_t)w;
	}
}

static void conn_sendf(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void conn_sendf(struct conn *c, const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	va_start(ap, fmt);
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		fail(EXIT_USAGE, "out of memory");
	conn_send(c, s, (size_t)n);
	free(s);
}

/* The next line in c->line (newline and CR dropped): 1; 0 on EOF; -ETIMEDOUT
 * after deadline (a monotonic ms time; < 0: none); -EINTR when interrupted
 * by a signal that asked us to stop. */
static int conn_line(struct conn *c, int64_t deadline)
{
	if (c->line) {
		memmove(c->buf, c->buf + c->used, c->len - c->used);
		c->len -= c->used;
		c->line = NULL;
	}
	for (;;) {
		char *nl = c->buf ? memchr(c->buf, '\n', c->len) : NULL;
		if (nl) {
			*nl = '\0';
			if (nl > c->buf && nl[-1] == '\r')
				nl[-1] = '\0';
			c->line = c->buf;
			c->used = (size_t)(nl - c->buf) + 1;
			return 1;
		}
		if (c->len + 65536 + 1 > c->cap) {
			if (c->cap >= PHXCTL_LINE_MAX)
				fail(EXIT_USAGE, "a line from phxd is longer than %u bytes",
				     PHXCTL_LINE_MAX);
			size_t ncap = c->cap ? c->cap * 2 : 131072;
			char *nb = realloc(c->buf, ncap);
			if (!nb)
				fail(EXIT_USAGE, "out of memory");
			c->buf = nb;
			c->cap = ncap;
		}
		struct timespec ts, *wait = NULL;
		if (phxctl_stop)
			return -EINTR;
		if (deadline >= 0) {
			int64_t left = deadline - now_ms();
			if (left <= 0)
				return -ETIMEDOUT;
			ts.tv_sec = (time_t)(left / 1000);
			ts.tv_nsec = (long)(left % 1000) * 1000000;
			wait = &ts;
		}
		struct pollfd p = { c->fd, POLLIN, 0 };
		int r = ppoll(&p, 1, wait, phxctl_masked ? &phxctl_waitmask : NULL);
		if (r < 0 && errno == EINTR) {
			if (phxctl_stop)
				return -EINTR;
			continue;
		}
		if (r < 0)
			fail(EXIT_USAGE, "ppoll: %s", strerror(errno));
		if (r == 0)
			continue;
		ssize_t n = read(c->fd, c->buf + c->len, c->cap - c->len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			fail(EXIT_USAGE, "read from phxd: %s", strerror(errno));
		if (n == 0) {
			if (c->len == 0)
				return 0;
			c->buf[c->len] = '\n';     /* a last line without its newline */
			c->len++;
			continue;
		}
		c->len += (size_t)n;
	}
}

/* ---- pretty printing -------------------------------------------------------- */

static int is_time_key(const char *k)
{
	return strcmp(k, "t") == 0 || strcmp(k, "time") == 0 || strcmp(k, "since") == 0 ||
	       strcmp(k, "last_activity") == 0;
}

/* A cell: strings as they are, null as "-", times readable, the rest JSON. */
static char *cell_text(const char *key, struct json_object *v)
{
	char *s = NULL;
	if (!v)
		return strdup("-");
	switch (json_object_get_type(v)) {
	case json_type_string:
		return strdup(json_object_get_string(v));
	case json_type_int:
		if (is_time_key(key) && json_object_get_int64(v) > 1000000000000LL) {
			int64_t ms = json_object_get_int64(v);
			time_t t = (time_t)(ms / 1000);
			struct tm tm;
			char b[64];
			localtime_r(&t, &tm);
			strftime(b, sizeof(b), "%Y-%m-%d %H:%M:%S", &tm);
			return strdup(b);
		}
		if (asprintf(&s, "%lld", (long long)json_object_get_int64(v)) < 0)
			return NULL;
		return s;
	default:
		return strdup(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN |
							      JSON_C_TO_STRING_NOSLASHESCAPE));
	}
}

/* Display width of UTF-8 text (code points). */
static size_t text_width(const char *s)
{
	size_t w = 0;
	for (; *s; s++)
		w += ((unsigned char)*s & 0xC0) != 0x80;
	return w;
}

static int is_number_cell(struct json_object *v)
{
	enum json_type t = v ? json_object_get_type(v) : json_type_null;
	return t == json_type_int || t == json_type_double;
}

struct table {
	const char **cols;
	size_t ncols;
	size_t *width;
	int *numeric;
};

static void table_add_col(struct table *t, const char *k)
{
	for (size_t i = 0; i < t->ncols; i++)
		if (strcmp(t->cols[i], k) == 0)
			return;
	t->cols = realloc(t->cols, (t->ncols + 1) * sizeof(*t->cols));
	t->width = realloc(t->width, (t->ncols + 1) * sizeof(*t->width));
	t->numeric = realloc(t->numeric, (t->ncols + 1) * sizeof(*t->numeric));
	if (!t->cols || !t->width || !t->numeric)
		fail(EXIT_USAGE, "out of memory");
	t->cols[t->ncols] = k;
	t->width[t->ncols] = text_width(k);
	t->numeric[t->ncols] = 1;
	t->ncols++;
}

static void print_padded(const char *s, size_t width, int right, int last)
{
	size_t w = text_width(s);
	if (right)
		for (size_t i = w; i < width; i++)
			putchar(' ');
	fputs(s, stdout);
	if (!right && !last)
		for (size_t i = w; i < width; i++)
			putchar(' ');
	if (!last)
		fputs("  ", stdout);
}

/* An array of objects as a table: a column per key, in order of appearance. */
static void print_table(const char *title, struct json_object *arr)
{
	struct table t = { 0 };
	size_t n = json_object_array_length(arr);

	for (size_t r = 0; r < n; r++) {
		struct json_object *row = json_object_array_get_idx(arr, r);
		json_object_object_foreach(row, k, v) {
			table_add_col(&t, k);
			(void)v;
		}
	}
	char **cells = calloc(n * (t.ncols ? t.ncols : 1), sizeof(*cells));
	if (!cells)
		fail(EXIT_USAGE, "out of memory");
	for (size_t r = 0; r < n; r++) {
		struct json_object *row = json_object_array_get_idx(arr, r);
		for (size_t c = 0; c < t.ncols; c++) {
			struct json_object *v = NULL;
			json_object_object_get_ex(row, t.cols[c], &v);
			char *s = cell_text(t.cols[c], v);
			if (!s)
				fail(EXIT_USAGE, "out of memory");
			cells[r * t.ncols + c] = s;
			if (text_width(s) > t.width[c])
				t.width[c] = text_width(s);
			if (v && !is_number_cell(v))
				t.numeric[c] = 0;
		}
	}
	printf("%s (%zu)\n", title, n);
	if (n) {
		for (size_t c = 0; c < t.ncols; c++)
			print_padded(t.cols[c], t.width[c], t.numeric[c], c + 1 == t.ncols);
		putchar('\n');
	}
	for (size_t r = 0; r < n; r++) {
		for (size_t c = 0; c < t.ncols; c++)
			print_padded(cells[r * t.ncols + c], t.width[c], t.numeric[c],
				     c + 1 == t.ncols);
		putchar('\n');
	}
	for (size_t i = 0; i < n * t.ncols; i++)
		free(cells[i]);
	free(cells);
	free(t.cols);
	free(t.width);
	free(t.numeric);
}

static int is_object_array(struct json_object *v)
{
	if (!json_object_is_type(v, json_type_array))
		return 0;
	size_t n = json_object_array_length(v);
	for (size_t i = 0; i < n; i++)
		if (!json_object_is_type(json_object_array_get_idx(v, i), json_type_object))
			return 0;
	return 1;
}

/* Objects holding arrays of objects: "key: value" lines, then tables;
 * anything else: indented JSON. */
static void print_json_pretty(const char *text)
{
	struct json_object *o = json_tokener_parse(text);
	int tables = 0;
	if (!o) {
		puts(text);
		return;
	}
	if (json_object_is_type(o, json_type_object)) {
		json_object_object_foreach(o, k, v) {
			(void)k;
			tables |= is_object_array(v) && json_object_array_length(v) > 0;
		}
	}
	if (!tables) {
		puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
						     JSON_C_TO_STRING_SPACED |
						     JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(o);
		return;
	}
	json_object_object_foreach(o, k1, v1) {
		if (is_object_array(v1) && json_object_array_length(v1) > 0)
			continue;
		if (json_object_is_type(v1, json_type_array) && json_object_array_length(v1) == 0) {
			printf("%s: (none)\n", k1);
			continue;
		}
		char *s = cell_text(k1, v1);
		printf("%s: %s\n", k1, s ? s : "?");
		free(s);
	}
	int first = 1;
	json_object_object_foreach(o, k2, v2) {
		if (!is_object_array(v2) || json_object_array_length(v2) == 0)
			continue;
		if (!first)
			putchar('\n');
		first = 0;
		print_table(k2, v2);
	}
	json_object_put(o);
}

/* ---- the control socket ----------------------------------------------------- */

static const struct {
	const char *name;
	const char *cmd;
	int count;              /* takes [N] */
	int text;               /* the answer is text, not JSON */
} ctl_cmds[] = {
	{ "stats", "STATS", 0, 0 },
	{ "metrics", "METRICS", 0, 1 },
	{ "routes", "ROUTES", 1, 0 },
	{ "upstreams", "UPSTREAMS", 0, 0 },
	{ "clients", "CLIENTS", 0, 0 },
	{ "pool", "POOL", 0, 0 },
	{ "history", "HISTORY", 1, 0 },
	{ "alerts", "ALERTS", 0, 0 },
	{ "report", "REPORT", 0, 1 },
	{ "help", "HELP", 0, 1 },
};

/* "reason (detail)" from an ERR payload, into a malloc'ed string. */
static char *err_reason(const char *payload)
{
	struct json_object *o = json_tokener_parse(payload), *r = NULL, *d = NULL;
	char *s = NULL;
	if (o && json_object_object_get_ex(o, "reason", &r) &&
	    json_object_is_type(r, json_type_string)) {
		if (json_object_object_get_ex(o, "detail", &d) &&
		    json_object_is_type(d, json_type_string)) {
			if (asprintf(&s, "%s (%s)", json_object_get_string(r),
				     json_object_get_string(d)) < 0)
				s = NULL;
		} else {
			s = strdup(json_object_get_string(r));
		}
	}
	if (o)
		json_object_put(o);
	return s ? s : strdup(payload);
}

static int count_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 10 || strspn(s, "0123456789") != n)
		return 0;
	return strtoll(s, NULL, 10) >= 1 && strtoll(s, NULL, 10) <= 1000000000;
}

static int run_control(const struct opts *o, int argc, char **argv)
{
	size_t i;
	for (i = 0; i < sizeof(ctl_cmds) / sizeof(ctl_cmds[0]); i++)
		if (strcmp(argv[0], ctl_cmds[i].name) == 0)
			break;
	if (i == sizeof(ctl_cmds) / sizeof(ctl_cmds[0]))
		die_usage("unknown command '%s'", argv[0]);
	if (argc > 2 || (argc == 2 && !ctl_cmds[i].count))
		die_usage("%s: too many arguments", argv[0]);
	if (argc == 2 && !count_ok(argv[1]))
		die_usage("%s: N must be a whole number from 1 to 1000000000", argv[0]);

	struct conn c;
	conn_open(&c, o->control, "control socket");
	conn_sendf(&c, "%s%s%s\n", ctl_cmds[i].cmd, argc == 2 ? " " : "", argc == 2 ? argv[1] : "");
	int64_t deadline = now_ms() + o->timeout_ms;
	int first = 1, code = EXIT_OK;
	for (;;) {
		int r = conn_line(&c, deadline);
		if (r == -ETIMEDOUT)
			fail(EXIT_USAGE, "no answer from phxd within %d ms", o->timeout_ms);
		if (r <= 0)
			fail(EXIT_USAGE, "phxd closed the control connection");
		if (!*c.line)
			break;                  /* the end of the answer */
		if (first && strncmp(c.line, "ERR ", 4) == 0) {
			char *why = err_reason(c.line + 4);
			fprintf(stderr, "phxctl: %s: %s\n", argv[0], why);
			free(why);
			code = EXIT_ERR;
		} else if (o->pretty && !ctl_cmds[i].text) {
			print_json_pretty(c.line);
		} else {
			puts(c.line);
		}
		first = 0;
	}
	conn_close(&c);
	if (fflush(stdout) != 0 && errno != EPIPE)
		fail(EXIT_USAGE, "stdout: %s", strerror(errno));
	return code;
}

/* ---- the route cache in shared memory ------------------------------------------ */

/* s as a JSON string, escaped. */
static void json_put_str(FILE *f, const char *s, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The snapshot as one line of JSON, shaped like the control socket's ROUTES
 * (topic, endpoint, upstream, state, idle_ms, last_activity) plus what only
 * the cache knows.  Its stamps are phxd's CLOCK_MONOTONIC milliseconds, the
 * clock now_ms() reads too (same machine, same boot: /dev/shm is a tmpfs). */
static void routes_shm_json(FILE *f, const char *name, const struct route_snapshot *s)
{
	const struct route_cache_stats *st = &s->stats;
	int64_t now = now_ms(), wall = wall_ms();

	fputs("{\"segment\":", f);
	json_put_str(f, name, strlen(name));
	fprintf(f, ",\"atomic\":%s,\"count\":%zu,\"shown\":%zu,\"entries\":%u,\"capacity\":%u,"
		"\"ttl_ms\":%u,\"generation\":%llu,\"hits\":%llu,\"misses\":%llu,"
		"\"inserts\":%llu,\"updates\":%llu,\"deletes\":%llu,\"evictions\":%llu,"
		"\"expirations\":%llu,\"routes\":[", s->atomic ? "true" : "false", s->n, s->n,
		st->entries, st->capacity, st->ttl_ms, (unsigned long long)st->generation,
		(unsigned long long)st->hits, (unsigned long long)st->misses,
		(unsigned long long)st->inserts, (unsigned long long)st->updates,
		(unsigned long long)st->deletes, (unsigned long long)st->evictions,
		(unsigned long long)st->expirations);
	for (size_t i = 0; i < s->n; i++) {
		const struct route_entry *e = &s->entries[i];
		fputs(i ? ",{\"topic\":" : "{\"topic\":", f);
		json_put_str(f, e->topic, e->topic_len);
		fputs(",\"endpoint\":", f);
		json_put_str(f, e->endpoint, strlen(e->endpoint));
		fprintf(f, ",\"upstream\":%u,\"state\":\"%s\",\"hits\":%llu", e->slot,
			route_state_name((enum route_state)e->state), (unsigned long long)e->hits);
		if ((int64_t)e->last_ms <= now)
			fprintf(f, ",\"idle_ms\":%lld,\"last_activity\":%lld",
				(long long)(now - (int64_t)e->last_ms),
				(long long)(wall - (now - (int64_t)e->last_ms)));
		else
			fputs(",\"idle_ms\":null,\"last_activity\":null", f);
		if ((int64_t)e->created_ms <= now)
			fprintf(f, ",\"since\":%lld}", (long long)(wall - (now - (int64_t)e->created_ms)));
		else
			fputs(",\"since\":null}", f);
	}
	fputs("]}\n", f);
}

/* `routes --shm [NAME]`: reads phxd's route cache segment directly, without
 * asking phxd (works while phxd is busy, stopped or hung).  NAME defaults to
 * the segment phxd names after its client socket path. */
static int run_routes_shm(const struct opts *o, int argc, char **argv)
{
	const char *arg = NULL;
	char name[300], err[512];
	struct route_snapshot *s = NULL;

	if (strncmp(argv[1], "--shm=", 6) == 0) {
		arg = argv[1] + 6;
		if (argc > 2)
			die_usage("routes: too many arguments");
	} else {
		if (argc > 3)
			die_usage("routes: too many arguments");
		arg = argc == 3 ? argv[2] : NULL;
	}
	if (arg)
		snprintf(name, sizeof(name), "%s", arg);
	else
		route_cache_default_name(o->socket, name, sizeof(name));
	int r = route_cache_snapshot(name, &s, err, sizeof(err));
	switch (r) {
	case 0:
		break;
	case -EINVAL:
		die_usage("routes --shm: '%s' is not a shared memory name (want /name, as "
			  "route_cache_name in phxd.conf)", name);
	case -ENOENT:
		if (arg)
			fail(EXIT_USAGE, "routes --shm: no route cache %s", name);
		fail(EXIT_USAGE, "routes --shm: no route cache %s, the one phxd makes for the client "
		     "socket %s (is phxd running with that socket, route_cache_size > 0 and no "
		     "route_cache_name? else pass the name)", name, o->socket);
	case -EACCES:
	case -EPERM:
		fail(EXIT_USAGE, "routes --shm: %s: permission denied (the route cache is as private "
		     "as phxd's sockets: run phxctl as phxd's user)", name);
	case -EPROTO:
		fail(EXIT_USAGE, "routes --shm: %s (not a phxd route cache, or one of another "
		     "version)", err);
	default:
		fail(EXIT_USAGE, "routes --shm: %s", *err ? err : strerror(-r));
	}
	if (o->pretty) {
		char *text = NULL;
		size_t len = 0;
		FILE *m = open_memstream(&text, &len);
		if (!m)
			fail(EXIT_USAGE, "out of memory");
		routes_shm_json(m, name, s);
		if (fclose(m) != 0)
			fail(EXIT_USAGE, "out of memory");
		text[len ? len - 1 : 0] = '\0';         /* the newline */
		print_json_pretty(text);
		free(text);
	} else {
		routes_shm_json(stdout, name, s);
	}
	route_snapshot_free(s);
	if (fflush(stdout) != 0 && errno != EPIPE)
		fail(EXIT_USAGE, "stdout: %s", strerror(errno));
	return EXIT_OK;
}

/* ---- the client socket ------------------------------------------------------- */

/* A reply line "KIND @TAG VERB TARGET PAYLOAD", split in place. */
struct reply {
	const char *kind, *tag, *verb, *target, *payload;
};

static char *next_field(char **p)
{
	char *s = *p;
	if (!s)
		return NULL;
	char *sp = strchr(s, ' ');
	if (sp) {
		*sp = '\0';
		*p = sp + 1;
	} else {
		*p = NULL;
	}
	return s;
}

/* 1 when line is a reply that carries tag. */
static int parse_reply(char *line, const char *tag, struct reply *r)
{
	if (strncmp(line, "OK ", 3) && strncmp(line, "ERR ", 4) && strncmp(line, "BOK ", 4) &&
	    strncmp(line, "BERR ", 5))
		return 0;
	char *p = line;
	r->kind = next_field(&p);
	if (!p || *p != '@')
		return 0;
	r->tag = next_field(&p);
	if (strcmp(r->tag + 1, tag) != 0)
		return 0;
	r->verb = next_field(&p);
	r->target = next_field(&p);
	r->payload = p ? p : "";
	return r->verb && r->target;
}

/* Waits for the reply tagged tag; lines before it go to on_other (may be NULL). */
static int wait_reply(struct conn *c, const char *tag, int64_t deadline, struct reply *r,
		      void (*on_other)(const char *line))
{
	for (;;) {
		int n = conn_line(c, deadline);
		if (n == -ETIMEDOUT)
			return -ETIMEDOUT;
		if (n == -EINTR)
			return -EINTR;
		if (n == 0)
			fail(EXIT_USAGE, "phxd closed the connection");
		if (strncmp(c->line, "BYE", 3) == 0)
			fail(EXIT_USAGE, "phxd said %s", c->line);
		char *copy = strdup(c->line);
		if (!copy)
			fail(EXIT_USAGE, "out of memory");
		if (parse_reply(c->line, tag, r)) {
			free(copy);
			return 0;
		}
		if (on_other)
			on_other(copy);
		free(copy);
	}
}

static int reply_ok(const struct reply *r)
{
	return strcmp(r->kind, "OK") == 0 || strcmp(r->kind, "BOK") == 0;
}

static void check_name(const char *what, const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > PHXCTL_NAME_MAX)
		die_usage("%s must be 1 to %d bytes", what, PHXCTL_NAME_MAX);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || s[i] == 0x7F)
			die_usage("%s must not contain spaces or control characters", what);
	if (strcmp(what, "topic") == 0 && strchr("{[\"", s[0]))
		die_usage("a topic cannot start with '%c'", s[0]);
}

/* A JSON argument as one line: checked, and compacted when it spans lines. */
static char *json_arg(const char *what, const char *s, int want_object)
{
	struct json_tokener *tok = json_tokener_new();
	if (!tok)
		fail(EXIT_USAGE, "out of memory");
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	/* the terminating NUL is passed too: it ends a bare number */
	struct json_object *o = json_tokener_parse_ex(tok, s, (int)strlen(s) + 1);
	int ok = o && json_tokener_get_error(tok) == json_tokener_success;
	json_tokener_free(tok);
	if (!ok) {
		if (o)
			json_object_put(o);
		die_usage("%s is not valid JSON: %s", what, s);
	}
	if (want_object && !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		die_usage("%s must be a JSON object", what);
	}
	char *out = strpbrk(s, "\r\n") ?
		    strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
							  JSON_C_TO_STRING_NOSLASHESCAPE)) :
		    strdup(s);
	json_object_put(o);
	if (!out)
		fail(EXIT_USAGE, "out of memory");
	return out;
}

/* Connects, chooses the endpoint, joins; exits unless the join is OK. */
static void client_join(const struct opts *o, struct conn *c, const char *topic,
			const char *params)
{
	struct reply r;
	int64_t deadline = now_ms() + o->timeout_ms;

	conn_open(c, o->socket, "client socket");
	if (o->endpoint) {
		conn_sendf(c, "@u USE %s\n", o->endpoint);
		int n = wait_reply(c, "u", deadline, &r, NULL);
		if (n < 0)
			fail(EXIT_USAGE, "no answer from phxd within %d ms", o->timeout_ms);
		if (!reply_ok(&r)) {
			char *why = err_reason(r.payload);
			fprintf(stderr, "phxctl: endpoint %s: %s\n", o->endpoint, why);
			free(why);
			exit(EXIT_ERR);
		}
	}
	conn_sendf(c, "@j JOIN %s %s\n", topic, params);
	int n = wait_reply(c, "j", deadline, &r, NULL);
	if (n == -EINTR)
		exit(EXIT_OK);
	if (n < 0)
		fail(EXIT_USAGE, "join %s: no answer within %d ms", topic, o->timeout_ms);
	if (!reply_ok(&r)) {
		char *why = err_reason(r.payload);
		fprintf(stderr, "phxctl: join %s refused: %s\n", topic, why);
		free(why);
		exit(EXIT_ERR);
	}
}

static void on_stop_signal(int sig)
{
	(void)sig;
	phxctl_stop = 1;
}

static void install_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sigset_t block;
	sa.sa_handler = on_stop_signal;   /* no SA_RESTART: ppoll returns EINTR */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigprocmask(SIG_BLOCK, &block, &phxctl_waitmask);
	sigdelset(&phxctl_waitmask, SIGINT);
	sigdelset(&phxctl_waitmask, SIGTERM);
	phxctl_masked = 1;
}

/* Prints an event line; stdout gone (a closed pipe) ends quietly. */
static void print_event(const char *line)
{
	if (puts(line) == EOF || fflush(stdout) == EOF)
		exit(errno == EPIPE ? EXIT_OK : EXIT_USAGE);
}

static int run_join(const struct opts *o, int argc, char **argv)
{
	struct conn c;
	if (argc < 2 || argc > 3)
		die_usage("usage: phxctl join TOPIC [PARAMS]");
	check_name("topic", argv[1]);
	char *params = json_arg("params", argc == 3 ? argv[2] : "{}", 1);
	install_signals();
	client_join(o, &c, argv[1], params);
	free(params);
	size_t tlen = strlen(argv[1]);
	for (;;) {
		int n = conn_line(&c, -1);
		if (n == -EINTR)
			break;
		if (n == 0)
			fail(EXIT_USAGE, "phxd closed the connection");
		const char *l = c.line;
		if ((strncmp(l, "EVENT ", 6) == 0 || strncmp(l, "BEVENT ", 7) == 0)) {
			const char *t = strchr(l, ' ') + 1;
			if (strncmp(t, argv[1], tlen) == 0 && t[tlen] == ' ')
				print_event(l);
		} else if (strncmp(l, "STATE ", 6) == 0) {
			fprintf(stderr, "phxctl: %s\n", l);
			const char *st = l + 6 + tlen + 1;
			if (strncmp(l + 6, argv[1], tlen) == 0 && strncmp(st, "closed", 6) == 0)
				exit(EXIT_ERR);
		} else if (strncmp(l, "BYE", 3) == 0) {
			fail(EXIT_USAGE, "phxd said %s", l);
		}
	}
	conn_close(&c);
	return EXIT_OK;
}

static void print_reply_payload(const struct opts *o, const struct reply *r)
{
	if (o->pretty && strcmp(r->kind, "OK") == 0)
		print_json_pretty(r->payload);
	else
		puts(r->payload);
	fflush(stdout);
}

static int run_push(const struct opts *o, int argc, char **argv)
{
	struct conn c;
	struct reply r;
	if (argc < 3 || argc > 4)
		die_usage("usage: phxctl push TOPIC EVENT [JSON]");
	check_name("topic", argv[1]);
	check_name("event", argv[2]);
	char *payload = json_arg("the payload", argc == 4 ? argv[3] : "{}", 0);
	char *params = json_arg("--params", o->params ? o->params : "{}", 1);
	install_signals();
	client_join(o, &c, argv[1], params);
	conn_sendf(&c, "@p PUSH %s %s %s\n", argv[1], argv[2], payload);
	free(payload);
	free(params);
	int n = wait_reply(&c, "p", now_ms() + o->timeout_ms, &r, NULL);
	if (n == -EINTR)
		return EXIT_USAGE;
	if (n < 0)
		fail(EXIT_USAGE, "push %s %s: no reply within %d ms", argv[1], argv[2], o->timeout_ms);
	int code = EXIT_OK;
	if (reply_ok(&r)) {
		print_reply_payload(o, &r);
	} else {
		char *why = strcmp(r.kind, "ERR") == 0 ? err_reason(r.payload) : strdup(r.payload);
		fprintf(stderr, "phxctl: push %s %s: %s\n", argv[1], argv[2], why ? why : "error");
		free(why);
		code = EXIT_ERR;
	}
	conn_close(&c);
	return code;
}

/* ---- main ------------------------------------------------------------------- */

/* control.sock in the directory of the client socket path sock, as phxd
 * derives control_socket when it is not set (ctl_socket_path in
 * daemon/ctl.c); "control.sock" when sock has no directory. */
static const char *control_beside(const char *sock, char *out, size_t n)
{
	const char *slash = strrchr(sock, '/');
	int w;
	if (slash)
		w = snprintf(out, n, "%.*scontrol.sock", (int)(slash - sock + 1), sock);
	else
		w = snprintf(out, n, "control.sock");
	if (w < 0 || (size_t)w >= n)
		die_usage("socket path too long: %.64s...", sock);
	return out;
}

static int parse_timeout(const char *s)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !(v > 0) || v > 86400)
		die_usage("--timeout: '%s' is not a number of seconds (0 < SEC <= 86400)", s);
	return (int)(v * 1000 + 0.5) ? (int)(v * 1000 + 0.5) : 1;
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "control", required_argument, NULL, 'c' },
		{ "socket", required_argument, NULL, 's' },
		{ "endpoint", required_argument, NULL, 'e' },
		{ "params", required_argument, NULL, 'p' },
		{ "timeout", required_argument, NULL, 't' },
		{ "raw", no_argument, NULL, 'r' },
		{ "pretty", no_argument, NULL, 'P' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = {
		.socket = getenv("PHXD_SOCKET"),
		.control = getenv("PHXD_CONTROL"),
		.timeout_ms = 10000,
		.pretty = isatty(STDOUT_FILENO),
	};
	char control_path[4096];
	int ch;

	if (!o.socket || !*o.socket)
		o.socket = PHXCTL_DEFAULT_SOCKET;
	/* '+': options end at the command, so JSON arguments may start with '-' */
	while ((ch = getopt_long(argc, argv, "+c:s:e:p:t:rPVh", lopts, NULL)) != -1) {
		switch (ch) {
		case 'c': o.control = optarg; break;
		case 's': o.socket = optarg; break;
		case 'e': o.endpoint = optarg; break;
		case 'p': o.params = optarg; break;
		case 't': o.timeout_ms = parse_timeout(optarg); break;
		case 'r': o.pretty = 0; break;
		case 'P': o.pretty = 1; break;
		case 'V': printf("phxctl %s\n", PACKAGE_VERSION); return EXIT_OK;
		case 'h': usage(stdout); return EXIT_OK;
		default: fputs("Try 'phxctl --help'.\n", stderr); return EXIT_USAGE;
		}
	}
	/* no -c and no $PHXD_CONTROL: the daemon's own rule, control.sock in the
	 * directory of the client socket (-s, $PHXD_SOCKET or the default) */
	if (!o.control || !*o.control)
		o.control = control_beside(o.socket, control_path, sizeof(control_path));
	argc -= optind;
	argv += optind;
	if (argc < 1)
		die_usage("no command given");
	if (o.endpoint)
		check_name("endpoint", o.endpoint);
	if (strcmp(argv[0], "join") == 0)
		return run_join(&o, argc, argv);
	if (strcmp(argv[0], "push") == 0)
		return run_push(&o, argc, argv);
	signal(SIGPIPE, SIG_IGN);
	if (strcmp(argv[0], "routes") == 0 && argc >= 2 &&
	    (strcmp(argv[1], "--shm") == 0 || strncmp(argv[1], "--shm=", 6) == 0))
		return run_routes_shm(&o, argc, argv);
	return run_control(&o, argc, argv);
}
