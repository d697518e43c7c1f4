"""make bench: the table, from the samples the bench's parts wrote.

    report.py SAMPLES LIB DUR THREADS CONNS REPS RUNS START_ROUNDS ROUNDS PY_REQS
              CURL_REQS SYSCALL_REQS ELAPSED_S FINE_DUR FINE_REPS

Each row: measure, library, baseline, and either the ratio (library / baseline) or the
difference (library - baseline, signed). The library and baseline columns are medians
over rounds; the ratio or difference is the median of the per-round ratios or
differences (each round measures both, interleaved).
"""
import math
import platform
import statistics
import sys
import time

(samples, lib, dur, threads, conns, reps, runs, start_rounds, rounds, py_reqs, curl_reqs,
 syscall_reqs, elapsed, fine_dur, fine_reps) = sys.argv[1:]

S = {}  # key -> {round: value}
for line in open(samples):
    key, rnd, value = line.rstrip("\n").split("\t")
    S.setdefault(key, {})[int(rnd)] = float(value)

NAN = float("nan")
W = 60


def med(key):
    v = list(S.get(key, {}).values())
    return statistics.median(v) if v else NAN


def per_round(a, b, f):
    ra, rb = S.get(a, {}), S.get(b, {})
    v = [f(ra[r], rb[r]) for r in ra if r in rb]
    return [x for x in v if x == x]


def ratios(a, b):
    return per_round(a, b, lambda x, y: x / y if y else NAN)


def diffs(a, b):
    return per_round(a, b, lambda x, y: x - y)


def median_interval(values):
    """Where the median of the rounds' population lies with at least 95% confidence: the
    k-th smallest and k-th largest value, k the largest with P(Binomial(n, 1/2) < k) <= 2.5%
    (order statistics: no assumption about the noise's distribution). None below 6 rounds."""
    v, n = sorted(values), len(values)
    k, below = 0, 0.0
    while below + math.comb(n, k) / 2 ** n <= 0.025:
        below += math.comb(n, k) / 2 ** n
        k += 1
    return (v[k - 1], v[n - k]) if k else None


def row(name, a, b, kind="ratio", prec=1):
    fmt = "%12.{0}f".format(prec)
    values = diffs(a, b) if kind == "diff" else ratios(a, b)
    middle = statistics.median(values) if values else NAN
    shown = "%+.{0}f".format(max(prec, 1)) if kind == "diff" else "%.3f"
    last = "%10s" % (shown % middle)
    interval = median_interval(values)
    if interval:
        last += "  (%s..%s)" % (shown % interval[0], shown % interval[1])
    print("%-*s %s %s %s" % (W, name, fmt % med(a), fmt % med(b), last))


def steady_state_rows(many_row, once_row):
    """Below a curl row of N requests on one connection: per round and arm, its time less
    a one-request run's (the process, its set-up, Lunar's handshake with TLS to the proxy)
    over the N - 1 requests left; then the one-request run itself."""
    n = int(curl_reqs)
    if "blk.%s.lib.us" % once_row not in S or n <= 1:
        return
    steady = once_row + "_steady"
    for arm in ("lib", "direct"):
        many, once = S["blk.%s.%s.us" % (many_row, arm)], S["blk.%s.%s.us" % (once_row, arm)]
        S["blk.%s.%s.us" % (steady, arm)] = {
            r: (n * many[r] - once[r]) / (n - 1) for r in many if r in once}
    row("    each request after the first (steady state)", "blk.%s.lib.us" % steady,
        "blk.%s.direct.us" % steady, "diff")
    row("    a one-URL process: the once-per-process set-up", "blk.%s.lib.us" % once_row,
        "blk.%s.direct.us" % once_row, "diff", 0)


def head(text):
    print()
    print(text)


print("liblunar_intercept benchmark  %s  %s  (make bench took %s s)"
      % (time.strftime("%Y-%m-%d %H:%M:%S"), platform.node(), elapsed))
print("library: %s" % lib)
print("ratio = library / baseline (throughput: 1.0 = no cost; latency, CPU: higher = costlier);"
      " a signed figure = library - baseline.")
print("library/baseline columns: medians over rounds; ratio or difference: median of the"
      " per-round ones (interleaved);")
print("(lo..hi) after it: where that median lies with 95% confidence, from the rounds' order"
      " statistics (rows of 6 rounds or more).")
