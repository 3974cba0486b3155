/* Unit tests: the permessage-deflate codec (daemon/ws_deflate.c).  A client
 * codec and a server codec talk to each other through plain buffers. */
#define ZLIB_CONST
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "buf.h"
#include "daemon/ws_deflate.h"

#define MIB (1024u * 1024u)

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint8_t rnd8(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint8_t)(rng >> 32);
}

enum fill { F_RANDOM, F_REPEAT, F_JSON };

/* n bytes of a kind: incompressible, a short repeated pattern, or JSON-ish
 * text that compresses the way real payloads do. */
static unsigned char *make_data(size_t n, enum fill kind)
{
	static const char *const words[] = { "\"user\":", "\"room:lobby\"", "\"body\":",
					     "\"hello\"", "42,", "\"ts\":", "{", "}", "[", "]" };
	unsigned char *p = malloc(n ? n : 1);
	ck_assert_ptr_nonnull(p);
	for (size_t i = 0; i < n;) {
		if (kind == F_RANDOM) {
			p[i++] = rnd8();
		} else if (kind == F_REPEAT) {
			p[i] = (unsigned char)("abcdefgh"[i % 8]);
			i++;
		} else {
			const char *w = words[rnd8() % 10];
			for (size_t k = 0; w[k] && i < n; k++)
				p[i++] = (unsigned char)w[k];
		}
	}
	return p;
}

struct pair {
	struct wsd cli, srv;
};

static void pair_init(struct pair *pr, const struct wsd_params *p, int level)
{
	ck_assert_int_eq(wsd_init(&pr->cli, p, WSD_CLIENT, level), 0);
	ck_assert_int_eq(wsd_init(&pr->srv, p, WSD_SERVER, level), 0);
}

static void pair_fini(struct pair *pr)
{
	wsd_fini(&pr->cli);
	wsd_fini(&pr->srv);
}

/* Compresses with a, inflates with b, checks the result; returns the
 * compressed size. */
static size_t trip(struct wsd *a, struct wsd *b, const unsigned char *p, size_t n)
{
	struct buf z, out;
	buf_init(&z, 0);
	buf_init(&out, 0);
	ck_assert_int_eq(wsd_deflate(a, p, n, &z), 0);
	size_t zl = buf_len(&z);
	ck_assert_int_eq(wsd_inflate(b, buf_rptr(&z), zl, n, &out), 0);
	ck_assert_uint_eq(buf_len(&out), n);
	if (n)
		ck_assert(memcmp(buf_rptr(&out), p, n) == 0);
	buf_free(&z);
	buf_free(&out);
	return zl;
}

/* Every size and kind, both ways, several messages in a row (so context
 * takeover matters), for the given parameters. */
static void round_trips(const struct wsd_params *p, int level)
{
	static const size_t sizes[] = { 0, 1, 2, 100, 4096, 65536, MIB };
	struct pair pr;
	pair_init(&pr, p, level);
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		for (int kind = F_RANDOM; kind <= F_JSON; kind++) {
			unsigned char *d = make_data(sizes[s], (enum fill)kind);
			for (int k = 0; k < 3; k++) {
				trip(&pr.cli, &pr.srv, d, sizes[s]);
				trip(&pr.srv, &pr.cli, d, sizes[s]);
			}
			free(d);
		}
	}
	ck_assert_uint_eq(pr.cli.tx_msgs, pr.srv.rx_msgs);
	ck_assert_uint_eq(pr.cli.tx_plain, pr.srv.rx_plain);
	ck_assert_uint_eq(pr.cli.tx_packed, pr.srv.rx_packed);
	pair_fini(&pr);
}

START_TEST(round_trip_defaults)
{
	struct wsd_params p;
	wsd_params_default(&p);
	round_trips(&p, WSD_LEVEL_DEFAULT);
}
END_TEST

START_TEST(round_trip_no_context_takeover)
{
	struct wsd_params p;
	wsd_params_default(&p);
	p.client_no_context_takeover = 1;
	p.server_no_context_takeover = 1;
	round_trips(&p, WSD_LEVEL_DEFAULT);
}
END_TEST

