/* Request with send(MSG_NOSIGNAL); response read with recvmsg() scattering over
 * three iovecs of odd sizes. */
#include "common.h"

static ssize_t recvmsg_read(int fd, void *buf, size_t n, void *ctx)
{
	(void)ctx;
	/* split the caller's buffer into 3 uneven parts */
	size_t a = n / 7 ? n / 7 : 1, b = n / 3;
	if (a + b > n)
		b = n - a;
	struct iovec iov[3] = {
		{buf, a},
		{(char *)buf + a, b},
		{(char *)buf + a + b, n - a - b},
	};
	struct msghdr m;
	memset(&m, 0, sizeof m);
	m.msg_iov = iov;
	m.msg_iovlen = 3;
	ssize_t got = recvmsg(fd, &m, 0);
	if (got >= 0 && (m.msg_flags & MSG_TRUNC))
		die("recvmsg reported MSG_TRUNC on a stream socket");
	return got;
}

int main(int argc, char **argv)
{
	struct args a;
	ctest_init(argc, argv, &a);
	size_t len;
	char *req = build_request(&a, "GET", a.path, NULL, NULL, 0, &len);
	int fd = connect_blocking(&a);
	size_t off = 0;
	while (off < len) {
		ssize_t n = send(fd, req + off, len - off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("send:");
		}
		off += (size_t)n;
	}
	free(req);
	int rc = read_and_finish(fd, recvmsg_read, NULL);
	close(fd);
	return rc;
}
