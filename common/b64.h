/* b64 — standard base64 (RFC 4648, with padding) into a buf. */
#ifndef PHX_B64_H
#define PHX_B64_H

#include <stddef.h>

struct buf;

static inline size_t b64_enc_len(size_t n) { return (n + 2) / 3 * 4; }

/* Appends the encoding of p[0..n); 0 or a negative errno from the buffer. */
int b64_encode(struct buf *out, const void *p, size_t n);
/* Appends the decoded bytes of s[0..n); -EINVAL for bad characters, bad
 * length or bad padding (nothing appended then). */
int b64_decode(struct buf *out, const char *s, size_t n);

#endif
