/* A program that gives up on a request while the proxy's retry delay runs, closes the
 * socket, and gets the same fd number for a new one: nothing may arrive on the new one.
 *
 * retry_close_reuse HOST PORT PATH
 *
 * Connects (blocking), sends one GET with SO_RCVTIMEO 1 s; against the test proxy in
 * `retry:3:1` mode the library waits out the 3 s delay on the program's behalf, so the
 * recv ends with EAGAIN at ~1 s. The program then closes the fd and makes an AF_UNIX
 * socketpair whose first end takes the same number (checked), and watches the other
 * end for 4 s: a library that resent the request on the old number after the delay
 * would have written it into this pair.
 *
 * Exit: 0 nothing arrived; 1 bytes arrived (printed on stderr); 2 a setup error (the
 * recv did not time out, the number was not reused).
 */
#include "common.h"

int main(int argc, char **argv)
{
	struct args a;
	ctest_init(argc, argv, &a);
	int fd = connect_blocking(&a);
	struct timeval timeout = {.tv_sec = 1};
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) != 0)
		die("setsockopt:");
	size_t length;
	char *request = build_request(&a, "GET", a.path, NULL, NULL, 0, &length);
	write_all(fd, request, length);
	char buf[4096];
	ssize_t got = recv(fd, buf, sizeof buf, 0);
	if (got >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
		die("recv did not time out (got %zd)", got);
	close(fd);
	return bytes_reach_the_reused_number(fd, 4000);
}
