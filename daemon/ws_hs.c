#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include "ws_hs.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "b64.h"
#include "buf.h"
#include "conf/conf.h"
#include "util.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0"
#endif

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

void ws_hs_make_key(char key[WS_KEY_LEN + 1])
{
	unsigned char raw[16];
	struct buf b;

	util_random(raw, sizeof(raw));
	buf_init(&b, 0);
	if (b64_encode(&b, raw, sizeof(raw)) == 0 && buf_len(&b) == WS_KEY_LEN)
		memcpy(key, buf_rptr(&b), WS_KEY_LEN);
	else
		memset(key, 'A', WS_KEY_LEN);
	key[WS_KEY_LEN] = '\0';
	buf_free(&b);
}

void ws_hs_accept(const char *key, size_t klen, char out[WS_ACCEPT_LEN + 1])
{
	unsigned char md[SHA_DIGEST_LENGTH];
	char in[128 + sizeof(ws_guid)];
	unsigned mdlen = 0;
	struct buf b;

	if (klen > 128)
		klen = 128; /* a valid key is 24 bytes; longer ones never match */
	memcpy(in, key, klen);
	memcpy(in + klen, ws_guid, sizeof(ws_guid) - 1);
	if (!EVP_Digest(in, klen + sizeof(ws_guid) - 1, md, &mdlen, EVP_sha1(), NULL))
		memset(md, 0, sizeof(md));
	buf_init(&b, 0);
	if (b64_encode(&b, md, sizeof(md)) == 0 && buf_len(&b) == WS_ACCEPT_LEN)
		memcpy(out, buf_rptr(&b), WS_ACCEPT_LEN);
	else
		memset(out, '?', WS_ACCEPT_LEN);
	out[WS_ACCEPT_LEN] = '\0';
	buf_free(&b);
}

int ws_hs_request(struct buf *out, const char *host_hdr, const char *target,
		  const char *key, const struct conf_kv *headers, size_t nheaders)
{
	size_t mark = out->wpos;
	int r = buf_printf(out,
			   "GET %s HTTP/1.1\r\n"
			   "Host: %s\r\n"
			   "Upgrade: websocket\r\n"
			   "Connection: Upgrade\r\n"
			   "Sec-WebSocket-Key: %s\r\n"
			   "Sec-WebSocket-Version: 13\r\n"
			   "User-Agent: phxd/" PACKAGE_VERSION "\r\n",
			   target, host_hdr, key);
	for (size_t i = 0; r == 0 && i < nheaders; i++)
		r = buf_printf(out, "%s: %s\r\n", headers[i].key, headers[i].value);
	if (r == 0)
		r = buf_puts(out, "\r\n");
	if (r < 0)
		out->wpos = mark;
	return r;
}

/* Finds the end of an HTTP head ("\r\n\r\n"); returns its length or 0. */
static size_t head_end(const char *p, size_t len)
{
	for (size_t i = 0; i + 3 < len; i++)
		if (p[i] == '\r' && p[i + 1] == '\n' && p[i + 2] == '\r' && p[i + 3] == '\n')
			return i + 4;
	return 0;
}

/* Iterates header lines after the first line.  Returns 1 with name/value
 * spans, 0 at the end, -1 on a malformed line. */
struct hdr_it {
	const char *p;
	size_t len, pos;
};

static int hdr_next(struct hdr_it *it, const char **name, size_t *nlen,
		    const char **val, size_t *vlen)
{
	const char *p = it->p;
	size_t i = it->pos;
	const char *eol = memmem(p + i, it->len - i, "\r\n", 2);
	if (!eol)
		return -1;
	size_t e = (size_t)(eol - p);
	if (e == i)
		return 0; /* blank line */
	const char *colon = memchr(p + i, ':', e - i);
	if (!colon || colon == p + i)
		return -1;
	*name = p + i;
	*nlen = (size_t)(colon - (p + i));
	for (size_t k = 0; k < *nlen; k++)
		if ((*name)[k] == ' ' || (*name)[k] == '\t')
			return -1;
	size_t vs = (size_t)(colon - p) + 1;
	while (vs < e && (p[vs] == ' ' || p[vs] == '\t'))
		vs++;
	size_t ve = e;
	while (ve > vs && (p[ve - 1] == ' ' || p[ve - 1] == '\t'))
		ve--;
	*val = p + vs;
	*vlen = ve - vs;
	it->pos = e + 2;
	return 1;
}

static int name_is(const char *n, size_t nlen, const char *want)
{
	return strlen(want) == nlen && strncasecmp(n, want, nlen) == 0;
}

