/* A connect on a socket already connected: the program's bug, which the kernel answers with
 * EISCONN and nothing else. The socket is connected to HOST:PORT (a port not intercepted),
 * then connected again to HOST:PORT2 (argv[4], default 80, intercepted): under the library
 * too the second connect fails with EISCONN, the first connection stays as it was (a GET
 * on it is answered by HOST:PORT), and the proxy is not taken for failing. Prints
 * "again ERRNO_NAME" (or "again connected"), then the answer's body. */
#include "common.h"

int main(int argc, char **argv)
{
	struct args a;
	ctest_init(argc, argv, &a);
	int fd = connect_blocking(&a);

	struct sockaddr_in to;
	struct sockaddr_in6 unused;
	resolve_v4_and_mapped(&a, &to, &unused);
	to.sin_port = htons((unsigned short)atoi(argc > 4 ? argv[4] : "80"));
	errno = 0;
	int rc = connect(fd, (struct sockaddr *)&to, sizeof to);
	printf("again %s\n", rc == 0 ? "connected" : errno == EISCONN ? "EISCONN" : strerror(errno));
	fflush(stdout);

	return get_and_finish(&a, fd);
}
