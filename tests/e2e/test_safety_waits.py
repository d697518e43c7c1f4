"""Issue 8, items 5, 6 and 10: waits that honour the program, bounded retries, and
TLS-protected bytes that never leave in clear text.

Item 5 - waiting for the proxy's answer:
  - a blocking recv() honours SO_RCVTIMEO (EAGAIN at ~1 s), a signal handler installed
    without SA_RESTART (EINTR at ~1 s), one with SA_RESTART (restarted, as Linux does),
    and poll/epoll timeouts, while the proxy says nothing (`hang`) or sent part of a
    head and then nothing (`head-part-hang`); the wait costs next to no CPU
    (c-tests/rcvtimeo_wait.c);
  - a proxy that sends part of a response head and then closes (`head-part-close`) or
    resets (`head-part-reset`) is a proxy failure: the request is replayed to the
    origin, for curl, http.client, requests, asyncio and C programs; a non-blocking
    client does not spin.
Item 6 - the retry protocol is bounded: LUNAR_RETRY_MAX_DELAY_SEC (default 60) and
  LUNAR_RETRY_MAX_ATTEMPTS (default 10); past a bound the proxy's answer is passed on,
  without x-lunar-sequence-id, with one warning.
Item 10 - a virtual TLS session whose plaintext is not HTTP/1.x (or whose program reads
  first) becomes a real TLS session at the origin: the lab's TLS line servers
  (echo.example.test:443, banner.example.test:443) see a TLS handshake and the
  protocol inside it, and a packet capture on the namespace's loopback never sees
  the program's plaintext.

A thread the program cancels (pthread_cancel) while it waits on a diverted socket (recv,
  poll, a blocked write or connect, OpenSSL's SSL_read) ends as a cancelled thread, its
  cleanup handler run, and the process goes on (c-tests/thread_cancel.c,
  tls_thread_cancel.c).

Every test bounds its run time (the programs' own timeouts, lab.run(timeout=...)), so a
hang fails within seconds. Controls that pass with any library are named *_control
or *_without_library: they show that the expectations are what the program gets
without the library (or within the bounds).
"""
import json
import os
import socket
import subprocess
import threading
import time
import uuid

import pytest

from conftest import CLIENT_DIR, PY, REPO, assert_direct, describe, hdr, labmod

API = "203.0.113.10:80"
TESTPROXY_ENV = {"LUNAR_PROXY_HOST": "127.0.0.1:%d" % labmod.TESTPROXY_TRAFFIC,
                 "LUNAR_HANDSHAKE_PORT": str(labmod.TESTPROXY_HANDSHAKE)}
CTESTS = os.path.join(REPO, "c-tests")
BIN = os.path.join(CTESTS, "bin")
WAIT_PROG = os.path.join(BIN, "rcvtimeo_wait")


# ---- fixtures and helpers -----------------------------------------------------------

@pytest.fixture(scope="session")
def c_bins():
    r = subprocess.run([os.path.join(CTESTS, "build.sh")], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=300)
    assert r.returncode == 0, "c-tests/build.sh failed:\n" + r.stdout.decode()
    return BIN


def proxy_requests(lab, tag):
    """The requests the test proxy received whose path starts with tag."""
    return [r for r in lab.testproxy_log()
            if r.get("kind") == "traffic" and (r.get("path") or "").startswith(tag)]


def req_header(rec, name):
    return [v for k, v in rec["headers"] if k.lower() == name]


def json_objects(text):
    """Every JSON object in text, in order (bodies printed one after the other)."""
    objs, dec, i = [], json.JSONDecoder(), text.find("{")
    while 0 <= i < len(text):
        obj, end = dec.raw_decode(text, i)
        objs.append(obj)
        i = text.find("{", end)
    return objs


def stderr_lines(res):
    return [ln for ln in res.text_err.splitlines() if ln.strip()]


# ---- item 5: the program's own timeouts (c-tests/rcvtimeo_wait.c) --------------------------

# mode -> what the program must get (see rcvtimeo_wait.c)
WAIT_MODES = {
    "rcvtimeo": "SO_RCVTIMEO 1 s: recv -1/EAGAIN after 0.8-3 s",
    "alarm": "alarm(1), handler without SA_RESTART: recv -1/EINTR at ~1 s",
    "restart": "alarm(1), handler with SA_RESTART: recv restarted, then a second "
               "(non-restarting) alarm: -1/EINTR at ~2 s after 2 signals",
    "restart_rcvtimeo": "SA_RESTART handler + SO_RCVTIMEO 2 s, alarm(1): -1/EINTR at "
                        "~1 s (Linux never restarts a recv with SO_RCVTIMEO, signal(7))",
    "poll": "poll(POLLIN, 1000): 0 at ~1 s",
    "epoll": "epoll_wait(EPOLLIN, 1000): 0 at ~1 s",
    "rcvtimeo2": "SO_RCVTIMEO 2 s: recv -1/EAGAIN after 1.8-4 s",
    "poll_then_read": "poll(POLLIN) for 1 s, then a blocking recv when readable: 0 at ~1 s",
    "select_then_read": "select for 1 s, then a blocking recv when readable: 0 at ~1 s",
    "epoll_then_read": "epoll_wait for 1 s, then a blocking recv when readable: 0 at ~1 s",
    "send_sndtimeo": "a body's blocking sends with SO_SNDTIMEO 1 s: short or EAGAIN at ~1 s",
    "send_alarm": "a body's blocking sends, alarm(1) without SA_RESTART: short or EINTR at ~1 s",
}


def parse_wait_line(res):
    """The program's `mode=... result=... errno=... elapsed_ms=... cpu_ms=... nvcsw=...`
    line as a dict (empty when it printed none: killed)."""
    for ln in res.text_out.splitlines():
        if ln.startswith("mode="):
            return dict(kv.split("=", 1) for kv in ln.split())
    return {}


