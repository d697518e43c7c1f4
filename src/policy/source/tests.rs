use super::*;
use crate::policy::config::{LogLevel, LogTarget};

/// A file as `open` would find it, or the error it would give.
struct World {
    variables: Vec<(&'static str, &'static str)>,
    files: Vec<(&'static str, Result<SmallFile, FileError>)>,
}

const PROXY_FILE: &str = "LUNAR_PROXY_HOST=file-proxy:8000\nLUNAR_TENANT_ID=file-tenant\n";

fn file(owner: u32, mode: u32, text: &str) -> Result<SmallFile, FileError> {
    Ok(SmallFile {
        owner,
        mode: libc::S_IFREG | mode,
        bytes: text.as_bytes().to_vec(),
    })
}

impl World {
    fn read(&self, source: Source) -> (Setup, Logging, Vec<String>, Vec<(String, Symlinks)>) {
        let opened = std::cell::RefCell::new(Vec::new());
        let environment = |name: &str| {
            self.variables
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.as_bytes().to_vec())
        };
        let open = |path: &[u8], symlinks| {
            let path = String::from_utf8(path.to_vec()).unwrap();
            opened.borrow_mut().push((path.clone(), symlinks));
            self.files
                .iter()
                .find(|(name, _)| *name == path)
                .map(|(_, found)| found.clone())
                .unwrap_or(Err(FileError::Open(libc::ENOENT)))
        };
        let mut warnings = Vec::new();
        let (setup, logging) = read_from(source, &environment, &open, &mut |w| warnings.push(w));
        (setup, logging, warnings, opened.into_inner())
    }
}

fn proxy_host(setup: &Setup) -> Option<String> {
    match setup {
        Setup::Active(config) => Some(format!("{}:{}", config.proxy.host, config.proxy.port)),
        _ => None,
    }
}

#[test]
fn no_file_reads_the_environment_alone_silently() {
    let world = World {
        variables: vec![("LUNAR_PROXY_HOST", "env-proxy:1")],
        files: vec![],
    };
    let (setup, _, warnings, opened) = world.read(Source::Environment);
    assert_eq!(proxy_host(&setup).as_deref(), Some("env-proxy:1"));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(opened, [(DEFAULT_PATH.to_string(), Symlinks::Follow)]);
}

#[test]
fn the_default_file_under_the_environment() {
    let world = World {
        variables: vec![("LUNAR_TENANT_ID", "env-tenant")],
        // Any owner and mode: an ordinary process trusts what it could set itself.
        files: vec![(DEFAULT_PATH, file(1000, 0o666, PROXY_FILE))],
    };
    let (setup, _, warnings, _) = world.read(Source::Environment);
    assert!(warnings.is_empty(), "{warnings:?}");
    let Setup::Active(config) = setup else {
        panic!("{setup:?}")
    };
    assert_eq!(config.proxy.host, "file-proxy");
    assert_eq!(config.tenant_id, "env-tenant");
}

#[test]
fn the_variable_names_another_file() {
    let world = World {
        variables: vec![(PATH_VARIABLE, "/srv/lunar.conf")],
        files: vec![
            (DEFAULT_PATH, file(0, 0o644, "LUNAR_PROXY_HOST=default:1\n")),
            ("/srv/lunar.conf", file(1000, 0o644, PROXY_FILE)),
        ],
    };
    let (setup, _, warnings, opened) = world.read(Source::Environment);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(proxy_host(&setup).as_deref(), Some("file-proxy:8000"));
    assert_eq!(opened.len(), 1, "{opened:?}");
}

#[test]
fn a_named_file_missing_or_any_file_unreadable_warns_once_and_the_environment_applies() {
    let world = World {
        variables: vec![
            (PATH_VARIABLE, "/srv/missing.conf"),
            ("LUNAR_PROXY_HOST", "env-proxy:1"),
        ],
        files: vec![],
    };
    let (setup, _, warnings, _) = world.read(Source::Environment);
    assert_eq!(proxy_host(&setup).as_deref(), Some("env-proxy:1"));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("/srv/missing.conf"), "{warnings:?}");

    for error in [
        FileError::Open(libc::EACCES),
        FileError::NotRegular,
        FileError::TooLarge,
    ] {
        let world = World {
            variables: vec![],
            files: vec![(DEFAULT_PATH, Err(error))],
        };
        let (setup, _, warnings, _) = world.read(Source::Environment);
        assert!(matches!(setup, Setup::Unset), "{setup:?}");
        assert_eq!(warnings.len(), 1, "{error:?}: {warnings:?}");
        assert!(warnings[0].contains(DEFAULT_PATH), "{warnings:?}");
    }
}

#[test]
fn file_warnings_come_with_the_rest() {
    let world = World {
        variables: vec![],
        files: vec![(
            DEFAULT_PATH,
            file(
                0,
                0o644,
                "LUNAR_PROXY_HOST=p:1\nbogus\nLUNAR_HANDSHAKE_PORT=x\n",
            ),
        )],
    };
    let (setup, _, warnings, _) = world.read(Source::Environment);
    assert!(matches!(setup, Setup::Active(_)), "{setup:?}");
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].starts_with(&format!("{DEFAULT_PATH}:2: ")),
        "{warnings:?}"
    );
    assert!(warnings[1].contains("LUNAR_HANDSHAKE_PORT"), "{warnings:?}");
}

