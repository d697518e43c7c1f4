/* The program's own shutdown of a diverted socket: the ends it causes are its own, not
 * the proxy failing, and reach it as the kernel makes them.
 *
 * program_shutdown HOST PORT PATH MODE
 *
 *   cancel_rd     connect, send GET PATH (an answer that takes seconds, /delay/3000),
 *                 block in recv(); another thread shutdown(SHUT_RD)s the socket after
 *                 300 ms: the recv returns 0 at once (not the answer, seconds later,
 *                 from a replay)
 *   cancel_rdwr   the same with SHUT_RDWR
 *   cancel_poll   the same with SHUT_RD, the reader waiting in poll(POLLIN) first: poll
 *                 wakes at once, recv returns 0
 *   write_after_wr  send GET PATH, shutdown(SHUT_WR), write again (no MSG_NOSIGNAL,
 *                 a SIGPIPE handler): -1 EPIPE and one SIGPIPE; then the first request's
 *                 answer is read to its end and must be a 200
 *
 *   broken_pipe   a POST whose 8 MiB body is written in 64 KiB writes (no MSG_NOSIGNAL, a
 *                 SIGPIPE handler) to a proxy that breaks the connection (the test
 *                 proxy's close-head) with replay off (LUNAR_REPLAY_MAX_BYTES=0: the
 *                 failure cannot be hidden): writes go on past ECONNRESET until one
 *                 returns EPIPE, then one more write: each EPIPE comes with one
 *                 SIGPIPE, as the kernel sends it
 *
 * Prints one line: mode=M result=R errno=NAME elapsed_ms=N sigpipe=S status=C
 * Exit 0 iff as expected, 1 otherwise, 2 on a setup error, 3 when hung (8 s watchdog).
 */
#include "common.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <time.h>

static uint64_t now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static const char *errno_name(int err)
{
	return err ? strerrorname_np(err) : "0";
}

static int g_fd;
static int g_how;
static volatile sig_atomic_t g_sigpipes;

static void on_sigpipe(int sig)
{
	(void)sig;
	g_sigpipes++;
}

static void *shut_later(void *arg)
{
	(void)arg;
	usleep(300 * 1000);
	if (shutdown(g_fd, g_how) < 0)
		die("shutdown:");
	return NULL;
}

static void *watchdog(void *arg)
{
	(void)arg;
	sleep(8);
	printf("mode=%s result=hung\n", (const char *)arg);
	fflush(stdout);
	_exit(3);
}

static int cancel(const struct args *a, const char *mode)
{
	g_how = strcmp(mode, "cancel_rdwr") == 0 ? SHUT_RDWR : SHUT_RD;
	size_t len;
	char *req = build_request(a, "GET", a->path, NULL, NULL, 0, &len);
	g_fd = connect_blocking(a);
	write_all(g_fd, req, len);
	free(req);
	uint64_t t0 = now_ms();
	pthread_t shutter, dog;
	pthread_create(&dog, NULL, watchdog, (void *)mode);
	pthread_create(&shutter, NULL, shut_later, NULL);
	if (strcmp(mode, "cancel_poll") == 0) {
		struct pollfd p = { .fd = g_fd, .events = POLLIN };
		if (poll(&p, 1, 5000) != 1)
			die("poll did not wake");
	}
	char buf[4096];
	errno = 0;
	ssize_t got = recv(g_fd, buf, sizeof buf, 0);
	int err = got < 0 ? errno : 0;
	uint64_t elapsed = now_ms() - t0;
	pthread_join(shutter, NULL);
	printf("mode=%s result=%zd errno=%s elapsed_ms=%llu\n", mode, got, errno_name(err),
	       (unsigned long long)elapsed);
	return got == 0 && elapsed < 2000 ? 0 : 1;
}

static int write_after_wr(const struct args *a)
{
	struct sigaction sa = { .sa_handler = on_sigpipe };
	sigaction(SIGPIPE, &sa, NULL);
	size_t len;
	char *req = build_request(a, "GET", a->path, NULL, NULL, 0, &len);
	int fd = connect_blocking(a);
	write_all(fd, req, len);
	if (shutdown(fd, SHUT_WR) < 0)
		die("shutdown SHUT_WR:");
	errno = 0;
	ssize_t again = write(fd, req, len);
	int err = again < 0 ? errno : 0;
	free(req);
	struct rbuf rb = {0};
	struct response r;
	read_response(fd, &rb, &r, plain_read, NULL);
	int status = r.status;
	printf("mode=write_after_wr result=%zd errno=%s sigpipe=%d status=%d\n", again,
	       errno_name(err), (int)g_sigpipes, status);
	return again == -1 && err == EPIPE && g_sigpipes == 1 && status == 200 ? 0 : 1;
}

static int broken_pipe(const struct args *a)
{
	struct sigaction sa = { .sa_handler = on_sigpipe };
	sigaction(SIGPIPE, &sa, NULL);
	const size_t body = 8u << 20;
	char head[256];
	int n = snprintf(head, sizeof head,
			 "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %zu\r\n\r\n", a->path,
			 a->host, body);
	int fd = connect_blocking(a);
	write_all(fd, head, (size_t)n);
	static char chunk[65536];
	int epipes = 0, last_err = 0;
	for (size_t sent = 0; sent < body && epipes == 0;) {
		ssize_t w = write(fd, chunk, sizeof chunk);
		if (w > 0) {
			sent += (size_t)w;
			continue;
		}
		last_err = errno;
		if (errno == EPIPE)
			epipes++;
		else if (errno != ECONNRESET && errno != EINTR)
			break;
	}
	/* Once more: the kernel's EPIPE and SIGPIPE again. */
	if (epipes == 1 && write(fd, chunk, sizeof chunk) < 0 && errno == EPIPE)
		epipes++;
	printf("mode=broken_pipe result=%d errno=%s sigpipe=%d\n", epipes, errno_name(last_err),
	       (int)g_sigpipes);
	return epipes == 2 && g_sigpipes == 2 ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct args a;
	ctest_init(argc, argv, &a);
	const char *mode = argc > 4 ? argv[4] : "";
	if (strcmp(mode, "write_after_wr") == 0)
		return write_after_wr(&a);
	if (strcmp(mode, "broken_pipe") == 0)
		return broken_pipe(&a);
	if (strncmp(mode, "cancel_", 7) == 0)
		return cancel(&a, mode);
	fprintf(stderr, "usage: program_shutdown HOST PORT PATH MODE\n");
	return 2;
}
