"""Routing per request on keep-alive https connections (issue 11 item 2): every request
of a tracked https connection is routed when it is sent, as for http
(test_request_routing.py, whose client runs and checks these tests share).

A virtual TLS session (plain HTTP to the proxy with x-lunar-scheme: https) whose next
request must go to the origin (x-lunar-allow: false, a cooldown) leaves for a real TLS
session to the origin made from the program's own context; a session real at the origin
because it fell back (x-lunar-error, a cooldown) becomes virtual at the proxy again at a
later request once the failsafe lets it: its real session is ended (close_notify) and the
same fd moves to the proxy. The program keeps one TLS connection throughout.

Each test runs ONE client (Python requests.Session, curl with --next) making N GETs on
one https connection to api.example.test:443 (and wget, GnuTLS, several URLs on one
connection, for the fallback's return) and checks per request where it went (the
origin's log: through HAProxy / the test proxy, or direct), that the origin got it once,
over TLS (scheme https, SNI api.example.test), without x-lunar-* headers, and the status
and body sha256 the program got; and that no plaintext reached the TLS origin (no failed
TLS handshake logged there during the run).
"""
import os
import time

import pytest

from conftest import assert_ok, describe, echoes, labmod, sha256
from test_https import (API, TLS_PROGRAM_POST, TLS_PROGRAMS, assert_direct_tls,  # noqa: F401
                        c_tls_bins, check_tls_program_answers, run_tls_program)
from test_request_routing import (COOL, COOLDOWN_ENV, PROXY_LATER_ENV, TESTPROXY_ENV, Run, check,
                                  assert_one_proxied_connection, check_move_lines, cooldown_routes,
                                  hget, proxy_up_later_routes, routes, size, summary,
                                  wait_request)

URL = "https://api.example.test"
API_TLS = "%s:443" % labmod.API_IP
CLIENTS = ["py_requests", "curl"]


def https_run(lab, cname, tag, steps, interval, env, tmp_path):
    env = dict(env or {}, **lab.tls_env())
    run = Run(lab, cname, {"c": None, "java": None}, tag, steps, interval, env, tmp_path, url=URL)
    run.t0 = time.time()
    return run


@pytest.mark.parametrize("cname", CLIENTS)
def test_https_proxy_up_later_moves_connection_to_proxy(lab, need_lib, tag, tmp_path, cname,
                                                        haproxy_restored):
    """HAProxy down when the program starts (handshake fails: the 443 connection goes
    direct at connect, the program's own TLS session to the origin), up after r2: one
    https connection, a request every 0.5 s. Requests before the start at the origin;
    requests sent more than the handshake's retry delay after it through HAProxy: the
    program's real session was ended (close_notify) and the same fd serves it virtually
    at the proxy."""
    lab.stop_haproxy()
    run = https_run(lab, cname, tag, [[] for _ in range(16)], 0.5, PROXY_LATER_ENV, tmp_path)
    rt, want = proxy_up_later_routes(lab, run)
    info = check_tls(lab, run, rt, want)
    check_move_lines(run, rt, info)
    assert "close_notify sent" in run.read("client.err"), info
    assert_one_proxied_connection(rt, info)


def check_tls(lab, run, rt, want, one_connection=True):
    """check() with x-lunar-scheme: https, and every request over TLS at the https
    origin; nothing but TLS reached that origin during the run."""
    info = check(run, rt, want, one_connection=one_connection, scheme="https")
    for i in range(run.n):
        rec = rt[i]["at_origin"][0]
        assert rec.get("scheme") == "https" and rec.get("server") == API_TLS \
            and rec.get("sni") == "api.example.test", \
            "r%d did not reach the https origin over TLS: %s\n%s" % (
                i, {k: rec.get(k) for k in ("scheme", "server", "sni")}, info)
    bad = [r for r in lab.origin_log() if r.get("server") == API_TLS and "tls_error" in r
           and r.get("t", run.t0) >= run.t0]
    assert not bad, "the TLS origin saw a failed handshake (plaintext?): %s\n%s" % (bad, info)
    return info


@pytest.mark.parametrize("cname", CLIENTS)
def test_https_allow_false_on_one_request_of_five(lab, need_lib, tag, tmp_path, cname):
    """`x-lunar-allow: false` on r2 of 5 on one https connection through HAProxy: r2
    leaves the virtual session for a real TLS session at the origin (the header
    removed), r3 brings the session back to the proxy; r0, r1, r3, r4 through it."""
    steps = [[], [], ["x-lunar-allow: false"], [], []]
    run = https_run(lab, cname, tag, steps, 0.2, None, tmp_path)
    run.wait()
    rt = routes(lab, run)
    info = check_tls(lab, run, rt, {0: "proxy", 1: "proxy", 2: "direct", 3: "proxy", 4: "proxy"})
    check_move_lines(run, rt, info)


