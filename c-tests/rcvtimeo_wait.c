/* The program's own timeouts while a response is awaited (issue 8, item 5).
 *
 * rcvtimeo_wait HOST PORT PATH MODE
 *
 * Connects (blocking), sends one GET and then waits for an answer that never comes
 * (the test proxy in `hang` or `head-part-hang` mode, or any server that reads and
 * does not answer). MODE says how the program waits and what it must get:
 *
 *   rcvtimeo   SO_RCVTIMEO 1 s, recv(): -1/EAGAIN (or EWOULDBLOCK) after ~1 s
 *   rcvtimeo2  SO_RCVTIMEO 2 s, recv(): -1/EAGAIN after ~2 s (the CPU check's wait)
 *   alarm      SIGALRM handler WITHOUT SA_RESTART, alarm(1), recv(): -1/EINTR at ~1 s
 *   restart    SIGALRM handler WITH SA_RESTART, alarm(1): the recv is restarted (no
 *              EINTR at 1 s); the handler then re-installs itself without
 *              SA_RESTART and arms alarm(1) again: -1/EINTR at ~2 s, 2 signals
 *   restart_rcvtimeo  SA_RESTART handler, alarm(1) and SO_RCVTIMEO 2 s: what Linux
 *              does without any library, -1/EINTR at ~1 s (signal(7): a recv on a
 *              socket with SO_RCVTIMEO is never restarted)
 *   poll       an event loop for 1 s: poll(fd, POLLIN) and a non-blocking recv when
 *              readable; ends with 0 (timed out, nothing read) at ~1 s, and at most 3
 *              readable-but-EAGAIN wake-ups (more is a busy loop)
 *   epoll      the same with epoll_wait (level-triggered EPOLLIN)
 *   poll_then_read  poll(fd, POLLIN) for what is left of 1 s, then a BLOCKING recv when
 *              readable, as Java's sockets with a read timeout do: ends with 0 (timed
 *              out) at ~1 s when nothing came; a recv that blocks (a readiness that was
 *              not input) runs into the watchdog
 *   select_then_read  the same with select (Perl's LWP with a timeout)
 *   epoll_then_read   the same with epoll_wait (level-triggered EPOLLIN)
 *   send_sndtimeo  a POST whose head says a 512 KiB body; 200 ms after the head, the
 *              body goes in 16 KiB blocking sends with SO_SNDTIMEO 1 s, until one is
 *              short or fails (for a server that stops reading, or closes, after the
 *              head): a short count or -1/EAGAIN at ~1 s
 *   send_alarm the same with a SIGALRM handler WITHOUT SA_RESTART and alarm(1): a short
 *              count or -1/EINTR at ~1 s
 *
 * (Linux restarts a recv() interrupted by an SA_RESTART handler only while the socket
 * has no SO_RCVTIMEO, see signal(7): hence `restart` has none and ends with a second,
 * non-restarting signal, and `restart_rcvtimeo` expects EINTR at the first signal.)
 *
 * Prints one line on stdout:
 *   mode=M result=R errno=NAME elapsed_ms=N cpu_ms=C nvcsw=V nivcsw=I signals=S
 * where cpu_ms is the process's user+system CPU time and nvcsw/nivcsw its voluntary /
 * involuntary context switches during the wait (getrusage(RUSAGE_SELF): all threads,
 * the library's too). Exit 0 iff result, errno and elapsed time are as expected; 1
 * otherwise; 2 on a setup error; 3 when the wait did not end within 6 s (a watchdog
 * thread prints the same line with result=hung and exits).
 */
#include "common.h"

#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <time.h>

#define WATCHDOG_MS 6000

static volatile sig_atomic_t g_signals;
static const char *g_mode = "?";
static struct timespec g_t0;
static struct rusage g_ru0;

static void on_alarm_restart(int sig);

static void install(void (*fn)(int), int flags)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = fn;
	sa.sa_flags = flags;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGALRM, &sa, NULL) != 0)
		die("sigaction:");
}

static void on_alarm(int sig)
{
	(void)sig;
	g_signals++;
}

static void on_alarm_restart(int sig)
{
	(void)sig;
	g_signals++;
	if (g_signals == 1) {
		/* the next one interrupts for good */
		install(on_alarm, 0);
		alarm(1);
	}
}

