/* recv(MSG_PEEK) the first bytes of the response, then read() for real: the real
 * read must return the very bytes the peek showed (and the peek must not consume).
 * Also peeks again in the middle of the body. */
#include "common.h"

struct peek_state {
	int peeks;
	int checked;
};

static ssize_t peek_then_read(int fd, void *buf, size_t n, void *ctx)
{
	struct peek_state *st = ctx;
	char peekbuf[64];
	size_t want = n < sizeof peekbuf ? n : sizeof peekbuf;
	ssize_t p;
	do
		p = recv(fd, peekbuf, want, MSG_PEEK);
	while (p < 0 && errno == EINTR);
	if (p < 0)
		die("recv MSG_PEEK:");
	if (p == 0)
		return 0;
	st->peeks++;
	/* a second peek must show the same bytes */
	char again[64];
	ssize_t p2 = recv(fd, again, (size_t)p, MSG_PEEK);
	if (p2 < p || memcmp(again, peekbuf, (size_t)p) != 0)
		die("second MSG_PEEK differs from the first (got %zd of %zd)", p2, p);
	ssize_t got;
	do
		got = read(fd, buf, n);
	while (got < 0 && errno == EINTR);
	if (got < 0)
		die("read:");
	size_t cmp = (size_t)got < (size_t)p ? (size_t)got : (size_t)p;
	if (memcmp(buf, peekbuf, cmp) != 0)
		die("read returned other bytes than MSG_PEEK showed: peek '%.*s' read '%.*s'",
		    (int)cmp, peekbuf, (int)cmp, (char *)buf);
	st->checked++;
	return got;
}

int main(int argc, char **argv)
{
	struct args a;
	ctest_init(argc, argv, &a);
	size_t len;
	char *req = build_request(&a, "GET", a.path, NULL, NULL, 0, &len);
	int fd = connect_blocking(&a);
	write_all(fd, req, len);
	free(req);
	struct peek_state st = {0, 0};
	int rc = read_and_finish(fd, peek_then_read, &st);
	note("peeks=%d checked=%d", st.peeks, st.checked);
	close(fd);
	return rc;
}
