"""Issue 12: diverted requests carried over TLS to Lunar Proxy's traffic port.

With LUNAR_PROXY_SUPPORT_TLS=1, LUNAR_PROXY_HOST=proxy.lunar.test:8400 (the lab's TLS
bind of HAProxy's traffic frontend), LUNAR_HANDSHAKE_PORT=8443 (its TLS handshake
frontend) and LUNAR_PROXY_CA_FILE=<the lab CA>, a diverted connection is connected to
the proxy and the library makes its own TLS session, verified (the lab CA, the name
proxy.lunar.test), on the program's socket: every byte the program writes is encrypted
in it, every byte it reads decrypted; the program sees plain HTTP, as in clear-text
mode. One TLS session per program connection, kept for the connection's life.

What a test reads (tests/lab/README.md, TLS to the proxy):
- the origin's echo: Lunar's headers as HAProxy saw them (x-seen-lunar-*, as for the
  clear-text diverted tests) and `x-seen-proxy-tls` (TLSv1.3 or TLSv1.2), which HAProxy
  adds only to requests that reached it over TLS; `x-seen-src`, the program's
  connection as HAProxy saw it;
- haproxy.log: a request over TLS shows its frontend as `lunar_traffic~`, the handshake
  as `lunar_handshake_tls~ ... GET /handshake`; the bad-certificate traffic frontends
  log every connection (`SSL handshake failure`);
- lab.haproxy_sessions(): connections HAProxy's TLS traffic bind (8400) accepted, from
  its stats socket: one per program connection, however many requests it carries.

A traffic port whose TLS fails is a proxy failure, handled by the failsafe: the request
goes to its destination unmodified (the origin's echo has nothing of Lunar's, status
200, exit 0) and the library writes one warning, "Lunar Proxy failed (...)", with the
reason in OpenSSL's words. The handshake port (8443, good certificate) answers, so the
proxy is up and each failure is the traffic link's: 8401 (wrong name), 8402 (expired),
8403 (unknown CA), 8000 (plain HTTP on the port), 8447 (resets in the TLS handshake),
8448 (accepts and never answers; LUNAR_PROXY_CONNECT_TIMEOUT_MS=500 bounds the wait).

http clients run without SSL_CERT_FILE/SSL_CERT_DIR (the system's store does not hold
the lab CA): only LUNAR_PROXY_CA_FILE can make the proxy trusted. https clients trust
the lab CA for the origin (lab.tls_env()).

The test_lab_* tests check the lab's side alone (no library).
"""
import json
import os
import re
import shutil
import socket
import ssl
import time

import pytest

from conftest import (PY, assert_direct, assert_ok, assert_proxied, describe, echoes, hdr,
                      labmod, make_client, one_echo, sha256)
from test_c_programs import BIG_POST_BODY, KEEPALIVE_BODY, c_bins, split_output  # noqa: F401
from test_https import (HttpsClient, assert_direct_tls, assert_proxied_tls,  # noqa: F401
                        c_tls_bins, venv_python)
from test_proxy_tls import listeners, new_log, wait_listener_log  # noqa: F401

API = "203.0.113.10:80"
OTHER = "203.0.113.11:80"
PROXY_NAME = labmod.PROXY_NAME                               # proxy.lunar.test = 127.0.0.1
TLS_TRAFFIC = labmod.HAPROXY_TLS_TRAFFIC                     # 8400
HANDSHAKE = labmod.HAPROXY_TLS_HANDSHAKE                     # 8443
WRONG_NAME = labmod.HAPROXY_TLS_TRAFFIC_WRONG_NAME           # 8401
EXPIRED = labmod.HAPROXY_TLS_TRAFFIC_EXPIRED                 # 8402
UNKNOWN_CA = labmod.HAPROXY_TLS_TRAFFIC_UNKNOWN_CA           # 8403
PLAIN = labmod.HAPROXY_TRAFFIC                               # 8000: HTTP where TLS is expected
RESET = labmod.TLS_RESET_PROXY                               # 8447
SILENT = labmod.SILENT_PROXY                                 # 8448
TLS_VERSIONS = ("TLSv1.3", "TLSv1.2")
NO_SYSTEM_TRUST = {"SSL_CERT_FILE": None, "SSL_CERT_DIR": None}
LIB_LINE = "[lunar-intercept "
BIG = 2 * 1024 * 1024

# The http clients: the e2e clients (tests/e2e/README.md) and requests (the venv's
# python); the program each needs.
HTTP_CLIENTS = {"curl": "curl", "wget": "wget", "py_httpclient": PY, "py_requests": PY,
                "node_http": "node", "java_httpclient": "java", "perl_tiny": "perl",
                "ruby_nethttp": "ruby"}


def tls_env(lab, traffic=TLS_TRAFFIC, ca="lab", extra=None):
    """TLS to the proxy asked for, with the traffic port `traffic` of proxy.lunar.test,
    the good TLS handshake port, the lab CA as LUNAR_PROXY_CA_FILE (ca=None: unset)."""
    env = {"LUNAR_PROXY_SUPPORT_TLS": "1",
           "LUNAR_PROXY_HOST": "%s:%d" % (PROXY_NAME, traffic),
           "LUNAR_HANDSHAKE_PORT": str(HANDSHAKE),
           "LUNAR_PROXY_CA_FILE": lab.ca_file if ca == "lab" else ca}
    env.update(extra or {})
    return env


