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
#include "daemon/notify.h"
#include "daemon/router.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

struct phxd {
	struct ev_loop *loop;
	struct conf conf;
	struct router router;
	struct ipc_server ipc;
	ev_signal sigterm, sigint, sighup;
	struct notify notify;
	int control_fd;          /* "control" socket from the service manager; not served yet */
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

static void on_stop(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)revents;
	log_notice("signal %d: shutting down", w->signum);
	ev_break(loop, EVBREAK_ALL);
}

static void on_hup(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	log_warn("SIGHUP: configuration reload is not implemented yet; restart phxd to apply changes");
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
	if (d->control_fd >= 0)
		log_info("control socket received (descriptor %d): the control interface is "
			 "not implemented yet, connections to it are not served", d->control_fd);
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
	const char *conf_path = NULL, *sock = NULL, *url = NULL, *lvl = NULL;
	int check_only = 0, o;
	char err[512];
	static struct phxd d;

	while ((o = getopt_long(argc, argv, "c:s:u:l:tVh", opts, NULL)) != -1) {
		switch (o) {
		case 'c': conf_path = optarg; break;
		case 's': sock = optarg; break;
		case 'u': url = optarg; break;
		case 'l': lvl = optarg; break;
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
	if (!url && !conf_path)
		conf_path = SYSCONFDIR "/phxd/phxd.conf";
	if (conf_path && conf_load_file(&d.conf, conf_path, err, sizeof(err)) < 0) {
		fprintf(stderr, "phxd: %s\n", err);
		conf_free(&d.conf);
		return 1;
	}
	if (url) {
		/* -u replaces the default endpoint's url, or makes one */
		const struct conf_endpoint *def = conf_default_endpoint(&d.conf);
		if (def) {
			struct conf_endpoint *e = (struct conf_endpoint *)def;
			free(e->url);
			e->url = strdup(url);
		} else if (!conf_add_endpoint(&d.conf, "default", url)) {
			fprintf(stderr, "phxd: out of memory\n");
			return 1;
		}
	}
	if (sock) {
		free(d.conf.socket_path);
		d.conf.socket_path = strdup(sock);
	}
	if (lvl) {
		int l = log_level_parse(lvl);
		if (l < 0) {
			fprintf(stderr, "phxd: unknown log level '%s'\n", lvl);
			return 2;
		}
		d.conf.log_level = l;
	}
	if (conf_check(&d.conf, err, sizeof(err)) < 0) {
		fprintf(stderr, "phxd: %s\n", err);
		conf_free(&d.conf);
		return 1;
	}
	if (check_only) {
		printf("%s: configuration OK (%zu endpoint%s)\n", conf_path ? conf_path : "command line",
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
	if (phxd_listen(&d, err, sizeof(err)) < 0) {
		log_err("%s", err);
		phxd_close_control(&d);
		ipc_server_close(&d.ipc, NULL);
		router_fini(&d.router);
		conf_free(&d.conf);
		return 1;
	}
	ev_signal_init(&d.sigterm, on_stop, SIGTERM);
	ev_signal_init(&d.sigint, on_stop, SIGINT);
	ev_signal_init(&d.sighup, on_hup, SIGHUP);
	ev_signal_start(d.loop, &d.sigterm);
	ev_signal_start(d.loop, &d.sigint);
	ev_signal_start(d.loop, &d.sighup);

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
	ipc_server_close(&d.ipc, "shutting down");
	router_fini(&d.router);
	ev_signal_stop(d.loop, &d.sigterm);
	ev_signal_stop(d.loop, &d.sigint);
	ev_signal_stop(d.loop, &d.sighup);
	phxd_close_control(&d);
	conf_free(&d.conf);
	ev_loop_destroy(d.loop);
	log_notice("stopped");
	return 0;
}
