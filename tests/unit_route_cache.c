/* unit_route_cache — tests of daemon/route_cache: LRU, TTL, eviction,
 * collisions, long topics, restart, rebuilding bad segments, a reader process
 * during heavy writes, a million entries, and random operations against a
 * reference model.
 *
 * Segments are named /phxd-rc-PID-N and unlinked in the teardown.  The
 * corruption tests poke the segment at the header offsets documented in
 * route_cache.h and, for entries, at the field offsets of struct rc_ent in
 * route_cache.c (white-box, noted where used). */
#include "daemon/route_cache.h"
#include "hmap.h"
#include "log.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* For hot loops: ck_assert records its location with a system call each
 * time, this only when it fails. */
#define CHECK(cond, ...) do { if (!(cond)) ck_abort_msg(__VA_ARGS__); } while (0)

/* Header offsets (route_cache.h) and entry field offsets (struct rc_ent). */
#define OFF_VERSION 8
#define OFF_CAPACITY 32
#define OFF_BUCKETS 56
#define OFF_ENTS 64
#define OFF_TOTAL 80
#define OFF_SEQ 128
#define OFF_LRU_TAIL 236                /* struct rc_hdr: lru.tail */
#define ENT_SIZE 128
#define ENT_LRU_NEXT 36
#define ENT_SLOT 56
#define ENT_LAST 16
#define ENT_CREATED 24
#define ENT_KEY 64
#define OFF_EPS 48                      /* u64 offset of the endpoint table */
#define EP_NAME 5                       /* struct rc_ep: u32 refs, u8 len, name */

#define DOC_SIZE_1M 161907328u        /* route_cache.h: 1,000,000 entries */

static char seg[64];
static unsigned seg_n;

static void setup(void)
{
	snprintf(seg, sizeof(seg), "/phxd-rc-%d-%u", (int)getpid(), seg_n++);
	route_cache_unlink(seg);
}

static void teardown(void)
{
	route_cache_unlink(seg);
}

static uint64_t rng_state = 0x2545F4914F6CDD1DULL;

static uint32_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 16);
}

static struct route_cache *open_cap(uint32_t cap, uint32_t long_cap, uint32_t ttl)
{
	struct route_cache_params p = { .capacity = cap, .long_capacity = long_cap, .ttl_ms = ttl };
	struct route_cache *rc = NULL;
	char err[256];
	int r = route_cache_open(&rc, seg, &p, err, sizeof(err));

	ck_assert_msg(r >= 0, "open: %d %s", r, err);
	return rc;
}

static int put(struct route_cache *rc, const char *t, const char *ep, uint16_t slot,
	       enum route_state st, uint64_t now)
{
	return route_cache_put(rc, t, strlen(t), ep, slot, st, now);
}

static int look(struct route_cache *rc, const char *t, uint64_t now, struct route_entry *e)
{
	return route_cache_lookup(rc, t, strlen(t), now, e);
}

static struct route_cache_stats stats(const struct route_cache *rc)
{
	struct route_cache_stats st;

	route_cache_stats(rc, &st);
	return st;
}

static int stats_eq(const struct route_cache_stats *a, const struct route_cache_stats *b)
{
	return a->hits == b->hits && a->misses == b->misses && a->inserts == b->inserts &&
	       a->updates == b->updates && a->deletes == b->deletes &&
	       a->evictions == b->evictions && a->expirations == b->expirations &&
	       a->generation == b->generation && a->entries == b->entries &&
	       a->capacity == b->capacity && a->long_entries == b->long_entries &&
	       a->long_capacity == b->long_capacity && a->ttl_ms == b->ttl_ms;
}

/* Topics in use order, comma-separated. */
struct order {
	char s[4096];
	size_t n;
};

static int order_cb(void *arg, const struct route_entry *e)
{
	struct order *o = arg;
	int w = snprintf(o->s + o->n, sizeof(o->s) - o->n, "%s%s", o->n ? "," : "", e->topic);

	ck_assert_int_lt(w, (int)(sizeof(o->s) - o->n));
	ck_assert_uint_eq(strlen(e->topic), e->topic_len);
	o->n += (size_t)w;
	return 0;
}

static const char *order_of(struct route_cache *rc)
{
	static struct order o;

	o.n = 0;
	o.s[0] = 0;
	ck_assert_int_eq(route_cache_foreach(rc, order_cb, &o), 0);
	return o.s;
}

/* A topic of exactly len bytes starting with tag. */
static const char *topic_len(const char *tag, size_t len)
{
	static char b[512];
	size_t n = strlen(tag);

	memcpy(b, tag, n);
	for (size_t i = n; i < len; i++)
		b[i] = (char)('a' + i % 26);
	b[len] = 0;
	return b;
}

/* ---- raw segment access --------------------------------------------------- */

static void *map_rw(const char *name, size_t *size)
{
	struct stat st;
	int fd = shm_open(name, O_RDWR, 0);
	void *m;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fstat(fd, &st), 0);
	*size = (size_t)st.st_size;
	m = mmap(NULL, *size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ck_assert_ptr_ne(m, MAP_FAILED);
	close(fd);
	return m;
}

static uint64_t peek64(const void *m, size_t off)
{
	uint64_t v;

	memcpy(&v, (const char *)m + off, 8);
	return v;
}

static void poke(const char *name, size_t off, const void *p, size_t n)
{
	size_t size;
	char *m = map_rw(name, &size);

	ck_assert_uint_le(off + n, size);
	memcpy(m + off, p, n);
	munmap(m, size);
}

static void poke32(const char *name, size_t off, uint32_t v)
{
	poke(name, off, &v, 4);
}

/* Offset of entry index i (0-based) in the segment. */
static size_t ent_off(const char *name, uint32_t i)
{
	size_t size;
	void *m = map_rw(name, &size);
	size_t off = (size_t)peek64(m, OFF_ENTS) + (size_t)i * ENT_SIZE;

	munmap(m, size);
	return off;
}

static void make_raw(const char *name, size_t size, int random)
{
	int fd = shm_open(name, O_RDWR | O_CREAT | O_TRUNC, 0600);
	char *m;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
	if (size) {
		m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		ck_assert_ptr_ne(m, MAP_FAILED);
		for (size_t i = 0; i < size; i++)
			m[i] = random ? (char)rng() : 0;
		munmap(m, size);
	}
	close(fd);
}

static off_t shm_size(const char *name, unsigned *mode)
{
	struct stat st;
	int fd = shm_open(name, O_RDONLY, 0);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fstat(fd, &st), 0);
	close(fd);
	if (mode)
		*mode = st.st_mode & 0777;
	return st.st_size;
}

/* A segment left by a writer that died without closing (not clean): a
 * child fills it and _exits. */