@pytest.fixture
def haproxy_up(lab):
    lab.start_haproxy()  # another test may have left it down
    return lab


@pytest.fixture
def mark(lab):
    """Where the logs and HAProxy's counters stand before the test's program runs."""
    lab.start_haproxy()
    return Mark(lab)


class Mark:
    def __init__(self, lab):
        self.lab = lab
        self.log = lab.haproxy_log()
        self.sessions = lab.haproxy_sessions()

    def lines(self):
        """haproxy.log lines written since (after HAProxy has had time to write them)."""
        return new_log(self.lab, self.log)

    def tls_connections(self):
        """Connections the TLS traffic bind (8400) accepted since."""
        return self.lab.haproxy_sessions() - self.sessions


def log_requests(lines, tag):
    """[(client ip:port, frontend)] of haproxy.log's request lines for `tag`."""
    out = []
    for ln in lines:
        if tag in ln and '"' in ln:
            f = ln.split()
            out.append((f[0], f[2]))
    return out


def lib_warnings(res):
    return [ln for ln in res.text_err.splitlines() if ln.startswith(LIB_LINE)]


def assert_no_warning(res):
    w = lib_warnings(res)
    assert not w, "the library warned\n%s\n%s" % ("\n".join(w), describe(res))


def assert_over_tls(e, res):
    """The request reached HAProxy over TLS (HAProxy's x-seen-proxy-tls)."""
    v = hdr(e, "x-seen-proxy-tls")
    assert v in TLS_VERSIONS, "the request did not reach the proxy over TLS " \
        "(x-seen-proxy-tls: %r)\norigin saw: %s\n%s" % (v, json.dumps(e["headers"]), describe(res))


def assert_diverted_over_tls(e, res, path=None, origin=API, lunar_host="api.example.test"):
    """Through HAProxy with Lunar's headers (as in clear-text mode), over TLS."""
    rid = assert_proxied(e, res, lunar_host, origin=origin, path=path)
    assert_over_tls(e, res)
    return rid


def assert_log_over_tls(mark, tag, requests, connections, res):
    """haproxy.log: `requests` lines for the tag, each on the TLS frontend
    (lunar_traffic~), from `connections` client connections; and the TLS bind accepted
    exactly that many connections (a TLS session per program connection, none more)."""
    lines = mark.lines()
    reqs = log_requests(lines, tag)
    ctx = "\nhaproxy.log:\n%s\n%s" % ("\n".join(lines[-30:]), describe(res))
    assert len(reqs) == requests, "%d requests logged, want %d%s" % (len(reqs), requests, ctx)
    assert {fe for _, fe in reqs} == {"lunar_traffic~"}, "not all over TLS" + ctx
    assert len({src for src, _ in reqs}) == connections, \
        "requests from %d connections, want %d%s" % (len({s for s, _ in reqs}), connections, ctx)
    assert mark.tls_connections() == connections, "the TLS traffic port accepted %d " \
        "connections, want %d%s" % (mark.tls_connections(), connections, ctx)
    return lines


def handshakes_over_tls(lines):
    return [ln for ln in lines if " lunar_handshake_tls~ " in ln and "GET /handshake" in ln]


def need(program):
    if not shutil.which(program):
        pytest.skip("%s is not installed" % program)


def http_client(name, lab, java_classes, venv_python, tmpdir):  # noqa: F811
    need(HTTP_CLIENTS[name])
    if name == "py_requests":
        return HttpsClient(name, lab, java_classes, venv_python, tmpdir)
    return make_client(name, lab, java_classes, tmpdir)


def run_http(client, lab, method, url, **kw):
    """An http client with TLS to the proxy; no CA variable but LUNAR_PROXY_CA_FILE."""
    env = dict(NO_SYSTEM_TRUST, **tls_env(lab))
    env.update(kw.pop("env", {}))
    kw.setdefault("timeout", 40)
    return client.run(method, url, env=env, debug=False, **kw)


# ---- the lab's side alone (no library) ----------------------------------------------

def tls_request(lab, port, path, verify=True, timeout=5):
    """GET `path` with x-lunar-host: api.example.test over TLS to 127.0.0.1:port from
    inside the namespace: verified (lab CA, proxy.lunar.test), or not at all."""
    if verify:
        ctx = ssl.create_default_context(cafile=lab.ca_file)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE

    def do():
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            with ctx.wrap_socket(s, server_hostname=PROXY_NAME) as t:
                t.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nx-lunar-host: api.example.test\r\n"
                           "x-lunar-scheme: http\r\nConnection: close\r\n\r\n"
                           % (path, PROXY_NAME)).encode())
                data = b""
                while True:
                    chunk = t.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return head.split(b"\r\n")[0], body
    return lab.in_ns(do)


