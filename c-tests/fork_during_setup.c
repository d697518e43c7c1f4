/* fork while other threads are inside the library's first set-up.
 *
 * Usage: fork_during_setup IPV4 PORT PATH [ROUNDS]
 *
 * Each round runs in a fresh worker process (forked from main, which never touches the
 * network, so the library has set nothing up in it): 8 threads, released together by a
 * barrier, make the process's first connects and requests (getaddrinfo, connect: the
 * library's first set-up and its proxy handshake), while the worker's main thread forks
 * FORKS children one after another. Each child makes its own connect (no name lookup:
 * nothing of libc's own that another thread may hold at the fork) and GET of PATH, and
 * _exits 0 on a 200. The host is an address (main must not call getaddrinfo either: the
 * library would set itself up there, before the workers exist). The worker waits for each child at most
 * CHILD_TIMEOUT_SEC: a child still running then is hung, and is killed.
 *
 * Requests carry `X-Ctest-Seq: R-t-I` (thread I of round R) or `R-c-K` (child K).
 * Nothing is printed on stdout; a summary on stderr. Exit: 0 every round ok; 3 a child
 * hung; 1 a response was not 200; 2 any other error.
 */
#include "common.h"
#include <pthread.h>
#include <sys/wait.h>
#include <time.h>

#define NTHREADS 8
#define FORKS 6
#define CHILD_TIMEOUT_SEC 10
#define WORKER_WATCHDOG_SEC 25

static struct args g_args;
static struct sockaddr_in g_addr;
static pthread_barrier_t g_start;
static int g_round;
static int g_status[NTHREADS]; /* HTTP status per thread, -1 on error */

/* One GET on a connected socket; the status, or -1. No stdio: another thread may hold
 * a FILE lock when a fork happens. */
static int get_once(int fd, const char *seq)
{
	char extra[64];
	snprintf(extra, sizeof extra, "X-Ctest-Seq: %s\r\n", seq);
	size_t len;
	char *req = build_request(&g_args, "GET", g_args.path, extra, NULL, 0, &len);
	write_all(fd, req, len);
	free(req);
	struct rbuf rb = {0};
	struct response r;
	read_response(fd, &rb, &r, plain_read, NULL);
	int status = r.status;
	free_response(&r);
	free(rb.data);
	return status;
}

static void *worker_thread(void *arg)
{
	long id = (long)arg;
	pthread_barrier_wait(&g_start);
	int fd = connect_blocking(&g_args);
	char seq[32];
	snprintf(seq, sizeof seq, "%d-t-%ld", g_round, id);
	g_status[id] = get_once(fd, seq);
	close(fd);
	return NULL;
}

/* The child: its own connect and one GET. */
static void child(int k)
{
	alarm(CHILD_TIMEOUT_SEC + 5);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&g_addr, sizeof g_addr) != 0)
		_exit(2);
	char seq[32];
	snprintf(seq, sizeof seq, "%d-c-%d", g_round, k);
	int status = get_once(fd, seq);
	close(fd);
	_exit(status == 200 ? 0 : 1);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits for pid at most CHILD_TIMEOUT_SEC. 0: exited 0; 3: hung (killed); 1/2 otherwise. */
static int wait_child(pid_t pid, int k)
{
	double deadline = now() + CHILD_TIMEOUT_SEC;
	int st;
	for (;;) {
		pid_t got = waitpid(pid, &st, WNOHANG);
		if (got == pid)
			break;
		if (got < 0 && errno != EINTR) {
			note("waitpid: %s", strerror(errno));
			return 2;
		}
		if (now() > deadline) {
			note("round %d: child %d (pid %d) still running after %d s: hung",
			     g_round, k, (int)pid, CHILD_TIMEOUT_SEC);
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return 3;
		}
		struct timespec nap = {0, 5 * 1000 * 1000};
		nanosleep(&nap, NULL);
	}
	if (WIFEXITED(st))
		return WEXITSTATUS(st) == 0 ? 0 : WEXITSTATUS(st) == 1 ? 1 : 2;
	if (WTERMSIG(st) == SIGALRM) {
		/* waited for while an earlier child was: its own watchdog ended it */
		note("round %d: child %d hung (its watchdog fired)", g_round, k);
		return 3;
	}
	note("round %d: child %d died with signal %d", g_round, k, WTERMSIG(st));
	return 2;
}

/* One round, in a fresh worker process. */
static int round_in_worker(void)
{
	alarm(WORKER_WATCHDOG_SEC);
	pthread_barrier_init(&g_start, NULL, NTHREADS + 1);
	pthread_t t[NTHREADS];
	for (long i = 0; i < NTHREADS; i++)
		if (pthread_create(&t[i], NULL, worker_thread, (void *)i) != 0)
			die("pthread_create failed");
	pid_t kids[FORKS];
	pthread_barrier_wait(&g_start);
	for (int k = 0; k < FORKS; k++) {
		/* spread the forks over the threads' first connects */
		for (volatile int spin = 0; spin < k * (g_round % 4 + 1) * 2000; spin++)
			;
		kids[k] = fork();
		if (kids[k] < 0)
			die("fork:");
		if (kids[k] == 0)
			child(k);
	}
	int rc = 0; /* the worst: 3 hung > 2 error > 1 not 200 > 0 */
	for (int k = 0; k < FORKS; k++) {
		int r = wait_child(kids[k], k);
		if (r > rc)
			rc = r;
	}
	for (int i = 0; i < NTHREADS; i++) {
		pthread_join(t[i], NULL);
		if (g_status[i] != 200) {
			note("round %d: thread %d got status %d", g_round, i, g_status[i]);
			if (rc == 0)
				rc = 1;
		}
	}
	return rc;
}

int main(int argc, char **argv)
{
	ctest_init(argc, argv, &g_args);
	int rounds = argc > 4 ? atoi(argv[4]) : 1;
	if (rounds < 1)
		rounds = 1;
	alarm((unsigned)rounds * (WORKER_WATCHDOG_SEC + 5));
	g_addr.sin_family = AF_INET;
	g_addr.sin_port = htons((uint16_t)atoi(g_args.port));
	if (inet_pton(AF_INET, g_args.host, &g_addr.sin_addr) != 1)
		die("%s is not an IPv4 address", g_args.host);
	for (g_round = 0; g_round < rounds; g_round++) {
		fflush(NULL);
		pid_t w = fork();
		if (w < 0)
			die("fork:");
		if (w == 0)
			_exit(round_in_worker());
		int st;
		while (waitpid(w, &st, 0) < 0)
			if (errno != EINTR)
				die("waitpid:");
		int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 2;
		if (!WIFEXITED(st))
			note("round %d: worker died with signal %d", g_round, WTERMSIG(st));
		if (rc != 0) {
			note("round %d of %d failed (exit %d)", g_round, rounds, rc);
			return rc;
		}
	}
	note("%d rounds: %d threads and %d forked children each, all answered", rounds,
	     NTHREADS, FORKS);
	return 0;
}
