"""PHP's stream wrapper as the client (`file_get_contents('http://…')`, also under
`fopen`, SOAP and Guzzle's stream handler): PHP's own socket code, which polls its
blocking socket and then reads it with MSG_DONTWAIT, and takes a read that finds nothing
for the end of its request. The library holds an answer's head until it has all of it
(a proxy failing mid-head must still end at the origin): such a read that found part of
a head waits for the rest, or for the origin's answer after the proxy's failure
(`conn::told_ready`). Each fault mode must end as the origin's answer, the body exact."""
import os
import random

import pytest

from conftest import TESTPROXY_FAULTS_ENV, CLIENT_DIR, assert_direct, assert_ok, describe, hdr, labmod, one_echo, sha256

PHP = "/usr/bin/php"
ORIGIN = {"http": "203.0.113.10:80", "https": "203.0.113.10:443"}
ENV = TESTPROXY_FAULTS_ENV


@pytest.fixture(params=["http", "https"])
def scheme(request):
    return request.param


def php(lab, tmp_path, scheme, method, path, body=None):
    """https: through PHP's OpenSSL (a virtual session to the proxy, a real one to the
    origin on a failure), verified with the lab's CA."""
    if not os.path.exists(PHP):
        pytest.skip("php is not installed (make deps installs php-cli)")
    argv = [PHP, os.path.join(CLIENT_DIR, "php_stream.php"), method,
            "%s://api.example.test%s" % (scheme, path), "--ca-file", lab.ca_file]
    if body is not None:
        data = os.path.join(str(tmp_path), "body.bin")
        with open(data, "wb") as f:
            f.write(body)
        argv += ["--data-file", data, "--header", "Content-Type: application/octet-stream"]
    return lab.run(argv, env=ENV, debug=True, timeout=60)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_php_stream_goes_through_the_proxy(lab, need_lib, testproxy, tmp_path, tag, scheme,
                                           method):
    body = random.Random(method).randbytes(50000) if method == "POST" else None
    res = php(lab, tmp_path, scheme, method, tag, body)
    assert_ok(res)
    e = one_echo(res)
    assert hdr(e, "x-via-testproxy") == "1", describe(res)
    assert hdr(e, "x-seen-lunar-host") == "api.example.test", describe(res)
    assert hdr(e, "x-seen-lunar-scheme") == scheme, describe(res)
    if body is not None:
        assert e["body_sha256"] == sha256(body), describe(res)


@pytest.mark.parametrize("mode", ["close", "reset", "down", "error:2", "close-head",
                                  "head-part-close", "head-part-reset"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_php_stream_proxy_fault_ends_at_the_origin(lab, need_lib, testproxy, tmp_path, tag,
                                                   scheme, mode, method):
    """head-part-*: the proxy sends 22 bytes of a head, then closes or resets: PHP's
    MSG_DONTWAIT read after its poll found part of a head, and got EAGAIN (the request
    failed) before the library waited for the rest."""
    testproxy.set_mode(mode)
    body = random.Random(mode).randbytes(50000) if method == "POST" else None
    res = php(lab, tmp_path, scheme, method, tag, body)
    assert_ok(res)
    e = one_echo(res)
    assert_direct(e, res, origin=ORIGIN[scheme], path=tag)
    if body is not None:
        assert e["body_sha256"] == sha256(body), describe(res)
    assert len(lab.origin_log(contains=tag)) == 1, describe(res)
