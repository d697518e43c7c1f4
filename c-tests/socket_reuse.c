/* A number socket() gave out, closed and given out again by a call the library does not
 * see, before any connect: the library knows a socket is TCP from socket()'s arguments
 * (no getsockopt at its connect), and that knowledge must not pass to what the number
 * names next. First a connect to HOST:PORT gives the number the library's slot; then, on
 * that number, a TCP socket is made and closed, and
 *   /dev/null is opened there (open: not seen) and connected to HOST:PORT: ENOTSOCK, as
 *   without the library, and not the proxy failing;
 *   a TCP socket is made and closed again, and a UDP socket made there with
 *   syscall(SYS_socket) and connected to HOST:PORT: its real peer (SYS_getpeername,
 *   past the library's getpeername) is HOST:PORT, not the proxy;
 * and a last connect to HOST:PORT succeeds. Prints "file ENOTSOCK", "udp HOST" (or
 * "udp elsewhere"), "again connected". */
#include "common.h"
#include <fcntl.h>
#include <sys/syscall.h>

static int tcp_socket_closed_at(int want)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd != want)
		die("socket: got fd %d, not %d", fd, want);
	close(fd);
	return fd;
}

int main(int argc, char **argv)
{
	struct args a;
	ctest_init(argc, argv, &a);
	struct sockaddr_in to;
	struct sockaddr_in6 unused;
	resolve_v4_and_mapped(&a, &to, &unused);

	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&to, sizeof to) != 0)
		die("first connect:");
	close(fd);

	tcp_socket_closed_at(fd);
	int file = open("/dev/null", O_RDONLY);
	if (file != fd)
		die("open: got fd %d, not %d", file, fd);
	errno = 0;
	int rc = connect(file, (struct sockaddr *)&to, sizeof to);
	printf("file %s\n", rc == 0 ? "connected" : errno == ENOTSOCK ? "ENOTSOCK" : strerror(errno));
	close(file);

	tcp_socket_closed_at(fd);
	int udp = (int)syscall(SYS_socket, AF_INET, SOCK_DGRAM, 0);
	if (udp != fd)
		die("SYS_socket: got fd %d, not %d", udp, fd);
	if (connect(udp, (struct sockaddr *)&to, sizeof to) != 0)
		die("udp connect:");
	struct sockaddr_in peer;
	socklen_t len = sizeof peer;
	if (syscall(SYS_getpeername, udp, &peer, &len) != 0)
		die("SYS_getpeername:");
	int same = peer.sin_addr.s_addr == to.sin_addr.s_addr && peer.sin_port == to.sin_port;
	printf("udp %s\n", same ? "HOST" : "elsewhere");
	close(udp);

	fd = socket(AF_INET, SOCK_STREAM, 0);
	errno = 0;
	rc = connect(fd, (struct sockaddr *)&to, sizeof to);
	printf("again %s\n", rc == 0 ? "connected" : strerror(errno));
	close(fd);
	return 0;
}
