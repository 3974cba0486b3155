/* Integration tests: the upstream pool (issue 3).  phxsim and phxd as real
 * processes, clients on the real Unix socket. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "it_util.h"
#include "daemon/route_cache.h"
#include "daemon/router.h"

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

/* The upstream slot of every topic "PREFIX:N" (N < n) in a TOPICS reply of
 * client c; slot[N] is left alone for topics c has not joined.  Returns how
 * many it found. */
static int topic_slots_of(struct it_client *c, const char *prefix, int n, int *slot)
{
	char key[64];
	int found = 0;
	it_send(c, "TOPICS");
	const char *l = it_line(c, IT_TIMEOUT_MS);
	ck_assert_ptr_nonnull(l);
	ck_assert_msg(strncmp(l, "OK TOPICS", 9) == 0, "TOPICS: %s", l);
	snprintf(key, sizeof(key), "{\"topic\":\"%s:", prefix);
	for (const char *p = strstr(l, key); p; p = strstr(p + 1, key)) {
		int t, s;
		ck_assert_int_eq(sscanf(p + strlen(key), "%d\",\"endpoint\":\"main\",\"upstream\":%d",
					&t, &s), 2);
		ck_assert(t >= 0 && t < n);
		slot[t] = s;
		found++;
	}
	return found;
}

/* The route cache of env's phxd, read as phxctl would: a snapshot. */
static struct route_snapshot *routes_snapshot(void)
{
	char name[256], err[256];
	struct route_snapshot *s = NULL;
	router_routes_default_name(env.sock, name, sizeof(name));
	int r = route_cache_snapshot(name, &s, err, sizeof(err));
	ck_assert_msg(r == 0, "snapshot: %d %s", r, err);
	return s;
}

/* The state of (endpoint, topic) in a snapshot, or -1 when absent. */
static int route_state_of(const struct route_snapshot *s, const char *ep, const char *topic)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->entries[i].endpoint, ep) == 0 && strcmp(s->entries[i].topic, topic) == 0)
			return s->entries[i].state;
	return -1;
}

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
	/* which subscriptions ride on the connection that will die: the one
	 * of pool:0 (client 0 joined it) */
	static int slot[NTOPICS];
	int on_dropped[NCLIENTS] = { 0 }, total_dropped = 0;
	for (int i = 0; i < NCLIENTS; i++)
		ck_assert_int_eq(topic_slots_of(c[i], "pool", NTOPICS, slot), joined[i]);
	for (int t = 0; t < NTOPICS; t++) {
		if (slot[t] != slot[0])
			continue;
		on_dropped[t % NCLIENTS]++;
		on_dropped[(t + 1) % NCLIENTS]++;
		total_dropped += 2;
	}
	ck_assert_int_eq(total_dropped, 2 * NTOPICS / 4);
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
		/* each subscription on the dropped connection: rejoining, then
		 * rejoined; the others: nothing */
		ck_assert_msg(rejoining == on_dropped[i] && rejoined == on_dropped[i],
			      "client %d: %d rejoining, %d rejoined, want %d of each", i, rejoining,
			      rejoined, on_dropped[i]);
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
 * teach phxd the real limit; the server's refusal never reaches a client:
 * the join moves to another connection, and when none has room the client
 * gets phxd's own "too many channels". */
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
	/* both connections are full now: refused on one, moved, refused on
	 * the other, and answered by phxd */
	it_send(c, "JOIN lim:6");
	IT_EXPECT_PREFIX(c, "ERR JOIN lim:6 {\"reason\":\"too many channels\",\"detail\":");
	/* now phxd knows: no join is sent at all */
	it_send(c, "JOIN lim:7");
	IT_EXPECT_PREFIX(c, "ERR JOIN lim:7 {\"reason\":\"too many channels\",");
	ck_assert_int_eq(sim_stat("channels"), 6);
	ck_assert_int_eq(sim_stat("connections"), 2);
	/* room again after a leave */
	it_send(c, "LEAVE lim:1");
	IT_EXPECT(c, "OK LEAVE lim:1 {}");
	it_send(c, "JOIN lim:8");
	IT_EXPECT(c, "OK JOIN lim:8 {}");
	it_close(c);
}
END_TEST

