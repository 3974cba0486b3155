/* Integration tests: access control by peer credentials and resource
 * limits (issue 8).  phxsim and phxd as real processes, clients on the real
 * Unix socket; clients of another uid connect with a switched effective uid
 * (the test must run as root for those, and skips them otherwise). */
#include <check.h>
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "it_util.h"

#define NOBODY 65534

static struct it_env env;

static void stop_env(void)
{
	it_env_stop(&env);
}

/* A client whose peer credentials are nobody's. */
static struct it_client *connect_as_nobody(void)
{
	ck_assert_int_eq(setegid(NOBODY), 0);
	ck_assert_int_eq(seteuid(NOBODY), 0);
	struct it_client *c = it_connect(&env);
	ck_assert_int_eq(seteuid(0), 0);
	ck_assert_int_eq(setegid(0), 0);
	return c;
}

static char access_conf[1024];

static void start_access(void)
{
	it_env_prepare(&env);
	it_sim_start(&env, NULL);
	/* nobody must reach the socket: the test directories are traversable */
	char parent[256];
	snprintf(parent, sizeof(parent), "%s", env.dir);
	char *slash = strrchr(parent, '/');
	if (slash)
		*slash = '\0';
	chmod(parent, 0711);
	chmod(env.dir, 0711);
	snprintf(access_conf, sizeof(access_conf),
		 "\n[endpoint other]\nurl = ws://127.0.0.1:%d/socket\n"
		 "\n[access admins]\nuid = root\n"
		 "\n[access everyone]\nendpoints = main\njoin = room:*, lobby\npush = new_msg, echo\n",
		 env.port);
	it_phxd_start(&env, "socket_mode = 0666", access_conf);
}

START_TEST(access_rules)
{
	if (geteuid() != 0)
		return; /* needs root to act as another user */
	struct it_client *n = connect_as_nobody();
	it_send(n, "JOIN room:1");
	IT_EXPECT(n, "OK JOIN room:1 {}");
	it_send(n, "JOIN lobby");
	IT_EXPECT(n, "OK JOIN lobby {}");
	it_send(n, "JOIN secret:1");
	IT_EXPECT(n, "ERR JOIN secret:1 {\"reason\":\"access denied\",\"detail\":\"uid 65534 gid 65534 may not join 'secret:1'\"}");
	it_send(n, "PUSH room:1 echo {\"ok\":1}");
	IT_EXPECT(n, "OK PUSH room:1 {\"ok\":1}");
	it_send(n, "PUSH room:1 delete_all {}");
	IT_EXPECT_PREFIX(n, "ERR PUSH room:1 {\"reason\":\"access denied\",\"detail\":\"uid 65534 gid 65534 may not push 'delete_all'\"");
	it_send(n, "USE other");
	IT_EXPECT_PREFIX(n, "ERR USE other {\"reason\":\"access denied\"");
	/* root matches the first section: anything goes */
	struct it_client *r = it_connect(&env);
	it_send(r, "JOIN secret:1");
	IT_EXPECT(r, "OK JOIN secret:1 {}");
	it_send(r, "PUSH secret:1 delete_all {}");
	IT_EXPECT(r, "OK PUSH secret:1 {}");
	it_send(r, "USE other");
	IT_EXPECT(r, "OK USE other {}");
	it_close(n);
	it_close(r);
}
END_TEST

/* Only root is listed: nobody matches no section and may do nothing. */
START_TEST(no_matching_section_denies)
{
	if (geteuid() != 0)
		return;
	char conf[256];
	it_stop_pid(env.phxd, 5000);
	snprintf(conf, sizeof(conf), "\n[access admins]\nuid = 0\n");
	it_phxd_start(&env, "socket_mode = 0666", conf);
	struct it_client *n = connect_as_nobody();
	it_send(n, "JOIN room:1");
	IT_EXPECT_PREFIX(n, "ERR JOIN room:1 {\"reason\":\"access denied\"");
	it_send(n, "PING");
	IT_EXPECT(n, "OK PING - {}");
	it_close(n);
}
END_TEST

/* A group rule matches a client's supplementary groups too (SO_PEERGROUPS),
 * not only its primary group. */
