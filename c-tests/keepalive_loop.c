/* Requests one after the other on ONE blocking keep-alive socket: connect once, then
 * per step a GET written with send(), its response read completely by its framing
 * with recv(), then INTERVAL_MS of sleep.
 *   keepalive_loop HOST PORT INTERVAL_MS STEP...   STEP: PATH or PATH|Name: value|...
 * "[client] request I" on stderr before each request. stdout: one JSON line per
 * response {"i", "ts", "status", "len", "body_hex"}. A closed connection or any
 * error ends the program (exit 2): it never reconnects.
 *   -DWAIT_EPOLL   event-loop style: the socket is O_NONBLOCK after its connect, and
 *                  each send or recv that meets EAGAIN waits in epoll (level-triggered,
 *                  EPOLL_CTL_MOD to the wanted event), as libuv does. */
#include "common.h"
#include <sys/time.h>
#include <time.h>
#ifdef WAIT_EPOLL
#include <fcntl.h>
#include <sys/epoll.h>

static int g_epoll = -1;

/* Waits until fd is ready for `events` (EPOLLIN or EPOLLOUT). */
static void wait_ready(int fd, unsigned events)
{
	struct epoll_event ev = {.events = events, .data.fd = fd};
	if (epoll_ctl(g_epoll, EPOLL_CTL_MOD, fd, &ev) != 0)
		die("epoll_ctl:");
	for (;;) {
		struct epoll_event got;
		int n = epoll_wait(g_epoll, &got, 1, CTEST_WATCHDOG_SEC * 1000);
		if (n == 1)
			return;
		if (n == 0)
			die("epoll_wait timed out");
		if (errno != EINTR)
			die("epoll_wait:");
	}
}
#endif

static ssize_t recv_read(int fd, void *buf, size_t n, void *ctx)
{
	(void)ctx;
#ifdef WAIT_EPOLL
	for (;;) {
		ssize_t got = recv(fd, buf, n, 0);
		if (got >= 0 || errno != EAGAIN)
			return got;
		wait_ready(fd, EPOLLIN);
	}
#else
	return recv(fd, buf, n, 0);
#endif
}

int main(int argc, char **argv)
{
	struct args a;
	ctest_init(argc, argv, &a);
	if (argc < 5)
		die("usage: %s HOST PORT INTERVAL_MS STEP...", g_prog);
	long interval_ms = strtol(argv[3], NULL, 10);
	int fd = connect_blocking(&a);
#ifdef WAIT_EPOLL
	g_epoll = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
	if (g_epoll < 0 || epoll_ctl(g_epoll, EPOLL_CTL_ADD, fd, &ev) != 0 ||
	    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0)
		die("epoll set-up:");
#endif
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
#ifdef WAIT_EPOLL
				if (errno == EAGAIN) {
					wait_ready(fd, EPOLLOUT);
					continue;
				}
#endif
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