@pytest.mark.parametrize("port,code", [
    (TLS_TRAFFIC, None),
    (WRONG_NAME, 62),   # X509_V_ERR_HOSTNAME_MISMATCH
    (EXPIRED, 10),      # X509_V_ERR_CERT_HAS_EXPIRED
    (UNKNOWN_CA, 20),   # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
], ids=["8400-good", "8401-wrong-name", "8402-expired", "8403-unknown-ca"])
def test_lab_tls_traffic_ports(mark, tag, port, code):
    """Each TLS traffic port, verified as the library will (lab CA, proxy.lunar.test):
    8400 verifies, the others fail for their reason, each logged on its frontend as a
    failed TLS handshake. Unverified, each routes like lunar_traffic: the api origin
    answers, the request marked as having come over TLS."""
    lab = mark.lab
    frontend = labmod.HAPROXY_TLS_TRAFFIC_BAD.get(port, "lunar_traffic")
    if code is not None:
        with pytest.raises(ssl.SSLCertVerificationError) as e:
            tls_request(lab, port, tag + "/verified")
        assert e.value.verify_code == code, e.value
    status, body = tls_request(lab, port, tag, verify=code is None)
    assert status == b"HTTP/1.1 200 OK", (status, body)
    e = json.loads(body)
    assert e["server"] == API and e["path"] == tag, e
    assert hdr(e, "x-seen-proxy-tls") in TLS_VERSIONS and hdr(e, "x-via-haproxy") == "1", e
    assert hdr(e, "x-seen-lunar-host") == "api.example.test", e
    lines = mark.lines()
    assert log_requests(lines, tag) == [(hdr(e, "x-seen-src"), frontend + "~")], lines
    if code is not None:
        assert [ln for ln in lines if " %s/" % frontend in ln and "SSL handshake failure" in ln], lines
        assert mark.tls_connections() == 0
    else:
        assert mark.tls_connections() == 1


def test_lab_plain_traffic_port_is_no_tls(haproxy_up):
    """8000 answers a ClientHello with plain HTTP: OpenSSL says wrong version number."""
    ctx = ssl.create_default_context(cafile=haproxy_up.ca_file)

    def do():
        with socket.create_connection(("127.0.0.1", PLAIN), timeout=5) as s:
            ctx.wrap_socket(s, server_hostname=PROXY_NAME)
    with pytest.raises(ssl.SSLError) as e:
        haproxy_up.in_ns(do)
    assert "WRONG_VERSION_NUMBER" in str(e.value), e.value


def test_lab_counts_tls_connections_not_requests(mark, tag):
    """lab.haproxy_sessions() counts connections to 8400: 3 requests on one curl
    connection are 1, two curl commands 2."""
    lab = mark.lab
    url = "https://%s:%d%s" % (PROXY_NAME, TLS_TRAFFIC, tag)
    curl = ["curl", "-sS", "-f", "--cacert", lab.ca_file, "-H", "x-lunar-host: api.example.test"]
    res = lab.run(curl + [url, url, url], preload=False, proxy=False)
    assert_ok(res)
    assert len(echoes(res)) == 3
    assert mark.tls_connections() == 1
    assert_ok(lab.run(curl + [url], preload=False, proxy=False))
    assert mark.tls_connections() == 2


# ---- http over our TLS link ------------------------------------------------------------

def test_curl_http_diverted_over_tls(mark, need_lib, tag):
    """The basic case: curl's http request reaches the proxy over TLS with Lunar's
    headers; the handshake went over TLS to 8443, nothing to the plain ports; no warning."""
    lab = mark.lab
    res = lab.run(["curl", "-sS", "-f", "http://api.example.test" + tag], debug=False,
                  env=dict(NO_SYSTEM_TRUST, **tls_env(lab)), timeout=30)
    assert_ok(res)
    assert_diverted_over_tls(one_echo(res), res, path=tag)
    assert_no_warning(res)
    lines = assert_log_over_tls(mark, tag, requests=1, connections=1, res=res)
    assert len(handshakes_over_tls(lines)) == 1, lines
    plain = [ln for ln in lines if " lunar_handshake " in ln or " lunar_traffic " in ln]
    assert not plain, "the plain proxy ports were contacted:\n" + "\n".join(plain)


@pytest.mark.parametrize("name", sorted(HTTP_CLIENTS))
def test_client_keepalive_over_one_tls_session(name, mark, need_lib, java_classes, venv_python,  # noqa: F811
                                               tmp_path, tag):
    """Each client: 3 GETs on one keep-alive connection, all diverted over TLS, on one
    connection to the proxy, which accepted one TLS connection (no new handshake per
    request)."""
    lab = mark.lab
    client = http_client(name, lab, java_classes, venv_python, str(tmp_path))
    res = run_http(client, lab, "GET", "http://api.example.test" + tag, repeat=3)
    assert_ok(res)
    es = echoes(res)
    assert len(es) == 3, describe(res)
    rids = [assert_diverted_over_tls(e, res, path=tag) for e in es]
    assert len(set(rids)) == 3, rids
    assert len({hdr(e, "x-seen-src") for e in es}) == 1, describe(res)
    assert_no_warning(res)
    assert_log_over_tls(mark, tag, requests=3, connections=1, res=res)


