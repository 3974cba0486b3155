/* Integration tests: the upstream pool (issue 3).  phxsim and phxd as real
 * processes, clients on the real Unix socket. */
#include <check.h>
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

/* phxsim's STATS field, as a number. */
static long sim_stat(const char *field)
{
	const char *s = it_ctl(&env, "STATS");
	char key[64];
	snprintf(key, sizeof(key), "\"%s\":", field);
	const char *p = strstr(s, key);
	ck_assert_msg(p != NULL, "no %s in %s", field, s);
	return strtol(p + strlen(key), NULL, 10);
}

static int wait_stat(const char *field, long want, int timeout_ms)
{
	for (int waited = 0; waited < timeout_ms; waited += 20) {
		if (sim_stat(field) == want)
			return 1;
		usleep(20000);
	}
	return 0;
}

#define NCLIENTS 50
#define NTOPICS 200

static void start_pool(void)
{
	it_env_start(&env, NULL, NULL, "pool_size = 4\nmax_channels_per_upstream = 100\n");
}

/* 200 topics, 50 clients, each topic with two subscribers; one upstream
 * connection dies at the server: every topic comes back, every client keeps
 * its subscriptions. */
START_TEST(pool_spread_and_failover)
{
	struct it_client *c[NCLIENTS];
	int joined[NCLIENTS] = { 0 };
	for (int i = 0; i < NCLIENTS; i++)
		c[i] = it_connect(&env);
	for (int t = 0; t < NTOPICS; t++) {
		int a = t % NCLIENTS, b = (t + 1) % NCLIENTS;
		it_send(c[a], "JOIN pool:%d", t);
		it_send(c[b], "JOIN pool:%d", t);
		joined[a]++;
		joined[b]++;
	}
	for (int i = 0; i < NCLIENTS; i++)
		for (int k = 0; k < joined[i]; k++)
			IT_EXPECT_PREFIX(c[i], "OK JOIN pool:");
	/* spread over the whole pool: 4 connections, 50 channels each */
	ck_assert_int_eq(sim_stat("connections"), 4);
	ck_assert_int_eq(sim_stat("channels"), NTOPICS);
	ck_assert_str_eq(it_ctl(&env, "DROP pool:0"), "OK 1");
	/* the 50 topics of that connection come back on their own */
	ck_assert(wait_stat("channels", NTOPICS, IT_TIMEOUT_MS));
	ck_assert(wait_stat("connections", 4, IT_TIMEOUT_MS));
	/* every client still gets every event of each of its topics */
	for (int t = 0; t < NTOPICS; t++)
		ck_assert_str_eq(it_ctl(&env, "BROADCAST pool:%d ev {\"t\":%d}", t, t), "OK 1");
	for (int i = 0; i < NCLIENTS; i++) {
		int events = 0, rejoining = 0, rejoined = 0;
		const char *l;
		while (events < joined[i] && (l = it_line(c[i], IT_TIMEOUT_MS))) {
			if (strncmp(l, "EVENT pool:", 11) == 0)
				events++;
			else if (strstr(l, " rejoining "))
				rejoining++;
			else if (strstr(l, " rejoined "))
				rejoined++;
			else
				ck_abort_msg("client %d: unexpected line '%s'", i, l);
		}
		ck_assert_int_eq(events, joined[i]);
		ck_assert_int_eq(rejoining, rejoined);
		it_send(c[i], "PING");
		IT_EXPECT(c[i], "OK PING - {}");
	}
	for (int i = 0; i < NCLIENTS; i++)
		it_close(c[i]);
	ck_assert(wait_stat("channels", 0, IT_TIMEOUT_MS));
}
END_TEST

START_TEST(batch_join_leave)
{
	struct it_client *c = it_connect(&env);
	it_send(c, "@b JOIN batch:1 batch:2 batch:3 {\"who\":\"me\"}");
	const char *want[] = { "batch:1", "batch:2", "batch:3" };
	int seen[3] = { 0 };
	for (int i = 0; i < 3; i++) {
		const char *l = it_line(c, IT_TIMEOUT_MS);
		ck_assert_ptr_nonnull(l);
		for (int k = 0; k < 3; k++) {
			char line[128];
			snprintf(line, sizeof(line), "OK @b JOIN %s {\"who\":\"me\"}", want[k]);
			if (strcmp(l, line) == 0)
				seen[k]++;
		}
	}
	ck_assert(seen[0] == 1 && seen[1] == 1 && seen[2] == 1);
	ck_assert_int_eq(sim_stat("channels"), 3);
	it_send(c, "LEAVE batch:1 batch:3 batch:9");
	IT_EXPECT(c, "OK LEAVE batch:1 {}");
	IT_EXPECT(c, "OK LEAVE batch:3 {}");
	IT_EXPECT(c, "ERR LEAVE batch:9 {\"reason\":\"not joined\"}");
	ck_assert(wait_stat("channels", 1, IT_TIMEOUT_MS));
	it_close(c);
}
END_TEST

