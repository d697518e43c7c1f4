/* OpenSSL helpers shared by the tls_* OpenSSL programs (see tls_common.h). */
#ifndef CTEST_TLS_OPENSSL_H
#define CTEST_TLS_OPENSSL_H

#include "tls_common.h"
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* The oldest queued OpenSSL error, for messages. */
CT_FN const char *ssl_errstr(void)
{
	static char buf[256];
	unsigned long e = ERR_get_error();
	if (!e)
		return "no OpenSSL error queued";
	ERR_error_string_n(e, buf, sizeof buf);
	return buf;
}

/* A client context that verifies the peer against cafile only. */
CT_FN SSL_CTX *client_ctx(const char *cafile)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx)
		die("SSL_CTX_new: %s", ssl_errstr());
	if (SSL_CTX_load_verify_locations(ctx, cafile, NULL) != 1)
		die("cannot load CA file %s: %s", cafile, ssl_errstr());
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	return ctx;
}

/* A handshake that failed: a verification failure exits 3, anything else 2. */
__attribute__((noreturn)) CT_FN void handshake_failed(SSL *ssl, int ret)
{
	long v = SSL_get_verify_result(ssl);
	if (v != X509_V_OK)
		verify_failed("%s (%ld)", X509_verify_cert_error_string(v), v);
	die("TLS handshake failed: SSL_get_error=%d: %s", SSL_get_error(ssl, ret), ssl_errstr());
}

/* SSL_read/SSL_write failed. A session whose verification failed (a library may
 * make the real handshake late, inside a read) exits 3, anything else 2. */
__attribute__((noreturn)) CT_FN void io_failed(SSL *ssl, int ret, const char *what)
{
	int err = SSL_get_error(ssl, ret);
	long v = SSL_get_verify_result(ssl);
	if (v != X509_V_OK)
		verify_failed("%s: %s (%ld)", what, X509_verify_cert_error_string(v), v);
	if (ERR_GET_REASON(ERR_peek_error()) == SSL_R_CERTIFICATE_VERIFY_FAILED)
		verify_failed("%s: %s", what, ssl_errstr());
	die("%s: SSL_get_error=%d: %s", what, err, ssl_errstr());
}

/* After the handshake, as curl does: a certificate must be there and verified. */
CT_FN void check_peer(SSL *ssl)
{
	X509 *peer = SSL_get1_peer_certificate(ssl);
	if (!peer)
		verify_failed("the server sent no certificate");
	X509_free(peer);
	long v = SSL_get_verify_result(ssl);
	if (v != X509_V_OK)
		verify_failed("%s (%ld)", X509_verify_cert_error_string(v), v);
	note("TLS ok: %s %s", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
}

/* SSL_set_fd, SNI and SSL_set1_host (the name checked inside the handshake), then
 * SSL_connect and check_peer: the handshake of a blocking socket, as Python's ssl and
 * Perl's Net::SSLeay make it. */
CT_FN void connect_over_fd(SSL *ssl, int fd, const char *host)
{
	if (SSL_set_fd(ssl, fd) != 1)
		die("SSL_set_fd: %s", ssl_errstr());
	SSL_set_tlsext_host_name(ssl, host);
	if (SSL_set1_host(ssl, host) != 1)
		die("SSL_set1_host: %s", ssl_errstr());
	int ret = SSL_connect(ssl);
	if (ret != 1)
		handshake_failed(ssl, ret);
	check_peer(ssl);
}

/* SSL_write / SSL_read on a blocking session (tls_io callbacks). */
CT_FN void ssl_write_all(void *ctx, const char *buf, size_t len)
{
	SSL *ssl = ctx;
	while (len > 0) {
		int n = SSL_write(ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
		if (n <= 0)
			io_failed(ssl, n, "SSL_write");
		buf += n;
		len -= (size_t)n;
	}
}

CT_FN ssize_t ssl_read_some(int fd, void *buf, size_t n, void *ctx)
{
	(void)fd;
	SSL *ssl = ctx;
	int r = SSL_read(ssl, buf, n > INT32_MAX ? INT32_MAX : (int)n);
	if (r > 0)
		return r;
	int err = SSL_get_error(ssl, r);
	if (err == SSL_ERROR_ZERO_RETURN)
		return 0;
	io_failed(ssl, r, "SSL_read");
}

#endif
