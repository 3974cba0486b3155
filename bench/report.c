/* report — sums up the records of a benchmark run.
 *
 * Reads the JSON records (one object a line, as the bench programs print
 * them: scenario, path, case and figures) from --raw, groups the repeated
 * runs of each (scenario, path, case), and writes:
 *   - Markdown tables on stdout: each figure the median of its runs, the
 *     main figure of each table with its spread ((max - min) / median);
 *     ratios phxd / phoenix.js and phxd / direct C; the targets of issue 7,
 *     met or not, with the figures;
 *   - one JSON document (--json FILE) with every run of every figure, the
 *     medians, the ratios, the targets and the --meta KEY=VALUE pairs
 *     (KEY "machine.cpu" goes into the "machine" object).
 *
 *   bench/report --raw FILE --json FILE [--meta KEY=VALUE]...
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

#include <json-c/json.h>

#define MAX_GROUPS 256
#define MAX_FIELDS 48
#define MAX_RUNS 16
#define MAX_META 64

struct field {
	char name[48];
	double v[MAX_RUNS];
	int n;
	double med, min, max;
};

struct group {
	char scenario[32], path[16], kase[48];
	struct field f[MAX_FIELDS];
	int nf, runs;
};

static struct group groups[MAX_GROUPS];
static int ngroups;
static const char *meta[MAX_META];
static int nmeta;
static json_object *j_ratios, *j_targets;

/* ------------------------------------------------------------ reading */

static struct group *group_get(const char *sc, const char *path, const char *kase)
{
	for (int i = 0; i < ngroups; i++) {
		struct group *g = &groups[i];
		if (!strcmp(g->scenario, sc) && !strcmp(g->path, path) && !strcmp(g->kase, kase))
			return g;
	}
	if (ngroups == MAX_GROUPS)
		return NULL;
	struct group *g = &groups[ngroups++];
	snprintf(g->scenario, sizeof(g->scenario), "%s", sc);
	snprintf(g->path, sizeof(g->path), "%s", path);
	snprintf(g->kase, sizeof(g->kase), "%s", kase);
	return g;
}

static struct field *field_of(struct group *g, const char *name, int create)
{
	for (int i = 0; i < g->nf; i++)
		if (!strcmp(g->f[i].name, name))
			return &g->f[i];
	if (!create || g->nf == MAX_FIELDS)
		return NULL;
	struct field *f = &g->f[g->nf++];
	snprintf(f->name, sizeof(f->name), "%s", name);
	return f;
}

