#!/usr/bin/env bash
# Install the Debian packages the whole test suite needs (lab, e2e clients,
# benchmarks). Idempotent: does nothing when everything is present; runs
# `apt-get update` only when something is missing. Installs only from Debian's
# registry and never leaves a daemon running: a policy-rc.d that forbids
# starting services is in place during the install.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps.sh: must run as root (apt-get install)" >&2
    exit 1
fi

# Debian packages, checked by dpkg status.
PKGS=(
    haproxy nginx-light wrk curl wget iproute2 strace
    gcc g++ libc6-dev make python3 python3-pytest python3-pytest-xdist perl libhttp-tiny-perl
    procps valgrind libhttp-parser-dev
    openssl gnutls-bin libssl-dev libgnutls28-dev libio-socket-ssl-perl python3-requests python3-venv
    ruby php-cli php-curl tcl aria2
)

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$p")
    fi
done
# Programs that may come from outside Debian's packages on this machine: only
# install the Debian package when the command itself is missing.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
if ! command -v java >/dev/null 2>&1 || ! command -v javac >/dev/null 2>&1; then
    missing+=(openjdk-17-jdk-headless)
fi

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-deps.sh: all test dependencies present"
    exit 0
fi

echo "install-deps.sh: installing: ${missing[*]}"

# Forbid service start-up during the install (invoke-rc.d honours policy-rc.d).
POLICY=/usr/sbin/policy-rc.d
policy_backup=""
if [ -e "$POLICY" ]; then
    policy_backup="$(mktemp)"
    cp -p "$POLICY" "$policy_backup"
fi
restore_policy() {
    if [ -n "$policy_backup" ]; then
        mv -f "$policy_backup" "$POLICY"
    else
        rm -f "$POLICY"
    fi
}
trap restore_policy EXIT
printf '#!/bin/sh\nexit 101\n' >"$POLICY"
chmod 755 "$POLICY"

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"

echo "install-deps.sh: done"
