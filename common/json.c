#include "json.h"
#include "buf.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* Word-at-a-time (SWAR) helpers for the string scanners: a run of "plain"
 * bytes — 0x20..0x7F except '"' and '\\' — is what almost every string
 * holds, so they skip it 8 bytes per step and leave anything else to the
 * exact byte-wise code.  Words are read with memcpy: no alignment needed. */
#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

/* High bit set in (at least) the first byte of w, in memory order, that is
 * not plain; 0 when all 8 are plain.  Borrows only run towards later bytes,
 * so the lowest flagged byte is exact. */
static inline uint64_t swar_special(uint64_t w)
{
	uint64_t q = w ^ (ONES * '"'), b = w ^ (ONES * '\\');
	uint64_t m = ((w - ONES * 0x20) & ~w) |          /* < 0x20 */
		     ((q - ONES) & ~q) | ((b - ONES) & ~b) | /* '"', '\\' */
		     w;                                      /* >= 0x80 */
	return m & HIGHS;
}

/* Position of the first byte of u[i..len) that is not plain, or where the
 * last whole word ends (the caller goes on byte by byte from there). */
static inline size_t swar_skip_plain(const unsigned char *u, size_t len, size_t i)
{
#ifdef __SSE2__
	/* x86-64 always has SSE2: the same test 16 bytes at a time.  As signed
	 * bytes, both < 0x20 and >= 0x80 are "less than 0x20". */
	const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'),
		      space = _mm_set1_epi8(0x20);
	while (len - i >= 16) {
		__m128i x = _mm_loadu_si128((const __m128i *)(const void *)(u + i));
		__m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, quote),
						      _mm_cmpeq_epi8(x, bslash)),
					 _mm_cmplt_epi8(x, space));
		unsigned bits = (unsigned)_mm_movemask_epi8(m);
		if (bits)
			return i + (unsigned)__builtin_ctz(bits);
		i += 16;
	}
#endif
	while (len - i >= 8) {
		uint64_t w;
		memcpy(&w, u + i, 8);
		uint64_t m = swar_special(w);
		if (m) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
			return i + ((unsigned)__builtin_ctzll(m) >> 3);
#else
			return i;
#endif
		}
		i += 8;
	}
	return i;
}

size_t json_ws(const char *p, size_t len, size_t i)
{
	while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
		i++;
	return i;
}

enum json_type json_peek(const char *p, size_t len)
{
	if (len == 0)
		return JSON_T_INVALID;
	switch (p[0]) {
	case '{': return JSON_T_OBJECT;
	case '[': return JSON_T_ARRAY;
	case '"': return JSON_T_STRING;
	case 't': return JSON_T_TRUE;
	case 'f': return JSON_T_FALSE;
	case 'n': return JSON_T_NULL;
	default:
		if (p[0] == '-' || (p[0] >= '0' && p[0] <= '9'))
			return JSON_T_NUMBER;
		return JSON_T_INVALID;
	}
}

