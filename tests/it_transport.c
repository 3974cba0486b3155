/* Integration tests: the upstream transport — permessage-deflate against
 * phxsim with and without --compression, fragmented messages, a corrupt
 * compressed frame and a decompression bomb (each closes the connection,
 * which phxd opens again and rejoins), the TCP options, and a TLS server
 * that resets the connection (or answers garbage) during the handshake. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "b64.h"
#include "it_util.h"

static struct it_env env;

static void stop_env(void)
{
	it_env_stop(&env);
}

static uint64_t rng = 88172645463325252ULL;

/* n pseudo-random characters of A-Za-z0-9 (compressible to ~75%). */
static char *rand_text(size_t n)
{
	static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	char *s = malloc(n + 1);
	ck_assert_ptr_nonnull(s);
	for (size_t i = 0; i < n; i++) {
		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		s[i] = al[(rng >> 33) % 62];
	}
	s[n] = '\0';
	return s;
}

/* A JSON number out of phxsim's STATS answer; -1 when absent. */
static long long stat_of(const char *name)
{
	const char *st = it_ctl(&env, "STATS");
	char key[64];
	snprintf(key, sizeof(key), "\"%s\":", name);
	const char *p = strstr(st, key);
	return p ? atoll(p + strlen(key)) : -1;
}

/* PUSH echo of a {"data":"<n random chars>"} payload; the reply must be
 * the same object.  Returns nothing; fails the test on a mismatch. */
static void big_echo(struct it_client *c, const char *topic, size_t n)
{
	char *data = rand_text(n);
	size_t cap = n + 256;
	char *line = malloc(cap), *want = malloc(cap);
	int k = snprintf(line, cap, "PUSH %s echo {\"data\":\"%s\"}\n", topic, data);
	snprintf(want, cap, "OK PUSH %s {\"data\":\"%s\"}", topic, data);
	it_send_raw(c, line, (size_t)k);
	const char *l = it_line(c, IT_TIMEOUT_MS);
	ck_assert_ptr_nonnull(l);
	ck_assert_uint_eq(strlen(l), strlen(want));
	ck_assert(strcmp(l, want) == 0);
	free(data);
	free(line);
	free(want);
}

/* BPUSH of n random bytes; the binary echo must carry them back. */
static void big_becho(struct it_client *c, const char *topic, size_t n)
{
	struct buf raw, b64;
	buf_init(&raw, 0);
	buf_init(&b64, 0);
	char *t = rand_text(n);
	for (size_t i = 0; i < n; i++)
		t[i] = (char)(t[i] * 31 + (int)i); /* binary, not text */
	ck_assert_int_eq(buf_append(&raw, t, n), 0);
	ck_assert_int_eq(b64_encode(&b64, buf_rptr(&raw), n), 0);
	buf_putc(&b64, '\0');
	size_t cap = buf_len(&b64) + 256;
	char *line = malloc(cap), *want = malloc(cap);
	int k = snprintf(line, cap, "BPUSH %s bin %s\n", topic, buf_rptr(&b64));
	snprintf(want, cap, "BOK BPUSH %s %s", topic, buf_rptr(&b64));
	it_send_raw(c, line, (size_t)k);
	const char *l = it_line(c, IT_TIMEOUT_MS);
	ck_assert_ptr_nonnull(l);
	ck_assert(strcmp(l, want) == 0);
	free(t);
	free(line);
	free(want);
	buf_free(&raw);
	buf_free(&b64);
}

/* The usual traffic: join, push and reply, pushes from the server, a
 * broadcast, binary both ways. */
