#!/bin/bash
# Common client interface, wget flavour (see curl.sh). --chunked is not supported
# by wget (exit 3). --repeat N: the URL N times (wget keeps the connection).
set -u
method=$1; url=$2; shift 2
args=(-q -O - --tries=1 --timeout=30 --no-proxy --method="$method")
repeat=1
while [ $# -gt 0 ]; do
    case "$1" in
        --data-file) args+=(--body-file="$2"); shift 2 ;;
        --header) args+=(--header="$2"); shift 2 ;;
        --repeat) repeat=$2; shift 2 ;;
        --chunked) echo "wget.sh: wget cannot send a chunked body" >&2; exit 3 ;;
        --verbose) args=("${args[@]/-q/-d}"); shift ;;
        *) echo "wget.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
urls=()
for ((i = 0; i < repeat; i++)); do urls+=("$url"); done
exec wget "${args[@]}" "${urls[@]}"
