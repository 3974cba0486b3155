# Fuzzing (tests/fuzz/), included by the top Makefile.am.
#
# One libFuzzer target per decoder: tests/fuzz/fuzz_NAME.c defines
# LLVMFuzzerTestOneInput.  Seeds are in corpus/NAME/, inputs that once
# crashed in regressions/NAME/, dictionaries in NAME.dict.
#
# Every build: replay_NAME links the target with replay.c (no libFuzzer)
# and `make check` feeds it every seed and regression input.
# --enable-fuzzing (clang): fuzz_NAME are the libFuzzer programs, and
# `make fuzz` runs each for FUZZ_SECONDS on a copy of its corpus in the
# build tree (tests/fuzz/work/), FUZZ_JOBS at a time.

FUZZ_NAMES = ipc_line phx_json phx_binary ws_hs conf json deflate ws_frame
FUZZ_SECONDS = 60
FUZZ_JOBS =

EXTRA_DIST += tests/fuzz/run.sh tests/fuzz/corpus tests/fuzz/regressions \
	tests/fuzz/ipc_line.dict tests/fuzz/json.dict tests/fuzz/ws_hs.dict \
	tests/fuzz/conf.dict

if HAVE_CHECK
FUZZ_REPLAY = tests/fuzz/replay_ipc_line tests/fuzz/replay_phx_json \
	tests/fuzz/replay_phx_binary tests/fuzz/replay_ws_hs tests/fuzz/replay_conf \
	tests/fuzz/replay_json tests/fuzz/replay_deflate tests/fuzz/replay_ws_frame
check_PROGRAMS += $(FUZZ_REPLAY)
TESTS += $(FUZZ_REPLAY)
FUZZ_REPLAY_SRC = tests/fuzz/replay.c tests/fuzz/fuzz.h
tests_fuzz_replay_ipc_line_SOURCES = tests/fuzz/fuzz_ipc_line.c $(FUZZ_REPLAY_SRC)
tests_fuzz_replay_ipc_line_LDADD = $(PHX_LIBS)
tests_fuzz_replay_phx_json_SOURCES = tests/fuzz/fuzz_phx_json.c $(FUZZ_REPLAY_SRC)
tests_fuzz_replay_phx_json_LDADD = $(PHX_LIBS)
tests_fuzz_replay_phx_binary_SOURCES = tests/fuzz/fuzz_phx_binary.c $(FUZZ_REPLAY_SRC)
tests_fuzz_replay_phx_binary_LDADD = $(PHX_LIBS)
tests_fuzz_replay_ws_hs_SOURCES = tests/fuzz/fuzz_ws_hs.c $(FUZZ_REPLAY_SRC)
tests_fuzz_replay_ws_hs_LDADD = $(PHX_LIBS)
tests_fuzz_replay_conf_SOURCES = tests/fuzz/fuzz_conf.c $(FUZZ_REPLAY_SRC)
tests_fuzz_replay_conf_LDADD = $(PHX_LIBS)
tests_fuzz_replay_json_SOURCES = tests/fuzz/fuzz_json.c $(FUZZ_REPLAY_SRC)
tests_fuzz_replay_json_LDADD = $(PHX_LIBS)
tests_fuzz_replay_deflate_SOURCES = tests/fuzz/fuzz_deflate.c $(FUZZ_REPLAY_SRC)
tests_fuzz_replay_deflate_LDADD = $(PHX_LIBS)
tests_fuzz_replay_ws_frame_SOURCES = tests/fuzz/fuzz_ws_frame.c $(FUZZ_REPLAY_SRC)
tests_fuzz_replay_ws_frame_LDADD = $(PHX_LIBS)
endif

if ENABLE_FUZZING
FUZZ_PROGS = tests/fuzz/fuzz_ipc_line tests/fuzz/fuzz_phx_json \
	tests/fuzz/fuzz_phx_binary tests/fuzz/fuzz_ws_hs tests/fuzz/fuzz_conf \
	tests/fuzz/fuzz_json tests/fuzz/fuzz_deflate tests/fuzz/fuzz_ws_frame