def run_wait(lab, tag, mode, preload=True):
    """rcvtimeo_wait against the test proxy: diverted (api.example.test:80 under the
    library, LUNAR_PROXY_HOST = the test proxy) or, without the library, straight to
    the test proxy's traffic port."""
    if preload:
        argv = [WAIT_PROG, "api.example.test", "80", tag, mode]
        return lab.run(argv, env=TESTPROXY_ENV, debug=True, timeout=20)
    argv = [WAIT_PROG, "127.0.0.1", str(labmod.TESTPROXY_TRAFFIC), tag, mode]
    return lab.run(argv, preload=False, proxy=False, timeout=20)


def wait_info(res, mode, proxy_mode):
    line = parse_wait_line(res)
    return "expected: %s (test proxy %s)\ngot: %s\n%s" % (
        WAIT_MODES[mode], proxy_mode, line or "no result line (killed?)", describe(res))


@pytest.mark.parametrize("mode", [m for m in WAIT_MODES if not m.startswith("send_")])
def test_wait_program_without_library(lab, c_bins, testproxy, tag, mode):
    """Control: without the library, against the test proxy in `hang` mode, each mode of
    rcvtimeo_wait that waits for an answer ends as expected (what Linux does), with next
    to no CPU. (The send_* modes' 512 KiB fit in loopback's socket buffers: a server that
    stops reading never blocks them; their timeouts are signal(7)'s and socket(7)'s.)"""
    testproxy.set_mode("hang")
    res = run_wait(lab, tag, mode, preload=False)
    assert res.rc == 0, wait_info(res, mode, "hang")
    line = parse_wait_line(res)
    assert float(line["cpu_ms"]) < 50 and int(line["nvcsw"]) < 50, wait_info(res, mode, "hang")


@pytest.mark.parametrize("proxy_mode", ["hang", "head-part-hang"])
@pytest.mark.parametrize("mode", ["rcvtimeo", "alarm", "restart", "restart_rcvtimeo"])
def test_recv_honours_timeout_and_signals_while_answer_awaited(lab, c_bins, need_lib, testproxy,
                                                               tag, mode, proxy_mode):
    """A blocking recv() on a diverted socket whose proxy answers nothing (or part of a
    head, then nothing) ends as the program asked: EAGAIN at its SO_RCVTIMEO, EINTR at
    a signal whose handler has no SA_RESTART, a restart for one with SA_RESTART (as
    libc/Linux do without the library)."""
    testproxy.set_mode(proxy_mode)
    res = run_wait(lab, tag, mode)
    info = wait_info(res, mode, proxy_mode)
    assert proxy_requests(lab, tag), "the request never reached the test proxy\n" + info
    assert res.rc == 0, info


# An origin whose connects hang: a listener of backlog 0 whose queue is kept full, so
# the kernel drops further SYNs (as the test proxy's `blackhole`), on an address of its own.
SYN_DROPPING_ORIGIN = "203.0.113.77"


@pytest.fixture
def syn_dropping_origin(lab):
    subprocess.run(["ip", "netns", "exec", lab.name, "ip", "addr", "add",
                    SYN_DROPPING_ORIGIN + "/32", "dev", "lo"], check=True)

    def listen():
        lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lst.bind((SYN_DROPPING_ORIGIN, 80))
        lst.listen(0)
        fillers = []
        for _ in range(2):
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.setblocking(False)
            try:
                c.connect((SYN_DROPPING_ORIGIN, 80))
            except OSError:
                pass
            fillers.append(c)
        return [lst] + fillers

    socks = lab.in_ns(listen)
    try:
        yield SYN_DROPPING_ORIGIN
    finally:
        for s in socks:
            s.close()
        subprocess.run(["ip", "netns", "exec", lab.name, "ip", "addr", "del",
                        SYN_DROPPING_ORIGIN + "/32", "dev", "lo"], check=False)


@pytest.mark.parametrize("mode", ["rcvtimeo", "alarm"])
def test_replay_to_an_origin_that_does_not_accept_ends_at_the_programs_timeout(
        lab, c_bins, need_lib, testproxy, tag, syn_dropping_origin, mode):
    """The proxy resets the connection before answering, and the request's replay to its
    origin hangs in the connect (SYNs dropped): the program's blocking recv still ends
    as it asked, EAGAIN at its SO_RCVTIMEO or EINTR at its signal (~1 s), as it would
    have waiting for that origin without the library; not after the replay's own 30 s
    bound (the program's watchdog says `hung` at 6 s)."""
    testproxy.set_mode("reset")
    argv = [WAIT_PROG, syn_dropping_origin, "80", tag, mode]
    res = lab.run(argv, env=TESTPROXY_ENV, debug=True, timeout=20)
    info = wait_info(res, mode, "reset, the origin dropping SYNs")
    assert proxy_requests(lab, tag), "the request never reached the test proxy\n" + info
    assert res.rc == 0, info


@pytest.mark.parametrize("mode", ["send_sndtimeo", "send_alarm"])
def test_replay_of_a_request_being_written_ends_at_the_programs_timeout(
        lab, c_bins, need_lib, testproxy, tag, syn_dropping_origin, mode):
    """The proxy closes after the head of a POST whose 512 KiB body is being written, and
    the request's replay to its origin hangs in the connect (SYNs dropped): the
    program's blocking sends still end as it asked, a short count or -1 with EAGAIN at
    its SO_SNDTIMEO or EINTR at its signal (~1 s), as they would have with that origin
    without the library; not after the replay's own 30 s bound (the program's watchdog
    says `hung` at 6 s)."""
    testproxy.set_mode("close-head")
    argv = [WAIT_PROG, syn_dropping_origin, "80", tag, mode]
    res = lab.run(argv, env=TESTPROXY_ENV, debug=True, timeout=20)
    info = wait_info(res, mode, "close-head, the origin dropping SYNs")
    assert proxy_requests(lab, tag), "the request never reached the test proxy\n" + info
    assert b"replaying after a proxy failure" in res.err, info
    assert res.rc == 0, info


