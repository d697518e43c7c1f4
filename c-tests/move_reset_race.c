/* One keep-alive connection used as Java's HttpClient uses it: the main thread writes
 * the requests, a reader thread reads the answers and, right after each, is already in
 * its next read while the main thread writes the next request. Request 1 carries
 * `x-lunar-allow: false` (the library sends it to the origin); request 2 does not, so
 * writing it moves the socket back to the proxy. The move disconnects the socket from
 * the origin, which resets it under the reader's read: that reset is the old peer's,
 * and request 2, now at the proxy, must be neither failed nor sent again.
 * Request 2 is exactly 4093 bytes and the raced read 4094: the library's test build
 * (feature race-probe) then pauses the move 300 ms right after its disconnect (the
 * read meets the reset) and the read 600 ms after it met it (the move is done and
 * request 2 written before the reset is judged).
 * -DWAIT_EPOLL: the reader waits for answer 2 in epoll_wait instead, and fails on an
 * ERR/HUP event: the move's paused disconnect must not show there either.
 * Prints each body on a line; exit 1 unless both statuses are 200. */
#include "common.h"
#include <pthread.h>

#define MOVE_PAUSING_WRITE 4093
#define RACED_READ 4094

static struct args g_args;
static int g_fd;
static int g_answered[2]; /* pipe: the reader tells the writer that answer 1 was read */

#ifdef WAIT_EPOLL
#include <sys/epoll.h>

/* Waits in epoll_wait for answer 2, as an event loop does, and gives up on ERR/HUP as
 * some do (they close the socket without reading): the move's reset of the old peer
 * must not show. */
static void wait_for_input_giving_up_on_hang_ups(void)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = g_fd};
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, g_fd, &ev) != 0)
		die("epoll:");
	for (;;) {
		int n = epoll_wait(ep, &ev, 1, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("epoll_wait:");
		if (ev.events & (EPOLLERR | EPOLLHUP))
			die("the wait showed a hang-up (events %#x)", ev.events);
		if (ev.events & EPOLLIN)
			break;
	}
	close(ep);
}
#endif

static void *reader(void *unused)
{
	(void)unused;
	struct rbuf rb = {0};
	long failures = read_and_print_answer(g_fd, &rb, 1);
	char go = 1;
	if (write(g_answered[1], &go, 1) != 1)
		die("write to pipe:");
#ifdef WAIT_EPOLL
	/* The wait the move resets under. */
	wait_for_input_giving_up_on_hang_ups();
#else
	/* The read the move resets under. */
	read_once_into(g_fd, &rb, RACED_READ, 1);
#endif
	failures += read_and_print_answer(g_fd, &rb, 2);
	free(rb.data);
	return (void *)failures;
}

int main(int argc, char **argv)
{
	ctest_init(argc, argv, &g_args);
	g_fd = connect_blocking(&g_args);
	if (pipe(g_answered) != 0)
		die("pipe:");
	size_t len;
	char *req = build_request(&g_args, "GET", g_args.path,
				  "x-lunar-allow: false\r\nX-Ctest-Seq: 1\r\n", NULL, 0, &len);
	write_all(g_fd, req, len);
	free(req);
	pthread_t t;
	if (pthread_create(&t, NULL, reader, NULL) != 0)
		die("pthread_create failed");
	char go;
	if (read(g_answered[0], &go, 1) != 1)
		die("read from pipe:");
	/* Let the reader get into its read before the move. */
	usleep(100 * 1000);
	req = padded_request(&g_args, "X-Ctest-Seq: 2\r\n", MOVE_PAUSING_WRITE);
	write_all(g_fd, req, MOVE_PAUSING_WRITE);
	free(req);
	void *failures;
	pthread_join(t, &failures);
	note("2 requests, %ld not 200", (long)failures);
	return failures ? 1 : 0;
}