print()
print("%-*s %12s %12s %10s" % (W, "measure", "library", "baseline", "ratio/diff"))
print("-" * (W + 37))

head("Blocking clients, one request at a time: us per request, library vs direct mode (the"
     " proxy by name), %s rounds; Python: the median of each run's %s requests (mean below),"
     " a row's arms taking turns request by request; curl: a run's time / %s requests"
     % (rounds, py_reqs, curl_reqs))
for r, name in (("py_session_http", "Python requests.Session keep-alive, http"),
                ("py_session_https", "Python requests.Session keep-alive, https (virtual session)"),
                ("py_get_http", "Python requests.get (new connection), http"),
                ("py_get_https", "Python requests.get (new connection), https")):
    row(name, "blk.%s.lib.us_median" % r, "blk.%s.direct.us_median" % r, "diff")
    row("    mean of the run's requests", "blk.%s.lib.us" % r, "blk.%s.direct.us" % r, "diff")
    if "blk.%s.tlssetup.us" % r in S:
        row("    vs direct mode doing the client's own TLS set-up", "blk.%s.lib.us_median" % r,
            "blk.%s.tlssetup.us_median" % r, "diff")
        row("        mean of the run's requests", "blk.%s.lib.us" % r, "blk.%s.tlssetup.us" % r, "diff")
    if "blk.%s.floor.us" % r in S:
        row("    vs the C floor's virtual session (floor_divert.c)", "blk.%s.lib.us_median" % r,
            "blk.%s.floor.us_median" % r, "diff")
        row("        mean of the run's requests", "blk.%s.lib.us" % r, "blk.%s.floor.us" % r, "diff")
        row("    the C floor itself vs direct mode doing the client's own TLS set-up",
            "blk.%s.floor.us_median" % r, "blk.%s.tlssetup.us_median" % r, "diff")
row("curl, %s URLs on one connection, one process" % curl_reqs, "blk.curl_keepalive.lib.us",
    "blk.curl_keepalive.direct.us", "diff")
steady_state_rows("curl_keepalive", "curl_once")
row("curl, a process per request", "blk.curl_process.lib.us", "blk.curl_process.direct.us", "diff")
row("    of which the preload (untracked :8080, library vs none)", "blk.curl_process_untracked.lib.us",
    "blk.curl_process_untracked.direct.us", "diff")
if "blk.py_session_tlslink.lib.us" in S:
    row("TLS to the proxy: Python Session keep-alive, http (vs its own TLS to the proxy)",
        "blk.py_session_tlslink.lib.us_median", "blk.py_session_tlslink.direct.us_median", "diff")
    row("    mean of the run's requests", "blk.py_session_tlslink.lib.us",
        "blk.py_session_tlslink.direct.us", "diff")
    row("TLS to the proxy: curl, %s URLs on one connection (vs curl --cacert https://proxy)"
        % curl_reqs, "blk.curl_keepalive_tlslink.lib.us", "blk.curl_keepalive_tlslink.direct.us", "diff")
    steady_state_rows("curl_keepalive_tlslink", "curl_once_tlslink")
if "blk.node_https_keepalive.lib.us" in S:
    row("Node https keep-alive, through the Node hook (vs Node's http to the proxy by hand)",
        "blk.node_https_keepalive.lib.us", "blk.node_https_keepalive.direct.us", "diff")
    row("Node start-up, `node -e 0`: the library and its Node hook (vs no preload)",
        "blk.node_start.lib.us", "blk.node_start.direct.us", "diff", 0)
if "blk.java_https_keepalive.lib.us" in S:
    row("Java HttpClient https keep-alive, through the Java hook (vs http to the proxy by hand)",
        "blk.java_https_keepalive.lib.us", "blk.java_https_keepalive.direct.us", "diff")
    row("Java start-up, `java -version`: the library and its hook (vs no preload)",
        "blk.java_start.lib.us", "blk.java_start.direct.us", "diff", 0)

head("Throughput: wrk, library vs direct mode through the same HAProxy and nginx, %s rounds"
     " of %ss (https: %s rounds of %ss)" % (fine_reps, fine_dur, reps, dur))