static void basic_traffic(struct it_client *c, const char *topic)
{
	char want[256];
	it_send(c, "JOIN %s {\"user\":\"ann\"}", topic);
	snprintf(want, sizeof(want), "OK JOIN %s {\"user\":\"ann\"}", topic);
	IT_EXPECT(c, want);
	for (int i = 0; i < 20; i++) {
		it_send(c, "PUSH %s echo {\"n\":%d,\"body\":\"hello hello hello\"}", topic, i);
		snprintf(want, sizeof(want), "OK PUSH %s {\"n\":%d,\"body\":\"hello hello hello\"}",
			 topic, i);
		IT_EXPECT(c, want);
	}
	it_send(c, "PUSH %s push_me {\"x\":1}", topic);
	snprintf(want, sizeof(want), "EVENT %s pushed {\"x\":1}", topic);
	IT_EXPECT(c, want);
	snprintf(want, sizeof(want), "OK PUSH %s {}", topic);
	IT_EXPECT(c, want);
	it_send(c, "PUSH %s shout {\"msg\":\"hi all\"}", topic);
	snprintf(want, sizeof(want), "EVENT %s shout {\"msg\":\"hi all\"}", topic);
	IT_EXPECT(c, want);
	snprintf(want, sizeof(want), "OK PUSH %s {}", topic);
	IT_EXPECT(c, want);
	ck_assert_str_eq(it_ctl(&env, "BROADCAST %s news {\"n\":42}", topic), "OK 1");
	snprintf(want, sizeof(want), "EVENT %s news {\"n\":42}", topic);
	IT_EXPECT(c, want);
	it_send(c, "BPUSH %s bin 3q2+7w==", topic);
	snprintf(want, sizeof(want), "BOK BPUSH %s 3q2+7w==", topic);
	IT_EXPECT(c, want);
	ck_assert_str_eq(it_ctl(&env, "BBROADCAST %s blob AAEC/w==", topic), "OK 1");
	snprintf(want, sizeof(want), "BEVENT %s blob AAEC/w==", topic);
	IT_EXPECT(c, want);
}

/* FLOOD of count messages of about size bytes each: every one arrives,
 * whole and in order. */
static void flood_arrives(struct it_client *c, const char *topic, int count, int size)
{
	ck_assert_str_eq(it_ctl(&env, "FLOOD %s fl %d %d", topic, count, size), "OK 1");
	for (int i = 0; i < count; i++) {
		const char *l = it_line(c, IT_TIMEOUT_MS);
		char pfx[128];
		ck_assert_ptr_nonnull(l);
		int k = snprintf(pfx, sizeof(pfx), "EVENT %s fl {\"seq\":%d,\"pad\":\"xxx", topic, i);
		ck_assert_msg(strncmp(l, pfx, (size_t)k) == 0, "got '%.80s'", l);
		ck_assert(strcmp(l + strlen(l) - 2, "\"}") == 0);
		ck_assert_uint_gt(strlen(l), (size_t)size - 16);
		ck_assert_uint_lt(strlen(l), (size_t)size + 64);
	}
}

/* ---- compression on both sides ------------------------------------------ */

static void start_compressed(void)
{
	it_env_start(&env, "--compression", NULL, "compression = true\n");
}

START_TEST(compressed_traffic)
{
	struct it_client *c = it_connect(&env);
	basic_traffic(c, "room:z");
	ck_assert_int_ge(stat_of("compressed_connections"), 1);
	/* everything both ways went compressed: pushes in, replies out */
	ck_assert_int_ge(stat_of("compressed_in"), 24);
	ck_assert_int_ge(stat_of("compressed_out"), 26);
	it_close(c);
}
END_TEST

START_TEST(compressed_large)
{
	struct it_client *c = it_connect(&env);
	it_send(c, "JOIN room:big");
	IT_EXPECT(c, "OK JOIN room:big {}");
	big_echo(c, "room:big", 1);
	big_echo(c, "room:big", 70000);
	big_echo(c, "room:big", 300000);
	big_becho(c, "room:big", 100000);
	flood_arrives(c, "room:big", 5, 200000);
	/* 200 KB of 'x' each: the wire saw a tiny fraction of the payload */
	long long out = stat_of("ws_bytes_out"), pl = stat_of("payload_out");
	ck_assert_int_gt(pl, 1000000);
	ck_assert_int_lt(out, pl / 2);
	it_close(c);
}
END_TEST

/* phxsim sends in frames of N bytes: RSV1 on the first frame only, the
 * rest continuation frames; phxd must reassemble and then inflate. */
START_TEST(compressed_fragmented)
{
	struct it_client *c = it_connect(&env);
	static const int sizes[] = { 1, 7, 1000, 4096 };
	it_send(c, "JOIN room:frag");
	IT_EXPECT(c, "OK JOIN room:frag {}");
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		ck_assert_str_eq(it_ctl(&env, "FRAGMENT %d", sizes[i]), "OK");
		big_echo(c, "room:frag", sizes[i] == 1 ? 3000 : 200000);
		big_becho(c, "room:frag", sizes[i] == 1 ? 2000 : 50000);
		it_send(c, "PUSH room:frag echo {\"small\":true}");
		IT_EXPECT(c, "OK PUSH room:frag {\"small\":true}");
	}
	ck_assert_str_eq(it_ctl(&env, "FRAGMENT 3000"), "OK");
	flood_arrives(c, "room:frag", 20, 100000);
	ck_assert_str_eq(it_ctl(&env, "FRAGMENT 0"), "OK");
	/* they really went in pieces: 3000 one-byte frames at least */
	ck_assert_int_ge(stat_of("fragmented_out"), 8);
	ck_assert_int_gt(stat_of("fragments_out"), 3000 + stat_of("fragmented_out"));
	it_close(c);
}
END_TEST