@pytest.mark.parametrize("mode", ["poll_then_read", "select_then_read", "epoll_then_read"])
def test_proxy_close_before_answer_is_no_input_to_a_wait_then_blocking_read(
        lab, c_bins, need_lib, testproxy, tag, syn_dropping_origin, mode):
    """The proxy closes (FIN) before answering, and the request's replay to its origin
    hangs in the connect: a program that waits for input with a timeout (poll: Java's
    sockets with a read timeout; select: Perl's LWP; epoll) and then reads its blocking
    socket must not be told that the FIN is input, or its read blocks past its timeout.
    Its wait ends at its own timeout with nothing, as it would have waiting for that
    origin without the library (the watchdog says `hung` at 6 s otherwise)."""
    testproxy.set_mode("close")
    argv = [WAIT_PROG, syn_dropping_origin, "80", tag, mode]
    res = lab.run(argv, env=TESTPROXY_ENV, debug=True, timeout=20)
    info = wait_info(res, mode, "close, the origin dropping SYNs")
    assert proxy_requests(lab, tag), "the request never reached the test proxy\n" + info
    assert res.rc == 0, info


def test_proxy_close_before_answer_ends_at_http_tiny_timeout(
        lab, need_lib, testproxy, tag, syn_dropping_origin):
    """The same with a real client: Perl's HTTP::Tiny (timeout 1 s: a select before each
    read of its blocking socket) gets its own timeout, status 599, within ~1 s, as it
    would waiting for that origin without the library; not the replay's 30 s connect."""
    testproxy.set_mode("close")
    argv = ["/usr/bin/perl", os.path.join(CLIENT_DIR, "perl_tiny.pl"), "GET",
            "http://%s%s" % (syn_dropping_origin, tag), "--timeout", "1"]
    started = time.monotonic()
    res = lab.run(argv, env=TESTPROXY_ENV, debug=True, timeout=20)
    elapsed = time.monotonic() - started
    info = "elapsed %.1f s\n%s" % (elapsed, describe(res))
    assert proxy_requests(lab, tag), "the request never reached the test proxy\n" + info
    assert res.rc == 1 and b"status 599" in res.err, info
    assert elapsed < 5, info


@pytest.mark.parametrize("mode", ["poll", "epoll"])
def test_poll_timeout_while_partial_head_held(lab, c_bins, need_lib, testproxy, tag, mode):
    """The proxy sent 22 bytes of a head and nothing more: an event loop (poll/epoll_wait
    for 1 s, a non-blocking read when readable) gets nothing to read, and its wait ends
    at ~1 s with at most 3 readable-but-EAGAIN wake-ups (the library takes the partial
    head as it comes; a socket reported readable while every read says EAGAIN would make
    the loop spin)."""
    testproxy.set_mode("head-part-hang")
    res = run_wait(lab, tag, mode)
    info = wait_info(res, mode, "head-part-hang")
    assert proxy_requests(lab, tag), "the request never reached the test proxy\n" + info
    assert res.rc == 0, info


@pytest.mark.parametrize("mode", ["poll", "epoll"])
def test_poll_timeout_while_proxy_silent_control(lab, c_bins, need_lib, testproxy, tag, mode):
    """Control (passes with the old library too): poll/epoll_wait with a 1 s timeout on a
    diverted socket whose proxy says nothing returns 0 at ~1 s."""
    testproxy.set_mode("hang")
    res = run_wait(lab, tag, mode)
    info = wait_info(res, mode, "hang")
    assert proxy_requests(lab, tag), "the request never reached the test proxy\n" + info
    assert res.rc == 0, info


@pytest.mark.parametrize("proxy_mode", ["hang", "head-part-hang"])
def test_wait_for_answer_burns_no_cpu(lab, c_bins, need_lib, testproxy, tag, proxy_mode):
    """A 2 s SO_RCVTIMEO wait for an answer that never comes: EAGAIN at ~2 s, and the
    process (all its threads) used < 50 ms of CPU and < 50 voluntary context switches
    meanwhile (a 1 ms sleep-and-peek loop makes ~2000; without the library: 1 or 2)."""
    testproxy.set_mode(proxy_mode)
    res = run_wait(lab, tag, "rcvtimeo2")
    info = wait_info(res, "rcvtimeo2", proxy_mode)
    assert proxy_requests(lab, tag), "the request never reached the test proxy\n" + info
    line = parse_wait_line(res)
    assert line, info
    assert float(line["cpu_ms"]) < 50, "the wait used %s ms of CPU\n%s" % (line["cpu_ms"], info)
    assert int(line["nvcsw"]) < 50, "%s voluntary context switches during the wait\n%s" % (
        line["nvcsw"], info)
    assert res.rc == 0, info


# ---- item 5: a partial head, then close / reset ---------------------------------------------

# client -> (argv builder, number of origin echoes it prints)
def _partial_argv(name, tag):
    url = "http://api.example.test" + tag
    if name == "curl":
        return [os.path.join(CLIENT_DIR, "curl.sh"), "GET", url], 1
    if name in ("py_httpclient", "py_asyncio", "py_requests"):
        # py_requests with Debian's python3-requests (/usr/bin/python3 has it)
        return [PY, os.path.join(CLIENT_DIR, name + ".py"), "GET", url], 1
    if name == "c_keepalive_seq":  # GET, POST, GET on one connection (send/recv)
        return [os.path.join(BIN, "keepalive_seq"), "api.example.test", "80", tag], 3
    if name == "c_nonblock_epoll":  # O_NONBLOCK, epoll, EAGAIN (libuv style)
        return [os.path.join(BIN, "nonblock_epoll"), "api.example.test", "80", tag], 1
    raise ValueError(name)


PARTIAL_CLIENTS = ["curl", "py_httpclient", "py_requests", "py_asyncio", "c_keepalive_seq",
                   "c_nonblock_epoll"]


