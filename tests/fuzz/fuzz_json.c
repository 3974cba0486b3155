/* fuzz_json — common/json: the scanner, the validator and the writers.
 *
 * Input: any bytes.  Promises checked:
 *  - json_validate() accepts exactly when json_skip() from the first
 *    non-blank byte succeeds and only blanks follow, and its span is that
 *    value;
 *  - json_skip()'s nl flag is set exactly when the value holds a CR or LF
 *    (strings cannot hold one raw);
 *  - json_put_compact() of a valid value is valid, holds no CR, LF, blank
 *    or tab outside strings, is no longer, and compacting it again changes
 *    nothing;
 *  - json_obj_get() on a valid object finds or misses, never fails, and
 *    what it finds is a valid value inside the object;
 *  - a string value decodes (json_str_decode, and json_str_decode_to with
 *    any capacity: the same bytes or -EMSGSIZE), and re-encoded with
 *    json_put_str() decodes to the same bytes;
 *  - utf8_valid() agrees with a byte-by-byte reading of RFC 3629.
 */
#include <errno.h>
#include <string.h>

#include "buf.h"
#include "json.h"

#include "fuzz.h"

/* RFC 3629 by the table: one sequence at p, its length or 0. */
static size_t ref_utf8_seq(const unsigned char *p, size_t len)
{
	unsigned char c = p[0];
	size_t n;
	unsigned char lo = 0x80, hi = 0xBF;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		n = 2;
	else if (c >= 0xE0 && c <= 0xEF)
		n = 3;
	else if (c >= 0xF0 && c <= 0xF4)
		n = 4;
	else
		return 0;
	if (c == 0xE0)
		lo = 0xA0;
	else if (c == 0xED)
		hi = 0x9F;
	else if (c == 0xF0)
		lo = 0x90;
	else if (c == 0xF4)
		hi = 0x8F;
	if (len < n || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t k = 2; k < n; k++)
		if (p[k] < 0x80 || p[k] > 0xBF)
			return 0;
	return n;
}

static int ref_utf8_valid(const unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len;) {
		size_t n = ref_utf8_seq(p + i, len - i);
		if (!n)
			return 0;
		i += n;
	}
	return 1;
}

static int is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* 1 when p[0..n) has whitespace outside string literals. */
static int ws_outside_strings(const char *p, size_t n)
{
	int in_str = 0;
	for (size_t i = 0; i < n; i++) {
		if (in_str) {
			if (p[i] == '\\')
				i++;
			else if (p[i] == '"')
				in_str = 0;
		} else if (p[i] == '"') {
			in_str = 1;
		} else if (is_ws(p[i])) {
			return 1;
		}
	}
	return 0;
}

static void check_compact(const struct json_span *v)
{
	struct buf a, b;
	struct json_span c;

	buf_init(&a, 0);
	buf_init(&b, 0);
	FUZZ_CHECK(json_put_compact(&a, v->p, v->len) == 0);
	FUZZ_CHECK(buf_len(&a) > 0 && buf_len(&a) <= v->len);
	FUZZ_CHECK(json_validate(fuzz_bytes(&a), buf_len(&a), &c) == 0);
	FUZZ_CHECK(c.p == fuzz_bytes(&a) && c.len == buf_len(&a));
	FUZZ_CHECK(!memchr(fuzz_bytes(&a), '\n', buf_len(&a)));
	FUZZ_CHECK(!memchr(fuzz_bytes(&a), '\r', buf_len(&a)));
	FUZZ_CHECK(!ws_outside_strings(fuzz_bytes(&a), buf_len(&a)));
	FUZZ_CHECK(json_peek(fuzz_bytes(&a), buf_len(&a)) == json_peek(v->p, v->len));
	FUZZ_CHECK(json_put_compact(&b, fuzz_bytes(&a), buf_len(&a)) == 0);
	FUZZ_CHECK(buf_len(&b) == buf_len(&a));
	FUZZ_CHECK(memcmp(fuzz_bytes(&b), fuzz_bytes(&a), buf_len(&a)) == 0);
	buf_free(&a);
	buf_free(&b);
}

static void check_get(const struct json_span *v, const char *key)
{
	struct json_span got;
	int r = json_obj_get(v->p, v->len, key, &got);

	if (json_peek(v->p, v->len) != JSON_T_OBJECT) {
		FUZZ_CHECK(r == -EINVAL);
		return;
	}
	FUZZ_CHECK(r == 0 || r == -ENOENT);
	if (r < 0)
		return;
	FUZZ_CHECK(got.p > v->p && got.p + got.len < v->p + v->len);
	FUZZ_CHECK(json_skip(got.p, got.len, NULL) == (long)got.len);
}

