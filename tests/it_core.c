/* Integration tests: phxsim and phxd as real processes, clients on the real
 * Unix socket.  Each test starts its own pair. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "it_util.h"

static struct it_env env;

static void start_default(void)
{
	it_env_start(&env, NULL, NULL, NULL);
}

static void stop_env(void)
{
	it_env_stop(&env);
}

START_TEST(join_push_reply)
{
	struct it_client *c = it_connect(&env);
	it_send(c, "JOIN room:lobby {\"user\":\"ann\"}");
	IT_EXPECT(c, "OK JOIN room:lobby {\"user\":\"ann\"}");
	it_send(c, "PUSH room:lobby echo {\"hello\": \"world\"}");
	IT_EXPECT(c, "OK PUSH room:lobby {\"hello\":\"world\"}");
	it_send(c, "@t1 push room:lobby echo [1, 2]");
	IT_EXPECT(c, "OK @t1 PUSH room:lobby [1,2]");
	it_send(c, "PUSH room:lobby echo");
	IT_EXPECT(c, "OK PUSH room:lobby {}");
	it_send(c, "PUSH room:lobby fail {}");
	IT_EXPECT(c, "ERR PUSH room:lobby {\"reason\":\"failed\"}");
	it_send(c, "PUSH room:lobby push_me {\"x\":1}");
	IT_EXPECT(c, "EVENT room:lobby pushed {\"x\":1}");
	IT_EXPECT(c, "OK PUSH room:lobby {}");
	it_send(c, "TOPICS");
	IT_EXPECT(c, "OK TOPICS - {\"topics\":[{\"topic\":\"room:lobby\",\"endpoint\":\"main\",\"upstream\":0,\"state\":\"joined\"}]}");
	it_send(c, "PING");
	IT_EXPECT(c, "OK PING - {}");
	it_send(c, "QUIT");
	IT_EXPECT(c, "OK QUIT - {}");
	ck_assert(it_wait_eof(c, IT_TIMEOUT_MS));
	it_close(c);
}
END_TEST

START_TEST(fanout_one_upstream_join)
{
	struct it_client *c[3];
	for (int i = 0; i < 3; i++)
		c[i] = it_connect(&env);
	/* JOIN and PING in one write: once PING is answered, the JOIN has been
	 * read (its reply needs a round trip to the server, PING's does not) */
	it_send(c[0], "@j0 JOIN room:fan {\"n\":0}\nPING");
	IT_EXPECT(c[0], "OK PING - {}");
	for (int i = 1; i < 3; i++)
		it_send(c[i], "@j%d JOIN room:fan {\"n\":%d}", i, i);
	/* everybody gets the first joiner's join response */
	for (int i = 0; i < 3; i++) {
		char want[128];
		snprintf(want, sizeof(want), "OK @j%d JOIN room:fan {\"n\":0}", i);
		IT_EXPECT(c[i], want);
	}
	ck_assert_str_eq(it_ctl(&env, "CHANNELS room:fan"), "OK 1");
	ck_assert_str_eq(it_ctl(&env, "BROADCAST room:fan news {\"n\":42}"), "OK 1");
	for (int i = 0; i < 3; i++)
		IT_EXPECT(c[i], "EVENT room:fan news {\"n\":42}");
	it_send(c[1], "PUSH room:fan shout {\"msg\":\"hi all\"}");
	for (int i = 0; i < 3; i++)
		IT_EXPECT(c[i], "EVENT room:fan shout {\"msg\":\"hi all\"}");
	IT_EXPECT(c[1], "OK PUSH room:fan {}");
	/* one client cannot leave (or rejoin) the shared channel for the others */
	it_send(c[2], "PUSH room:fan phx_leave {}");
	IT_EXPECT(c[2], "ERR PUSH room:fan {\"reason\":\"reserved event\"}");
	it_send(c[2], "PUSH room:fan phx_join {}");
	IT_EXPECT(c[2], "ERR PUSH room:fan {\"reason\":\"reserved event\"}");
	ck_assert_str_eq(it_ctl(&env, "CHANNELS room:fan"), "OK 1");
	it_ctl(&env, "BROADCAST room:fan news {\"n\":44}");
	for (int i = 0; i < 3; i++)
		IT_EXPECT(c[i], "EVENT room:fan news {\"n\":44}");
	/* leave: the upstream join stays while someone is joined */
	it_send(c[0], "LEAVE room:fan");
	IT_EXPECT(c[0], "OK LEAVE room:fan {}");
	it_send(c[2], "LEAVE room:fan");
	IT_EXPECT(c[2], "OK LEAVE room:fan {}");
	ck_assert_str_eq(it_ctl(&env, "CHANNELS room:fan"), "OK 1");
	it_ctl(&env, "BROADCAST room:fan news {\"n\":43}");
	IT_EXPECT(c[1], "EVENT room:fan news {\"n\":43}");
	it_send(c[0], "PING");
	IT_EXPECT(c[0], "OK PING - {}");   /* no event for a client that left */
	/* the last one leaves by disconnecting */
	it_close(c[1]);
	ck_assert(it_wait_channels(&env, "room:fan", 0, IT_TIMEOUT_MS));
	it_close(c[0]);
	it_close(c[2]);
}
END_TEST

