"""Failsafe: the proxy down, cooldown timing, recovery, and proxy faults played by
the scriptable test proxy. The application must never see a proxy failure."""
import json
import os
import random
import re
import time

import pytest

from conftest import (CLIENT_DIR, PY, assert_direct, assert_ok, assert_proxied, describe,
                      echoes, hdr, labmod, make_client, one_echo, sha256)

API = "203.0.113.10:80"
COOLDOWN_ENV = {"LUNAR_ENTER_COOLDOWN_AFTER_ATTEMPTS": "2", "LUNAR_EXIT_COOLDOWN_AFTER_SEC": "3"}
TESTPROXY_ENV = {"LUNAR_PROXY_HOST": "127.0.0.1:%d" % labmod.TESTPROXY_TRAFFIC,
                 "LUNAR_HANDSHAKE_PORT": str(labmod.TESTPROXY_HANDSHAKE)}


@pytest.fixture(scope="class")
def haproxy_stopped(lab):
    lab.stop_haproxy()
    try:
        yield lab
    finally:
        lab.start_haproxy()


@pytest.mark.usefixtures("haproxy_stopped")
class TestProxyDown:
    def test_get_succeeds_from_origin(self, client, need_lib, tag):
        res = client.run("GET", "http://api.example.test" + tag)
        assert_ok(res)
        assert_direct(one_echo(res), res, origin=API, path=tag)
        assert len(client.lab.origin_log(contains=tag)) == 1

    def test_post_succeeds_from_origin(self, client, need_lib, tag):
        body = random.Random(3).randbytes(200000)
        res = client.run("POST", "http://api.example.test" + tag, data=body,
                         headers=["Content-Type: application/octet-stream"])
        assert_ok(res)
        e = one_echo(res)
        assert_direct(e, res, origin=API, path=tag)
        assert e["body_sha256"] == sha256(body)

    def test_keepalive_succeeds_from_origin(self, client, need_lib, tag):
        client.skip_if_cannot("keepalive")
        res = client.run("GET", "http://api.example.test" + tag, repeat=3)
        assert_ok(res)
        es = [json.loads(ln) for ln in res.out.splitlines() if ln.strip()]
        assert len(es) == 3
        for e in es:
            assert_direct(e, res, origin=API, path=tag)


# ---- cooldown timing within one process ----------------------------------------------

def _spawn_loop(lab, tmp_path, url, count, interval, env):
    out = open(os.path.join(str(tmp_path), "loop.out"), "wb")
    err = open(os.path.join(str(tmp_path), "loop.err"), "wb")
    p = lab.spawn([PY, os.path.join(CLIENT_DIR, "py_loop.py"), url, str(count), str(interval)],
                  env=env, debug=True, stdout=out, stderr=err)
    out.close(), err.close()
    return p


def _read_loop(tmp_path):
    with open(os.path.join(str(tmp_path), "loop.out"), "rb") as f:
        recs = [json.loads(ln) for ln in f if ln.strip()]
    with open(os.path.join(str(tmp_path), "loop.err"), "rb") as f:
        err = f.read().decode("utf-8", "replace")
    # the library's lines after "[client] request I" belong to request I
    blocks, cur = {}, None
    for ln in err.splitlines():
        m = re.match(r"\[client\] request (\d+) ", ln)
        if m:
            cur = int(m.group(1))
            blocks[cur] = []
        elif cur is not None:
            blocks[cur].append(ln)
    for r in recs:
        r["log"] = blocks.get(r["i"], [])
        # tried the proxy: routed to it, or a proxy failure reported for this request
        r["tried_proxy"] = any("-> proxy" in ln or ("proxy" in ln.lower() and "fail" in ln.lower())
                               for ln in r["log"])
        r["cooldown"] = any("-> direct" in ln and "cooldown" in ln for ln in r["log"])
    return recs, err


def _wait_for_request(tmp_path, i, timeout=20):
    path = os.path.join(str(tmp_path), "loop.err")
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(path, "rb") as f:
            if b"[client] request %d " % i in f.read():
                return
        time.sleep(0.02)
    raise AssertionError("loop never reached request %d" % i)


