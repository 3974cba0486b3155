/* phx_msg — Phoenix channels V2 serializer: JSON array frames
 * [join_ref, ref, topic, event, payload] and V2 binary frames.
 * Pure codec: no sockets, no allocation on decode.
 */
#ifndef PHX_PHX_MSG_H
#define PHX_PHX_MSG_H

#include <stddef.h>

struct buf;

#define PHX_NAME_MAX 255    /* topic, event (binary frames cap fields at 255) */
#define PHX_REF_MAX 64

enum phx_bin_kind { PHX_BIN_PUSH = 0, PHX_BIN_REPLY = 1, PHX_BIN_BROADCAST = 2 };

struct phx_msg {
	int binary;                     /* came in a binary frame */
	int has_join_ref, has_ref;      /* 0 when null/absent */
	char join_ref[PHX_REF_MAX + 1];
	char ref[PHX_REF_MAX + 1];
	char topic[PHX_NAME_MAX + 1];
	size_t topic_len;
	char event[PHX_NAME_MAX + 1];   /* "phx_reply" for replies */
	size_t event_len;
	const char *payload;            /* JSON text, or raw bytes when binary */
	size_t payload_len;
	int payload_nl;                 /* text: 1 when whitespace in the payload
					 * holds a raw CR or LF (it must then be
					 * compacted to go on a line); else 0 */
	/* replies (event "phx_reply"): */
	int is_reply;
	char status[PHX_NAME_MAX + 1];  /* "ok", "error", ... */
	const char *response;           /* JSON response, or raw bytes when binary */
	size_t response_len;
};

/* Decodes a text frame.  Returns 0, or -EINVAL when it is not a valid V2
 * frame (not a 5-element array, fields of the wrong type, names too long,
 * invalid JSON).  Pointers in m point into p. */
int phx_decode_json(const char *p, size_t len, struct phx_msg *m);
/* Decodes a binary frame sent by a server (kinds push, reply, broadcast). */
int phx_decode_binary(const void *p, size_t len, struct phx_msg *m);
/* Decodes a binary push sent by a client (kind 0 with a ref), for the test
 * server. */
int phx_decode_binary_client(const void *p, size_t len, struct phx_msg *m);

/* Appends ["jr","ref","topic","event",payload]; join_ref/ref NULL → null.
 * payload must be valid JSON (plen 0 → {}).  Whole frame or nothing. */
int phx_encode_json(struct buf *out, const char *join_ref, const char *ref,
		    const char *topic, size_t tlen, const char *event, size_t elen,
		    const char *payload, size_t plen);

/* Appends a client→server binary push frame.  -EINVAL when a field exceeds
 * 255 bytes. */
int phx_encode_binary_push(struct buf *out, const char *join_ref, const char *ref,
			   const char *topic, size_t tlen, const char *event,
			   size_t elen, const void *data, size_t dlen);

#endif
