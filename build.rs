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
    link_unwinder_statically();
    // Resolve our few libc imports when first called, not at every process start: the
    // library is loaded by every process of an image, most of which never call them.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,lazy");
    println!("cargo:rerun-if-changed=build.rs");
}

/// Rust's std unwinds through libgcc_s, which every process would then load with us. Its
/// static part (libgcc_eh.a, what `gcc -static-libgcc` links) resolves the unwinder's
/// symbols first, so `--as-needed` drops libgcc_s: the library NEEDs only libc, and
/// panics still unwind to the catch in every hook. Without a libgcc_eh.a (another C
/// compiler), the link stays as it was.
fn link_unwinder_statically() {
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let Ok(found) = std::process::Command::new(compiler)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
    else {
        return;
    };
    let path = PathBuf::from(String::from_utf8_lossy(&found.stdout).trim());
    if !path.is_absolute() || !path.exists() {
        return;
    }
    if let Some(dir) = path.parent() {
        println!("cargo:rustc-link-search=native={}", dir.display());
        println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
    }
}