@pytest.mark.parametrize("name", ["curl", "py_requests", "node_http", "java_httpclient"])
def test_client_post_json_over_tls(name, mark, need_lib, java_classes, venv_python, tmp_path,  # noqa: F811
                                   tag):
    lab = mark.lab
    client = http_client(name, lab, java_classes, venv_python, str(tmp_path))
    body = json.dumps({"client": name, "tag": tag, "n": [1, 2, 3], "text": "h\u00e9llo"}).encode()
    res = run_http(client, lab, "POST", "http://api.example.test" + tag, data=body,
                   headers=["Content-Type: application/json"])
    assert_ok(res)
    e = one_echo(res)
    assert_diverted_over_tls(e, res, path=tag)
    assert e["method"] == "POST" and (e["body_len"], e["body_sha256"]) == (len(body), sha256(body)), e
    assert hdr(e, "content-type") == "application/json", e
    assert_log_over_tls(mark, tag, requests=1, connections=1, res=res)


SESSION = r"""
import json, re, sys
import requests
base, tag = sys.argv[1], sys.argv[2]
s = requests.Session()
pool = s.get_adapter(base).poolmanager.connection_from_url(base)
for i in range(3):
    r = s.get("%s%s/get%d" % (base, tag, i), timeout=20)
    r.raise_for_status()
    sys.stdout.buffer.write(r.content.rstrip(b"\n") + b"\n")
body = json.dumps({"tag": tag, "list": list(range(50)), "text": "h\u00e9llo"}).encode()
r = s.post("%s%s/post" % (base, tag), data=body, headers={"Content-Type": "application/json"},
           timeout=20)
r.raise_for_status()
sys.stdout.buffer.write(r.content.rstrip(b"\n") + b"\n")
sys.stderr.write("[client] connections=%d sent_sha256=%s\n" % (
    pool.num_connections, __import__("hashlib").sha256(body).hexdigest()))
"""


def session_facts(res):
    m = re.search(r"\[client\] connections=(\d+) sent_sha256=([0-9a-f]{64})", res.text_err)
    assert m, describe(res)
    return int(m.group(1)), m.group(2)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_requests_session_keepalive_and_post(scheme, mark, need_lib, venv_python, tag):  # noqa: F811
    """requests.Session: 3 GETs and a JSON POST on one connection (the pool made one),
    all through the proxy over one TLS session; https: the program's session is virtual
    and its plaintext rides inside our TLS link (x-lunar-scheme: https)."""
    lab = mark.lab
    env = tls_env(lab)
    env.update(lab.tls_env() if scheme == "https" else NO_SYSTEM_TRUST)
    res = lab.run([venv_python, "-c", SESSION, "%s://api.example.test" % scheme, tag],
                  env=env, debug=False, timeout=40)
    assert_ok(res)
    es = echoes(res)
    assert [e["method"] for e in es] == ["GET"] * 3 + ["POST"], describe(res)
    for i, e in enumerate(es):
        path = tag + ("/get%d" % i if i < 3 else "/post")
        if scheme == "http":
            assert_diverted_over_tls(e, res, path=path)
        else:
            assert_proxied_tls(e, res, path=path)
            assert_over_tls(e, res)
    connections, sent = session_facts(res)
    assert connections == 1, describe(res)
    assert es[3]["body_sha256"] == sent, es[3]
    assert len({hdr(e, "x-seen-src") for e in es}) == 1, describe(res)
    assert_no_warning(res)
    assert_log_over_tls(mark, tag, requests=4, connections=1, res=res)


def test_one_tls_session_per_program_connection(mark, need_lib, tag):
    """curl, 2 requests to api.example.test and one to other.example.test: two program
    connections, so two TLS sessions to the proxy (not one, not three)."""
    lab = mark.lab
    urls = ["http://api.example.test%s/1" % tag, "http://api.example.test%s/2" % tag,
            "http://other.example.test%s/3" % tag]
    res = lab.run(["curl", "-sS", "-f"] + urls, debug=False,
                  env=dict(NO_SYSTEM_TRUST, **tls_env(lab)), timeout=30)
    assert_ok(res)
    es = echoes(res)
    assert len(es) == 3, describe(res)
    assert_diverted_over_tls(es[0], res, path=tag + "/1")
    assert_diverted_over_tls(es[1], res, path=tag + "/2")
    assert_diverted_over_tls(es[2], res, path=tag + "/3", origin=OTHER,
                             lunar_host="other.example.test")
    srcs = [hdr(e, "x-seen-src") for e in es]
    assert srcs[0] == srcs[1] != srcs[2], srcs
    assert_log_over_tls(mark, tag, requests=3, connections=2, res=res)


# ---- big bodies ----------------------------------------------------------------------

def test_curl_upload_2mib_over_tls(mark, need_lib, tmp_path, tag):
    lab = mark.lab
    body = os.urandom(BIG)
    path = os.path.join(str(tmp_path), "big.bin")
    with open(path, "wb") as f:
        f.write(body)
    res = lab.run(["curl", "-sS", "-f", "-H", "Content-Type: application/octet-stream",
                   "--data-binary", "@" + path, "http://api.example.test" + tag], debug=False,
                  env=dict(NO_SYSTEM_TRUST, **tls_env(lab)), timeout=40)
    assert_ok(res)
    e = one_echo(res)
    assert_diverted_over_tls(e, res, path=tag)
    assert (e["body_len"], e["body_sha256"]) == (BIG, sha256(body)), "body in the answer"
    assert [r["body_sha256"] for r in lab.origin_log(contains=tag)] == [sha256(body)], \
        "body at the origin"
    assert_log_over_tls(mark, tag, requests=1, connections=1, res=res)


