/* A non-blocking program whose request the proxy fails, while the library's recovery
 * cannot go as planned: its helper thread cannot be made, or (-DHELPER_PANICS) panics
 * before its resend.
 *
 * recovery_without_thread HOST PORT PATH   (the test proxy in error:2 mode)
 *
 * The request is exactly 4091 bytes (4090 with -DHELPER_PANICS): the library's test build
 * (feature race-probe) then refuses the helper thread, as a process at its thread limit
 * would (the recovery must run inside the program's read, and the origin's answer
 * arrive), or makes it panic (the program must be told: its read fails instead of waiting
 * for good). Reads non-blocking, waiting in poll on EAGAIN, at most 10 s per wait.
 * Exit: 0 the origin's 200 (or, -DHELPER_PANICS, a failed read or EOF, noted); 1 another
 * status; 2 no answer within 10 s, or another setup error.
 */
#include "common.h"

#ifdef HELPER_PANICS
#define PROBE_WRITE 4090
#else
#define PROBE_WRITE 4091
#endif

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
	int fd = send_padded_then_nonblocking(&a, PROBE_WRITE);
#ifdef HELPER_PANICS
	char buf[4096];
	ssize_t got = read_waiting_in_poll(fd, buf, sizeof buf, NULL);
	if (got > 0) {
		note("an answer arrived: %.40s", buf);
		return 1;
	}
	note("the read ended: %s", got == 0 ? "EOF" : strerror(errno));
	return 0;
#else
	return read_and_finish(fd, read_waiting_in_poll, NULL);
#endif
}
