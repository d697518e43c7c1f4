/* A line protocol whose server speaks first, on an intercepted port, read with blocking
 * reads and no timeout: the banner ("220 ..."), then HELLO -> "250 HELLO" and
 * QUIT -> "221 bye". Usage: banner_read HOST PORT ANY.
 * Prints the three lines; exit 1 unless each is the one expected. */
#include "common.h"

/* One line (CRLF stripped) into `out`, read a byte at a time. */
static void read_line(int fd, char *out, size_t cap)
{
	size_t len = 0;
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
