/* Socket I/O through io_uring after a libc connect: `io_uring_send HOST PORT PATH`.
 * The ring is set up with syscall(SYS_io_uring_setup) (as programs without liburing, and
 * Rust's io-uring crate, do), the socket connected with connect(), and one GET is sent
 * with IORING_OP_SEND, its answer read with IORING_OP_RECV: no byte meets a preloaded
 * write or read hook.
 *   -DSETUP_AFTER_CONNECT  the ring is set up after the connect
 *   -DUSE_LIBURING         the ring is set up with liburing's io_uring_queue_init (linked
 *                          against liburing.so.2; declared here, no liburing headers
 *                          needed) and the I/O is done with write()/read(): only the
 *                          set-up matters to the test
 * Prints the body. Exit as in common.h; 77 when the kernel refuses io_uring. */
#include "common.h"
#include <linux/io_uring.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#ifdef USE_LIBURING
/* struct io_uring is opaque here: liburing 2.x's is about 216 bytes. */
int io_uring_queue_init(unsigned entries, void *ring, unsigned flags);
void io_uring_queue_exit(void *ring);
static long ring_storage[128];

static void setup_ring(void)
{
	int rc = io_uring_queue_init(8, ring_storage, 0);
	if (rc < 0) {
		note("io_uring_queue_init: %s", strerror(-rc));
		exit(77);
	}
}
#else
struct ring {
	int fd;
	unsigned *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
	struct io_uring_sqe *sqes;
	struct io_uring_cqe *cqes;
};
static struct ring ring;

static void setup_ring(void)
{
	struct io_uring_params p;
	memset(&p, 0, sizeof p);
	ring.fd = (int)syscall(SYS_io_uring_setup, 8, &p);
	if (ring.fd < 0) {
		note("io_uring_setup: %s", strerror(errno));
		exit(77);
	}
	size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	char *sq = mmap(NULL, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring.fd,
			IORING_OFF_SQ_RING);
	char *cq = mmap(NULL, cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring.fd,
			IORING_OFF_CQ_RING);
	ring.sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_POPULATE, ring.fd, IORING_OFF_SQES);
	if (sq == MAP_FAILED || cq == MAP_FAILED || ring.sqes == MAP_FAILED)
		die("mmap of the ring:");
	ring.sq_tail = (unsigned *)(sq + p.sq_off.tail);
	ring.sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
	ring.sq_array = (unsigned *)(sq + p.sq_off.array);
	ring.cq_head = (unsigned *)(cq + p.cq_off.head);
	ring.cq_tail = (unsigned *)(cq + p.cq_off.tail);
	ring.cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
	ring.cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
}

/* One operation on fd, submitted and waited for; returns its result (>= 0 or -errno). */
static int ring_io(int op, int fd, void *buf, size_t len)
{
	unsigned tail = *ring.sq_tail;
	unsigned index = tail & *ring.sq_mask;
	struct io_uring_sqe *sqe = &ring.sqes[index];
	memset(sqe, 0, sizeof *sqe);
	sqe->opcode = (unsigned char)op;
	sqe->fd = fd;
	sqe->addr = (unsigned long)buf;
	sqe->len = (unsigned)len;
	ring.sq_array[index] = index;
	__atomic_store_n(ring.sq_tail, tail + 1, __ATOMIC_RELEASE);
	if (syscall(SYS_io_uring_enter, ring.fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0)
		die("io_uring_enter:");
	unsigned head = *ring.cq_head;
	while (head == __atomic_load_n(ring.cq_tail, __ATOMIC_ACQUIRE))
		if (syscall(SYS_io_uring_enter, ring.fd, 0, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0)
			die("io_uring_enter (wait):");
	int res = ring.cqes[head & *ring.cq_mask].res;
	__atomic_store_n(ring.cq_head, head + 1, __ATOMIC_RELEASE);
	return res;
}

static ssize_t uring_read(int fd, void *buf, size_t n, void *ctx)
{
	(void)ctx;
	int res = ring_io(IORING_OP_RECV, fd, buf, n);
	if (res < 0) {
		errno = -res;
		return -1;
	}
	return res;
}
#endif

int main(int argc, char **argv)
{
	struct args a;
	ctest_init(argc, argv, &a);
#ifndef SETUP_AFTER_CONNECT
	setup_ring();
#endif
	int fd = connect_blocking(&a);
#ifdef SETUP_AFTER_CONNECT
	setup_ring();
#endif
	size_t len;
	char *req = build_request(&a, "GET", a.path, NULL, NULL, 0, &len);
#ifdef USE_LIBURING
	write_all(fd, req, len);
	int rc = read_and_finish(fd, plain_read, NULL);
	io_uring_queue_exit(ring_storage);
#else
	for (size_t off = 0; off < len;) {
		int res = ring_io(IORING_OP_SEND, fd, req + off, len - off);
		if (res <= 0) {
			errno = -res;
			die("IORING_OP_SEND:");
		}
		off += (size_t)res;
	}
	int rc = read_and_finish(fd, uring_read, NULL);
	close(ring.fd);
#endif
	free(req);
	close(fd);
	return rc;
}