START_TEST(join_refused)
{
	struct it_client *c = it_connect(&env);
	it_send(c, "JOIN private:x");
	IT_EXPECT(c, "ERR JOIN private:x {\"reason\":\"unauthorized\"}");
	it_send(c, "JOIN private:y {\"token\":\"secret\"}");
	IT_EXPECT(c, "OK JOIN private:y {\"token\":\"secret\"}");
	ck_assert_str_eq(it_ctl(&env, "REFUSE 1"), "OK");
	it_send(c, "@a JOIN room:r");
	IT_EXPECT(c, "ERR @a JOIN room:r {\"reason\":\"refused\"}");
	it_send(c, "@b JOIN room:r");
	IT_EXPECT(c, "OK @b JOIN room:r {}");
	it_send(c, "JOIN room:r");
	IT_EXPECT(c, "ERR JOIN room:r {\"reason\":\"already joined\"}");
	it_send(c, "PUSH room:other echo {}");
	IT_EXPECT(c, "ERR PUSH room:other {\"reason\":\"not joined\"}");
	it_close(c);
}
END_TEST

START_TEST(binary_both_ways)
{
	struct it_client *c = it_connect(&env);
	it_send(c, "JOIN room:bin");
	IT_EXPECT(c, "OK JOIN room:bin {}");
	it_send(c, "BPUSH room:bin bin 3q2+7w==");
	IT_EXPECT(c, "BOK BPUSH room:bin 3q2+7w==");
	ck_assert_str_eq(it_ctl(&env, "BBROADCAST room:bin blob AAEC/w=="), "OK 1");
	IT_EXPECT(c, "BEVENT room:bin blob AAEC/w==");
	it_send(c, "BPUSH room:bin bin not*base64");
	IT_EXPECT(c, "ERR BPUSH room:bin {\"reason\":\"invalid base64\"}");
	it_close(c);
}
END_TEST

START_TEST(pipelined_join_and_push)
{
	struct it_client *c = it_connect(&env);
	const char *lines = "JOIN room:p\nPUSH room:p echo {\"a\":1}\nPUSH room:p echo {\"a\":2}\n";
	it_send_raw(c, lines, strlen(lines));
	IT_EXPECT(c, "OK JOIN room:p {}");
	IT_EXPECT(c, "OK PUSH room:p {\"a\":1}");
	IT_EXPECT(c, "OK PUSH room:p {\"a\":2}");
	it_close(c);
}
END_TEST

START_TEST(bad_input_lines)
{
	struct it_client *c = it_connect(&env);
	it_send(c, "FROB x");
	IT_EXPECT(c, "ERR ? - {\"reason\":\"unknown verb\"}");
	it_send(c, "JOIN room:b");
	IT_EXPECT(c, "OK JOIN room:b {}");
	it_send(c, "PUSH room:b echo {\"unterminated\":");
	IT_EXPECT(c, "ERR PUSH room:b {\"reason\":\"invalid json\"}");
	it_send(c, "JOIN");
	IT_EXPECT_PREFIX(c, "ERR JOIN - {\"reason\":\"missing topic\"");
	it_send_raw(c, "PUSH room:b echo \"\xff\xfe\"\n", 22);
	IT_EXPECT(c, "ERR ? - {\"reason\":\"invalid utf-8\"}");
	it_send(c, "JOIN {\"a\":1}");
	IT_EXPECT(c, "ERR JOIN - {\"reason\":\"missing topic\"}");
	it_send(c, "TOPICS");
	IT_EXPECT(c, "OK TOPICS - {\"topics\":[{\"topic\":\"room:b\",\"endpoint\":\"main\",\"upstream\":0,\"state\":\"joined\"}]}");
	/* a line over max_line (4096 here) is dropped whole, with one error */
	char *big = malloc(10001);
	memset(big, 'x', 10000);
	big[10000] = '\n';
	it_send_raw(c, big, 10001);
	free(big);
	IT_EXPECT(c, "ERR ? - {\"reason\":\"line too long\",\"detail\":\"limit is 4096 bytes\"}");
	it_send(c, "@ok PUSH room:b echo {\"still\":\"here\"}");
	IT_EXPECT(c, "OK @ok PUSH room:b {\"still\":\"here\"}");
	it_close(c);
}
END_TEST

START_TEST(push_timeout)
{
	struct it_client *c = it_connect(&env);
	it_send(c, "JOIN room:t");
	IT_EXPECT(c, "OK JOIN room:t {}");
	it_send(c, "@slow PUSH room:t noreply {}");
	it_send(c, "@fast PUSH room:t echo {}");
	IT_EXPECT(c, "OK @fast PUSH room:t {}");
	IT_EXPECT(c, "ERR @slow PUSH room:t {\"reason\":\"timeout\",\"detail\":\"no reply from the server\"}");
	it_close(c);
}
END_TEST

