/* A non-blocking program whose request the proxy fails: the library hides the failure
 * (the program's read answers EAGAIN) and resends the request to the origin from a
 * helper thread. The program gives up meanwhile: it closes the fd and makes a
 * socketpair whose first end takes the same number. Nothing may arrive on the pair: the
 * resend belongs to the closed socket, never to the number's next owner.
 *
 * recovery_close_race HOST PORT PATH   (the test proxy in error:2 mode)
 *
 * The request is exactly 4092 bytes: the library's test build (feature race-probe) then
 * pauses the helper 300 ms after its last check that the fd is still the program's,
 * right before the resend; the program closes 100 ms after its read's EAGAIN, inside
 * that pause.
 *
 * Exit: 0 nothing arrived on the reused number; 1 bytes arrived (printed on stderr);
 * 2 a setup error (the read did not answer EAGAIN, the number was not reused).
 */
#include "common.h"

#define RESEND_PAUSING_WRITE 4092

int main(int argc, char **argv)
{
	struct args a;
	ctest_init(argc, argv, &a);
	int fd = send_padded_then_nonblocking(&a, RESEND_PAUSING_WRITE);
	/* The proxy's failure arrives; the library takes it and answers EAGAIN. */
	struct pollfd wait = {.fd = fd, .events = POLLIN};
	if (poll(&wait, 1, 10000) != 1)
		die("no answer within 10 s");
	char buf[4096];
	ssize_t got = read(fd, buf, sizeof buf);
	if (got >= 0 || errno != EAGAIN)
		die("the read did not answer EAGAIN (got %zd): the failure was not hidden", got);
	usleep(100 * 1000);
	close(fd);
	return bytes_reach_the_reused_number(fd, 1500);
}
