#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "ipc_server.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define IPC_READ_CHUNK 16384
#define IPC_READS_PER_EVENT 4   /* fairness: then let other clients run */
#define IPC_BYE_SLACK 256       /* room kept for the last BYE line */
/* How long a closing client may take to read what is queued for it (its
 * last lines and the BYE) before it is closed anyway. */
#define IPC_LINGER_MS 1000

static void ipc_accept_cb(struct ev_loop *loop, ev_io *w, int revents);
static void ipc_read_cb(struct ev_loop *loop, ev_io *w, int revents);
static void ipc_write_cb(struct ev_loop *loop, ev_io *w, int revents);
static void ipc_prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents);
static void ipc_pause_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void ipc_linger_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void ipc_kick_cb(struct ev_loop *loop, ev_idle *w, int revents);

void ipc_server_init(struct ipc_server *s, struct ev_loop *loop,
		     const struct ipc_handlers *h, void *ctx, size_t max_line,
		     size_t queue_max, unsigned max_clients)
{
	memset(s, 0, sizeof(*s));
	s->loop = loop;
	s->lfd = -1;
	s->h = h;
	s->ctx = ctx;
	s->max_line = max_line;
	s->queue_max = queue_max;
	s->max_clients = max_clients;
	list_init(&s->clients);
	list_init(&s->dirty);
	list_init(&s->reap);
	ev_io_init(&s->lio, ipc_accept_cb, -1, EV_READ);
	ev_timer_init(&s->accept_pause, ipc_pause_cb, 1., 0.);
	ev_timer_init(&s->linger, ipc_linger_cb, IPC_LINGER_MS / 4000., IPC_LINGER_MS / 4000.);
	ev_prepare_init(&s->prep, ipc_prepare_cb);
	ev_idle_init(&s->kick, ipc_kick_cb);
	ev_prepare_start(loop, &s->prep);
	ev_unref(loop); /* the prepare watcher alone keeps nothing alive */
}

int ipc_server_listen(struct ipc_server *s, const char *path, unsigned mode,
		      char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "socket path too long (max %zu bytes): %s",
			 sizeof(sa.sun_path) - 1, path);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "%s exists and is not a socket; not replacing it", path);
			return -EEXIST;
		}
		/* A live daemon answers a connect; a stale file does not. */
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe >= 0) {
			int live = connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0;
			close(probe);
			if (live) {
				snprintf(err, errlen, "%s is in use by another process", path);
				return -EADDRINUSE;
			}
		}
		unlink(path);
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -errno;
	}
	/* Bind under a temporary name with no access, listen, open it up to
	 * mode, then rename: the socket appears at path already listening, so a
	 * client that sees the file can connect. */
	struct sockaddr_un tmp = sa;
	int n = snprintf(tmp.sun_path, sizeof(tmp.sun_path), "%s.%d", path, (int)getpid());
	if (n < 0 || (size_t)n >= sizeof(tmp.sun_path))
		tmp = sa; /* no room for a suffix: bind in place */
	unlink(tmp.sun_path);
	mode_t old = umask(0777);
	int r = bind(fd, (struct sockaddr *)&tmp, sizeof(tmp));
	int e = errno;
	umask(old);
	if (r < 0) {
		snprintf(err, errlen, "bind %s: %s", path, strerror(e));
		close(fd);
		return -e;
	}
	if (listen(fd, 512) < 0 || chmod(tmp.sun_path, mode) < 0 ||
	    (strcmp(tmp.sun_path, path) != 0 && rename(tmp.sun_path, path) < 0)) {
		e = errno;
		snprintf(err, errlen, "listen on %s: %s", path, strerror(e));
		close(fd);
		unlink(tmp.sun_path);
		return -e;
	}
	s->lfd = fd;
	s->owns_path = 1;
	snprintf(s->path, sizeof(s->path), "%s", path);
	ev_io_set(&s->lio, fd, EV_READ);
	ev_io_start(s->loop, &s->lio);
	return 0;
}

/* The name a socket is bound to, for messages: its path, "@name" for an
 * abstract socket, "(unnamed)". */
