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
#include "util.h"
#include "ws_hs.h"

#define UP_RBUF_CHUNK 65536
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
		buf_consume(&up->wbuf, (size_t)w);
	}
	return 0;
}

/* Reads once into rbuf: >0 bytes, 0 EOF, -1 error, -2 would block. */
static ssize_t up_fill(struct up_conn *up)
{
	char *w = buf_reserve(&up->rbuf, UP_RBUF_CHUNK);
	if (!w)
		return -1;
	ssize_t r = up_read(up, w, UP_RBUF_CHUNK);
	if (r > 0) {
		buf_commit(&up->rbuf, (size_t)r);
		up->bytes_in += (uint64_t)r;
		return r;
	}
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return -2;
	return r;
}

/* ------------------------------------------------------------ wslay glue */

static ssize_t ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *p, size_t n,
			  int flags, void *user)
{
	struct up_conn *up = user;
	(void)flags;
	if (buf_len(&up->rbuf) == 0) {
		ssize_t r = up_fill(up);
		if (r == -2) {
			wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
			return -1;
		}
		if (r <= 0) {
			if (!(r < 0 && errno == EPROTO && up->ssl)) /* else: TLS said why */
				snprintf(up->last_error, sizeof(up->last_error), "%s",
					 r == 0 ? "connection closed by server" : strerror(errno));
			wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
			return -1;
		}
	}
	size_t k = buf_len(&up->rbuf) < n ? buf_len(&up->rbuf) : n;
	memcpy(p, buf_rptr(&up->rbuf), k);
	buf_consume(&up->rbuf, k);
	return (ssize_t)k;
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

/* Inflates a message that came with RSV1 into up->zin and points *msg at
 * it; on failure the connection is failed with the reason and reading
 * stops.  0 or a negative errno. */
static int up_inflate(struct up_conn *up, const struct wslay_event_on_msg_recv_arg *arg,
		      const uint8_t **msg, size_t *len)
{
	const char *kind = arg->opcode == WSLAY_TEXT_FRAME ? "text" : "binary";
	buf_reset(&up->zin);
	int r = wsd_inflate(&up->wsd, arg->msg, arg->msg_length, up->conf->max_frame, &up->zin);
	/* wslay leaves UTF-8 of compressed text to us */
	if (r == 0 && arg->opcode == WSLAY_TEXT_FRAME &&
	    !utf8_valid(buf_rptr(&up->zin), buf_len(&up->zin)))
		r = -EILSEQ;
	if (r == 0) {
		*msg = (const uint8_t *)buf_rptr(&up->zin);
		*len = buf_len(&up->zin);
		return 0;
	}
	wslay_event_shutdown_read(up->ws);
	switch (r) {
	case -EMSGSIZE:
		up_fail(up, "compressed %s message of %zu bytes inflates past max_frame "
			"(%zu bytes)", kind, arg->msg_length, up->conf->max_frame);
		break;
	case -EPROTO:
		up_fail(up, "corrupt compressed %s message from the server: %s", kind,
			up->wsd.err);
		break;
	case -EILSEQ:
		up_fail(up, "compressed text message from the server is not valid UTF-8");
		break;
	default:
		up_fail(up, "inflating a %s message: %s", kind, strerror(-r));
		break;
	}
	return r;
}

/* A whole text or binary message, uncompressed. */
static void up_handle_msg(struct up_conn *up, uint8_t opcode, const uint8_t *msg, size_t len)
{
	struct phx_msg m;
	int r = opcode == WSLAY_TEXT_FRAME ? phx_decode_json((const char *)msg, len, &m) :
					     phx_decode_binary(msg, len, &m);
	up->frames_in++;
	up->payload_in += len;
	if (r < 0) {
		log_warn("endpoint '%s': ignoring a malformed %s frame of %zu bytes",
			 up->conf->name, opcode == WSLAY_TEXT_FRAME ? "text" : "binary", len);
		return;
	}
	if (m.is_reply && m.topic_len == 7 && memcmp(m.topic, "phoenix", 7) == 0) {
		if (up->hb_pending && m.has_ref && strcmp(m.ref, up->hb_ref) == 0)
			up->hb_pending = 0;
		return;
	}
	up->cb->on_message(up, &m);
}

static void ws_msg_cb(wslay_event_context_ptr ctx,
		      const struct wslay_event_on_msg_recv_arg *arg, void *user)
{
	struct up_conn *up = user;
	const uint8_t *msg = arg->msg;
	size_t len = arg->msg_length;
	(void)ctx;

	if (up->closing)
		return;
	switch (arg->opcode) {
	case WSLAY_TEXT_FRAME:
	case WSLAY_BINARY_FRAME:
		break;
	case WSLAY_CONNECTION_CLOSE:
		snprintf(up->last_error, sizeof(up->last_error),
			 "server closed the WebSocket (code %u)", (unsigned)arg->status_code);
		return;
	default:
		return; /* ping/pong handled by wslay */
	}
	/* RSV1 passes wslay only once permessage-deflate is negotiated, and
	 * only on the first frame of a data message: arg->rsv is that frame's */
	if ((arg->rsv & WSLAY_RSV1_BIT) && up_inflate(up, arg, &msg, &len) < 0)
		return;
	up_handle_msg(up, arg->opcode, msg, len);
	if (up->zin.cap > UP_FRAME_KEEP)
		buf_free(&up->zin);
}

/* ---------------------------------------------------------- lifecycle */

static void up_teardown(struct up_conn *up)
{
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
	char msg[sizeof(up->last_error)];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap); /* args may point at last_error */
	va_end(ap);
	memcpy(up->last_error, msg, sizeof(msg));
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
	char msg[sizeof(up->last_error)];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	memcpy(up->last_error, msg, sizeof(msg));
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

static int up_try_connect(struct up_conn *up)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG };
	struct addrinfo *res = NULL, *ai;
	char last[512] = "no address";

	/* Blocking resolution: hosts are usually literals or in /etc/hosts. */
	int g = getaddrinfo(up->url.host, up->url.port, &hints, &res);
	if (g != 0) {
		up_fail(up, "cannot resolve '%s': %s", up->url.host, gai_strerror(g));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
				ai->ai_protocol);
		if (fd < 0) {
			snprintf(last, sizeof(last), "socket: %s", strerror(errno));
			continue;
		}
		up_tune_socket(up, fd); /* before connect: buffer sizes shape the handshake */
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS) {
			up->fd = fd;
			break;
		}
		snprintf(last, sizeof(last), "connect to %s:%s: %s", up->url.host,
			 up->url.port, strerror(errno));
		close(fd);
	}
	freeaddrinfo(res);
	if (up->fd < 0) {
		up_fail(up, "%s", last);
		return -1;
	}
	return 0;
}