static void make_unclean(uint32_t cap, unsigned n)
{
	pid_t pid;
	int status;

	route_cache_unlink(seg);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct route_cache_params p = { .capacity = cap };
		static struct route_cache *rc;      /* still reachable at _exit */
		char t[64];

		if (route_cache_open(&rc, seg, &p, NULL, 0) < 0)
			_exit(2);
		for (unsigned i = 0; i < n; i++) {
			snprintf(t, sizeof(t), "crash:%u", i);
			if (put(rc, t, "main", (uint16_t)i, ROUTE_STATE_JOINED, i) != 1)
				_exit(3);
		}
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* Opens seg expecting a rebuild whose reason contains why. */
static void expect_rebuilt(uint32_t cap, const char *why)
{
	struct route_cache_params p = { .capacity = cap };
	struct route_cache *rc;
	struct route_entry e;
	char err[256];

	ck_assert_int_eq(route_cache_open(&rc, seg, &p, err, sizeof(err)), 0);
	ck_assert_msg(strstr(err, why), "reason '%s', want '%s'", err, why);
	ck_assert_uint_eq(stats(rc).entries, 0);
	ck_assert_uint_eq(stats(rc).generation, 1);
	ck_assert_uint_eq(stats(rc).capacity, cap);
	ck_assert_int_eq(put(rc, "after:rebuild", "main", 1, ROUTE_STATE_JOINED, 5), 1);
	ck_assert_int_eq(look(rc, "after:rebuild", 6, &e), 0);
	route_cache_close(rc);
	ck_assert_int_eq(shm_size(seg, NULL), (off_t)route_cache_segment_size(&p));
}

/* ---- arguments, basics ---------------------------------------------------- */

START_TEST(test_args)
{
	struct route_cache_params p = { 0 };
	struct route_cache *rc, *rc2;
	char err[256], longname[300];
	unsigned mode;

	memset(longname, 'n', sizeof(longname));
	longname[0] = '/';
	longname[sizeof(longname) - 1] = 0;
	const char *bad[] = { NULL, "", "/", "noslash", "/a/b", longname };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		ck_assert_int_eq(route_cache_open(&rc, bad[i], NULL, err, sizeof(err)), -EINVAL);
	p.capacity = ROUTE_CACHE_MAX_CAPACITY + 1;
	ck_assert_int_eq(route_cache_open(&rc, seg, &p, err, sizeof(err)), -EINVAL);
	p.capacity = 10;
	p.long_capacity = 11;
	ck_assert_int_eq(route_cache_open(&rc, seg, &p, err, sizeof(err)), -EINVAL);
	p.long_capacity = 0;
	p.mode = 01600;
	ck_assert_int_eq(route_cache_open(&rc, seg, &p, err, sizeof(err)), -EINVAL);
	ck_assert_uint_eq(route_cache_segment_size(&p), 0);

	ck_assert_int_eq(route_cache_open(&rc, seg, NULL, err, sizeof(err)), 0);
	ck_assert_str_eq(err, "");
	struct route_cache_stats st = stats(rc);
	ck_assert_uint_eq(st.capacity, ROUTE_CACHE_DEFAULT_CAPACITY);
	ck_assert_uint_eq(st.long_capacity, ROUTE_CACHE_DEFAULT_CAPACITY / 8);
	ck_assert_uint_eq(st.ttl_ms, ROUTE_CACHE_DEFAULT_TTL_MS);
	ck_assert_uint_eq(st.generation, 1);
	ck_assert_int_eq(shm_size(seg, &mode), (off_t)route_cache_segment_size(NULL));
	ck_assert_uint_eq(mode, 0600);
	ck_assert_uint_eq(route_cache_segment_size(NULL), 180416);

	/* One writer at a time. */
	ck_assert_int_eq(route_cache_open(&rc2, seg, NULL, err, sizeof(err)), -EBUSY);
	ck_assert_ptr_nonnull(strstr(err, "another writer"));

	char ep65[66];
	memset(ep65, 'e', 65);
	ep65[65] = 0;
	ck_assert_int_eq(route_cache_put(rc, "t", 0, "ep", 1, ROUTE_STATE_JOINED, 1), -EINVAL);
	ck_assert_int_eq(route_cache_put(rc, NULL, 3, "ep", 1, ROUTE_STATE_JOINED, 1), -EINVAL);
	ck_assert_int_eq(route_cache_put(rc, topic_len("x", 256), 256, "ep", 1,
					 ROUTE_STATE_JOINED, 1), -ENAMETOOLONG);
	ck_assert_int_eq(put(rc, "t", "", 1, ROUTE_STATE_JOINED, 1), -EINVAL);
	ck_assert_int_eq(put(rc, "t", NULL, 1, ROUTE_STATE_JOINED, 1), -EINVAL);
	ck_assert_int_eq(put(rc, "t", ep65, 1, ROUTE_STATE_JOINED, 1), -EINVAL);
	ck_assert_int_eq(put(rc, "t", ep65 + 1, 1, ROUTE_STATE_JOINED, 1), 1);
	ck_assert_int_eq(put(rc, "t", "ep", 1, (enum route_state)4, 1), -EINVAL);
	ck_assert_int_eq(route_cache_lookup(rc, "t", 0, 1, NULL), -EINVAL);
	ck_assert_int_eq(route_cache_lookup(rc, topic_len("x", 300), 300, 1, NULL),
			 -ENAMETOOLONG);
	ck_assert_int_eq(route_cache_set_state(rc, NULL, "t", 1, (enum route_state)9, 1), -EINVAL);
	ck_assert_int_eq(route_cache_del(rc, NULL, "t", 0), -EINVAL);
	ck_assert_str_eq(route_state_name(ROUTE_STATE_JOINED), "joined");
	ck_assert_str_eq(route_state_name((enum route_state)7), "?");
	ck_assert_ptr_null(route_cache_close(rc));
	ck_assert_ptr_null(route_cache_close(NULL));
	ck_assert_ptr_null(route_snapshot_free(NULL));
	ck_assert_int_eq(route_cache_unlink("bad"), -EINVAL);
}
END_TEST

START_TEST(test_basic)
{
	struct route_cache *rc = open_cap(16, 0, 0);
	struct route_entry e;
	const char *t = "room:1";

	ck_assert_int_eq(put(rc, t, "main", 3, ROUTE_STATE_JOINING, 100), 1);
	ck_assert_int_eq(look(rc, t, 150, &e), 0);
	ck_assert_ptr_eq(e.topic, t);
	ck_assert_uint_eq(e.topic_len, 6);
	ck_assert_str_eq(e.endpoint, "main");
	ck_assert_uint_eq(e.slot, 3);
	ck_assert_uint_eq(e.state, ROUTE_STATE_JOINING);
	ck_assert_uint_eq(e.hits, 1);
	ck_assert_uint_eq(e.last_ms, 150);
	ck_assert_uint_eq(e.created_ms, 100);
	ck_assert_int_eq(look(rc, "room:2", 151, &e), -ENOENT);
	ck_assert_int_eq(look(rc, "room:", 151, NULL), -ENOENT);
	ck_assert_int_eq(look(rc, "room:1x", 151, NULL), -ENOENT);
	ck_assert_int_eq(look(rc, t, 152, NULL), 0);

	struct route_cache_stats st = stats(rc);
	ck_assert_uint_eq(st.hits, 2);
	ck_assert_uint_eq(st.misses, 3);
	ck_assert_uint_eq(st.inserts, 1);
	ck_assert_uint_eq(st.entries, 1);
	ck_assert_uint_eq(st.updates, 0);
	/* Binary topics are bytes. */
	ck_assert_int_eq(route_cache_put(rc, "a\0b", 3, "main", 1, ROUTE_STATE_JOINED, 1), 1);
	ck_assert_int_eq(route_cache_lookup(rc, "a\0b", 3, 2, &e), 0);
	ck_assert_int_eq(route_cache_lookup(rc, "a\0c", 3, 2, &e), -ENOENT);
	route_cache_close(rc);
}
END_TEST

START_TEST(test_lru_order)
{
	struct route_cache *rc = open_cap(4, 0, 0);

	ck_assert_int_eq(put(rc, "a", "ep", 0, ROUTE_STATE_JOINED, 1), 1);
	ck_assert_int_eq(put(rc, "b", "ep", 0, ROUTE_STATE_JOINED, 2), 1);
	ck_assert_int_eq(put(rc, "c", "ep", 0, ROUTE_STATE_NONE, 3), 1);
	ck_assert_int_eq(put(rc, "d", "ep", 0, ROUTE_STATE_JOINED, 4), 1);
	ck_assert_str_eq(order_of(rc), "d,c,b,a");
	ck_assert_int_eq(look(rc, "b", 5, NULL), 0);
	ck_assert_str_eq(order_of(rc), "b,d,c,a");
	ck_assert_int_eq(look(rc, "b", 6, NULL), 0);            /* already first */
	ck_assert_str_eq(order_of(rc), "b,d,c,a");
	/* Full: the entry not joined goes first, though a is older. */
	ck_assert_int_eq(put(rc, "e", "ep", 0, ROUTE_STATE_JOINED, 7), 1);
	ck_assert_str_eq(order_of(rc), "e,b,d,a");              /* c evicted */
	ck_assert_int_eq(look(rc, "c", 8, NULL), -ENOENT);
	ck_assert_int_eq(look(rc, "a", 8, NULL), 0);
	ck_assert_str_eq(order_of(rc), "a,e,b,d");
	ck_assert_int_eq(route_cache_set_state(rc, NULL, "d", 1, ROUTE_STATE_NONE, 9), 0);
	ck_assert_str_eq(order_of(rc), "d,a,e,b");
	ck_assert_int_eq(put(rc, "d", "ep", 5, ROUTE_STATE_ERRORED, 10), 0);  /* update */
	ck_assert_str_eq(order_of(rc), "d,a,e,b");
	ck_assert_int_eq(put(rc, "f", "ep", 0, ROUTE_STATE_JOINED, 11), 1);
	ck_assert_str_eq(order_of(rc), "f,a,e,b");              /* d, the most recent */
	/* Every entry joined: the least recently used one goes. */
	ck_assert_int_eq(put(rc, "g", "ep", 0, ROUTE_STATE_JOINED, 12), 1);
	ck_assert_str_eq(order_of(rc), "g,f,a,e");
	ck_assert_uint_eq(stats(rc).evictions, 3);
	ck_assert_uint_eq(stats(rc).entries, 4);
	route_cache_close(rc);
}
END_TEST

/* ---- TTL -------------------------------------------------------------------- */

START_TEST(test_ttl)
{
	struct route_cache *rc = open_cap(100, 0, 1000);
	struct route_entry e;

	ck_assert_int_eq(put(rc, "j", "ep", 0, ROUTE_STATE_JOINED, 0), 1);
	ck_assert_int_eq(put(rc, "n", "ep", 0, ROUTE_STATE_NONE, 0), 1);
	ck_assert_int_eq(put(rc, "g", "ep", 0, ROUTE_STATE_JOINING, 0), 1);
	ck_assert_int_eq(put(rc, "e", "ep", 0, ROUTE_STATE_ERRORED, 0), 1);
	ck_assert_int_eq(route_cache_cleanup(rc, 1000), 0);    /* exactly ttl: kept */
	ck_assert_int_eq(look(rc, "n", 1000, NULL), 0);        /* a use */
	ck_assert_int_eq(look(rc, "g", 1001, NULL), -ENOENT);  /* expired on lookup */
	ck_assert_uint_eq(stats(rc).expirations, 1);
	ck_assert_uint_eq(stats(rc).misses, 1);
	ck_assert_int_eq(route_cache_cleanup(rc, 1001), 1);    /* e; n was used */
	ck_assert_int_eq(look(rc, "e", 1001, NULL), -ENOENT);
	ck_assert_str_eq(order_of(rc), "n,j");
	ck_assert_int_eq(route_cache_cleanup(rc, 100000), 1);  /* n */
	ck_assert_int_eq(look(rc, "j", 100000, &e), 0);        /* joined never expires */
	ck_assert_uint_eq(stats(rc).expirations, 3);
	ck_assert_uint_eq(stats(rc).entries, 1);

	/* Leaving: the TTL counts from the state change. */
	ck_assert_int_eq(route_cache_set_state(rc, NULL, "j", 1, ROUTE_STATE_NONE, 200000), 0);
	ck_assert_int_eq(route_cache_cleanup(rc, 201000), 0);
	ck_assert_int_eq(route_cache_cleanup(rc, 201001), 1);
	ck_assert_int_eq(route_cache_set_state(rc, NULL, "j", 1, ROUTE_STATE_JOINED, 201002), -ENOENT);

	/* A put over an expired entry is an insert; set_state sees it absent. */
	ck_assert_int_eq(put(rc, "x", "ep", 0, ROUTE_STATE_NONE, 300000), 1);
	ck_assert_int_eq(put(rc, "x", "ep", 0, ROUTE_STATE_NONE, 302000), 1);
	ck_assert_uint_eq(stats(rc).expirations, 5);
	ck_assert_int_eq(route_cache_set_state(rc, NULL, "x", 1, ROUTE_STATE_JOINED, 303001), -ENOENT);
	/* A clock behind the latest stamp counts as that stamp: no expiry. */
	ck_assert_int_eq(put(rc, "y", "ep", 0, ROUTE_STATE_NONE, 500000), 1);
	ck_assert_int_eq(look(rc, "y", 10, NULL), 0);
	ck_assert_int_eq(route_cache_del(rc, NULL, "y", 1), 0);
	ck_assert_uint_eq(stats(rc).entries, 0);
	/* Cleanup takes the expired ones, oldest first, and stops at the first
	 * that is not: t0, t2 .. t10 (the odd ones are joined). */
	for (unsigned i = 0; i < 50; i++) {
		char t[16];
		snprintf(t, sizeof(t), "t%u", i);
		ck_assert_int_eq(put(rc, t, "ep", 0, i % 2 ? ROUTE_STATE_JOINED : ROUTE_STATE_NONE,
				     600000 + i * 10), 1);
	}
	ck_assert_int_eq(route_cache_cleanup(rc, 601101), 6);
	ck_assert_int_eq(look(rc, "t10", 601101, NULL), -ENOENT);
	ck_assert_int_eq(look(rc, "t12", 601101, NULL), 0);
	ck_assert_int_eq(look(rc, "t1", 601101, NULL), 0);
	ck_assert_uint_eq(stats(rc).entries, 44);
	route_cache_close(rc);
}
END_TEST

/* ---- eviction at capacity ------------------------------------------------ */

START_TEST(test_evict_cap1)
{
	struct route_cache *rc = open_cap(1, 0, 0);
	char longt[128];

	ck_assert_uint_eq(stats(rc).long_capacity, 1);
	ck_assert_int_eq(put(rc, "a", "ep", 1, ROUTE_STATE_JOINED, 1), 1);
	ck_assert_int_eq(put(rc, "b", "ep", 2, ROUTE_STATE_JOINED, 2), 1);
	ck_assert_int_eq(look(rc, "a", 3, NULL), -ENOENT);
	ck_assert_int_eq(look(rc, "b", 3, NULL), 0);
	ck_assert_int_eq(put(rc, "b", "ep", 3, ROUTE_STATE_JOINED, 4), 0);
	strcpy(longt, topic_len("long:", 100));
	ck_assert_int_eq(put(rc, longt, "ep", 4, ROUTE_STATE_JOINED, 5), 1);
	ck_assert_int_eq(look(rc, "b", 6, NULL), -ENOENT);
	ck_assert_str_eq(order_of(rc), longt);
	ck_assert_int_eq(put(rc, topic_len("long2:", 200), "ep", 4, ROUTE_STATE_JOINED, 7), 1);
	ck_assert_int_eq(put(rc, "s", "ep", 5, ROUTE_STATE_JOINED, 8), 1);
	ck_assert_str_eq(order_of(rc), "s");
	struct route_cache_stats st = stats(rc);
	ck_assert_uint_eq(st.entries, 1);
	ck_assert_uint_eq(st.long_entries, 0);
	ck_assert_uint_eq(st.evictions, 4);
	ck_assert_int_eq(route_cache_del(rc, NULL, "s", 1), 0);
	ck_assert_str_eq(order_of(rc), "");
	ck_assert_int_eq(put(rc, "t", "ep", 5, ROUTE_STATE_JOINED, 9), 1);
	ck_assert_uint_eq(stats(rc).evictions, 4);
	route_cache_close(rc);
}
END_TEST

START_TEST(test_evict_cap2)
{
	struct route_cache *rc = open_cap(2, 0, 0);

	ck_assert_int_eq(put(rc, "a", "ep", 1, ROUTE_STATE_JOINED, 1), 1);
	ck_assert_int_eq(put(rc, "b", "ep", 2, ROUTE_STATE_JOINED, 2), 1);
	ck_assert_int_eq(look(rc, "a", 3, NULL), 0);
	ck_assert_int_eq(put(rc, "c", "ep", 3, ROUTE_STATE_JOINED, 4), 1);
	ck_assert_str_eq(order_of(rc), "c,a");
	ck_assert_int_eq(put(rc, "d", "ep", 3, ROUTE_STATE_JOINED, 5), 1);
	ck_assert_str_eq(order_of(rc), "d,c");
	ck_assert_uint_eq(stats(rc).evictions, 2);
	route_cache_close(rc);
}
END_TEST

START_TEST(test_evict_cap1000)
{
	struct route_cache *rc = open_cap(1000, 0, 0);
	char t[32];

	for (unsigned i = 0; i < 1000; i++) {
		snprintf(t, sizeof(t), "old:%u", i);
		CHECK(put(rc, t, "ep", (uint16_t)i, ROUTE_STATE_JOINED, i) == 1, "put %u", i);
	}
	ck_assert_uint_eq(stats(rc).entries, 1000);
	ck_assert_uint_eq(stats(rc).evictions, 0);
	ck_assert_int_eq(look(rc, "old:0", 1000, NULL), 0);     /* now the most recent */
	for (unsigned i = 0; i < 999; i++) {
		snprintf(t, sizeof(t), "new:%u", i);
		CHECK(put(rc, t, "ep", 0, ROUTE_STATE_JOINED, 1001 + i) == 1, "put new %u", i);
		snprintf(t, sizeof(t), "old:%u", i + 1);
		CHECK(look(rc, t, 5000, NULL) == -ENOENT, "old:%u survived", i + 1);
	}
	ck_assert_int_eq(look(rc, "old:0", 5000, NULL), 0);
	ck_assert_int_eq(put(rc, "new:999", "ep", 0, ROUTE_STATE_JOINED, 5001), 1);
	ck_assert_int_eq(put(rc, "new:1000", "ep", 0, ROUTE_STATE_JOINED, 5002), 1);
	ck_assert_int_eq(look(rc, "new:0", 5003, NULL), -ENOENT);
	ck_assert_int_eq(look(rc, "old:0", 5003, NULL), 0);
	ck_assert_uint_eq(stats(rc).evictions, 1001);
	ck_assert_uint_eq(stats(rc).entries, 1000);
	route_cache_close(rc);
}
END_TEST

/* ---- update, delete, endpoints ------------------------------------------- */

START_TEST(test_update_in_place)
{
	struct route_cache *rc = open_cap(8, 0, 1000);
	struct route_entry e;

	ck_assert_int_eq(put(rc, "a", "ep2", 1, ROUTE_STATE_JOINING, 10), 1);
	ck_assert_int_eq(look(rc, "a", 11, NULL), 0);
	ck_assert_int_eq(put(rc, "a", "ep2", 7, ROUTE_STATE_JOINED, 20), 0);
	ck_assert_int_eq(look(rc, "a", 21, &e), 0);
	ck_assert_str_eq(e.endpoint, "ep2");
	ck_assert_uint_eq(e.slot, 7);
	ck_assert_uint_eq(e.state, ROUTE_STATE_JOINED);
	ck_assert_uint_eq(e.created_ms, 10);
	ck_assert_uint_eq(e.last_ms, 21);
	ck_assert_uint_eq(e.hits, 2);
	/* Joined: no TTL; back to none: TTL from then. */
	ck_assert_int_eq(route_cache_cleanup(rc, 5000), 0);
	ck_assert_int_eq(put(rc, "a", "ep2", 7, ROUTE_STATE_NONE, 6000), 0);
	ck_assert_int_eq(route_cache_cleanup(rc, 7000), 0);
	ck_assert_int_eq(route_cache_cleanup(rc, 7001), 1);
	struct route_cache_stats st = stats(rc);
	ck_assert_uint_eq(st.updates, 2);
	ck_assert_uint_eq(st.inserts, 1);
	ck_assert_uint_eq(st.entries, 0);
	route_cache_close(rc);
}
END_TEST

START_TEST(test_delete_reinsert)
{
	struct route_cache *rc = open_cap(10, 0, 0);
	struct route_entry e;
	char t[16];

	ck_assert_int_eq(put(rc, "a", "ep", 1, ROUTE_STATE_JOINED, 1), 1);
	ck_assert_int_eq(look(rc, "a", 2, NULL), 0);
	ck_assert_int_eq(route_cache_del(rc, NULL, "a", 1), 0);
	ck_assert_int_eq(route_cache_del(rc, NULL, "a", 1), -ENOENT);
	ck_assert_int_eq(look(rc, "a", 3, NULL), -ENOENT);
	ck_assert_int_eq(put(rc, "a", "ep", 2, ROUTE_STATE_JOINED, 4), 1);
	ck_assert_int_eq(look(rc, "a", 5, &e), 0);
	ck_assert_uint_eq(e.hits, 1);
	ck_assert_uint_eq(e.created_ms, 4);
	ck_assert_uint_eq(stats(rc).deletes, 1);
	ck_assert_uint_eq(stats(rc).inserts, 2);
	/* Many rounds through the free list. */
	for (unsigned round = 0; round < 50; round++) {
		for (unsigned i = 0; i < 10; i++) {
			snprintf(t, sizeof(t), "r%u:%u", round, i);
			CHECK(put(rc, t, "ep", (uint16_t)i, ROUTE_STATE_JOINED, round) == 1, "put");
		}
		for (unsigned i = 0; i < 10; i++) {
			snprintf(t, sizeof(t), "r%u:%u", round, (i * 7) % 10);
			CHECK(route_cache_del(rc, NULL, t, strlen(t)) == 0, "del %s", t);
		}
		CHECK(stats(rc).entries == 0, "entries");
	}
	ck_assert_uint_eq(stats(rc).evictions, 1);      /* "a" at the first round */
	route_cache_close(rc);
}
END_TEST

START_TEST(test_endpoints)
{
	struct route_cache *rc = open_cap(300, 0, 0);
	struct route_entry e;
	char t[32], ep[32];

	for (unsigned i = 0; i < ROUTE_ENDPOINTS_MAX; i++) {
		snprintf(t, sizeof(t), "t%u", i);
		snprintf(ep, sizeof(ep), "endpoint-%u", i);
		CHECK(put(rc, t, ep, 0, ROUTE_STATE_JOINED, 1) == 1, "put %u", i);
	}
	ck_assert_int_eq(put(rc, "t255", "endpoint-255", 0, ROUTE_STATE_JOINED, 1), -ENOSPC);
	ck_assert_int_eq(put(rc, "t256", "endpoint-3", 0, ROUTE_STATE_JOINED, 1), 1);
	ck_assert_int_eq(route_cache_del(rc, NULL, "t0", 2), 0);         /* frees endpoint-0 */
	ck_assert_int_eq(put(rc, "t255", "endpoint-255", 0, ROUTE_STATE_JOINED, 1), 1);
	ck_assert_int_eq(route_cache_del(rc, NULL, "t1", 2), 0);  /* frees endpoint-1 */
	ck_assert_int_eq(put(rc, "t1", "endpoint-3", 0, ROUTE_STATE_JOINED, 1), 1);
	ck_assert_int_eq(put(rc, "t257", "endpoint-257", 0, ROUTE_STATE_JOINED, 1), 1);
	ck_assert_int_eq(put(rc, "t258", "endpoint-258", 0, ROUTE_STATE_JOINED, 1), -ENOSPC);
	ck_assert_int_eq(look(rc, "t1", 2, &e), 0);
	ck_assert_str_eq(e.endpoint, "endpoint-3");
	ck_assert_int_eq(look(rc, "t257", 2, &e), 0);
	ck_assert_str_eq(e.endpoint, "endpoint-257");
	ck_assert_int_eq(look(rc, "t254", 2, &e), 0);
	ck_assert_str_eq(e.endpoint, "endpoint-254");
	route_cache_close(rc);
	/* And the names survive a restart. */
	rc = open_cap(300, 0, 0);
	ck_assert_int_eq(look(rc, "t257", 3, &e), 0);
	ck_assert_str_eq(e.endpoint, "endpoint-257");
	route_cache_close(rc);
}
END_TEST

/* ---- hash collisions, long topics ------------------------------------------ */

START_TEST(test_collisions)
{
	/* 64 entries → 128 buckets: find 40 topics of one bucket. */
	struct route_cache *rc = open_cap(64, 0, 0);
	char same[40][24], t[24];
	unsigned n = 0;
	uint64_t bucket0 = 0;

	for (unsigned i = 0; n < 40; i++) {
		snprintf(t, sizeof(t), "c%u", i);
		uint64_t b = hmap_hash(t, strlen(t)) & 127;
		if (n == 0)
			bucket0 = b;
		if (b == bucket0)
			strcpy(same[n++], t);
	}
	for (unsigned i = 0; i < n; i++)
		ck_assert_int_eq(put(rc, same[i], "ep", (uint16_t)i, ROUTE_STATE_JOINED, i), 1);
	for (unsigned i = 0; i < n; i++) {
		struct route_entry e;
		CHECK(look(rc, same[i], 100, &e) == 0 && e.slot == i, "%s", same[i]);
	}
	/* Delete head, middle and tail of the chain, every third. */
	for (unsigned i = 0; i < n; i += 3)
		ck_assert_int_eq(route_cache_del(rc, NULL, same[i], strlen(same[i])), 0);
	for (unsigned i = 0; i < n; i++)
		CHECK(look(rc, same[i], 101, NULL) == (i % 3 ? 0 : -ENOENT), "%s", same[i]);
	for (unsigned i = 0; i < n; i += 3)
		ck_assert_int_eq(put(rc, same[i], "ep", 9, ROUTE_STATE_JOINED, 102), 1);
	for (unsigned i = 0; i < n; i++)
		CHECK(look(rc, same[i], 103, NULL) == 0, "%s", same[i]);
	route_cache_close(rc);

	/* A tiny table churned by many keys: exactly the last 8 are there. */
	route_cache_unlink(seg);
	rc = open_cap(8, 0, 0);
	for (unsigned i = 0; i < 2000; i++) {
		snprintf(t, sizeof(t), "churn:%u", i);
		CHECK(put(rc, t, "ep", 0, ROUTE_STATE_JOINED, i) == 1, "put");
		if (i % 97 == 0) {
			for (unsigned j = 0; j <= i; j++) {
				snprintf(t, sizeof(t), "churn:%u", j);
				int want = j + 8 > i ? 0 : -ENOENT;
				CHECK(look(rc, t, i, NULL) == want, "churn %u at %u", j, i);
			}
		}
	}
	route_cache_close(rc);
}
END_TEST

START_TEST(test_long_topics)
{
	struct route_cache *rc = open_cap(100, 4, 0);
	struct route_entry e;
	char a[300], b[300];

	/* Topics equal in their first 64 bytes differ after. */
	strcpy(a, topic_len("P", 200));
	strcpy(b, a);
	b[150] = 'Z';
	ck_assert_int_eq(put(rc, a, "ep", 1, ROUTE_STATE_JOINED, 1), 1);
	ck_assert_int_eq(put(rc, b, "ep", 2, ROUTE_STATE_JOINED, 2), 1);
	ck_assert_int_eq(look(rc, a, 3, &e), 0);
	ck_assert_uint_eq(e.slot, 1);
	ck_assert_int_eq(look(rc, b, 3, &e), 0);
	ck_assert_uint_eq(e.slot, 2);
	b[199] = 0;
	ck_assert_int_eq(look(rc, b, 3, NULL), -ENOENT);
	ck_assert_int_eq(route_cache_del(rc, NULL, a, 200), 0);
	b[199] = a[199];
	ck_assert_int_eq(route_cache_del(rc, NULL, b, 200), 0);
	ck_assert_uint_eq(stats(rc).long_entries, 0);

	/* Boundaries: 64 inline, 65 and 255 with a long slot. */
	const size_t lens[] = { 1, 63, 64, 65, 128, 254, 255 };
	for (size_t i = 0; i < ARRAY_SIZE(lens); i++) {
		const char *t = topic_len("B", lens[i]);
		ck_assert_int_eq(put(rc, t, "ep", (uint16_t)lens[i], ROUTE_STATE_JOINED, 10), 1);
	}
	ck_assert_uint_eq(stats(rc).long_entries, 4);
	for (size_t i = 0; i < ARRAY_SIZE(lens); i++) {
		const char *t = topic_len("B", lens[i]);
		ck_assert_int_eq(look(rc, t, 11, &e), 0);
		ck_assert_uint_eq(e.slot, lens[i]);
	}
	ck_assert_str_eq(strrchr(order_of(rc), ',') + 1, "B");
	/* The long pool is full (4): a fifth long topic evicts the least
	 * recently used long one, not the short ones. */
	ck_assert_int_eq(look(rc, topic_len("B", 65), 12, NULL), 0);
	ck_assert_int_eq(put(rc, topic_len("C", 100), "ep", 0, ROUTE_STATE_JOINED, 13), 1);
	ck_assert_int_eq(look(rc, topic_len("B", 128), 14, NULL), -ENOENT);
	ck_assert_int_eq(look(rc, topic_len("B", 65), 14, NULL), 0);
	ck_assert_int_eq(look(rc, topic_len("B", 1), 14, NULL), 0);
	ck_assert_int_eq(look(rc, topic_len("B", 64), 14, NULL), 0);
	struct route_cache_stats st = stats(rc);
	ck_assert_uint_eq(st.evictions, 1);
	ck_assert_uint_eq(st.long_entries, 4);
	ck_assert_uint_eq(st.entries, 7);
	route_cache_close(rc);
	/* And they survive a restart, checked byte by byte by the hash. */
	rc = open_cap(100, 4, 0);
	ck_assert_int_eq(look(rc, topic_len("B", 255), 20, &e), 0);
	ck_assert_int_eq(look(rc, topic_len("C", 100), 20, &e), 0);
	route_cache_close(rc);
}
END_TEST

/* ---- restart ------------------------------------------------------------ */

START_TEST(test_reopen)
{
	struct route_cache_params p = { .capacity = 50, .ttl_ms = 5000 };
	struct route_cache *rc;
	struct route_cache_stats st1, st2;
	struct route_entry e;
	char before[4096], t[512], err[256];

	ck_assert_int_eq(route_cache_open(&rc, seg, &p, err, sizeof(err)), 0);
	for (unsigned i = 0; i < 60; i++) {
		const char *tl = i % 4 ? topic_len("re:", 10) : topic_len("relong:", 90 + i);
		snprintf(t, sizeof(t), "%s", tl);
		t[3] = (char)('A' + i % 26);
		t[4] = (char)('A' + i / 26);
		CHECK(put(rc, t, i % 3 ? "alpha" : "beta", (uint16_t)i,
			  (enum route_state)(i % 4), 100 + i) >= 0, "put");
		if (i % 5 == 0)
			CHECK(look(rc, t, 200 + i, NULL) == 0, "look");
	}
	route_cache_del(rc, NULL, t, strlen(t));
	look(rc, "missing", 300, NULL);
	strcpy(before, order_of(rc));
	st1 = stats(rc);
	route_cache_close(rc);

	p.ttl_ms = 7000;
	ck_assert_int_eq(route_cache_open(&rc, seg, &p, err, sizeof(err)), 1);
	ck_assert_str_eq(err, "");
	st2 = stats(rc);
	ck_assert_str_eq(order_of(rc), before);
	ck_assert_uint_eq(st2.generation, 2);
	ck_assert_uint_eq(st2.ttl_ms, 7000);
	st2.generation = st1.generation;
	st2.ttl_ms = st1.ttl_ms;
	ck_assert(stats_eq(&st1, &st2));
	ck_assert_uint_eq(st2.entries, 49);
	ck_assert_int_eq(route_cache_sync(rc), 0);
	ck_assert_int_eq(look(rc, "missing", 301, NULL), -ENOENT);  /* clears clean */
	route_cache_close(rc);
	ck_assert_int_eq(route_cache_open(&rc, seg, &p, err, sizeof(err)), 1);
	ck_assert_uint_eq(stats(rc).generation, 3);
	ck_assert_uint_eq(stats(rc).misses, st1.misses + 1);
	snprintf(t, sizeof(t), "%s", topic_len("re:", 10));
	t[3] = 'A' + 21;
	t[4] = 'A';
	ck_assert_int_eq(look(rc, t, 400, &e), 0);
	ck_assert_uint_eq(e.slot, 21);
	ck_assert_str_eq(e.endpoint, "beta");
	ck_assert_uint_eq(e.state, ROUTE_STATE_JOINING);
	route_cache_close(rc);
}
END_TEST

START_TEST(test_crash_recovery)
{
	struct route_cache_params p = { .capacity = 32 };
	struct route_cache *rc;
	char err[256];

	/* The writer died without close: no checksum, but the structure holds. */
	make_unclean(32, 40);
	ck_assert_int_eq(route_cache_open(&rc, seg, &p, err, sizeof(err)), 1);
	ck_assert_uint_eq(stats(rc).entries, 32);
	ck_assert_uint_eq(stats(rc).evictions, 8);
	ck_assert_int_eq(look(rc, "crash:39", 100, NULL), 0);
	ck_assert_int_eq(look(rc, "crash:7", 100, NULL), -ENOENT);
	route_cache_close(rc);
}
END_TEST

/* ---- bad segments are rebuilt ---------------------------------------------- */

static void make_valid(uint32_t cap, int clean)
{
	route_cache_unlink(seg);
	if (!clean) {
		make_unclean(cap, 10);
		return;
	}
	struct route_cache *rc = open_cap(cap, 0, 0);
	for (unsigned i = 0; i < 10; i++) {
		char t[16];
		snprintf(t, sizeof(t), "v%u", i);
		ck_assert_int_eq(put(rc, t, "main", (uint16_t)i, ROUTE_STATE_JOINED, i), 1);
	}
	route_cache_close(rc);
}

START_TEST(test_rebuild_foreign)
{
	make_raw(seg, 1 << 20, 1);
	expect_rebuilt(100, "magic");
	make_raw(seg, 1 << 20, 0);
	expect_rebuilt(100, "magic");
	make_raw(seg, 10, 1);
	expect_rebuilt(100, "truncated");
	make_raw(seg, 0, 0);
	expect_rebuilt(100, "truncated");
}
END_TEST

START_TEST(test_rebuild_header)
{
	make_valid(100, 1);
	poke32(seg, OFF_VERSION, 99);
	expect_rebuilt(100, "version 99");

	make_valid(100, 1);
	poke32(seg, OFF_CAPACITY, 200);          /* not via the checksum: caught */
	expect_rebuilt(100, "header checksum");

	make_valid(100, 1);
	expect_rebuilt(200, "capacity 100, want 200");

	make_valid(100, 1);
	{
		struct route_cache_params p = { .capacity = 100, .long_capacity = 50 };
		struct route_cache *rc;
		char err[256];
		ck_assert_int_eq(route_cache_open(&rc, seg, &p, err, sizeof(err)), 0);
		ck_assert_ptr_nonnull(strstr(err, "long-topic capacity"));
		route_cache_close(rc);
	}
}
END_TEST

START_TEST(test_rebuild_size)
{
	struct route_cache_params p = { .capacity = 100 };
	size_t total = route_cache_segment_size(&p);
	int fd;

	make_valid(100, 1);
	fd = shm_open(seg, O_RDWR, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)(total / 2)), 0);
	close(fd);
	expect_rebuilt(100, "truncated");

	make_valid(100, 1);
	fd = shm_open(seg, O_RDWR, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)(total + 4096)), 0);
	close(fd);
	expect_rebuilt(100, "size");
}
END_TEST

