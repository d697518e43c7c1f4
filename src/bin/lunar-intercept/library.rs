//! Where the library is: named by `--lib`, or found relative to this command.

use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "liblunar_intercept.so";

/// The places to look, relative to the directory of this command: beside it (cargo's
/// target/release), `../lib` (make install), `../lib/<multiarch>` (the Debian package).
pub fn candidates(command_dir: &Path) -> Vec<PathBuf> {
    let mut places = vec![
        command_dir.join(FILE_NAME),
        command_dir.join("../lib").join(FILE_NAME),
    ];
    if let Some(multiarch) = multiarch() {
        places.push(command_dir.join("../lib").join(multiarch).join(FILE_NAME));
    }
    places
}

/// The Debian multiarch triplet of this build (the one `make deb` installs into).
pub fn multiarch() -> Option<&'static str> {
    match (std::env::consts::ARCH, std::env::consts::OS) {
        ("x86_64", "linux") => Some("x86_64-linux-gnu"),
        ("aarch64", "linux") => Some("aarch64-linux-gnu"),
        _ => None,
    }
}

/// The library to preload, as an absolute path (a relative one would break when the
/// program changes directory).
pub fn find(named: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = named {
        return std::fs::canonicalize(path).map_err(|e| format!("--lib {}: {e}", path.display()));
    }
    let command =
        std::env::current_exe().map_err(|e| format!("cannot locate this command: {e}"))?;
    let dir = command.parent().unwrap_or(Path::new("/"));
    let places = candidates(dir);
    places
        .iter()
        .find_map(|place| std::fs::canonicalize(place).ok())
        .ok_or_else(|| {
            let tried: Vec<String> = places.iter().map(|p| p.display().to_string()).collect();
            format!(
                "{FILE_NAME} not found (tried {}); name it with --lib",
                tried.join(", ")
            )
        })
}

/// The library's function `name`, the library `dlopen`ed into this process. `F` must be
/// the function pointer type the library defines `name` with.
pub fn symbol<F: Copy>(lib: &Path, name: &std::ffi::CStr) -> Result<F, String> {
    use std::os::unix::ffi::OsStrExt;
    assert_eq!(
        std::mem::size_of::<F>(),
        std::mem::size_of::<*mut libc::c_void>()
    );
    let path = std::ffi::CString::new(lib.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: a NUL-terminated path; RTLD_LOCAL keeps the library's hooks out of this
    // process's own calls.
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return Err(format!("cannot load {}", lib.display()));
    }
    // SAFETY: a valid handle and a NUL-terminated name.
    let symbol = unsafe { libc::dlsym(handle, name.as_ptr()) };
    if symbol.is_null() {
        return Err(format!(
            "{} has no {} (an older build?)",
            lib.display(),
            name.to_string_lossy()
        ));
    }
    // SAFETY: F is a function pointer type (same size, checked above) matching the
    // library's definition of `name`, the caller's contract.
    Ok(unsafe { std::mem::transmute_copy::<*mut libc::c_void, F>(&symbol) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_beside_then_in_lib_then_in_multiarch() {
        let places = candidates(Path::new("/usr/bin"));
        assert_eq!(places[0], Path::new("/usr/bin/liblunar_intercept.so"));
        assert_eq!(
            places[1],
            Path::new("/usr/bin/../lib/liblunar_intercept.so")
        );
        if cfg!(all(target_arch = "x86_64", target_os = "linux")) {
            assert_eq!(
                places[2],
                Path::new("/usr/bin/../lib/x86_64-linux-gnu/liblunar_intercept.so")
            );
        }
    }
}
