/* ipc_line — the codec of the local line protocol (docs/PROTOCOL.md).
 *
 * Parses one command line into spans that point into the line, and formats
 * reply, event, state and bye lines into a buf.  Never touches a socket, so
 * tests and fuzzers call it directly.  Every formatter appends a whole line
 * (ending with '\n') or nothing: on error the buffer is left as it was.
 * Formatters return 0, -EMSGSIZE or -ENOMEM from the buffer, or -EINVAL
 * when a name field (tag, verb, target, topic, event, state) holds a space
 * or a control character, or is empty where it cannot be "-" (event lines'
 * topic and event, state lines' topic and state): such a field would break
 * or forge a line.  JSON payloads are trusted to be valid (only one that
 * holds CR or LF is looked at, by the compaction, which may then fail with
 * -EINVAL).
 */
#ifndef PHX_IPC_LINE_H
#define PHX_IPC_LINE_H

#include <stddef.h>

struct buf;

#define IPC_TAG_MAX 64
#define IPC_NAME_MAX 255    /* topic, event and endpoint names */

enum ipc_verb {
	IPC_V_NONE = 0,     /* not parsed (error) */
	IPC_V_JOIN,
	IPC_V_LEAVE,
	IPC_V_PUSH,
	IPC_V_BPUSH,
	IPC_V_USE,
	IPC_V_ENDPOINTS,
	IPC_V_TOPICS,
	IPC_V_PING,
	IPC_V_HELP,
	IPC_V_QUIT,
};

struct ipc_str {
	const char *p;
	size_t len;
};

struct ipc_cmd {
	enum ipc_verb verb;
	const char *verb_name;  /* "JOIN", ... or "?" when the verb is unknown */
	struct ipc_str tag;     /* without the '@'; len 0 when absent */
	struct ipc_str target;  /* topic (JOIN LEAVE PUSH BPUSH) or endpoint (USE) */
	struct ipc_str more;    /* JOIN and LEAVE: the topics after the first, as
				   written (walk them with ipc_next_name()) */
	unsigned ntargets;      /* JOIN and LEAVE: how many topics (1 + more) */
	struct ipc_str event;   /* PUSH BPUSH */
	struct ipc_str payload; /* JSON value (trimmed) or base64 text (BPUSH);
				   len 0 when absent: the default is {} */
	const char *err;        /* reason when parsing failed (see PROTOCOL.md) */
};

/* Takes the next blank-separated name from *rest into *name and advances
 * *rest past it; 0 when none is left. */
int ipc_next_name(struct ipc_str *rest, struct ipc_str *name);

/* Kinds of bad input, for counting (metrics label them by name). */
enum ipc_bad {
	IPC_BAD_UTF8,       /* invalid utf-8 (or a NUL byte) */
	IPC_BAD_VERB,       /* unknown verb */
	IPC_BAD_TAG,        /* bad tag */
	IPC_BAD_NAME,       /* bad topic, event or endpoint */
	IPC_BAD_MISSING,    /* missing topic, event, payload or endpoint */
	IPC_BAD_JSON,       /* invalid json, params must be an object */
	IPC_BAD_BASE64,     /* invalid base64 */
	IPC_BAD_ARGS,       /* too many arguments */
	IPC_BAD_TOO_LONG,   /* line too long */
	IPC_BAD_KINDS
};
extern const char *const ipc_bad_names[IPC_BAD_KINDS];
/* The kind of a parse error reason (cmd->err, or "line too long"). */
enum ipc_bad ipc_bad_kind(const char *reason);

/* Canonical upper-case name of a verb ("?" for IPC_V_NONE). */
const char *ipc_verb_name(enum ipc_verb v);

/* Parses one line of len bytes (the '\n' removed; a trailing '\r' is
 * ignored).  Returns 0 with cmd filled, 1 for a line to ignore (empty or a
 * '#' comment), or -EINVAL with cmd->err set to the reason and cmd->verb_name
 * and cmd->tag (and target where known) set as far as they could be read, so
 * that the error reply can name them.  Validates: UTF-8 of the whole line,
 * the tag, names, JSON payloads (JOIN params must be an object) and base64. */
int ipc_line_parse(const char *line, size_t len, struct ipc_cmd *cmd);

/* "OK|ERR [@tag] VERB TARGET PAYLOAD\n".  ok selects OK/ERR, binary selects
 * BOK/BERR with payload base64-encoded from the raw bytes.  A JSON payload is
 * written on one line (whitespace with newlines is compacted); plen 0 writes
 * {}.  target NULL or tlen 0 writes "-". */
int ipc_fmt_reply(struct buf *out, int ok, int binary, const struct ipc_str *tag,
		  const char *verb, const char *target, size_t tlen,
		  const char *payload, size_t plen);

/* "ERR [@tag] VERB TARGET {"reason":R[,"detail":D]}\n"; detail may be NULL.
 * Reason and detail are escaped as JSON strings. */
int ipc_fmt_error(struct buf *out, const struct ipc_str *tag, const char *verb,
		  const char *target, size_t tlen, const char *reason,
		  const char *detail);

/* "EVENT TOPIC EVENT PAYLOAD\n", or "BEVENT TOPIC EVENT BASE64\n" when binary
 * (payload are then the raw bytes). */
int ipc_fmt_event(struct buf *out, int binary, const char *topic, size_t tlen,
		  const char *event, size_t elen, const char *payload, size_t plen);
/* ipc_fmt_event for a payload whose line breaks are known (phx_msg's
 * payload_nl): nl 0 when a JSON payload holds no raw CR or LF (it is
 * copied as it is, in one reservation), 1 when it may (it is compacted).
 * Ignored when binary. */
int ipc_fmt_event_nl(struct buf *out, int binary, const char *topic, size_t tlen,
		     const char *event, size_t elen, const char *payload, size_t plen,
		     int nl);

/* "STATE TOPIC STATE PAYLOAD\n" */
int ipc_fmt_state(struct buf *out, const char *topic, size_t tlen,
		  const char *state, const char *payload, size_t plen);

/* "BYE {"reason":R}\n" */
int ipc_fmt_bye(struct buf *out, const char *reason);

#endif
