/* Unit tests: Phoenix V2 serializer (daemon/phx_msg.c). */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "daemon/phx_msg.h"

static int dec(const char *s, struct phx_msg *m)
{
	return phx_decode_json(s, strlen(s), m);
}

START_TEST(decode_captured_frames)
{
	struct phx_msg m;
	ck_assert_int_eq(dec("[\"1\",\"1\",\"room:lobby\",\"phx_reply\",{\"response\":{\"joined\":\"lobby\"},\"status\":\"ok\"}]", &m), 0);
	ck_assert(m.is_reply && m.has_join_ref && m.has_ref);
	ck_assert_str_eq(m.join_ref, "1");
	ck_assert_str_eq(m.topic, "room:lobby");
	ck_assert_str_eq(m.status, "ok");
	ck_assert_int_eq(m.response_len, strlen("{\"joined\":\"lobby\"}"));
	ck_assert(memcmp(m.response, "{\"joined\":\"lobby\"}", m.response_len) == 0);

	/* key order is not fixed */
	ck_assert_int_eq(dec("[\"7\",\"7\",\"room:x\",\"phx_reply\",{\"status\":\"error\",\"response\":{\"reason\":\"unauthorized\"}}]", &m), 0);
	ck_assert_str_eq(m.status, "error");
	ck_assert(memcmp(m.response, "{\"reason\":\"unauthorized\"}", m.response_len) == 0);

	ck_assert_int_eq(dec("[null,null,\"room:lobby\",\"shout\",{\"msg\":\"hi\"}]", &m), 0);
	ck_assert(!m.is_reply && !m.has_join_ref && !m.has_ref);
	ck_assert_str_eq(m.event, "shout");
	ck_assert_int_eq(m.payload_len, 12);

	ck_assert_int_eq(dec("[\"1\",null,\"room:lobby\",\"pushed\",{\"x\":1}]", &m), 0);
	ck_assert(m.has_join_ref && !m.has_ref);

	ck_assert_int_eq(dec("[null,\"8\",\"room:notjoined\",\"phx_reply\",{\"response\":{\"reason\":\"unmatched topic\"},\"status\":\"error\"}]", &m), 0);
	ck_assert(!m.has_join_ref);
	ck_assert_str_eq(m.ref, "8");

	/* whitespace anywhere JSON allows it; payload of any type */
	ck_assert_int_eq(dec(" [ \"1\" , \"2\" , \"t\" , \"e\" , [1, 2] ] \n", &m), 0);
	ck_assert_int_eq(m.payload_len, 6);
	ck_assert_int_eq(dec("[null,null,\"t\",\"e\",\"str\"]", &m), 0);
	ck_assert_int_eq(dec("[null,null,\"t\",\"e\",null]", &m), 0);

	/* escapes in names are decoded */
	ck_assert_int_eq(dec("[null,null,\"room:\\u00e9\\\"q\",\"e\\/v\",{}]", &m), 0);
	ck_assert_str_eq(m.topic, "room:\xc3\xa9\"q");
	ck_assert_int_eq(m.topic_len, 9);
	ck_assert_str_eq(m.event, "e/v");

	/* a reply without response still decodes */
	ck_assert_int_eq(dec("[null,\"2\",\"phoenix\",\"phx_reply\",{\"status\":\"ok\"}]", &m), 0);
	ck_assert_int_eq(m.response_len, 2);
}
END_TEST

START_TEST(decode_rejects)
{
	static const char *bad[] = {
		"", "[]", "{}", "[null,null,\"t\",\"e\"]", "[null,null,\"t\",\"e\",{},1]",
		"[1,null,\"t\",\"e\",{}]", "[null,2,\"t\",\"e\",{}]", "[null,null,null,\"e\",{}]",
		"[null,null,\"t\",null,{}]", "[null,null,\"\",\"e\",{}]", "[null,null,\"t\",\"\",{}]",
		"[null,null,\"t\",\"e\",{]", "[null,null,\"t\",\"e\",{}] x", "[null,null,\"t\",\"e\",{}",
		"[nul,null,\"t\",\"e\",{}]", "[null,null,\"t\\u0000\",\"e\",{}]",
		"[null,null,\"t\",\"e\",{}]]", "[null,null,\"t\x01\",\"e\",{}]",
		"[null,\"1\",\"t\",\"phx_reply\",{\"response\":{}}]",          /* no status */
		"[null,\"1\",\"t\",\"phx_reply\",{\"status\":1}]",
		"[null,\"1\",\"t\",\"phx_reply\",[]]",
		"[null,null,\"room:lobb\xc6\xc6y\",\"shout\",{}]",   /* names must be UTF-8 */
		"[\"1\xff\",null,\"room:lobby\",\"ev\",{}]",
	};
	struct phx_msg m;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(dec(bad[i], &m) < 0, "accepted: %s", bad[i]);
	/* names over 255 bytes */
	char big[600];
	memset(big, 0, sizeof(big));
	strcpy(big, "[null,null,\"");
	memset(big + strlen(big), 'a', 256);
	strcat(big, "\",\"e\",{}]");
	ck_assert_int_lt(dec(big, &m), 0);
}
END_TEST

