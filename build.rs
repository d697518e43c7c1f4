//! Links the shared library with a version script: it exports exactly the libc names we
//! hook and nothing of Rust's internals, so no other library or program binds to our code
//! by accident. And with a layout script: the code every process runs sits in one place
//! (see `write_layout_script`).

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
    "sendfile",
    "sendfile64",
    "splice",
    "ioctl",
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
    // The java launcher's entry point (src/inject/java.rs).
    "JLI_Launch",
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
    write_layout_script(&out.join("layout.ld"));
    link_unwinder_statically();
    compile_thread_cancel(&out);
    bind_std_imports_lazily(&out.join("lazy_imports.s"));
    // Resolve our few libc imports when first called, not at every process start: the
    // library is loaded by every process of an image, most of which never call them.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,lazy");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--no-rosegment");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,separate-loadable-segments");
    println!("cargo:rerun-if-changed=build.rs");
}

/// Every process of an image loads the library, and the kernel maps a file's pages in
/// 64 KiB windows around each one touched ("fault-around"), aligned to 64 KiB of address:
/// what a process pays in resident memory is the number of windows its calls touch, not
/// the bytes it runs. So, after the loader's tables (which every process reads): the
/// read-only data the hot code reads (constants, the jump and switch tables of the
/// profiled code: `.rodata.<symbol>`, `.rodata..Lswitch.table.<symbol>`; httparse's
/// tables; the literals of `src/hot_data.rs`), a few pages among what every process maps
/// anyway; then the code every process runs (std's argv initialiser and our check at load,
/// every hook's entry (the TLS libraries' functions we stand in for among them), the
/// first-call lookups of libc's functions, std's trampolines to libc, the PLT), and what
/// runs before the fence of what follows (the panic hook's installation at the first hook
/// with work to do, which fences before the work; the set-up's entry); then the code that runs when http and
/// https are diverted, as profiled (scripts/layout/hot-code.txt, http's code first; a
/// stale list costs memory, never correctness), one input statement per pattern, as the
/// linker keeps input order within a statement, with a marker function after http's code
/// and after https's (`src/sys/residency.rs` gives what follows each a VMA of its own,
/// which no window crosses); then the rest of our crate and its engine's dependencies
/// (`NEAR_HOT_CODE`); then the rest (std's panic and backtrace machinery above all). Then,
/// from a page of its own, the cold read-only data, which residency.rs fences off too: the
/// unwind tables (~110 KiB, read only when a panic unwinds) and then the other literals
/// (panic messages and file names among them), which the set-up may read before the
/// fence: a window around them maps the unwind tables before them, not cold code.
/// Patterns are section names: rustc puts every function in `.text.<symbol>`
/// (`.text.unlikely.<symbol>` when cold). rust-lld (rustc's linker on x86_64 Linux) keeps
/// its default layout for everything else (`INSERT AFTER`). Measured by `make bench` (the
/// library's Rss in an inert process and after Python's requests).
///
/// What every process start pays for the mappings: the segments are aligned to pages, not
/// to 64 KiB (a larger alignment makes the dynamic linker reserve more and unmap the
/// excess: three system calls more, ~10 µs per start on our VM; so no data is placed by
/// the 64 KiB windows' edges, which fall anywhere), and `.bss` (1.7 KiB) is file contents
/// (a `.bss` past the file's last page is a zero-fill mapping of its own,
/// one `mmap` more, ~4 µs). The data the dynamic linker writes at load, `.data` (our
/// resolvers' addresses) and the PLT's GOT (which it reads, then writes: a read fault,
/// then a copy-on-write fault), share the segment's last page with eight bytes of zero
/// fill, which it zeroes first: one write fault for that page. `.bss` comes before, on a
/// page touched only when a static there is.
fn write_layout_script(path: &std::path::Path) {
    // The java launcher's entry runs in java launchers only, once.
    let hooks: String = HOOKED
        .iter()
        .filter(|&&name| name != "JLI_Launch")
        .map(|name| format!(" .text.{name}"))
        .collect();
    let (http_code, https_code) = hot_code_patterns();
    let statements = |patterns: &[String]| -> String {
        patterns
            .iter()
            .map(|p| format!("    *({})\n", with_lto_copies(p)))
            .collect()
    };
    let (http, https) = (statements(&http_code), statements(&https_code));
    let hot_rodata: String = http_code
        .iter()
        .chain(&https_code)
        .filter_map(|p| p.strip_prefix(".text."))
        .map(|p| {
            let tables = with_lto_copies(&format!(".rodata.{p}"));
            let switches = with_lto_copies(&format!(".rodata..Lswitch.table.{p}"));
            format!(" {tables} {switches}")
        })
        .collect();
    let ours = section_patterns(NEAR_HOT_CODE);
    let script = format!(
        "SECTIONS {{
  .rodata.hot : {{
    *(.rodata.cst*)
    *({hot_rodata} )
    *(.rodata.*8httparse* .rodata)
    *(.rodata.lunar_hot)
  }}
  .plt : {{ *(.plt) }}
  .text : {{
    *(.text.*ARGV_INIT_ARRAY* .text.*6inject7at_load*)
    *({hooks} .text.SSL_* .text.gnutls_* )
    *(.text.*first_call* .text.*3sys7resolve* .text.__wrap_*)
    *(.text.*7runtime6set_up* .text.*3sys9residency* .text.*20set_quiet_panic_hook*)
    *(.text.*9panicking8set_hook*)
    *libc_nonshared.a:*(.text .text.*)
{http}    *(.text.lunar_layout_http_end)
{https}    *(.text.lunar_layout_hot_end)
    *({ours} )
    *(.text .text.*)
    *(.lunar_layout_code_end)
  }}
  .gcc_except_table : ALIGN(4096) {{
    *(.rodata.lunar_layout_cold_rodata_start)
    *(.gcc_except_table .gcc_except_table.*)
  }}
  .eh_frame_hdr : {{ *(.eh_frame_hdr) }}
  .eh_frame : {{ KEEP(*(.eh_frame)) }}
  .rodata : {{
    *(.rodata..L* .rodata.str*)
    *(.rodata.*)
    . = ALIGN(4096);
  }}
}} INSERT AFTER .rela.plt;
SECTIONS {{
  .bss : {{ KEEP(*(.lunar_bss_in_file)) *(.bss .bss.*) *(COMMON) . = ALIGN(4096); }}
}} INSERT BEFORE .data;
SECTIONS {{
  .lunar_zero_tail : {{ KEEP(*(.lunar_zero_tail)) }}
}} INSERT AFTER .got.plt;
"
    );
    std::fs::write(path, script).expect("write layout script");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-T,{}", path.display());
}