START_TEST(supplementary_group)
{
	if (geteuid() != 0)
		return;
	char conf[256];
	it_stop_pid(env.phxd, 5000);
	snprintf(conf, sizeof(conf), "\n[access staff]\ngid = 4242\njoin = staff:*\n"
		 "\n[access everyone]\njoin = room:*\n");
	it_phxd_start(&env, "socket_mode = 0666", conf);
	/* nobody, primary group nobody, supplementary group 4242 */
	gid_t g = 4242;
	ck_assert_int_eq(setgroups(1, &g), 0);
	struct it_client *staff = connect_as_nobody();
	ck_assert_int_eq(setgroups(0, NULL), 0);
	struct it_client *n = connect_as_nobody();
	it_send(staff, "JOIN staff:1");
	IT_EXPECT(staff, "OK JOIN staff:1 {}");
	it_send(staff, "JOIN room:1");
	IT_EXPECT_PREFIX(staff, "ERR JOIN room:1 {\"reason\":\"access denied\"");
	it_send(n, "JOIN staff:1");
	IT_EXPECT_PREFIX(n, "ERR JOIN staff:1 {\"reason\":\"access denied\"");
	it_send(n, "JOIN room:1");
	IT_EXPECT(n, "OK JOIN room:1 {}");
	it_close(staff);
	it_close(n);
}
END_TEST

static void start_limits(void)
{
	it_env_start(&env, NULL, "max_topics_per_client = 3\npush_rate = 5\npush_burst = 2\n"
		     "max_clients = 3\n", NULL);
}

START_TEST(topic_limit)
{
	struct it_client *c = it_connect(&env);
	it_send(c, "JOIN t:1 t:2 t:3 t:4");
	/* replies come as answers are known: the refusal first */
	IT_EXPECT(c, "ERR JOIN t:4 {\"reason\":\"too many topics\",\"detail\":\"max_topics_per_client is 3\"}");
	for (int i = 0; i < 3; i++)
		IT_EXPECT_PREFIX(c, "OK JOIN t:");
	it_send(c, "LEAVE t:1");
	IT_EXPECT(c, "OK LEAVE t:1 {}");
	it_send(c, "JOIN t:4");
	IT_EXPECT(c, "OK JOIN t:4 {}");
	it_close(c);
}
END_TEST

START_TEST(push_rate_limit)
{
	struct it_client *c = it_connect(&env);
	it_send(c, "JOIN r:1");
	IT_EXPECT(c, "OK JOIN r:1 {}");
	/* a burst of 2, then 5 a second */
	it_send(c, "@1 PUSH r:1 echo {}\n@2 PUSH r:1 echo {}\n@3 PUSH r:1 echo {}");
	int ok = 0, limited = 0;
	for (int i = 0; i < 3; i++) {
		const char *l = it_line(c, IT_TIMEOUT_MS);
		ck_assert_ptr_nonnull(l);
		if (strncmp(l, "OK @", 4) == 0)
			ok++;
		else if (strstr(l, "{\"reason\":\"rate limited\",\"detail\":\"push_rate is 5 per second\"}"))
			limited++;
	}
	ck_assert_int_eq(ok, 2);
	ck_assert_int_eq(limited, 1);
	usleep(450000); /* two tokens back */
	it_send(c, "PUSH r:1 echo {}");
	IT_EXPECT(c, "OK PUSH r:1 {}");
	it_close(c);
}
END_TEST

START_TEST(max_clients)
{
	struct it_client *c[4];
	for (int i = 0; i < 3; i++) {
		c[i] = it_connect(&env);
		it_send(c[i], "PING");
		IT_EXPECT(c[i], "OK PING - {}");
	}
	c[3] = it_connect(&env);
	IT_EXPECT(c[3], "BYE {\"reason\":\"too many clients\"}");
	ck_assert(it_wait_eof(c[3], IT_TIMEOUT_MS));
	it_close(c[3]);
	it_close(c[0]);
	usleep(100000);
	c[0] = it_connect(&env);
	it_send(c[0], "PING");
	IT_EXPECT(c[0], "OK PING - {}");
	for (int i = 0; i < 3; i++)
		it_close(c[i]);
}
END_TEST


/* upstream_queue_max: a server that stops reading. */
static void start_busy(void)
{
	it_env_start(&env, NULL, "client_queue_max = 64M\n",
		     "upstream_queue_max = 64k\npush_timeout = 60s\nheartbeat_interval = 60s\n");
}

/* Pushes to a server that stopped reading fill the socket buffers, then
 * upstream_queue_max; past it each push is refused at once with "upstream
 * busy" instead of growing phxd.  Once the server reads again every push
 * that was accepted is answered, in order, and new pushes go through. */
