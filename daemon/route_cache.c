/* route_cache — see route_cache.h for the layout and the consistency scheme.
 *
 * Inside this file a "ref" is an index plus one (0: none).  The writer
 * validates the whole segment when it attaches; afterwards every ref it
 * follows still goes through rc_ent()/rc_long(), which keep it inside the
 * mapping and mark the cache broken instead of following a bad one.
 */
#include "route_cache.h"

#include "hmap.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RC_MAGIC 0x3143545244584850ULL      /* "PHXDRTC1" little-endian */
#define RC_VERSION 1u
#define RC_EP_SLOTS ROUTE_ENDPOINTS_MAX
#define RC_LONG_BYTES (ROUTE_TOPIC_MAX - ROUTE_TOPIC_INLINE)
#define RC_NAME_MAX 255                     /* bytes in a shm name, '/' included */
#define RC_LONG_MIN 16u
#define RC_COPY_CHUNK (256u * 1024)          /* bytes a reader copies between peeks at seq */

struct rc_link {
	uint32_t prev, next;
};

struct rc_list {
	uint32_t head, tail;
};

struct rc_ent {
	uint64_t hash;              /* hmap_hash of the topic (never 0); 0: free */
	uint64_t hits;
	uint64_t last_ms;
	uint64_t created_ms;
	struct rc_link lru;         /* every live entry, most recent at head */
	struct rc_link ttl;         /* the live entries not joined, same order */
	uint32_t chain;             /* next in the bucket; next free when free */
	uint32_t lng;               /* long slot with topic[64..len), or 0 */
	uint16_t slot;
	uint8_t state;
	uint8_t ep;                 /* endpoint table index */
	uint8_t len;                /* topic length, 1..255 */
	uint8_t pad[3];
	char key[ROUTE_TOPIC_INLINE];
};

struct rc_long {
	uint32_t owner;             /* entry ref; 0: free */
	struct rc_link link;        /* long LRU list; next: free list when free */
	char data[RC_LONG_BYTES + 1];
};

struct rc_ep {
	uint32_t refs;              /* live entries naming it; 0: free slot */
	uint8_t len;
	char name[ROUTE_ENDPOINT_MAX + 1];
	uint8_t pad[2];
};

struct rc_hdr {
	/* Fixed at creation; covered by hdr_sum. */
	uint64_t magic;
	uint32_t version, hdr_size, ent_size, long_size, ep_size, ep_slots;
	uint32_t capacity, nbuckets, nlong, pad0;
	uint64_t off_eps, off_buckets, off_ents, off_longs, total;
	uint64_t hdr_sum;
	/* Changed only between rc_wbegin() and rc_wend(). */
	_Alignas(64) uint64_t seq;
	uint32_t clean;             /* tbl_sum is valid */
	uint32_t pad1;
	uint64_t tbl_sum;
	/* From here on covered by tbl_sum. */
	uint64_t generation;
	uint64_t hits, misses, inserts, updates, deletes, evictions, expirations;
	uint32_t ttl_ms, entries, hw, free_head;
	struct rc_list lru, ttl, lng;
	uint32_t long_used, long_hw, long_free, pad2;
};

_Static_assert(sizeof(struct rc_ent) == 128, "entry is two cache lines");
_Static_assert(offsetof(struct rc_ent, key) == 64, "topic on the second line");
_Static_assert(sizeof(struct rc_long) == 204, "long slot size");
_Static_assert(sizeof(struct rc_ep) == 72, "endpoint slot size");
_Static_assert(offsetof(struct rc_hdr, capacity) == 32, "documented offset");
_Static_assert(offsetof(struct rc_hdr, nlong) == 40, "documented offset");
_Static_assert(offsetof(struct rc_hdr, off_eps) == 48, "documented offset");
_Static_assert(offsetof(struct rc_hdr, off_ents) == 64, "documented offset");
_Static_assert(offsetof(struct rc_hdr, hdr_sum) == 88, "documented offset");
_Static_assert(offsetof(struct rc_hdr, seq) == 128, "documented offset");
_Static_assert(offsetof(struct rc_hdr, clean) == 136, "documented offset");
_Static_assert(offsetof(struct rc_hdr, tbl_sum) == 144, "documented offset");
_Static_assert(offsetof(struct rc_hdr, generation) == 152, "documented offset");
_Static_assert(ROUTE_ENDPOINTS_MAX <= 255, "endpoint index is a u8");
_Static_assert(ROUTE_TOPIC_MAX <= 255, "topic length is a u8");

struct route_cache {
	struct rc_hdr *h;
	struct rc_ep *eps;
	uint32_t *buckets;
	struct rc_ent *ents;
	struct rc_long *longs;
	size_t size;
	int fd;
	uint32_t cap, nlong, mask;
	int broken;                 /* a bad ref was met: every call says -EIO */
	int busy;                   /* inside route_cache_foreach() */
	unsigned ep_hint;
	char topic[ROUTE_TOPIC_MAX + 1];    /* foreach's copy of a topic */
};

/* A read-only view of the tables: the writer's mapping, or a reader's copy
 * (nents/nlongs are then the high-water marks copied). */
struct rc_view {
	const struct rc_hdr *h;
	const struct rc_ep *eps;
	const struct rc_ent *ents;
	const struct rc_long *longs;
	uint32_t nents, nlongs;
};

/* ---- small helpers --------------------------------------------------------- */

static void rc_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void rc_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static uint64_t rc_align64(uint64_t n)
{
	return (n + 63) & ~(uint64_t)63;
}

static uint64_t rc_mix(uint64_t x)
{
	x *= 0x9E3779B97F4A7C15ULL;
	return x ^ (x >> 29);
}

static uint64_t rc_rotl(uint64_t x, unsigned r)
{
	return (x << r) | (x >> (64 - r));
}

/* Checksum for corruption detection (not an adversarial MAC): four
 * independent lanes of xor-multiply, so it runs near memory speed.  Any
 * change of one 8-byte word changes the result. */
static uint64_t rc_sum(uint64_t seed, const void *p, size_t n)
{
	const unsigned char *s = p;
	uint64_t a = seed ^ 0x243F6A8885A308D3ULL, b = seed ^ 0x13198A2E03707344ULL;
	uint64_t c = seed ^ 0xA4093822299F31D0ULL, d = seed ^ 0x082EFA98EC4E6C89ULL;
	uint64_t w[4], h;
	size_t len = n;

	for (; n >= 32; s += 32, n -= 32) {
		memcpy(w, s, 32);
		a = rc_mix(a ^ w[0]);
		b = rc_mix(b ^ w[1]);
		c = rc_mix(c ^ w[2]);
		d = rc_mix(d ^ w[3]);
	}
	h = a ^ rc_rotl(b, 16) ^ rc_rotl(c, 32) ^ rc_rotl(d, 48);
	for (; n >= 8; s += 8, n -= 8) {
		memcpy(w, s, 8);
		h = rc_mix(h ^ w[0]);
	}
	if (n) {
		w[0] = 0;
		memcpy(w, s, n);
		h = rc_mix(h ^ w[0]);
	}
	return rc_mix(h ^ len);
}

static int rc_name_ok(const char *name)
{
	size_t n = name ? strnlen(name, RC_NAME_MAX + 1) : 0;

	return n >= 2 && n <= RC_NAME_MAX && name[0] == '/' && !strchr(name + 1, '/');
}

static int rc_state_ok(unsigned st)
{
	return st <= ROUTE_STATE_ERRORED;
}

static int rc_topic_check(const char *topic, size_t len)
{
	if (!topic || !len)
		return -EINVAL;
	if (len > ROUTE_TOPIC_MAX)
		return -ENAMETOOLONG;
	return 0;
}

const char *route_state_name(enum route_state st)
{
	static const char *const names[] = { "none", "joining", "joined", "errored" };

	return rc_state_ok(st) ? names[st] : "?";
}

/* ---- layout -------------------------------------------------------------- */

/* Fills p with defaults applied; -EINVAL when out of range. */
static int rc_params(const struct route_cache_params *in, struct route_cache_params *p)
{
	static const struct route_cache_params def;

	*p = in ? *in : def;
	if (!p->capacity)
		p->capacity = ROUTE_CACHE_DEFAULT_CAPACITY;
	if (p->capacity > ROUTE_CACHE_MAX_CAPACITY)
		return -EINVAL;
	if (!p->long_capacity) {
		p->long_capacity = p->capacity / 8;
		if (p->long_capacity < RC_LONG_MIN)
			p->long_capacity = RC_LONG_MIN;
		if (p->long_capacity > p->capacity)
			p->long_capacity = p->capacity;
	}
	if (p->long_capacity > p->capacity)
		return -EINVAL;
	if (!p->ttl_ms)
		p->ttl_ms = ROUTE_CACHE_DEFAULT_TTL_MS;
	if (!p->mode)
		p->mode = ROUTE_CACHE_DEFAULT_MODE;
	if (!p->now_ms) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		p->now_ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
	}
	if (p->mode & ~0777u)
		return -EINVAL;
	return 0;
}

/* The fixed header fields for capacity cap and nlong long slots. */
static void rc_layout(struct rc_hdr *h, uint32_t cap, uint32_t nlong)
{
	uint32_t nb = 2;

	while (nb < 2 * cap)
		nb *= 2;
	memset(h, 0, sizeof(*h));
	h->magic = RC_MAGIC;
	h->version = RC_VERSION;
	h->hdr_size = sizeof(struct rc_hdr);
	h->ent_size = sizeof(struct rc_ent);
	h->long_size = sizeof(struct rc_long);
	h->ep_size = sizeof(struct rc_ep);
	h->ep_slots = RC_EP_SLOTS;
	h->capacity = cap;
	h->nbuckets = nb;
	h->nlong = nlong;
	h->off_eps = rc_align64(sizeof(struct rc_hdr));
	h->off_buckets = rc_align64(h->off_eps + (uint64_t)RC_EP_SLOTS * sizeof(struct rc_ep));
	h->off_ents = rc_align64(h->off_buckets + (uint64_t)nb * sizeof(uint32_t));
	h->off_longs = rc_align64(h->off_ents + (uint64_t)cap * sizeof(struct rc_ent));
	h->total = rc_align64(h->off_longs + (uint64_t)nlong * sizeof(struct rc_long));
	h->hdr_sum = rc_sum(0, h, offsetof(struct rc_hdr, hdr_sum));
}

