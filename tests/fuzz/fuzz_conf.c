/* fuzz_conf — the configuration parser (conf/conf).
 *
 * Input: the text of a config file, any bytes.  Promises checked:
 *  - conf_parse_text() returns 0, -EINVAL or -ENOMEM; an error comes with
 *    a "FILE:LINE: message" (or "FILE: message") reason of one line, and
 *    what was parsed so far frees cleanly (conf_free);
 *  - conf_parse_string() on the same text, when it holds no NUL, gives
 *    the same result and the same reason;
 *  - a config that parses passes conf_check(), has a default endpoint,
 *    finds every endpoint by name, and each endpoint equals itself;
 *    every value is within the range the key table gives; the globs of
 *    [access] sections match or not (conf_glob_match).
 */
#include <errno.h>
#include <string.h>

#include "conf/conf.h"

#include "fuzz.h"

static void check_err(const char *err, size_t cap)
{
	size_t n = strnlen(err, cap);
	FUZZ_CHECK(n > 0 && n < cap);
	FUZZ_CHECK(strncmp(err, "fuzz", 4) == 0 && err[4] == ':');
	for (size_t k = 0; k < n; k++)
		FUZZ_CHECK(err[k] != '\n' && err[k] != '\r');
}

static void check_endpoint(const struct conf *c, const struct conf_endpoint *e)
{
	FUZZ_CHECK(e->name && e->name[0] && strlen(e->name) <= CONF_NAME_MAX);
	FUZZ_CHECK(e->url && e->url[0]);
	FUZZ_CHECK(conf_endpoint_find(c, e->name) == e);
	FUZZ_CHECK(conf_endpoint_equal(e, e));
	FUZZ_CHECK(e->pool_size >= 1 && e->pool_size <= CONF_POOL_MAX);
	FUZZ_CHECK(e->pool_min <= e->pool_size);
	FUZZ_CHECK(e->heartbeat_ms >= 100 && e->max_frame >= 1024);
	FUZZ_CHECK(e->compression_level <= 9);
	FUZZ_CHECK(e->client_max_window_bits >= 9 && e->client_max_window_bits <= 15);
	FUZZ_CHECK(e->server_max_window_bits >= 9 && e->server_max_window_bits <= 15);
	FUZZ_CHECK(e->tls_verify == 0 || e->tls_verify == 1);
	for (size_t i = 0; i < e->nparams; i++)
		FUZZ_CHECK(e->params[i].key && e->params[i].value);
	for (size_t i = 0; i < e->nheaders; i++)
		FUZZ_CHECK(e->headers[i].key && e->headers[i].value);
}

static void check_glob(const char *list, const char *s)
{
	int r = conf_glob_match(list, s, strlen(s));
	FUZZ_CHECK(r == 0 || r == 1);
	FUZZ_CHECK(list || r == 1);
}

/* An [access] section: its globs match or not, never fail. */
static void check_access(const struct conf *c, const struct conf_access *a)
{
	const char *lists[3] = { a->endpoints, a->join, a->push };

	FUZZ_CHECK(a->name && a->name[0]);
	FUZZ_CHECK(a->nuids == 0 || a->uids != NULL);
	FUZZ_CHECK(a->ngids == 0 || a->gids != NULL);
	for (size_t i = 0; i < 3; i++) {
		check_glob(lists[i], "room:lobby");
		check_glob(lists[i], a->name);
		for (size_t k = 0; k < c->nendpoints; k++)
			check_glob(lists[i], c->endpoints[k].name);
	}
}

static void check_conf(struct conf *c)
{
	char err[512];

	FUZZ_CHECK(c->nendpoints > 0 && c->endpoints != NULL);
	FUZZ_CHECK(conf_check(c, err, sizeof(err)) == 0);
	FUZZ_CHECK(conf_default_endpoint(c) != NULL);
	FUZZ_CHECK(c->socket_path && c->socket_path[0] && strlen(c->socket_path) <= 107);
	FUZZ_CHECK(c->socket_mode <= 0777 && c->control_socket_mode <= 0777);
	FUZZ_CHECK(c->max_line >= 1024 && c->client_queue_max >= 4096);
	FUZZ_CHECK(c->max_clients >= 1 && c->history_size >= 1);
	for (size_t i = 0; i < c->nendpoints; i++)
		check_endpoint(c, &c->endpoints[i]);
	FUZZ_CHECK(c->naccess == 0 || c->access != NULL);
	for (size_t i = 0; i < c->naccess; i++)
		check_access(c, &c->access[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512], err2[512];
	struct conf c, c2;

	if (size > CONF_FILE_MAX)
		return 0;
	conf_init(&c);
	int r = conf_parse_text(&c, (const char *)data, size, "fuzz", err, sizeof(err));
	FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ENOMEM);
	if (r == 0)
		check_conf(&c);
	else
		check_err(err, sizeof(err));
	conf_free(&c);

	if (!memchr(data, '\0', size)) {
		char *text = malloc(size + 1);
		FUZZ_CHECK(text != NULL);
		memcpy(text, data, size);
		text[size] = '\0';
		conf_init(&c2);
		int r2 = conf_parse_string(&c2, text, "fuzz", err2, sizeof(err2));
		FUZZ_CHECK(r2 == r);
		FUZZ_CHECK(r == 0 || strcmp(err, err2) == 0);
		conf_free(&c2);
		free(text);
	}
	return 0;
}
