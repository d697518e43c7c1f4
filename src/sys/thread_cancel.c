/* A thread cancelled (pthread_cancel) while the library works for it, as a program stops a
 * worker blocked in a read: the cancellation must reach the program's frames as without
 * us. glibc acts on it at a cancellation point (read, poll, connect, ...) by a forced
 * unwind; Rust's catch_unwind, which keeps a panic of ours from crossing into the
 * program, aborts the process when such an unwind reaches it (rust-lang/rust#70212).
 *
 * So the library's work runs inside lunar_run_catching_cancel, below that catch: it
 * registers a cancellation buffer as C's pthread_cleanup_push does, and glibc's forced
 * unwind, having run the cleanups of the frames above it (Rust's drops: locks are
 * released), jumps back here. Instead of going on unwinding we return 1, with the buffer
 * copied out for the caller, which leaves its own frames and resumes the unwind with it
 * (lunar_resume_cancel), through the program's frames (its cleanup handlers run) as the
 * cancellation would have gone. The same holds for the program's own pthread_exit from
 * a signal handler that interrupted our work: the thread's result is the one it gave.
 *
 * Compiled with -fexceptions: a Rust panic leaving the work through this frame runs the
 * cleanup below, so the buffer never outlives the frame. glibc's pthread.h declares the
 * registration functions only for builds without exceptions (its macros then use them). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/syscall.h>
#include <time.h>

extern void __pthread_register_cancel(__pthread_unwind_buf_t *buffer) __cleanup_fct_attribute;
extern void __pthread_unregister_cancel(__pthread_unwind_buf_t *buffer) __cleanup_fct_attribute;
extern void __pthread_unwind_next(__pthread_unwind_buf_t *buffer) __cleanup_fct_attribute
	__attribute__((__noreturn__));

static void forget_buffer(__pthread_unwind_buf_t **registered)
{
	if (*registered)
		__pthread_unregister_cancel(*registered);
}

_Static_assert(sizeof(__pthread_unwind_buf_t) <= 128 && _Alignof(__pthread_unwind_buf_t) <= 16,
	       "thread_cancel.rs's UnwindBuffer holds a __pthread_unwind_buf_t");

/* Returns 0 when work(context) returned, 1 when the thread was cancelled (or exited)
 * inside it; then `resume` holds what lunar_resume_cancel needs. The first frame work's
 * unwind meets is work's own caller here: glibc jumps back without running that frame's
 * cleanups, so `work` must do nothing but call the real work. */
int lunar_run_catching_cancel(void (*work)(void *), void *context, __pthread_unwind_buf_t *resume)
{
	__pthread_unwind_buf_t buffer;
	if (__builtin_expect(__sigsetjmp_cancel(buffer.__cancel_jmp_buf, 0), 0)) {
		/* Still registered: the jump skipped the cleanup below. */
		__pthread_unregister_cancel(&buffer);
		*resume = buffer;
		return 1;
	}
	__pthread_register_cancel(&buffer);
	__pthread_unwind_buf_t *registered __attribute__((cleanup(forget_buffer))) = &buffer;
	work(context);
	registered = NULL;
	__pthread_unregister_cancel(&buffer);
	return 0;
}

/* Goes on with the unwind caught above (glibc marked the thread as exiting: no
 * cancellation point acts again meanwhile), from the buffer registered before ours, as
 * pthread_cleanup_pop's unwinding path does: the thread's result stays the one glibc set
 * (PTHREAD_CANCELED, or pthread_exit's value). */
void lunar_resume_cancel(__pthread_unwind_buf_t *resume)
{
	__pthread_unwind_next(resume);
}

/* A futex wait that a cancellation ends, for the library's waits on another thread's
 * work inside a program's call (a recovery resending, a handshake with the proxy): a
 * futex is no cancellation point, and glibc (2.36) signals a cancellation only to a
 * thread in a cancellation point or of the asynchronous cancel type. So the wait alone
 * is made asynchronous, as glibc's own blocking calls did before 2.41: the signal's
 * unwind then starts in this frame or in libc's, never in Rust code (whose unwind tables
 * cover call sites only). libc's syscall, not the program's name for it (ours is hooked,
 * Rust code). Returns what syscall(2) returns, errno as it left it. */
long lunar_futex_wait_cancellable(unsigned *word, unsigned value, const struct timespec *timeout)
{
	static long (*volatile real_syscall)(long, ...);
	if (!real_syscall)
		real_syscall = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
	int previous;
	pthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS, &previous);
	long result = real_syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, value, timeout, NULL, 0);
	int saved = errno;
	pthread_setcanceltype(previous, &previous);
	errno = saved;
	return result;
}
