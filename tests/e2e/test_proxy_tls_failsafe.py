"""Issue 12: the failsafe and the retry protocol over the library's TLS link to the proxy.

The clear-text tests (test_failsafe.py, test_recovery.py, test_c_programs.py) play
proxy faults with the lab's test proxy on 127.0.0.1:9000. Here the same test proxy is
reached over TLS: LUNAR_PROXY_SUPPORT_TLS=1, LUNAR_PROXY_HOST=proxy.lunar.test:8410,
LUNAR_HANDSHAKE_PORT=8411, LUNAR_PROXY_CA_FILE=<the lab CA> (no other trust). 8410 and
8411 are HAProxy frontends in mode tcp (tests/lab/README.md, "The test proxy over
TLS"): they end TLS with the proxy's good certificate and pass the plaintext, byte for
byte, to the test proxy's traffic port (9000) and handshake port (9081), one backend
connection per client connection. So every fault the test proxy plays (x-lunar-error,
closing or resetting after the request, mid-request, after part of a response head,
RST at accept, retry-after, a failed handshake) reaches the program's socket inside
our TLS session, as the library meets it in production.

What a test reads, as a user would check it:
- the program: exit status, the answers it printed (the origin's JSON echo: which
  server answered, through the test proxy or not, the body sha256 it received);
- the origin's log (each request once), the test proxy's log (what came out of the
  TLS link: method, path, x-lunar-* headers, body sha256, the connection it came on,
  what the proxy did with it);
- HAProxy: connections accepted by the TLS binds 8410/8411 (stats socket), and its log
  (`lunar_testproxy_tls~`: the frontend of a TLS bind);
- the library's warnings on stderr ("Lunar Proxy failed (...)": one per failure).
"""
import json
import os
import random
import re
import socket
import ssl
import time

import pytest

from conftest import (CLIENT_DIR, PY, UUID4, assert_direct, describe, echoes, hdr, labmod,
                      make_client, sha256)
from test_c_programs import BIG_POST_BODY, KEEPALIVE_BODY, c_bins, split_output  # noqa: F401
from test_https import HttpsClient, assert_direct_tls, venv_python  # noqa: F401
from test_proxy_tls import new_log
from test_recovery import ERR_HUP_FATAL, SHUTDOWN_AFTER_RESET, parse_curl_i, resp_hdrs, show

API = "203.0.113.10:80"
URL = "http://api.example.test"
PROXY_NAME = labmod.PROXY_NAME                            # proxy.lunar.test = 127.0.0.1
TP_TLS = labmod.HAPROXY_TESTPROXY_TLS_TRAFFIC             # 8410 -> test proxy 9000
TP_TLS_HS = labmod.HAPROXY_TESTPROXY_TLS_HANDSHAKE        # 8411 -> test proxy 9081
FRONT = labmod.TESTPROXY_TLS_FRONTEND                     # lunar_testproxy_tls
HS_FRONT = labmod.TESTPROXY_TLS_HANDSHAKE_FRONTEND        # lunar_testproxy_handshake_tls
LIB_LINE = "[lunar-intercept "
POST_BODY = random.Random(12).randbytes(300000)
CT = "Content-Type: application/octet-stream"

# The programs, and the requests each sends (in order) to URL + tag
PROGS = {
    "curl": [("POST", POST_BODY)],                        # blocking, its own poll loop
    "py_requests": [("POST", POST_BODY)],                 # urllib3 over Python's socket
    "nonblock_epoll": [("GET", b"")],                     # C, non-blocking connect, epoll
    "nonblock_epoll_post": [("POST", BIG_POST_BODY)],     # C, epoll, 2 MB, short writes
    "keepalive_seq": [("GET", b""), ("POST", KEEPALIVE_BODY), ("GET", b"")],  # C, blocking
}
C_PROGS = ("nonblock_epoll", "nonblock_epoll_post", "keepalive_seq")


def tp_env(lab, extra=None):
    """TLS to the test proxy: traffic 8410, handshake 8411 (both TLS, proxy.lunar.test),
    the lab CA as LUNAR_PROXY_CA_FILE and nothing else trusted."""
    env = {"LUNAR_PROXY_SUPPORT_TLS": "1",
           "LUNAR_PROXY_HOST": "%s:%d" % (PROXY_NAME, TP_TLS),
           "LUNAR_HANDSHAKE_PORT": str(TP_TLS_HS),
           "LUNAR_PROXY_CA_FILE": lab.ca_file,
           "SSL_CERT_FILE": None, "SSL_CERT_DIR": None,
           # the 2 MB POST of nonblock_epoll_post must stay replayable (default 1 MiB)
           "LUNAR_REPLAY_MAX_BYTES": str(4 * 1024 * 1024)}
    env.update(extra or {})
    return env