def test_curl_download_2mib_over_tls(mark, need_lib, tag):
    lab = mark.lab
    n = BIG + 7
    res = lab.run(["curl", "-sS", "-f", "http://api.example.test/bytes/%d?%s" % (n, tag[1:])],
                  debug=False, env=dict(NO_SYSTEM_TRUST, **tls_env(lab)), timeout=40)
    assert_ok(res)
    assert len(res.out) == n and sha256(res.out) == sha256(labmod.pattern_bytes(n)), \
        "download: %d bytes, sha256 %s" % (len(res.out), sha256(res.out))
    assert_origin_saw_tls(lab, tag[1:], res)
    assert_log_over_tls(mark, tag[1:], requests=1, connections=1, res=res)


def assert_origin_saw_tls(lab, word, res):
    """The origin logged one request containing `word`, which came through HAProxy
    over TLS (the headers of the request as the origin received them)."""
    recs = lab.origin_log(contains=word)
    assert len(recs) == 1, (recs, describe(res))
    h = dict((k.lower(), v) for k, v in recs[0]["headers"])
    assert h.get("x-via-haproxy") == "1" and h.get("x-seen-proxy-tls") in TLS_VERSIONS, \
        "%s\n%s" % (recs[0]["headers"], describe(res))


# ---- C programs: blocking and epoll ----------------------------------------------------

def run_c(lab, bins, prog, path, host="api.example.test"):
    return lab.run([os.path.join(bins, prog), host, "80", path], debug=False,
                   env=dict(NO_SYSTEM_TRUST, **tls_env(lab)), timeout=40)


def test_c_blocking_keepalive_over_tls(mark, need_lib, c_bins, tag):  # noqa: F811
    """c-tests/keepalive_seq: GET, POST, GET on one blocking socket (send/recv)."""
    lab = mark.lab
    res = run_c(lab, c_bins, "keepalive_seq", tag)
    assert_ok(res)
    _, es = split_output(res.text_out)
    assert [e["method"] for e in es] == ["GET", "POST", "GET"], describe(res)
    for e in es:
        assert_diverted_over_tls(e, res, path=tag)
    assert es[1]["body_sha256"] == sha256(KEEPALIVE_BODY), es[1]
    assert len({hdr(e, "x-seen-src") for e in es}) == 1, describe(res)
    assert_no_warning(res)
    assert_log_over_tls(mark, tag, requests=3, connections=1, res=res)


def test_c_epoll_get_over_tls(mark, need_lib, c_bins, tag):  # noqa: F811
    """c-tests/nonblock_epoll: non-blocking connect (EINPROGRESS), epoll, EAGAIN."""
    lab = mark.lab
    res = run_c(lab, c_bins, "nonblock_epoll", tag)
    assert_ok(res)
    _, es = split_output(res.text_out)
    assert len(es) == 1, describe(res)
    assert_diverted_over_tls(es[0], res, path=tag)
    assert_no_warning(res)
    assert_log_over_tls(mark, tag, requests=1, connections=1, res=res)


def test_c_epoll_upload_2mb_over_tls(mark, need_lib, c_bins, tag):  # noqa: F811
    """c-tests/nonblock_epoll_post: 2 MB POST, SO_SNDBUF 16 KiB (short writes, EAGAIN)."""
    lab = mark.lab
    res = run_c(lab, c_bins, "nonblock_epoll_post", tag)
    assert_ok(res)
    _, es = split_output(res.text_out)
    assert len(es) == 1, describe(res)
    assert_diverted_over_tls(es[0], res, path=tag)
    assert (es[0]["body_len"], es[0]["body_sha256"]) == (len(BIG_POST_BODY), sha256(BIG_POST_BODY))
    assert_log_over_tls(mark, tag, requests=1, connections=1, res=res)


def test_c_epoll_download_2mib_over_tls(mark, need_lib, c_bins, tag):  # noqa: F811
    lab = mark.lab
    n = BIG + 3
    res = run_c(lab, c_bins, "nonblock_epoll", "/bytes/%d?%s" % (n, tag[1:]))
    assert_ok(res)
    assert sha256(res.out) == sha256(labmod.pattern_bytes(n)), \
        "download: %d bytes, sha256 %s" % (len(res.out), sha256(res.out))
    assert_origin_saw_tls(lab, tag[1:], res)
    assert_log_over_tls(mark, tag[1:], requests=1, connections=1, res=res)


@pytest.mark.parametrize("prog", ["nonblock_epoll_et_short", "nonblock_epoll_et_short_readv",
                                  "nonblock_epoll_et_fionread"])
def test_a_short_read_leaves_nothing_behind_over_tls(prog, mark, need_lib, c_bins, tag):  # noqa: F811
    """An edge-triggered loop that takes a read shorter than it asked for as "all there
    is" and waits for the next edge (nginx's rule with EPOLLRDHUP; read, and readv into
    4 KiB parts as nginx's upstream reads): a read returns every record the socket holds,
    up to the buffer's end, as the kernel's recv would; one record at a time left the
    rest in the socket, where no edge ever came (timed out at 20 s). _fionread also
    counts its reads down from FIONREAD, as nginx does: it failed every run before the
    library answered FIONREAD, and then still now and then (~1 in 20): its epoll
    registration comes before its connect, unseen by the library, which then could not
    add the readiness of plaintext it holds; the library now learns such a registration
    from the kernel (/proc/self/fdinfo of the epoll instance)."""
    lab = mark.lab
    n = 300000
    res = run_c(lab, c_bins, prog, "/bytes/%d?%s" % (n, tag[1:]))
    assert_ok(res)
    assert sha256(res.out) == sha256(labmod.pattern_bytes(n)), \
        "download: %d bytes, sha256 %s" % (len(res.out), sha256(res.out))
    assert_log_over_tls(mark, tag[1:], requests=1, connections=1, res=res)