/* A reply's status and response are found while the payload is validated
 * (one pass): only members of the top-level object count, the first of
 * duplicates wins, keys written with escapes do not match (as before). */
START_TEST(decode_reply_one_pass)
{
	struct phx_msg m;
	ck_assert_int_eq(dec("[null,\"1\",\"t\",\"phx_reply\",{\"response\":{\"status\":\"nested\","
			     "\"response\":1},\"x\":[{\"status\":2}],\"status\":\"ok\"}]", &m), 0);
	ck_assert_str_eq(m.status, "ok");
	ck_assert_uint_eq(m.response_len, strlen("{\"status\":\"nested\",\"response\":1}"));
	ck_assert(memcmp(m.response, "{\"status\":\"nested\",\"response\":1}", m.response_len) == 0);
	ck_assert_int_eq(dec("[null,\"1\",\"t\",\"phx_reply\",{\"status\":\"a\",\"status\":\"b\","
			     "\"response\":[1],\"response\":2}]", &m), 0);
	ck_assert_str_eq(m.status, "a");
	ck_assert(m.response_len == 3 && memcmp(m.response, "[1]", 3) == 0);
	ck_assert_int_eq(dec("[null,\"1\",\"t\",\"phx_reply\",{\"status\" : \"e\\u0072r\" , "
			     "\"response\" :\n {} }]", &m), 0);
	ck_assert_str_eq(m.status, "err");
	ck_assert(m.response_len == 2 && memcmp(m.response, "{}", 2) == 0);
	ck_assert_int_lt(dec("[null,\"1\",\"t\",\"phx_reply\",{\"\\u0073tatus\":\"ok\"}]", &m), 0);
	ck_assert_int_lt(dec("[null,\"1\",\"t\",\"phx_reply\",{\"response\":{\"status\":\"ok\"}}]", &m), 0);
	/* the same object under another event is a payload, nothing more */
	ck_assert_int_eq(dec("[null,null,\"t\",\"e\",{\"status\":1}]", &m), 0);
	ck_assert(!m.is_reply);
	/* a payload that is not valid JSON is still refused, wherever it breaks */
	ck_assert_int_lt(dec("[null,null,\"t\",\"e\",{\"pad\":\"0123456789abcdef0123\x01\"}]", &m), 0);
	ck_assert_int_lt(dec("[null,null,\"t\",\"e\",{\"pad\":\"0123456789abcdef0123\xc3\"}]", &m), 0);
	ck_assert_int_lt(dec("[null,null,\"t\",\"e\",{\"pad\":\"0123456789abcdef0123\n\"}]", &m), 0);
}
END_TEST

START_TEST(decode_every_prefix)
{
	const char *s = "[\"1\",\"3\",\"room:lobby\",\"phx_reply\",{\"response\":{\"hello\":\"world\"},\"status\":\"ok\"}]";
	size_t n = strlen(s);
	struct phx_msg m;
	for (size_t i = 0; i < n; i++) {
		char *p = malloc(i ? i : 1); /* exact size: ASan sees over-reads */
		memcpy(p, s, i);
		ck_assert_msg(phx_decode_json(p, i, &m) < 0, "prefix %zu accepted", i);
		free(p);
	}
	ck_assert_int_eq(phx_decode_json(s, n, &m), 0);
}
END_TEST

/* Names are copied 8 bytes at a time while they are plain: every length
 * around the word size, the quote, an escape, UTF-8 or a control byte in
 * any position, and the size limits give what the byte-wise decoder gives. */
