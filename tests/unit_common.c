/* unit_common — tests of the common/ modules: buf, json, utf8, b64, backoff,
 * hmap, log_redact_url.  Inputs that are scanned are copied into exact-size
 * heap blocks so that ASan and valgrind catch any read past the end. */
#include "b64.h"
#include "backoff.h"
#include "buf.h"
#include "hmap.h"
#include "json.h"
#include "log.h"

#include <check.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* A heap copy of p[0..n) with nothing after it (n 0: a 1-byte block, unused). */
static char *exact(const char *p, size_t n)
{
	char *q = malloc(n ? n : 1);
	ck_assert_ptr_nonnull(q);
	if (n)
		memcpy(q, p, n);
	return q;
}

/* The readable bytes of b equal s. */
static void buf_is(const struct buf *b, const char *s)
{
	size_t n = strlen(s);
	ck_assert_uint_eq(buf_len(b), n);
	if (n)
		ck_assert_msg(memcmp(buf_rptr(b), s, n) == 0, "buf holds '%.*s', want '%s'",
			      (int)buf_len(b), buf_rptr(b), s);
}

static void buf_is_mem(const struct buf *b, const void *p, size_t n)
{
	ck_assert_uint_eq(buf_len(b), n);
	if (n)
		ck_assert(memcmp(buf_rptr(b), p, n) == 0);
}

/* For hot loops: Check's ck_assert records its location with a system call
 * every time, this only when it fails. */
#define CHECK(cond, ...) do { if (!(cond)) ck_abort_msg(__VA_ARGS__); } while (0)

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint32_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 16);
}

/* ---- buf ---------------------------------------------------------------------- */

START_TEST(test_buf_basic)
{
	struct buf b;
	buf_init(&b, 0);
	ck_assert_uint_eq(buf_len(&b), 0);
	ck_assert_int_eq(buf_find(&b, 0, 'x'), -1);
	buf_release(&b);
	ck_assert_ptr_null(b.data);

	char *w = buf_reserve(&b, 10);
	ck_assert_ptr_nonnull(w);
	memcpy(w, "hello", 5);
	buf_commit(&b, 5);
	buf_is(&b, "hello");
	ck_assert_int_eq(buf_puts(&b, " world"), 0);
	ck_assert_int_eq(buf_putc(&b, '!'), 0);
	buf_is(&b, "hello world!");
	buf_consume(&b, 6);
	buf_is(&b, "world!");
	buf_release(&b);              /* not empty: keeps its memory */
	ck_assert_ptr_nonnull(b.data);
	buf_is(&b, "world!");
	buf_consume(&b, 100);         /* more than held: empties */
	ck_assert_uint_eq(buf_len(&b), 0);
	ck_assert_uint_eq(b.rpos, 0);
	ck_assert_uint_eq(b.wpos, 0);
	buf_release(&b);              /* empty: frees */
	ck_assert_ptr_null(b.data);
	ck_assert_int_eq(buf_append(&b, "x", 0), 0);
	ck_assert_int_eq(buf_append(&b, "abc", 3), 0);
	buf_reset(&b);
	ck_assert_uint_eq(buf_len(&b), 0);
	buf_free(&b);
	buf_free(&b);
	ck_assert_ptr_null(b.data);
}
END_TEST

START_TEST(test_buf_reserve_zero)
{
	/* a zero-byte reservation is a valid place to write nothing */
	struct buf b;
	buf_init(&b, 0);
	char *w = buf_reserve(&b, 0);
	ck_assert_ptr_nonnull(w);
	buf_commit(&b, 0);
	ck_assert_uint_eq(buf_len(&b), 0);
	buf_free(&b);

	buf_init(&b, 4);
	ck_assert_int_eq(buf_append(&b, "abcd", 4), 0);
	ck_assert_ptr_nonnull(buf_reserve(&b, 0));   /* full, but 0 more fits */
	ck_assert_ptr_null(buf_reserve(&b, 1));
	ck_assert_int_eq(errno, EMSGSIZE);
	buf_free(&b);
}
END_TEST

START_TEST(test_buf_limit)
{
	struct buf b;
	buf_init(&b, 16);
	ck_assert_int_eq(buf_append(&b, "0123456789", 10), 0);
	char *data = b.data;
	size_t cap = b.cap;

	ck_assert_int_eq(buf_append(&b, "abcdefg", 7), -EMSGSIZE);
	buf_is(&b, "0123456789");
	ck_assert_ptr_eq(b.data, data);
	ck_assert_uint_eq(b.cap, cap);
	errno = 0;
	ck_assert_ptr_null(buf_reserve(&b, 7));
	ck_assert_int_eq(errno, EMSGSIZE);
	ck_assert_ptr_null(buf_reserve(&b, (size_t)-1));
	ck_assert_int_eq(errno, EMSGSIZE);
	ck_assert_int_eq(buf_printf(&b, "%s", "1234567"), -EMSGSIZE);
	ck_assert_int_eq(buf_put_u64(&b, 1234567), -EMSGSIZE);
	buf_is(&b, "0123456789");

	ck_assert_int_eq(buf_append(&b, "abcdef", 6), 0);
	buf_is(&b, "0123456789abcdef");
	ck_assert_int_eq(buf_putc(&b, 'x'), -EMSGSIZE);
	ck_assert_int_eq(buf_puts(&b, "x"), -EMSGSIZE);
	buf_is(&b, "0123456789abcdef");

	/* the limit is on bytes held: consuming makes room again */
	buf_consume(&b, 10);
	ck_assert_int_eq(buf_append(&b, "ghijklmnop", 10), 0);
	buf_is(&b, "abcdefghijklmnop");
	ck_assert_int_eq(buf_putc(&b, 'x'), -EMSGSIZE);
	buf_free(&b);

	/* a limit above the first allocation grows up to it, not past it */
	buf_init(&b, 1000);
	char big[1001];
	memset(big, 'b', sizeof(big));
	ck_assert_int_eq(buf_append(&b, big, 1001), -EMSGSIZE);
	ck_assert_uint_eq(buf_len(&b), 0);
	ck_assert_int_eq(buf_append(&b, big, 1000), 0);
	ck_assert_uint_eq(buf_len(&b), 1000);
	ck_assert_int_eq(buf_append(&b, big, 1), -EMSGSIZE);
	ck_assert_uint_eq(buf_len(&b), 1000);
	buf_free(&b);
}
END_TEST

START_TEST(test_buf_compaction)
{
	struct buf b;
	char tmp[300];
	for (size_t i = 0; i < sizeof(tmp); i++)
		tmp[i] = (char)('a' + i % 26);

	buf_init(&b, 0);
	ck_assert_int_eq(buf_append(&b, tmp, 200), 0);
	ck_assert_uint_eq(b.cap, 256);
	char *data = b.data;
	buf_consume(&b, 150);
	ck_assert_uint_eq(b.rpos, 150);
	/* 56 bytes free at the end, 206 in all: the unread bytes slide down */
	char *w = buf_reserve(&b, 100);
	ck_assert_ptr_nonnull(w);
	ck_assert_ptr_eq(b.data, data);
	ck_assert_uint_eq(b.cap, 256);
	ck_assert_uint_eq(b.rpos, 0);
	ck_assert_ptr_eq(w, b.data + 50);
	buf_is_mem(&b, tmp + 150, 50);
	memcpy(w, tmp, 100);
	buf_commit(&b, 100);
	ck_assert_uint_eq(buf_len(&b), 150);
	ck_assert(memcmp(buf_rptr(&b), tmp + 150, 50) == 0);
	ck_assert(memcmp(buf_rptr(&b) + 50, tmp, 100) == 0);

	/* growing with unread bytes not at the front keeps them */
	buf_consume(&b, 40);
	ck_assert_int_eq(buf_append(&b, tmp, 300), 0);
	ck_assert_uint_eq(buf_len(&b), 410);
	ck_assert_uint_ge(b.cap, 410);
	ck_assert_uint_eq(b.rpos, 0);
	ck_assert(memcmp(buf_rptr(&b), tmp + 190, 10) == 0);
	ck_assert(memcmp(buf_rptr(&b) + 10, tmp, 100) == 0);
	ck_assert(memcmp(buf_rptr(&b) + 110, tmp, 300) == 0);
	buf_free(&b);

	/* a long stream through a small buffer never grows it */
	buf_init(&b, 64);
	for (int i = 0; i < 10000; i++) {
		CHECK(buf_append(&b, tmp + i % 26, 7) == 0, "append %d", i);
		CHECK(memcmp(buf_rptr(&b) + buf_len(&b) - 7, tmp + i % 26, 7) == 0, "bytes %d", i);
		if (buf_len(&b) > 50)
			buf_consume(&b, 45);
	}
	ck_assert_uint_eq(b.cap, 256);
	buf_free(&b);
}
END_TEST

