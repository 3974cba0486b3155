/* mem — memory housekeeping: the binary pool's age release, hibernation of
 * idle local clients and upstreams, and giving freed memory back to the
 * system.
 *
 * Two timers: every binary_cleanup_interval the pool (common/bpool) and the
 * interned strings (common/intern) release entries unused for
 * binary_max_age; every hibernation round (a quarter of
 * hibernation_idle_timeout, between 50 ms and 30 s) clients and upstreams
 * idle for hibernation_idle_timeout drop their buffers.  When a round freed
 * blocks to malloc (the pool holds at most hibernation_memory_threshold
 * bytes; what passes it is freed), malloc_trim() returns the pages.
 */
#ifndef PHX_MEM_H
#define PHX_MEM_H

#include <stdint.h>

#include <ev.h>

struct conf;
struct ipc_server;
struct router;

struct mem {
	struct ev_loop *loop;
	const struct conf *conf;
	struct router *rt;
	struct ipc_server *ipc;
	ev_timer cleanup;
	ev_timer sweep;
	uint64_t rounds;            /* hibernation rounds */
};

/* Configures the pool and interning from conf and starts the timers; the
 * pointers are borrowed for the life of m. */
void mem_init(struct mem *m, struct ev_loop *loop, const struct conf *conf,
	      struct router *rt, struct ipc_server *ipc);
/* After a reload (conf may be the same object, changed). */
void mem_reload(struct mem *m, const struct conf *conf);
/* One hibernation round now (the timer calls this); returns bytes released. */
uint64_t mem_hibernate_now(struct mem *m);
void mem_stop(struct mem *m);

#endif
