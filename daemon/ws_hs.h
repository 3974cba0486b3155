/* ws_hs — the HTTP/1.1 WebSocket upgrade handshake (RFC 6455 section 4),
 * both sides.  wslay does not do it; this is ours.  Pure codec: no sockets.
 *
 * The only extension spoken is permessage-deflate (RFC 7692): the client
 * offers it in Sec-WebSocket-Extensions, the server answers with the
 * parameters it accepts.  Parameters are checked strictly: an answer with an
 * extension or parameter we did not offer, a repeated parameter or a bad
 * value fails the handshake.
 */
#ifndef PHX_WS_HS_H
#define PHX_WS_HS_H

#include <stddef.h>

#include "ws_deflate.h"

struct buf;
struct conf_kv;

#define WS_HS_MAX 16384          /* largest handshake head we accept */
#define WS_KEY_LEN 24            /* base64 of 16 random bytes */
#define WS_ACCEPT_LEN 28         /* base64 of a SHA-1 */

/* A fresh random Sec-WebSocket-Key, NUL-terminated. */
void ws_hs_make_key(char key[WS_KEY_LEN + 1]);
/* Sec-WebSocket-Accept for key: base64(SHA1(key + GUID)), NUL-terminated. */
void ws_hs_accept(const char *key, size_t klen, char out[WS_ACCEPT_LEN + 1]);

/* Client: appends the GET upgrade request for host:port and target (path
 * with query), with extra headers (may be NULL).  host_hdr is the Host header
 * value (host, with :port when not the scheme default).  pmd, when not NULL,
 * is offered as permessage-deflate: its no_context_takeover flags and window
 * bits below 15 as parameters, client_max_window_bits bare when
 * client_bits_offered and the bits are 15. */
int ws_hs_request(struct buf *out, const char *host_hdr, const char *target,
		  const char *key, const struct conf_kv *headers, size_t nheaders,
		  const struct wsd_params *pmd);

/* Client: parses the server's answer in p[0..len).  Returns the length of
 * the head (through the blank line) when a valid 101 answer is complete, 0
 * when more bytes are needed, or a negative errno: -EMSGSIZE (head over
 * WS_HS_MAX), -EPROTO (not 101, missing or wrong Upgrade/Connection/
 * Sec-WebSocket-Accept, malformed, or an extension answer that does not
 * fit the offer).  On error err gets a readable reason that quotes the
 * status line, e.g. "HTTP/1.1 403 Forbidden".
 *
 * offer is what ws_hs_request() offered (NULL: no extension, and any
 * Sec-WebSocket-Extensions in the answer is an error).  On success *got (may
 * be NULL without an offer) holds the negotiated parameters: enabled = 0
 * when the server did not take the offer (messages are not compressed);
 * otherwise the windows and context takeover each side uses.  A window
 * parameter the server leaves out means 15 bits; the client keeps its own
 * offered limits.  The server may not ask client_max_window_bits=8 (zlib
 * cannot compress with a 256-byte window). */
long ws_hs_parse_response(const char *p, size_t len, const char *key,
			  const struct wsd_params *offer, struct wsd_params *got,
			  char *err, size_t errlen);

/* Server: what a parsed upgrade request holds. */
struct ws_hs_req {
	char target[2048];                /* request target: path and query */
	char key[WS_KEY_LEN + 1];
	int upgrade_ok;                   /* Upgrade: websocket, Connection: upgrade, version 13 */
	struct wsd_params pmd;            /* the first valid permessage-deflate
					     offer; enabled = 0: none */
};

/* Server: parses a request head; returns its length, 0 for more, or
 * -EMSGSIZE / -EPROTO. */
long ws_hs_parse_request(const char *p, size_t len, struct ws_hs_req *req);
/* Server: appends "HTTP/1.1 101 Switching Protocols" with the accept key
 * and, when pmd is not NULL and enabled, the permessage-deflate answer:
 * its no_context_takeover flags, server_max_window_bits below 15, and
 * client_max_window_bits below 15 when client_bits_offered. */
int ws_hs_response_101(struct buf *out, const char *key, const struct wsd_params *pmd);
/* Server: appends a plain error answer, e.g. 403 Forbidden. */
int ws_hs_response_error(struct buf *out, int status, const char *reason);

#endif