START_TEST(test_buf_printf)
{
	struct buf b;
	buf_init(&b, 0);
	ck_assert_int_eq(buf_printf(&b, "%d-%s-%c", 42, "x", 'y'), 0);
	buf_is(&b, "42-x-y");
	ck_assert_int_eq(buf_printf(&b, "%s", ""), 0);
	buf_is(&b, "42-x-y");
	buf_reset(&b);

	/* around the internal 256-byte scratch, and far above it */
	static const size_t lens[] = { 254, 255, 256, 257, 1000, 70000 };
	for (size_t k = 0; k < ARRAY_SIZE(lens); k++) {
		size_t n = lens[k];
		char *s = malloc(n + 1);
		for (size_t i = 0; i < n; i++)
			s[i] = (char)('A' + i % 26);
		s[n] = '\0';
		ck_assert_int_eq(buf_puts(&b, "<"), 0);
		ck_assert_int_eq(buf_printf(&b, "%s>%zu", s, n), 0);
		char tail[32];
		int tl = snprintf(tail, sizeof(tail), ">%zu", n);
		ck_assert_uint_eq(buf_len(&b), 1 + n + (size_t)tl);
		ck_assert(memcmp(buf_rptr(&b) + 1, s, n) == 0);
		ck_assert(memcmp(buf_rptr(&b) + 1 + n, tail, (size_t)tl) == 0);
		buf_reset(&b);
		free(s);
	}
	buf_free(&b);

	/* output that exactly reaches the limit fits */
	static const size_t lims[] = { 10, 255, 256, 300, 4096 };
	for (size_t k = 0; k < ARRAY_SIZE(lims); k++) {
		size_t n = lims[k];
		char *s = malloc(n + 2);
		memset(s, 'z', n + 1);
		s[n + 1] = '\0';
		buf_init(&b, n);
		ck_assert_int_eq(buf_printf(&b, "%s", s), -EMSGSIZE);   /* n + 1 */
		ck_assert_uint_eq(buf_len(&b), 0);
		s[n] = '\0';
		ck_assert_msg(buf_printf(&b, "%s", s) == 0, "printf of %zu bytes into max %zu", n, n);
		buf_is(&b, s);
		ck_assert_int_eq(buf_printf(&b, "%s", "q"), -EMSGSIZE);
		buf_is(&b, s);
		/* and after some were consumed */
		buf_consume(&b, 3);
		ck_assert_int_eq(buf_printf(&b, "%s", "abcd"), -EMSGSIZE);
		ck_assert_int_eq(buf_printf(&b, "%s", "abc"), 0);
		ck_assert_uint_eq(buf_len(&b), n);
		ck_assert(memcmp(buf_rptr(&b) + n - 3, "abc", 3) == 0);
		buf_free(&b);
		free(s);
	}
}
END_TEST

START_TEST(test_buf_put_u64)
{
	static const struct { unsigned long long v; const char *s; } t[] = {
		{ 0, "0" }, { 1, "1" }, { 9, "9" }, { 10, "10" }, { 4294967296ULL, "4294967296" },
		{ 18446744073709551615ULL, "18446744073709551615" },
	};
	struct buf b;
	buf_init(&b, 0);
	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		buf_reset(&b);
		ck_assert_int_eq(buf_put_u64(&b, t[i].v), 0);
		buf_is(&b, t[i].s);
	}
	buf_free(&b);
	buf_init(&b, 20);
	ck_assert_int_eq(buf_put_u64(&b, 18446744073709551615ULL), 0);
	ck_assert_int_eq(buf_put_u64(&b, 0), -EMSGSIZE);
	buf_free(&b);
}
END_TEST

START_TEST(test_buf_find)
{
	struct buf b;
	buf_init(&b, 0);
	ck_assert_int_eq(buf_puts(&b, "ab\ncd\nef"), 0);
	ck_assert_int_eq(buf_find(&b, 0, '\n'), 2);
	ck_assert_int_eq(buf_find(&b, 2, '\n'), 2);
	ck_assert_int_eq(buf_find(&b, 3, '\n'), 5);
	ck_assert_int_eq(buf_find(&b, 6, '\n'), -1);
	ck_assert_int_eq(buf_find(&b, 7, 'f'), 7);
	ck_assert_int_eq(buf_find(&b, 8, 'f'), -1);    /* from == len */
	ck_assert_int_eq(buf_find(&b, 100, 'a'), -1);
	ck_assert_int_eq(buf_find(&b, 0, 'z'), -1);
	/* positions are relative to the unread bytes */
	buf_consume(&b, 3);
	ck_assert_int_eq(buf_find(&b, 0, '\n'), 2);
	ck_assert_int_eq(buf_find(&b, 0, 'a'), -1);
	ck_assert_int_eq(buf_find(&b, 0, 'c'), 0);
	/* bytes past the readable end are not looked at */
	buf_consume(&b, 3);
	buf_is(&b, "ef");
	b.data[b.wpos] = 'Q';    /* room exists: cap is 256 */
	ck_assert_int_eq(buf_find(&b, 0, 'Q'), -1);
	ck_assert_int_eq(buf_find(&b, 0, '\0'), -1);
	buf_free(&b);
}
END_TEST

/* ---- json --------------------------------------------------------------------- */

static const char *const json_good[] = {
	"{}", "[]", "0", "-0", "1", "-1", "123", "1.5", "-0.25", "1e5", "1E+5", "1e-5",
	"-1.0E-2", "0.0", "12345678901234567890", "\"\"", "\"x\"", "true", "false", "null",
	"[1,2,3]", "[ 1 , 2 ]", "{\"a\":1}", "{ \"a\" : 1 , \"b\" : [ ] }",
	"{\"a\":[1,2,{\"b\":null}],\"c\":\"\\u00e9\\ud83d\\ude00\"}",
	"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\u0000\"", "\"\\uFFFF\"", "\"\\uD800\\uDC00\"",
	"\"\\udbff\\udfff\"", "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\"",
	"\"\x7f\"", "[[[[]]]]", "{\"\":\"\"}", "[\"a\",{\"b\":{\"c\":[true,false,null]}}]",
	"{\"a\":{}}", "[{}]", "\"\xef\xbf\xbf\"", "\"\xed\x9f\xbf\"", "\"\xee\x80\x80\"",
};

static const char *const json_bad[] = {
	"", " ", "{", "}", "[", "]", "[1,]", "[,1]", "[,]", "{,}", "{\"a\":1,}", "{\"a\"}",
	"{\"a\":}", "{\"a\" 1}", "{a:1}", "{1:1}", "{\"a\":1 \"b\":2}", "[1 2]", "00", "01",
	"-01", "[01]", "-", "--1", "+1", "1.", ".5", "1.e5", "1e", "1e+", "1E-", "0x10",
	"NaN", "Infinity", "-Infinity", "tru", "truth", "nul", "nulll", "fals", "True",
	"\"abc", "\"\\x\"", "\"\\\"", "\"\\u12\"", "\"\\u12G4\"", "\"\\U0041\"",
	"\"\\ud800\"", "\"\\udbff\"", "\"\\udc00\"", "\"\\udfff\"", "\"\\ud800\\u0041\"",
	"\"\\ud800x\"", "\"\\ud800\\\\\"", "\"\\ud800\\ud800\"", "\"\\udc00\\ud800\"",
	"\"\xc0\xaf\"", "\"\xc1\xbf\"", "\"\xe0\x80\xaf\"", "\"\xe0\x9f\xbf\"",
	"\"\xf0\x80\x80\xaf\"", "\"\xf0\x8f\xbf\xbf\"", "\"\xed\xa0\x80\"", "\"\xed\xbf\xbf\"",
	"\"\xf4\x90\x80\x80\"", "\"\xf5\x80\x80\x80\"", "\"\xff\"", "\"\xfe\"", "\"\x80\"",
	"\"\xe2\x82\"", "\"\xe2\x28\xa1\"", "\"a\x01z\"", "\"a\nz\"", "\"a\tz\"", "\"\x1f\"",
	"'x'", "{}x", "{}}", "[]]", "1 2", "[] []", "\"a\"\"b\"", "{\"a\":1}{", "nullx",
	"/* c */ 1", "[1,2", "{\"a\":[1,2}", "[\"a\":1]",
};