def _summary(recs):
    return "\n".join("%2d t=%.2f..%.2f status=%s%s via_proxy=%s tried_proxy=%s cooldown=%s | %s" % (
        r["i"], r["t"], r["t_end"], r.get("status"), " error=" + r["error"] if "error" in r else "",
        r.get("via_proxy"), r["tried_proxy"], r["cooldown"],
        " / ".join(ln.split("DEBUG: ")[-1] for ln in r["log"])) for r in recs)


def test_cooldown_after_proxy_stops(lab, need_lib, tag, tmp_path, haproxy_restored):
    """HAProxy up at start, stopped mid-run (and left down): the next 2 requests try the
    proxy and fall back to the origin, then ~3 s of `direct (cooldown)`, then a single
    new attempt that fails starts another cooldown. Every request gets its 200."""
    p = _spawn_loop(lab, tmp_path, "http://api.example.test" + tag, 40, 0.2, COOLDOWN_ENV)
    try:
        _wait_for_request(tmp_path, 3)
        ts_stop0 = time.time()
        lab.stop_haproxy()
        rc = p.wait(60)
    finally:
        lab.stop(p)
    recs, err = _read_loop(tmp_path)
    info = _summary(recs) + "\n--- stderr ---\n" + err[-5000:]
    assert rc == 0, "the loop saw a failure\n" + info
    assert len(recs) == 40 and all(r.get("status") == 200 for r in recs), info
    before = [r for r in recs if r["ts_end"] < ts_stop0]
    assert before and all(r["via_proxy"] for r in before), "before the stop: via proxy\n" + info
    # a request in flight while HAProxy stops may fail (and count) too: the failures
    # are the requests that tried the proxy and did not get through it
    fails = [r for r in recs if r["tried_proxy"] and not r["via_proxy"]]
    assert len(fails) >= 3, "expected failed proxy attempts\n" + info
    assert fails[1]["i"] == fails[0]["i"] + 1, "the 2 first failures must be consecutive\n" + info
    assert all(not r["cooldown"] for r in fails[:2]), info
    assert all(not r["via_proxy"] for r in recs if r["i"] > fails[0]["i"]), info
    ts_cool = fails[1]["ts_end"]  # the second failure starts the cooldown
    # cooldown: direct without trying the proxy for ~3 s
    in_cool = [r for r in recs if fails[1]["i"] < r["i"] < fails[2]["i"]]
    assert in_cool and all(r["cooldown"] and not r["tried_proxy"] for r in in_cool), \
        "requests within 3 s after the 2nd failure must go direct (cooldown)\n" + info
    # then one attempt, which fails, and a new cooldown at once
    gap = fails[2]["ts"] - ts_cool
    assert 3.0 - 0.15 <= gap <= 3.0 + 0.2 + 0.4, "cooldown lasted %.2f s, expected ~3 s\n%s" % (gap, info)
    later = [r for r in recs if r["i"] > fails[2]["i"] and r["ts"] < fails[2]["ts_end"] + 2.5]
    assert later and all(r["cooldown"] and not r["tried_proxy"] for r in later), \
        "a single failure after a cooldown must start another cooldown\n" + info


def test_recovery_after_proxy_restart(lab, need_lib, tag, tmp_path, haproxy_restored):
    """HAProxy stopped mid-run, restarted during the cooldown: once the cooldown is
    over, requests go through the proxy again."""
    p = _spawn_loop(lab, tmp_path, "http://api.example.test" + tag, 35, 0.2, COOLDOWN_ENV)
    try:
        _wait_for_request(tmp_path, 2)
        lab.stop_haproxy()
        time.sleep(1.5)
        lab.start_haproxy()
        ts_start = time.time()
        rc = p.wait(60)
    finally:
        lab.stop(p)
    recs, err = _read_loop(tmp_path)
    info = _summary(recs) + "\n--- stderr ---\n" + err[-5000:]
    assert rc == 0, "the loop saw a failure\n" + info
    assert all(r.get("status") == 200 for r in recs), info
    fails = [r for r in recs if r["tried_proxy"] and not r["via_proxy"]]
    assert len(fails) >= 2 and fails[1]["i"] == fails[0]["i"] + 1, info
    ts_cool = fails[1]["ts_end"]
    assert ts_start < ts_cool + 3.0, "HAProxy restarted too late for this test (slow machine?)"
    post = [r for r in recs if r["ts"] > ts_cool + 3.0 + 0.3]
    assert post and all(r["via_proxy"] for r in post), \
        "after the cooldown, requests must go through the restarted proxy\n" + info
    first = next(r for r in recs if r["i"] > fails[1]["i"] and r["via_proxy"])
    assert first["ts"] - ts_cool >= 3.0 - 0.15, "proxy used again before the cooldown ended\n" + info
    for r in post:
        assert_proxied(r["echo"], type("R", (), {"argv": [], "rc": 0, "out": b"", "text_err": err})(),
                       "api.example.test", origin=API)