START_TEST(upstream_busy)
{
	struct it_client *c = it_connect(&env);
	it_send(c, "JOIN q:1");
	IT_EXPECT(c, "OK JOIN q:1 {}");
	ck_assert_str_eq(it_ctl(&env, "STALL"), "OK");
	enum { PLEN = 100000, MAXN = 400 };
	static char line[PLEN + 64];
	static char refused[MAXN];
	int sent = 0, busy = 0, after = 0;
	while (sent < MAXN && after < 5) {
		int k = snprintf(line, 64, "@%d PUSH q:1 echo \"", sent);
		memset(line + k, 'b', PLEN);
		memcpy(line + k + PLEN, "\"\n", 2);
		it_send_raw(c, line, (size_t)k + PLEN + 2);
		sent++;
		if (busy)
			after++;
		/* while the server is stalled, an answer can only be a refusal */
		const char *l;
		while ((l = it_line(c, 5)) != NULL) {
			int tag;
			ck_assert_msg(sscanf(l, "ERR @%d PUSH q:1 ", &tag) == 1 &&
				      strstr(l, "{\"reason\":\"upstream busy\",\"detail\":\"") != NULL,
				      "got '%.120s'", l);
			ck_assert_int_lt(tag, sent);
			refused[tag] = 1;
			busy++;
		}
	}
	ck_assert_msg(busy > 0, "%d pushes of %d bytes never made phxd refuse one", sent, PLEN);
	ck_assert_str_eq(it_ctl(&env, "RESUME"), "OK");
	/* every accepted push is answered, in the order it was made */
	int answered = 0, last = -1;
	while (answered + busy < sent) {
		const char *l = it_line(c, IT_TIMEOUT_MS);
		ck_assert_msg(l != NULL, "%d answered, %d refused, %d sent", answered, busy, sent);
		int tag;
		if (sscanf(l, "ERR @%d PUSH q:1 ", &tag) == 1 && strstr(l, "upstream busy")) {
			refused[tag] = 1;
			busy++;
			continue;
		}
		ck_assert_msg(sscanf(l, "OK @%d PUSH q:1 \"bbb", &tag) == 1, "got '%.120s'", l);
		ck_assert_int_gt(tag, last);
		ck_assert_int_eq(refused[tag], 0);
		ck_assert_uint_eq(strlen(l), strlen("OK @ PUSH q:1 \"\"") + PLEN +
				  (size_t)snprintf(NULL, 0, "%d", tag));
		last = tag;
		answered++;
	}
	ck_assert_int_gt(answered, 0);
	it_send(c, "PUSH q:1 echo {\"after\":1}");
	IT_EXPECT(c, "OK PUSH q:1 {\"after\":1}");
	char want[64];
	snprintf(want, sizeof(want), "\"upstream_busy\":%d", busy);
	const char *st = it_phxd_ctl(&env, "STATS");
	ck_assert_msg(strstr(st, want) != NULL, "want %s in %s", want, st);
	it_close(c);
}
END_TEST
/* phxd runs out of file descriptors: new clients wait (the listener pauses)
 * and are served once descriptors are free again; nobody crashes. */
static void start_few_fds(void)
{
	struct rlimit old, low;
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
	low = old;
	low.rlim_cur = 40; /* the soft limit only: it can go back up */
	it_env_prepare(&env);
	it_sim_start(&env, NULL);
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
	it_phxd_start(&env, NULL, "pool_size = 1\n");
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
}

START_TEST(fd_exhaustion)
{
	enum { N = 60 };
	struct it_client *c[N];
	for (int i = 0; i < N; i++)
		c[i] = it_connect(&env); /* the kernel queues what phxd cannot accept */
	it_send(c[0], "PING");
	IT_EXPECT(c[0], "OK PING - {}");
	for (int i = 1; i < N; i++)
		it_close(c[i]);
	/* descriptors are free again: a new client is served (within the 1 s
	 * pause of the listener) */
	struct it_client *d = it_connect(&env);
	it_send(d, "JOIN fd:1");
	IT_EXPECT(d, "OK JOIN fd:1 {}");
	it_close(d);
	it_close(c[0]);
}
END_TEST

static Suite *limits_suite(void)
{
	Suite *s = suite_create("it_limits");
	TCase *tc = tcase_create("access");
	tcase_add_checked_fixture(tc, start_access, stop_env);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, access_rules);
	tcase_add_test(tc, no_matching_section_denies);
	tcase_add_test(tc, supplementary_group);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_checked_fixture(tc, start_limits, stop_env);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, topic_limit);
	tcase_add_test(tc, push_rate_limit);
	tcase_add_test(tc, max_clients);
	suite_add_tcase(s, tc);

	tc = tcase_create("upstream_busy");
	tcase_add_checked_fixture(tc, start_busy, stop_env);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, upstream_busy);
	suite_add_tcase(s, tc);

	tc = tcase_create("fds");
	tcase_add_checked_fixture(tc, start_few_fds, stop_env);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, fd_exhaustion);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(limits_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
