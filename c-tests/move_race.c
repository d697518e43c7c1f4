/* One keep-alive connection used as Java's HttpClient uses it: the main thread writes
 * the requests, a reader thread reads the answers and, right after each, reads again at
 * once while the main thread is already writing the next request. Each request carries
 * `x-lunar-allow: true`; with a proxy that fails every request, each is replayed to the
 * origin and the next one moves the socket back to the proxy, which can happen while
 * that read is between the library's checks and the read itself. The read is 4093
 * bytes: the library's test build (feature race-probe) pauses exactly there for such a
 * read, so the proxy's answer is always in the socket when the read is made. It must
 * still be judged as the proxy's, its failure hidden.
 * Prints each body on a line; exit 1 unless every status is 200. */
#include "common.h"
#include <pthread.h>

#define REQUESTS 3
#define RACED_READ 4093

static struct args g_args;
static int g_fd;
static int g_answered[2]; /* pipe: the reader tells the writer that an answer was read */

static void *reader(void *unused)
{
	(void)unused;
	struct rbuf rb = {0};
	long failures = 0;
	for (int i = 0; i < REQUESTS; i++) {
		failures += read_and_print_answer(g_fd, &rb, i + 1);
		if (i + 1 == REQUESTS)
			break;
		char go = 1;
		if (write(g_answered[1], &go, 1) != 1)
			die("write to pipe:");
		/* The read that races the next request's move. */
		read_once_into(g_fd, &rb, RACED_READ, i + 1);
	}
	free(rb.data);
	return (void *)failures;
}

int main(int argc, char **argv)
{
	ctest_init(argc, argv, &g_args);
	g_fd = connect_blocking(&g_args);
	if (pipe(g_answered) != 0)
		die("pipe:");
	pthread_t t;
	if (pthread_create(&t, NULL, reader, NULL) != 0)
		die("pthread_create failed");
	for (int i = 0; i < REQUESTS; i++) {
		char go;
		if (i > 0 && read(g_answered[0], &go, 1) != 1)
			die("read from pipe:");
		char extra[96];
		snprintf(extra, sizeof extra, "x-lunar-allow: true\r\nX-Ctest-Seq: %d\r\n", i + 1);
		size_t len;
		char *req = build_request(&g_args, "GET", g_args.path, extra, NULL, 0, &len);
		write_all(g_fd, req, len);
		free(req);
	}
	void *failures;
	pthread_join(t, &failures);
	note("%d requests, %ld not 200", REQUESTS, (long)failures);
	return failures ? 1 : 0;
}
