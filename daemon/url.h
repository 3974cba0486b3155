/* url — ws:// and wss:// URLs of Phoenix endpoints. */
#ifndef PHX_URL_H
#define PHX_URL_H

struct url {
	int tls;          /* wss */
	char host[256];   /* without brackets for IPv6 literals */
	char port[8];
	char path[1024];  /* path and query as given, at least "/" */
};

/* 0 or -EINVAL with a reason in *why (static string). */
int url_parse(const char *s, struct url *u, const char **why);

#endif
