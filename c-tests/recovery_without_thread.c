/* A non-blocking program whose request the proxy fails, in a process that cannot make
 * another thread: the library's recovery, which would resend from a helper thread, must
 * run inside the program's read instead, and the origin's answer arrive as usual.
 *
 * recovery_without_thread HOST PORT PATH   (the test proxy in error:2 mode)
 *
 * The request is exactly 4091 bytes: the library's test build (feature race-probe) then
 * refuses the helper thread, as a process at its thread limit would. Reads the answer
 * non-blocking, waiting in poll on EAGAIN; prints the body. Exit 0 when the status is
 * 200; the test's timeout ends a program whose read never returns.
 */
#include "common.h"

#define THREAD_REFUSING_WRITE 4091

static ssize_t read_waiting_in_poll(int fd, void *buf, size_t n, void *ctx)
{
	(void)ctx;
	for (;;) {
		ssize_t got = read(fd, buf, n);
		if (got >= 0 || errno != EAGAIN)
			return got;
		struct pollfd wait = {.fd = fd, .events = POLLIN};
		if (poll(&wait, 1, 10000) != 1)
			die("no answer within 10 s");
	}
}

int main(int argc, char **argv)
{
	struct args a;
	ctest_init(argc, argv, &a);
	int fd = connect_blocking(&a);
	char *request = padded_request(&a, "", THREAD_REFUSING_WRITE);
	write_all(fd, request, THREAD_REFUSING_WRITE);
	free(request);
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0)
		die("fcntl:");
	return read_and_finish(fd, read_waiting_in_poll, NULL);
}
