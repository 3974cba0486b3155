/* Integration tests of the control socket, the metrics and phxctl: phxsim
 * and phxd as real processes, the control socket, HTTP over it and over
 * metrics_listen, and the phxctl binary. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>    /* not common/json.h */

#include "it_util.h"
#include "daemon/route_cache.h"
#include <grp.h>            /* setgroups: phxctl as another user */

#define SKIP_IF(cond, why) do { \
		if (cond) { \
			fprintf(stderr, "SKIP %s: %s\n", __func__, (why)); \
			return; \
		} \
	} while (0)

static struct it_env env;
static char ctl_path[300];      /* phxd's control socket */
static int metrics_port;        /* metrics_listen, 0: not set */
static char shm_name[64];       /* phxd's route cache, removed at the end */
static char shm_line[128];      /* "route_cache_name = ..." */

/* A route cache of our own (the default name would outlive the test). */
static void shm_names(void)
{
	const char *base = strrchr(env.dir, '/');
	snprintf(shm_name, sizeof(shm_name), "/phxd-itctl-%s", base ? base + 1 : "x");
	snprintf(shm_line, sizeof(shm_line), "route_cache_name = %s\n", shm_name);
}

/* A loopback TCP port that was free a moment ago. */
static int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

/* phxsim, then phxd with the global config lines (where "@DIR@" stands for
 * the test directory) and its stderr in env.log; waits for both sockets. */
static void start_with(const char *global_tpl, const char *endpoint)
{
	char global[2048], wrap[512];
	char *argv[32];
	size_t o = 0;

	it_env_prepare(&env);
	it_sim_start(&env, NULL);
	for (const char *p = global_tpl ? global_tpl : ""; *p; ) {
		size_t n = strlen(env.dir);
		if (strncmp(p, "@DIR@", 5) == 0) {
			ck_assert(o + n < sizeof(global));
			memcpy(global + o, env.dir, n);
			o += n;
			p += 5;
		} else {
			ck_assert(o + 1 < sizeof(global));
			global[o++] = *p++;
		}
	}
	global[o] = '\0';
	shm_names();
	ck_assert(o + strlen(shm_line) < sizeof(global));
	strcat(global, shm_line);
	if (strstr(global, "control_socket ="))
		snprintf(ctl_path, sizeof(ctl_path), "%s/ctl.sock", env.dir);
	else
		snprintf(ctl_path, sizeof(ctl_path), "%s/control.sock", env.dir);
	it_write_conf(&env, global, endpoint);
	snprintf(env.log, sizeof(env.log), "%s/phxd.log", env.dir);
	int lfd = open(env.log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
	ck_assert_int_ge(lfd, 0);
	int argc = it_wrapper_argv(wrap, sizeof(wrap), argv, 20);
	argv[argc++] = (char *)it_env_or("PHXD_BIN", "./phxd");
	argv[argc++] = "-c";
	argv[argc++] = env.conf;
	argv[argc++] = "-l";
	argv[argc++] = "notice";
	argv[argc] = NULL;
	env.phxd = it_spawn(argv, NULL, lfd);
	close(lfd);
	ck_assert_msg(it_wait_path(env.sock, env.phxd, IT_TIMEOUT_MS), "phxd did not start");
	ck_assert_msg(it_wait_path(ctl_path, env.phxd, IT_TIMEOUT_MS), "no control socket %s",
		      ctl_path);
	/* the file appears at bind(), a moment before listen() (a long one
	 * under valgrind): connecting in between is refused */
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	ck_assert(strlen(ctl_path) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, ctl_path, strlen(ctl_path) + 1);
	long end = it_now_ms() + IT_TIMEOUT_MS;
	for (;;) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		ck_assert_int_ge(fd, 0);
		int r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
		close(fd);
		if (r == 0)
			break;
		ck_assert_msg(it_now_ms() < end, "control socket %s: %s", ctl_path, strerror(errno));
		usleep(10000);
	}
}

static void start_default(void)
{
	metrics_port = free_port();
	char g[512];
	snprintf(g, sizeof(g), "metrics_interval = 100ms\nhistory_size = 5\nalert_memory = 0\n"
		 "metrics_listen = 127.0.0.1:%d\n", metrics_port);
	start_with(g, NULL);
}

static void start_alerting(void)
{
	metrics_port = 0;
	start_with("metrics_interval = 100ms\nalert_memory = 0\nalert_response_time = 200ms\n"
		   "control_socket = @DIR@/ctl.sock\ncontrol_socket_mode = 0640\n", NULL);
}

/* The response_time alert with short push and join timeouts. */
static void start_timeouts(void)
{
	metrics_port = 0;
	start_with("metrics_interval = 100ms\nalert_memory = 0\nalert_response_time = 1s\n",
		   "push_timeout = 300ms\njoin_timeout = 3s\n");
}

static void stop_env(void)
{
	unlink(env.log);
	it_env_stop(&env);
	shm_unlink(shm_name);
	struct stat st;
	/* phxd removes the control socket it made */
	ck_assert_msg(stat(ctl_path, &st) != 0, "%s is still there", ctl_path);
}

/* ---- the control socket ----------------------------------------------------- */

static int unix_fd(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	ck_assert(strlen(path) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_msg(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect %s: %s",
		      path, strerror(errno));
	return fd;
}

static struct it_client *ctl_open(void)
{
	struct it_client *c = calloc(1, sizeof(*c));
	ck_assert_ptr_nonnull(c);
	c->fd = unix_fd(ctl_path);
	return c;
}

/* One answer: the lines up to the empty line, joined with '\n' (malloc'ed). */
static char *ctl_answer(struct it_client *c)
{
	size_t cap = 1 << 16, len = 0;
	char *out = malloc(cap);
	ck_assert_ptr_nonnull(out);
	out[0] = '\0';
	for (;;) {
		const char *l = it_line(c, IT_TIMEOUT_MS);
		ck_assert_msg(l != NULL, "answer cut short after '%.200s'", out);
		if (!*l)
			return out;
		size_t n = strlen(l);
		while (len + n + 2 > cap) {
			cap *= 2;
			out = realloc(out, cap);
			ck_assert_ptr_nonnull(out);
		}
		if (len)
			out[len++] = '\n';
		memcpy(out + len, l, n + 1);
		len += n;
	}
}

/* Asks one command on a fresh connection. */
static char *ctl_ask(const char *cmd)
{
	struct it_client *c = ctl_open();
	it_send(c, "%s", cmd);
	char *a = ctl_answer(c);
	it_close(c);
	return a;
}

/* The answer to cmd as JSON: exactly one line holding one object. */
static struct json_object *ctl_json(const char *cmd)
{
	char *a = ctl_ask(cmd);
	ck_assert_msg(strchr(a, '\n') == NULL, "%s: more than one line: %.300s", cmd, a);
	struct json_object *o = json_tokener_parse(a);
	ck_assert_msg(o != NULL && json_object_is_type(o, json_type_object),
		      "%s: not a JSON object: %.300s", cmd, a);
	free(a);
	return o;
}

/* The value at a dotted path ("clients.connected"), or NULL. */
static struct json_object *jget(struct json_object *o, const char *path)
{
	char key[128];
	while (o && *path) {
		size_t n = strcspn(path, ".");
		ck_assert(n < sizeof(key));
		memcpy(key, path, n);
		key[n] = '\0';
		if (!json_object_object_get_ex(o, key, &o))
			return NULL;
		path += n + (path[n] == '.');
	}
	return o;
}

static long long jint(struct json_object *o, const char *path)
{
	struct json_object *v = jget(o, path);
	ck_assert_msg(v != NULL, "no %s in %s", path, json_object_to_json_string(o));
	ck_assert_msg(json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double),
		      "%s is not a number", path);
	return (long long)json_object_get_int64(v);
}

static struct json_object *jarray(struct json_object *o, const char *path)
{
	struct json_object *v = jget(o, path);
	ck_assert_msg(v && json_object_is_type(v, json_type_array), "%s is not an array", path);
	return v;
}

/* ---- a Prometheus text format 0.0.4 checker ----------------------------------- */

#define PROM_FAMILIES 256

struct prom_family {
	char name[160];
	char type[64];
	int help, closed, samples;
	double last_bucket, inf, count;
	int saw_inf, saw_count;
};

struct prom {
	struct prom_family f[PROM_FAMILIES];
	int n;
	int cur;                /* the family whose samples come now, -1 */
	char seen[4096][200];   /* sample name+labels, for duplicates */
	int nseen;
};

static int prom_name_ok(const char *s, size_t n)
{
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
		if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
			return 0;
	}
	return 1;
}

static int prom_label_name_ok(const char *s, size_t n)
{
	return prom_name_ok(s, n) && !memchr(s, ':', n);
}

static struct prom_family *prom_find(struct prom *p, const char *name, size_t n)
{
	for (int i = 0; i < p->n; i++)
		if (strlen(p->f[i].name) == n && memcmp(p->f[i].name, name, n) == 0)
			return &p->f[i];
	return NULL;
}

static struct prom_family *prom_add(struct prom *p, const char *name, size_t n)
{
	struct prom_family *f = prom_find(p, name, n);
	if (f)
		return f;
	ck_assert_int_lt(p->n, PROM_FAMILIES);
	ck_assert(n < sizeof(p->f[0].name));
	f = &p->f[p->n++];
	memset(f, 0, sizeof(*f));
	memcpy(f->name, name, n);
	return f;
}

