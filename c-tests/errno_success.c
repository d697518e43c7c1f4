/* errno is left alone by every call that succeeds: `errno_success HOST PORT PATH PORT2`.
 * The same sequence runs on a connection to HOST:PORT (diverted under the library) and
 * to HOST:PORT2 (a port it does not intercept): before each call errno is set to a
 * sentinel, and after each call that succeeded it must still hold it. The calls:
 * getaddrinfo (errno as libc's own leaves it), socket, connect (blocking), getpeername, getsockopt, fcntl, dup, dup2,
 * close, one request written with send + write + writev + sendmsg + sendto, poll,
 * select, epoll_ctl + epoll_wait, the answer read with recv(MSG_PEEK) + recv + read +
 * readv + recvmsg + recvfrom + read; then a non-blocking connect (EINPROGRESS), poll for
 * POLLOUT, SO_ERROR, a second request; fdopen + fclose. A line per call: "ok NAME" or
 * "CHANGED NAME: errno SENTINEL -> X" on stderr; the bodies on stdout. Exit 0 when every
 * answer was 200 and nothing changed errno, 3 when errno changed, else as in common.h. */
#include "common.h"
#include <dlfcn.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/select.h>

#define SENTINEL 4242 /* no libc call sets this */

static int changed;

/* Run CALL with errno set to the sentinel; check errno when OK (an expression on `r`). */
#define CHECK(name, call, ok)                                                              \
	({                                                                                  \
		errno = SENTINEL;                                                           \
		__typeof__(call) r = (call);                                                \
		int e = errno;                                                              \
		if (!(ok))                                                                  \
			die("%s failed:", name);                                            \
		if (e != SENTINEL) {                                                        \
			note("CHANGED %s: errno %d -> %d (%s)", name, SENTINEL, e, strerror(e)); \
			changed = 1;                                                        \
		} else {                                                                    \
			note("ok %s", name);                                                \
		}                                                                           \
		r;                                                                          \
	})

static char label_buf[128];
static const char *label(const char *what, const char *port)
{
	snprintf(label_buf, sizeof label_buf, "%s [:%s]", what, port);
	return label_buf;
}

static int connect_checked(const struct args *a, int nonblocking)
{
	struct addrinfo hints, *res = NULL;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_INET;
	hints.ai_socktype = SOCK_STREAM;
	/* glibc's own getaddrinfo may set errno when it succeeds (it does: 0): the hooked
	 * one must leave what libc's leaves. */
	typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *,
			      struct addrinfo **);
	void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
	gai_fn libc_gai = libc ? (gai_fn)dlsym(libc, "getaddrinfo") : NULL;
	if (!libc_gai)
		die("libc's own getaddrinfo not found");
	errno = SENTINEL;
	if (libc_gai(a->host, a->port, &hints, &res) != 0)
		die("getaddrinfo (libc's own) failed");
	int libc_errno = errno;
	freeaddrinfo(res);
	errno = SENTINEL;
	if (getaddrinfo(a->host, a->port, &hints, &res) != 0)
		die("getaddrinfo failed");
	if (errno != libc_errno) {
		note("CHANGED %s: errno %d (libc's own getaddrinfo leaves %d)",
		     label("getaddrinfo", a->port), errno, libc_errno);
		changed = 1;
	} else {
		note("ok %s", label("getaddrinfo", a->port));
	}
	int fd = CHECK(label("socket", a->port), socket(AF_INET, SOCK_STREAM, 0), r >= 0);
	if (!nonblocking) {
		CHECK(label("connect (blocking)", a->port),
		      connect(fd, res->ai_addr, res->ai_addrlen), r == 0);
	} else {
		int fl = CHECK(label("fcntl F_GETFL", a->port), fcntl(fd, F_GETFL), r >= 0);
		CHECK(label("fcntl F_SETFL", a->port), fcntl(fd, F_SETFL, fl | O_NONBLOCK), r == 0);
		errno = 0;
		int rc = connect(fd, res->ai_addr, res->ai_addrlen);
		if (rc != 0 && errno != EINPROGRESS)
			die("non-blocking connect:");
		struct pollfd p = {fd, POLLOUT, 0};
		CHECK(label("poll (connect done)", a->port), poll(&p, 1, 10000), r == 1);
		int err = -1;
		socklen_t len = sizeof err;
		CHECK(label("getsockopt SO_ERROR", a->port),
		      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len), r == 0 && err == 0);
		CHECK(label("fcntl F_SETFL (blocking)", a->port), fcntl(fd, F_SETFL, fl), r == 0);
	}
	freeaddrinfo(res);
	return fd;
}

