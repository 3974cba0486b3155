/* route_cache — (endpoint, topic) → upstream route cache in POSIX shared memory.
 *
 * A fixed-size table the daemon (the only writer) keeps in a shm_open()
 * object, so that routes survive a restart (the next run attaches and warms
 * its topics from route_cache_foreach()) and so that another process
 * (phxctl, a test) reads a consistent snapshot while the daemon writes.
 * An entry's key is its endpoint name and topic: endpoints that carry the
 * same topic each have their own entry (the hash is the topic's, so they
 * share a chain; a lookup compares the endpoint by name in O(1)).
 * Nothing in the segment is a pointer: every link is a u32 "ref", the entry
 * or slot index plus one, 0 meaning none, so a zero-filled segment is empty.
 *
 * Segment layout (native byte order; offsets in bytes):
 *
 *   header      0     u64 magic "PHXDRTC1", u32 version (1), u32 header
 *                     size, u32 entry size, u32 long-slot size, u32 endpoint
 *                     slot size, u32 endpoint slots, u32 capacity (@32),
 *                     u32 buckets, u32 long slots (@40), u64 offsets of the
 *                     endpoint table (@48), buckets (@56), entries (@64),
 *                     long slots (@72), u64 total size (@80), u64 checksum
 *                     of bytes 0..88 (@88); then, on their own cache line,
 *                     u64 seq (@128), u32 clean (@136), u64 table checksum
 *                     (@144), u64 generation (@152) and the statistics.
 *   endpoints   255 × 72 B: refcount, length, NUL-terminated name.
 *   buckets     2^k ≥ 2 × capacity × u32: head of each hash chain.
 *   entries     capacity × 128 B: 64 B of metadata and the first 64 bytes
 *               of the topic inline.
 *   long slots  long_capacity × 204 B: bytes 64..254 of topics longer
 *               than 64 bytes.
 *
 * Memory cost.  Storing every topic at its maximum (255 B) plus an
 * endpoint name (64 B) inline would cost ~330 B an entry, 330 MB at a
 * million.  Phoenix topics are short ("room:42", "user:<uuid>",
 * "lv:phx-F…"): 64 inline bytes hold nearly all of them, the endpoint is a
 * one-byte index into a table of names (stored by name, so a restart with
 * reordered endpoints still maps right), and topics of 65..255 bytes take
 * one slot from a smaller pool (default capacity / 8).  When that pool is
 * full, a new long topic evicts the least recently used long topic.  Per
 * entry: 128 B + 8 B of buckets + 204 / 8 B ≈ 161.5 B; with the defaults
 * 1,000 entries take 180,416 bytes and 1,000,000 take 161,907,328 bytes
 * (route_cache_segment_size()).  A deployment whose topics are all long
 * sets long_capacity = capacity (~340 B an entry).  The whole segment is
 * allocated (posix_fallocate) before it is mapped, at creation and again
 * on attach when the file has holes: a tmpfs page first touched when
 * /dev/shm is full would kill phxd with SIGBUS.  When /dev/shm has no room,
 * open fails with -ENOSPC and phxd runs without the cache.
 *
 * Consistency.  Every change happens between an odd and the next even value
 * of seq (a seqlock: relaxed odd store + release fence, writes, release store
 * of the even value); a reader copies the header and the used part of the
 * tables between two reads of seq (acquire load, copy, acquire fence,
 * relaxed load) and retries a bounded number of times while they differ or
 * are odd.  Lookups change the segment too (hit counters, LRU order).  The
 * header's fixed fields carry a checksum checked by every open and snapshot;
 * route_cache_close() and route_cache_sync() store a checksum of the whole
 * table and set clean, which the first later change clears.  On open an
 * existing segment is attached only when its header matches, its checksum
 * matches (when clean), no update was cut short (seq even) and every index in
 * the LRU, TTL, long-slot and free lists and in the hash chains checks out,
 * the timestamps are in use order along the LRU and TTL lists, none is
 * after the opener's clock and no entry was used before it was made (one
 * bad stamp would stop the TTL cleanup for good), and endpoint names are
 * NUL-terminated and unique;
 * otherwise the reason is logged and the segment is replaced by a new, empty
 * one (unlinked and created again, so a reader still mapping the old one
 * never faults).  Snapshots validate every index of their private copy too.
 *
 * Readers.  The seqlock covers the whole table, and every lookup is a write
 * (hits move entries in the LRU list), so a big table may never be copied
 * whole between two writes: at a million entries (~130 MB to copy, ~100 ms)
 * and 1,000 joins a second no copy ever succeeds.  route_cache_snapshot()
 * therefore tries whole copies for at most ROUTE_SNAPSHOT_ATOMIC_MS
 * (abandoning each as soon as seq moves), and then goes entry by entry:
 * each entry, with its endpoint name and the rest of a long topic, is
 * copied between two equal even values of seq, and its topic must match
 * its hash.  The reader then gets (snapshot->atomic 0):
 *   - every route untorn: topic, endpoint, slot, state, hits and times are
 *     those of one moment of that route;
 *   - every route that existed for the whole call, once;
 *   - routes inserted, deleted or evicted during the call, or not;
 *   - no (endpoint, topic) twice: if one was deleted and inserted again
 *     during the call, only its later copy;
 *   - the order by last_ms, newest first (the LRU order but for ties);
 *   - stats from one moment of the call, so stats.entries may differ from n.
 * A whole copy (atomic 1) is one moment, in exact LRU order.  Nothing in
 * the layout or the writer changed for this (version 1 still): lookups
 * cost what they did.
 *
 * Time: every call takes now_ms from a clock of the caller's choice
 * (util_now_ms() in the daemon, a counter in tests), and open takes the
 * same clock's reading in params->now_ms.  A call whose clock is behind the
 * latest stamp in the table is taken to happen at that stamp, so stamps
 * never decrease along the lists.
 */