START_TEST(test_json_valid)
{
	for (size_t i = 0; i < ARRAY_SIZE(json_good); i++) {
		size_t n = strlen(json_good[i]);
		char *p = exact(json_good[i], n);
		struct json_span sp = { NULL, 99 };
		ck_assert_msg(json_validate(p, n, &sp) == 0, "rejected: %s", json_good[i]);
		ck_assert_ptr_eq(sp.p, p);
		ck_assert_uint_eq(sp.len, n);
		ck_assert_msg(json_skip(p, n, NULL) == (long)n, "skip: %s", json_good[i]);
		free(p);
	}
	/* surrounding whitespace is fine for validate, and the span excludes it */
	const char *ws = " \t\r\n {\"a\" : 1}\n ";
	struct json_span sp;
	ck_assert_int_eq(json_validate(ws, strlen(ws), &sp), 0);
	ck_assert_uint_eq(sp.len, 9);
	ck_assert(memcmp(sp.p, "{\"a\" : 1}", 9) == 0);
	ck_assert_int_eq(json_validate(ws, strlen(ws), NULL), 0);
}
END_TEST

START_TEST(test_json_invalid)
{
	for (size_t i = 0; i < ARRAY_SIZE(json_bad); i++) {
		size_t n = strlen(json_bad[i]);
		char *p = exact(json_bad[i], n);
		struct json_span sp = { (const char *)1, 99 };
		ck_assert_msg(json_validate(p, n, &sp) == -EINVAL, "accepted: %s", json_bad[i]);
		ck_assert_ptr_eq(sp.p, (const char *)1);   /* untouched */
		ck_assert_uint_eq(sp.len, 99);
		free(p);
	}
	/* NUL bytes are not whitespace and not allowed raw in strings */
	ck_assert_int_eq(json_validate("\"a\0b\"", 5, NULL), -EINVAL);
	ck_assert_int_eq(json_validate("{}\0", 3, NULL), -EINVAL);
	ck_assert_int_eq(json_validate("\0{}", 3, NULL), -EINVAL);
}
END_TEST

START_TEST(test_json_skip)
{
	/* a value followed by more text: its own length */
	static const struct { const char *s; long n; } t[] = {
		{ "{\"a\":1} rest", 7 }, { "[1,2]]", 5 }, { "\"x\"y", 3 }, { "true false", 4 },
		{ "null,", 4 }, { "12 ", 2 }, { "-3.5e2x", 6 }, { "01", 1 }, { "{}{}", 2 },
		{ " {}", -1 }, { "", -1 }, { "x", -1 },
	};
	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		size_t n = strlen(t[i].s);
		char *p = exact(t[i].s, n);
		ck_assert_msg(json_skip(p, n, NULL) == t[i].n, "%s", t[i].s);
		free(p);
	}
	int nl = 7;
	ck_assert_int_eq(json_skip("[1,\n2]", 6, &nl), 6);
	ck_assert_int_eq(nl, 1);
	ck_assert_int_eq(json_skip("{\"a\":\r1}", 8, &nl), 8);
	ck_assert_int_eq(nl, 1);
	ck_assert_int_eq(json_skip("[1, 2]", 6, &nl), 6);
	ck_assert_int_eq(nl, 0);
	ck_assert_int_eq(json_skip("[\"\\n\"]", 6, &nl), 6);   /* escaped: not whitespace */
	ck_assert_int_eq(nl, 0);
	nl = 0;
	ck_assert_int_eq(json_skip("[1]\n", 4, &nl), 3);     /* after the value: not counted */
	ck_assert_int_eq(nl, 0);
}
END_TEST

START_TEST(test_json_peek_ws)
{
	ck_assert_int_eq(json_peek("{", 1), JSON_T_OBJECT);
	ck_assert_int_eq(json_peek("[", 1), JSON_T_ARRAY);
	ck_assert_int_eq(json_peek("\"", 1), JSON_T_STRING);
	ck_assert_int_eq(json_peek("-1", 2), JSON_T_NUMBER);
	ck_assert_int_eq(json_peek("7", 1), JSON_T_NUMBER);
	ck_assert_int_eq(json_peek("true", 4), JSON_T_TRUE);
	ck_assert_int_eq(json_peek("false", 5), JSON_T_FALSE);
	ck_assert_int_eq(json_peek("null", 4), JSON_T_NULL);
	ck_assert_int_eq(json_peek("x", 1), JSON_T_INVALID);
	ck_assert_int_eq(json_peek(" {", 2), JSON_T_INVALID);
	ck_assert_int_eq(json_peek("{", 0), JSON_T_INVALID);
	ck_assert_uint_eq(json_ws(" \t\r\nx", 5, 0), 4);
	ck_assert_uint_eq(json_ws(" \t\r\n", 4, 1), 4);
	ck_assert_uint_eq(json_ws("x ", 2, 0), 0);
	ck_assert_uint_eq(json_ws("\f x", 3, 0), 0);    /* form feed is not JSON whitespace */
}
END_TEST

static char *nest(int depth, char open, char close)
{
	char *s = malloc((size_t)depth * 2 + 1);
	memset(s, open, (size_t)depth);
	memset(s + depth, close, (size_t)depth);
	s[depth * 2] = '\0';
	return s;
}

START_TEST(test_json_depth)
{
	char *s = nest(JSON_MAX_DEPTH, '[', ']');
	ck_assert_int_eq(json_validate(s, strlen(s), NULL), 0);
	free(s);
	s = nest(JSON_MAX_DEPTH + 1, '[', ']');
	ck_assert_int_eq(json_validate(s, strlen(s), NULL), -EINVAL);
	ck_assert_int_eq(json_skip(s, strlen(s), NULL), -1);
	free(s);
	/* objects count too: {"a":{"a":...{}...}} */
	for (int depth = JSON_MAX_DEPTH; depth <= JSON_MAX_DEPTH + 1; depth++) {
		struct buf b;
		buf_init(&b, 0);
		for (int i = 0; i < depth - 1; i++)
			ck_assert_int_eq(buf_puts(&b, "{\"a\":"), 0);
		ck_assert_int_eq(buf_puts(&b, "{}"), 0);
		for (int i = 0; i < depth - 1; i++)
			ck_assert_int_eq(buf_putc(&b, '}'), 0);
		int want = depth <= JSON_MAX_DEPTH ? 0 : -EINVAL;
		ck_assert_int_eq(json_validate(buf_rptr(&b), buf_len(&b), NULL), want);
		buf_free(&b);
	}
	/* deep but closed in sequence: depth never passes 1 */
	struct buf b;
	buf_init(&b, 0);
	ck_assert_int_eq(buf_putc(&b, '['), 0);
	for (int i = 0; i < 1000; i++)
		ck_assert_int_eq(buf_puts(&b, i ? ",[]" : "[]"), 0);
	ck_assert_int_eq(buf_putc(&b, ']'), 0);
	ck_assert_int_eq(json_validate(buf_rptr(&b), buf_len(&b), NULL), 0);
	buf_free(&b);
	/* a huge depth is refused without trouble */
	s = nest(100000, '[', ']');
	ck_assert_int_eq(json_validate(s, strlen(s), NULL), -EINVAL);
	free(s);
}
END_TEST

static const char json_sample[] =
	"{\"topic\":\"room:lobby\",\"n\":-12.5e+3,\"ok\":true,\"no\":false,\"nil\":null,"
	"\"list\":[1,0,[],{},\"s\"],\"esc\":\"a\\\"b\\\\c\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\","
	"\"utf8\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\", \"obj\" : { \"k\" : [ 10 ] } }";

START_TEST(test_json_prefixes)
{
	size_t n = strlen(json_sample);
	char *p = exact(json_sample, n);
	ck_assert_int_eq(json_validate(p, n, NULL), 0);
	ck_assert_int_eq(json_skip(p, n, NULL), (long)n);
	free(p);
	for (size_t k = 0; k < n; k++) {
		p = exact(json_sample, k);
		CHECK(json_skip(p, k, NULL) == -1, "prefix of %zu bytes accepted by skip", k);
		CHECK(json_validate(p, k, NULL) == -EINVAL,
			      "prefix of %zu bytes accepted by validate", k);
		free(p);
	}
}
END_TEST

