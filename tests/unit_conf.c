/* unit_conf — tests of conf/conf.c (the config parser) and daemon/url.c. */
#include "conf/conf.h"
#include "daemon/url.h"
#include "backoff.h"
#include "log.h"

#include <check.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef RUNSTATEDIR
#define RUNSTATEDIR "/run"
#endif

#define MIN_EP "[endpoint main]\nurl = ws://127.0.0.1:4000/socket\n"

static char err[512];

/* Parses text as "phxd.conf" into a fresh c; returns the result. */
static int parse(struct conf *c, const char *text)
{
	conf_init(c);
	err[0] = '\0';
	return conf_parse_string(c, text, "phxd.conf", err, sizeof(err));
}

/* text must fail with exactly msg. */
static void expect_err(const char *text, const char *msg)
{
	struct conf c;
	int r = parse(&c, text);
	ck_assert_msg(r == -EINVAL, "expected failure for:\n%s\ngot %d", text, r);
	ck_assert_str_eq(err, msg);
	conf_free(&c);
}

/* text must parse; returns the parsed conf (caller frees). */
static void expect_ok(struct conf *c, const char *text)
{
	int r = parse(c, text);
	ck_assert_msg(r == 0, "parse failed: %s\n--- text:\n%s", err, text);
}

/* One endpoint option in a minimal file must fail with "phxd.conf:3: MSG". */
static void expect_ep_err(const char *line, const char *msg)
{
	char text[4096], want[1024];
	snprintf(text, sizeof(text), MIN_EP "%s\n", line);
	snprintf(want, sizeof(want), "phxd.conf:3: %s", msg);
	expect_err(text, want);
}

/* One global option before a minimal endpoint must fail with
 * "phxd.conf:1: MSG". */
static void expect_global_err(const char *line, const char *msg)
{
	char text[4096], want[1024];
	snprintf(text, sizeof(text), "%s\n" MIN_EP, line);
	snprintf(want, sizeof(want), "phxd.conf:1: %s", msg);
	expect_err(text, want);
}

/* ---- defaults --------------------------------------------------------------- */

START_TEST(test_defaults_global)
{
	struct conf c;
	conf_init(&c);
	ck_assert_str_eq(c.socket_path, RUNSTATEDIR "/phxd/phxd.sock");
	ck_assert_uint_eq(c.socket_mode, 0660);
	ck_assert_uint_eq(c.max_line, 1024 * 1024);
	ck_assert_uint_eq(c.client_queue_max, 4 * 1024 * 1024);
	ck_assert_uint_eq(c.max_clients, 10000);
	ck_assert_int_eq(c.log_level, LOG_LVL_INFO);
	ck_assert_ptr_null(c.default_endpoint);
	ck_assert_uint_eq(c.nendpoints, 0);
	ck_assert_ptr_null(conf_default_endpoint(&c));
	conf_free(&c);
	conf_free(&c);   /* twice is harmless */
	conf_free(NULL);
}
END_TEST

START_TEST(test_defaults_endpoint)
{
	struct conf c;
	expect_ok(&c, MIN_EP);
	ck_assert_uint_eq(c.nendpoints, 1);
	const struct conf_endpoint *e = &c.endpoints[0];
	ck_assert_str_eq(e->name, "main");
	ck_assert_str_eq(e->url, "ws://127.0.0.1:4000/socket");
	ck_assert_uint_eq(e->nparams, 0);
	ck_assert_uint_eq(e->nheaders, 0);
	ck_assert_int_eq(e->tls_verify, 1);
	ck_assert_ptr_null(e->ca_file);
	ck_assert_uint_eq(e->heartbeat_ms, 30000);
	ck_assert_uint_eq(e->connect_timeout_ms, 10000);
	ck_assert_uint_eq(e->push_timeout_ms, 10000);
	ck_assert_uint_eq(e->join_timeout_ms, 10000);
	ck_assert_str_eq(e->reconnect_backoff, BACKOFF_RECONNECT_DEFAULT);
	ck_assert_str_eq(e->rejoin_backoff, BACKOFF_REJOIN_DEFAULT);
	ck_assert_uint_eq(e->push_buffer, 100);
	ck_assert_uint_eq(e->max_frame, 16 * 1024 * 1024);
	ck_assert_uint_eq(e->upstream_queue_max, 16 * 1024 * 1024);
	ck_assert_uint_eq(e->pool_size, 4);
	ck_assert_uint_eq(e->pool_min, 1);
	ck_assert_uint_eq(e->max_channels, 100);
	ck_assert_uint_eq(e->pool_idle_ms, 60000);
	ck_assert_uint_eq(e->line, 1);
	ck_assert_ptr_eq(conf_default_endpoint(&c), e);
	ck_assert_ptr_eq(conf_endpoint_find(&c, "main"), e);
	ck_assert_ptr_null(conf_endpoint_find(&c, "Main"));
	ck_assert_str_eq(err, "");
	conf_free(&c);
}
END_TEST

START_TEST(test_pool_options)
{
	struct conf c;
	expect_ok(&c, MIN_EP "pool_size = 64\npool_min = 64\nmax_channels_per_upstream = 1\n"
		  "pool_idle_timeout = 100ms\n");
	ck_assert_uint_eq(c.endpoints[0].pool_size, 64);
	ck_assert_uint_eq(c.endpoints[0].pool_min, 64);
	ck_assert_uint_eq(c.endpoints[0].max_channels, 1);
	ck_assert_uint_eq(c.endpoints[0].pool_idle_ms, 100);
	conf_free(&c);
	expect_ok(&c, MIN_EP "pool_min = 0\npool_size = 1\n");
	conf_free(&c);
	expect_ep_err("pool_size = 0", "pool_size: bad value '0' (integer 1..64)");
	expect_ep_err("pool_size = 65", "pool_size: bad value '65' (integer 1..64)");
	expect_ep_err("max_channels_per_upstream = 0",
		      "max_channels_per_upstream: bad value '0' (integer 1..1000000)");
	expect_ep_err("pool_idle_timeout = 99ms",
		      "pool_idle_timeout: bad value '99ms' (duration 100ms..24h, e.g. 60s)");
	/* pool_min may not exceed pool_size: reported at the later of the two,
	 * the line that made them disagree */
	expect_err(MIN_EP "pool_size = 2\npool_min = 3\n",
		   "phxd.conf:4: endpoint 'main': pool_min (3) is larger than pool_size (2)");
	expect_err(MIN_EP "pool_min = 3\n\n# fewer\npool_size = 2\n",
		   "phxd.conf:6: endpoint 'main': pool_min (3) is larger than pool_size (2)");
	/* only one of them set: at that one */
	expect_err(MIN_EP "\n\npool_min = 5\n",
		   "phxd.conf:5: endpoint 'main': pool_min (5) is larger than pool_size (4)");
	/* the second endpoint's own lines */
	expect_err(MIN_EP "pool_size = 2\n[endpoint b]\nurl = ws://h/\npool_size = 8\n"
		   "pool_min = 8\npool_size = 1\n",
		   "phxd.conf:8: duplicate option 'pool_size' (first at line 6)");
	expect_err(MIN_EP "pool_size = 2\n[endpoint b]\nurl = ws://h/\npool_min = 5\n",
		   "phxd.conf:6: endpoint 'b': pool_min (5) is larger than pool_size (4)");
}
END_TEST

/* The memory options: values parsed, defaults, and ranges refused with the
 * option's hint. */
START_TEST(test_memory_options)
{
	struct conf c;
	expect_ok(&c, MIN_EP);
	ck_assert_uint_eq(c.binary_pool_size, 1000);
	ck_assert_uint_eq(c.binary_max_age_ms, 300000);
	ck_assert_uint_eq(c.binary_cleanup_ms, 30000);
	ck_assert_int_eq(c.hibernation_enabled, 1);
	ck_assert_uint_eq(c.hibernation_idle_ms, 300000);
	ck_assert_uint_eq(c.hibernation_memory_threshold, 8u << 20);
	ck_assert_uint_eq(c.client_sndbuf, 0);
	conf_free(&c);
	expect_ok(&c, "binary_pool_size = 0\nbinary_max_age = 2m\nbinary_cleanup_interval = 250ms\n"
		  "hibernation_enabled = off\nhibernation_idle_timeout = 1s\n"
		  "hibernation_memory_threshold = 64k\nclient_sndbuf = 1M\nclient_rcvbuf = 512k\n"
		  MIN_EP);
	ck_assert_uint_eq(c.binary_pool_size, 0);
	ck_assert_uint_eq(c.binary_max_age_ms, 120000);
	ck_assert_uint_eq(c.binary_cleanup_ms, 250);
	ck_assert_int_eq(c.hibernation_enabled, 0);
	ck_assert_uint_eq(c.hibernation_idle_ms, 1000);
	ck_assert_uint_eq(c.hibernation_memory_threshold, 64u << 10);
	ck_assert_uint_eq(c.client_sndbuf, 1u << 20);
	ck_assert_uint_eq(c.client_rcvbuf, 512u << 10);
	conf_free(&c);
	expect_global_err("binary_pool_size = -1",
			  "binary_pool_size: bad value '-1' (integer 0..1000000 (0: no pooling))");
	expect_global_err("binary_max_age = 500ms",
			  "binary_max_age: bad value '500ms' (duration 1s..24h, e.g. 300s)");
	expect_global_err("hibernation_idle_timeout = 0",
			  "hibernation_idle_timeout: bad value '0' (duration 100ms..24h, e.g. 300s)");
	expect_global_err("hibernation_enabled = maybe",
			  "hibernation_enabled: bad value 'maybe' (true/false, yes/no, on/off or 1/0)");
	expect_global_err("client_sndbuf = 1G",
			  "client_sndbuf: bad value '1G' (size 0..256M (0: kernel default))");
}
END_TEST

