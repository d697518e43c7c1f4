//! `lunar-intercept doctor CMD`: how CMD would meet the preload, read from its files (it
//! is never run): statically or dynamically linked, Go, setuid, and which TLS library its
//! https would go through, so whether its http and https can be diverted, and why not.

use super::elf::{self, Elf, Kind};
use super::library;
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug)]
pub struct Check {
    pub status: Status,
    pub what: String,
    pub detail: String,
    pub advice: &'static str,
}

fn check(status: Status, what: &str, detail: String, advice: &'static str) -> Check {
    Check {
        status,
        what: what.to_string(),
        detail,
        advice,
    }
}

pub fn examine(command: &str) -> Vec<Check> {
    let Some(path) = find_in_path(command) else {
        return vec![check(
            Status::Fail,
            command,
            "not found (PATH)".to_string(),
            "name the program by its path",
        )];
    };
    let mut checks = Vec::new();
    examine_file(command, &path, &mut checks, 0);
    checks
}

fn examine_file(command: &str, path: &Path, checks: &mut Vec<Check>, depth: usize) {
    // The real file: `$ORIGIN` in its search paths is where it is, not where a link is.
    let path = &std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let shown = path.display().to_string();
    let kind = match elf::read(path) {
        Ok(kind) => kind,
        Err(e) => {
            checks.push(check(Status::Fail, command, format!("{shown}: {e}"), ""));
            return;
        }
    };
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o6000 != 0 {
            checks.push(check(
                Status::Warn,
                command,
                format!("{shown} is setuid or setgid: it never reads its environment"),
                "its configuration is /etc/lunar/interceptor.conf alone, owned by root",
            ));
        }
    }
    match kind {
        Kind::Script(line) if depth < 4 => {
            let mut words = line.split_whitespace();
            let mut interpreter = words.next().unwrap_or("").to_string();
            if interpreter.ends_with("/env") {
                interpreter = words
                    .find(|w| !w.starts_with('-'))
                    .unwrap_or("")
                    .to_string();
            }
            checks.push(check(
                Status::Pass,
                command,
                format!("{shown} is a script run by {interpreter}"),
                "",
            ));
            match find_in_path(&interpreter) {
                Some(found) => examine_file(command, &found, checks, depth + 1),
                None => checks.push(check(
                    Status::Fail,
                    command,
                    format!("its interpreter {interpreter} is not found"),
                    "",
                )),
            }
        }
        Kind::Script(_) => checks.push(check(
            Status::Fail,
            command,
            "#! interpreters nest too deep".to_string(),
            "",
        )),
        Kind::Other(what) => checks.push(check(
            Status::Warn,
            command,
            format!("{shown}: {what}: not examined"),
            "",
        )),
        Kind::Elf(program) => examine_elf(command, path, &program, checks),
    }
}

