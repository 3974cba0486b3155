/* conf — parse the phxd configuration from text.
 *
 * The file is read line by line (LF or CRLF; a UTF-8 byte order mark at the
 * start is skipped).  Each line is checked for length, NUL and control bytes
 * and UTF-8 before it is looked at, then it is one of:
 *
 *   blank, or a comment: first non-blank character '#' or ';'
 *   [endpoint NAME]     starts an endpoint section
 *   key = value         an option; global options come before the first
 *                       section, endpoint options inside one
 *
 * A '#' that follows a space or tab ends the line as a comment, except inside
 * a double-quoted value; so `key = a#b` keeps the '#' and `key = a #b` does
 * not.  ';' starts a comment only at the start of a line.  Values are trimmed;
 * a value in double quotes keeps its spaces and knows two escapes, \" and \\.
 *
 * Options are described by one table (conf_keys): name, type, section, offset
 * of the field, range and a hint that error messages show.  Everything stops
 * at the first error, reported as "FILE:LINE: message".
 */
#include "conf.h"

#include "backoff.h"
#include "json.h"
#include "log.h"
#include "daemon/url.h"

#include <errno.h>
#include <fnmatch.h>
#include <grp.h>
#include <pwd.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Sockets live in /run/phxd whatever the prefix.  Under systemd the socket
 * units make that directory (phxd.service deliberately has no
 * RuntimeDirectory=, see phxd(8)); without systemd it must exist, as phxd
 * makes no directories. */
#undef RUNSTATEDIR
#define RUNSTATEDIR "/run"

#define CONF_DEFAULT_SOCKET RUNSTATEDIR "/phxd/phxd.sock"
#define CONF_HEADER_NAME_MAX 256
#define CONF_ECHO_MAX 64            /* bytes of a bad value quoted in errors */

#define KIB 1024ULL
#define MIB (1024ULL * KIB)
#define GIB (1024ULL * MIB)
#define SEC 1000ULL
#define HOUR (3600ULL * SEC)
#define DAY (24ULL * HOUR)

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

enum conf_type {
	CT_SOCKET,      /* char *: a path that fits sockaddr_un */
	CT_SHM,         /* char *: a POSIX shared memory name, "/name" */
	CT_IDS,         /* char *: user or group names/numbers, checked by conf_check */
	CT_GLOBS,       /* char *: comma-separated fnmatch patterns */
	CT_LOOPBACK,    /* char *: a loopback HOST:PORT, via conf_parse_loopback() */
	CT_STR,         /* char *: any non-empty string */
	CT_NAME,        /* char *: an endpoint name */
	CT_URL,         /* char *: checked with url_parse() */
	CT_BACKOFF,     /* char *: checked with backoff_parse() */
	CT_MODE,        /* unsigned: octal */
	CT_UINT,        /* unsigned: decimal */
	CT_DURATION,    /* unsigned: ms, via conf_parse_duration() */
	CT_SIZE,        /* size_t: bytes, via conf_parse_size() */
	CT_BOOL,        /* int: 0/1 */
	CT_LOGLEVEL,    /* int: enum log_level */
	CT_PARAM,       /* prefix "param.": appended to params */
	CT_HEADER,      /* prefix "header.": appended to headers */
};

enum conf_sect { CS_GLOBAL, CS_ENDPOINT, CS_ACCESS };

struct conf_key {
	const char *name;       /* a prefix for CT_PARAM and CT_HEADER */
	enum conf_type type;
	enum conf_sect sect;
	size_t off;             /* of the field in struct conf / conf_endpoint */
	unsigned long long min, max;
	const char *hint;       /* what a good value looks like */
};

#define G(field) CS_GLOBAL, offsetof(struct conf, field)
#define E(field) CS_ENDPOINT, offsetof(struct conf_endpoint, field)
#define A(field) CS_ACCESS, offsetof(struct conf_access, field)

