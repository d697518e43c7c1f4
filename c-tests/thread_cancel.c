/* A thread blocked on a diverted socket is cancelled (pthread_cancel), as a program stops
 * a worker: the thread ends as a cancelled one, its cleanup handler runs, and the process
 * goes on; its next request on a new connection is answered.
 *
 * thread_cancel HOST PORT PATH MODE
 *
 *   recv     the worker sends GET PATH (an answer that takes seconds: /delay/3000 through
 *            HAProxy, or the test proxy in `hang`) and blocks in recv()
 *   poll     the same, the worker waiting in poll(POLLIN, -1)
 *   write    the worker POSTs a 64 MiB body in 64 KiB writes to a proxy that reads
 *            nothing more (the test proxy in `hang`): its write blocks
 *   connect  the worker's connect blocks (the test proxy in `blackhole`); the socket
 *            must still be blocking in the cleanup handler (the library's bounded connect
 *            makes it non-blocking for a while)
 *   handshake_wait  another thread makes the process's first connect, whose handshake
 *            with the proxy hangs (asked of the control port, as for `handshake`); the
 *            worker's connect, 100 ms later, waits for that handshake and is cancelled
 *            there, and must be joined within 500 ms; then handshakes are answered again
 *            and the other thread joined
 *   exit_in_handler  as recv, but instead of a cancel the main thread sends the worker
 *            SIGUSR1, whose handler calls pthread_exit((void *)42): the join must see 42
 *            (cancelled=1 then means "ended by that exit")
 *   handshake  the worker's connect is the process's first: the library's handshake
 *            with the proxy runs in it, and the test proxy's handshake hangs (this
 *            program asks its control port, 127.0.0.1:9001, for that, and for an
 *            answer again once the worker is joined); the next request must go through
 *            the proxy (a cancelled handshake is not the proxy failing)
 *
 * The main thread cancels the worker 300 ms after it started, joins it, then (unless MODE
 * is `write` or `connect`, whose proxy answers nothing) GETs /status/200 on a new
 * connection.
 *
 * Prints one line: mode=M cancelled=0|1 cleanup=0|1 nonblock=0|1 join_ms=N after=STATUS
 * via_proxy=0|1 (nonblock: O_NONBLOCK on the worker's socket in its cleanup handler;
 * via_proxy: the answer's body names a proxy, HAProxy's or the test proxy's header)
 * Exit 0 iff cancelled, cleaned up, the socket blocking, joined within 2 s and (when
 * asked) answered 200 (through the proxy, for `handshake`); 1 otherwise, 2 on a setup
 * error, 3 when hung (10 s watchdog).
 */
#include "common.h"

#include <poll.h>
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
static const char *g_mode;
static volatile int g_fd = -1;
static volatile int g_cleaned_up;
static volatile int g_nonblock;

static void close_on_cancel(void *arg)
{
	(void)arg;
	if (g_fd >= 0) {
		g_nonblock = (fcntl(g_fd, F_GETFL) & O_NONBLOCK) != 0;
		close(g_fd);
	}
	g_fd = -1;
	g_cleaned_up = 1;
}

static void blocked_recv(void)
{
	size_t len;
	char *req = build_request(&g_args, "GET", g_args.path, NULL, NULL, 0, &len);
	write_all(g_fd, req, len);
	free(req);
	if (strcmp(g_mode, "poll") == 0) {
		struct pollfd p = { .fd = g_fd, .events = POLLIN };
		poll(&p, 1, -1);
	}
	char buf[4096];
	recv(g_fd, buf, sizeof buf, 0);
}

static void blocked_write(void)
{
	const size_t body = 64u << 20;
	char head[256];
	int n = snprintf(head, sizeof head,
			 "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %zu\r\n\r\n",
			 g_args.path, g_args.host, body);
	write_all(g_fd, head, (size_t)n);
	static char chunk[65536];
	for (size_t sent = 0; sent < body;) {
		ssize_t w = write(g_fd, chunk, sizeof chunk);
		if (w <= 0)
			return;
		sent += (size_t)w;
	}
}

/* POST body to the test proxy's control port (not an intercepted port). */
static void control(const char *path, const char *body)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in at = { .sin_family = AF_INET, .sin_port = htons(9001) };
	inet_pton(AF_INET, "127.0.0.1", &at.sin_addr);
	if (connect(fd, (struct sockaddr *)&at, sizeof at) < 0)
		die("control port:");
	char req[256];
	int n = snprintf(req, sizeof req,
			 "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n%s",
			 path, strlen(body), body);
	write_all(fd, req, (size_t)n);
	char buf[512];
	while (read(fd, buf, sizeof buf) > 0) {
	}
	close(fd);
}

