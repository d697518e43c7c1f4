"""Which requests go through Lunar Proxy (HAProxy in the lab) and which go
direct, for every client, with the library preloaded."""
import pytest

from conftest import (INTERCEPTOR, assert_direct, assert_ok, assert_proxied, debug_lines,
                      echoes, hdr, one_echo)

API = "203.0.113.10:80"
OTHER = "203.0.113.11:80"
INTERNAL = "127.0.0.2:80"


def test_allow_listed_host_goes_to_proxy(client, need_lib, tag):
    res = client.run("GET", "http://api.example.test" + tag,
                     env={"LUNAR_ALLOW_LIST": "api.example.test"})
    assert_ok(res)
    assert_proxied(one_echo(res), res, "api.example.test", origin=API, path=tag)
    assert debug_lines(res, "-> proxy"), "no '-> proxy' DEBUG line\n" + res.text_err


def test_external_default_goes_to_proxy(client, need_lib, tag):
    res = client.run("GET", "http://api.example.test" + tag + "?q=1&r=two")
    assert_ok(res)
    e = one_echo(res)
    assert_proxied(e, res, "api.example.test", origin=API, path=tag + "?q=1&r=two")
    # the Host header the application sent reached the proxy unchanged
    assert hdr(e, "x-seen-host") == "api.example.test", e["headers"]


def test_external_by_ip_goes_to_proxy(client, need_lib, tag):
    res = client.run("GET", "http://203.0.113.11" + tag)
    assert_ok(res)
    assert_proxied(one_echo(res), res, "203.0.113.11", origin=OTHER, path=tag)


@pytest.mark.parametrize("url", ["http://127.0.0.2", "http://internal.test"])
def test_internal_goes_direct(client, need_lib, tag, url):
    res = client.run("GET", url + tag)
    assert_ok(res)
    assert_direct(one_echo(res), res, origin=INTERNAL, path=tag)
    assert debug_lines(res, "-> direct"), "no '-> direct' DEBUG line\n" + res.text_err


@pytest.mark.parametrize("url,allow,lunar_host", [
    ("http://127.0.0.2", "127.0.0.2", "127.0.0.2"),
    ("http://internal.test", "internal.test", "internal.test"),
])
def test_allow_listed_internal_goes_to_proxy(client, need_lib, tag, url, allow, lunar_host):
    res = client.run("GET", url + tag, env={"LUNAR_ALLOW_LIST": allow})
    assert_ok(res)
    assert_proxied(one_echo(res), res, lunar_host, origin=INTERNAL, path=tag)


def test_allow_list_excludes_other_hosts(client, need_lib, tag):
    res = client.run("GET", "http://api.example.test" + tag,
                     env={"LUNAR_ALLOW_LIST": "other.example.test,127.0.0.2"})
    assert_ok(res)
    assert_direct(one_echo(res), res, origin=API, path=tag)


@pytest.mark.parametrize("block", ["api.example.test", "203.0.113.10", "other.example.test,api.example.test"])
def test_block_list_goes_direct(client, need_lib, tag, block):
    res = client.run("GET", "http://api.example.test" + tag, env={"LUNAR_BLOCK_LIST": block})
    assert_ok(res)
    assert_direct(one_echo(res), res, origin=API, path=tag)
    assert debug_lines(res, "-> direct"), "no '-> direct' DEBUG line\n" + res.text_err


def test_block_list_other_host_still_proxied(client, need_lib, tag):
    res = client.run("GET", "http://api.example.test" + tag,
                     env={"LUNAR_BLOCK_LIST": "other.example.test"})
    assert_ok(res)
    assert_proxied(one_echo(res), res, "api.example.test", origin=API)


def test_x_lunar_allow_false_sends_external_direct(client, need_lib, tag):
    res = client.run("GET", "http://api.example.test" + tag, headers=["x-lunar-allow: false"])
    assert_ok(res)
    e = one_echo(res)
    assert_direct(e, res, origin=API, path=tag)  # also: no x-lunar-allow at the origin


def test_x_lunar_allow_true_sends_internal_to_proxy(client, need_lib, tag):
    res = client.run("GET", "http://127.0.0.2" + tag, headers=["x-lunar-allow: true"])
    assert_ok(res)
    # assert_proxied checks the proxy saw no x-lunar-allow (count 0) and the origin neither
    assert_proxied(one_echo(res), res, "127.0.0.2", origin=INTERNAL, path=tag)


def test_x_lunar_allow_false_beats_allow_list(client, need_lib, tag):
    res = client.run("GET", "http://api.example.test" + tag, headers=["X-Lunar-Allow: false"],
                     env={"LUNAR_ALLOW_LIST": "api.example.test"})
    assert_ok(res)
    assert_direct(one_echo(res), res, origin=API, path=tag)


