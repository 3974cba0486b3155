/* url — parse ws:// and wss:// URLs of Phoenix endpoints.
 *
 * Accepted: SCHEME "://" HOST [":" PORT] [PATH-AND-QUERY]
 *   SCHEME  ws or wss, any case
 *   HOST    a name (A-Z a-z 0-9 - . _), a dotted IPv4 address, or an IPv6
 *           literal in brackets (stored without them, no zone id)
 *   PORT    1..65535, default 80 (ws) or 443 (wss)
 *   PATH    starts with '/' or '?'; "/" when absent, "/?q" when only a query
 * Refused: user info, fragments, spaces, control and non-ASCII bytes,
 * percent-encoded hosts, and parts that do not fit struct url.
 */
#include "url.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int url_fail(const char **why, const char *reason)
{
	if (why)
		*why = reason;
	return -EINVAL;
}

/* Every byte printable ASCII; no '#'.  NULL or a reason. */
static const char *url_check_chars(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p <= 0x20 || *p == 0x7F)
			return "spaces and control characters are not allowed";
		if (*p >= 0x80)
			return "non-ASCII characters must be percent-encoded";
		if (*p == '#')
			return "fragments ('#') are not allowed";
	}
	return NULL;
}

/* Length of the scheme prefix ("ws://" or "wss://") and sets *tls; 0 if
 * neither. */
static size_t url_scheme(const char *s, int *tls)
{
	if (strncasecmp(s, "ws://", 5) == 0) {
		*tls = 0;
		return 5;
	}
	if (strncasecmp(s, "wss://", 6) == 0) {
		*tls = 1;
		return 6;
	}
	return 0;
}

static int url_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
}

static int url_all_digits_dots(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || s[i] == '.'))
			return 0;
	return 1;
}

/* Host part of the authority a[0..n); returns bytes used (up to the ':' of
 * a port or the end), or a negative errno with *why set. */
static long url_host(const char *a, size_t n, struct url *u, const char **why)
{
	size_t i;

	if (n > 0 && a[0] == '[') {
		const char *close = memchr(a, ']', n);
		if (!close)
			return url_fail(why, "unterminated IPv6 literal ('[' without ']')");
		size_t hl = (size_t)(close - a) - 1;
		if (hl == 0)
			return url_fail(why, "empty host");
		if (hl >= INET6_ADDRSTRLEN)
			return url_fail(why, "bad IPv6 literal");
		char tmp[INET6_ADDRSTRLEN];
		struct in6_addr a6;
		memcpy(tmp, a + 1, hl);
		tmp[hl] = '\0';
		if (inet_pton(AF_INET6, tmp, &a6) != 1)
			return url_fail(why, "bad IPv6 literal");
		memcpy(u->host, tmp, hl + 1);
		i = hl + 2;
		if (i < n && a[i] != ':')
			return url_fail(why, "unexpected character after IPv6 literal");
		return (long)i;
	}
	for (i = 0; i < n && a[i] != ':'; i++)
		if (!url_name_char(a[i]))
			return url_fail(why, "bad character in host");
	if (i == 0)
		return url_fail(why, "empty host");
	if (i >= sizeof(u->host))
		return url_fail(why, "host too long");
	memcpy(u->host, a, i);
	u->host[i] = '\0';
	if (url_all_digits_dots(u->host, i)) {
		struct in_addr a4;
		if (inet_pton(AF_INET, u->host, &a4) != 1)
			return url_fail(why, "bad IPv4 address");
	}
	return (long)i;
}

/* Port digits p[0..n) → u->port; 0 or -EINVAL. */
static int url_port(const char *p, size_t n, struct url *u, const char **why)
{
	unsigned long v = 0;

	if (n == 0 || n > 5)
		return url_fail(why, "bad port (1..65535)");
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return url_fail(why, "bad port (1..65535)");
		v = v * 10 + (unsigned long)(p[i] - '0');
	}
	if (v < 1 || v > 65535)
		return url_fail(why, "bad port (1..65535)");
	snprintf(u->port, sizeof(u->port), "%lu", v);
	return 0;
}

static int url_path(const char *p, struct url *u, const char **why)
{
	size_t n = strlen(p);

	if (n == 0) {
		strcpy(u->path, "/");
		return 0;
	}
	/* a bare query gets the root path in front */
	size_t lead = p[0] == '?' ? 1 : 0;
	if (n + lead >= sizeof(u->path))
		return url_fail(why, "path too long");
	if (lead)
		u->path[0] = '/';
	memcpy(u->path + lead, p, n + 1);
	return 0;
}

int url_parse(const char *s, struct url *out, const char **why)
{
	struct url u;
	const char *reason;

	memset(&u, 0, sizeof(u));
	if (!s || !*s)
		return url_fail(why, "empty url");
	if ((reason = url_check_chars(s)))
		return url_fail(why, reason);
	size_t sl = url_scheme(s, &u.tls);
	if (!sl)
		return url_fail(why, "scheme must be ws:// or wss://");
	const char *a = s + sl;
	size_t an = strcspn(a, "/?");
	if (memchr(a, '@', an))
		return url_fail(why, "user info ('user@') is not allowed");
	long hl = url_host(a, an, &u, why);
	if (hl < 0)
		return (int)hl;
	if ((size_t)hl < an) {
		/* a[hl] == ':' */
		if (url_port(a + hl + 1, an - (size_t)hl - 1, &u, why) < 0)
			return -EINVAL;
	} else {
		strcpy(u.port, u.tls ? "443" : "80");
	}
	if (url_path(a + an, &u, why) < 0)
		return -EINVAL;
	*out = u;
	return 0;
}
