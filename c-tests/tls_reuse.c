/* One SSL object for two connections, as a program that keeps its SSL objects does
 * (`openssl s_client -reconnect`): the tls_socket_bio pattern on HOST:PORT, then
 * SSL_shutdown and close, the object reset (MODE `clear`: SSL_clear; `connect_state`:
 * SSL_set_connect_state, the object kept as it is), and the same on HOST:SECOND_PORT
 * with a new socket. Each connection gets its own handshake, verified, and its two
 * answers.  usage: tls_reuse HOST PORT PATH CAFILE SECOND_PORT MODE */
#include "tls_openssl.h"

static int one_connection(SSL *ssl, struct args *a)
{
	int fd = connect_blocking(a);
	connect_over_fd(ssl, fd, a->host);
	struct tls_io io = {ssl_write_all, ssl_read_some, ssl};
	int rc = tls_requests(a, &io);
	SSL_shutdown(ssl);
	close(fd);
	return rc;
}

int main(int argc, char **argv)
{
	struct args a;
	const char *cafile = tls_init(argc, argv, &a);
	if (argc < 7)
		die("usage: %s HOST PORT PATH CAFILE SECOND_PORT clear|connect_state", argv[0]);
	SSL_CTX *ctx = client_ctx(cafile);
	SSL *ssl = SSL_new(ctx);
	if (!ssl)
		die("SSL_new: %s", ssl_errstr());
	int rc = one_connection(ssl, &a);
	if (strcmp(argv[6], "clear") == 0) {
		if (SSL_clear(ssl) != 1)
			die("SSL_clear: %s", ssl_errstr());
	} else {
		SSL_set_connect_state(ssl);
	}
	fputc('\n', stdout);
	struct args second = a;
	second.port = argv[5];
	rc |= one_connection(ssl, &second);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	return rc;
}