START_TEST(reconnect_and_rejoin)
{
	struct it_client *c = it_connect(&env);
	struct it_client *d = it_connect(&env);
	it_send(c, "JOIN room:re");
	IT_EXPECT(c, "OK JOIN room:re {}");
	it_send(d, "JOIN room:other {\"k\":1}");
	IT_EXPECT(d, "OK JOIN room:other {\"k\":1}");
	/* two topics: spread over two connections of the pool */
	ck_assert_str_eq(it_ctl(&env, "DROP"), "OK 2");
	IT_EXPECT_PREFIX(c, "STATE room:re rejoining {\"reason\":\"disconnected\"");
	IT_EXPECT(c, "STATE room:re rejoined {}");
	IT_EXPECT_PREFIX(d, "STATE room:other rejoining ");
	IT_EXPECT(d, "STATE room:other rejoined {\"k\":1}");
	it_send(c, "PUSH room:re echo {\"after\":1}");
	IT_EXPECT(c, "OK PUSH room:re {\"after\":1}");
	ck_assert(strstr(it_ctl(&env, "STATS"), "\"accepted\":4") != NULL);
	/* again, several times in a row */
	for (int i = 0; i < 5; i++) {
		it_ctl(&env, "DROP");
		IT_EXPECT_PREFIX(c, "STATE room:re rejoining ");
		IT_EXPECT(c, "STATE room:re rejoined {}");
	}
	it_ctl(&env, "BROADCAST room:re ev {\"n\":1}");
	IT_EXPECT(c, "EVENT room:re ev {\"n\":1}");
	it_close(c);
	it_close(d);
}
END_TEST

START_TEST(channel_crash_rejoins)
{
	struct it_client *c = it_connect(&env);
	it_send(c, "JOIN room:crash");
	IT_EXPECT(c, "OK JOIN room:crash {}");
	it_send(c, "PUSH room:crash crash {}");
	IT_EXPECT(c, "STATE room:crash rejoining {\"reason\":\"channel error\"}");
	IT_EXPECT_PREFIX(c, "ERR PUSH room:crash {\"reason\":\"channel error\"");
	IT_EXPECT(c, "STATE room:crash rejoined {}");
	it_send(c, "PUSH room:crash echo {}");
	IT_EXPECT(c, "OK PUSH room:crash {}");
	ck_assert_str_eq(it_ctl(&env, "KICK room:crash"), "OK 1");
	IT_EXPECT(c, "STATE room:crash closed {\"reason\":\"closed by server\"}");
	it_send(c, "PUSH room:crash echo {}");
	IT_EXPECT(c, "ERR PUSH room:crash {\"reason\":\"not joined\"}");
	it_close(c);
}
END_TEST

/* The dropped slow client's last lines: reads to EOF; every whole line is
 * the next event of the flood (from i = 0, none lost in between) or, once
 * and last, BYE {"reason":"output queue full"} (docs/PROTOCOL.md: sent best
 * effort; a piece of a line may follow the events when there is no BYE).
 * Returns 1 when the BYE came. */
static int slow_consumer_tail(struct it_client *c)
{
	static const char bye[] = "BYE {\"reason\":\"output queue full\"}";
	int next = 0, got_bye = 0;
	const char *l;
	while ((l = it_line(c, IT_TIMEOUT_MS)) != NULL) {
		char pfx[64];
		ck_assert_msg(!got_bye, "'%.80s' after the BYE", l);
		if (strcmp(l, bye) == 0) {
			got_bye = 1;
			continue;
		}
		int k = snprintf(pfx, sizeof(pfx), "EVENT room:flood ev {\"i\":%d,\"pad\":\"ppp", next);
		ck_assert_msg(strncmp(l, pfx, (size_t)k) == 0, "expected '%s...', got '%.80s'", pfx, l);
		next++;
	}
	/* it_line() stopped at EOF, not for want of a line: phxd closed it */
	ck_assert_msg(it_wait_eof(c, IT_TIMEOUT_MS), "the slow client was not disconnected");
	ck_assert_msg(next > 0 && next < 2000, "the slow client got %d events", next);
	ck_assert_msg(!got_bye || c->len == 0, "%zu bytes after the BYE", c->len);
	return got_bye;
}

/* ---- push_buffer = 3: pushes made while the channel is not joined ---- */

static void start_push_buffer(void)
{
	it_env_start(&env, NULL, NULL, "push_buffer = 3\n");
}

