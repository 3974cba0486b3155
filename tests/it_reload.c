/* Integration tests: configuration reload on SIGHUP (issue 6).  phxsim and
 * phxd as real processes, clients on the real Unix socket. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "it_util.h"

static struct it_env env;

static char ep_other[256];

static void start_two(void)
{
	it_env_start(&env, NULL, NULL, NULL);
	it_stop_pid(env.phxd, 5000);
	snprintf(ep_other, sizeof(ep_other), "\n[endpoint other]\nurl = ws://127.0.0.1:%d/socket\n",
		 env.port);
	it_phxd_start(&env, NULL, ep_other);
}

static void stop_env(void)
{
	it_env_stop(&env);
}

/* Rewrites the configuration and sends SIGHUP. */
static void reload(const char *global_conf, const char *endpoint_conf)
{
	it_write_conf(&env, global_conf, endpoint_conf);
	ck_assert_int_eq(kill(env.phxd, SIGHUP), 0);
}

static struct it_client *join_on(const char *endpoint, const char *topic)
{
	struct it_client *c = it_connect(&env);
	char want[128];
	if (endpoint) {
		it_send(c, "USE %s", endpoint);
		snprintf(want, sizeof(want), "OK USE %s {}", endpoint);
		IT_EXPECT(c, want);
	}
	it_send(c, "JOIN %s", topic);
	snprintf(want, sizeof(want), "OK JOIN %s {}", topic);
	IT_EXPECT(c, want);
	return c;
}

START_TEST(unchanged_endpoint_untouched)
{
	struct it_client *a = join_on(NULL, "room:a");
	struct it_client *b = join_on("other", "room:b");
	/* "other" changes (a connect param), "main" does not */
	char changed[300];
	snprintf(changed, sizeof(changed), "%sparam.v = 2\n", ep_other);
	reload(NULL, changed);
	IT_EXPECT(b, "STATE room:b rejoining {\"reason\":\"configuration reloaded\"}");
	IT_EXPECT(b, "STATE room:b rejoined {}");
	/* the client of the unchanged endpoint saw nothing */
	it_send(a, "PING");
	IT_EXPECT(a, "OK PING - {}");
	it_ctl(&env, "BROADCAST room:a ev {\"n\":1}");
	IT_EXPECT(a, "EVENT room:a ev {\"n\":1}");
	it_ctl(&env, "BROADCAST room:b ev {\"n\":2}");
	IT_EXPECT(b, "EVENT room:b ev {\"n\":2}");
	/* the old connection of "other" is gone: one socket per topic left */
	ck_assert_str_eq(it_ctl(&env, "CHANNELS room:b"), "OK 1");
	it_close(a);
	it_close(b);
}
END_TEST

START_TEST(bad_config_keeps_running)
{
	struct it_client *a = join_on(NULL, "room:a");
	reload("max_line = lots", ep_other);
	usleep(200000);
	it_send(a, "PUSH room:a echo {\"still\":1}");
	IT_EXPECT(a, "OK PUSH room:a {\"still\":1}");
	/* and a good one afterwards is taken */
	reload("max_line = 2k", ep_other);
	usleep(300000);
	char big[3000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	it_send(a, "%s", big);
	IT_EXPECT(a, "ERR ? - {\"reason\":\"line too long\",\"detail\":\"limit is 2048 bytes\"}");
	it_close(a);
}
END_TEST

START_TEST(endpoint_removed_and_added)
{
	struct it_client *a = join_on(NULL, "room:a");
	struct it_client *b = join_on("other", "room:b");
	char third[256];
	snprintf(third, sizeof(third), "\n[endpoint third]\nurl = ws://127.0.0.1:%d/socket\n",
		 env.port);
	reload(NULL, third);      /* "other" goes, "third" comes */
	IT_EXPECT(b, "STATE room:b closed {\"reason\":\"endpoint removed\"}");
	ck_assert(it_wait_channels(&env, "room:b", 0, IT_TIMEOUT_MS));
	/* b's USE went back to the default endpoint */
	it_send(b, "JOIN room:b2");
	IT_EXPECT(b, "OK JOIN room:b2 {}");
	it_send(b, "TOPICS");
	IT_EXPECT_PREFIX(b, "OK TOPICS - {\"topics\":[{\"topic\":\"room:b2\",\"endpoint\":\"main\"");
	it_send(b, "USE other");
	IT_EXPECT(b, "ERR USE other {\"reason\":\"unknown endpoint\"}");
	it_send(b, "USE third");
	IT_EXPECT(b, "OK USE third {}");
	it_send(b, "JOIN room:c");
	IT_EXPECT(b, "OK JOIN room:c {}");
	it_send(a, "PING");
	IT_EXPECT(a, "OK PING - {}");
	it_close(a);
	it_close(b);
}
END_TEST

static Suite *reload_suite(void)
{
	Suite *s = suite_create("it_reload");
	TCase *tc = tcase_create("reload");
	tcase_add_checked_fixture(tc, start_two, stop_env);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, unchanged_endpoint_untouched);
	tcase_add_test(tc, bad_config_keeps_running);
	tcase_add_test(tc, endpoint_removed_and_added);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(reload_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
