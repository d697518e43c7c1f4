# make bench, sourced by scripts/bench.sh: wrk rows, each arm's order alternating (pairs) or
# rotating (more arms) from one round to the next. The rows with a target (a, c, p, b, g) run
# $FINE_REPS short rounds of ${FINE_DUR}s: the ratio is the median of the per-round ones,
# and on a 2-core VM shared with HAProxy and nginx the machine's speed drifts by ±10%
# within seconds (one 3-round run saw every arm lose 20% in its last round); short
# adjacent runs put both arms of a round in the same state. The https rows (e, t) run
# $REPS rounds of ${DUR}s.
#  a  keep-alive, -t$THREADS -c$CONNS: library (wrk -> http://api.example.test/, diverted
#     to HAProxy) vs direct mode (no library; wrk -> HAProxy with the x-lunar-* headers
#     written by hand), the same HAProxy and nginx behind it;
#  c  the same with Connection: close (a new connection, so a new diversion, per request);
#     a and c have two more arms: the floor, c-tests/bench/floor_divert.c preloaded, the
#     least a diverting preload does (connect to the proxy, Lunar's lines written into each
#     request; no parsing, no failover), and the parsing floor, the same built with
#     -DFLOOR_PARSE: it also parses every request head and follows every answer with
#     Debian's C HTTP parser, the parsing the contract asks of the library (no copies for a
#     replay, no failover); a has one more: the parsing floor running $FLOOR_JUMPS taken
#     jumps more per request (-DFLOOR_JUMPS), whose user CPU over the parsing floor's says
#     what one taken branch site costs here (the instruction part's branch-site rows);
#  p  the same keep-alive arms at -t1 -c1 (one request at a time: latency, p99);
#  b  an untracked port (:8080) straight to nginx, wrk with and without the library;
#  g  nginx itself under the preload (LUNAR_PROXY_HOST set) vs the same nginx without it,
#     wrk (no library) to each;
#  e  https: library (wrk's OpenSSL session virtual, plaintext to HAProxy with
#     x-lunar-scheme: https, HAProxy TLS to nginx, verified with the lab CA) vs direct mode
#     (x-lunar-scheme: https by hand, the same TLS work behind HAProxy) vs wrk's own TLS
#     straight to nginx (no library, no proxy);
#  t  TLS to the proxy, keep-alive: library (LUNAR_PROXY_SUPPORT_TLS=1; wrk -> http://
#     api.example.test/, diverted over the library's TLS session to HAProxy's TLS traffic
#     port 8400) vs direct mode over TLS (wrk's own TLS to https://proxy.lunar.test:8400/
#     with the x-lunar-* headers by hand).
# Appends wrk.LABEL.{rps,lat,p99,err,cpu,hap,rss} samples to $SAMPLES (lat/p99 ms, cpu
# wrk's user+sys µs per request, hap HAProxy log lines per request, rss wrk's max RSS KiB).
WRK=(wrk "-t$THREADS" "-c$CONNS" "-d${DUR}s" --latency)
WRKF=(wrk "-t$THREADS" "-c$CONNS" "-d${FINE_DUR}s" --latency)
WRK1F=(wrk -t1 -c1 "-d${FINE_DUR}s" --latency)
CLOSE_H=(-H 'Connection: close')

# Runs a command and prints the CPU time (user+sys, and user alone) it used and its peak
# memory (max RSS), from wait4's rusage: wrk's CPU per request shows the library's cost even
# when the 2 cores are shared with HAProxy and nginx (throughput alone is bounded by all
# three); its user time is where the library's code runs (the kernel's TCP work, the same
# system calls in every arm, is in sys).
CPU_WRAP='import os, subprocess, sys
p = subprocess.Popen(sys.argv[1:])
_, _, ru = os.wait4(p.pid, 0)
sys.stdout.flush()
print("CPU_SECONDS %.6f" % (ru.ru_utime + ru.ru_stime))
print("USER_SECONDS %.6f" % ru.ru_utime)
print("MAXRSS_KB %d" % ru.ru_maxrss)'

# run_wrk LABEL ROUND CMD...
run_wrk() {
	local label="$1" round="$2"
	shift 2
	local out="$TMP/wrk-$label-$round.txt" h0
	h0=$(hap_lines)
	in_ns "$PY" -c "$CPU_WRAP" "$@" >"$out" 2>&1 || true
	sleep 0.2 # HAProxy logs a request when it ends
	awk -v label="$label" -v r="$round" -v hap="$(($(hap_lines) - h0))" '
		function ms(v) {
			if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
			if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
			if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
			return v + 0
		}
		/^ +Latency / && !lat { lat = ms($2) }
		/^ +99%/ { p99 = ms($2) }
		/Requests\/sec:/ { rps = $2 }
		/Socket errors:/ { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
		/Non-2xx or 3xx responses:/ { err += $5 }
		/ requests in / { reqs = $1 }
		/^CPU_SECONDS / { cpu = $2 }
		/^USER_SECONDS / { usr = $2 }
		/^MAXRSS_KB / { rss = $2 }
		END {
			k = "wrk." label "."
			printf "%srps\t%d\t%s\n", k, r, (rps == "" ? 0 : rps)
			printf "%slat\t%d\t%.4f\n%sp99\t%d\t%.4f\n", k, r, lat, k, r, p99
			printf "%serr\t%d\t%d\n", k, r, err + (reqs > 0 ? 0 : 1)
			printf "%scpu\t%d\t%.3f\n", k, r, (reqs > 0 ? cpu * 1e6 / reqs : 0)
			printf "%susr\t%d\t%.3f\n", k, r, (reqs > 0 ? usr * 1e6 / reqs : 0)
			printf "%shap\t%d\t%.3f\n", k, r, (reqs > 0 ? hap / reqs : 0)
			printf "%srss\t%d\t%d\n", k, r, rss
		}
	' "$out" >>"$SAMPLES"
	say "  $(awk -F'\t' -v l="wrk.$label." -v r="$round" 'index($1, l) == 1 && $2 == r {
		k = substr($1, length(l) + 1); v[k] = $3 }
		END { printf "%-9s %9.0f req/s  avg %.3f ms  p99 %.3f ms  wrk cpu %.2f us/req  errors %d  haproxy lines/req %.2f  rss %d KiB",
			substr(l, 5, length(l) - 5), v["rps"], v["lat"], v["p99"], v["cpu"], v["err"], v["hap"], v["rss"] }' "$SAMPLES")"
}