START_TEST(round_trip_window_bits)
{
	static const unsigned bits[] = { 9, 10, 12, 15 };
	for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++) {
		struct wsd_params p;
		wsd_params_default(&p);
		p.client_max_window_bits = bits[i];
		p.server_max_window_bits = bits[(i + 1) % 4];
		p.client_no_context_takeover = (int)(i & 1);
		round_trips(&p, (int)(i * 3));   /* levels 0, 3, 6, 9 */
	}
}
END_TEST

START_TEST(compresses)
{
	struct wsd_params p;
	struct pair pr;
	wsd_params_default(&p);
	pair_init(&pr, &p, WSD_LEVEL_DEFAULT);
	unsigned char *rep = make_data(MIB, F_REPEAT);
	ck_assert_uint_lt(trip(&pr.cli, &pr.srv, rep, MIB), MIB / 100);
	free(rep);
	/* random data does not shrink, but does not grow much either */
	unsigned char *rnd = make_data(65536, F_RANDOM);
	ck_assert_uint_lt(trip(&pr.cli, &pr.srv, rnd, 65536), 65536 + 64);
	free(rnd);
	/* the empty message is a byte or two */
	ck_assert_uint_le(trip(&pr.cli, &pr.srv, (const unsigned char *)"", 0), 2);
	pair_fini(&pr);
}
END_TEST

/* With context takeover a message repeated costs a few bytes; without, it
 * costs what the first one did. */
START_TEST(context_takeover_matters)
{
	unsigned char *d = make_data(2000, F_RANDOM);
	struct wsd_params p;
	struct pair pr;

	wsd_params_default(&p);
	pair_init(&pr, &p, WSD_LEVEL_DEFAULT);
	size_t first = trip(&pr.cli, &pr.srv, d, 2000);
	size_t again = trip(&pr.cli, &pr.srv, d, 2000);
	ck_assert_uint_gt(first, 1900);
	ck_assert_uint_lt(again, 50);
	pair_fini(&pr);

	p.client_no_context_takeover = 1;
	pair_init(&pr, &p, WSD_LEVEL_DEFAULT);
	trip(&pr.cli, &pr.srv, d, 2000);
	ck_assert_uint_gt(trip(&pr.cli, &pr.srv, d, 2000), 1900);
	/* the other direction still takes over */
	trip(&pr.srv, &pr.cli, d, 2000);
	ck_assert_uint_lt(trip(&pr.srv, &pr.cli, d, 2000), 50);
	pair_fini(&pr);
	free(d);
}
END_TEST

/* An inflater that drops its context while the peer keeps it fails on the
 * second message: the reset really happens. */
START_TEST(takeover_mismatch_detected)
{
	unsigned char *d = make_data(2000, F_RANDOM);
	struct wsd_params keep, drop;
	struct wsd tx, rx;
	struct buf z, out;

	wsd_params_default(&keep);
	drop = keep;
	drop.client_no_context_takeover = 1;
	ck_assert_int_eq(wsd_init(&tx, &keep, WSD_CLIENT, 6), 0);
	ck_assert_int_eq(wsd_init(&rx, &drop, WSD_SERVER, 6), 0);
	trip(&tx, &rx, d, 2000);
	buf_init(&z, 0);
	buf_init(&out, 0);
	ck_assert_int_eq(wsd_deflate(&tx, d, 2000, &z), 0);
	ck_assert_int_eq(wsd_inflate(&rx, buf_rptr(&z), buf_len(&z), MIB, &out), -EPROTO);
	ck_assert_uint_eq(buf_len(&out), 0);
	ck_assert_str_ne(rx.err, "");
	buf_free(&z);
	buf_free(&out);
	wsd_fini(&tx);
	wsd_fini(&rx);
	free(d);
}
END_TEST

/* Window bits are applied on both sides.  The compressor: a repeat 2000
 * bytes back is found with 15 bits, not with 9.  The inflater: zlib checks
 * distances against its window only across messages, so a compressor that
 * keeps 15 bits of context makes a 9-bit inflater fail on the repeat. */
