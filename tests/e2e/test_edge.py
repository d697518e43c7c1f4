"""Edge cases: IPv6, response framing on one connection, secrets in the log, programs
that never use the network, server-side (accepted) sockets, non-HTTP under epoll."""
import json
import os
import time

import pytest

from conftest import (CLIENT_DIR, PY, assert_direct, assert_ok, assert_proxied, describe,
                      echoes, hdr, labmod, one_echo, sha256)

API6 = "[2001:db8::10]:80"


def test_ipv6_name_goes_to_proxy(client, need_lib, tag):
    res = client.run("GET", "http://api6.example.test" + tag)
    assert_ok(res)
    assert_proxied(one_echo(res), res, "api6.example.test", origin=API6, path=tag)


def test_ipv6_literal_goes_to_proxy(client, need_lib, tag):
    res = client.run("GET", "http://[2001:db8::10]" + tag)
    assert_ok(res)
    assert_proxied(one_echo(res), res, "[2001:db8::10]", origin=API6, path=tag)


def test_ipv6_loopback_goes_direct(client, need_lib, tag):
    res = client.run("GET", "http://[::1]" + tag)
    assert_ok(res)
    assert_direct(one_echo(res), res, origin="[::1]:80", path=tag)


def test_response_framing_sequence_one_connection(lab, need_lib, tag):
    """HEAD, 204, 304, GET, big GET, POST, chunked response on one keep-alive
    connection through the proxy: each response whole, the connection kept."""
    res = lab.run([PY, os.path.join(CLIENT_DIR, "py_sequence.py"), "api.example.test", tag],
                  debug=True, timeout=60)
    assert_ok(res)
    recs = [json.loads(ln) for ln in res.out.splitlines() if ln.strip()]
    assert [r["status"] for r in recs] == [200, 204, 304, 200, 200, 200, 200, 200], describe(res)
    assert recs[0]["len"] == 0 and recs[1]["len"] == 0 and recs[2]["len"] == 0
    assert recs[4]["sha256"] == sha256(labmod.pattern_bytes(100000))
    assert recs[6]["sha256"] == sha256(labmod.pattern_bytes(5000))
    assert recs[5]["body"]["body_len"] == 70000
    for i in (3, 5, 7):
        assert_proxied(recs[i]["body"], res, "api.example.test", origin="203.0.113.10:80")
    origin = lab.origin_log(contains=tag)
    assert len(origin) == 8, "origin saw %d requests, expected 8" % len(origin)
    srcs = {dict((k.lower(), v) for k, v in r["headers"]).get("x-seen-src") for r in origin}
    assert len(srcs) == 1 and None not in srcs, "the connection to the proxy was not kept: %s" % srcs


def test_secrets_not_logged(lab, need_lib, tag):
    res = lab.run(["curl", "-sS", "-H", "Authorization: Bearer SECRET-AUTH-1",
                   "-H", "Cookie: session=SECRET-COOKIE-2",
                   "-H", "Proxy-Authorization: Basic SECRET-PROXY-3",
                   "http://api.example.test" + tag], debug=True)
    assert_ok(res)
    e = one_echo(res)
    assert_proxied(e, res, "api.example.test")
    assert hdr(e, "authorization") == "Bearer SECRET-AUTH-1"
    assert hdr(e, "cookie") == "session=SECRET-COOKIE-2"
    assert b"SECRET" not in res.err, "a secret header value appeared in the log:\n" + res.text_err


@pytest.mark.parametrize("cmd", [["sh", "-c", "echo hello; ls / >/dev/null"],
                                 [PY, "-c", "print('hello')"],
                                 ["/usr/bin/node", "-e", "console.log('hello')"]],
                         ids=["sh", "python", "node"])
def test_program_without_network_is_silent(lab, need_lib, cmd):
    """With LUNAR_PROXY_HOST set and DEBUG logging, a program that never connects
    prints nothing extra and never talks to the proxy (no handshake)."""
    before = lab.haproxy_log().count("GET /handshake")
    res = lab.run(cmd, debug=True, timeout=30)
    assert_ok(res)
    assert res.out == b"hello\n", describe(res)
    assert res.err == b"", "library wrote to stderr in a program that never connected:\n" + res.text_err
    time.sleep(0.2)
    assert lab.haproxy_log().count("GET /handshake") == before, "handshake from a program without network"


