/* Event-loop style: O_NONBLOCK socket, connect() -> EINPROGRESS, wait for
 * writability, getsockopt(SO_ERROR), then non-blocking write()/read() driven by the
 * readiness API, with EAGAIN handling and short writes. The wait is only entered after
 * EINPROGRESS/EAGAIN, as an edge-triggered loop must.
 *   default        epoll, level-triggered, EPOLL_CTL_MOD to the wanted events (libuv)
 *   -DWAIT_EPOLLET epoll, edge-triggered, registered once for IN|OUT|RDHUP|ET
 *   -DWAIT_POLL    poll() (curl)
 *   -DWAIT_SELECT  select() (wget, perl)
 *   -DCHECK_BY_CONNECT  learn the connect's outcome by calling connect() again
 *                  (0 or EISCONN: connected; EALREADY: wait on), not SO_ERROR (perl's
 *                  IO::Socket::INET)
 *   -DCHECK_BY_WRITE    do not ask at all: write once writable (wrk)
 *   -DPOST_BYTES=N POST a body of N bytes (0..250 repeated, like the lab origin's
 *                  /bytes/N) instead of a GET, with SO_SNDBUF set to 16 KiB, so
 *                  that write() meets EAGAIN and short writes
 *   -DSHORT_READ_WAITS  (edge-triggered) a read shorter than asked ends the reads until
 *                  the next edge, as nginx takes it with EPOLLRDHUP: bytes the
 *                  socket held then would never make an edge of their own
 *   -DREAD_BY_READV readv into eight 4 KiB parts (nginx's upstream reads)
 *   -DCOUNT_BY_FIONREAD (with SHORT_READ_WAITS) after a full read, FIONREAD says how
 *                  much more there is, counted down by each read; at zero the loop
 *                  waits for the next edge (nginx's rev->available)
 *   -DBODY_BY_SENDFILE=1 (with POST_BYTES) the head is written, the body sent from a
 *                  file with sendfile() at an offset the program passes (nginx's
 *                  upstream bodies); =2 at the file's own offset. After a short
 *                  sendfile the loop waits for writability, as nginx does: the socket's
 *                  buffer is full, and an edge-triggered wait gets its edge
 *   -DBODY_BY_SPLICE (with POST_BYTES) the head is written, the body put in a pipe as far
 *                  as it takes and spliced from there to the socket (SPLICE_F_MOVE |
 *                  SPLICE_F_NONBLOCK), HAProxy's `option splice-request`; a short splice
 *                  waits for writability, as above
 *   -DANSWER_BY_SPLICE the answer spliced from the socket into a pipe and read from there,
 *                  HAProxy's `option splice-response`; at most 3000 bytes per read of
 *                  the pipe, so that it seldom is empty when the next splice comes */
#include "common.h"
#include <poll.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <time.h>

#define DEADLINE_MS 20000

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

#if defined(WAIT_POLL)
#define WAIT_NAME "poll"
#elif defined(WAIT_SELECT)
#define WAIT_NAME "select"
#elif defined(WAIT_EPOLLET)
#define WAIT_NAME "epoll-et"
#else
#define WAIT_NAME "epoll"
#endif

/* Wait until fd is ready for `want` (EPOLLIN/EPOLLOUT bits); returns the events
 * seen, in epoll bits. */
static unsigned wait_for(int ep, int fd, unsigned want, long deadline)
{
	for (;;) {
		long left = deadline - now_ms();
		if (left <= 0)
			die("timed out waiting for events 0x%x (%s)", want, WAIT_NAME);
#if defined(WAIT_POLL)
		(void)ep;
		struct pollfd p = {.fd = fd, .events = 0};
		if (want & EPOLLIN)
			p.events |= POLLIN;
		if (want & EPOLLOUT)
			p.events |= POLLOUT;
		int n = poll(&p, 1, (int)left);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("poll:");
		}
		if (n == 1) {
			unsigned ev = 0;
			if (p.revents & POLLIN)
				ev |= EPOLLIN;
			if (p.revents & POLLOUT)
				ev |= EPOLLOUT;
			if (p.revents & POLLERR)
				ev |= EPOLLERR;
			if (p.revents & POLLHUP)
				ev |= EPOLLHUP;
			return ev;
		}
#elif defined(WAIT_SELECT)
		(void)ep;
		if (fd >= FD_SETSIZE)
			die("fd %d too large for select", fd);
		fd_set r, w;
		FD_ZERO(&r);
		FD_ZERO(&w);
		if (want & EPOLLIN)
			FD_SET(fd, &r);
		if (want & EPOLLOUT)
			FD_SET(fd, &w);
		struct timeval tv = {.tv_sec = left / 1000, .tv_usec = (left % 1000) * 1000};
		int n = select(fd + 1, &r, &w, NULL, &tv);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("select:");
		}
		if (n > 0) {
			unsigned ev = 0;
			if (FD_ISSET(fd, &r))
				ev |= EPOLLIN;
			if (FD_ISSET(fd, &w))
				ev |= EPOLLOUT;
			return ev;
		}