def test_proxy_down_from_start_then_up(lab, need_lib, tag, tmp_path, haproxy_restored):
    """HAProxy down when the process starts: everything goes direct (status 200); once
    HAProxy is up, the process uses it within about one cooldown period."""
    lab.stop_haproxy()
    p = _spawn_loop(lab, tmp_path, "http://api.example.test" + tag, 35, 0.2, COOLDOWN_ENV)
    try:
        _wait_for_request(tmp_path, 4)
        lab.start_haproxy()
        ts_up = time.time()
        rc = p.wait(60)
    finally:
        lab.stop(p)
    recs, err = _read_loop(tmp_path)
    info = _summary(recs) + "\n--- stderr ---\n" + err[-5000:]
    assert rc == 0, "the loop saw a failure\n" + info
    assert all(r.get("status") == 200 for r in recs), info
    assert all(not r["via_proxy"] for r in recs if r["ts_end"] < ts_up), info
    late = [r for r in recs if r["ts"] > ts_up + 3.0 + 0.5]
    assert late and all(r["via_proxy"] for r in late), \
        "HAProxy up again, but requests > 3.5 s later still go direct\n" + info


# ---- proxy faults (scriptable test proxy) ------------------------------------------------

@pytest.mark.parametrize("mode", ["error:2", "error:5", "close", "reset", "down"])
def test_proxy_fault_falls_back_to_origin(client, need_lib, tag, testproxy, mode):
    testproxy.set_mode(mode)
    body = b'{"fault": "%s"}' % mode.encode()
    res = client.run("POST", "http://api.example.test" + tag, data=body, env=TESTPROXY_ENV,
                      headers=["Content-Type: application/json"])
    assert_ok(res)
    e = one_echo(res)
    assert_direct(e, res, origin=API, path=tag)
    assert e["body_sha256"] == sha256(body), "fallback body differs"
    recs = testproxy.origin_log(contains=tag)
    assert len(recs) == 1, "origin got %d requests, expected the one fallback\n%s" % (len(recs), describe(res))
    seen = [r for r in testproxy.testproxy_log() if r.get("kind") == "traffic"]
    assert seen, "the request never reached the test proxy"


def test_proxy_pass_mode_like_haproxy(client, need_lib, tag, testproxy):
    res = client.run("GET", "http://api.example.test" + tag, env=TESTPROXY_ENV)
    assert_ok(res)
    e = one_echo(res)
    assert hdr(e, "x-via-testproxy") == "1", describe(res)
    assert hdr(e, "x-seen-lunar-host") == "api.example.test"


def test_the_programs_own_lunar_headers_give_way_to_the_injected_ones(client, need_lib, tag,
                                                                      testproxy):
    """A program that sends `x-lunar-host` (or `-scheme`, `-interceptor`) of its own does
    not steer the proxy: the library's line replaces it, as Lunar's interceptors set
    their headers over the program's; an `x-lunar-*` header the library does not inject
    passes."""
    res = client.run("GET", "http://api.example.test" + tag, env=TESTPROXY_ENV,
                     headers=["x-lunar-host: other.example.test", "x-lunar-scheme: https",
                              "x-lunar-interceptor: mine/1", "x-lunar-custom: kept"])
    assert_ok(res)
    e = one_echo(res)
    assert e["server"] == API, describe(res)
    assert hdr(e, "x-seen-lunar-host") == "api.example.test", describe(res)
    assert hdr(e, "x-seen-lunar-scheme") == "http", describe(res)
    assert hdr(e, "x-seen-lunar-interceptor").startswith("lunar-preload-interceptor/"), \
        describe(res)
    counts = hdr(e, "x-seen-lunar-counts")
    assert "host=1,scheme=1,interceptor=1," in counts, describe(res)
    seen = [r for r in testproxy.testproxy_log()
            if r.get("kind") == "traffic" and r.get("path") == tag]
    assert [v for k, v in seen[0]["headers"] if k.lower() == "x-lunar-custom"] == ["kept"], \
        describe(res)


