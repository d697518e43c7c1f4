/* An event loop that reads little per wake-up.
 *
 * small_reads HOST PORT PATH [CHUNK]
 *
 * Connects (blocking), sends one GET, makes the socket non-blocking and then, until the
 * response is complete: waits for input (poll, select or epoll: built three times,
 * -DWAIT_SELECT / -DWAIT_EPOLL, poll by default) with a 3 s timeout, and makes ONE read
 * of CHUNK bytes (default 100) per wake-up, as a program with a small buffer that
 * returns to its loop after each read does. The response's bytes must all come by
 * wake-ups: a wait that times out with the response incomplete means bytes the program
 * was owed were never reported readable (exit 3). Over TLS to the proxy, a record of up
 * to 16 KiB is decrypted whole while the program takes 100 bytes of it: the rest waits
 * in the library, where the kernel cannot see it.
 *
 * Prints the body on stdout; on stderr: status, body_len, wakeups and reads that found
 * nothing (EAGAIN). Exit 0: status 200 and a complete body; 2 on an error.
 */
#include "common.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/select.h>

#define WAIT_MS 3000

static int wait_readable(int fd, int epoll_fd)
{
#if defined(WAIT_SELECT)
	(void)epoll_fd;
	fd_set set;
	FD_ZERO(&set);
	FD_SET(fd, &set);
	struct timeval tv = {WAIT_MS / 1000, 0};
	return select(fd + 1, &set, NULL, NULL, &tv);
#elif defined(WAIT_EPOLL)
	(void)fd;
	struct epoll_event ev;
	return epoll_wait(epoll_fd, &ev, 1, WAIT_MS);
#else
	(void)epoll_fd;
	struct pollfd p = {fd, POLLIN, 0};
	return poll(&p, 1, WAIT_MS);
#endif
}

int main(int argc, char **argv)
{
	struct args a;
	ctest_init(argc, argv, &a);
	size_t chunk = argc > 4 ? strtoul(argv[4], NULL, 10) : 100;
	if (chunk == 0)
		die("CHUNK must be positive");

	int fd = connect_blocking(&a);
	size_t req_len;
	char *req = build_request(&a, "GET", a.path, NULL, NULL, 0, &req_len);
	write_all(fd, req, req_len);
	free(req);
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0)
		die("fcntl:");

	int epoll_fd = -1;
#if defined(WAIT_EPOLL)
	epoll_fd = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
	if (epoll_fd < 0 || epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0)
		die("epoll:");
#endif

	struct rbuf rb = {0};
	struct response r;
	memset(&r, 0, sizeof r);
	unsigned wakeups = 0, empty = 0;
	while (!try_parse_response(&rb, &r)) {
		int ready = wait_readable(fd, epoll_fd);
		if (ready < 0) {
			if (errno == EINTR)
				continue;
			die("wait:");
		}
		if (ready == 0) {
			note("stalled: no wake-up for %d ms with %zu bytes of the response read",
			     WAIT_MS, rb.len);
			return 3;
		}
		wakeups++;
		rbuf_reserve(&rb, chunk);
		ssize_t n = read(fd, rb.data + rb.len, chunk);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR) {
				empty++;
				continue;
			}
			die("read:");
		}
		if (n == 0)
			die("EOF after %zu bytes, before a complete response", rb.len);
		rb.len += (size_t)n;
	}
	note("wakeups=%u empty_reads=%u", wakeups, empty);
	int rc = finish_response(&r);
	free_response(&r);
	free(rb.data);
	return rc;
}