size_t route_cache_segment_size(const struct route_cache_params *in)
{
	struct route_cache_params p;
	struct rc_hdr h;

	if (rc_params(in, &p) < 0)
		return 0;
	rc_layout(&h, p.capacity, p.long_capacity);
	return h.total;
}

/* Checks the fixed header fields of a segment of fsize bytes.  want_cap 0
 * accepts any valid capacity (readers).  0, or -1 with the reason in why. */
static int rc_check_header(const struct rc_hdr *h, uint64_t fsize, uint32_t want_cap,
			   uint32_t want_long, char *why, size_t n)
{
	struct rc_hdr want;

	if (fsize < sizeof(*h)) {
		rc_err(why, n, "truncated: %llu bytes, not even a header",
		       (unsigned long long)fsize);
		return -1;
	}
	if (__atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != RC_MAGIC) {
		rc_err(why, n, "foreign or unfinished segment (wrong magic)");
		return -1;
	}
	if (h->version != RC_VERSION) {
		rc_err(why, n, "version %u, this phxd uses %u", h->version, RC_VERSION);
		return -1;
	}
	if (h->hdr_size != sizeof(struct rc_hdr) || h->ent_size != sizeof(struct rc_ent) ||
	    h->long_size != sizeof(struct rc_long) || h->ep_size != sizeof(struct rc_ep) ||
	    h->ep_slots != RC_EP_SLOTS) {
		rc_err(why, n, "record sizes differ from this build's");
		return -1;
	}
	if (h->hdr_sum != rc_sum(0, h, offsetof(struct rc_hdr, hdr_sum))) {
		rc_err(why, n, "header checksum mismatch");
		return -1;
	}
	if (!h->capacity || h->capacity > ROUTE_CACHE_MAX_CAPACITY || !h->nlong ||
	    h->nlong > h->capacity) {
		rc_err(why, n, "capacity %u / %u out of range", h->capacity, h->nlong);
		return -1;
	}
	if (want_cap && h->capacity != want_cap) {
		rc_err(why, n, "capacity %u, want %u", h->capacity, want_cap);
		return -1;
	}
	if (want_cap && h->nlong != want_long) {
		rc_err(why, n, "long-topic capacity %u, want %u", h->nlong, want_long);
		return -1;
	}
	rc_layout(&want, h->capacity, h->nlong);
	if (memcmp(&want, h, offsetof(struct rc_hdr, hdr_sum)) != 0) {
		rc_err(why, n, "layout fields inconsistent with the capacity");
		return -1;
	}
	if (fsize < h->total) {
		rc_err(why, n, "truncated: %llu bytes, need %llu", (unsigned long long)fsize,
		       (unsigned long long)h->total);
		return -1;
	}
	return 0;
}

/* ---- views: walking the tables without trusting them ------------------------ */

static int rc_ep_ok(const struct rc_ep *ep)
{
	return ep->refs && ep->len && ep->len <= ROUTE_ENDPOINT_MAX &&
	       strnlen(ep->name, sizeof(ep->name)) == ep->len;
}

static int rc_ep_is(const struct rc_ep *ep, const char *name, size_t len)
{
	return ep->refs && ep->len == len && memcmp(ep->name, name, len) == 0;
}

/* Validates entry ref and copies its topic (NUL-terminated) into topic.
 * Returns the entry, or NULL with the reason in *why. */
static const struct rc_ent *rc_view_ent(const struct rc_view *v, uint32_t ref,
					char *topic, const char **why)
{
	const struct rc_ent *e;
	size_t in;

	if (!ref || ref > v->nents) {
		*why = "entry index out of range";
		return NULL;
	}
	e = &v->ents[ref - 1];
	in = e->len < ROUTE_TOPIC_INLINE ? e->len : ROUTE_TOPIC_INLINE;
	if (!e->hash || !e->len || !rc_state_ok(e->state)) {
		*why = "free or malformed entry linked";
		return NULL;
	}
	if (e->ep >= RC_EP_SLOTS || !rc_ep_ok(&v->eps[e->ep])) {
		*why = "entry names a bad endpoint slot";
		return NULL;
	}
	memcpy(topic, e->key, in);
	if (e->len > ROUTE_TOPIC_INLINE) {
		if (!e->lng || e->lng > v->nlongs || v->longs[e->lng - 1].owner != ref) {
			*why = "bad long-topic slot";
			return NULL;
		}
		memcpy(topic + in, v->longs[e->lng - 1].data, e->len - in);
	} else if (e->lng) {
		*why = "short topic with a long slot";
		return NULL;
	}
	topic[e->len] = 0;
	return e;
}

typedef int (*rc_visit_fn)(void *arg, uint32_t ref, const struct rc_ent *e,
			   const char *topic, const char **why);

/* Walks the LRU list, most recent first, checking every link; the list must
 * hold exactly h->entries entries.  0, the visitor's nonzero value, or -1
 * with *why.  A walk that ends after h->entries steps cannot have visited an
 * entry twice (a repeat would loop forever), so this also proves the list
 * acyclic. */
static int rc_view_walk(const struct rc_view *v, rc_visit_fn fn, void *arg, const char **why)
{
	char topic[ROUTE_TOPIC_MAX + 1];
	uint32_t ref = v->h->lru.head, prev = 0, n = 0;

	while (ref) {
		const struct rc_ent *e;
		int r;

		if (n == v->h->entries) {
			*why = "LRU list longer than the entry count";
			return -1;
		}
		if (!(e = rc_view_ent(v, ref, topic, why)))
			return -1;
		if (e->lru.prev != prev) {
			*why = "LRU back link broken";
			return -1;
		}
		if (fn && (r = fn(arg, ref, e, topic, why)))
			return r;
		prev = ref;
		ref = e->lru.next;
		n++;
	}
	if (n != v->h->entries || v->h->lru.tail != prev) {
		*why = "LRU list shorter than the entry count or tail wrong";
		return -1;
	}
	return 0;
}

/* ---- attach-time validation (writer) --------------------------------------- */

struct rc_census {
	struct route_cache *rc;
	uint32_t eprefs[RC_EP_SLOTS];
	uint32_t nlong, nttl;
	uint64_t now;               /* the opener's clock */
	uint64_t prev_last;         /* last_ms of the entry before, in LRU order */
};

static int rc_census_visit(void *arg, uint32_t ref, const struct rc_ent *e,
			   const char *topic, const char **why)
{
	struct rc_census *c = arg;

	(void)ref;
	if (hmap_hash(topic, e->len) != e->hash) {
		*why = "topic does not match its hash";
		return -1;
	}
	/* Cleanup stops at the first unexpired entry of the TTL list, so one
	 * bad stamp would keep every older entry forever: the stamps must be
	 * in use order, not in the future, and no entry used before it was
	 * made.  (Structure alone is all an unclean segment offers.) */
	if (e->last_ms > c->now) {
		*why = "an entry was used in the future (last_ms after now)";
		return -1;
	}
	if (e->created_ms > e->last_ms) {
		*why = "an entry was used before it was made (created_ms after last_ms)";
		return -1;
	}
	if (e->last_ms > c->prev_last) {
		*why = "LRU list out of last_ms order";
		return -1;
	}
	c->prev_last = e->last_ms;
	c->eprefs[e->ep]++;
	c->nlong += e->lng != 0;
	c->nttl += e->state != ROUTE_STATE_JOINED;
	return 0;
}

static int rc_live(const struct route_cache *rc, uint32_t ref)
{
	return ref && ref <= rc->h->hw && rc->ents[ref - 1].hash;
}

static int rc_check_ttl(const struct route_cache *rc, uint32_t nttl, const char **why)
{
	uint32_t ref = rc->h->ttl.head, prev = 0, n = 0;
	uint64_t last = UINT64_MAX;

	for (; ref; prev = ref, ref = rc->ents[ref - 1].ttl.next, n++) {
		if (n == nttl || !rc_live(rc, ref) ||
		    rc->ents[ref - 1].state == ROUTE_STATE_JOINED ||
		    rc->ents[ref - 1].ttl.prev != prev) {
			*why = "TTL list broken";
			return -1;
		}
		if (rc->ents[ref - 1].last_ms > last) {
			*why = "TTL list out of last_ms order";
			return -1;
		}
		last = rc->ents[ref - 1].last_ms;
	}
	if (n != nttl || rc->h->ttl.tail != prev) {
		*why = "TTL list incomplete";
		return -1;
	}
	return 0;
}

static int rc_check_longs(const struct route_cache *rc, uint32_t nlong, const char **why)
{
	const struct rc_hdr *h = rc->h;
	uint32_t ref = h->lng.head, prev = 0, n = 0;

	if (nlong != h->long_used) {
		*why = "long-topic count wrong";
		return -1;
	}
	for (; ref; prev = ref, ref = rc->longs[ref - 1].link.next, n++) {
		const struct rc_long *l = &rc->longs[ref - 1 < h->long_hw ? ref - 1 : 0];

		if (n == nlong || ref > h->long_hw || !rc_live(rc, l->owner) ||
		    rc->ents[l->owner - 1].lng != ref || l->link.prev != prev) {
			*why = "long-topic list broken";
			return -1;
		}
	}
	if (n != nlong || h->lng.tail != prev) {
		*why = "long-topic list incomplete";
		return -1;
	}
	for (ref = h->long_free, n = 0; ref; ref = rc->longs[ref - 1].link.next, n++) {
		if (n == h->long_hw - nlong || ref > h->long_hw || rc->longs[ref - 1].owner) {
			*why = "long-slot free list broken";
			return -1;
		}
	}
	if (n != h->long_hw - nlong) {
		*why = "long-slot free list incomplete";
		return -1;
	}
	return 0;
}

