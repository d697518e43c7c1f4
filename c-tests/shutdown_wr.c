/* Request with "Connection: close" and write(), then shutdown(SHUT_WR) before
 * reading the response (half-close, as some clients do); read() until complete. */
#include "common.h"

int main(int argc, char **argv)
{
	struct args a;
	ctest_init(argc, argv, &a);
	size_t len;
	char *req = build_request(&a, "GET", a.path, "Connection: close\r\n", NULL, 0, &len);
	int fd = connect_blocking(&a);
	write_all(fd, req, len);
	free(req);
	if (shutdown(fd, SHUT_WR) < 0)
		die("shutdown SHUT_WR:");
	int rc = read_and_finish(fd, plain_read, NULL);
	close(fd);
	return rc;
}
