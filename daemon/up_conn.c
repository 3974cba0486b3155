#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "up_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "conf/conf.h"
#include "json.h"
#include "log.h"
#include "phx_msg.h"
#include "resolve.h"
#include "util.h"
#include "ws_frame.h"
#include "ws_hs.h"

/* rbuf is one fixed chunk: a read takes what fits, frames whole in it are
 * handled in place, a larger one streams through it into up->msg.  So it
 * never grows past this while the connection lives (64 KiB reads used to
 * leave 128 KiB behind), and hibernation gives it back. */
#define UP_RBUF_CHUNK 16384
#define UP_READS_MAX 4          /* full reads in a row (64 KiB) before the loop gets a turn */
/* what the wslay context (sending side: two 4 KiB buffers and queues) costs,
 * for up_conn_hibernate's answer: wslay's structs are opaque */
#define UP_WSLAY_BYTES 8704
#define UP_WBUF_MAX (1u << 20)  /* bytes staged for the socket; wslay queues the rest */
#define UP_FRAME_KEEP 65536     /* a larger encode scratch is freed after use */

static void up_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void up_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void up_hb_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void up_flush_cb(struct ev_loop *loop, ev_prepare *w, int revents);
static void up_fail(struct up_conn *up, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void up_fail_later(struct up_conn *up, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void up_update_io(struct up_conn *up);
static void up_kick_cb(struct ev_loop *loop, ev_idle *w, int revents);

/* Asks for a flush before the loop blocks.  A prepare watcher started from
 * another prepare callback runs only in the next iteration, so an idle
 * watcher keeps the loop from blocking until it has. */
static void up_schedule_flush(struct up_conn *up)
{
	if (!ev_is_active(&up->flush))
		ev_prepare_start(up->loop, &up->flush);
	if (!ev_is_active(&up->kick))
		ev_idle_start(up->loop, &up->kick);
}

/* ------------------------------------------------------------------ TLS */

static void tls_errstr(char *out, size_t n)
{
	unsigned long e = ERR_get_error();
	if (!e) {
		snprintf(out, n, "unknown TLS error");
		return;
	}
	ERR_error_string_n(e, out, n);
	ERR_clear_error();
}

SSL_CTX *up_tls_ctx_new(const struct conf_endpoint *conf, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		tls_errstr(err, errlen);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
			 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
	if (conf->tls_verify) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		int ok = conf->ca_file ?
			SSL_CTX_load_verify_locations(ctx, conf->ca_file, NULL) :
			SSL_CTX_set_default_verify_paths(ctx);
		if (!ok) {
			char e[200];
			tls_errstr(e, sizeof(e));
			snprintf(err, errlen, "cannot load CA certificates%s%s: %s",
				 conf->ca_file ? " from " : "",
				 conf->ca_file ? conf->ca_file : "", e);
			SSL_CTX_free(ctx);
			return NULL;
		}
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
		log_warn("endpoint '%s': tls_verify = false: the server's certificate "
			 "is NOT checked; anyone on the path can read and change the traffic",
			 conf->name);
	}
	return ctx;
}

static int is_ip_literal(const char *host)
{
	unsigned char tmp[16];
	return inet_pton(AF_INET, host, tmp) == 1 || inet_pton(AF_INET6, host, tmp) == 1;
}

static int up_tls_begin(struct up_conn *up)
{
	up->ssl = SSL_new(up->ssl_ctx);
	if (!up->ssl || !SSL_set_fd(up->ssl, up->fd))
		return -1;
	int ip = is_ip_literal(up->url.host);
	if (!ip)
		SSL_set_tlsext_host_name(up->ssl, up->url.host);
	if (up->conf->tls_verify) {
		X509_VERIFY_PARAM *vp = SSL_get0_param(up->ssl);
		X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, up->url.host) :
			      X509_VERIFY_PARAM_set1_host(vp, up->url.host, 0);
		if (!ok)
			return -1;
	}
	SSL_set_connect_state(up->ssl);
	return 0;
}

/* ------------------------------------------------------------ transport */

/* A TLS call that must wait: records which event it waits for, sets
 * errno = EAGAIN and returns 1; 0 for any other outcome. */
static int tls_would_block(struct up_conn *up, int err)
{
	if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE)
		return 0;
	up->tls_want = err == SSL_ERROR_WANT_READ ? EV_READ : EV_WRITE;
	errno = EAGAIN;
	return 1;
}

/* Reads into p; returns bytes, 0 at EOF, -1 with errno (EAGAIN when it
 * would block; up->tls_want says which event TLS waits for). */