static void ipc_sock_name(int fd, char *out, size_t n)
{
	struct sockaddr_un sa;
	socklen_t len = sizeof(sa);
	memset(&sa, 0, sizeof(sa));
	if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0 ||
	    len <= offsetof(struct sockaddr_un, sun_path)) {
		snprintf(out, n, "(unnamed)");
		return;
	}
	size_t plen = len - offsetof(struct sockaddr_un, sun_path);
	if (sa.sun_path[0] != '\0') {
		snprintf(out, n, "%.*s", (int)strnlen(sa.sun_path, plen), sa.sun_path);
		return;
	}
	/* abstract: NUL bytes in the name are shown as '@' */
	size_t o = 0;
	for (size_t i = 0; i < plen && o + 1 < n; i++)
		out[o++] = sa.sun_path[i] ? sa.sun_path[i] : '@';
	out[o] = '\0';
}

/* 0 when fd is a listening Unix stream socket; -errno with err if not. */
static int ipc_check_listener(int fd, char *err, size_t errlen)
{
	int type = 0, domain = 0, listening = 0;
	socklen_t l1 = sizeof(type), l2 = sizeof(domain), l3 = sizeof(listening);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l1) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &l2) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &l3) < 0) {
		int e = errno;
		snprintf(err, errlen, "descriptor %d: %s", fd, strerror(e));
		return -e;
	}
	if (domain != AF_UNIX || type != SOCK_STREAM) {
		snprintf(err, errlen, "descriptor %d is not a Unix stream socket", fd);
		return -ENOTSOCK;
	}
	if (!listening) {
		snprintf(err, errlen, "descriptor %d is not listening", fd);
		return -EINVAL;
	}
	return 0;
}

int ipc_server_adopt(struct ipc_server *s, int fd, char *err, size_t errlen)
{
	int r = ipc_check_listener(fd, err, errlen);
	if (r < 0)
		return r;
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
		int e = errno;
		snprintf(err, errlen, "descriptor %d: %s", fd, strerror(e));
		return -e;
	}
	s->lfd = fd;
	s->owns_path = 0;
	ipc_sock_name(fd, s->path, sizeof(s->path));
	ev_io_set(&s->lio, fd, EV_READ);
	ev_io_start(s->loop, &s->lio);
	return 0;
}

static void ipc_client_free(struct ipc_client *c)
{
	buf_free(&c->in);
	buf_free(&c->out);
	free(c->groups);
	hmap_free(&c->subs);
	free(c);
}

/* Marks dead, tells the owner, and moves to the reap list. */
static void ipc_client_kill(struct ipc_client *c)
{
	struct ipc_server *s = c->srv;
	if (c->dead)
		return;
	c->dead = 1;
	if (c->closing)
		s->lingering--;
	if (c->hibernating) {
		c->hibernating = 0;
		s->hibernating--;
		s->hib_now -= c->hib_held;
		c->hib_held = 0;
	}
	ev_io_stop(s->loop, &c->rio);
	ev_io_stop(s->loop, &c->wio);
	list_del(&c->dirty);
	s->h->on_close(s->ctx, c);
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	list_del(&c->node);
	list_add_tail(&s->reap, &c->node);
	s->nclients--;
	log_debug("client %llu closed", (unsigned long long)c->id);
}

/* A byte in or out: the client is active (and awake). */
static void ipc_touch(struct ipc_client *c)
{
	struct ipc_server *s = c->srv;
	c->last_ms = (uint64_t)(ev_now(s->loop) * 1000.);
	if (c->hibernating) {
		c->hibernating = 0;
		s->hibernating--;
		s->wakeups++;
		s->hib_now -= c->hib_held;
		c->hib_held = 0;
	}
}

/* n bytes of the queue went to the socket. */
static void ipc_out_sent(struct ipc_client *c, size_t n)
{
	buf_consume(&c->out, n);
	/* what is left starts past a newline unless a line was cut (the
	 * consumed bytes are still before rpos when some are left) */
	c->out_midline = buf_len(&c->out) && buf_rptr(&c->out)[-1] != '\n';
	c->last_ms = (uint64_t)(ev_now(c->srv->loop) * 1000.);
}

/* Drops the queued lines not started yet: a client dropped for not reading
 * gets the end of a line it is in the middle of, then its BYE, never a
 * cut line. */