/// The inputs the layout script's writable data needs beside rustc's: the first of `.bss`,
/// one byte of the file, which makes that output section file contents too; and the
/// segment's last, eight bytes of zero fill (see `write_layout_script`).
const WRITABLE_DATA_ANCHORS: &str = ".section .lunar_bss_in_file,\"aw\",@progbits\n    .byte 0\n\
     .section .lunar_zero_tail,\"aw\",@nobits\n    .zero 8\n";

/// A function's section pattern and those of the copies LTO numbers anew in each build
/// (`.1226`, `.llvm.4711`), not those of clones LLVM made for a call site
/// (`.specialized.1`), which scripts/layout/hot-code.txt names when they ran.
fn with_lto_copies(pattern: &str) -> String {
    format!("{pattern} {pattern}.[0-9]* {pattern}.llvm.[0-9]*")
}

/// Code a profile may miss (a path it did not take) but a diverting process may run: our
/// own crate and what its engine calls, kept next to the profiled code rather than among
/// std's panic and backtrace machinery.
const NEAR_HOT_CODE: &[&str] = &[
    "lunar_intercept",
    "httparse",
    "memchr",
    "core::fmt",
    "core::str",
    "core::net",
    "alloc",
];

/// `a::b` -> section patterns of its functions: `*1a1b*` matches the length-prefixed
/// path of both manglings (legacy `_ZN1a1b...`, v0 `..._1a1b...`), `*a..b..*` the legacy
/// mangling of a trait impl (`<a::b::T as ..>`).
fn section_patterns(paths: &[&str]) -> String {
    let mut patterns = String::new();
    for path in paths {
        let segments: Vec<&str> = path.split("::").collect();
        let prefixed: String = segments.iter().map(|s| format!("{}{s}", s.len())).collect();
        patterns.push_str(&format!(" .text.*{prefixed}*"));
        patterns.push_str(&format!(" .text.*$LT${}..*", segments.join("..")));
    }
    patterns
}

/// The patterns of scripts/layout/hot-code.txt (written by scripts/layout/profile.sh):
/// the code http runs, and after its `[https]` line the code only https adds.
fn hot_code_patterns() -> (Vec<String>, Vec<String>) {
    let list = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .join("scripts/layout/hot-code.txt");
    println!("cargo:rerun-if-changed={}", list.display());
    let text = std::fs::read_to_string(&list).unwrap_or_default();
    let (mut http, mut https) = (Vec::new(), Vec::new());
    let mut group = &mut http;
    for line in text.lines().map(str::trim) {
        if line == "[https]" {
            group = &mut https;
        } else if !line.is_empty() && !line.starts_with('#') {
            group.push(line.to_string());
        }
    }
    (http, https)
}

