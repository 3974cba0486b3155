/* fuzz_ipc_line — the local line protocol (ipc/ipc_line) and base64.
 *
 * Input: bytes cut into lines at '\n', as ipc_server hands them over.
 * Promises checked for each line:
 *  - ipc_line_parse() returns 0, 1 (blank or comment) or -EINVAL with a
 *    reason; every span points into the line and holds what the verb takes
 *    (names without blanks or control characters, a tag of the allowed
 *    characters, a valid JSON payload, a JOIN object, canonical base64);
 *  - the answers phxd writes from what was parsed (OK/BOK replies, EVENT,
 *    BEVENT, STATE, and ERR for a line that failed, quoting the raw line as
 *    the detail) are each exactly one line: valid UTF-8, one '\n' at the
 *    end, no CR or other C0 control character but tabs in the JSON, the
 *    fields as parsed, a JSON payload that is valid, and base64 payloads
 *    that give the client back what it sent;
 *  - a formatter that runs into the buffer's limit appends nothing;
 *  - b64_decode() accepts exactly what a BPUSH accepts, and what it accepts
 *    encodes back to the same text.
 */
#include <errno.h>
#include <string.h>

#include "b64.h"
#include "buf.h"
#include "ipc/ipc_line.h"
#include "json.h"

#include "fuzz.h"

static int in_line(const struct ipc_str *s, const char *line, size_t len)
{
	return s->len == 0 || (s->p >= line && s->p + s->len <= line + len);
}

static int name_ok(const struct ipc_str *s)
{
	if (s->len == 0 || s->len > IPC_NAME_MAX)
		return 0;
	for (size_t k = 0; k < s->len; k++) {
		unsigned char c = (unsigned char)s->p[k];
		if (c <= ' ' || c == 0x7f)
			return 0;
	}
	return 1;
}

static int tag_ok(const struct ipc_str *s)
{
	if (s->len == 0)
		return 1;
	if (s->len > IPC_TAG_MAX || s->p[-1] != '@')
		return 0;
	for (size_t k = 0; k < s->len; k++) {
		char c = s->p[k];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || strchr("_-.:", c)))
			return 0;
	}
	return 1;
}

/* The bytes appended since mark are one protocol line; returns its
 * payload: what follows the first nfields fields (without the '\n'). */
static struct ipc_str check_out_line(const struct buf *b, size_t mark, unsigned nfields)
{
	const char *p = fuzz_bytes(b) + mark;
	size_t n = buf_len(b) - mark;
	struct ipc_str rest;

	FUZZ_CHECK(n >= 2 && p[n - 1] == '\n');
	/* (DEL may stand in JSON text as it is) */
	for (size_t k = 0; k + 1 < n; k++) {
		unsigned char c = (unsigned char)p[k];
		FUZZ_CHECK(c >= 0x20 || c == '\t');
	}
	FUZZ_CHECK(utf8_valid(p, n));
	rest.p = p;
	rest.len = n - 1;
	for (unsigned f = 0; f < nfields; f++) {
		const char *sp = memchr(rest.p, ' ', rest.len);
		FUZZ_CHECK(sp != NULL && sp > rest.p);
		rest.len -= (size_t)(sp + 1 - rest.p);
		rest.p = sp + 1;
	}
	return rest;
}

/* The line starts with these fields, each followed by one space. */
static void check_fields(const struct buf *b, size_t mark, const struct ipc_str *f,
			 unsigned nf)
{
	const char *p = fuzz_bytes(b) + mark;
	for (unsigned k = 0; k < nf; k++) {
		if (f[k].len == 0)
			continue;
		FUZZ_CHECK(memcmp(p, f[k].p, f[k].len) == 0 && p[f[k].len] == ' ');
		p += f[k].len + 1;
	}
}