/* A request in five pieces, one per write entry point. */
static void write_request(int fd, const struct args *a, const char *tag)
{
	char host[512], line[1024];
	host_header(a, host, sizeof host);
	snprintf(line, sizeof line, "GET %s HTTP/1.1\r\n", a->path);
	CHECK(label("send", a->port), send(fd, line, strlen(line), 0), r == (ssize_t)strlen(line));
	snprintf(line, sizeof line, "Host: %s\r\n", host);
	CHECK(label("write", a->port), write(fd, line, strlen(line)), r == (ssize_t)strlen(line));
	char h1[128], h2[128];
	snprintf(h1, sizeof h1, "User-Agent: lunar-ctest/%s\r\nAccept: */*\r\n", g_prog);
	snprintf(h2, sizeof h2, "X-Ctest: %s\r\nX-Ctest-Seq: %s\r\n", g_prog, tag);
	struct iovec iov[2] = {{h1, strlen(h1)}, {h2, strlen(h2)}};
	CHECK(label("writev", a->port), writev(fd, iov, 2), r == (ssize_t)(strlen(h1) + strlen(h2)));
	const char *h3 = "X-Errno-Test: 1\r\n";
	struct iovec one = {(void *)h3, strlen(h3)};
	struct msghdr msg;
	memset(&msg, 0, sizeof msg);
	msg.msg_iov = &one;
	msg.msg_iovlen = 1;
	CHECK(label("sendmsg", a->port), sendmsg(fd, &msg, 0), r == (ssize_t)strlen(h3));
	CHECK(label("sendto", a->port), sendto(fd, "\r\n", 2, 0, NULL, 0), r == 2);
}

/* The answer, read through every read entry point in turn. */
static int read_answer(int fd, const struct args *a)
{
	struct pollfd p = {fd, POLLIN, 0};
	CHECK(label("poll", a->port), poll(&p, 1, 10000), r == 1);
	fd_set set;
	FD_ZERO(&set);
	FD_SET(fd, &set);
	struct timeval tv = {10, 0};
	CHECK(label("select", a->port), select(fd + 1, &set, NULL, NULL, &tv), r == 1);
	int ep = CHECK(label("epoll_create1", a->port), epoll_create1(EPOLL_CLOEXEC), r >= 0);
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
	CHECK(label("epoll_ctl", a->port), epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev), r == 0);
	struct epoll_event got;
	CHECK(label("epoll_wait", a->port), epoll_wait(ep, &got, 1, 10000), r == 1);
	CHECK(label("close (epoll)", a->port), close(ep), r == 0);

	struct rbuf rb = {0};
	struct response resp;
	memset(&resp, 0, sizeof resp);
	rbuf_reserve(&rb, 65536);
	char *at = rb.data;
	CHECK(label("recv MSG_PEEK", a->port), recv(fd, at, 8, MSG_PEEK), r > 0);
	ssize_t n = CHECK(label("recv", a->port), recv(fd, at, 8, 0), r > 0);
	rb.len += (size_t)n;
	int step = 0;
	while (!try_parse_response(&rb, &resp)) {
		rbuf_reserve(&rb, 16384);
		at = rb.data + rb.len;
		size_t room = rb.cap - rb.len;
		size_t small = room < 16 ? room : 16;
		switch (step++) {
		case 0:
			n = CHECK(label("read", a->port), read(fd, at, small), r > 0);
			break;
		case 1: {
			struct iovec iov[2] = {{at, 5}, {at + 5, small - 5}};
			n = CHECK(label("readv", a->port), readv(fd, iov, 2), r > 0);
			break;
		}
		case 2: {
			struct iovec iov = {at, small};
			struct msghdr msg;
			memset(&msg, 0, sizeof msg);
			msg.msg_iov = &iov;
			msg.msg_iovlen = 1;
			n = CHECK(label("recvmsg", a->port), recvmsg(fd, &msg, 0), r > 0);
			break;
		}
		case 3:
			n = CHECK(label("recvfrom", a->port), recvfrom(fd, at, small, 0, NULL, NULL), r > 0);
			break;
		default:
			n = CHECK(label("read (rest)", a->port), read(fd, at, room), r > 0);
		}
		rb.len += (size_t)n;
	}
	int rc = finish_response(&resp);
	fputc('\n', stdout);
	free_response(&resp);
	free(rb.data);
	return rc;
}

static int sequence(const struct args *a)
{
	int fd = connect_checked(a, 0);
	struct sockaddr_storage peer;
	socklen_t plen = sizeof peer;
	CHECK(label("getpeername", a->port), getpeername(fd, (struct sockaddr *)&peer, &plen), r == 0);
	int type = 0;
	socklen_t tlen = sizeof type;
	CHECK(label("getsockopt SO_TYPE", a->port), getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen), r == 0);
	int copy = CHECK(label("dup", a->port), dup(fd), r >= 0);
	CHECK(label("dup2", a->port), dup2(fd, copy), r == copy);
	CHECK(label("close (dup)", a->port), close(copy), r == 0);
	write_request(fd, a, "1");
	int rc = read_answer(fd, a);
	FILE *stream = CHECK(label("fdopen", a->port), fdopen(fd, "r+"), r != NULL);
	CHECK(label("fclose", a->port), fclose(stream), r == 0);

	int fd2 = connect_checked(a, 1);
	write_request(fd2, a, "2");
	int rc2 = read_answer(fd2, a);
	CHECK(label("shutdown", a->port), shutdown(fd2, SHUT_WR), r == 0);
	CHECK(label("close", a->port), close(fd2), r == 0);
	return rc ? rc : rc2;
}

int main(int argc, char **argv)
{
	struct args a;
	ctest_init(argc, argv, &a);
	struct args b = a;
	b.port = argc > 4 ? argv[4] : "8080";
	int rc = sequence(&a);
	int rc2 = sequence(&b);
	if (rc || rc2)
		return rc ? rc : rc2;
	return changed ? 3 : 0;
}
