"""The c-tests programs (c-tests/*.c) under the library, in the lab's namespace.

Each program drives one exact libc call pattern (one byte per send, writev, sendmsg,
pipelining, non-blocking connect under epoll, fortified reads, dup2, fork, ...) and
prints the origin's JSON echo of the request it received. For each program:

- direct (no LD_PRELOAD): the origin answers directly, nothing Lunar about it;
- diverted (LD_PRELOAD, HAProxy up): the request went through HAProxy, which saw
  x-lunar-host/scheme/interceptor/req-id exactly once each, and the origin got no
  x-lunar-* header;
- port 8080 (not an intercepted port) under the library: direct;
- failsafe (LD_PRELOAD, HAProxy stopped): still a 200 from the origin, direct;
- proxy faults (the lab's test proxy): still the origin's 200, direct, after the
  request met the fault: the test proxy's log and the library's show where each
  request went, so that "never diverted" cannot pass for "fell back".

Nothing leaves the namespace: every address is on its loopback.
"""
import hashlib
import json
import os
import re
import subprocess
import sys
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CTESTS = os.path.join(REPO, "c-tests")
BIN = os.path.join(CTESTS, "bin")
sys.path.insert(0, os.path.join(REPO, "tests", "lab"))

import lab as lablib  # noqa: E402

HOST = "api.example.test"
API_IP = lablib.API_IP
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

OTHER_HOST = "other.example.test"
OTHER_IP = lablib.OTHER_IP

# Request bodies the POST programs send (see their sources).
BYTEWISE_BODY = b'{"hello":"one byte per send()","n":12345}'
SENDMSG_BODY = b'{"via":"sendmsg","parts":2}'
KEEPALIVE_BODY = b'{"keepalive":"second request"}'
BIG_POST_BODY = lablib.pattern_bytes(2000000)  # nonblock_*_post (-DPOST_BYTES)


def spec(method="GET", body=None, host=HOST, ip=API_IP):
    """What one response body printed by a program must show."""
    return {"method": method, "body": body, "host": host, "ip": ip}


FD_REUSE = ["fd_reuse_close", "fd_reuse_syscall", "fd_reuse_close_range", "fd_reuse_dup2"]

# program -> the responses it prints, in order (threads: in any order)
PROGRAMS = {
    "send_bytewise": [spec("POST", BYTEWISE_BODY)],
    "writev_split": [spec()],
    "sendmsg_iov": [spec("POST", SENDMSG_BODY)],
    "pipeline": [spec(), spec()],
    "keepalive_seq": [spec(), spec("POST", KEEPALIVE_BODY), spec()],
    "nonblock_epoll": [spec()],
    "nonblock_epoll_et": [spec()],
    "nonblock_poll": [spec()],
    "nonblock_select": [spec()],
    "nonblock_select_reconnect": [spec()],
    "nonblock_poll_write": [spec()],
    "nonblock_epoll_post": [spec("POST", BIG_POST_BODY)],
    "nonblock_epoll_et_post": [spec("POST", BIG_POST_BODY)],
    "nonblock_epoll_et_sendfile": [spec("POST", BIG_POST_BODY)],
    "nonblock_poll_sendfile": [spec("POST", BIG_POST_BODY)],
    "nonblock_epoll_splice": [spec("POST", BIG_POST_BODY)],
    "nonblock_epoll_et_splice": [spec("POST", BIG_POST_BODY)],
    "fort_read": [spec()],
    "fort_recv": [spec()],
    "fort_recvfrom": [spec()],
    "dup2_move": [spec()],
    "dup2_close_first": [spec()],
    "dup3_move": [spec()],
    "dup_move": [spec()],
    "fcntl_dupfd": [spec()],
    "fork_connect": [spec()],
    "getpeername": [spec()],
    "v4mapped": [spec()],
    "recvmsg_iov": [spec()],
    "readv_iov": [spec()],
    "sendto_null": [spec()],
    "msg_peek": [spec()],
    "shutdown_wr": [spec()],
    "threads": [spec()] * 32,
    "reader_first": [spec()],
    "reader_first_poll": [spec()],
    "reader_first_select": [spec()],
    "reader_first_epoll": [spec()],
}
# fd reuse: first request to api.example.test, second on the same fd number to
# other.example.test (argv[4], argv[5])
for _n in FD_REUSE:
    PROGRAMS[_n] = [spec(), spec(host=OTHER_HOST, ip=OTHER_IP)]
EXTRA_ARGS = {n: [OTHER_HOST, "80"] for n in FD_REUSE}

# programs that read a large binary body well (exact content checked)
BIG_BODY_PROGRAMS = ["readv_iov", "recvmsg_iov", "fort_read", "fort_recv", "nonblock_epoll",
                     "nonblock_epoll_et", "nonblock_poll", "nonblock_select",
                     "nonblock_select_reconnect", "nonblock_poll_write", "msg_peek",
                     "sendto_null", "send_bytewise", "nonblock_epoll_splice",
                     "nonblock_epoll_et_splice"]


# ---- fixtures -----------------------------------------------------------------

