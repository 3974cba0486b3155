/* compression — bytes on the wire with and without permessage-deflate.
 *
 * For each configuration, starts phxsim --compression and phxd with the
 * endpoint options of that configuration (as the integration tests do), joins
 * one local client to a topic and runs two phases with the same stream of
 * typical JSON objects (a chat message with user, text, reactions and
 * metadata; about SIZE bytes each, values varying from object to object):
 *
 *   down: COUNT broadcasts from phxsim, each delivered to the client;
 *   up:   COUNT pushes from the client ("echo", so the server answers).
 *
 * phxsim counts the WebSocket bytes it reads and writes (frame headers
 * included; TCP/IP headers not) and the message bytes before compression;
 * phxd's CPU time comes from /proc/PID/stat, its RSS from /proc/PID/status.
 *
 *   bench/compression [--count N] [--size S]
 *
 * Needs PHXD_BIN and PHXSIM_BIN (or ./phxd and ./tests/phxsim/phxsim).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/it_util.h"

static uint64_t rng = 0x2545F4914F6CDD1DULL;

static unsigned rnd(unsigned n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned)((rng >> 33) % n);
}

static const char *const first[] = { "Alice", "Bruno", "Chen", "Dana", "Emeka", "Fatima",
				      "Gustav", "Hana", "Ivan", "Julia", "Kofi", "Lena" };
static const char *const last[] = { "Johnson", "Silva", "Wei", "Kowalski", "Okafor",
				     "Haddad", "Lindqvist", "Sato", "Petrov", "Moreau" };
static const char *const words[] = {
	"the", "deploy", "is", "done", "and", "all", "checks", "passed", "on", "staging",
	"please", "review", "my", "pull", "request", "before", "lunch", "we", "should",
	"ship", "tomorrow", "morning", "after", "the", "standup", "I", "found", "a", "bug",
	"in", "the", "billing", "export", "it", "drops", "rows", "with", "empty", "notes",
	"thanks", "for", "the", "quick", "fix", "looks", "good", "to", "me", "merging",
	"now", "can", "someone", "restart", "worker", "three", "latency", "is", "back",
	"to", "normal", "numbers", "from", "yesterday", "are", "in", "the", "dashboard",
};
static const char *const emoji[] = { "thumbsup", "tada", "eyes", "rocket", "heart", "fire" };
static const char *const clients[] = { "web", "ios", "android", "desktop" };

/* One message object of about size bytes into out (cap bytes). */
static size_t make_object(char *out, size_t cap, size_t size, unsigned seq)
{
	unsigned uid = 10000 + rnd(90000);
	size_t n = (size_t)snprintf(out, cap,
		"{\"id\":%u,\"type\":\"message\",\"room\":\"room:bench\",\"user\":{\"id\":\"u_%u\","
		"\"name\":\"%s %s\",\"avatar\":\"https://cdn.example.com/avatars/%u.png\","
		"\"roles\":[\"member\"%s]},\"ts\":\"2026-11-28T%02u:%02u:%02u.%03uZ\","
		"\"reactions\":[{\"emoji\":\"%s\",\"count\":%u},{\"emoji\":\"%s\",\"count\":%u}],"
		"\"meta\":{\"client\":\"%s\",\"version\":\"2.%u.%u\",\"seq\":%u,\"edited\":%s},"
		"\"body\":\"",
		1000000 + seq, uid, first[rnd(12)], last[rnd(10)], uid,
		rnd(4) ? "" : ",\"moderator\"", rnd(24), rnd(60), rnd(60), rnd(1000),
		emoji[rnd(6)], 1 + rnd(20), emoji[rnd(6)], 1 + rnd(5), clients[rnd(4)],
		rnd(20), rnd(10), seq, rnd(5) ? "false" : "true");
	while (n + 20 < size && n + 20 < cap) {
		const char *w = words[rnd(sizeof(words) / sizeof(words[0]))];
		n += (size_t)snprintf(out + n, cap - n, "%s ", w);
	}
	n += (size_t)snprintf(out + n, cap - n, "end.\"}");
	return n;
}

static double cpu_s(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *p = strrchr(buf, ')');
	unsigned long ut = 0, st = 0;
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
			 &ut, &st) != 2)
		return 0;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static long rss_kib(pid_t pid)
{
	char path[64], line[256];
	long kb = -1;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

static long long stat_of(struct it_env *e, const char *name)
{
	const char *st = it_ctl(e, "STATS");
	char key[64];
	snprintf(key, sizeof(key), "\"%s\":", name);
	const char *p = strstr(st, key);
	return p ? atoll(p + strlen(key)) : -1;
}

static void need(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "compression: %s\n", what);
		exit(3);
	}
}

struct phase {
	long long payload, wire;
	double cpu;
};