/* A rejoin the server refuses as one channel too many: the channel moves
 * or, with no room anywhere, waits for room; its clients hear phxd's
 * reason, never the server's, and see it rejoin once there is room. */
START_TEST(server_limit_on_rejoin)
{
	struct it_client *c = it_connect(&env);
	for (int t = 0; t < 6; t++) {
		it_send(c, "JOIN re:%d", t);
		IT_EXPECT_PREFIX(c, "OK JOIN re:");
	}
	/* the server comes back allowing 2 channels a socket: room for 4 */
	ck_assert(it_stop_pid(env.sim, 5000) >= 0);
	close(env.sim_out);
	it_sim_start(&env, "--max-channels 2");
	int down = 0, rejoined = 0, parked = 0, is_parked[6] = { 0 };
	const char *l;
	while (rejoined + parked < 6 && (l = it_line(c, IT_TIMEOUT_MS))) {
		int t = -1;
		ck_assert_msg(!strstr(l, "too many channels joined"), "the server's refusal: %s", l);
		ck_assert_msg(sscanf(l, "STATE re:%d ", &t) == 1 && t >= 0 && t < 6, "line '%s'", l);
		if (strstr(l, " rejoining {\"reason\":\"disconnected\""))
			down++;
		else if (strstr(l, " rejoining {\"reason\":\"too many channels\",\"detail\":"))
			parked++, is_parked[t] = 1;
		else if (strstr(l, " rejoined "))
			rejoined++;
		else
			ck_abort_msg("unexpected line '%s'", l);
	}
	ck_assert_int_eq(down, 6);
	ck_assert_int_eq(rejoined, 4);
	ck_assert_int_eq(parked, 2);
	ck_assert(wait_stat("channels", 4, IT_TIMEOUT_MS));
	/* room: the two waiting ones rejoin */
	for (int t = 0; t < 6; t++)
		if (!is_parked[t])
			it_send(c, "LEAVE re:%d", t);
	int left = 0;
	rejoined = 0;
	while (left + rejoined < 6 && (l = it_line(c, IT_TIMEOUT_MS))) {
		int t = -1;
		if (strncmp(l, "OK LEAVE re:", 12) == 0) {
			left++;
			continue;
		}
		ck_assert_msg(sscanf(l, "STATE re:%d rejoined ", &t) == 1 && t >= 0 && t < 6 &&
			      is_parked[t], "unexpected line '%s'", l);
		rejoined++;
	}
	ck_assert_int_eq(left, 4);
	ck_assert_int_eq(rejoined, 2);
	ck_assert(wait_stat("channels", 2, IT_TIMEOUT_MS));
	it_send(c, "PING");
	IT_EXPECT(c, "OK PING - {}");
	it_close(c);
}
END_TEST

/* A rejoin waiting for room tries as soon as a channel leaves its endpoint,
 * not at its next rejoin_backoff step: here that step is a minute, longer
 * than the test waits for any line. */
