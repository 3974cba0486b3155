#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "bench/wsc.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench/bench_util.h"
#include "daemon/phx_msg.h"
#include "daemon/ws_hs.h"

#define WSC_TARGET "/socket/websocket?vsn=2.0.0"
#define WSC_HS_TIMEOUT_MS 5000

static int tcp_connect(const char *host, int port, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *ai;
	char ps[16];
	int one = 1;

	snprintf(ps, sizeof(ps), "%d", port);
	int r = getaddrinfo(host, ps, &hints, &ai);
	if (r != 0) {
		snprintf(err, errlen, "%s: %s", host, gai_strerror(r));
		return -1;
	}
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
		close(fd);
		fd = -1;
	}
	if (fd < 0)
		snprintf(err, errlen, "connect %s:%d: %s", host, port, strerror(errno));
	else
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	freeaddrinfo(ai);
	return fd;
}

/* Sends the upgrade request and reads the 101; bytes past the head are
 * kept in c->early. */
static int handshake(struct wsc *c, const char *host, int port, char *err, size_t errlen)
{
	char key[WS_KEY_LEN + 1], host_hdr[300];
	struct buf in;
	long head = 0;

	ws_hs_make_key(key);
	snprintf(host_hdr, sizeof(host_hdr), "%s:%d", host, port);
	buf_reset(&c->frame);
	if (ws_hs_request(&c->frame, host_hdr, WSC_TARGET, key, NULL, 0, NULL) < 0 ||
	    send(c->fd, buf_rptr(&c->frame), buf_len(&c->frame), MSG_NOSIGNAL) !=
		    (ssize_t)buf_len(&c->frame)) {
		snprintf(err, errlen, "cannot send the upgrade request");
		return -1;
	}
	buf_init(&in, WS_HS_MAX + 65536);
	while (head == 0) {
		struct pollfd p = { c->fd, POLLIN, 0 };
		char *w = buf_reserve(&in, 4096);
		ssize_t n = -1;
		if (w && poll(&p, 1, WSC_HS_TIMEOUT_MS) == 1)
			n = recv(c->fd, w, 4096, 0);
		if (n <= 0) {
			snprintf(err, errlen, "no upgrade answer");
			buf_free(&in);
			return -1;
		}
		buf_commit(&in, (size_t)n);
		head = ws_hs_parse_response(buf_rptr(&in), buf_len(&in), key, NULL, NULL, err,
					    errlen);
	}
	if (head > 0 && buf_len(&in) > (size_t)head)
		buf_append(&c->early, buf_rptr(&in) + head, buf_len(&in) - (size_t)head);
	buf_free(&in);
	return head > 0 ? 0 : -1;
}

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *p, size_t n, int flags,
		       void *user)
{
	struct wsc *c = user;
	(void)flags;

	if (buf_len(&c->early)) {
		size_t k = buf_len(&c->early) < n ? buf_len(&c->early) : n;
		memcpy(p, buf_rptr(&c->early), k);
		buf_consume(&c->early, k);
		return (ssize_t)k;
	}
	ssize_t r = recv(c->fd, p, n, 0);
	if (r > 0)
		return r;
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
	else
		wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
	return -1;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *p, size_t n, int flags,
		       void *user)
{
	struct wsc *c = user;
	(void)flags;

	ssize_t r = send(c->fd, p, n, MSG_NOSIGNAL);
	if (r >= 0)
		return r;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
	else
		wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
	return -1;
}

static int genmask_cb(wslay_event_context_ptr ctx, uint8_t *p, size_t n, void *user)
{
	/* the same kind of mask phxd uses: a xorshift PRNG */
	static uint64_t s = 0x9E3779B97F4A7C15ULL;
	(void)ctx;
	(void)user;

	for (size_t i = 0; i < n; i++) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		p[i] = (uint8_t)(s >> 24);
	}
	return 0;
}

static void msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *a,
		   void *user)
{
	struct wsc *c = user;
	struct phx_msg m;
	int r = -1;
	(void)ctx;

	if (a->opcode == WSLAY_TEXT_FRAME)
		r = phx_decode_json((const char *)a->msg, a->msg_length, &m);
	else if (a->opcode == WSLAY_BINARY_FRAME)
		r = phx_decode_binary(a->msg, a->msg_length, &m);
	else if (a->opcode == WSLAY_CONNECTION_CLOSE)
		c->failed = 1;
	if (r == 0 && c->on_msg)
		c->on_msg(c, &m);
}

int wsc_open(struct wsc *c, const char *host, int port, wsc_msg_fn on_msg, void *user,
	     char *err, size_t errlen)
{
	static const struct wslay_event_callbacks cbs = {
		.recv_callback = recv_cb,
		.send_callback = send_cb,
		.genmask_callback = genmask_cb,
		.on_msg_recv_callback = msg_cb,
	};

	memset(c, 0, sizeof(*c));
	buf_init(&c->early, 0);
	buf_init(&c->frame, 0);
	c->on_msg = on_msg;
	c->user = user;
	c->fd = tcp_connect(host, port, err, errlen);
	if (c->fd < 0)
		return -1;
	if (handshake(c, host, port, err, errlen) < 0 ||
	    wslay_event_context_client_init(&c->ws, &cbs, c) != 0) {
		if (!*err)
			snprintf(err, errlen, "cannot start the WebSocket");
		wsc_close(c);
		return -1;
	}
	wslay_event_config_set_max_recv_msg_length(c->ws, 64u << 20);
	bu_nonblock(c->fd);
	return 0;
}

void wsc_close(struct wsc *c)
{
	if (c->ws)
		wslay_event_context_free(c->ws);
	c->ws = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	buf_free(&c->early);
	buf_free(&c->frame);
}

void wsc_ref(struct wsc *c, char out[24])
{
	snprintf(out, 24, "%llu", (unsigned long long)++c->next_ref);
}

int wsc_send(struct wsc *c, const char *join_ref, const char *ref, const char *topic,
	     const char *event, const char *payload, size_t plen)
{
	buf_reset(&c->frame);
	if (phx_encode_json(&c->frame, join_ref, ref, topic, strlen(topic), event,
			    strlen(event), payload, plen) < 0)
		return -1;
	struct wslay_event_msg msg = {
		.opcode = WSLAY_TEXT_FRAME,
		.msg = (const uint8_t *)buf_rptr(&c->frame),
		.msg_length = buf_len(&c->frame),
	};
	if (wslay_event_queue_msg(c->ws, &msg) != 0)
		return -1;
	return wsc_flush(c);
}

int wsc_read(struct wsc *c)
{
	if (wslay_event_recv(c->ws) != 0 || c->failed) {
		c->failed = 1;
		return -1;
	}
	return 0;
}

int wsc_flush(struct wsc *c)
{
	if (wslay_event_want_write(c->ws) && wslay_event_send(c->ws) != 0) {
		c->failed = 1;
		return -1;
	}
	return 0;
}

int wsc_want_write(const struct wsc *c)
{
	return wslay_event_want_write(c->ws);
}
