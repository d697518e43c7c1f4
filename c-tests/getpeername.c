/* getpeername() after connect and again after the response: a diverted socket must
 * still report the original destination. Prints
 *   peer-after-connect IP:PORT
 *   peer-after-response IP:PORT
 * then the body. Also prints the address connect() was given. */
#include "common.h"

static void peer(int fd, const char *label)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	memset(&ss, 0, sizeof ss);
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0)
		die("getpeername (%s):", label);
	char s[128];
	format_sockaddr(&ss, s, sizeof s);
	printf("%s %s\n", label, s);
}

int main(int argc, char **argv)
{
	struct args a;
	ctest_init(argc, argv, &a);
	size_t len;
	char *req = build_request(&a, "GET", a.path, NULL, NULL, 0, &len);
	struct addrinfo *res = resolve(&a);
	int fd = socket(res->ai_family, SOCK_STREAM, 0);
	if (fd < 0)
		die("socket:");
	if (connect(fd, res->ai_addr, res->ai_addrlen) < 0)
		die("connect:");
	struct sockaddr_storage dst;
	memset(&dst, 0, sizeof dst);
	memcpy(&dst, res->ai_addr, res->ai_addrlen);
	char ds[128];
	format_sockaddr(&dst, ds, sizeof ds);
	printf("connected-to %s\n", ds);
	freeaddrinfo(res);
	peer(fd, "peer-after-connect");
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
