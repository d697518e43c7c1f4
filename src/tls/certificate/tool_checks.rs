//! Cross-checks with real X.509 parsers: `openssl` and GnuTLS's `certtool` must parse the
//! synthetic certificate and read in it what the layout means to write. Both are required
//! (Debian's `openssl` and `gnutls-bin`, installed by `scripts/install-deps.sh`): a check
//! whose tool is missing fails, naming the package.

use std::path::PathBuf;
use std::process::Command;

use super::tests::SOME_NOW;
use super::{synthetic_leaf_der, truncate_at_char_boundary};

/// A file in the temp directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &[u8]) -> Self {
        let path = std::env::temp_dir().join(format!(
            "lunar-certificate-test-{}-{name}",
            std::process::id()
        ));
        std::fs::write(&path, contents).expect("write temp file");
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("temp path is UTF-8")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// An external program and the Debian package that provides it.
struct Tool {
    program: &'static str,
    package: &'static str,
}

const OPENSSL: Tool = Tool {
    program: "openssl",
    package: "openssl",
};

const CERTTOOL: Tool = Tool {
    program: "certtool",
    package: "gnutls-bin",
};

/// The tool's stdout; it must exit 0. A tool that is not installed fails the check (it
/// never passes without having looked): `scripts/install-deps.sh` installs both.
fn successful_stdout(tool: &Tool, args: &[&str]) -> String {
    let program = tool.program;
    let output = match Command::new(program).args(args).output() {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{program}` is not installed, so this cross-check cannot run: install Debian's \
             `{}` (scripts/install-deps.sh does)",
            tool.package
        ),
        Err(error) => panic!("cannot run {program}: {error}"),
    };
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

struct Case {
    label: &'static str,
    host: String,
    /// How `openssl x509 -text` shows the SAN.
    openssl_san: String,
    /// How `certtool -i` shows the SAN.
    certtool_san: String,
    /// The openssl option that matches the host against the certificate.
    check_option: &'static str,
}

fn cases() -> Vec<Case> {
    let long_name = format!("{}.example.test", "a".repeat(57));
    vec![
        Case {
            label: "dns",
            host: "api.example.test".into(),
            openssl_san: "DNS:api.example.test".into(),
            certtool_san: "DNSname: api.example.test".into(),
            check_option: "-checkhost",
        },
        Case {
            label: "ipv4",
            host: "127.0.0.1".into(),
            openssl_san: "IP Address:127.0.0.1".into(),
            certtool_san: "IPAddress: 127.0.0.1".into(),
            check_option: "-checkip",
        },
        Case {
            label: "ipv6",
            host: "::1".into(),
            openssl_san: "IP Address:0:0:0:0:0:0:0:1".into(),
            certtool_san: "IPAddress: ::1".into(),
            check_option: "-checkip",
        },
        Case {
            label: "long",
            openssl_san: format!("DNS:{long_name}"),
            certtool_san: format!("DNSname: {long_name}"),
            host: long_name,
            check_option: "-checkhost",
        },
    ]
}

#[test]
fn openssl_parses_the_certificate_and_matches_the_host() {
    for case in cases() {
        let file = TempFile::new(
            &format!("openssl-{}.der", case.label),
            &synthetic_leaf_der(&case.host, SOME_NOW),
        );
        let x509 = |extra: &[&str]| {
            let mut args = vec!["x509", "-inform", "DER", "-in", file.path(), "-noout"];
            args.extend_from_slice(extra);
            successful_stdout(&OPENSSL, &args)
        };

        let text = x509(&["-text"]);
        assert!(
            text.contains(&case.openssl_san),
            "{}: SAN missing in\n{text}",
            case.label
        );
        assert!(
            text.contains("Issuer: CN = Lunar Proxy virtual session"),
            "{text}"
        );
        assert!(text.contains("ecdsa-with-SHA256"), "{text}");
        assert!(text.contains("NIST CURVE: P-256"), "{text}");
        assert!(text.contains("CA:FALSE"), "{text}");
        assert!(text.contains("Digital Signature"), "{text}");
        assert!(text.contains("TLS Web Server Authentication"), "{text}");

        let expected_cn = truncate_at_char_boundary(&case.host, 64);
        let subject = x509(&["-subject"]);
        assert!(
            subject.contains(&format!("CN = {expected_cn}")),
            "{subject}"
        );

        let dates = x509(&["-dates"]);
        assert!(
            dates.contains("notBefore=Nov 13 22:13:20 2023 GMT"),
            "{dates}"
        );
        assert!(
            dates.contains("notAfter=Nov 13 22:13:20 2024 GMT"),
            "{dates}"
        );

        let check = x509(&[case.check_option, &case.host]);
        assert!(check.contains("does match"), "{}: {check}", case.label);
        let other = if case.check_option == "-checkip" {
            "10.9.8.7"
        } else {
            "other.example.test"
        };
        let mismatch = x509(&[case.check_option, other]);
        assert!(
            mismatch.contains("does NOT match"),
            "{}: {mismatch}",
            case.label
        );

        successful_stdout(
            &OPENSSL,
            &["asn1parse", "-inform", "DER", "-in", file.path()],
        );

        // The embedded point must be on the curve.
        let key = x509(&["-pubkey"]);
        let key_file = TempFile::new(&format!("{}-key.pem", case.label), key.as_bytes());
        successful_stdout(
            &OPENSSL,
            &[
                "pkey",
                "-pubin",
                "-in",
                key_file.path(),
                "-pubcheck",
                "-noout",
            ],
        );
    }
}

#[test]
fn openssl_accepts_generalized_time_after_2049() {
    let file = TempFile::new(
        "openssl-2050.der",
        &synthetic_leaf_der("future.test", 2_524_608_000),
    );
    let dates = successful_stdout(
        &OPENSSL,
        &[
            "x509",
            "-inform",
            "DER",
            "-in",
            file.path(),
            "-noout",
            "-dates",
        ],
    );
    assert!(
        dates.contains("notBefore=Dec 31 00:00:00 2049 GMT"),
        "{dates}"
    );
    assert!(
        dates.contains("notAfter=Jan  1 00:00:00 2051 GMT"),
        "{dates}"
    );
}

#[test]
fn gnutls_certtool_accepts_the_certificate() {
    for case in cases() {
        let file = TempFile::new(
            &format!("certtool-{}.der", case.label),
            &synthetic_leaf_der(&case.host, SOME_NOW),
        );
        let info = successful_stdout(&CERTTOOL, &["-i", "--inder", "--infile", file.path()]);
        assert!(
            info.contains(&case.certtool_san),
            "{}: SAN missing in\n{info}",
            case.label
        );
        assert!(info.contains("Version: 3"), "{info}");
        assert!(
            info.contains("Not Before: Mon Nov 13 22:13:20 UTC 2023"),
            "{info}"
        );
    }
}
