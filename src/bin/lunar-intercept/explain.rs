//! `lunar-intercept explain URL [--header 'x-lunar-allow: true|false'] [--lib PATH]`: the
//! library's own answer (its `lunar_intercept_explain`, the library `dlopen`ed into this
//! process) for a request to URL, made now, by a process with this environment.

use super::library;
use std::ffi::{CString, OsString};
use std::path::PathBuf;
use std::process::ExitCode;

pub fn explain(args: &[OsString]) -> ExitCode {
    let request = match parse(args) {
        Ok(request) => request,
        Err(message) => {
            eprintln!("lunar-intercept explain: {message}");
            return ExitCode::from(2);
        }
    };
    let lib = match library::find(request.lib.as_deref()) {
        Ok(lib) => lib,
        Err(message) => {
            eprintln!("lunar-intercept explain: {message}");
            return ExitCode::from(127);
        }
    };
    match ask(&lib, &request) {
        Ok(answer) => {
            println!("{} -> {answer}", request.url);
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("lunar-intercept explain: {message}");
            ExitCode::from(1)
        }
    }
}

struct Request {
    url: String,
    host: String,
    port: u16,
    allow: Option<bool>,
    lib: Option<PathBuf>,
}

fn parse(args: &[OsString]) -> Result<Request, String> {
    let mut url = None;
    let mut allow = None;
    let mut lib = None;
    let mut rest = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--lib" => lib = Some(PathBuf::from(rest.next().ok_or("--lib needs a path")?)),
            "--header" | "-H" => {
                let header = rest
                    .next()
                    .ok_or("--header needs 'x-lunar-allow: true|false'")?;
                allow = Some(allow_header(&header)?);
            }
            _ if url.is_none() && !arg.starts_with('-') => url = Some(arg),
            _ => return Err(format!("unexpected argument {arg}")),
        }
    }
    let url = url.ok_or("no URL")?;
    let (host, port) = authority(&url)?;
    Ok(Request {
        url,
        host,
        port,
        allow,
        lib,
    })
}

/// `x-lunar-allow: true|false` (case-insensitive) -> its value.
fn allow_header(header: &str) -> Result<bool, String> {
    let (name, value) = header.split_once(':').ok_or("a header is 'Name: value'")?;
    if !name.trim().eq_ignore_ascii_case("x-lunar-allow") {
        return Err(format!(
            "only x-lunar-allow changes the route, not {}",
            name.trim()
        ));
    }
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(format!("x-lunar-allow: {other}: the library ignores it")),
    }
}

/// `http[s]://host[:port][/...]` -> (host, port); IPv6 literals in brackets.
fn authority(url: &str) -> Result<(String, u16), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("a URL is http://host[:port]/...")?;
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        other => return Err(format!("scheme {other}: http or https")),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (
            host,
            port.parse::<u16>().map_err(|_| format!("port {port}"))?,
        ),
        _ => (authority, default),
    };
    if host.is_empty() {
        return Err("no host in the URL".to_string());
    }
    Ok((host.to_string(), port))
}

type Explain = unsafe extern "C" fn(*const libc::c_char, u16, libc::c_int, *mut u8, usize) -> usize;

fn ask(lib: &std::path::Path, request: &Request) -> Result<String, String> {
    let explain: Explain = library::symbol(lib, c"lunar_intercept_explain")?;
    let host = CString::new(request.host.as_str()).map_err(|e| e.to_string())?;
    let allow = match request.allow {
        Some(true) => 1,
        Some(false) => 0,
        None => -1,
    };
    let mut out = vec![0u8; 4096];
    // SAFETY: `host` is NUL-terminated and `out` has out.len() bytes of room.
    let len = unsafe {
        explain(
            host.as_ptr(),
            request.port,
            allow,
            out.as_mut_ptr(),
            out.len(),
        )
    };
    out.truncate(len.min(out.len()));
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities() {
        assert_eq!(
            authority("http://api.example.test/x").unwrap(),
            ("api.example.test".into(), 80)
        );
        assert_eq!(
            authority("https://a.test:8443").unwrap(),
            ("a.test".into(), 8443)
        );
        assert_eq!(
            authority("http://u:p@[2001:db8::1]:81/").unwrap(),
            ("[2001:db8::1]".into(), 81)
        );
        assert_eq!(
            authority("https://[2001:db8::1]/").unwrap(),
            ("[2001:db8::1]".into(), 443)
        );
        assert!(authority("ftp://a.test/").is_err());
        assert!(authority("a.test").is_err());
    }

    #[test]
    fn allow_headers() {
        assert_eq!(allow_header("X-Lunar-Allow: FALSE"), Ok(false));
        assert_eq!(allow_header("x-lunar-allow:true"), Ok(true));
        assert!(allow_header("host: a").is_err());
        assert!(allow_header("x-lunar-allow: maybe").is_err());
    }
}
