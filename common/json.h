/* json — a small, strict, allocation-free JSON scanner and writer.
 *
 * phxd relays payloads as text: it validates them and finds their extent, and
 * it reads a few fields (topic, event, status), but it never builds a tree on
 * the hot path.  Everything here follows RFC 8259 and rejects invalid UTF-8.
 */
#ifndef PHX_JSON_H
#define PHX_JSON_H

#include <stddef.h>

struct buf;

#define JSON_MAX_DEPTH 128

struct json_span {
	const char *p;
	size_t len;
};

enum json_type { JSON_T_INVALID = 0, JSON_T_OBJECT, JSON_T_ARRAY, JSON_T_STRING,
		 JSON_T_NUMBER, JSON_T_TRUE, JSON_T_FALSE, JSON_T_NULL };

/* Type of the value starting at p[0] (no leading whitespace), from its first
 * byte only. */
enum json_type json_peek(const char *p, size_t len);

/* Length of the one valid JSON value that starts at p[0] (no leading
 * whitespace), or -1 when it is not valid or is cut short.  When nl is not
 * NULL, *nl is set to 1 if whitespace inside the value holds a CR or LF. */
long json_skip(const char *p, size_t len, int *nl);

/* json_skip, and when the value is an object, in the same pass the spans of
 * its members named keys[0..nkeys) (raw compare: keys written with escapes
 * never match; the first of duplicates): vals[k].p is NULL for one absent,
 * and for all when the value is not a valid object. */
long json_skip_keys(const char *p, size_t len, int *nl, const char *const *keys,
		    size_t nkeys, struct json_span *vals);

/* 0 when p[0..len) is exactly one JSON value with optional surrounding
 * whitespace; -EINVAL otherwise.  *out (may be NULL) gets the value's span. */
int json_validate(const char *p, size_t len, struct json_span *out);

/* Skips spaces, tabs, CR and LF; returns the new position. */
size_t json_ws(const char *p, size_t len, size_t i);

/* Decodes the string literal starting at p[0] ('"') into out, appending the
 * unescaped bytes (no terminator).  Returns bytes consumed or a negative
 * errno (-EINVAL bad literal, -EMSGSIZE/-ENOMEM from out). */
long json_str_decode(const char *p, size_t len, struct buf *out);

/* Like json_str_decode into a fixed array: *outlen gets the decoded length;
 * -EMSGSIZE when it does not fit in cap bytes. */
long json_str_decode_to(const char *p, size_t len, char *dst, size_t cap,
			size_t *outlen);

/* Appends s[0..len) as a quoted JSON string.  Bytes that are not valid UTF-8
 * are replaced by U+FFFD.  Returns 0 or a negative errno from the buffer. */
int json_put_str(struct buf *b, const char *s, size_t len);

/* Appends the valid JSON value p[0..len) without whitespace outside strings
 * (so that it fits on one line). */
int json_put_compact(struct buf *b, const char *p, size_t len);

/* Looks up key in the object p[0..len) (a valid object).  0 and *val set,
 * -ENOENT when absent, -EINVAL when p is not an object. */
int json_obj_get(const char *p, size_t len, const char *key, struct json_span *val);

/* 1 when p[0..len) is valid UTF-8 (no overlongs, no surrogates), else 0. */
int utf8_valid(const char *p, size_t len);

#endif
