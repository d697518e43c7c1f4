#!/usr/bin/env bash
# make bench: what the library costs, as RATIOS measured in one run (never asserts).
#
#  (a) wrk through the library (LD_PRELOAD; wrk -> http://api.example.test/, diverted
#      to HAProxy, headers injected by the library) vs wrk "direct mode" (no library;
#      wrk -> http://127.0.0.1:8000/ with the x-lunar-* headers written by hand),
#      both against the same HAProxy and the same origin;
#  (b) wrk to a server on a port the library does not intercept (api.example.test:8080)
#      with and without the library;
#  (c) /bin/true start-up with and without LD_PRELOAD (hyperfine);
#  (d) the untracked fast path in instructions (callgrind, when valgrind is installed);
#  (e) https: wrk through the library (wrk -> https://api.example.test/; wrk's OpenSSL
#      session becomes virtual, the plaintext goes to HAProxy as HTTP with
#      x-lunar-scheme: https, HAProxy makes TLS to the origin, verified with the lab CA)
#      vs wrk direct mode (no library; http://127.0.0.1:8000/ with the x-lunar-* headers,
#      x-lunar-scheme: https, written by hand: the same TLS work behind HAProxy) vs wrk
#      https straight to the origin (no library, no proxy: real TLS in wrk);
#  (f) the same as (d) for TLS session calls on sessions the library leaves alone.
#
# Everything runs inside a lab network namespace made for the run (tests/lab/lab.py);
# the lab's Python origins on 203.0.113.10:80, :8080 and :443 (TLS, with the lab's
# certificate) are replaced by nginx (our own minimal config in a temp dir), so that the
# origin is not the bottleneck. Every process started here is stopped by its PID and the
# namespace removed, even on failure.
#
# Environment: BENCH_DURATION (wrk seconds, default 5), BENCH_REPS (pairs, and (e)
# triples in rotating order, default 3),
# BENCH_CONNS (default 32), BENCH_THREADS (default 2), BENCH_RUNS (hyperfine runs,
# default 1000), LUNAR_LIB (library path). Output: a table on stdout and target/bench.txt.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
LIB="${LUNAR_LIB:-$REPO/target/release/liblunar_intercept.so}"
DUR="${BENCH_DURATION:-5}"
REPS="${BENCH_REPS:-3}"
CONNS="${BENCH_CONNS:-32}"
THREADS="${BENCH_THREADS:-2}"
RUNS="${BENCH_RUNS:-1000}"
PY=/usr/bin/python3
LABPY="$REPO/tests/lab/lab.py"
NAME="bench-$$"
API_IP=203.0.113.10
OUT="$REPO/target/bench.txt"

for tool in wrk hyperfine nginx haproxy ip; do
	command -v "$tool" >/dev/null || { echo "bench.sh: $tool missing (make deps)" >&2; exit 1; }
done
[[ -f "$LIB" ]] || { echo "bench.sh: $LIB missing (make build)" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "bench.sh: needs root (network namespace)" >&2; exit 1; }

TMP=""
NGINX_PID=""
LAB_UP=0