START_TEST(push_buffer_full)
{
	struct it_client *c = it_connect(&env);
	/* the join reply comes a second late: the pushes wait for it */
	ck_assert_str_eq(it_ctl(&env, "DELAY 1000"), "OK");
	const char *lines = "@j JOIN room:pb\n"
			    "@p1 PUSH room:pb echo {\"n\":1}\n"
			    "@p2 PUSH room:pb echo {\"n\":2}\n"
			    "@p3 PUSH room:pb echo {\"n\":3}\n"
			    "@p4 PUSH room:pb echo {\"n\":4}\n";
	it_send_raw(c, lines, strlen(lines));
	/* the fourth is one too many: refused at once, before the join */
	IT_EXPECT(c, "ERR @p4 PUSH room:pb {\"reason\":\"push buffer full\"}");
	ck_assert_str_eq(it_ctl(&env, "DELAY 0"), "OK");
	/* joined: the three buffered ones go out and are answered in order */
	IT_EXPECT(c, "OK @j JOIN room:pb {}");
	IT_EXPECT(c, "OK @p1 PUSH room:pb {\"n\":1}");
	IT_EXPECT(c, "OK @p2 PUSH room:pb {\"n\":2}");
	IT_EXPECT(c, "OK @p3 PUSH room:pb {\"n\":3}");
	/* a joined channel sends at once: more than push_buffer in flight */
	const char *five = "@q1 PUSH room:pb echo {}\n@q2 PUSH room:pb echo {}\n"
			   "@q3 PUSH room:pb echo {}\n@q4 PUSH room:pb echo {}\n"
			   "@q5 PUSH room:pb echo {}\n";
	it_send_raw(c, five, strlen(five));
	for (int i = 1; i <= 5; i++) {
		char want[64];
		snprintf(want, sizeof(want), "OK @q%d PUSH room:pb {}", i);
		IT_EXPECT(c, want);
	}
	/* the same bound while the channel rejoins after a crash: the rejoin
	 * waits out rejoin_backoff and its reply DELAY */
	ck_assert_str_eq(it_ctl(&env, "DELAY 1000"), "OK");
	ck_assert_str_eq(it_ctl(&env, "CRASH room:pb"), "OK 1");
	IT_EXPECT(c, "STATE room:pb rejoining {\"reason\":\"channel error\"}");
	lines = "@r1 PUSH room:pb echo {\"r\":1}\n@r2 PUSH room:pb echo {\"r\":2}\n"
		"@r3 PUSH room:pb echo {\"r\":3}\n@r4 PUSH room:pb echo {\"r\":4}\n";
	it_send_raw(c, lines, strlen(lines));
	IT_EXPECT(c, "ERR @r4 PUSH room:pb {\"reason\":\"push buffer full\"}");
	ck_assert_str_eq(it_ctl(&env, "DELAY 0"), "OK");
	IT_EXPECT(c, "STATE room:pb rejoined {}");
	IT_EXPECT(c, "OK @r1 PUSH room:pb {\"r\":1}");
	IT_EXPECT(c, "OK @r2 PUSH room:pb {\"r\":2}");
	IT_EXPECT(c, "OK @r3 PUSH room:pb {\"r\":3}");
	it_close(c);
}
END_TEST

/* ---- rejoin after phx_error, with the default rejoin_backoff ---- */

/* conf.c's BACKOFF_REJOIN_DEFAULT starts at 1000 ms, and phxd's jitter
 * (25%) can shorten a step to 750 ms: nothing may come back sooner than
 * this (80% of that; a bound on a documented delay, not a speed figure). */
#define REJOIN_FIRST_MIN_MS 600
/* the second step, 2000 ms, at least 1500 ms with jitter */
#define REJOIN_SECOND_MIN_MS 1200

static void start_default_rejoin(void)
{
	it_env_start(&env, NULL, NULL, NULL);
	/* the common config sets a short rejoin_backoff: an endpoint without */
	it_stop_pid(env.phxd, 5000);
	char extra[256];
	snprintf(extra, sizeof(extra), "\n[endpoint dflt]\nurl = ws://127.0.0.1:%d/socket\n",
		 env.port);
	it_phxd_start(&env, "default_endpoint = dflt", extra);
}