static const struct conf_key conf_keys[] = {
	{ "socket", CT_SOCKET, G(socket_path), 1, sizeof(((struct sockaddr_un *)0)->sun_path) - 1,
	  "a path of at most 107 bytes" },
	{ "socket_mode", CT_MODE, G(socket_mode), 0, 0777, "octal, at most 0777" },
	{ "max_line", CT_SIZE, G(max_line), KIB, GIB, "size 1k..1G" },
	{ "client_queue_max", CT_SIZE, G(client_queue_max), 4 * KIB, GIB, "size 4k..1G" },
	{ "max_clients", CT_UINT, G(max_clients), 1, 1000000, "integer 1..1000000" },
	{ "log_level", CT_LOGLEVEL, G(log_level), 0, 0,
	  "error, warning, notice, info or debug" },
	{ "default_endpoint", CT_NAME, G(default_endpoint), 1, CONF_NAME_MAX,
	  "1-64 characters of A-Za-z0-9_.-" },
	{ "route_cache_size", CT_UINT, G(route_cache_size), 0, 1000000,
	  "integer 0..1000000 (0: no cache)" },
	{ "route_cache_ttl", CT_DURATION, G(route_cache_ttl_ms), SEC, DAY,
	  "duration 1s..24h, e.g. 300s" },
	{ "route_cleanup_interval", CT_DURATION, G(route_cleanup_ms), 100, HOUR,
	  "duration 100ms..1h, e.g. 30s" },
	{ "route_cache_name", CT_SHM, G(route_cache_name), 2, 200,
	  "'/' and 1-199 characters of A-Za-z0-9_.-" },
	{ "control_socket", CT_SOCKET, G(control_socket), 1,
	  sizeof(((struct sockaddr_un *)0)->sun_path) - 1, "a path of at most 107 bytes" },
	{ "control_socket_mode", CT_MODE, G(control_socket_mode), 0, 0777,
	  "octal, at most 0777" },
	{ "metrics_listen", CT_LOOPBACK, G(metrics_listen), 0, 0,
	  "127.0.0.1:PORT, [::1]:PORT or localhost:PORT" },
	{ "metrics_interval", CT_DURATION, G(metrics_interval_ms), 100, HOUR,
	  "duration 100ms..1h, e.g. 1s" },
	{ "history_size", CT_UINT, G(history_size), 1, 100000, "integer 1..100000" },
	{ "alert_memory", CT_SIZE, G(alert_memory), 0, 1024 * GIB, "size 0..1024G (0: off)" },
	{ "alert_cache_hit_rate", CT_UINT, G(alert_cache_hit_rate), 0, 100,
	  "percent 0..100 (0: off)" },
	{ "alert_queue_depth", CT_SIZE, G(alert_queue_depth), 0, GIB, "size 0..1G (0: off)" },
	{ "alert_response_time", CT_DURATION, G(alert_response_ms), 0, HOUR,
	  "duration 0..1h, e.g. 1000ms (0: off)" },

	{ "url", CT_URL, E(url), 0, 0, "ws://HOST[:PORT]/PATH or wss://..." },
	{ "param.", CT_PARAM, E(params), 1, CONF_NAME_MAX, "1-64 characters of A-Za-z0-9_.-" },
	{ "header.", CT_HEADER, E(headers), 1, CONF_HEADER_NAME_MAX,
	  "1-256 HTTP token characters" },
	{ "tls_verify", CT_BOOL, E(tls_verify), 0, 1, "true/false, yes/no, on/off or 1/0" },
	{ "ca_file", CT_STR, E(ca_file), 0, 0, "a file name" },
	{ "heartbeat_interval", CT_DURATION, E(heartbeat_ms), 100, HOUR,
	  "duration 100ms..1h, e.g. 30s" },
	{ "connect_timeout", CT_DURATION, E(connect_timeout_ms), 100, HOUR,
	  "duration 100ms..1h, e.g. 10s" },
	{ "push_timeout", CT_DURATION, E(push_timeout_ms), 100, HOUR,
	  "duration 100ms..1h, e.g. 10s" },
	{ "join_timeout", CT_DURATION, E(join_timeout_ms), 100, HOUR,
	  "duration 100ms..1h, e.g. 10s" },
	{ "reconnect_backoff", CT_BACKOFF, E(reconnect_backoff), 0, 0,
	  "1 to 16 comma-separated delays in ms, each 1..3600000" },
	{ "rejoin_backoff", CT_BACKOFF, E(rejoin_backoff), 0, 0,
	  "1 to 16 comma-separated delays in ms, each 1..3600000" },
	{ "push_buffer", CT_UINT, E(push_buffer), 0, 100000, "integer 0..100000" },
	{ "max_frame", CT_SIZE, E(max_frame), KIB, GIB, "size 1k..1G" },
	{ "upstream_queue_max", CT_SIZE, E(upstream_queue_max), 64 * KIB, GIB, "size 64k..1G" },
	{ "pool_size", CT_UINT, E(pool_size), 1, CONF_POOL_MAX, "integer 1..64" },
	{ "pool_min", CT_UINT, E(pool_min), 0, CONF_POOL_MAX, "integer 0..64, at most pool_size" },
	{ "max_channels_per_upstream", CT_UINT, E(max_channels), 1, 1000000,
	  "integer 1..1000000" },
	{ "pool_idle_timeout", CT_DURATION, E(pool_idle_ms), 100, DAY,
	  "duration 100ms..24h, e.g. 60s" },
	{ "tcp_nodelay", CT_BOOL, E(tcp_nodelay), 0, 1, "true/false, yes/no, on/off or 1/0" },
	{ "tcp_keepalive", CT_BOOL, E(tcp_keepalive), 0, 1, "true/false, yes/no, on/off or 1/0" },
	{ "tcp_keepalive_idle", CT_DURATION, E(tcp_keepidle_ms), SEC, 32767 * SEC,
	  "duration 1s..32767s, e.g. 60s" },
	{ "tcp_keepalive_interval", CT_DURATION, E(tcp_keepintvl_ms), SEC, 32767 * SEC,
	  "duration 1s..32767s, e.g. 10s" },
	{ "tcp_keepalive_count", CT_UINT, E(tcp_keepcnt), 1, 127, "integer 1..127" },
	{ "tcp_sndbuf", CT_SIZE, E(tcp_sndbuf), 0, 256 * MIB, "size 0..256M (0: kernel default)" },
	{ "tcp_rcvbuf", CT_SIZE, E(tcp_rcvbuf), 0, 256 * MIB, "size 0..256M (0: kernel default)" },
	{ "compression", CT_BOOL, E(compression), 0, 1, "true/false, yes/no, on/off or 1/0" },
	{ "compression_level", CT_UINT, E(compression_level), 0, 9, "integer 0..9" },
	{ "client_no_context_takeover", CT_BOOL, E(client_no_context_takeover), 0, 1,
	  "true/false, yes/no, on/off or 1/0" },
	{ "server_no_context_takeover", CT_BOOL, E(server_no_context_takeover), 0, 1,
	  "true/false, yes/no, on/off or 1/0" },
	{ "client_max_window_bits", CT_UINT, E(client_max_window_bits), 9, 15,
	  "integer 9..15; zlib cannot use 8" },
	{ "server_max_window_bits", CT_UINT, E(server_max_window_bits), 9, 15,
	  "integer 9..15; zlib cannot use 8" },

	{ "max_topics_per_client", CT_UINT, G(max_topics_per_client), 1, 1000000,
	  "integer 1..1000000" },
	{ "push_rate", CT_UINT, G(push_rate), 0, 1000000, "integer 0..1000000 (0: no limit)" },
	{ "push_burst", CT_UINT, G(push_burst), 1, 1000000, "integer 1..1000000" },
	{ "binary_pool_size", CT_UINT, G(binary_pool_size), 0, 1000000,
	  "integer 0..1000000 (0: no pooling)" },
	{ "binary_max_age", CT_DURATION, G(binary_max_age_ms), SEC, DAY,
	  "duration 1s..24h, e.g. 300s" },
	{ "binary_cleanup_interval", CT_DURATION, G(binary_cleanup_ms), 100, HOUR,
	  "duration 100ms..1h, e.g. 30s" },
	{ "hibernation_enabled", CT_BOOL, G(hibernation_enabled), 0, 1,
	  "true/false, yes/no, on/off or 1/0" },
	{ "hibernation_idle_timeout", CT_DURATION, G(hibernation_idle_ms), 100, DAY,
	  "duration 100ms..24h, e.g. 300s" },
	{ "hibernation_memory_threshold", CT_SIZE, G(hibernation_memory_threshold), 0, 64 * GIB,
	  "size 0..64G, e.g. 8M" },
	{ "client_sndbuf", CT_SIZE, G(client_sndbuf), 0, 256 * MIB,
	  "size 0..256M (0: kernel default)" },
	{ "client_rcvbuf", CT_SIZE, G(client_rcvbuf), 0, 256 * MIB,
	  "size 0..256M (0: kernel default)" },

	{ "uid", CT_IDS, A(uid), 0, 0, "comma-separated user names or numbers" },
	{ "gid", CT_IDS, A(gid), 0, 0, "comma-separated group names or numbers" },
	{ "endpoints", CT_GLOBS, A(endpoints), 0, 0, "comma-separated glob patterns" },
	{ "join", CT_GLOBS, A(join), 0, 0, "comma-separated glob patterns" },
	{ "push", CT_GLOBS, A(push), 0, 0, "comma-separated glob patterns" },
};

