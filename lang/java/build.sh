#!/bin/sh
# Builds the Java agent: lang/java/build.sh OUTDIR -> OUTDIR/lunar-java-agent.jar
# (javac --release 11, no dependencies; prints nothing on success).
set -eu
if [ $# -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/lunar-java-agent.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
mkdir "$work/classes"
javac --release 11 -nowarn -Xlint:none -encoding UTF-8 -d "$work/classes" \
    "$here"/src/dev/lunar/intercept/*.java
printf 'Premain-Class: dev.lunar.intercept.Agent\n' > "$work/manifest"
# jar -c ... --date for reproducible entries needs JDK 17; plain -c works everywhere.
jar --create --file "$work/lunar-java-agent.jar" --manifest "$work/manifest" -C "$work/classes" .
mv -f "$work/lunar-java-agent.jar" "$out/lunar-java-agent.jar"
