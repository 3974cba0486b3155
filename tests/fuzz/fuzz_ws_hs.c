/* fuzz_ws_hs — the WebSocket upgrade handshake (daemon/ws_hs), both sides.
 *
 * Input: bytes from the peer, read as a server's answer (with a fixed key
 * and three offers: none, phxd's default, and one with every parameter)
 * and as a client's request.  Promises checked:
 *  - ws_hs_parse_response() returns 0, a head length, -EMSGSIZE or
 *    -EPROTO; a head ends with the blank line and is at most WS_HS_MAX;
 *    every shorter prefix of a good answer needs more (0); an error comes
 *    with a reason that is one line of printable text (it is logged and
 *    shown to clients);
 *  - what is negotiated stays within the offer: windows 8..15 and no
 *    larger than offered, the client's no larger than offered and at least
 *    9, our no_context_takeover kept; no offer means nothing negotiated;
 *  - ws_hs_parse_request() returns 0, a head length, -EMSGSIZE or -EPROTO,
 *    with a NUL-terminated target and a key that is empty or 24 bytes, and
 *    a permessage-deflate offer within 8..15;
 *  - a good request answered with ws_hs_response_101() is an answer that
 *    the client accepts with exactly what the request offered (unless it
 *    asked for an 8-bit client window, which we refuse), and a request
 *    written again with ws_hs_request() reads back the same.
 */
#include <errno.h>
#include <string.h>

#include "buf.h"
#include "daemon/ws_hs.h"

#include "fuzz.h"

static const char fuzz_key[] = "dGhlIHNhbXBsZSBub25jZQ==";

/* Error reasons are logged: one printable line (found by this target: a
 * quoted parameter value could carry control characters into them;
 * regressions/ws_hs/pmd-value-*). */
static void check_err(const char *err, size_t cap)
{
	size_t n = strnlen(err, cap);
	FUZZ_CHECK(n > 0 && n < cap);
	for (size_t k = 0; k < n; k++)
		FUZZ_CHECK((unsigned char)err[k] >= 0x20 && err[k] != 0x7f);
}

static int bits_ok(unsigned b)
{
	return b >= WSD_BITS_MIN && b <= WSD_BITS_MAX;
}

static void check_got(const struct wsd_params *offer, const struct wsd_params *got)
{
	if (!got->enabled)
		return;
	FUZZ_CHECK(offer != NULL);
	FUZZ_CHECK(bits_ok(got->server_max_window_bits));
	FUZZ_CHECK(got->server_max_window_bits <= offer->server_max_window_bits);
	FUZZ_CHECK(got->client_max_window_bits >= WSD_DEFLATE_BITS_MIN &&
		   got->client_max_window_bits <= WSD_BITS_MAX);
	FUZZ_CHECK(got->client_max_window_bits <= offer->client_max_window_bits);
	FUZZ_CHECK(!offer->client_no_context_takeover || got->client_no_context_takeover);
	FUZZ_CHECK(got->client_max_window_bits == offer->client_max_window_bits ||
		   offer->client_bits_offered);
}

static long parse_response(const char *p, size_t len, const char *key,
			   const struct wsd_params *offer, struct wsd_params *got)
{
	char err[256];

	memset(err, 0x55, sizeof(err));
	wsd_params_default(got);
	long r = ws_hs_parse_response(p, len, key, offer, offer ? got : NULL, err, sizeof(err));
	FUZZ_CHECK(r >= 0 || r == -EMSGSIZE || r == -EPROTO);
	if (r < 0)
		check_err(err, sizeof(err));
	if (r > 0) {
		FUZZ_CHECK(r >= 4 && (size_t)r <= len && r <= WS_HS_MAX);
		FUZZ_CHECK(memcmp(p + r - 4, "\r\n\r\n", 4) == 0);
		FUZZ_CHECK(!memmem(p, (size_t)r - 1, "\r\n\r\n", 4));
		check_got(offer, got);
	}
	return r;
}

static void check_response(const char *p, size_t len, const struct wsd_params *offer)
{
	struct wsd_params got, again;
	long r = parse_response(p, len, fuzz_key, offer, &got);

	if (r <= 0)
		return;
	/* the same head alone, and its prefixes */
	FUZZ_CHECK(parse_response(p, (size_t)r, fuzz_key, offer, &again) == r);
	FUZZ_CHECK(memcmp(&got, &again, sizeof(got)) == 0);
	FUZZ_CHECK(parse_response(p, (size_t)r - 1, fuzz_key, offer, &again) == 0);
	FUZZ_CHECK(parse_response(p, (size_t)r / 2, fuzz_key, offer, &again) == 0);
}