START_TEST(rejoin_backoff_after_crash)
{
	struct it_client *c = it_connect(&env);
	it_send(c, "JOIN room:bo {\"v\":1}");
	IT_EXPECT(c, "OK JOIN room:bo {\"v\":1}");
	/* phx_error: rejoining at once, rejoined one backoff step later */
	long t0 = it_now_ms();
	ck_assert_str_eq(it_ctl(&env, "CRASH room:bo"), "OK 1");
	IT_EXPECT(c, "STATE room:bo rejoining {\"reason\":\"channel error\"}");
	it_send(c, "TOPICS");
	IT_EXPECT(c, "OK TOPICS - {\"topics\":[{\"topic\":\"room:bo\",\"endpoint\":\"dflt\",\"upstream\":0,\"state\":\"rejoining\"}]}");
	IT_EXPECT(c, "STATE room:bo rejoined {\"v\":1}");
	long waited = it_now_ms() - t0;
	ck_assert_msg(waited >= REJOIN_FIRST_MIN_MS, "rejoined %ld ms after the crash", waited);
	ck_assert_str_eq(it_ctl(&env, "CHANNELS room:bo"), "OK 1");
	/* the successful rejoin reset the backoff: first step again, then a
	 * refused rejoin waits the second step */
	ck_assert_str_eq(it_ctl(&env, "REFUSE 1"), "OK");
	t0 = it_now_ms();
	ck_assert_str_eq(it_ctl(&env, "CRASH room:bo"), "OK 1");
	IT_EXPECT(c, "STATE room:bo rejoining {\"reason\":\"channel error\"}");
	IT_EXPECT(c, "STATE room:bo rejoining {\"reason\":\"refused\"}");
	long t1 = it_now_ms();
	ck_assert_msg(t1 - t0 >= REJOIN_FIRST_MIN_MS, "rejoin refused %ld ms after the crash",
		      t1 - t0);
	IT_EXPECT(c, "STATE room:bo rejoined {\"v\":1}");
	waited = it_now_ms() - t1;
	ck_assert_msg(waited >= REJOIN_SECOND_MIN_MS, "rejoined %ld ms after the refusal", waited);
	it_send(c, "PUSH room:bo echo {\"back\":true}");
	IT_EXPECT(c, "OK PUSH room:bo {\"back\":true}");
	it_close(c);
}
END_TEST

/* ---- phxsim --idle-timeout 1 closes WebSockets silent for a second;
 * phxd's heartbeat (5 s) is too rare to keep them open ---- */

static void start_idle_server(void)
{
	it_env_start(&env, "--idle-timeout 1", NULL, "heartbeat_interval = 5s\n");
}

START_TEST(server_idle_close_reconnects)
{
	struct it_client *c = it_connect(&env);
	it_send(c, "JOIN room:idle {\"z\":0}");
	IT_EXPECT(c, "OK JOIN room:idle {\"z\":0}");
	for (int round = 1; round <= 2; round++) {
		/* the server closes the silent socket; phxd connects again */
		IT_EXPECT_PREFIX(c, "STATE room:idle rejoining {\"reason\":\"disconnected\"");
		IT_EXPECT(c, "STATE room:idle rejoined {\"z\":0}");
		it_send(c, "PUSH room:idle echo {\"round\":%d}", round);
		char want[64];
		snprintf(want, sizeof(want), "OK PUSH room:idle {\"round\":%d}", round);
		IT_EXPECT(c, want);
	}
	/* a fresh WebSocket each time: the first and two more */
	const char *st = it_ctl(&env, "STATS");
	ck_assert_msg(strstr(st, "\"accepted\":3") != NULL, "STATS: %s", st);
	ck_assert_str_eq(it_ctl(&env, "CHANNELS room:idle"), "OK 1");
	it_close(c);
}
END_TEST

START_TEST(slow_consumer)
{
	struct it_client *slow = it_connect(&env);
	struct it_client *fast = it_connect(&env);
	it_send(slow, "JOIN room:flood");
	IT_EXPECT(slow, "OK JOIN room:flood {}");
	it_send(fast, "JOIN room:flood");
	IT_EXPECT(fast, "OK JOIN room:flood {}");
	/* the slow client stops reading; 2000 events of ~1 KiB each pass its
	 * 64 KiB queue plus the socket buffers */
	char pad[1001];
	memset(pad, 'p', 1000);
	pad[1000] = '\0';
	int got = 0, sent = 0;
	for (int i = 0; i < 2000; i++) {
		it_ctl(&env, "BROADCAST room:flood ev {\"i\":%d,\"pad\":\"%s\"}", i, pad);
		sent++;
		if (it_wait_prefix(fast, "EVENT room:flood ev ", IT_TIMEOUT_MS))
			got++;
		/* once phxd gave up on the slow client, it has a second to read
		 * what is left: its lines, then the BYE */
		if (i % 10 == 9 && strstr(it_phxd_ctl(&env, "STATS"), "\"overflows\":1"))
			break;
	}
	ck_assert_int_eq(got, sent);
	ck_assert_msg(sent < 2000, "the slow client was never dropped");
	ck_assert_msg(slow_consumer_tail(slow), "no BYE for the slow client");
	it_send(fast, "PING");
	IT_EXPECT(fast, "OK PING - {}");
	it_close(slow);
	it_close(fast);
}
END_TEST


