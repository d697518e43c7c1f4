//! Links the shared library with a version script: it exports exactly the libc names we
//! hook and nothing of Rust's internals, so no other library or program binds to our code
//! by accident.

use std::path::PathBuf;

/// Every symbol the library exports. Keep in step with `src/hooks/`.
const HOOKED: &[&str] = &[
    "connect",
    "socket",
    "accept",
    "accept4",
    "getpeername",
    "getsockopt",
    "getaddrinfo",
    "write",
    "send",
    "sendto",
    "writev",
    "sendmsg",
    "read",
    "__read_chk",
    "recv",
    "__recv_chk",
    "recvfrom",
    "__recvfrom_chk",
    "readv",
    "recvmsg",
    "close",
    "close_range",
    "dup",
    "dup2",
    "dup3",
    "fcntl",
    "fcntl64",
    "poll",
    "ppoll",
    "select",
    "pselect",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "socketpair",
    "shutdown",
    "syscall",
    "closefrom",
    "fdopen",
    "fclose",
    "freopen",
    "freopen64",
    "io_uring_queue_init",
    "io_uring_queue_init_params",
    "io_uring_setup",
];

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let script = out.join("exports.map");
    let globals: String = HOOKED.iter().map(|name| format!("    {name};\n")).collect();
    std::fs::write(
        &script,
        format!("{{\n  global:\n{globals}  local:\n    *;\n}};\n"),
    )
    .expect("write version script");
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,--version-script={}",
        script.display()
    );
    println!("cargo:rerun-if-changed=build.rs");
}
