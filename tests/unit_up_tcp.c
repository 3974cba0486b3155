/* Unit tests: the upstream TCP options (up_tcp_tune() in daemon/up_conn.c)
 * on a real loopback TCP connection, read back with getsockopt(), and the
 * transport options of the config (TCP and compression). */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conf/conf.h"
#include "daemon/up_conn.h"

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
	ck_assert_str_eq(err, "t.conf:4: duplicate option 'tcp_rcvbuf'");
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
