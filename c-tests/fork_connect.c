/* The parent connects; a forked child writes the request and reads the response
 * on the inherited fd; the parent waits and exits with the child's status. */
#include "common.h"
#include <sys/wait.h>

int main(int argc, char **argv)
{
	struct args a;
	ctest_init(argc, argv, &a);
	size_t len;
	char *req = build_request(&a, "GET", a.path, NULL, NULL, 0, &len);
	int fd = connect_blocking(&a);
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		die("fork:");
	if (pid == 0) {
		write_all(fd, req, len);
		int rc = read_and_finish(fd, plain_read, NULL);
		close(fd);
		_exit(rc);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			die("waitpid:");
	close(fd);
	free(req);
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	note("child died with signal %d", WTERMSIG(st));
	return 2;
}
