/* fuzz_ws_frame — the WebSocket frame header reader (daemon/ws_frame.c).
 *
 * The first byte holds the reader's starting flags (WS_FRAME_RSV1_OK), the
 * rest is a stream of frames read the way up_conn reads them: header, skip
 * the payload, next header, with WS_FRAME_IN_MSG tracking fragmented
 * messages.  Checks:
 *  - a header accepted is 2, 4 or 10 bytes, within the input, and writing
 *    it again from the fields gives the same bytes (nothing else is
 *    accepted: no masks, minimal length forms aside);
 *  - what it accepts keeps the rules: control frames whole and <= 125
 *    bytes, RSV1 only when allowed and only on a message's first frame,
 *    continuations only inside a message, 63-bit lengths;
 *  - "need more" means the header really is cut short, and every prefix of
 *    an accepted header needs more;
 *  - an error has a reason and close code 1002, and stays an error with
 *    more bytes;
 *  - ws_frame_close_valid() accepts only wire codes and UTF-8 reasons.
 */
#include <errno.h>
#include <string.h>

#include "daemon/ws_frame.h"
#include "fuzz.h"
#include "json.h"

static size_t hdr_need(const uint8_t *p)
{
	unsigned l = p[1] & 127;
	return l < 126 ? 2 : l == 126 ? 4 : 10;
}

static void check_close(const uint8_t *p, size_t n)
{
	uint16_t code = 0;
	int ok = ws_frame_close_valid(p, n, &code);
	if (n == 0) {
		FUZZ_CHECK(ok && code == 1005);
		return;
	}
	if (n == 1) {
		FUZZ_CHECK(!ok);
		return;
	}
	unsigned c = (unsigned)p[0] << 8 | p[1];
	int wire = (c >= 1000 && c <= 1014 && c != 1004 && c != 1005 && c != 1006) ||
		   (c >= 3000 && c <= 4999);
	FUZZ_CHECK(ok == (wire && utf8_valid((const char *)p + 2, n - 2)));
	if (ok)
		FUZZ_CHECK(code == c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned base = data[0] & WS_FRAME_RSV1_OK;
	const uint8_t *p = data + 1;
	size_t n = size - 1, off = 0;
	int in_msg = 0;

	check_close(p, n < WS_CTRL_MAX ? n : WS_CTRL_MAX);
	while (off < n) {
		struct ws_frame f;
		unsigned flags = base | (in_msg ? WS_FRAME_IN_MSG : 0);
		const uint8_t *h = p + off;
		size_t avail = n - off;
		long r = ws_frame_parse(h, avail, flags, &f);
		if (r == 0) {
			FUZZ_CHECK(avail < 2 || avail < hdr_need(h));
			return 0;
		}
		if (r < 0) {
			FUZZ_CHECK(r == -EPROTO && f.why && f.why[0] && f.close_code == 1002);
			struct ws_frame g;
			uint8_t more[WS_FRAME_HDR_MAX + 1];
			size_t k = avail < sizeof(more) ? avail : sizeof(more);
			memcpy(more, h, k);
			memset(more + k, 0, sizeof(more) - k);
			FUZZ_CHECK(ws_frame_parse(more, sizeof(more), flags, &g) == -EPROTO);
			return 0;
		}
		FUZZ_CHECK((size_t)r == f.hdr_len && (size_t)r <= avail);
		FUZZ_CHECK(r == 2 || r == 4 || r == 10);
		FUZZ_CHECK((size_t)r == hdr_need(h));
		for (size_t k = 0; k < (size_t)r; k++) {
			struct ws_frame g;
			FUZZ_CHECK(ws_frame_parse(h, k, flags, &g) == 0);
		}
		/* the same header, written again from what was read */
		uint8_t w[WS_FRAME_HDR_MAX];
		w[0] = (uint8_t)(f.fin << 7 | f.rsv << 4 | f.opcode);
		size_t wl;
		if (r == 2) {
			w[1] = (uint8_t)f.len;
			wl = 2;
		} else if (r == 4) {
			w[1] = 126;
			w[2] = (uint8_t)(f.len >> 8);
			w[3] = (uint8_t)f.len;
			wl = 4;
		} else {
			w[1] = 127;
			for (int k = 0; k < 8; k++)
				w[2 + k] = (uint8_t)(f.len >> (56 - 8 * k));
			wl = 10;
		}
		FUZZ_CHECK(wl == (size_t)r && memcmp(w, h, wl) == 0);
		FUZZ_CHECK(f.len >> 63 == 0);
		int ctrl = (f.opcode & 8) != 0;
		FUZZ_CHECK(f.opcode <= 2 || (f.opcode >= 8 && f.opcode <= 10));
		if (ctrl)
			FUZZ_CHECK(f.fin && f.len <= WS_CTRL_MAX && f.rsv == 0);
		FUZZ_CHECK(f.rsv == 0 || (f.rsv == WS_RSV1 && (flags & WS_FRAME_RSV1_OK) &&
					  (f.opcode == WS_OP_TEXT || f.opcode == WS_OP_BINARY)));
		if (f.opcode == WS_OP_CONT)
			FUZZ_CHECK(in_msg);
		if (f.opcode == WS_OP_TEXT || f.opcode == WS_OP_BINARY)
			FUZZ_CHECK(!in_msg);
		if (!ctrl)
			in_msg = !f.fin;
		off += (size_t)r;
		if (f.len > n - off)
			return 0;
		if (f.opcode == WS_OP_CLOSE)
			check_close(p + off, (size_t)f.len);
		off += (size_t)f.len;
	}
	return 0;
}