static void decode_is(const char *lit, const char *want, size_t wantlen)
{
	size_t n = strlen(lit);
	char *p = exact(lit, n);
	struct buf b;
	buf_init(&b, 0);
	ck_assert_msg(json_str_decode(p, n, &b) == (long)n, "decode %s", lit);
	buf_is_mem(&b, want, wantlen);
	buf_free(&b);

	char dst[64];
	size_t outlen = 999;
	ck_assert_int_eq(json_str_decode_to(p, n, dst, sizeof(dst), &outlen), (long)n);
	ck_assert_uint_eq(outlen, wantlen);
	ck_assert(memcmp(dst, want, wantlen) == 0);
	free(p);
}

START_TEST(test_json_str_decode)
{
	decode_is("\"\"", "", 0);
	decode_is("\"abc\"", "abc", 3);
	decode_is("\"a\\\"b\\\\c\\/d\"", "a\"b\\c/d", 7);
	decode_is("\"\\b\\f\\n\\r\\t\"", "\b\f\n\r\t", 5);
	decode_is("\"\\u0041\\u00e9\\u20AC\"", "A\xc3\xa9\xe2\x82\xac", 6);
	decode_is("\"\\u0000\"", "\0", 1);
	decode_is("\"\\u007f\\u0080\\u07ff\\u0800\\uffff\"",
		  "\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf", 11);
	decode_is("\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80", 4);
	decode_is("\"\\uD800\\uDC00\"", "\xf0\x90\x80\x80", 4);
	decode_is("\"\\udbff\\udfff\"", "\xf4\x8f\xbf\xbf", 4);
	decode_is("\"x\\ud83d\\ude00y\\n\"", "x\xf0\x9f\x98\x80y\n", 7);
	decode_is("\"caf\xc3\xa9\"", "caf\xc3\xa9", 5);

	/* consumed length stops at the closing quote */
	struct buf b;
	buf_init(&b, 0);
	ck_assert_int_eq(json_str_decode("\"ab\" , 1", 8, &b), 4);
	buf_is(&b, "ab");
	buf_reset(&b);
	static const char *const bad[] = {
		"abc", "", "\"abc", "\"\\ud800\"", "\"\\udc00\"", "\"\\q\"", "\"\xff\"",
		"\"a\nb\"", "\"\\u12\"",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		size_t n = strlen(bad[i]);
		char *p = exact(bad[i], n);
		ck_assert_msg(json_str_decode(p, n, &b) == -EINVAL, "%s", bad[i]);
		ck_assert_uint_eq(buf_len(&b), 0);
		free(p);
	}
	buf_free(&b);

	/* the output limit */
	buf_init(&b, 3);
	ck_assert_int_eq(json_str_decode("\"abc\"", 5, &b), 5);
	buf_reset(&b);
	ck_assert_int_eq(json_str_decode("\"abcd\"", 6, &b), -EMSGSIZE);
	buf_reset(&b);
	ck_assert_int_eq(json_str_decode("\"a\\u20ac\"", 9, &b), -EMSGSIZE);
	buf_free(&b);

	char dst[4];
	size_t outlen = 77;
	ck_assert_int_eq(json_str_decode_to("\"abcd\"", 6, dst, 4, &outlen), 6);
	ck_assert_uint_eq(outlen, 4);
	outlen = 77;
	ck_assert_int_eq(json_str_decode_to("\"abcde\"", 7, dst, 4, &outlen), -EMSGSIZE);
	ck_assert_uint_eq(outlen, 77);
	ck_assert_int_eq(json_str_decode_to("\"\\ud83d\\ude00x\"", 15, dst, 4, &outlen),
			 -EMSGSIZE);
	ck_assert_int_eq(json_str_decode_to("\"\\ud83d\\ude00\"", 14, dst, 4, &outlen), 14);
	ck_assert_uint_eq(outlen, 4);
	ck_assert_int_eq(json_str_decode_to("\"\"", 2, dst, 0, &outlen), 2);
	ck_assert_uint_eq(outlen, 0);
	ck_assert_int_eq(json_str_decode_to("\"x\"", 3, dst, 0, &outlen), -EMSGSIZE);
}
END_TEST

static void put_str_is(const char *s, size_t n, const char *want)
{
	struct buf b;
	char *p = exact(s, n);
	buf_init(&b, 0);
	ck_assert_int_eq(json_put_str(&b, p, n), 0);
	buf_is(&b, want);
	/* the output is always valid JSON and decodes back to valid UTF-8 */
	ck_assert_int_eq(json_validate(buf_rptr(&b), buf_len(&b), NULL), 0);
	struct buf d;
	buf_init(&d, 0);
	ck_assert_int_eq(json_str_decode(buf_rptr(&b), buf_len(&b), &d), (long)buf_len(&b));
	ck_assert(utf8_valid(buf_rptr(&d), buf_len(&d)));
	if (utf8_valid(s, n))
		buf_is_mem(&d, s, n);   /* lossless for valid input */
	buf_free(&d);
	buf_free(&b);
	free(p);
}

#define PUT_STR_IS(lit, want) put_str_is(lit, sizeof(lit) - 1, want)

START_TEST(test_json_put_str)
{
	PUT_STR_IS("", "\"\"");
	PUT_STR_IS("abc", "\"abc\"");
	PUT_STR_IS("a\"b\\c/d", "\"a\\\"b\\\\c/d\"");
	PUT_STR_IS("\n\r\t\b\f", "\"\\n\\r\\t\\b\\f\"");
	PUT_STR_IS("\x01\x1f\x7f", "\"\\u0001\\u001f\x7f\"");
	PUT_STR_IS("\0", "\"\\u0000\"");
	PUT_STR_IS("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
		   "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
	/* invalid UTF-8: every bad byte becomes U+FFFD */
	PUT_STR_IS("\xff", "\"\xef\xbf\xbd\"");
	PUT_STR_IS("a\xc3", "\"a\xef\xbf\xbd\"");                    /* cut short */
	PUT_STR_IS("\xc3(", "\"\xef\xbf\xbd(\"");                    /* bad continuation */
	PUT_STR_IS("\xc0\xaf", "\"\xef\xbf\xbd\xef\xbf\xbd\"");      /* overlong */
	PUT_STR_IS("\xed\xa0\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");   /* surrogate */
	PUT_STR_IS("\xf4\x90\x80\x80x",
		   "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdx\"");   /* > U+10FFFF */
	PUT_STR_IS("\x80\"", "\"\xef\xbf\xbd\\\"\"");

	struct buf b;
	buf_init(&b, 4);
	ck_assert_int_eq(json_put_str(&b, "ab", 2), 0);
	buf_reset(&b);
	ck_assert_int_eq(json_put_str(&b, "abc", 3), -EMSGSIZE);
	buf_free(&b);
}
END_TEST

START_TEST(test_json_put_compact)
{
	static const struct { const char *in, *out; } t[] = {
		{ "{}", "{}" },
		{ "{ \"a\" : [ 1 , 2 ] ,\n \"b c\" : \"x  y\" }", "{\"a\":[1,2],\"b c\":\"x  y\"}" },
		{ "[\r\n\t1,\r\n\t\"\\\" ]\"\r\n]", "[1,\"\\\" ]\"]" },
		{ "\"  spaced  \"", "\"  spaced  \"" },
		{ "[ true , false , null ]", "[true,false,null]" },
	};
	struct buf b;
	buf_init(&b, 0);
	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		buf_reset(&b);
		ck_assert_int_eq(json_put_compact(&b, t[i].in, strlen(t[i].in)), 0);
		buf_is(&b, t[i].out);
		ck_assert_int_eq(json_validate(buf_rptr(&b), buf_len(&b), NULL), 0);
	}
	buf_free(&b);
}
END_TEST

static void obj_get_is(const char *obj, const char *key, int want, const char *val)
{
	size_t n = strlen(obj);
	char *p = exact(obj, n);
	struct json_span sp = { NULL, 0 };
	ck_assert_msg(json_obj_get(p, n, key, &sp) == want, "%s in %s", key, obj);
	if (want == 0) {
		ck_assert_uint_eq(sp.len, strlen(val));
		ck_assert(memcmp(sp.p, val, sp.len) == 0);
		ck_assert(sp.p >= p && sp.p + sp.len <= p + n);
	}
	free(p);
}

