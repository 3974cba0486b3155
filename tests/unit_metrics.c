/* Unit tests of the pure parts of metrics: the sample ring, the alert
 * hysteresis, the sticky writer and the Prometheus text writer. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "daemon/metrics.h"
#include "hist.h"

/* ---- ring ---------------------------------------------------------------------- */

START_TEST(ring_keeps_the_newest)
{
	struct metrics_ring r;
	ck_assert_int_eq(metrics_ring_init(&r, 3), 0);
	ck_assert_ptr_null(metrics_ring_get(&r, 0));
	struct metrics_sample *first = NULL;
	for (uint64_t i = 1; i <= 5; i++) {
		struct metrics_sample *s = metrics_ring_push(&r);
		ck_assert_uint_eq(s->wall_ms, 0);       /* handed out zeroed */
		s->wall_ms = i;
		if (!first)
			first = s;
		ck_assert_uint_eq(r.n, i < 3 ? i : 3);
		ck_assert_uint_eq(metrics_ring_get(&r, 0)->wall_ms, i);
	}
	ck_assert_uint_eq(r.cap, 3);
	ck_assert_uint_eq(metrics_ring_get(&r, 0)->wall_ms, 5);
	ck_assert_uint_eq(metrics_ring_get(&r, 1)->wall_ms, 4);
	ck_assert_uint_eq(metrics_ring_get(&r, 2)->wall_ms, 3);
	ck_assert_ptr_null(metrics_ring_get(&r, 3));
	/* the same memory all along */
	for (size_t age = 0; age < 3; age++) {
		const struct metrics_sample *s = metrics_ring_get(&r, age);
		ck_assert(s >= first && s < first + 3);
	}
	metrics_ring_free(&r);
	ck_assert_ptr_null(r.s);
}
END_TEST

START_TEST(ring_of_one)
{
	struct metrics_ring r;
	ck_assert_int_eq(metrics_ring_init(&r, 0), 0);
	ck_assert_uint_eq(r.cap, 1);
	metrics_ring_push(&r)->rss = 7;
	metrics_ring_push(&r)->rss = 8;
	ck_assert_uint_eq(r.n, 1);
	ck_assert_uint_eq(metrics_ring_get(&r, 0)->rss, 8);
	ck_assert_ptr_null(metrics_ring_get(&r, 1));
	metrics_ring_free(&r);
}
END_TEST

/* ---- alerts ------------------------------------------------------------------- */

START_TEST(alert_above_hysteresis)
{
	struct metrics_rule r;
	struct metrics_alert a = { 0 };
	metrics_rule_set(&r, 1, 100);
	ck_assert_uint_eq(r.samples, METRICS_ALERT_SAMPLES);
	r.samples = 1;                                                /* at once */
	ck_assert(!r.off);
	ck_assert(fabs(r.clear_at - 90) < 1e-9);
	ck_assert_int_eq(metrics_alert_step(&a, &r, 1, 50), 0);
	ck_assert_int_eq(metrics_alert_step(&a, &r, 1, 100), 0);     /* at, not above */
	ck_assert_int_eq(metrics_alert_step(&a, &r, 1, 150), 1);
	ck_assert(a.active);
	/* raised once: staying high says nothing more */
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(metrics_alert_step(&a, &r, 1, 150 + i), 0);
	/* below the threshold but above the clear level: still firing */
	ck_assert_int_eq(metrics_alert_step(&a, &r, 1, 95), 0);
	ck_assert(a.active);
	/* nothing measured: the state stays */
	ck_assert_int_eq(metrics_alert_step(&a, &r, 0, 0), 0);
	ck_assert(a.active);
	ck_assert(!a.have);
	ck_assert(fabs(a.value - 95) < 1e-9);
	ck_assert_int_eq(metrics_alert_step(&a, &r, 1, 90), -1);
	ck_assert(!a.active);
	ck_assert_int_eq(metrics_alert_step(&a, &r, 1, 95), 0);      /* no flapping back */
	ck_assert_int_eq(metrics_alert_step(&a, &r, 1, 101), 1);
	ck_assert_uint_eq(a.raised, 2);
}
END_TEST

