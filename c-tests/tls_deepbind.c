/* OpenSSL loaded with dlopen(RTLD_DEEPBIND) before the connect, used through dlsym:
 * libssl/libcrypto then bind write/read straight to libc, past any preload, so the
 * library must not divert this https (a ClientHello would reach the proxy unseen). The
 * program connects itself (the library sees that), then does TLS on the fd; it must get
 * its answer, with the certificate verified against CAFILE for HOST.
 * Usage: tls_deepbind HOST PORT PATH CAFILE */
#include "deepbind_common.h"

int main(int argc, char **argv)
{
	struct deepbind_args a;
	int fd = deepbind_start(argc, argv, "libssl.so.3", &a);
	void *ctx = ((void *(*)(const void *))sym("SSL_CTX_new"))(((const void *(*)(void))sym("TLS_client_method"))());
	((int (*)(void *, const char *, const char *))sym("SSL_CTX_load_verify_locations"))(ctx, a.cafile, NULL);
	((void (*)(void *, int, void *))sym("SSL_CTX_set_verify"))(ctx, 1 /* SSL_VERIFY_PEER */, NULL);
	void *ssl = ((void *(*)(void *))sym("SSL_new"))(ctx);
	((int (*)(void *, int))sym("SSL_set_fd"))(ssl, fd);
	((long (*)(void *, int, long, void *))sym("SSL_ctrl"))(ssl, 55, 0, (void *)a.host); /* SNI */
	((int (*)(void *, const char *))sym("SSL_set1_host"))(ssl, a.host);
	if (((int (*)(void *))sym("SSL_connect"))(ssl) != 1) {
		fprintf(stderr, "tls_deepbind: handshake failed\n");
		return 3;
	}
	char req[512];
	int n = write_get_request(req, sizeof req, &a);
	int (*ssl_write)(void *, const void *, int) = (int (*)(void *, const void *, int))sym("SSL_write");
	int (*ssl_read)(void *, void *, int) = (int (*)(void *, void *, int))sym("SSL_read");
	if (ssl_write(ssl, req, n) != n) {
		fprintf(stderr, "tls_deepbind: write failed\n");
		return 1;
	}
	static char all[1 << 20];
	size_t total = 0;
	int got;
	while (total < sizeof all && (got = ssl_read(ssl, all + total, (int)(sizeof all - total))) > 0)
		total += (size_t)got;
	return print_body(all, total);
}
