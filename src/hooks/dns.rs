//! `getaddrinfo`: observed, never changed. The program gets glibc's own result (so its
//! `freeaddrinfo` frees what glibc allocated); we note which name each address came from.

use crate::guard::Reentry;
use crate::{addr, names, runtime, sys};
use libc::{addrinfo, c_char, c_int};
use std::ffi::CStr;
use std::net::IpAddr;

/// # Safety
/// As getaddrinfo(3).
#[no_mangle]
pub unsafe extern "C-unwind" fn getaddrinfo(
    node: *const c_char,
    service: *const c_char,
    hints: *const addrinfo,
    res: *mut *mut addrinfo,
) -> c_int {
    // SAFETY: the program's own call.
    let rc = unsafe { sys::getaddrinfo(node, service, hints, res) };
    if rc == 0 && !node.is_null() && !res.is_null() {
        if let Some(_inside) = Reentry::enter() {
            let saved = sys::errno();
            // SAFETY: node is the program's C string; *res the list glibc just returned.
            crate::guard::shielded(|| unsafe { observe(node, *res) }, || ());
            sys::set_errno(saved);
        }
    }
    rc
}

/// # Safety
/// `node` a C string, `list` a list returned by getaddrinfo.
unsafe fn observe(node: *const c_char, mut list: *const addrinfo) {
    if runtime::get().is_none() {
        return;
    }
    // SAFETY: the caller's contract.
    let Ok(name) = unsafe { CStr::from_ptr(node) }.to_str() else {
        return;
    };
    if name.parse::<IpAddr>().is_ok() {
        return;
    }
    // SAFETY: a null-terminated list from getaddrinfo.
    while let Some(entry) = unsafe { list.as_ref() } {
        // SAFETY: entries of glibc's list.
        if let Some(address) = unsafe { addr::from_c(entry.ai_addr, entry.ai_addrlen) } {
            names::remember(addr::canonical(address).ip(), name);
        }
        list = entry.ai_next;
    }
}