#undef G
#undef E
#undef A

struct conf_parser {
	struct conf *c;
	const char *file;
	unsigned line;
	long ep;                            /* current endpoint, -1: none */
	long ac;                            /* current [access] section, -1: none */
	unsigned seen[ARRAY_SIZE(conf_keys)]; /* line each key was set in this section */
	char *err;
	size_t errlen;
};

/* ---- small helpers ------------------------------------------------------ */

static int conf_is_ws(char ch)
{
	return ch == ' ' || ch == '\t';
}

static char *conf_skip_ws(char *s)
{
	while (conf_is_ws(*s))
		s++;
	return s;
}

static void conf_trim_end(char *s)
{
	size_t n = strlen(s);
	while (n > 0 && conf_is_ws(s[n - 1]))
		s[--n] = '\0';
}

static int conf_name_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-';
}

/* 1 when s is 1..max characters of A-Za-z0-9_.- */
static int conf_name_ok(const char *s, size_t max)
{
	size_t n = 0;
	for (; s[n]; n++)
		if (!conf_name_char(s[n]))
			return 0;
	return n >= 1 && n <= max;
}

/* RFC 9110 tchar */
static int conf_token_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static int conf_token_ok(const char *s, size_t max)
{
	size_t n = 0;
	for (; s[n]; n++)
		if (!conf_token_char(s[n]))
			return 0;
	return n >= 1 && n <= max;
}

/* Formats "FILE:LINE: " (or "FILE: " for line 0, nothing without a file)
 * and the message into err; returns ret. */
static int conf_verr(char *err, size_t errlen, const char *file, unsigned line,
		     int ret, const char *fmt, va_list ap) __attribute__((format(printf, 6, 0)));
static int conf_verr(char *err, size_t errlen, const char *file, unsigned line,
		     int ret, const char *fmt, va_list ap)
{
	int n = 0;

	if (!err || errlen == 0)
		return ret;
	if (file && line)
		n = snprintf(err, errlen, "%s:%u: ", file, line);
	else if (file)
		n = snprintf(err, errlen, "%s: ", file);
	else
		err[0] = '\0';
	if (n < 0)
		n = 0;
	if ((size_t)n < errlen)
		vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
	return ret;
}

static int conf_errf(char *err, size_t errlen, const char *file, unsigned line,
		     int ret, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static int conf_errf(char *err, size_t errlen, const char *file, unsigned line,
		     int ret, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	conf_verr(err, errlen, file, line, ret, fmt, ap);
	va_end(ap);
	return ret;
}

/* An error at the parser's current line; returns -EINVAL. */
static int conf_perr(struct conf_parser *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int conf_perr(struct conf_parser *p, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	conf_verr(p->err, p->errlen, p->file, p->line, -EINVAL, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int conf_enomem(struct conf_parser *p)
{
	conf_errf(p->err, p->errlen, p->file, p->line, -ENOMEM, "out of memory");
	return -ENOMEM;
}

/* "NAME: bad value 'VALUE' (HINT)", with long values cut short. */
static int conf_bad_value(struct conf_parser *p, const char *name, const char *val,
			  const char *hint)
{
	size_t n = strlen(val);
	int cut = n > CONF_ECHO_MAX;
	return conf_perr(p, "%s: bad value '%.*s%s' (%s)", name,
			 (int)(cut ? CONF_ECHO_MAX : n), val, cut ? "..." : "", hint);
}

/* ---- numbers ------------------------------------------------------------ */

/* Leading decimal digits of s into *v; returns the count, or -1 when the
 * number passes limit (which must be below ULLONG_MAX / 10). */
static int conf_digits(const char *s, unsigned long long limit, unsigned long long *v)
{
	int i = 0;
	*v = 0;
	for (; s[i] >= '0' && s[i] <= '9'; i++) {
		*v = *v * 10 + (unsigned long long)(s[i] - '0');
		if (*v > limit)
			return -1;
	}
	return i;
}

int conf_parse_duration(const char *s, unsigned *ms)
{
	static const struct { const char *unit; unsigned long long mul; } units[] = {
		{ "", SEC }, { "ms", 1 }, { "s", SEC }, { "m", 60 * SEC }, { "h", HOUR },
	};
	unsigned long long v;
	int n = conf_digits(s, DAY, &v);

	if (n <= 0)
		return -EINVAL;
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		if (strcmp(s + n, units[i].unit) != 0)
			continue;
		if (v > DAY / units[i].mul)
			return -EINVAL;
		*ms = (unsigned)(v * units[i].mul);
		return 0;
	}
	return -EINVAL;
}

int conf_parse_size(const char *s, size_t *bytes)
{
	unsigned long long v, mul = 1;
	int n = conf_digits(s, (unsigned long long)-1 / 16, &v);

	if (n <= 0)
		return -EINVAL;
	switch (s[n]) {
	case '\0': break;
	case 'k': case 'K': mul = KIB; break;
	case 'm': case 'M': mul = MIB; break;
	case 'g': case 'G': mul = GIB; break;
	default: return -EINVAL;
	}
	if (mul != 1 && s[n + 1] != '\0')
		return -EINVAL;
	if (v > (size_t)-1 / mul)
		return -EINVAL;
	*bytes = (size_t)(v * mul);
	return 0;
}

/* The port after HOST: in "HOST:PORT"; 0 or -EINVAL. */
static int conf_parse_port(const char *s, unsigned short *port)
{
	unsigned long long v;
	int n = conf_digits(s, 65535, &v);
	if (n <= 0 || s[n] != '\0' || v == 0)
		return -EINVAL;
	*port = (unsigned short)v;
	return 0;
}

int conf_parse_loopback(const char *s, struct sockaddr_storage *ss, size_t *len)
{
	struct sockaddr_storage a;
	char host[64];
	unsigned short port;
	const char *colon;

	memset(&a, 0, sizeof(a));
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':' || (size_t)(close - s - 1) >= sizeof(host))
			return -EINVAL;
		memcpy(host, s + 1, (size_t)(close - s - 1));
		host[close - s - 1] = '\0';
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || (size_t)(colon - s) >= sizeof(host) || memchr(s, ':', (size_t)(colon - s)))
			return -EINVAL;
		memcpy(host, s, (size_t)(colon - s));
		host[colon - s] = '\0';
	}
	if (conf_parse_port(colon + 1, &port) < 0)
		return -EINVAL;
	struct sockaddr_in *v4 = (struct sockaddr_in *)&a;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&a;
	if (strcmp(host, "localhost") == 0)
		snprintf(host, sizeof(host), "127.0.0.1");
	if (s[0] != '[' && inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		if ((ntohl(v4->sin_addr.s_addr) >> 24) != 127)
			return -EADDRNOTAVAIL;
		v4->sin_family = AF_INET;
		v4->sin_port = htons(port);
		*len = sizeof(*v4);
	} else if (s[0] == '[' && inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		if (!IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr))
			return -EADDRNOTAVAIL;
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons(port);
		*len = sizeof(*v6);
	} else {
		return -EINVAL;
	}
	*ss = a;
	return 0;
}

