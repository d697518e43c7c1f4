/* dup2 the connected (possibly diverted) socket onto another fd number, then use
 * only the new number for the request and the response.
 * Default: the original fd is closed at the end (after the response).
 * -DCLOSE_FIRST: the original fd is closed right after dup2, before any I/O, so
 * state kept for the old number must follow the new one.
 * -DUSE_DUP3: dup3(fd, 77, O_CLOSEXEC) instead of dup2, original closed first.
 * -DUSE_DUP: plain dup() (lowest free number), original closed first. */
#include "common.h"

#define NEWFD 77

int main(int argc, char **argv)
{
	struct args a;
	ctest_init(argc, argv, &a);
	size_t len;
	char *req = build_request(&a, "GET", a.path, NULL, NULL, 0, &len);
	int fd = connect_blocking(&a);
#if defined(USE_DUP)
#define CLOSE_FIRST 1
	int nfd = dup(fd);
	if (nfd < 0)
		die("dup:");
#elif defined(USE_DUP3)
#define CLOSE_FIRST 1
	int nfd = dup3(fd, NEWFD, O_CLOEXEC);
	if (nfd != NEWFD)
		die("dup3:");
#else
	int nfd = dup2(fd, NEWFD);
	if (nfd != NEWFD)
		die("dup2:");
#endif
#ifdef CLOSE_FIRST
	if (close(fd) < 0)
		die("close original:");
#endif
	write_all(nfd, req, len);
	free(req);
	int rc = read_and_finish(nfd, plain_read, NULL);
#ifndef CLOSE_FIRST
	if (close(fd) < 0)
		die("close original:");
#endif
	if (close(nfd) < 0)
		die("close dup:");
	return rc;
}