START_TEST(decode_names_word_at_a_time)
{
	static const char *const odd[] = { "", "\\u0041", "\\\"", "\xc3\xa9", "\x01", "\x7f" };
	static const char *const want[] = { "", "A", "\"", "\xc3\xa9", NULL, "\x7f" };
	char name[PHX_NAME_MAX + 8], frame[1024];
	struct phx_msg m;

	for (size_t len = 1; len <= 40; len++) {
		for (size_t k = 0; k < sizeof(odd) / sizeof(odd[0]); k++) {
			for (size_t at = 0; at <= len; at += (k ? 1 : len + 1)) {
				char exp[PHX_NAME_MAX + 8];
				int n = snprintf(name, sizeof(name), "%.*s%s%.*s", (int)at,
						 "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH", odd[k],
						 (int)(len - at), "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefgh");
				ck_assert_int_lt(n, (int)sizeof(name));
				snprintf(frame, sizeof(frame), "[\"%s\",null,\"%s\",\"%s\",{}]", name, name, name);
				int r = dec(frame, &m);
				if (!want[k]) {
					ck_assert_msg(r < 0, "control byte at %zu of %zu accepted", at, len);
					continue;
				}
				snprintf(exp, sizeof(exp), "%.*s%s%.*s", (int)at,
					 "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH", want[k],
					 (int)(len - at), "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefgh");
				ck_assert_msg(r == 0, "len %zu, odd %zu at %zu refused", len, k, at);
				ck_assert_str_eq(m.join_ref, exp);
				ck_assert_str_eq(m.topic, exp);
				ck_assert_str_eq(m.event, exp);
				ck_assert_uint_eq(m.topic_len, strlen(exp));
				ck_assert_uint_eq(m.event_len, strlen(exp));
			}
		}
	}
	/* the limits: PHX_REF_MAX and PHX_NAME_MAX bytes fit, one more does not */
	memset(name, 'r', PHX_REF_MAX + 1);
	snprintf(frame, sizeof(frame), "[\"%.*s\",null,\"t\",\"e\",{}]", PHX_REF_MAX, name);
	ck_assert_int_eq(dec(frame, &m), 0);
	ck_assert_uint_eq(strlen(m.join_ref), PHX_REF_MAX);
	snprintf(frame, sizeof(frame), "[\"%.*s\",null,\"t\",\"e\",{}]", PHX_REF_MAX + 1, name);
	ck_assert_int_lt(dec(frame, &m), 0);
	memset(name, 'n', PHX_NAME_MAX + 1);
	snprintf(frame, sizeof(frame), "[null,null,\"%.*s\",\"e\",{}]", PHX_NAME_MAX, name);
	ck_assert_int_eq(dec(frame, &m), 0);
	ck_assert_uint_eq(m.topic_len, PHX_NAME_MAX);
	snprintf(frame, sizeof(frame), "[null,null,\"%.*s\",\"e\",{}]", PHX_NAME_MAX + 1, name);
	ck_assert_int_lt(dec(frame, &m), 0);
}
END_TEST

/* payload_nl: whether the payload's whitespace holds a raw CR or LF. */
START_TEST(decode_payload_nl)
{
	struct phx_msg m;
	ck_assert_int_eq(dec("[null,null,\"t\",\"e\",{\"a\":\"b\\n\"}]", &m), 0);
	ck_assert_int_eq(m.payload_nl, 0);
	ck_assert_int_eq(dec("[null,null,\"t\",\"e\",{ \"a\" :\t1 }]\n", &m), 0);
	ck_assert_int_eq(m.payload_nl, 0);
	ck_assert_int_eq(dec("[null,null,\"t\",\"e\",{\"a\":\n1}]", &m), 0);
	ck_assert_int_eq(m.payload_nl, 1);
	ck_assert_int_eq(dec("[null,null,\"t\",\"e\",[1,\r2]]", &m), 0);
	ck_assert_int_eq(m.payload_nl, 1);
	ck_assert_int_eq(dec("[null,null,\"t\",\"e\",\n{}\n]", &m), 0);
	ck_assert_int_eq(m.payload_nl, 0); /* around the payload, not in it */
	static const unsigned char bc[] = { 2, 1, 1, 't', 'e', '\n', '\r' };
	m.payload_nl = 1;
	ck_assert_int_eq(phx_decode_binary(bc, sizeof(bc), &m), 0);
	ck_assert_int_eq(m.payload_nl, 0);
}
END_TEST

START_TEST(encode_json)
{
	struct buf b;
	buf_init(&b, 0);
	ck_assert_int_eq(phx_encode_json(&b, "3", "7", "room:lobby", 10, "new_msg", 7,
					 "{\"body\":\"hi\"}", 13), 0);
	ck_assert_int_eq(buf_len(&b), strlen("[\"3\",\"7\",\"room:lobby\",\"new_msg\",{\"body\":\"hi\"}]"));
	ck_assert(memcmp(buf_rptr(&b), "[\"3\",\"7\",\"room:lobby\",\"new_msg\",{\"body\":\"hi\"}]", buf_len(&b)) == 0);
	buf_reset(&b);
	ck_assert_int_eq(phx_encode_json(&b, NULL, "12", "phoenix", 7, "heartbeat", 9, NULL, 0), 0);
	ck_assert(memcmp(buf_rptr(&b), "[null,\"12\",\"phoenix\",\"heartbeat\",{}]", buf_len(&b)) == 0);
	/* names with quotes are escaped; the result decodes back */
	buf_reset(&b);
	ck_assert_int_eq(phx_encode_json(&b, "1", "2", "a\"b", 3, "e\\", 2, "[1]", 3), 0);
	struct phx_msg m;
	ck_assert_int_eq(phx_decode_json(buf_rptr(&b), buf_len(&b), &m), 0);
	ck_assert_str_eq(m.topic, "a\"b");
	ck_assert_str_eq(m.event, "e\\");
	/* all or nothing at a limit */
	struct buf small;
	buf_init(&small, 20);
	buf_puts(&small, "xy");
	ck_assert_int_lt(phx_encode_json(&small, "1", "2", "room:lobby", 10, "ev", 2, "{}", 2), 0);
	ck_assert_int_eq(buf_len(&small), 2);
	buf_free(&small);
	buf_free(&b);
}
END_TEST

