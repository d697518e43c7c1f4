/* Stdio on a socket, as older C programs do: `stdio_socket HOST PORT PATH`.
 * The connected socket is handed to stdio with fdopen(fd, "r+"); two GETs are written
 * with fprintf + fflush, one after the other on the same connection (keep-alive), and
 * each answer is read with fgets (status line, headers) and fread (Content-Length
 * body). glibc's stdio reads and writes with internal calls no preload sees.
 *   -DTWO_STREAMS   one stream to read (fdopen(fd, "r")) and one to write
 *                   (fdopen(dup(fd), "w")), as setvbuf-minded programs do
 * Prints both bodies (newline between). Exit as in common.h. */
#include "common.h"

static int exchange(FILE *in, FILE *out, const struct args *a, const char *tag)
{
	char host[512];
	host_header(a, host, sizeof host);
	if (fprintf(out,
		    "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: lunar-ctest/%s\r\n"
		    "Accept: */*\r\nX-Ctest: %s\r\nX-Ctest-Seq: %s\r\n\r\n",
		    a->path, host, g_prog, g_prog, tag) < 0)
		die("fprintf:");
	if (fflush(out) != 0)
		die("fflush:");
	char line[4096];
	if (!fgets(line, sizeof line, in))
		die("EOF before the status line");
	if (strncmp(line, "HTTP/1.", 7) != 0)
		die("not a status line: %.80s", line);
	int status = atoi(line + 9);
	long length = -1;
	for (;;) {
		if (!fgets(line, sizeof line, in))
			die("EOF in the head");
		if (strcmp(line, "\r\n") == 0)
			break;
		if (strncasecmp(line, "Content-Length:", 15) == 0)
			length = atol(line + 15);
	}
	if (length < 0)
		die("no Content-Length in the answer (status %d)", status);
	char *body = malloc((size_t)length + 1);
	if (!body)
		die("out of memory");
	if (fread(body, 1, (size_t)length, in) != (size_t)length)
		die("short body");
	fwrite(body, 1, (size_t)length, stdout);
	fflush(stdout);
	free(body);
	note("status=%d body_len=%ld", status, length);
	return status == 200 ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct args a;
	ctest_init(argc, argv, &a);
	int fd = connect_blocking(&a);
#ifdef TWO_STREAMS
	FILE *in = fdopen(fd, "r");
	int wfd = dup(fd);
	if (wfd < 0)
		die("dup:");
	FILE *out = fdopen(wfd, "w");
#else
	FILE *in = fdopen(fd, "r+");
	FILE *out = in;
#endif
	if (!in || !out)
		die("fdopen:");
	int rc = exchange(in, out, &a, "1");
	fputc('\n', stdout);
	int rc2 = exchange(in, out, &a, "2");
	if (out != in && fclose(out) != 0)
		die("fclose:");
	if (fclose(in) != 0)
		die("fclose:");
	return rc ? rc : rc2;
}
