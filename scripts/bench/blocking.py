"""make bench: blocking clients, one request at a time, library vs direct mode.

Run inside the bench's lab namespace:
    blocking.py LIB CA HAPROXY_LOG ROUNDS PY_REQS CURL_REQS SAMPLES FLOOR_SO

Rows (each round runs every row's arms, library and direct mode, taking turns going first;
a Python row's arms run at once, taking turns request by request (`take_turns`);
py_session_https and py_get_https add a third, "tlssetup": direct mode with the client
also building its own TLS objects per connection, as it does for https with the library;
and a fourth, "floor": through FLOOR_SO (c-tests/bench/floor_divert.c), the same https
requests through that C preload, whose virtual sessions do nothing the client does not
need, so that the client's whole https path (its SSL socket object, the certificate it
decodes and matches) is in both arms and only the library's own work differs):
  py_session_http   Python requests.Session, keep-alive, http://api.example.test/
  py_session_https  the same, https://api.example.test/ (a virtual TLS session)
  py_get_http       requests.get: a new connection per request
  py_get_https      the same over https (a new virtual session per request)
  curl_keepalive    one curl process, CURL_REQS URLs on one connection
  curl_once         the same with one URL: the once-per-process part, which the report
                    takes out to give the steady per-request cost
  curl_process      a curl process per request, CURL_REQS processes
  curl_process_untracked  the same to nginx's :8080 (not intercepted), with and without
                    the library: the part of curl_process that is the preload itself
  node_https_keepalive  Node https keep-alive GETs (diverted through the Node hook; direct
                    mode: Node's http to the proxy with the headers by hand)
  java_https_keepalive, java_start  the same for Java's HttpClient (through the Java
                    hook) and `java -version` starts, where a JDK is and the hook was built
  node_start        `node -e 0` starts: the library with a configuration (the Node hook
                    injected) vs no preload; µs per start
  py_session_tlslink, curl_keepalive_tlslink, curl_once_tlslink  TLS to the proxy: the library with
                    LUNAR_PROXY_SUPPORT_TLS=1 (HAProxy's TLS ports 8400/8443) vs direct mode
                    over the client's own TLS to https://proxy.lunar.test:8400/
Library: LD_PRELOAD, LUNAR_PROXY_HOST=proxy.lunar.test:8000, the origin's URL.
Direct mode: no library, http://proxy.lunar.test:8000/ with the x-lunar-* headers
written by hand (x-lunar-scheme: https for the https rows). Both resolve a name.
Appends "key<TAB>round<TAB>value" lines to SAMPLES: blk.ROW.MODE.us (mean µs per
request), blk.ROW.MODE.us_median (Python: the run's median request), blk.ROW.MODE.hwm (Python's VmHWM, KiB), blk.ROW.lib.librss/.libdirty (the
library's own mappings after the traffic), blk.ROW.MODE.hap (HAProxy log lines per
request, first round only: 1 = through the proxy).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
lib, ca, haplog, rounds, py_reqs, curl_reqs, samples, floor = sys.argv[1:]
rounds, py_reqs, curl_reqs = int(rounds), int(py_reqs), int(curl_reqs)
PY = "/usr/bin/python3"
CURL = "/usr/bin/curl"
WARM = 20

BASE_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
LIB_ENV = dict(BASE_ENV, LD_PRELOAD=lib, LUNAR_PROXY_HOST="proxy.lunar.test:8000")
DIRECT_URL = "http://proxy.lunar.test:8000/"
LIB_TLS_ENV = dict(BASE_ENV, LD_PRELOAD=lib, LUNAR_PROXY_HOST="proxy.lunar.test:8400",
                   LUNAR_PROXY_SUPPORT_TLS="1", LUNAR_HANDSHAKE_PORT="8443",
                   LUNAR_PROXY_CA_FILE=ca)
DIRECT_TLS_URL = "https://proxy.lunar.test:8400/"
# The https rows' third arm: direct mode, the client also doing its own TLS set-up for
# each connection (client.py), which the library's side does and plain direct mode does not.
TLS_SETUP_ENV = dict(BASE_ENV, BENCH_TLS_SETUP=ca)
# The https rows' fourth arm: the C floor's virtual sessions, with the lab's certificate
# for the client to decode and match (lab.pem, beside the CA).
FLOOR_ENV = dict(BASE_ENV, LD_PRELOAD=floor, LUNAR_PROXY_HOST="proxy.lunar.test:8000",
                 FLOOR_PEER_CERT=os.path.join(os.path.dirname(ca), "lab.pem"))


def direct_headers(scheme):
    return {"x-lunar-host": "api.example.test", "x-lunar-scheme": scheme,
            "x-lunar-interceptor": "lunar-direct/0",
            "x-lunar-req-id": "00000000-0000-4000-8000-000000000000"}


def curl_h(scheme):
    return [a for k, v in direct_headers(scheme).items() for a in ("-H", "%s: %s" % (k, v))]


out = open(samples, "a")


def sample(key, rnd, value):
    out.write("%s\t%d\t%s\n" % (key, rnd, value))
    out.flush()


def hap_lines():
    with open(haplog, "rb") as f:
        return sum(1 for _ in f)


class PyClient:
    """A Python client (client.py) of one arm. The arms of a Python row run at once, taking
    turns request by request (`take_turns`)."""

    def __init__(self, mode, url, headers, verify, env):
        self.argv = ([PY, os.path.join(HERE, "client.py"), mode, url, str(py_reqs), str(WARM),
                      json.dumps(headers), verify]
                     + ([lib] if env.get("LD_PRELOAD") == lib else []))
        self.env = env


def take_turns(clients, seed):
    """Runs `clients` at once in a ring of pipes: each waits for its turn before every timed
    request and passes it on after (client.py's BENCH_TURNS), so that the machine's drift
    falls on every arm alike; the first turn is given once all are warm (before, the first
    client's requests met the others' start-up: ~50 µs slower each). Every client of a
    round has Python's hash seed `seed`, a new one each round: a fixed seed (or no address
    randomisation) made every round of a run alike, and the runs differ. Returns each
    client's figures, and the requests they made."""
    pipes = [os.pipe() for _ in clients]
    ready_read, ready_write = os.pipe()
    running = []
    for i, client in enumerate(clients):
        turn_fds = (pipes[i][0], pipes[(i + 1) % len(clients)][1], ready_write)
        env = dict(client.env, BENCH_TURNS="%d,%d,%d" % turn_fds, PYTHONHASHSEED=str(seed))
        running.append(subprocess.Popen(client.argv, env=env, pass_fds=turn_fds, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    os.close(ready_write)
    warm = 0
    while warm < len(clients):
        got = os.read(ready_read, len(clients))
        if not got:  # every client gone, some before it was warm: reported below
            break
        warm += len(got)
    os.close(ready_read)
    os.write(pipes[0][1], b".")  # the first client's first turn
    while any(proc.poll() is None for proc in running):
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)  # until a client ends (not reaped)
        failed = [proc for proc in running if proc.poll() not in (None, 0)]
        if failed:  # the ring is broken: the others would wait for their turn for ever
            for proc in running:
                proc.kill()
            stdout, stderr = failed[0].communicate()
            sys.exit("blocking.py: %s failed:\n%s%s" % (failed[0].args, stdout, stderr))
    results = []
    for proc in running:
        f = proc.communicate()[0].split()
        results.append(dict(zip(f[0::2], (float(x) for x in f[1::2]))))
    for read_end, write_end in pipes:  # held until now: a client's last pass never fails
        os.close(read_end)
        os.close(write_end)
    return results, (py_reqs + WARM) * len(clients)


def curl_keepalive(url, extra, env, count=None):
    count = count or curl_reqs
    argv = [CURL, "-s", "-w", "%{http_code} %{num_connects}\\n"] + extra + [url] * count
    t0 = time.perf_counter_ns()
    r = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t1 = time.perf_counter_ns()
    codes = [l.split() for l in r.stdout.decode(errors="replace").splitlines()]
    codes = [c for c in codes if len(c) == 2 and c[0].isdigit() and len(c[0]) == 3]
    if r.returncode != 0 or len(codes) != count or any(c[0] != "200" for c in codes):
        sys.exit("blocking.py: curl keep-alive to %s failed (rc %d): %r" % (url, r.returncode, codes[:3]))
    if sum(int(c[1]) for c in codes) != 1:
        sys.exit("blocking.py: curl keep-alive to %s made %d connections"
                 % (url, sum(int(c[1]) for c in codes)))
    return {"us_per_req": (t1 - t0) / 1000 / count}, count


def curl_process(url, extra, env):
    argv = [CURL, "-s", "-o", "/dev/null", "-w", "%{http_code}"] + extra + [url]
    null = os.open(os.devnull, os.O_WRONLY)
    rfd, wfd = os.pipe()
    fa = [(os.POSIX_SPAWN_DUP2, wfd, 1), (os.POSIX_SPAWN_DUP2, null, 2),
          (os.POSIX_SPAWN_CLOSE, rfd), (os.POSIX_SPAWN_CLOSE, wfd), (os.POSIX_SPAWN_CLOSE, null)]
    bad = 0
    t0 = time.perf_counter_ns()
    for _ in range(curl_reqs):
        pid = os.posix_spawn(CURL, argv, env, file_actions=fa)
        _, status = os.waitpid(pid, 0)
        bad += status != 0
    t1 = time.perf_counter_ns()
    os.close(wfd)
    codes = b""
    while True:
        chunk = os.read(rfd, 65536)
        if not chunk:
            break
        codes += chunk
    os.close(rfd)
    os.close(null)
    if bad or codes != b"200" * curl_reqs:
        sys.exit("blocking.py: %d of %d curl processes to %s failed: %r"
                 % (bad, curl_reqs, url, codes[:60]))
    return {"us_per_req": (t1 - t0) / 1000 / curl_reqs}, curl_reqs


def node_client(url, headers, env):
    argv = ["node", os.path.join(HERE, "node_client.js"), url, str(py_reqs), str(WARM),
            json.dumps(headers)]
    r = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit("blocking.py: %s failed:\n%s%s" % (argv, r.stdout, r.stderr))
    f = r.stdout.split()
    return {"us_per_req": float(f[1])}, py_reqs + WARM


NODE_STARTS = 20


def node_start(env):
    t0 = time.perf_counter_ns()
    for _ in range(NODE_STARTS):
        subprocess.run(["node", "-e", "0"], env=env, check=True)
    return {"us_per_req": (time.perf_counter_ns() - t0) / 1000 / NODE_STARTS}, NODE_STARTS


NODE_LIB_ENV = dict(LIB_ENV, NODE_EXTRA_CA_CERTS=ca)

# Java: JavaBench compiled here, the lab CA in a truststore; only where a JDK is and the
# hook was built beside the library.
JAVA_DIR = None
if shutil.which("javac") and os.path.exists(os.path.join(os.path.dirname(lib), "lunar-java-hook.jar")):
    JAVA_DIR = tempfile.mkdtemp(prefix="lunar-bench-java.")
    subprocess.run(["javac", "-d", JAVA_DIR, os.path.join(HERE, "JavaBench.java")], check=True)
    subprocess.run(["keytool", "-importcert", "-noprompt", "-alias", "lab", "-file", ca,
                    "-keystore", os.path.join(JAVA_DIR, "ca.p12"), "-storetype", "PKCS12",
                    "-storepass", "changeit"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
JAVA_OPTS = ["-XX:+UseSerialGC", "-Djavax.net.ssl.trustStore=%s/ca.p12" % JAVA_DIR,
             "-Djavax.net.ssl.trustStorePassword=changeit"]


def java_client(url, headers, env):
    argv = (["java"] + JAVA_OPTS + ["-cp", JAVA_DIR, "JavaBench", url, str(py_reqs), str(WARM)]
            + [x for kv in headers.items() for x in kv])
    r = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit("blocking.py: %s failed:\n%s%s" % (argv, r.stdout, r.stderr))
    return {"us_per_req": float(r.stdout.split()[1])}, py_reqs + WARM


JAVA_STARTS = 5


def java_start(env):
    # The JVM's defaults (G1 here): a collector option changes what CDS maps at start, and
    # with it what -Xbootclasspath/a costs.
    t0 = time.perf_counter_ns()
    for _ in range(JAVA_STARTS):
        subprocess.run(["java", "-version"], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return {"us_per_req": (time.perf_counter_ns() - t0) / 1000 / JAVA_STARTS}, JAVA_STARTS

ROWS = [
    ("py_session_http",
     PyClient("session", "http://api.example.test/", {}, "-", LIB_ENV),
     PyClient("session", DIRECT_URL, direct_headers("http"), "-", BASE_ENV)),
    ("py_session_https",
     PyClient("session", "https://api.example.test/", {}, ca, LIB_ENV),
     PyClient("session", DIRECT_URL, direct_headers("https"), "-", BASE_ENV),
     {"tlssetup": PyClient("session", DIRECT_URL, direct_headers("https"), "-",
                           TLS_SETUP_ENV),
      "floor": PyClient("session", "https://api.example.test/", {}, ca, FLOOR_ENV)}),
    ("py_get_http",
     PyClient("get", "http://api.example.test/", {}, "-", LIB_ENV),
     PyClient("get", DIRECT_URL, direct_headers("http"), "-", BASE_ENV)),
    ("py_get_https",
     PyClient("get", "https://api.example.test/", {}, ca, LIB_ENV),
     PyClient("get", DIRECT_URL, direct_headers("https"), "-", BASE_ENV),
     {"tlssetup": PyClient("get", DIRECT_URL, direct_headers("https"), "-", TLS_SETUP_ENV),
      "floor": PyClient("get", "https://api.example.test/", {}, ca, FLOOR_ENV)}),
    ("curl_keepalive",
     lambda: curl_keepalive("http://api.example.test/", [], LIB_ENV),
     lambda: curl_keepalive(DIRECT_URL, curl_h("http"), BASE_ENV)),
    ("curl_once",
     lambda: curl_keepalive("http://api.example.test/", [], LIB_ENV, 1),
     lambda: curl_keepalive(DIRECT_URL, curl_h("http"), BASE_ENV, 1)),
    ("curl_process",
     lambda: curl_process("http://api.example.test/", [], LIB_ENV),
     lambda: curl_process(DIRECT_URL, curl_h("http"), BASE_ENV)),
    ("py_session_tlslink",
     PyClient("session", "http://api.example.test/", {}, "-", LIB_TLS_ENV),
     PyClient("session", DIRECT_TLS_URL, direct_headers("http"), ca, BASE_ENV)),
    ("curl_keepalive_tlslink",
     lambda: curl_keepalive("http://api.example.test/", [], LIB_TLS_ENV),
     lambda: curl_keepalive(DIRECT_TLS_URL, ["--cacert", ca] + curl_h("http"), BASE_ENV)),
    # the same with one URL: the once-per-process part (TLS set-up, Lunar's handshake),
    # which the report takes out to give the steady per-request cost
    ("curl_once_tlslink",
     lambda: curl_keepalive("http://api.example.test/", [], LIB_TLS_ENV, 1),
     lambda: curl_keepalive(DIRECT_TLS_URL, ["--cacert", ca] + curl_h("http"), BASE_ENV, 1)),
    ("node_https_keepalive",
     lambda: node_client("https://api.example.test/", {}, NODE_LIB_ENV),
     lambda: node_client(DIRECT_URL, direct_headers("https"), BASE_ENV)),
    ("node_start",
     lambda: node_start(LIB_ENV),
     lambda: node_start(BASE_ENV)),
] + ([
    ("java_https_keepalive",
     lambda: java_client("https://api.example.test/", {}, LIB_ENV),
     lambda: java_client(DIRECT_URL, direct_headers("https"), BASE_ENV)),
    ("java_start",
     lambda: java_start(LIB_ENV),
     lambda: java_start(BASE_ENV)),
] if JAVA_DIR else []) + [
    # what of curl_process is the preload itself: the same curl to a port the library
    # does not intercept (nginx's :8080), with and without the library
    ("curl_process_untracked",
     lambda: curl_process("http://api.example.test:8080/", [], LIB_ENV),
     lambda: curl_process("http://api.example.test:8080/", [], BASE_ENV)),
]


def proxied_share(h0, nreq):
    """HAProxy log lines since `h0` per request of `nreq`: 1 when all went through it."""
    deadline = time.monotonic() + 2  # HAProxy writes a request's line when it ends
    while hap_lines() - h0 < nreq and time.monotonic() < deadline:
        time.sleep(0.05)
    return (hap_lines() - h0) / nreq


def run_arms(arms, rnd):
    """Each arm's figures, and (round 1) its share of requests seen by HAProxy: Python
    clients all at once, taking turns (so their share is the row's), others one by one."""
    h0 = hap_lines() if rnd == 1 else 0
    if isinstance(arms[0][1], PyClient):
        results, nreq = take_turns([client for _, client in arms], rnd)
        share = proxied_share(h0, nreq) if rnd == 1 else None
        return [(mode, vals, share) for (mode, _), vals in zip(arms, results)]
    ran = []
    for mode, run in arms:
        h0 = hap_lines() if rnd == 1 else 0
        vals, nreq = run()
        ran.append((mode, vals, proxied_share(h0, nreq) if rnd == 1 else None))
    return ran


for rnd in range(1, rounds + 1):
    for row, lib_run, direct_run, *more in ROWS:
        arms = [("lib", lib_run), ("direct", direct_run)]
        arms += list(more[0].items()) if more else []
        turn = rnd % len(arms)  # the arms take turns going first
        arms = arms[turn:] + arms[:turn]
        line = []
        for mode, vals, share in run_arms(arms, rnd):
            if share is not None:
                sample("blk.%s.%s.hap" % (row, mode), rnd, "%.3f" % share)
            sample("blk.%s.%s.us" % (row, mode), rnd, "%.3f" % vals["us_per_req"])
            if "hwm_kib" in vals:
                sample("blk.%s.%s.hwm" % (row, mode), rnd, "%d" % vals["hwm_kib"])
            if mode == "lib" and "lib_rss_kib" in vals:
                sample("blk.%s.lib.librss" % row, rnd, "%d" % vals["lib_rss_kib"])
                sample("blk.%s.lib.libdirty" % row, rnd, "%d" % vals["lib_dirty_kib"])
            if "us_median" in vals:
                sample("blk.%s.%s.us_median" % (row, mode), rnd, "%.3f" % vals["us_median"])
            line.append("%s %.1f us" % (mode, vals["us_per_req"])
                        + (" (median %.1f)" % vals["us_median"] if "us_median" in vals else ""))
        print("  %-22s round %d: %s" % (row, rnd, ", ".join(line)), file=sys.stderr)

if JAVA_DIR:
    shutil.rmtree(JAVA_DIR, ignore_errors=True)
