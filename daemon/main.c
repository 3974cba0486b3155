/* phxd — bridges local programs to Phoenix channels.
 *
 * main(): options, log, config, sockets, signals, loop — in that order.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>
#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "conf/conf.h"
#include "ipc/ipc_server.h"
#include "log.h"
#include "bpool.h"
#include "intern.h"
#include "daemon/ctl.h"
#include "daemon/mem.h"
#include "daemon/notify.h"
#include "daemon/router.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

/* What the command line says; applied on every (re)load. */
struct phxd_opts {
	const char *conf_path;   /* NULL: no file (-u without -c) */
	const char *sock, *url, *lvl;
};

struct phxd {
	struct phxd_opts opts;
	struct ev_loop *loop;
	struct conf conf;
	struct router router;
	struct ipc_server ipc;
	ev_signal sigterm, sigint, sighup;
	struct notify notify;
	int control_fd;          /* "control" socket from the service manager, until ctl has it */
	struct ctl ctl;          /* the control socket, metrics and alerts */
	struct mem mem;          /* binary pool cleanup, hibernation */
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: phxd [OPTIONS]\n"
		"Bridge local programs to Phoenix channels over a Unix socket.\n\n"
		"  -c, --config FILE     configuration file (default %s/phxd/phxd.conf)\n"
		"  -s, --socket PATH     client socket path (overrides the config)\n"
		"  -u, --url URL         endpoint URL, e.g. ws://127.0.0.1:4000/socket;\n"
		"                        without -c no config file is read\n"
		"  -l, --log-level LVL   error, warning, notice, info or debug\n"
		"  -t, --check-config    validate the configuration and exit (0 valid, 1 not)\n"
		"  -V, --version         print the version and exit\n"
		"  -h, --help            this help\n\n"
		"Protocol: docs/PROTOCOL.md, or man phxd.  Try: socat - UNIX-CONNECT:SOCKET\n",
		SYSCONFDIR);
}

/* Client socket settings that follow the configuration. */
static void phxd_ipc_settings(struct phxd *d)
{
	struct ipc_server *s = &d->ipc;
	s->max_line = d->conf.max_line;
	s->queue_max = d->conf.client_queue_max;
	s->max_clients = d->conf.max_clients;
	s->sndbuf = d->conf.client_sndbuf;
	s->rcvbuf = d->conf.client_rcvbuf;
	/* supplementary groups matter only to [access] rules naming groups */
	s->want_groups = 0;
	for (size_t i = 0; i < d->conf.naccess; i++)
		if (d->conf.access[i].ngids)
			s->want_groups = 1;
}

static void on_stop(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)revents;
	log_notice("signal %d: shutting down", w->signum);
	ev_break(loop, EVBREAK_ALL);
}

/* Reads the configuration file and applies the command line over it;
 * c comes from conf_init().  0, or -1 with the reason in err. */
static int phxd_load_conf(const struct phxd_opts *o, struct conf *c, char *err, size_t errlen)
{
	if (o->conf_path && conf_load_file(c, o->conf_path, err, errlen) < 0)
		return -1;
	if (o->url) {
		/* -u replaces the default endpoint's url, or makes one */
		struct conf_endpoint *e = (struct conf_endpoint *)conf_default_endpoint(c);
		if (e) {
			free(e->url);
			e->url = strdup(o->url);
		} else if (!conf_add_endpoint(c, "default", o->url)) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}
	if (o->sock) {
		free(c->socket_path);
		c->socket_path = strdup(o->sock);
	}
	if (o->lvl) {
		int l = log_level_parse(o->lvl);
		if (l < 0) {
			snprintf(err, errlen, "unknown log level '%s'", o->lvl);
			return -1;
		}
		c->log_level = l;
	}
	return conf_check(c, err, errlen) < 0 ? -1 : 0;
}

static int str_differs(const char *a, const char *b)
{
	return !(a == b || (a && b && strcmp(a, b) == 0));
}

/* Options a running daemon cannot change: the old values stay, with a
 * warning, until a restart. */
static void phxd_keep_fixed(const struct conf *old, struct conf *nc)
{
	if (str_differs(old->socket_path, nc->socket_path) || old->socket_mode != nc->socket_mode)
		log_warn("reload: socket and socket_mode take effect at the next restart");
	if (old->route_cache_size != nc->route_cache_size ||
	    old->route_cache_ttl_ms != nc->route_cache_ttl_ms ||
	    old->route_cleanup_ms != nc->route_cleanup_ms ||
	    str_differs(old->route_cache_name, nc->route_cache_name))
		log_warn("reload: route cache options take effect at the next restart");
	char *tmp = nc->socket_path;
	nc->socket_path = old->socket_path ? strdup(old->socket_path) : NULL;
	free(tmp);
	nc->socket_mode = old->socket_mode;
	nc->route_cache_size = old->route_cache_size;
	nc->route_cache_ttl_ms = old->route_cache_ttl_ms;
	nc->route_cleanup_ms = old->route_cleanup_ms;
	tmp = nc->route_cache_name;
	nc->route_cache_name = old->route_cache_name ? strdup(old->route_cache_name) : NULL;
	free(tmp);
}