START_TEST(parked_rejoin_wakes_on_leave)
{
	char extra[256];
	it_stop_pid(env.phxd, 5000);
	snprintf(extra, sizeof(extra), "\n[endpoint park]\nurl = ws://127.0.0.1:%d/socket\n"
		 "pool_size = 1\nmax_channels_per_upstream = 100\nrejoin_backoff = 60000\n",
		 env.port);
	it_phxd_start(&env, "default_endpoint = park", extra);
	struct it_client *c = it_connect(&env);
	for (int t = 0; t < 3; t++) {
		it_send(c, "JOIN wk:%d", t);
		IT_EXPECT_PREFIX(c, "OK JOIN wk:");
	}
	/* back with room for 2 on the one connection: one rejoin is parked */
	ck_assert(it_stop_pid(env.sim, 5000) >= 0);
	close(env.sim_out);
	it_sim_start(&env, "--max-channels 2");
	int rejoined = 0, parked = -1, is_rejoined[3] = { 0 };
	const char *l;
	while ((rejoined < 2 || parked < 0) && (l = it_line(c, IT_TIMEOUT_MS))) {
		int t = -1;
		ck_assert_msg(sscanf(l, "STATE wk:%d ", &t) == 1 && t >= 0 && t < 3, "line '%s'", l);
		if (strstr(l, " rejoining {\"reason\":\"too many channels\""))
			parked = t;
		else if (strstr(l, " rejoined "))
			rejoined++, is_rejoined[t] = 1;
		else
			ck_assert_msg(strstr(l, " rejoining {\"reason\":\"disconnected\"") != NULL,
				      "unexpected line '%s'", l);
	}
	ck_assert_int_eq(rejoined, 2);
	ck_assert_int_ge(parked, 0);
	ck_assert(!is_rejoined[parked]);
	int leaving = parked == 0 ? 1 : 0;
	it_send(c, "LEAVE wk:%d", leaving);
	char want[64];
	snprintf(want, sizeof(want), "OK LEAVE wk:%d {}", leaving);
	IT_EXPECT(c, want);
	snprintf(want, sizeof(want), "STATE wk:%d rejoined ", parked);
	IT_EXPECT_PREFIX(c, want);
	ck_assert(wait_stat("channels", 2, IT_TIMEOUT_MS));
	it_close(c);
}
END_TEST

/* Restart after phxd was killed (SIGKILL: no leave, the routes are left
 * joined in the segment): the routes are demoted, the topics that come back
 * go to the same connections, and those that do not expire. */
START_TEST(route_cache_after_kill)
{
	enum { NC = 10, NT = 200, BACK = 150 };
	static int before[NT], after[NT];
	struct it_client *c[NC];
	struct route_snapshot *s;
	char topic[32];
	int st;

	for (int i = 0; i < NC; i++)
		c[i] = it_connect(&env);
	for (int t = 0; t < NT; t++)
		it_send(c[t % NC], "JOIN warm:%d", t);
	for (int i = 0; i < NC; i++)
		for (int k = 0; k < NT / NC; k++)
			IT_EXPECT_PREFIX(c[i], "OK JOIN warm:");
	for (int i = 0; i < NC; i++)
		ck_assert_int_eq(topic_slots_of(c[i], "warm", NT, before), NT / NC);
	int used[4] = { 0 };
	for (int t = 0; t < NT; t++)
		used[before[t] & 3]++;
	ck_assert(used[0] == 50 && used[1] == 50 && used[2] == 50 && used[3] == 50);

	kill(env.phxd, SIGKILL);
	ck_assert_int_eq(waitpid(env.phxd, &st, 0), env.phxd);
	env.phxd = 0;
	for (int i = 0; i < NC; i++)
		it_close(c[i]);
	ck_assert(wait_stat("channels", 0, IT_TIMEOUT_MS));
	s = routes_snapshot();
	ck_assert_uint_eq(s->n, NT);
	for (size_t i = 0; i < s->n; i++)
		ck_assert_uint_eq(s->entries[i].state, ROUTE_STATE_JOINED);
	s = route_snapshot_free(s);

	/* started again: nothing is joined yet, so nothing says it is */
	it_phxd_start(&env, NULL, "pool_size = 4\nmax_channels_per_upstream = 100\n");
	s = routes_snapshot();
	ck_assert_uint_eq(s->n, NT);
	for (size_t i = 0; i < s->n; i++)
		ck_assert_uint_eq(s->entries[i].state, ROUTE_STATE_NONE);
	s = route_snapshot_free(s);
	for (int i = 0; i < NC; i++)
		c[i] = it_connect(&env);
	for (int t = BACK - 1; t >= 0; t--)     /* the other way round */
		it_send(c[t % NC], "JOIN warm:%d", t);
	for (int i = 0; i < NC; i++)
		for (int k = 0; k < BACK / NC; k++)
			IT_EXPECT_PREFIX(c[i], "OK JOIN warm:");
	for (int i = 0; i < NC; i++)
		ck_assert_int_eq(topic_slots_of(c[i], "warm", NT, after), BACK / NC);
	for (int t = 0; t < BACK; t++)
		ck_assert_msg(before[t] == after[t], "warm:%d was on %d, now on %d", t,
			      before[t], after[t]);
	s = routes_snapshot();
	for (int t = 0; t < NT; t++) {
		snprintf(topic, sizeof(topic), "warm:%d", t);
		ck_assert_int_eq(route_state_of(s, "main", topic),
				 t < BACK ? ROUTE_STATE_JOINED : ROUTE_STATE_NONE);
	}
	s = route_snapshot_free(s);
	for (int i = 0; i < NC; i++)
		it_close(c[i]);

	/* a short route_cache_ttl: the routes nobody uses expire (a route left
	 * joined by the killed phxd would never have) */
	ck_assert_int_eq(it_stop_pid(env.phxd, 5000), 0);
	env.phxd = 0;
	it_phxd_start(&env, "route_cache_ttl = 1s\nroute_cleanup_interval = 100ms\n",
		      "pool_size = 4\nmax_channels_per_upstream = 100\n");
	size_t n = NT;
	for (long end = it_now_ms() + IT_TIMEOUT_MS; n && it_now_ms() < end; usleep(50000)) {
		s = routes_snapshot();
		n = s->n;
		s = route_snapshot_free(s);
	}
	ck_assert_uint_eq(n, 0);
}
END_TEST

