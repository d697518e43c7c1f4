#!/usr/bin/env bash
# Run the end-to-end tests: /usr/bin/python3 -m pytest -q tests/e2e [extra args], the
# whole suite in parallel workers (E2E_JOBS, below). Does not build the library (`make
# e2e` builds it first). Needs root (network namespaces) and the packages of
# scripts/install-deps.sh. Every test runs inside a network namespace its worker's
# session creates and deletes (tests/lab/lab.py).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "run-e2e.sh: must run as root (ip netns)" >&2
    exit 1
fi
export LUNAR_LIB="${LUNAR_LIB:-$PWD/target/release/liblunar_intercept.so}"
if [ ! -f "$LUNAR_LIB" ]; then
    echo "run-e2e.sh: $LUNAR_LIB not found: build it first (make build)" >&2
    exit 1
fi
if ! /usr/bin/python3 -c 'import pytest' 2>/dev/null; then
    echo "run-e2e.sh: /usr/bin/python3 has no pytest: run scripts/install-deps.sh" >&2
    exit 1
fi
# labs left behind by a killed run (owner process gone) are removed first
/usr/bin/python3 tests/lab/lab.py gc --prefix lunar-e2e- >/dev/null || true

# extra args pass through; when one of them names a test file or directory, only
# that is run (scripts/run-e2e.sh tests/e2e/test_edge.py -x), else all of tests/e2e
target=(tests/e2e)
for a in "$@"; do
    case "$a" in
        tests/*) target=() ;;
    esac
done
export PYTHONDONTWRITEBYTECODE=1

# The whole suite runs its files in E2E_JOBS workers (pytest-xdist, default 2: most of a
# test's time is waiting on its programs, proxies and timeouts), a file's tests in one
# worker, each worker with a lab of its own. What the fixtures would otherwise build into
# shared paths while another worker runs them is built once here first (each fixture
# then finds it fresh): the C test programs, the library's test build, the e2e venv.
# E2E_JOBS=1, or a named file, runs in this process as before.
jobs="${E2E_JOBS:-2}"
parallel=()
if [[ ${#target[@]} -gt 0 && "$jobs" -gt 1 ]] && /usr/bin/python3 -c 'import xdist' 2>/dev/null; then
    c-tests/build.sh >/dev/null
    if [[ -z "${LUNAR_LIB_TEST_BUILD:-}" ]] && command -v cargo >/dev/null; then
        cargo build --release --lib --features small-fd-table,panic-probe,race-probe \
            --target-dir target/test-build -q
    fi
    [[ -x target/e2e-venv/bin/python ]] ||
        /usr/bin/python3 -m venv --system-site-packages --clear target/e2e-venv
    parallel=(-n "$jobs" --dist loadfile)
fi
exec /usr/bin/python3 -m pytest -q -p no:cacheprovider "${parallel[@]}" "${target[@]}" "$@"