#else
#if defined(WAIT_EPOLLET)
		(void)fd;
#else
		struct epoll_event ev = {.events = want, .data.fd = fd};
		if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) < 0)
			die("epoll_ctl MOD:");
#endif
		struct epoll_event out;
		int n = epoll_wait(ep, &out, 1, (int)left);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait:");
		}
		/* edge-triggered: an edge for the other direction is not what we wait for */
		if (n == 1 && (out.events & (want | EPOLLERR | EPOLLHUP)))
			return out.events;
#endif
	}
}

#if defined(BODY_BY_SENDFILE) || defined(BODY_BY_SPLICE)
/* What a sendfile or splice of `want` body bytes (`sent` before it) returned: the count it
 * moved; 0 after EINTR, or after EAGAIN and a wait for writability. A short one waits for
 * writability too, as nginx and HAProxy do: the socket's buffer is full, and an
 * edge-triggered wait gets its edge. */
static size_t body_step(ssize_t n, size_t want, size_t sent, const char *call, int fd, int ep,
			long deadline, int *eagain, int *shorts)
{
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			(*eagain)++;
			wait_for(ep, fd, EPOLLOUT, deadline);
		} else if (errno != EINTR) {
			die("%s:", call);
		}
		return 0;
	}
	if (n == 0)
		die("%s sent nothing at %zu of %d bytes", call, sent, POST_BYTES);
	if ((size_t)n < want && sent + (size_t)n < POST_BYTES) {
		(*shorts)++;
		wait_for(ep, fd, EPOLLOUT, deadline);
	}
	return (size_t)n;
}
#endif

#ifdef BODY_BY_SENDFILE
#include <sys/sendfile.h>

/* A file holding the body, at offset 0, already unlinked. */
static int file_holding(const char *body, size_t n)
{
	char name[] = "/tmp/ctest-sendfile-XXXXXX";
	int f = mkstemp(name);
	if (f < 0)
		die("mkstemp:");
	unlink(name);
	for (size_t done = 0; done < n;) {
		ssize_t w = write(f, body + done, n - done);
		if (w <= 0)
			die("write to the body file:");
		done += (size_t)w;
	}
	if (lseek(f, 0, SEEK_SET) != 0)
		die("lseek:");
	return f;
}

/* The whole file to the socket with sendfile(), then a check of where each offset
 * ended: the program's own moved by what was sent and the file's left alone (=1), or
 * the file's moved (=2), as the kernel's sendfile leaves them. */
static void send_file_body(int fd, int ep, int file, long deadline, int *eagain)
{
#if BODY_BY_SENDFILE == 1
	off_t at = 0;
#endif
	size_t sent = 0;
	int shorts = 0;
	while (sent < POST_BYTES) {
		size_t want = POST_BYTES - sent;
#if BODY_BY_SENDFILE == 1
		ssize_t n = sendfile(fd, file, &at, want);
#else
		ssize_t n = sendfile(fd, file, NULL, want);
#endif
		sent += body_step(n, want, sent, "sendfile", fd, ep, deadline, eagain, &shorts);
	}
	off_t file_at = lseek(file, 0, SEEK_CUR);
#if BODY_BY_SENDFILE == 1
	if (at != POST_BYTES || file_at != 0)
		die("after sendfile: offset %lld, file at %lld; want %d and 0", (long long)at,
		    (long long)file_at, POST_BYTES);
#else
	if (file_at != POST_BYTES)
		die("after sendfile: file at %lld; want %d", (long long)file_at, POST_BYTES);
#endif
	note("body by sendfile: %d short, then waited", shorts);
	close(file);
}
#endif

#ifdef BODY_BY_SPLICE
/* The body through a pipe to the socket; at the end the pipe must be empty: a splice
 * takes from it just what the socket took. */
