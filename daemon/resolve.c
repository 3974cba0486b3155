/* resolve — host name resolution off the event loop (see resolve.h).
 *
 * A request is shared by the loop and its thread and freed by whichever
 * lets go last (refs).  The thread signals the end of its lookup on an
 * eventfd the loop watches; a cancelled request stops being watched and
 * the thread cleans up after itself. */
#include "resolve.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct res_req {
	atomic_int refs;                    /* the loop's and the thread's */
	int efd;
	ev_io io;
	struct ev_loop *loop;
	res_cb cb;
	void *arg;
	struct addrinfo *res;               /* the thread's answer ... */
	int err;                            /* ... or its error */
	char *host, *port;
};

static atomic_uint res_running;

static const struct addrinfo res_hints = {
	.ai_socktype = SOCK_STREAM,
	.ai_flags = AI_ADDRCONFIG,
};

static void res_unref(struct res_req *r)
{
	if (atomic_fetch_sub(&r->refs, 1) != 1)
		return;
	if (r->res)
		freeaddrinfo(r->res);
	close(r->efd);
	free(r->host);
	free(r->port);
	free(r);
}

static void *res_thread(void *p)
{
	struct res_req *r = p;
	r->err = getaddrinfo(r->host, r->port, &res_hints, &r->res);
	if (r->err)
		r->res = NULL;
	uint64_t one = 1;
	/* cannot fail short of a bug: the counter is far from its limit */
	while (write(r->efd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
	atomic_fetch_sub(&res_running, 1);
	res_unref(r);
	return NULL;
}

static void res_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct res_req *r = (struct res_req *)((char *)w - offsetof(struct res_req, io));
	uint64_t n;
	(void)revents;
	if (read(r->efd, &n, sizeof(n)) < 0 && errno == EAGAIN)
		return; /* spurious */
	ev_io_stop(loop, &r->io);
	/* the thread wrote its answer before the eventfd: it is ours now */
	struct addrinfo *res = r->res;
	r->res = NULL;
	r->cb(r->arg, res, res ? 0 : r->err);
	res_unref(r);
}

int res_start(struct ev_loop *loop, const char *host, const char *port, res_cb cb,
	      void *arg, struct addrinfo **res, struct res_req **req)
{
	struct addrinfo hints = res_hints;
	*res = NULL;
	*req = NULL;
	hints.ai_flags |= AI_NUMERICHOST;
	int g = getaddrinfo(host, port, &hints, res);
	if (g != EAI_NONAME) {
		/* a literal address, or an error a name would not change */
		if (g)
			*res = NULL;
		return g;
	}

	struct res_req *r = calloc(1, sizeof(*r));
	if (!r || !(r->host = strdup(host)) || !(r->port = strdup(port))) {
		if (r) {
			free(r->host);
			free(r);
		}
		return EAI_MEMORY;
	}
	r->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (r->efd < 0) {
		free(r->host);
		free(r->port);
		free(r);
		return EAI_SYSTEM;
	}
	atomic_init(&r->refs, 2);
	r->loop = loop;
	r->cb = cb;
	r->arg = arg;

	/* the thread takes no signals: they stay with the loop's thread */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_t attr;
	pthread_t t;
	int e = pthread_attr_init(&attr);
	if (e == 0) {
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		atomic_fetch_add(&res_running, 1);
		e = pthread_create(&t, &attr, res_thread, r);
		if (e != 0)
			atomic_fetch_sub(&res_running, 1);
		pthread_attr_destroy(&attr);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (e != 0) {
		atomic_store(&r->refs, 1);
		res_unref(r);
		errno = e;
		return EAI_SYSTEM;
	}
	ev_io_init(&r->io, res_io_cb, r->efd, EV_READ);
	ev_io_start(loop, &r->io);
	*req = r;
	return 0;
}

void res_cancel(struct res_req *r)
{
	if (!r)
		return;
	ev_io_stop(r->loop, &r->io);
	res_unref(r);
}

unsigned res_pending(void)
{
	return atomic_load(&res_running);
}
