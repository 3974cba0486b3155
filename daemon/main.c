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

#include <ev.h>
#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "conf/conf.h"
#include "ipc/ipc_server.h"
#include "log.h"
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
	if (ipc_server_listen(&d.ipc, d.conf.socket_path, d.conf.socket_mode, err,
			      sizeof(err)) < 0) {
		log_err("%s", err);
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
		   d.conf.socket_path, d.conf.nendpoints, d.conf.nendpoints == 1 ? "" : "s",
		   conf_default_endpoint(&d.conf)->name);
#ifdef HAVE_SYSTEMD
	sd_notifyf(0, "READY=1\nSTATUS=listening on %s", d.conf.socket_path);
#endif
	ev_run(d.loop, 0);

#ifdef HAVE_SYSTEMD
	sd_notify(0, "STOPPING=1");
#endif
	ipc_server_close(&d.ipc, "shutting down");
	router_fini(&d.router);
	ev_signal_stop(d.loop, &d.sigterm);
	ev_signal_stop(d.loop, &d.sigint);
	ev_signal_stop(d.loop, &d.sighup);
	conf_free(&d.conf);
	ev_loop_destroy(d.loop);
	log_notice("stopped");
	return 0;
}
