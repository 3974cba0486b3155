/* fuzz_phx_json — Phoenix V2 text frames (daemon/phx_msg, JSON side).
 *
 * Input: one WebSocket text message.  Promises checked when
 * phx_decode_json() accepts it:
 *  - the frame is valid JSON as a whole, and so are the payload and a
 *    reply's response; the names are non-empty, fit their arrays and hold
 *    no NUL;
 *  - names are valid UTF-8 (they become fields of the lines phxd writes
 *    to local clients, which are UTF-8 text);
 *  - encoded again with phx_encode_json() the frame decodes to the same
 *    fields, and encoding that gives the same bytes again.
 * A frame it refuses gets -EINVAL and nothing else.
 */
#include <errno.h>
#include <string.h>

#include "buf.h"
#include "daemon/phx_msg.h"
#include "json.h"

#include "fuzz.h"

static int span_eq(const char *a, size_t alen, const char *b, size_t blen)
{
	return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static int names_utf8(const struct phx_msg *m)
{
	return utf8_valid(m->topic, m->topic_len) && utf8_valid(m->event, m->event_len) &&
	       utf8_valid(m->join_ref, strlen(m->join_ref)) &&
	       utf8_valid(m->ref, strlen(m->ref));
}

static void check_msg(const struct phx_msg *m, const char *p, size_t len)
{
	FUZZ_CHECK(!m->binary);
	FUZZ_CHECK(json_validate(p, len, NULL) == 0);
	FUZZ_CHECK(m->topic_len > 0 && m->topic_len <= PHX_NAME_MAX);
	FUZZ_CHECK(m->event_len > 0 && m->event_len <= PHX_NAME_MAX);
	FUZZ_CHECK(strlen(m->topic) == m->topic_len && strlen(m->event) == m->event_len);
	FUZZ_CHECK(strlen(m->join_ref) <= PHX_REF_MAX && strlen(m->ref) <= PHX_REF_MAX);
	FUZZ_CHECK(m->has_join_ref || !m->join_ref[0]);
	FUZZ_CHECK(m->has_ref || !m->ref[0]);
	FUZZ_CHECK(names_utf8(m));
	FUZZ_CHECK(m->payload >= p && m->payload + m->payload_len <= p + len);
	FUZZ_CHECK(json_validate(m->payload, m->payload_len, NULL) == 0);
	FUZZ_CHECK(m->is_reply == (strcmp(m->event, "phx_reply") == 0));
	if (m->is_reply) {
		FUZZ_CHECK(strlen(m->status) <= PHX_NAME_MAX);
		FUZZ_CHECK(utf8_valid(m->status, strlen(m->status)));
		FUZZ_CHECK(json_validate(m->response, m->response_len, NULL) == 0);
	}
}

static void check_same(const struct phx_msg *a, const struct phx_msg *b)
{
	FUZZ_CHECK(a->has_join_ref == b->has_join_ref && a->has_ref == b->has_ref);
	FUZZ_CHECK(strcmp(a->join_ref, b->join_ref) == 0 && strcmp(a->ref, b->ref) == 0);
	FUZZ_CHECK(span_eq(a->topic, a->topic_len, b->topic, b->topic_len));
	FUZZ_CHECK(span_eq(a->event, a->event_len, b->event, b->event_len));
	FUZZ_CHECK(span_eq(a->payload, a->payload_len, b->payload, b->payload_len));
	FUZZ_CHECK(a->is_reply == b->is_reply);
	if (a->is_reply) {
		FUZZ_CHECK(strcmp(a->status, b->status) == 0);
		FUZZ_CHECK(span_eq(a->response, a->response_len, b->response, b->response_len));
	}
}

static int encode(struct buf *out, const struct phx_msg *m)
{
	return phx_encode_json(out, m->has_join_ref ? m->join_ref : NULL,
			       m->has_ref ? m->ref : NULL, m->topic, m->topic_len, m->event,
			       m->event_len, m->payload, m->payload_len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct phx_msg m, m2, m3;
	struct buf e1, e2;
	int r = phx_decode_json((const char *)data, size, &m);

	FUZZ_CHECK(r == 0 || r == -EINVAL);
	if (r < 0)
		return 0;
	/* names are valid UTF-8 (found by this target: the fast path of
	 * elem_str() skipped the check; see the regressions named
	 * *-not-utf8 under regressions/phx_json) */
	FUZZ_CHECK(names_utf8(&m));
	check_msg(&m, (const char *)data, size);

	buf_init(&e1, 0);
	buf_init(&e2, 0);
	FUZZ_CHECK(encode(&e1, &m) == 0);
	FUZZ_CHECK(phx_decode_json(fuzz_bytes(&e1), buf_len(&e1), &m2) == 0);
	check_msg(&m2, fuzz_bytes(&e1), buf_len(&e1));
	check_same(&m, &m2);
	FUZZ_CHECK(encode(&e2, &m2) == 0);
	FUZZ_CHECK(span_eq(fuzz_bytes(&e1), buf_len(&e1), fuzz_bytes(&e2), buf_len(&e2)));
	FUZZ_CHECK(phx_decode_json(fuzz_bytes(&e2), buf_len(&e2), &m3) == 0);
	check_same(&m2, &m3);
	buf_free(&e1);
	buf_free(&e2);
	return 0;
}