/* The upstream slot of each topic, as TOPICS reports it. */
static void topic_slots(struct it_client *c, int n, int *slot)
{
	it_send(c, "TOPICS");
	const char *l = it_line(c, IT_TIMEOUT_MS);
	ck_assert_ptr_nonnull(l);
	for (int t = 0; t < n; t++) {
		char key[64];
		snprintf(key, sizeof(key), "{\"topic\":\"warm:%d\",\"endpoint\":\"main\",\"upstream\":", t);
		const char *p = strstr(l, key);
		ck_assert_msg(p != NULL, "warm:%d missing in %s", t, l);
		slot[t] = atoi(p + strlen(key));
	}
}

/* Restart phxd: topics that come back are joined on the connection they had,
 * whatever order they come back in. */
START_TEST(route_cache_warms)
{
	enum { N = 8 };
	int before[N], after[N];
	struct it_client *c = it_connect(&env);
	for (int t = 0; t < N; t++) {
		it_send(c, "JOIN warm:%d", t);
		IT_EXPECT_PREFIX(c, "OK JOIN warm:");
	}
	topic_slots(c, N, before);
	ck_assert_int_ne(before[0], before[1]); /* spread */
	it_close(c);
	ck_assert_int_eq(it_stop_pid(env.phxd, 5000), 0);
	env.phxd = 0;
	it_phxd_start(&env, NULL, "pool_size = 4\nmax_channels_per_upstream = 100\n");
	c = it_connect(&env);
	for (int t = N - 1; t >= 0; t--) {     /* the other way round */
		it_send(c, "JOIN warm:%d", t);
		IT_EXPECT_PREFIX(c, "OK JOIN warm:");
	}
	topic_slots(c, N, after);
	for (int t = 0; t < N; t++)
		ck_assert_msg(before[t] == after[t], "warm:%d was on %d, now on %d", t,
			      before[t], after[t]);
	it_close(c);
}
END_TEST

static void start_small_server(void)
{
	it_env_start(&env, "--max-channels 3", NULL,
		     "pool_size = 2\nmax_channels_per_upstream = 100\n");
}

/* The server allows 3 channels per socket, phxd thinks 100: the refusals
 * teach phxd the real limit; a refused join never reaches a client while
 * another connection has room. */
START_TEST(server_channel_limit)
{
	struct it_client *c = it_connect(&env);
	for (int t = 0; t < 6; t++) {
		it_send(c, "JOIN lim:%d", t);
		char want[64];
		snprintf(want, sizeof(want), "OK JOIN lim:%d {}", t);
		IT_EXPECT(c, want);
	}
	ck_assert_int_eq(sim_stat("channels"), 6);
	/* both connections are full now */
	it_send(c, "JOIN lim:6");
	IT_EXPECT(c, "ERR JOIN lim:6 {\"reason\":\"too many channels joined\"}");
	it_send(c, "JOIN lim:7");
	IT_EXPECT_PREFIX(c, "ERR JOIN lim:7 {\"reason\":\"too many channels\",");
	/* room again after a leave */
	it_send(c, "LEAVE lim:1");
	IT_EXPECT(c, "OK LEAVE lim:1 {}");
	it_send(c, "JOIN lim:8");
	IT_EXPECT(c, "OK JOIN lim:8 {}");
	it_close(c);
}
END_TEST

static void start_idle(void)
{
	it_env_start(&env, NULL, NULL,
		     "pool_size = 3\npool_min = 1\npool_idle_timeout = 300ms\n");
}

START_TEST(idle_upstreams_close)
{
	/* pool_min connections are open before anyone joins */
	ck_assert(wait_stat("connections", 1, IT_TIMEOUT_MS));
	struct it_client *c = it_connect(&env);
	for (int t = 0; t < 3; t++) {
		it_send(c, "JOIN idle:%d", t);
		IT_EXPECT_PREFIX(c, "OK JOIN idle:");
	}
	ck_assert_int_eq(sim_stat("connections"), 3);
	for (int t = 0; t < 3; t++) {
		it_send(c, "LEAVE idle:%d", t);
		IT_EXPECT_PREFIX(c, "OK LEAVE idle:");
	}
	/* the extra connections go after pool_idle_timeout; pool_min stays */
	ck_assert(wait_stat("connections", 1, IT_TIMEOUT_MS));
	usleep(600000);
	ck_assert_int_eq(sim_stat("connections"), 1);
	/* and come back when needed */
	for (int t = 0; t < 3; t++) {
		it_send(c, "JOIN idle:%d", t);
		IT_EXPECT_PREFIX(c, "OK JOIN idle:");
	}
	ck_assert_int_eq(sim_stat("connections"), 3);
	it_close(c);
}
END_TEST

static Suite *pool_suite(void)
{
	Suite *s = suite_create("it_pool");
	TCase *tc = tcase_create("failover");
	tcase_add_checked_fixture(tc, start_pool, stop_env);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, pool_spread_and_failover);
	tcase_add_test(tc, batch_join_leave);
	tcase_add_test(tc, route_cache_warms);
	suite_add_tcase(s, tc);

	tc = tcase_create("limit");
	tcase_add_checked_fixture(tc, start_small_server, stop_env);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, server_channel_limit);
	suite_add_tcase(s, tc);

	tc = tcase_create("idle");
	tcase_add_checked_fixture(tc, start_idle, stop_env);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, idle_upstreams_close);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(pool_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