START_TEST(alert_below_hysteresis)
{
	struct metrics_rule r;
	struct metrics_alert a = { 0 };
	metrics_rule_set(&r, 0, 80);                                  /* cache hit rate % */
	r.samples = 1;
	ck_assert(fabs(r.clear_at - 85) < 1e-9);
	ck_assert_int_eq(metrics_alert_step(&a, &r, 1, 90), 0);
	ck_assert_int_eq(metrics_alert_step(&a, &r, 1, 79), 1);
	ck_assert_int_eq(metrics_alert_step(&a, &r, 1, 82), 0);
	ck_assert_int_eq(metrics_alert_step(&a, &r, 1, 85), -1);
	metrics_rule_set(&r, 0, 98);
	ck_assert(fabs(r.clear_at - 100) < 1e-9);                     /* capped */
}
END_TEST

START_TEST(alert_off)
{
	struct metrics_rule r;
	struct metrics_alert a = { 0 };
	metrics_rule_set(&r, 1, 10);
	r.samples = 1;
	ck_assert_int_eq(metrics_alert_step(&a, &r, 1, 20), 1);
	metrics_rule_set(&r, 1, 0);                                   /* turned off */
	ck_assert(r.off);
	ck_assert_int_eq(metrics_alert_step(&a, &r, 1, 1e12), -1);
	ck_assert_int_eq(metrics_alert_step(&a, &r, 1, 1e12), 0);
	ck_assert(!a.active);
	ck_assert_str_eq(metrics_alert_name(METRICS_ALERT_RESPONSE), "response_time");
	ck_assert_str_eq(metrics_alert_name(METRICS_ALERT_COUNT), "?");
}
END_TEST

/* Raising and clearing take METRICS_ALERT_SAMPLES measured samples in a row. */
START_TEST(alert_needs_consecutive_samples)
{
	struct metrics_rule r;
	struct metrics_alert a = { 0 };
	metrics_rule_set(&r, 1, 100);
	ck_assert_uint_eq(r.samples, 3);
	ck_assert_int_eq(metrics_alert_step(&a, &r, 1, 150), 0);
	ck_assert_int_eq(metrics_alert_step(&a, &r, 1, 150), 0);
	ck_assert_int_eq(metrics_alert_step(&a, &r, 1, 50), 0);      /* the run breaks */
	ck_assert_int_eq(metrics_alert_step(&a, &r, 1, 150), 0);
	ck_assert_int_eq(metrics_alert_step(&a, &r, 0, 0), 0);       /* nothing measured: */
	ck_assert_int_eq(metrics_alert_step(&a, &r, 1, 150), 0);     /* neither counts nor breaks */
	ck_assert(!a.active);
	ck_assert_int_eq(metrics_alert_step(&a, &r, 1, 150), 1);
	ck_assert(a.active);
	/* one good sample in a bad run, or two, do not clear it */
	ck_assert_int_eq(metrics_alert_step(&a, &r, 1, 10), 0);
	ck_assert_int_eq(metrics_alert_step(&a, &r, 1, 10), 0);
	ck_assert_int_eq(metrics_alert_step(&a, &r, 1, 150), 0);
	ck_assert_int_eq(metrics_alert_step(&a, &r, 1, 10), 0);
	ck_assert_int_eq(metrics_alert_step(&a, &r, 1, 95), 0);      /* above clear_at (90) */
	ck_assert_int_eq(metrics_alert_step(&a, &r, 1, 10), 0);
	ck_assert_int_eq(metrics_alert_step(&a, &r, 1, 10), 0);
	ck_assert(a.active);
	ck_assert_int_eq(metrics_alert_step(&a, &r, 1, 10), -1);
	ck_assert(!a.active);
	ck_assert(!a.stale);
	ck_assert_uint_eq(a.raised, 1);
}
END_TEST

