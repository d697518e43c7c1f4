#!/usr/bin/env bash
# make bench: what the library costs, each figure against its baseline measured in the
# same run, interleaved (never asserts). Rows, by the points of issue 10:
#  blocking clients  Python requests (Session keep-alive, and requests.get: a new
#      connection per request; http, and https through a virtual session; a row's arms
#      running at once, taking turns request by request) and curl (one process on one
#      connection, also in steady state, and a process per request): µs added per request
#      over direct mode, the proxy given by name in both, the https rows also over the C
#      floor's virtual sessions (c-tests/bench/floor_divert.c; scripts/bench/blocking.py);
#  throughput        wrk keep-alive, Connection: close, -t1 -c1 p99 (each also with the
#      C floor, and with the C floor parsing what the library parses; keep-alive also
#      with that parsing floor taking 400 taken jumps more per request: what a taken
#      branch site costs here), https (scripts/bench/wrk.sh); system calls per
#      keep-alive request (strace -c, curl; scripts/bench/syscalls.py);
#  start-up          /bin/true: no preload vs an empty shared object vs the library vs a
#      C floor preload, µs, CPU µs and page faults per start, the variants taking turns
#      start by start (scripts/bench/startup.py), and instructions per start (callgrind);
#  memory            the library's own smaps Rss and Private_Dirty in an inert process
#      vs an empty shared object's (scripts/bench/memory.py); peak RSS added with traffic
#      (wrk, Python);
#  untracked         instructions per send+recv pair and per hooked call on untracked
#      fds, per TLS call on sessions left alone (callgrind, scripts/bench/instructions.sh);
#      wrk to an untracked port with the library in wrk; nginx itself under the preload;
#      instructions per diverted request, keep-alive (a C epoll client) and on a new
#      connection (wrk, Connection: close), library vs direct mode; instructions and taken
#      branch sites per keep-alive request in wrk (scripts/bench/branch_sites.py), the
#      library and the floors vs direct mode; per Python https request (Session, get),
#      library vs the C floor's virtual session, instructions and the lines of the
#      preload's code each request runs (scripts/bench/code_lines.py).
# "Direct mode" is the program talking to HAProxy itself, with the x-lunar-* headers
# written by hand: the same proxy, the same origin, no library.
#
# Everything runs inside a lab network namespace made for the run (tests/lab/lab.py);
# the lab's Python origins on 203.0.113.10:80, :8080 and :443 (TLS, with the lab's
# certificate) are replaced by nginx (our own minimal config in a temp dir), so that the
# origin is not the bottleneck (the lab's Python origin takes ~45 ms per keep-alive
# request). Every process started here is stopped by its PID and the namespace removed,
# even on failure.
#
# Environment: BENCH_FINE_DURATION and BENCH_FINE_REPS (wrk seconds and rounds of the rows
# with a target, defaults 1 and 15), BENCH_DURATION and BENCH_REPS (the https wrk rows,
# defaults 5 and 3),
# BENCH_CONNS (default 32), BENCH_THREADS (default 2), BENCH_RUNS (starts of each
# start-up variant, default 3000, in BENCH_START_ROUNDS rounds, default 10),
# BENCH_ROUNDS (blocking-client rounds, default 9), BENCH_PY_REQS (Python requests per
# round, default 300), BENCH_CURL_REQS (curl requests per round, default 200),
# LUNAR_LIB (library path), BENCH_ONLY (the parts to run, of: blocking wrk syscalls startup
# memory insn; default all of them: a contributor studying one row runs its part alone).
# Output: a table on stdout and target/bench.txt.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="$REPO/scripts/bench"
LIB="${LUNAR_LIB:-$REPO/target/release/liblunar_intercept.so}"
DUR="${BENCH_DURATION:-5}"
REPS="${BENCH_REPS:-3}"
FINE_DUR="${BENCH_FINE_DURATION:-1}"
FINE_REPS="${BENCH_FINE_REPS:-15}"
CONNS="${BENCH_CONNS:-32}"
THREADS="${BENCH_THREADS:-2}"
RUNS="${BENCH_RUNS:-3000}"
START_ROUNDS="${BENCH_START_ROUNDS:-10}"
ROUNDS="${BENCH_ROUNDS:-9}"
PY_REQS="${BENCH_PY_REQS:-300}"
CURL_REQS="${BENCH_CURL_REQS:-200}"
SYSCALL_REQS=200
ONLY="${BENCH_ONLY:-blocking wrk syscalls startup memory insn}"
PY=/usr/bin/python3
LABPY="$REPO/tests/lab/lab.py"
NAME="bench-$$"
API_IP=203.0.113.10
NGINX_NOLIB_PORT=8091 # nginx without and with the preload (rows g)
NGINX_LIB_PORT=8092
OUT="$REPO/target/bench.txt"

