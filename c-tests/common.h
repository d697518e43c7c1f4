/*
 * Shared helpers for the c-tests programs.
 *
 * Every program is `prog HOST PORT PATH`: HOST is resolved with getaddrinfo (so a
 * preloaded library learns the name), a request is written with one particular
 * libc entry point, the response is read with Content-Length (or chunked) framing,
 * never by waiting for EOF, and the body is printed to stdout.
 *
 * Exit status: 0 = status 200 and the body was complete; 1 = a complete response
 * with another status; 2 = any error (message on stderr, prefixed with the program
 * name). A watchdog alarm ends a program that hangs.
 *
 * Everything is static: each program is one translation unit plus this header.
 */
#ifndef CTEST_COMMON_H
#define CTEST_COMMON_H

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define CTEST_WATCHDOG_SEC 30

/* Every helper is static; not every program uses every helper. */
#define CT_FN static __attribute__((unused))

static const char *g_prog = "ctest";

__attribute__((format(printf, 1, 2), noreturn)) CT_FN void die(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	fprintf(stderr, "%s: ", g_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (fmt[0] && fmt[strlen(fmt) - 1] == ':')
		fprintf(stderr, " %s", strerror(saved));
	fputc('\n', stderr);
	exit(2);
}

__attribute__((format(printf, 1, 2))) CT_FN void note(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", g_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

struct args {
	const char *host;
	const char *port;
	const char *path;
};

CT_FN void ctest_init(int argc, char **argv, struct args *a)
{
	const char *slash = strrchr(argv[0], '/');
	g_prog = slash ? slash + 1 : argv[0];
	if (argc < 4) {
		fprintf(stderr, "usage: %s HOST PORT PATH\n", g_prog);
		exit(2);
	}
	a->host = argv[1];
	a->port = argv[2];
	a->path = argv[3];
	/* Unbuffered diagnostics, and a watchdog so a lost response cannot hang a test. */
	setvbuf(stderr, NULL, _IONBF, 0);
	alarm(CTEST_WATCHDOG_SEC);
}

/* Resolve HOST:PORT (TCP). The caller frees the list with freeaddrinfo. */
CT_FN struct addrinfo *resolve(const struct args *a)
{
	struct addrinfo hints, *res = NULL;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	int rc = getaddrinfo(a->host, a->port, &hints, &res);
	if (rc != 0)
		die("getaddrinfo(%s, %s): %s", a->host, a->port, gai_strerror(rc));
	return res;
}

/* HOST's first IPv4 address (PORT in it), and the same as a v4-mapped IPv6 address
 * ::ffff:a.b.c.d, the form Java connects its AF_INET6 sockets to. */
CT_FN void resolve_v4_and_mapped(const struct args *a, struct sockaddr_in *s4, struct sockaddr_in6 *s6)
{
	struct addrinfo hints, *res = NULL;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_INET;
	hints.ai_socktype = SOCK_STREAM;
	int rc = getaddrinfo(a->host, a->port, &hints, &res);
	if (rc != 0)
		die("getaddrinfo(%s): %s", a->host, gai_strerror(rc));
	memcpy(s4, res->ai_addr, sizeof *s4);
	freeaddrinfo(res);
	memset(s6, 0, sizeof *s6);
	s6->sin6_family = AF_INET6;
	s6->sin6_port = s4->sin_port;
	s6->sin6_addr.s6_addr[10] = 0xff;
	s6->sin6_addr.s6_addr[11] = 0xff;
	memcpy(&s6->sin6_addr.s6_addr[12], &s4->sin_addr, 4);
}

/* A blocking TCP connection to the first address of HOST that accepts. */
CT_FN int connect_blocking(const struct args *a)
{
	struct addrinfo *res = resolve(a), *ai;
	int fd = -1, last_errno = 0;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
		if (fd < 0) {
			last_errno = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		last_errno = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		errno = last_errno;
		die("connect %s:%s:", a->host, a->port);
	}
	return fd;
}

/* "ip:port" (IPv6 as [ip]:port) of a socket address. */
CT_FN void format_sockaddr(const struct sockaddr_storage *ss, char *out, size_t cap)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
		snprintf(out, cap, "%s:%u", ip, ntohs(s4->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
		snprintf(out, cap, "[%s]:%u", ip, ntohs(s6->sin6_port));
	} else {
		snprintf(out, cap, "family-%d", ss->ss_family);
	}
}

/* ---- request text ---------------------------------------------------------- */

/* The Host header value: the port is included unless it is 80. */
CT_FN void host_header(const struct args *a, char *out, size_t cap)
{
	if (strcmp(a->port, "80") == 0)
		snprintf(out, cap, "%s", a->host);
	else
		snprintf(out, cap, "%s:%s", a->host, a->port);
}

/*
 * Format a complete request head (and body) into a malloc'd buffer.
 * extra_headers: zero or more complete "Name: value\r\n" lines, may be NULL.
 */
CT_FN char *build_request(const struct args *a, const char *method, const char *path,
			   const char *extra_headers, const char *body, size_t body_len,
			   size_t *out_len)
{
	char host[512];
	host_header(a, host, sizeof host);
	char cl[64] = "";
	if (body)
		snprintf(cl, sizeof cl, "Content-Length: %zu\r\n", body_len);
	char *head = NULL;
	int n = asprintf(&head,
			 "%s %s HTTP/1.1\r\n"
			 "Host: %s\r\n"
			 "User-Agent: lunar-ctest/%s\r\n"
			 "Accept: */*\r\n"
			 "X-Ctest: %s\r\n"
			 "%s%s"
			 "\r\n",
			 method, path, host, g_prog, g_prog, cl, extra_headers ? extra_headers : "");
	if (n < 0)
		die("asprintf failed");
	size_t total = (size_t)n + (body ? body_len : 0);
	char *req = malloc(total + 1);
	if (!req)
		die("out of memory");
	memcpy(req, head, (size_t)n);
	if (body)
		memcpy(req + n, body, body_len);
	req[total] = '\0';
	free(head);
	*out_len = total;
	return req;
}

/* A GET of a->path with `headers` (lines ending CRLF, may be "") and one X-Pad header
 * that makes it exactly `want` bytes: the library's test build keys its pauses on sizes
 * (src/race_probe.rs). */
CT_FN char *padded_request(const struct args *a, const char *headers, size_t want)
{
	size_t len;
	free(build_request(a, "GET", a->path, headers, NULL, 0, &len));
	const char *name = "X-Pad: ";
	size_t pad = want - len - strlen(name) - 2;
	char *extra = malloc(strlen(headers) + strlen(name) + pad + 3);
	if (!extra)
		die("out of memory");
	int k = sprintf(extra, "%s%s", headers, name);
	memset(extra + k, 'p', pad);
	memcpy(extra + k + pad, "\r\n", 3);
	char *req = build_request(a, "GET", a->path, extra, NULL, 0, &len);
	free(extra);
	if (len != want)
		die("the request is %zu bytes, not %zu", len, want);
	return req;
}

/* Right after the program closed `fd`: a socketpair whose first end must take the same
 * number back, its other end watched for `ms`. Returns 1 when bytes arrived on the
 * number's new owner (noted on stderr), 0 when nothing did. */
CT_FN int bytes_reach_the_reused_number(int fd, int ms)
{
	int pair[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0)
		die("socketpair:");
	if (pair[0] != fd)
		die("fd %d not reused (socketpair got %d, %d)", fd, pair[0], pair[1]);
	struct pollfd watch = {.fd = pair[1], .events = POLLIN};
	char buf[4096];
	if (poll(&watch, 1, ms) > 0) {
		ssize_t got = recv(pair[1], buf, sizeof buf - 1, MSG_DONTWAIT);
		buf[got > 0 ? got : 0] = '\0';
		note("%zd bytes arrived on the reused fd %d: %.200s", got, fd, buf);
		return 1;
	}
	note("nothing arrived on the reused fd %d", fd);
	return 0;
}

/* write() until everything is out (blocking socket). */
CT_FN void write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("write:");
		}
		if (n == 0)
			die("write returned 0");
		p += n;
		len -= (size_t)n;
	}
}

