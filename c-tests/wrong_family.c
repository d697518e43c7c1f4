/* A connect whose address is of the other family than the socket's (a program's bug):
 * an AF_INET socket given a sockaddr_in6 of HOST (v4-mapped), an AF_INET6 socket given
 * a sockaddr_in. The kernel refuses both (EAFNOSUPPORT, EINVAL); under the library the
 * program must see the same errors, and the library must not take them for the proxy
 * failing (with LUNAR_ENTER_COOLDOWN_AFTER_ATTEMPTS=1, a failure counted would send the
 * next, proper connect direct). Prints "v4-socket-v6-address ERRNO_NAME",
 * "v6-socket-v4-address ERRNO_NAME" and "v4-socket-v4-address connected". */
#include "common.h"

static const char *errno_name(int e)
{
	switch (e) {
	case EAFNOSUPPORT:
		return "EAFNOSUPPORT";
	case EINVAL:
		return "EINVAL";
	case 0:
		return "connected";
	default:
		return strerror(e);
	}
}

static void attempt(int family, const struct sockaddr *to, socklen_t len, const char *label)
{
	int fd = socket(family, SOCK_STREAM, 0);
	if (fd < 0)
		die("socket:");
	errno = 0;
	int rc = connect(fd, to, len);
	printf("%s %s\n", label, errno_name(rc == 0 ? 0 : errno));
	close(fd);
}

int main(int argc, char **argv)
{
	struct args a;
	ctest_init(argc, argv, &a);
	struct sockaddr_in s4;
	struct sockaddr_in6 s6;
	resolve_v4_and_mapped(&a, &s4, &s6);
	attempt(AF_INET, (struct sockaddr *)&s6, sizeof s6, "v4-socket-v6-address");
	attempt(AF_INET6, (struct sockaddr *)&s4, sizeof s4, "v6-socket-v4-address");
	attempt(AF_INET, (struct sockaddr *)&s4, sizeof s4, "v4-socket-v4-address");
	return 0;
}
