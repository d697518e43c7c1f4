#!/bin/bash
# Common client interface, curl flavour:
#   curl.sh METHOD URL [--data-file F] [--header K:V]... [--repeat N] [--chunked] [--verbose]
# Prints the response body(ies) to stdout; exit 0 only if every response was 2xx.
# --repeat N: the URL N times on one command line (curl reuses the connection).
set -u
method=$1; url=$2; shift 2
args=(-sS -f --noproxy '*')
repeat=1
case "$method" in
    HEAD) args+=(--head -o /dev/null) ;;
    GET) ;;
    *) args+=(-X "$method") ;;
esac
while [ $# -gt 0 ]; do
    case "$1" in
        --data-file) args+=(--data-binary "@$2"); shift 2 ;;
        --header) args+=(-H "$2"); shift 2 ;;
        --repeat) repeat=$2; shift 2 ;;
        --chunked) args+=(-H 'Transfer-Encoding: chunked'); shift ;;
        --verbose) args+=(-v); shift ;;
        *) echo "curl.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
urls=()
for ((i = 0; i < repeat; i++)); do urls+=("$url"); done
exec curl "${args[@]}" "${urls[@]}"
