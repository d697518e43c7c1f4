/* GnuTLS sessions as programs use them beyond one HTTP request (blocking sockets,
 * gnutls_transport_set_int). Exit 0 iff the program got what it would without a library;
 * 1 otherwise, 2 on a setup error; an alarm ends a hang (SIGALRM, exit 142).
 *
 * gnutls_sessions echo CAFILE
 *   A line protocol where the client speaks first, inside TLS on echo.example.test:443:
 *   "hello\r\n" right after the handshake (gnutls_record_send must return 7: the bytes are
 *   not HTTP, and must reach the echo server), then "world\r\n"; both come back.
 *
 * gnutls_sessions stale CAFILE CONTROL_PORT
 *   Session A (api.example.test:443) gets its answer; its socket is closed but A is freed
 *   only at the end (a pool, a garbage collector). Session B (other.example.test:443) gets
 *   A's fd number; the test proxy (its control port) then fails B's request (error:2):
 *   B's answer must come from other.example.test, through B's own fallback.
 *
 * gnutls_sessions queries CAFILE
 *   api.example.test:443: a GET sent, then (its answer on the way) the session's data
 *   asked for (gnutls_session_get_data2, as a program keeping it for resumption) and its
 *   keys updated (gnutls_session_key_update, retried while GNUTLS_E_AGAIN, at most 1000
 *   times): the answer must then read whole, from "HTTP/1.1 200"; and the session has a
 *   description (gnutls_session_get_desc, not NULL).
 *
 * gnutls_sessions timeout CAFILE PATH
 *   api.example.test:443 with gnutls_record_set_timeout(1000) set before the handshake, as
 *   programs set it: a GET of PATH to a server that does not answer (the test proxy in
 *   `hang` mode); gnutls_record_recv must end with GNUTLS_E_TIMEDOUT after 0.8-3 s.
 *   Prints "recv=N (NAME) elapsed_ms=T".
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <gnutls/gnutls.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static gnutls_certificate_credentials_t g_cred;
/* gnutls_record_set_timeout's value for the sessions opened (0: none). */
static unsigned g_record_timeout_ms;

static int connect_443(const char *host)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
	if (getaddrinfo(host, "443", &hints, &res) != 0)
		exit(2);
	int fd = socket(res->ai_family, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0)
		exit(2);
	freeaddrinfo(res);
	return fd;
}

static gnutls_session_t open_session(const char *host, int *fd)
{
	gnutls_session_t s;
	gnutls_init(&s, GNUTLS_CLIENT);
	gnutls_set_default_priority(s);
	gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, g_cred);
	gnutls_server_name_set(s, GNUTLS_NAME_DNS, host, strlen(host));
	gnutls_session_set_verify_cert(s, host, 0);
	*fd = connect_443(host);
	gnutls_transport_set_int(s, *fd);
	if (g_record_timeout_ms)
		gnutls_record_set_timeout(s, g_record_timeout_ms);
	int rc;
	do
		rc = gnutls_handshake(s);
	while (rc < 0 && !gnutls_error_is_fatal(rc));
	if (rc < 0) {
		printf("%s: handshake %s\n", host, gnutls_strerror(rc));
		exit(1);
	}
	return s;
}

static ssize_t send_all(gnutls_session_t s, const char *data, size_t len)
{
	ssize_t n;
	do
		n = gnutls_record_send(s, data, len);
	while (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED);
	return n;
}

/* Reads until `want` bytes or the end; returns the count. */
static size_t recv_some(gnutls_session_t s, char *buf, size_t cap, size_t want)
{
	size_t have = 0;
	while (have < want && have < cap) {
		ssize_t n = gnutls_record_recv(s, buf + have, cap - have);
		if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
			continue;
		if (n <= 0)
			break;
		have += (size_t)n;
	}
	return have;
}

static int echo(void)
{
	int fd;
	gnutls_session_t s = open_session("echo.example.test", &fd);
	const char *lines[] = { "hello\r\n", "world\r\n" };
	int ok = 1;
	for (int i = 0; i < 2; i++) {
		ssize_t sent = send_all(s, lines[i], 7);
		char back[16];
		size_t got = recv_some(s, back, sizeof back, 7);
		printf("sent=%zd back=%.*s", sent, (int)got, back);
		if (got == 0 || back[got - 1] != '\n')
			printf("\n");
		ok = ok && sent == 7 && got == 7 && memcmp(back, lines[i], 7) == 0;
	}
	gnutls_bye(s, GNUTLS_SHUT_WR);
	close(fd);
	gnutls_deinit(s);
	return ok ? 0 : 1;
}

static void set_proxy_mode(int control_port, const char *mode)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in at = { .sin_family = AF_INET, .sin_port = htons(control_port) };
	at.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&at, sizeof at) != 0)
		exit(2);
	char req[256];
	int n = snprintf(req, sizeof req,
			 "POST /mode HTTP/1.1\r\nHost: control\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n%s",
			 strlen(mode), mode);
	if (write(fd, req, n) != n)
		exit(2);
	char answer[512];
	while (read(fd, answer, sizeof answer) > 0)
		;
	close(fd);
}

