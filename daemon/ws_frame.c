#include "ws_frame.h"

#include <errno.h>

#include "json.h"

static long bad(struct ws_frame *f, const char *why)
{
	f->why = why;
	f->close_code = 1002;
	return -EPROTO;
}

long ws_frame_parse(const void *data, size_t n, unsigned flags, struct ws_frame *f)
{
	const uint8_t *p = data;
	if (n < 2)
		return 0;
	f->fin = p[0] >> 7;
	f->rsv = (p[0] >> 4) & 7;
	f->opcode = p[0] & 0xF;
	f->why = NULL;
	f->close_code = 0;
	int ctrl = (f->opcode & 8) != 0;
	/* checked before the length is complete: a broken stream is reported
	 * as soon as its first two bytes are in */
	switch (f->opcode) {
	case WS_OP_CONT:
		if (!(flags & WS_FRAME_IN_MSG))
			return bad(f, "continuation frame with no message to continue");
		break;
	case WS_OP_TEXT:
	case WS_OP_BINARY:
		if (flags & WS_FRAME_IN_MSG)
			return bad(f, "new data frame inside a fragmented message");
		break;
	case WS_OP_CLOSE:
	case WS_OP_PING:
	case WS_OP_PONG:
		break;
	default:
		return bad(f, "frame with a reserved opcode");
	}
	if (f->rsv) {
		if ((f->rsv & ~WS_RSV1) || !(flags & WS_FRAME_RSV1_OK))
			return bad(f, "frame with a reserved bit set (RSV) that no extension allows");
		if (ctrl || f->opcode == WS_OP_CONT)
			return bad(f, "RSV1 on a control or continuation frame");
	}
	if (p[1] & 0x80)
		return bad(f, "masked frame from the server");
	if (ctrl && !f->fin)
		return bad(f, "fragmented control frame");
	if (ctrl && (p[1] & 0x7F) > WS_CTRL_MAX)
		return bad(f, "control frame longer than 125 bytes");
	uint64_t len = p[1] & 0x7F;
	size_t h = 2;
	if (len == 126) {
		if (n < 4)
			return 0;
		len = (uint64_t)p[2] << 8 | p[3];
		h = 4;
	} else if (len == 127) {
		if (n < 10)
			return 0;
		if (p[2] & 0x80)
			return bad(f, "frame length with its most significant bit set");
		len = 0;
		for (int k = 0; k < 8; k++)
			len = len << 8 | p[2 + k];
		h = 10;
	}
	f->len = len;
	f->hdr_len = h;
	return (long)h;
}

int ws_frame_close_valid(const void *data, size_t n, uint16_t *code)
{
	const uint8_t *p = data;
	if (n == 0) {
		*code = 1005;
		return 1;
	}
	if (n == 1)
		return 0;
	unsigned c = (unsigned)p[0] << 8 | p[1];
	/* 1004-1006 and 1015 are reserved: never on the wire */
	int ok = (c >= 1000 && c <= 1014 && c != 1004 && c != 1005 && c != 1006) ||
		 (c >= 3000 && c <= 4999);
	if (!ok || !utf8_valid((const char *)p + 2, n - 2))
		return 0;
	*code = (uint16_t)c;
	return 1;
}
