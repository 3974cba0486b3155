/* Integration tests: hibernation of idle local clients and upstreams, and
 * the binary pool's figures (issue 4).  phxsim and phxd as real processes;
 * the control socket's STATS shows what phxd did.
 *
 * Timeouts are generous waits for something to happen (valgrind and the
 * sanitizers are slow), never assertions about speed. */
#include <check.h>

#include "ck_run.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "it_util.h"

static struct it_env env;

static void stop_env(void)
{
	it_env_stop(&env);
}

/* Hibernation after 300 ms idle; heartbeats every 200 ms, so an upstream
 * that hibernates does so between heartbeats, which are not traffic. */
static void start_hib(void)
{
	it_env_start(&env, NULL, "hibernation_idle_timeout = 300ms\n",
		     "heartbeat_interval = 200ms\n");
}

static void start_no_hib(void)
{
	it_env_start(&env, NULL, "hibernation_enabled = false\n"
		     "hibernation_idle_timeout = 300ms\n", NULL);
}

/* The number after "key": inside the object "obj": of phxd's STATS; -1 when
 * missing. */
static long long stat_num(const char *obj, const char *key)
{
	const char *s = it_phxd_ctl(&env, "STATS");
	char pat[64];
	if (!s)
		return -1;
	snprintf(pat, sizeof(pat), "\"%s\":{", obj);
	const char *o = strstr(s, pat);
	if (!o)
		return -1;
	const char *end = strchr(o + strlen(pat), '}');
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	const char *k = strstr(o, pat);
	if (!k || (end && k > end))
		return -1;
	return strtoll(k + strlen(pat), NULL, 10);
}

/* Waits until STATS says obj.key == want; 1 when it did in time. */
static int wait_stat(const char *obj, const char *key, long long want)
{
	long until = it_now_ms() + 20000;
	while (it_now_ms() < until) {
		if (stat_num(obj, key) == want)
			return 1;
		usleep(50 * 1000);
	}
	return 0;
}

/* Every one of n flooded events, in order. */
static void expect_seq(struct it_client *c, const char *topic, int n)
{
	char prefix[128];
	snprintf(prefix, sizeof(prefix), "EVENT %s ev {\"seq\":", topic);
	for (int i = 0; i < n; i++) {
		const char *l = it_wait_prefix(c, prefix, IT_TIMEOUT_MS);
		ck_assert_msg(l != NULL, "event %d of %d missing", i, n);
		ck_assert_int_eq(atoi(l + strlen(prefix)), i);
	}
}

START_TEST(idle_clients_and_upstream_hibernate_and_wake)
{
	struct it_client *a = it_connect(&env);
	struct it_client *idle = it_connect(&env);
	it_send(a, "JOIN room:hib");
	IT_EXPECT(a, "OK JOIN room:hib {}");
	it_send(idle, "PING");
	IT_EXPECT(idle, "OK PING - {}");

	/* both clients and the one upstream go to sleep, buffers released */
	ck_assert(wait_stat("hibernation", "clients", 2));
	ck_assert(wait_stat("hibernation", "upstreams", 1));
	ck_assert_int_eq(stat_num("memory", "client_buffer_bytes"), 0);
	ck_assert_int_gt(stat_num("hibernation", "client_released_bytes"), 0);
	ck_assert_int_gt(stat_num("hibernation", "upstream_released_bytes"), 0);
	/* what the sleeping ones hold back now: no more than was ever released */
	ck_assert_int_gt(stat_num("hibernation", "client_held_bytes"), 0);
	ck_assert_int_gt(stat_num("hibernation", "upstream_held_bytes"), 0);
	ck_assert_int_le(stat_num("hibernation", "client_held_bytes"),
			 stat_num("hibernation", "client_released_bytes"));
	/* heartbeats keep flowing (every 200 ms) without waking it */
	usleep(700 * 1000);
	ck_assert_int_eq(stat_num("hibernation", "upstreams"), 1);
	ck_assert_int_eq(stat_num("hibernation", "upstream_wakeups"), 0);

	for (int round = 0; round < 2; round++) {
		/* the server speaks first: every event arrives, in order */
		ck_assert_str_eq(it_ctl(&env, "FLOOD room:hib ev 500 200"), "OK 1");
		expect_seq(a, "room:hib", 500);
		ck_assert_int_ge(stat_num("hibernation", "upstream_wakeups"), round + 1);
		ck_assert_int_ge(stat_num("hibernation", "client_wakeups"), round + 1);
		/* asleep again; then the client speaks first */
		ck_assert(wait_stat("hibernation", "upstreams", 1));
		ck_assert(wait_stat("hibernation", "clients", 2));
		it_send(a, "PUSH room:hib echo {\"round\":%d}", round);
		char want[64];
		snprintf(want, sizeof(want), "OK PUSH room:hib {\"round\":%d}", round);
		IT_EXPECT(a, want);
		ck_assert(wait_stat("hibernation", "clients", 2));
	}
	/* the idle client wakes on its own line */
	it_send(idle, "PING");
	IT_EXPECT(idle, "OK PING - {}");
	/* asleep again: held back again */
	ck_assert(wait_stat("hibernation", "clients", 2));
	ck_assert_int_gt(stat_num("hibernation", "client_held_bytes"), 0);
	it_close(a);
	it_close(idle);
}
END_TEST

