#include "b64.h"
#include "buf.h"

#include <errno.h>

static const char b64_alpha[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int b64_encode(struct buf *out, const void *src, size_t n)
{
	const unsigned char *p = src;
	if (n == 0)
		return 0;   /* buf_reserve(out, 0) is NULL on a fresh buf */
	char *w = buf_reserve(out, b64_enc_len(n));
	if (!w)
		return -errno;
	char *o = w;
	size_t i = 0;
	for (; i + 3 <= n; i += 3) {
		unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
		*o++ = b64_alpha[v >> 18];
		*o++ = b64_alpha[(v >> 12) & 63];
		*o++ = b64_alpha[(v >> 6) & 63];
		*o++ = b64_alpha[v & 63];
	}
	if (n - i == 1) {
		unsigned v = (unsigned)p[i] << 16;
		*o++ = b64_alpha[v >> 18];
		*o++ = b64_alpha[(v >> 12) & 63];
		*o++ = '=';
		*o++ = '=';
	} else if (n - i == 2) {
		unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8;
		*o++ = b64_alpha[v >> 18];
		*o++ = b64_alpha[(v >> 12) & 63];
		*o++ = b64_alpha[(v >> 6) & 63];
		*o++ = '=';
	}
	buf_commit(out, (size_t)(o - w));
	return 0;
}

static int b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z') return c - 'A';
	if (c >= 'a' && c <= 'z') return c - 'a' + 26;
	if (c >= '0' && c <= '9') return c - '0' + 52;
	if (c == '+') return 62;
	if (c == '/') return 63;
	return -1;
}

int b64_decode(struct buf *out, const char *s, size_t n)
{
	if (n % 4)
		return -EINVAL;
	size_t pad = 0;
	if (n >= 1 && s[n - 1] == '=')
		pad++;
	if (n >= 2 && s[n - 2] == '=')
		pad++;
	size_t outn = n / 4 * 3 - pad;
	char *w = buf_reserve(out, outn ? outn : 1);
	if (!w)
		return -errno;
	size_t o = 0;
	for (size_t i = 0; i < n; i += 4) {
		int v[4];
		for (int k = 0; k < 4; k++) {
			unsigned char c = (unsigned char)s[i + (size_t)k];
			if (c == '=' && i + 4 == n && k >= 2 && (k == 3 || s[i + 3] == '='))
				v[k] = 0;
			else if ((v[k] = b64_val(c)) < 0)
				return -EINVAL;
		}
		unsigned x = (unsigned)v[0] << 18 | (unsigned)v[1] << 12 |
			     (unsigned)v[2] << 6 | (unsigned)v[3];
		size_t take = (i + 4 == n) ? 3 - pad : 3;
		/* reject non-canonical trailing bits */
		if (i + 4 == n && ((pad == 1 && (x & 0xFF)) || (pad == 2 && (x & 0xFFFF))))
			return -EINVAL;
		if (take >= 1) w[o++] = (char)(x >> 16);
		if (take >= 2) w[o++] = (char)(x >> 8);
		if (take >= 3) w[o++] = (char)x;
	}
	buf_commit(out, o);
	return 0;
}
