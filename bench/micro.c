/* micro — nanoseconds per call of the codecs and lookups on phxd's hot
 * paths, linked against libphx.a (the code the daemon runs):
 *
 *   json_encode     phx_encode_json: a V2 push frame
 *                   ["3","7","room:bench","new_msg",PAYLOAD]
 *   json_decode     phx_decode_json of that frame (validates the payload)
 *   bin_encode      phx_encode_binary_push, the same fields, raw data
 *   bin_decode      phx_decode_binary of a server broadcast (kind 2)
 *   line_parse      ipc_line_parse of "PUSH room:bench new_msg PAYLOAD"
 *   line_event      ipc_fmt_event: "EVENT room:bench new_msg PAYLOAD\n"
 * at payloads of 64 B, 1 KiB and 64 KiB (a JSON object {"pad":"xx…"}), and
 *   hmap_lookup     the router's topic → channel map (hmap_get), hits in a
 *                   random order, with 100 and 10,000 topics
 *   cache_lookup    the shared-memory route cache (route_cache_lookup),
 *                   the same hits
 * Each figure is the best of three timed runs of at least --min-ms.
 *
 *   bench/micro [--min-ms MS]
 *
 * One JSON record per figure on stdout.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench_util.h"
#include "buf.h"
#include "hmap.h"
#include "log.h"
#include "daemon/phx_msg.h"
#include "daemon/route_cache.h"
#include "ipc/ipc_line.h"

#define TOPIC "room:bench"
#define EVENT "new_msg"

typedef void (*op_fn)(void *ctx, size_t i);

struct codec {
	const char *payload;
	size_t plen;
	struct buf out;
	char *frame, *bframe, *line;
	size_t flen, bflen, llen;
};

struct lookup {
	char (*keys)[24];
	size_t *klen;
	uint32_t *order;
	size_t n, norder;
	struct hmap map;
	struct route_cache *rc;
	uint64_t now;
};

static double min_s = 0.2;
static volatile size_t sink;

/* ns per call of fn: best of three runs, each long enough. */
static double time_op(op_fn fn, void *ctx)
{
	size_t iters = 1;
	double best = 0;

	for (;;) {
		double t0 = bu_now();
		for (size_t i = 0; i < iters; i++)
			fn(ctx, i);
		double dt = bu_now() - t0;
		if (dt >= min_s / 4)
			break;
		iters *= 4;
	}
	iters = (size_t)((double)iters * 4 + 1);
	for (int r = 0; r < 3; r++) {
		double t0 = bu_now();
		for (size_t i = 0; i < iters; i++)
			fn(ctx, i);
		double ns = (bu_now() - t0) * 1e9 / (double)iters;
		if (r == 0 || ns < best)
			best = ns;
	}
	return best;
}

static void op_json_encode(void *ctx, size_t i)
{
	struct codec *c = ctx;
	(void)i;

	buf_reset(&c->out);
	if (phx_encode_json(&c->out, "3", "7", TOPIC, strlen(TOPIC), EVENT, strlen(EVENT),
			    c->payload, c->plen) < 0)
		bu_die("micro: encode failed");
	sink += buf_len(&c->out);
}

static void op_json_decode(void *ctx, size_t i)
{
	struct codec *c = ctx;
	struct phx_msg m;
	(void)i;

	if (phx_decode_json(c->frame, c->flen, &m) < 0)
		bu_die("micro: decode failed");
	sink += m.payload_len;
}

static void op_bin_encode(void *ctx, size_t i)
{
	struct codec *c = ctx;
	(void)i;

	buf_reset(&c->out);
	if (phx_encode_binary_push(&c->out, "3", "7", TOPIC, strlen(TOPIC), EVENT,
				   strlen(EVENT), c->payload, c->plen) < 0)
		bu_die("micro: binary encode failed");
	sink += buf_len(&c->out);
}

static void op_bin_decode(void *ctx, size_t i)
{
	struct codec *c = ctx;
	struct phx_msg m;
	(void)i;

	if (phx_decode_binary(c->bframe, c->bflen, &m) < 0)
		bu_die("micro: binary decode failed");
	sink += m.payload_len;
}

static void op_line_parse(void *ctx, size_t i)
{
	struct codec *c = ctx;
	struct ipc_cmd cmd;
	(void)i;

	if (ipc_line_parse(c->line, c->llen, &cmd) != 0)
		bu_die("micro: line parse failed: %s", cmd.err ? cmd.err : "?");
	sink += cmd.payload.len;
}

static void op_line_event(void *ctx, size_t i)
{
	struct codec *c = ctx;
	(void)i;

	buf_reset(&c->out);
	if (ipc_fmt_event(&c->out, 0, TOPIC, strlen(TOPIC), EVENT, strlen(EVENT), c->payload,
			  c->plen) < 0)
		bu_die("micro: event format failed");
	sink += buf_len(&c->out);
}