static ssize_t up_read(struct up_conn *up, void *p, size_t n)
{
	if (!up->ssl) {
		ssize_t r;
		do
			r = read(up->fd, p, n);
		while (r < 0 && errno == EINTR);
		return r;
	}
	int r = SSL_read(up->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
	if (r > 0)
		return r;
	int err = SSL_get_error(up->ssl, r);
	if (tls_would_block(up, err))
		return -1;
	switch (err) {
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		if (errno == 0)
			return 0; /* EOF without close_notify */
		return -1;
	default: {
		char e[200];
#ifdef SSL_R_UNEXPECTED_EOF_WHILE_READING
		if (ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
			ERR_clear_error();
			return 0; /* the peer closed without close_notify */
		}
#endif
		tls_errstr(e, sizeof(e));
		snprintf(up->last_error, sizeof(up->last_error), "TLS: %s", e);
		errno = EPROTO;
		return -1;
	}
	}
}

static ssize_t up_write(struct up_conn *up, const void *p, size_t n)
{
	if (!up->ssl) {
		ssize_t r;
		do
			r = send(up->fd, p, n, MSG_NOSIGNAL);
		while (r < 0 && errno == EINTR);
		return r;
	}
	int r = SSL_write(up->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
	if (r > 0)
		return r;
	if (tls_would_block(up, SSL_get_error(up->ssl, r)))
		return -1;
	ERR_clear_error();
	if (errno == 0)
		errno = EPIPE;
	return -1;
}

/* Writes what wbuf holds; 0 (all or would block) or -1 on error. */
static int up_write_out(struct up_conn *up)
{
	while (buf_len(&up->wbuf) > 0) {
		ssize_t w = up_write(up, buf_rptr(&up->wbuf), buf_len(&up->wbuf));
		if (w < 0)
			return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
		up->bytes_out += (uint64_t)w;
		up->last_active = ev_now(up->loop);
		buf_consume(&up->wbuf, (size_t)w);
	}
	return 0;
}

/* Reads once into rbuf, up to its chunk: >0 bytes, 0 EOF, -1 error, -2
 * would block.  *full (may be NULL) is set when the read filled the room it
 * had, so more may be waiting. */
static ssize_t up_fill(struct up_conn *up, int *full)
{
	size_t len = buf_len(&up->rbuf);
	/* a partial frame waiting in rbuf is shorter than the chunk (larger
	 * ones stream into msg), so the room tops it up to one chunk; only the
	 * upgrade response may ask for more */
	size_t room = len < UP_RBUF_CHUNK ? UP_RBUF_CHUNK - len : UP_RBUF_CHUNK;
	char *w = buf_reserve(&up->rbuf, room);
	if (!w)
		return -1;
	ssize_t r = up_read(up, w, room);
	if (full)
		*full = r == (ssize_t)room;
	if (r > 0) {
		buf_commit(&up->rbuf, (size_t)r);
		up->bytes_in += (uint64_t)r;
		up->last_active = ev_now(up->loop);
		return r;
	}
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return -2;
	return r;
}

/* ------------------------------------------------------------ wslay glue */

/* wslay only sends (up_recv reads): nothing calls wslay_event_recv, so its
 * read side never changes state and want_read is not asked. */
static ssize_t ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *p, size_t n,
			  int flags, void *user)
{
	(void)p;
	(void)n;
	(void)flags;
	(void)user;
	wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
	return -1;
}

static ssize_t ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *p, size_t n,
			  int flags, void *user)
{
	struct up_conn *up = user;
	(void)flags;
	size_t room = buf_len(&up->wbuf) < UP_WBUF_MAX ? UP_WBUF_MAX - buf_len(&up->wbuf) : 0;
	if (room == 0) {
		/* stage full: push bytes to the socket, then take more */
		if (up_write_out(up) < 0) {
			snprintf(up->last_error, sizeof(up->last_error), "write: %s", strerror(errno));
			wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
			return -1;
		}
		room = buf_len(&up->wbuf) < UP_WBUF_MAX ? UP_WBUF_MAX - buf_len(&up->wbuf) : 0;
		if (room == 0) {
			wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
			return -1;
		}
	}
	if (n > room)
		n = room;
	if (buf_append(&up->wbuf, p, n) < 0) {
		wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
		return -1;
	}
	return (ssize_t)n;
}

static int ws_genmask_cb(wslay_event_context_ptr ctx, uint8_t *p, size_t n, void *user)
{
	/* Masks need not be secret from us, only unpredictable to the page's
	 * scripts in a browser; a fast PRNG seeded from getrandom is enough. */
	static uint64_t s;
	(void)ctx;
	(void)user;
	if (!s) {
		util_random(&s, sizeof(s));
		s |= 1;
	}
	for (size_t i = 0; i < n; i++) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		p[i] = (uint8_t)(s >> 24);
	}
	return 0;
}

/* The wslay context, made on first use (after up_open, or again after
 * hibernation); NULL when memory is short. */
static wslay_event_context_ptr up_wslay(struct up_conn *up)
{
	static const struct wslay_event_callbacks cbs = {
		.recv_callback = ws_recv_cb,
		.send_callback = ws_send_cb,
		.genmask_callback = ws_genmask_cb,
	};
	if (up->ws)
		return up->ws;
	if (wslay_event_context_client_init(&up->ws, &cbs, up) != 0) {
		up->ws = NULL;
		return NULL;
	}
	if (up->pmd.enabled)
		wslay_event_config_set_allowed_rsv_bits(up->ws, WSLAY_RSV1_BIT);
	return up->ws;
}

/* 1 while wslay holds frames to send (a context not made yet holds none). */
static int up_ws_want_write(struct up_conn *up)
{
	return up->ws && wslay_event_want_write(up->ws);
}

/* ------------------------------------------------------------ reading */

/* Stops reading and answers a broken stream with a close frame (code per
 * RFC 6455 7.4.1); the connection goes down once the close is written, with
 * the reason logged (up_update_io).  Reading stops at once. */