@pytest.mark.parametrize("cname", CLIENTS)
def test_https_error_answer_then_next_request_through_proxy(lab, need_lib, tag, tmp_path, cname,
                                                            testproxy):
    """The test proxy answers r0 with x-lunar-error: 2: r0 is replayed to the origin in a
    real TLS session (the fallback); one failure is no cooldown, so r1 ends that session
    and goes through the proxy again, virtually, on the same connection, as do r2..r4."""
    testproxy.set_mode("error:2")
    run = https_run(lab, cname, tag, [[] for _ in range(5)], 0.6, TESTPROXY_ENV, tmp_path)
    wait_request(lab, run, 0)
    testproxy.set_mode("pass")
    run.wait()
    rt = routes(lab, run, tproxy=True)
    info = summary(run, rt, run.answers())
    assert rt[0]["tp"] == ["error"], "r0 must reach the proxy once and get its error\n" + info
    want = {0: "direct", 1: "proxy", 2: "proxy", 3: "proxy", 4: "proxy"}
    info = check_tls(lab, run, rt, want)
    assert all(rt[i]["tp"] == ["pass"] for i in range(1, 5)), info
    check_move_lines(run, rt, info)


@pytest.mark.parametrize("cname", CLIENTS)
def test_https_cooldown_entered_and_left_on_one_connection(lab, need_lib, tag, tmp_path, cname,
                                                           testproxy):
    """LUNAR_ENTER_COOLDOWN_AFTER_ATTEMPTS=2, LUNAR_EXIT_COOLDOWN_AFTER_SEC=2, the test
    proxy answering x-lunar-error: 2 until r1 was replayed. r0 fails at the proxy and is
    replayed in a real session; r1 comes back to the proxy (no cooldown yet), fails, and
    is replayed in a new real session (the cooldown starts); requests in the cooldown stay
    in that real session; requests after it go through the proxy, virtually again."""
    testproxy.set_mode("error:2")
    run = https_run(lab, cname, tag, [[] for _ in range(14)], 0.5, COOLDOWN_ENV, tmp_path)
    rt, want = cooldown_routes(lab, run, testproxy)
    info = check_tls(lab, run, rt, want)
    check_move_lines(run, rt, info)


class WgetRun:
    """wget (GnuTLS) fetching N URLs on one keep-alive connection (-d shows its reuse),
    all bodies to one file: what the program got is checked as their concatenation."""

    def __init__(self, lab, tag, n, env, tmp_path, wait=0.3):
        self.lab, self.tag, self.n, self.cname = lab, tag, n, "wget"
        self.dir = str(tmp_path)
        self.paths = ["/bytes/%d?t=%s/r%d" % (size(i), tag, i) for i in range(n)]
        self.body = os.path.join(self.dir, "bodies")
        argv = ["wget", "-d", "-O", self.body, "--tries=1", "--timeout=30", "--no-proxy",
                "--wait=%s" % wait] + [URL + p for p in self.paths]
        env = dict(env or {}, **lab.tls_env())
        err = open(os.path.join(self.dir, "client.err"), "wb")
        self.t0 = time.time()
        self.p = lab.spawn(argv, env=env, debug=True, stderr=err)
        err.close()

    def wait(self, timeout=90):
        try:
            self.rc = self.p.wait(timeout)
        except Exception:
            self.rc = "timeout"
        finally:
            self.lab.stop(self.p)

    def read(self, name):
        with open(os.path.join(self.dir, name), "rb") as f:
            return f.read().decode("utf-8", "replace")


def check_wget(run, rt, want):
    """wget's bodies, each request once at the https origin over TLS, where it went, one
    connection. want: i -> "proxy" | "direct" | None."""
    err = run.read("client.err")
    info = "\n".join("r%d want=%s via=%s origin_x%d proxy=%s" % (
        i, want.get(i), rt[i]["via"], len(rt[i]["at_origin"]), rt[i]["tp"]) for i in range(run.n))
    info += "\n--- wget -d (tail) ---\n" + err[-4000:]
    assert run.rc == 0, "wget failed\n" + info
    with open(run.body, "rb") as f:
        got = f.read()
    want_bytes = b"".join(labmod.pattern_bytes(size(i)) for i in range(run.n))
    assert sha256(got) == sha256(want_bytes), "wget got %d bytes, not the %d expected\n%s" % (
        len(got), len(want_bytes), info)
    for i in range(run.n):
        assert len(rt[i]["at_origin"]) == 1, "r%d reached the origin %d times\n%s" % (
            i, len(rt[i]["at_origin"]), info)
        rec = rt[i]["at_origin"][0]
        assert rec.get("scheme") == "https" and rec.get("server") == API_TLS, info
        assert not [k for k, _ in rec["headers"] if k.lower().startswith("x-lunar-")], info
        got_via = "direct" if rt[i]["via"] == "direct" else "proxy"
        assert want.get(i) in (None, got_via), "r%d went %s\n%s" % (i, rt[i]["via"], info)
    assert err.count("Reusing existing connection") >= run.n - 1, "wget reconnected\n" + info
    assert "close_notify sent" in err, info
    return info


