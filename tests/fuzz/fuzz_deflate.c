/* fuzz_deflate — the permessage-deflate codec (daemon/ws_deflate).
 *
 * Input: two bytes of settings, then messages, each one byte of length and
 * that many bytes (the last one takes what is left).
 *   byte 0: bits 0-2 the server's window (8 + n), bit 3 server no context
 *           takeover, bits 4-6 the output limit (see limits[]);
 *   byte 1: bits 0-2 the client's window (9 + n, 15 at most), bit 3 client
 *           no context takeover, bits 4-7 the compression level (% 10).
 * Promises checked:
 *  - inflating the messages as they are (a client reading a server):
 *    0, -EMSGSIZE or -EPROTO; on 0 never more than the limit appended; on
 *    an error nothing appended (the bytes already in the buffer intact) and
 *    a reason for -EPROTO; a buffer whose own limit is lower gives
 *    -EMSGSIZE with nothing appended, never more;
 *  - the same messages compressed by one side and inflated by the other
 *    (both ways, with context takeover across messages when negotiated)
 *    come back as they were, with a limit of exactly their size; one byte
 *    less is -EMSGSIZE.
 */
#include <errno.h>
#include <string.h>

#include "buf.h"
#include "daemon/ws_deflate.h"

#include "fuzz.h"

#define MSG_MAX 64

static const size_t limits[8] = { 0, 1, 7, 64, 255, 1000, 4096, 65536 };

struct msgs {
	const uint8_t *p[MSG_MAX];
	size_t len[MSG_MAX];
	size_t n;
};

static void split(const uint8_t *p, size_t size, struct msgs *m)
{
	size_t i = 0;

	m->n = 0;
	while (i < size && m->n < MSG_MAX) {
		size_t l = p[i++];
		if (l > size - i)
			l = size - i;
		m->p[m->n] = p + i;
		m->len[m->n++] = l;
		i += l;
	}
}

/* One inflate into a buffer that already holds "abc"; returns its result. */
static int inflate_one(struct wsd *w, const uint8_t *msg, size_t len, size_t max,
		       size_t buf_max)
{
	struct buf out;

	buf_init(&out, buf_max);
	FUZZ_CHECK(buf_append(&out, "abc", 3) == 0);
	int r = wsd_inflate(w, msg, len, max, &out);
	FUZZ_CHECK(r == 0 || r == -EMSGSIZE || r == -EPROTO);
	FUZZ_CHECK(buf_len(&out) >= 3 && memcmp(fuzz_bytes(&out), "abc", 3) == 0);
	if (r == 0)
		FUZZ_CHECK(buf_len(&out) - 3 <= max);
	else
		FUZZ_CHECK(buf_len(&out) == 3);
	if (r == -EPROTO)
		FUZZ_CHECK(w->err[0] != '\0');
	buf_free(&out);
	return r;
}

/* Arbitrary messages, as a client receives them. */
static void check_inflate(const struct wsd_params *p, const struct msgs *m, size_t max)
{
	struct wsd w, lim;
	int wdone = 0, ldone = 0;

	FUZZ_CHECK(wsd_init(&w, p, WSD_CLIENT, 6) == 0);
	FUZZ_CHECK(wsd_init(&lim, p, WSD_CLIENT, 6) == 0);
	for (size_t i = 0; i < m->n; i++) {
		/* after an error the connection is closed: no more messages */
		if (!wdone && inflate_one(&w, m->p[i], m->len[i], max, 0) < 0)
			wdone = 1;
		/* a buffer with a limit of its own (3 + 16 bytes) */
		if (!ldone && inflate_one(&lim, m->p[i], m->len[i], max, 3 + 16) < 0)
			ldone = 1;
	}
	wsd_fini(&w);
	wsd_fini(&lim);
}

/* One message from tx to rx; comes back the same. */
static void round_trip(struct wsd *tx, struct wsd *rx, const uint8_t *msg, size_t len)
{
	struct buf z, out;

	buf_init(&z, 0);
	buf_init(&out, 0);
	FUZZ_CHECK(wsd_deflate(tx, msg, len, &z) == 0);
	FUZZ_CHECK(wsd_inflate(rx, fuzz_bytes(&z), buf_len(&z), len, &out) == 0);
	FUZZ_CHECK(buf_len(&out) == len && (len == 0 || memcmp(fuzz_bytes(&out), msg, len) == 0));
	buf_free(&z);
	buf_free(&out);
}

/* A message inflated with a limit one byte short of its size. */
static void one_short(const struct wsd_params *p, int level, const uint8_t *msg, size_t len)
{
	struct wsd tx, rx;
	struct buf z, out;

	if (len == 0)
		return;
	FUZZ_CHECK(wsd_init(&tx, p, WSD_CLIENT, level) == 0);
	FUZZ_CHECK(wsd_init(&rx, p, WSD_SERVER, level) == 0);
	buf_init(&z, 0);
	buf_init(&out, 0);
	FUZZ_CHECK(wsd_deflate(&tx, msg, len, &z) == 0);
	FUZZ_CHECK(wsd_inflate(&rx, fuzz_bytes(&z), buf_len(&z), len - 1, &out) == -EMSGSIZE);
	FUZZ_CHECK(buf_len(&out) == 0);
	buf_free(&z);
	buf_free(&out);
	wsd_fini(&tx);
	wsd_fini(&rx);
}

static void check_round_trip(struct wsd_params p, int level, const struct msgs *m)
{
	struct wsd cli, srv;

	/* our compressor needs a 512-byte window at least */
	if (p.server_max_window_bits < WSD_DEFLATE_BITS_MIN)
		p.server_max_window_bits = WSD_DEFLATE_BITS_MIN;
	FUZZ_CHECK(wsd_init(&cli, &p, WSD_CLIENT, level) == 0);
	FUZZ_CHECK(wsd_init(&srv, &p, WSD_SERVER, level) == 0);
	for (size_t i = 0; i < m->n; i++) {
		round_trip(&cli, &srv, m->p[i], m->len[i]);
		round_trip(&srv, &cli, m->p[i], m->len[i]);
	}
	FUZZ_CHECK(cli.tx_msgs == m->n && srv.rx_msgs == m->n);
	wsd_fini(&cli);
	wsd_fini(&srv);
	if (m->n)
		one_short(&p, level, m->p[0], m->len[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wsd_params p;
	struct msgs m;

	if (size < 2)
		return 0;
	wsd_params_default(&p);
	p.enabled = 1;
	p.server_max_window_bits = WSD_BITS_MIN + (data[0] & 7);
	p.server_no_context_takeover = !!(data[0] & 8);
	p.client_max_window_bits = WSD_DEFLATE_BITS_MIN + (data[1] & 7);
	if (p.client_max_window_bits > WSD_BITS_MAX)
		p.client_max_window_bits = WSD_BITS_MAX;
	p.client_no_context_takeover = !!(data[1] & 8);
	size_t max = limits[(data[0] >> 4) & 7];
	int level = (data[1] >> 4) % 10;

	split(data + 2, size - 2, &m);
	check_inflate(&p, &m, max);
	check_round_trip(p, level, &m);
	return 0;
}
