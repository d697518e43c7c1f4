//! Arbitrary bytes, cut at arbitrary points, through `RequestStream`: every byte
//! accounted for exactly once, nothing panics, and what goes on the wire (and which
//! heads are seen) does not depend on how the input was split. The check is
//! `src/http/fuzz_checks.rs`, which `cargo test` also runs on stable
//! (`src/http/fuzz_driver.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

// The engine is compiled in directly rather than through the main crate: that
// crate is an LD_PRELOAD library whose exported `write`, `connect`, ... would
// interpose on the fuzzer's own libc calls.
#[allow(dead_code, unused_imports)]
#[path = "../../src/http/mod.rs"]
mod http;
// The engine keeps the literals it reads per request with the hot data.
#[allow(dead_code, unused_macros)]
#[path = "../../src/hot_data.rs"]
mod hot_data;

fuzz_target!(|data: &[u8]| http::fuzz_checks::request_stream(data));