for tool in wrk nginx haproxy ip curl strace; do
	command -v "$tool" >/dev/null || { echo "bench.sh: $tool missing (make deps)" >&2; exit 1; }
done
"$PY" -c 'import requests' 2>/dev/null || { echo "bench.sh: python3-requests missing (make deps)" >&2; exit 1; }
[[ -f "$LIB" ]] || { echo "bench.sh: $LIB missing (make build)" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "bench.sh: needs root (network namespace)" >&2; exit 1; }

TMP=""
NGINX_PIDS=()
LAB_UP=0
T_START=$(date +%s)

cleanup() {
	local rc=$? pid
	set +e
	trap '' INT TERM # finish cleaning up even if signalled again
	for pid in "${NGINX_PIDS[@]}"; do
		kill -0 "$pid" 2>/dev/null || continue
		kill -TERM "$pid" 2>/dev/null
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null
	done
	if [[ $LAB_UP -eq 1 ]]; then
		"$PY" "$LABPY" down --name "$NAME"
	fi
	[[ -n "$TMP" ]] && rm -rf "$TMP"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
TMP="$(mktemp -d /tmp/lunar-bench.XXXXXX)"
chmod 755 "$TMP" # nginx workers (not root) read www/ below it
SAMPLES="$TMP/samples.tsv" # "key<TAB>round<TAB>value", read by scripts/bench/report.py
: >"$SAMPLES"

say() { printf '%s\n' "$*" >&2; }
wanted() { [[ " $ONLY " == *" $1 "* ]]; } # part: is it one BENCH_ONLY names?
in_ns() { ip netns exec "$NAME" "$@"; }

# ---- lab, with nginx in place of the Python origins on the API address -----------
say "bench: bringing lab $NAME up"
LAB_UP=1
"$PY" "$LABPY" up --name "$NAME" >/dev/null
LABDIR="/tmp/lunar-lab-$NAME"
STATE="$LABDIR/state.json"
HAPLOG="$LABDIR/haproxy.log"
CA="$LABDIR/tls/ca.pem" # the lab CA; lab.pem (api + other, DNS and IP SANs) is signed by it

stop_lab_service() { # svc: stop one lab service by the PID the lab recorded
	local pid
	pid="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["pids"].get(sys.argv[2], ""))' "$STATE" "$1")"
	[[ -n "$pid" ]] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null || true
}
stop_lab_service origin-api
stop_lab_service origin-api-8080
stop_lab_service origin-api-tls

mkdir -p "$TMP/www" "$TMP/tmp"
printf '{"server":"nginx-bench","ok":true,"pad":"%s"}\n' "$(printf 'x%.0s' $(seq 64))" >"$TMP/www/index.json"
cat >"$TMP/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    client_body_temp_path $TMP/tmp/body;
    proxy_temp_path $TMP/tmp/proxy;
    fastcgi_temp_path $TMP/tmp/fastcgi;
    uwsgi_temp_path $TMP/tmp/uwsgi;
    scgi_temp_path $TMP/tmp/scgi;
    default_type application/json;
    server {
        listen $API_IP:80 reuseport;
        listen $API_IP:8080 reuseport;
        root $TMP/www;
        index index.json;
    }
    # https origin of (e): the lab's certificate, so HAProxy's "verify required" against
    # the lab CA passes. /seen (sanity check only) echoes what HAProxy saw.
    server {
        listen $API_IP:443 ssl reuseport;
        ssl_certificate $LABDIR/tls/lab.pem;
        ssl_certificate_key $LABDIR/tls/lab.key;
        root $TMP/www;
        index index.json;
        location = /seen {
            add_header x-seen-lunar-scheme \$http_x_seen_lunar_scheme always;
            add_header x-seen-lunar-interceptor \$http_x_seen_lunar_interceptor always;
            add_header x-via-haproxy \$http_x_via_haproxy always;
            try_files /index.json =404;
        }
    }
}
EOF
# start_nginx CONF WAIT_URL [ENV...]: nginx in the namespace (ip netns exec, then env,
# exec nginx: $! is nginx's master PID), recorded for cleanup; waits for WAIT_URL.
start_nginx() {
	local conf="$1" url="$2" pid
	shift 2
	ip netns exec "$NAME" env "$@" nginx -c "$conf" -p "$TMP" >"$conf.out" 2>&1 &
	pid=$!
	NGINX_PIDS+=("$pid")
	for _ in $(seq 100); do
		in_ns curl -s -o /dev/null --max-time 1 "$url" && return 0
		kill -0 "$pid" 2>/dev/null || { cat "$conf.out" "$TMP/nginx-error.log" >&2; exit 1; }
		sleep 0.05
	done
	say "bench: nginx ($conf) did not answer $url"; exit 1
}
start_nginx "$TMP/nginx.conf" "http://$API_IP:8080/"

