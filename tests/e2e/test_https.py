"""HTTPS (issue 5): real clients against the lab's TLS origins, with the library.

The lab's https origins (api.example.test :443 and :8443, other.example.test :443)
have certificates from a test CA the lab makes; every client here trusts that CA only
(lab.tls_env(), lab.java_opts()). untrusted.example.test serves a certificate from
another CA, and wrongname.example.test reaches api's origin under a name its
certificate does not carry: both must end in the client's own verification error.

Two kinds of tests:

- unmarked: hold today (port 443 passes through the library untouched) and must
  keep holding once https is diverted: every client works over TLS with the library
  loaded (whichever way the request went, the origin answered over TLS and saw no
  x-lunar-* header), PHP's curl (TLS the library cannot drive) goes straight to the
  origin, a block-listed host keeps its TLS end to end, a proxy that is down means
  TLS to the origin, a certificate the client does not trust is the client's error.
- `needs_tls_divert`: what diversion must do (the request reaches the proxy as plain
  HTTP with `x-lunar-scheme: https`, the failsafe falls back over real TLS, retries).

Nothing leaves the namespace: every name resolves to an address on its loopback.
"""
import json
import os
import random
import re
import ssl
import subprocess
import time

import pytest

from conftest import (CLIENT_DIR, INTERCEPTOR, JAVA_OPTS, PY, REPO, UUID4, assert_direct,
                      assert_ok, describe, echoes, hdr, hdrs, labmod, one_echo, sha256)

divert = pytest.mark.needs_tls_divert

API = "api.example.test"
API_TLS = "%s:443" % labmod.API_IP
API_TLS_8443 = "%s:8443" % labmod.API_IP
PORTS_8443 = {"LUNAR_INTERCEPT_PORTS": "80,443,8443"}  # 8443 is not intercepted by default
TESTPROXY_ENV = {"LUNAR_PROXY_HOST": "127.0.0.1:%d" % labmod.TESTPROXY_TRAFFIC,
                 "LUNAR_HANDSHAKE_PORT": str(labmod.TESTPROXY_HANDSHAKE)}
CTESTS = os.path.join(REPO, "c-tests")

# client name -> how it is run (see HttpsClient.argv)
CLIENTS = ["curl", "wget", "py_httpsclient", "py_urllib", "py_requests", "perl_ssl",
           "ruby_nethttp", "php_curl", "node_https", "java_httpclient"]
# Never diverted, must keep working untouched: PHP's curl extension, which PHP loads with
# RTLD_DEEPBIND: libcurl binds connect/send/recv and SSL_* straight to libc and libssl, so
# a preloaded library never sees its calls (plain http included). Node's and Java's TLS
# are their own, diverted through the hooks the library injects (lang/; test_node_hook.py,
# test_java_hook.py).
UNTOUCHED = ["php_curl"]
DIVERTED = [c for c in CLIENTS if c not in UNTOUCHED]
CANNOT = {
    ("py_urllib", "keepalive"): "urllib.request opens a new connection for every request",
}

# The client's own certificate verification error at the handshake: (exit status,
# stderr regex). After a fallback the program's handshake was already made (virtually,
# with the proxy): the error comes from a read, and must name the verification
# (VERIFY_AT_READ, the TLS library's own words).
VERIFY_ERROR = {
    "curl": (60, r"SSL certificate problem|no alternative certificate subject name"),
    "wget": (5, r"is not trusted|does not match hostname"),  # run with --verbose
    "py_httpsclient": (1, r"CERTIFICATE_VERIFY_FAILED"),
    "py_urllib": (1, r"CERTIFICATE_VERIFY_FAILED"),
    "py_requests": (1, r"CERTIFICATE_VERIFY_FAILED|doesn't match"),
    "perl_ssl": (1, r"certificate verify failed|hostname verification failed"),
    "ruby_nethttp": (1, r"certificate verify failed"),
    "php_curl": (1, r"curl error 60"),
    "node_https": (1, r"unable to (get local issuer|verify the first) certificate|ERR_TLS_CERT_ALTNAME_INVALID"),
    "java_httpclient": (1, r"PKIX path building failed|No subject alternative DNS name"),
}

VERIFY_AT_READ = re.compile(r"certificate verif|CERTIFICATE_VERIFY_FAILED|certificate is NOT trusted"
                            r"|hostname mismatch", re.I)