/* A firing alert with no data for rule.stale samples clears, marked stale. */
START_TEST(alert_clears_when_stale)
{
	struct metrics_rule r;
	struct metrics_alert a = { 0 };
	metrics_rule_set(&r, 1, 100);
	r.stale = 4;
	for (int i = 0; i < 3; i++)
		metrics_alert_step(&a, &r, 1, 500);
	ck_assert(a.active);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(metrics_alert_step(&a, &r, 0, 0), 0);
	ck_assert(a.active);
	ck_assert_int_eq(metrics_alert_step(&a, &r, 1, 500), 0);     /* data again: idle resets */
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(metrics_alert_step(&a, &r, 0, 0), 0);
	ck_assert_int_eq(metrics_alert_step(&a, &r, 0, 0), -1);
	ck_assert(!a.active);
	ck_assert(a.stale);
	ck_assert(fabs(a.value - 500) < 1e-9);                        /* the last value, kept */
	for (int i = 0; i < 20; i++)                                  /* said once */
		ck_assert_int_eq(metrics_alert_step(&a, &r, 0, 0), 0);
	/* a run of two before the gap does not count after it */
	metrics_alert_step(&a, &r, 1, 500);
	metrics_alert_step(&a, &r, 1, 500);
	for (int i = 0; i < 4; i++)
		metrics_alert_step(&a, &r, 0, 0);
	ck_assert_int_eq(metrics_alert_step(&a, &r, 1, 500), 0);
	ck_assert_int_eq(metrics_alert_step(&a, &r, 1, 500), 0);
	ck_assert_int_eq(metrics_alert_step(&a, &r, 1, 500), 1);
	ck_assert(!a.stale);
	/* stale 0: the state stays however long nothing is measured */
	r.stale = 0;
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(metrics_alert_step(&a, &r, 0, 0), 0);
	ck_assert(a.active);
}
END_TEST

START_TEST(response_time_counts_timeouts)
{
	struct hist d = { 0 };
	double ms = -1;
	int tmo = -1;
	ck_assert_int_eq(metrics_response_ms(&d, 0, 5000, &ms, &tmo), 0);   /* no data */
	ck_assert_int_eq(tmo, 0);
	/* only timeouts: the server stopped answering */
	ck_assert_int_eq(metrics_response_ms(&d, 1, 5000, &ms, &tmo), 1);
	ck_assert_int_eq(tmo, 1);
	ck_assert(fabs(ms - 5000) < 1e-9);
	for (int i = 0; i < 100; i++)
		hist_observe_us(&d, 2000);                            /* 2 ms each */
	ck_assert_int_eq(metrics_response_ms(&d, 0, 5000, &ms, &tmo), 1);
	ck_assert_int_eq(tmo, 0);
	ck_assert(ms > 1 && ms <= 2.5);
	/* 2 of 102 timed out: more than 1 %, the p99 is a timeout */
	ck_assert_int_eq(metrics_response_ms(&d, 2, 5000, &ms, &tmo), 1);
	ck_assert_int_eq(tmo, 1);
	ck_assert(fabs(ms - 5000) < 1e-9);
	/* 1 of 1001: the p99 is still a reply */
	for (int i = 0; i < 900; i++)
		hist_observe_us(&d, 2000);
	ck_assert_int_eq(metrics_response_ms(&d, 1, 5000, &ms, &tmo), 1);
	ck_assert_int_eq(tmo, 0);
	ck_assert(ms < 5);
}
END_TEST

/* The sampler's view of a server that stops replying, one interval at a
 * time: fast replies, then only timeouts (raised after three), then no
 * pushes at all (cleared as stale). */
START_TEST(response_alert_follows_timeouts)
{
	struct metrics_rule r;
	struct metrics_alert a = { 0 };
	metrics_rule_set(&r, 1, 1000);
	r.stale = 20;
	int raised_at = -1, cleared_at = -1;
	for (int t = 0; t < 60; t++) {
		struct hist d = { 0 };
		uint64_t timeouts = 0;
		if (t < 10)
			hist_observe_us(&d, 3000);              /* answered in 3 ms */
		else if (t < 20)
			timeouts = 1;                           /* no reply within 5 s */
		double ms = 0;
		int tmo = 0;
		int have = metrics_response_ms(&d, timeouts, 5000, &ms, &tmo);
		int c = metrics_alert_step(&a, &r, have, tmo ? INFINITY : ms);
		if (c > 0)
			raised_at = t;
		if (c < 0)
			cleared_at = t;
	}
	ck_assert_int_eq(raised_at, 12);                        /* the third timeout */
	ck_assert_int_eq(cleared_at, 39);                       /* 20 samples without data */
	ck_assert(a.stale);
	ck_assert_uint_eq(a.raised, 1);
	/* a push timeout below the threshold still says "no reply" */
	memset(&a, 0, sizeof(a));
	for (int t = 0; t < 3; t++) {
		struct hist d = { 0 };
		double ms = 0;
		int tmo = 0;
		ck_assert_int_eq(metrics_response_ms(&d, 1, 300, &ms, &tmo), 1);
		metrics_alert_step(&a, &r, 1, tmo ? INFINITY : ms);
	}
	ck_assert(a.active);
}
END_TEST

