# liblunar_intercept: the two commands a user needs are `make demo` and `make test`.
SHELL := /bin/bash
LIB := target/release/liblunar_intercept.so
COMMAND := target/release/lunar-intercept
# Language hooks sit beside the library, where it finds them (lang/PROTOCOL.md).
NODE_HOOK := target/release/lunar-node-hook.cjs
JAVA_HOOK := target/release/lunar-java-hook.jar
export LUNAR_LIB := $(abspath $(LIB))

.PHONY: all build java-hook deps test unit lint c-tests e2e demo bench fuzz clean install deb FORCE

all: build

build: $(LIB) $(NODE_HOOK) java-hook

# Release builds are optimised with the profile in scripts/layout/lib.profdata (written by
# scripts/layout/profile.sh; README, Design): added to .cargo/config.toml's flags. The
# unit tests build with them too, so that they reuse the library built here, not replace it.
# Section names stay as build.rs's layout script expects them (no .text.hot. prefix).
PGO_FLAGS := "-Cprofile-use=$(CURDIR)/scripts/layout/lib.profdata", \
	"-Cllvm-args=-profile-guided-section-prefix=false", "-Cllvm-args=-no-pgo-warn-mismatch"
CARGO_RELEASE := cargo --config 'build.rustflags=[$(PGO_FLAGS)]'

# One cargo run builds the library and the command (src/bin/lunar-intercept). Always asked:
# cargo knows when nothing changed, and a library built with other flags is rebuilt.
$(LIB): FORCE
	$(CARGO_RELEASE) build --release --lib --bins

FORCE:

$(NODE_HOOK): lang/node/lunar-node-hook.cjs
	install -D -m 0644 $< $@

# The Java hook needs a JDK (make deps installs one); without javac, Java's https goes
# to its destination as before, and the build says so.
java-hook:
	@if command -v javac >/dev/null; then $(MAKE) --no-print-directory $(JAVA_HOOK); \
	else echo "make: no javac: the Java hook is not built (make deps installs a JDK)"; fi

$(JAVA_HOOK): lang/java/build.sh $(wildcard lang/java/src/dev/lunar/intercept/*.java)
	lang/java/build.sh $(dir $@)

deps:
	scripts/install-deps.sh

# Includes the fuzz targets' checks over 200,000 inputs each (src/http/fuzz_driver.rs) and
# 200,000 runs of the connection model (src/conn/sim_fuzz.rs).
unit:
	$(CARGO_RELEASE) test --release --lib --tests
	node lang/node/test/hook_test.js
	if command -v javac >/dev/null; then python3 lang/java/test/hook_test.py; fi

lint:
	cargo fmt --check
	cargo clippy --release --all-targets -- -D warnings
	cargo clippy --release --lib --features small-fd-table,panic-probe,race-probe -- -D warnings
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

# Install: the library, the command (lunar-intercept) and the README. PREFIX=/usr puts the library in the multiarch
# directory (/usr/lib/x86_64-linux-gnu), as a Debian package does; any other PREFIX in
# $(PREFIX)/lib. Nothing is written to /etc: whether every process loads the library
# (/etc/ld.so.preload) is the administrator's decision (README "Baking it into an image").
# (MULTIARCH is expanded only when used: no dpkg-architecture run for other targets.)
PREFIX ?= /usr/local
MULTIARCH = $(shell dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
LIBDIR ?= $(if $(filter /usr,$(PREFIX)),$(PREFIX)/lib/$(MULTIARCH),$(PREFIX)/lib)
DOCDIR ?= $(PREFIX)/share/doc/liblunar-intercept
BINDIR ?= $(PREFIX)/bin

install: build
	install -D -m 0644 $(LIB) $(DESTDIR)$(LIBDIR)/liblunar_intercept.so
	install -D -m 0644 $(NODE_HOOK) $(DESTDIR)$(LIBDIR)/lunar-node-hook.cjs
	if [ -f $(JAVA_HOOK) ]; then install -D -m 0644 $(JAVA_HOOK) $(DESTDIR)$(LIBDIR)/lunar-java-hook.jar; fi
	install -D -m 0755 $(COMMAND) $(DESTDIR)$(BINDIR)/lunar-intercept
	install -D -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md

# A Debian package from the staging directory target/deb/root (make install with
# PREFIX=/usr), written to target/deb/; scripts/deb-control.sh writes DEBIAN/control.
DEB_ROOT := target/deb/root

deb: build
	rm -rf $(DEB_ROOT)
	$(MAKE) --no-print-directory install DESTDIR=$(abspath $(DEB_ROOT)) PREFIX=/usr \
	    LIBDIR=/usr/lib/$(MULTIARCH) DOCDIR=/usr/share/doc/liblunar-intercept BINDIR=/usr/bin
	mkdir -p $(DEB_ROOT)/DEBIAN
	scripts/deb-control.sh $(DEB_ROOT) > $(DEB_ROOT)/DEBIAN/control
	dpkg-deb --root-owner-group --build $(DEB_ROOT) target/deb

clean:
	cargo clean
	rm -rf c-tests/bin
