/* conf — the phxd configuration: a key table, parsed from text.
 *
 * INI style: a global section, then one [endpoint NAME] section per Phoenix
 * endpoint.  conf_parse_string() parses into a fresh struct and reports the
 * first error as "FILE:LINE: message"; a reload parses into a new struct and
 * swaps it in only when it is valid.  docs/phxd.conf.5 describes the format:
 * `key = value` lines; `#` or `;` starts a comment line; a `#` that follows
 * whitespace starts a trailing comment, except inside a double-quoted value;
 * quoted values know the escapes \" and \\ only.
 */
#ifndef PHX_CONF_H
#define PHX_CONF_H

#include <stddef.h>

#define CONF_POOL_MAX 64

struct conf_kv {
	char *key;
	char *value;
	unsigned line;                 /* where it was set, for messages; 0: not from a file */
};

struct conf_endpoint {
	char *name;
	char *url;                     /* ws://… or wss://… (required) */
	struct conf_kv *params;        /* param.KEY = VALUE: connect params */
	size_t nparams;
	struct conf_kv *headers;       /* header.NAME = VALUE: extra upgrade headers */
	size_t nheaders;
	int tls_verify;                /* default 1 */
	char *ca_file;                 /* NULL: system CA store */
	unsigned heartbeat_ms;         /* heartbeat_interval, default 30 s */
	unsigned connect_timeout_ms;   /* default 10 s */
	unsigned push_timeout_ms;      /* default 10 s */
	unsigned join_timeout_ms;      /* default 10 s */
	char *reconnect_backoff;       /* ms list, default BACKOFF_RECONNECT_DEFAULT */
	char *rejoin_backoff;          /* ms list, default BACKOFF_REJOIN_DEFAULT */
	unsigned push_buffer;          /* pushes buffered per channel while not joined, default 100 */
	size_t max_frame;              /* largest inbound WebSocket message, default 16 MiB */
	size_t upstream_queue_max;     /* bytes queued for one connection's server past which pushes
					  are refused (upstream busy), default 16 MiB */
	unsigned pool_size;            /* most upstream connections, default 4 */
	unsigned pool_min;             /* connections kept open without topics, default 1 */
	unsigned max_channels;         /* max_channels_per_upstream, default 100 */
	unsigned pool_idle_ms;         /* pool_idle_timeout: close unused extras, default 60 s */
	/* TCP options of the upstream sockets */
	int tcp_nodelay;               /* default 1 */
	int tcp_keepalive;             /* default 1 */
	unsigned tcp_keepidle_ms;      /* tcp_keepalive_idle, default 60 s (whole seconds used) */
	unsigned tcp_keepintvl_ms;     /* tcp_keepalive_interval, default 10 s */
	unsigned tcp_keepcnt;          /* tcp_keepalive_count, default 5 */
	size_t tcp_sndbuf;             /* SO_SNDBUF; 0: kernel default */
	size_t tcp_rcvbuf;             /* SO_RCVBUF; 0: kernel default */
	/* permessage-deflate (RFC 7692) */
	int compression;               /* offer it, default 0 */
	unsigned compression_level;    /* zlib level 0..9, default 6 */
	int client_no_context_takeover;  /* default 0 */
	int server_no_context_takeover;  /* default 0 */
	unsigned client_max_window_bits; /* 9..15, default 15 */
	unsigned server_max_window_bits; /* 9..15, default 15 */
	unsigned line;                 /* line of the section header, for messages */
	unsigned pool_size_line;       /* where pool_size and pool_min were set (0: not set), */
	unsigned pool_min_line;        /* for a message about the two */
};

/* [access NAME]: who (uid/gid lists) may use what (glob lists).  The first
 * section whose uid or gid list matches a client's peer credentials
 * applies; a section with neither list matches everyone.  With no [access]
 * section at all, every client may do everything. */
struct conf_access {
	char *name;
	char *uid, *gid;               /* as written: numbers or names, comma-separated */
	char *endpoints, *join, *push; /* glob lists (fnmatch), NULL: "*" */
	unsigned *uids, *gids;         /* resolved by conf_check() */
	size_t nuids, ngids;
	unsigned line;
};