/// The libc functions std calls. std is built for full RELRO: it calls them through a GOT
/// that the dynamic linker fills in at every process start, one symbol lookup each
/// (~700 instructions), in every process of an image, though an inert process calls none
/// of them. `--wrap=NAME` sends std's calls to `__wrap_NAME`, a jump through our PLT
/// (`src/sys/lazy_imports.rs` includes them), bound at the first call like our own
/// imports. A name std stops calling costs nothing; one it starts calling is a lookup at
/// load again (tests/e2e/test_startup_work.py checks that none is left).
const STD_IMPORTS: &[&str] = &[
    "abort",
    "access",
    "bcmp",
    "calloc",
    "closedir",
    "dirfd",
    "fileno",
    "free",
    "fstat",
    "fstat64",
    "gai_strerror",
    "getcwd",
    "getenv",
    "gettid",
    "gnu_get_libc_version",
    "lseek64",
    "malloc",
    "memcpy",
    "memmove",
    "memset",
    "mmap64",
    "open",
    "open64",
    "opendir",
    "pause",
    "posix_memalign",
    "pthread_attr_destroy",
    "pthread_attr_init",
    "pthread_attr_setstacksize",
    "pthread_create",
    "pthread_detach",
    "pthread_key_create",
    "pthread_key_delete",
    "pthread_self",
    "pthread_setname_np",
    "pthread_setspecific",
    "readdir64",
    "readlink",
    "realloc",
    "realpath",
    "__res_init",
    "sched_yield",
    "stat64",
    "statx",
    "strlen",
    "sysconf",
    "__xpg_strerror_r",
    "__cxa_thread_atexit_impl",
    "__pthread_key_create",
];

/// Writes the trampolines of `STD_IMPORTS`, links them in with `--wrap`, and leaves out
/// the C start-up files.
fn bind_std_imports_lazily(path: &std::path::Path) {
    let mut asm = String::new();
    for name in STD_IMPORTS {
        asm.push_str(&format!(
            ".section .text.__wrap_{name},\"ax\",@progbits\n\
             .globl __wrap_{name}\n.hidden __wrap_{name}\n.type __wrap_{name},@function\n\
             __wrap_{name}:\n    jmp __real_{name}@PLT\n.size __wrap_{name}, . - __wrap_{name}\n"
        ));
        println!("cargo:rustc-cdylib-link-arg=-Wl,--wrap={name}");
    }
    // Of the C start-up files, a shared object needs `__dso_handle` (what std names this
    // object by when it registers a thread-local destructor). Their other parts cost every
    // process lookups at load (three weak names no library defines, `__cxa_finalize`) and
    // a call at exit, for what a preload never uses: transactional memory's clone table,
    // profiling, running the destructors of an object unloaded before exit.
    asm.push_str(
        ".section .data.rel.ro.lunar_dso_handle,\"aw\",@progbits\n.p2align 3\n\
         .weak __dso_handle\n.hidden __dso_handle\n__dso_handle:\n    .quad __dso_handle\n",
    );
    println!("cargo:rustc-cdylib-link-arg=-nostartfiles");
    // The library's one assembly file also carries the layout script's anchors.
    asm.push_str(WRITABLE_DATA_ANCHORS);
    std::fs::write(path, asm).expect("write lazy imports");
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

/// `src/sys/thread_cancel.c`: where glibc's cancellation of a thread inside the library's
/// work stops (a `setjmp` buffer, which Rust cannot hold). An archive, so that the unit
/// tests link it too. And `src/sys/unwinder_ready.c`, for the library only (a program
/// linking the wrapper would need it too): our unwinder's register setter, readied at its
/// first call. Their functions are local to the library (the version script exports only
/// the hooks); their calls into libc go through the PLT (bound at first use, like our
/// other imports).
fn compile_thread_cancel(out: &std::path::Path) {
    let object = compile_c("src/sys/thread_cancel.c", out);
    let archive = out.join("libthread_cancel.a");
    let _ = std::fs::remove_file(&archive);
    let archiver = std::env::var("AR").unwrap_or_else(|_| "ar".to_string());
    let archived = std::process::Command::new(archiver)
        .arg("crs")
        .arg(&archive)
        .arg(&object)
        .status()
        .expect("run ar");
    assert!(archived.success(), "archive {}", object.display());
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=static=thread_cancel");
    let ready = compile_c("src/sys/unwinder_ready.c", out);
    println!("cargo:rustc-cdylib-link-arg={}", ready.display());
    println!("cargo:rustc-cdylib-link-arg=-Wl,--wrap=_Unwind_SetGR");
}

/// Compiles one C file of ours into an object in `out`.
fn compile_c(source: &str, out: &std::path::Path) -> PathBuf {
    let name = std::path::Path::new(source)
        .file_stem()
        .expect("a file name");
    let object = out.join(name).with_extension("o");
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let compiled = std::process::Command::new(compiler)
        .args(["-c", "-O2", "-fPIC", "-fexceptions", "-ffunction-sections"])
        .args(["-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&object)
        .arg(source)
        .status()
        .expect("run the C compiler");
    assert!(compiled.success(), "compile {source}");
    println!("cargo:rerun-if-changed={source}");
    object
}