static int conf_parse_uint(const char *s, unsigned long long max, unsigned long long *v)
{
	int n = conf_digits(s, max, v);
	return n > 0 && s[n] == '\0' ? 0 : -EINVAL;
}

static int conf_parse_octal(const char *s, unsigned max, unsigned *v)
{
	unsigned x = 0;
	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '7')
			return -EINVAL;
		x = x * 8 + (unsigned)(*s - '0');
		if (x > max)
			return -EINVAL;
	}
	*v = x;
	return 0;
}

static int conf_parse_bool(const char *s, int *v)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };
	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*v = 1;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*v = 0;
			return 0;
		}
	}
	return -EINVAL;
}

/* ---- struct conf ---------------------------------------------------------- */

void conf_init(struct conf *c)
{
	memset(c, 0, sizeof(*c));
	c->socket_path = strdup(CONF_DEFAULT_SOCKET);   /* NULL: conf_check() says so */
	c->socket_mode = 0660;
	c->max_line = 1 * MIB;
	c->client_queue_max = 4 * MIB;
	c->max_clients = 10000;
	c->log_level = LOG_LVL_INFO;
	c->route_cache_size = 1000;
	c->max_topics_per_client = 1000;
	c->push_burst = 100;
	c->binary_pool_size = 1000;
	c->binary_max_age_ms = 300 * SEC;
	c->binary_cleanup_ms = 30 * SEC;
	c->hibernation_enabled = 1;
	c->hibernation_idle_ms = 300 * SEC;
	c->hibernation_memory_threshold = 8 * MIB;
	c->route_cache_ttl_ms = 300 * SEC;
	c->route_cleanup_ms = 30 * SEC;
	c->control_socket_mode = 0600;
	c->metrics_interval_ms = 1 * SEC;
	c->history_size = 300;
	c->alert_memory = 100 * MIB;
	c->alert_cache_hit_rate = 80;
	c->alert_queue_depth = 1 * MIB;
	c->alert_response_ms = 1 * SEC;
}

static void conf_kv_free(struct conf_kv *kv, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(kv[i].key);
		free(kv[i].value);
	}
	free(kv);
}

static void conf_endpoint_clear(struct conf_endpoint *e)
{
	free(e->name);
	free(e->url);
	conf_kv_free(e->params, e->nparams);
	conf_kv_free(e->headers, e->nheaders);
	free(e->ca_file);
	free(e->reconnect_backoff);
	free(e->rejoin_backoff);
	memset(e, 0, sizeof(*e));
}

void conf_free(struct conf *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nendpoints; i++)
		conf_endpoint_clear(&c->endpoints[i]);
	free(c->endpoints);
	for (size_t i = 0; i < c->naccess; i++) {
		struct conf_access *a = &c->access[i];
		free(a->name);
		free(a->uid);
		free(a->gid);
		free(a->endpoints);
		free(a->join);
		free(a->push);
		free(a->uids);
		free(a->gids);
	}
	free(c->access);
	free(c->socket_path);
	free(c->default_endpoint);
	free(c->route_cache_name);
	free(c->control_socket);
	free(c->metrics_listen);
	memset(c, 0, sizeof(*c));
}

struct conf_endpoint *conf_add_endpoint(struct conf *c, const char *name, const char *url)
{
	struct conf_endpoint e = {
		.tls_verify = 1,
		.heartbeat_ms = 30 * SEC,
		.connect_timeout_ms = 10 * SEC,
		.push_timeout_ms = 10 * SEC,
		.join_timeout_ms = 10 * SEC,
		.push_buffer = 100,
		.max_frame = 16 * MIB,
		.upstream_queue_max = 16 * MIB,
		.pool_size = 4,
		.pool_min = 1,
		.max_channels = 100,
		.pool_idle_ms = 60 * SEC,
		.tcp_nodelay = 1,
		.tcp_keepalive = 1,
		.tcp_keepidle_ms = 60 * SEC,
		.tcp_keepintvl_ms = 10 * SEC,
		.tcp_keepcnt = 5,
		.compression_level = 6,
		.client_max_window_bits = 15,
		.server_max_window_bits = 15,
	};

	e.name = strdup(name);
	e.url = url ? strdup(url) : NULL;
	e.reconnect_backoff = strdup(BACKOFF_RECONNECT_DEFAULT);
	e.rejoin_backoff = strdup(BACKOFF_REJOIN_DEFAULT);
	if (!e.name || (url && !e.url) || !e.reconnect_backoff || !e.rejoin_backoff)
		goto fail;
	struct conf_endpoint *ne = realloc(c->endpoints, (c->nendpoints + 1) * sizeof(*ne));
	if (!ne)
		goto fail;
	c->endpoints = ne;
	ne[c->nendpoints] = e;
	return &ne[c->nendpoints++];
fail:
	conf_endpoint_clear(&e);
	return NULL;
}

const struct conf_endpoint *conf_endpoint_find(const struct conf *c, const char *name)
{
	for (size_t i = 0; i < c->nendpoints; i++)
		if (strcmp(c->endpoints[i].name, name) == 0)
			return &c->endpoints[i];
	return NULL;
}

const struct conf_endpoint *conf_default_endpoint(const struct conf *c)
{
	if (c->default_endpoint)
		return conf_endpoint_find(c, c->default_endpoint);
	return c->nendpoints ? &c->endpoints[0] : NULL;
}

/* ---- checks after parsing ------------------------------------------------- */

