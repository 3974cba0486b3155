#include "buf.h"

#include "bpool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUF_MIN_ALLOC 256

void buf_init(struct buf *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->max = max;
}

void buf_free(struct buf *b)
{
	bpool_put(b->data, b->cap);
	b->data = NULL;
	b->rpos = b->wpos = b->cap = 0;
}

void buf_release(struct buf *b)
{
	if (buf_len(b) == 0)
		buf_free(b);
}

char *buf_reserve(struct buf *b, size_t n)
{
	size_t len = buf_len(b);

	if (b->max && (n > b->max || len > b->max - n)) {
		errno = EMSGSIZE;
		return NULL;
	}
	/* (no memory yet: allocate even for n == 0, never hand back NULL) */
	if (b->data && b->cap - b->wpos >= n)
		return b->data + b->wpos;
	/* Slide unread bytes to the front when that makes room. */
	if (b->rpos > 0 && b->cap - len >= n) {
		memmove(b->data, b->data + b->rpos, len);
		b->rpos = 0;
		b->wpos = len;
		return b->data + b->wpos;
	}
	size_t want = len + n;
	size_t ncap = b->cap ? b->cap : BUF_MIN_ALLOC;
	while (ncap < want) {
		if (ncap > ((size_t)-1) / 2) {
			errno = ENOMEM;
			return NULL;
		}
		ncap *= 2;
	}
	/* from the binary pool: a new block and a copy (no realloc: the pool
	 * keeps whole classes) */
	char *nd = bpool_get(ncap);
	if (!nd) {
		errno = ENOMEM;
		return NULL;
	}
	if (len)
		memcpy(nd, b->data + b->rpos, len);
	bpool_put(b->data, b->cap);
	b->data = nd;
	b->cap = ncap;
	b->rpos = 0;
	b->wpos = len;
	return b->data + b->wpos;
}

void buf_commit(struct buf *b, size_t n)
{
	b->wpos += n;
}

void buf_consume(struct buf *b, size_t n)
{
	if (n >= buf_len(b)) {
		b->rpos = b->wpos = 0;
		return;
	}
	b->rpos += n;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
	if (n == 0)
		return 0;
	char *w = buf_reserve(b, n);
	if (!w)
		return -errno;
	memcpy(w, p, n);
	b->wpos += n;
	return 0;
}

int buf_puts(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int buf_putc(struct buf *b, char c)
{
	return buf_append(b, &c, 1);
}

/* (the attribute belongs in buf.h; repeated here so that clang's
 * -Wformat-nonliteral accepts the vsnprintf calls below) */
int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	va_list aq;
	char tmp[256];

	va_copy(aq, ap);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, aq);
	va_end(aq);
	if (n < 0)
		return -EINVAL;
	if ((size_t)n < sizeof(tmp))
		return buf_append(b, tmp, (size_t)n);
	/* vsnprintf also writes a NUL, which is never committed: it must not
	 * count against the limit */
	size_t max = b->max;
	if (max && max < (size_t)-1)
		b->max = max + 1;
	char *w = buf_reserve(b, (size_t)n + 1);
	b->max = max;
	if (!w)
		return -errno;
	vsnprintf(w, (size_t)n + 1, fmt, ap);
	b->wpos += (size_t)n;
	return 0;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = buf_vprintf(b, fmt, ap);
	va_end(ap);
	return r;
}

int buf_put_u64(struct buf *b, unsigned long long v)
{
	char tmp[24];
	size_t i = sizeof(tmp);
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return buf_append(b, tmp + i, sizeof(tmp) - i);
}

long buf_find(const struct buf *b, size_t from, char c)
{
	size_t len = buf_len(b);
	if (from >= len)
		return -1;
	const char *p = memchr(b->data + b->rpos + from, c, len - from);
	return p ? (long)(p - (b->data + b->rpos)) : -1;
}