def assert_no_empty_wakeup(res):
    """Every wake-up had bytes for the program: readiness that carried only records for
    the library's session (a session ticket, part of a record) was not shown."""
    m = re.search(r"empty_reads=(\d+)", res.text_err)
    assert m and m.group(1) == "0", "a read after a wake-up found nothing:\n" + describe(res)


@pytest.mark.parametrize("wait", ["poll", "select", "epoll"])
def test_small_reads_per_wakeup_get_every_byte(wait, mark, need_lib, c_bins, tag):  # noqa: F811
    """An event loop that reads 100 bytes per wake-up (c-tests/small_reads.c): a TLS
    record of up to 16 KiB is decrypted whole, so most of each record waits in the
    library, where the kernel cannot see it; the wait (poll, select, epoll) must still
    report the socket readable until the program has it all. A missed wake-up stalls
    the program (exit 3); a wake-up with nothing to read (a session ticket) counts as an
    empty read. 200,003 bytes, checksum checked."""
    lab = mark.lab
    n = 200003
    res = run_c(lab, c_bins, "small_reads_" + wait, "/bytes/%d?%s" % (n, tag[1:]))
    assert res.rc != 3, "a wake-up was missed:\n" + describe(res)
    assert_ok(res)
    assert sha256(res.out) == sha256(labmod.pattern_bytes(n)), \
        "download: %d bytes, sha256 %s" % (len(res.out), sha256(res.out))
    assert_no_empty_wakeup(res)
    assert_origin_saw_tls(lab, tag[1:], res)
    assert_log_over_tls(mark, tag[1:], requests=1, connections=1, res=res)


# ---- no OpenSSL in the process or on the system: GnuTLS -----------------------------------

# Hides the system's libssl (a private mount namespace; /dev/null bound over it: dlopen
# fails), then runs the rest of the arguments.
HIDE_LIBSSL = ("for f in /usr/lib/*/libssl.so.3 /usr/lib/*/libssl.so.1.1 /lib/*/libssl.so.3; do "
               "[ -e \"$f\" ] && mount --bind /dev/null \"$f\"; done; exec \"$@\"")
HIDE_GNUTLS_TOO = ("for f in /usr/lib/*/libgnutls.so.30 /lib/*/libgnutls.so.30; do "
                   "[ -e \"$f\" ] && mount --bind /dev/null \"$f\"; done; ") + HIDE_LIBSSL


def run_without_libssl(lab, cmd, env, debug=True, hide=HIDE_LIBSSL):
    argv = ["unshare", "--mount", "--propagation", "private", "--",
            "/bin/sh", "-ec", hide, "sh"] + list(cmd)
    return lab.run(argv, debug=debug, env=env, timeout=30)


def assert_no_warning_line(res):
    """No WARNING or ERROR line of the library (DEBUG lines asked for are fine)."""
    bad = [ln for ln in lib_warnings(res) if "WARNING" in ln or "ERROR" in ln]
    assert not bad, "the library warned\n%s\n%s" % ("\n".join(bad), describe(res))


def test_without_openssl_the_link_is_gnutls(mark, need_lib, tag):
    """A process with no OpenSSL to load (a minimal image: apt and wget bring GnuTLS):
    wget (GnuTLS linked) is diverted over a GnuTLS session of the library's, verified
    against the lab CA, with Lunar's headers and one TLS session at the proxy."""
    lab = mark.lab
    res = run_without_libssl(lab, ["wget", "-qO-", "http://api.example.test" + tag],
                             dict(NO_SYSTEM_TRUST, **tls_env(lab)))
    assert_ok(res)
    assert_diverted_over_tls(one_echo(res), res, path=tag)
    assert "TLS to the proxy (TLS1.3" in res.text_err, describe(res)  # GnuTLS's words
    assert_no_warning_line(res)
    assert_log_over_tls(mark, tag, requests=1, connections=1, res=res)


@pytest.mark.parametrize("wait", ["poll", "epoll"])
def test_without_openssl_a_plain_program_loads_gnutls(wait, mark, need_lib, c_bins, tag):  # noqa: F811
    """A C program with no TLS library of its own and no OpenSSL on the system: the
    library loads GnuTLS for its link; 100 bytes per wake-up still get every byte."""
    lab = mark.lab
    n = 100003
    cmd = [os.path.join(c_bins, "small_reads_" + wait), "api.example.test", "80",
           "/bytes/%d?%s" % (n, tag[1:])]
    res = run_without_libssl(lab, cmd, dict(NO_SYSTEM_TRUST, **tls_env(lab)))
    assert res.rc != 3, "a wake-up was missed:\n" + describe(res)
    assert_ok(res)
    assert sha256(res.out) == sha256(labmod.pattern_bytes(n)), describe(res)
    assert_no_empty_wakeup(res)
    assert "TLS to the proxy (TLS1.3" in res.text_err, describe(res)
    assert_log_over_tls(mark, tag[1:], requests=1, connections=1, res=res)