static int conf_check_endpoint(const struct conf *c, size_t i, const char *file,
			       char *err, size_t errlen)
{
	const struct conf_endpoint *e = &c->endpoints[i];
	struct url u;
	const char *why = NULL;

	if (!conf_name_ok(e->name, CONF_NAME_MAX))
		return conf_errf(err, errlen, file, e->line, -EINVAL,
				 "bad endpoint name '%.*s' (1-64 characters of A-Za-z0-9_.-)",
				 CONF_ECHO_MAX, e->name);
	for (size_t j = 0; j < i; j++)
		if (strcmp(c->endpoints[j].name, e->name) == 0)
			return conf_errf(err, errlen, file, e->line, -EINVAL,
					 "duplicate endpoint '%s'", e->name);
	if (!e->url)
		return conf_errf(err, errlen, file, e->line, -EINVAL,
				 "endpoint '%s': missing url", e->name);
	if (url_parse(e->url, &u, &why) < 0)
		return conf_errf(err, errlen, file, e->line, -EINVAL,
				 "endpoint '%s': bad url (%s)", e->name, why);
	/* at the later of the two: the line that made them disagree */
	unsigned pl = e->pool_min_line > e->pool_size_line ? e->pool_min_line : e->pool_size_line;
	if (e->pool_min > e->pool_size)
		return conf_errf(err, errlen, file, pl ? pl : e->line, -EINVAL,
				 "endpoint '%s': pool_min (%u) is larger than pool_size (%u)",
				 e->name, e->pool_min, e->pool_size);
	return 0;
}

/* The next item of a comma-separated list at *q, blanks around it
 * trimmed: 1 with *item and *len set (len 0: an empty item), 0 at the end. */