static void run(const char *name, const char *ep_conf, int count, size_t size)
{
	struct it_env env;
	struct phase down, up;
	char *obj = malloc(size + 4096), *line = malloc(size + 4200);
	need(obj && line, "out of memory");
	it_env_start(&env, "--compression", NULL, ep_conf);
	struct it_client *c = it_connect(&env);
	it_send(c, "JOIN room:bench");
	need(it_wait_prefix(c, "OK JOIN room:bench", IT_TIMEOUT_MS) != NULL, "join");
	rng = 0x2545F4914F6CDD1DULL; /* the same stream for every configuration */

	long long p0 = stat_of(&env, "payload_out"), w0 = stat_of(&env, "ws_bytes_out");
	double c0 = cpu_s(env.phxd);
	for (int i = 0; i < count; i++) {
		make_object(obj, size + 4096, size, (unsigned)i);
		need(strcmp(it_ctl(&env, "BROADCAST room:bench msg %s", obj), "OK 1") == 0,
		     "broadcast");
		need(it_wait_prefix(c, "EVENT room:bench msg ", IT_TIMEOUT_MS) != NULL, "event");
	}
	down.cpu = cpu_s(env.phxd) - c0;
	down.payload = stat_of(&env, "payload_out") - p0;
	down.wire = stat_of(&env, "ws_bytes_out") - w0;

	p0 = stat_of(&env, "payload_in");
	w0 = stat_of(&env, "ws_bytes_in");
	c0 = cpu_s(env.phxd);
	for (int i = 0; i < count; i++) {
		size_t n = make_object(obj, size + 4096, size, (unsigned)i);
		int k = snprintf(line, size + 4200, "PUSH room:bench echo %.*s\n", (int)n, obj);
		it_send_raw(c, line, (size_t)k);
		need(it_wait_prefix(c, "OK PUSH room:bench ", IT_TIMEOUT_MS) != NULL, "push");
	}
	up.cpu = cpu_s(env.phxd) - c0;
	up.payload = stat_of(&env, "payload_in") - p0;
	up.wire = stat_of(&env, "ws_bytes_in") - w0;
	long rss = rss_kib(env.phxd);
	long long pmd = stat_of(&env, "compressed_connections");

	printf("| %-28s | %s | %10lld | %10lld | %5.1f%% | %6.0f | %10lld | %10lld | %5.1f%% | %6.0f | %6ld |\n",
	       name, pmd > 0 ? "yes" : "no ", down.payload, down.wire,
	       100.0 * (double)down.wire / (double)down.payload, down.cpu * 1000,
	       up.payload, up.wire, 100.0 * (double)up.wire / (double)up.payload,
	       up.cpu * 1000, rss);
	fflush(stdout);
	it_close(c);
	it_env_stop(&env);
	free(obj);
	free(line);
}

int main(int argc, char **argv)
{
	int count = 1000, o;
	size_t size = 1024;
	static const struct option opts[] = {
		{ "count", required_argument, NULL, 'n' },
		{ "size", required_argument, NULL, 's' },
		{ "sample", no_argument, NULL, 'x' },
		{ NULL, 0, NULL, 0 },
	};
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'n':
			count = atoi(optarg);
			break;
		case 's':
			size = (size_t)atol(optarg);
			break;
		case 'x': {
			char obj[8192];
			make_object(obj, sizeof(obj), size, 0);
			printf("%s\n", obj);
			return 0;
		}
		default:
			fprintf(stderr, "usage: compression [--count N] [--size BYTES] [--sample]\n");
			return 2;
		}
	}
	need(count > 0 && size >= 300 && size <= 3000, "count > 0, size 300..3000");
	printf("%d messages of about %zu bytes each way; bytes counted by phxsim on the "
	       "WebSocket (frame headers included)\n\n", count, size);
	printf("| %-28s | pmd | %10s | %10s | %6s | %6s | %10s | %10s | %6s | %6s | %6s |\n",
	       "configuration", "down msgs", "down wire", "ratio", "cpu ms", "up msgs",
	       "up wire", "ratio", "cpu ms", "RSS KiB");
	printf("|------------------------------|-----|-----------:|-----------:|-------:|-------:"
	       "|-----------:|-----------:|-------:|-------:|-------:|\n");
	run("compression off", "compression = false\npool_size = 1\n", count, size);
	run("on (level 6, 15 bits)", "compression = true\npool_size = 1\n", count, size);
	run("on, level 1", "compression = true\ncompression_level = 1\npool_size = 1\n",
	    count, size);
	run("on, level 9", "compression = true\ncompression_level = 9\npool_size = 1\n",
	    count, size);
	run("on, no context takeover", "compression = true\nclient_no_context_takeover = true\n"
	    "server_no_context_takeover = true\npool_size = 1\n", count, size);
	run("on, window bits 10", "compression = true\nclient_max_window_bits = 10\n"
	    "server_max_window_bits = 10\npool_size = 1\n", count, size);
	return 0;
}
