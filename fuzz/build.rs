//! The engine's `fuzz_checks` module is compiled under `cfg(fuzzing)`. cargo-fuzz sets
//! it; so does this script, so that a plain `cargo check` of this crate (stable) builds
//! the targets as cargo-fuzz does.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(fuzzing)");
    println!("cargo::rustc-cfg=fuzzing");
}