struct conf {
	char *socket_path;             /* socket, default /run/phxd/phxd.sock */
	unsigned socket_mode;          /* socket_mode, octal, default 0660 */
	size_t max_line;               /* default 1 MiB */
	size_t client_queue_max;       /* default 4 MiB */
	unsigned max_clients;          /* default 10000 */
	int log_level;                 /* log_level, default info (LOG_LVL_INFO) */
	char *default_endpoint;        /* default: the first endpoint */
	unsigned route_cache_size;     /* entries of the shm route cache, 0: none; 1000 */
	unsigned route_cache_ttl_ms;   /* unused routes expire after, default 300 s */
	unsigned route_cleanup_ms;     /* route_cleanup_interval, default 30 s */
	char *route_cache_name;        /* shm object; NULL: derived from the socket path */
	char *control_socket;          /* NULL: control.sock beside socket_path */
	unsigned control_socket_mode;  /* control_socket_mode, octal, default 0600 */
	char *metrics_listen;          /* loopback HOST:PORT serving /metrics; NULL: off */
	unsigned metrics_interval_ms;  /* sampling period, default 1 s */
	unsigned history_size;         /* samples kept, default 300 */
	size_t alert_memory;           /* RSS bytes, default 100 MiB; 0: off */
	unsigned alert_cache_hit_rate; /* percent, default 80; 0: off */
	size_t alert_queue_depth;      /* deepest client queue, bytes, default 1 MiB; 0: off */
	unsigned alert_response_ms;    /* push p99 per interval, default 1000 ms; 0: off */
	unsigned default_endpoint_line; /* where it was set, for messages; 0: not from a file */
	struct conf_endpoint *endpoints;
	size_t nendpoints;
	struct conf_access *access;    /* [access] sections, in file order */
	size_t naccess;
	unsigned max_topics_per_client;/* default 1000 */
	unsigned push_rate;            /* pushes per second per client, 0: no limit */
	unsigned push_burst;           /* pushes allowed at once, default 100 */
	/* the binary pool and string interning (common/bpool, common/intern) */
	unsigned binary_pool_size;     /* free blocks kept, and unused strings; 1000 */
	unsigned binary_max_age_ms;    /* unused entries released after, 300 s */
	unsigned binary_cleanup_ms;    /* binary_cleanup_interval, 30 s */
	/* hibernation of idle clients and upstreams */
	int hibernation_enabled;       /* default true */
	unsigned hibernation_idle_ms;  /* hibernation_idle_timeout, 300 s */
	size_t hibernation_memory_threshold; /* free memory kept for reuse, 8 MiB */
	/* local client sockets: SO_SNDBUF / SO_RCVBUF, 0: kernel default */
	size_t client_sndbuf, client_rcvbuf;
};

/* Sets every global default; no endpoints. */
void conf_init(struct conf *c);
void conf_free(struct conf *c);

/* Parses text (NUL-terminated) into c (which must come from conf_init()).
 * 0 on success; -EINVAL with "FILE:LINE: message" in err otherwise (-ENOMEM
 * when memory is short; c is then to be freed by the caller).  Checks that at
 * least one endpoint exists and that default_endpoint names one.  file names
 * the text in messages ("config" when NULL). */
int conf_parse_string(struct conf *c, const char *text, const char *file,
		      char *err, size_t errlen);
/* Same for text[0..len), which may hold NUL bytes (refused with an error
 * naming the line). */
int conf_parse_text(struct conf *c, const char *text, size_t len,
		    const char *file, char *err, size_t errlen);
/* Reads path (at most CONF_FILE_MAX bytes) and parses it, naming it path in
 * messages; -errno with the reason in err when unreadable or too large. */
int conf_load_file(struct conf *c, const char *path, char *err, size_t errlen);

#define CONF_FILE_MAX (1024 * 1024)   /* bytes in a config file */
#define CONF_LINE_MAX (64 * 1024)     /* bytes in one line, newline excluded */
#define CONF_NAME_MAX 64              /* endpoint names and param keys */

/* Adds an endpoint with defaults (for command-line use); url may be NULL.
 * The pointer is valid until the next conf_add_endpoint() (the array may
 * move).  NULL on ENOMEM. */
struct conf_endpoint *conf_add_endpoint(struct conf *c, const char *name,
					const char *url);
/* Validates what conf_parse_string() validates at its end (endpoints present,
 * names valid and unique, urls present and valid, default_endpoint known);
 * 0 or -EINVAL with err (-ENOMEM when a default could not be allocated). */
int conf_check(struct conf *c, char *err, size_t errlen);

const struct conf_endpoint *conf_endpoint_find(const struct conf *c, const char *name);
/* Does s match one of the comma-separated globs of list (NULL: "*")? */
int conf_glob_match(const char *list, const char *s, size_t len);

/* 1 when every option of the two endpoints (name included) is the same. */
int conf_endpoint_equal(const struct conf_endpoint *a, const struct conf_endpoint *b);
const struct conf_endpoint *conf_default_endpoint(const struct conf *c);

/* "250ms", "10s", "2m", "1h", "30" (seconds) → ms; -EINVAL if malformed or
 * above 24 h.  *ms is set only on success. */
int conf_parse_duration(const char *s, unsigned *ms);
/* "4096", "64k", "16M", "1G" (suffixes k, m, g in any case, powers of 1024)
 * → bytes; -EINVAL if malformed or when it overflows size_t.  *bytes is set
 * only on success. */
int conf_parse_size(const char *s, size_t *bytes);

struct sockaddr_storage;
/* "127.0.0.1:9187", "[::1]:9187" or "localhost:9187" → a loopback socket
 * address (port 1..65535).  0; -EINVAL if malformed; -EADDRNOTAVAIL when the
 * address is not a loopback one.  *ss and *len are set only on success. */
int conf_parse_loopback(const char *s, struct sockaddr_storage *ss, size_t *len);

#endif
