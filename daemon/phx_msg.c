#include "phx_msg.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "buf.h"
#include "json.h"

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

/* High bit set in (at least) the first byte of w, in memory order, that is
 * a quote, a backslash, a control byte or not ASCII; 0 when none is.
 * Borrows only run towards later bytes, so the first flagged byte is
 * exact (the same test as json.c's string scanners). */
static inline uint64_t swar_special(uint64_t w)
{
	uint64_t q = w ^ (ONES * '"'), b = w ^ (ONES * '\\');
	uint64_t m = ((w - ONES * 0x20) & ~w) | ((q - ONES) & ~q) | ((b - ONES) & ~b) | w;
	return m & HIGHS;
}

/* Index of the first flagged byte of a non-zero swar_special() result; on
 * a big-endian machine 0 (the byte-wise code then finds it). */
static inline size_t first_flagged(uint64_t m)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	return (unsigned)__builtin_ctzll(m) >> 3;
#else
	(void)m;
	return 0;
#endif
}

/* elem_str's general case, the string literal at p[*i] ('"'): copied byte
 * by byte while it is plain, which costs less than the calls of the
 * general decoder; anything else (an escape, UTF-8, a control byte) goes
 * to it from the start. */
static int elem_str_any(const char *p, size_t len, size_t *i, char *dst, size_t cap,
			size_t *outlen)
{
	size_t n = 0;
	for (size_t k = *i + 1; k < len && n < cap - 1; k++, n++) {
		unsigned char c = (unsigned char)p[k];
		if (c == '"') {
			*i = k + 1;
			dst[n] = '\0';
			if (outlen)
				*outlen = n;
			return 1;
		}
		if (c < 0x20 || c >= 0x80 || c == '\\')
			break;
		dst[n] = (char)c;
	}
	n = 0;
	/* one scan (word at a time over plain bytes) and a copy; a raw NUL
	 * cannot be in a valid literal, only an escaped one */
	long r = json_str_decode_to(p + *i, len - *i, dst, cap - 1, &n);
	if (r < 0)
		return -1;
	for (size_t k = 0; k < n; k++) /* short: cheaper than a memchr call */
		if (dst[k] == '\0')
			return -1;
	*i += (size_t)r;
	dst[n] = '\0';
	if (outlen)
		*outlen = n;
	return 1;
}

/* Reads a string-or-null element into dst; advances *i.  Returns 1 for a
 * string, 0 for null, -1 on error.  Inline: null, and a plain string
 * (refs, topics, events) ending in a word read 8 bytes at a time, cost a
 * few instructions here, where a call costs more than they do. */
static inline int elem_str(const char *p, size_t len, size_t *i, char *dst, size_t cap,
			   size_t *outlen)
{
	if (*i < len && p[*i] == 'n') {
		if (*i + 4 > len || memcmp(p + *i, "null", 4) != 0)
			return -1;
		*i += 4;
		dst[0] = '\0';
		if (outlen)
			*outlen = 0;
		return 0;
	}
	if (*i >= len || p[*i] != '"')
		return -1;
	for (size_t k = *i + 1, n = 0; len - k >= 8 && cap - 1 - n >= 8; k += 8, n += 8) {
		uint64_t w;
		memcpy(&w, p + k, 8);
		memcpy(dst + n, &w, 8);	/* bytes past the end are overwritten */
		uint64_t sp = swar_special(w);
		if (sp) {
			size_t j = first_flagged(sp);
			if (p[k + j] != '"')
				break;
			*i = k + j + 1;
			dst[n + j] = '\0';
			if (outlen)
				*outlen = n + j;
			return 1;
		}
	}
	return elem_str_any(p, len, i, dst, cap, outlen);
}

/* json_ws, with the usual case (no whitespace) inline. */
static inline size_t ws(const char *p, size_t len, size_t i)
{
	if (i < len && (unsigned char)p[i] > ' ')
		return i;
	return json_ws(p, len, i);
}

static inline int expect(const char *p, size_t len, size_t *i, char c)
{
	*i = ws(p, len, *i);
	if (*i >= len || p[*i] != c)
		return -1;
	*i = ws(p, len, *i + 1);
	return 0;
}

/* A reply's payload {"status":…,"response":…}: both members were found
 * while the payload was validated (json_skip_keys), so nothing here walks
 * it again. */
