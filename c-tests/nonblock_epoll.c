/* Event-loop style: O_NONBLOCK socket, connect() -> EINPROGRESS, epoll for EPOLLOUT,
 * getsockopt(SO_ERROR), then non-blocking write()/read() driven by epoll, with
 * EAGAIN handling and short writes. */
#include "common.h"
#include <sys/epoll.h>
#include <time.h>

#define DEADLINE_MS 20000

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Wait for `want` on fd; returns the events seen. */
static unsigned wait_for(int ep, int fd, unsigned want, long deadline)
{
	struct epoll_event ev = {.events = want, .data.fd = fd};
	if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) < 0)
		die("epoll_ctl MOD:");
	for (;;) {
		long left = deadline - now_ms();
		if (left <= 0)
			die("timed out waiting for events 0x%x", want);
		struct epoll_event out;
		int n = epoll_wait(ep, &out, 1, (int)left);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait:");
		}
		if (n == 1)
			return out.events;
	}
}

int main(int argc, char **argv)
{
	struct args a;
	ctest_init(argc, argv, &a);
	long deadline = now_ms() + DEADLINE_MS;
	size_t len;
	char *req = build_request(&a, "GET", a.path, NULL, NULL, 0, &len);

	struct addrinfo *res = resolve(&a);
	int fd = socket(res->ai_family, SOCK_STREAM, 0);
	if (fd < 0)
		die("socket:");
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		die("fcntl O_NONBLOCK:");
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1:");
	struct epoll_event ev = {.events = 0, .data.fd = fd};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		die("epoll_ctl ADD:");

	int rc = connect(fd, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	if (rc == 0) {
		note("connect completed at once");
	} else if (errno == EINPROGRESS) {
		unsigned evs = wait_for(ep, fd, EPOLLOUT, deadline);
		int err = 0;
		socklen_t el = sizeof err;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
			die("getsockopt SO_ERROR:");
		if (err != 0) {
			errno = err;
			die("connect failed (events 0x%x):", evs);
		}
		note("connect EINPROGRESS, then writable (events 0x%x)", evs);
	} else {
		die("connect:");
	}

	/* write with EAGAIN handling */
	size_t off = 0;
	int eagain_w = 0, eagain_r = 0;
	while (off < len) {
		ssize_t n = write(fd, req + off, len - off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				eagain_w++;
				wait_for(ep, fd, EPOLLOUT, deadline);
				continue;
			}
			die("write:");
		}
		off += (size_t)n;
	}
	free(req);

	/* read with EAGAIN handling, until one complete response is parsed */
	struct rbuf rb = {0};
	struct response r;
	memset(&r, 0, sizeof r);
	while (!try_parse_response(&rb, &r)) {
		rbuf_reserve(&rb, 16384);
		ssize_t n = read(fd, rb.data + rb.len, rb.cap - rb.len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				eagain_r++;
				unsigned evs = wait_for(ep, fd, EPOLLIN | EPOLLRDHUP, deadline);
				if ((evs & (EPOLLERR)) && !(evs & EPOLLIN))
					die("epoll reported error events 0x%x", evs);
				continue;
			}
			die("read:");
		}
		if (n == 0)
			die("EOF after %zu bytes, before a complete response", rb.len);
		rb.len += (size_t)n;
	}
	note("write EAGAIN=%d read EAGAIN=%d", eagain_w, eagain_r);
	if (eagain_r == 0)
		note("warning: the first read already had data (no EAGAIN path exercised)");
	int exit_rc = finish_response(&r);
	free_response(&r);
	free(rb.data);
	close(ep);
	close(fd);
	return exit_rc;
}
