/* GnuTLS loaded with dlopen(RTLD_DEEPBIND) before the connect, used through dlsym: its
 * default transport then binds send/recv straight to libc, past any preload, so the
 * library must not divert this https. The program connects itself, then does TLS on the
 * fd, verifying the certificate against CAFILE for HOST; prints the answer's body.
 * Usage: tls_deepbind_gnutls HOST PORT PATH CAFILE */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void *lib;

static void *sym(const char *name)
{
	void *f = dlsym(lib, name);
	if (!f) {
		fprintf(stderr, "tls_deepbind_gnutls: no %s\n", name);
		exit(2);
	}
	return f;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: tls_deepbind_gnutls HOST PORT PATH CAFILE\n");
		return 2;
	}
	const char *host = argv[1], *port = argv[2], *path = argv[3], *cafile = argv[4];
	lib = dlopen("libgnutls.so.30", RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
	if (!lib) {
		fprintf(stderr, "tls_deepbind_gnutls: %s\n", dlerror());
		return 2;
	}
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
	if (getaddrinfo(host, port, &hints, &ai) != 0)
		return 2;
	int fd = socket(ai->ai_family, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
		perror("tls_deepbind_gnutls: connect");
		return 2;
	}
	void *cred, *session;
	((int (*)(void **))sym("gnutls_certificate_allocate_credentials"))(&cred);
	if (((int (*)(void *, const char *, int))sym("gnutls_certificate_set_x509_trust_file"))(cred, cafile, 1 /* PEM */) <= 0)
		return 2;
	((int (*)(void **, unsigned))sym("gnutls_init"))(&session, 1u << 1 /* GNUTLS_CLIENT */);
	((int (*)(void *))sym("gnutls_set_default_priority"))(session);
	((int (*)(void *, int, void *))sym("gnutls_credentials_set"))(session, 1 /* CERTIFICATE */, cred);
	((int (*)(void *, int, const void *, size_t))sym("gnutls_server_name_set"))(session, 1 /* DNS */, host, strlen(host));
	((void (*)(void *, const char *, unsigned))sym("gnutls_session_set_verify_cert"))(session, host, 0);
	((void (*)(void *, int, int))sym("gnutls_transport_set_int2"))(session, fd, fd);
	int rc;
	do
		rc = ((int (*)(void *))sym("gnutls_handshake"))(session);
	while (rc < 0 && !((int (*)(int))sym("gnutls_error_is_fatal"))(rc));
	if (rc < 0) {
		fprintf(stderr, "tls_deepbind_gnutls: handshake failed: %d\n", rc);
		return 3;
	}
	char req[512];
	int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, host);
	if (((long (*)(void *, const void *, size_t))sym("gnutls_record_send"))(session, req, (size_t)n) != n)
		return 1;
	static char all[1 << 20];
	size_t total = 0;
	long got;
	long (*recv_fn)(void *, void *, size_t) = (long (*)(void *, void *, size_t))sym("gnutls_record_recv");
	int (*is_fatal)(int) = (int (*)(int))sym("gnutls_error_is_fatal");
	while (total < sizeof all) {
		got = recv_fn(session, all + total, sizeof all - total);
		if (got > 0)
			total += (size_t)got;
		else if (got == 0 || is_fatal((int)got))
			break; /* the server closed (Connection: close), or an error */
	}
	char *body = memmem(all, total, "\r\n\r\n", 4);
	if (total < 12 || memcmp(all, "HTTP/1.1 200", 12) != 0 || !body) {
		fprintf(stderr, "tls_deepbind_gnutls: no 200 answer (%zu bytes)\n", total);
		return 1;
	}
	body += 4;
	fwrite(body, 1, total - (size_t)(body - all), stdout);
	return 0;
}