def test_without_openssl_a_bad_certificate_goes_direct(mark, need_lib, tag):
    """GnuTLS verifies too: the unknown CA's certificate on the traffic port is a proxy
    failure, served by the origin with one warning in GnuTLS's words."""
    lab = mark.lab
    res = run_without_libssl(lab, ["wget", "-qO-", "http://api.example.test" + tag],
                             dict(NO_SYSTEM_TRUST, **tls_env(lab, traffic=UNKNOWN_CA)),
                             debug=False)
    assert_ok(res)
    assert_served_by_origin(res, tag)
    assert_one_failure_warning(res, "certificate verify failed", "NOT trusted")


def test_without_any_tls_library_one_warning_and_direct(mark, need_lib, c_bins, tag):  # noqa: F811
    """Neither OpenSSL nor GnuTLS on the system: a plain C program's 32 requests on 32
    connections (8 threads) go to their destination, nothing reaches the proxy's traffic
    port, and the library says so once (not per connection, not as a proxy failure)."""
    lab = mark.lab
    before = lab.haproxy_sessions()
    cmd = [os.path.join(c_bins, "threads"), "api.example.test", "80", tag]
    env = dict(NO_SYSTEM_TRUST, **tls_env(lab))
    res = run_without_libssl(lab, cmd, env, debug=False, hide=HIDE_GNUTLS_TOO)
    assert_ok(res)
    assert res.text_out.count('"server"') == 32, describe(res)
    warnings = [ln for ln in lib_warnings(res) if "WARNING" in ln]
    assert len(warnings) == 1, describe(res)
    assert all("no TLS library for the proxy link" in ln for ln in warnings), describe(res)
    assert not any("Lunar Proxy failed" in ln for ln in lib_warnings(res)), describe(res)
    assert lab.haproxy_sessions() == before, "a connection reached the TLS traffic port"


# ---- https: virtual sessions inside our TLS link ----------------------------------------

def test_curl_https_virtual_over_tls(mark, need_lib, tag):
    """curl's https (its own OpenSSL): a virtual session as in clear-text mode, its
    plaintext inside our TLS link; 3 URLs on one connection, one TLS session."""
    lab = mark.lab
    url = "https://api.example.test" + tag
    res = lab.run(["curl", "-sS", "-f", url, url, url], debug=False,
                  env=dict(lab.tls_env(), **tls_env(lab)), timeout=30)
    assert_ok(res)
    es = echoes(res)
    assert len(es) == 3, describe(res)
    for e in es:
        assert_proxied_tls(e, res, path=tag)
        assert_over_tls(e, res)
    assert len({hdr(e, "x-seen-src") for e in es}) == 1, describe(res)
    assert_no_warning(res)
    assert_log_over_tls(mark, tag, requests=3, connections=1, res=res)


def test_c_tls_epoll_https_virtual_over_tls(mark, need_lib, c_tls_bins, tag):  # noqa: F811
    """c-tests/tls_nonblock_epoll (OpenSSL on a non-blocking socket, WANT_READ/WRITE,
    a 2 MB POST): GET and POST inside our TLS link, the POST's body intact."""
    lab = mark.lab
    res = lab.run([os.path.join(c_tls_bins, "tls_nonblock_epoll"), "api.example.test", "443",
                   tag, lab.ca_file], debug=False, env=tls_env(lab), timeout=40)
    assert_ok(res)
    es = echoes(res)
    assert [e["method"] for e in es] == ["GET", "POST"], describe(res)
    for e in es:
        assert_proxied_tls(e, res, path=tag)
        assert_over_tls(e, res)
    assert es[1]["body_sha256"] == sha256(labmod.pattern_bytes(2000000)), es[1]
    assert_log_over_tls(mark, tag, requests=2, connections=1, res=res)


# ---- failures of the traffic link: the failsafe --------------------------------------------

def assert_served_by_origin(res, tag, origin=API):
    """Status 200 (curl -f: exit 0), the origin's echo with nothing of Lunar's in it."""
    assert_ok(res)
    assert_direct(one_echo(res), res, origin=origin, path=tag)


def assert_one_failure_warning(res, *words):
    """One line of the library on stderr: "Lunar Proxy failed (" and the reason
    (each of `words`, case-insensitively; a tuple: any of its words)."""
    w = lib_warnings(res)
    assert len(w) == 1 and "Lunar Proxy failed (" in w[0], \
        "want one 'Lunar Proxy failed (' warning\n%s" % describe(res)
    for word in words:
        alts = word if isinstance(word, tuple) else (word,)
        assert any(a.lower() in w[0].lower() for a in alts), "%r not in %r" % (word, w[0])
    return w[0]


def run_curl_failing(lab, tag, traffic, extra=None):
    return lab.run(["curl", "-sS", "-f", "http://api.example.test" + tag], debug=False,
                   env=dict(NO_SYSTEM_TRUST, **tls_env(lab, traffic=traffic, extra=extra)),
                   timeout=30)