# Connection A makes two requests through the test proxy (the second routed afresh, its
# route to the proxy then kept with the connection); connection B fails twice at the
# proxy, which starts a cooldown; A's next request, A still at the proxy and idle, must
# go to the origin without trying the proxy. One echo line per request: a0 a1 b0 b1 a2.
COOLDOWN_FROM_ANOTHER_CONNECTION = r"""
import http.client, sys
tag, control_port = sys.argv[1], int(sys.argv[2])
def control(mode):
    c = http.client.HTTPConnection("127.0.0.1", control_port)
    c.request("POST", "/mode", body=mode)
    c.getresponse().read()
    c.close()
def get(conn, name):
    conn.request("GET", tag + "/" + name)
    answer = conn.getresponse()
    sys.stdout.write(answer.read().decode() + "\n")
a = http.client.HTTPConnection("api.example.test")
b = http.client.HTTPConnection("api.example.test")
get(a, "a0")
get(a, "a1")
control("error:2")
get(b, "b0")
get(b, "b1")
control("pass")
get(a, "a2")
"""


def test_cooldown_started_elsewhere_moves_an_idle_proxied_connection(lab, need_lib, tag,
                                                                      testproxy):
    env = dict(TESTPROXY_ENV, LUNAR_ENTER_COOLDOWN_AFTER_ATTEMPTS="2",
               LUNAR_EXIT_COOLDOWN_AFTER_SEC="60")
    res = lab.run([PY, "-c", COOLDOWN_FROM_ANOTHER_CONNECTION, tag,
                   str(labmod.TESTPROXY_CONTROL)], env=env, debug=True)
    assert_ok(res)
    a0, a1, b0, b1, a2 = echoes(res)
    for echo in (a0, a1):
        assert hdr(echo, "x-via-testproxy") == "1", describe(res)
    for echo in (b0, b1, a2):
        assert_direct(echo, res, origin=API)
    at_proxy = [r["path"] for r in testproxy.testproxy_log()
                if r.get("kind") == "traffic" and r.get("path")]
    assert at_proxy == [tag + "/a0", tag + "/a1", tag + "/b0", tag + "/b1"], \
        "requests at the proxy: %s\n%s" % (at_proxy, describe(res))


def test_retry_after_protocol(client, need_lib, tag, testproxy):
    testproxy.set_mode("retry:0.3:2")
    t0 = time.time()
    res = client.run("GET", "http://api.example.test" + tag, env=TESTPROXY_ENV)
    elapsed = time.time() - t0
    assert_ok(res)
    e = one_echo(res)
    assert hdr(e, "x-via-testproxy") == "1", "final response should come through the proxy\n" + describe(res)
    log = [r for r in testproxy.testproxy_log() if r.get("kind") == "traffic" and r.get("path") == tag]
    assert len(log) == 3, "expected 2 retries (3 requests at the proxy), got %d\n%s" % (len(log), describe(res))

    def h(r, name):
        return [v for k, v in r["headers"] if k.lower() == name]
    rids = {h(r, "x-lunar-req-id")[0] for r in log}
    assert len(rids) == 1, "req-id changed across retries: %s" % rids
    assert h(log[0], "x-lunar-sequence-id") == [], "first attempt carries a sequence id"
    assert h(log[1], "x-lunar-sequence-id") and h(log[2], "x-lunar-sequence-id"), \
        "retries must carry x-lunar-sequence-id"
    assert elapsed >= 0.6, "retries did not wait x-lunar-retry-after"
    assert b"x-lunar-sequence-id" not in res.out.lower()