static int rc_check_free(const struct route_cache *rc, const char **why)
{
	const struct rc_hdr *h = rc->h;
	uint32_t ref, n = 0, live = 0;

	for (uint32_t i = 0; i < h->hw; i++)
		live += rc->ents[i].hash != 0;
	if (live != h->entries) {
		*why = "live entries off the LRU list";
		return -1;
	}
	for (ref = h->free_head; ref; ref = rc->ents[ref - 1].chain, n++) {
		if (n == h->hw - h->entries || ref > h->hw || rc->ents[ref - 1].hash) {
			*why = "entry free list broken";
			return -1;
		}
	}
	if (n != h->hw - h->entries) {
		*why = "entry free list incomplete";
		return -1;
	}
	return 0;
}

/* Every live entry is in the chain of its bucket, once (see rc_view_walk for
 * why a bounded walk proves that). */
static int rc_check_buckets(const struct route_cache *rc, const char **why)
{
	uint32_t total = 0;

	for (uint32_t b = 0; b <= rc->mask; b++) {
		for (uint32_t ref = rc->buckets[b]; ref; ref = rc->ents[ref - 1].chain) {
			if (++total > rc->h->entries || !rc_live(rc, ref) ||
			    (rc->ents[ref - 1].hash & rc->mask) != b) {
				*why = "hash chain broken";
				return -1;
			}
		}
	}
	if (total != rc->h->entries) {
		*why = "entries missing from the hash chains";
		return -1;
	}
	return 0;
}

static uint64_t rc_table_sum(const struct route_cache *rc)
{
	const struct rc_hdr *h = rc->h;
	uint64_t s = rc_sum(1, &h->generation, sizeof(*h) - offsetof(struct rc_hdr, generation));

	s = rc_sum(s, rc->eps, (size_t)RC_EP_SLOTS * sizeof(struct rc_ep));
	s = rc_sum(s, rc->buckets, (size_t)h->nbuckets * sizeof(uint32_t));
	s = rc_sum(s, rc->ents, (size_t)h->hw * sizeof(struct rc_ent));
	return rc_sum(s, rc->longs, (size_t)h->long_hw * sizeof(struct rc_long));
}

/* Endpoint names are unique: entries match theirs by name. */
static int rc_check_eps(const struct route_cache *rc, const char **why)
{
	for (unsigned i = 0; i < RC_EP_SLOTS; i++) {
		const struct rc_ep *a = &rc->eps[i];

		if (!a->refs)
			continue;
		for (unsigned k = i + 1; k < RC_EP_SLOTS; k++) {
			if (rc_ep_is(&rc->eps[k], a->name, a->len)) {
				*why = "endpoint name listed twice";
				return -1;
			}
		}
	}
	return 0;
}

/* Everything a writer checks before trusting an attached segment whose
 * header is right, now being the opener's clock.  0, or -1 with the reason
 * in *why. */
static int rc_check_tables(struct route_cache *rc, uint64_t now, const char **why)
{
	const struct rc_hdr *h = rc->h;
	struct rc_census c;
	struct rc_view v = { h, rc->eps, rc->ents, rc->longs, h->hw, h->long_hw };

	if (h->seq & 1) {
		*why = "the last writer died during an update";
		return -1;
	}
	if (h->hw > rc->cap || h->entries > h->hw || h->long_hw > rc->nlong ||
	    h->long_used > h->long_hw) {
		*why = "counters out of range";
		return -1;
	}
	if (h->clean && h->tbl_sum != rc_table_sum(rc)) {
		*why = "table checksum mismatch";
		return -1;
	}
	memset(&c, 0, sizeof(c));
	c.rc = rc;
	c.now = now;
	c.prev_last = UINT64_MAX;
	if (rc_view_walk(&v, rc_census_visit, &c, why))
		return -1;
	for (unsigned i = 0; i < RC_EP_SLOTS; i++) {
		if (rc->eps[i].refs != c.eprefs[i]) {
			*why = "endpoint reference counts wrong";
			return -1;
		}
	}
	if (rc_check_eps(rc, why))
		return -1;
	if (rc_check_ttl(rc, c.nttl, why) || rc_check_longs(rc, c.nlong, why) ||
	    rc_check_free(rc, why) || rc_check_buckets(rc, why))
		return -1;
	return 0;
}

/* ---- writer: seqlock and checked refs --------------------------------------- */

