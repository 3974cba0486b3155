/* Unit tests: the WebSocket frame header reader (daemon/ws_frame.c).  Every
 * header is also fed one byte at a time (need-more until the last) and
 * checked against the rules of RFC 6455 5.2/5.5 and RFC 7692 6. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/ws_frame.h"

/* Every strict prefix of p[0..n) needs more (or already fails the same
 * way); the whole gives r. */
static long parse_all_prefixes(const uint8_t *p, size_t n, unsigned flags, struct ws_frame *f)
{
	long want = ws_frame_parse(p, n, flags, f);
	for (size_t k = 0; k < n; k++) {
		struct ws_frame g;
		long r = ws_frame_parse(p, k, flags, &g);
		if (want < 0)
			ck_assert_msg(r == 0 || r == want, "prefix %zu: %ld", k, r);
		else
			ck_assert_msg(r == 0, "prefix %zu of a %zu-byte header: %ld", k, n, r);
	}
	return ws_frame_parse(p, n, flags, f);
}

START_TEST(lengths)
{
	struct ws_frame f;
	uint8_t small[] = { 0x81, 0x05, 'h', 'e', 'l', 'l', 'o' };
	ck_assert_int_eq(parse_all_prefixes(small, 2, 0, &f), 2);
	ck_assert_uint_eq(f.fin, 1);
	ck_assert_uint_eq(f.opcode, WS_OP_TEXT);
	ck_assert_uint_eq(f.rsv, 0);
	ck_assert_uint_eq(f.len, 5);
	ck_assert_uint_eq(f.hdr_len, 2);
	/* the payload is not the parser's business: more bytes change nothing */
	ck_assert_int_eq(ws_frame_parse(small, sizeof(small), 0, &f), 2);

	uint8_t mid[] = { 0x82, 126, 0x01, 0x00 };
	ck_assert_int_eq(parse_all_prefixes(mid, sizeof(mid), 0, &f), 4);
	ck_assert_uint_eq(f.opcode, WS_OP_BINARY);
	ck_assert_uint_eq(f.len, 256);

	uint8_t big[] = { 0x02, 127, 0, 0, 0, 0x01, 0x02, 0x03, 0x04, 0x05 };
	ck_assert_int_eq(parse_all_prefixes(big, sizeof(big), 0, &f), 10);
	ck_assert_uint_eq(f.fin, 0);
	ck_assert_uint_eq(f.len, 0x0102030405ULL);

	uint8_t top[] = { 0x82, 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	ck_assert_int_eq(ws_frame_parse(top, sizeof(top), 0, &f), 10);
	ck_assert_uint_eq(f.len, 0x7fffffffffffffffULL);

	uint8_t empty[] = { 0x81, 0x00 };
	ck_assert_int_eq(ws_frame_parse(empty, 2, 0, &f), 2);
	ck_assert_uint_eq(f.len, 0);
	ck_assert_int_eq(ws_frame_parse(empty, 0, 0, &f), 0);
	ck_assert_int_eq(ws_frame_parse(NULL, 0, 0, &f), 0);
}
END_TEST

static void expect_bad(const uint8_t *p, size_t n, unsigned flags, const char *why_has)
{
	struct ws_frame f;
	ck_assert_int_eq(parse_all_prefixes(p, n, flags, &f), -EPROTO);
	ck_assert_ptr_nonnull(f.why);
	ck_assert_msg(strstr(f.why, why_has), "why '%s', wanted '%s'", f.why, why_has);
	ck_assert_uint_eq(f.close_code, 1002);
}

START_TEST(protocol_errors)
{
	static const uint8_t msb[] = { 0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0 };
	expect_bad(msb, sizeof(msb), 0, "most significant bit");
	static const uint8_t masked[] = { 0x81, 0x85, 1, 2, 3, 4 };
	expect_bad(masked, sizeof(masked), 0, "masked");
	for (unsigned op = 3; op <= 7; op++) {
		uint8_t p[] = { (uint8_t)(0x80 | op), 0 };
		expect_bad(p, 2, 0, "reserved opcode");
	}
	for (unsigned op = 0xB; op <= 0xF; op++) {
		uint8_t p[] = { (uint8_t)(0x80 | op), 0 };
		expect_bad(p, 2, 0, "reserved opcode");
	}
	/* control frames: not fragmented, at most 125 bytes */
	static const uint8_t ping_frag[] = { 0x09, 0 };
	expect_bad(ping_frag, 2, 0, "fragmented control");
	static const uint8_t ping_long[] = { 0x89, 126, 0, 126 };
	expect_bad(ping_long, sizeof(ping_long), 0, "longer than 125");
	static const uint8_t close_long[] = { 0x88, 127, 0, 0, 0, 0, 0, 0, 0, 126 };
	expect_bad(close_long, sizeof(close_long), 0, "longer than 125");
	uint8_t ping125[] = { 0x89, 125 };
	struct ws_frame f;
	ck_assert_int_eq(ws_frame_parse(ping125, 2, 0, &f), 2);
	ck_assert_uint_eq(f.opcode, WS_OP_PING);
	ck_assert_uint_eq(f.len, 125);
}
END_TEST

START_TEST(sequence)
{
	struct ws_frame f;
	static const uint8_t cont[] = { 0x80, 0 };
	expect_bad(cont, 2, 0, "no message to continue");
	ck_assert_int_eq(ws_frame_parse(cont, 2, WS_FRAME_IN_MSG, &f), 2);
	ck_assert_uint_eq(f.opcode, WS_OP_CONT);
	static const uint8_t text[] = { 0x01, 0 };
	expect_bad(text, 2, WS_FRAME_IN_MSG, "inside a fragmented");
	/* control frames may come between fragments */
	static const uint8_t pong[] = { 0x8A, 0 };
	ck_assert_int_eq(ws_frame_parse(pong, 2, WS_FRAME_IN_MSG, &f), 2);
	ck_assert_uint_eq(f.opcode, WS_OP_PONG);
}
END_TEST

START_TEST(rsv_bits)
{
	struct ws_frame f;
	static const uint8_t rsv1_text[] = { 0xC1, 0x01 };
	expect_bad(rsv1_text, 2, 0, "reserved bit");
	ck_assert_int_eq(ws_frame_parse(rsv1_text, 2, WS_FRAME_RSV1_OK, &f), 2);
	ck_assert_uint_eq(f.rsv, WS_RSV1);
	static const uint8_t rsv1_bin[] = { 0x42, 0x01 };
	ck_assert_int_eq(ws_frame_parse(rsv1_bin, 2, WS_FRAME_RSV1_OK, &f), 2);
	/* RSV1 only on the first frame of a data message */
	static const uint8_t rsv1_cont[] = { 0xC0, 0x01 };
	expect_bad(rsv1_cont, 2, WS_FRAME_RSV1_OK | WS_FRAME_IN_MSG, "RSV1 on a control or continuation");
	static const uint8_t rsv1_ping[] = { 0xC9, 0x00 };
	expect_bad(rsv1_ping, 2, WS_FRAME_RSV1_OK, "RSV1 on a control");
	/* RSV2 and RSV3: no extension of ours */
	static const uint8_t rsv2[] = { 0xA1, 0x00 };
	expect_bad(rsv2, 2, WS_FRAME_RSV1_OK, "reserved bit");
	static const uint8_t rsv3[] = { 0x91, 0x00 };
	expect_bad(rsv3, 2, WS_FRAME_RSV1_OK, "reserved bit");
}
END_TEST

START_TEST(close_bodies)
{
	uint16_t code = 0;
	ck_assert_int_eq(ws_frame_close_valid("", 0, &code), 1);
	ck_assert_uint_eq(code, 1005);
	ck_assert_int_eq(ws_frame_close_valid("\x03", 1, &code), 0);
	ck_assert_int_eq(ws_frame_close_valid("\x03\xe8", 2, &code), 1);
	ck_assert_uint_eq(code, 1000);
	ck_assert_int_eq(ws_frame_close_valid("\x03\xf4" "drain", 7, &code), 1);
	ck_assert_uint_eq(code, 1012);   /* Phoenix on drain */
	ck_assert_int_eq(ws_frame_close_valid("\x0f\xa0" "app", 5, &code), 1);
	ck_assert_uint_eq(code, 4000);
	/* reserved, never on the wire */
	static const unsigned bad[] = { 0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535 };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t p[2] = { (uint8_t)(bad[i] >> 8), (uint8_t)bad[i] };
		ck_assert_msg(ws_frame_close_valid(p, 2, &code) == 0, "code %u", bad[i]);
	}
	/* the reason is UTF-8 */
	ck_assert_int_eq(ws_frame_close_valid("\x03\xe8\xc3\xa9", 4, &code), 1);
	ck_assert_int_eq(ws_frame_close_valid("\x03\xe8\xc3", 3, &code), 0);
	ck_assert_int_eq(ws_frame_close_valid("\x03\xe8\xed\xa0\x80", 5, &code), 0);
}
END_TEST

