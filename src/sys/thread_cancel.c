/* A thread cancelled (pthread_cancel) while the library works for it, as a program stops a
 * worker blocked in a read: the cancellation must reach the program's frames as without
 * us. glibc acts on it at a cancellation point (read, poll, connect, ...) by a forced
 * unwind; Rust's catch_unwind, which keeps a panic of ours from crossing into the
 * program, aborts the process when such an unwind reaches it (rust-lang/rust#70212).
 *
 * So the library's work runs inside lunar_run_catching_cancel, below that catch: it
 * registers a cancellation buffer as C's pthread_cleanup_push does, and glibc's forced
 * unwind, having run the cleanups of the frames above it (Rust's drops: locks are
 * released), jumps back here. Instead of going on unwinding we return 1; the caller
 * leaves its own frames and ends the thread with lunar_exit_cancelled, which unwinds
 * through the program's frames (its cleanup handlers run) as the cancellation would have.
 *
 * Compiled with -fexceptions: a Rust panic leaving the work through this frame runs the
 * cleanup below, so the buffer never outlives the frame. glibc's pthread.h declares the
 * registration functions only for builds without exceptions (its macros then use them). */
#include <pthread.h>
#include <stddef.h>

extern void __pthread_register_cancel(__pthread_unwind_buf_t *buffer) __cleanup_fct_attribute;
extern void __pthread_unregister_cancel(__pthread_unwind_buf_t *buffer) __cleanup_fct_attribute;

static void forget_buffer(__pthread_unwind_buf_t **registered)
{
	if (*registered)
		__pthread_unregister_cancel(*registered);
}

/* Returns 0 when work(context) returned, 1 when the thread was cancelled inside it. The
 * first frame work's unwind meets is work's own caller here: glibc jumps back without
 * running that frame's cleanups, so `work` must do nothing but call the real work. */
int lunar_run_catching_cancel(void (*work)(void *), void *context)
{
	__pthread_unwind_buf_t buffer;
	if (__builtin_expect(__sigsetjmp_cancel(buffer.__cancel_jmp_buf, 0), 0)) {
		/* Still registered: the jump skipped the cleanup below. */
		__pthread_unregister_cancel(&buffer);
		return 1;
	}
	__pthread_register_cancel(&buffer);
	__pthread_unwind_buf_t *registered __attribute__((cleanup(forget_buffer))) = &buffer;
	work(context);
	registered = NULL;
	__pthread_unregister_cancel(&buffer);
	return 0;
}

/* Ends the calling thread as a cancelled one, the cancellation caught above being under
 * way (glibc marked the thread as exiting: no cancellation point acts again meanwhile). */
void lunar_exit_cancelled(void)
{
	pthread_exit(PTHREAD_CANCELED);
}