/* A JSON payload as written: valid, and the value that was given. */
static void check_json_payload(const struct ipc_str *got, const struct ipc_str *given)
{
	struct buf c;

	FUZZ_CHECK(json_validate(got->p, got->len, NULL) == 0);
	if (given->len == 0) {
		FUZZ_CHECK(got->len == 2 && memcmp(got->p, "{}", 2) == 0);
		return;
	}
	buf_init(&c, 0);
	FUZZ_CHECK(json_put_compact(&c, given->p, given->len) == 0);
	if (!memchr(given->p, '\n', given->len) && !memchr(given->p, '\r', given->len))
		FUZZ_CHECK(got->len == given->len && memcmp(got->p, given->p, got->len) == 0);
	else
		FUZZ_CHECK(got->len == buf_len(&c) &&
			   memcmp(got->p, fuzz_bytes(&c), got->len) == 0);
	buf_free(&c);
}

static struct ipc_str str_of(const char *s)
{
	struct ipc_str r = { s, strlen(s) };
	return r;
}

/* "KIND [@TAG] VERB TARGET" as fields; returns how many. */
static unsigned head_fields(struct ipc_str *f, const char *kind, const struct ipc_cmd *cmd,
			    const struct ipc_str *target, char *tagbuf, size_t tagcap)
{
	unsigned n = 0;
	f[n++] = str_of(kind);
	if (cmd->tag.len) {
		FUZZ_CHECK(cmd->tag.len + 1 < tagcap);
		tagbuf[0] = '@';
		memcpy(tagbuf + 1, cmd->tag.p, cmd->tag.len);
		f[n].p = tagbuf;
		f[n++].len = cmd->tag.len + 1;
	}
	f[n++] = str_of(cmd->verb_name);
	f[n++] = target->len ? *target : str_of("-");
	return n;
}

/* The same formatter call into a buffer that is almost full: 0 with one
 * more line, or -EMSGSIZE with nothing appended. */
enum fmt_kind { F_REPLY, F_BREPLY, F_EVENT, F_BEVENT, F_STATE, F_ERROR, F_BYE };

struct fmt_args {
	enum fmt_kind kind;
	const struct ipc_cmd *cmd;
	struct ipc_str target, event, payload;
	const char *reason, *detail;
};

static int fmt_call(struct buf *b, const struct fmt_args *a)
{
	const struct ipc_str *tag = &a->cmd->tag;
	const char *vn = a->cmd->verb_name;

	switch (a->kind) {
	case F_REPLY:
	case F_BREPLY:
		return ipc_fmt_reply(b, 1, a->kind == F_BREPLY, tag, vn, a->target.p,
				     a->target.len, a->payload.p, a->payload.len);
	case F_EVENT:
	case F_BEVENT:
		return ipc_fmt_event(b, a->kind == F_BEVENT, a->target.p, a->target.len,
				     a->event.p, a->event.len, a->payload.p, a->payload.len);
	case F_STATE:
		return ipc_fmt_state(b, a->target.p, a->target.len, "rejoined", a->payload.p,
				     a->payload.len);
	case F_ERROR:
		return ipc_fmt_error(b, tag, vn, a->target.p, a->target.len, a->reason,
				     a->detail);
	case F_BYE:
		return ipc_fmt_bye(b, a->reason);
	}
	return -EINVAL;
}

/* Formats into a fresh buffer (must succeed) and into limited ones. */
static void fmt_run(struct buf *out, const struct fmt_args *a)
{
	static const size_t limits[] = { 8, 40, 300 };

	buf_init(out, 0);
	FUZZ_CHECK(fmt_call(out, a) == 0);
	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		struct buf lim;
		buf_init(&lim, limits[i]);
		FUZZ_CHECK(buf_append(&lim, "x\n", 2) == 0);
		int r = fmt_call(&lim, a);
		FUZZ_CHECK(r == 0 || r == -EMSGSIZE);
		if (r == 0) {
			FUZZ_CHECK(buf_len(&lim) == 2 + buf_len(out));
			FUZZ_CHECK(memcmp(fuzz_bytes(&lim) + 2, fuzz_bytes(out), buf_len(out)) == 0);
		} else {
			FUZZ_CHECK(buf_len(&lim) == 2 && memcmp(fuzz_bytes(&lim), "x\n", 2) == 0);
			FUZZ_CHECK(buf_len(out) + 2 > limits[i]);
		}
		buf_free(&lim);
	}
}