static int ends_with(const char *s, size_t n, const char *suf)
{
	size_t k = strlen(suf);
	return n >= k && memcmp(s + n - k, suf, k) == 0;
}

static double prom_value(const char *s, const char *line)
{
	if (strcmp(s, "+Inf") == 0)
		return INFINITY;
	if (strcmp(s, "-Inf") == 0)
		return -INFINITY;
	if (strcmp(s, "NaN") == 0)
		return NAN;
	char *end;
	double v = strtod(s, &end);
	ck_assert_msg(end != s && *end == '\0', "bad value in '%s'", line);
	return v;
}

/* Parses {a="x",b="y"}; sets *le to the le label's value (or "").  Returns
 * the position after '}'. */
static const char *prom_labels(const char *p, const char *line, char *le, size_t lecap)
{
	le[0] = '\0';
	p++;                                    /* '{' */
	while (*p != '}') {
		const char *eq = strchr(p, '=');
		ck_assert_msg(eq && prom_label_name_ok(p, (size_t)(eq - p)), "bad label in '%s'", line);
		int is_le = eq - p == 2 && memcmp(p, "le", 2) == 0;
		ck_assert_msg(eq[1] == '"', "unquoted label value in '%s'", line);
		size_t o = 0;
		for (p = eq + 2; *p != '"'; p++) {
			ck_assert_msg(*p && *p != '\n', "unterminated label value in '%s'", line);
			if (*p == '\\') {
				p++;
				ck_assert_msg(*p == '\\' || *p == '"' || *p == 'n', "bad escape in '%s'",
					      line);
			}
			if (is_le && o + 1 < lecap)
				le[o++] = *p;
		}
		if (is_le)
			le[o] = '\0';
		p++;
		ck_assert_msg(*p == ',' || *p == '}', "bad label list in '%s'", line);
		if (*p == ',')
			p++;
	}
	return p + 1;
}

static void prom_sample(struct prom *p, const char *line)
{
	size_t n = strcspn(line, "{ ");
	ck_assert_msg(prom_name_ok(line, n), "bad metric name in '%s'", line);
	char le[64] = "";
	const char *rest = line + n;
	if (*rest == '{')
		rest = prom_labels(rest, line, le, sizeof(le));
	ck_assert_msg(*rest == ' ', "no value in '%s'", line);
	char val[64];
	ck_assert_msg(sscanf(rest, " %63s", val) == 1, "no value in '%s'", line);
	double v = prom_value(val, line);

	/* duplicates */
	size_t id = (size_t)(rest - line);
	ck_assert(id < sizeof(p->seen[0]));
	for (int i = 0; i < p->nseen; i++)
		ck_assert_msg(strncmp(p->seen[i], line, id) != 0 || p->seen[i][id] != '\0',
			      "duplicate sample '%s'", line);
	ck_assert(p->nseen < 4096);
	memcpy(p->seen[p->nseen], line, id);
	p->seen[p->nseen++][id] = '\0';

	/* its family: itself, or a histogram without its suffix */
	struct prom_family *f = prom_find(p, line, n);
	const char *suffix = "";
	if (!f || !f->type[0]) {
		static const char *const sfx[] = { "_bucket", "_sum", "_count" };
		for (int i = 0; i < 3 && (!f || !f->type[0]); i++) {
			if (ends_with(line, n, sfx[i])) {
				f = prom_find(p, line, n - strlen(sfx[i]));
				suffix = sfx[i];
			}
		}
	}
	ck_assert_msg(f && f->type[0], "sample before its # TYPE: '%s'", line);
	ck_assert_msg(f->help, "sample before its # HELP: '%s'", line);
	ck_assert_msg(!f->closed, "samples of %s are not together: '%s'", f->name, line);
	int idx = (int)(f - p->f);
	if (p->cur >= 0 && p->cur != idx)
		p->f[p->cur].closed = 1;
	p->cur = idx;
	f->samples++;
	if (strcmp(f->type, "counter") == 0) {
		ck_assert_msg(ends_with(f->name, strlen(f->name), "_total"),
			      "counter %s does not end in _total", f->name);
		ck_assert_msg(v >= 0, "negative counter '%s'", line);
	} else if (strcmp(f->type, "histogram") == 0) {
		ck_assert_msg(*suffix, "histogram sample without _bucket/_sum/_count: '%s'", line);
		if (strcmp(suffix, "_bucket") == 0) {
			ck_assert_msg(le[0], "bucket without le: '%s'", line);
			ck_assert_msg(!f->saw_inf, "bucket after +Inf: '%s'", line);
			ck_assert_msg(v >= f->last_bucket, "buckets not cumulative: '%s'", line);
			f->last_bucket = v;
			if (strcmp(le, "+Inf") == 0) {
				f->saw_inf = 1;
				f->inf = v;
			}
		} else if (strcmp(suffix, "_count") == 0) {
			f->saw_count = 1;
			f->count = v;
		}
	}
}

static void prom_comment(struct prom *p, const char *line)
{
	char kw[8], name[200], rest[64];
	if (sscanf(line, "# %7s %199s %63s", kw, name, rest) < 2 ||
	    (strcmp(kw, "HELP") && strcmp(kw, "TYPE")))
		return;                         /* a plain comment */
	ck_assert_msg(prom_name_ok(name, strlen(name)), "bad name in '%s'", line);
	struct prom_family *f = prom_add(p, name, strlen(name));
	ck_assert_msg(!f->samples, "%s after the samples: '%s'", kw, line);
	if (strcmp(kw, "HELP") == 0) {
		ck_assert_msg(!f->help, "second HELP for %s", name);
		f->help = 1;
		return;
	}
	ck_assert_msg(!f->type[0], "second TYPE for %s", name);
	ck_assert_msg(strcmp(rest, "counter") == 0 || strcmp(rest, "gauge") == 0 ||
		      strcmp(rest, "histogram") == 0 || strcmp(rest, "summary") == 0 ||
		      strcmp(rest, "untyped") == 0, "bad type in '%s'", line);
	snprintf(f->type, sizeof(f->type), "%s", rest);
	if (strcmp(rest, "histogram") == 0)
		ck_assert_msg(ends_with(name, strlen(name), "_seconds"),
			      "histogram %s is not in _seconds", name);
	if (strstr(name, "bytes"))
		ck_assert_msg(ends_with(name, strlen(name), "_bytes") ||
			      ends_with(name, strlen(name), "_bytes_total"),
			      "%s: bytes must be the unit suffix", name);
}

/* Checks text line by line; returns the number of samples. */
static int prom_check(const char *text)
{
	static struct prom p;
	char line[4096];
	int samples = 0;

	memset(&p, 0, sizeof(p));
	p.cur = -1;
	ck_assert_msg(*text, "no metrics");
	while (*text) {
		size_t n = strcspn(text, "\n");
		ck_assert_msg(n > 0, "empty line in the metrics");
		ck_assert(n < sizeof(line));
		memcpy(line, text, n);
		line[n] = '\0';
		text += n + (text[n] == '\n');
		if (line[0] == '#') {
			prom_comment(&p, line);
		} else {
			prom_sample(&p, line);
			samples++;
		}
	}
	for (int i = 0; i < p.n; i++) {
		struct prom_family *f = &p.f[i];
		ck_assert_msg(f->type[0], "%s has HELP but no TYPE", f->name);
		if (strcmp(f->type, "histogram") == 0) {
			ck_assert_msg(f->saw_inf && f->saw_count, "%s: no +Inf bucket or no _count",
				      f->name);
			ck_assert_msg(f->inf == f->count, "%s: +Inf bucket %g != _count %g", f->name,
				      f->inf, f->count);
		}
	}
	return samples;
}

/* The value of the sample whose line starts with "name " or "name{...} ". */
static double prom_get(const char *text, const char *sample)
{
	size_t n = strlen(sample);
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, sample, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	}
	ck_abort_msg("no sample %s", sample);
	return 0;
}

/* promtool (Debian's prometheus package, tests/deps.sh) when it is
 * installed.  text may lack its last newline (ctl_answer() strips line
 * ends); the exposition format wants one after every line. */
static void promtool_check(const char *text)
{
	const char *pt = it_which("promtool");
	if (!pt) {
		fprintf(stderr, "SKIP promtool_check: promtool is not installed\n");
		return;
	}
	char cmd[4200], outp[400], msg[2048] = "";
	snprintf(outp, sizeof(outp), "%s/promtool.out", env.dir);
	snprintf(cmd, sizeof(cmd), "%s check metrics >%s 2>&1", pt, outp);
	FILE *f = popen(cmd, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	if (!*text || text[strlen(text) - 1] != '\n')
		fputc('\n', f);
	int st = pclose(f);
	FILE *o = fopen(outp, "r");
	if (o) {
		msg[fread(msg, 1, sizeof(msg) - 1, o)] = '\0';
		fclose(o);
	}
	unlink(outp);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "promtool check metrics failed: %s",
		      msg);
}

/* ---- tests: answers ------------------------------------------------------------ */

