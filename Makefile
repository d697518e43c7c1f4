# liblunar_intercept: the two commands a user needs are `make demo` and `make test`.
SHELL := /bin/bash
LIB := target/release/liblunar_intercept.so
export LUNAR_LIB := $(abspath $(LIB))

.PHONY: all build deps test unit lint c-tests e2e demo bench fuzz clean

all: build

build: $(LIB)

$(LIB): Cargo.toml build.rs $(shell find src -name '*.rs') $(wildcard *.map)
	cargo build --release --lib

deps:
	scripts/install-deps.sh

# Includes the fuzz targets' checks over 200,000 inputs each (src/http/fuzz_driver.rs) and
# 200,000 runs of the connection model (src/conn/sim_fuzz.rs).
unit:
	cargo test --release --lib --tests

lint:
	cargo fmt --check
	cargo clippy --release --all-targets -- -D warnings
	cargo clippy --release --lib --features small-fd-table,panic-probe -- -D warnings
	cargo check --manifest-path fuzz/Cargo.toml

e2e: build
	scripts/run-e2e.sh

test: deps build unit lint e2e

demo: deps build
	scripts/demo.sh

bench: deps build
	scripts/bench.sh

# The fuzz checks for longer: the stable driver (LUNAR_FUZZ_ITERATIONS, default 10M),
# then libFuzzer for LUNAR_FUZZ_SECONDS per target where a nightly toolchain is installed.
fuzz:
	scripts/fuzz.sh

clean:
	cargo clean
	rm -rf c-tests/bin