static int parse_reply(struct phx_msg *m, const struct json_span *st,
		       const struct json_span *resp)
{
	if (!st->p || st->len < 2 || st->p[0] != '"')
		return -EINVAL;
	size_t n;
	if (json_str_decode_to(st->p, st->len, m->status, sizeof(m->status) - 1, &n) < 0)
		return -EINVAL;
	m->status[n] = '\0';
	if (resp->p) {
		m->response = resp->p;
		m->response_len = resp->len;
	} else {
		m->response = "{}";
		m->response_len = 2;
	}
	m->is_reply = 1;
	return 0;
}

int phx_decode_json(const char *p, size_t len, struct phx_msg *m)
{
	static const char *const reply_keys[] = { "status", "response" };
	struct json_span kv[2];
	size_t i = ws(p, len, 0);
	int r;

	m->binary = 0;
	m->is_reply = 0;
	if (i >= len || p[i] != '[')
		return -EINVAL;
	i = ws(p, len, i + 1);
	if ((r = elem_str(p, len, &i, m->join_ref, sizeof(m->join_ref), NULL)) < 0)
		return -EINVAL;
	m->has_join_ref = r;
	if (expect(p, len, &i, ',') < 0)
		return -EINVAL;
	if ((r = elem_str(p, len, &i, m->ref, sizeof(m->ref), NULL)) < 0)
		return -EINVAL;
	m->has_ref = r;
	if (expect(p, len, &i, ',') < 0)
		return -EINVAL;
	if (elem_str(p, len, &i, m->topic, sizeof(m->topic), &m->topic_len) != 1 ||
	    m->topic_len == 0)
		return -EINVAL;
	if (expect(p, len, &i, ',') < 0)
		return -EINVAL;
	if (elem_str(p, len, &i, m->event, sizeof(m->event), &m->event_len) != 1 ||
	    m->event_len == 0)
		return -EINVAL;
	if (expect(p, len, &i, ',') < 0)
		return -EINVAL;
	/* The payload is validated, not trusted: what we forward must be one
	 * valid JSON value (the line protocol promises it to clients).  This
	 * is the one pass over it: a reply's status and response, and whether
	 * raw CR/LF between tokens need compacting on a line, are picked up on
	 * the way. */
	int reply = m->event_len == 9 && memcmp(m->event, "phx_reply", 9) == 0;
	int nl = 0;
	long n = json_skip_keys(p + i, len - i, &nl, reply_keys, reply ? 2 : 0, kv);
	if (n < 0)
		return -EINVAL;
	m->payload = p + i;
	m->payload_len = (size_t)n;
	m->payload_nl = nl;
	i += (size_t)n;
	if (expect(p, len, &i, ']') < 0 || i != len)
		return -EINVAL;
	if (reply)
		return parse_reply(m, &kv[0], &kv[1]);
	return 0;
}

/* Copies a length-prefixed field of a binary frame. */
static int bin_field(const unsigned char *p, size_t len, size_t *i, size_t flen,
		     char *dst, size_t cap)
{
	if (flen > len - *i || flen > cap - 1)
		return -1;
	memcpy(dst, p + *i, flen);
	dst[flen] = '\0';
	if (memchr(dst, '\0', flen))
		return -1;
	*i += flen;
	return 0;
}

int phx_decode_binary(const void *data, size_t len, struct phx_msg *m)
{
	const unsigned char *p = data;
	size_t i, jl = 0, rl = 0, tl, el;

	memset(m, 0, offsetof(struct phx_msg, join_ref));
	m->binary = 1;
	m->is_reply = 0;
	if (len < 1)
		return -EINVAL;
	switch (p[0]) {
	case PHX_BIN_PUSH:
		if (len < 4)
			return -EINVAL;
		jl = p[1]; tl = p[2]; el = p[3];
		i = 4;
		break;
	case PHX_BIN_REPLY:
		if (len < 5)
			return -EINVAL;
		jl = p[1]; rl = p[2]; tl = p[3]; el = p[4];
		i = 5;
		break;
	case PHX_BIN_BROADCAST:
		if (len < 3)
			return -EINVAL;
		tl = p[1]; el = p[2];
		i = 3;
		break;
	default:
		return -EINVAL;
	}
	if (tl == 0 || (p[0] != PHX_BIN_REPLY && el == 0))
		return -EINVAL;
	if (bin_field(p, len, &i, jl, m->join_ref, sizeof(m->join_ref)) < 0 ||
	    bin_field(p, len, &i, rl, m->ref, sizeof(m->ref)) < 0 ||
	    bin_field(p, len, &i, tl, m->topic, sizeof(m->topic)) < 0)
		return -EINVAL;
	m->has_join_ref = p[0] != PHX_BIN_BROADCAST && jl > 0;
	m->has_ref = rl > 0;
	m->topic_len = tl;
	if (p[0] == PHX_BIN_REPLY) {
		if (bin_field(p, len, &i, el, m->status, sizeof(m->status)) < 0)
			return -EINVAL;
		memcpy(m->event, "phx_reply", 10);
		m->event_len = 9;
		m->is_reply = 1;
		m->response = (const char *)p + i;
		m->response_len = len - i;
	} else {
		if (bin_field(p, len, &i, el, m->event, sizeof(m->event)) < 0)
			return -EINVAL;
		m->event_len = el;
	}
	m->payload = (const char *)p + i;
	m->payload_len = len - i;
	m->payload_nl = 0;
	return 0;
}