START_TEST(every_command_parses)
{
	struct json_object *o = ctl_json("STATS");
	ck_assert_int_ge(jint(o, "pid"), 1);
	ck_assert_int_ge(jint(o, "memory.rss_bytes"), 1);
	ck_assert_int_eq(jint(o, "clients.connected"), 0);
	ck_assert_int_eq(jint(o, "upstreams.total"), 4);           /* pool_size */
	ck_assert_int_ge(jint(o, "latency.push.count"), 0);
	ck_assert_ptr_nonnull(jget(o, "latency.push.p99_ms"));
	ck_assert_ptr_nonnull(jget(o, "latency.join.p50_ms"));
	ck_assert_ptr_nonnull(jget(o, "rates.in_per_s"));
	ck_assert_ptr_nonnull(jget(o, "cache"));
	jarray(o, "alerts");
	json_object_put(o);

	o = ctl_json("UPSTREAMS");
	ck_assert_int_eq(json_object_array_length(jarray(o, "upstreams")), 4);
	json_object_put(o);
	o = ctl_json("CLIENTS");
	jarray(o, "clients");
	json_object_put(o);
	o = ctl_json("ROUTES");
	ck_assert_int_eq(jint(o, "count"), 0);
	jarray(o, "routes");
	json_object_put(o);
	o = ctl_json("POOL");
	struct json_object *eps = jarray(o, "endpoints");
	ck_assert_int_eq(json_object_array_length(eps), 1);
	ck_assert_int_eq(jint(json_object_array_get_idx(eps, 0), "pool_size"), 4);
	ck_assert_int_eq(json_object_array_length(jarray(o, "slots")), 4);
	json_object_put(o);
	o = ctl_json("HISTORY");
	ck_assert_int_eq(jint(o, "size"), 5);
	ck_assert_int_eq(jint(o, "interval_ms"), 100);
	jarray(o, "samples");
	json_object_put(o);
	o = ctl_json("ALERTS");
	jarray(o, "active");
	ck_assert_int_eq(json_object_array_length(jarray(o, "alerts")), 4);
	json_object_put(o);
	o = ctl_json("stats");                                       /* any case */
	json_object_put(o);

	char *m = ctl_ask("METRICS");
	ck_assert_int_gt(prom_check(m), 50);
	promtool_check(m);
	ck_assert(prom_get(m, "phxd_clients") == 0);
	ck_assert(prom_get(m, "phxd_build_info{version=\"" PACKAGE_VERSION "\"}") == 1);
	ck_assert(prom_get(m, "phxd_resident_memory_bytes") > 0);
	free(m);

	char *r = ctl_ask("REPORT");
	ck_assert_msg(strncmp(r, "phxd ", 5) == 0, "report: %s", r);
	ck_assert_ptr_nonnull(strstr(r, "\npush latency"));
	ck_assert_ptr_nonnull(strstr(r, "\nalerts "));
	free(r);
	char *h = ctl_ask("HELP");
	ck_assert_ptr_nonnull(strstr(h, "STATS"));
	ck_assert_ptr_nonnull(strstr(h, "HISTORY [N]"));
	free(h);
}
END_TEST