class Mark:
    """Where HAProxy's TLS binds 8410/8411 and its log stand before a test's program."""

    def __init__(self, lab):
        self.lab = lab
        self.log = lab.haproxy_log()
        self.traffic0 = lab.haproxy_sessions(FRONT, "tls")
        self.hs0 = lab.haproxy_sessions(HS_FRONT, "tls")

    def tls_connections(self):
        """TLS connections the test proxy's TLS traffic port (8410) accepted since."""
        return self.lab.haproxy_sessions(FRONT, "tls") - self.traffic0

    def handshake_connections(self):
        return self.lab.haproxy_sessions(HS_FRONT, "tls") - self.hs0

    def lines(self, frontend=FRONT):
        """haproxy.log lines of `frontend` written since (over TLS: "<frontend>~")."""
        return [ln for ln in new_log(self.lab, self.log) if " %s~ " % frontend in ln]


@pytest.fixture
def tp(lab):
    """HAProxy and the test proxy up, pass mode, unmanaged handshake, an empty log; the
    same again after the test. Yields a Mark taken once everything is ready."""
    lab.start_haproxy()
    lab.start_testproxy()
    lab.set_mode("pass")
    lab.set_testproxy_handshake("unmanaged")
    deadline = time.time() + 5  # a blackhole left by another test ends within ~0.1 s
    while not lab.port_open("127.0.0.1", labmod.TESTPROXY_TRAFFIC, timeout=0.2):
        assert time.time() < deadline, "the test proxy does not accept connections"
    lab.testproxy_reset_log()
    try:
        yield Mark(lab)
    finally:
        lab.set_mode("pass")
        lab.set_testproxy_handshake("unmanaged")


def warnings(res):
    return [ln for ln in res.text_err.splitlines()
            if ln.startswith(LIB_LINE) and "WARNING" in ln]


def traffic(lab, tag):
    """The test proxy's records of requests to this test's path (in arrival order)."""
    return [r for r in lab.testproxy_log() if r.get("kind") == "traffic" and r.get("path") == tag]


def rhdrs(rec, name):
    n = name.lower()
    return [v for k, v in rec["headers"] if k.lower() == n]


def run_prog(lab, prog, tag, tmpdir, venv_python, c_bins, extra=None, headers=(),  # noqa: F811
             debug=False):
    """Run one of PROGS against URL + tag over the TLS link. Returns (res, echoes)."""
    env = tp_env(lab, extra)
    if prog == "curl":
        res = make_client("curl", lab, None, tmpdir).run(
            "POST", URL + tag, data=POST_BODY, headers=[CT] + list(headers), env=env,
            debug=debug, timeout=30)
    elif prog == "py_requests":
        res = HttpsClient("py_requests", lab, None, venv_python, tmpdir).run(
            "POST", URL + tag, data=POST_BODY, headers=[CT] + list(headers), env=env,
            debug=debug, timeout=30)
    else:
        assert not headers
        res = lab.run([os.path.join(c_bins, prog), "api.example.test", "80", tag], env=env,
                      debug=debug, timeout=30)
    if prog in C_PROGS:
        es = split_output(res.text_out)[1] if res.rc == 0 else []
    else:
        es = echoes(res) if res.rc == 0 else []
    return res, es


def assert_answers(prog, tag, res, es, via_testproxy):
    """The program got one answer per request, each with its method and body intact
    (sha256 as the origin received it); from the origin directly (nothing of Lunar's)
    or through the test proxy."""
    want = PROGS[prog]
    assert res.rc == 0, "the program failed\n" + describe(res)
    assert len(es) == len(want), "%d answers, want %d\n%s" % (len(es), len(want), describe(res))
    for e, (method, body) in zip(es, want):
        ctx = "\norigin saw: %s\n%s" % (json.dumps(e["headers"])[:1500], describe(res))
        assert e["method"] == method, "method" + ctx
        assert (e["body_len"], e["body_sha256"]) == (len(body), sha256(body)), \
            "the request body the origin received differs" + ctx
        if via_testproxy:
            assert e["server"] == API and e["path"] == tag, ctx
            assert hdr(e, "x-via-testproxy") == "1", "not answered through the test proxy" + ctx
            assert hdr(e, "x-seen-lunar-host") == "api.example.test", ctx
        else:
            assert_direct(e, res, origin=API, path=tag)


def assert_origin_once(lab, prog, tag, res):
    """The origin got each of the program's requests exactly once, bodies intact."""
    recs = lab.origin_log(contains=tag)
    want = PROGS[prog]
    assert sorted(r["body_sha256"] for r in recs) == sorted(sha256(b) for _, b in want), \
        "the origin got %d requests for %d sent\n%s\n%s" % (
            len(recs), len(want), [(r["method"], r["body_len"]) for r in recs], describe(res))


# ---- the lab's side alone (no library) ----------------------------------------------

