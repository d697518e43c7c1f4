#!/usr/bin/env bash
# Run the end-to-end tests: /usr/bin/python3 -m pytest -q tests/e2e [extra args].
# Builds nothing (`make e2e` builds the library first). Needs root (network
# namespaces) and the packages of scripts/install-deps.sh. Every test runs inside a
# network namespace the session creates and deletes (tests/lab/lab.py).
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
exec /usr/bin/python3 -m pytest -q -p no:cacheprovider "${target[@]}" "$@"