static void rc_wbegin(struct route_cache *rc)
{
	struct rc_hdr *h = rc->h;

	__atomic_store_n(&h->seq, h->seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	if (h->clean)
		h->clean = 0;
}

static void rc_wend(struct route_cache *rc)
{
	__atomic_store_n(&rc->h->seq, rc->h->seq + 1, __ATOMIC_RELEASE);
}

static struct rc_ent *rc_ent(struct route_cache *rc, uint32_t ref)
{
	if (ref - 1 >= rc->cap) {       /* ref 0 wraps around too */
		rc->broken = 1;
		return &rc->ents[0];
	}
	return &rc->ents[ref - 1];
}

static struct rc_long *rc_long(struct route_cache *rc, uint32_t ref)
{
	if (ref - 1 >= rc->nlong) {
		rc->broken = 1;
		return &rc->longs[0];
	}
	return &rc->longs[ref - 1];
}

typedef struct rc_link *(*rc_link_fn)(struct route_cache *rc, uint32_t ref);

static struct rc_link *rc_lru_link(struct route_cache *rc, uint32_t ref)
{
	return &rc_ent(rc, ref)->lru;
}

static struct rc_link *rc_ttl_link(struct route_cache *rc, uint32_t ref)
{
	return &rc_ent(rc, ref)->ttl;
}

static struct rc_link *rc_long_link(struct route_cache *rc, uint32_t ref)
{
	return &rc_long(rc, ref)->link;
}

static void rc_list_del(struct route_cache *rc, struct rc_list *l, uint32_t ref, rc_link_fn fn)
{
	struct rc_link *n = fn(rc, ref);

	if (n->prev)
		fn(rc, n->prev)->next = n->next;
	else if (l->head == ref)
		l->head = n->next;
	else
		rc->broken = 1;
	if (n->next)
		fn(rc, n->next)->prev = n->prev;
	else if (l->tail == ref)
		l->tail = n->prev;
	else
		rc->broken = 1;
	n->prev = n->next = 0;
}

static void rc_list_push(struct route_cache *rc, struct rc_list *l, uint32_t ref, rc_link_fn fn)
{
	struct rc_link *n = fn(rc, ref);

	n->prev = 0;
	n->next = l->head;
	if (l->head)
		fn(rc, l->head)->prev = ref;
	else
		l->tail = ref;
	l->head = ref;
}

static void rc_list_front(struct route_cache *rc, struct rc_list *l, uint32_t ref, rc_link_fn fn)
{
	if (l->head == ref)
		return;
	rc_list_del(rc, l, ref, fn);
	rc_list_push(rc, l, ref, fn);
}

/* ---- writer: endpoint names ------------------------------------------------- */

/* Takes a reference on the slot named name, filling a free one if needed;
 * the index, or -ENOSPC. */
static int rc_ep_get(struct route_cache *rc, const char *name, size_t len)
{
	int free_slot = -1;

	if (rc_ep_is(&rc->eps[rc->ep_hint], name, len)) {
		rc->eps[rc->ep_hint].refs++;
		return (int)rc->ep_hint;
	}
	for (unsigned i = 0; i < RC_EP_SLOTS; i++) {
		struct rc_ep *ep = &rc->eps[i];

		if (rc_ep_is(ep, name, len)) {
			ep->refs++;
			rc->ep_hint = i;
			return (int)i;
		}
		if (!ep->refs && free_slot < 0)
			free_slot = (int)i;
	}
	if (free_slot < 0)
		return -ENOSPC;
	struct rc_ep *ep = &rc->eps[free_slot];
	memset(ep, 0, sizeof(*ep));
	memcpy(ep->name, name, len);
	ep->len = (uint8_t)len;
	ep->refs = 1;
	rc->ep_hint = (unsigned)free_slot;
	return free_slot;
}

static void rc_ep_put(struct route_cache *rc, unsigned i)
{
	struct rc_ep *ep;

	if (i >= RC_EP_SLOTS || !rc->eps[i].refs) {
		rc->broken = 1;
		return;
	}
	ep = &rc->eps[i];
	if (--ep->refs == 0)
		memset(ep, 0, sizeof(*ep));
}

/* ---- writer: entries ------------------------------------------------------- */

static uint32_t *rc_bucket(struct route_cache *rc, uint64_t hash)
{
	return &rc->buckets[hash & rc->mask];
}

static int rc_key_eq(struct route_cache *rc, const struct rc_ent *e, const char *topic,
		     size_t len)
{
	size_t in = len < ROUTE_TOPIC_INLINE ? len : ROUTE_TOPIC_INLINE;

	if (e->len != len || memcmp(e->key, topic, in) != 0)
		return 0;
	return len == in || memcmp(rc_long(rc, e->lng)->data, topic + in, len - in) == 0;
}

/* The entry of (endpoint, topic), or 0; endpoint NULL: the first entry of
 * topic under any endpoint (the most recently inserted).  The hash is the
 * topic's alone, so every endpoint's entry of a topic is in one chain. */
static uint32_t rc_find(struct route_cache *rc, const char *ep, size_t elen, const char *topic,
		       size_t len, uint64_t hash)
{
	uint32_t steps = 0;

	for (uint32_t ref = *rc_bucket(rc, hash); ref; ) {
		const struct rc_ent *e = rc_ent(rc, ref);

		if (rc->broken || ++steps > rc->h->entries) {
			rc->broken = 1;
			return 0;
		}
		if (e->hash == hash && rc_key_eq(rc, e, topic, len) &&
		    (!ep || rc_ep_is(&rc->eps[e->ep % RC_EP_SLOTS], ep, elen)))
			return ref;
		ref = e->chain;
	}
	return 0;
}

static void rc_chain_del(struct route_cache *rc, uint32_t ref, uint64_t hash)
{
	uint32_t *p = rc_bucket(rc, hash), steps = 0;

	while (*p != ref) {
		if (!*p || ++steps > rc->h->entries) {
			rc->broken = 1;
			return;
		}
		p = &rc_ent(rc, *p)->chain;
	}
	*p = rc_ent(rc, ref)->chain;
}

static void rc_long_free(struct route_cache *rc, uint32_t lref)
{
	struct rc_hdr *h = rc->h;
	struct rc_long *l;

	rc_list_del(rc, &h->lng, lref, rc_long_link);
	l = rc_long(rc, lref);
	memset(l, 0, sizeof(*l));
	l->link.next = h->long_free;
	h->long_free = lref;
	h->long_used--;
}

/* Unlinks entry ref from everything and puts it on the free list. */
static void rc_remove(struct route_cache *rc, uint32_t ref)
{
	struct rc_hdr *h = rc->h;
	struct rc_ent *e = rc_ent(rc, ref);

	if (rc->broken)
		return;
	rc_chain_del(rc, ref, e->hash);
	rc_list_del(rc, &h->lru, ref, rc_lru_link);
	if (e->state != ROUTE_STATE_JOINED)
		rc_list_del(rc, &h->ttl, ref, rc_ttl_link);
	if (e->lng)
		rc_long_free(rc, e->lng);
	rc_ep_put(rc, e->ep);
	memset(e, 0, sizeof(*e));
	e->chain = h->free_head;
	h->free_head = ref;
	h->entries--;
}

static int rc_expired(const struct route_cache *rc, const struct rc_ent *e, uint64_t now)
{
	return e->state != ROUTE_STATE_JOINED && now > e->last_ms &&
	       now - e->last_ms > rc->h->ttl_ms;
}

/* rc_find, removing the entry (and saying 0) if it expired. */
static uint32_t rc_get(struct route_cache *rc, const char *ep, size_t elen, const char *topic,
		       size_t len, uint64_t hash, uint64_t now)
{
	uint32_t ref = rc_find(rc, ep, elen, topic, len, hash);

	if (ref && rc_expired(rc, rc_ent(rc, ref), now)) {
		rc_remove(rc, ref);
		rc->h->expirations++;
		return 0;
	}
	return ref;
}

/* The writer's clock as the segment sees it: never behind the last use
 * stored (the head of the LRU list), so that last_ms never decreases along
 * the LRU and TTL lists (which cleanup and the attach-time checks rely on)
 * even when a caller's clock steps back. */
static uint64_t rc_clock(struct route_cache *rc, uint64_t now)
{
	uint32_t head = rc->h->lru.head;
	uint64_t last = head ? rc_ent(rc, head)->last_ms : 0;

	return last > now ? last : now;
}

/* A use: last_ms and the front of every list the entry is on. */
static void rc_touch(struct route_cache *rc, uint32_t ref, uint64_t now)
{
	struct rc_ent *e = rc_ent(rc, ref);

	e->last_ms = now;
	rc_list_front(rc, &rc->h->lru, ref, rc_lru_link);
	if (e->state != ROUTE_STATE_JOINED)
		rc_list_front(rc, &rc->h->ttl, ref, rc_ttl_link);
	if (e->lng)
		rc_list_front(rc, &rc->h->lng, e->lng, rc_long_link);
}

/* Moves the entry on or off the TTL list as it stops or starts being joined;
 * the caller touches it next, which puts it in its place. */
static void rc_state(struct route_cache *rc, uint32_t ref, unsigned state)
{
	struct rc_ent *e = rc_ent(rc, ref);
	int was = e->state != ROUTE_STATE_JOINED, will = state != ROUTE_STATE_JOINED;

	if (was && !will)
		rc_list_del(rc, &rc->h->ttl, ref, rc_ttl_link);
	else if (!was && will)
		rc_list_push(rc, &rc->h->ttl, ref, rc_ttl_link);
	e->state = (uint8_t)state;
}

static void rc_evict(struct route_cache *rc, uint32_t ref)
{
	if (!ref) {
		rc->broken = 1;
		return;
	}
	rc_remove(rc, ref);
	rc->h->evictions++;
}

/* A long slot for a new entry, evicting the entry that used its slot least
 * recently when the pool is full. */
static uint32_t rc_long_alloc(struct route_cache *rc)
{
	struct rc_hdr *h = rc->h;
	uint32_t lref;

	if (!h->long_free && h->long_hw < rc->nlong) {
		lref = ++h->long_hw;
	} else {
		if (!h->long_free)
			rc_evict(rc, h->lng.tail ? rc_long(rc, h->lng.tail)->owner : 0);
		if (rc->broken || !(lref = h->long_free)) {
			rc->broken = 1;
			return 0;
		}
		h->long_free = rc_long(rc, lref)->link.next;
	}
	memset(rc_long(rc, lref), 0, sizeof(struct rc_long));
	rc_list_push(rc, &h->lng, lref, rc_long_link);
	h->long_used++;
	return lref;
}

/* A free entry.  When the table is full it evicts the least recently used
 * entry that is not joined (the tail of the TTL list): a route still in use
 * is worth more than one kept only for warming.  Only when every entry is
 * joined does the least recently used joined one go. */
static uint32_t rc_ent_alloc(struct route_cache *rc)
{
	struct rc_hdr *h = rc->h;
	uint32_t ref;

	if (!h->free_head && h->hw < rc->cap) {
		ref = ++h->hw;
	} else {
		if (!h->free_head)
			rc_evict(rc, h->ttl.tail ? h->ttl.tail : h->lru.tail);
		if (rc->broken || !(ref = h->free_head)) {
			rc->broken = 1;
			return 0;
		}
		h->free_head = rc_ent(rc, ref)->chain;
	}
	memset(rc_ent(rc, ref), 0, sizeof(struct rc_ent));
	return ref;
}

static void rc_insert(struct route_cache *rc, const char *topic, size_t len, uint64_t hash,
		      unsigned ep, uint16_t slot, unsigned state, uint64_t now)
{
	struct rc_hdr *h = rc->h;
	size_t in = len < ROUTE_TOPIC_INLINE ? len : ROUTE_TOPIC_INLINE;
	uint32_t lref = len > in ? rc_long_alloc(rc) : 0;
	uint32_t ref = rc->broken ? 0 : rc_ent_alloc(rc);
	struct rc_ent *e;
	uint32_t *b;

	if (rc->broken)
		return;
	e = rc_ent(rc, ref);
	e->hash = hash;
	e->len = (uint8_t)len;
	memcpy(e->key, topic, in);
	e->ep = (uint8_t)ep;
	e->slot = slot;
	e->state = (uint8_t)state;
	e->created_ms = e->last_ms = now;
	if (lref) {
		struct rc_long *l = rc_long(rc, lref);

		l->owner = ref;
		memcpy(l->data, topic + in, len - in);
		e->lng = lref;
	}
	b = rc_bucket(rc, hash);
	e->chain = *b;
	*b = ref;
	rc_list_push(rc, &h->lru, ref, rc_lru_link);
	if (state != ROUTE_STATE_JOINED)
		rc_list_push(rc, &h->ttl, ref, rc_ttl_link);
	h->entries++;
	h->inserts++;
}

static void rc_fill(struct route_cache *rc, const struct rc_ent *e, const char *topic,
		    struct route_entry *out)
{
	out->topic = topic;
	out->topic_len = e->len;
	out->endpoint = rc->eps[e->ep < RC_EP_SLOTS ? e->ep : 0].name;
	out->hits = e->hits;
	out->last_ms = e->last_ms;
	out->created_ms = e->created_ms;
	out->slot = e->slot;
	out->state = e->state;
}

/* Common entry checks of the calls that change the cache. */
static int rc_usable(const struct route_cache *rc)
{
	if (rc->broken)
		return -EIO;
	if (rc->busy)
		return -EBUSY;
	return 0;
}

/* ---- writer API ------------------------------------------------------------ */

/* Checks an endpoint argument: its length, 0 for NULL when any_ok, or -EINVAL. */
static ssize_t rc_ep_arg(const char *endpoint, int any_ok)
{
	size_t elen = endpoint ? strnlen(endpoint, ROUTE_ENDPOINT_MAX + 1) : 0;

	if (!endpoint && any_ok)
		return 0;
	if (!elen || elen > ROUTE_ENDPOINT_MAX)
		return -EINVAL;
	return (ssize_t)elen;
}

int route_cache_lookup_ep(struct route_cache *rc, const char *endpoint, const char *topic,
			  size_t len, uint64_t now_ms, struct route_entry *out)
{
	ssize_t elen = rc_ep_arg(endpoint, 1);
	uint64_t hash;
	uint32_t ref;
	int r;

	if ((r = rc_topic_check(topic, len)) || (r = rc_usable(rc)))
		return r;
	if (elen < 0)
		return (int)elen;
	hash = hmap_hash(topic, len);
	rc_wbegin(rc);
	now_ms = rc_clock(rc, now_ms);
	ref = rc_get(rc, endpoint, (size_t)elen, topic, len, hash, now_ms);
	if (ref && !rc->broken) {
		struct rc_ent *e = rc_ent(rc, ref);

		e->hits++;
		rc->h->hits++;
		rc_touch(rc, ref, now_ms);
		if (out)
			rc_fill(rc, e, topic, out);
	} else {
		rc->h->misses++;
	}
	rc_wend(rc);
	if (rc->broken)
		return -EIO;
	return ref ? 0 : -ENOENT;
}

int route_cache_lookup(struct route_cache *rc, const char *topic, size_t len, uint64_t now_ms,
		       struct route_entry *out)
{
	return route_cache_lookup_ep(rc, NULL, topic, len, now_ms, out);
}

/* Updates entry ref in place (a use). */
static int rc_update(struct route_cache *rc, uint32_t ref, uint16_t slot, unsigned state,
		     uint64_t now)
{
	rc_ent(rc, ref)->slot = slot;
	rc_state(rc, ref, state);
	rc_touch(rc, ref, now);
	rc->h->updates++;
	return 0;
}

static int rc_add(struct route_cache *rc, const char *topic, size_t len, uint64_t hash,
		  const char *endpoint, size_t elen, uint16_t slot, unsigned state, uint64_t now)
{
	int ep = rc_ep_get(rc, endpoint, elen);

	if (ep < 0)
		return ep;
	rc_insert(rc, topic, len, hash, (unsigned)ep, slot, state, now);
	return 1;
}

int route_cache_put(struct route_cache *rc, const char *topic, size_t len,
		    const char *endpoint, uint16_t slot, enum route_state state,
		    uint64_t now_ms)
{
	ssize_t elen = rc_ep_arg(endpoint, 0);
	uint64_t hash;
	uint32_t ref;
	int r;

	if ((r = rc_topic_check(topic, len)) || (r = rc_usable(rc)))
		return r;
	if (elen < 0 || !rc_state_ok(state))
		return -EINVAL;
	hash = hmap_hash(topic, len);
	rc_wbegin(rc);
	now_ms = rc_clock(rc, now_ms);
	ref = rc_get(rc, endpoint, (size_t)elen, topic, len, hash, now_ms);
	if (!rc->broken)
		r = ref ? rc_update(rc, ref, slot, state, now_ms)
			: rc_add(rc, topic, len, hash, endpoint, (size_t)elen, slot, state, now_ms);
	rc_wend(rc);
	return rc->broken ? -EIO : r;
}

int route_cache_set_state(struct route_cache *rc, const char *endpoint, const char *topic,
			  size_t len, enum route_state state, uint64_t now_ms)
{
	ssize_t elen = rc_ep_arg(endpoint, 1);
	uint32_t ref;
	int r;

	if ((r = rc_topic_check(topic, len)) || (r = rc_usable(rc)))
		return r;
	if (elen < 0 || !rc_state_ok(state))
		return -EINVAL;
	rc_wbegin(rc);
	now_ms = rc_clock(rc, now_ms);
	ref = rc_get(rc, endpoint, (size_t)elen, topic, len, hmap_hash(topic, len), now_ms);
	if (ref) {
		rc_state(rc, ref, state);
		rc_touch(rc, ref, now_ms);
	}
	rc_wend(rc);
	if (rc->broken)
		return -EIO;
	return ref ? 0 : -ENOENT;
}

int route_cache_del(struct route_cache *rc, const char *endpoint, const char *topic, size_t len)
{
	ssize_t elen = rc_ep_arg(endpoint, 1);
	uint32_t ref;
	int r;

	if ((r = rc_topic_check(topic, len)) || (r = rc_usable(rc)))
		return r;
	if (elen < 0)
		return (int)elen;
	rc_wbegin(rc);
	ref = rc_find(rc, endpoint, (size_t)elen, topic, len, hmap_hash(topic, len));
	if (ref) {
		rc_remove(rc, ref);
		rc->h->deletes++;
	}
	rc_wend(rc);
	if (rc->broken)
		return -EIO;
	return ref ? 0 : -ENOENT;
}

/* Walks the LRU list from its tail: every entry that was not left as none
 * becomes none, with last_ms = now, at the front of both lists (so the
 * lists stay in last_ms order).  Visits each of the h->entries entries
 * once: the ones moved go in front of those not visited yet. */
int route_cache_demote(struct route_cache *rc, uint64_t now_ms)
{
	uint32_t ref, prev, n, left;
	int r;

	if ((r = rc_usable(rc)))
		return r;
	rc_wbegin(rc);
	now_ms = rc_clock(rc, now_ms);
	ref = rc->h->lru.tail;
	for (n = 0, left = rc->h->entries; ref && left && !rc->broken; left--, ref = prev) {
		struct rc_ent *e = rc_ent(rc, ref);

		prev = e->lru.prev;
		if (e->state == ROUTE_STATE_NONE)
			continue;
		rc_state(rc, ref, ROUTE_STATE_NONE);
		rc_touch(rc, ref, now_ms);
		n++;
	}
	rc_wend(rc);
	return rc->broken ? -EIO : (int)n;
}

int route_cache_cleanup(struct route_cache *rc, uint64_t now_ms)
{
	int n = 0, r;

	if ((r = rc_usable(rc)))
		return r;
	rc_wbegin(rc);
	for (uint32_t ref; (ref = rc->h->ttl.tail) && !rc->broken; n++) {
		if (!rc_expired(rc, rc_ent(rc, ref), now_ms))
			break;
		rc_remove(rc, ref);
		rc->h->expirations++;
	}
	rc_wend(rc);
	return rc->broken ? -EIO : n;
}

static void rc_stats_of(const struct rc_hdr *h, struct route_cache_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->hits = h->hits;
	st->misses = h->misses;
	st->inserts = h->inserts;
	st->updates = h->updates;
	st->deletes = h->deletes;
	st->evictions = h->evictions;
	st->expirations = h->expirations;
	st->generation = h->generation;
	st->entries = h->entries;
	st->capacity = h->capacity;
	st->long_entries = h->long_used;
	st->long_capacity = h->nlong;
	st->ttl_ms = h->ttl_ms;
}

void route_cache_stats(const struct route_cache *rc, struct route_cache_stats *st)
{
	rc_stats_of(rc->h, st);
}

int route_cache_foreach(struct route_cache *rc, route_cache_cb cb, void *arg)
{
	uint32_t ref, n = 0;
	int r = 0;

	if (rc->broken)
		return -EIO;
	if (rc->busy)
		return -EBUSY;
	rc->busy = 1;
	for (ref = rc->h->lru.head; ref && !r; n++) {
		const struct rc_ent *e = rc_ent(rc, ref);
		size_t in = e->len < ROUTE_TOPIC_INLINE ? e->len : ROUTE_TOPIC_INLINE;
		struct route_entry out;

		if (rc->broken || n == rc->h->entries) {
			rc->broken = 1;
			break;
		}
		memcpy(rc->topic, e->key, in);
		if (e->len > in)
			memcpy(rc->topic + in, rc_long(rc, e->lng)->data, e->len - in);
		rc->topic[e->len] = 0;
		rc_fill(rc, e, rc->topic, &out);
		r = cb(arg, &out);
		ref = e->lru.next;
	}
	rc->busy = 0;
	return rc->broken ? -EIO : r;
}

int route_cache_sync(struct route_cache *rc)
{
	int r;

	if ((r = rc_usable(rc)))
		return r;
	rc_wbegin(rc);
	rc->h->tbl_sum = rc_table_sum(rc);
	rc->h->clean = 1;
	rc_wend(rc);
	return 0;
}

/* ---- open / close ---------------------------------------------------------- */

static void rc_unmap(struct route_cache *rc)
{
	if (rc->h)
		munmap(rc->h, rc->size);
	if (rc->fd >= 0)
		close(rc->fd);
	rc->h = NULL;
	rc->fd = -1;
}

static void rc_bind(struct route_cache *rc)
{
	char *base = (char *)rc->h;

	rc->eps = (struct rc_ep *)(void *)(base + rc->h->off_eps);
	rc->buckets = (uint32_t *)(void *)(base + rc->h->off_buckets);
	rc->ents = (struct rc_ent *)(void *)(base + rc->h->off_ents);
	rc->longs = (struct rc_long *)(void *)(base + rc->h->off_longs);
	rc->cap = rc->h->capacity;
	rc->nlong = rc->h->nlong;
	rc->mask = rc->h->nbuckets - 1;
}

static int rc_lock(struct route_cache *rc, const char *name, char *err, size_t errlen)
{
	if (flock(rc->fd, LOCK_EX | LOCK_NB) == 0)
		return 0;
	if (errno == EWOULDBLOCK) {
		rc_err(err, errlen, "route cache %s: in use by another writer", name);
		return -EBUSY;
	}
	rc_err(err, errlen, "route cache %s: flock: %s", name, strerror(errno));
	return -errno;
}

static int rc_chmod(struct route_cache *rc, unsigned mode, const char *name, char *err,
		    size_t errlen)
{
	if (fchmod(rc->fd, mode) < 0) {
		rc_err(err, errlen, "route cache %s: fchmod: %s", name, strerror(errno));
		return -errno;
	}
	return 0;
}

/* Gives every page of the segment (size bytes) memory now.  tmpfs files
 * are sparse: a page first touched when /dev/shm is full kills the process
 * with SIGBUS, so a segment is never mapped before all of it is allocated
 * (st: an existing segment's, NULL for a new one).  0, or -ENOSPC (and the
 * like) with the reason in err. */
static int rc_reserve(struct route_cache *rc, const char *name, uint64_t size,
		      const struct stat *st, char *err, size_t errlen)
{
	int r;

	if (st && (uint64_t)st->st_blocks * 512 >= size)
		return 0;       /* allocated already (the usual case) */
	r = posix_fallocate(rc->fd, 0, (off_t)size);
	if (r == 0)
		return 0;
	rc_err(err, errlen, "route cache %s: cannot allocate %llu bytes of shared memory: %s "
	       "(make /dev/shm larger or route_cache_size smaller)", name,
	       (unsigned long long)size, strerror(r));
	return -r;
}

/* Attaches to an existing segment: 1, 0 when it must be replaced (why
 * says why; empty when there is none), <0 on errors that rebuilding would
 * not cure. */
static int rc_attach(struct route_cache *rc, const char *name, const struct route_cache_params *p,
		     char *why, size_t whylen, char *err, size_t errlen)
{
	const char *bad = NULL;
	struct rc_hdr hdr;
	struct stat st;
	void *map;
	int r;

	why[0] = 0;
	rc->fd = shm_open(name, O_RDWR | O_CLOEXEC, 0);
	if (rc->fd < 0) {
		if (errno == ENOENT)
			return 0;
		rc_err(err, errlen, "route cache %s: %s", name, strerror(errno));
		return -errno;
	}
	if ((r = rc_lock(rc, name, err, errlen)) < 0)
		return r;
	if (fstat(rc->fd, &st) < 0) {
		rc_err(err, errlen, "route cache %s: fstat: %s", name, strerror(errno));
		return -errno;
	}
	if (st.st_uid != geteuid()) {
		rc_err(why, whylen, "owned by uid %u", (unsigned)st.st_uid);
		return 0;
	}
	if (st.st_size < (off_t)sizeof(struct rc_hdr)) {
		rc_err(why, whylen, "truncated: %lld bytes, not even a header",
		       (long long)st.st_size);
		return 0;
	}
	/* The header is read, not mapped: nothing is touched before we know
	 * the segment is ours and every page of it has memory behind it. */
	if (pread(rc->fd, &hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr)) {
		rc_err(why, whylen, "cannot read the header");
		return 0;
	}
	if (rc_check_header(&hdr, (uint64_t)st.st_size, p->capacity, p->long_capacity,
			    why, whylen))
		return 0;
	if ((uint64_t)st.st_size != hdr.total) {
		rc_err(why, whylen, "size %lld bytes, want %llu", (long long)st.st_size,
		       (unsigned long long)hdr.total);
		return 0;
	}
	if ((r = rc_reserve(rc, name, (uint64_t)st.st_size, &st, err, errlen)) < 0)
		return r;
	map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, rc->fd, 0);
	if (map == MAP_FAILED) {
		rc_err(why, whylen, "mmap of %lld bytes: %s", (long long)st.st_size,
		       strerror(errno));
		return 0;
	}
	rc->h = map;
	rc->size = (size_t)st.st_size;
	if (rc_check_header(rc->h, (uint64_t)st.st_size, p->capacity, p->long_capacity,
			    why, whylen))
		return 0;
	if ((uint64_t)st.st_size != rc->h->total) {
		rc_err(why, whylen, "size %lld bytes, want %llu", (long long)st.st_size,
		       (unsigned long long)rc->h->total);
		return 0;
	}
	rc_bind(rc);
	if (rc_check_tables(rc, p->now_ms, &bad)) {
		rc_err(why, whylen, "%s", bad);
		return 0;
	}
	if ((st.st_mode & 0777) != p->mode && (r = rc_chmod(rc, p->mode, name, err, errlen)) < 0)
		return r;
	rc_wbegin(rc);
	rc->h->generation++;
	rc->h->ttl_ms = p->ttl_ms;
	rc_wend(rc);
	return 1;
}