noinst_PROGRAMS += $(FUZZ_PROGS)
# libFuzzer's main and instrumentation for the targets only; the rest of
# the build has coverage instrumentation without main (configure).
FUZZ_CFLAGS_ALL = $(AM_CFLAGS) $(FUZZ_CFLAGS)
FUZZ_LDFLAGS_ALL = $(AM_LDFLAGS) $(FUZZ_CFLAGS)
tests_fuzz_fuzz_ipc_line_SOURCES = tests/fuzz/fuzz_ipc_line.c tests/fuzz/fuzz.h
tests_fuzz_fuzz_ipc_line_CFLAGS = $(FUZZ_CFLAGS_ALL)
tests_fuzz_fuzz_ipc_line_LDFLAGS = $(FUZZ_LDFLAGS_ALL)
tests_fuzz_fuzz_ipc_line_LDADD = $(PHX_LIBS)
tests_fuzz_fuzz_phx_json_SOURCES = tests/fuzz/fuzz_phx_json.c tests/fuzz/fuzz.h
tests_fuzz_fuzz_phx_json_CFLAGS = $(FUZZ_CFLAGS_ALL)
tests_fuzz_fuzz_phx_json_LDFLAGS = $(FUZZ_LDFLAGS_ALL)
tests_fuzz_fuzz_phx_json_LDADD = $(PHX_LIBS)
tests_fuzz_fuzz_phx_binary_SOURCES = tests/fuzz/fuzz_phx_binary.c tests/fuzz/fuzz.h
tests_fuzz_fuzz_phx_binary_CFLAGS = $(FUZZ_CFLAGS_ALL)
tests_fuzz_fuzz_phx_binary_LDFLAGS = $(FUZZ_LDFLAGS_ALL)
tests_fuzz_fuzz_phx_binary_LDADD = $(PHX_LIBS)
tests_fuzz_fuzz_ws_hs_SOURCES = tests/fuzz/fuzz_ws_hs.c tests/fuzz/fuzz.h
tests_fuzz_fuzz_ws_hs_CFLAGS = $(FUZZ_CFLAGS_ALL)
tests_fuzz_fuzz_ws_hs_LDFLAGS = $(FUZZ_LDFLAGS_ALL)
tests_fuzz_fuzz_ws_hs_LDADD = $(PHX_LIBS)
tests_fuzz_fuzz_conf_SOURCES = tests/fuzz/fuzz_conf.c tests/fuzz/fuzz.h
tests_fuzz_fuzz_conf_CFLAGS = $(FUZZ_CFLAGS_ALL)
tests_fuzz_fuzz_conf_LDFLAGS = $(FUZZ_LDFLAGS_ALL)
tests_fuzz_fuzz_conf_LDADD = $(PHX_LIBS)
tests_fuzz_fuzz_json_SOURCES = tests/fuzz/fuzz_json.c tests/fuzz/fuzz.h
tests_fuzz_fuzz_json_CFLAGS = $(FUZZ_CFLAGS_ALL)
tests_fuzz_fuzz_json_LDFLAGS = $(FUZZ_LDFLAGS_ALL)
tests_fuzz_fuzz_json_LDADD = $(PHX_LIBS)
tests_fuzz_fuzz_deflate_SOURCES = tests/fuzz/fuzz_deflate.c tests/fuzz/fuzz.h
tests_fuzz_fuzz_deflate_CFLAGS = $(FUZZ_CFLAGS_ALL)
tests_fuzz_fuzz_deflate_LDFLAGS = $(FUZZ_LDFLAGS_ALL)
tests_fuzz_fuzz_deflate_LDADD = $(PHX_LIBS)
tests_fuzz_fuzz_ws_frame_SOURCES = tests/fuzz/fuzz_ws_frame.c tests/fuzz/fuzz.h
tests_fuzz_fuzz_ws_frame_CFLAGS = $(FUZZ_CFLAGS_ALL)
tests_fuzz_fuzz_ws_frame_LDFLAGS = $(FUZZ_LDFLAGS_ALL)
tests_fuzz_fuzz_ws_frame_LDADD = $(PHX_LIBS)

fuzz: $(FUZZ_PROGS)
	@FUZZ_SECONDS='$(FUZZ_SECONDS)' FUZZ_JOBS='$(FUZZ_JOBS)' \
		$(SHELL) $(top_srcdir)/tests/fuzz/run.sh '$(top_srcdir)' $(FUZZ_NAMES)
else
fuzz:
	@echo "make fuzz: configure with CC=clang --enable-fuzzing" >&2; exit 1
endif
.PHONY: fuzz
