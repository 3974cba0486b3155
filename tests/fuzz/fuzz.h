/* fuzz.h — what every fuzz target in tests/fuzz/ shares.
 *
 * A target is one LLVMFuzzerTestOneInput(): libFuzzer calls it in the
 * --enable-fuzzing build, and tests/fuzz/replay.c calls it for every file of
 * the seed corpus and of the regressions in a normal `make check`.  A broken
 * promise of the code under test is a FUZZ_CHECK() that fails: it prints the
 * condition and aborts, which both drivers report as a crash.
 */
#ifndef PHX_FUZZ_H
#define PHX_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

__attribute__((noreturn)) static inline void fuzz_fail(const char *file, int line,
							const char *what)
{
	fprintf(stderr, "%s:%d: check failed: %s\n", file, line, what);
	abort();
}

/* A buffer's bytes, never NULL (an empty buf has no memory yet). */
static inline const char *fuzz_bytes(const struct buf *b)
{
	return buf_rptr(b) ? buf_rptr(b) : "";
}

/* Known bugs: a bug that was reported but is not fixed yet would stop
 * every fuzzing run at once.  The target then names it in a FUZZ_KNOWN_*
 * macro and skips the one check it breaks while the macro is 1; its inputs
 * are in regressions/ all the same.  Once the bug is fixed the macro goes,
 * and the regressions hold the fix.  -DFUZZ_STRICT checks everything. */
#ifdef FUZZ_STRICT
#define FUZZ_KNOWN(bug) 0
#else
#define FUZZ_KNOWN(bug) (bug)
#endif

#define FUZZ_CHECK(cond) \
	do { \
		if (!(cond)) \
			fuzz_fail(__FILE__, __LINE__, #cond); \
	} while (0)

#endif
