//! `lunar-intercept`: runs a program with the library preloaded; explains a request;
//! checks the configuration, the proxy and a program (doctor).
//!
//! `lunar-intercept run [--lib PATH] [--] CMD [ARGS...]` execs CMD with
//! `liblunar_intercept.so` added to `LD_PRELOAD`. The command replaces this process, so
//! its exit status and the signals it gets or dies of are the caller's to see, as if it
//! had been started directly. The library is found beside this binary (cargo's
//! `target/release`), in `../lib` (`make install`), or in `../lib/<multiarch>` (the
//! Debian package), unless `--lib` names it.

mod doctor;
mod elf;
mod explain;
mod library;
mod program;
mod run;

use std::process::ExitCode;

const USAGE: &str = "\
usage: lunar-intercept run [--lib PATH] [--] CMD [ARGS...]
       lunar-intercept explain URL [--header 'x-lunar-allow: true|false'] [--lib PATH]
       lunar-intercept doctor [--lib PATH] [CMD]
       lunar-intercept --help | --version

run    runs CMD with liblunar_intercept.so preloaded (LD_PRELOAD), so that its HTTP
       goes through Lunar Proxy as configured by the LUNAR_* variables or
       /etc/lunar/interceptor.conf. CMD replaces this process: its exit status and
       signals are its own.
explain  what the library would do with a request to URL made now by a process
       with this environment: proxy or direct, and why (filter rule, internal range,
       cooldown, proxy unavailable, port not intercepted), answered by the library itself
doctor the configuration as a process started from here reads it (each value
       with its origin: environment, file or default), the proxy's address, a timed
       TCP connect and the handshake's answer; with CMD, whether its http and https
       can be diverted (static, Go, JVM, Node, its TLS library) and why. Every check
       is PASS, WARN or FAIL with advice; the exit status is 0 only when none fails.
--lib  the library (default: beside this command, ../lib, or ../lib/<multiarch>)
";

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    match args.first().and_then(|a| a.to_str()) {
        Some("run") => run::run(&args[1..]),
        Some("explain") => explain::explain(&args[1..]),
        Some("doctor") => doctor::doctor(&args[1..]),
        Some("--help" | "-h" | "help") => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some("--version" | "-V") => {
            println!("lunar-intercept {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprint!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
