//! A library's functions as a struct of function pointers, resolved with `dlsym` from
//! one `dlopen` handle: `functions! { Name; fn f(args) -> ret; ... }` makes `Name` and
//! `Name::resolve(handle, soname)`, which fails naming the first function missing.

use libc::c_void;
use std::ffi::CStr;
use std::sync::atomic::{AtomicPtr, Ordering};

macro_rules! functions {
    ($(#[$doc:meta])* $library:ident; $( fn $name:ident ( $($ty:ty),* ) -> $ret:ty; )*) => {
        $(#[$doc])*
        pub struct $library {
            /// The shared object they came from, for messages.
            pub soname: &'static str,
            $( pub $name: unsafe extern "C-unwind" fn($($ty),*) -> $ret, )*
        }

        impl $library {
            /// Every function from `handle` (and the libraries it depends on, which
            /// `dlsym` searches too), or the name of the first one missing.
            fn resolve(handle: *mut libc::c_void, soname: &'static str) -> Result<$library, String> {
                Ok($library {
                    soname,
                    $( $name: {
                        // SAFETY: a handle from dlopen and a NUL-terminated name.
                        let address = unsafe {
                            libc::dlsym(handle, concat!(stringify!($name), "\0").as_ptr().cast())
                        };
                        if address.is_null() {
                            return Err(format!("{soname} has no {}", stringify!($name)));
                        }
                        // SAFETY: the library's function of this exact C signature.
                        unsafe { std::mem::transmute::<*mut libc::c_void, unsafe extern "C-unwind" fn($($ty),*) -> $ret>(address) }
                    }, )*
                })
            }
        }
    };
}

pub(super) use functions;

/// The answer `find` gives the first time, kept for the process. Published with a
/// compare-and-swap, never a once-cell: a cell held by another thread at a `fork` would
/// never open in the child; two threads racing here both look (dlopen counts references)
/// and one answer is kept.
pub fn published<T>(
    slot: &'static AtomicPtr<Result<T, String>>,
    find: impl FnOnce() -> Result<T, String>,
) -> Result<&'static T, &'static str> {
    let mut found = slot.load(Ordering::Acquire);
    if found.is_null() {
        let fresh = Box::into_raw(Box::new(find()));
        found = match slot.compare_exchange(
            std::ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => fresh,
            Err(first) => {
                // SAFETY: `fresh` was never shared.
                drop(unsafe { Box::from_raw(fresh) });
                first
            }
        };
    }
    // SAFETY: a published answer is never freed.
    let found = unsafe { &*found };
    found.as_ref().map_err(|reason| reason.as_str())
}

/// The first of `sonames` already in the process (`RTLD_NOLOAD`), else the first that
/// loads, `RTLD_LOCAL` (its symbols stay out of the program's lookups); with its name.
pub fn open_first(sonames: &[&'static CStr]) -> Option<(*mut c_void, &'static str)> {
    let modes = [
        libc::RTLD_LAZY | libc::RTLD_LOCAL | libc::RTLD_NOLOAD,
        libc::RTLD_LAZY | libc::RTLD_LOCAL,
    ];
    for mode in modes {
        for soname in sonames {
            // SAFETY: a NUL-terminated name; a library found stays loaded for the process.
            let handle = unsafe { libc::dlopen(soname.as_ptr(), mode) };
            if !handle.is_null() {
                return Some((handle, soname.to_str().unwrap_or("?")));
            }
        }
    }
    None
}
