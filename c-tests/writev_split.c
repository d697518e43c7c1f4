/* GET whose head is written with one writev(): request line in one iovec, the
 * headers spread over several (one header split in the middle of its name). */
#include "common.h"

/* writev until all iovecs are out, advancing over partial writes. */
static void writev_all(int fd, struct iovec *iov, int cnt)
{
	while (cnt > 0) {
		ssize_t n = writev(fd, iov, cnt);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("writev:");
		}
		size_t left = (size_t)n;
		while (cnt > 0 && left >= iov->iov_len) {
			left -= iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt > 0) {
			iov->iov_base = (char *)iov->iov_base + left;
			iov->iov_len -= left;
		}
	}
}

int main(int argc, char **argv)
{
	struct args a;
	ctest_init(argc, argv, &a);
	char line[2048], host[600], ua[128];
	char hosthdr[512];
	host_header(&a, hosthdr, sizeof hosthdr);
	snprintf(line, sizeof line, "GET %s HTTP/1.1\r\n", a.path);
	snprintf(host, sizeof host, "Host: %s\r\n", hosthdr);
	snprintf(ua, sizeof ua, "User-Agent: lunar-ctest/%s\r\n", g_prog);
	char xc[128];
	snprintf(xc, sizeof xc, "X-Ctest: %s\r\n", g_prog);
	struct iovec iov[] = {
		{line, strlen(line)},
		{ua, strlen(ua)},
		{(void *)"X-Split-Hea", 11},
		{(void *)"der: split-value\r\n", 18},
		{host, strlen(host)},
		{xc, strlen(xc)},
		{(void *)"Accept: */*\r\n", 13},
		{(void *)"\r\n", 2},
	};
	int fd = connect_blocking(&a);
	writev_all(fd, iov, (int)(sizeof iov / sizeof iov[0]));
	int rc = read_and_finish(fd, plain_read, NULL);
	close(fd);
	return rc;
}