START_TEST(test_access_sections)
{
	struct conf c;
	expect_ok(&c, "max_topics_per_client = 5\npush_rate = 10\npush_burst = 3\n" MIN_EP
		  "[access a]\nuid = root, 4242\ngid = 0\nendpoints = main\njoin = room:*, x\n"
		  "push = new_*\n[access rest]\njoin = lobby\n");
	ck_assert_uint_eq(c.max_topics_per_client, 5);
	ck_assert_uint_eq(c.push_rate, 10);
	ck_assert_uint_eq(c.push_burst, 3);
	ck_assert_uint_eq(c.naccess, 2);
	ck_assert_str_eq(c.access[0].name, "a");
	ck_assert_uint_eq(c.access[0].nuids, 2);
	ck_assert_uint_eq(c.access[0].uids[0], 0);
	ck_assert_uint_eq(c.access[0].uids[1], 4242);
	ck_assert_uint_eq(c.access[0].ngids, 1);
	ck_assert_ptr_null(c.access[1].push);
	ck_assert(conf_glob_match(c.access[0].join, "room:42", 7));
	ck_assert(conf_glob_match(c.access[0].join, "x", 1));
	ck_assert(!conf_glob_match(c.access[0].join, "xy", 2));
	ck_assert(!conf_glob_match(c.access[0].join, "secret:1", 8));
	ck_assert(conf_glob_match(c.access[0].push, "new_msg", 7));
	ck_assert(conf_glob_match(NULL, "anything", 8));
	conf_free(&c);
	expect_err(MIN_EP "[access a]\nuid = no-such-user-here\n",
		   "phxd.conf:3: access 'a': uid: unknown user 'no-such-user-here'");
	expect_err(MIN_EP "[access a]\ngid = no-such-group-here\n",
		   "phxd.conf:3: access 'a': gid: unknown group 'no-such-group-here'");
	expect_err(MIN_EP "[access a]\nurl = ws://x/\n",
		   "phxd.conf:4: option 'url' in [access a] (an access section takes uid, gid, "
		   "endpoints, join and push)");
	expect_err(MIN_EP "join = room:*\n", "phxd.conf:3: option 'join' outside an [access] section");
	expect_err(MIN_EP "[access a]\n[access a]\n",
		   "phxd.conf:4: duplicate access section 'a' (first at line 3)");
	expect_err(MIN_EP "[access a]\njoin = a,,b\n",
		   "phxd.conf:4: join: bad value 'a,,b' (comma-separated glob patterns)");
	expect_err(MIN_EP "[access a]\nbogus = 1\n", "phxd.conf:4: unknown option 'bogus' in [access a]");
	expect_err(MIN_EP "[access b@d]\n",
		   "phxd.conf:3: bad access section name 'b@d' (1-64 characters of A-Za-z0-9_.-)");
}
END_TEST

/* ---- every option ------------------------------------------------------------- */

START_TEST(test_all_options)
{
	struct conf c;
	expect_ok(&c,
		  "socket = /tmp/phxd-test.sock\n"
		  "socket_mode = 0600\n"
		  "max_line = 64k\n"
		  "client_queue_max = 8M\n"
		  "max_clients = 42\n"
		  "log_level = debug\n"
		  "default_endpoint = second\n"
		  "\n"
		  "[endpoint main]\n"
		  "url = wss://example.com/socket\n"
		  "param.token = abc\n"
		  "param.user_id = 7\n"
		  "header.User-Agent = phxd test\n"
		  "header.X-Trace = 1\n"
		  "tls_verify = false\n"
		  "ca_file = /etc/ssl/ca.pem\n"
		  "heartbeat_interval = 15s\n"
		  "connect_timeout = 500ms\n"
		  "push_timeout = 2m\n"
		  "join_timeout = 1h\n"
		  "reconnect_backoff = 100, 200,300\n"
		  "rejoin_backoff = 5000\n"
		  "push_buffer = 0\n"
		  "max_frame = 1G\n"
		  "[endpoint second]\n"
		  "url = ws://[::1]:4001/\n");
	ck_assert_str_eq(c.socket_path, "/tmp/phxd-test.sock");
	ck_assert_uint_eq(c.socket_mode, 0600);
	ck_assert_uint_eq(c.max_line, 64 * 1024);
	ck_assert_uint_eq(c.client_queue_max, 8 * 1024 * 1024);
	ck_assert_uint_eq(c.max_clients, 42);
	ck_assert_int_eq(c.log_level, LOG_LVL_DEBUG);
	ck_assert_str_eq(c.default_endpoint, "second");
	ck_assert_uint_eq(c.default_endpoint_line, 7);
	ck_assert_uint_eq(c.nendpoints, 2);

	const struct conf_endpoint *e = &c.endpoints[0];
	ck_assert_str_eq(e->name, "main");
	ck_assert_uint_eq(e->line, 9);
	ck_assert_str_eq(e->url, "wss://example.com/socket");
	ck_assert_uint_eq(e->nparams, 2);
	ck_assert_str_eq(e->params[0].key, "token");
	ck_assert_str_eq(e->params[0].value, "abc");
	ck_assert_str_eq(e->params[1].key, "user_id");
	ck_assert_str_eq(e->params[1].value, "7");
	ck_assert_uint_eq(e->nheaders, 2);
	ck_assert_str_eq(e->headers[0].key, "User-Agent");
	ck_assert_str_eq(e->headers[0].value, "phxd test");
	ck_assert_str_eq(e->headers[1].key, "X-Trace");
	ck_assert_str_eq(e->headers[1].value, "1");
	ck_assert_int_eq(e->tls_verify, 0);
	ck_assert_str_eq(e->ca_file, "/etc/ssl/ca.pem");
	ck_assert_uint_eq(e->heartbeat_ms, 15000);
	ck_assert_uint_eq(e->connect_timeout_ms, 500);
	ck_assert_uint_eq(e->push_timeout_ms, 120000);
	ck_assert_uint_eq(e->join_timeout_ms, 3600000);
	ck_assert_str_eq(e->reconnect_backoff, "100, 200,300");
	ck_assert_str_eq(e->rejoin_backoff, "5000");
	ck_assert_uint_eq(e->push_buffer, 0);
	ck_assert_uint_eq(e->max_frame, 1024ULL * 1024 * 1024);

	const struct conf_endpoint *s = &c.endpoints[1];
	ck_assert_str_eq(s->name, "second");
	ck_assert_uint_eq(s->line, 25);
	ck_assert_int_eq(s->tls_verify, 1);
	ck_assert_ptr_eq(conf_default_endpoint(&c), s);
	ck_assert_ptr_eq(conf_endpoint_find(&c, "main"), e);
	conf_free(&c);
}
END_TEST

START_TEST(test_bool_values)
{
	static const struct { const char *v; int want; } t[] = {
		{ "true", 1 }, { "yes", 1 }, { "on", 1 }, { "1", 1 }, { "TRUE", 1 }, { "Yes", 1 },
		{ "false", 0 }, { "no", 0 }, { "off", 0 }, { "0", 0 }, { "Off", 0 },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char text[256];
		struct conf c;
		snprintf(text, sizeof(text), MIN_EP "tls_verify = %s\n", t[i].v);
		expect_ok(&c, text);
		ck_assert_int_eq(c.endpoints[0].tls_verify, t[i].want);
		conf_free(&c);
	}
	expect_ep_err("tls_verify = maybe",
		      "tls_verify: bad value 'maybe' (true/false, yes/no, on/off or 1/0)");
	expect_ep_err("tls_verify = 2",
		      "tls_verify: bad value '2' (true/false, yes/no, on/off or 1/0)");
}
END_TEST

