/* POST written with one sendmsg() whose iovecs split the head and the body;
 * response read with recv(). */
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
	static const char body1[] = "{\"via\":\"sendmsg\",";
	static const char body2[] = "\"parts\":2}";
	size_t blen = sizeof body1 - 1 + sizeof body2 - 1;
	char hosthdr[512], line[2048], hdrs[1024];
	host_header(&a, hosthdr, sizeof hosthdr);
	snprintf(line, sizeof line, "POST %s HTTP/1.1\r\n", a.path);
	snprintf(hdrs, sizeof hdrs,
		 "Host: %s\r\nUser-Agent: lunar-ctest/%s\r\nX-Ctest: %s\r\n"
		 "Content-Type: application/json\r\nContent-Length: %zu\r\n",
		 hosthdr, g_prog, g_prog, blen);
	struct iovec iov[] = {
		{line, strlen(line)},
		{hdrs, strlen(hdrs)},
		{(void *)"\r\n", 2},
		{(void *)body1, sizeof body1 - 1},
		{(void *)body2, sizeof body2 - 1},
	};
	int cnt = (int)(sizeof iov / sizeof iov[0]);
	int fd = connect_blocking(&a);
	struct iovec *v = iov;
	while (cnt > 0) {
		struct msghdr m;
		memset(&m, 0, sizeof m);
		m.msg_iov = v;
		m.msg_iovlen = (size_t)cnt;
		ssize_t n = sendmsg(fd, &m, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("sendmsg:");
		}
		size_t left = (size_t)n;
		while (cnt > 0 && left >= v->iov_len) {
			left -= v->iov_len;
			v++;
			cnt--;
		}
		if (cnt > 0) {
			v->iov_base = (char *)v->iov_base + left;
			v->iov_len -= left;
		}
	}
	int rc = read_and_finish(fd, recv_read, NULL);
	close(fd);
	return rc;
}