START_TEST(two_endpoints)
{
	struct it_client *c = it_connect(&env);
	it_send(c, "ENDPOINTS");
	IT_EXPECT_PREFIX(c, "OK ENDPOINTS - {\"default\":\"main\",\"endpoints\":[{\"name\":\"main\",");
	it_send(c, "JOIN room:two");
	IT_EXPECT(c, "OK JOIN room:two {}");
	it_send(c, "USE nope");
	IT_EXPECT(c, "ERR USE nope {\"reason\":\"unknown endpoint\"}");
	it_send(c, "USE other");
	IT_EXPECT(c, "OK USE other {}");
	/* one client may join a topic once, whatever the endpoint */
	it_send(c, "JOIN room:two");
	IT_EXPECT(c, "ERR JOIN room:two {\"reason\":\"already joined\"}");
	struct it_client *d = it_connect(&env);
	it_send(d, "USE other");
	IT_EXPECT(d, "OK USE other {}");
	it_send(d, "JOIN room:two {\"via\":\"other\"}");
	IT_EXPECT(d, "OK JOIN room:two {\"via\":\"other\"}");
	/* two endpoints: two upstream sockets joined to the topic */
	ck_assert_str_eq(it_ctl(&env, "CHANNELS room:two"), "OK 2");
	it_send(c, "TOPICS");
	IT_EXPECT(c, "OK TOPICS - {\"topics\":[{\"topic\":\"room:two\",\"endpoint\":\"main\",\"upstream\":0,\"state\":\"joined\"}]}");
	it_close(c);
	it_close(d);
	ck_assert(it_wait_channels(&env, "room:two", 0, IT_TIMEOUT_MS));
}
END_TEST

static void start_two_endpoints(void)
{
	it_env_start(&env, NULL, NULL, NULL);
	/* a second endpoint to the same server */
	it_stop_pid(env.phxd, 5000);
	char extra[256];
	snprintf(extra, sizeof(extra), "\n[endpoint other]\nurl = ws://127.0.0.1:%d/socket/\n",
		 env.port);
	it_phxd_start(&env, NULL, extra);
}

START_TEST(connect_params_and_refusal)
{
	struct it_client *c = it_connect(&env);
	/* the token param is right: joins work */
	it_send(c, "JOIN room:tok");
	IT_EXPECT(c, "OK JOIN room:tok {}");
	/* the server refuses the next upgrades: the status line is reported */
	ck_assert_str_eq(it_ctl(&env, "REJECT 1000"), "OK");
	it_ctl(&env, "DROP");
	IT_EXPECT_PREFIX(c, "STATE room:tok rejoining ");
	struct it_client *d = it_connect(&env);
	it_send(d, "JOIN room:tok2");
	const char *l = it_line(d, IT_TIMEOUT_MS);
	ck_assert_ptr_nonnull(l);
	ck_assert_msg(strstr(l, "ERR JOIN room:tok2 {\"reason\":\"upstream unavailable\"") == l &&
		      strstr(l, "403 Forbidden"), "got '%s'", l);
	ck_assert_str_eq(it_ctl(&env, "REJECT 0"), "OK");
	ck_assert_ptr_nonnull(it_wait_prefix(c, "STATE room:tok rejoined", IT_TIMEOUT_MS));
	it_close(c);
	it_close(d);
}
END_TEST

static void start_token(void)
{
	it_env_start(&env, "--require-token s3cret", NULL,
		     "param.token = s3cret\njoin_timeout = 1500ms\n");
}


/* TLS: a self-signed certificate for "localhost" made at setup. */
static char tls_dir[256];

static void make_cert(void)
{
	const char *base = getenv("PHX_TEST_TMP") ? getenv("PHX_TEST_TMP") : "/tmp";
	char cmd[2048];
	snprintf(tls_dir, sizeof(tls_dir), "%s/tls.XXXXXX", base);
	ck_assert_ptr_nonnull(mkdtemp(tls_dir));
	snprintf(cmd, sizeof(cmd),
		 "openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost "
		 "-addext subjectAltName=DNS:localhost -days 2 -keyout %s/key.pem "
		 "-out %s/cert.pem >/dev/null 2>&1", tls_dir, tls_dir);
	ck_assert_msg(system(cmd) == 0, "openssl could not make a certificate");
}

static void start_tls(void)
{
	char args[1024];
	char ep[2048];
	make_cert();
	snprintf(args, sizeof(args), "--tls-cert %s/cert.pem --tls-key %s/key.pem", tls_dir, tls_dir);
	memset(&env, 0, sizeof(env));
	it_env_start(&env, args, NULL, "join_timeout = 1500ms\n");
	/* again with four TLS endpoints (the plain one stays, unused) */
	it_stop_pid(env.phxd, 5000);
	snprintf(ep, sizeof(ep),
		 "\n[endpoint good]\nurl = wss://localhost:%d/socket\nca_file = %s/cert.pem\n"
		 "join_timeout = 3s\n"
		 "\n[endpoint untrusted]\nurl = wss://localhost:%d/socket\njoin_timeout = 1500ms\n"
		 "\n[endpoint wrongname]\nurl = wss://127.0.0.1:%d/socket\nca_file = %s/cert.pem\n"
		 "join_timeout = 1500ms\n"
		 "\n[endpoint noverify]\nurl = wss://localhost:%d/socket\ntls_verify = false\n"
		 "join_timeout = 3s\n",
		 env.port, tls_dir, env.port, env.port, tls_dir, env.port);
	/* phxd's log is read by tls_unverified_warns */
	it_phxd_start_log(&env, "default_endpoint = good", ep);
}

