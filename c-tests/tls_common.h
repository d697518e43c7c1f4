/*
 * Shared by the tls_* programs: `prog HOST PORT PATH CAFILE`.
 *
 * Each program opens one TLS connection to HOST:PORT with its own TLS library and
 * call pattern, verifies the server's certificate against CAFILE and the host name,
 * then sends on that one connection a GET of PATH and a POST of TLS_POST_BYTES
 * bytes (0..250 repeated, like the lab origin's /bytes/N) and prints both response
 * bodies (the origin's JSON echo), separated by an empty line. On stderr, one line
 * per response: status, body length and body sha256.
 *
 * Exit status: 0 both answers 200; 1 another status; 2 any other error;
 * 3 the server's certificate did not verify (message on stderr).
 */
#ifndef CTEST_TLS_COMMON_H
#define CTEST_TLS_COMMON_H

#include "common.h"

#ifndef TLS_POST_BYTES
#define TLS_POST_BYTES 100000
#endif
#define EXIT_VERIFY 3

/* Plaintext I/O over the program's TLS session. read: like read(2), 0 at EOF;
 * errors end the program inside the function. */
struct tls_io {
	void (*write_all)(void *ctx, const char *buf, size_t len);
	read_fn read;
	void *ctx;
};

__attribute__((format(printf, 1, 2), noreturn)) CT_FN void verify_failed(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: certificate verification failed: ", g_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(EXIT_VERIFY);
}

CT_FN const char *tls_init(int argc, char **argv, struct args *a)
{
	if (argc < 5) {
		fprintf(stderr, "usage: %s HOST PORT PATH CAFILE\n", argv[0]);
		exit(2);
	}
	ctest_init(argc, argv, a);
	return argv[4];
}

#ifdef TLS_GNUTLS
#include <gnutls/crypto.h>
CT_FN void sha256_hex(const void *p, size_t n, char out[65])
{
	unsigned char md[32];
	if (gnutls_hash_fast(GNUTLS_DIG_SHA256, p, n, md) < 0)
		die("gnutls_hash_fast failed");
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", md[i]);
}
#else
#include <openssl/evp.h>
CT_FN void sha256_hex(const void *p, size_t n, char out[65])
{
	unsigned char md[32];
	if (!EVP_Digest(p, n, md, NULL, EVP_sha256(), NULL))
		die("EVP_Digest failed");
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", md[i]);
}
#endif

/* A request head (+ body); Host carries the port unless it is 443, as browsers do. */
CT_FN char *tls_request(const struct args *a, const char *method, const char *body,
			size_t body_len, size_t *out_len)
{
	char host[512], cl[128] = "";
	if (strcmp(a->port, "443") == 0)
		snprintf(host, sizeof host, "%s", a->host);
	else
		snprintf(host, sizeof host, "%s:%s", a->host, a->port);
	if (body)
		snprintf(cl, sizeof cl,
			 "Content-Type: application/octet-stream\r\nContent-Length: %zu\r\n", body_len);
	char *head = NULL;
	int n = asprintf(&head,
			 "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: lunar-ctest/%s\r\n"
			 "Accept: */*\r\nX-Ctest: %s\r\n%s\r\n",
			 method, a->path, host, g_prog, g_prog, cl);
	if (n < 0)
		die("asprintf failed");
	char *req = malloc((size_t)n + body_len);
	if (!req)
		die("out of memory");
	memcpy(req, head, (size_t)n);
	if (body)
		memcpy(req + n, body, body_len);
	free(head);
	*out_len = (size_t)n + (body ? body_len : 0);
	return req;
}

/* GET PATH, then POST PATH with TLS_POST_BYTES bytes, on the one connection. */
CT_FN int tls_requests(const struct args *a, struct tls_io *io)
{
	char *body = malloc(TLS_POST_BYTES);
	if (!body)
		die("out of memory");
	for (size_t i = 0; i < TLS_POST_BYTES; i++)
		body[i] = (char)(i % 251);
	struct rbuf rb = {0};
	int rc = 0;
	for (int i = 0; i < 2; i++) {
		size_t len;
		char *req = i == 0 ? tls_request(a, "GET", NULL, 0, &len)
				   : tls_request(a, "POST", body, TLS_POST_BYTES, &len);
		io->write_all(io->ctx, req, len);
		free(req);
		struct response r;
		read_response(-1, &rb, &r, io->read, io->ctx);
		if (i > 0)
			fputc('\n', stdout);
		char hex[65];
		sha256_hex(r.body, r.body_len, hex);
		if (finish_response(&r) != 0)
			rc = 1;
		note("body_sha256=%s", hex);
		free_response(&r);
	}
	free(body);
	free(rb.data);
	return rc;
}

#endif
