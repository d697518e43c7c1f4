/* A privileged program's API call: a GET with `Authorization: Bearer secret`, the
 * body printed. Installed setuid-root by tests/e2e/test_safety_process.py (in a
 * temporary directory) and run by an unprivileged user whose environment points
 * LUNAR_PROXY_HOST at a listener of their own: the library must not divert this
 * request there. Prints on stderr `at_secure=N` (getauxval(AT_SECURE), what the loader
 * and the library see) and `preloaded=N` (whether liblunar_intercept is in the process),
 * so the test knows which case it exercised. */
#include "common.h"
#include <link.h>
#include <sys/auxv.h>

static int find_library(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	if (info->dlpi_name && strstr(info->dlpi_name, "liblunar_intercept"))
		*(int *)data = 1;
	return 0;
}

int main(int argc, char **argv)
{
	struct args a;
	ctest_init(argc, argv, &a);
	int preloaded = 0;
	dl_iterate_phdr(find_library, &preloaded);
	note("at_secure=%lu preloaded=%d uid=%d euid=%d", getauxval(AT_SECURE), preloaded,
	     (int)getuid(), (int)geteuid());
	size_t len;
	char *req = build_request(&a, "GET", a.path, "Authorization: Bearer secret\r\n", NULL, 0,
				  &len);
	int fd = connect_blocking(&a);
	write_all(fd, req, len);
	free(req);
	int rc = read_and_finish(fd, plain_read, NULL);
	close(fd);
	return rc;
}
