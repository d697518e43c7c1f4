/* The floor for the wrk rows of `make bench` (issue "cost at the floor"): the least a
 * preload that diverts HTTP to Lunar Proxy does per connection and per request, with
 * nothing of what makes the library safe. A connect to port 80 goes to the proxy
 * (LUNAR_PROXY_HOST, resolved once); each write on such a socket that starts with a
 * request line gets Lunar's four lines after it (x-lunar-host from the Host header, the
 * scheme, the interceptor, a fresh request id), sent with one writev. It does not parse
 * heads or responses, keep copies for a replay, route per request, fail over, or handle
 * a request split over several writes: wrk writes each request whole. Built with -O2
 * -fPIC -fvisibility=hidden, as a C library would be. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static unsigned char diverted[65536];
static struct sockaddr_storage proxy;
static socklen_t proxy_len;

#define REAL(ret, name, params) \
	static ret (*real_##name) params; \
	static ret (*get_##name(void)) params \
	{ \
		if (!real_##name) \
			real_##name = (ret (*) params)dlsym(RTLD_NEXT, #name); \
		return real_##name; \
	}
REAL(int, connect, (int, const struct sockaddr *, socklen_t))
REAL(ssize_t, write, (int, const void *, size_t))
REAL(ssize_t, writev, (int, const struct iovec *, int))
REAL(int, close, (int))

static int resolve_proxy(void)
{
	const char *host = getenv("LUNAR_PROXY_HOST");
	char name[256], *colon;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *found;
	if (!host || strlen(host) >= sizeof name)
		return -1;
	strcpy(name, host);
	if (!(colon = strrchr(name, ':')))
		return -1;
	*colon = 0;
	if (getaddrinfo(name, colon + 1, &hints, &found) != 0)
		return -1;
	memcpy(&proxy, found->ai_addr, found->ai_addrlen);
	proxy_len = found->ai_addrlen;
	freeaddrinfo(found);
	return 0;
}

__attribute__((visibility("default"))) int connect(int fd, const struct sockaddr *to, socklen_t len)
{
	if (to && to->sa_family == AF_INET && ntohs(((const struct sockaddr_in *)to)->sin_port) == 80 &&
	    (unsigned)fd < 65536 && (proxy_len || resolve_proxy() == 0)) {
		diverted[fd] = 1;
		return get_connect()(fd, (const struct sockaddr *)&proxy, proxy_len);
	}
	return get_connect()(fd, to, len);
}

static const char hex[] = "0123456789abcdef";
#define PUT(p, literal) mempcpy((p), (literal), sizeof(literal) - 1)

__attribute__((visibility("default"))) ssize_t write(int fd, const void *buf, size_t n)
{
	const char *bytes = buf, *line_end, *host, *host_end;
	char lines[512], *p = lines;
	static uint64_t state = 0x9e3779b97f4a7c15u;
	if ((unsigned)fd >= 65536 || !diverted[fd] || n < 16 || memcmp(bytes + n - 4, "\r\n\r\n", 4) != 0)
		return get_write()(fd, buf, n);
	line_end = memmem(bytes, n, "\r\n", 2);
	host = memmem(bytes, n, "\r\nHost: ", 8);
	if (!line_end || !host)
		return get_write()(fd, buf, n);
	host += 8;
	host_end = memmem(host, n - (host - bytes), "\r\n", 2);
	if (host_end - host > 200)
		return get_write()(fd, buf, n);
	p = PUT(p, "x-lunar-host: ");
	p = mempcpy(p, host, host_end - host);
	p = PUT(p, "\r\nx-lunar-scheme: http\r\nx-lunar-interceptor: floor/0\r\nx-lunar-req-id: ");
	for (int i = 0; i < 32; i++) {
		state ^= state << 13, state ^= state >> 7, state ^= state << 17;
		*p++ = hex[state & 15];
	}
	p = PUT(p, "\r\n");
	struct iovec parts[3] = {
		{ (void *)bytes, line_end + 2 - bytes },
		{ lines, p - lines },
		{ (void *)(line_end + 2), n - (line_end + 2 - bytes) },
	};
	ssize_t sent = get_writev()(fd, parts, 3);
	return sent < 0 ? sent : (ssize_t)n;
}

__attribute__((visibility("default"))) int close(int fd)
{
	if ((unsigned)fd < 65536)
		diverted[fd] = 0;
	return get_close()(fd);
}