START_TEST(test_json_obj_get)
{
	const char *o = "{\"status\":\"ok\",\"response\":{\"a\":[1,{\"status\":2}]},"
			"\"n\":-1.5, \"t\" : true , \"z\":null}";
	obj_get_is(o, "status", 0, "\"ok\"");
	obj_get_is(o, "response", 0, "{\"a\":[1,{\"status\":2}]}");
	obj_get_is(o, "n", 0, "-1.5");
	obj_get_is(o, "t", 0, "true");
	obj_get_is(o, "z", 0, "null");
	obj_get_is(o, "a", -ENOENT, NULL);          /* nested keys are not found */
	obj_get_is(o, "stat", -ENOENT, NULL);
	obj_get_is(o, "statuss", -ENOENT, NULL);
	obj_get_is(o, "", -ENOENT, NULL);
	obj_get_is("{}", "a", -ENOENT, NULL);
	obj_get_is(" { } ", "a", -ENOENT, NULL);
	obj_get_is(" {\"a\" : 1 } ", "a", 0, "1");
	obj_get_is("{\"\":5}", "", 0, "5");
	obj_get_is("{\"a\":1,\"a\":2}", "a", 0, "1");  /* the first one */
	obj_get_is("{\"x\":\"}\",\"a\":[\"{\"]}", "a", 0, "[\"{\"]");
	obj_get_is("[]", "a", -EINVAL, NULL);
	obj_get_is("[{\"a\":1}]", "a", -EINVAL, NULL);
	obj_get_is("\"a\"", "a", -EINVAL, NULL);
	obj_get_is("1", "a", -EINVAL, NULL);
	obj_get_is("", "a", -EINVAL, NULL);
	obj_get_is("{\"a\"}", "a", -EINVAL, NULL);
	obj_get_is("{\"b\":}", "a", -EINVAL, NULL);
}
END_TEST

/* json_skip_keys finds in one pass what json_obj_get finds key by key. */
START_TEST(test_json_skip_keys)
{
	static const char *const keys[] = { "status", "response", "n", "a", "" };
	static const char *const objs[] = {
		"{\"status\":\"ok\",\"response\":{\"a\":[1,{\"status\":2}]},\"n\":-1.5, \"t\" : true}",
		"{\"response\" : [ {\"status\":1} ] , \"status\":\"error\"}",
		"{}", "{\"a\":1,\"a\":2}", "{\"\":5,\"x\":\"}\",\"a\":[\"{\"]}",
		"{\"st\\u0061tus\":1}", "{\"a\":{\"a\":{\"a\":3}}}",
	};
	for (size_t i = 0; i < ARRAY_SIZE(objs); i++) {
		size_t n = strlen(objs[i]);
		char *p = exact(objs[i], n);
		struct json_span v[ARRAY_SIZE(keys)];
		ck_assert_int_eq(json_skip_keys(p, n, NULL, keys, ARRAY_SIZE(keys), v), (long)n);
		for (size_t k = 0; k < ARRAY_SIZE(keys); k++) {
			struct json_span g;
			int r = json_obj_get(p, n, keys[k], &g);
			if (r == 0)
				ck_assert_msg(v[k].p == g.p && v[k].len == g.len, "%s in %s",
					      keys[k], objs[i]);
			else
				ck_assert_msg(r == -ENOENT && v[k].p == NULL, "%s in %s", keys[k],
					      objs[i]);
		}
		free(p);
	}
	/* not an object, or not valid: nothing found */
	static const char *const other[] = { "[{\"a\":1}]", "\"a\"", "{\"a\":1", "{\"a\":}" };
	for (size_t i = 0; i < ARRAY_SIZE(other); i++) {
		size_t n = strlen(other[i]);
		struct json_span v[1] = { { "x", 1 } };
		long r = json_skip_keys(other[i], n, NULL, keys + 3, 1, v);
		ck_assert_int_eq(r, json_skip(other[i], n, NULL));
		ck_assert_ptr_null(v[0].p);
	}
	int nl = 0;
	struct json_span v[1];
	ck_assert_int_eq(json_skip_keys("{\"a\":\n1}", 8, &nl, keys + 3, 1, v), 8);
	ck_assert_int_eq(nl, 1);
	ck_assert_uint_eq(v[0].len, 1);
}
END_TEST

/* The string scanners skip plain bytes a word at a time: whatever sits at
 * any offset of a string of any length, around word edges, is seen. */
START_TEST(test_json_string_words)
{
	static const struct {
		const char *ins;        /* put into a run of plain bytes */
		int valid;
		const char *dec;        /* decoded, when valid */
	} t[] = {
		{ "\\n", 1, "\n" }, { "\\\"", 1, "\"" }, { "\\\\", 1, "\\" },
		{ "\\u00e9", 1, "\xc3\xa9" }, { "\xc3\xa9", 1, "\xc3\xa9" },
		{ "\xf0\x9f\x98\x80", 1, "\xf0\x9f\x98\x80" }, { "\x7f", 1, "\x7f" },
		{ "~ !", 1, "~ !" }, { "\x01", 0, NULL }, { "\x1f", 0, NULL }, { "\n", 0, NULL },
		{ "\x80", 0, NULL }, { "\xc3", 0, NULL }, { "\xff", 0, NULL }, { "\\x", 0, NULL },
		{ "\\ud800", 0, NULL }, { "\"", 0, NULL },
	};
	char lit[128], want[128], got[128];
	for (size_t k = 0; k < ARRAY_SIZE(t); k++) {
		size_t il = strlen(t[k].ins);
		for (size_t pre = 0; pre < 40; pre++) {
			for (size_t post = 0; post < 20; post += 3) {
				size_t n = 0;
				lit[n++] = '"';
				memset(lit + n, 'a', pre);
				n += pre;
				memcpy(lit + n, t[k].ins, il);
				n += il;
				memset(lit + n, 'b', post);
				n += post;
				lit[n++] = '"';
				char *p = exact(lit, n);
				int ok = json_validate(p, n, NULL) == 0;
				CHECK(ok == t[k].valid, "insert %zu at %zu+%zu: %d", k, pre, post, ok);
				if (ok) {
					size_t wl = 0, gl = 0;
					memset(want, 'a', pre);
					wl = pre;
					memcpy(want + wl, t[k].dec, strlen(t[k].dec));
					wl += strlen(t[k].dec);
					memset(want + wl, 'b', post);
					wl += post;
					CHECK(json_str_decode_to(p, n, got, sizeof(got), &gl) == (long)n,
					      "decode %zu at %zu", k, pre);
					CHECK(gl == wl && memcmp(got, want, wl) == 0, "decoded %zu at %zu",
					      k, pre);
				}
				free(p);
				/* the writer escapes what must be, at any offset */
				struct buf b;
				buf_init(&b, 0);
				ck_assert_int_eq(json_put_str(&b, lit + 1, n - 2), 0);
				CHECK(json_validate(buf_rptr(&b), buf_len(&b), NULL) == 0,
				      "put_str %zu at %zu", k, pre);
				buf_free(&b);
			}
		}
	}
}
END_TEST

/* ---- utf8 --------------------------------------------------------------------- */

START_TEST(test_utf8)
{
	static const char *const good[] = {
		"", "a", "plain ascii text longer than eight bytes",
		"\xc2\x80", "\xdf\xbf", "\xe0\xa0\x80", "\xed\x9f\xbf", "\xee\x80\x80",
		"\xef\xbf\xbf", "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf",
		"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
	};
	static const char *const bad[] = {
		"\x80", "\xbf", "\xc0\x80", "\xc1\xbf", "\xc2", "\xc2\x41", "\xe0\x80\x80",
		"\xe0\x9f\xbf", "\xe2\x82", "\xe2\x28\xa1", "\xed\xa0\x80", "\xed\xbf\xbf",
		"\xf0\x80\x80\x80", "\xf0\x8f\xbf\xbf", "\xf0\x9f\x98", "\xf4\x90\x80\x80",
		"\xf5\x80\x80\x80", "\xf8\x88\x80\x80\x80", "\xfe", "\xff",
	};
	for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
		size_t n = strlen(good[i]);
		char *p = exact(good[i], n);
		ck_assert_msg(utf8_valid(p, n) == 1, "good %zu", i);
		free(p);
	}
	ck_assert_int_eq(utf8_valid("a\0b", 3), 1);   /* U+0000 is valid UTF-8 */
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		size_t n = strlen(bad[i]);
		/* alone, and after 0..17 ASCII bytes (through the 8-byte fast path) */
		for (size_t pre = 0; pre < 18; pre++) {
			for (size_t post = 0; post < 10; post += 9) {
				size_t m = pre + n + post;
				char *p = malloc(m);
				memset(p, 'a', m);
				memcpy(p + pre, bad[i], n);
				CHECK(utf8_valid(p, m) == 0, "bad %zu at %zu+%zu", i, pre, post);
				free(p);
			}
		}
	}
	/* a valid multibyte sequence at every offset of a long ASCII run */
	for (size_t pre = 0; pre < 20; pre++) {
		char p[32];
		memset(p, 'x', sizeof(p));
		memcpy(p + pre, "\xf0\x9f\x98\x80", 4);
		ck_assert_int_eq(utf8_valid(p, sizeof(p)), 1);
		/* cut into the sequence */
		ck_assert_int_eq(utf8_valid(p, pre + 3), 0);
	}
}
END_TEST

