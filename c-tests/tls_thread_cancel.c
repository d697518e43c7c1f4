/* A thread blocked in SSL_read on a diverted https connection (a virtual session: the
 * library answers the program's handshake, the proxy's plaintext answer is awaited) is
 * cancelled (pthread_cancel): it ends as a cancelled thread, its cleanup handler runs,
 * and a second https request on a new connection is answered.
 *
 * tls_thread_cancel HOST PORT PATH CAFILE: PATH an answer that takes seconds
 * (/delay/3000). Prints: mode=ssl_read cancelled=0|1 cleanup=0|1 join_ms=N after=STATUS
 * Exit 0 iff cancelled, cleaned up, joined within 2 s and the second answer is a 200;
 * 1 otherwise, 2 on a setup error, 3 when hung (10 s watchdog). */
#include "tls_openssl.h"

#include <pthread.h>
#include <stdint.h>
#include <time.h>

static uint64_t now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static struct args g_args;
static SSL_CTX *g_ctx;
static volatile int g_fd = -1;
static volatile int g_cleaned_up;

static void close_on_cancel(void *arg)
{
	(void)arg;
	if (g_fd >= 0)
		close(g_fd);
	g_fd = -1;
	g_cleaned_up = 1;
}

/* GET path on a new TLS connection; reads the answer unless `block_only`, then the first
 * SSL_read blocks (the caller is cancelled there). Returns the status. */
static int get(const char *path, int block_only)
{
	int fd = connect_blocking(&g_args);
	g_fd = fd;
	SSL *ssl = SSL_new(g_ctx);
	if (!ssl)
		die("SSL_new: %s", ssl_errstr());
	connect_over_fd(ssl, fd, g_args.host);
	size_t len;
	char *req = build_request(&g_args, "GET", path, NULL, NULL, 0, &len);
	ssl_write_all(ssl, req, len);
	free(req);
	if (block_only) {
		char buf[4096];
		SSL_read(ssl, buf, sizeof buf);
		return 0;
	}
	struct rbuf rb = { 0 };
	struct response r;
	read_response(fd, &rb, &r, ssl_read_some, ssl);
	SSL_free(ssl);
	close(fd);
	return r.status;
}

static void *worker(void *arg)
{
	(void)arg;
	pthread_cleanup_push(close_on_cancel, NULL);
	get(g_args.path, 1);
	pthread_cleanup_pop(0);
	return NULL;
}

static void *watchdog(void *arg)
{
	(void)arg;
	sleep(10);
	printf("mode=ssl_read result=hung\n");
	fflush(stdout);
	_exit(3);
}

int main(int argc, char **argv)
{
	const char *cafile = tls_init(argc, argv, &g_args);
	g_ctx = client_ctx(cafile);
	pthread_t dog, work;
	pthread_create(&dog, NULL, watchdog, NULL);
	pthread_create(&work, NULL, worker, NULL);
	usleep(500 * 1000);
	uint64_t t0 = now_ms();
	pthread_cancel(work);
	void *result = NULL;
	pthread_join(work, &result);
	uint64_t join_ms = now_ms() - t0;
	int cancelled = result == PTHREAD_CANCELED;
	int after = get("/status/200", 0);
	printf("mode=ssl_read cancelled=%d cleanup=%d join_ms=%llu after=%d\n", cancelled,
	       (int)g_cleaned_up, (unsigned long long)join_ms, after);
	fflush(stdout);
	return cancelled && g_cleaned_up && join_ms < 2000 && after == 200 ? 0 : 1;
}