def test_accepted_sockets_untouched(lab, need_lib, tag, tmp_path):
    """A server running under the library (port 80): its accepted connections are
    never diverted, its responses are unchanged."""
    err = open(os.path.join(str(tmp_path), "srv.err"), "wb")
    ready = os.path.join(str(tmp_path), "srv.ready")
    p = lab.spawn([PY, os.path.join(os.path.dirname(CLIENT_DIR), "..", "lab", "origin.py"),
                   "--bind", "%s:80" % labmod.SPARE_IP, "--ready", ready], debug=True, stderr=err)
    err.close()
    try:
        deadline = time.time() + 10
        while not os.path.exists(ready) and time.time() < deadline:
            time.sleep(0.05)
        assert os.path.exists(ready), "preloaded server did not start"
        res = lab.run(["curl", "-sS", "http://spare.example.test" + tag, "http://spare.example.test" + tag],
                      preload=False)
        assert_ok(res)
        es = echoes(res)
        assert len(es) == 2
        for e in es:
            assert_direct(e, res, origin="%s:80" % labmod.SPARE_IP, path=tag)
    finally:
        lab.stop(p)
    with open(os.path.join(str(tmp_path), "srv.err"), "rb") as f:
        log = f.read().decode("utf-8", "replace")
    assert "-> proxy" not in log, "the server's accepted sockets were diverted:\n" + log


@pytest.mark.parametrize("kind,ip", [("echo", "203.0.113.12"), ("banner", "203.0.113.13")])
def test_non_http_node_epoll(lab, need_lib, kind, ip):
    """Non-HTTP on port 80 from Node (non-blocking socket, epoll): untouched. The banner
    server speaks first: Node registers the socket for input alone and waits, which is
    judged after 1 s without a write (the socket goes to the origin)."""
    res = lab.run(["/usr/bin/node", os.path.join(CLIENT_DIR, "node_lineproto.js"), kind, ip, "80"],
                  debug=True, timeout=30)
    assert res.rc == 0, "non-HTTP exchange from Node broken under the library\n" + describe(res)
    out = json.loads(res.out)
    assert out["ok"], out


def test_non_http_node_epoll_without_library(lab):
    for kind, ip in [("echo", "203.0.113.12"), ("banner", "203.0.113.13")]:
        res = lab.run(["/usr/bin/node", os.path.join(CLIENT_DIR, "node_lineproto.js"), kind, ip, "80"],
                      preload=False, timeout=30)
        assert res.rc == 0, describe(res)


def test_lunar_host_header_case_and_port(lab, need_lib, tag):
    """The Host header the application sends (with an explicit :80) does not change
    which host Lunar is told about: x-lunar-host has no default port."""
    res = lab.run(["curl", "-sS", "-H", "Host: api.example.test:80", "http://api.example.test" + tag],
                  debug=True)
    assert_ok(res)
    e = one_echo(res)
    assert hdr(e, "x-via-haproxy") == "1", describe(res)
    assert hdr(e, "x-seen-lunar-host") == "api.example.test", \
        "x-lunar-host %r (expected no :80)\n%s" % (hdr(e, "x-seen-lunar-host"), describe(res))


ZERO_READ = r"""
import ctypes, socket, sys, time
libc = ctypes.CDLL(None, use_errno=True)  # the process's read(2): the preload's first
s = socket.create_connection(("api.example.test", 80), timeout=10)
s.sendall(b"GET /delay/600?t=%s HTTP/1.1\r\nHost: api.example.test\r\n\r\n" % sys.argv[1].encode())
t0 = time.monotonic()
got = libc.read(s.fileno(), ctypes.create_string_buffer(1), 0)
print("zero read %d in %.3f s" % (got, time.monotonic() - t0), flush=True)
head = b""
while b"\r\n\r\n" not in head:
    head += s.recv(1)
print(head.split(b"\r\n", 1)[0].decode(), flush=True)
"""


def test_a_read_of_no_bytes_returns_at_once(lab, need_lib, tag):
    """read(fd, buf, 0) while the proxy's answer is on its way (the origin waits 600 ms)
    returns 0 at once, as without the library; the answer is then read whole. (Before:
    the library looked for the answer's head first: EAGAIN on this non-blocking socket,
    and on a blocking one a wait for the head.)"""
    res = lab.run([PY, "-c", ZERO_READ, tag[1:]], debug=True, timeout=20)
    assert_ok(res)
    lines = res.out.decode().splitlines()
    took = float(lines[0].split()[-2])
    assert lines[0].startswith("zero read 0 ") and took < 0.3, describe(res)
    assert lines[1] == "HTTP/1.1 200 OK", describe(res)
