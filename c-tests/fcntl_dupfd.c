/* fcntl(F_DUPFD_CLOEXEC) the connected socket to a number >= 50, close the original,
 * then request and response on the duplicate. */
#include "common.h"

int main(int argc, char **argv)
{
	struct args a;
	ctest_init(argc, argv, &a);
	size_t len;
	char *req = build_request(&a, "GET", a.path, NULL, NULL, 0, &len);
	int fd = connect_blocking(&a);
	int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 50);
	if (nfd < 50)
		die("fcntl F_DUPFD_CLOEXEC:");
	if (close(fd) < 0)
		die("close original:");
	write_all(nfd, req, len);
	free(req);
	int rc = read_and_finish(nfd, plain_read, NULL);
	close(nfd);
	return rc;
}