static void stop_tls(void)
{
	char cmd[1024];
	it_env_stop(&env);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tls_dir);
	ck_assert_int_eq(system(cmd), 0);
}

START_TEST(tls_verified)
{
	struct it_client *c = it_connect(&env);
	it_send(c, "JOIN room:tls {\"secure\":true}");
	IT_EXPECT(c, "OK JOIN room:tls {\"secure\":true}");
	it_send(c, "PUSH room:tls echo {\"over\":\"tls\"}");
	IT_EXPECT(c, "OK PUSH room:tls {\"over\":\"tls\"}");
	it_send(c, "BPUSH room:tls bin AAECAwQF");
	IT_EXPECT(c, "BOK BPUSH room:tls AAECAwQF");
	it_ctl(&env, "DROP");
	IT_EXPECT_PREFIX(c, "STATE room:tls rejoining ");
	IT_EXPECT(c, "STATE room:tls rejoined {\"secure\":true}");

	/* not signed by a CA we trust */
	it_send(c, "USE untrusted");
	IT_EXPECT(c, "OK USE untrusted {}");
	it_send(c, "JOIN room:u");
	const char *l = it_line(c, IT_TIMEOUT_MS);
	ck_assert_ptr_nonnull(l);
	ck_assert_msg(strncmp(l, "ERR JOIN room:u {\"reason\":\"upstream unavailable\"", 48) == 0 &&
		      strstr(l, "certificate"), "got '%s'", l);
	/* signed, but for another name */
	it_send(c, "USE wrongname");
	IT_EXPECT(c, "OK USE wrongname {}");
	it_send(c, "JOIN room:w");
	l = it_line(c, IT_TIMEOUT_MS);
	ck_assert_ptr_nonnull(l);
	ck_assert_msg(strncmp(l, "ERR JOIN room:w {\"reason\":\"upstream unavailable\"", 48) == 0 &&
		      strstr(l, "certificate"), "got '%s'", l);
	it_close(c);
}
END_TEST

/* tls_verify = false is a choice the log shows: one warning for the
 * endpoint that turned it off, none for those that verify. */
START_TEST(tls_unverified_warns)
{
	static const char warn[] = "endpoint 'noverify': tls_verify = false: the server's "
				   "certificate is NOT checked";
	ck_assert_msg(it_wait_log(&env, warn, 1, IT_TIMEOUT_MS), "no warning in %s", env.log);
	struct it_client *c = it_connect(&env);
	/* the self-signed certificate, not checked, is accepted */
	it_send(c, "USE noverify");
	IT_EXPECT(c, "OK USE noverify {}");
	it_send(c, "JOIN room:nv");
	IT_EXPECT(c, "OK JOIN room:nv {}");
	it_send(c, "PUSH room:nv echo {\"checked\":false}");
	IT_EXPECT(c, "OK PUSH room:nv {\"checked\":false}");
	/* said once per endpoint, not once per connection */
	it_ctl(&env, "DROP");
	IT_EXPECT_PREFIX(c, "STATE room:nv rejoining ");
	IT_EXPECT(c, "STATE room:nv rejoined {}");
	ck_assert_int_eq(it_log_count(&env, "tls_verify = false"), 1);
	ck_assert_int_eq(it_log_count(&env, warn), 1);
	it_close(c);
}
END_TEST


START_TEST(half_close_gets_replies)
{
	struct it_client *c = it_connect(&env);
	const char *lines = "JOIN room:h\nPUSH room:h echo {\"last\":true}\n";
	it_send_raw(c, lines, strlen(lines));
	ck_assert_int_eq(shutdown(c->fd, SHUT_WR), 0);
	IT_EXPECT(c, "OK JOIN room:h {}");
	IT_EXPECT(c, "OK PUSH room:h {\"last\":true}");
	ck_assert(it_wait_eof(c, IT_TIMEOUT_MS));
	it_close(c);
}
END_TEST

START_TEST(line_bigger_than_queue)
{
	/* a 200 KB reply passes a 64 KiB queue when the queue is empty */
	size_t n = 200000;
	char *line = malloc(n + 64);
	int k = snprintf(line, 64, "PUSH room:big echo \"");
	memset(line + k, 'z', n);
	memcpy(line + k + n, "\"\n", 3);
	struct it_client *c = it_connect(&env);
	it_send(c, "JOIN room:big");
	IT_EXPECT(c, "OK JOIN room:big {}");
	it_send_raw(c, line, (size_t)k + n + 2);
	const char *l = it_line(c, IT_TIMEOUT_MS);
	ck_assert_ptr_nonnull(l);
	ck_assert_uint_eq(strlen(l), strlen("OK PUSH room:big \"\"") + n);
	ck_assert(strncmp(l, "OK PUSH room:big \"zzz", 21) == 0);
	free(line);
	it_send(c, "PING");
	IT_EXPECT(c, "OK PING - {}");
	it_close(c);
}
END_TEST