/* One GET of /bytes/10 on `s`; returns the answer's X-Origin line's value ("" if none). */
static const char *get_origin(gnutls_session_t s, const char *host, char *buf, size_t cap)
{
	char req[256];
	int n = snprintf(req, sizeof req, "GET /bytes/10 HTTP/1.1\r\nHost: %s\r\n\r\n", host);
	if (send_all(s, req, n) != n)
		return "";
	size_t have = 0;
	for (;;) {
		ssize_t got = gnutls_record_recv(s, buf + have, cap - 1 - have);
		if (got == GNUTLS_E_AGAIN || got == GNUTLS_E_INTERRUPTED)
			continue;
		if (got <= 0)
			break;
		have += (size_t)got;
		buf[have] = 0;
		char *end = strstr(buf, "\r\n\r\n");
		if (end && (size_t)(end + 4 - buf) + 10 <= have)
			break;
	}
	buf[have] = 0;
	char *origin = strcasestr(buf, "x-origin: ");
	if (!origin)
		return "";
	origin += strlen("x-origin: ");
	origin[strcspn(origin, "\r\n")] = 0;
	return origin;
}

static int stale(int control_port)
{
	char buf[4096];
	int fd_a, fd_b;
	set_proxy_mode(control_port, "pass");
	gnutls_session_t a = open_session("api.example.test", &fd_a);
	printf("A fd=%d origin=%s\n", fd_a, get_origin(a, "api.example.test", buf, sizeof buf));
	gnutls_bye(a, GNUTLS_SHUT_WR);
	close(fd_a);
	set_proxy_mode(control_port, "error:2");
	gnutls_session_t b = open_session("other.example.test", &fd_b);
	const char *origin = get_origin(b, "other.example.test", buf, sizeof buf);
	printf("B fd=%d origin=%s\n", fd_b, origin);
	set_proxy_mode(control_port, "pass");
	int ok = fd_a == fd_b && strncmp(origin, "203.0.113.11:", 13) == 0;
	gnutls_bye(b, GNUTLS_SHUT_WR);
	close(fd_b);
	gnutls_deinit(b);
	gnutls_deinit(a);
	return ok ? 0 : 1;
}

static int queries(void)
{
	int fd;
	gnutls_session_t s = open_session("api.example.test", &fd);
	const char *req = "GET /bytes/10 HTTP/1.1\r\nHost: api.example.test\r\n\r\n";
	if (send_all(s, req, strlen(req)) != (ssize_t)strlen(req))
		return 1;
	usleep(50 * 1000);
	gnutls_datum_t data = { 0 };
	int got_data = gnutls_session_get_data2(s, &data);
	if (got_data == 0)
		gnutls_free(data.data);
	int updated, tries = 0;
	do
		updated = gnutls_session_key_update(s, 0);
	while (updated == GNUTLS_E_AGAIN && ++tries < 1000);
	char buf[4096];
	size_t have = recv_some(s, buf, sizeof buf - 1, 12);
	buf[have] = 0;
	char *desc = gnutls_session_get_desc(s);
	printf("get_data2=%d key_update=%d tries=%d desc_len=%zu answer=%.15s\n", got_data, updated,
	       tries, desc ? strlen(desc) : 0, buf);
	int described = desc != NULL;
	gnutls_free(desc);
	gnutls_bye(s, GNUTLS_SHUT_WR);
	close(fd);
	gnutls_deinit(s);
	return strncmp(buf, "HTTP/1.1 200", 12) == 0 && tries < 1000 && described ? 0 : 1;
}

static int timeout(const char *path)
{
	g_record_timeout_ms = 1000;
	int fd;
	gnutls_session_t s = open_session("api.example.test", &fd);
	char req[512];
	snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: api.example.test\r\n\r\n", path);
	if (send_all(s, req, strlen(req)) != (ssize_t)strlen(req))
		return 1;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	char buf[4096];
	ssize_t n;
	do
		n = gnutls_record_recv(s, buf, sizeof buf);
	while (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	printf("recv=%zd (%s) elapsed_ms=%ld\n", n, n < 0 ? gnutls_strerror_name((int)n) : "data",
	       ms);
	close(fd);
	gnutls_deinit(s);
	return n == GNUTLS_E_TIMEDOUT && ms >= 800 && ms <= 3000 ? 0 : 1;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	alarm(20);
	if (argc < 3)
		return 2;
	gnutls_certificate_allocate_credentials(&g_cred);
	gnutls_certificate_set_x509_trust_file(g_cred, argv[2], GNUTLS_X509_FMT_PEM);
	if (strcmp(argv[1], "echo") == 0)
		return echo();
	if (strcmp(argv[1], "queries") == 0)
		return queries();
	if (strcmp(argv[1], "timeout") == 0 && argc > 3)
		return timeout(argv[3]);
	if (strcmp(argv[1], "stale") == 0 && argc > 3)
		return stale(atoi(argv[3]));
	return 2;
}