/* SIGHUP: parse the configuration again; a valid one replaces the running
 * one without dropping the clients of unchanged endpoints, a bad one is
 * rejected with the reason and the old one keeps running. */
static void phxd_reload(struct phxd *d)
{
	char err[512];
	struct conf nc;
	notify_reloading();
	log_notice("SIGHUP: reloading %s", d->opts.conf_path ? d->opts.conf_path :
		   "the command-line configuration");
	conf_init(&nc);
	if (phxd_load_conf(&d->opts, &nc, err, sizeof(err)) < 0) {
		log_err("reload failed, keeping the running configuration: %s", err);
		conf_free(&nc);
		notify_ready("reload failed: keeping the running configuration");
		return;
	}
	phxd_keep_fixed(&d->conf, &nc);
	/* the router keeps pointers into nc's endpoints array (heap), which
	 * moves with the struct below */
	int *remap = calloc(d->router.neps ? d->router.neps : 1, sizeof(*remap));
	if (!remap || router_reload(&d->router, &nc, remap, err, sizeof(err)) < 0) {
		log_err("reload failed, keeping the running configuration: %s",
			remap ? err : "out of memory");
		free(remap);
		conf_free(&nc);
		notify_ready("reload failed: keeping the running configuration");
		return;
	}
	ipc_server_remap_endpoints(&d->ipc, remap);
	free(remap);
	conf_free(&d->conf);
	d->conf = nc;
	d->router.conf = &d->conf;
	ctl_reload(&d->ctl);
	phxd_ipc_settings(d);
	mem_reload(&d->mem, &d->conf);
	log_set_level((enum log_level)d->conf.log_level);
	log_notice("configuration reloaded (%zu endpoint%s)", d->conf.nendpoints,
		   d->conf.nendpoints == 1 ? "" : "s");
	notify_ready("configuration reloaded");
}

static void on_hup(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct phxd *d = w->data;
	(void)loop;
	(void)revents;
	phxd_reload(d);
}

/* The live figures of STATUS= lines. */
static void phxd_stats(void *ctx, struct notify_stats *st)
{
	const struct phxd *d = ctx;
	st->clients = d->ipc.nclients;
	for (size_t i = 0; i < d->router.neps; i++) {
		/* the pool: every configured connection of every endpoint */
		st->ups_total += d->router.eps[i]->nslots;
		st->ups_open += router_ep_open(d->router.eps[i]);
		st->channels += d->router.eps[i]->chans.n;
	}
	st->alerts = ctl_alert_status(&d->ctl);
}

/* Socket activation: the descriptor named "ipc" is the client socket,
 * "control" the control socket.  A lone socket with another name (a socket
 * unit without FileDescriptorName=) is taken as the client socket.  *ipc_fd
 * is -1 when none was passed.  0 or -errno. */
static int phxd_take_sockets(struct phxd *d, int *ipc_fd)
{
	*ipc_fd = -1;
#ifdef HAVE_SYSTEMD
	char **names = NULL;
	int n = sd_listen_fds_with_names(1, &names);
	if (n < 0) {
		log_err("socket activation: %s", strerror(-n));
		return n;
	}
	for (int i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i;
		const char *name = names && names[i] ? names[i] : "unknown";
		if (strcmp(name, "ipc") == 0 && *ipc_fd < 0) {
			*ipc_fd = fd;
		} else if (strcmp(name, "control") == 0 && d->control_fd < 0) {
			d->control_fd = fd;
		} else if (n == 1) {
			*ipc_fd = fd;
		} else {
			log_warn("socket activation: ignoring descriptor %d named '%s'", fd, name);
			close(fd);
		}
	}
	for (int i = 0; names && names[i]; i++)
		free(names[i]);
	free(names);
#else
	(void)d;
	if (getenv("LISTEN_FDS"))
		log_warn("built without systemd: ignoring the sockets passed in LISTEN_FDS");
#endif
	return 0;
}

/* The client socket: the activated one, or bound at the configured path. */
static int phxd_listen(struct phxd *d, char *err, size_t errlen)
{
	int fd;
	int r = phxd_take_sockets(d, &fd);
	if (r < 0) {
		snprintf(err, errlen, "socket activation: %s", strerror(-r));
		return r;
	}
	if (fd < 0)
		return ipc_server_listen(&d->ipc, d->conf.socket_path, d->conf.socket_mode, err,
					 errlen);
	r = ipc_server_adopt(&d->ipc, fd, err, errlen);
	if (r < 0) {
		close(fd);
		return r;
	}
	if (strcmp(d->ipc.path, d->conf.socket_path) != 0)
		log_info("socket activation: serving %s; the configured socket %s is not used",
			 d->ipc.path, d->conf.socket_path);
	return 0;
}

static void phxd_close_control(struct phxd *d)
{
	if (d->control_fd >= 0)
		close(d->control_fd);
	d->control_fd = -1;
}

