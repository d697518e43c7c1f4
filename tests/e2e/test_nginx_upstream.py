"""nginx as the client: a reverse proxy run under the library, whose upstream is a
third-party API. nginx's event loop is unlike the other clients': it registers
a socket with epoll before connecting it (edge-triggered, EPOLLRDHUP asked, a pointer as
the event's data), so the library learns that registration from the kernel when it needs it; it keeps upstream
connections alive between requests; its workers are forked from a master that loaded
the library; and with `sendfile on` (Debian's default nginx.conf) it sends a request body
it buffered to a file (over 16 KiB) with sendfile(), not a write. Its requests must go through Lunar Proxy, and every proxy fault must end as
the origin's answer, within nginx's own timeouts. Each test runs with an http upstream
(port 80) and an https one (port 443, through nginx's OpenSSL, verified with the lab's
CA): the library's virtual TLS session to the proxy, a real one to the origin on a
fault."""
import contextlib
import os
import random
import shutil
import time

import pytest

from conftest import (TESTPROXY_FAULTS_ENV, assert_direct, assert_ok, assert_via_testproxy,
                      describe, hdr, labmod, listening, one_echo, sha256)

ORIGIN = {"http": "203.0.113.10:80", "https": "203.0.113.10:443"}
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
LISTEN = ("127.0.0.5", 8180)
# The module's nginx (the fixture's, kept until the module ends) listens on LISTEN; one a
# test starts for itself on this.
LISTEN_OWN = ("127.0.0.5", 8181)
ENV = TESTPROXY_FAULTS_ENV

# The upstream is named as the API is (nginx sends it as Host, which the library sends on
# as x-lunar-host); one kept connection, so that requests follow one another on it.
CONF = """
user root;
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    sendfile on;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream api.example.test {{
        server api.example.test:{upstream_port};
        keepalive 1;
    }}
    server {{
        listen {ip}:{port};
        location / {{
            proxy_pass {scheme}://api.example.test;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_read_timeout 20s;
{tls}
        }}
    }}
}}
"""
TLS = """            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate {ca};
            proxy_ssl_server_name on;
            proxy_ssl_name api.example.test;
            proxy_ssl_session_reuse on;"""


class Nginx:
    def __init__(self, scheme, folder, listen):
        self.scheme, self.folder, self.origin = scheme, folder, ORIGIN[scheme]
        self.listen = listen


@contextlib.contextmanager
def running_nginx(lab, folder, scheme, env, listen=LISTEN):
    """nginx under the library (a master and one worker) listening on `listen`, with an
    upstream of `scheme`, stopped by its process group at the end."""
    if not os.path.exists(NGINX):
        pytest.skip("nginx is not installed (make deps installs nginx-light)")
    conf = os.path.join(folder, "nginx.conf")
    tls = TLS.format(ca=lab.ca_file) if scheme == "https" else ""
    with open(conf, "w") as f:
        f.write(CONF.format(dir=folder, ip=listen[0], port=listen[1], scheme=scheme,
                            upstream_port=ORIGIN[scheme].split(":")[1], tls=tls))
    with listening(lab, [NGINX, "-c", conf, "-p", folder], env, listen):
        yield Nginx(scheme, folder, listen)


@pytest.fixture(scope="module", params=["http", "https"])
def nginx(request, lab, tmp_path_factory):
    lab.start_testproxy()
    folder = str(tmp_path_factory.mktemp("nginx-" + request.param))
    with running_nginx(lab, folder, request.param, ENV) as running:
        yield running


def error_log(folder):
    """nginx's error log, where its workers' stderr (and so the library's lines) goes."""
    with open(os.path.join(folder, "error.log"), "rb") as f:
        return f.read().decode("utf-8", "replace")[-6000:]


def through_nginx(lab, nginx, tag, body):
    """POSTs body to nginx (curl, not preloaded); the result and its time."""
    path = os.path.join(nginx.folder, "body.bin")
    with open(path, "wb") as f:
        f.write(body)
    t0 = time.time()
    res = lab.run(["curl", "-sS", "--data-binary", "@" + path, "-H",
                   "Content-Type: application/octet-stream",
                   "http://%s:%d%s" % (nginx.listen[0], nginx.listen[1], tag)],
                  preload=False, proxy=False, timeout=40)
    return res, time.time() - t0


def at_proxy(lab, tag):
    return [r for r in lab.testproxy_log() if r.get("kind") == "traffic" and r.get("path") == tag]


def test_nginx_upstream_request_goes_through_the_proxy(lab, need_lib, nginx, testproxy, tag):
    body = random.Random(1).randbytes(100000)
    res, _ = through_nginx(lab, nginx, tag, body)
    assert_ok(res)
    e = one_echo(res)
    ctx = describe(res) + "\n--- nginx error.log ---\n" + error_log(nginx.folder)
    assert_via_testproxy(e, nginx.scheme, body, ctx)
    assert len(at_proxy(lab, tag)) == 1, ctx


@pytest.mark.parametrize("mode", ["close", "close-head", "reset", "down", "error:2",
                                  "head-part-close", "head-part-reset"])