/* A frame with RSV1 that is not deflate data: phxd closes that connection
 * with the reason, connects again and rejoins. */
START_TEST(corrupt_frame_reconnects)
{
	struct it_client *c = it_connect(&env);
	it_send(c, "JOIN room:bad {\"k\":1}");
	IT_EXPECT(c, "OK JOIN room:bad {\"k\":1}");
	long long accepted = stat_of("accepted");
	ck_assert_str_eq(it_ctl(&env, "CORRUPT room:bad"), "OK 1");
	IT_EXPECT(c, "STATE room:bad rejoining {\"reason\":\"disconnected\",\"detail\":"
		  "\"corrupt compressed text message from the server: invalid block type\"}");
	IT_EXPECT(c, "STATE room:bad rejoined {\"k\":1}");
	ck_assert_int_gt(stat_of("accepted"), accepted);
	ck_assert_int_ge(stat_of("compressed_connections"), 1);
	it_send(c, "PUSH room:bad echo {\"after\":true}");
	IT_EXPECT(c, "OK PUSH room:bad {\"after\":true}");
	/* again: the fresh connection's codec is fresh too */
	ck_assert_str_eq(it_ctl(&env, "CORRUPT room:bad"), "OK 1");
	IT_EXPECT_PREFIX(c, "STATE room:bad rejoining ");
	IT_EXPECT(c, "STATE room:bad rejoined {\"k\":1}");
	big_echo(c, "room:bad", 50000);
	it_close(c);
}
END_TEST

/* ---- a decompression bomb ----------------------------------------------------- */

static void start_small_frames(void)
{
	it_env_start(&env, "--compression", NULL, "compression = true\nmax_frame = 64k\n");
}

/* 1 MB of 'x' is about 1 KB compressed: under max_frame on the wire, far
 * over it inflated.  phxd stops inflating at the limit and closes. */
START_TEST(decompression_bomb)
{
	struct it_client *c = it_connect(&env);
	it_send(c, "JOIN room:bomb");
	IT_EXPECT(c, "OK JOIN room:bomb {}");
	flood_arrives(c, "room:bomb", 2, 60000); /* under the limit: fine */
	ck_assert_str_eq(it_ctl(&env, "FLOOD room:bomb fl 1 1000000"), "OK 1");
	const char *l = it_line(c, IT_TIMEOUT_MS);
	ck_assert_ptr_nonnull(l);
	ck_assert_msg(strstr(l, "STATE room:bomb rejoining {\"reason\":\"disconnected\"") == l &&
		      strstr(l, "inflates past max_frame (65536 bytes)"), "got '%s'", l);
	IT_EXPECT(c, "STATE room:bomb rejoined {}");
	it_send(c, "PUSH room:bomb echo {}");
	IT_EXPECT(c, "OK PUSH room:bomb {}");
	it_close(c);
}
END_TEST

/* ---- one side without compression ----------------------------------------------- */

static void start_declined(void)
{
	it_env_start(&env, NULL, NULL, "compression = true\n");
}

START_TEST(server_declines)
{
	struct it_client *c = it_connect(&env);
	basic_traffic(c, "room:plain");
	big_echo(c, "room:plain", 100000);
	ck_assert_int_eq(stat_of("compressed_connections"), 0);
	ck_assert_int_eq(stat_of("compressed_in"), 0);
	ck_assert_int_eq(stat_of("compressed_out"), 0);
	it_close(c);
}
END_TEST

static void start_client_plain(void)
{
	it_env_start(&env, "--compression", NULL, NULL);
}

START_TEST(client_does_not_offer)
{
	struct it_client *c = it_connect(&env);
	basic_traffic(c, "room:plain2");
	ck_assert_int_eq(stat_of("compressed_connections"), 0);
	ck_assert_int_eq(stat_of("compressed_in"), 0);
	it_close(c);
}
END_TEST

/* ---- every parameter, honoured strictly by phxsim ------------------------------- */

static void start_params(void)
{
	it_env_start(&env, "--compression --fragment 500", NULL,
		     "compression = true\ncompression_level = 1\n"
		     "client_no_context_takeover = true\nserver_no_context_takeover = true\n"
		     "client_max_window_bits = 9\nserver_max_window_bits = 10\n");
}