/// The environment of a user attacking a setuid program.
const HOSTILE: [(&str, &str); 4] = [
    ("LUNAR_PROXY_HOST", "127.0.0.1:9999"),
    (PATH_VARIABLE, "/home/user/evil.conf"),
    ("LUNAR_INTERCEPTOR_LOG_LEVEL", "DEBUG"),
    ("LUNAR_INTERCEPTOR_LOG_TARGET", "syslog"),
];

#[test]
fn secure_execution_without_a_file_reads_nothing_and_is_silent() {
    let world = World {
        variables: HOSTILE.to_vec(),
        files: vec![("/home/user/evil.conf", file(0, 0o644, PROXY_FILE))],
    };
    let (setup, logging, warnings, opened) = world.read(Source::SecureExecution);
    assert!(matches!(setup, Setup::SecureExecution), "{setup:?}");
    assert_eq!(logging, Logging::default());
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(opened, [(DEFAULT_PATH.to_string(), Symlinks::Refuse)]);
}

#[test]
fn secure_execution_follows_a_root_owned_file_and_only_it() {
    let world = World {
        variables: HOSTILE.to_vec(),
        files: vec![(
            DEFAULT_PATH,
            file(
                0,
                0o644,
                "LUNAR_PROXY_HOST=file-proxy:8000\nLUNAR_INTERCEPTOR_LOG_LEVEL=ERROR\n",
            ),
        )],
    };
    let (setup, logging, warnings, opened) = world.read(Source::SecureExecution);
    assert!(warnings.is_empty(), "{warnings:?}");
    let Setup::Active(config) = setup else {
        panic!("{setup:?}")
    };
    // Nothing of the environment: not the proxy, not the log level or target.
    assert_eq!(config.proxy.host, "file-proxy");
    assert_eq!(config.tenant_id, "unknown");
    assert_eq!(logging.level, LogLevel::Error);
    assert_eq!(logging.target, LogTarget::Stderr);
    assert_eq!(opened, [(DEFAULT_PATH.to_string(), Symlinks::Refuse)]);
}

#[test]
fn secure_execution_ignores_an_untrusted_file_with_one_warning() {
    for (owner, mode) in [(0, 0o664), (0, 0o646), (1000, 0o644), (65534, 0o600)] {
        let world = World {
            variables: HOSTILE.to_vec(),
            files: vec![(DEFAULT_PATH, file(owner, mode, PROXY_FILE))],
        };
        let (setup, logging, warnings, _) = world.read(Source::SecureExecution);
        assert!(matches!(setup, Setup::SecureExecution), "{setup:?}");
        assert_eq!(logging, Logging::default(), "{owner} {mode:o}");
        assert_eq!(warnings.len(), 1, "{owner} {mode:o}: {warnings:?}");
        assert!(warnings[0].contains(DEFAULT_PATH), "{warnings:?}");
    }
    // A symbolic link (O_NOFOLLOW says ELOOP) or anything unreadable: the same.
    let world = World {
        variables: vec![],
        files: vec![(DEFAULT_PATH, Err(FileError::Open(libc::ELOOP)))],
    };
    let (setup, _, warnings, _) = world.read(Source::SecureExecution);
    assert!(matches!(setup, Setup::SecureExecution), "{setup:?}");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("symbolic link"), "{warnings:?}");
}

#[test]
fn a_test_process_is_not_in_secure_execution() {
    assert_eq!(Source::of_this_process(), Source::Environment);
}

#[test]
fn origins_say_environment_then_file_then_unset() {
    let environment = |name: &str| match name {
        "LUNAR_PROXY_HOST" => Some(b"env-proxy:8000".to_vec()),
        "LUNAR_TENANT_ID" => Some(b"".to_vec()),
        PATH_VARIABLE => Some(b"/tmp/x.conf".to_vec()),
        _ => None,
    };
    let open = |path: &[u8], _| {
        assert_eq!(path, b"/tmp/x.conf");
        file(0, 0o644, PROXY_FILE)
    };
    let mut warnings = Vec::new();
    let origins = origins_from(&environment, &open, &mut |w| warnings.push(w));
    let of = |name: &str| {
        let (_, origin, value) = origins.iter().find(|(n, _, _)| *n == name).unwrap();
        (origin.clone(), String::from_utf8(value.clone()).unwrap())
    };
    assert_eq!(
        of("LUNAR_PROXY_HOST"),
        (Origin::Environment, "env-proxy:8000".into())
    );
    // A blank variable is unset: the file's value shows through.
    assert_eq!(
        of("LUNAR_TENANT_ID"),
        (Origin::File("/tmp/x.conf".into()), "file-tenant".into())
    );
    assert_eq!(of("LUNAR_BLOCK_LIST"), (Origin::Unset, String::new()));
    assert_eq!(origins.len(), crate::policy::config::VARIABLES.len());
    assert!(warnings.is_empty(), "{warnings:?}");
}
