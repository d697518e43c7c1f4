//! The JVM: the `java` launcher calls `JLI_Launch` (exported by `libjli.so`) with its
//! arguments; ours calls the real one with two more after `argv[0]` (`lang/PROTOCOL.md`
//! section 7): `-Xbootclasspath/a:<dir>/lunar-java-hook.jar`, and
//! `-Djava.security.properties=` a file listing the hook's security provider before
//! SunJSSE. The JDK loads that provider only when a lookup first reaches it, so a JVM that
//! makes no TLS runs none of the hook's code. No agent: `-javaagent` alone costs a JVM
//! ~30 ms at start. Nothing goes into the environment, so nothing is printed ("Picked up
//! …") and children see what the program gave them. Other launchers of the same library
//! (`javac`, `jar`, `jshell`) pass Java arguments of their own (`jargc > 0`) and are left
//! alone.

use super::java_security::with_our_provider;
use super::{diverting_config, file_beside_library, ports, random_token};
use crate::conn::lang_hook;
use libc::{c_char, c_int, c_void};
use std::ffi::{CStr, CString, OsStr};
use std::io::Write;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// The hook's jar, found beside the loaded library.
const JAR: &str = "lunar-java-hook.jar";
const BOOT_CLASS_PATH: &[u8] = b"-Xbootclasspath/a:";
/// The properties are a memory file, read through its descriptor: nothing is written to
/// disk, and the JDK reads it lazily, at its first security lookup.
const PROPERTIES: &str = "-Djava.security.properties=";
/// Where the program may give security properties of its own: ours would replace them.
const OPTION_VARIABLES: [&str; 3] = ["JDK_JAVA_OPTIONS", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS"];

type Launch = unsafe extern "C" fn(
    c_int,
    *mut *mut c_char,
    c_int,
    *const *const c_char,
    c_int,
    *const *const c_char,
    *const c_char,
    *const c_char,
    *const c_char,
    *const c_char,
    u8,
    u8,
    u8,
    i32,
) -> c_int;

/// The launcher's entry point (JDK 9 and later have this signature).
///
/// # Safety
/// As libjli's `JLI_Launch`: `argv` holds `argc` strings.
#[no_mangle]
pub unsafe extern "C" fn JLI_Launch(
    argc: c_int,
    argv: *mut *mut c_char,
    jargc: c_int,
    jargv: *const *const c_char,
    appclassc: c_int,
    appclassv: *const *const c_char,
    fullversion: *const c_char,
    dotversion: *const c_char,
    pname: *const c_char,
    lname: *const c_char,
    javaargs: u8,
    cpwildcard: u8,
    javaw: u8,
    ergo: i32,
) -> c_int {
    // SAFETY: RTLD_NEXT is valid in a shared object; the name is NUL-terminated.
    let real = unsafe { libc::dlsym(libc::RTLD_NEXT, c"JLI_Launch".as_ptr()) };
    if real.is_null() {
        // No libjli after us: nothing to launch with; as the loader would have failed.
        return 1;
    }
    // SAFETY: the symbol is libjli's JLI_Launch, of this signature.
    let real: Launch = unsafe { std::mem::transmute::<*mut c_void, Launch>(real) };
    // SAFETY: the launcher's own arguments.
    let hook = (jargc == 0 && argc >= 1)
        .then(|| crate::guard::shielded(|| hook_arguments(&unsafe { args(argc, argv) }), || None))
        .flatten();
    let (argc, argv) = match hook {
        // SAFETY: the launcher's arguments.
        Some(hook) => unsafe { with_hook(argc, argv, hook) },
        None => (argc, argv),
    };
    // SAFETY: the launcher's arguments, with two more valid strings when the hook is added.
    unsafe {
        real(
            argc,
            argv,
            jargc,
            jargv,
            appclassc,
            appclassv,
            fullversion,
            dotversion,
            pname,
            lname,
            javaargs,
            cpwildcard,
            javaw,
            ergo,
        )
    }
}

/// What the hook changes in the launcher's arguments.
struct HookArguments {
    added: Vec<CString>,
    /// The indices in `argv` of ours from before ([`is_ours`]), left out.
    dropped: Vec<usize>,
}

/// `argv` with the hook's arguments after the program's name.
///
/// # Safety
/// `argv` holds `argc` pointers and a null after them.
unsafe fn with_hook(
    argc: c_int,
    argv: *mut *mut c_char,
    hook: HookArguments,
) -> (c_int, *mut *mut c_char) {
    let mut extended: Vec<*mut c_char> = Vec::with_capacity(argc as usize + 3);
    // SAFETY: the caller's contract.
    extended.push(unsafe { *argv });
    for added in hook.added {
        // The launcher keeps pointers into argv for the JVM's life: leaked.
        extended.push(CString::into_raw(added));
    }
    for i in (1..argc as usize).filter(|i| !hook.dropped.contains(i)) {
        // SAFETY: the caller's contract.
        extended.push(unsafe { *argv.add(i) });
    }
    let argc = extended.len() as c_int;
    extended.push(std::ptr::null_mut());
    let extended: &'static mut [*mut c_char] = Box::leak(extended.into_boxed_slice());
    (argc, extended.as_mut_ptr())
}

/// The launcher's arguments, as byte strings.
///
/// # Safety
/// `argv` holds `argc` NUL-terminated strings.
unsafe fn args<'a>(argc: c_int, argv: *mut *mut c_char) -> Vec<&'a [u8]> {
    (0..argc as usize)
        // SAFETY: the caller's contract.
        .map(|i| unsafe { CStr::from_ptr(*argv.add(i)) }.to_bytes())
        .collect()
}

/// The hook's arguments for a `java` that diverts, its provider armed with a new token;
/// ours from before are dropped in any `java` (see [`is_ours`]).
fn hook_arguments(args: &[&[u8]]) -> Option<HookArguments> {
    let name = args.first()?;
    if name.rsplit(|&b| b == b'/').next() != Some(b"java") {
        return None;
    }
    let dropped: Vec<usize> = (1..args.len()).filter(|&i| is_ours(args[i])).collect();
    let others: Vec<&[u8]> = (1..args.len())
        .filter(|i| !dropped.contains(i))
        .map(|i| args[i])
        .collect();
    let added = fresh_arguments(&others).unwrap_or_default();
    (!added.is_empty() || !dropped.is_empty()).then_some(HookArguments { added, dropped })
}

/// The boot class path and the properties in a new memory file, the token armed.
fn fresh_arguments(others: &[&[u8]]) -> Option<Vec<CString>> {
    let config = diverting_config()?;
    let jar = file_beside_library(JAR)?;
    // The boot class path is a `:`-separated list.
    if jar.to_bytes().contains(&b':') || gives_its_own_security_properties(others) {
        return None;
    }
    let mut boot_class_path = BOOT_CLASS_PATH.to_vec();
    boot_class_path.extend_from_slice(jar.to_bytes());
    let boot_class_path = CString::new(boot_class_path).ok()?;
    let master = std::fs::read_to_string(java_home()?.join("conf/security/java.security")).ok()?;
    let token = random_token()?;
    let pid = std::process::id();
    let hook_line = format!(
        "v1 {pid} {} {}",
        String::from_utf8_lossy(&token),
        ports(&config)
    );
    let properties = with_our_provider(&master, &hook_line)?;
    let fd = memory_file(properties.as_bytes())?;
    // Digits after a constant: no NUL.
    let from_fd = CString::new(format!("{PROPERTIES}/proc/{pid}/fd/{fd}")).ok()?;
    lang_hook::arm(token);
    Some(vec![boot_class_path, from_fd])
}

/// Whether an argument is one of ours: from a launcher that runs itself again (the
/// descriptor closed at that `exec`), or handed on by a program that starts another JVM
/// with its own JVM arguments (JMH's forks, self-relaunching tools). Such a copy names the
/// parent's file (`/proc/<pid>`, not `/proc/self`): read without the preload, it is the
/// parent's (the pid check keeps the provider inert) or gone (the JDK ignores it), never
/// whatever the child has at that descriptor number.
fn is_ours(arg: &[u8]) -> bool {
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    if let Some(jar) = arg.strip_prefix(BOOT_CLASS_PATH) {
        return jar
            .strip_suffix(JAR.as_bytes())
            .is_some_and(|dir| dir.ends_with(b"/"));
    }
    let Some(path) = arg.strip_prefix(PROPERTIES.as_bytes()) else {
        return false;
    };
    let parts: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
    matches!(parts[..], [b"", b"proc", pid, b"fd", fd] if (digits(pid) || pid == b"self") && digits(fd))
}

/// Whether the program sets `java.security.properties` itself (in its arguments, an
/// `@argfile`, or the variables the JDK reads options from): the program's choice stands,
/// and its https stays on its own TLS.
fn gives_its_own_security_properties(args: &[&[u8]]) -> bool {
    args.iter()
        .any(|arg| mentions_security_properties(arg) || argfile_mentions_it(arg))
        || OPTION_VARIABLES.iter().any(|name| {
            std::env::var_os(name)
                .is_some_and(|value| mentions_security_properties(value.as_encoded_bytes()))
        })
}

fn mentions_security_properties(text: &[u8]) -> bool {
    memchr::memmem::find(text, b"java.security.properties").is_some()
}

/// `@file` (not `@@`, the launcher's escape): whether that argfile sets the property. One
/// that cannot be read is not the launcher's (it fails on those) but the program's own
/// argument, after its main class say.
fn argfile_mentions_it(arg: &[u8]) -> bool {
    match arg.strip_prefix(b"@") {
        Some(file) if !file.starts_with(b"@") => std::fs::read(OsStr::from_bytes(file))
            .is_ok_and(|text| mentions_security_properties(&text)),
        _ => false,
    }
}

/// The JDK this launcher belongs to: `<home>/bin/java`.
fn java_home() -> Option<PathBuf> {
    let launcher = std::fs::canonicalize("/proc/self/exe").ok()?;
    Some(launcher.parent()?.parent()?.to_path_buf())
}

/// A memory file holding `content`, open (close-on-exec) for the JVM's life.
fn memory_file(content: &[u8]) -> Option<c_int> {
    // SAFETY: a NUL-terminated name and valid flags.
    let fd = unsafe { libc::memfd_create(c"lunar-java-security".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a descriptor just made, owned by nothing else.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    // Dropping the file closes it on failure.
    file.write_all(content).ok()?;
    Some(file.into_raw_fd())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_arguments_from_before_are_recognised_wherever_they_are_and_nothing_else() {
        let ours: [&[u8]; 4] = [
            b"-Xbootclasspath/a:/usr/lib/x86_64-linux-gnu/lunar-java-hook.jar",
            b"-Xbootclasspath/a:/opt/lunar/lunar-java-hook.jar",
            b"-Djava.security.properties=/proc/self/fd/3",
            b"-Djava.security.properties=/proc/4242/fd/17",
        ];
        for arg in ours {
            assert!(is_ours(arg), "{}", String::from_utf8_lossy(arg));
        }
        let theirs: [&[u8]; 7] = [
            b"-Xbootclasspath/a:/opt/app/lib.jar",
            b"-Xbootclasspath/a:/opt/my-lunar-java-hook.jar",
            b"-Djava.security.properties=/etc/app.security",
            b"-Djava.security.properties=/proc/self/fd/3/x",
            b"-Djava.security.properties=/proc/x/fd/3",
            b"-Djava.security.properties==/proc/self/fd/3",
            b"-version",
        ];
        for arg in theirs {
            assert!(!is_ours(arg), "{}", String::from_utf8_lossy(arg));
        }
    }

    #[test]
    fn ours_from_before_are_left_out_of_the_launchers_arguments_wherever_they_are() {
        let args: [&[u8]; 5] = [
            b"/usr/bin/java",
            b"-Xmx1g",
            b"-Xbootclasspath/a:/opt/lunar/lunar-java-hook.jar",
            b"-Djava.security.properties=/proc/99/fd/3",
            b"Main",
        ];
        // Without a configuration nothing new is added, but the copies still go.
        let hook = hook_arguments(&args).expect("ours dropped");
        assert_eq!(hook.dropped, [2, 3]);
        assert!(hook_arguments(&[b"/usr/bin/javac", args[2]]).is_none());
        assert!(hook_arguments(&[b"java", b"-version"]).is_none());
    }

    #[test]
    fn a_program_setting_its_own_security_properties_is_seen_in_arguments_and_argfiles() {
        let own = b"-Djava.security.properties==/etc/app.security".as_slice();
        assert!(gives_its_own_security_properties(&[
            b"-cp", b".", own, b"Main"
        ]));
        let dir = std::env::temp_dir().join(format!("lunar-argfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let with = dir.join("with");
        let without = dir.join("without");
        std::fs::write(&with, "-cp app.jar\n-Djava.security.properties=/x\n").unwrap();
        std::fs::write(&without, "-cp app.jar\n").unwrap();
        let at = |p: &std::path::Path| format!("@{}", p.display()).into_bytes();
        assert!(gives_its_own_security_properties(&[&at(&with), b"Main"]));
        assert!(!gives_its_own_security_properties(&[
            &at(&without),
            b"Main"
        ]));
        // Not a file: the program's own argument (after its main class, say).
        assert!(!gives_its_own_security_properties(&[
            b"Main",
            &at(&dir.join("gone"))
        ]));
        // `@@` escapes a literal `@`: not a file.
        assert!(!gives_its_own_security_properties(&[b"@@gone", b"Main"]));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
