/* A diverted socket moved to a high fd number: `high_fd HOST PORT PATH [FD]`
 * (FD default 70000, beyond the 65536 numbers the fd table once covered). The soft
 * RLIMIT_NOFILE is raised to FD+1 (the hard one too when it is lower and we may), the
 * connected socket is dup2'ed to FD, the low number closed, and one GET is written and
 * its answer read on FD only. The request must carry Lunar's headers like any other
 * (the test checks what the proxy saw). Exit 77 when the limit cannot be raised (the
 * test is then skipped), else as in common.h. */
#include "common.h"
#include <sys/resource.h>

int main(int argc, char **argv)
{
	struct args a;
	ctest_init(argc, argv, &a);
	int high = argc > 4 ? atoi(argv[4]) : 70000;
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		die("getrlimit:");
	if (rl.rlim_cur <= (rlim_t)high) {
		struct rlimit want = rl;
		want.rlim_cur = (rlim_t)high + 1;
		if (want.rlim_max != RLIM_INFINITY && want.rlim_max < want.rlim_cur)
			want.rlim_max = want.rlim_cur;
		if (setrlimit(RLIMIT_NOFILE, &want) != 0) {
			note("cannot raise RLIMIT_NOFILE to %d (hard limit %llu): %s", high + 1,
			     (unsigned long long)rl.rlim_max, strerror(errno));
			return 77;
		}
	}
	size_t len;
	char *req = build_request(&a, "GET", a.path, NULL, NULL, 0, &len);
	int fd = connect_blocking(&a);
	if (dup2(fd, high) != high)
		die("dup2(%d, %d):", fd, high);
	if (close(fd) != 0)
		die("close:");
	write_all(high, req, len);
	free(req);
	int rc = read_and_finish(high, plain_read, NULL);
	if (close(high) != 0)
		die("close high:");
	return rc;
}
