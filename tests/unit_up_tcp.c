/* Unit tests: the upstream TCP options (up_tcp_tune() in daemon/up_conn.c)
 * on a real loopback TCP connection, read back with getsockopt(), the
 * transport options of the config (TCP and compression), and an up_conn
 * against a scripted server on loopback: its frame reader (in place, large,
 * fragmented, control frames, protocol errors) and hibernation; the name
 * lookup off the loop (daemon/resolve), alone and under an up_conn. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "conf/conf.h"
#include "daemon/phx_msg.h"
#include "daemon/resolve.h"
#include "daemon/up_conn.h"
#include "daemon/ws_hs.h"

#define EP "[endpoint t]\nurl = ws://127.0.0.1:4000/socket\n"

static struct conf cf;
static char err[512];

/* Parses one endpoint with the extra lines; the endpoint lives in cf. */
static const struct conf_endpoint *ep_with(const char *lines)
{
	char text[2048];
	snprintf(text, sizeof(text), EP "%s", lines);
	conf_init(&cf);
	int r = conf_parse_string(&cf, text, "t.conf", err, sizeof(err));
	ck_assert_msg(r == 0, "%s", err);
	return &cf.endpoints[0];
}

static void teardown(void)
{
	conf_free(&cf);
}

static int getopt_int(int fd, int level, int opt)
{
	int v = -1;
	socklen_t l = sizeof(v);
	ck_assert_int_eq(getsockopt(fd, level, opt, &v, &l), 0);
	return v;
}

struct tcp_pair {
	int lfd, cfd, afd;
};

/* A listener on 127.0.0.1:0 and a client socket, tuned with e before
 * connect() as up_conn does, then connected and accepted. */