int phx_decode_binary_client(const void *data, size_t len, struct phx_msg *m)
{
	const unsigned char *p = data;
	size_t i = 5;

	memset(m, 0, offsetof(struct phx_msg, join_ref));
	m->binary = 1;
	if (len < 5 || p[0] != PHX_BIN_PUSH || p[3] == 0 || p[4] == 0)
		return -EINVAL;
	if (bin_field(p, len, &i, p[1], m->join_ref, sizeof(m->join_ref)) < 0 ||
	    bin_field(p, len, &i, p[2], m->ref, sizeof(m->ref)) < 0 ||
	    bin_field(p, len, &i, p[3], m->topic, sizeof(m->topic)) < 0 ||
	    bin_field(p, len, &i, p[4], m->event, sizeof(m->event)) < 0)
		return -EINVAL;
	m->has_join_ref = p[1] > 0;
	m->has_ref = p[2] > 0;
	m->topic_len = p[3];
	m->event_len = p[4];
	m->payload = (const char *)p + i;
	m->payload_len = len - i;
	m->payload_nl = 0;
	return 0;
}

static int put_ref(struct buf *out, const char *ref)
{
	if (!ref)
		return buf_append(out, "null", 4);
	return json_put_str(out, ref, strlen(ref));
}

int phx_encode_json(struct buf *out, const char *join_ref, const char *ref,
		    const char *topic, size_t tlen, const char *event, size_t elen,
		    const char *payload, size_t plen)
{
	size_t mark = buf_len(out);
	int r;
	/* reserve once so the common case does not regrow */
	if (!buf_reserve(out, tlen + elen + plen + 48))
		return -errno;
	if ((r = buf_putc(out, '[')) < 0 ||
	    (r = put_ref(out, join_ref)) < 0 ||
	    (r = buf_putc(out, ',')) < 0 ||
	    (r = put_ref(out, ref)) < 0 ||
	    (r = buf_putc(out, ',')) < 0 ||
	    (r = json_put_str(out, topic, tlen)) < 0 ||
	    (r = buf_putc(out, ',')) < 0 ||
	    (r = json_put_str(out, event, elen)) < 0 ||
	    (r = buf_putc(out, ',')) < 0 ||
	    (r = (plen ? buf_append(out, payload, plen) : buf_append(out, "{}", 2))) < 0 ||
	    (r = buf_putc(out, ']')) < 0) {
		buf_truncate(out, mark);
		return r;
	}
	return 0;
}

int phx_encode_binary_push(struct buf *out, const char *join_ref, const char *ref,
			   const char *topic, size_t tlen, const char *event,
			   size_t elen, const void *data, size_t dlen)
{
	size_t jl = join_ref ? strlen(join_ref) : 0, rl = ref ? strlen(ref) : 0;
	if (jl > 255 || rl > 255 || tlen > 255 || elen > 255 || !tlen || !elen)
		return -EINVAL;
	size_t total = 5 + jl + rl + tlen + elen + dlen;
	char *w = buf_reserve(out, total);
	if (!w)
		return -errno;
	w[0] = PHX_BIN_PUSH;
	w[1] = (char)jl;
	w[2] = (char)rl;
	w[3] = (char)tlen;
	w[4] = (char)elen;
	size_t i = 5;
	if (jl)
		memcpy(w + i, join_ref, jl);
	i += jl;
	if (rl)
		memcpy(w + i, ref, rl);
	i += rl;
	memcpy(w + i, topic, tlen); i += tlen;
	memcpy(w + i, event, elen); i += elen;
	if (dlen)
		memcpy(w + i, data, dlen);
	buf_commit(out, total);
	return 0;
}
