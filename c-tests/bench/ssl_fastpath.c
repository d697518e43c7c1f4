/* The cost of the library on TLS sessions it does not handle: N calls each of
 * SSL_pending, SSL_get_error and SSL_get_verify_result on an SSL that never connected
 * (no I/O, so callgrind counts only user-space instructions: libssl's and ours).
 * Run under `valgrind --tool=callgrind` with and without LD_PRELOAD; the difference
 * divided by the number of calls is what a hook adds to a call on a session it leaves
 * alone. Usage: ssl_fastpath [N] */
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl = ctx ? SSL_new(ctx) : NULL;
	if (!ssl) {
		fprintf(stderr, "ssl_fastpath: setup failed\n");
		return 1;
	}
	long odd = 0;
	for (long i = 0; i < n; i++) {
		odd += SSL_pending(ssl) != 0;
		odd += SSL_get_error(ssl, 1) != SSL_ERROR_NONE;
		odd += SSL_get_verify_result(ssl) != X509_V_OK;
	}
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	printf("%ld rounds of SSL_pending+SSL_get_error+SSL_get_verify_result, %ld unexpected results\n", n, odd);
	return odd != 0;
}
