#!/usr/bin/env bash
# Regenerates what the release build takes from profiles of the library at work:
#  1. scripts/layout/lib.profdata, LLVM's profile for profile-guided optimisation (the
#     Makefile builds with -Cprofile-use): an instrumented build of the library runs the
#     workloads below, llvm-profdata merges the counts. With it LLVM lays out each hot
#     function's common path as straight code and inlines by measured calls: a diverted
#     keep-alive request ran 386 distinct 64-byte lines of the library with 278 taken
#     branch sites before, 260 and 97 with it (wrk, callgrind), and a new connection 579
#     and 427, 393 and 152. The workloads must succeed: a stub proxy that failed wrk's
#     requests once made LLVM optimise the failsafe as the common path.
#  2. scripts/layout/hot-code.txt: the Rust functions of the library (built with 1) that
#     run in a process that diverts http, then those https adds, as linker-script
#     patterns; build.rs lays that code out together (see write_layout_script there).
# Run it (as root: it makes a network namespace) after changes to the code a request
# runs, or after a toolchain update, then `make build`; stale profiles cost speed and
# resident memory, never correctness (a function whose code changed is built as without
# a profile). Needs valgrind and the llvm-profdata of rustc's LLVM (`rustc -vV`), e.g.
# Debian's llvm-22 for LLVM 22.
#
# In network and mount namespaces of its own: a stub proxy (stub_proxy.py) on 127.0.0.1,
# named proxy.lunar.test, the origin api.example.test at 203.0.113.10 on loopback (never
# reached: every request is diverted), both names in an /etc/hosts bound over the real one
# for the namespace only; Python requests (http, then https through a virtual session;
# http also with the proxy and the origin given by address), curl (URLs on one
# connection, http then https) and an event-loop client (c-tests' keepalive_loop built
# with -DWAIT_EPOLL: non-blocking, waiting in epoll, as libuv and wrk do); for 1, also wrk
# (keep-alive and a new connection per request) where it is installed. 1 runs them
# plainly, 2 under callgrind. Python and curl each ask for one answer the stub delays
# (/later): their read before it arrives takes the waiting path (SSL_get_error after
# SSL_read for Python https), which a client slowed by callgrind would otherwise never
# take against a quick stub, though against a real proxy nearly every read does.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
LIB="${LUNAR_LIB:-$REPO/target/release/liblunar_intercept.so}"
[[ $(id -u) -eq 0 ]] || { echo "profile.sh: needs root (network namespace)" >&2; exit 1; }
for tool in valgrind callgrind_annotate curl unshare gcc cargo make; do
	command -v "$tool" >/dev/null || { echo "profile.sh: $tool missing" >&2; exit 1; }
done
LLVM_MAJOR="$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')"
PROFDATA="$(command -v "llvm-profdata-$LLVM_MAJOR" || true)"
[[ -n "$PROFDATA" ]] ||
	{ echo "profile.sh: llvm-profdata-$LLVM_MAJOR missing (apt-get install llvm-$LLVM_MAJOR)" >&2; exit 1; }
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

gcc -O2 -DWAIT_EPOLL -o "$TMP/keepalive_epoll" "$REPO/c-tests/keepalive_loop.c"
printf '127.0.0.1 localhost proxy.lunar.test\n203.0.113.10 api.example.test\n' >"$TMP/hosts"