/* phxsim inflates with the client's 9-bit window and resets after every
 * message: a phxd that kept context or used a larger window would be caught
 * (phxsim closes with 1007 and the joins would be lost). */
START_TEST(params_honoured)
{
	struct it_client *c = it_connect(&env);
	basic_traffic(c, "room:p");
	for (int i = 0; i < 5; i++)
		big_echo(c, "room:p", 20000);
	big_becho(c, "room:p", 30000);
	flood_arrives(c, "room:p", 10, 5000);
	ck_assert_int_eq(stat_of("accepted"), 1); /* never reconnected */
	ck_assert_int_gt(stat_of("fragments_out"), stat_of("fragmented_out"));
	ck_assert_int_ge(stat_of("compressed_in"), 30);
	it_close(c);
}
END_TEST

/* ---- fragments without compression ---------------------------------------------- */

static void start_fragmented(void)
{
	it_env_start(&env, "--fragment 100", NULL, NULL);
}

START_TEST(plain_fragmented)
{
	struct it_client *c = it_connect(&env);
	basic_traffic(c, "room:f");
	big_echo(c, "room:f", 100000);
	big_becho(c, "room:f", 20000);
	flood_arrives(c, "room:f", 10, 3000);
	/* the 100000-byte reply alone is 1001 frames */
	ck_assert_int_ge(stat_of("fragmented_out"), 12);
	ck_assert_int_gt(stat_of("fragments_out"), 1300);
	it_close(c);
}
END_TEST

/* ---- TCP options ------------------------------------------------------------------ */

static void start_tcp(void)
{
	it_env_start(&env, "--compression", NULL,
		     "tcp_nodelay = false\ntcp_keepalive = true\ntcp_keepalive_idle = 5s\n"
		     "tcp_keepalive_interval = 2s\ntcp_keepalive_count = 3\n"
		     "tcp_sndbuf = 32k\ntcp_rcvbuf = 48k\ncompression = true\npool_size = 1\n");
}

/* ss(8) shows phxd's side of the upstream connection (destination port =
 * phxsim's): the buffer sizes it set (tb, rb: twice the value on Linux) and
 * the keepalive timer.  "" when ss is missing. */
static const char *ss_upstream(char *out, size_t cap)
{
	char cmd[256];
	out[0] = '\0';
	if (!it_which("ss"))
		return out;
	snprintf(cmd, sizeof(cmd), "ss -tnmo state established '( dport = :%d )' 2>/dev/null",
		 env.port);
	FILE *f = popen(cmd, "r");
	ck_assert_ptr_nonnull(f);
	size_t n = fread(out, 1, cap - 1, f);
	out[n] = '\0';
	pclose(f);
	/* the connection is there: the check below is not vacuous */
	char port[16];
	snprintf(port, sizeof(port), ":%d", env.port);
	ck_assert_msg(strstr(out, port) != NULL, "ss shows no upstream: '%s'", out);
	return out;
}

START_TEST(tcp_options_run)
{
	struct it_client *c = it_connect(&env);
	basic_traffic(c, "room:tcp");
	big_echo(c, "room:tcp", 200000);
	char ss[8192];
	if (*ss_upstream(ss, sizeof(ss))) {
		ck_assert_msg(strstr(ss, "timer:(keepalive,") != NULL, "ss: %s", ss);
		ck_assert_msg(strstr(ss, "rb98304,") != NULL, "ss: %s", ss);
		ck_assert_msg(strstr(ss, "tb65536,") != NULL, "ss: %s", ss);
	}
	/* and again after a reconnect */
	it_ctl(&env, "DROP");
	IT_EXPECT_PREFIX(c, "STATE room:tcp rejoining ");
	IT_EXPECT(c, "STATE room:tcp rejoined {\"user\":\"ann\"}");
	it_send(c, "PUSH room:tcp echo {\"again\":1}");
	IT_EXPECT(c, "OK PUSH room:tcp {\"again\":1}");
	if (*ss_upstream(ss, sizeof(ss)))
		ck_assert_msg(strstr(ss, "rb98304,") != NULL, "ss: %s", ss);
	it_close(c);
}
END_TEST

static void start_tcp_off(void)
{
	it_env_start(&env, NULL, NULL, "tcp_keepalive = false\ntcp_nodelay = true\npool_size = 1\n");
}

