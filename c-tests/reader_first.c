/* One request on a connection whose reader thread is in a blocking read before the main
 * thread writes the request (200 ms later), as a program that starts its reader first
 * does. A read before any write is how a protocol whose server speaks first shows
 * itself; here the write follows, and the connection must stay an HTTP one: diverted
 * when the proxy is up, its failures hidden when it fails.
 * Prints the body; exit 1 unless the status is 200. */
#include "common.h"
#include <pthread.h>

static int g_fd;

static void *reader(void *unused)
{
	(void)unused;
	return (void *)(long)read_and_finish(g_fd, plain_read, NULL);
}

int main(int argc, char **argv)
{
	struct args args;
	ctest_init(argc, argv, &args);
	g_fd = connect_blocking(&args);
	pthread_t t;
	if (pthread_create(&t, NULL, reader, NULL) != 0)
		die("pthread_create failed");
	/* The reader is inside its read by then. */
	usleep(200 * 1000);
	size_t len;
	char *req = build_request(&args, "GET", args.path, NULL, NULL, 0, &len);
	write_all(g_fd, req, len);
	free(req);
	void *failed;
	pthread_join(t, &failed);
	close(g_fd);
	return failed ? 1 : 0;
}