static void check_error_line(const struct ipc_cmd *cmd, const char *reason, const char *detail)
{
	struct fmt_args a = { .kind = F_ERROR, .cmd = cmd, .target = cmd->target,
			      .reason = reason, .detail = detail };
	struct ipc_str f[4], pl;
	struct json_span v;
	char tagbuf[IPC_TAG_MAX + 2];
	struct buf out;

	fmt_run(&out, &a);
	unsigned nf = head_fields(f, "ERR", cmd, &cmd->target, tagbuf, sizeof(tagbuf));
	pl = check_out_line(&out, 0, nf);
	check_fields(&out, 0, f, nf);
	FUZZ_CHECK(json_peek(pl.p, pl.len) == JSON_T_OBJECT);
	FUZZ_CHECK(json_validate(pl.p, pl.len, NULL) == 0);
	FUZZ_CHECK(json_obj_get(pl.p, pl.len, "reason", &v) == 0);
	FUZZ_CHECK(json_peek(v.p, v.len) == JSON_T_STRING);
	buf_free(&out);

	a.kind = F_BYE;
	fmt_run(&out, &a);
	f[0] = str_of("BYE");
	pl = check_out_line(&out, 0, 1);
	check_fields(&out, 0, f, 1);
	FUZZ_CHECK(json_validate(pl.p, pl.len, NULL) == 0);
	buf_free(&out);
}

/* A NUL-terminated copy of a line, for the error detail. */
static char *dup_line(const char *line, size_t len)
{
	char *s = malloc(len + 1);
	FUZZ_CHECK(s != NULL);
	memcpy(s, line, len);
	s[len] = '\0';
	return s;
}

static void check_failed(const char *line, size_t len, const struct ipc_cmd *cmd)
{
	FUZZ_CHECK(cmd->err != NULL && cmd->err[0]);
	FUZZ_CHECK(cmd->verb == IPC_V_NONE);
	FUZZ_CHECK(cmd->verb_name != NULL && cmd->verb_name[0]);
	FUZZ_CHECK(in_line(&cmd->tag, line, len) && tag_ok(&cmd->tag));
	FUZZ_CHECK(in_line(&cmd->target, line, len));
	FUZZ_CHECK(cmd->target.len == 0 || name_ok(&cmd->target));
	FUZZ_CHECK(cmd->event.len == 0 && cmd->payload.len == 0);
	char *detail = dup_line(line, len);
	check_error_line(cmd, cmd->err, NULL);
	check_error_line(cmd, cmd->err, detail);
	free(detail);
}

/* Walks the topics after the first; returns how many there are. */
static unsigned check_more(const char *line, size_t len, const struct ipc_cmd *cmd)
{
	struct ipc_str rest = cmd->more, name;
	unsigned n = 0;

	FUZZ_CHECK(in_line(&cmd->more, line, len));
	while (ipc_next_name(&rest, &name)) {
		FUZZ_CHECK(name_ok(&name));
		n++;
	}
	return n;
}