/* Not empty, and no blank or control character. */
static int printable(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == 0x7f)
			return 0;
	return 1;
}

static void check_pmd_eq(const struct wsd_params *a, const struct wsd_params *b)
{
	FUZZ_CHECK(a->enabled == b->enabled);
	if (!a->enabled)
		return;
	FUZZ_CHECK(a->server_no_context_takeover == b->server_no_context_takeover);
	FUZZ_CHECK(a->client_no_context_takeover == b->client_no_context_takeover);
	FUZZ_CHECK(a->server_max_window_bits == b->server_max_window_bits);
	FUZZ_CHECK(a->client_max_window_bits == b->client_max_window_bits);
	FUZZ_CHECK(a->client_bits_offered == b->client_bits_offered);
}

/* The request written again reads back the same. */
static void check_request_again(const struct ws_hs_req *req)
{
	static struct ws_hs_req req2;
	struct buf out;

	if (!printable(req->target) || strlen(req->key) != WS_KEY_LEN || !printable(req->key))
		return;
	buf_init(&out, 0);
	FUZZ_CHECK(ws_hs_request(&out, "example.com", req->target, req->key, NULL, 0,
				 req->pmd.enabled ? &req->pmd : NULL) == 0);
	FUZZ_CHECK(ws_hs_parse_request(fuzz_bytes(&out), buf_len(&out), &req2) ==
		   (long)buf_len(&out));
	FUZZ_CHECK(req2.upgrade_ok);
	FUZZ_CHECK(strcmp(req2.target, req->target) == 0 && strcmp(req2.key, req->key) == 0);
	check_pmd_eq(&req->pmd, &req2.pmd);
	buf_free(&out);
}

/* Our 101 answer to the request is accepted by our client side. */
static void check_answer(const struct ws_hs_req *req)
{
	const struct wsd_params *offer = req->pmd.enabled ? &req->pmd : NULL;
	struct wsd_params got;
	struct buf out;

	buf_init(&out, 0);
	FUZZ_CHECK(ws_hs_response_101(&out, req->key, &req->pmd) == 0);
	long r = parse_response(fuzz_bytes(&out), buf_len(&out), req->key, offer, &got);
	if (offer && offer->client_bits_offered &&
	    offer->client_max_window_bits < WSD_DEFLATE_BITS_MIN) {
		FUZZ_CHECK(r == -EPROTO);
	} else {
		FUZZ_CHECK(r == (long)buf_len(&out));
		if (offer)
			check_pmd_eq(&req->pmd, &got);
		else
			FUZZ_CHECK(!got.enabled);
	}
	buf_free(&out);
}

static void check_request(const char *p, size_t len)
{
	static struct ws_hs_req req;
	long r = ws_hs_parse_request(p, len, &req);

	FUZZ_CHECK(r >= 0 || r == -EMSGSIZE || r == -EPROTO);
	if (r <= 0)
		return;
	FUZZ_CHECK((size_t)r <= len && r <= WS_HS_MAX);
	FUZZ_CHECK(memcmp(p + r - 4, "\r\n\r\n", 4) == 0);
	FUZZ_CHECK(memchr(req.target, '\0', sizeof(req.target)) != NULL);
	FUZZ_CHECK(req.key[WS_KEY_LEN] == '\0');
	FUZZ_CHECK(!req.upgrade_ok || req.key[0]);
	if (req.pmd.enabled) {
		FUZZ_CHECK(bits_ok(req.pmd.server_max_window_bits));
		FUZZ_CHECK(bits_ok(req.pmd.client_max_window_bits));
	}
	if (req.upgrade_ok) {
		check_answer(&req);
		check_request_again(&req);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	struct wsd_params offer;

	check_response(p, size, NULL);
	wsd_params_default(&offer);
	offer.client_bits_offered = 1;
	check_response(p, size, &offer);
	offer.client_no_context_takeover = 1;
	offer.server_no_context_takeover = 1;
	offer.server_max_window_bits = 10;
	offer.client_max_window_bits = 12;
	check_response(p, size, &offer);
	check_request(p, size);
	return 0;
}
