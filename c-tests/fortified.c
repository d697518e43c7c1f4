/* Fortified reads: the response is read into a stack buffer whose size the compiler
 * knows, with a length it does not know at compile time, so glibc's
 * _FORTIFY_SOURCE wrappers call __read_chk / __recv_chk / __recvfrom_chk instead of
 * the plain symbols. Built three times: -DFORT_READ, -DFORT_RECV, -DFORT_RECVFROM.
 * build.sh checks with nm -D that each binary imports the _chk symbol. */
#include "common.h"

#if !defined(_FORTIFY_SOURCE) || _FORTIFY_SOURCE < 1
#error "build with -O2 -D_FORTIFY_SOURCE=2"
#endif

#define CHUNK 4096

static ssize_t fort_read(int fd, void *dst, size_t n, void *ctx)
{
	(void)ctx;
	char chunk[CHUNK];
	size_t want = n < sizeof chunk ? n : sizeof chunk;
	/* Hide the clamp from the optimiser: with a length it cannot prove to fit, the
	 * fortify wrapper calls the _chk symbol (which checks want <= sizeof chunk at
	 * run time) instead of the plain one. */
	__asm__("" : "+r"(want));
	ssize_t got;
#if defined(FORT_READ)
	got = read(fd, chunk, want);
#elif defined(FORT_RECV)
	got = recv(fd, chunk, want, 0);
#elif defined(FORT_RECVFROM)
	struct sockaddr_storage from;
	socklen_t fromlen = sizeof from;
	got = recvfrom(fd, chunk, want, 0, (struct sockaddr *)&from, &fromlen);
#else
#error "define FORT_READ, FORT_RECV or FORT_RECVFROM"
#endif
	if (got > 0)
		memcpy(dst, chunk, (size_t)got);
	return got;
}

int main(int argc, char **argv)
{
	struct args a;
	ctest_init(argc, argv, &a);
	size_t len;
	char *req = build_request(&a, "GET", a.path, NULL, NULL, 0, &len);
	int fd = connect_blocking(&a);
	write_all(fd, req, len);
	free(req);
	int rc = read_and_finish(fd, fort_read, NULL);
	close(fd);
	return rc;
}
