/* Requests one after the other on ONE blocking keep-alive socket: connect once, then
 * per step a GET written with send(), its response read completely by its framing
 * with recv(), then INTERVAL_MS of sleep.
 *   keepalive_loop HOST PORT INTERVAL_MS STEP...   STEP: PATH or PATH|Name: value|...
 * "[client] request I" on stderr before each request. stdout: one JSON line per
 * response {"i", "ts", "status", "len", "body_hex"}. A closed connection or any
 * error ends the program (exit 2): it never reconnects. */
#include "common.h"
#include <sys/time.h>
#include <time.h>

static ssize_t recv_read(int fd, void *buf, size_t n, void *ctx)
{
	(void)ctx;
	return recv(fd, buf, n, 0);
}

int main(int argc, char **argv)
{
	struct args a;
	ctest_init(argc, argv, &a);
	if (argc < 5)
		die("usage: %s HOST PORT INTERVAL_MS STEP...", g_prog);
	long interval_ms = strtol(argv[3], NULL, 10);
	int fd = connect_blocking(&a);
	struct rbuf rb = {0};
	int rc = 0;
	for (int i = 4; i < argc; i++) {
		alarm(CTEST_WATCHDOG_SEC);
		/* PATH|Name: value|Name: value -> path and header lines */
		char *step = strdup(argv[i]), *save = NULL;
		char *path = strtok_r(step, "|", &save), *h;
		char extra[2048] = "";
		size_t used = 0;
		while ((h = strtok_r(NULL, "|", &save)) != NULL) {
			used += (size_t)snprintf(extra + used, sizeof extra - used, "%s\r\n", h);
			if (used >= sizeof extra)
				die("headers too long");
		}
		struct timeval tv;
		gettimeofday(&tv, NULL);
		fprintf(stderr, "[client] request %d\n", i - 4);
		size_t len;
		char *req = build_request(&a, "GET", path, extra, NULL, 0, &len);
		for (size_t off = 0; off < len;) {
			ssize_t n = send(fd, req + off, len - off, MSG_NOSIGNAL);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				die("send request %d:", i - 4);
			}
			off += (size_t)n;
		}
		free(req);
		free(step);
		struct response r;
		read_response(fd, &rb, &r, recv_read, NULL);
		printf("{\"i\": %d, \"ts\": %ld.%06ld, \"status\": %d, \"len\": %zu, \"body_hex\": \"", i - 4,
		       (long)tv.tv_sec, (long)tv.tv_usec, r.status, r.body_len);
		for (size_t k = 0; k < r.body_len; k++)
			printf("%02x", (unsigned char)r.body[k]);
		printf("\"}\n");
		fflush(stdout);
		if (r.status < 200 || r.status >= 300)
			rc = 1;
		free_response(&r);
		if (i + 1 < argc) {
			struct timespec ts = {interval_ms / 1000, (interval_ms % 1000) * 1000000L};
			while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
				;
		}
	}
	close(fd);
	free(rb.data);
	return rc;
}
