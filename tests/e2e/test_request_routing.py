"""Routing per request on keep-alive connections (plain http, port 80): every request is
routed when it is sent, not when its connection was opened.

At each request boundary of a tracked connection the route is decided afresh, as for a
new connection (traffic filter: Host, x-lunar-allow, the lists; failsafe: handshake,
cooldown); when it differs from where the socket is, the same fd moves before the
head leaves, with one DEBUG line (`-> proxy (...)` / `-> direct (...)`).

Every test runs ONE client process making N GETs on one keep-alive connection, each
with its own path (`/bytes/<size>?t=<tag>/r<i>`, a body of known content), and checks
per request: where it went (the origin's log: direct, or through HAProxy / the test
proxy, by the x-via-* header the proxy adds; the test proxy's own log for failed
attempts), that the origin got it exactly once and without any x-lunar-* header, and
the status and body sha256 the program got. Clients (one connection each):
`clients/py_session_seq.py` (requests.Session), `clients/node_seq.js` (http.Agent
keepAlive), `clients/JavaUrlSeq.java` (HttpURLConnection), `clients/JavaClientSeq.java`
(java.net.http.HttpClient, HTTP/1.1), `c-tests/keepalive_loop.c` (one blocking socket;
`keepalive_loop_epoll`: non-blocking in epoll), curl (one URL per `--next` group, `--rate` for the pacing).
"""
import json
import os
import re
import subprocess
import threading
import time

import pytest

from conftest import CLIENT_DIR, JAVA_OPTS, PY, REPO, labmod, sha256

URL = "http://api.example.test"
TESTPROXY_ENV = {"LUNAR_PROXY_HOST": "127.0.0.1:%d" % labmod.TESTPROXY_TRAFFIC,
                 "LUNAR_HANDSHAKE_PORT": str(labmod.TESTPROXY_HANDSHAKE)}
CTESTS = os.path.join(REPO, "c-tests")
CLIENTS = ["py_requests", "node_http", "java_urlconnection", "java_httpclient", "c", "c_epoll",
           "curl"]
PATH_RE = re.compile(r"/r(\d+)$")