static double ms_since(const struct timespec *t0)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) * 1e3 + (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

static double tv_ms(const struct timeval *tv)
{
	return (double)tv->tv_sec * 1e3 + (double)tv->tv_usec / 1e3;
}

static const char *errno_name(int e)
{
	switch (e) {
	case 0:
		return "0";
	case EAGAIN:
		return "EAGAIN";
	case EINTR:
		return "EINTR";
	case ECONNRESET:
		return "ECONNRESET";
	case ETIMEDOUT:
		return "ETIMEDOUT";
	case ENOTCONN:
		return "ENOTCONN";
	case EPIPE:
		return "EPIPE";
	case EBADF:
		return "EBADF";
	default:
		return strerror(e);
	}
}

static void report(const char *result, int err)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double cpu = tv_ms(&ru.ru_utime) + tv_ms(&ru.ru_stime) - tv_ms(&g_ru0.ru_utime) -
		     tv_ms(&g_ru0.ru_stime);
	printf("mode=%s result=%s errno=%s elapsed_ms=%.0f cpu_ms=%.1f nvcsw=%ld nivcsw=%ld "
	       "signals=%d\n",
	       g_mode, result, errno_name(err), ms_since(&g_t0), cpu,
	       ru.ru_nvcsw - g_ru0.ru_nvcsw, ru.ru_nivcsw - g_ru0.ru_nivcsw, (int)g_signals);
	fflush(stdout);
}