static void start_two_endpoints(void)
{
	char conf[256];
	it_env_prepare(&env);
	it_sim_start(&env, NULL);
	snprintf(conf, sizeof(conf), "pool_size = 2\n\n[endpoint second]\n"
		 "url = ws://127.0.0.1:%d/socket\npool_size = 2\n", env.port);
	it_phxd_start(&env, NULL, conf);
}

/* The same topics on two endpoints: two routes each, and one endpoint
 * leaving its channels leaves the other's routes joined. */
START_TEST(same_topic_two_endpoints)
{
	struct it_client *a = it_connect(&env), *b = it_connect(&env);
	struct route_snapshot *s;
	char topic[32];

	it_send(b, "USE second");
	IT_EXPECT(b, "OK USE second {}");
	for (int t = 0; t < 4; t++) {
		it_send(a, "JOIN dup:%d", t);
		IT_EXPECT_PREFIX(a, "OK JOIN dup:");
		it_send(b, "JOIN dup:%d", t);
		IT_EXPECT_PREFIX(b, "OK JOIN dup:");
	}
	ck_assert_int_eq(sim_stat("channels"), 8);
	s = routes_snapshot();
	ck_assert_uint_eq(s->n, 8);
	for (int t = 0; t < 4; t++) {
		snprintf(topic, sizeof(topic), "dup:%d", t);
		ck_assert_int_eq(route_state_of(s, "main", topic), ROUTE_STATE_JOINED);
		ck_assert_int_eq(route_state_of(s, "second", topic), ROUTE_STATE_JOINED);
	}
	s = route_snapshot_free(s);
	it_send(b, "LEAVE dup:0 dup:1 dup:2 dup:3");
	for (int t = 0; t < 4; t++)
		IT_EXPECT_PREFIX(b, "OK LEAVE dup:");
	s = routes_snapshot();
	for (int t = 0; t < 4; t++) {
		snprintf(topic, sizeof(topic), "dup:%d", t);
		ck_assert_int_eq(route_state_of(s, "main", topic), ROUTE_STATE_JOINED);
		ck_assert_int_eq(route_state_of(s, "second", topic), ROUTE_STATE_NONE);
	}
	s = route_snapshot_free(s);
	it_close(a);
	it_close(b);
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
	tcase_add_test(tc, route_cache_after_kill);
	suite_add_tcase(s, tc);

	tc = tcase_create("limit");
	tcase_add_checked_fixture(tc, start_small_server, stop_env);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, server_channel_limit);
	tcase_add_test(tc, server_limit_on_rejoin);
	tcase_add_test(tc, parked_rejoin_wakes_on_leave);
	suite_add_tcase(s, tc);

	tc = tcase_create("endpoints");
	tcase_add_checked_fixture(tc, start_two_endpoints, stop_env);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, same_topic_two_endpoints);
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
