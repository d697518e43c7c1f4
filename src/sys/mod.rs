//! The real libc functions behind our hooks.
//!
//! Our exported `connect`, `write`, ... shadow libc's for the whole process, including
//! for this library's own calls: calling `libc::write` here would re-enter our hook. Every
//! call this library makes to a hooked function goes through this module instead, which
//! looks the next definition up once with `dlsym(RTLD_NEXT, …)` and keeps it in an atomic
//! (no lock, safe to race: every thread stores the same value).
//!
//! `socket`: what the layers above do with sockets through these functions (bounded
//! connects, moving a socket, waiting for readiness, socket options). `poll_one`: a wait
//! another thread can cut short (a recovery's helper, `conn::fd_hold`). `file`: reading the
//! configuration file. `residency`: what a diverting process keeps mapped of the library.
//! `thread_cancel`: a thread cancelled while the library works for it.

pub mod file;
mod lazy_imports;
mod own_socket;
pub mod poll_one;
pub mod residency;
pub mod socket;
pub mod thread_cancel;
mod v4_mapped;

use libc::{c_char, c_int, c_ulong, c_void, iovec, msghdr, size_t, sockaddr, socklen_t, ssize_t};
use std::sync::atomic::{AtomicPtr, Ordering};

/// glibc's `program_invocation_short_name` (the basename of argv[0]), looked up when
/// asked: a reference to it would be a symbol lookup at every process start.
pub fn program_short_name() -> Option<&'static [u8]> {
    // SAFETY: a NUL-terminated literal; RTLD_DEFAULT is valid anywhere.
    let slot = unsafe {
        libc::dlsym(
            libc::RTLD_DEFAULT,
            c"program_invocation_short_name".as_ptr(),
        )
    };
    if slot.is_null() {
        return None;
    }
    // SAFETY: glibc's (and musl's) variable, a pointer set once before main to a
    // NUL-terminated string in argv[0] that lives as long as the process, or null.
    let name = unsafe { *slot.cast::<*const c_char>() };
    // SAFETY: as above.
    (!name.is_null()).then(|| unsafe { std::ffi::CStr::from_ptr(name) }.to_bytes())
}

/// Looks `name` up in the libraries after ours and caches it in `slot`.
#[cold]
#[inline(never)]
fn resolve(slot: &AtomicPtr<()>, name: &'static [u8]) -> *mut () {
    // SAFETY: `name` is a NUL-terminated literal; RTLD_NEXT is valid in a shared object.
    let found =
        unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr() as *const c_char) }.cast::<()>();
    // glibc exports every name we ask for; a libc without one cannot run this program
    // with or without us, so there is no sensible fallback to keep.
    assert!(
        !found.is_null(),
        "liblunar_intercept: libc lacks a hooked symbol"
    );
    slot.store(found, Ordering::Relaxed);
    found
}

/// Declares `pub unsafe fn NAME(args) -> ret` calling libc's own NAME. The slot starts
/// out holding a resolver of the same signature, so the hot path is a load and a tail
/// call with no test: the first call goes through the resolver, which stores libc's
/// function in the slot and calls it.
/// `C-unwind`: a cancellation point (read, poll, connect, ...) of a cancelled thread
/// unwinds (glibc's forced unwind), and Rust must know that the call can.
macro_rules! real {
    ($( fn $name:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty; )*) => {$(
        /// libc's own function of this name.
        ///
        /// # Safety
        /// As the libc function's contract.
        #[inline]
        pub unsafe fn $name($($arg: $ty),*) -> $ret {
            #[cold]
            #[inline(never)]
            unsafe extern "C-unwind" fn first_call($($arg: $ty),*) -> $ret {
                let address = resolve(&ADDRESS, $crate::hot_data::hot_bytes!(concat!(stringify!($name), "\0").as_bytes()));
                // SAFETY: the symbol is libc's function of this exact C signature.
                let function: unsafe extern "C-unwind" fn($($ty),*) -> $ret = unsafe { std::mem::transmute(address) };
                // SAFETY: the caller upholds the libc function's contract.
                unsafe { function($($arg),*) }
            }
            static ADDRESS: AtomicPtr<()> = AtomicPtr::new(first_call as *mut ());
            // SAFETY: the slot holds `first_call` or libc's function, both of this exact
            // C signature.
            let function: unsafe extern "C-unwind" fn($($ty),*) -> $ret = unsafe { std::mem::transmute(ADDRESS.load(Ordering::Relaxed)) };
            // SAFETY: the caller upholds the libc function's contract.
            unsafe { function($($arg),*) }
        }
    )*};
}