START_TEST(test_rebuild_corrupt)
{
	/* Clean segment, one data byte changed: only the checksum sees it. */
	make_valid(100, 1);
	poke(seg, ent_off(seg, 3) + ENT_SLOT, &(uint16_t){ 0xBEEF }, 2);
	expect_rebuilt(100, "table checksum");

	/* A writer died mid-update. */
	make_valid(100, 1);
	{
		uint64_t odd = 7;
		poke(seg, OFF_SEQ, &odd, 8);
	}
	expect_rebuilt(100, "died during an update");

	/* Unclean segments: the structure checks. */
	make_valid(100, 0);
	poke32(seg, ent_off(seg, 4) + ENT_LRU_NEXT, 0x7FFFFFF0);
	expect_rebuilt(100, "out of range");

	make_valid(100, 0);
	poke32(seg, ent_off(seg, 4) + ENT_LRU_NEXT, 0);
	expect_rebuilt(100, "LRU list");

	make_valid(100, 0);
	poke(seg, ent_off(seg, 2) + ENT_KEY, "X", 1);
	expect_rebuilt(100, "hash");

	make_valid(100, 0);
	{
		size_t size;
		char *m = map_rw(seg, &size);
		uint32_t *b = (uint32_t *)(void *)(m + peek64(m, OFF_BUCKETS));
		unsigned i = 0;
		while (!b[i])
			i++;
		b[i] = 0;
		munmap(m, size);
	}
	expect_rebuilt(100, "hash chains");

	make_valid(100, 0);
	{
		size_t size;
		char *m = map_rw(seg, &size);
		uint32_t *b = (uint32_t *)(void *)(m + peek64(m, OFF_BUCKETS));
		unsigned i = 0;
		while (!b[i])
			i++;
		b[i + 1] = b[i];                 /* an entry in the wrong bucket */
		munmap(m, size);
	}
	expect_rebuilt(100, "hash chain");
}
END_TEST