/* Creates a new, empty segment (the name must not exist). */
static int rc_create(struct route_cache *rc, const char *name, const struct route_cache_params *p,
		     char *err, size_t errlen)
{
	struct rc_hdr lay;
	void *map;
	int r;

	rc_layout(&lay, p->capacity, p->long_capacity);
	rc->fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, p->mode);
	if (rc->fd < 0) {
		rc_err(err, errlen, "route cache %s: create: %s", name, strerror(errno));
		return -errno;
	}
	if ((r = rc_lock(rc, name, err, errlen)) < 0)
		return r;
	/* umask may have taken bits away: set exactly what was asked. */
	if ((r = rc_chmod(rc, p->mode, name, err, errlen)) < 0)
		return r;
	if ((r = rc_reserve(rc, name, lay.total, NULL, err, errlen)) < 0)
		return r;
	map = mmap(NULL, lay.total, PROT_READ | PROT_WRITE, MAP_SHARED, rc->fd, 0);
	if (map == MAP_FAILED) {
		rc_err(err, errlen, "route cache %s: mmap of %llu bytes: %s", name,
		       (unsigned long long)lay.total, strerror(errno));
		return -errno;
	}
	rc->h = map;
	rc->size = lay.total;
	/* The file is all zeros: empty tables.  The magic goes in last, so a
	 * reader never sees a half-written header as valid. */
	lay.magic = 0;
	memcpy(rc->h, &lay, offsetof(struct rc_hdr, seq));
	rc->h->generation = 1;
	rc->h->ttl_ms = p->ttl_ms;
	__atomic_store_n(&rc->h->magic, RC_MAGIC, __ATOMIC_RELEASE);
	rc_bind(rc);
	return 0;
}

