/* One request on a connection whose reader thread waits for its answer before the main
 * thread writes the request (200 ms later), as a program that starts its reader first
 * does. A wait to read before any write is how a protocol whose server speaks first
 * shows itself; here the write follows, and the connection must stay an HTTP one:
 * diverted when the proxy is up, its failures hidden when it fails.
 * The reader's wait: a blocking read, or (-DWAIT_POLL, -DWAIT_SELECT) poll or select
 * for input alone with a 5 s timeout, as a blocking socket with a timeout does (Python,
 * Java), or (-DWAIT_EPOLL) an epoll registration for input alone and a 5 s epoll_wait,
 * as an event loop's, then the read.
 * Prints the body; exit 1 unless the status is 200. */
#include "common.h"
#include <pthread.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/select.h>

static int g_fd;

/* Waits up to 5 s for input on g_fd, as the program's own timeout would. */
static void wait_for_answer(void)
{
#if defined(WAIT_POLL)
	struct pollfd p = {.fd = g_fd, .events = POLLIN};
	int n = poll(&p, 1, 5000);
#elif defined(WAIT_SELECT)
	fd_set in;
	FD_ZERO(&in);
	FD_SET(g_fd, &in);
	struct timeval limit = {.tv_sec = 5, .tv_usec = 0};
	int n = select(g_fd + 1, &in, NULL, NULL, &limit);
#elif defined(WAIT_EPOLL)
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event want = {.events = EPOLLIN, .data.fd = g_fd}, got;
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, g_fd, &want) != 0)
		die("epoll:");
	int n = epoll_wait(ep, &got, 1, 5000);
	close(ep);
#else
	int n = 1;
#endif
	if (n < 0)
		die("wait for the answer:");
	if (n == 0)
		die("no answer within 5 s");
}

static void *reader(void *unused)
{
	(void)unused;
	wait_for_answer();
	return (void *)(long)read_and_finish(g_fd, plain_read, NULL);
}

int main(int argc, char **argv)
{
	struct args args;
	ctest_init(argc, argv, &args);
	g_fd = connect_blocking(&args);
	pthread_t t;
	if (pthread_create(&t, NULL, reader, NULL) != 0)
		die("pthread_create failed");
	/* The reader is inside its read by then. */
	usleep(200 * 1000);
	size_t len;
	char *req = build_request(&args, "GET", args.path, NULL, NULL, 0, &len);
	write_all(g_fd, req, len);
	free(req);
	void *failed;
	pthread_join(t, &failed);
	close(g_fd);
	return failed ? 1 : 0;
}