/* Formats the reason into last_error (the arguments may point at it). */
static void up_set_error_v(struct up_conn *up, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
static void up_set_error_v(struct up_conn *up, const char *fmt, va_list ap)
{
	char msg[sizeof(up->last_error)];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	memcpy(up->last_error, msg, sizeof(msg));
}

static void up_proto_fail(struct up_conn *up, uint16_t code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void up_proto_fail(struct up_conn *up, uint16_t code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	up_set_error_v(up, fmt, ap);
	va_end(ap);
	up->rd_shut = 1;
	wslay_event_context_ptr ws = up_wslay(up);
	if (!ws || wslay_event_queue_close(ws, code, NULL, 0) != 0)
		up_fail(up, "%s", up->last_error); /* no close frame possible: just go */
}

/* Inflates a message that came with RSV1 into up->zin and points *msg at
 * it; on failure the connection is failed with the reason and reading
 * stops.  0 or a negative errno.  (UTF-8 of text is checked by the caller,
 * which knows whether the JSON decoder did it already.) */
static int up_inflate(struct up_conn *up, unsigned opcode, const uint8_t **msg, size_t *len)
{
	const char *kind = opcode == WS_OP_TEXT ? "text" : "binary";
	buf_reset(&up->zin);
	int r = wsd_inflate(&up->wsd, *msg, *len, up->conf->max_frame, &up->zin);
	if (r == 0) {
		*msg = (const uint8_t *)buf_rptr(&up->zin);
		*len = buf_len(&up->zin);
		if (!*msg)
			*msg = (const uint8_t *)"";
		return 0;
	}
	up->rd_shut = 1;
	switch (r) {
	case -EMSGSIZE:
		up_fail(up, "compressed %s message of %zu bytes inflates past max_frame "
			"(%zu bytes)", kind, *len, up->conf->max_frame);
		break;
	case -EPROTO:
		up_fail(up, "corrupt compressed %s message from the server: %s", kind,
			up->wsd.err);
		break;
	default:
		up_fail(up, "inflating a %s message: %s", kind, strerror(-r));
		break;
	}
	return r;
}

/* A whole text or binary message, uncompressed; rsv1: it came compressed. */
static void up_handle_msg(struct up_conn *up, unsigned opcode, int rsv1,
			  const uint8_t *msg, size_t len)
{
	struct phx_msg m;
	int text = opcode == WS_OP_TEXT;
	if (rsv1 && up_inflate(up, opcode, &msg, &len) < 0)
		return;
	int r = text ? phx_decode_json((const char *)msg, len, &m) :
		       phx_decode_binary(msg, len, &m);
	up->frames_in++;
	up->payload_in += len;
	if (r < 0) {
		/* A decoded text message is valid UTF-8 (the JSON decoder checks
		 * every string and the rest is ASCII), so the check RFC 6455
		 * asks of text messages is needed only here. */
		if (text && !utf8_valid((const char *)msg, len)) {
			up->rd_shut = 1;
			if (rsv1)
				up_fail(up, "compressed text message from the server is not "
					"valid UTF-8");
			else
				up_proto_fail(up, 1007, "text message from the server is not "
					      "valid UTF-8");
			return;
		}
		log_warn("endpoint '%s': ignoring a malformed %s frame of %zu bytes",
			 up->conf->name, text ? "text" : "binary", len);
		return;
	}
	if (m.is_reply && m.topic_len == 7 && memcmp(m.topic, "phoenix", 7) == 0) {
		if (up->hb_pending && m.has_ref && strcmp(m.ref, up->hb_ref) == 0)
			up->hb_pending = 0;
		return;
	}
	up->cb->on_message(up, &m);
}

/* A whole control frame (payload p[0..n), n <= 125). */
static void up_handle_ctrl(struct up_conn *up, unsigned opcode, const uint8_t *p, size_t n)
{
	wslay_event_context_ptr ws;
	uint16_t code;
	switch (opcode) {
	case WS_OP_PING: {
		struct wslay_event_msg pong = { WSLAY_PONG, p, n };
		ws = up_wslay(up);
		if (!ws) {
			up_fail(up, "out of memory");
			return;
		}
		/* NO_MORE_MSG: a close is queued already; no pong after it */
		int r = wslay_event_queue_msg(ws, &pong);
		if (r != 0 && r != WSLAY_ERR_NO_MORE_MSG)
			up_fail(up, "cannot queue a pong");
		return;
	}
	case WS_OP_PONG:
		return;
	case WS_OP_CLOSE:
		if (!ws_frame_close_valid(p, n, &code)) {
			int utf8 = n > 2 && !utf8_valid((const char *)p + 2, n - 2);
			up_proto_fail(up, utf8 ? 1007 : 1002, "invalid close frame from the server%s",
				      utf8 ? " (reason not UTF-8)" : "");
			return;
		}
		snprintf(up->last_error, sizeof(up->last_error),
			 "server closed the WebSocket (code %u)", (unsigned)code);
		/* echo it (code and reason), then go once it is written */
		up->rd_shut = 1;
		ws = up_wslay(up);
		if (!ws || wslay_event_queue_close(ws, code == 1005 ? 0 : code,
						    n > 2 ? p + 2 : NULL, n > 2 ? n - 2 : 0) != 0)
			up_fail(up, "%s", up->last_error);
		return;
	default:
		return;
	}
}

/* The message in up->msg is whole: hand it on, then forget it. */
static void up_msg_done(struct up_conn *up)
{
	up->rd_in_msg = 0;
	up_handle_msg(up, up->rd_op, up->rd_rsv1, (const uint8_t *)buf_rptr(&up->msg),
		      buf_len(&up->msg));
	buf_reset(&up->msg);
	if (up->msg.cap > UP_FRAME_KEEP)
		buf_free(&up->msg);
	if (up->zin.cap > UP_FRAME_KEEP)
		buf_free(&up->zin);
}

/* 1 while reading may go on: the connection is open and not failing. */
static int up_reading(const struct up_conn *up)
{
	return up->state == UP_OPEN && !up->closing && !up->rd_shut;
}

/* Handles every whole frame in rbuf, in order; what is left is the start
 * of a frame (shorter than the chunk).  Frames whole in rbuf are handled
 * where they lie; a frame of a fragmented message, or one larger than the
 * chunk, is copied into up->msg. */
static void up_parse(struct up_conn *up)
{
	while (up_reading(up)) {
		const uint8_t *p = (const uint8_t *)buf_rptr(&up->rbuf);
		size_t n = buf_len(&up->rbuf);
		if (up->rd_frame) {
			/* the payload of a data frame going into msg */
			size_t k = up->rd_left < n ? (size_t)up->rd_left : n;
			if (k && buf_append(&up->msg, p, k) < 0) {
				up_fail(up, "out of memory");
				return;
			}
			buf_consume(&up->rbuf, k);
			up->rd_left -= k;
			if (up->rd_left)
				return; /* rbuf is empty: read more */
			up->rd_frame = 0;
			if (up->rd_fin)
				up_msg_done(up);
			continue;
		}
		struct ws_frame f;
		unsigned flags = (up->rd_in_msg ? WS_FRAME_IN_MSG : 0) |
				 (up->pmd.enabled ? WS_FRAME_RSV1_OK : 0);
		long h = ws_frame_parse(p, n, flags, &f);
		if (h == 0)
			return;
		if (h < 0) {
			up_proto_fail(up, f.close_code, "WebSocket protocol error: %s", f.why);
			return;
		}
		if (f.opcode & 8) {
			if (n - (size_t)h < f.len)
				return; /* at most 125 bytes more: they fit */
			buf_consume(&up->rbuf, (size_t)h + (size_t)f.len);
			/* consumed, not moved: the bytes stay where they are until
			 * the next read */
			up_handle_ctrl(up, f.opcode, p + h, (size_t)f.len);
			continue;
		}
		uint64_t total = (up->rd_in_msg ? buf_len(&up->msg) : 0) + f.len;
		if (total > up->conf->max_frame) {
			up_proto_fail(up, 1009, "message from the server larger than max_frame "
				      "(%zu bytes)", up->conf->max_frame);
			return;
		}
		if (!up->rd_in_msg && f.fin && n - (size_t)h >= f.len) {
			/* the common case: a whole message, handled in place */
			buf_consume(&up->rbuf, (size_t)h + (size_t)f.len);
			up_handle_msg(up, f.opcode, (f.rsv & WS_RSV1) != 0, p + h, (size_t)f.len);
			continue;
		}
		if (!up->rd_in_msg && f.fin && (uint64_t)h + f.len <= UP_RBUF_CHUNK)
			return; /* fits the chunk: wait for the rest, then in place */
		if (!up->rd_in_msg) {
			up->rd_op = f.opcode;
			up->rd_rsv1 = (f.rsv & WS_RSV1) != 0;
			buf_reset(&up->msg);
		}
		/* open until up_msg_done; a max_frame check has bounded msg */
		up->rd_in_msg = 1;
		up->rd_frame = 1;
		up->rd_fin = f.fin;
		up->rd_left = f.len;
		buf_consume(&up->rbuf, (size_t)h);
	}
}

/* Reads what the socket has (a chunk at a time, again while a read fills
 * its room or TLS holds decrypted bytes) and handles every whole frame.
 * 0, or -1 when the connection failed (up_fail called). */
static int up_recv(struct up_conn *up)
{
	for (int reads = 0; up_reading(up); reads++) {
		int full = 0;
		ssize_t r = up_fill(up, &full);
		if (r == -2)
			return 0;
		if (r <= 0) {
			if (!(r < 0 && errno == EPROTO && up->ssl)) /* else: TLS said why */
				snprintf(up->last_error, sizeof(up->last_error), "%s",
					 r == 0 ? "connection closed by server" : strerror(errno));
			up_fail(up, "%s", up->last_error);
			return -1;
		}
		up_parse(up);
		int pending = up->ssl && SSL_pending(up->ssl) > 0;
		if (!pending && (!full || reads + 1 >= UP_READS_MAX))
			return 0; /* a short read: the socket is drained */
	}
	return 0;
}

/* ---------------------------------------------------------- lifecycle */

static void up_teardown(struct up_conn *up)
{
	res_cancel(up->res);
	up->res = NULL;
	if (up->addrs) {
		freeaddrinfo(up->addrs);
		up->addrs = up->addr_next = NULL;
	}
	ev_io_stop(up->loop, &up->io);
	ev_timer_stop(up->loop, &up->timer);
	ev_timer_stop(up->loop, &up->hb_timer);
	ev_prepare_stop(up->loop, &up->flush);
	ev_idle_stop(up->loop, &up->kick);
	if (up->ws) {
		wslay_event_context_free(up->ws);
		up->ws = NULL;
	}
	if (up->ssl) {
		SSL_free(up->ssl);
		up->ssl = NULL;
	}
	if (up->fd >= 0) {
		close(up->fd);
		up->fd = -1;
	}
	buf_free(&up->rbuf);
	buf_free(&up->wbuf);
	buf_free(&up->frame);
	buf_free(&up->zin);
	buf_free(&up->zout);
	buf_free(&up->msg);
	up->rd_frame = up->rd_fin = up->rd_in_msg = up->rd_shut = 0;
	up->rd_left = 0;
	wsd_fini(&up->wsd);
	up->pmd.enabled = 0;
	up->hb_pending = 0;
	up->tls_want = 0;
	up->closing = 0;
}

static void up_schedule_reconnect(struct up_conn *up)
{
	if (!up->cb->wanted(up)) {
		up->state = UP_IDLE;
		return;
	}
	unsigned ms = backoff_next(&up->reconnect_bo, util_rand32());
	up->state = UP_WAIT;
	log_info("endpoint '%s': reconnecting in %u ms", up->conf->name, ms);
	ev_timer_set(&up->timer, ms / 1000.0, 0.);
	ev_timer_start(up->loop, &up->timer);
}

/* The one way out of a live or half-made connection. */
static void up_down(struct up_conn *up, const char *reason)
{
	int was_open = up->state == UP_OPEN;
	if (reason != up->last_error)
		snprintf(up->last_error, sizeof(up->last_error), "%s", reason);
	if (was_open) {
		up->disconnects++;
		log_warn("endpoint '%s': connection lost: %s", up->conf->name, up->last_error);
	} else if (strcmp(up->last_error, up->last_logged) != 0) {
		/* the same failure again is not news: logged at info level */
		log_warn("endpoint '%s': connect failed: %s", up->conf->name, up->last_error);
	} else {
		log_info("endpoint '%s': connect failed again: %s", up->conf->name, up->last_error);
	}
	memcpy(up->last_logged, up->last_error, sizeof(up->last_logged));
	up_teardown(up);
	up->state = UP_IDLE;
	up->cb->on_down(up, up->last_error);
	if (up->state == UP_IDLE)
		up_schedule_reconnect(up);
}

static void up_fail(struct up_conn *up, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	up_set_error_v(up, fmt, ap);
	va_end(ap);
	if (up->in_recv) {
		up->closing = 1; /* finish once wslay returns */
		return;
	}
	up_down(up, up->last_error);
}

/* Fails the connection from the loop (the flush watcher), never from
 * inside the caller: for failures on the owner's send path. */
static void up_fail_later(struct up_conn *up, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	up_set_error_v(up, fmt, ap);
	va_end(ap);
	up->closing = 1;
	up_schedule_flush(up);
}

static void up_set_events(struct up_conn *up, int ev)
{
	if (ev == 0) {
		ev_io_stop(up->loop, &up->io);
		return;
	}
	if (ev_is_active(&up->io) && (up->io.events & (EV_READ | EV_WRITE)) == ev)
		return;
	ev_io_stop(up->loop, &up->io);
	ev_io_set(&up->io, up->fd, ev);
	ev_io_start(up->loop, &up->io);
}

struct up_tune {
	char *why;
	size_t len, off;
	int failed;
};

/* One integer socket option; a refusal is counted and named in t->why. */
static void up_setopt(struct up_tune *t, int fd, int level, int opt, const char *name, int val)
{
	if (setsockopt(fd, level, opt, &val, sizeof(val)) == 0)
		return;
	int e = errno;
	t->failed++;
	if (t->off + 1 >= t->len)
		return;
	int n = snprintf(t->why + t->off, t->len - t->off, "%s%s=%d: %s", t->off ? ", " : "",
			 name, val, strerror(e));
	if (n > 0)
		t->off += (size_t)n < t->len - t->off ? (size_t)n : t->len - t->off - 1;
}

/* ms → whole seconds, rounded up, for the TCP_KEEP* options. */
static int up_secs(unsigned ms)
{
	return (int)((ms + 999u) / 1000u);
}

int up_tcp_tune(int fd, const struct conf_endpoint *conf, char *why, size_t whylen)
{
	struct up_tune t = { why, whylen, 0, 0 };

	if (whylen)
		why[0] = '\0';
	up_setopt(&t, fd, IPPROTO_TCP, TCP_NODELAY, "TCP_NODELAY", conf->tcp_nodelay ? 1 : 0);
	up_setopt(&t, fd, SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE", conf->tcp_keepalive ? 1 : 0);
	if (conf->tcp_keepalive) {
		up_setopt(&t, fd, IPPROTO_TCP, TCP_KEEPIDLE, "TCP_KEEPIDLE",
			  up_secs(conf->tcp_keepidle_ms));
		up_setopt(&t, fd, IPPROTO_TCP, TCP_KEEPINTVL, "TCP_KEEPINTVL",
			  up_secs(conf->tcp_keepintvl_ms));
		up_setopt(&t, fd, IPPROTO_TCP, TCP_KEEPCNT, "TCP_KEEPCNT", (int)conf->tcp_keepcnt);
	}
	/* sizes are at most 256 MiB (conf), so they fit an int */
	if (conf->tcp_sndbuf)
		up_setopt(&t, fd, SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF", (int)conf->tcp_sndbuf);
	if (conf->tcp_rcvbuf)
		up_setopt(&t, fd, SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF", (int)conf->tcp_rcvbuf);
	return t.failed;
}

/* Tunes a fresh socket; a refusal is logged once per connection object and
 * never fails the connection. */
static void up_tune_socket(struct up_conn *up, int fd)
{
	char why[512];
	if (up_tcp_tune(fd, up->conf, why, sizeof(why)) == 0 || up->tune_warned)
		return;
	up->tune_warned = 1;
	log_warn("endpoint '%s': TCP options not applied: %s (connecting without them)",
		 up->conf->name, why);
}

/* Connects to the next address that takes a connect(); on none, fails the
 * attempt with the last reason. */
static void up_connect_next(struct up_conn *up, const char *why)
{
	char last[512];
	snprintf(last, sizeof(last), "%s", why ? why : "no address");
	while (up->addr_next) {
		struct addrinfo *ai = up->addr_next;
		up->addr_next = ai->ai_next;
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
				ai->ai_protocol);
		if (fd < 0) {
			snprintf(last, sizeof(last), "socket: %s", strerror(errno));
			continue;
		}
		up_tune_socket(up, fd); /* before connect: buffer sizes shape the handshake */
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS) {
			up->fd = fd;
			up_set_events(up, EV_WRITE);
			return;
		}
		snprintf(last, sizeof(last), "connect to %s:%s: %s", up->url.host,
			 up->url.port, strerror(errno));
		close(fd);
	}
	up_fail(up, "%s", last);
}

/* The addresses to try, in getaddrinfo's order (owned from now on). */
static void up_connect_addrs(struct up_conn *up, struct addrinfo *addrs)
{
	if (up->addrs)
		freeaddrinfo(up->addrs);
	up->addrs = up->addr_next = addrs;
	up_connect_next(up, NULL);
}

static void up_resolved(void *arg, struct addrinfo *res, int err)
{
	struct up_conn *up = arg;
	up->res = NULL;
	if (!res) {
		up_fail(up, "cannot resolve '%s': %s", up->url.host, gai_strerror(err));
		return;
	}
	up_connect_addrs(up, res);
}

void up_conn_start(struct up_conn *up)
{
	if (up->state != UP_IDLE)
		return;
	up->state = UP_CONNECTING;
	up->connects++;
	log_info("endpoint '%s': connecting to %s:%s%s", up->conf->name, up->url.host,
		 up->url.port, up->url.tls ? " (TLS)" : "");
	/* the timeout covers the name lookup and every address tried */
	ev_timer_set(&up->timer, up->conf->connect_timeout_ms / 1000.0, 0.);
	ev_timer_start(up->loop, &up->timer);
	struct addrinfo *addrs;
	int g = res_start(up->loop, up->url.host, up->url.port, up_resolved, up, &addrs,
			  &up->res);
	if (g != 0)
		up_fail(up, "cannot resolve '%s': %s", up->url.host, gai_strerror(g));
	else if (addrs)
		up_connect_addrs(up, addrs);
}

static void up_begin_handshake(struct up_conn *up)
{
	char key[WS_KEY_LEN + 1];
	ws_hs_make_key(key);
	memcpy(up->key, key, sizeof(key));
	buf_reset(&up->wbuf);
	if (ws_hs_request(&up->wbuf, up->host_hdr, up->target, up->key,
			  up->conf->headers, up->conf->nheaders,
			  up->conf->compression ? &up->pmd_offer : NULL) < 0) {
		up_fail(up, "cannot build the upgrade request");
		return;
	}
	up->state = UP_HANDSHAKE;
	up_set_events(up, EV_WRITE | EV_READ);
}

/* Sets up the codec once the server took permessage-deflate. */
static int up_pmd_start(struct up_conn *up)
{
	const struct wsd_params *p = &up->pmd;
	if (!p->enabled)
		return 0;
	if (wsd_init(&up->wsd, p, WSD_CLIENT, (int)up->conf->compression_level) < 0) {
		up_fail(up, "permessage-deflate: unusable parameters");
		return -1;
	}
	log_debug("endpoint '%s': permessage-deflate: client window %u bits%s, server window "
		  "%u bits%s", up->conf->name, p->client_max_window_bits,
		  p->client_no_context_takeover ? " (no context takeover)" : "",
		  p->server_max_window_bits,
		  p->server_no_context_takeover ? " (no context takeover)" : "");
	return 0;
}

static void up_open(struct up_conn *up)
{
	if (up_pmd_start(up) < 0)
		return;
	/* (the RSV1 wslay may send depends on pmd: made after it) */
	if (!up_wslay(up)) {
		up_fail(up, "out of memory");
		return;
	}
	ev_timer_stop(up->loop, &up->timer);
	up->state = UP_OPEN;
	if (up->addrs) { /* connected: the other addresses are not needed */
		freeaddrinfo(up->addrs);
		up->addrs = up->addr_next = NULL;
	}
	up->hb_pending = 0;
	backoff_reset(&up->reconnect_bo);
	up->last_logged[0] = '\0';
	log_notice("endpoint '%s': connected%s", up->conf->name,
		   up->pmd.enabled ? " (permessage-deflate)" :
		   up->conf->compression ? " (the server declined compression)" : "");
	double hb = up->conf->heartbeat_ms / 1000.0;
	ev_timer_set(&up->hb_timer, hb, hb);
	ev_timer_start(up->loop, &up->hb_timer);
	up->cb->on_open(up);
	if (up->state == UP_OPEN && buf_len(&up->rbuf) > 0) {
		/* frames that came with the upgrade response */
		up->in_recv = 1;
		up_parse(up);
		up->in_recv = 0;
		if (up->closing) {
			up_down(up, up->last_error);
			return;
		}
	}
	if (up->state == UP_OPEN)
		up_update_io(up);
}

/* Drives the TCP connect, TLS handshake and HTTP upgrade. */
static void up_progress(struct up_conn *up, int revents)
{
	if (up->state == UP_CONNECTING) {
		int err = 0;
		socklen_t el = sizeof(err);
		if (getsockopt(up->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
			err = errno;
		if (err) {
			char why[512];
			snprintf(why, sizeof(why), "connect to %s:%s: %s", up->url.host,
				 up->url.port, strerror(err));
			ev_io_stop(up->loop, &up->io);
			close(up->fd);
			up->fd = -1;
			up_connect_next(up, why); /* the next address, if any */
			return;
		}
		if (!up->url.tls) {
			up_begin_handshake(up);
			return;
		}
		if (up_tls_begin(up) < 0) {
			char e[200];
			tls_errstr(e, sizeof(e));
			up_fail(up, "TLS setup: %s", e);
			return;
		}
		up->state = UP_TLS;
	}
	if (up->state == UP_TLS) {
		int r = SSL_do_handshake(up->ssl);
		if (r == 1) {
			up_begin_handshake(up);
			return;
		}
		int e = SSL_get_error(up->ssl, r);
		if (e == SSL_ERROR_WANT_READ) {
			up_set_events(up, EV_READ);
			return;
		}
		if (e == SSL_ERROR_WANT_WRITE) {
			up_set_events(up, EV_WRITE);
			return;
		}
		long vr = SSL_get_verify_result(up->ssl);
		if (vr != X509_V_OK) {
			ERR_clear_error();
			up_fail(up, "TLS: certificate of %s not accepted: %s", up->url.host,
				X509_verify_cert_error_string(vr));
			return;
		}
		char es[200];
		if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
			snprintf(es, sizeof(es), "%s", errno ? strerror(errno) :
				 "connection closed during handshake");
		else
			tls_errstr(es, sizeof(es));
		up_fail(up, "TLS handshake with %s: %s", up->url.host, es);
		return;
	}
	if (up->state != UP_HANDSHAKE)
		return;
	up->tls_want = 0;
	if (buf_len(&up->wbuf) > 0) {
		if (up_write_out(up) < 0) {
			up_fail(up, "sending the upgrade request: %s", strerror(errno));
			return;
		}
	}
	if (revents & EV_READ || up->tls_want == EV_READ || (up->ssl && SSL_pending(up->ssl))) {
		int eof = 0;
		for (;;) {
			ssize_t r = up_fill(up, NULL);
			if (r == -2)
				break;
			if (r < 0) {
				up_fail(up, "reading the upgrade response: %s", strerror(errno));
				return;
			}
			if (r == 0) {
				eof = 1; /* parse what came before the close */
				break;
			}
			if (buf_len(&up->rbuf) >= WS_HS_MAX)
				break;
		}
		char err[300];
		long hl = ws_hs_parse_response(buf_rptr(&up->rbuf), buf_len(&up->rbuf), up->key,
					       up->conf->compression ? &up->pmd_offer : NULL,
					       &up->pmd, err, sizeof(err));
		if (hl < 0) {
			up_fail(up, "upgrade to WebSocket failed: %s", err);
			return;
		}
		if (hl > 0) {
			buf_consume(&up->rbuf, (size_t)hl);
			up_open(up);
			return;
		}
		if (eof) {
			up_fail(up, "connection closed by server during the upgrade%s",
				buf_len(&up->rbuf) ? " (incomplete response)" : "");
			return;
		}
	}
	int ev = EV_READ;
	if (buf_len(&up->wbuf) > 0 || up->tls_want == EV_WRITE)
		ev |= EV_WRITE;
	up_set_events(up, ev);
}

static void up_update_io(struct up_conn *up)
{
	if (up->state != UP_OPEN)
		return;
	int want_r = !up->rd_shut;
	int want_w = up_ws_want_write(up) || buf_len(&up->wbuf) > 0;
	if (!want_r && !want_w) {
		/* read side shut (close received, or a protocol error) and the
		 * close frame written: the same teardown as any loss */
		up_fail(up, "%s", up->last_error[0] ? up->last_error : "WebSocket closed");
		return;
	}
	int ev = 0;
	if (want_r)
		ev |= EV_READ;
	if (buf_len(&up->wbuf) > 0 || up->tls_want == EV_WRITE)
		ev |= EV_WRITE;
	up_set_events(up, ev);
	if (up_ws_want_write(up))
		up_schedule_flush(up);
}

/* Moves wslay's queue into wbuf and wbuf to the socket. */
static int up_send_now(struct up_conn *up)
{
	up->tls_want = 0;
	if (up_ws_want_write(up) && wslay_event_send(up->ws) != 0) {
		up_fail(up, "%s", up->last_error[0] ? up->last_error : "WebSocket send failed");
		return -1;
	}
	if (up_write_out(up) < 0) {
		up_fail(up, "write: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static void up_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct up_conn *up = container_of(w, struct up_conn, io);
	(void)loop;
	if (up->state != UP_OPEN) {
		up_progress(up, revents);
		return;
	}
	if ((revents & EV_READ || up->tls_want == EV_READ) && !up->rd_shut) {
		up->tls_want = 0;
		up->in_recv = 1;
		up_recv(up);
		up->in_recv = 0;
		if (up->closing) {
			up_down(up, up->last_error);
			return;
		}
		if (up->state != UP_OPEN)
			return; /* closed by the owner from a callback */
	}
	if (up_send_now(up) < 0)
		return;
	up_update_io(up);
}

static void up_flush_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct up_conn *up = container_of(w, struct up_conn, flush);
	(void)revents;
	ev_prepare_stop(loop, w);
	ev_idle_stop(loop, &up->kick);
	if (up->state != UP_OPEN)
		return;
	if (up->closing) {
		up_down(up, up->last_error);
		return;
	}
	if (up_send_now(up) < 0)
		return;
	up_update_io(up);
}

static void up_kick_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	(void)revents;
	ev_idle_stop(loop, w); /* the prepare watcher does the work */
}

static void up_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct up_conn *up = container_of(w, struct up_conn, timer);
	(void)loop;
	(void)revents;
	switch (up->state) {
	case UP_WAIT:
		up->state = UP_IDLE;
		up_conn_start(up);
		break;
	case UP_CONNECTING:
		if (up->res) {
			up_fail(up, "resolving '%s' timed out after %u ms", up->url.host,
				up->conf->connect_timeout_ms);
			break;
		}
		/* fall through */
	case UP_TLS:
	case UP_HANDSHAKE:
		up_fail(up, "connect to %s:%s timed out after %u ms", up->url.host,
			up->url.port, up->conf->connect_timeout_ms);
		break;
	default:
		break;
	}
}

static void up_hb_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct up_conn *up = container_of(w, struct up_conn, hb_timer);
	(void)loop;
	(void)revents;
	if (up->state != UP_OPEN)
		return;
	if (up->hb_pending) {
		up_fail(up, "heartbeat timeout: no reply within %u ms", up->conf->heartbeat_ms);
		return;
	}
	char ref[24];
	up_conn_next_ref(up, ref);
	memcpy(up->hb_ref, ref, sizeof(ref));
	if (up_conn_send_json(up, NULL, ref, "phoenix", 7, "heartbeat", 9, "{}", 2) == 0)
		up->hb_pending = 1;
}

/* --------------------------------------------------------------- API */

/* Percent-encodes s into b for a query string. */
static int put_qs(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		int r;
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' || *p == '~')
			r = buf_putc(b, (char)*p);
		else
			r = buf_printf(b, "%%%c%c", hex[*p >> 4], hex[*p & 15]);
		if (r < 0)
			return r;
	}
	return 0;
}

/* What we offer: the endpoint's options, and client_max_window_bits always
 * (bare at 15: the server may ask for a smaller window). */
static void up_pmd_offer(struct up_conn *up)
{
	struct wsd_params *o = &up->pmd_offer;
	wsd_params_default(o);
	o->client_no_context_takeover = up->conf->client_no_context_takeover;
	o->server_no_context_takeover = up->conf->server_no_context_takeover;
	o->client_max_window_bits = up->conf->client_max_window_bits;
	o->server_max_window_bits = up->conf->server_max_window_bits;
	o->client_bits_offered = 1;
	wsd_params_default(&up->pmd);
}

int up_conn_init(struct up_conn *up, struct ev_loop *loop,
		 const struct conf_endpoint *conf, SSL_CTX *ssl_ctx,
		 const struct up_callbacks *cb, void *owner, char *err, size_t errlen)
{
	const char *why;
	memset(up, 0, sizeof(*up));
	up->fd = -1;
	up->ref_seq = &up->next_ref;
	up->loop = loop;
	up->conf = conf;
	up->ssl_ctx = ssl_ctx;
	up->cb = cb;
	up->owner = owner;
	if (url_parse(conf->url, &up->url, &why) < 0) {
		snprintf(err, errlen, "endpoint '%s': bad url: %s", conf->name, why);
		return -EINVAL;
	}
	if (up->url.tls && !ssl_ctx) {
		snprintf(err, errlen, "endpoint '%s': wss:// without a TLS context", conf->name);
		return -EINVAL;
	}
	/* target = path [+ "/websocket" unless given] + ?vsn=2.0.0 + params */
	struct buf t;
	buf_init(&t, sizeof(up->target) - 1);
	const char *q = strchr(up->url.path, '?');
	size_t plen = q ? (size_t)(q - up->url.path) : strlen(up->url.path);
	while (plen > 1 && up->url.path[plen - 1] == '/')
		plen--;
	int r = buf_append(&t, up->url.path, plen);
	if (r == 0 && !(plen >= 10 && memcmp(up->url.path + plen - 10, "/websocket", 10) == 0))
		r = buf_puts(&t, plen == 1 ? "websocket" : "/websocket");
	if (r == 0)
		r = buf_puts(&t, "?vsn=2.0.0");
	if (r == 0 && q && q[1]) {
		r = buf_putc(&t, '&');
		if (r == 0)
			r = buf_puts(&t, q + 1);
	}
	for (size_t i = 0; r == 0 && i < conf->nparams; i++) {
		r = buf_putc(&t, '&');
		if (r == 0) r = put_qs(&t, conf->params[i].key);
		if (r == 0) r = buf_putc(&t, '=');
		if (r == 0) r = put_qs(&t, conf->params[i].value);
	}
	if (r < 0) {
		buf_free(&t);
		snprintf(err, errlen, "endpoint '%s': url and params too long", conf->name);
		return -EINVAL;
	}
	memcpy(up->target, buf_rptr(&t), buf_len(&t));
	up->target[buf_len(&t)] = '\0';
	buf_free(&t);
	int v6 = strchr(up->url.host, ':') != NULL;
	int def = strcmp(up->url.port, up->url.tls ? "443" : "80") == 0;
	snprintf(up->host_hdr, sizeof(up->host_hdr), "%s%s%s%s%s", v6 ? "[" : "",
		 up->url.host, v6 ? "]" : "", def ? "" : ":", def ? "" : up->url.port);
	if (backoff_parse(&up->reconnect_bo, conf->reconnect_backoff, 25) < 0) {
		snprintf(err, errlen, "endpoint '%s': bad reconnect_backoff", conf->name);
		return -EINVAL;
	}
	ev_io_init(&up->io, up_io_cb, -1, 0);
	ev_timer_init(&up->timer, up_timer_cb, 0., 0.);
	ev_timer_init(&up->hb_timer, up_hb_cb, 0., 0.);
	ev_prepare_init(&up->flush, up_flush_cb);
	ev_idle_init(&up->kick, up_kick_cb);
	buf_init(&up->rbuf, 0);
	buf_init(&up->wbuf, 0);
	buf_init(&up->frame, 0);
	buf_init(&up->zin, 0);
	buf_init(&up->zout, 0);
	buf_init(&up->msg, 0);
	up_pmd_offer(up);
	up->state = UP_IDLE;
	return 0;
}

void up_conn_fini(struct up_conn *up)
{
	up_teardown(up);
	up->state = UP_IDLE;
}

void up_conn_close(struct up_conn *up, const char *reason)
{
	if (up->state == UP_IDLE)
		return;
	if (up->state == UP_OPEN && up_wslay(up)) {
		/* best effort: what is queued (phx_leave frames on shutdown), then a
		 * close frame, then the socket goes.  wslay sends control frames
		 * first and nothing after a close, so the queue goes out before. */
		wslay_event_send(up->ws);
		wslay_event_queue_close(up->ws, WSLAY_CODE_NORMAL_CLOSURE, NULL, 0);
		wslay_event_send(up->ws);
		up_write_out(up);
	}
	log_info("endpoint '%s': closing connection: %s", up->conf->name, reason);
	up_teardown(up);
	up->state = UP_IDLE;
}

uint64_t up_conn_next_ref(struct up_conn *up, char *out)
{
	uint64_t r = ++*up->ref_seq;
	char tmp[24];
	size_t i = sizeof(tmp);
	uint64_t v = r;
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	memcpy(out, tmp + i, sizeof(tmp) - i);
	out[sizeof(tmp) - i] = '\0';
	return r;
}

/* Queues one message of n bytes at p (copied by wslay, or by the
 * compressor first). */
static int up_queue(struct up_conn *up, uint8_t opcode, const void *p, size_t n)
{
	struct wslay_event_msg msg = {
		.opcode = opcode,
		.msg = p,
		.msg_length = n,
	};
	uint8_t rsv = WSLAY_RSV_NONE;
	int r;
	if (!up_wslay(up))
		return -ENOMEM;
	if (up->pmd.enabled) {
		buf_reset(&up->zout);
		r = wsd_deflate(&up->wsd, msg.msg, msg.msg_length, &up->zout);
		if (r < 0) {
			/* the compressor may be out of step with the server's inflater */
			up_fail_later(up, "compressing a message: %s", strerror(-r));
			return r;
		}
		msg.msg = (const uint8_t *)buf_rptr(&up->zout);
		msg.msg_length = buf_len(&up->zout);
		rsv = WSLAY_RSV1_BIT;
	}
	r = wslay_event_queue_msg_ex(up->ws, &msg, rsv);
	if (up->zout.cap > UP_FRAME_KEEP)
		buf_free(&up->zout);
	if (r != 0) {
		if (rsv && r != WSLAY_ERR_NO_MORE_MSG)
			up_fail_later(up, "cannot queue a compressed message");
		return r == WSLAY_ERR_NOMEM ? -ENOMEM : -ENOTCONN;
	}
	up->frames_out++;
	up->payload_out += n;
	if (!up->in_recv)
		up_schedule_flush(up);
	return 0;
}

int up_conn_send_json(struct up_conn *up, const char *join_ref, const char *ref,
		      const char *topic, size_t tlen, const char *event, size_t elen,
		      const char *payload, size_t plen)
{
	struct buf *frame = &up->frame;
	if (up->state != UP_OPEN || up->closing)
		return -ENOTCONN;
	buf_reset(frame);
	int r = phx_encode_json(frame, join_ref, ref, topic, tlen, event, elen, payload, plen);
	if (r == 0)
		r = up_queue(up, WSLAY_TEXT_FRAME, buf_rptr(frame), buf_len(frame));
	if (frame->cap > UP_FRAME_KEEP)
		buf_free(frame);
	return r;
}

int up_conn_send_binary(struct up_conn *up, const char *join_ref, const char *ref,
			const char *topic, size_t tlen, const char *event, size_t elen,
			const void *data, size_t dlen)
{
	struct buf *frame = &up->frame;
	if (up->state != UP_OPEN || up->closing)
		return -ENOTCONN;
	buf_reset(frame);
	int r = phx_encode_binary_push(frame, join_ref, ref, topic, tlen, event, elen,
				       data, dlen);
	if (r == 0)
		r = up_queue(up, WSLAY_BINARY_FRAME, buf_rptr(frame), buf_len(frame));
	if (frame->cap > UP_FRAME_KEEP)
		buf_free(frame);
	return r;
}

int up_conn_send_text(struct up_conn *up, const char *frame, size_t len)
{
	if (up->state != UP_OPEN || up->closing)
		return -ENOTCONN;
	return up_queue(up, WSLAY_TEXT_FRAME, frame, len);
}

size_t up_conn_hibernate(struct up_conn *up)
{
	size_t freed = 0;
	/* not inside our own callbacks (rbuf is being read), not while a
	 * frame or message is partly read or anything waits to go out */
	if (up->state != UP_OPEN || up->closing || up->in_recv || up->rd_shut ||
	    up->rd_frame || up->rd_in_msg || buf_len(&up->rbuf) || buf_len(&up->wbuf) ||
	    up_ws_want_write(up) || (up->ssl && SSL_pending(up->ssl) > 0))
		return 0;
	struct buf *bufs[] = { &up->rbuf, &up->wbuf, &up->frame, &up->zout, &up->zin,
			       &up->msg };
	for (size_t k = 0; k < sizeof(bufs) / sizeof(bufs[0]); k++) {
		freed += bufs[k]->cap;
		buf_free(bufs[k]);
	}
	/* nothing queued and no close in flight (rd_shut is 0, and a close
	 * we queue ourselves happens only in up_conn_close): the context
	 * holds no state worth keeping; up_wslay makes a new one */
	if (up->ws && wslay_event_get_write_enabled(up->ws)) {
		wslay_event_context_free(up->ws);
		up->ws = NULL;
		freed += UP_WSLAY_BYTES;
	}
	return freed;
}

size_t up_conn_queued(const struct up_conn *up)
{
	return buf_len(&up->wbuf) + (up->ws ? wslay_event_get_queued_msg_length(up->ws) : 0);
}
