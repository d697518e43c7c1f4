"""APT as the client: its http method (/usr/lib/apt/methods/http; https is the same
program, on GnuTLS), driven by its own protocol on stdin as apt-get drives it
(clients/apt_http.py), in every Debian image the library is baked into. It connects
non-blocking and waits in select(), pipelines up to ten GETs on one connection before it
reads an answer, drops its privileges to _apt after it starts, and reads answers into
its own buffer. Every fetch must go through the proxy with Lunar's headers, and every
proxy fault must end as the origin's answer, the file's bytes exact."""
import os

import pytest

from conftest import TESTPROXY_FAULTS_ENV, CLIENT_DIR, PY, assert_direct, assert_ok, describe, echoes, hdr, labmod

APT_HTTP = "/usr/lib/apt/methods/http"
ORIGIN = {"http": "203.0.113.10:80", "https": "203.0.113.10:443"}
ENV = TESTPROXY_FAULTS_ENV


@pytest.fixture(params=["http", "https"])
def scheme(request):
    if not os.path.exists(APT_HTTP):
        pytest.skip("no APT http method")
    return request.param


def apt_get(lab, scheme, path, repeat=1):
    argv = [PY, os.path.join(CLIENT_DIR, "apt_http.py"), "GET",
            "%s://api.example.test%s" % (scheme, path), "--ca-file", lab.ca_file]
    if repeat > 1:
        argv += ["--repeat", str(repeat)]
    return lab.run(argv, env=ENV, debug=True, timeout=60)


def at_proxy(lab, path):
    return [r for r in lab.testproxy_log()
            if r.get("kind") == "traffic" and r.get("path", "").startswith(path)]


def test_apt_fetch_goes_through_the_proxy(lab, need_lib, testproxy, scheme, tag):
    res = apt_get(lab, scheme, tag)
    assert_ok(res)
    e = echoes(res)[0]
    ctx = describe(res)
    assert hdr(e, "x-via-testproxy") == "1", ctx
    assert hdr(e, "x-seen-lunar-host") == "api.example.test", ctx
    assert hdr(e, "x-seen-lunar-scheme") == scheme, ctx
    assert hdr(e, "x-seen-lunar-interceptor").startswith("lunar-preload-interceptor/"), ctx
    assert hdr(e, "user-agent").startswith("Debian APT-HTTP/"), ctx
    assert e["server"] == ORIGIN[scheme] and e["path"] == tag, ctx


def test_apt_pipelined_fetches_each_go_through_the_proxy(lab, need_lib, testproxy, scheme,
                                                         tag):
    """Ten GETs pipelined on one connection (APT sends them before reading an answer):
    each answer, 100 KB, arrives whole and in order, each request seen by the proxy."""
    n, count = 100000, 10
    res = apt_get(lab, scheme, "/bytes/%d?%s" % (n, tag[1:]), repeat=count)
    assert_ok(res)
    want = labmod.pattern_bytes(n) + b"\n"
    assert len(res.out) == count * len(want), describe(res)
    assert res.out == want * count, describe(res)
    seen = at_proxy(lab, "/bytes/%d?%s" % (n, tag[1:]))
    assert len(seen) == count, "%d at the proxy\n%s" % (len(seen), describe(res))


@pytest.mark.parametrize("mode", ["close", "reset", "down", "error:2", "head-part-close"])
def test_apt_proxy_fault_ends_at_the_origin(lab, need_lib, testproxy, scheme, tag, mode):
    """The proxy fails the fetch: APT gets the origin's answer, the request as it sent it."""
    testproxy.set_mode(mode)
    res = apt_get(lab, scheme, tag)
    assert_ok(res)
    e = echoes(res)[0]
    assert_direct(e, res, origin=ORIGIN[scheme], path=tag)
    assert hdr(e, "user-agent").startswith("Debian APT-HTTP/"), describe(res)
    assert len(lab.origin_log(contains=tag)) == 1, describe(res)


@pytest.mark.parametrize("mode", ["error:2", "close"])
def test_apt_pipelined_fetches_survive_a_proxy_fault(lab, need_lib, testproxy, scheme, tag,
                                                     mode):
    """Pipelined fetches while the proxy fails every request: each ends at the origin,
    whole, in order."""
    testproxy.set_mode(mode)
    n, count = 30000, 5
    path = "/bytes/%d?%s" % (n, tag[1:])
    res = apt_get(lab, scheme, path, repeat=count)
    assert_ok(res)
    assert res.out == (labmod.pattern_bytes(n) + b"\n") * count, describe(res)
    assert len(lab.origin_log(contains=tag[1:])) == count, describe(res)