void up_conn_start(struct up_conn *up)
{
	if (up->state != UP_IDLE)
		return;
	up->state = UP_CONNECTING;
	up->connects++;
	log_info("endpoint '%s': connecting to %s:%s%s", up->conf->name, up->url.host,
		 up->url.port, up->url.tls ? " (TLS)" : "");
	if (up_try_connect(up) < 0)
		return;
	ev_timer_set(&up->timer, up->conf->connect_timeout_ms / 1000.0, 0.);
	ev_timer_start(up->loop, &up->timer);
	up_set_events(up, EV_WRITE);
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
	wslay_event_config_set_allowed_rsv_bits(up->ws, WSLAY_RSV1_BIT);
	log_debug("endpoint '%s': permessage-deflate: client window %u bits%s, server window "
		  "%u bits%s", up->conf->name, p->client_max_window_bits,
		  p->client_no_context_takeover ? " (no context takeover)" : "",
		  p->server_max_window_bits,
		  p->server_no_context_takeover ? " (no context takeover)" : "");
	return 0;
}

static void up_open(struct up_conn *up)
{
	static const struct wslay_event_callbacks cbs = {
		.recv_callback = ws_recv_cb,
		.send_callback = ws_send_cb,
		.genmask_callback = ws_genmask_cb,
		.on_msg_recv_callback = ws_msg_cb,
	};
	if (wslay_event_context_client_init(&up->ws, &cbs, up) != 0) {
		up->ws = NULL;
		up_fail(up, "out of memory");
		return;
	}
	wslay_event_config_set_max_recv_msg_length(up->ws, up->conf->max_frame);
	if (up_pmd_start(up) < 0)
		return;
	ev_timer_stop(up->loop, &up->timer);
	up->state = UP_OPEN;
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
			up_fail(up, "connect to %s:%s: %s", up->url.host, up->url.port, strerror(err));
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
			ssize_t r = up_fill(up);
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
	if (up->state != UP_OPEN || !up->ws)
		return;
	int want_r = wslay_event_want_read(up->ws);
	int want_w = wslay_event_want_write(up->ws) || buf_len(&up->wbuf) > 0;
	if (!want_r && !want_w) {
		up_fail(up, "%s", up->last_error[0] ? up->last_error : "WebSocket closed");
		return;
	}
	int ev = 0;
	if (want_r)
		ev |= EV_READ;
	if (buf_len(&up->wbuf) > 0 || up->tls_want == EV_WRITE)
		ev |= EV_WRITE;
	up_set_events(up, ev);
	if (wslay_event_want_write(up->ws))
		up_schedule_flush(up);
}

/* Moves wslay's queue into wbuf and wbuf to the socket. */
static int up_send_now(struct up_conn *up)
{
	up->tls_want = 0;
	if (wslay_event_want_write(up->ws) && wslay_event_send(up->ws) != 0) {
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
	if (revents & EV_READ || up->tls_want == EV_READ) {
		up->tls_want = 0;
		up->in_recv = 1;
		int r = wslay_event_recv(up->ws);
		up->in_recv = 0;
		if (up->closing) {
			up_down(up, up->last_error);
			return;
		}
		if (r != 0) {
			up_fail(up, "%s", up->last_error[0] ? up->last_error : "WebSocket protocol error");
			return;
		}
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
	if (up->state == UP_OPEN && up->ws) {
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

static int up_queue(struct up_conn *up, uint8_t opcode, const struct buf *frame)
{
	struct wslay_event_msg msg = {
		.opcode = opcode,
		.msg = (const uint8_t *)buf_rptr(frame),
		.msg_length = buf_len(frame),
	};
	uint8_t rsv = WSLAY_RSV_NONE;
	int r;
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
	up->payload_out += buf_len(frame);
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
		r = up_queue(up, WSLAY_TEXT_FRAME, frame);
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
		r = up_queue(up, WSLAY_BINARY_FRAME, frame);
	if (frame->cap > UP_FRAME_KEEP)
		buf_free(frame);
	return r;
}
