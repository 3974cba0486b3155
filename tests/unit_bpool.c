/* unit_bpool — the binary pool (common/bpool) and string interning
 * (common/intern): size classes, reuse, limits, release by age with a test
 * clock, trimming, and struct buf on top of the pool. */
#include "bpool.h"
#include "buf.h"
#include "intern.h"

#include <check.h>

#include "ck_run.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t test_now;
static uint64_t test_clock(void) { return test_now; }

/* Every test starts from an empty pool with known limits and the test
 * clock. */
static void setup(void)
{
	bpool_set_clock(test_clock);
	test_now = 1000000;
	intern_flush();
	bpool_configure(1000, (size_t)8 << 20, 300000);
	intern_configure(1000, 300000);
	bpool_trim(0);
}

START_TEST(test_classes)
{
	ck_assert_uint_eq(bpool_class_size(0), 256);
	ck_assert_uint_eq(bpool_class_size(1), 256);
	ck_assert_uint_eq(bpool_class_size(256), 256);
	ck_assert_uint_eq(bpool_class_size(257), 512);
	ck_assert_uint_eq(bpool_class_size(4000), 4096);
	ck_assert_uint_eq(bpool_class_size(BPOOL_MAX), BPOOL_MAX);
	/* past the largest class: exact size, not pooled */
	ck_assert_uint_eq(bpool_class_size(BPOOL_MAX + 1), BPOOL_MAX + 1);
}
END_TEST

START_TEST(test_reuse)
{
	const struct bpool_stats *st = bpool_stats();
	uint64_t h0 = st->hits, m0 = st->misses, s0 = st->saved;
	char *a = bpool_get(300);
	ck_assert_ptr_nonnull(a);
	memset(a, 'x', 512); /* the whole class is usable */
	ck_assert_uint_eq(st->misses, m0 + 1);
	bpool_put(a, 512);
	ck_assert_uint_eq(st->entries, 1);
	ck_assert_uint_eq(st->bytes, 512);
	/* same class: the same block comes back; another class: a miss */
	char *b = bpool_get(400);
	ck_assert_ptr_eq(b, a);
	ck_assert_uint_eq(st->hits, h0 + 1);
	ck_assert_uint_eq(st->saved, s0 + 512);
	ck_assert_uint_eq(st->entries, 0);
	char *c = bpool_get(100);
	ck_assert_ptr_ne(c, a);
	ck_assert_uint_eq(st->misses, m0 + 2);
	ck_assert_uint_eq(st->in_use, 2);
	/* most recently put first */
	bpool_put(b, 512);
	char *d = bpool_get(512);
	ck_assert_ptr_eq(d, b);
	bpool_put(d, 512);
	bpool_put(c, 256);
	ck_assert_uint_eq(st->in_use, 0);
	/* big blocks are not pooled */
	char *big = bpool_get(BPOOL_MAX * 2);
	ck_assert_ptr_nonnull(big);
	bpool_put(big, BPOOL_MAX * 2);
	ck_assert_uint_eq(st->entries, 2);
}
END_TEST

START_TEST(test_limits)
{
	const struct bpool_stats *st = bpool_stats();
	void *p[8];
	bpool_configure(3, (size_t)1 << 20, 300000);
	for (int i = 0; i < 8; i++)
		p[i] = bpool_get(256);
	uint64_t r0 = st->releases;
	for (int i = 0; i < 8; i++)
		bpool_put(p[i], 256);
	ck_assert_uint_eq(st->entries, 3);
	ck_assert_uint_eq(st->releases, r0 + 5);
	/* the byte limit too */
	bpool_trim(0);
	bpool_configure(100, 4096, 300000);
	void *q[3];
	for (int i = 0; i < 3; i++)
		q[i] = bpool_get(2048);
	for (int i = 0; i < 3; i++)
		bpool_put(q[i], 2048);
	ck_assert_uint_eq(st->entries, 2);
	ck_assert_uint_eq(st->bytes, 4096);
	/* no pooling at all */
	bpool_trim(0);
	bpool_configure(0, 4096, 300000);
	void *z = bpool_get(10);
	bpool_put(z, 256);
	ck_assert_uint_eq(st->entries, 0);
}
END_TEST

START_TEST(test_age)
{
	const struct bpool_stats *st = bpool_stats();
	void *a = bpool_get(256), *b = bpool_get(256), *c = bpool_get(1024);
	bpool_put(a, 256);              /* t = 0 */
	test_now += 200000;
	bpool_put(b, 256);              /* t = 200 s */
	bpool_put(c, 1024);
	ck_assert_uint_eq(bpool_cleanup(), 0);
	test_now += 100000;             /* a is 300 s old */
	ck_assert_uint_eq(bpool_cleanup(), 1);
	ck_assert_uint_eq(st->entries, 2);
	ck_assert_uint_eq(st->bytes, 256 + 1024);
	/* the one left in the 256 class is b */
	void *x = bpool_get(256);
	ck_assert_ptr_eq(x, b);
	bpool_put(x, 256);              /* put again at 300 s: young */
	test_now += 250000;             /* c is 350 s old, b 250 s */
	ck_assert_uint_eq(bpool_cleanup(), 1);
	ck_assert_uint_eq(st->bytes, 256);
}
END_TEST

