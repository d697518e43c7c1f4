/* Request with sendto(fd, buf, len, 0, NULL, 0) in two pieces; response read with
 * recvfrom(fd, buf, n, 0, NULL, NULL). */
#include "common.h"

static ssize_t recvfrom_read(int fd, void *buf, size_t n, void *ctx)
{
	(void)ctx;
	return recvfrom(fd, buf, n, 0, NULL, NULL);
}

static void sendto_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = sendto(fd, p, len, 0, NULL, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("sendto:");
		}
		p += n;
		len -= (size_t)n;
	}
}

int main(int argc, char **argv)
{
	struct args a;
	ctest_init(argc, argv, &a);
	size_t len;
	char *req = build_request(&a, "GET", a.path, NULL, NULL, 0, &len);
	int fd = connect_blocking(&a);
	size_t half = len / 2;
	sendto_all(fd, req, half);
	sendto_all(fd, req + half, len - half);
	free(req);
	int rc = read_and_finish(fd, recvfrom_read, NULL);
	close(fd);
	return rc;
}