real! {
    fn socket(domain: c_int, kind: c_int, protocol: c_int) -> c_int;
    fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int;
    fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int;
    fn accept4(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, flags: c_int) -> c_int;
    fn getaddrinfo(node: *const c_char, service: *const c_char, hints: *const libc::addrinfo, res: *mut *mut libc::addrinfo) -> c_int;
    fn getsockopt(fd: c_int, level: c_int, name: c_int, value: *mut c_void, len: *mut socklen_t) -> c_int;
    fn getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int;
    fn send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t;
    fn sendto(fd: c_int, buf: *const c_void, len: size_t, flags: c_int, addr: *const sockaddr, alen: socklen_t) -> ssize_t;
    fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t;
    fn write(fd: c_int, buf: *const c_void, len: size_t) -> ssize_t;
    fn writev(fd: c_int, iov: *const iovec, count: c_int) -> ssize_t;
    fn recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t;
    fn recvfrom(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int, addr: *mut sockaddr, alen: *mut socklen_t) -> ssize_t;
    fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t;
    fn read(fd: c_int, buf: *mut c_void, len: size_t) -> ssize_t;
    fn readv(fd: c_int, iov: *const iovec, count: c_int) -> ssize_t;
    fn __recv_chk(fd: c_int, buf: *mut c_void, len: size_t, buflen: size_t, flags: c_int) -> ssize_t;
    fn __recvfrom_chk(fd: c_int, buf: *mut c_void, len: size_t, buflen: size_t, flags: c_int, addr: *mut sockaddr, alen: *mut socklen_t) -> ssize_t;
    fn __read_chk(fd: c_int, buf: *mut c_void, len: size_t, buflen: size_t) -> ssize_t;
    fn close(fd: c_int) -> c_int;
    fn close_range(first: libc::c_uint, last: libc::c_uint, flags: c_int) -> c_int;
    fn closefrom(first: c_int) -> ();
    fn shutdown(fd: c_int, how: c_int) -> c_int;
    fn sendfile(out_fd: c_int, in_fd: c_int, offset: *mut libc::off_t, count: size_t) -> ssize_t;
    fn splice(fd_in: c_int, off_in: *mut libc::loff_t, fd_out: c_int, off_out: *mut libc::loff_t, len: size_t, flags: libc::c_uint) -> ssize_t;
    fn ioctl(fd: c_int, request: c_ulong, arg: *mut c_void) -> c_int;
    fn dup(fd: c_int) -> c_int;
    fn dup2(fd: c_int, new_fd: c_int) -> c_int;
    fn dup3(fd: c_int, new_fd: c_int, flags: c_int) -> c_int;
    fn fcntl(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int;
    fn fcntl64(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int;
    fn poll(fds: *mut libc::pollfd, count: libc::nfds_t, timeout: c_int) -> c_int;
    fn ppoll(fds: *mut libc::pollfd, count: libc::nfds_t, timeout: *const libc::timespec, mask: *const libc::sigset_t) -> c_int;
    fn epoll_ctl(epoll: c_int, op: c_int, fd: c_int, event: *mut libc::epoll_event) -> c_int;
    fn epoll_pwait(epoll: c_int, events: *mut libc::epoll_event, max: c_int, timeout: c_int, mask: *const libc::sigset_t) -> c_int;
    fn epoll_pwait2(epoll: c_int, events: *mut libc::epoll_event, max: c_int, timeout: *const libc::timespec, mask: *const libc::sigset_t) -> c_int;
    fn select(count: c_int, read: *mut libc::fd_set, write: *mut libc::fd_set, except: *mut libc::fd_set, timeout: *mut libc::timeval) -> c_int;
    fn pselect(count: c_int, read: *mut libc::fd_set, write: *mut libc::fd_set, except: *mut libc::fd_set, timeout: *const libc::timespec, mask: *const libc::sigset_t) -> c_int;
    fn socketpair(domain: c_int, kind: c_int, protocol: c_int, fds: *mut c_int) -> c_int;
    fn syscall(number: libc::c_long, a1: libc::c_long, a2: libc::c_long, a3: libc::c_long, a4: libc::c_long, a5: libc::c_long, a6: libc::c_long) -> libc::c_long;
    fn fdopen(fd: c_int, mode: *const c_char) -> *mut libc::FILE;
    fn fclose(stream: *mut libc::FILE) -> c_int;
    fn freopen(path: *const c_char, mode: *const c_char, stream: *mut libc::FILE) -> *mut libc::FILE;
    fn freopen64(path: *const c_char, mode: *const c_char, stream: *mut libc::FILE) -> *mut libc::FILE;
}

// Not hooked, but needed only in a diverting process (or only once there): looked up then
// rather than by the dynamic linker at every process start (each import is a symbol
// search there).
real! {
    fn madvise(address: *mut c_void, len: size_t, advice: c_int) -> c_int;
    fn pread64(fd: c_int, buf: *mut c_void, count: size_t, offset: libc::off64_t) -> ssize_t;
    fn lseek64(fd: c_int, offset: libc::off64_t, whence: c_int) -> libc::off64_t;
    fn tee(fd_in: c_int, fd_out: c_int, len: size_t, flags: libc::c_uint) -> ssize_t;
    fn pipe2(fds: *mut c_int, flags: c_int) -> c_int;
}

/// CLOCK_MONOTONIC in nanoseconds: one vDSO call, integer arithmetic after it.
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64)
}

/// The calling thread's errno.
pub fn errno() -> c_int {
    // SAFETY: __errno_location always returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

pub fn set_errno(value: c_int) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = value }
}
