/* A diverted socket closed behind the preload, its number reused for a file: data the
 * program saves must land in the file. `fclose_reuse HOST PORT PATH FILE`
 *
 * One GET on the socket (write/read), then the socket is closed one of these ways:
 *   default            fdopen(fd, "r+") then fclose(): glibc closes the fd internally,
 *                      never through the exported close()
 *   -DCLOSE_FREOPEN    fdopen(fd, "r+") then freopen(FILE, "w+", stream): glibc closes
 *                      the socket and puts FILE on the same number
 *   -DCLOSE_SYSCALL    syscall(SYS_close, fd) (libuv's uv__close)
 *   -DCLOSE_FROM       closefrom(fd) (glibc closes through its internal close_range)
 *   -DCLOSE_RAW        the close system call made directly (inline assembly), seen by no
 *                      hook at all
 *   -DHTTP_LINES       (with CLOSE_RAW) the lines saved are request heads; -DSPLIT_WRITE:
 *                      the first written in two pieces; -DNO_FIRST_REQUEST: the socket is
 *                      closed right after its connect, before any request (one GET in all)
 * FILE is then opened (except after freopen, which opened it) and must get the socket's
 * number; 2 lines are written to it with write() and writev(), read back with pread()
 * and read(), and the file is checked on disk. Then a second GET on a new connection
 * shows the library still diverts. Prints body 1, a newline, body 2; "file ok" on
 * stderr. Exit as in common.h (2 with a message when the file lost data). */
#include "common.h"
#include <sys/stat.h>
#include <sys/syscall.h>

#ifdef HTTP_LINES
/* What the program saves looks like request heads, so the library's HTTP engine would take
 * it as a new request on the old connection: the first in one write() (-DSPLIT_WRITE: in
 * two, the head incomplete after the first), the second with writev(). */
static const char LINE1[] = "GET /saved HTTP/1.1\r\nHost: api.example.test\r\n\r\n";
static const char LINE2[] = "POST /also-saved HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
#else
static const char LINE1[] = "first line the program saves\n";
static const char LINE2[] = "second line, with writev\n";
#endif

static int request_on(int fd, const struct args *a, const char *tag)
{
	char extra[64];
	snprintf(extra, sizeof extra, "X-Ctest-Seq: %s\r\n", tag);
	size_t len;
	char *req = build_request(a, "GET", a->path, extra, NULL, 0, &len);
	write_all(fd, req, len);
	free(req);
	return read_and_finish(fd, plain_read, NULL);
}

#ifdef CLOSE_RAW
static long raw_close(int fd)
{
	long ret;
#if defined(__x86_64__)
	__asm__ volatile("syscall" : "=a"(ret) : "0"((long)SYS_close), "D"((long)fd) : "rcx", "r11", "memory");
#elif defined(__aarch64__)
	register long x8 __asm__("x8") = SYS_close;
	register long x0 __asm__("x0") = fd;
	__asm__ volatile("svc 0" : "+r"(x0) : "r"(x8) : "memory");
	ret = x0;
#else
#error "raw close: x86_64 or aarch64 only"
#endif
	return ret;
}
#endif

int main(int argc, char **argv)
{
	struct args a;
	ctest_init(argc, argv, &a);
	if (argc < 5)
		die("usage: %s HOST PORT PATH FILE", g_prog);
	const char *path = argv[4];
	unlink(path);

	int fd = connect_blocking(&a);
#ifdef NO_FIRST_REQUEST
	int rc = 0;
#else
	int rc = request_on(fd, &a, "1");
	fputc('\n', stdout);
	fflush(stdout);
#endif

	int file;
#if defined(CLOSE_FREOPEN)
	FILE *stream = fdopen(fd, "r+");
	if (!stream)
		die("fdopen:");
	if (!freopen(path, "w+", stream))
		die("freopen:");
	file = fileno(stream);
#else
#if defined(CLOSE_SYSCALL)
	if (syscall(SYS_close, fd) != 0)
		die("syscall(SYS_close):");
#elif defined(CLOSE_FROM)
	closefrom(fd);
#elif defined(CLOSE_RAW)
	if (raw_close(fd) != 0)
		die("raw close failed");
#else
	FILE *stream = fdopen(fd, "r+");
	if (!stream)
		die("fdopen:");
	if (fclose(stream) != 0)
		die("fclose:");
#endif
	file = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (file < 0)
		die("open %s:", path);
#endif
	if (file != fd)
		die("the file got fd %d, the socket had %d: reuse not exercised", file, fd);

	errno = 0;
#ifdef SPLIT_WRITE
	size_t first = (size_t)(strchr(LINE1, '\n') - LINE1) + 1;
	ssize_t n = write(file, LINE1, first);
	if (n != (ssize_t)first)
		die("first write to the file returned %zd:", n);
	n = write(file, LINE1 + first, sizeof LINE1 - 1 - first);
	if (n != (ssize_t)(sizeof LINE1 - 1 - first))
		die("second write to the file returned %zd:", n);
#else
	ssize_t n = write(file, LINE1, sizeof LINE1 - 1);
	if (n != (ssize_t)(sizeof LINE1 - 1))
		die("write to the file returned %zd:", n);
#endif
	struct iovec iov[2] = {{(void *)LINE2, 7}, {(void *)(LINE2 + 7), sizeof LINE2 - 1 - 7}};
	n = writev(file, iov, 2);
	if (n != (ssize_t)(sizeof LINE2 - 1))
		die("writev to the file returned %zd:", n);
	char back[256] = {0};
	size_t want = sizeof LINE1 - 1 + sizeof LINE2 - 1;
	n = pread(file, back, sizeof back - 1, 0);
	if (n != (ssize_t)want)
		die("pread returned %zd, want %zu:", n, want);
	if (lseek(file, 0, SEEK_SET) != 0)
		die("lseek:");
	memset(back, 0, sizeof back);
	n = read(file, back, sizeof back - 1);
	if (n != (ssize_t)want)
		die("read from the file returned %zd, want %zu:", n, want);
	if (strncmp(back, LINE1, sizeof LINE1 - 1) != 0 ||
	    strcmp(back + sizeof LINE1 - 1, LINE2) != 0)
		die("the file holds %zd other bytes: %.80s", n, back);
#ifdef CLOSE_FREOPEN
	if (fclose(stream) != 0)
		die("fclose:");
#else
	if (close(file) != 0)
		die("close file:");
#endif
	struct stat st;
	if (stat(path, &st) != 0 || st.st_size != (off_t)want)
		die("%s on disk has %lld bytes, want %zu", path, (long long)st.st_size, want);
	note("file ok");

	int fd2 = connect_blocking(&a);
	int rc2 = request_on(fd2, &a, "2");
	close(fd2);
	return rc ? rc : rc2;
}