START_TEST(test_log_levels)
{
	static const struct { const char *v; int want; } t[] = {
		{ "error", LOG_LVL_ERR }, { "warning", LOG_LVL_WARN },
		{ "notice", LOG_LVL_NOTICE }, { "info", LOG_LVL_INFO },
		{ "debug", LOG_LVL_DEBUG }, { "DEBUG", LOG_LVL_DEBUG },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char text[256];
		struct conf c;
		snprintf(text, sizeof(text), "log_level = %s\n" MIN_EP, t[i].v);
		expect_ok(&c, text);
		ck_assert_int_eq(c.log_level, t[i].want);
		conf_free(&c);
	}
	expect_global_err("log_level = loud",
			  "log_level: bad value 'loud' (error, warning, notice, info or debug)");
}
END_TEST

START_TEST(test_ranges)
{
	struct conf c;
	/* inclusive bounds are accepted */
	expect_ok(&c, "socket_mode = 0777\nmax_line = 1k\nclient_queue_max = 4k\n"
		  "max_clients = 1\n" MIN_EP "heartbeat_interval = 100ms\n"
		  "connect_timeout = 100ms\npush_timeout = 3600s\njoin_timeout = 60m\n"
		  "push_buffer = 100000\nmax_frame = 1024\nupstream_queue_max = 64k\n");
	ck_assert_uint_eq(c.socket_mode, 0777);
	ck_assert_uint_eq(c.max_line, 1024);
	ck_assert_uint_eq(c.client_queue_max, 4096);
	ck_assert_uint_eq(c.max_clients, 1);
	ck_assert_uint_eq(c.endpoints[0].heartbeat_ms, 100);
	ck_assert_uint_eq(c.endpoints[0].connect_timeout_ms, 100);
	ck_assert_uint_eq(c.endpoints[0].push_timeout_ms, 3600000);
	ck_assert_uint_eq(c.endpoints[0].join_timeout_ms, 3600000);
	ck_assert_uint_eq(c.endpoints[0].push_buffer, 100000);
	ck_assert_uint_eq(c.endpoints[0].max_frame, 1024);
	ck_assert_uint_eq(c.endpoints[0].upstream_queue_max, 65536);
	conf_free(&c);
	expect_ok(&c, "socket_mode = 0\nmax_line = 1G\nclient_queue_max = 1g\n"
		  "max_clients = 1000000\n" MIN_EP "heartbeat_interval = 1h\n");
	ck_assert_uint_eq(c.socket_mode, 0);
	ck_assert_uint_eq(c.max_line, 1024ULL * 1024 * 1024);
	ck_assert_uint_eq(c.max_clients, 1000000);
	ck_assert_uint_eq(c.endpoints[0].heartbeat_ms, 3600000);
	conf_free(&c);
	expect_ok(&c, "socket_mode = 660\n" MIN_EP);
	ck_assert_uint_eq(c.socket_mode, 0660);
	conf_free(&c);

	/* one past each bound is refused */
	expect_global_err("socket_mode = 999", "socket_mode: bad value '999' (octal, at most 0777)");
	expect_global_err("socket_mode = 01000",
			  "socket_mode: bad value '01000' (octal, at most 0777)");
	expect_global_err("socket_mode = 0x1ff",
			  "socket_mode: bad value '0x1ff' (octal, at most 0777)");
	expect_global_err("socket_mode = -1", "socket_mode: bad value '-1' (octal, at most 0777)");
	expect_global_err("max_line = 1023", "max_line: bad value '1023' (size 1k..1G)");
	expect_global_err("max_line = 1025M", "max_line: bad value '1025M' (size 1k..1G)");
	expect_global_err("client_queue_max = 4095",
			  "client_queue_max: bad value '4095' (size 4k..1G)");
	expect_global_err("client_queue_max = 2G",
			  "client_queue_max: bad value '2G' (size 4k..1G)");
	expect_global_err("max_clients = 0", "max_clients: bad value '0' (integer 1..1000000)");
	expect_global_err("max_clients = 1000001",
			  "max_clients: bad value '1000001' (integer 1..1000000)");
	expect_global_err("max_clients = 99999999999999999999999",
			  "max_clients: bad value '99999999999999999999999' (integer 1..1000000)");
	expect_global_err("max_clients = 10k", "max_clients: bad value '10k' (integer 1..1000000)");
	expect_global_err("max_clients = +5", "max_clients: bad value '+5' (integer 1..1000000)");
	expect_ep_err("heartbeat_interval = 99ms",
		      "heartbeat_interval: bad value '99ms' (duration 100ms..1h, e.g. 30s)");
	expect_ep_err("heartbeat_interval = 61m",
		      "heartbeat_interval: bad value '61m' (duration 100ms..1h, e.g. 30s)");
	expect_ep_err("connect_timeout = 99ms",
		      "connect_timeout: bad value '99ms' (duration 100ms..1h, e.g. 10s)");
	expect_ep_err("push_timeout = 3601s",
		      "push_timeout: bad value '3601s' (duration 100ms..1h, e.g. 10s)");
	expect_ep_err("join_timeout = 0",
		      "join_timeout: bad value '0' (duration 100ms..1h, e.g. 10s)");
	expect_ep_err("join_timeout = 25h",
		      "join_timeout: bad value '25h' (duration 100ms..1h, e.g. 10s)");
	expect_ep_err("push_buffer = 100001",
		      "push_buffer: bad value '100001' (integer 0..100000)");
	expect_ep_err("push_buffer = -1", "push_buffer: bad value '-1' (integer 0..100000)");
	expect_ep_err("max_frame = 1023", "max_frame: bad value '1023' (size 1k..1G)");
	expect_ep_err("max_frame = 1073741825", "max_frame: bad value '1073741825' (size 1k..1G)");
	expect_ep_err("upstream_queue_max = 65535",
		      "upstream_queue_max: bad value '65535' (size 64k..1G)");
	expect_ep_err("upstream_queue_max = 2G", "upstream_queue_max: bad value '2G' (size 64k..1G)");
	expect_ep_err("upstream_queue_max = lots",
		      "upstream_queue_max: bad value 'lots' (size 64k..1G)");
}
END_TEST

START_TEST(test_strings)
{
	struct conf c;
	char text[512], want[512];
	/* socket: at most 107 bytes */
	char path[200];
	memset(path, 'a', sizeof(path));
	path[0] = '/';
	path[107] = '\0';
	snprintf(text, sizeof(text), "socket = %s\n" MIN_EP, path);
	expect_ok(&c, text);
	ck_assert_uint_eq(strlen(c.socket_path), 107);
	conf_free(&c);
	path[107] = 'a';
	path[108] = '\0';
	snprintf(text, sizeof(text), "socket = %s\n" MIN_EP, path);
	snprintf(want, sizeof(want),
		 "phxd.conf:1: socket: bad value '%.64s...' (a path of at most 107 bytes)", path);
	expect_err(text, want);

	expect_global_err("socket =", "socket: missing value");
	expect_global_err("socket = \"\"", "socket: missing value");
	expect_ep_err("ca_file = ", "ca_file: missing value");
	expect_global_err("default_endpoint = a b",
			  "default_endpoint: bad value 'a b' (1-64 characters of A-Za-z0-9_.-)");
	expect_ep_err("reconnect_backoff = 10,,20",
		      "reconnect_backoff: bad value '10,,20' (1 to 16 comma-separated delays "
		      "in ms, each 1..3600000)");
	expect_ep_err("rejoin_backoff = 0",
		      "rejoin_backoff: bad value '0' (1 to 16 comma-separated delays "
		      "in ms, each 1..3600000)");
	expect_ep_err("rejoin_backoff = 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17",
		      "rejoin_backoff: bad value '1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17' "
		      "(1 to 16 comma-separated delays in ms, each 1..3600000)");
	expect_ep_err("reconnect_backoff = 3600001",
		      "reconnect_backoff: bad value '3600001' (1 to 16 comma-separated delays "
		      "in ms, each 1..3600000)");
}
END_TEST

