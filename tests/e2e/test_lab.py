"""The lab itself and the clients, without the library: everything goes direct,
and HAProxy behaves like Lunar Proxy's interceptor-facing side."""
import json

import pytest

from conftest import (assert_direct, assert_ok, echoes, hdr, one_echo, sha256, labmod)


def test_haproxy_routes_and_strips(lab, tag):
    st, h, body = lab.http("GET", "127.0.0.1", 8000, tag, headers={
        "x-lunar-host": "api.example.test", "x-lunar-scheme": "http",
        "x-lunar-req-id": "r1", "x-lunar-interceptor": "x/1"})
    assert st == 200, body
    e = json.loads(body)
    assert e["server"] == "203.0.113.10:80"
    assert hdr(e, "host") == "api.example.test"
    assert hdr(e, "x-via-haproxy") == "1"
    assert hdr(e, "x-seen-lunar-req-id") == "r1"
    assert not [k for k, _ in e["headers"] if k.lower().startswith("x-lunar-")]


@pytest.mark.parametrize("headers,status,lerr", [
    ({}, 401, "1"),
    ({"x-lunar-host": "unknown.example.test"}, 503, "5"),
    ({"x-lunar-host": "down.example.test"}, 503, "2"),
])
def test_haproxy_errors_carry_x_lunar_error(lab, tag, headers, status, lerr):
    st, h, body = lab.http("GET", "127.0.0.1", 8000, tag, headers=headers)
    assert st == status
    assert dict((k.lower(), v) for k, v in h).get("x-lunar-error") == lerr


def test_handshake_and_health(lab):
    assert json.loads(lab.http("GET", "127.0.0.1", 8081, "/handshake")[2]) == {"managed": lab.managed}
    assert json.loads(lab.http("GET", "127.0.0.1", 8082, "/handshake")[2]) == {"managed": True}
    assert json.loads(lab.http("GET", "127.0.0.1", 8083, "/handshake")[2]) == {"managed": False}
    assert lab.http("GET", "127.0.0.1", 8040, "/healthcheck")[2] == b"proxy is up"
    assert json.loads(lab.http("GET", "127.0.0.1", 9081, "/handshake")[2]) == {"managed": False}


@pytest.mark.parametrize("mode,status", [("pass", 200), ("error:2", 503), ("retry:0.1:1", 429)])
def test_testproxy_modes(lab, tag, mode, status):
    lab.set_mode(mode)
    try:
        st, h, body = lab.http("GET", "127.0.0.1", 9000, tag, headers={"x-lunar-host": "api.example.test"})
        assert st == status
        if mode == "pass":
            assert hdr(json.loads(body), "x-via-testproxy") == "1"
    finally:
        lab.set_mode("pass")
    log = [r for r in lab.testproxy_log() if r.get("path") == tag]
    assert log and log[-1]["mode"] == ("pass" if mode.startswith("retry") else mode)


def test_client_direct_without_library(client, tag):
    """Every client, no LD_PRELOAD: reaches the origin itself."""
    res = client.run("GET", "http://api.example.test" + tag, preload=False)
    assert_ok(res)
    assert_direct(one_echo(res), res, origin="203.0.113.10:80", path=tag)


def test_client_post_and_keepalive_without_library(client, tag):
    body = bytes(range(256)) * 300
    client.skip_if_cannot("keepalive")
    res = client.run("POST", "http://api.example.test" + tag, data=body, repeat=3,
                     headers=["Content-Type: application/octet-stream"], preload=False)
    assert_ok(res)
    es = echoes(res)
    assert len(es) == 3
    for e in es:
        assert_direct(e, res)
        assert e["body_sha256"] == sha256(body)
    assert len({e["peer"] for e in es}) == 1, "3 requests did not share a connection: %s" % [
        e["peer"] for e in es]


def test_client_chunked_without_library(client, tag):
    client.skip_if_cannot("chunked")
    body = b"chunky" * 50000
    res = client.run("POST", "http://api.example.test" + tag, data=body, chunked=True, preload=False)
    assert_ok(res)
    e = one_echo(res)
    assert e["body_sha256"] == sha256(body) and e["chunked"], e


def test_download_without_library(client, tag):
    res = client.run("GET", "http://api.example.test/bytes/3000000", preload=False)
    assert_ok(res)
    assert sha256(res.out) == sha256(labmod.pattern_bytes(3000000))
