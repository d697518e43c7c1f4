/* A connect on a socket whose own connect is still under way: the kernel answers EALREADY
 * and the first connect goes on. The program's non-blocking connect is left pending (to a
 * local listener whose accept queue is full, so its SYN goes unanswered), then the program
 * connects the same socket to HOST:PORT (intercepted): under the library too that connect
 * fails with EALREADY, the socket is not taken to the proxy, and the proxy is not taken for
 * failing. Then a new socket makes a proper request to HOST:PORT, which must go as usual.
 * Prints "again ERRNO_NAME" (or "again connected" / "again EINPROGRESS"), then the
 * answer's body. */
#include "common.h"

/* A listener on 127.0.0.1 whose accept queue one connection fills: a further SYN is
 * dropped, so a connect to it stays under way. Returns the listener; *port its port. */
static int full_listener(unsigned short *port, int *filler)
{
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (lfd < 0)
		die("socket:");
	struct sockaddr_in at = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof at;
	if (bind(lfd, (struct sockaddr *)&at, len) < 0 || listen(lfd, 0) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&at, &len) < 0)
		die("listener:");
	*filler = socket(AF_INET, SOCK_STREAM, 0);
	if (*filler < 0 || connect(*filler, (struct sockaddr *)&at, sizeof at) < 0)
		die("filler connect:");
	*port = ntohs(at.sin_port);
	return lfd;
}

int main(int argc, char **argv)
{
	struct args a;
	ctest_init(argc, argv, &a);
	unsigned short pending_port;
	int filler;
	int lfd = full_listener(&pending_port, &filler);

	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (fd < 0)
		die("socket:");
	struct sockaddr_in pending = {.sin_family = AF_INET,
				      .sin_port = htons(pending_port),
				      .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (connect(fd, (struct sockaddr *)&pending, sizeof pending) == 0 || errno != EINPROGRESS)
		die("the first connect was not left under way:");

	struct sockaddr_in to;
	struct sockaddr_in6 unused;
	resolve_v4_and_mapped(&a, &to, &unused);
	errno = 0;
	int rc = connect(fd, (struct sockaddr *)&to, sizeof to);
	printf("again %s\n", rc == 0             ? "connected"
			     : errno == EALREADY    ? "EALREADY"
			     : errno == EINPROGRESS ? "EINPROGRESS"
						    : strerror(errno));
	fflush(stdout);
	close(fd);
	close(filler);
	close(lfd);

	/* A proper connection after it: still diverted, as if the first had not been. */
	return get_and_finish(&a, connect_blocking(&a));
}
