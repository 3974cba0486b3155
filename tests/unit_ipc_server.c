/* unit_ipc_server — ipc_server in this process, with a real socket and a
 * libev loop: the local socket options (client_sndbuf / client_rcvbuf),
 * hibernation of idle clients driven by a test clock (ipc_server_
 * hibernate_idle takes "now"), and waking up: every byte queued in either
 * direction arrives, in order. */
#include "buf.h"
#include "ipc/ipc_server.h"
#include "log.h"

#include <check.h>

#include "ck_run.h"
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static struct ev_loop *loop;
static struct ipc_server srv;
static char path[108];

/* PUSH T E PAYLOAD is answered "ECHO PAYLOAD"; anything else "OK". */
static void on_command(void *ctx, struct ipc_client *c, const struct ipc_cmd *cmd)
{
	(void)ctx;
	struct buf *out = ipc_client_out(c);
	int r;
	if (cmd->verb == IPC_V_PUSH) {
		r = buf_puts(out, "ECHO ");
		if (!r)
			r = buf_append(out, cmd->payload.p, cmd->payload.len);
		if (!r)
			r = buf_putc(out, '\n');
	} else {
		r = buf_puts(out, "OK\n");
	}
	ipc_client_wrote(c, r);
}

static void on_close(void *ctx, struct ipc_client *c)
{
	(void)ctx;
	(void)c;
}

static const struct ipc_handlers handlers = { on_command, on_close };

static void spin(int times)
{
	for (int i = 0; i < times; i++)
		ev_run(loop, EVRUN_NOWAIT);
}

static void setup(void)
{
	char err[256];
	loop = ev_loop_new(EVFLAG_AUTO);
	snprintf(path, sizeof(path), "/tmp/unit_ipc_server.%d.sock", (int)getpid());
	ipc_server_init(&srv, loop, &handlers, NULL, 4096, 1 << 20, 100);
	srv.sndbuf = 200000;
	srv.rcvbuf = 150000;
	ck_assert_int_eq(ipc_server_listen(&srv, path, 0600, err, sizeof(err)), 0);
}

static void teardown(void)
{
	ipc_server_close(&srv, NULL);
	ev_loop_destroy(loop);
}

static int dial(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	for (int i = 0; i < 100 && srv.nclients == 0; i++)
		spin(1);
	ck_assert_uint_eq(srv.nclients, 1);
	return fd;
}

static struct ipc_client *the_client(void)
{
	return container_of(srv.clients.next, struct ipc_client, node);
}

static void send_str(int fd, const char *s)
{
	ck_assert_int_eq(write(fd, s, strlen(s)), (ssize_t)strlen(s));
}

/* Reads until n lines came (running the server loop meanwhile) into out. */
static void read_lines(int fd, int n, struct buf *out)
{
	int got = 0;
	for (int spins = 0; got < n && spins < 100000; spins++) {
		spin(1);
		struct pollfd p = { fd, POLLIN, 0 };
		if (poll(&p, 1, 1) <= 0)
			continue;
		char *w = buf_reserve(out, 65536);
		ck_assert_ptr_nonnull(w);
		ssize_t r = read(fd, w, 65536);
		ck_assert_int_gt(r, 0);
		for (ssize_t i = 0; i < r; i++)
			got += w[i] == '\n';
		buf_commit(out, (size_t)r);
	}
	ck_assert_int_eq(got, n);
}

START_TEST(socket_buffer_options)
{
	int fd = dial();
	struct ipc_client *c = the_client();
	int v = 0;
	socklen_t l = sizeof(v);
	/* Linux doubles what is set (bookkeeping), within its limits */
	ck_assert_int_eq(getsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &v, &l), 0);
	ck_assert_int_ge(v, 200000);
	ck_assert_int_eq(getsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &v, &l), 0);
	ck_assert_int_ge(v, 150000);
	close(fd);
}
END_TEST