def wrk_rows(title, a, b, more=True):
    row(title, "wrk.%s.rps" % a, "wrk.%s.rps" % b, "ratio", 0)
    row("    avg latency ms", "wrk.%s.lat" % a, "wrk.%s.lat" % b, "ratio", 3)
    row("    p99 latency ms", "wrk.%s.p99" % a, "wrk.%s.p99" % b, "ratio", 3)
    row("    wrk CPU us per request (user+sys)", "wrk.%s.cpu" % a, "wrk.%s.cpu" % b, "ratio", 2)
    row("    wrk user CPU us per request (the preload's code runs here)", "wrk.%s.usr" % a,
        "wrk.%s.usr" % b, "diff", 2)
    if more:
        row("    wrk peak RSS KiB (added)", "wrk.%s.rss" % a, "wrk.%s.rss" % b, "diff", 0)


wrk_rows("req/s keep-alive, -t%s -c%s" % (threads, conns), "a_lib", "a_direct")
wrk_rows("req/s Connection: close, -t%s -c%s" % (threads, conns), "c_lib", "c_direct")
if "wrk.a_floor.rps" in S:
    wrk_rows("req/s keep-alive, C floor preload (floor_divert.c) vs direct mode", "a_floor", "a_direct",
             more=False)
    wrk_rows("req/s Connection: close, C floor preload vs direct mode", "c_floor", "c_direct",
             more=False)
if "wrk.a_parse.rps" in S:
    wrk_rows("req/s keep-alive, C floor parsing heads and answers (http-parser) vs direct mode",
             "a_parse", "a_direct", more=False)
    wrk_rows("req/s Connection: close, C floor parsing vs direct mode", "c_parse", "c_direct",
             more=False)
if "wrk.a_jumps.usr" in S and "floor_jumps" in S:
    jumps = med("floor_jumps")
    per_site = [d * 1000 / jumps for d in diffs("wrk.a_jumps.usr", "wrk.a_parse.usr")]
    interval = median_interval(per_site)
    print("%-*s %12s %12s %10s%s" % (
        W, "    user CPU ns per taken branch site (%d jumps more per request)" % jumps, "", "",
        "%+.1f" % statistics.median(per_site) if per_site else "nan",
        "  (%+.1f..%+.1f)" % interval if interval else ""))
wrk_rows("req/s keep-alive, -t1 -c1", "p_lib", "p_direct", more=False)
if "wrk.p_floor.rps" in S:
    wrk_rows("req/s keep-alive, -t1 -c1, C floor preload vs direct mode", "p_floor", "p_direct",
             more=False)
if "wrk.p_parse.rps" in S:
    wrk_rows("req/s keep-alive, -t1 -c1, C floor parsing vs direct mode", "p_parse", "p_direct",
             more=False)
wrk_rows("req/s https keep-alive vs direct mode (both via HAProxy)", "e_lib", "e_direct")
wrk_rows("req/s https keep-alive vs straight to origin (real TLS)", "e_lib", "e_origin")
if "wrk.t_lib.rps" in S:
    wrk_rows("req/s keep-alive, TLS to the proxy vs wrk's own TLS to it", "t_lib", "t_direct")

head("System calls per request: strace -f -c, curl, %s keep-alive requests on one connection,"
     " library vs direct mode" % syscall_reqs)
row("system calls per keep-alive request", "sys.lib.per_req", "sys.direct.per_req", "diff", 2)
row("system calls of a whole one-request curl process", "sys.lib.one", "sys.direct.one", "diff", 0)

head("Start-up: /bin/true, %s starts per variant in %s rounds, the variants taking turns start by"
     " start; CPU time and page faults: wait4 rusage" % (runs, start_rounds))
row("us per start, library (inert) vs empty .so", "start.lib.us", "start.empty.us", "diff")
row("median us per start, library (inert) vs empty .so", "start.lib.us_median", "start.empty.us_median", "diff")
row("CPU us per start, library (inert) vs empty .so", "start.lib.cpu_us", "start.empty.cpu_us", "diff")
row("page faults per start, library (inert) vs empty .so", "start.lib.faults", "start.empty.faults", "diff")
row("us per start, LUNAR_PROXY_HOST set vs empty .so", "start.lib_env.us", "start.empty.us", "diff")
row("us per start, library (inert) vs no preload", "start.lib.us", "start.none.us", "diff")
row("us per start, empty .so vs no preload", "start.empty.us", "start.none.us", "diff")
row("page faults per start, library (inert) vs no preload", "start.lib.faults", "start.none.faults", "diff")
if "start.floor.us" in S:
    row("us per start, C floor preload vs empty .so", "start.floor.us", "start.empty.us", "diff")
    row("median us per start, C floor preload vs empty .so", "start.floor.us_median",
        "start.empty.us_median", "diff")
    row("CPU us per start, C floor preload vs empty .so", "start.floor.cpu_us", "start.empty.cpu_us", "diff")
    row("page faults per start, C floor preload vs empty .so", "start.floor.faults", "start.empty.faults", "diff")