START_TEST(test_trim)
{
	const struct bpool_stats *st = bpool_stats();
	void *p[4] = { bpool_get(256), bpool_get(4096), bpool_get(4096), bpool_get(65536) };
	bpool_put(p[0], 256);
	bpool_put(p[1], 4096);
	bpool_put(p[2], 4096);
	bpool_put(p[3], 65536);
	/* largest first until at most keep bytes wait */
	size_t freed = bpool_trim(9000);
	ck_assert_uint_eq(freed, 65536);
	ck_assert_uint_eq(st->bytes, 256 + 8192);
	freed = bpool_trim(300);
	ck_assert_uint_eq(freed, 8192);
	ck_assert_uint_eq(st->bytes, 256);
	ck_assert_uint_eq(bpool_trim(0), 256);
	ck_assert_uint_eq(st->entries, 0);
}
END_TEST

/* struct buf takes and returns its memory through the pool: growing,
 * freeing and releasing while empty. */
START_TEST(test_buf_on_pool)
{
	const struct bpool_stats *st = bpool_stats();
	struct buf b;
	buf_init(&b, 0);
	ck_assert_int_eq(buf_puts(&b, "hello"), 0);
	ck_assert_uint_eq(b.cap, 256);
	ck_assert_uint_eq(st->in_use, 1);
	char big[3000];
	memset(big, 'y', sizeof(big));
	ck_assert_int_eq(buf_append(&b, big, sizeof(big)), 0);
	ck_assert_uint_eq(b.cap, 4096);
	/* the old 256 block waits in the pool; the bytes moved */
	ck_assert_uint_eq(st->entries, 1);
	ck_assert_int_eq(memcmp(buf_rptr(&b), "hello", 5), 0);
	ck_assert_int_eq(buf_rptr(&b)[5 + 2999], 'y');
	buf_consume(&b, 5);
	buf_release(&b);                /* not empty: kept */
	ck_assert_ptr_nonnull(b.data);
	buf_consume(&b, buf_len(&b));
	buf_release(&b);
	ck_assert_ptr_null(b.data);
	ck_assert_uint_eq(st->in_use, 0);
	ck_assert_uint_eq(st->entries, 2);
	/* waking up: the next append takes a pooled block, no malloc */
	uint64_t m0 = st->misses;
	ck_assert_int_eq(buf_puts(&b, "again"), 0);
	ck_assert_uint_eq(st->misses, m0);
	ck_assert_int_eq(memcmp(buf_rptr(&b), "again", 5), 0);
	buf_free(&b);
}
END_TEST

START_TEST(test_intern)
{
	const struct intern_stats *st = intern_stats();
	char t1[] = "room:lobby", t2[] = "room:lobby";
	const char *a = intern_get(t1, strlen(t1));
	const char *b = intern_get(t2, strlen(t2));
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_eq(a, b);
	ck_assert_ptr_ne(a, t1);
	ck_assert_str_eq(a, "room:lobby");
	ck_assert_uint_eq(intern_len(a), 10);
	ck_assert_uint_eq(st->entries, 1);
	/* length, not NUL, delimits */
	const char *c = intern_get("room:lobbyX", 4);
	ck_assert_str_eq(c, "room");
	ck_assert_ptr_ne(c, a);
	intern_put(a);
	intern_put(b);
	ck_assert_uint_eq(st->unused, 1);
	/* unused but cached: the next get is a hit */
	uint64_t h0 = st->hits;
	const char *d = intern_get("room:lobby", 10);
	ck_assert_ptr_eq(d, a);
	ck_assert_uint_eq(st->hits, h0 + 1);
	ck_assert_uint_eq(st->unused, 0);
	intern_put(d);
	intern_put(c);
	/* release by age */
	test_now += 299999;
	ck_assert_uint_eq(intern_cleanup(), 0);
	test_now += 1;
	ck_assert_uint_eq(intern_cleanup(), 2);
	ck_assert_uint_eq(st->entries, 0);
	ck_assert_uint_eq(st->bytes, 0);
	/* too long */
	static char longs[INTERN_MAX + 1];
	memset(longs, 'a', sizeof(longs));
	ck_assert_ptr_null(intern_get(longs, sizeof(longs)));
}
END_TEST

START_TEST(test_intern_bound)
{
	const struct intern_stats *st = intern_stats();
	intern_configure(2, 300000);
	const char *s[4];
	char name[16];
	for (int i = 0; i < 4; i++) {
		int n = snprintf(name, sizeof(name), "t%d", i);
		s[i] = intern_get(name, (size_t)n);
	}
	for (int i = 0; i < 4; i++)
		intern_put(s[i]);
	/* the two oldest unused went */
	ck_assert_uint_eq(st->entries, 2);
	ck_assert_uint_eq(st->unused, 2);
	uint64_t m0 = st->misses;
	intern_put(intern_get("t3", 2));
	ck_assert_uint_eq(st->misses, m0);
	intern_put(intern_get("t0", 2));
	ck_assert_uint_eq(st->misses, m0 + 1);
	intern_flush();
	ck_assert_uint_eq(st->entries, 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("bpool");
	TCase *tc = tcase_create("pool");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_classes);
	tcase_add_test(tc, test_reuse);
	tcase_add_test(tc, test_limits);
	tcase_add_test(tc, test_age);
	tcase_add_test(tc, test_trim);
	tcase_add_test(tc, test_buf_on_pool);
	tcase_add_test(tc, test_intern);
	tcase_add_test(tc, test_intern_bound);
	suite_add_tcase(s, tc);
	return ck_run(s);
}