/* handshake_wait's other thread: the process's first connect. */
static void *first_connect(void *arg)
{
	(void)arg;
	close(connect_blocking(&g_args));
	return NULL;
}

static void *worker(void *arg)
{
	(void)arg;
	pthread_cleanup_push(close_on_cancel, NULL);
	if (strcmp(g_mode, "connect") == 0 || strncmp(g_mode, "handshake", 9) == 0) {
		struct addrinfo *ai = resolve(&g_args);
		g_fd = socket(ai->ai_family, SOCK_STREAM, 0);
		connect(g_fd, ai->ai_addr, ai->ai_addrlen);
		freeaddrinfo(ai);
	} else {
		g_fd = connect_blocking(&g_args);
		if (strcmp(g_mode, "write") == 0)
			blocked_write();
		else
			blocked_recv();
	}
	pthread_cleanup_pop(0);
	return NULL; /* not cancelled: the check below fails */
}

static void exit_now(int sig)
{
	(void)sig;
	pthread_exit((void *)42);
}

static void *watchdog(void *arg)
{
	(void)arg;
	sleep(10);
	printf("mode=%s result=hung\n", g_mode);
	fflush(stdout);
	_exit(3);
}

int main(int argc, char **argv)
{
	ctest_init(argc, argv, &g_args);
	g_mode = argc > 4 ? argv[4] : "";
	int handshake_wait = strcmp(g_mode, "handshake_wait") == 0;
	int handshake = strcmp(g_mode, "handshake") == 0 || handshake_wait;
	int exit_in_handler = strcmp(g_mode, "exit_in_handler") == 0;
	if (strcmp(g_mode, "recv") && strcmp(g_mode, "poll") && strcmp(g_mode, "write") &&
	    strcmp(g_mode, "connect") && !handshake && !exit_in_handler) {
		fprintf(stderr, "usage: thread_cancel HOST PORT PATH recv|poll|write|connect|"
				"handshake|handshake_wait|exit_in_handler\n");
		return 2;
	}
	if (exit_in_handler) {
		struct sigaction sa = { .sa_handler = exit_now };
		sigaction(SIGUSR1, &sa, NULL);
	}
	if (handshake)
		control("/handshake", "hang");
	pthread_t dog, work, first;
	pthread_create(&dog, NULL, watchdog, NULL);
	if (handshake_wait) {
		pthread_create(&first, NULL, first_connect, NULL);
		usleep(100 * 1000);
	}
	pthread_create(&work, NULL, worker, NULL);
	usleep(300 * 1000);
	uint64_t t0 = now_ms();
	if (exit_in_handler)
		pthread_kill(work, SIGUSR1);
	else
		pthread_cancel(work);
	void *result = NULL;
	pthread_join(work, &result);
	uint64_t join_ms = now_ms() - t0;
	int cancelled = result == (exit_in_handler ? (void *)42 : PTHREAD_CANCELED);

	if (handshake)
		control("/handshake", "unmanaged");
	if (handshake_wait)
		pthread_join(first, NULL);
	int ask_again = strcmp(g_mode, "recv") == 0 || strcmp(g_mode, "poll") == 0 || handshake ||
			exit_in_handler;
	int after = 0, via_proxy = 0;
	if (ask_again) {
		struct args again = g_args;
		again.path = "/status/200";
		int fd = connect_blocking(&again);
		size_t len;
		char *req = build_request(&again, "GET", again.path, NULL, NULL, 0, &len);
		write_all(fd, req, len);
		free(req);
		struct rbuf rb = { 0 };
		struct response r;
		read_response(fd, &rb, &r, plain_read, NULL);
		after = r.status;
		via_proxy = r.body && (strstr(r.body, "x-via-haproxy") || strstr(r.body, "x-via-testproxy"));
		close(fd);
	}
	printf("mode=%s cancelled=%d cleanup=%d nonblock=%d join_ms=%llu after=%d via_proxy=%d\n",
	       g_mode, cancelled, (int)g_cleaned_up, (int)g_nonblock, (unsigned long long)join_ms,
	       after, via_proxy);
	fflush(stdout);
	/* handshake_wait: the handshake itself gives up after ~1.6 s; the cancel must not
	 * wait for that. Its handshake failed, so its next request goes direct. */
	uint64_t join_limit_ms = handshake_wait ? 500 : 2000;
	int ok = cancelled && g_cleaned_up && !g_nonblock && join_ms < join_limit_ms &&
		 (!ask_again || after == 200) && (!handshake || handshake_wait || via_proxy);
	return ok ? 0 : 1;
}