fn examine_elf(command: &str, path: &Path, program: &Elf, checks: &mut Vec<Check>) {
    let shown = path.display();
    if program.go {
        checks.push(check(
            Status::Fail,
            command,
            format!("{shown} is a Go program: its net package makes system calls itself, past libc; nothing is diverted"),
            "nothing to preload into: send its API calls to Lunar Proxy directly (the proxy as the API's base URL)",
        ));
        return;
    }
    let Some(interpreter) = &program.interpreter else {
        checks.push(check(
            Status::Fail,
            command,
            format!("{shown} is statically linked: the dynamic loader never runs, so LD_PRELOAD and /etc/ld.so.preload do not apply; nothing is diverted"),
            "use a dynamically linked build of the program",
        ));
        return;
    };
    checks.push(check(
        Status::Pass,
        &format!("{command} http"),
        format!("{shown} is dynamically linked ({interpreter}): its connects meet the library, so http on the intercepted ports is diverted"),
        "",
    ));
    let libraries = dependencies(path, program);
    let has = |prefix: &str| {
        libraries
            .iter()
            .find(|(name, _)| name.starts_with(prefix))
            .map(|(_, path)| path.display().to_string())
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let https = format!("{command} https");
    let (status, detail, advice) = if let Some(jli) = has("libjli.so").or_else(|| has("libjvm.so"))
    {
        match language_hook("lunar-java-hook.jar") {
            Some(hook) if name == "java" => (
                Status::Pass,
                format!("a JVM ({jli}): its https (JSSE) is diverted through the library's Java hook ({hook}), which the java launcher adds (unless the program sets java.security.properties itself); requests that go to their destination get real TLS with the program's own SSLContext"),
                "",
            ),
            _ => (
                Status::Warn,
                format!("a JVM ({jli}): its https is JSSE, pure Java, which the library sees only through its Java hook, added by the `java` launcher with lunar-java-hook.jar beside the library; it goes directly to its destination"),
                "its http is diverted; start it with the `java` launcher (and the hook installed), or use Lunar's Java interceptor",
            ),
        }
    } else if has("libnode.so").is_some() || name == "node" || name == "nodejs" {
        match language_hook("lunar-node-hook.cjs") {
            Some(hook) if name == "node" || name == "nodejs" => (
                Status::Pass,
                format!("Node: its https is diverted through the library's Node hook ({hook}), added to NODE_OPTIONS at start; requests that go to their destination get real TLS with the program's own options"),
                "",
            ),
            _ => (
                Status::Warn,
                "Node: its https runs OpenSSL over memory buffers inside Node, which the library sees only through its Node hook (lunar-node-hook.cjs beside the library, for a program named node or nodejs); it goes directly to its destination".to_string(),
                "its http is diverted; install the hook beside the library, or use Lunar's Node interceptor",
            ),
        }
    } else if name.starts_with("php") {
        (
            Status::Warn,
            "PHP: its extensions (curl, openssl) are loaded with RTLD_DEEPBIND and bind past any preload; neither http nor https of php-curl is seen".to_string(),
            "use Lunar's proxy address directly for PHP",
        )
    } else if let Some(ssl) = has("libssl.so") {
        (
            Status::Pass,
            format!("OpenSSL ({ssl}): https is diverted inside the program's own TLS library"),
            "",
        )
    } else if let Some(gnutls) = has("libgnutls.so") {
        (
            Status::Pass,
            format!("GnuTLS ({gnutls}): https is diverted inside the program's own TLS library"),
            "",
        )
    } else if let Some(ssl) = python_ssl(&name, path) {
        (
            Status::Pass,
            format!("Python: its ssl module ({ssl}) uses OpenSSL: https of http.client, urllib and requests is diverted; asyncio's TLS (memory buffers) goes directly"),
            "",
        )
    } else {
        (
            Status::Warn,
            "no TLS library linked: https is diverted only if the program loads OpenSSL (libssl.so) or GnuTLS at run time, as Perl's IO::Socket::SSL does; other TLS goes directly".to_string(),
            "ask `lunar-intercept explain https://HOST/` what a request would do",
        )
    };
    checks.push(check(status, &https, detail, advice));
}

/// A language hook's file beside the library this command preloads, if it is there.
fn language_hook(file: &str) -> Option<String> {
    let library = library::find(None).ok()?;
    let hook = library.parent()?.join(file);
    hook.is_file().then(|| hook.display().to_string())
}

/// The libraries the program loads at start (DT_NEEDED, transitively), by name with the
/// file found for each, searched as the loader would in the usual places.
fn dependencies(path: &Path, program: &Elf) -> Vec<(String, PathBuf)> {
    let system = system_dirs();
    let mut found = Vec::new();
    let mut seen = BTreeSet::new();
    let mut queue: Vec<(PathBuf, Vec<String>, Vec<String>)> = vec![(
        path.to_path_buf(),
        program.needed.clone(),
        program.search_paths.clone(),
    )];
    while let Some((from, needed, search_paths)) = queue.pop() {
        let origin = from.parent().unwrap_or(Path::new("/")).to_path_buf();
        for name in needed {
            if !seen.insert(name.clone()) || found.len() > 300 {
                continue;
            }
            let Some(library) = locate(&name, &origin, &search_paths, &system) else {
                continue;
            };
            if let Ok(Kind::Elf(elf)) = elf::read(&library) {
                queue.push((library.clone(), elf.needed, elf.search_paths));
            }
            found.push((name, library));
        }
    }
    found
}

/// Where the loader looks for `name` NEEDed by a file in `origin`: that file's RUNPATH or
/// RPATH (`$ORIGIN` expanded), then `system` (`system_dirs`).
fn locate(
    name: &str,
    origin: &Path,
    search_paths: &[String],
    system: &[String],
) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name)).filter(|p| p.exists());
    }
    let origin = origin.display().to_string();
    search_paths
        .iter()
        .map(|p| p.replace("$ORIGIN", &origin).replace("${ORIGIN}", &origin))
        .chain(system.iter().cloned())
        .map(|dir| Path::new(&dir).join(name))
        .find(|candidate| candidate.exists())
}

