/* A thread blocked in SSL_read (built with -DTLS_GNUTLS: gnutls_record_recv) on a
 * diverted https connection (a virtual session: the library answers the program's
 * handshake, the proxy's plaintext answer is awaited) is cancelled (pthread_cancel): it
 * ends as a cancelled thread, its cleanup handler runs, and a second https request on a
 * new connection is answered.
 *
 * tls_thread_cancel HOST PORT PATH CAFILE: PATH an answer that takes seconds
 * (/delay/3000). Prints: mode=ssl_read|gnutls_recv cancelled=0|1 cleanup=0|1 join_ms=N
 * after=STATUS
 * Exit 0 iff cancelled, cleaned up, joined within 2 s and the second answer is a 200;
 * 1 otherwise, 2 on a setup error, 3 when hung (10 s watchdog). */
#ifdef TLS_GNUTLS
#include "tls_gnutls.h"
#define MODE "gnutls_recv"
#else
#include "tls_openssl.h"
#define MODE "ssl_read"
#endif

#include <pthread.h>
#include <stdint.h>
#include <time.h>

static uint64_t now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static struct args g_args;
static volatile int g_fd = -1;
static volatile int g_cleaned_up;

static void close_on_cancel(void *arg)
{
	(void)arg;
	if (g_fd >= 0)
		close(g_fd);
	g_fd = -1;
	g_cleaned_up = 1;
}

/* A TLS session on a new connection to the server (g_fd), the peer verified. */
#ifdef TLS_GNUTLS
static gnutls_certificate_credentials_t g_cred;

static struct tls_io open_tls(void)
{
	gnutls_session_t s;
	if (gnutls_init(&s, GNUTLS_CLIENT) < 0 || gnutls_set_default_priority(s) < 0 ||
	    gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, g_cred) < 0 ||
	    gnutls_server_name_set(s, GNUTLS_NAME_DNS, g_args.host, strlen(g_args.host)) < 0)
		die("gnutls session set-up failed");
	gnutls_session_set_verify_cert(s, g_args.host, 0);
	g_fd = connect_blocking(&g_args);
	gnutls_transport_set_int(s, g_fd);
	int ret;
	do {
		ret = gnutls_handshake(s);
	} while (ret < 0 && !gnutls_error_is_fatal(ret));
	if (ret < 0)
		die("TLS handshake failed: %s", gnutls_strerror(ret));
	return (struct tls_io){ gt_write_all, gt_read, s };
}

static void close_tls(struct tls_io *io)
{
	gnutls_deinit(io->ctx);
}
#else
static SSL_CTX *g_ctx;

static struct tls_io open_tls(void)
{
	g_fd = connect_blocking(&g_args);
	SSL *ssl = SSL_new(g_ctx);
	if (!ssl)
		die("SSL_new: %s", ssl_errstr());
	connect_over_fd(ssl, g_fd, g_args.host);
	return (struct tls_io){ ssl_write_all, ssl_read_some, ssl };
}

static void close_tls(struct tls_io *io)
{
	SSL_free(io->ctx);
}
#endif

/* GET path on a new TLS connection; reads the answer unless `block_only`, then the first
 * read blocks (the caller is cancelled there). Returns the status. */
static int get(const char *path, int block_only)
{
	struct tls_io io = open_tls();
	int fd = g_fd;
	size_t len;
	char *req = build_request(&g_args, "GET", path, NULL, NULL, 0, &len);
	io.write_all(io.ctx, req, len);
	free(req);
	if (block_only) {
		char buf[4096];
		io.read(fd, buf, sizeof buf, io.ctx);
		return 0;
	}
	struct rbuf rb = { 0 };
	struct response r;
	read_response(fd, &rb, &r, io.read, io.ctx);
	close_tls(&io);
	close(fd);
	return r.status;
}

static void *worker(void *arg)
{
	(void)arg;
	pthread_cleanup_push(close_on_cancel, NULL);
	get(g_args.path, 1);
	pthread_cleanup_pop(0);
	return NULL;
}

static void *watchdog(void *arg)
{
	(void)arg;
	sleep(10);
	printf("mode=" MODE " result=hung\n");
	fflush(stdout);
	_exit(3);
}

int main(int argc, char **argv)
{
	const char *cafile = tls_init(argc, argv, &g_args);
#ifdef TLS_GNUTLS
	if (gnutls_certificate_allocate_credentials(&g_cred) < 0 ||
	    gnutls_certificate_set_x509_trust_file(g_cred, cafile, GNUTLS_X509_FMT_PEM) <= 0)
		die("cannot load CA file %s", cafile);
#else
	g_ctx = client_ctx(cafile);
#endif
	pthread_t dog, work;
	pthread_create(&dog, NULL, watchdog, NULL);
	pthread_create(&work, NULL, worker, NULL);
	usleep(500 * 1000);
	uint64_t t0 = now_ms();
	pthread_cancel(work);
	void *result = NULL;
	pthread_join(work, &result);
	uint64_t join_ms = now_ms() - t0;
	int cancelled = result == PTHREAD_CANCELED;
	int after = get("/status/200", 0);
	printf("mode=" MODE " cancelled=%d cleanup=%d join_ms=%llu after=%d\n", cancelled,
	       (int)g_cleaned_up, (unsigned long long)join_ms, after);
	fflush(stdout);
	return cancelled && g_cleaned_up && join_ms < 2000 && after == 200 ? 0 : 1;
}
