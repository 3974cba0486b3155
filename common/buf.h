/* buf — the one byte buffer type of phxd.
 *
 * A contiguous region [data+rpos, data+wpos) of readable bytes with a hard
 * maximum capacity.  Writers reserve space, fill it and commit; readers look at
 * buf_rptr()/buf_len() and consume.  Memory comes lazily from the binary pool
 * (bpool.h) in its size classes and goes back to it with buf_free(), or with
 * buf_release() while empty (hibernation).
 */
#ifndef PHX_BUF_H
#define PHX_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
	char *data;
	size_t rpos;  /* first unread byte */
	size_t wpos;  /* one past the last written byte */
	size_t cap;   /* allocated bytes */
	size_t max;   /* hard limit of readable bytes held; 0 = unlimited */
};

void buf_init(struct buf *b, size_t max);
void buf_free(struct buf *b);          /* frees memory; b stays usable (empty) */
void buf_release(struct buf *b);       /* frees memory if b holds no bytes */

static inline size_t buf_len(const struct buf *b) { return b->wpos - b->rpos; }
static inline char *buf_rptr(const struct buf *b) { return b->data ? b->data + b->rpos : NULL; }
static inline void buf_reset(struct buf *b) { b->rpos = b->wpos = 0; }
/* Drops readable bytes past the first len.  For all-or-nothing writers:
 * remember n = buf_len(b) before appending, buf_truncate(b, n) on failure
 * (appends may slide the bytes, so a saved wpos is not safe). */
static inline void buf_truncate(struct buf *b, size_t len)
{
	if (len < buf_len(b))
		b->wpos = b->rpos + len;
}

/* Room for n more bytes; returns a pointer to write at, or NULL when the
 * limit would be passed or memory is short (errno: EMSGSIZE / ENOMEM). */
char *buf_reserve(struct buf *b, size_t n);
void buf_commit(struct buf *b, size_t n);
void buf_consume(struct buf *b, size_t n);

/* 0, -EMSGSIZE (limit) or -ENOMEM; on error nothing is appended. */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_puts(struct buf *b, const char *s);
int buf_putc(struct buf *b, char c);
int buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Decimal unsigned integer without printf. */
int buf_put_u64(struct buf *b, unsigned long long v);

/* Position of the first c in the readable bytes at or after offset `from`,
 * or -1. */
long buf_find(const struct buf *b, size_t from, char c);

#endif