if "insn.start.lib" in S:
    row("instructions per start (callgrind), library (inert) vs empty .so", "insn.start.lib",
        "insn.start.empty", "diff", 0)
    if "insn.start.floor" in S:
        row("instructions per start (callgrind), C floor preload vs empty .so", "insn.start.floor",
            "insn.start.empty", "diff", 0)

head("Memory: smaps of the preloaded object's own mappings (file and .bss), KiB")
row("Rss in an inert process (sleep), library vs empty .so", "mem.lib.rss", "mem.empty.rss", "diff", 0)
row("Private_Dirty in an inert process, library vs empty .so", "mem.lib.dirty", "mem.empty.dirty", "diff", 0)
for scheme, name in (("http", "Rss after %s Python Session requests (library)" % py_reqs),
                     ("https", "Rss after %s Python Session https requests" % py_reqs)):
    print("%-*s %12.0f %12s %10s" % (W, name, med("blk.py_session_%s.lib.librss" % scheme), "", ""))
    print("%-*s %12.0f %12s %10s" % (W, "Private_Dirty after them",
                                     med("blk.py_session_%s.lib.libdirty" % scheme), "", ""))
for r, name in (("py_session", "requests.Session"), ("py_get", "requests.get")):
    row("peak RSS (VmHWM), Python %s http" % name, "blk.%s_http.lib.hwm" % r,
        "blk.%s_http.direct.hwm" % r, "diff", 0)
    lib_hwm = "blk.%s_https.lib.hwm" % r
    row("peak RSS (VmHWM), Python %s https" % name, lib_hwm, "blk.%s_https.direct.hwm" % r,
        "diff", 0)
    row("    vs direct mode doing the client's own TLS set-up", lib_hwm,
        "blk.%s_https.tlssetup.hwm" % r, "diff", 0)
    if "blk.%s_https.floor.hwm" % r in S:
        row("    vs the C floor's virtual session", lib_hwm, "blk.%s_https.floor.hwm" % r, "diff", 0)
row("peak RSS (max RSS), wrk keep-alive -t%s -c%s" % (threads, conns), "wrk.a_lib.rss",
    "wrk.a_direct.rss", "diff", 0)

head("Untracked sockets and sessions: instructions added (callgrind, user space), and"
     " pass-through throughput")
if "insn.fast.lib" in S:
    if "insn.pair.lib" in S:
        row("instructions per send+recv pair, untracked socketpair", "insn.pair.lib", "insn.pair.base",
            "diff")
        if "insn.pair.floor" in S:
            row("    the floor: a C preload doing the same check", "insn.pair.floor",
                "insn.pair.base", "diff")
        if "insn.pair_busy.lib" in S:
            row("    the same, in a process tracking another connection", "insn.pair_busy.lib",
                "insn.pair_busy.base", "diff")
    row("instructions per write/recv/close call, untracked fd", "insn.fast.lib", "insn.fast.base", "diff")
    if "insn.fast.floor" in S:
        row("    the floor: a C preload doing the same check", "insn.fast.floor", "insn.fast.base",
            "diff")
    if "insn.ssl.lib" in S:
        row("instructions per SSL_* call, session left alone", "insn.ssl.lib", "insn.ssl.base", "diff")
    print("%-*s %12.0f" % (W, "instructions the library's load adds (no LUNAR_* set)", med("insn.load")))
    if "insn.at_load" in S:
        print("%-*s %12.0f" % (W, "    of which the language-hook check (/bin/true start)", med("insn.at_load")))
    if "insn.request.lib" in S:
        row("instructions per diverted keep-alive request (C, epoll)",
            "insn.request.lib", "insn.request.base", "diff", 0)
    for arm, name in (("lib", "the library"), ("floor", "the C floor"),
                      ("parse", "the C floor parsing heads and answers")):
        if "insn.ka_%s.lib" % arm in S:
            row("instructions per keep-alive request in wrk -t1 -c4, %s vs direct mode" % name,
                "insn.ka_%s.lib" % arm, "insn.ka_%s.base" % arm, "diff", 0)
            if "sites.ka_%s" % arm in S and "sites.direct" in S:
                row("    taken branch sites per request (callgrind)",
                    "sites.ka_%s" % arm, "sites.direct", "diff", 0)
    if "insn.close.lib" in S:
        row("instructions per request on a new connection (wrk, Connection: close)",
            "insn.close.lib", "insn.close.base", "diff", 0)
    for mode, name in (("session", "requests.Session"), ("get", "requests.get (new connection)")):
        if "insn.py_%s.lib" % mode in S:
            row("instructions per Python https request, %s, vs the C floor's virtual session"
                % name, "insn.py_%s.lib" % mode, "insn.py_%s.floor" % mode, "diff", 0)
        if "lines.py_%s.lib" % mode in S:
            row("    64-byte lines of the preload's code run per request (distinct instructions"
                " below)", "lines.py_%s.lib" % mode, "lines.py_%s.floor" % mode, "diff", 0)
            row("        distinct instructions", "linesinsn.py_%s.lib" % mode,
                "linesinsn.py_%s.floor" % mode, "diff", 0)
