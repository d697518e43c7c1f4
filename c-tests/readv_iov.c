/* Request with write(); response read with readv() into three small iovecs
 * (17, 100 and the rest), so a head is always split across iovecs. */
#include "common.h"

static ssize_t readv_read(int fd, void *buf, size_t n, void *ctx)
{
	(void)ctx;
	size_t a = n < 17 ? n : 17;
	size_t b = n - a < 100 ? n - a : 100;
	struct iovec iov[3] = {
		{buf, a},
		{(char *)buf + a, b},
		{(char *)buf + a + b, n - a - b},
	};
	return readv(fd, iov, 3);
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
	int rc = read_and_finish(fd, readv_read, NULL);
	close(fd);
	return rc;
}