static void *watchdog(void *arg)
{
	(void)arg;
	struct timespec ts = {WATCHDOG_MS / 1000, (WATCHDOG_MS % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
	report("hung", 0);
	fprintf(stderr, "%s: the wait did not end within %d ms\n", g_prog, WATCHDOG_MS);
	_exit(3);
}

#define SEND_BODY (512 * 1024)
#define SEND_BLOCK (16 * 1024)

/* send_sndtimeo / send_alarm: the exit status. */
static int send_body(const struct args *a, int fd, int by_alarm)
{
	size_t len;
	char cl[64];
	snprintf(cl, sizeof cl, "Content-Length: %d\r\n", SEND_BODY);
	char *head = build_request(a, "POST", a->path, cl, NULL, 0, &len);
	if (send(fd, head, len, MSG_NOSIGNAL) != (ssize_t)len)
		die("send head:");
	free(head);
	struct timespec pause = {0, 200 * 1000000L};
	nanosleep(&pause, NULL);
	if (by_alarm) {
		install(on_alarm, 0);
	} else {
		struct timeval tv = {1, 0};
		if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0)
			die("setsockopt SO_SNDTIMEO:");
	}
	static char block[SEND_BLOCK];
	memset(block, 'b', sizeof block);
	getrusage(RUSAGE_SELF, &g_ru0);
	clock_gettime(CLOCK_MONOTONIC, &g_t0);
	if (by_alarm)
		alarm(1);
	size_t total = 0;
	int err = 0;
	const char *result = "complete";
	while (total < SEND_BODY) {
		ssize_t n = send(fd, block, sizeof block, MSG_NOSIGNAL);
		if (n < 0) {
			err = errno;
			result = "-1";
			break;
		}
		total += (size_t)n;
		if (n < (ssize_t)sizeof block) {
			result = "short";
			break;
		}
	}
	double elapsed = ms_since(&g_t0);
	report(result, err);
	int want = by_alarm ? EINTR : EAGAIN;
	int ended = strcmp(result, "short") == 0 ||
		    (strcmp(result, "-1") == 0 && (err == want || err == EWOULDBLOCK));
	int ok = ended && elapsed >= 800 && elapsed <= 3000;
	if (!ok)
		note("unexpected: %s (sent %zu of %d)", g_mode, total, SEND_BODY);
	return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct args a;
	ctest_init(argc, argv, &a);
	alarm(0); /* no 30 s watchdog alarm: SIGALRM is this program's subject */
	if (argc < 5)
		die("usage: %s HOST PORT PATH "
		    "rcvtimeo|rcvtimeo2|alarm|restart|restart_rcvtimeo|poll|epoll|poll_then_read|"
		    "select_then_read|epoll_then_read|send_sndtimeo|send_alarm",
		    g_prog);
	g_mode = argv[4];
	int m_rcvtimeo = strcmp(g_mode, "rcvtimeo") == 0, m_rcvtimeo2 = strcmp(g_mode, "rcvtimeo2") == 0,
	    m_alarm = strcmp(g_mode, "alarm") == 0, m_restart = strcmp(g_mode, "restart") == 0,
	    m_restart_rcvtimeo = strcmp(g_mode, "restart_rcvtimeo") == 0,
	    m_poll = strcmp(g_mode, "poll") == 0, m_epoll = strcmp(g_mode, "epoll") == 0,
	    m_poll_read = strcmp(g_mode, "poll_then_read") == 0,
	    m_select_read = strcmp(g_mode, "select_then_read") == 0,
	    m_epoll_read = strcmp(g_mode, "epoll_then_read") == 0;
	int m_then_read = m_poll_read || m_select_read || m_epoll_read;
	int m_send_sndtimeo = strcmp(g_mode, "send_sndtimeo") == 0,
	    m_send_alarm = strcmp(g_mode, "send_alarm") == 0;
	if (!(m_rcvtimeo || m_rcvtimeo2 || m_alarm || m_restart || m_restart_rcvtimeo || m_poll ||
	      m_epoll || m_then_read || m_send_sndtimeo || m_send_alarm))
		die("unknown mode %s", g_mode);

	/* SIGALRM goes to the main thread only: the watchdog thread blocks it. */
	sigset_t alrm, old;
	sigemptyset(&alrm);
	sigaddset(&alrm, SIGALRM);
	pthread_sigmask(SIG_BLOCK, &alrm, &old);
	pthread_t wd;
	if (pthread_create(&wd, NULL, watchdog, NULL) != 0)
		die("pthread_create failed");
	pthread_sigmask(SIG_SETMASK, &old, NULL);

	int fd = connect_blocking(&a);
	if (m_send_sndtimeo || m_send_alarm)
		_exit(send_body(&a, fd, m_send_alarm));
	if (m_rcvtimeo || m_rcvtimeo2 || m_restart_rcvtimeo) {
		struct timeval tv = {m_rcvtimeo ? 1 : 2, 0};
		if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0)
			die("setsockopt SO_RCVTIMEO:");
	}
	int ep = -1;
	if (m_select_read && fd >= FD_SETSIZE)
		die("fd %d too high for select", fd);
	if (m_epoll || m_epoll_read) {
		ep = epoll_create1(EPOLL_CLOEXEC);
		if (ep < 0)
			die("epoll_create1:");
		struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
			die("epoll_ctl:");
	}
	size_t len;
	char *req = build_request(&a, "GET", a.path, NULL, NULL, 0, &len);
	for (size_t off = 0; off < len;) {
		ssize_t n = send(fd, req + off, len - off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("send:");
		}
		off += (size_t)n;
	}
	free(req);

	if (m_alarm)
		install(on_alarm, 0);
	if (m_restart)
		install(on_alarm_restart, SA_RESTART);
	if (m_restart_rcvtimeo)
		install(on_alarm, SA_RESTART);

	char buf[4096];
	char result[32];
	int err = 0;
	getrusage(RUSAGE_SELF, &g_ru0);
	clock_gettime(CLOCK_MONOTONIC, &g_t0);
	if (m_alarm || m_restart || m_restart_rcvtimeo)
		alarm(1);
	if (m_poll || m_epoll || m_then_read) {
		/* An event loop: wait, and read (non-blocking) whatever is said to be there.
		 * A readable socket whose read answers EAGAIN may happen once (bytes the
		 * library takes as they come); more than a few such wake-ups is a spin. */
		int r, reads = 0;
		for (;;) {
			int left = 1000 - (int)ms_since(&g_t0);
			if (left <= 0) {
				r = 0;
				break;
			}
			if (m_poll || m_poll_read) {
				struct pollfd p = {.fd = fd, .events = POLLIN};
				r = poll(&p, 1, left);
			} else if (m_select_read) {
				fd_set rd;
				FD_ZERO(&rd);
				FD_SET(fd, &rd);
				struct timeval tv = {left / 1000, (left % 1000) * 1000};
				r = select(fd + 1, &rd, NULL, NULL, &tv);
			} else {
				struct epoll_event evs[4];
				r = epoll_wait(ep, evs, 4, left);
			}
			if (r <= 0)
				break;
			ssize_t n = recv(fd, buf, sizeof buf, m_then_read ? 0 : MSG_DONTWAIT);
			if (n >= 0 || errno != EAGAIN) {
				r = n > 0 ? -2 : n == 0 ? -3 : -4; /* bytes, EOF, error */
				break;
			}
			if (++reads > 3) {
				r = -5; /* readable, yet nothing to read, again and again */
				break;
			}
		}
		err = r == -1 || r == -4 ? errno : 0;
		snprintf(result, sizeof result, "%d", r);
	} else {
		ssize_t r = recv(fd, buf, sizeof buf, 0);
		err = r < 0 ? errno : 0;
		snprintf(result, sizeof result, "%zd", r);
	}
	double elapsed = ms_since(&g_t0);
	report(result, err);

	int ok;
	if (m_rcvtimeo)
		ok = strcmp(result, "-1") == 0 && (err == EAGAIN || err == EWOULDBLOCK) &&
		     elapsed >= 800 && elapsed <= 3000;
	else if (m_rcvtimeo2)
		ok = strcmp(result, "-1") == 0 && (err == EAGAIN || err == EWOULDBLOCK) &&
		     elapsed >= 1800 && elapsed <= 4000;
	else if (m_alarm || m_restart_rcvtimeo)
		ok = strcmp(result, "-1") == 0 && err == EINTR && g_signals == 1 && elapsed >= 800 &&
		     elapsed <= 3000;
	else if (m_restart)
		ok = strcmp(result, "-1") == 0 && err == EINTR && g_signals == 2 && elapsed >= 1800 &&
		     elapsed <= 4000;
	else
		ok = strcmp(result, "0") == 0 && elapsed >= 800 && elapsed <= 3000;
	if (!ok)
		note("unexpected: %s", g_mode);
	close(fd);
	if (ep >= 0)
		close(ep);
	_exit(ok ? 0 : 1);
}