static void splice_body(int fd, int ep, const char *body, long deadline, int *eagain)
{
	int p[2];
	if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0)
		die("pipe2:");
	size_t put = 0, sent = 0;
	int shorts = 0;
	while (sent < POST_BYTES) {
		while (put < POST_BYTES) {
			ssize_t w = write(p[1], body + put, POST_BYTES - put);
			if (w < 0) {
				if (errno == EAGAIN)
					break;
				die("write to the pipe:");
			}
			put += (size_t)w;
		}
		size_t in_pipe = put - sent;
		ssize_t n = splice(p[0], NULL, fd, NULL, in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		sent += body_step(n, in_pipe, sent, "splice", fd, ep, deadline, eagain, &shorts);
	}
	int left = -1;
	if (ioctl(p[0], FIONREAD, &left) < 0 || left != 0)
		die("after splicing the body the pipe holds %d bytes", left);
	note("body by splice: %d short, then waited", shorts);
	close(p[0]);
	close(p[1]);
}
#endif

#ifdef ANSWER_BY_SPLICE
static int answer_pipe[2];

/* As read(2) of the socket, through the pipe: a splice into it unless it holds 3000
 * bytes already, then up to 3000 of its bytes. */
static ssize_t read_by_splice(int fd, char *buf, size_t asked)
{
	int queued = 0;
	if (ioctl(answer_pipe[0], FIONREAD, &queued) < 0)
		die("ioctl FIONREAD on the pipe:");
	if (queued < 3000) {
		ssize_t n = splice(fd, NULL, answer_pipe[1], NULL, asked,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n <= 0 && queued == 0)
			return n; /* the end, or EAGAIN/EINTR/an error, as read's */
		if (ioctl(answer_pipe[0], FIONREAD, &queued) < 0)
			die("ioctl FIONREAD on the pipe:");
	}
	size_t take = queued < 3000 ? (size_t)queued : 3000;
	if (take > asked)
		take = asked;
	ssize_t got = read(answer_pipe[0], buf, take);
	if (got != (ssize_t)take)
		die("read of the pipe: %zd of %zu bytes:", got, take);
	return got;
}
#endif

int main(int argc, char **argv)
{
	struct args a;
	ctest_init(argc, argv, &a);
	long deadline = now_ms() + DEADLINE_MS;
	size_t len;
#ifdef POST_BYTES
	char *body = malloc(POST_BYTES);
	if (!body)
		die("out of memory");
	for (size_t i = 0; i < POST_BYTES; i++)
		body[i] = (char)(i % 251);
	char *req = build_request(&a, "POST", a.path, "Content-Type: application/octet-stream\r\n",
				  body, POST_BYTES, &len);
	free(body);
#else
	char *req = build_request(&a, "GET", a.path, NULL, NULL, 0, &len);
#endif

	struct addrinfo *res = resolve(&a);
	int fd = socket(res->ai_family, SOCK_STREAM, 0);
	if (fd < 0)
		die("socket:");
#ifdef POST_BYTES
	int sndbuf = 16384;
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf) < 0)
		die("setsockopt SO_SNDBUF:");
#endif
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		die("fcntl O_NONBLOCK:");
	int ep = -1;
#if !defined(WAIT_POLL) && !defined(WAIT_SELECT)
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1:");
#if defined(WAIT_EPOLLET)
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.fd = fd};
#else
	struct epoll_event ev = {.events = 0, .data.fd = fd};