START_TEST(window_bits_applied)
{
	unsigned char *blk = make_data(2000, F_RANDOM);
	unsigned char *d = malloc(4000);
	memcpy(d, blk, 2000);
	memcpy(d + 2000, blk, 2000);
	struct wsd_params big, small;
	struct wsd tx, rx;
	struct buf z, out;

	wsd_params_default(&big);
	small = big;
	small.client_max_window_bits = 9;
	ck_assert_int_eq(wsd_init(&tx, &big, WSD_CLIENT, 6), 0);
	ck_assert_int_eq(wsd_init(&rx, &big, WSD_SERVER, 6), 0);
	ck_assert_uint_lt(trip(&tx, &rx, d, 4000), 2100);
	wsd_fini(&tx);
	wsd_fini(&rx);
	ck_assert_int_eq(wsd_init(&tx, &small, WSD_CLIENT, 6), 0);
	ck_assert_int_eq(wsd_init(&rx, &small, WSD_SERVER, 6), 0);
	ck_assert_uint_gt(trip(&tx, &rx, d, 4000), 3900);
	wsd_fini(&tx);
	wsd_fini(&rx);

	ck_assert_int_eq(wsd_init(&tx, &big, WSD_CLIENT, 6), 0);
	ck_assert_int_eq(wsd_init(&rx, &small, WSD_SERVER, 6), 0);
	trip(&tx, &rx, blk, 2000);
	buf_init(&z, 0);
	buf_init(&out, 0);
	ck_assert_int_eq(wsd_deflate(&tx, blk, 2000, &z), 0);
	ck_assert_uint_lt(buf_len(&z), 50);
	ck_assert_int_eq(wsd_inflate(&rx, buf_rptr(&z), buf_len(&z), MIB, &out), -EPROTO);
	ck_assert_ptr_nonnull(strstr(rx.err, "too far back"));
	wsd_fini(&tx);
	wsd_fini(&rx);
	buf_free(&z);
	buf_free(&out);
	free(d);
	free(blk);
}
END_TEST

START_TEST(init_checks)
{
	struct wsd_params p;
	struct wsd w;
	wsd_params_default(&p);
	ck_assert_int_eq(wsd_init(&w, &p, WSD_CLIENT, 10), -EINVAL);
	ck_assert_int_eq(wsd_init(&w, &p, WSD_CLIENT, -1), -EINVAL);
	/* we cannot compress with 8 bits, but can inflate what 8 bits made */
	p.client_max_window_bits = 8;
	ck_assert_int_eq(wsd_init(&w, &p, WSD_CLIENT, 6), -EINVAL);
	ck_assert_int_eq(wsd_init(&w, &p, WSD_SERVER, 6), 0);
	wsd_fini(&w);
	p.client_max_window_bits = 16;
	ck_assert_int_eq(wsd_init(&w, &p, WSD_SERVER, 6), -EINVAL);
	p.client_max_window_bits = 15;
	p.server_max_window_bits = 8;
	ck_assert_int_eq(wsd_init(&w, &p, WSD_SERVER, 6), -EINVAL);
	ck_assert_int_eq(wsd_init(&w, &p, WSD_CLIENT, 6), 0);
	ck_assert_ptr_null(w.tx); /* nothing allocated before use */
	ck_assert_ptr_null(w.rx);
	wsd_fini(&w);
	wsd_fini(&w); /* twice is harmless */
}
END_TEST

/* Raw zlib with an 8-bit window (what another server might use) inflates
 * with an 8-bit inflater. */
