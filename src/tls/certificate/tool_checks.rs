//! Cross-checks with real X.509 parsers, when they are installed: `openssl` and GnuTLS's
//! `certtool` must parse the synthetic certificate and read in it what the layout means
//! to write.

use std::path::PathBuf;
use std::process::{Command, Output};

use super::tests::SOME_NOW;
use super::{synthetic_leaf_der, truncate_at_char_boundary};

/// A DER file in the temp directory, removed when dropped.
struct TempDer(PathBuf);

impl TempDer {
    fn new(label: &str, der: &[u8]) -> Self {
        let path = std::env::temp_dir().join(format!(
            "lunar-certificate-test-{}-{label}.der",
            std::process::id()
        ));
        std::fs::write(&path, der).expect("write temp certificate");
        TempDer(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("temp path is UTF-8")
    }
}

impl Drop for TempDer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// None when the tool is not installed: the caller then skips its check.
fn run_tool(program: &str, args: &[&str]) -> Option<Output> {
    match Command::new(program).args(args).output() {
        Ok(output) => Some(output),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => panic!("cannot run {program}: {error}"),
    }
}

fn successful_stdout(program: &str, args: &[&str]) -> Option<String> {
    let output = run_tool(program, args)?;
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn tool_is_installed(program: &str, version_args: &[&str]) -> bool {
    let installed = run_tool(program, version_args).is_some();
    if !installed {
        println!("note: `{program}` is not installed; skipping its cross-check");
    }
    installed
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
    if !tool_is_installed("openssl", &["version"]) {
        return;
    }
    for case in cases() {
        let file = TempDer::new(
            &format!("openssl-{}", case.label),
            &synthetic_leaf_der(&case.host, SOME_NOW),
        );
        let x509 = |extra: &[&str]| {
            let mut args = vec!["x509", "-inform", "DER", "-in", file.path(), "-noout"];
            args.extend_from_slice(extra);
            successful_stdout("openssl", &args).expect("openssl is installed")
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
            "openssl",
            &["asn1parse", "-inform", "DER", "-in", file.path()],
        )
        .expect("openssl is installed");

        // The embedded point must be on the curve.
        let key = x509(&["-pubkey"]);
        let key_file = std::env::temp_dir().join(format!(
            "lunar-certificate-test-{}-{}-key.pem",
            std::process::id(),
            case.label
        ));
        std::fs::write(&key_file, key).expect("write public key");
        let key_path = key_file.to_str().expect("temp path is UTF-8");
        let key_check = successful_stdout(
            "openssl",
            &["pkey", "-pubin", "-in", key_path, "-pubcheck", "-noout"],
        );
        let _ = std::fs::remove_file(&key_file);
        key_check.expect("openssl is installed");
    }
}

#[test]
fn openssl_accepts_generalized_time_after_2049() {
    if !tool_is_installed("openssl", &["version"]) {
        return;
    }
    let file = TempDer::new(
        "openssl-2050",
        &synthetic_leaf_der("future.test", 2_524_608_000),
    );
    let dates = successful_stdout(
        "openssl",
        &[
            "x509",
            "-inform",
            "DER",
            "-in",
            file.path(),
            "-noout",
            "-dates",
        ],
    )
    .expect("openssl is installed");
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
    if !tool_is_installed("certtool", &["--version"]) {
        return;
    }
    for case in cases() {
        let file = TempDer::new(
            &format!("certtool-{}", case.label),
            &synthetic_leaf_der(&case.host, SOME_NOW),
        );
        let info = successful_stdout("certtool", &["-i", "--inder", "--infile", file.path()])
            .expect("certtool is installed");
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