START_TEST(test_mode)
{
	struct route_cache_params p = { .capacity = 10, .mode = 0640 };
	struct route_cache *rc;
	unsigned mode;
	char err[256];

	ck_assert_int_eq(route_cache_open(&rc, seg, &p, err, sizeof(err)), 0);
	shm_size(seg, &mode);
	ck_assert_uint_eq(mode, 0640);
	route_cache_close(rc);
	p.mode = 0;
	ck_assert_int_eq(route_cache_open(&rc, seg, &p, err, sizeof(err)), 1);
	shm_size(seg, &mode);
	ck_assert_uint_eq(mode, 0600);
	route_cache_close(rc);
}
END_TEST

/* Indices changed behind the writer's back: -EIO, and a reopen rebuilds. */
START_TEST(test_runtime_corruption)
{
	struct route_cache *rc = open_cap(16, 0, 0);
	size_t size;
	char t[16];

	for (unsigned i = 0; i < 16; i++) {
		snprintf(t, sizeof(t), "rt%u", i);
		ck_assert_int_eq(put(rc, t, "ep", 0, ROUTE_STATE_JOINED, i), 1);
	}
	char *m = map_rw(seg, &size);
	uint32_t *b = (uint32_t *)(void *)(m + peek64(m, OFF_BUCKETS));
	for (unsigned i = 0; i < 32; i++)
		if (b[i])
			b[i] = 0x7FFFFFF0;
	munmap(m, size);
	ck_assert_int_eq(look(rc, "rt3", 100, NULL), -EIO);
	ck_assert_int_eq(put(rc, "new", "ep", 0, ROUTE_STATE_JOINED, 100), -EIO);
	ck_assert_int_eq(route_cache_cleanup(rc, 100), -EIO);
	ck_assert_int_eq(route_cache_foreach(rc, order_cb, NULL), -EIO);
	ck_assert_int_eq(route_cache_sync(rc), -EIO);
	route_cache_close(rc);
	expect_rebuilt(16, "hash chain");

	/* A bad LRU tail is met by the eviction. */
	rc = open_cap(4, 0, 0);
	for (unsigned i = 0; i < 4; i++) {
		snprintf(t, sizeof(t), "lt%u", i);
		ck_assert_int_eq(put(rc, t, "ep", 0, ROUTE_STATE_JOINED, i), 1);
	}
	m = map_rw(seg, &size);
	memcpy(m + OFF_LRU_TAIL, &(uint32_t){ 999 }, 4);
	munmap(m, size);
	ck_assert_int_eq(put(rc, "lt9", "ep", 0, ROUTE_STATE_JOINED, 9), -EIO);
	route_cache_close(rc);
	expect_rebuilt(4, "tail");
}
END_TEST

/* ---- foreach ---------------------------------------------------------------- */

static int reenter_cb(void *arg, const struct route_entry *e)
{
	struct route_cache *rc = arg;

	CHECK(route_cache_lookup(rc, e->topic, e->topic_len, 1, NULL) == -EBUSY, "lookup");
	CHECK(route_cache_put(rc, "x", 1, "ep", 0, ROUTE_STATE_JOINED, 1) == -EBUSY, "put");
	CHECK(route_cache_del(rc, NULL, e->topic, e->topic_len) == -EBUSY, "del");
	CHECK(route_cache_cleanup(rc, 1) == -EBUSY, "cleanup");
	CHECK(route_cache_foreach(rc, reenter_cb, rc) == -EBUSY, "foreach");
	return e->slot == 2 ? 42 : 0;
}

START_TEST(test_foreach)
{
	struct route_cache *rc = open_cap(8, 0, 0);

	ck_assert_int_eq(route_cache_foreach(rc, order_cb, NULL) , 0);   /* empty: no call */
	for (unsigned i = 0; i < 5; i++) {
		char t[8];
		snprintf(t, sizeof(t), "f%u", i);
		ck_assert_int_eq(put(rc, t, "ep", (uint16_t)i, ROUTE_STATE_JOINED, i), 1);
	}
	ck_assert_int_eq(route_cache_foreach(rc, reenter_cb, rc), 42);    /* stopped at f2 */
	ck_assert_str_eq(order_of(rc), "f4,f3,f2,f1,f0");
	route_cache_close(rc);
}
END_TEST

/* ---- snapshots -------------------------------------------------------------- */

struct collect {
	struct route_entry e[128];
	char topics[128][ROUTE_TOPIC_MAX + 1];
	char eps[128][ROUTE_ENDPOINT_MAX + 1];
	size_t n;
};