#endif
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		die("epoll_ctl ADD:");
#endif

	struct sockaddr_storage peer;
	socklen_t peer_len = res->ai_addrlen;
	memcpy(&peer, res->ai_addr, peer_len);
	int rc = connect(fd, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	if (rc == 0) {
		note("connect completed at once");
	} else if (errno == EINPROGRESS) {
		unsigned evs = wait_for(ep, fd, EPOLLOUT, deadline);
#if defined(CHECK_BY_CONNECT)
		for (;;) {
			int rc2 = connect(fd, (struct sockaddr *)&peer, peer_len);
			int e = errno;
			if (rc2 == 0 || e == EISCONN)
				break;
			if (e != EALREADY && e != EINPROGRESS) {
				errno = e;
				die("connect again (events 0x%x):", evs);
			}
			evs = wait_for(ep, fd, EPOLLOUT, deadline);
		}
		note("connect EINPROGRESS, then connected by connect (events 0x%x, %s)", evs,
		     WAIT_NAME);
#elif defined(CHECK_BY_WRITE)
		note("connect EINPROGRESS, then writable (events 0x%x, %s)", evs, WAIT_NAME);
#else
		int err = 0;
		socklen_t el = sizeof err;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
			die("getsockopt SO_ERROR:");
		if (err != 0) {
			errno = err;
			die("connect failed (events 0x%x):", evs);
		}
		note("connect EINPROGRESS, then writable (events 0x%x, %s)", evs, WAIT_NAME);
#endif
	} else {
		die("connect:");
	}

	/* write with EAGAIN handling */
	size_t off = 0;
	int eagain_w = 0, eagain_r = 0;
#ifdef BODY_BY_SENDFILE
	size_t head_len = len - POST_BYTES;
	int body_file = file_holding(req + head_len, POST_BYTES);
#elif defined(BODY_BY_SPLICE)
	size_t head_len = len - POST_BYTES;
#else
	size_t head_len = len;
#endif
	while (off < head_len) {
		ssize_t n = write(fd, req + off, head_len - off);
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
#ifdef BODY_BY_SENDFILE
	send_file_body(fd, ep, body_file, deadline, &eagain_w);
#elif defined(BODY_BY_SPLICE)
	splice_body(fd, ep, req + head_len, deadline, &eagain_w);
#endif
#ifdef ANSWER_BY_SPLICE
	if (pipe2(answer_pipe, O_NONBLOCK | O_CLOEXEC) < 0)
		die("pipe2:");
#endif
	free(req);

	/* read with EAGAIN handling, until one complete response is parsed */
	struct rbuf rb = {0};
	struct response r;
	memset(&r, 0, sizeof r);
#ifdef SHORT_READ_WAITS
	int short_read = 0;
#endif
#ifdef COUNT_BY_FIONREAD
	long available = -1; /* nginx's rev->available: -1 after an event, unknown */
#endif
	while (!try_parse_response(&rb, &r)) {
#ifdef SHORT_READ_WAITS
		if (short_read) {
			eagain_r++;
			wait_for(ep, fd, EPOLLIN | EPOLLRDHUP, deadline);
			short_read = 0;
#ifdef COUNT_BY_FIONREAD
			available = -1;
#endif
		}
#endif
#ifdef COUNT_BY_FIONREAD
		if (available == 0) {
			short_read = 1;
			continue;
		}
#endif
		rbuf_reserve(&rb, 16384);
		size_t asked = rb.cap - rb.len;
#ifdef READ_BY_READV
		/* nginx's upstream reads: readv into 4 KiB buffers */
		struct iovec parts[8];
		int nparts = 0;
		for (size_t at = 0; at < asked && nparts < 8; at += 4096, nparts++) {
			parts[nparts].iov_base = rb.data + rb.len + at;
			parts[nparts].iov_len = asked - at < 4096 ? asked - at : 4096;
		}
		asked = 0;
		for (int i = 0; i < nparts; i++)
			asked += parts[i].iov_len;
		ssize_t n = readv(fd, parts, nparts);
#elif defined(ANSWER_BY_SPLICE)
		ssize_t n = read_by_splice(fd, rb.data + rb.len, asked);
#else
		ssize_t n = read(fd, rb.data + rb.len, asked);
#endif
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
#ifdef SHORT_READ_WAITS
		/* nginx's rule with EPOLLRDHUP: a read shorter than asked took all there was */
		short_read = (size_t)n < asked;
#endif
#ifdef COUNT_BY_FIONREAD
		/* and its count (ngx_readv_chain): down by each read from what FIONREAD said
		 * after a full one; below zero, "bytes came since the event": wait for the next */
		if (available >= 0) {
			available -= n;
			if (available < 0)
				available = 0;
		} else if ((size_t)n == asked) {
			int count = 0;
			if (ioctl(fd, FIONREAD, &count) < 0)
				die("ioctl FIONREAD:");
			available = count;
		}
		if ((size_t)n < asked)
			available = 0;
#endif
	}
	note("write EAGAIN=%d read EAGAIN=%d", eagain_w, eagain_r);
	if (eagain_r == 0)
		note("warning: the first read already had data (no EAGAIN path exercised)");
	int exit_rc = finish_response(&r);
	free_response(&r);
	free(rb.data);
	if (ep >= 0)
		close(ep);
	close(fd);
	return exit_rc;
}
