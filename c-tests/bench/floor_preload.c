/* The floor for the untracked-fd rows of `make bench`: the least a preload that must
 * tell its own sockets from the program's can add to an untracked call. Each hook checks
 * a static table of 65536 pointers indexed by fd (the library's first level, without its
 * second level for higher fds), then jumps to libc's function, found once with
 * dlsym(RTLD_NEXT). Built with -O2 -fPIC -fvisibility=hidden, as a C library would be.
 * It tracks nothing, so its tracked path is never taken. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

static void *tracked[65536];

#define TRACKED(fd) ((unsigned)(fd) < 65536 && tracked[(unsigned)(fd)])

/* The tracked path: out of line, entered by a tail call. */
__attribute__((noinline, cold)) static long slow(int fd) { tracked[fd] = 0; return -1; }

/* libc's function, found at the first call (in a cold function that then calls it). */
#define HOOK(ret, name, params, args) \
	static ret (*real_##name) params; \
	__attribute__((noinline, cold)) static ret first_##name params \
	{ \
		real_##name = (ret (*) params)dlsym(RTLD_NEXT, #name); \
		return real_##name args; \
	} \
	__attribute__((visibility("default"))) ret name params \
	{ \
		if (TRACKED(fd)) \
			return slow(fd); \
		ret (*call) params = real_##name; \
		if (__builtin_expect(!call, 0)) \
			return first_##name args; \
		return call args; \
	}

HOOK(ssize_t, send, (int fd, const void *b, size_t n, int f), (fd, b, n, f))
HOOK(ssize_t, recv, (int fd, void *b, size_t n, int f), (fd, b, n, f))
HOOK(ssize_t, write, (int fd, const void *b, size_t n), (fd, b, n))
HOOK(int, close, (int fd), (fd))
