/* One connection, the request written by one thread and its answer read by another, the
 * read begun while the request was half written: the library's checks then find no
 * answer due, and the answer arrives before the read is made (the library's test build,
 * feature race-probe, pauses a read of 4093 bytes between its checks and the read). The
 * proxy fails the request: its answer must still be judged as the proxy's, the failure
 * hidden and the request replayed to the origin. As a program whose reader thread waits
 * in a read while its writer sends (Java's HttpClient) could meet it.
 * Prints the body; exit 1 unless the status is 200. */
#include "common.h"
#include <pthread.h>

#define RACED_READ 4093

static int g_fd;
static int g_go[2]; /* pipe: the writer tells the reader that the request has begun */

static void *reader(void *unused)
{
	(void)unused;
	char go;
	if (read(g_go[0], &go, 1) != 1)
		die("read from pipe:");
	struct rbuf rb = {0};
	rbuf_reserve(&rb, RACED_READ);
	ssize_t n;
	do
		n = read(g_fd, rb.data, RACED_READ);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		die("first read: %zd:", n);
	rb.len = (size_t)n;
	struct response r;
	read_response(g_fd, &rb, &r, plain_read, NULL);
	fwrite(r.body, 1, r.body_len, stdout);
	if (r.body_len == 0 || r.body[r.body_len - 1] != '\n')
		fputc('\n', stdout);
	fflush(stdout);
	note("status=%d", r.status);
	long failed = r.status != 200;
	free_response(&r);
	free(rb.data);
	return (void *)failed;
}

int main(int argc, char **argv)
{
	struct args args;
	ctest_init(argc, argv, &args);
	g_fd = connect_blocking(&args);
	if (pipe(g_go) != 0)
		die("pipe:");
	pthread_t t;
	if (pthread_create(&t, NULL, reader, NULL) != 0)
		die("pthread_create failed");
	size_t len;
	char *req = build_request(&args, "GET", args.path, NULL, NULL, 0, &len);
	size_t first = strlen("GET ");
	write_all(g_fd, req, first);
	char go = 1;
	if (write(g_go[1], &go, 1) != 1)
		die("write to pipe:");
	/* The reader is past the library's checks, paused before its read. */
	usleep(100 * 1000);
	write_all(g_fd, req + first, len - first);
	free(req);
	void *failed;
	pthread_join(t, &failed);
	return failed ? 1 : 0;
}
