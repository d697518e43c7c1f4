//! The BIO under our own TLS link: reads and writes the socket with libc's own functions
//! (`sys`), never through our hooks, which libssl's socket BIO would reach. Non-blocking
//! calls (`MSG_DONTWAIT`): the link waits in `poll` itself, bounded by its deadline.

use super::openssl::{Bio, BioMethod, OpenSsl};
use super::transport::Transport;
use crate::sys;
use libc::{c_char, c_int, c_long, c_void};
use std::sync::atomic::{AtomicPtr, Ordering};

const BIO_TYPE_SOURCE_SINK: c_int = 0x0400;
const BIO_FLAGS_READ: c_int = 0x01;
const BIO_FLAGS_WRITE: c_int = 0x02;
const BIO_FLAGS_RWS: c_int = 0x07;
const BIO_FLAGS_SHOULD_RETRY: c_int = 0x08;
const BIO_CTRL_FLUSH: c_int = 11;

/// A fresh BIO of our method on `transport`, which must outlive it (the link owns both).
pub fn new(api: &OpenSsl, transport: &Transport) -> Option<Bio> {
    let method = method(api)?;
    // SAFETY: a method of ours, complete (set up once in `method`).
    let bio = unsafe { (api.BIO_new)(method) };
    if bio.is_null() {
        return None;
    }
    // SAFETY: a live BIO of our method; its data is the transport, read by our callbacks.
    unsafe {
        (api.BIO_set_data)(bio, (transport as *const Transport).cast_mut().cast());
        (api.BIO_set_init)(bio, 1);
    }
    Some(bio)
}

/// Our BIO method, made once per process (OpenSSL keeps methods for good). Two threads
/// racing here may both make one; the first published is kept (no once-cell: see
/// `openssl::get`).
fn method(api: &OpenSsl) -> Option<BioMethod> {
    static METHOD: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
    let known = METHOD.load(Ordering::Acquire);
    if !known.is_null() {
        return Some(known);
    }
    // SAFETY: plain OpenSSL calls on a method of our own making; the callbacks have the
    // signatures OpenSSL calls them with.
    let fresh = unsafe {
        let kind = (api.BIO_get_new_index)() | BIO_TYPE_SOURCE_SINK;
        let method = (api.BIO_meth_new)(kind, c"lunar proxy link".as_ptr());
        if method.is_null()
            || (api.BIO_meth_set_write)(method, write) != 1
            || (api.BIO_meth_set_read)(method, read) != 1
            || (api.BIO_meth_set_ctrl)(method, ctrl) != 1
        {
            return None;
        }
        method
    };
    match METHOD.compare_exchange(
        std::ptr::null_mut(),
        fresh,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => Some(fresh),
        // The loser's method stays allocated: a few bytes, once.
        Err(first) => Some(first),
    }
}

/// The transport behind `bio` and the OpenSSL it belongs to.
///
/// # Safety
/// `bio` is one of ours (made by `new`), whose transport is alive.
unsafe fn parts<'a>(bio: Bio) -> Option<(&'a Transport, &'static OpenSsl)> {
    let api = super::openssl::get().ok()?;
    // SAFETY: the caller's contract: the data of our BIO is a live Transport.
    let transport = unsafe { ((api.BIO_get_data)(bio) as *const Transport).as_ref()? };
    Some((transport, api))
}

/// A failed call's errno, told to OpenSSL: "retry" for EAGAIN/EINTR, else kept for the
/// link's message.
fn failed(api: &OpenSsl, bio: Bio, transport: &Transport, direction: c_int) -> c_int {
    let errno = sys::errno();
    if errno == libc::EAGAIN || errno == libc::EINTR {
        // SAFETY: our live BIO.
        unsafe { (api.BIO_set_flags)(bio, direction | BIO_FLAGS_SHOULD_RETRY) };
    } else {
        transport.last_errno.set(errno);
    }
    -1
}

unsafe extern "C-unwind" fn write(bio: Bio, buf: *const c_char, len: c_int) -> c_int {
    // SAFETY: OpenSSL calls us with our own BIO.
    let Some((transport, api)) = (unsafe { parts(bio) }) else {
        return -1;
    };
    // SAFETY: our live BIO.
    unsafe { (api.BIO_clear_flags)(bio, BIO_FLAGS_RWS | BIO_FLAGS_SHOULD_RETRY) };
    let flags = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
    // SAFETY: OpenSSL hands `len` readable bytes at `buf`.
    let sent = unsafe { sys::send(transport.fd, buf.cast(), len.max(0) as usize, flags) };
    match sent {
        n if n >= 0 => n as c_int,
        _ => failed(api, bio, transport, BIO_FLAGS_WRITE),
    }
}

unsafe extern "C-unwind" fn read(bio: Bio, buf: *mut c_char, len: c_int) -> c_int {
    // SAFETY: OpenSSL calls us with our own BIO.
    let Some((transport, api)) = (unsafe { parts(bio) }) else {
        return -1;
    };
    // SAFETY: our live BIO.
    unsafe { (api.BIO_clear_flags)(bio, BIO_FLAGS_RWS | BIO_FLAGS_SHOULD_RETRY) };
    // SAFETY: OpenSSL hands `len` writable bytes at `buf`.
    let got = unsafe {
        sys::recv(
            transport.fd,
            buf.cast::<c_void>(),
            len.max(0) as usize,
            libc::MSG_DONTWAIT,
        )
    };
    match got {
        0 => {
            transport.saw_end.set(true);
            0
        }
        n if n > 0 => {
            // SAFETY: the socket just wrote `n` bytes there.
            transport
                .read_ciphertext(unsafe { std::slice::from_raw_parts(buf.cast(), n as usize) });
            n as c_int
        }
        _ => failed(api, bio, transport, BIO_FLAGS_READ),
    }
}

unsafe extern "C" fn ctrl(_bio: Bio, command: c_int, _larg: c_long, _parg: *mut c_void) -> c_long {
    // A socket has nothing to flush; every other control (kTLS, push/pop, ...) is "not
    // supported", which OpenSSL takes as such.
    (command == BIO_CTRL_FLUSH) as c_long
}