def test_https_proxy_up_later_moves_connection_to_proxy_wget(lab, need_lib, tag, tmp_path,
                                                             haproxy_restored):
    """GnuTLS: HAProxy down when wget starts (its own TLS session to the origin, followed),
    up after r2: later requests on the same connection through HAProxy (gnutls_bye)."""
    lab.stop_haproxy()
    run = WgetRun(lab, tag, 14, PROXY_LATER_ENV, tmp_path, wait=0.5)
    wait_request(lab, run, 2)
    lab.start_haproxy()
    ts_up = time.time()
    run.wait()
    rt = routes(lab, run)
    want = {i: ("direct" if r["t"] and r["t"] < ts_up else
                "proxy" if r["t"] and r["t"] > ts_up + COOL + 1.0 else None) for i, r in rt.items()}
    assert sum(1 for w in want.values() if w == "proxy") >= 3, "too few requests after the restart"
    check_wget(run, rt, want)


def test_https_error_answer_then_next_request_through_proxy_wget(lab, need_lib, tag, tmp_path,
                                                                 testproxy):
    """GnuTLS: the test proxy answers r0 with x-lunar-error: 2: r0 is replayed in a real
    session at the origin; r1..r3 end it (gnutls_bye) and go through the proxy again."""
    testproxy.set_mode("error:2")
    run = WgetRun(lab, tag, 4, TESTPROXY_ENV, tmp_path)
    wait_request(lab, run, 0)
    testproxy.set_mode("pass")
    run.wait()
    rt = routes(lab, run, tproxy=True)
    info = check_wget(run, rt, {i: "direct" if i == 0 else "proxy" for i in range(run.n)})
    assert rt[0]["tp"] == ["error"], "r0 must reach the proxy once and get its error\n" + info
    assert all(rt[i]["tp"] == ["pass"] for i in range(1, run.n)), info


# ---- the C TLS programs (c-tests/tls_*: a GET then a POST on one connection) ------------

@pytest.mark.parametrize("prog", TLS_PROGRAMS)
def test_https_c_program_proxy_down_keeps_its_own_session_intact(lab, need_lib, c_tls_bins, tag,
                                                                 prog, haproxy_restored):
    """HAProxy down: the connection goes direct at connect and the program's own TLS
    session is followed (socket BIO, custom BIO, non-blocking epoll with a 2 MB POST
    meeting WANT_WRITE, GnuTLS): both answers intact, both requests once at the origin
    over TLS on the program's one connection, nothing moved (the failsafe still says
    direct)."""
    lab.stop_haproxy()
    res = run_tls_program(lab, c_tls_bins, prog, API, 443, tag)
    es = check_tls_program_answers(prog, res, tag, API_TLS)
    for e in es:
        assert_direct_tls(e, res, path=tag)
    err = res.err.decode("utf-8", "replace")
    assert "TLS session at the origin followed" in err, describe(res)
    assert "-> proxy" not in err, describe(res)


@pytest.mark.parametrize("prog", TLS_PROGRAMS)
def test_https_c_program_fallback_returns_to_the_proxy_for_the_next_request(
        lab, need_lib, c_tls_bins, tag, prog, testproxy):
    """The test proxy answers every request with x-lunar-error: 2 (no cooldown: 5 failures
    needed). The GET fails at the proxy and is replayed in a real session at the origin;
    the POST (2 MB for tls_nonblock_epoll, replayable with a 4 MiB cap) ends that session,
    returns to the proxy, fails there too and is replayed in a new real session. Both
    answers intact, each request once at the origin over TLS and once at the proxy."""
    testproxy.set_mode("error:2")
    env = dict(TESTPROXY_ENV, LUNAR_REPLAY_MAX_BYTES=str(4 * 1024 * 1024))
    res = lab.run([os.path.join(c_tls_bins, prog), API, "443", tag, lab.ca_file], env=env,
                  debug=True, timeout=60)
    assert_ok(res)
    es = echoes(res)
    assert [e["method"] for e in es] == ["GET", "POST"], describe(res)
    n = TLS_PROGRAM_POST.get(prog, 100000)
    assert es[1]["body_sha256"] == sha256(labmod.pattern_bytes(n)), "POST body at the origin"
    for e in es:
        assert_direct_tls(e, res, path=tag)
    at_origin = [r for r in lab.origin_log(contains=tag) if r.get("path") == tag]
    assert sorted(r["method"] for r in at_origin) == ["GET", "POST"], describe(res)
    at_proxy = [r for r in testproxy.testproxy_log() if r.get("kind") == "traffic"
                and r.get("path") == tag]
    assert sorted(r["method"] for r in at_proxy) == ["GET", "POST"], \
        "the POST did not return to the proxy: %s\n%s" % (at_proxy, describe(res))
    err = res.err.decode("utf-8", "replace")
    assert "close_notify sent" in err and "virtual again" in err, describe(res)