START_TEST(test_params_headers)
{
	struct conf c;
	/* empty values are allowed for params and headers when quoted */
	expect_ok(&c, MIN_EP "param.empty = \"\"\nparam.a.b-c_D9 = x=y&z\n"
		  "header.X-Empty = \"\"\nheader.x!#$%&'*+-.^_`|~ = v\n");
	ck_assert_uint_eq(c.endpoints[0].nparams, 2);
	ck_assert_str_eq(c.endpoints[0].params[0].value, "");
	ck_assert_str_eq(c.endpoints[0].params[1].key, "a.b-c_D9");
	ck_assert_str_eq(c.endpoints[0].params[1].value, "x=y&z");
	ck_assert_uint_eq(c.endpoints[0].nheaders, 2);
	ck_assert_str_eq(c.endpoints[0].headers[1].key, "x!#$%&'*+-.^_`|~");
	conf_free(&c);

	/* a 64-character key is fine, 65 is not */
	char text[512], want[512], key[80];
	memset(key, 'k', sizeof(key));
	key[64] = '\0';
	snprintf(text, sizeof(text), MIN_EP "param.%s = 1\n", key);
	expect_ok(&c, text);
	conf_free(&c);
	key[64] = 'k';
	key[65] = '\0';
	snprintf(text, sizeof(text), "param.%s = 1", key);
	snprintf(want, sizeof(want),
		 "param.%s: bad parameter name (1-64 characters of A-Za-z0-9_.-)", key);
	expect_ep_err(text, want);

	expect_ep_err("param. = 1", "param.: bad parameter name (1-64 characters of A-Za-z0-9_.-)");
	expect_ep_err("param.a/b = 1",
		      "param.a/b: bad parameter name (1-64 characters of A-Za-z0-9_.-)");
	expect_err(MIN_EP "param.token = a\nparam.token = b\n",
		   "phxd.conf:4: duplicate option 'param.token' (first at line 3)");
	/* parameter keys are case-sensitive */
	expect_ok(&c, MIN_EP "param.token = a\nparam.Token = b\n");
	conf_free(&c);

	expect_ep_err("header. = 1", "header.: bad header name (1-256 HTTP token characters)");
	expect_ep_err("header.X:Y = 1", "header.X:Y: bad header name (1-256 HTTP token characters)");
	expect_ep_err("header.X(Y) = 1",
		      "header.X(Y): bad header name (1-256 HTTP token characters)");
	expect_ep_err("header.Host = evil", "header.Host: phxd sets this header itself");
	expect_ep_err("header.host = evil", "header.host: phxd sets this header itself");
	expect_ep_err("header.Upgrade = h2c", "header.Upgrade: phxd sets this header itself");
	expect_ep_err("header.CONNECTION = close",
		      "header.CONNECTION: phxd sets this header itself");
	expect_ep_err("header.Sec-WebSocket-Key = x",
		      "header.Sec-WebSocket-Key: phxd sets this header itself");
	expect_ep_err("header.sec-websocket-protocol = x",
		      "header.sec-websocket-protocol: phxd sets this header itself");
	/* header names compare without case */
	expect_err(MIN_EP "header.X-A = 1\nheader.x-a = 2\n",
		   "phxd.conf:4: duplicate option 'header.x-a' (first at line 3)");
	/* CR inside a value cannot get through: it is a control character */
	expect_err(MIN_EP "header.X-A = a\rb\n", "phxd.conf:3: control character 0x0d in line");
}
END_TEST

START_TEST(test_url_option)
{
	struct conf c;
	expect_ok(&c, "[endpoint a]\nurl = \"WSS://Example.COM\"\n");
	ck_assert_str_eq(c.endpoints[0].url, "WSS://Example.COM");
	conf_free(&c);
	expect_err("[endpoint a]\nurl = http://example.com/socket\n",
		   "phxd.conf:2: url: bad value 'http://example.com/socket' "
		   "(scheme must be ws:// or wss://)");
	/* user info, query values and fragments are not echoed: they may be
	 * secrets */
	expect_err("[endpoint a]\nurl = ws://user@example.com/socket?token=s3cret\n",
		   "phxd.conf:2: url: bad value 'ws://***@example.com/socket?token=***' "
		   "(user info ('user@') is not allowed)");
	expect_err("[endpoint a]\nurl = wss://alice:s3cret@example.com/socket\n",
		   "phxd.conf:2: url: bad value 'wss://***@example.com/socket' "
		   "(user info ('user@') is not allowed)");
	expect_err("[endpoint a]\nurl = ws://example.com/socket#s3cret\n",
		   "phxd.conf:2: url: bad value 'ws://example.com/socket#***' "
		   "(fragments ('#') are not allowed)");
	expect_err("[endpoint a]\nurl = http://alice:s3cret@example.com/\n",
		   "phxd.conf:2: url: bad value 'http://***@example.com/' "
		   "(scheme must be ws:// or wss://)");
}
END_TEST

/* ---- error messages ----------------------------------------------------------- */

START_TEST(test_errors_brief)
{
	/* the messages named in the design */
	expect_err("socket_mode = 0660\n\n[endpoint main]\nurl = ws://h/\n\n\n\n\n\n\n\nfoo = 1\n",
		   "phxd.conf:12: unknown option 'foo' in [endpoint main]");
	expect_err("# mode\n\nsocket_mode = 999\n" MIN_EP,
		   "phxd.conf:3: socket_mode: bad value '999' (octal, at most 0777)");
	expect_err("\n\n\n\n\n\n\n[endpoint main]\nurl = ws://a/\n\n[endpoint other]\n"
		   "url = ws://b/\n\n\n\n\n\n\n\n[endpoint main]\n",
		   "phxd.conf:20: duplicate endpoint 'main' (first at line 8)");
	expect_err("\n\n\n\nurl = ws://a/\n" MIN_EP,
		   "phxd.conf:5: option 'url' outside an [endpoint] section");
	expect_err("\n\n\n\n\n\n[endpoint main]\nurl = ws://a/\nurl = ws://b/\n",
		   "phxd.conf:9: duplicate option 'url' (first at line 8)");
	expect_err(MIN_EP "\n\n\n\n\n\n\n\n\n\n\njust some words\n",
		   "phxd.conf:14: syntax error: expected 'key = value'");
	expect_err("socket_mode = 0600\n", "phxd.conf: no [endpoint] section");
	expect_err("", "phxd.conf: no [endpoint] section");
	expect_err("# nothing but comments\n; really\n", "phxd.conf: no [endpoint] section");
	expect_err("\n\n\n\n\n\n\n[endpoint main]\nheartbeat_interval = 5s\n",
		   "phxd.conf:8: endpoint 'main': missing url");
	expect_err("default_endpoint = nope\n" MIN_EP,
		   "phxd.conf:1: default_endpoint: unknown endpoint 'nope'");
}
END_TEST

START_TEST(test_errors_more)
{
	expect_global_err("foo = 1", "unknown option 'foo'");
	expect_global_err("param.x = 1", "option 'param.x' outside an [endpoint] section");
	expect_global_err("header.X = 1", "option 'header.X' outside an [endpoint] section");
	expect_ep_err("socket = /x", "global option 'socket' in [endpoint main] (global options "
		      "go before the first [endpoint] section)");
	expect_err("max_clients = 5\nmax_clients = 6\n" MIN_EP,
		   "phxd.conf:2: duplicate option 'max_clients' (first at line 1)");
	/* the same option in two endpoints is fine */
	struct conf c;
	expect_ok(&c, "[endpoint a]\nurl = ws://a/\n[endpoint b]\nurl = ws://b/\n");
	ck_assert_uint_eq(c.nendpoints, 2);
	ck_assert_ptr_eq(conf_default_endpoint(&c), &c.endpoints[0]);
	conf_free(&c);
	/* missing url is found for the right endpoint */
	expect_err("[endpoint a]\nurl = ws://a/\n[endpoint b]\n[endpoint c]\nurl = ws://c/\n",
		   "phxd.conf:3: endpoint 'b': missing url");
	/* section headers */
	expect_err("[endpoint]\n", "phxd.conf:1: syntax error: expected '[endpoint NAME]' or '[access NAME]'");
	expect_err("[global]\n", "phxd.conf:1: syntax error: expected '[endpoint NAME]' or '[access NAME]'");
	expect_err("[Endpoint a]\n", "phxd.conf:1: syntax error: expected '[endpoint NAME]' or '[access NAME]'");
	expect_err("[endpoint a\n", "phxd.conf:1: syntax error: expected '[endpoint NAME]' or '[access NAME]'");
	expect_err("[endpoint a] x\n", "phxd.conf:1: syntax error: text after ']'");
	expect_err("[endpoint a b]\n",
		   "phxd.conf:1: bad endpoint name 'a b' (1-64 characters of A-Za-z0-9_.-)");
	expect_err("[endpoint a/b]\n",
		   "phxd.conf:1: bad endpoint name 'a/b' (1-64 characters of A-Za-z0-9_.-)");
	expect_err("[endpoint a\xc3\xa9]\n",
		   "phxd.conf:1: bad endpoint name 'a\xc3\xa9' (1-64 characters of A-Za-z0-9_.-)");
	char text[256], want[256], name[80];
	memset(name, 'n', sizeof(name));
	name[64] = '\0';
	snprintf(text, sizeof(text), "[endpoint %s]\nurl = ws://a/\n", name);
	expect_ok(&c, text);
	ck_assert_str_eq(c.endpoints[0].name, name);
	conf_free(&c);
	name[64] = 'n';
	name[65] = '\0';
	snprintf(text, sizeof(text), "[endpoint %s]\nurl = ws://a/\n", name);
	snprintf(want, sizeof(want),
		 "phxd.conf:1: bad endpoint name '%.64s' (1-64 characters of A-Za-z0-9_.-)", name);
	expect_err(text, want);
	/* key = value syntax */
	expect_global_err("= 5", "syntax error: expected 'key = value'");
	expect_global_err("foo bar = 5", "syntax error: expected 'key = value'");
	expect_global_err("\"socket\" = /x", "syntax error: expected 'key = value'");
	expect_global_err("max_clients", "syntax error: expected 'key = value'");
}
END_TEST

