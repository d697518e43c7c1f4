//! The JVM: the `java` launcher calls `JLI_Launch` (exported by `libjli.so`) with its
//! arguments; ours calls the real one with `-javaagent:lunar-java-agent.jar=…` added
//! after `argv[0]` (`lang/PROTOCOL.md` section 7). Nothing goes into the environment, so
//! nothing is printed ("Picked up …") and children see what the program gave them. Other
//! launchers of the same library (`javac`, `jar`, `jshell`) pass Java arguments of their
//! own (`jargc > 0`) and are left alone.

use super::{diverting_config, file_beside_library, ports, random_token};
use crate::conn::lang_hook;
use libc::{c_char, c_int, c_void};
use std::ffi::{CStr, CString};

/// The agent's jar, found beside the loaded library.
const AGENT: &str = "lunar-java-agent.jar";

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
    let agent = (jargc == 0 && argc >= 1)
        .then(|| crate::guard::shielded(|| agent_argument(unsafe { args(argc, argv) }), || None))
        .flatten();
    let (argc, argv) = match agent {
        // SAFETY: the launcher's arguments.
        Some(agent) => unsafe { with_agent(argc, argv, agent) },
        None => (argc, argv),
    };
    // SAFETY: the launcher's arguments, with one more valid string when the agent is added.
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

/// `argv` with `agent` after the program's name.
///
/// # Safety
/// `argv` holds `argc` pointers and a null after them.
unsafe fn with_agent(
    argc: c_int,
    argv: *mut *mut c_char,
    agent: CString,
) -> (c_int, *mut *mut c_char) {
    // The launcher keeps pointers into argv for the JVM's life: both are leaked.
    let agent: &'static CStr = Box::leak(agent.into_boxed_c_str());
    let mut extended: Vec<*mut c_char> = Vec::with_capacity(argc as usize + 2);
    // SAFETY: the caller's contract.
    unsafe {
        extended.push(*argv);
        extended.push(agent.as_ptr().cast_mut());
        for i in 1..argc as usize {
            extended.push(*argv.add(i));
        }
    }
    extended.push(std::ptr::null_mut());
    let extended: &'static mut [*mut c_char] = Box::leak(extended.into_boxed_slice());
    (argc + 1, extended.as_mut_ptr())
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

/// `-javaagent:<jar>=v1 <pid> <token> <ports>` for a `java` that diverts, unless the
/// arguments already load our agent (a launcher that runs itself again).
fn agent_argument(args: Vec<&[u8]>) -> Option<CString> {
    let name = args.first()?;
    if name.rsplit(|&b| b == b'/').next() != Some(b"java") {
        return None;
    }
    let config = diverting_config()?;
    let jar = file_beside_library(AGENT)?;
    let jar = jar.to_bytes();
    // `-javaagent:` ends the jar's path at the first `=`.
    if jar.contains(&b'=') {
        return None;
    }
    let mut option = b"-javaagent:".to_vec();
    option.extend_from_slice(jar);
    if args.iter().any(|arg| arg.starts_with(&option)) {
        return None;
    }
    let token = random_token()?;
    option.extend_from_slice(
        format!(
            "=v1 {} {} {}",
            std::process::id(),
            String::from_utf8_lossy(&token),
            ports(&config)
        )
        .as_bytes(),
    );
    let option = CString::new(option).ok()?;
    lang_hook::arm(token);
    Some(option)
}
