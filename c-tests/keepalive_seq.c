/* Three requests one after the other on one keep-alive connection (GET, POST with a
 * body, GET), each written with send() after the previous response was read with
 * recv(). Prints the three bodies separated by newlines. */
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
	static const char body[] = "{\"keepalive\":\"second request\"}";
	int fd = connect_blocking(&a);
	struct rbuf rb = {0};
	int rc = 0;
	for (int i = 1; i <= 3; i++) {
		char extra[64];
		snprintf(extra, sizeof extra, "X-Ctest-Seq: %d\r\n", i);
		size_t len;
		char *req = i == 2 ? build_request(&a, "POST", a.path, extra, body, sizeof body - 1, &len)
				   : build_request(&a, "GET", a.path, extra, NULL, 0, &len);
		for (size_t off = 0; off < len;) {
			ssize_t n = send(fd, req + off, len - off, MSG_NOSIGNAL);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				die("send request %d:", i);
			}
			off += (size_t)n;
		}
		free(req);
		struct response r;
		read_response(fd, &rb, &r, recv_read, NULL);
		if (i > 1)
			fputc('\n', stdout);
		if (finish_response(&r) != 0)
			rc = 1;
		free_response(&r);
	}
	close(fd);
	free(rb.data);
	return rc;
}
