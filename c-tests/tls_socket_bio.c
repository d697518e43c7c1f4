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
	if (!ssl || SSL_set_fd(ssl, fd) != 1)
		die("SSL_new/SSL_set_fd: %s", ssl_errstr());
	SSL_set_tlsext_host_name(ssl, a.host);
	if (SSL_set1_host(ssl, a.host) != 1)
		die("SSL_set1_host: %s", ssl_errstr());
	int ret = SSL_connect(ssl);
	if (ret != 1)
		handshake_failed(ssl, ret);
	check_peer(ssl);
	struct tls_io io = {ssl_write_all, ssl_read_some, ssl};
	int rc = tls_requests(&a, &io);
	SSL_shutdown(ssl);
	SSL_free(ssl);
	close(fd);
	SSL_CTX_free(ctx);
	return rc;
}
