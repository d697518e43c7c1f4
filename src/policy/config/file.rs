//! The configuration file's text (`/etc/lunar/interceptor.conf`, README "Configuration"):
//! `KEY=VALUE` lines with the environment variables' names, and how its values sit under
//! the environment's.
//!
//! A line is trimmed of white space around it; blank lines and lines starting with `#`
//! are skipped. The key and the value are trimmed too; the value is taken as it is
//! otherwise (no quotes, no escapes, no comment after it), bytes included, so it means
//! exactly what the same text in the environment means. A line that is not `KEY=VALUE`
//! with a known key gets one warning naming the file and the line, and is ignored;
//! the other lines still apply.

use super::values::{is_blank, quoted};
use super::VARIABLES;

/// The values a file set, by variable name; a key given twice keeps its last line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FileValues {
    values: Vec<(&'static str, Vec<u8>)>,
}

impl FileValues {
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.values
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_slice())
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Parses the file's bytes; `path` names the file in warnings (`path:line: ...`).
pub fn parse_file(text: &[u8], path: &str, warn: &mut dyn FnMut(String)) -> FileValues {
    let mut file = FileValues::default();
    let mut first_line_of: Vec<(&'static str, usize)> = Vec::new();
    for (index, line) in text.split(|&b| b == b'\n').enumerate() {
        let number = index + 1;
        let line = line.trim_ascii();
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        let Some(equals) = line.iter().position(|&b| b == b'=') else {
            warn(format!(
                "{path}:{number}: {} is not KEY=VALUE; line ignored",
                quoted(line)
            ));
            continue;
        };
        let raw_key = line[..equals].trim_ascii();
        let value = line[equals + 1..].trim_ascii();
        let Some(key) = VARIABLES
            .iter()
            .copied()
            .find(|name| name.as_bytes() == raw_key)
        else {
            let why = if raw_key == b"LUNAR_INTERCEPTOR_CONFIG" {
                "only the environment names the configuration file"
            } else {
                "not a LUNAR_* setting"
            };
            warn(format!(
                "{path}:{number}: {} is {why}; line ignored",
                quoted(raw_key)
            ));
            continue;
        };
        match first_line_of.iter().find(|(name, _)| *name == key) {
            Some(&(_, earlier)) => {
                warn(format!(
                    "{path}:{number}: {key} was already set on line {earlier}; this line wins"
                ));
                file.values.retain(|(name, _)| *name != key);
            }
            None => first_line_of.push((key, number)),
        }
        file.values.push((key, value.to_vec()));
    }
    file
}

/// The environment over the file, key by key: a variable set (not blank: `NAME=` means
/// unset, as everywhere) wins; otherwise the file's value, if any.
pub fn layered<'a>(
    environment: impl Fn(&str) -> Option<Vec<u8>> + 'a,
    file: &'a FileValues,
) -> impl Fn(&str) -> Option<Vec<u8>> + 'a {
    move |name| {
        environment(name)
            .filter(|value| !is_blank(value))
            .or_else(|| file.get(name).map(<[u8]>::to_vec))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse, LogLevel, LogTarget, Setup};
    use super::*;

    fn parsed(text: &str) -> (FileValues, Vec<String>) {
        let mut warnings = Vec::new();
        let file = parse_file(text.as_bytes(), "/etc/x.conf", &mut |w| warnings.push(w));
        (file, warnings)
    }

    #[test]
    fn keys_values_comments_and_blank_lines() {
        let (file, warnings) = parsed(
            "# Lunar\n\n   \nLUNAR_PROXY_HOST=proxy:8000\n  LUNAR_TENANT_ID =  acme corp \r\n\t# indented comment\nLUNAR_ALLOW_LIST=a.test,b.test",
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(file.get("LUNAR_PROXY_HOST"), Some(&b"proxy:8000"[..]));
        assert_eq!(file.get("LUNAR_TENANT_ID"), Some(&b"acme corp"[..]));
        assert_eq!(file.get("LUNAR_ALLOW_LIST"), Some(&b"a.test,b.test"[..]));
        assert_eq!(file.get("LUNAR_BLOCK_LIST"), None);
    }

    #[test]
    fn a_value_is_taken_as_it_is() {
        // `=` inside a value, `#` after it, quotes: all the value's own bytes.
        let (file, warnings) = parsed(
            "LUNAR_TENANT_ID=a=b\nLUNAR_ALLOW_LIST=x.test # y\nLUNAR_PROXY_HOST=\"p:1\"\nLUNAR_BLOCK_LIST=\n",
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(file.get("LUNAR_TENANT_ID"), Some(&b"a=b"[..]));
        assert_eq!(file.get("LUNAR_ALLOW_LIST"), Some(&b"x.test # y"[..]));
        assert_eq!(file.get("LUNAR_PROXY_HOST"), Some(&b"\"p:1\""[..]));
        assert_eq!(file.get("LUNAR_BLOCK_LIST"), Some(&b""[..]));
    }

    #[test]
    fn one_warning_per_bad_line_naming_file_and_line_the_rest_applies() {
        let (file, warnings) = parsed(
            "LUNAR_PROXY_HOST=p:1\nthis is not a setting\nLUNAR_PROXY_HOTS=q:2\n=x\nLUNAR_INTERCEPTOR_CONFIG=/tmp/x\nexport LUNAR_TENANT_ID=t\nLUNAR_HANDSHAKE_PORT=9\n",
        );
        assert_eq!(warnings.len(), 5, "{warnings:?}");
        for (warning, line) in warnings.iter().zip([2, 3, 4, 5, 6]) {
            assert!(
                warning.starts_with(&format!("/etc/x.conf:{line}: ")),
                "{warning}"
            );
        }
        assert!(warnings[0].contains("not KEY=VALUE"), "{warnings:?}");
        assert!(warnings[1].contains("LUNAR_PROXY_HOTS"), "{warnings:?}");
        assert!(warnings[3].contains("only the environment"), "{warnings:?}");
        assert_eq!(file.get("LUNAR_PROXY_HOST"), Some(&b"p:1"[..]));
        assert_eq!(file.get("LUNAR_HANDSHAKE_PORT"), Some(&b"9"[..]));
        assert_eq!(file.get("LUNAR_TENANT_ID"), None);
    }

    #[test]
    fn bytes_that_are_not_utf8() {
        // In a key: a bad line, shown escaped. In a value: the value's bytes, which
        // `parse` then judges like the environment's.
        let mut warnings = Vec::new();
        let file = parse_file(
            b"LUNAR_\xffHOST=p:1\nLUNAR_TENANT_ID=a\xffb\n",
            "f",
            &mut |w| warnings.push(w),
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains(r"\xff"), "{warnings:?}");
        assert_eq!(file.get("LUNAR_TENANT_ID"), Some(&b"a\xffb"[..]));
    }

    #[test]
    fn a_key_given_twice_keeps_the_last_line_with_a_warning() {
        let (file, warnings) = parsed("LUNAR_TENANT_ID=a\nLUNAR_TENANT_ID=b\n");
        assert_eq!(file.get("LUNAR_TENANT_ID"), Some(&b"b"[..]));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with("/etc/x.conf:2: "), "{warnings:?}");
        assert!(warnings[0].contains("line 1"), "{warnings:?}");
    }

    #[test]
    fn an_empty_file_sets_nothing() {
        assert!(parsed("").0.is_empty());
        assert!(parsed("\n# only a comment\n").0.is_empty());
    }

    fn env<'a>(vars: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<Vec<u8>> + 'a {
        move |name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.as_bytes().to_vec())
        }
    }

    #[test]
    fn the_environment_overrides_the_file_key_by_key() {
        let (file, _) = parsed(
            "LUNAR_PROXY_HOST=file-proxy:8000\nLUNAR_TENANT_ID=file-tenant\nLUNAR_INTERCEPT_PORTS=80,8080\n",
        );
        let vars = [
            ("LUNAR_TENANT_ID", "env-tenant"),
            ("LUNAR_INTERCEPTOR_LOG_LEVEL", "DEBUG"),
            // Blank means unset, as everywhere: the file's value stands.
            ("LUNAR_INTERCEPT_PORTS", " "),
        ];
        let lookup = layered(env(&vars), &file);
        assert_eq!(
            lookup("LUNAR_PROXY_HOST"),
            Some(b"file-proxy:8000".to_vec())
        );
        assert_eq!(lookup("LUNAR_TENANT_ID"), Some(b"env-tenant".to_vec()));
        assert_eq!(
            lookup("LUNAR_INTERCEPTOR_LOG_LEVEL"),
            Some(b"DEBUG".to_vec())
        );
        assert_eq!(lookup("LUNAR_INTERCEPT_PORTS"), Some(b"80,8080".to_vec()));
        assert_eq!(lookup("LUNAR_ALLOW_LIST"), None);

        let (setup, logging) = parse(lookup, &mut |w| panic!("{w}"));
        let Setup::Active(config) = setup else {
            panic!("{setup:?}")
        };
        assert_eq!(config.proxy.host, "file-proxy");
        assert_eq!(config.tenant_id, "env-tenant");
        assert_eq!(config.intercept_ports, vec![80, 8080]);
        assert_eq!(logging.level, LogLevel::Debug);
        assert_eq!(logging.target, LogTarget::Stderr);
    }

    #[test]
    fn the_file_alone_configures_a_process() {
        let (file, _) = parsed("LUNAR_PROXY_HOST=p:1\nLUNAR_INTERCEPTOR_LOG_TARGET=syslog\n");
        let (setup, logging) = parse(layered(|_| None, &file), &mut |w| panic!("{w}"));
        assert!(matches!(setup, Setup::Active(_)), "{setup:?}");
        assert_eq!(logging.target, LogTarget::Syslog);
    }
}