static void ipc_out_drop_unsent(struct ipc_client *c)
{
	size_t keep = 0;
	if (c->out_midline) {
		long nl = buf_find(&c->out, 0, '\n');
		keep = nl < 0 ? buf_len(&c->out) : (size_t)nl + 1;
	}
	buf_truncate(&c->out, keep);
}

/* Writes queued output; returns -1 when the client had to be closed. */
static int ipc_client_flush(struct ipc_client *c)
{
	struct ipc_server *s = c->srv;
	while (buf_len(&c->out) > 0) {
		ssize_t w = send(c->fd, buf_rptr(&c->out), buf_len(&c->out), MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				if (!ev_is_active(&c->wio)) {
					ev_io_set(&c->wio, c->fd, EV_WRITE);
					ev_io_start(s->loop, &c->wio);
				}
				return 0;
			}
			ipc_client_kill(c);
			return -1;
		}
		ipc_out_sent(c, (size_t)w);
	}
	ev_io_stop(s->loop, &c->wio);
	list_del(&c->dirty);
	if (c->out.cap > 65536)
		buf_free(&c->out);
	return 0;
}

/* Output is flushed by the prepare watcher.  Work queued after it ran in
 * this iteration (from another prepare callback) must not wait for the next
 * event: the idle watcher keeps the loop from blocking until then. */
static void ipc_mark_dirty(struct ipc_client *c)
{
	if (!list_linked(&c->dirty))
		list_add_tail(&c->srv->dirty, &c->dirty);
	if (!ev_is_active(&c->srv->kick))
		ev_idle_start(c->srv->loop, &c->srv->kick);
}

static void ipc_kick_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	(void)revents;
	ev_idle_stop(loop, w);
}

void ipc_client_close(struct ipc_client *c, const char *bye_reason)
{
	if (c->dead || c->closing)
		return;
	c->closing = 1;
	c->close_by_ms = (uint64_t)(ev_now(c->srv->loop) * 1000.) + IPC_LINGER_MS;
	if (c->srv->lingering++ == 0)
		ev_timer_again(c->srv->loop, &c->srv->linger);
	if (bye_reason) {
		/* the BYE may pass the queue limit */
		c->out.max = 0;
		ipc_fmt_bye(&c->out, bye_reason);
	}
	ev_io_stop(c->srv->loop, &c->rio);
	ipc_mark_dirty(c);
}

void ipc_client_wrote(struct ipc_client *c, int r)
{
	if (c->dead || c->closing)
		return;
	if (r == 0) {
		c->srv->lines_out++;
		ipc_mark_dirty(c);
		return;
	}
	if (r == -EMSGSIZE) {
		c->srv->overflows++;
		log_warn("client %llu (pid %d): output queue full (%zu bytes): disconnecting",
			 (unsigned long long)c->id, (int)c->pid, c->srv->queue_max);
		ipc_out_drop_unsent(c);
		ipc_client_close(c, "output queue full");
		return;
	}
	if (r == -EINVAL) {
		/* a field that cannot be written on a line: the line is skipped */
		log_info("client %llu: dropped a line with an unwritable field",
			 (unsigned long long)c->id);
		return;
	}
	log_err("client %llu: out of memory: disconnecting", (unsigned long long)c->id);
	ipc_client_close(c, NULL);
}

struct buf *ipc_client_out(struct ipc_client *c)
{
	ipc_touch(c);
	/* an empty queue takes one line whatever its size: a client that reads
	 * can receive any event the upstream accepted */
	c->out.max = buf_len(&c->out) ? c->srv->queue_max : 0;
	return &c->out;
}

/* Sends what the socket takes now, without closing anything (the caller
 * may be walking a channel's subscribers): 0, or -1 when the socket failed
 * (the client is then closed in the prepare phase). */
static int ipc_client_push_out(struct ipc_client *c)
{
	while (buf_len(&c->out) > 0) {
		ssize_t w = send(c->fd, buf_rptr(&c->out), buf_len(&c->out),
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			ipc_client_close(c, NULL);
			return -1;
		}
		ipc_out_sent(c, (size_t)w);
	}
	return 0;
}