static int collect_cb(void *arg, const struct route_entry *e)
{
	struct collect *c = arg;

	ck_assert_uint_lt(c->n, ARRAY_SIZE(c->e));
	c->e[c->n] = *e;
	memcpy(c->topics[c->n], e->topic, e->topic_len + 1);
	strcpy(c->eps[c->n], e->endpoint);
	c->n++;
	return 0;
}

static void snapshot_matches(struct route_cache *rc, const struct route_snapshot *s)
{
	static struct collect c;
	struct route_cache_stats st = stats(rc);

	c.n = 0;
	ck_assert_int_eq(route_cache_foreach(rc, collect_cb, &c), 0);
	ck_assert_uint_eq(s->n, c.n);
	ck_assert(stats_eq(&s->stats, &st));
	for (size_t i = 0; i < c.n; i++) {
		const struct route_entry *a = &s->entries[i], *b = &c.e[i];
		ck_assert_uint_eq(a->topic_len, b->topic_len);
		ck_assert(memcmp(a->topic, c.topics[i], a->topic_len + 1) == 0);
		ck_assert_str_eq(a->endpoint, c.eps[i]);
		ck_assert_uint_eq(a->slot, b->slot);
		ck_assert_uint_eq(a->state, b->state);
		ck_assert_uint_eq(a->hits, b->hits);
		ck_assert_uint_eq(a->last_ms, b->last_ms);
		ck_assert_uint_eq(a->created_ms, b->created_ms);
	}
}

START_TEST(test_snapshot)
{
	struct route_cache *rc = open_cap(20, 5, 0);
	struct route_snapshot *s;
	char err[256];

	ck_assert_int_eq(route_cache_snapshot(seg, &s, err, sizeof(err)), 0);
	ck_assert_uint_eq(s->n, 0);
	ck_assert_uint_ge(s->tries, 1);
	s = route_snapshot_free(s);
	for (unsigned i = 0; i < 30; i++) {
		const char *t = topic_len(i % 3 ? "s" : "slong", i % 3 ? 5 + i : 70 + i * 5);
		char tt[520];
		snprintf(tt, sizeof(tt), "%u%s", i, t);
		ck_assert_int_ge(put(rc, tt, i % 2 ? "one" : "two", (uint16_t)i,
				     (enum route_state)(i % 4), i), 0);
		if (i % 4 == 0)
			look(rc, tt, 100 + i, NULL);
	}
	ck_assert_int_eq(route_cache_snapshot(seg, &s, err, sizeof(err)), 0);
	snapshot_matches(rc, s);
	ck_assert_uint_eq(s->n, 20);
	s = route_snapshot_free(s);

	/* Read-only is enough: take write permission away from everyone. */
	int fd = shm_open(seg, O_RDONLY, 0);
	ck_assert_int_eq(fchmod(fd, 0400), 0);
	close(fd);
	ck_assert_int_eq(route_cache_snapshot(seg, &s, err, sizeof(err)), 0);
	s = route_snapshot_free(s);
	/* And after the writer is gone. */
	route_cache_close(rc);
	ck_assert_int_eq(route_cache_snapshot(seg, &s, err, sizeof(err)), 0);
	ck_assert_uint_eq(s->n, 20);
	s = route_snapshot_free(s);

	ck_assert_int_eq(route_cache_snapshot("/phxd-rc-no-such-segment", &s, err, sizeof(err)),
			 -ENOENT);
	ck_assert_int_eq(route_cache_snapshot("bad", &s, err, sizeof(err)), -EINVAL);
}
END_TEST

START_TEST(test_snapshot_bad)
{
	struct route_snapshot *s;
	char err[256];

	make_raw(seg, 4096, 1);
	ck_assert_int_eq(route_cache_snapshot(seg, &s, err, sizeof(err)), -EPROTO);
	ck_assert_ptr_nonnull(strstr(err, "magic"));
	make_raw(seg, 8, 1);
	ck_assert_int_eq(route_cache_snapshot(seg, &s, err, sizeof(err)), -EPROTO);

	make_valid(50, 0);
	poke32(seg, ent_off(seg, 4) + ENT_LRU_NEXT, 0x7FFFFFF0);
	ck_assert_int_eq(route_cache_snapshot(seg, &s, err, sizeof(err)), -EBADMSG);
	ck_assert_ptr_nonnull(strstr(err, "corrupted"));
	route_cache_unlink(seg);

	make_valid(50, 1);
	{
		uint64_t odd = 9;
		poke(seg, OFF_SEQ, &odd, 8);
	}
	ck_assert_int_eq(route_cache_snapshot(seg, &s, err, sizeof(err)), -EAGAIN);
	ck_assert_ptr_nonnull(strstr(err, "consistent"));
	route_cache_unlink(seg);

	make_valid(50, 1);
	poke32(seg, OFF_TOTAL, 12345);
	ck_assert_int_eq(route_cache_snapshot(seg, &s, err, sizeof(err)), -EPROTO);
	ck_assert_ptr_nonnull(strstr(err, "checksum"));
}
END_TEST

/* ---- a reader process during heavy writes ----------------------------------- *
 * The parent writes entries whose fields all derive from one counter c: topic
 * key(c), slot c, state c % 4, endpoint "ep<key(c) % 5>", last_ms >= c.  The
 * child checks every entry of every snapshot against that. */

#define RD_KEYS 200
#define RD_OPS 60000

static unsigned rd_key(unsigned c)
{
	return (unsigned)(((uint64_t)c * 2654435761u) >> 7) % RD_KEYS;
}

static size_t rd_topic(unsigned k, char *b)
{
	size_t len = 12 + (k * 37) % 240;
	int n = snprintf(b, 16, "r%03u:", k);

	for (size_t i = (size_t)n; i < len; i++)
		b[i] = (char)('a' + (k + i) % 26);
	b[len] = 0;
	return len;
}

struct rd_result {
	unsigned ok, eagain, bad, tries, walked;
	char why[200];
};

static int rd_check(const struct route_snapshot *s, char *why, size_t n)
{
	char t[ROUTE_TOPIC_MAX + 1], ep[8];
	unsigned char seen[RD_KEYS] = { 0 };
	const struct route_cache_stats *st = &s->stats;

	if ((s->atomic && s->n != st->entries) || s->n > RD_KEYS ||
	    st->inserts - st->evictions - st->deletes - st->expirations != st->entries) {
		snprintf(why, n, "counts: n %zu entries %u", s->n, st->entries);
		return -1;
	}
	for (size_t i = 0; i < s->n; i++) {
		const struct route_entry *e = &s->entries[i];
		unsigned k = rd_key(e->slot);
		size_t len = rd_topic(k, t);

		snprintf(ep, sizeof(ep), "ep%u", k % 5);
		if (len != e->topic_len || memcmp(t, e->topic, len + 1) != 0 || seen[k]++ ||
		    e->state != e->slot % 4 || strcmp(e->endpoint, ep) != 0 ||
		    e->last_ms < e->slot || e->created_ms > e->last_ms ||
		    (s->atomic && e->hits > st->hits)) {   /* a walk reads stats first */
			snprintf(why, n, "torn entry %zu: slot %u state %u ep %s last %llu "
				 "topic %.40s", i, e->slot, e->state, e->endpoint,
				 (unsigned long long)e->last_ms, e->topic);
			return -1;
		}
	}
	return 0;
}

static void rd_child(int done_fd, int res_fd, int ready_fd)
{
	struct rd_result res;
	int finished = 0;

	memset(&res, 0, sizeof(res));
	for (;;) {
		struct pollfd pfd = { .fd = done_fd, .events = POLLIN };
		struct route_snapshot *s;
		char err[160];
		int r;

		if (poll(&pfd, 1, 0) > 0)
			finished = 1;
		/* every other one entry by entry: many small walks meet many writes */
		r = route_cache_snapshot_flags(seg, (res.ok + res.eagain) % 2 ?
					       ROUTE_SNAP_PER_ENTRY : 0, &s, err, sizeof(err));
		if (r == -EAGAIN) {
			res.eagain++;
		} else if (r < 0) {
			res.bad++;
			snprintf(res.why, sizeof(res.why), "snapshot: %s", err);
		} else {
			res.tries += s->tries;
			if (rd_check(s, res.why, sizeof(res.why)))
				res.bad++;
			else
				res.ok++, res.walked += !s->atomic;
			route_snapshot_free(s);
		}
		if (res.ok + res.eagain + res.bad == 1 && write(ready_fd, "r", 1) != 1)
			_exit(3);
		if (finished || res.bad)
			break;
	}
	if (write(res_fd, &res, sizeof(res)) != (ssize_t)sizeof(res))
		_exit(2);
	_exit(0);
}

static void spin_us(unsigned us)
{
	struct timespec a, b;

	clock_gettime(CLOCK_MONOTONIC, &a);
	do
		clock_gettime(CLOCK_MONOTONIC, &b);
	while ((b.tv_sec - a.tv_sec) * 1000000L + (b.tv_nsec - a.tv_nsec) / 1000 < (long)us);
}

START_TEST(test_reader_process)
{
	/* static: the forked child _exits holding a copy, reachable for valgrind */
	static struct route_cache *rc;
	rc = open_cap(128, 32, 0);
	int done[2], res[2], ready[2], status;
	struct rd_result rr;
	char t[ROUTE_TOPIC_MAX + 1], ep[8], c1;
	pid_t pid;

	ck_assert_int_eq(pipe(done), 0);
	ck_assert_int_eq(pipe(res), 0);
	ck_assert_int_eq(pipe(ready), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(done[1]);
		close(res[0]);
		close(ready[0]);
		rd_child(done[0], res[1], ready[1]);
	}
	close(done[0]);
	close(res[1]);
	close(ready[1]);
	ck_assert_int_eq(read(ready[0], &c1, 1), 1);
	for (unsigned c = 1; c <= RD_OPS; c++) {
		size_t len = rd_topic(rd_key(c), t);

		if (c % 23 == 0) {
			route_cache_del(rc, NULL, t, len);
		} else {
			snprintf(ep, sizeof(ep), "ep%u", rd_key(c) % 5);
			enum route_state st = (enum route_state)(c % 4);
			int r = route_cache_put(rc, t, len, ep, (uint16_t)c, st, c);
			CHECK(r >= 0, "put %u: %d", c, r);
		}
		if (c % 7 == 0) {
			len = rd_topic(rd_key(c / 2), t);
			route_cache_lookup(rc, t, len, c, NULL);
		}
		if (c % 64 == 0)
			spin_us(20);
	}
	ck_assert_int_eq(write(done[1], "d", 1) == 1 || errno == EPIPE, 1);   /* EPIPE: it quit */
	ck_assert_int_eq(read(res[0], &rr, sizeof(rr)), (ssize_t)sizeof(rr));
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert_msg(rr.bad == 0, "%u bad snapshots: %s", rr.bad, rr.why);
	ck_assert_msg(rr.ok >= 5, "only %u good snapshots (%u EAGAIN)", rr.ok, rr.eagain);
	ck_assert_msg(rr.walked >= 2, "only %u entry-by-entry snapshots", rr.walked);
	close(done[1]);
	close(res[0]);
	close(ready[0]);

	struct route_snapshot *s;
	ck_assert_int_eq(route_cache_snapshot(seg, &s, NULL, 0), 0);
	snapshot_matches(rc, s);
	ck_assert_uint_gt(s->stats.evictions, 0);
	ck_assert_uint_gt(s->stats.deletes, 0);
	route_snapshot_free(s);
	route_cache_close(rc);
}
END_TEST

/* ---- entry-by-entry snapshots -------------------------------------------------- */

/* s holds what foreach sees, as a set (the walk orders equal stamps its own
 * way), by last_ms newest first. */
static void snapshot_same_set(struct route_cache *rc, const struct route_snapshot *s)
{
	static struct collect c;
	size_t found = 0;

	c.n = 0;
	ck_assert_int_eq(route_cache_foreach(rc, collect_cb, &c), 0);
	ck_assert_uint_eq(s->n, c.n);
	for (size_t i = 0; i < s->n; i++) {
		const struct route_entry *a = &s->entries[i];

		ck_assert(i == 0 || s->entries[i - 1].last_ms >= a->last_ms);
		ck_assert_uint_eq(strlen(a->topic), a->topic_len);
		for (size_t k = 0; k < c.n; k++) {
			const struct route_entry *b = &c.e[k];

			if (b->topic_len != a->topic_len || strcmp(c.topics[k], a->topic) ||
			    strcmp(c.eps[k], a->endpoint))
				continue;
			ck_assert_uint_eq(a->slot, b->slot);
			ck_assert_uint_eq(a->state, b->state);
			ck_assert_uint_eq(a->hits, b->hits);
			ck_assert_uint_eq(a->last_ms, b->last_ms);
			ck_assert_uint_eq(a->created_ms, b->created_ms);
			found++;
		}
	}
	ck_assert_uint_eq(found, c.n);
}