static const char *jstr(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static void add_record(json_object *o)
{
	const char *sc = jstr(o, "scenario"), *path = jstr(o, "path"), *kase = jstr(o, "case");
	struct group *g;

	if (!sc || !path || !kase || !(g = group_get(sc, path, kase)))
		return;
	g->runs++;
	json_object_object_foreach(o, key, val) {
		int num = json_object_is_type(val, json_type_double) ||
			  json_object_is_type(val, json_type_int);
		if (!num && !json_object_is_type(val, json_type_null))
			continue;
		struct field *f = field_of(g, key, 1);
		if (f && f->n < MAX_RUNS)
			f->v[f->n++] = num ? json_object_get_double(val) : NAN;
	}
}

static int read_raw(const char *path)
{
	FILE *fp = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;

	if (!fp) {
		fprintf(stderr, "report: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while (getline(&line, &cap, fp) > 0) {
		json_object *o = json_tokener_parse(line);
		if (o && json_object_is_type(o, json_type_object))
			add_record(o);
		json_object_put(o);
	}
	free(line);
	fclose(fp);
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Medians and ranges over the finite values of each field. */
static void summarize(void)
{
	for (int i = 0; i < ngroups; i++) {
		for (int k = 0; k < groups[i].nf; k++) {
			struct field *f = &groups[i].f[k];
			double v[MAX_RUNS];
			int n = 0;
			for (int r = 0; r < f->n; r++)
				if (isfinite(f->v[r]))
					v[n++] = f->v[r];
			if (n == 0) {
				f->med = f->min = f->max = NAN;
				continue;
			}
			qsort(v, (size_t)n, sizeof(v[0]), cmp_double);
			f->med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
			f->min = v[0];
			f->max = v[n - 1];
		}
	}
}

/* The median of a figure, or NAN. */
static double fig(const char *sc, const char *path, const char *kase, const char *name)
{
	for (int i = 0; i < ngroups; i++) {
		struct group *g = &groups[i];
		if (!strcmp(g->scenario, sc) && !strcmp(g->path, path) && !strcmp(g->kase, kase)) {
			struct field *f = field_of(g, name, 0);
			return f ? f->med : NAN;
		}
	}
	return NAN;
}

static int has_scenario(const char *sc)
{
	for (int i = 0; i < ngroups; i++)
		if (!strcmp(groups[i].scenario, sc))
			return 1;
	return 0;
}

/* ------------------------------------------------------------ Markdown */

/* A number for a table: thousands separated, prec decimals; "–" for none. */
static const char *num(double v, int prec)
{
	static char ring[8][48];
	static int next;
	char *out = ring[next++ % 8], tmp[48];

	if (!isfinite(v))
		return "–";
	snprintf(tmp, sizeof(tmp), "%.*f", prec, v);
	char *dot = strchr(tmp, '.');
	size_t intlen = dot ? (size_t)(dot - tmp) : strlen(tmp);
	size_t neg = tmp[0] == '-', o = 0;
	for (size_t i = 0; i < intlen; i++) {
		if (i > neg && (intlen - i) % 3 == 0 && o < sizeof(ring[0]) - 2)
			out[o++] = ',';
		out[o++] = tmp[i];
	}
	snprintf(out + o, sizeof(ring[0]) - o, "%s", dot ? dot : "");
	return out;
}

static const char *pct(double v)
{
	static char ring[4][24];
	static int next;
	char *out = ring[next++ % 4];

	if (!isfinite(v))
		return "–";
	snprintf(out, sizeof(ring[0]), "%.0f %%", v * 100);
	return out;
}

struct col {
	const char *field, *head;
	int prec;
	int kind;               /* 0 number, 1 share (%), 2 with spread */
};

struct table {
	const char *scenario, *title, *what;
	struct col cols[12];
};

static const char *path_name(const char *p)
{
	if (!strcmp(p, "phxd"))
		return "phxd";
	if (!strcmp(p, "direct"))
		return "direct C";
	if (!strcmp(p, "js"))
		return "phoenix.js";
	return p;
}

static int path_rank(const char *p)
{
	return !strcmp(p, "phxd") ? 0 : !strcmp(p, "direct") ? 1 : !strcmp(p, "js") ? 2 : 3;
}

/* Case names order by their letters, then by their number ("c1" < "c16",
 * "clients-1000" < "clients-10000" < "upstreams-1"). */
static size_t case_prefix(const char *k)
{
	return strcspn(k, "0123456789");
}

static int cmp_rows(const void *a, const void *b)
{
	const struct group *x = *(const struct group *const *)a;
	const struct group *y = *(const struct group *const *)b;
	size_t px = case_prefix(x->kase), py = case_prefix(y->kase);
	int c = strncmp(x->kase, y->kase, px < py ? px : py);

	if (c == 0 && px != py)
		c = px < py ? -1 : 1;
	if (c == 0) {
		long nx = atol(x->kase + px), ny = atol(y->kase + py);
		c = (nx > ny) - (nx < ny);
	}
	if (c == 0)
		c = strcmp(x->kase, y->kase);
	return c ? c : path_rank(x->path) - path_rank(y->path);
}

static void print_cell(struct group *g, const struct col *c)
{
	struct field *f = field_of(g, c->field, 0);

	if (!f || !isfinite(f->med)) {
		printf(" – |");
		return;
	}
	if (c->kind == 1) {
		printf(" %s |", pct(f->med));
	} else if (c->kind == 2 && f->n > 1 && f->med != 0) {
		printf(" %s (±%.0f %%) |", num(f->med, c->prec),
		       50 * (f->max - f->min) / fabs(f->med));
	} else {
		printf(" %s |", num(f->med, c->prec));
	}
}

static void print_table(const struct table *t)
{
	struct group *rows[MAX_GROUPS];
	int n = 0, ncols = 0;

	for (int i = 0; i < ngroups; i++)
		if (!strcmp(groups[i].scenario, t->scenario))
			rows[n++] = &groups[i];
	if (n == 0)
		return;
	qsort(rows, (size_t)n, sizeof(rows[0]), cmp_rows);
	printf("\n### %s\n\n%s\n\n| path | case | runs |", t->title, t->what);
	for (; ncols < 12 && t->cols[ncols].field; ncols++)
		printf(" %s |", t->cols[ncols].head);
	printf("\n|---|---|---:|");
	for (int c = 0; c < ncols; c++)
		printf("---:|");
	putchar('\n');
	for (int i = 0; i < n; i++) {
		printf("| %s | %s | %d |", path_name(rows[i]->path), rows[i]->kase, rows[i]->runs);
		for (int c = 0; c < ncols; c++)
			print_cell(rows[i], &t->cols[c]);
		putchar('\n');
	}
}

static const struct table tables[] = {
	{ "rtt", "1. Round trip: push → reply",
	  "Each client does sequential `echo` round trips (200-byte JSON payload); c1 is one "
	  "client, c16 sixteen at once. Latency in µs; spread = ±half the range of the runs "
	  "over the median.",
	  { { "p50_us", "p50 µs", 1, 2 }, { "p90_us", "p90 µs", 1, 0 },
	    { "p99_us", "p99 µs", 1, 2 }, { "rt_per_s", "round trips/s", 0, 2 },
	    { "phxd_cpu_us_per_rt", "phxd CPU µs/rt", 2, 0 },
	    { "phxd_cpu_share", "phxd CPU", 0, 1 }, { "server_cpu_share", "server CPU", 0, 1 },
	    { "client_cpu_share", "client CPU", 0, 1 }, { NULL, NULL, 0, 0 } } },
	{ "fanout", "2. Fan-out: server broadcasts to N subscribers of one topic",
	  "phxsim FLOODs one topic as fast as the slowest subscriber reads (~200-byte "
	  "payloads); sN = N subscribers (phxd: N local clients sharing one upstream join; "
	  "direct C and phoenix.js: N WebSocket connections, so the server sends N copies). "
	  "delivered/s counts every copy received.",
	  { { "delivered_per_s", "delivered/s", 0, 2 }, { "per_sub_per_s", "per subscriber/s", 0, 0 },
	    { "phxd_cpu_us_per_msg", "phxd CPU µs/msg", 3, 0 },
	    { "phxd_cpu_share", "phxd CPU", 0, 1 }, { "server_cpu_share", "server CPU", 0, 1 },
	    { "client_cpu_share", "client CPU", 0, 1 }, { NULL, NULL, 0, 0 } } },
	{ "topics", "3. Many topics over the pool, one subscriber each, mixed traffic",
	  "Topics joined in one batch JOIN per client, all clients at once; then random "
	  "broadcasts (one per topic drawn at random) while 64 clients push `echo` round trips.",
	  { { "upstreams", "upstreams", 0, 0 }, { "joins_per_s", "joins/s", 0, 2 },
	    { "rss_kib", "RSS KiB", 0, 0 }, { "events_per_s", "events/s", 0, 2 },
	    { "pushes_per_s", "pushes/s", 0, 0 }, { "push_p50_us", "push p50 µs", 0, 0 },
	    { "push_p99_us", "push p99 µs", 0, 0 },
	    { "phxd_cpu_us_per_msg", "phxd CPU µs/msg", 2, 0 },
	    { "phxd_cpu_share", "phxd CPU", 0, 1 }, { "server_cpu_share", "server CPU", 0, 1 },
	    { "client_cpu_share", "client CPU", 0, 1 }, { NULL, NULL, 0, 0 } } },
	{ "memory", "4. Memory: phxd's RSS with idle local clients and idle upstreams",
	  "Two phxd side by side at every step: awake (hibernation_enabled = false) and "
	  "hibernated (hibernation_idle_timeout = 500ms, read once STATS counts every client "
	  "and upstream hibernating). Per client: (RSS(N) − RSS(0)) / N; per upstream: "
	  "(RSS(U) − RSS(1)) / (U − 1). heap: live malloc'd bytes of the awake one "
	  "(malloc_count.so). pool: free blocks the binary pool of the hibernated one keeps "
	  "for reuse (released buffers wait there up to binary_max_age).",
	  { { "rss_kib", "RSS KiB", 0, 0 }, { "heap_kib", "heap KiB", 0, 0 },
	    { "rss_per_client_kib", "KiB/client", 2, 0 },
	    { "heap_per_client_kib", "heap KiB/client", 2, 0 },
	    { "rss_per_upstream_kib", "KiB/upstream", 1, 0 },
	    { "heap_per_upstream_kib", "heap KiB/upstream", 1, 0 },
	    { "hibernated_rss_kib", "hibernated RSS KiB", 0, 0 },
	    { "hibernated_pool_kib", "hibernated pool KiB", 0, 0 },
	    { "hibernated_rss_per_client_kib", "hibernated KiB/client", 2, 0 },
	    { "hibernated_rss_per_upstream_kib", "hibernated KiB/upstream", 1, 0 },
	    { NULL, NULL, 0, 0 } } },
	{ "allocs", "4b. Heap allocations per relayed message",
	  "phxd with malloc_count.so preloaded; event: one broadcast → one local EVENT line "
	  "(1 subscriber); push: one PUSH → frame up, reply down → one OK line.",
	  { { "allocs_per_msg", "allocations/message", 3, 0 },
	    { "allocs_per_rt", "allocations/round trip", 3, 0 }, { NULL, NULL, 0, 0 } } },
	{ "instr", "6. Instructions per relayed message (callgrind)",
	  "`valgrind --tool=callgrind` on phxd, user-space instructions (Ir) of the whole "
	  "process; two runs of n1 and n2 messages, (Ir(n2) − Ir(n1)) / (n2 − n1), so start-up, "
	  "joins and shutdown cancel out. event: upstream broadcast frame (200 B) → one local "
	  "line; push: local PUSH → upstream frame → reply frame → local OK line.",
	  { { "ir_per_msg", "instructions/message", 0, 0 }, { "n1", "n1", 0, 0 },
	    { "n2", "n2", 0, 0 }, { NULL, NULL, 0, 0 } } },
};

/* Scenario 5: op rows, payload (or table size) columns. */
static void print_micro(void)
{
	static const char *const ops[] = { "json_encode", "json_decode", "bin_encode", "bin_decode",
					   "line_parse", "line_event" };
	static const char *const lops[] = { "hmap_lookup", "cache_lookup" };
	static const char *const sizes[] = { "64", "1024", "65536" };
	int any = 0;

	for (int i = 0; i < ngroups; i++)
		any |= !strcmp(groups[i].scenario, "micro");
	if (!any)
		return;
	printf("\n### 5. Micro: ns per call (best of 3)\n\n"
	       "Payload a JSON object of 64 B, 1 KiB, 64 KiB. json_*: V2 text frame "
	       "`[\"3\",\"7\",topic,event,payload]`; bin_*: V2 binary push (encode) and server "
	       "broadcast (decode); line_parse: `PUSH topic event payload`; line_event: formats "
	       "`EVENT topic event payload`.\n\n"
	       "| operation | 64 B | 1 KiB | 64 KiB | MB/s at 64 KiB |\n|---|---:|---:|---:|---:|\n");
	for (size_t k = 0; k < sizeof(ops) / sizeof(ops[0]); k++) {
		char kase[64];
		printf("| %s |", ops[k]);
		for (size_t s = 0; s < 3; s++) {
			snprintf(kase, sizeof(kase), "%s-%s", ops[k], sizes[s]);
			printf(" %s |", num(fig("micro", "-", kase, "ns_per_op"), 1));
		}
		printf(" %s |\n", num(fig("micro", "-", kase, "mb_per_s"), 0));
	}
	printf("\n| lookup (hits, random order) | 100 topics | 10,000 topics |\n|---|---:|---:|\n");
	for (size_t k = 0; k < sizeof(lops) / sizeof(lops[0]); k++) {
		char k1[64], k2[64];
		snprintf(k1, sizeof(k1), "%s-100", lops[k]);
		snprintf(k2, sizeof(k2), "%s-10000", lops[k]);
		printf("| %s | %s | %s |\n", lops[k], num(fig("micro", "-", k1, "ns_per_op"), 1),
		       num(fig("micro", "-", k2, "ns_per_op"), 1));
	}
}

/* ------------------------------------------------------------ ratios */

static json_object *num_or_null(double v)
{
	return isfinite(v) ? json_object_new_double(v) : NULL;
}


static double ratio(double a, double b)
{
	return isfinite(a) && isfinite(b) && b != 0 ? a / b : NAN;
}

static void ratio_row(const char *sc, const char *kase, const char *metric, const char *label)
{
	double p = fig(sc, "phxd", kase, metric), d = fig(sc, "direct", kase, metric);
	double j = fig(sc, "js", kase, metric), rj = ratio(p, j), rd = ratio(p, d);
	int prec = p < 1000 ? 1 : 0;

	if (!isfinite(p))
		return;
	printf("| %s | %s | %s | %s | %s | %s | %s× | %s× |\n", sc, kase, label, num(p, prec),
	       num(d, prec), num(j, prec), num(rd, 2), num(rj, 2));
	json_object *o = json_object_new_object();
	json_object_object_add(o, "scenario", json_object_new_string(sc));
	json_object_object_add(o, "case", json_object_new_string(kase));
	json_object_object_add(o, "metric", json_object_new_string(metric));
	json_object_object_add(o, "phxd", num_or_null(p));
	json_object_object_add(o, "direct", num_or_null(d));
	json_object_object_add(o, "js", num_or_null(j));
	json_object_object_add(o, "phxd_over_direct", num_or_null(rd));
	json_object_object_add(o, "phxd_over_js", num_or_null(rj));
	json_object_array_add(j_ratios, o);
}

static void print_ratios(void)
{
	static const char *const rcases[] = { "c1", "c16" };
	static const char *const fcases[] = { "s1", "s10", "s100", "s1000" };

	j_ratios = json_object_new_array();
	if (!has_scenario("rtt") && !has_scenario("fanout"))
		return;
	printf("\n### Ratios: phxd path / baselines\n\n"
	       "Latency: a ratio below 1 means phxd is faster; throughput: above 1 means phxd "
	       "does more.\n\n"
	       "| scenario | case | metric | phxd | direct C | phoenix.js | phxd / direct C "
	       "| phxd / phoenix.js |\n|---|---|---|---:|---:|---:|---:|---:|\n");
	for (size_t i = 0; i < 2; i++) {
		ratio_row("rtt", rcases[i], "p50_us", "p50 µs");
		ratio_row("rtt", rcases[i], "p99_us", "p99 µs");
		ratio_row("rtt", rcases[i], "rt_per_s", "round trips/s");
	}
	for (size_t i = 0; i < 4; i++)
		ratio_row("fanout", fcases[i], "delivered_per_s", "delivered/s");
}

/* ------------------------------------------------------------ targets */

/* met: 1, 0, -1 when it cannot be told, -2 for a figure shown for
 * reference (no target of its own). */
static void target(const char *name, const char *want, double value, const char *unit, int met,
		   const char *note)
{
	static const char *const word[] = { "–", "not measured", "**not met**", "met" };
	char v[64];

	snprintf(v, sizeof(v), "%s%s", num(value, value < 10 ? 2 : 0), isfinite(value) ? unit : "");
	printf("| %s | %s | %s | %s | %s |\n", name, want, v, word[met + 2], note);
	json_object *o = json_object_new_object();
	json_object_object_add(o, "name", json_object_new_string(name));
	json_object_object_add(o, "target", json_object_new_string(want));
	json_object_object_add(o, "value", isfinite(value) ? json_object_new_double(value) : NULL);
	json_object_object_add(o, "met", met < 0 ? NULL : json_object_new_boolean(met));
	if (met == -2)
		json_object_object_add(o, "reference", json_object_new_boolean(1));
	json_object_object_add(o, "note", json_object_new_string(note));
	json_object_array_add(j_targets, o);
}

static int le(double a, double b)
{
	return isfinite(a) && isfinite(b) ? a <= b : -1;
}

static void target_rtt(const char *kase, const char *metric, const char *label)
{
	char name[64], note[160];
	double p = fig("rtt", "phxd", kase, metric), j = fig("rtt", "js", kase, metric);

	snprintf(name, sizeof(name), "round trip %s, %s", label, kase);
	snprintf(note, sizeof(note), "phxd %s µs, phoenix.js %s µs", num(p, 1), num(j, 1));
	target(name, "phxd ≤ phoenix.js", ratio(p, j), "×", le(p, j), note);
}

static void target_growth(int n)
{
	char kase[16], name[64], want[64], note[200];
	double d1 = fig("fanout", "phxd", "s1", "delivered_per_s");
	snprintf(kase, sizeof(kase), "s%d", n);
	double dn = fig("fanout", "phxd", kase, "delivered_per_s");
	double c1 = fig("fanout", "phxd", "s1", "phxd_cpu_us_per_msg");
	double cn = fig("fanout", "phxd", kase, "phxd_cpu_us_per_msg");
	double g = ratio(dn, d1);

	snprintf(name, sizeof(name), "fan-out growth 1 → %d subscribers", n);
	snprintf(want, sizeof(want), "linear-ish: ≥ %d× (half of linear)", n / 2);
	snprintf(note, sizeof(note), "phxd CPU per delivery %s µs at 1, %s µs at %d",
		 num(c1, 3), num(cn, 3), n);
	target(name, want, g, "×", isfinite(g) ? g >= n / 2.0 : -1, note);
}

static void targets_fanout(void)
{
	char note[200];
	double p = fig("fanout", "phxd", "s1", "delivered_per_s");
	double j = fig("fanout", "js", "s1", "delivered_per_s");
	double r = ratio(p, j);
	snprintf(note, sizeof(note), "phxd %s/s, phoenix.js %s/s", num(p, 0), num(j, 0));
	target("fan-out at 1 subscriber", "≥ 5× phoenix.js", r, "×", isfinite(r) ? r >= 5 : -1,
	       note);
	target_growth(10);
	target_growth(100);
}

static void targets_instr(void)
{
	double ir = fig("instr", "phxd", "event", "ir_per_msg");
	target("instructions per relayed 200-byte message", "≤ 3,000", ir, "",
	       isfinite(ir) ? ir <= 3000 : -1, "callgrind, upstream frame → one local line");
	double irp = fig("instr", "phxd", "push", "ir_per_msg");
	target("instructions per push round trip", "(no target)", irp, "", -2,
	       "callgrind, PUSH line → frame up → reply frame → OK line");
}

/* A memory figure at the largest step measured: kase1 (10,000 clients, 64
 * upstreams) or else kase2. */
static double fig_mem(const char *kase1, const char *kase2, const char *metric)
{
	double v = fig("memory", "phxd", kase1, metric);
	return isfinite(v) ? v : fig("memory", "phxd", kase2, metric);
}

static void targets_memory(void)
{
	char note[200];
	double kc = fig_mem("clients-10000", "clients-1000", "rss_per_client_kib");
	double hc = fig_mem("clients-10000", "clients-1000", "hibernated_rss_per_client_kib");
	double pc = fig_mem("clients-10000", "clients-1000", "hibernated_pool_per_client_kib");
	double ku = fig_mem("upstreams-64", "upstreams-16", "rss_per_upstream_kib");
	double hu = fig_mem("upstreams-64", "upstreams-16", "hibernated_rss_per_upstream_kib");
	double pu = fig_mem("upstreams-64", "upstreams-16", "hibernated_pool_per_upstream_kib");

	snprintf(note, sizeof(note), "RSS; awake: %s KiB; the pool keeps %s KiB of released "
		 "blocks per client", num(kc, 2), num(pc, 2));
	target("memory per idle hibernated local client", "< 4 KiB", hc, " KiB",
	       isfinite(hc) ? hc < 4 : -1, note);
	snprintf(note, sizeof(note), "RSS; awake: %s KiB; the pool keeps %s KiB of released "
		 "blocks per upstream", num(ku, 1), num(pu, 1));
	target("memory per idle hibernated upstream", "< 16 KiB", hu, " KiB",
	       isfinite(hu) ? hu < 16 : -1, note);
	target("memory per idle local client, awake", "(no target)", kc, " KiB", -2,
	       "hibernation_enabled = false");
	target("memory per idle upstream, awake", "(no target)", ku, " KiB", -2,
	       "hibernation_enabled = false");
}

static void print_targets(void)
{
	j_targets = json_object_new_array();
	printf("\n### Targets (issue 7)\n\n| target | wanted | measured | status | figures |\n"
	       "|---|---|---:|---|---|\n");
	if (has_scenario("rtt")) {
		target_rtt("c1", "p50_us", "p50");
		target_rtt("c1", "p99_us", "p99");
		target_rtt("c16", "p50_us", "p50");
		target_rtt("c16", "p99_us", "p99");
	}
	if (has_scenario("fanout"))
		targets_fanout();
	if (has_scenario("instr"))
		targets_instr();
	if (has_scenario("memory"))
		targets_memory();
}

/* ------------------------------------------------------------ JSON out */

static json_object *meta_value(const char *v)
{
	char *end;
	double d = strtod(v, &end);

	if (*v && !*end && end != v) {
		if (d == (double)(long long)d && fabs(d) < 1e15)
			return json_object_new_int64((long long)d);
		return json_object_new_double(d);
	}
	return json_object_new_string(v);
}

static json_object *meta_json(json_object **machine)
{
	json_object *m = json_object_new_object();

	*machine = json_object_new_object();
	for (int i = 0; i < nmeta; i++) {
		const char *eq = strchr(meta[i], '=');
		if (!eq)
			continue;
		char key[64];
		snprintf(key, sizeof(key), "%.*s", (int)(eq - meta[i]), meta[i]);
		if (!strncmp(key, "machine.", 8))
			json_object_object_add(*machine, key + 8, meta_value(eq + 1));
		else
			json_object_object_add(m, key, meta_value(eq + 1));
	}
	return m;
}

static json_object *results_json(void)
{
	json_object *arr = json_object_new_array();

	for (int i = 0; i < ngroups; i++) {
		struct group *g = &groups[i];
		json_object *o = json_object_new_object(), *fs = json_object_new_object();
		json_object_object_add(o, "scenario", json_object_new_string(g->scenario));
		json_object_object_add(o, "path", json_object_new_string(g->path));
		json_object_object_add(o, "case", json_object_new_string(g->kase));
		json_object_object_add(o, "runs", json_object_new_int(g->runs));
		for (int k = 0; k < g->nf; k++) {
			struct field *f = &g->f[k];
			json_object *fo = json_object_new_object(), *vs = json_object_new_array();
			json_object_object_add(fo, "median", num_or_null(f->med));
			json_object_object_add(fo, "min", num_or_null(f->min));
			json_object_object_add(fo, "max", num_or_null(f->max));
			for (int r = 0; r < f->n; r++)
				json_object_array_add(vs, num_or_null(f->v[r]));
			json_object_object_add(fo, "runs", vs);
			json_object_object_add(fs, f->name, fo);
		}
		json_object_object_add(o, "figures", fs);
		json_object_array_add(arr, o);
	}
	return arr;
}

static int write_json(const char *path)
{
	json_object *machine, *doc = json_object_new_object();
	json_object *m = meta_json(&machine);

	json_c_set_serialization_double_format("%.10g", JSON_C_OPTION_GLOBAL);

	json_object_object_add(doc, "suite", json_object_new_string("phxd bench/run"));
	json_object_object_add(doc, "format", json_object_new_int(1));
	json_object_object_foreach(m, key, val)
		json_object_object_add(doc, key, json_object_get(val));
	json_object_put(m);
	json_object_object_add(doc, "machine", machine);
	json_object_object_add(doc, "results", results_json());
	json_object_object_add(doc, "ratios", json_object_get(j_ratios));
	json_object_object_add(doc, "targets", json_object_get(j_targets));
	int r = json_object_to_file_ext(path, doc, JSON_C_TO_STRING_PRETTY |
					JSON_C_TO_STRING_NOSLASHESCAPE);
	json_object_put(doc);
	if (r < 0)
		fprintf(stderr, "report: cannot write %s\n", path);
	return r;
}

int main(int argc, char **argv)
{
	const char *raw = NULL, *out = NULL;
	static const struct option lopts[] = {
		{ "raw", required_argument, NULL, 'r' },
		{ "json", required_argument, NULL, 'j' },
		{ "meta", required_argument, NULL, 'm' },
		{ NULL, 0, NULL, 0 },
	};
	int k;

	while ((k = getopt_long(argc, argv, "r:j:m:", lopts, NULL)) != -1) {
		switch (k) {
		case 'r': raw = optarg; break;
		case 'j': out = optarg; break;
		case 'm':
			if (nmeta < MAX_META)
				meta[nmeta++] = optarg;
			break;
		default:
			fprintf(stderr, "usage: report --raw FILE --json FILE [--meta K=V]...\n");
			return 2;
		}
	}
	if (!raw || !out) {
		fprintf(stderr, "usage: report --raw FILE --json FILE [--meta K=V]...\n");
		return 2;
	}
	if (read_raw(raw) < 0)
		return 1;
	summarize();
	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		print_table(&tables[i]);
		if (!strcmp(tables[i].scenario, "allocs"))
			print_micro();
	}
	print_ratios();
	print_targets();
	return write_json(out) < 0 ? 1 : 0;
}
