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

/* A header or parameter name equals want, in any case. */
static int name_is(const char *n, size_t nlen, const char *want)
{
	return strlen(want) == nlen && strncasecmp(n, want, nlen) == 0;
}

/* ------------------------------------------------ Sec-WebSocket-Extensions */

/* RFC 6455 section 9.1:
 *   extension-list = 1#extension
 *   extension      = token *( ";" param )
 *   param          = token [ "=" ( token / quoted-string ) ]
 * The iterator walks one header value: ext_next() gives an element's name,
 * then ext_param() its parameters until it returns 0. */
struct ext_it {
	const char *p;
	size_t len, pos;
};

#define EXT_VAL_MAX 64

/* RFC 9110 tchar */
static int is_tchar(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static void ext_ows(struct ext_it *it)
{
	while (it->pos < it->len && (it->p[it->pos] == ' ' || it->p[it->pos] == '\t'))
		it->pos++;
}

static int ext_at(const struct ext_it *it, char ch)
{
	return it->pos < it->len && it->p[it->pos] == ch;
}

static size_t ext_token(struct ext_it *it, const char **tok)
{
	size_t start = it->pos;
	while (it->pos < it->len && is_tchar(it->p[it->pos]))
		it->pos++;
	*tok = it->p + start;
	return it->pos - start;
}

/* The next element's name: 1, 0 at the end, -1 when malformed.  Empty
 * elements (",,") are skipped, as the list rule allows. */
static int ext_next(struct ext_it *it, const char **name, size_t *nlen)
{
	for (;;) {
		ext_ows(it);
		if (it->pos >= it->len)
			return 0;
		if (!ext_at(it, ','))
			break;
		it->pos++;
	}
	*nlen = ext_token(it, name);
	return *nlen ? 1 : -1;
}

/* A token or quoted-string value into val (NUL-terminated); 0 or -1. */
static int ext_value(struct ext_it *it, char *val, size_t vcap)
{
	size_t n = 0;
	if (!ext_at(it, '"')) {
		const char *t;
		size_t tl = ext_token(it, &t);
		if (tl == 0 || tl >= vcap)
			return -1;
		memcpy(val, t, tl);
		val[tl] = '\0';
		return 0;
	}
	it->pos++;
	for (;;) {
		if (it->pos >= it->len)
			return -1;
		char ch = it->p[it->pos++];
		if (ch == '"')
			break;
		if (ch == '\\') {
			if (it->pos >= it->len)
				return -1;
			ch = it->p[it->pos++];
		}
		/* RFC 9110 quoted-string: HTAB, SP, VCHAR, obs-text; no controls
		 * (they would reach the logs through error messages) */
		if (((unsigned char)ch < 0x20 && ch != '\t') || ch == 0x7f)
			return -1;
		if (n + 1 >= vcap)
			return -1;
		val[n++] = ch;
	}
	val[n] = '\0';
	return 0;
}

/* The current element's next parameter: 1 with its name and value (*has_val
 * 0: none, val ""), 0 when the element ends (the ',' is left to
 * ext_next()), -1 when malformed or the value is too long. */
static int ext_param(struct ext_it *it, const char **name, size_t *nlen, char *val,
		     size_t vcap, int *has_val)
{
	ext_ows(it);
	if (it->pos >= it->len || ext_at(it, ','))
		return 0;
	if (!ext_at(it, ';'))
		return -1;
	it->pos++;
	ext_ows(it);
	*nlen = ext_token(it, name);
	if (*nlen == 0)
		return -1;
	ext_ows(it);
	*has_val = 0;
	val[0] = '\0';
	if (!ext_at(it, '='))
		return 1;
	it->pos++;
	ext_ows(it);
	*has_val = 1;
	return ext_value(it, val, vcap) < 0 ? -1 : 1;
}

/* ------------------------------------------------------ permessage-deflate */

enum {
	PMD_SNCT = 1,   /* server_no_context_takeover */
	PMD_CNCT = 2,   /* client_no_context_takeover */
	PMD_SMWB = 4,   /* server_max_window_bits */
	PMD_CMWB = 8,   /* client_max_window_bits */
};

static const struct {
	const char *name;
	unsigned bit;
} pmd_names[] = {
	{ "server_no_context_takeover", PMD_SNCT },
	{ "client_no_context_takeover", PMD_CNCT },
	{ "server_max_window_bits", PMD_SMWB },
	{ "client_max_window_bits", PMD_CMWB },
};

/* "8".."15" without leading zeros (RFC 7692 section 7.1.2). */
static int pmd_bits(const char *v, unsigned *bits)
{
	unsigned b;
	if (v[0] >= '8' && v[0] <= '9' && v[1] == '\0')
		b = (unsigned)(v[0] - '0');
	else if (v[0] == '1' && v[1] >= '0' && v[1] <= '5' && v[2] == '\0')
		b = 10 + (unsigned)(v[1] - '0');
	else
		return -1;
	*bits = b;
	return 0;
}

/* Applies one parameter to p; *seen collects the ones met.  NULL, or what
 * is wrong with it.  In an answer both window parameters need a value. */
static const char *pmd_param(struct wsd_params *p, unsigned *seen, const char *name,
			     size_t nlen, const char *val, int has_val, int answer)
{
	unsigned bit = 0, b;
	for (size_t i = 0; i < sizeof(pmd_names) / sizeof(pmd_names[0]); i++)
		if (name_is(name, nlen, pmd_names[i].name))
			bit = pmd_names[i].bit;
	if (!bit)
		return "unknown parameter";
	if (*seen & bit)
		return "repeated parameter";
	*seen |= bit;
	switch (bit) {
	case PMD_SNCT:
	case PMD_CNCT:
		if (has_val)
			return "parameter takes no value";
		if (bit == PMD_SNCT)
			p->server_no_context_takeover = 1;
		else
			p->client_no_context_takeover = 1;
		return NULL;
	case PMD_SMWB:
		if (!has_val || pmd_bits(val, &b) < 0)
			return "window bits must be 8..15";
		p->server_max_window_bits = b;
		return NULL;
	default: /* PMD_CMWB */
		p->client_bits_offered = 1;
		if (!has_val && !answer)
			return NULL;
		if (!has_val || pmd_bits(val, &b) < 0)
			return "window bits must be 8..15";
		p->client_max_window_bits = b;
		return NULL;
	}
}

/* Reads the parameters of one permessage-deflate element into *p (from
 * defaults).  0; -1 with a reason in err. */
static int pmd_read(struct ext_it *it, struct wsd_params *p, unsigned *seen, int answer,
		    char *err, size_t errlen)
{
	const char *n;
	size_t nl;
	char val[EXT_VAL_MAX];
	int has_val, r;

	wsd_params_default(p);
	*seen = 0;
	while ((r = ext_param(it, &n, &nl, val, sizeof(val), &has_val)) > 0) {
		const char *why = pmd_param(p, seen, n, nl, val, has_val, answer);
		if (why) {
			snprintf(err, errlen, "permessage-deflate: %s: '%.*s%s%s'", why,
				 (int)(nl > 40 ? 40 : nl), n, has_val ? "=" : "", val);
			/* a quoted value may hold a tab: the reason stays one printable line */
			for (char *c = err; *c; c++)
				if ((unsigned char)*c < 0x20 || *c == 0x7f)
					*c = '?';
			return -1;
		}
	}
	if (r < 0) {
		snprintf(err, errlen, "malformed Sec-WebSocket-Extensions header");
		return -1;
	}
	return 0;
}

/* Checks an answer against our offer and fills in what was negotiated. */
static int pmd_settle(const struct wsd_params *offer, const struct wsd_params *ans,
		      unsigned seen, struct wsd_params *got, char *err, size_t errlen)
{
	if (ans->server_max_window_bits > offer->server_max_window_bits) {
		snprintf(err, errlen, "permessage-deflate: server_max_window_bits=%u is "
			 "more than we offered (%u)", ans->server_max_window_bits,
			 offer->server_max_window_bits);
		return -1;
	}
	if ((seen & PMD_CMWB) && !offer->client_bits_offered) {
		snprintf(err, errlen, "permessage-deflate: client_max_window_bits, "
			 "which we did not offer");
		return -1;
	}
	if ((seen & PMD_CMWB) && ans->client_max_window_bits > offer->client_max_window_bits) {
		snprintf(err, errlen, "permessage-deflate: client_max_window_bits=%u is "
			 "more than we offered (%u)", ans->client_max_window_bits,
			 offer->client_max_window_bits);
		return -1;
	}
	if ((seen & PMD_CMWB) && ans->client_max_window_bits < WSD_DEFLATE_BITS_MIN) {
		snprintf(err, errlen, "permessage-deflate: client_max_window_bits=%u is not "
			 "supported (zlib cannot compress with a 256-byte window)",
			 ans->client_max_window_bits);
		return -1;
	}
	wsd_params_default(got);
	got->enabled = 1;
	got->server_no_context_takeover = ans->server_no_context_takeover;
	got->client_no_context_takeover = ans->client_no_context_takeover ||
					  offer->client_no_context_takeover;
	got->server_max_window_bits = ans->server_max_window_bits;
	got->client_max_window_bits = (seen & PMD_CMWB) ? ans->client_max_window_bits :
							  offer->client_max_window_bits;
	got->client_bits_offered = offer->client_bits_offered;
	return 0;
}

/* One Sec-WebSocket-Extensions header of an answer.  *got->enabled says a
 * permessage-deflate answer was already seen. */
static int pmd_answer_header(const char *v, size_t vl, const struct wsd_params *offer,
			     struct wsd_params *got, char *err, size_t errlen)
{
	struct ext_it it = { v, vl, 0 };
	const char *n;
	size_t nl;
	int r;

	while ((r = ext_next(&it, &n, &nl)) > 0) {
		struct wsd_params ans;
		unsigned seen;
		if (!offer || !name_is(n, nl, "permessage-deflate")) {
			snprintf(err, errlen, "server chose an extension we did not offer: '%.*s'",
				 (int)(nl > 60 ? 60 : nl), n);
			return -1;
		}
		if (got->enabled) {
			snprintf(err, errlen, "server answered permessage-deflate twice");
			return -1;
		}
		if (pmd_read(&it, &ans, &seen, 1, err, errlen) < 0 ||
		    pmd_settle(offer, &ans, seen, got, err, errlen) < 0)
			return -1;
	}
	if (r < 0) {
		snprintf(err, errlen, "malformed Sec-WebSocket-Extensions header");
		return -1;
	}
	return 0;
}

/* One Sec-WebSocket-Extensions header of a request: the first valid
 * permessage-deflate offer goes to *pmd; anything else is skipped. */
static void pmd_offer_header(const char *v, size_t vl, struct wsd_params *pmd)
{
	struct ext_it it = { v, vl, 0 };
	const char *n, *pn;
	size_t nl, pl;
	char val[EXT_VAL_MAX], err[160];
	int has_val;

	while (ext_next(&it, &n, &nl) > 0) {
		struct wsd_params o;
		unsigned seen;
		if (name_is(n, nl, "permessage-deflate") && !pmd->enabled) {
			if (pmd_read(&it, &o, &seen, 0, err, sizeof(err)) < 0)
				return;
			*pmd = o;
			pmd->enabled = 1;
			continue;
		}
		int r;
		while ((r = ext_param(&it, &pn, &pl, val, sizeof(val), &has_val)) > 0)
			;
		if (r < 0)
			return;
	}
}

/* The extension's parameters as a header value (after the name). */
static int pmd_format(struct buf *out, const struct wsd_params *p, int offer)
{
	int r = buf_puts(out, "permessage-deflate");
	if (r == 0 && p->client_no_context_takeover)
		r = buf_puts(out, "; client_no_context_takeover");
	if (r == 0 && p->server_no_context_takeover)
		r = buf_puts(out, "; server_no_context_takeover");
	if (r == 0 && p->server_max_window_bits < WSD_BITS_MAX)
		r = buf_printf(out, "; server_max_window_bits=%u", p->server_max_window_bits);
	if (r == 0 && p->client_bits_offered && p->client_max_window_bits < WSD_BITS_MAX)
		r = buf_printf(out, "; client_max_window_bits=%u", p->client_max_window_bits);
	else if (r == 0 && p->client_bits_offered && offer)
		r = buf_puts(out, "; client_max_window_bits");
	return r;
}

/* --------------------------------------------------------------- requests */

int ws_hs_request(struct buf *out, const char *host_hdr, const char *target,
		  const char *key, const struct conf_kv *headers, size_t nheaders,
		  const struct wsd_params *pmd)
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
	if (r == 0 && pmd) {
		r = buf_puts(out, "Sec-WebSocket-Extensions: ");
		if (r == 0)
			r = pmd_format(out, pmd, 1);
		if (r == 0)
			r = buf_puts(out, "\r\n");
	}
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
			  const struct wsd_params *offer, struct wsd_params *got,
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
	struct wsd_params neg;
	const char *n, *v;
	size_t nl, vl;
	int r;
	wsd_params_default(&neg);
	while ((r = hdr_next(&it, &n, &nl, &v, &vl)) > 0) {
		if (name_is(n, nl, "Upgrade"))
			up = has_token(v, vl, "websocket");
		else if (name_is(n, nl, "Connection"))
			conn = has_token(v, vl, "upgrade");
		else if (name_is(n, nl, "Sec-WebSocket-Accept"))
			acc = (vl == WS_ACCEPT_LEN && memcmp(v, want, WS_ACCEPT_LEN) == 0) ? 1 : -1;
		else if (name_is(n, nl, "Sec-WebSocket-Extensions") &&
			 pmd_answer_header(v, vl, offer, &neg, err, errlen) < 0)
			return -EPROTO;
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
	if (got)
		*got = neg;
	return (long)hl;
}

long ws_hs_parse_request(const char *p, size_t len, struct ws_hs_req *req)
{
	size_t hl = head_end(p, len < WS_HS_MAX ? len : WS_HS_MAX);
	if (!hl)
		return len >= WS_HS_MAX ? -EMSGSIZE : 0;
	memset(req, 0, sizeof(*req));
	wsd_params_default(&req->pmd);
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
		} else if (name_is(n, nl, "Sec-WebSocket-Extensions"))
			pmd_offer_header(v, vl, &req->pmd);
	}
	if (r < 0)
		return -EPROTO;
	req->upgrade_ok = up && conn && ver && req->key[0];
	return (long)hl;
}

int ws_hs_response_101(struct buf *out, const char *key, const struct wsd_params *pmd)
{
	char acc[WS_ACCEPT_LEN + 1];
	size_t mark = buf_len(out);
	ws_hs_accept(key, strlen(key), acc);
	int r = buf_printf(out,
			   "HTTP/1.1 101 Switching Protocols\r\n"
			   "Upgrade: websocket\r\n"
			   "Connection: Upgrade\r\n"
			   "Sec-WebSocket-Accept: %s\r\n", acc);
	if (r == 0 && pmd && pmd->enabled) {
		r = buf_puts(out, "Sec-WebSocket-Extensions: ");
		if (r == 0)
			r = pmd_format(out, pmd, 0);
		if (r == 0)
			r = buf_puts(out, "\r\n");
	}
	if (r == 0)
		r = buf_puts(out, "\r\n");
	if (r < 0)
		buf_truncate(out, mark);
	return r;
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
