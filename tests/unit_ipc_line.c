/* Unit tests of ipc_line: the command parser and the line formatters. */
#include "ipc/ipc_line.h"

#include "b64.h"
#include "buf.h"

#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---- */

/* Parses a copy of p[0..n) held in a heap block of exactly n bytes, so that
 * the sanitizers see any read past the line. */
static int parse_n(const char *p, size_t n, struct ipc_cmd *cmd, char **copy)
{
	*copy = malloc(n ? n : 1);
	ck_assert_ptr_nonnull(*copy);
	memcpy(*copy, p, n);
	return ipc_line_parse(*copy, n, cmd);
}

static void span_eq(const struct ipc_str *s, const char *want)
{
	size_t n = strlen(want);

	ck_assert_msg(s->len == n, "span length %zu, want %zu (\"%s\")", s->len, n, want);
	if (n)
		ck_assert_msg(memcmp(s->p, want, n) == 0, "span \"%.*s\", want \"%s\"",
			      (int)s->len, s->p, want);
}

/* 1 when a span is empty or lies inside line[0..n). */
static int span_inside(const struct ipc_str *s, const char *line, size_t n)
{
	return s->len == 0 || (s->p >= line && s->p + s->len <= line + n);
}

static void expect_ok(const char *line, enum ipc_verb verb, const char *tag,
		      const char *target, const char *event, const char *payload)
{
	struct ipc_cmd c;
	char *copy;
	int r = parse_n(line, strlen(line), &c, &copy);

	ck_assert_msg(r == 0, "\"%s\": rc %d err %s", line, r, c.err ? c.err : "(null)");
	ck_assert_int_eq(c.verb, verb);
	ck_assert_str_eq(c.verb_name, ipc_verb_name(verb));
	ck_assert_ptr_null(c.err);
	span_eq(&c.tag, tag);
	span_eq(&c.target, target);
	span_eq(&c.event, event);
	span_eq(&c.payload, payload);
	free(copy);
}

static void expect_err_n(const char *line, size_t n, const char *verb_name,
			 const char *tag, const char *target, const char *reason)
{
	struct ipc_cmd c;
	char *copy;
	int r = parse_n(line, n, &c, &copy);

	ck_assert_msg(r == -EINVAL, "\"%.*s\": rc %d, want -EINVAL (%s)", (int)n, line,
		      r, reason);
	ck_assert_ptr_nonnull(c.err);
	ck_assert_msg(strcmp(c.err, reason) == 0, "\"%.*s\": reason \"%s\", want \"%s\"",
		      (int)n, line, c.err, reason);
	ck_assert_str_eq(c.verb_name, verb_name);
	ck_assert_int_eq(c.verb, IPC_V_NONE);
	span_eq(&c.tag, tag);
	span_eq(&c.target, target);
	ck_assert_uint_eq(c.event.len, 0);
	ck_assert_uint_eq(c.payload.len, 0);
	free(copy);
}

static void expect_err(const char *line, const char *verb_name, const char *tag,
		       const char *target, const char *reason)
{
	expect_err_n(line, strlen(line), verb_name, tag, target, reason);
}

static void expect_ignored(const char *line, size_t n)
{
	struct ipc_cmd c;
	char *copy;

	ck_assert_msg(parse_n(line, n, &c, &copy) == 1, "\"%.*s\" not ignored", (int)n, line);
	free(copy);
}

/* "x" repeated n times, in a static buffer. */
static const char *rep(char ch, size_t n)
{
	static char s[512];

	ck_assert_uint_lt(n, sizeof(s));
	memset(s, ch, n);
	s[n] = '\0';
	return s;
}

static char *fmt(const char *f, const char *arg)
	__attribute__((format(printf, 1, 0)));
static char *fmt(const char *f, const char *arg)
{
	static char s[2048];

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	snprintf(s, sizeof(s), f, arg);
#pragma GCC diagnostic pop
	return s;
}

/* Buffer contents equal want, byte for byte. */
static void buf_is(const struct buf *b, const char *want)
{
	size_t n = strlen(want);
	char *got = strndup(buf_len(b) ? buf_rptr(b) : "", buf_len(b));

	ck_assert_ptr_nonnull(got);
	ck_assert_msg(buf_len(b) == n && memcmp(got, want, n) == 0,
		      "buffer \"%s\" (%zu), want \"%s\" (%zu)", got, buf_len(b), want, n);
	free(got);
}

/* Small deterministic generator (xorshift64*). */
static uint64_t rng_state;

static void rng_seed(uint64_t s)
{
	rng_state = s ? s : 1;
}

static uint32_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * 2685821657736338717ULL) >> 32);
}

/* ---- parse: ok ---- */

START_TEST(test_every_verb)
{
	expect_ok("JOIN room:lobby", IPC_V_JOIN, "", "room:lobby", "", "");
	expect_ok("JOIN room:lobby {\"user\":\"ann\"}", IPC_V_JOIN, "", "room:lobby", "",
		  "{\"user\":\"ann\"}");
	expect_ok("LEAVE room:lobby", IPC_V_LEAVE, "", "room:lobby", "", "");
	expect_ok("PUSH room:lobby echo", IPC_V_PUSH, "", "room:lobby", "echo", "");
	expect_ok("PUSH room:lobby echo {\"n\":1}", IPC_V_PUSH, "", "room:lobby", "echo",
		  "{\"n\":1}");
	expect_ok("BPUSH room:lobby bin 3q2+7w==", IPC_V_BPUSH, "", "room:lobby", "bin",
		  "3q2+7w==");
	expect_ok("USE local", IPC_V_USE, "", "local", "", "");
	expect_ok("ENDPOINTS", IPC_V_ENDPOINTS, "", "", "", "");
	expect_ok("TOPICS", IPC_V_TOPICS, "", "", "", "");
	expect_ok("PING", IPC_V_PING, "", "", "", "");
	expect_ok("HELP", IPC_V_HELP, "", "", "", "");
	expect_ok("QUIT", IPC_V_QUIT, "", "", "", "");
}
END_TEST

START_TEST(test_verb_case)
{
	expect_ok("join room:Lobby", IPC_V_JOIN, "", "room:Lobby", "", "");
	expect_ok("Leave T", IPC_V_LEAVE, "", "T", "", "");
	expect_ok("pUsH T Ev", IPC_V_PUSH, "", "T", "Ev", "");
	expect_ok("bpush t e AA==", IPC_V_BPUSH, "", "t", "e", "AA==");
	expect_ok("use Main", IPC_V_USE, "", "Main", "", "");
	expect_ok("endpoints", IPC_V_ENDPOINTS, "", "", "", "");
	expect_ok("Topics", IPC_V_TOPICS, "", "", "", "");
	expect_ok("ping", IPC_V_PING, "", "", "", "");
	expect_ok("hElP", IPC_V_HELP, "", "", "", "");
	expect_ok("quit", IPC_V_QUIT, "", "", "", "");
}
END_TEST