/* Length of one UTF-8 sequence at p (valid), or 0 when invalid. */
static size_t utf8_seq(const unsigned char *p, size_t len)
{
	unsigned c = p[0];
	if (c < 0x80)
		return 1;
	if (c < 0xC2)
		return 0;
	if (c < 0xE0) {
		if (len < 2 || (p[1] & 0xC0) != 0x80)
			return 0;
		return 2;
	}
	if (c < 0xF0) {
		if (len < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
			return 0;
		if (c == 0xE0 && p[1] < 0xA0)
			return 0; /* overlong */
		if (c == 0xED && p[1] >= 0xA0)
			return 0; /* surrogate */
		return 3;
	}
	if (c < 0xF5) {
		if (len < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 ||
		    (p[3] & 0xC0) != 0x80)
			return 0;
		if (c == 0xF0 && p[1] < 0x90)
			return 0;
		if (c == 0xF4 && p[1] >= 0x90)
			return 0;
		return 4;
	}
	return 0;
}

int utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;
	while (i < len) {
		/* fast path over ASCII, 16 or 8 bytes at a time */
#ifdef __SSE2__
		while (len - i >= 16 &&
		       !_mm_movemask_epi8(_mm_loadu_si128((const __m128i *)(const void *)(p + i))))
			i += 16;
#endif
		while (i + 8 <= len) {
			unsigned long long w;
			memcpy(&w, p + i, 8);
			if (w & 0x8080808080808080ULL)
				break;
			i += 8;
		}
		if (i >= len)
			break;
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		size_t n = utf8_seq(p + i, len - i);
		if (!n)
			return 0;
		i += n;
	}
	return 1;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

static long read_hex4(const char *p, size_t len, size_t i)
{
	if (i + 4 > len)
		return -1;
	long v = 0;
	for (int k = 0; k < 4; k++) {
		int h = hexval(p[i + (size_t)k]);
		if (h < 0)
			return -1;
		v = v * 16 + h;
	}
	return v;
}

/* Scans a string literal at p[i] == '"'; returns index after closing quote
 * or 0 on error.  *esc is set when the literal holds an escape. */
static size_t scan_string_esc(const char *p, size_t len, size_t i, int *esc)
{
	const unsigned char *u = (const unsigned char *)p;
	i++;
	while (i < len) {
		if (len - i >= 8) {
			i = swar_skip_plain(u, len, i);
			if (i >= len)
				break;
		}
		unsigned char c = u[i];
		if (c == '"')
			return i + 1;
		if (c == '\\') {
			if (i + 1 >= len)
				return 0;
			*esc = 1;
			char e = p[i + 1];
			switch (e) {
			case '"': case '\\': case '/': case 'b': case 'f':
			case 'n': case 'r': case 't':
				i += 2;
				break;
			case 'u': {
				long v = read_hex4(p, len, i + 2);
				if (v < 0)
					return 0;
				i += 6;
				if (v >= 0xD800 && v <= 0xDBFF) {
					/* must be followed by a low surrogate */
					if (i + 1 >= len || p[i] != '\\' || p[i + 1] != 'u')
						return 0;
					long lo = read_hex4(p, len, i + 2);
					if (lo < 0xDC00 || lo > 0xDFFF)
						return 0;
					i += 6;
				} else if (v >= 0xDC00 && v <= 0xDFFF) {
					return 0;
				}
				break;
			}
			default:
				return 0;
			}
			continue;
		}
		if (c < 0x20)
			return 0;
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t n = utf8_seq(u + i, len - i);
		if (!n)
			return 0;
		i += n;
	}
	return 0;
}

static size_t scan_string(const char *p, size_t len, size_t i)
{
	int esc = 0;
	return scan_string_esc(p, len, i, &esc);
}

static size_t scan_number(const char *p, size_t len, size_t i)
{
	if (i < len && p[i] == '-')
		i++;
	if (i >= len)
		return 0;
	if (p[i] == '0') {
		i++;
	} else if (p[i] >= '1' && p[i] <= '9') {
		while (i < len && p[i] >= '0' && p[i] <= '9')
			i++;
	} else {
		return 0;
	}
	if (i < len && p[i] == '.') {
		i++;
		if (i >= len || p[i] < '0' || p[i] > '9')
			return 0;
		while (i < len && p[i] >= '0' && p[i] <= '9')
			i++;
	}
	if (i < len && (p[i] == 'e' || p[i] == 'E')) {
		i++;
		if (i < len && (p[i] == '+' || p[i] == '-'))
			i++;
		if (i >= len || p[i] < '0' || p[i] > '9')
			return 0;
		while (i < len && p[i] >= '0' && p[i] <= '9')
			i++;
	}
	return i;
}

static size_t scan_lit(const char *p, size_t len, size_t i, const char *lit)
{
	size_t n = strlen(lit);
	if (i + n > len || memcmp(p + i, lit, n) != 0)
		return 0;
	return i + n;
}

/* Whitespace from i; notes CR/LF in *nl.  Returns the new position. */
static inline size_t skip_ws_nl(const char *p, size_t len, size_t i, int *nl)
{
	if (i < len && (unsigned char)p[i] > ' ')
		return i; /* compact JSON: the usual case */
	while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r')) {
		if (p[i] == '\n' || p[i] == '\r')
			*nl = 1;
		i++;
	}
	return i;
}

/* An object member's key, the colon and the whitespace around it, from
 * p[i] == '"'.  Returns the position of the value, or 0 on error. */
static size_t scan_key(const char *p, size_t len, size_t i, int *nl, size_t *kend)
{
	if (i >= len || p[i] != '"')
		return 0;
	i = scan_string(p, len, i);
	if (!i)
		return 0;
	*kend = i;
	i = skip_ws_nl(p, len, i, nl);
	if (i >= len || p[i] != ':')
		return 0;
	return skip_ws_nl(p, len, i + 1, nl);
}

/* The member of the top-level object whose key is p[ks..ke) (a literal
 * with its quotes): its index in keys when it is wanted and not seen yet,
 * else -1.  Keys with escapes never match: compared raw. */
static int key_index(const char *p, size_t ks, size_t ke, const char *const *keys,
		     size_t nkeys, const struct json_span *vals)
{
	size_t kl = ke - ks - 2;
	for (size_t k = 0; k < nkeys; k++)
		if (!vals[k].p && strlen(keys[k]) == kl && memcmp(p + ks + 1, keys[k], kl) == 0)
			return (int)k;
	return -1;
}