def test_lab_testproxy_behind_tls(tp, tag):
    """8410 and 8411 end TLS with proxy.lunar.test's certificate (verified with the lab
    CA) and carry the plaintext to the test proxy: its modes apply as they are, a new
    handshake answer too; HAProxy counts and logs each TLS connection."""
    lab = tp.lab
    ctx = ssl.create_default_context(cafile=lab.ca_file)
    ctx.set_alpn_protocols(["http/1.1"])

    def request(port, path, extra=""):
        def do():
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                with ctx.wrap_socket(s, server_hostname=PROXY_NAME) as t:
                    t.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n"
                               % (path, PROXY_NAME, extra)).encode())
                    data = b""
                    while True:
                        chunk = t.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    return t.version(), data
        return lab.in_ns(do)

    lunar = "x-lunar-host: api.example.test\r\n"
    version, data = request(TP_TLS, tag, lunar)
    head, _, body = data.partition(b"\r\n\r\n")
    assert version in ("TLSv1.3", "TLSv1.2") and head.startswith(b"HTTP/1.1 200"), data[:300]
    e = json.loads(body)
    assert e["server"] == API and e["path"] == tag and hdr(e, "x-via-testproxy") == "1", e
    lab.set_mode("error:2")
    _, data = request(TP_TLS, tag + "/error", lunar)
    assert data.startswith(b"HTTP/1.1 503") and b"\r\nx-lunar-error: 2\r\n" in data, data
    _, data = request(TP_TLS_HS, "/handshake")
    assert data.endswith(b'{"managed": false}'), data
    lab.set_testproxy_handshake("managed")
    _, data = request(TP_TLS_HS, "/handshake")
    assert data.endswith(b'{"managed": true}'), data
    assert [r["action"] for r in traffic(lab, tag)] == ["pass"]
    assert [r["action"] for r in traffic(lab, tag + "/error")] == ["error"]
    assert tp.tls_connections() == 2 and tp.handshake_connections() == 2
    assert len(tp.lines()) == 2 and len(tp.lines(HS_FRONT)) == 2, new_log(lab, tp.log)


# ---- through the test proxy over TLS: the baseline -------------------------------------

@pytest.mark.parametrize("prog", sorted(PROGS))
def test_pass_mode_over_tls(prog, tp, need_lib, venv_python, c_bins, tmp_path, tag):  # noqa: F811
    """In pass mode every request goes through the test proxy over the TLS link, with
    Lunar's headers, one TLS connection per program connection, the handshake over TLS
    too (8411), no warning: the faults below are met on a working TLS link."""
    lab = tp.lab
    res, es = run_prog(lab, prog, tag, str(tmp_path), venv_python, c_bins)
    assert_answers(prog, tag, res, es, via_testproxy=True)
    assert not warnings(res), describe(res)
    recs = traffic(lab, tag)
    ctx = "\ntest proxy saw: %s\n%s" % ([(r["action"], r["peer"]) for r in recs], describe(res))
    assert [r["action"] for r in recs] == ["pass"] * len(PROGS[prog]), ctx
    for r in recs:
        assert rhdrs(r, "x-lunar-host") == ["api.example.test"], r["headers"]
        assert UUID4.match((rhdrs(r, "x-lunar-req-id") or [""])[0]), r["headers"]
        assert rhdrs(r, "x-lunar-scheme") == ["http"], r["headers"]
    assert len({r["peer"] for r in recs}) == 1, "one program connection, one proxy connection" + ctx
    assert tp.tls_connections() == 1, ctx
    assert tp.handshake_connections() == 1, ctx
    assert [r for r in lab.testproxy_log() if r.get("kind") == "handshake"], ctx
    assert_origin_once(lab, prog, tag, res)


# ---- faults of the proxy after the TLS link is up: replayed to the origin ----------------

# test proxy mode -> the action it logs for the request it failed
FAULTS = {
    "error:2": "error",            # 503 x-lunar-error: 2 (endpoint cannot be reached)
    "error:5": "error",            # 503 x-lunar-error: 5 (could not resolve host)
    "error:10": "error",
    "close": "close",              # FIN after the whole request
    "close-head": "close-head",    # FIN after the head: mid-request for a body (RST)
    "reset": "reset",              # RST after the whole request
    "down": "rst-at-accept",       # RST as the proxy's connection is accepted
    "head-part-close": "head-part-close",  # 22 bytes of a response head, then FIN
    "head-part-reset": "head-part-reset",  # the same, then RST
}


@pytest.mark.parametrize("prog", sorted(PROGS))
@pytest.mark.parametrize("mode", list(FAULTS))
def test_proxy_fault_over_tls_served_by_origin(mode, prog, tp, need_lib, venv_python, c_bins,  # noqa: F811
                                               tmp_path, tag):
    """Whatever the test proxy does wrong behind the TLS link, the program gets the
    origin's 200 for each request, its body intact (sha256), nothing of Lunar's at the
    origin, each request there once. Each request met the fault first: the test proxy
    logged it (`down`: the connection it reset), on a TLS connection of its own (a
    failed link is not reused; keepalive_seq's next request returns to the proxy over a
    new one), and the library wrote one warning per failure."""
    lab = tp.lab
    lab.set_mode(mode)
    res, es = run_prog(lab, prog, tag, str(tmp_path), venv_python, c_bins)
    assert_answers(prog, tag, res, es, via_testproxy=False)
    assert_origin_once(lab, prog, tag, res)
    n = len(PROGS[prog])
    log = lab.testproxy_log()
    if mode == "down":
        met = [r for r in log if r.get("action") == "rst-at-accept"]
        assert not [r for r in log if r.get("kind") == "traffic" and r.get("path")], \
            "the test proxy read a request while down"
    else:
        met = [r for r in log if r.get("kind") == "traffic" and r.get("path") == tag]
    ctx = "\ntest proxy saw: %s\nhaproxy.log:\n%s\n%s" % (
        [(r.get("action"), r.get("peer"), r.get("body_len")) for r in log],
        "\n".join(tp.lines()), describe(res))
    assert [r["action"] for r in met] == [FAULTS[mode]] * n, \
        "each request must meet the fault once" + ctx
    if mode != "down":
        for r, (method, body) in zip(met, PROGS[prog]):
            assert r["method"] == method and rhdrs(r, "x-lunar-host") == ["api.example.test"], ctx
            if mode != "close-head":  # close-head does not read the body
                assert r["body_sha256"] == sha256(body), "the body at the proxy differs" + ctx
    assert len({r["peer"] for r in met}) == n, "one proxy connection per failure" + ctx
    assert tp.tls_connections() == n, "TLS connections to 8410: %d, want %d%s" % (
        tp.tls_connections(), n, ctx)
    assert len(tp.lines()) == n, "HAProxy's log of 8410 (over TLS)" + ctx
    w = warnings(res)
    assert len(w) == n and all("Lunar Proxy failed (" in ln for ln in w), \
        "want %d 'Lunar Proxy failed (' warnings%s" % (n, ctx)
    if mode.startswith("error:"):
        code = mode.split(":")[1]
        assert all("x-lunar-error: %s" % code in ln for ln in w), ctx


