/* fd-number reuse: a request to HOST:PORT on socket A, then A is closed in a way a
 * preload may not see, then socket B gets the SAME fd number and makes a request to
 * HOST2:PORT2 (argv[4], argv[5]; default other.example.test 80). State kept for A
 * must not leak into B (wrong x-lunar-host, diversion of a port that is not
 * intercepted, stale buffers). Prints body A, a newline, body B.
 *   default       close(fd)
 *   -DCLOSE_SYSCALL  syscall(SYS_close, fd)   (libuv's uv__close)
 *   -DCLOSE_RANGE    close_range(fd, fd, 0)
 *   -DCLOSE_NONE     A is not closed: B is dup2'ed over A's number (the kernel closes A) */
#include "common.h"
#include <sys/syscall.h>

static int request_on(int fd, const struct args *a, const char *tag)
{
	char extra[64];
	snprintf(extra, sizeof extra, "X-Ctest-Seq: %s\r\n", tag);
	size_t len;
	char *req = build_request(a, "GET", a->path, extra, NULL, 0, &len);
	write_all(fd, req, len);
	free(req);
	return read_and_finish(fd, plain_read, NULL);
}

int main(int argc, char **argv)
{
	struct args a, b;
	ctest_init(argc, argv, &a);
	b = a;
	b.host = argc > 4 ? argv[4] : "other.example.test";
	b.port = argc > 5 ? argv[5] : "80";

	int fa = connect_blocking(&a);
	int rc = request_on(fa, &a, "1");
	fputc('\n', stdout);
#if defined(CLOSE_SYSCALL)
	if (syscall(SYS_close, fa) != 0)
		die("syscall(SYS_close):");
#elif defined(CLOSE_RANGE)
	if (close_range((unsigned)fa, (unsigned)fa, 0) != 0) /* glibc's close_range() */
		die("close_range:");
#elif defined(CLOSE_NONE)
	/* nothing: B is moved onto A's number below */
#else
	if (close(fa) != 0)
		die("close:");
#endif
	int fb = connect_blocking(&b);
#ifdef CLOSE_NONE
	if (dup2(fb, fa) != fa)
		die("dup2 over the old number:");
	close(fb);
	fb = fa;
#endif
	if (fb != fa)
		note("warning: B got fd %d, A had %d (reuse not exercised)", fb, fa);
	int rc2 = request_on(fb, &b, "2");
	close(fb);
	return rc ? rc : rc2;
}