/* A client that stops reading keeps its queued output: hibernation takes
 * only empty buffers, and the bytes come out when it reads again. */
START_TEST(queued_output_survives_hibernation)
{
	struct it_client *c = it_connect(&env);
	it_send(c, "JOIN room:q");
	IT_EXPECT(c, "OK JOIN room:q {}");
	/* ~3 MB of events while the client is not reading: phxd queues what
	 * the socket does not take */
	ck_assert_str_eq(it_ctl(&env, "FLOOD room:q ev 3000 1000"), "OK 1");
	usleep(1500 * 1000); /* several hibernation rounds pass meanwhile */
	expect_seq(c, "room:q", 3000);
	it_close(c);
}
END_TEST

START_TEST(pool_serves_buffers)
{
	struct it_client *c = it_connect(&env);
	it_send(c, "JOIN room:pool");
	IT_EXPECT(c, "OK JOIN room:pool {}");
	for (int i = 0; i < 50; i++) {
		it_send(c, "PUSH room:pool echo {\"i\":%d}", i);
		char want[64];
		snprintf(want, sizeof(want), "OK PUSH room:pool {\"i\":%d}", i);
		IT_EXPECT(c, want);
	}
	/* buffers come back to the pool and go out again */
	ck_assert_int_gt(stat_num("binary_pool", "hits"), 0);
	ck_assert_int_gt(stat_num("binary_pool", "bytes_saved"), 0);
	ck_assert_int_ge(stat_num("interned", "entries"), 1);
	/* POOL and METRICS carry the same figures */
	const char *p = it_phxd_ctl(&env, "POOL");
	ck_assert(p && strstr(p, "\"binary_pool\":{\"hits\":"));
	ck_assert(p && strstr(p, "\"hibernation\":{\"enabled\":true"));
	it_close(c);
}
END_TEST

START_TEST(disabled_means_awake)
{
	struct it_client *c = it_connect(&env);
	it_send(c, "JOIN room:awake");
	IT_EXPECT(c, "OK JOIN room:awake {}");
	usleep(1200 * 1000); /* four idle timeouts */
	ck_assert_int_eq(stat_num("hibernation", "clients"), 0);
	ck_assert_int_eq(stat_num("hibernation", "upstreams"), 0);
	const char *p = it_phxd_ctl(&env, "POOL");
	ck_assert(p && strstr(p, "\"hibernation\":{\"enabled\":false"));
	it_close(c);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("it_memory");
	TCase *tc = tcase_create("hibernation");
	tcase_add_checked_fixture(tc, start_hib, stop_env);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, idle_clients_and_upstream_hibernate_and_wake);
	tcase_add_test(tc, queued_output_survives_hibernation);
	tcase_add_test(tc, pool_serves_buffers);
	suite_add_tcase(s, tc);
	tc = tcase_create("disabled");
	tcase_add_checked_fixture(tc, start_no_hib, stop_env);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, disabled_means_awake);
	suite_add_tcase(s, tc);
	return ck_run(s);
}