CUT_SHORT_GETS = r"""
import http.client, sys
tag = sys.argv[1]
for i in range(3):
    conn = http.client.HTTPConnection("api.example.test")
    conn.request("GET", "%s/%d" % (tag, i))
    answer = conn.getresponse()
    try:
        body = answer.read()
        print(i, answer.status, "via-testproxy" if answer.getheader("x-via-testproxy") else "",
              len(body))
    except http.client.IncompleteRead as e:
        print(i, "incomplete", len(e.partial))
    conn.close()
"""


def test_answers_cut_short_count_as_proxy_failures(lab, need_lib, tag, testproxy):
    """The proxy sends a head and part of the body it announced, then closes: the program
    sees the answer as it came (an incomplete read), and each counts as a proxy failure;
    after two (LUNAR_ENTER_COOLDOWN_AFTER_ATTEMPTS=2) the cooldown sends the third request
    to the origin. (Before: nothing counted, and each head counted as a success.)"""
    testproxy.set_mode("body-part-close")
    env = dict(TESTPROXY_ENV, LUNAR_ENTER_COOLDOWN_AFTER_ATTEMPTS="2",
               LUNAR_EXIT_COOLDOWN_AFTER_SEC="60")
    res = lab.run([PY, "-c", CUT_SHORT_GETS, tag], env=env, debug=True)
    assert_ok(res)
    lines = res.text_out.splitlines()
    assert lines[:2] == ["0 incomplete 10", "1 incomplete 10"], describe(res)
    assert lines[2].startswith("2 200  "), describe(res)
    assert len(testproxy.origin_log(contains=tag)) == 1, describe(res)
    warned = [ln for ln in res.text_err.splitlines() if "WARNING" in ln]
    assert len(warned) == 2 and "in the middle of an answer" in warned[0] \
        and "cooldown" in warned[1], describe(res)


# A POST with `Expect: 100-continue` whose `100 Continue` the proxy sends in one write
# with its final answer: Python's http.client reads both at once. Prints the status, the
# head's lines and the body.
EXPECT_CONTINUE_POST = r"""
import http.client, sys
tag = sys.argv[1]
conn = http.client.HTTPConnection("api.example.test")
conn.request("POST", tag, body=b"continue body " * 100,
             headers={"Expect": "100-continue", "Content-Type": "text/plain"})
answer = conn.getresponse()
print(answer.status)
for name, value in answer.getheaders():
    print("%s: %s" % (name, value))
print()
sys.stdout.write(answer.read().decode())
"""


@pytest.mark.parametrize("mode", ["continue:error:2", "continue:retry:0.1:1", "continue:pass-seq"])
def test_the_final_answer_after_a_100_continue_in_the_same_read_is_checked(
        lab, need_lib, tag, testproxy, mode):
    """`100 Continue` and the proxy's error (or retry request, or a final answer with
    `x-lunar-sequence-id`) arrive in one segment: the final head is judged as the first
    was: the error hidden (the origin answers), the retry made, the header removed."""
    testproxy.set_mode(mode)
    res = lab.run([PY, "-c", EXPECT_CONTINUE_POST, tag], env=TESTPROXY_ENV, debug=True)
    assert_ok(res)
    assert res.out.splitlines()[0] == b"200", describe(res)
    assert b"x-lunar-" not in res.out.lower(), describe(res)
    e = json.loads(res.out.splitlines()[-1])
    assert e["body_sha256"] == sha256(b"continue body " * 100), describe(res)
    at_proxy = [r for r in testproxy.testproxy_log()
                if r.get("kind") == "traffic" and r.get("path") == tag]
    if mode == "continue:error:2":
        assert_direct(e, res, origin=API, path=tag)
        assert len(testproxy.origin_log(contains=tag)) == 1, describe(res)
    else:
        assert hdr(e, "x-via-testproxy") == "1", describe(res)
        assert len(at_proxy) == (2 if "retry" in mode else 1), describe(res)


