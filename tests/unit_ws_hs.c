/* Unit tests: WebSocket upgrade handshake (daemon/ws_hs.c), URL parsing is
 * in unit_conf. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "daemon/ws_hs.h"

/* RFC 6455 section 1.3 example */
static const char rfc_key[] = "dGhlIHNhbXBsZSBub25jZQ==";
static const char rfc_accept[] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

START_TEST(accept_rfc_vector)
{
	char out[WS_ACCEPT_LEN + 1];
	ws_hs_accept(rfc_key, strlen(rfc_key), out);
	ck_assert_str_eq(out, rfc_accept);
	char k1[WS_KEY_LEN + 1], k2[WS_KEY_LEN + 1];
	ws_hs_make_key(k1);
	ws_hs_make_key(k2);
	ck_assert_int_eq(strlen(k1), WS_KEY_LEN);
	ck_assert_str_ne(k1, k2);
	ck_assert_int_eq(k1[22], '=');
}
END_TEST

START_TEST(request_format)
{
	struct buf b;
	buf_init(&b, 0);
	ck_assert_int_eq(ws_hs_request(&b, "example.com:4000", "/socket/websocket?vsn=2.0.0",
				       rfc_key, NULL, 0, NULL), 0);
	buf_putc(&b, '\0');
	const char *s = buf_rptr(&b);
	ck_assert(strncmp(s, "GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\n", 42) == 0);
	ck_assert_ptr_nonnull(strstr(s, "\r\nHost: example.com:4000\r\n"));
	ck_assert_ptr_nonnull(strstr(s, "\r\nUpgrade: websocket\r\n"));
	ck_assert_ptr_nonnull(strstr(s, "\r\nConnection: Upgrade\r\n"));
	ck_assert_ptr_nonnull(strstr(s, "\r\nSec-WebSocket-Version: 13\r\n"));
	ck_assert_ptr_nonnull(strstr(s, "\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));
	ck_assert_ptr_null(strstr(s, "Origin"));
	ck_assert(strlen(s) > 4 && strcmp(s + strlen(s) - 4, "\r\n\r\n") == 0);

	/* the server side reads it back */
	struct ws_hs_req req;
	ck_assert_int_eq(ws_hs_parse_request(s, strlen(s), &req), (long)strlen(s));
	ck_assert(req.upgrade_ok);
	ck_assert_str_eq(req.target, "/socket/websocket?vsn=2.0.0");
	ck_assert_str_eq(req.key, rfc_key);
	buf_free(&b);
}
END_TEST

static long parse(const char *resp, char *err)
{
	return ws_hs_parse_response(resp, strlen(resp), rfc_key, NULL, NULL, err, 300);
}

START_TEST(response_ok)
{
	char err[300];
	const char *r = "HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\n"
			"connection: keep-alive, Upgrade\r\nsec-websocket-accept: "
			"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x02hi";
	long n = parse(r, err);
	ck_assert_int_eq(n, (long)strlen(r) - 4); /* frame bytes after the head stay */
	/* every proper prefix of the head needs more */
	for (size_t i = 0; i < strlen(r) - 4; i++)
		ck_assert_int_eq(ws_hs_parse_response(r, i, rfc_key, NULL, NULL, err, sizeof(err)), 0);
}
END_TEST

START_TEST(response_errors)
{
	char err[300];
	ck_assert_int_eq(parse("HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n", err), -EPROTO);
	ck_assert_ptr_nonnull(strstr(err, "\"HTTP/1.1 403 Forbidden\""));
	ck_assert_int_eq(parse("HTTP/1.1 404 Not Found\r\n\r\n", err), -EPROTO);
	ck_assert_ptr_nonnull(strstr(err, "404 Not Found"));
	ck_assert_int_eq(parse("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
			       "Connection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
			       err), -EPROTO);
	ck_assert_ptr_nonnull(strstr(err, "does not match"));
	ck_assert_int_eq(parse("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
			       "Connection: Upgrade\r\n\r\n", err), -EPROTO);
	ck_assert_ptr_nonnull(strstr(err, "without Sec-WebSocket-Accept"));
	ck_assert_int_eq(parse("HTTP/1.1 101 OK\r\nConnection: Upgrade\r\n"
			       "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n", err), -EPROTO);
	ck_assert_int_eq(parse("SSH-2.0-OpenSSH_9.2\r\n", err), -EPROTO);
	ck_assert_ptr_nonnull(strstr(err, "not an HTTP response"));
	ck_assert_int_eq(parse("HTTP/1.1 1x1 Hmm\r\n\r\n", err), -EPROTO);
	ck_assert_int_eq(parse("HTTP/1.1 101 Switching Protocols\r\nbroken header\r\n\r\n", err), -EPROTO);
	/* non-printable bytes in the status line are not copied into messages */
	ck_assert_int_eq(parse("HTTP/1.1 500 \x1b[31mred\r\n\r\n", err), -EPROTO);
	ck_assert_ptr_null(strchr(err, '\x1b'));
	/* a head that never ends */
	size_t n = WS_HS_MAX + 10;
	char *big = malloc(n);
	memset(big, 'a', n);
	memcpy(big, "HTTP/1.1 101 X\r\nX-Pad: ", 23);
	ck_assert_int_eq(ws_hs_parse_response(big, n, rfc_key, NULL, NULL, err, sizeof(err)),
			 -EMSGSIZE);
	free(big);
}
END_TEST

START_TEST(request_errors)
{
	struct ws_hs_req req;
	ck_assert_int_eq(ws_hs_parse_request("GET / HTTP/1.1\r\n", 16, &req), 0);
	const char *post = "POST /socket HTTP/1.1\r\n\r\n";
	ck_assert_int_eq(ws_hs_parse_request(post, strlen(post), &req), -EPROTO);
	const char *plain = "GET /x HTTP/1.1\r\nHost: a\r\n\r\n";
	ck_assert_int_eq(ws_hs_parse_request(plain, strlen(plain), &req), (long)strlen(plain));
	ck_assert(!req.upgrade_ok);
	struct buf b;
	buf_init(&b, 0);
	ck_assert_int_eq(ws_hs_response_101(&b, rfc_key, NULL), 0);
	buf_putc(&b, '\0');
	char err[300];
	ck_assert_int_eq(ws_hs_parse_response(buf_rptr(&b), buf_len(&b) - 1, rfc_key, NULL, NULL,
					      err, sizeof(err)), (long)buf_len(&b) - 1);
	buf_reset(&b);
	ck_assert_int_eq(ws_hs_response_error(&b, 403, "Forbidden"), 0);
	buf_putc(&b, '\0');
	ck_assert(strncmp(buf_rptr(&b), "HTTP/1.1 403 Forbidden\r\n", 24) == 0);
	buf_free(&b);
}
END_TEST

/* ---- permessage-deflate negotiation ----------------------------------- */

static const char resp_head[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
				"Connection: Upgrade\r\n"
				"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n";

/* Parses a 101 with the given extension header lines ("" for none). */
static long parse_ext(const char *ext_lines, const struct wsd_params *offer,
		      struct wsd_params *got, char *err)
{
	char r[2048];
	snprintf(r, sizeof(r), "%s%s\r\n", resp_head, ext_lines);
	return ws_hs_parse_response(r, strlen(r), rfc_key, offer, got, err, 300);
}

static void offer_default(struct wsd_params *o)
{
	wsd_params_default(o);
	o->client_bits_offered = 1;
}

/* An answer the default offer must refuse, with a reason containing why. */
static void refuse(const char *ext_lines, const char *why)
{
	struct wsd_params o, got;
	char err[300] = "";
	offer_default(&o);
	got.enabled = 42;
	ck_assert_msg(parse_ext(ext_lines, &o, &got, err) == -EPROTO, "accepted: %s", ext_lines);
	ck_assert_msg(strstr(err, why) != NULL, "'%s': error '%s' lacks '%s'", ext_lines, err, why);
	ck_assert_int_eq(got.enabled, 42); /* untouched on error */
}

START_TEST(pmd_offer_format)
{
	struct wsd_params o;
	struct buf b;
	buf_init(&b, 0);
	offer_default(&o);
	ck_assert_int_eq(ws_hs_request(&b, "h", "/", rfc_key, NULL, 0, &o), 0);
	buf_putc(&b, '\0');
	ck_assert_ptr_nonnull(strstr(buf_rptr(&b), "\r\nSec-WebSocket-Extensions: "
				     "permessage-deflate; client_max_window_bits\r\n"));
	buf_reset(&b);
	o.client_no_context_takeover = o.server_no_context_takeover = 1;
	o.server_max_window_bits = 10;
	o.client_max_window_bits = 11;
	ck_assert_int_eq(ws_hs_request(&b, "h", "/", rfc_key, NULL, 0, &o), 0);
	buf_putc(&b, '\0');
	ck_assert_ptr_nonnull(strstr(buf_rptr(&b), "\r\nSec-WebSocket-Extensions: "
				     "permessage-deflate; client_no_context_takeover; "
				     "server_no_context_takeover; server_max_window_bits=10; "
				     "client_max_window_bits=11\r\n"));
	/* the server reads the same offer back */
	struct ws_hs_req req;
	ck_assert_int_gt(ws_hs_parse_request(buf_rptr(&b), buf_len(&b) - 1, &req), 0);
	ck_assert(req.upgrade_ok);
	ck_assert_int_eq(req.pmd.enabled, 1);
	ck_assert_int_eq(req.pmd.client_no_context_takeover, 1);
	ck_assert_int_eq(req.pmd.server_no_context_takeover, 1);
	ck_assert_uint_eq(req.pmd.server_max_window_bits, 10);
	ck_assert_uint_eq(req.pmd.client_max_window_bits, 11);
	ck_assert_int_eq(req.pmd.client_bits_offered, 1);
	/* without an offer: no header */
	buf_reset(&b);
	ck_assert_int_eq(ws_hs_request(&b, "h", "/", rfc_key, NULL, 0, NULL), 0);
	buf_putc(&b, '\0');
	ck_assert_ptr_null(strstr(buf_rptr(&b), "Extensions"));
	buf_free(&b);
}
END_TEST

START_TEST(pmd_answers_accepted)
{
	struct wsd_params o, got;
	char err[300];
	offer_default(&o);

	/* the server says nothing: no compression, still a good handshake */
	ck_assert_int_gt(parse_ext("", &o, &got, err), 0);
	ck_assert_int_eq(got.enabled, 0);
	/* an empty header is no extension either */
	ck_assert_int_gt(parse_ext("Sec-WebSocket-Extensions: \r\n", &o, &got, err), 0);
	ck_assert_int_eq(got.enabled, 0);

	ck_assert_int_gt(parse_ext("Sec-WebSocket-Extensions: permessage-deflate\r\n", &o, &got,
				   err), 0);
	ck_assert_int_eq(got.enabled, 1);
	ck_assert_uint_eq(got.server_max_window_bits, 15);
	ck_assert_uint_eq(got.client_max_window_bits, 15);
	ck_assert_int_eq(got.server_no_context_takeover, 0);
	ck_assert_int_eq(got.client_no_context_takeover, 0);

	ck_assert_int_gt(parse_ext("sec-websocket-extensions: Permessage-Deflate ;"
				   "server_no_context_takeover;  client_max_window_bits=10 ;"
				   "server_max_window_bits=\"12\"; client_no_context_takeover\r\n",
				   &o, &got, err), 0);
	ck_assert_int_eq(got.enabled, 1);
	ck_assert_uint_eq(got.server_max_window_bits, 12);
	ck_assert_uint_eq(got.client_max_window_bits, 10);
	ck_assert_int_eq(got.server_no_context_takeover, 1);
	ck_assert_int_eq(got.client_no_context_takeover, 1);

	/* the server may send a smaller window than it was told, 8 included */
	ck_assert_int_gt(parse_ext("Sec-WebSocket-Extensions: permessage-deflate; "
				   "server_max_window_bits=8\r\n", &o, &got, err), 0);
	ck_assert_uint_eq(got.server_max_window_bits, 8);

	/* our own limits hold when the server does not repeat them */
	o.client_max_window_bits = 11;
	o.client_no_context_takeover = 1;
	ck_assert_int_gt(parse_ext("Sec-WebSocket-Extensions: permessage-deflate\r\n", &o, &got,
				   err), 0);
	ck_assert_uint_eq(got.client_max_window_bits, 11);
	ck_assert_int_eq(got.client_no_context_takeover, 1);
	/* an empty list element is allowed by the list rule */
	ck_assert_int_gt(parse_ext("Sec-WebSocket-Extensions: , permessage-deflate ,\r\n", &o,
				   &got, err), 0);
	ck_assert_int_eq(got.enabled, 1);
}
END_TEST

START_TEST(pmd_answers_refused)
{
	struct wsd_params o, got;
	char err[300];

	/* anything, when nothing was offered */
	ck_assert_int_eq(parse_ext("Sec-WebSocket-Extensions: permessage-deflate\r\n", NULL,
				   NULL, err), -EPROTO);
	ck_assert_ptr_nonnull(strstr(err, "did not offer"));
	refuse("Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n", "did not offer");
	refuse("Sec-WebSocket-Extensions: permessage-deflate, foo\r\n", "did not offer: 'foo'");
	refuse("Sec-WebSocket-Extensions: permessage-deflate, permessage-deflate\r\n", "twice");
	refuse("Sec-WebSocket-Extensions: permessage-deflate\r\n"
	       "Sec-WebSocket-Extensions: permessage-deflate\r\n", "twice");
	refuse("Sec-WebSocket-Extensions: permessage-deflate; foo\r\n",
	       "unknown parameter: 'foo'");
	refuse("Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "
	       "server_no_context_takeover\r\n", "repeated parameter");
	refuse("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10; "
	       "server_max_window_bits=10\r\n", "repeated parameter");
	refuse("Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover=1\r\n",
	       "takes no value");
	refuse("Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover=\"\"\r\n",
	       "takes no value");
	refuse("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits\r\n",
	       "8..15");
	refuse("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
	       "8..15");
	static const char *const bad_bits[] = { "7", "16", "010", "09", "1x", "abc", "-9",
						 "\"16\"", "\"\"" };
	for (size_t i = 0; i < sizeof(bad_bits) / sizeof(bad_bits[0]); i++) {
		char line[200];
		snprintf(line, sizeof(line), "Sec-WebSocket-Extensions: permessage-deflate; "
			 "server_max_window_bits=%s\r\n", bad_bits[i]);
		offer_default(&o);
		ck_assert_msg(parse_ext(line, &o, &got, err) == -EPROTO, "accepted %s", line);
	}
	/* malformed lists */
	refuse("Sec-WebSocket-Extensions: permessage-deflate;\r\n", "malformed");
	refuse("Sec-WebSocket-Extensions: permessage-deflate; =3\r\n", "malformed");
	refuse("Sec-WebSocket-Extensions: permessage-deflate; a=\"open\r\n", "malformed");
	refuse("Sec-WebSocket-Extensions: permessage-deflate server_no_context_takeover\r\n",
	       "malformed");
	refuse("Sec-WebSocket-Extensions: ;permessage-deflate\r\n", "malformed");

	/* more than we offered */
	offer_default(&o);
	o.server_max_window_bits = 10;
	ck_assert_int_eq(parse_ext("Sec-WebSocket-Extensions: permessage-deflate; "
				   "server_max_window_bits=12\r\n", &o, &got, err), -EPROTO);
	ck_assert_ptr_nonnull(strstr(err, "server_max_window_bits=12 is more than we offered (10)"));
	offer_default(&o);
	o.client_max_window_bits = 10;
	ck_assert_int_eq(parse_ext("Sec-WebSocket-Extensions: permessage-deflate; "
				   "client_max_window_bits=11\r\n", &o, &got, err), -EPROTO);
	ck_assert_ptr_nonnull(strstr(err, "client_max_window_bits=11 is more than we offered"));
	offer_default(&o);
	o.client_bits_offered = 0;
	ck_assert_int_eq(parse_ext("Sec-WebSocket-Extensions: permessage-deflate; "
				   "client_max_window_bits=11\r\n", &o, &got, err), -EPROTO);
	ck_assert_ptr_nonnull(strstr(err, "did not offer"));
	/* zlib cannot compress with a 256-byte window */
	refuse("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=8\r\n",
	       "zlib cannot compress with a 256-byte window");
	/* a long value is cut, not overflowed */
	char big[600];
	memset(big, 'a', sizeof(big));
	memcpy(big, "Sec-WebSocket-Extensions: permessage-deflate; x=", 48);
	memcpy(big + sizeof(big) - 3, "\r\n", 3);
	refuse(big, "malformed");
}
END_TEST

/* The server side: which offer is taken. */
START_TEST(pmd_offers_read)
{
	static const struct {
		const char *hdrs;
		int enabled;
		unsigned sbits;
	} t[] = {
		{ "", 0, 15 },
		{ "Sec-WebSocket-Extensions: x-foo; a=1, permessage-deflate; "
		  "server_max_window_bits=8, permessage-deflate\r\n", 1, 8 },
		/* an invalid offer is skipped for the next one */
		{ "Sec-WebSocket-Extensions: permessage-deflate; bogus, "
		  "permessage-deflate; server_max_window_bits=9\r\n", 0, 15 },
		{ "Sec-WebSocket-Extensions: x-foo\r\nSec-WebSocket-Extensions: "
		  "permessage-deflate; server_max_window_bits=\"11\"\r\n", 1, 11 },
		{ "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
		  1, 15 },
		{ "Sec-WebSocket-Extensions: ;;;\r\n", 0, 15 },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char r[1024];
		struct ws_hs_req req;
		snprintf(r, sizeof(r), "GET /s HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
			 "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
			 "Sec-WebSocket-Version: 13\r\n%s\r\n", rfc_key, t[i].hdrs);
		ck_assert_int_eq(ws_hs_parse_request(r, strlen(r), &req), (long)strlen(r));
		ck_assert(req.upgrade_ok);
		ck_assert_msg(req.pmd.enabled == t[i].enabled, "case %zu", i);
		ck_assert_uint_eq(req.pmd.server_max_window_bits, t[i].sbits);
	}
}
END_TEST

/* Offer → server reads it → answers it → the client accepts the answer
 * and both sides agree. */
START_TEST(pmd_full_handshake)
{
	for (int m = 0; m < 32; m++) {
		struct wsd_params o, got;
		struct ws_hs_req req;
		struct buf b;
		char err[300];
		offer_default(&o);
		o.client_no_context_takeover = m & 1;
		o.server_no_context_takeover = (m >> 1) & 1;
		o.server_max_window_bits = (m & 4) ? 9 : 15;
		o.client_max_window_bits = (m & 8) ? 12 : 15;
		o.client_bits_offered = !(m & 16);
		if (!o.client_bits_offered)
			o.client_max_window_bits = 15;
		buf_init(&b, 0);
		ck_assert_int_eq(ws_hs_request(&b, "h", "/", rfc_key, NULL, 0, &o), 0);
		ck_assert_int_eq(ws_hs_parse_request(buf_rptr(&b), buf_len(&b), &req),
				 (long)buf_len(&b));
		ck_assert_int_eq(req.pmd.enabled, 1);
		buf_reset(&b);
		ck_assert_int_eq(ws_hs_response_101(&b, req.key, &req.pmd), 0);
		ck_assert_int_eq(ws_hs_parse_response(buf_rptr(&b), buf_len(&b), rfc_key, &o, &got,
						      err, sizeof(err)), (long)buf_len(&b));
		ck_assert_int_eq(got.enabled, 1);
		ck_assert_int_eq(got.client_no_context_takeover, o.client_no_context_takeover);
		ck_assert_int_eq(got.server_no_context_takeover, o.server_no_context_takeover);
		ck_assert_uint_eq(got.server_max_window_bits, o.server_max_window_bits);
		ck_assert_uint_eq(got.client_max_window_bits, o.client_max_window_bits);
		/* and the codecs built from either side's view work together */
		struct wsd cli, srv;
		ck_assert_int_eq(wsd_init(&cli, &got, WSD_CLIENT, 6), 0);
		ck_assert_int_eq(wsd_init(&srv, &req.pmd, WSD_SERVER, 6), 0);
		for (int k = 0; k < 3; k++) {
			struct buf z, out;
			buf_init(&z, 0);
			buf_init(&out, 0);
			ck_assert_int_eq(wsd_deflate(&cli, "[\"1\",\"1\",\"t\",\"e\",{}]", 21, &z), 0);
			ck_assert_int_eq(wsd_inflate(&srv, buf_rptr(&z), buf_len(&z), 100, &out), 0);
			ck_assert_uint_eq(buf_len(&out), 21);
			buf_free(&z);
			buf_free(&out);
		}
		wsd_fini(&cli);
		wsd_fini(&srv);
		/* the 101 without the extension: not negotiated, still fine */
		buf_reset(&b);
		ck_assert_int_eq(ws_hs_response_101(&b, req.key, NULL), 0);
		ck_assert_int_eq(ws_hs_parse_response(buf_rptr(&b), buf_len(&b), rfc_key, &o, &got,
						      err, sizeof(err)), (long)buf_len(&b));
		ck_assert_int_eq(got.enabled, 0);
		buf_free(&b);
	}
}
END_TEST

static Suite *ws_hs_suite(void)
{
	Suite *s = suite_create("ws_hs");
	TCase *tc = tcase_create("handshake");
	tcase_add_test(tc, accept_rfc_vector);
	tcase_add_test(tc, request_format);
	tcase_add_test(tc, response_ok);
	tcase_add_test(tc, response_errors);
	tcase_add_test(tc, request_errors);
	suite_add_tcase(s, tc);
	tc = tcase_create("permessage-deflate");
	tcase_add_test(tc, pmd_offer_format);
	tcase_add_test(tc, pmd_answers_accepted);
	tcase_add_test(tc, pmd_answers_refused);
	tcase_add_test(tc, pmd_offers_read);
	tcase_add_test(tc, pmd_full_handshake);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(ws_hs_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
