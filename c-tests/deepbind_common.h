/* Shared by tls_deepbind.c and tls_deepbind_gnutls.c: a TLS library dlopen'ed with
 * RTLD_DEEPBIND before the program connects itself, its functions taken with dlsym.
 * Usage of both: PROG HOST PORT PATH CAFILE; the answer's body goes to stdout. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *g_prog;
static void *g_lib;

static void *sym(const char *name)
{
	void *f = dlsym(g_lib, name);
	if (!f) {
		fprintf(stderr, "%s: no %s\n", g_prog, name);
		exit(2);
	}
	return f;
}

struct deepbind_args {
	const char *host, *port, *path, *cafile;
};

/* Loads `library` with RTLD_DEEPBIND, then connects to HOST:PORT; returns the fd. */
static int deepbind_start(int argc, char **argv, const char *library, struct deepbind_args *a)
{
	g_prog = argv[0];
	if (argc != 5) {
		fprintf(stderr, "usage: %s HOST PORT PATH CAFILE\n", g_prog);
		exit(2);
	}
	*a = (struct deepbind_args){argv[1], argv[2], argv[3], argv[4]};
	g_lib = dlopen(library, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
	if (!g_lib) {
		fprintf(stderr, "%s: %s\n", g_prog, dlerror());
		exit(2);
	}
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
	if (getaddrinfo(a->host, a->port, &hints, &ai) != 0)
		exit(2);
	int fd = socket(ai->ai_family, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
		perror("connect");
		exit(2);
	}
	return fd;
}

/* The GET of PATH into `req`; returns its length. */
static int write_get_request(char *req, size_t size, const struct deepbind_args *a)
{
	return snprintf(req, size, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", a->path, a->host);
}

/* The whole answer (the server closes) is in `all`: a 200 prints its body, returns 0. */
static int print_body(const char *all, size_t total)
{
	const char *body = memmem(all, total, "\r\n\r\n", 4);
	if (total < 12 || memcmp(all, "HTTP/1.1 200", 12) != 0 || !body) {
		fprintf(stderr, "%s: no 200 answer (%zu bytes)\n", g_prog, total);
		return 1;
	}
	body += 4;
	fwrite(body, 1, total - (size_t)(body - all), stdout);
	return 0;
}