/* The key of the object's first member, when it has no escapes. */
static void first_key(const struct json_span *v, char *key, size_t cap)
{
	size_t i = json_ws(v->p, v->len, 1);
	key[0] = '\0';
	if (i >= v->len || v->p[i] != '"')
		return;
	const char *q = memchr(v->p + i + 1, '"', v->len - i - 1);
	size_t n = q ? (size_t)(q - (v->p + i + 1)) : cap;
	if (n >= cap || memchr(v->p + i + 1, '\\', n) || memchr(v->p + i + 1, '\0', n))
		return;
	memcpy(key, v->p + i + 1, n);
	key[n] = '\0';
}

static void check_string(const struct json_span *v)
{
	struct buf d, e, d2;
	char small[16];
	size_t n = 0;

	buf_init(&d, 0);
	buf_init(&e, 0);
	buf_init(&d2, 0);
	FUZZ_CHECK(json_str_decode(v->p, v->len, &d) == (long)v->len);
	FUZZ_CHECK(buf_len(&d) < v->len);
	FUZZ_CHECK(utf8_valid(fuzz_bytes(&d), buf_len(&d)));
	long r = json_str_decode_to(v->p, v->len, small, sizeof(small), &n);
	if (buf_len(&d) <= sizeof(small)) {
		FUZZ_CHECK(r == (long)v->len && n == buf_len(&d));
		FUZZ_CHECK(n == 0 || memcmp(small, fuzz_bytes(&d), n) == 0);
	} else {
		FUZZ_CHECK(r == -EMSGSIZE);
	}
	FUZZ_CHECK(json_put_str(&e, fuzz_bytes(&d), buf_len(&d)) == 0);
	FUZZ_CHECK(json_validate(fuzz_bytes(&e), buf_len(&e), NULL) == 0);
	FUZZ_CHECK(json_str_decode(fuzz_bytes(&e), buf_len(&e), &d2) == (long)buf_len(&e));
	FUZZ_CHECK(buf_len(&d2) == buf_len(&d));
	FUZZ_CHECK(buf_len(&d) == 0 || memcmp(fuzz_bytes(&d2), fuzz_bytes(&d), buf_len(&d)) == 0);
	buf_free(&d);
	buf_free(&e);
	buf_free(&d2);
}

/* json_put_str() of arbitrary bytes is always a valid string literal. */
static void check_put_str(const char *p, size_t len)
{
	struct buf e, d;

	buf_init(&e, 0);
	buf_init(&d, 0);
	FUZZ_CHECK(json_put_str(&e, p, len) == 0);
	FUZZ_CHECK(json_peek(fuzz_bytes(&e), buf_len(&e)) == JSON_T_STRING);
	FUZZ_CHECK(json_skip(fuzz_bytes(&e), buf_len(&e), NULL) == (long)buf_len(&e));
	FUZZ_CHECK(!memchr(fuzz_bytes(&e), '\n', buf_len(&e)));
	FUZZ_CHECK(json_str_decode(fuzz_bytes(&e), buf_len(&e), &d) == (long)buf_len(&e));
	/* valid UTF-8 comes back as it was */
	if (utf8_valid(p, len))
		FUZZ_CHECK(buf_len(&d) == len && (len == 0 || memcmp(fuzz_bytes(&d), p, len) == 0));
	buf_free(&e);
	buf_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	struct json_span v;
	char key[64];
	int nl = -1;

	FUZZ_CHECK(utf8_valid(p, size) == ref_utf8_valid(data, size));

	size_t s = json_ws(p, size, 0);
	long n = json_skip(p + s, size - s, &nl);
	int ok = json_validate(p, size, &v) == 0;
	FUZZ_CHECK(ok == (n > 0 && json_ws(p, size, s + (size_t)n) == size));
	if (n >= 0) {
		FUZZ_CHECK(nl == 0 || nl == 1);
		FUZZ_CHECK(nl == (memchr(p + s, '\n', (size_t)n) || memchr(p + s, '\r', (size_t)n)));
		FUZZ_CHECK(json_peek(p + s, (size_t)n) != JSON_T_INVALID);
		/* a valid value is valid UTF-8 */
		FUZZ_CHECK(utf8_valid(p + s, (size_t)n));
	}
	check_put_str(p, size);
	if (!ok)
		return 0;
	FUZZ_CHECK(v.p == p + s && v.len == (size_t)n);
	check_compact(&v);
	check_get(&v, "status");
	check_get(&v, "response");
	first_key(&v, key, sizeof(key));
	if (key[0])
		check_get(&v, key);
	if (json_peek(v.p, v.len) == JSON_T_STRING)
		check_string(&v);
	return 0;
}
