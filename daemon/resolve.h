/* resolve — host name resolution off the event loop.
 *
 * getaddrinfo() may wait seconds for a DNS server; the loop must not.  A
 * literal address is answered at once (AI_NUMERICHOST); a name is looked
 * up by a short-lived thread whose answer comes back to the loop through
 * an eventfd, and the callback runs on the loop's thread.
 *
 * Ownership: whoever receives an addrinfo list owns it (freeaddrinfo).  A
 * request can be cancelled until its callback ran; the thread then
 * finishes on its own and its answer is dropped.
 */
#ifndef PHX_RESOLVE_H
#define PHX_RESOLVE_H

#include <netdb.h>

#include <ev.h>

struct res_req;

/* The answer to a pending request: the addresses, or NULL with err, a
 * getaddrinfo error code (gai_strerror).  The request is over when this
 * runs: forget its handle. */
typedef void (*res_cb)(void *arg, struct addrinfo *res, int err);

/* Looks up host:port for a stream socket.  Returns 0 with *res set when
 * host is a literal address (resolved now, no callback), 0 with *req set
 * when a lookup runs (cb comes later, from the loop), or a getaddrinfo
 * error code (nothing pending). */
int res_start(struct ev_loop *loop, const char *host, const char *port, res_cb cb,
	      void *arg, struct addrinfo **res, struct res_req **req);

/* cb will not be called for r (NULL: nothing).  From the loop's thread,
 * before cb ran. */
void res_cancel(struct res_req *r);

/* Lookup threads still running (cancelled ones included). */
unsigned res_pending(void);

#endif