@pytest.mark.parametrize("port,words", [
    (WRONG_NAME, ("certificate verify failed", "hostname mismatch")),
    (EXPIRED, ("certificate verify failed", "expired")),
    (UNKNOWN_CA, ("certificate verify failed", "unable to get local issuer certificate")),
], ids=["wrong-name", "expired", "unknown-ca"])
def test_bad_certificate_on_the_traffic_port_goes_direct(mark, need_lib, tag, port, words):
    """The handshake (8443) is good, the traffic port's certificate is not: served by
    the origin, one warning with OpenSSL's reason; HAProxy's frontend for that port
    saw a connection (the library tried) and no request."""
    lab = mark.lab
    res = run_curl_failing(lab, tag, port)
    assert_served_by_origin(res, tag)
    assert_one_failure_warning(res, *words)
    lines = mark.lines()
    frontend = labmod.HAPROXY_TLS_TRAFFIC_BAD[port]
    assert [ln for ln in lines if " %s/" % frontend in ln], \
        "no connection to %s logged\n%s\n%s" % (frontend, "\n".join(lines), describe(res))
    assert not log_requests(lines, tag), lines
    assert len(handshakes_over_tls(lines)) == 1, lines


def test_plain_http_on_the_traffic_port_goes_direct(mark, need_lib, tag):
    """LUNAR_PROXY_HOST names the plain traffic port: our ClientHello meets HTTP."""
    lab = mark.lab
    res = run_curl_failing(lab, tag, PLAIN)
    assert_served_by_origin(res, tag)
    assert_one_failure_warning(res, ("wrong version number", "packet length too long"))
    lines = mark.lines()
    assert not log_requests(lines, tag), lines
    assert len(handshakes_over_tls(lines)) == 1, lines


def test_reset_in_the_tls_handshake_goes_direct(listeners, mark, need_lib, tag):  # noqa: F811
    lab = mark.lab
    before = len(lab.listener_log())
    res = run_curl_failing(lab, tag, RESET)
    assert_served_by_origin(res, tag)
    assert_one_failure_warning(res, ("reset", "unexpected eof"))
    recs = wait_listener_log(lab, before, 1)
    assert [r["listener"] for r in recs] == ["reset"] and recs[0]["client_hello"], recs


@pytest.mark.parametrize("prog", ["curl", "nonblock_epoll"])
def test_silent_proxy_times_out_and_goes_direct(listeners, mark, need_lib, c_bins, tag, prog):  # noqa: F811
    """A proxy that accepts and never answers our ClientHello: the TLS handshake gives
    up after LUNAR_PROXY_CONNECT_TIMEOUT_MS=500 (blocking curl and an epoll program)."""
    lab = mark.lab
    before = len(lab.listener_log())
    extra = {"LUNAR_PROXY_CONNECT_TIMEOUT_MS": "500"}
    t0 = time.time()
    if prog == "curl":
        res = run_curl_failing(lab, tag, SILENT, extra)
    else:
        res = lab.run([os.path.join(c_bins, prog), "api.example.test", "80", tag], debug=False,
                      env=dict(NO_SYSTEM_TRUST, **tls_env(lab, traffic=SILENT, extra=extra)),
                      timeout=30)
    elapsed = time.time() - t0
    if prog == "curl":
        assert_served_by_origin(res, tag)
    else:
        assert_ok(res)
        _, es = split_output(res.text_out)
        assert len(es) == 1, describe(res)
        assert_direct(es[0], res, origin=API, path=tag)
    assert_one_failure_warning(res, "timed out")
    assert elapsed < 4, "took %.1f s\n%s" % (elapsed, describe(res))
    recs = wait_listener_log(lab, before, 1)
    assert [r["listener"] for r in recs] == ["silent"] and recs[0]["client_hello"], recs


def test_https_with_a_bad_traffic_certificate_goes_to_the_origin_over_tls(mark, need_lib, tag):
    """A virtual https session whose TLS link fails (unknown CA on 8403): curl's request
    reaches the https origin over real TLS, unmodified; one warning."""
    lab = mark.lab
    res = lab.run(["curl", "-sS", "-f", "https://api.example.test" + tag], debug=False,
                  env=dict(lab.tls_env(), **tls_env(lab, traffic=UNKNOWN_CA)), timeout=30)
    assert_ok(res)
    assert_direct_tls(one_echo(res), res, path=tag)
    assert_one_failure_warning(res, "certificate verify failed")
    assert not log_requests(mark.lines(), tag)


def test_proxy_not_trusted_without_the_ca_file(mark, need_lib, tag):
    """No LUNAR_PROXY_CA_FILE, no SSL_CERT_FILE: the system's store does not trust the
    lab's proxy, so its TLS handshake (8443) fails: the proxy is unavailable, the request
    goes to the origin, nothing reaches a traffic port, and the library says why."""
    lab = mark.lab
    res = lab.run(["curl", "-sS", "-f", "http://api.example.test" + tag], debug=False,
                  env=dict(NO_SYSTEM_TRUST, **tls_env(lab, ca=None)), timeout=30)
    assert_served_by_origin(res, tag)
    w = lib_warnings(res)
    assert len(w) == 1 and "unable to get local issuer certificate" in w[0], describe(res)
    lines = mark.lines()
    assert not [ln for ln in lines if "lunar_traffic" in ln or tag in ln], lines
    assert mark.tls_connections() == 0
