/* ws_frame — reads the header of one WebSocket frame sent by a server
 * (RFC 6455 section 5.2; RSV1 of RFC 7692).  A pure function over bytes: no
 * state, no allocation, no socket, so that up_conn can parse frames in place
 * in its read buffer, and tests and fuzzers can call it directly.
 */
#ifndef PHX_WS_FRAME_H
#define PHX_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

enum ws_opcode {
	WS_OP_CONT = 0x0, WS_OP_TEXT = 0x1, WS_OP_BINARY = 0x2,
	WS_OP_CLOSE = 0x8, WS_OP_PING = 0x9, WS_OP_PONG = 0xA,
};

#define WS_RSV1 0x4u                /* in ws_frame.rsv: bits 6..4 of byte 0, >> 4 */

/* What the reader knows of the stream, for the rules that span frames. */
#define WS_FRAME_IN_MSG 0x1u        /* a fragmented data message is open */
#define WS_FRAME_RSV1_OK 0x2u       /* permessage-deflate was negotiated */

#define WS_FRAME_HDR_MAX 14         /* 2 + 8 length + 4 mask */
#define WS_CTRL_MAX 125

struct ws_frame {
	unsigned fin;                   /* 1 on the last frame of a message */
	unsigned rsv;                   /* RSV1..3 as bits 2..0 (WS_RSV1) */
	unsigned opcode;
	uint64_t len;                   /* payload bytes after the header */
	size_t hdr_len;
	uint16_t close_code;            /* on error: the code to close with */
	const char *why;                /* on error: a readable reason (static) */
};

/* Parses the frame header at p[0..n).  Returns the header's length (> 0)
 * with f filled in, 0 when more bytes are needed, or -EPROTO with f->why and
 * f->close_code (1002) when the frame breaks the protocol: a reserved
 * opcode, a masked frame, a 64-bit length with its top bit set, a control
 * frame that is fragmented or longer than 125 bytes, an RSV bit not allowed
 * (RSV1 only with WS_FRAME_RSV1_OK, and only on the first frame of a data
 * message), a continuation with no message open or a new data message
 * inside one (flags WS_FRAME_*).  The payload length is not limited here. */
long ws_frame_parse(const void *p, size_t n, unsigned flags, struct ws_frame *f);

/* 1 when p[0..n) is a valid close frame body: empty, or a code that may be
 * sent on the wire (RFC 6455 7.4) followed by UTF-8; *code gets the code
 * (1005 when empty). */
int ws_frame_close_valid(const void *p, size_t n, uint16_t *code);

#endif
