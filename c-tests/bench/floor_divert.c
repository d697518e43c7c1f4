/* The floor for the wrk rows and the Python https rows of `make bench` (issue "cost at
 * the floor"): the least a preload that diverts HTTP to Lunar Proxy does per connection
 * and per request, with nothing of what makes the library safe. A connect to port 80 or
 * 443 goes to the proxy (LUNAR_PROXY_HOST, resolved once); each write on such a socket
 * that is a whole request head gets Lunar's four lines after the request line
 * (x-lunar-host from the Host header, the scheme, the interceptor, a fresh request id),
 * sent with one writev. On 443 the program's OpenSSL session is virtual, as the library
 * makes it: the handshake succeeds at once, SSL_write/SSL_read carry plaintext to and
 * from the proxy, and the peer certificate is one parsed once from FLOOR_PEER_CERT (a PEM
 * file naming the host). It does not parse heads or responses, keep copies for a replay,
 * route per request, fail over, or handle a request split over several writes: wrk and
 * Python's http.client write each head whole. Only the OpenSSL calls Python's ssl module
 * makes on a client connection are covered. Built with -O2 -fPIC -fvisibility=hidden, as
 * a C library would be.
 *
 * Built with -DFLOOR_PARSE (and -lhttp_parser), it also does the parsing the contract asks
 * of every diverted request, which the library does with httparse: each request head is
 * parsed whole (its Host field is the x-lunar-host) and refused as the library's engine
 * would when it is not HTTP; every answer read from the proxy is followed with a parser
 * per connection through its head (each field name compared with Lunar's x-lunar-*
 * signals) and its body's framing, to the next answer's head. The parser is Debian's
 * http-parser (Node's former parser, the one wrk uses itself). Only read/write are
 * followed: the wrk rows use it. Still no copies for a replay, no routing per request,
 * no failover.
 *
 * Built with -DFLOOR_JUMPS=N as well, each request also runs a chain of N taken jumps, one
 * per 64-byte line and nothing else: make bench's measure of what one taken branch the
 * predictor has forgotten costs on this machine, to read its branch-site rows by. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <stdio.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

enum { PLAIN = 1, TLS = 2 }; /* what a diverted fd carries */
static unsigned char diverted[65536];
typedef struct ssl_st SSL;
typedef struct x509_st X509;
/* A virtual session on a diverted 443 fd: its SSL object and what OpenSSL would report. */
static struct session {
	SSL *ssl;
	int error, shutdown;
} sessions[65536];
static struct sockaddr_storage proxy;
static socklen_t proxy_len;

/* The function `fn` of the next object, found at its first call by `lookup`, an expression
 * of `symbol` (its name). */