/* ---- b64 ---------------------------------------------------------------------- */

static const struct { const char *raw, *enc; } b64_vec[] = {
	{ "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
	{ "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
};

START_TEST(test_b64_rfc4648)
{
	for (size_t i = 0; i < ARRAY_SIZE(b64_vec); i++) {
		struct buf b;
		buf_init(&b, 0);
		errno = EINTR;   /* a stale errno must not leak into the result */
		ck_assert_msg(b64_encode(&b, b64_vec[i].raw, strlen(b64_vec[i].raw)) == 0,
			      "encode '%s'", b64_vec[i].raw);
		buf_is(&b, b64_vec[i].enc);
		ck_assert_uint_eq(b64_enc_len(strlen(b64_vec[i].raw)), strlen(b64_vec[i].enc));
		buf_free(&b);

		buf_init(&b, 0);
		size_t n = strlen(b64_vec[i].enc);
		char *p = exact(b64_vec[i].enc, n);
		ck_assert_int_eq(b64_decode(&b, p, n), 0);
		buf_is(&b, b64_vec[i].raw);
		free(p);
		buf_free(&b);
	}
	/* both append */
	struct buf b;
	buf_init(&b, 0);
	ck_assert_int_eq(buf_puts(&b, "<"), 0);
	ck_assert_int_eq(b64_encode(&b, "foo", 3), 0);
	ck_assert_int_eq(b64_decode(&b, "YmFy", 4), 0);
	buf_is(&b, "<Zm9vbar");
	buf_free(&b);
}
END_TEST

START_TEST(test_b64_roundtrip)
{
	unsigned char raw[300];
	for (size_t i = 0; i < sizeof(raw); i++)
		raw[i] = (unsigned char)(i * 7 + 3);
	for (size_t n = 0; n <= sizeof(raw); n++) {
		struct buf e, d;
		buf_init(&e, 0);
		buf_init(&d, 0);
		ck_assert_int_eq(b64_encode(&e, raw, n), 0);
		ck_assert_uint_eq(buf_len(&e), b64_enc_len(n));
		char *p = exact(buf_rptr(&e), buf_len(&e));
		ck_assert_int_eq(b64_decode(&d, p, buf_len(&e)), 0);
		buf_is_mem(&d, raw, n);
		free(p);
		buf_free(&e);
		buf_free(&d);
	}
	/* the whole alphabet, both ways */
	const char *all = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	struct buf d, e;
	buf_init(&d, 0);
	buf_init(&e, 0);
	ck_assert_int_eq(b64_decode(&d, all, 64), 0);
	ck_assert_uint_eq(buf_len(&d), 48);
	ck_assert_int_eq(b64_encode(&e, buf_rptr(&d), buf_len(&d)), 0);
	buf_is(&e, all);
	buf_free(&d);
	buf_free(&e);
}
END_TEST

START_TEST(test_b64_bad)
{
	static const struct { const char *s; size_t n; } bad[] = {
#define B(lit) { lit, sizeof(lit) - 1 }
		B("Z"), B("Zg"), B("Zg="), B("Zm9vY"), B("===="), B("Z==="), B("=Zg="), B("Zg=a"),
		B("Z=g="), B("Zm9v===="), B("Zg==Zg=="), B("Zm=v"), B("Zm9@"), B("Zm 9"),
		B("Zm9v\n"), B("Zm-v"), B("Zm_v"), B("Zm9\x80"), B("Zm9v\0\0\0\0"), B("Zm\0v"),
		/* non-canonical: padding bits not zero */
		B("Zh=="), B("Zv=="), B("Zm9="), B("Zm+="), B("Zm8/Zm9="),
#undef B
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		char *p = exact(bad[i].s, bad[i].n);
		struct buf b;
		buf_init(&b, 0);
		ck_assert_int_eq(buf_puts(&b, "keep"), 0);
		ck_assert_msg(b64_decode(&b, p, bad[i].n) == -EINVAL, "accepted '%s'", bad[i].s);
		buf_is(&b, "keep");   /* nothing appended */
		buf_free(&b);
		free(p);
	}
	/* the buffer limit */
	struct buf b;
	buf_init(&b, 5);
	ck_assert_int_eq(b64_decode(&b, "Zm9vYmFy", 8), -EMSGSIZE);
	ck_assert_uint_eq(buf_len(&b), 0);
	ck_assert_int_eq(b64_encode(&b, "foob", 4), -EMSGSIZE);
	ck_assert_uint_eq(buf_len(&b), 0);
	ck_assert_int_eq(b64_decode(&b, "Zm9vYmE=", 8), 0);
	buf_is(&b, "fooba");
	buf_free(&b);
}
END_TEST

/* ---- backoff ------------------------------------------------------------------- */

START_TEST(test_backoff_parse)
{
	struct backoff b;
	ck_assert_int_eq(backoff_parse(&b, "10,50,100", 0), 0);
	ck_assert_uint_eq(b.nsteps, 3);
	ck_assert_uint_eq(b.steps_ms[0], 10);
	ck_assert_uint_eq(b.steps_ms[1], 50);
	ck_assert_uint_eq(b.steps_ms[2], 100);
	ck_assert_uint_eq(b.attempt, 0);
	ck_assert_uint_eq(b.jitter_pct, 0);

	ck_assert_int_eq(backoff_parse(&b, " 1 , 2 ,3 ", 25), 0);
	ck_assert_uint_eq(b.nsteps, 3);
	ck_assert_uint_eq(b.steps_ms[2], 3);
	ck_assert_uint_eq(b.jitter_pct, 25);
	ck_assert_int_eq(backoff_parse(&b, "3600000", 150), 0);
	ck_assert_uint_eq(b.steps_ms[0], 3600000);
	ck_assert_uint_eq(b.jitter_pct, 100);   /* clamped */
	ck_assert_int_eq(backoff_parse(&b, "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16", 0), 0);
	ck_assert_uint_eq(b.nsteps, BACKOFF_MAX_STEPS);
	ck_assert_uint_eq(b.steps_ms[15], 16);

	ck_assert_int_eq(backoff_parse(&b, BACKOFF_RECONNECT_DEFAULT, 0), 0);
	ck_assert_uint_eq(b.nsteps, 10);
	ck_assert_uint_eq(b.steps_ms[0], 10);
	ck_assert_uint_eq(b.steps_ms[9], 5000);
	ck_assert_int_eq(backoff_parse(&b, BACKOFF_REJOIN_DEFAULT, 0), 0);
	ck_assert_uint_eq(b.nsteps, 4);
	ck_assert_uint_eq(b.steps_ms[0], 1000);
	ck_assert_uint_eq(b.steps_ms[3], 10000);

	static const char *const bad[] = {
		"", " ", ",", "10,", ",10", "10,,20", "0", "10,0", "abc", "10;20", "10 20",
		"-5", "10,-5", "3600001", "99999999999999999999999", "10x",
		"1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		memset(&b, 0x5a, sizeof(b));
		ck_assert_msg(backoff_parse(&b, bad[i], 0) == -EINVAL, "accepted '%s'", bad[i]);
		ck_assert_uint_eq(b.nsteps, 0x5a5a5a5a);   /* untouched */
	}
}
END_TEST

START_TEST(test_backoff_schedule)
{
	struct backoff b;
	ck_assert_int_eq(backoff_parse(&b, "10,50,100", 0), 0);
	ck_assert_uint_eq(backoff_next(&b, 12345), 10);
	ck_assert_uint_eq(backoff_next(&b, 0), 50);
	ck_assert_uint_eq(backoff_next(&b, 99), 100);
	/* the last step repeats */
	for (int i = 0; i < 100; i++)
		ck_assert_uint_eq(backoff_next(&b, rng()), 100);
	backoff_reset(&b);
	ck_assert_uint_eq(backoff_next(&b, 0), 10);
	ck_assert_uint_eq(backoff_next(&b, 0), 50);

	/* many attempts: the counter does not wrap back to the first step */
	for (int i = 0; i < 70000; i++)
		CHECK(backoff_next(&b, (unsigned)i) == 100, "attempt %d", i);
	ck_assert_uint_eq(b.attempt, 0xFFFF);

	ck_assert_int_eq(backoff_parse(&b, BACKOFF_RECONNECT_DEFAULT, 0), 0);
	static const unsigned want[] = { 10, 50, 100, 150, 200, 250, 500, 1000, 2000,
					 5000, 5000, 5000 };
	for (size_t i = 0; i < ARRAY_SIZE(want); i++)
		ck_assert_uint_eq(backoff_next(&b, rng()), want[i]);
}
END_TEST

START_TEST(test_backoff_jitter)
{
	static const unsigned pcts[] = { 1, 10, 25, 50, 100 };
	static const unsigned fixed[] = { 0, 1, 2, 0x7FFFFFFF, 0x80000000u, UINT_MAX };
	for (size_t k = 0; k < ARRAY_SIZE(pcts); k++) {
		struct backoff b;
		unsigned pct = pcts[k];
		ck_assert_int_eq(backoff_parse(&b, "1,3,10,100,1000,3600000", pct), 0);
		for (unsigned step = 0; step < b.nsteps; step++) {
			unsigned base = b.steps_ms[step];
			unsigned long long span = (unsigned long long)base * pct / 100;
			unsigned long long lo = base - span, hi = base + span;
			if (lo < 1)
				lo = 1;
			unsigned mn = UINT_MAX, mx = 0;
			for (int i = 0; i < 2000 + (int)ARRAY_SIZE(fixed); i++) {
				b.attempt = step;
				unsigned rnd = i < (int)ARRAY_SIZE(fixed) ? fixed[i] : rng();
				unsigned d = backoff_next(&b, rnd);
				CHECK(d >= lo && d <= hi, "pct %u base %u: %u not in [%llu, %llu]",
					      pct, base, d, lo, hi);
				mn = d < mn ? d : mn;
				mx = d > mx ? d : mx;
			}
			/* jitter actually spreads the delays when there is room */
			if (span >= 10)
				ck_assert_uint_gt(mx - mn, span);
		}
	}
}
END_TEST

/* ---- hmap ---------------------------------------------------------------------- */

/* Every entry can be found from its home slot without crossing an empty one
 * (what backward-shift deletion must keep true), and n matches. */
static void hmap_check_invariant(const struct hmap *m)
{
	size_t used = 0;
	for (size_t j = 0; j < m->cap; j++) {
		if (!m->e[j].hash)
			continue;
		used++;
		CHECK(m->e[j].hash == hmap_hash(m->e[j].key, m->e[j].klen), "hash of slot %zu", j);
		for (size_t i = m->e[j].hash & (m->cap - 1); i != j; i = (i + 1) & (m->cap - 1))
			CHECK(m->e[i].hash != 0, "hole between home and slot %zu", j);
	}
	ck_assert_uint_eq(used, m->n);
	ck_assert(m->n * 4 <= m->cap * 3 || m->cap == 0);
}

START_TEST(test_hmap_basic)
{
	struct hmap m;
	int a = 1, b = 2, c = 3;
	hmap_init(&m);
	size_t it = 0;
	ck_assert_ptr_null(hmap_get(&m, "x", 1));
	ck_assert_ptr_null(hmap_del(&m, "x", 1));
	ck_assert_ptr_null(hmap_next(&m, &it));

	ck_assert_int_eq(hmap_put(&m, "alpha", 5, &a), 0);
	ck_assert_int_eq(hmap_put(&m, "beta", 4, &b), 0);
	ck_assert_uint_eq(m.n, 2);
	ck_assert_ptr_eq(hmap_get(&m, "alpha", 5), &a);
	ck_assert_ptr_eq(hmap_get(&m, "beta", 4), &b);
	ck_assert_ptr_null(hmap_get(&m, "alph", 4));
	ck_assert_ptr_null(hmap_get(&m, "alphax", 6));
	ck_assert_ptr_null(hmap_get(&m, "gamma", 5));
	/* replace keeps the count */
	ck_assert_int_eq(hmap_put(&m, "alpha", 5, &c), 0);
	ck_assert_uint_eq(m.n, 2);
	ck_assert_ptr_eq(hmap_get(&m, "alpha", 5), &c);
	/* keys are byte strings: NULs and the empty key are fine */
	ck_assert_int_eq(hmap_put(&m, "a\0b", 3, &a), 0);
	ck_assert_int_eq(hmap_put(&m, "a\0c", 3, &b), 0);
	ck_assert_int_eq(hmap_put(&m, "", 0, &c), 0);
	ck_assert_ptr_eq(hmap_get(&m, "a\0b", 3), &a);
	ck_assert_ptr_eq(hmap_get(&m, "a\0c", 3), &b);
	ck_assert_ptr_eq(hmap_get(&m, "", 0), &c);
	ck_assert_ptr_null(hmap_get(&m, "a", 1));
	ck_assert_uint_eq(m.n, 5);

	ck_assert_ptr_eq(hmap_del(&m, "alpha", 5), &c);
	ck_assert_ptr_null(hmap_del(&m, "alpha", 5));
	ck_assert_ptr_null(hmap_get(&m, "alpha", 5));
	ck_assert_ptr_eq(hmap_get(&m, "beta", 4), &b);
	ck_assert_uint_eq(m.n, 4);
	hmap_check_invariant(&m);
	hmap_free(&m);
	ck_assert_uint_eq(m.n, 0);
	ck_assert_ptr_null(hmap_get(&m, "beta", 4));
	hmap_free(&m);

	ck_assert_uint_ne(hmap_hash("", 0), 0);
	ck_assert_uint_eq(hmap_hash("abc", 3), hmap_hash("abc", 3));
	ck_assert_uint_ne(hmap_hash("abc", 3), hmap_hash("abd", 3));
}
END_TEST

#define NKEYS 10000

struct hent {
	char key[16];
	size_t klen;
	int live;
};

START_TEST(test_hmap_many)
{
	struct hent *ents = calloc(NKEYS, sizeof(*ents));
	size_t *order = malloc(NKEYS * sizeof(*order));
	struct hmap m;
	hmap_init(&m);

	for (size_t i = 0; i < NKEYS; i++) {
		ents[i].klen = (size_t)snprintf(ents[i].key, sizeof(ents[i].key), "key-%zu", i);
		ents[i].live = 1;
		ck_assert_int_eq(hmap_put(&m, ents[i].key, ents[i].klen, &ents[i]), 0);
		order[i] = i;
	}
	ck_assert_uint_eq(m.n, NKEYS);
	hmap_check_invariant(&m);
	for (size_t i = 0; i < NKEYS; i++)
		ck_assert_ptr_eq(hmap_get(&m, ents[i].key, ents[i].klen), &ents[i]);

	/* delete in a random order */
	for (size_t i = NKEYS - 1; i > 0; i--) {
		size_t j = rng() % (i + 1);
		size_t t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	for (size_t k = 0; k < NKEYS; k++) {
		struct hent *e = &ents[order[k]];
		CHECK(hmap_del(&m, e->key, e->klen) == e, "del %s", e->key);
		e->live = 0;
		CHECK(hmap_get(&m, e->key, e->klen) == NULL, "%s still found", e->key);
		CHECK(m.n == NKEYS - k - 1, "n %zu after %zu deletes", m.n, k + 1);
		if (k % 97 == 0 || k > NKEYS - 50) {
			hmap_check_invariant(&m);
			for (size_t i = 0; i < NKEYS; i++)
				CHECK(hmap_get(&m, ents[i].key, ents[i].klen) ==
				      (ents[i].live ? &ents[i] : NULL), "%s after %zu deletes",
				      ents[i].key, k + 1);
		}
	}
	ck_assert_uint_eq(m.n, 0);
	size_t it = 0;
	ck_assert_ptr_null(hmap_next(&m, &it));

	/* reinsert into the emptied (still large) table */
	for (size_t i = 0; i < NKEYS; i += 3)
		ck_assert_int_eq(hmap_put(&m, ents[i].key, ents[i].klen, &ents[i]), 0);
	for (size_t i = 0; i < NKEYS; i++)
		ck_assert_ptr_eq(hmap_get(&m, ents[i].key, ents[i].klen),
				 i % 3 == 0 ? &ents[i] : NULL);
	hmap_check_invariant(&m);
	hmap_free(&m);
	free(order);
	free(ents);
}
END_TEST

START_TEST(test_hmap_churn)
{
	/* interleaved puts and deletes at a steady size, checked against a shadow */
	enum { N = 2000 };
	struct hent *ents = calloc(N, sizeof(*ents));
	struct hmap m;
	hmap_init(&m);
	for (size_t i = 0; i < N; i++)
		ents[i].klen = (size_t)snprintf(ents[i].key, sizeof(ents[i].key), "%zx", i * 2654435761u);
	size_t live = 0;
	for (int step = 0; step < 50000; step++) {
		size_t i = rng() % N;
		if (ents[i].live) {
			CHECK(hmap_del(&m, ents[i].key, ents[i].klen) == &ents[i], "del %zu", i);
			ents[i].live = 0;
			live--;
		} else {
			CHECK(hmap_put(&m, ents[i].key, ents[i].klen, &ents[i]) == 0, "put %zu", i);
			ents[i].live = 1;
			live++;
		}
		CHECK(m.n == live, "n %zu, want %zu", m.n, live);
		if (step % 5000 == 0)
			hmap_check_invariant(&m);
	}
	hmap_check_invariant(&m);
	for (size_t i = 0; i < N; i++)
		ck_assert_ptr_eq(hmap_get(&m, ents[i].key, ents[i].klen), ents[i].live ? &ents[i] : NULL);
	hmap_free(&m);
	free(ents);
}
END_TEST

START_TEST(test_hmap_iterate)
{
	enum { N = 500 };
	struct hent *ents = calloc(N, sizeof(*ents));
	int *seen = calloc(N, sizeof(*seen));
	struct hmap m;
	hmap_init(&m);
	for (size_t i = 0; i < N; i++) {
		ents[i].klen = (size_t)snprintf(ents[i].key, sizeof(ents[i].key), "t%zu", i);
		ck_assert_int_eq(hmap_put(&m, ents[i].key, ents[i].klen, &ents[i]), 0);
	}
	for (size_t i = 0; i < N; i += 2)
		ck_assert_ptr_eq(hmap_del(&m, ents[i].key, ents[i].klen), &ents[i]);
	size_t it = 0, count = 0;
	struct hent *v;
	while ((v = hmap_next(&m, &it))) {
		size_t idx = (size_t)(v - ents);
		ck_assert_uint_lt(idx, N);
		ck_assert_uint_eq(idx % 2, 1);
		ck_assert_int_eq(seen[idx], 0);
		seen[idx] = 1;
		count++;
	}
	ck_assert_uint_eq(count, N / 2);
	ck_assert_ptr_null(hmap_next(&m, &it));   /* stays at the end */
	hmap_free(&m);
	free(seen);
	free(ents);
}
END_TEST

/* ---- log_redact_url ------------------------------------------------------------- */

/* Redacts url through an exact-size heap copy into a buffer of size n. */
static const char *redact(const char *url, size_t n)
{
	static char out[512];
	char *in = exact(url, strlen(url) + 1);
	ck_assert_uint_le(n, sizeof(out));
	memset(out, 'Z', sizeof(out));
	log_redact_url(in, out, n);
	free(in);
	ck_assert_msg(n == 0 || strlen(out) < n, "'%s' overran %zu bytes", url, n);
	return out;
}

START_TEST(test_log_redact_url)
{
	static const struct { const char *in, *want; } t[] = {
		/* nothing to hide */
		{ "ws://127.0.0.1:4000/socket", "ws://127.0.0.1:4000/socket" },
		{ "", "" },
		{ "/socket/websocket", "/socket/websocket" },
		/* query values */
		{ "wss://h/socket?token=s3cret&vsn=2.0.0", "wss://h/socket?token=***&vsn=***" },
		{ "ws://h/?a=1&b&c=", "ws://h/?a=***&b&c=***" },
		{ "ws://h/s?email=ann@example.com", "ws://h/s?email=***" },
		/* user info, with or without a password, any scheme or none */
		{ "wss://alice:SECRET@example.com/socket", "wss://***@example.com/socket" },
		{ "ws://user@example.com/socket?token=s3cret",
		  "ws://***@example.com/socket?token=***" },
		{ "http://alice:SECRET@h/", "http://***@h/" },
		{ "alice:SECRET@h/socket", "***@h/socket" },
		{ "ws:/alice:SECRET@h/", "***@h/" },
		{ "wss://a:b@c@h/", "wss://***@h/" },
		/* unencoded '/', '?', '#', '=' in a password */
		{ "wss://alice:SE/CRET@h/s", "wss://***@h/s" },
		{ "wss://alice:SE?CRET@h/s?t=1", "wss://***@h/s?t=***" },
		{ "wss://alice:SE#CRET@h/s", "wss://***@h/s" },
		{ "wss://alice:SE=CRET@h/s", "wss://***@h/s" },
		/* fragments */
		{ "ws://h/socket#SECRET", "ws://h/socket#***" },
		{ "ws://h/socket?token=a#SECRET?x=y", "ws://h/socket?token=***#***" },
		{ "ws://u:SECRET@h/#f", "ws://***@h/#***" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		const char *got = redact(t[i].in, 512);
		ck_assert_msg(strcmp(got, t[i].want) == 0, "'%s' gives '%s', want '%s'",
			      t[i].in, got, t[i].want);
	}
	/* too small a buffer: cut short, never a byte of a secret */
	static const char *const secret_urls[] = {
		"wss://alice:SECRET@example.com/socket?token=SECRET#SECRET",
		"alice:SECRET@h", "ws://h/?token=SECRET", "ws://h/#SECRET",
	};
	for (size_t i = 0; i < ARRAY_SIZE(secret_urls); i++) {
		for (size_t n = 0; n < 70; n++) {
			const char *got = redact(secret_urls[i], n);
			ck_assert_msg(n == 0 || !strstr(got, "SEC"), "'%s' in %zu bytes: '%s'",
				      secret_urls[i], n, got);
		}
	}
	ck_assert_str_eq(redact("wss://alice:SECRET@host/x", 12), "wss://***@h");
	ck_assert_str_eq(redact("wss://alice:SECRET@host/x", 10), "wss://");
	ck_assert_str_eq(redact("ws://h/socket", 8), "ws://h/");
	char one = 'Z';
	log_redact_url("ws://h/", &one, 1);
	ck_assert_int_eq(one, '\0');
}
END_TEST

/* ---- runner --------------------------------------------------------------------- */

static Suite *suite_of(const char *name, const TTest *const *tests, size_t n)
{
	Suite *s = suite_create(name);
	TCase *tc = tcase_create(name);
	tcase_set_timeout(tc, 120);
	for (size_t i = 0; i < n; i++)
		tcase_add_test(tc, tests[i]);
	suite_add_tcase(s, tc);
	return s;
}

#define SUITE(name, ...) do { \
		const TTest *const t_[] = { __VA_ARGS__ }; \
		srunner_add_suite(sr, suite_of(name, t_, ARRAY_SIZE(t_))); \
	} while (0)

int main(void)
{
	SRunner *sr = srunner_create(NULL);

	SUITE("buf", test_buf_basic, test_buf_reserve_zero, test_buf_limit, test_buf_compaction,
	      test_buf_printf, test_buf_put_u64, test_buf_find);
	SUITE("json", test_json_valid, test_json_invalid, test_json_skip, test_json_peek_ws,
	      test_json_depth, test_json_prefixes, test_json_str_decode, test_json_put_str,
	      test_json_put_compact, test_json_obj_get, test_json_skip_keys,
	      test_json_string_words);
	SUITE("utf8", test_utf8);
	SUITE("b64", test_b64_rfc4648, test_b64_roundtrip, test_b64_bad);
	SUITE("backoff", test_backoff_parse, test_backoff_schedule, test_backoff_jitter);
	SUITE("hmap", test_hmap_basic, test_hmap_many, test_hmap_churn, test_hmap_iterate);
	SUITE("log", test_log_redact_url);

	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