def test_proxy_blackhole_connect_falls_back_quickly(client, need_lib, tag, testproxy):
    """The proxy's traffic port never completes a connect (SYNs dropped): the request
    still reaches the origin, within a few seconds."""
    testproxy.set_mode("blackhole")
    t0 = time.time()
    res = client.run("GET", "http://api.example.test" + tag, env=TESTPROXY_ENV, timeout=40)
    elapsed = time.time() - t0
    assert_ok(res)
    assert_direct(one_echo(res), res, origin=API, path=tag)
    assert elapsed < 8, "fallback from an unreachable proxy took %.1f s" % elapsed


@pytest.fixture
def testproxy_handshake(lab):
    lab.start_testproxy()
    try:
        yield lab.set_testproxy_handshake
    finally:
        lab.set_testproxy_handshake("unmanaged")


@pytest.mark.parametrize("answer", ["error:500", "hang", "close"])
@pytest.mark.parametrize("cname", ["curl", "py_httpclient", "node_http"])
def test_handshake_failure_means_direct(lab, java_classes, tmp_path, need_lib, tag,
                                        testproxy_handshake, answer, cname):
    """A failed handshake (HTTP error, no answer, connection closed): every request
    goes direct, one warning at the default log level, nothing on stdout."""
    testproxy_handshake(answer)
    c = make_client(cname, lab, java_classes, str(tmp_path))
    t0 = time.time()
    res = c.run("GET", "http://api.example.test" + tag, env=TESTPROXY_ENV, debug=False, timeout=40)
    elapsed = time.time() - t0
    assert_ok(res)
    assert_direct(one_echo(res), res, origin=API, path=tag)
    lines = [ln for ln in res.text_err.splitlines() if ln.strip()]
    assert len(lines) == 1, "expected one warning line, got %r" % lines
    assert elapsed < 8, "a hanging handshake delayed the request %.1f s" % elapsed
    assert not [r for r in lab.testproxy_log() if r.get("kind") == "traffic" and r.get("path") == tag]


def test_managed_via_testproxy_handshake(lab, need_lib, tag, testproxy, testproxy_handshake):
    """The handshake carries x-lunar-tenant-id; managed -> every diverted request
    carries it too."""
    testproxy_handshake("managed")
    res = lab.run(["curl", "-sS", "http://api.example.test" + tag, "http://api.example.test" + tag],
                  env=dict(TESTPROXY_ENV, LUNAR_TENANT_ID="tenant-tp-5"), debug=True)
    assert_ok(res)
    log = lab.testproxy_log()
    hs = [r for r in log if r.get("kind") == "handshake" and r["path"].startswith("/handshake")]
    assert hs, "no handshake reached the test proxy\n" + describe(res)
    hsh = dict((k.lower(), v) for k, v in hs[-1]["headers"])
    assert hsh.get("x-lunar-tenant-id") == "tenant-tp-5", hs[-1]["headers"]
    traffic = [r for r in log if r.get("kind") == "traffic" and r.get("path") == tag]
    assert len(traffic) == 2, describe(res)
    for r in traffic:
        h = dict((k.lower(), v) for k, v in r["headers"])
        assert h.get("x-lunar-tenant-id") == "tenant-tp-5", r["headers"]


@pytest.mark.parametrize("cname", ["py_asyncio", "node_http", "node_fetch", "java_httpclient"])
def test_proxy_rst_at_accept_nonblocking_clients_repeated(lab, java_classes, tmp_path, need_lib,
                                                          tag, testproxy, cname):
    """The proxy accepts and resets at once (`down`), 8 fresh processes in a row, with
    non-blocking clients (connect completion read via poll/epoll + SO_ERROR): each
    must get the origin's answer. (A single run catches a timing-dependent failure
    only now and then.)"""
    testproxy.set_mode("down")
    c = make_client(cname, lab, java_classes, str(tmp_path))
    bad = []
    for i in range(8):
        res = c.run("GET", "http://api.example.test%s/%d" % (tag, i), env=TESTPROXY_ENV)
        if res.rc != 0 or b'"server":"203.0.113.10:80"' not in res.out:
            bad.append(describe(res))
    assert not bad, "%d of 8 runs failed; first:\n%s" % (len(bad), bad[0])
