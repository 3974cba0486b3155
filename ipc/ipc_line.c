/* ipc_line — parser and formatters of the local line protocol.
 *
 * The parser makes one left-to-right pass over the fields and reports the
 * first problem it meets.  It never allocates: every span points into the
 * line.  Formatters append through a small line writer that remembers where
 * the line began and cuts the buffer back there on any error.
 */
#include "ipc_line.h"

#include "b64.h"
#include "buf.h"
#include "json.h"

#include <errno.h>
#include <string.h>

/* ---- verbs ---- */

static const struct ipc_str verb_names[] = {
	[IPC_V_NONE] = { "?", 1 },
	[IPC_V_JOIN] = { "JOIN", 4 },
	[IPC_V_LEAVE] = { "LEAVE", 5 },
	[IPC_V_PUSH] = { "PUSH", 4 },
	[IPC_V_BPUSH] = { "BPUSH", 5 },
	[IPC_V_USE] = { "USE", 3 },
	[IPC_V_ENDPOINTS] = { "ENDPOINTS", 9 },
	[IPC_V_TOPICS] = { "TOPICS", 6 },
	[IPC_V_PING] = { "PING", 4 },
	[IPC_V_HELP] = { "HELP", 4 },
	[IPC_V_QUIT] = { "QUIT", 4 },
};

#define VERB_COUNT (sizeof(verb_names) / sizeof(verb_names[0]))

const char *ipc_verb_name(enum ipc_verb v)
{
	if ((unsigned)v >= VERB_COUNT)
		return "?";
	return verb_names[v].p;
}

/* 1 when p[0..n) equals the upper-case name, ignoring ASCII case. */
static int verb_eq(const char *p, size_t n, const struct ipc_str *name)
{
	if (n != name->len)
		return 0;
	for (size_t k = 0; k < n; k++) {
		char c = p[k];
		if (c >= 'a' && c <= 'z')
			c = (char)(c - 'a' + 'A');
		if (c != name->p[k])
			return 0;
	}
	return 1;
}

static enum ipc_verb verb_lookup(const char *p, size_t n)
{
	for (size_t v = IPC_V_NONE + 1; v < VERB_COUNT; v++)
		if (verb_eq(p, n, &verb_names[v]))
			return (enum ipc_verb)v;
	return IPC_V_NONE;
}

/* ---- character classes ---- */

static inline int is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* Control characters as the protocol means them: C0 and DEL. */
static inline int is_ctl(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

static inline int is_tag_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.' ||
	       c == ':';
}

