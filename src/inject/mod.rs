//! Language hooks, injected into the runtimes whose https the preload cannot see (their
//! TLS is inside the runtime; protocol: `lang/PROTOCOL.md`): Node gets
//! `--require lunar-node-hook.cjs` through `NODE_OPTIONS` at load (`node`), the JVM a
//! `lunar-java-hook.jar` and a security provider from its launcher (`java`). The check at load is the
//! library's only work there: every other program pays one comparison of its name.

mod java;
mod java_security;
mod node;

use crate::conn::lang_hook::TOKEN_LEN;
use crate::policy::config::{Config, Setup};
use crate::policy::source::{self, Source};
use libc::{c_char, c_int, c_void};
use std::ffi::{CStr, CString, OsStr};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// Run by the dynamic loader when the library is loaded (before `main`).
#[used]
#[link_section = ".init_array"]
static AT_LOAD: extern "C" fn(c_int, *const *const c_char, *const *const c_char) = at_load;

/// The program's name is argv[0]'s last component, as glibc's
/// `program_invocation_short_name` (a reference to which would be a symbol lookup at every
/// process start, ~0.2 µs). Read byte by byte: a call to libc's `strlen` here would be
/// bound (looked up) in every process.
extern "C" fn at_load(argc: c_int, argv: *const *const c_char, _: *const *const c_char) {
    if argc < 1 || argv.is_null() {
        return;
    }
    // SAFETY: glibc passes the program's argv, argc entries then a null.
    let mut byte = unsafe { *argv }.cast::<u8>();
    if byte.is_null() {
        return;
    }
    let mut name = byte;
    // SAFETY: argv[0] is a NUL-terminated string; `byte` stays within it.
    unsafe {
        while *byte != 0 {
            if *byte == b'/' {
                name = byte.add(1);
            }
            byte = byte.add(1);
        }
    }
    // SAFETY: `name..byte` lies within argv[0].
    let name = unsafe { std::slice::from_raw_parts(name, byte.offset_from(name) as usize) };
    if name == b"node" || name == b"nodejs" {
        // A panic must not cross the loader's frame: Node then simply runs unhooked.
        crate::guard::shielded(node::inject, || ());
    }
}

/// The configuration, when this process diverts at all (never in a setuid program, whose
/// environment is not its own). Its warnings are said once the runtime is built, at the
/// first connect.
pub(super) fn diverting_config() -> Option<Box<Config>> {
    if Source::of_this_process() != Source::Environment {
        return None;
    }
    match source::read(Source::Environment, &mut |_| {}) {
        (Setup::Active(config), _) => Some(config),
        _ => None,
    }
}

/// The intercepted ports, comma-separated: the hooks dress connections to these only.
pub(super) fn ports(config: &Config) -> String {
    let ports: Vec<String> = config.intercept_ports.iter().map(u16::to_string).collect();
    ports.join(",")
}

pub(super) fn set(name: &str, value: &[u8]) -> bool {
    let (Ok(name), Ok(value)) = (CString::new(name), CString::new(value)) else {
        return false;
    };
    // SAFETY: NUL-terminated strings; before `main`, no other thread reads the environment.
    unsafe { libc::setenv(name.as_ptr(), value.as_ptr(), 1) == 0 }
}

/// `file` in the directory of this library as loaded, as an absolute path (Node takes a
/// relative `--require` for a module name), if it is readable.
pub(super) fn file_beside_library(file: &str) -> Option<CString> {
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    // SAFETY: dladdr fills `info` for an address inside a loaded object.
    let found = unsafe { libc::dladdr(at_load as *const c_void, info.as_mut_ptr()) };
    // SAFETY: zeroed, then filled by dladdr when it returns non-zero.
    let info = unsafe { info.assume_init() };
    if found == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dladdr's file name is a NUL-terminated string of the loader's.
    let library = unsafe { CStr::from_ptr(info.dli_fname) };
    let library = std::fs::canonicalize(OsStr::from_bytes(library.to_bytes())).ok()?;
    let path = CString::new(library.parent()?.join(file).into_os_string().into_vec()).ok()?;
    // SAFETY: a NUL-terminated path.
    (unsafe { libc::access(path.as_ptr(), libc::R_OK) } == 0).then_some(path)
}

/// 128 random bits, as lowercase hex.
pub(super) fn random_token() -> Option<[u8; TOKEN_LEN]> {
    let mut random = [0u8; TOKEN_LEN / 2];
    // SAFETY: fills the local buffer of the given length.
    let got = unsafe { libc::getrandom(random.as_mut_ptr().cast(), random.len(), 0) };
    if got != random.len() as isize {
        return None;
    }
    let mut token = [0u8; TOKEN_LEN];
    for (i, byte) in random.iter().enumerate() {
        token[2 * i] = b"0123456789abcdef"[usize::from(byte >> 4)];
        token[2 * i + 1] = b"0123456789abcdef"[usize::from(byte & 15)];
    }
    Some(token)
}