cleanup() {
	local rc=$?
	set +e
	trap '' INT TERM # finish cleaning up even if signalled again
	if [[ -n "$NGINX_PID" ]] && kill -0 "$NGINX_PID" 2>/dev/null; then
		kill -TERM "$NGINX_PID" 2>/dev/null
		for _ in $(seq 50); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$NGINX_PID" 2>/dev/null
	fi
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

say() { printf '%s\n' "$*" >&2; }
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
# ip netns exec execs nginx: $! is nginx's master PID.
ip netns exec "$NAME" nginx -c "$TMP/nginx.conf" -p "$TMP" >"$TMP/nginx.out" 2>&1 &
NGINX_PID=$!
for _ in $(seq 100); do
	in_ns curl -s -o /dev/null --max-time 1 "http://$API_IP:8080/" && break
	kill -0 "$NGINX_PID" 2>/dev/null || { cat "$TMP/nginx.out" "$TMP/nginx-error.log" >&2; exit 1; }
	sleep 0.05
done

# ---- sanity: the library really diverts, the direct mode really reaches the origin --
LIBENV=(env "LD_PRELOAD=$LIB" "LUNAR_PROXY_HOST=127.0.0.1:8000")
check=$(in_ns "${LIBENV[@]}" LUNAR_INTERCEPTOR_LOG_LEVEL=DEBUG curl -s -w '\n%{http_code}' http://api.example.test/ 2>"$TMP/check.err" || true)
if [[ "${check##*$'\n'}" != 200 ]] || ! grep -q 'nginx-bench' <<<"$check"; then
	say "bench: request through the library failed:"; say "$check"; cat "$TMP/check.err" >&2; exit 1
fi
if ! grep -qi 'proxy' "$TMP/check.err"; then
	say "bench: warning: the library's DEBUG log does not mention the proxy:"; cat "$TMP/check.err" >&2
fi
direct=$(in_ns curl -s -w '\n%{http_code}' -H 'x-lunar-host: api.example.test' -H 'x-lunar-scheme: http' http://127.0.0.1:8000/)
[[ "${direct##*$'\n'}" == 200 ]] || { say "bench: direct mode through HAProxy failed: $direct"; exit 1; }

# https (e): through the library the proxy sees it (HAProxy logs it, sent to origins_tls;
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
	-H 'x-lunar-scheme: https' http://127.0.0.1:8000/seen)
[[ "${direct##*$'\n'}" == 200 ]] && grep -qi '^x-seen-lunar-scheme: https' <<<"$direct" ||
	fail_https "direct mode with x-lunar-scheme: https through HAProxy failed:" "$direct"
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

hap_before=$(hap_lines)

# ---- wrk ----------------------------------------------------------------------
WRK=(wrk "-t$THREADS" "-c$CONNS" "-d${DUR}s" --latency)
DIRECT_H=(-H 'x-lunar-host: api.example.test' -H 'x-lunar-scheme: http'
	-H 'x-lunar-interceptor: lunar-direct/0' -H 'x-lunar-req-id: 00000000-0000-4000-8000-000000000000')
DIRECT_TLS_H=(-H 'x-lunar-host: api.example.test' -H 'x-lunar-scheme: https'
	-H 'x-lunar-interceptor: lunar-direct/0' -H 'x-lunar-req-id: 00000000-0000-4000-8000-000000000000')

# Runs a command and prints the CPU time (user+sys) it used and its peak memory (max RSS),
# from wait4's rusage: wrk's CPU per request shows the library's cost even when the 2
# cores are shared with HAProxy and nginx (throughput alone is bounded by all three).
CPU_WRAP='import os, subprocess, sys
p = subprocess.Popen(sys.argv[1:])
_, _, ru = os.wait4(p.pid, 0)
sys.stdout.flush()
print("CPU_SECONDS %.6f" % (ru.ru_utime + ru.ru_stime))
print("MAXRSS_KB %d" % ru.ru_maxrss)'

# run_wrk LABEL CMD...: appends "label rps avg_latency_ms p99_ms errors non2xx cpu_us_per_req
# haproxy_lines_per_req" to $TMP/wrk.tsv (the last: did the run go through HAProxy, ~1, or not, 0)
run_wrk() {
	local label="$1"
	shift
	local out="$TMP/wrk-$label-$RANDOM.txt" h0
	h0=$(hap_lines)
	in_ns "$PY" -c "$CPU_WRAP" "$@" >"$out" 2>&1 || true
	sleep 0.2 # HAProxy logs a request when it ends
	awk -v label="$label" -v hap="$(($(hap_lines) - h0))" '
		function ms(v) {
			if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
			if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
			if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
			return v + 0
		}
		/^ +Latency / && !lat { lat = ms($2) }
		/^ +99%/ { p99 = ms($2) }
		/Requests\/sec:/ { rps = $2 }
		/Socket errors:/ { gsub(/,/, ""); err = $4 + $6 + $8 + $10 }
		/Non-2xx or 3xx responses:/ { non2xx = $5 }
		/ requests in / { reqs = $1 }
		/^CPU_SECONDS / { cpu = $2 }
		/^MAXRSS_KB / { rss = $2 }
		END {
			cpr = reqs > 0 ? cpu * 1e6 / reqs : 0
			hpr = reqs > 0 ? hap / reqs : 0
			printf "%s\t%s\t%.3f\t%.3f\t%d\t%d\t%.3f\t%.3f\t%d\n", label, (rps == "" ? 0 : rps), lat, p99, err, non2xx, cpr, hpr, rss
		}
	' "$out" >>"$TMP/wrk.tsv"
	say "  $(tail -n1 "$TMP/wrk.tsv" | awk -F'\t' '{printf "%-12s %10.0f req/s  avg %.3f ms  p99 %.3f ms  wrk cpu %.2f us/req  errors %d  non-2xx %d  haproxy lines/req %.2f", $1, $2, $3, $4, $7, $5, $6, $8}')"
}

: >"$TMP/wrk.tsv"
say "bench: wrk -t$THREADS -c$CONNS -d${DUR}s, $REPS rounds (pairs alternating, (e) rotating)"
for i in $(seq "$REPS"); do
	say " round $i"
	# (a) library vs direct mode, same HAProxy, same nginx behind it.
	if ((i % 2)); then
		run_wrk a_lib "${LIBENV[@]}" "${WRK[@]}" http://api.example.test/
		run_wrk a_direct "${WRK[@]}" "${DIRECT_H[@]}" http://127.0.0.1:8000/
	else
		run_wrk a_direct "${WRK[@]}" "${DIRECT_H[@]}" http://127.0.0.1:8000/
		run_wrk a_lib "${LIBENV[@]}" "${WRK[@]}" http://api.example.test/
	fi
	# (b) not an intercepted port: straight to nginx, with and without the library.
	if ((i % 2)); then
		run_wrk b_lib "${LIBENV[@]}" "${WRK[@]}" http://api.example.test:8080/
		run_wrk b_nolib "${WRK[@]}" http://api.example.test:8080/
	else
		run_wrk b_nolib "${WRK[@]}" http://api.example.test:8080/
		run_wrk b_lib "${LIBENV[@]}" "${WRK[@]}" http://api.example.test:8080/
	fi
	# (e) https: library vs direct mode (both: HAProxy -> TLS -> nginx) vs real TLS
	# straight to nginx; the order of the three rotates from one round to the next.
	for k in 0 1 2; do
		case $(((i - 1 + k) % 3)) in
		0) run_wrk e_lib "${LIBENV[@]}" "${WRK[@]}" https://api.example.test/ ;;
		1) run_wrk e_direct "${WRK[@]}" "${DIRECT_TLS_H[@]}" http://127.0.0.1:8000/ ;;
		2) run_wrk e_origin "${WRK[@]}" https://api.example.test/ ;;
		esac
	done