int route_cache_open(struct route_cache **out, const char *shm_name,
		     const struct route_cache_params *in, char *err, size_t errlen)
{
	struct route_cache_params p;
	struct route_cache *rc;
	char why[160];
	int r;

	rc_err(err, errlen, "%s", "");
	if (!rc_name_ok(shm_name)) {
		rc_err(err, errlen, "route cache: bad shm name (want /name, at most %d bytes)",
		       RC_NAME_MAX);
		return -EINVAL;
	}
	if (rc_params(in, &p) < 0) {
		rc_err(err, errlen, "route cache %s: capacity (at most %u), long capacity "
		       "(at most capacity) or mode out of range", shm_name,
		       ROUTE_CACHE_MAX_CAPACITY);
		return -EINVAL;
	}
	if (!(rc = calloc(1, sizeof(*rc)))) {
		rc_err(err, errlen, "route cache %s: out of memory", shm_name);
		return -ENOMEM;
	}
	rc->fd = -1;
	r = rc_attach(rc, shm_name, &p, why, sizeof(why), err, errlen);
	if (r == 0) {
		rc_unmap(rc);
		if (why[0]) {
			log_warn("route cache %s: %s; rebuilding it empty", shm_name, why);
			rc_err(err, errlen, "%s", why);
			if (shm_unlink(shm_name) < 0 && errno != ENOENT) {
				r = -errno;
				rc_err(err, errlen, "route cache %s: %s, and cannot remove it: %s",
				       shm_name, why, strerror(errno));
			}
		}
		if (r == 0 && (r = rc_create(rc, shm_name, &p, err, errlen)) < 0 &&
		    r != -EEXIST && r != -EBUSY && rc->fd >= 0)
			shm_unlink(shm_name);   /* ours, half made */
		if (r == 0)
			log_info("route cache %s: created, %u entries", shm_name, p.capacity);
	} else if (r > 0) {
		log_info("route cache %s: attached, %u of %u entries kept", shm_name,
			 rc->h->entries, rc->cap);
	}
	if (r < 0) {
		rc_unmap(rc);
		free(rc);
		return r;
	}
	*out = rc;
	return r;
}

struct route_cache *route_cache_close(struct route_cache *rc)
{
	if (!rc)
		return NULL;
	if (!rc->broken && !rc->busy)
		route_cache_sync(rc);
	rc_unmap(rc);
	free(rc);
	return NULL;
}

void route_cache_default_name(const char *socket_path, char *out, size_t n)
{
	snprintf(out, n, "/phxd-routes-%016llx",
		 (unsigned long long)hmap_hash(socket_path, strlen(socket_path)));
}

int route_cache_unlink(const char *shm_name)
{
	if (!rc_name_ok(shm_name))
		return -EINVAL;
	return shm_unlink(shm_name) < 0 ? -errno : 0;
}

/* ---- readers --------------------------------------------------------------- */

/* What a reader copies out of the segment. */
struct rc_copy {
	struct rc_hdr h;
	struct rc_ep eps[RC_EP_SLOTS];
	struct rc_ent *ents;
	struct rc_long *longs;
	uint32_t ents_cap, longs_cap;
};

static int rc_copy_grow(struct rc_copy *c, uint32_t hw, uint32_t lhw)
{
	if (hw > c->ents_cap) {
		struct rc_ent *n = realloc(c->ents, (size_t)hw * sizeof(*n));
		if (!n)
			return -ENOMEM;
		c->ents = n;
		c->ents_cap = hw;
	}
	if (lhw > c->longs_cap) {
		struct rc_long *n = realloc(c->longs, (size_t)lhw * sizeof(*n));
		if (!n)
			return -ENOMEM;
		c->longs = n;
		c->longs_cap = lhw;
	}
	return 0;
}

static void rc_backoff(unsigned tries)
{
	if (tries < 8) {
		for (volatile int i = 0; i < 64 << tries; i++)
			;
	} else if (tries < 100) {
		sched_yield();
	} else {
		struct timespec ts = { 0, 100 * 1000 };
		nanosleep(&ts, NULL);
	}
}

/* The reader's side of the seqlock.  A try starts with an even seq (a write
 * under way makes it odd: 0, try again) and its copy holds if seq has not
 * moved since (the fence orders the copy before that second look). */
static int rc_seq_begin(const struct rc_hdr *h, uint64_t *s1)
{
	*s1 = __atomic_load_n(&h->seq, __ATOMIC_ACQUIRE);
	return !(*s1 & 1);
}

static int rc_seq_held(const struct rc_hdr *h, uint64_t s1)
{
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	return __atomic_load_n(&h->seq, __ATOMIC_RELAXED) == s1;
}

/* Before try number tries (from 1) of a copy: waits after a failed one. */
static void rc_retry_wait(unsigned tries, unsigned *retries)
{
	if (tries > 1) {
		++*retries;
		rc_backoff(tries);
	}
}

static uint64_t rc_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* memcpy in pieces, giving up as soon as seq has moved away from s1: a
 * copy a write has spoiled is not worth finishing (a million entries take
 * ~100 ms to copy; a busy writer changes something every millisecond).
 * 0, or -1 when seq moved.  The final check with a fence is the caller's;
 * this relaxed peek only saves time. */
static int rc_copy_while(void *dst, const void *src, size_t n, const uint64_t *seq, uint64_t s1)
{
	for (size_t off = 0; off < n; off += RC_COPY_CHUNK) {
		size_t k = n - off < RC_COPY_CHUNK ? n - off : RC_COPY_CHUNK;

		memcpy((char *)dst + off, (const char *)src + off, k);
		if (__atomic_load_n(seq, __ATOMIC_RELAXED) != s1)
			return -1;
	}
	return 0;
}

/* Copies header, endpoint table and the used entries and long slots between
 * two equal even values of seq, trying at most ROUTE_SNAPSHOT_TRIES times
 * and, after the first try, not past deadline (CLOCK_MONOTONIC ms).  0,
 * -EAGAIN, -EBADMSG or -ENOMEM; *tries says how many tries were made. */
static int rc_copy_consistent(const struct rc_hdr *h, const struct rc_hdr *fx,
			      struct rc_copy *c, uint64_t deadline, unsigned *tries)
{
	const char *base = (const char *)h;

