/* util — small system helpers shared by every module. */
#ifndef PHX_UTIL_H
#define PHX_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Monotonic clock in milliseconds. */
uint64_t util_now_ms(void);
/* Monotonic clock in microseconds. */
uint64_t util_now_us(void);
/* Fills p with n random bytes (getrandom, falling back to a PRNG). */
void util_random(void *p, size_t n);
uint32_t util_rand32(void);
/* Sets O_NONBLOCK and FD_CLOEXEC; 0 or -errno. */
int util_set_nonblock(int fd);
/* strdup that returns NULL for NULL. */
char *util_strdup(const char *s);

#endif
