/* The cost of the library on a socket it does not track, per send+recv pair: N rounds
 * of send() of 16 bytes on one end of a connected AF_UNIX stream socketpair and recv()
 * of them on the other (real data, both calls succeed). Run under
 * `valgrind --tool=callgrind` with and without LD_PRELOAD, with N and with 0: callgrind
 * counts user-space instructions only, so ((with N - with 0) - (without N - without 0)) / N
 * is what the hooks add to one send+recv pair on an untracked socket.
 * With HOST PORT, a TCP connection to it is opened first and kept open (never used): under
 * the library, a diverted connection, so that the pairs measure an untracked socket in a
 * process that tracks another.
 * Usage: sendrecv [N [HOST PORT]] */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000;
	if (argc > 3) {
		struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *found;
		if (getaddrinfo(argv[2], argv[3], &hints, &found) != 0) {
			fprintf(stderr, "sendrecv: cannot resolve %s\n", argv[2]);
			return 1;
		}
		int kept = socket(found->ai_family, SOCK_STREAM, 0);
		if (kept < 0 || connect(kept, found->ai_addr, found->ai_addrlen) != 0) {
			perror("connect");
			return 1;
		}
		freeaddrinfo(found);
	}
	int pair[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0) {
		perror("socketpair");
		return 1;
	}
	char out[16], in[16];
	memset(out, 'x', sizeof out);
	long failures = 0;
	for (long i = 0; i < n; i++) {
		if (send(pair[0], out, sizeof out, 0) != (ssize_t)sizeof out)
			failures++;
		if (recv(pair[1], in, sizeof in, 0) != (ssize_t)sizeof in)
			failures++;
	}
	printf("%ld send+recv pairs, %ld unexpected results\n", n, failures);
	return failures != 0;
}
