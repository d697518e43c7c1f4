#!/usr/bin/env bash
# `make fuzz`: the fuzz targets' checks (src/http/fuzz_checks.rs), longer than in
# `make test`.
#
# 1. Stable Rust: the cargo-test driver (src/http/fuzz_driver.rs) with
#    LUNAR_FUZZ_ITERATIONS inputs per check (default 10,000,000; `make test` runs
#    200,000) from LUNAR_FUZZ_SEED (default: a new one each run, printed; a failing
#    input is printed too).
# 2. libFuzzer, when a nightly toolchain is installed (`cargo +nightly`; nothing is
#    downloaded): each target in fuzz/ for LUNAR_FUZZ_SECONDS (default 60), built
#    with coverage instrumentation the way cargo-fuzz builds it (`cargo fuzz run`
#    works too, where cargo-fuzz is installed). The corpus grows in
#    fuzz/corpus/TARGET, crashes land in fuzz/artifacts/TARGET.
set -euo pipefail
cd "$(dirname "$0")/.."

iterations="${LUNAR_FUZZ_ITERATIONS:-10000000}"
seed="${LUNAR_FUZZ_SEED:-$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')}"
seconds="${LUNAR_FUZZ_SECONDS:-60}"
targets=(request_stream response_stream)

echo "fuzz.sh: stable driver, $iterations inputs per check, LUNAR_FUZZ_SEED=$seed"
LUNAR_FUZZ_ITERATIONS="$iterations" LUNAR_FUZZ_SEED="$seed" \
    cargo test --release --lib http::fuzz_driver -- --nocapture
# The connection model (src/conn/sim_fuzz.rs): not a libFuzzer target, as fuzz/ compiles
# the http engine alone and the model needs conn's state, decide and inflight too.
echo "fuzz.sh: connection model, $((iterations / 10)) runs, LUNAR_FUZZ_SEED=$seed"
LUNAR_FUZZ_ITERATIONS="$((iterations / 10))" LUNAR_FUZZ_SEED="$seed" \
    cargo test --release --lib conn::sim_fuzz -- --nocapture

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz.sh: no nightly toolchain (cargo +nightly): libFuzzer targets not run"
    exit 0
fi

host="$(rustc -vV | sed -n 's/^host: //p')"
# What cargo-fuzz passes (without its AddressSanitizer: the engine has no unsafe code).
# --target keeps the instrumentation out of build scripts.
export RUSTFLAGS="--cfg fuzzing -Cdebug-assertions -Coverflow-checks \
-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares"
cargo +nightly build --release --manifest-path fuzz/Cargo.toml --target "$host" \
    --target-dir fuzz/target/libfuzzer
bin="fuzz/target/libfuzzer/$host/release"
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    echo "fuzz.sh: libFuzzer $t for ${seconds}s"
    "$bin/$t" -max_total_time="$seconds" -rss_limit_mb=2048 \
        -artifact_prefix="fuzz/artifacts/$t/" "fuzz/corpus/$t"
done
echo "fuzz.sh: done"