/* A connection (blocking connect) that sent a GET padded to exactly `want` bytes
 * (`padded_request`) in one write, then made non-blocking for what follows. */
CT_FN int send_padded_then_nonblocking(const struct args *a, size_t want)
{
	int fd = connect_blocking(a);
	char *request = padded_request(a, "", want);
	write_all(fd, request, want);
	free(request);
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0)
		die("fcntl:");
	return fd;
}

/* ---- response parsing ------------------------------------------------------ */

/* Bytes received and not yet consumed by a parsed response. */
struct rbuf {
	char *data;
	size_t len;
	size_t cap;
};

struct response {
	int status;
	char *head; /* NUL-terminated copy of the head (status line + headers) */
	char *body; /* malloc'd, NUL-terminated (the NUL is not part of body_len) */
	size_t body_len;
};

CT_FN void rbuf_reserve(struct rbuf *rb, size_t extra)
{
	if (rb->len + extra <= rb->cap)
		return;
	size_t cap = rb->cap ? rb->cap : 16384;
	while (cap < rb->len + extra)
		cap *= 2;
	char *d = realloc(rb->data, cap);
	if (!d)
		die("out of memory");
	rb->data = d;
	rb->cap = cap;
}

CT_FN void rbuf_consume(struct rbuf *rb, size_t n)
{
	memmove(rb->data, rb->data + n, rb->len - n);
	rb->len -= n;
}