@pytest.mark.parametrize("prog", ["curl", "py_requests"])
def test_error_replay_is_the_programs_request(prog, tp, need_lib, venv_python, c_bins,  # noqa: F811
                                              tmp_path, tag):
    """error:2 over the TLS link, the program sending `x-lunar-allow: true` and a 300 KB
    body: the origin receives exactly the header list it receives from the same program
    without the library, x-lunar-allow removed, and the same body. The proxy got the
    request (out of the TLS link) with Lunar's headers and without x-lunar-allow."""
    lab = tp.lab
    extra = ["x-lunar-allow: true", "X-Trace-Token: tr-tls-7f3a"]
    base = tag + "/baseline"
    if prog == "curl":
        b = make_client("curl", lab, None, str(tmp_path)).run(
            "POST", URL + base, data=POST_BODY, headers=[CT] + extra, preload=False,
            proxy=False, debug=False)
    else:
        b = HttpsClient("py_requests", lab, None, venv_python, str(tmp_path)).run(
            "POST", URL + base, data=POST_BODY, headers=[CT] + extra, preload=False,
            proxy=False, debug=False)
    assert b.rc == 0, describe(b)
    bh = echoes(b)[0]["headers"]
    want = sorted(h for h in bh if h[0].lower() != "x-lunar-allow")
    assert len(want) == len(bh) - 1, "the baseline did not send x-lunar-allow"

    lab.set_mode("error:2")
    res, es = run_prog(lab, prog, tag, str(tmp_path), venv_python, c_bins, headers=extra)
    assert_answers(prog, tag, res, es, via_testproxy=False)
    assert sorted(es[0]["headers"]) == want, \
        "the origin must get the program's request unmodified but for x-lunar-allow\n" \
        "without the library: %s\nreplayed:            %s\n%s" % (want, sorted(es[0]["headers"]),
                                                                 describe(res))
    recs = traffic(lab, tag)
    assert [r["action"] for r in recs] == ["error"], describe(res)
    assert rhdrs(recs[0], "x-lunar-allow") == [], "x-lunar-allow reached the proxy"
    assert rhdrs(recs[0], "x-trace-token") == ["tr-tls-7f3a"], recs[0]["headers"]
    assert recs[0]["body_sha256"] == sha256(POST_BODY)
    assert len(warnings(res)) == 1, describe(res)


def test_origin_5xx_through_the_proxy_is_not_a_failure(tp, need_lib, tag):
    """The API's own 503 (no x-lunar-error) through the TLS link is its answer: passed to
    the program, not replayed, no warning."""
    lab = tp.lab
    res = lab.run(["curl", "-sS", "-i", "%s/status/503?%s" % (URL, tag[1:])], env=tp_env(lab),
                  debug=False, timeout=30)
    assert res.rc == 0, describe(res)
    resp = parse_curl_i(res.out)
    assert resp["status"] == 503, describe(res)
    assert not [v for k, v in resp["headers"] if k.lower() == "x-lunar-error"], resp
    assert hdr(json.loads(resp["body_text"]), "x-via-testproxy") == "1", resp
    assert len(lab.origin_log(contains=tag[1:])) == 1, "the API's 503 was replayed"
    assert not warnings(res), describe(res)
    assert tp.tls_connections() == 1


def test_https_fault_over_tls_link_goes_to_the_origin_over_real_tls(tp, need_lib, tag):
    """curl's https, a virtual session carried inside our TLS link: x-lunar-error from
    the proxy -> the request reaches the https origin over real TLS (the program's own
    context, verified), unmodified; one warning."""
    lab = tp.lab
    lab.set_mode("error:2")
    env = dict(tp_env(lab), CURL_CA_BUNDLE=lab.ca_file)  # curl trusts the lab CA for the origin
    res = lab.run(["curl", "-sS", "-f", "https://api.example.test" + tag], env=env, debug=False,
                  timeout=30)
    assert res.rc == 0, describe(res)
    assert_direct_tls(echoes(res)[0], res, path=tag)
    recs = traffic(lab, tag)
    assert [r["action"] for r in recs] == ["error"] and rhdrs(recs[0], "x-lunar-scheme") == ["https"], \
        describe(res)
    assert tp.tls_connections() == 1
    assert len(warnings(res)) == 1, describe(res)