void ipc_client_write(struct ipc_client *c, const char *p, size_t n)
{
	if (c->dead || c->closing)
		return;
	int r = buf_append(ipc_client_out(c), p, n);
	/* A full queue may only mean that a burst from the server came in
	 * faster than this loop iteration flushes: a client that reads gets
	 * its socket drained now, before its queue is judged.  (Not when the
	 * socket is known to be full: the write watcher waits for it.) */
	if (r == -EMSGSIZE && !ev_is_active(&c->wio)) {
		if (ipc_client_push_out(c) < 0)
			return;
		r = buf_append(ipc_client_out(c), p, n);
	}
	ipc_client_wrote(c, r);
}

void ipc_client_check_done(struct ipc_client *c)
{
	/* decided in the prepare phase, after the output was flushed */
	if (!c->dead && c->eof && c->npending == 0)
		ipc_mark_dirty(c);
}

/* Prepare phase: a closing client, or a half-closed one with nothing left
 * to wait for, goes once its output is out (or cannot go out). */
static void ipc_client_settle(struct ipc_client *c)
{
	if (c->dead)
		return;
	if (c->closing) {
		/* its last lines and BYE go out if the peer reads them within
		 * IPC_LINGER_MS; a peer that does not read cannot hold us */
		if (buf_len(&c->out) == 0 ||
		    (uint64_t)(ev_now(c->srv->loop) * 1000.) >= c->close_by_ms)
			ipc_client_kill(c);
		return;
	}
	if (c->eof && c->npending == 0 && buf_len(&c->out) == 0)
		ipc_client_kill(c);
}

static void ipc_handle_line(struct ipc_client *c, const char *line, size_t len)
{
	struct ipc_server *s = c->srv;
	struct ipc_cmd cmd;
	int r = ipc_line_parse(line, len, &cmd);
	if (r == 1)
		return;
	s->lines_in++;
	if (r < 0) {
		s->bad_lines++;
		s->bad_by_kind[ipc_bad_kind(cmd.err)]++;
		ipc_client_wrote(c, ipc_fmt_error(ipc_client_out(c), &cmd.tag, cmd.verb_name,
						  cmd.target.p, cmd.target.len, cmd.err, NULL));
		return;
	}
	s->h->on_command(s->ctx, c, &cmd);
}

/* Splits the input into lines.  An overlong line is dropped up to its
 * newline and answered with one error. */
static void ipc_process_input(struct ipc_client *c, int at_eof)
{
	struct ipc_server *s = c->srv;
	size_t from = 0;
	while (!c->dead && !c->closing) {
		long nl = buf_find(&c->in, from, '\n');
		if (nl < 0) {
			if (c->discarding || buf_len(&c->in) > s->max_line) {
				c->discarding = 1;
				buf_reset(&c->in);
			} else if (at_eof && buf_len(&c->in) > 0) {
				/* an unterminated last line still counts */
				size_t n = buf_len(&c->in);
				char *p = buf_rptr(&c->in);
				buf_reset(&c->in);
				ipc_handle_line(c, p, n);
			}
			break;
		}
		char *p = buf_rptr(&c->in);
		size_t n = (size_t)nl;
		if (c->discarding || n > s->max_line + (n > 0 && p[n - 1] == '\r')) {
			char lim[32];
			snprintf(lim, sizeof(lim), "limit is %zu bytes", s->max_line);
			c->discarding = 0;
			s->bad_lines++;
			s->bad_by_kind[IPC_BAD_TOO_LONG]++;
			buf_consume(&c->in, n + 1);
			ipc_client_wrote(c, ipc_fmt_error(ipc_client_out(c), NULL, "?", NULL, 0,
							  "line too long", lim));
			continue;
		}
		ipc_handle_line(c, p, n);
		if (c->dead)
			return;
		buf_consume(&c->in, n + 1);
		from = 0;
	}
	if (!c->dead && buf_len(&c->in) == 0)
		buf_release(&c->in);
}