def test_managed_proxy_gets_tenant_id(client, need_lib, tag, lab):
    res = client.run("GET", "http://api.example.test" + tag,
                     env={"LUNAR_HANDSHAKE_PORT": "8082", "LUNAR_TENANT_ID": "tenant-42"})
    assert_ok(res)
    assert_proxied(one_echo(res), res, "api.example.test", managed_tenant="tenant-42", origin=API)


def test_unmanaged_proxy_no_tenant_even_if_set(client, need_lib, tag):
    res = client.run("GET", "http://api.example.test" + tag,
                     env={"LUNAR_HANDSHAKE_PORT": "8083", "LUNAR_TENANT_ID": "tenant-42"})
    assert_ok(res)
    assert_proxied(one_echo(res), res, "api.example.test", managed_tenant=None, origin=API)


def test_handshake_sends_tenant_and_interceptor(lab, need_lib, tag):
    """The handshake carries x-lunar-tenant-id (and x-lunar-interceptor): HAProxy logs
    the captured headers of /handshake requests as {tenant|interceptor}."""
    before = lab.haproxy_log().count("\n")
    res = lab.run(["curl", "-sS", "http://api.example.test" + tag],
                  env={"LUNAR_HANDSHAKE_PORT": "8082", "LUNAR_TENANT_ID": "tenant-hs-7"}, debug=True)
    assert_ok(res)
    lines = [ln for ln in lab.haproxy_log().splitlines()[before:] if "GET /handshake" in ln]
    assert lines, "no handshake request reached HAProxy\n" + res.text_err
    assert "{tenant-hs-7|%s}" % INTERCEPTOR in lines[-1], lines[-1]


def test_proxy_named_by_hostname(client, need_lib, tag):
    res = client.run("GET", "http://api.example.test" + tag,
                     env={"LUNAR_PROXY_HOST": "proxy.lunar.test:8000"})
    assert_ok(res)
    assert_proxied(one_echo(res), res, "api.example.test", origin=API, path=tag)


def test_proxy_host_unset_direct_and_silent(client, need_lib, tag):
    res = client.run("GET", "http://api.example.test" + tag, proxy=False, debug=False)
    assert_ok(res)
    assert_direct(one_echo(res), res, origin=API, path=tag)
    assert res.err == b"", "stderr not empty with LUNAR_PROXY_HOST unset: %r" % res.err


def test_proxy_host_unset_even_with_debug_log_is_direct(client, need_lib, tag):
    res = client.run("GET", "http://api.example.test" + tag, proxy=False, debug=True)
    assert_ok(res)
    assert_direct(one_echo(res), res, origin=API, path=tag)


@pytest.mark.parametrize("value", ["http://127.0.0.1:8000", "127.0.0.1", "127.0.0.1:abc"])
def test_malformed_proxy_host_direct_one_warning(client, need_lib, tag, value):
    res = client.run("GET", "http://api.example.test" + tag, env={"LUNAR_PROXY_HOST": value},
                     debug=False)
    assert_ok(res)
    assert_direct(one_echo(res), res, origin=API, path=tag)
    lines = [ln for ln in res.text_err.splitlines() if ln.strip()]
    assert len(lines) == 1, "expected exactly one warning line on stderr, got %r" % lines
    assert "LUNAR_PROXY_HOST" in lines[0] or "lunar" in lines[0].lower(), lines


def test_not_intercepted_port_goes_direct(client, need_lib, tag):
    res = client.run("GET", "http://api.example.test:8080" + tag)
    assert_ok(res)
    assert_direct(one_echo(res), res, origin="203.0.113.10:8080", path=tag)


def test_intercept_ports_adds_8080(client, need_lib, tag):
    res = client.run("GET", "http://api.example.test:8080" + tag,
                     env={"LUNAR_INTERCEPT_PORTS": "80,8080"})
    assert_ok(res)
    e = one_echo(res)
    assert_proxied(e, res, "api.example.test:8080", origin="203.0.113.10:8080", path=tag)


def test_head_request(client, need_lib, tag):
    res = client.run("HEAD", "http://api.example.test" + tag)
    assert_ok(res)
    assert res.out == b"", "HEAD produced a body: %r" % res.out[:200]
    recs = client.lab.origin_log(contains=tag)
    assert len(recs) == 1 and recs[0]["method"] == "HEAD", recs
    assert dict((k.lower(), v) for k, v in recs[0]["headers"]).get("x-via-haproxy") == "1", recs


def test_status_404_passed_on(client, need_lib, tag):
    """An origin 404 reaches the application as a 404 (not a proxy failure)."""
    res = client.run("GET", "http://api.example.test/status/404?" + tag[1:])
    assert res.rc != 0, "client reported success for a 404\n" + repr(res)
    recs = client.lab.origin_log(contains=tag[1:])
    assert len(recs) == 1, "expected exactly one request at the origin (no fallback retry): %r" % recs
    assert dict((k.lower(), v) for k, v in recs[0]["headers"]).get("x-via-haproxy") == "1", recs
    if client.name not in ("curl", "wget"):  # curl -f and wget print no error body
        assert echoes(res), "the 404 body did not reach the application\n" + repr(res)