@pytest.mark.parametrize("cname", PARTIAL_CLIENTS)
@pytest.mark.parametrize("proxy_mode", ["head-part-close", "head-part-reset"])
def test_partial_head_then_close_replays_to_origin(lab, c_bins, need_lib, testproxy, tag,
                                                   proxy_mode, cname):
    """The proxy reads the request, sends b"HTTP/1.1 200 OK\\r\\nCont" and closes (FIN)
    or resets: a proxy failure (README: 'closes before a complete response head'), so
    the request is replayed to the origin and the program gets the origin's own 200
    answer, within 10 s."""
    if cname == "py_requests":
        r = subprocess.run([PY, "-c", "import requests"], stderr=subprocess.DEVNULL)
        if r.returncode != 0:
            pytest.skip("no python3-requests")
    testproxy.set_mode(proxy_mode)
    argv, n = _partial_argv(cname, tag)
    t0 = time.time()
    res = lab.run(argv, env=TESTPROXY_ENV, debug=True, timeout=12)
    elapsed = time.time() - t0
    info = "%s with the test proxy in %s mode, %.1f s\n%s" % (cname, proxy_mode, elapsed, describe(res))
    assert proxy_requests(lab, tag), "the request never reached the test proxy\n" + info
    assert res.rc == 0, info
    es = json_objects(res.text_out)
    assert len(es) == n, "expected %d origin answers\n%s" % (n, info)
    for e in es:
        assert_direct(e, res, origin=API, path=tag)
    assert elapsed < 10, "the replay took %.1f s\n%s" % (elapsed, info)


