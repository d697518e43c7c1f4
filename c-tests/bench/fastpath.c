/* The cost of the library on fds it does not track: N calls of write() to /dev/null
 * and N calls of recv() on an empty non-blocking socketpair (EAGAIN), plus N close(-1).
 * Run under `valgrind --tool=callgrind` with and without LD_PRELOAD: callgrind counts
 * user-space instructions only, so the difference divided by the number of calls is
 * exactly what a hook adds to an untracked call (the system call itself is not counted).
 * Usage: fastpath [N] */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000;
	int null_fd = open("/dev/null", O_WRONLY);
	int pair[2];
	if (null_fd < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, pair) != 0) {
		perror("setup");
		return 1;
	}
	char byte = 'x';
	long failures = 0;
	for (long i = 0; i < n; i++) {
		if (write(null_fd, &byte, 1) != 1)
			failures++;
		if (recv(pair[0], &byte, 1, 0) != -1)
			failures++;
		close(-1);
	}
	printf("%ld rounds of write+recv+close, %ld unexpected results\n", n, failures);
	return failures != 0;
}