/* The control socket (the activated one, or bound) and the sampler. */
static int phxd_control(struct phxd *d, char *err, size_t errlen)
{
	int r = ctl_init(&d->ctl, d->loop, &d->conf, &d->router, &d->ipc, err, errlen);
	if (r == 0) {
		r = ctl_listen(&d->ctl, d->control_fd, err, errlen);
		d->control_fd = -1;     /* ctl_listen() took it */
	}
	return r;
}

static const struct ipc_handlers phxd_ipc_handlers = {
	.on_command = router_on_command,
	.on_close = router_on_close,
};

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "socket", required_argument, NULL, 's' },
		{ "url", required_argument, NULL, 'u' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "check-config", no_argument, NULL, 't' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int check_only = 0, o;
	char err[512];
	static struct phxd d;

	while ((o = getopt_long(argc, argv, "c:s:u:l:tVh", opts, NULL)) != -1) {
		switch (o) {
		case 'c': d.opts.conf_path = optarg; break;
		case 's': d.opts.sock = optarg; break;
		case 'u': d.opts.url = optarg; break;
		case 'l': d.opts.lvl = optarg; break;
		case 't': check_only = 1; break;
		case 'V': printf("phxd %s\n", PACKAGE_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "phxd: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}

	log_init("phxd");
	d.control_fd = -1;
	conf_init(&d.conf);
	if (!d.opts.url && !d.opts.conf_path)
		d.opts.conf_path = SYSCONFDIR "/phxd/phxd.conf";
	if (d.opts.lvl && log_level_parse(d.opts.lvl) < 0) {
		fprintf(stderr, "phxd: unknown log level '%s'\n", d.opts.lvl);
		return 2;
	}
	if (phxd_load_conf(&d.opts, &d.conf, err, sizeof(err)) < 0) {
		fprintf(stderr, "phxd: %s\n", err);
		conf_free(&d.conf);
		return 1;
	}
	if (check_only) {
		printf("%s: configuration OK (%zu endpoint%s)\n",
		       d.opts.conf_path ? d.opts.conf_path : "command line",
		       d.conf.nendpoints, d.conf.nendpoints == 1 ? "" : "s");
		conf_free(&d.conf);
		return 0;
	}
	log_set_level((enum log_level)d.conf.log_level);
	signal(SIGPIPE, SIG_IGN);

	d.loop = ev_default_loop(EVFLAG_AUTO);
	if (router_init(&d.router, d.loop, &d.conf, err, sizeof(err)) < 0) {
		log_err("%s", err);
		conf_free(&d.conf);
		return 1;
	}
	ipc_server_init(&d.ipc, d.loop, &phxd_ipc_handlers, &d.router, d.conf.max_line,
			d.conf.client_queue_max, d.conf.max_clients);
	phxd_ipc_settings(&d);
	if (phxd_listen(&d, err, sizeof(err)) < 0 || phxd_control(&d, err, sizeof(err)) < 0) {
		log_err("%s", err);
		ctl_close(&d.ctl);
		phxd_close_control(&d);
		ipc_server_close(&d.ipc, NULL);
		router_fini(&d.router);
		conf_free(&d.conf);
		return 1;
	}
	ev_signal_init(&d.sigterm, on_stop, SIGTERM);
	ev_signal_init(&d.sigint, on_stop, SIGINT);
	ev_signal_init(&d.sighup, on_hup, SIGHUP);
	d.sighup.data = &d;
	ev_signal_start(d.loop, &d.sigterm);
	ev_signal_start(d.loop, &d.sigint);
	ev_signal_start(d.loop, &d.sighup);
	mem_init(&d.mem, d.loop, &d.conf, &d.router, &d.ipc);

	log_notice("phxd %s listening on %s (%zu endpoint%s, default '%s')", PACKAGE_VERSION,
		   d.ipc.path, d.conf.nendpoints, d.conf.nendpoints == 1 ? "" : "s",
		   conf_default_endpoint(&d.conf)->name);
	char status[NOTIFY_STATUS_MAX];
	snprintf(status, sizeof(status), "listening on %s", d.ipc.path);
	notify_init(&d.notify, d.loop, phxd_stats, &d);
	notify_ready(status);
	notify_start(&d.notify);
	ev_run(d.loop, 0);

	notify_stopping();
	notify_stop(&d.notify);
	mem_stop(&d.mem);
	ctl_close(&d.ctl);
	ipc_server_close(&d.ipc, "shutting down");
	router_fini(&d.router);
	ev_signal_stop(d.loop, &d.sigterm);
	ev_signal_stop(d.loop, &d.sigint);
	ev_signal_stop(d.loop, &d.sighup);
	phxd_close_control(&d);
	conf_free(&d.conf);
	ev_loop_destroy(d.loop);
	/* what the pool still keeps goes too (a clean exit for leak checkers) */
	intern_flush();
	bpool_trim(0);
	log_notice("stopped");
	return 0;
}