static void tcp_pair_open(struct tcp_pair *t, const struct conf_endpoint *e, int *failed)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	t->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(t->lfd, 0);
	ck_assert_int_eq(bind(t->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(t->lfd, 4), 0);
	ck_assert_int_eq(getsockname(t->lfd, (struct sockaddr *)&sa, &sl), 0);
	t->cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(t->cfd, 0);
	*failed = up_tcp_tune(t->cfd, e, err, sizeof(err));
	ck_assert_int_eq(connect(t->cfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	t->afd = accept(t->lfd, NULL, NULL);
	ck_assert_int_ge(t->afd, 0);
}

static void tcp_pair_close(struct tcp_pair *t)
{
	close(t->afd);
	close(t->cfd);
	close(t->lfd);
}

/* The connection carries bytes both ways. */
static void tcp_pair_talks(int a, int b)
{
	char buf[8];
	ck_assert_int_eq(write(a, "ping", 4), 4);
	ck_assert_int_eq(read(b, buf, sizeof(buf)), 4);
	ck_assert_int_eq(write(b, "pong", 4), 4);
	ck_assert_int_eq(read(a, buf, sizeof(buf)), 4);
	ck_assert(memcmp(buf, "pong", 4) == 0);
}

/* Linux doubles a buffer size for its bookkeeping; others keep it. */
static void ck_bufsize(int got, int want)
{
	ck_assert_msg(got == want || got == 2 * want, "buffer %d, set %d", got, want);
}

START_TEST(tune_defaults)
{
	struct tcp_pair t;
	int failed;
	const struct conf_endpoint *e = ep_with("");
	tcp_pair_open(&t, e, &failed);
	ck_assert_int_eq(failed, 0);
	ck_assert_str_eq(err, "");
	ck_assert_int_ne(getopt_int(t.cfd, IPPROTO_TCP, TCP_NODELAY), 0);
	ck_assert_int_ne(getopt_int(t.cfd, SOL_SOCKET, SO_KEEPALIVE), 0);
	ck_assert_int_eq(getopt_int(t.cfd, IPPROTO_TCP, TCP_KEEPIDLE), 60);
	ck_assert_int_eq(getopt_int(t.cfd, IPPROTO_TCP, TCP_KEEPINTVL), 10);
	ck_assert_int_eq(getopt_int(t.cfd, IPPROTO_TCP, TCP_KEEPCNT), 5);
	/* buffer sizes 0: left to the kernel (at least what an untouched
	 * socket starts with; autotuning may grow them) */
	int plain = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(plain, 0);
	ck_assert_int_ge(getopt_int(t.cfd, SOL_SOCKET, SO_SNDBUF),
			 getopt_int(plain, SOL_SOCKET, SO_SNDBUF));
	ck_assert_int_ge(getopt_int(t.cfd, SOL_SOCKET, SO_RCVBUF),
			 getopt_int(plain, SOL_SOCKET, SO_RCVBUF));
	close(plain);
	tcp_pair_talks(t.cfd, t.afd);
	tcp_pair_close(&t);
}
END_TEST

START_TEST(tune_custom)
{
	struct tcp_pair t;
	int failed;
	const struct conf_endpoint *e = ep_with("tcp_keepalive_idle = 7s\n"
						"tcp_keepalive_interval = 1500ms\n"
						"tcp_keepalive_count = 4\n"
						"tcp_sndbuf = 12345\n"
						"tcp_rcvbuf = 23456\n");
	tcp_pair_open(&t, e, &failed);
	ck_assert_msg(failed == 0, "%s", err);
	ck_assert_int_ne(getopt_int(t.cfd, IPPROTO_TCP, TCP_NODELAY), 0);
	ck_assert_int_ne(getopt_int(t.cfd, SOL_SOCKET, SO_KEEPALIVE), 0);
	ck_assert_int_eq(getopt_int(t.cfd, IPPROTO_TCP, TCP_KEEPIDLE), 7);
	ck_assert_int_eq(getopt_int(t.cfd, IPPROTO_TCP, TCP_KEEPINTVL), 2); /* rounded up */
	ck_assert_int_eq(getopt_int(t.cfd, IPPROTO_TCP, TCP_KEEPCNT), 4);
	ck_bufsize(getopt_int(t.cfd, SOL_SOCKET, SO_SNDBUF), 12345);
	ck_bufsize(getopt_int(t.cfd, SOL_SOCKET, SO_RCVBUF), 23456);
	tcp_pair_talks(t.cfd, t.afd);
	tcp_pair_close(&t);
}
END_TEST

START_TEST(tune_off)
{
	struct tcp_pair t;
	int failed;
	const struct conf_endpoint *e = ep_with("tcp_nodelay = false\ntcp_keepalive = no\n"
						"tcp_keepalive_idle = 5s\n");
	tcp_pair_open(&t, e, &failed);
	ck_assert_int_eq(failed, 0);
	ck_assert_int_eq(getopt_int(t.cfd, IPPROTO_TCP, TCP_NODELAY), 0);
	ck_assert_int_eq(getopt_int(t.cfd, SOL_SOCKET, SO_KEEPALIVE), 0);
	/* keepalive off: its timers are not touched */
	ck_assert_int_ne(getopt_int(t.cfd, IPPROTO_TCP, TCP_KEEPIDLE), 5);
	tcp_pair_talks(t.cfd, t.afd);
	tcp_pair_close(&t);
}
END_TEST

/* Options the socket does not take are counted and named; the socket stays
 * usable (up_conn logs a warning and connects anyway). */
START_TEST(tune_refused)
{
	int sv[2];
	const struct conf_endpoint *e = ep_with("tcp_sndbuf = 64k\n");
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	int failed = up_tcp_tune(sv[0], e, err, sizeof(err));
	/* a Unix socket has no TCP level: nodelay and the three keepalive timers */
	ck_assert_int_eq(failed, 4);
	ck_assert_ptr_nonnull(strstr(err, "TCP_NODELAY=1: "));
	ck_assert_ptr_nonnull(strstr(err, "TCP_KEEPCNT=5: "));
	ck_assert_ptr_null(strstr(err, "SO_SNDBUF"));
	tcp_pair_talks(sv[0], sv[1]);
	/* a short message buffer is cut, never overrun */
	char small[20];
	memset(small, 'x', sizeof(small));
	ck_assert_int_eq(up_tcp_tune(sv[0], e, small, 10), 4);
	ck_assert_uint_lt(strlen(small), 10);
	ck_assert_int_eq(up_tcp_tune(sv[0], e, NULL, 0), 4);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

/* ---- the transport options of the config ---------------------------------- */

static void ep_err(const char *line, const char *msg)
{
	char text[1024], want[512];
	snprintf(text, sizeof(text), EP "%s\n", line);
	snprintf(want, sizeof(want), "t.conf:3: %s", msg);
	conf_init(&cf);
	ck_assert_int_eq(conf_parse_string(&cf, text, "t.conf", err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, want);
	conf_free(&cf);
}

START_TEST(options_defaults)
{
	const struct conf_endpoint *e = ep_with("");
	ck_assert_int_eq(e->tcp_nodelay, 1);
	ck_assert_int_eq(e->tcp_keepalive, 1);
	ck_assert_uint_eq(e->tcp_keepidle_ms, 60000);
	ck_assert_uint_eq(e->tcp_keepintvl_ms, 10000);
	ck_assert_uint_eq(e->tcp_keepcnt, 5);
	ck_assert_uint_eq(e->tcp_sndbuf, 0);
	ck_assert_uint_eq(e->tcp_rcvbuf, 0);
	ck_assert_int_eq(e->compression, 0);
	ck_assert_uint_eq(e->compression_level, 6);
	ck_assert_int_eq(e->client_no_context_takeover, 0);
	ck_assert_int_eq(e->server_no_context_takeover, 0);
	ck_assert_uint_eq(e->client_max_window_bits, 15);
	ck_assert_uint_eq(e->server_max_window_bits, 15);
}
END_TEST

START_TEST(options_set)
{
	const struct conf_endpoint *e = ep_with("compression = yes\ncompression_level = 0\n"
						"client_no_context_takeover = on\n"
						"server_no_context_takeover = 1\n"
						"client_max_window_bits = 9\n"
						"server_max_window_bits = 10\n"
						"tcp_sndbuf = 1M\ntcp_rcvbuf = 256M\n"
						"tcp_keepalive_count = 127\n"
						"tcp_keepalive_idle = 32767s\n");
	ck_assert_int_eq(e->compression, 1);
	ck_assert_uint_eq(e->compression_level, 0);
	ck_assert_int_eq(e->client_no_context_takeover, 1);
	ck_assert_int_eq(e->server_no_context_takeover, 1);
	ck_assert_uint_eq(e->client_max_window_bits, 9);
	ck_assert_uint_eq(e->server_max_window_bits, 10);
	ck_assert_uint_eq(e->tcp_sndbuf, 1024 * 1024);
	ck_assert_uint_eq(e->tcp_rcvbuf, 256 * 1024 * 1024);
	ck_assert_uint_eq(e->tcp_keepcnt, 127);
	ck_assert_uint_eq(e->tcp_keepidle_ms, 32767000);
}
END_TEST

START_TEST(options_bad)
{
	ep_err("compression = maybe",
	       "compression: bad value 'maybe' (true/false, yes/no, on/off or 1/0)");
	ep_err("compression_level = 10", "compression_level: bad value '10' (integer 0..9)");
	ep_err("client_max_window_bits = 8",
	       "client_max_window_bits: bad value '8' (integer 9..15; zlib cannot use 8)");
	ep_err("server_max_window_bits = 16",
	       "server_max_window_bits: bad value '16' (integer 9..15; zlib cannot use 8)");
	ep_err("tcp_keepalive_count = 0", "tcp_keepalive_count: bad value '0' (integer 1..127)");
	ep_err("tcp_keepalive_count = 128",
	       "tcp_keepalive_count: bad value '128' (integer 1..127)");
	ep_err("tcp_keepalive_idle = 500ms",
	       "tcp_keepalive_idle: bad value '500ms' (duration 1s..32767s, e.g. 60s)");
	ep_err("tcp_keepalive_interval = 32768s",
	       "tcp_keepalive_interval: bad value '32768s' (duration 1s..32767s, e.g. 10s)");
	ep_err("tcp_sndbuf = 257M", "tcp_sndbuf: bad value '257M' (size 0..256M (0: kernel default))");
	ep_err("tcp_nodelay = 2",
	       "tcp_nodelay: bad value '2' (true/false, yes/no, on/off or 1/0)");
	conf_init(&cf);
	ck_assert_int_eq(conf_parse_string(&cf, EP "tcp_rcvbuf = 1M\ntcp_rcvbuf = 2M\n", "t.conf",
					   err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "t.conf:4: duplicate option 'tcp_rcvbuf' (first at line 3)");
}
END_TEST

/* ---- an up_conn against a scripted server ----------------------------------- */

/* The host the conn fixtures connect to: a literal, or a name looked up
 * off the loop. */
static const char *sv_host = "127.0.0.1";

static struct {
	struct ev_loop *loop;
	struct up_conn up;
	int lfd, sfd;                   /* listener, the server's side */
	int opened, downs;
	char down_reason[256];
	int nmsgs;
	char last[256];                 /* "topic event payload" of the last message */
	struct buf in;                  /* bytes the server got after the upgrade */
} sv;

static void sv_on_open(struct up_conn *up)
{
	(void)up;
	sv.opened++;
}

static void sv_on_message(struct up_conn *up, const struct phx_msg *m)
{
	(void)up;
	sv.nmsgs++;
	snprintf(sv.last, sizeof(sv.last), "%.20s %.20s %.*s", m->topic, m->event,
		 (int)(m->payload_len > 200 ? 200 : m->payload_len), m->payload);
}

static void sv_on_down(struct up_conn *up, const char *reason)
{
	(void)up;
	sv.downs++;
	snprintf(sv.down_reason, sizeof(sv.down_reason), "%s", reason);
}

static int sv_wanted(struct up_conn *up)
{
	(void)up;
	return 0;
}

static const struct up_callbacks sv_cbs = { sv_on_open, sv_on_message, sv_on_down, sv_wanted };

/* Runs the loop until cond holds (or fails after 5 s). */
#define SV_RUN_UNTIL(cond) do {						\
		for (int t_ = 0; !(cond); t_++) {			\
			ck_assert_msg(t_ < 5000, "timed out: %s", #cond);	\
			ev_run(sv.loop, EVRUN_NOWAIT);			\
			if (!(cond))					\
				usleep(1000);				\
		}							\
	} while (0)

static void sv_write(const void *p, size_t n)
{
	ck_assert_int_eq(write(sv.sfd, p, n), (ssize_t)n);
}

/* A server frame (unmasked) of opcode op with the payload p[0..n). */
static void sv_frame(int fin, unsigned op, const void *p, size_t n)
{
	uint8_t h[10];
	size_t hl = 2;
	h[0] = (uint8_t)((fin ? 0x80 : 0) | op);
	if (n < 126) {
		h[1] = (uint8_t)n;
	} else if (n < 65536) {
		h[1] = 126;
		h[2] = (uint8_t)(n >> 8);
		h[3] = (uint8_t)n;
		hl = 4;
	} else {
		h[1] = 127;
		for (int k = 0; k < 8; k++)
			h[2 + k] = (uint8_t)((uint64_t)n >> (56 - 8 * k));
		hl = 10;
	}
	struct buf b;
	buf_init(&b, 0);
	ck_assert_int_eq(buf_append(&b, h, hl), 0);
	ck_assert_int_eq(buf_append(&b, p, n), 0);
	sv_write(buf_rptr(&b), buf_len(&b));
	buf_free(&b);
}

static void sv_text(const char *s)
{
	sv_frame(1, 1, s, strlen(s));
}

/* Reads what the client sent (non-blocking) into sv.in. */
static void sv_read(void)
{
	char tmp[4096];
	ssize_t r;
	while ((r = read(sv.sfd, tmp, sizeof(tmp))) > 0)
		ck_assert_int_eq(buf_append(&sv.in, tmp, (size_t)r), 0);
}

/* The next whole client frame in sv.in (masked), unmasked into out; its
 * opcode, or -1 when none is whole yet. */
static int sv_next_frame(char *out, size_t cap, size_t *outlen)
{
	const uint8_t *p = (const uint8_t *)buf_rptr(&sv.in);
	size_t n = buf_len(&sv.in);
	if (n < 2)
		return -1;
	ck_assert_msg(p[1] & 0x80, "client frames are masked");
	size_t len = p[1] & 127, h = 2;
	if (len == 126) {
		if (n < 4)
			return -1;
		len = (size_t)p[2] << 8 | p[3];
		h = 4;
	}
	ck_assert_uint_lt(len, 126 * 1024);
	if (n < h + 4 + len)
		return -1;
	ck_assert_uint_le(len, cap);
	for (size_t k = 0; k < len; k++)
		out[k] = (char)(p[h + 4 + k] ^ p[h + (k & 3)]);
	*outlen = len;
	int op = p[0] & 15;
	buf_consume(&sv.in, h + 4 + len);
	return op;
}

/* Waits for the client's next frame. */
static int sv_wait_frame(char *out, size_t cap, size_t *outlen)
{
	int op;
	for (int t = 0; (op = sv_next_frame(out, cap, outlen)) < 0; t++) {
		ck_assert_msg(t < 5000, "no frame from the client");
		ev_run(sv.loop, EVRUN_NOWAIT);
		sv_read();
		usleep(1000);
	}
	return op;
}

/* An open up_conn talking to sv.sfd. */
static void sv_setup(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	char text[512], req[8192];
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	memset(&sv, 0, sizeof(sv));
	buf_init(&sv.in, 0);
	sv.loop = ev_loop_new(EVFLAG_AUTO);
	sv.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(sv.lfd, 0);
	ck_assert_int_eq(bind(sv.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(sv.lfd, 4), 0);
	ck_assert_int_eq(getsockname(sv.lfd, (struct sockaddr *)&sa, &sl), 0);
	snprintf(text, sizeof(text), "[endpoint t]\nurl = ws://%s:%u/socket\n"
		 "max_frame = 256k\n", sv_host, ntohs(sa.sin_port));
	conf_init(&cf);
	ck_assert_msg(conf_parse_string(&cf, text, "t.conf", err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(up_conn_init(&sv.up, sv.loop, &cf.endpoints[0], NULL, &sv_cbs, NULL,
				      err, sizeof(err)), 0);
	up_conn_start(&sv.up);
	sv.sfd = -1;
	for (int t = 0; sv.sfd < 0; t++) {
		ck_assert_int_lt(t, 5000);
		ev_run(sv.loop, EVRUN_NOWAIT);
		struct pollfd pf = { sv.lfd, POLLIN, 0 };
		if (poll(&pf, 1, 1) > 0)
			sv.sfd = accept(sv.lfd, NULL, NULL);
	}
	/* the upgrade */
	size_t rl = 0;
	struct ws_hs_req hr;
	long hl = 0;
	for (int t = 0; hl == 0; t++) {
		ck_assert_int_lt(t, 5000);
		ev_run(sv.loop, EVRUN_NOWAIT);
		struct pollfd pf = { sv.sfd, POLLIN, 0 };
		if (poll(&pf, 1, 1) > 0) {
			ssize_t r = read(sv.sfd, req + rl, sizeof(req) - rl);
			ck_assert_int_gt(r, 0);
			rl += (size_t)r;
			hl = ws_hs_parse_request(req, rl, &hr);
		}
	}
	ck_assert_int_gt(hl, 0);
	struct buf resp;
	buf_init(&resp, 0);
	ck_assert_int_eq(ws_hs_response_101(&resp, hr.key, NULL), 0);
	sv_write(buf_rptr(&resp), buf_len(&resp));
	buf_free(&resp);
	ck_assert_int_eq(fcntl(sv.sfd, F_SETFL, O_NONBLOCK), 0);
	SV_RUN_UNTIL(sv.opened == 1);
	ck_assert(up_conn_is_open(&sv.up));
}

static void sv_teardown(void)
{
	up_conn_fini(&sv.up);
	if (sv.sfd >= 0)
		close(sv.sfd);
	close(sv.lfd);
	buf_free(&sv.in);
	ev_loop_destroy(sv.loop);
	conf_free(&cf);
}

START_TEST(reader_in_place_and_large)
{
	sv_text("[null,null,\"t\",\"e\",{\"n\":1}]");
	SV_RUN_UNTIL(sv.nmsgs == 1);
	ck_assert_str_eq(sv.last, "t e {\"n\":1}");
	ck_assert_double_gt(up_conn_last_active(&sv.up), 0);
	/* many small ones in one write, then one larger than the read chunk */
	struct buf b;
	buf_init(&b, 0);
	for (int i = 0; i < 200; i++) {
		char m[64];
		int k = snprintf(m, sizeof(m), "[null,null,\"t\",\"e\",{\"i\":%d}]", i);
		uint8_t h[2] = { 0x81, (uint8_t)k };
		buf_append(&b, h, 2);
		buf_append(&b, m, (size_t)k);
	}
	sv_write(buf_rptr(&b), buf_len(&b));
	SV_RUN_UNTIL(sv.nmsgs == 201);
	ck_assert_str_eq(sv.last, "t e {\"i\":199}");
	buf_reset(&b);
	buf_puts(&b, "[null,null,\"t\",\"big\",{\"d\":\"");
	for (int i = 0; i < 100000; i++)
		buf_putc(&b, (char)('a' + i % 26));
	buf_puts(&b, "\"}]");
	sv_frame(1, 1, buf_rptr(&b), buf_len(&b));
	SV_RUN_UNTIL(sv.nmsgs == 202);
	ck_assert(strncmp(sv.last, "t big {\"d\":\"abcdef", 18) == 0);
	/* the read buffer stayed one chunk: the large frame went through */
	ck_assert_uint_le(sv.up.rbuf.cap, 16384);
	buf_free(&b);
	ck_assert_int_eq(sv.downs, 0);
}
END_TEST

START_TEST(reader_fragments_and_control)
{
	char out[256];
	size_t ol;
	/* a message in three pieces with a ping between them: the pong comes
	 * back with the ping's payload, the message whole */
	sv_frame(0, 1, "[null,null,", 11);
	sv_frame(1, 9, "hb", 2);
	sv_frame(0, 0, "\"t\",\"e\",", 8);
	SV_RUN_UNTIL(sv.up.rd_in_msg);
	ck_assert_int_eq(sv.nmsgs, 0);
	ck_assert_int_eq(sv_wait_frame(out, sizeof(out), &ol), 0xA);
	ck_assert_uint_eq(ol, 2);
	ck_assert(memcmp(out, "hb", 2) == 0);
	/* a partial message is never given up */
	ck_assert_uint_eq(up_conn_hibernate(&sv.up), 0);
	sv_frame(1, 0, "{\"f\":3}]", 8);
	SV_RUN_UNTIL(sv.nmsgs == 1);
	ck_assert_str_eq(sv.last, "t e {\"f\":3}");
	/* a pong is taken quietly; a frame cut anywhere waits for the rest */
	sv_frame(1, 0xA, "x", 1);
	const char *m = "\x81\x18[null,null,\"t\",\"cut\",{}]";
	for (size_t k = 0; k < strlen(m); k++) {
		sv_write(m + k, 1);
		ev_run(sv.loop, EVRUN_NOWAIT);
	}
	SV_RUN_UNTIL(sv.nmsgs == 2);
	ck_assert_str_eq(sv.last, "t cut {}");
	/* the server closes: the close is echoed, then the connection goes */
	sv_frame(1, 8, "\x03\xe8" "bye", 5);
	ck_assert_int_eq(sv_wait_frame(out, sizeof(out), &ol), 0x8);
	ck_assert_uint_eq(ol, 5);
	ck_assert(memcmp(out, "\x03\xe8" "bye", 5) == 0);
	SV_RUN_UNTIL(sv.downs == 1);
	ck_assert_str_eq(sv.down_reason, "server closed the WebSocket (code 1000)");
}
END_TEST

/* Protocol errors: a close frame with the code, then the connection goes
 * with the reason. */
static void proto_error(const void *frame, size_t n, unsigned code, const char *why)
{
	char out[256];
	size_t ol;
	sv_write(frame, n);
	ck_assert_int_eq(sv_wait_frame(out, sizeof(out), &ol), 0x8);
	ck_assert_uint_eq(ol, 2);
	ck_assert_uint_eq((unsigned)(uint8_t)out[0] << 8 | (uint8_t)out[1], code);
	SV_RUN_UNTIL(sv.downs == 1);
	ck_assert_msg(strstr(sv.down_reason, why), "reason '%s'", sv.down_reason);
}

START_TEST(reader_reserved_opcode)
{
	proto_error("\x83\x00", 2, 1002, "reserved opcode");
}
END_TEST

START_TEST(reader_bad_utf8)
{
	proto_error("\x81\x03\"\xc3\"", 5, 1007, "not valid UTF-8");
}
END_TEST

START_TEST(reader_too_large)
{
	/* max_frame = 256k: a 300 KB message is refused from its header */
	proto_error("\x82\x7f\x00\x00\x00\x00\x00\x04\x93\xe0", 10, 1009, "max_frame");
}
END_TEST

START_TEST(reader_rsv_without_extension)
{
	proto_error("\xc1\x01x", 3, 1002, "RSV");
}
END_TEST

START_TEST(hibernate)
{
	char out[256];
	size_t ol;
	sv_text("[null,null,\"t\",\"e\",{\"n\":1}]");
	SV_RUN_UNTIL(sv.nmsgs == 1);
	ck_assert_ptr_nonnull(sv.up.rbuf.data);
	size_t got = up_conn_hibernate(&sv.up);
	ck_assert_uint_ge(got, sv.up.rbuf.cap + 16384);
	ck_assert_ptr_null(sv.up.rbuf.data);
	ck_assert_ptr_null(sv.up.wbuf.data);
	ck_assert_ptr_null(sv.up.frame.data);
	ck_assert_ptr_null(sv.up.ws);
	ck_assert_uint_eq(up_conn_hibernate(&sv.up), 0); /* nothing more */
	/* it wakes on a read... */
	sv_text("[null,null,\"t\",\"e\",{\"n\":2}]");
	SV_RUN_UNTIL(sv.nmsgs == 2);
	ck_assert_str_eq(sv.last, "t e {\"n\":2}");
	ck_assert_uint_gt(up_conn_hibernate(&sv.up), 0);
	/* ... and on a send, in order */
	ck_assert_int_eq(up_conn_send_json(&sv.up, NULL, "1", "t", 1, "a", 1, "{}", 2), 0);
	ck_assert_int_eq(up_conn_send_text(&sv.up, "[null,\"2\",\"t\",\"b\",{}]", 21), 0);
	ck_assert_uint_eq(up_conn_hibernate(&sv.up), 0); /* queued: kept */
	ck_assert_int_eq(sv_wait_frame(out, sizeof(out), &ol), 1);
	ck_assert(ol == 21 && memcmp(out, "[null,\"1\",\"t\",\"a\",{}]", ol) == 0);
	ck_assert_int_eq(sv_wait_frame(out, sizeof(out), &ol), 1);
	ck_assert(ol == 21 && memcmp(out, "[null,\"2\",\"t\",\"b\",{}]", ol) == 0);
	SV_RUN_UNTIL(up_conn_hibernate(&sv.up) > 0);
	/* a ping while asleep is answered */
	sv_frame(1, 9, "zz", 2);
	ck_assert_int_eq(sv_wait_frame(out, sizeof(out), &ol), 0xA);
	ck_assert_int_eq(sv.downs, 0);
	ck_assert(up_conn_is_open(&sv.up));
}
END_TEST


/* What a server that stops reading leaves queued is counted, and goes back
 * to 0 once it reads again. */
START_TEST(queued_bytes)
{
	size_t msg = 60000, sent = 0;
	char *p = malloc(msg + 2);
	ck_assert_ptr_nonnull(p);
	p[0] = '"';
	memset(p + 1, 'q', msg);
	p[msg + 1] = '"';
	ck_assert_uint_eq(up_conn_queued(&sv.up), 0);
	/* far more than the socket buffers take */
	for (int i = 0; i < 200; i++) {
		ck_assert_int_eq(up_conn_send_json(&sv.up, NULL, "1", "t", 1, "e", 1, p, msg + 2),
				 0);
		sent += msg;
		ev_run(sv.loop, EVRUN_NOWAIT);
	}
	size_t q = up_conn_queued(&sv.up);
	ck_assert_uint_gt(q, 4u << 20);
	ck_assert_uint_lt(q, sent + (1u << 20));
	/* the server reads: the queue drains to nothing */
	for (int t = 0; up_conn_queued(&sv.up) > 0; t++) {
		ck_assert_msg(t < 20000, "queue stuck at %zu", up_conn_queued(&sv.up));
		ev_run(sv.loop, EVRUN_NOWAIT);
		sv_read();
		buf_reset(&sv.in);
		if (t % 64 == 63)
			usleep(100);
	}
	ck_assert_int_eq(sv.downs, 0);
	free(p);
}
END_TEST
/* ------------------------------------------------------ name lookup */

static struct {
	int calls, err;
	struct addrinfo *res;
} rs;

static void rs_cb(void *arg, struct addrinfo *res, int e)
{
	(void)arg;
	rs.calls++;
	rs.err = e;
	rs.res = res;
}

/* Runs loop until cond, or fails after 5 s. */
#define RS_RUN_UNTIL(loop, cond) do {					\
		for (int t_ = 0; !(cond); t_++) {			\
			ck_assert_msg(t_ < 5000, "timed out: %s", #cond);	\
			ev_run((loop), EVRUN_NOWAIT);			\
			if (!(cond))					\
				usleep(1000);				\
		}							\
	} while (0)

START_TEST(resolve_literal_now)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct addrinfo *res;
	struct res_req *req;
	memset(&rs, 0, sizeof(rs));
	ck_assert_int_eq(res_start(loop, "127.0.0.1", "4000", rs_cb, NULL, &res, &req), 0);
	ck_assert_ptr_null(req);
	ck_assert_ptr_nonnull(res);
	ck_assert_int_eq(res->ai_family, AF_INET);
	ck_assert_int_eq(ntohs(((struct sockaddr_in *)res->ai_addr)->sin_port), 4000);
	freeaddrinfo(res);
	ck_assert_int_eq(res_pending(), 0);
	ck_assert_int_eq(rs.calls, 0);
	ev_loop_destroy(loop);
}
END_TEST

START_TEST(resolve_name_later)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct addrinfo *res;
	struct res_req *req;
	memset(&rs, 0, sizeof(rs));
	ck_assert_int_eq(res_start(loop, "localhost", "4000", rs_cb, NULL, &res, &req), 0);
	ck_assert_ptr_null(res);
	ck_assert_ptr_nonnull(req);
	ck_assert_int_eq(rs.calls, 0); /* never from inside res_start */
	RS_RUN_UNTIL(loop, rs.calls == 1);
	ck_assert_int_eq(rs.err, 0);
	ck_assert_ptr_nonnull(rs.res);
	int port = rs.res->ai_family == AF_INET6 ?
		ntohs(((struct sockaddr_in6 *)rs.res->ai_addr)->sin6_port) :
		ntohs(((struct sockaddr_in *)rs.res->ai_addr)->sin_port);
	ck_assert_int_eq(port, 4000);
	freeaddrinfo(rs.res);
	RS_RUN_UNTIL(loop, res_pending() == 0);
	ev_loop_destroy(loop);
}
END_TEST

START_TEST(resolve_cancelled)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct addrinfo *res;
	struct res_req *req;
	memset(&rs, 0, sizeof(rs));
	for (int i = 0; i < 20; i++) {
		ck_assert_int_eq(res_start(loop, "localhost", "80", rs_cb, NULL, &res, &req), 0);
		ck_assert_ptr_nonnull(req);
		if (i % 2)
			usleep(2000); /* some finish before the cancel, some after */
		res_cancel(req);
	}
	RS_RUN_UNTIL(loop, res_pending() == 0);
	for (int i = 0; i < 20; i++)
		ev_run(loop, EVRUN_NOWAIT);
	ck_assert_int_eq(rs.calls, 0);
	ev_loop_destroy(loop); /* no watcher left behind: nothing to leak */
}
END_TEST

START_TEST(resolve_bad_service)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct addrinfo *res;
	struct res_req *req;
	memset(&rs, 0, sizeof(rs));
	int g = res_start(loop, "localhost", "no-such-service-phxd", rs_cb, NULL, &res, &req);
	if (g == 0) { /* answered by the thread */
		ck_assert_ptr_nonnull(req);
		RS_RUN_UNTIL(loop, rs.calls == 1);
		g = rs.err;
		ck_assert_ptr_null(rs.res);
	} else {
		ck_assert_ptr_null(req);
		ck_assert_ptr_null(res);
	}
	ck_assert_int_ne(g, 0);
	ck_assert_ptr_nonnull(gai_strerror(g));
	RS_RUN_UNTIL(loop, res_pending() == 0);
	ev_loop_destroy(loop);
}
END_TEST

/* An up_conn to a name: looked up off the loop, then the same connection. */
static void sv_setup_name(void)
{
	sv_host = "localhost";
	sv_setup();
}

START_TEST(conn_by_name)
{
	char out[256];
	size_t ol;
	ck_assert(up_conn_is_open(&sv.up));
	ck_assert_ptr_null(sv.up.res);
	ck_assert_ptr_null(sv.up.addrs); /* dropped once connected */
	ck_assert_int_eq(up_conn_send_json(&sv.up, NULL, "1", "t", 1, "a", 1, "{}", 2), 0);
	ck_assert_int_eq(sv_wait_frame(out, sizeof(out), &ol), 1);
	ck_assert(ol == 21 && memcmp(out, "[null,\"1\",\"t\",\"a\",{}]", ol) == 0);
	sv_host = "127.0.0.1";
}
END_TEST

/* A name that does not resolve fails the attempt with the lookup's reason. */
START_TEST(conn_unresolvable)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct up_conn up;
	conf_init(&cf);
	/* .invalid never resolves (RFC 6761); without DNS at all the lookup
	 * times out instead: both name the host */
	ck_assert_msg(conf_parse_string(&cf, "[endpoint t]\nurl = ws://no-such-host.invalid:4000/s\n"
					"connect_timeout = 3s\n", "t.conf", err, sizeof(err)) == 0,
		      "%s", err);
	memset(&sv, 0, sizeof(sv));
	sv.loop = loop;
	ck_assert_int_eq(up_conn_init(&up, loop, &cf.endpoints[0], NULL, &sv_cbs, NULL, err,
				      sizeof(err)), 0);
	up_conn_start(&up);
	ck_assert_int_eq(up.state, UP_CONNECTING);
	SV_RUN_UNTIL(sv.downs == 1);
	ck_assert_msg(strstr(sv.down_reason, "no-such-host.invalid") != NULL, "%s",
		      sv.down_reason);
	ck_assert_int_eq(up.state, UP_IDLE);
	up_conn_fini(&up);
	ev_loop_destroy(loop);
}
END_TEST

static Suite *up_tcp_suite(void)
{
	Suite *s = suite_create("up_tcp");
	TCase *tc = tcase_create("tune");
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_test(tc, tune_defaults);
	tcase_add_test(tc, tune_custom);
	tcase_add_test(tc, tune_off);
	tcase_add_test(tc, tune_refused);
	suite_add_tcase(s, tc);
	tc = tcase_create("options");
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_test(tc, options_defaults);
	tcase_add_test(tc, options_set);
	tcase_add_test(tc, options_bad);
	suite_add_tcase(s, tc);
	tc = tcase_create("conn");
	tcase_set_timeout(tc, 30);
	tcase_add_checked_fixture(tc, sv_setup, sv_teardown);
	tcase_add_test(tc, reader_in_place_and_large);
	tcase_add_test(tc, reader_fragments_and_control);
	tcase_add_test(tc, reader_reserved_opcode);
	tcase_add_test(tc, reader_bad_utf8);
	tcase_add_test(tc, reader_too_large);
	tcase_add_test(tc, reader_rsv_without_extension);
	tcase_add_test(tc, hibernate);
	tcase_add_test(tc, queued_bytes);
	suite_add_tcase(s, tc);
	tc = tcase_create("resolve");
	tcase_set_timeout(tc, 30);
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_test(tc, resolve_literal_now);
	tcase_add_test(tc, resolve_name_later);
	tcase_add_test(tc, resolve_cancelled);
	tcase_add_test(tc, resolve_bad_service);
	tcase_add_test(tc, conn_unresolvable);
	suite_add_tcase(s, tc);
	tc = tcase_create("conn_by_name");
	tcase_set_timeout(tc, 30);
	tcase_add_checked_fixture(tc, sv_setup_name, sv_teardown);
	tcase_add_test(tc, conn_by_name);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(up_tcp_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
