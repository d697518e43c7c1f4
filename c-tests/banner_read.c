/* A line protocol whose server speaks first, on an intercepted port, read with blocking
 * reads and no timeout: the banner ("220 ..."), then HELLO -> "250 HELLO" and
 * QUIT -> "221 bye". Usage: banner_read HOST PORT ANY. With -DWAIT_EPOLL (banner_epoll) the
 * socket is registered with epoll for input alone and each line is waited for there
 * (no timeout) before its reads, as an event loop does.
 * Prints the three lines; exit 1 unless each is the one expected. */
#include "common.h"
#include <sys/epoll.h>

#if defined(WAIT_EPOLL)
static int g_epoll = -1;
#endif

/* One line (CRLF stripped) into `out`, read a byte at a time. */
static void read_line(int fd, char *out, size_t cap)
{
	size_t len = 0;
#if defined(WAIT_EPOLL)
	struct epoll_event got;
	while (epoll_wait(g_epoll, &got, 1, -1) < 0)
		if (errno != EINTR)
			die("epoll_wait:");
#endif
	for (;;) {
		char c;
		ssize_t n = read(fd, &c, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("read:");
		if (n == 0)
			die("EOF after %zu bytes of a line", len);
		if (c == '\n')
			break;
		if (c != '\r' && len + 1 < cap)
			out[len++] = c;
	}
	out[len] = '\0';
	printf("%s\n", out);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct args args;
	ctest_init(argc, argv, &args);
	int fd = connect_blocking(&args);
#if defined(WAIT_EPOLL)
	g_epoll = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event want = {.events = EPOLLIN, .data.fd = fd};
	if (g_epoll < 0 || epoll_ctl(g_epoll, EPOLL_CTL_ADD, fd, &want) != 0)
		die("epoll:");
#endif
	char banner[256], hello[256], bye[256];
	read_line(fd, banner, sizeof banner);
	write_all(fd, "HELLO\r\n", 7);
	read_line(fd, hello, sizeof hello);
	write_all(fd, "QUIT\r\n", 6);
	read_line(fd, bye, sizeof bye);
	close(fd);
	int ok = strncmp(banner, "220 ", 4) == 0 && strcmp(hello, "250 HELLO") == 0 &&
		 strcmp(bye, "221 bye") == 0;
	return ok ? 0 : 1;
}