START_TEST(test_errors_bytes)
{
	/* NUL bytes need the length-taking entry point */
	static const char nul[] = MIN_EP "push_buffer = 1\0\n";
	struct conf c;
	conf_init(&c);
	int r = conf_parse_text(&c, nul, sizeof(nul) - 1, "phxd.conf", err, sizeof(err));
	ck_assert_int_eq(r, -EINVAL);
	ck_assert_str_eq(err, "phxd.conf:3: NUL byte in line");
	conf_free(&c);

	expect_err(MIN_EP "param.x = \xff\n", "phxd.conf:3: invalid UTF-8");
	expect_err(MIN_EP "param.x = \xc0\xaf\n", "phxd.conf:3: invalid UTF-8");       /* overlong */
	expect_err(MIN_EP "param.x = \xed\xa0\x80\n", "phxd.conf:3: invalid UTF-8");   /* surrogate */
	expect_err(MIN_EP "param.x = \xe2\x82\n", "phxd.conf:3: invalid UTF-8");       /* cut short */
	expect_err("# caf\xe9\n" MIN_EP, "phxd.conf:1: invalid UTF-8");
	expect_err(MIN_EP "param.x = a\x01z\n", "phxd.conf:3: control character 0x01 in line");
	expect_err(MIN_EP "param.x = a\x7fz\n", "phxd.conf:3: control character 0x7f in line");
	expect_err(MIN_EP "\x1b[31m\n", "phxd.conf:3: control character 0x1b in line");

	/* valid UTF-8 values pass */
	expect_ok(&c, MIN_EP "param.name = J\xc3\xbcrgen \xe2\x82\xac \xf0\x9f\x98\x80\n");
	ck_assert_str_eq(c.endpoints[0].params[0].value, "J\xc3\xbcrgen \xe2\x82\xac \xf0\x9f\x98\x80");
	conf_free(&c);

	/* line length cap: 64 KiB passes, one more byte fails */
	size_t n = CONF_LINE_MAX;
	char *text = malloc(n + 256);
	ck_assert_ptr_nonnull(text);
	int h = snprintf(text, 256, MIN_EP "param.big = ");
	memset(text + h, 'v', n - (size_t)(h - (int)strlen(MIN_EP)));
	size_t end = (size_t)h + n - (size_t)(h - (int)strlen(MIN_EP));
	strcpy(text + end, "\n");
	expect_ok(&c, text);
	ck_assert_uint_eq(strlen(c.endpoints[0].params[0].value), n - strlen("param.big = "));
	conf_free(&c);
	text[end] = 'v';
	strcpy(text + end + 1, "\n");
	expect_err(text, "phxd.conf:3: line too long (more than 65536 bytes)");
	free(text);
}
END_TEST

/* ---- syntax: comments, quotes, line ends ----------------------------------------- */

START_TEST(test_comments)
{
	struct conf c;
	expect_ok(&c,
		  "# comment\n"
		  "; also a comment\n"
		  "   # indented comment\n"
		  "\t; indented too\n"
		  "\n"
		  "   \t  \n"
		  "max_clients = 5 # trailing comment\n"
		  "max_line = 2k\t# after a tab\n"
		  "[endpoint main] # comment after a section\n"
		  "url = ws://127.0.0.1:4000/socket   # the url\n"
		  "param.hash = a#b\n"
		  "param.semi = a ; b\n"
		  "param.quoted = \"x # y\"   # comment\n"
		  "param.eqhash =#x\n"
		  "[endpoint second]# tight comment\n"
		  "url = ws://b/\n");
	ck_assert_uint_eq(c.max_clients, 5);
	ck_assert_uint_eq(c.max_line, 2048);
	ck_assert_str_eq(c.endpoints[0].url, "ws://127.0.0.1:4000/socket");
	ck_assert_str_eq(c.endpoints[0].params[0].value, "a#b");
	ck_assert_str_eq(c.endpoints[0].params[1].value, "a ; b");
	ck_assert_str_eq(c.endpoints[0].params[2].value, "x # y");
	ck_assert_str_eq(c.endpoints[0].params[3].value, "#x");
	ck_assert_str_eq(c.endpoints[1].name, "second");
	conf_free(&c);
	/* a value that is only a comment is missing */
	expect_global_err("max_clients = # none", "max_clients: missing value");
}
END_TEST

START_TEST(test_quotes)
{
	struct conf c;
	expect_ok(&c, MIN_EP
		  "param.a = \"  spaced  \"\n"
		  "param.b = \"say \\\"hi\\\"\"\n"
		  "param.c = \"back\\\\slash\"\n"
		  "param.d = \"\"\n"
		  "param.e = mid\"quote\n"
		  "param.f =\"tight\"\n"
		  "param.g = \"x\"#c\n"
		  "param.h = unquoted with  inner   spaces  \n"
		  "param.i = \"a\\\\\"\n"
		  "push_buffer = \"7\"\n");
	const struct conf_endpoint *e = &c.endpoints[0];
	ck_assert_str_eq(e->params[0].value, "  spaced  ");
	ck_assert_str_eq(e->params[1].value, "say \"hi\"");
	ck_assert_str_eq(e->params[2].value, "back\\slash");
	ck_assert_str_eq(e->params[3].value, "");
	ck_assert_str_eq(e->params[4].value, "mid\"quote");
	ck_assert_str_eq(e->params[5].value, "tight");
	ck_assert_str_eq(e->params[6].value, "x");
	ck_assert_str_eq(e->params[7].value, "unquoted with  inner   spaces");
	ck_assert_str_eq(e->params[8].value, "a\\");
	ck_assert_uint_eq(e->push_buffer, 7);
	conf_free(&c);
	/* unquoted backslashes are plain characters */
	expect_ok(&c, MIN_EP "param.w = C:\\dir\\n\n");
	ck_assert_str_eq(c.endpoints[0].params[0].value, "C:\\dir\\n");
	conf_free(&c);

	expect_ep_err("param.x = \"open", "syntax error: unterminated quoted value");
	expect_ep_err("param.x = \"open\\\"", "syntax error: unterminated quoted value");
	expect_ep_err("param.x = \"a\" b", "syntax error: text after the closing quote");
	expect_ep_err("param.x = \"a\\n\"",
		      "syntax error: bad escape in quoted value (only \\\" and \\\\)");
	expect_ep_err("push_buffer = \"\"", "push_buffer: missing value");
}
END_TEST

START_TEST(test_crlf_bom)
{
	struct conf c;
	expect_ok(&c, "max_clients = 9\r\n\r\n# c\r\n[endpoint main]\r\n"
		  "url = ws://127.0.0.1:4000/socket\r\nparam.t = \"q\"\r\nparam.u = v\r\n");
	ck_assert_uint_eq(c.max_clients, 9);
	ck_assert_str_eq(c.endpoints[0].url, "ws://127.0.0.1:4000/socket");
	ck_assert_str_eq(c.endpoints[0].params[0].value, "q");
	ck_assert_str_eq(c.endpoints[0].params[1].value, "v");
	ck_assert_uint_eq(c.endpoints[0].line, 4);
	conf_free(&c);
	/* line numbers stay right with CRLF */
	expect_err("max_clients = 9\r\n\r\nbogus = 1\r\n", "phxd.conf:3: unknown option 'bogus'");
	/* a last line without a newline */
	expect_ok(&c, "[endpoint main]\nurl = ws://h/");
	ck_assert_str_eq(c.endpoints[0].url, "ws://h/");
	conf_free(&c);
	/* a byte order mark at the very start is skipped */
	expect_ok(&c, "\xEF\xBB\xBF[endpoint main]\nurl = ws://h/\n");
	conf_free(&c);
	/* a lone CR inside a line is a control character */
	expect_err("[endpoint main]\rurl = ws://h/\n", "phxd.conf:1: control character 0x0d in line");
}
END_TEST