START_TEST(test_tags)
{
	expect_ok("@7 PUSH room:lobby echo {\"n\":1}", IPC_V_PUSH, "7", "room:lobby",
		  "echo", "{\"n\":1}");
	expect_ok("@Az09_-.: PING", IPC_V_PING, "Az09_-.:", "", "", "");
	expect_ok("@abcdefghijklmnopqrstuvwxyz_-.: quit", IPC_V_QUIT,
		  "abcdefghijklmnopqrstuvwxyz_-.:", "", "", "");
	expect_ok("@ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 quit", IPC_V_QUIT,
		  "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", "", "", "");
	expect_ok("  @x\tJOIN t", IPC_V_JOIN, "x", "t", "", "");
	/* 64 characters: the longest tag */
	expect_ok(fmt("@%s PING", rep('t', IPC_TAG_MAX)), IPC_V_PING, rep('t', IPC_TAG_MAX),
		  "", "", "");
}
END_TEST

START_TEST(test_whitespace)
{
	expect_ok("PUSH\troom:lobby\techo\t{\"n\":1}", IPC_V_PUSH, "", "room:lobby", "echo",
		  "{\"n\":1}");
	expect_ok("  PUSH   room:lobby  \t echo   {\"n\":1}   ", IPC_V_PUSH, "",
		  "room:lobby", "echo", "{\"n\":1}");
	expect_ok("PUSH room:lobby echo {\"n\":1}\r", IPC_V_PUSH, "", "room:lobby", "echo",
		  "{\"n\":1}");
	expect_ok("PUSH room:lobby echo {\"n\":1} \t\r", IPC_V_PUSH, "", "room:lobby",
		  "echo", "{\"n\":1}");
	expect_ok("PING\r", IPC_V_PING, "", "", "", "");
	expect_ok("\t PING \t", IPC_V_PING, "", "", "", "");
	expect_ok("LEAVE t \r", IPC_V_LEAVE, "", "t", "", "");
	expect_ok("PUSH t e \t \r", IPC_V_PUSH, "", "t", "e", "");
	expect_ok("BPUSH t e AAAA\t\r", IPC_V_BPUSH, "", "t", "e", "AAAA");
	expect_ok("JOIN t\t", IPC_V_JOIN, "", "t", "", "");
	/* JSON whitespace inside the value stays in the span */
	expect_ok("PUSH t e { \"a\" :\t[ 1 , 2 ] }", IPC_V_PUSH, "", "t", "e",
		  "{ \"a\" :\t[ 1 , 2 ] }");
}
END_TEST

