# make bench, sourced by scripts/bench.sh: user-space instructions the library adds on
# what it does not track, counted by callgrind (no system call time, no noise):
#  fast    write/recv/close on fds never tracked (c-tests/bench/fastpath.c), per call;
#  pair    a send+recv pair with real data on an untracked socketpair
#          (c-tests/bench/sendrecv.c), per pair;
#  ssl     SSL_pending/SSL_get_error/SSL_get_verify_result on a session left alone
#          (c-tests/bench/ssl_fastpath.c), per call;
#  request a diverted keep-alive request of an event-loop client (c-tests
#          keepalive_loop_epoll: send, recv on EAGAIN in epoll), the whole process's
#          instructions per request through HAProxy, library vs direct mode (the same
#          client with Lunar's headers written by itself): the CPU a request costs the
#          program, without the noise of wrk's shared cores;
#  close   a request on a new connection (wrk -t1 -c4, Connection: close), the whole
#          process's instructions per request, library vs direct mode;
#  ka_lib, ka_floor, ka_parse
#          keep-alive requests in wrk (-t1 -c4), the whole process's instructions and
#          taken branch sites (scripts/bench/branch_sites.py) per request over direct
#          mode's: the library, the C floor, the C floor parsing;
#  py_session, py_get
#          Python requests over https (requests.Session; requests.get, a new connection
#          each), the whole process's instructions per request, library vs the C floor's
#          virtual session (c-tests/bench/floor_divert.c), and the 64-byte lines of the
#          preloaded object's code each request runs (scripts/bench/code_lines.py);
#  pass    wrk -t1 -c4 keep-alive to nginx's :8080 (a port the library does not
#          intercept), the whole process's instructions per request with the library
#          (LUNAR_PROXY_HOST set) and without: the pass-through cost without the noise of
#          req/s on shared cores.
# Each program runs with N and with 0 iterations, with and without LD_PRELOAD: the
# program's own set-up and the library's load cancel out. Appends
# insn.KIND.{lib,base} (instructions per call or pair) and insn.load (instructions the
# library's load adds) to $SAMPLES.
if command -v valgrind >/dev/null; then
	say "bench: callgrind (instructions on untracked fds and sessions)"
	mkdir -p "$REPO/c-tests/bin"
	insn_count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 | awk '/Collected/ {print $4}'; }
	insn_measure() { # kind program calls-per-iteration [label library]
		local kind="$1" prog="$2" per="$3" label="${4:-lib}" lib="${5:-$LIB}" n=100000 b0 b w0 w
		b0=$(insn_count "$prog" 0); b=$(insn_count "$prog" $n)
		w0=$(LD_PRELOAD="$lib" insn_count "$prog" 0); w=$(LD_PRELOAD="$lib" insn_count "$prog" $n)
		awk -v k="$kind" -v l="$label" -v b0="$b0" -v b="$b" -v w0="$w0" -v w="$w" -v n=$((n * per)) 'BEGIN {
			printf "insn.%s.%s\t1\t%.3f\ninsn.%s.base\t1\t%.3f\n", k, l, (w - w0) / n, k, (b - b0) / n
			if (k == "fast" && l == "lib") printf "insn.load\t1\t%d\n", w0 - b0 }' >>"$SAMPLES"
	}
	# A /bin/true start, its dynamic linker's work included: the library (inert) against
	# an empty shared object and the C floor preload (bench.sh built both).
	for v in lib empty floor; do
		case $v in lib) so="$LIB" ;; empty) so="$EMPTY" ;; floor) so="$FLOOR" ;; esac
		printf 'insn.start.%s\t1\t%s\n' "$v" "$(LD_PRELOAD="$so" insn_count /bin/true)" >>"$SAMPLES"
	done
	# The language-hook check at load (src/inject): what a program other than node/java
	# pays for it, counted inside the constructor of a /bin/true start.
	LD_PRELOAD="$LIB" valgrind --tool=callgrind --callgrind-out-file="$TMP/at_load.cg" /bin/true >/dev/null 2>&1
	callgrind_annotate --inclusive=yes --threshold=100 "$TMP/at_load.cg" 2>/dev/null |
		awk '/inject::at_load/ {gsub(",", "", $1); printf "insn.at_load\t1\t%d\n", $1}' >>"$SAMPLES"
	gcc -O2 -o "$REPO/c-tests/bin/fastpath" "$REPO/c-tests/bench/fastpath.c"
	insn_measure fast "$REPO/c-tests/bin/fastpath" 3
	gcc -O2 -o "$REPO/c-tests/bin/sendrecv" "$REPO/c-tests/bench/sendrecv.c"
	insn_measure pair "$REPO/c-tests/bin/sendrecv" 1
	# The same pairs in a process that tracks another connection (a diverted one, kept
	# open): the hooks' first load no longer answers alone.
	b0=$(in_ns valgrind --tool=callgrind --callgrind-out-file=/dev/null "$REPO/c-tests/bin/sendrecv" 0 api.example.test 80 2>&1 | awk '/Collected/ {print $4}')
	b=$(in_ns valgrind --tool=callgrind --callgrind-out-file=/dev/null "$REPO/c-tests/bin/sendrecv" 100000 api.example.test 80 2>&1 | awk '/Collected/ {print $4}')
	w0=$(in_ns "${LIBENV[@]}" valgrind --tool=callgrind --callgrind-out-file=/dev/null "$REPO/c-tests/bin/sendrecv" 0 api.example.test 80 2>&1 | awk '/Collected/ {print $4}')
	w=$(in_ns "${LIBENV[@]}" valgrind --tool=callgrind --callgrind-out-file=/dev/null "$REPO/c-tests/bin/sendrecv" 100000 api.example.test 80 2>&1 | awk '/Collected/ {print $4}')
	if [[ -n "$b0" && -n "$b" && -n "$w0" && -n "$w" ]]; then
		awk -v b0="$b0" -v b="$b" -v w0="$w0" -v w="$w" 'BEGIN {
			printf "insn.pair_busy.lib\t1\t%.3f\ninsn.pair_busy.base\t1\t%.3f\n", (w - w0) / 100000, (b - b0) / 100000 }' >>"$SAMPLES"
	fi
	# The floor: a C preload doing the same check on the same calls.
	gcc -O2 -fPIC -fvisibility=hidden -shared -o "$REPO/c-tests/bin/floor_preload.so" \
		"$REPO/c-tests/bench/floor_preload.c" -ldl
	insn_measure fast "$REPO/c-tests/bin/fastpath" 3 floor "$REPO/c-tests/bin/floor_preload.so"
	insn_measure pair "$REPO/c-tests/bin/sendrecv" 1 floor "$REPO/c-tests/bin/floor_preload.so"
	"$REPO/c-tests/build.sh" >/dev/null
	insn_requests() { # count host port header-lines [env...]: instructions of `count` requests
		local count=$1 host=$2 port=$3 headers=$4 steps=() i
		shift 4
		for ((i = 0; i < count; i++)); do steps+=("/$headers"); done
		in_ns "$@" valgrind --tool=callgrind --callgrind-out-file=/dev/null \
			"$REPO/c-tests/bin/keepalive_loop_epoll" "$host" "$port" 0 "${steps[@]}" 2>&1 >/dev/null |
			awk '/Collected/ {print $4}' || true
	}
	direct_headers="|x-lunar-host: api.example.test|x-lunar-scheme: http|x-lunar-interceptor: lunar-direct/0"
	direct_headers+="|x-lunar-req-id: 00000000-0000-4000-8000-000000000000"
	w0=$(insn_requests 20 api.example.test 80 "" "${LIBENV[@]}")
	w=$(insn_requests 220 api.example.test 80 "" "${LIBENV[@]}")
	b0=$(insn_requests 20 proxy.lunar.test 8000 "$direct_headers")
	b=$(insn_requests 220 proxy.lunar.test 8000 "$direct_headers")
	if [[ -n "$w0" && -n "$w" && -n "$b0" && -n "$b" ]]; then
		awk -v b0="$b0" -v b="$b" -v w0="$w0" -v w="$w" 'BEGIN {
			printf "insn.request.lib\t1\t%.1f\ninsn.request.base\t1\t%.1f\n", (w - w0) / 200, (b - b0) / 200 }' >>"$SAMPLES"
	else
		say "bench: the keep-alive client under callgrind failed: no per-request instruction row"
	fi
	# wrk -t1 -c4 under callgrind, the whole process per request. Runs of 1 s and 3 s:
	# (I3 - I1) / (N3 - N1), so that start-up and the library's set-up cancel out. With a
	# file to write, callgrind also records every jump and call for branch_sites.py.
	insn_wrk() { # seconds url [wrk args...] [-- env...]: "instructions requests"
		local secs=$1 url=$2 args=() envs=() record=(--callgrind-out-file=/dev/null)
		shift 2
		while [[ $# -gt 0 && "$1" != "--" ]]; do args+=("$1"); shift; done
		[[ $# -gt 0 ]] && shift && envs=("$@")
		[[ -n "${RECORD:-}" ]] && record=(--callgrind-out-file="$RECORD" --dump-instr=yes --collect-jumps=yes)
		in_ns "${envs[@]}" valgrind --tool=callgrind "${record[@]}" \
			wrk -t1 -c4 "-d${secs}s" "${args[@]}" "$url" 2>&1 | tr -d , |
			awk '/requests in/ {n = $1} /Collected :/ {i = $NF}
				END {if (n > 0 && i > 0) print i, n}' || true
	}
	insn_wrk_rows() { # kind lib-run(1 s, 3 s) base-run(1 s, 3 s): insn.KIND.{lib,base}
		if [[ -n "$2" && -n "$3" && -n "$4" && -n "$5" ]]; then
			awk -v k="$1" -v l1="$2" -v l3="$3" -v d1="$4" -v d3="$5" 'BEGIN {
				split(l1, a); split(l3, b); split(d1, c); split(d3, d)
				if (b[2] > a[2] && d[2] > c[2])
					printf "insn.%s.lib\t1\t%.1f\ninsn.%s.base\t1\t%.1f\n", k,
						(b[1] - a[1]) / (b[2] - a[2]), k, (d[1] - c[1]) / (d[2] - c[2]) }' >>"$SAMPLES"
		else
			say "bench: wrk under callgrind failed: no $1 instruction row"
		fi
	}
	branch_sites() { # kind run(1 s) run(3 s), recorded in $TMP/sites-KIND-{1,3}.cg
		[[ -n "$2" && -n "$3" ]] || return 0
		local n
		n=$(python3 "$BENCH/branch_sites.py" "$TMP/sites-$1-1.cg" "${2#* }" \
			"$TMP/sites-$1-3.cg" "${3#* }") &&
			printf 'sites.%s\t1\t%s\n' "$1" "$n" >>"$SAMPLES"
		rm -f "$TMP/sites-$1-1.cg" "$TMP/sites-$1-3.cg"
	}
	# A new connection per request: Connection: close, library vs direct mode.
	CLOSE=(-H 'Connection: close')
	insn_wrk_rows close \
		"$(insn_wrk 1 http://api.example.test/ "${CLOSE[@]}" -- "${LIBENV[@]}")" \
		"$(insn_wrk 3 http://api.example.test/ "${CLOSE[@]}" -- "${LIBENV[@]}")" \
		"$(insn_wrk 1 http://proxy.lunar.test:8000/ "${CLOSE[@]}" "${DIRECT_H[@]}")" \
		"$(insn_wrk 3 http://proxy.lunar.test:8000/ "${CLOSE[@]}" "${DIRECT_H[@]}")"
	# Keep-alive, per request over direct mode's: the library, the C floor, and the C floor
	# parsing. Instructions, and the taken branch sites (branch_sites.py): what separates
	# the library's time from the parsing floor's, which runs as many instructions.
	ka_direct1=$(RECORD="$TMP/sites-direct-1.cg" insn_wrk 1 http://proxy.lunar.test:8000/ "${DIRECT_H[@]}")
	ka_direct3=$(RECORD="$TMP/sites-direct-3.cg" insn_wrk 3 http://proxy.lunar.test:8000/ "${DIRECT_H[@]}")
	branch_sites direct "$ka_direct1" "$ka_direct3"
	for arm in lib floor parse; do
		case $arm in
		lib) envs=("${LIBENV[@]}") ;;
		floor) envs=("${FLOORENV[@]}") ;;
		parse) envs=("${PARSEENV[@]}") ;;
		esac
		ka1=$(RECORD="$TMP/sites-ka_$arm-1.cg" insn_wrk 1 http://api.example.test/ -- "${envs[@]}")
		ka3=$(RECORD="$TMP/sites-ka_$arm-3.cg" insn_wrk 3 http://api.example.test/ -- "${envs[@]}")
		insn_wrk_rows "ka_$arm" "$ka1" "$ka3" "$ka_direct1" "$ka_direct3"
		branch_sites "ka_$arm" "$ka1" "$ka3"
	done
	# A port the library does not intercept, with the library (and a proxy) and without.
	insn_wrk_rows pass \
		"$(insn_wrk 1 http://api.example.test:8080/ -- "${LIBENV[@]}")" \
		"$(insn_wrk 3 http://api.example.test:8080/ -- "${LIBENV[@]}")" \
		"$(insn_wrk 1 http://api.example.test:8080/)" \
		"$(insn_wrk 3 http://api.example.test:8080/)"
	# Python https (the rows Python's own noise hides, +-30 us between runs): the whole
	# process's instructions per request through the library and through the C floor's
	# virtual session, requests.Session and requests.get (client.py, no warm-up); runs of
	# 10 and 40 requests, so that start-up and set-up cancel out.
	insn_python() { # mode count record env...: instructions of `count` https requests
		local mode=$1 count=$2 record=$3
		shift 3
		in_ns env -i PATH=/usr/bin:/bin LANG=C.UTF-8 PYTHONHASHSEED=0 "$@" valgrind --tool=callgrind \
			--dump-instr=yes --callgrind-out-file="$record" /usr/bin/python3 "$BENCH/client.py" \
			"$mode" https://api.example.test/ "$count" 0 '{}' "$CA" 2>&1 >/dev/null |
			awk '/Collected/ {print $4}' || true
	}
	FLOOR_PY=("${FLOORENV[@]}" "FLOOR_PEER_CERT=$LABDIR/tls/lab.pem")
	for mode in session get; do
		w0=$(insn_python "$mode" 10 "$TMP/py-lib-10.cg" "${LIBENV[@]}")
		w=$(insn_python "$mode" 40 "$TMP/py-lib-40.cg" "${LIBENV[@]}")
		f0=$(insn_python "$mode" 10 "$TMP/py-floor-10.cg" "${FLOOR_PY[@]}")
		f=$(insn_python "$mode" 40 "$TMP/py-floor-40.cg" "${FLOOR_PY[@]}")
		if [[ -n "$w0" && -n "$w" && -n "$f0" && -n "$f" ]]; then
			awk -v k="py_$mode" -v w0="$w0" -v w="$w" -v f0="$f0" -v f="$f" 'BEGIN {
				printf "insn.%s.lib\t1\t%.1f\ninsn.%s.floor\t1\t%.1f\n", k, (w - w0) / 30, k, (f - f0) / 30 }' >>"$SAMPLES"
			for arm in lib floor; do
				case $arm in lib) so="$LIB" ;; floor) so="$FLOOR_DIVERT" ;; esac
				read -r lines run < <("$PY" "$BENCH/code_lines.py" "$TMP/py-$arm-10.cg" 10 \
					"$TMP/py-$arm-40.cg" 40 "$(basename "$so")")
				printf "lines.py_%s.%s\t1\t%s\nlinesinsn.py_%s.%s\t1\t%s\n" \
					"$mode" "$arm" "$lines" "$mode" "$arm" "$run" >>"$SAMPLES"
			done
		else
			say "bench: Python under callgrind failed: no py_$mode instruction row"
		fi
		rm -f "$TMP"/py-*.cg
	done
	if gcc -O2 -o "$REPO/c-tests/bin/ssl_fastpath" "$REPO/c-tests/bench/ssl_fastpath.c" -lssl -lcrypto 2>/dev/null; then
		insn_measure ssl "$REPO/c-tests/bin/ssl_fastpath" 3
	fi
else
	say "bench: valgrind missing: no instruction counts (make deps)"
fi
