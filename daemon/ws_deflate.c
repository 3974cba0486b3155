#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#define ZLIB_CONST
#include "ws_deflate.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "buf.h"

#define WSD_CHUNK 16384             /* output reserved per zlib call */
#define WSD_IN_MAX (1u << 30)       /* input handed to zlib per call */

/* The empty stored block that ends a sync flush (RFC 7692 section 7.2.1). */
static const unsigned char wsd_tail[4] = { 0x00, 0x00, 0xff, 0xff };

void wsd_params_default(struct wsd_params *p)
{
	memset(p, 0, sizeof(*p));
	p->server_max_window_bits = WSD_BITS_MAX;
	p->client_max_window_bits = WSD_BITS_MAX;
}

int wsd_init(struct wsd *w, const struct wsd_params *p, enum wsd_role role, int level)
{
	unsigned txb = role == WSD_CLIENT ? p->client_max_window_bits : p->server_max_window_bits;
	unsigned rxb = role == WSD_CLIENT ? p->server_max_window_bits : p->client_max_window_bits;

	memset(w, 0, sizeof(*w));
	if (txb < WSD_DEFLATE_BITS_MIN || txb > WSD_BITS_MAX ||
	    rxb < WSD_BITS_MIN || rxb > WSD_BITS_MAX || level < 0 || level > 9)
		return -EINVAL;
	w->level = level;
	w->tx_bits = (int)txb;
	w->rx_bits = (int)rxb;
	w->tx_reset = role == WSD_CLIENT ? p->client_no_context_takeover :
					   p->server_no_context_takeover;
	w->rx_reset = role == WSD_CLIENT ? p->server_no_context_takeover :
					   p->client_no_context_takeover;
	return 0;
}

void wsd_fini(struct wsd *w)
{
	if (w->tx) {
		deflateEnd(w->tx);
		free(w->tx);
		w->tx = NULL;
	}
	if (w->rx) {
		inflateEnd(w->rx);
		free(w->rx);
		w->rx = NULL;
	}
}

/* Memory level for a window: smaller windows get smaller hash tables. */
static int wsd_memlevel(int bits)
{
	int m = bits - 7;
	return m < 1 ? 1 : m > 8 ? 8 : m;
}

static int wsd_tx_open(struct wsd *w)
{
	if (w->tx)
		return 0;
	z_stream *z = calloc(1, sizeof(*z));
	if (!z)
		return -ENOMEM;
	int r = deflateInit2(z, w->level, Z_DEFLATED, -w->tx_bits, wsd_memlevel(w->tx_bits),
			     Z_DEFAULT_STRATEGY);
	if (r != Z_OK) {
		free(z);
		return r == Z_MEM_ERROR ? -ENOMEM : -EIO;
	}
	w->tx = z;
	return 0;
}

static int wsd_rx_open(struct wsd *w)
{
	if (w->rx)
		return 0;
	z_stream *z = calloc(1, sizeof(*z));
	if (!z)
		return -ENOMEM;
	int r = inflateInit2(z, -w->rx_bits);
	if (r != Z_OK) {
		free(z);
		return r == Z_MEM_ERROR ? -ENOMEM : -EIO;
	}
	w->rx = z;
	return 0;
}

/* errno of a failed buf_reserve() as a return value. */
static int wsd_buf_err(void)
{
	return errno == EMSGSIZE ? -EMSGSIZE : -ENOMEM;
}

/* Feeds p[0..n) to the compressor with a sync flush; all output to out. */
static int wsd_deflate_part(z_stream *z, const unsigned char *p, size_t n, struct buf *out)
{
	int last;
	do {
		size_t take = n > WSD_IN_MAX ? WSD_IN_MAX : n;
		last = take == n;
		z->next_in = p;
		z->avail_in = (uInt)take;
		do {
			char *o = buf_reserve(out, WSD_CHUNK);
			if (!o)
				return wsd_buf_err();
			z->next_out = (Bytef *)o;
			z->avail_out = WSD_CHUNK;
			int r = deflate(z, last ? Z_SYNC_FLUSH : Z_NO_FLUSH);
			if (r != Z_OK && r != Z_BUF_ERROR)
				return -EIO;
			buf_commit(out, WSD_CHUNK - z->avail_out);
		} while (z->avail_out == 0 || z->avail_in > 0);
		p += take;
		n -= take;
	} while (!last);
	return 0;
}