START_TEST(test_snapshot_per_entry)
{
	struct route_cache *rc = open_cap(40, 6, 0);
	struct route_snapshot *s;
	char err[256];

	ck_assert_int_eq(route_cache_snapshot_flags(seg, 2, &s, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(route_cache_snapshot_flags(seg, ROUTE_SNAP_PER_ENTRY, &s, err,
						    sizeof(err)), 0);
	ck_assert_uint_eq(s->n, 0);
	ck_assert_int_eq(s->atomic, 0);
	s = route_snapshot_free(s);
	/* Long topics (long slots evicted), four endpoints, deletes, hits, and
	 * stamps that repeat (the walk's order for ties is its own). */
	for (unsigned i = 0; i < 60; i++) {
		char tt[520], ep[16];

		snprintf(tt, sizeof(tt), "%u%s", i % 45,
			 topic_len(i % 4 ? "p" : "plong", i % 4 ? 3 + i : 66 + i * 3));
		snprintf(ep, sizeof(ep), "ep-%u", i % 4);
		ck_assert_int_ge(put(rc, tt, ep, (uint16_t)i, (enum route_state)(i % 4), i / 3),
				 0);
		if (i % 5 == 0)
			look(rc, tt, i / 3, NULL);
		if (i % 11 == 0)
			route_cache_del(rc, ep, tt, strlen(tt));
	}
	ck_assert_int_eq(route_cache_snapshot_flags(seg, ROUTE_SNAP_PER_ENTRY, &s, err,
						    sizeof(err)), 0);
	ck_assert_int_eq(s->atomic, 0);
	ck_assert_uint_eq(s->tries, 0);
	ck_assert_uint_eq(s->retries, 0);
	snapshot_same_set(rc, s);
	{
		struct route_cache_stats st = stats(rc);
		ck_assert(stats_eq(&s->stats, &st));
	}
	s = route_snapshot_free(s);
	/* Unbusy: the default is one whole copy. */
	ck_assert_int_eq(route_cache_snapshot(seg, &s, err, sizeof(err)), 0);
	ck_assert_int_eq(s->atomic, 1);
	ck_assert_uint_eq(s->tries, 1);
	snapshot_matches(rc, s);
	s = route_snapshot_free(s);
	route_cache_close(rc);

	/* A consistent but corrupt entry: its topic no longer matches its hash. */
	make_valid(50, 1);
	poke(seg, ent_off(seg, 7) + ENT_KEY, "X", 1);
	ck_assert_int_eq(route_cache_snapshot_flags(seg, ROUTE_SNAP_PER_ENTRY, &s, err,
						    sizeof(err)), -EBADMSG);
	ck_assert_ptr_nonnull(strstr(err, "hash"));
	route_cache_unlink(seg);
	/* A writer that died mid-update: no moment is consistent. */
	make_valid(50, 1);
	{
		uint64_t odd = 9;
		poke(seg, OFF_SEQ, &odd, 8);
	}
	ck_assert_int_eq(route_cache_snapshot_flags(seg, ROUTE_SNAP_PER_ENTRY, &s, err,
						    sizeof(err)), -EAGAIN);
	ck_assert_ptr_nonnull(strstr(err, "consistent"));
}
END_TEST

/* ---- a reader during heavy writes on a big table ------------------------------ *
 * Every write is a put of key k at counter c: topic big_topic(k), endpoint
 * "ep<k % 5>", slot c & 0xffff, state c % 4, last_ms c (c only grows).  Any
 * entry mixing two writes (or two keys) breaks one of those relations. */

#define BIG_CAP 100000u
#define BIG_KEYS (BIG_CAP + BIG_CAP / 2)
#define BIG_WANT 3                      /* good snapshots of each kind */

static size_t big_topic(unsigned k, char *b)
{
	size_t len = k % 7 == 0 ? 70 + k % 150 : 10 + k % 40;   /* 1 in 7 long */
	int n = snprintf(b, 16, "b%06u:", k);

	for (size_t i = (size_t)n; i < len; i++)
		b[i] = (char)('a' + (k * 7 + i) % 26);
	b[len] = 0;
	return len;
}

static unsigned big_key(unsigned c)
{
	return (unsigned)(((uint64_t)c * 2654435761u) % BIG_KEYS);
}

struct big_result {
	unsigned atomic, walked, eagain, bad;
	char why[200];
};

static int big_check(const struct route_snapshot *s, unsigned char *seen, char *why, size_t n)
{
	char t[ROUTE_TOPIC_MAX + 1], ep[8];

	memset(seen, 0, BIG_KEYS);
	if (s->atomic && s->n != s->stats.entries) {
		snprintf(why, n, "atomic snapshot of %zu entries, stats say %u", s->n,
			 s->stats.entries);
		return -1;
	}
	if (s->n > BIG_CAP) {
		snprintf(why, n, "%zu entries in a table of %u", s->n, BIG_CAP);
		return -1;
	}
	for (size_t i = 0; i < s->n; i++) {
		const struct route_entry *e = &s->entries[i];
		unsigned k = BIG_KEYS;

		if (sscanf(e->topic, "b%6u:", &k) != 1 || k >= BIG_KEYS) {
			snprintf(why, n, "entry %zu: bad topic %.40s", i, e->topic);
			return -1;
		}
		size_t len = big_topic(k, t);
		snprintf(ep, sizeof(ep), "ep%u", k % 5);
		if (len != e->topic_len || memcmp(t, e->topic, len + 1) != 0 ||
		    strcmp(e->endpoint, ep) != 0 || e->slot != (e->last_ms & 0xffff) ||
		    e->state != e->last_ms % 4 || e->created_ms > e->last_ms || e->hits ||
		    (i && e->last_ms > s->entries[i - 1].last_ms) || seen[k]++) {
			snprintf(why, n, "torn or repeated entry %zu: key %u slot %u state %u "
				 "last %llu ep %s len %zu", i, k, e->slot, e->state,
				 (unsigned long long)e->last_ms, e->endpoint, e->topic_len);
			return -1;
		}
	}
	return 0;
}

/* Alternates default and entry-by-entry snapshots until it has BIG_WANT
 * good ones of each (at most 200 tries). */
static void big_child(int res_fd)
{
	static unsigned char seen[BIG_KEYS];
	struct big_result res;
	unsigned walked_forced = 0, good_default = 0;

	memset(&res, 0, sizeof(res));
	for (unsigned i = 0; i < 200 && !res.bad; i++) {
		struct route_snapshot *s;
		char err[160];
		unsigned flags = i % 2 ? ROUTE_SNAP_PER_ENTRY : 0;
		int r = route_cache_snapshot_flags(seg, flags, &s, err, sizeof(err));

		if (r == -EAGAIN) {
			res.eagain++;
		} else if (r < 0) {
			res.bad++;
			snprintf(res.why, sizeof(res.why), "snapshot: %s", err);
		} else {
			if (big_check(s, seen, res.why, sizeof(res.why)))
				res.bad++;
			else if (s->atomic)
				res.atomic++;
			else
				res.walked++;
			walked_forced += flags && !s->atomic;
			good_default += !flags;
			route_snapshot_free(s);
		}
		if (walked_forced >= BIG_WANT && good_default >= BIG_WANT)
			break;
	}
	if (write(res_fd, &res, sizeof(res)) != (ssize_t)sizeof(res))
		_exit(2);
	_exit(0);
}

static void big_put(struct route_cache *rc, unsigned c)
{
	char t[ROUTE_TOPIC_MAX + 1], ep[8];
	unsigned k = c <= BIG_CAP ? c - 1 : big_key(c);
	size_t len = big_topic(k, t);

	snprintf(ep, sizeof(ep), "ep%u", k % 5);
	if (c > BIG_CAP && c % 23 == 0) {
		route_cache_del(rc, ep, t, len);
		return;
	}
	int r = route_cache_put(rc, t, len, ep, (uint16_t)c, (enum route_state)(c % 4), c);
	CHECK(r >= 0, "put %u: %d", c, r);
}

START_TEST(test_reader_big)
{
	/* static: the forked child _exits holding a copy, reachable for valgrind */
	static struct route_cache *rc;
	struct route_snapshot *a, *w;
	struct big_result br;
	int res[2], status;
	unsigned c = 1;
	pid_t pid;

	rc = open_cap(BIG_CAP, 0, 0);
	for (; c <= BIG_CAP; c++)
		big_put(rc, c);
	ck_assert_int_eq(pipe(res), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(res[0]);
		big_child(res[1]);
	}
	close(res[1]);
	/* Writes until the reader is done: bursts of 256 puts, then a peek. */
	for (;;) {
		struct pollfd pfd = { .fd = res[0], .events = POLLIN };

		for (unsigned i = 0; i < 256; i++, c++)
			big_put(rc, c);
		if (poll(&pfd, 1, 0) > 0)
			break;
	}
	ck_assert_int_eq(read(res[0], &br, sizeof(br)), (ssize_t)sizeof(br));
	close(res[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert_msg(br.bad == 0, "%u bad snapshots: %s", br.bad, br.why);
	ck_assert_msg(br.walked >= BIG_WANT && br.atomic + br.walked >= 2 * BIG_WANT,
		      "%u whole, %u entry by entry, %u EAGAIN", br.atomic, br.walked,
		      br.eagain);
	ck_assert_uint_gt(stats(rc).evictions, 0);
	ck_assert_uint_gt(stats(rc).long_entries, 0);

	/* Quiet now: a walk gives what a whole copy gives, in the same order
	 * (every stamp differs). */
	ck_assert_int_eq(route_cache_snapshot(seg, &a, NULL, 0), 0);
	ck_assert_int_eq(a->atomic, 1);
	ck_assert_int_eq(route_cache_snapshot_flags(seg, ROUTE_SNAP_PER_ENTRY, &w, NULL, 0), 0);
	ck_assert_uint_eq(a->n, w->n);
	ck_assert_uint_eq(a->n, stats(rc).entries);
	for (size_t i = 0; i < a->n; i++) {
		const struct route_entry *x = &a->entries[i], *y = &w->entries[i];

		CHECK(x->topic_len == y->topic_len && strcmp(x->topic, y->topic) == 0 &&
		      strcmp(x->endpoint, y->endpoint) == 0 && x->slot == y->slot &&
		      x->state == y->state && x->last_ms == y->last_ms &&
		      x->created_ms == y->created_ms && x->hits == y->hits,
		      "entry %zu differs: %s / %s", i, x->topic, y->topic);
	}
	route_snapshot_free(a);
	route_snapshot_free(w);
	route_cache_close(rc);
}
END_TEST

/* ---- a million entries -------------------------------------------------------- */

START_TEST(test_million)
{
	struct route_cache_params p = { .capacity = ROUTE_CACHE_MAX_CAPACITY };
	struct route_cache *rc;
	struct route_entry e;
	char t[32], err[256];

	ck_assert_uint_eq(route_cache_segment_size(&p), DOC_SIZE_1M);
	ck_assert_int_eq(route_cache_open(&rc, seg, &p, err, sizeof(err)), 0);
	ck_assert_int_eq(shm_size(seg, NULL), (off_t)DOC_SIZE_1M);
	ck_assert_uint_eq(stats(rc).long_capacity, 125000);
	for (unsigned i = 0; i < ROUTE_CACHE_MAX_CAPACITY + 1000; i++) {
		int n = snprintf(t, sizeof(t), "m:%u", i);
		CHECK(route_cache_put(rc, t, (size_t)n, "main", (uint16_t)i, ROUTE_STATE_JOINED,
				      i) == 1, "put %u", i);
	}
	struct route_cache_stats st = stats(rc);
	ck_assert_uint_eq(st.entries, ROUTE_CACHE_MAX_CAPACITY);
	ck_assert_uint_eq(st.evictions, 1000);
	ck_assert_int_eq(look(rc, "m:999", 2000000, NULL), -ENOENT);
	ck_assert_int_eq(look(rc, "m:1000", 2000000, &e), 0);
	ck_assert_uint_eq(e.slot, 1000);
	for (unsigned i = 1000; i < ROUTE_CACHE_MAX_CAPACITY + 1000; i += 997) {
		int n = snprintf(t, sizeof(t), "m:%u", i);
		CHECK(route_cache_lookup(rc, t, (size_t)n, 2000001, &e) == 0 &&
		      e.slot == (uint16_t)i, "lookup %u", i);
	}
	route_cache_close(rc);
	/* Attaching validates all of it (and the checksum). */
	ck_assert_int_eq(route_cache_open(&rc, seg, &p, err, sizeof(err)), 1);
	ck_assert_uint_eq(stats(rc).entries, ROUTE_CACHE_MAX_CAPACITY);
	ck_assert_int_eq(look(rc, "m:1000999", 2000002, NULL), 0);
	route_cache_close(rc);
}
END_TEST

/* ---- random operations against a reference model ------------------------------ */

#define M_KEYS 300
#define M_CAP 64
#define M_LONG 8
#define M_TTL 1000
#define M_OPS 100000
#define M_EPS 4

/* Keys are (endpoint, topic): topic k under endpoint ep is entry k * M_EPS + ep. */
static const char *const m_eps[M_EPS] = { "alpha", "beta", "gamma",
					  "delta-endpoint-longer-name" };

struct m_ent {
	int live;
	uint16_t slot;
	uint8_t state;
	uint64_t hits, last, created, stamp;
};

static struct model {
	struct m_ent e[M_KEYS * M_EPS];
	uint64_t tick;
	struct route_cache_stats st;
} M;

static size_t m_topic(unsigned k, char *b)
{
	size_t len = k % 5 == 0 ? 65 + (k * 13) % 191 : 3 + k % 40;
	int n = snprintf(b, 16, "k%u:", k);

	for (size_t i = (size_t)n; i < len; i++)
		b[i] = (char)('A' + (k * 7 + i) % 50);
	b[len] = 0;
	return len;
}

static int m_long(unsigned i)
{
	char b[ROUTE_TOPIC_MAX + 1];

	return m_topic(i / M_EPS, b) > ROUTE_TOPIC_INLINE;
}

static void m_remove(unsigned i)
{
	M.e[i].live = 0;
	M.st.entries--;
	M.st.long_entries -= (uint32_t)m_long(i);
}

static int m_get(unsigned i, uint64_t now)
{
	struct m_ent *e = &M.e[i];

	if (!e->live)
		return 0;
	if (e->state != ROUTE_STATE_JOINED && now > e->last && now - e->last > M_TTL) {
		m_remove(i);
		M.st.expirations++;
		return 0;
	}
	return 1;
}

/* only_long: the least recently used long topic (its own pool); otherwise
 * the least recently used entry not joined, else the least recently used. */
static void m_evict(int only_long)
{
	unsigned best = M_KEYS * M_EPS, best_nj = M_KEYS * M_EPS;

	for (unsigned i = 0; i < M_KEYS * M_EPS; i++) {
		if (!M.e[i].live || (only_long && !m_long(i)))
			continue;
		if (best == M_KEYS * M_EPS || M.e[i].stamp < M.e[best].stamp)
			best = i;
		if (M.e[i].state != ROUTE_STATE_JOINED &&
		    (best_nj == M_KEYS * M_EPS || M.e[i].stamp < M.e[best_nj].stamp))
			best_nj = i;
	}
	if (!only_long && best_nj < M_KEYS * M_EPS)
		best = best_nj;
	ck_assert_uint_lt(best, M_KEYS * M_EPS);
	m_remove(best);
	M.st.evictions++;
}

static int m_put(unsigned i, uint16_t slot, uint8_t state, uint64_t now)
{
	struct m_ent *e = &M.e[i];

	if (m_get(i, now)) {
		e->slot = slot;
		e->state = state;
		e->last = now;
		e->stamp = ++M.tick;
		M.st.updates++;
		return 0;
	}
	if (m_long(i) && M.st.long_entries == M_LONG)
		m_evict(1);
	if (M.st.entries == M_CAP)
		m_evict(0);
	*e = (struct m_ent){ 1, slot, state, 0, now, now, ++M.tick };
	M.st.entries++;
	M.st.long_entries += (uint32_t)m_long(i);
	M.st.inserts++;
	return 1;
}

static int m_lookup(unsigned i, uint64_t now)
{
	if (!m_get(i, now)) {
		M.st.misses++;
		return -ENOENT;
	}
	M.e[i].hits++;
	M.st.hits++;
	M.e[i].last = now;
	M.e[i].stamp = ++M.tick;
	return 0;
}

static int m_set_state(unsigned i, uint8_t state, uint64_t now)
{
	if (!m_get(i, now))
		return -ENOENT;
	M.e[i].state = state;
	M.e[i].last = now;
	M.e[i].stamp = ++M.tick;
	return 0;
}

static int m_del(unsigned i)
{
	if (!M.e[i].live)
		return -ENOENT;
	m_remove(i);
	M.st.deletes++;
	return 0;
}

static int m_cleanup(uint64_t now)
{
	int n = 0;

	for (unsigned i = 0; i < M_KEYS * M_EPS; i++) {
		struct m_ent *e = &M.e[i];
		if (e->live && e->state != ROUTE_STATE_JOINED && now > e->last &&
		    now - e->last > M_TTL) {
			m_remove(i);
			M.st.expirations++;
			n++;
		}
	}
	return n;
}

static void m_entry_is(unsigned i, const struct route_entry *e)
{
	const struct m_ent *m = &M.e[i];

	CHECK(m->live, "entry %u not in the model", i);
	CHECK(strcmp(e->endpoint, m_eps[i % M_EPS]) == 0 && e->slot == m->slot &&
	      e->state == m->state && e->hits == m->hits && e->last_ms == m->last &&
	      e->created_ms == m->created,
	      "entry %u: ep %s/%s slot %u/%u state %u/%u hits %llu/%llu last %llu/%llu", i,
	      e->endpoint, m_eps[i % M_EPS], e->slot, m->slot, e->state, m->state,
	      (unsigned long long)e->hits, (unsigned long long)m->hits,
	      (unsigned long long)e->last_ms, (unsigned long long)m->last);
}

struct m_walk {
	uint64_t prev_stamp;
	unsigned n;
};

static int m_walk_cb(void *arg, const struct route_entry *e)
{
	struct m_walk *w = arg;
	unsigned k, ep = M_EPS;

	CHECK(sscanf(e->topic, "k%u:", &k) == 1 && k < M_KEYS, "topic %s", e->topic);
	for (unsigned j = 0; j < M_EPS; j++)
		if (strcmp(e->endpoint, m_eps[j]) == 0)
			ep = j;
	CHECK(ep < M_EPS, "endpoint %s", e->endpoint);
	char b[ROUTE_TOPIC_MAX + 1];
	size_t len = m_topic(k, b);
	CHECK(len == e->topic_len && memcmp(b, e->topic, len) == 0, "topic bytes %u", k);
	m_entry_is(k * M_EPS + ep, e);
	CHECK(M.e[k * M_EPS + ep].stamp < w->prev_stamp, "order at %u", k);
	w->prev_stamp = M.e[k * M_EPS + ep].stamp;
	w->n++;
	return 0;
}

static void m_compare_all(struct route_cache *rc)
{
	struct route_cache_stats st = stats(rc);
	struct m_walk w = { UINT64_MAX, 0 };

	CHECK(st.hits == M.st.hits && st.misses == M.st.misses && st.inserts == M.st.inserts &&
	      st.updates == M.st.updates && st.deletes == M.st.deletes &&
	      st.evictions == M.st.evictions && st.expirations == M.st.expirations &&
	      st.entries == M.st.entries && st.long_entries == M.st.long_entries &&
	      st.generation == M.st.generation,
	      "stats differ: entries %u/%u evictions %llu/%llu expirations %llu/%llu",
	      st.entries, M.st.entries, (unsigned long long)st.evictions,
	      (unsigned long long)M.st.evictions, (unsigned long long)st.expirations,
	      (unsigned long long)M.st.expirations);
	ck_assert_int_eq(route_cache_foreach(rc, m_walk_cb, &w), 0);
	CHECK(w.n == M.st.entries, "walked %u of %u", w.n, M.st.entries);
}

START_TEST(test_model)
{
	struct route_cache *rc = open_cap(M_CAP, M_LONG, M_TTL);
	uint64_t now = 1;
	char t[ROUTE_TOPIC_MAX + 1];

	memset(&M, 0, sizeof(M));
	M.st.generation = 1;
	rng_state = 0x9E3779B97F4A7C15ULL;
	for (unsigned op = 1; op <= M_OPS; op++) {
		/* few keys, several endpoints each: same topics under two
		 * endpoints meet often */
		unsigned k = rng() % M_KEYS, ep = rng() % M_EPS, dice = rng() % 100;
		unsigned i = k * M_EPS + ep;
		size_t len = m_topic(k, t);
		struct route_entry e;
		int want, got;

		now += rng() % 40;
		if (dice < 35) {
			uint16_t slot = (uint16_t)rng();
			uint8_t state = (uint8_t)(rng() % 4);
			want = m_put(i, slot, state, now);
			got = route_cache_put(rc, t, len, m_eps[ep], slot, state, now);
		} else if (dice < 65) {
			want = m_lookup(i, now);
			got = route_cache_lookup_ep(rc, m_eps[ep], t, len, now, &e);
			if (got == 0 && want == 0)
				m_entry_is(i, &e);
		} else if (dice < 78) {
			uint8_t state = (uint8_t)(rng() % 4);
			want = m_set_state(i, state, now);
			got = route_cache_set_state(rc, m_eps[ep], t, len, state, now);
		} else if (dice < 88) {
			want = m_del(i);
			got = route_cache_del(rc, m_eps[ep], t, len);
		} else if (dice < 91) {
			want = m_cleanup(now);
			got = route_cache_cleanup(rc, now);
		} else {
			now += rng() % 400;
			continue;
		}
		CHECK(want == got, "op %u (dice %u key %u ep %u): got %d, want %d", op, dice, k,
		      ep, got, want);
		if (op % 500 == 0)
			m_compare_all(rc);
		if (op % 10000 == 0) {
			rc = route_cache_close(rc);
			rc = open_cap(M_CAP, M_LONG, M_TTL);
			M.st.generation++;
			m_compare_all(rc);
		}
		if (op % 7000 == 0) {
			struct route_snapshot *s;
			ck_assert_int_eq(route_cache_snapshot(seg, &s, NULL, 0), 0);
			snapshot_matches(rc, s);
			route_snapshot_free(s);
		}
	}
	m_compare_all(rc);
	route_cache_close(rc);
}
END_TEST

/* ---- keys, eviction policy, restart after a crash --------------------------- */

/* The key is (endpoint, topic): the same topic on two endpoints is two
 * routes, and one endpoint's changes leave the other's alone. */
START_TEST(test_endpoint_key)
{
	struct route_cache *rc = open_cap(16, 0, 1000);
	struct route_entry e;
	char ep65[66];

	ck_assert_int_eq(put(rc, "room:1", "main", 1, ROUTE_STATE_JOINED, 10), 1);
	ck_assert_int_eq(put(rc, "room:1", "other", 2, ROUTE_STATE_JOINED, 11), 1);
	ck_assert_uint_eq(stats(rc).entries, 2);
	ck_assert_int_eq(route_cache_lookup_ep(rc, "main", "room:1", 6, 12, &e), 0);
	ck_assert_uint_eq(e.slot, 1);
	ck_assert_str_eq(e.endpoint, "main");
	ck_assert_int_eq(route_cache_lookup_ep(rc, "other", "room:1", 6, 12, &e), 0);
	ck_assert_uint_eq(e.slot, 2);
	ck_assert_str_eq(e.endpoint, "other");
	ck_assert_int_eq(route_cache_lookup_ep(rc, "third", "room:1", 6, 12, NULL), -ENOENT);
	ck_assert_int_eq(route_cache_lookup_ep(rc, "mai", "room:1", 6, 12, NULL), -ENOENT);
	ck_assert_int_eq(look(rc, "room:1", 12, &e), 0);       /* any: the newer */
	ck_assert_str_eq(e.endpoint, "other");
	/* other leaves: main's channel stays joined and does not expire */
	ck_assert_int_eq(route_cache_set_state(rc, "other", "room:1", 6, ROUTE_STATE_NONE, 20), 0);
	ck_assert_int_eq(route_cache_cleanup(rc, 1021), 1);
	ck_assert_int_eq(route_cache_lookup_ep(rc, "other", "room:1", 6, 1021, NULL), -ENOENT);
	ck_assert_int_eq(route_cache_lookup_ep(rc, "main", "room:1", 6, 1021, &e), 0);
	ck_assert_uint_eq(e.state, ROUTE_STATE_JOINED);
	ck_assert_uint_eq(e.slot, 1);
	/* a put of the same key is an update */
	ck_assert_int_eq(put(rc, "room:1", "main", 3, ROUTE_STATE_JOINED, 1022), 0);
	ck_assert_int_eq(put(rc, "room:1", "other", 0, ROUTE_STATE_JOINING, 1023), 1);
	ck_assert_int_eq(route_cache_del(rc, "other", "room:1", 6), 0);
	ck_assert_int_eq(route_cache_del(rc, "other", "room:1", 6), -ENOENT);
	ck_assert_int_eq(route_cache_set_state(rc, "other", "room:1", 6, ROUTE_STATE_NONE, 1024),
			 -ENOENT);
	ck_assert_int_eq(put(rc, "room:1", "other", 4, ROUTE_STATE_JOINED, 1025), 1);
	memset(ep65, 'e', 65);
	ep65[65] = 0;
	ck_assert_int_eq(route_cache_lookup_ep(rc, ep65, "room:1", 6, 1026, NULL), -EINVAL);
	ck_assert_int_eq(route_cache_lookup_ep(rc, "", "room:1", 6, 1026, NULL), -EINVAL);
	ck_assert_int_eq(route_cache_del(rc, ep65, "room:1", 6), -EINVAL);
	route_cache_close(rc);
	/* both survive a restart, apart */
	rc = open_cap(16, 0, 1000);
	ck_assert_int_eq(route_cache_lookup_ep(rc, "main", "room:1", 6, 1030, &e), 0);
	ck_assert_uint_eq(e.slot, 3);
	ck_assert_int_eq(route_cache_lookup_ep(rc, "other", "room:1", 6, 1030, &e), 0);
	ck_assert_uint_eq(e.slot, 4);
	route_cache_close(rc);
}
END_TEST

/* The entries of a snapshot, checked without touching the cache: every
 * one in state st, with last_ms at least since. */
static unsigned snap_all(uint8_t st, uint64_t since)
{
	struct route_snapshot *s;
	unsigned n = 0;

	ck_assert_int_eq(route_cache_snapshot(seg, &s, NULL, 0), 0);
	for (size_t i = 0; i < s->n; i++)
		n += s->entries[i].state == st && s->entries[i].last_ms >= since;
	ck_assert_uint_eq(n, s->n);
	route_snapshot_free(s);
	return n;
}

START_TEST(test_demote)
{
	struct route_cache *rc = open_cap(16, 0, 1000);
	struct route_entry e;

	ck_assert_int_eq(route_cache_demote(rc, 5), 0);         /* empty */
	ck_assert_int_eq(put(rc, "a", "main", 1, ROUTE_STATE_JOINED, 10), 1);
	ck_assert_int_eq(put(rc, "b", "main", 2, ROUTE_STATE_JOINING, 20), 1);
	ck_assert_int_eq(put(rc, "c", "main", 3, ROUTE_STATE_NONE, 30), 1);
	ck_assert_int_eq(put(rc, "d", "main", 4, ROUTE_STATE_ERRORED, 40), 1);
	ck_assert_int_eq(put(rc, "a", "other", 5, ROUTE_STATE_JOINED, 50), 1);
	ck_assert_str_eq(order_of(rc), "a,d,c,b,a");
	ck_assert_int_eq(route_cache_demote(rc, 100), 4);
	ck_assert_str_eq(order_of(rc), "a,d,b,a,c");            /* use order kept */
	ck_assert_uint_eq(snap_all(ROUTE_STATE_NONE, 30), 5);
	/* the one left none expires first, the others a TTL after the demotion */
	ck_assert_int_eq(route_cache_cleanup(rc, 1031), 1);
	ck_assert_int_eq(route_cache_cleanup(rc, 1100), 0);
	ck_assert_int_eq(route_cache_lookup_ep(rc, "main", "b", 1, 1100, &e), 0);
	ck_assert_uint_eq(e.slot, 2);                          /* kept for warming */
	ck_assert_uint_eq(e.state, ROUTE_STATE_NONE);
	ck_assert_int_eq(route_cache_cleanup(rc, 1101), 3);
	ck_assert_int_eq(route_cache_cleanup(rc, 2101), 1);     /* b, used at 1100 */
	ck_assert_uint_eq(stats(rc).entries, 0);
	route_cache_close(rc);

	/* A writer killed with routes joined: the next one demotes them. */
	struct route_cache_params p = { .capacity = 32, .ttl_ms = 1000 };
	char err[256];
	make_unclean(32, 10);
	ck_assert_int_eq(route_cache_open(&rc, seg, &p, err, sizeof(err)), 1);
	ck_assert_uint_eq(snap_all(ROUTE_STATE_JOINED, 0), 10);
	ck_assert_int_eq(route_cache_demote(rc, 1000), 10);
	ck_assert_uint_eq(snap_all(ROUTE_STATE_NONE, 1000), 10);
	ck_assert_int_eq(route_cache_cleanup(rc, 2000), 0);
	ck_assert_int_eq(route_cache_cleanup(rc, 2001), 10);
	route_cache_close(rc);
}
END_TEST

/* Timestamps of an unclean segment are checked: one bad last_ms would stop
 * the TTL cleanup at it for good. */
START_TEST(test_rebuild_stamps)
{
	struct route_cache_params p = { .capacity = 100 };
	struct route_cache *rc;
	char err[256];

	/* make_valid(.., 0): crash:i at entry i, put at i, joined */
	make_valid(100, 0);
	poke(seg, ent_off(seg, 3) + ENT_LAST, &(uint64_t){ 1ULL << 62 }, 8);
	expect_rebuilt(100, "in the future");

	make_valid(100, 0);
	poke(seg, ent_off(seg, 5) + ENT_CREATED, &(uint64_t){ 8 }, 8);
	expect_rebuilt(100, "before it was made");

	make_valid(100, 0);
	poke(seg, ent_off(seg, 2) + ENT_LAST, &(uint64_t){ 5 }, 8);
	expect_rebuilt(100, "LRU list out of last_ms order");

	make_valid(100, 0);
	{
		size_t size;
		char *m = map_rw(seg, &size);
		size_t eps = (size_t)peek64(m, OFF_EPS);
		/* slot 0 is "main": refs u32, len u8, name: its NUL goes */
		ck_assert(memcmp(m + eps + EP_NAME, "main", 5) == 0);
		m[eps + EP_NAME + 4] = 'X';
		munmap(m, size);
	}
	expect_rebuilt(100, "endpoint");

	/* The opener's clock: stamps after it cannot be right. */
	make_valid(100, 0);
	p.now_ms = 5;
	ck_assert_int_eq(route_cache_open(&rc, seg, &p, err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(strstr(err, "future"));
	route_cache_close(rc);
	make_valid(100, 0);
	p.now_ms = 9;
	ck_assert_int_eq(route_cache_open(&rc, seg, &p, err, sizeof(err)), 1);
	route_cache_close(rc);
}
END_TEST

/* ---- no room in /dev/shm ---------------------------------------------------- *
 * In a private mount namespace (root; skipped when that is not allowed)
 * /dev/shm becomes a 1 MiB tmpfs.  A child does the work and reports by its
 * exit status: 0 all good, 77 no namespace, others the step that failed. */

#define NR_FILLER "/phxd-rc-filler"

static int nr_child(void)
{
	struct route_cache_params big = { .capacity = 100000 };     /* 16 MB */
	struct route_cache_params small = { .capacity = 1000 };     /* 180 kB */
	struct route_cache_stats st;
	struct route_cache *rc;
	size_t size = route_cache_segment_size(&small);
	char err[256], t[16];
	off_t off = 0;
	int fd, filler;

	if (unshare(CLONE_NEWNS) < 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("phxd-test", "/dev/shm", "tmpfs", 0, "size=1m,mode=1777") < 0)
		return 77;
	/* A new segment larger than the tmpfs: an error, nothing left behind
	 * (no SIGBUS later when the table fills). */
	if (route_cache_open(&rc, seg, &big, err, sizeof(err)) != -ENOSPC ||
	    !strstr(err, "cannot allocate"))
		return 10;
	if ((fd = shm_open(seg, O_RDONLY, 0)) >= 0 || errno != ENOENT)
		return 11;
	/* One that fits; then a hole where nothing is stored yet (as a sparse
	 * segment of an older phxd has) and the tmpfs filled up: attaching
	 * says so instead of faulting on the hole. */
	if (route_cache_open(&rc, seg, &small, err, sizeof(err)) != 0)
		return 12;
	for (unsigned i = 0; i < 10; i++) {
		snprintf(t, sizeof(t), "nr:%u", i);
		if (put(rc, t, "main", (uint16_t)i, ROUTE_STATE_JOINED, i) != 1)
			return 13;
	}
	route_cache_close(rc);
	if ((fd = shm_open(seg, O_RDWR, 0)) < 0 ||
	    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(size - 65536),
		      65536) < 0)
		return 14;
	close(fd);
	if ((filler = shm_open(NR_FILLER, O_RDWR | O_CREAT | O_EXCL, 0600)) < 0)
		return 15;
	while (posix_fallocate(filler, off, 4096) == 0)
		off += 4096;
	if (route_cache_open(&rc, seg, &small, err, sizeof(err)) != -ENOSPC ||
	    !strstr(err, "cannot allocate"))
		return 16;
	/* Room again: the routes are all there. */
	close(filler);
	shm_unlink(NR_FILLER);
	if (route_cache_open(&rc, seg, &small, err, sizeof(err)) != 1)
		return 17;
	route_cache_stats(rc, &st);
	if (st.entries != 10 || look(rc, "nr:7", 20, NULL) != 0)
		return 18;
	route_cache_close(rc);
	route_cache_unlink(seg);
	return 0;
}

START_TEST(test_no_room)
{
	int status;
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(nr_child());
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status), "the child died of signal %d (SIGBUS is %d)",
		      WIFSIGNALED(status) ? WTERMSIG(status) : 0, SIGBUS);
	if (WEXITSTATUS(status) == 77) {
		fprintf(stderr, "unit_route_cache: test_no_room skipped: cannot mount a "
			"small tmpfs on /dev/shm here (needs root and mount namespaces)\n");
		return;
	}
	ck_assert_msg(WEXITSTATUS(status) == 0, "step %d failed", WEXITSTATUS(status));
}
END_TEST

/* ---- runner ---------------------------------------------------------------- */

static Suite *suite_of(const char *name, const TTest *const *tests, size_t n)
{
	Suite *s = suite_create(name);
	TCase *tc = tcase_create(name);

	tcase_set_timeout(tc, 600);
	tcase_add_checked_fixture(tc, setup, teardown);
	for (size_t i = 0; i < n; i++)
		tcase_add_test(tc, tests[i]);
	suite_add_tcase(s, tc);
	return s;
}

#define SUITE(name, ...) do { \
		const TTest *const t_[] = { __VA_ARGS__ }; \
		srunner_add_suite(sr, suite_of(name, t_, ARRAY_SIZE(t_))); \
	} while (0)

int main(void)
{
	SRunner *sr = srunner_create(NULL);

	signal(SIGPIPE, SIG_IGN);
	log_init("unit_route_cache");
	log_set_level(LOG_LVL_ERR);
	SUITE("basics", test_args, test_basic, test_lru_order, test_ttl, test_foreach);
	SUITE("eviction", test_evict_cap1, test_evict_cap2, test_evict_cap1000,
	      test_update_in_place, test_delete_reinsert, test_endpoints);
	SUITE("hashing", test_collisions, test_long_topics);
	SUITE("keys", test_endpoint_key, test_demote, test_rebuild_stamps, test_no_room);
	SUITE("restart", test_reopen, test_crash_recovery, test_rebuild_foreign,
	      test_rebuild_header, test_rebuild_size, test_rebuild_corrupt, test_mode,
	      test_runtime_corruption);
	SUITE("readers", test_snapshot, test_snapshot_bad, test_reader_process,
	      test_snapshot_per_entry, test_reader_big);
	SUITE("scale", test_million, test_model);

	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
