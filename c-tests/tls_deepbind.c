/* OpenSSL loaded with dlopen(RTLD_DEEPBIND) before the connect, used through dlsym:
 * libssl/libcrypto then bind write/read straight to libc, past any preload, so the
 * library must not divert this https (a ClientHello would reach the proxy unseen). The
 * program connects itself (the library sees that), then does TLS on the fd; it must get
 * its answer, with the certificate verified against CAFILE for HOST.
 * Usage: tls_deepbind HOST PORT PATH CAFILE */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef void *(*ptr_fn)();
static void *lib;

static void *sym(const char *name)
{
	void *f = dlsym(lib, name);
	if (!f) {
		fprintf(stderr, "tls_deepbind: no %s\n", name);
		exit(2);
	}
	return f;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: tls_deepbind HOST PORT PATH CAFILE\n");
		return 2;
	}
	const char *host = argv[1], *port = argv[2], *path = argv[3], *cafile = argv[4];
	lib = dlopen("libssl.so.3", RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
	if (!lib) {
		fprintf(stderr, "tls_deepbind: %s\n", dlerror());
		return 2;
	}
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
	if (getaddrinfo(host, port, &hints, &ai) != 0)
		return 2;
	int fd = socket(ai->ai_family, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
		perror("tls_deepbind: connect");
		return 2;
	}
	void *ctx = ((void *(*)(const void *))sym("SSL_CTX_new"))(((const void *(*)(void))sym("TLS_client_method"))());
	((int (*)(void *, const char *, const char *))sym("SSL_CTX_load_verify_locations"))(ctx, cafile, NULL);
	((void (*)(void *, int, void *))sym("SSL_CTX_set_verify"))(ctx, 1 /* SSL_VERIFY_PEER */, NULL);
	void *ssl = ((void *(*)(void *))sym("SSL_new"))(ctx);
	((int (*)(void *, int))sym("SSL_set_fd"))(ssl, fd);
	((long (*)(void *, int, long, void *))sym("SSL_ctrl"))(ssl, 55, 0, (void *)host); /* SNI */
	((int (*)(void *, const char *))sym("SSL_set1_host"))(ssl, host);
	if (((int (*)(void *))sym("SSL_connect"))(ssl) != 1) {
		fprintf(stderr, "tls_deepbind: handshake failed\n");
		return 3;
	}
	char req[512];
	int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, host);
	int (*ssl_write)(void *, const void *, int) = (int (*)(void *, const void *, int))sym("SSL_write");
	int (*ssl_read)(void *, void *, int) = (int (*)(void *, void *, int))sym("SSL_read");
	if (ssl_write(ssl, req, n) != n) {
		fprintf(stderr, "tls_deepbind: write failed\n");
		return 1;
	}
	/* the whole answer (the server closes), then its body on stdout */
	static char all[1 << 20];
	size_t total = 0;
	int got;
	while (total < sizeof all && (got = ssl_read(ssl, all + total, (int)(sizeof all - total))) > 0)
		total += (size_t)got;
	char *body = memmem(all, total, "\r\n\r\n", 4);
	if (total < 12 || memcmp(all, "HTTP/1.1 200", 12) != 0 || !body) {
		fprintf(stderr, "tls_deepbind: no 200 answer (%zu bytes)\n", total);
		return 1;
	}
	body += 4;
	fwrite(body, 1, total - (size_t)(body - all), stdout);
	return 0;
}
