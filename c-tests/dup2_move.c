/* dup2 the connected (possibly diverted) socket onto another fd number, then use
 * only the new number for the request and the response.
 * Default: the original fd is closed at the end (after the response).
 * -DCLOSE_FIRST: the original fd is closed right after dup2, before any I/O, so
 * state kept for the old number must follow the new one. */
#include "common.h"

#define NEWFD 77

int main(int argc, char **argv)
{
	struct args a;
	ctest_init(argc, argv, &a);
	size_t len;
	char *req = build_request(&a, "GET", a.path, NULL, NULL, 0, &len);
	int fd = connect_blocking(&a);
	if (dup2(fd, NEWFD) != NEWFD)
		die("dup2:");
#ifdef CLOSE_FIRST
	if (close(fd) < 0)
		die("close original:");
#endif
	write_all(NEWFD, req, len);
	free(req);
	int rc = read_and_finish(NEWFD, plain_read, NULL);
#ifndef CLOSE_FIRST
	if (close(fd) < 0)
		die("close original:");
#endif
	if (close(NEWFD) < 0)
		die("close dup:");
	return rc;
}
