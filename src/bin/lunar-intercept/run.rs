//! `lunar-intercept run`: exec the command with the library added to `LD_PRELOAD`.

use super::library;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn run(args: &[OsString]) -> ExitCode {
    let (lib, command) = match parse(args) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("lunar-intercept run: {message}");
            return ExitCode::from(2);
        }
    };
    let lib = match library::find(lib.as_deref()) {
        Ok(lib) => lib,
        Err(message) => {
            eprintln!("lunar-intercept run: {message}");
            return ExitCode::from(127);
        }
    };
    let preload = with_library(std::env::var_os("LD_PRELOAD").as_deref(), &lib);
    let error = std::process::Command::new(&command[0])
        .args(&command[1..])
        .env("LD_PRELOAD", preload)
        .exec();
    // exec returns only when it failed; the shell's statuses for it.
    eprintln!(
        "lunar-intercept run: {}: {error}",
        Path::new(&command[0]).display()
    );
    ExitCode::from(if error.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    })
}

/// `[--lib PATH] [--] CMD [ARGS...]` -> (the library named, the command).
fn parse(args: &[OsString]) -> Result<(Option<PathBuf>, Vec<OsString>), String> {
    let mut lib = None;
    let mut rest = args;
    loop {
        match rest.first().map(|a| a.as_bytes()) {
            Some(b"--lib") => {
                let path = rest.get(1).ok_or("--lib needs a path")?;
                lib = Some(PathBuf::from(path));
                rest = &rest[2..];
            }
            Some(b"--") => {
                rest = &rest[1..];
                break;
            }
            Some(flag) if flag.starts_with(b"-") => {
                return Err(format!("unknown option {}", String::from_utf8_lossy(flag)))
            }
            _ => break,
        }
    }
    if rest.is_empty() {
        return Err("no command to run".to_string());
    }
    Ok((lib, rest.to_vec()))
}

/// `LD_PRELOAD` with `lib` first (the loader searches preloads in order; ours must come
/// before any other library that defines the socket functions), kept once.
fn with_library(current: Option<&OsStr>, lib: &Path) -> OsString {
    let mut value = OsString::from(lib);
    for entry in current
        .map(|c| c.as_bytes())
        .unwrap_or_default()
        .split(|b| *b == b' ' || *b == b':')
        .filter(|entry| !entry.is_empty() && *entry != lib.as_os_str().as_bytes())
    {
        value.push(":");
        value.push(OsStr::from_bytes(entry));
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn parses_lib_and_separator() {
        let (lib, cmd) = parse(&os(&["--lib", "/x.so", "--", "curl", "-s"])).unwrap();
        assert_eq!(lib, Some(PathBuf::from("/x.so")));
        assert_eq!(cmd, os(&["curl", "-s"]));
        let (lib, cmd) = parse(&os(&["curl", "--lib"])).unwrap();
        assert_eq!(lib, None);
        assert_eq!(cmd, os(&["curl", "--lib"]));
        assert!(parse(&os(&["--"])).is_err());
        assert!(parse(&os(&["--lib"])).is_err());
        assert!(parse(&os(&["--bogus", "curl"])).is_err());
    }

    #[test]
    fn library_first_and_once_in_ld_preload() {
        let lib = Path::new("/opt/l/liblunar_intercept.so");
        assert_eq!(
            with_library(None, lib),
            OsString::from("/opt/l/liblunar_intercept.so")
        );
        assert_eq!(
            with_library(
                Some(OsStr::new("libother.so /opt/l/liblunar_intercept.so")),
                lib
            ),
            OsString::from("/opt/l/liblunar_intercept.so:libother.so")
        );
    }
}