START_TEST(tcp_keepalive_off)
{
	struct it_client *c = it_connect(&env);
	basic_traffic(c, "room:ka");
	char ss[8192];
	if (*ss_upstream(ss, sizeof(ss))) {
		ck_assert_msg(strstr(ss, "keepalive") == NULL, "ss: %s", ss);
	}
	it_close(c);
}
END_TEST

/* ---- a TLS endpoint that breaks the handshake ----------------------------------- */

static int tls_lfd = -1;		/* the test's own listener */
static char tls_log[300];		/* phxd's stderr */

/* phxsim for endpoint main, and endpoint "breaking": a TCP listener of
 * this test's that accepts and then breaks the TLS handshake (the test body
 * says how).  phxd's stderr goes to tls_log. */
static void start_tls_break(void)
{
	char ep[512], wrap[512], *argv[32];
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);

	it_env_prepare(&env);
	it_sim_start(&env, NULL);
	tls_lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(tls_lfd, 0);
	ck_assert_int_eq(bind(tls_lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(tls_lfd, 16), 0);
	ck_assert_int_eq(getsockname(tls_lfd, (struct sockaddr *)&sa, &sl), 0);
	snprintf(ep, sizeof(ep), "\n[endpoint breaking]\nurl = wss://127.0.0.1:%d/socket\n"
		 "connect_timeout = 2s\njoin_timeout = 1500ms\nreconnect_backoff = 200,300\n",
		 ntohs(sa.sin_port));
	it_write_conf(&env, NULL, ep);
	snprintf(tls_log, sizeof(tls_log), "%s/phxd.log", env.dir);
	int lfd = open(tls_log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
	ck_assert_int_ge(lfd, 0);
	int argc = it_wrapper_argv(wrap, sizeof(wrap), argv, 24);
	argv[argc++] = (char *)it_env_or("PHXD_BIN", "./phxd");
	argv[argc++] = "-c";
	argv[argc++] = env.conf;
	argv[argc] = NULL;
	env.phxd = it_spawn(argv, NULL, lfd);
	close(lfd);
	ck_assert_msg(it_wait_listening(env.sock, env.phxd, IT_TIMEOUT_MS), "phxd did not start");
}

static void stop_tls_break(void)
{
	if (tls_lfd >= 0)
		close(tls_lfd);
	tls_lfd = -1;
	unlink(tls_log);
	it_env_stop(&env);
}

/* 1 when phxd's log holds needle. */
static int log_has(const char *needle)
{
	char line[1024];
	int found = 0;
	FILE *f = fopen(tls_log, "r");
	ck_assert_ptr_nonnull(f);
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, needle) != NULL;
	fclose(f);
	return found;
}

/* Accepts one connection, reads what the client sends first (its TLS
 * ClientHello: a handshake record, 0x16), then breaks it: rst → close with
 * SO_LINGER 0 (the kernel sends RST), else → a line of garbage, then close.
 * Returns 1 when a ClientHello came. */
static int break_one(int rst)
{
	unsigned char hello[4096];
	int fd = accept4(tls_lfd, NULL, NULL, SOCK_CLOEXEC);
	ck_assert_msg(fd >= 0, "accept: %s", strerror(errno));
	struct pollfd p = { fd, POLLIN, 0 };
	ssize_t n = poll(&p, 1, IT_TIMEOUT_MS) == 1 ? read(fd, hello, sizeof(hello)) : -1;
	if (rst) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };
		ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	} else {
		static const char junk[] = "HTTP/1.1 400 Not TLS at all\r\n\r\n";
		ssize_t w = write(fd, junk, sizeof(junk) - 1);
		(void)w;
	}
	close(fd);
	return n > 5 && hello[0] == 0x16;
}

/* While the handshake breaks every time: the JOIN waiting on that endpoint
 * gets ERR JOIN "upstream unavailable" with the TLS reason, phxd logs it,
 * tries again with backoff (several attempts, not a busy loop), and keeps
 * serving the other endpoint. */