# Rows g: two more nginx, the same minimal static server on one port each, one of them
# with the library preloaded the way an image-wide /etc/ld.so.preload would (with
# LUNAR_PROXY_HOST set): its sockets are accepted ones, which the library never tracks.
for g in nolib lib; do
	port=$NGINX_NOLIB_PORT
	[[ $g == lib ]] && port=$NGINX_LIB_PORT
	cat >"$TMP/nginx-$g.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $TMP/nginx-$g.pid;
error_log $TMP/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    client_body_temp_path $TMP/tmp/body-$g;
    proxy_temp_path $TMP/tmp/proxy-$g;
    fastcgi_temp_path $TMP/tmp/fastcgi-$g;
    uwsgi_temp_path $TMP/tmp/uwsgi-$g;
    scgi_temp_path $TMP/tmp/scgi-$g;
    default_type application/json;
    server {
        listen $API_IP:$port reuseport;
        root $TMP/www;
        index index.json;
    }
}
EOF
done
start_nginx "$TMP/nginx-nolib.conf" "http://$API_IP:$NGINX_NOLIB_PORT/"
start_nginx "$TMP/nginx-lib.conf" "http://$API_IP:$NGINX_LIB_PORT/" \
	"LD_PRELOAD=$LIB" LUNAR_PROXY_HOST=proxy.lunar.test:8000
want=0 # every process of both instances: the library mapped or not
for pid in "${NGINX_PIDS[@]:1}"; do
	for p in $pid $(cat "/proc/$pid/task/$pid/children"); do
		has=0
		grep -qF "$LIB" "/proc/$p/maps" && has=1
		((has == want)) || { say "bench: nginx process $p: library mapped $has, expected $want"; exit 1; }
	done
	want=1
done

# ---- sanity: the library really diverts, the direct mode really reaches the origin --
LIBENV=(env "LD_PRELOAD=$LIB" "LUNAR_PROXY_HOST=proxy.lunar.test:8000")
# Direct mode: the program's own request to HAProxy with Lunar's lines written by hand (wrk
# rows and instruction counts).
DIRECT_H=(-H 'x-lunar-host: api.example.test' -H 'x-lunar-scheme: http'
	-H 'x-lunar-interceptor: lunar-direct/0' -H 'x-lunar-req-id: 00000000-0000-4000-8000-000000000000')
DIRECT_TLS_H=(-H 'x-lunar-host: api.example.test' -H 'x-lunar-scheme: https'
	-H 'x-lunar-interceptor: lunar-direct/0' -H 'x-lunar-req-id: 00000000-0000-4000-8000-000000000000')
FLOOR_DIVERT="$TMP/floor_divert.so"
gcc -O2 -fPIC -fvisibility=hidden -shared -o "$FLOOR_DIVERT" "$REPO/c-tests/bench/floor_divert.c" -ldl
FLOORENV=(env "LD_PRELOAD=$FLOOR_DIVERT" "LUNAR_PROXY_HOST=proxy.lunar.test:8000")
FLOOR_PARSE="$TMP/floor_parse.so" # the same, parsing heads and answers (libhttp-parser-dev)
gcc -O2 -fPIC -fvisibility=hidden -shared -DFLOOR_PARSE -o "$FLOOR_PARSE" \
	"$REPO/c-tests/bench/floor_divert.c" -ldl -lhttp_parser