START_TEST(hibernate_after_idle_timeout)
{
	int fd = dial();
	struct ipc_client *c = the_client();
	struct buf in;
	buf_init(&in, 0);
	send_str(fd, "PING\n");
	read_lines(fd, 1, &in);
	ck_assert_int_eq(strncmp(buf_rptr(&in), "OK\n", 3), 0);
	ck_assert_uint_gt(c->out.cap, 0); /* kept after the flush */

	uint64_t t = c->last_ms;
	/* one ms short of the timeout: nothing happens */
	ck_assert_uint_eq(ipc_server_hibernate_idle(&srv, t + 999, 1000), 0);
	ck_assert_int_eq(c->hibernating, 0);
	ck_assert_uint_eq(srv.hibernating, 0);
	/* at the timeout: empty buffers go back to the pool */
	size_t freed = ipc_server_hibernate_idle(&srv, t + 1000, 1000);
	ck_assert_uint_gt(freed, 0);
	ck_assert_uint_eq(c->in.cap + c->out.cap, 0);
	ck_assert_int_eq(c->hibernating, 1);
	ck_assert_uint_eq(srv.hibernating, 1);
	ck_assert_uint_eq(srv.hib_bytes, freed);
	ck_assert_uint_eq(c->hib_held, freed);
	ck_assert_uint_eq(srv.hib_now, freed);
	/* a second round finds nothing more and counts nothing twice */
	ck_assert_uint_eq(ipc_server_hibernate_idle(&srv, t + 5000, 1000), 0);
	ck_assert_uint_eq(srv.hibernating, 1);

	/* wake-up: 300 lines sent at once, 300 answers in order */
	struct buf req;
	buf_init(&req, 0);
	for (int i = 0; i < 300; i++)
		buf_printf(&req, "PUSH t e {\"i\":%d}\n", i);
	ck_assert_int_eq(write(fd, buf_rptr(&req), buf_len(&req)), (ssize_t)buf_len(&req));
	buf_reset(&in);
	read_lines(fd, 300, &in);
	const char *p = buf_rptr(&in);
	for (int i = 0; i < 300; i++) {
		char want[64];
		int n = snprintf(want, sizeof(want), "ECHO {\"i\":%d}\n", i);
		ck_assert_msg(strncmp(p, want, (size_t)n) == 0, "line %d: %.*s", i, n, p);
		p += n;
	}
	ck_assert_int_eq(c->hibernating, 0);
	ck_assert_uint_eq(srv.hibernating, 0);
	ck_assert_uint_eq(srv.wakeups, 1);
	ck_assert_uint_eq(srv.hib_now, 0); /* awake: nothing held back */
	ck_assert_uint_eq(c->hib_held, 0);
	ck_assert_uint_eq(srv.hib_bytes, freed); /* the total stays */
	buf_free(&req);
	buf_free(&in);
	close(fd);
}
END_TEST

/* Output waiting for a client that does not read is not dropped by
 * hibernation: the client is not counted as hibernating, and the bytes
 * arrive once it reads. */
START_TEST(queued_output_is_kept)
{
	int fd = dial();
	struct ipc_client *c = the_client();
	/* fill the socket, then the queue */
	char line[1001];
	memset(line, 'x', 999);
	line[999] = '\n';
	line[1000] = '\0';
	int n = 0;
	while (buf_len(&c->out) < 100000) {
		ipc_client_write(c, line, 1000);
		spin(1);
		n++;
		ck_assert_int_lt(n, 10000);
	}
	size_t queued = buf_len(&c->out);
	ipc_server_hibernate_idle(&srv, c->last_ms + 10000, 1000);
	ck_assert_uint_eq(buf_len(&c->out), queued);
	ck_assert_int_eq(c->hibernating, 0);
	struct buf in;
	buf_init(&in, 0);
	read_lines(fd, n, &in);
	ck_assert_uint_eq(buf_len(&in), (size_t)n * 1000);
	buf_free(&in);
	close(fd);
}
END_TEST

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	log_init("unit_ipc_server");
	log_set_level(LOG_LVL_ERR);
	Suite *s = suite_create("ipc_server");
	TCase *tc = tcase_create("server");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, socket_buffer_options);
	tcase_add_test(tc, hibernate_after_idle_timeout);
	tcase_add_test(tc, queued_output_is_kept);
	suite_add_tcase(s, tc);
	return ck_run(s);
}
