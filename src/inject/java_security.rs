//! The security properties the JVM is given (`-Djava.security.properties`): the JDK's own
//! provider list with Lunar's provider right before SunJSSE, and the hook's line
//! (`lang/PROTOCOL.md` section 7). Pure: the JDK's `java.security` text in, ours out.
//!
//! Why before SunJSSE and not first: the JDK loads a provider of the list only when a
//! lookup reaches it, and loading one it does not know by name makes it instantiate every
//! modular provider (about 35 ms). Before SunJSSE, the lookups that SUN, SunRsaSign and
//! SunEC answer (digests, `SecureRandom`, signatures: `UUID.randomUUID()`) never reach it.

/// The provider's class, on the boot class path from `lunar-java-hook.jar`.
pub const PROVIDER: &str = "dev.lunar.intercept.LunarProvider";
/// The security property the provider reads its arguments from.
pub const HOOK_PROPERTY: &str = "lunar.intercept.hook";

/// The names SunJSSE is configured by (its name, and its class names old and new).
const SUN_JSSE: [&str; 3] = [
    "SunJSSE",
    "sun.security.ssl.SunJSSE",
    "com.sun.net.ssl.internal.ssl.Provider",
];

/// Our properties, or `None` when this JDK's configuration is one we cannot extend
/// faithfully: no SunJSSE in the list, a gap, a value spread over lines, an `include`
/// (JDK 24: the included files may list providers), or overriding turned off.
pub fn with_our_provider(master: &str, hook_line: &str) -> Option<String> {
    let mut providers: Vec<(u32, &str)> = Vec::new();
    for line in master.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let (key, value) = split_property(line);
        // A continued line (an odd number of trailing backslashes) would need unescaping.
        let trailing = value.len() - value.trim_end_matches('\\').len();
        if trailing % 2 == 1 && (key.starts_with("security.") || key == "include") {
            return None;
        }
        match key {
            "include" => return None,
            "security.overridePropertiesFile" if value.trim() == "false" => return None,
            _ => {}
        }
        if let Some(index) = key.strip_prefix("security.provider.") {
            let index: u32 = index.parse().ok().filter(|&i| i > 0)?;
            providers.retain(|&(i, _)| i != index);
            providers.push((index, value.trim_end()));
        }
    }
    providers.sort_unstable_by_key(|&(i, _)| i);
    // The JDK reads the list from 1 up to its first gap.
    let listed = providers
        .iter()
        .enumerate()
        .take_while(|&(at, &(i, _))| i as usize == at + 1)
        .count();
    let providers = &providers[..listed];
    let jsse = providers.iter().position(|&(_, value)| {
        let name = value.split_whitespace().next().unwrap_or("");
        SUN_JSSE.contains(&name)
    })?;
    let mut ours =
        String::from("# liblunar_intercept: the JDK's providers, Lunar's before SunJSSE\n");
    ours.push_str(&format!("security.provider.{}={PROVIDER}\n", jsse + 1));
    for (at, (_, value)) in providers.iter().enumerate().skip(jsse) {
        ours.push_str(&format!("security.provider.{}={value}\n", at + 2));
    }
    ours.push_str(&format!("{HOOK_PROPERTY}={hook_line}\n"));
    Some(ours)
}

/// A `java.util.Properties` line as key and raw value: the key ends at the first unescaped
/// `=`, `:` or white space; the separator and the blanks around it are not the value's.
fn split_property(line: &str) -> (&str, &str) {
    let bytes = line.as_bytes();
    let mut end = 0;
    while end < bytes.len() {
        match bytes[end] {
            b'\\' => end += 2,
            b'=' | b':' | b' ' | b'\t' | b'\x0c' => break,
            _ => end += 1,
        }
    }
    let end = end.min(bytes.len());
    let rest = line[end..].trim_start_matches([' ', '\t', '\x0c']);
    let rest = rest
        .strip_prefix(['=', ':'])
        .unwrap_or(rest)
        .trim_start_matches([' ', '\t', '\x0c']);
    (&line[..end], rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const JDK17: &str = "\
# comment: security.provider.1=Nothing
security.provider.1=SUN
security.provider.2=SunRsaSign
security.provider.3=SunEC
security.provider.4=SunJSSE
security.provider.5=SunJCE
security.provider.6=SunJGSS
security.provider.12=SunPKCS11
securerandom.source=file:/dev/random
";

    #[test]
    fn ours_goes_right_before_sun_jsse_and_the_rest_shifts_by_one() {
        let ours = with_our_provider(JDK17, "v1 7 t 80").unwrap();
        let lines: Vec<&str> = ours.lines().skip(1).collect();
        assert_eq!(
            lines,
            [
                "security.provider.4=dev.lunar.intercept.LunarProvider",
                "security.provider.5=SunJSSE",
                "security.provider.6=SunJCE",
                "security.provider.7=SunJGSS",
                "lunar.intercept.hook=v1 7 t 80",
            ]
        );
    }

    #[test]
    fn values_with_arguments_and_other_separators_are_kept_as_written() {
        let master = "security.provider.1 : SUN\nsecurity.provider.2=SunJSSE SunPKCS11-NSS\n";
        let ours = with_our_provider(master, "x").unwrap();
        assert!(ours.contains("security.provider.2=dev.lunar.intercept.LunarProvider\n"));
        assert!(ours.contains("security.provider.3=SunJSSE SunPKCS11-NSS\n"));
    }

    #[test]
    fn a_later_definition_of_an_index_wins_as_in_java() {
        let master = "security.provider.1=SunJSSE\nsecurity.provider.1=SUN\n";
        assert_eq!(with_our_provider(master, "x"), None);
    }

    #[test]
    fn configurations_we_cannot_extend_faithfully_get_nothing() {
        let refused = [
            "security.provider.1=SUN\n",
            "security.provider.1=SUN\nsecurity.provider.3=SunJSSE\n",
            "security.provider.1=SunJSSE \\\n  SunPKCS11\n",
            "security.provider.1=SunJSSE\ninclude /etc/extra.security\n",
            "security.provider.1=SunJSSE\nsecurity.overridePropertiesFile=false\n",
            "security.provider.x=SunJSSE\n",
        ];
        for master in refused {
            assert_eq!(with_our_provider(master, "x"), None, "{master:?}");
        }
    }

    #[test]
    fn the_class_name_of_sun_jsse_is_recognised_too() {
        let ours = with_our_provider("security.provider.1=sun.security.ssl.SunJSSE\n", "x");
        assert!(ours
            .unwrap()
            .contains("security.provider.2=sun.security.ssl.SunJSSE\n"));
    }
}