# ---- fixtures ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """{"c": c-tests/bin or None, "java": class dir or None}"""
    out = {"c": None, "java": None}
    r = subprocess.run([os.path.join(CTESTS, "build.sh")], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    if r.returncode == 0:
        out["c"] = os.path.join(CTESTS, "bin")
    d = str(tmp_path_factory.mktemp("java-seq"))
    r = subprocess.run(["javac", "-d", d, os.path.join(CLIENT_DIR, "JavaUrlSeq.java"),
                        os.path.join(CLIENT_DIR, "JavaClientSeq.java")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode == 0:
        out["java"] = d
    return out


def size(i):
    return 600 + 97 * i


# ---- one client run ---------------------------------------------------------------------

class Run:
    """One client process making len(steps) requests on one connection.
    steps: list of header lists (one per request; [] for none)."""

    def __init__(self, lab, cname, builds, tag, steps, interval, env, tmp_path, url=URL):
        self.lab, self.cname, self.tag, self.n = lab, cname, tag, len(steps)
        self.dir = str(tmp_path)
        self.paths = ["/bytes/%d?t=%s/r%d" % (size(i), tag, i) for i in range(self.n)]
        specs = ["|".join([p] + hs) for p, hs in zip(self.paths, steps)]
        if cname == "py_requests":
            argv = [PY, os.path.join(CLIENT_DIR, "py_session_seq.py"), url, str(interval)] + specs
        elif cname == "node_http":
            argv = ["/usr/bin/node", os.path.join(CLIENT_DIR, "node_seq.js"), URL, str(interval)] + specs
        elif cname in ("java_urlconnection", "java_httpclient", "java_httpclient_h2c"):
            if not builds["java"]:
                pytest.skip("javac failed or missing")
            main = "JavaUrlSeq" if cname == "java_urlconnection" else "JavaClientSeq"
            h2c = ["-Dseq.h2c=true"] if cname == "java_httpclient_h2c" else []
            argv = ["java"] + JAVA_OPTS + h2c + ["-cp", builds["java"], main, URL,
                                                 str(interval)] + specs
        elif cname in ("c", "c_epoll"):
            if not builds["c"]:
                pytest.skip("c-tests/build.sh failed")
            program = "keepalive_loop" if cname == "c" else "keepalive_loop_epoll"
            argv = [os.path.join(builds["c"], program), "api.example.test", "80",
                    str(int(interval * 1000))] + specs
        elif cname == "curl":
            # one group per URL (its own headers, -o and -w); one connection for all;
            # --rate (global) starts a transfer every `interval` seconds
            argv = ["curl", "--rate", "%d/m" % round(60 / interval)]
            for i, (p, hs) in enumerate(zip(self.paths, steps)):
                argv += (["--next"] if i else []) + ["-sS", "--noproxy", "*"]
                for h in hs:
                    argv += ["-H", h]
                argv += ["-o", os.path.join(self.dir, "curl-%d.body" % i), "-w",
                         '{"i": %d, "status": %%{http_code}, "len": %%{size_download}, '
                         '"connections": %%{num_connects}}\\n' % i, url + p]
        else:
            raise ValueError(cname)
        out = open(os.path.join(self.dir, "client.out"), "wb")
        err = open(os.path.join(self.dir, "client.err"), "wb")
        self.p = lab.spawn(argv, env=env, debug=True, stdout=out, stderr=err)
        out.close(), err.close()
        self.argv = argv

    def wait(self, timeout=90):
        try:
            self.rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.rc = "timeout"
        finally:
            self.lab.stop(self.p)

    def read(self, name):
        with open(os.path.join(self.dir, name), "rb") as f:
            return f.read().decode("utf-8", "replace")

    def answers(self):
        """i -> what the program got {status, len, sha256, connections?, error?}"""
        got = {}
        for ln in self.read("client.out").splitlines():
            if ln.strip():
                a = json.loads(ln)
                if "body_hex" in a:
                    a["sha256"] = sha256(bytes.fromhex(a.pop("body_hex")))
                if self.cname == "curl":
                    try:
                        with open(os.path.join(self.dir, "curl-%d.body" % a["i"]), "rb") as f:
                            a["sha256"] = sha256(f.read())
                    except OSError:
                        a["sha256"] = None
                got[a["i"]] = a
        return got

    def blocks(self):
        """i -> the library's lines after the client's "[client] request i" marker"""
        out, cur = {}, None
        for ln in self.read("client.err").splitlines():
            m = re.match(r"\[client\] request (\d+)$", ln)
            if m:
                cur = int(m.group(1))
                out[cur] = []
            elif cur is not None:
                out[cur].append(ln)
        return out

    def connections(self):
        """New connections the client made (None: it cannot tell)"""
        a = self.answers()
        if self.cname in ("c", "c_epoll"):
            return 1  # one socket, never reconnects (exit 2 on a closed connection)
        if self.cname == "curl":
            return sum(x.get("connections", 0) for x in a.values())
        if self.cname in ("py_requests", "node_http") and a:
            return a[max(a)].get("connections")
        return None


def wait_request(lab, run, i, timeout=30):
    """The origin's record of request i (polls the origin log)."""
    deadline = time.time() + timeout
    while True:
        exited = run.p.poll() is not None
        recs = [r for r in lab.origin_log(contains=run.tag) if r["path"] == run.paths[i]]
        if recs:
            return recs[0]
        if exited or time.time() > deadline:
            raise AssertionError("request r%d never reached the origin (client rc %s)\n%s" % (
                i, run.p.returncode, run.read("client.err")[-3000:]))
        time.sleep(0.02)


def hget(rec, name):
    return [v for k, v in rec["headers"] if k.lower() == name]


def routes(lab, run, tproxy=False):
    """Per request i: {"at_origin": [origin records], "via": "haproxy"|"testproxy"|
    "direct", "t": when the origin got it, "tp": [test proxy actions]}"""
    out = {i: {"at_origin": [], "via": None, "t": None, "tp": [], "tp_end": []} for i in range(run.n)}
    for r in lab.origin_log(contains=run.tag):
        m = PATH_RE.search(r.get("path", ""))
        if m and int(m.group(1)) in out:
            d = out[int(m.group(1))]
            d["at_origin"].append(r)
            d["t"] = r["t"]
            d["via"] = ("haproxy" if hget(r, "x-via-haproxy") else
                        "testproxy" if hget(r, "x-via-testproxy") else "direct")
    if tproxy:
        for r in lab.testproxy_log():
            m = PATH_RE.search(r.get("path") or "")
            if r.get("kind") == "traffic" and run.tag in (r.get("path") or "") and m:
                out[int(m.group(1))]["tp"].append(r.get("action"))
            m = PATH_RE.search(r.get("last_path") or "")
            if r.get("kind") == "conn-end" and run.tag in (r.get("last_path") or "") and m:
                out[int(m.group(1))]["tp_end"].append(r.get("error"))
    return out


def summary(run, rt, answers, want=None):
    blocks = run.blocks()
    lines = ["client %s rc=%s connections=%s" % (run.cname, getattr(run, "rc", "?"), run.connections())]
    for i in range(run.n):
        r, a = rt[i], answers.get(i, {})
        lines.append("r%-2d t=%s want=%-6s via=%-9s origin_x%d proxy=%s%s | got %s %s | %s" % (
            i, "%.2f" % (r["t"] % 100) if r["t"] else "-", (want or {}).get(i, "-"), r["via"],
            len(r["at_origin"]), r["tp"], " ended: %s" % r["tp_end"] if r["tp_end"] else "",
            a.get("status"), a.get("error", ""),
            " / ".join(ln.split("DEBUG: ")[-1] for ln in blocks.get(i, []) if "->" in ln)))
    return "\n".join(lines) + "\n--- client stderr (tail) ---\n" + run.read("client.err")[-4000:]


def check(run, rt, want, one_connection=True, scheme="http"):
    """The common assertions. want: i -> "proxy" | "direct" | None (either): where the
    origin's answer came from. Fails on the first request that went the wrong way.
    scheme: the x-lunar-scheme the proxy must have seen."""
    answers = run.answers()
    info = summary(run, rt, answers, want)
    # every request at the origin exactly once (forwarded by the proxy or sent by the
    # library), never with an x-lunar-* header; proxied ones with Lunar's headers
    for i in range(run.n):
        recs = rt[i]["at_origin"]
        assert len(recs) == 1, "request r%d reached the origin %d times\n%s" % (i, len(recs), info)
        bad = [k for k, _ in recs[0]["headers"] if k.lower().startswith("x-lunar-")]
        assert not bad, "r%d: %s reached the origin\n%s" % (i, bad, info)
        if rt[i]["via"] != "direct":
            counts = dict(kv.split("=") for kv in hget(recs[0], "x-seen-lunar-counts")[0].split(","))
            assert hget(recs[0], "x-seen-lunar-host") == ["api.example.test"] and counts["allow"] == "0" \
                and counts["req-id"] == "1", "r%d: Lunar's headers at the proxy %s\n%s" % (i, counts, info)
            assert hget(recs[0], "x-seen-lunar-scheme") == [scheme], \
                "r%d: x-lunar-scheme %s\n%s" % (i, hget(recs[0], "x-seen-lunar-scheme"), info)
        else:
            assert not [k for k, _ in recs[0]["headers"] if k.lower().startswith("x-seen-")], info
    # where each request went
    for i in range(run.n):
        w = want.get(i)
        got = "direct" if rt[i]["via"] == "direct" else "proxy"
        assert w is None or got == w, "request r%d: expected %s, went %s\n%s" % (
            i, "through the proxy" if w == "proxy" else "to the origin directly",
            "through the proxy" if got == "proxy" else "to the origin directly", info)
    # what the program got
    assert run.rc == 0, "client failed\n" + info
    for i in range(run.n):
        a = answers.get(i, {})
        assert a.get("status") == 200 and a.get("len") == size(i) and \
            a.get("sha256") == sha256(labmod.pattern_bytes(size(i))), \
            "r%d: the program got %s\n%s" % (i, a, info)
    if one_connection:
        assert run.connections() in (1, None), "the client made %s connections\n%s" % (run.connections(), info)
    return info


def check_move_lines(run, rt, info):
    """One DEBUG line per move: request i's first peer differs from where request i-1
    was answered. (curl prints no markers: the number of such lines is checked.)"""
    first = {i: "proxy" if (rt[i]["tp"] or rt[i]["via"] != "direct") else "direct" for i in rt}
    last = {i: "direct" if rt[i]["via"] == "direct" else "proxy" for i in rt}
    moves = [i for i in range(1, run.n) if first[i] != last[i - 1]]

    def is_move(ln, to):
        return "-> " + to in ln and "replaying" not in ln and "retry" not in ln
    if run.cname == "curl":
        n = sum(1 for ln in run.read("client.err").splitlines() if is_move(ln, "proxy") or is_move(ln, "direct"))
        assert n >= 1 + len(moves), "expected %d DEBUG route lines (connect + moves at %s), got %d\n%s" % (
            1 + len(moves), moves, n, info)
        return
    blocks = run.blocks()
    for i in moves:
        assert any(is_move(ln, first[i]) for ln in blocks.get(i, [])), \
            "no DEBUG line for r%d moving to the %s\n%s" % (i, "proxy" if first[i] == "proxy" else "origin", info)


# ---- the scenarios ----------------------------------------------------------------------

COOL = 2  # LUNAR_EXIT_COOLDOWN_AFTER_SEC in these tests


@pytest.mark.parametrize("cname", CLIENTS)
def test_proxy_up_later_moves_connection_to_proxy(lab, builds, need_lib, tag, tmp_path, cname,
                                                  haproxy_restored):
    """HAProxy down when the program starts (handshake fails: everything direct), up
    after request r2: one keep-alive connection, a request every 0.5 s. Requests before
    the start at the origin; requests sent more than the handshake's retry delay
    (LUNAR_EXIT_COOLDOWN_AFTER_SEC=2) after it through HAProxy, on the same connection."""
    lab.stop_haproxy()
    run = Run(lab, cname, builds, tag, [[] for _ in range(16)], 0.5, PROXY_LATER_ENV, tmp_path)
    rt, want = proxy_up_later_routes(lab, run)
    info = check(run, rt, want)
    check_move_lines(run, rt, info)
    assert_one_proxied_connection(rt, info)


PROXY_LATER_ENV = {"LUNAR_EXIT_COOLDOWN_AFTER_SEC": str(COOL)}


def proxy_up_later_routes(lab, run):
    """The proxy-up-later scenario once its 16 requests are under way with HAProxy down:
    HAProxy starts after r2. Returns the routes and the wanted peer per request: the
    origin before the start, the proxy from the handshake's retry delay after it (None
    between: too close to tell); at least three must be at the proxy."""
    wait_request(lab, run, 2)
    lab.start_haproxy()
    ts_up = time.time()
    run.wait()
    rt = routes(lab, run)
    want = {i: ("direct" if r["t"] and r["t"] < ts_up else
                "proxy" if r["t"] and r["t"] > ts_up + COOL + 1.0 else None) for i, r in rt.items()}
    assert sum(1 for w in want.values() if w == "proxy") >= 3, "too few requests after the restart\n" + \
        summary(run, rt, run.answers(), want)
    return rt, want


def assert_one_proxied_connection(rt, info):
    """The requests through HAProxy all came from one connection (one source port)."""
    srcs = {hget(r["at_origin"][0], "x-seen-src")[0] for r in rt.values() if r["via"] == "haproxy"}
    assert len(srcs) == 1, "proxied requests came from %d connections: %s\n%s" % (len(srcs), srcs, info)


@pytest.mark.parametrize("cname", CLIENTS)
def test_error_answer_then_next_request_through_proxy(lab, builds, need_lib, tag, tmp_path, cname,
                                                      testproxy):
    """The test proxy answers r0 with x-lunar-error: 2: r0 is replayed to the origin (the
    connection is there now); one failure is no cooldown (LUNAR_ENTER_COOLDOWN_AFTER_ATTEMPTS
    default 5), so r1..r4 go through the proxy again, on the same connection."""
    testproxy.set_mode("error:2")
    run = Run(lab, cname, builds, tag, [[] for _ in range(5)], 0.6, TESTPROXY_ENV, tmp_path)
    wait_request(lab, run, 0)
    testproxy.set_mode("pass")
    run.wait()
    rt = routes(lab, run, tproxy=True)
    info = summary(run, rt, run.answers())
    assert rt[0]["tp"] == ["error"], "r0 must reach the proxy once and get its error\n" + info
    want = {0: "direct", 1: "proxy", 2: "proxy", 3: "proxy", 4: "proxy"}
    info = check(run, rt, want)
    assert all(rt[i]["tp"] == ["pass"] for i in range(1, 5)), info
    check_move_lines(run, rt, info)


@pytest.mark.parametrize("cname", CLIENTS)
def test_allow_false_on_one_request_of_five(lab, builds, need_lib, tag, tmp_path, cname):
    """`x-lunar-allow: false` on r2 of 5 on one connection through HAProxy: r2 at the
    origin (the header removed), r0, r1, r3, r4 through the proxy."""
    steps = [[], [], ["x-lunar-allow: false"], [], []]
    run = Run(lab, cname, builds, tag, steps, 0.2, None, tmp_path)
    run.wait()
    rt = routes(lab, run)
    info = check(run, rt, {0: "proxy", 1: "proxy", 2: "direct", 3: "proxy", 4: "proxy"})
    check_move_lines(run, rt, info)


def test_requests_after_a_declined_h2c_upgrade_go_through_the_proxy(lab, builds, need_lib, tag,
                                                                      tmp_path):
    """java.net.http.HttpClient with its default version (HTTP/2) offers h2c on a
    connection's first plain-http request (`Upgrade: h2c`); HAProxy answers in HTTP/1.1
    (no 101) and the client goes on in HTTP/1.1 on that connection: every request through
    the proxy with Lunar's headers, every answer the origin's. (Before: the request engine
    took any `Upgrade` for a tunnel: r1.. reached the proxy without Lunar's headers and the
    program got its 401s.)"""
    run = Run(lab, "java_httpclient_h2c", builds, tag, [[] for _ in range(4)], 0.1, None,
              tmp_path)
    run.wait()
    rt = routes(lab, run)
    check(run, rt, {i: "proxy" for i in range(run.n)})


def test_an_accepted_upgrade_passes_the_new_protocol_untouched(lab, need_lib, tag):
    """The other side of the h2c test: an upgrade the origin accepts (101, through
    HAProxy), then messages of the new protocol that a request parser would take for a
    request head (which would get Lunar's lines) or hold as the start of one (`PING`,
    then the client waits for its echo): each comes back byte for byte, at once."""
    res = lab.run([PY, os.path.join(CLIENT_DIR, "py_upgrade_echo.py"), "api.example.test", tag],
                  debug=True, timeout=20)
    assert res.rc == 0 and res.out.decode().split("\n")[:4] == [
        "101", "echo ok 0", "echo ok 1", "echo ok 2"], res.err.decode()[-3000:]
    recs = [r for r in lab.origin_log(contains=tag) if r["path"].startswith("/upgrade")]
    assert len(recs) == 1 and hget(recs[0], "x-seen-lunar-host") == ["api.example.test"], \
        "the upgrade request through the proxy with Lunar's headers: %s" % recs


@pytest.mark.parametrize("cname", CLIENTS)
def test_cooldown_entered_and_left_on_one_connection(lab, builds, need_lib, tag, tmp_path, cname,
                                                     testproxy):
    """LUNAR_ENTER_COOLDOWN_AFTER_ATTEMPTS=2, LUNAR_EXIT_COOLDOWN_AFTER_SEC=2, the test
    proxy answering x-lunar-error: 2, then passing from r1's replay on. r0 and r1 each
    try the proxy and are replayed to the origin (the second failure starts the
    cooldown); requests in the cooldown go to the origin without trying the proxy;
    requests after it through the proxy. One connection throughout."""
    testproxy.set_mode("error:2")
    run = Run(lab, cname, builds, tag, [[] for _ in range(14)], 0.5, COOLDOWN_ENV, tmp_path)
    rt, want = cooldown_routes(lab, run, testproxy)
    info = check(run, rt, want)
    check_move_lines(run, rt, info)


COOLDOWN_ENV = dict(TESTPROXY_ENV, LUNAR_ENTER_COOLDOWN_AFTER_ATTEMPTS="2",
                    LUNAR_EXIT_COOLDOWN_AFTER_SEC=str(COOL))


def cooldown_routes(lab, run, testproxy):
    """The cooldown scenario once its 14 requests are under way with the test proxy
    failing every request: it passes from r1 on; r0 and r1 must have failed at the proxy,
    requests up to COOL s after r1 must not have tried it, later ones went through it.
    Returns the routes and the wanted peer per request (None: too close to tell)."""
    t1 = wait_request(lab, run, 1)["t"]
    testproxy.set_mode("pass")
    run.wait()
    rt = routes(lab, run, tproxy=True)
    want = {i: ("direct" if i < 2 or (r["t"] and r["t"] < t1 + COOL - 0.3) else
                "proxy" if r["t"] and r["t"] > t1 + COOL + 0.7 else None) for i, r in rt.items()}
    info = summary(run, rt, run.answers(), want)
    assert rt[0]["tp"] == ["error"], "r0 must fail at the proxy\n" + info
    assert rt[1]["tp"] == ["error"], "r1 must try the proxy again (no cooldown yet) and fail\n" + info
    in_cool = [i for i in range(2, run.n) if want[i] == "direct"]
    assert len(in_cool) >= 2 and sum(1 for w in want.values() if w == "proxy") >= 3, info
    assert all(not rt[i]["tp"] for i in in_cool), "a request in the cooldown tried the proxy\n" + info
    return rt, want


# ---- chaos: one long-lived pooled connection while the proxy changes ----------------------

CYCLE = ["pass", "error:2", "down", "pass", "error:2", "down", "pass", "error:2"]


@pytest.mark.parametrize("cname", ["py_requests", "node_http"])
def test_chaos_long_lived_connection(lab, builds, need_lib, tag, tmp_path, cname, testproxy):
    """80 requests, one every 0.1 s, on one pooled connection while the test proxy cycles
    pass / error:2 / down (resets established connections, refuses new ones) every
    0.5 s, then passes for good. Every answer intact; every request exactly once at
    the origin (forwarded by the proxy or replayed by the library: never twice, never
    lost); from one cooldown period (LUNAR_EXIT_COOLDOWN_AFTER_SEC=1) after the proxy
    became stable, every request through the proxy."""
    env = dict(TESTPROXY_ENV, LUNAR_ENTER_COOLDOWN_AFTER_ATTEMPTS="3", LUNAR_EXIT_COOLDOWN_AFTER_SEC="1")
    run = Run(lab, cname, builds, tag, [[] for _ in range(80)], 0.1, env, tmp_path)
    stable = {}

    def flip():
        for m in CYCLE:
            testproxy.set_mode(m)
            time.sleep(0.5)
        testproxy.set_mode("pass")
        stable["t"] = time.time()

    wait_request(lab, run, 0)
    th = threading.Thread(target=flip, daemon=True)
    th.start()
    th.join(30)
    run.wait()
    rt = routes(lab, run, tproxy=True)
    want = {i: "proxy" if r["t"] and r["t"] > stable["t"] + 1.0 + 1.0 else None for i, r in rt.items()}
    info = summary(run, rt, run.answers(), want)
    assert sum(1 for w in want.values() if w == "proxy") >= 10, "too few requests after the chaos\n" + info
    for i, r in rt.items():
        assert len(r["tp"]) <= 1, "r%d at the proxy: %s\n%s" % (i, r["tp"], info)
    check(run, rt, want, one_connection=False)
    assert sum(1 for r in rt.values() if set(r["tp"]) - {"pass"}) >= 3, "too little chaos\n" + info