/* Base64 alphabet value of c, or -1. */
static inline int b64_digit(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* 1 when s[0..n) is canonical padded base64 (what b64_decode accepts):
 * a multiple of 4 long, '=' only as the last one or two characters, and
 * the bits that padding leaves over all zero. */
static int b64_valid(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;

	if (n == 0 || n % 4)
		return 0;
	size_t pad = 0;
	if (u[n - 1] == '=')
		pad = (u[n - 2] == '=') ? 2 : 1;
	for (size_t i = 0; i < n - pad; i++)
		if (b64_digit(u[i]) < 0)
			return 0;
	if (pad == 1)
		return (b64_digit(u[n - 2]) & 0x03) == 0;
	if (pad == 2)
		return (b64_digit(u[n - 3]) & 0x0f) == 0;
	return 1;
}

/* ---- parser ---- */

/* The unread rest of a line. */
struct cursor {
	const char *p;
	size_t i;
	size_t len;
};

static void skip_blanks(struct cursor *c)
{
	while (c->i < c->len && is_blank(c->p[c->i]))
		c->i++;
}

/* Takes the field that starts here (up to a blank); 0 when it is empty. */
static int take_field(struct cursor *c, struct ipc_str *out)
{
	size_t s = c->i;
	while (c->i < c->len && !is_blank(c->p[c->i]))
		c->i++;
	out->p = c->p + s;
	out->len = c->i - s;
	return out->len > 0;
}

/* Skips blanks and takes the next field; 0 when there is none. */
static int next_field(struct cursor *c, struct ipc_str *out)
{
	skip_blanks(c);
	return take_field(c, out);
}

static int at_end(struct cursor *c)
{
	skip_blanks(c);
	return c->i == c->len;
}

/* A topic, event or endpoint name: 1..IPC_NAME_MAX bytes, no control
 * characters (blanks cannot occur: they end the field). */
static int name_valid(const struct ipc_str *s)
{
	const unsigned char *u = (const unsigned char *)s->p;

	if (s->len == 0 || s->len > IPC_NAME_MAX)
		return 0;
	for (size_t k = 0; k < s->len; k++)
		if (is_ctl(u[k]))
			return 0;
	return 1;
}

static int tag_valid(const struct ipc_str *s)
{
	const unsigned char *u = (const unsigned char *)s->p;

	if (s->len == 0 || s->len > IPC_TAG_MAX)
		return 0;
	for (size_t k = 0; k < s->len; k++)
		if (!is_tag_char(u[k]))
			return 0;
	return 1;
}

/* Reads a name field into *out; NULL or the reason (missing or bad). */
static const char *take_name(struct cursor *c, struct ipc_str *out,
			     const char *missing, const char *bad)
{
	struct ipc_str f;

	if (!next_field(c, &f))
		return missing;
	if (!name_valid(&f))
		return bad;
	*out = f;
	return NULL;
}

/* A topic: a name that does not open a JSON value ({ [ "), so that a
 * line like `JOIN {"a":1}` is a missing topic, not a topic named `{"a":1}`
 * (the params of a batch JOIN start at such a field). */
static const char *take_topic(struct cursor *c, struct ipc_str *out)
{
	skip_blanks(c);
	if (c->i < c->len && (c->p[c->i] == '{' || c->p[c->i] == '[' || c->p[c->i] == '"'))
		return "missing topic";
	return take_name(c, out, "missing topic", "bad topic");
}

/* A pushed event: Phoenix's own events (phx_join, phx_leave, phx_reply,
 * phx_error, phx_close) are phxd's to send, once for every client sharing
 * the channel; one client pushing them would leave or rejoin it for all. */
static const char *take_event(struct cursor *c, struct ipc_str *out)
{
	const char *err = take_name(c, out, "missing event", "bad event");
	if (!err && out->len >= 4 && memcmp(out->p, "phx_", 4) == 0)
		return "reserved event";
	return err;
}

/* The optional JSON payload: the rest of the line, trimmed. */
static const char *take_json(struct cursor *c, struct ipc_str *out)
{
	struct json_span v;

	skip_blanks(c);
	if (c->i == c->len)
		return NULL;    /* absent: len 0 means the default {} */
	if (json_validate(c->p + c->i, c->len - c->i, &v) < 0)
		return "invalid json";
	out->p = v.p;
	out->len = v.len;
	c->i = c->len;
	return NULL;
}

/* More topics after the first (batch JOIN and LEAVE): fields up to the end,
 * or, when json_ok, up to a field that opens a JSON value ({ [ ").  Sets
 * cmd->more to their span and cmd->ntargets; NULL or the reason. */
static const char *take_more_names(struct cursor *c, struct ipc_cmd *cmd, int json_ok)
{
	struct ipc_str f;
	size_t start = 0, end = 0;

	cmd->ntargets = 1;
	for (;;) {
		skip_blanks(c);
		if (c->i == c->len)
			break;
		char first = c->p[c->i];
		if (first == '{' || first == '[' || first == '"') {
			if (json_ok)
				break;
			return "too many arguments";
		}
		if (cmd->ntargets == 1)
			start = c->i;
		take_field(c, &f);
		if (!name_valid(&f))
			return "bad topic";
		end = c->i;
		cmd->ntargets++;
	}
	cmd->more.p = cmd->ntargets > 1 ? c->p + start : NULL;
	cmd->more.len = cmd->ntargets > 1 ? end - start : 0;
	return NULL;
}

static const char *parse_join(struct cursor *c, struct ipc_cmd *cmd)
{
	const char *err;

	if ((err = take_topic(c, &cmd->target)))
		return err;
	if ((err = take_more_names(c, cmd, 1)))
		return err;
	if ((err = take_json(c, &cmd->payload)))
		return err;
	if (cmd->payload.len && json_peek(cmd->payload.p, cmd->payload.len) != JSON_T_OBJECT)
		return "params must be an object";
	return NULL;
}

static const char *parse_leave(struct cursor *c, struct ipc_cmd *cmd)
{
	const char *err;

	if ((err = take_topic(c, &cmd->target)))
		return err;
	return take_more_names(c, cmd, 0);
}

int ipc_next_name(struct ipc_str *rest, struct ipc_str *name)
{
	struct cursor c = { rest->p, 0, rest->len };
	if (rest->len == 0 || !next_field(&c, name))   /* more.p is NULL then */
		return 0;
	rest->p += c.i;
	rest->len -= c.i;
	return 1;
}

static const char *parse_push(struct cursor *c, struct ipc_cmd *cmd)
{
	const char *err;

	if ((err = take_topic(c, &cmd->target)))
		return err;
	if ((err = take_event(c, &cmd->event)))
		return err;
	return take_json(c, &cmd->payload);
}

static const char *parse_bpush(struct cursor *c, struct ipc_cmd *cmd)
{
	const char *err;
	struct ipc_str f;

	if ((err = take_topic(c, &cmd->target)))
		return err;
	if ((err = take_event(c, &cmd->event)))
		return err;
	if (!next_field(c, &f))
		return "missing payload";
	if (!b64_valid(f.p, f.len))
		return "invalid base64";
	cmd->payload = f;
	return at_end(c) ? NULL : "too many arguments";
}

/* LEAVE TOPIC and USE ENDPOINT: exactly one name. */
static const char *parse_one_name(struct cursor *c, struct ipc_str *out,
				  const char *missing, const char *bad)
{
	const char *err;

	if ((err = take_name(c, out, missing, bad)))
		return err;
	return at_end(c) ? NULL : "too many arguments";
}

static const char *parse_args(struct cursor *c, struct ipc_cmd *cmd)
{
	switch (cmd->verb) {
	case IPC_V_JOIN:
		return parse_join(c, cmd);
	case IPC_V_LEAVE:
		return parse_leave(c, cmd);
	case IPC_V_PUSH:
		return parse_push(c, cmd);
	case IPC_V_BPUSH:
		return parse_bpush(c, cmd);
	case IPC_V_USE:
		return parse_one_name(c, &cmd->target, "missing endpoint",
				      "bad endpoint");
	case IPC_V_ENDPOINTS:
	case IPC_V_TOPICS:
	case IPC_V_PING:
	case IPC_V_HELP:
	case IPC_V_QUIT:
		return at_end(c) ? NULL : "too many arguments";
	case IPC_V_NONE:
		break;
	}
	return "unknown verb";
}

/* Keeps verb_name, tag and target for the error reply; drops the rest. */
static int parse_fail(struct ipc_cmd *cmd, const char *reason)
{
	cmd->verb = IPC_V_NONE;
	cmd->event.p = cmd->payload.p = NULL;
	cmd->event.len = cmd->payload.len = 0;
	cmd->err = reason;
	return -EINVAL;
}

int ipc_line_parse(const char *line, size_t len, struct ipc_cmd *cmd)
{
	struct cursor c = { .p = line, .i = 0, .len = len };
	struct ipc_str f;
	const char *err;

	memset(cmd, 0, sizeof(*cmd));
	cmd->verb_name = "?";
	if (c.len && line[c.len - 1] == '\r')
		c.len--;
	/* NUL is valid UTF-8 but never valid text here: same reason. */
	if (c.len && (!utf8_valid(line, c.len) || memchr(line, '\0', c.len)))
		return parse_fail(cmd, "invalid utf-8");
	skip_blanks(&c);
	if (c.i == c.len || line[c.i] == '#')
		return 1;
	if (line[c.i] == '@') {
		c.i++;
		take_field(&c, &f);
		if (!tag_valid(&f))
			return parse_fail(cmd, "bad tag");
		cmd->tag = f;
	}
	next_field(&c, &f);
	cmd->verb = verb_lookup(f.p, f.len);
	cmd->verb_name = ipc_verb_name(cmd->verb);
	if ((err = parse_args(&c, cmd)))
		return parse_fail(cmd, err);
	return 0;
}

/* ---- formatters ---- */

/* Appends one line piece by piece; the first error sticks, and
 * lw_end() then cuts the buffer back to where the line began. */
struct lw {
	struct buf *b;
	size_t mark;    /* buf_len() before the line */
	int r;
};

/* need: a lower bound of the line's length, reserved at once so that the
 * pieces do not grow the buffer one by one. */
static void lw_begin(struct lw *w, struct buf *b, size_t need)
{
	w->b = b;
	w->mark = buf_len(b);
	w->r = 0;
	if (need && !buf_reserve(b, need))
		w->r = -errno;
}

static void lw_put(struct lw *w, const char *p, size_t n)
{
	if (!w->r)
		w->r = buf_append(w->b, p, n);
}

/* A separating space, then the field. */
static void lw_field(struct lw *w, const char *p, size_t n)
{
	lw_put(w, " ", 1);
	lw_put(w, p, n);
}

/* 1 when the JSON text p[0..n) holds a raw CR or LF. */
static int has_crlf(const char *p, size_t n)
{
	return n && (memchr(p, '\n', n) || memchr(p, '\r', n));
}

/* A JSON value kept on one line; n 0 writes {}. */
static void lw_json(struct lw *w, const char *p, size_t n)
{
	if (w->r)
		return;
	if (n == 0)
		lw_put(w, "{}", 2);
	else if (has_crlf(p, n))
		w->r = json_put_compact(w->b, p, n);
	else
		lw_put(w, p, n);
}

static void lw_b64(struct lw *w, const char *p, size_t n)
{
	if (!w->r)
		w->r = b64_encode(w->b, p, n);
}

static void lw_str(struct lw *w, const char *s)
{
	if (!w->r)
		w->r = json_put_str(w->b, s ? s : "", s ? strlen(s) : 0);
}

/* The line payload: base64 of the raw bytes, or one-line JSON. */
static void lw_payload(struct lw *w, int binary, const char *p, size_t n)
{
	lw_put(w, " ", 1);
	if (binary)
		lw_b64(w, p, n);
	else
		lw_json(w, p, n);
}

static int lw_end(struct lw *w)
{
	lw_put(w, "\n", 1);
	if (w->r < 0)
		buf_truncate(w->b, w->mark);
	return w->r;
}

/* 1 when a name can be written as one field: not empty, no blanks, no
 * control characters (which could end or forge a line). */
static int field_ok(const char *p, size_t n)
{
	const unsigned char *u = (const unsigned char *)p;

	if (!p || n == 0)
		return 0;
	for (size_t k = 0; k < n; k++)
		if (u[k] <= ' ' || u[k] == 0x7f)
			return 0;
	return 1;
}

/* Lower bound of the payload's length once written. */
static size_t payload_min(int binary, const char *p, size_t n)
{
	if (binary)
		return b64_enc_len(n);
	if (n == 0)
		return 2;
	if (has_crlf(p, n))
		return 0;
	return n;
}

/* Writes "KIND [@tag] VERB TARGET" of a reply; -EINVAL when a field
 * cannot be written. */
static int reply_head(struct lw *w, const char *kind, const struct ipc_str *tag,
		      const char *verb, const char *target, size_t tlen)
{
	size_t vlen = verb ? strlen(verb) : 0;

	if (!verb || vlen == 0) {
		verb = "?";
		vlen = 1;
	}
	if (!target || tlen == 0) {
		target = "-";
		tlen = 1;
	}
	if (!field_ok(verb, vlen) || !field_ok(target, tlen))
		return -EINVAL;
	if (tag && tag->len && !field_ok(tag->p, tag->len))
		return -EINVAL;
	lw_put(w, kind, strlen(kind));
	if (tag && tag->len) {
		lw_put(w, " @", 2);
		lw_put(w, tag->p, tag->len);
	}
	lw_field(w, verb, vlen);
	lw_field(w, target, tlen);
	return 0;
}

static size_t head_len(const char *kind, const struct ipc_str *tag,
		       const char *verb, size_t tlen)
{
	size_t n = strlen(kind) + 1 + (verb && *verb ? strlen(verb) : 1) + 1 +
		   (tlen ? tlen : 1);
	if (tag && tag->len)
		n += 2 + tag->len;
	return n;
}

int ipc_fmt_reply(struct buf *out, int ok, int binary, const struct ipc_str *tag,
		  const char *verb, const char *target, size_t tlen,
		  const char *payload, size_t plen)
{
	static const char *const kinds[2][2] = { { "ERR", "BERR" }, { "OK", "BOK" } };
	const char *kind = kinds[!!ok][!!binary];
	struct lw w;

	if (!target)
		tlen = 0;
	lw_begin(&w, out, head_len(kind, tag, verb, tlen) + 1 +
		 payload_min(binary, payload, plen) + 1);
	if (!w.r)
		w.r = reply_head(&w, kind, tag, verb, target, tlen);
	lw_payload(&w, binary, payload, plen);
	return lw_end(&w);
}

int ipc_fmt_error(struct buf *out, const struct ipc_str *tag, const char *verb,
		  const char *target, size_t tlen, const char *reason,
		  const char *detail)
{
	struct lw w;
	size_t need;

	if (!target)
		tlen = 0;
	need = head_len("ERR", tag, verb, tlen) + sizeof(" {\"reason\":\"\"}\n") - 1 +
	       (reason ? strlen(reason) : 0);
	if (detail)
		need += sizeof(",\"detail\":\"\"") - 1 + strlen(detail);
	lw_begin(&w, out, need);
	if (!w.r)
		w.r = reply_head(&w, "ERR", tag, verb, target, tlen);
	lw_put(&w, " {\"reason\":", 11);
	lw_str(&w, reason);
	if (detail) {
		lw_put(&w, ",\"detail\":", 10);
		lw_str(&w, detail);
	}
	lw_put(&w, "}", 1);
	return lw_end(&w);
}

int ipc_fmt_event(struct buf *out, int binary, const char *topic, size_t tlen,
		  const char *event, size_t elen, const char *payload, size_t plen)
{
	return ipc_fmt_event_nl(out, binary, topic, tlen, event, elen, payload, plen,
				!binary && has_crlf(payload, plen));
}

int ipc_fmt_event_nl(struct buf *out, int binary, const char *topic, size_t tlen,
		     const char *event, size_t elen, const char *payload, size_t plen,
		     int nl)
{
	const char *kind = binary ? "BEVENT" : "EVENT";
	struct lw w;

	if (!field_ok(topic, tlen) || !field_ok(event, elen))
		return -EINVAL;
	if (!binary && !nl) {
		/* the usual event: its exact length, reserved once, and copies */
		if (plen == 0) {
			payload = "{}";
			plen = 2;
		}
		size_t n = 6 + tlen + 1 + elen + 1 + plen + 1;
		char *d = buf_reserve(out, n);
		if (!d)
			return -errno;
		memcpy(d, "EVENT ", 6);
		memcpy(d + 6, topic, tlen);
		d += 6 + tlen;
		*d++ = ' ';
		memcpy(d, event, elen);
		d += elen;
		*d++ = ' ';
		memcpy(d, payload, plen);
		d[plen] = '\n';
		buf_commit(out, n);
		return 0;
	}
	lw_begin(&w, out, strlen(kind) + 1 + tlen + 1 + elen + 1 +
		 payload_min(binary, payload, plen) + 1);
	lw_put(&w, kind, strlen(kind));
	lw_field(&w, topic, tlen);
	lw_field(&w, event, elen);
	lw_payload(&w, binary, payload, plen);
	return lw_end(&w);
}

int ipc_fmt_state(struct buf *out, const char *topic, size_t tlen,
		  const char *state, const char *payload, size_t plen)
{
	size_t slen = state ? strlen(state) : 0;
	struct lw w;

	if (!field_ok(topic, tlen) || !field_ok(state, slen))
		return -EINVAL;
	lw_begin(&w, out, 5 + 1 + tlen + 1 + slen + 1 +
		 payload_min(0, payload, plen) + 1);
	lw_put(&w, "STATE", 5);
	lw_field(&w, topic, tlen);
	lw_field(&w, state, slen);
	lw_payload(&w, 0, payload, plen);
	return lw_end(&w);
}

int ipc_fmt_bye(struct buf *out, const char *reason)
{
	struct lw w;

	lw_begin(&w, out, sizeof("BYE {\"reason\":\"\"}\n") - 1 +
		 (reason ? strlen(reason) : 0));
	lw_put(&w, "BYE {\"reason\":", 14);
	lw_str(&w, reason);
	lw_put(&w, "}", 1);
	return lw_end(&w);
}

const char *const ipc_bad_names[IPC_BAD_KINDS] = {
	[IPC_BAD_UTF8] = "utf8", [IPC_BAD_VERB] = "verb", [IPC_BAD_TAG] = "tag",
	[IPC_BAD_NAME] = "name", [IPC_BAD_MISSING] = "missing", [IPC_BAD_JSON] = "json",
	[IPC_BAD_BASE64] = "base64", [IPC_BAD_ARGS] = "arguments",
	[IPC_BAD_TOO_LONG] = "too_long",
};

enum ipc_bad ipc_bad_kind(const char *reason)
{
	if (!reason)
		return IPC_BAD_VERB;
	if (strncmp(reason, "missing ", 8) == 0)
		return IPC_BAD_MISSING;
	if (strcmp(reason, "bad tag") == 0)
		return IPC_BAD_TAG;
	if (strncmp(reason, "bad ", 4) == 0)
		return IPC_BAD_NAME;
	if (strcmp(reason, "invalid json") == 0 || strcmp(reason, "params must be an object") == 0)
		return IPC_BAD_JSON;
	if (strcmp(reason, "invalid base64") == 0)
		return IPC_BAD_BASE64;
	if (strcmp(reason, "too many arguments") == 0)
		return IPC_BAD_ARGS;
	if (strcmp(reason, "invalid utf-8") == 0)
		return IPC_BAD_UTF8;
	if (strcmp(reason, "line too long") == 0)
		return IPC_BAD_TOO_LONG;
	return IPC_BAD_VERB;
}