START_TEST(test_payloads)
{
	expect_ok("PUSH t e {\"msg\":\"hi all  \\t you\", \"x\": [1, 2]}", IPC_V_PUSH, "",
		  "t", "e", "{\"msg\":\"hi all  \\t you\", \"x\": [1, 2]}");
	expect_ok("PUSH t e \"just a string with spaces\"", IPC_V_PUSH, "", "t", "e",
		  "\"just a string with spaces\"");
	expect_ok("PUSH t e 42", IPC_V_PUSH, "", "t", "e", "42");
	expect_ok("PUSH t e -1.5e3", IPC_V_PUSH, "", "t", "e", "-1.5e3");
	expect_ok("PUSH t e null", IPC_V_PUSH, "", "t", "e", "null");
	expect_ok("PUSH t e true", IPC_V_PUSH, "", "t", "e", "true");
	expect_ok("PUSH t e [1,{\"a\":[]}]", IPC_V_PUSH, "", "t", "e", "[1,{\"a\":[]}]");
	expect_ok("PUSH t e \"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"", IPC_V_PUSH, "", "t",
		  "e", "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
	expect_ok("JOIN t {}", IPC_V_JOIN, "", "t", "", "{}");
	expect_ok("JOIN t  { \"k\" : \"v w\" }  ", IPC_V_JOIN, "", "t", "",
		  "{ \"k\" : \"v w\" }");
	expect_ok("BPUSH t e AA==", IPC_V_BPUSH, "", "t", "e", "AA==");
	expect_ok("BPUSH t e AAA=", IPC_V_BPUSH, "", "t", "e", "AAA=");
	expect_ok("BPUSH t e AAAA", IPC_V_BPUSH, "", "t", "e", "AAAA");
	expect_ok("BPUSH t e +/+/+/+/", IPC_V_BPUSH, "", "t", "e", "+/+/+/+/");
}
END_TEST

START_TEST(test_names)
{
	char line[1024];

	/* 255 bytes: the longest name, for topic, event and endpoint */
	snprintf(line, sizeof(line), "JOIN %s", rep('a', IPC_NAME_MAX));
	expect_ok(line, IPC_V_JOIN, "", rep('a', IPC_NAME_MAX), "", "");
	snprintf(line, sizeof(line), "PUSH t %s {}", rep('e', IPC_NAME_MAX));
	expect_ok(line, IPC_V_PUSH, "", "t", rep('e', IPC_NAME_MAX), "{}");
	snprintf(line, sizeof(line), "USE %s", rep('u', IPC_NAME_MAX));
	expect_ok(line, IPC_V_USE, "", rep('u', IPC_NAME_MAX), "", "");
	/* names are case-sensitive and may hold any non-control UTF-8 */
	expect_ok("PUSH R\xc3\xb6\xc3\xb6m:{x}/\"y\" \xe2\x9c\x93 {}", IPC_V_PUSH, "",
		  "R\xc3\xb6\xc3\xb6m:{x}/\"y\"", "\xe2\x9c\x93", "{}");
	expect_ok("LEAVE #not-a-comment", IPC_V_LEAVE, "", "#not-a-comment", "", "");
}
END_TEST

START_TEST(test_ignored)
{
	static const char *const lines[] = {
		"", " ", " \t \t", "\r", " \r", "#", "# a comment",
		"   \t# indented comment \r", "#PING", "#\x7f\x01 control is fine here",
	};

	for (size_t k = 0; k < sizeof(lines) / sizeof(lines[0]); k++)
		expect_ignored(lines[k], strlen(lines[k]));

	struct ipc_cmd c;
	ck_assert_int_eq(ipc_line_parse(NULL, 0, &c), 1);
}
END_TEST

START_TEST(test_verb_names)
{
	ck_assert_str_eq(ipc_verb_name(IPC_V_NONE), "?");
	ck_assert_str_eq(ipc_verb_name(IPC_V_JOIN), "JOIN");
	ck_assert_str_eq(ipc_verb_name(IPC_V_LEAVE), "LEAVE");
	ck_assert_str_eq(ipc_verb_name(IPC_V_PUSH), "PUSH");
	ck_assert_str_eq(ipc_verb_name(IPC_V_BPUSH), "BPUSH");
	ck_assert_str_eq(ipc_verb_name(IPC_V_USE), "USE");
	ck_assert_str_eq(ipc_verb_name(IPC_V_ENDPOINTS), "ENDPOINTS");
	ck_assert_str_eq(ipc_verb_name(IPC_V_TOPICS), "TOPICS");
	ck_assert_str_eq(ipc_verb_name(IPC_V_PING), "PING");
	ck_assert_str_eq(ipc_verb_name(IPC_V_HELP), "HELP");
	ck_assert_str_eq(ipc_verb_name(IPC_V_QUIT), "QUIT");
	ck_assert_str_eq(ipc_verb_name((enum ipc_verb)99), "?");
}
END_TEST

/* ---- parse: errors ---- */

START_TEST(test_err_verb)
{
	expect_err("FROB", "?", "", "", "unknown verb");
	expect_err("FROB room:lobby", "?", "", "", "unknown verb");
	expect_err("@t FROB", "?", "t", "", "unknown verb");
	expect_err("@t", "?", "t", "", "unknown verb");
	expect_err("@t   \r", "?", "t", "", "unknown verb");
	expect_err("PINGX", "?", "", "", "unknown verb");
	expect_err("PIN", "?", "", "", "unknown verb");
	expect_err("PING{}", "?", "", "", "unknown verb");
	expect_err("P\xc3\xaeNG", "?", "", "", "unknown verb");
	expect_err("ENDPOINTSS", "?", "", "", "unknown verb");
	expect_err("PING\r\r", "?", "", "", "unknown verb");
	expect_err("{\"a\":1}", "?", "", "", "unknown verb");
}
END_TEST

START_TEST(test_err_tag)
{
	expect_err("@ PING", "?", "", "", "bad tag");
	expect_err("@", "?", "", "", "bad tag");
	expect_err("@a/b PING", "?", "", "", "bad tag");
	expect_err("@a@b PING", "?", "", "", "bad tag");
	expect_err("@\xc3\xa9 PING", "?", "", "", "bad tag");
	expect_err("@a\x01 PING", "?", "", "", "bad tag");
	/* 65 characters: one too many */
	expect_err(fmt("@%s PING", rep('t', IPC_TAG_MAX + 1)), "?", "", "", "bad tag");
}
END_TEST

START_TEST(test_err_missing)
{
	expect_err("JOIN", "JOIN", "", "", "missing topic");
	expect_err("JOIN \t ", "JOIN", "", "", "missing topic");
	expect_err("@q LEAVE", "LEAVE", "q", "", "missing topic");
	expect_err("PUSH", "PUSH", "", "", "missing topic");
	expect_err("PUSH t", "PUSH", "", "t", "missing event");
	expect_err("PUSH t  \r", "PUSH", "", "t", "missing event");
	expect_err("BPUSH", "BPUSH", "", "", "missing topic");
	expect_err("BPUSH t", "BPUSH", "", "t", "missing event");
	expect_err("BPUSH t e", "BPUSH", "", "t", "missing payload");
	expect_err("@1 BPUSH t e  ", "BPUSH", "1", "t", "missing payload");
	expect_err("USE", "USE", "", "", "missing endpoint");
	/* a field that opens JSON is not a topic: the topic is missing */
	expect_err("JOIN {\"a\":1}", "JOIN", "", "", "missing topic");
	expect_err("JOIN {\"a\": 1}", "JOIN", "", "", "missing topic");
	expect_err("LEAVE [1]", "LEAVE", "", "", "missing topic");
	expect_err("PUSH \"t\" e {}", "PUSH", "", "", "missing topic");
	expect_err("BPUSH {} e AA==", "BPUSH", "", "", "missing topic");
}
END_TEST

/* Phoenix's own events are phxd's to send: JOIN and LEAVE do that. */
START_TEST(test_err_reserved_event)
{
	static const char *ev[] = { "phx_join", "phx_leave", "phx_reply", "phx_error",
				    "phx_close", "phx_x" };
	char line[128];
	for (size_t i = 0; i < sizeof(ev) / sizeof(ev[0]); i++) {
		snprintf(line, sizeof(line), "@t PUSH room:1 %s {}", ev[i]);
		expect_err(line, "PUSH", "t", "room:1", "reserved event");
		snprintf(line, sizeof(line), "BPUSH room:1 %s AA==", ev[i]);
		expect_err(line, "BPUSH", "", "room:1", "reserved event");
	}
	/* only the prefix is reserved */
	struct ipc_cmd cmd;
	ck_assert_int_eq(ipc_line_parse("PUSH t phx {}", 13, &cmd), 0);
	ck_assert_int_eq(ipc_line_parse("PUSH t my_phx_join {}", 21, &cmd), 0);
	ck_assert_int_eq(ipc_line_parse("PUSH t PHX_JOIN {}", 18, &cmd), 0);
}
END_TEST

START_TEST(test_err_names)
{
	char line[1024];

	expect_err("LEAVE a\x01z", "LEAVE", "", "", "bad topic");
	expect_err("JOIN a\x7fz {}", "JOIN", "", "", "bad topic");
	expect_err("PUSH a\rb e {}", "PUSH", "", "", "bad topic");
	expect_err("BPUSH \x1b[31m e AA==", "BPUSH", "", "", "bad topic");
	expect_err("PUSH t e\x1f {}", "PUSH", "", "t", "bad event");
	expect_err("BPUSH t \x7f AA==", "BPUSH", "", "t", "bad event");
	expect_err("USE a\x02", "USE", "", "", "bad endpoint");
	/* 256 bytes: one too many */
	snprintf(line, sizeof(line), "@z JOIN %s", rep('a', IPC_NAME_MAX + 1));
	expect_err(line, "JOIN", "z", "", "bad topic");
	snprintf(line, sizeof(line), "PUSH t %s {}", rep('e', IPC_NAME_MAX + 1));
	expect_err(line, "PUSH", "", "t", "bad event");
	snprintf(line, sizeof(line), "USE %s", rep('u', IPC_NAME_MAX + 1));
	expect_err(line, "USE", "", "", "bad endpoint");
}
END_TEST

START_TEST(test_err_json)
{
	expect_err("@t PUSH room:x e {", "PUSH", "t", "room:x", "invalid json");
	expect_err("PUSH room:x e {} {}", "PUSH", "", "room:x", "invalid json");
	expect_err("PUSH t e {\"a\":}", "PUSH", "", "t", "invalid json");
	expect_err("PUSH t e {'a':1}", "PUSH", "", "t", "invalid json");
	expect_err("PUSH t e hello", "PUSH", "", "t", "invalid json");
	expect_err("PUSH t e 01", "PUSH", "", "t", "invalid json");
	expect_err("PUSH t e [1,]", "PUSH", "", "t", "invalid json");
	expect_err("PUSH t e \"a\tb\"", "PUSH", "", "t", "invalid json");
	expect_err("PUSH t e \"\\ud800\"", "PUSH", "", "t", "invalid json");
	expect_err("JOIN t {", "JOIN", "", "t", "invalid json");
	expect_err("JOIN t {}x", "JOIN", "", "t", "invalid json");
	expect_err("JOIN t []", "JOIN", "", "t", "params must be an object");
	expect_err("JOIN t [1]", "JOIN", "", "t", "params must be an object");
	expect_err("JOIN t u \"s\"", "JOIN", "", "t", "params must be an object");
	expect_err("JOIN t \"{}\"", "JOIN", "", "t", "params must be an object");
	expect_err("JOIN t [null]", "JOIN", "", "t", "params must be an object");
}
END_TEST

START_TEST(test_err_base64)
{
	expect_err("BPUSH t e A", "BPUSH", "", "t", "invalid base64");
	expect_err("BPUSH t e AAA", "BPUSH", "", "t", "invalid base64");
	expect_err("BPUSH t e AAAAA", "BPUSH", "", "t", "invalid base64");
	expect_err("BPUSH t e AA=A", "BPUSH", "", "t", "invalid base64");
	expect_err("BPUSH t e A===", "BPUSH", "", "t", "invalid base64");
	expect_err("BPUSH t e ====", "BPUSH", "", "t", "invalid base64");
	expect_err("BPUSH t e AA==AAAA", "BPUSH", "", "t", "invalid base64");
	expect_err("BPUSH t e AB==", "BPUSH", "", "t", "invalid base64");  /* stray bits */
	expect_err("BPUSH t e AAB=", "BPUSH", "", "t", "invalid base64");
	expect_err("BPUSH t e AA-_", "BPUSH", "", "t", "invalid base64"); /* url alphabet */
	expect_err("BPUSH t e {}", "BPUSH", "", "t", "invalid base64");
	expect_err("BPUSH t e 3q2+7w== x", "BPUSH", "", "t", "too many arguments");
}
END_TEST

START_TEST(test_err_too_many)
{
	expect_err("LEAVE t x\x01y", "LEAVE", "", "t", "bad topic");
	expect_err("LEAVE t {}", "LEAVE", "", "t", "too many arguments");
	expect_err("USE a b", "USE", "", "a", "too many arguments");
	expect_err("ENDPOINTS x", "ENDPOINTS", "", "", "too many arguments");
	expect_err("TOPICS x", "TOPICS", "", "", "too many arguments");
	expect_err("@p PING x", "PING", "p", "", "too many arguments");
	expect_err("PING {}", "PING", "", "", "too many arguments");
	expect_err("HELP me", "HELP", "", "", "too many arguments");
	expect_err("quit now\r", "QUIT", "", "", "too many arguments");
}
END_TEST

START_TEST(test_err_utf8)
{
	expect_err("PING \xff", "?", "", "", "invalid utf-8");
	expect_err("PUSH t e \"\xc3\"", "?", "", "", "invalid utf-8");
	expect_err("PUSH t e \"\xc0\xaf\"", "?", "", "", "invalid utf-8");     /* overlong */
	expect_err("PUSH t e \"\xed\xa0\x80\"", "?", "", "", "invalid utf-8"); /* surrogate */
	expect_err("PUSH t e \"\xf4\x90\x80\x80\"", "?", "", "", "invalid utf-8");
	expect_err("PUSH t \xe2\x82", "?", "", "", "invalid utf-8");          /* cut short */
	expect_err("@bad/tag FROB \x80", "?", "", "", "invalid utf-8");        /* checked first */
	expect_err("# comment \xfe", "?", "", "", "invalid utf-8");
	/* NUL is valid UTF-8 but not valid text: the same reason */
	expect_err_n("PING\0", 5, "?", "", "", "invalid utf-8");
	expect_err_n("PUSH t e \"a\0b\"", 14, "?", "", "", "invalid utf-8");
	expect_err_n("\0", 1, "?", "", "", "invalid utf-8");
	expect_err_n("# \0", 3, "?", "", "", "invalid utf-8");
	expect_err_n("PING\0\r", 6, "?", "", "", "invalid utf-8");
}
END_TEST

/* NULL when the result of a parse is coherent (whatever the input was),
 * else what is wrong.  No ck_assert here: each one costs a write, and the
 * robustness loops call this a hundred thousand times. */
static const char *result_problem(int r, const struct ipc_cmd *c, const char *line,
				  size_t n)
{
#define WANT(cond) do { if (!(cond)) return #cond; } while (0)
	WANT(r == 0 || r == 1 || r == -EINVAL);
	WANT(c->verb_name != NULL);
	WANT(span_inside(&c->tag, line, n));
	WANT(span_inside(&c->target, line, n));
	WANT(span_inside(&c->event, line, n));
	WANT(span_inside(&c->payload, line, n));
	WANT(c->tag.len <= IPC_TAG_MAX);
	WANT(c->target.len <= IPC_NAME_MAX);
	WANT(c->event.len <= IPC_NAME_MAX);
	if (r == -EINVAL) {
		WANT(c->err != NULL);
		WANT(c->verb == IPC_V_NONE);
	} else if (r == 0) {
		WANT(c->err == NULL);
		WANT(c->verb != IPC_V_NONE);
		WANT(strcmp(c->verb_name, ipc_verb_name(c->verb)) == 0);
	}
	return NULL;
#undef WANT
}

/* Parses line[0..n) from the end of a heap block (so that the sanitizers
 * see a read past it) and checks the result. */
static void parse_check(char *block, size_t size, const char *line, size_t n)
{
	struct ipc_cmd c;
	char *at = block + size - n;

	memmove(at, line, n);
	int r = ipc_line_parse(at, n, &c);
	const char *why = result_problem(r, &c, at, n);
	if (why)
		ck_abort_msg("\"%.*s\" (%zu bytes): rc %d: %s", (int)n, line, n, r, why);
}

START_TEST(test_prefixes)
{
	static const char *const lines[] = {
		"@7 PUSH room:lobby echo {\"n\":1, \"s\":\"a b\", \"l\":[1,2.5e-3,null]}\r",
		"  join\troom:lobby { \"user\" : \"ann\" }",
		"@abc:1 BPUSH room:lobby bin 3q2+7w==",
		"USE local",
		"LEAVE room:\xc3\xa9t\xc3\xa9",
		"PUSH t e \"\xe2\x82\xac\xf0\x9f\x98\x80\"",
		"# comment",
		"ENDPOINTS",
	};

	for (size_t k = 0; k < sizeof(lines) / sizeof(lines[0]); k++) {
		size_t n = strlen(lines[k]);
		char *block = malloc(n + 1);
		ck_assert_ptr_nonnull(block);
		for (size_t m = 0; m <= n; m++)
			parse_check(block, n + 1, lines[k], m);
		free(block);
	}
}
END_TEST

/* Pieces the random lines are built from, besides single random bytes. */
static const char *const pieces[] = {
	"JOIN", "LEAVE", "PUSH", "BPUSH", "USE", "ENDPOINTS", "TOPICS", "PING",
	"HELP", "QUIT", "@", "@t", " ", "\t", "\r", "#", "{", "}", "[", "]", "\"",
	":", ",", "\\", "null", "1", "-", "e", "=", "AA", "QQ==", "room:lobby",
	"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\x80", "\0", "\x7f",
	"{\"a\":[1,\"b c\"]}", "3q2+7w==", "AAAA", "\"s\"", "true",
};

/* Appends one step to line[0..n): mostly a piece or a blank or a printable
 * byte, now and then any byte at all.  Returns the new length. */
static size_t grow(char *line, size_t n)
{
	uint32_t x = rng() % 32;

	if (x < 10 || (n == 0 && x < 20)) {
		/* the first 10 pieces are the verbs: lines often start with one */
		size_t k = n == 0 ? rng() % 10 : rng() % (sizeof(pieces) / sizeof(pieces[0]));
		const char *pc = pieces[k];
		size_t pl = pc[0] ? strlen(pc) : 1;
		memcpy(line + n, pc, pl);
		return n + pl;
	}
	if (x < 18)
		line[n] = (x & 1) ? ' ' : '\t';
	else if (x < 31)
		line[n] = (char)(0x21 + rng() % 94);
	else
		line[n] = (char)(rng() & 0xff);
	return n + 1;
}

/* One byte at a time: a line grows step by step (mostly one byte) and is
 * parsed after every step; it starts over now and then. */
START_TEST(test_random)
{
	char line[160];
	char *block = malloc(sizeof(line));
	size_t n = 0;

	ck_assert_ptr_nonnull(block);
	rng_seed(0x1234abcdULL);
	for (int it = 0; it < 100000; it++) {
		if (n > 120 || rng() % 25 == 0)
			n = 0;
		n = grow(line, n);
		parse_check(block, sizeof(line), line, n);
	}
	free(block);
}
END_TEST

/* The BPUSH check accepts exactly what b64_decode accepts. */
START_TEST(test_base64_agrees)
{
	static const char alpha[] = "AQgw+/=9";
	char line[64];
	struct buf b;

	buf_init(&b, 0);
	rng_seed(42);
	for (int it = 0; it < 20000; it++) {
		size_t len = 1 + rng() % 12;
		int head = snprintf(line, sizeof(line), "BPUSH t e ");
		for (size_t k = 0; k < len; k++)
			line[head + (int)k] = alpha[rng() % (sizeof(alpha) - 1)];
		struct ipc_cmd c;
		int r = ipc_line_parse(line, (size_t)head + len, &c);
		buf_reset(&b);
		int d = b64_decode(&b, line + head, len);
		if ((r == 0) != (d == 0))
			ck_abort_msg("\"%.*s\": parse %d, decode %d", (int)len, line + head,
				     r, d);
	}
	buf_free(&b);
}
END_TEST

/* Batch JOIN and LEAVE: several topics, each walked with ipc_next_name(). */
static void expect_batch(const char *line, enum ipc_verb verb, const char *first,
			 const char *const *more, unsigned nmore, const char *payload)
{
	struct ipc_cmd c;
	char *copy;
	int r = parse_n(line, strlen(line), &c, &copy);
	ck_assert_msg(r == 0, "\"%s\": rc %d err %s", line, r, c.err ? c.err : "(null)");
	ck_assert_int_eq(c.verb, verb);
	span_eq(&c.target, first);
	span_eq(&c.payload, payload);
	ck_assert_uint_eq(c.ntargets, nmore + 1);
	struct ipc_str rest = c.more, name;
	for (unsigned i = 0; i < nmore; i++) {
		ck_assert_msg(ipc_next_name(&rest, &name), "\"%s\": topic %u missing", line, i);
		span_eq(&name, more[i]);
	}
	ck_assert(!ipc_next_name(&rest, &name));
	free(copy);
}

START_TEST(test_batch)
{
	static const char *const two[] = { "b", "c:3" };
	expect_batch("JOIN a b c:3", IPC_V_JOIN, "a", two, 2, "");
	expect_batch("join a\tb   c:3   {\"k\": 1} ", IPC_V_JOIN, "a", two, 2, "{\"k\": 1}");
	expect_batch("LEAVE a b c:3\r", IPC_V_LEAVE, "a", two, 2, "");
	expect_batch("JOIN a {}", IPC_V_JOIN, "a", NULL, 0, "{}");
	expect_batch("LEAVE a", IPC_V_LEAVE, "a", NULL, 0, "");
	static const char *const num[] = { "1" };
	expect_batch("JOIN t 1", IPC_V_JOIN, "t", num, 1, "");
}
END_TEST

/* ---- formatting ---- */

START_TEST(test_fmt_reply)
{
	struct buf b;
	struct ipc_str tag = { "7", 1 };

	buf_init(&b, 0);
	ck_assert_int_eq(ipc_fmt_reply(&b, 1, 0, NULL, "PUSH", "room:lobby", 10,
				       "{\"n\":1}", 7), 0);
	buf_is(&b, "OK PUSH room:lobby {\"n\":1}\n");
	buf_reset(&b);
	ck_assert_int_eq(ipc_fmt_reply(&b, 1, 0, &tag, "PUSH", "room:lobby", 10,
				       "{\"n\":1}", 7), 0);
	buf_is(&b, "OK @7 PUSH room:lobby {\"n\":1}\n");
	buf_reset(&b);
	ck_assert_int_eq(ipc_fmt_reply(&b, 0, 0, &tag, "JOIN", "room:secret", 11,
				       "{\"reason\":\"unauthorized\"}", 25), 0);
	buf_is(&b, "ERR @7 JOIN room:secret {\"reason\":\"unauthorized\"}\n");
	buf_reset(&b);
	/* no target, no payload; an empty tag is no tag */
	struct ipc_str none = { "", 0 };
	ck_assert_int_eq(ipc_fmt_reply(&b, 1, 0, &none, "PING", NULL, 5, NULL, 0), 0);
	ck_assert_int_eq(ipc_fmt_reply(&b, 1, 0, NULL, "LEAVE", "x", 0, "", 0), 0);
	buf_is(&b, "OK PING - {}\nOK LEAVE - {}\n");
	buf_reset(&b);
	/* binary */
	ck_assert_int_eq(ipc_fmt_reply(&b, 1, 1, NULL, "BPUSH", "room:lobby", 10,
				       "\xde\xad\xbe\xef", 4), 0);
	ck_assert_int_eq(ipc_fmt_reply(&b, 0, 1, &tag, "BPUSH", "t", 1, "ab", 2), 0);
	ck_assert_int_eq(ipc_fmt_reply(&b, 1, 1, NULL, "BPUSH", "t", 1, "", 0), 0);
	buf_is(&b, "BOK BPUSH room:lobby 3q2+7w==\nBERR @7 BPUSH t YWI=\nBOK BPUSH t \n");
	buf_reset(&b);
	/* payloads with spaces but no newline are copied as they are */
	ck_assert_int_eq(ipc_fmt_reply(&b, 1, 0, NULL, "PUSH", "t", 1,
				       "{ \"a b\" : [1, 2] }", 18), 0);
	buf_is(&b, "OK PUSH t { \"a b\" : [1, 2] }\n");
	buf_reset(&b);
	/* with CR or LF they are compacted; strings keep their spaces */
	const char *multi = "{\n  \"a b\": [1,\r\n   2],\n  \"s\": \" x\\n y \"\n}\n";
	ck_assert_int_eq(ipc_fmt_reply(&b, 1, 0, NULL, "PUSH", "t", 1, multi,
				       strlen(multi)), 0);
	buf_is(&b, "OK PUSH t {\"a b\":[1,2],\"s\":\" x\\n y \"}\n");
	buf_reset(&b);
	/* the target is given by length, not NUL-terminated */
	ck_assert_int_eq(ipc_fmt_reply(&b, 1, 0, NULL, "USE", "mainXYZ", 4, "{}", 2), 0);
	buf_is(&b, "OK USE main {}\n");
	buf_free(&b);
}
END_TEST

START_TEST(test_fmt_roundtrip)
{
	const char *line = "@7 PUSH room:lobby echo {\"n\":1}";
	struct ipc_cmd c;
	struct buf b;

	buf_init(&b, 0);
	ck_assert_int_eq(ipc_line_parse(line, strlen(line), &c), 0);
	ck_assert_int_eq(ipc_fmt_reply(&b, 1, 0, &c.tag, c.verb_name, c.target.p,
				       c.target.len, c.payload.p, c.payload.len), 0);
	buf_is(&b, "OK @7 PUSH room:lobby {\"n\":1}\n");
	buf_reset(&b);
	line = "@t PUSH room:x e {";
	ck_assert_int_eq(ipc_line_parse(line, strlen(line), &c), -EINVAL);
	ck_assert_int_eq(ipc_fmt_error(&b, &c.tag, c.verb_name, c.target.p,
				       c.target.len, c.err, NULL), 0);
	buf_is(&b, "ERR @t PUSH room:x {\"reason\":\"invalid json\"}\n");
	buf_reset(&b);
	line = "FROB";
	ck_assert_int_eq(ipc_line_parse(line, strlen(line), &c), -EINVAL);
	ck_assert_int_eq(ipc_fmt_error(&b, &c.tag, c.verb_name, c.target.p,
				       c.target.len, c.err, NULL), 0);
	buf_is(&b, "ERR ? - {\"reason\":\"unknown verb\"}\n");
	buf_free(&b);
}
END_TEST

START_TEST(test_fmt_error)
{
	struct buf b;
	struct ipc_str tag = { "a.b", 3 };

	buf_init(&b, 0);
	ck_assert_int_eq(ipc_fmt_error(&b, NULL, "PUSH", "room:nope", 9, "not joined",
				       NULL), 0);
	buf_is(&b, "ERR PUSH room:nope {\"reason\":\"not joined\"}\n");
	buf_reset(&b);
	ck_assert_int_eq(ipc_fmt_error(&b, &tag, "?", NULL, 0, "line too long",
				       "max_line is 1048576"), 0);
	buf_is(&b, "ERR @a.b ? - {\"reason\":\"line too long\",\"detail\":\"max_line is 1048576\"}\n");
	buf_reset(&b);
	/* reason and detail are escaped; invalid UTF-8 becomes U+FFFD */
	ck_assert_int_eq(ipc_fmt_error(&b, NULL, "JOIN", "t", 1, "a\"b\\c",
				       "x\ny\r\t\x01\xff"), 0);
	buf_is(&b, "ERR JOIN t {\"reason\":\"a\\\"b\\\\c\",\"detail\":\"x\\ny\\r\\t\\u0001\xef\xbf\xbd\"}\n");
	buf_reset(&b);
	ck_assert_int_eq(ipc_fmt_error(&b, NULL, NULL, NULL, 0, NULL, NULL), 0);
	buf_is(&b, "ERR ? - {\"reason\":\"\"}\n");
	buf_free(&b);
}
END_TEST

START_TEST(test_fmt_event_state_bye)
{
	struct buf b;

	buf_init(&b, 0);
	ck_assert_int_eq(ipc_fmt_event(&b, 0, "room:lobby", 10, "shout", 5,
				       "{\"msg\":\"hi all\"}", 16), 0);
	ck_assert_int_eq(ipc_fmt_event(&b, 0, "t", 1, "e", 1, NULL, 0), 0);
	ck_assert_int_eq(ipc_fmt_event(&b, 1, "room:lobby", 10, "bin", 3,
				       "\xde\xad\xbe\xef", 4), 0);
	ck_assert_int_eq(ipc_fmt_event(&b, 0, "t", 1, "e", 1, "[1,\n2]", 6), 0);
	buf_is(&b, "EVENT room:lobby shout {\"msg\":\"hi all\"}\n"
		   "EVENT t e {}\n"
		   "BEVENT room:lobby bin 3q2+7w==\n"
		   "EVENT t e [1,2]\n");
	buf_reset(&b);
	ck_assert_int_eq(ipc_fmt_state(&b, "room:lobby", 10, "rejoining",
				       "{\"reason\":\"upstream lost\"}", 26), 0);
	ck_assert_int_eq(ipc_fmt_state(&b, "room:lobby", 10, "rejoined", NULL, 0), 0);
	ck_assert_int_eq(ipc_fmt_state(&b, "t", 1, "closed", "{\r\n}", 4), 0);
	buf_is(&b, "STATE room:lobby rejoining {\"reason\":\"upstream lost\"}\n"
		   "STATE room:lobby rejoined {}\n"
		   "STATE t closed {}\n");
	buf_reset(&b);
	ck_assert_int_eq(ipc_fmt_bye(&b, "output queue full"), 0);
	ck_assert_int_eq(ipc_fmt_bye(&b, "say \"bye\"\n"), 0);
	buf_is(&b, "BYE {\"reason\":\"output queue full\"}\n"
		   "BYE {\"reason\":\"say \\\"bye\\\"\\n\"}\n");
	buf_free(&b);
}
END_TEST

/* Fields that would break or forge a line are refused, and nothing is
 * written. */
START_TEST(test_fmt_bad_fields)
{
	struct buf b;
	struct ipc_str sp = { "a b", 3 };

	buf_init(&b, 0);
	ck_assert_int_eq(buf_puts(&b, "keep\n"), 0);
	ck_assert_int_eq(ipc_fmt_reply(&b, 1, 0, NULL, "PUSH", "a b", 3, "{}", 2), -EINVAL);
	ck_assert_int_eq(ipc_fmt_reply(&b, 1, 0, NULL, "PUSH", "a\nOK", 4, "{}", 2), -EINVAL);
	ck_assert_int_eq(ipc_fmt_reply(&b, 1, 0, &sp, "PUSH", "t", 1, "{}", 2), -EINVAL);
	ck_assert_int_eq(ipc_fmt_reply(&b, 1, 0, NULL, "PU SH", "t", 1, "{}", 2), -EINVAL);
	ck_assert_int_eq(ipc_fmt_error(&b, NULL, "PUSH", "\x7f", 1, "r", NULL), -EINVAL);
	ck_assert_int_eq(ipc_fmt_event(&b, 0, "t", 1, "new msg", 7, "{}", 2), -EINVAL);
	ck_assert_int_eq(ipc_fmt_event(&b, 0, "t", 1, "e\r", 2, "{}", 2), -EINVAL);
	ck_assert_int_eq(ipc_fmt_event(&b, 0, "t", 1, "", 0, "{}", 2), -EINVAL);
	ck_assert_int_eq(ipc_fmt_event(&b, 1, NULL, 0, "e", 1, "", 0), -EINVAL);
	ck_assert_int_eq(ipc_fmt_event(&b, 0, "t\t", 2, "e", 1, "{}", 2), -EINVAL);
	ck_assert_int_eq(ipc_fmt_state(&b, "t", 1, "re joined", "{}", 2), -EINVAL);
	ck_assert_int_eq(ipc_fmt_state(&b, "t", 1, NULL, "{}", 2), -EINVAL);
	ck_assert_int_eq(ipc_fmt_state(&b, "", 0, "closed", "{}", 2), -EINVAL);
	/* a payload that must be compacted but is not JSON */
	ck_assert_int_eq(ipc_fmt_reply(&b, 1, 0, NULL, "PUSH", "t", 1, "\"a\n", 3), -EINVAL);
	buf_is(&b, "keep\n");
	buf_free(&b);
}
END_TEST

/* ipc_fmt_event_nl writes what ipc_fmt_event writes when told the truth
 * about raw line breaks; told "maybe" (1) it looks for itself. */
START_TEST(test_fmt_event_nl)
{
	static const char *const pl[] = { "{\"msg\":\"hi all\"}", "", "[1, 2]", " ",
		"\"a\\nb\"", "{\"k\" :\t1}", "[1,\n2]", "{\r\n}", "1" };
	struct buf a, b;

	buf_init(&a, 0);
	buf_init(&b, 0);
	for (size_t k = 0; k < sizeof(pl) / sizeof(pl[0]); k++) {
		size_t n = strlen(pl[k]);
		int nl = memchr(pl[k], '\n', n) || memchr(pl[k], '\r', n);
		for (int maybe = 0; maybe <= 1; maybe++) {
			buf_reset(&a);
			buf_reset(&b);
			ck_assert_int_eq(ipc_fmt_event(&a, 0, "room:lobby", 10, "shout", 5,
						       pl[k], n), 0);
			ck_assert_int_eq(ipc_fmt_event_nl(&b, 0, "room:lobby", 10, "shout", 5,
							  pl[k], n, nl | maybe), 0);
			ck_assert_uint_eq(buf_len(&a), buf_len(&b));
			ck_assert(memcmp(buf_rptr(&a), buf_rptr(&b), buf_len(&a)) == 0);
		}
	}
	buf_reset(&b);
	ck_assert_int_eq(ipc_fmt_event_nl(&b, 1, "t", 1, "bin", 3, "\n\xff", 2, 0), 0);
	ck_assert_int_eq(ipc_fmt_event_nl(&b, 0, "t", 1, "e", 1, NULL, 0, 0), 0);
	buf_is(&b, "BEVENT t bin Cv8=\nEVENT t e {}\n");
	ck_assert_int_eq(ipc_fmt_event_nl(&b, 0, "t", 1, "new msg", 7, "{}", 2, 0), -EINVAL);
	ck_assert_int_eq(ipc_fmt_event_nl(&b, 0, "t\n", 2, "e", 1, "{}", 2, 0), -EINVAL);
	ck_assert_int_eq(ipc_fmt_event_nl(&b, 0, "t", 1, "", 0, "{}", 2, 0), -EINVAL);
	buf_is(&b, "BEVENT t bin Cv8=\nEVENT t e {}\n");
	buf_free(&a);
	buf_free(&b);
}
END_TEST

/* Calls one formatter; which selects the case. */
static int fmt_case(struct buf *b, int which)
{
	static const struct ipc_str tag = { "tag-1", 5 };
	static const char multi[] = "{\n \"k\" : [ 1 ,\r\n 2 ] , \"s\" : \"a  b\" }";
	static const char bytes[] = "\x00\x01\x02\xfe\xff binary";

	switch (which) {
	case 0:
		return ipc_fmt_reply(b, 1, 0, &tag, "PUSH", "room:lobby", 10,
				     "{\"n\":1}", 7);
	case 1:
		return ipc_fmt_reply(b, 0, 0, NULL, "JOIN", "room:lobby", 10, multi,
				     sizeof(multi) - 1);
	case 2:
		return ipc_fmt_reply(b, 1, 1, &tag, "BPUSH", "t", 1, bytes,
				     sizeof(bytes) - 1);
	case 3:
		return ipc_fmt_error(b, &tag, "PUSH", "room:x", 6, "invalid \"json\"",
				     "near\tbyte 3");
	case 4:
		return ipc_fmt_event(b, 0, "room:lobby", 10, "shout", 5, multi,
				     sizeof(multi) - 1);
	case 5:
		return ipc_fmt_event(b, 1, "room:lobby", 10, "bin", 3, bytes,
				     sizeof(bytes) - 1);
	case 6:
		return ipc_fmt_state(b, "room:lobby", 10, "rejoining",
				     "{\"reason\":\"x\"}", 14);
	case 7: /* the one-reservation path */
		return ipc_fmt_event_nl(b, 0, "room:lobby", 10, "shout", 5,
					"{\"s\" : \"a  b\"}", 14, 0);
	case 8:
		return ipc_fmt_event_nl(b, 0, "room:lobby", 10, "shout", 5, multi,
					sizeof(multi) - 1, 1);
	default:
		return ipc_fmt_bye(b, "output \"queue\" full");
	}
}

/* A buffer holding pre[] with the limit max.  When moved, the bytes sit at
 * the very end of the allocation, so that any append must move them (slide
 * or reallocate): the cut-back on error must follow them. */
static const char pre[] = "0123456789";

static void setup_buf(struct buf *b, size_t max, int moved)
{
	buf_init(b, 0);
	if (moved) {
		char fill[246];
		memset(fill, 'x', sizeof(fill));
		ck_assert_int_eq(buf_append(b, fill, sizeof(fill)), 0);
	}
	ck_assert_int_eq(buf_append(b, pre, sizeof(pre) - 1), 0);
	buf_consume(b, buf_len(b) - (sizeof(pre) - 1));
	if (moved)
		ck_assert_uint_eq(b->wpos, b->cap);
	b->max = max;
}

/* At every buffer limit a formatter writes the whole line or nothing. */
START_TEST(test_fmt_all_or_nothing)
{
	const size_t held = sizeof(pre) - 1;
	struct buf full;
	char *line;
	size_t n;

	buf_init(&full, 0);
	ck_assert_int_eq(fmt_case(&full, _i), 0);
	n = buf_len(&full);
	line = strndup(buf_rptr(&full), n);
	ck_assert_ptr_nonnull(line);
	ck_assert_uint_gt(n, 0);
	ck_assert_int_eq(line[n - 1], '\n');
	ck_assert_ptr_null(memchr(line, '\n', n - 1));
	ck_assert_ptr_null(memchr(line, '\r', n - 1));

	for (int moved = 0; moved <= 1; moved++) {
		for (size_t max = held; max <= held + n + 2; max++) {
			struct buf b;
			char want[512];

			setup_buf(&b, max, moved);
			int r = fmt_case(&b, _i);
			if (held + n <= max) {
				ck_assert_int_eq(r, 0);
				snprintf(want, sizeof(want), "%s%s", pre, line);
			} else {
				ck_assert_int_eq(r, -EMSGSIZE);
				snprintf(want, sizeof(want), "%s", pre);
			}
			buf_is(&b, want);
			buf_free(&b);
		}
	}
	free(line);
	buf_free(&full);
}
END_TEST

/* ---- runner ---- */

static Suite *parse_ok_suite(void)
{
	Suite *s = suite_create("parse-ok");
	TCase *tc = tcase_create("ok");

	tcase_add_test(tc, test_batch);
	tcase_add_test(tc, test_every_verb);
	tcase_add_test(tc, test_verb_case);
	tcase_add_test(tc, test_tags);
	tcase_add_test(tc, test_whitespace);
	tcase_add_test(tc, test_payloads);
	tcase_add_test(tc, test_names);
	tcase_add_test(tc, test_ignored);
	tcase_add_test(tc, test_verb_names);
	suite_add_tcase(s, tc);
	return s;
}

static Suite *parse_err_suite(void)
{
	Suite *s = suite_create("parse-errors");
	TCase *tc = tcase_create("errors");
	TCase *rob = tcase_create("robustness");

	tcase_add_test(tc, test_err_verb);
	tcase_add_test(tc, test_err_tag);
	tcase_add_test(tc, test_err_missing);
	tcase_add_test(tc, test_err_reserved_event);
	tcase_add_test(tc, test_err_names);
	tcase_add_test(tc, test_err_json);
	tcase_add_test(tc, test_err_base64);
	tcase_add_test(tc, test_err_too_many);
	tcase_add_test(tc, test_err_utf8);
	suite_add_tcase(s, tc);
	tcase_set_timeout(rob, 60);
	tcase_add_test(rob, test_prefixes);
	tcase_add_test(rob, test_random);
	tcase_add_test(rob, test_base64_agrees);
	suite_add_tcase(s, rob);
	return s;
}

static Suite *fmt_suite(void)
{
	Suite *s = suite_create("formatting");
	TCase *tc = tcase_create("fmt");

	tcase_add_test(tc, test_fmt_reply);
	tcase_add_test(tc, test_fmt_roundtrip);
	tcase_add_test(tc, test_fmt_error);
	tcase_add_test(tc, test_fmt_event_state_bye);
	tcase_add_test(tc, test_fmt_event_nl);
	tcase_add_test(tc, test_fmt_bad_fields);
	tcase_add_loop_test(tc, test_fmt_all_or_nothing, 0, 10);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(parse_ok_suite());
	int failed;

	srunner_add_suite(sr, parse_err_suite());
	srunner_add_suite(sr, fmt_suite());
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