/* Every two-byte start of a header: the answer agrees with the rules. */
START_TEST(exhaustive_first_bytes)
{
	for (unsigned flags = 0; flags < 4; flags++) {
		for (unsigned b0 = 0; b0 < 256; b0++) {
			for (unsigned b1 = 0; b1 < 256; b1++) {
				uint8_t p[WS_FRAME_HDR_MAX] = { (uint8_t)b0, (uint8_t)b1 };
				struct ws_frame f;
				long r = ws_frame_parse(p, sizeof(p), flags, &f);
				unsigned op = b0 & 15, rsv = (b0 >> 4) & 7, fin = b0 >> 7;
				unsigned len7 = b1 & 127;
				int ctrl = op >= 8;
				int ok = (op <= 2 || (op >= 8 && op <= 10)) && !(b1 & 0x80) &&
					 (op != 0 || (flags & WS_FRAME_IN_MSG)) &&
					 (op == 0 || ctrl || !(flags & WS_FRAME_IN_MSG)) &&
					 (rsv == 0 || (rsv == 4 && (flags & WS_FRAME_RSV1_OK) &&
						       (op == 1 || op == 2))) &&
					 (!ctrl || (fin && len7 <= 125));
				if (!ok) {
					ck_assert_msg(r == -EPROTO, "%02x %02x flags %u: %ld", b0, b1,
						      flags, r);
					continue;
				}
				ck_assert_msg(r == (len7 < 126 ? 2 : len7 == 126 ? 4 : 10),
					      "%02x %02x flags %u: %ld", b0, b1, flags, r);
				ck_assert_uint_eq(f.opcode, op);
				ck_assert_uint_eq(f.fin, fin);
				ck_assert_uint_eq(f.rsv, rsv);
				if (len7 < 126)
					ck_assert_uint_eq(f.len, len7);
			}
		}
	}
}
END_TEST

static Suite *ws_frame_suite(void)
{
	Suite *s = suite_create("ws_frame");
	TCase *tc = tcase_create("parse");
	tcase_add_test(tc, lengths);
	tcase_add_test(tc, protocol_errors);
	tcase_add_test(tc, sequence);
	tcase_add_test(tc, rsv_bits);
	tcase_add_test(tc, close_bodies);
	tcase_add_test(tc, exhaustive_first_bytes);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(ws_frame_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