/* ---- the writers ---------------------------------------------------------------- */

static struct buf out;
static struct metrics_out mo;

static void writer_setup(void)
{
	buf_init(&out, 0);
	mo.b = &out;
	mo.err = 0;
}

static void writer_teardown(void)
{
	buf_free(&out);
}

/* The text written so far, NUL-terminated. */
static const char *text(void)
{
	buf_putc(&out, '\0');
	out.wpos--;
	return buf_rptr(&out);
}

START_TEST(out_is_sticky)
{
	struct buf small;
	buf_init(&small, 8);
	struct metrics_out o = { &small, 0 };
	metrics_out_puts(&o, "1234");
	ck_assert_int_eq(o.err, 0);
	metrics_out_puts(&o, "56789");                                /* over 8 */
	ck_assert_int_eq(o.err, -EMSGSIZE);
	metrics_out_puts(&o, "x");                                    /* would fit: dropped */
	metrics_out_u64(&o, 1);
	metrics_out_printf(&o, "%d", 2);
	ck_assert_uint_eq(buf_len(&small), 4);
	ck_assert_int_eq(memcmp(buf_rptr(&small), "1234", 4), 0);
	buf_free(&small);
}
END_TEST

START_TEST(json_numbers_and_strings)
{
	metrics_out_jnum(&mo, 1.0);
	metrics_out_puts(&mo, " ");
	metrics_out_jnum(&mo, 1.23456);
	metrics_out_puts(&mo, " ");
	metrics_out_jnum(&mo, -0.5);
	metrics_out_puts(&mo, " ");
	metrics_out_jnum(&mo, NAN);
	metrics_out_puts(&mo, " ");
	metrics_out_jnum(&mo, INFINITY);
	metrics_out_puts(&mo, " ");
	metrics_out_u64(&mo, 18446744073709551615ULL);
	metrics_out_puts(&mo, " ");
	metrics_out_jstr(&mo, "a\"b\n", 4);
	ck_assert_int_eq(mo.err, 0);
	ck_assert_str_eq(text(), "1 1.235 -0.5 null null 18446744073709551615 \"a\\\"b\\n\"");
}
END_TEST

START_TEST(prom_family_and_samples)
{
	struct metrics_label l[2] = { { "endpoint", "ma\"in\\x\ny" }, { "state", "open" } };
	metrics_prom_family(&mo, "phxd_x_total", METRICS_COUNTER, "Things\\stuff\nmore.");
	metrics_prom_u64(&mo, "phxd_x_total", NULL, 0, 42);
	metrics_prom_u64(&mo, "phxd_x_total", l, 2, 7);
	metrics_prom_family(&mo, "phxd_g", METRICS_GAUGE, "A gauge.");
	metrics_prom_double(&mo, "phxd_g", NULL, 0, 0.25);
	metrics_prom_double(&mo, "phxd_g", l + 1, 1, NAN);
	metrics_prom_double(&mo, "phxd_g", NULL, 0, -INFINITY);
	ck_assert_int_eq(mo.err, 0);
	ck_assert_str_eq(text(),
			 "# HELP phxd_x_total Things\\\\stuff\\nmore.\n"
			 "# TYPE phxd_x_total counter\n"
			 "phxd_x_total 42\n"
			 "phxd_x_total{endpoint=\"ma\\\"in\\\\x\\ny\",state=\"open\"} 7\n"
			 "# HELP phxd_g A gauge.\n"
			 "# TYPE phxd_g gauge\n"
			 "phxd_g 0.25\n"
			 "phxd_g{state=\"open\"} NaN\n"
			 "phxd_g -Inf\n");
}
END_TEST