# ---- a failure on a TLS link that already carried requests ----------------------------------

def test_error_on_a_used_tls_link_then_back_to_the_proxy(tp, need_lib, venv_python, tag,  # noqa: F811
                                                         tmp_path):
    """requests.Session, 4 GETs on one connection, 0.6 s apart: r0 through the test proxy
    over TLS; then the proxy answers r1 with x-lunar-error: 2 on that same TLS link (the
    test switches the mode once r0 is answered): r1 is replayed to the origin; then pass
    again: r2, r3 return to the proxy over a new TLS link (the program's connection is
    still one). Every answer 200, each request once at the origin, one warning."""
    lab = tp.lab
    paths = ["%s/r%d" % (tag, i) for i in range(4)]
    out, err = os.path.join(str(tmp_path), "seq.out"), os.path.join(str(tmp_path), "seq.err")
    with open(out, "wb") as fo, open(err, "wb") as fe:
        p = lab.spawn([venv_python, os.path.join(CLIENT_DIR, "py_session_seq.py"), URL, "0.6"]
                      + paths, env=tp_env(lab), debug=True, stdout=fo, stderr=fe)

    def wait_origin(path, timeout=15):
        deadline = time.time() + timeout
        while not [r for r in lab.origin_log(contains=tag) if r["path"] == path]:
            assert p.poll() is None and time.time() < deadline, \
                "%s never reached the origin\n%s" % (path, open(err).read()[-3000:])
            time.sleep(0.02)
    try:
        wait_origin(paths[0])
        lab.set_mode("error:2")
        wait_origin(paths[1])
        lab.set_mode("pass")
        rc = p.wait(20)
    finally:
        lab.stop(p)
    answers = [json.loads(ln) for ln in open(out) if ln.strip()]
    text_err = open(err).read()
    at_origin = {path: [r for r in lab.origin_log(contains=tag) if r["path"] == path]
                 for path in paths}
    at_proxy = {path: traffic(lab, path) for path in paths}
    info = "answers: %s\norigin: %s\nproxy: %s\nstderr:\n%s" % (
        answers, {k: [hdr(r, "x-via-testproxy") for r in v] for k, v in at_origin.items()},
        {k: [(r["action"], r["peer"]) for r in v] for k, v in at_proxy.items()}, text_err[-4000:])
    assert rc == 0 and [a.get("status") for a in answers] == [200] * 4, info
    assert answers[-1]["connections"] == 1, "the program made one connection\n" + info
    assert all(len(v) == 1 for v in at_origin.values()), "each request once at the origin\n" + info
    via = [hdr(at_origin[path][0], "x-via-testproxy") for path in paths]
    assert via == ["1", None, "1", "1"], "r1 direct, the others through the proxy\n" + info
    assert [[r["action"] for r in at_proxy[path]] for path in paths] == \
        [["pass"], ["error"], ["pass"], ["pass"]], info
    peers = [at_proxy[path][0]["peer"] for path in paths]
    assert peers[0] == peers[1] != peers[2] == peers[3], \
        "r1 must fail on r0's TLS link, r2/r3 share a new one\n" + info
    assert tp.tls_connections() == 2, "TLS connections to 8410: %d, want 2\n%s" % (
        tp.tls_connections(), info)
    w = [ln for ln in text_err.splitlines() if "WARNING" in ln]
    assert len(w) == 1 and "x-lunar-error: 2" in w[0], info


# ---- resets seen where the program looks ------------------------------------------------------

@pytest.mark.parametrize("waiter", ["epoll", "poll"])
def test_reset_after_the_request_seen_by_err_hup_fatal_event_loop(waiter, tp, need_lib, tag):
    """The proxy reads the request and resets (`reset`) behind the TLS link. A
    non-blocking program whose event loop gives up on ERR/HUP (never reading after one)
    still gets the origin's answer: the library hides the reset where the program looks."""
    lab = tp.lab
    lab.set_mode("reset")
    res = lab.run([PY, "-c", ERR_HUP_FATAL, waiter, tag], env=tp_env(lab), debug=True, timeout=20)
    assert [r["action"] for r in traffic(lab, tag)] == ["reset"], \
        "the proxy must have got (and reset) the request\n" + describe(res)
    assert res.rc == 0, describe(res)
    assert_direct(echoes(res)[0], res, origin=API, path=tag)
    assert tp.tls_connections() == 1