START_TEST(binary_frames)
{
	/* the captured client push and server reply */
	static const unsigned char push[] = { 0, 1, 1, 10, 3, '1', '9', 'r', 'o', 'o', 'm', ':', 'l',
		'o', 'b', 'b', 'y', 'b', 'i', 'n', 0xde, 0xad, 0xbe, 0xef };
	static const unsigned char reply[] = { 1, 1, 1, 10, 2, '1', '9', 'r', 'o', 'o', 'm', ':', 'l',
		'o', 'b', 'b', 'y', 'o', 'k', 0xde, 0xad, 0xbe, 0xef };
	struct buf b;
	buf_init(&b, 0);
	ck_assert_int_eq(phx_encode_binary_push(&b, "1", "9", "room:lobby", 10, "bin", 3,
						"\xde\xad\xbe\xef", 4), 0);
	ck_assert_int_eq(buf_len(&b), sizeof(push));
	ck_assert(memcmp(buf_rptr(&b), push, sizeof(push)) == 0);

	struct phx_msg m;
	ck_assert_int_eq(phx_decode_binary_client(push, sizeof(push), &m), 0);
	ck_assert_str_eq(m.event, "bin");
	ck_assert_str_eq(m.ref, "9");

	ck_assert_int_eq(phx_decode_binary(reply, sizeof(reply), &m), 0);
	ck_assert(m.is_reply && m.binary);
	ck_assert_str_eq(m.status, "ok");
	ck_assert_str_eq(m.ref, "9");
	ck_assert_int_eq(m.response_len, 4);
	ck_assert(memcmp(m.response, "\xde\xad\xbe\xef", 4) == 0);

	static const unsigned char bcast[] = { 2, 3, 2, 't', ':', '1', 'e', 'v', 1, 2, 3 };
	ck_assert_int_eq(phx_decode_binary(bcast, sizeof(bcast), &m), 0);
	ck_assert(!m.is_reply && !m.has_join_ref);
	ck_assert_str_eq(m.topic, "t:1");
	ck_assert_str_eq(m.event, "ev");
	ck_assert_int_eq(m.payload_len, 3);

	static const unsigned char spush[] = { 0, 1, 1, 1, '5', 't', 'e', 9 };
	ck_assert_int_eq(phx_decode_binary(spush, sizeof(spush), &m), 0);
	ck_assert_str_eq(m.join_ref, "5");
	ck_assert_int_eq(m.payload_len, 1);

	/* every truncation of a reply is rejected or yields a shorter body;
	 * headers that point past the end never are read */
	for (size_t i = 0; i < 19; i++) {
		unsigned char *p = malloc(i ? i : 1);
		memcpy(p, reply, i);
		ck_assert_msg(phx_decode_binary(p, i, &m) < 0, "truncated %zu accepted", i);
		free(p);
	}
	static const unsigned char badkind[] = { 7, 1, 1, 't', 'e' };
	ck_assert_int_lt(phx_decode_binary(badkind, sizeof(badkind), &m), 0);
	/* fields over 255 bytes cannot be encoded */
	char big[300];
	memset(big, 'a', sizeof(big));
	buf_reset(&b);
	ck_assert_int_eq(phx_encode_binary_push(&b, "1", "2", big, 256, "e", 1, "", 0), -EINVAL);
	ck_assert_int_eq(buf_len(&b), 0);
	buf_free(&b);
}
END_TEST

static Suite *phx_msg_suite(void)
{
	Suite *s = suite_create("phx_msg");
	TCase *tc = tcase_create("json");
	tcase_add_test(tc, decode_captured_frames);
	tcase_add_test(tc, decode_rejects);
	tcase_add_test(tc, decode_reply_one_pass);
	tcase_add_test(tc, decode_every_prefix);
	tcase_add_test(tc, decode_names_word_at_a_time);
	tcase_add_test(tc, decode_payload_nl);
	tcase_add_test(tc, encode_json);
	suite_add_tcase(s, tc);
	tc = tcase_create("binary");
	tcase_add_test(tc, binary_frames);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(phx_msg_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
