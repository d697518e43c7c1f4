#!/usr/bin/env bash
# make demo: liblunar_intercept in two minutes.
#
# Brings up the test lab (a private network namespace: "external" API
# api.example.test = 203.0.113.10, HAProxy standing in for Lunar Proxy on
# 127.0.0.1:8000), runs curl and Python's urllib under the library, shows what the
# proxy received, then stops the proxy and shows the same requests served directly
# by the origin (failsafe); then starts the proxy again and runs curl with the
# library's link to the proxy over TLS (LUNAR_PROXY_SUPPORT_TLS=1 to HAProxy's TLS
# bind, certificate from the lab's test CA), showing HAProxy's log line of the TLS
# session. Everything is cleaned up on exit, even on failure or ^C.
# Nothing leaves the namespace.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
LIB="${LUNAR_LIB:-$REPO/target/release/liblunar_intercept.so}"
PY=/usr/bin/python3
LABPY="$REPO/tests/lab/lab.py"
NAME="demo-$$"
PROXY=127.0.0.1:8000

[[ $(id -u) -eq 0 ]] || { echo "demo.sh: needs root (network namespace)" >&2; exit 1; }
[[ -f "$LIB" ]] || { echo "demo.sh: $LIB missing: run make build" >&2; exit 1; }

TMP=""
LAB_UP=0
cleanup() {
	local rc=$?
	set +e
	trap '' INT TERM # finish cleaning up even if signalled again
	if [[ $LAB_UP -eq 1 ]]; then
		printf '\n%s\n' "Cleaning up: stopping the lab's processes, deleting namespace $NAME."
		"$PY" "$LABPY" down --name "$NAME"
	fi
	[[ -n "$TMP" ]] && rm -rf "$TMP"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
TMP="$(mktemp -d /tmp/lunar-demo.XXXXXX)"

if [[ -t 1 ]]; then B=$'\e[1m' D=$'\e[2m' G=$'\e[32m' Y=$'\e[33m' N=$'\e[0m'; else B="" D="" G="" Y="" N=""; fi
title() { printf '\n%s== %s ==%s\n' "$B" "$*" "$N"; }
cmdline() { printf '%s$ %s%s\n' "$D" "$*" "$N"; }

# Summarise one response: status file, body file (origin echo JSON), stderr file.
show() {
	"$PY" - "$1" "$2" "$3" "$G" "$Y" "$N" <<'EOF'
import json, sys
status_f, body_f, err_f, G, Y, N = sys.argv[1:]
status = open(status_f).read().strip() or "?"
try:
    echo = json.loads(open(body_f, "rb").read())
except ValueError:
    print("  HTTP %s, body is not the origin's echo: %r" % (status, open(body_f, "rb").read()[:200]))
    sys.exit(0)
h = {}
for k, v in echo["headers"]:
    h.setdefault(k.lower(), v)
via = h.get("x-via-haproxy") == "1"
tls = h.get("x-seen-proxy-tls")  # added by HAProxy to requests that reached it over TLS
print("  HTTP %s from the origin %s, %s" % (status, echo["server"],
      (G + "through Lunar Proxy (HAProxy)" + (", over %s" % tls if tls else "") + N) if via
      else (Y + "directly, not through the proxy" + N)))
if via:
    print("  the proxy received:")
    for name in ("host", "scheme", "interceptor", "req-id", "tenant-id"):
        if "x-seen-lunar-" + name in h:
            print("      x-lunar-%-12s %s" % (name + ":", h["x-seen-lunar-" + name]))
lunar = [k for k, _ in echo["headers"] if k.lower().startswith("x-lunar-")]
print("  the origin received: %s %s, Host: %s, x-lunar-* headers: %s"
      % (echo["method"], echo["path"], h.get("host"), ", ".join(lunar) or "none"))
errs = [l.rstrip() for l in open(err_f, errors="replace") if l.strip()]
for l in errs:
    print("  %sstderr: %s%s" % (Y, l, N))
EOF
}

run_curl() { # label path [scheme]: https trusts the lab's test CA
	local p="$2" scheme="${3:-http}" ca=()
	[[ $scheme == https ]] && ca=(--cacert "/tmp/lunar-lab-$NAME/tls/ca.pem")
	cmdline "LD_PRELOAD=$(basename "$LIB") LUNAR_PROXY_HOST=$PROXY curl -s ${ca[*]:+--cacert ca.pem }$scheme://api.example.test$p"
	ip netns exec "$NAME" env LD_PRELOAD="$LIB" LUNAR_PROXY_HOST="$PROXY" \
		curl -s "${ca[@]}" -o "$TMP/body" -w '%{http_code}' "$scheme://api.example.test$p" >"$TMP/status" 2>"$TMP/err" || true
	show "$TMP/status" "$TMP/body" "$TMP/err"
}

# The library's link to the proxy over TLS: HAProxy's TLS bind of its traffic frontend
# (8400) and its TLS handshake frontend (8443), certificate for proxy.lunar.test from the
# lab's test CA, which LUNAR_PROXY_CA_FILE names (tests/lab/README.md, TLS to the proxy).
TLS_PROXY=proxy.lunar.test:8400
TLS_HANDSHAKE_PORT=8443
run_curl_tls_link() { # label path
	local p="$2" ca="/tmp/lunar-lab-$NAME/tls/ca.pem"
	cmdline "LD_PRELOAD=$(basename "$LIB") LUNAR_PROXY_HOST=$TLS_PROXY LUNAR_PROXY_SUPPORT_TLS=1 LUNAR_HANDSHAKE_PORT=$TLS_HANDSHAKE_PORT LUNAR_PROXY_CA_FILE=ca.pem curl -s http://api.example.test$p"
	ip netns exec "$NAME" env LD_PRELOAD="$LIB" LUNAR_PROXY_HOST="$TLS_PROXY" LUNAR_PROXY_SUPPORT_TLS=1 \
		LUNAR_HANDSHAKE_PORT="$TLS_HANDSHAKE_PORT" LUNAR_PROXY_CA_FILE="$ca" \
		curl -s -o "$TMP/body" -w '%{http_code}' "http://api.example.test$p" >"$TMP/status" 2>"$TMP/err" || true
	show "$TMP/status" "$TMP/body" "$TMP/err"
}

# HAProxy's log lines about one request (its path), once HAProxy has written them.
show_haproxy_log() { # path
	local log="/tmp/lunar-lab-$NAME/haproxy.log" i lines=""
	for i in $(seq 1 20); do
		lines="$(grep -F -- "$1" "$log" || true)"
		[[ -n $lines ]] && break
		sleep 0.1
	done
	if [[ -z $lines ]]; then
		printf '  %sHAProxy logged nothing for %s%s\n' "$Y" "$1" "$N"
		return
	fi
	echo "  HAProxy's log: the handshake, then the request (a frontend's name ends with \"~\""
	echo "  when the connection is TLS):"
	{ grep -F ' lunar_handshake_tls~ ' "$log" || true; printf '%s\n' "$lines"; } | sed 's/^/      /'
	if grep -q ' lunar_traffic~ ' <<<"$lines"; then
		printf '  %sthe request reached the proxy inside a TLS session (lunar_traffic~)%s\n' "$G" "$N"
	else
		printf '  %sno TLS session in the log line%s\n' "$Y" "$N"
	fi
}

run_python() { # label path
	local p="$2"
	cmdline "LD_PRELOAD=$(basename "$LIB") LUNAR_PROXY_HOST=$PROXY python3 -c 'urllib.request.urlopen(\"http://api.example.test$p\")'"
	ip netns exec "$NAME" env LD_PRELOAD="$LIB" LUNAR_PROXY_HOST="$PROXY" "$PY" -c '
import sys, urllib.request
r = urllib.request.urlopen(sys.argv[1], timeout=10)
open(sys.argv[2], "wb").write(r.read())
open(sys.argv[3], "w").write(str(r.status))
' "http://api.example.test$p" "$TMP/body" "$TMP/status" 2>"$TMP/err" || true
	show "$TMP/status" "$TMP/body" "$TMP/err"
}

run_node() { # label path: Node's own https, trusting the lab's test CA
	local p="$2" ca="/tmp/lunar-lab-$NAME/tls/ca.pem"
	cmdline "LD_PRELOAD=$(basename "$LIB") LUNAR_PROXY_HOST=$PROXY NODE_EXTRA_CA_CERTS=ca.pem node -e 'https.get(\"https://api.example.test$p\")'"
	ip netns exec "$NAME" env LD_PRELOAD="$LIB" LUNAR_PROXY_HOST="$PROXY" NODE_EXTRA_CA_CERTS="$ca" node -e '
const fs = require("fs");
require("https").get(process.argv[1], (r) => {
  const parts = [];
  r.on("data", (d) => parts.push(d));
  r.on("end", () => { fs.writeFileSync(process.argv[2], Buffer.concat(parts)); fs.writeFileSync(process.argv[3], String(r.statusCode)); });
}).on("error", (e) => { console.error(e.message); process.exit(1); });
' "https://api.example.test$p" "$TMP/body" "$TMP/status" 2>"$TMP/err" || true
	show "$TMP/status" "$TMP/body" "$TMP/err"
}

printf '%sliblunar_intercept demo%s\n' "$B" "$N"
cat <<EOF
An LD_PRELOAD library: programs that call an external HTTP API (port 80, and https
through the program's own OpenSSL/GnuTLS, or Node's through a hook the library adds to
it) are diverted to Lunar Proxy, with x-lunar-* headers added, without changing the
program.
When the proxy is down, requests go straight to the API (failsafe).

Setting up the lab: network namespace $NAME, api.example.test = 203.0.113.10 (an
echo server that answers with the request it received), HAProxy as Lunar Proxy on
$PROXY. Every command below runs inside that namespace.
EOF
LAB_UP=1
"$PY" "$LABPY" up --name "$NAME" >/dev/null

title "1. curl, with the library, proxy up"
run_curl curl /demo/curl?step=1

title "2. curl over https, with the library, proxy up (through curl's own OpenSSL)"
run_curl curl /demo/curl-https?step=2 https

title "3. Python urllib, with the library, proxy up"
run_python python /demo/python?step=3

title "4. Node https, with the library, proxy up (through the library's Node hook)"
echo "  Node's TLS is inside node: the library adds its hook (lunar-node-hook.cjs) to the"
echo "  process at start; the hook hands the plaintext to the library, which sends it to the proxy."
run_node node /demo/node-https?step=4

title "5. The proxy goes down (HAProxy stopped)"
"$PY" -c 'import sys; sys.path.insert(0, sys.argv[1]); import lab; lab.Lab(sys.argv[2]).stop_haproxy()' \
	"$REPO/tests/lab" "$NAME"
echo "  HAProxy stopped: nothing listens on $PROXY any more."

title "6. curl again: failsafe, served by the origin"
run_curl curl /demo/curl?step=6

title "7. curl over https again: failsafe, real TLS to the origin"
run_curl curl /demo/curl-https?step=7 https

title "8. Python urllib again: failsafe, served by the origin"
run_python python /demo/python?step=8

title "9. Node https again: failsafe, real TLS to the origin made by Node itself"
run_node node /demo/node-https?step=9

title "10. The proxy comes back, with TLS (HAProxy started again)"
"$PY" -c 'import sys; sys.path.insert(0, sys.argv[1]); import lab; lab.Lab(sys.argv[2]).start_haproxy()' \
	"$REPO/tests/lab" "$NAME"
echo "  HAProxy is up: $PROXY in clear text as before, and TLS on $TLS_PROXY (traffic) and"
echo "  :$TLS_HANDSHAKE_PORT (handshake), a certificate for proxy.lunar.test from the lab's test CA:"
grep -E "bind 127\.0\.0\.1:(8400|$TLS_HANDSHAKE_PORT) " "/tmp/lunar-lab-$NAME/haproxy.cfg" |
	sed -e 's/^ */      /' -e "s#/tmp/lunar-lab-$NAME/tls/##"

title "11. curl, the library's link to the proxy over TLS (LUNAR_PROXY_SUPPORT_TLS=1)"
echo "  The library makes its own TLS session to the proxy, verified with LUNAR_PROXY_CA_FILE"
echo "  and the name proxy.lunar.test; curl itself speaks plain http and sees plain http."
run_curl_tls_link curl "/demo/curl-tls-link?step=11"
show_haproxy_log "/demo/curl-tls-link?step=11"

cat <<EOF

${B}Summary${N}: with the proxy up, the programs' requests (https included, sent to the
proxy as plain HTTP with x-lunar-scheme: https) went through it carrying
x-lunar-host / x-lunar-scheme / x-lunar-interceptor / x-lunar-req-id (which the
proxy removes before calling the API); with the proxy down, the same programs got
their answer from the API directly, and the library said why on stderr. With
LUNAR_PROXY_SUPPORT_TLS=1 the same headers travelled inside the library's own TLS
session to the proxy (verified against LUNAR_PROXY_CA_FILE), and curl never knew.
Try it yourself: python3 tests/lab/lab.py up --name mylab; then
  ip netns exec mylab env LD_PRELOAD=$LIB LUNAR_PROXY_HOST=$PROXY curl -s http://api.example.test/
  python3 tests/lab/lab.py down --name mylab
EOF
