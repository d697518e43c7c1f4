#!/usr/bin/env bash
# DEBIAN/control for `make deb`, on stdout. $1: the staging directory (make install
# DESTDIR with PREFIX=/usr). Version from Cargo.toml, Architecture from dpkg, and libc6
# at least the newest GLIBC_x.y symbol version the library or the command imports
# (objdump -T), so that dpkg refuses the package on a system whose glibc would fail to
# load them.
# DEB_MAINTAINER overrides the Maintainer field (the default is a placeholder).
set -euo pipefail
root=$1
cd "$(dirname "$0")/.."

version=$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
lib=$(find "$root/usr/lib" -name liblunar_intercept.so)
glibc=$(objdump -T "$lib" "$root/usr/bin/lunar-intercept" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
[ -n "$version" ] && [ -n "$glibc" ] || { echo "deb-control.sh: no version or glibc" >&2; exit 1; }
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)

cat <<CONTROL
Package: liblunar-intercept
Version: $version
Architecture: $(dpkg --print-architecture)
Maintainer: ${DEB_MAINTAINER:-Lunar <support@lunar.dev>}
Depends: libc6 (>= $glibc)
Section: libs
Priority: optional
Installed-Size: $size
Homepage: https://lunar.dev
Description: LD_PRELOAD library diverting outbound HTTP to Lunar Proxy
 liblunar_intercept.so, loaded into a program with LD_PRELOAD or /etc/ld.so.preload,
 sends the program's outbound HTTP requests through Lunar Proxy, with a failsafe that
 goes direct when the proxy is down. Configured by LUNAR_* environment variables or
 /etc/lunar/interceptor.conf. `lunar-intercept run CMD` runs one program with it.
 .
 The package does not write /etc/ld.so.preload: which processes load the library is
 the administrator's decision.
CONTROL