def run_wait_client(lab, tag, nonblocking, timeout, env=None, debug=True):
    argv = [PY, os.path.join(CLIENT_DIR, "py_wait_client.py"), "http://api.example.test" + tag,
            "--timeout", str(timeout)]
    if nonblocking:
        argv.append("--nonblocking")
    res = lab.run(argv, env=dict(TESTPROXY_ENV, **(env or {})), debug=debug, timeout=timeout + 10)
    try:
        out = json.loads(res.text_out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        out = {}
    return res, out


@pytest.mark.parametrize("proxy_mode", ["head-part-close", "head-part-reset"])
def test_partial_head_then_close_nonblocking_client_no_spin(lab, need_lib, testproxy, tag,
                                                            proxy_mode):
    """asyncio client (non-blocking socket, epoll), partial head then FIN/RST: the
    origin's 200, and the request cost < 0.3 s of CPU (no busy loop)."""
    testproxy.set_mode(proxy_mode)
    res, out = run_wait_client(lab, tag, nonblocking=True, timeout=8)
    info = "client: %s\n%s" % (out, describe(res))
    assert proxy_requests(lab, tag), "the request never reached the test proxy\n" + info
    assert out.get("status") == 200, info
    e = json.loads(out["body"])
    assert e["server"] == API and e["path"] == tag and hdr(e, "x-via-testproxy") is None, info
    assert out["cpu"] < 0.3, "the client used %.2f s of CPU\n%s" % (out["cpu"], info)


@pytest.mark.parametrize("proxy_mode", ["head-part-hang", "hang"])
def test_nonblocking_client_own_timeout_no_spin(lab, need_lib, testproxy, tag, proxy_mode):
    """asyncio client with its own 2 s timeout; the proxy sends part of a head and then
    nothing (`head-part-hang`; `hang`: nothing at all, a control that passes with the
    old library): the client fails with its own timeout at ~2 s, having used < 0.3 s of
    CPU (the socket is not reported readable while every read says EAGAIN)."""
    testproxy.set_mode(proxy_mode)
    res, out = run_wait_client(lab, tag, nonblocking=True, timeout=2)
    info = "client: %s\n%s" % (out, describe(res))
    assert proxy_requests(lab, tag), "the request never reached the test proxy\n" + info
    assert out.get("error") == "timeout", info
    assert 1.8 <= out["elapsed"] <= 3.5, info
    assert out["cpu"] < 0.3, "the client spun: %.2f s of CPU in %.2f s\n%s" % (
        out["cpu"], out["elapsed"], info)


# ---- item 6: bounded retries ------------------------------------------------------------------

def parse_curl_i(out):
    """curl -i output -> (status, [[k, v]...], body) of the last response."""
    text = out.decode("latin-1")
    status, headers, body = None, [], text
    while text.startswith("HTTP/"):
        head, _, rest = text.partition("\r\n\r\n")
        lines = head.split("\r\n")
        status = int(lines[0].split()[1])
        headers = [[k.strip(), v.strip()] for k, _, v in (ln.partition(":") for ln in lines[1:])]
        body = text = rest
    return status, headers, body


def get_with_headers(lab, cname, tag, env=None):
    """GET http://api.example.test<tag> through the test proxy at the default log level
    (warnings only). Returns dict(status, headers, body, elapsed, res)."""
    env = dict(TESTPROXY_ENV, **(env or {}))
    url = "http://api.example.test" + tag
    t0 = time.time()
    if cname == "curl":
        res = lab.run(["curl", "-sS", "-i", "--noproxy", "*", "-m", "10", url], env=env,
                      debug=False, timeout=15)
        status, headers, body = parse_curl_i(res.out)
    else:
        res, out = run_wait_client(lab, tag, nonblocking=False, timeout=10, env=env, debug=False)
        status, headers, body = out.get("status"), out.get("headers", []), out.get("body")
    return {"status": status, "headers": headers, "body": body,
            "elapsed": time.time() - t0, "res": res}


def retry_info(r, calls):
    return "status %s after %.2f s, %d proxy calls\nheaders: %s\nbody: %r\n%s" % (
        r["status"], r["elapsed"], len(calls), r["headers"], r["body"], describe(r["res"]))


def assert_passed_on(r, calls, want_calls, max_elapsed):
    """The proxy's 429 'retry later' answer reached the program, after want_calls proxy
    calls (one request id), without x-lunar-sequence-id, with one warning about it."""
    info = retry_info(r, calls)
    assert len(calls) >= 1, "the request never reached the test proxy\n" + info
    assert r["status"] == 429 and r["body"] == "retry later\n", \
        "expected the proxy's 429 passed on\n" + info
    assert r["elapsed"] < max_elapsed, "took %.1f s\n%s" % (r["elapsed"], info)
    assert len(calls) == want_calls, "expected %d proxy calls\n%s" % (want_calls, info)
    assert len({req_header(c, "x-lunar-req-id")[0] for c in calls}) == 1, info
    assert not [k for k, _ in r["headers"] if k.lower() == "x-lunar-sequence-id"], \
        "x-lunar-sequence-id reached the program\n" + info
    lines = stderr_lines(r["res"])
    assert len(lines) == 1 and "retry" in lines[0].lower(), \
        "expected exactly one warning line, about the retry; got %r\n%s" % (lines, info)


@pytest.mark.parametrize("cname", ["curl", "py_httpclient"])
def test_retry_delay_beyond_cap_passes_answer_on(lab, need_lib, testproxy, tag, cname):
    """x-lunar-retry-after: 1e9 (beyond the default 60 s cap): the program gets the 429
    at once (< 5 s), one proxy call, no x-lunar-sequence-id, one warning."""
    testproxy.set_mode("retry:1e9:1")
    r = get_with_headers(lab, cname, tag)
    assert_passed_on(r, proxy_requests(lab, tag), 1, 5)


@pytest.mark.parametrize("cname", ["curl", "py_httpclient"])
def test_retry_attempts_capped_at_default(lab, need_lib, testproxy, tag, cname):
    """A proxy that always says 'retry after 0.05 s': 1 + 10 proxy calls (default
    LUNAR_RETRY_MAX_ATTEMPTS), then the 429 is passed on, within a few seconds."""
    testproxy.set_mode("retry:0.05:1000")
    r = get_with_headers(lab, cname, tag)
    assert_passed_on(r, proxy_requests(lab, tag), 11, 5)


def test_retry_attempts_cap_configurable(lab, need_lib, testproxy, tag):
    """LUNAR_RETRY_MAX_ATTEMPTS=3: 1 + 3 proxy calls, then the 429."""
    testproxy.set_mode("retry:0.05:1000")
    r = get_with_headers(lab, "curl", tag, env={"LUNAR_RETRY_MAX_ATTEMPTS": "3"})
    assert_passed_on(r, proxy_requests(lab, tag), 4, 5)


def test_retry_delay_cap_configurable(lab, need_lib, testproxy, tag):
    """LUNAR_RETRY_MAX_DELAY_SEC=1 and a proxy asking for 2 s: the 429 at once (< 1.5 s),
    one proxy call."""
    testproxy.set_mode("retry:2:1")
    r = get_with_headers(lab, "curl", tag, env={"LUNAR_RETRY_MAX_DELAY_SEC": "1"})
    assert_passed_on(r, proxy_requests(lab, tag), 1, 1.5)


@pytest.mark.parametrize("cname", ["curl", "py_httpclient"])
def test_retry_within_bounds_control(lab, need_lib, testproxy, tag, cname):
    """Control (passes with the old library too): 'retry after 0.05 s' twice, then the
    proxy passes the request: the origin's 200 through the proxy after 3 calls, and no
    warning."""
    testproxy.set_mode("retry:0.05:2")
    r = get_with_headers(lab, cname, tag)
    calls = proxy_requests(lab, tag)
    info = retry_info(r, calls)
    assert r["status"] == 200, info
    e = json.loads(r["body"])
    assert e["path"] == tag and hdr(e, "x-via-testproxy") == "1", info
    assert len(calls) == 3, info
    assert not [k for k, _ in r["headers"] if k.lower() == "x-lunar-sequence-id"], info
    assert stderr_lines(r["res"]) == [], info


# ---- item 10: non-HTTP inside a virtual TLS session ----------------------------------------

ECHO_TLS = "%s:443" % labmod.ECHO_IP
BANNER_TLS = "%s:443" % labmod.BANNER_IP


class LoopbackCapture:
    """Every frame on the namespace's loopback (AF_PACKET, ETH_P_ALL) while it runs."""

    def __init__(self, lab):
        self.lab = lab
        self.ready = threading.Event()
        self.stop_ev = threading.Event()
        self.box = {}
        self.thread = threading.Thread(target=self._outer, daemon=True)

    def _outer(self):
        try:
            self.box["data"] = self.lab.in_ns(self._capture)
        except BaseException as e:  # noqa: B902 - reported by stop()
            self.box["error"] = e
            self.ready.set()

    def _capture(self):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            s.bind(("lo", 0))
            s.settimeout(0.1)
            self.ready.set()
            buf = bytearray()
            while not self.stop_ev.is_set():
                try:
                    buf += s.recv(65536)
                except socket.timeout:
                    pass
            # drain what is queued
            s.setblocking(False)
            while True:
                try:
                    buf += s.recv(65536)
                except OSError:
                    break
            return bytes(buf)
        finally:
            s.close()

    def __enter__(self):
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("capture did not start")
        if "error" in self.box:
            raise self.box["error"]
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        self.thread.join(10)

    @property
    def data(self):
        if "error" in self.box:
            raise self.box["error"]
        return self.box["data"]


def tls_line_records(lab, server, since):
    return [r for r in lab.origin_log() if r.get("server") == server and r.get("t", 0) >= since]


def run_tls_line(lab, kind, host, arg, preload=True):
    argv = [PY, os.path.join(CLIENT_DIR, "py_tls_line.py"), kind, host, "443", lab.ca_file, arg]
    res = lab.run(argv, preload=preload, debug=preload, timeout=25)
    try:
        out = json.loads(res.text_out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        out = {}
    return res, out


ECHO_PAYLOADS = {
    "line": "HELLO lunar {tag}\\n",
    "h2-preface": "PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\nHELLO lunar {tag}\\n",
}


@pytest.mark.parametrize("payload", list(ECHO_PAYLOADS))
def test_tls_non_http_reaches_origin_inside_tls(lab, need_lib, tag, payload):
    """A Python ssl client (blocking socket, verified against the lab CA) connects to
    echo.example.test:443 by name with the library and HAProxy up (its TLS session is
    made virtual) and speaks a non-HTTP protocol: the echo server must get it inside
    TLS (a handshake, SNI echo.example.test, the payload decrypted) and echo it back;
    no byte of the payload crosses the loopback in clear text (capture)."""
    lab.start_haproxy()
    marker = "HELLO lunar " + tag
    arg = ECHO_PAYLOADS[payload].format(tag=tag)
    t0 = time.time()  # records of earlier connections are logged before this
    with LoopbackCapture(lab) as cap:
        res, out = run_tls_line(lab, "echo", "echo.example.test", arg)
        time.sleep(0.3)  # the last frames
    recs = tls_line_records(lab, ECHO_TLS, t0)
    info = "client: %s\necho server: %s\n%s" % (out, json.dumps(recs), describe(res))
    leaked = [r for r in recs if r.get("plaintext")
              or "wrong version number" in r.get("tls_error", "").lower()]
    assert not leaked, "the echo server got plaintext instead of a ClientHello\n" + info
    assert marker.encode() not in cap.data, \
        "the payload crossed the loopback in clear text\n" + info
    assert b"echo.example.test" in cap.data, "the capture saw nothing (SNI)\n" + info
    assert res.rc == 0 and out.get("ok"), "the client did not get its bytes back\n" + info
    mine = [r for r in recs if marker in r.get("data", "")]
    assert len(mine) == 1 and "tls_error" not in mine[0], info
    assert mine[0]["sni"] == "echo.example.test" and mine[0]["tls_version"], info


def test_tls_server_speaks_first_reaches_origin_inside_tls(lab, need_lib, tag):
    """The same client on banner.example.test:443 (the server speaks first: the program
    reads before it writes on its virtual session): the banner server gets a TLS
    handshake and the lines inside TLS; the client gets banner and replies; no line
    crosses the loopback in clear text."""
    lab.start_haproxy()
    word = "lunar-" + uuid.uuid4().hex[:12]
    t0 = time.time()  # records of earlier connections are logged before this
    with LoopbackCapture(lab) as cap:
        res, out = run_tls_line(lab, "banner", "banner.example.test", word)
        time.sleep(0.3)
    # a failed handshake is logged once the server gives up on the connection (<= 10 s)
    recs = tls_line_records(lab, BANNER_TLS, t0)
    info = "client: %s\nbanner server: %s\n%s" % (out, json.dumps(recs), describe(res))
    assert word.encode() not in cap.data, "a line crossed the loopback in clear text\n" + info
    assert res.rc == 0 and out.get("ok"), "banner exchange failed\n" + info
    mine = [r for r in recs if "HELLO " + word in r.get("lines", [])]
    assert len(mine) == 1 and not mine[0]["plaintext"] and "tls_error" not in mine[0], info
    assert mine[0]["sni"] == "banner.example.test", info


@pytest.mark.parametrize("kind", ["echo", "banner"])
def test_tls_line_servers_without_library(lab, tag, kind):
    """Control: the lab's TLS line servers with the same client, no library."""
    host = kind + ".example.test"
    word = "lunar-" + uuid.uuid4().hex[:12]
    arg = "HELLO lunar %s\\n" % word if kind == "echo" else word
    t0 = time.time()  # records of earlier connections are logged before this
    with LoopbackCapture(lab) as cap:
        res, out = run_tls_line(lab, kind, host, arg, preload=False)
        time.sleep(0.3)
    recs = tls_line_records(lab, ECHO_TLS if kind == "echo" else BANNER_TLS, t0)
    info = "client: %s\nserver: %s\n%s" % (out, json.dumps(recs), describe(res))
    assert res.rc == 0 and out.get("ok"), info
    mine = [r for r in recs if word in r.get("data", "") or "HELLO " + word in r.get("lines", [])]
    assert len(mine) == 1 and not mine[0]["plaintext"] and "tls_error" not in mine[0], info
    assert word.encode() not in cap.data and host.encode() in cap.data, info


# ---- what a wait reports of the proxy's end --------------------------------------------

RDHUP_CLIENT = r"""
import select, socket, sys
s = socket.create_connection(("api.example.test", 80), timeout=10)
s.sendall(b"GET /t?t=%s HTTP/1.1\r\nHost: api.example.test\r\n\r\n" % sys.argv[1].encode())
p = select.poll()
p.register(s, select.POLLIN | select.POLLRDHUP)
ev = p.poll(5000)[0][1]
print("first event", "rdhup" if ev & select.POLLRDHUP else "no-rdhup", flush=True)
head = b""
while b"\r\n\r\n" not in head:
    got = s.recv(65536)
    if not got:
        break
    head += got
print(head.split(b"\r\n", 1)[0].decode() if head else "EOF", flush=True)
"""


def test_proxy_closing_before_its_answer_shows_no_rdhup(lab, need_lib, testproxy, tag):
    """The test proxy reads the request and closes without answering (FIN): a program
    polling for POLLIN|POLLRDHUP (event loops take RDHUP for the peer's close) sees the
    origin's answer, never the proxy's RDHUP. (Before: the first event was POLLIN|POLLRDHUP
    although the library was replaying the request to the origin.)"""
    testproxy.set_mode("close")
    res = lab.run([PY, "-c", RDHUP_CLIENT, tag[1:]], env=TESTPROXY_ENV, debug=True,
                  timeout=20)
    lines = res.out.decode().splitlines()
    assert res.rc == 0 and lines == ["first event no-rdhup", "HTTP/1.1 200 OK"], describe(res)


ONESHOT_CLIENT = r"""
import errno, select, socket
s = socket.socket()
s.setblocking(False)
print("connect", errno.errorcode.get(s.connect_ex(("203.0.113.10", 80))), flush=True)
ep = select.epoll()
ep.register(s.fileno(), select.EPOLLOUT | select.EPOLLONESHOT)
events = ep.poll(5)
print("events", [e & select.EPOLLOUT and "out" for _, e in events], flush=True)
print("SO_ERROR", s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR), flush=True)
"""


def test_a_one_shot_epoll_registration_survives_a_hidden_refusal(lab, need_lib, testproxy):
    """The proxy's traffic port refuses (nothing listens there; its handshake answers): a
    non-blocking connect registered with EPOLLOUT|EPOLLONESHOT gets its EPOLLOUT once the
    library has moved the socket to the origin, as without the library. (Before: the
    hidden refusal used up the one-shot registration, and epoll_wait timed out.)"""
    env = {"LUNAR_PROXY_HOST": "127.0.0.1:8009",
           "LUNAR_HANDSHAKE_PORT": str(labmod.TESTPROXY_HANDSHAKE)}
    res = lab.run([PY, "-c", ONESHOT_CLIENT], env=env, debug=True, timeout=20)
    assert res.out.decode().splitlines() == [
        "connect EINPROGRESS", "events ['out']", "SO_ERROR 0"], describe(res)


READ_FIRST_CLIENT = r"""
import errno, select, socket, sys, time
s = socket.socket()
s.setblocking(False)
print("connect", errno.errorcode.get(s.connect_ex(("203.0.113.10", 80))), flush=True)
time.sleep(0.3)  # the proxy port's refusal has come
try:
    s.recv(100)
    print("read bytes", flush=True)
except BlockingIOError:
    print("read EAGAIN", flush=True)
except OSError as e:
    print("read", errno.errorcode.get(e.errno), flush=True)
select.select([], [s], [], 5)
print("SO_ERROR", s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR), flush=True)
s.settimeout(5)
s.sendall(b"GET /t?t=%s HTTP/1.1\r\nHost: api.example.test\r\n\r\n" % sys.argv[1].encode())
head = b""
while b"\r\n\r\n" not in head:
    head += s.recv(65536)
print(head.split(b"\r\n", 1)[0].decode(), flush=True)
"""


def test_a_read_before_waiting_for_the_connect_meets_no_proxy_refusal(lab, need_lib, testproxy,
                                                                      tag):
    """The proxy's traffic port refuses: a program that reads its non-blocking socket
    before waiting for the connect gets EAGAIN (the connect, now to the origin, is under
    way), as without the library, then its answer from the origin. (Before: the read
    failed with ECONNREFUSED, the proxy's refusal.)"""
    env = {"LUNAR_PROXY_HOST": "127.0.0.1:8009",
           "LUNAR_HANDSHAKE_PORT": str(labmod.TESTPROXY_HANDSHAKE)}
    res = lab.run([PY, "-c", READ_FIRST_CLIENT, tag[1:]], env=env, debug=True, timeout=20)
    assert res.out.decode().splitlines() == [
        "connect EINPROGRESS", "read EAGAIN", "SO_ERROR 0", "HTTP/1.1 200 OK"], describe(res)


# ---- the program's own shutdown (c-tests/program_shutdown.c) --------------------------------

@pytest.mark.parametrize("mode", ["cancel_rd", "cancel_rdwr", "cancel_poll"])
def test_a_reader_cancelled_by_the_programs_shutdown_gets_its_end_of_file(lab, need_lib, tag,
                                                                          c_bins, mode):
    """Another thread shuts the socket for reading while the reader waits for a slow
    answer (HAProxy, /delay/3000): the reader gets 0 at once, as without the library,
    and the request is not sent to the origin a second time (no replay, no failure)."""
    path = "/delay/3000?" + tag
    res = lab.run([os.path.join(c_bins, "program_shutdown"), "api.example.test", "80", path,
                   mode], debug=True, timeout=20)
    line = parse_wait_line(res)
    assert res.rc == 0, "%s\n%s" % (line, describe(res))
    time.sleep(3.5)  # a replay, had there been one, reaches the origin within this
    seen = lab.origin_log(contains=tag)
    assert len(seen) == 1, "the origin got the request %d times\n%s" % (len(seen), describe(res))
    assert "Lunar Proxy failed" not in res.text_err, describe(res)


def test_a_write_after_the_programs_half_close_meets_epipe_and_sigpipe(lab, need_lib, tag,
                                                                       c_bins):
    """send, shutdown(SHUT_WR), write again: -1 EPIPE and one SIGPIPE (the kernel's),
    not a proxy failure hidden by a replay; the first request's answer still comes."""
    res = lab.run([os.path.join(c_bins, "program_shutdown"), "api.example.test", "80", tag,
                   "write_after_wr"], debug=True, timeout=20)
    line = parse_wait_line(res)
    assert res.rc == 0, "%s\n%s" % (line, describe(res))
    seen = lab.origin_log(contains=tag)
    assert len(seen) == 1, "the origin got the request %d times\n%s" % (len(seen), describe(res))
    assert "Lunar Proxy failed" not in res.text_err, describe(res)


def test_a_broken_pipe_that_cannot_be_hidden_comes_with_its_sigpipe(lab, need_lib, testproxy,
                                                                   tag, c_bins):
    """Replay off and a proxy that breaks the connection in the middle of an 8 MiB body
    (close-head): the program's write gets EPIPE, and with it one SIGPIPE, as the kernel
    sends it to a send without MSG_NOSIGNAL (before: EPIPE without the signal, since the
    library's own sends to the proxy keep it back); a second write the same. The failure
    is counted once (before: once per failed write)."""
    testproxy.set_mode("close-head")
    env = dict(TESTPROXY_ENV, LUNAR_REPLAY_MAX_BYTES="0")
    res = lab.run([os.path.join(c_bins, "program_shutdown"), "api.example.test", "80", tag,
                   "broken_pipe"], env=env, debug=True, timeout=30)
    line = parse_wait_line(res)
    assert res.rc == 0, "%s\n%s" % (line, describe(res))
    failures = [ln for ln in stderr_lines(res) if "Lunar Proxy failed" in ln]
    assert len(failures) == 1, "one failure, counted once:\n%s" % describe(res)


# ---- a thread cancelled while it waits on a diverted socket (c-tests/thread_cancel.c) ----

PROXY_OVER_TLS = {"LUNAR_PROXY_SUPPORT_TLS": "1",
                  "LUNAR_PROXY_HOST": "%s:%d" % (labmod.PROXY_NAME, labmod.HAPROXY_TLS_TRAFFIC),
                  "LUNAR_HANDSHAKE_PORT": str(labmod.HAPROXY_TLS_HANDSHAKE)}


def run_thread_cancel(lab, c_bins, path, mode, env=None):
    return lab.run([os.path.join(c_bins, "thread_cancel"), "api.example.test", "80", path, mode],
                   env=env, debug=True, timeout=30)


def run_with_handshake_hanging(lab, c_bins, tag, mode):
    """thread_cancel's handshake modes make the test proxy's handshake hang and answer
    again themselves; answered again here too, whatever the program did."""
    try:
        return run_thread_cancel(lab, c_bins, tag, mode, env=TESTPROXY_ENV)
    finally:
        lab.set_testproxy_handshake("unmanaged")


def assert_cancelled_cleanly(res):
    line = parse_wait_line(res)
    assert res.rc == 0, "%s\n%s" % (line, describe(res))
    assert line.get("cancelled") == "1" and line.get("cleanup") == "1", describe(res)
    assert line.get("nonblock", "0") == "0", describe(res)


@pytest.mark.parametrize("over", ["plain", "tls"])
@pytest.mark.parametrize("mode", ["recv", "poll"])
def test_a_thread_cancelled_while_awaiting_the_answer_ends_cancelled(lab, need_lib, tag, c_bins,
                                                                     mode, over):
    """pthread_cancel of a thread blocked in recv (or poll) for a slow answer (HAProxy,
    /delay/3000; the proxy reached over TLS too): the thread ends as cancelled, its cleanup
    handler runs, and the process's next request is answered through the proxy. Before: the
    process aborted (SIGABRT: the cancellation's unwind met the library's panic catch)."""
    env = dict(PROXY_OVER_TLS, LUNAR_PROXY_CA_FILE=lab.ca_file) if over == "tls" else None
    res = run_thread_cancel(lab, c_bins, "/delay/3000?" + tag, mode, env=env)
    assert_cancelled_cleanly(res)
    assert parse_wait_line(res).get("after") == "200", describe(res)


def test_a_threads_own_exit_from_a_signal_handler_keeps_its_value(lab, need_lib, tag, c_bins):
    """A signal handler calls pthread_exit((void *)42) in a thread blocked in recv for a
    slow answer (the same forced unwind as a cancellation): the join sees 42, the cleanup
    handler runs, the next request is answered through the proxy. Before: the join saw
    PTHREAD_CANCELED (the library ended the thread as cancelled)."""
    res = run_thread_cancel(lab, c_bins, "/delay/3000?" + tag, "exit_in_handler")
    assert_cancelled_cleanly(res)
    line = parse_wait_line(res)
    assert line.get("after") == "200" and line.get("via_proxy") == "1", describe(res)


@pytest.mark.parametrize("mode,proxy_mode", [("write", "stall"), ("connect", "blackhole")])
def test_a_thread_cancelled_in_a_blocked_write_or_connect_ends_cancelled(lab, need_lib, testproxy,
                                                                        tag, c_bins, mode,
                                                                        proxy_mode):
    """pthread_cancel of a thread whose write blocks (a 64 MiB body to a proxy that reads
    no more: the test proxy's `stall`) or whose connect to the proxy blocks (`blackhole`):
    it ends as cancelled, its cleanup handler runs and finds its socket blocking, as the
    program made it. Before: SIGABRT; then, the connect's socket left non-blocking (the
    library's bounded connect makes it so for a while), which failed the program's next
    blocking read with EAGAIN."""
    testproxy.set_mode(proxy_mode)
    env = dict(TESTPROXY_ENV, LUNAR_PROXY_CONNECT_TIMEOUT_MS="5000")
    res = run_thread_cancel(lab, c_bins, tag, mode, env=env)
    assert_cancelled_cleanly(res)


def test_a_thread_cancelled_in_the_handshake_with_the_proxy_leaves_the_proxy_in_use(
        lab, need_lib, testproxy, tag, c_bins):
    """The process's first connect runs the library's handshake with the proxy, whose
    answer hangs (the program asks the test proxy for that); the thread is cancelled in
    it. The handshake is not the proxy failing: once the proxy answers handshakes again,
    the process's next request goes through it. Before: the cancelled handshake counted as
    a failure, without a warning, and requests went direct for LUNAR_EXIT_COOLDOWN_AFTER_SEC."""
    res = run_with_handshake_hanging(lab, c_bins, tag, "handshake")
    assert_cancelled_cleanly(res)
    line = parse_wait_line(res)
    assert line.get("after") == "200" and line.get("via_proxy") == "1", describe(res)


def test_a_thread_cancelled_while_another_threads_handshake_runs_ends_at_once(
        lab, need_lib, testproxy, tag, c_bins):
    """Another thread's first connect runs the handshake with the proxy, which hangs
    (it gives up after ~1.6 s); the thread cancelled waits for it in the library: it
    ends at once (joined within 500 ms), not when the handshake gives up. Before: the
    wait, a futex, was no cancellation point (joined after ~1.6 s)."""
    assert_cancelled_cleanly(run_with_handshake_hanging(lab, c_bins, tag, "handshake_wait"))


def test_a_thread_cancelled_during_a_retry_delay_ends_at_once(lab, need_lib, testproxy, tag,
                                                             c_bins):
    """The proxy asks for a retry in 10 s (retry:10:1); the blocking reader waits out the
    delay in the library and is cancelled there: it ends at once (joined within 2 s), its
    cleanup handler runs, and the next request is answered through the proxy. Before: the
    wait, a futex, was no cancellation point (joined after ~9.4 s)."""
    testproxy.set_mode("retry:10:1")
    res = run_thread_cancel(lab, c_bins, tag, "recv", env=TESTPROXY_ENV)
    assert_cancelled_cleanly(res)
    line = parse_wait_line(res)
    assert line.get("after") == "200" and line.get("via_proxy") == "1", describe(res)


@pytest.mark.parametrize("prog", ["tls_thread_cancel", "tls_thread_cancel_gnutls"])
def test_a_thread_cancelled_in_ssl_read_of_a_diverted_https_request_ends_cancelled(
        lab, need_lib, tag, c_bins, prog):
    """The same for a thread blocked in OpenSSL's SSL_read or GnuTLS's gnutls_record_recv
    (a virtual session, the answer awaited from HAProxy): cancelled, cleaned up, and the
    next https request answered. Before: SIGABRT."""
    res = lab.run([os.path.join(c_bins, prog), "api.example.test", "443",
                   "/delay/3000?" + tag, lab.ca_file], debug=True, timeout=20)
    assert_cancelled_cleanly(res)
    assert parse_wait_line(res).get("after") == "200", describe(res)


def test_a_thread_cancelled_without_the_library_control(lab, tag, c_bins):
    """Control: what the c-test expects is what the program gets without the library."""
    res = lab.run([os.path.join(c_bins, "thread_cancel"), "api.example.test", "80",
                   "/delay/3000?" + tag, "recv"], preload=False, timeout=20)
    assert_cancelled_cleanly(res)