@pytest.mark.parametrize("cname", ["py_asyncio", "node_http"])
def test_reset_at_accept_nonblocking_clients_repeated(cname, tp, need_lib, tag, tmp_path):
    """`down` behind the TLS link: our TLS session is made, then the proxy's side resets
    as it is accepted. Non-blocking clients (asyncio, Node's event loop), 6 fresh
    processes in a row (a timing-dependent failure shows only now and then): each gets
    the origin's answer, one warning each."""
    lab = tp.lab
    lab.set_mode("down")
    c = make_client(cname, lab, None, str(tmp_path))
    bad = []
    for i in range(6):
        res = c.run("GET", "%s%s/%d" % (URL, tag, i), env=tp_env(lab), debug=False, timeout=30)
        ok = res.rc == 0 and b'"server":"203.0.113.10:80"' in res.out and b"x-via-" not in res.out
        if not ok or len(warnings(res)) != 1:
            bad.append(describe(res))
    assert not bad, "%d of 6 runs failed; first:\n%s" % (len(bad), bad[0])
    assert tp.tls_connections() == 6
    assert len([r for r in lab.testproxy_log() if r.get("action") == "rst-at-accept"]) == 6


def test_reset_before_the_programs_half_close(tp, need_lib, tag):
    """The program writes its request, then half-closes (shutdown SHUT_WR) after the
    proxy has reset the connection behind the TLS link: shutdown succeeds, on the
    connection to the origin, which answers."""
    lab = tp.lab
    lab.set_mode("reset")
    res = lab.run([PY, "-c", SHUTDOWN_AFTER_RESET, tag], env=tp_env(lab), debug=True, timeout=20)
    assert [r["action"] for r in traffic(lab, tag)] == ["reset"], describe(res)
    assert res.rc == 0, describe(res)
    assert_direct(echoes(res)[0], res, origin=API, path=tag)


# ---- LUNAR_REPLAY_MAX_BYTES: a request too large to replay shows the proxy's answer -------------

@pytest.mark.parametrize("kind", ["raw", "raw_epoll", "curl"])
def test_replay_cap_over_tls_shows_the_proxys_answer(kind, tp, need_lib, tag, tmp_path):
    """LUNAR_REPLAY_MAX_BYTES=1000, a 5000-byte POST, error:2: the request cannot be
    replayed, so the program reads the proxy's 503 x-lunar-error: 2 out of the TLS link,
    complete (head and body), with one warning naming the cap; the origin gets nothing.
    A 500-byte POST in the same setting is replayed: the origin's 200."""
    lab = tp.lab
    lab.set_mode("error:2")
    env = tp_env(lab, {"LUNAR_REPLAY_MAX_BYTES": "1000"})
    big = random.Random(5).randbytes(5000)
    res, resp = show(lab, kind, "POST", URL + tag + "/big", env, tmp_path, data=big, debug=False)
    ctx = "\nprogram got: %s\n%s" % (json.dumps(resp)[:1500], describe(res))
    assert resp["status"] == 503 and resp_hdrs(resp, "x-lunar-error") == ["2"], ctx
    assert resp["body_text"] == "lunar error 2\n", ctx
    assert len([ln for ln in warnings(res) if "LUNAR_REPLAY_MAX_BYTES" in ln]) == 1, ctx
    assert lab.origin_log(contains=tag + "/big") == [], "the origin got a request" + ctx
    seen = traffic(lab, tag + "/big")
    assert len(seen) == 1 and seen[0]["body_sha256"] == sha256(big), ctx

    small = random.Random(6).randbytes(500)
    res, resp = show(lab, kind, "POST", URL + tag + "/small", env, tmp_path, data=small,
                     debug=False)
    e = json.loads(resp["body_text"])
    assert resp["status"] == 200 and e["body_sha256"] == sha256(small), describe(res)
    assert_direct(e, res, origin=API, path=tag + "/small")
    assert [r["action"] for r in traffic(lab, tag + "/small")] == ["error"], describe(res)


# ---- a program that closes its socket during a retry delay --------------------------------------

def test_retry_delay_ended_by_the_program_closing(tp, need_lib, c_bins, tag):  # noqa: F811
    """retry:3:1 over the TLS link: the library waits 3 s before sending the request
    again; the program (c-tests/retry_close_reuse.c) gives up after 1 s (SO_RCVTIMEO),
    closes the fd and gets the same number for a socketpair: nothing may arrive there
    (no TLS record, no request), and the proxy sees the request once."""
    lab = tp.lab
    lab.set_mode("retry:3:1")
    res = lab.run([os.path.join(c_bins, "retry_close_reuse"), "api.example.test", "80", tag],
                  env=tp_env(lab), debug=True, timeout=20)
    assert res.rc == 0, describe(res)
    assert len(traffic(lab, tag)) == 1, "the proxy got %d requests, want 1 (no retry)\n%s" % (
        len(traffic(lab, tag)), describe(res))
    assert b"closed by the program during the recovery" in res.err, describe(res)


# ---- the program's own timeouts and signals while it waits on the TLS link -----------------

# rcvtimeo_wait's modes (c-tests/rcvtimeo_wait.c): what the program must get from its recv,
# poll or epoll while the proxy hangs; the same as without the library (test_safety_waits.py).
WAIT_MODES = ["rcvtimeo", "alarm", "restart", "restart_rcvtimeo", "poll", "epoll"]


