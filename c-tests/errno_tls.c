/* errno is left alone by the TLS session calls that succeed: `errno_tls HOST PORT PATH
 * CAFILE`. OpenSSL on a blocking socket (SSL_set_fd, as Python and Perl): errno is set
 * to a sentinel before SSL_connect, SSL_get1_peer_certificate, SSL_get_verify_result,
 * SSL_write, SSL_pending, SSL_read (each call of the answer), SSL_get_error,
 * SSL_shutdown and SSL_free, and must hold it after each one that succeeded. Under the
 * library a diverted session is virtual, and these are answered by it. "ok NAME" or
 * "CHANGED NAME: …" on stderr, the body on stdout; exit 0 when the answer was 200 and
 * nothing changed errno, 4 when errno changed, else as in tls_common.h. */
#include "tls_openssl.h"

#define SENTINEL 4242

static int changed;

static void after(const char *name, int ok)
{
	int e = errno;
	if (!ok)
		die("%s failed: %s", name, ssl_errstr());
	if (e != SENTINEL) {
		note("CHANGED %s: errno %d -> %d (%s)", name, SENTINEL, e, strerror(e));
		changed = 1;
	} else {
		note("ok %s", name);
	}
}

static ssize_t checked_read(int fd, void *buf, size_t n, void *ctx)
{
	(void)fd;
	SSL *ssl = ctx;
	errno = SENTINEL;
	int r = SSL_read(ssl, buf, (int)n);
	after("SSL_read", r > 0);
	return r;
}

int main(int argc, char **argv)
{
	struct args a;
	const char *cafile = tls_init(argc, argv, &a);
	SSL_CTX *ctx = client_ctx(cafile);
	int fd = connect_blocking(&a);
	SSL *ssl = SSL_new(ctx);
	if (!ssl || SSL_set_fd(ssl, fd) != 1)
		die("SSL_new/SSL_set_fd: %s", ssl_errstr());
	SSL_set_tlsext_host_name(ssl, a.host);
	if (SSL_set1_host(ssl, a.host) != 1)
		die("SSL_set1_host: %s", ssl_errstr());
	errno = SENTINEL;
	int ret = SSL_connect(ssl);
	if (ret != 1)
		handshake_failed(ssl, ret);
	after("SSL_connect", 1);
	errno = SENTINEL;
	X509 *peer = SSL_get1_peer_certificate(ssl);
	after("SSL_get1_peer_certificate", peer != NULL);
	X509_free(peer);
	errno = SENTINEL;
	long v = SSL_get_verify_result(ssl);
	after("SSL_get_verify_result", v == X509_V_OK);

	size_t len;
	char *req = tls_request(&a, "GET", NULL, 0, &len);
	errno = SENTINEL;
	int n = SSL_write(ssl, req, (int)len);
	after("SSL_write", n == (int)len);
	free(req);
	errno = SENTINEL;
	int pending = SSL_pending(ssl);
	after("SSL_pending", pending >= 0);
	errno = SENTINEL;
	int err = SSL_get_error(ssl, n);
	after("SSL_get_error", err == SSL_ERROR_NONE);
	struct rbuf rb = {0};
	struct response r;
	read_response(-1, &rb, &r, checked_read, ssl);
	int rc = finish_response(&r);
	free_response(&r);
	free(rb.data);
	errno = SENTINEL;
	ret = SSL_shutdown(ssl);
	after("SSL_shutdown", ret >= 0);
	errno = SENTINEL;
	SSL_free(ssl);
	after("SSL_free", 1);
	close(fd);
	SSL_CTX_free(ctx);
	if (rc)
		return rc;
	return changed ? 4 : 0;
}