START_TEST(inflate_eight_bits)
{
	z_stream z;
	unsigned char in[3000], zbuf[4000];
	memset(&z, 0, sizeof(z));
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (unsigned char)("abcabd"[i % 6]);
	/* zlib refuses raw -8 for deflate; a 9-bit stream whose matches stay
	 * within 256 bytes is what an 8-bit peer could have sent */
	ck_assert_int_eq(deflateInit2(&z, 6, Z_DEFLATED, -9, 1, Z_DEFAULT_STRATEGY), Z_OK);
	z.next_in = in;
	z.avail_in = sizeof(in);
	z.next_out = zbuf;
	z.avail_out = sizeof(zbuf);
	ck_assert_int_eq(deflate(&z, Z_SYNC_FLUSH), Z_OK);
	size_t zl = sizeof(zbuf) - z.avail_out - 4;
	deflateEnd(&z);
	struct wsd_params p;
	struct wsd w;
	struct buf out;
	wsd_params_default(&p);
	p.server_max_window_bits = 8;
	ck_assert_int_eq(wsd_init(&w, &p, WSD_CLIENT, 6), 0);
	buf_init(&out, 0);
	ck_assert_int_eq(wsd_inflate(&w, zbuf, zl, MIB, &out), 0);
	ck_assert_uint_eq(buf_len(&out), sizeof(in));
	ck_assert(memcmp(buf_rptr(&out), in, sizeof(in)) == 0);
	buf_free(&out);
	wsd_fini(&w);
}
END_TEST

