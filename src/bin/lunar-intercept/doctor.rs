//! `lunar-intercept doctor [--lib PATH] [CMD]`: the library's own report on the
//! configuration and the proxy path (its `lunar_intercept_doctor`, the library `dlopen`ed
//! into this process), then, for CMD, how that program would meet the preload. Exit
//! status 0 only when no check fails.

use super::library;
use super::program::{self, Status};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn doctor(args: &[OsString]) -> ExitCode {
    let (lib, command) = match parse(args) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("lunar-intercept doctor: {message}");
            return ExitCode::from(2);
        }
    };
    let lib = match library::find(lib.as_deref()) {
        Ok(lib) => lib,
        Err(message) => {
            println!("FAIL  library: {message}");
            return ExitCode::from(1);
        }
    };
    println!("PASS  library: {}", lib.display());
    let report = match ask(&lib) {
        Ok(report) => report,
        Err(message) => {
            println!("FAIL  library: {message}");
            return ExitCode::from(1);
        }
    };
    print!("{report}");
    let mut failed = report.lines().any(|line| line.starts_with("FAIL"));
    if let Some(command) = command {
        for check in program::examine(&command) {
            let label = match check.status {
                Status::Pass => "PASS",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
            };
            println!("{label}  {}: {}", check.what, check.detail);
            if !check.advice.is_empty() {
                println!("      -> {}", check.advice);
            }
            failed |= check.status == Status::Fail;
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn parse(args: &[OsString]) -> Result<(Option<PathBuf>, Option<String>), String> {
    let mut lib = None;
    let mut command = None;
    let mut rest = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--lib" => lib = Some(PathBuf::from(rest.next().ok_or("--lib needs a path")?)),
            _ if command.is_none() && !arg.starts_with('-') => command = Some(arg),
            _ => return Err(format!("unexpected argument {arg}")),
        }
    }
    Ok((lib, command))
}

type Doctor = unsafe extern "C" fn(*mut u8, usize) -> usize;

fn ask(lib: &Path) -> Result<String, String> {
    let doctor: Doctor = library::symbol(lib, c"lunar_intercept_doctor")?;
    let mut out = vec![0u8; 64 * 1024];
    // SAFETY: `out` has out.len() bytes of room.
    let len = unsafe { doctor(out.as_mut_ptr(), out.len()) };
    out.truncate(len.min(out.len()));
    Ok(String::from_utf8_lossy(&out).into_owned())
}
