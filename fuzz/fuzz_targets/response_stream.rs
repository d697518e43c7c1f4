//! Arbitrary bytes from "the proxy", cut at arbitrary points, through
//! `ResponseStream`: every byte accounted for once, no panic, and the same bytes
//! shown and heads reported however the input was split. The check is
//! `src/http/fuzz_checks.rs` (see request_stream).
#![no_main]

use libfuzzer_sys::fuzz_target;

// Compiled in directly, not through the LD_PRELOAD crate (see request_stream).
#[allow(dead_code, unused_imports)]
#[path = "../../src/http/mod.rs"]
mod http;
// The engine keeps the literals it reads per request with the hot data.
#[allow(dead_code, unused_macros)]
#[path = "../../src/hot_data.rs"]
mod hot_data;

fuzz_target!(|data: &[u8]| http::fuzz_checks::response_stream(data));