@pytest.mark.parametrize("mode", WAIT_MODES)
def test_programs_timeouts_and_signals_over_tls(mode, tp, need_lib, c_bins, tag):  # noqa: F811
    """The request reached the test proxy over the TLS link and it never answers: the
    program's SO_RCVTIMEO, its signal handlers with and without SA_RESTART, and its
    poll/epoll timeouts end the wait exactly as they would on a plain socket (our reads
    wait in the kernel, in a blocking peek of the socket), with next to no CPU."""
    lab = tp.lab
    lab.set_mode("hang")
    res = lab.run([os.path.join(c_bins, "rcvtimeo_wait"), "api.example.test", "80", tag, mode],
                  env=tp_env(lab), debug=True, timeout=20)
    line = next((ln for ln in res.text_out.splitlines() if ln.startswith("mode=")), "")
    assert res.rc == 0, "%s\n%s" % (line or "no result line", describe(res))
    fields = dict(kv.split("=", 1) for kv in line.split())
    assert float(fields["cpu_ms"]) < 50 and int(fields["nvcsw"]) < 50, describe(res)
    assert len(traffic(lab, tag)) == 1, describe(res)
    assert tp.tls_connections() == 1, describe(res)


# ---- retry-after: each retry on a new TLS connection ----------------------------------------

@pytest.mark.parametrize("prog", sorted(PROGS))
def test_retry_after_over_new_tls_connections(prog, tp, need_lib, venv_python, c_bins,  # noqa: F811
                                              tmp_path, tag):
    """retry:0.3:2: the proxy answers the first request 429 with x-lunar-retry-after 0.3
    and a sequence id, twice. The library sends it again after 0.3 s each time, over a
    NEW TLS connection to the proxy, with the same x-lunar-req-id, the sequence id it
    got, and the body intact; the program gets the final answer (through the proxy)
    only, after >= 0.6 s, without x-lunar-sequence-id; no warning. keepalive_seq's
    next requests ride the last connection."""
    lab = tp.lab
    lab.set_mode("retry:0.3:2")
    t0 = time.time()
    res, es = run_prog(lab, prog, tag, str(tmp_path), venv_python, c_bins)
    elapsed = time.time() - t0
    assert_answers(prog, tag, res, es, via_testproxy=True)
    assert_origin_once(lab, prog, tag, res)
    n = len(PROGS[prog])
    recs = traffic(lab, tag)
    ctx = "\ntest proxy saw: %s\nhaproxy.log:\n%s\n%s" % (
        [(r["action"], r["peer"], rhdrs(r, "x-lunar-sequence-id"), round(r["t"] - t0, 2))
         for r in recs], "\n".join(tp.lines()), describe(res))
    assert [r["action"] for r in recs] == ["retry-after"] * 2 + ["pass"] * n, ctx
    tries = recs[:3]
    rids = [rhdrs(r, "x-lunar-req-id") for r in tries]
    assert all(len(x) == 1 for x in rids) and len({x[0] for x in rids}) == 1, "req-id" + ctx
    seqs = [rhdrs(r, "x-lunar-sequence-id") for r in tries]
    assert seqs[0] == [] and len(seqs[1]) == 1 and len(seqs[2]) == 1 and seqs[1] != seqs[2], \
        "sequence ids" + ctx
    body = PROGS[prog][0][1]
    assert all(r["body_sha256"] == sha256(body) for r in tries), "a retry's body differs" + ctx
    assert hdr(es[0], "x-seen-lunar-sequence-id") == seqs[2][0], ctx
    assert b"x-lunar-sequence-id" not in res.out.lower(), ctx
    gaps = [tries[i + 1]["t"] - tries[i]["t"] for i in range(2)]
    assert all(0.28 <= g <= 1.5 for g in gaps), "retries %s s apart%s" % (gaps, ctx)
    assert elapsed >= 0.6, ctx
    peers = [r["peer"] for r in recs]
    assert len(set(peers[:3])) == 3, "each retry must come over a new connection" + ctx
    assert set(peers[2:]) == {peers[2]}, "later requests on the last connection" + ctx
    assert tp.tls_connections() == 3, "TLS connections to 8410: %d, want 3%s" % (
        tp.tls_connections(), ctx)
    assert len(tp.lines()) == 3, ctx
    assert not warnings(res), ctx


# ---- cooldown after N failures: later requests do not contact the proxy -----------------------