#define FOUND_AT_FIRST_CALL(ret, fn, params, lookup) \
	static ret (*real_##fn) params; \
	static ret (*get_##fn(void)) params \
	{ \
		if (!real_##fn) { \
			const char *symbol = #fn; \
			real_##fn = (ret (*) params)(lookup); \
		} \
		return real_##fn; \
	}
#define REAL(ret, fn, params) FOUND_AT_FIRST_CALL(ret, fn, params, dlsym(RTLD_NEXT, symbol))
REAL(int, connect, (int, const struct sockaddr *, socklen_t))
REAL(ssize_t, write, (int, const void *, size_t))
REAL(ssize_t, writev, (int, const struct iovec *, int))
REAL(int, close, (int))

#ifdef FLOOR_PARSE
#include <http_parser.h>
#include <strings.h>

/* A diverted plain fd's answers, followed from its connect on. */
static http_parser answers[65536];
/* The parser met something it cannot follow: the fd's later bytes are not looked at. */
static unsigned char answers_lost[65536];
static volatile unsigned lunar_signals; /* x-lunar-* fields seen, so the comparisons are not dead */

struct request_fields {
	const char *host;
	size_t host_len;
	int in_host;
};

static int on_request_field(http_parser *parser, const char *at, size_t n)
{
	struct request_fields *fields = parser->data;
	fields->in_host = n == 4 && strncasecmp(at, "host", 4) == 0;
	return 0;
}

static int on_request_value(http_parser *parser, const char *at, size_t n)
{
	struct request_fields *fields = parser->data;
	if (fields->in_host && !fields->host)
		fields->host = at, fields->host_len = n;
	return 0;
}

static const http_parser_settings request_settings = {
	.on_header_field = on_request_field,
	.on_header_value = on_request_value,
};

/* Whether `bytes` is one whole, valid request head with a Host field. */
static int parses_as_request_head(const char *bytes, size_t n)
{
	struct request_fields fields = { 0 };
	http_parser parser;
	http_parser_init(&parser, HTTP_REQUEST);
	parser.data = &fields;
	size_t parsed = http_parser_execute(&parser, &request_settings, bytes, n);
	return parsed == n && HTTP_PARSER_ERRNO(&parser) == HPE_OK && fields.host && fields.host_len <= 200;
}

static int on_answer_field(http_parser *parser, const char *at, size_t n)
{
	(void)parser;
	if (n > 8 && strncasecmp(at, "x-lunar-", 8) == 0)
		lunar_signals++;
	return 0;
}

static const http_parser_settings answer_settings = { .on_header_field = on_answer_field };

REAL(ssize_t, read, (int, void *, size_t))

__attribute__((visibility("default"))) ssize_t read(int fd, void *buf, size_t n)
{
	ssize_t got = get_read()(fd, buf, n);
	if (got > 0 && (unsigned)fd < 65536 && diverted[fd] == PLAIN && !answers_lost[fd]) {
		http_parser *parser = &answers[fd];
		size_t parsed = http_parser_execute(parser, &answer_settings, buf, got);
		if (parsed != (size_t)got || HTTP_PARSER_ERRNO(parser) != HPE_OK)
			answers_lost[fd] = 1;
	}
	return got;
}
#endif

static int resolve_proxy(void)
{
	const char *host = getenv("LUNAR_PROXY_HOST");
	char name[256], *colon;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *found;
	if (!host || strlen(host) >= sizeof name)
		return -1;
	strcpy(name, host);
	if (!(colon = strrchr(name, ':')))
		return -1;
	*colon = 0;
	if (getaddrinfo(name, colon + 1, &hints, &found) != 0)
		return -1;
	memcpy(&proxy, found->ai_addr, found->ai_addrlen);
	proxy_len = found->ai_addrlen;
	freeaddrinfo(found);
	return 0;
}

__attribute__((visibility("default"))) int connect(int fd, const struct sockaddr *to, socklen_t len)
{
	int port = to && to->sa_family == AF_INET ? ntohs(((const struct sockaddr_in *)to)->sin_port) : 0;
	if ((port == 80 || port == 443) && (unsigned)fd < 65536 && (proxy_len || resolve_proxy() == 0)) {
		diverted[fd] = port == 80 ? PLAIN : TLS;
#ifdef FLOOR_PARSE
		http_parser_init(&answers[fd], HTTP_RESPONSE);
		answers_lost[fd] = 0;
#endif
		return get_connect()(fd, (const struct sockaddr *)&proxy, proxy_len);
	}
	return get_connect()(fd, to, len);
}

#ifdef FLOOR_JUMPS
#define STRINGIFY(x) #x
#define DECIMAL(x) STRINGIFY(x)
__attribute__((noinline)) static void taken_jumps(void)
{
	__asm__ volatile(".rept " DECIMAL(FLOOR_JUMPS) "\n jmp 1f\n .p2align 6\n1:\n .endr" ::: "memory");
}
#endif

static const char hex[] = "0123456789abcdef";
#define PUT(p, literal) mempcpy((p), (literal), sizeof(literal) - 1)

/* Sends a whole request head with Lunar's lines after its request line: n on success, -1
 * on failure, -2 when the bytes are not a whole head with a Host line. */
static ssize_t send_with_lunar_lines(int fd, const char *bytes, size_t n, const char *scheme_line)
{
	const char *line_end, *host, *host_end;
	char lines[512], *p = lines;
	static uint64_t state = 0x9e3779b97f4a7c15u;
	if (n < 16 || memcmp(bytes + n - 4, "\r\n\r\n", 4) != 0)
		return -2;
#ifdef FLOOR_PARSE
	if (!parses_as_request_head(bytes, n))
		return -2;
#endif
#ifdef FLOOR_JUMPS
	taken_jumps();
#endif
	line_end = memmem(bytes, n, "\r\n", 2);
	host = memmem(bytes, n, "\r\nHost: ", 8);
	if (!line_end || !host)
		return -2;
	host += 8;
	host_end = memmem(host, n - (host - bytes), "\r\n", 2);
	if (host_end - host > 200)
		return -2;
	p = PUT(p, "x-lunar-host: ");
	p = mempcpy(p, host, host_end - host);
	p = mempcpy(p, scheme_line, strlen(scheme_line));
	p = PUT(p, "x-lunar-interceptor: floor/0\r\nx-lunar-req-id: ");
	for (int i = 0; i < 32; i++) {
		state ^= state << 13, state ^= state >> 7, state ^= state << 17;
		*p++ = hex[state & 15];
	}
	p = PUT(p, "\r\n");
	struct iovec parts[3] = {
		{ (void *)bytes, line_end + 2 - bytes },
		{ lines, p - lines },
		{ (void *)(line_end + 2), n - (line_end + 2 - bytes) },
	};
	ssize_t sent = get_writev()(fd, parts, 3);
	return sent < 0 ? -1 : (ssize_t)n;
}

__attribute__((visibility("default"))) ssize_t write(int fd, const void *buf, size_t n)
{
	if ((unsigned)fd < 65536 && diverted[fd] == PLAIN) {
		ssize_t sent = send_with_lunar_lines(fd, buf, n, "\r\nx-lunar-scheme: http\r\n");
		if (sent != -2)
			return sent;
	}
	return get_write()(fd, buf, n);
}

__attribute__((visibility("default"))) int close(int fd)
{
	if ((unsigned)fd < 65536)
		diverted[fd] = 0, sessions[fd] = (struct session){ 0 };
	return get_close()(fd);
}

/* ---- virtual OpenSSL sessions on diverted 443 connections ---- */

/* OpenSSL's own function: Python's _ssl module loads libssl with RTLD_LOCAL, outside
 * RTLD_NEXT's scope, so it is also looked up in the loaded library itself. */
static void *openssl_symbol(const char *library, const char *name)
{
	void *found = dlsym(RTLD_NEXT, name), *handle;
	if (!found && (handle = dlopen(library, RTLD_LAZY | RTLD_NOLOAD)))
		found = dlsym(handle, name);
	return found;
}
#define OPENSSL(library, ret, fn, params) \
	FOUND_AT_FIRST_CALL(ret, fn, params, openssl_symbol(library, symbol))
#define SSL_LIB "libssl.so.3"
OPENSSL(SSL_LIB, int, SSL_get_fd, (const SSL *))
OPENSSL(SSL_LIB, int, SSL_do_handshake, (SSL *))
OPENSSL(SSL_LIB, int, SSL_connect, (SSL *))
OPENSSL(SSL_LIB, int, SSL_write, (SSL *, const void *, int))
OPENSSL(SSL_LIB, int, SSL_write_ex, (SSL *, const void *, size_t, size_t *))
OPENSSL(SSL_LIB, int, SSL_read, (SSL *, void *, int))
OPENSSL(SSL_LIB, int, SSL_read_ex, (SSL *, void *, size_t, size_t *))
OPENSSL(SSL_LIB, int, SSL_get_error, (const SSL *, int))
OPENSSL(SSL_LIB, int, SSL_is_init_finished, (const SSL *))
OPENSSL(SSL_LIB, int, SSL_get_shutdown, (const SSL *))
OPENSSL(SSL_LIB, long, SSL_get_verify_result, (const SSL *))
OPENSSL(SSL_LIB, X509 *, SSL_get1_peer_certificate, (const SSL *))
OPENSSL("libcrypto.so.3", X509 *, PEM_read_X509, (FILE *, X509 **, void *, void *))
OPENSSL("libcrypto.so.3", int, X509_up_ref, (X509 *))

enum { ERROR_NONE = 0, ERROR_SYSCALL = 5, ERROR_ZERO_RETURN = 6, RECEIVED_SHUTDOWN = 2 };

static struct session *virtual_session(const SSL *ssl)
{
	int fd = get_SSL_get_fd()(ssl);
	return (unsigned)fd < 65536 && sessions[fd].ssl == ssl ? &sessions[fd] : NULL;
}

static int begins_virtual(SSL *ssl)
{
	int fd = get_SSL_get_fd()(ssl);
	if ((unsigned)fd >= 65536 || diverted[fd] != TLS)
		return 0;
	sessions[fd] = (struct session){ .ssl = ssl };
	return 1;
}

__attribute__((visibility("default"))) int SSL_do_handshake(SSL *ssl)
{
	return begins_virtual(ssl) ? 1 : get_SSL_do_handshake()(ssl);
}

__attribute__((visibility("default"))) int SSL_connect(SSL *ssl)
{
	return begins_virtual(ssl) ? 1 : get_SSL_connect()(ssl);
}

/* The plaintext to the proxy: a head with Lunar's lines, anything else as it is. */
static ssize_t virtual_write(struct session *session, const void *buf, size_t n)
{
	int fd = session - sessions;
	ssize_t sent = send_with_lunar_lines(fd, buf, n, "\r\nx-lunar-scheme: https\r\n");
	if (sent == -2)
		sent = get_write()(fd, buf, n);
	session->error = sent < 0 ? ERROR_SYSCALL : ERROR_NONE;
	return sent;
}

static ssize_t virtual_read(struct session *session, void *buf, size_t n)
{
	ssize_t got = read(session - sessions, buf, n);
	session->error = got > 0 ? ERROR_NONE : got == 0 ? ERROR_ZERO_RETURN : ERROR_SYSCALL;
	if (got == 0)
		session->shutdown = RECEIVED_SHUTDOWN;
	return got;
}

__attribute__((visibility("default"))) int SSL_write(SSL *ssl, const void *buf, int n)
{
	struct session *session = virtual_session(ssl);
	if (!session)
		return get_SSL_write()(ssl, buf, n);
	ssize_t sent = virtual_write(session, buf, n);
	return sent > 0 ? (int)sent : -1;
}

__attribute__((visibility("default"))) int SSL_write_ex(SSL *ssl, const void *buf, size_t n, size_t *written)
{
	struct session *session = virtual_session(ssl);
	if (!session)
		return get_SSL_write_ex()(ssl, buf, n, written);
	ssize_t sent = virtual_write(session, buf, n);
	*written = sent > 0 ? (size_t)sent : 0;
	return sent > 0;
}

__attribute__((visibility("default"))) int SSL_read(SSL *ssl, void *buf, int n)
{
	struct session *session = virtual_session(ssl);
	if (!session)
		return get_SSL_read()(ssl, buf, n);
	ssize_t got = virtual_read(session, buf, n);
	return got > 0 ? (int)got : got == 0 ? 0 : -1;
}

__attribute__((visibility("default"))) int SSL_read_ex(SSL *ssl, void *buf, size_t n, size_t *got_bytes)
{
	struct session *session = virtual_session(ssl);
	if (!session)
		return get_SSL_read_ex()(ssl, buf, n, got_bytes);
	ssize_t got = virtual_read(session, buf, n);
	*got_bytes = got > 0 ? (size_t)got : 0;
	return got > 0;
}

__attribute__((visibility("default"))) int SSL_get_error(const SSL *ssl, int ret)
{
	struct session *session = virtual_session(ssl);
	if (!session)
		return get_SSL_get_error()(ssl, ret);
	return ret > 0 ? ERROR_NONE : session->error;
}

__attribute__((visibility("default"))) int SSL_is_init_finished(const SSL *ssl)
{
	return virtual_session(ssl) ? 1 : get_SSL_is_init_finished()(ssl);
}

__attribute__((visibility("default"))) int SSL_get_shutdown(const SSL *ssl)
{
	struct session *session = virtual_session(ssl);
	return session ? session->shutdown : get_SSL_get_shutdown()(ssl);
}

__attribute__((visibility("default"))) long SSL_get_verify_result(const SSL *ssl)
{
	return virtual_session(ssl) ? 0 /* X509_V_OK */ : get_SSL_get_verify_result()(ssl);
}

/* Parsed once, as the library keeps each host's certificate; each caller owns a reference. */
__attribute__((visibility("default"))) X509 *SSL_get1_peer_certificate(const SSL *ssl)
{
	static X509 *parsed;
	const char *path = getenv("FLOOR_PEER_CERT");
	FILE *file;
	if (!virtual_session(ssl))
		return get_SSL_get1_peer_certificate()(ssl);
	if (!parsed && path && (file = fopen(path, "r"))) {
		parsed = get_PEM_read_X509()(file, NULL, NULL, NULL);
		fclose(file);
	}
	if (parsed)
		get_X509_up_ref()(parsed);
	return parsed;
}