static void handshake_breaks(int rst)
{
	struct it_client *c = it_connect(&env);
	const char *topic = rst ? "room:rst" : "room:junk";
	char pfx[128];
	it_send(c, "USE breaking");
	IT_EXPECT(c, "OK USE breaking {}");
	it_send(c, "JOIN %s", topic);
	snprintf(pfx, sizeof(pfx), "ERR JOIN %s {\"reason\":\"upstream unavailable\",\"detail\":\"",
		 topic);
	int accepts = 0, hellos = 0, answered = 0;
	long first = -1, end = it_now_ms() + 2 * IT_TIMEOUT_MS;
	/* watch for 3 s after the first attempt (and until the JOIN is answered) */
	while (!answered || first < 0 || it_now_ms() < first + 3000) {
		ck_assert_msg(it_now_ms() < end, "after %d attempts, JOIN %sanswered", accepts,
			      answered ? "" : "not ");
		struct pollfd p[2] = { { tls_lfd, POLLIN, 0 }, { c->fd, POLLIN, 0 } };
		if (poll(p, 2, 50) <= 0)
			continue;
		if (p[0].revents) {
			hellos += break_one(rst);
			if (accepts++ == 0)
				first = it_now_ms();
		}
		if (p[1].revents) {
			const char *l = it_line(c, IT_TIMEOUT_MS);
			ck_assert_ptr_nonnull(l);
			ck_assert_msg(!answered, "a second answer: '%s'", l);
			ck_assert_msg(strncmp(l, pfx, strlen(pfx)) == 0 &&
				      strstr(l, "TLS handshake with 127.0.0.1: "), "got '%s'", l);
			fprintf(stderr, "%s: %s\n", rst ? "tls_handshake_reset" : "tls_handshake_garbage", l);
			answered = 1;
		}
	}
	fprintf(stderr, "%s: %d connection attempts in the 3 s after the first\n",
		rst ? "tls_handshake_reset" : "tls_handshake_garbage", accepts);
	/* tried again, with the backoff (200, 300 ms + jitter: about 10 in 3 s),
	 * not in a loop; and each time TLS got as far as its ClientHello */
	ck_assert_int_ge(accepts, 2);
	ck_assert_int_le(accepts, 40);
	ck_assert_int_eq(hellos, accepts);
	ck_assert(log_has("endpoint 'breaking': connect failed: TLS handshake with 127.0.0.1: "));
	if (rst)
		ck_assert(log_has("Connection reset by peer"));
	/* phxd keeps serving: this client, and the other endpoint */
	it_send(c, "PING");
	IT_EXPECT(c, "OK PING - {}");
	it_send(c, "USE main");
	IT_EXPECT(c, "OK USE main {}");
	it_send(c, "JOIN room:fine");
	IT_EXPECT(c, "OK JOIN room:fine {}");
	it_send(c, "PUSH room:fine echo {\"still\":\"here\"}");
	IT_EXPECT(c, "OK PUSH room:fine {\"still\":\"here\"}");
	it_close(c);
}

START_TEST(tls_handshake_reset)
{
	handshake_breaks(1);
}
END_TEST

START_TEST(tls_handshake_garbage)
{
	handshake_breaks(0);
}
END_TEST

static Suite *transport_suite(void)
{
	Suite *s = suite_create("it_transport");
	TCase *tc = tcase_create("compressed");
	tcase_add_checked_fixture(tc, start_compressed, stop_env);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, compressed_traffic);
	tcase_add_test(tc, compressed_large);
	tcase_add_test(tc, compressed_fragmented);
	tcase_add_test(tc, corrupt_frame_reconnects);
	suite_add_tcase(s, tc);

	tc = tcase_create("bomb");
	tcase_add_checked_fixture(tc, start_small_frames, stop_env);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, decompression_bomb);
	suite_add_tcase(s, tc);

	tc = tcase_create("declined");
	tcase_add_checked_fixture(tc, start_declined, stop_env);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, server_declines);
	suite_add_tcase(s, tc);

	tc = tcase_create("not offered");
	tcase_add_checked_fixture(tc, start_client_plain, stop_env);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, client_does_not_offer);
	suite_add_tcase(s, tc);

	tc = tcase_create("parameters");
	tcase_add_checked_fixture(tc, start_params, stop_env);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, params_honoured);
	suite_add_tcase(s, tc);

	tc = tcase_create("fragmented");
	tcase_add_checked_fixture(tc, start_fragmented, stop_env);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, plain_fragmented);
	suite_add_tcase(s, tc);

	tc = tcase_create("tcp");
	tcase_add_checked_fixture(tc, start_tcp, stop_env);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, tcp_options_run);
	suite_add_tcase(s, tc);

	tc = tcase_create("tls handshake breaks");
	tcase_add_checked_fixture(tc, start_tls_break, stop_tls_break);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, tls_handshake_reset);
	tcase_add_test(tc, tls_handshake_garbage);
	suite_add_tcase(s, tc);

	tc = tcase_create("tcp off");
	tcase_add_checked_fixture(tc, start_tcp_off, stop_env);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, tcp_keepalive_off);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(transport_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