done
hap_after=$(hap_lines)

# ---- hyperfine: /bin/true start-up ------------------------------------------------
say "bench: hyperfine /bin/true, $RUNS runs each"
in_ns hyperfine -N --style none --warmup 50 --runs "$RUNS" --export-json "$TMP/hf.json" \
	'/usr/bin/env /bin/true' \
	"/usr/bin/env LD_PRELOAD=$LIB LUNAR_PROXY_HOST=127.0.0.1:8000 /bin/true" >/dev/null 2>"$TMP/hf.err" ||
	{ cat "$TMP/hf.err" >&2; exit 1; }

# ---- report ---------------------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
"$PY" - "$TMP/wrk.tsv" "$TMP/hf.json" "$LIB" "$DUR" "$THREADS" "$CONNS" "$REPS" "$RUNS" \
	"$((hap_after - hap_before))" >"$OUT" <<'EOF'
import json, statistics, sys, time, platform
tsv, hf, lib, dur, threads, conns, reps, runs, hap_lines = sys.argv[1:]
rows = {}
for line in open(tsv):
    label, rps, lat, p99, err, non2xx, cpr, hpr, rss = line.rstrip("\n").split("\t")
    rows.setdefault(label, []).append((float(rps), float(lat), float(p99), int(err), int(non2xx),
                                       float(cpr), float(hpr), float(rss)))