PARSEENV=(env "LD_PRELOAD=$FLOOR_PARSE" "LUNAR_PROXY_HOST=proxy.lunar.test:8000")
FLOOR_JUMPS=400 # the same with that many taken jumps per request: a branch site's cost here
FLOOR_JUMPING="$TMP/floor_jumps.so"
gcc -O2 -fPIC -fvisibility=hidden -shared -DFLOOR_PARSE "-DFLOOR_JUMPS=$FLOOR_JUMPS" -o "$FLOOR_JUMPING" \
	"$REPO/c-tests/bench/floor_divert.c" -ldl -lhttp_parser
JUMPSENV=(env "LD_PRELOAD=$FLOOR_JUMPING" "LUNAR_PROXY_HOST=proxy.lunar.test:8000")
printf 'floor_jumps\t1\t%d\n' "$FLOOR_JUMPS" >>"$SAMPLES"
# TLS to the proxy: HAProxy's TLS traffic port 8400 and TLS handshake port 8443, the lab CA.
LIBENV_TLS=(env "LD_PRELOAD=$LIB" "LUNAR_PROXY_HOST=proxy.lunar.test:8400" LUNAR_PROXY_SUPPORT_TLS=1
	LUNAR_HANDSHAKE_PORT=8443 "LUNAR_PROXY_CA_FILE=$CA")