int wsd_deflate(struct wsd *w, const void *msg, size_t len, struct buf *out)
{
	size_t start = buf_len(out);
	int r;

	if (len == 0) {
		/* zlib writes nothing for a flush with no new input; an empty
		 * message is one empty stored block without its tail (RFC 7692
		 * section 7.2.3.6), and leaves the window as it was */
		r = buf_putc(out, 0);
		if (r == 0) {
			w->tx_msgs++;
			w->tx_packed++;
		}
		return r;
	}
	r = wsd_tx_open(w);
	if (r == 0)
		r = wsd_deflate_part(w->tx, msg, len, out);
	/* a sync flush always ends with the empty stored block: drop it */
	if (r == 0 && (buf_len(out) - start < sizeof(wsd_tail) ||
		       memcmp(buf_rptr(out) + buf_len(out) - sizeof(wsd_tail), wsd_tail,
			      sizeof(wsd_tail)) != 0))
		r = -EIO;
	if (r < 0) {
		buf_truncate(out, start);
		return r;
	}
	buf_truncate(out, buf_len(out) - sizeof(wsd_tail));
	if (w->tx_reset && deflateReset(w->tx) != Z_OK) {
		buf_truncate(out, start);
		return -EIO;
	}
	w->tx_msgs++;
	w->tx_plain += len;
	w->tx_packed += buf_len(out) - start;
	return 0;
}

static int wsd_rx_error(struct wsd *w, const char *what)
{
	snprintf(w->err, sizeof(w->err), "%s", what);
	return -EPROTO;
}

/* Feeds p[0..n) to the decompressor; output to out while it stays within
 * max bytes past start.  *ended is set when the deflate stream ended (a
 * final block); bytes after it are an error unless tail says they are our
 * own appended four. */
static int wsd_inflate_part(struct wsd *w, const unsigned char *p, size_t n, int tail,
			    size_t max, struct buf *out, size_t start, int *ended)
{
	z_stream *z = w->rx;
	int last;
	do {
		size_t take = n > WSD_IN_MAX ? WSD_IN_MAX : n;
		last = take == n;
		z->next_in = p;
		z->avail_in = (uInt)take;
		do {
			size_t have = buf_len(out) - start;
			/* one byte more than allowed tells "too big" from "exactly max" */
			size_t room = max - have >= WSD_CHUNK ? WSD_CHUNK : max - have + 1;
			char *o = buf_reserve(out, room);
			if (!o)
				return wsd_buf_err();
			z->next_out = (Bytef *)o;
			z->avail_out = (uInt)room;
			int r = inflate(z, Z_SYNC_FLUSH);
			buf_commit(out, room - z->avail_out);
			if (buf_len(out) - start > max)
				return -EMSGSIZE;
			if (r == Z_STREAM_END) {
				*ended = 1;
				if (!tail && (z->avail_in > 0 || !last))
					return wsd_rx_error(w, "data after the final deflate block");
				return 0;
			}
			if (r == Z_NEED_DICT || r == Z_DATA_ERROR)
				return wsd_rx_error(w, z->msg ? z->msg : "invalid deflate data");
			if (r == Z_MEM_ERROR)
				return -ENOMEM;
			if (r != Z_OK && r != Z_BUF_ERROR)
				return wsd_rx_error(w, "inflate failed");
			if (r == Z_BUF_ERROR && z->avail_in > 0 && z->avail_out > 0)
				return wsd_rx_error(w, "inflate made no progress");
		} while (z->avail_out == 0 || z->avail_in > 0);
		p += take;
		n -= take;
	} while (!last);
	return 0;
}

int wsd_inflate(struct wsd *w, const void *msg, size_t len, size_t max, struct buf *out)
{
	size_t start = buf_len(out);
	int ended = 0;
	int r = wsd_rx_open(w);

	w->err[0] = '\0';
	if (r == 0)
		r = wsd_inflate_part(w, msg, len, 0, max, out, start, &ended);
	if (r == 0 && !ended)
		r = wsd_inflate_part(w, wsd_tail, sizeof(wsd_tail), 1, max, out, start, &ended);
	/* a final block ends the stream: the next message starts a new one */
	if (r == 0 && (ended || w->rx_reset) && inflateReset(w->rx) != Z_OK)
		r = wsd_rx_error(w, "inflate reset failed");
	if (r < 0) {
		buf_truncate(out, start);
		/* the stream is broken; the caller closes, but leave w sane */
		if (w->rx)
			inflateReset(w->rx);
		return r;
	}
	w->rx_msgs++;
	w->rx_packed += len;
	w->rx_plain += buf_len(out) - start;
	return 0;
}