# workloads MODE LIB: the clients above through LIB; MODE "counts" (an instrumented
# build writes its counts to $TMP/pgo) or "callgrind" (a profile per client in $TMP).
# The clients' stderr goes to $TMP/stderr; the script stops if the library warned there (a
# failover: the profile would then take the failsafe for the common path).
workloads() {
	unshare --net --mount bash -euo pipefail -c '
	MODE=$1 HERE=$2 LIB=$3 TMP=$4
	mount --bind "$TMP/hosts" /etc/hosts
	ip link set lo up
	ip addr add 203.0.113.10/32 dev lo
	/usr/bin/python3 "$HERE/stub_proxy.py" &
	STUB=$!
	trap "kill $STUB 2>/dev/null; wait $STUB 2>/dev/null || true" EXIT
	for _ in $(seq 50); do
		/usr/bin/python3 -c "import socket; socket.create_connection((\"127.0.0.1\", 8081), 1)" 2>/dev/null && break
		sleep 0.1
	done
	run() { # name command...: one client through the library
		local name=$1
		shift
		local how=(env LLVM_PROFILE_FILE="$TMP/pgo/%p-%m.profraw")
		[[ $MODE == callgrind ]] &&
			how=(valgrind -q --tool=callgrind --demangle=no --callgrind-out-file="$TMP/$name.out")
		env LD_PRELOAD="$LIB" "${how[@]}" "$@" >/dev/null 2>>"$TMP/stderr"
	}
	profile() { LUNAR_PROXY_HOST="${LUNAR_PROXY_HOST:-proxy.lunar.test:8000}" run "$@"; }
	run 1-inert /bin/sleep 0
	profile 2-python-http /usr/bin/python3 "$HERE/client.py" http://api.example.test/layout
	LUNAR_PROXY_HOST=127.0.0.1:8000 profile 2-python-http-by-address \
		/usr/bin/python3 "$HERE/client.py" http://203.0.113.10/layout
	profile 3-curl-http curl -sf http://api.example.test/a --next http://api.example.test/b/chunked \
		--next -d @/etc/hosts http://api.example.test/c --next http://api.example.test/d/later
	profile 3-epoll-http "$TMP/keepalive_epoll" api.example.test 80 0 $(printf "/e%d " $(seq 30))
	if [[ $MODE == counts ]] && command -v wrk >/dev/null; then
		profile 3-wrk-http wrk -t1 -c4 -d2s http://api.example.test/
		profile 3-wrk-http-close wrk -t1 -c4 -d2s -H "Connection: close" http://api.example.test/
	fi
	profile 4-python-https /usr/bin/python3 "$HERE/client.py" https://api.example.test/layout
	profile 5-curl-https curl -sf https://api.example.test/a --next https://api.example.test/b/chunked \
		--next https://api.example.test/c/later
	' profile "$1" "$HERE" "$2" "$TMP" || { tail -n 40 "$TMP/stderr" >&2; exit 1; }
	if grep -q "lunar-intercept.*WARNING" "$TMP/stderr"; then
		echo "profile.sh: the library warned during the $1 workloads; not profiled:" >&2
		grep "lunar-intercept.*WARNING" "$TMP/stderr" | sed 's/^\[[^]]*\] //' | sort | uniq -c >&2
		exit 1
	fi
}

# 1. Counts from an instrumented build (its own target directory), merged.
echo "profile.sh: 1. an instrumented build's counts -> $HERE/lib.profdata"
cargo build --release --lib -q --target-dir "$REPO/target/pgo-generate" \
	--config "build.rustflags=[\"-Cprofile-generate=$TMP/pgo\"]"
mkdir -p "$TMP/pgo"
workloads counts "$REPO/target/pgo-generate/release/liblunar_intercept.so"
"$PROFDATA" merge --sparse -o "$HERE/lib.profdata" "$TMP"/pgo/*.profraw

# 2. The library built with them, its functions' layout from callgrind.
echo "profile.sh: 2. the layout of the library built with them -> $HERE/hot-code.txt"
make -C "$REPO" --no-print-directory build >/dev/null
workloads callgrind "$LIB"
{
	echo "# Generated by scripts/layout/profile.sh ($(date -u +%F), $(rustc --version)); read by build.rs."
	echo "# The library's Rust functions that run when http is diverted, then those https adds"
	echo "# (after [https]), each part what runs for every request first, then set-up; as"
	echo "# section patterns (hashes and crate disambiguators wildcarded)."
	/usr/bin/python3 "$HERE/patterns.py" "$LIB" "$TMP"/*.out
} >"$HERE/hot-code.txt"
echo "profile.sh: $(grep -vc '^#' "$HERE/hot-code.txt") patterns written to $HERE/hot-code.txt; now make build"