START_TEST(prom_histogram)
{
	struct hist h = { 0 };
	hist_observe_us(&h, 50);        /* le 0.0001 */
	hist_observe_us(&h, 100);       /* le 0.0001 (bounds are inclusive) */
	hist_observe_us(&h, 3000);      /* le 0.005 */
	hist_observe_us(&h, 20000000);  /* beyond 10 s: +Inf only */
	metrics_prom_hist(&mo, "phxd_push_duration_seconds", "Push time.", &h);
	ck_assert_int_eq(mo.err, 0);
	const char *t = text();
	ck_assert(strstr(t, "# HELP phxd_push_duration_seconds Push time.\n"
			    "# TYPE phxd_push_duration_seconds histogram\n"
			    "phxd_push_duration_seconds_bucket{le=\"0.0001\"} 2\n"
			    "phxd_push_duration_seconds_bucket{le=\"0.00025\"} 2\n") == t);
	ck_assert_ptr_nonnull(strstr(t, "_bucket{le=\"0.0025\"} 2\n"
					"phxd_push_duration_seconds_bucket{le=\"0.005\"} 3\n"));
	ck_assert_ptr_nonnull(strstr(t, "_bucket{le=\"10\"} 3\n"
					"phxd_push_duration_seconds_bucket{le=\"+Inf\"} 4\n"
					"phxd_push_duration_seconds_sum 20.00315\n"
					"phxd_push_duration_seconds_count 4\n"));
	/* cumulative, one line per bound, +Inf last */
	unsigned lines = 0;
	unsigned long long prev = 0, v;
	for (const char *p = t; (p = strstr(p, "_bucket{le=\"")); p++) {
		const char *sp = strchr(p, ' ');
		ck_assert(sscanf(sp, " %llu", &v) == 1);
		ck_assert(v >= prev);
		prev = v;
		lines++;
	}
	ck_assert_uint_eq(lines, HIST_NBUCKETS + 1);
	ck_assert_uint_eq(prev, 4);
}
END_TEST

START_TEST(prom_empty_histogram)
{
	struct hist h = { 0 };
	metrics_prom_hist(&mo, "phxd_h_seconds", "H.", &h);
	const char *t = text();
	ck_assert_ptr_nonnull(strstr(t, "phxd_h_seconds_bucket{le=\"+Inf\"} 0\n"
					"phxd_h_seconds_sum 0\nphxd_h_seconds_count 0\n"));
}
END_TEST

START_TEST(prom_numbers_are_exact)
{
	char b[40];
	metrics_prom_number(1700000123.456, b, sizeof(b));
	ck_assert_str_eq(b, "1700000123.456");
	ck_assert(strtod(b, NULL) == 1700000123.456);
	metrics_prom_number(0.1, b, sizeof(b));
	ck_assert_str_eq(b, "0.1");
	metrics_prom_number(20.00315, b, sizeof(b));
	ck_assert_str_eq(b, "20.00315");
	metrics_prom_number(1.0 / 3.0, b, sizeof(b));
	ck_assert(strtod(b, NULL) == 1.0 / 3.0);
	metrics_prom_number(0, b, sizeof(b));
	ck_assert_str_eq(b, "0");
	metrics_prom_number(-INFINITY, b, sizeof(b));
	ck_assert_str_eq(b, "-Inf");
	metrics_prom_number(NAN, b, sizeof(b));
	ck_assert_str_eq(b, "NaN");
	/* through the sample writer: the start time to the millisecond */
	metrics_prom_double(&mo, "phxd_start_time_seconds", NULL, 0, 1764300000123 / 1000.0);
	ck_assert_str_eq(text(), "phxd_start_time_seconds 1764300000.123\n");
}
END_TEST

static Suite *metrics_suite(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("ring");
	tcase_add_test(tc, ring_keeps_the_newest);
	tcase_add_test(tc, ring_of_one);
	suite_add_tcase(s, tc);

	tc = tcase_create("alerts");
	tcase_add_test(tc, alert_above_hysteresis);
	tcase_add_test(tc, alert_below_hysteresis);
	tcase_add_test(tc, alert_off);
	tcase_add_test(tc, alert_needs_consecutive_samples);
	tcase_add_test(tc, alert_clears_when_stale);
	tcase_add_test(tc, response_time_counts_timeouts);
	tcase_add_test(tc, response_alert_follows_timeouts);
	suite_add_tcase(s, tc);

	tc = tcase_create("writers");
	tcase_add_checked_fixture(tc, writer_setup, writer_teardown);
	tcase_add_test(tc, out_is_sticky);
	tcase_add_test(tc, json_numbers_and_strings);
	tcase_add_test(tc, prom_family_and_samples);
	tcase_add_test(tc, prom_histogram);
	tcase_add_test(tc, prom_empty_histogram);
	tcase_add_test(tc, prom_numbers_are_exact);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(metrics_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
