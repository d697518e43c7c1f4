/* What Java does: resolve HOST (AF_INET result), then connect an AF_INET6 socket
 * (IPV6_V6ONLY=0) to the v4-mapped address ::ffff:a.b.c.d. Prints
 *   peer-after-connect [::ffff:a.b.c.d]:PORT
 *   peer-after-response [::ffff:a.b.c.d]:PORT
 * then the body. */
#include "common.h"

static void peer(int fd, const char *label)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	memset(&ss, 0, sizeof ss);
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0)
		die("getpeername (%s):", label);
	if (ss.ss_family != AF_INET6 || sl != sizeof(struct sockaddr_in6))
		die("getpeername (%s): family %d len %u, want AF_INET6/%zu", label, ss.ss_family,
		    (unsigned)sl, sizeof(struct sockaddr_in6));
	char s[128];
	format_sockaddr(&ss, s, sizeof s);
	printf("%s %s\n", label, s);
}

int main(int argc, char **argv)
{
	struct args a;
	ctest_init(argc, argv, &a);
	struct addrinfo hints, *res = NULL;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_INET;
	hints.ai_socktype = SOCK_STREAM;
	int rc = getaddrinfo(a.host, a.port, &hints, &res);
	if (rc != 0)
		die("getaddrinfo(%s): %s", a.host, gai_strerror(rc));
	struct sockaddr_in *s4 = (struct sockaddr_in *)res->ai_addr;
	struct sockaddr_in6 s6;
	memset(&s6, 0, sizeof s6);
	s6.sin6_family = AF_INET6;
	s6.sin6_port = s4->sin_port;
	s6.sin6_addr.s6_addr[10] = 0xff;
	s6.sin6_addr.s6_addr[11] = 0xff;
	memcpy(&s6.sin6_addr.s6_addr[12], &s4->sin_addr, 4);
	freeaddrinfo(res);

	int fd = socket(AF_INET6, SOCK_STREAM, 0);
	if (fd < 0)
		die("socket AF_INET6:");
	int off = 0;
	if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off) < 0)
		die("setsockopt IPV6_V6ONLY:");
	if (connect(fd, (struct sockaddr *)&s6, sizeof s6) < 0)
		die("connect ::ffff:mapped:");
	peer(fd, "peer-after-connect");
	size_t len;
	char *req = build_request(&a, "GET", a.path, NULL, NULL, 0, &len);
	write_all(fd, req, len);
	free(req);
	struct rbuf rb = {0};
	struct response r;
	read_response(fd, &rb, &r, plain_read, NULL);
	peer(fd, "peer-after-response");
	rc = finish_response(&r);
	free_response(&r);
	free(rb.data);
	close(fd);
	return rc;
}