def test_nginx_upstream_proxy_fault_ends_at_the_origin(lab, need_lib, nginx, testproxy, tag,
                                                       mode):
    """The proxy fails the request (closes, resets, answers x-lunar-error, or cuts its
    answer's head): nginx gets the origin's answer to the same request at once, not its
    own timeout's 504."""
    testproxy.set_mode(mode)
    body = random.Random(mode).randbytes(50000)
    res, elapsed = through_nginx(lab, nginx, tag, body)
    ctx = describe(res) + "\n--- nginx error.log ---\n" + error_log(nginx.folder)
    assert_ok(res)
    e = one_echo(res)
    assert_direct(e, res, origin=nginx.origin, path=tag)
    assert e["body_sha256"] == sha256(body), ctx
    assert len(lab.origin_log(contains=tag)) == 1, ctx
    if mode != "down":  # down: the proxy resets each connection as it accepts it
        assert at_proxy(lab, tag), "the request never reached the test proxy\n" + ctx
    assert elapsed < 5, "%.1f s\n%s" % (elapsed, ctx)


def test_nginx_kept_upstream_connection_across_faults(lab, need_lib, nginx, testproxy, tag):
    """Requests one after another on nginx's kept upstream connection, the proxy failing
    some: each is answered, by the proxy when it passes, by the origin when it fails; the
    connection moved to the origin comes back to the proxy at a request boundary."""
    plan = ["pass", "error:2", "pass", "close", "pass", "reset", "pass"]
    for i, mode in enumerate(plan):
        testproxy.set_mode(mode)
        path = "%s/%d" % (tag, i)
        body = b"request %d " % i * 500
        res, elapsed = through_nginx(lab, nginx, path, body)
        ctx = "request %d (%s)\n%s\n--- nginx error.log ---\n%s" % (
            i, mode, describe(res), error_log(nginx.folder))
        assert_ok(res)
        e = one_echo(res)
        assert e["path"] == path and e["body_sha256"] == sha256(body), ctx
        assert e["server"] == nginx.origin, ctx
        assert (hdr(e, "x-via-testproxy") == "1") == (mode == "pass"), ctx
        assert elapsed < 5, "%.1f s\n%s" % (elapsed, ctx)



def test_nginx_over_tls_to_the_proxy(lab, need_lib, tmp_path, tag):
    """With TLS to the proxy (LUNAR_PROXY_SUPPORT_TLS=1, HAProxy's TLS port), a body nginx
    sends with sendfile is encrypted with the rest of its request: the kernel's sendfile
    would have put the file's plaintext inside the TLS stream."""
    env = {"LUNAR_PROXY_HOST": "proxy.lunar.test:%d" % labmod.HAPROXY_TLS_TRAFFIC,
           "LUNAR_PROXY_SUPPORT_TLS": "1", "LUNAR_HANDSHAKE_PORT": str(labmod.HAPROXY_TLS_HANDSHAKE),
           "LUNAR_PROXY_CA_FILE": lab.ca_file}
    lab.start_haproxy()
    with running_nginx(lab, str(tmp_path), "http", env, LISTEN_OWN) as running:
        for i in range(2):
            body = random.Random(i).randbytes(900000)
            res, _ = through_nginx(lab, running, "%s/%d" % (tag, i), body)
            ctx = describe(res) + "\n--- nginx error.log ---\n" + error_log(running.folder)
            assert res.rc == 0, ctx
            e = one_echo(res)
            assert hdr(e, "x-via-haproxy") == "1", ctx
            assert hdr(e, "x-seen-lunar-host") == "api.example.test", ctx
            assert e["body_sha256"] == sha256(body), ctx
        assert "TLS to the proxy" in error_log(running.folder)


def test_nginx_large_answers_over_tls_to_the_proxy(lab, need_lib, tmp_path, tag):
    """Answers of 300 KB through nginx over TLS to the proxy, one after another on its kept
    connection. nginx reads edge-triggered and waits after a read shorter than asked for;
    its registration was made before its connect, so the library learns it from the kernel
    (/proc/self/fdinfo of the epoll instance) when the session holds plaintext the socket
    no longer shows: without it an answer stalled until nginx's proxy_read_timeout (about
    one GET in six)."""
    env = {"LUNAR_PROXY_HOST": "proxy.lunar.test:%d" % labmod.HAPROXY_TLS_TRAFFIC,
           "LUNAR_PROXY_SUPPORT_TLS": "1", "LUNAR_HANDSHAKE_PORT": str(labmod.HAPROXY_TLS_HANDSHAKE),
           "LUNAR_PROXY_CA_FILE": lab.ca_file}
    lab.start_haproxy()
    n = 300000
    with running_nginx(lab, str(tmp_path), "http", env, LISTEN_OWN) as running:
        for i in range(30):
            path = "/bytes/%d?%s-%d" % (n, tag[1:], i)
            t0 = time.time()
            res = lab.run(["curl", "-sS", "--max-time", "5",
                           "http://%s:%d%s" % (LISTEN_OWN + (path,))],
                          preload=False, proxy=False, timeout=20)
            elapsed = time.time() - t0
            ctx = "GET %d: %.1f s, rc %s, %d bytes\n%s\n--- nginx error.log ---\n%s" % (
                i, elapsed, res.rc, len(res.out), res.err[-2000:], error_log(running.folder))
            assert res.rc == 0, ctx
            assert len(res.out) == n and res.out == labmod.pattern_bytes(n), ctx
            seen = lab.origin_log(contains=path)
            assert len(seen) == 1, ctx
            assert ["x-via-haproxy", "1"] in [[k.lower(), v] for k, v in seen[0]["headers"]], ctx
