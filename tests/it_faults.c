/* Integration tests: fault injection (issue 8).  phxsim misbehaves on
 * command; phxd must keep its clients and answer every push. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "it_util.h"

static struct it_env env;

static void start_fast_reconnect(void)
{
	it_env_start(&env, NULL, NULL,
		     "push_timeout = 3s\n"
		     "pool_size = 2\n");
}

static void stop_env(void)
{
	it_env_stop(&env);
}

/* The server drops every connection 50 times in a row while clients push:
 * no client is disconnected, every push is answered (reply, or an error
 * saying why), and every topic is joined again at the end. */
START_TEST(fifty_drops_under_traffic)
{
	enum { NC = 4, ROUNDS = 50, PER = 5 };
	struct it_client *c[NC];
	for (int i = 0; i < NC; i++) {
		c[i] = it_connect(&env);
		it_send(c[i], "JOIN fault:%d", i);
		char want[64];
		snprintf(want, sizeof(want), "OK JOIN fault:%d {}", i);
		IT_EXPECT(c[i], want);
	}
	int ok = 0, err = 0;
	for (int r = 0; r < ROUNDS; r++) {
		for (int i = 0; i < NC; i++)
			for (int k = 0; k < PER; k++)
				it_send(c[i], "@p%d.%d PUSH fault:%d echo {\"r\":%d}", r, k, i, r);
		it_ctl(&env, "DROP");
		/* every push gets exactly one answer; STATE lines come and go */
		for (int i = 0; i < NC; i++) {
			int answered = 0;
			while (answered < PER) {
				const char *l = it_line(c[i], IT_TIMEOUT_MS);
				ck_assert_msg(l != NULL, "round %d client %d: %d of %d pushes answered",
					      r, i, answered, PER);
				if (strncmp(l, "STATE ", 6) == 0) {
					ck_assert_msg(strstr(l, " rejoining ") || strstr(l, " rejoined "),
						      "unexpected %s", l);
					continue;
				}
				if (strncmp(l, "OK @p", 5) == 0)
					ok++;
				else if (strncmp(l, "ERR @p", 6) == 0 &&
					 (strstr(l, "\"reason\":\"disconnected\"") ||
					  strstr(l, "\"reason\":\"timeout\"")))
					err++;
				else
					ck_abort_msg("round %d client %d: unexpected '%s'", r, i, l);
				answered++;
			}
		}
	}
	ck_assert_int_eq(ok + err, NC * ROUNDS * PER);
	/* after the storm every client is still joined and served */
	for (int i = 0; i < NC; i++) {
		char topic[32];
		snprintf(topic, sizeof(topic), "fault:%d", i);
		ck_assert(it_wait_channels(&env, topic, 1, IT_TIMEOUT_MS));
		it_send(c[i], "@last PUSH fault:%d echo {\"end\":1}", i);
		const char *l = it_wait_prefix(c[i], "OK @last ", IT_TIMEOUT_MS);
		ck_assert_ptr_nonnull(l);
		it_ctl(&env, "BROADCAST fault:%d ev {}", i);
		ck_assert_ptr_nonnull(it_wait_prefix(c[i], "EVENT fault:", IT_TIMEOUT_MS));
		it_close(c[i]);
	}
	fprintf(stderr, "fifty_drops_under_traffic: %d replies, %d errors\n", ok, err);
}
END_TEST

static void start_bad_dns(void)
{
	it_env_prepare(&env);
	it_sim_start(&env, NULL); /* unused: the endpoint's name does not resolve */
	char ep[256];
	snprintf(ep, sizeof(ep), "\n[endpoint nowhere]\nurl = ws://phxd-test.invalid:4000/socket\n"
		 "join_timeout = 800ms\nconnect_timeout = 300ms\n");
	it_phxd_start(&env, "default_endpoint = nowhere", ep);
}

/* A name that does not resolve: the waiting JOIN hears why. */
START_TEST(dns_failure_reported)
{
	struct it_client *c = it_connect(&env);
	it_send(c, "JOIN room:dns");
	const char *l = it_line(c, IT_TIMEOUT_MS);
	ck_assert_ptr_nonnull(l);
	ck_assert_msg(strncmp(l, "ERR JOIN room:dns {\"reason\":\"upstream unavailable\","
			      "\"detail\":\"cannot resolve 'phxd-test.invalid'", 86) == 0,
		      "got '%s'", l);
	it_send(c, "PING");
	IT_EXPECT(c, "OK PING - {}");
	it_close(c);
}
END_TEST

static Suite *faults_suite(void)
{
	Suite *s = suite_create("it_faults");
	TCase *tc = tcase_create("drops");
	tcase_add_checked_fixture(tc, start_fast_reconnect, stop_env);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, fifty_drops_under_traffic);
	suite_add_tcase(s, tc);

	tc = tcase_create("dns");
	tcase_add_checked_fixture(tc, start_bad_dns, stop_env);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, dns_failure_reported);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(faults_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
