#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "mem.h"

#include "bpool.h"
#include "conf/conf.h"
#include "intern.h"
#include "ipc/ipc_server.h"
#include "log.h"
#include "router.h"

static void mem_cleanup_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void mem_sweep_cb(struct ev_loop *loop, ev_timer *w, int revents);

static void mem_apply(struct mem *m)
{
	const struct conf *c = m->conf;
	bpool_configure(c->binary_pool_size, c->hibernation_memory_threshold,
			c->binary_max_age_ms);
	intern_configure(c->binary_pool_size, c->binary_max_age_ms);
	/* blocks past the new limits go now */
	bpool_trim(c->hibernation_memory_threshold);

	ev_timer_set(&m->cleanup, c->binary_cleanup_ms / 1000.0, c->binary_cleanup_ms / 1000.0);
	ev_timer_start(m->loop, &m->cleanup);

	if (c->hibernation_enabled) {
		double every = c->hibernation_idle_ms / 4000.0;
		if (every < 0.05)
			every = 0.05;
		if (every > 30.)
			every = 30.;
		ev_timer_set(&m->sweep, every, every);
		ev_timer_start(m->loop, &m->sweep);
	}
}

void mem_init(struct mem *m, struct ev_loop *loop, const struct conf *conf,
	      struct router *rt, struct ipc_server *ipc)
{
	m->loop = loop;
	m->conf = conf;
	m->rt = rt;
	m->ipc = ipc;
	m->rounds = 0;
	ev_timer_init(&m->cleanup, mem_cleanup_cb, 1., 1.);
	ev_timer_init(&m->sweep, mem_sweep_cb, 1., 1.);
	mem_apply(m);
}

static void mem_timers_stop(struct mem *m)
{
	ev_timer_stop(m->loop, &m->cleanup);
	ev_timer_stop(m->loop, &m->sweep);
}

void mem_reload(struct mem *m, const struct conf *conf)
{
	mem_timers_stop(m);
	m->conf = conf;
	mem_apply(m);
}

void mem_stop(struct mem *m)
{
	mem_timers_stop(m);
}

uint64_t mem_hibernate_now(struct mem *m)
{
	const struct conf *c = m->conf;
	uint64_t now = (uint64_t)(ev_now(m->loop) * 1000.);
	uint64_t freed = ipc_server_hibernate_idle(m->ipc, now, c->hibernation_idle_ms);
	freed += router_hibernate_idle(m->rt, now, c->hibernation_idle_ms);
	m->rounds++;
	if (freed)
		log_debug("hibernation: %llu bytes of buffers released (%u clients, %u "
			  "upstreams hibernating)", (unsigned long long)freed,
			  m->ipc->hibernating, m->rt->ups_hibernating);
	/* (hibernation also frees what is not pooled: wslay contexts, tables) */
	bpool_give_back(freed > 0);
	return freed;
}

static void mem_sweep_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct mem *m = container_of(w, struct mem, sweep);
	(void)loop;
	(void)revents;
	mem_hibernate_now(m);
}

static void mem_cleanup_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct mem *m = container_of(w, struct mem, cleanup);
	(void)loop;
	(void)revents;
	size_t blocks = bpool_cleanup();
	size_t strings = intern_cleanup();
	if (blocks || strings)
		log_debug("binary pool: released %zu blocks and %zu strings unused for %u ms",
			  blocks, strings, m->conf->binary_max_age_ms);
	bpool_give_back(0);
}