START_TEST(bad_input_keeps_the_connection)
{
	struct it_client *c = ctl_open();
	it_send(c, "FROB");
	char *a = ctl_answer(c);
	ck_assert_str_eq(a, "ERR {\"reason\":\"unknown command\",\"detail\":\"HELP lists the commands\"}");
	free(a);
	it_send(c, "STATS now");
	a = ctl_answer(c);
	ck_assert_str_eq(a, "ERR {\"reason\":\"too many arguments\"}");
	free(a);
	const char *bad[] = { "HISTORY x", "HISTORY 0", "ROUTES -1", "ROUTES 99999999999" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		it_send(c, "%s", bad[i]);
		a = ctl_answer(c);
		ck_assert_msg(strncmp(a, "ERR {\"reason\":\"bad argument\"", 28) == 0, "%s: %s",
			      bad[i], a);
		free(a);
	}
	/* blank lines and comments get nothing; an overlong line one error */
	char *big = malloc(20001);
	memset(big, 'S', 20000);
	big[20000] = '\n';
	it_send_raw(c, "\n# a comment\n   \n", 17);
	it_send_raw(c, big, 20001);
	free(big);
	a = ctl_answer(c);
	ck_assert_msg(strncmp(a, "ERR {\"reason\":\"line too long\"", 29) == 0, "%s", a);
	free(a);
	it_send_raw(c, "\xff\xfe\n", 3);
	a = ctl_answer(c);
	ck_assert_msg(strncmp(a, "ERR {\"reason\":\"unknown command\"", 31) == 0, "%s", a);
	free(a);
	/* pipelined commands are answered in order; the connection still works */
	it_send_raw(c, "HISTORY 1\r\nALERTS\n", 18);
	a = ctl_answer(c);
	ck_assert_ptr_nonnull(strstr(a, "\"samples\""));
	free(a);
	a = ctl_answer(c);
	ck_assert_ptr_nonnull(strstr(a, "\"alerts\""));
	free(a);
	it_send(c, "quit");
	ck_assert(it_wait_eof(c, IT_TIMEOUT_MS));
	it_close(c);

	/* a last command without its newline, then EOF: answered, then closed */
	c = ctl_open();
	it_send_raw(c, "ALERTS", 6);
	shutdown(c->fd, SHUT_WR);
	a = ctl_answer(c);
	ck_assert_ptr_nonnull(strstr(a, "\"active\""));
	free(a);
	ck_assert(it_wait_eof(c, IT_TIMEOUT_MS));
	it_close(c);

	struct stat st;
	ck_assert_int_eq(stat(ctl_path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
}
END_TEST

/* ---- tests: counters ------------------------------------------------------------ */

START_TEST(counters_move_with_traffic)
{
	struct json_object *before = ctl_json("STATS");
	struct it_client *c = it_connect(&env);
	it_send(c, "JOIN room:count {\"n\":1}");
	IT_EXPECT(c, "OK JOIN room:count {\"n\":1}");
	for (int i = 0; i < 5; i++) {
		it_send(c, "PUSH room:count echo {\"i\":%d}", i);
		IT_EXPECT_PREFIX(c, "OK PUSH room:count ");
	}
	for (int i = 0; i < 3; i++) {
		ck_assert_str_eq(it_ctl(&env, "BROADCAST room:count news {\"x\":\"yz\"}"), "OK 1");
		IT_EXPECT(c, "EVENT room:count news {\"x\":\"yz\"}");
	}
	struct json_object *after = ctl_json("STATS");
	ck_assert_int_eq(jint(after, "router.joins") - jint(before, "router.joins"), 1);
	ck_assert_int_eq(jint(after, "router.pushes") - jint(before, "router.pushes"), 5);
	ck_assert_int_eq(jint(after, "router.replies") - jint(before, "router.replies"), 5);
	ck_assert_int_eq(jint(after, "router.events_in") - jint(before, "router.events_in"), 3);
	ck_assert_int_eq(jint(after, "latency.push.count") - jint(before, "latency.push.count"), 5);
	ck_assert_int_eq(jint(after, "latency.join.count") - jint(before, "latency.join.count"), 1);
	ck_assert_int_eq(jint(after, "clients.connected"), 1);
	ck_assert_int_eq(jint(after, "channels.joined"), 1);
	ck_assert_int_eq(jint(after, "channels.subscribers"), 1);
	ck_assert_int_ge(jint(after, "upstreams.open"), 1);
	ck_assert_int_gt(jint(after, "upstreams.bytes_out"), jint(before, "upstreams.bytes_out"));
	json_object_put(before);
	json_object_put(after);

	struct json_object *o = ctl_json("ROUTES");
	ck_assert_int_eq(jint(o, "count"), 1);
	struct json_object *r = json_object_array_get_idx(jarray(o, "routes"), 0);
	ck_assert_str_eq(json_object_get_string(jget(r, "topic")), "room:count");
	ck_assert_str_eq(json_object_get_string(jget(r, "endpoint")), "main");
	ck_assert_str_eq(json_object_get_string(jget(r, "state")), "joined");
	ck_assert_int_eq(jint(r, "subscribers"), 1);
	ck_assert_int_eq(jint(r, "msgs_out"), 5);
	ck_assert_int_eq(jint(r, "msgs_in"), 3);
	ck_assert_int_eq(jint(r, "bytes_in"), 3 * (long long)strlen("{\"x\":\"yz\"}"));
	ck_assert_int_ge(jint(r, "upstream"), 0);
	ck_assert_int_ge(jint(r, "idle_ms"), 0);
	ck_assert_int_gt(jint(r, "last_activity"), 1600000000000LL);
	json_object_put(o);

	o = ctl_json("CLIENTS");
	struct json_object *cl = json_object_array_get_idx(jarray(o, "clients"), 0);
	ck_assert_ptr_nonnull(cl);
	ck_assert_int_eq(jint(cl, "topics"), 1);
	ck_assert_int_eq(jint(cl, "pid"), getpid());
	json_object_put(o);

	o = ctl_json("UPSTREAMS");
	struct json_object *ups = jarray(o, "upstreams");
	long long chans = 0, open = 0;
	for (size_t i = 0; i < json_object_array_length(ups); i++) {
		struct json_object *u = json_object_array_get_idx(ups, i);
		chans += jint(u, "channels");
		open += strcmp(json_object_get_string(jget(u, "state")), "open") == 0;
	}
	ck_assert_int_eq(chans, 1);
	ck_assert_int_ge(open, 1);
	json_object_put(o);

	o = ctl_json("POOL");
	struct json_object *ep = json_object_array_get_idx(jarray(o, "endpoints"), 0);
	ck_assert_int_eq(jint(ep, "channels"), 1);
	ck_assert_int_ge(jint(ep, "open"), 1);
	json_object_put(o);

	char *m = ctl_ask("METRICS");
	prom_check(m);
	ck_assert(prom_get(m, "phxd_pushes_total") == 5);
	ck_assert(prom_get(m, "phxd_push_duration_seconds_count") == 5);
	ck_assert(prom_get(m, "phxd_events_total") == 3);
	ck_assert(prom_get(m, "phxd_clients") == 1);
	ck_assert(prom_get(m, "phxd_channels{endpoint=\"main\",state=\"joined\"}") == 1);
	ck_assert(prom_get(m, "phxd_upstream_frames_total{endpoint=\"main\",direction=\"in\"}") >= 9);
	free(m);

	/* the sampler sees it too */
	long end = it_now_ms() + IT_TIMEOUT_MS;
	for (;;) {
		o = ctl_json("HISTORY 1");
		struct json_object *s = json_object_array_get_idx(jarray(o, "samples"), 0);
		int seen = s && jint(s, "clients") == 1 && jint(s, "channels") == 1;
		json_object_put(o);
		if (seen)
			break;
		ck_assert_msg(it_now_ms() < end, "HISTORY never showed the client");
		usleep(50000);
	}
	char *rep = ctl_ask("REPORT");
	ck_assert_msg(strstr(rep, "room:count") != NULL, "no top topic in: %s", rep);
	free(rep);

	/* bad input is counted by kind */
	it_send(c, "FROB");
	IT_EXPECT_PREFIX(c, "ERR ? - {\"reason\":\"unknown verb\"");
	it_send(c, "PUSH room:count echo {nope");
	IT_EXPECT_PREFIX(c, "ERR PUSH room:count {\"reason\":\"invalid json\"");
	it_send(c, "JOIN");
	IT_EXPECT_PREFIX(c, "ERR JOIN - {\"reason\":\"missing topic\"");
	m = ctl_ask("METRICS");
	prom_check(m);
	ck_assert(prom_get(m, "phxd_client_bad_lines_total{kind=\"verb\"}") == 1);
	ck_assert(prom_get(m, "phxd_client_bad_lines_total{kind=\"json\"}") == 1);
	ck_assert(prom_get(m, "phxd_client_bad_lines_total{kind=\"missing\"}") == 1);
	ck_assert(prom_get(m, "phxd_client_bad_lines_total{kind=\"utf8\"}") == 0);
	free(m);
	o = ctl_json("STATS");
	ck_assert_int_eq(jint(o, "clients.bad_lines_by_kind.json"), 1);
	ck_assert_int_eq(jint(o, "clients.bad_lines"), 3);
	json_object_put(o);
	it_close(c);
}
END_TEST

/* VmRSS of pid in kB from /proc/PID/status; -1 when unknown. */
static long proc_rss_kb(pid_t pid)
{
	char path[64], line[256];
	long kb = -1;
	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

START_TEST(history_stays_bounded)
{
	long end = it_now_ms() + IT_TIMEOUT_MS;
	struct json_object *o;
	/* 100 ms samples into a ring of 5: full after ~0.5 s, then it turns over */
	for (;;) {
		o = ctl_json("HISTORY");
		if (jint(o, "count") == 5)
			break;
		ck_assert_int_lt(jint(o, "count"), 5);
		json_object_put(o);
		ck_assert_msg(it_now_ms() < end, "HISTORY did not fill up");
		usleep(100000);
	}
	long long first_t = jint(json_object_array_get_idx(jarray(o, "samples"), 0), "t");
	json_object_put(o);
	/* about 100 more samples over 10 s: the ring stays at its size, the
	 * memory flat */
	long rss0 = proc_rss_kb(env.phxd);
	ck_assert_int_gt(rss0, 0);
	long long last_t = first_t;
	for (int i = 0; i < 20; i++) {
		usleep(500000);
		o = ctl_json("HISTORY");
		ck_assert_int_eq(jint(o, "count"), 5);
		ck_assert_int_eq(json_object_array_length(jarray(o, "samples")), 5);
		long long t = jint(json_object_array_get_idx(jarray(o, "samples"), 4), "t");
		ck_assert_int_gt(t, last_t);            /* it kept sampling */
		last_t = t;
		json_object_put(o);
	}
	long rss1 = proc_rss_kb(env.phxd);
	/* generous (allocator noise, a valgrind wrapper); what it catches is
	 * growth with every sample or every answer */
	ck_assert_msg(rss1 <= rss0 + 4096, "RSS grew from %ld kB to %ld kB", rss0, rss1);
	o = ctl_json("HISTORY");
	ck_assert_int_eq(jint(o, "count"), 5);
	ck_assert_int_eq(jint(o, "size"), 5);
	struct json_object *s = jarray(o, "samples");
	ck_assert_int_eq(json_object_array_length(s), 5);
	long long prev = 0;
	for (size_t i = 0; i < 5; i++) {
		long long t = jint(json_object_array_get_idx(s, i), "t");
		ck_assert_int_gt(t, prev);     /* oldest first */
		prev = t;
	}
	ck_assert_int_gt(jint(json_object_array_get_idx(s, 0), "t"), first_t);
	json_object_put(o);
	o = ctl_json("HISTORY 2");
	ck_assert_int_eq(jint(o, "count"), 2);
	ck_assert_int_eq(json_object_array_length(jarray(o, "samples")), 2);
	json_object_put(o);
	o = ctl_json("HISTORY 1000");
	ck_assert_int_eq(jint(o, "count"), 5);
	json_object_put(o);
}
END_TEST

/* ---- tests: alerts ------------------------------------------------------------- */

static int alert_active(const char *name)
{
	struct json_object *o = ctl_json("ALERTS");
	struct json_object *a = jarray(o, "active");
	int found = 0;
	for (size_t i = 0; i < json_object_array_length(a); i++)
		found |= strcmp(json_object_get_string(json_object_array_get_idx(a, i)), name) == 0;
	json_object_put(o);
	return found;
}

/* Pushes (each answered) until ALERTS says want for name. */
static void push_until_alert(struct it_client *c, const char *name, int want)
{
	long end = it_now_ms() + 3 * IT_TIMEOUT_MS;
	while (alert_active(name) != want) {
		ck_assert_msg(it_now_ms() < end, "alert %s never became %d", name, want);
		it_send(c, "PUSH room:slow echo {}");
		IT_EXPECT(c, "OK PUSH room:slow {}");
	}
}

START_TEST(alert_raises_and_clears)
{
	struct stat st;
	ck_assert_int_eq(stat(ctl_path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0640);       /* control_socket_mode */

	struct it_client *c = it_connect(&env);
	it_send(c, "JOIN room:slow");
	IT_EXPECT(c, "OK JOIN room:slow {}");
	ck_assert(!alert_active("response_time"));
	ck_assert_str_eq(it_ctl(&env, "DELAY 400"), "OK");
	push_until_alert(c, "response_time", 1);
	/* it fires: listed everywhere, logged once */
	struct json_object *o = ctl_json("STATS");
	struct json_object *al = jarray(o, "alerts");
	ck_assert_int_eq(json_object_array_length(al), 1);
	ck_assert_str_eq(json_object_get_string(json_object_array_get_idx(al, 0)), "response_time");
	json_object_put(o);
	char *m = ctl_ask("METRICS");
	ck_assert(prom_get(m, "phxd_alert_active{alert=\"response_time\"}") == 1);
	free(m);
	o = ctl_json("ALERTS");
	struct json_object *a = json_object_array_get_idx(jarray(o, "alerts"), 3);
	ck_assert_str_eq(json_object_get_string(jget(a, "name")), "response_time");
	ck_assert_str_eq(json_object_get_string(jget(a, "state")), "firing");
	ck_assert_int_eq(jint(a, "threshold"), 200);
	ck_assert_int_gt(jint(a, "value"), 200);
	json_object_put(o);
	char *r = ctl_ask("REPORT");
	ck_assert_msg(strstr(r, "response_time: push reply time p99") != NULL, "%s", r);
	free(r);
	/* still slow for a while: no second log line */
	for (int i = 0; i < 3; i++) {
		it_send(c, "PUSH room:slow echo {}");
		IT_EXPECT(c, "OK PUSH room:slow {}");
	}
	ck_assert(alert_active("response_time"));
	ck_assert_int_eq(it_log_count(&env, "alert raised: response_time"), 1);
	ck_assert_int_eq(it_log_count(&env, "alert cleared: response_time"), 0);

	ck_assert_str_eq(it_ctl(&env, "DELAY 0"), "OK");
	push_until_alert(c, "response_time", 0);
	/* the cleared state is logged once too */
	for (int i = 0; i < 10; i++) {
		it_send(c, "PUSH room:slow echo {}");
		IT_EXPECT(c, "OK PUSH room:slow {}");
		usleep(30000);
	}
	ck_assert_int_eq(it_log_count(&env, "alert raised: response_time"), 1);
	ck_assert_int_eq(it_log_count(&env, "alert cleared: response_time"), 1);
	o = ctl_json("ALERTS");
	a = json_object_array_get_idx(jarray(o, "alerts"), 3);
	ck_assert_str_eq(json_object_get_string(jget(a, "state")), "ok");
	ck_assert_int_eq(jint(a, "raised"), 1);
	json_object_put(o);
	/* turned off alerts say so */
	o = ctl_json("ALERTS");
	a = json_object_array_get_idx(jarray(o, "alerts"), 0);
	ck_assert_str_eq(json_object_get_string(jget(a, "name")), "memory");
	ck_assert_str_eq(json_object_get_string(jget(a, "state")), "off");
	json_object_put(o);
	it_close(c);
}
END_TEST

/* A server that stops replying: the pushes time out (push_timeout 300 ms),
 * which raises response_time though no reply ever comes; when nobody pushes
 * any more, the alert clears as stale (twice join_timeout, 3 s, without data). */
START_TEST(alert_raises_on_timeouts)
{
	struct it_client *c = it_connect(&env);
	it_send(c, "JOIN room:mute");
	IT_EXPECT(c, "OK JOIN room:mute {}");
	ck_assert(!alert_active("response_time"));
	long end = it_now_ms() + 3 * IT_TIMEOUT_MS;
	int pushes = 0;
	while (!alert_active("response_time")) {
		ck_assert_msg(it_now_ms() < end, "response_time never raised on timeouts");
		it_send(c, "PUSH room:mute noreply {}");
		IT_EXPECT_PREFIX(c, "ERR PUSH room:mute {\"reason\":\"timeout\"");
		pushes++;
	}
	/* one timeout per sample at most here: it takes three in a row */
	ck_assert_int_ge(pushes, 3);
	ck_assert_int_eq(it_log_count(&env, "alert raised: response_time: pushes got no reply within "
				   "300 ms"), 1);
	struct json_object *o = ctl_json("ALERTS");
	struct json_object *a = json_object_array_get_idx(jarray(o, "alerts"), 3);
	ck_assert_str_eq(json_object_get_string(jget(a, "name")), "response_time");
	ck_assert_str_eq(json_object_get_string(jget(a, "state")), "firing");
	ck_assert(json_object_get_boolean(jget(a, "timed_out")));
	ck_assert_int_eq(jint(a, "value"), 300);
	ck_assert_int_eq(jint(a, "samples"), 3);
	json_object_put(o);
	o = ctl_json("HISTORY");
	struct json_object *s = jarray(o, "samples");
	long long timeouts = 0;
	for (size_t i = 0; i < json_object_array_length(s); i++)
		timeouts += jint(json_object_array_get_idx(s, i), "push_timeouts");
	ck_assert_int_ge(timeouts, 3);              /* the last may not be sampled yet */
	ck_assert_int_le(timeouts, pushes);
	json_object_put(o);
	char *r = ctl_ask("REPORT");
	ck_assert_msg(strstr(r, "response_time: pushes got no reply within 300 ms") != NULL,
		      "%s", r);
	free(r);

	/* nothing more: no data, and after 2 x 3 s of it the alert is stale */
	end = it_now_ms() + 3 * IT_TIMEOUT_MS;
	while (alert_active("response_time")) {
		ck_assert_msg(it_now_ms() < end, "response_time never cleared without data");
		usleep(100000);
	}
	ck_assert_int_eq(it_log_count(&env, "alert cleared: response_time: nothing measured for 60 "
				   "samples"), 1);
	o = ctl_json("ALERTS");
	a = json_object_array_get_idx(jarray(o, "alerts"), 3);
	ck_assert_str_eq(json_object_get_string(jget(a, "state")), "ok");
	ck_assert(json_object_get_boolean(jget(a, "stale")));
	json_object_put(o);
	it_close(c);
}
END_TEST

/* ---- tests: HTTP ------------------------------------------------------------ */

/* Sends req on fd and reads until the server closes; the response, malloc'ed. */
static char *http_exchange(int fd, const char *req, size_t *len)
{
	size_t cap = 1 << 16, n = 0;
	char *out = malloc(cap + 1);
	ck_assert_ptr_nonnull(out);
	if (*req)
		ck_assert_int_eq(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
	long end = it_now_ms() + IT_TIMEOUT_MS;
	for (;;) {
		struct pollfd p = { fd, POLLIN, 0 };
		int left = (int)(end - it_now_ms());
		ck_assert_msg(left > 0 && poll(&p, 1, left) == 1, "no end of the HTTP response");
		if (n == cap) {
			cap *= 2;
			out = realloc(out, cap + 1);
			ck_assert_ptr_nonnull(out);
		}
		ssize_t r = read(fd, out + n, cap - n);
		if (r == 0 || (r < 0 && errno == ECONNRESET))
			break;
		ck_assert_int_gt(r, 0);
		n += (size_t)r;
	}
	close(fd);
	out[n] = '\0';
	*len = n;
	return out;
}

/* Checks the status line and Content-Length; returns the body. */
static const char *http_body(const char *resp, size_t len, int status)
{
	char want[32];
	snprintf(want, sizeof(want), "HTTP/1.1 %d ", status);
	ck_assert_msg(strncmp(resp, want, strlen(want)) == 0, "response: %.200s", resp);
	const char *body = strstr(resp, "\r\n\r\n");
	ck_assert_ptr_nonnull(body);
	body += 4;
	const char *cl = strcasestr(resp, "\r\nContent-Length: ");
	ck_assert_ptr_nonnull(cl);
	ck_assert(cl < body);
	ck_assert_int_eq(strtoul(cl + 18, NULL, 10), len - (size_t)(body - resp));
	return body;
}

static int tcp_fd(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_msg(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect :%d: %s",
		      port, strerror(errno));
	return fd;
}

START_TEST(http_metrics)
{
	size_t len;
	char *r = http_exchange(unix_fd(ctl_path), "GET /metrics HTTP/1.1\r\nHost: x\r\n"
				"User-Agent: it_ctl\r\nAccept: */*\r\n\r\n", &len);
	const char *body = http_body(r, len, 200);
	ck_assert_ptr_nonnull(strcasestr(r, "\r\nContent-Type: text/plain; version=0.0.4"));
	ck_assert_int_gt(prom_check(body), 50);
	free(r);

	/* query strings are ignored; HEAD has no body */
	r = http_exchange(unix_fd(ctl_path), "HEAD /metrics?x=1 HTTP/1.0\r\n\r\n", &len);
	ck_assert_str_eq(strstr(r, "\r\n\r\n"), "\r\n\r\n");
	ck_assert(strncmp(r, "HTTP/1.1 200 ", 13) == 0);
	free(r);
	r = http_exchange(unix_fd(ctl_path), "GET /nope HTTP/1.1\r\n\r\n", &len);
	http_body(r, len, 404);
	free(r);
	r = http_exchange(unix_fd(ctl_path), "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
			  &len);
	http_body(r, len, 405);
	ck_assert_ptr_nonnull(strstr(r, "\r\nAllow: GET, HEAD\r\n"));
	free(r);

	/* metrics_listen: the same over TCP, and nothing but HTTP */
	r = http_exchange(tcp_fd(metrics_port), "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
			  &len);
	body = http_body(r, len, 200);
	prom_check(body);
	free(r);
	r = http_exchange(tcp_fd(metrics_port), "STATS\n", &len);
	http_body(r, len, 400);
	free(r);

	const char *curl = it_which("curl");
	if (curl) {
		char cmd[1024], out[65536];
		snprintf(cmd, sizeof(cmd), "%s -sf --unix-socket %s http://x/metrics", curl, ctl_path);
		FILE *f = popen(cmd, "r");
		ck_assert_ptr_nonnull(f);
		size_t n = fread(out, 1, sizeof(out) - 1, f);
		out[n] = '\0';
		ck_assert_int_eq(pclose(f), 0);
		ck_assert_ptr_nonnull(strstr(out, "\nphxd_uptime_seconds "));
	}
}
END_TEST

/* The answer to req on a fresh control socket connection whose sending side
 * is shut after req: a status line, Connection: close, and no ERR lines. */
static void http_bad(const char *req, int shut, int status)
{
	size_t len;
	int fd = unix_fd(ctl_path);
	if (shut) {
		ck_assert_int_eq(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
		shutdown(fd, SHUT_WR);
		req = "";
	}
	char *r = http_exchange(fd, req, &len);
	http_body(r, len, status);
	ck_assert_msg(strstr(r, "\r\nConnection: close\r\n") != NULL, "%s: %s", req, r);
	ck_assert_msg(strstr(r, "ERR ") == NULL, "%s: %s", req, r);
	free(r);
}

START_TEST(http_malformed)
{
	/* looks like HTTP, is not valid: 400, or 505 for another version */
	http_bad("GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n", 0, 505);
	http_bad("GET /metrics HTTP/2\r\n\r\n", 0, 505);
	http_bad("GET /metrics HTTP/1.2\r\n\r\n", 0, 505);
	http_bad("get /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 0, 400);
	http_bad("GET /a b HTTP/1.1\r\n\r\n", 0, 400);
	http_bad("GET /metrics HTTP/1.1 x\r\n\r\n", 0, 400);
	http_bad("GET  HTTP/1.1\r\n\r\n", 0, 400);
	/* a head cut by EOF */
	http_bad("GET /metrics HTTP/1.1\r\nHost: x\r\n", 1, 400);
	http_bad("GET /metrics HTTP/1.1", 1, 400);
	http_bad("GET /metrics HTTP/1.1\r\nHost: x", 1, 400);
	/* the same on metrics_listen */
	size_t len;
	char *r = http_exchange(tcp_fd(metrics_port), "GET /metrics HTTP/3\r\n\r\n", &len);
	http_body(r, len, 505);
	free(r);
	/* only a first line can start HTTP: later it is a command like any */
	struct it_client *c = ctl_open();
	it_send(c, "HELP");
	free(ctl_answer(c));
	it_send(c, "GET /metrics HTTP/1.1");
	char *a = ctl_answer(c);
	ck_assert_str_eq(a, "ERR {\"reason\":\"unknown command\",\"detail\":\"HELP lists the commands\"}");
	free(a);
	it_close(c);
}
END_TEST

/* Scrapers holding every metrics_listen slot do not lock the operator out:
 * the control socket has slots of its own, and an idle HTTP connection is
 * answered 408 and closed after the request head timeout (10 s). */
START_TEST(idle_scrapers_do_not_lock_out)
{
	enum { CAP = 32 };                      /* CTL_MAX_TCP */
	int fds[CAP];
	char *m = ctl_ask("METRICS");
	double before = prom_get(m, "phxd_control_connections_total");
	free(m);
	for (int i = 0; i < CAP; i++)
		fds[i] = tcp_fd(metrics_port);
	/* until phxd has accepted them all (each METRICS ask counts one more) */
	long end = it_now_ms() + IT_TIMEOUT_MS;
	for (int asks = 1;; asks++) {
		m = ctl_ask("METRICS");
		double now = prom_get(m, "phxd_control_connections_total");
		free(m);
		if (now - before - asks >= CAP)
			break;
		ck_assert_msg(it_now_ms() < end, "phxd did not accept %d connections", CAP);
		usleep(20000);
	}
	/* one more scraper is refused; the control socket still answers */
	size_t len;
	char *r = http_exchange(tcp_fd(metrics_port), "GET /metrics HTTP/1.1\r\n\r\n", &len);
	ck_assert_msg(strncmp(r, "HTTP/1.1 503 ", 13) == 0, "%s", r);
	free(r);
	struct json_object *o = ctl_json("STATS");
	ck_assert_int_ge(jint(o, "pid"), 1);
	json_object_put(o);
	r = http_exchange(unix_fd(ctl_path), "GET /metrics HTTP/1.1\r\n\r\n", &len);
	http_body(r, len, 200);
	free(r);
	/* the idle ones get 408 and are closed */
	for (int i = 0; i < CAP; i++) {
		char buf[512];
		size_t n = 0;
		long until = it_now_ms() + 30000;
		for (;;) {
			struct pollfd p = { fds[i], POLLIN, 0 };
			int left = (int)(until - it_now_ms());
			ck_assert_msg(left > 0 && poll(&p, 1, left) == 1, "idle connection %d not closed",
				      i);
			ssize_t k = read(fds[i], buf + n, sizeof(buf) - 1 - n);
			if (k <= 0)
				break;
			n += (size_t)k;
		}
		buf[n] = '\0';
		ck_assert_msg(strncmp(buf, "HTTP/1.1 408 ", 13) == 0, "%d: %s", i, buf);
		close(fds[i]);
	}
	m = ctl_ask("METRICS");
	ck_assert(prom_get(m, "phxd_control_timeouts_total") >= CAP);
	ck_assert(prom_get(m, "phxd_control_refused_total") == 1);
	free(m);
	/* and scrapes work again */
	r = http_exchange(tcp_fd(metrics_port), "GET /metrics HTTP/1.1\r\n\r\n", &len);
	http_body(r, len, 200);
	free(r);
}
END_TEST

START_TEST(non_loopback_metrics_listen_is_refused)
{
	char conf[300], errf[300];
	snprintf(conf, sizeof(conf), "%s/bad.conf", env.dir);
	snprintf(errf, sizeof(errf), "%s/bad.err", env.dir);
	const char *cases[][2] = {
		{ "metrics_listen = 0.0.0.0:9187", "is not a loopback address" },
		{ "metrics_listen = 192.168.1.1:9187", "is not a loopback address" },
		{ "metrics_listen = 127.0.0.1", "metrics_listen: bad value" },
		{ "metrics_listen = [::1]:0", "metrics_listen: bad value" },
		{ "history_size = 0", "history_size: bad value" },
		{ "alert_cache_hit_rate = 101", "alert_cache_hit_rate: bad value" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		FILE *f = fopen(conf, "w");
		ck_assert_ptr_nonnull(f);
		fprintf(f, "%s\n[endpoint main]\nurl = ws://127.0.0.1:1/socket\n", cases[i][0]);
		fclose(f);
		int efd = open(errf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		char *argv[] = { (char *)it_env_or("PHXD_BIN", "./phxd"), "-t", "-c", conf, NULL };
		pid_t pid = it_spawn(argv, NULL, efd);
		close(efd);
		ck_assert_int_eq(it_wait_exit(pid, IT_TIMEOUT_MS), 1);
		char msg[1024] = "";
		f = fopen(errf, "r");
		ck_assert_ptr_nonnull(f);
		size_t n = fread(msg, 1, sizeof(msg) - 1, f);
		msg[n] = '\0';
		fclose(f);
		ck_assert_msg(strstr(msg, cases[i][1]) && strstr(msg, "bad.conf:1: "),
			      "%s: %s", cases[i][0], msg);
	}
	unlink(conf);
	unlink(errf);
}
END_TEST

/* ---- tests: phxctl --------------------------------------------------------------- */

static char phxctl_bin[600];
static char phxctl_err[300];

/* Runs "phxctl ARGS" through the shell: its exit status, stdout in out,
 * stderr in phxctl_err (a file). */
static int phxctl(char *out, size_t cap, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int phxctl(char *out, size_t cap, const char *fmt, ...)
{
	char args[2048], cmd[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd), "%s %s 2>%s", phxctl_bin, args, phxctl_err);
	FILE *f = popen(cmd, "r");
	ck_assert_ptr_nonnull(f);
	size_t n = fread(out, 1, cap - 1, f);
	out[n] = '\0';
	int st = pclose(f);
	ck_assert_msg(WIFEXITED(st), "phxctl %s: killed", args);
	return WEXITSTATUS(st);
}

static const char *phxctl_stderr(void)
{
	static char msg[4096];
	FILE *f = fopen(phxctl_err, "r");
	ck_assert_ptr_nonnull(f);
	size_t n = fread(msg, 1, sizeof(msg) - 1, f);
	msg[n] = '\0';
	fclose(f);
	return msg;
}

static void phxctl_paths(void)
{
	snprintf(phxctl_bin, sizeof(phxctl_bin), "%s/phxctl", it_env_or("PHX_BUILDDIR", "."));
	snprintf(phxctl_err, sizeof(phxctl_err), "%s/phxctl.err", env.dir);
}

START_TEST(phxctl_control_commands)
{
	static char out[1 << 20];
	phxctl_paths();
	ck_assert_int_eq(phxctl(out, sizeof(out), "-c %s stats", ctl_path), 0);
	struct json_object *o = json_tokener_parse(out);       /* piped: raw */
	ck_assert_msg(o != NULL, "stats: %s", out);
	ck_assert_int_eq(jint(o, "clients.connected"), 0);
	json_object_put(o);
	const char *cmds[] = { "upstreams", "clients", "routes", "routes 3", "pool", "history",
			       "history 2", "alerts" };
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		ck_assert_int_eq(phxctl(out, sizeof(out), "-c %s %s", ctl_path, cmds[i]), 0);
		o = json_tokener_parse(out);
		ck_assert_msg(o != NULL, "%s: %s", cmds[i], out);
		json_object_put(o);
	}
	ck_assert_int_eq(phxctl(out, sizeof(out), "-c %s metrics", ctl_path), 0);
	prom_check(out);
	ck_assert_int_eq(phxctl(out, sizeof(out), "-c %s report", ctl_path), 0);
	ck_assert(strncmp(out, "phxd ", 5) == 0);
	/* --pretty: indented JSON, and tables */
	ck_assert_int_eq(phxctl(out, sizeof(out), "-P -c %s stats", ctl_path), 0);
	ck_assert_ptr_nonnull(strstr(out, "\n  \"clients\": {\n"));
	ck_assert_int_eq(phxctl(out, sizeof(out), "--pretty -c %s upstreams", ctl_path), 0);
	ck_assert_msg(strncmp(out, "upstreams (4)\nendpoint  index  state", 36) == 0, "%s", out);

	/* usage and connection errors: 2 */
	ck_assert_int_eq(phxctl(out, sizeof(out), "-c %s routes x", ctl_path), 2);
	ck_assert_int_eq(phxctl(out, sizeof(out), "-c %s stats extra", ctl_path), 2);
	ck_assert_int_eq(phxctl(out, sizeof(out), "-c %s frob", ctl_path), 2);
	ck_assert_int_eq(phxctl(out, sizeof(out), "-c %s/none.sock stats", env.dir), 2);
	ck_assert_ptr_nonnull(strstr(phxctl_stderr(), "cannot connect"));
	/* no -c, no $PHXD_CONTROL: control.sock beside --socket or $PHXD_SOCKET */
	ck_assert_int_eq(phxctl(out, sizeof(out), "-s %s stats", env.sock), 0);
	o = json_tokener_parse(out);
	ck_assert_msg(o != NULL, "stats beside -s: %s", out);
	json_object_put(o);
	ck_assert_int_eq(phxctl(out, sizeof(out), "--socket=%s alerts", env.sock), 0);
	ck_assert_ptr_nonnull(strstr(out, "\"active\""));
	ck_assert_int_eq(phxctl(out, sizeof(out), "-s %s/nowhere/phxd.sock stats", env.dir), 2);
	ck_assert_msg(strstr(phxctl_stderr(), "/nowhere/control.sock") != NULL, "%s",
		      phxctl_stderr());
	setenv("PHXD_SOCKET", env.sock, 1);
	ck_assert_int_eq(phxctl(out, sizeof(out), "stats"), 0);
	/* -c and $PHXD_CONTROL win over the socket's directory */
	ck_assert_int_eq(phxctl(out, sizeof(out), "-c %s/none.sock stats", env.dir), 2);
	setenv("PHXD_CONTROL", ctl_path, 1);
	ck_assert_int_eq(phxctl(out, sizeof(out), "-s %s/nowhere/phxd.sock stats", env.dir), 0);
	unsetenv("PHXD_CONTROL");
	unsetenv("PHXD_SOCKET");
	ck_assert_int_eq(phxctl(out, sizeof(out), "%s", ""), 2);
	ck_assert_int_eq(phxctl(out, sizeof(out), "--help"), 0);
	ck_assert_ptr_nonnull(strstr(out, "Usage: phxctl"));
	unlink(phxctl_err);
}
END_TEST

/* phxctl join TOPIC with its stdout on a pipe; *out_fd reads it. */
static pid_t phxctl_join(const char *topic, const char *params, int *out_fd)
{
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	pid_t parent = getpid();
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		dup2(p[1], STDOUT_FILENO);
		int efd = open(phxctl_err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (efd >= 0)
			dup2(efd, STDERR_FILENO);
		close(p[0]);
		close(p[1]);
		execl(phxctl_bin, phxctl_bin, "-s", env.sock, "join", topic, params, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	*out_fd = p[0];
	return pid;
}

START_TEST(phxctl_push_and_join)
{
	static char out[65536];
	phxctl_paths();
	ck_assert_int_eq(phxctl(out, sizeof(out), "-s %s push room:x echo '{\"a\": [1, 2]}'",
				env.sock), 0);
	ck_assert_str_eq(out, "{\"a\":[1,2]}\n");
	ck_assert_int_eq(phxctl(out, sizeof(out), "-s %s push room:x echo", env.sock), 0);
	ck_assert_str_eq(out, "{}\n");
	/* a payload over several lines is sent on one */
	ck_assert_int_eq(phxctl(out, sizeof(out), "-s %s push room:x echo '{\n\"b\": 1\n}'",
				env.sock), 0);
	ck_assert_str_eq(out, "{\"b\":1}\n");
	/* the server says error: 1, with the reason */
	ck_assert_int_eq(phxctl(out, sizeof(out), "-s %s push room:x fail '{}'", env.sock), 1);
	ck_assert_ptr_nonnull(strstr(phxctl_stderr(), "failed"));
	ck_assert_int_eq(phxctl(out, sizeof(out), "-s %s push private:x echo '{}'", env.sock), 1);
	ck_assert_ptr_nonnull(strstr(phxctl_stderr(), "unauthorized"));
	ck_assert_int_eq(phxctl(out, sizeof(out), "-s %s -p '{\"token\":\"secret\"}' push "
				"private:x echo '{\"ok\":1}'", env.sock), 0);
	ck_assert_str_eq(out, "{\"ok\":1}\n");
	ck_assert_int_eq(phxctl(out, sizeof(out), "-s %s -e nope push room:x echo", env.sock), 1);
	ck_assert_ptr_nonnull(strstr(phxctl_stderr(), "unknown endpoint"));
	/* usage, timeout, connection: 2 */
	ck_assert_int_eq(phxctl(out, sizeof(out), "-s %s push room:x echo 'not json'", env.sock), 2);
	ck_assert_int_eq(phxctl(out, sizeof(out), "-s %s push 'room x' echo", env.sock), 2);
	ck_assert_int_eq(phxctl(out, sizeof(out), "-s %s -t 0.3 push room:x noreply '{}'",
				env.sock), 2);
	ck_assert_ptr_nonnull(strstr(phxctl_stderr(), "no reply"));
	ck_assert_int_eq(phxctl(out, sizeof(out), "-s %s/none.sock push room:x echo", env.dir), 2);

	/* join: refused → 1 */
	ck_assert_int_eq(phxctl(out, sizeof(out), "-s %s join private:y", env.sock), 1);
	ck_assert_ptr_nonnull(strstr(phxctl_stderr(), "unauthorized"));

	/* join: the topic's events, one line each, until interrupted */
	int fd;
	pid_t pid = phxctl_join("room:j", "{\"who\":\"it\"}", &fd);
	ck_assert(it_wait_channels(&env, "room:j", 1, IT_TIMEOUT_MS));
	ck_assert_str_eq(it_ctl(&env, "BROADCAST room:j news {\"n\":1}"), "OK 1");
	ck_assert_str_eq(it_ctl(&env, "BROADCAST room:j news {\"n\":2}"), "OK 1");
	ck_assert_str_eq(it_ctl(&env, "BBROADCAST room:j blob AAEC"), "OK 1");
	char line[1024];
	ck_assert_int_eq(it_fd_line(fd, line, sizeof(line), IT_TIMEOUT_MS), 0);
	ck_assert_str_eq(line, "EVENT room:j news {\"n\":1}");
	ck_assert_int_eq(it_fd_line(fd, line, sizeof(line), IT_TIMEOUT_MS), 0);
	ck_assert_str_eq(line, "EVENT room:j news {\"n\":2}");
	ck_assert_int_eq(it_fd_line(fd, line, sizeof(line), IT_TIMEOUT_MS), 0);
	ck_assert_str_eq(line, "BEVENT room:j blob AAEC");
	ck_assert_int_eq(kill(pid, SIGINT), 0);
	ck_assert_int_eq(it_wait_exit(pid, IT_TIMEOUT_MS), 0);
	close(fd);
	ck_assert(it_wait_channels(&env, "room:j", 0, IT_TIMEOUT_MS));

	/* the server closes the channel: 1 */
	pid = phxctl_join("room:k", "{}", &fd);
	ck_assert(it_wait_channels(&env, "room:k", 1, IT_TIMEOUT_MS));
	ck_assert_str_eq(it_ctl(&env, "KICK room:k"), "OK 1");
	ck_assert_int_eq(it_wait_exit(pid, IT_TIMEOUT_MS), 1);
	close(fd);
	unlink(phxctl_err);
}
END_TEST

/* ---- socket activation: the "control" descriptor is served --------------------- */

START_TEST(activated_control_socket)
{
#ifndef HAVE_SYSTEMD
	SKIP_IF(1, "phxd is built --without-systemd");
#endif
	SKIP_IF(!it_which("systemd-socket-activate"), "systemd-socket-activate is not installed");
	char ipc[300], ctl[300], wrap[512], san[2][512];
	char *argv[48];
	int argc = 0;

	unlink(env.log);
	it_env_stop(&env);              /* the fixture's phxd: not needed here */
	shm_unlink(shm_name);
	it_env_prepare(&env);
	it_sim_start(&env, NULL);
	shm_names();
	it_write_conf(&env, shm_line, NULL);
	snprintf(ipc, sizeof(ipc), "%s/act.sock", env.dir);
	snprintf(ctl, sizeof(ctl), "%s/act-ctl.sock", env.dir);
	argv[argc++] = "systemd-socket-activate";
	argv[argc++] = "-l";
	argv[argc++] = ipc;
	argv[argc++] = "-l";
	argv[argc++] = ctl;
	argv[argc++] = "--fdname=ipc:control";
	argc = it_activate_tail(&env, argv, argc, san, wrap, sizeof(wrap));
	env.phxd = it_spawn(argv, NULL, -1);
	ck_assert(it_wait_path(ctl, env.phxd, IT_TIMEOUT_MS));
	/* the first connection starts phxd, which then serves it */
	snprintf(ctl_path, sizeof(ctl_path), "%s", ctl);
	struct json_object *o = ctl_json("STATS");
	ck_assert_int_eq(jint(o, "clients.connected"), 0);
	json_object_put(o);
	struct stat st;
	char unused[300];
	snprintf(unused, sizeof(unused), "%s/control.sock", env.dir);
	ck_assert_int_ne(stat(unused, &st), 0);         /* nothing bound by phxd */
	ck_assert_int_eq(kill(env.phxd, SIGTERM), 0);
	ck_assert_int_eq(it_wait_exit(env.phxd, 5000), 0);
	env.phxd = 0;
	unlink(ipc);
	unlink(ctl);
	snprintf(ctl_path, sizeof(ctl_path), "%s/gone.sock", env.dir);
}
END_TEST

/* ---- tests: phxctl routes --shm --------------------------------------------------- */

/* The route of topic in a `routes --shm` answer, NULL when not listed. */
static struct json_object *shm_route(struct json_object *o, const char *topic)
{
	struct json_object *rs = jarray(o, "routes");
	for (size_t i = 0; i < json_object_array_length(rs); i++) {
		struct json_object *r = json_object_array_get_idx(rs, i);
		if (strcmp(json_object_get_string(jget(r, "topic")), topic) == 0)
			return r;
	}
	return NULL;
}

/* "phxctl ARGS" piped, which must succeed: its JSON (the caller puts it). */
static struct json_object *shm_routes(const char *args)
{
	static char out[1 << 20];
	int st = phxctl(out, sizeof(out), "%s", args);
	ck_assert_msg(st == 0, "%s: status %d: %s", args, st, phxctl_stderr());
	struct json_object *o = json_tokener_parse(out);
	ck_assert_msg(o != NULL, "%s: not JSON: %.300s", args, out);
	return o;
}

/* Runs "phxctl ARGS" as uid 65534 when we are root (who may read anything),
 * else as ourselves: its exit status; stdout and stderr in out. */
static int phxctl_unprivileged(char *out, size_t cap, const char *args)
{
	char cmd[2048];
	int p[2], st;
	snprintf(cmd, sizeof(cmd), "%s %s 2>&1", phxctl_bin, args);
	ck_assert_int_eq(pipe(p), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(p[1], STDOUT_FILENO);
		close(p[0]);
		close(p[1]);
		if (geteuid() == 0 && (setgroups(0, NULL) < 0 || setgid(65534) < 0 ||
				       setuid(65534) < 0))
			_exit(99);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(98);
	}
	close(p[1]);
	size_t n = 0;
	ssize_t r;
	while (n + 1 < cap && (r = read(p[0], out + n, cap - 1 - n)) > 0)
		n += (size_t)r;
	out[n] = '\0';
	close(p[0]);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st));
	return WEXITSTATUS(st);
}

/* `phxctl routes --shm` reads phxd's route cache segment itself: the topics
 * phxd joined and left, with their state and slot; its default name is the
 * one phxd derives from the client socket; a missing, foreign or unreadable
 * segment is a clear error with status 2. */
START_TEST(phxctl_routes_shm)
{
	static const char *const topics[] = { "room:shm1", "room:shm2", "room:sh\\\\m3" };
	static char out[1 << 16];
	char args[1024], name[300], other[300];
	phxctl_paths();

	/* phxd's own segment (route_cache_name): two joined, one left. */
	struct it_client *c = it_connect(&env);
	it_send(c, "JOIN room:shm1 room:shm2 {}");
	IT_EXPECT_PREFIX(c, "OK JOIN room:shm1 ");
	IT_EXPECT_PREFIX(c, "OK JOIN room:shm2 ");
	it_send(c, "JOIN room:sh\\\\m3 {}");
	IT_EXPECT_PREFIX(c, "OK JOIN room:sh\\\\m3 ");
	it_send(c, "LEAVE room:shm2");
	IT_EXPECT(c, "OK LEAVE room:shm2 {}");
	struct json_object *o = NULL;
	snprintf(args, sizeof(args), "routes --shm %s", shm_name);
	long end = it_now_ms() + IT_TIMEOUT_MS;
	for (;;) {      /* the cache hears of the leave when phxd ends the channel */
		o = shm_routes(args);
		struct json_object *r2 = shm_route(o, "room:shm2");
		if (r2 && strcmp(json_object_get_string(jget(r2, "state")), "none") == 0)
			break;
		json_object_put(o);
		ck_assert_msg(it_now_ms() < end, "room:shm2 never became none");
		usleep(20000);
	}
	struct json_object *ctl = ctl_json("ROUTES");
	ck_assert_str_eq(json_object_get_string(jget(o, "segment")), shm_name);
	ck_assert_int_eq(jint(o, "count"), 3);
	ck_assert_int_eq(jint(o, "entries"), 3);
	ck_assert_int_eq(jint(o, "capacity"), 1000);
	ck_assert_int_ge(jint(o, "inserts"), 3);
	ck_assert(json_object_is_type(jget(o, "atomic"), json_type_boolean));
	ck_assert_int_eq(json_object_array_length(jarray(o, "routes")), 3);
	for (size_t i = 0; i < 3; i++) {
		const char *t = topics[i];
		struct json_object *r = shm_route(o, t);
		ck_assert_msg(r != NULL, "%s not listed", t);
		ck_assert_str_eq(json_object_get_string(jget(r, "endpoint")), "main");
		ck_assert_str_eq(json_object_get_string(jget(r, "state")), i == 1 ? "none" : "joined");
		ck_assert_int_ge(jint(r, "upstream"), 0);
		ck_assert_int_ge(jint(r, "idle_ms"), 0);
		ck_assert_int_gt(jint(r, "last_activity"), 1600000000000LL);
		ck_assert_int_gt(jint(r, "since"), 1600000000000LL);
		ck_assert_int_le(jint(r, "since"), jint(r, "last_activity"));
	}
	/* The slot is the upstream phxd reports over its control socket. */
	struct json_object *cr = shm_route(ctl, "room:shm1");
	ck_assert_ptr_nonnull(cr);
	ck_assert_int_eq(jint(cr, "upstream"), jint(shm_route(o, "room:shm1"), "upstream"));
	/* Most recently used first: the leave touched room:shm2 last. */
	struct json_object *first = json_object_array_get_idx(jarray(o, "routes"), 0);
	ck_assert_str_eq(json_object_get_string(jget(first, "topic")), "room:shm2");
	json_object_put(o);
	json_object_put(ctl);

	/* Pretty on request: a "routes (3)" table. */
	ck_assert_int_eq(phxctl(out, sizeof(out), "-P routes --shm=%s", shm_name), 0);
	ck_assert_msg(strstr(out, "routes (3)") && strstr(out, "joined") &&
		      strstr(out, "room:shm1"), "pretty: %s", out);
	it_close(c);

	/* No NAME: the segment phxd makes for -s's socket when route_cache_name
	 * is not set; this phxd has one set, so there is none yet... */
	route_cache_default_name(env.sock, name, sizeof(name));
	ck_assert_int_eq(phxctl(out, sizeof(out), "-s %s routes --shm", env.sock), 2);
	ck_assert_msg(strstr(phxctl_stderr(), name) && strstr(phxctl_stderr(), "no route cache"),
		      "stderr: %s", phxctl_stderr());
	/* ...until a writer makes it (removed by it_env_stop). */
	struct route_cache *rc;
	char err[256];
	ck_assert_int_eq(route_cache_open(&rc, name, NULL, err, sizeof(err)), 0);
	ck_assert_int_eq(route_cache_put(rc, "room:def", 8, "ep2", 3, ROUTE_STATE_JOINING, 1), 1);
	snprintf(args, sizeof(args), "-s %s routes --shm", env.sock);
	o = shm_routes(args);
	ck_assert_str_eq(json_object_get_string(jget(o, "segment")), name);
	ck_assert_int_eq(jint(o, "count"), 1);
	struct json_object *r = shm_route(o, "room:def");
	ck_assert_ptr_nonnull(r);
	ck_assert_str_eq(json_object_get_string(jget(r, "endpoint")), "ep2");
	ck_assert_str_eq(json_object_get_string(jget(r, "state")), "joining");
	ck_assert_int_eq(jint(r, "upstream"), 3);
	json_object_put(o);
	route_cache_close(rc);

	/* Not a route cache: junk of a plausible size. */
	snprintf(other, sizeof(other), "%s-junk", shm_name);
	int fd = shm_open(other, O_RDWR | O_CREAT | O_EXCL, 0600);
	ck_assert_int_ge(fd, 0);
	char junk[4096];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (char)(i * 131 + 7);
	ck_assert_int_eq(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	ck_assert_int_eq(phxctl(out, sizeof(out), "routes --shm %s", other), 2);
	ck_assert_msg(strstr(phxctl_stderr(), "not a phxd route cache"), "stderr: %s",
		      phxctl_stderr());
	/* Unreadable: mode 0 (and another user when we are root). */
	ck_assert_int_eq(fchmod(fd, 0), 0);
	close(fd);
	snprintf(args, sizeof(args), "routes --shm %s", other);
	ck_assert_int_eq(phxctl_unprivileged(out, sizeof(out), args), 2);
	ck_assert_msg(strstr(out, "permission denied"), "output: %s", out);
	shm_unlink(other);
	/* Missing, and not a name at all. */
	ck_assert_int_eq(phxctl(out, sizeof(out), "routes --shm %s", other), 2);
	ck_assert_msg(strstr(phxctl_stderr(), "no route cache"), "stderr: %s", phxctl_stderr());
	ck_assert_int_eq(phxctl(out, sizeof(out), "routes --shm no-slash"), 2);
	ck_assert_int_eq(phxctl(out, sizeof(out), "routes --shm %s extra", shm_name), 2);
	ck_assert_str_eq(out, "");
}
END_TEST

static Suite *ctl_suite(void)
{
	Suite *s = suite_create("it_ctl");
	TCase *tc = tcase_create("control");
	tcase_add_checked_fixture(tc, start_default, stop_env);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, every_command_parses);
	tcase_add_test(tc, bad_input_keeps_the_connection);
	tcase_add_test(tc, counters_move_with_traffic);
	tcase_add_test(tc, history_stays_bounded);
	tcase_add_test(tc, http_metrics);
	tcase_add_test(tc, http_malformed);
	tcase_add_test(tc, idle_scrapers_do_not_lock_out);
	tcase_add_test(tc, non_loopback_metrics_listen_is_refused);
	tcase_add_test(tc, activated_control_socket);
	suite_add_tcase(s, tc);

	tc = tcase_create("alerts");
	tcase_add_checked_fixture(tc, start_alerting, stop_env);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, alert_raises_and_clears);
	suite_add_tcase(s, tc);

	tc = tcase_create("timeouts");
	tcase_add_checked_fixture(tc, start_timeouts, stop_env);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, alert_raises_on_timeouts);
	suite_add_tcase(s, tc);

	tc = tcase_create("phxctl");
	tcase_add_checked_fixture(tc, start_default, stop_env);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, phxctl_control_commands);
	tcase_add_test(tc, phxctl_push_and_join);
	suite_add_tcase(s, tc);

	tc = tcase_create("phxctl_shm");
	tcase_add_checked_fixture(tc, start_default, stop_env);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, phxctl_routes_shm);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(ctl_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