# arms ROUND LABEL_A CMD_A... -- LABEL_B CMD_B... [-- LABEL CMD...]...: every arm once,
# the order rotating from one round to the next.
arms() {
	local round="$1" k
	shift
	local -a labels=() cmds=() cmd=()
	while (($#)); do
		labels+=("$1")
		shift
		cmd=()
		while (($#)) && [[ "$1" != -- ]]; do cmd+=("$1"); shift; done
		(($#)) && shift
		cmds+=("$(printf '%q ' "${cmd[@]}")")
	done
	for k in "${!labels[@]}"; do
		local at=$(((round - 1 + k) % ${#labels[@]}))
		eval "run_wrk \"\${labels[$at]}\" \"\$round\" ${cmds[$at]}"
	done
}

# pair ROUND LABEL_A CMD_A... -- LABEL_B CMD_B...: both, A first in odd rounds.
pair() {
	local round="$1" la="$2" lb i
	shift 2
	local -a a=() b=()
	while [[ "$1" != -- ]]; do a+=("$1"); shift; done
	shift
	lb="$1"
	shift
	b=("$@")
	if ((round % 2)); then
		run_wrk "$la" "$round" "${a[@]}"; run_wrk "$lb" "$round" "${b[@]}"
	else
		run_wrk "$lb" "$round" "${b[@]}"; run_wrk "$la" "$round" "${a[@]}"
	fi
}

hap_before=$(hap_lines)
say "bench: wrk -t$THREADS -c$CONNS (and -t1 -c1), the rows with a target in $FINE_REPS rounds of ${FINE_DUR}s, https in $REPS rounds of ${DUR}s (pairs alternating, more arms rotating)"
for i in $(seq "$FINE_REPS"); do
	say " round $i"
	arms "$i" a_lib "${LIBENV[@]}" "${WRKF[@]}" http://api.example.test/ \
		-- a_direct "${WRKF[@]}" "${DIRECT_H[@]}" http://proxy.lunar.test:8000/ \
		-- a_floor "${FLOORENV[@]}" "${WRKF[@]}" http://api.example.test/ \
		-- a_parse "${PARSEENV[@]}" "${WRKF[@]}" http://api.example.test/ \
		-- a_jumps "${JUMPSENV[@]}" "${WRKF[@]}" http://api.example.test/
	arms "$i" c_lib "${LIBENV[@]}" "${WRKF[@]}" "${CLOSE_H[@]}" http://api.example.test/ \
		-- c_direct "${WRKF[@]}" "${CLOSE_H[@]}" "${DIRECT_H[@]}" http://proxy.lunar.test:8000/ \
		-- c_floor "${FLOORENV[@]}" "${WRKF[@]}" "${CLOSE_H[@]}" http://api.example.test/ \
		-- c_parse "${PARSEENV[@]}" "${WRKF[@]}" "${CLOSE_H[@]}" http://api.example.test/
	arms "$i" p_lib "${LIBENV[@]}" "${WRK1F[@]}" http://api.example.test/ \
		-- p_direct "${WRK1F[@]}" "${DIRECT_H[@]}" http://proxy.lunar.test:8000/ \
		-- p_floor "${FLOORENV[@]}" "${WRK1F[@]}" http://api.example.test/ \
		-- p_parse "${PARSEENV[@]}" "${WRK1F[@]}" http://api.example.test/
	pair "$i" b_lib "${LIBENV[@]}" "${WRKF[@]}" http://api.example.test:8080/ \
		-- b_nolib "${WRKF[@]}" http://api.example.test:8080/
	pair "$i" g_lib "${WRKF[@]}" "http://$API_IP:$NGINX_LIB_PORT/" \
		-- g_nolib "${WRKF[@]}" "http://$API_IP:$NGINX_NOLIB_PORT/"
done
for i in $(seq "$REPS"); do
	say " https round $i"
	pair "$i" t_lib "${LIBENV_TLS[@]}" "${WRK[@]}" http://api.example.test/ \
		-- t_direct "${WRK[@]}" "${DIRECT_H[@]}" https://proxy.lunar.test:8400/
	for k in 0 1 2; do
		case $(((i - 1 + k) % 3)) in
		0) run_wrk e_lib "$i" "${LIBENV[@]}" "${WRK[@]}" https://api.example.test/ ;;
		1) run_wrk e_direct "$i" "${WRK[@]}" "${DIRECT_TLS_H[@]}" http://proxy.lunar.test:8000/ ;;
		2) run_wrk e_origin "$i" "${WRK[@]}" https://api.example.test/ ;;
		esac
	done
done
printf 'wrk.hap_lines\t0\t%d\n' "$(($(hap_lines) - hap_before))" >>"$SAMPLES"