/* The replies and events phxd writes from this command. */
static void check_answers(const struct ipc_cmd *cmd, const struct ipc_str *raw)
{
	struct fmt_args a = { .kind = F_REPLY, .cmd = cmd, .target = cmd->target,
			      .event = cmd->event, .payload = cmd->payload };
	struct ipc_str f[4], pl;
	char tagbuf[IPC_TAG_MAX + 2];
	struct buf out;
	unsigned nf;

	if (cmd->verb == IPC_V_BPUSH)
		a.payload = *raw;
	a.kind = cmd->verb == IPC_V_BPUSH ? F_BREPLY : F_REPLY;
	fmt_run(&out, &a);
	nf = head_fields(f, a.kind == F_BREPLY ? "BOK" : "OK", cmd, &cmd->target, tagbuf,
			 sizeof(tagbuf));
	pl = check_out_line(&out, 0, nf);
	check_fields(&out, 0, f, nf);
	if (a.kind == F_BREPLY)
		FUZZ_CHECK(pl.len == cmd->payload.len &&
			   memcmp(pl.p, cmd->payload.p, pl.len) == 0);
	else
		check_json_payload(&pl, &cmd->payload);
	buf_free(&out);

	if (cmd->verb == IPC_V_PUSH || cmd->verb == IPC_V_BPUSH) {
		a.kind = cmd->verb == IPC_V_BPUSH ? F_BEVENT : F_EVENT;
		fmt_run(&out, &a);
		f[0] = str_of(a.kind == F_BEVENT ? "BEVENT" : "EVENT");
		f[1] = cmd->target;
		f[2] = cmd->event;
		pl = check_out_line(&out, 0, 3);
		check_fields(&out, 0, f, 3);
		if (a.kind == F_BEVENT)
			FUZZ_CHECK(pl.len == cmd->payload.len &&
				   memcmp(pl.p, cmd->payload.p, pl.len) == 0);
		else
			check_json_payload(&pl, &cmd->payload);
		buf_free(&out);
	}
	if (cmd->verb == IPC_V_JOIN) {
		a.kind = F_STATE;
		fmt_run(&out, &a);
		f[0] = str_of("STATE");
		f[1] = cmd->target;
		f[2] = str_of("rejoined");
		pl = check_out_line(&out, 0, 3);
		check_fields(&out, 0, f, 3);
		check_json_payload(&pl, &cmd->payload);
		buf_free(&out);
	}
	check_error_line(cmd, "not joined", NULL);
}

static void check_parsed(const char *line, size_t len, const struct ipc_cmd *cmd)
{
	struct buf raw;
	struct ipc_str bin = { "", 0 };

	FUZZ_CHECK(cmd->err == NULL && cmd->verb != IPC_V_NONE);
	FUZZ_CHECK(strcmp(cmd->verb_name, ipc_verb_name(cmd->verb)) == 0);
	FUZZ_CHECK(in_line(&cmd->tag, line, len) && tag_ok(&cmd->tag));
	FUZZ_CHECK(in_line(&cmd->target, line, len) && in_line(&cmd->event, line, len));
	FUZZ_CHECK(in_line(&cmd->payload, line, len));
	buf_init(&raw, 0);
	switch (cmd->verb) {
	case IPC_V_JOIN:
	case IPC_V_LEAVE:
		FUZZ_CHECK(name_ok(&cmd->target) && cmd->event.len == 0);
		FUZZ_CHECK(cmd->ntargets == 1 + check_more(line, len, cmd));
		if (cmd->verb == IPC_V_LEAVE)
			FUZZ_CHECK(cmd->payload.len == 0);
		else if (cmd->payload.len)
			FUZZ_CHECK(json_peek(cmd->payload.p, cmd->payload.len) == JSON_T_OBJECT);
		if (cmd->payload.len)
			FUZZ_CHECK(json_validate(cmd->payload.p, cmd->payload.len, NULL) == 0);
		break;
	case IPC_V_PUSH:
		FUZZ_CHECK(name_ok(&cmd->target) && name_ok(&cmd->event));
		if (cmd->payload.len)
			FUZZ_CHECK(json_validate(cmd->payload.p, cmd->payload.len, NULL) == 0);
		break;
	case IPC_V_BPUSH:
		FUZZ_CHECK(name_ok(&cmd->target) && name_ok(&cmd->event));
		FUZZ_CHECK(cmd->payload.len > 0);
		FUZZ_CHECK(b64_decode(&raw, cmd->payload.p, cmd->payload.len) == 0);
		bin.p = fuzz_bytes(&raw);
		bin.len = buf_len(&raw);
		break;
	case IPC_V_USE:
		FUZZ_CHECK(name_ok(&cmd->target) && cmd->payload.len == 0);
		break;
	default:
		FUZZ_CHECK(cmd->target.len == 0 && cmd->payload.len == 0);
		break;
	}
	check_answers(cmd, &bin);
	buf_free(&raw);
}

