/* ws_deflate — the permessage-deflate message codec (RFC 7692) on zlib.
 *
 * One struct wsd per WebSocket connection: a raw-deflate compressor for the
 * messages we send and a raw-inflate decompressor for those we receive, set
 * up from the negotiated parameters and our role.  Pure codec: no sockets,
 * no wslay; the caller sets and checks RSV1 and never compresses control
 * frames.
 *
 * Sending (section 7.2.1): a whole message is compressed with Z_SYNC_FLUSH
 * and the trailing 00 00 ff ff is dropped.  Receiving (section 7.2.2): the
 * four bytes are appended back and the result inflated, with the output
 * bounded by the caller's maximum, so that a small message cannot inflate
 * into unbounded memory (a "decompression bomb" is an error, not an
 * allocation).  Without context takeover the stream is reset after every
 * message; with it, the LZ77 window carries over from message to message.
 *
 * zlib cannot write a raw deflate stream with a 256-byte window (window bits
 * 8): our compressor needs 9..15 bits.  The decompressor takes 8..15.
 *
 * zlib state is allocated on first use: a connection that never receives a
 * compressed message never pays for an inflater.  Compressor memory is about
 * 2^(bits+2) + 2^(memlevel+9) bytes plus 6 KiB; memlevel follows the window
 * bits (bits - 7, at most 8).  Measured: 262 KiB to compress and 39 KiB to
 * inflate at 15 bits, 14 KiB and 8 KiB at 10 bits.
 */
#ifndef PHX_WS_DEFLATE_H
#define PHX_WS_DEFLATE_H

#include <stddef.h>
#include <stdint.h>

struct buf;
struct z_stream_s;

#define WSD_BITS_MIN 8          /* smallest window bits in RFC 7692 */
#define WSD_BITS_MAX 15
#define WSD_DEFLATE_BITS_MIN 9  /* smallest window zlib compresses raw with */
#define WSD_LEVEL_DEFAULT 6

/* Parameters of the extension (RFC 7692 section 7.1), in an offer or as
 * negotiated.  Window bits are 15 when the parameter is absent. */
struct wsd_params {
	int enabled;                        /* negotiated: both sides use it */
	int server_no_context_takeover;
	int client_no_context_takeover;
	unsigned server_max_window_bits;    /* 8..15 */
	unsigned client_max_window_bits;    /* 8..15 */
	int client_bits_offered;            /* offer: client_max_window_bits was
					       present, with or without value */
};

/* No parameters: 15 bits both ways, context takeover, not enabled. */
void wsd_params_default(struct wsd_params *p);

enum wsd_role { WSD_CLIENT, WSD_SERVER };

struct wsd {
	struct z_stream_s *tx, *rx;         /* NULL until first used */
	int level;
	int tx_bits, rx_bits;
	int tx_reset, rx_reset;             /* no context takeover: reset per message */
	char err[96];                       /* why the last inflate failed */
	/* message bytes before and after compression, both directions */
	uint64_t tx_plain, tx_packed, rx_packed, rx_plain;
	uint64_t tx_msgs, rx_msgs;
};

/* Sets w up for p as seen by role (a client compresses with the client_*
 * parameters and inflates with the server_* ones).  0, or -EINVAL when a
 * window is outside 8..15, our compressor's below 9, or level outside 0..9.
 * Allocates nothing. */
int wsd_init(struct wsd *w, const struct wsd_params *p, enum wsd_role role, int level);
/* Frees the zlib state; w may be init'ed again.  Accepts a zeroed w. */
void wsd_fini(struct wsd *w);

/* Compresses msg[0..len) as one message and appends the payload to send
 * (with RSV1) to out.  0; -ENOMEM; -EMSGSIZE when out's limit is hit; -EIO
 * on a zlib failure.  On error nothing is appended and the compressor may be
 * out of step with the peer: the connection must be closed. */
int wsd_deflate(struct wsd *w, const void *msg, size_t len, struct buf *out);

/* Inflates the payload of one message received with RSV1 and appends it to
 * out, never more than max bytes.  0; -EMSGSIZE when it inflates past max;
 * -EPROTO on a corrupt stream (w->err says how); -ENOMEM.  On error nothing
 * is appended and the connection must be closed. */
int wsd_inflate(struct wsd *w, const void *msg, size_t len, size_t max, struct buf *out);

#endif