def test_cooldown_over_tls(tp, need_lib, tag, tmp_path):
    """error:2, ENTER_COOLDOWN_AFTER_ATTEMPTS=2, EXIT_COOLDOWN_AFTER_SEC=2; one Python
    process with a request (new connection) every 0.25 s for 5 s: every request gets the
    origin's 200. The proxy gets requests 0 and 1, then nothing for ~2 s (cooldown: no
    TLS connection is even made), then one (which fails: the next cooldown at once),
    then ~2 s again, then one: 4 requests, 4 TLS connections, 4 warnings."""
    lab = tp.lab
    lab.set_mode("error:2")
    env = tp_env(lab, {"LUNAR_ENTER_COOLDOWN_AFTER_ATTEMPTS": "2",
                       "LUNAR_EXIT_COOLDOWN_AFTER_SEC": "2"})
    res = lab.run([PY, os.path.join(CLIENT_DIR, "py_loop.py"), URL + tag, "20", "0.25"],
                  env=env, debug=True, timeout=30)
    recs = [json.loads(ln) for ln in res.out.splitlines() if ln.strip()]
    blocks, cur = {}, None
    for ln in res.text_err.splitlines():
        m = re.match(r"\[client\] request (\d+) ", ln)
        if m:
            cur = int(m.group(1))
            blocks[cur] = []
        elif cur is not None:
            blocks[cur].append(ln)
    seen = [r for r in lab.testproxy_log()
            if r.get("kind") == "traffic" and (r.get("path") or "").startswith(tag + "?i=")]
    idx = [int(r["path"].split("?i=")[1]) for r in seen]
    t0 = recs[0]["ts"] if recs else 0
    info = "proxy got: %s\nrequests:\n%s\n%s" % (
        ["i=%d t=%+.2f %s" % (i, r["t"] - t0, r["action"]) for i, r in zip(idx, seen)],
        "\n".join("%2d t=%.2f status=%s %s | %s" % (
            r["i"], r["t"], r.get("status"), r.get("error", ""),
            " / ".join(x.split("DEBUG: ")[-1] for x in blocks.get(r["i"], [])))
            for r in recs), describe(res))
    assert res.rc == 0 and len(recs) == 20, "the loop saw a failure\n" + info
    for r in recs:
        assert r.get("status") == 200, info
        assert r["echo"]["server"] == API and hdr(r["echo"], "x-via-testproxy") is None, info
        assert not [k for k, _ in r["echo"]["headers"] if k.lower().startswith("x-lunar-")], info
    assert all(r["action"] == "error" for r in seen), info
    assert idx[:2] == [0, 1], "the proxy must get the first 2 requests\n" + info
    assert len(seen) == 4, "want 4 requests at the proxy (2, then 1 per cooldown end)\n" + info
    for a, b in ((1, 2), (2, 3)):
        gap = seen[b]["t"] - seen[a]["t"]
        assert 1.8 <= gap <= 2.0 + 0.25 + 0.5, \
            "a 2 s cooldown must follow proxy request %d (next %.2f s later)\n%s" % (a, gap, info)
    for r in recs:
        if r["i"] in idx:
            continue
        log = blocks.get(r["i"], [])
        assert any("-> direct (cooldown)" in ln for ln in log), "request %d\n%s" % (r["i"], info)
        assert not any("-> proxy" in ln for ln in log), "request %d\n%s" % (r["i"], info)
    assert tp.tls_connections() == 4, "TLS connections to 8410: %d, want 4 (none in a " \
        "cooldown)\n%s" % (tp.tls_connections(), info)
    assert len([ln for ln in res.text_err.splitlines() if "Lunar Proxy failed" in ln]) == 4, info


# ---- the handshake over TLS ---------------------------------------------------------------

@pytest.mark.parametrize("answer", ["error:500", "close", "hang"])
def test_handshake_failure_over_tls_means_direct(answer, tp, need_lib, tag):
    """The test proxy's handshake behind 8411 fails (HTTP 500, closed without an answer,
    no answer): the request goes to the origin, one warning naming the handshake port,
    nothing sent to the traffic port, within a few seconds."""
    lab = tp.lab
    lab.set_testproxy_handshake(answer)
    t0 = time.time()
    res = lab.run(["curl", "-sS", "-f", URL + tag], env=tp_env(lab), debug=False, timeout=30)
    elapsed = time.time() - t0
    assert res.rc == 0, describe(res)
    assert_direct(echoes(res)[0], res, origin=API, path=tag)
    w = warnings(res)
    assert len(w) == 1 and "handshake port %d" % TP_TLS_HS in w[0], describe(res)
    assert [ln for ln in res.text_err.splitlines() if ln.strip()] == w, describe(res)
    assert elapsed < 8, "the handshake delayed the request %.1f s" % elapsed
    assert tp.handshake_connections() == 1 and tp.tls_connections() == 0, describe(res)
    assert [r for r in lab.testproxy_log() if r.get("kind") == "handshake"], describe(res)
    assert not traffic(lab, tag)


def test_managed_handshake_over_tls(tp, need_lib, tag):
    """The handshake over TLS carries x-lunar-tenant-id; the proxy says managed: every
    diverted request over the TLS link carries it too."""
    lab = tp.lab
    lab.set_testproxy_handshake("managed")
    res = lab.run(["curl", "-sS", "-f", URL + tag + "/1", URL + tag + "/2"],
                  env=tp_env(lab, {"LUNAR_TENANT_ID": "tenant-tls-5"}), debug=False, timeout=30)
    assert res.rc == 0, describe(res)
    es = echoes(res)
    assert [hdr(e, "x-seen-lunar-tenant-id") for e in es] == ["tenant-tls-5"] * 2, describe(res)
    hs = [r for r in lab.testproxy_log() if r.get("kind") == "handshake"]
    assert len(hs) == 1 and ["tenant-tls-5"] == [v for k, v in hs[0]["headers"]
                                                   if k.lower() == "x-lunar-tenant-id"], hs
    for p in ("/1", "/2"):
        assert [rhdrs(r, "x-lunar-tenant-id") for r in traffic(lab, tag + p)] == [["tenant-tls-5"]]
    assert tp.tls_connections() == 1 and tp.handshake_connections() == 1
    assert not warnings(res), describe(res)