#ifndef PHX_ROUTE_CACHE_H
#define PHX_ROUTE_CACHE_H

#include <stddef.h>
#include <stdint.h>

#define ROUTE_TOPIC_MAX 255                 /* bytes in a topic */
#define ROUTE_TOPIC_INLINE 64               /* of which stored in the entry */
#define ROUTE_ENDPOINT_MAX 64               /* bytes in an endpoint name */
#define ROUTE_ENDPOINTS_MAX 255             /* distinct endpoint names in use */
#define ROUTE_CACHE_DEFAULT_CAPACITY 1000
#define ROUTE_CACHE_MAX_CAPACITY 1000000
#define ROUTE_CACHE_DEFAULT_TTL_MS (300u * 1000u)
#define ROUTE_CACHE_DEFAULT_MODE 0600u
#define ROUTE_SNAPSHOT_TRIES 1000           /* copies a snapshot attempts: of the
					       table, then of each entry */
#define ROUTE_SNAPSHOT_ATOMIC_MS 20         /* and time it spends on whole copies */
#define ROUTE_SNAP_PER_ENTRY 1u             /* route_cache_snapshot_flags(): go
					       entry by entry at once */

enum route_state {
	ROUTE_STATE_NONE,
	ROUTE_STATE_JOINING,
	ROUTE_STATE_JOINED,             /* the only state that never expires */
	ROUTE_STATE_ERRORED,
};

struct route_cache_params {
	uint32_t capacity;          /* entries; 0: 1000; at most 1,000,000 */
	uint32_t long_capacity;     /* entries with topics over 64 bytes; 0:
				       capacity / 8, at least min(16, capacity);
				       at most capacity */
	uint32_t ttl_ms;            /* 0: 300 s */
	unsigned mode;              /* permission bits; 0: 0600 */
	uint64_t now_ms;            /* the caller's clock at open (stamps after it
				       mean a corrupt segment); 0: CLOCK_MONOTONIC
				       in ms, as util_now_ms() */
};

struct route_entry {
	const char *topic;          /* NUL-terminated, except after a lookup,
				       which hands back the caller's topic */
	size_t topic_len;
	const char *endpoint;       /* NUL-terminated */
	uint64_t hits;              /* successful lookups */
	uint64_t last_ms;           /* last lookup, put or state change */
	uint64_t created_ms;
	uint16_t slot;              /* upstream slot of the endpoint's pool */
	uint8_t state;              /* enum route_state */
};

struct route_cache_stats {
	uint64_t hits, misses, inserts, updates, deletes, evictions, expirations;
	uint64_t generation;        /* writer opens of this segment, from 1 */
	uint32_t entries, capacity;
	uint32_t long_entries, long_capacity;
	uint32_t ttl_ms;
};

struct route_cache;

/* Bytes of the segment for p (NULL: defaults); 0 if p is invalid. */
size_t route_cache_segment_size(const struct route_cache_params *p);

/* Opens or creates the segment shm_name ("/name") for writing, p NULL for
 * the defaults.  Returns 1 when an existing segment was attached with its
 * entries, 0 when a new one was created; err is then "" or, when an
 * existing segment had to be replaced, the reason (also logged).  On error
 * a negative errno with the reason in err: -EINVAL (bad name or params),
 * -EBUSY (another writer holds it), -EACCES/-EPERM (someone else's object),
 * -ENOSPC (/dev/shm has no room for the segment; an existing one is left
 * as it is), -ENOMEM, or whatever shm_open/posix_fallocate/mmap said.
 * Entries keep their state: a writer that died left some joined, see
 * route_cache_demote(). */
int route_cache_open(struct route_cache **out, const char *shm_name,
		     const struct route_cache_params *p, char *err, size_t errlen);
/* Stores the table checksum (unless the cache is broken), unmaps; accepts
 * NULL, returns NULL; not from a foreach callback.  The segment stays for
 * the next run. */
struct route_cache *route_cache_close(struct route_cache *rc);
/* The segment name phxd uses when route_cache_name is not set: one per
 * client socket path, "/phxd-routes-" and 16 hex digits of its hash, so two
 * daemons never share a cache.  A reader (phxctl) finds the segment of the
 * daemon at socket_path with it. */
