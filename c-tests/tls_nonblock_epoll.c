/* OpenSSL on a non-blocking socket driven by epoll (level-triggered, EPOLL_CTL_MOD
 * to the wanted events, libuv style): connect -> EINPROGRESS, SO_ERROR, then
 * SSL_connect / SSL_write / SSL_read retried on SSL_get_error WANT_READ/WANT_WRITE.
 * SO_SNDBUF 16 KiB and a 2 MB POST body, so SSL_write meets WANT_WRITE.
 * See tls_common.h. */
#define TLS_POST_BYTES 2000000
#include "tls_openssl.h"
#include <sys/epoll.h>

static int g_ep, g_fd;
static unsigned g_waits_r, g_waits_w;

static void wait_for(unsigned events)
{
	struct epoll_event ev = {.events = events, .data.fd = g_fd}, out;
	if (epoll_ctl(g_ep, EPOLL_CTL_MOD, g_fd, &ev) < 0)
		die("epoll_ctl MOD:");
	for (;;) {
		int n = epoll_wait(g_ep, &out, 1, 20000);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("epoll_wait:");
		if (n == 0)
			die("timed out waiting for events 0x%x", events);
		return;
	}
}

/* Wait as SSL_get_error asks; any other error is fatal (verification: exit 3). */
static void wait_or_die(SSL *ssl, int ret, const char *what)
{
	int err = SSL_get_error(ssl, ret);
	if (err == SSL_ERROR_WANT_READ) {
		g_waits_r++;
		wait_for(EPOLLIN);
	} else if (err == SSL_ERROR_WANT_WRITE) {
		g_waits_w++;
		wait_for(EPOLLOUT);
	} else if (what == NULL) {
		handshake_failed(ssl, ret);
	} else {
		io_failed(ssl, ret, what);
	}
}

static void nb_write_all(void *ctx, const char *buf, size_t len)
{
	SSL *ssl = ctx;
	while (len > 0) {
		/* after WANT_WRITE, the same buffer and length again */
		int n = SSL_write(ssl, buf, len > 65536 ? 65536 : (int)len);
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
		} else {
			wait_or_die(ssl, n, "SSL_write");
		}
	}
}

static ssize_t nb_read(int fd, void *buf, size_t n, void *ctx)
{
	(void)fd;
	SSL *ssl = ctx;
	for (;;) {
		int r = SSL_read(ssl, buf, n > 65536 ? 65536 : (int)n);
		if (r > 0)
			return r;
		if (SSL_get_error(ssl, r) == SSL_ERROR_ZERO_RETURN)
			return 0;
		wait_or_die(ssl, r, "SSL_read");
	}
}

int main(int argc, char **argv)
{
	struct args a;
	const char *cafile = tls_init(argc, argv, &a);
	SSL_CTX *ctx = client_ctx(cafile);
	struct addrinfo *res = resolve(&a);
	g_fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (g_fd < 0)
		die("socket:");
	int sndbuf = 16384;
	if (setsockopt(g_fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf) < 0)
		die("setsockopt SO_SNDBUF:");
	g_ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = 0, .data.fd = g_fd};
	if (g_ep < 0 || epoll_ctl(g_ep, EPOLL_CTL_ADD, g_fd, &ev) < 0)
		die("epoll:");
	if (connect(g_fd, res->ai_addr, res->ai_addrlen) < 0) {
		if (errno != EINPROGRESS)
			die("connect:");
		wait_for(EPOLLOUT);
		int err = 0;
		socklen_t el = sizeof err;
		if (getsockopt(g_fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err != 0) {
			errno = err;
			die("connect (SO_ERROR):");
		}
	}
	freeaddrinfo(res);

	SSL *ssl = SSL_new(ctx);
	if (!ssl || SSL_set_fd(ssl, g_fd) != 1)
		die("SSL_new/SSL_set_fd: %s", ssl_errstr());
	SSL_set_tlsext_host_name(ssl, a.host);
	if (SSL_set1_host(ssl, a.host) != 1)
		die("SSL_set1_host: %s", ssl_errstr());
	int ret;
	while ((ret = SSL_connect(ssl)) != 1)
		wait_or_die(ssl, ret, NULL);
	check_peer(ssl);
	struct tls_io io = {nb_write_all, nb_read, ssl};
	int rc = tls_requests(&a, &io);
	note("waits: WANT_READ=%u WANT_WRITE=%u", g_waits_r, g_waits_w);
	SSL_shutdown(ssl); /* non-blocking: one attempt, as event loops do */
	SSL_free(ssl);
	close(g_ep);
	close(g_fd);
	SSL_CTX_free(ctx);
	return rc;
}