/// The directories every lookup ends in: LD_LIBRARY_PATH, those /etc/ld.so.conf names,
/// the multiarch and default directories. Read once per program examined.
fn system_dirs() -> Vec<String> {
    let mut dirs: Vec<String> = std::env::var("LD_LIBRARY_PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    dirs.extend(configured_dirs());
    if let Some(multiarch) = library::multiarch() {
        dirs.push(format!("/lib/{multiarch}"));
        dirs.push(format!("/usr/lib/{multiarch}"));
    }
    dirs.extend(["/lib64", "/usr/lib64", "/lib", "/usr/lib"].map(str::to_string));
    dirs
}

/// The directories /etc/ld.so.conf names (with its `include` globs of *.conf files).
fn configured_dirs() -> Vec<String> {
    let mut dirs = Vec::new();
    let mut files = vec![PathBuf::from("/etc/ld.so.conf")];
    if let Ok(entries) = std::fs::read_dir("/etc/ld.so.conf.d") {
        let mut more: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .collect();
        more.sort();
        files.extend(more);
    }
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for line in text.lines().map(str::trim) {
            if line.starts_with('/') {
                dirs.push(line.to_string());
            }
        }
    }
    dirs
}

/// Python's `_ssl` extension module (in lib-dynload) and the OpenSSL it links.
fn python_ssl(name: &str, path: &Path) -> Option<String> {
    if !name.starts_with("python") {
        return None;
    }
    let real = std::fs::canonicalize(path).ok()?;
    let version = real.file_name()?.to_string_lossy().into_owned();
    let dynload = Path::new("/usr/lib").join(&version).join("lib-dynload");
    let module = std::fs::read_dir(&dynload)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("_ssl."))
        })?;
    let Ok(Kind::Elf(elf)) = elf::read(&module) else {
        return None;
    };
    dependencies(&module, &elf)
        .into_iter()
        .find(|(name, _)| name.starts_with("libssl.so"))
        .map(|(_, library)| format!("{} with {}", module.display(), library.display()))
}

fn find_in_path(command: &str) -> Option<PathBuf> {
    if command.is_empty() {
        return None;
    }
    if command.contains('/') {
        return Some(PathBuf::from(command)).filter(|p| p.is_file());
    }
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    path.split(':')
        .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(command))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_fails() {
        let checks = examine("no-such-program-anywhere");
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].status, Status::Fail);
    }

    #[test]
    fn a_shell_is_dynamic() {
        let checks = examine("/bin/sh");
        assert!(
            checks
                .iter()
                .any(|c| c.status == Status::Pass && c.detail.contains("dynamically linked")),
            "{checks:?}"
        );
    }
}