CT_FN const char *memfind(const char *hay, size_t hlen, const char *needle)
{
	size_t nlen = strlen(needle);
	if (nlen > hlen)
		return NULL;
	for (size_t i = 0; i + nlen <= hlen; i++)
		if (memcmp(hay + i, needle, nlen) == 0)
			return hay + i;
	return NULL;
}

/* Value of header NAME in a NUL-terminated head (case-insensitive), or NULL. */
CT_FN const char *find_header(const char *head, const char *name, char *out, size_t cap)
{
	size_t nlen = strlen(name);
	const char *line = strstr(head, "\r\n");
	while (line) {
		line += 2;
		if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
			const char *v = line + nlen + 1;
			while (*v == ' ' || *v == '\t')
				v++;
			const char *end = strstr(v, "\r\n");
			size_t vlen = end ? (size_t)(end - v) : strlen(v);
			while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
				vlen--;
			if (vlen >= cap)
				vlen = cap - 1;
			memcpy(out, v, vlen);
			out[vlen] = '\0';
			return out;
		}
		line = strstr(line, "\r\n");
	}
	return NULL;
}

/* Decode a complete chunked body starting at p; returns bytes used or 0 if incomplete. */
CT_FN size_t parse_chunked(const char *p, size_t avail, struct response *r)
{
	size_t off = 0, out = 0;
	char *body = malloc(avail + 1);
	if (!body)
		die("out of memory");
	for (;;) {
		const char *eol = memfind(p + off, avail - off, "\r\n");
		if (!eol)
			goto incomplete;
		char *end;
		unsigned long sz = strtoul(p + off, &end, 16);
		if (end == p + off)
			die("bad chunk size line");
		off = (size_t)(eol - p) + 2;
		if (sz == 0) {
			/* trailers end with an empty line */
			for (;;) {
				const char *t = memfind(p + off, avail - off, "\r\n");
				if (!t)
					goto incomplete;
				size_t tl = (size_t)(t - (p + off));
				off += tl + 2;
				if (tl == 0)
					break;
			}
			body[out] = '\0';
			r->body = body;
			r->body_len = out;
			return off;
		}
		if (avail - off < sz + 2)
			goto incomplete;
		memcpy(body + out, p + off, sz);
		out += sz;
		off += sz + 2;
	}
incomplete:
	free(body);
	return 0;
}

/*
 * Try to parse one complete response from the front of rb. Returns 1 and consumes
 * it when complete, 0 when more bytes are needed. 1xx interim responses are skipped.
 */
