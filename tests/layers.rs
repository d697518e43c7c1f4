//! Layers call downward only: every `crate::name` reference in `src/` names a module on a
//! line below its own in the layer table of `src/lib.rs`'s module doc, or is one of the
//! exceptions listed here. References inside one top-level module are free, and so are
//! `super::` paths (in this crate they stay inside their top-level module).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Upward references that remain (`from`, `to`, why), as `src/lib.rs` lists them.
const ALLOWED: &[(&str, &str, &str)] = &[(
    "runtime",
    "fork",
    "the runtime's build registers fork's child handler with libc (pthread_atfork) before \
     anything the handler reopens can be taken; libc calls the handler, runtime never does",
)];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The layer table: each top-level module with its line's number (0 is the top).
fn layers(lib_rs: &str) -> BTreeMap<String, usize> {
    let mut lines = lib_rs
        .lines()
        .map_while(|line| line.strip_prefix("//!"))
        .map(str::trim)
        .skip_while(|line| !line.starts_with("Layers call downward only"))
        .skip_while(|line| *line != "```text")
        .skip(1)
        .take_while(|line| *line != "```");
    let mut ranks = BTreeMap::new();
    let mut rank = 0;
    for line in lines.by_ref() {
        let names = line.split(':').next().unwrap_or("");
        for name in names.split([',', ' ']).filter(|n| !n.is_empty()) {
            assert!(
                ranks.insert(name.to_string(), rank).is_none(),
                "src/lib.rs: `{name}` is on two lines of the layer table"
            );
        }
        rank += 1;
    }
    assert!(rank > 0, "src/lib.rs: no layer table found");
    ranks
}

/// The top-level modules `src/lib.rs` declares.
fn declared(lib_rs: &str) -> Vec<String> {
    lib_rs
        .lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let line = line.strip_prefix("pub ").unwrap_or(line);
            line.strip_prefix("mod ")?.strip_suffix(';')
        })
        .map(str::to_string)
        .collect()
}

/// The text without `//` comments (doc comments name modules freely).
fn without_comments(text: &str) -> String {
    text.lines()
        .map(|line| {
            let mut quotes = 0;
            // A `'"'` char literal opens no string.
            let bytes = line.replace("'\"'", "'_'").into_bytes();
            for (i, b) in bytes.iter().enumerate() {
                match b {
                    b'"' => quotes += 1,
                    b'/' if quotes % 2 == 0 && bytes.get(i + 1) == Some(&b'/') => {
                        return &line[..i];
                    }
                    _ => {}
                }
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn identifier(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The first path segment after each `crate::` (each item of a `crate::{...}` group).
fn crate_references(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let Some(group) = rest.strip_prefix('{') else {
            found.push(identifier(rest).to_string());
            continue;
        };
        let mut depth = 0;
        let mut item_start = true;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => item_start = true,
                c if c.is_whitespace() => {}
                _ if item_start && depth == 0 => {
                    found.push(identifier(&group[i..]).to_string());
                    item_start = false;
                }
                _ => {}
            }
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("readable src/") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn layers_call_downward_only() {
    let lib_rs = fs::read_to_string(src().join("lib.rs")).expect("src/lib.rs");
    let ranks = layers(&lib_rs);
    for module in declared(&lib_rs) {
        assert!(
            ranks.contains_key(&module),
            "src/lib.rs declares `{module}`: give it a line in the layer table"
        );
    }
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut upward = Vec::new();
    for file in files {
        let relative = file.strip_prefix(src()).expect("under src/");
        let Some(first) = relative.components().next() else {
            continue;
        };
        let first = first.as_os_str().to_string_lossy();
        // `src/bin/` holds other crates: their `crate::` is their own.
        if first == "lib.rs" || first == "bin" {
            continue;
        }
        let module = first.strip_suffix(".rs").unwrap_or(&first).to_string();
        let Some(&own) = ranks.get(&module) else {
            panic!(
                "{}: module `{module}` is not in the layer table",
                relative.display()
            );
        };
        let text = without_comments(&fs::read_to_string(&file).expect("readable source"));
        for target in crate_references(&text) {
            let Some(&rank) = ranks.get(&target) else {
                continue; // an item of the crate root (`crate::INTERCEPTOR`)
            };
            let allowed = ALLOWED.iter().any(|(f, t, _)| *f == module && *t == target);
            if target != module && rank <= own && !allowed {
                upward.push(format!("{}: {module} -> {target}", relative.display()));
            }
        }
    }
    upward.sort();
    upward.dedup();
    assert!(
        upward.is_empty(),
        "references to a module on the same or a higher line of the layer table in src/lib.rs:\n  {}",
        upward.join("\n  ")
    );
}

#[test]
fn the_scanner_finds_paths_and_groups() {
    let text = without_comments(
        "use crate::{conn::{self, fdtable}, sys};\n\
         let a = crate::tls::drivable(); // crate::hooks\n\
         let s = \"//\"; crate::runtime::get();\n\
         $crate::tls::x; mycrate::policy; pub(crate) fn f() {}",
    );
    assert_eq!(
        crate_references(&text),
        ["conn", "sys", "tls", "runtime", "tls"]
    );
}