check=$(in_ns "${LIBENV[@]}" LUNAR_INTERCEPTOR_LOG_LEVEL=DEBUG curl -s -w '\n%{http_code}' http://api.example.test/ 2>"$TMP/check.err" || true)
if [[ "${check##*$'\n'}" != 200 ]] || ! grep -q 'nginx-bench' <<<"$check"; then
	say "bench: request through the library failed:"; say "$check"; cat "$TMP/check.err" >&2; exit 1
fi
if ! grep -qi 'proxy' "$TMP/check.err"; then
	say "bench: warning: the library's DEBUG log does not mention the proxy:"; cat "$TMP/check.err" >&2
fi
direct=$(in_ns curl -s -w '\n%{http_code}' -H 'x-lunar-host: api.example.test' -H 'x-lunar-scheme: http' http://proxy.lunar.test:8000/)
[[ "${direct##*$'\n'}" == 200 ]] || { say "bench: direct mode through HAProxy failed: $direct"; exit 1; }

# https: through the library the proxy sees it (HAProxy logs it, sent to origins_tls;
# nginx echoes the x-seen-* headers HAProxy set); without the library it is real TLS
# straight to the origin, verified against the lab CA, and HAProxy sees nothing.
hap_lines() { wc -l <"$HAPLOG"; }
wait_hap_lines() { # n: wait (2 s at most) until HAProxy's log has more than n lines
	for _ in $(seq 40); do (($(hap_lines) > $1)) && return 0; sleep 0.05; done
	return 1
}
fail_https() { say "bench: $1"; say "$2"; [[ -f "$TMP/check.err" ]] && cat "$TMP/check.err" >&2; exit 1; }
n0=$(hap_lines)
check=$(in_ns "${LIBENV[@]}" LUNAR_INTERCEPTOR_LOG_LEVEL=DEBUG curl -s --cacert "$CA" -D - \
	-w '\n%{http_code}' https://api.example.test/seen 2>"$TMP/check.err" || true)
[[ "${check##*$'\n'}" == 200 ]] && grep -q 'nginx-bench' <<<"$check" ||
	fail_https "https request through the library failed:" "$check"
grep -qi '^x-seen-lunar-scheme: https' <<<"$check" &&
	grep -qi '^x-seen-lunar-interceptor: lunar-preload-interceptor/' <<<"$check" ||
	fail_https "https through the library did not reach HAProxy with x-lunar-scheme: https:" "$check"
wait_hap_lines "$n0" || fail_https "https through the library: HAProxy logged nothing" "$check"
tail -n +"$((n0 + 1))" "$HAPLOG" | grep -q 'lunar_traffic origins_tls/origin_tls .* 200 .*{api.example.test|' ||
	fail_https "https through the library: HAProxy's log has no TLS request to api.example.test:" \
		"$(tail -n +"$((n0 + 1))" "$HAPLOG")"
direct=$(in_ns curl -s -D - -w '\n%{http_code}' -H 'x-lunar-host: api.example.test' \
	-H 'x-lunar-scheme: https' http://proxy.lunar.test:8000/seen)
[[ "${direct##*$'\n'}" == 200 ]] && grep -qi '^x-seen-lunar-scheme: https' <<<"$direct" ||
	fail_https "direct mode with x-lunar-scheme: https through HAProxy failed:" "$direct"
# TLS to the proxy: through the library the request reaches HAProxy's TLS traffic port
# (its log marks a TLS frontend with "~"); direct mode there is curl's own TLS to it.
n0=$(hap_lines)
check=$(in_ns "${LIBENV_TLS[@]}" LUNAR_INTERCEPTOR_LOG_LEVEL=DEBUG curl -s -w '\n%{http_code}' \
	http://api.example.test/ 2>"$TMP/check.err" || true)
[[ "${check##*$'\n'}" == 200 ]] && grep -q 'nginx-bench' <<<"$check" ||
	fail_https "a request through the library over TLS to the proxy failed:" "$check"
wait_hap_lines "$n0" && tail -n +"$((n0 + 1))" "$HAPLOG" | grep -q 'lunar_traffic~' ||
	fail_https "over TLS to the proxy: HAProxy's log has no request on its TLS traffic port:" \
		"$(tail -n +"$((n0 + 1))" "$HAPLOG")"
direct=$(in_ns curl -s --cacert "$CA" -w '\n%{http_code}' -H 'x-lunar-host: api.example.test' \
	-H 'x-lunar-scheme: http' https://proxy.lunar.test:8400/)
[[ "${direct##*$'\n'}" == 200 ]] || fail_https "direct mode over TLS to HAProxy (8400) failed:" "$direct"
rm -f "$TMP/check.err"
sleep 0.2
n0=$(hap_lines)
origin=$(in_ns curl -s --cacert "$CA" -D - -w '\n%{http_code} %{ssl_verify_result}' \
	https://api.example.test/seen || true)
[[ "${origin##*$'\n'}" == "200 0" ]] && grep -q 'nginx-bench' <<<"$origin" ||
	fail_https "https straight to the origin (verified with the lab CA) failed:" "$origin"
sleep 0.2
if grep -qi '^x-seen-lunar\|^x-via-haproxy' <<<"$origin" || (($(hap_lines) != n0)); then
	fail_https "https without the library went through HAProxy:" "$origin"
fi

# ---- the rows --------------------------------------------------------------------
# The library's pages as a booted machine has them in its page cache (see smaps.py).
"$PY" -c 'import sys; sys.path.insert(0, sys.argv[1]); from smaps import as_after_boot; as_after_boot(sys.argv[2])' "$BENCH" "$LIB"
if wanted blocking; then
	say "bench: blocking clients, $ROUNDS rounds ($PY_REQS Python requests, $CURL_REQS curl requests per row and mode)"
	in_ns "$PY" "$BENCH/blocking.py" "$LIB" "$CA" "$HAPLOG" "$ROUNDS" "$PY_REQS" "$CURL_REQS" "$SAMPLES" "$FLOOR_DIVERT"
fi
if wanted wrk; then
	source "$BENCH/wrk.sh"
fi
if wanted syscalls; then
	say "bench: system calls per request (strace -f -c, curl, $SYSCALL_REQS keep-alive requests)"
	in_ns "$PY" "$BENCH/syscalls.py" "$LIB" "$SYSCALL_REQS" 3 "$SAMPLES"
fi
EMPTY="$TMP/empty.so"
cc -shared -o "$EMPTY" -x c /dev/null
FLOOR="$TMP/floor_preload.so"
gcc -O2 -fPIC -fvisibility=hidden -shared -o "$FLOOR" "$REPO/c-tests/bench/floor_preload.c" -ldl
if wanted startup; then
	say "bench: start-up, $RUNS starts per variant in $START_ROUNDS rounds"
	in_ns "$PY" "$BENCH/startup.py" "$LIB" "$EMPTY" "$RUNS" "$START_ROUNDS" "$SAMPLES" "$FLOOR"
fi
if wanted memory; then
	say "bench: memory of an inert process (smaps)"
	"$PY" "$BENCH/memory.py" "$LIB" "$EMPTY" 3 "$SAMPLES"
fi
if wanted insn; then
	source "$BENCH/instructions.sh"
fi

# ---- report ---------------------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
"$PY" "$BENCH/report.py" "$SAMPLES" "$LIB" "$DUR" "$THREADS" "$CONNS" "$REPS" "$RUNS" "$START_ROUNDS" \
	"$ROUNDS" "$PY_REQS" "$CURL_REQS" "$SYSCALL_REQS" "$(($(date +%s) - T_START))" "$FINE_DUR" \
	"$FINE_REPS" >"$OUT"
cat "$OUT"
say "bench: written to $OUT"