TLS_PROGRAMS = ["tls_socket_bio", "tls_custom_bio", "tls_nonblock_epoll", "tls_gnutls"]
TLS_PROGRAM_POST = {"tls_nonblock_epoll": 2000000}  # else 100000 (c-tests/tls_common.h)


# ---- fixtures -------------------------------------------------------------------

@pytest.fixture(scope="session")
def venv_python():
    """A venv (made once, kept in target/e2e-venv) whose `requests` is Debian's
    python3-requests (--system-site-packages): requests as an application would run it."""
    venv = os.path.join(REPO, "target", "e2e-venv")
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        subprocess.run([PY, "-m", "venv", "--system-site-packages", "--clear", venv], check=True)
    r = subprocess.run([py, "-c", "import requests"], stderr=subprocess.PIPE)
    if r.returncode != 0:
        pytest.fail("no `requests` in %s: install python3-requests (scripts/install-deps.sh)\n%s"
                    % (venv, r.stderr.decode()))
    return py


@pytest.fixture(scope="session")
def c_tls_bins():
    r = subprocess.run([os.path.join(CTESTS, "build.sh")], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    assert r.returncode == 0, "c-tests/build.sh failed:\n" + r.stdout.decode()
    return os.path.join(CTESTS, "bin")


class HttpsClient:
    """One https client with the e2e clients' interface (clients/README in
    tests/e2e/README.md), trusting the lab CA (or `ca`)."""

    def __init__(self, name, lab, java_classes, venv_python, tmpdir):
        self.name, self.lab, self.tmpdir = name, lab, tmpdir
        self.java_classes, self.venv_python = java_classes, venv_python

    def skip_if_cannot(self, scenario):
        reason = CANNOT.get((self.name, scenario))
        if reason:
            pytest.skip(reason)

    def base(self, ca=None):
        n, c = self.name, CLIENT_DIR
        if n in ("curl", "wget"):
            return [os.path.join(c, n + ".sh")]
        if n in ("py_httpsclient", "py_urllib"):
            return [PY, os.path.join(c, n + ".py")]
        if n == "py_requests":
            return [self.venv_python, os.path.join(c, "py_requests.py")]
        if n == "perl_ssl":
            return ["/usr/bin/perl", os.path.join(c, "perl_ssl.pl")]
        if n == "ruby_nethttp":
            return ["ruby", os.path.join(c, "ruby_nethttp.rb")]
        if n == "php_curl":
            return ["php", os.path.join(c, "php_curl.php")]
        if n == "node_https":
            return ["/usr/bin/node", os.path.join(c, "node_https.js")]
        if n == "java_httpclient":
            if not self.java_classes:
                pytest.skip("no javac")
            return ["java"] + JAVA_OPTS + self.lab.java_opts(ca) + ["-cp", self.java_classes,
                                                                    "JavaHttpClient"]
        raise ValueError(n)

    def run(self, method, url, data=None, headers=(), repeat=1, chunked=False, ca=None,
            env=None, preload=True, proxy=True, debug=True, timeout=60, verbose=False):
        argv = self.base(ca) + [method, url] + (["--verbose"] if verbose else [])
        if data is not None:
            path = os.path.join(self.tmpdir, "body-%d.bin" % random.randrange(1 << 30))
            with open(path, "wb") as f:
                f.write(data)
            argv += ["--data-file", path]
        for h in headers:
            argv += ["--header", h]
        if repeat != 1:
            argv += ["--repeat", str(repeat)]
        if chunked:
            argv.append("--chunked")
        full_env = self.lab.tls_env(ca)
        full_env.update(env or {})
        return self.lab.run(argv, env=full_env, preload=preload, proxy=proxy, debug=debug,
                            timeout=timeout)


@pytest.fixture(params=CLIENTS)
def hclient(request, lab, java_classes, venv_python, tmp_path):
    return HttpsClient(request.param, lab, java_classes, venv_python, str(tmp_path))


@pytest.fixture(params=DIVERTED)
def dclient(request, lab, java_classes, venv_python, tmp_path):
    """The clients whose TLS library (OpenSSL, GnuTLS) the library drives."""
    return HttpsClient(request.param, lab, java_classes, venv_python, str(tmp_path))


@pytest.fixture(params=UNTOUCHED)
def uclient(request, lab, java_classes, venv_python, tmp_path):
    return HttpsClient(request.param, lab, java_classes, venv_python, str(tmp_path))


@pytest.fixture
def haproxy_up(lab):
    lab.start_haproxy()
    yield lab
    lab.start_haproxy()


@pytest.fixture
def haproxy_down(lab):
    lab.stop_haproxy()
    try:
        yield lab
    finally:
        lab.start_haproxy()


# ---- what arrived -------------------------------------------------------------------

def assert_tls_origin(e, res, server=API_TLS, sni=API, path=None):
    """The echo comes from the https origin `server`, over TLS, with SNI `sni`."""
    ctx = "\norigin saw: %s\n%s" % (json.dumps(e), describe(res))
    assert e.get("scheme") == "https", "the origin did not answer over TLS" + ctx
    assert e["server"] == server, "wrong origin" + ctx
    assert e.get("sni") == sni, "SNI at the origin" + ctx
    if path:
        assert e["path"] == path, "path" + ctx
    assert not [k for k, _ in e["headers"] if k.lower().startswith("x-lunar-")], \
        "x-lunar-* header reached the origin" + ctx


def assert_direct_tls(e, res, server=API_TLS, sni=API, path=None):
    """Straight to the origin over TLS: no proxy, nothing of Lunar's."""
    assert_direct(e, res, origin=server, path=path)
    assert_tls_origin(e, res, server, sni, path)


def assert_proxied_tls(e, res, lunar_host=API, server=API_TLS, via="x-via-haproxy", path=None):
    """Through the proxy as plain HTTP with x-lunar-scheme: https; the proxy then
    reached the origin over TLS. Returns the x-lunar-req-id."""
    ctx = "\norigin saw: %s\n%s" % (json.dumps(e["headers"]), describe(res))
    assert hdr(e, via) == "1", "request did not go through the proxy" + ctx
    assert hdr(e, "x-seen-lunar-scheme") == "https", "x-lunar-scheme" + ctx
    assert hdr(e, "x-seen-lunar-host") == lunar_host, "x-lunar-host" + ctx
    assert hdr(e, "x-seen-lunar-interceptor") == INTERCEPTOR, "x-lunar-interceptor" + ctx
    rid = hdr(e, "x-seen-lunar-req-id")
    assert rid and UUID4.match(rid), "x-lunar-req-id not a UUID v4: %r%s" % (rid, ctx)
    counts = dict(kv.split("=") for kv in hdr(e, "x-seen-lunar-counts").split(","))
    for k in ("host", "scheme", "interceptor", "req-id"):
        assert counts[k] == "1", "x-lunar-%s sent %s times%s" % (k, counts[k], ctx)
    assert hdrs(e, "host") == [lunar_host], "Host at the origin" + ctx
    assert_tls_origin(e, res, server, lunar_host.split(":")[0], path)
    return rid


def conn_id(e):
    """The program's connection: the proxy's view of it when proxied, else the origin's."""
    return hdr(e, "x-seen-src") or e["peer"]


def verify_error_run(client, url, env=None):
    """Run a GET expected to fail verification (wget verbose: -q would hide why)."""
    return client.run("GET", url, env=env, verbose=client.name == "wget")


def assert_verify_error(client, res):
    """Never a silent success: non-zero exit, no body, and the client's own verification
    error, at the handshake (its usual exit status and message) or at a read (a
    message naming the failed verification)."""
    assert res.rc != 0, "the client accepted a certificate it must reject\n" + describe(res)
    assert res.out == b"", "a body despite the verification error\n" + describe(res)
    rc, pattern = VERIFY_ERROR[client.name]
    own = "\n".join(ln for ln in res.text_err.splitlines() if not ln.startswith("[lunar-intercept"))
    at_handshake = res.rc == rc and re.search(pattern, own)
    at_read = VERIFY_AT_READ.search(own)
    if client.name == "perl_ssl" and not at_read:
        # IO::Socket::SSL's blocking read (Net::SSLeay::ssl_read_all) drains OpenSSL's
        # error queue itself, so a verification failing at a read (after a fallback)
        # reaches the program as the errno the library sets: EPROTO. README, Limits.
        at_read = re.search(r"read: Protocol error", own)
    assert at_handshake or at_read, "not the client's verification error\n" + describe(res)


def proxy_log_for(lab, path):
    return [r for r in lab.testproxy_log() if r.get("kind") == "traffic" and r.get("path") == path]


def h(rec, name):
    return [v for k, v in rec["headers"] if k.lower() == name]


# ==== unmarked: hold with today's library, and after diversion ========================

def test_client_without_library(hclient, tag):
    """The clients and the TLS lab, no LD_PRELOAD: straight to the origin over TLS."""
    res = hclient.run("GET", "https://api.example.test" + tag, preload=False)
    assert_ok(res)
    assert_direct_tls(one_echo(res), res, path=tag)


def test_get_with_library(hclient, need_lib, haproxy_up, tag):
    res = hclient.run("GET", "https://api.example.test" + tag)
    assert_ok(res)
    assert_tls_origin(one_echo(res), res, path=tag)


def test_post_json_with_library(hclient, need_lib, haproxy_up, tag):
    body = json.dumps({"client": hclient.name, "tag": tag, "n": [1, 2, 3]}).encode()
    res = hclient.run("POST", "https://api.example.test" + tag, data=body,
                      headers=["Content-Type: application/json"])
    assert_ok(res)
    e = one_echo(res)
    assert_tls_origin(e, res, path=tag)
    assert e["method"] == "POST" and e["body_sha256"] == sha256(body)
    assert hdr(e, "content-type") == "application/json"


def test_post_2mib_with_library(hclient, need_lib, haproxy_up, tag):
    body = random.Random(5).randbytes(2 * 1024 * 1024)
    res = hclient.run("POST", "https://api.example.test" + tag, data=body,
                      headers=["Content-Type: application/octet-stream"], timeout=90)
    assert_ok(res)
    e = one_echo(res)
    assert_tls_origin(e, res, path=tag)
    assert (e["body_len"], e["body_sha256"]) == (len(body), sha256(body)), "body in the response"
    recs = hclient.lab.origin_log(contains=tag)
    assert [r["body_sha256"] for r in recs] == [sha256(body)], "body at the origin"


def test_download_with_library(hclient, need_lib, haproxy_up):
    n = 2 * 1024 * 1024 + 7
    res = hclient.run("GET", "https://api.example.test/bytes/%d" % n, timeout=90)
    assert_ok(res)
    assert sha256(res.out) == sha256(labmod.pattern_bytes(n)), describe(res)


def test_keepalive_with_library(hclient, need_lib, haproxy_up, tag):
    """3 requests on one TLS connection (one program connection either way)."""
    hclient.skip_if_cannot("keepalive")
    res = hclient.run("GET", "https://api.example.test" + tag, repeat=3)
    assert_ok(res)
    es = echoes(res)
    assert len(es) == 3, describe(res)
    for e in es:
        assert_tls_origin(e, res, path=tag)
    assert len({conn_id(e) for e in es}) == 1, "3 requests on %s connections\n%s" % (
        len({conn_id(e) for e in es}), describe(res))


def test_non_default_port_with_library(hclient, need_lib, haproxy_up, tag):
    res = hclient.run("GET", "https://api.example.test:8443" + tag, env=PORTS_8443)
    assert_ok(res)
    assert_tls_origin(one_echo(res), res, server=API_TLS_8443, path=tag)


def test_curl_parallel_with_library(lab, need_lib, haproxy_up, tag):
    """curl -Z: 4 connections opened on one thread before any handshake."""
    urls = ["https://api.example.test%s/%d" % (tag, i) for i in range(4)]
    res = lab.run(["curl", "-sS", "-f", "--noproxy", "*", "-Z", "--parallel-max", "4",
                   "--parallel-immediate"] + urls, env=lab.tls_env(), debug=True)
    assert_ok(res)
    es = echoes(res)
    assert sorted(e["path"] for e in es) == sorted("%s/%d" % (tag, i) for i in range(4)), describe(res)
    for e in es:
        assert_tls_origin(e, res)
    assert len({conn_id(e) for e in es}) == 4, "expected 4 connections\n" + describe(res)


def test_untouched_runtimes_go_straight_to_origin(uclient, need_lib, haproxy_up, tag):
    """PHP's curl (RTLD_DEEPBIND): with the library
    loaded and the proxy up, their https goes to the origin, untouched, keep-alive
    included."""
    res = uclient.run("POST", "https://api.example.test" + tag, data=b'{"a": 1}', repeat=3,
                      headers=["Content-Type: application/json"])
    assert_ok(res)
    es = echoes(res)
    assert len(es) == 3, describe(res)
    for e in es:
        assert_direct_tls(e, res, path=tag)
        assert e["body_sha256"] == sha256(b'{"a": 1}')
    assert len({e["peer"] for e in es}) == 1, describe(res)


def test_block_listed_host_tls_end_to_end(hclient, need_lib, haproxy_up, tag):
    body = b'{"blocked": true}'
    res = hclient.run("POST", "https://api.example.test" + tag, data=body,
                      headers=["Content-Type: application/json"],
                      env={"LUNAR_BLOCK_LIST": API})
    assert_ok(res)
    e = one_echo(res)
    assert_direct_tls(e, res, path=tag)
    assert e["body_sha256"] == sha256(body)


def test_proxy_down_origin_over_tls(hclient, need_lib, haproxy_down, tag):
    body = random.Random(7).randbytes(300000)
    res = hclient.run("POST", "https://api.example.test" + tag, data=body,
                      headers=["Content-Type: application/octet-stream"])
    assert_ok(res)
    e = one_echo(res)
    assert_direct_tls(e, res, path=tag)
    assert e["body_sha256"] == sha256(body)
    assert len(hclient.lab.origin_log(contains=tag)) == 1


@pytest.mark.parametrize("host", ["untrusted.example.test", "wrongname.example.test"])
def test_untrusted_origin_is_the_clients_error(hclient, need_lib, haproxy_up, tag, host):
    """A certificate from a CA the client does not trust, or without the host's name:
    the client's own verification error, and no request reaches the origin."""
    res = verify_error_run(hclient, "https://%s%s" % (host, tag))
    assert_verify_error(hclient, res)
    assert hclient.lab.origin_log(contains=tag) == [], "a request reached the origin"


def test_untrusted_origin_trusted_with_its_ca(hclient, need_lib, haproxy_up, tag):
    """The same origin, its CA given to the client: it works (so the error above is
    about trust, not about the origin)."""
    res = hclient.run("GET", "https://untrusted.example.test" + tag, ca=hclient.lab.untrusted_ca_file)
    assert_ok(res)
    e = one_echo(res)
    assert (e["scheme"], e["sni"], e["path"]) == ("https", "untrusted.example.test", tag), describe(res)


# ---- c-tests TLS programs ---------------------------------------------------------------

def run_tls_program(lab, bins, prog, host, port, path, ca=None, preload=True):
    return lab.run([os.path.join(bins, prog), host, str(port), path, ca or lab.ca_file],
                   preload=preload, env=PORTS_8443 if port == 8443 else None, debug=True,
                   timeout=60)


def check_tls_program_answers(prog, res, path, server):
    """The two answers of a tls_* program: GET then POST, both from the https origin."""
    assert_ok(res)
    es = echoes(res)
    assert [e["method"] for e in es] == ["GET", "POST"], describe(res)
    n = TLS_PROGRAM_POST.get(prog, 100000)
    assert es[1]["body_sha256"] == sha256(labmod.pattern_bytes(n)), "POST body at the origin"
    for e in es:
        assert_tls_origin(e, res, server=server, path=path)
        assert hdr(e, "x-ctest") == prog
    assert conn_id(es[0]) == conn_id(es[1]), "GET and POST not on one connection\n" + describe(res)
    return es


@pytest.mark.parametrize("preload", [False, True], ids=["no-lib", "lib"])
@pytest.mark.parametrize("port,server", [(443, API_TLS), (8443, API_TLS_8443)])
@pytest.mark.parametrize("prog", TLS_PROGRAMS)
def test_tls_program(lab, c_tls_bins, need_lib, haproxy_up, tag, prog, port, server, preload):
    res = run_tls_program(lab, c_tls_bins, prog, API, port, tag, preload=preload)
    check_tls_program_answers(prog, res, tag, server)


@pytest.mark.parametrize("host", ["untrusted.example.test", "wrongname.example.test"])
@pytest.mark.parametrize("prog", TLS_PROGRAMS)
def test_tls_program_rejects_untrusted(lab, c_tls_bins, need_lib, haproxy_up, tag, prog, host):
    res = run_tls_program(lab, c_tls_bins, prog, host, 443, tag)
    assert res.rc == 3 and "certificate verification failed" in res.text_err, describe(res)
    assert lab.origin_log(contains=tag) == []


# ==== needs_tls_divert: what https diversion must do ====================================

@divert
def test_divert_get(dclient, need_lib, haproxy_up, tag):
    res = dclient.run("GET", "https://api.example.test" + tag)
    assert_ok(res)
    assert_proxied_tls(one_echo(res), res, path=tag)


@divert
def test_divert_post_json(dclient, need_lib, haproxy_up, tag):
    body = json.dumps({"client": dclient.name, "diverted": True}).encode()
    res = dclient.run("POST", "https://api.example.test" + tag, data=body,
                      headers=["Content-Type: application/json"])
    assert_ok(res)
    e = one_echo(res)
    assert_proxied_tls(e, res, path=tag)
    assert e["body_sha256"] == sha256(body) and hdr(e, "content-type") == "application/json"


@divert
def test_divert_post_2mib(dclient, need_lib, haproxy_up, tag):
    body = random.Random(11).randbytes(2 * 1024 * 1024)
    res = dclient.run("POST", "https://api.example.test" + tag, data=body,
                      headers=["Content-Type: application/octet-stream"], timeout=90)
    assert_ok(res)
    e = one_echo(res)
    assert_proxied_tls(e, res, path=tag)
    assert (e["body_len"], e["body_sha256"]) == (len(body), sha256(body)), "body in the response"
    assert [r["body_sha256"] for r in dclient.lab.origin_log(contains=tag)] == [sha256(body)]


@divert
def test_divert_keepalive(dclient, need_lib, haproxy_up, tag):
    """3 requests on one TLS connection of the program: one connection at the proxy,
    three request ids."""
    dclient.skip_if_cannot("keepalive")
    res = dclient.run("GET", "https://api.example.test" + tag, repeat=3)
    assert_ok(res)
    es = echoes(res)
    assert len(es) == 3, describe(res)
    rids = [assert_proxied_tls(e, res, path=tag) for e in es]
    assert len(set(rids)) == 3, "request ids repeat: %s" % rids
    assert len({hdr(e, "x-seen-src") for e in es}) == 1, "not one connection at the proxy\n" + describe(res)


@divert
def test_divert_non_default_port(dclient, need_lib, haproxy_up, tag):
    res = dclient.run("GET", "https://api.example.test:8443" + tag, env=PORTS_8443)
    assert_ok(res)
    assert_proxied_tls(one_echo(res), res, lunar_host="api.example.test:8443",
                       server=API_TLS_8443, path=tag)


@divert
def test_divert_curl_parallel(lab, need_lib, haproxy_up, tag):
    """curl -Z, 4 connections on one thread before any handshake: each bound to its
    own session, each request proxied once."""
    urls = ["https://api.example.test%s/%d" % (tag, i) for i in range(4)]
    res = lab.run(["curl", "-sS", "-f", "--noproxy", "*", "-Z", "--parallel-max", "4",
                   "--parallel-immediate"] + urls, env=lab.tls_env(), debug=True)
    assert_ok(res)
    es = echoes(res)
    assert sorted(e["path"] for e in es) == sorted("%s/%d" % (tag, i) for i in range(4)), describe(res)
    rids = {assert_proxied_tls(e, res) for e in es}
    assert len(rids) == 4 and len({hdr(e, "x-seen-src") for e in es}) == 4, describe(res)


# A connection per request, alternating between two hosts: each session's certificate
# names its own host and is valid now (Python checks the name; the test, what Python got),
# although the library keeps the certificates it made for the next session to that host.
ALTERNATING_HOSTS = r"""
import http.client, json, ssl, sys
context = ssl.create_default_context()
for host in sys.argv[1:]:
    conn = http.client.HTTPSConnection(host, context=context)
    conn.request("GET", "%s/" + host)
    answer = conn.getresponse()
    cert = conn.sock.getpeercert()
    print(json.dumps({"status": answer.status, "san": cert["subjectAltName"],
                      "not_before": cert["notBefore"], "not_after": cert["notAfter"],
                      "echo": json.loads(answer.read())}))
    conn.close()
"""


@divert
def test_divert_new_sessions_alternating_hosts(lab, need_lib, haproxy_up, tag):
    hosts = [API, "other.example.test"] * 3
    res = lab.run([PY, "-c", ALTERNATING_HOSTS % tag] + hosts, env=lab.tls_env(), debug=True)
    assert_ok(res)
    seen = [json.loads(line) for line in res.out.decode().splitlines() if line.strip()]
    assert len(seen) == len(hosts), describe(res)
    now = time.time()
    for host, one in zip(hosts, seen):
        assert one["status"] == 200 and one["san"] == [["DNS", host]], describe(res)
        valid = ssl.cert_time_to_seconds(one["not_before"]), ssl.cert_time_to_seconds(one["not_after"])
        assert valid[0] <= now <= valid[1], one
        server = API_TLS if host == API else "%s:443" % labmod.OTHER_IP
        assert one["echo"]["path"] == "%s/%s" % (tag, host), describe(res)
        assert_proxied_tls(one["echo"], res, lunar_host=host, server=server)


@divert
@pytest.mark.parametrize("prog", TLS_PROGRAMS)
@pytest.mark.parametrize("port,server,lunar_host", [(443, API_TLS, API),
                                                    (8443, API_TLS_8443, API + ":8443")])
def test_divert_tls_program(lab, c_tls_bins, need_lib, haproxy_up, tag, prog, port, server,
                            lunar_host):
    res = run_tls_program(lab, c_tls_bins, prog, API, port, tag)
    es = check_tls_program_answers(prog, res, tag, server)
    for e in es:
        assert_proxied_tls(e, res, lunar_host=lunar_host, server=server, path=tag)


@divert
@pytest.mark.parametrize("mode", ["clear", "connect_state"])
@pytest.mark.parametrize("second_port", [8443, 443])
def test_divert_one_ssl_object_for_two_connections(lab, c_tls_bins, need_lib, haproxy_up, tag,
                                                   mode, second_port):
    """c-tests/tls_reuse.c: one SSL object, a virtual session to :443 (through the proxy),
    then reset (SSL_clear, or SSL_set_connect_state as `openssl s_client -reconnect`) and
    connected again: to :8443 (not intercepted) a real handshake with the origin, whose
    answers come over TLS; to :443 a virtual session again, through the proxy. (Before: the
    first virtual session stayed with the object: the second SSL_connect returned 1 with
    no handshake and the requests went to :8443 in clear text.)"""
    res = lab.run([os.path.join(c_tls_bins, "tls_reuse"), API, "443", tag, lab.ca_file,
                   str(second_port), mode], debug=True, timeout=60)
    assert_ok(res)
    es = echoes(res)
    assert [e["method"] for e in es] == ["GET", "POST"] * 2, describe(res)
    for e in es[:2]:
        assert_proxied_tls(e, res, path=tag)
    for e in es[2:]:
        if second_port == 443:
            assert_proxied_tls(e, res, path=tag)
        else:
            assert_tls_origin(e, res, server=API_TLS_8443, path=tag)


@divert
def test_gnutls_line_protocol_speaking_first_reaches_the_echo_server(lab, c_tls_bins, need_lib,
                                                                    haproxy_up):
    """c-tests/gnutls_sessions.c echo: a client-speaks-first line protocol inside TLS on
    :443 (not HTTP: the socket goes to the origin in a real session). Its first
    gnutls_record_send returns 7 and the line reaches the echo server (before: 0, and the
    line was lost)."""
    res = lab.run([os.path.join(c_tls_bins, "gnutls_sessions"), "echo", lab.ca_file],
                  debug=True, timeout=30)
    assert res.rc == 0, describe(res)
    assert res.text_out.count("sent=7 back=") == 2, describe(res)


@divert
def test_gnutls_session_data_and_key_update_leave_the_answer_whole(lab, c_tls_bins, need_lib,
                                                                  haproxy_up):
    """c-tests/gnutls_sessions.c queries: gnutls_session_get_data2 and
    gnutls_session_key_update on a virtual session while its answer arrives: the answer
    reads whole (before: get_data2 read the proxy's plaintext as a TLS record and ate
    "HTTP/", and key_update answered GNUTLS_E_AGAIN for ever)."""
    res = lab.run([os.path.join(c_tls_bins, "gnutls_sessions"), "queries", lab.ca_file],
                  debug=True, timeout=30)
    assert res.rc == 0, describe(res)
    assert "answer=HTTP/1.1 200" in res.text_out, describe(res)


@divert
def test_gnutls_session_freed_late_leaves_the_next_one_on_its_fd_alone(lab, c_tls_bins, need_lib,
                                                                      testproxy):
    """c-tests/gnutls_sessions.c stale: session A's socket closed, A freed only at the end;
    session B gets A's fd number and its request fails at the proxy (error:2): B's
    fallback is B's own, to other.example.test (before: A's session took B's fallback
    and B hung)."""
    res = lab.run([os.path.join(c_tls_bins, "gnutls_sessions"), "stale", lab.ca_file,
                   str(labmod.TESTPROXY_CONTROL)], env=TESTPROXY_ENV, debug=True, timeout=30)
    assert res.rc == 0, describe(res)


@divert
def test_gnutls_record_timeout_ends_a_read_the_proxy_does_not_answer(lab, c_tls_bins, need_lib,
                                                                    testproxy, tag):
    """c-tests/gnutls_sessions.c timeout: gnutls_record_set_timeout(1000) set before the
    handshake, a GET the proxy never answers (test proxy `hang`): gnutls_record_recv ends
    with GNUTLS_E_TIMEDOUT after ~1 s, as GnuTLS's own reads do (before: the virtual
    session's read waited for ever; the program's alarm ended it at 20 s)."""
    testproxy.set_mode("hang")
    res = lab.run([os.path.join(c_tls_bins, "gnutls_sessions"), "timeout", lab.ca_file, tag],
                  env=TESTPROXY_ENV, debug=True, timeout=30)
    assert res.rc == 0, describe(res)
    assert "(GNUTLS_E_TIMEDOUT)" in res.text_out, describe(res)


@divert
@pytest.mark.parametrize("mode", ["error:2", "close", "close-head"])
def test_divert_proxy_fault_falls_back_over_tls(dclient, need_lib, testproxy, tag, mode):
    """The proxy got the request (x-lunar-scheme: https) and failed it: x-lunar-error,
    a close before any answer, a close in the middle of the request body. The client
    gets the origin's answer, over real TLS, and the origin saw the request exactly
    as the client sends it without the library."""
    body = random.Random(13).randbytes(200000)
    headers = ["Content-Type: application/octet-stream", "X-Fault-Test: %s" % mode]
    url = "https://api.example.test" + tag
    base = dclient.run("POST", url + "/baseline", data=body, headers=headers, preload=False)
    assert_ok(base)
    testproxy.set_mode(mode)
    res = dclient.run("POST", url, data=body, headers=headers, env=TESTPROXY_ENV)
    assert_ok(res)
    e = one_echo(res)
    assert_direct_tls(e, res, path=tag)
    assert e["body_sha256"] == sha256(body)
    recs = testproxy.origin_log(contains=tag)
    recs = [r for r in recs if r["path"] == tag]
    assert len(recs) == 1, "origin got %d requests, expected the one fallback\n%s" % (len(recs), describe(res))
    want = [[k.lower(), v] for k, v in one_echo(base)["headers"]]
    got = [[k.lower(), v] for k, v in recs[0]["headers"]]
    assert got == want, "the origin did not see the unmodified request:\n%s\n!=\n%s" % (got, want)
    seen = proxy_log_for(testproxy, tag)
    assert seen and h(seen[0], "x-lunar-scheme") == ["https"] and h(seen[0], "x-lunar-host") == [API], \
        "the request never reached the test proxy as https\n%s" % seen


@divert
@pytest.mark.parametrize("host", ["untrusted.example.test", "wrongname.example.test"])
def test_divert_fallback_to_untrusted_origin_is_the_clients_error(dclient, need_lib, testproxy,
                                                                  tag, host):
    """The proxy fails the request, the library falls back to an origin whose
    certificate the client would reject: the client's own verification error, never a
    silent success, and no request at the origin."""
    testproxy.set_mode("error:2")
    res = verify_error_run(dclient, "https://%s%s" % (host, tag), env=TESTPROXY_ENV)
    assert_verify_error(dclient, res)
    assert testproxy.origin_log(contains=tag) == []
    seen = proxy_log_for(testproxy, tag)
    assert seen and h(seen[0], "x-lunar-host") == [host], "the request never reached the proxy"


@divert
def test_divert_retry_after(dclient, need_lib, testproxy, tag):
    testproxy.set_mode("retry:0.3:2")
    t0 = time.time()
    res = dclient.run("GET", "https://api.example.test" + tag, env=TESTPROXY_ENV)
    elapsed = time.time() - t0
    assert_ok(res)
    assert_proxied_tls(one_echo(res), res, via="x-via-testproxy", path=tag)
    log = proxy_log_for(testproxy, tag)
    assert len(log) == 3, "expected 3 requests at the proxy (2 retries), got %d\n%s" % (len(log), describe(res))
    assert all(h(r, "x-lunar-scheme") == ["https"] for r in log)
    assert len({h(r, "x-lunar-req-id")[0] for r in log}) == 1, "req-id changed across retries"
    assert h(log[0], "x-lunar-sequence-id") == [] and h(log[1], "x-lunar-sequence-id") \
        and h(log[2], "x-lunar-sequence-id"), "retries must carry x-lunar-sequence-id"
    assert elapsed >= 0.6, "retries did not wait x-lunar-retry-after"
    assert b"x-lunar-sequence-id" not in res.out.lower()
