/* 8 threads x 4 requests, each request on its own new connection (connect, write,
 * read, close), all at once: the library's fd table and lazy start-up under
 * concurrency. Bodies are printed whole, one per line, under a lock. */
#include "common.h"
#include <pthread.h>

#define NTHREADS 8
#define PER_THREAD 4

static struct args g_args;
static pthread_mutex_t g_out = PTHREAD_MUTEX_INITIALIZER;
static int g_failures;

static void *worker(void *arg)
{
	long id = (long)arg;
	for (int i = 0; i < PER_THREAD; i++) {
		char extra[64];
		snprintf(extra, sizeof extra, "X-Ctest-Seq: %ld-%d\r\n", id, i);
		size_t len;
		char *req = build_request(&g_args, "GET", g_args.path, extra, NULL, 0, &len);
		int fd = connect_blocking(&g_args);
		write_all(fd, req, len);
		free(req);
		struct rbuf rb = {0};
		struct response r;
		read_response(fd, &rb, &r, plain_read, NULL);
		close(fd);
		pthread_mutex_lock(&g_out);
		fwrite(r.body, 1, r.body_len, stdout);
		if (r.body_len == 0 || r.body[r.body_len - 1] != '\n')
			fputc('\n', stdout);
		if (r.status != 200)
			g_failures++;
		pthread_mutex_unlock(&g_out);
		free_response(&r);
		free(rb.data);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	ctest_init(argc, argv, &g_args);
	pthread_t t[NTHREADS];
	for (long i = 0; i < NTHREADS; i++)
		if (pthread_create(&t[i], NULL, worker, (void *)i) != 0)
			die("pthread_create failed");
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(t[i], NULL);
	fflush(stdout);
	note("%d requests, %d not 200", NTHREADS * PER_THREAD, g_failures);
	return g_failures ? 1 : 0;
}