	for (*tries = 1; *tries <= ROUTE_SNAPSHOT_TRIES; ++*tries) {
		uint64_t s1;
		uint32_t hw, lhw;

		if (*tries > 1) {
			if (rc_mono_ms() >= deadline) {
				--*tries;
				break;
			}
			rc_backoff(*tries);
		}
		if (!rc_seq_begin(h, &s1))
			continue;
		hw = __atomic_load_n(&h->hw, __ATOMIC_RELAXED);
		lhw = __atomic_load_n(&h->long_hw, __ATOMIC_RELAXED);
		if (hw > fx->capacity || lhw > fx->nlong) {
			/* Torn, or corrupt if seq did not move. */
			if (__atomic_load_n(&h->seq, __ATOMIC_ACQUIRE) == s1)
				return -EBADMSG;
			continue;
		}
		if (rc_copy_grow(c, hw, lhw) < 0)
			return -ENOMEM;
		memcpy(&c->h, h, sizeof(c->h));
		memcpy(c->eps, base + fx->off_eps, sizeof(c->eps));
		/* c->ents is NULL until something was used */
		if (hw && rc_copy_while(c->ents, base + fx->off_ents,
					(size_t)hw * sizeof(struct rc_ent), &h->seq, s1))
			continue;
		if (lhw && rc_copy_while(c->longs, base + fx->off_longs,
					 (size_t)lhw * sizeof(struct rc_long), &h->seq, s1))
			continue;
		if (rc_seq_held(h, s1) && c->h.hw == hw && c->h.long_hw == lhw)
			return 0;
	}
	if (*tries > ROUTE_SNAPSHOT_TRIES)
		*tries = ROUTE_SNAPSHOT_TRIES;
	return -EAGAIN;
}

struct rc_snap_fill {
	struct route_snapshot *s;
	const char *epnames[RC_EP_SLOTS];
	char *pool;
	size_t bytes;               /* topic bytes needed (counting pass) */
};

static int rc_snap_count(void *arg, uint32_t ref, const struct rc_ent *e, const char *topic,
			 const char **why)
{
	struct rc_snap_fill *f = arg;

	(void)ref, (void)topic, (void)why;
	f->bytes += (size_t)e->len + 1;
	return 0;
}

static int rc_snap_emit(void *arg, uint32_t ref, const struct rc_ent *e, const char *topic,
			const char **why)
{
	struct rc_snap_fill *f = arg;
	struct route_entry *o = &f->s->entries[f->s->n++];

	(void)ref, (void)why;
	memcpy(f->pool, topic, (size_t)e->len + 1);
	o->topic = f->pool;
	o->topic_len = e->len;
	o->endpoint = f->epnames[e->ep];
	o->hits = e->hits;
	o->last_ms = e->last_ms;
	o->created_ms = e->created_ms;
	o->slot = e->slot;
	o->state = e->state;
	f->pool += (size_t)e->len + 1;
	return 0;
}

/* Turns a consistent copy into a snapshot, validating every index. */
static int rc_decode(const struct rc_copy *c, struct route_snapshot **out, const char **why)
{
	struct rc_view v = { &c->h, c->eps, c->ents, c->longs, c->h.hw, c->h.long_hw };
	struct rc_snap_fill f;
	size_t epbytes = 0, size;
	char *p;

	memset(&f, 0, sizeof(f));
	if (c->h.entries > c->h.hw) {
		*why = "entry count above the high-water mark";
		return -EBADMSG;
	}
	if (rc_view_walk(&v, rc_snap_count, &f, why))
		return -EBADMSG;
	for (unsigned i = 0; i < RC_EP_SLOTS; i++)
		if (rc_ep_ok(&c->eps[i]))
			epbytes += (size_t)c->eps[i].len + 1;
	size = sizeof(**out) + (size_t)c->h.entries * sizeof(struct route_entry) + epbytes +
	       f.bytes;
	if (!(f.s = calloc(1, size)))
		return -ENOMEM;
	f.s->entries = (struct route_entry *)(void *)(f.s + 1);
	p = (char *)(f.s->entries + c->h.entries);
	for (unsigned i = 0; i < RC_EP_SLOTS; i++) {
		if (!rc_ep_ok(&c->eps[i]))
			continue;
		memcpy(p, c->eps[i].name, (size_t)c->eps[i].len + 1);
		f.epnames[i] = p;
		p += c->eps[i].len + 1;
	}
	f.pool = p;
	rc_view_walk(&v, rc_snap_emit, &f, why);
	rc_stats_of(&c->h, &f.s->stats);
	*out = f.s;
	return 0;
}

/* ---- readers: entry by entry ------------------------------------------------- *
 * When the writer never leaves the whole table alone long enough to copy it,
 * each entry is copied on its own between two equal even values of seq (an
 * entry with its endpoint slot and long slot is at most 404 bytes, copied in
 * well under a microsecond), so each is exactly as it was at some moment,
 * though not all at the same moment.  Entries never move while they live,
 * so a walk over the indices meets every entry that lived throughout once;
 * an index freed and reused during the walk may hand over the same route
 * again, so duplicates keep the latest copy. */

struct rc_item {
	uint64_t hash, hits, last_ms, created_ms;
	size_t topic;               /* offset in the topic pool */
	uint32_t name;              /* index in the walk's endpoint names */
	uint32_t seen;              /* walk order: ties of last_ms keep it */
	uint16_t slot;
	uint8_t state, len;
};

struct rc_walk {
	struct rc_item *items;
	size_t n, cap;
	char *pool;                 /* the topics, NUL-terminated */
	size_t used, pool_cap;
	struct rc_ep *names;        /* distinct endpoint names met (refs unused) */
	uint32_t nnames, names_cap;
	int32_t slot_name[RC_EP_SLOTS];     /* segment slot -> names index, -1 */
	unsigned retries;           /* entry copies a write spoiled */
};

/* Copies the header between two equal even values of seq: 0 or -EAGAIN. */
static int rc_read_hdr(const struct rc_hdr *h, struct rc_hdr *out, unsigned *retries)
{
	for (unsigned tries = 1; tries <= ROUTE_SNAPSHOT_TRIES; tries++) {
		uint64_t s1;

		rc_retry_wait(tries, retries);
		if (!rc_seq_begin(h, &s1))
			continue;
		memcpy(out, h, sizeof(*out));
		if (rc_seq_held(h, s1))
			return 0;
	}
	return -EAGAIN;
}

/* Checks a consistent copy of entry ref (e, its endpoint slot ep and, for a
 * long topic, its long slot l or NULL) and puts its topic in topic.  1, or
 * -EBADMSG with the reason in *why. */
static int rc_ent_decode(const struct rc_ent *e, const struct rc_ep *ep, const struct rc_long *l,
			 uint32_t ref, char *topic, const char **why)
{
	size_t in = e->len < ROUTE_TOPIC_INLINE ? e->len : ROUTE_TOPIC_INLINE;

	if (!e->len || !rc_state_ok(e->state)) {
		*why = "malformed entry";
		return -EBADMSG;
	}
	if (e->ep >= RC_EP_SLOTS || !rc_ep_ok(ep)) {
		*why = "entry names a bad endpoint slot";
		return -EBADMSG;
	}
	memcpy(topic, e->key, in);
	if (e->len > ROUTE_TOPIC_INLINE) {
		if (!l || l->owner != ref) {
			*why = "bad long-topic slot";
			return -EBADMSG;
		}
		memcpy(topic + in, l->data, e->len - in);
	} else if (e->lng) {
		*why = "short topic with a long slot";
		return -EBADMSG;
	}
	topic[e->len] = 0;
	if (hmap_hash(topic, e->len) != e->hash) {
		*why = "topic does not match its hash";
		return -EBADMSG;
	}
	return 1;
}

/* Entry i of the mapping as it was at one moment: 1 with *e, *ep and topic
 * filled, 0 when the entry is free, -EAGAIN when seq moved during each of
 * ROUTE_SNAPSHOT_TRIES copies, -EBADMSG (see rc_ent_decode). */
static int rc_read_ent(const struct rc_hdr *h, const struct rc_hdr *fx, uint32_t i,
		       struct rc_ent *e, struct rc_ep *ep, char *topic, unsigned *retries,
		       const char **why)
{
	const char *base = (const char *)h;
	const struct rc_ent *src = (const struct rc_ent *)(const void *)(base + fx->off_ents) + i;
	const struct rc_ep *eps = (const struct rc_ep *)(const void *)(base + fx->off_eps);
	const struct rc_long *longs = (const struct rc_long *)(const void *)(base + fx->off_longs);
	struct rc_long l;

	for (unsigned tries = 1; tries <= ROUTE_SNAPSHOT_TRIES; tries++) {
		uint64_t s1;
		int have_long = 0;

		rc_retry_wait(tries, retries);
		if (!rc_seq_begin(h, &s1))
			continue;
		memcpy(e, src, sizeof(*e));
		if (e->hash) {
			memcpy(ep, &eps[e->ep % RC_EP_SLOTS], sizeof(*ep));
			if (e->len > ROUTE_TOPIC_INLINE && e->lng && e->lng <= fx->nlong) {
				memcpy(&l, &longs[e->lng - 1], sizeof(l));
				have_long = 1;
			}
		}
		if (!rc_seq_held(h, s1))
			continue;
		if (!e->hash)
			return 0;
		return rc_ent_decode(e, ep, have_long ? &l : NULL, i + 1, topic, why);
	}
	return -EAGAIN;
}

/* The index of endpoint name ep among the names met so far, added if new;
 * slot is where the segment had it (a slot may change names during a walk,
 * so the hint is checked).  The index, or -ENOMEM. */
static int64_t rc_walk_name(struct rc_walk *w, unsigned slot, const struct rc_ep *ep)
{
	int32_t k = w->slot_name[slot];

	if (k >= 0 && rc_ep_is(&w->names[k], ep->name, ep->len))
		return k;
	for (k = 0; (uint32_t)k < w->nnames; k++)
		if (rc_ep_is(&w->names[k], ep->name, ep->len))
			break;
	if ((uint32_t)k == w->nnames) {
		if (w->nnames == w->names_cap) {
			uint32_t ncap = w->names_cap ? 2 * w->names_cap : 16;
			struct rc_ep *n = realloc(w->names, (size_t)ncap * sizeof(*n));

			if (!n)
				return -ENOMEM;
			w->names = n;
			w->names_cap = ncap;
		}
		w->names[w->nnames++] = *ep;
	}
	w->slot_name[slot] = k;
	return k;
}