def med(label, i):
    return statistics.median(r[i] for r in rows.get(label, [(0, 0, 0, 0, 0, 0, 0, 0)]))

def pair_ratio(a, b, i=0):
    ra, rb = rows.get(a, []), rows.get(b, [])
    vals = [x[i] / y[i] for x, y in zip(ra, rb) if y[i]]
    return statistics.median(vals) if vals else float("nan")

def errs(label):
    return sum(r[3] + r[4] for r in rows.get(label, []))

h = json.load(open(hf))["results"]
t0, t1 = h[0]["mean"], h[1]["mean"]
s0, s1 = h[0]["stddev"], h[1]["stddev"]
print("liblunar_intercept benchmark  %s  %s" % (time.strftime("%Y-%m-%d %H:%M:%S"), platform.node()))
print("library: %s" % lib)
print("wrk -t%s -c%s -d%ss, %s rounds (pairs alternating, (e) triples rotating), median of per-round"
      " ratios; origin: nginx (static file)" % (threads, conns, dur, reps))
print()
print("%-58s %12s %12s %8s" % ("measure", "with lib", "baseline", "ratio"))
print("-" * 94)
print("%-58s %12.0f %12.0f %8.3f" % ("(a) req/s: library->HAProxy vs direct mode->HAProxy",
      med("a_lib", 0), med("a_direct", 0), pair_ratio("a_lib", "a_direct")))
print("%-58s %12.3f %12.3f %8.3f" % ("    avg latency ms", med("a_lib", 1), med("a_direct", 1),
      pair_ratio("a_lib", "a_direct", 1)))
print("%-58s %12.3f %12.3f %8.3f" % ("    p99 latency ms", med("a_lib", 2), med("a_direct", 2),
      pair_ratio("a_lib", "a_direct", 2)))
print("%-58s %12.2f %12.2f %8.3f" % ("    wrk CPU us per request (user+sys)", med("a_lib", 5),
      med("a_direct", 5), pair_ratio("a_lib", "a_direct", 5)))
print("%-58s %12.0f %12.0f %8.3f" % ("    wrk peak memory KiB (max RSS)", med("a_lib", 7),
      med("a_direct", 7), pair_ratio("a_lib", "a_direct", 7)))
print("%-58s %12.0f %12.0f %8.3f" % ("(b) req/s: untracked port :8080, library vs none",
      med("b_lib", 0), med("b_nolib", 0), pair_ratio("b_lib", "b_nolib")))
print("%-58s %12.3f %12.3f %8.3f" % ("    avg latency ms", med("b_lib", 1), med("b_nolib", 1),
      pair_ratio("b_lib", "b_nolib", 1)))
print("%-58s %12.2f %12.2f %8.3f" % ("    wrk CPU us per request (user+sys)", med("b_lib", 5),
      med("b_nolib", 5), pair_ratio("b_lib", "b_nolib", 5)))
print("%-58s %12.1f %12.1f %8.3f" % ("(c) /bin/true start-up us (mean of %s runs)" % runs,
      t1 * 1e6, t0 * 1e6, t1 / t0))
print("%-58s %+12.1f %12s" % ("    difference us (stddev lib %.1f, none %.1f)" % (s1 * 1e6, s0 * 1e6),
      (t1 - t0) * 1e6, ""))
m0, m1 = h[0]["median"], h[1]["median"]
print("%-58s %12.1f %12.1f %8.3f" % ("    median us (less sensitive to a busy machine)", m1 * 1e6,
      m0 * 1e6, m1 / m0))
