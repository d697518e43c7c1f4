#!/bin/sh
# Builds the Java hook: lang/java/build.sh OUTDIR -> OUTDIR/lunar-java-hook.jar
# (javac --release 11, no dependencies; prints nothing on success).
set -eu
if [ $# -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/lunar-java-hook.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
mkdir "$work/classes"
javac --release 11 -nowarn -Xlint:none -encoding UTF-8 -d "$work/classes" \
    "$here"/src/dev/lunar/intercept/*.java
# jar -c ... --date for reproducible entries needs JDK 17; plain -c works everywhere.
jar --create --file "$work/lunar-java-hook.jar" -C "$work/classes" .
mv -f "$work/lunar-java-hook.jar" "$out/lunar-java-hook.jar"
