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
	struct sockaddr_in s4;
	struct sockaddr_in6 s6;
	resolve_v4_and_mapped(&a, &s4, &s6);

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
	int rc = finish_response(&r);
	free_response(&r);
	free(rb.data);
	close(fd);
	return rc;
}