@pytest.fixture(scope="session")
def c_bins():
    """Build c-tests/bin (build.sh also checks the _chk imports of fort_*)."""
    r = subprocess.run([os.path.join(CTESTS, "build.sh")], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    assert r.returncode == 0, "c-tests/build.sh failed:\n" + r.stdout.decode()
    return BIN


@pytest.fixture(scope="module")
def c_lab(request):
    """The shared lab from conftest.py when there is one, else a lab of our own."""
    try:
        lab = request.getfixturevalue("lab")
        own = False
    except pytest.FixtureLookupError:
        lab = lablib.Lab("ctest-%d" % os.getpid())
        lab.up()
        own = True
    try:
        lab.start_haproxy()
        yield lab
    finally:
        if own:
            lab.down()
        else:
            lab.start_haproxy()  # leave the shared lab as we found it


@pytest.fixture
def haproxy_up(c_lab):
    c_lab.start_haproxy()
    return c_lab


@pytest.fixture
def haproxy_down(c_lab):
    c_lab.stop_haproxy()
    try:
        yield c_lab
    finally:
        c_lab.start_haproxy()


@pytest.fixture
def need_lib(c_lab):
    """(conftest.py has the same; this one keeps the file runnable on its own)"""
    if not os.path.exists(c_lab.lib):
        pytest.fail("library not built: %s (make build)" % c_lab.lib)
    return c_lab.lib


# ---- helpers ------------------------------------------------------------------

def run_prog(lab, name, path, preload, port="80", host=HOST, extra=None, **kw):
    argv = [os.path.join(BIN, name), host, port, path]
    argv += EXTRA_ARGS.get(name, []) if extra is None else extra
    return lab.run(argv, preload=preload, debug=preload, timeout=40, **kw)


def split_output(text):
    """(prefix lines, [json objects]) from a program's stdout."""
    i = text.find("{")
    prefix = text[:i] if i >= 0 else text
    objs, dec = [], json.JSONDecoder()
    while i >= 0 and i < len(text):
        obj, end = dec.raw_decode(text, i)
        objs.append(obj)
        j = text.find("{", end)
        i = j
    return [ln for ln in prefix.splitlines() if ln.strip()], objs


def hdrs(echo, name):
    name = name.lower()
    return [v for k, v in echo["headers"] if k.lower() == name]


def hdr(echo, name):
    vs = hdrs(echo, name)
    return vs[0] if len(vs) == 1 else (None if not vs else vs)


def lunar_headers(echo):
    return [k for k, _ in echo["headers"] if k.lower().startswith("x-lunar-")]


def echoes(res, name, path, specs=None):
    """Parse and sanity-check the echo(es) a program printed against its specs.
    Returns (prefix lines, [(echo, spec)])."""
    assert res.rc == 0, "%s exited %s\n%r" % (name, res.rc, res)
    prefix, objs = split_output(res.text_out)
    specs = specs or PROGRAMS[name]
    assert len(objs) == len(specs), \
        "%s: expected %d JSON bodies, got %d\n%r" % (name, len(specs), len(objs), res)
    for e, sp in zip(objs, specs):
        assert e["path"] == path, (e, res)
        assert e["method"] == sp["method"], (e, res)
        if sp["body"] is not None:
            assert e["body_len"] == len(sp["body"]), (e, res)
            assert e["body_sha256"] == hashlib.sha256(sp["body"]).hexdigest(), (e, res)
        else:
            assert e["body_len"] == 0, (e, res)
        assert hdr(e, "x-ctest") == name, (e, res)
        assert lunar_headers(e) == [], "origin got x-lunar-* headers: %r\n%r" % (e, res)
    if len(objs) > 1 and name != "threads":
        seqs = [hdr(e, "x-ctest-seq") for e in objs]
        assert seqs == [str(i + 1) for i in range(len(objs))], (seqs, res)
    return prefix, list(zip(objs, specs))


def assert_direct(e, res, sp, port="80"):
    server = "%s:%s" % (sp["ip"], port)
    assert e["server"] == server, (e, res)
    assert hdr(e, "x-via-haproxy") is None, "went through HAProxy: %r\n%r" % (e, res)
    assert hdr(e, "x-via-testproxy") is None, "went through the test proxy: %r\n%r" % (e, res)
    assert not [k for k, _ in e["headers"] if k.lower().startswith("x-seen-")], (e, res)
    want_host = sp["host"] if port == "80" else "%s:%s" % (sp["host"], port)
    assert hdrs(e, "host") == [want_host], (e, res)


def assert_diverted(e, res, sp):
    host = sp["host"]
    assert e["server"] == "%s:80" % sp["ip"], (e, res)
    assert hdr(e, "x-via-haproxy") == "1", "not diverted through HAProxy: %r\n%r" % (e, res)
    assert hdr(e, "x-seen-lunar-host") == host, (e, res)
    assert hdr(e, "x-seen-lunar-scheme") == "http", (e, res)
    inter = hdr(e, "x-seen-lunar-interceptor")
    assert isinstance(inter, str) and inter.startswith("lunar-preload-interceptor/"), (e, res)
    rid = hdr(e, "x-seen-lunar-req-id")
    assert isinstance(rid, str) and UUID_RE.match(rid), (e, res)
    # each x-lunar-* header exactly once on the wire to the proxy
    counts = dict(kv.split("=", 1) for kv in hdr(e, "x-seen-lunar-counts").split(","))
    for h in ("host", "scheme", "interceptor", "req-id"):
        assert counts[h] == "1", "x-lunar-%s sent %s times: %r\n%r" % (h, counts[h], e, res)
    assert counts["allow"] == "0", (e, res)
    # the Host the application wrote reached the proxy unchanged
    assert hdr(e, "x-seen-host") == host, (e, res)
    assert hdrs(e, "host") == [host], (e, res)
    return rid


def assert_peers(name, prefix, res, port="80"):
    if name == "getpeername":
        # a diverted socket still reports the original destination
        assert prefix == ["connected-to %s:%s" % (API_IP, port),
                          "peer-after-connect %s:%s" % (API_IP, port),
                          "peer-after-response %s:%s" % (API_IP, port)], res
    if name == "v4mapped":
        # AF_INET6 socket connected to ::ffff:203.0.113.10 (what Java does)
        assert prefix == ["peer-after-connect [::ffff:%s]:%s" % (API_IP, port),
                          "peer-after-response [::ffff:%s]:%s" % (API_IP, port)], res


# ---- where the requests went (failsafe and fault tests) ---------------------------
#
# "Fell back after the fault" and "never diverted" look the same at the origin (a
# direct request): the fault tests also read the test proxy's log (the request arrived
# there, with the library's x-lunar-* headers, and met the fault), the origin's log
# (each request served exactly once, directly) and the library's own log lines.

# the library's default LUNAR_ENTER_COOLDOWN_AFTER_ATTEMPTS: after that many failures
# in a row, the rest of a process's connections go direct without trying the proxy
COOLDOWN_ATTEMPTS = 5


def connections(name):
    """The program's connections to port 80: destination host -> how many."""
    if name == "threads":
        return {HOST: 32}  # 8 threads x 4 requests, each on a new connection
    if name in FD_REUSE:
        return {HOST: 1, OTHER_HOST: 1}
    return {HOST: 1}


def must_meet_proxy(name):
    """How many of the program's connections must have tried the proxy, at least: all
    of them, or when they are more, the failures that start the cooldown."""
    return min(sum(connections(name).values()), COOLDOWN_ATTEMPTS)


def lib_lines(res, word):
    """The library's log lines on the program's stderr that contain `word`."""
    return [ln for ln in res.text_err.splitlines()
            if ln.startswith("[lunar-intercept ") and word in ln]


def proxy_traffic(log, name, path):
    """The test proxy's records of this program's requests to `path`."""
    return [r for r in log if r.get("kind") == "traffic" and r.get("path") == path
            and hdr(r, "x-ctest") == name]


def seq_of(rec):
    """X-Ctest-Seq of a request (None for the programs that make one request)."""
    return hdr(rec, "x-ctest-seq")


def assert_served_once(lab, name, path, pairs, res):
    """The origin got each request exactly once, as the program's echoes say (direct
    or through a proxy): a fallback neither lost nor repeated one."""
    recs = [r for r in lab.origin_log(contains=path)
            if r.get("path") == path and hdr(r, "x-ctest") == name]

    def key(e):
        return (str(seq_of(e)), hdr(e, "x-via-haproxy"), hdr(e, "x-via-testproxy"))
    got = sorted(key(r) for r in recs)
    want = sorted(key(e) for e, _ in pairs)
    assert got == want, "origin's log %r != the program's echoes %r\n%r" % (got, want, res)


def assert_library_direct_lines(res, why, name, exact=False):
    """For each destination, the library's DEBUG '-> direct (why)' for its connections:
    at least as many as the fault must have met (exact: one per connection)."""
    for host, n in connections(name).items():
        lines = lib_lines(res, "%s:80 -> direct (%s)" % (host, why))
        want = n if exact else min(n, COOLDOWN_ATTEMPTS)
        ok = len(lines) == want if exact else len(lines) >= want
        assert ok, "%s: %d '-> direct (%s)' lines for %s, want %s%d\n%r" % (
            name, len(lines), why, host, "" if exact else ">= ", want, res)


def unique_path(kind, name):
    """A path of this run only: the lab's logs outlive a test."""
    return "/c/%s/%s/%s" % (name, kind, uuid.uuid4().hex[:10])


# ---- tests --------------------------------------------------------------------

def test_build_fortified_imports(c_bins):
    """The fortified programs really call glibc's _chk entry points."""
    for prog, sym in [("fort_read", "__read_chk"), ("fort_recv", "__recv_chk"),
                      ("fort_recvfrom", "__recvfrom_chk"), ("msg_peek", "__recv_chk")]:
        out = subprocess.run(["nm", "-D", "--undefined-only", os.path.join(c_bins, prog)],
                             stdout=subprocess.PIPE, check=True).stdout.decode()
        assert re.search(r"\b%s\b" % sym, out), "%s does not import %s" % (prog, sym)


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_direct_without_library(c_bins, haproxy_up, name):
    path = "/c/%s/direct?q=1" % name
    res = run_prog(haproxy_up, name, path, preload=False)
    prefix, pairs = echoes(res, name, path)
    for e, sp in pairs:
        assert_direct(e, res, sp)
    assert_peers(name, prefix, res)


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_diverted_through_proxy(c_bins, need_lib, haproxy_up, name):
    path = "/c/%s/diverted?q=1" % name
    res = run_prog(haproxy_up, name, path, preload=True)
    prefix, pairs = echoes(res, name, path)
    rids = [assert_diverted(e, res, sp) for e, sp in pairs]
    assert len(set(rids)) == len(rids), "x-lunar-req-id reused across requests: %r" % rids
    assert_peers(name, prefix, res)


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_not_intercepted_port_8080(c_bins, need_lib, haproxy_up, name):
    path = "/c/%s/port8080" % name
    extra = [HOST, "8080"] if name in FD_REUSE else None
    specs = [spec(sp["method"], sp["body"]) for sp in PROGRAMS[name]]
    res = run_prog(haproxy_up, name, path, preload=True, port="8080", extra=extra)
    prefix, pairs = echoes(res, name, path, specs)
    for e, sp in pairs:
        assert_direct(e, res, sp, port="8080")
    assert_peers(name, prefix, res, port="8080")


@pytest.mark.parametrize("name", FD_REUSE)
def test_fd_reuse_then_untracked_port(c_bins, need_lib, haproxy_up, name):
    """A diverted socket's fd number, reused (after a close the library may not
    see) for a connection to a port that is not intercepted: that one is direct."""
    path = "/c/%s/reuse8080" % name
    res = run_prog(haproxy_up, name, path, preload=True, extra=[HOST, "8080"])
    prefix, pairs = echoes(res, name, path, [spec(), spec()])
    assert_diverted(pairs[0][0], res, pairs[0][1])
    assert_direct(pairs[1][0], res, pairs[1][1], port="8080")


@pytest.mark.parametrize("name", BIG_BODY_PROGRAMS)
@pytest.mark.parametrize("kind", ["bytes", "chunked"])
def test_large_response_diverted(c_bins, need_lib, haproxy_up, name, kind):
    """300 kB (Content-Length) / 120 kB (chunked) of binary body through the proxy,
    byte-exact."""
    n = 300000 if kind == "bytes" else 120000
    path = "/%s/%d" % (kind, n)
    res = run_prog(haproxy_up, name, path, preload=True)
    assert res.rc == 0, res
    assert res.out == lablib.pattern_bytes(n), \
        "%s: body differs (%d bytes, want %d)\n%r" % (name, len(res.out), n, res.err[-3000:])
    recs = [r for r in haproxy_up.origin_log(contains=path) if hdr(r, "x-ctest") == name]
    assert recs and hdr(recs[-1], "x-via-haproxy") == "1", recs[-1:]


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_failsafe_proxy_down(c_bins, need_lib, haproxy_down, name):
    """HAProxy stopped: the request still gets its 200 from the origin, direct.

    Here the proxy's handshake already fails, so the library sends every connection
    straight to its destination without trying the traffic port: no request can reach
    a proxy, and at the origin this looks exactly like no library at all. The evidence
    that the library was there and chose direct is its own log: the handshake failure
    warning and one '-> direct (proxy unavailable)' per connection."""
    path = unique_path("failsafe", name)
    res = run_prog(haproxy_down, name, path, preload=True)
    prefix, pairs = echoes(res, name, path)
    for e, sp in pairs:
        assert_direct(e, res, sp)
    assert_peers(name, prefix, res)
    assert lib_lines(res, "Failed to communicate with Lunar Proxy at 127.0.0.1 (handshake "
                          "port %d)" % lablib.HAPROXY_HANDSHAKE), \
        "no handshake failure from the library\n%r" % (res,)
    assert_library_direct_lines(res, "proxy unavailable", name, exact=True)
    assert not lib_lines(res, "-> proxy"), res
    assert_served_once(haproxy_down, name, path, pairs, res)


# ---- proxy faults (the lab's scriptable test proxy on 127.0.0.1:9000) ------------

TESTPROXY_ENV = {
    "LUNAR_PROXY_HOST": "127.0.0.1:%d" % lablib.TESTPROXY_TRAFFIC,
    "LUNAR_HANDSHAKE_PORT": str(lablib.TESTPROXY_HANDSHAKE),
    "LUNAR_PROXY_CONNECT_TIMEOUT_MS": "300",
    # the 2 MB POSTs of nonblock_*_post must stay replayable (default cap 1 MiB)
    "LUNAR_REPLAY_MAX_BYTES": str(4 * 1024 * 1024),
}


@pytest.fixture
def testproxy(c_lab):
    """Set the test proxy's mode with testproxy(mode); back to pass afterwards."""
    c_lab.start_testproxy()

    def set_mode(mode):
        c_lab.set_mode(mode)
        c_lab.testproxy_reset_log()  # what the test reads is of its own run
        return c_lab
    try:
        yield set_mode
    finally:
        c_lab.set_mode("pass")
        c_lab.wait_port("127.0.0.1", lablib.TESTPROXY_TRAFFIC, timeout=10)


FAULT_MODES = ["error:2", "error:10", "close", "close-head", "reset", "down", "blackhole"]

# what the test proxy logs for a request it failed, per mode (down: a record without
# a request, the connection was reset as it was accepted; blackhole: nothing, connects
# to it time out)
FAULT_ACTION = {"close": "close", "close-head": "close-head", "reset": "reset",
                "down": "rst-at-accept", "blackhole": None}


def fault_action(mode):
    return "error" if mode.startswith("error:") else FAULT_ACTION[mode]


def assert_fell_back(lab, name, path, mode, res, pairs):
    """The program's requests met the proxy's fault and only then went to the origin
    (the echoes are already known to be direct): the proxy's log and the library's.

    error/close/close-head/reset: the test proxy logged the requests (path, the library's
    x-lunar-host and req-id) with the mode's action, from at least as many connections
    as the fault must have met before a cooldown, and each of them is a request the
    program then got answered directly. down: as many connections reset at accept, and
    no request read. blackhole: the proxy cannot log a connect that never completes;
    the library's 'connect ... timed out' warnings (and the time they took) are the
    evidence."""
    log = lab.testproxy_log()
    met = must_meet_proxy(name)
    ctx = "\ntest proxy log: %s\n%r" % (json.dumps(log)[-4000:], res)
    assert [r for r in log if r.get("kind") == "handshake"], \
        "the test proxy never got the library's handshake" + ctx
    ours = proxy_traffic(log, name, path)
    rsts = [r for r in log if r.get("action") == "rst-at-accept"]
    action = fault_action(mode)
    warned = lib_lines(res, "Lunar Proxy failed (")
    assert len(warned) >= met, "%d 'Lunar Proxy failed' warnings, want >= %d%s" % (
        len(warned), met, ctx)
    if mode == "blackhole":
        assert not ours and not rsts, "blackhole, yet the test proxy read something" + ctx
        timed_out = [ln for ln in warned if "connect to 127.0.0.1:%d: Connection timed out"
                     % lablib.TESTPROXY_TRAFFIC in ln]
        assert len(timed_out) >= met, "want >= %d proxy connect timeouts%s" % (met, ctx)
        assert_library_direct_lines(res, "proxy connect failed", name)
        # each of those connects waited out LUNAR_PROXY_CONNECT_TIMEOUT_MS (300)
        assert res.elapsed >= 0.25, "no connect timeout was waited for" + ctx
        return
    for host, n in connections(name).items():
        tried = lib_lines(res, "%s:80 -> proxy 127.0.0.1:%d" % (host, lablib.TESTPROXY_TRAFFIC))
        if mode == "down":  # the RST may already be there when the library's connect ends
            tried += lib_lines(res, "%s:80 -> direct (proxy connect failed)" % host)
        assert len(tried) >= min(n, met), "%s: %d connections to the proxy, want >= %d%s" % (
            host, len(tried), min(n, met), ctx)
    if mode == "down":
        assert not ours, "the test proxy read a request while down" + ctx
        assert len(rsts) >= met, "%d connections reset at accept, want >= %d%s" % (
            len(rsts), met, ctx)
        # A reset logged may be another connection's (the previous test's check of the
        # port, accepted late): the library's own warnings must be of this proxy too.
        this_proxy = "127.0.0.1:%d" % lablib.TESTPROXY_TRAFFIC
        of_this_proxy = [ln for ln in warned if "connect to" not in ln or this_proxy in ln]
        assert len(of_this_proxy) >= met, "%d warnings of a failure at %s, want >= %d%s" % (
            len(of_this_proxy), this_proxy, met, ctx)
        return
    assert ours, "no request of %s reached the test proxy: never diverted%s" % (name, ctx)
    assert {r.get("action") for r in ours} == {action}, "actions at the proxy" + ctx
    peers = {r["peer"] for r in ours}
    assert len(peers) >= met, "%d proxy connections carried a request, want >= %d%s" % (
        len(peers), met, ctx)
    assert {hdr(r, "x-lunar-host") for r in ours} == set(connections(name)), \
        "x-lunar-host of the requests at the proxy" + ctx
    for r in ours:
        assert UUID_RE.match(hdr(r, "x-lunar-req-id") or ""), "x-lunar-req-id" + ctx
    echoed = {seq_of(e) for e, _ in pairs}
    for r in ours:
        assert seq_of(r) in echoed, \
            "request %r at the proxy was never answered to the program%s" % (seq_of(r), ctx)
    if mode.startswith("error:"):
        code = mode.split(":", 1)[1]
        assert [ln for ln in warned if "x-lunar-error: %s" % code in ln], \
            "no warning names x-lunar-error: %s%s" % (code, ctx)


@pytest.mark.parametrize("name", list(PROGRAMS))
@pytest.mark.parametrize("mode", FAULT_MODES)
def test_proxy_fault_falls_back_to_origin(c_bins, need_lib, testproxy, mode, name):
    """Whatever the proxy does wrong, the program gets the origin's 200 and never
    sees the proxy's error; the origin gets the original request, no x-lunar-*, once.
    And the request did meet the fault first (assert_fell_back): the test proxy's log
    holds it (or, down, the connection it reset; blackhole, the library's connect
    timeouts), so a program the library never diverted fails here."""
    lab = testproxy(mode)
    path = unique_path("fault-" + mode.replace(":", "-"), name)
    res = run_prog(lab, name, path, preload=True, env=TESTPROXY_ENV)
    prefix, pairs = echoes(res, name, path)
    for e, sp in pairs:
        assert_direct(e, res, sp)
    assert_peers(name, prefix, res)
    assert_fell_back(lab, name, path, mode, res, pairs)
    assert_served_once(lab, name, path, pairs, res)


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_proxy_retry_after(c_bins, need_lib, testproxy, name):
    """The proxy answers 429 + x-lunar-retry-after/x-lunar-sequence-id twice: the
    library retries (same req-id, with the sequence id) and the program only sees
    the final 200. The test proxy's log has each answered request's tries under its
    req-id, 429s first and the last one forwarded; the origin got each request once,
    through the test proxy."""
    lab = testproxy("retry:0.05:2")
    path = unique_path("retry", name)
    res = run_prog(lab, name, path, preload=True, env=TESTPROXY_ENV)
    prefix, pairs = echoes(res, name, path)
    for e, sp in pairs:
        assert hdr(e, "x-via-testproxy") == "1", (e, res)
        assert hdr(e, "x-seen-lunar-host") == sp["host"], (e, res)
    traffic = [r for r in lab.testproxy_log()
               if r.get("kind") == "traffic" and r.get("path") == path]
    by_rid = {}
    for r in traffic:
        by_rid.setdefault(hdr(r, "x-lunar-req-id"), []).append(r)
    # the test proxy answers the first two requests it reads with 429 (with several
    # requests in flight, e.g. pipelined or threads, two different ones may get one each)
    retries = sum(len(rs) - 1 for rs in by_rid.values())
    assert retries == 2, "want 2 retries in all, keeping the req-id: %r\n%r" % (
        {k: len(v) for k, v in by_rid.items()}, res)
    final_by_rid = {hdr(e, "x-seen-lunar-req-id"): e for e, _ in pairs}
    first_rid = hdr(traffic[0], "x-lunar-req-id") if traffic else None
    for rid, rs in by_rid.items():
        if len(rs) < 2:
            continue
        seq = [hdr(r, "x-lunar-sequence-id") for r in rs]
        if name == "pipeline" and rid != first_rid:
            # Documented limit (README): a retry answer to the first of pipelined
            # requests resends the ones behind it as new requests, without the
            # sequence id the proxy gave them in answers that were never read.
            assert seq == [None, None], "pipelined follower tries: %r" % seq
            continue
        assert seq[0] is None and all(seq[1:]), "sequence ids on the tries: %r" % seq
        final = final_by_rid.get(rid)
        assert final is not None, "no response for the retried req-id %s\n%r" % (rid, res)
        assert hdr(final, "x-seen-lunar-sequence-id") == seq[-1], (final, res)
    for rid in final_by_rid:
        actions = [r.get("action") for r in by_rid.get(rid, [])]
        assert actions and actions[-1] == "pass" and \
            set(actions[:-1]) <= {"retry-after"}, \
            "req-id %s at the test proxy: %r\n%r" % (rid, actions, res)
    assert_served_once(lab, name, path, pairs, res)


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_failsafe_traffic_port_refused(c_bins, need_lib, haproxy_down, name):
    """The handshake succeeds (test proxy's handshake port) but the traffic port
    refuses: the connect-time fallback, not the 'library disabled' path.

    Nothing listens on the traffic port, so no proxy can log the attempt. The evidence
    that each request was diverted and then fell back: the test proxy logged the
    library's handshake (so the library took the proxy for up), and the library's own
    lines: 'Lunar Proxy failed (connect to 127.0.0.1:8000: Connection refused ...)' for
    at least the connections a cooldown needs, '-> direct (proxy connect failed)' for
    those, '-> direct (cooldown)' for the rest, and no '-> proxy' (a non-blocking
    connect's: no more than went direct after it)."""
    lab = haproxy_down
    lab.start_testproxy()
    lab.testproxy_reset_log()
    path = unique_path("refused", name)
    env = {"LUNAR_PROXY_HOST": "127.0.0.1:%d" % lablib.HAPROXY_TRAFFIC,
           "LUNAR_HANDSHAKE_PORT": str(lablib.TESTPROXY_HANDSHAKE)}
    res = run_prog(lab, name, path, preload=True, env=env)
    prefix, pairs = echoes(res, name, path)
    for e, sp in pairs:
        assert_direct(e, res, sp)
    assert_peers(name, prefix, res)
    assert not lab.port_open("127.0.0.1", lablib.HAPROXY_TRAFFIC), "traffic port is open"
    assert [r for r in lab.testproxy_log() if r.get("kind") == "handshake"
            and (r.get("path") or "").startswith("/handshake")], \
        "the library's handshake never reached the test proxy\n%r" % (res,)
    assert lib_lines(res, "Lunar Proxy at 127.0.0.1:%d is up" % lablib.HAPROXY_TRAFFIC), res
    refused = lib_lines(res, "Lunar Proxy failed (connect to 127.0.0.1:%d: Connection refused"
                        % lablib.HAPROXY_TRAFFIC)
    assert len(refused) >= must_meet_proxy(name), \
        "%d refused connects to the proxy, want >= %d\n%r" % (
            len(refused), must_meet_proxy(name), res)
    assert_library_direct_lines(res, "proxy connect failed", name)
    for host, n in connections(name).items():
        decided = (lib_lines(res, "%s:80 -> direct (proxy connect failed)" % host)
                   + lib_lines(res, "%s:80 -> direct (cooldown)" % host))
        assert len(decided) == n, "%s: %d connections accounted for, want %d\n%r" % (
            host, len(decided), n, res)
    tried = lib_lines(res, "-> proxy")
    if name.startswith("nonblock"):
        # A non-blocking connect returns while the library's connect to the proxy is
        # under way ('-> proxy'); its refusal then sends that connection direct.
        assert len(tried) <= len(lib_lines(res, "-> direct (proxy connect failed)")), res
    else:
        assert not tried, res
    assert_served_once(lab, name, path, pairs, res)


RANDOM_PROGRAMS = ["threads", "pipeline", "keepalive_seq", "nonblock_epoll_et",
                   "nonblock_epoll_post", "fd_reuse_syscall", "send_bytewise", "msg_peek",
                   "nonblock_epoll_et_splice"]


@pytest.mark.parametrize("name", RANDOM_PROGRAMS)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_proxy_random_faults(c_bins, need_lib, testproxy, seed, name):
    """Per proxy connection, the test proxy picks pass/down/error:2/close at random;
    cooldown is kept out of the way so that every request meets the proxy: each
    response is the origin's, through the proxy (headers right) or direct.

    And where each went, from the test proxy's log: each proxied response is a request
    the proxy forwarded (its req-id in a 'pass' record); each program connection
    answered directly met a fault first: the proxy connections that faulted (requests
    answered with an error or a close, connections reset at accept) are exactly as many
    as the program's connections that went direct, and every request the proxy failed
    was then answered directly. The origin got each request once."""
    lab = testproxy("random:%d" % seed)
    path = unique_path("random-%d" % seed, name)
    env = dict(TESTPROXY_ENV, LUNAR_ENTER_COOLDOWN_AFTER_ATTEMPTS="1000")
    res = run_prog(lab, name, path, preload=True, env=env)
    prefix, pairs = echoes(res, name, path)
    for e, sp in pairs:
        if hdr(e, "x-via-testproxy") == "1":
            assert e["server"] == "%s:80" % sp["ip"], (e, res)
            assert hdr(e, "x-seen-lunar-host") == sp["host"], (e, res)
            assert UUID_RE.match(hdr(e, "x-seen-lunar-req-id") or ""), (e, res)
        else:
            assert_direct(e, res, sp)
    assert_random_routes(lab, name, path, res, pairs)
    assert_served_once(lab, name, path, pairs, res)


def assert_random_routes(lab, name, path, res, pairs):
    """test_proxy_random_faults: the test proxy's log against the echoes. Each request is
    routed when it is sent (a keep-alive connection returns to the proxy after a fault),
    so the unit is the request: each one answered directly met a fault first (its own
    answer failed, or the connect of the move back to the proxy was reset), and each
    proxied answer is a request the proxy forwarded."""
    log = lab.testproxy_log()
    ctx = "\ntest proxy log: %s\n%r" % (json.dumps(log)[-4000:], res)
    ours = proxy_traffic(log, name, path)
    rsts = [r for r in log if r.get("action") == "rst-at-accept"]
    assert {r.get("action") for r in ours} <= {"pass", "error", "close"}, ctx
    proxied = [e for e, _ in pairs if hdr(e, "x-via-testproxy") == "1"]
    direct = [e for e, _ in pairs if hdr(e, "x-via-testproxy") != "1"]
    assert len(proxied) + len(direct) == len(pairs), ctx
    passed = [r for r in ours if r.get("action") == "pass"]
    failed = [r for r in ours if r.get("action") != "pass"]
    forwarded = {hdr(r, "x-lunar-req-id") for r in passed}
    answered = {hdr(e, "x-seen-lunar-req-id") for e in proxied}
    assert answered == forwarded, \
        "proxied answers != requests the proxy forwarded (%r vs %r)%s" % (answered, forwarded, ctx)
    faulted = len({r["peer"] for r in failed}) + len(rsts)
    # One fault sends every request unanswered on that proxy connection to the origin:
    # one each, but pipelined requests go there together.
    met_faults = faulted == len(direct) if name != "pipeline" else \
        (faulted == 0) == (not direct) and faulted <= len(direct)
    assert met_faults, \
        "%d proxy connections faulted, %d requests went direct: a direct one that never " \
        "met the proxy?%s" % (faulted, len(direct), ctx)
    direct_seqs = {seq_of(e) for e in direct}
    for r in failed:
        assert seq_of(r) in direct_seqs, \
            "request %r failed at the proxy but not answered directly%s" % (seq_of(r), ctx)


@pytest.mark.parametrize("how", ["no-library", "proxy-elsewhere"])
@pytest.mark.parametrize("mode", FAULT_MODES + ["random:1"])
def test_fault_evidence_rejects_never_diverted(c_bins, need_lib, testproxy, mode, how):
    """Negative control of the evidence above: a run whose request never met the test
    proxy's fault (no library; or the library with LUNAR_PROXY_HOST on a closed port,
    so that it falls back from a refused connect instead) still gets its 200 directly,
    and assert_fell_back / assert_random_routes must reject it."""
    name = "writev_split"
    lab = testproxy(mode)
    path = unique_path("never-%s-%s" % (how, mode.replace(":", "-")), name)
    env = dict(TESTPROXY_ENV)
    if how == "proxy-elsewhere":
        env["LUNAR_PROXY_HOST"] = "127.0.0.1:1"  # nothing listens there
    res = run_prog(lab, name, path, preload=how != "no-library", env=env)
    _, pairs = echoes(res, name, path)
    for e, sp in pairs:
        assert_direct(e, res, sp)
    assert_served_once(lab, name, path, pairs, res)
    with pytest.raises(AssertionError):
        if mode.startswith("random"):
            assert_random_routes(lab, name, path, res, pairs)
        else:
            assert_fell_back(lab, name, path, mode, res, pairs)


def test_connect_of_the_wrong_family_fails_as_without_the_library(c_bins, need_lib, haproxy_up):
    """A connect whose address is of the other family than the socket's fails with the
    kernel's own error (EAFNOSUPPORT, EINVAL), not diverted into a success, and is not
    the proxy failing: with a cooldown after one failure, the same process's next,
    proper connect still goes to the proxy."""
    lab = haproxy_up
    argv = [os.path.join(BIN, "wrong_family"), HOST, "80", "/"]
    plain = lab.run(argv, preload=False, timeout=40)
    res = lab.run(argv, preload=True, debug=True, timeout=40,
                  env={"LUNAR_ENTER_COOLDOWN_AFTER_ATTEMPTS": "1"})
    want = ["v4-socket-v6-address EAFNOSUPPORT", "v6-socket-v4-address EINVAL",
            "v4-socket-v4-address connected"]
    assert plain.rc == 0 and plain.out.decode().split("\n")[:3] == want, plain
    assert res.rc == 0 and res.out.decode().split("\n")[:3] == want, res
    assert not lib_lines(res, "Lunar Proxy failed"), res
    assert len(lib_lines(res, "%s:80 -> proxy" % HOST)) == 1, res


def with_and_without(lab, program, port):
    """Runs c-tests' `program` HOST PORT /c/PROGRAM without the library, then with it
    (DEBUG log; a cooldown after one proxy failure, so that a failure counted shows):
    yields (preload, result, the lines printed before the answer, the answer's echo)."""
    path = "/c/" + program
    argv = [os.path.join(BIN, program), HOST, port, path]
    for preload in (False, True):
        env = {"LUNAR_ENTER_COOLDOWN_AFTER_ATTEMPTS": "1"} if preload else None
        res = lab.run(argv, preload=preload, debug=preload, timeout=40, env=env)
        prefix, pairs = echoes(res, program, path, [spec()])
        yield preload, res, prefix, pairs[0][0]


def test_a_connect_on_a_connected_socket_fails_as_without_the_library(c_bins, need_lib,
                                                                     haproxy_up):
    """connect() on a socket already connected (to a port not intercepted) naming an
    intercepted port: EISCONN as without the library, the first connection left as it
    was (its request answered there, directly), and not the proxy failing: our connect to
    the proxy fails the same way, and must neither dissolve the program's connection nor
    count as a failure (with a cooldown after one, the warning would show)."""
    for preload, res, prefix, echo in with_and_without(haproxy_up, "connect_again", "8080"):
        assert prefix[:1] == ["again EISCONN"], res
        assert_direct(echo, res, spec(), port="8080")
        if preload:
            assert not lib_lines(res, "Lunar Proxy failed"), res


def test_a_connect_while_the_programs_own_is_under_way_fails_as_without_the_library(
        c_bins, need_lib, haproxy_up):
    """connect() naming an intercepted port on a socket whose own non-blocking connect is
    still under way (to a listener whose accept queue is full): EALREADY as without the
    library, the socket not taken to the proxy (its connect to the proxy fails the same
    way, which is the socket's state, not an answer of the proxy), no failure counted
    (with a cooldown after one, the next request would go direct, not through HAProxy)."""
    for preload, res, prefix, echo in with_and_without(haproxy_up, "connect_pending", "80"):
        assert prefix[:1] == ["again EALREADY"], res
        if preload:
            assert_diverted(echo, res, spec())
            assert not lib_lines(res, "Lunar Proxy failed"), res
            assert len(lib_lines(res, "%s:80 -> proxy" % HOST)) == 1, res
        else:
            assert_direct(echo, res, spec())


def test_a_socket_number_given_out_past_the_library_is_not_taken_for_tcp(c_bins, need_lib,
                                                                       haproxy_up):
    """The library knows a socket is TCP from socket()'s arguments (no getsockopt at its
    connect): a TCP socket made and closed, its number given out again by calls the
    library does not see (open, syscall(SYS_socket) of a UDP socket) and connected to an
    intercepted port, is what it is: the file fails with ENOTSOCK as without the library
    (not the proxy failing: a cooldown after one failure would send the last connect
    direct), the UDP socket is connected to its destination, not to the proxy."""
    lab = haproxy_up
    argv = [os.path.join(BIN, "socket_reuse"), HOST, "80", "/"]
    plain = lab.run(argv, preload=False, timeout=40)
    res = lab.run(argv, preload=True, debug=True, timeout=40,
                  env={"LUNAR_ENTER_COOLDOWN_AFTER_ATTEMPTS": "1"})
    want = ["file ENOTSOCK", "udp HOST", "again connected"]
    assert plain.rc == 0 and plain.out.decode().split("\n")[:3] == want, plain
    assert res.rc == 0 and res.out.decode().split("\n")[:3] == want, res
    assert not lib_lines(res, "Lunar Proxy failed"), res
    assert len(lib_lines(res, "%s:80 -> proxy" % HOST)) == 2, res


@pytest.mark.parametrize("program", ["banner_read", "banner_epoll"])
@pytest.mark.parametrize("preload", [False, True])
def test_server_speaks_first_under_blocking_reads(c_bins, need_lib, haproxy_up, preload,
                                                  program):
    """A line protocol whose server speaks first, on port 80, read with blocking reads
    and no timeout (c-tests/banner_read.c), or waited for in epoll, the socket registered
    for input alone (banner_epoll): with the library the exchange is the one the program
    has without it, and nothing reaches the proxy. The library judges the read (the
    registration) after 1 s without input or a write (a reader thread may start before
    its writer's first request: c-tests/reader_first.c stays at the proxy) and sends the
    socket to its destination, which then speaks."""
    lab = haproxy_up
    before = lab.haproxy_log()
    res = lab.run([os.path.join(BIN, program), lablib.BANNER_IP, "80", "/"],
                  preload=preload, debug=preload, timeout=40)
    assert res.rc == 0, res
    lines = res.text_out.splitlines()
    assert lines[0].startswith("220 ") and lines[1:] == ["250 HELLO", "221 bye"], res
    if preload:
        assert lib_lines(res, "-> direct (server speaks first: not HTTP)"), res
        assert "lunar_traffic" not in lab.haproxy_log()[len(before):], res
