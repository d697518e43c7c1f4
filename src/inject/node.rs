//! Node: `--require lunar-node-hook.cjs` appended to `NODE_OPTIONS` before `main`, and
//! `LUNAR_NODE_HOOK` telling the hook what it needs (`lang/PROTOCOL.md` section 1); the
//! hook restores the program's own `NODE_OPTIONS` and removes its variable.

use super::{diverting_config, file_beside_library, ports, random_token, set};
use crate::conn::lang_hook;

/// The hook's file, found beside the loaded library.
const HOOK: &str = "lunar-node-hook.cjs";

/// Adds the hook when this process diverts at all.
pub(super) fn inject() {
    let Some(config) = diverting_config() else {
        return;
    };
    let Some(hook) = file_beside_library(HOOK) else {
        return;
    };
    let Some(token) = random_token() else {
        return;
    };
    let original = std::env::var_os("NODE_OPTIONS");
    let mut options = original.clone().unwrap_or_default().into_encoded_bytes();
    if !options.is_empty() {
        options.push(b' ');
    }
    options.extend_from_slice(b"--require \"");
    for &byte in hook.as_bytes() {
        // Inside double quotes Node's option parser takes a backslash as an escape.
        if byte == b'"' || byte == b'\\' {
            options.push(b'\\');
        }
        options.push(byte);
    }
    options.push(b'"');
    let length = original.map_or("-".to_string(), |o| o.len().to_string());
    let described = format!(
        "v1 {} {} {} {length}",
        std::process::id(),
        String::from_utf8_lossy(&token),
        ports(&config)
    );
    if set("NODE_OPTIONS", &options) && set("LUNAR_NODE_HOOK", described.as_bytes()) {
        lang_hook::arm(token);
    }
}
