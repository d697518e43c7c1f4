/* POST with a body, written one byte per send(); response read with recv(). */
#include "common.h"

static ssize_t recv_read(int fd, void *buf, size_t n, void *ctx)
{
	(void)ctx;
	return recv(fd, buf, n, 0);
}

int main(int argc, char **argv)
{
	struct args a;
	ctest_init(argc, argv, &a);
	static const char body[] = "{\"hello\":\"one byte per send()\",\"n\":12345}";
	size_t len;
	char *req = build_request(&a, "POST", a.path, "Content-Type: application/json\r\n", body,
				  sizeof body - 1, &len);
	int fd = connect_blocking(&a);
	for (size_t i = 0; i < len;) {
		ssize_t n = send(fd, req + i, 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n != 1)
			die("send byte %zu returned %zd:", i, n);
		i++;
	}
	free(req);
	int rc = read_and_finish(fd, recv_read, NULL);
	close(fd);
	return rc;
}