static void ipc_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct ipc_client *c = container_of(w, struct ipc_client, rio);
	(void)loop;
	(void)revents;
	ipc_touch(c);
	for (int i = 0; i < IPC_READS_PER_EVENT && !c->dead && !c->closing; i++) {
		char *p = buf_reserve(&c->in, IPC_READ_CHUNK);
		if (!p) {
			ipc_client_close(c, "out of memory");
			return;
		}
		ssize_t r = read(c->fd, p, IPC_READ_CHUNK);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			ipc_client_kill(c);
			return;
		}
		if (r == 0) {
			c->eof = 1;
			ev_io_stop(c->srv->loop, &c->rio);
			ipc_process_input(c, 1);
			ipc_mark_dirty(c);
			return;
		}
		buf_commit(&c->in, (size_t)r);
		ipc_process_input(c, 0);
		if ((size_t)r < IPC_READ_CHUNK)
			return;
	}
}

static void ipc_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct ipc_client *c = container_of(w, struct ipc_client, wio);
	(void)loop;
	(void)revents;
	if (ipc_client_flush(c) == 0)
		ipc_client_settle(c);
}

/* Only wakes the loop: the prepare phase settles closing clients whose
 * time is up.  Stops once none is left. */
static void ipc_linger_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct ipc_server *s = container_of(w, struct ipc_server, linger);
	(void)revents;
	if (s->lingering == 0)
		ev_timer_stop(loop, w);
}

static void ipc_prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct ipc_server *s = container_of(w, struct ipc_server, prep);
	struct list_node *n, *t;
	(void)revents;
	ev_idle_stop(loop, &s->kick);
	list_for_each_safe(n, t, &s->dirty) {
		struct ipc_client *c = container_of(n, struct ipc_client, dirty);
		if (!ev_is_active(&c->wio) && ipc_client_flush(c) < 0)
			continue; /* the socket failed: already closed */
		ipc_client_settle(c);
	}
	list_for_each_safe(n, t, &s->reap) {
		struct ipc_client *c = container_of(n, struct ipc_client, node);
		list_del(&c->node);
		ipc_client_free(c);
	}
}

static void ipc_pause_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct ipc_server *s = container_of(w, struct ipc_server, accept_pause);
	(void)revents;
	if (s->lfd >= 0)
		ev_io_start(loop, &s->lio);
}

static void ipc_refuse(struct ipc_server *s, int fd, const char *reason)
{
	struct buf b;
	buf_init(&b, 0);
	if (ipc_fmt_bye(&b, reason) == 0) {
		ssize_t w = send(fd, buf_rptr(&b), buf_len(&b), MSG_NOSIGNAL | MSG_DONTWAIT);
		(void)w;
	}
	buf_free(&b);
	close(fd);
	s->refused++;
}

/* The supplementary groups of the peer (Linux 4.13+: SO_PEERGROUPS); none
 * when the kernel cannot tell, which access rules then treat as no match. */
static void ipc_peer_groups(struct ipc_client *c, int fd)
{
#ifdef SO_PEERGROUPS
	gid_t small[32];
	socklen_t len = sizeof(small);
	gid_t *g = small;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len) < 0) {
		if (errno != ERANGE || !(g = malloc(len)))
			return;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len) < 0) {
			free(g);
			return;
		}
	}
	unsigned n = len / sizeof(gid_t);
	if (n && g == small) {
		g = malloc(n * sizeof(gid_t));
		if (g)
			memcpy(g, small, n * sizeof(gid_t));
	}
	if (!n || !g) {
		if (g != small)
			free(g);
		return;
	}
	c->groups = g;
	c->ngroups = n;
#else
	(void)c;
	(void)fd;
#endif
}

/* SO_SNDBUF / SO_RCVBUF of a client socket; a refusal is logged once. */
static void ipc_sockbuf(int fd, int opt, size_t size, const char *name)
{
	static int warned;
	int v = size > INT32_MAX ? INT32_MAX : (int)size;
	if (setsockopt(fd, SOL_SOCKET, opt, &v, sizeof(v)) < 0 && !warned) {
		warned = 1;
		log_warn("%s = %zu: %s (the kernel default stays)", name, size, strerror(errno));
	}
}

