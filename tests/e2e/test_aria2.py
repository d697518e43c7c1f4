"""aria2 as the client (`aria2c`, a download manager): its own event loop (non-blocking
sockets, epoll), names resolved by c-ares (never through getaddrinfo, so the library
knows only the address it connects to), https on GnuTLS with aria2 checking the peer
certificate's name against the URL's host itself, and downloads split over several
connections (Range requests). Through the test proxy with Lunar's headers; a file split
over four connections byte-exact; each fault mode ending with the origin's file."""
import json
import os
import shutil

import pytest

from conftest import TESTPROXY_FAULTS_ENV, describe, hdr, labmod

ARIA2C = shutil.which("aria2c") or "/usr/bin/aria2c"
ORIGIN = {"http": "203.0.113.10:80", "https": "203.0.113.10:443"}


@pytest.fixture(params=["http", "https"])
def scheme(request):
    return request.param


def aria2(lab, tmp_path, scheme, path, *options):
    """One download of api.example.test's `path` into tmp_path; the result and the file's
    bytes (None when there is no file)."""
    if not os.path.exists(ARIA2C):
        pytest.skip("aria2c is not installed (make deps installs aria2)")
    out = "got.bin"
    argv = [ARIA2C, "--quiet", "--max-tries=1", "--allow-overwrite=true",
            "--ca-certificate=" + lab.ca_file, "-d", str(tmp_path), "-o", out,
            *options, "%s://api.example.test%s" % (scheme, path)]
    res = lab.run(argv, env=TESTPROXY_FAULTS_ENV, debug=True, timeout=60)
    target = os.path.join(str(tmp_path), out)
    got = None
    if os.path.exists(target):
        with open(target, "rb") as f:
            got = f.read()
        os.unlink(target)
    return res, got


def test_aria2_download_goes_through_the_proxy(lab, need_lib, testproxy, tmp_path, tag, scheme):
    """The origin's JSON echo of the request, downloaded as a file: it came through the
    test proxy with Lunar's headers, the host the URL named (the virtual session's
    certificate carries the name aria2 asked for, which it checks)."""
    res, got = aria2(lab, tmp_path, scheme, tag)
    ctx = describe(res)
    assert res.rc == 0 and got, ctx
    echo = json.loads(got)
    headers = {k.lower(): v for k, v in echo["headers"]}
    assert headers.get("x-via-testproxy") == "1", ctx
    assert headers.get("x-seen-lunar-host") == "api.example.test", ctx
    assert headers.get("x-seen-lunar-scheme") == scheme, ctx
    assert echo["server"] == ORIGIN[scheme], ctx


def test_aria2_split_download_is_exact(lab, need_lib, testproxy, tmp_path, scheme):
    """3 MB over four connections of 1 MB ranges, through the proxy: byte-exact."""
    n = 3000000
    res, got = aria2(lab, tmp_path, scheme, "/bytes/%d" % n, "-x4", "-s4", "-k1M")
    assert res.rc == 0 and got == labmod.pattern_bytes(n), \
        "%s bytes\n%s" % (None if got is None else len(got), describe(res))
    at_proxy = [r for r in lab.testproxy_log()
                if r.get("kind") == "traffic" and r.get("path") == "/bytes/%d" % n]
    assert len(at_proxy) >= 2, "ranges at the proxy: %d\n%s" % (len(at_proxy), describe(res))


@pytest.mark.parametrize("mode", ["close", "close-head", "reset", "down", "error:2",
                                  "head-part-close", "head-part-reset"])
def test_aria2_proxy_fault_ends_at_the_origin(lab, need_lib, testproxy, tmp_path, tag, scheme,
                                              mode):
    """The proxy fails the download's request: aria2 (one try) gets the origin's file."""
    testproxy.set_mode(mode)
    n = 300000
    path = "/bytes/%d?%s" % (n, tag.strip("/").replace("/", "-"))
    res, got = aria2(lab, tmp_path, scheme, path)
    assert res.rc == 0 and got == labmod.pattern_bytes(n), describe(res)
    at_origin = lab.origin_log(contains=tag.strip("/").replace("/", "-"))
    assert at_origin and hdr(at_origin[-1], "x-via-testproxy") is None, describe(res)