static void start_big_lines(void)
{
	it_env_start(&env, NULL, "max_line = 1M\nclient_queue_max = 64k\n", NULL);
}

static void start_stall(void)
{
	it_env_start(&env, NULL, NULL, "heartbeat_interval = 500ms\n");
}

START_TEST(heartbeat_timeout)
{
	struct it_client *c = it_connect(&env);
	it_send(c, "JOIN room:hb");
	IT_EXPECT(c, "OK JOIN room:hb {}");
	ck_assert_str_eq(it_ctl(&env, "STALL"), "OK");
	/* detected within two heartbeat intervals (plus scheduling slack) */
	const char *l = it_wait_prefix(c, "STATE room:hb rejoining ", 3000);
	ck_assert_ptr_nonnull(l);
	ck_assert_ptr_nonnull(strstr(l, "heartbeat timeout"));
	ck_assert_str_eq(it_ctl(&env, "RESUME"), "OK");
	ck_assert_ptr_nonnull(it_wait_prefix(c, "STATE room:hb rejoined", IT_TIMEOUT_MS));
	it_close(c);
}
END_TEST

static void start_no_server(void)
{
	it_env_start(&env, NULL, NULL, "join_timeout = 700ms\nconnect_timeout = 300ms\n");
	it_stop_pid(env.sim, 3000);
	env.sim = 0;
}

START_TEST(join_while_server_down)
{
	struct it_client *c = it_connect(&env);
	it_send(c, "JOIN room:down");
	const char *l = it_line(c, IT_TIMEOUT_MS);
	ck_assert_ptr_nonnull(l);
	ck_assert_msg(strncmp(l, "ERR JOIN room:down {\"reason\":\"upstream unavailable\",\"detail\":\"", 62) == 0,
		      "got '%s'", l);
	it_send(c, "PING");
	IT_EXPECT(c, "OK PING - {}");
	it_close(c);
}
END_TEST

static void start_small_limits(void)
{
	it_env_start(&env, NULL, "max_line = 4096\nclient_queue_max = 65536\n",
		     "push_timeout = 800ms\n");
}

static Suite *core_suite(void)
{
	Suite *s = suite_create("it_core");
	TCase *tc = tcase_create("basic");
	tcase_add_checked_fixture(tc, start_default, stop_env);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, join_push_reply);
	tcase_add_test(tc, fanout_one_upstream_join);
	tcase_add_test(tc, join_refused);
	tcase_add_test(tc, binary_both_ways);
	tcase_add_test(tc, pipelined_join_and_push);
	tcase_add_test(tc, reconnect_and_rejoin);
	tcase_add_test(tc, channel_crash_rejoins);
	suite_add_tcase(s, tc);

	tc = tcase_create("push buffer");
	tcase_add_checked_fixture(tc, start_push_buffer, stop_env);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, push_buffer_full);
	suite_add_tcase(s, tc);

	tc = tcase_create("rejoin backoff");
	tcase_add_checked_fixture(tc, start_default_rejoin, stop_env);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, rejoin_backoff_after_crash);
	suite_add_tcase(s, tc);

	tc = tcase_create("server idle timeout");
	tcase_add_checked_fixture(tc, start_idle_server, stop_env);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, server_idle_close_reconnects);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_checked_fixture(tc, start_small_limits, stop_env);
	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, bad_input_lines);
	tcase_add_test(tc, push_timeout);
	tcase_add_test(tc, slow_consumer);
	suite_add_tcase(s, tc);

	tc = tcase_create("big");
	tcase_add_checked_fixture(tc, start_big_lines, stop_env);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, half_close_gets_replies);
	tcase_add_test(tc, line_bigger_than_queue);
	suite_add_tcase(s, tc);

	tc = tcase_create("endpoints");
	tcase_add_checked_fixture(tc, start_two_endpoints, stop_env);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, two_endpoints);
	suite_add_tcase(s, tc);

	tc = tcase_create("token");
	tcase_add_checked_fixture(tc, start_token, stop_env);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, connect_params_and_refusal);
	suite_add_tcase(s, tc);

	tc = tcase_create("tls");
	tcase_add_checked_fixture(tc, start_tls, stop_tls);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, tls_verified);
	tcase_add_test(tc, tls_unverified_warns);
	suite_add_tcase(s, tc);

	tc = tcase_create("heartbeat");
	tcase_add_checked_fixture(tc, start_stall, stop_env);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, heartbeat_timeout);
	suite_add_tcase(s, tc);

	tc = tcase_create("down");
	tcase_add_checked_fixture(tc, start_no_server, stop_env);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, join_while_server_down);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(core_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