/* 1 when s[0..n) is what a BPUSH payload field can be: no blanks, no
 * control characters, not empty. */
static int b64_field(const char *s, size_t n)
{
	if (n == 0)
		return 0;
	for (size_t k = 0; k < n; k++)
		if ((unsigned char)s[k] <= ' ' || s[k] == 0x7f)
			return 0;
	return 1;
}

/* base64 on its own, and as a BPUSH sees it. */
static void check_b64(const char *line, size_t len)
{
	struct buf dec, enc, cmdline;
	struct ipc_cmd cmd;

	buf_init(&dec, 0);
	buf_init(&enc, 0);
	buf_init(&cmdline, 0);
	int r = b64_decode(&dec, line, len);
	FUZZ_CHECK(r == 0 || r == -EINVAL);
	if (r == 0) {
		FUZZ_CHECK(buf_len(&dec) == len / 4 * 3 - (len && line[len - 1] == '=') -
			   (len > 1 && line[len - 2] == '='));
		FUZZ_CHECK(b64_encode(&enc, fuzz_bytes(&dec), buf_len(&dec)) == 0);
		FUZZ_CHECK(buf_len(&enc) == len && memcmp(fuzz_bytes(&enc), line, len) == 0);
	} else {
		FUZZ_CHECK(buf_len(&dec) == 0);
	}
	if (b64_field(line, len) && len <= 4096) {
		FUZZ_CHECK(buf_puts(&cmdline, "BPUSH t e ") == 0);
		FUZZ_CHECK(buf_append(&cmdline, line, len) == 0);
		int p = ipc_line_parse(fuzz_bytes(&cmdline), buf_len(&cmdline), &cmd);
		FUZZ_CHECK((p == 0) == (r == 0));
	}
	buf_reset(&enc);
	buf_reset(&dec);
	FUZZ_CHECK(b64_encode(&enc, line, len) == 0);
	FUZZ_CHECK(buf_len(&enc) == b64_enc_len(len));
	FUZZ_CHECK(b64_decode(&dec, fuzz_bytes(&enc), buf_len(&enc)) == 0);
	FUZZ_CHECK(buf_len(&dec) == len && (len == 0 || memcmp(fuzz_bytes(&dec), line, len) == 0));
	buf_free(&dec);
	buf_free(&enc);
	buf_free(&cmdline);
}

/* A line the parser ignores: blanks, or a comment. */
static int ignorable(const char *line, size_t len)
{
	size_t i = 0;
	if (len && line[len - 1] == '\r')
		len--;
	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	return i == len || line[i] == '#';
}

static void one_line(const char *line, size_t len)
{
	struct ipc_cmd cmd;
	int r = ipc_line_parse(line, len, &cmd);

	FUZZ_CHECK(r == 0 || r == 1 || r == -EINVAL);
	if (r == 1)
		FUZZ_CHECK(ignorable(line, len) && utf8_valid(line, len) && !memchr(line, 0, len));
	else if (r < 0)
		check_failed(line, len, &cmd);
	else
		check_parsed(line, len, &cmd);
	check_b64(line, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	size_t pos = 0;

	do {
		const char *nl = memchr(p + pos, '\n', size - pos);
		size_t end = nl ? (size_t)(nl - p) : size;
		one_line(p + pos, end - pos);
		pos = end + 1;
	} while (pos <= size);
	return 0;
}
