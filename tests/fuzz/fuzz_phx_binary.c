/* fuzz_phx_binary — Phoenix V2 binary frames (daemon/phx_msg).
 *
 * Input: one WebSocket binary message, given to both decoders.
 * Promises checked:
 *  - phx_decode_binary() (server frames: push, reply, broadcast) returns 0
 *    or -EINVAL; on 0 every field is the bytes the header announced, with
 *    no NUL, topic (and event but for replies) non-empty, and the payload
 *    the rest of the message;
 *  - a server push, sent back as a client push with phx_encode_binary_push()
 *    and read with phx_decode_binary_client(), keeps its fields;
 *  - phx_decode_binary_client() accepts exactly the frames the encoder
 *    writes: what it accepts encodes back to the same bytes.
 */
#include <errno.h>
#include <string.h>

#include "buf.h"
#include "daemon/phx_msg.h"

#include "fuzz.h"

static int span_eq(const void *a, size_t alen, const void *b, size_t blen)
{
	return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

/* A field read from the frame: announced length, no NUL. */
static void check_field(const char *s, size_t announced)
{
	FUZZ_CHECK(strlen(s) == announced);
}

static void check_server(const uint8_t *p, size_t len, const struct phx_msg *m)
{
	size_t hdr, jl = 0, rl = 0, tl, el;

	FUZZ_CHECK(m->binary && len >= 3);
	switch (p[0]) {
	case PHX_BIN_PUSH:
		hdr = 4; jl = p[1]; tl = p[2]; el = p[3];
		break;
	case PHX_BIN_REPLY:
		hdr = 5; jl = p[1]; rl = p[2]; tl = p[3]; el = p[4];
		break;
	case PHX_BIN_BROADCAST:
		hdr = 3; tl = p[1]; el = p[2];
		break;
	default:
		FUZZ_CHECK(!"unknown kind accepted");
		return;
	}
	size_t body = hdr + jl + rl + tl + el;
	FUZZ_CHECK(len >= body);
	FUZZ_CHECK(m->has_join_ref == (jl > 0) && m->has_ref == (rl > 0));
	check_field(m->join_ref, jl);
	check_field(m->ref, rl);
	check_field(m->topic, tl);
	FUZZ_CHECK(m->topic_len == tl && tl > 0);
	FUZZ_CHECK(span_eq(m->join_ref, jl, p + hdr, jl));
	FUZZ_CHECK(span_eq(m->ref, rl, p + hdr + jl, rl));
	FUZZ_CHECK(span_eq(m->topic, tl, p + hdr + jl + rl, tl));
	FUZZ_CHECK((const uint8_t *)m->payload == p + body && m->payload_len == len - body);
	FUZZ_CHECK(m->is_reply == (p[0] == PHX_BIN_REPLY));
	if (m->is_reply) {
		check_field(m->status, el);
		FUZZ_CHECK(span_eq(m->status, el, p + hdr + jl + rl + tl, el));
		FUZZ_CHECK(strcmp(m->event, "phx_reply") == 0 && m->event_len == 9);
		FUZZ_CHECK(m->response == m->payload && m->response_len == m->payload_len);
	} else {
		check_field(m->event, el);
		FUZZ_CHECK(m->event_len == el && el > 0);
		FUZZ_CHECK(span_eq(m->event, el, p + hdr + jl + rl + tl, el));
	}
}

/* A server push forwarded as a client push keeps its fields. */
static void check_forward(const struct phx_msg *m)
{
	static struct phx_msg c;
	struct buf out;

	buf_init(&out, 0);
	FUZZ_CHECK(phx_encode_binary_push(&out, m->has_join_ref ? m->join_ref : NULL, "1",
					  m->topic, m->topic_len, m->event, m->event_len,
					  m->payload, m->payload_len) == 0);
	FUZZ_CHECK(phx_decode_binary_client(fuzz_bytes(&out), buf_len(&out), &c) == 0);
	FUZZ_CHECK(c.has_join_ref == m->has_join_ref && strcmp(c.join_ref, m->join_ref) == 0);
	FUZZ_CHECK(c.has_ref && strcmp(c.ref, "1") == 0);
	FUZZ_CHECK(span_eq(c.topic, c.topic_len, m->topic, m->topic_len));
	FUZZ_CHECK(span_eq(c.event, c.event_len, m->event, m->event_len));
	FUZZ_CHECK(span_eq(c.payload, c.payload_len, m->payload, m->payload_len));
	buf_free(&out);
}

static void check_client(const uint8_t *p, size_t len, const struct phx_msg *m)
{
	struct buf out;

	FUZZ_CHECK(m->binary && len >= 5 && p[0] == PHX_BIN_PUSH);
	FUZZ_CHECK(m->topic_len > 0 && m->event_len > 0);
	check_field(m->join_ref, p[1]);
	check_field(m->ref, p[2]);
	check_field(m->topic, p[3]);
	check_field(m->event, p[4]);
	buf_init(&out, 0);
	FUZZ_CHECK(phx_encode_binary_push(&out, m->has_join_ref ? m->join_ref : NULL,
					  m->has_ref ? m->ref : NULL, m->topic, m->topic_len,
					  m->event, m->event_len, m->payload,
					  m->payload_len) == 0);
	FUZZ_CHECK(span_eq(fuzz_bytes(&out), buf_len(&out), p, len));
	buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct phx_msg m;
	int r = phx_decode_binary(data, size, &m);

	FUZZ_CHECK(r == 0 || r == -EINVAL);
	if (r == 0) {
		check_server(data, size, &m);
		if (data[0] == PHX_BIN_PUSH || data[0] == PHX_BIN_BROADCAST)
			check_forward(&m);
	}
	r = phx_decode_binary_client(data, size, &m);
	FUZZ_CHECK(r == 0 || r == -EINVAL);
	if (r == 0)
		check_client(data, size, &m);
	return 0;
}