START_TEST(test_file_name)
{
	struct conf c;
	conf_init(&c);
	ck_assert_int_eq(conf_parse_string(&c, "x = 1\n", NULL, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "config:1: unknown option 'x'");
	conf_free(&c);
	/* a short err buffer gets a truncated, terminated message */
	char small[12];
	conf_init(&c);
	ck_assert_int_eq(conf_parse_string(&c, "x = 1\n", "phxd.conf", small, sizeof(small)),
			 -EINVAL);
	ck_assert_str_eq(small, "phxd.conf:1");
	conf_free(&c);
	conf_init(&c);
	ck_assert_int_eq(conf_parse_string(&c, "x = 1\n", "phxd.conf", NULL, 0), -EINVAL);
	conf_free(&c);
}
END_TEST

/* ---- files -------------------------------------------------------------------- */

START_TEST(test_sample_conf)
{
	const char *srcdir = getenv("srcdir");
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/conf/phxd.conf", srcdir ? srcdir : ".");
	struct conf c;
	conf_init(&c);
	int r = conf_load_file(&c, path, err, sizeof(err));
	ck_assert_msg(r == 0, "%s", err);
	ck_assert_uint_eq(c.nendpoints, 1);
	ck_assert_str_eq(c.endpoints[0].name, "main");
	ck_assert_str_eq(c.endpoints[0].url, "ws://127.0.0.1:4000/socket");
	/* everything else in the sample is commented out: defaults */
	ck_assert_uint_eq(c.endpoints[0].nparams, 0);
	ck_assert_uint_eq(c.endpoints[0].heartbeat_ms, 30000);
	ck_assert_uint_eq(c.socket_mode, 0660);
	ck_assert_str_eq(c.socket_path, RUNSTATEDIR "/phxd/phxd.sock");
	conf_free(&c);
}
END_TEST

/* The commented-out lines of the sample, uncommented, parse and set the
 * documented defaults. */
START_TEST(test_sample_uncommented)
{
	const char *srcdir = getenv("srcdir");
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/conf/phxd.conf", srcdir ? srcdir : ".");
	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	char *text = calloc(1, 1 << 20);
	ck_assert_ptr_nonnull(text);
	size_t n = 0;
	char line[1024];
	while (fgets(line, sizeof(line), f)) {
		/* "#key = value" lines (no space after '#') are commented options */
		const char *s = line;
		if (s[0] == '#' && s[1] != ' ' && s[1] != '\n' && s[1] != '#' && s[1] != '-' &&
		    strchr(s, '='))
			s++;
		size_t l = strlen(s);
		memcpy(text + n, s, l);
		n += l;
	}
	fclose(f);
	struct conf c, d;
	expect_ok(&c, text);
	free(text);
	conf_init(&d);
	struct conf_endpoint *de = conf_add_endpoint(&d, "main", "ws://127.0.0.1:4000/socket");
	ck_assert_ptr_nonnull(de);
	const struct conf_endpoint *e = &c.endpoints[0];
	ck_assert_str_eq(c.socket_path, "/run/phxd/phxd.sock");
	ck_assert_uint_eq(c.socket_mode, d.socket_mode);
	ck_assert_uint_eq(c.max_line, d.max_line);
	ck_assert_uint_eq(c.client_queue_max, d.client_queue_max);
	ck_assert_uint_eq(c.max_clients, d.max_clients);
	ck_assert_int_eq(c.log_level, d.log_level);
	ck_assert_str_eq(c.default_endpoint, "main");
	ck_assert_uint_eq(e->nparams, 1);
	ck_assert_str_eq(e->params[0].key, "token");
	ck_assert_uint_eq(e->nheaders, 1);
	ck_assert_int_eq(e->tls_verify, de->tls_verify);
	ck_assert_uint_eq(e->heartbeat_ms, de->heartbeat_ms);
	ck_assert_uint_eq(e->connect_timeout_ms, de->connect_timeout_ms);
	ck_assert_uint_eq(e->push_timeout_ms, de->push_timeout_ms);
	ck_assert_uint_eq(e->join_timeout_ms, de->join_timeout_ms);
	ck_assert_str_eq(e->reconnect_backoff, de->reconnect_backoff);
	ck_assert_str_eq(e->rejoin_backoff, de->rejoin_backoff);
	ck_assert_uint_eq(e->push_buffer, de->push_buffer);
	ck_assert_uint_eq(e->max_frame, de->max_frame);
	ck_assert_str_eq(c.control_socket, "/run/phxd/control.sock");
	ck_assert_uint_eq(c.control_socket_mode, d.control_socket_mode);
	ck_assert_str_eq(c.metrics_listen, "127.0.0.1:9187");
	ck_assert_uint_eq(c.metrics_interval_ms, d.metrics_interval_ms);
	ck_assert_uint_eq(c.history_size, d.history_size);
	ck_assert_uint_eq(c.alert_memory, d.alert_memory);
	ck_assert_uint_eq(c.alert_cache_hit_rate, d.alert_cache_hit_rate);
	ck_assert_uint_eq(c.alert_queue_depth, d.alert_queue_depth);
	ck_assert_uint_eq(c.alert_response_ms, d.alert_response_ms);
	conf_free(&c);
	conf_free(&d);
}
END_TEST

/* The EXAMPLE section of docs/phxd.conf.5, read from the page itself. */
START_TEST(test_man_example)
{
	const char *srcdir = getenv("srcdir");
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/docs/phxd.conf.5", srcdir ? srcdir : ".");
	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	char line[1024], text[8192] = "";
	int state = 0;   /* 0: before EXAMPLE, 1: before .nf, 2: in it */
	while (fgets(line, sizeof(line), f) && state < 3) {
		if (state == 0 && strncmp(line, ".SH EXAMPLE", 11) == 0)
			state = 1;
		else if (state == 1 && strncmp(line, ".nf", 3) == 0)
			state = 2;
		else if (state == 2 && strncmp(line, ".fi", 3) == 0)
			state = 3;
		else if (state == 2) {
			/* undo the roff escapes the example uses */
			char *q;
			while ((q = strstr(line, "\\-")))
				memmove(q, q + 1, strlen(q));
			ck_assert_uint_lt(strlen(text) + strlen(line), sizeof(text));
			strcat(text, line);
		}
	}
	fclose(f);
	ck_assert_int_eq(state, 3);
	struct conf c;
	expect_ok(&c, text);
	ck_assert_uint_eq(c.nendpoints, 2);
	ck_assert_str_eq(conf_default_endpoint(&c)->name, "main");
	ck_assert_str_eq(c.endpoints[0].params[0].value, "SFMyNTY.g2gDbQAAAAM");
	ck_assert_str_eq(c.endpoints[1].headers[0].key, "User-Agent");
	ck_assert_str_eq(c.endpoints[1].headers[0].value, "phxd (admin)");
	ck_assert_str_eq(c.endpoints[1].ca_file, "/etc/phxd/admin-ca.pem");
	ck_assert_str_eq(c.endpoints[1].reconnect_backoff, "1000,5000,30000");
	conf_free(&c);
}
END_TEST

static char *tmp_write(const char *content, size_t len)
{
	static char path[64];
	snprintf(path, sizeof(path), "/tmp/unit_conf.XXXXXX");
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	size_t off = 0;
	while (off < len) {
		ssize_t w = write(fd, content + off, len - off);
		ck_assert_int_gt(w, 0);
		off += (size_t)w;
	}
	close(fd);
	return path;
}

START_TEST(test_load_file)
{
	struct conf c;
	char want[256];

	conf_init(&c);
	ck_assert_int_eq(conf_load_file(&c, "/nonexistent/phxd.conf", err, sizeof(err)), -ENOENT);
	ck_assert_str_eq(err, "/nonexistent/phxd.conf: No such file or directory");
	conf_free(&c);

	conf_init(&c);
	ck_assert_int_eq(conf_load_file(&c, "/tmp", err, sizeof(err)), -EISDIR);
	ck_assert_str_eq(err, "/tmp: Is a directory");
	conf_free(&c);

	/* errors name the path as given */
	const char *bad = "[endpoint a]\nurl = ws://a/\nnope = 1\n";
	char *p = tmp_write(bad, strlen(bad));
	conf_init(&c);
	ck_assert_int_eq(conf_load_file(&c, p, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "%s:3: unknown option 'nope' in [endpoint a]", p);
	ck_assert_str_eq(err, want);
	conf_free(&c);
	unlink(p);

	/* NUL bytes in a file */
	static const char nul[] = "[endpoint a]\nurl = ws://a/\0\n";
	p = tmp_write(nul, sizeof(nul) - 1);
	conf_init(&c);
	ck_assert_int_eq(conf_load_file(&c, p, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "%s:2: NUL byte in line", p);
	ck_assert_str_eq(err, want);
	conf_free(&c);
	unlink(p);

	/* exactly 1 MiB is read, one byte more is refused */
	size_t big = CONF_FILE_MAX;
	char *text = malloc(big + 1);
	ck_assert_ptr_nonnull(text);
	memset(text, '\n', big + 1);
	memcpy(text, MIN_EP, strlen(MIN_EP));
	p = tmp_write(text, big);
	conf_init(&c);
	ck_assert_int_eq(conf_load_file(&c, p, err, sizeof(err)), 0);
	conf_free(&c);
	unlink(p);
	p = tmp_write(text, big + 1);
	conf_init(&c);
	ck_assert_int_eq(conf_load_file(&c, p, err, sizeof(err)), -EFBIG);
	snprintf(want, sizeof(want), "%s: file too large (more than 1048576 bytes)", p);
	ck_assert_str_eq(err, want);
	conf_free(&c);
	unlink(p);
	free(text);
}
END_TEST

/* ---- API for command-line endpoints --------------------------------------------- */

START_TEST(test_add_endpoint_check)
{
	struct conf c;
	conf_init(&c);
	ck_assert_int_eq(conf_check(&c, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "no [endpoint] section");
	struct conf_endpoint *e = conf_add_endpoint(&c, "cli", "ws://localhost:4000/socket");
	ck_assert_ptr_nonnull(e);
	ck_assert_int_eq(e->tls_verify, 1);
	ck_assert_uint_eq(e->line, 0);
	ck_assert_int_eq(conf_check(&c, err, sizeof(err)), 0);
	ck_assert_ptr_eq(conf_default_endpoint(&c), &c.endpoints[0]);

	ck_assert_ptr_nonnull(conf_add_endpoint(&c, "nourl", NULL));
	ck_assert_int_eq(conf_check(&c, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "endpoint 'nourl': missing url");
	conf_free(&c);

	conf_init(&c);
	ck_assert_ptr_nonnull(conf_add_endpoint(&c, "x", "http://h/"));
	ck_assert_int_eq(conf_check(&c, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "endpoint 'x': bad url (scheme must be ws:// or wss://)");
	conf_free(&c);

	conf_init(&c);
	ck_assert_ptr_nonnull(conf_add_endpoint(&c, "x", "ws://h/"));
	ck_assert_ptr_nonnull(conf_add_endpoint(&c, "x", "ws://h/"));
	ck_assert_int_eq(conf_check(&c, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "duplicate endpoint 'x'");
	conf_free(&c);

	conf_init(&c);
	ck_assert_ptr_nonnull(conf_add_endpoint(&c, "bad name", "ws://h/"));
	ck_assert_int_eq(conf_check(&c, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "bad endpoint name 'bad name' (1-64 characters of A-Za-z0-9_.-)");
	conf_free(&c);

	conf_init(&c);
	ck_assert_ptr_nonnull(conf_add_endpoint(&c, "a", "ws://h/"));
	c.default_endpoint = strdup("b");
	ck_assert_int_eq(conf_check(&c, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "default_endpoint: unknown endpoint 'b'");
	ck_assert_ptr_null(conf_default_endpoint(&c));
	ck_assert_ptr_nonnull(conf_add_endpoint(&c, "b", "wss://h/"));
	ck_assert_int_eq(conf_check(&c, err, sizeof(err)), 0);
	ck_assert_str_eq(conf_default_endpoint(&c)->name, "b");
	conf_free(&c);
}
END_TEST

/* ---- durations and sizes ----------------------------------------------------------- */

START_TEST(test_duration)
{
	static const struct { const char *s; unsigned ms; } good[] = {
		{ "0", 0 }, { "30", 30000 }, { "250ms", 250 }, { "10s", 10000 },
		{ "2m", 120000 }, { "1h", 3600000 }, { "24h", 86400000 },
		{ "86400", 86400000 }, { "1440m", 86400000 }, { "86400000ms", 86400000 },
		{ "0ms", 0 }, { "007s", 7000 },
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		unsigned ms = 12345;
		ck_assert_msg(conf_parse_duration(good[i].s, &ms) == 0, "'%s'", good[i].s);
		ck_assert_uint_eq(ms, good[i].ms);
	}
	static const char *const bad[] = {
		"", "10x", "-1", "+1", " 1", "1 ", "1 s", "s", "ms", "1.5s", "10S", "10sec",
		"25h", "86401", "86400001ms", "1441m", "99999999999999999999999999",
		"18446744073709551616ms", "4294967296", "1d", "0x10", "1e3",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		unsigned ms = 12345;
		ck_assert_msg(conf_parse_duration(bad[i], &ms) == -EINVAL, "'%s'", bad[i]);
		ck_assert_uint_eq(ms, 12345);   /* untouched on error */
	}
}
END_TEST

START_TEST(test_size)
{
	static const struct { const char *s; unsigned long long n; } good[] = {
		{ "0", 0 }, { "4096", 4096 }, { "64k", 65536 }, { "64K", 65536 },
		{ "16M", 16777216 }, { "16m", 16777216 }, { "1G", 1073741824ULL },
		{ "1g", 1073741824ULL }, { "0k", 0 }, { "0010", 10 },
		{ "4294967296", 4294967296ULL }, { "8G", 8589934592ULL },
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		size_t n = 12345;
		ck_assert_msg(conf_parse_size(good[i].s, &n) == 0, "'%s'", good[i].s);
		ck_assert_uint_eq(n, good[i].n);
	}
	static const char *const bad[] = {
		"", "10x", "-1", "+1", " 1", "1 ", "k", "1kb", "1KiB", "1 k", "1.5M", "1T",
		"0x10", "99999999999999999999", "18446744073709551616",
		"18446744073709551615k", "17179869184G",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t n = 12345;
		ck_assert_msg(conf_parse_size(bad[i], &n) == -EINVAL, "'%s'", bad[i]);
		ck_assert_uint_eq(n, 12345);
	}
}
END_TEST

/* ---- url_parse --------------------------------------------------------------------- */

static void url_ok(const char *s, int tls, const char *host, const char *port,
		   const char *path)
{
	struct url u;
	const char *why = NULL;
	int r = url_parse(s, &u, &why);
	ck_assert_msg(r == 0, "'%s': %s", s, why ? why : "?");
	ck_assert_int_eq(u.tls, tls);
	ck_assert_str_eq(u.host, host);
	ck_assert_str_eq(u.port, port);
	ck_assert_str_eq(u.path, path);
}

static void url_bad(const char *s, const char *why_want)
{
	struct url u;
	memset(&u, 0x5a, sizeof(u));
	const char *why = NULL;
	int r = url_parse(s, &u, &why);
	ck_assert_msg(r == -EINVAL, "'%s' accepted", s);
	ck_assert_ptr_nonnull(why);
	ck_assert_str_eq(why, why_want);
	/* the output is untouched on error */
	ck_assert_int_eq(u.tls, 0x5a5a5a5a);
	ck_assert_int_eq((unsigned char)u.host[0], 0x5a);
}

/* The control socket, metrics and alert options (issue 5). */
START_TEST(test_control_options)
{
	struct conf c;
	conf_init(&c);
	ck_assert_ptr_null(c.control_socket);           /* control.sock beside socket */
	ck_assert_uint_eq(c.control_socket_mode, 0600);
	ck_assert_ptr_null(c.metrics_listen);
	ck_assert_uint_eq(c.metrics_interval_ms, 1000);
	ck_assert_uint_eq(c.history_size, 300);
	ck_assert_uint_eq(c.alert_memory, 100 * 1024 * 1024);
	ck_assert_uint_eq(c.alert_cache_hit_rate, 80);
	ck_assert_uint_eq(c.alert_queue_depth, 1024 * 1024);
	ck_assert_uint_eq(c.alert_response_ms, 1000);
	conf_free(&c);

	expect_ok(&c, "control_socket = /tmp/c.sock\ncontrol_socket_mode = 0660\n"
		  "metrics_listen = [::1]:9187\nmetrics_interval = 250ms\nhistory_size = 1\n"
		  "alert_memory = 0\nalert_cache_hit_rate = 100\nalert_queue_depth = 64k\n"
		  "alert_response_time = 0\n" MIN_EP);
	ck_assert_str_eq(c.control_socket, "/tmp/c.sock");
	ck_assert_uint_eq(c.control_socket_mode, 0660);
	ck_assert_str_eq(c.metrics_listen, "[::1]:9187");
	ck_assert_uint_eq(c.metrics_interval_ms, 250);
	ck_assert_uint_eq(c.history_size, 1);
	ck_assert_uint_eq(c.alert_memory, 0);
	ck_assert_uint_eq(c.alert_cache_hit_rate, 100);
	ck_assert_uint_eq(c.alert_queue_depth, 65536);
	ck_assert_uint_eq(c.alert_response_ms, 0);
	conf_free(&c);
	expect_ok(&c, "metrics_listen = localhost:1\n" MIN_EP);
	conf_free(&c);
	expect_ok(&c, "metrics_listen = 127.9.8.7:65535\n" MIN_EP);
	conf_free(&c);

	expect_global_err("metrics_listen = 0.0.0.0:9187",
			  "metrics_listen: '0.0.0.0:9187' is not a loopback address "
			  "(127.0.0.1:PORT, [::1]:PORT or localhost:PORT)");
	expect_global_err("metrics_listen = [::]:9187",
			  "metrics_listen: '[::]:9187' is not a loopback address "
			  "(127.0.0.1:PORT, [::1]:PORT or localhost:PORT)");
	const char *bad[] = { "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "::1:80",
			      "[::1]80", "example.com:80", "127.0.0.1:80x", "[127.0.0.1]:80" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char line[128], msg[256];
		snprintf(line, sizeof(line), "metrics_listen = %s", bad[i]);
		snprintf(msg, sizeof(msg), "metrics_listen: bad value '%s' (127.0.0.1:PORT, "
			 "[::1]:PORT or localhost:PORT)", bad[i]);
		expect_global_err(line, msg);
	}
	expect_global_err("metrics_interval = 50ms",
			  "metrics_interval: bad value '50ms' (duration 100ms..1h, e.g. 1s)");
	expect_global_err("history_size = 100001",
			  "history_size: bad value '100001' (integer 1..100000)");
	expect_global_err("alert_cache_hit_rate = 101",
			  "alert_cache_hit_rate: bad value '101' (percent 0..100 (0: off))");
	expect_global_err("control_socket_mode = 0800",
			  "control_socket_mode: bad value '0800' (octal, at most 0777)");
}
END_TEST

START_TEST(test_url_good)
{
	url_ok("ws://127.0.0.1:4000/socket", 0, "127.0.0.1", "4000", "/socket");
	url_ok("wss://example.com/socket", 1, "example.com", "443", "/socket");
	url_ok("ws://example.com", 0, "example.com", "80", "/");
	url_ok("wss://example.com", 1, "example.com", "443", "/");
	url_ok("WS://Example.com/", 0, "Example.com", "80", "/");
	url_ok("WsS://h:1/a/b?x=1&y=2", 1, "h", "1", "/a/b?x=1&y=2");
	url_ok("ws://h?token=abc", 0, "h", "80", "/?token=abc");
	url_ok("ws://h:65535", 0, "h", "65535", "/");
	url_ok("ws://h:08080/", 0, "h", "8080", "/");
	url_ok("ws://[::1]:4000/socket", 0, "::1", "4000", "/socket");
	url_ok("wss://[2001:db8::1]/", 1, "2001:db8::1", "443", "/");
	url_ok("ws://[::ffff:192.0.2.1]", 0, "::ffff:192.0.2.1", "80", "/");
	url_ok("ws://my-host_1.example.org:80/p%20q", 0, "my-host_1.example.org", "80", "/p%20q");
	url_ok("ws://localhost/socket/websocket?vsn=2.0.0", 0, "localhost", "80",
	       "/socket/websocket?vsn=2.0.0");
	url_ok("ws://h/a:b@c", 0, "h", "80", "/a:b@c");   /* '@' in the path is fine */

	/* longest host and path that fit */
	char s[2048], host[300];
	memset(host, 'h', sizeof(host));
	host[255] = '\0';
	snprintf(s, sizeof(s), "ws://%s/", host);
	url_ok(s, 0, host, "80", "/");
	char path[1100];
	memset(path, 'p', sizeof(path));
	path[0] = '/';
	path[1023] = '\0';
	snprintf(s, sizeof(s), "ws://h%s", path);
	url_ok(s, 0, "h", "80", path);
}
END_TEST

START_TEST(test_url_bad)
{
	url_bad(NULL, "empty url");
	url_bad("", "empty url");
	url_bad("http://h/", "scheme must be ws:// or wss://");
	url_bad("https://h/", "scheme must be ws:// or wss://");
	url_bad("ws:/h/", "scheme must be ws:// or wss://");
	url_bad("wss:h", "scheme must be ws:// or wss://");
	url_bad("//h/", "scheme must be ws:// or wss://");
	url_bad("ws://", "empty host");
	url_bad("ws:///socket", "empty host");
	url_bad("ws://:4000/", "empty host");
	url_bad("ws://[]/", "empty host");
	url_bad("ws://user@h/", "user info ('user@') is not allowed");
	url_bad("ws://user:pw@h:80/", "user info ('user@') is not allowed");
	url_bad("ws://h/#frag", "fragments ('#') are not allowed");
	url_bad("ws://h/a b", "spaces and control characters are not allowed");
	url_bad("ws://h/a\tb", "spaces and control characters are not allowed");
	url_bad("ws://h/\r\nX: y", "spaces and control characters are not allowed");
	url_bad("ws://h/\x7f", "spaces and control characters are not allowed");
	url_bad("ws://h\xc3\xa9/", "non-ASCII characters must be percent-encoded");
	url_bad("ws://h:0/", "bad port (1..65535)");
	url_bad("ws://h:65536/", "bad port (1..65535)");
	url_bad("ws://h:/", "bad port (1..65535)");
	url_bad("ws://h:123456/", "bad port (1..65535)");
	url_bad("ws://h:-1/", "bad port (1..65535)");
	url_bad("ws://h:80a/", "bad port (1..65535)");
	url_bad("ws://h:80:81/", "bad port (1..65535)");
	url_bad("ws://h%41/", "bad character in host");
	url_bad("ws://h!/", "bad character in host");
	url_bad("ws://::1/", "empty host");
	url_bad("ws://[::1/", "unterminated IPv6 literal ('[' without ']')");
	url_bad("ws://[::g]/", "bad IPv6 literal");
	url_bad("ws://[fe80::1%25eth0]/", "bad IPv6 literal");
	url_bad("ws://[127.0.0.1]/", "bad IPv6 literal");
	url_bad("ws://[::1]x/", "unexpected character after IPv6 literal");
	url_bad("ws://[::1]:/", "bad port (1..65535)");
	url_bad("ws://256.0.0.1/", "bad IPv4 address");
	url_bad("ws://1.2.3/", "bad IPv4 address");
	url_bad("ws://1.2.3.4.5/", "bad IPv4 address");

	char s[2048], host[300];
	memset(host, 'h', sizeof(host));
	host[256] = '\0';
	snprintf(s, sizeof(s), "ws://%s/", host);
	url_bad(s, "host too long");
	char path[1100];
	memset(path, 'p', sizeof(path));
	path[0] = '/';
	path[1024] = '\0';
	snprintf(s, sizeof(s), "ws://h%s", path);
	url_bad(s, "path too long");
	/* a bare query gets a '/' in front, which must fit too */
	path[0] = '?';
	path[1023] = '\0';
	snprintf(s, sizeof(s), "ws://h%s", path);
	url_bad(s, "path too long");

	/* why may be NULL */
	struct url u;
	ck_assert_int_eq(url_parse("http://x/", &u, NULL), -EINVAL);
}
END_TEST

/* ---- runner ----------------------------------------------------------------------- */

static Suite *suite_of(const char *name, const TTest *const *tests, size_t n)
{
	Suite *s = suite_create(name);
	TCase *tc = tcase_create(name);
	for (size_t i = 0; i < n; i++)
		tcase_add_test(tc, tests[i]);
	suite_add_tcase(s, tc);
	return s;
}

#define SUITE(name, ...) do { \
		const TTest *const t_[] = { __VA_ARGS__ }; \
		srunner_add_suite(sr, suite_of(name, t_, sizeof(t_) / sizeof(t_[0]))); \
	} while (0)

int main(void)
{
	SRunner *sr = srunner_create(NULL);

	SUITE("defaults", test_defaults_global, test_defaults_endpoint, test_pool_options,
	      test_access_sections, test_memory_options);
	SUITE("options", test_all_options, test_bool_values, test_log_levels, test_ranges,
	      test_strings, test_params_headers, test_url_option, test_control_options);
	SUITE("errors", test_errors_brief, test_errors_more, test_errors_bytes);
	SUITE("syntax", test_comments, test_quotes, test_crlf_bom, test_file_name);
	SUITE("files", test_sample_conf, test_sample_uncommented, test_man_example,
	      test_load_file);
	SUITE("api", test_add_endpoint_check);
	SUITE("values", test_duration, test_size);
	SUITE("url", test_url_good, test_url_bad);

	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
