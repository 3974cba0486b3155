# The benchmark suite (bench/run; `make bench` runs it in full), included
# from Makefile.am.  Every program is built with the rest, so none rots.
BENCH_UTIL = bench/bench_util.c bench/bench_util.h
BENCH_IT = tests/it_util.c tests/it_util.h
BENCH_CFLAGS = $(AM_CFLAGS) -DIT_NO_CHECK
BENCH_LIBS = $(PHX_LIBS) -lm

bench_fanout_SOURCES += $(BENCH_UTIL)
bench_fanout_LDADD += -lm

# scenario 1: round trips through phxd
BENCH_PROGS += bench/rtt
bench_rtt_SOURCES = bench/rtt.c $(BENCH_UTIL) $(BENCH_IT)
bench_rtt_CFLAGS = $(BENCH_CFLAGS)
bench_rtt_LDADD = $(BENCH_LIBS)
# scenario 3: many topics over the pool
BENCH_PROGS += bench/topics
bench_topics_SOURCES = bench/topics.c $(BENCH_UTIL) $(BENCH_IT)
bench_topics_CFLAGS = $(BENCH_CFLAGS)
bench_topics_LDADD = $(BENCH_LIBS)
# scenario 4: RSS with idle clients and upstreams
BENCH_PROGS += bench/memory
bench_memory_SOURCES = bench/memory.c $(BENCH_UTIL) $(BENCH_IT)
bench_memory_CFLAGS = $(BENCH_CFLAGS)
bench_memory_LDADD = $(BENCH_LIBS)
# scenario 5: codecs and lookups
BENCH_PROGS += bench/micro
bench_micro_SOURCES = bench/micro.c $(BENCH_UTIL)
bench_micro_LDADD = $(BENCH_LIBS)
# baseline b: a C WebSocket client talking to the server itself
BENCH_PROGS += bench/direct
bench_direct_SOURCES = bench/direct.c bench/wsc.c bench/wsc.h $(BENCH_UTIL) $(BENCH_IT)
bench_direct_CFLAGS = $(BENCH_CFLAGS)
bench_direct_LDADD = $(BENCH_LIBS)
# the records of a run → Markdown tables and one JSON document
BENCH_PROGS += bench/report
bench_report_SOURCES = bench/report.c
bench_report_LDADD = $(JSONC_LIBS) -lm

# Heap allocation counter, LD_PRELOADed into phxd: a plain shared object
# (no libtool), without the sanitizers.
noinst_DATA = bench/malloc_count.so
CLEANFILES += bench/malloc_count.so
bench/malloc_count.so: $(srcdir)/bench/malloc_count.c $(srcdir)/bench/bench_util.h
	$(AM_V_CC)$(MKDIR_P) bench && \
	$(CC) -std=gnu11 $(WARN_CFLAGS) -O2 -fPIC -shared -I$(top_srcdir) \
		-o $@ $(srcdir)/bench/malloc_count.c

EXTRA_DIST += bench/run bench/local.mk bench/RESULTS.md bench/package.json \
	bench/phoenix_js.mjs bench/malloc_count.c

bench: all
	$(SHELL) $(srcdir)/bench/run --build $(abs_top_builddir)
.PHONY: bench