for base, what in (("e_direct", "(e) https req/s: library vs direct mode (both via HAProxy)"),
                   ("e_origin", "    https req/s: library vs straight to origin (real TLS)")):
    print("%-58s %12.0f %12.0f %8.3f" % (what, med("e_lib", 0), med(base, 0),
                                         pair_ratio("e_lib", base)))
    print("%-58s %12.3f %12.3f %8.3f" % ("    avg latency ms", med("e_lib", 1), med(base, 1),
          pair_ratio("e_lib", base, 1)))
    print("%-58s %12.3f %12.3f %8.3f" % ("    p99 latency ms", med("e_lib", 2), med(base, 2),
          pair_ratio("e_lib", base, 2)))
    print("%-58s %12.2f %12.2f %8.3f" % ("    wrk CPU us per request (user+sys)", med("e_lib", 5),
          med(base, 5), pair_ratio("e_lib", base, 5)))
    print("%-58s %12.0f %12.0f %8.3f" % ("    wrk peak memory KiB (max RSS)", med("e_lib", 7),
          med(base, 7), pair_ratio("e_lib", base, 7)))
print()
print("wrk socket errors + non-2xx: a_lib %d, a_direct %d, b_lib %d, b_nolib %d, e_lib %d, "
      "e_direct %d, e_origin %d; HAProxy log lines during wrk: %s"
      % (errs("a_lib"), errs("a_direct"), errs("b_lib"), errs("b_nolib"), errs("e_lib"),
         errs("e_direct"), errs("e_origin"), hap_lines))
print("HAProxy log lines per wrk request (1 = through the proxy, 0 = not): "
      + ", ".join("%s %.2f" % (l, med(l, 6)) for l in ("a_lib", "a_direct", "b_lib", "b_nolib",
                                                        "e_lib", "e_direct", "e_origin")))
print("(e): library and direct mode both reach nginx through HAProxy's TLS (verified with the lab"
      " CA); origin = wrk's own TLS to nginx, no proxy")
print("ratio: with/without; throughput 1.0 = no cost, latency and CPU 1.0 = no cost (higher = costlier)")
EOF
# (d) the untracked fast path, in instructions: callgrind counts user-space instructions
# only, so (with - without) / calls is exactly what a hook adds to a call on an fd the
# library does not track (write, recv and close, 100000 each).
if command -v valgrind >/dev/null; then
	FAST="$REPO/c-tests/bin/fastpath"
	gcc -O2 -o "$FAST" "$REPO/c-tests/bench/fastpath.c"
	count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 | awk '/Collected/ {print $4}'; }
	calls=100000
	base0=$(count "$FAST" 0); base=$(count "$FAST" $calls)
	with0=$(LD_PRELOAD="$LIB" count "$FAST" 0); with=$(LD_PRELOAD="$LIB" count "$FAST" $calls)
	"$PY" - "$base0" "$base" "$with0" "$with" "$calls" >>"$OUT" <<'EOF2'
import sys
b0, b, w0, w, n = (int(x) for x in sys.argv[1:])
per_call = ((w - w0) - (b - b0)) / (3 * n)
print()
print("(d) untracked fast path (callgrind, user-space instructions): %.1f added per hooked call"
      " (write/recv/close on fds never tracked); library load: %+d instructions" % (per_call, w0 - b0))
EOF2
	# (f) the same for TLS sessions the library does not make virtual: SSL_pending,
	# SSL_get_error and SSL_get_verify_result on an SSL that never connected.
	SSLFAST="$REPO/c-tests/bin/ssl_fastpath"
	if gcc -O2 -o "$SSLFAST" "$REPO/c-tests/bench/ssl_fastpath.c" -lssl -lcrypto 2>/dev/null; then
		base0=$(count "$SSLFAST" 0); base=$(count "$SSLFAST" $calls)
		with0=$(LD_PRELOAD="$LIB" count "$SSLFAST" 0); with=$(LD_PRELOAD="$LIB" count "$SSLFAST" $calls)
		"$PY" - "$base0" "$base" "$with0" "$with" "$calls" >>"$OUT" <<'EOF2'
import sys
b0, b, w0, w, n = (int(x) for x in sys.argv[1:])
own = (b - b0) / (3 * n)
print("(f) TLS session calls the library leaves alone (callgrind): %.1f instructions added per"
      " call (libssl's own call: %.1f)" % (((w - w0) - (b - b0)) / (3 * n), own))
EOF2
	fi
fi
cat "$OUT"
say "bench: written to $OUT"
