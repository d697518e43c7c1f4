"""The lab itself and the clients, without the library: everything goes direct,
and HAProxy behaves like Lunar Proxy's interceptor-facing side."""
import json
import ssl

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


# ---- the TLS lab (no library): https origins, and both proxies with x-lunar-scheme: https

TLS_ORIGINS = [("api.example.test", "203.0.113.10", 443), ("api.example.test", "203.0.113.10", 8443),
               ("other.example.test", "203.0.113.11", 443)]


@pytest.mark.parametrize("name,ip,port", TLS_ORIGINS)
def test_https_origin_serves_tls(lab, tag, name, ip, port):
    body = b'{"over": "tls"}'
    st, _, raw = lab.https("POST", ip, port, tag, body=body, headers={"Host": name})
    assert st == 200, raw
    e = json.loads(raw)
    assert (e["server"], e["scheme"], e["sni"]) == ("%s:%d" % (ip, port), "https", name)
    assert e["body_sha256"] == sha256(body)
    rec = lab.origin_log(contains=tag)
    assert len(rec) == 1 and rec[0]["scheme"] == "https"


def test_plain_origins_say_http(lab, tag):
    e = json.loads(lab.http("GET", "203.0.113.10", 80, tag)[2])
    assert e["scheme"] == "http" and "sni" not in e


def test_untrusted_origin_needs_its_own_ca(lab, tag):
    with pytest.raises(ssl.SSLCertVerificationError):
        lab.https("GET", labmod.UNTRUSTED_IP, 443, tag, headers={"Host": "untrusted.example.test"})
    st, _, raw = lab.https("GET", labmod.UNTRUSTED_IP, 443, tag, ca=lab.untrusted_ca_file,
                           headers={"Host": "untrusted.example.test"})
    assert st == 200 and json.loads(raw)["sni"] == "untrusted.example.test"
    # the failed handshake is in the origin log, without a request
    assert [r for r in lab.origin_log() if r.get("server") == labmod.UNTRUSTED_IP + ":443"
            and "unknown ca" in r.get("tls_error", "").lower()]


def test_lab_ca_files(lab):
    for f in (lab.ca_file, lab.untrusted_ca_file):
        with open(f) as fh:
            assert fh.read().startswith("-----BEGIN CERTIFICATE-----")
    env = lab.tls_env()
    assert env["SSL_CERT_FILE"] == env["CURL_CA_BUNDLE"] == env["REQUESTS_CA_BUNDLE"] == lab.ca_file


@pytest.mark.parametrize("proxy_port,via", [(8000, "x-via-haproxy"), (9000, "x-via-testproxy")])
@pytest.mark.parametrize("lunar_host,server", [
    ("api.example.test", "203.0.113.10:443"), ("api.example.test:443", "203.0.113.10:443"),
    ("api.example.test:8443", "203.0.113.10:8443"), ("other.example.test", "203.0.113.11:443")])
def test_proxies_forward_https_over_tls(lab, tag, proxy_port, via, lunar_host, server):
    """A plain HTTP request to the proxy with x-lunar-scheme: https reaches the https
    origin over TLS (verified with the lab CA), x-lunar-* stripped, Host from x-lunar-host."""
    lab.set_mode("pass")
    body = bytes(range(256)) * 1000
    st, h, raw = lab.http("POST", "127.0.0.1", proxy_port, tag, body=body, headers={
        "x-lunar-host": lunar_host, "x-lunar-scheme": "https", "x-lunar-req-id": "r-tls"})
    assert st == 200, raw
    e = json.loads(raw)
    assert (e["server"], e["scheme"]) == (server, "https"), e
    assert e["sni"] == lunar_host.split(":")[0]
    assert hdr(e, via) == "1"
    assert hdr(e, "x-seen-lunar-scheme") == "https" and hdr(e, "x-seen-lunar-host") == lunar_host
    assert hdr(e, "x-seen-lunar-req-id") == "r-tls"
    assert hdr(e, "host") == lunar_host
    assert not [k for k, _ in e["headers"] if k.lower().startswith("x-lunar-")]
    assert e["body_sha256"] == sha256(body)


@pytest.mark.parametrize("proxy_port", [8000, 9000])
def test_proxies_scheme_http_still_plain(lab, tag, proxy_port):
    lab.set_mode("pass")
    st, _, raw = lab.http("GET", "127.0.0.1", proxy_port, tag, headers={
        "x-lunar-host": "api.example.test", "x-lunar-scheme": "http"})
    assert st == 200
    assert (json.loads(raw)["server"], json.loads(raw)["scheme"]) == ("203.0.113.10:80", "http")


@pytest.mark.parametrize("proxy_port", [8000, 9000])
def test_proxies_reject_untrusted_https_origin(lab, tag, proxy_port):
    """The proxy verifies the origin: a certificate from the untrusted CA is an
    x-lunar-error 2, and no request reaches the origin."""
    lab.set_mode("pass")
    st, h, _ = lab.http("GET", "127.0.0.1", proxy_port, tag, headers={
        "x-lunar-host": "untrusted.example.test", "x-lunar-scheme": "https"})
    assert st == 503
    assert dict((k.lower(), v) for k, v in h).get("x-lunar-error") == "2"
    assert lab.origin_log(contains=tag) == []


def test_testproxy_error_mode_https(lab, tag):
    lab.set_mode("error:2")
    try:
        st, h, _ = lab.http("GET", "127.0.0.1", 9000, tag, headers={
            "x-lunar-host": "api.example.test", "x-lunar-scheme": "https"})
    finally:
        lab.set_mode("pass")
    assert st == 503 and dict((k.lower(), v) for k, v in h).get("x-lunar-error") == "2"
    assert lab.origin_log(contains=tag) == []
    log = [r for r in lab.testproxy_log() if r.get("path") == tag]
    assert len(log) == 1 and ["x-lunar-scheme", "https"] in log[0]["headers"]