static int conf_list_next(const char **q, const char **item, size_t *len)
{
	const char *p = *q;
	if (!*p)
		return 0;
	while (*p == ' ' || *p == '\t')
		p++;
	const char *st = p;
	while (*p && *p != ',')
		p++;
	const char *e = p;
	while (e > st && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	*item = st;
	*len = (size_t)(e - st);
	*q = *p ? p + 1 : p;
	return 1;
}

/* Resolves a list of user (group: 1) names or numbers into ids. */
static int conf_resolve_ids(const char *list, int group, unsigned **out, size_t *n,
			    char *bad, size_t badlen)
{
	unsigned *ids = NULL;
	size_t k = 0;
	const char *q = list ? list : "", *st;
	size_t len;
	*out = NULL;
	*n = 0;
	while (conf_list_next(&q, &st, &len)) {
		if (!len)
			continue;
		char item[256];
		snprintf(item, sizeof(item), "%.*s", (int)len, st);
		unsigned long long v;
		unsigned id;
		if (conf_parse_uint(item, 0xFFFFFFFEULL, &v) == 0) {
			id = (unsigned)v;
		} else if (group) {
			struct group *g = getgrnam(item);
			if (!g)
				goto unknown;
			id = (unsigned)g->gr_gid;
		} else {
			struct passwd *pw = getpwnam(item);
			if (!pw)
				goto unknown;
			id = (unsigned)pw->pw_uid;
		}
		unsigned *ni = realloc(ids, (k + 1) * sizeof(*ni));
		if (!ni) {
			free(ids);
			return -ENOMEM;
		}
		ids = ni;
		ids[k++] = id;
		continue;
unknown:
		snprintf(bad, badlen, "%s", item);
		free(ids);
		return -ENOENT;
	}
	*out = ids;
	*n = k;
	return 0;
}

static int conf_check_access(struct conf *c, const char *file, char *err, size_t errlen)
{
	for (size_t i = 0; i < c->naccess; i++) {
		struct conf_access *a = &c->access[i];
		char bad[256];
		int r;
		free(a->uids);
		free(a->gids);
		a->uids = a->gids = NULL;
		a->nuids = a->ngids = 0;
		if ((r = conf_resolve_ids(a->uid, 0, &a->uids, &a->nuids, bad, sizeof(bad))) < 0)
			return r == -ENOMEM ? conf_errf(err, errlen, file, a->line, r, "out of memory") :
			       conf_errf(err, errlen, file, a->line, -EINVAL,
					 "access '%s': uid: unknown user '%.*s'", a->name,
					 CONF_ECHO_MAX, bad);
		if ((r = conf_resolve_ids(a->gid, 1, &a->gids, &a->ngids, bad, sizeof(bad))) < 0)
			return r == -ENOMEM ? conf_errf(err, errlen, file, a->line, r, "out of memory") :
			       conf_errf(err, errlen, file, a->line, -EINVAL,
					 "access '%s': gid: unknown group '%.*s'", a->name,
					 CONF_ECHO_MAX, bad);
	}
	return 0;
}

int conf_glob_match(const char *list, const char *s, size_t len)
{
	char str[512], pat[512];
	if (!list)
		return 1;
	if (len >= sizeof(str))
		return 0;
	memcpy(str, s, len);
	str[len] = '\0';
	const char *q = list, *st;
	size_t plen;
	while (conf_list_next(&q, &st, &plen)) {
		if (!plen || plen >= sizeof(pat))
			continue;
		memcpy(pat, st, plen);
		pat[plen] = '\0';
		if (fnmatch(pat, str, 0) == 0)
			return 1;
	}
	return 0;
}

static int conf_check_file(struct conf *c, const char *file, char *err, size_t errlen)
{
	int r;

	if (!c->socket_path)
		return conf_errf(err, errlen, file, 0, -ENOMEM, "out of memory");
	if (c->nendpoints == 0)
		return conf_errf(err, errlen, file, 0, -EINVAL, "no [endpoint] section");
	for (size_t i = 0; i < c->nendpoints; i++)
		if ((r = conf_check_endpoint(c, i, file, err, errlen)) < 0)
			return r;
	if (c->default_endpoint && !conf_endpoint_find(c, c->default_endpoint))
		return conf_errf(err, errlen, file, c->default_endpoint_line, -EINVAL,
				 "default_endpoint: unknown endpoint '%.*s'",
				 CONF_ECHO_MAX, c->default_endpoint);
	if (c->push_rate && c->push_burst < 1)
		c->push_burst = 1;
	return conf_check_access(c, file, err, errlen);
}

int conf_check(struct conf *c, char *err, size_t errlen)
{
	return conf_check_file(c, NULL, err, errlen);
}

static int conf_str_eq(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

static int conf_kv_eq(const struct conf_kv *a, size_t na, const struct conf_kv *b, size_t nb)
{
	if (na != nb)
		return 0;
	for (size_t i = 0; i < na; i++)
		if (!conf_str_eq(a[i].key, b[i].key) || !conf_str_eq(a[i].value, b[i].value))
			return 0;
	return 1;
}

/* Walks the key table, so every endpoint option counts, new ones too. */
int conf_endpoint_equal(const struct conf_endpoint *a, const struct conf_endpoint *b)
{
	if (!conf_str_eq(a->name, b->name))
		return 0;
	for (size_t i = 0; i < ARRAY_SIZE(conf_keys); i++) {
		const struct conf_key *k = &conf_keys[i];
		const char *fa = (const char *)a + k->off, *fb = (const char *)b + k->off;
		int eq;
		if (k->sect != CS_ENDPOINT)
			continue;
		switch (k->type) {
		case CT_PARAM:
			eq = conf_kv_eq(a->params, a->nparams, b->params, b->nparams);
			break;
		case CT_HEADER:
			eq = conf_kv_eq(a->headers, a->nheaders, b->headers, b->nheaders);
			break;
		case CT_SOCKET: case CT_SHM: case CT_STR: case CT_NAME: case CT_URL: case CT_BACKOFF:
			eq = conf_str_eq(*(char *const *)(const void *)fa, *(char *const *)(const void *)fb);
			break;
		case CT_MODE: case CT_UINT: case CT_DURATION:
			eq = *(const unsigned *)(const void *)fa == *(const unsigned *)(const void *)fb;
			break;
		case CT_SIZE:
			eq = *(const size_t *)(const void *)fa == *(const size_t *)(const void *)fb;
			break;
		case CT_BOOL: case CT_LOGLEVEL:
			eq = *(const int *)(const void *)fa == *(const int *)(const void *)fb;
			break;
		default:
			eq = 0;
		}
		if (!eq)
			return 0;
	}
	return 1;
}

/* ---- one option ------------------------------------------------------------ */

static const struct conf_key *conf_key_find(const char *name, size_t *idx)
{
	for (size_t i = 0; i < ARRAY_SIZE(conf_keys); i++) {
		const struct conf_key *k = &conf_keys[i];
		int prefix = k->type == CT_PARAM || k->type == CT_HEADER;
		if (prefix ? strncmp(name, k->name, strlen(k->name)) == 0
			   : strcmp(name, k->name) == 0) {
			*idx = i;
			return k;
		}
	}
	return NULL;
}

static struct conf_endpoint *conf_cur(struct conf_parser *p)
{
	return &p->c->endpoints[p->ep];
}

/* Replaces the string at *dst with a copy of val. */
static int conf_set_str(struct conf_parser *p, char **dst, const char *val)
{
	char *s = strdup(val);
	if (!s)
		return conf_enomem(p);
	free(*dst);
	*dst = s;
	return 0;
}

static int conf_kv_add(struct conf_parser *p, struct conf_kv **kv, size_t *n,
		       const char *key, const char *val)
{
	struct conf_kv *nkv = realloc(*kv, (*n + 1) * sizeof(**kv));
	if (!nkv)
		return conf_enomem(p);
	*kv = nkv;
	nkv[*n].key = strdup(key);
	nkv[*n].value = strdup(val);
	if (!nkv[*n].key || !nkv[*n].value) {
		free(nkv[*n].key);
		free(nkv[*n].value);
		return conf_enomem(p);
	}
	nkv[*n].line = p->line;
	(*n)++;
	return 0;
}

static int conf_set_param(struct conf_parser *p, const char *name, const char *val)
{
	struct conf_endpoint *e = conf_cur(p);
	const char *key = name + strlen("param.");

	if (!conf_name_ok(key, CONF_NAME_MAX))
		return conf_perr(p, "%s: bad parameter name (1-64 characters of A-Za-z0-9_.-)",
				 name);
	for (size_t i = 0; i < e->nparams; i++)
		if (strcmp(e->params[i].key, key) == 0)
			return conf_perr(p, "duplicate option '%s' (first at line %u)", name,
					 e->params[i].line);
	return conf_kv_add(p, &e->params, &e->nparams, key, val);
}

/* Headers phxd writes itself: Host, Upgrade, Connection, Sec-WebSocket-*. */
static int conf_header_reserved(const char *h)
{
	return strcasecmp(h, "Host") == 0 || strcasecmp(h, "Upgrade") == 0 ||
	       strcasecmp(h, "Connection") == 0 ||
	       strncasecmp(h, "Sec-WebSocket-", strlen("Sec-WebSocket-")) == 0;
}

static int conf_set_header(struct conf_parser *p, const char *name, const char *val)
{
	struct conf_endpoint *e = conf_cur(p);
	const char *h = name + strlen("header.");

	if (!conf_token_ok(h, CONF_HEADER_NAME_MAX))
		return conf_perr(p, "%s: bad header name (1-256 HTTP token characters)", name);
	if (conf_header_reserved(h))
		return conf_perr(p, "%s: phxd sets this header itself", name);
	if (strpbrk(val, "\r\n"))
		return conf_perr(p, "%s: value must not contain CR or LF", name);
	for (size_t i = 0; i < e->nheaders; i++)
		if (strcasecmp(e->headers[i].key, h) == 0)
			return conf_perr(p, "duplicate option '%s' (first at line %u)", name,
					 e->headers[i].line);
	return conf_kv_add(p, &e->headers, &e->nheaders, h, val);
}

static int conf_set_url(struct conf_parser *p, const struct conf_key *k, char **dst,
			const char *val)
{
	struct url u;
	const char *why = NULL;

	if (url_parse(val, &u, &why) < 0) {
		/* query values may be secrets: never echo them */
		char shown[CONF_ECHO_MAX * 2];
		log_redact_url(val, shown, sizeof(shown));
		return conf_bad_value(p, k->name, shown, why);
	}
	return conf_set_str(p, dst, val);
}

/* A non-empty list: items separated by commas, none empty. */
static int conf_list_ok(const char *v)
{
	const char *q = v, *item;
	size_t len;
	int n = 0;
	while (conf_list_next(&q, &item, &len)) {
		if (!len)
			return 0;
		n++;
	}
	/* "a," ends in an empty item too */
	return n > 0 && v[strlen(v) - 1] != ',';
}

/* Parses val by the key's type into the field at base + k->off. */
static int conf_set(struct conf_parser *p, const struct conf_key *k, const char *name,
		    const char *val, char *base)
{
	void *f = base + k->off;
	unsigned long long v;
	unsigned u;
	size_t sz;
	int b;
	struct backoff bo;
	struct sockaddr_storage ss;
	size_t sslen;

	switch (k->type) {
	case CT_PARAM:
		return conf_set_param(p, name, val);
	case CT_HEADER:
		return conf_set_header(p, name, val);
	case CT_URL:
		return conf_set_url(p, k, f, val);
	case CT_SOCKET:
		if (strlen(val) > k->max)
			return conf_bad_value(p, k->name, val, k->hint);
		return conf_set_str(p, f, val);
	case CT_STR:
		return conf_set_str(p, f, val);
	case CT_IDS:
	case CT_GLOBS:
		for (const char *q = val; *q; q++)
			if ((unsigned char)*q < 0x20)
				return conf_bad_value(p, k->name, val, k->hint);
		if (!conf_list_ok(val))
			return conf_bad_value(p, k->name, val, k->hint);
		return conf_set_str(p, f, val);
	case CT_SHM:
		if (val[0] != '/' || strlen(val) < k->min || strlen(val) > k->max ||
		    !conf_name_ok(val + 1, k->max))
			return conf_bad_value(p, k->name, val, k->hint);
		return conf_set_str(p, f, val);
	case CT_LOOPBACK:
		if (conf_parse_loopback(val, &ss, &sslen) == -EADDRNOTAVAIL)
			return conf_perr(p, "%s: '%.*s' is not a loopback address (%s)", k->name,
					 CONF_ECHO_MAX, val, k->hint);
		if (conf_parse_loopback(val, &ss, &sslen) < 0)
			return conf_bad_value(p, k->name, val, k->hint);
		return conf_set_str(p, f, val);
	case CT_NAME:
		if (!conf_name_ok(val, k->max))
			return conf_bad_value(p, k->name, val, k->hint);
		p->c->default_endpoint_line = p->line;
		return conf_set_str(p, f, val);
	case CT_BACKOFF:
		if (backoff_parse(&bo, val, 0) < 0)
			return conf_bad_value(p, k->name, val, k->hint);
		return conf_set_str(p, f, val);
	case CT_MODE:
		if (conf_parse_octal(val, (unsigned)k->max, &u) < 0)
			return conf_bad_value(p, k->name, val, k->hint);
		*(unsigned *)f = u;
		return 0;
	case CT_UINT:
		if (conf_parse_uint(val, k->max, &v) < 0 || v < k->min)
			return conf_bad_value(p, k->name, val, k->hint);
		*(unsigned *)f = (unsigned)v;
		return 0;
	case CT_DURATION:
		if (conf_parse_duration(val, &u) < 0 || u < k->min || u > k->max)
			return conf_bad_value(p, k->name, val, k->hint);
		*(unsigned *)f = u;
		return 0;
	case CT_SIZE:
		if (conf_parse_size(val, &sz) < 0 || sz < k->min || sz > k->max)
			return conf_bad_value(p, k->name, val, k->hint);
		*(size_t *)f = sz;
		return 0;
	case CT_BOOL:
		if (conf_parse_bool(val, &b) < 0)
			return conf_bad_value(p, k->name, val, k->hint);
		*(int *)f = b;
		return 0;
	case CT_LOGLEVEL:
		if ((b = log_level_parse(val)) < 0)
			return conf_bad_value(p, k->name, val, k->hint);
		*(int *)f = b;
		return 0;
	}
	return conf_perr(p, "%s: internal error: unknown option type", name);
}

/* Looks name up, checks its section and that it is set once, then sets it. */
static int conf_option(struct conf_parser *p, const char *name, const char *val)
{
	size_t idx;
	const struct conf_key *k = conf_key_find(name, &idx);

	if (!k) {
		if (p->ac >= 0)
			return conf_perr(p, "unknown option '%s' in [access %s]", name,
					 p->c->access[p->ac].name);
		if (p->ep < 0)
			return conf_perr(p, "unknown option '%s'", name);
		return conf_perr(p, "unknown option '%s' in [endpoint %s]", name,
				 conf_cur(p)->name);
	}
	if (p->ac >= 0 && k->sect != CS_ACCESS)
		return conf_perr(p, "option '%s' in [access %s] (an access section takes uid, "
				 "gid, endpoints, join and push)", name, p->c->access[p->ac].name);
	if (k->sect == CS_ACCESS && p->ac < 0)
		return conf_perr(p, "option '%s' outside an [access] section", name);
	if (k->sect == CS_ENDPOINT && p->ep < 0)
		return conf_perr(p, "option '%s' outside an [endpoint] section", name);
	if (k->sect == CS_GLOBAL && p->ep >= 0)
		return conf_perr(p, "global option '%s' in [endpoint %s] (global options "
				 "go before the first [endpoint] section)", name,
				 conf_cur(p)->name);
	if (k->type != CT_PARAM && k->type != CT_HEADER) {
		if (p->seen[idx])
			return conf_perr(p, "duplicate option '%s' (first at line %u)", name,
					 p->seen[idx]);
		p->seen[idx] = p->line;
	}
	/* for the check of the two against each other after parsing */
	if (k->sect == CS_ENDPOINT && k->off == offsetof(struct conf_endpoint, pool_size))
		conf_cur(p)->pool_size_line = p->line;
	if (k->sect == CS_ENDPOINT && k->off == offsetof(struct conf_endpoint, pool_min))
		conf_cur(p)->pool_min_line = p->line;
	if (!*val && k->type != CT_PARAM && k->type != CT_HEADER)
		return conf_perr(p, "%s: missing value", name);
	char *base = p->ac >= 0 ? (char *)&p->c->access[p->ac] :
		     p->ep >= 0 ? (char *)conf_cur(p) : (char *)p->c;
	return conf_set(p, k, name, val, base);
}

/* ---- one line --------------------------------------------------------------- */

/* The value after '=' (v[-1] exists): unquotes it in place, drops a trailing
 * comment and blanks.  Sets *out to the value; 0 or -EINVAL. */
static int conf_value(struct conf_parser *p, char *v, char **out)
{
	v = conf_skip_ws(v);
	if (*v != '"') {
		for (char *q = v; *q; q++) {
			if (*q == '#' && conf_is_ws(q[-1])) {
				*q = '\0';
				break;
			}
		}
		conf_trim_end(v);
		*out = v;
		return 0;
	}
	char *r = v + 1, *w = v;
	for (;;) {
		if (*r == '\0')
			return conf_perr(p, "syntax error: unterminated quoted value");
		if (*r == '"')
			break;
		if (*r == '\\') {
			if (r[1] != '"' && r[1] != '\\')
				return conf_perr(p, "syntax error: bad escape in quoted value "
						 "(only \\\" and \\\\)");
			r++;
		}
		*w++ = *r++;
	}
	*w = '\0';
	r = conf_skip_ws(r + 1);
	if (*r && *r != '#')
		return conf_perr(p, "syntax error: text after the closing quote");
	*out = v;
	return 0;
}

/* A key: printable ASCII without blanks, '=' or quotes. */
static int conf_key_ok(const char *k)
{
	if (!*k)
		return 0;
	for (; *k; k++)
		if ((unsigned char)*k <= ' ' || (unsigned char)*k >= 0x7F || *k == '"')
			return 0;
	return 1;
}

static int conf_assign(struct conf_parser *p, char *s)
{
	char *eq = strchr(s, '=');
	char *val = NULL;
	int r;

	if (!eq)
		return conf_perr(p, "syntax error: expected 'key = value'");
	*eq = '\0';
	conf_trim_end(s);
	if (!conf_key_ok(s))
		return conf_perr(p, "syntax error: expected 'key = value'");
	if ((r = conf_value(p, eq + 1, &val)) < 0)
		return r;
	return conf_option(p, s, val);
}

static int conf_access_section(struct conf_parser *p, char *name)
{
	if (!conf_name_ok(name, CONF_NAME_MAX))
		return conf_perr(p, "bad access section name '%.*s' (1-64 characters of "
				 "A-Za-z0-9_.-)", CONF_ECHO_MAX, name);
	for (size_t i = 0; i < p->c->naccess; i++)
		if (strcmp(p->c->access[i].name, name) == 0)
			return conf_perr(p, "duplicate access section '%s' (first at line %u)",
					 name, p->c->access[i].line);
	struct conf_access *na = realloc(p->c->access, (p->c->naccess + 1) * sizeof(*na));
	if (!na)
		return conf_enomem(p);
	p->c->access = na;
	memset(&na[p->c->naccess], 0, sizeof(*na));
	na[p->c->naccess].name = strdup(name);
	if (!na[p->c->naccess].name)
		return conf_enomem(p);
	na[p->c->naccess].line = p->line;
	p->ac = (long)p->c->naccess++;
	p->ep = -1;
	memset(p->seen, 0, sizeof(p->seen));
	return 0;
}

static int conf_section(struct conf_parser *p, char *s)
{
	char *close = strchr(s, ']');
	if (!close)
		return conf_perr(p, "syntax error: expected '[endpoint NAME]' or '[access NAME]'");
	char *rest = conf_skip_ws(close + 1);
	if (*rest && *rest != '#')
		return conf_perr(p, "syntax error: text after ']'");
	*close = '\0';
	char *in = conf_skip_ws(s + 1);
	conf_trim_end(in);
	if (strncmp(in, "access", 6) == 0 && conf_is_ws(in[6]))
		return conf_access_section(p, conf_skip_ws(in + 6));
	if (strncmp(in, "endpoint", 8) != 0 || !conf_is_ws(in[8]))
		return conf_perr(p, "syntax error: expected '[endpoint NAME]' or '[access NAME]'");
	char *name = conf_skip_ws(in + 8);
	if (!conf_name_ok(name, CONF_NAME_MAX))
		return conf_perr(p, "bad endpoint name '%.*s' (1-64 characters of A-Za-z0-9_.-)",
				 CONF_ECHO_MAX, name);
	const struct conf_endpoint *old = conf_endpoint_find(p->c, name);
	if (old)
		return conf_perr(p, "duplicate endpoint '%s' (first at line %u)", name,
				 old->line);
	struct conf_endpoint *e = conf_add_endpoint(p->c, name, NULL);
	if (!e)
		return conf_enomem(p);
	e->line = p->line;
	p->ep = (long)(p->c->nendpoints - 1);
	p->ac = -1;
	memset(p->seen, 0, sizeof(p->seen));
	return 0;
}

/* s: one line, NUL-terminated, without its end of line. */
static int conf_line(struct conf_parser *p, char *s)
{
	s = conf_skip_ws(s);
	if (*s == '\0' || *s == '#' || *s == ';')
		return 0;
	if (*s == '[')
		return conf_section(p, s);
	return conf_assign(p, s);
}

/* Checks the raw bytes of a line; 0 or -EINVAL. */
static int conf_line_bytes(struct conf_parser *p, const char *s, size_t n)
{
	if (n > CONF_LINE_MAX)
		return conf_perr(p, "line too long (more than %d bytes)", CONF_LINE_MAX);
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == 0)
			return conf_perr(p, "NUL byte in line");
		if ((ch < 0x20 && ch != '\t') || ch == 0x7F)
			return conf_perr(p, "control character 0x%02x in line", ch);
	}
	if (!utf8_valid(s, n))
		return conf_perr(p, "invalid UTF-8");
	return 0;
}