void route_cache_default_name(const char *socket_path, char *out, size_t n);
/* Removes the segment name; 0 or -errno. */
int route_cache_unlink(const char *shm_name);
/* Stores the table checksum and marks the segment clean, as close does: a
 * cheap way to let the next run verify every byte (O(used size)). */
int route_cache_sync(struct route_cache *rc);

/* Every call below returns -EIO once the cache found an index out of range
 * (the segment was changed behind its back): close and open again, which
 * rebuilds it.  Calls made from a route_cache_foreach() callback that would
 * change the cache return -EBUSY.  Topics are bytes (len 1..255): longer ones
 * get -ENAMETOOLONG, empty ones -EINVAL. */

/* The entry of (endpoint, topic): 0 and *out filled (out may be NULL) with
 * out->topic = topic (borrowed from the caller) and out->endpoint valid
 * until the next call that changes the cache other than a lookup; -ENOENT
 * when absent or expired, -EINVAL for an endpoint over 64 bytes.  endpoint
 * NULL matches any endpoint (the entry of topic inserted last).  A hit
 * counts as a use (LRU, last_ms, TTL). */
int route_cache_lookup_ep(struct route_cache *rc, const char *endpoint, const char *topic,
			  size_t len, uint64_t now_ms, struct route_entry *out);
/* route_cache_lookup_ep() with endpoint NULL, for callers with one endpoint. */
int route_cache_lookup(struct route_cache *rc, const char *topic, size_t len,
		       uint64_t now_ms, struct route_entry *out);
/* Inserts (returns 1) or updates in place (returns 0) (endpoint, topic) →
 * slot, state; a use.  Inserting into a full table evicts the least recently
 * used entry that is not joined, or when all are joined the least recently
 * used one.  -EINVAL (endpoint empty or over 64 bytes, bad state),
 * -ENOSPC (255 other endpoint names in use). */
int route_cache_put(struct route_cache *rc, const char *topic, size_t len,
		    const char *endpoint, uint16_t slot, enum route_state state,
		    uint64_t now_ms);
/* Changes the join state of (endpoint, topic); a use, so the TTL of an
 * entry that stops being joined counts from now.  0 or -ENOENT.  endpoint
 * NULL: as route_cache_lookup_ep(). */
int route_cache_set_state(struct route_cache *rc, const char *endpoint, const char *topic,
			  size_t len, enum route_state state, uint64_t now_ms);
/* Removes (endpoint, topic); 0 or -ENOENT.  endpoint NULL: as above. */
int route_cache_del(struct route_cache *rc, const char *endpoint, const char *topic,
		    size_t len);
/* After a restart: every entry not in state none (joined or joining when
 * the last writer died without leaving) becomes none, keeping its slot
 * for warming, with its TTL counted from now_ms.  Returns how many. */
int route_cache_demote(struct route_cache *rc, uint64_t now_ms);
/* Removes entries not joined and unused for more than ttl_ms; returns how
 * many.  Costs O(expired): the not-joined entries are kept in use order. */
int route_cache_cleanup(struct route_cache *rc, uint64_t now_ms);
void route_cache_stats(const struct route_cache *rc, struct route_cache_stats *st);

/* Calls cb for every entry, most recently used first, with strings valid
 * until cb returns; expired entries not yet cleaned up are included.
 * Returns 0, or the first nonzero value cb returned (iteration stops). */
typedef int (*route_cache_cb)(void *arg, const struct route_entry *e);
int route_cache_foreach(struct route_cache *rc, route_cache_cb cb, void *arg);

/* ---- readers (other processes; read-only mapping, never write) ---- */

struct route_snapshot {
	struct route_cache_stats stats; /* at one moment, even when !atomic */
	size_t n;
	struct route_entry *entries;    /* n, most recently used first */
	int atomic;                     /* 1: the whole table at one moment */
	unsigned tries;                 /* whole-table copies tried */
	unsigned retries;               /* entry copies redone (!atomic) */
	/* the strings follow, in the same allocation */
};

/* Copies a snapshot of the segment shm_name (see "Readers" above for what
 * it promises).  0, or -ENOENT (no segment), -EACCES, -EPROTO (not a route
 * cache, another version, truncated or a bad header checksum), -EBADMSG
 * (inconsistent tables, or an entry whose topic does not match its hash),
 * -EAGAIN (the writer died in the middle of a change, or never left one
 * entry alone for ROUTE_SNAPSHOT_TRIES copies), -ENOMEM; the reason in err. */
int route_cache_snapshot(const char *shm_name, struct route_snapshot **out,
			 char *err, size_t errlen);
/* The same; flags ROUTE_SNAP_PER_ENTRY skips the whole-table copies (tests,
 * benchmarks), anything else is -EINVAL. */
int route_cache_snapshot_flags(const char *shm_name, unsigned flags,
			       struct route_snapshot **out, char *err, size_t errlen);
struct route_snapshot *route_snapshot_free(struct route_snapshot *s);

const char *route_state_name(enum route_state st);

#endif