static void ipc_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct ipc_server *s = container_of(w, struct ipc_server, lio);
	(void)revents;
	for (int i = 0; i < 64; i++) {
		int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				log_warn("accept: %s: pausing new clients for 1 s", strerror(errno));
				ev_io_stop(loop, &s->lio);
				ev_timer_start(loop, &s->accept_pause);
			}
			return;
		}
		if (s->nclients >= s->max_clients) {
			ipc_refuse(s, fd, "too many clients");
			continue;
		}
		struct ipc_client *c = calloc(1, sizeof(*c));
		if (!c) {
			ipc_refuse(s, fd, "out of memory");
			continue;
		}
		struct ucred cr;
		socklen_t cl = sizeof(cr);
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0) {
			c->uid = cr.uid;
			c->gid = cr.gid;
			c->pid = cr.pid;
		}
		if (s->want_groups)
			ipc_peer_groups(c, fd);
		if (s->sndbuf)
			ipc_sockbuf(fd, SO_SNDBUF, s->sndbuf, "client_sndbuf");
		if (s->rcvbuf)
			ipc_sockbuf(fd, SO_RCVBUF, s->rcvbuf, "client_rcvbuf");
		c->srv = s;
		c->fd = fd;
		c->ep = -1;
		c->last_ms = (uint64_t)(ev_now(loop) * 1000.);
		c->id = ++s->next_id;
		buf_init(&c->in, 0);
		buf_init(&c->out, s->queue_max);
		hmap_init(&c->subs);
		list_init(&c->pushes);
		list_init(&c->dirty);
		list_add_tail(&s->clients, &c->node);
		ev_io_init(&c->rio, ipc_read_cb, fd, EV_READ);
		ev_io_init(&c->wio, ipc_write_cb, fd, EV_WRITE);
		ev_io_start(loop, &c->rio);
		s->nclients++;
		s->accepted++;
		log_debug("client %llu connected (pid %d uid %d)", (unsigned long long)c->id,
			  (int)c->pid, (int)c->uid);
	}
}

void ipc_server_remap_endpoints(struct ipc_server *s, const int *remap)
{
	struct list_node *n, *t;
	list_for_each_safe(n, t, &s->clients) {
		struct ipc_client *c = container_of(n, struct ipc_client, node);
		if (c->ep >= 0)
			c->ep = remap[c->ep];
	}
}

void ipc_server_close(struct ipc_server *s, const char *bye_reason)
{
	struct list_node *n, *t;
	list_for_each_safe(n, t, &s->clients) {
		struct ipc_client *c = container_of(n, struct ipc_client, node);
		ipc_client_close(c, bye_reason);
		ipc_client_flush(c);
		ipc_client_kill(c);
	}
	list_for_each_safe(n, t, &s->reap) {
		struct ipc_client *c = container_of(n, struct ipc_client, node);
		list_del(&c->node);
		ipc_client_free(c);
	}
	if (s->lfd >= 0) {
		ev_io_stop(s->loop, &s->lio);
		close(s->lfd);
		s->lfd = -1;
	}
	ev_timer_stop(s->loop, &s->linger);
	ev_timer_stop(s->loop, &s->accept_pause);
	ev_idle_stop(s->loop, &s->kick);
	if (ev_is_active(&s->prep)) {
		ev_ref(s->loop);
		ev_prepare_stop(s->loop, &s->prep);
	}
	if (s->owns_path) {
		unlink(s->path);
		s->owns_path = 0;
	}
}

size_t ipc_server_hibernate_idle(struct ipc_server *s, uint64_t now_ms, uint64_t idle_ms)
{
	struct list_node *n, *t;
	size_t freed = 0;
	list_for_each_safe(n, t, &s->clients) {
		struct ipc_client *c = container_of(n, struct ipc_client, node);
		if (c->dead || c->closing || c->eof || now_ms - c->last_ms < idle_ms)
			continue;
		/* what is still queued stays: a client that does not read keeps
		 * its output until it reads or the queue limit closes it */
		size_t before = c->in.cap + c->out.cap;
		buf_release(&c->in);
		buf_release(&c->out);
		size_t after = c->in.cap + c->out.cap;
		if (c->subs.n == 0 && c->subs.cap) {
			before += c->subs.cap * sizeof(*c->subs.e);
			hmap_free(&c->subs);
		}
		freed += before - after;
		if (after == 0 && !c->hibernating) {
			c->hibernating = 1;
			s->hibernating++;
			c->hib_held = before - after;
			s->hib_now += c->hib_held;
		}
	}
	s->hib_bytes += freed;
	return freed;
}
