/* Unit tests: WebSocket upgrade handshake (daemon/ws_hs.c), URL parsing is
 * in unit_conf. */
#include <check.h>
#include <errno.h>
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
				       rfc_key, NULL, 0), 0);
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
	return ws_hs_parse_response(resp, strlen(resp), rfc_key, err, 300);
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
		ck_assert_int_eq(ws_hs_parse_response(r, i, rfc_key, err, sizeof(err)), 0);
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
	ck_assert_int_eq(ws_hs_parse_response(big, n, rfc_key, err, sizeof(err)), -EMSGSIZE);
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
	ck_assert_int_eq(ws_hs_response_101(&b, rfc_key), 0);
	buf_putc(&b, '\0');
	char err[300];
	ck_assert_int_eq(ws_hs_parse_response(buf_rptr(&b), buf_len(&b) - 1, rfc_key, err,
					      sizeof(err)), (long)buf_len(&b) - 1);
	buf_reset(&b);
	ck_assert_int_eq(ws_hs_response_error(&b, 403, "Forbidden"), 0);
	buf_putc(&b, '\0');
	ck_assert(strncmp(buf_rptr(&b), "HTTP/1.1 403 Forbidden\r\n", 24) == 0);
	buf_free(&b);
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