else:
    print("(valgrind missing: no instruction counts)")
wrk_rows("req/s untracked port :8080, wrk with library vs without", "b_lib", "b_nolib", more=False)
if "insn.pass.lib" in S:
    row("    user-space instructions per request (callgrind, wrk -t1 -c4)", "insn.pass.lib",
        "insn.pass.base", "diff", 0)
row("req/s nginx under the preload vs without (wrk -t%s -c%s)" % (threads, conns), "wrk.g_lib.rps",
    "wrk.g_nolib.rps", "ratio", 0)
row("    avg latency ms", "wrk.g_lib.lat", "wrk.g_nolib.lat", "ratio", 3)

print()
labels = ("a_lib", "a_direct", "a_floor", "a_parse", "a_jumps", "c_lib", "c_direct", "c_floor",
          "c_parse", "p_lib", "p_direct", "p_floor", "p_parse", "e_lib", "e_direct", "t_lib",
          "t_direct", "e_origin", "b_lib", "b_nolib", "g_lib", "g_nolib")
print("wrk socket errors + non-2xx per arm (all rounds): "
      + ", ".join("%s %d" % (l, sum(S.get("wrk.%s.err" % l, {}).values())) for l in labels))
print("HAProxy log lines per request (1 = through the proxy, 0 = not): wrk "
      + ", ".join("%s %.2f" % (l, med("wrk.%s.hap" % l)) for l in labels))
blk = sorted(k for k in S if k.startswith("blk.") and k.endswith(".hap"))
print("  blocking clients (round 1): " + ", ".join("%s %.2f" % (k[4:-4], med(k)) for k in blk))
# The lab's Python origin answers a keep-alive request in ~45 ms; nginx in well under 1 ms,
# and Python's requests itself spends ~1 ms of CPU on one on a slow VM.
slow = [r for r in ("py_session_http", "py_session_https", "curl_keepalive")
        if med("blk.%s.direct.us" % r) >= 5000 or med("blk.%s.direct.us_median" % r) >= 5000]
if slow:
    print("WARNING: direct mode takes 5 ms or more per keep-alive request (%s): the origin or proxy"
          " dominates, the blocking-client figures are not to be trusted" % ", ".join(slow))
calls = {}
for k in S:
    if k.startswith("sys.lib.call.") or k.startswith("sys.direct.call."):
        arm, name = k.split(".")[1], k.split(".", 3)[3]
        calls.setdefault(name, [0.0, 0.0])[0 if arm == "lib" else 1] = med(k)
delta = sorted(((l - d, n) for n, (l, d) in calls.items() if abs(l - d) >= 0.005), reverse=True)
print("system calls per keep-alive request, library - direct mode, by call (round 1): "
      + (", ".join("%s %+.2f" % (n, x) for x, n in delta) or "none"))
print("https, Python: the library's side includes Python's own TLS set-up (an SSLContext, the CA"
      " file and an SSL object per connection; per request for requests.get) and ssl-module calls,"
      " which direct mode (plain HTTP to HAProxy) does not make; \"the client's own TLS set-up\":"
      " direct mode building those objects too (no handshake, no encryption: scripts/bench/client.py)")
print("https rows: library and direct mode both reach nginx through HAProxy's TLS (verified"
      " with the lab CA); straight to origin = wrk's own TLS to nginx, no proxy")
