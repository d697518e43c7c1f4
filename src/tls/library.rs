//! Finding the TLS library the program loaded. curl and wget link theirs, but Python's
//! `_ssl` and Perl's `Net::SSLeay` bring libssl in later with `dlopen(RTLD_LOCAL)`, where
//! `dlsym(RTLD_NEXT, …)` cannot see it. So the loaded objects are walked
//! (`dl_iterate_phdr`) and their symbols taken through `dlopen(path, RTLD_NOLOAD)`.
//! A library found stays found (they are not unloaded in practice); one not found yet is
//! looked for again at the next question, so a late `dlopen` is noticed.

use libc::{c_char, c_int, c_void, dl_phdr_info, size_t};
use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicUsize, Ordering};

/// dlopen handles, 0 while not found.
static LIBSSL: AtomicUsize = AtomicUsize::new(0);
static LIBCRYPTO: AtomicUsize = AtomicUsize::new(0);
static LIBGNUTLS: AtomicUsize = AtomicUsize::new(0);
/// Set when two OpenSSL majors are loaded at once: our unversioned SSL_* could not tell
/// whose caller it serves, so OpenSSL sessions are never made virtual.
static OPENSSL_MIXED: AtomicUsize = AtomicUsize::new(0);

#[derive(Default)]
struct Found {
    libssl: Vec<CString>,
    libcrypto: Vec<CString>,
    libgnutls: Option<CString>,
}

fn scan() -> Found {
    unsafe extern "C" fn visit(info: *mut dl_phdr_info, _size: size_t, data: *mut c_void) -> c_int {
        // SAFETY: dl_iterate_phdr passes a valid info and our own `Found`.
        let (info, found) = unsafe { (&*info, &mut *(data as *mut Found)) };
        if info.dlpi_name.is_null() {
            return 0;
        }
        // SAFETY: a NUL-terminated path owned by the loader for this callback.
        let path = unsafe { CStr::from_ptr(info.dlpi_name) };
        let file = path
            .to_bytes()
            .rsplit(|&b| b == b'/')
            .next()
            .unwrap_or_default();
        if file.starts_with(b"libssl.so.") {
            found.libssl.push(path.to_owned());
        } else if file.starts_with(b"libcrypto.so.") {
            found.libcrypto.push(path.to_owned());
        } else if file.starts_with(b"libgnutls.so.30") {
            found.libgnutls = Some(path.to_owned());
        }
        0
    }
    let mut found = Found::default();
    // SAFETY: the callback only reads the info it is given and writes `found`.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&mut found as *mut Found).cast()) };
    found
}

fn open_loaded(path: &CStr) -> usize {
    // SAFETY: RTLD_NOLOAD only returns a handle to an object already loaded.
    unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD) as usize }
}

#[cold]
#[inline(never)]
fn look_again() {
    let found = scan();
    let mixed = found.libssl.len() > 1 || found.libcrypto.len() > 1;
    if mixed && OPENSSL_MIXED.swap(1, Ordering::AcqRel) == 0 {
        log::debug!("two OpenSSL libraries loaded: https through OpenSSL is passed through");
    }
    if let [libssl] = found.libssl.as_slice() {
        LIBSSL.store(open_loaded(libssl), Ordering::Release);
    }
    if let [libcrypto] = found.libcrypto.as_slice() {
        LIBCRYPTO.store(open_loaded(libcrypto), Ordering::Release);
    }
    if let Some(libgnutls) = &found.libgnutls {
        LIBGNUTLS.store(open_loaded(libgnutls), Ordering::Release);
    }
}

fn handle(slot: &AtomicUsize) -> usize {
    match slot.load(Ordering::Acquire) {
        0 => {
            look_again();
            slot.load(Ordering::Acquire)
        }
        handle => handle,
    }
}

/// Whether a TLS library whose sessions we can make virtual is loaded now: what a connect
/// to port 443 needs before it is diverted.
pub fn drivable() -> bool {
    openssl_drivable() || gnutls_drivable()
}

/// OpenSSL sessions may be made virtual: exactly one libssl is loaded, and its socket
/// I/O reaches our hooks (`probe`).
pub fn openssl_drivable() -> bool {
    handle(&LIBSSL) != 0
        && OPENSSL_MIXED.load(Ordering::Acquire) == 0
        && super::probe::openssl_io_reaches_us()
}

/// GnuTLS sessions may be made virtual: libgnutls is loaded and its socket I/O reaches our
/// hooks (`probe`).
pub fn gnutls_drivable() -> bool {
    handle(&LIBGNUTLS) != 0 && super::probe::gnutls_io_reaches_us()
}

#[derive(Clone, Copy)]
pub enum Library {
    Ssl,
    Crypto,
    GnuTls,
}

/// The address of `name` in the loaded `library`, or in the libraries after ours (a
/// program linked against it), or 0.
pub fn symbol(library: Library, name: &CStr) -> usize {
    let slot = match library {
        Library::Ssl => &LIBSSL,
        Library::Crypto => &LIBCRYPTO,
        Library::GnuTls => &LIBGNUTLS,
    };
    let handle = handle(slot);
    let name_ptr = name.as_ptr() as *const c_char;
    if handle != 0 {
        // SAFETY: a handle from dlopen and a NUL-terminated name.
        let found = unsafe { libc::dlsym(handle as *mut c_void, name_ptr) } as usize;
        if found != 0 {
            return found;
        }
    }
    // SAFETY: RTLD_NEXT is valid in a shared object; the name is NUL-terminated.
    unsafe { libc::dlsym(libc::RTLD_NEXT, name_ptr) as usize }
}