int conf_parse_text(struct conf *c, const char *text, size_t len, const char *file,
		    char *err, size_t errlen)
{
	struct conf_parser p = { .c = c, .file = file ? file : "config", .ep = -1, .ac = -1,
				 .err = err, .errlen = errlen };
	size_t pos = 0;
	int r = 0;

	if (err && errlen)
		err[0] = '\0';
	char *scratch = malloc(CONF_LINE_MAX + 1);
	if (!scratch)
		return conf_errf(err, errlen, p.file, 0, -ENOMEM, "out of memory");
	if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
		pos = 3;
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - text) : len;
		size_t n = end - pos;
		p.line++;
		if (n > 0 && text[pos + n - 1] == '\r')
			n--;
		if ((r = conf_line_bytes(&p, text + pos, n)) < 0)
			goto out;
		memcpy(scratch, text + pos, n);
		scratch[n] = '\0';
		if ((r = conf_line(&p, scratch)) < 0)
			goto out;
		pos = nl ? end + 1 : len;
	}
	r = conf_check_file(c, p.file, err, errlen);
out:
	free(scratch);
	return r;
}

int conf_parse_string(struct conf *c, const char *text, const char *file,
		      char *err, size_t errlen)
{
	return conf_parse_text(c, text, strlen(text), file, err, errlen);
}