static int rc_walk_add(struct rc_walk *w, const struct rc_ent *e, const struct rc_ep *ep,
		       const char *topic)
{
	int64_t name = rc_walk_name(w, e->ep, ep);
	struct rc_item *it;

	if (name < 0)
		return (int)name;
	if (w->n == w->cap) {
		size_t ncap = w->cap ? 2 * w->cap : 1024;
		struct rc_item *n = realloc(w->items, ncap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		w->items = n;
		w->cap = ncap;
	}
	if (w->used + e->len + 1 > w->pool_cap) {
		size_t ncap = w->pool_cap ? 2 * w->pool_cap : 16384;
		char *n = realloc(w->pool, ncap);

		if (!n)
			return -ENOMEM;
		w->pool = n;
		w->pool_cap = ncap;
	}
	it = &w->items[w->n];
	it->hash = e->hash;
	it->hits = e->hits;
	it->last_ms = e->last_ms;
	it->created_ms = e->created_ms;
	it->topic = w->used;
	it->name = (uint32_t)name;
	it->seen = (uint32_t)w->n;
	it->slot = e->slot;
	it->state = e->state;
	it->len = e->len;
	memcpy(w->pool + w->used, topic, (size_t)e->len + 1);
	w->used += (size_t)e->len + 1;
	w->n++;
	return 0;
}

/* Copies every live entry, header first (its statistics go in the
 * snapshot); indices made while walking are walked too. */
static int rc_walk_all(const struct rc_hdr *h, const struct rc_hdr *fx, struct rc_walk *w,
		       struct rc_hdr *hc, const char **why)
{
	char topic[ROUTE_TOPIC_MAX + 1];
	struct rc_ent e;
	struct rc_ep ep;
	uint32_t i = 0, hw;
	int r;

	if ((r = rc_read_hdr(h, hc, &w->retries)) < 0)
		return r;
	for (hw = hc->hw; i < hw; ) {
		if (hw > fx->capacity) {
			*why = "high-water mark above the capacity";
			return -EBADMSG;
		}
		for (; i < hw; i++) {
			r = rc_read_ent(h, fx, i, &e, &ep, topic, &w->retries, why);
			if (r < 0)
				return r;
			if (r > 0 && (r = rc_walk_add(w, &e, &ep, topic)) < 0)
				return r;
		}
		hw = __atomic_load_n(&h->hw, __ATOMIC_RELAXED);  /* it only grows */
	}
	return 0;
}

static int rc_item_same(const struct rc_walk *w, const struct rc_item *a, const struct rc_item *b)
{
	return a->hash == b->hash && a->name == b->name && a->len == b->len &&
	       memcmp(w->pool + a->topic, w->pool + b->topic, a->len) == 0;
}

/* Keeps one item per (endpoint, topic), the one used last. */
static int rc_walk_dedup(struct rc_walk *w)
{
	size_t nb = 2, kept = 0;
	uint32_t *tab;

	while (nb < 2 * w->n)
		nb *= 2;
	if (!(tab = calloc(nb, sizeof(*tab))))
		return -ENOMEM;
	for (size_t k = 0; k < w->n; k++) {
		struct rc_item it = w->items[k];
		size_t b = (size_t)(it.hash ^ rc_mix(it.name + 1)) & (nb - 1);

		for (;; b = (b + 1) & (nb - 1)) {
			struct rc_item *o;

			if (!tab[b]) {
				w->items[kept++] = it;
				tab[b] = (uint32_t)kept;
				break;
			}
			o = &w->items[tab[b] - 1];
			if (rc_item_same(w, o, &it)) {
				if (it.last_ms > o->last_ms)
					*o = it;
				break;
			}
		}
	}
	free(tab);
	w->n = kept;
	return 0;
}

/* Most recently used first, as the LRU list has them; equal stamps in walk
 * order. */
static int rc_item_cmp(const void *pa, const void *pb)
{
	const struct rc_item *a = pa, *b = pb;

	if (a->last_ms != b->last_ms)
		return a->last_ms > b->last_ms ? -1 : 1;
	return a->seen < b->seen ? -1 : a->seen > b->seen;
}

/* A snapshot of the segment mapped at h, entry by entry. */
static int rc_snapshot_walk(const struct rc_hdr *h, const struct rc_hdr *fx,
			    struct route_snapshot **out, unsigned *retries, const char **why)
{
	struct rc_walk w;
	struct rc_hdr hc;
	struct route_snapshot *s = NULL;
	size_t size, bytes = 0;
	const char **names = NULL;
	char *p;
	int r;

	memset(&w, 0, sizeof(w));
	memset(w.slot_name, 0xff, sizeof(w.slot_name));
	if ((r = rc_walk_all(h, fx, &w, &hc, why)) < 0 || (r = rc_walk_dedup(&w)) < 0)
		goto out;
	if (w.n)         /* w.items is NULL until something was seen */
		qsort(w.items, w.n, sizeof(*w.items), rc_item_cmp);
	for (size_t k = 0; k < w.n; k++)
		bytes += (size_t)w.items[k].len + 1;
	for (uint32_t k = 0; k < w.nnames; k++)
		bytes += (size_t)w.names[k].len + 1;
	size = sizeof(*s) + w.n * sizeof(struct route_entry) + bytes;
	r = -ENOMEM;
	if (!(s = calloc(1, size)) || (w.nnames && !(names = calloc(w.nnames, sizeof(*names)))))
		goto out;
	s->entries = (struct route_entry *)(void *)(s + 1);
	p = (char *)(s->entries + w.n);
	for (uint32_t k = 0; k < w.nnames; k++) {
		memcpy(p, w.names[k].name, (size_t)w.names[k].len + 1);
		names[k] = p;
		p += w.names[k].len + 1;
	}
	for (size_t k = 0; k < w.n; k++) {
		const struct rc_item *it = &w.items[k];
		struct route_entry *o = &s->entries[k];

		memcpy(p, w.pool + it->topic, (size_t)it->len + 1);
		o->topic = p;
		o->topic_len = it->len;
		o->endpoint = names[it->name];
		o->hits = it->hits;
		o->last_ms = it->last_ms;
		o->created_ms = it->created_ms;
		o->slot = it->slot;
		o->state = it->state;
		p += it->len + 1;
	}
	s->n = w.n;
	rc_stats_of(&hc, &s->stats);
	*out = s;
	s = NULL;
	r = 0;
out:
	*retries = w.retries;
	free(s);
	free(names);
	free(w.items);
	free(w.pool);
	free(w.names);
	return r;
}

/* Maps shm_name read-only and checks its header: 0 with *map, *size and fx,
 * a copy of the header whose fixed fields were checked (later changes to the
 * mapping cannot move the reader out of it), or <0. */
static int rc_map_ro(const char *name, const struct rc_hdr **map, size_t *size,
		     struct rc_hdr *fx, char *err, size_t errlen)
{
	char why[160];
	struct stat st;
	void *m;
	int fd = shm_open(name, O_RDONLY | O_CLOEXEC, 0), r;

	if (fd < 0) {
		r = -errno;
		rc_err(err, errlen, "route cache %s: %s", name, strerror(errno));
		return r;
	}
	if (fstat(fd, &st) < 0 || st.st_size < (off_t)sizeof(struct rc_hdr)) {
		close(fd);
		rc_err(err, errlen, "route cache %s: truncated (no header)", name);
		return -EPROTO;
	}
	m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	r = -errno;
	close(fd);
	if (m == MAP_FAILED) {
		rc_err(err, errlen, "route cache %s: mmap: %s", name, strerror(-r));
		return r;
	}
	if (rc_check_header(m, (uint64_t)st.st_size, 0, 0, why, sizeof(why))) {
		munmap(m, (size_t)st.st_size);
		rc_err(err, errlen, "route cache %s: %s", name, why);
		return -EPROTO;
	}
	memcpy(fx, m, sizeof(*fx));
	if (rc_check_header(fx, (uint64_t)st.st_size, 0, 0, why, sizeof(why))) {
		munmap(m, (size_t)st.st_size);
		rc_err(err, errlen, "route cache %s: header changed while read", name);
		return -EAGAIN;
	}
	*map = m;
	*size = (size_t)st.st_size;
	return 0;
}

int route_cache_snapshot_flags(const char *shm_name, unsigned flags,
			       struct route_snapshot **out, char *err, size_t errlen)
{
	const struct rc_hdr *h = NULL;
	const char *why = "index out of range";
	unsigned tries = 0, retries = 0;
	struct rc_hdr fx;
	size_t size = 0;
	int r = -EAGAIN;

	rc_err(err, errlen, "%s", "");
	if (!rc_name_ok(shm_name)) {
		rc_err(err, errlen, "route cache: bad shm name");
		return -EINVAL;
	}
	if (flags & ~(unsigned)ROUTE_SNAP_PER_ENTRY) {
		rc_err(err, errlen, "route cache: unknown snapshot flags");
		return -EINVAL;
	}
	if ((r = rc_map_ro(shm_name, &h, &size, &fx, err, errlen)) < 0)
		return r;
	r = -EAGAIN;
	if (!(flags & ROUTE_SNAP_PER_ENTRY)) {
		struct rc_copy *c = calloc(1, sizeof(*c));

		r = !c ? -ENOMEM : rc_copy_consistent(h, &fx, c, rc_mono_ms() +
						      ROUTE_SNAPSHOT_ATOMIC_MS, &tries);
		if (r == 0 && (r = rc_decode(c, out, &why)) == 0)
			(*out)->atomic = 1;
		if (c) {
			free(c->ents);
			free(c->longs);
		}
		free(c);
	}
	if (r == -EAGAIN)
		r = rc_snapshot_walk(h, &fx, out, &retries, &why);
	munmap((void *)h, size);
	if (r == -EAGAIN)
		rc_err(err, errlen, "route cache %s: no consistent copy of the table in %u tries, "
		       "nor of every entry in %d tries each (busy writer, or one that died "
		       "mid-update)", shm_name, tries, ROUTE_SNAPSHOT_TRIES);
	else if (r == -EBADMSG)
		rc_err(err, errlen, "route cache %s: corrupted: %s", shm_name, why);
	else if (r == -ENOMEM)
		rc_err(err, errlen, "route cache %s: out of memory", shm_name);
	if (r == 0) {
		(*out)->tries = tries;
		(*out)->retries = retries;
	}
	return r;
}

int route_cache_snapshot(const char *shm_name, struct route_snapshot **out, char *err,
			 size_t errlen)
{
	return route_cache_snapshot_flags(shm_name, 0, out, err, errlen);
}

struct route_snapshot *route_snapshot_free(struct route_snapshot *s)
{
	free(s);
	return NULL;
}