CT_FN int try_parse_response(struct rbuf *rb, struct response *r)
{
	for (;;) {
		const char *hend = memfind(rb->data, rb->len, "\r\n\r\n");
		if (!hend)
			return 0;
		size_t head_len = (size_t)(hend - rb->data) + 4;
		if (rb->len < 12 || memcmp(rb->data, "HTTP/1.", 7) != 0)
			die("response does not start with an HTTP/1.x status line");
		int status = atoi(rb->data + 9);
		if (status >= 100 && status < 200 && status != 101) {
			rbuf_consume(rb, head_len);
			continue;
		}
		char *head = malloc(head_len + 1);
		if (!head)
			die("out of memory");
		memcpy(head, rb->data, head_len);
		head[head_len] = '\0';

		char val[256];
		size_t used;
		if (find_header(head, "Transfer-Encoding", val, sizeof val) &&
		    strcasestr(val, "chunked")) {
			size_t n = parse_chunked(rb->data + head_len, rb->len - head_len, r);
			if (n == 0) {
				free(head);
				return 0;
			}
			used = head_len + n;
		} else {
			if (!find_header(head, "Content-Length", val, sizeof val))
				die("response has neither Content-Length nor chunked framing");
			size_t cl = strtoull(val, NULL, 10);
			if (rb->len - head_len < cl) {
				free(head);
				return 0;
			}
			r->body = malloc(cl + 1);
			if (!r->body)
				die("out of memory");
			memcpy(r->body, rb->data + head_len, cl);
			r->body[cl] = '\0';
			r->body_len = cl;
			used = head_len + cl;
		}
		r->status = status;
		r->head = head;
		rbuf_consume(rb, used);
		return 1;
	}
}

/*
 * One read from fd into (buf, n) with the program's chosen entry point.
 * Returns like read(2). ctx is for the program's own use.
 */
typedef ssize_t (*read_fn)(int fd, void *buf, size_t n, void *ctx);

CT_FN ssize_t plain_read(int fd, void *buf, size_t n, void *ctx)
{
	(void)ctx;
	return read(fd, buf, n);
}

/* Read until one complete response is parsed (blocking socket). */
CT_FN void read_response(int fd, struct rbuf *rb, struct response *r, read_fn fn, void *ctx)
{
	memset(r, 0, sizeof *r);
	while (!try_parse_response(rb, r)) {
		rbuf_reserve(rb, 16384);
		ssize_t n = fn(fd, rb->data + rb->len, rb->cap - rb->len, ctx);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("read:");
		}
		if (n == 0)
			die("EOF after %zu bytes, before a complete response", rb->len);
		rb->len += (size_t)n;
	}
}

CT_FN void free_response(struct response *r)
{
	free(r->head);
	free(r->body);
	memset(r, 0, sizeof *r);
}

/* Print the body, report on stderr, and return the exit status for this response. */
CT_FN int finish_response(const struct response *r)
{
	fwrite(r->body, 1, r->body_len, stdout);
	fflush(stdout);
	note("status=%d body_len=%zu", r->status, r->body_len);
	return r->status == 200 ? 0 : 1;
}

/* One response of several on a connection: its body printed on a line of its own, its
 * status noted as answer `i`'s. Returns 1 unless the status is 200. */
CT_FN int read_and_print_answer(int fd, struct rbuf *rb, int i)
{
	struct response r;
	read_response(fd, rb, &r, plain_read, NULL);
	fwrite(r.body, 1, r.body_len, stdout);
	if (r.body_len == 0 || r.body[r.body_len - 1] != '\n')
		fputc('\n', stdout);
	fflush(stdout);
	note("answer %d: status=%d", i, r.status);
	int failed = r.status != 200;
	free_response(&r);
	return failed;
}

/* One read(2) of exactly `n` bytes' room into rb (EINTR retried), the size the library's
 * test build recognises (src/guard.rs); an error or an EOF ends the program. */
CT_FN void read_once_into(int fd, struct rbuf *rb, size_t n, int after_answer)
{
	rbuf_reserve(rb, n);
	ssize_t got;
	do
		got = read(fd, rb->data + rb->len, n);
	while (got < 0 && errno == EINTR);
	if (got < 0)
		die("read:");
	if (got == 0)
		die("EOF after answer %d", after_answer);
	rb->len += (size_t)got;
}

/* Simple single-request flow: request already written, read with fn, print, exit code. */
CT_FN int read_and_finish(int fd, read_fn fn, void *ctx)
{
	struct rbuf rb = {0};
	struct response r;
	read_response(fd, &rb, &r, fn, ctx);
	int rc = finish_response(&r);
	free_response(&r);
	free(rb.data);
	return rc;
}

/* A plain GET of a->path on fd, its answer read and printed (read_and_finish); closes fd. */
CT_FN int get_and_finish(const struct args *a, int fd)
{
	size_t len;
	char *req = build_request(a, "GET", a->path, NULL, NULL, 0, &len);
	write_all(fd, req, len);
	free(req);
	int rc = read_and_finish(fd, plain_read, NULL);
	close(fd);
	return rc;
}

#endif