START_TEST(corrupt_stream)
{
	static const unsigned char junk[] = { 0xff, 0xff, 0xff, 0xff, 0x00, 0x01 };
	struct wsd_params p;
	struct pair pr;
	struct buf z, out;
	wsd_params_default(&p);
	pair_init(&pr, &p, 6);
	buf_init(&out, 0);
	buf_append(&out, "keep", 4);
	/* block type 3 does not exist */
	ck_assert_int_eq(wsd_inflate(&pr.cli, junk, sizeof(junk), MIB, &out), -EPROTO);
	ck_assert_str_eq(pr.cli.err, "invalid block type");
	ck_assert_uint_eq(buf_len(&out), 4); /* nothing appended on error */
	ck_assert_uint_eq(pr.cli.rx_msgs, 0);

	/* a real message with bits flipped or cut short: an error or other
	 * bytes, never a crash or more than the limit (a flip in padding bits
	 * can go unnoticed: deflate has no checksum, RFC 7692 adds none) */
	unsigned char *d = make_data(10000, F_JSON);
	int noticed = 0;
	buf_init(&z, 0);
	for (int k = 0; k < 50; k++) {
		struct wsd_params q;
		struct pair t;
		wsd_params_default(&q);
		pair_init(&t, &q, 6);
		buf_reset(&z);
		ck_assert_int_eq(wsd_deflate(&t.srv, d, 10000, &z), 0);
		size_t zl = buf_len(&z);
		if (k % 2)
			zl = zl * (size_t)k / 50;
		else
			buf_rptr(&z)[(size_t)k * 7 % zl] ^= (char)(1 << (k % 8));
		buf_reset(&out);
		int r = wsd_inflate(&t.cli, buf_rptr(&z), zl, 20000, &out);
		ck_assert(r == 0 || r == -EPROTO || r == -EMSGSIZE);
		ck_assert_uint_le(buf_len(&out), 20000);
		noticed += r < 0 || buf_len(&out) != 10000 || memcmp(buf_rptr(&out), d, 10000) != 0;
		pair_fini(&t);
	}
	ck_assert_int_ge(noticed, 45);
	/* a final block with junk after it */
	z_stream zs;
	unsigned char zb[64];
	memset(&zs, 0, sizeof(zs));
	ck_assert_int_eq(deflateInit2(&zs, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
	zs.next_in = (const unsigned char *)"hello";
	zs.avail_in = 5;
	zs.next_out = zb;
	zs.avail_out = sizeof(zb) - 3;
	ck_assert_int_eq(deflate(&zs, Z_FINISH), Z_STREAM_END);
	size_t fl = sizeof(zb) - 3 - zs.avail_out;
	deflateEnd(&zs);
	buf_reset(&out);
	/* a whole stream (BFINAL) is fine, and the next message starts anew */
	ck_assert_int_eq(wsd_inflate(&pr.cli, zb, fl, MIB, &out), 0);
	ck_assert_uint_eq(buf_len(&out), 5);
	ck_assert_int_eq(wsd_inflate(&pr.cli, zb, fl, MIB, &out), 0);
	ck_assert_uint_eq(buf_len(&out), 10);
	memcpy(zb + fl, "xyz", 3);
	ck_assert_int_eq(wsd_inflate(&pr.cli, zb, fl + 3, MIB, &out), -EPROTO);
	ck_assert_uint_eq(buf_len(&out), 10);
	buf_free(&z);
	buf_free(&out);
	free(d);
	pair_fini(&pr);
}
END_TEST

/* 64 MiB of zeros is a 64 KiB message; inflating it stops at the limit
 * without allocating much past it. */
START_TEST(decompression_bomb)
{
	struct wsd_params p;
	struct pair pr;
	struct buf z, out;
	size_t big = 64u * MIB;
	unsigned char *zeros = calloc(1, big);
	ck_assert_ptr_nonnull(zeros);
	wsd_params_default(&p);
	pair_init(&pr, &p, 9);
	buf_init(&z, 0);
	buf_init(&out, 0);
	ck_assert_int_eq(wsd_deflate(&pr.srv, zeros, big, &z), 0);
	ck_assert_uint_lt(buf_len(&z), 128 * 1024);
	ck_assert_int_eq(wsd_inflate(&pr.cli, buf_rptr(&z), buf_len(&z), MIB, &out), -EMSGSIZE);
	ck_assert_uint_eq(buf_len(&out), 0);
	ck_assert_uint_le(out.cap, 2 * MIB);
	buf_free(&out);
	pair_fini(&pr);

	/* exactly at the limit passes, one byte under fails */
	pair_init(&pr, &p, 6);
	buf_reset(&z);
	ck_assert_int_eq(wsd_deflate(&pr.srv, zeros, 100000, &z), 0);
	ck_assert_int_eq(wsd_inflate(&pr.cli, buf_rptr(&z), buf_len(&z), 100000, &out), 0);
	ck_assert_uint_eq(buf_len(&out), 100000);
	pair_fini(&pr);
	pair_init(&pr, &p, 6);
	buf_reset(&z);
	buf_reset(&out);
	ck_assert_int_eq(wsd_deflate(&pr.srv, zeros, 100000, &z), 0);
	ck_assert_int_eq(wsd_inflate(&pr.cli, buf_rptr(&z), buf_len(&z), 99999, &out), -EMSGSIZE);
	pair_fini(&pr);
	buf_free(&z);
	buf_free(&out);
	free(zeros);
}
END_TEST

/* The output buffer's own limit is honoured on both sides. */
START_TEST(output_limit)
{
	struct wsd_params p;
	struct pair pr;
	struct buf z;
	unsigned char *d = make_data(100000, F_RANDOM);
	wsd_params_default(&p);
	pair_init(&pr, &p, 6);
	buf_init(&z, 1000);
	ck_assert_int_eq(wsd_deflate(&pr.cli, d, 100000, &z), -EMSGSIZE);
	ck_assert_uint_eq(buf_len(&z), 0);
	buf_free(&z);
	pair_fini(&pr);
	free(d);
}
END_TEST

static Suite *wsd_suite(void)
{
	Suite *s = suite_create("ws_deflate");
	TCase *tc = tcase_create("codec");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, round_trip_defaults);
	tcase_add_test(tc, round_trip_no_context_takeover);
	tcase_add_test(tc, round_trip_window_bits);
	tcase_add_test(tc, compresses);
	tcase_add_test(tc, context_takeover_matters);
	tcase_add_test(tc, takeover_mismatch_detected);
	tcase_add_test(tc, window_bits_applied);
	tcase_add_test(tc, init_checks);
	tcase_add_test(tc, inflate_eight_bits);
	tcase_add_test(tc, corrupt_stream);
	tcase_add_test(tc, decompression_bomb);
	tcase_add_test(tc, output_limit);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(wsd_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