/* Iterative scanner with an explicit stack of container kinds.  With
 * nkeys, the spans of the wanted members of a top-level object are noted
 * on the way: one pass for the value and its fields. */
static long skip_impl(const char *p, size_t len, int *nl, const char *const *keys,
		      size_t nkeys, struct json_span *vals)
{
	char stack[JSON_MAX_DEPTH];
	int depth = 0;
	size_t i = 0, ks = 0, ke = 0, vstart = 0;
	int saw_nl = 0, want = -1;

#define WS() (i = skip_ws_nl(p, len, i, &saw_nl))
	/* a member's key at p[i]; at depth 1, is it one we want? */
#define KEY() do {							\
		ks = i;							\
		if (!(i = scan_key(p, len, i, &saw_nl, &ke)))		\
			return -1;					\
		if (nkeys && depth == 1) {				\
			want = key_index(p, ks, ke, keys, nkeys, vals);	\
			vstart = i;					\
		}							\
	} while (0)

	for (size_t k = 0; k < nkeys; k++)
		vals[k] = (struct json_span){ NULL, 0 };
	for (;;) {
		/* expect a value at p[i] */
		if (i >= len)
			return -1;
		switch (p[i]) {
		case '{':
		case '[':
			if (depth >= JSON_MAX_DEPTH)
				return -1;
			stack[depth++] = p[i];
			i++;
			WS();
			if (i < len && p[i] == (stack[depth - 1] == '{' ? '}' : ']')) {
				i++;
				depth--;
				goto after_value;
			}
			if (stack[depth - 1] == '{')
				KEY();
			continue;
		case '"':
			i = scan_string(p, len, i);
			break;
		case 't':
			i = scan_lit(p, len, i, "true");
			break;
		case 'f':
			i = scan_lit(p, len, i, "false");
			break;
		case 'n':
			i = scan_lit(p, len, i, "null");
			break;
		default:
			i = scan_number(p, len, i);
			break;
		}
		if (!i)
			return -1;
after_value:
		if (depth == 0) {
			if (nl)
				*nl = saw_nl;
			return (long)i;
		}
		if (want >= 0 && depth == 1) {
			/* a member of the top-level object just ended */
			vals[want] = (struct json_span){ p + vstart, i - vstart };
			want = -1;
		}
		WS();
		if (i >= len)
			return -1;
		if (p[i] == ',') {
			i++;
			WS();
			if (stack[depth - 1] == '{')
				KEY();
			continue;
		}
		if (p[i] == (stack[depth - 1] == '{' ? '}' : ']')) {
			i++;
			depth--;
			goto after_value;
		}
		return -1;
	}
#undef KEY
#undef WS
}

long json_skip(const char *p, size_t len, int *nl)
{
	return skip_impl(p, len, nl, NULL, 0, NULL);
}

long json_skip_keys(const char *p, size_t len, int *nl, const char *const *keys,
		    size_t nkeys, struct json_span *vals)
{
	long n = skip_impl(p, len, nl, keys, nkeys, vals);
	if (n < 0 || p[0] != '{')
		for (size_t k = 0; k < nkeys; k++)
			vals[k] = (struct json_span){ NULL, 0 };
	return n;
}

int json_validate(const char *p, size_t len, struct json_span *out)
{
	size_t s = json_ws(p, len, 0);
	long n = json_skip(p + s, len - s, NULL);
	if (n < 0)
		return -EINVAL;
	size_t e = json_ws(p, len, s + (size_t)n);
	if (e != len)
		return -EINVAL;
	if (out) {
		out->p = p + s;
		out->len = (size_t)n;
	}
	return 0;
}

