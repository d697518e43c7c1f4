/* OpenSSL on a blocking socket attached with SSL_set_fd (Python's ssl, Perl's
 * Net::SSLeay): SNI and host name check set on the SSL (checked inside the
 * handshake), SSL_connect, SSL_write, SSL_read, SSL_shutdown. See tls_common.h. */
#include "tls_openssl.h"

int main(int argc, char **argv)
{
	struct args a;
	const char *cafile = tls_init(argc, argv, &a);
	SSL_CTX *ctx = client_ctx(cafile);
	int fd = connect_blocking(&a);
	SSL *ssl = SSL_new(ctx);
	if (!ssl)
		die("SSL_new: %s", ssl_errstr());
	connect_over_fd(ssl, fd, a.host);
	struct tls_io io = {ssl_write_all, ssl_read_some, ssl};
	int rc = tls_requests(&a, &io);
	SSL_shutdown(ssl);
	SSL_free(ssl);
	close(fd);
	SSL_CTX_free(ctx);
	return rc;
}