static void codec_init(struct codec *c, size_t size)
{
	struct buf b;

	memset(c, 0, sizeof(*c));
	c->payload = bu_payload(size);
	c->plen = strlen(c->payload);
	buf_init(&c->out, 0);
	buf_init(&b, 0);
	if (phx_encode_json(&b, "3", "7", TOPIC, strlen(TOPIC), EVENT, strlen(EVENT),
			    c->payload, c->plen) < 0)
		bu_die("micro: encode failed");
	c->flen = buf_len(&b);
	c->frame = malloc(c->flen);
	c->bflen = 3 + strlen(TOPIC) + strlen(EVENT) + c->plen;
	c->bframe = malloc(c->bflen);
	c->llen = (size_t)snprintf(NULL, 0, "PUSH %s %s %s", TOPIC, EVENT, c->payload);
	c->line = malloc(c->llen + 1);
	if (!c->frame || !c->bframe || !c->line)
		bu_die("micro: out of memory");
	memcpy(c->frame, buf_rptr(&b), c->flen);
	buf_free(&b);
	/* server broadcast: kind 2, topic_len, event_len, topic, event, data */
	c->bframe[0] = PHX_BIN_BROADCAST;
	c->bframe[1] = (char)strlen(TOPIC);
	c->bframe[2] = (char)strlen(EVENT);
	memcpy(c->bframe + 3, TOPIC EVENT, strlen(TOPIC EVENT));
	memcpy(c->bframe + 3 + strlen(TOPIC EVENT), c->payload, c->plen);
	snprintf(c->line, c->llen + 1, "PUSH %s %s %s", TOPIC, EVENT, c->payload);
}

static void codec_free(struct codec *c)
{
	free((void *)c->payload);
	free(c->frame);
	free(c->bframe);
	free(c->line);
	buf_free(&c->out);
}

static void record(const char *op, size_t arg, double ns, size_t bytes)
{
	char kase[64];

	snprintf(kase, sizeof(kase), "%s-%zu", op, arg);
	bu_rec_begin("micro", "-", kase);
	bu_rec_str("op", op);
	bu_rec_num("arg", (double)arg);
	bu_rec_num("ns_per_op", ns);
	if (bytes)
		bu_rec_num("mb_per_s", (double)bytes / ns * 1e3);
	bu_rec_end();
}

static void codecs(void)
{
	static const size_t sizes[] = { 64, 1024, 65536 };
	static const struct {
		const char *name;
		op_fn fn;
	} ops[] = {
		{ "json_encode", op_json_encode },
		{ "json_decode", op_json_decode },
		{ "bin_encode", op_bin_encode },
		{ "bin_decode", op_bin_decode },
		{ "line_parse", op_line_parse },
		{ "line_event", op_line_event },
	};

	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		struct codec c;
		codec_init(&c, sizes[s]);
		for (size_t k = 0; k < sizeof(ops) / sizeof(ops[0]); k++)
			record(ops[k].name, sizes[s], time_op(ops[k].fn, &c),
			       sizes[s]);
		codec_free(&c);
	}
}

static void op_hmap(void *ctx, size_t i)
{
	struct lookup *l = ctx;
	uint32_t k = l->order[i % l->norder];

	if (!hmap_get(&l->map, l->keys[k], l->klen[k]))
		bu_die("micro: hmap miss");
}

static void op_cache(void *ctx, size_t i)
{
	struct lookup *l = ctx;
	uint32_t k = l->order[i % l->norder];

	if (route_cache_lookup(l->rc, l->keys[k], l->klen[k], ++l->now, NULL) != 0)
		bu_die("micro: route cache miss");
}

static void lookup_init(struct lookup *l, size_t n)
{
	uint64_t s = 0x853C49E6748FEA9BULL;
	struct route_cache_params p = { .capacity = (uint32_t)n };
	char name[64], err[256];

	memset(l, 0, sizeof(*l));
	l->n = n;
	l->norder = 1u << 16;
	l->keys = malloc(n * sizeof(*l->keys));
	l->klen = malloc(n * sizeof(*l->klen));
	l->order = malloc(l->norder * sizeof(*l->order));
	if (!l->keys || !l->klen || !l->order)
		bu_die("micro: out of memory");
	hmap_init(&l->map);
	for (size_t i = 0; i < n; i++) {
		l->klen[i] = (size_t)snprintf(l->keys[i], sizeof(l->keys[i]), "room:%zu", i);
		if (hmap_put(&l->map, l->keys[i], l->klen[i], l->keys[i]) < 0)
			bu_die("micro: out of memory");
	}
	for (size_t i = 0; i < l->norder; i++) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		l->order[i] = (uint32_t)((s >> 16) % n);
	}
	snprintf(name, sizeof(name), "/phxd-micro-%d", (int)getpid());
	route_cache_unlink(name);
	if (route_cache_open(&l->rc, name, &p, err, sizeof(err)) < 0)
		bu_die("micro: route cache: %s", err);
	route_cache_unlink(name);       /* the mapping stays; nothing left behind */
	for (size_t i = 0; i < n; i++)
		if (route_cache_put(l->rc, l->keys[i], l->klen[i], "main", (uint16_t)(i % 64),
				    ROUTE_STATE_JOINED, ++l->now) < 0)
			bu_die("micro: route cache put failed");
}

static void lookup_free(struct lookup *l)
{
	hmap_free(&l->map);
	route_cache_close(l->rc);
	free(l->keys);
	free(l->klen);
	free(l->order);
}

static void lookups(void)
{
	static const size_t sizes[] = { 100, 10000 };

	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		struct lookup l;
		lookup_init(&l, sizes[s]);
		record("hmap_lookup", sizes[s], time_op(op_hmap, &l), 0);
		record("cache_lookup", sizes[s], time_op(op_cache, &l), 0);
		lookup_free(&l);
	}
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "min-ms", required_argument, NULL, 'm' },
		{ NULL, 0, NULL, 0 },
	};
	int k;

	while ((k = getopt_long(argc, argv, "m:", lopts, NULL)) != -1) {
		if (k != 'm' || atoi(optarg) < 1) {
			fprintf(stderr, "usage: micro [--min-ms MS]\n");
			return 2;
		}
		min_s = atoi(optarg) / 1000.0;
	}
	log_init("micro");
	log_set_level(LOG_LVL_WARN);
	codecs();
	lookups();
	return 0;
}