static int put_utf8(char *o, unsigned long cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xC0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xE0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		o[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	o[0] = (char)(0xF0 | (cp >> 18));
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	o[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* Shared decoder: emits into either a buf or a fixed array. */
struct sink {
	struct buf *b;
	char *dst;
	size_t cap, n;
};

static int sink_put(struct sink *s, const char *p, size_t n)
{
	if (s->b)
		return buf_append(s->b, p, n);
	if (s->n + n > s->cap)
		return -EMSGSIZE;
	memcpy(s->dst + s->n, p, n);
	s->n += n;
	return 0;
}

static long str_decode(const char *p, size_t len, struct sink *s)
{
	int esc = 0;
	size_t end = (len && p[0] == '"') ? scan_string_esc(p, len, 0, &esc) : 0;
	if (!end)
		return -EINVAL;
	size_t i = 1, run = 1;
	int r;
	if (!esc)
		i = end - 1; /* the usual case: the body as it is */
	while (i < end - 1) {
		if (p[i] != '\\') {
			/* the literal is valid: only escapes need work */
			const char *bs = memchr(p + i, '\\', end - 1 - i);
			if (!bs)
				break;
			i = (size_t)(bs - p);
		}
		if ((r = sink_put(s, p + run, i - run)) < 0)
			return r;
		char e = p[i + 1], c;
		char u8[4];
		switch (e) {
		case 'b': c = '\b'; break;
		case 'f': c = '\f'; break;
		case 'n': c = '\n'; break;
		case 'r': c = '\r'; break;
		case 't': c = '\t'; break;
		case 'u': {
			unsigned long cp = (unsigned long)read_hex4(p, len, i + 2);
			i += 6;
			if (cp >= 0xD800 && cp <= 0xDBFF) {
				unsigned long lo = (unsigned long)read_hex4(p, len, i + 2);
				cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
				i += 6;
			}
			if ((r = sink_put(s, u8, (size_t)put_utf8(u8, cp))) < 0)
				return r;
			run = i;
			continue;
		}
		default: c = e; break;
		}
		if ((r = sink_put(s, &c, 1)) < 0)
			return r;
		i += 2;
		run = i;
	}
	if ((r = sink_put(s, p + run, end - 1 - run)) < 0)
		return r;
	return (long)end;
}

long json_str_decode(const char *p, size_t len, struct buf *out)
{
	struct sink s = { .b = out };
	return str_decode(p, len, &s);
}

long json_str_decode_to(const char *p, size_t len, char *dst, size_t cap,
			size_t *outlen)
{
	struct sink s = { .dst = dst, .cap = cap };
	long r = str_decode(p, len, &s);
	if (r >= 0)
		*outlen = s.n;
	return r;
}

int json_put_str(struct buf *b, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, run = 0;
	int r;

	if ((r = buf_putc(b, '"')) < 0)
		return r;
	while (i < len) {
		if (len - i >= 8) {
			i = swar_skip_plain(u, len, i);
			if (i >= len)
				break;
		}
		unsigned char c = u[i];
		if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
			i++;
			continue;
		}
		size_t n = 1;
		if (c >= 0x80) {
			n = utf8_seq(u + i, len - i);
			if (n) {
				i += n;
				continue;
			}
		}
		if ((r = buf_append(b, s + run, i - run)) < 0)
			return r;
		char esc[8];
		size_t el = 2;
		esc[0] = '\\';
		switch (c) {
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		case '\b': esc[1] = 'b'; break;
		case '\f': esc[1] = 'f'; break;
		default:
			if (c >= 0x80) {
				/* invalid UTF-8 byte: U+FFFD */
				memcpy(esc, "\xEF\xBF\xBD", 3);
				el = 3;
			} else {
				memcpy(esc, "\\u00", 4);
				esc[4] = hex[c >> 4];
				esc[5] = hex[c & 15];
				el = 6;
			}
		}
		if ((r = buf_append(b, esc, el)) < 0)
			return r;
		i++;
		run = i;
	}
	if ((r = buf_append(b, s + run, i - run)) < 0)
		return r;
	return buf_putc(b, '"');
}

int json_put_compact(struct buf *b, const char *p, size_t len)
{
	size_t i = 0, run = 0;
	int r;
	while (i < len) {
		char c = p[i];
		if (c == '"') {
			size_t e = scan_string(p, len, i);
			if (!e)
				return -EINVAL;
			i = e;
			continue;
		}
		if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
			if ((r = buf_append(b, p + run, i - run)) < 0)
				return r;
			i = json_ws(p, len, i);
			run = i;
			continue;
		}
		i++;
	}
	return buf_append(b, p + run, i - run);
}

int json_obj_get(const char *p, size_t len, const char *key, struct json_span *val)
{
	size_t klen = strlen(key);
	size_t i = json_ws(p, len, 0);
	if (i >= len || p[i] != '{')
		return -EINVAL;
	i = json_ws(p, len, i + 1);
	if (i < len && p[i] == '}')
		return -ENOENT;
	while (i < len) {
		if (p[i] != '"')
			return -EINVAL;
		size_t ke = scan_string(p, len, i);
		if (!ke)
			return -EINVAL;
		/* keys with escapes never match: compare raw */
		int match = (ke - i - 2 == klen && memcmp(p + i + 1, key, klen) == 0);
		i = json_ws(p, len, ke);
		if (i >= len || p[i] != ':')
			return -EINVAL;
		i = json_ws(p, len, i + 1);
		long n = json_skip(p + i, len - i, NULL);
		if (n < 0)
			return -EINVAL;
		if (match) {
			val->p = p + i;
			val->len = (size_t)n;
			return 0;
		}
		i = json_ws(p, len, i + (size_t)n);
		if (i < len && p[i] == ',') {
			i = json_ws(p, len, i + 1);
			continue;
		}
		if (i < len && p[i] == '}')
			return -ENOENT;
		return -EINVAL;
	}
	return -EINVAL;
}