/* Reads at most CONF_FILE_MAX bytes of fd into a new buffer. */
static int conf_read_fd(int fd, char **out, size_t *outlen)
{
	size_t cap = CONF_FILE_MAX + 1, n = 0;
	char *data = malloc(cap);

	if (!data)
		return -ENOMEM;
	for (;;) {
		ssize_t r = read(fd, data + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			free(data);
			return -e;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n == cap) {
			free(data);
			return -EFBIG;
		}
	}
	*out = data;
	*outlen = n;
	return 0;
}

int conf_load_file(struct conf *c, const char *path, char *err, size_t errlen)
{
	char *data = NULL;
	size_t len = 0;
	struct stat st;
	int r;

	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		r = errno;
		return conf_errf(err, errlen, path, 0, -r, "%s", strerror(r));
	}
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		close(fd);
		return conf_errf(err, errlen, path, 0, -EISDIR, "%s", strerror(EISDIR));
	}
	r = conf_read_fd(fd, &data, &len);
	close(fd);
	if (r == -EFBIG)
		return conf_errf(err, errlen, path, 0, r, "file too large (more than %d bytes)",
				 CONF_FILE_MAX);
	if (r < 0)
		return conf_errf(err, errlen, path, 0, r, "%s", strerror(-r));
	r = conf_parse_text(c, data, len, path, err, errlen);
	free(data);
	return r;
}
