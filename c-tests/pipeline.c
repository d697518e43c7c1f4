/* Two GET requests pipelined in a single write(); both responses read (read())
 * on the same connection. Prints body 1, a newline, body 2. */
#include "common.h"

int main(int argc, char **argv)
{
	struct args a;
	ctest_init(argc, argv, &a);
	size_t l1, l2;
	char *r1 = build_request(&a, "GET", a.path, "X-Ctest-Seq: 1\r\n", NULL, 0, &l1);
	char *r2 = build_request(&a, "GET", a.path, "X-Ctest-Seq: 2\r\n", NULL, 0, &l2);
	char *both = malloc(l1 + l2);
	if (!both)
		die("out of memory");
	memcpy(both, r1, l1);
	memcpy(both + l1, r2, l2);
	int fd = connect_blocking(&a);
	write_all(fd, both, l1 + l2); /* one write() on a blocking socket, normally */
	struct rbuf rb = {0};
	struct response r;
	int rc = 0;
	for (int i = 0; i < 2; i++) {
		read_response(fd, &rb, &r, plain_read, NULL);
		if (i)
			fputc('\n', stdout);
		if (finish_response(&r) != 0)
			rc = 1;
		free_response(&r);
	}
	if (rb.len)
		die("%zu unexpected bytes after the second response", rb.len);
	close(fd);
	free(both);
	free(r1);
	free(r2);
	free(rb.data);
	return rc;
}