/* Does a comma-separated header value contain token (case-insensitive)? */
static int has_token(const char *v, size_t vlen, const char *token)
{
	size_t tl = strlen(token), i = 0;
	while (i < vlen) {
		while (i < vlen && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		size_t s = i;
		while (i < vlen && v[i] != ',')
			i++;
		size_t e = i;
		while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (e - s == tl && strncasecmp(v + s, token, tl) == 0)
			return 1;
	}
	return 0;
}

/* Copies the first line into err, printable ASCII only. */
static void quote_status(const char *p, size_t len, char *err, size_t errlen,
			 const char *what)
{
	size_t n = 0;
	while (n < len && n < 200 && p[n] != '\r' && p[n] != '\n')
		n++;
	char line[201];
	for (size_t i = 0; i < n; i++)
		line[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? p[i] : '?';
	line[n] = '\0';
	snprintf(err, errlen, "%s%s\"%s\"", what, *what ? ": " : "", line);
}

long ws_hs_parse_response(const char *p, size_t len, const char *key,
			  char *err, size_t errlen)
{
	size_t hl = head_end(p, len < WS_HS_MAX ? len : WS_HS_MAX);
	if (!hl) {
		if (len >= WS_HS_MAX) {
			snprintf(err, errlen, "upgrade response head longer than %d bytes", WS_HS_MAX);
			return -EMSGSIZE;
		}
		/* a first line that is clearly not HTTP fails early */
		if (len >= 5 && memcmp(p, "HTTP/", 5) != 0) {
			quote_status(p, len, err, errlen, "not an HTTP response");
			return -EPROTO;
		}
		return 0;
	}
	/* status line: HTTP/1.x SP 3DIGIT SP reason */
	const char *eol = memmem(p, hl, "\r\n", 2);
	size_t sl = (size_t)(eol - p);
	if (sl < 12 || memcmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ' ||
	    p[9] < '0' || p[9] > '9' || p[10] < '0' || p[10] > '9' ||
	    p[11] < '0' || p[11] > '9' || (sl > 12 && p[12] != ' ')) {
		quote_status(p, hl, err, errlen, "malformed status line");
		return -EPROTO;
	}
	int status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
	if (status != 101) {
		quote_status(p, hl, err, errlen,
			     status == 403 ? "server refused the connection" :
			     "server did not switch protocols");
		return -EPROTO;
	}
	char want[WS_ACCEPT_LEN + 1];
	ws_hs_accept(key, strlen(key), want);
	int up = 0, conn = 0, acc = 0;
	struct hdr_it it = { p, hl, sl + 2 };
	const char *n, *v;
	size_t nl, vl;
	int r;
	while ((r = hdr_next(&it, &n, &nl, &v, &vl)) > 0) {
		if (name_is(n, nl, "Upgrade"))
			up = has_token(v, vl, "websocket");
		else if (name_is(n, nl, "Connection"))
			conn = has_token(v, vl, "upgrade");
		else if (name_is(n, nl, "Sec-WebSocket-Accept"))
			acc = (vl == WS_ACCEPT_LEN && memcmp(v, want, WS_ACCEPT_LEN) == 0) ? 1 : -1;
		else if (name_is(n, nl, "Sec-WebSocket-Extensions") && vl > 0) {
			snprintf(err, errlen, "server chose an extension we did not offer");
			return -EPROTO;
		}
	}
	if (r < 0) {
		snprintf(err, errlen, "malformed header in upgrade response");
		return -EPROTO;
	}
	if (!up || !conn) {
		snprintf(err, errlen, "101 response without Upgrade: websocket / Connection: upgrade");
		return -EPROTO;
	}
	if (acc != 1) {
		snprintf(err, errlen, acc ? "Sec-WebSocket-Accept does not match our key" :
			 "101 response without Sec-WebSocket-Accept");
		return -EPROTO;
	}
	return (long)hl;
}

long ws_hs_parse_request(const char *p, size_t len, struct ws_hs_req *req)
{
	size_t hl = head_end(p, len < WS_HS_MAX ? len : WS_HS_MAX);
	if (!hl)
		return len >= WS_HS_MAX ? -EMSGSIZE : 0;
	memset(req, 0, sizeof(*req));
	const char *eol = memmem(p, hl, "\r\n", 2);
	size_t sl = (size_t)(eol - p);
	if (sl < 14 || memcmp(p, "GET ", 4) != 0)
		return -EPROTO;
	const char *sp = memchr(p + 4, ' ', sl - 4);
	if (!sp)
		return -EPROTO;
	size_t tl = (size_t)(sp - (p + 4));
	if (tl == 0 || tl >= sizeof(req->target) || (size_t)(p + sl - sp) != 9 ||
	    memcmp(sp + 1, "HTTP/1.1", 8) != 0)
		return -EPROTO;
	memcpy(req->target, p + 4, tl);
	req->target[tl] = '\0';
	int up = 0, conn = 0, ver = 0;
	struct hdr_it it = { p, hl, sl + 2 };
	const char *n, *v;
	size_t nl, vl;
	int r;
	while ((r = hdr_next(&it, &n, &nl, &v, &vl)) > 0) {
		if (name_is(n, nl, "Upgrade"))
			up = has_token(v, vl, "websocket");
		else if (name_is(n, nl, "Connection"))
			conn = has_token(v, vl, "upgrade");
		else if (name_is(n, nl, "Sec-WebSocket-Version"))
			ver = (vl == 2 && memcmp(v, "13", 2) == 0);
		else if (name_is(n, nl, "Sec-WebSocket-Key") && vl == WS_KEY_LEN) {
			memcpy(req->key, v, WS_KEY_LEN);
			req->key[WS_KEY_LEN] = '\0';
		}
	}
	if (r < 0)
		return -EPROTO;
	req->upgrade_ok = up && conn && ver && req->key[0];
	return (long)hl;
}

int ws_hs_response_101(struct buf *out, const char *key)
{
	char acc[WS_ACCEPT_LEN + 1];
	ws_hs_accept(key, strlen(key), acc);
	return buf_printf(out,
			  "HTTP/1.1 101 Switching Protocols\r\n"
			  "Upgrade: websocket\r\n"
			  "Connection: Upgrade\r\n"
			  "Sec-WebSocket-Accept: %s\r\n\r\n", acc);
}

int ws_hs_response_error(struct buf *out, int status, const char *reason)
{
	return buf_printf(out,
			  "HTTP/1.1 %d %s\r\n"
			  "Content-Type: text/plain\r\n"
			  "Content-Length: %zu\r\n"
			  "Connection: close\r\n\r\n%s\n",
			  status, reason, strlen(reason) + 1, reason);
}
